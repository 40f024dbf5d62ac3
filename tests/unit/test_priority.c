/* SPDX-License-Identifier: Apache-2.0 */
/* Priority and locality arithmetic: every worked example of Envoy's priority,
 * panic and locality-weight documentation, with the code's rounding where the
 * documentation's tables differ. */

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "health/lbstate.h"
#include "health/priority.h"
#include "shm/shm-t.h"

/* One priority level: hosts, healthy, degraded (no excluded hosts). */
struct level {
	uint32_t hosts, healthy, degraded;
};

static struct ism_prio_load compute(const struct level *lv, uint32_t n, uint32_t threshold)
{
	struct ism_prio_input in;
	struct ism_prio_load out;

	memset(&in, 0, sizeof(in));
	in.n_priorities = n;
	in.overprovisioning = 140;
	in.panic_threshold = threshold;
	for (uint32_t i = 0; i < n; i++) {
		in.hosts[i] = lv[i].hosts;
		in.healthy[i] = lv[i].healthy;
		in.degraded[i] = lv[i].degraded;
	}
	memset(&out, 0xa5, sizeof(out)); /* compute must write every field */
	ism_prio_compute(&in, &out);
	return out;
}

static void expect_loads(const struct ism_prio_load *l, uint32_t n, const uint8_t *healthy,
			 const uint8_t *degraded)
{
	uint32_t sum = 0;

	assert_int_equal(l->n_priorities, n);
	for (uint32_t i = 0; i < n; i++) {
		assert_int_equal(l->healthy_load[i], healthy[i]);
		assert_int_equal(l->degraded_load[i], degraded ? degraded[i] : 0);
		sum += l->healthy_load[i] + l->degraded_load[i];
	}
	assert_int_equal(sum, 100);
}

/* 1.2: P0 at 100/72/71/50/25/0 % healthy (100 hosts), P1 100 % healthy. */
static void test_spillover_doc_table(void **state)
{
	static const struct {
		uint32_t p0_healthy;
		uint8_t health0, load0, load1;
	} rows[] = {
	    {100, 100, 100, 0}, {72, 100, 100, 0}, {71, 99, 99, 1},
	    {50, 70, 70, 30},	{25, 35, 35, 65},  {0, 0, 0, 100},
	};
	(void)state;
	for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
		struct level lv[2] = {{100, rows[r].p0_healthy, 0}, {100, 100, 0}};
		struct ism_prio_load l = compute(lv, 2, 0);
		uint8_t h[2] = {rows[r].load0, rows[r].load1};

		assert_int_equal(l.health[0], rows[r].health0);
		assert_int_equal(l.health[1], 100);
		assert_int_equal(l.nta, 100);
		expect_loads(&l, 2, h, NULL);
		assert_int_equal(l.panic[0], 0);
		assert_int_equal(l.panic[1], 0);
		assert_int_equal(l.total_panic, 0);
	}
}

/* 1.2: both levels at 25 % → health {35,35}, NTA 70, load 50/50 (panic off). */
static void test_both_quarter_healthy(void **state)
{
	struct level lv[2] = {{4, 1, 0}, {4, 1, 0}};
	struct ism_prio_load l = compute(lv, 2, 0);
	static const uint8_t h[2] = {50, 50};

	(void)state;
	assert_int_equal(l.health[0], 35);
	assert_int_equal(l.health[1], 35);
	assert_int_equal(l.nta, 70);
	expect_loads(&l, 2, h, NULL);
	assert_int_equal(l.total_panic, 0);
}

/* 1.2: health {20,30} → NTA 50 → load {40,60}. 140*1/7 = 20, 140*3/14 = 30. */
static void test_health_20_30(void **state)
{
	struct level lv[2] = {{7, 1, 0}, {14, 3, 0}};
	struct ism_prio_load l = compute(lv, 2, 0);
	static const uint8_t h[2] = {40, 60};

	(void)state;
	assert_int_equal(l.health[0], 20);
	assert_int_equal(l.health[1], 30);
	assert_int_equal(l.nta, 50);
	expect_loads(&l, 2, h, NULL);
}

/* 1.2: 25/25/20 % healthy → health 35/35/28, NTA 98; 35/35/28 plus the rounding
 * remainder 2 to P0 → 37/35/28 (the documentation's table says 36/36/28). */
static void test_three_levels_code_rounding(void **state)
{
	struct level lv[3] = {{4, 1, 0}, {4, 1, 0}, {5, 1, 0}};
	struct ism_prio_load l = compute(lv, 3, 0);
	static const uint8_t h[3] = {37, 35, 28};

	(void)state;
	assert_int_equal(l.health[2], 28);
	assert_int_equal(l.nta, 98);
	expect_loads(&l, 3, h, NULL);
}

