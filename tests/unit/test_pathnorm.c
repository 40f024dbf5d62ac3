/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of request-path normalisation (worker/pathnorm.h). A table gives the expected
 * result of each path under BASE, MERGE_SLASHES and DECODE_AND_MERGE_SLASHES (NONE is always
 * the identity): the examples, Istio's documented ones, Envoy's own path_utility and
 * integration test vectors, and the edges (root, trailing dot segments, encodings, refusals).
 * Every case also runs in place, at every capacity around the bound, twice (the result is a
 * fixed point), and against the fast-path predicate, on exact-sized heap copies so that ASan
 * sees any access out of range. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tests/unit/check.h"

#include "worker/pathnorm.h"

#define NMODES	4
#define REFUSED NULL

static const enum ism_pathnorm_mode modes[NMODES] = {ISM_PATHNORM_NONE, ISM_PATHNORM_BASE,
						     ISM_PATHNORM_MERGE_SLASHES,
						     ISM_PATHNORM_DECODE_AND_MERGE_SLASHES};

struct pcase {
	const char *in;
	const char *want[NMODES - 1]; /* BASE, MERGE_SLASHES, DECODE_AND_MERGE_SLASHES */
};

/* Same result in the three normalising modes. */
#define ALL(in, out)                                                                               \
	{                                                                                          \
		in,                                                                                \
		{                                                                                  \
			out, out, out                                                              \
		}                                                                                  \
	}
/* BASE differs from the merge modes. */
#define MERGED(in, base, merged)                                                                   \
	{                                                                                          \
		in,                                                                                \
		{                                                                                  \
			base, merged, merged                                                       \
		}                                                                                  \
	}

