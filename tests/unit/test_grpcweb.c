/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of gRPC-Web's translation (worker/grpcweb.h): which requests are
 * gRPC-Web's and in which form, the request's fields as the upstream gets
 * them, base64 across a body's pieces at every split (against lib/base64.h
 * whole), bad base64, the trailers frame, and which answers become gRPC
 * errors and with what fields. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/base64.h"
#include "worker/grpcweb.h"

#define H(n, v)                                                                                    \
	{                                                                                          \
		n, sizeof(n) - 1, v, sizeof(v) - 1                                                 \
	}

static void test_request_kinds(void **state)
{
	static const struct {
		const char *ct, *accept;
		uint8_t flags;
	} cases[] = {
	    {"application/grpc-web", NULL, ISM_GW_ON},
	    {"application/grpc-web+proto", NULL, ISM_GW_ON},
	    {"Application/GRPC-Web+Proto; charset=x", NULL, ISM_GW_ON},
	    {"application/grpc-web-text", NULL, ISM_GW_ON | ISM_GW_TEXT_IN},
	    {"application/grpc-web-text+proto", "application/grpc-web-text",
	     ISM_GW_ON | ISM_GW_TEXT_IN | ISM_GW_TEXT_OUT},
	    {"application/grpc-web", "application/grpc-web-text+proto",
	     ISM_GW_ON | ISM_GW_TEXT_OUT},
	    /* Not gRPC-Web: left alone, whatever Accept says. */
	    {"application/grpc", "application/grpc-web-text", 0},
	    {"application/grpc-web+json", NULL, 0},
	    {"application/grpc-webx", NULL, 0},
	    {"text/plain", NULL, 0},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ism_http_header h[3] = {H("host", "h")};
		size_t n = 1;

		h[n++] =
		    (struct ism_http_header){"content-type", 12, cases[i].ct, strlen(cases[i].ct)};
		if (cases[i].accept != NULL)
			h[n++] = (struct ism_http_header){"accept", 6, cases[i].accept,
							  strlen(cases[i].accept)};
		assert_int_equal(ism_gw_request(h, n), cases[i].flags);
	}
}

static void test_request_fields(void **state)
{
	struct ism_http_header h[6] = {
	    H("host", "h"),
	    H("Content-Type", "application/grpc-web-text"),
	    H("content-length", "12"),
	    H("grpc-accept-encoding", "br"),
	    H("x-user", "u"),
	};
	size_t n = 5;

	(void)state;
	/* The client's grpc-accept-encoding stands (Envoy's since 1.17). */
	ism_gw_request_fields(h, &n, 6);
	assert_int_equal(n, 4);
	assert_string_equal(h[0].name, "host");
	assert_string_equal(h[1].name, "Content-Type");
	assert_string_equal(h[1].value, "application/grpc");
	assert_string_equal(h[2].name, "grpc-accept-encoding");
	assert_string_equal(h[2].value, "br");
	assert_string_equal(h[3].name, "x-user");
	/* Without one, Envoy's default is added. */
	h[2] = (struct ism_http_header)H("x-other", "o");
	n = 4;
	ism_gw_request_fields(h, &n, 6);
	assert_int_equal(n, 5);
	assert_string_equal(h[4].name, "grpc-accept-encoding");
	assert_string_equal(h[4].value, "identity,deflate,gzip");
	/* No room: nothing added. */
	n = 4;
	ism_gw_request_fields(h, &n, 4);
	assert_int_equal(n, 4);
	assert_string_equal(ism_gw_content_type(ISM_GW_ON), "application/grpc-web+proto");
	assert_string_equal(ism_gw_content_type(ISM_GW_ON | ISM_GW_TEXT_OUT),
			    "application/grpc-web-text+proto");
}

/* Every body of 0..40 bytes, encoded in two pieces split anywhere and three
 * calls (the last final), decodes back whole through pieces split anywhere. */
static void test_base64_pieces(void **state)
{
	unsigned char raw[40];

	(void)state;
	for (size_t i = 0; i < sizeof(raw); i++)
		raw[i] = (unsigned char)(i * 37 + 11);
	for (size_t len = 0; len <= sizeof(raw); len++) {
		char whole[64];
		size_t wlen = ism_b64_encode(raw, len, whole);

		for (size_t cut = 0; cut <= len; cut++) {
			struct ism_gw_b64 c = {0};
			struct ism_buf out = {0};

			assert_int_equal(ism_gw_encode(&c, (const char *)raw, cut, false, &out), 0);
			assert_int_equal(
			    ism_gw_encode(&c, (const char *)raw + cut, len - cut, false, &out), 0);
			assert_int_equal(ism_gw_encode(&c, NULL, 0, true, &out), 0);
			assert_int_equal(out.len, wlen);
			assert_memory_equal(out.p, whole, wlen);
			ism_buf_free(&out);
		}
		for (size_t cut = 0; cut <= wlen; cut++) {
			struct ism_gw_b64 c = {0};
			struct ism_buf out = {0};

			assert_int_equal(ism_gw_decode(&c, whole, cut, false, &out), 0);
			assert_int_equal(ism_gw_decode(&c, whole + cut, wlen - cut, true, &out), 0);
			assert_int_equal(out.len, len);
			if (len)
				assert_memory_equal(out.p, raw, len);
			ism_buf_free(&out);
		}
	}
}