/* The remainder goes to the first priority with availability, not to P0. */
static void test_remainder_skips_empty_priority(void **state)
{
	struct level lv[4] = {{4, 0, 0}, {4, 1, 0}, {4, 1, 0}, {5, 1, 0}};
	struct ism_prio_load l = compute(lv, 4, 0);
	static const uint8_t h[4] = {0, 37, 35, 28};

	(void)state;
	expect_loads(&l, 4, h, NULL);
}

/* 1.3: P0 healthy/degraded/unhealthy, single priority, panic off. */
static void test_degraded_doc_examples(void **state)
{
	(void)state;
	{ /* 71/0/29 → 100 % healthy (health 99, NTA 99, 99*100/99 = 100). */
		struct level lv[1] = {{100, 71, 0}};
		struct ism_prio_load l = compute(lv, 1, 0);
		static const uint8_t h[1] = {100}, d[1] = {0};

		assert_int_equal(l.health[0], 99);
		assert_int_equal(l.nta, 99);
		expect_loads(&l, 1, h, d);
	}
	{ /* 71/29/0 → 99 % healthy + 1 % degraded. */
		struct level lv[1] = {{100, 71, 29}};
		struct ism_prio_load l = compute(lv, 1, 0);
		static const uint8_t h[1] = {99}, d[1] = {1};

		assert_int_equal(l.nta, 100);
		expect_loads(&l, 1, h, d);
	}
	{ /* 25/65/10 → 35 % healthy, 65 % degraded. */
		struct level lv[1] = {{100, 25, 65}};
		struct ism_prio_load l = compute(lv, 1, 0);
		static const uint8_t h[1] = {35}, d[1] = {65};

		expect_loads(&l, 1, h, d);
	}
	{ /* 5/0/95 with threshold 50 → panic: 100 % to P0 (all its hosts). */
		struct level lv[1] = {{100, 5, 0}};
		struct ism_prio_load l = compute(lv, 1, 50);
		static const uint8_t h[1] = {100};

		assert_int_equal(l.nta, 7);
		assert_int_equal(l.panic[0], 1);
		assert_int_equal(l.total_panic, 1);
		expect_loads(&l, 1, h, NULL);
	}
}

/* Degraded spill across priorities: P0 has only degraded hosts, P1 healthy.
 * health {0,35}, degraded {35,0}, NTA 70: healthy P1 50, degraded P0 50; no
 * healthy-first priority 0, so the healthy load goes to P1 first. */
static void test_degraded_across_priorities(void **state)
{
	struct level lv[2] = {{4, 0, 1}, {4, 1, 0}};
	struct ism_prio_load l = compute(lv, 2, 0);
	static const uint8_t h[2] = {0, 50}, d[2] = {50, 0};

	(void)state;
	expect_loads(&l, 2, h, d);
}

/* Remainder with no healthy availability anywhere goes to the first degraded
 * priority: degraded {28,35,35} → 28*100/98 = 28, 35, 35, remainder 2 → P0. */
static void test_remainder_to_first_degraded(void **state)
{
	struct level lv[3] = {{5, 0, 1}, {4, 0, 1}, {4, 0, 1}};
	struct ism_prio_load l = compute(lv, 3, 0);
	static const uint8_t h[3] = {0, 0, 0}, d[3] = {30, 35, 35};

	(void)state;
	expect_loads(&l, 3, h, d);
}

/* 1.4 (threshold 50): 25 %/25 % → NTA 70, 50/50, both in panic, so total panic
 * and loads by host count; equal counts give 50/50, unequal counts show that the
 * loads really come from the host counts: 4 and 8 hosts → 33/66 + 1 → 34/66. */
static void test_panic_both_levels(void **state)
{
	(void)state;
	{
		struct level lv[2] = {{4, 1, 0}, {4, 1, 0}};
		struct ism_prio_load l = compute(lv, 2, 50);
		static const uint8_t h[2] = {50, 50};

		assert_int_equal(l.nta, 70);
		assert_int_equal(l.panic[0], 1);
		assert_int_equal(l.panic[1], 1);
		assert_int_equal(l.total_panic, 1);
		expect_loads(&l, 2, h, NULL);
	}
	{
		struct level lv[2] = {{4, 1, 0}, {8, 2, 0}};
		struct ism_prio_load l = compute(lv, 2, 50);
		static const uint8_t h[2] = {34, 66};

		assert_int_equal(l.health[0], 35);
		assert_int_equal(l.health[1], 35);
		assert_int_equal(l.total_panic, 1);
		expect_loads(&l, 2, h, NULL);
	}
}

