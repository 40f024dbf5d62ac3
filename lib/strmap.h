/* SPDX-License-Identifier: Apache-2.0 */
/* A 64-bit byte hash, and a hash map from byte strings to uint32_t values on it.
 *
 * The map is what the configuration loader and compiler look names up in
 * (hosts, subsets, resource names, endpoint keys), so that a file with many of
 * them loads in linear time. Keys are not copied: the caller keeps each key's
 * bytes alive and unchanged while the map holds it. Values are the caller's
 * (usually an index into its own array). Any process may use it; nothing is
 * shared. */
#ifndef ISM_LIB_STRMAP_H
#define ISM_LIB_STRMAP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* A 64-bit hash of bytes (our own: no third-party code), stable across
 * processes, runs and hosts for a given seed. */
uint64_t ism_hash64(const void *data, size_t len, uint64_t seed);

/* A seed for maps whose keys come from outside (a configuration file): random
 * per call (getrandom(2); the clock and an address when that fails), so that
 * keys chosen to collide under one seed do not collide under the next. */
uint64_t ism_strmap_seed(void);

struct ism_strmap_slot {
	const char *key; /* NULL: empty slot */
	uint64_t hash;
	uint32_t len;
	uint32_t value;
};

/* Open addressing, linear probing, at most half full. Copyable by value only
 * while nothing is added to either copy. */
struct ism_strmap {
	struct ism_strmap_slot *slots;
	size_t cap; /* 0 or a power of two */
	size_t n;
	uint64_t seed;
	bool fixed; /* slots are the caller's memory: never grown nor freed */
};

/* An empty map (no allocation until the first add). */
void ism_strmap_init(struct ism_strmap *m, uint64_t seed);
/* A map over the caller's memory: slots[cap] (cap a power of two), for a map
 * built once whose size is known, e.g. in a pool. It holds at most cap / 2
 * keys (an add beyond returns -ENOSPC) and ism_strmap_free leaves it alone. */
void ism_strmap_init_fixed(struct ism_strmap *m, uint64_t seed, struct ism_strmap_slot *slots,
			   size_t cap);
/* The slot count a fixed map of n keys needs: a power of two >= 2n (at least
 * 8); 0 when that overflows. */
size_t ism_strmap_fixed_cap(size_t n);
/* Adds key (len bytes, less than 4 GiB) with value unless the key is there already. Returns 1
 * when added; 0 when present, with its value in *found (when not NULL) and the
 * map unchanged; -ENOMEM (or -ENOSPC for a full fixed map), the map unchanged. */
int ism_strmap_add(struct ism_strmap *m, const char *key, size_t len, uint32_t value,
		   uint32_t *found);
/* Makes room for n keys in all, so that adding up to that many allocates
 * nothing more. 0 or -ENOMEM (-ENOSPC for a fixed map too small). */
int ism_strmap_reserve(struct ism_strmap *m, size_t n);
/* True and *value (when not NULL) when key is in the map. */
bool ism_strmap_get(const struct ism_strmap *m, const char *key, size_t len, uint32_t *value);
/* Gives key, which the map holds, the new value, and makes key's bytes the
 * ones the map keeps (those it kept before may then go). False, the map
 * unchanged, when key is not in it. */
bool ism_strmap_replace(struct ism_strmap *m, const char *key, size_t len, uint32_t value);
/* Frees the slots (not the keys); the map is empty again, with the same seed. */
void ism_strmap_free(struct ism_strmap *m);

#endif
