/* SPDX-License-Identifier: Apache-2.0 */
/* gRPC health checks over libnghttp2 (see grpccheck.h). What Envoy's
 * GrpcHealthCheckerImpl does with its session's callbacks (decodeHeaders,
 * decodeData, decodeTrailers, onResetStream, onGoAway, onRpcComplete) is done
 * here from nghttp2's frame callbacks, with the same verdicts. */
#include "health/grpccheck.h"

#include <nghttp2/nghttp2.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/grpc.h"
#include "lib/pb.h"
#include "shm/table-t.h"

#define PATH	"/grpc.health.v1.Health/Check"
#define MSG_MAX 256 /* bytes of a HealthCheckResponse: it holds one enum */
/* bytes the check writes at most: its request (under 1 KiB), then the
 * session's acknowledgements (a PING's is 17 bytes) */
#define OUT_MAX 65536u

/* grpc.health.v1.HealthCheckResponse.ServingStatus */
enum { SERVING_UNKNOWN = 0, SERVING = 1, NOT_SERVING = 2, SERVICE_UNKNOWN = 3 };

struct ism_grpc_check {
	nghttp2_session *s;
	uint8_t *out; /* what it writes: the request, then the session's acknowledgements */
	size_t out_len;
	uint8_t body[5 + 3 + ISM_HC_SERVICE_MAX]; /* the request message, gRPC-framed */
	size_t body_len, body_sent;

	enum ism_grpc_verdict verdict;
	char why[128];
	bool head_done;	 /* the final response head came */
	int status;	 /* its :status */
	bool grpc_type;	 /* its content-type is application/grpc[+...] */
	int grpc_status; /* of the block being read; -1 none */
	char grpc_message[64];
	bool got_msg;		 /* a response message (non-empty) came */
	int serving;		 /* its status field */
	uint8_t rx[5 + MSG_MAX]; /* DATA bytes not yet framed */
	size_t rx_len;
};

/* The first verdict stands; why says what the answer was. */
__attribute__((format(printf, 3, 4))) static void
verdict(struct ism_grpc_check *g, enum ism_grpc_verdict v, const char *fmt, ...)
{
	va_list ap;

	if (g->verdict != ISM_GRPC_MORE)
		return;
	g->verdict = v;
	va_start(ap, fmt);
	vsnprintf(g->why, sizeof(g->why), fmt, ap);
	va_end(ap);
}

static const char *serving_name(int s)
{
	switch (s) {
	case SERVING_UNKNOWN:
		return "UNKNOWN";
	case SERVING:
		return "SERVING";
	case NOT_SERVING:
		return "NOT_SERVING";
	case SERVICE_UNKNOWN:
		return "SERVICE_UNKNOWN";
	default:
		return "an unknown serving status";
	}
}

/* Envoy's onRpcComplete: grpc-status 0 and SERVING pass, anything else is an
 * active failure. */
static void complete(struct ism_grpc_check *g, int grpc_status)
{
	if (grpc_status != 0)
		verdict(g, ISM_GRPC_FAILED, "grpc-status %d%s%s%s", grpc_status,
			g->grpc_message[0] ? " (" : "", g->grpc_message,
			g->grpc_message[0] ? ")" : "");
	else if (!g->got_msg)
		verdict(g, ISM_GRPC_FAILED, "no HealthCheckResponse in the answer");
	else if (g->serving != SERVING)
		verdict(g, ISM_GRPC_FAILED, "serving status %s", serving_name(g->serving));
	else
		verdict(g, ISM_GRPC_SERVING, "SERVING");
}

/* A HealthCheckResponse (protobuf): its status field (1, varint), other fields
 * skipped. Returns false when it does not parse. */
static bool parse_response(struct ism_grpc_check *g, const uint8_t *p, size_t n)
{
	const uint8_t *end = p + n;
	struct ism_pb_field f;
	int r;

	g->serving = SERVING_UNKNOWN;
	while ((r = ism_pb_next(&p, end, &f)) > 0)
		if (f.num == 1 && f.wire == ISM_PB_VARINT)
			g->serving = f.v > 1000 ? 1000 : (int)f.v;
	return r == 0;
}

