/* SPDX-License-Identifier: Apache-2.0 */
/* Consistent hashing unit tests: ism_hash64 (pinned values, avalanche), the
 * ring hash (point counts, order, wrap-around, spread, weights, disruption) and
 * Maglev (spread, weights, disruption), and their error paths. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conf/hashring.h"
#include "worker/hash.h"

#define RING_CAP 8192
#define MAGLEV_M 65537
#define LOOKUPS	 100000

static const char *const keys5[] = {"10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080",
				    "10.0.0.4:8080", "10.0.0.5:8080"};
static const uint32_t ones[] = {1, 1, 1, 1, 1};

/* The tests' own random numbers (xorshift64*, Vigna's published constants),
 * independent of the hash under test; the state lives on the caller's stack. */
static uint64_t rnd(uint64_t *s)
{
	*s ^= *s >> 12;
	*s ^= *s << 25;
	*s ^= *s >> 27;
	return *s * 0x2545f4914f6cdd1dULL;
}

static int popcount64(uint64_t v)
{
	return __builtin_popcountll(v);
}

struct ring {
	uint64_t points[RING_CAP];
	uint32_t owners[RING_CAP];
	int n;
};

static struct ring *ring_new(const char *const *key, const uint32_t *w, uint32_t n,
			     uint32_t min_size)
{
	struct ring *r = malloc(sizeof(*r));

	assert_non_null(r);
	r->n =
	    ism_ring_build(key, w, n, min_size, ISM_RING_ENVOY_MAX, r->points, r->owners, RING_CAP);
	assert_true(r->n > 0);
	return r;
}

static uint32_t ring_owner(const struct ring *r, uint64_t h)
{
	return r->owners[ism_ring_lookup(r->points, (uint32_t)r->n, h)];
}

static uint32_t *maglev_new(const char *const *key, const uint32_t *w, uint32_t n, uint32_t m)
{
	uint32_t *t = malloc(m * sizeof(*t));

	assert_non_null(t);
	assert_int_equal(ism_maglev_build(key, w, n, m, t), 0);
	return t;
}

/* ---- ism_hash64 ---- */

static void test_hash64_pinned(void **state)
{
	(void)state;
	/* computed once from this implementation and pinned: the master builds
	 * tables that workers (possibly of another build, during an upgrade)
	 * search with their own hashes, so the function may never change */
	assert_true(ism_hash64("", 0, 0) == 0xe220a8397b1dcdafULL);
	assert_true(ism_hash64("a", 1, 0) == 0x8df12ad07c8cb971ULL);
	assert_true(ism_hash64("10.0.0.1:8080", 13, 0) == 0x442388a55cf77817ULL);
	assert_true(ism_hash64("10.0.0.1:8080", 13, 1) == 0x918188c0d91e9d2aULL);
	assert_true(ism_hash64("abcdefgh", 8, 42) == 0x59315ffeef4230d0ULL);
}

static void test_hash64_alignment_and_length(void **state)
{
	unsigned char buf[64 + 8];
	const char *text = "the quick brown fox jumps over the lazy dog, twice over";
	size_t len = strlen(text), off;
	uint64_t want = ism_hash64(text, len, 7);

	(void)state;
	/* the same bytes at any address hash the same */
	for (off = 1; off < 8; off++) {
		memcpy(buf + off, text, len);
		assert_true(ism_hash64(buf + off, len, 7) == want);
	}
	/* a trailing zero byte is still a different input */
	assert_true(ism_hash64("a", 1, 0) != ism_hash64("a\0", 2, 0));
	assert_true(ism_hash64("", 0, 0) != ism_hash64("\0", 1, 0));
	assert_true(ism_hash64("abcdefgh", 8, 0) != ism_hash64("abcdefgh\0", 9, 0));
	/* the seed matters */
	assert_true(ism_hash64(text, len, 0) != ism_hash64(text, len, 1));
}

