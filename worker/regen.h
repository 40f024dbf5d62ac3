/* SPDX-License-Identifier: Apache-2.0 */
/* What a newer table generation calls the objects of an older one, for the
 * requests in flight when a worker moves on (a reload, a DNS answer, a
 * certificate rotation). As Envoy's router, a request keeps the route it was
 * routed with (its policy is copied into the stream), and finds its cluster
 * again by name for what it does next (a retry, a wait for a connection, the
 * end of a fault delay); its counters are those of the same names in the
 * newer generation. Pure lookups over two tables; the old one must stay
 * mapped while they are made. Private to worker/. */
#ifndef ISM_WORKER_REGEN_H
#define ISM_WORKER_REGEN_H

#include <stdint.h>

#include "lib/strmap.h"
#include "shm/table-t.h"

/* Counters of one kind (struct ism_counters of routes, struct
 * ism_l4counters of TCP and TLS routes): the old one's address to its
 * namesake in the newer table. */
struct ism_regen_stats {
	struct ism_strmap by_old; /* an old counters' address -> index in to */
	void **to;
	uint32_t n;
};

struct ism_regen {
	const struct ism_table *old, *cur;
	struct ism_strmap clusters; /* cur's cluster names -> index */
	struct ism_regen_stats routes, l4;
};

/* The maps from old to cur (whose listeners are old's: a worker whose
 * listeners moved does not move on). 0, or -ENOMEM (g holds nothing). */
int ism_regen_init(struct ism_regen *g, const struct ism_table *old, const struct ism_table *cur);
void ism_regen_free(struct ism_regen *g);

/* The index in cur of old's cluster i; UINT32_MAX when cur has no cluster of
 * that name (or i is none). */
uint32_t ism_regen_cluster(const struct ism_regen *g, uint32_t i);
/* Endpoint ep of an old cluster, in cur's cluster ci (same slot id); NULL
 * when it is not one of that cluster's now. */
const struct ism_endpoint *ism_regen_endpoint(const struct ism_regen *g, uint32_t ci,
					      const struct ism_endpoint *ep);
/* The counters of the route (TCP or TLS route) of that name in cur; NULL:
 * none (or c NULL). */
struct ism_counters *ism_regen_route(const struct ism_regen *g, const struct ism_counters *c);
struct ism_l4counters *ism_regen_l4(const struct ism_regen *g, const struct ism_l4counters *c);
#endif
