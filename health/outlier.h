/* SPDX-License-Identifier: Apache-2.0 */
/* Outlier detection (Envoy's outlier_detection_impl.cc under Istio's mapping):
 * consecutive-error counting shared by every worker through the endpoint-state
 * table, ejection with a growing ejection time, return at the sweep. Pure
 * functions over shared-memory atomics: safe in every process. */
#ifndef ISM_HEALTH_OUTLIER_H
#define ISM_HEALTH_OUTLIER_H

#include <stdint.h>

#include "shm/shm-t.h"
#include "shm/table-t.h"

/* What one exchange with an endpoint came to. */
enum ism_outcome {
	ISM_OUTCOME_SUCCESS = 0, /* a response below 500 */
	ISM_OUTCOME_5XX,	 /* 500, 501, 505, ... from the upstream */
	ISM_OUTCOME_GATEWAY,	 /* 502, 503, 504 from the upstream */
	ISM_OUTCOME_LOCAL,	 /* local origin: connect failure or timeout, reset, no response */
};

/* Records an outcome for endpoint ep of cluster cl (cl->od not NULL; ep one of
 * cl->endpoints), in the endpoint's outlier slot of that cluster: each
 * cluster (each subset) has its own detector, as in Envoy. Success resets the
 * consecutive counters. In non-split mode a local-origin failure counts as a
 * gateway error (Envoy maps it to 503); in split mode it counts toward
 * consecutive_local only. When a counter reaches its threshold, the endpoint
 * is ejected from the cluster if the cluster allows it: at least one endpoint
 * may always be ejected (DESIGN.md), further ones while 100 * (ejected + 1) /
 * n <= max_ejection_percent. Ejection time: base * k, k the ejection
 * multiplier incremented on each ejection, capped at max_ejection_ms.
 * Returns 1 when this call ejected the endpoint (the caller bumps the health
 * epoch and logs), 0 otherwise. now_ms is monotonic. */
int ism_outlier_record(const struct ism_cluster *cl, struct ism_shm_hdr *h,
		       const struct ism_endpoint *ep, enum ism_outcome outcome, uint64_t now_ms);

/* How often a cluster without outlier detection is swept for the ejections
 * a reload left it (ms). */
#define ISM_OUTLIER_ORPHAN_SWEEP_MS 1000

/* The master's sweep for cluster cl: returns ejected endpoints whose time is up
 * (counters reset), and decrements the multiplier of endpoints that have stayed
 * un-ejected for an interval (with outlier detection; without, only the
 * returns). Returns how many endpoints changed state. pub: where a return's
 * log line finds the endpoint's key (NULL: none). */
int ism_outlier_sweep(const struct ism_cluster *cl, struct ism_shm_hdr *h,
		      const struct ism_shm_pub *pub, uint64_t now_ms);

/* A passing active health check returns an ejected endpoint at once (Envoy's
 * successful_active_health_check_uneject_host), from every cluster of t that
 * has it ejected (one check serves an endpoint for all its clusters). Returns
 * how many ejections ended. */
int ism_outlier_uneject(const struct ism_table *t, struct ism_shm_hdr *h, uint32_t ep_id,
			uint64_t now_ms);

/* The ejection time for the k-th consecutive ejection. */
uint64_t ism_outlier_ejection_ms(const struct ism_outlier *od, uint32_t k);

/* Whether the operator keeps new requests from the endpoint: drained, in
 * maintenance, or weight 0 through the control socket. Such an endpoint is
 * excluded from its priority's host count, as Envoy's excluded hosts are. */
int ism_ep_admin_out(const struct ism_ep_state *e);

/* Whether endpoint ep is ejected by its cluster's outlier detection. */
int ism_ep_ejected(const struct ism_shm_hdr *h, const struct ism_endpoint *ep);

/* The ejections of endpoint ep by its cluster's outlier detection, ever. */
uint64_t ism_ep_ejections(const struct ism_shm_hdr *h, const struct ism_endpoint *ep);

/* Whether endpoint ep may be picked in its cluster: healthy, not ejected
 * there and not kept out by the operator. */
int ism_ep_eligible(const struct ism_shm_hdr *h, const struct ism_endpoint *ep);

/* The same for an endpoint slot without a cluster (metrics, the control
 * socket's endpoint list): healthy, ejected by no cluster, not kept out. */
int ism_ep_state_eligible(const struct ism_ep_state *e);

#endif
