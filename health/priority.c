/* SPDX-License-Identifier: Apache-2.0 */
/* Envoy's priority arithmetic (load_balancer_impl.cc: recalculatePerPriorityState,
 * distributeLoad, recalculatePerPriorityPanic, isHostSetInPanic,
 * recalculateLoadInTotalPanic, choosePriority), Envoy's effective locality weight
 * (upstream_impl.cc) and Istio's locality priorities (util.go LbPriority,
 * loadbalancer.go applyLocalityFailover / applyFailoverPriorityPerLocality).
 * Integer arithmetic throughout, as in Envoy, so that the loads are the code's
 * and not the documentation's rounded tables. */

#include "health/priority.h"

#include <errno.h>
#include <string.h>

static uint32_t min_u32(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

/* Hosts that count in a priority's denominator. A bad input with more excluded
 * than hosts counts as an empty priority rather than wrapping around. */
static uint32_t counted_hosts(const struct ism_prio_input *in, uint32_t i)
{
	return in->excluded[i] >= in->hosts[i] ? 0 : in->hosts[i] - in->excluded[i];
}

static uint8_t availability(uint32_t of, uint32_t n, uint32_t count)
{
	if (count == 0)
		return 0;
	uint64_t a = (uint64_t)of * n / count;
	return (uint8_t)(a > 100 ? 100 : a);
}

/* Envoy's distributeLoad: each priority in order takes min(remaining,
 * avail * 100 / NTA). Returns the first priority with nonzero availability (-1
 * when none) and leaves in *remaining what was not handed out. */
static int distribute(uint8_t *load, const uint8_t *avail, uint32_t n, uint32_t *remaining,
		      uint32_t nta)
{
	int first = -1;

	for (uint32_t i = 0; i < n; i++) {
		if (first < 0 && avail[i] > 0)
			first = (int)i;
		load[i] = (uint8_t)min_u32(*remaining, (uint32_t)avail[i] * 100 / nta);
		*remaining -= load[i];
	}
	return first;
}

/* Envoy's isHostSetInPanic: the raw percentage, without the overprovisioning
 * factor. Envoy compares a double with the integer threshold; floor(x) < t is
 * the same test as x < t for an integer t, so integer division is exact here.
 * An empty priority is at 0 % and so in panic whenever the threshold is > 0. */
static int in_panic(const struct ism_prio_input *in, uint32_t i, uint32_t threshold)
{
	uint32_t count = counted_hosts(in, i);
	uint64_t pct = count == 0 ? 0 : 100 * ((uint64_t)in->healthy[i] + in->degraded[i]) / count;

	return pct < threshold;
}

/* Envoy's recalculateLoadInTotalPanic: loads from raw host counts (excluded
 * hosts included, as Envoy's hosts().size()), the remainder to the first
 * non-empty priority, and P0 when the cluster has no host at all. */
static void total_panic_loads(const struct ism_prio_input *in, struct ism_prio_load *out,
			      uint32_t n)
{
	uint64_t total = 0;
	uint32_t left = 100;
	int first = -1;

	for (uint32_t i = 0; i < n; i++)
		total += in->hosts[i];
	memset(out->healthy_load, 0, sizeof(out->healthy_load));
	memset(out->degraded_load, 0, sizeof(out->degraded_load));
	if (total == 0) {
		out->healthy_load[0] = 100;
		return;
	}
	for (uint32_t i = 0; i < n; i++) {
		if (first < 0 && in->hosts[i] != 0)
			first = (int)i;
		out->healthy_load[i] = (uint8_t)(100 * (uint64_t)in->hosts[i] / total);
		left -= out->healthy_load[i];
	}
	out->healthy_load[first] = (uint8_t)(out->healthy_load[first] + left);
}

static void spill_loads(struct ism_prio_load *out, uint32_t n, uint32_t nta,
			const uint8_t *degraded)
{
	uint32_t remaining = 100;
	int first_healthy = distribute(out->healthy_load, out->health, n, &remaining, nta);
	int first_degraded = distribute(out->degraded_load, degraded, n, &remaining, nta);

	/* Rounding leftovers: NTA > 0 guarantees one of the two exists. */
	if (remaining == 0)
		return;
	if (first_healthy >= 0)
		out->healthy_load[first_healthy] =
		    (uint8_t)(out->healthy_load[first_healthy] + remaining);
	else if (first_degraded >= 0)
		out->degraded_load[first_degraded] =
		    (uint8_t)(out->degraded_load[first_degraded] + remaining);
}

void ism_prio_compute(const struct ism_prio_input *in, struct ism_prio_load *out)
{
	uint32_t n = min_u32(in->n_priorities, ISM_MAX_PRIORITIES);
	uint32_t threshold = min_u32(in->panic_threshold, 100);
	uint8_t degraded[ISM_MAX_PRIORITIES] = {0};
	uint32_t sum = 0;
	uint32_t all_panic = 1;

	memset(out, 0, sizeof(*out));
	out->n_priorities = n;
	for (uint32_t i = 0; i < n; i++) {
		uint32_t count = counted_hosts(in, i);

		out->health[i] = availability(in->overprovisioning, in->healthy[i], count);
		degraded[i] = availability(in->overprovisioning, in->degraded[i], count);
		sum += (uint32_t)out->health[i] + degraded[i];
	}
	out->nta = (uint8_t)min_u32(sum, 100);
	if (out->nta > 0)
		spill_loads(out, n, out->nta, degraded);

	/* Envoy: with panic disabled and nothing available, P0 nominally takes all
	 * the load (the pick then finds no healthy host: 503). */
	if (threshold == 0 && out->nta == 0) {
		out->healthy_load[0] = 100;
		return;
	}
	for (uint32_t i = 0; i < n; i++) {
		out->panic[i] = (uint8_t)(out->nta == 100 ? 0 : in_panic(in, i, threshold));
		all_panic &= out->panic[i];
	}
	if (n > 0 && all_panic) {
		out->total_panic = 1;
		total_panic_loads(in, out, n);
		return;
	}
	/* Not reachable with an overprovisioning factor >= 100 (a healthy host
	 * then gives an availability >= 1); with a smaller factor NTA can be 0
	 * while some priority is out of panic. Envoy leaves the loads stale there;
	 * P0 keeps the sum at 100. */
	if (out->nta == 0)
		out->healthy_load[0] = 100;
}

int ism_prio_skip(const uint8_t *health, uint32_t n, uint32_t skip, uint8_t *load)
{
	uint32_t total = 0, left = 100;

	n = min_u32(n, ISM_MAX_PRIORITIES);
	for (uint32_t i = 0; i < n; i++)
		if (!(skip >> i & 1))
			total += health[i];
	total = min_u32(total, 100);
	if (total == 0)
		return -1;
	memset(load, 0, n);
	/* Envoy hands out the shares again until nothing is left, so what the
	 * rounding leaves goes to the first priorities that can take it. */
	while (left != 0)
		for (uint32_t i = 0; i < n; i++) {
			uint32_t d =
			    skip >> i & 1 ? 0 : min_u32(left, (uint32_t)health[i] * 100 / total);

			load[i] = (uint8_t)(load[i] + d);
			left -= d;
		}
	return 0;
}

uint32_t ism_locality_effective_weight(uint32_t weight, uint32_t eligible, uint32_t hosts,
				       uint32_t excluded, uint32_t overprovisioning)
{
	uint64_t count = excluded >= hosts ? 0 : hosts - excluded;
	uint64_t num = (uint64_t)overprovisioning * eligible;

	if (count == 0 || eligible == 0)
		return 0;
	/* min(1, OF/100 * eligible/count) without floating point. */
	if (num >= 100 * count)
		return weight;
	return (uint32_t)((uint64_t)weight * num / (100 * count));
}

/* Copies s[0..len) into a part; a part that does not fit is refused rather
 * than truncated, since a truncated name could match another locality. */
static int copy_part(char *dst, const char *s, size_t len, bool empty_ok)
{
	if (len > ISM_LOCALITY_PART_MAX || (len == 0 && !empty_ok))
		return -EINVAL;
	memcpy(dst, s, len);
	dst[len] = '\0';
	return 0;
}

int ism_locality_parse(const char *s, bool empty_ok, struct ism_locality *out)
{
	char *parts[3] = {out->region, out->zone, out->subzone};
	int k = 0;

	memset(out, 0, sizeof(*out));
	if (s == NULL)
		return 0;
	for (;;) {
		const char *slash = strchr(s, '/');
		size_t len = slash ? (size_t)(slash - s) : strlen(s);

		if (k == 3 || copy_part(parts[k], s, len, empty_ok) < 0) {
			memset(out, 0, sizeof(*out));
			return -EINVAL;
		}
		k++;
		if (slash == NULL)
			return k;
		s = slash + 1;
	}
}

uint32_t ism_locality_priority(const struct ism_locality *client, const struct ism_locality *ep,
			       const struct ism_failover *failover, uint32_t n_failover)
{
	if (strcmp(client->region, ep->region) == 0) {
		if (strcmp(client->zone, ep->zone) != 0)
			return 2;
		return strcmp(client->subzone, ep->subzone) == 0 ? 0 : 1;
	}
	/* Istio applies only the first entry whose from is the client's region. */
	for (uint32_t i = 0; i < n_failover; i++) {
		if (failover[i].from == NULL || strcmp(failover[i].from, client->region) != 0)
			continue;
		if (failover[i].to == NULL || strcmp(failover[i].to, ep->region) != 0)
			return 4;
		break;
	}
	return 3;
}

uint32_t ism_region_priority(const struct ism_locality *client, const struct ism_locality *ep,
			     const struct ism_failover *failover, uint32_t n_failover)
{
	if (strcmp(client->region, ep->region) == 0)
		return 0;
	for (uint32_t i = 0; i < n_failover; i++) {
		if (failover[i].from == NULL || strcmp(failover[i].from, client->region) != 0)
			continue;
		return failover[i].to != NULL && strcmp(failover[i].to, ep->region) == 0 ? 1 : 2;
	}
	return 2;
}

/* K passes, each giving the next rank to every entry holding the smallest raw
 * value not yet ranked. In place without scratch memory: a rank is never larger
 * than the raw value it replaces, and every raw value not yet ranked is larger
 * than the last one ranked (prev), while every rank written is <= prev; so
 * "value > prev" tells the entries still to rank. O(K * n); K is small. */
uint32_t ism_priority_compact(uint32_t *prio, uint32_t n)
{
	uint32_t rank = 0;
	uint32_t prev = 0;

	for (;;) {
		uint32_t m = UINT32_MAX;
		int found = 0;

		for (uint32_t i = 0; i < n; i++) {
			if ((rank == 0 || prio[i] > prev) && (!found || prio[i] < m)) {
				m = prio[i];
				found = 1;
			}
		}
		if (!found)
			return rank;
		for (uint32_t i = 0; i < n; i++) {
			if ((rank == 0 || prio[i] > prev) && prio[i] == m)
				prio[i] = rank;
		}
		prev = m;
		rank++;
	}
}
