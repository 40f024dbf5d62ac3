/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of a route's actions on a request (worker/actions.h): the path
 * rewrites, as Envoy's prefix_rewrite and regex_rewrite do them. */
#define PCRE2_CODE_UNIT_WIDTH 8

#include <errno.h>
#include <pcre2.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conf/re2syntax.h"
#include "shm/table.h"
#include "worker/actions.h"
#include "worker/mirror.h"
#include "worker/router.h"
#include "worker/sock.h"

#define S(lit)                                                                                     \
	{                                                                                          \
		(lit), sizeof(lit) - 1                                                             \
	}

static struct ism_router_scratch *scratch;
static struct ism_buf out;

static int setup(void **state)
{
	(void)state;
	scratch = ism_router_scratch_new();
	return scratch == NULL ? -1 : 0;
}

static int teardown(void **state)
{
	(void)state;
	ism_router_scratch_free(scratch);
	ism_buf_free(&out);
	return 0;
}

/* Rewrites target ("/path?query") with pr after match m; the result as a
 * string (the path part's length checked against it). */
static const char *rewrite(const struct ism_path_rewrite *pr, const struct ism_match *m,
			   const char *target)
{
	const char *q = strchr(target, '?');
	size_t plen = q ? (size_t)(q - target) : strlen(target);
	int n = ism_act_rewrite_path(scratch, pr, m, target, plen, q ? q + 1 : NULL,
				     q ? strlen(q + 1) : 0, 65536, &out);
	static char buf[1024];

	assert_true(n >= 0);
	assert_true((uint32_t)n <= out.len);
	snprintf(buf, sizeof(buf), "%.*s", (int)out.len, out.p);
	assert_true(memchr(buf, '?', (size_t)n) == NULL);
	assert_true(n == (int)out.len || buf[n] == '?');
	return buf;
}

static struct ism_path_rewrite prefix_rw(const char *value)
{
	return (struct ism_path_rewrite){.kind = ISM_PATH_PREFIX,
					 .value = {value, (uint32_t)strlen(value)}};
}

/* A regex rewrite, compiled as the table compiles it (searched, RE2 options). */
static struct ism_path_rewrite regex_rw(const char *pattern, const char *sub)
{
	pcre2_compile_context *cctx = pcre2_compile_context_create(NULL);
	size_t off;
	int err;
	struct ism_path_rewrite pr = {
	    .kind = ISM_PATH_REGEX,
	    .value = {sub, (uint32_t)strlen(sub)},
	    .re = {.kind = ISM_SM_REGEX, .search = 1, .s = {pattern, (uint32_t)strlen(pattern)}}};

	assert_non_null(cctx);
	pr.re.re = ism_re2_compile(pattern, strlen(pattern), false, cctx, &err, &off);
	assert_non_null(pr.re.re);
	pcre2_compile_context_free(cctx);
	return pr;
}

static void free_rw(struct ism_path_rewrite *pr)
{
	pcre2_code_free((pcre2_code *)pr->re.re);
}

/* rewrite.uri replaces what the match matched: a prefix, the whole path of an
 * exact or regex match, "/" without a uri condition; the query stays. */
