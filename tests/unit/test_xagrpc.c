/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of Protocol Buffers' wire format (lib/pb.h) and of a gRPC
 * external authorizer's messages (worker/xagrpc.h): nested messages whose
 * lengths take more than one byte, negative int64s, the CheckRequest as
 * Envoy fills it (read back field by field), and the CheckResponses that
 * allow, deny and are invalid. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/pb.h"
#include "worker/xagrpc.h"

/* The first field numbered num of the message [p, p + n); false when none. */
static bool field(const uint8_t *p, size_t n, uint32_t num, struct ism_pb_field *out)
{
	const uint8_t *at = p;
	struct ism_pb_field f;

	while (ism_pb_next(&at, p + n, &f) > 0)
		if (f.num == num) {
			*out = f;
			return true;
		}
	return false;
}

/* The nested field at path (numbers, 0-ended) of [p, p + n). */
static struct ism_pb_field path(const uint8_t *p, size_t n, const uint32_t *nums)
{
	struct ism_pb_field f = {.p = p, .len = n};

	for (; *nums != 0; nums++)
		assert_true(field(f.p, f.len, *nums, &f));
	return f;
}

#define PATH(p, n, ...) path((p), (n), (const uint32_t[]){__VA_ARGS__, 0})

static void assert_str(const struct ism_pb_field *f, const char *want)
{
	assert_int_equal(f->wire, ISM_PB_LEN);
	assert_int_equal(f->len, strlen(want));
	assert_memory_equal(f->p, want, f->len);
}

static void test_pb_nested(void **state)
{
	struct ism_pbw w = {0};
	char big[300];
	struct ism_pb_field f;
	size_t outer, inner;

	(void)state;
	memset(big, 'x', sizeof(big));
	outer = ism_pbw_begin(&w, 1);
	inner = ism_pbw_begin(&w, 2);
	ism_pbw_bytes(&w, 3, big, sizeof(big)); /* a length of two bytes, twice over */
	ism_pbw_end(&w, inner);
	ism_pbw_varint(&w, 4, (uint64_t)(int64_t)-1);
	ism_pbw_str(&w, 5, "", 0); /* left out */
	ism_pbw_end(&w, outer);
	assert_false(w.err);
	f = PATH(w.p, w.len, 1, 2, 3);
	assert_int_equal(f.len, sizeof(big));
	assert_memory_equal(f.p, big, sizeof(big));
	f = PATH(w.p, w.len, 1, 4);
	assert_int_equal(f.wire, ISM_PB_VARINT);
	assert_int_equal((int64_t)f.v, -1);
	assert_false(field(PATH(w.p, w.len, 1).p, PATH(w.p, w.len, 1).len, 5, &f));
	/* Truncated: a length past the end. */
	{
		const uint8_t *at = w.p;

		assert_int_equal(ism_pb_next(&at, w.p + w.len - 1, &f), -1);
	}
	ism_pbw_free(&w);
}

