/* SPDX-License-Identifier: Apache-2.0 */
/* Shared region: arena, generation publish/acquire/reclaim, endpoint ids, and a
 * multi-process stress of the reclaim protocol. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "shm/shm.h"

#define GEN_SIZE (64u << 10)

static struct ism_table *build(struct ism_arena *a, uint32_t tag)
{
	struct ism_table *t = ism_arena_alloc(a, sizeof(*t), 8);
	uint32_t *payload;

	assert_non_null(t);
	t->magic = ISM_TABLE_MAGIC;
	t->n_clusters = 0;
	/* A payload the readers verify: every word equals the tag. */
	payload = ism_arena_alloc(a, 4096 * sizeof(uint32_t), 8);
	assert_non_null(payload);
	for (int i = 0; i < 4096; i++)
		payload[i] = tag;
	t->workers = tag;
	t->name.p = (const char *)payload;
	return t;
}

/* build()'s table with one cluster of the n endpoints of ids and ods. */
static struct ism_table *build_cluster(struct ism_arena *a, uint32_t tag, const uint32_t *ids,
				       const uint32_t *ods, uint32_t n)
{
	struct ism_table *t = build(a, tag);
	struct ism_cluster *cl = ism_arena_alloc(a, sizeof(*cl), 8);
	struct ism_endpoint *eps = ism_arena_alloc(a, n * sizeof(*eps), 8);

	assert_non_null(cl);
	assert_non_null(eps);
	for (uint32_t i = 0; i < n; i++)
		eps[i] = (struct ism_endpoint){.id = ids[i], .od = ods[i]};
	*cl = (struct ism_cluster){.n_endpoints = n, .endpoints = eps};
	t->n_clusters = 1;
	t->clusters = cl;
	return t;
}

static void test_arena(void **state)
{
	unsigned char block[256];
	struct ism_arena a;
	char *s;
	void *p;

	(void)state;
	ism_arena_init(&a, block, sizeof(block));
	p = ism_arena_alloc(&a, 3, 1);
	assert_ptr_equal(p, block);
	p = ism_arena_alloc(&a, 8, 8);
	assert_ptr_equal(p, block + 8);
	s = ism_arena_strndup(&a, "hello world", 5);
	assert_string_equal(s, "hello");
	assert_null(ism_arena_alloc(&a, 1024, 8));
	assert_non_null(ism_arena_alloc(&a, 256 - a.used, 1));
	assert_null(ism_arena_alloc(&a, 1, 1));
}

static void test_publish_acquire_reclaim(void **state)
{
	struct ism_shm shm;
	struct ism_arena a;
	const struct ism_table *seen;
	int slot1, slot2, slot3;

	(void)state;
	assert_int_equal(ism_shm_create(&shm, GEN_SIZE), 0);
	assert_null(ism_shm_current(&shm));
	assert_null(ism_shm_acquire(&shm, 0));

	slot1 = ism_shm_gen_begin(&shm, &a);
	assert_true(slot1 >= 0);
	ism_shm_gen_publish(&shm, slot1, build(&a, 1), 1);
	ism_shm_worker_live(&shm, 0, 1234);
	seen = ism_shm_acquire(&shm, 0);
	assert_non_null(seen);
	assert_int_equal(seen->gen, 1);
	assert_false(ism_shm_gen_changed(&shm, 0));

	slot2 = ism_shm_gen_begin(&shm, &a);
	assert_true(slot2 >= 0 && slot2 != slot1);
	ism_shm_gen_publish(&shm, slot2, build(&a, 2), 2);
	assert_true(ism_shm_gen_changed(&shm, 0));
	/* Worker 0 still records generation 1: its slot must survive. */
	assert_int_equal(ism_shm_gen_reclaim(&shm), 0);
	assert_int_equal(shm.own[slot1].gen, 1);
	seen = ism_shm_acquire(&shm, 0);
	assert_int_equal(seen->gen, 2);
	assert_int_equal(ism_shm_gen_reclaim(&shm), 1);
	assert_int_equal(shm.own[slot1].gen, 0);

	/* A dead worker (pid 0) does not pin a generation. */
	slot3 = ism_shm_gen_begin(&shm, &a);
	ism_shm_gen_publish(&shm, slot3, build(&a, 3), 3);
	ism_shm_worker_live(&shm, 0, 0);
	assert_int_equal(ism_shm_gen_reclaim(&shm), 1);
	assert_ptr_equal(ism_shm_current(&shm), shm.own[slot3].table);

	/* Every slot busy: begin refuses instead of overwriting. */
	ism_shm_worker_live(&shm, 0, 1);
	for (int i = 0, g = 4; i < ISM_GEN_SLOTS - 1; i++, g++) {
		int s = ism_shm_gen_begin(&shm, &a);

		assert_true(s >= 0);
		ism_shm_gen_publish(&shm, s, build(&a, (uint32_t)g), (uint64_t)g);
		ism_shm_worker_live(&shm, i + 1, 1);
		atomic_store(&shm.hdr->workers[i + 1].gen, (uint64_t)g);
	}
	atomic_store(&shm.hdr->workers[0].gen, 3);
	assert_int_equal(ism_shm_gen_begin(&shm, &a), -ENOSPC);
	ism_shm_destroy(&shm);
}

