/* SPDX-License-Identifier: Apache-2.0 */
/* Router unit tests: virtual-host choice, Istio HTTPMatchRequest semantics and the
 * weighted destination split, over tables built by hand. */
#define PCRE2_CODE_UNIT_WIDTH 8

#include <arpa/inet.h>
#include <pcre2.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lib/addr.h"
#include "worker/router.h"

#define S(lit)                                                                                     \
	{                                                                                          \
		(lit), sizeof(lit) - 1                                                             \
	}
#define SM(k, lit)                                                                                 \
	{                                                                                          \
		.kind = (k), .s = S(lit)                                                           \
	}

static struct ism_router_scratch *scratch;

/* A request built from a target ("/path?query"), a method, a Host and headers
 * given as "name", "value" pairs. */
struct treq {
	struct ism_http_req req;
	struct ism_http_header hdrs[8];
};

static const struct ism_http_req *mkreq(struct treq *t, const char *method, const char *target,
					const char *host, ...)
{
	const char *q = strchr(target, '?');
	const char *name;
	va_list ap;

	memset(t, 0, sizeof(*t));
	t->req.method = method;
	t->req.method_len = strlen(method);
	t->req.target = target;
	t->req.target_len = strlen(target);
	t->req.path = target;
	t->req.path_len = q ? (size_t)(q - target) : strlen(target);
	t->req.query = q ? q + 1 : NULL;
	t->req.query_len = q ? strlen(q + 1) : 0;
	t->req.host = host;
	t->req.host_len = host ? strlen(host) : 0;
	t->req.minor_version = 1;
	t->req.headers = t->hdrs;
	if (host) {
		t->hdrs[0] = (struct ism_http_header){"Host", 4, host, strlen(host)};
		t->req.n_headers = 1;
	}
	va_start(ap, host);
	while ((name = va_arg(ap, const char *)) != NULL) {
		const char *value = va_arg(ap, const char *);

		assert_true(t->req.n_headers < 8);
		t->hdrs[t->req.n_headers++] =
		    (struct ism_http_header){name, strlen(name), value, strlen(value)};
	}
	va_end(ap);
	return &t->req;
}

static const void *re(const char *pattern)
{
	int err;
	PCRE2_SIZE off;
	pcre2_code *c = pcre2_compile((PCRE2_SPTR)pattern, PCRE2_ZERO_TERMINATED,
				      PCRE2_ANCHORED | PCRE2_ENDANCHORED, &err, &off, NULL);

	assert_non_null(c);
	return c;
}

/* The index of the matched route in vh, or -1. */
static int route_idx(const struct ism_vhost *vh, const struct ism_http_req *req, const char *scheme,
		     uint16_t port)
{
	const struct ism_route *r = ism_router_route(vh, req, scheme, port, scratch);

	return r ? (int)(r - vh->routes) : -1;
}

/* One route per match, plus nothing else: route_idx tells which matched. */
static int one(const struct ism_match *m, const struct ism_http_req *req)
{
	struct ism_route r = {.n_match = 1, .match = m};
	struct ism_vhost vh = {.n_routes = 1, .routes = &r};

	return route_idx(&vh, req, "http", 80) == 0;
}

static void test_vhost_order(void **state)
{
	(void)state;
	static const struct ism_str d_any[] = {S("*")};
	static const struct ism_str d_wide[] = {S("*.example.com")};
	static const struct ism_str d_narrow[] = {S("*.api.example.com")};
	static const struct ism_str d_exact[] = {S("www.example.com"), S("foo.test")};
	const struct ism_vhost vhs[] = {
	    {.name = S("any"), .n_domains = 1, .domains = d_any},
	    {.name = S("wide"), .n_domains = 1, .domains = d_wide},
	    {.name = S("narrow"), .n_domains = 1, .domains = d_narrow},
	    {.name = S("exact"), .n_domains = 2, .domains = d_exact},
	};
	const struct ism_listener l = {.n_vhosts = 4, .vhosts = vhs};

#define VH(h) ism_router_vhost(l.vhosts, l.n_vhosts, NULL, (h), strlen(h))
	assert_ptr_equal(VH("www.example.com"), &vhs[3]);
	assert_ptr_equal(VH("WWW.Example.COM:8080"), &vhs[3]);
	assert_ptr_equal(VH("foo.test"), &vhs[3]);
	assert_ptr_equal(VH("a.example.com"), &vhs[1]);
	assert_ptr_equal(VH("a.b.example.com:443"), &vhs[1]);
	assert_ptr_equal(VH("x.api.example.com"), &vhs[2]);
	assert_ptr_equal(VH("y.x.api.example.com"), &vhs[2]);
	/* the wildcard needs at least one label before the suffix */
	assert_ptr_equal(VH("example.com"), &vhs[0]);
	assert_ptr_equal(VH("api.example.com"), &vhs[1]);
	assert_ptr_equal(VH("other.org"), &vhs[0]);
	assert_ptr_equal(VH("[::1]:80"), &vhs[0]);
	assert_ptr_equal(ism_router_vhost(l.vhosts, l.n_vhosts, NULL, NULL, 0), &vhs[0]);
	/* without "*", an unknown host has no virtual host */
	const struct ism_listener l2 = {.n_vhosts = 3, .vhosts = vhs + 1};
	assert_null(ism_router_vhost(l2.vhosts, l2.n_vhosts, NULL, "other.org", 9));
	assert_ptr_equal(ism_router_vhost(l2.vhosts, l2.n_vhosts, NULL, "b.example.com", 13),
			 &vhs[1]);
#undef VH
}