/* Envoy's decodeData: gRPC frames out of the DATA bytes; one message at most
 * (Check is unary), uncompressed; empty ones are skipped. */
static void take_frames(struct ism_grpc_check *g)
{
	size_t at = 0;

	while (g->verdict == ISM_GRPC_MORE && g->rx_len - at >= 5) {
		const uint8_t *f = g->rx + at;
		uint32_t len =
		    (uint32_t)f[1] << 24 | (uint32_t)f[2] << 16 | (uint32_t)f[3] << 8 | f[4];

		if (len > MSG_MAX) {
			verdict(g, ISM_GRPC_FAILED, "invalid grpc.health.v1 payload (%u bytes)",
				len);
			return;
		}
		if (g->rx_len - at < 5 + (size_t)len)
			break;
		if (len > 0) {
			if (g->got_msg)
				verdict(g, ISM_GRPC_FAILED, "unexpected streaming");
			else if (f[0] != 0 || !parse_response(g, f + 5, len))
				verdict(g, ISM_GRPC_FAILED, "invalid grpc.health.v1 payload");
			g->got_msg = true;
		}
		at += 5 + (size_t)len;
	}
	memmove(g->rx, g->rx + at, g->rx_len - at);
	g->rx_len -= at;
}

static int on_data(nghttp2_session *s, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
		   void *arg)
{
	struct ism_grpc_check *g = arg;

	(void)s;
	(void)flags;
	if (id != 1 || g->verdict != ISM_GRPC_MORE)
		return 0;
	while (len > 0 && g->verdict == ISM_GRPC_MORE) {
		size_t room = sizeof(g->rx) - g->rx_len, k = len < room ? len : room;

		memcpy(g->rx + g->rx_len, data, k);
		g->rx_len += k;
		data += k;
		len -= k;
		take_frames(g);
		if (g->rx_len == sizeof(g->rx) && g->verdict == ISM_GRPC_MORE)
			verdict(g, ISM_GRPC_FAILED, "invalid grpc.health.v1 payload");
	}
	return 0;
}

static bool is(const uint8_t *name, size_t len, const char *want)
{
	return len == strlen(want) && memcmp(name, want, len) == 0;
}

static int on_header(nghttp2_session *s, const nghttp2_frame *frame, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
		     void *arg)
{
	struct ism_grpc_check *g = arg;

	(void)s;
	(void)flags;
	if (frame->hd.stream_id != 1)
		return 0;
	if (is(name, namelen, ":status")) {
		g->status = 0;
		for (size_t i = 0; i < valuelen && i < 3; i++)
			g->status = g->status * 10 +
				    (value[i] >= '0' && value[i] <= '9' ? value[i] - '0' : 0);
	} else if (is(name, namelen, "content-type")) {
		/* Envoy's hasGrpcContentType: application/grpc, or it followed by
		 * '+' or ';' */
		g->grpc_type = valuelen >= 16 && memcmp(value, "application/grpc", 16) == 0 &&
			       (valuelen == 16 || value[16] == '+' || value[16] == ';');
	} else if (is(name, namelen, "grpc-status")) {
		g->grpc_status = 0;
		for (size_t i = 0; i < valuelen && i < 9; i++)
			g->grpc_status = value[i] >= '0' && value[i] <= '9'
					     ? g->grpc_status * 10 + (value[i] - '0')
					     : 2; /* UNKNOWN */
	} else if (is(name, namelen, "grpc-message")) {
		snprintf(g->grpc_message, sizeof(g->grpc_message), "%.*s", (int)valuelen, value);
	}
	return 0;
}

/* Envoy's decodeHeaders: the response head. */
static void on_head(struct ism_grpc_check *g, bool end)
{
	if (g->status >= 100 && g->status < 200) {
		/* an interim head: the final one follows */
		g->grpc_status = -1;
		return;
	}
	g->head_done = true;
	if (g->status != 200) {
		if (end && g->grpc_status >= 0)
			complete(g, g->grpc_status);
		else
			verdict(g, ISM_GRPC_FAILED, "HTTP status %d", g->status);
	} else if (!g->grpc_type) {
		verdict(g, ISM_GRPC_FAILED, "not a gRPC response (content-type)");
	} else if (end) {
		if (g->grpc_status >= 0)
			complete(g, g->grpc_status);
		else
			verdict(g, ISM_GRPC_FAILED,
				"gRPC protocol violation: unexpected stream end");
	}
	g->grpc_status = -1;
}