/* peek holds a second hazard: the peeked generation survives reclaim until
 * commit; commit(0) keeps the one in use, commit(1) moves to the peeked one. */
static void test_peek_commit(void **state)
{
	struct ism_shm shm;
	struct ism_arena a;
	const struct ism_table *t;
	int s1, s2, s3;

	(void)state;
	assert_int_equal(ism_shm_create(&shm, GEN_SIZE), 0);
	ism_shm_worker_live(&shm, 0, 1);
	s1 = ism_shm_gen_begin(&shm, &a);
	ism_shm_gen_publish(&shm, s1, build(&a, 1), 1);
	assert_int_equal(ism_shm_acquire(&shm, 0)->gen, 1);
	s2 = ism_shm_gen_begin(&shm, &a);
	ism_shm_gen_publish(&shm, s2, build(&a, 2), 2);
	t = ism_shm_peek(&shm, 0);
	assert_int_equal(t->gen, 2);
	/* A third generation: 2 is peeked, 1 is in use; neither may go. */
	s3 = ism_shm_gen_begin(&shm, &a);
	ism_shm_gen_publish(&shm, s3, build(&a, 3), 3);
	assert_int_equal(ism_shm_gen_reclaim(&shm), 0);
	ism_shm_commit(&shm, 0, 0);
	assert_int_equal(atomic_load(&shm.hdr->workers[0].gen), 1);
	assert_int_equal(ism_shm_gen_reclaim(&shm), 1); /* 2 is free now */
	assert_int_equal(shm.own[s2].gen, 0);
	t = ism_shm_peek(&shm, 0);
	assert_int_equal(t->gen, 3);
	ism_shm_commit(&shm, 0, 1);
	assert_int_equal(atomic_load(&shm.hdr->workers[0].gen), 3);
	assert_int_equal(atomic_load(&shm.hdr->workers[0].gen_next), 0);
	assert_int_equal(ism_shm_gen_reclaim(&shm), 1); /* 1 is free now */
	ism_shm_destroy(&shm);
}

/* Pages of a slot (its first len bytes) resident in memory. */
static size_t resident_pages(const struct ism_gen_own *g, size_t len)
{
	unsigned char vec[GEN_SIZE / 4096];
	size_t n = 0;

	assert_true(len <= GEN_SIZE);
	assert_int_equal(mincore(g->base, len, vec), 0);
	for (size_t i = 0; i < (len + 4095) / 4096; i++)
		n += vec[i] & 1;
	return n;
}

/* A reclaimed slot gives its pages back (a large table's slot stayed
 * resident after its reload, up to every slot of them). */
static void test_reclaim_releases_pages(void **state)
{
	struct ism_shm shm;
	struct ism_arena a;
	int s1, s2;

	(void)state;
	assert_int_equal(ism_shm_create(&shm, GEN_SIZE), 0);
	s1 = ism_shm_gen_begin(&shm, &a);
	memset(ism_arena_alloc(&a, GEN_SIZE / 2, 64), 0x5a, GEN_SIZE / 2);
	ism_shm_gen_publish(&shm, s1, build(&a, 1), 1);
	assert_true(resident_pages(&shm.own[s1], GEN_SIZE / 2) == GEN_SIZE / 2 / 4096);
	s2 = ism_shm_gen_begin(&shm, &a);
	ism_shm_gen_publish(&shm, s2, build(&a, 2), 2);
	assert_int_equal(ism_shm_gen_reclaim(&shm), 1);
	assert_int_equal(resident_pages(&shm.own[s1], GEN_SIZE / 2), 0);
	/* The slot is usable again, from zero pages. */
	assert_int_equal(ism_shm_gen_begin(&shm, &a), s1);
	assert_int_equal(shm.own[s1].base[100], 0);
	ism_shm_destroy(&shm);
}