static void test_check_request(void **state)
{
	struct ism_http_header h[] = {
	    {"Host", 4, "a.example", 9},
	    {"X-Tenant", 8, "one", 3},
	    {"Accept", 6, "text/html", 9},
	    {"x-tenant", 8, "two", 3},
	};
	struct ism_http_req req = {.method = "POST",
				   .method_len = 4,
				   .path = "/p",
				   .path_len = 2,
				   .query = "a=1",
				   .query_len = 3,
				   .host = "a.example",
				   .host_len = 9,
				   .headers = h,
				   .n_headers = 4};
	struct ism_xa_grpc_req in = {.req = &req,
				     .scheme = "https",
				     .protocol = "HTTP/1.1",
				     .id = 42,
				     .size = -1,
				     .time = {.tv_sec = 1700000000, .tv_nsec = 5},
				     .src_ip = "127.0.0.2",
				     .src_port = 5555,
				     .src_principal = "spiffe://td/ns/a/sa/b",
				     .dst_ip = "127.0.0.1",
				     .dst_port = 8443,
				     .sni = "a.example"};
	struct ism_pbw w = {0};
	const uint8_t *msg;
	struct ism_pb_field http, f;
	const uint8_t *at, *end;
	int entries = 0, tenant = 0;

	(void)state;
	ism_xa_grpc_request(&in, &w);
	assert_false(w.err);
	/* The gRPC prefix: not compressed, the message's length. */
	assert_int_equal(w.p[0], 0);
	assert_int_equal((size_t)w.p[1] << 24 | (size_t)w.p[2] << 16 | (size_t)w.p[3] << 8 | w.p[4],
			 w.len - 5);
	msg = w.p + 5;
	f = PATH(msg, w.len - 5, 1, 1, 1, 1, 2);
	assert_str(&f, "127.0.0.2");
	f = PATH(msg, w.len - 5, 1, 1, 1, 1, 3);
	assert_int_equal(f.v, 5555);
	f = PATH(msg, w.len - 5, 1, 1, 4);
	assert_str(&f, "spiffe://td/ns/a/sa/b");
	f = PATH(msg, w.len - 5, 1, 2, 1, 1, 3);
	assert_int_equal(f.v, 8443);
	f = PATH(msg, w.len - 5, 1, 4, 1, 1);
	assert_int_equal(f.v, 1700000000);
	f = PATH(msg, w.len - 5, 1, 12, 1);
	assert_str(&f, "a.example");
	http = PATH(msg, w.len - 5, 1, 4, 2);
	f = PATH(http.p, http.len, 1);
	assert_str(&f, "42");
	f = PATH(http.p, http.len, 2);
	assert_str(&f, "POST");
	f = PATH(http.p, http.len, 4);
	assert_str(&f, "/p?a=1");
	f = PATH(http.p, http.len, 5);
	assert_str(&f, "a.example");
	f = PATH(http.p, http.len, 6);
	assert_str(&f, "https");
	f = PATH(http.p, http.len, 9);
	assert_int_equal((int64_t)f.v, -1);
	f = PATH(http.p, http.len, 10);
	assert_str(&f, "HTTP/1.1");
	/* The headers map: pseudo-headers, names lowercased, one entry a name
	 * with its values joined; Host only as :authority. */
	at = http.p;
	end = http.p + http.len;
	while (ism_pb_next(&at, end, &f) > 0) {
		struct ism_pb_field k = {0}, v = {0};

		if (f.num != 3)
			continue;
		entries++;
		assert_true(field(f.p, f.len, 1, &k));
		assert_true(field(f.p, f.len, 2, &v));
		assert_false(k.len == 4 && memcmp(k.p, "host", 4) == 0);
		if (k.len == 8 && memcmp(k.p, "x-tenant", 8) == 0) {
			tenant++;
			assert_str(&v, "one,two");
		}
		if (k.len == 5 && memcmp(k.p, ":path", 5) == 0)
			assert_str(&v, "/p?a=1");
		if (k.len == 10 && memcmp(k.p, ":authority", 10) == 0)
			assert_str(&v, "a.example");
	}
	assert_int_equal(tenant, 1);
	assert_int_equal(entries, 6); /* :authority :method :path :scheme x-tenant accept */
	ism_pbw_free(&w);
}

/* The entries of key in the headers map of HttpRequest http; the last
 * one's value in *v. */
static int map_entries(const struct ism_pb_field *http, const char *key, struct ism_pb_field *v)
{
	const uint8_t *at = http->p, *end = http->p + http->len;
	struct ism_pb_field f;
	int n = 0;

	while (ism_pb_next(&at, end, &f) > 0) {
		struct ism_pb_field k = {0};

		if (f.num == 3 && field(f.p, f.len, 1, &k) && k.len == strlen(key) &&
		    memcmp(k.p, key, k.len) == 0) {
			n++;
			assert_true(field(f.p, f.len, 2, v));
		}
	}
	return n;
}

/* includeRequestBodyInCheck: the body as body (11) or raw_body (12), and
 * x-envoy-auth-partial-body in the map; a client's own field of that name
 * is never in it. */
