/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP/1.1 on a client session (worker/session.c): request heads parsed and
 * request bodies decoded for the stream, responses written in HTTP/1.1,
 * keep-alive and pipelining. One stream at a time; a pipelined request waits
 * in the session's buffer until the stream before it has ended. A first
 * request that is the HTTP/2 preface hands the session to worker/h2.c. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/log.h"
#include "worker/h1.h"
#include "worker/h2.h"
#include "worker/ring.h"
#include "worker/session.h"
#include "worker/sock.h"
#include "worker/stream.h"

static void try_request(struct ism_wctx *w, struct ism_sess *s);

/* ---------- writing responses ---------- */

/* The fields isthmus adds to the final head of an upstream's response:
 * Server, and x-envoy-upstream-service-time (spec.proxyHeaders), in one
 * reservation from the bytes made at compile (ism_table.own_h1), then a Date
 * when the head has none (date). */
static int own_fields(struct ism_wctx *w, struct ism_sess *s, bool date, uint32_t limit)
{
	const struct ism_table *t = w->table;
	uint32_t skip = ism_stream_own_server(w, s->st) ? 0 : t->own_h1_server;
	uint32_t fixed = t->own_h1.len - skip, n = 0;
	char tail[24 + 8 + ISM_HTTP_DATE_LEN];

	if (ism_stream_own_svc_time(w, s->st)) {
		n = ism_fmt_num(tail, ism_stream_service_ms(w, s->st), 10);
		tail[n++] = '\r';
		tail[n++] = '\n';
	} else if (t->debug_headers) {
		/* no stream, or its route decides: the name goes too */
		fixed -= sizeof(ISM_SVC_TIME_FIELD) - 1;
	}
	if (date) {
		memcpy(tail + n, "date: ", 6);
		memcpy(tail + n + 6, ism_w_date(w), ISM_HTTP_DATE_LEN);
		n += 6 + ISM_HTTP_DATE_LEN;
		tail[n++] = '\r';
		tail[n++] = '\n';
	}
	if (fixed + n == 0)
		return 0;
	if (ism_buf_reserve(&s->out, fixed + n, limit) < 0)
		return -ENOMEM;
	memcpy(s->out.p + s->out.len, t->own_h1.p + skip, fixed);
	memcpy(s->out.p + s->out.len + fixed, tail, n);
	s->out.len += fixed + n;
	return 0;
}

/* Which head of the upstream's client_head writes. */
enum head_kind {
	HEAD_FINAL = 0, /* the response's */
	HEAD_UPGRADE,	/* the 101 of an upgrade: isthmus's fields as on a final
			 * head, the caller adds the upgrade's */
};

/* The head the client gets for a response head of the upstream: its
 * end-to-end fields, then (final head) the framing of what is relayed: the
 * upstream's transfer coding for a body chunked again here, the parsed
 * length, or for a response without a body the length it announces (HEAD,
 * 304), never one on a 204 (RFC 9110 8.6); isthmus's Server (the upstream's
 * replaced), service time and Date. */