static void test_abort(void **state)
{
	struct ism_shm shm;
	struct ism_arena a;
	int s;

	(void)state;
	assert_int_equal(ism_shm_create(&shm, GEN_SIZE), 0);
	s = ism_shm_gen_begin(&shm, &a);
	assert_true(s >= 0);
	/* A slot being built is not reclaimed and not current. */
	assert_int_equal(ism_shm_gen_reclaim(&shm), 0);
	assert_null(ism_shm_current(&shm));
	ism_shm_gen_abort(&shm, s);
	assert_int_equal(ism_shm_gen_begin(&shm, &a), s);
	ism_shm_destroy(&shm);
}

static void test_ep_intern(void **state)
{
	struct ism_shm shm;
	uint32_t a, b, c;

	(void)state;
	assert_int_equal(ism_shm_create(&shm, GEN_SIZE), 0);
	assert_int_equal(ism_shm_ep_intern(&shm, "svc|127.0.0.2:80", ISM_EP_HEALTHY, &a), 0);
	assert_int_equal(ism_shm_ep_intern(&shm, "svc|127.0.0.3:80", ISM_EP_UNHEALTHY, &b), 0);
	assert_int_not_equal(a, b);
	assert_int_equal(ism_shm_ep_intern(&shm, "svc|127.0.0.2:80", ISM_EP_UNHEALTHY, &c), 0);
	assert_int_equal(a, c); /* stable id, state kept */
	assert_int_equal(atomic_load(&shm.hdr->eps[a].health), ISM_EP_HEALTHY);
	assert_int_equal(atomic_load(&shm.hdr->eps[b].health), ISM_EP_UNHEALTHY);
	/* The longest key a file can make (a 335-byte host, a DNS_ROUND_ROBIN
	 * name with its port) fits; one past the bound does not. */
	{
		char key[ISM_EP_KEY_MAX + 1];
		uint32_t d;

		memset(key, 'h', 595);
		key[335] = '|';
		key[595] = '\0';
		assert_int_equal(ism_shm_ep_intern(&shm, key, ISM_EP_HEALTHY, &d), 0);
		assert_string_equal(shm.pub->ep_keys[d], key);
		memset(key, 'h', ISM_EP_KEY_MAX);
		key[ISM_EP_KEY_MAX] = '\0';
		assert_int_equal(ism_shm_ep_intern(&shm, key, ISM_EP_HEALTHY, &d), -ENAMETOOLONG);
	}
	/* No generation references them: the sweep frees them. */
	ism_shm_ep_sweep(&shm);
	assert_int_equal(atomic_load(&shm.hdr->eps[a].in_use), 0);
	assert_int_equal(atomic_load(&shm.hdr->eps[b].in_use), 0);
	ism_shm_destroy(&shm);
}

/* Outlier slots: one per (cluster, endpoint) key, stable while a generation
 * holds them; the sweep frees the others and takes an ejection a freed slot
 * still had off its endpoint's count; a reused slot is a new incarnation. */
