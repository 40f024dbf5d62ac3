/* SPDX-License-Identifier: Apache-2.0 */
/* Outlier detection: consecutive-error counting, ejection limits, growing
 * ejection time, return at the sweep, decay of the multiplier, and exactly one
 * ejection when several processes race on the same shared endpoint state. */

#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <sched.h>
#include <unistd.h>

#include <cmocka.h>

#include "health/outlier.h"

#define N_EPS_MAX 8
#define N_SLOTS	  64
#define SEC	  1000u

/* A cluster whose endpoints use scattered state slots (endpoint id = 5 + 7 *
 * i, outlier slot 3 + 11 * i), so a mix-up between endpoint index, endpoint
 * slot and outlier slot shows. */
struct fixture {
	struct ism_outlier od;
	struct ism_endpoint ep[N_EPS_MAX];
	struct ism_cluster cl;
	struct ism_shm_hdr *h;
};

static uint32_t id_of(uint32_t i)
{
	return 5 + 7 * i;
}

static uint32_t od_of(uint32_t i)
{
	return 3 + 11 * i;
}

/* The region's header, zeroed (its states cache-line aligned, which calloc
 * would not honour). */
static struct ism_shm_hdr *hdr_new(void)
{
	struct ism_shm_hdr *h = aligned_alloc(ISM_CACHELINE, sizeof(*h));

	assert_non_null(h);
	memset(h, 0, sizeof(*h));
	return h;
}

static struct fixture *fixture_new(uint32_t n, struct ism_shm_hdr *shared)
{
	struct fixture *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	f->od.consecutive_5xx = 5;
	f->od.consecutive_gateway = 0;
	f->od.consecutive_local = 5;
	f->od.interval_ms = 10 * SEC;
	f->od.base_ejection_ms = 30 * SEC;
	f->od.max_ejection_ms = 300 * SEC;
	f->od.max_ejection_percent = 10;
	for (uint32_t i = 0; i < n; i++) {
		f->ep[i].id = id_of(i);
		f->ep[i].od = od_of(i);
	}
	f->cl.n_endpoints = n;
	f->cl.endpoints = f->ep;
	f->cl.od = &f->od;
	f->h = shared != NULL ? shared : hdr_new();
	for (uint32_t i = 0; i < n; i++)
		f->h->ods[od_of(i)].ep = id_of(i);
	return f;
}

static void fixture_free(struct fixture *f, int own_eps)
{
	if (own_eps)
		free(f->h);
	free(f);
}

static struct ism_od_state *st(struct fixture *f, uint32_t i)
{
	return &f->h->ods[od_of(i)];
}

static struct ism_ep_state *ep_st(struct fixture *f, uint32_t i)
{
	return &f->h->eps[id_of(i)];
}

static int rec(struct fixture *f, uint32_t i, enum ism_outcome o, uint64_t now)
{
	return ism_outlier_record(&f->cl, f->h, &f->ep[i], o, now);
}

static int elig(struct fixture *f, uint32_t i)
{
	return ism_ep_eligible(f->h, &f->ep[i]);
}

/* A passing health check of endpoint i, in a table of f's cluster alone. */
static int hc_uneject(struct fixture *f, uint32_t i, uint64_t now)
{
	struct ism_table t = {.n_clusters = 1, .clusters = &f->cl};

	return ism_outlier_uneject(&t, f->h, id_of(i), now);
}

static uint32_t ld32(_Atomic uint32_t *p)
{
	return atomic_load(p);
}

static uint64_t ld64(_Atomic uint64_t *p)
{
	return atomic_load(p);
}

static void test_first_5xx_ejects_with_threshold_1(void **state)
{
	struct fixture *f = fixture_new(1, NULL);
	struct ism_od_state *e = st(f, 0);

	(void)state;
	f->od.consecutive_5xx = 1;
	assert_int_equal(elig(f, 0), 1);
	assert_int_equal(rec(f, 0, ISM_OUTCOME_5XX, 1000), 1);
	assert_int_equal(ld32(&e->ejected), 1);
	assert_int_equal(ld64(&e->ejections), 1);
	assert_int_equal(ld32(&e->eject_mult), 1);
	assert_int_equal(ld64(&e->ejected_at_ms), 1000);
	assert_int_equal(ld64(&e->ejected_until_ms), 1000 + 30 * SEC);
	assert_int_equal(ld32(&e->cons_5xx), 0);
	assert_int_equal(elig(f, 0), 0);
	/* Already ejected: not ejected again. */
	assert_int_equal(rec(f, 0, ISM_OUTCOME_5XX, 2000), 0);
	assert_int_equal(ld64(&e->ejections), 1);
	assert_int_equal(ld32(&e->eject_mult), 1);
	assert_int_equal(ld64(&e->ejected_until_ms), 1000 + 30 * SEC);
	/* Other slots untouched. */
	assert_int_equal(ld32(&f->h->ods[0].ejected), 0);
	assert_int_equal(ld64(&f->h->ods[od_of(0) + 1].ejections), 0);
	/* The endpoint's own count: ejected in one cluster, once ever. */
	assert_int_equal(ld32(&ep_st(f, 0)->ejected_in), 1);
	assert_int_equal(ld64(&ep_st(f, 0)->ejections), 1);
	fixture_free(f, 1);
}

