/* SPDX-License-Identifier: Apache-2.0 */
/* Balancer unit tests: smooth weighted round robin, eligibility, priority
 * (own zone first, spill-over, return), retry exclusion, least request, random. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "worker/balancer.h"
#include "worker/hash.h"

#define EP(i, w, p)                                                                                \
	{                                                                                          \
		.id = (i), .od = (i), .weight = (w), .priority = (p)                               \
	}

static const struct ism_endpoint c0_eps[] = {EP(0, 1, 0), EP(1, 2, 0), EP(2, 3, 0)};
static const struct ism_endpoint c1_eps[] = {EP(10, 1, 0), EP(11, 1, 0), EP(12, 1, 1),
					     EP(13, 1, 1)};
static const struct ism_endpoint c2_eps[] = {EP(20, 1, 0), EP(21, 1, 0), EP(22, 1, 0)};
static const struct ism_endpoint c3_eps[] = {EP(30, 1, 0), EP(31, 3, 0)};
static const struct ism_endpoint c5_eps[] = {EP(40, 1, 0), EP(41, 1, 0)};
static const struct ism_endpoint c6_eps[] = {EP(50, 1, 0), EP(51, 3, 0)};
static const struct ism_endpoint c7_eps[] = {EP(60, 1, 0), EP(61, 1, 0)};
static const struct ism_endpoint c8_eps[] = {EP(70, 1, 0), EP(71, 1, 0)};
/* cluster 5's endpoints as another cluster (a subset) holds them: their own
 * outlier slots */
static const struct ism_endpoint c9_eps[] = {{.id = 40, .od = 140, .weight = 1},
					     {.id = 41, .od = 141, .weight = 1}};

/* three priorities, as the master publishes them: everything to P0 */
static const struct ism_endpoint c10_eps[] = {EP(80, 1, 0), EP(81, 1, 0), EP(82, 1, 1),
					      EP(83, 1, 2)};
static struct ism_cluster_dyn c10_dyn = {
    .n_priorities = 3, .healthy_load = {100}, .health = {100, 100, 100}};

/* Maglev over two priorities (loads 70/30), the first with two locality
 * groups of equal effective weight: a key keeps its endpoint whatever the
 * random numbers say. */
static const struct ism_endpoint c11_eps[] = {EP(90, 1, 0), EP(91, 1, 0), EP(92, 1, 0),
					      EP(93, 1, 0), EP(94, 1, 1), EP(95, 1, 1)};
static const struct ism_lgroup c11_groups[] = {
    {.priority = 0, .weight = 2, .first = 0, .count = 2},
    {.priority = 0, .weight = 2, .first = 2, .count = 2},
    {.priority = 1, .weight = 2, .first = 4, .count = 2}};
static uint32_t c11_eff[] = {50, 50, 100};
static struct ism_cluster_dyn c11_dyn = {
    .n_priorities = 2, .healthy_load = {70, 30}, .health = {100, 100}};
static const uint32_t c11_table[] = {0, 1, 2, 3, 4, 5};

/* Weights of 32 bits, whose sums pass 2^32: random over two endpoints of
 * the largest weight; a locality-weighted cluster whose two groups have
 * effective weights of 4e9 each. */
static const struct ism_endpoint c12_eps[] = {EP(100, UINT32_MAX, 0), EP(101, UINT32_MAX, 0)};
static const struct ism_endpoint c13_eps[] = {EP(110, 1, 0), EP(111, 1, 0)};
static const struct ism_lgroup c13_groups[] = {
    {.priority = 0, .weight = UINT32_MAX, .first = 0, .count = 1},
    {.priority = 0, .weight = UINT32_MAX, .first = 1, .count = 1}};
static uint32_t c13_eff[] = {4000000000u, 4000000000u};
static struct ism_cluster_dyn c13_dyn = {.n_priorities = 1, .healthy_load = {100}, .health = {100}};
/* Round robin over two localities of two endpoints each, equal weights. */
static const struct ism_endpoint c14_eps[] = {EP(120, 1, 0), EP(121, 1, 0), EP(122, 1, 0),
					      EP(123, 1, 0)};