static void test_first_match_wins(void **state)
{
	(void)state;
	struct treq t;
	const struct ism_match m_api = {.uri = SM(ISM_SM_PREFIX, "/api")};
	const struct ism_match m_api_v2 = {.uri = SM(ISM_SM_PREFIX, "/api/v2")};
	const struct ism_route routes[] = {
	    {.name = S("r0"), .n_match = 1, .match = &m_api},
	    {.name = S("r1"), .n_match = 1, .match = &m_api_v2},
	    {.name = S("catch-all"), .n_match = 0},
	};
	const struct ism_vhost vh = {.n_routes = 3, .routes = routes};

	/* /api/v2 also matches r0, which comes first */
	assert_int_equal(route_idx(&vh, mkreq(&t, "GET", "/api/v2/x", "h", NULL), "http", 80), 0);
	assert_int_equal(route_idx(&vh, mkreq(&t, "GET", "/apix", "h", NULL), "http", 80), 0);
	assert_int_equal(route_idx(&vh, mkreq(&t, "GET", "/other", "h", NULL), "http", 80), 2);

	const struct ism_vhost vh2 = {.n_routes = 2, .routes = routes};
	assert_int_equal(route_idx(&vh2, mkreq(&t, "GET", "/other", "h", NULL), "http", 80), -1);
}

static void test_and_or(void **state)
{
	(void)state;
	struct treq t;
	/* (uri prefix /a AND method POST) OR (uri exact /b) */
	const struct ism_match ms[] = {
	    {.uri = SM(ISM_SM_PREFIX, "/a"), .method = SM(ISM_SM_EXACT, "POST")},
	    {.uri = SM(ISM_SM_EXACT, "/b")},
	};
	const struct ism_route r = {.n_match = 2, .match = ms};
	const struct ism_vhost vh = {.n_routes = 1, .routes = &r};

	assert_int_equal(route_idx(&vh, mkreq(&t, "POST", "/a/1", "h", NULL), "http", 80), 0);
	assert_ptr_equal(ism_router_matched(scratch), &ms[0]);
	assert_int_equal(route_idx(&vh, mkreq(&t, "GET", "/a/1", "h", NULL), "http", 80), -1);
	assert_int_equal(route_idx(&vh, mkreq(&t, "GET", "/b", "h", NULL), "http", 80), 0);
	/* The block that held: the rewrite of a prefix depends on it. */
	assert_ptr_equal(ism_router_matched(scratch), &ms[1]);
	assert_int_equal(route_idx(&vh, mkreq(&t, "POST", "/b", "h", NULL), "http", 80), 0);
	assert_int_equal(route_idx(&vh, mkreq(&t, "POST", "/c", "h", NULL), "http", 80), -1);
}