static int client_head(struct ism_wctx *w, struct ism_sess *s, const struct ism_http_resp *resp,
		       uint8_t mode, enum head_kind kind)
{
	const uint32_t limit = w->table->limits.max_response_header_bytes + 4096;
	const uint32_t queued = s->out.len;
	int64_t cl = resp->framing.content_length;
	const bool framed = kind == HEAD_FINAL;
	bool chunked = framed && s->resp_out == ISM_H1_OUT_CHUNKED;
	char line[] = "HTTP/1.1 000 ";
	int code = resp->status, ret = 0;
	bool date = false;

	for (int i = 11; i >= 9; i--, code /= 10) /* a status is three digits */
		line[i] = (char)('0' + code % 10);
	ret |= ism_buf_append(&s->out, line, sizeof(line) - 1, limit);
	if (resp->reason_len > 0)
		ret |= ism_buf_append(&s->out, resp->reason, (uint32_t)resp->reason_len, limit);
	else /* an HTTP/2 upstream's (it has none): the status's own, as Envoy writes */
		ret |= ism_buf_put_str(&s->out, ism_http_reason(resp->status), limit);
	ret |= ism_buf_append(&s->out, "\r\n", 2, limit);
	for (size_t i = 0; i < resp->n_headers; i++) {
		const struct ism_http_header *h = &resp->headers[i];

		if (ism_stream_field_replaced(w, s->st, h))
			continue;
		if (ism_http_end_to_end(&resp->framing, resp->headers, resp->n_headers, h)) {
			ret |= ism_buf_put_header(&s->out, h, limit);
			date = date || ism_http_header_is_date(h);
		} else if (chunked && ism_http_header_is(h, "transfer-encoding"))
			ret |= ism_buf_put_header(&s->out, h, limit);
	}
	if (framed && mode != ISM_BODY_CHUNKED && mode != ISM_BODY_CLOSE && cl >= 0 &&
	    resp->status != 204)
		ret |= ism_put_num_line(&s->out, "content-length: ", (uint64_t)cl, 10, limit);
	if (chunked && mode == ISM_BODY_CLOSE) /* the upstream said nothing of it */
		ret |= ism_buf_put_str(&s->out, "transfer-encoding: chunked\r\n", limit);
	ret |= own_fields(w, s, !date, limit);
	if (s->st != NULL && s->st->set_cookie)
		ret |= ism_buf_put_field(&s->out, "set-cookie", s->st->set_cookie,
					 strlen(s->st->set_cookie), limit);
	if (framed && !s->keepalive)
		ret |= ism_buf_append(&s->out, "connection: close\r\n", 19, limit);
	else if (framed && s->http10)
		ret |= ism_buf_append(&s->out, "connection: keep-alive\r\n", 24, limit);
	ret |= ism_buf_append(&s->out, "\r\n", 2, limit);
	if (ret)
		return -ENOMEM;
	s->st->meter[ISM_M_DOWN_HEAD_OUT] += s->out.len - queued;
	return 0;
}

#define CONTINUE_HEAD "HTTP/1.1 100 Continue\r\n\r\n"

/* A send of the stream's: now, or once the 100 Continue in flight is out
 * (ism_h1_sent), the stream's bytes after it. */
static void h1_send(struct ism_wctx *w, struct ism_sess *s, const char *p, uint32_t len, int bid)
{
	if (s->cont_flying)
		s->held = (struct ism_span){.p = p, .len = len, .bid = bid};
	else
		ism_sess_send(w, s, p, len, bid);
}

/* 100 Continue at once, as Envoy's connection manager answers Expect:
 * 100-continue itself (the field does not go upstream); not to an HTTP/1.0
 * client, whose expectation is ignored (RFC 9110 10.1.1). Sent on its own:
 * what the stream sends meanwhile waits for it (h1_send). */
static bool h1_cont(struct ism_wctx *w, struct ism_stream *st)
{
	struct ism_sess *s = st->sess;

	if (s->http10 || s->s.send_armed)
		return false;
	s->cont_flying = 1;
	s->held = (struct ism_span){.bid = -1};
	st->meter[ISM_M_DOWN_HEAD_OUT] += sizeof(CONTINUE_HEAD) - 1;
	ism_sess_send(w, s, CONTINUE_HEAD, sizeof(CONTINUE_HEAD) - 1, -1);
	return true;
}

/* Body data as the client gets it, appended to out: as it is, or as a chunk of
 * its own (and the last chunk when done). */
static int body_into(struct ism_sess *s, struct ism_buf *out, const char *p, uint32_t len,
		     bool done)
{
	return ism_buf_put_body(out, p, len, s->resp_out == ISM_H1_OUT_CHUNKED, done);
}

