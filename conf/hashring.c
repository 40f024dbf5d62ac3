/* SPDX-License-Identifier: Apache-2.0 */
/* Ring-hash and Maglev tables, built at compile time into the generation's
 * arena (conf/hashring.h). */
#include "conf/hashring.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static int check_endpoints(const char *const *key, const uint32_t *w, uint32_t n)
{
	uint32_t i;

	if (!key || !w || n == 0)
		return -EINVAL;
	for (i = 0; i < n; i++)
		if (!key[i] || w[i] == 0)
			return -EINVAL;
	return 0;
}

/* Ring points: point i of endpoint e is ism_hash64(key[e], seed = i). Using
 * the index as the seed (Envoy hashes the string "key_i") needs no buffer for
 * keys of any length, and keeps point i of an endpoint the same whatever the
 * other endpoints are: a rebuild after a membership change moves only the keys
 * near points that appeared or disappeared. */

static bool point_less(uint64_t ha, uint32_t oa, uint64_t hb, uint32_t ob)
{
	/* the owner breaks ties so that the order, and so the table, is fully
	 * determined by the input even in the (2^-64) case of equal hashes */
	return ha < hb || (ha == hb && oa < ob);
}

static void sift_down(uint64_t *h, uint32_t *o, size_t root, size_t n)
{
	for (;;) {
		size_t child = 2 * root + 1, top = root;
		uint64_t th;
		uint32_t to;

		if (child < n && point_less(h[top], o[top], h[child], o[child]))
			top = child;
		if (child + 1 < n && point_less(h[top], o[top], h[child + 1], o[child + 1]))
			top = child + 1;
		if (top == root)
			return;
		th = h[root], h[root] = h[top], h[top] = th;
		to = o[root], o[root] = o[top], o[top] = to;
		root = top;
	}
}

/* Heapsort of the two parallel arrays: in place, so building a ring allocates
 * nothing, and O(n log n) whatever the input. */
static void sort_points(uint64_t *h, uint32_t *o, size_t n)
{
	size_t i;

	for (i = n / 2; i-- > 0;)
		sift_down(h, o, i, n);
	for (i = n; i-- > 1;) {
		uint64_t th = h[0];
		uint32_t to = o[0];

		h[0] = h[i], h[i] = th;
		o[0] = o[i], o[i] = to;
		sift_down(h, o, 0, i);
	}
}

/* Envoy's point counts, in exact integer arithmetic. Envoy scales the
 * normalized weights so that the lightest endpoint gets
 * c_min = ceil(w_min / W * M) points (M the minimum ring size, W the weight
 * sum); an endpoint of weight w then has w * c_min / w_min points, and the
 * fractions are rounded on the running total (endpoint e gets
 * ceil(S_e) - ceil(S_{e-1}), S_e the scaled prefix sum), so the ring has
 * ceil(c_min * W / w_min) >= M points. Envoy does this in doubles, where an
 * endpoint whose share is a whole number can lose a point to rounding; integers
 * guarantee every endpoint at least c_min >= 1 points. The 128-bit products
 * cannot overflow: W < 2^64 and c_min <= M < 2^32. */
static unsigned __int128 ceil_div(unsigned __int128 a, unsigned __int128 b)
{
	return (a + b - 1) / b;
}

