/* SPDX-License-Identifier: Apache-2.0 */
/* Ring-hash lookup (worker/hash.h). */
#include "worker/hash.h"

uint32_t ism_ring_lookup(const uint64_t *points, uint32_t n_points, uint64_t h)
{
	uint32_t lo = 0, hi = n_points;

	/* lower bound: the first point >= h; past the last point the ring wraps
	 * to point 0. An empty ring has no position; 0 keeps the caller's index
	 * arithmetic in range, and the caller checks n_points first. */
	while (lo < hi) {
		uint32_t mid = lo + (hi - lo) / 2;

		if (points[mid] < h)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < n_points ? lo : 0;
}