/* 1.4: 5 %/65 % (20 hosts each: 1 and 13 healthy) → health 7/91, NTA 98, P0 in
 * panic, P1 not; 7 and 92, remainder 1 to P0 → 8/92 (docs: 7/93). */
static void test_panic_one_level(void **state)
{
	struct level lv[2] = {{20, 1, 0}, {20, 13, 0}};
	struct ism_prio_load l = compute(lv, 2, 50);
	static const uint8_t h[2] = {8, 92};

	(void)state;
	assert_int_equal(l.health[0], 7);
	assert_int_equal(l.health[1], 91);
	assert_int_equal(l.nta, 98);
	assert_int_equal(l.panic[0], 1);
	assert_int_equal(l.panic[1], 0);
	assert_int_equal(l.total_panic, 0);
	expect_loads(&l, 2, h, NULL);
}

/* The 72 %/71 % boundary, threshold 50, P1 full: 72 % keeps everything in P0,
 * 71 % spills 1 %; NTA 100 either way, so no panic test at all. A P0 at 10 %
 * with a full P1 is not in panic either, because NTA is 100. */
static void test_overprovisioning_boundary_with_panic(void **state)
{
	(void)state;
	{
		struct level lv[2] = {{100, 72, 0}, {100, 100, 0}};
		struct ism_prio_load l = compute(lv, 2, 50);
		static const uint8_t h[2] = {100, 0};

		assert_int_equal(l.health[0], 100);
		expect_loads(&l, 2, h, NULL);
	}
	{
		struct level lv[2] = {{100, 71, 0}, {100, 100, 0}};
		struct ism_prio_load l = compute(lv, 2, 50);
		static const uint8_t h[2] = {99, 1};

		assert_int_equal(l.health[0], 99);
		expect_loads(&l, 2, h, NULL);
	}
	{
		struct level lv[2] = {{100, 10, 0}, {100, 100, 0}};
		struct ism_prio_load l = compute(lv, 2, 50);

		assert_int_equal(l.nta, 100);
		assert_int_equal(l.panic[0], 0);
		assert_int_equal(l.total_panic, 0);
	}
	{ /* P0 alone at 49 % → NTA 68 < 100, 49 < 50 → panic; at 50 % → not. */
		struct level a[1] = {{100, 49, 0}}, b[1] = {{100, 50, 0}};
		struct ism_prio_load la = compute(a, 1, 50), lb = compute(b, 1, 50);

		assert_int_equal(la.panic[0], 1);
		assert_int_equal(la.total_panic, 1);
		assert_int_equal(lb.panic[0], 0);
		assert_int_equal(lb.total_panic, 0);
		assert_int_equal(lb.healthy_load[0], 100);
	}
}

/* NTA 0 with threshold > 0: total panic, loads by host count (3, 6, 1 hosts:
 * 30/60/10). Threshold 0: never panic, P0 nominally 100. */
static void test_nothing_healthy(void **state)
{
	struct level lv[3] = {{3, 0, 0}, {6, 0, 0}, {1, 0, 0}};

	(void)state;
	{
		struct ism_prio_load l = compute(lv, 3, 50);
		static const uint8_t h[3] = {30, 60, 10};

		assert_int_equal(l.nta, 0);
		assert_int_equal(l.total_panic, 1);
		assert_int_equal(l.panic[0] + l.panic[1] + l.panic[2], 3);
		expect_loads(&l, 3, h, NULL);
	}
	{
		struct ism_prio_load l = compute(lv, 3, 1);
		static const uint8_t h[3] = {30, 60, 10};

		assert_int_equal(l.total_panic, 1);
		expect_loads(&l, 3, h, NULL);
	}
	{
		struct ism_prio_load l = compute(lv, 3, 0);
		static const uint8_t h[3] = {100, 0, 0};

		assert_int_equal(l.nta, 0);
		assert_int_equal(l.total_panic, 0);
		assert_int_equal(l.panic[0] + l.panic[1] + l.panic[2], 0);
		expect_loads(&l, 3, h, NULL);
	}
	{ /* 1 of 3 hosts healthy per level, threshold 0: never panic. */
		struct level p[2] = {{3, 1, 0}, {3, 1, 0}};
		struct ism_prio_load l = compute(p, 2, 0);
		static const uint8_t h[2] = {50, 50};

		assert_int_equal(l.total_panic, 0);
		assert_int_equal(l.panic[0] + l.panic[1], 0);
		expect_loads(&l, 2, h, NULL);
	}
}

