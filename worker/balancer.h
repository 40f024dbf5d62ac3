/* Endpoint choice inside a cluster (worker side).
 *
 * Issue-2 semantics: weighted round robin (smooth, nginx-style) among the healthy,
 * admin-ready endpoints of priority 0 (the appliance's own zone) while there is
 * one; otherwise among the healthy endpoints of every other priority. Unhealthy,
 * drained and in-maintenance endpoints are never picked. The per-worker state is
 * sized for one table generation and rebuilt when the worker moves to a new one. */
#ifndef ISM_WORKER_BALANCER_H
#define ISM_WORKER_BALANCER_H

#include <stdint.h>

#include "shm/shm-t.h"
#include "shm/table-t.h"

struct ism_lb;

/* Creates balancer state for table; NULL on allocation failure. */
struct ism_lb *ism_lb_new(const struct ism_table *table);
void ism_lb_free(struct ism_lb *lb);

/* Picks an endpoint of cluster c (index in table->clusters) and returns its index
 * in the cluster's endpoint array; -ENOENT when no endpoint is eligible.
 * eps is the shared endpoint-state table (ism_shm_hdr.eps). exclude_id, when not
 * UINT32_MAX, names an endpoint id to avoid if any other is eligible (retries). */
int ism_lb_pick(struct ism_lb *lb, uint32_t c, const struct ism_ep_state *eps, uint32_t exclude_id,
		uint32_t rnd);

#endif
