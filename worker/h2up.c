/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP/2 towards upstreams: the request (built as HTTP/1.1 by ism_up_request,
 * so both protocols forward the same fields) becomes a HEADERS frame, its body
 * DATA frames within the upstream's windows; the response's HEADERS, DATA and
 * trailers go to the stream, and its bytes are given back to the upstream's
 * windows only once the client took them. */
#include "worker/h2up.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/log.h"
#include "worker/h2io.h"
#include "worker/ring.h"
#include "worker/session.h"
#include "worker/stream.h"
#include "worker/tls.h"

/* Streams on a connection when neither the DestinationRule nor the upstream
 * says less (Envoy's default is unbounded; the upstream's SETTINGS cap it). */
#define H2UP_STREAMS_DEFAULT 1000u

enum ism_h2us_state {
	ISM_H2US_QUEUED = 0, /* waiting for its connection to be ready */
	ISM_H2US_OPEN,	     /* the request is submitted; the response head is awaited */
	ISM_H2US_RESPONSE,   /* the response head came; its body and trailers follow */
	/* The response was cut short after its head: the stream takes what
	 * came of it, then hears of the cut (cut()). */
	ISM_H2US_RESET,	 /* by a reset: the upstream's, or nghttp2's for DATA that
			    contradict the content-length (RFC 9113 8.1.1) */
	ISM_H2US_CLOSED, /* by the close of its connection */
};

/* One stream of an HTTP/2 upstream connection, owned by its isthmus stream. */
struct ism_h2us {
	int32_t id;	   /* 0 until submitted */
	uint8_t state;	   /* enum ism_h2us_state */
	uint8_t notify;	   /* the stream waits to hear that its request bytes are out */
	uint8_t ng_closed; /* nghttp2 closed it */
	uint8_t pending;   /* response bytes or its end came in this pass: on c->pend */
	uint8_t malformed; /* nghttp2 found its response malformed, and resets it */
	uint32_t n_hdr;
	uint32_t hdr_bytes;
	uint32_t interim; /* the interim (1xx) heads' bytes so far */
	uint64_t notify_batch;
	struct ism_stream *st;
	struct ism_h2c *c;    /* NULL once its connection went */
	struct ism_buf head;  /* the request as built (head, and body when whole), for a replay */
	struct ism_h2body rq; /* request body for DATA frames */
	struct ism_h2in resp; /* response body for the stream */
	struct ism_buf hdr;   /* a header block being received: name NUL value NUL ... */
	struct ism_h2us *next;
	struct ism_h2us *prev;
};

/* The HTTP/2 state of an upstream connection. */
struct ism_h2c {
	struct ism_h2io io;
	struct ism_wctx *w;
	struct ism_upconn *u;
	uint8_t goaway; /* no new streams (GOAWAY came or went, drain, identifiers spent) */
	uint32_t n_streams;
	/* http2KeepAlive of the cluster that last took it (a reload's reaches
	 * the connections it finds pooled) */
	uint32_t ping_interval; /* ms; 0: no PINGs */
	uint32_t ping_timeout;
	uint64_t last_rx;	/* when bytes last came */
	uint64_t ping_deadline; /* a PING awaits its ACK until then; 0: none */
	struct ism_h2us *streams;
	/* Streams let go of whose RST_STREAM nghttp2 has not sent yet: it may
	 * hold a DATA frame of their body (framed without a copy, sent when the
	 * connection has room), so they live on, unlinked, until it closes them
	 * (on_stream_close), linked by next. */
	struct ism_h2us *dying;
	/* The next stream of a walk over streams that calls out to them (which
	 * may unlink any stream: unlink_stream moves it on past one it unlinks) */
	struct ism_h2us *cursor;
	/* Streams given response bytes (or their end) in this receive pass:
	 * delivered once it is over, so that a response's DATA and its end (the
	 * trailers) reach the stream together (struct ism_h2us *; NULL: freed) */
	uint64_t *pend;
	uint32_t n_pend, cap_pend;
};

static nghttp2_session_callbacks *up_cbs;
static nghttp2_option *up_opt;

static void up_flush(struct ism_wctx *w, struct ism_h2c *c);
static void kick(struct ism_wctx *w, struct ism_h2c *c);

/* ---------- streams ---------- */

static void link_stream(struct ism_h2c *c, struct ism_h2us *x)
{
	x->c = c;
	x->prev = NULL;
	x->next = c->streams;
	if (c->streams)
		c->streams->prev = x;
	c->streams = x;
	c->n_streams++;
}

static void unlink_stream(struct ism_h2us *x)
{
	struct ism_h2c *c = x->c;

	if (c == NULL)
		return;
	for (uint32_t i = 0; x->pending && i < c->n_pend; i++)
		if (c->pend[i] == (uintptr_t)x)
			c->pend[i] = 0;
	if (c->cursor == x)
		c->cursor = x->next;
	if (x->prev)
		x->prev->next = x->next;
	else
		c->streams = x->next;
	if (x->next)
		x->next->prev = x->prev;
	if (x->id > 0 && !x->ng_closed)
		nghttp2_session_set_stream_user_data(c->io.ng, x->id, NULL);
	c->n_streams--;
	x->c = NULL;
	c->w->wake_waiters = 1;
	/* An endpoint the table no longer lists: closed at the next tick. */
	if (c->n_streams == 0)
		c->u->idle_deadline =
		    c->w->now + (ism_up_ep_listed(c->w, c->u->ep_id) ? c->u->idle_ms : 0);
}