static void test_od_intern(void **state)
{
	struct ism_shm shm;
	struct ism_arena a;
	struct ism_table *t;
	uint32_t id, o_all, o_v1, again, o_v2;
	char k_all[64], k_v1[64], k_v2[64];
	int slot;

	(void)state;
	assert_int_equal(ism_shm_create(&shm, GEN_SIZE), 0);
	assert_int_equal(ism_shm_ep_intern(&shm, "svc|127.0.0.2:80", ISM_EP_HEALTHY, &id), 0);
	snprintf(k_all, sizeof(k_all), "outbound|80||svc|%u", id);
	snprintf(k_v1, sizeof(k_v1), "outbound|80|v1|svc|%u", id);
	snprintf(k_v2, sizeof(k_v2), "outbound|80|v2|svc|%u", id);
	assert_int_equal(ism_shm_od_intern(&shm, k_all, id, &o_all), 0);
	assert_int_equal(ism_shm_od_intern(&shm, k_v1, id, &o_v1), 0);
	assert_int_not_equal(o_all, o_v1);
	assert_int_equal(ism_shm_od_intern(&shm, k_v1, id, &again), 0);
	assert_int_equal(again, o_v1);
	assert_int_equal(shm.hdr->ods[o_v1].ep, id);
	assert_int_equal(shm.hdr->ods[o_v1].incarnation, 1);
	/* v1 ejects the endpoint: one cluster has it ejected */
	atomic_store(&shm.hdr->ods[o_v1].ejected, 1);
	atomic_store(&shm.hdr->eps[id].ejected_in, 1);

	/* A generation holding the endpoint in the cluster without a subset only. */
	slot = ism_shm_gen_begin(&shm, &a);
	assert_true(slot >= 0);
	t = build_cluster(&a, 1, &id, &o_all, 1);
	ism_shm_gen_publish(&shm, slot, t, 1);
	ism_shm_ep_sweep(&shm);
	assert_int_equal(atomic_load(&shm.hdr->eps[id].in_use), 1);
	assert_int_equal(atomic_load(&shm.hdr->ods[o_all].in_use), 1);
	assert_int_equal(atomic_load(&shm.hdr->ods[o_v1].in_use), 0);
	assert_int_equal(atomic_load(&shm.hdr->eps[id].ejected_in), 0);
	/* Known keys are found again after the index is rebuilt; v2 takes the
	 * freed slot, not ejected, a new incarnation. */
	assert_int_equal(ism_shm_od_intern(&shm, k_all, id, &again), 0);
	assert_int_equal(again, o_all);
	assert_int_equal(ism_shm_od_intern(&shm, k_v2, id, &o_v2), 0);
	assert_int_equal(o_v2, o_v1);
	assert_int_equal(atomic_load(&shm.hdr->ods[o_v2].ejected), 0);
	assert_int_equal(shm.hdr->ods[o_v2].incarnation, 2);
	ism_shm_destroy(&shm);
}

/* Publishes generation gen: one cluster of the n endpoints ids[] with the
 * outlier slots ods[], interned meanwhile by intern(shm, ids, ods). */
static void publish_eps(struct ism_shm *shm, uint64_t gen, uint32_t n,
			void (*intern)(struct ism_shm *shm, uint32_t *ids, uint32_t *ods))
{
	struct ism_arena a;
	struct ism_table *t;
	uint32_t ids[4], ods[4];
	int slot = ism_shm_gen_begin(shm, &a);

	assert_true(slot >= 0 && n <= 4);
	intern(shm, ids, ods);
	t = build_cluster(&a, (uint32_t)gen, ids, ods, n);
	ism_shm_gen_publish(shm, slot, t, gen);
}

static uint32_t kept_b; /* b's slot, in every generation */

/* The slots of the current table's endpoint i (od may be NULL). */
static void current_ep(const struct ism_shm *shm, uint32_t i, uint32_t *id, uint32_t *od)
{
	const struct ism_table *t = ism_shm_current(shm);

	assert_non_null(t);
	assert_true(i < t->clusters[0].n_endpoints);
	*id = t->clusters[0].endpoints[i].id;
	if (od != NULL)
		*od = t->clusters[0].endpoints[i].od;
}

static void intern_ep(struct ism_shm *shm, const char *key, uint32_t *id, uint32_t *od)
{
	char od_key[64];

	assert_int_equal(ism_shm_ep_intern(shm, key, ISM_EP_HEALTHY, id), 0);
	snprintf(od_key, sizeof(od_key), "outbound|80||svc|%u", *id);
	assert_int_equal(ism_shm_od_intern(shm, od_key, *id, od), 0);
}

static void intern_ab(struct ism_shm *shm, uint32_t *ids, uint32_t *ods)
{
	intern_ep(shm, "svc|a", &ids[0], &ods[0]);
	intern_ep(shm, "svc|b", &ids[1], &ods[1]);
}