static int h1_head(struct ism_wctx *w, struct ism_stream *st, const struct ism_http_resp *resp,
		   uint8_t mode, const char *body, uint32_t len, bool done)
{
	struct ism_sess *s = st->sess;
	uint32_t queued = s->out.len;

	/* A chunked body is chunked again by isthmus (its extensions and
	 * trailers dropped), and so is one the upstream's close ends, as
	 * Envoy's codec chunks a body without a length: the client's
	 * connection outlives the upstream's. An HTTP/1.0 client cannot read
	 * chunks: it gets the data, then the close. */
	s->resp_out = (mode == ISM_BODY_CHUNKED || mode == ISM_BODY_CLOSE) && !s->http10
			  ? ISM_H1_OUT_CHUNKED
			  : ISM_H1_OUT_RAW;
	/* An upgrade answered with anything but its 101 is refused, and the
	 * connection ends after the answer, as Envoy drains it: what the client
	 * sent after the request was meant for the tunnel, not read as
	 * requests. */
	if (((mode == ISM_BODY_CLOSE || mode == ISM_BODY_CHUNKED) && s->http10) || w->draining ||
	    s->req.mode != ISM_BODY_NONE || st->upgrade)
		s->keepalive = 0;
	if (client_head(w, s, resp, mode, HEAD_FINAL) < 0 ||
	    body_into(s, &s->out, body, len, done) < 0) {
		s->out.len = queued;
		return -ENOMEM;
	}
	st->bytes_out += len;
	h1_send(w, s, s->out.p, s->out.len, -1);
	return 1;
}

static int h1_data(struct ism_wctx *w, struct ism_stream *st, const char *p, uint32_t len, int bid,
		   bool done)
{
	struct ism_sess *s = st->sess;
	int ret;

	st->bytes_out += len;
	/* A ring buffer goes out as it is; the memory of others (an HTTP/2
	 * upstream's stream, which may go while the send is in flight) is copied. */
	if (s->resp_out == ISM_H1_OUT_RAW && len && bid >= 0) {
		h1_send(w, s, p, len, bid);
		return 1;
	}
	/* Chunked again: the data is copied with its framing into the socket's
	 * private buffer, and the ring buffer goes back at once. */
	s->s.tx.len = 0;
	ret = body_into(s, &s->s.tx, p, len, done);
	if (bid >= 0)
		ism_w_buf_recycle(w, bid);
	if (ret < 0)
		return ret;
	if (s->s.tx.len == 0)
		return 0;
	h1_send(w, s, s->s.tx.p, s->s.tx.len, -1);
	return 1;
}

static int h1_local(struct ism_wctx *w, struct ism_stream *st, const struct ism_local *lr)
{
	struct ism_local grpc;
	struct ism_buf gb = {0};
	struct ism_http_header *g = NULL;
	struct ism_sess *s = st->sess;
	bool body = ism_http_resp_has_body(lr->status, "GET", 3);
	uint32_t limit = 4096 + lr->body_len;
	int ret = 0;

	/* A request whose body was not read leaves the stream unparseable; an
	 * upgrade refused ends the connection (h1_head). */
	if (lr->close || w->draining || s->req.mode != ISM_BODY_NONE || st->upgrade)
		s->close_after = 1;
	for (size_t i = 0; i < lr->n_hdrs; i++)
		limit += (uint32_t)(lr->hdrs[i].name_len + lr->hdrs[i].value_len + 4);
	s->out.len = 0;
	if (st->grpc) {
		/* A gRPC(-Web) client gets a gRPC error, trailers-only, as from
		 * Envoy: 200 with its status in the head, no body. */
		int n = ism_stream_grpc_answer(st, lr, &gb, &g);

		if (n < 0) {
			ret = -ENOMEM;
			goto out;
		}
		limit += gb.len + 4 * (uint32_t)n;
		ret |= ism_buf_put_str(&s->out, "HTTP/1.1 200 OK\r\n", limit);
		grpc = (struct ism_local){
		    .status = 200, .why = lr->why, .hdrs = g, .n_hdrs = (size_t)n};
		lr = &grpc;
		body = true;
	} else {
		ret |= ism_buf_printf(&s->out, limit, "HTTP/1.1 %d %s\r\n", lr->status,
				      ism_http_reason(lr->status));
	}
	for (size_t i = 0; i < lr->n_hdrs; i++)
		ret |= ism_buf_put_header(&s->out, &lr->hdrs[i], limit);
	if (ism_stream_own_server(w, st))
		ret |= ism_buf_put_field(&s->out, "server", w->table->server.p,
					 w->table->server.len, limit);
	if (!ism_http_has_field(lr->hdrs, lr->n_hdrs, "date"))
		ret |= ism_buf_put_field(&s->out, "date", ism_w_date(w), ISM_HTTP_DATE_LEN, limit);
	if (body)
		ret |= ism_put_num_line(&s->out, "content-length: ", lr->body_len, 10, limit);
	if (s->close_after)
		ret |= ism_buf_append(&s->out, "connection: close\r\n", 19, limit);
	ret |= ism_buf_append(&s->out, "\r\n", 2, limit);
	st->meter[ISM_M_DOWN_HEAD_OUT] += s->out.len;
	if (body && !st->is_head) {
		ret |= ism_buf_append(&s->out, lr->body, lr->body_len, limit);
		st->bytes_out += lr->body_len;
	}
out:
	ism_buf_free(&gb);
	free(g);
	if (ret)
		return -ENOMEM;
	ism_debug("%s %d %s", s->peer, lr->status, lr->why);
	h1_send(w, s, s->out.p, s->out.len, -1);
	return 0;
}