static void test_threshold_3_needs_a_run(void **state)
{
	struct fixture *f = fixture_new(1, NULL);
	struct ism_od_state *e = st(f, 0);

	(void)state;
	f->od.consecutive_5xx = 3;
	assert_int_equal(rec(f, 0, ISM_OUTCOME_5XX, 1), 0);
	assert_int_equal(rec(f, 0, ISM_OUTCOME_5XX, 2), 0);
	assert_int_equal(ld32(&e->cons_5xx), 2);
	assert_int_equal(rec(f, 0, ISM_OUTCOME_SUCCESS, 3), 0);
	assert_int_equal(ld32(&e->cons_5xx), 0);
	assert_int_equal(rec(f, 0, ISM_OUTCOME_5XX, 4), 0);
	assert_int_equal(rec(f, 0, ISM_OUTCOME_5XX, 5), 0);
	assert_int_equal(ld32(&e->ejected), 0);
	assert_int_equal(rec(f, 0, ISM_OUTCOME_5XX, 6), 1);
	assert_int_equal(ld32(&e->ejected), 1);
	assert_int_equal(ld64(&e->ejections), 1);
	assert_int_equal(ld64(&e->ejected_at_ms), 6);
	fixture_free(f, 1);
}

static void test_zero_thresholds_are_off(void **state)
{
	struct fixture *f = fixture_new(1, NULL);
	struct ism_od_state *e = st(f, 0);

	(void)state;
	f->od.consecutive_5xx = 0;
	f->od.consecutive_gateway = 0;
	for (int i = 0; i < 50; i++) {
		assert_int_equal(rec(f, 0, ISM_OUTCOME_5XX, 1), 0);
		assert_int_equal(rec(f, 0, ISM_OUTCOME_GATEWAY, 1), 0);
		assert_int_equal(rec(f, 0, ISM_OUTCOME_LOCAL, 1), 0);
	}
	assert_int_equal(ld32(&e->ejected), 0);
	assert_int_equal(ld32(&e->cons_5xx), 150);
	f->od.split_local = 1;
	f->od.consecutive_local = 0;
	for (int i = 0; i < 50; i++)
		assert_int_equal(rec(f, 0, ISM_OUTCOME_LOCAL, 1), 0);
	assert_int_equal(ld32(&e->ejected), 0);
	assert_int_equal(ld32(&e->cons_local), 50);
	fixture_free(f, 1);
}

static void test_gateway_errors(void **state)
{
	struct fixture *f = fixture_new(1, NULL);
	struct ism_od_state *e = st(f, 0);

	(void)state;
	f->od.consecutive_gateway = 2;
	f->od.consecutive_5xx = 5;
	/* A gateway error is a 5xx as well; a plain 5xx breaks the gateway run. */
	assert_int_equal(rec(f, 0, ISM_OUTCOME_GATEWAY, 1), 0);
	assert_int_equal(ld32(&e->cons_gateway), 1);
	assert_int_equal(ld32(&e->cons_5xx), 1);
	assert_int_equal(rec(f, 0, ISM_OUTCOME_5XX, 2), 0);
	assert_int_equal(ld32(&e->cons_gateway), 0);
	assert_int_equal(ld32(&e->cons_5xx), 2);
	assert_int_equal(rec(f, 0, ISM_OUTCOME_GATEWAY, 3), 0);
	assert_int_equal(ld32(&e->cons_gateway), 1);
	assert_int_equal(ld32(&e->cons_5xx), 3);
	assert_int_equal(rec(f, 0, ISM_OUTCOME_GATEWAY, 4), 1);
	assert_int_equal(ld32(&e->ejected), 1);
	assert_int_equal(ld32(&e->cons_gateway), 0);
	assert_int_equal(ld32(&e->cons_5xx), 0);
	fixture_free(f, 1);

	/* Gateway counting off: gateway errors still reach consecutive_5xx. */
	f = fixture_new(1, NULL);
	e = st(f, 0);
	f->od.consecutive_5xx = 3;
	assert_int_equal(rec(f, 0, ISM_OUTCOME_GATEWAY, 1), 0);
	assert_int_equal(rec(f, 0, ISM_OUTCOME_5XX, 2), 0);
	assert_int_equal(rec(f, 0, ISM_OUTCOME_GATEWAY, 3), 1);
	assert_int_equal(ld64(&e->ejections), 1);
	fixture_free(f, 1);
}

