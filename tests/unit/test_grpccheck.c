/* SPDX-License-Identifier: Apache-2.0 */
/* gRPC health checks (health/grpccheck.h) against an nghttp2 server session
 * in memory: what the check asks (headers, the HealthCheckRequest), and its
 * verdict on every kind of answer Envoy's gRPC health checker tells apart. */
#include <nghttp2/nghttp2.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "health/grpccheck.h"

#define NV(n, v)                                                                                   \
	{                                                                                          \
		(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, sizeof(v) - 1, NGHTTP2_NV_FLAG_NONE \
	}

/* The server's view of the request, and what it answers. */
struct server {
	nghttp2_session *s;
	char headers[1024]; /* "name: value\n" each */
	uint8_t body[2048];
	size_t body_len;
	const uint8_t *resp; /* the response body, sent by read_resp */
	size_t resp_len, resp_sent;
	const char *trailer_status;   /* trailers after it: their grpc-status ("": none in
					 them); NULL: no trailers */
	int settings_acks, ping_acks; /* acknowledgements the check sent */
	uint8_t ping_data[8];	      /* the last one's */
};

static int on_frame(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
	struct server *sv = arg;

	(void)s;
	if (f->hd.type == NGHTTP2_SETTINGS && (f->hd.flags & NGHTTP2_FLAG_ACK))
		sv->settings_acks++;
	if (f->hd.type == NGHTTP2_PING && (f->hd.flags & NGHTTP2_FLAG_ACK)) {
		sv->ping_acks++;
		memcpy(sv->ping_data, f->ping.opaque_data, 8);
	}
	return 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *f, const uint8_t *name, size_t nl,
		     const uint8_t *value, size_t vl, uint8_t flags, void *arg)
{
	struct server *sv = arg;
	size_t at = strlen(sv->headers);

	(void)s;
	(void)f;
	(void)flags;
	snprintf(sv->headers + at, sizeof(sv->headers) - at, "%.*s: %.*s\n", (int)nl, name, (int)vl,
		 value);
	return 0;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
		   void *arg)
{
	struct server *sv = arg;

	(void)s;
	(void)flags;
	(void)id;
	assert_true(sv->body_len + len <= sizeof(sv->body));
	memcpy(sv->body + sv->body_len, data, len);
	sv->body_len += len;
	return 0;
}

static ssize_t read_resp(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
			 uint32_t *flags, nghttp2_data_source *src, void *arg)
{
	struct server *sv = arg;
	size_t n = sv->resp_len - sv->resp_sent;

	(void)src;
	if (n > length)
		n = length;
	memcpy(buf, sv->resp + sv->resp_sent, n);
	sv->resp_sent += n;
	if (sv->resp_sent < sv->resp_len)
		return (ssize_t)n;
	*flags |= NGHTTP2_DATA_FLAG_EOF;
	/* the trailers go after the body: submitted as its end is read */
	if (sv->trailer_status != NULL) {
		nghttp2_nv t[] = {NV("grpc-message", "why not"),
				  {(uint8_t *)"grpc-status", (uint8_t *)sv->trailer_status, 11,
				   strlen(sv->trailer_status), NGHTTP2_NV_FLAG_NONE}};

		*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
		/* "": trailers without a grpc-status */
		assert_int_equal(
		    nghttp2_submit_trailer(s, id, t, sv->trailer_status[0] != '\0' ? 2 : 1), 0);
	}
	return (ssize_t)n;
}

/* A check of "svc" at "up.example:50051" whose request the server has read. */
static struct ism_grpc_check *start(struct server *sv, const char *service, bool tls)
{
	nghttp2_session_callbacks *cb;
	struct ism_grpc_check *g = ism_grpc_check_new("up.example:50051", service, tls, 2500);
	const uint8_t *p;
	size_t n;

	assert_non_null(g);
	memset(sv, 0, sizeof(*sv));
	assert_int_equal(nghttp2_session_callbacks_new(&cb), 0);
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame);
	assert_int_equal(nghttp2_session_server_new(&sv->s, cb, sv), 0);
	nghttp2_session_callbacks_del(cb);
	assert_int_equal(nghttp2_submit_settings(sv->s, NGHTTP2_FLAG_NONE, NULL, 0), 0);
	ism_grpc_check_request(g, &p, &n);
	assert_int_equal(nghttp2_session_mem_recv(sv->s, p, n), (ssize_t)n);
	return g;
}

static void stop(struct server *sv, struct ism_grpc_check *g)
{
	nghttp2_session_del(sv->s);
	ism_grpc_check_free(g);
}