static void test_string_match_kinds(void **state)
{
	(void)state;
	struct treq t;
	const struct ism_match exact = {.uri = SM(ISM_SM_EXACT, "/x/y")};
	const struct ism_match prefix = {.uri = SM(ISM_SM_PREFIX, "/x")};
	struct ism_match regex = {.uri = {.kind = ISM_SM_REGEX, .s = S("/v[0-9]+/.*")}};
	struct ism_match unanchored = {.uri = {.kind = ISM_SM_REGEX, .s = S("v1")}};
	const struct ism_match scheme = {.scheme = SM(ISM_SM_EXACT, "https")};
	const struct ism_match auth = {.authority = SM(ISM_SM_EXACT, "api.test:8080")};
	const struct ism_match auth_pfx = {.authority = SM(ISM_SM_PREFIX, "api.")};
	const struct ism_match port = {.port = 8443};

	regex.uri.re = re("/v[0-9]+/.*");
	assert_true(one(&exact, mkreq(&t, "GET", "/x/y", "h", NULL)));
	assert_true(one(&exact, mkreq(&t, "GET", "/x/y?q=1", "h", NULL)));
	assert_false(one(&exact, mkreq(&t, "GET", "/x/y/", "h", NULL)));
	assert_false(one(&exact, mkreq(&t, "GET", "/X/Y", "h", NULL)));
	assert_true(one(&prefix, mkreq(&t, "GET", "/x", "h", NULL)));
	assert_true(one(&prefix, mkreq(&t, "GET", "/xyz", "h", NULL)));
	assert_false(one(&prefix, mkreq(&t, "GET", "/", "h", NULL)));
	assert_true(one(&regex, mkreq(&t, "GET", "/v12/abc", "h", NULL)));
	assert_true(one(&regex, mkreq(&t, "GET", "/v1/?a=b", "h", NULL)));
	assert_false(one(&regex, mkreq(&t, "GET", "/vx/abc", "h", NULL)));
	assert_false(one(&regex, mkreq(&t, "GET", "/p/v1/abc", "h", NULL)));
	/* even a pattern compiled without anchors must match the whole path */
	{
		int err;
		PCRE2_SIZE off;
		unanchored.uri.re = pcre2_compile((PCRE2_SPTR) "v1", 2, 0, &err, &off, NULL);
		assert_non_null(unanchored.uri.re);
	}
	assert_false(one(&unanchored, mkreq(&t, "GET", "/v1", "h", NULL)));
	assert_true(one(&scheme, mkreq(&t, "GET", "/", "h", NULL)) == 0);
	{
		struct ism_route r = {.n_match = 1, .match = &scheme};
		struct ism_vhost vh = {.n_routes = 1, .routes = &r};
		assert_int_equal(route_idx(&vh, mkreq(&t, "GET", "/", "h", NULL), "https", 443), 0);
		assert_int_equal(route_idx(&vh, mkreq(&t, "GET", "/", "h", NULL), "http", 443), -1);
		r.match = &port;
		assert_int_equal(route_idx(&vh, mkreq(&t, "GET", "/", "h", NULL), "https", 8443),
				 0);
		assert_int_equal(route_idx(&vh, mkreq(&t, "GET", "/", "h", NULL), "https", 443),
				 -1);
	}
	/* authority is the raw Host value, port included */
	assert_true(one(&auth, mkreq(&t, "GET", "/", "api.test:8080", NULL)));
	assert_false(one(&auth, mkreq(&t, "GET", "/", "api.test", NULL)));
	assert_true(one(&auth_pfx, mkreq(&t, "GET", "/", "api.test", NULL)));
	assert_false(one(&auth_pfx, mkreq(&t, "GET", "/", NULL, NULL)));
	pcre2_code_free((pcre2_code *)regex.uri.re);
	pcre2_code_free((pcre2_code *)unanchored.uri.re);
}

static void test_ignore_uri_case(void **state)
{
	(void)state;
	struct treq t;
	const struct ism_match exact = {
	    .uri = {.kind = ISM_SM_EXACT, .ignore_case = 1, .s = S("/Login")}};
	const struct ism_match prefix = {
	    .uri = {.kind = ISM_SM_PREFIX, .ignore_case = 1, .s = S("/Static/")}};

	assert_true(one(&exact, mkreq(&t, "GET", "/LOGIN", "h", NULL)));
	assert_true(one(&exact, mkreq(&t, "GET", "/login", "h", NULL)));
	assert_false(one(&exact, mkreq(&t, "GET", "/login2", "h", NULL)));
	assert_true(one(&prefix, mkreq(&t, "GET", "/static/app.js", "h", NULL)));
	assert_false(one(&prefix, mkreq(&t, "GET", "/stat", "h", NULL)));
}