int ism_ring_build(const char *const *key, const uint32_t *w, uint32_t n, uint32_t min_size,
		   uint32_t max_size, uint64_t *points, uint32_t *owners, uint32_t cap)
{
	unsigned __int128 prefix = 0, total, done = 0;
	uint64_t sum = 0, c_min;
	uint32_t wmin = UINT32_MAX, e, m;
	bool capped;
	size_t at = 0;
	int rc;

	rc = check_endpoints(key, w, n);
	if (rc < 0)
		return rc;
	if (cap > 0 && (!points || !owners))
		return -EINVAL;
	for (e = 0; e < n; e++) {
		sum += w[e];
		if (w[e] < wmin)
			wmin = w[e];
	}
	/* at least one point per endpoint, whatever min_size says */
	m = min_size > n ? min_size : n;
	c_min = (uint64_t)ceil_div((unsigned __int128)wmin * m, sum);
	total = ceil_div((unsigned __int128)c_min * sum, wmin);
	/* Envoy's scale is min(c_min / w_min * W, max_ring_size): past the
	 * maximum, endpoint e's points are max * S_e / W, rounded as above. */
	capped = total > max_size && max_size >= m;
	if (capped)
		total = max_size;
	if (total > cap || total > INT_MAX)
		return -ENOSPC;

	for (e = 0; e < n; e++) {
		size_t len = strlen(key[e]);
		unsigned __int128 upto;
		uint64_t i;

		prefix += w[e];
		upto = capped ? ceil_div((unsigned __int128)max_size * prefix, sum)
			      : ceil_div((unsigned __int128)c_min * prefix, wmin);
		for (i = 0; done < upto; i++, done++, at++) {
			points[at] = ism_hash64(key[e], len, i);
			owners[at] = e;
		}
	}
	sort_points(points, owners, at);
	return (int)at;
}

static bool is_prime(uint32_t m)
{
	uint32_t d;

	if (m < 2)
		return false;
	if (m % 2 == 0)
		return m == 2;
	/* d <= m / d avoids d * d overflowing; m < 2^32 needs d < 2^16 */
	for (d = 3; d <= m / d; d += 2)
		if (m % d == 0)
			return false;
	return true;
}

/* Per-endpoint state of the Maglev population (the paper's offset, skip and
 * next), plus the turns taken for the weighting. */
struct maglev_entry {
	uint64_t offset;
	uint64_t skip;
	uint64_t next;
	uint64_t taken;
};

/* Maglev population (Eisenbud et al., NSDI 2016): endpoint e's preference list
 * is permutation(j) = (offset + j * skip) % m with offset = h1(key) % m and
 * skip = h2(key) % (m - 1) + 1; as m is prime every skip is coprime with it,
 * so the list visits every slot. Endpoints take turns claiming the next free
 * slot of their list until the table is full.
 *
 * Weighting, as Envoy's weighted Maglev: turns go in rounds r = 1, 2, ...; in
 * round r, endpoint e takes a turn only if r * w_e >= taken_e * w_max, i.e.
 * while its credit (w_e / w_max per round) covers the turns it has had. The
 * heaviest endpoint plays every round, one of half its weight every other
 * round, so table shares follow the weights; with equal weights it is the
 * paper's plain round robin. Integers keep the schedule exact and identical on
 * every machine: r <= m and taken_e <= m, so both products fit in 64 bits. */
int ism_maglev_build(const char *const *key, const uint32_t *w, uint32_t n, uint32_t m,
		     uint32_t *table)
{
	struct maglev_entry *ent;
	uint32_t wmax = 0, e, filled = 0;
	uint64_t r, slot;
	int rc;

	rc = check_endpoints(key, w, n);
	if (rc < 0)
		return rc;
	if (!table || !is_prime(m))
		return -EINVAL;
	ent = calloc(n, sizeof(*ent));
	if (!ent)
		return -ENOMEM;
	for (e = 0; e < n; e++) {
		size_t len = strlen(key[e]);

		/* seeds 0 and 1 make two independent hashes of the same key */
		ent[e].offset = ism_hash64(key[e], len, 0) % m;
		ent[e].skip = ism_hash64(key[e], len, 1) % (m - 1) + 1; /* m >= 2 */
		if (w[e] > wmax)
			wmax = w[e];
	}
	for (slot = 0; slot < m; slot++)
		table[slot] = UINT32_MAX;

	for (r = 1; filled < m; r++) {
		for (e = 0; e < n && filled < m; e++) {
			struct maglev_entry *en = &ent[e];

			if (r * w[e] < en->taken * wmax)
				continue;
			/* the list covers all m slots and the table is not full,
			 * so this finds a free slot within m steps */
			do {
				slot = (en->offset + en->next * en->skip) % m;
				en->next++;
			} while (table[slot] != UINT32_MAX);
			table[slot] = e;
			en->taken++;
			filled++;
		}
	}
	free(ent);
	return 0;
}
