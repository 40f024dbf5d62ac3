/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the HTTP/1.1 parser (worker/http1.h): valid heads parsed whole,
 * at every split point and byte by byte; smuggling and malformed inputs with the
 * exact error; the chunked scanner at every split point. Every parse runs on an
 * exact-sized heap copy so that ASan catches a read past len. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tests/unit/check.h"

#include "lib/ascii.h"
#include "worker/http1.h"

#define MAX_HDRS 64

static const struct ism_http_limits lim = {
    .max_head_bytes = 8192,
    .max_headers = MAX_HDRS,
    .max_uri_bytes = 2048,
};

static char *copy(const char *s, size_t n)
{
	char *b = malloc(n ? n : 1);
	assert_non_null(b);
	memcpy(b, s, n);
	return b;
}

static int span_is(const char *p, size_t n, const char *want)
{
	if (!want)
		return p == NULL;
	return p && n == strlen(want) && memcmp(p, want, n) == 0;
}

/* ---- valid requests ---- */

struct req_case {
	const char *name;
	const char *in;
	size_t head_len; /* 0: the whole input */
	const char *method, *target, *path, *query, *host;
	int minor;
	size_t n_headers;
	int64_t cl;
	int chunked, conn, expect, upgrade;
	int check_hdr; /* index of a header to check, -1 none */
	const char *hdr_name, *hdr_value;
};

static void check_req_fields(const struct req_case *c, const struct ism_http_req *r)
{
	CHECK(c->name, span_is(r->method, r->method_len, c->method), "method");
	CHECK(c->name, span_is(r->target, r->target_len, c->target), "target");
	CHECK(c->name, span_is(r->path, r->path_len, c->path), "path '%.*s'", (int)r->path_len,
	      r->path ? r->path : "");
	CHECK(c->name, span_is(r->query, r->query_len, c->query), "query");
	CHECK(c->name, span_is(r->host, r->host_len, c->host), "host '%.*s'", (int)r->host_len,
	      r->host ? r->host : "");
	CHECK(c->name, r->minor_version == c->minor, "minor %d", r->minor_version);
	CHECK(c->name, r->n_headers == c->n_headers, "n_headers %zu", r->n_headers);
	CHECK(c->name, r->framing.content_length == c->cl, "cl %lld",
	      (long long)r->framing.content_length);
	CHECK(c->name, r->framing.chunked == c->chunked, "chunked %d", r->framing.chunked);
	CHECK(c->name, r->framing.conn == c->conn, "conn %d", r->framing.conn);
	CHECK(c->name, r->framing.expect_continue == c->expect, "expect");
	CHECK(c->name, r->framing.upgrade == c->upgrade, "upgrade");
	if (c->check_hdr >= 0) {
		const struct ism_http_header *h = &r->headers[c->check_hdr];
		CHECK(c->name, span_is(h->name, h->name_len, c->hdr_name), "header name");
		CHECK(c->name, span_is(h->value, h->value_len, c->hdr_value), "header value '%.*s'",
		      (int)h->value_len, h->value);
	}
}

static void run_req_case(const struct req_case *c)
{
	size_t n = strlen(c->in);
	size_t head = c->head_len ? c->head_len : n;
	struct ism_http_header hdrs[MAX_HDRS];
	struct ism_http_req req;

	/* Every prefix, the whole input included. */
	for (size_t k = 0; k <= n; k++) {
		char *b = copy(c->in, k);
		req.headers = hdrs;
		ssize_t r = ism_http_parse_request(b, k, &lim, &req);
		if (k < head) {
			CHECK(c->name, r == ISM_HTTP_INCOMPLETE, "prefix %zu: got %zd", k, r);
		} else {
			CHECK(c->name, r == (ssize_t)head, "len %zu: got %zd want %zu", k, r, head);
			check_req_fields(c, &req);
		}
		free(b);
	}

	/* Byte by byte into one receive buffer, as a connection would: the first
	 * answer that is not INCOMPLETE comes exactly when the head is complete. */
	char *rx = malloc(n);
	assert_non_null(rx);
	size_t got = 0;
	ssize_t r = ISM_HTTP_INCOMPLETE;
	while (got < n && r == ISM_HTTP_INCOMPLETE) {
		rx[got] = c->in[got];
		got++;
		req.headers = hdrs;
		r = ism_http_parse_request(rx, got, &lim, &req);
	}
	CHECK(c->name, r == (ssize_t)head && got == head, "bytewise: %zd at %zu", r, got);
	check_req_fields(c, &req);
	free(rx);
}

#define NOQ NULL
#define H1  "Host: example.com\r\n"