/* Flips one input bit and counts the output bits that change: a well mixed
 * hash changes each with probability 1/2, so 32 of 64 on average. Each bit
 * position of inputs of several lengths (every tail size and the word path)
 * is checked on its own, over many random inputs. */
static void test_hash64_avalanche(void **state)
{
	static const size_t lens[] = {1, 3, 7, 8, 13, 16, 24};
	uint64_t s = 0x1234567887654321ULL, all = 0, samples = 0;
	const int per_bit = 300;
	size_t li;

	(void)state;
	for (li = 0; li < sizeof(lens) / sizeof(lens[0]); li++) {
		size_t len = lens[li], bit;

		for (bit = 0; bit < len * 8; bit++) {
			uint64_t flips = 0;
			int k;

			for (k = 0; k < per_bit; k++) {
				unsigned char in[24];
				uint64_t seed = rnd(&s), a, b;
				size_t i;

				for (i = 0; i < len; i++)
					in[i] = (unsigned char)rnd(&s);
				a = ism_hash64(in, len, seed);
				in[bit / 8] ^= (unsigned char)(1u << (bit % 8));
				b = ism_hash64(in, len, seed);
				flips += (uint64_t)popcount64(a ^ b);
			}
			/* per position: 300 samples give a mean within ~0.3 of 32 */
			assert_in_range(flips, 28 * per_bit, 36 * per_bit);
			all += flips;
			samples += per_bit;
		}
	}
	/* over all positions, much tighter */
	assert_in_range(all * 100 / samples, 3150, 3250);
}

static void test_hash64_seed_avalanche(void **state)
{
	uint64_t s = 99, flips = 0;
	const int per_bit = 300;
	int bit, k;

	(void)state;
	/* ring points use the point index as the seed: a low seed bit must move
	 * the hash as much as a key bit */
	for (bit = 0; bit < 64; bit++) {
		uint64_t here = 0;

		for (k = 0; k < per_bit; k++) {
			uint64_t key = rnd(&s), seed = rnd(&s);

			here += (uint64_t)popcount64(ism_hash64(&key, 8, seed) ^
						     ism_hash64(&key, 8, seed ^ (1ULL << bit)));
		}
		assert_in_range(here, 28 * per_bit, 36 * per_bit);
		flips += here;
	}
	assert_in_range(flips * 100 / (64 * per_bit), 3150, 3250);
}

/* ---- ring hash ---- */

static void test_ring_counts_and_order(void **state)
{
	static const uint32_t w21[] = {2, 1};
	static const uint32_t skew[] = {1, 1000};
	struct ring *r;
	uint32_t count[2] = {0, 0};
	int i;

	(void)state;
	/* 4 equal endpoints, 1024: 256 points each */
	r = ring_new(keys5, ones, 4, 1024);
	assert_int_equal(r->n, 1024);
	for (i = 1; i < r->n; i++)
		assert_true(r->points[i - 1] <= r->points[i]);
	free(r);

	/* 2:1: the light endpoint gets ceil(1024 / 3) = 342 points, the heavy
	 * one twice that (Envoy's scale); at least the minimum in total */
	r = ring_new(keys5, w21, 2, 1024);
	assert_int_equal(r->n, 1026);
	for (i = 0; i < r->n; i++)
		count[r->owners[i]]++;
	assert_int_equal(count[0], 684);
	assert_int_equal(count[1], 342);
	free(r);

	/* a very light endpoint still gets a point */
	count[0] = count[1] = 0;
	r = ring_new(keys5, skew, 2, 4);
	assert_int_equal(r->n, 1001);
	for (i = 0; i < r->n; i++)
		count[r->owners[i]]++;
	assert_int_equal(count[0], 1);
	assert_int_equal(count[1], 1000);
	free(r);

	/* a minimum below the endpoint count still gives each one a point */
	r = ring_new(keys5, ones, 5, 0);
	assert_int_equal(r->n, 5);
	free(r);
}