/* Total-panic remainder goes to the first non-empty priority: hosts 0/1/1/1 →
 * 0/33/33/33 + 1 → 0/34/33/33. */
static void test_total_panic_remainder_first_nonempty(void **state)
{
	struct level lv[4] = {{0, 0, 0}, {1, 0, 0}, {1, 0, 0}, {1, 0, 0}};
	struct ism_prio_load l = compute(lv, 4, 50);
	static const uint8_t h[4] = {0, 34, 33, 33};

	(void)state;
	assert_int_equal(l.total_panic, 1);
	expect_loads(&l, 4, h, NULL);
}

/* Excluded hosts leave the denominator: 4 hosts, 2 excluded, 1 healthy → 70. */
static void test_excluded(void **state)
{
	struct ism_prio_input in;
	struct ism_prio_load l;

	(void)state;
	memset(&in, 0, sizeof(in));
	in.n_priorities = 2;
	in.overprovisioning = 140;
	in.hosts[0] = 4;
	in.excluded[0] = 2;
	in.healthy[0] = 1;
	in.hosts[1] = 10;
	in.healthy[1] = 10;
	ism_prio_compute(&in, &l);
	assert_int_equal(l.health[0], 70);
	assert_int_equal(l.healthy_load[0], 70);
	assert_int_equal(l.healthy_load[1], 30);
}

/* choose walks cumulative loads with Envoy's h%100+1 <= acc. */
static void test_choose(void **state)
{
	static const uint8_t load[3] = {30, 0, 50}; /* 20 short of 100 */
	uint32_t count[3] = {0};

	(void)state;
	assert_int_equal(ism_prio_choose(load, 3, 0), 0);
	assert_int_equal(ism_prio_choose(load, 3, 29), 0);
	assert_int_equal(ism_prio_choose(load, 3, 30), 2);
	assert_int_equal(ism_prio_choose(load, 3, 79), 2);
	assert_int_equal(ism_prio_choose(load, 3, 80), 0); /* past the loads: Envoy's P0 */
	assert_int_equal(ism_prio_choose(load, 3, 99), 0);
	assert_int_equal(ism_prio_choose(load, 3, 130), 2); /* 130 % 100 = 30 */
	assert_int_equal(ism_prio_choose(load, 2, 30), 0);  /* only the first two */

	/* Over the whole range the counts equal the loads. */
	for (uint32_t h = 0; h < 100; h++)
		count[ism_prio_choose(load, 3, h)]++;
	assert_int_equal(count[0], 30 + 20);
	assert_int_equal(count[1], 0);
	assert_int_equal(count[2], 50);
}

/* 1.5: X weight 1, Y weight 2, Y 100 % healthy, 100 hosts each. Weights are
 * given scaled by 100 (X 100, Y 200) because the effective weight is an
 * integer rounded down; the share is 100 * eff(X) / (eff(X) + eff(Y)) rounded
 * to the nearest integer: 100/300 → 33, 98/298 → 33, 96/296 → 32, 70/270 → 26,
 * 35/235 → 15, 0 → 0, the documentation's 33/33/32/26/15/0. */
static void test_locality_weights_doc(void **state)
{
	static const struct {
		uint32_t healthy, eff, share;
	} rows[] = {
	    {100, 100, 33}, {70, 98, 33}, {69, 96, 32}, {50, 70, 26}, {25, 35, 15}, {0, 0, 0},
	};
	(void)state;
	uint32_t y = ism_locality_effective_weight(200, 100, 100, 0, 140);
	assert_int_equal(y, 200);
	for (size_t r = 0; r < sizeof(rows) / sizeof(rows[0]); r++) {
		uint32_t x = ism_locality_effective_weight(100, rows[r].healthy, 100, 0, 140);
		uint32_t share = (200 * x + (x + y)) / (2 * (x + y)); /* round half up */

		assert_int_equal(x, rows[r].eff);
		assert_int_equal(share, rows[r].share);
	}
}

/* One locality-weighted cluster over eps and groups in a table of its own
 * (its loads in dyn, its effective weights in eff), and a header of every
 * endpoint healthy, ready, not ejected. */
struct lw {
	struct ism_cluster_dyn dyn;
	struct ism_cluster cl;
	struct ism_table t;
	struct ism_shm_hdr *h;
};