static void free_stream(struct ism_h2us *x)
{
	unlink_stream(x);
	ism_buf_free(&x->head);
	ism_buf_free(&x->rq.b);
	ism_h2in_free(&x->resp);
	ism_buf_free(&x->hdr);
	free(x);
}

static struct ism_h2us *us_of(struct ism_h2c *c, int32_t id)
{
	return nghttp2_session_get_stream_user_data(c->io.ng, id);
}

/* The room a connection has for another stream of cluster cl: below its
 * DestinationRule's cap as it is now (a reload's too) and the peer's. */
static bool has_room(const struct ism_h2c *c, const struct ism_cluster *cl)
{
	uint32_t peer =
	    nghttp2_session_get_remote_settings(c->io.ng, NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS);
	uint32_t mine = cl->h2_max_streams ? cl->h2_max_streams : H2UP_STREAMS_DEFAULT;
	uint32_t cap = mine < peer ? mine : peer;

	return !c->goaway && c->n_streams < cap && c->io.unread < c->io.early_max &&
	       c->u->state != ISM_UP_CLOSING && !ism_up_overdue(c->w, c->u) &&
	       !ism_up_expired(c->w->now, c->u) && ism_up_same_ep(c->w, c->u);
}

bool ism_h2up_wanted(const struct ism_stream *st, const struct ism_cluster *cl)
{
	/* Tunnels ride an HTTP/1.1 upgrade or a bare connection. */
	if (st->upgrade || st->l4)
		return false;
	switch ((enum ism_upstream_proto)cl->proto) {
	case ISM_UP_HTTP2:
		return true;
	case ISM_UP_AS_CLIENT:
		return st->sess != NULL && st->sess->h2 != NULL;
	case ISM_UP_HTTP1:
		break;
	}
	return false;
}

static ssize_t on_read_body(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len,
			    uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	struct ism_h2us *x = src->ptr;
	ssize_t n = ism_h2body_read(&x->rq, len, flags);

	(void)ng;
	(void)buf;
	/* The client's trailers (gRPC's, say) once the body is all framed. */
	if ((*flags & NGHTTP2_DATA_FLAG_NO_END_STREAM) && x->st != NULL)
		ism_h2_submit_trailers(&((struct ism_h2c *)ud)->io, id, &x->st->req_trl);
	return n;
}

static int on_send_data(nghttp2_session *ng, nghttp2_frame *f, const uint8_t *framehd, size_t len,
			nghttp2_data_source *src, void *ud)
{
	struct ism_h2us *x = src->ptr;

	(void)ng;
	return ism_h2body_send(&((struct ism_h2c *)ud)->io, &x->rq, f, framehd, len);
}

/* Submits x's request: its head as HEADERS, its body as DATA. 0, or the
 * failure the stream is to be told. */
static int submit_request(struct ism_wctx *w, struct ism_h2c *c, struct ism_h2us *x)
{
	struct ism_http_limits lim = {.max_head_bytes = x->head.len,
				      .max_headers = ISM_MAX_HDRS,
				      .max_uri_bytes = x->head.len};
	struct ism_http_req req = {.headers = w->uhdrs};
	nghttp2_data_provider dp = {.source.ptr = x};
	ssize_t n = ism_http_parse_request(x->head.p, x->head.len, &lim, &req);
	struct ism_h2nv nv;
	bool te = false;
	int32_t id;

	if (n < 0 || ism_h2nv_init(&nv, req.n_headers + 6) < 0)
		return ISM_FAIL_RESET;
	ISM_H2NV_ADD_LIT(&nv, ":method", req.method, req.method_len);
	ISM_H2NV_ADD_LIT(&nv, ":scheme", c->u->s.x.ssl ? "https" : "http", c->u->s.x.ssl ? 5 : 4);
	ISM_H2NV_ADD_LIT(&nv, ":authority", req.host ? req.host : "", req.host ? req.host_len : 0);
	ISM_H2NV_ADD_LIT(&nv, ":path", req.target, req.target_len);
	for (size_t i = 0; i < req.n_headers; i++) {
		const struct ism_http_header *h = &req.headers[i];

		/* HTTP/2 has no connection-specific fields (RFC 9113 8.2.2) but
		 * "te: trailers", which the head has when the client sent it. */
		te |= ism_http_te_trailers(h);
		if (ism_http_header_is(h, "host") || ism_http_header_is(h, "transfer-encoding") ||
		    (ism_http_is_hop_by_hop(h->name, h->name_len) && !ism_http_te_trailers(h)))
			continue;
		ism_h2nv_add(&nv, h->name, h->name_len, h->value, h->value_len);
	}
	if (x->st->grpc && !te)
		ISM_H2NV_ADD_LIT(&nv, "te", "trailers", 8);
	/* Body bytes that came with the head go first. */
	x->rq.b.len = x->rq.off = 0;
	x->rq.trailers = x->st->req_done && x->st->req_trl.len > 0;
	if (ism_h2body_add(&c->io, 0, &x->rq, x->head.p + n, x->head.len - (uint32_t)n,
			   x->st->req_done) < 0) {
		ism_h2nv_free(&nv);
		return ISM_FAIL_RESET;
	}
	dp.read_callback = on_read_body;
	/* A body, or trailers to follow (a retry's, say, of a request that has
	 * no body): DATA frames end it; else the HEADERS do. */
	id = nghttp2_submit_request(c->io.ng, NULL, nv.nv, nv.n,
				    x->rq.b.len || !x->rq.end || x->rq.trailers ? &dp : NULL, x);
	ism_h2nv_free(&nv);
	/* The connection's last stream identifier went (or none was left): it
	 * takes no new stream, and closes once its streams are done. */
	if (!ism_h2io_ids_left(c->io.ng))
		c->goaway = 1;
	if (id < 0)
		return id == NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE ? ISM_FAIL_REFUSED
								 : ISM_FAIL_RESET;
	x->id = id;
	x->state = ISM_H2US_OPEN;
	x->notify = 1;
	return 0;
}