/* The upstream's 101: its head with the Upgrade field and the Connection
 * option that go with it (hop-by-hop, so client_head leaves them out), then
 * the bytes the upstream sent after it. */
static int h1_upgrade(struct ism_wctx *w, struct ism_stream *st, const struct ism_http_resp *resp,
		      const char *p, uint32_t len)
{
	struct ism_sess *s = st->sess;
	const uint32_t limit = w->table->limits.max_response_header_bytes + 4096 + len;
	const uint64_t head_out = st->meter[ISM_M_DOWN_HEAD_OUT];
	uint32_t queued = s->out.len;
	int ret = 0;

	if (client_head(w, s, resp, ISM_BODY_NONE, HEAD_UPGRADE) < 0) {
		s->out.len = queued;
		return -ENOMEM;
	}
	s->out.len -= 2; /* the head's end: the upgrade's fields go before it */
	for (size_t i = 0; i < resp->n_headers; i++)
		if (ism_http_header_is(&resp->headers[i], "upgrade"))
			ret |= ism_buf_put_header(&s->out, &resp->headers[i], limit);
	ret |= ism_buf_put_str(&s->out, "connection: upgrade\r\n\r\n", limit);
	st->meter[ISM_M_DOWN_HEAD_OUT] = head_out + (s->out.len - queued);
	ret |= ism_buf_append(&s->out, p, len, limit);
	if (ret) {
		s->out.len = queued;
		return -ENOMEM;
	}
	st->bytes_out += len;
	h1_send(w, s, s->out.p, s->out.len, -1);
	return 0;
}

static void h1_want_body(struct ism_wctx *w, struct ism_stream *st)
{
	/* Received bytes are the ring's until given, nothing to give back. */
	if (!st->req_done)
		ism_sock_recv(w, &st->sess->s);
}

static void h1_abort(struct ism_wctx *w, struct ism_sess *s, void *sp)
{
	(void)sp;
	s->st = NULL; /* it has ended */
	ism_sess_close(w, s);
}

static void h1_stream_done(struct ism_wctx *w, struct ism_sess *s, void *sp)
{
	(void)sp;
	bool req_done = s->req.mode == ISM_BODY_NONE;

	s->st = NULL;
	if (!s->keepalive || !req_done || s->close_after) {
		/* The client may still be sending: the rest of the body (one
		 * refused half-way, a chunked body over its limit, counts as
		 * read: close_after), or the next request (some of which s->in
		 * holds). */
		if (!req_done || s->in.len > 0 || s->close_after)
			ism_sess_linger(w, s);
		else
			ism_sess_close(w, s);
		return;
	}
	/* Idle keep-alive connections hold no buffer: the next request's bytes
	 * land in a ring buffer first. */
	ism_buf_free(&s->out);
	ism_buf_free(&s->s.tx);
	s->state = ISM_SESS_IDLE;
	ism_sock_multi(&s->s); /* the next request's head */
	if (s->in.len) {
		try_request(w, s);
		return;
	}
	ism_buf_trim(&s->in);
	ism_sess_set_deadline(
	    w, s, ISM_DL_IDLE,
	    w->draining && w->table->timeouts.idle_ms > 1000 ? 1000 : w->table->timeouts.idle_ms);
	ism_sock_recv(w, &s->s);
}