static void intern_b(struct ism_shm *shm, uint32_t *ids, uint32_t *ods)
{
	intern_ep(shm, "svc|b", &ids[0], &ods[0]);
	assert_int_equal(ids[0], kept_b); /* kept */
}

static void intern_ab_again(struct ism_shm *shm, uint32_t *ids, uint32_t *ods)
{
	uint32_t id, od;

	intern_ab(shm, ids, ods);
	/* The same key twice in one build: the same new slot. */
	intern_ep(shm, "svc|a", &id, &od);
	assert_int_equal(id, ids[0]);
	assert_int_equal(od, ods[0]);
}

/* An endpoint that generation 2 removes and generation 3 adds back, while
 * generation 1 (a worker draining on it) still holds its slot: a new slot,
 * found by its key, with none of the old one's state, which the old
 * generation keeps; b, which every generation has, keeps its slot and state.
 * Once generation 1 goes, the sweep frees the old slot only. */
static void test_ep_readded(void **state)
{
	struct ism_shm shm;
	struct ism_shm_hdr *h;
	uint32_t a_old, a_od, a_new, a_new_od, found;

	(void)state;
	assert_int_equal(ism_shm_create(&shm, GEN_SIZE), 0);
	h = shm.hdr;
	publish_eps(&shm, 1, 2, intern_ab);
	current_ep(&shm, 0, &a_old, &a_od);
	current_ep(&shm, 1, &kept_b, NULL);
	atomic_store(&h->eps[a_old].admin, ISM_EP_ADMIN_DRAIN);
	atomic_store(&h->ods[a_od].ejected, 1);
	atomic_store(&h->eps[a_old].ejected_in, 1);
	atomic_store(&h->eps[kept_b].admin, ISM_EP_ADMIN_MAINT);
	publish_eps(&shm, 2, 1, intern_b);
	/* A sweep meanwhile: generation 1 holds a still. */
	ism_shm_ep_sweep(&shm);
	publish_eps(&shm, 3, 2, intern_ab_again);
	current_ep(&shm, 0, &a_new, &a_new_od);
	assert_int_not_equal(a_new, a_old);
	assert_int_not_equal(a_new_od, a_od);
	assert_int_equal(atomic_load(&h->eps[a_new].admin), ISM_EP_ADMIN_READY);
	assert_int_equal(atomic_load(&h->eps[a_new].ejected_in), 0);
	assert_int_equal(atomic_load(&h->ods[a_new_od].ejected), 0);
	assert_true(ism_shm_ep_find(&shm, "svc|a", &found));
	assert_int_equal(found, a_new);
	/* The old slot keeps its state for generation 1, listed no more. */
	assert_int_equal(atomic_load(&h->eps[a_old].admin), ISM_EP_ADMIN_DRAIN);
	assert_int_equal(atomic_load(&h->ods[a_od].ejected), 1);
	assert_false(ism_shm_ep_listed(&shm, a_old));
	assert_true(ism_shm_ep_listed(&shm, a_new));
	assert_int_equal(atomic_load(&h->eps[kept_b].admin), ISM_EP_ADMIN_MAINT);
	/* A sweep while generation 1 lives frees nothing; once it is gone, the
	 * old slots only, and the key still finds the new one. */
	ism_shm_ep_sweep(&shm);
	assert_int_equal(atomic_load(&h->eps[a_old].in_use), 1);
	assert_true(ism_shm_ep_find(&shm, "svc|a", &found));
	assert_int_equal(found, a_new);
	assert_true(ism_shm_gen_reclaim(&shm) > 0);
	ism_shm_ep_sweep(&shm);
	assert_int_equal(atomic_load(&h->eps[a_old].in_use), 0);
	assert_int_equal(atomic_load(&h->ods[a_od].in_use), 0);
	assert_int_equal(atomic_load(&h->eps[a_new].in_use), 1);
	assert_true(ism_shm_ep_find(&shm, "svc|a", &found));
	assert_int_equal(found, a_new);
	assert_true(ism_shm_ep_find(&shm, "svc|b", &found));
	assert_int_equal(found, kept_b);
	ism_shm_destroy(&shm);
}

/* A table built and waiting to be published (a reload warming it): the sweep
 * keeps the endpoint slots it took, which no published generation holds;
 * dropped, they go. */
