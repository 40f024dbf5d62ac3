/* SPDX-License-Identifier: Apache-2.0 */
/* show events (master/events.c): what the endpoint observation reports, with
 * the endpoint slots of a real shared region. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "master/events.h"
#include "shm/shm.h"

#define GEN_SIZE (64u << 10)

/* Publishes generation gen: one cluster of the endpoints keys[0..n), interned
 * healthy. Their slots into ids (may be NULL). */
static const struct ism_table *publish(struct ism_shm *shm, uint64_t gen, const char *const *keys,
				       uint32_t n, uint32_t *ids)
{
	struct ism_arena a;
	struct ism_table *t;
	struct ism_cluster *cl;
	struct ism_endpoint *eps;
	int slot = ism_shm_gen_begin(shm, &a);

	assert_true(slot >= 0);
	t = ism_arena_alloc(&a, sizeof(*t), 8);
	cl = ism_arena_alloc(&a, sizeof(*cl), 8);
	eps = ism_arena_alloc(&a, n * sizeof(*eps), 8);
	assert_non_null(t);
	assert_non_null(cl);
	assert_non_null(eps);
	for (uint32_t i = 0; i < n; i++) {
		assert_int_equal(ism_shm_ep_intern(shm, keys[i], ISM_EP_HEALTHY, &eps[i].id), 0);
		eps[i].od = ISM_NO_OD_SLOT;
		if (ids != NULL)
			ids[i] = eps[i].id;
	}
	*cl = (struct ism_cluster){.n_endpoints = n, .endpoints = eps};
	*t = (struct ism_table){.magic = ISM_TABLE_MAGIC, .n_clusters = 1, .clusters = cl};
	ism_shm_gen_publish(shm, slot, t, gen);
	return t;
}

/* Whether an event of kind whose text has part was recorded since event from. */
static bool has_event(const struct ism_events *ev, uint64_t from, const char *kind,
		      const char *part)
{
	for (uint64_t i = from; i < ev->n; i++) {
		const struct ism_event *e = &ev->ring[i % ISM_EVENTS_MAX];

		if (strcmp(e->kind, kind) == 0 && strstr(e->text, part) != NULL)
			return true;
	}
	return false;
}

/* Whether an event of kind from ev->ring[from..] has text ending in tail
 * (the state's word whole: "maint" is not "maintenance"). */
static bool has_event_ending(const struct ism_events *ev, uint64_t from, const char *kind,
			     const char *tail)
{
	size_t tl = strlen(tail);

	for (uint64_t i = from; i < ev->n; i++) {
		const struct ism_event *e = &ev->ring[i % ISM_EVENTS_MAX];
		size_t n = strlen(e->text);

		if (strcmp(e->kind, kind) == 0 && n >= tl && strcmp(e->text + n - tl, tail) == 0)
			return true;
	}
	return false;
}

/* An endpoint drained, then removed; once its slot is swept, a new endpoint
 * takes it: neither its admin state nor its health is a change of the old
 * one's (the slot's incarnation tells them apart), while its own changes
 * are events. */
static void test_reused_slot(void **state)
{
	static const char *const a[] = {"svc|a:80"}, *const b[] = {"svc|b:80"},
				 *const bc[] = {"svc|b:80", "svc|c:80"};
	struct ism_events *ev = calloc(1, sizeof(*ev));
	struct ism_shm shm;
	const struct ism_table *t;
	uint32_t id_a, ids[2];
	uint64_t n;

	(void)state;
	assert_non_null(ev);
	assert_int_equal(ism_shm_create(&shm, GEN_SIZE), 0);
	t = publish(&shm, 1, a, 1, &id_a);
	ism_events_observe(ev, t, &shm);
	assert_int_equal(ev->n, 0);
	atomic_store(&shm.hdr->eps[id_a].admin, ISM_EP_ADMIN_DRAIN);
	atomic_store(&shm.hdr->eps[id_a].health, ISM_EP_UNHEALTHY);
	ism_events_observe(ev, t, &shm);
	assert_true(has_event(ev, 0, "admin", "svc|a:80 set to drain"));
	assert_true(has_event(ev, 0, "health", "svc|a:80 is now unhealthy"));

	/* a removed; its slot freed once no generation holds it (no look
	 * between the sweep and the next build, as in the master, whose sweep
	 * moves no health epoch) */
	t = publish(&shm, 2, b, 1, NULL);
	ism_events_observe(ev, t, &shm);
	assert_true(ism_shm_gen_reclaim(&shm) > 0);
	ism_shm_ep_sweep(&shm);
	n = ev->n;
	t = publish(&shm, 3, bc, 2, ids);
	assert_int_equal(ids[1], id_a); /* c in a's slot */
	ism_events_observe(ev, t, &shm);
	assert_int_equal(ev->n, n);

	/* c's own changes are reported */
	atomic_store(&shm.hdr->eps[ids[1]].admin, ISM_EP_ADMIN_MAINT);
	ism_events_observe(ev, t, &shm);
	assert_true(has_event(ev, n, "admin", "svc|c:80 set to maint"));
	/* the words operators grep for, whole (docs/operations.md) */
	assert_true(has_event_ending(ev, n, "admin", "svc|c:80 set to maint"));
	assert_string_equal(ism_events_admin_name(ISM_EP_ADMIN_MAINT), "maint");
	assert_string_equal(ism_events_admin_name(ISM_EP_ADMIN_DRAIN), "drain");
	assert_string_equal(ism_events_admin_name(ISM_EP_ADMIN_READY), "ready");
	assert_false(has_event(ev, n, "health", "svc|c:80"));
	ism_shm_destroy(&shm);
	ism_events_free(ev);
	free(ev);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_reused_slot),
	};

	ism_log_set_level(ISM_LOG_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