/* ---------- nghttp2's callbacks ---------- */

static ssize_t on_send(nghttp2_session *ng, const uint8_t *data, size_t len, int flags, void *ud)
{
	struct ism_h2c *c = ud;

	(void)ng;
	(void)flags;
	return ism_h2io_gather(&c->io, data, len);
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
	struct ism_h2c *c = ud;
	struct ism_h2us *x = us_of(c, f->hd.stream_id);

	(void)ng;
	(void)flags;
	if (x == NULL || f->hd.type != NGHTTP2_HEADERS)
		return 0;
	x->hdr_bytes += (uint32_t)(namelen + valuelen + 32);
	/* Over the limits (or a NUL nghttp2 lets through): the stream is reset
	 * as malformed, the upstream's protocol error (502 UPE before a head,
	 * as an HTTP/1.1 upstream's too large head), not its own reset. */
	if (x->hdr_bytes > c->w->table->limits.max_response_header_bytes ||
	    ++x->n_hdr >= ISM_MAX_HDRS || memchr(value, '\0', valuelen) != NULL) {
		x->malformed = 1;
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	}
	return ism_buf_put_pair(&x->hdr, name, namelen, value, valuelen) < 0
		   ? NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE
		   : 0;
}

/* The header block x gathered, as fields (pseudo-headers apart); *status the
 * :status, *cl the content-length (-1: none). */
static size_t fields_of(struct ism_wctx *w, struct ism_h2us *x, int *status, int64_t *cl)
{
	const char *p = x->hdr.p, *end = x->hdr.p + x->hdr.len;
	size_t n = 0;

	*status = 0;
	*cl = -1;
	while (p < end) {
		size_t nl = strlen(p), vl = strlen(p + nl + 1);
		const char *v = p + nl + 1;

		if (nl == 7 && memcmp(p, ":status", 7) == 0)
			*status = atoi(v);
		else if (p[0] != ':' && n < ISM_MAX_HDRS - 1)
			w->uhdrs[n++] = (struct ism_http_header){p, nl, v, vl};
		if (nl == 14 && memcmp(p, "content-length", 14) == 0)
			*cl = strtoll(v, NULL, 10);
		p = v + vl + 1;
	}
	return n;
}

/* The response head: to the stream (interim ones are dropped). */
static void response_head(struct ism_wctx *w, struct ism_h2us *x, bool end)
{
	struct ism_stream *st = x->st;
	struct ism_http_resp resp = {.headers = w->uhdrs, .minor_version = 1};
	int64_t cl;
	uint8_t mode;

	resp.n_headers = fields_of(w, x, &resp.status, &cl);
	x->hdr.len = 0;
	x->interim += resp.status < 200 ? x->hdr_bytes : 0;
	x->n_hdr = x->hdr_bytes = 0;
	if (resp.status < 200) {
		if (resp.status < 100) {
			ism_stream_up_bad(w, st, ISM_WHY_PROTOCOL);
			return;
		}
		/* Not relayed; together held to the head's bound, as an
		 * HTTP/1.1 upstream's: an upstream sending them without end
		 * would hold the exchange (each frame re-arms its timer). */
		if (x->interim > w->table->limits.max_response_header_bytes)
			ism_stream_up_bad(w, st, ISM_WHY_INTERIM);
		return;
	}
	x->state = ISM_H2US_RESPONSE;
	/* A head that ends the stream has an empty body: an HTTP/1.1 client is
	 * told so (a trailers-only gRPC answer, a 404 without body), or it
	 * would wait for the connection's end; an HTTP/2 client's stream ends
	 * with the head, as the upstream's did (no content-length added). */
	if (end && cl < 0 && !st->is_head && resp.status != 204 && resp.status != 304 &&
	    st->sess->state != ISM_SESS_H2)
		cl = 0;
	resp.framing.content_length = cl;
	/* Without a length, an HTTP/1.1 client gets the body chunked. */
	if (end || st->is_head || resp.status == 204 || resp.status == 304) {
		mode = ISM_BODY_NONE;
	} else if (cl >= 0) {
		mode = ISM_BODY_CL;
	} else {
		mode = ISM_BODY_CHUNKED;
		resp.framing.chunked = 1;
		w->uhdrs[resp.n_headers++] =
		    (struct ism_http_header){"transfer-encoding", 17, "chunked", 7};
	}
	x->resp.end = end;
	x->resp.end_given = end;
	ism_stream_up_head(w, st, &resp, mode, NULL, 0, end);
}

