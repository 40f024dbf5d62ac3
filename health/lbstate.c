/* SPDX-License-Identifier: Apache-2.0 */
#include "health/lbstate.h"

#include "conf/defaults.h"
#include "health/outlier.h"
#include "health/priority.h"

/* Envoy's host counts per priority: an endpoint the operator keeps out
 * (drain, maint, weight 0) is excluded (out of the denominator), the rest count
 * as hosts, eligible ones as healthy. */
static void count(const struct ism_cluster *cl, const struct ism_shm_hdr *h,
		  struct ism_prio_input *in)
{
	in->n_priorities = cl->n_priorities ? cl->n_priorities : 1;
	if (in->n_priorities > ISM_MAX_PRIORITIES)
		in->n_priorities = ISM_MAX_PRIORITIES;
	in->overprovisioning =
	    cl->overprovisioning ? cl->overprovisioning : ISM_DEFAULT_OVERPROVISIONING;
	in->panic_threshold = cl->panic_threshold;
	for (uint32_t i = 0; i < cl->n_endpoints; i++) {
		const struct ism_endpoint *e = &cl->endpoints[i];
		uint32_t p = e->priority < in->n_priorities ? e->priority : in->n_priorities - 1;

		in->hosts[p]++;
		if (ism_ep_admin_out(&h->eps[e->id]))
			in->excluded[p]++;
		else if (ism_ep_eligible(h, e))
			in->healthy[p]++;
	}
}

/* What every group weight of cl is multiplied by before its health scales
 * it: 1000, so that a small weight keeps its fraction (the effective weight is
 * rounded down, and 1 * 70 % would otherwise be 0); less where the heaviest
 * group's would pass the 32 bits of an effective weight. One factor for all
 * groups keeps their proportions. */
static uint32_t group_scale(const struct ism_cluster *cl)
{
	uint32_t max = 1;

	for (uint32_t g = 0; g < cl->n_groups; g++)
		if (cl->groups[g].weight > max)
			max = cl->groups[g].weight;
	return max > UINT32_MAX / 1000 ? UINT32_MAX / max : 1000;
}

static uint32_t group_weight(const struct ism_cluster *cl, const struct ism_lgroup *g,
			     uint32_t scale, const struct ism_shm_hdr *h)
{
	uint32_t eligible = 0, excluded = 0;

	for (uint32_t i = g->first; i < g->first + g->count; i++) {
		const struct ism_endpoint *e = &cl->endpoints[i];

		if (ism_ep_admin_out(&h->eps[e->id]))
			excluded++;
		else if (ism_ep_eligible(h, e))
			eligible++;
	}
	return ism_locality_effective_weight(g->weight * scale, eligible, g->count, excluded,
					     cl->overprovisioning ? cl->overprovisioning
								  : ISM_DEFAULT_OVERPROVISIONING);
}

void ism_lbstate_compute(const struct ism_table *t, const struct ism_shm_hdr *h)
{
	for (uint32_t c = 0; c < t->n_clusters; c++) {
		const struct ism_cluster *cl = &t->clusters[c];
		struct ism_cluster_dyn *d = cl->dyn;
		struct ism_prio_input in = {0};
		struct ism_prio_load out = {0};
		uint32_t s, s_eff;

		if (d == NULL)
			continue;
		count(cl, h, &in);
		ism_prio_compute(&in, &out);
		/* Sequence counter: odd while writing, so a reader retries;
		 * even after, whatever a worker wrote in it. */
		s = (atomic_load_explicit(&d->seq, memory_order_relaxed) + 1) | 1u;
		atomic_store_explicit(&d->seq, s, memory_order_relaxed);
		atomic_thread_fence(memory_order_release);
		d->n_priorities = (uint8_t)out.n_priorities;
		d->total_panic = out.total_panic;
		for (uint32_t p = 0; p < ISM_MAX_PRIORITIES; p++) {
			/* No degraded hosts in isthmus: the degraded loads stay 0. */
			d->healthy_load[p] = p < out.n_priorities ? out.healthy_load[p] : 0;
			d->panic[p] = p < out.n_priorities ? out.panic[p] : 0;
			d->health[p] = p < out.n_priorities ? out.health[p] : 0;
		}
		s_eff = group_scale(cl);
		for (uint32_t g = 0; g < cl->n_groups && cl->eff_weight; g++)
			__atomic_store_n(&cl->eff_weight[g],
					 group_weight(cl, &cl->groups[g], s_eff, h),
					 __ATOMIC_RELAXED);
		atomic_store_explicit(&d->seq, s + 1, memory_order_release);
	}
}

/* How often cluster cl's ejections are looked at: its outlier detection's
 * interval; without one, often enough to return what a reload left ejected. */
static uint64_t sweep_every_ms(const struct ism_cluster *cl)
{
	if (cl->od == NULL)
		return ISM_OUTLIER_ORPHAN_SWEEP_MS;
	return cl->od->interval_ms ? cl->od->interval_ms : 10000;
}

int ism_lbstate_sweep(const struct ism_table *t, struct ism_shm_hdr *h,
		      const struct ism_shm_pub *pub, uint64_t *next_sweep, uint64_t now_ms,
		      uint64_t *next_due_ms)
{
	int changed = 0;

	*next_due_ms = UINT64_MAX;
	for (uint32_t c = 0; c < t->n_clusters; c++) {
		const struct ism_cluster *cl = &t->clusters[c];

		if (next_sweep[c] <= now_ms) {
			changed += ism_outlier_sweep(cl, h, pub, now_ms);
			next_sweep[c] = now_ms + sweep_every_ms(cl);
		}
		if (next_sweep[c] < *next_due_ms)
			*next_due_ms = next_sweep[c];
	}
	return changed;
}