static const struct pcase cases[] = {
    /* The issue: a prefix route must not see through "..", and Istio's matches must work. */
    ALL("/static/../admin", "/admin"),
    ALL("/x/../hello", "/hello"),
    ALL("/./hello", "/hello"),
    ALL("/%68ello", "/hello"),

    /* Istio's examples (security best practices, authorization normalization page). */
    ALL("/a/../b", "/b"),
    ALL("\\da", "/da"),
    ALL("/some\\data", "/some/data"),
    MERGED("/a//b", "/a//b", "/a/b"),
    MERGED("/some//data///abc", "/some//data///abc", "/some/data/abc"),
    {"/a%2fb", {"/a%2fb", "/a%2fb", "/a/b"}},
    {"/some%2fdata/%61%62%63", {"/some%2fdata/abc", "/some%2fdata/abc", "/some/data/abc"}},
    ALL("/public/./data/abc/../xyz", "/public/data/xyz"),

    /* Envoy's path_utility_test and its escaped-slashes integration test. */
    ALL("/a/b/../c", "/a/c"),
    ALL("/a/b/./c", "/a/b/c"),
    ALL("/a/b/../../../../c", "/c"),
    ALL("/a/..\\c", "/c"),
    ALL("/%c0%af", "/%c0%af"),
    {"/%5c%25", {"/%5c%25", "/%5c%25", "/%25"}},
    ALL("/a/b/%2E%2E/c", "/a/c"),
    ALL("/a/b/%2e%2e/c", "/a/c"),
    ALL("/a/b/%2E./c", "/a/c"),
    ALL("/a/b/%2E/c", "/a/b/c"),
    ALL("/../a/b", "/a/b"),
    ALL("/./a/b", "/a/b"),
    ALL("/A/B/C", "/A/B/C"),
    {"/a/%2F%2f/c", {"/a/%2F%2f/c", "/a/%2F%2f/c", "/a/c"}},
    {"/private/..%2Fpublic%5c%2e%2Fabc",
     {"/private/..%2Fpublic%5c.%2Fabc", "/private/..%2Fpublic%5c.%2Fabc", "/public/abc"}},

    /* The root and trailing dot segments. */
    ALL("/", "/"),
    ALL("/.", "/"),
    ALL("/..", "/"),
    ALL("/../../x", "/x"),
    ALL("/../..", "/"),
    ALL("/a/.", "/a/"),
    ALL("/a/..", "/"),
    ALL("/a/b/.", "/a/b/"),
    ALL("/a/b/..", "/a/"),
    ALL("/a/./", "/a/"),
    ALL("/a/../", "/"),
    ALL("/a/b/c/../../d/./e", "/a/d/e"),
    ALL("/a\\.\\b", "/a/b"),
    ALL("/a/.\\..\\b", "/b"),
    /* Dots that are part of a name. */
    ALL("/.well-known/x", "/.well-known/x"),
    ALL("/..a/b", "/..a/b"),
    ALL("/a./b..", "/a./b.."),
    ALL("/a/...", "/a/..."),
    ALL("/a/.../b", "/a/.../b"),
    ALL("/a/.b/..c", "/a/.b/..c"),
    ALL("/a.%2e", "/a.."),

    /* Encoded dots are dots, once. */
    ALL("/a/%2e%2E/b", "/b"),
    ALL("/a/.%2e", "/"),
    ALL("/%2e%2e/x", "/x"),
    ALL("/%2e/x", "/x"),
    ALL("/a/%2e", "/a/"),
    {"/a/%2e%2e%2fb", {"/a/..%2fb", "/a/..%2fb", "/b"}},
    {"/a/..%5c..%5cb", {"/a/..%5c..%5cb", "/a/..%5c..%5cb", "/b"}},
    ALL("/%252e%252e/x", "/%252e%252e/x"),
    ALL("/%252E", "/%252E"),
    ALL("/%2541", "/%2541"),
    ALL("/%25%32%65", "/%252e"),
    ALL("/%252F", "/%252F"),

    /* Unreserved escapes decode in either hex case; the others stay exactly as sent. */
    ALL("/%4a%4A%6A", "/JJj"),
    ALL("/%7e%7E%2D%2d%5F%5f", "/~~--__"),
    ALL("/%30%39%41%5A%61%7A", "/09AZaz"),
    ALL("/a%3Fb%3fc", "/a%3Fb%3fc"),
    ALL("/%3A%3a%40%21%24%26%27%28%29%2A%2B%2C%3B%3D",
	"/%3A%3a%40%21%24%26%27%28%29%2A%2B%2C%3B%3D"),
    ALL("/%7C%7c%20%22%7F%80%FF%ff", "/%7C%7c%20%22%7F%80%FF%ff"),
    {"/%2F", {"/%2F", "/%2F", "/"}},
    {"/%5C", {"/%5C", "/%5C", "/"}},
    {"/a%5C..%5Cb", {"/a%5C..%5Cb", "/a%5C..%5Cb", "/b"}},
    {"/a%2f%2F%2f/b", {"/a%2f%2F%2f/b", "/a%2f%2F%2f/b", "/a/b"}},
    {"/%2F%2F", {"/%2F%2F", "/%2F%2F", "/"}},

    /* Bytes a path may not hold are encoded, as GURL does; the sub-delims, ':', '@', '[' and
     * ']' are not. */
    ALL("/a|b", "/a%7Cb"),
    ALL("/{x}", "/%7Bx%7D"),
    ALL("/a\"b", "/a%22b"),
    ALL("/^`<>", "/%5E%60%3C%3E"),
    ALL("/a b\t", "/a%20b%09"),
    ALL("/\x7f\x80\xff", "/%7F%80%FF"),
    ALL("/#?", "/%23%3F"),
    ALL("/!$&'()*+,;=:@[]", "/!$&'()*+,;=:@[]"),
    ALL("/|/../x|", "/x%7C"),

    /* Merging comes after the dot segments, as in Envoy. */
    MERGED("//", "//", "/"),
    MERGED("///a///", "///a///", "/a/"),
    MERGED("/a/b//", "/a/b//", "/a/b/"),
    ALL("/a//../b", "/a/b"),
    MERGED("/a/..//b", "//b", "/b"),
    MERGED("//a/./b", "//a/b", "/a/b"),
    MERGED("/a\\\\b", "/a//b", "/a/b"),
    MERGED("//..//", "//", "/"),

    /* Refused: NUL, invalid escapes, and a path that does not start with a slash. */
    ALL("/a%00b", REFUSED),
    ALL("/%00", REFUSED),
    ALL("/%", REFUSED),
    ALL("/a%", REFUSED),
    ALL("/%4", REFUSED),
    ALL("/%4g", REFUSED),
    ALL("/%zz", REFUSED),
    ALL("/%g0", REFUSED),
    ALL("/% 1", REFUSED),
    ALL("/%%30", REFUSED),
    ALL("/%%2F", REFUSED),
    ALL("/%2%2F", REFUSED),
    ALL("/ok/%2e%2e/%0", REFUSED),
    ALL("/xyz/.%00../abc", REFUSED),
    ALL("/xyz/AAAAA%%0000/abc", REFUSED),
    ALL("", REFUSED),
    ALL("a/b", REFUSED),
    ALL("%2Fa", REFUSED),
    ALL(".", REFUSED),
    ALL("*", REFUSED),
};