/* Trailers: to the stream, then the end of the body. false when the stream
 * ended instead, x freed with it. */
static bool response_trailers(struct ism_wctx *w, struct ism_h2us *x)
{
	int status;
	int64_t cl;
	size_t n = fields_of(w, x, &status, &cl);

	x->hdr.len = 0;
	return ism_stream_up_trailers(w, x->st, w->uhdrs, n);
}

/* x's response was cut short and the stream took what came of it: the
 * stream is cut in turn, as after Envoy's upstream remote reset (UR) or
 * connection termination (UC). */
static void cut(struct ism_wctx *w, struct ism_h2us *x)
{
	if (x->state == ISM_H2US_RESET)
		ism_stream_up_reset(w, x->st);
	else
		ism_stream_up_failed(w, x->st, ISM_FAIL_RESET);
}

/* What gathered goes to the stream when it waits for it; a response cut
 * short ends once the stream took what came of it, as Envoy's client got it
 * as it came: its head first, whether or not it came in the same read. */
static void deliver(struct ism_wctx *w, struct ism_h2us *x)
{
	const char *p;
	uint32_t len;
	bool done;

	if (x->st == NULL)
		return;
	switch ((enum ism_h2us_state)x->state) {
	case ISM_H2US_QUEUED:
	case ISM_H2US_OPEN:
		return;
	case ISM_H2US_RESPONSE:
	case ISM_H2US_RESET:
	case ISM_H2US_CLOSED:
		/* An END_STREAM before a reset does not make it whole. */
		if (ism_h2in_take(&x->resp, &p, &len, &done))
			ism_stream_up_data(w, x->st, p, len, -1,
					   done && x->state == ISM_H2US_RESPONSE);
		else if (x->state != ISM_H2US_RESPONSE && x->resp.want && x->resp.fly.len == 0)
			cut(w, x);
		return;
	}
	ISM_BUG_ON(1);
}

/* Bytes or the end came for x in this receive pass: delivered after it. */
static void pend(struct ism_h2c *c, struct ism_h2us *x)
{
	if (x->pending)
		return;
	x->pending = 1;
	ism_ud_push(&c->pend, &c->n_pend, &c->cap_pend, (uintptr_t)x);
}

/* The pass is over: what came goes to the streams waiting for it. */
static void deliver_pending(struct ism_wctx *w, struct ism_h2c *c)
{
	for (uint32_t i = 0; i < c->n_pend; i++) {
		struct ism_h2us *x = (struct ism_h2us *)(uintptr_t)c->pend[i];

		if (x == NULL)
			continue;
		x->pending = 0;
		deliver(w, x);
	}
	c->n_pend = 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
	struct ism_h2c *c = ud;
	struct ism_h2us *x;
	bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;

	(void)ng;
	switch (f->hd.type) {
	case NGHTTP2_GOAWAY:
		c->goaway = 1;
		return 0;
	case NGHTTP2_PING:
		if (f->hd.flags & NGHTTP2_FLAG_ACK)
			c->ping_deadline = 0;
		return 0;
	default:
		break;
	}
	x = f->hd.stream_id != 0 ? us_of(c, f->hd.stream_id) : NULL;
	if (x == NULL || x->st == NULL)
		return 0;
	ism_h2_meter(x->st->meter, ISM_M_UP_HEAD_IN, ISM_M_UP_WIRE_IN, &f->hd);
	if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)
		return 0;
	/* A stream's timeouts count its own frames only: other streams' frames,
	 * SETTINGS and PINGs do not keep a silent one alive. */
	ism_stream_up_bytes(c->w, x->st);
	if (f->hd.type == NGHTTP2_HEADERS && x->state == ISM_H2US_OPEN) {
		response_head(c->w, x, end);
		return 0;
	}
	if (f->hd.type == NGHTTP2_HEADERS && !response_trailers(c->w, x))
		return 0; /* the stream was cut (its RST_STREAM is submitted) */
	if (end && x->st != NULL) {
		x->resp.end = 1;
		pend(c, x);
	}
	return 0;
}

static int on_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
		   void *ud)
{
	struct ism_h2c *c = ud;
	struct ism_h2us *x = us_of(c, id);

	(void)flags;
	if (x == NULL || x->st == NULL) {
		nghttp2_session_consume(ng, id, len);
		return 0;
	}
	if (ism_h2in_add(&x->resp, data, len) < 0)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	/* The connection's window opens as the bytes arrive, the stream's as
	 * its client takes them: a client that reads nothing holds its streams'
	 * windows, not the connection that other clients' streams share (16
	 * unread responses of 64 KiB held its 1 MiB, and every other stream on
	 * it waited) — up to one more connection window of unread bytes, so
	 * that a connection holds at most two; past one, it takes no new
	 * stream (has_room): another connection does. */
	ism_h2io_received(&c->io, len);
	pend(c, x);
	return 0;
}