static int on_frame(nghttp2_session *s, const nghttp2_frame *frame, void *arg)
{
	struct ism_grpc_check *g = arg;
	bool end = frame->hd.flags & NGHTTP2_FLAG_END_STREAM;

	(void)s;
	switch (frame->hd.type) {
	case NGHTTP2_HEADERS:
		if (frame->hd.stream_id != 1)
			break;
		if (!g->head_done)
			on_head(g, end);
		else /* Envoy's decodeTrailers: no grpc-status reads as INTERNAL */
			complete(g, g->grpc_status >= 0 ? g->grpc_status : 13);
		break;
	case NGHTTP2_DATA:
		if (frame->hd.stream_id == 1 && end)
			verdict(g, ISM_GRPC_FAILED,
				"gRPC protocol violation: unexpected stream end");
		break;
	case NGHTTP2_RST_STREAM:
		if (frame->hd.stream_id == 1)
			verdict(g, ISM_GRPC_BROKEN, "stream reset by the upstream (error code %u)",
				frame->rst_stream.error_code);
		break;
	case NGHTTP2_GOAWAY:
		/* A graceful GOAWAY lets the check finish, as in Envoy. */
		if (frame->goaway.error_code != NGHTTP2_NO_ERROR)
			verdict(g, ISM_GRPC_BROKEN, "GOAWAY (error code %u)",
				frame->goaway.error_code);
		break;
	default:
		break;
	}
	return 0;
}

static int on_close(nghttp2_session *s, int32_t id, uint32_t error, void *arg)
{
	struct ism_grpc_check *g = arg;

	(void)s;
	if (id == 1)
		verdict(g, ISM_GRPC_BROKEN, "stream closed before the answer (error code %u)",
			error);
	return 0;
}

static ssize_t read_body(nghttp2_session *s, int32_t id, uint8_t *buf, size_t length,
			 uint32_t *flags, nghttp2_data_source *src, void *arg)
{
	struct ism_grpc_check *g = arg;
	size_t n = g->body_len - g->body_sent;

	(void)s;
	(void)id;
	(void)src;
	if (n > length)
		n = length;
	memcpy(buf, g->body + g->body_sent, n);
	g->body_sent += n;
	if (g->body_sent == g->body_len)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

/* The request message: HealthCheckRequest{service} in a gRPC frame. */
static void frame_request(struct ism_grpc_check *g, const char *service)
{
	size_t n = strlen(service), m = 0;
	uint8_t *msg = g->body + 5;

	if (n > ISM_HC_SERVICE_MAX)
		n = ISM_HC_SERVICE_MAX;
	if (n > 0) {
		msg[m++] = 0x0a; /* field 1, length-delimited */
		for (size_t v = n;; v >>= 7) {
			msg[m++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
			if (v <= 0x7f)
				break;
		}
		memcpy(msg + m, service, n);
		m += n;
	}
	g->body[0] = 0;
	g->body[1] = (uint8_t)(m >> 24);
	g->body[2] = (uint8_t)(m >> 16);
	g->body[3] = (uint8_t)(m >> 8);
	g->body[4] = (uint8_t)m;
	g->body_len = 5 + m;
}

#define NV(n, v, vl)                                                                               \
	{                                                                                          \
		(uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vl), NGHTTP2_NV_FLAG_NONE          \
	}

/* The preface, SETTINGS and the request, as nghttp2 writes them. */
/* What the session has to send, appended to g->out: 0, or -1 past OUT_MAX
 * bytes in all, without memory, or on the session's error. */
static int take_output(struct ism_grpc_check *g)
{
	const uint8_t *p;
	ssize_t n;

	while ((n = nghttp2_session_mem_send(g->s, &p)) > 0) {
		uint8_t *grown;

		if (g->out_len + (size_t)n > OUT_MAX ||
		    (grown = realloc(g->out, g->out_len + (size_t)n)) == NULL)
			return -1;
		memcpy(grown + g->out_len, p, (size_t)n);
		g->out = grown;
		g->out_len += (size_t)n;
	}
	return n < 0 ? -1 : 0;
}

static int submit(struct ism_grpc_check *g, const char *authority, bool tls, uint32_t timeout_ms)
{
	static const nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_ENABLE_PUSH, 0}};
	char timeout[ISM_GRPC_TIMEOUT_MAX];
	size_t tl = ism_grpc_timeout_fmt(timeout, timeout_ms);
	const char *scheme = tls ? "https" : "http";
	const nghttp2_nv nva[] = {
	    NV(":method", "POST", 4),
	    NV(":scheme", scheme, strlen(scheme)),
	    NV(":path", PATH, sizeof(PATH) - 1),
	    NV(":authority", authority, strlen(authority)),
	    NV("content-type", "application/grpc", 16),
	    NV("te", "trailers", 8),
	    NV("user-agent", "isthmus-health", 14),
	    NV("grpc-timeout", timeout, tl),
	};
	nghttp2_data_provider prd = {.read_callback = read_body};

	if (nghttp2_submit_settings(g->s, NGHTTP2_FLAG_NONE, iv, 1) != 0 ||
	    nghttp2_submit_request(g->s, NULL, nva, sizeof(nva) / sizeof(nva[0]), &prd, g) != 1)
		return -1;
	return take_output(g);
}

