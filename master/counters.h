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

#include "lib/strmap.h"
#include "shm/shm.h"

/* What a kept counter belongs to. */
enum ism_counted {
	ISM_COUNTED_LISTENER, /* struct ism_counters */
	ISM_COUNTED_ROUTE,    /* struct ism_counters, named within its listener */
	ISM_COUNTED_L4,	      /* a TCP or TLS route's struct ism_l4counters, likewise */
	ISM_COUNTED_CLUSTER,  /* struct ism_cluster_dyn */
};

/* A generation's counted objects by kind and name, looked up in constant time
 * (a table of 20,000 routes was searched route by route for each of them:
 * seconds of the master's loop after each reload). */
struct ism_counted_index {
	struct ism_strmap map; /* kind, listener NUL name -> index into objs */
	char *keys;	       /* the keys' bytes */
	const void **objs;
};

/* The generations other than cur that are not reclaimed yet, each indexed
 * (ism_older_free frees the indexes). */
struct ism_older {
	const struct ism_table *t[ISM_GEN_SLOTS];
	struct ism_counted_index idx[ISM_GEN_SLOTS];
	int n;
};

void ism_older_tables(const struct ism_shm *shm, const struct ism_table *cur, struct ism_older *o);
void ism_older_free(struct ism_older *o);

/* The uint64_t counter at byte offset off of own, the current generation's
 * object of that kind and name (listener: the listener's name for a route,
 * else NULL), plus its namesake's in each generation of o. */
uint64_t ism_counters_sum(const struct ism_older *o, enum ism_counted kind,
			  const struct ism_str *listener, const struct ism_str *name,
			  const void *own, size_t off);

/* Adds the counts of from (a generation no worker counts in any more) to
 * their namesakes in to. */
void ism_counters_carry(const struct ism_table *from, const struct ism_table *to);

#endif
