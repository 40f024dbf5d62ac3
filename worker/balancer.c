#include "worker/balancer.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>

/* Per-worker state: nginx's smooth weighted round robin keeps one "current
 * weight" per peer; all clusters' peers live in one array, each cluster starting
 * at off[c]. The state belongs to one table generation (the endpoint arrays it
 * walks are that table's). */
struct ism_lb {
	const struct ism_table *table;
	uint32_t *off;
	int64_t *cur;
	/* candidates of the pick in progress, one flag per endpoint of the largest
	 * cluster: health is read once per pick, so a change during the pick
	 * (the master writes it concurrently) cannot make the set inconsistent */
	uint8_t *mark;
};

struct ism_lb *ism_lb_new(const struct ism_table *table)
{
	struct ism_lb *lb;
	size_t total = 0, widest = 0;
	uint32_t c;

	lb = calloc(1, sizeof(*lb));
	if (!lb)
		goto fail;
	lb->table = table;
	lb->off = calloc(table->n_clusters + 1, sizeof(*lb->off));
	if (!lb->off)
		goto fail_lb;
	for (c = 0; c < table->n_clusters; c++) {
		lb->off[c] = (uint32_t)total;
		total += table->clusters[c].n_endpoints;
		if (table->clusters[c].n_endpoints > widest)
			widest = table->clusters[c].n_endpoints;
	}
	lb->off[table->n_clusters] = (uint32_t)total;
	/* one extra slot so that a table without endpoints still gets a pointer */
	lb->cur = calloc(total + 1, sizeof(*lb->cur));
	if (!lb->cur)
		goto fail_off;
	lb->mark = calloc(widest + 1, 1);
	if (!lb->mark)
		goto fail_cur;
	return lb;

fail_cur:
	free(lb->cur);
fail_off:
	free(lb->off);
fail_lb:
	free(lb);
fail:
	return NULL;
}

void ism_lb_free(struct ism_lb *lb)
{
	if (!lb)
		return;
	free(lb->mark);
	free(lb->cur);
	free(lb->off);
	free(lb);
}

static bool eligible(const struct ism_endpoint *ep, const struct ism_ep_state *eps)
{
	const struct ism_ep_state *st;

	if (ep->id >= ISM_MAX_ENDPOINTS)
		return false;
	st = &eps[ep->id];
	return atomic_load_explicit(&st->health, memory_order_relaxed) == ISM_EP_HEALTHY &&
	       atomic_load_explicit(&st->admin, memory_order_relaxed) == ISM_EP_ADMIN_READY;
}

/* Weight 0 would starve a peer forever in smooth WRR; the configuration never
 * produces it (ServiceEntry weights are >= 1), so it counts as 1. */
static int64_t weight_of(const struct ism_endpoint *ep)
{
	return ep->weight ? ep->weight : 1;
}

/* The candidate set of one pick: the eligible endpoints of the chosen priority
 * group, without the excluded id when anything else is left. */
struct cand {
	const struct ism_cluster *cl;
	const struct ism_ep_state *eps;
	const uint8_t *mark;
};

static bool is_cand(const struct cand *k, uint32_t i)
{
	return k->mark[i] != 0;
}

/* Marks the candidates: the eligible endpoints of priority 0 when there is one,
 * else those of every other priority; then leaves out exclude_id when another
 * candidate remains. Returns the number of candidates. */