/* Non-split mode: a local-origin failure counts as a 503. */
static void test_local_non_split(void **state)
{
	struct fixture *f = fixture_new(1, NULL);
	struct ism_od_state *e = st(f, 0);

	(void)state;
	f->od.consecutive_gateway = 3;
	f->od.consecutive_5xx = 10;
	assert_int_equal(rec(f, 0, ISM_OUTCOME_LOCAL, 1), 0);
	assert_int_equal(ld32(&e->cons_gateway), 1);
	assert_int_equal(ld32(&e->cons_5xx), 1);
	assert_int_equal(ld32(&e->cons_local), 0);
	assert_int_equal(rec(f, 0, ISM_OUTCOME_GATEWAY, 2), 0);
	assert_int_equal(rec(f, 0, ISM_OUTCOME_LOCAL, 3), 1);
	assert_int_equal(ld32(&e->ejected), 1);
	fixture_free(f, 1);
}

static void test_split_mode(void **state)
{
	struct fixture *f = fixture_new(1, NULL);
	struct ism_od_state *e = st(f, 0);

	(void)state;
	f->od.split_local = 1;
	f->od.consecutive_local = 2;
	f->od.consecutive_5xx = 2;
	f->od.consecutive_gateway = 1;
	/* Local failures leave the 5xx and gateway counters alone. */
	assert_int_equal(rec(f, 0, ISM_OUTCOME_LOCAL, 1), 0);
	assert_int_equal(ld32(&e->cons_local), 1);
	assert_int_equal(ld32(&e->cons_5xx), 0);
	assert_int_equal(ld32(&e->cons_gateway), 0);
	/* A success resets the local counter too. */
	assert_int_equal(rec(f, 0, ISM_OUTCOME_SUCCESS, 2), 0);
	assert_int_equal(ld32(&e->cons_local), 0);
	assert_int_equal(rec(f, 0, ISM_OUTCOME_LOCAL, 3), 0);
	/* An upstream 5xx proves the connection worked: local run broken. */
	assert_int_equal(rec(f, 0, ISM_OUTCOME_5XX, 4), 0);
	assert_int_equal(ld32(&e->cons_local), 0);
	assert_int_equal(ld32(&e->cons_5xx), 1);
	assert_int_equal(rec(f, 0, ISM_OUTCOME_LOCAL, 5), 0);
	assert_int_equal(ld32(&e->cons_5xx), 1);
	assert_int_equal(ld32(&e->ejected), 0);
	assert_int_equal(rec(f, 0, ISM_OUTCOME_LOCAL, 6), 1);
	assert_int_equal(ld32(&e->ejected), 1);
	assert_int_equal(ld64(&e->ejected_at_ms), 6);
	fixture_free(f, 1);
}

/* Default 10 % with 4 endpoints: the first ejection is always allowed, a
 * second would be 50 % and is refused (its counter reset, as Envoy does). */
static void test_max_percent_10_of_4(void **state)
{
	struct fixture *f = fixture_new(4, NULL);

	(void)state;
	f->od.consecutive_5xx = 2;
	assert_int_equal(rec(f, 0, ISM_OUTCOME_5XX, 1), 0);
	assert_int_equal(rec(f, 0, ISM_OUTCOME_5XX, 1), 1);
	assert_int_equal(rec(f, 1, ISM_OUTCOME_5XX, 2), 0);
	assert_int_equal(rec(f, 1, ISM_OUTCOME_5XX, 2), 0);
	assert_int_equal(ld32(&st(f, 1)->ejected), 0);
	assert_int_equal(ld64(&st(f, 1)->ejections), 0);
	assert_int_equal(ld32(&st(f, 1)->cons_5xx), 0);
	assert_int_equal(rec(f, 2, ISM_OUTCOME_5XX, 3), 0);
	assert_int_equal(rec(f, 2, ISM_OUTCOME_5XX, 3), 0);
	assert_int_equal(ld32(&st(f, 2)->ejected), 0);
	/* Once the first is back, another may go. */
	assert_int_equal(ism_outlier_sweep(&f->cl, f->h, NULL, 1 + 30 * SEC), 1);
	assert_int_equal(rec(f, 1, ISM_OUTCOME_5XX, 40 * SEC), 0);
	assert_int_equal(rec(f, 1, ISM_OUTCOME_5XX, 40 * SEC), 1);
	assert_int_equal(ld32(&st(f, 1)->ejected), 1);
	fixture_free(f, 1);
}

/* Istio's failover task: four localities, one endpoint each, each its own
 * priority, default 10 %: each level's endpoint may be ejected while the levels
 * before it are, so traffic fails over level after level. Within one level the
 * percentage still holds. */