static void test_prefix_rewrite(void **state)
{
	struct ism_path_rewrite slash = prefix_rw("/"), v1 = prefix_rw("/v1/bookRatings");
	struct ism_match pfx = {.uri = {.kind = ISM_SM_PREFIX, .s = S("/api/")}};
	struct ism_match bare = {.uri = {.kind = ISM_SM_PREFIX, .s = S("/api")}};
	struct ism_match exact = {.uri = {.kind = ISM_SM_EXACT, .s = S("/ratings")}};
	struct ism_match regex = {.uri = {.kind = ISM_SM_REGEX, .s = S("/r.*")}};
	struct ism_match hdr_only = {.n_headers = 1};

	(void)state;
	assert_string_equal(rewrite(&slash, &pfx, "/api/x"), "/x");
	assert_string_equal(rewrite(&slash, &pfx, "/api/x?a=1&b"), "/x?a=1&b");
	/* Envoy's (and Istio's) "//": the prefix did not hold the slash. */
	assert_string_equal(rewrite(&slash, &bare, "/api/x"), "//x");
	assert_string_equal(rewrite(&slash, &bare, "/api"), "/");
	assert_string_equal(rewrite(&v1, &bare, "/api/x"), "/v1/bookRatings/x");
	assert_string_equal(rewrite(&v1, &exact, "/ratings?id=3"), "/v1/bookRatings?id=3");
	assert_string_equal(rewrite(&v1, &regex, "/ratings/7"), "/v1/bookRatings");
	assert_string_equal(rewrite(&v1, &hdr_only, "/x/y"), "/v1/bookRatingsx/y");
	assert_string_equal(rewrite(&v1, NULL, "/"), "/v1/bookRatings");
	assert_string_equal(rewrite(&v1, NULL, "/?q"), "/v1/bookRatings?q");
}