/* A frame of the upstream's that nghttp2 refuses (a field or a head against
 * HTTP/2's rules): it resets the stream, whose close says why. */
static int on_invalid_frame(nghttp2_session *ng, const nghttp2_frame *f, int err, void *ud)
{
	struct ism_h2us *x = us_of(ud, f->hd.stream_id);

	(void)ng;
	(void)err;
	if (x != NULL)
		x->malformed = 1;
	return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
	struct ism_h2c *c = ud;
	struct ism_h2us *x;

	(void)ng;
	x = f->hd.stream_id != 0 ? us_of(c, f->hd.stream_id) : NULL;
	if (x != NULL && x->st != NULL)
		ism_h2_meter(x->st->meter, ISM_M_UP_HEAD_OUT, ISM_M_UP_WIRE_OUT, &f->hd);
	if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)
		return 0;
	if (x != NULL && x->notify && ism_h2body_drained(&x->rq))
		x->notify_batch = c->io.batch;
	return 0;
}

/* Frees the dying stream id, if it is one (struct ism_h2c's dying). */
static void reap(struct ism_h2c *c, int32_t id)
{
	for (struct ism_h2us **p = &c->dying; *p != NULL; p = &(*p)->next) {
		struct ism_h2us *x = *p;

		if (x->id == id) {
			*p = x->next;
			free_stream(x);
			return;
		}
	}
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *ud)
{
	struct ism_h2c *c = ud;
	struct ism_h2us *x = us_of(c, id);
	struct ism_stream *st;

	if (x == NULL) {
		reap(c, id);
		return 0;
	}
	x->ng_closed = 1;
	nghttp2_session_set_stream_user_data(ng, id, NULL);
	st = x->st;
	if (st == NULL)
		return 0;
	/* The whole response came (its END_STREAM, before any reset): the
	 * stream takes it at its pace, as Envoy's router completes a response
	 * whose upstream then resets the stream (the request's body unread). */
	if (x->state == ISM_H2US_RESPONSE && x->resp.end && !x->malformed)
		return 0;
	ism_debug("upstream endpoint %u: stream %d reset (%s)", c->u->ep_id, id,
		  nghttp2_http2_strerror(code));
	switch ((enum ism_h2us_state)x->state) {
	case ISM_H2US_RESPONSE:
		/* Its head went on: what came after it goes too, then the cut. */
		if (x->resp.end_given)
			break;
		x->state = ISM_H2US_RESET;
		deliver(c->w, x);
		return 0;
	case ISM_H2US_QUEUED:
	case ISM_H2US_OPEN:
	case ISM_H2US_RESET:
	case ISM_H2US_CLOSED:
		break;
	}
	/* Before a head, as Envoy's router: a response nghttp2 found malformed
	 * is 502 (UPE), the upstream's reset 503 (UR). */
	if (x->malformed)
		ism_stream_up_bad(c->w, st, ISM_WHY_PROTOCOL);
	else if (code == NGHTTP2_REFUSED_STREAM)
		ism_stream_up_failed(c->w, st, ISM_FAIL_REFUSED);
	else
		ism_stream_up_reset(c->w, st);
	return 0;
}

/* ---------- the connection ---------- */