static const struct req_case req_cases[] = {
    {"simple GET", "GET / HTTP/1.1\r\nHost: example.com\r\n\r\n", 0, "GET", "/", "/", NOQ,
     "example.com", 1, 1, -1, 0, 0, 0, 0, 0, "Host", "example.com"},
    {"OWS trimmed",
     "GET /a/b?c=d&e HTTP/1.1\r\nHost: \t example.com \t\r\nX-A:\tv  v\t\r\n"
     "X-Empty:\r\nX-Sp:   \r\n\r\n",
     0, "GET", "/a/b?c=d&e", "/a/b", "c=d&e", "example.com", 1, 4, -1, 0, 0, 0, 0, 1, "X-A",
     "v  v"},
    {"empty value", "GET / HTTP/1.1\r\nX-Empty:   \r\nHost: h\r\n\r\n", 0, "GET", "/", "/", NOQ,
     "h", 1, 2, -1, 0, 0, 0, 0, 0, "X-Empty", ""},
    {"empty query", "GET /p? HTTP/1.1\r\n" H1 "\r\n", 0, "GET", "/p?", "/p", "", "example.com", 1,
     1, -1, 0, 0, 0, 0, -1, NULL, NULL},
    {"obs-text value", "GET / HTTP/1.1\r\n" H1 "X-U: caf\xc3\xa9 \x80\xff\r\n\r\n", 0, "GET", "/",
     "/", NOQ, "example.com", 1, 2, -1, 0, 0, 0, 0, 1, "X-U", "caf\xc3\xa9 \x80\xff"},
    {"absolute-form", "GET http://Example.com:8080/p/q?x=1 HTTP/1.1\r\nHost: other\r\n\r\n", 0,
     "GET", "http://Example.com:8080/p/q?x=1", "/p/q", "x=1", "Example.com:8080", 1, 1, -1, 0, 0, 0,
     0, -1, NULL, NULL},
    {"absolute-form no path", "GET HTTPS://h.example HTTP/1.1\r\nHost: h.example\r\n\r\n", 0, "GET",
     "HTTPS://h.example", "/", NOQ, "h.example", 1, 1, -1, 0, 0, 0, 0, -1, NULL, NULL},
    {"absolute-form query only", "GET http://h?a HTTP/1.1\r\nHost: h\r\n\r\n", 0, "GET",
     "http://h?a", "/", "a", "h", 1, 1, -1, 0, 0, 0, 0, -1, NULL, NULL},
    {"HTTP/1.0 no Host", "GET /x HTTP/1.0\r\n\r\n", 0, "GET", "/x", "/x", NOQ, NULL, 0, 0, -1, 0, 0,
     0, 0, -1, NULL, NULL},
    {"HTTP/1.0 keep-alive", "GET /x HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 0, "GET", "/x",
     "/x", NOQ, NULL, 0, 1, -1, 0, ISM_HTTP_CONN_KEEPALIVE, 0, 0, -1, NULL, NULL},
    {"close wins", "GET / HTTP/1.1\r\n" H1 "Connection: keep-alive, ,CLOSE\r\n\r\n", 0, "GET", "/",
     "/", NOQ, "example.com", 1, 2, -1, 0, ISM_HTTP_CONN_CLOSE, 0, 0, -1, NULL, NULL},
    {"close", "GET / HTTP/1.1\r\n" H1 "Connection: close\r\n\r\n", 0, "GET", "/", "/", NOQ,
     "example.com", 1, 2, -1, 0, ISM_HTTP_CONN_CLOSE, 0, 0, -1, NULL, NULL},
    {"upgrade", "GET /ws HTTP/1.1\r\n" H1 "Connection: Upgrade\r\nUpgrade: websocket\r\n\r\n", 0,
     "GET", "/ws", "/ws", NOQ, "example.com", 1, 3, -1, 0, 0, 0, 1, -1, NULL, NULL},
    {"expect", "PUT /f HTTP/1.1\r\n" H1 "Expect: 100-Continue\r\nContent-Length: 10\r\n\r\n", 0,
     "PUT", "/f", "/f", NOQ, "example.com", 1, 3, 10, 0, 0, 1, 0, -1, NULL, NULL},
    {"other expect ignored", "PUT /f HTTP/1.1\r\n" H1 "Expect: 200-ok\r\n\r\n", 0, "PUT", "/f",
     "/f", NOQ, "example.com", 1, 2, -1, 0, 0, 0, 0, -1, NULL, NULL},
    {"chunked", "POST /u HTTP/1.1\r\n" H1 "Transfer-Encoding: chunked\r\n\r\n", 0, "POST", "/u",
     "/u", NOQ, "example.com", 1, 2, -1, 1, 0, 0, 0, -1, NULL, NULL},
    {"chunked case", "POST /u HTTP/1.1\r\n" H1 "transfer-encoding:  CHUNKED \r\n\r\n", 0, "POST",
     "/u", "/u", NOQ, "example.com", 1, 2, -1, 1, 0, 0, 0, -1, NULL, NULL},
    {"content-length", "POST /u HTTP/1.1\r\n" H1 "Content-Length: 42\r\n\r\n", 0, "POST", "/u",
     "/u", NOQ, "example.com", 1, 2, 42, 0, 0, 0, 0, -1, NULL, NULL},
    {"content-length 0", "POST /u HTTP/1.1\r\n" H1 "content-length: 0\r\n\r\n", 0, "POST", "/u",
     "/u", NOQ, "example.com", 1, 2, 0, 0, 0, 0, 0, -1, NULL, NULL},
    {"content-length max", "POST /u HTTP/1.1\r\n" H1 "Content-Length: 4611686018427387904\r\n\r\n",
     0, "POST", "/u", "/u", NOQ, "example.com", 1, 2, (int64_t)1 << 62, 0, 0, 0, 0, -1, NULL, NULL},
    {"same CL twice", "POST /u HTTP/1.1\r\n" H1 "Content-Length: 7\r\nContent-Length: 007\r\n\r\n",
     0, "POST", "/u", "/u", NOQ, "example.com", 1, 3, 7, 0, 0, 0, 0, -1, NULL, NULL},
    {"CL list", "POST /u HTTP/1.1\r\n" H1 "Content-Length: 7 ,7\r\n\r\n", 0, "POST", "/u", "/u",
     NOQ, "example.com", 1, 2, 7, 0, 0, 0, 0, -1, NULL, NULL},
    {"body not in head", "POST /u HTTP/1.1\r\n" H1 "Content-Length: 5\r\n\r\nhello", 58, "POST",
     "/u", "/u", NOQ, "example.com", 1, 2, 5, 0, 0, 0, 0, -1, NULL, NULL},
    {"pipelined", "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: b\r\n\r\n", 28, "GET",
     "/1", "/1", NOQ, "a", 1, 1, -1, 0, 0, 0, 0, -1, NULL, NULL},
    {"bare LF", "GET /lf HTTP/1.1\nHost: h\nX: y\n\n", 0, "GET", "/lf", "/lf", NOQ, "h", 1, 2, -1,
     0, 0, 0, 0, 1, "X", "y"},
    {"leading empty lines", "\r\n\nGET / HTTP/1.1\r\nHost: h\r\n\r\n", 0, "GET", "/", "/", NOQ, "h",
     1, 1, -1, 0, 0, 0, 0, -1, NULL, NULL},
    {"OPTIONS *", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", 0, "OPTIONS", "*", "*", NOQ, "h", 1, 1,
     -1, 0, 0, 0, 0, -1, NULL, NULL},
    {"CONNECT", "CONNECT h.example:443 HTTP/1.1\r\nHost: h.example:443\r\n\r\n", 0, "CONNECT",
     "h.example:443", "h.example:443", NOQ, "h.example:443", 1, 1, -1, 0, 0, 0, 0, -1, NULL, NULL},
    {"IPv6 host", "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", 0, "GET", "/", "/", NOQ,
     "[::1]:8080", 1, 1, -1, 0, 0, 0, 0, -1, NULL, NULL},
    /* RFC 3986's port is *DIGIT: zeros first are the same port (Envoy takes it) */
    {"port with zeros first", "GET / HTTP/1.1\r\nHost: a:000080\r\n\r\n", 0, "GET", "/", "/", NOQ,
     "a:000080", 1, 1, -1, 0, 0, 0, 0, -1, NULL, NULL},
    {"IPv6 host no port", "GET / HTTP/1.1\r\nHost: [2001:db8::1]\r\n\r\n", 0, "GET", "/", "/", NOQ,
     "[2001:db8::1]", 1, 1, -1, 0, 0, 0, 0, -1, NULL, NULL},
    {"host empty port", "GET / HTTP/1.1\r\nHost: h:\r\n\r\n", 0, "GET", "/", "/", NOQ, "h:", 1, 1,
     -1, 0, 0, 0, 0, -1, NULL, NULL},
    {"host port 65535", "GET / HTTP/1.1\r\nHost: h:65535\r\n\r\n", 0, "GET", "/", "/", NOQ,
     "h:65535", 1, 1, -1, 0, 0, 0, 0, -1, NULL, NULL},
    {"extension method", "PROPFIND /d HTTP/1.1\r\nHost: h\r\n\r\n", 0, "PROPFIND", "/d", "/d", NOQ,
     "h", 1, 1, -1, 0, 0, 0, 0, -1, NULL, NULL},
    {"long target SSE",
     "GET /0123456789abcdef0123456789abcdef0123456789abcdef?q=0123456789abcdef "
     "HTTP/1.1\r\nHost: h\r\nCookie: a=0123456789abcdef0123456789abcdef;"
     " b=0123456789abcdef0123456789\r\n\r\n",
     0, "GET", "/0123456789abcdef0123456789abcdef0123456789abcdef?q=0123456789abcdef",
     "/0123456789abcdef0123456789abcdef0123456789abcdef", "q=0123456789abcdef", "h", 1, 2, -1, 0, 0,
     0, 0, 1, "Cookie", "a=0123456789abcdef0123456789abcdef; b=0123456789abcdef0123456789"},
};

static void test_valid_requests(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(req_cases) / sizeof(req_cases[0]); i++)
		run_req_case(&req_cases[i]);
}

static void test_many_headers(void **state)
{
	char buf[4096];
	size_t n = (size_t)snprintf(buf, sizeof(buf), "GET /m HTTP/1.1\r\nHost: h\r\n");
	(void)state;
	/* Exactly the limit: MAX_HDRS fields in all. */
	for (int i = 1; i < MAX_HDRS; i++)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "X-H%d: v%d\r\n", i, i);
	n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\r\n");
	assert_true(n < sizeof(buf));
	struct req_case c = {
	    "many headers", buf, 0, "GET", "/m", "/m", NOQ,	     "h",     1,
	    MAX_HDRS,	    -1,	 0, 0,	   0,	 0,    MAX_HDRS - 1, "X-H63", "v63"};
	run_req_case(&c);

	/* One more is over the limit. */
	struct ism_http_header hdrs[MAX_HDRS + 1];
	struct ism_http_req req = {.headers = hdrs};
	memcpy(buf + n - 2, "X-Z: z\r\n\r\n", 11);
	assert_int_equal(ism_http_parse_request(buf, n + 8, &lim, &req), ISM_HTTP_ETOO_MANY);
	/* Refused as soon as the extra field starts, before the head is complete. */
	assert_int_equal(ism_http_parse_request(buf, n - 1, &lim, &req), ISM_HTTP_ETOO_MANY);
	assert_int_equal(ism_http_parse_request(buf, n - 2, &lim, &req), ISM_HTTP_INCOMPLETE);
}

/* ---- valid responses ---- */

struct resp_case {
	const char *name;
	const char *in;
	size_t head_len;
	int status, minor;
	const char *reason;
	size_t n_headers;
	int64_t cl;
	int chunked, conn, upgrade;
};

static void check_resp_fields(const struct resp_case *c, const struct ism_http_resp *r)
{
	CHECK(c->name, r->status == c->status, "status %d", r->status);
	CHECK(c->name, r->minor_version == c->minor, "minor");
	CHECK(c->name, span_is(r->reason, r->reason_len, c->reason), "reason");
	CHECK(c->name, r->n_headers == c->n_headers, "n_headers %zu", r->n_headers);
	CHECK(c->name, r->framing.content_length == c->cl, "cl");
	CHECK(c->name, r->framing.chunked == c->chunked, "chunked");
	CHECK(c->name, r->framing.conn == c->conn, "conn");
	CHECK(c->name, r->framing.upgrade == c->upgrade, "upgrade");
}