static void lw_init(struct lw *f, const struct ism_endpoint *eps, uint32_t n,
		    const struct ism_lgroup *groups, uint32_t n_groups, uint32_t n_prio,
		    uint32_t *eff)
{
	memset(&f->dyn, 0, sizeof(f->dyn));
	f->cl = (struct ism_cluster){.n_endpoints = n,
				     .n_priorities = n_prio,
				     .endpoints = eps,
				     .n_groups = n_groups,
				     .groups = groups,
				     .locality_weighted = 1,
				     .dyn = &f->dyn,
				     .eff_weight = eff};
	f->t = (struct ism_table){.magic = ISM_TABLE_MAGIC, .n_clusters = 1, .clusters = &f->cl};
	f->h = aligned_alloc(ISM_CACHELINE, sizeof(*f->h));
	assert_non_null(f->h);
	memset(f->h, 0, sizeof(*f->h));
}

/* The effective locality weights the master publishes keep the groups'
 * proportions whatever their size (a group's weight is the sum of its
 * endpoints' 32-bit weights): 5,000,000 and 10,000,000 are 1:2, where a
 * clamp at 4,000,000 made them equal; the largest weight fits too. */
static void test_locality_weights_heavy(void **state)
{
	static const struct ism_endpoint eps[] = {{.id = 0, .od = 0, .weight = 1},
						  {.id = 1, .od = 1, .weight = 1},
						  {.id = 2, .od = 2, .weight = 1}};
	static const struct ism_lgroup groups[] = {{.weight = 5000000, .first = 0, .count = 1},
						   {.weight = 10000000, .first = 1, .count = 1},
						   {.weight = UINT32_MAX, .first = 2, .count = 1}};
	uint32_t eff[3] = {0};
	struct lw f;

	(void)state;
	lw_init(&f, eps, 3, groups, 3, 0, eff);
	/* A sequence counter a worker left odd: the master leaves it even. */
	atomic_store(&f.dyn.seq, 7);
	ism_lbstate_compute(&f.t, f.h);
	assert_int_equal(atomic_load(&f.dyn.seq) & 1, 0);
	assert_true(eff[0] > 0);
	assert_int_equal(eff[1], 2 * eff[0]);
	assert_true(eff[2] > eff[1]);
	free(f.h);
}

/* Endpoints the operator keeps out (drain, maint, weight 0) are excluded, as
 * Envoy's excluded hosts: they leave a priority's denominator and a
 * locality's, where unhealthy ones stay in. Four local endpoints and four
 * of the next priority: two local drained leave priority 0 all healthy
 * (100/0), two local unhealthy make it 70/30; one of two in a locality
 * drained keeps that locality's whole weight, one unhealthy takes 0.7 of it. */
static void test_excluded_by_admin(void **state)
{
	static const struct ism_endpoint eps[] = {{.id = 0, .od = 0, .weight = 1, .priority = 0},
						  {.id = 1, .od = 1, .weight = 1, .priority = 0},
						  {.id = 2, .od = 2, .weight = 1, .priority = 0},
						  {.id = 3, .od = 3, .weight = 1, .priority = 0},
						  {.id = 4, .od = 4, .weight = 1, .priority = 1},
						  {.id = 5, .od = 5, .weight = 1, .priority = 1},
						  {.id = 6, .od = 6, .weight = 1, .priority = 1},
						  {.id = 7, .od = 7, .weight = 1, .priority = 1}};
	static const struct ism_lgroup groups[] = {
	    {.priority = 0, .weight = 2, .first = 0, .count = 2},
	    {.priority = 0, .weight = 2, .first = 2, .count = 2},
	    {.priority = 1, .weight = 4, .first = 4, .count = 4}};
	uint32_t eff[3] = {0}, whole;
	struct lw f;
	struct ism_shm_hdr *h;

	(void)state;
	lw_init(&f, eps, 8, groups, 3, 2, eff);
	h = f.h;
	ism_lbstate_compute(&f.t, h);
	whole = eff[0];
	assert_int_equal(eff[1], whole);
	atomic_store(&h->eps[0].admin, ISM_EP_ADMIN_DRAIN);
	atomic_store(&h->eps[1].admin, ISM_EP_ADMIN_MAINT);
	ism_lbstate_compute(&f.t, h);
	assert_int_equal(f.dyn.healthy_load[0], 100);
	assert_int_equal(f.dyn.healthy_load[1], 0);
	atomic_store(&h->eps[0].admin, ISM_EP_ADMIN_READY);
	atomic_store(&h->eps[1].admin, ISM_EP_ADMIN_READY);
	atomic_store(&h->eps[0].health, ISM_EP_UNHEALTHY);
	atomic_store(&h->eps[1].health, ISM_EP_UNHEALTHY);
	ism_lbstate_compute(&f.t, h);
	assert_int_equal(f.dyn.healthy_load[0], 70);
	assert_int_equal(f.dyn.healthy_load[1], 30);
	atomic_store(&h->eps[0].health, ISM_EP_HEALTHY);
	atomic_store(&h->eps[1].health, ISM_EP_HEALTHY);
	atomic_store(&h->eps[2].admin, ISM_EP_ADMIN_DRAIN);
	ism_lbstate_compute(&f.t, h);
	assert_int_equal(eff[1], whole);
	atomic_store(&h->eps[2].admin, ISM_EP_ADMIN_READY);
	atomic_store(&h->eps[2].health, ISM_EP_UNHEALTHY);
	ism_lbstate_compute(&f.t, h);
	assert_int_equal(eff[1], whole * 7 / 10);
	free(h);
}