static uint32_t cand_init(struct ism_lb *lb, struct cand *k, const struct ism_cluster *cl,
			  const struct ism_ep_state *eps, uint32_t exclude_id)
{
	uint32_t i, n = 0, others = 0;
	bool p0 = false;

	k->cl = cl;
	k->eps = eps;
	k->mark = lb->mark;
	for (i = 0; i < cl->n_endpoints; i++) {
		lb->mark[i] = eligible(&cl->endpoints[i], eps);
		if (lb->mark[i] && cl->endpoints[i].priority == 0)
			p0 = true;
	}
	for (i = 0; i < cl->n_endpoints; i++) {
		if (lb->mark[i] && (cl->endpoints[i].priority == 0) != p0)
			lb->mark[i] = 0;
		if (!lb->mark[i])
			continue;
		n++;
		if (cl->endpoints[i].id != exclude_id)
			others++;
	}
	/* A retry avoids the previous host only inside the chosen priority, as
	 * Envoy's previous_hosts predicate does; with no other host it reuses it. */
	if (exclude_id != UINT32_MAX && others > 0 && others < n) {
		for (i = 0; i < cl->n_endpoints; i++)
			if (cl->endpoints[i].id == exclude_id)
				lb->mark[i] = 0;
		n = others;
	}
	return n;
}

static int pick_rr(struct ism_lb *lb, uint32_t c, const struct cand *k)
{
	int64_t *cur = lb->cur + lb->off[c];
	int64_t total = 0;
	int best = -1;
	uint32_t i;

	for (i = 0; i < k->cl->n_endpoints; i++) {
		if (!is_cand(k, i))
			continue;
		cur[i] += weight_of(&k->cl->endpoints[i]);
		total += weight_of(&k->cl->endpoints[i]);
		if (best < 0 || cur[i] > cur[best])
			best = (int)i;
	}
	cur[best] -= total;
	return best;
}

/* The i-th candidate (0-based), in endpoint order. */
static int nth_cand(const struct cand *k, uint32_t nth)
{
	uint32_t i;

	for (i = 0; i < k->cl->n_endpoints; i++)
		if (is_cand(k, i) && nth-- == 0)
			return (int)i;
	return -1;
}

/* Power of two choices: two distinct candidates drawn from the two halves of
 * rnd; the one with fewer requests in flight (across all workers) wins. */
static int pick_least(const struct cand *k, uint32_t n, uint32_t rnd)
{
	uint32_t a = (uint32_t)(((uint64_t)(rnd & 0xffff) * n) >> 16);
	uint32_t b = (uint32_t)(((uint64_t)(rnd >> 16) * n) >> 16);
	int ia, ib;

	if (n > 1 && a == b)
		b = (a + 1) % n;
	ia = nth_cand(k, a);
	ib = nth_cand(k, b);
	if (atomic_load_explicit(&k->eps[k->cl->endpoints[ib].id].inflight, memory_order_relaxed) <
	    atomic_load_explicit(&k->eps[k->cl->endpoints[ia].id].inflight, memory_order_relaxed))
		return ib;
	return ia;
}

static int pick_random(const struct cand *k, uint32_t rnd)
{
	uint64_t total = 0, target, cum = 0;
	uint32_t i;
	int last = -1;

	for (i = 0; i < k->cl->n_endpoints; i++)
		if (is_cand(k, i))
			total += (uint64_t)weight_of(&k->cl->endpoints[i]);
	target = ((uint64_t)rnd * total) >> 32;
	for (i = 0; i < k->cl->n_endpoints; i++) {
		if (!is_cand(k, i))
			continue;
		cum += (uint64_t)weight_of(&k->cl->endpoints[i]);
		last = (int)i;
		if (target < cum)
			break;
	}
	return last;
}

int ism_lb_pick(struct ism_lb *lb, uint32_t c, const struct ism_ep_state *eps, uint32_t exclude_id,
		uint32_t rnd)
{
	const struct ism_cluster *cl;
	struct cand k;
	uint32_t n;

	if (c >= lb->table->n_clusters)
		return -EINVAL;
	cl = &lb->table->clusters[c];
	n = cand_init(lb, &k, cl, eps, exclude_id);
	if (n == 0)
		return -ENOENT;
	switch (cl->lb) {
	case ISM_LB_LEAST_REQUEST:
		return pick_least(&k, n, rnd);
	case ISM_LB_RANDOM:
		return pick_random(&k, rnd);
	case ISM_LB_ROUND_ROBIN:
	default:
		return pick_rr(lb, c, &k);
	}
}