static void test_one_per_priority_always(void **state)
{
	struct fixture *f = fixture_new(5, NULL);

	(void)state;
	f->od.consecutive_5xx = 1;
	for (uint32_t i = 0; i < 4; i++)
		f->ep[i].priority = (uint8_t)i;
	f->ep[4].priority = 3; /* a second endpoint at the last level */
	for (uint32_t i = 0; i < 4; i++) {
		assert_int_equal(rec(f, i, ISM_OUTCOME_5XX, 1 + i), 1);
		assert_int_equal(ld32(&st(f, i)->ejected), 1);
	}
	/* Level 3 already has an ejected endpoint: 5 of 5 would be over 10 %. */
	assert_int_equal(rec(f, 4, ISM_OUTCOME_5XX, 10), 0);
	assert_int_equal(ld32(&st(f, 4)->ejected), 0);
	fixture_free(f, 1);
}

/* 50 % with 4 endpoints: 1/4 and 2/4 are allowed, 3/4 is not. */
static void test_max_percent_50_of_4(void **state)
{
	struct fixture *f = fixture_new(4, NULL);

	(void)state;
	f->od.consecutive_5xx = 1;
	f->od.max_ejection_percent = 50;
	assert_int_equal(rec(f, 0, ISM_OUTCOME_5XX, 1), 1);
	assert_int_equal(rec(f, 1, ISM_OUTCOME_5XX, 1), 1);
	assert_int_equal(rec(f, 2, ISM_OUTCOME_5XX, 1), 0);
	assert_int_equal(rec(f, 3, ISM_OUTCOME_5XX, 1), 0);
	assert_int_equal(ld32(&st(f, 0)->ejected) + ld32(&st(f, 1)->ejected) +
			     ld32(&st(f, 2)->ejected) + ld32(&st(f, 3)->ejected),
			 2);
	fixture_free(f, 1);
}

/* maxEjectionPercent exactly, as Envoy's floating point: with 7 endpoints
 * and 28 %, a second ejection would be 28.6 % and is refused (integer
 * division made it 28). */
static void test_max_percent_not_rounded_down(void **state)
{
	struct fixture *f = fixture_new(7, NULL);

	(void)state;
	f->od.consecutive_5xx = 1;
	f->od.max_ejection_percent = 28;
	assert_int_equal(rec(f, 0, ISM_OUTCOME_5XX, 1), 1);
	assert_int_equal(rec(f, 1, ISM_OUTCOME_5XX, 1), 0);
	assert_int_equal(ld32(&st(f, 1)->ejected), 0);
	f->od.max_ejection_percent = 29; /* 28.6 % fits */
	assert_int_equal(rec(f, 1, ISM_OUTCOME_5XX, 1), 1);
	fixture_free(f, 1);
}

/* A reload that takes outlier detection off a cluster leaves its ejections:
 * the sweep of the cluster, now without a detector, still returns each when
 * its time is up (it stayed ejected for good before). */
static void test_sweep_without_detector(void **state)
{
	struct fixture *f = fixture_new(1, NULL);
	uint64_t until;

	(void)state;
	f->od.consecutive_5xx = 1;
	assert_int_equal(rec(f, 0, ISM_OUTCOME_5XX, 1 * SEC), 1);
	until = atomic_load(&st(f, 0)->ejected_until_ms);
	f->cl.od = NULL;
	assert_int_equal(ism_outlier_sweep(&f->cl, f->h, NULL, until - 1), 0);
	assert_int_equal(ld32(&st(f, 0)->ejected), 1);
	assert_int_equal(ism_outlier_sweep(&f->cl, f->h, NULL, until), 1);
	assert_int_equal(ld32(&st(f, 0)->ejected), 0);
	assert_int_equal(ism_outlier_sweep(&f->cl, f->h, NULL, until + 100 * SEC), 0);
	fixture_free(f, 1);
}

static void test_ejection_ms(void **state)
{
	struct ism_outlier od = {.base_ejection_ms = 30 * SEC, .max_ejection_ms = 300 * SEC};

	(void)state;
	assert_int_equal(ism_outlier_ejection_ms(&od, 0), 0);
	assert_int_equal(ism_outlier_ejection_ms(&od, 1), 30 * SEC);
	assert_int_equal(ism_outlier_ejection_ms(&od, 2), 60 * SEC);
	assert_int_equal(ism_outlier_ejection_ms(&od, 9), 270 * SEC);
	assert_int_equal(ism_outlier_ejection_ms(&od, 10), 300 * SEC);
	assert_int_equal(ism_outlier_ejection_ms(&od, 11), 300 * SEC);
	assert_int_equal(ism_outlier_ejection_ms(&od, 1000000), 300 * SEC);
}

/* Eject, return at the sweep, fail again at once: 30 s, 60 s, ... 300 s, and k
 * stops at 11 (Envoy: grows while k * base < max + base). */