/* Everything the server has to send, fed to the check; its verdict. */
static enum ism_grpc_verdict flush(struct server *sv, struct ism_grpc_check *g, size_t piece,
				   char *why, size_t why_len)
{
	enum ism_grpc_verdict v = ISM_GRPC_MORE;
	const uint8_t *p;
	ssize_t n;

	while ((n = nghttp2_session_mem_send(sv->s, &p)) > 0)
		for (ssize_t at = 0; at < n && v == ISM_GRPC_MORE; at += (ssize_t)piece) {
			size_t k = (size_t)(n - at) < piece ? (size_t)(n - at) : piece;

			v = ism_grpc_check_in(g, p + at, k, why, why_len);
		}
	assert_true(n == 0);
	return v;
}

static const nghttp2_nv grpc_head[] = {NV(":status", "200"),
				       NV("content-type", "application/grpc")};

/* An answer: head (n_head fields), a body (NULL: none), trailers with
 * grpc-status status (NULL: none, the body ends the stream); the verdict,
 * fed piece bytes at a time. */
static enum ism_grpc_verdict answer(const nghttp2_nv *head, size_t n_head, const void *body,
				    size_t body_len, const char *status, size_t piece, char *why)
{
	struct server sv;
	struct ism_grpc_check *g = start(&sv, "svc", false);
	nghttp2_data_provider prd = {.read_callback = read_resp};
	enum ism_grpc_verdict v;

	sv.resp = body;
	sv.resp_len = body_len;
	sv.trailer_status = status;
	assert_int_equal(
	    nghttp2_submit_response(sv.s, 1, head, n_head, body || status ? &prd : NULL), 0);
	v = flush(&sv, g, piece, why, 128);
	stop(&sv, g);
	return v;
}

static void test_request(void **state)
{
	struct server sv;
	struct ism_grpc_check *g = start(&sv, "isthmus.test.Echo", false);
	static const uint8_t want[] = "\0\0\0\0\x13\x0a\x11isthmus.test.Echo";

	(void)state;
	assert_non_null(strstr(sv.headers, ":method: POST\n"));
	assert_non_null(strstr(sv.headers, ":scheme: http\n"));
	assert_non_null(strstr(sv.headers, ":path: /grpc.health.v1.Health/Check\n"));
	assert_non_null(strstr(sv.headers, ":authority: up.example:50051\n"));
	assert_non_null(strstr(sv.headers, "content-type: application/grpc\n"));
	assert_non_null(strstr(sv.headers, "te: trailers\n"));
	assert_non_null(strstr(sv.headers, "user-agent: isthmus-health\n"));
	assert_non_null(strstr(sv.headers, "grpc-timeout: 2500m\n"));
	assert_int_equal(sv.body_len, sizeof(want) - 1);
	assert_memory_equal(sv.body, want, sizeof(want) - 1);
	stop(&sv, g);

	/* the server as a whole: an empty message; over TLS: https */
	g = start(&sv, "", true);
	assert_non_null(strstr(sv.headers, ":scheme: https\n"));
	assert_int_equal(sv.body_len, 5);
	assert_memory_equal(sv.body, "\0\0\0\0\0", 5);
	stop(&sv, g);
}