static void test_ep_built(void **state)
{
	struct ism_shm shm;
	struct ism_arena a;
	struct ism_table *t;
	uint32_t id;
	int slot;

	(void)state;
	assert_int_equal(ism_shm_create(&shm, GEN_SIZE), 0);
	slot = ism_shm_gen_begin(&shm, &a);
	assert_true(slot >= 0);
	assert_int_equal(ism_shm_ep_intern(&shm, "svc|new", ISM_EP_UNHEALTHY, &id), 0);
	t = build_cluster(&a, 1, &id, &(uint32_t){ISM_NO_OD_SLOT}, 1);
	ism_shm_gen_built(&shm, slot, t);
	ism_shm_ep_sweep(&shm);
	assert_int_equal(atomic_load(&shm.hdr->eps[id].in_use), 1);
	assert_true(ism_shm_ep_find(&shm, "svc|new", &id));
	/* not a generation a worker may take, nor one to reclaim */
	assert_null(ism_shm_current(&shm));
	assert_null(ism_shm_gen_table(&shm, slot));
	assert_int_equal(ism_shm_gen_reclaim(&shm), 0);
	ism_shm_gen_abort(&shm, slot);
	assert_int_equal(atomic_load(&shm.hdr->eps[id].in_use), 0);
	ism_shm_destroy(&shm);
}

static double cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds to intern n endpoint keys, then to find each again three times;
 * the sweep frees them after. */
static double intern_time(struct ism_shm *shm, uint32_t n)
{
	char key[64];
	double t0 = cpu_now(), t1;
	uint32_t id;

	for (int pass = 0; pass < 4; pass++) {
		for (uint32_t i = 0; i < n; i++) {
			snprintf(key, sizeof(key), "svc.example.com|10.0.%u.%u:8080", i >> 8,
				 i & 255);
			assert_int_equal(ism_shm_ep_intern(shm, key, ISM_EP_HEALTHY, &id), 0);
			/* The lowest free slot: in order, from an empty table. */
			assert_int_equal(id, i);
		}
	}
	t1 = cpu_now();
	ism_shm_ep_sweep(shm);
	return t1 - t0;
}

/* A reload interns every endpoint of the file: 8 times the endpoints must not
 * take 64 times as long (a scan of the table per key did). Best of five, under
 * 24 times. Then the table is full: one more key is refused, known ones found. */
static void test_ep_intern_scale(void **state)
{
	struct ism_shm shm;
	double small = 1e9, big = 1e9;
	uint32_t id;

	(void)state;
	assert_int_equal(ism_shm_create(&shm, GEN_SIZE), 0);
	for (int i = 0; i < 5; i++) {
		double ts = intern_time(&shm, ISM_MAX_ENDPOINTS / 8);
		double tb = intern_time(&shm, ISM_MAX_ENDPOINTS);

		small = ts < small ? ts : small;
		big = tb < big ? tb : big;
	}
	print_message("interning %u endpoints: %.5f s, %u: %.5f s, ratio %.1f\n",
		      ISM_MAX_ENDPOINTS / 8, small, ISM_MAX_ENDPOINTS, big, big / small);
	assert_true(big < 24 * small);
	for (uint32_t i = 0; i < ISM_MAX_ENDPOINTS; i++) {
		char key[64];

		snprintf(key, sizeof(key), "k%u", i);
		assert_int_equal(ism_shm_ep_intern(&shm, key, ISM_EP_HEALTHY, &id), 0);
	}
	assert_int_equal(ism_shm_ep_intern(&shm, "one too many", ISM_EP_HEALTHY, &id), -ENOSPC);
	assert_int_equal(ism_shm_ep_intern(&shm, "k4242", ISM_EP_HEALTHY, &id), 0);
	assert_int_equal(id, 4242);
	ism_shm_destroy(&shm);
}

/* Readers in child processes acquire and verify tables while the parent
 * publishes hundreds of generations and poisons every slot it reclaims. A reader
 * that ever sees poison or a torn table exits non-zero. */