static void test_ejection_time_grows(void **state)
{
	struct fixture *f = fixture_new(1, NULL);
	struct ism_od_state *e = st(f, 0);
	uint64_t now = 5 * SEC;

	(void)state;
	f->od.consecutive_5xx = 1;
	for (uint32_t k = 1; k <= 13; k++) {
		uint64_t want = k * 30 * SEC < 300 * SEC ? k * 30 * SEC : 300 * SEC;

		assert_int_equal(rec(f, 0, ISM_OUTCOME_5XX, now), 1);
		assert_int_equal(ld32(&e->eject_mult), k < 11 ? k : 11);
		assert_int_equal(ld64(&e->ejected_until_ms) - ld64(&e->ejected_at_ms), want);
		assert_int_equal(ld64(&e->ejections), k);
		now = ld64(&e->ejected_until_ms);
		assert_int_equal(ism_outlier_sweep(&f->cl, f->h, NULL, now), 1);
	}
	fixture_free(f, 1);
}

static void test_sweep_returns_on_time(void **state)
{
	struct fixture *f = fixture_new(2, NULL);
	struct ism_od_state *e = st(f, 0);

	(void)state;
	f->od.consecutive_5xx = 1;
	assert_int_equal(rec(f, 0, ISM_OUTCOME_5XX, 100 * SEC), 1);
	atomic_store(&e->cons_gateway, 3);
	atomic_store(&e->cons_local, 4);
	atomic_store(&e->cons_5xx, 2);
	assert_int_equal(ism_outlier_sweep(&f->cl, f->h, NULL, 100 * SEC), 0);
	assert_int_equal(ism_outlier_sweep(&f->cl, f->h, NULL, 130 * SEC - 1), 0);
	assert_int_equal(ld32(&e->ejected), 1);
	assert_int_equal(ism_outlier_sweep(&f->cl, f->h, NULL, 130 * SEC), 1);
	assert_int_equal(ld32(&e->ejected), 0);
	assert_int_equal(ld64(&e->returned_at_ms), 130 * SEC);
	assert_int_equal(ld32(&e->cons_5xx), 0);
	assert_int_equal(ld32(&e->cons_gateway), 0);
	assert_int_equal(ld32(&e->cons_local), 0);
	assert_int_equal(elig(f, 0), 1);
	assert_int_equal(ism_outlier_sweep(&f->cl, f->h, NULL, 131 * SEC), 0);

	/* After the time too: a late sweep returns it as well. */
	assert_int_equal(rec(f, 1, ISM_OUTCOME_5XX, 200 * SEC), 1);
	assert_int_equal(ism_outlier_sweep(&f->cl, f->h, NULL, 500 * SEC), 1);
	assert_int_equal(ld32(&st(f, 1)->ejected), 0);
	assert_int_equal(ld64(&st(f, 1)->returned_at_ms), 500 * SEC);
	fixture_free(f, 1);
}

/* An ejection being written (ejected = 2, the time fields not yet stored) is
 * never returned by the sweep on a stale ejected_until_ms. */
static void test_sweep_skips_half_written_ejection(void **state)
{
	struct fixture *f = fixture_new(1, NULL);
	struct ism_od_state *e = st(f, 0);

	(void)state;
	atomic_store(&e->ejected, 2);
	atomic_store(&e->ejected_until_ms, 1);
	atomic_store(&ep_st(f, 0)->ejected_in, 1);
	assert_int_equal(ism_outlier_sweep(&f->cl, f->h, NULL, 1000 * SEC), 0);
	assert_int_equal(ld32(&e->ejected), 2);
	assert_int_equal(elig(f, 0), 0);
	assert_int_equal(hc_uneject(f, 0, 1000 * SEC), 0);
	fixture_free(f, 1);
}