static const struct resp_case resp_cases[] = {
    {"200 CL", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", 38, 200, 1, "OK", 1, 5, 0, 0,
     0},
    {"204", "HTTP/1.1 204 No Content\r\nDate: x\r\n\r\n", 0, 204, 1, "No Content", 1, -1, 0, 0, 0},
    {"204 length 0", "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\n\r\n", 0, 204, 1,
     "No Content", 1, 0, 0, 0, 0},
    {"no reason no SP", "HTTP/1.1 200\r\nTransfer-Encoding: chunked\r\n\r\n", 0, 200, 1, "", 1, -1,
     1, 0, 0},
    {"empty reason", "HTTP/1.1 404 \r\nContent-Length: 0\r\n\r\n", 0, 404, 1, "", 1, 0, 0, 0, 0},
    {"1.0 keep-alive", "HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n", 0, 200, 0, "OK", 1, -1,
     0, ISM_HTTP_CONN_KEEPALIVE, 0},
    {"101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
     0, 101, 1, "Switching Protocols", 2, -1, 0, 0, 1},
    {"bare LF", "HTTP/1.1 999 Odd\nConnection: close\n\n", 0, 999, 1, "Odd", 1, -1, 0,
     ISM_HTTP_CONN_CLOSE, 0},
    {"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", 47,
     200, 1, "OK", 1, -1, 1, 0, 0},
};

static void test_valid_responses(void **state)
{
	struct ism_http_header hdrs[MAX_HDRS];
	struct ism_http_resp resp;
	(void)state;

	for (size_t i = 0; i < sizeof(resp_cases) / sizeof(resp_cases[0]); i++) {
		const struct resp_case *c = &resp_cases[i];
		size_t n = strlen(c->in), head = c->head_len ? c->head_len : n;
		for (size_t k = 0; k <= n; k++) {
			char *b = copy(c->in, k);
			resp.headers = hdrs;
			ssize_t r = ism_http_parse_response(b, k, &lim, &resp);
			if (k < head) {
				CHECK(c->name, r == ISM_HTTP_INCOMPLETE, "prefix %zu: %zd", k, r);
			} else {
				CHECK(c->name, r == (ssize_t)head, "len %zu: got %zd", k, r);
				check_resp_fields(c, &resp);
			}
			free(b);
		}
	}
}

/* ---- invalid requests and responses ---- */

struct bad_case {
	const char *name;
	const char *in;
	size_t len; /* 0: strlen */
	ssize_t err;
};

#define RL  "POST / HTTP/1.1\r\nHost: h\r\n"
#define BAD ISM_HTTP_EBAD