static const struct ism_lgroup c14_groups[] = {
    {.priority = 0, .weight = 1, .first = 0, .count = 2},
    {.priority = 0, .weight = 1, .first = 2, .count = 2}};
static uint32_t c14_eff[] = {1, 1};
static struct ism_cluster_dyn c14_dyn = {.n_priorities = 1, .healthy_load = {100}, .health = {100}};

static const struct ism_cluster clusters[] = {
    {.lb = ISM_LB_ROUND_ROBIN, .n_endpoints = 3, .endpoints = c0_eps},
    {.lb = ISM_LB_ROUND_ROBIN, .n_endpoints = 4, .endpoints = c1_eps},
    {.lb = ISM_LB_LEAST_REQUEST, .n_endpoints = 3, .endpoints = c2_eps},
    {.lb = ISM_LB_RANDOM, .n_endpoints = 2, .endpoints = c3_eps},
    {.lb = ISM_LB_ROUND_ROBIN, .n_endpoints = 0, .endpoints = NULL},
    {.lb = ISM_LB_LEAST_REQUEST, .n_endpoints = 2, .endpoints = c5_eps},
    {.lb = ISM_LB_LEAST_REQUEST, .n_endpoints = 2, .endpoints = c6_eps},
    /* warmup 10 s: linear from 10 %; from 1 %, aggression 0.5 (quadratic) */
    {.lb = ISM_LB_ROUND_ROBIN,
     .n_endpoints = 2,
     .endpoints = c7_eps,
     .warmup_ms = 10000,
     .warmup_aggression = 1.0,
     .warmup_minimum = 0.1},
    {.lb = ISM_LB_LEAST_REQUEST,
     .n_endpoints = 2,
     .endpoints = c8_eps,
     .warmup_ms = 10000,
     .warmup_aggression = 0.5,
     .warmup_minimum = 0.01},
    {.lb = ISM_LB_ROUND_ROBIN, .n_endpoints = 2, .endpoints = c9_eps},
    {.lb = ISM_LB_ROUND_ROBIN, .n_endpoints = 4, .endpoints = c10_eps, .dyn = &c10_dyn},
    {.lb = ISM_LB_MAGLEV,
     .n_endpoints = 6,
     .endpoints = c11_eps,
     .dyn = &c11_dyn,
     .eff_weight = c11_eff,
     .locality_weighted = 1,
     .n_groups = 3,
     .groups = c11_groups,
     .hash = {.table = c11_table, .table_len = 6}},
    {.lb = ISM_LB_RANDOM, .n_endpoints = 2, .endpoints = c12_eps},
    {.lb = ISM_LB_ROUND_ROBIN,
     .n_endpoints = 2,
     .endpoints = c13_eps,
     .dyn = &c13_dyn,
     .eff_weight = c13_eff,
     .locality_weighted = 1,
     .n_groups = 2,
     .groups = c13_groups},
    {.lb = ISM_LB_ROUND_ROBIN,
     .n_endpoints = 4,
     .endpoints = c14_eps,
     .dyn = &c14_dyn,
     .eff_weight = c14_eff,
     .locality_weighted = 1,
     .n_groups = 2,
     .groups = c14_groups},
};

static const struct ism_table table = {
    .magic = ISM_TABLE_MAGIC,
    .n_clusters = 15,
    .clusters = clusters,
};

struct fixture {
	struct ism_lb *lb;
	struct ism_shm_hdr *h;
	struct ism_ep_state *eps; /* h->eps */
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	f->h = aligned_alloc(ISM_CACHELINE, sizeof(*f->h));
	if (!f->h)
		return -1;
	/* all zero: healthy, admin ready, nothing in flight, nothing ejected */
	memset(f->h, 0, sizeof(*f->h));
	f->eps = f->h->eps;
	f->lb = ism_lb_new(&table);
	if (!f->lb)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	ism_lb_free(f->lb);
	free(f->h);
	free(f);
	return 0;
}

static int lbpick(struct fixture *f, uint32_t c, uint32_t excl, uint32_t rnd)
{
	struct ism_lb_req rq = {
	    .exclude = &excl, .n_exclude = excl != UINT32_MAX, .rnd = rnd, .rnd2 = rnd};

	return ism_lb_pick(f->lb, c, f->h, &rq);
}

