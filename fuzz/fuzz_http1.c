/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer harness for worker/http1.c: request heads, response heads and the
 * chunked scanner on the same input. Besides memory safety (ASan, UBSan) it
 * checks the contract: results stay inside the input, a complete head parses the
 * same on its own, every shorter prefix of a head is INCOMPLETE, and the chunked
 * scanner gives the same answer whatever the split of its input, as does the
 * in-place body decoder. */
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/http1.h"

#define MAX_HDRS 32

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz_http1: invariant violated: %s\n", what);
		abort();
	}
}

static int inside(const char *p, size_t n, const char *buf, size_t len)
{
	return p == NULL || (p >= buf && p + n <= buf + len);
}

static int known_err(ssize_t r)
{
	return r == ISM_HTTP_EBAD || r == ISM_HTTP_EURI_TOO_LONG || r == ISM_HTTP_EHEAD_TOO_BIG ||
	       r == ISM_HTTP_ETE_UNSUPPORTED || r == ISM_HTTP_EVERSION || r == ISM_HTTP_ENOHOST ||
	       r == ISM_HTTP_ETOO_MANY;
}

static void check_framing(const struct ism_http_framing *f)
{
	check(f->content_length >= -1 && f->content_length <= ((int64_t)1 << 62), "cl range");
	check(!(f->chunked && f->content_length >= 0), "CL and chunked");
	check(f->conn <= ISM_HTTP_CONN_KEEPALIVE, "conn");
}

static void check_headers(const struct ism_http_header *h, size_t n, const char *buf, size_t r)
{
	check(n <= MAX_HDRS, "n_headers");
	for (size_t i = 0; i < n; i++) {
		check(h[i].name_len > 0 && inside(h[i].name, h[i].name_len, buf, r), "name");
		check(inside(h[i].value, h[i].value_len, buf, r), "value");
		check(memchr(h[i].value, '\r', h[i].value_len) == NULL, "CR in value");
		check(memchr(h[i].value, '\n', h[i].value_len) == NULL, "LF in value");
	}
}

/* Which prefixes to re-parse: all of them for short inputs, a stride otherwise. */
static size_t stride(size_t n)
{
	return n <= 512 ? 1 : n / 256;
}

/* The value helpers on a parsed request: the query walked parameter by
 * parameter covers it exactly; a cookie's value and a parameter's value lie
 * inside their field; the Connection and TE readers take every field. */
static void fuzz_values(const struct ism_http_req *rq)
{
	const char *q = rq->query, *end = q != NULL ? q + rq->query_len : NULL, *v;
	struct ism_query_param p;
	size_t covered = 0, vl;

	while (ism_query_next(&q, end, &p)) {
		check(inside(p.name, p.name_len, rq->query, rq->query_len), "param name");
		check(inside(p.value, p.value_len, rq->query, rq->query_len), "param value");
		check(p.name_len <= p.len && p.value_len <= p.len, "param lengths");
		covered += p.len + 1;
		if (ism_http_query_value(rq->query, rq->query_len, p.name, p.name_len, &v, &vl))
			check(inside(v, vl, rq->query, rq->query_len), "query value");
		else
			check(0, "a parameter walked is not found by name");
	}
	/* Every byte but a trailing '&' (an empty last parameter, not walked). */
	check(rq->query_len == 0 || covered == rq->query_len + 1 ||
		  (covered == rq->query_len && rq->query[rq->query_len - 1] == '&'),
	      "the walk covers the query");
	for (size_t i = 0; i < rq->n_headers; i++) {
		const struct ism_http_header *h = &rq->headers[i];
		const char *eq = memchr(h->value, '=', h->value_len);

		(void)ism_http_te_trailers(h);
		(void)ism_http_end_to_end(&rq->framing, rq->headers, rq->n_headers, h);
		check(ism_http_named_in_connection(rq->headers, rq->n_headers, h->name,
						   h->name_len) >= 0,
		      "named in connection");
		if (eq != NULL && ism_http_cookie_value(h->value, h->value_len, h->value,
							(size_t)(eq - h->value), &v, &vl))
			check(inside(v, vl, h->value, h->value_len), "cookie value");
	}
}