static void test_ring_deterministic(void **state)
{
	static const uint32_t w[] = {3, 1, 2, 5, 1};
	struct ring *a, *b;

	(void)state;
	a = ring_new(keys5, w, 5, 1024);
	b = ring_new(keys5, w, 5, 1024);
	assert_int_equal(a->n, b->n);
	assert_memory_equal(a->points, b->points, (size_t)a->n * sizeof(a->points[0]));
	assert_memory_equal(a->owners, b->owners, (size_t)a->n * sizeof(a->owners[0]));
	free(a);
	free(b);
}

static void test_ring_lookup_wraps(void **state)
{
	static const uint64_t p[] = {10, 20, 30};
	static const uint64_t one[] = {1000};

	(void)state;
	assert_int_equal(ism_ring_lookup(p, 3, 0), 0);
	assert_int_equal(ism_ring_lookup(p, 3, 10), 0);
	assert_int_equal(ism_ring_lookup(p, 3, 11), 1);
	assert_int_equal(ism_ring_lookup(p, 3, 20), 1);
	assert_int_equal(ism_ring_lookup(p, 3, 29), 2);
	assert_int_equal(ism_ring_lookup(p, 3, 30), 2);
	/* past the last point: back to the first */
	assert_int_equal(ism_ring_lookup(p, 3, 31), 0);
	assert_int_equal(ism_ring_lookup(p, 3, UINT64_MAX), 0);
	assert_int_equal(ism_ring_lookup(one, 1, 0), 0);
	assert_int_equal(ism_ring_lookup(one, 1, UINT64_MAX), 0);
	/* an empty ring answers a harmless 0 */
	assert_int_equal(ism_ring_lookup(p, 0, 5), 0);
}

static void ring_shares(const struct ring *r, uint32_t n, uint32_t *hits)
{
	uint64_t s = 0xfeedfacecafebeefULL;
	int i;

	memset(hits, 0, n * sizeof(*hits));
	for (i = 0; i < LOOKUPS; i++)
		hits[ring_owner(r, rnd(&s))]++;
}

static void test_ring_distribution(void **state)
{
	uint32_t hits[4];
	struct ring *r;
	int e;

	(void)state;
	r = ring_new(keys5, ones, 4, 1024);
	ring_shares(r, 4, hits);
	for (e = 0; e < 4; e++) {
		print_message("ring 1024, equal: endpoint %d %.2f%%\n", e,
			      100.0 * hits[e] / LOOKUPS);
		assert_in_range(hits[e], LOOKUPS * 20 / 100, LOOKUPS * 30 / 100);
	}
	free(r);
}

static void test_ring_weights(void **state)
{
	static const uint32_t w21[] = {2, 1};
	uint32_t hits[2];
	struct ring *r;

	(void)state;
	r = ring_new(keys5, w21, 2, 1024);
	ring_shares(r, 2, hits);
	print_message("ring 2:1: %.2f%% / %.2f%%\n", 100.0 * hits[0] / LOOKUPS,
		      100.0 * hits[1] / LOOKUPS);
	/* 66.7% and 33.3%, within 3 points */
	assert_in_range(hits[0], LOOKUPS * 637 / 1000, LOOKUPS * 697 / 1000);
	assert_in_range(hits[1], LOOKUPS * 303 / 1000, LOOKUPS * 363 / 1000);
	free(r);
}

/* Removes endpoint 2 of 5 and counts the keys that stayed on their endpoint
 * among those that were not on the removed one. keys4 and w4 are the four
 * remaining endpoints, in their old order but renumbered. */
static double ring_kept_after_removal(uint32_t min5, uint32_t min4)
{
	static const char *const keys4[] = {"10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.4:8080",
					    "10.0.0.5:8080"};
	static const uint32_t old_of_new[] = {0, 1, 3, 4};
	struct ring *a = ring_new(keys5, ones, 5, min5), *b = ring_new(keys4, ones, 4, min4);
	uint64_t s = 0x0123456789abcdefULL;
	uint32_t kept = 0, total = 0;
	int i;

	for (i = 0; i < LOOKUPS; i++) {
		uint64_t h = rnd(&s);
		uint32_t before = ring_owner(a, h), after = ring_owner(b, h);

		if (before == 2)
			continue;
		total++;
		kept += old_of_new[after] == before;
	}
	free(a);
	free(b);
	return (double)kept / total;
}