const struct ism_sess_ops ism_h1_ops = {
    .cont = h1_cont,
    .head = h1_head,
    .data = h1_data,
    .trailers = ism_sess_drop_trailers, /* as a chunked body's are (Envoy's default) */
    .local = h1_local,
    .upgrade = h1_upgrade,
    .want_body = h1_want_body,
    .stream_done = h1_stream_done,
    .abort = h1_abort,
};

/* ---------- reading requests ---------- */

void ism_h1_begin(struct ism_wctx *w, struct ism_sess *s)
{
	try_request(w, s);
}

/* The body framing of request req, for the session to decode. */
static void request_body(struct ism_sess *s, const struct ism_http_req *req)
{
	s->req = (struct ism_body){.mode = ISM_BODY_NONE};
	if (req->framing.chunked) {
		s->req.mode = ISM_BODY_CHUNKED;
		ism_chunked_init(&s->req.ch);
	} else if (req->framing.content_length > 0) {
		s->req.mode = ISM_BODY_CL;
		s->req.remaining = (uint64_t)req->framing.content_length;
	}
}

/* Whether req asks for an upgrade isthmus carries (RFC 9110 7.8): an HTTP/1.1
 * request without a body whose Connection field names its Upgrade field, for
 * any protocol but h2c (HTTP/2 comes by prior knowledge or ALPN here, as with
 * Envoy, whose codec drops an h2c upgrade: the request goes on as HTTP/1.1). */
static bool upgrade_wanted(const struct ism_sess *s, const struct ism_http_req *req)
{
	if (!req->framing.upgrade || req->minor_version != 1 || s->req.mode != ISM_BODY_NONE ||
	    req->framing.content_length > 0 || req->framing.chunked ||
	    !ism_http_named_in_connection(req->headers, req->n_headers, "upgrade", 7))
		return false;
	for (size_t i = 0; i < req->n_headers; i++) {
		const struct ism_http_header *h = &req->headers[i];

		if (ism_http_header_is(h, "upgrade"))
			return !(h->value_len >= 3 && strncasecmp(h->value, "h2c", 3) == 0 &&
				 (h->value_len == 3 || h->value[3] == ',' || h->value[3] == ' '));
	}
	return false;
}

/* What refuse_since knows of a request of which nothing was read. */
static const struct ism_http_req no_request;

/* A request the stream cannot be given (a parse error): its stream answers,
 * its head counted as head bytes of the request (what was read of it), the
 * bytes read as wire bytes; method: what was read of it (its method). */
static void refuse_since(struct ism_wctx *w, struct ism_sess *s, struct ism_http_req *req,
			 const struct ism_http_req *method, uint64_t head, int status,
			 const char *why, uint64_t t0)
{
	struct ism_stream *st = ism_stream_new(w, s);

	if (st == NULL) {
		ism_sess_close(w, s);
		return;
	}
	/* The answer to a HEAD has no body (RFC 9110 9.3.2): the method is
	 * known once the request line was read, whatever is at fault after. */
	st->is_head = ism_http_is_head(method);
	st->t0_ms = t0;
	st->meter[ISM_M_DOWN_HEAD_IN] = head;
	st->meter[ISM_M_DOWN_WIRE_IN] = s->in.len > head ? s->in.len : head;
	s->st = st;
	s->state = ISM_SESS_STREAM;
	s->close_after = 1;
	ism_stream_refuse(w, st, req, status, why);
}

static void refuse(struct ism_wctx *w, struct ism_sess *s, struct ism_http_req *req, uint64_t head,
		   int status, const char *why)
{
	refuse_since(w, s, req, req != NULL ? req : &no_request, head, status, why, w->now);
}

/* Whether the connection's first bytes are the HTTP/2 preface, or its
 * beginning, which then takes the connection over from HTTP/1.1: prior
 * knowledge on a plaintext listener that takes it (h2c), or over TLS (after
 * ALPN h2; Envoy's codec AUTO, as Istio's gateway). */
static bool h2_preface(struct ism_wctx *w, struct ism_sess *s)
{
	if (s->served || s->in.len == 0 ||
	    !(w->table->listeners[s->listener].h2c || ism_sess_tls(s)) ||
	    memcmp(s->in.p, ISM_H2_PREFACE,
		   s->in.len < ISM_H2_PREFACE_LEN ? s->in.len : ISM_H2_PREFACE_LEN) != 0)
		return false;
	if (s->in.len < ISM_H2_PREFACE_LEN)
		ism_sock_recv(w, &s->s);
	else if (ism_h2_start(w, s) < 0)
		ism_sess_close(w, s);
	return true;
}

