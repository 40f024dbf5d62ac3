/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer harness for worker/pathnorm.c. The input is a path (and, when it does not start
 * with '/', also "/" followed by it), normalised under every mode. Besides memory safety (ASan,
 * UBSan, exact-sized buffers) it checks the contract: the result agrees with a reference built
 * the way Envoy is (textual %2F/%5C decoding, a character pass, RFC 3986 5.2.4
 * remove_dot_segments, Envoy's split-and-join slash merge); it starts with '/', holds no '\',
 * no dot segment, no "//" when slashes merge, and only escapes that stay; it is a fixed point;
 * in place gives the same; the capacity rule holds to the byte; NONE is the identity; and the
 * fast path never claims a path that changes. */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <errno.h>

#include "worker/pathnorm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz_pathnorm: invariant violated: %s\n", what);
		abort();
	}
}

static void *xmalloc(size_t n)
{
	void *p = malloc(n ? n : 1);

	check(p != NULL, "malloc");
	return p;
}

static int hexv(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool unres(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '.' || c == '_' || c == '~';
}

/* What GURL percent-encodes in a path (NUL aside, which is refused). */
static bool to_encode(unsigned char c)
{
	return (c > 0 && c <= 0x20) || c >= 0x7f || (c && strchr("\"#<>?^`{|}", c));
}

/* --- The reference, one pass per Envoy step, on NUL-free strings with lengths. --- */

struct str {
	char *p;
	size_t n;
};

/* Envoy's unescapeSlashes: each of the four sequences replaced in turn, over the whole path. */
static void ref_unescape_slashes(struct str *s)
{
	static const char *const from[] = {"%2F", "%2f", "%5C", "%5c"};
	static const char to[] = {'/', '/', '\\', '\\'};

	for (int k = 0; k < 4; k++) {
		size_t w = 0;

		for (size_t i = 0; i < s->n;) {
			if (s->n - i >= 3 && memcmp(s->p + i, from[k], 3) == 0) {
				s->p[w++] = to[k];
				i += 3;
			} else {
				s->p[w++] = s->p[i++];
			}
		}
		s->n = w;
	}
}

/* Validity, unreserved decoding, '\' to '/', encoding: out has room for 3 * s->n. */
static bool ref_chars(const struct str *s, struct str *out)
{
	static const char hex[] = "0123456789ABCDEF";

	out->n = 0;
	for (size_t i = 0; i < s->n; i++) {
		unsigned char c = (unsigned char)s->p[i];

		if (c == 0)
			return false;
		if (c == '%') {
			if (s->n - i < 3 || hexv((unsigned char)s->p[i + 1]) < 0 ||
			    hexv((unsigned char)s->p[i + 2]) < 0)
				return false;
			unsigned char v = (unsigned char)(hexv((unsigned char)s->p[i + 1]) * 16 +
							  hexv((unsigned char)s->p[i + 2]));
			if (v == 0)
				return false;
			if (unres(v)) {
				out->p[out->n++] = (char)v;
			} else {
				memcpy(out->p + out->n, s->p + i, 3);
				out->n += 3;
			}
			i += 2;
		} else if (c == '\\') {
			out->p[out->n++] = '/';
		} else if (to_encode(c)) {
			out->p[out->n++] = '%';
			out->p[out->n++] = hex[c >> 4];
			out->p[out->n++] = hex[c & 15];
		} else {
			out->p[out->n++] = (char)c;
		}
	}
	return true;
}

static bool starts(const char *p, size_t n, const char *lit)
{
	size_t l = strlen(lit);

	return n >= l && memcmp(p, lit, l) == 0;
}

static bool is(const char *p, size_t n, const char *lit)
{
	return n == strlen(lit) && memcmp(p, lit, n) == 0;
}

/* RFC 3986 5.2.4, its steps A to E as written, on in (modified) into out. */
static void ref_remove_dot_segments(struct str *in, struct str *out)
{
	char *p = in->p;
	size_t n = in->n;

	out->n = 0;
	while (n > 0) {
		if (starts(p, n, "../")) {
			p += 3, n -= 3;
		} else if (starts(p, n, "./")) {
			p += 2, n -= 2;
		} else if (starts(p, n, "/./")) {
			p += 2, n -= 2;
		} else if (is(p, n, "/.")) {
			p[1] = '/';
			p += 1, n -= 1;
		} else if (starts(p, n, "/../") || is(p, n, "/..")) {
			p[2] = '/'; /* "/.." becomes "/", and "/../" the "/" that follows */
			p += 2, n -= 2;
			if (n > 1)
				p += 1, n -= 1;
			while (out->n > 0 && out->p[out->n - 1] != '/')
				out->n--;
			if (out->n > 0)
				out->n--;
		} else if (is(p, n, ".") || is(p, n, "..")) {
			n = 0;
		} else {
			size_t seg = 1;

			while (seg < n && p[seg] != '/')
				seg++;
			memcpy(out->p + out->n, p, seg);
			out->n += seg;
			p += seg, n -= seg;
		}
	}
}

/* Envoy's mergeSlashes (split on '/', empty parts dropped, joined, the leading and trailing
 * slash kept), except that a path of slashes only becomes "/" rather than "//". */
static void ref_merge(struct str *s)
{
	bool lead = s->n > 0 && s->p[0] == '/', trail = s->n > 0 && s->p[s->n - 1] == '/';
	char *tmp = xmalloc(s->n + 2);
	size_t w = 0, parts = 0;

	if (memmem(s->p, s->n, "//", 2) == NULL) {
		free(tmp);
		return;
	}
	if (lead)
		tmp[w++] = '/';
	for (size_t i = 0; i < s->n;) {
		size_t j = i;

		while (j < s->n && s->p[j] != '/')
			j++;
		if (j > i) {
			if (parts++)
				tmp[w++] = '/';
			memcpy(tmp + w, s->p + i, j - i);
			w += j - i;
		}
		i = j + 1;
	}
	if (trail && !(parts == 0 && lead))
		tmp[w++] = '/';
	memcpy(s->p, tmp, w);
	s->n = w;
	free(tmp);
}

/* The reference result into out (room for 3 * n + 1), or false when refused. */
static bool reference(enum ism_pathnorm_mode m, const char *in, size_t n, struct str *out)
{
	struct str a = {xmalloc(n), n}, b = {xmalloc(3 * n + 1), 0};
	bool ok = false;

	memcpy(a.p, in, n);
	if (m == ISM_PATHNORM_NONE) {
		memcpy(out->p, in, n);
		out->n = n;
		ok = true;
		goto done;
	}
	if (n == 0 || (in[0] != '/' && in[0] != '\\'))
		goto done;
	if (m == ISM_PATHNORM_DECODE_AND_MERGE_SLASHES)
		ref_unescape_slashes(&a);
	if (!ref_chars(&a, &b))
		goto done;
	ref_remove_dot_segments(&b, out);
	if (m != ISM_PATHNORM_BASE)
		ref_merge(out);
	ok = true;
done:
	free(a.p);
	free(b.p);
	return ok;
}

/* --- Properties of the module's result. --- */

static void check_shape(enum ism_pathnorm_mode m, const char *p, size_t n)
{
	check(n > 0 && p[0] == '/', "starts with '/'");
	check(memchr(p, '\\', n) == NULL, "backslash left");
	for (size_t i = 0; i < n; i++) {
		if (p[i] == '/' && i + 1 < n) {
			const char *s = p + i + 1;
			size_t l = n - i - 1;

			check(!(s[0] == '.' && (l == 1 || s[1] == '/')), "\".\" segment left");
			check(!(l >= 2 && s[0] == '.' && s[1] == '.' && (l == 2 || s[2] == '/')),
			      "\"..\" segment left");
			check(m == ISM_PATHNORM_BASE || s[0] != '/', "\"//\" left");
		}
		if (p[i] == '%') {
			check(n - i >= 3, "'%' at the end");
			int hi = hexv((unsigned char)p[i + 1]), lo = hexv((unsigned char)p[i + 2]);
			check(hi >= 0 && lo >= 0, "invalid escape left");
			unsigned char v = (unsigned char)(hi * 16 + lo);
			check(v != 0 && !unres(v), "decodable escape left");
			check(m != ISM_PATHNORM_DECODE_AND_MERGE_SLASHES || (v != '/' && v != '\\'),
			      "escaped slash left");
			i += 2;
		} else {
			check(!to_encode((unsigned char)p[i]) && p[i] != 0, "byte to encode left");
		}
	}
}

static ssize_t norm(enum ism_pathnorm_mode m, const char *in, size_t n, size_t cap, char *res)
{
	char *a = xmalloc(n), *b = xmalloc(cap);
	ssize_t r;

	memcpy(a, in, n);
	r = ism_pathnorm(m, a, n, b, cap);
	if (r > 0)
		memcpy(res, b, (size_t)r);
	free(a);
	free(b);
	return r;
}

static void fuzz_mode(enum ism_pathnorm_mode m, const char *in, size_t n)
{
	const size_t max = ISM_PATHNORM_MAX_OUT(n) + 1;
	size_t k = 0;
	char *out = xmalloc(max), *again = xmalloc(max), *place;
	struct str ref = {xmalloc(max), 0};
	ssize_t r, r2;

	for (size_t i = 0; i < n && m != ISM_PATHNORM_NONE; i++)
		k += to_encode((unsigned char)in[i]);
	r = norm(m, in, n, ISM_PATHNORM_MAX_OUT(n), out);
	check(r == -EINVAL || (r >= 0 && (size_t)r <= n + 2 * k), "result out of range");
	if (!reference(m, in, n, &ref)) {
		check(r == -EINVAL, "the reference refuses, the module does not");
		check(m != ISM_PATHNORM_NONE, "NONE refused");
		check(!ism_pathnorm_is_normal(m, in, n), "refused but normal");
		goto done;
	}
	check(r >= 0, "the module refuses, the reference does not");
	check((size_t)r == ref.n && memcmp(out, ref.p, ref.n) == 0, "differs from the reference");
	if (m == ISM_PATHNORM_NONE) {
		check((size_t)r == n && memcmp(out, in, n) == 0, "NONE changed the path");
		goto done;
	}
	check_shape(m, out, (size_t)r);

	r2 = norm(m, out, (size_t)r, ISM_PATHNORM_MAX_OUT((size_t)r), again);
	check(r2 == r && memcmp(again, out, (size_t)r) == 0, "not idempotent");

	place = xmalloc(n + 2 * k);
	memcpy(place, in, n);
	r2 = ism_pathnorm(m, place, n, place, n + 2 * k);
	check(r2 == r && memcmp(place, out, (size_t)r) == 0, "in place differs");
	free(place);

	r2 = norm(m, in, n, n + 2 * k, again);
	check(r2 == r, "fails at the documented capacity");
	if (n + 2 * k > 0)
		check(norm(m, in, n, n + 2 * k - 1, again) == -ENOSPC, "no -ENOSPC below it");

	if (ism_pathnorm_is_normal(m, in, n))
		check((size_t)r == n && memcmp(out, in, n) == 0, "normal but changed");
done:
	free(out);
	free(again);
	free(ref.p);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const enum ism_pathnorm_mode modes[] = {ISM_PATHNORM_NONE, ISM_PATHNORM_BASE,
						       ISM_PATHNORM_MERGE_SLASHES,
						       ISM_PATHNORM_DECODE_AND_MERGE_SLASHES};
	char *p;

	if (size > 4096)
		return 0;
	p = xmalloc(size + 1);
	p[0] = '/';
	memcpy(p + 1, data, size);
	for (size_t m = 0; m < sizeof(modes) / sizeof(modes[0]); m++) {
		fuzz_mode(modes[m], p + 1, size);
		if (size == 0 || data[0] != '/')
			fuzz_mode(modes[m], p, size + 1);
	}
	free(p);
	return 0;
}