/* Localities of weight 1 keep their proportions under partial health: one of
 * two endpoints unhealthy leaves its locality 0.7 of the other's, where the
 * effective weight of 1 x 0.7 rounded down to 0 took all its traffic. */
static void test_small_locality_weights(void **state)
{
	static const struct ism_endpoint eps[] = {{.id = 0, .od = 0, .weight = 1},
						  {.id = 1, .od = 1, .weight = 1},
						  {.id = 2, .od = 2, .weight = 1},
						  {.id = 3, .od = 3, .weight = 1}};
	static const struct ism_lgroup groups[] = {{.weight = 1, .first = 0, .count = 2},
						   {.weight = 1, .first = 2, .count = 2}};
	uint32_t eff[2] = {0};
	struct lw f;

	(void)state;
	lw_init(&f, eps, 4, groups, 2, 0, eff);
	atomic_store(&f.h->eps[3].health, ISM_EP_UNHEALTHY);
	ism_lbstate_compute(&f.t, f.h);
	assert_true(eff[1] > 0);
	assert_int_equal((uint64_t)eff[1] * 10, (uint64_t)eff[0] * 7);
	free(f.h);
}

static void test_locality_weight_edges(void **state)
{
	(void)state;
	/* Unscaled weight 1 at 70 %: 0.98 rounds down to 0 (the contract). */
	assert_int_equal(ism_locality_effective_weight(1, 70, 100, 0, 140), 0);
	assert_int_equal(ism_locality_effective_weight(1, 72, 100, 0, 140), 1);
	/* Excluded hosts leave the denominator: 1 of (4 - 2) → 0.7. */
	assert_int_equal(ism_locality_effective_weight(1000, 1, 4, 2, 140), 700);
	/* No eligible host, or no counted host → 0. */
	assert_int_equal(ism_locality_effective_weight(1000, 0, 4, 0, 140), 0);
	assert_int_equal(ism_locality_effective_weight(1000, 1, 2, 2, 140), 0);
	/* No overflow with large values. */
	assert_int_equal(ism_locality_effective_weight(4000000000u, 1, 2, 0, 140), 2800000000u);
}

static void test_locality_parse(void **state)
{
	struct ism_locality l;
	char longp[80];

	(void)state;
	assert_int_equal(ism_locality_parse("us-east-1/us-east-1a/rack7", true, &l), 3);
	assert_string_equal(l.region, "us-east-1");
	assert_string_equal(l.zone, "us-east-1a");
	assert_string_equal(l.subzone, "rack7");
	assert_int_equal(ism_locality_parse("region1/zone1", true, &l), 2);
	assert_string_equal(l.region, "region1");
	assert_string_equal(l.zone, "zone1");
	assert_string_equal(l.subzone, "");
	assert_int_equal(ism_locality_parse("region1", true, &l), 1);
	assert_string_equal(l.region, "region1");
	assert_string_equal(l.zone, "");
	assert_int_equal(ism_locality_parse("", true, &l), 1);
	assert_string_equal(l.region, "");
	assert_int_equal(ism_locality_parse("r//s", true, &l), 3);
	assert_string_equal(l.region, "r");
	assert_string_equal(l.zone, "");
	assert_string_equal(l.subzone, "s");
	assert_int_equal(ism_locality_parse("a/b/c/d", true, &l), -EINVAL);
	assert_int_equal(ism_locality_parse("a/b/c/", true, &l), -EINVAL);
	memset(longp, 'x', sizeof(longp) - 1);
	longp[sizeof(longp) - 1] = '\0';
	assert_int_equal(ism_locality_parse(longp, true, &l), -EINVAL);
	longp[63] = '\0'; /* 63 characters fit */
	assert_int_equal(ism_locality_parse(longp, true, &l), 1);
	assert_int_equal(strlen(l.region), 63);
	assert_int_equal(ISM_LOCALITY_PART_MAX, 63);
	/* Without empty_ok (the file's localities), an empty part is refused. */
	assert_int_equal(ism_locality_parse("", false, &l), -EINVAL);
	assert_int_equal(ism_locality_parse("r//s", false, &l), -EINVAL);
	assert_string_equal(l.region, "");
	assert_int_equal(ism_locality_parse("r/z/", false, &l), -EINVAL);
	assert_int_equal(ism_locality_parse("/z", false, &l), -EINVAL);
	assert_int_equal(ism_locality_parse("r/z", false, &l), 2);
	assert_int_equal(ism_locality_parse(NULL, false, &l), 0);
}