static void test_ring_disruption(void **state)
{
	double kept;

	(void)state;
	/* Points are stable (point i of an endpoint depends on its key and i
	 * only): with the same points per remaining endpoint (1025 / 5 = 205 =
	 * 820 / 4), no key of a remaining endpoint moves */
	kept = ring_kept_after_removal(1025, 820);
	print_message("ring, same points per endpoint: %.2f%% kept\n", 100.0 * kept);
	assert_true(kept > 0.999);

	/* With a fixed minimum ring size, Envoy's scaling gives each remaining
	 * endpoint more points (205 -> 256 at 1024), and the 204 new points take
	 * keys in ~20% of the ring, 3/4 of them from another endpoint: about 85%
	 * of the keys stay, as with Envoy */
	kept = ring_kept_after_removal(1024, 1024);
	print_message("ring 1024 -> 1024: %.2f%% kept\n", 100.0 * kept);
	assert_true(kept > 0.80);
}

static void test_ring_errors(void **state)
{
	static const uint32_t w0[] = {1, 0};
	static const char *const knull[] = {"a", NULL};
	uint64_t p[8];
	uint32_t o[8];

	(void)state;
	assert_int_equal(ism_ring_build(keys5, ones, 0, 8, ISM_RING_ENVOY_MAX, p, o, 8), -EINVAL);
	assert_int_equal(ism_ring_build(keys5, w0, 2, 8, ISM_RING_ENVOY_MAX, p, o, 8), -EINVAL);
	assert_int_equal(ism_ring_build(knull, ones, 2, 8, ISM_RING_ENVOY_MAX, p, o, 8), -EINVAL);
	assert_int_equal(ism_ring_build(NULL, ones, 2, 8, ISM_RING_ENVOY_MAX, p, o, 8), -EINVAL);
	assert_int_equal(ism_ring_build(keys5, NULL, 2, 8, ISM_RING_ENVOY_MAX, p, o, 8), -EINVAL);
	assert_int_equal(ism_ring_build(keys5, ones, 2, 8, ISM_RING_ENVOY_MAX, NULL, o, 8),
			 -EINVAL);
	/* 9 points asked of 8 slots; exactly 8 fit */
	assert_int_equal(ism_ring_build(keys5, ones, 3, 9, ISM_RING_ENVOY_MAX, p, o, 8), -ENOSPC);
	assert_int_equal(ism_ring_build(keys5, ones, 2, 8, ISM_RING_ENVOY_MAX, p, o, 8), 8);
	assert_int_equal(ism_ring_build(keys5, ones, 2, 8, ISM_RING_ENVOY_MAX, p, o, 7), -ENOSPC);
	/* 5 endpoints need 5 points even when the minimum is lower */
	assert_int_equal(ism_ring_build(keys5, ones, 5, 1, ISM_RING_ENVOY_MAX, p, o, 4), -ENOSPC);
}

/* Envoy's maximum_ring_size: where the lightest endpoint's one point would
 * make the ring larger, the ring has the maximum, shared by weight (the
 * running total rounded up), and an endpoint of a tiny share keeps one point
 * only if it comes first. Weights of any 32-bit size. */