/* The bytes GURL percent-encodes in a path, listed here independently of the module. */
static bool encoded(int c)
{
	return (c > 0 && c <= 0x20) || c >= 0x7f || (c && strchr("\"#<>?^`{|}", c));
}

static size_t n_encoded(const char *s, size_t n)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++)
		k += encoded((unsigned char)s[i]);
	return k;
}

/* ism_pathnorm on exact-sized heap copies: in of n bytes, out of cap bytes filled with 0xA5;
 * *unwritten tells whether out was left untouched. */
static ssize_t run(enum ism_pathnorm_mode m, const char *in, size_t n, size_t cap, char *res,
		   bool *unwritten)
{
	char *a = malloc(n ? n : 1), *b = malloc(cap ? cap : 1);
	ssize_t r;

	assert_non_null(a);
	assert_non_null(b);
	memcpy(a, in, n);
	memset(b, 0xA5, cap);
	r = ism_pathnorm(m, a, n, b, cap);
	if (r > 0)
		memcpy(res, b, (size_t)r);
	*unwritten = true;
	for (size_t i = 0; i < cap; i++)
		*unwritten = *unwritten && (unsigned char)b[i] == 0xA5;
	free(a);
	free(b);
	return r;
}

/* In place: in at the start of a cap-byte block. */
static ssize_t run_in_place(enum ism_pathnorm_mode m, const char *in, size_t n, size_t cap,
			    char *res)
{
	char *a = malloc(cap > n ? cap : (n ? n : 1));
	ssize_t r;

	assert_non_null(a);
	memcpy(a, in, n);
	r = ism_pathnorm(m, a, n, a, cap);
	if (r > 0)
		memcpy(res, a, (size_t)r);
	free(a);
	return r;
}

/* Every property of one path under one mode; want is NULL when it must be refused. */
static void check_one(const char *name, enum ism_pathnorm_mode m, const char *in, size_t n,
		      const char *want)
{
	const size_t max = ISM_PATHNORM_MAX_OUT(n);
	const size_t need = m == ISM_PATHNORM_NONE ? n : n + 2 * n_encoded(in, n);
	char *out = malloc(max + 1), *again = malloc(max + 1);
	bool unwritten;
	ssize_t r;

	assert_non_null(out);
	assert_non_null(again);
	if (m == ISM_PATHNORM_NONE)
		want = in;
	r = run(m, in, n, max, out, &unwritten);
	if (want == NULL) {
		CHECK(name, r == -EINVAL, "mode %d: want -EINVAL, got %zd", (int)m, r);
		CHECK(name, unwritten, "mode %d: refused but out written", (int)m);
		CHECK(name, run_in_place(m, in, n, max, again) == -EINVAL, "in place: not refused");
		CHECK(name, run(m, in, n, 0, again, &unwritten) == -EINVAL,
		      "refusal not before capacity");
		CHECK(name, !ism_pathnorm_is_normal(m, in, n), "refused but normal");
		goto done;
	}
	const size_t wn = m == ISM_PATHNORM_NONE ? n : strlen(want);
	CHECK(name, r >= 0 && (size_t)r == wn && memcmp(out, want, wn) == 0,
	      "mode %d: want \"%s\", got %zd \"%.*s\"", (int)m, want, r, r > 0 ? (int)r : 0, out);
	CHECK(name, m == ISM_PATHNORM_NONE || out[0] == '/', "does not start with a slash");

	/* A fixed point. */
	r = run(m, out, wn, ISM_PATHNORM_MAX_OUT(wn), again, &unwritten);
	CHECK(name, r >= 0 && (size_t)r == wn && memcmp(again, out, wn) == 0,
	      "mode %d: not idempotent: \"%.*s\" gives %zd \"%.*s\"", (int)m, (int)wn, out, r,
	      r > 0 ? (int)r : 0, again);

	/* In place, with the bound as capacity. */
	r = run_in_place(m, in, n, need, again);
	CHECK(name, r >= 0 && (size_t)r == wn && memcmp(again, out, wn) == 0,
	      "mode %d: in place differs: %zd \"%.*s\"", (int)m, r, r > 0 ? (int)r : 0, again);

	/* The capacity rule: exactly len + 2 * encoded bytes; below it, nothing is written. */
	r = run(m, in, n, need, again, &unwritten);
	CHECK(name, r >= 0 && (size_t)r == wn, "mode %d: fails at cap %zu: %zd", (int)m, need, r);
	if (need > 0) {
		r = run(m, in, n, need - 1, again, &unwritten);
		CHECK(name, r == -ENOSPC && unwritten, "mode %d: cap %zu: want -ENOSPC, got %zd",
		      (int)m, need - 1, r);
		if (n <= 64)
			for (size_t cap = 0; cap + 1 < need; cap++)
				CHECK(name, run(m, in, n, cap, again, &unwritten) == -ENOSPC,
				      "cap %zu", cap);
	}

	/* The fast path never claims a path that changes. */
	if (ism_pathnorm_is_normal(m, in, n))
		CHECK(name, wn == n && memcmp(out, in, n) == 0, "mode %d: normal but changed",
		      (int)m);
done:
	free(out);
	free(again);
}