static void test_headers(void **state)
{
	(void)state;
	struct treq t;
	const struct ism_kvmatch h_user[] = {{S("end-user"), SM(ISM_SM_EXACT, "jason")}};
	const struct ism_kvmatch h_present[] = {{S("x-canary"), {.kind = ISM_SM_PRESENT}}};
	struct ism_kvmatch h_re[] = {
	    {S("user-agent"), {.kind = ISM_SM_REGEX, .s = S(".*Firefox.*")}}};
	const struct ism_kvmatch h_pfx[] = {{S("x-version"), SM(ISM_SM_PREFIX, "v2")}};
	const struct ism_match m_user = {.n_headers = 1, .headers = h_user};
	const struct ism_match m_present = {.n_headers = 1, .headers = h_present};
	const struct ism_match m_re = {.n_headers = 1, .headers = h_re};
	const struct ism_match m_two = {.n_headers = 1,
					.headers = h_user,
					.n_without_headers = 1,
					.without_headers = h_present};
	const struct ism_match m_without = {.n_without_headers = 1, .without_headers = h_pfx};
	const struct ism_match m_without_present = {.n_without_headers = 1,
						    .without_headers = h_present};

	h_re[0].m.re = re(".*Firefox.*");
	/* names compare case-insensitively, values as parsed */
	assert_true(one(&m_user, mkreq(&t, "GET", "/", "h", "End-User", "jason", NULL)));
	assert_false(one(&m_user, mkreq(&t, "GET", "/", "h", "end-user", "Jason", NULL)));
	assert_false(one(&m_user, mkreq(&t, "GET", "/", "h", NULL)));
	/* {} tests presence, whatever the value, even empty */
	assert_true(one(&m_present, mkreq(&t, "GET", "/", "h", "X-Canary", "", NULL)));
	assert_true(one(&m_present, mkreq(&t, "GET", "/", "h", "x-canary", "1", NULL)));
	assert_false(one(&m_present, mkreq(&t, "GET", "/", "h", "x-canary-2", "1", NULL)));
	assert_true(
	    one(&m_re, mkreq(&t, "GET", "/", "h", "User-Agent", "Mozilla Firefox/1", NULL)));
	assert_false(one(&m_re, mkreq(&t, "GET", "/", "h", "User-Agent", "curl/8", NULL)));
	/* withoutHeaders: a request matching one of them does not match */
	assert_true(one(&m_two, mkreq(&t, "GET", "/", "h", "end-user", "jason", NULL)));
	assert_false(
	    one(&m_two, mkreq(&t, "GET", "/", "h", "end-user", "jason", "x-canary", "y", NULL)));
	assert_true(one(&m_without, mkreq(&t, "GET", "/", "h", NULL)));
	assert_true(one(&m_without, mkreq(&t, "GET", "/", "h", "x-version", "v1", NULL)));
	assert_false(one(&m_without, mkreq(&t, "GET", "/", "h", "x-version", "v2.1", NULL)));
	assert_true(one(&m_without_present, mkreq(&t, "GET", "/", "h", NULL)));
	assert_false(one(&m_without_present, mkreq(&t, "GET", "/", "h", "x-canary", "", NULL)));
	/* repeated headers are joined with "," before matching (Envoy) */
	{
		const struct ism_kvmatch h_join[] = {{S("x-a"), SM(ISM_SM_EXACT, "1,2")}};
		const struct ism_match m_join = {.n_headers = 1, .headers = h_join};
		assert_true(one(&m_join, mkreq(&t, "GET", "/", "h", "x-a", "1", "X-A", "2", NULL)));
		assert_false(one(&m_join, mkreq(&t, "GET", "/", "h", "x-a", "1", NULL)));
	}
	/* withoutHeaders: a missing header is the empty value (istiod's
	 * treat_missing_header_as_empty) but for a presence match */
	{
		const struct ism_kvmatch h_empty[] = {{S("x-h"), SM(ISM_SM_EXACT, "")}};
		struct ism_kvmatch h_any[] = {{S("x-h"), {.kind = ISM_SM_REGEX, .s = S(".*")}}};
		const struct ism_match m_empty = {.n_without_headers = 1,
						  .without_headers = h_empty};
		const struct ism_match m_any = {.n_without_headers = 1, .without_headers = h_any};
		const struct ism_match m_empty_req = {.n_headers = 1, .headers = h_empty};

		assert_false(one(&m_empty, mkreq(&t, "GET", "/", "h", NULL)));
		assert_false(one(&m_empty, mkreq(&t, "GET", "/", "h", "x-h", "", NULL)));
		assert_true(one(&m_empty, mkreq(&t, "GET", "/", "h", "x-h", "a", NULL)));
		assert_false(one(&m_empty_req, mkreq(&t, "GET", "/", "h", NULL)));
		h_any[0].m.re = re(".*");
		assert_false(one(&m_any, mkreq(&t, "GET", "/", "h", NULL)));
		assert_false(one(&m_any, mkreq(&t, "GET", "/", "h", "x-h", "abc", NULL)));
		pcre2_code_free((pcre2_code *)h_any[0].m.re);
	}
	/* Envoy's pseudo-headers; its HTTP/1.1 Host is :authority, which a
	 * lookup of "host" finds */
	{
		const struct ism_kvmatch h_method[] = {{S(":method"), SM(ISM_SM_EXACT, "GET")}};
		const struct ism_kvmatch h_auth[] = {{S(":authority"), SM(ISM_SM_PREFIX, "a.")}};
		const struct ism_kvmatch h_scheme[] = {{S(":scheme"), SM(ISM_SM_EXACT, "http")}};
		const struct ism_kvmatch h_path[] = {{S(":path"), SM(ISM_SM_EXACT, "/p?x=1")}};
		const struct ism_kvmatch h_status[] = {{S(":status"), {.kind = ISM_SM_PRESENT}}};
		const struct ism_kvmatch h_host[] = {{S("host"), SM(ISM_SM_PREFIX, "a.")}};
		const struct ism_match m_method = {.n_headers = 1, .headers = h_method};
		const struct ism_match m_not_method = {.n_without_headers = 1,
						       .without_headers = h_method};
		const struct ism_match m_auth = {.n_headers = 1, .headers = h_auth};
		const struct ism_match m_scheme = {.n_headers = 1, .headers = h_scheme};
		const struct ism_match m_path = {.n_headers = 1, .headers = h_path};
		const struct ism_match m_status = {.n_headers = 1, .headers = h_status};
		const struct ism_match m_host = {.n_headers = 1, .headers = h_host};

		assert_true(one(&m_method, mkreq(&t, "GET", "/", "h", NULL)));
		assert_false(one(&m_method, mkreq(&t, "POST", "/", "h", NULL)));
		assert_false(one(&m_not_method, mkreq(&t, "GET", "/", "h", NULL)));
		assert_true(one(&m_not_method, mkreq(&t, "POST", "/", "h", NULL)));
		assert_true(one(&m_auth, mkreq(&t, "GET", "/", "a.example:8080", NULL)));
		assert_false(one(&m_auth, mkreq(&t, "GET", "/", "b.example", NULL)));
		assert_true(one(&m_scheme, mkreq(&t, "GET", "/", "h", NULL))); /* one() says http */
		assert_true(one(&m_path, mkreq(&t, "GET", "/p?x=1", "h", NULL)));
		assert_false(one(&m_path, mkreq(&t, "GET", "/p", "h", NULL)));
		assert_false(one(&m_status, mkreq(&t, "GET", "/", "h", NULL)));
		assert_true(one(&m_host, mkreq(&t, "GET", "/", "a.example:8080", NULL)));
		assert_false(one(&m_host, mkreq(&t, "GET", "/", "b.example", NULL)));
		assert_false(one(&m_host, mkreq(&t, "GET", "/", NULL, NULL)));
	}
	pcre2_code_free((pcre2_code *)h_re[0].m.re);
}