/* k decays by one per sweep once the endpoint has been back an interval. */
static void test_multiplier_decays(void **state)
{
	struct fixture *f = fixture_new(1, NULL);
	struct ism_od_state *e = st(f, 0);
	uint64_t now = 0;

	(void)state;
	f->od.consecutive_5xx = 1;
	for (int i = 0; i < 3; i++) {
		assert_int_equal(rec(f, 0, ISM_OUTCOME_5XX, now), 1);
		now = ld64(&e->ejected_until_ms);
		assert_int_equal(ism_outlier_sweep(&f->cl, f->h, NULL, now), 1);
	}
	uint64_t back = now; /* returned at 30 + 60 + 90 = 180 s */
	assert_int_equal(back, 180 * SEC);
	assert_int_equal(ld32(&e->eject_mult), 3);
	assert_int_equal(ism_outlier_sweep(&f->cl, f->h, NULL, back + 10 * SEC - 1), 0);
	assert_int_equal(ld32(&e->eject_mult), 3);
	assert_int_equal(ism_outlier_sweep(&f->cl, f->h, NULL, back + 10 * SEC), 0);
	assert_int_equal(ld32(&e->eject_mult), 2);
	assert_int_equal(ism_outlier_sweep(&f->cl, f->h, NULL, back + 20 * SEC), 0);
	assert_int_equal(ld32(&e->eject_mult), 1);
	/* Ejected with k = 1 → k = 2: 60 s. */
	assert_int_equal(rec(f, 0, ISM_OUTCOME_5XX, back + 25 * SEC), 1);
	assert_int_equal(ld32(&e->eject_mult), 2);
	assert_int_equal(ld64(&e->ejected_until_ms), back + 85 * SEC);
	/* No decay while ejected. */
	assert_int_equal(ism_outlier_sweep(&f->cl, f->h, NULL, back + 84 * SEC), 0);
	assert_int_equal(ld32(&e->eject_mult), 2);
	assert_int_equal(ism_outlier_sweep(&f->cl, f->h, NULL, back + 85 * SEC), 1);
	for (int i = 1; i <= 4; i++)
		ism_outlier_sweep(&f->cl, f->h, NULL, back + 85 * SEC + (uint64_t)i * 10 * SEC);
	assert_int_equal(ld32(&e->eject_mult), 0);
	/* Back at the base time. */
	assert_int_equal(rec(f, 0, ISM_OUTCOME_5XX, 1000 * SEC), 1);
	assert_int_equal(ld64(&e->ejected_until_ms), 1030 * SEC);
	fixture_free(f, 1);
}

static void test_uneject_and_eligible(void **state)
{
	struct fixture *f = fixture_new(1, NULL);
	struct ism_od_state *e = st(f, 0);

	(void)state;
	f->od.consecutive_5xx = 1;
	assert_int_equal(hc_uneject(f, 0, 5), 0);
	assert_int_equal(ld64(&e->returned_at_ms), 0);
	assert_int_equal(rec(f, 0, ISM_OUTCOME_5XX, 10), 1);
	atomic_store(&e->cons_5xx, 3);
	assert_int_equal(hc_uneject(f, 0, 20), 1);
	assert_int_equal(ld32(&e->ejected), 0);
	assert_int_equal(ld32(&ep_st(f, 0)->ejected_in), 0);
	assert_int_equal(ld64(&e->returned_at_ms), 20);
	assert_int_equal(ld32(&e->cons_5xx), 0);
	assert_int_equal(ld32(&e->eject_mult), 1); /* the backoff is kept */
	assert_int_equal(hc_uneject(f, 0, 30), 0);

	assert_int_equal(elig(f, 0), 1);
	atomic_store(&ep_st(f, 0)->health, ISM_EP_UNHEALTHY);
	assert_int_equal(elig(f, 0), 0);
	atomic_store(&ep_st(f, 0)->health, ISM_EP_HEALTHY);
	atomic_store(&ep_st(f, 0)->admin, ISM_EP_ADMIN_DRAIN);
	assert_int_equal(elig(f, 0), 0);
	atomic_store(&ep_st(f, 0)->admin, ISM_EP_ADMIN_MAINT);
	assert_int_equal(elig(f, 0), 0);
	atomic_store(&ep_st(f, 0)->admin, ISM_EP_ADMIN_READY);
	atomic_store(&e->ejected, 1);
	atomic_store(&ep_st(f, 0)->ejected_in, 1);
	assert_int_equal(elig(f, 0), 0);
	fixture_free(f, 1);
}

/* Two clusters holding the same endpoint (a service's default cluster and a
 * subset): each has its own detector, as each Envoy cluster has. Errors
 * through one eject it there only; the other's counters, ejection and max
 * percent are its own; a passing health check returns it from both. */