static void test_check_request_body(void **state)
{
	struct ism_http_header h[] = {{"X-Envoy-Auth-Partial-Body", 25, "evil", 4},
				      {"x-a", 3, "1", 1}};
	struct ism_http_req req = {.method = "POST",
				   .method_len = 4,
				   .path = "/",
				   .path_len = 1,
				   .headers = h,
				   .n_headers = 2};
	struct {
		const char *body;
		bool raw, partial;
		uint32_t num, other;
		const char *flag;
	} cases[] = {
	    {"hello", false, true, 11, 12, "true"},
	    {"hello", true, false, 12, 11, "false"},
	    {NULL, false, false, 0, 0, NULL},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ism_xa_grpc_req in = {.req = &req,
					     .scheme = "http",
					     .protocol = "HTTP/1.1",
					     .size = 5,
					     .body = cases[i].body,
					     .body_len = 5,
					     .raw_body = cases[i].raw,
					     .partial = cases[i].partial};
		struct ism_pbw w = {0};
		struct ism_pb_field http, f, v = {0};

		ism_xa_grpc_request(&in, &w);
		assert_false(w.err);
		http = PATH(w.p + 5, w.len - 5, 1, 4, 2);
		if (cases[i].body != NULL) {
			f = PATH(http.p, http.len, cases[i].num);
			assert_str(&f, "hello");
			assert_false(field(http.p, http.len, cases[i].other, &f));
			assert_int_equal(map_entries(&http, "x-envoy-auth-partial-body", &v), 1);
			assert_str(&v, cases[i].flag);
		} else {
			assert_false(field(http.p, http.len, 11, &f));
			assert_false(field(http.p, http.len, 12, &f));
			assert_int_equal(map_entries(&http, "x-envoy-auth-partial-body", &v), 0);
		}
		assert_int_equal(map_entries(&http, "x-a", &v), 1);
		ism_pbw_free(&w);
	}
}

/* A CheckResponse framed: status code, then the rest of the message. */
static size_t answer(uint8_t *out, uint64_t code, const uint8_t *rest, size_t n)
{
	struct ism_pbw w = {0};
	size_t st, len;

	ism_pbw_raw(&w, "\0\0\0\0\0", 5);
	st = ism_pbw_begin(&w, 1);
	if (code != 0)
		ism_pbw_varint(&w, 1, code);
	ism_pbw_end(&w, st);
	ism_pbw_raw(&w, rest, n);
	len = w.len - 5;
	w.p[3] = (uint8_t)(len >> 8);
	w.p[4] = (uint8_t)len;
	memcpy(out, w.p, w.len);
	len = w.len;
	ism_pbw_free(&w);
	return len;
}

/* A HeaderValueOption. */
static void hvo(struct ism_pbw *w, uint32_t field, const char *k, const char *v, int append)
{
	size_t o = ism_pbw_begin(w, field), h = ism_pbw_begin(w, 1);

	ism_pbw_bytes(w, 1, k, strlen(k));
	ism_pbw_bytes(w, 2, v, strlen(v));
	ism_pbw_end(w, h);
	if (append >= 0) {
		size_t b = ism_pbw_begin(w, 2);

		ism_pbw_varint(w, 1, (uint64_t)append);
		ism_pbw_end(w, b);
	}
	ism_pbw_end(w, o);
}