/* Pieces encoded apart follow each other (padding inside the body); what is
 * not base64, or a group left unfinished at the end, is refused. */
static void test_base64_bad(void **state)
{
	static const char *const bad[] = {"!!!!", "QQ=", "QUJD=", "QQ==QQ", "Q===", "QUJ\nRA=="};
	struct ism_gw_b64 c = {0};
	struct ism_buf out = {0};

	(void)state;
	assert_int_equal(ism_gw_decode(&c, "QQ==QUI=", 8, true, &out), 0);
	assert_int_equal(out.len, 3);
	assert_memory_equal(out.p, "AAB", 3);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		c = (struct ism_gw_b64){0};
		out.len = 0;
		assert_int_equal(ism_gw_decode(&c, bad[i], strlen(bad[i]), true, &out), -EINVAL);
	}
	ism_buf_free(&out);
}

static void test_trailers_frame(void **state)
{
	static const struct ism_http_header t[] = {H("grpc-status", "5"),
						   H("Grpc-Message", "not found"), H("x-up", "g0")};
	static const char want[] = "\x80\x00\x00\x00\x30"
				   "grpc-status:5\r\ngrpc-message:not found\r\nx-up:g0\r\n";
	struct ism_buf out = {0};

	(void)state;
	assert_int_equal(ism_buf_append(&out, "pre", 3, UINT32_MAX), 0);
	assert_int_equal(ism_gw_trailers(t, 3, &out), 0);
	assert_int_equal(out.len, 3 + sizeof(want) - 1);
	assert_memory_equal(out.p + 3, want, sizeof(want) - 1);
	/* None: an empty frame. */
	out.len = 0;
	assert_int_equal(ism_gw_trailers(NULL, 0, &out), 0);
	assert_int_equal(out.len, 5);
	assert_memory_equal(out.p, "\x80\0\0\0\0", 5);
	ism_buf_free(&out);
}

/* Which answers Envoy's filter turns into gRPC errors. */
static void test_transform(void **state)
{
	static const struct ism_http_header grpc[] = {H("content-type", "application/grpc")};
	static const struct ism_http_header grpc_json[] = {
	    H("Content-Type", "application/grpc+json")};
	static const struct ism_http_header web[] = {
	    H("content-type", "application/grpc-web; x=1")};
	static const struct ism_http_header web_proto[] = {
	    H("content-type", "Application/gRPC-Web+proto")};
	static const struct ism_http_header web_text[] = {
	    H("content-type", "application/grpc-web-text")};
	static const struct ism_http_header html[] = {H("content-type", "text/html")};

	(void)state;
	assert_false(ism_gw_transform(200, grpc, 1, false));
	assert_false(ism_gw_transform(200, grpc_json, 1, false));
	assert_false(ism_gw_transform(200, web, 1, false));
	assert_false(ism_gw_transform(200, web_proto, 1, false));
	assert_true(ism_gw_transform(200, web_text, 1, false));
	assert_true(ism_gw_transform(200, html, 1, false));
	assert_true(ism_gw_transform(200, NULL, 0, false));
	assert_true(ism_gw_transform(503, grpc, 1, false));
	/* A head that ends the answer is left as it came. */
	assert_false(ism_gw_transform(503, html, 1, true));
}

/* The fields of the error: gRPC-Web's type, the status from the HTTP status,
 * the body percent-encoded as gRPC's spec says (Envoy's encoder escapes '~'
 * too), first, so that a head cut at its bound of fields keeps them (an
 * upstream's 1,000 fields cut them); then the answer's own but framing, type
 * and gRPC status. */
static void test_error_fields(void **state)
{
	static const struct ism_http_header h[] = {
	    H("Content-Type", "text/html"), H("content-length", "12"), H("x-up", "p0"),
	    H("grpc-status", "0"), H("transfer-encoding", "chunked")};
	static const char body[] = "50% off~\n\x01\xff ok";
	static const char want[] = "content-type\0application/grpc-web-text+proto\0"
				   "grpc-status\0"
				   "14\0grpc-message\0"
				   "50%25 off%7E%0A%01%FF ok\0x-up\0p0";
	static const char empty[] = "content-type\0application/grpc-web+proto\0grpc-status\0"
				    "2\0grpc-message\0";
	struct ism_buf out = {0};

	(void)state;
	assert_int_equal(ism_gw_error_fields(ISM_GW_ON | ISM_GW_TEXT_OUT, 503, h, 5, body,
					     sizeof(body) - 1, &out),
			 0);
	assert_int_equal(out.len, sizeof(want));
	assert_memory_equal(out.p, want, sizeof(want));
	/* No body: an empty message; another status: UNKNOWN. */
	out.len = 0;
	assert_int_equal(ism_gw_error_fields(ISM_GW_ON, 418, NULL, 0, NULL, 0, &out), 0);
	assert_int_equal(out.len, sizeof(empty));
	assert_memory_equal(out.p, empty, sizeof(empty));
	ism_buf_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_request_kinds),  cmocka_unit_test(test_request_fields),
	    cmocka_unit_test(test_base64_pieces),  cmocka_unit_test(test_base64_bad),
	    cmocka_unit_test(test_trailers_frame), cmocka_unit_test(test_transform),
	    cmocka_unit_test(test_error_fields),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