static ssize_t req(const char *buf, size_t len, const struct ism_http_limits *lim,
		   struct ism_http_req *rq, struct ism_http_header *hdrs)
{
	memset(rq, 0xa5, sizeof(*rq));
	rq->headers = hdrs;
	return ism_http_parse_request(buf, len, lim, rq);
}

static void fuzz_request(const char *buf, size_t len, const struct ism_http_limits *lim)
{
	struct ism_http_header hdrs[MAX_HDRS];
	struct ism_http_req rq, rq2;
	ssize_t r = req(buf, len, lim, &rq, hdrs);

	check(r == ISM_HTTP_INCOMPLETE || known_err(r) || (r > 0 && (size_t)r <= len), "ret");
	if (r > 0) {
		size_t n = (size_t)r;
		check(n <= lim->max_head_bytes, "head over limit");
		check(inside(rq.method, rq.method_len, buf, n) && rq.method_len > 0, "method");
		check(inside(rq.target, rq.target_len, buf, n) && rq.target_len > 0, "target");
		check(rq.target_len <= lim->max_uri_bytes, "target limit");
		check(inside(rq.query, rq.query_len, buf, n), "query");
		check(inside(rq.host, rq.host_len, buf, n), "host");
		check(rq.path != NULL && rq.path_len > 0, "path");
		check(rq.minor_version == 0 || rq.minor_version == 1, "minor");
		check(rq.minor_version == 0 || rq.host != NULL, "1.1 without host");
		check_headers(hdrs, rq.n_headers, buf, n);
		check_framing(&rq.framing);
		check(!(rq.framing.chunked && rq.minor_version == 0), "TE in 1.0");
		fuzz_values(&rq);
		struct ism_http_header hdrs2[MAX_HDRS];
		check(req(buf, n, lim, &rq2, hdrs2) == r, "head alone");
		check(rq2.n_headers == rq.n_headers &&
			  rq2.framing.content_length == rq.framing.content_length,
		      "head alone fields");
		for (size_t k = 0; k < n; k += stride(n))
			check(req(buf, k, lim, &rq2, hdrs2) == ISM_HTTP_INCOMPLETE,
			      "prefix of head");
	} else if (r == ISM_HTTP_INCOMPLETE) {
		struct ism_http_header hdrs2[MAX_HDRS];
		for (size_t k = 0; k < len; k += stride(len))
			check(req(buf, k, lim, &rq2, hdrs2) == ISM_HTTP_INCOMPLETE,
			      "prefix of incomplete");
	}
}

static ssize_t resp(const char *buf, size_t len, const struct ism_http_limits *lim,
		    struct ism_http_resp *rs, struct ism_http_header *hdrs)
{
	memset(rs, 0xa5, sizeof(*rs));
	rs->headers = hdrs;
	return ism_http_parse_response(buf, len, lim, rs);
}

static void fuzz_response(const char *buf, size_t len, const struct ism_http_limits *lim)
{
	struct ism_http_header hdrs[MAX_HDRS], hdrs2[MAX_HDRS];
	struct ism_http_resp rs, rs2;
	ssize_t r = resp(buf, len, lim, &rs, hdrs);

	check(r == ISM_HTTP_INCOMPLETE || known_err(r) || (r > 0 && (size_t)r <= len), "ret");
	if (r > 0) {
		size_t n = (size_t)r;
		check(rs.status >= 100 && rs.status <= 999, "status");
		check(inside(rs.reason, rs.reason_len, buf, n), "reason");
		check_headers(hdrs, rs.n_headers, buf, n);
		check_framing(&rs.framing);
		check(resp(buf, n, lim, &rs2, hdrs2) == r && rs2.status == rs.status, "head alone");
		for (size_t k = 0; k < n; k += stride(n))
			check(resp(buf, k, lim, &rs2, hdrs2) == ISM_HTTP_INCOMPLETE,
			      "prefix of head");
	}
}

static int scan(struct ism_chunked *c, const char *buf, size_t len, size_t *used)
{
	*used = (size_t)-1;
	int r = ism_chunked_scan(c, buf, len, used);
	check(r == 0 || r == 1 || r == ISM_HTTP_EBAD, "chunked ret");
	check(*used <= len, "consumed past len");
	check(r != 0 || *used == len, "need more but not all consumed");
	return r;
}