static void test_ring_max_size(void **state)
{
	static const uint32_t w[][2] = {{1, 1000}, {1, UINT32_MAX}, {UINT32_MAX, 1}};
	static const uint32_t want[][2] = {{1, 63}, {1, 63}, {64, 0}};
	uint64_t p[64];
	uint32_t o[64];

	(void)state;
	for (size_t i = 0; i < sizeof(w) / sizeof(w[0]); i++) {
		uint32_t count[2] = {0, 0};

		assert_int_equal(ism_ring_build(keys5, w[i], 2, 8, 64, p, o, 64), 64);
		for (int j = 0; j < 64; j++)
			count[o[j]]++;
		assert_int_equal(count[0], want[i][0]);
		assert_int_equal(count[1], want[i][1]);
	}
	/* Within the maximum, the minimum rules as before: 1001 points. */
	assert_int_equal(ism_ring_build(keys5, w[0], 2, 8, 2000, p, o, 64), -ENOSPC);
}

/* ---- Maglev ---- */

static void maglev_shares(const uint32_t *t, uint32_t m, uint32_t n, uint32_t *count)
{
	uint32_t i;

	memset(count, 0, n * sizeof(*count));
	for (i = 0; i < m; i++) {
		assert_true(t[i] < n);
		count[t[i]]++;
	}
}

static void test_maglev_deterministic(void **state)
{
	static const uint32_t w[] = {3, 1, 2, 5, 1};
	uint32_t *a, *b;

	(void)state;
	a = maglev_new(keys5, w, 5, MAGLEV_M);
	b = maglev_new(keys5, w, 5, MAGLEV_M);
	assert_memory_equal(a, b, MAGLEV_M * sizeof(*a));
	free(a);
	free(b);
}

static void test_maglev_distribution(void **state)
{
	uint32_t count[4], *t;
	int e;

	(void)state;
	t = maglev_new(keys5, ones, 4, MAGLEV_M);
	maglev_shares(t, MAGLEV_M, 4, count);
	for (e = 0; e < 4; e++) {
		print_message("maglev 65537, equal: endpoint %d %u entries\n", e, count[e]);
		/* 25% +- 1% */
		assert_in_range(count[e], MAGLEV_M * 24 / 100, MAGLEV_M * 26 / 100);
	}
	free(t);
}

static void test_maglev_weights(void **state)
{
	static const uint32_t w21[] = {2, 1};
	static const uint32_t w[] = {3, 1, 2, 5, 1};
	uint32_t count[5], *t;
	int e;

	(void)state;
	t = maglev_new(keys5, w21, 2, MAGLEV_M);
	maglev_shares(t, MAGLEV_M, 2, count);
	print_message("maglev 2:1: %u / %u\n", count[0], count[1]);
	assert_in_range(count[0], MAGLEV_M * 637 / 1000, MAGLEV_M * 697 / 1000);
	assert_in_range(count[1], MAGLEV_M * 303 / 1000, MAGLEV_M * 363 / 1000);
	free(t);

	/* 3:1:2:5:1 of 12: each within half a point of its share */
	t = maglev_new(keys5, w, 5, MAGLEV_M);
	maglev_shares(t, MAGLEV_M, 5, count);
	for (e = 0; e < 5; e++) {
		uint64_t want = (uint64_t)MAGLEV_M * w[e] / 12;

		assert_in_range(count[e], want - MAGLEV_M / 200, want + MAGLEV_M / 200);
	}
	free(t);
}

static void test_maglev_disruption(void **state)
{
	static const char *const keys4[] = {"10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.4:8080",
					    "10.0.0.5:8080"};
	static const uint32_t old_of_new[] = {0, 1, 3, 4};
	uint32_t *a, *b, i, moved = 0, moved_remaining = 0, remaining = 0;

	(void)state;
	a = maglev_new(keys5, ones, 5, MAGLEV_M);
	b = maglev_new(keys4, ones, 4, MAGLEV_M);
	for (i = 0; i < MAGLEV_M; i++) {
		uint32_t before = a[i], after = old_of_new[b[i]];

		moved += before != after;
		if (before == 2)
			continue;
		remaining++;
		moved_remaining += before != after;
	}
	print_message("maglev remove 1 of 5: %.2f%% of entries moved, %.2f%% of the "
		      "remaining endpoints' entries\n",
		      100.0 * moved / MAGLEV_M, 100.0 * moved_remaining / remaining);
	/* the removed endpoint's fifth must move; little else should */
	assert_true(moved <= MAGLEV_M * 25 / 100);
	assert_true(moved_remaining <= remaining * 5 / 100);
	free(a);
	free(b);
}