static void test_verdicts(void **state)
{
	static const nghttp2_nv h503[] = {NV(":status", "503"), NV("content-type", "text/plain")};
	static const nghttp2_nv text[] = {NV(":status", "200"), NV("content-type", "text/html")};
	static const nghttp2_nv grpc_plus[] = {NV(":status", "200"),
					       NV("content-type", "application/grpc+proto")};
	static const nghttp2_nv only[] = {
	    NV(":status", "200"), NV("content-type", "application/grpc"), NV("grpc-status", "5"),
	    NV("grpc-message", "unknown service")};
	char why[128];

	(void)state;
	/* SERVING with grpc-status 0 passes, whole or a byte at a time */
	assert_int_equal(answer(grpc_head, 2, "\0\0\0\0\2\x08\x01", 7, "0", 4096, why),
			 ISM_GRPC_SERVING);
	assert_int_equal(answer(grpc_head, 2, "\0\0\0\0\2\x08\x01", 7, "0", 1, why),
			 ISM_GRPC_SERVING);
	assert_int_equal(answer(grpc_plus, 2, "\0\0\0\0\2\x08\x01", 7, "0", 4096, why),
			 ISM_GRPC_SERVING);
	/* unknown fields are skipped: a string (2), a fixed64 (3), a fixed32 (4) */
	assert_int_equal(answer(grpc_head, 2,
				"\0\0\0\0\x14\x12\x02hi\x19\1\2\3\4\5\6\7\x08\x25\1\2\3\4\x08\x01",
				25, "0", 4096, why),
			 ISM_GRPC_SERVING);
	/* the active failures */
	assert_int_equal(answer(grpc_head, 2, "\0\0\0\0\2\x08\x02", 7, "0", 4096, why),
			 ISM_GRPC_FAILED);
	assert_string_equal(why, "serving status NOT_SERVING");
	/* Envoy's onRpcComplete: only SERVING passes; UNKNOWN (0, said or
	 * the field absent) and SERVICE_UNKNOWN (3) fail as NOT_SERVING does */
	assert_int_equal(answer(grpc_head, 2, "\0\0\0\0\2\x08\x03", 7, "0", 4096, why),
			 ISM_GRPC_FAILED);
	assert_string_equal(why, "serving status SERVICE_UNKNOWN");
	assert_int_equal(answer(grpc_head, 2, "\0\0\0\0\2\x08\x00", 7, "0", 4096, why),
			 ISM_GRPC_FAILED);
	assert_string_equal(why, "serving status UNKNOWN");
	assert_int_equal(answer(grpc_head, 2, "\0\0\0\0\2\x12\x00", 7, "0", 4096, why),
			 ISM_GRPC_FAILED);
	assert_string_equal(why, "serving status UNKNOWN");
	assert_int_equal(answer(grpc_head, 2, "\0\0\0\0\0", 5, "0", 4096, why), ISM_GRPC_FAILED);
	assert_string_equal(why, "no HealthCheckResponse in the answer");
	/* Trailers without a grpc-status: INTERNAL (Envoy's decodeTrailers),
	 * though the message says SERVING */
	assert_int_equal(answer(grpc_head, 2, "\0\0\0\0\2\x08\x01", 7, "", 4096, why),
			 ISM_GRPC_FAILED);
	assert_int_equal(answer(grpc_head, 2, "\0\0\0\0\2\x08\x01", 7, "14", 4096, why),
			 ISM_GRPC_FAILED);
	assert_string_equal(why, "grpc-status 14 (why not)");
	assert_int_equal(answer(only, 4, NULL, 0, NULL, 4096, why), ISM_GRPC_FAILED);
	assert_string_equal(why, "grpc-status 5 (unknown service)");
	assert_int_equal(answer(h503, 2, NULL, 0, NULL, 4096, why), ISM_GRPC_FAILED);
	assert_string_equal(why, "HTTP status 503");
	assert_int_equal(answer(text, 2, "ok", 2, NULL, 4096, why), ISM_GRPC_FAILED);
	assert_string_equal(why, "not a gRPC response (content-type)");
	/* Envoy's hasGrpcContentType: application/grpc, alone or followed by
	 * '+' or ';' (application/grpc-web and application/grpcx are not gRPC) */
	{
		static const nghttp2_nv web[] = {NV(":status", "200"),
						 NV("content-type", "application/grpc-web")};
		static const nghttp2_nv grpcx[] = {NV(":status", "200"),
						   NV("content-type", "application/grpcx")};
		static const nghttp2_nv semi[] = {NV(":status", "200"),
						  NV("content-type", "application/grpc;charset=x")};

		assert_int_equal(answer(web, 2, "\0\0\0\0\2\x08\x01", 7, "0", 4096, why),
				 ISM_GRPC_FAILED);
		assert_string_equal(why, "not a gRPC response (content-type)");
		assert_int_equal(answer(grpcx, 2, "\0\0\0\0\2\x08\x01", 7, "0", 4096, why),
				 ISM_GRPC_FAILED);
		assert_string_equal(why, "not a gRPC response (content-type)");
		assert_int_equal(answer(semi, 2, "\0\0\0\0\2\x08\x01", 7, "0", 4096, why),
				 ISM_GRPC_SERVING);
	}
	assert_int_equal(answer(grpc_head, 2, "\0\0\0\0\2\x08\x01", 7, NULL, 4096, why),
			 ISM_GRPC_FAILED);
	assert_string_equal(why, "gRPC protocol violation: unexpected stream end");
	assert_int_equal(
	    answer(grpc_head, 2, "\0\0\0\0\2\x08\x01\0\0\0\0\2\x08\x01", 14, "0", 4096, why),
	    ISM_GRPC_FAILED);
	assert_string_equal(why, "unexpected streaming");
	assert_int_equal(answer(grpc_head, 2, "\1\0\0\0\2\x08\x01", 7, "0", 4096, why),
			 ISM_GRPC_FAILED);
	assert_string_equal(why, "invalid grpc.health.v1 payload");
	assert_int_equal(answer(grpc_head, 2, "\0\0\0\0\2\x08\x81", 7, "0", 4096, why),
			 ISM_GRPC_FAILED);
	assert_int_equal(answer(grpc_head, 2, "\0\0\1\0\0", 5, "0", 4096, why), ISM_GRPC_FAILED);
	assert_string_equal(why, "invalid grpc.health.v1 payload (65536 bytes)");
}