/* The id of the endpoint picked in cluster c. */
static int pick_id(struct fixture *f, uint32_t c, uint32_t excl, uint32_t rnd)
{
	int i = lbpick(f, c, excl, rnd);

	if (i < 0)
		return i;
	assert_true((uint32_t)i < clusters[c].n_endpoints);
	return (int)clusters[c].endpoints[i].id;
}

/* A state change, then the health epoch moved, as every writer does (the
 * workers keep their candidate sets until it moves). */
static void moved(struct fixture *f)
{
	atomic_fetch_add(&f->h->health_epoch, 1);
}

static void set_health(struct fixture *f, uint32_t id, uint32_t h)
{
	atomic_store(&f->eps[id].health, h);
	moved(f);
}

static void set_admin(struct fixture *f, uint32_t id, uint32_t a)
{
	atomic_store(&f->eps[id].admin, a);
	moved(f);
}

static void test_wrr_smooth_exact(void **state)
{
	struct fixture *f = *state;
	int prev = -1, cycle, k;

	for (cycle = 0; cycle < 10; cycle++) {
		unsigned n[3] = {0};

		for (k = 0; k < 6; k++) {
			int id = pick_id(f, 0, UINT32_MAX, 0);

			assert_true(id >= 0 && id <= 2);
			n[id]++;
			/* smooth: the weight-1 peer never twice in a row */
			assert_false(id == 0 && prev == 0);
			prev = id;
		}
		assert_int_equal(n[0], 1);
		assert_int_equal(n[1], 2);
		assert_int_equal(n[2], 3);
	}
}

static void test_ineligible_never_picked(void **state)
{
	struct fixture *f = *state;
	int k;

	set_health(f, 2, ISM_EP_UNHEALTHY);
	set_admin(f, 1, ISM_EP_ADMIN_DRAIN);
	for (k = 0; k < 50; k++)
		assert_int_equal(pick_id(f, 0, UINT32_MAX, (uint32_t)k * 77777u), 0);
	set_admin(f, 1, ISM_EP_ADMIN_READY);
	set_admin(f, 0, ISM_EP_ADMIN_MAINT);
	for (k = 0; k < 50; k++)
		assert_int_equal(pick_id(f, 0, UINT32_MAX, 0), 1);
	set_health(f, 1, ISM_EP_UNHEALTHY);
	assert_int_equal(lbpick(f, 0, UINT32_MAX, 0), -ENOENT);
	/* drained and in-maintenance also count as none for least-request */
	set_admin(f, 20, ISM_EP_ADMIN_DRAIN);
	set_admin(f, 21, ISM_EP_ADMIN_MAINT);
	set_health(f, 22, ISM_EP_UNHEALTHY);
	assert_int_equal(lbpick(f, 2, UINT32_MAX, 12345), -ENOENT);
}

/* Round robin among equal weights is a rotation in endpoint order over the
 * candidates (Envoy's round robin), from a start each worker draws: an
 * endpoint out of them is passed over, and back in, it takes its turn again.
 * The candidates are kept until the health epoch moves: a state stored
 * without it moving is not seen yet. */
static void test_rr_equal_rotation(void **state)
{
	struct fixture *f = *state;
	int prev = pick_id(f, 1, UINT32_MAX, 0);

	assert_true(prev == 10 || prev == 11);
	for (int k = 0; k < 5; k++) {
		int id = pick_id(f, 1, UINT32_MAX, 0);

		assert_int_equal(id, prev == 10 ? 11 : 10);
		prev = id;
	}
	set_health(f, 10, ISM_EP_UNHEALTHY);
	for (int k = 0; k < 3; k++)
		assert_int_equal(pick_id(f, 1, UINT32_MAX, 0), 11);
	set_health(f, 10, ISM_EP_HEALTHY);
	assert_int_equal(pick_id(f, 1, UINT32_MAX, 0), 10);
	assert_int_equal(pick_id(f, 1, UINT32_MAX, 0), 11);
	atomic_store(&f->eps[11].health, ISM_EP_UNHEALTHY);
	assert_int_equal(pick_id(f, 1, UINT32_MAX, 0), 10);
	assert_int_equal(pick_id(f, 1, UINT32_MAX, 0), 11);
	moved(f);
	for (int k = 0; k < 3; k++)
		assert_int_equal(pick_id(f, 1, UINT32_MAX, 0), 10);
}

