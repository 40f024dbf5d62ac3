/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer harness for gRPC-Web (worker/grpcweb.c) on hostile bytes: the
 * input (after byte 0, which says where to split it) as a gRPC-Web text
 * body, decoded whole and in two pieces (the same bytes either way), encoded
 * whole and in two pieces (the same canonical base64, of 4 bytes per 3),
 * and back again (the input); then as an HTTP/1.1 response head, through the
 * request kind, the response's transformation, the error's fields and the
 * trailers frame (its length what its header says). Besides memory safety
 * (ASan, UBSan) those are the checks. Found by a fuzzing review, which wrote
 * it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker/grpcweb.h"
#include "worker/http1.h"
#include "worker/worker-t.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "fuzz_grpcweb: %s\n", what);
		abort();
	}
}

static void base64(const char *in, size_t len, size_t split)
{
	struct ism_gw_b64 c = {0}, c2 = {0}, d = {0}, d2 = {0}, f = {0};
	struct ism_buf a = {0}, b = {0}, e1 = {0}, e2 = {0}, rt = {0};
	int r1 = ism_gw_decode(&c, in, len, true, &a);
	int r2 = ism_gw_decode(&c2, in, split, false, &b);

	if (r2 == 0)
		r2 = ism_gw_decode(&c2, in + split, len - split, true, &b);
	if (r1 == 0 && r2 == 0)
		check(a.len == b.len && memcmp(a.p, b.p, a.len) == 0, "a split decode differs");
	check(ism_gw_encode(&d, in, len, true, &e1) == 0, "encode");
	check(ism_gw_encode(&d2, in, split, false, &e2) == 0 &&
		  ism_gw_encode(&d2, in + split, len - split, true, &e2) == 0,
	      "encode in pieces");
	check(e1.len == e2.len && memcmp(e1.p, e2.p, e1.len) == 0, "a split encode differs");
	check(e1.len == (len + 2) / 3 * 4, "the encoded length");
	check(ism_gw_decode(&f, e1.p, e1.len, true, &rt) == 0 && rt.len == len &&
		  memcmp(rt.p, in, len) == 0,
	      "the round trip");
	ism_buf_free(&a);
	ism_buf_free(&b);
	ism_buf_free(&e1);
	ism_buf_free(&e2);
	ism_buf_free(&rt);
}

static void fields(char *copy, size_t len, bool done)
{
	static struct ism_http_header h[64];
	struct ism_http_limits lim = {
	    .max_head_bytes = 65536, .max_headers = 63, .max_uri_bytes = 65536};
	struct ism_http_resp resp = {.headers = h};
	struct ism_buf out = {0}, trl = {0};
	ssize_t n = ism_http_parse_response(copy, len, &lim, &resp);
	size_t nh;
	uint8_t fl;
	uint32_t tl;

	if (n <= 0)
		return;
	nh = resp.n_headers;
	fl = ism_gw_request(h, nh);
	(void)ism_gw_transform(resp.status, h, nh, done);
	check(ism_gw_error_fields(fl | ISM_GW_ON, resp.status, h, nh, copy + n, len - (size_t)n,
				  &out) == 0,
	      "the error's fields");
	check(ism_gw_trailers(h, nh, &trl) == 0 && trl.len >= 5, "the trailers frame");
	tl = (uint32_t)(uint8_t)trl.p[1] << 24 | (uint32_t)(uint8_t)trl.p[2] << 16 |
	     (uint32_t)(uint8_t)trl.p[3] << 8 | (uint8_t)trl.p[4];
	check(tl + 5 == trl.len && (uint8_t)trl.p[0] == 0x80, "the trailers frame's length");
	ism_gw_request_fields(h, &nh, 64);
	ism_buf_free(&out);
	ism_buf_free(&trl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data + 1;
	size_t len, split;
	char *copy;

	if (size < 2)
		return 0;
	len = size - 1;
	split = data[0] % size;
	if (split > len)
		split = len;
	base64(in, len, split);
	copy = malloc(len);
	if (copy == NULL)
		return 0;
	memcpy(copy, in, len);
	fields(copy, len, data[0] & 1);
	free(copy);
	return 0;
}