/* No answer: network failures. */
/* The server answers SERVING (status 0): the check's verdict; both end. */
static void answer_serving(struct server *sv, struct ism_grpc_check *g)
{
	nghttp2_data_provider prd = {.read_callback = read_resp};
	char why[128];

	sv->resp = (const uint8_t *)"\0\0\0\0\2\x08\x01";
	sv->resp_len = 7;
	sv->trailer_status = "0";
	assert_int_equal(nghttp2_submit_response(sv->s, 1, grpc_head, 2, &prd), 0);
	assert_int_equal(flush(sv, g, 4096, why, sizeof(why)), ISM_GRPC_SERVING);
	stop(sv, g);
}

static void test_broken(void **state)
{
	struct server sv;
	struct ism_grpc_check *g;
	char why[128];
	static const char http1[] = "HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";

	(void)state;
	g = start(&sv, "svc", false);
	assert_int_equal(nghttp2_submit_rst_stream(sv.s, NGHTTP2_FLAG_NONE, 1, NGHTTP2_CANCEL), 0);
	assert_int_equal(flush(&sv, g, 4096, why, sizeof(why)), ISM_GRPC_BROKEN);
	assert_string_equal(why, "stream reset by the upstream (error code 8)");
	stop(&sv, g);

	g = start(&sv, "svc", false);
	assert_int_equal(
	    nghttp2_submit_goaway(sv.s, NGHTTP2_FLAG_NONE, 0, NGHTTP2_ENHANCE_YOUR_CALM, NULL, 0),
	    0);
	assert_int_equal(flush(&sv, g, 4096, why, sizeof(why)), ISM_GRPC_BROKEN);
	stop(&sv, g);

	/* a graceful GOAWAY that covers the stream lets the answer come */
	g = start(&sv, "svc", false);
	assert_int_equal(
	    nghttp2_submit_goaway(sv.s, NGHTTP2_FLAG_NONE, 1, NGHTTP2_NO_ERROR, NULL, 0), 0);
	assert_int_equal(flush(&sv, g, 4096, why, sizeof(why)), ISM_GRPC_MORE);
	answer_serving(&sv, g);

	/* the connection ends, or it speaks HTTP/1.1 */
	g = start(&sv, "svc", false);
	assert_int_equal(ism_grpc_check_in(g, NULL, 0, why, sizeof(why)), ISM_GRPC_BROKEN);
	assert_string_equal(why, "connection closed without an answer");
	/* a verdict stands */
	assert_int_equal(
	    ism_grpc_check_in(g, (const uint8_t *)http1, sizeof(http1) - 1, why, sizeof(why)),
	    ISM_GRPC_BROKEN);
	stop(&sv, g);
	g = start(&sv, "svc", false);
	assert_int_equal(
	    ism_grpc_check_in(g, (const uint8_t *)http1, sizeof(http1) - 1, why, sizeof(why)),
	    ISM_GRPC_BROKEN);
	assert_non_null(strstr(why, "HTTP/2: "));
	stop(&sv, g);
}

/* What the session answers goes out after the request, as RFC 9113 wants:
 * the server's SETTINGS and a PING acknowledged (the PING's data echoed);
 * the answer still counts. A flood of PINGs ends the check as broken. */
static void test_acks(void **state)
{
	static const uint8_t opaque[8] = "12345678";
	struct server sv;
	struct ism_grpc_check *g = start(&sv, "svc", false);
	const uint8_t *p;
	size_t n0, n;
	char why[128];

	(void)state;
	ism_grpc_check_request(g, &p, &n0);
	assert_int_equal(nghttp2_submit_ping(sv.s, NGHTTP2_FLAG_NONE, opaque), 0);
	assert_int_equal(flush(&sv, g, 4096, why, sizeof(why)), ISM_GRPC_MORE);
	ism_grpc_check_request(g, &p, &n);
	assert_true(n > n0);
	assert_int_equal(nghttp2_session_mem_recv(sv.s, p + n0, n - n0), (ssize_t)(n - n0));
	assert_int_equal(sv.settings_acks, 1);
	assert_int_equal(sv.ping_acks, 1);
	assert_memory_equal(sv.ping_data, opaque, 8);
	answer_serving(&sv, g);

	/* one PING at a time, acknowledged each: the check's own bound */
	g = start(&sv, "svc", false);
	assert_int_equal(flush(&sv, g, 4096, why, sizeof(why)), ISM_GRPC_MORE);
	for (int i = 0; i < 5000; i++)
		assert_int_equal(nghttp2_submit_ping(sv.s, NGHTTP2_FLAG_NONE, opaque), 0);
	assert_int_equal(flush(&sv, g, 17, why, sizeof(why)), ISM_GRPC_BROKEN);
	assert_non_null(strstr(why, "a flood of control frames"));
	stop(&sv, g);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_request),
	    cmocka_unit_test(test_verdicts),
	    cmocka_unit_test(test_broken),
	    cmocka_unit_test(test_acks),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