struct ism_grpc_check *ism_grpc_check_new(const char *authority, const char *service, bool tls,
					  uint32_t timeout_ms)
{
	struct ism_grpc_check *g = calloc(1, sizeof(*g));
	nghttp2_session_callbacks *cb = NULL;

	if (g == NULL)
		return NULL;
	g->grpc_status = -1;
	frame_request(g, service ? service : "");
	if (nghttp2_session_callbacks_new(&cb) != 0)
		goto fail;
	nghttp2_session_callbacks_set_on_header_callback(cb, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, on_frame);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, on_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, on_close);
	if (nghttp2_session_client_new(&g->s, cb, g) != 0) {
		g->s = NULL;
		goto fail;
	}
	nghttp2_session_callbacks_del(cb);
	cb = NULL;
	if (submit(g, authority ? authority : "", tls, timeout_ms) < 0)
		goto fail;
	return g;
fail:
	nghttp2_session_callbacks_del(cb);
	ism_grpc_check_free(g);
	return NULL;
}

void ism_grpc_check_request(const struct ism_grpc_check *g, const uint8_t **p, size_t *n)
{
	*p = g->out;
	*n = g->out_len;
}

enum ism_grpc_verdict ism_grpc_check_in(struct ism_grpc_check *g, const uint8_t *p, size_t n,
					char *why, size_t why_len)
{
	ssize_t r;

	if (g->verdict == ISM_GRPC_MORE) {
		if (n == 0) {
			verdict(g, ISM_GRPC_BROKEN, "connection closed without an answer");
		} else {
			r = nghttp2_session_mem_recv(g->s, p, n);
			if (r < 0)
				verdict(g, ISM_GRPC_BROKEN, "HTTP/2: %s", nghttp2_strerror((int)r));
			/* What the session answers (a SETTINGS or PING
			 * acknowledgement, as RFC 9113 requires, a WINDOW_UPDATE,
			 * a GOAWAY for a broken peer) follows the request out;
			 * taking it out lets a GOAWAY end the session here. */
			if (g->verdict == ISM_GRPC_MORE && take_output(g) < 0)
				verdict(g, ISM_GRPC_BROKEN,
					"HTTP/2: more than %u bytes to acknowledge (a flood of "
					"control frames)",
					OUT_MAX);
			if (!nghttp2_session_want_read(g->s))
				verdict(g, ISM_GRPC_BROKEN,
					"HTTP/2: the upstream broke the protocol");
		}
	}
	if (g->verdict != ISM_GRPC_MORE && why_len > 0)
		snprintf(why, why_len, "%s", g->why);
	return g->verdict;
}

void ism_grpc_check_free(struct ism_grpc_check *g)
{
	if (g == NULL)
		return;
	nghttp2_session_del(g->s);
	free(g->out);
	free(g);
}