static void test_query_params(void **state)
{
	(void)state;
	struct treq t;
	const struct ism_kvmatch q_empty[] = {{S("b"), SM(ISM_SM_EXACT, "")}};
	const struct ism_kvmatch q_a[] = {{S("a"), SM(ISM_SM_EXACT, "1")}};
	struct ism_kvmatch q_re[] = {{S("id"), {.kind = ISM_SM_REGEX, .s = S("[0-9]+")}}};
	const struct ism_kvmatch q_pfx[] = {{S("p"), SM(ISM_SM_PREFIX, "ab")}};
	const struct ism_match m_empty = {.n_query = 1, .query = q_empty};
	const struct ism_match m_a = {.n_query = 1, .query = q_a};
	const struct ism_match m_re = {.n_query = 1, .query = q_re};
	const struct ism_match m_pfx = {.n_query = 1, .query = q_pfx};

	q_re[0].m.re = re("[0-9]+");
	assert_true(one(&m_empty, mkreq(&t, "GET", "/?b", "h", NULL)));
	assert_true(one(&m_empty, mkreq(&t, "GET", "/?a=1&b", "h", NULL)));
	assert_true(one(&m_empty, mkreq(&t, "GET", "/?a=1&b=&c", "h", NULL)));
	assert_false(one(&m_empty, mkreq(&t, "GET", "/?b=1", "h", NULL)));
	assert_false(one(&m_empty, mkreq(&t, "GET", "/?bb", "h", NULL)));
	assert_false(one(&m_empty, mkreq(&t, "GET", "/", "h", NULL)));
	assert_true(one(&m_a, mkreq(&t, "GET", "/?a=1&b&c=", "h", NULL)));
	assert_true(one(&m_a, mkreq(&t, "GET", "/?b&a=1", "h", NULL)));
	assert_false(one(&m_a, mkreq(&t, "GET", "/?a=12", "h", NULL)));
	assert_false(one(&m_a, mkreq(&t, "GET", "/?xa=1", "h", NULL)));
	assert_true(one(&m_re, mkreq(&t, "GET", "/?id=123", "h", NULL)));
	assert_false(one(&m_re, mkreq(&t, "GET", "/?id=123x", "h", NULL)));
	assert_false(one(&m_re, mkreq(&t, "GET", "/?id=", "h", NULL)));
	assert_true(one(&m_pfx, mkreq(&t, "GET", "/x?p=abc", "h", NULL)));
	assert_false(one(&m_pfx, mkreq(&t, "GET", "/x?p=a", "h", NULL)));
	/* the query never takes part in the uri match */
	{
		const struct ism_match u = {.uri = SM(ISM_SM_EXACT, "/q")};
		assert_true(one(&u, mkreq(&t, "GET", "/q?x=/y", "h", NULL)));
	}
	pcre2_code_free((pcre2_code *)q_re[0].m.re);
}

static void test_weights(void **state)
{
	(void)state;
	const struct ism_dest d[] = {{.cluster = 7, .weight = 75}, {.cluster = 9, .weight = 25}};
	const struct ism_route r = {.n_dest = 2, .dest = d, .total_weight = 100};
	const struct ism_dest d3[] = {
	    {.cluster = 0, .weight = 0}, {.cluster = 1, .weight = 1}, {.cluster = 2, .weight = 3}};
	const struct ism_route r3 = {.n_dest = 3, .dest = d3, .total_weight = 4};
	const struct ism_dest dz[] = {{.cluster = 0, .weight = 0}};
	const struct ism_route rz = {.n_dest = 1, .dest = dz, .total_weight = 0};
	unsigned n7 = 0, n9 = 0, c[3] = {0};
	uint32_t i;

	for (i = 0; i < 4096; i++) {
		int k = ism_router_pick_dest(&r, i << 20);

		assert_true(k == 7 || k == 9);
		if (k == 7)
			n7++;
		else
			n9++;
		k = ism_router_pick_dest(&r3, i << 20);
		assert_true(k >= 0 && k < 3);
		c[k]++;
	}
	assert_int_equal(n7, 3072);
	assert_int_equal(n9, 1024);
	assert_int_equal(c[0], 0);
	assert_int_equal(c[1], 1024);
	assert_int_equal(c[2], 3072);
	assert_int_equal(ism_router_pick_dest(&r, 0), 7);
	assert_int_equal(ism_router_pick_dest(&r, UINT32_MAX), 9);
	assert_int_equal(ism_router_pick_dest(&rz, 12345), -1);
	/* The destination itself, for its actions. */
	assert_ptr_equal(ism_router_pick(&r, UINT32_MAX), &d[1]);
	assert_ptr_equal(ism_router_pick(&r3, 0), &d3[1]);
	assert_null(ism_router_pick(&rz, 12345));
}

