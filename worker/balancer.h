/* SPDX-License-Identifier: Apache-2.0 */
/* Endpoint choice inside a cluster (worker side), as Envoy does it:
 *
 *   1. a priority, by the cluster's priority loads (struct ism_cluster_dyn, which
 *      the master recomputes whenever health, ejection or admin state change);
 *   2. in that priority, when the cluster is locality-weighted and the priority is
 *      not in panic, a locality group by its effective weight;
 *   3. an endpoint of that set by the cluster's policy: smooth weighted round
 *      robin, least request (power of two choices over the in-flight counts all
 *      workers share, weighted by (in-flight + 1) / weight), weighted random, or
 *      a consistent hash (ring hash or Maglev table, walking on to the next
 *      eligible endpoint).
 *
 * Eligible: healthy, not ejected and not kept out by the operator (drain, maint,
 * weight 0: ism_ep_admin_out); in panic, every endpoint of the priority that is
 * not kept out. The eligible endpoints of each priority and locality group are
 * kept as lists per worker until the health epoch moves (every writer of a
 * state moves it after storing the state), so a pick reads no endpoint's state
 * and draws from equal weights in constant time. When the chosen
 * set has nothing eligible (the loads lag a change by one recomputation), the
 * priorities are tried in order. The per-worker state is sized for one table
 * generation and rebuilt when the worker moves to a new one. */
#ifndef ISM_WORKER_BALANCER_H
#define ISM_WORKER_BALANCER_H

#include <stdint.h>

#include "shm/shm-t.h"
#include "shm/table-t.h"

struct ism_lb;

/* Creates balancer state for table; NULL on allocation failure. */
struct ism_lb *ism_lb_new(const struct ism_table *table);
void ism_lb_free(struct ism_lb *lb);

/* What one pick needs from the request. */
struct ism_lb_req {
	const uint32_t *exclude; /* endpoint ids to avoid while another is eligible (retries) */
	uint32_t n_exclude;
	uint32_t skip_prio; /* priorities a retry leaves out (bit p): retryRemoteLocalities */
	uint32_t rnd;	    /* uniform random bits */
	uint32_t rnd2;	    /* more of them */
	uint64_t hash;	    /* consistent-hash key, when has_hash */
	uint8_t has_hash;
	uint64_t now_ms; /* monotonic: how far a warmup has gone (ism_cluster.warmup_ms) */
};

/* Picks an endpoint of cluster c (index in table->clusters) and returns its index
 * in the cluster's endpoint array; -ENOENT when no endpoint can be picked.
 * h is the shared region's header: its endpoint and outlier states. */
int ism_lb_pick(struct ism_lb *lb, uint32_t c, const struct ism_shm_hdr *h,
		const struct ism_lb_req *rq);

#endif