/* Each locality keeps its own rotation (Envoy's index per locality and
 * priority): picks that go to the two localities in turn still spread
 * evenly over each one's endpoints; one rotation for the cluster sent every
 * pick of a locality to its first endpoint. */
static void test_rr_rotation_per_locality(void **state)
{
	struct fixture *f = *state;
	unsigned n[4] = {0};

	for (int k = 0; k < 40; k++) {
		struct ism_lb_req rq = {.rnd = 0, .rnd2 = k % 2 ? 0xffffffffu : 0};
		int i = ism_lb_pick(f->lb, 14, f->h, &rq);

		assert_true(i >= 0 && i < 4);
		n[i]++;
	}
	for (int i = 0; i < 4; i++)
		assert_int_equal(n[i], 10);
}

/* Ejection is per cluster, as each of Envoy's clusters has its own outlier
 * detector: endpoint 40 ejected by cluster 5 is never picked there and still
 * is by cluster 9, which holds it too. */
static void test_ejection_per_cluster(void **state)
{
	struct fixture *f = *state;
	unsigned in9 = 0;

	atomic_store(&f->h->ods[40].ejected, 1);
	atomic_store(&f->eps[40].ejected_in, 1);
	moved(f);
	for (uint32_t k = 0; k < 20; k++) {
		assert_int_equal(pick_id(f, 5, UINT32_MAX, k * 2654435761u), 41);
		in9 += pick_id(f, 9, UINT32_MAX, k * 2654435761u) == 40;
	}
	assert_int_equal(in9, 10);
	/* ejected in cluster 9 as well: out of both */
	atomic_store(&f->h->ods[140].ejected, 1);
	atomic_store(&f->eps[40].ejected_in, 2);
	moved(f);
	for (uint32_t k = 0; k < 20; k++)
		assert_int_equal(pick_id(f, 9, UINT32_MAX, k * 2654435761u), 41);
}

static void test_locality_failover_and_back(void **state)
{
	struct fixture *f = *state;
	unsigned n[4] = {0};
	int k;

	for (k = 0; k < 40; k++) {
		int id = pick_id(f, 1, UINT32_MAX, 0);

		assert_true(id == 10 || id == 11);
		n[id - 10]++;
	}
	assert_int_equal(n[0], 20);
	assert_int_equal(n[1], 20);

	/* one local left: it takes everything */
	set_health(f, 10, ISM_EP_UNHEALTHY);
	for (k = 0; k < 10; k++)
		assert_int_equal(pick_id(f, 1, UINT32_MAX, 0), 11);

	/* no local: the other zones share the load */
	set_health(f, 11, ISM_EP_UNHEALTHY);
	memset(n, 0, sizeof(n));
	for (k = 0; k < 40; k++) {
		int id = pick_id(f, 1, UINT32_MAX, 0);

		assert_true(id == 12 || id == 13);
		n[id - 10]++;
	}
	assert_int_equal(n[2], 20);
	assert_int_equal(n[3], 20);

	/* a local endpoint healthy again: traffic comes back to the own zone */
	set_health(f, 10, ISM_EP_HEALTHY);
	for (k = 0; k < 10; k++)
		assert_int_equal(pick_id(f, 1, UINT32_MAX, 0), 10);

	/* a drained local does not count as available */
	set_admin(f, 10, ISM_EP_ADMIN_DRAIN);
	for (k = 0; k < 10; k++) {
		int id = pick_id(f, 1, UINT32_MAX, 0);
		assert_true(id == 12 || id == 13);
	}

	set_health(f, 12, ISM_EP_UNHEALTHY);
	set_health(f, 13, ISM_EP_UNHEALTHY);
	assert_int_equal(lbpick(f, 1, UINT32_MAX, 0), -ENOENT);
}

/* A hashing cluster takes the priority and the locality group from the key,
 * as Envoy's hashing balancers choose the priority with the key's hash (and
 * fold locality weights into the ring): the random numbers change nothing. */
