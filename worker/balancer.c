/* SPDX-License-Identifier: Apache-2.0 */
#include "worker/balancer.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "health/outlier.h"
#include "health/priority.h"
#include "health/warmup.h"
#include "lib/log.h"
#include "shm/table.h"
#include "worker/hash.h"

/* A set of eligible endpoints of one cluster, as Envoy's host sets per
 * priority and locality: their indices in the cluster's endpoint array, in
 * order, kept until the health epoch moves (every change of an endpoint's
 * health, ejection or admin state moves it once the change is stored), so a
 * pick reads no endpoint's state and draws its candidates in constant time,
 * where it scanned the whole cluster at each request. */
struct lb_set {
	uint64_t stamp; /* the health epoch + 1 it was built at; 0: not yet */
	uint32_t start; /* its list in ism_lb.idx */
	uint32_t n;
	/* round robin among equal weights: the endpoint index the next pick
	 * starts from, its own per set as Envoy's index per locality and
	 * priority, first drawn at random per worker */
	uint32_t rr;
	bool equal; /* the weights in force of its endpoints are equal */
};

/* A cluster's sets, at sets + set_off[c]: per priority below np[c], the
 * eligible endpoints, then those not kept out (the priority in panic), then
 * the whole cluster's eligible ones, then per locality group its eligible
 * ones. */
#define SET_PRIO(p)	  (p)
#define SET_PANIC(np, p)  ((np) + (p))
#define SET_ALL(np)	  (2 * (np))
#define SET_GROUP(np, g)  (2 * (np) + 1 + (g))
#define SETS(np, ngroups) (2 * (np) + 1 + (ngroups))

/* Per-worker state: nginx's smooth weighted round robin keeps one "current
 * weight" per peer; all clusters' peers live in one array, each cluster starting
 * at off[c]. The state belongs to one table generation (the endpoint arrays it
 * walks are that table's). */
struct ism_lb {
	const struct ism_table *table;
	uint32_t *off;
	int64_t *cur;
	/* weighted least request: Envoy's EDF schedule, one deadline per endpoint
	 * and one virtual time per cluster */
	double *deadline;
	double *vtime;
	/* the candidate sets (struct lb_set), their lists, and per cluster its
	 * first set and its priorities with sets */
	struct lb_set *sets;
	uint32_t *idx;
	uint32_t *set_off;
	uint8_t *np;
	/* a retry's candidates (the set less the hosts tried): one entry per
	 * endpoint of the largest cluster */
	uint32_t *scratch;
};

