/* SPDX-License-Identifier: Apache-2.0 */
/* Endpoint warmup (Istio's loadBalancer.warmup, Envoy's slow start): how much
 * of its weight an endpoint has while it warms up. Pure function over the
 * shared endpoint state: the balancer of every worker uses it, and the
 * master's control socket shows it. */
#ifndef ISM_HEALTH_WARMUP_H
#define ISM_HEALTH_WARMUP_H

#include <stdint.h>

#include "shm/shm-t.h"
#include "shm/table-t.h"

/* The share of its weight endpoint st of cluster cl has at monotonic time
 * now_ms, Envoy's applySlowStartFactor: 1, unless cl warms endpoints up
 * (warmup_ms) and st became healthy, or joined healthy, t < warmup_ms ago:
 * then max((t / warmup_ms)^(1 / aggression), minimum), t at least 1 ms.
 * An unhealthy endpoint (a candidate only in a panic) keeps its weight, as in
 * Envoy. */
double ism_warmup_factor(const struct ism_cluster *cl, const struct ism_ep_state *st,
			 uint64_t now_ms);

#endif