static void test_hash_keeps_priority_and_locality(void **state)
{
	static const uint32_t rnds[] = {0, 12345678, 1u << 31, UINT32_MAX};
	struct fixture *f = *state;
	unsigned per_ep[6] = {0};

	for (uint32_t k = 0; k < 400; k++) {
		struct ism_lb_req rq = {.has_hash = 1, .hash = ism_hash64(&k, sizeof(k), 0)};
		int first = -1;

		for (size_t r = 0; r < sizeof(rnds) / sizeof(rnds[0]); r++) {
			int i;

			rq.rnd = rq.rnd2 = rnds[r];
			i = ism_lb_pick(f->lb, 11, f->h, &rq);
			assert_true(i >= 0 && i < 6);
			if (first < 0)
				first = i;
			assert_int_equal(i, first);
		}
		per_ep[first]++;
	}
	/* the loads and weights still hold: 70 % to the first priority, split
	 * between its groups, 30 % to the second */
	assert_in_range(per_ep[4] + per_ep[5], 80, 160);
	assert_in_range(per_ep[0] + per_ep[1], 90, 190);
	assert_in_range(per_ep[2] + per_ep[3], 90, 190);
}

static void test_enoent_and_range(void **state)
{
	struct fixture *f = *state;

	assert_int_equal(lbpick(f, 4, UINT32_MAX, 0), -ENOENT);
	assert_int_equal(lbpick(f, 15, UINT32_MAX, 0), -EINVAL);
}

static void test_exclude(void **state)
{
	struct fixture *f = *state;
	uint32_t r;
	int k;

	for (k = 0; k < 20; k++)
		assert_int_equal(pick_id(f, 1, 10, 0), 11);
	for (k = 0; k < 20; k++)
		assert_int_equal(pick_id(f, 0, 2, 0) == 2, 0);
	for (r = 0; r < 65536; r += 97) {
		assert_int_not_equal(pick_id(f, 2, 21, r * 65537u), 21);
		assert_int_equal(pick_id(f, 3, 31, r * 65537u), 30);
	}
	/* the excluded host is reused when it is the only one of its priority */
	set_health(f, 11, ISM_EP_UNHEALTHY);
	for (k = 0; k < 5; k++)
		assert_int_equal(pick_id(f, 1, 10, 0), 10);
	set_health(f, 10, ISM_EP_UNHEALTHY);
	set_health(f, 12, ISM_EP_UNHEALTHY);
	assert_int_equal(pick_id(f, 1, 13, 0), 13);
}

/* The id picked in cluster c avoiding the n ids of excl, leaving out the
 * priorities in skip. */
static int pick_avoiding(struct fixture *f, uint32_t c, const uint32_t *excl, uint32_t n,
			 uint32_t skip, uint32_t rnd)
{
	struct ism_lb_req rq = {
	    .exclude = excl, .n_exclude = n, .skip_prio = skip, .rnd = rnd, .rnd2 = rnd};
	int i = ism_lb_pick(f->lb, c, f->h, &rq);

	assert_true(i >= 0 && (uint32_t)i < clusters[c].n_endpoints);
	return (int)clusters[c].endpoints[i].id;
}

/* A retry avoids every endpoint tried while another of the set is left. */
static void test_exclude_several(void **state)
{
	static const uint32_t two[2] = {20, 21}, three[3] = {20, 22, 21};
	struct fixture *f = *state;
	unsigned n[3] = {0};

	for (uint32_t r = 0; r < 65536; r += 97)
		assert_int_equal(pick_avoiding(f, 2, two, 2, 0, r * 65537u), 22);
	for (uint32_t r = 0; r < 65536; r += 97)
		n[pick_avoiding(f, 2, three, 3, 0, r * 65537u) - 20]++;
	assert_true(n[0] > 0 && n[1] > 0 && n[2] > 0);
}

/* retryRemoteLocalities: the priorities left out give their load to the
 * next ones by health; with none left, the loads stand. */