static const struct bad_case bad_reqs[] = {
    {"CL+TE", RL "Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", 0, BAD},
    {"TE+CL", RL "Transfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", 0, BAD},
    {"two CLs", RL "Content-Length: 5\r\nContent-Length: 6\r\n\r\n", 0, BAD},
    {"CL list differs", RL "Content-Length: 5, 6\r\n\r\n", 0, BAD},
    {"CL trailing comma", RL "Content-Length: 5,\r\n\r\n", 0, BAD},
    {"CL plus sign", RL "Content-Length: +5\r\n\r\n", 0, BAD},
    {"CL minus", RL "Content-Length: -1\r\n\r\n", 0, BAD},
    {"CL inner space", RL "Content-Length: 5 5\r\n\r\n", 0, BAD},
    {"CL empty", RL "Content-Length: \r\n\r\n", 0, BAD},
    {"CL hex", RL "Content-Length: 0x10\r\n\r\n", 0, BAD},
    {"CL overflow", RL "Content-Length: 99999999999999999999999\r\n\r\n", 0, BAD},
    {"CL over 2^62", RL "Content-Length: 4611686018427387905\r\n\r\n", 0, BAD},
    {"TE gzip", RL "Transfer-Encoding: gzip\r\n\r\n", 0, ISM_HTTP_ETE_UNSUPPORTED},
    {"TE gzip, chunked", RL "Transfer-Encoding: gzip, chunked\r\n\r\n", 0,
     ISM_HTTP_ETE_UNSUPPORTED},
    {"TE identity", RL "Transfer-Encoding: identity\r\n\r\n", 0, ISM_HTTP_ETE_UNSUPPORTED},
    {"TE chunked params", RL "Transfer-Encoding: chunked;x=1\r\n\r\n", 0, ISM_HTTP_ETE_UNSUPPORTED},
    {"TE chunked, gzip", RL "Transfer-Encoding: chunked, gzip\r\n\r\n", 0, BAD},
    {"TE chunked, chunked", RL "Transfer-Encoding: chunked, chunked\r\n\r\n", 0, BAD},
    {"TE twice", RL "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", 0, BAD},
    {"TE empty", RL "Transfer-Encoding: \r\n\r\n", 0, BAD},
    {"TE empty element", RL "Transfer-Encoding: ,chunked\r\n\r\n", 0, BAD},
    {"TE garbage", RL "Transfer-Encoding: chunked x\r\n\r\n", 0, BAD},
    {"TE xchunked", RL "Transfer-Encoding: xchunked\r\n\r\n", 0, ISM_HTTP_ETE_UNSUPPORTED},
    {"TE in 1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", 0, BAD},
    {"space before colon", RL "Transfer-Encoding : chunked\r\n\r\n", 0, BAD},
    {"tab before colon", RL "Content-Length\t: 5\r\n\r\n", 0, BAD},
    {"obs-fold", RL "X-A: a\r\n b\r\n\r\n", 0, BAD},
    {"obs-fold tab", RL "X-A: a\r\n\tb\r\n\r\n", 0, BAD},
    {"first line folded", "GET / HTTP/1.1\r\n Host: h\r\n\r\n", 0, BAD},
    {"NUL in value", RL "X-A: a\0b\r\n\r\n", sizeof(RL "X-A: a\0b\r\n\r\n") - 1, BAD},
    {"DEL in value", RL "X-A: a\x7f\r\n\r\n", 0, BAD},
    {"VT in value", RL "X-A: a\x0b\r\n\r\n", 0, BAD},
    {"bare CR in value", RL "X-A: a\rb\r\n\r\n", 0, BAD},
    {"bare CR line end", RL "X-A: a\rX-B: b\r\n\r\n", 0, BAD},
    {"bare CR request line", "GET / HTTP/1.1\rHost: h\r\n\r\n", 0, BAD},
    {"bare CR final", RL "\rX", 0, BAD},
    {"bare CR leading", "\rGET / HTTP/1.1\r\nHost: h\r\n\r\n", 0, BAD},
    {"name paren", RL "X(a): b\r\n\r\n", 0, BAD},
    {"name space", RL "X a: b\r\n\r\n", 0, BAD},
    {"name empty", RL ": b\r\n\r\n", 0, BAD},
    {"no colon", RL "X-A\r\n\r\n", 0, BAD},
    {"name non-ascii", RL "X\xc3\xa9: b\r\n\r\n", 0, BAD},
    {"missing Host", "GET / HTTP/1.1\r\nX: y\r\n\r\n", 0, ISM_HTTP_ENOHOST},
    {"double Host", "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", 0, BAD},
    {"double Host 1.0", "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", 0, BAD},
    {"empty Host", "GET / HTTP/1.1\r\nHost: \r\n\r\n", 0, BAD},
    {"Host space", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", 0, BAD},
    {"Host slash", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", 0, BAD},
    {"Host userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", 0, BAD},
    {"Host bad port", "GET / HTTP/1.1\r\nHost: a:80x\r\n\r\n", 0, BAD},
    {"Host two ports", "GET / HTTP/1.1\r\nHost: a:80:90\r\n\r\n", 0, BAD},
    {"Host port too big", "GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n", 0, BAD},
    {"Host port too big, zeros first", "GET / HTTP/1.1\r\nHost: a:0000065536\r\n\r\n", 0, BAD},
    {"Host only port", "GET / HTTP/1.1\r\nHost: :80\r\n\r\n", 0, BAD},
    {"Host unclosed IPv6", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", 0, BAD},
    {"Host IPv6 junk after", "GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n", 0, BAD},
    {"Host IPv6 bad char", "GET / HTTP/1.1\r\nHost: [::g]\r\n\r\n", 0, BAD},
    {"Host IPv6 not v6", "GET / HTTP/1.1\r\nHost: [1.2.3.4]\r\n\r\n", 0, BAD},
    {"Host bracket inside", "GET / HTTP/1.1\r\nHost: a[b]\r\n\r\n", 0, BAD},
    {"absolute-form bad port", "GET http://a:8x/ HTTP/1.1\r\nHost: a\r\n\r\n", 0, BAD},
    {"method paren", "G(T / HTTP/1.1\r\nHost: h\r\n\r\n", 0, BAD},
    {"method ctl", "GE\x01T / HTTP/1.1\r\nHost: h\r\n\r\n", 0, BAD},
    {"method empty", " / HTTP/1.1\r\nHost: h\r\n\r\n", 0, BAD},
    {"two spaces before target", "GET  / HTTP/1.1\r\nHost: h\r\n\r\n", 0, BAD},
    {"two spaces before version", "GET /  HTTP/1.1\r\nHost: h\r\n\r\n", 0, BAD},
    {"tab separator", "GET\t/ HTTP/1.1\r\nHost: h\r\n\r\n", 0, BAD},
    {"trailing space", "GET / HTTP/1.1 \r\nHost: h\r\n\r\n", 0, BAD},
    {"HTTP/0.9", "GET /\r\n\r\n", 0, BAD},
    {"HTTP/2.0", "GET / HTTP/2.0\r\nHost: h\r\n\r\n", 0, ISM_HTTP_EVERSION},
    {"HTTP/1.2", "GET / HTTP/1.2\r\nHost: h\r\n\r\n", 0, ISM_HTTP_EVERSION},
    {"HTTP/2.0 incomplete", "GET / HTTP/2.0", 0, ISM_HTTP_EVERSION},
    {"HTTP/1.10", "GET / HTTP/1.10\r\nHost: h\r\n\r\n", 0, BAD},
    {"lowercase version", "GET / http/1.1\r\nHost: h\r\n\r\n", 0, BAD},
    {"garbage version", "GET / HTTX/1.1\r\n", 0, BAD},
    {"garbage version early", "GET / XY", 0, BAD},
    {"asterisk for GET", "GET * HTTP/1.1\r\nHost: h\r\n\r\n", 0, BAD},
    {"authority-form for GET", "GET h:80 HTTP/1.1\r\nHost: h\r\n\r\n", 0, BAD},
    {"origin-form for CONNECT", "CONNECT /x HTTP/1.1\r\nHost: h\r\n\r\n", 0, BAD},
    {"other scheme", "GET ftp://h/ HTTP/1.1\r\nHost: h\r\n\r\n", 0, BAD},
    {"userinfo", "GET http://u@h/ HTTP/1.1\r\nHost: h\r\n\r\n", 0, BAD},
    {"empty authority", "GET http:///x HTTP/1.1\r\nHost: h\r\n\r\n", 0, BAD},
    {"fragment", "GET /a#f HTTP/1.1\r\nHost: h\r\n\r\n", 0, BAD},
    {"ctl in target", "GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n", 0, BAD},
    {"non-ascii target", "GET /\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n", 0, BAD},
    {"relative target", "GET a/b HTTP/1.1\r\nHost: h\r\n\r\n", 0, BAD},
};

static const struct bad_case bad_resps[] = {
    {"2-digit status", "HTTP/1.1 20 OK\r\n\r\n", 0, BAD},
    {"4-digit status", "HTTP/1.1 2000 OK\r\n\r\n", 0, BAD},
    {"status 099", "HTTP/1.1 099 x\r\n\r\n", 0, BAD},
    {"no status", "HTTP/1.1\r\n\r\n", 0, BAD},
    {"two spaces", "HTTP/1.1  200 OK\r\n\r\n", 0, BAD},
    {"HTTP/2", "HTTP/2 200 OK\r\n\r\n", 0, BAD},
    {"HTTP/3.0", "HTTP/3.0 200 OK\r\n\r\n", 0, ISM_HTTP_EVERSION},
    {"not HTTP", "ICY 200 OK\r\n\r\n", 0, BAD},
    {"bare CR reason", "HTTP/1.1 200 O\rK\r\n\r\n", 0, BAD},
    {"ctl reason", "HTTP/1.1 200 O\x01K\r\n\r\n", 0, BAD},
    {"CL+TE", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 0, BAD},
    {"two CLs", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 0, BAD},
    {"TE gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", 0, ISM_HTTP_ETE_UNSUPPORTED},
    /* Envoy's codec refuses it: an HTTP/1.0 or HTTP/2 client would get the
     * body still gzip-coded, the coding named nowhere. */
    {"TE gzip, chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 0,
     ISM_HTTP_ETE_UNSUPPORTED},
    {"TE chunked, gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 0, BAD},
    {"TE chunked twice", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", 0, BAD},
    {"TE in 1.0", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", 0, BAD},
    {"obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", 0, BAD},
    {"space before colon", "HTTP/1.1 200 OK\r\nContent-Length : 3\r\n\r\n", 0, BAD},
    /* Envoy's codec: a 1xx or 204 may not announce a body (what followed
     * would be read as the next response on the connection). */
    {"204 with a length", "HTTP/1.1 204 No Content\r\nContent-Length: 8\r\n\r\n", 0, BAD},
    {"204 chunked", "HTTP/1.1 204 No Content\r\nTransfer-Encoding: chunked\r\n\r\n", 0, BAD},
    {"100 with a length", "HTTP/1.1 100 Continue\r\nContent-Length: 1\r\n\r\n", 0, BAD},
};

static void run_bad(const struct bad_case *c, int response)
{
	size_t n = c->len ? c->len : strlen(c->in);
	char *b = copy(c->in, n);
	struct ism_http_header hdrs[MAX_HDRS];
	ssize_t r;

	if (response) {
		struct ism_http_resp resp = {.headers = hdrs};
		r = ism_http_parse_response(b, n, &lim, &resp);
	} else {
		struct ism_http_req req = {.headers = hdrs};
		r = ism_http_parse_request(b, n, &lim, &req);
	}
	CHECK(c->name, r == c->err, "got %zd want %zd", r, c->err);
	free(b);
}

/* Every byte value at every position of a long field name (the parser passes
 * most of a name sixteen bytes at a time): a token character keeps the name
 * whole, a colon ends it there, anything else is refused (but a bare LF in
 * place of the name is an empty line). */
static void test_field_name_bytes(void **state)
{
	static const char pre[] = "GET / HTTP/1.1\r\nHost: h\r\n";
	static const char tchar[] = "!#$%&'*+-.^_`|~";
	enum { NAME = 40 };
	(void)state;
	for (int pos = 0; pos < NAME; pos++)
		for (int c = 1; c < 256; c++) {
			char in[128];
			struct ism_http_header hdrs[MAX_HDRS];
			struct ism_http_req req = {.headers = hdrs};
			int n = snprintf(in, sizeof(in), "%sx-%0*d: v\r\n\r\n", pre, NAME - 2, 0);
			int token = (c >= '0' && c <= '9') ||
				    ((c | 0x20) >= 'a' && (c | 0x20) <= 'z') ||
				    strchr(tchar, c) != NULL;
			char *b;
			ssize_t r;

			in[sizeof(pre) - 1 + pos] = (char)c;
			b = copy(in, (size_t)n);
			r = ism_http_parse_request(b, (size_t)n, &lim, &req);
			if (token) {
				assert_int_equal(r, n);
				assert_int_equal(hdrs[1].name_len, NAME);
			} else if (c == '\n' && pos == 0) {
				/* A bare LF (accepted as a line end) ends the head. */
				assert_int_equal(r, sizeof(pre));
			} else if (c == ':' && pos > 0) {
				assert_int_equal(r, n);
				assert_int_equal(hdrs[1].name_len, pos);
			} else {
				assert_int_equal(r, ISM_HTTP_EBAD);
			}
			free(b);
		}
}

/* Whether the parser takes the whole request fmt makes with v. */
static bool parses_with(const char *fmt, const char *v)
{
	struct ism_http_header hdrs[MAX_HDRS];
	struct ism_http_req req = {.headers = hdrs};
	char in[128];
	int n = snprintf(in, sizeof(in), fmt, v);
	char *b = copy(in, (size_t)n);
	bool ok = ism_http_parse_request(b, (size_t)n, &lim, &req) == n;

	free(b);
	return ok;
}

/* What isthmus puts in a value made from others' text (ism_http_value_ok),
 * and an HTTP/2 request's :authority and :path (ism_http_host_ok,
 * ism_http_origin_target_ok), are what the request parser takes: an HTTP/2
 * upstream's request is read back with it, and a refusal there was charged
 * to the upstream. Every byte, in a value and in a Host and a target. */
static void test_made_values_parse(void **state)
{
	(void)state;
	for (int c = 1; c < 256; c++) {
		char v[8];

		snprintf(v, sizeof(v), "a%cb", c);
		assert_int_equal(ism_http_value_ok(v, 3),
				 parses_with("GET / HTTP/1.1\r\nHost: h\r\nx-v: %s\r\n\r\n", v));
		assert_int_equal(ism_http_host_ok(v, 3),
				 parses_with("GET / HTTP/1.1\r\nHost: %s\r\n\r\n", v));
		snprintf(v, sizeof(v), "/a%cb", c);
		assert_int_equal(ism_http_origin_target_ok(v, 4),
				 parses_with("GET %s HTTP/1.1\r\nHost: h\r\n\r\n", v));
	}
	assert_false(ism_http_host_ok("a.test:80x", 10));
	assert_false(ism_http_host_ok("u@a.test", 8));
	assert_true(ism_http_host_ok("a.test:8080", 11));
	assert_true(ism_http_host_ok("[::1]:80", 8));
	assert_false(ism_http_origin_target_ok("*", 1));
}

static void test_invalid_requests(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_reqs) / sizeof(bad_reqs[0]); i++)
		run_bad(&bad_reqs[i], 0);
}

static void test_invalid_responses(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(bad_resps) / sizeof(bad_resps[0]); i++)
		run_bad(&bad_resps[i], 1);
}

static ssize_t parse_req_str(const char *s, size_t n, const struct ism_http_limits *l)
{
	struct ism_http_header hdrs[MAX_HDRS];
	struct ism_http_req req = {.headers = hdrs};
	char *b = copy(s, n);
	ssize_t r = ism_http_parse_request(b, n, l, &req);
	free(b);
	return r;
}

static void test_limits(void **state)
{
	static char buf[16384];
	struct ism_http_limits small = {
	    .max_head_bytes = 64, .max_headers = 4, .max_uri_bytes = 16};
	(void)state;

	/* A target of exactly the limit passes, one byte more is 414, complete or not. */
	const char *ok = "GET /234567890123456 HTTP/1.1\r\nHost: h\r\n\r\n";
	assert_int_equal(parse_req_str(ok, strlen(ok), &small), (ssize_t)strlen(ok));
	const char *lng = "GET /2345678901234567 HTTP/1.1\r\nHost: h\r\n\r\n";
	assert_int_equal(parse_req_str(lng, strlen(lng), &small), ISM_HTTP_EURI_TOO_LONG);
	/* "GET " and 17 target bytes: refused before the SP arrives. */
	assert_int_equal(parse_req_str(lng, 21, &small), ISM_HTTP_EURI_TOO_LONG);
	assert_int_equal(parse_req_str(lng, 20, &small), ISM_HTTP_INCOMPLETE);
	assert_int_equal(ism_http_error_status(ISM_HTTP_EURI_TOO_LONG), 414);

	/* Default limits: a 3000-byte target with no end in sight. */
	size_t n = (size_t)snprintf(buf, sizeof(buf), "GET /");
	memset(buf + n, 'a', 3000);
	assert_int_equal(parse_req_str(buf, n + 3000, &lim), ISM_HTTP_EURI_TOO_LONG);

	/* Head over max_head_bytes: 431 once len passes it without an end. */
	const char *big = "GET / HTTP/1.1\r\nHost: h\r\nX-Long: 0123456789012345678901234567890\r\n"
			  "\r\n";
	assert_true(strlen(big) > 64);
	assert_int_equal(parse_req_str(big, 64, &small), ISM_HTTP_INCOMPLETE);
	assert_int_equal(parse_req_str(big, 65, &small), ISM_HTTP_EHEAD_TOO_BIG);
	assert_int_equal(parse_req_str(big, strlen(big), &small), ISM_HTTP_EHEAD_TOO_BIG);
	/* Exactly max_head_bytes long: accepted. */
	const char *fit =
	    "GET / HTTP/1.1\r\nHost: h\r\nX-L: 012345678901234567890123456789\r\n\r\n";
	assert_int_equal(strlen(fit), 64);
	assert_int_equal(parse_req_str(fit, 64, &small), 64);

	/* A large head with the default limits, filled with valid fields: the
	 * count limit comes first. */
	n = (size_t)snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nHost: h\r\n");
	while (n < 9000)
		n += (size_t)snprintf(buf + n, sizeof(buf) - n,
				      "X-Pad: 0123456789012345678901234567890123456789\r\n");
	assert_int_equal(parse_req_str(buf, n, &lim), ISM_HTTP_ETOO_MANY);

	/* Too many fields. */
	const char *many = "GET / HTTP/1.1\r\nHost: h\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n";
	struct ism_http_limits roomy = small;
	roomy.max_head_bytes = 1024;
	assert_int_equal(parse_req_str(many, strlen(many), &roomy), ISM_HTTP_ETOO_MANY);
	assert_int_equal(ism_http_error_status(ISM_HTTP_EHEAD_TOO_BIG), 431);
	assert_int_equal(ism_http_error_status(ISM_HTTP_ETOO_MANY), 431);
	/* Each error's answer says which. */
	assert_string_equal(ism_http_error_why(ISM_HTTP_ETOO_MANY), ISM_WHY_TOO_MANY);
	assert_string_equal(ism_http_error_why(ISM_HTTP_EHEAD_TOO_BIG), ISM_WHY_HEAD_TOO_BIG);
	assert_string_equal(ism_http_error_why(ISM_HTTP_EURI_TOO_LONG), ISM_WHY_URI_TOO_LONG);
	assert_string_equal(ism_http_error_why(ISM_HTTP_ETE_UNSUPPORTED), ISM_WHY_TE);
	assert_string_equal(ism_http_error_why(ISM_HTTP_EVERSION), ISM_WHY_VERSION);
	assert_string_equal(ism_http_error_why(ISM_HTTP_ENOHOST), ISM_WHY_NO_HOST);
	assert_string_equal(ism_http_error_why(ISM_HTTP_EBAD), ISM_WHY_BAD_REQUEST);
}

/* ---- helpers ---- */

/* A Host name's characters: every byte between two letters is accepted
 * exactly when RFC 3986's reg-name allows it (unreserved, sub-delims, '%'). */
static void test_host_bytes(void **state)
{
	static const char regname[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
				      "0123456789-._~!$&'()*+,;=%";

	(void)state;
	for (int c = 1; c < 256; c++) {
		char raw[64];
		int n = snprintf(raw, sizeof(raw), "GET / HTTP/1.1\r\nHost: a%cb\r\n\r\n", c);
		bool ok = strchr(regname, c) != NULL;

		assert_true((parse_req_str(raw, (size_t)n, &lim) > 0) == ok);
	}
}

/* ism_hex8 writes each nibble as its lowercase hex digit, low nibble first:
 * every digit value at every position. ism_uuid4 is RFC 9562's layout, its
 * version digit 4 and variant digit 8, 9, a or b by the two low bits of the
 * digit it replaces, the other digits the random bits as they came. */
static void test_hex8_uuid4(void **state)
{
	static const char digits[] = "0123456789abcdef";
	uint32_t r[4] = {0x01234567, 0x89abcdef, 0xfedcba98, 0x76543210};
	unsigned variants[4] = {0};
	char out[37];

	(void)state;
	for (int pos = 0; pos < 8; pos++)
		for (uint32_t d = 0; d < 16; d++) {
			uint32_t v = 0x5a5a5a5a ^ (0xfu << (4 * pos));
			uint64_t x;
			char want[8];

			v = (v & ~(0xfu << (4 * pos))) | d << (4 * pos);
			for (int i = 0; i < 8; i++)
				want[i] = digits[v >> (4 * i) & 0xf];
			x = ism_hex8(v);
			assert_memory_equal(&x, want, 8);
		}
	ism_uuid4(r, out);
	assert_string_equal(out, "76543210-fedc-4a98-89ab-cdef01234567");
	/* The variant digit from each of the 16 values its digit may have. */
	for (uint32_t d = 0; d < 16; d++) {
		r[2] = d;
		ism_uuid4(r, out);
		assert_int_equal(strlen(out), 36);
		assert_int_equal(out[14], '4');
		assert_non_null(strchr("89ab", out[19]));
		variants[strchr("89ab", out[19]) - "89ab"]++;
	}
	for (int i = 0; i < 4; i++)
		assert_int_equal(variants[i], 4);
}

/* ism_lower8 lowers exactly the ASCII capitals, whatever byte sits beside
 * them: every byte value at every position of the word, among neighbours
 * from either end of the range (the largest sums a carry could come from)
 * and either side of the capitals. */
static void test_lower8(void **state)
{
	static const unsigned char fills[] = {0x00, 0x40, 0x41, 0x5a, 0x5b, 0x7f, 0x80, 0xda, 0xff};

	(void)state;
	for (int pos = 0; pos < 8; pos++)
		for (int c = 0; c < 256; c++)
			for (size_t f = 0; f < sizeof(fills); f++) {
				unsigned char in[8], want[8];
				uint64_t x;

				memset(in, fills[f], sizeof(in));
				in[pos] = (unsigned char)c;
				for (int i = 0; i < 8; i++)
					want[i] =
					    in[i] >= 'A' && in[i] <= 'Z' ? in[i] | 0x20 : in[i];
				x = ism_lower8(ism_load8((const char *)in, 8));
				assert_memory_equal(&x, want, 8);
			}
	/* Field names that differ from a hop-by-hop one only in a bit that
	 * lowering touches: the byte is not a capital, so they stay apart. */
	static const char *const near[] = {"transfer\x0d"
					   "encoding",
					   "keep\x0d"
					   "alive",
					   "upgrad\xc5",
					   "t\xc5",
					   "connectio\x0e",
					   "t\x05"};
	for (size_t i = 0; i < sizeof(near) / sizeof(near[0]); i++)
		assert_false(ism_http_is_hop_by_hop(near[i], strlen(near[i])));
	/* Both sides in any case, past a word and within one. */
	assert_true(ism_eq_nocase("Transfer-Encoding", "tRANSFER-eNCODING", 17));
	assert_false(ism_eq_nocase("Transfer-Encodinf", "transfer-encoding", 17));
	assert_false(ism_eq_nocase("[", "{", 1));
	assert_true(ism_eq_nocase("", "", 0));
	assert_true(ism_http_is_hop_by_hop("uPgRaDe", 7));
	assert_true(ism_http_is_hop_by_hop("PROXY-CONNECTION", 16));
}

static void test_helpers(void **state)
{
	(void)state;
	assert_int_equal(ism_http_error_status(ISM_HTTP_EBAD), 400);
	assert_int_equal(ism_http_error_status(ISM_HTTP_ETE_UNSUPPORTED), 501);
	assert_int_equal(ism_http_error_status(ISM_HTTP_EVERSION), 505);

	assert_false(ism_http_resp_has_body(200, "HEAD", 4));
	assert_true(ism_http_resp_has_body(200, "GET", 3));
	assert_false(ism_http_resp_has_body(204, "GET", 3));
	assert_false(ism_http_resp_has_body(304, "GET", 3));
	assert_false(ism_http_resp_has_body(100, "POST", 4));
	assert_false(ism_http_resp_has_body(101, "GET", 3));
	assert_true(ism_http_resp_has_body(404, "POST", 4));
	assert_true(ism_http_resp_has_body(205, "GET", 3));
	assert_false(ism_http_resp_has_body(200, "CONNECT", 7));
	assert_true(ism_http_resp_has_body(407, "CONNECT", 7));

	assert_true(ism_http_method_idempotent("GET", 3));
	assert_true(ism_http_method_idempotent("PUT", 3));
	assert_true(ism_http_method_idempotent("DELETE", 6));
	assert_true(ism_http_method_idempotent("OPTIONS", 7));
	assert_false(ism_http_method_idempotent("POST", 4));
	assert_false(ism_http_method_idempotent("PATCH", 5));
	assert_false(ism_http_method_idempotent("GE", 2));
	assert_false(ism_http_method_idempotent("get", 3)); /* methods are case-sensitive */
	assert_true(ism_http_method_idempotent("HEAD", 4));
	assert_true(ism_http_method_idempotent("TRACE", 5));
	assert_false(ism_http_method_idempotent("CONNECT", 7));

	/* Envoy's requestShouldHaveNoBody */
	static const char *const bodiless[] = {"GET", "HEAD", "DELETE", "TRACE", "CONNECT"};
	static const char *const with_body[] = {"POST", "PUT", "PATCH", "OPTIONS", "get", "GE", ""};
	for (size_t i = 0; i < sizeof(bodiless) / sizeof(bodiless[0]); i++)
		assert_true(ism_http_method_bodiless(bodiless[i], strlen(bodiless[i])));
	for (size_t i = 0; i < sizeof(with_body) / sizeof(with_body[0]); i++)
		assert_false(ism_http_method_bodiless(with_body[i], strlen(with_body[i])));

	static const char *const hop[] = {"Connection", "keep-alive",	     "PROXY-CONNECTION",
					  "te",		"Transfer-Encoding", "upgrade"};
	for (size_t i = 0; i < sizeof(hop) / sizeof(hop[0]); i++)
		assert_true(ism_http_is_hop_by_hop(hop[i], strlen(hop[i])));
	static const char *const end2end[] = {
	    "Host",    "Content-Length", "Proxy-Authorization", "TE2",
	    "Trailer", "Trailers",	 "X-Upgrade",		""};
	for (size_t i = 0; i < sizeof(end2end) / sizeof(end2end[0]); i++)
		assert_false(ism_http_is_hop_by_hop(end2end[i], strlen(end2end[i])));

	const char *in = "GET / HTTP/1.1\r\nHost: h\r\nConnection: keep-alive, X-Foo ,\tx-bar\r\n"
			 "connection: Close\r\nX-Foo: 1\r\n\r\n";
	struct ism_http_header hdrs[MAX_HDRS];
	struct ism_http_req req = {.headers = hdrs};
	char *b = copy(in, strlen(in));
	assert_int_equal(ism_http_parse_request(b, strlen(in), &lim, &req), (ssize_t)strlen(in));
	assert_int_equal(req.framing.conn, ISM_HTTP_CONN_CLOSE);
	assert_true(ism_http_named_in_connection(hdrs, req.n_headers, "x-foo", 5));
	assert_true(ism_http_named_in_connection(hdrs, req.n_headers, "X-BAR", 5));
	assert_true(ism_http_named_in_connection(hdrs, req.n_headers, "close", 5));
	assert_false(ism_http_named_in_connection(hdrs, req.n_headers, "x-fo", 4));
	assert_false(ism_http_named_in_connection(hdrs, req.n_headers, "host", 4));
	assert_false(ism_http_named_in_connection(hdrs, req.n_headers, "", 0));
	assert_false(ism_http_named_in_connection(hdrs, 0, "x-foo", 5));
	/* What a proxy forwards: never the framing, the hop-by-hop fields or
	 * those named in Connection. */
	assert_true(req.framing.conn_names);
	assert_false(ism_http_end_to_end(&req.framing, hdrs, req.n_headers, &hdrs[3])); /* X-Foo */
	assert_true(ism_http_end_to_end(&req.framing, hdrs, req.n_headers, &hdrs[0]));	/* Host */
	assert_false(ism_http_end_to_end(&req.framing, hdrs, req.n_headers, &hdrs[1]));
	free(b);

	in = "POST / HTTP/1.1\r\nHost: h\r\nConnection: close\r\nContent-Length: 2\r\n"
	     "X-Foo: 1\r\n\r\n";
	b = copy(in, strlen(in));
	assert_int_equal(ism_http_parse_request(b, strlen(in), &lim, &req), (ssize_t)strlen(in));
	assert_false(req.framing.conn_names);
	assert_false(ism_http_end_to_end(&req.framing, hdrs, req.n_headers, &hdrs[2]));
	assert_true(ism_http_end_to_end(&req.framing, hdrs, req.n_headers, &hdrs[3]));
	free(b);
}

/* ---- chunked scanner ---- */

struct chunk_case {
	const char *name;
	const char *in;
	size_t len;	 /* 0: strlen */
	size_t body_len; /* bytes of the body; the rest belongs to the next message */
};

static const char next_msg[] = "GET / HTTP/1.1\r\n";

static const struct chunk_case good_chunks[] = {
    {"empty body", "0\r\n\r\n", 0, 5},
    {"one chunk", "5\r\nhello\r\n0\r\n\r\n", 0, 15},
    {"many chunks", "1\r\na\r\n2\r\nbb\r\nA\r\n0123456789\r\nf\r\n0123456789abcde\r\n0\r\n\r\n", 0,
     53},
    {"upper hex", "1F\r\n0123456789abcdef0123456789abcde\r\n0\r\n\r\n", 0, 42},
    /* leading zeros: RFC 9112 sets no count of digits, only the value's bound */
    {"17 digits", "00000000000000005\r\nhello\r\n0\r\n\r\n", 0, 31},
    {"extensions", "5;name=val;flag\r\nhello\r\n0;last=\"q s\"\r\n\r\n", 0, 40},
    {"extensions with BWS", "5; a = b ;c\t;d=\"x\\\"y\" ;e\r\nhello\r\n0\r\n\r\n", 0, 38},
    {"quoted ext with obs-text", "1;q=\"\x80\xff\"\r\nx\r\n0\r\n\r\n", 0, 18},
    {"trailers", "3\r\nabc\r\n0\r\nX-Sum: 1\r\nX-Other:\tv\r\n\r\n", 0, 35},
    {"leading zeros", "0000000000000003\r\nabc\r\n0\r\n\r\n", 0, 28},
    {"data with CRLF inside", "4\r\n\r\n\r\n\r\n0\r\n\r\n", 0, 14},
    {"binary data", "3\r\n\0\r\x01\r\n0\r\n\r\n", 13, 13},
};

static int feed(struct ism_chunked *c, const char *s, size_t n, size_t *consumed)
{
	char *b = copy(s, n);
	int r = ism_chunked_scan(c, b, n, consumed);
	free(b);
	return r;
}

static void run_chunk_split(const char *name, const char *in, size_t n, int want_r,
			    size_t want_consumed)
{
	struct ism_chunked c;
	size_t used;

	for (size_t k = 0; k <= n; k++) {
		size_t total = 0;
		ism_chunked_init(&c);
		int r = feed(&c, in, k, &used);
		total += used;
		if (r == 0) {
			CHECK(name, used == k, "split %zu: first call consumed %zu", k, used);
			r = feed(&c, in + k, n - k, &used);
			total += used;
		}
		CHECK(name, r == want_r, "split %zu: got %d want %d", k, r, want_r);
		if (want_r == 1)
			CHECK(name, total == want_consumed, "split %zu: consumed %zu want %zu", k,
			      total, want_consumed);
	}

	/* Byte by byte. */
	ism_chunked_init(&c);
	size_t total = 0;
	int r = 0;
	for (size_t i = 0; i < n && r == 0; i++) {
		r = feed(&c, in + i, 1, &used);
		total += used;
	}
	CHECK(name, r == want_r, "bytewise: got %d", r);
	if (want_r == 1)
		CHECK(name, total == want_consumed, "bytewise: consumed %zu", total);
}

static void test_chunked_valid(void **state)
{
	char buf[512];
	(void)state;

	for (size_t i = 0; i < sizeof(good_chunks) / sizeof(good_chunks[0]); i++) {
		const struct chunk_case *c = &good_chunks[i];
		size_t n = c->len ? c->len : strlen(c->in);
		CHECK(c->name, n == c->body_len, "table: len %zu", n);
		run_chunk_split(c->name, c->in, n, 1, c->body_len);

		/* The next pipelined message after the body is left alone. */
		memcpy(buf, c->in, n);
		memcpy(buf + n, next_msg, sizeof(next_msg) - 1);
		run_chunk_split(c->name, buf, n + sizeof(next_msg) - 1, 1, c->body_len);
	}

	/* After the end, further calls consume nothing. */
	struct ism_chunked c;
	size_t used = 99;
	ism_chunked_init(&c);
	assert_int_equal(feed(&c, "0\r\n\r\nXYZ", 8, &used), 1);
	assert_int_equal(used, 5);
	assert_int_equal(feed(&c, "XYZ", 3, &used), 1);
	assert_int_equal(used, 0);

	/* A large chunk size passes through without the data being present. */
	ism_chunked_init(&c);
	assert_int_equal(feed(&c, "4000000000000000\r\nab", 20, &used), 0);
	assert_int_equal(used, 20);
	assert_int_equal(c.remaining, ((uint64_t)1 << 62) - 2);
}

static const struct chunk_case bad_chunks[] = {
    {"0x prefix", "0x5\r\nhello\r\n0\r\n\r\n", 0, 0},
    {"negative", "-5\r\nhello\r\n0\r\n\r\n", 0, 0},
    {"empty size", "\r\nhello\r\n0\r\n\r\n", 0, 0},
    {"space after size", "5 \r\nhello\r\n0\r\n\r\n", 0, 0},
    {"space before size", " 5\r\nhello\r\n0\r\n\r\n", 0, 0},
    {"no CRLF after data", "5\r\nhelloX\r\n0\r\n\r\n", 0, 0},
    {"CR without LF after data", "5\r\nhello\r0\r\n\r\n", 0, 0},
    {"data too long", "3\r\nhello\r\n0\r\n\r\n", 0, 0},
    {"18 digits", "ffffffffffffffffff\r\n", 0, 0},
    {"over 2^62", "4000000000000001\r\n", 0, 0},
    {"16 f", "ffffffffffffffff\r\n", 0, 0},
    {"bare CR size line", "5\rhello\r\n0\r\n\r\n", 0, 0},
    {"bare CR ext", "5;a\rb\r\nhello\r\n0\r\n\r\n", 0, 0},
    {"ctl in ext", "5;a\x01\r\nhello\r\n0\r\n\r\n", 0, 0},
    {"bare CR trailer", "0\r\nX: a\rb\r\n\r\n", 0, 0},
    {"bare CR end", "0\r\n\rX", 0, 0},
    {"bare LF after size", "3\nabc\r\n0\r\n\r\n", 0, 0},
    {"bare LF after data", "3\r\nabc\n0\r\n\r\n", 0, 0},
    {"bare LF after ext", "3;a=b\nabc\r\n0\r\n\r\n", 0, 0},
    {"bare LF last chunk", "0\n\r\n", 0, 0},
    {"bare LF trailer", "0\r\nT: v\n\r\n", 0, 0},
    {"bare LF end", "0\r\n\n", 0, 0},
    {"empty ext", "2;\r\nab\r\n0\r\n\r\n", 0, 0},
    {"ext without name", "2;=v\r\nab\r\n0\r\n\r\n", 0, 0},
    {"ext missing value", "2;a=\r\nab\r\n0\r\n\r\n", 0, 0},
    {"ext value with space", "2;a=b c\r\nab\r\n0\r\n\r\n", 0, 0},
    {"ext unterminated quote", "2;a=\"b\r\nab\r\n0\r\n\r\n", 0, 0},
    {"ext text after quote", "2;a=\"b\"c\r\nab\r\n0\r\n\r\n", 0, 0},
    {"ext quoted name", "2;\"a\"\r\nab\r\n0\r\n\r\n", 0, 0},
    {"ext non-token", "2;a@b\r\nab\r\n0\r\n\r\n", 0, 0},
    {"ext trailing space", "2;a \r\nab\r\n0\r\n\r\n", 0, 0},
    {"ext DEL in quotes", "2;a=\"\x7f\"\r\nab\r\n0\r\n\r\n", 0, 0},
    {"trailer without colon", "0\r\nT v\r\n\r\n", 0, 0},
    {"trailer space before colon", "0\r\nT : v\r\n\r\n", 0, 0},
    {"trailer obs-fold", "0\r\nT: v\r\n w\r\n\r\n", 0, 0},
    {"NUL in trailer", "0\r\nX: a\0b\r\n\r\n", 14, 0},
};

static void test_chunked_invalid(void **state)
{
	static char buf[20000];
	(void)state;

	for (size_t i = 0; i < sizeof(bad_chunks) / sizeof(bad_chunks[0]); i++) {
		const struct chunk_case *c = &bad_chunks[i];
		run_chunk_split(c->name, c->in, c->len ? c->len : strlen(c->in), ISM_HTTP_EBAD, 0);
	}

	/* A size line of exactly 1024 bytes passes, one more byte fails. */
	size_t n = 0;
	buf[n++] = '1';
	buf[n++] = ';';
	memset(buf + n, 'e', 1022);
	n += 1022;
	memcpy(buf + n, "\r\nx\r\n0\r\n\r\n", 10);
	run_chunk_split("ext 1024", buf, n + 10, 1, n + 10);
	memmove(buf + n + 1, buf + n, 10);
	buf[n] = 'e';
	run_chunk_split("ext 1025", buf, n + 11, ISM_HTTP_EBAD, 0);
	/* So does a size of 1024 digits, and one of 1025 fails. */
	memset(buf, '0', 1023);
	memcpy(buf + 1023, "1\r\nx\r\n0\r\n\r\n", 11);
	run_chunk_split("size 1024 digits", buf, 1034, 1, 1034);
	memmove(buf + 1, buf, 1034);
	run_chunk_split("size 1025 digits", buf, 1035, ISM_HTTP_EBAD, 0);

	/* A trailer section of 16384 bytes (its final CRLF included) passes. */
	memcpy(buf, "0\r\nX:", 5);
	memset(buf + 5, 'v', 16378);
	memcpy(buf + 16383, "\r\n\r\n", 4);
	run_chunk_split("trailers 16384", buf, 16387, 1, 16387);
	memcpy(buf + 16383, "v\r\n\r\n", 5);
	run_chunk_split("trailers 16385", buf, 16388, ISM_HTTP_EBAD, 0);

	/* An error is sticky. */
	struct ism_chunked c;
	size_t used;
	ism_chunked_init(&c);
	assert_int_equal(feed(&c, "g", 1, &used), ISM_HTTP_EBAD);
	assert_int_equal(feed(&c, "0\r\n\r\n", 5, &used), ISM_HTTP_EBAD);
}

/* The data ism_chunked_next yields, at every split point: the body decoded. */
static void decode_split(const char *in, size_t n, const char *want, size_t want_len)
{
	char out[256];

	for (size_t k = 0; k <= n; k++) {
		struct ism_chunked c;
		size_t off = 0, olen = 0, used, dlen;
		const char *data;
		int r = ISM_CHUNK_MORE;

		ism_chunked_init(&c);
		for (int part = 0; part < 2 && r == ISM_CHUNK_MORE; part++) {
			size_t stop = part == 0 ? k : n;

			while (r == ISM_CHUNK_MORE && off < stop) {
				r = ism_chunked_next(&c, in + off, stop - off, &used, &data, &dlen);
				assert_true(r >= 0);
				assert_true(used <= stop - off);
				if (dlen) {
					assert_true(data >= in + off &&
						    data + dlen <= in + off + used);
					assert_true(olen + dlen <= sizeof(out));
					memcpy(out + olen, data, dlen);
					olen += dlen;
				}
				off += used;
			}
		}
		assert_int_equal(r, ISM_CHUNK_END);
		assert_int_equal(olen, want_len);
		assert_memory_equal(out, want, want_len);
	}
}

static void test_chunked_decode(void **state)
{
	static const char body[] = "5;a=b\r\nhello\r\n1\r\n \r\n10\r\n0123456789abcdef\r\n"
				   "0\r\nT: x\r\n\r\nGET / HTTP/1.1\r\n";
	(void)state;
	decode_split(body, sizeof(body) - 1, "hello 0123456789abcdef", 22);
	decode_split("0\r\n\r\n", 5, "", 0);
}

/* ism_body_take over a copy of in cut in two at every point: the data it
 * leaves at the start of each part, the bytes it takes, and done. */
static void take_split(struct ism_body init, const char *in, size_t n, const char *want,
		       size_t want_len, size_t want_taken, bool want_done)
{
	char buf[256], out[256];

	assert_true(n <= sizeof(buf));
	for (size_t k = 0; k <= n; k++) {
		struct ism_body b = init;
		size_t taken = 0, olen = 0, dlen = 99;
		bool done = false;
		ssize_t r;

		memcpy(buf, in, n);
		r = ism_body_take(&b, buf, k, &dlen, &done);
		assert_true(r >= 0 && (size_t)r <= k && dlen <= (size_t)r);
		memcpy(out, buf, dlen);
		olen = dlen;
		taken = (size_t)r;
		if (!done) {
			/* The second part: what the first did not take, then the rest. */
			r = ism_body_take(&b, buf + taken, n - taken, &dlen, &done);
			assert_true(r >= 0 && dlen <= (size_t)r);
			memcpy(out + olen, buf + taken, dlen);
			olen += dlen;
			taken += (size_t)r;
		}
		assert_int_equal(done, want_done);
		assert_int_equal(taken, want_taken);
		assert_int_equal(olen, want_len);
		assert_memory_equal(out, want, want_len);
	}
}

static void test_body_take(void **state)
{
	static const char chunked[] = "5;a=b\r\nhello\r\n1\r\n \r\n10\r\n0123456789abcdef\r\n"
				      "0\r\nT: x\r\n\r\nGET / HTTP/1.1\r\n";
	struct ism_body b = {.mode = ISM_BODY_CHUNKED};
	char bad[] = "5\r\nhelloX";
	size_t dlen;
	bool done;
	(void)state;

	ism_chunked_init(&b.ch);
	take_split(b, chunked, sizeof(chunked) - 1, "hello 0123456789abcdef", 22,
		   sizeof(chunked) - 1 - 16, true);
	/* A length: the bytes up to it are the data, the rest is left. */
	take_split((struct ism_body){.mode = ISM_BODY_CL, .remaining = 5}, "helloGET", 8, "hello",
		   5, 5, true);
	take_split((struct ism_body){.mode = ISM_BODY_CL, .remaining = 9}, "hello", 5, "hello", 5,
		   5, false);
	/* Delimited by the close: all of it, never done. */
	take_split((struct ism_body){.mode = ISM_BODY_CLOSE}, "hello", 5, "hello", 5, 5, false);
	take_split((struct ism_body){.mode = ISM_BODY_NONE}, "GET", 3, "", 0, 0, true);
	/* Malformed chunking is refused. */
	assert_int_equal(ism_body_take(&b, bad, sizeof(bad) - 1, &dlen, &done), ISM_HTTP_EBAD);
}

/* The query q (len bytes, an exact-sized copy) parameter by parameter, each
 * as "name|value|whole", joined by spaces, into out. */
static void query_params(const char *q, size_t len, char *out, size_t cap)
{
	const char *c = q, *end = q != NULL ? q + len : NULL;
	struct ism_query_param p;
	size_t n = 0;

	out[0] = 0;
	while (ism_query_next(&c, end, &p))
		n += (size_t)snprintf(out + n, cap - n, "%s%.*s|%.*s|%.*s", n > 0 ? " " : "",
				      (int)p.name_len, p.name, (int)p.value_len, p.value,
				      (int)p.len, p.name);
	assert_true(n < cap);
}

static void test_query(void **state)
{
	static const struct {
		const char *q, *want;
	} cases[] = {
	    {NULL, ""},
	    {"", ""},
	    {"a=1&b=2", "a|1|a=1 b|2|b=2"},
	    {"b", "b||b"},
	    {"b=", "b||b="},
	    {"a=1=2", "a|1=2|a=1=2"},
	    {"&&x", "|| || x||x"},
	    {"x&", "x||x"},
	    {"=v", "|v|=v"},
	};
	char out[256];
	const char *v;
	size_t vl;
	(void)state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t len = cases[i].q != NULL ? strlen(cases[i].q) : 0;
		char *q = cases[i].q != NULL ? copy(cases[i].q, len) : NULL;

		query_params(q, len, out, sizeof(out));
		assert_string_equal(out, cases[i].want);
		free(q);
	}
	/* The first of a name; "b" and "b=" both give "". */
	assert_int_equal(ism_http_query_value("a=1&b&a=2", 9, "a", 1, &v, &vl), 1);
	assert_int_equal(vl, 1);
	assert_memory_equal(v, "1", 1);
	assert_int_equal(ism_http_query_value("a=1&b&a=2", 9, "b", 1, &v, &vl), 1);
	assert_int_equal(vl, 0);
	assert_int_equal(ism_http_query_value("a=1&b&a=2", 9, "c", 1, &v, &vl), 0);
	assert_int_equal(ism_http_query_value("ab=1", 4, "a", 1, &v, &vl), 0);
	assert_int_equal(ism_http_query_value(NULL, 0, "a", 1, &v, &vl), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_valid_requests),
	    cmocka_unit_test(test_many_headers),
	    cmocka_unit_test(test_valid_responses),
	    cmocka_unit_test(test_invalid_requests),
	    cmocka_unit_test(test_invalid_responses),
	    cmocka_unit_test(test_limits),
	    cmocka_unit_test(test_field_name_bytes),
	    cmocka_unit_test(test_made_values_parse),
	    cmocka_unit_test(test_lower8),
	    cmocka_unit_test(test_hex8_uuid4),
	    cmocka_unit_test(test_host_bytes),
	    cmocka_unit_test(test_helpers),
	    cmocka_unit_test(test_chunked_valid),
	    cmocka_unit_test(test_chunked_invalid),
	    cmocka_unit_test(test_chunked_decode),
	    cmocka_unit_test(test_body_take),
	    cmocka_unit_test(test_query),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