static void test_per_cluster(void **state)
{
	struct fixture *all = fixture_new(2, NULL);
	struct fixture *v1 = fixture_new(1, all->h);
	struct ism_table t;
	struct ism_cluster both[2];

	(void)state;
	/* v1's endpoint is all's endpoint 1, in an outlier slot of its own */
	v1->ep[0].id = id_of(1);
	v1->ep[0].od = 100;
	all->h->ods[100].ep = id_of(1);
	all->od.consecutive_5xx = 1;
	v1->od.consecutive_5xx = 2;
	assert_int_equal(rec(all, 1, ISM_OUTCOME_5XX, 1000), 1);
	assert_int_equal(elig(all, 1), 0);
	assert_int_equal(elig(v1, 0), 1);
	assert_int_equal(ld32(&all->h->ods[100].ejected), 0);
	/* v1 counts its own run: one error is not two */
	assert_int_equal(rec(v1, 0, ISM_OUTCOME_5XX, 1001), 0);
	assert_int_equal(ld32(&all->h->ods[100].cons_5xx), 1);
	/* a success through all (an answer on a connection made before the
	 * ejection) resets all's counters, not v1's */
	assert_int_equal(rec(all, 1, ISM_OUTCOME_SUCCESS, 1002), 0);
	assert_int_equal(ld32(&all->h->ods[100].cons_5xx), 1);
	/* v1's only endpoint may be ejected though all has one ejected */
	assert_int_equal(rec(v1, 0, ISM_OUTCOME_5XX, 1003), 1);
	assert_int_equal(elig(v1, 0), 0);
	assert_int_equal(ld32(&ep_st(all, 1)->ejected_in), 2);
	assert_int_equal(ld64(&ep_st(all, 1)->ejections), 2);
	/* the sweep of one cluster returns its own ejections only */
	assert_int_equal(ism_outlier_sweep(&v1->cl, v1->h, NULL, 1003 + 30 * SEC), 1);
	assert_int_equal(elig(v1, 0), 1);
	assert_int_equal(elig(all, 1), 0);
	assert_int_equal(ld32(&ep_st(all, 1)->ejected_in), 1);
	/* ejected in both again; one passing check returns it from both */
	assert_int_equal(rec(v1, 0, ISM_OUTCOME_5XX, 2000 * SEC), 0);
	assert_int_equal(rec(v1, 0, ISM_OUTCOME_5XX, 2000 * SEC), 1);
	both[0] = all->cl;
	both[1] = v1->cl;
	t = (struct ism_table){.n_clusters = 2, .clusters = both};
	assert_int_equal(ism_outlier_uneject(&t, all->h, id_of(1), 2001 * SEC), 2);
	assert_int_equal(elig(all, 1), 1);
	assert_int_equal(elig(v1, 0), 1);
	assert_int_equal(ld32(&ep_st(all, 1)->ejected_in), 0);
	assert_int_equal(ism_outlier_uneject(&t, all->h, id_of(1), 2002 * SEC), 0);
	fixture_free(v1, 0);
	fixture_free(all, 1);
}

/* Children record on a MAP_SHARED endpoint-state array, started together on a
 * shared flag; each exits with what ism_outlier_record returned. The cluster
 * is large (RACE_EPS endpoints, every one of them scanned by the
 * max-ejection-percent check before the CAS), which widens the window in which
 * two processes have both seen the endpoint not ejected: without the CAS, two
 * of them eject in most rounds even on two CPUs. */
#define RACE_EPS 4096

/* Waits for the n children in pid; the sum of their exit statuses. */
static int reap(const pid_t *pid, int n)
{
	int sum = 0;

	for (int c = 0; c < n; c++) {
		int status;

		assert_int_equal(waitpid(pid[c], &status, 0), pid[c]);
		assert_true(WIFEXITED(status));
		sum += WEXITSTATUS(status);
	}
	return sum;
}

static void race(uint32_t threshold, int children, int rounds)
{
	size_t states = sizeof(struct ism_shm_hdr);
	size_t sz = states + ISM_CACHELINE;
	void *map = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct ism_endpoint *ep = calloc(RACE_EPS, sizeof(*ep));
	struct ism_outlier od = {.consecutive_5xx = threshold,
				 .interval_ms = 10 * SEC,
				 .base_ejection_ms = 30 * SEC,
				 .max_ejection_ms = 300 * SEC,
				 .max_ejection_percent = 100};
	struct ism_cluster cl = {.n_endpoints = RACE_EPS, .endpoints = ep, .od = &od};

	assert_true(map != MAP_FAILED);
	assert_non_null(ep);
	struct ism_shm_hdr *h = map;
	_Atomic uint32_t *go = (_Atomic uint32_t *)((char *)map + states);
	const uint32_t target = RACE_EPS - 1;

	for (uint32_t i = 0; i < RACE_EPS; i++)
		ep[i] = (struct ism_endpoint){.id = i, .od = i};
	for (int r = 0; r < rounds; r++) {
		pid_t pid[8];
		int winners;

		memset(h->eps, 0, RACE_EPS * sizeof(h->eps[0]));
		memset(h->ods, 0, RACE_EPS * sizeof(h->ods[0]));
		atomic_store(go, 0);
		for (int c = 0; c < children; c++) {
			pid[c] = fork();
			assert_true(pid[c] >= 0);
			if (pid[c] == 0) {
				while (atomic_load(go) == 0)
					;
				_exit(
				    ism_outlier_record(&cl, h, &ep[target], ISM_OUTCOME_5XX, 1000));
			}
		}
		atomic_store(go, 1);
		winners = reap(pid, children);
		assert_int_equal(winners, 1);
		assert_int_equal(ld64(&h->ods[target].ejections), 1);
		assert_int_equal(ld32(&h->ods[target].ejected), 1);
		assert_int_equal(ld32(&h->ods[target].eject_mult), 1);
		assert_int_equal(ld64(&h->ods[target].ejected_until_ms), 1000 + 30 * SEC);
		assert_int_equal(ld32(&h->ods[target].cons_5xx), 0);
		assert_int_equal(ld32(&h->eps[target].ejected_in), 1);
	}
	free(ep);
	munmap(map, sz);
}