static void test_table(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct pcase *c = &cases[i];

		for (int m = 0; m < NMODES; m++)
			check_one(c->in, modes[m], c->in, strlen(c->in),
				  m == 0 ? c->in : c->want[m - 1]);
	}
}

static void test_nul_byte(void **state)
{
	static const char p[] = "/a\0b";

	(void)state;
	for (int m = 1; m < NMODES; m++)
		check_one("raw NUL", modes[m], p, sizeof(p) - 1, REFUSED);
	check_one("raw NUL", ISM_PATHNORM_NONE, p, sizeof(p) - 1, p);
}

static bool unreserved(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '~';
}

/* Every byte after a slash, and every "%HH" in both hex cases: refused only for NUL, a lone
 * '%' and %00; decoded only for the unreserved (and the slashes when decoding them); encoded
 * only for what GURL encodes. */
static void test_every_byte(void **state)
{
	(void)state;
	for (int c = 0; c < 256; c++) {
		const char p[2] = {'/', (char)c};
		char want[8], q[8];

		for (int m = 1; m < NMODES; m++) {
			const bool merge = modes[m] != ISM_PATHNORM_BASE;
			const char *w = want;

			if (c == 0 || c == '%')
				w = REFUSED;
			else if (c == '/' || c == '\\')
				w = merge ? "/" : "//";
			else if (c == '.')
				w = "/";
			else if (encoded(c))
				snprintf(want, sizeof(want), "/%%%02X", c);
			else
				snprintf(want, sizeof(want), "/%c", c);
			check_one("byte", modes[m], p, 2, w);
		}
		for (int upper = 0; upper < 2; upper++) {
			snprintf(q, sizeof(q), upper ? "/%%%02X" : "/%%%02x", c);
			for (int m = 1; m < NMODES; m++) {
				const bool dec = modes[m] == ISM_PATHNORM_DECODE_AND_MERGE_SLASHES;
				const char *w = q;

				if (c == 0)
					w = REFUSED;
				else if (unreserved(c))
					w = (snprintf(want, sizeof(want), "/%c", c), want);
				else if (c == '.' || (dec && (c == '/' || c == '\\')))
					w = "/";
				check_one("escape", modes[m], q, 4, w);
			}
		}
	}
}

/* s repeated k times after prefix, into a new string. */
static char *rep(const char *prefix, const char *s, size_t k, const char *suffix)
{
	size_t a = strlen(prefix), b = strlen(s), c = strlen(suffix);
	char *p = malloc(a + b * k + c + 1);

	assert_non_null(p);
	memcpy(p, prefix, a);
	for (size_t i = 0; i < k; i++)
		memcpy(p + a + i * b, s, b);
	memcpy(p + a + b * k, suffix, c + 1);
	return p;
}

static void check_all(const char *name, const char *in, const char *base, const char *merged)
{
	check_one(name, ISM_PATHNORM_NONE, in, strlen(in), in);
	check_one(name, ISM_PATHNORM_BASE, in, strlen(in), base);
	check_one(name, ISM_PATHNORM_MERGE_SLASHES, in, strlen(in), merged);
	check_one(name, ISM_PATHNORM_DECODE_AND_MERGE_SLASHES, in, strlen(in), merged);
}