/* The request is whole while its stream runs: the client is read on, so
 * that its close (a reset, or a FIN: no half close, as Envoy's) ends the
 * exchange at once (DC), not when the response is next written. One
 * receive's worth of what it pipelines meanwhile waits in s->in; the rest is
 * not read until the response ends. */
static void watch_client(struct ism_wctx *w, struct ism_sess *s)
{
	if (s->state == ISM_SESS_STREAM && s->req.mode == ISM_BODY_NONE && s->in.len == 0 &&
	    !s->close_after)
		ism_sock_recv(w, &s->s);
}

/* Parses what the client sent; when a head is complete, starts its stream. */
static void try_request(struct ism_wctx *w, struct ism_sess *s)
{
	const struct ism_table *t = w->table;
	struct ism_http_limits lim = {
	    .max_head_bytes = t->limits.max_request_header_bytes,
	    .max_headers = t->limits.max_request_headers < ISM_MAX_HDRS
			       ? t->limits.max_request_headers
			       : ISM_MAX_HDRS,
	    .max_uri_bytes = t->limits.max_uri_bytes,
	};
	struct ism_http_req req = {.headers = w->hdrs};
	struct ism_stream *st;
	size_t data_len = 0;
	ssize_t n, body;
	bool done = true, line;

	if (s->listener >= t->n_listeners) {
		s->req = (struct ism_body){.mode = ISM_BODY_NONE};
		refuse(w, s, NULL, s->in.len, 503, "listener not configured");
		return;
	}
	if (h2_preface(w, s))
		return;
	/* A head ends at a line end: bytes with none, the request line whole
	 * before them, leave it unfinished (unless past its bound), and a head
	 * trickled in is not parsed again from its start at each receive (a
	 * cost that grew with the square of its size). */
	line = s->head_seen > 0;
	if (line && s->head_seen < s->in.len && s->in.len <= lim.max_head_bytes &&
	    memchr(s->in.p + s->head_seen, '\n', s->in.len - s->head_seen) == NULL)
		n = ISM_HTTP_INCOMPLETE;
	else
		n = ism_http_parse_request(s->in.p, s->in.len, &lim, &req);
	s->head_seen = 0;
	if (n == ISM_HTTP_INCOMPLETE) {
		if (line || memchr(s->in.p, '\n', s->in.len) != NULL)
			s->head_seen = s->in.len;
		if (s->state == ISM_SESS_IDLE) {
			s->state = ISM_SESS_HEAD;
			ism_sess_set_deadline(w, s, ISM_DL_HEADER, t->timeouts.request_header_ms);
		}
		ism_sock_recv(w, &s->s);
		return;
	}
	s->req = (struct ism_body){.mode = ISM_BODY_NONE};
	if (n < 0) {
		/* Not logged as a request, but a HEAD's answer has no body. */
		refuse_since(w, s, NULL, &req, s->in.len, ism_http_error_status(n),
			     ism_http_error_why(n), w->now);
		return;
	}
	s->http10 = req.minor_version == 0;
	s->keepalive = s->http10 ? req.framing.conn == ISM_HTTP_CONN_KEEPALIVE
				 : req.framing.conn != ISM_HTTP_CONN_CLOSE;
	s->close_after = 0;
	request_body(s, &req);
	if (s->req.mode == ISM_BODY_CL && t->limits.max_request_body_bytes &&
	    s->req.remaining > t->limits.max_request_body_bytes) {
		refuse(w, s, &req, (uint64_t)n, 413, ISM_WHY_BODY_TOO_LARGE);
		return;
	}
	if (req.method_len == 7 && memcmp(req.method, "CONNECT", 7) == 0) {
		refuse(w, s, &req, (uint64_t)n, 501, "CONNECT is not supported");
		return;
	}
	/* Body bytes that came with the head: decoded in place, they go with
	 * the head to the upstream. */
	body = ism_body_take(&s->req, s->in.p + n, s->in.len - (size_t)n, &data_len, &done);
	if (body < 0) {
		refuse(w, s, &req, (uint64_t)n, 400, ISM_WHY_BAD_CHUNK);
		return;
	}
	/* The body's bytes, not a chunked body's framing (RFC 9112 7.1). */
	if (t->limits.max_request_body_bytes &&
	    (uint64_t)data_len > t->limits.max_request_body_bytes) {
		refuse(w, s, &req, (uint64_t)n, 413, ISM_WHY_BODY_TOO_LARGE);
		return;
	}
	if (done)
		s->req.mode = ISM_BODY_NONE;
	else /* the body streams through: a multishot would read it ahead */
		ism_sock_single(w, &s->s);
	st = ism_stream_new(w, s);
	if (st == NULL) {
		ism_sess_close(w, s);
		return;
	}
	s->st = st;
	s->state = ISM_SESS_STREAM;
	s->served = 1;
	ism_sess_set_deadline(w, s, ISM_DL_NONE, 0);
	st->req_seen = (uint64_t)body;
	st->bytes_in = (uint64_t)data_len;
	st->meter[ISM_M_DOWN_HEAD_IN] = (uint64_t)n;
	st->meter[ISM_M_DOWN_WIRE_IN] = (uint64_t)n + (uint64_t)body;
	st->upgrade = upgrade_wanted(s, &req);
	ism_stream_request(w, st, &req, s->in.p + n, (uint32_t)data_len, done);
	/* The head and its body bytes are consumed, answered or sent on. */
	if (s->state != ISM_SESS_FREE && s->state != ISM_SESS_CLOSING) {
		ism_buf_consume(&s->in, (uint32_t)n + (uint32_t)body);
		watch_client(w, s);
	}
}

