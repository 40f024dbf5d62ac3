/* SPDX-License-Identifier: Apache-2.0 */
/* Consistent hashing for ism_cluster.hash: the ring hash (Envoy's ketama-style
 * ring of minimumRingSize points spread by endpoint weight) and Maglev (a
 * lookup table of a prime size), built once, at compile time, into the
 * generation's arena; the workers look them up (worker/hash.h). Pure. */
#ifndef ISM_CONF_HASHRING_H
#define ISM_CONF_HASHRING_H

#include <stddef.h>
#include <stdint.h>

#include "lib/strmap.h" /* ism_hash64 */

/* Envoy's default maximum_ring_size, which Istio leaves as it is. */
#define ISM_RING_ENVOY_MAX 8388608u

/* Builds a ring for n endpoints with weights w[i] (> 0) keyed by key[i] (e.g.
 * "address:port"), at least min_size points and at most max_size, as Envoy
 * does: each endpoint gets points in proportion to its weight, the lightest
 * at least one unless that would pass max_size (then the ring has max_size
 * points, and an endpoint of a tiny share may have none, as in Envoy). Writes
 * at most cap entries into points (sorted hash values) and owners (endpoint
 * index per point); returns the number of points, or -ENOSPC when cap is too
 * small. */
int ism_ring_build(const char *const *key, const uint32_t *w, uint32_t n, uint32_t min_size,
		   uint32_t max_size, uint64_t *points, uint32_t *owners, uint32_t cap);
/* Builds a Maglev table of size m (prime) for n endpoints keyed by key[i] with
 * weights w[i] (Envoy's weighted Maglev). table[m] receives endpoint indices.
 * Returns 0 or -EINVAL. */
int ism_maglev_build(const char *const *key, const uint32_t *w, uint32_t n, uint32_t m,
		     uint32_t *table);

#endif