static void test_skip_priorities(void **state)
{
	struct fixture *f = *state;

	for (uint32_t r = 0; r < 100; r++) {
		int id = pick_avoiding(f, 10, NULL, 0, 0, r);

		assert_true(id == 80 || id == 81);
		assert_int_equal(pick_avoiding(f, 10, NULL, 0, 1, r), 82);
		assert_int_equal(pick_avoiding(f, 10, NULL, 0, 3, r), 83);
		id = pick_avoiding(f, 10, NULL, 0, 7, r);
		assert_true(id == 80 || id == 81);
	}
	/* P1 has nothing available: the load goes on to P2 */
	c10_dyn.health[1] = 0;
	for (uint32_t r = 0; r < 100; r++)
		assert_int_equal(pick_avoiding(f, 10, NULL, 0, 1, r), 83);
	/* the loads lag: P1's only endpoint is down although its health says
	 * otherwise; the first priority not left out that has one is used */
	c10_dyn.health[1] = 100;
	set_health(f, 82, ISM_EP_UNHEALTHY);
	for (uint32_t r = 0; r < 100; r++)
		assert_int_equal(pick_avoiding(f, 10, NULL, 0, 1, r), 83);
	set_health(f, 82, ISM_EP_HEALTHY);
}

static void test_least_request(void **state)
{
	struct fixture *f = *state;
	unsigned n[3] = {0}, picks = 0;
	uint32_t r;

	/* two endpoints, drawn with replacement as Envoy draws them: the idle one
	 * wins every comparison of the two, the busy one is picked when both
	 * draws take it, a quarter of the picks */
	atomic_store(&f->eps[40].inflight, 3);
	for (r = 0; r < 65536; r += 7, picks++) {
		int id = pick_id(f, 5, UINT32_MAX, r * 2654435761u);

		assert_true(id == 40 || id == 41);
		n[id - 40]++;
	}
	assert_true(n[0] * 100 > picks * 22 && n[0] * 100 < picks * 28);
	atomic_store(&f->eps[40].inflight, 0);
	memset(n, 0, sizeof(n));
	picks = 0;
	/* equal in flight: the first draw wins the tie, so each half of the picks */
	for (r = 0; r < 65536; r += 7, picks++)
		n[pick_id(f, 5, UINT32_MAX, r * 2654435761u) - 40]++;
	assert_true(n[0] * 100 > picks * 45 && n[0] * 100 < picks * 55);

	/* three endpoints: the busiest is picked only when both draws take it
	 * (1/9), the idlest whenever a draw takes it (5/9) */
	memset(n, 0, sizeof(n));
	picks = 0;
	atomic_store(&f->eps[20].inflight, 9);
	atomic_store(&f->eps[21].inflight, 0);
	atomic_store(&f->eps[22].inflight, 4);
	for (r = 0; r < 65536; r += 7, picks++) {
		int id = pick_id(f, 2, UINT32_MAX, r * 2654435761u);

		assert_true(id >= 20 && id <= 22);
		n[id - 20]++;
	}
	assert_true(n[0] * 100 > picks * 9 && n[0] * 100 < picks * 14);
	assert_true(n[1] * 100 > picks * 52 && n[1] * 100 < picks * 59);
	assert_true(n[2] * 100 > picks * 30 && n[2] * 100 < picks * 37);
}

static void test_random_by_weight(void **state)
{
	struct fixture *f = *state;
	unsigned n[2] = {0};
	uint32_t i;

	for (i = 0; i < 4096; i++) {
		int id = pick_id(f, 3, UINT32_MAX, i << 20);

		assert_true(id == 30 || id == 31);
		n[id - 30]++;
	}
	assert_int_equal(n[0], 1024);
	assert_int_equal(n[1], 3072);
}

/* Sums of weights past 2^32 (endpoint weights are any uint32, a cluster's
 * locality groups each up to that): the random number scales to the whole
 * sum, so equal weights share equally. */
static void test_heavy_weights(void **state)
{
	struct fixture *f = *state;
	unsigned n[2] = {0}, g[2] = {0};
	uint32_t i;

	for (i = 0; i < 4096; i++) {
		int id = pick_id(f, 12, UINT32_MAX, i << 20);

		assert_true(id == 100 || id == 101);
		n[id - 100]++;
		id = pick_id(f, 13, UINT32_MAX, i << 20);
		assert_true(id == 110 || id == 111);
		g[id - 110]++;
	}
	assert_int_equal(n[0], 2048);
	assert_int_equal(n[1], 2048);
	assert_int_equal(g[0], 2048);
	assert_int_equal(g[1], 2048);
}