static int init_once(void)
{
	if (up_cbs != NULL)
		return 0;
	if (nghttp2_session_callbacks_new(&up_cbs) != 0 || nghttp2_option_new(&up_opt) != 0)
		return -ENOMEM;
	nghttp2_session_callbacks_set_send_callback(up_cbs, on_send);
	nghttp2_session_callbacks_set_send_data_callback(up_cbs, on_send_data);
	nghttp2_session_callbacks_set_on_header_callback(up_cbs, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(up_cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(up_cbs, on_invalid_frame);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(up_cbs, on_data);
	nghttp2_session_callbacks_set_on_frame_send_callback(up_cbs, on_frame_send);
	nghttp2_session_callbacks_set_on_stream_close_callback(up_cbs, on_stream_close);
	/* Streams' windows open as the client takes the bytes, not as they
	 * arrive; the connection's as they arrive (on_data). */
	nghttp2_option_set_no_auto_window_update(up_opt, 1);
	return 0;
}

/* Ends a stretch in which c called out to its streams (c->io.busy): a stream's
 * client may have closed the connection meanwhile (a PROXY-protocol upstream's
 * connections go with their client), whose end waited for the stretch to end
 * (ism_up_close); it ends now. false: the connection closes, c may be gone. */
static bool unbusy(struct ism_wctx *w, struct ism_h2c *c)
{
	struct ism_upconn *u = c->u;

	if (--c->io.busy > 0 || u->state != ISM_UP_CLOSING)
		return true;
	if (u->s.inflight == 0)
		ism_up_finalize(w, u);
	return false;
}

bool ism_h2up_busy(const struct ism_upconn *u)
{
	return u->mux != NULL && u->mux->io.busy > 0;
}

/* Streams whose request bytes the completed send carried hear so. false: the
 * connection closes (unbusy). */
static bool notify_sent(struct ism_wctx *w, struct ism_h2c *c)
{
	struct ism_h2us *x;

	c->io.busy++;
	for (c->cursor = c->streams; (x = c->cursor) != NULL;) {
		c->cursor = x->next;
		if (!x->notify || !ism_h2io_out(&c->io, x->notify_batch))
			continue;
		x->notify = 0;
		x->notify_batch = 0;
		if (x->st != NULL)
			ism_stream_up_sent(w, x->st);
	}
	return unbusy(w, c);
}

static void up_flush(struct ism_wctx *w, struct ism_h2c *c)
{
	const char *p;
	uint32_t len;
	int ret;

	if (c->io.busy || c->u->state == ISM_UP_CONNECTING || c->u->state == ISM_UP_CLOSING)
		return;
	ret = ism_h2io_frame(&c->io, &p, &len);
	if (ret < 0 || (ret == 0 && !c->io.sending && !nghttp2_session_want_read(c->io.ng) &&
			!nghttp2_session_want_write(c->io.ng))) {
		ism_up_close(w, c->u);
		return;
	}
	if (ret > 0)
		ism_sock_send(w, &c->u->s, p, len, -1);
}

/* After a call from a stream: flush after the batch of completions (the
 * requests and window updates of one batch leave together). */
static void kick(struct ism_wctx *w, struct ism_h2c *c)
{
	if (ism_h2io_kick(&c->io))
		ism_w_kick(w, ism_ud(ISM_OP_URECV, c->u->s.idx, c->u->s.gen));
}

void ism_h2up_kicked(struct ism_wctx *w, uint64_t ud)
{
	struct ism_upconn *u = w->ups.obj[(ud >> 32) & 0xffffff];
	struct ism_h2c *c = u->mux;

	/* Closed meanwhile (its slot may be another connection's now). */
	if (u->s.gen != (uint32_t)ud || c == NULL || !ism_h2io_kicked(&c->io))
		return;
	up_flush(w, c);
}

static struct ism_h2c *new_conn(struct ism_wctx *w, struct ism_upconn *u)
{
	const struct ism_limits *lim = &w->table->limits;
	nghttp2_settings_entry iv[] = {
	    {NGHTTP2_SETTINGS_ENABLE_PUSH, 0},
	    {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, lim->h2_initial_stream_window},
	};
	struct ism_h2c *c;
	nghttp2_mem mem;

	if (init_once() < 0)
		return NULL;
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->w = w;
	c->u = u;
	c->io.batch = 1;
	c->io.early_max = lim->h2_initial_conn_window; /* on_data */
	c->last_rx = w->now;
	c->io.pages = w->h2pages;
	mem = ism_h2io_mem(&c->io);
	if (nghttp2_session_client_new3(&c->io.ng, up_cbs, c, up_opt, &mem) != 0) {
		free(c);
		return NULL;
	}
	nghttp2_submit_settings(c->io.ng, NGHTTP2_FLAG_NONE, iv, sizeof(iv) / sizeof(iv[0]));
	nghttp2_session_set_local_window_size(c->io.ng, NGHTTP2_FLAG_NONE, 0,
					      (int32_t)lim->h2_initial_conn_window);
	return c;
}

/* An HTTP/2 connection to ep that st may share, with room for a stream: of
 * st's TLS settings, and PROXY header (with one, its session's). */
static struct ism_upconn *find_conn(struct ism_wctx *w, const struct ism_stream *st,
				    const struct ism_cluster *cl, const struct ism_endpoint *ep)
{
	const uint32_t ep_id = ep->id;
	uint64_t key = ism_up_pool_key(st, cl, ep);

	for (struct ism_upconn *u = ism_up_candidates(w, st, cl, ep_id, true); u != NULL;
	     u = u->pool_next)
		if (u->mux != NULL && ism_up_fits(u, cl, ep_id, key) && has_room(u->mux, cl))
			return u;
	return NULL;
}

struct ism_upconn *ism_h2up_start(struct ism_wctx *w, struct ism_stream *st,
				  const struct ism_cluster *cl, const struct ism_endpoint *ep,
				  struct ism_buf *head, bool *full)
{
	struct ism_upconn *u = find_conn(w, st, cl, ep);
	struct ism_h2us *x;
	int f;

	if (full != NULL)
		*full = false;
	if (u == NULL) {
		u = ism_up_connect(w, st, cl, ep, true, full);
		if (u == NULL)
			return NULL;
		u->mux = new_conn(w, u);
		if (u->mux == NULL) {
			ism_up_close(w, u);
			return NULL;
		}
		/* The session reads whatever comes (DATA within its windows):
		 * one multishot receive stays armed for many reads. */
		ism_sock_multi(&u->s);
		ism_up_mux_add(w, u);
	} else {
		u->reused = 1;
		ism_wstat_add(&w->st->upstream_reused, 1);
	}
	/* The cluster's settings as they are now, a reload's too. */
	u->idle_ms = st->pool_idle_ms;
	u->mux->ping_interval = cl->h2_ping_interval_ms;
	u->mux->ping_timeout = cl->h2_ping_timeout_ms;
	/* room for it in the connection's delivery queue (pend), twice: a
	 * stream freed during a pass leaves its place there until the pass ends */
	if (ism_ud_reserve(&u->mux->pend, &u->mux->cap_pend, 2 * (u->mux->n_streams + 1)) < 0)
		return NULL;
	x = malloc(sizeof(*x)); /* not calloc, which skips glibc's per-thread cache */
	if (x == NULL)
		return NULL;
	*x = (struct ism_h2us){.st = st};
	x->head = *head;
	*head = (struct ism_buf){0};
	link_stream(u->mux, x);
	f = u->state == ISM_UP_MUX ? submit_request(w, u->mux, x) : 0;
	if (f != 0) {
		/* Nothing was taken. */
		*head = x->head;
		x->head = (struct ism_buf){0};
		free_stream(x);
		if (f != ISM_FAIL_REFUSED || !u->reused)
			return NULL; /* the stream answers */
		/* Its stream identifiers are all used (2^31 of them): it takes
		 * no more, and closes when its streams end; the stream goes on a
		 * new one. */
		u->mux->goaway = 1;
		return ism_h2up_start(w, st, cl, ep, head, full);
	}
	st->usp = x;
	/* maxRequestsPerConnection: the connection takes no more streams, and
	 * closes when its streams end (as Envoy's, for HTTP/2 too). */
	if (++u->requests >= cl->pool.max_requests_per_conn && cl->pool.max_requests_per_conn)
		u->mux->goaway = 1;
	kick(w, u->mux);
	return u;
}

int ism_h2up_req_data(struct ism_wctx *w, struct ism_stream *st, const char *p, uint32_t len,
		      int bid, bool done)
{
	struct ism_h2us *x = st->usp;
	int ret = 0;

	ism_buf_keep(&x->head, p, len, ISM_REPLAY_MAX);
	x->rq.trailers = done && st->req_trl.len > 0;
	if (x->c != NULL)
		ret = ism_h2body_add(&x->c->io, x->id, &x->rq, p, len, done);
	if (bid >= 0)
		ism_w_buf_recycle(w, bid);
	if (ret < 0)
		return -ENOMEM;
	if ((len == 0 && !done) || x->c == NULL)
		return 0;
	x->notify = 1;
	kick(w, x->c);
	return 1;
}

void ism_h2up_resume(struct ism_wctx *w, struct ism_stream *st)
{
	struct ism_h2us *x = st->usp;

	/* What was given went to the client: the upstream may send more (a
	 * connection gone after the whole response came has nothing to open). */
	if (x->c != NULL) {
		ism_h2in_want(&x->c->io, x->id, &x->resp);
	} else {
		x->resp.fly.len = 0;
		x->resp.want = 1;
	}
	ism_buf_free(&x->head);
	deliver(w, x);
	if (st->usp == x && x->c != NULL)
		kick(w, x->c);
}

bool ism_h2up_replayable(const struct ism_stream *st)
{
	const struct ism_h2us *x = st->usp;

	return x != NULL && x->head.len > 0;
}

void ism_h2up_detach(struct ism_wctx *w, struct ism_upconn *u, struct ism_stream *st,
		     struct ism_buf *replay)
{
	struct ism_h2us *x = st->usp;
	struct ism_h2c *c = x->c;

	(void)u;
	st->usp = NULL;
	x->st = NULL;
	if (replay != NULL && x->head.len) {
		ism_buf_free(replay);
		*replay = x->head;
		x->head = (struct ism_buf){0};
	}
	/* What the upstream sent and the client did not take (or took last)
	 * goes back to the connection's window, even of a closed stream. */
	if (c != NULL && x->id > 0)
		ism_h2in_drop(&c->io, x->id, &x->resp);
	if (c != NULL && x->id > 0 && !x->ng_closed) {
		nghttp2_submit_rst_stream(c->io.ng, NGHTTP2_FLAG_NONE, x->id, NGHTTP2_CANCEL);
		unlink_stream(x);
		ism_h2in_free(&x->resp);
		ism_buf_free(&x->head);
		ism_buf_free(&x->hdr);
		x->next = c->dying;
		c->dying = x;
	} else {
		free_stream(x);
	}
	if (c != NULL)
		kick(w, c);
}

/* The connection (and its TLS handshake) is up: the queued requests go. */
void ism_h2up_ready(struct ism_wctx *w, struct ism_upconn *u)
{
	struct ism_h2c *c = u->mux;
	struct ism_h2us *x;

	u->state = ISM_UP_MUX;
	c->last_rx = w->now;
	c->io.busy++;
	for (c->cursor = c->streams; (x = c->cursor) != NULL;) {
		c->cursor = x->next;
		if (x->state == ISM_H2US_QUEUED && x->st != NULL) {
			struct ism_stream *st = x->st;
			int f = submit_request(w, c, x);

			if (f != 0)
				ism_stream_up_failed(w, st, (enum ism_failure)f);
			else
				ism_stream_up_ready(w, st);
		}
	}
	if (!unbusy(w, c))
		return;
	ism_sock_recv(w, &u->s);
	up_flush(w, c);
}

void ism_h2up_closing(struct ism_wctx *w, struct ism_upconn *u, enum ism_failure f)
{
	struct ism_h2c *c = u->mux;

	c->io.busy++;
	while (c->streams != NULL) {
		struct ism_h2us *x = c->streams;
		struct ism_stream *st = x->st;

		unlink_stream(x);
		if (st == NULL) {
			free_stream(x);
			continue;
		}
		switch ((enum ism_h2us_state)x->state) {
		case ISM_H2US_QUEUED:
		case ISM_H2US_OPEN:
			ism_stream_up_failed(w, st, f);
			continue;
		case ISM_H2US_RESPONSE:
			/* A response that came whole goes on to the client from
			 * x; one cut short too, as far as it came. */
			if (!x->resp.end) {
				x->state = ISM_H2US_CLOSED;
				deliver(w, x);
			}
			continue;
		case ISM_H2US_RESET:
		case ISM_H2US_CLOSED:
			continue;
		}
		ISM_BUG_ON(1);
	}
	c->io.busy--;
}

void ism_h2up_recv(struct ism_wctx *w, struct ism_upconn *u, int res, int bid)
{
	struct ism_h2c *c = u->mux;
	ssize_t n;

	if (u->state != ISM_UP_MUX) {
		if (bid >= 0)
			ism_w_buf_recycle(w, bid);
		return;
	}
	if (res <= 0) {
		if (bid >= 0)
			ism_w_buf_recycle(w, bid);
		ism_debug("upstream endpoint %u closed: %s", u->ep_id,
			  res < 0 ? strerror(-res) : "EOF");
		ism_up_close(w, u);
		return;
	}
	c->last_rx = w->now;
	ism_h2io_stir(&c->io);
	c->io.busy++;
	n = nghttp2_session_mem_recv(c->io.ng, (const uint8_t *)ism_w_buf_addr(w, bid),
				     (size_t)res);
	/* Even when the session failed (a flood): a response that came whole
	 * before goes on to its client (ism_h2up_closing keeps it), and one
	 * that waits for it must be given it now. */
	deliver_pending(w, c);
	ism_w_buf_recycle(w, bid);
	if (!unbusy(w, c))
		return;
	if (n < 0) {
		ism_debug("upstream endpoint %u: HTTP/2: %s", u->ep_id, nghttp2_strerror((int)n));
		ism_up_close(w, u);
		return;
	}
	up_flush(w, c);
	if (u->state == ISM_UP_MUX)
		ism_sock_recv(w, &u->s);
}

void ism_h2up_sent(struct ism_wctx *w, struct ism_upconn *u, int res)
{
	if (res < 0) {
		ism_up_close(w, u);
		return;
	}
	ism_h2io_sent(&u->mux->io);
	if (notify_sent(w, u->mux))
		up_flush(w, u->mux);
}

void ism_h2up_tick(struct ism_wctx *w, struct ism_upconn *u)
{
	struct ism_h2c *c = u->mux;

	if (ism_up_expired(w->now, u))
		c->goaway = 1; /* its maxConnectionDuration: drained */
	if (c->n_streams == 0 && (c->goaway || u->idle_deadline <= w->now)) {
		ism_up_close(w, u);
		return;
	}
	if (c->n_streams == 0) {
		ism_h2io_trim(&c->io);
		/* A pooled connection holds no more than an idle client one. */
		if (ism_h2io_quiet(&c->io) && w->now - c->last_rx >= ISM_H2IO_REST_MS)
			ism_h2io_rest(&c->io);
	}
	/* http2KeepAlive: a PING after interval of silence; no ACK within the
	 * timeout closes the connection (its streams fail). */
	if (c->ping_deadline && c->ping_deadline <= w->now) {
		ism_debug("upstream endpoint %u: no PING ACK in %u ms", u->ep_id, c->ping_timeout);
		ism_up_close(w, u);
		return;
	}
	if (c->ping_interval && !c->ping_deadline && c->last_rx + c->ping_interval <= w->now) {
		nghttp2_submit_ping(c->io.ng, NGHTTP2_FLAG_NONE, NULL);
		c->ping_deadline = w->now + c->ping_timeout;
		up_flush(w, c);
	}
}

void ism_h2up_drain(struct ism_wctx *w, struct ism_upconn *u)
{
	u->mux->goaway = 1;
	if (u->mux->n_streams == 0)
		ism_up_close(w, u);
}

bool ism_h2up_idle(const struct ism_upconn *u)
{
	return u->mux->n_streams == 0;
}

void ism_h2up_free(struct ism_upconn *u)
{
	struct ism_h2c *c = u->mux;

	if (c == NULL)
		return;
	while (c->streams != NULL) {
		free_stream(c->streams);
	}
	while (c->dying != NULL) {
		struct ism_h2us *x = c->dying;

		c->dying = x->next;
		free_stream(x);
	}
	ism_h2io_free(&c->io);
	free(c->pend);
	free(c);
	u->mux = NULL;
}