/* Request body bytes read after the head (ring buffer bid). */
static void body_read(struct ism_wctx *w, struct ism_sess *s, char *data, uint32_t res, int bid)
{
	struct ism_stream *st = s->st;
	size_t data_len = 0;
	bool done = false;
	ssize_t n = ism_body_take(&s->req, data, res, &data_len, &done);

	if (n < 0) {
		ism_w_buf_recycle(w, bid);
		s->req.mode = ISM_BODY_NONE;
		ism_stream_refuse(w, st, NULL, 400, ISM_WHY_BAD_CHUNK);
		return;
	}
	/* Bytes after the body: the next request of a pipeline. */
	if ((uint32_t)n < res &&
	    ism_buf_append(&s->in, data + n, res - (uint32_t)n,
			   w->table->limits.max_request_header_bytes + ISM_BUF_SIZE) < 0)
		s->keepalive = 0;
	st->req_seen += (uint64_t)n;
	st->meter[ISM_M_DOWN_WIRE_IN] += (uint64_t)n;
	st->bytes_in += (uint64_t)data_len;
	if (w->table->limits.max_request_body_bytes &&
	    st->bytes_in > w->table->limits.max_request_body_bytes) {
		/* A chunked body has no length up front: its bytes are counted
		 * as they pass (its framing is not body). */
		ism_w_buf_recycle(w, bid);
		s->req.mode = ISM_BODY_NONE;
		s->close_after = 1;
		ism_stream_refuse(w, st, NULL, 413, ISM_WHY_BODY_TOO_LARGE);
		return;
	}
	if (done)
		s->req.mode = ISM_BODY_NONE;
	ism_stream_req_data(w, st, data, (uint32_t)data_len, bid, done);
	if (done)
		watch_client(w, s);
}