/* The candidate sets' layout for table into lb (sets, idx, set_off, np). */
static int sets_new(struct ism_lb *lb, const struct ism_table *table)
{
	/* Each worker's rotations start elsewhere (Envoy seeds them at random). */
	uint64_t seed = (uint64_t)getpid() * 0x9E3779B97F4A7C15ULL ^ ism_now_ms();
	size_t n_sets = 0, n_idx = 0;

	lb->set_off = calloc(table->n_clusters + 1, sizeof(*lb->set_off));
	lb->np = calloc(table->n_clusters + 1, 1);
	if (lb->set_off == NULL || lb->np == NULL)
		return -ENOMEM;
	for (uint32_t c = 0; c < table->n_clusters; c++) {
		const struct ism_cluster *cl = &table->clusters[c];
		uint32_t np = 0;

		for (uint32_t i = 0; i < cl->n_endpoints; i++)
			if (cl->endpoints[i].priority < ISM_MAX_PRIORITIES &&
			    cl->endpoints[i].priority >= np)
				np = cl->endpoints[i].priority + 1u;
		lb->np[c] = (uint8_t)np;
		lb->set_off[c] = (uint32_t)n_sets;
		n_sets += SETS(np, cl->n_groups);
	}
	lb->set_off[table->n_clusters] = (uint32_t)n_sets;
	lb->sets = calloc(n_sets + 1, sizeof(*lb->sets));
	if (lb->sets == NULL)
		return -ENOMEM;
	for (uint32_t c = 0; c < table->n_clusters; c++) {
		const struct ism_cluster *cl = &table->clusters[c];
		struct lb_set *s = lb->sets + lb->set_off[c];
		uint32_t np = lb->np[c], per[ISM_MAX_PRIORITIES] = {0};

		for (uint32_t k = 0; k < SETS(np, cl->n_groups) && cl->n_endpoints > 0; k++) {
			seed = seed * 6364136223846793005ULL + 1442695040888963407ULL;
			s[k].rr = (uint32_t)((seed >> 33) % cl->n_endpoints);
		}

		for (uint32_t i = 0; i < cl->n_endpoints; i++)
			if (cl->endpoints[i].priority < np)
				per[cl->endpoints[i].priority]++;
		for (uint32_t p = 0; p < np; p++) {
			s[SET_PRIO(p)].start = (uint32_t)n_idx;
			n_idx += per[p];
			s[SET_PANIC(np, p)].start = (uint32_t)n_idx;
			n_idx += per[p];
		}
		s[SET_ALL(np)].start = (uint32_t)n_idx;
		n_idx += cl->n_endpoints;
		for (uint32_t g = 0; g < cl->n_groups; g++) {
			s[SET_GROUP(np, g)].start = (uint32_t)n_idx;
			n_idx += cl->groups[g].count;
		}
	}
	lb->idx = calloc(n_idx + 1, sizeof(*lb->idx));
	return lb->idx != NULL ? 0 : -ENOMEM;
}

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
	lb->scratch = calloc(widest + 1, sizeof(*lb->scratch));
	lb->deadline = calloc(total + 1, sizeof(*lb->deadline));
	lb->vtime = calloc(table->n_clusters + 1, sizeof(*lb->vtime));
	if (!lb->scratch || !lb->deadline || !lb->vtime || sets_new(lb, table) < 0) {
		ism_lb_free(lb);
		return NULL;
	}
	return lb;

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
	free(lb->deadline);
	free(lb->vtime);
	free(lb->scratch);
	free(lb->sets);
	free(lb->idx);
	free(lb->set_off);
	free(lb->np);
	free(lb->cur);
	free(lb->off);
	free(lb);
}

static bool eligible(const struct ism_endpoint *ep, const struct ism_shm_hdr *h, bool panic)
{
	if (ep->id >= ISM_MAX_ENDPOINTS)
		return false;
	if (panic)
		return !ism_ep_admin_out(&h->eps[ep->id]);
	return ism_ep_eligible(h, ep);
}

/* The master's latest loads for the cluster, copied under its sequence counter.
 * Before the first computation (n_priorities 0) everything goes to priority 0.
 * A counter that never settles (another worker wrote it) is given up on after
 * ISM_SEQ_TRIES reads: what was read then is used, the count bounded. */
static void read_loads(const struct ism_cluster *cl, struct ism_cluster_dyn *out)
{
	const struct ism_cluster_dyn *d = cl->dyn;
	uint32_t s1, s2, tries = 0;

	memset(out, 0, sizeof(*out));
	if (d == NULL) {
		out->n_priorities = 1;
		out->healthy_load[0] = 100;
		return;
	}
	do {
		s1 = atomic_load_explicit(&d->seq, memory_order_acquire);
		out->n_priorities = d->n_priorities;
		out->total_panic = d->total_panic;
		memcpy(out->healthy_load, d->healthy_load, sizeof(out->healthy_load));
		memcpy(out->panic, d->panic, sizeof(out->panic));
		memcpy(out->health, d->health, sizeof(out->health));
		atomic_thread_fence(memory_order_acquire);
		s2 = atomic_load_explicit(&d->seq, memory_order_relaxed);
	} while (((s1 & 1) || s1 != s2) && ++tries < ISM_SEQ_TRIES);
	out->n_priorities = (uint8_t)ism_dyn_priorities(out);
	if (out->n_priorities == 0) {
		out->n_priorities = 1;
		out->healthy_load[0] = 100;
	}
}

/* Weight 0 would starve a peer forever in smooth WRR; the configuration never
 * produces it (ServiceEntry weights are >= 1), so it counts as 1. */
static int64_t weight_of(const struct ism_endpoint *ep)
{
	return ep->weight ? ep->weight : 1;
}

/* The weight in force: the control socket's, or the configured one. A weight
 * 0 set there never gets here: such an endpoint is no candidate (see
 * ism_ep_admin_out), and it would read 1 if it raced in. */