static void test_maglev_small_prime(void **state)
{
	uint32_t t[7], count[3];

	(void)state;
	/* more slots than endpoints, tiny table: every slot filled, shares 3/2/2 */
	assert_int_equal(ism_maglev_build(keys5, ones, 3, 7, t), 0);
	maglev_shares(t, 7, 3, count);
	assert_in_range(count[0], 2, 3);
	assert_in_range(count[1], 2, 3);
	assert_in_range(count[2], 2, 3);
	/* more endpoints than slots: the table is still full and valid */
	assert_int_equal(ism_maglev_build(keys5, ones, 5, 2, t), 0);
	assert_true(t[0] < 5 && t[1] < 5 && t[0] != t[1]);
}

static void test_maglev_errors(void **state)
{
	static const uint32_t w0[] = {1, 0};
	static const char *const knull[] = {"a", NULL};
	uint32_t t[16];

	(void)state;
	assert_int_equal(ism_maglev_build(keys5, ones, 0, 13, t), -EINVAL);
	assert_int_equal(ism_maglev_build(keys5, w0, 2, 13, t), -EINVAL);
	assert_int_equal(ism_maglev_build(knull, ones, 2, 13, t), -EINVAL);
	assert_int_equal(ism_maglev_build(NULL, ones, 2, 13, t), -EINVAL);
	assert_int_equal(ism_maglev_build(keys5, ones, 2, 13, NULL), -EINVAL);
	/* not prime */
	assert_int_equal(ism_maglev_build(keys5, ones, 2, 0, t), -EINVAL);
	assert_int_equal(ism_maglev_build(keys5, ones, 2, 1, t), -EINVAL);
	assert_int_equal(ism_maglev_build(keys5, ones, 2, 15, t), -EINVAL);
	assert_int_equal(ism_maglev_build(keys5, ones, 2, 16, t), -EINVAL);
	assert_int_equal(ism_maglev_build(keys5, ones, 2, 65536, t), -EINVAL);
	assert_int_equal(ism_maglev_build(keys5, ones, 2, 4294967295u, t), -EINVAL);
	/* the squares of primes, where a trial division that stops early fails */
	assert_int_equal(ism_maglev_build(keys5, ones, 2, 9, t), -EINVAL);
	assert_int_equal(ism_maglev_build(keys5, ones, 2, 65521u * 65521u, t), -EINVAL);
	/* primes */
	assert_int_equal(ism_maglev_build(keys5, ones, 2, 2, t), 0);
	assert_int_equal(ism_maglev_build(keys5, ones, 2, 13, t), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_hash64_pinned),
	    cmocka_unit_test(test_hash64_alignment_and_length),
	    cmocka_unit_test(test_hash64_avalanche),
	    cmocka_unit_test(test_hash64_seed_avalanche),
	    cmocka_unit_test(test_ring_counts_and_order),
	    cmocka_unit_test(test_ring_deterministic),
	    cmocka_unit_test(test_ring_lookup_wraps),
	    cmocka_unit_test(test_ring_distribution),
	    cmocka_unit_test(test_ring_weights),
	    cmocka_unit_test(test_ring_disruption),
	    cmocka_unit_test(test_ring_errors),
	    cmocka_unit_test(test_ring_max_size),
	    cmocka_unit_test(test_maglev_deterministic),
	    cmocka_unit_test(test_maglev_distribution),
	    cmocka_unit_test(test_maglev_weights),
	    cmocka_unit_test(test_maglev_disruption),
	    cmocka_unit_test(test_maglev_small_prime),
	    cmocka_unit_test(test_maglev_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