static uint32_t prio_of(const char *client, const char *ep, const struct ism_failover *fo,
			uint32_t n_fo)
{
	struct ism_locality c, e;

	assert_true(ism_locality_parse(client, true, &c) > 0);
	assert_true(ism_locality_parse(ep, true, &e) > 0);
	return ism_locality_priority(&c, &e, fo, n_fo);
}

/* 2.2: the Istio failover task, from region1/zone1 with region1 → region2. */
static void test_istio_task_example(void **state)
{
	static const struct ism_failover fo[1] = {{"region1", "region2"}};
	static const char *eps[4] = {"region1/zone1", "region1/zone2", "region2/zone3",
				     "region3/zone4"};
	uint32_t raw[4];
	static const uint32_t want_raw[4] = {0, 2, 3, 4};
	static const uint32_t want[4] = {0, 1, 2, 3};

	(void)state;
	for (int i = 0; i < 4; i++)
		raw[i] = prio_of("region1/zone1", eps[i], fo, 1);
	assert_memory_equal(raw, want_raw, sizeof(raw));
	assert_int_equal(ism_priority_compact(raw, 4), 4);
	assert_memory_equal(raw, want, sizeof(raw));
}

static void test_locality_priority_rules(void **state)
{
	static const struct ism_failover other[1] = {{"region9", "region2"}};
	static const struct ism_failover two[2] = {{"region1", "region2"}, {"region1", "region3"}};

	(void)state;
	/* Subzone differences → 1; same everything → 0. */
	assert_int_equal(prio_of("r1/z1/s1", "r1/z1/s2", NULL, 0), 1);
	assert_int_equal(prio_of("r1/z1/s1", "r1/z1/s1", NULL, 0), 0);
	assert_int_equal(prio_of("r1/z1", "r1/z1/s2", NULL, 0), 1);
	assert_int_equal(prio_of("r1/z1/s1", "r1/z2/s1", NULL, 0), 2);
	/* Same zone name in another region is still another region. */
	assert_int_equal(prio_of("r1/z1/s1", "r2/z1/s1", NULL, 0), 3);
	/* No failover entry: every other region is 3. */
	assert_int_equal(prio_of("region1/zone1", "region3/zone4", NULL, 0), 3);
	/* An entry for another client region does not apply. */
	assert_int_equal(prio_of("region1/zone1", "region3/zone4", other, 1), 3);
	/* Only the first entry with from == client region is used. */
	assert_int_equal(prio_of("region1/zone1", "region2/z", two, 2), 3);
	assert_int_equal(prio_of("region1/zone1", "region3/z", two, 2), 4);
	/* An endpoint without locality, failover set: not the `to` region → 4. */
	assert_int_equal(prio_of("region1/zone1", "", two, 1), 4);
}

/* 2.3: labels [network, region, zone]; an endpoint that agrees with the
 * first j of N labels has priority N - j (conf/compile.c), combined with
 * locality failover as raw = that * 5 + locality priority, then compacted. */
static void test_failover_priority(void **state)
{
	/* all three agree, with locality priority 2; the network only; all, 0;
	 * network and region, 3 */
	uint32_t raw[4] = {0 * 5 + 2, 2 * 5 + 0, 0 * 5 + 0, 1 * 5 + 3};
	static const uint32_t want[4] = {1, 3, 0, 2};

	(void)state;
	assert_int_equal(ism_priority_compact(raw, 4), 4);
	assert_memory_equal(raw, want, sizeof(raw));
}