/* Unequal weights: Envoy's EDF over weight / (in flight + 1). Idle endpoints
 * share by weight exactly (1:3 in every 4 picks once the schedule is warm);
 * with 2 requests in flight on the weight-3 endpoint, its weight counts as
 * 3 / 3 = 1 and they share 1:1. */
static void test_weighted_least_request(void **state)
{
	struct fixture *f = *state;
	unsigned n50 = 0, n51 = 0;

	for (int k = 0; k < 4; k++)
		(void)pick_id(f, 6, UINT32_MAX, 0);
	for (int k = 0; k < 400; k++) {
		int id = pick_id(f, 6, UINT32_MAX, (uint32_t)k);

		n50 += id == 50;
		n51 += id == 51;
	}
	assert_int_equal(n50, 100);
	assert_int_equal(n51, 300);
	atomic_store(&f->eps[51].inflight, 2);
	n50 = n51 = 0;
	for (int k = 0; k < 400; k++) {
		int id = pick_id(f, 6, UINT32_MAX, (uint32_t)k);

		n50 += id == 50;
		n51 += id == 51;
	}
	assert_true(n50 >= 195 && n50 <= 205);
	assert_true(n51 >= 195 && n51 <= 205);
}

/* How many of n picks of cluster c at monotonic time now went to endpoint id. */
static unsigned picks_at(struct fixture *f, uint32_t c, uint64_t now, unsigned n, uint32_t id)
{
	unsigned hits = 0;

	for (unsigned k = 0; k < n; k++) {
		struct ism_lb_req rq = {.rnd = k * 2654435761u, .now_ms = now};
		int i = ism_lb_pick(f->lb, c, f->h, &rq);

		assert_true(i >= 0);
		hits += clusters[c].endpoints[i].id == id;
	}
	return hits;
}

/* Envoy's slow start: an endpoint healthy for t of a 10 s warmup weighs
 * max((t / 10 s)^(1 / aggression), minimum) of its weight. Round robin keeps
 * the scaled proportions exactly (1000 : 250 at a quarter, 1000 : 100 at the
 * minimum); past the warmup the share is even again. */
static void test_warmup_round_robin(void **state)
{
	struct fixture *f = *state;

	atomic_store(&f->eps[61].warm_since_ms, 1000);
	assert_int_equal(picks_at(f, 7, 1000 + 2500, 500, 61), 100);
	assert_int_equal(picks_at(f, 7, 1000 + 100, 550, 61), 50);
	/* A clock behind the mark (t counts as 1 ms): the minimum. */
	assert_int_equal(picks_at(f, 7, 500, 550, 61), 50);
	assert_int_equal(picks_at(f, 7, 1000 + 10000, 400, 61), 200);
}

/* Least request with a warming endpoint weighs every pick (Envoy's EDF in
 * place of two random choices): at a quarter of the warmup with aggression
 * 0.5 the factor is 0.25^2, so 1 pick in 17 among idle endpoints. */
static void test_warmup_least_request(void **state)
{
	struct fixture *f = *state;
	unsigned n;

	atomic_store(&f->eps[71].warm_since_ms, 5000);
	(void)picks_at(f, 8, 5000 + 2500, 17, 71);
	n = picks_at(f, 8, 5000 + 2500, 1700, 71);
	assert_true(n >= 98 && n <= 102);
	n = picks_at(f, 8, 5000 + 10000, 1000, 71);
	assert_true(n >= 450 && n <= 550);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_wrr_smooth_exact, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ineligible_never_picked, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rr_equal_rotation, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_rr_rotation_per_locality, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_ejection_per_cluster, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_locality_failover_and_back, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_hash_keeps_priority_and_locality, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_enoent_and_range, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_exclude, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_exclude_several, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_skip_priorities, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_least_request, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_random_by_weight, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_weighted_least_request, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_heavy_weights, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_warmup_round_robin, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_warmup_least_request, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