static int reader(struct ism_shm *shm, int w, uint64_t last_gen)
{
	uint64_t reads = 0;

	for (;;) {
		const struct ism_table *t = ism_shm_acquire(shm, w);
		const uint32_t *payload;

		if (t == NULL)
			continue;
		if (t->magic != ISM_TABLE_MAGIC)
			return 2;
		payload = (const uint32_t *)t->name.p;
		for (int i = 0; i < 4096; i += 97)
			if (payload[i] != t->workers)
				return 3;
		if (t->workers != (uint32_t)t->gen)
			return 4;
		reads++;
		if (t->gen >= last_gen)
			return reads > 0 ? 0 : 5;
	}
}

static void test_stress_reclaim(void **state)
{
	enum { READERS = 3, GENERATIONS = 600 };
	struct ism_shm shm;
	struct ism_arena a;
	pid_t pids[READERS];
	int s;

	(void)state;
	assert_int_equal(ism_shm_create(&shm, GEN_SIZE), 0);
	s = ism_shm_gen_begin(&shm, &a);
	ism_shm_gen_publish(&shm, s, build(&a, 1), 1);
	for (int r = 0; r < READERS; r++) {
		ism_shm_worker_live(&shm, r, 1);
		pids[r] = fork();
		assert_true(pids[r] >= 0);
		if (pids[r] == 0)
			_exit(ism_shm_worker_map(&shm) < 0 ? 6 : reader(&shm, r, GENERATIONS));
	}
	for (uint32_t g = 2; g <= GENERATIONS; g++) {
		int tries = 0;

		while ((s = ism_shm_gen_begin(&shm, &a)) < 0) {
			if (ism_shm_gen_reclaim(&shm) == 0)
				usleep(100);
			assert_true(++tries < 100000);
		}
		/* Poison what we reuse: a reader still inside it would notice. */
		memset(a.base, 0xdb, a.size);
		ism_shm_gen_publish(&shm, s, build(&a, g), g);
		ism_shm_gen_reclaim(&shm);
	}
	for (int r = 0; r < READERS; r++) {
		int status;

		assert_int_equal(waitpid(pids[r], &status, 0), pids[r]);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	ism_shm_destroy(&shm);
}

/* What a worker can still write (the writable part) the master takes as
 * numbers only: slots' in-use marks, a free worker slot's generation, a
 * sequence counter left odd. Each made the root master crash, pin every
 * generation slot, or made readers wait for ever. */
static void test_worker_forgeries(void **state)
{
	struct ism_shm shm;
	struct ism_arena a;
	struct ism_ticket_key keys[ISM_TICKET_KEYS];
	uint32_t id;
	int s;

	(void)state;
	memset(keys, 0, sizeof(keys));
	assert_int_equal(ism_shm_create(&shm, GEN_SIZE), 0);
	/* Outlier and endpoint slots marked in use by a worker: the sweep
	 * found no key for them (strlen(NULL)), interning skipped them. */
	for (int i = 0; i < 10; i++) {
		atomic_store(&shm.hdr->ods[i].in_use, 1);
		atomic_store(&shm.hdr->eps[i].in_use, 1);
	}
	ism_shm_ep_sweep(&shm);
	s = ism_shm_gen_begin(&shm, &a);
	assert_int_equal(ism_shm_ep_intern(&shm, "svc|10.0.0.1:80", ISM_EP_HEALTHY, &id), 0);
	assert_int_equal(id, 0);
	assert_int_equal(ism_shm_od_intern(&shm, "outbound|80||svc|0", 0, &id), 0);
	assert_int_equal(id, 0);
	ism_shm_gen_publish(&shm, s, build(&a, 1), 1);
	/* A worker slot with no process that records generation 1. */
	atomic_store(&shm.hdr->workers[5].pid, 4242);
	atomic_store(&shm.hdr->workers[5].gen, 1);
	s = ism_shm_gen_begin(&shm, &a);
	ism_shm_gen_publish(&shm, s, build(&a, 2), 2);
	assert_int_equal(ism_shm_gen_reclaim(&shm), 1);
	/* The ticket keys' counter left odd: even once the master wrote. */
	atomic_store(&shm.hdr->tickets.seq, 41);
	ism_shm_tickets_set(&shm, keys, 1);
	assert_int_equal(atomic_load(&shm.hdr->tickets.seq) & 1, 0);
	/* The rotation time and keys a worker wrote are not the master's: its
	 * rotation and an upgrade's hand-over read its own (a forged time held
	 * the rotation back for ever). */
	keys[0].name[0] = 7;
	ism_shm_tickets_set(&shm, keys, 5);
	shm.hdr->tickets.rotated_ms = UINT64_MAX - 1;
	memset(shm.hdr->tickets.keys, 0xee, sizeof(shm.hdr->tickets.keys));
	assert_int_equal(shm.tickets.rotated_ms, 5);
	assert_memory_equal(shm.tickets.keys, keys, sizeof(keys));
	ism_shm_destroy(&shm);
}

static void on_segv(int sig)
{
	(void)sig;
	_exit(42);
}

/* Whether this process holds a descriptor of the published part's memfd. */
static bool holds_memfd(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	bool found = false;

	while (d != NULL && (e = readdir(d)) != NULL) {
		char path[300], link[256];
		ssize_t n;

		snprintf(path, sizeof(path), "/proc/self/fd/%s", e->d_name);
		n = readlink(path, link, sizeof(link) - 1);
		if (n > 0) {
			link[n] = '\0';
			found = found || strstr(link, "isthmus-tables") != NULL;
		}
	}
	if (d != NULL)
		closedir(d);
	return found;
}

/* What a worker does to the published part (the tables, the generation
 * slots, the endpoints' keys) after ism_shm_worker_map. */
static int worker_view(struct ism_shm *shm)
{
	const struct ism_table *t;
	int status;
	pid_t pid;

	if (ism_shm_worker_map(shm) < 0)
		return 2;
	t = ism_shm_acquire(shm, 0);
	if (t == NULL || t->gen != 1 || strcmp(shm->pub->ep_keys[0], "svc|10.0.0.1:80") != 0)
		return 3; /* it reads what the master wrote */
	if (mprotect(shm->pub, shm->pub_size, PROT_READ | PROT_WRITE) == 0 || errno != EACCES)
		return 4; /* no mprotect makes it writable */
	if (holds_memfd())
		return 5; /* nor a descriptor left to map it again */
	pid = fork();
	if (pid == 0) {
		signal(SIGSEGV, on_segv);
		((volatile char *)shm->pub->ep_keys[0])[0] = 'x';
		_exit(0);
	}
	if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) ||
	    WEXITSTATUS(status) != 42)
		return 6;				     /* a store faults */
	atomic_store(&shm->hdr->workers[0].heartbeat_ms, 7); /* the writable part is */
	return 0;
}

