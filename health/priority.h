/* SPDX-License-Identifier: Apache-2.0 */
/* Envoy's priority and locality arithmetic, and Istio's assignment of
 * priorities from localities: pure functions, no shared state, safe in any
 * process. Semantics and worked examples: ../shared/reference/traffic-semantics.md
 * sections 1 and 2. */
#ifndef ISM_HEALTH_PRIORITY_H
#define ISM_HEALTH_PRIORITY_H

#include <stdbool.h>
#include <stdint.h>

#include "shm/table-t.h"

/* Host counts of one cluster, per priority. */
struct ism_prio_input {
	uint32_t n_priorities; /* <= ISM_MAX_PRIORITIES */
	uint32_t hosts[ISM_MAX_PRIORITIES];
	uint32_t healthy[ISM_MAX_PRIORITIES];
	uint32_t degraded[ISM_MAX_PRIORITIES];
	uint32_t excluded[ISM_MAX_PRIORITIES];
	uint32_t overprovisioning; /* percent: 140 */
	uint32_t panic_threshold;  /* percent: 0 disables panic */
};

struct ism_prio_load {
	uint32_t n_priorities;
	uint8_t health[ISM_MAX_PRIORITIES];	  /* min(100, OF * healthy / (hosts - excluded)) */
	uint8_t healthy_load[ISM_MAX_PRIORITIES]; /* percent; healthy + degraded loads sum to 100 */
	uint8_t degraded_load[ISM_MAX_PRIORITIES];
	uint8_t panic[ISM_MAX_PRIORITIES]; /* priority in panic: pick among all its hosts */
	uint8_t total_panic;		   /* every priority in panic: loads by host count */
	uint8_t nta;			   /* normalized total availability, 0..100 */
};

/* Envoy's load_balancer_impl.cc: per-priority health with the overprovisioning
 * factor, normalized total availability, loads spilled over with integer
 * arithmetic (rounding remainder to the first priority with availability),
 * the per-priority panic test (only when NTA < 100) and total panic. */
void ism_prio_compute(const struct ism_prio_input *in, struct ism_prio_load *out);

/* Envoy's effective locality weight: weight * min(1, OF/100 * eligible / (hosts -
 * excluded)), in integer arithmetic (rounded down); 0 when the locality has no
 * eligible host. */
uint32_t ism_locality_effective_weight(uint32_t weight, uint32_t eligible, uint32_t hosts,
				       uint32_t excluded, uint32_t overprovisioning);

/* The priority for a request, as Envoy's choosePriority: h % 100 + 1 walked
 * against the cumulative healthy loads of n priorities (isthmus has no degraded
 * hosts, so the degraded loads, which Envoy walks next, are 0); 0 when the
 * loads sum to less (Envoy's fallback). The worker's pick calls it. */
static inline uint32_t ism_prio_choose(const uint8_t *healthy_load, uint32_t n, uint32_t h)
{
	uint32_t x = h % 100 + 1, acc = 0;

	for (uint32_t i = 0; i < n && i < ISM_MAX_PRIORITIES; i++) {
		acc += healthy_load[i];
		if (x <= acc)
			return i;
	}
	return 0;
}

/* Envoy's previous_priorities retry priority (adjustForAttemptedPriorities):
 * the loads with the priorities in skip (bit p) left out, the rest spread by
 * their health (availability, 0..100) in priority order, remainders to the
 * first. Returns 0 with load[] written, or -1 (load untouched) when nothing is
 * left: then the original loads stand, as in Envoy. */
int ism_prio_skip(const uint8_t *health, uint32_t n, uint32_t skip, uint8_t *load);

/* A locality "region/zone/subzone" in its three parts. */
struct ism_locality {
	char region[64];
	char zone[64];
	char subzone[64];
};
/* The longest part of a locality: what struct ism_locality's fields hold. */
#define ISM_LOCALITY_PART_MAX (sizeof(((struct ism_locality *)0)->region) - 1)

/* Copies the parts of the locality s into out, those it lacks empty (all of
 * them for a NULL s). Returns how many parts s has (1 to 3; 0 for NULL), or
 * -EINVAL (out all empty) when it has more than three, one longer than
 * ISM_LOCALITY_PART_MAX, or, unless empty_ok, an empty one ("", "a//b"). */
int ism_locality_parse(const char *s, bool empty_ok, struct ism_locality *out);

/* Istio's LbPriority (pilot util.go) with `failover`: 0 same region+zone+subzone,
 * 1 same region+zone, 2 same region, 3 other region (and, when a failover entry
 * has from == the client's region, the endpoint's region equals its `to`), 4 a
 * region other than that `to`. n_failover entries of {from, to} region pairs;
 * the first entry whose from matches the client region is used. */
struct ism_failover {
	const char *from;
	const char *to;
};
uint32_t ism_locality_priority(const struct ism_locality *client, const struct ism_locality *ep,
			       const struct ism_failover *failover, uint32_t n_failover);

/* zoneAwareLbSetting's regional bucketing (Istio's
 * applyZoneAwareRegionalFailover): 0 the client's region (every zone), 1 the
 * `to` of the first failover entry whose from is the client's region, 2 any
 * other region. */
uint32_t ism_region_priority(const struct ism_locality *client, const struct ism_locality *ep,
			     const struct ism_failover *failover, uint32_t n_failover);

/* Compacts raw priorities in place to 0..K-1 keeping their order; returns K. */
uint32_t ism_priority_compact(uint32_t *prio, uint32_t n);

#endif