/* istio samples: helloworld's gateway VS (exact /hello) and bookinfo's
 * (exact /productpage, prefixes /static and /api/v1/products, exact /login). */
static void test_istio_samples(void **state)
{
	(void)state;
	struct treq t;
	const struct ism_match hello[] = {{.uri = SM(ISM_SM_EXACT, "/hello")}};
	const struct ism_route hroutes[] = {{.n_match = 1, .match = hello}};
	const struct ism_vhost hvh = {.n_routes = 1, .routes = hroutes};
	const struct ism_match book[] = {
	    {.uri = SM(ISM_SM_EXACT, "/productpage")},
	    {.uri = SM(ISM_SM_PREFIX, "/static")},
	    {.uri = SM(ISM_SM_EXACT, "/login")},
	    {.uri = SM(ISM_SM_EXACT, "/logout")},
	    {.uri = SM(ISM_SM_PREFIX, "/api/v1/products")},
	};
	const struct ism_route broutes[] = {{.n_match = 5, .match = book}};
	const struct ism_vhost bvh = {.n_routes = 1, .routes = broutes};

	assert_int_equal(route_idx(&hvh, mkreq(&t, "GET", "/hello", "h", NULL), "http", 80), 0);
	assert_int_equal(route_idx(&hvh, mkreq(&t, "GET", "/hello/", "h", NULL), "http", 80), -1);
	assert_int_equal(route_idx(&hvh, mkreq(&t, "GET", "/helloX", "h", NULL), "http", 80), -1);
	assert_int_equal(route_idx(&bvh, mkreq(&t, "GET", "/static/x", "h", NULL), "http", 80), 0);
	assert_int_equal(route_idx(&bvh, mkreq(&t, "GET", "/productpage", "h", NULL), "http", 80),
			 0);
	assert_int_equal(
	    route_idx(&bvh, mkreq(&t, "GET", "/api/v1/products/0", "h", NULL), "http", 80), 0);
	assert_int_equal(route_idx(&bvh, mkreq(&t, "GET", "/productpage/x", "h", NULL), "http", 80),
			 -1);
	assert_int_equal(route_idx(&bvh, mkreq(&t, "GET", "/", "h", NULL), "http", 80), -1);
}

static int setup(void **state)
{
	(void)state;
	scratch = ism_router_scratch_new();
	return scratch ? 0 : -1;
}

static int teardown(void **state)
{
	(void)state;
	ism_router_scratch_free(scratch);
	scratch = NULL;
	return 0;
}

/* A regex that backtracks exponentially in PCRE2 stops at its match limit: the
 * router says so instead of "no route", and quickly; interpreted (the master's
 * shared code) and JIT-compiled (the worker's copy) alike. */
static void test_regex_match_limit(void **state)
{
	(void)state;
	static const char evil[] = "/(a|aa)+";
	struct ism_match m = {.uri = {.kind = ISM_SM_REGEX, .s = S(evil), .re_idx = 0}};
	struct ism_match next = {.uri = SM(ISM_SM_PREFIX, "/")};
	struct ism_match ms[2];
	struct ism_route routes[2];
	struct ism_vhost vh = {.n_routes = 2, .routes = routes};
	const struct ism_table t = {.n_regexes = 1};
	char path[64];
	struct treq tr;

	memset(path, 'a', sizeof(path));
	path[0] = '/';
	path[sizeof(path) - 2] = 'b';
	path[sizeof(path) - 1] = '\0';
	m.uri.re = re(evil);
	ms[0] = m;
	ms[1] = next;
	routes[0] = (struct ism_route){.n_match = 1, .match = &ms[0]};
	routes[1] = (struct ism_route){.n_match = 1, .match = &ms[1]};
	for (int jit = 0; jit < 2; jit++) {
		if (jit)
			assert_int_equal(ism_router_use_table(scratch, &t), 0);
		/* A path the pattern matches is matched. */
		assert_int_equal(route_idx(&vh, mkreq(&tr, "GET", "/aaaa", "h", NULL), "http", 80),
				 0);
		assert_false(ism_router_limit_hit(scratch));
		/* The pathological one: no answer rather than the next route. */
		assert_int_equal(route_idx(&vh, mkreq(&tr, "GET", path, "h", NULL), "http", 80),
				 -1);
		assert_true(ism_router_limit_hit(scratch));
		/* The flag is per request. */
		assert_int_equal(route_idx(&vh, mkreq(&tr, "GET", "/x", "h", NULL), "http", 80), 1);
		assert_false(ism_router_limit_hit(scratch));
	}
	assert_int_equal(ism_router_use_table(scratch, &(const struct ism_table){0}), 0);
	pcre2_code_free((pcre2_code *)m.uri.re);
}