static void test_check_response(void **state)
{
	struct ism_xa_grpc_resp *r = malloc(sizeof(*r));
	struct ism_pbw w = {0};
	uint8_t buf[512];
	size_t ok, n;

	(void)state;
	assert_non_null(r);
	/* Allowed, with every edit. */
	ok = ism_pbw_begin(&w, 3);
	hvo(&w, 2, "x-user", "alice", -1);
	hvo(&w, 2, "x-group", "b", 1);
	ism_pbw_bytes(&w, 5, "cookie", 6);
	hvo(&w, 6, "x-seen", "1", 0);
	{
		size_t q = ism_pbw_begin(&w, 7);

		ism_pbw_bytes(&w, 1, "page", 4);
		ism_pbw_bytes(&w, 2, "2", 1);
		ism_pbw_end(&w, q);
	}
	ism_pbw_bytes(&w, 8, "debug", 5);
	ism_pbw_end(&w, ok);
	n = answer(buf, 0, w.p, w.len);
	assert_int_equal(ism_xa_grpc_response(buf, n, r), 0);
	assert_true(r->ok);
	assert_int_equal(r->hdrs.n, 2);
	assert_memory_equal(r->hdrs.f[0].name, "x-user", 6);
	assert_false(r->hdrs.f[0].append);
	assert_true(r->hdrs.f[1].append);
	assert_int_equal(r->remove.n, 1);
	assert_int_equal(r->resp.n, 1);
	assert_int_equal(r->qset.n, 1);
	assert_memory_equal(r->qset.f[0].value, "2", 1);
	assert_int_equal(r->qrm.n, 1);
	ism_xa_grpc_resp_free(r);
	/* A value with a line break: the whole answer is invalid. */
	ism_pbw_free(&w);
	ok = ism_pbw_begin(&w, 3);
	hvo(&w, 2, "x-user", "a\r\nb", -1);
	ism_pbw_end(&w, ok);
	n = answer(buf, 0, w.p, w.len);
	assert_int_equal(ism_xa_grpc_response(buf, n, r), -EINVAL);
	ism_xa_grpc_resp_free(r);
	ism_pbw_free(&w);
	/* A query parameter to set without a key: the whole answer is invalid. */
	ok = ism_pbw_begin(&w, 3);
	{
		size_t q = ism_pbw_begin(&w, 7);

		ism_pbw_bytes(&w, 2, "2", 1);
		ism_pbw_end(&w, q);
	}
	ism_pbw_end(&w, ok);
	n = answer(buf, 0, w.p, w.len);
	assert_int_equal(ism_xa_grpc_response(buf, n, r), -EINVAL);
	ism_xa_grpc_resp_free(r);
	ism_pbw_free(&w);
	/* Lists as long as the answer: 300 fields; a pseudo-header's name is
	 * read (and not applied). */
	ok = ism_pbw_begin(&w, 3);
	for (int i = 0; i < 300; i++)
		hvo(&w, 2, "x-many", "v", 1);
	ism_pbw_bytes(&w, 5, ":path", 5);
	ism_pbw_end(&w, ok);
	{
		uint8_t *big = malloc(w.len + 16);

		assert_non_null(big);
		n = answer(big, 0, w.p, w.len);
		assert_int_equal(ism_xa_grpc_response(big, n, r), 0);
		assert_int_equal(r->hdrs.n, 300);
		assert_int_equal(r->remove.n, 1);
		ism_xa_grpc_resp_free(r);
		free(big);
	}
	ism_pbw_free(&w);
	/* Denied: its status, fields and body; 403 without a status. */
	ok = ism_pbw_begin(&w, 2);
	{
		size_t s = ism_pbw_begin(&w, 1);

		ism_pbw_varint(&w, 1, 401);
		ism_pbw_end(&w, s);
	}
	hvo(&w, 2, "www-authenticate", "Bearer", -1);
	ism_pbw_bytes(&w, 3, "no", 2);
	ism_pbw_end(&w, ok);
	n = answer(buf, 7, w.p, w.len);
	assert_int_equal(ism_xa_grpc_response(buf, n, r), 0);
	assert_false(r->ok);
	assert_int_equal(r->status, 401);
	assert_int_equal(r->hdrs.n, 1);
	assert_int_equal(r->body_len, 2);
	ism_xa_grpc_resp_free(r);
	/* An interim status is no denial: the check failed (statusOnError). */
	for (uint64_t code = 100; code <= 199; code += 99) {
		struct ism_pbw d = {0};
		size_t o = ism_pbw_begin(&d, 2), st = ism_pbw_begin(&d, 1);

		ism_pbw_varint(&d, 1, code);
		ism_pbw_end(&d, st);
		ism_pbw_end(&d, o);
		n = answer(buf, 7, d.p, d.len);
		assert_int_equal(ism_xa_grpc_response(buf, n, r), -EINVAL);
		ism_xa_grpc_resp_free(r);
		ism_pbw_free(&d);
	}
	n = answer(buf, 16, NULL, 0);
	assert_int_equal(ism_xa_grpc_response(buf, n, r), 0);
	assert_false(r->ok);
	assert_int_equal(r->status, 403);
	/* Not one uncompressed message. */
	buf[0] = 1;
	assert_int_equal(ism_xa_grpc_response(buf, n, r), -EINVAL);
	buf[0] = 0;
	assert_int_equal(ism_xa_grpc_response(buf, n - 1, r), -EINVAL);
	assert_int_equal(ism_xa_grpc_response(buf, 3, r), -EINVAL);
	ism_xa_grpc_resp_free(r);
	ism_pbw_free(&w);
	free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_pb_nested),
	    cmocka_unit_test(test_check_request),
	    cmocka_unit_test(test_check_request_body),
	    cmocka_unit_test(test_check_response),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
