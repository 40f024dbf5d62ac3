/* SPDX-License-Identifier: Apache-2.0 */
#include "lib/strmap.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* ism_hash64's construction.
 *
 * The building block is a 64-bit bijective mixer: xorshift, multiply by an odd
 * constant, xorshift, multiply, xorshift. Every step is invertible, so distinct
 * inputs stay distinct, and the multiplies carry each bit upwards while the
 * right shifts bring the high bits back down, so one flipped input bit flips
 * about half of the output bits. The shift amounts (30, 27, 31) and the two
 * multipliers are David Stafford's published "Mix13" parameters for this shape
 * (the same as SplitMix64's finalizer); only these numbers are taken, not code.
 *
 * Over the input:
 *   h = mix(seed ^ PHI ^ len * LEN_MULT)  the seed is mixed first, so that seeds
 *                                         that differ in a few low bits (ring
 *                                         point indices) give unrelated states
 *                                         and cannot cancel against key bytes;
 *                                         the length is folded in, so "a" and
 *                                         "a\0" (same zero-padded tail) differ
 *   h = mix(h ^ word)                     for each 8-byte little-endian word
 *   h = mix(h ^ tail ^ TAIL_MARK)         for the last 1..7 bytes, zero-padded
 * The words are read byte by byte as little endian, so the value does not
 * depend on the host's byte order or on alignment: tables built by the master
 * and lookups made by workers (or by another build) agree.
 *
 * It is not a keyed PRF: someone who knows the seed can build collisions. For
 * consistent hashing (worker/hash.c) the keys choose an upstream, so speed and
 * spread are what matter. The map below hashes keys from a configuration file
 * into its buckets, so it takes a random seed that the file's author cannot see
 * (ism_strmap_seed), and a run of colliding keys written for one seed is an
 * ordinary spread of keys under another. */
#define HASH_PHI 0x9e3779b97f4a7c15ULL /* 2^64 / golden ratio, odd */
/* two more odd constants with evenly mixed bits, nothing up the sleeve: the
 * first 64 fractional bits of sqrt(2) (low bit set to make it odd) and of
 * sqrt(3); the tail mark keeps an all-zero tail word from being a no-op */
#define HASH_LEN_MULT  0x6a09e667f3bcc909ULL
#define HASH_TAIL_MARK 0xbb67ae8584caa73bULL
#define MIX_M1	       0xbf58476d1ce4e5b9ULL
#define MIX_M2	       0x94d049bb133111ebULL

static uint64_t mix64(uint64_t z)
{
	z ^= z >> 30;
	z *= MIX_M1;
	z ^= z >> 27;
	z *= MIX_M2;
	z ^= z >> 31;
	return z;
}

static uint64_t load_le(const unsigned char *p, size_t n)
{
	uint64_t v = 0;
	size_t i;

	for (i = 0; i < n; i++)
		v |= (uint64_t)p[i] << (8 * i);
	return v;
}

uint64_t ism_hash64(const void *data, size_t len, uint64_t seed)
{
	const unsigned char *p = data;
	size_t left = len;
	uint64_t h;

	h = mix64(seed ^ HASH_PHI ^ ((uint64_t)len * HASH_LEN_MULT));
	for (; left >= 8; left -= 8, p += 8)
		h = mix64(h ^ load_le(p, 8));
	if (left)
		h = mix64(h ^ load_le(p, left) ^ HASH_TAIL_MARK);
	return h;
}

uint64_t ism_strmap_seed(void)
{
	uint64_t seed;
	struct timespec ts;

	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) == (ssize_t)sizeof(seed))
		return seed;
	/* No entropy yet (early boot): unpredictable enough to spread keys. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return mix64((uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32) ^ (uintptr_t)&seed);
}

/* --- the map --- */

void ism_strmap_init(struct ism_strmap *m, uint64_t seed)
{
	*m = (struct ism_strmap){.seed = seed};
}