/* Long paths: the longest target the parser takes by default (8 KiB) and longer, deep nesting
 * undone, ".." far above the root, and a path made only of bytes to encode (three times as
 * long once normalised, also in place). */
static void test_long(void **state)
{
	char *normal = rep("", "/a", 4096, ""), *deep = rep("", "/d", 3000, "");
	char *up = rep(deep, "/..", 3000, ""), *upx = rep(deep, "/..", 3000, "/x");
	char *above = rep("", "/..", 5000, "/x"), *enc_up = rep("/a", "/%2e%2E", 3000, "");
	char *bars = rep("/", "|", 9000, ""), *bars_out = rep("/", "%7C", 9000, "");
	char *slashes = rep("", "//", 4000, "a"), *dots = rep("", "/.", 6000, "/");

	(void)state;
	assert_int_equal(strlen(normal), 8192);
	assert_true(ism_pathnorm_is_normal(ISM_PATHNORM_DECODE_AND_MERGE_SLASHES, normal, 8192));
	check_all("8 KiB normal", normal, normal, normal);
	check_all("deep", deep, deep, deep);
	check_all("deep undone", up, "/", "/");
	check_all("deep undone, then x", upx, "/x", "/x");
	check_all("far above the root", above, "/x", "/x");
	check_all("encoded dots", enc_up, "/", "/");
	check_all("all encoded", bars, bars_out, bars_out);
	check_all("all slashes", slashes, slashes, "/a");
	check_all("all dots", dots, "/", "/");
	free(normal);
	free(deep);
	free(up);
	free(upx);
	free(above);
	free(enc_up);
	free(bars);
	free(bars_out);
	free(slashes);
	free(dots);
}

/* The fast path: true exactly for what costs nothing to keep (no '%', '\', byte to encode, dot
 * segment, nor "//" where slashes merge). */
static void test_is_normal(void **state)
{
	static const char *const yes[] = {"/",
					  "/a",
					  "/a/b/",
					  "/a.b/c.",
					  "/.well-known/x",
					  "/..a",
					  "/a/...",
					  "/a./b..",
					  "/!$&'()*+,;=:@[]-_~",
					  "/A/Z/0/9"};
	static const char *const no[] = {
	    "",	    "a",     "\\a",  "/a//b",  "//",	"/a/./b", "/a/.", "/a/..", "/.",    "/..",
	    "/./a", "/../a", "/%41", "/a%2Fb", "/a\\b", "/a|b",	  "/a b", "/a\"b", "/\x80", "/%"};

	(void)state;
	for (size_t i = 0; i < sizeof(yes) / sizeof(yes[0]); i++)
		for (int m = 0; m < NMODES; m++)
			CHECK(yes[i], ism_pathnorm_is_normal(modes[m], yes[i], strlen(yes[i])),
			      "mode %d: not normal", (int)modes[m]);
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		for (int m = 1; m < NMODES; m++) {
			bool base_ok = modes[m] == ISM_PATHNORM_BASE &&
				       (strcmp(no[i], "/a//b") == 0 || strcmp(no[i], "//") == 0);

			CHECK(no[i],
			      ism_pathnorm_is_normal(modes[m], no[i], strlen(no[i])) == base_ok,
			      "mode %d", (int)modes[m]);
		}
	for (size_t i = 0; i < sizeof(no) / sizeof(no[0]); i++)
		CHECK(no[i], ism_pathnorm_is_normal(ISM_PATHNORM_NONE, no[i], strlen(no[i])),
		      "NONE: not normal");
	CHECK("bad mode", !ism_pathnorm_is_normal((enum ism_pathnorm_mode)9, "/", 1), "normal");
}

/* A value outside the enum is refused. */
static void test_modes(void **state)
{
	char out[8];

	(void)state;
	assert_int_equal(ism_pathnorm((enum ism_pathnorm_mode)4, "/", 1, out, sizeof(out)),
			 -EINVAL);
	assert_int_equal(ism_pathnorm((enum ism_pathnorm_mode) - 1, "/", 1, out, sizeof(out)),
			 -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_table),      cmocka_unit_test(test_nul_byte),
	    cmocka_unit_test(test_every_byte), cmocka_unit_test(test_long),
	    cmocka_unit_test(test_is_normal),  cmocka_unit_test(test_modes),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
