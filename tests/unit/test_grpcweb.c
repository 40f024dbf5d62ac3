/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of gRPC-Web's translation (worker/grpcweb.h): which requests are
 * gRPC-Web's and in which form, the request's fields as the upstream gets
 * them, base64 across a body's pieces at every split (against lib/base64.h
 * whole), bad base64, and the trailers frame. */
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
	ism_gw_request_fields(h, &n, 6);
	assert_int_equal(n, 4);
	assert_string_equal(h[0].name, "host");
	assert_string_equal(h[1].name, "Content-Type");
	assert_string_equal(h[1].value, "application/grpc");
	assert_string_equal(h[2].name, "x-user");
	assert_string_equal(h[3].name, "grpc-accept-encoding");
	assert_string_equal(h[3].value, "identity,deflate,gzip");
	/* No room: nothing added. */
	n = 4;
	ism_gw_request_fields(h, &n, 3);
	assert_int_equal(n, 3);
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

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_request_kinds),  cmocka_unit_test(test_request_fields),
	    cmocka_unit_test(test_base64_pieces),  cmocka_unit_test(test_base64_bad),
	    cmocka_unit_test(test_trailers_frame),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