/* A worker cannot write what the master reads as structure: its view of the
 * published part is read-only for good (a compromised worker wrote table
 * pointers and counts that the root master followed). */
static void test_worker_view_read_only(void **state)
{
	struct ism_shm shm;
	struct ism_arena a;
	uint32_t id;
	int s, status;
	pid_t pid;

	(void)state;
	assert_int_equal(ism_shm_create(&shm, GEN_SIZE), 0);
	s = ism_shm_gen_begin(&shm, &a);
	assert_int_equal(ism_shm_ep_intern(&shm, "svc|10.0.0.1:80", ISM_EP_HEALTHY, &id), 0);
	assert_int_equal(id, 0);
	ism_shm_gen_publish(&shm, s, build(&a, 1), 1);
	ism_shm_worker_live(&shm, 0, 1);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(worker_view(&shm));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(atomic_load(&shm.hdr->workers[0].heartbeat_ms), 7);
	/* The master's own view stays writable. */
	shm.pub->ep_keys[0][0] = 'S';
	ism_shm_destroy(&shm);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_arena),
	    cmocka_unit_test(test_publish_acquire_reclaim),
	    cmocka_unit_test(test_abort),
	    cmocka_unit_test(test_reclaim_releases_pages),
	    cmocka_unit_test(test_peek_commit),
	    cmocka_unit_test(test_ep_intern),
	    cmocka_unit_test(test_ep_intern_scale),
	    cmocka_unit_test(test_od_intern),
	    cmocka_unit_test(test_ep_readded),
	    cmocka_unit_test(test_ep_built),
	    cmocka_unit_test(test_stress_reclaim),
	    cmocka_unit_test(test_worker_view_read_only),
	    cmocka_unit_test(test_worker_forgeries),
	};

	ism_log_set_level(ISM_LOG_WARN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