/* An AuthorizationPolicy's suffixes (with or without case) and URI
 * templates: "{*}" a whole segment of pchars, at least one; "{**}" any pchars
 * and slashes, maybe none, up to the literal after it. */
static void test_suffix_and_template(void **state)
{
	static const struct {
		uint8_t kind, icase;
		const char *pattern, *value;
		bool holds;
	} cases[] = {
	    {ISM_SM_SUFFIX, 0, ".php", "/x/index.php", true},
	    {ISM_SM_SUFFIX, 0, ".php", "/x/index.PHP", false},
	    {ISM_SM_SUFFIX, 1, ".example.com", "WWW.Example.COM", true},
	    {ISM_SM_SUFFIX, 0, "long-suffix", "short", false},
	    {ISM_SM_TEMPLATE, 0, "/api/{*}/x", "/api/v1/x", true},
	    {ISM_SM_TEMPLATE, 0, "/api/{*}/x", "/api//x", false},
	    {ISM_SM_TEMPLATE, 0, "/api/{*}/x", "/api/a/b/x", false},
	    {ISM_SM_TEMPLATE, 0, "/api/{*}/x", "/api/a*b/x", false},
	    {ISM_SM_TEMPLATE, 0, "/api/{*}/x", "/api/v1/xy", false},
	    {ISM_SM_TEMPLATE, 0, "/{*}", "/a%20b@c", true},
	    {ISM_SM_TEMPLATE, 0, "/d/{**}", "/d/", true},
	    {ISM_SM_TEMPLATE, 0, "/d/{**}", "/d/a/b/c", true},
	    {ISM_SM_TEMPLATE, 0, "/d/{**}", "/d", false},
	    {ISM_SM_TEMPLATE, 0, "/d/{**}", "/d/a*b", false},
	    {ISM_SM_TEMPLATE, 0, "/d/{**}/end", "/d/a/b/end", true},
	    {ISM_SM_TEMPLATE, 0, "/d/{**}/end", "/d/end", false},
	    {ISM_SM_TEMPLATE, 0, "/d/{**}/end", "/d//end", true},
	    {ISM_SM_TEMPLATE, 0, "/{*}/{**}", "/a/b/c", true},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ism_strmatch m = {
		    .kind = cases[i].kind,
		    .ignore_case = cases[i].icase,
		    .s = {cases[i].pattern, (uint32_t)strlen(cases[i].pattern)}};

		if (ism_router_strmatch(&m, cases[i].value, strlen(cases[i].value), scratch) !=
		    cases[i].holds)
			fail_msg("%s against %s: want %d", cases[i].pattern, cases[i].value,
				 cases[i].holds);
	}
}

/* Address text as the worker reads its clients' (lib/addr.h): a dotted quad
 * quickly, anything else as inet_pton takes it, and nothing inet_pton
 * refuses; then in a subnet or not. */
static void test_addresses(void **state)
{
	static const struct {
		const char *text;
		int family; /* 0: refused */
	} cases[] = {
	    {"127.0.0.1", AF_INET}, {"255.255.255.255", AF_INET},
	    {"0.0.0.0", AF_INET},   {"256.1.1.1", 0},
	    {"01.2.3.4", 0},	    {"1.2.3", 0},
	    {"1.2.3.4.5", 0},	    {"1.2.3.4 ", 0},
	    {"1.2.3.1234", 0},	    {"", 0},
	    {"::1", AF_INET6},	    {"::ffff:10.0.0.1", AF_INET6},
	    {"2001:db8::/32", 0},
	};
	struct ism_subnet lo = {.family = AF_INET, .prefix = 8, .addr = {127}};
	struct ism_subnet one = {.family = AF_INET, .prefix = 32, .addr = {127, 0, 0, 1}};
	struct ism_subnet odd = {.family = AF_INET, .prefix = 25, .addr = {10, 0, 0, 128}};
	struct sockaddr_storage ss;
	socklen_t len;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool ok = ism_addr_parse(cases[i].text, &ss, &len);

		if (ok != (cases[i].family != 0) || (ok && ss.ss_family != cases[i].family))
			fail_msg("\"%s\": parsed %d, family %d", cases[i].text, ok, ss.ss_family);
	}
	assert_true(ism_addr_parse("127.0.0.1", &ss, NULL));
	assert_true(ism_router_in_subnet(&lo, &ss));
	assert_true(ism_router_in_subnet(&one, &ss));
	assert_true(ism_addr_parse("127.0.0.2", &ss, NULL));
	assert_true(ism_router_in_subnet(&lo, &ss));
	assert_false(ism_router_in_subnet(&one, &ss));
	assert_true(ism_addr_parse("10.0.0.200", &ss, NULL));
	assert_true(ism_router_in_subnet(&odd, &ss));
	assert_true(ism_addr_parse("10.0.0.100", &ss, NULL));
	assert_false(ism_router_in_subnet(&odd, &ss));
	assert_true(ism_addr_parse("::1", &ss, NULL));
	assert_false(ism_router_in_subnet(&lo, &ss));
}