/* Processes that each eject another endpoint of one cluster at once, where the
 * max-ejection percentage (0) lets one be ejected (the first of its priority
 * always may): the cluster's lease lets one decide at a time, so exactly one
 * is ejected. Without it each counts the others not ejected yet and most
 * rounds eject two or more (the scan of RACE_EPS endpoints widens the window). */
static void test_processes_max_percent(void **state)
{
	size_t states = sizeof(struct ism_shm_hdr);
	size_t sz = states + 2 * ISM_CACHELINE + sizeof(struct ism_cluster_dyn);
	void *map = mmap(NULL, sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	struct ism_endpoint *ep = calloc(RACE_EPS, sizeof(*ep));
	struct ism_outlier od = {.consecutive_5xx = 1,
				 .interval_ms = 10 * SEC,
				 .base_ejection_ms = 30 * SEC,
				 .max_ejection_ms = 300 * SEC,
				 .max_ejection_percent = 0};
	struct ism_cluster cl = {.n_endpoints = RACE_EPS, .endpoints = ep, .od = &od};
	const int children = 2; /* one a CPU, both spinning when the flag flips */

	(void)state;
	assert_true(map != MAP_FAILED);
	assert_non_null(ep);
	struct ism_shm_hdr *h = map;
	_Atomic uint32_t *go = (_Atomic uint32_t *)((char *)map + states), *ready = go + 1;

	cl.dyn = (struct ism_cluster_dyn *)((char *)map + states + ISM_CACHELINE);
	for (uint32_t i = 0; i < RACE_EPS; i++)
		ep[i] = (struct ism_endpoint){.id = i, .od = i};
	for (int r = 0; r < 50; r++) {
		pid_t pid[8];
		int winners;
		uint32_t ejected = 0;

		memset(h->eps, 0, RACE_EPS * sizeof(h->eps[0]));
		memset(h->ods, 0, RACE_EPS * sizeof(h->ods[0]));
		atomic_store(go, 0);
		atomic_store(ready, 0);
		for (int c = 0; c < children; c++) {
			pid[c] = fork();
			assert_true(pid[c] >= 0);
			if (pid[c] == 0) {
				atomic_fetch_add(ready, 1);
				while (atomic_load(go) == 0)
					;
				_exit(ism_outlier_record(&cl, h, &ep[RACE_EPS - 1 - (uint32_t)c],
							 ISM_OUTCOME_5XX, 1000));
			}
		}
		while (atomic_load(ready) < (uint32_t)children) /* both spin, then go */
			sched_yield();
		atomic_store(go, 1);
		winners = reap(pid, children);
		for (uint32_t i = 0; i < RACE_EPS; i++)
			ejected += ld32(&h->ods[i].ejected) != 0;
		assert_int_equal(winners, 1);
		assert_int_equal(ejected, 1);
		assert_int_equal(atomic_load(&cl.dyn->eject_lease_ms), 0); /* given back */
	}
	free(ep);
	munmap(map, sz);
}

/* 4 processes, one 5xx each, consecutive_5xx 4: exactly one ejection. */
static void test_processes_threshold_4(void **state)
{
	(void)state;
	race(4, 4, 20);
}

/* Every process reaches the threshold at once: the CAS lets one eject. */
static void test_processes_threshold_1(void **state)
{
	(void)state;
	race(1, 4, 50);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_first_5xx_ejects_with_threshold_1),
	    cmocka_unit_test(test_threshold_3_needs_a_run),
	    cmocka_unit_test(test_zero_thresholds_are_off),
	    cmocka_unit_test(test_gateway_errors),
	    cmocka_unit_test(test_local_non_split),
	    cmocka_unit_test(test_split_mode),
	    cmocka_unit_test(test_max_percent_10_of_4),
	    cmocka_unit_test(test_max_percent_50_of_4),
	    cmocka_unit_test(test_one_per_priority_always),
	    cmocka_unit_test(test_ejection_ms),
	    cmocka_unit_test(test_ejection_time_grows),
	    cmocka_unit_test(test_sweep_returns_on_time),
	    cmocka_unit_test(test_sweep_skips_half_written_ejection),
	    cmocka_unit_test(test_multiplier_decays),
	    cmocka_unit_test(test_uneject_and_eligible),
	    cmocka_unit_test(test_max_percent_not_rounded_down),
	    cmocka_unit_test(test_sweep_without_detector),
	    cmocka_unit_test(test_per_cluster),
	    cmocka_unit_test(test_processes_threshold_4),
	    cmocka_unit_test(test_processes_threshold_1),
	    cmocka_unit_test(test_processes_max_percent),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