/* uriRegexRewrite: RE2's GlobalReplace over the path, the query kept. */
static void test_regex_rewrite(void **state)
{
	struct ism_path_rewrite gone;
	static const struct {
		const char *pattern, *sub, *in, *want;
	} cases[] = {
	    /* Envoy's examples (istio/api's first one gives "//v1" as well) */
	    {"^/service/([^/]+)(/.*)$", "\\2/instance/\\1", "/service/foo/v1/api",
	     "/v1/api/instance/foo"},
	    {"^/service/([^/]+)(/.*)$", "/customprefix/\\2/\\1", "/service/update/v1/api",
	     "/customprefix//v1/api/update"},
	    {"(?i)/xxx/", "/yyy/", "/aaa/XxX/bbb", "/aaa/yyy/bbb"},
	    /* every match is replaced */
	    {"one", "two", "/xxx/one/yyy/one/zzz?one", "/xxx/two/yyy/two/zzz?one"},
	    {"^/api/(.*)", "/\\1", "/api/x?q=1", "/x?q=1"},
	    {"^/api/(.*)", "/\\1", "/other", "/other"},
	    /* \0 the whole match, \\ a backslash, an unset group is empty */
	    {"b+", "[\\0\\\\]", "/abbc", "/a[bb\\]c"},
	    {"/(x)?(y)", "/\\1-\\2", "/y", "/-y"},
	    /* empty matches: one at each place, none right after a match (RE2's
	     * rule: Python's re.sub would give "-/--b-"); the result gets its '/' */
	    {"x*", "-", "/ab", "/-/-a-b-"},
	    {"a|", "-", "/ab", "/-/-b-"},
	    /* a result without a leading '/' gets one */
	    {"^/", "", "/a/b", "/a/b"},
	    /* multi-byte characters are skipped whole after an empty match */
	    {"", "-", "/\xc3\xa9", "/-/-\xc3\xa9-"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ism_path_rewrite pr = regex_rw(cases[i].pattern, cases[i].sub);

		assert_string_equal(rewrite(&pr, NULL, cases[i].in), cases[i].want);
		/* The same with this process's JIT copy, compiled from the source. */
		assert_int_equal(
		    ism_router_use_table(scratch, &(const struct ism_table){.n_regexes = 1}), 0);
		assert_string_equal(rewrite(&pr, NULL, cases[i].in), cases[i].want);
		assert_int_equal(ism_router_use_table(scratch, &(const struct ism_table){0}), 0);
		free_rw(&pr);
	}
	/* An empty result is no rewrite, as Envoy's: the path stays. */
	gone = regex_rw("^.*$", "");
	assert_int_equal(ism_act_rewrite_path(scratch, &gone, NULL, "/a", 2, "q=1", 3, 65536, &out),
			 -ENODATA);
	free_rw(&gone);
}

/* The rewrite's bounds: the limit on the result, the regex's match limit. */
static void test_rewrite_limits(void **state)
{
	struct ism_path_rewrite grow = regex_rw("a", "aaaaaaaa");
	struct ism_path_rewrite slow = regex_rw("(a|aa)+$", "x");
	char path[200];

	(void)state;
	memset(path, 'a', sizeof(path) - 1);
	path[0] = '/';
	path[sizeof(path) - 1] = '\0';
	assert_int_equal(
	    ism_act_rewrite_path(scratch, &grow, NULL, path, strlen(path), NULL, 0, 1000, &out),
	    -E2BIG);
	assert_true(ism_act_rewrite_path(scratch, &grow, NULL, path, strlen(path), NULL, 0, 2000,
					 &out) > 0);
	memset(path + 1, 'a', 60);
	path[61] = 'b';
	path[62] = '\0';
	assert_int_equal(
	    ism_act_rewrite_path(scratch, &slow, NULL, path, strlen(path), NULL, 0, 65536, &out),
	    -EAGAIN);
	assert_true(ism_router_limit_hit(scratch));
	free_rw(&grow);
	free_rw(&slow);
}

/* Envoy's newUri with Istio's port rules, for a request to host over tls. */
static const char *location(const struct ism_redirect *rd, uint16_t port, bool tls,
			    const char *host, const char *path)
{
	static char buf[512];

	assert_int_equal(
	    ism_act_location(rd, port, tls, host, strlen(host), path, strlen(path), 4096, &out), 0);
	snprintf(buf, sizeof(buf), "%.*s", (int)out.len, out.p);
	return buf;
}

static void test_location(void **state)
{
	struct ism_redirect none = {.code = 301};
	struct ism_redirect https = {.code = 301, .scheme = S("https")};
	struct ism_redirect https443 = {.code = 301, .scheme = S("https"), .port = 443};
	struct ism_redirect http = {.code = 301, .scheme = S("http")};
	struct ism_redirect port = {.code = 301, .port = 8443};
	struct ism_redirect port80 = {.code = 301, .port = 80};
	struct ism_redirect from_req = {
	    .code = 301, .authority = S("b.example"), .port_from_request = 1};
	struct ism_redirect auth = {.code = 301, .authority = S("b.example")};

	(void)state;
	assert_string_equal(location(&none, 80, false, "a.example:8080", "/x?q"),
			    "http://a.example:8080/x?q");
	assert_string_equal(location(&none, 443, true, "a.example", "/x"), "https://a.example/x");
	/* Another scheme: the port the old one implies goes, another stays. */
	assert_string_equal(location(&https, 80, false, "a.example:80", "/x"),
			    "https://a.example/x");
	assert_string_equal(location(&https, 80, false, "a.example:8080", "/x"),
			    "https://a.example:8080/x");
	assert_string_equal(location(&http, 443, true, "a.example:443", "/x"),
			    "http://a.example/x");
	assert_string_equal(location(&http, 443, true, "a.example:80", "/x"),
			    "http://a.example:80/x");
	/* A port replaces the request's; Istio leaves out :443 over https and :80
	 * over http (and the request's port then stays, as Envoy keeps it). */
	assert_string_equal(location(&port, 80, false, "a.example:8080", "/x"),
			    "http://a.example:8443/x");
	assert_string_equal(location(&https443, 80, false, "a.example:8080", "/x"),
			    "https://a.example:8080/x");
	assert_string_equal(location(&https443, 80, false, "a.example:80", "/x"),
			    "https://a.example/x");
	assert_string_equal(location(&port80, 80, false, "a.example", "/x"), "http://a.example/x");
	assert_string_equal(location(&port, 80, false, "[::1]:8080", "/x"), "http://[::1]:8443/x");
	assert_string_equal(location(&port, 80, false, "[::1]", "/x"), "http://[::1]:8443/x");
	/* The authority replaces the host and its port. */
	assert_string_equal(location(&auth, 8080, false, "a.example:8080", "/x"),
			    "http://b.example/x");
	assert_string_equal(location(&from_req, 8080, false, "a.example", "/x"),
			    "http://b.example:8080/x");
	/* No redirect: the request's own URL (a direct 3xx answer). */
	assert_string_equal(location(NULL, 80, false, "a.example:81", "/p?q"),
			    "http://a.example:81/p?q");
}

/* The path of a redirect: uri replaces the path (its own query replaces the
 * request's), prefixRewrite the matched prefix, none keeps it. */
static void test_redirect_path(void **state)
{
	struct ism_path_rewrite repl = {.kind = ISM_PATH_REPLACE, .value = S("/new")};
	struct ism_path_rewrite repl_q = {.kind = ISM_PATH_REPLACE, .value = S("/new?a=1")};
	struct ism_path_rewrite keep = {.kind = ISM_PATH_KEEP};
	struct ism_path_rewrite pre = prefix_rw("/post/");
	struct ism_match m = {.uri = {.kind = ISM_SM_PREFIX, .s = S("/pre/")}};

	(void)state;
	assert_string_equal(rewrite(&repl, &m, "/pre/x?q=1"), "/new?q=1");
	assert_string_equal(rewrite(&repl_q, &m, "/pre/x?q=1"), "/new?a=1");
	assert_string_equal(rewrite(&repl_q, &m, "/pre/x"), "/new?a=1");
	assert_string_equal(rewrite(&keep, &m, "/pre/x?q=1"), "/pre/x?q=1");
	assert_string_equal(rewrite(&pre, &m, "/pre/x?q=1"), "/post/x?q=1");
}

#define H(n, v)                                                                                    \
	{                                                                                          \
		(n), sizeof(n) - 1, (v), sizeof(v) - 1                                             \
	}

/* Header edits: the fields they drop go (any case), the kept ones stay in
 * order, the values follow; a stream's copy is the same. */
static void test_header_edits(void **state)
{
	static const struct ism_str one[] = {S("1")}, two[] = {S("a"), S("b")};
	static const struct ism_hdr_edit ev[] = {
	    {.name = S("x-set"), .drop = 1, .n_values = 1, .values = one},
	    {.name = S("server"), .drop = 1},
	    {.name = S("x-add"), .drop = 0, .n_values = 2, .values = two},
	};
	const struct ism_hdr_edits e = {.n = 3, .e = ev};
	const struct ism_http_header in[] = {H("Server", "nginx"), H("X-Set", "old"),
					     H("x-add", "0"), H("date", "today"),
					     H("x-set", "older")};
	struct ism_http_header got[8];
	struct ism_hdr_edits *c;
	const struct ism_hdr_edits *both[2];
	static const char *const want[][2] = {
	    {"x-add", "0"}, {"date", "today"}, {"x-set", "1"}, {"x-add", "a"}, {"x-add", "b"}};

	(void)state;
	assert_true(ism_act_drops(&e, "SERVER", 6));
	assert_false(ism_act_drops(&e, "x-add", 5));
	assert_false(ism_act_drops(&e, "x-other", 7));
	assert_null(ism_act_edit(&e, "x-se", 4));
	assert_int_equal(ism_act_n_values(&e), 3);
	c = ism_act_edits_dup(&e, NULL, NULL);
	assert_non_null(c);
	both[0] = &e;
	both[1] = c;
	for (int k = 0; k < 2; k++) {
		size_t n = ism_act_apply(both[k], in, 5, got, 8);

		assert_int_equal(n, 5);
		for (size_t i = 0; i < n; i++) {
			assert_int_equal(got[i].name_len, strlen(want[i][0]));
			assert_memory_equal(got[i].name, want[i][0], got[i].name_len);
			assert_int_equal(got[i].value_len, strlen(want[i][1]));
			assert_memory_equal(got[i].value, want[i][1], got[i].value_len);
		}
		/* Never past the room given. */
		assert_int_equal(ism_act_apply(both[k], in, 5, got, 3), 3);
	}
	assert_ptr_not_equal(c->e[0].name.p, ev[0].name.p);
	assert_string_equal(c->e[2].values[1].p, "b");
	free(c);
}

/* An operator's value for test_header_operators: its header name (part a)
 * is what it gives, "\r\n" and all. */
static size_t op_value(void *arg, const struct ism_hval_part *p, char *dst, size_t cap)
{
	size_t n = p->a.len < cap ? p->a.len : cap;

	(void)arg;
	memcpy(dst, p->a.p, n);
	return n;
}

/* Values with command operators, made: text and values in order, cut at a
 * part's length, control characters left out; a value that comes out empty
 * is not sent, and a set of it (not a remove) keeps the message's field. */
static void test_header_operators(void **state)
{
	static const struct ism_hval_part made[] = {
	    {.kind = ISM_HV_LITERAL, .a = S("v=")},
	    {.kind = ISM_HV_REQ, .a = S("abc\r\nx-evil: 1")},
	    {.kind = ISM_HV_REQ, .max_len = 2, .a = S("xyz")},
	};
	static const struct ism_hval_part none[] = {{.kind = ISM_HV_REQ, .a = S("")}};
	static const struct ism_hval fmts[] = {{.n = 3, .parts = made}};
	static const struct ism_hval empty[] = {{.n = 1, .parts = none}};
	static const struct ism_str raw[] = {S("v=%REQ(a)%%REQ(b):2%")}, raw2[] = {S("%REQ(c)%")};
	static const struct ism_hdr_edit ev[] = {
	    {.name = S("x-made"), .drop = 1, .n_values = 1, .values = raw, .fmts = fmts},
	    {.name = S("x-kept"), .drop = 1, .n_values = 1, .values = raw2, .fmts = empty},
	    {.name = S("x-gone"),
	     .drop = 1,
	     .removed = 1,
	     .n_values = 1,
	     .values = raw2,
	     .fmts = empty},
	};
	const struct ism_hdr_edits e = {.n = 3, .dynamic = 1, .e = ev};
	struct ism_hdr_edits *c = ism_act_edits_dup(&e, op_value, NULL);

	(void)state;
	assert_non_null(c);
	assert_int_equal(c->e[0].n_values, 1);
	assert_int_equal(c->e[0].values[0].len, strlen("v=abcx-evil: 1xy"));
	assert_memory_equal(c->e[0].values[0].p, "v=abcx-evil: 1xy", c->e[0].values[0].len);
	assert_true(c->e[0].drop);
	assert_int_equal(c->e[1].n_values, 0);
	assert_false(c->e[1].drop);
	assert_int_equal(c->e[2].n_values, 0);
	assert_true(c->e[2].drop);
	free(c);
	/* Without a callback: copied as written. */
	c = ism_act_edits_dup(&e, NULL, NULL);
	assert_non_null(c);
	assert_memory_equal(c->e[0].values[0].p, raw[0].p, raw[0].len);
	free(c);
}

/* test_header_operators_later's operators: a late one (RESP) is to be made
 * later while *arg is 0, and gives "<name>!" ("" for no name) once it is 1. */
static size_t op_later(void *arg, const struct ism_hval_part *p, char *dst, size_t cap)
{
	size_t n;

	if (ism_hval_late(p->kind) && *(int *)arg == 0)
		return ISM_HVAL_LATE;
	n = op_value(arg, p, dst, cap);
	if (ism_hval_late(p->kind) && n > 0 && n < cap)
		dst[n++] = '!';
	return n;
}

/* A response's value made in two steps: what the request gives when it
 * goes, the response's operators (kept, with their names copied) when the
 * answer comes; a value left for later is not judged empty before then. */
static void test_header_operators_later(void **state)
{
	static const struct ism_hval_part both[] = {
	    {.kind = ISM_HV_REQ, .a = S("req")},
	    {.kind = ISM_HV_LITERAL, .a = S("/")},
	    {.kind = ISM_HV_RESP, .max_len = 3, .a = S("resp"), .b = S("alt")},
	};
	static const struct ism_hval_part late[] = {{.kind = ISM_HV_RESP, .a = S("")}};
	static const struct ism_hval fmts[] = {{.n = 3, .parts = both}},
				     fl[] = {{.n = 1, .parts = late}};
	static const struct ism_str raw[] = {S("%REQ(req)%/%RESP(resp?alt):3%")},
				    raw2[] = {S("%RESP()%")}, text[] = {S("t")};
	static const struct ism_hdr_edit ev[] = {
	    {.name = S("x-plain"), .n_values = 1, .values = text},
	    {.name = S("x-both"), .drop = 1, .n_values = 1, .values = raw, .fmts = fmts},
	    {.name = S("x-late"), .drop = 1, .n_values = 1, .values = raw2, .fmts = fl},
	};
	const struct ism_hdr_edits e = {.n = 3, .dynamic = 1, .e = ev};
	int phase = 0;
	struct ism_hdr_edits *first = ism_act_edits_dup(&e, op_later, &phase), *second;

	(void)state;
	assert_non_null(first);
	assert_true(first->dynamic);
	assert_int_equal(first->e[1].n_values, 1);
	assert_int_equal(first->e[1].fmts[0].n, 3);
	assert_int_equal(first->e[1].fmts[0].parts[0].kind, ISM_HV_LITERAL);
	assert_string_equal(first->e[1].fmts[0].parts[0].a.p, "req");
	assert_int_equal(first->e[1].fmts[0].parts[2].kind, ISM_HV_RESP);
	assert_ptr_not_equal(first->e[1].fmts[0].parts[2].a.p, both[2].a.p);
	assert_string_equal(first->e[1].fmts[0].parts[2].b.p, "alt");
	assert_int_equal(first->e[2].n_values, 1);
	assert_true(first->e[2].drop);
	assert_int_equal(first->e[0].fmts[0].n, 0);
	phase = 1;
	second = ism_act_edits_dup(first, op_later, &phase);
	free(first);
	assert_non_null(second);
	assert_false(second->dynamic);
	assert_string_equal(second->e[0].values[0].p, "t");
	assert_int_equal(second->e[1].values[0].len, strlen("req/res"));
	assert_memory_equal(second->e[1].values[0].p, "req/res", strlen("req/res"));
	/* Empty once made: not sent, and the set keeps the message's field. */
	assert_int_equal(second->e[2].n_values, 0);
	assert_false(second->e[2].drop);
	free(second);
}

/* A mirrored copy's Host, as Envoy forms it: "-shadow" after the host, before
 * any port, an IPv6 literal kept whole. */
static void test_shadow_host(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"shop.example.com", "shop.example.com-shadow"},
	    {"shop.example.com:8080", "shop.example.com-shadow:8080"},
	    {"10.0.0.1:80", "10.0.0.1-shadow:80"},
	    {"[::1]:8080", "[::1]-shadow:8080"},
	    {"[::1]", "[::1]-shadow"},
	    {"", "-shadow"},
	};
	char buf[64];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int n = ism_mirror_shadow_host(cases[i].in, strlen(cases[i].in), buf, sizeof(buf));

		assert_int_equal(n, (int)strlen(cases[i].out));
		assert_memory_equal(buf, cases[i].out, (size_t)n);
	}
	assert_int_equal(ism_mirror_shadow_host("abc", 3, buf, 9), -E2BIG);
	assert_int_equal(ism_mirror_shadow_host("abc", 3, buf, 10), 10);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_prefix_rewrite),	   cmocka_unit_test(test_shadow_host),
	    cmocka_unit_test(test_regex_rewrite),	   cmocka_unit_test(test_rewrite_limits),
	    cmocka_unit_test(test_header_edits),	   cmocka_unit_test(test_header_operators),
	    cmocka_unit_test(test_header_operators_later), cmocka_unit_test(test_location),
	    cmocka_unit_test(test_redirect_path),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