void ism_strmap_init_fixed(struct ism_strmap *m, uint64_t seed, struct ism_strmap_slot *slots,
			   size_t cap)
{
	*m = (struct ism_strmap){.slots = slots, .cap = cap, .seed = seed, .fixed = true};
	memset(slots, 0, cap * sizeof(*slots));
}

size_t ism_strmap_fixed_cap(size_t n)
{
	size_t cap = 8;

	while (cap / 2 < n) {
		if (cap > SIZE_MAX / 2 / sizeof(struct ism_strmap_slot))
			return 0;
		cap *= 2;
	}
	return cap;
}

/* The slot that holds key, or the empty slot where it would go. */
static struct ism_strmap_slot *probe(const struct ism_strmap *m, const char *key, size_t len,
				     uint64_t hash)
{
	size_t mask = m->cap - 1;

	for (size_t i = (size_t)hash & mask;; i = (i + 1) & mask) {
		struct ism_strmap_slot *s = &m->slots[i];

		if (s->key == NULL ||
		    (s->hash == hash && s->len == len && memcmp(s->key, key, len) == 0))
			return s;
	}
}

/* Rehashes into cap slots (a power of two, more than twice the keys). */
static int resize(struct ism_strmap *m, size_t cap)
{
	struct ism_strmap old = *m;

	if (m->fixed)
		return -ENOSPC;
	if (cap > SIZE_MAX / sizeof(*m->slots))
		return -ENOMEM;
	m->slots = calloc(cap, sizeof(*m->slots));
	if (m->slots == NULL) {
		m->slots = old.slots;
		return -ENOMEM;
	}
	m->cap = cap;
	for (size_t i = 0; i < old.cap; i++)
		if (old.slots[i].key != NULL)
			*probe(m, old.slots[i].key, old.slots[i].len, old.slots[i].hash) =
			    old.slots[i];
	free(old.slots);
	return 0;
}

int ism_strmap_add(struct ism_strmap *m, const char *key, size_t len, uint32_t value,
		   uint32_t *found)
{
	uint64_t hash = ism_hash64(key, len, m->seed);
	struct ism_strmap_slot *s;
	int rc;

	if (len > UINT32_MAX)
		return -ENOMEM;
	if (m->cap > 0) {
		s = probe(m, key, len, hash);
		if (s->key != NULL) {
			if (found != NULL)
				*found = s->value;
			return 0;
		}
	}
	/* At most half full: probe runs stay short. */
	if ((m->n + 1) * 2 > m->cap) {
		rc = resize(m, m->cap ? m->cap * 2 : 8);
		if (rc < 0)
			return rc;
	}
	s = probe(m, key, len, hash);
	*s = (struct ism_strmap_slot){
	    .key = key, .hash = hash, .len = (uint32_t)len, .value = value};
	m->n++;
	return 1;
}

int ism_strmap_reserve(struct ism_strmap *m, size_t n)
{
	size_t cap = ism_strmap_fixed_cap(n);

	if (cap == 0)
		return -ENOMEM;
	return cap > m->cap ? resize(m, cap) : 0;
}

bool ism_strmap_get(const struct ism_strmap *m, const char *key, size_t len, uint32_t *value)
{
	const struct ism_strmap_slot *s;

	if (m->n == 0)
		return false;
	s = probe(m, key, len, ism_hash64(key, len, m->seed));
	if (s->key == NULL)
		return false;
	if (value != NULL)
		*value = s->value;
	return true;
}

bool ism_strmap_replace(struct ism_strmap *m, const char *key, size_t len, uint32_t value)
{
	struct ism_strmap_slot *s;

	if (m->n == 0)
		return false;
	s = probe(m, key, len, ism_hash64(key, len, m->seed));
	if (s->key == NULL)
		return false;
	s->key = key;
	s->value = value;
	return true;
}

void ism_strmap_free(struct ism_strmap *m)
{
	if (!m->fixed)
		free(m->slots);
	ism_strmap_init(m, m->seed);
}