static void test_compact(void **state)
{
	uint32_t a[8] = {7, 3, 3, 12, 0, 7, 12, 5};
	static const uint32_t wa[8] = {3, 1, 1, 4, 0, 3, 4, 2};
	uint32_t b[3] = {4, 4, 4};
	static const uint32_t wb[3] = {0, 0, 0};
	/* Ranks equal to raw values of entries not yet ranked must not confuse it. */
	uint32_t c[5] = {1, 2, 3, 4, 0};
	static const uint32_t wc[5] = {1, 2, 3, 4, 0};
	uint32_t d[4] = {UINT32_MAX, 1, UINT32_MAX, 2};
	static const uint32_t wd[4] = {2, 0, 2, 1};

	(void)state;
	assert_int_equal(ism_priority_compact(a, 8), 5);
	assert_memory_equal(a, wa, sizeof(a));
	assert_int_equal(ism_priority_compact(b, 3), 1);
	assert_memory_equal(b, wb, sizeof(b));
	assert_int_equal(ism_priority_compact(c, 5), 5);
	assert_memory_equal(c, wc, sizeof(c));
	assert_int_equal(ism_priority_compact(d, 4), 3);
	assert_memory_equal(d, wd, sizeof(d));
	assert_int_equal(ism_priority_compact(NULL, 0), 0);
}

/* retryRemoteLocalities (Envoy's previous_priorities): the priorities left
 * out give their load to the others by health, the rounding's remainder to
 * the first; nothing left keeps the loads as they were. */
static void test_skip_priorities(void **state)
{
	static const uint8_t all[3] = {100, 100, 100}, part[3] = {100, 30, 40},
			     over[3] = {60, 70, 50}, dead[3] = {100, 0, 0};
	static const uint8_t w1[3] = {0, 100, 0}, w2[3] = {0, 0, 100}, w3[3] = {0, 43, 57},
			     w4[3] = {0, 70, 30}, w5[3] = {100, 0, 0};
	uint8_t load[3];

	(void)state;
	assert_int_equal(ism_prio_skip(all, 3, 1, load), 0);
	assert_memory_equal(load, w1, 3);
	assert_int_equal(ism_prio_skip(all, 3, 3, load), 0);
	assert_memory_equal(load, w2, 3);
	/* 30 * 100 / 70 = 42 and 40 * 100 / 70 = 57: the 1 left goes to P1 */
	assert_int_equal(ism_prio_skip(part, 3, 1, load), 0);
	assert_memory_equal(load, w3, 3);
	/* more than 100 available: the first takes what its health gives */
	assert_int_equal(ism_prio_skip(over, 3, 1, load), 0);
	assert_memory_equal(load, w4, 3);
	/* a priority not left out keeps its share when another is */
	assert_int_equal(ism_prio_skip(all, 3, 6, load), 0);
	assert_memory_equal(load, w5, 3);
	/* nothing available outside what is left out: untouched */
	memcpy(load, w2, 3);
	assert_int_equal(ism_prio_skip(dead, 3, 1, load), -1);
	assert_int_equal(ism_prio_skip(all, 3, 7, load), -1);
	assert_memory_equal(load, w2, 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_skip_priorities),
	    cmocka_unit_test(test_spillover_doc_table),
	    cmocka_unit_test(test_both_quarter_healthy),
	    cmocka_unit_test(test_health_20_30),
	    cmocka_unit_test(test_three_levels_code_rounding),
	    cmocka_unit_test(test_remainder_skips_empty_priority),
	    cmocka_unit_test(test_degraded_doc_examples),
	    cmocka_unit_test(test_degraded_across_priorities),
	    cmocka_unit_test(test_remainder_to_first_degraded),
	    cmocka_unit_test(test_panic_both_levels),
	    cmocka_unit_test(test_panic_one_level),
	    cmocka_unit_test(test_overprovisioning_boundary_with_panic),
	    cmocka_unit_test(test_nothing_healthy),
	    cmocka_unit_test(test_total_panic_remainder_first_nonempty),
	    cmocka_unit_test(test_excluded),
	    cmocka_unit_test(test_choose),
	    cmocka_unit_test(test_locality_weights_doc),
	    cmocka_unit_test(test_locality_weight_edges),
	    cmocka_unit_test(test_locality_parse),
	    cmocka_unit_test(test_istio_task_example),
	    cmocka_unit_test(test_locality_priority_rules),
	    cmocka_unit_test(test_failover_priority),
	    cmocka_unit_test(test_compact),
	    cmocka_unit_test(test_locality_weights_heavy),
	    cmocka_unit_test(test_excluded_by_admin),
	    cmocka_unit_test(test_small_locality_weights),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