void ism_h1_recv(struct ism_wctx *w, struct ism_sess *s, char *data, uint32_t res, int bid)
{
	const uint32_t limit = w->table->limits.max_request_header_bytes + ISM_BUF_SIZE;

	switch ((enum ism_sess_state)s->state) {
	case ISM_SESS_IDLE:
	case ISM_SESS_HEAD: {
		int ret = ism_buf_append(&s->in, data, res, limit);

		ism_w_buf_recycle(w, bid);
		if (ret < 0) {
			refuse(w, s, NULL, s->in.len + res, 431, "request head too large");
			return;
		}
		try_request(w, s);
		return;
	}
	case ISM_SESS_STREAM:
		if (s->req.mode != ISM_BODY_NONE) {
			body_read(w, s, data, res, bid);
			return;
		}
		/* Bytes while a response is in progress and the request is
		 * complete: a pipelined request; kept for later. */
		if (ism_buf_append(&s->in, data, res, limit) < 0)
			s->keepalive = 0;
		ism_w_buf_recycle(w, bid);
		watch_client(w, s);
		return;
	case ISM_SESS_H2:
	case ISM_SESS_L4:
	case ISM_SESS_TUNNEL:
	case ISM_SESS_PREAMBLE:
	case ISM_SESS_LINGER: /* session.c drops its bytes */
	case ISM_SESS_CLOSING:
	case ISM_SESS_FREE:
		break;
	}
	ISM_BUG_ON(1);
}

/* ---------- sends, deadlines, drain ---------- */

void ism_h1_sent(struct ism_wctx *w, struct ism_sess *s, int res)
{
	if (s->cont_flying) {
		/* The 100 Continue is out: what the stream sent meanwhile goes
		 * now; until then (and after) its own deadlines run. */
		struct ism_span held = s->held;

		s->cont_flying = 0;
		s->held = (struct ism_span){.bid = -1};
		if (s->st == NULL) { /* it ended meanwhile */
			if (held.len > 0 && held.bid >= 0)
				ism_w_buf_recycle(w, held.bid);
			ism_sess_close(w, s);
			return;
		}
		s->st->meter[ISM_M_DOWN_WIRE_OUT] += (uint64_t)res;
		if (held.len > 0)
			ism_sess_send(w, s, held.p, held.len, held.bid);
		return;
	}
	s->out.len = 0;
	if (s->st == NULL) {
		ism_sess_close(w, s);
		return;
	}
	s->st->meter[ISM_M_DOWN_WIRE_OUT] += (uint64_t)res;
	ism_stream_resp_sent(w, s->st);
}

void ism_h1_expire(struct ism_wctx *w, struct ism_sess *s)
{
	switch ((enum ism_sess_deadline)s->deadline_kind) {
	case ISM_DL_HEADER:
		/* Still in the PROXY header or the TLS handshake, or nothing sent:
		 * there is no HTTP to answer in. */
		if ((s->in.len == 0 && s->state == ISM_SESS_IDLE) ||
		    s->state == ISM_SESS_PREAMBLE || (s->s.x.ssl != NULL && !s->s.x.established)) {
			ism_sess_close(w, s);
			return;
		}
		if (s->state == ISM_SESS_HEAD) {
			/* As Envoy's stream, the exchange began with the head's
			 * first bytes, when the timer started: its line starts
			 * there and its duration is the wait. */
			refuse_since(w, s, NULL, &no_request, s->in.len, 408, ISM_WHY_HEAD_TIMEOUT,
				     s->deadline - w->table->timeouts.request_header_ms);
			return;
		}
		ism_sess_close(w, s);
		return;
	case ISM_DL_SEND:
		/* A client that takes no byte of its response for the idle
		 * time: a timeout (Envoy's stream idle timeout, SI), not the
		 * client's close. */
		if (s->st != NULL && s->st->flags == NULL)
			s->st->flags = "SI";
		ism_sess_close(w, s);
		return;
	case ISM_DL_LINGER:
		ism_sess_linger_expire(w, s);
		return;
	case ISM_DL_IDLE:
	case ISM_DL_NONE:
		ism_sess_close(w, s);
		return;
	}
	ISM_BUG_ON(1);
}

void ism_h1_drain(struct ism_wctx *w, struct ism_sess *s)
{
	/* An idle connection is closed once it has stayed idle for a moment:
	 * closing it at once would race with a request the client is sending
	 * (which would see a reset). A request that arrives is answered with
	 * "connection: close"; a busy connection ends after its response. */
	if (s->state == ISM_SESS_IDLE && s->in.len == 0)
		ism_sess_set_deadline(w, s, ISM_DL_IDLE,
				      w->table->timeouts.idle_ms < 1000 ? w->table->timeouts.idle_ms
									: 1000);
	else if (s->state == ISM_SESS_STREAM && s->st != NULL && !s->st->resp_head_done)
		s->keepalive = 0;
}
