/* SPDX-License-Identifier: Apache-2.0 */
/* The listener, route and cluster counters of a generation kept by name
 * across generations, as Envoy keeps stats by name: a publish (a reload, a
 * DNS answer, a certificate rotation, a dead worker's share given back)
 * starts the new generation's counters at zero, the counters shown are the
 * sums over the generations workers may still count in, and a generation
 * reclaimed (none counts in it any more) leaves its counts to the current
 * one's namesakes. */
#ifndef ISM_MASTER_COUNTERS_H
#define ISM_MASTER_COUNTERS_H

#include <stdint.h>

#include "shm/shm.h"

/* The generations other than cur that are not reclaimed yet. */
struct ism_older {
	const struct ism_table *t[ISM_GEN_SLOTS];
	int n;
};

void ism_older_tables(const struct ism_shm_hdr *h, const struct ism_table *cur,
		      struct ism_older *o);

/* The counters of t's object of that name; NULL when t has none. A route
 * and a TCP or TLS route are named within their listener. */
const struct ism_cluster_dyn *ism_counters_cluster(const struct ism_table *t,
						   const struct ism_str *name);
const struct ism_counters *ism_counters_listener(const struct ism_table *t,
						 const struct ism_str *listener);
const struct ism_counters *ism_counters_route(const struct ism_table *t,
					      const struct ism_str *listener,
					      const struct ism_str *route);
const struct ism_l4counters *ism_counters_l4(const struct ism_table *t,
					     const struct ism_str *listener,
					     const struct ism_str *route);

/* Adds the counts of from (a generation no worker counts in any more) to
 * their namesakes in to. */
void ism_counters_carry(const struct ism_table *from, const struct ism_table *to);

#endif