static int64_t weight_now(const struct ism_endpoint *ep, const struct ism_ep_state *eps)
{
	uint32_t w = atomic_load_explicit(&eps[ep->id].weight, memory_order_relaxed);

	if (!(w & ISM_EP_WEIGHT_SET))
		return weight_of(ep);
	w &= ~ISM_EP_WEIGHT_SET;
	return w ? w : 1;
}

/* The candidate set of one pick: the eligible endpoints of the chosen priority
 * group, without the excluded id when anything else is left. */
struct cand {
	const struct ism_cluster *cl;
	const struct ism_ep_state *eps;
	const uint32_t *idx; /* the candidates' indices in the cluster, ascending */
	uint32_t n;
	bool equal;   /* their weights in force are equal */
	uint32_t *rr; /* the set's round-robin start (struct lb_set) */
	uint64_t now; /* monotonic ms */
	bool warming; /* a candidate is in its warmup: weights are scaled */
};

/* The position of the first candidate at endpoint index i or after (n when
 * none): a binary search of the ascending list. */
static uint32_t cand_from(const struct cand *k, uint32_t i)
{
	uint32_t lo = 0, hi = k->n;

	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (k->idx[mid] < i)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* Whether endpoint i is a candidate. */
static bool is_cand(const struct cand *k, uint32_t i)
{
	uint32_t j = cand_from(k, i);

	return j < k->n && k->idx[j] == i;
}

/* The share of its weight candidate endpoint ep has now (health/warmup.h). */
static double warm_factor(const struct cand *k, const struct ism_endpoint *ep)
{
	return ism_warmup_factor(k->cl, &k->eps[ep->id], k->now);
}

/* Whether a candidate of the pick is warming up (then Envoy weighs every
 * pick, as when the weights differ). */
static bool any_warming(const struct cand *k)
{
	if (k->cl->warmup_ms == 0)
		return false;
	for (uint32_t j = 0; j < k->n; j++)
		if (warm_factor(k, &k->cl->endpoints[k->idx[j]]) < 1.0)
			return true;
	return false;
}

/* Round robin's integer weight of candidate i in a cluster that warms
 * endpoints up: the weight in force in thousandths (so that the scaled
 * weights keep their proportions), scaled by the warmup. */
static int64_t rr_weight(const struct cand *k, uint32_t i)
{
	const struct ism_endpoint *ep = &k->cl->endpoints[i];
	double x =
	    (double)weight_now(ep, k->eps) * 1000.0 * (k->warming ? warm_factor(k, ep) : 1.0);

	return x >= 1.0 ? (int64_t)x : 1;
}

/* rnd (uniform in 0..2^32) scaled to 0..total: total is a sum of 32-bit
 * weights, which passes 2^32, so the product takes 128 bits. */
static inline uint64_t scale_rnd(uint32_t rnd, uint64_t total)
{
	return (uint64_t)(((unsigned __int128)rnd * total) >> 32);
}

/* In a locality-weighted cluster: one group of priority p, chosen by effective
 * weight (weighted random). Returns the group index, or -1 when every effective
 * weight is 0 (then the whole priority is used). */
static int choose_group(const struct ism_cluster *cl, uint32_t p, uint32_t rnd)
{
	uint64_t total = 0, target, cum = 0;

	for (uint32_t g = 0; g < cl->n_groups; g++)
		if (cl->groups[g].priority == p)
			total += __atomic_load_n(&cl->eff_weight[g], __ATOMIC_RELAXED);
	if (total == 0)
		return -1;
	target = scale_rnd(rnd, total);
	for (uint32_t g = 0; g < cl->n_groups; g++) {
		if (cl->groups[g].priority != p)
			continue;
		cum += __atomic_load_n(&cl->eff_weight[g], __ATOMIC_RELAXED);
		if (target < cum)
			return (int)g;
	}
	return -1;
}

/* Set which of cluster c (cl), built anew from the endpoints' states when the
 * health epoch moved since it was (stamp: the epoch + 1, read before any
 * state): the eligible endpoints of a priority or of the whole cluster, those
 * not kept out for a priority in panic, or a locality group's. */
static struct lb_set *set_get(struct ism_lb *lb, uint32_t c, const struct ism_cluster *cl,
			      const struct ism_shm_hdr *h, uint64_t stamp, uint32_t which)
{
	struct lb_set *s = &lb->sets[lb->set_off[c] + which];
	uint32_t *out = lb->idx + s->start, np = lb->np[c], first = 0, end = cl->n_endpoints;
	uint32_t n = 0;
	int64_t w = -1;
	bool panic = false;
	int p = -1;

	if (s->stamp == stamp)
		return s;
	if (which >= SET_GROUP(np, 0)) {
		first = cl->groups[which - SET_GROUP(np, 0)].first;
		end = first + cl->groups[which - SET_GROUP(np, 0)].count;
	} else if (which < SET_PANIC(np, 0)) {
		p = (int)which;
	} else if (which < SET_ALL(np)) {
		p = (int)(which - SET_PANIC(np, 0));
		panic = true;
	}
	s->equal = true;
	for (uint32_t i = first; i < end && i < cl->n_endpoints; i++) {
		const struct ism_endpoint *ep = &cl->endpoints[i];
		int64_t wi;

		if ((p >= 0 && ep->priority != (uint32_t)p) || !eligible(ep, h, panic))
			continue;
		out[n++] = i;
		wi = weight_now(ep, h->eps);
		s->equal = s->equal && (w < 0 || wi == w);
		w = wi;
	}
	s->n = n;
	s->stamp = stamp;
	return s;
}

/* The eligible endpoints of priority p (not kept out, in panic), or none
 * when no endpoint has that priority. */
static struct lb_set *prio_set(struct ism_lb *lb, uint32_t c, const struct ism_cluster *cl,
			       const struct ism_shm_hdr *h, uint64_t stamp, uint32_t p, bool panic)
{
	uint32_t np = lb->np[c];

	if (p >= np)
		return NULL;
	return set_get(lb, c, cl, h, stamp, panic ? SET_PANIC(np, p) : SET_PRIO(p));
}

static bool excluded(const struct ism_lb_req *rq, uint32_t id)
{
	for (uint32_t j = 0; j < rq->n_exclude; j++)
		if (rq->exclude[j] == id)
			return true;
	return false;
}

/* Whether the weights in force of the candidates are equal. */
static bool equal_weights(const struct cand *k)
{
	int64_t w = -1;

	for (uint32_t j = 0; j < k->n; j++) {
		int64_t wi = weight_now(&k->cl->endpoints[k->idx[j]], k->eps);

		if (w >= 0 && wi != w)
			return false;
		w = wi;
	}
	return true;
}

/* Chooses the candidates of this pick (see balancer.h); then leaves out the
 * excluded ids when another candidate remains. Returns the number of
 * candidates. */
static uint32_t cand_init(struct ism_lb *lb, struct cand *k, uint32_t c,
			  const struct ism_cluster *cl, const struct ism_shm_hdr *h,
			  const struct ism_lb_req *rq)
{
	/* Read before any endpoint's state: a change stored meanwhile moves
	 * the epoch after, and the next pick builds the set again. */
	uint64_t stamp = atomic_load_explicit(&h->health_epoch, memory_order_acquire) + 1;
	struct lb_set *s = NULL;
	struct ism_cluster_dyn ld;
	uint32_t others = 0, p;
	bool panic, hashed;
	int g = -1;

	k->cl = cl;
	k->eps = h->eps;
	read_loads(cl, &ld);
	if (rq->skip_prio != 0)
		ism_prio_skip(ld.health, ld.n_priorities, rq->skip_prio, ld.healthy_load);
	/* A hashing cluster draws the priority and the locality from the key,
	 * as Envoy's hashing balancers choose the priority with the key's hash
	 * and fold locality weights into the ring: a key keeps its endpoint
	 * while the loads and weights stay. */
	hashed = rq->has_hash && (cl->lb == ISM_LB_RING_HASH || cl->lb == ISM_LB_MAGLEV);
	p = ism_prio_choose(ld.healthy_load, ld.n_priorities,
			    (uint32_t)((hashed ? rq->hash : rq->rnd) % 100));
	panic = ld.total_panic || ld.panic[p];
	if (cl->locality_weighted && !panic && cl->dyn != NULL)
		g = choose_group(cl, p, hashed ? (uint32_t)(rq->hash >> 32) : rq->rnd2);
	if (g >= 0)
		s = set_get(lb, c, cl, h, stamp, SET_GROUP(lb->np[c], (uint32_t)g));
	if (s == NULL || s->n == 0)
		s = prio_set(lb, c, cl, h, stamp, p, panic);
	/* The loads lag health by one recomputation, and in panic they count
	 * endpoints the control socket keeps out (as Envoy's counts its
	 * excluded hosts), which no request goes to: fall back to the first
	 * priority with an endpoint to take it, as a request given that
	 * priority would find it (its panic set in panic), one the retry does
	 * not leave out if there is one. */
	for (uint32_t q = 0; (s == NULL || s->n == 0) && q < ld.n_priorities; q++)
		if (!(rq->skip_prio >> q & 1))
			s = prio_set(lb, c, cl, h, stamp, q, ld.total_panic || ld.panic[q]);
	for (uint32_t q = 0; (s == NULL || s->n == 0) && rq->skip_prio != 0 && q < ld.n_priorities;
	     q++)
		s = prio_set(lb, c, cl, h, stamp, q, ld.total_panic || ld.panic[q]);
	if ((s == NULL || s->n == 0) && ld.n_priorities <= 1)
		s = set_get(lb, c, cl, h, stamp, SET_ALL(lb->np[c]));
	if (s == NULL || s->n == 0)
		return 0;
	k->idx = lb->idx + s->start;
	k->n = s->n;
	k->equal = s->equal;
	k->rr = &s->rr;
	if (rq->n_exclude == 0)
		return k->n;
	for (uint32_t j = 0; j < s->n; j++)
		if (!excluded(rq, cl->endpoints[k->idx[j]].id))
			lb->scratch[others++] = k->idx[j];
	/* A retry avoids the hosts tried only inside the chosen set, as Envoy's
	 * previous_hosts predicate does; with no other host it reuses them. */
	if (others > 0 && others < k->n) {
		k->idx = lb->scratch;
		k->n = others;
		k->equal = k->equal || equal_weights(k);
	}
	return k->n;
}

static int pick_rr(struct ism_lb *lb, uint32_t c, const struct cand *k)
{
	int64_t *cur = lb->cur + lb->off[c];
	const bool warm = k->cl->warmup_ms != 0;
	int64_t total = 0;
	int best = -1;

	/* Equal weights: the smooth schedule is a rotation in endpoint order,
	 * the candidate after the last one picked (Envoy's round robin). */
	if (k->equal && !k->warming) {
		uint32_t j = cand_from(k, *k->rr);

		best = (int)k->idx[j < k->n ? j : 0];
		*k->rr = (uint32_t)best + 1;
		return best;
	}
	for (uint32_t j = 0; j < k->n; j++) {
		uint32_t i = k->idx[j];
		int64_t w = warm ? rr_weight(k, i) : weight_now(&k->cl->endpoints[i], k->eps);

		cur[i] += w;
		total += w;
		if (best < 0 || cur[i] > cur[best])
			best = (int)i;
	}
	cur[best] -= total;
	return best;
}

/* Power of two choices: two candidates drawn from the two halves of rnd, with
 * replacement as Envoy draws them (with two endpoints, the busier one is still
 * picked when both draws take it: a quarter of the picks); the one with the
 * lower (in flight + 1) / weight wins, the first on a tie (in flight counted
 * across all workers), which is plain P2C when the weights are equal. */
static int pick_least(const struct cand *k, uint32_t n, uint32_t rnd)
{
	uint32_t a = (uint32_t)(((uint64_t)(rnd & 0xffff) * n) >> 16);
	uint32_t b = (uint32_t)(((uint64_t)(rnd >> 16) * n) >> 16);
	uint64_t la, lb;
	int ia, ib;

	ia = (int)k->idx[a];
	ib = (int)k->idx[b];
	la = (uint64_t)(atomic_load_explicit(&k->eps[k->cl->endpoints[ia].id].inflight,
					     memory_order_relaxed) +
			1) *
	     (uint64_t)weight_now(&k->cl->endpoints[ib], k->eps);
	lb = (uint64_t)(atomic_load_explicit(&k->eps[k->cl->endpoints[ib].id].inflight,
					     memory_order_relaxed) +
			1) *
	     (uint64_t)weight_now(&k->cl->endpoints[ia], k->eps);
	return lb < la ? ib : ia;
}

/* The distance between two picks of candidate i in the least-request
 * schedule: 1 / its weight, Envoy's weight / (in flight + 1) (active_request_bias
 * 1.0) scaled by the warmup. */
static double edf_step(const struct cand *k, uint32_t i)
{
	const struct ism_endpoint *ep = &k->cl->endpoints[i];
	double w = (double)weight_now(ep, k->eps) * (k->warming ? warm_factor(k, ep) : 1.0);

	return (double)(atomic_load_explicit(&k->eps[ep->id].inflight, memory_order_relaxed) + 1) /
	       w;
}

/* Envoy's weighted least request: an earliest-deadline-first schedule whose
 * steps (edf_step) are evaluated when an endpoint is (re)scheduled after being
 * picked. */
static int pick_least_edf(struct ism_lb *lb, uint32_t c, const struct cand *k)
{
	double *dl = lb->deadline + lb->off[c];
	double *vt = &lb->vtime[c];
	int best = -1;

	for (uint32_t j = 0; j < k->n; j++) {
		uint32_t i = k->idx[j];

		/* New in the schedule, or back after a spell out of it. */
		if (dl[i] < *vt)
			dl[i] = *vt + edf_step(k, i);
		if (best < 0 || dl[i] < dl[best])
			best = (int)i;
	}
	*vt = dl[best];
	dl[best] = *vt + edf_step(k, (uint32_t)best);
	return best;
}

/* Consistent hash: the table position of the key, then on to the first
 * candidate, so a key keeps its endpoint while that endpoint is eligible. */
static int pick_hash(const struct cand *k, uint64_t hash)
{
	const struct ism_hash_policy *hp = &k->cl->hash;
	uint32_t pos;

	if (hp->table_len == 0)
		return -1;
	if (k->cl->lb == ISM_LB_RING_HASH)
		pos = ism_ring_lookup(hp->ring_hashes, hp->table_len, hash);
	else
		pos = (uint32_t)(hash % hp->table_len);
	for (uint32_t i = 0; i < hp->table_len; i++) {
		uint32_t e = hp->table[(pos + i) % hp->table_len];

		if (e < k->cl->n_endpoints && is_cand(k, e))
			return (int)e;
	}
	return -1;
}

static int pick_random(const struct cand *k, uint32_t rnd)
{
	uint64_t total = 0, target, cum = 0;
	int last = -1;

	for (uint32_t j = 0; j < k->n; j++)
		total += (uint64_t)weight_now(&k->cl->endpoints[k->idx[j]], k->eps);
	target = scale_rnd(rnd, total);
	for (uint32_t j = 0; j < k->n; j++) {
		cum += (uint64_t)weight_now(&k->cl->endpoints[k->idx[j]], k->eps);
		last = (int)k->idx[j];
		if (target < cum)
			break;
	}
	return last;
}

int ism_lb_pick(struct ism_lb *lb, uint32_t c, const struct ism_shm_hdr *h,
		const struct ism_lb_req *rq)
{
	const struct ism_cluster *cl;
	struct cand k;
	uint32_t n;
	int e;

	if (c >= lb->table->n_clusters)
		return -EINVAL;
	cl = &lb->table->clusters[c];
	if (cl->n_endpoints == 0)
		return -ENOENT;
	n = cand_init(lb, &k, c, cl, h, rq);
	if (n == 0)
		return -ENOENT;
	k.now = rq->now_ms;
	k.warming = any_warming(&k);
	switch (cl->lb) {
	case ISM_LB_LEAST_REQUEST:
		return k.equal && !k.warming ? pick_least(&k, n, rq->rnd)
					     : pick_least_edf(lb, c, &k);
	case ISM_LB_RANDOM:
		return pick_random(&k, rq->rnd);
	case ISM_LB_RING_HASH:
	case ISM_LB_MAGLEV:
		/* No key in the request: Envoy picks at random. */
		e = rq->has_hash ? pick_hash(&k, rq->hash) : -1;
		return e >= 0 ? e : pick_random(&k, rq->rnd);
	case ISM_LB_ROUND_ROBIN:
	default:
		return pick_rr(lb, c, &k);
	}
}