/* An address and port as text (lib/addr.h), as Envoy writes them: an IPv6
 * address (a mapped IPv4 one too) in brackets, an IPv4 one or a name not. */
static void test_addr_port_text(void **state)
{
	static const struct {
		const char *ip;
		uint16_t port;
		const char *want;
	} cases[] = {
	    {"127.0.0.1", 8080, "127.0.0.1:8080"},
	    {"0.0.0.0", 0, "0.0.0.0:0"},
	    {"::1", 443, "[::1]:443"},
	    {"::", 80, "[::]:80"},
	    {"::ffff:127.0.0.1", 55, "[::ffff:127.0.0.1]:55"},
	    {"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255", 65535,
	     "[ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255]:65535"},
	    {"proxy.example.com", 3128, "proxy.example.com:3128"},
	};
	char out[INET6_ADDRSTRLEN + 8];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(ism_addr_port_text(out, sizeof(out), cases[i].ip, cases[i].port),
				 strlen(cases[i].want));
		assert_string_equal(out, cases[i].want);
	}
}

/* TCP and TLS routes: the first whose sniHosts and destinationSubnets hold. */
static void test_l4_routes(void **state)
{
	(void)state;
	const struct ism_str sni_a[] = {{"a.example.com", 13}};
	const struct ism_str sni_w[] = {{"*.example.com", 13}};
	const struct ism_subnet nets[] = {
	    {.family = AF_INET, .prefix = 25, .addr = {127, 0, 0, 0}}};
	const struct ism_l4route tls[] = {
	    {.name = {"a", 1}, .n_sni = 1, .sni = sni_a},
	    {.name = {"net", 3}, .n_sni = 1, .sni = sni_w, .n_subnets = 1, .subnets = nets},
	    {.name = {"w", 1}, .n_sni = 1, .sni = sni_w},
	};
	const struct ism_l4route tcp[] = {{.name = {"any", 3}}};
	struct sockaddr_storage lo = {0}, hi = {0};
	struct sockaddr_in *in;

	in = (struct sockaddr_in *)&lo;
	in->sin_family = AF_INET;
	in->sin_addr.s_addr = htonl(0x7f000001); /* 127.0.0.1: in 127.0.0.0/25 */
	in = (struct sockaddr_in *)&hi;
	in->sin_family = AF_INET;
	in->sin_addr.s_addr = htonl(0x7f0000c8); /* 127.0.0.200: not */
	assert_ptr_equal(ism_router_l4(tls, 3, "a.example.com", &lo), &tls[0]);
	assert_ptr_equal(ism_router_l4(tls, 3, "b.example.com", &lo), &tls[1]);
	assert_ptr_equal(ism_router_l4(tls, 3, "b.example.com", &hi), &tls[2]);
	assert_ptr_equal(ism_router_l4(tls, 3, "b.example.com", NULL), &tls[2]);
	assert_null(ism_router_l4(tls, 3, "example.com", &lo));
	assert_null(ism_router_l4(tls, 3, "", &lo));
	assert_null(ism_router_l4(tls, 3, NULL, &lo));
	assert_ptr_equal(ism_router_l4(tcp, 1, NULL, NULL), &tcp[0]);
	assert_null(ism_router_l4(tcp, 0, NULL, NULL));
	/* Weighted picks over the destinations of such a route. */
	const struct ism_dest d[] = {{.cluster = 1, .weight = 20}, {.cluster = 2, .weight = 80}};
	unsigned n1 = 0;

	for (uint32_t k = 0; k < 1000; k++)
		n1 += ism_router_pick_weighted(d, 2, 100,
					       (uint32_t)((((uint64_t)k << 32) + 999) / 1000))
			  ->cluster == 1;
	assert_int_equal(n1, 200);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_vhost_order),	    cmocka_unit_test(test_first_match_wins),
	    cmocka_unit_test(test_and_or),	    cmocka_unit_test(test_string_match_kinds),
	    cmocka_unit_test(test_ignore_uri_case), cmocka_unit_test(test_headers),
	    cmocka_unit_test(test_query_params),    cmocka_unit_test(test_weights),
	    cmocka_unit_test(test_l4_routes),	    cmocka_unit_test(test_suffix_and_template),
	    cmocka_unit_test(test_addresses),	    cmocka_unit_test(test_addr_port_text),
	    cmocka_unit_test(test_istio_samples),   cmocka_unit_test(test_regex_match_limit),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