/* Decodes buf[0, len) from state c, appending the chunk data to out (len bytes
 * at most); returns the decoder's verdict and adds the bytes used to *total. */
static int decode(struct ism_chunked *c, const char *buf, size_t len, char *out, size_t *olen,
		  size_t *total)
{
	size_t off = 0, used, dlen;
	const char *data;
	int r;

	do {
		r = ism_chunked_next(c, buf + off, len - off, &used, &data, &dlen);
		check(r == ISM_CHUNK_MORE || r == ISM_CHUNK_END || r == ISM_HTTP_EBAD, "next ret");
		check(used <= len - off, "next consumed past len");
		check(dlen == 0 || (data >= buf + off && data + dlen <= buf + off + used),
		      "data outside the consumed bytes");
		if (dlen)
			memcpy(out + *olen, data, dlen);
		*olen += dlen;
		off += used;
	} while (r == ISM_CHUNK_MORE && off < len);
	*total += off;
	return r;
}

static void fuzz_chunked(const char *buf, size_t len)
{
	struct ism_chunked c;
	size_t whole, used, total, wlen = 0, olen;
	char *want = malloc(len + 1), *out = malloc(len + 1);

	if (want == NULL || out == NULL)
		goto out;
	ism_chunked_init(&c);
	int rw = scan(&c, buf, len, &whole);
	ism_chunked_init(&c);
	total = 0;
	check(decode(&c, buf, len, want, &wlen, &total) == rw, "decode and scan disagree");
	check(rw != 1 || total == whole, "decode and scan end differently");
	{
		/* In place (ism_body_take): the same data, moved to the start. */
		struct ism_body b = {.mode = ISM_BODY_CHUNKED};
		size_t dl = 0;
		bool done = false;
		ssize_t n;

		ism_chunked_init(&b.ch);
		memcpy(out, buf, len);
		n = ism_body_take(&b, out, len, &dl, &done);
		check(rw == ISM_HTTP_EBAD ? n == ISM_HTTP_EBAD : n >= 0, "take's verdict");
		check(n < 0 || done == (rw == 1), "take's end");
		check(n < 0 || (size_t)n == (rw == 1 ? whole : len), "take's length");
		check(n < 0 || (dl == wlen && memcmp(out, want, dl) == 0), "take's data");
	}
	for (size_t k = 0; k <= len; k += (len <= 2048 ? 1 : len / 1024)) {
		ism_chunked_init(&c);
		int r = scan(&c, buf, k, &used);
		total = used;
		if (r == 0) {
			r = scan(&c, buf + k, len - k, &used);
			total += used;
		}
		check(r == rw, "split changes the verdict");
		check(r != 1 || total == whole, "split changes the body length");

		ism_chunked_init(&c);
		olen = total = 0;
		r = decode(&c, buf, k, out, &olen, &total);
		if (r == ISM_CHUNK_MORE)
			r = decode(&c, buf + k, len - k, out, &olen, &total);
		check(r == rw, "split changes the decoder's verdict");
		check(r != 1 || (olen == wlen && memcmp(out, want, olen) == 0),
		      "split changes the decoded data");
	}
out:
	free(want);
	free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* Copy to an exact-sized block so that any read past size is an ASan error
	 * whatever libFuzzer's own buffer looks like. */
	char *buf = malloc(size ? size : 1);
	if (!buf)
		return 0;
	memcpy(buf, data, size);

	const struct ism_http_limits roomy = {
	    .max_head_bytes = 8192, .max_headers = MAX_HDRS, .max_uri_bytes = 2048};
	const struct ism_http_limits tight = {
	    .max_head_bytes = 96, .max_headers = 3, .max_uri_bytes = 24};

	fuzz_request(buf, size, &roomy);
	fuzz_request(buf, size, &tight);
	fuzz_response(buf, size, &roomy);
	fuzz_response(buf, size, &tight);
	fuzz_chunked(buf, size);
	free(buf);
	return 0;
}
