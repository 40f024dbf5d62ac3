/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP/2 client sessions: nghttp2 parses and writes frames; requests become
 * streams, responses become HEADERS and DATA within the peer's flow-control
 * windows, and the request bodies are given back to the client's windows only
 * once they went to the upstream, so a connection holds at most its windows. */
#include "worker/h2.h"

#include <ctype.h>
#include <errno.h>
#include <nghttp2/nghttp2.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/base64.h"
#include "lib/log.h"
#include "worker/h2io.h"
#include "worker/ring.h"
#include "worker/sock.h"
#include "worker/stream.h"

enum ism_h2_state {
	ISM_H2_OPEN = 0,
	/* A graceful stop or a reload began: the GOAWAY of stream 2^31-1 went
	 * (RFC 9113 6.8), streams the client sent meanwhile are still taken;
	 * ISM_H2_NOTICE_MS later the GOAWAY naming the last one follows. */
	ISM_H2_NOTICE,
	ISM_H2_GOAWAY, /* GOAWAY sent (stop, reload, idle): open streams finish */
	ISM_H2_FAILED, /* a connection error: the GOAWAY goes out, then the close */
};

enum ism_h2s_state {
	ISM_H2S_HEAD = 0, /* the request's header block is arriving */
	ISM_H2S_ACTIVE,	  /* its stream (worker/stream.h) runs */
	ISM_H2S_ENDED,	  /* its stream ended; nghttp2 has yet to close it */
	/* Its stream was cut while its response head waited in nghttp2's queue,
	 * which a reset would drop: the RST_STREAM goes once the head is framed. */
	ISM_H2S_CUT,
};

/* One HTTP/2 stream of a session. */
struct ism_h2s {
	int32_t id;
	uint8_t state;	       /* enum ism_h2s_state */
	uint8_t ng_closed;     /* nghttp2 closed it (both ends done, or reset) */
	uint8_t notify;	       /* the stream waits to hear its bytes are out */
	uint8_t end_sent;      /* our END_STREAM went out */
	uint8_t head_queued;   /* our response head is submitted, not framed yet */
	uint8_t in_block;      /* a header block of its is arriving: head or trailers */
	uint32_t head_wire;    /* the request head's frames, metered once attached */
	uint64_t notify_batch; /* the output batch carrying its last bytes; 0: none yet */
	uint64_t moved_ms;     /* when its response last went out (or was submitted) */
	struct ism_stream *st;
	struct ism_h2head hdr;	/* the request head (then its trailers) */
	struct ism_h2in rq;	/* the request body, for the stream */
	struct ism_h2body resp; /* the response body, for DATA frames */
	struct ism_buf trl;	/* response trailers: name NUL value NUL ... */
	struct ism_h2s *next;
	struct ism_h2s *prev;
};

struct ism_h2 {
	struct ism_h2io io;
	struct ism_wctx *w;
	struct ism_sess *s;
	uint8_t state; /* enum ism_h2_state */
	uint32_t n_streams;
	uint32_t n_blocks; /* streams with in_block set */
	struct ism_h2s *streams;
	uint64_t block_ms; /* when n_blocks last became non-zero */
	/* Between a HEADERS without END_HEADERS and the frame header of its last
	 * CONTINUATION, since frag_ms: a block nghttp2 reads on after it reset
	 * its stream (a bad field) has no stream to count it in n_blocks. */
	uint8_t frag;
	uint64_t frag_ms;
	uint64_t unused_ms;	/* when n_streams last became zero (or the session began) */
	uint64_t send_ms;	/* when the send in flight started */
	uint64_t stir_ms;	/* when it last read or sent */
	uint64_t budget_ms;	/* when the frame budget was last refilled */
	uint32_t budget;	/* frames that carry no request the client may still send */
	uint64_t notice_ms;	/* ISM_H2_NOTICE: when the notice went */
	uint64_t data_sent;	/* DATA frames sent */
	uint64_t wu_received;	/* WINDOW_UPDATE frames received */
	uint64_t prio_received; /* PRIORITY frames received */
	uint64_t opened;	/* streams the client opened */
	/* a response's HEADERS or DATA went out since the client's last PING:
	 * its next PING is free */
	uint8_t sent_since_ping;
};

/* Frames that carry no request (PING, SETTINGS, empty DATA, HEADERS or
 * CONTINUATION, and the RST_STREAMs we send for the client's faults) come out
 * of a per-connection budget of ISM_H2_BUDGET refilled at ISM_H2_BUDGET_PER_S,
 * but for a PING after a response's HEADERS or DATA went out since the last
 * (as gRPC servers forgive pings while they send data: grpc-go's window probe
 * pings with what it receives); WINDOW_UPDATEs may
 * number ISM_H2_WU_BASE plus ISM_H2_WU_PER_STREAM per stream the client
 * opened and ISM_H2_WU_PER_DATA per DATA frame sent, PRIORITY frames
 * ISM_H2_PRIO_PER_STREAM per stream opened and one more (Envoy's
 * protocol_constraints, with its defaults: a client sending one of each per
 * request is never cut). Past any: GOAWAY ENHANCE_YOUR_CALM (CVE-2019-9512,
 * 9515, 9518, 2025-8671). */
#define ISM_H2_BUDGET	    500u
#define ISM_H2_BUDGET_PER_S 100u
/* A malformed request (nghttp2 resets it: RFC 9113 8.1.1) costs this much of
 * the budget, so that a burst of them ends in ENHANCE_YOUR_CALM well before
 * the default 100 streams awaiting their reset can fill the connection. */
#define ISM_H2_MALFORMED_COST  10u
#define ISM_H2_WU_BASE	       1000u
#define ISM_H2_WU_PER_STREAM   2u
#define ISM_H2_WU_PER_DATA     20u
#define ISM_H2_PRIO_PER_STREAM 100u

/* From the shutdown notice to the GOAWAY naming the last stream: a round
 * trip and then some, for the streams the client sent before it read the
 * notice (Envoy's drain_timeout, 5 s by default, is that wait). */
#define ISM_H2_NOTICE_MS 1000u

static nghttp2_session_callbacks *h2_cbs;
static nghttp2_option *h2_opt;

static void h2_flush(struct ism_wctx *w, struct ism_sess *s);

/* ---------- streams ---------- */

/* Stream id's struct, or NULL. nghttp2's user data of a stream is its struct
 * from on_begin_headers until nghttp2 closes it (ng_closed) or the struct is
 * freed (off the list), and identifiers are never reused: the newest stream,
 * at the list's head, is the one asked for in nearly every callback, and is
 * found without nghttp2's hash lookup. */
static struct ism_h2s *h2s_of(struct ism_h2 *h, int32_t id)
{
	struct ism_h2s *x = h->streams;

	if (x != NULL && x->id == id && !x->ng_closed)
		return x;
	return nghttp2_session_get_stream_user_data(h->io.ng, id);
}

/* A header block of x began: the request's head or its trailers, either of
 * which, left unfinished, holds the connection (set_deadline()). */
static void block_begin(struct ism_h2 *h, struct ism_h2s *x)
{
	x->in_block = 1;
	if (h->n_blocks++ == 0)
		h->block_ms = h->w->now;
}

/* x's header block is whole, or x goes. */
static void block_end(struct ism_h2 *h, struct ism_h2s *x)
{
	h->n_blocks -= x->in_block;
	x->in_block = 0;
}

static void h2s_free(struct ism_h2 *h, struct ism_h2s *x)
{
	if (x->prev)
		x->prev->next = x->next;
	else
		h->streams = x->next;
	if (x->next)
		x->next->prev = x->prev;
	if (!x->ng_closed)
		nghttp2_session_set_stream_user_data(h->io.ng, x->id, NULL);
	ism_buf_free(&x->hdr.b);
	ism_h2in_free(&x->rq);
	ism_buf_free(&x->resp.b);
	ism_buf_free(&x->trl);
	block_end(h, x);
	free(x);
	if (--h->n_streams == 0)
		h->unused_ms = h->w->now;
	ism_h2io_count(&h->io, -(int64_t)sizeof(*x));
}

/* The stream waits for body bytes and some are gathered (or the end came):
 * they go to it. */
static void deliver(struct ism_wctx *w, struct ism_h2s *x)
{
	const char *p;
	uint32_t len;
	bool done;

	if (x->st != NULL && ism_h2in_take(&x->rq, &p, &len, &done))
		ism_stream_req_data(w, x->st, p, len, -1, done);
}

/* ---------- the request ---------- */

static bool name_is(const char *n, size_t len, const char *lit)
{
	return strlen(lit) == len && memcmp(n, lit, len) == 0;
}

/* x's header block is whole: a stream for it (NULL without memory: x is
 * reset). */
static struct ism_stream *attach(struct ism_wctx *w, struct ism_sess *s, struct ism_h2s *x)
{
	struct ism_stream *st = ism_stream_new(w, s);

	if (st == NULL) {
		x->state = ISM_H2S_ENDED;
		nghttp2_submit_rst_stream(s->h2->io.ng, NGHTTP2_FLAG_NONE, x->id,
					  NGHTTP2_INTERNAL_ERROR);
		return NULL;
	}
	st->sp = x;
	x->st = st;
	x->state = ISM_H2S_ACTIVE;
	st->meter[ISM_M_DOWN_HEAD_IN] = st->meter[ISM_M_DOWN_WIRE_IN] = x->head_wire;
	return st;
}

int ism_h2_head_add(const struct ism_limits *lim, struct ism_h2head *hd, const uint8_t *name,
		    size_t nl, const uint8_t *value, size_t vl)
{
	/* So that a head refused for its size is answered as gRPC too, and a
	 * HEAD without a body. */
	if (nl == 12 && memcmp(name, "content-type", 12) == 0 &&
	    ism_http_grpc_type((const char *)value, vl))
		hd->grpc = 1;
	if (nl == 7 && vl == 4 && memcmp(name, ":method", 7) == 0 && memcmp(value, "HEAD", 4) == 0)
		hd->head = 1;
	if (hd->over)
		return 0;
	/* An HPACK bomb (small on the wire, huge decoded) stops here. */
	hd->bytes += (uint32_t)(nl + vl + 32);
	if (hd->bytes > lim->h2_max_header_list || ++hd->n > lim->max_request_headers ||
	    memchr(value, '\0', vl) != NULL || memchr(name, '\0', nl) != NULL) {
		hd->over = 1;
		ism_buf_free(&hd->b);
		return 0;
	}
	return ism_buf_put_pair(&hd->b, name, nl, value, vl);
}

/* What a request head's fields said that is checked once all are read. */
struct head_said {
	int64_t cl; /* content-length; -1: none */
	bool authority;
	unsigned hosts;
	const char *proto; /* :protocol; NULL: none */
	size_t proto_len;
	bool expect; /* expect: 100-continue */
};

/* Takes field n: v into req when it is a pseudo-header or Host, and notes in
 * *f what the checks of the whole head need. */
static void take_pseudo(struct ism_http_req *req, struct head_said *f, const char *n, size_t nl,
			const char *v, size_t vl)
{
	if (name_is(n, nl, ":method")) {
		req->method = v;
		req->method_len = vl;
	} else if (name_is(n, nl, ":path")) {
		const char *q = memchr(v, '?', vl);

		req->target = req->path = v;
		req->target_len = vl;
		req->path_len = q ? (size_t)(q - v) : vl;
		req->query = q ? q + 1 : NULL;
		req->query_len = q ? vl - req->path_len - 1 : 0;
	} else if (name_is(n, nl, ":authority")) {
		/* :authority wins over host (RFC 9113 8.3.1); the upstream
		 * gets one Host (worker/upstream.c). */
		req->host = v;
		req->host_len = vl;
		f->authority = true;
	} else if (name_is(n, nl, "host") && f->hosts++ == 0 && !f->authority) {
		req->host = v;
		req->host_len = vl;
	} else if (name_is(n, nl, ":protocol")) {
		f->proto = v;
		f->proto_len = vl;
	}
}

/* RFC 8441 extended CONNECT (WebSocket over HTTP/2) of protocol proto: the
 * HTTP/1.1 upgrade it stands for, GET with Upgrade: <:protocol>; the stream's
 * DATA is the tunnel's bytes, unframed. */
static void extended_connect(struct ism_http_req *req, const char *proto, size_t proto_len)
{
	req->method = "GET";
	req->method_len = 3;
	req->framing = (struct ism_http_framing){.content_length = -1, .upgrade = 1};
	if (req->n_headers < ISM_MAX_HDRS - 1)
		req->headers[req->n_headers++] =
		    (struct ism_http_header){"upgrade", 7, proto, proto_len};
}

int ism_h2_parse_head(const struct ism_limits *lim, const struct ism_h2head *hd,
		      struct ism_http_req *req, struct ism_buf *cookie, bool end, const char **why)
{
	const char *p, *end_p;
	struct head_said f = {.cl = -1};
	bool connect = false;

	*why = ISM_WHY_H2_HEAD_TOO_BIG;
	if (hd->over)
		return 431;
	/* No field (or over the limits, above) leaves no buffer: NULL + 0 is no
	 * pointer C allows. */
	p = hd->b.p;
	end_p = p != NULL ? p + hd->b.len : NULL;
	while (p < end_p) {
		const char *n = p, *v;
		size_t nl = strlen(n), vl;

		v = n + nl + 1;
		vl = strlen(v);
		p = v + vl + 1;
		take_pseudo(req, &f, n, nl, v, vl);
		if (name_is(n, nl, "upgrade"))
			continue; /* a connection-specific field (nghttp2 refuses it) */
		if (n[0] == ':')
			continue;
		if (name_is(n, nl, "cookie")) {
			/* Crumbs are joined for an HTTP/1.1 upstream (RFC 9113 8.2.3). */
			*why = "out of memory";
			if ((cookie->len && ism_buf_append(cookie, "; ", 2, UINT32_MAX) < 0) ||
			    ism_buf_append(cookie, v, (uint32_t)vl, UINT32_MAX) < 0)
				return 503;
			continue;
		}
		if (name_is(n, nl, "expect") && vl == 12 && ism_eq_nocase(v, "100-continue", 12))
			f.expect = true;
		if (name_is(n, nl, "content-length")) {
			char *e;

			f.cl = (int64_t)strtoull(v, &e, 10);
			*why = ISM_WHY_H2_BAD_LENGTH;
			if (vl == 0 || *e != '\0' || !isdigit((unsigned char)v[0]))
				return 400;
		}
		if (req->n_headers < ISM_MAX_HDRS - 1)
			req->headers[req->n_headers++] = (struct ism_http_header){n, nl, v, vl};
	}
	if (cookie->len)
		req->headers[req->n_headers++] =
		    (struct ism_http_header){"cookie", 6, cookie->p, cookie->len};
	req->framing = (struct ism_http_framing){
	    .content_length = f.cl, .chunked = !end && f.cl < 0, .expect_continue = f.expect};
	connect = req->method != NULL && name_is(req->method, req->method_len, "CONNECT");
	/* A tunnel whose client has nothing to send opens nothing: as a
	 * GET it would be answered as one, a 2xx the client takes for its
	 * tunnel (RFC 8441 5). */
	*why = ISM_WHY_H2_CONNECT_END;
	if (connect && f.proto != NULL && end)
		return 400;
	if (connect && f.proto != NULL && req->path != NULL)
		extended_connect(req, f.proto, f.proto_len);
	*why = ISM_WHY_H2_HOSTS;
	if (f.hosts > 1 && !f.authority)
		return 400;
	/* The authority and the path as HTTP/1.1's parser takes them: else one
	 * it refuses ("a:80x", "u@a") was routed by what came before the ':'
	 * and sent upstream as it came, where it may be read otherwise. */
	*why = ISM_WHY_BAD_HOST;
	if (req->host != NULL && !ism_http_host_ok(req->host, req->host_len))
		return 400;
	*why = "CONNECT is not supported";
	if (req->method == NULL || req->path == NULL)
		return 501;
	/* :path is HTTP/1.1's request target: maxUriBytes holds for both, and
	 * the refusal is logged alike. */
	*why = ISM_WHY_URI_TOO_LONG;
	if (lim->max_uri_bytes && req->target_len > lim->max_uri_bytes)
		return 414;
	/* A fragment is never sent (RFC 9110 7.1): Envoy refuses a :path with
	 * '#' (its http_reject_path_with_fragment), as the HTTP/1.1 parser
	 * refuses one; else "/admin#x" went on as "/admin%23x", past a policy
	 * on "/admin", and one in the query raw into the upstream's head. */
	*why = ISM_WHY_BAD_PATH;
	if (memchr(req->target, '#', req->target_len) != NULL)
		return 400;
	/* Visible ASCII, as HTTP/1.1's request target; a path not in origin
	 * form ("*") is routed to none, as HTTP/1.1's "OPTIONS *". */
	if (req->target_len > 0 && req->target[0] == '/' &&
	    !ism_http_origin_target_ok(req->target, req->target_len))
		return 400;
	*why = ISM_WHY_BODY_TOO_LARGE;
	if (f.cl > 0 && lim->max_request_body_bytes && (uint64_t)f.cl > lim->max_request_body_bytes)
		return 413;
	return 0;
}

/* An extended CONNECT for WebSocket has no Sec-WebSocket-Key (RFC 8441 5),
 * which the HTTP/1.1 upgrade needs: one is made (16 random bytes in base64,
 * RFC 6455 4.1) into key and added to req; the upstream's Sec-WebSocket-Accept
 * goes back unchecked, as Envoy does. */
static void websocket_key(struct ism_wctx *w, struct ism_http_req *req, char key[25])
{
	uint8_t raw[16];

	for (size_t i = 0; i < req->n_headers; i++)
		if (ism_http_header_is(&req->headers[i], "sec-websocket-key"))
			return;
	for (int i = 0; i < 16; i += 4) {
		uint32_t r = ism_w_rand(w);

		memcpy(raw + i, &r, 4);
	}
	/* 16 bytes: 22 characters and two pads */
	key[ism_b64_encode(raw, sizeof(raw), key)] = '\0';
	if (req->n_headers < ISM_MAX_HDRS - 1)
		req->headers[req->n_headers++] =
		    (struct ism_http_header){"sec-websocket-key", 17, key, 24};
}

/* The request's header block is complete: its stream starts, or answers. */
static void request_head(struct ism_wctx *w, struct ism_sess *s, struct ism_h2s *x, bool end)
{
	struct ism_http_req req = {.headers = w->hdrs, .minor_version = 1, .h2 = 1};
	struct ism_buf cookie = {0};
	const char *why = "listener not configured";
	int status = s->listener >= w->table->n_listeners
			 ? 503
			 : ism_h2_parse_head(&w->table->limits, &x->hdr, &req, &cookie, end, &why);
	struct ism_stream *st = attach(w, s, x);

	x->rq.end = x->rq.end_given = end;
	if (st != NULL && status) {
		st->grpc = x->hdr.grpc;
		st->is_head = x->hdr.head;
		/* A 413 on its content-length is logged with the request, as
		 * HTTP/1.1's is: the whole head was read. */
		ism_stream_refuse(w, st, status == 413 ? &req : NULL, status, why);
	} else if (st != NULL) {
		char key[25];

		if (req.framing.upgrade && !end) {
			st->upgrade = 1;
			websocket_key(w, &req, key);
		}
		ism_stream_request(w, st, &req, NULL, 0, end);
	}
	ism_buf_free(&cookie);
	ism_buf_free(&x->hdr.b);
	x->hdr = (struct ism_h2head){0};
}

/* The request's trailers: to the stream, which passes them to an HTTP/2
 * upstream (too large ones are dropped, as HTTP/1.1 drops them). */
static void request_trailers(struct ism_wctx *w, struct ism_h2s *x)
{
	size_t n = ism_buf_get_pairs(&x->hdr.b, w->hdrs, ISM_MAX_HDRS);

	ism_stream_req_trailers(w, x->st, w->hdrs, n);
	ism_buf_free(&x->hdr.b);
}

/* ---------- nghttp2's callbacks ---------- */

static ssize_t on_send(nghttp2_session *ng, const uint8_t *data, size_t len, int flags, void *ud)
{
	struct ism_h2 *h = ud;

	(void)ng;
	(void)flags;
	return ism_h2io_gather(&h->io, data, len);
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
	struct ism_h2 *h = ud;
	struct ism_h2s *x;

	if (f->hd.type != NGHTTP2_HEADERS)
		return 0;
	/* A later block of a stream: the request's trailers. */
	if (f->headers.cat != NGHTTP2_HCAT_REQUEST) {
		x = h2s_of(h, f->hd.stream_id);
		if (x != NULL)
			block_begin(h, x);
		return 0;
	}
	/* malloc, not calloc: glibc's calloc skips the per-thread cache. */
	x = malloc(sizeof(*x));
	if (x == NULL)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	*x = (struct ism_h2s){.id = f->hd.stream_id};
	ism_h2io_count(&h->io, sizeof(*x));
	x->next = h->streams;
	if (h->streams)
		h->streams->prev = x;
	h->streams = x;
	h->n_streams++;
	h->opened++;
	block_begin(h, x);
	nghttp2_session_set_stream_user_data(ng, x->id, x);
	return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name,
		     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags, void *ud)
{
	struct ism_h2 *h = ud;
	struct ism_h2s *x = h2s_of(h, f->hd.stream_id);

	(void)ng;
	(void)flags;
	/* The request head, or its trailers (for an HTTP/2 upstream). */
	if (x == NULL || x->state == ISM_H2S_ENDED || x->state == ISM_H2S_CUT)
		return 0;
	return ism_h2_head_add(&h->w->table->limits, &x->hdr, name, namelen, value, valuelen) < 0
		   ? NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE
		   : 0;
}

/* Whether a frame the client sent carries no request (counts in the budget). */
static bool idle_frame(const nghttp2_frame_hd *hd)
{
	switch (hd->type) {
	case NGHTTP2_DATA:
		return hd->length == 0 && !(hd->flags & NGHTTP2_FLAG_END_STREAM);
	case NGHTTP2_HEADERS:
	case NGHTTP2_CONTINUATION:
		return hd->length == 0;
	case NGHTTP2_PING:
	case NGHTTP2_SETTINGS:
		return true;
	default:
		/* RST_STREAM: nghttp2's own rate limit (CVE-2023-44487). */
		return false;
	}
}

/* Whether a reset we send with this code answers the client's fault. */
static bool client_fault(uint32_t code)
{
	switch (code) {
	case NGHTTP2_NO_ERROR:
	case NGHTTP2_CANCEL:
	case NGHTTP2_INTERNAL_ERROR:
		return false;
	default:
		return true;
	}
}

/* cost frames out of the budget; false once it is spent (the connection goes). */
static bool budget_take(struct ism_wctx *w, struct ism_h2 *h, uint32_t cost)
{
	uint64_t refill = (w->now - h->budget_ms) * ISM_H2_BUDGET_PER_S / 1000;

	if (refill) {
		h->budget = (uint32_t)(h->budget + refill > ISM_H2_BUDGET ? ISM_H2_BUDGET
									  : h->budget + refill);
		h->budget_ms = w->now;
	}
	if (h->budget < cost) {
		h->budget = 0;
		return false;
	}
	h->budget -= cost;
	return true;
}

/* Whether the session takes new streams (it sent no GOAWAY naming its last). */
static bool taking(const struct ism_h2 *h)
{
	return h->state == ISM_H2_OPEN || h->state == ISM_H2_NOTICE;
}

/* The GOAWAY naming the last stream taken (NO_ERROR): streams after it are
 * refused, those before it finish. */
static void goaway(struct ism_h2 *h)
{
	nghttp2_submit_goaway(h->io.ng, NGHTTP2_FLAG_NONE,
			      nghttp2_session_get_last_proc_stream_id(h->io.ng), NGHTTP2_NO_ERROR,
			      NULL, 0);
	h->state = ISM_H2_GOAWAY;
}

/* The client floods: GOAWAY ENHANCE_YOUR_CALM, and nothing more is read. */
static int calm(struct ism_h2 *h, const char *what)
{
	ism_debug("%s: HTTP/2: %s flood: GOAWAY", h->s->peer, what);
	nghttp2_session_terminate_session(h->io.ng, NGHTTP2_ENHANCE_YOUR_CALM);
	h->state = ISM_H2_FAILED;
	return NGHTTP2_ERR_CALLBACK_FAILURE;
}

static int on_begin_frame(nghttp2_session *ng, const nghttp2_frame_hd *hd, void *ud)
{
	struct ism_h2 *h = ud;

	(void)ng;
	if (hd->type == NGHTTP2_HEADERS && !(hd->flags & NGHTTP2_FLAG_END_HEADERS)) {
		h->frag = 1;
		h->frag_ms = h->w->now;
	} else if (hd->type == NGHTTP2_CONTINUATION && (hd->flags & NGHTTP2_FLAG_END_HEADERS)) {
		h->frag = 0;
	}
	if (hd->type == NGHTTP2_WINDOW_UPDATE &&
	    ++h->wu_received > ISM_H2_WU_BASE + ISM_H2_WU_PER_STREAM * h->opened +
				   ISM_H2_WU_PER_DATA * h->data_sent)
		return calm(h, "WINDOW_UPDATE");
	if (hd->type == NGHTTP2_PRIORITY &&
	    ++h->prio_received > ISM_H2_PRIO_PER_STREAM * (1 + h->opened))
		return calm(h, "PRIORITY");
	if (hd->type == NGHTTP2_PING && !(hd->flags & NGHTTP2_FLAG_ACK) && h->sent_since_ping) {
		h->sent_since_ping = 0;
		return 0;
	}
	if (idle_frame(hd) && !budget_take(h->w, h, 1))
		return calm(h, "empty or control frame");
	return 0;
}

/* nghttp2 resets a stream the client got wrong; malformed requests are costly.
 * It is logged with Envoy's detail for nghttp2's error and its flag for a
 * client's protocol error. */
static int on_invalid_frame(nghttp2_session *ng, const nghttp2_frame *f, int lib_error, void *ud)
{
	struct ism_h2 *h = ud;
	struct ism_h2s *x = f->hd.stream_id != 0 ? h2s_of(h, f->hd.stream_id) : NULL;
	const char *details = lib_error == NGHTTP2_ERR_HTTP_HEADER ? "http2.invalid.header.field"
			      : lib_error == NGHTTP2_ERR_HTTP_MESSAGING
				  ? "http2.violation.of.messaging.rule"
				  : "http2.unknown.nghttp2.error";

	(void)ng;
	if (x != NULL && x->st != NULL && x->st->codec_details == NULL) {
		x->st->codec_details = details;
		if (x->st->flags == NULL)
			x->st->flags = "DPE";
	} else if (x != NULL && x->st == NULL && x->state == ISM_H2S_HEAD &&
		   f->hd.type == NGHTTP2_HEADERS) {
		/* Refused within its header block: never a request here. */
		ism_stream_refused_head(h->w, h->s, x->head_wire, details);
	}
	if (lib_error == NGHTTP2_ERR_HTTP_MESSAGING && taking(h) &&
	    !budget_take(h->w, h, ISM_H2_MALFORMED_COST))
		return calm(h, "malformed request");
	return 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
	struct ism_h2 *h = ud;
	struct ism_h2s *x = h2s_of(h, f->hd.stream_id);
	bool end = f->hd.flags & NGHTTP2_FLAG_END_STREAM;

	(void)ng;
	if (x == NULL)
		return 0;
	if (x->st != NULL)
		ism_h2_meter(x->st->meter, ISM_M_DOWN_HEAD_IN, ISM_M_DOWN_WIRE_IN, &f->hd);
	else if (f->hd.type == NGHTTP2_HEADERS)
		x->head_wire = (uint32_t)f->hd.length + 9;
	if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)
		return 0;
	if (f->hd.type == NGHTTP2_HEADERS)
		block_end(h, x);
	if (x->state == ISM_H2S_HEAD && f->hd.type == NGHTTP2_HEADERS) {
		request_head(h->w, h->s, x, end);
		return 0;
	}
	if (f->hd.type == NGHTTP2_HEADERS && x->st != NULL && !x->hdr.over)
		request_trailers(h->w, x);
	if (end && !x->rq.end) {
		x->rq.end = 1;
		deliver(h->w, x);
	}
	return 0;
}

static int on_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
		   void *ud)
{
	struct ism_h2 *h = ud;
	struct ism_h2s *x = h2s_of(h, id);
	const struct ism_limits *lim = &h->w->table->limits;
	struct ism_stream *st;

	(void)flags;
	if (x == NULL || x->st == NULL || x->state != ISM_H2S_ACTIVE || x->rq.end_given) {
		/* Answered already: the bytes are dropped and the window opens. */
		nghttp2_session_consume(ng, id, len);
		return 0;
	}
	st = x->st;
	st->bytes_in += len;
	st->req_seen += len;
	if (lim->max_request_body_bytes && st->req_seen > lim->max_request_body_bytes) {
		nghttp2_session_consume(ng, id, len);
		ism_h2in_drop(&h->io, x->id, &x->rq);
		ism_stream_refuse(h->w, st, NULL, 413, ISM_WHY_BODY_TOO_LARGE);
		return 0;
	}
	if (ism_h2in_add(&x->rq, data, len) < 0)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	deliver(h->w, x);
	return 0;
}

static int on_frame_send(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
	struct ism_h2 *h = ud;
	struct ism_h2s *x;

	(void)ng;
	/* Our resets for the client's faults count too: requests that make us
	 * reset them are a flood (CVE-2025-8671). Not those of an exchange that
	 * went as it may: NO_ERROR after a whole answer to a request whose body
	 * still came (RFC 9113 8.1), CANCEL and INTERNAL_ERROR for the
	 * upstream's or our own end of it. */
	if (f->hd.type == NGHTTP2_RST_STREAM && client_fault(f->rst_stream.error_code) &&
	    taking(h) && !budget_take(h->w, h, 1))
		calm(h, "reset stream");
	/* A GOAWAY of nghttp2's own for the client's fault (its rapid reset
	 * limit, a frame it refuses): a connection error, closed without
	 * lingering, as calm's. */
	if (f->hd.type == NGHTTP2_GOAWAY && f->goaway.error_code != NGHTTP2_NO_ERROR)
		h->state = ISM_H2_FAILED;
	x = f->hd.stream_id != 0 ? h2s_of(h, f->hd.stream_id) : NULL;
	if (x != NULL && x->st != NULL) {
		ism_h2_meter(x->st->meter, ISM_M_DOWN_HEAD_OUT, ISM_M_DOWN_WIRE_OUT, &f->hd);
		if (f->hd.type == NGHTTP2_DATA)
			x->st->bytes_out += f->hd.length;
	}
	if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)
		return 0;
	h->sent_since_ping = 1;
	h->data_sent += f->hd.type == NGHTTP2_DATA;
	if (x == NULL)
		return 0;
	x->moved_ms = h->w->now;
	if (f->hd.flags & NGHTTP2_FLAG_END_STREAM)
		x->end_sent = 1;
	if (f->hd.type == NGHTTP2_HEADERS)
		x->head_queued = 0;
	/* The head of a cut stream is framed: its reset follows at once. */
	if (x->state == ISM_H2S_CUT) {
		x->state = ISM_H2S_ENDED;
		if (!x->end_sent)
			nghttp2_submit_rst_stream(ng, NGHTTP2_FLAG_NONE, x->id,
						  NGHTTP2_INTERNAL_ERROR);
	}
	/* All the stream gave is framed: it hears so once this batch is sent. */
	if (x->notify && ism_h2body_drained(&x->resp))
		x->notify_batch = h->io.batch;
	return 0;
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *ud)
{
	struct ism_h2 *h = ud;
	struct ism_h2s *x = h2s_of(h, id);

	(void)ng;
	(void)code;
	if (x == NULL)
		return 0;
	x->ng_closed = 1;
	/* No more of its header blocks comes (a block it was in the middle of
	 * is the connection's to finish, h->frag): it no longer holds the
	 * connection to timeouts.requestHeader while its answer goes out. */
	block_end(h, x);
	nghttp2_session_set_stream_user_data(ng, id, NULL);
	switch ((enum ism_h2s_state)x->state) {
	case ISM_H2S_ACTIVE:
		/* Our END_STREAM went: the stream ends when the bytes are out. */
		if (x->end_sent && x->st != NULL)
			return 0;
		/* Reset by the client (Envoy's DR, downstream remote reset), or
		 * for its error: the stream ends now. */
		if (x->st != NULL) {
			struct ism_stream *st = x->st;

			x->st = NULL;
			if (st->flags == NULL)
				st->flags = "DR";
			ism_stream_abort(h->w, st);
		}
		break;
	case ISM_H2S_HEAD:
	case ISM_H2S_ENDED:
	case ISM_H2S_CUT:
		break;
	}
	ism_h2in_drop(&h->io, x->id, &x->rq);
	h2s_free(h, x);
	return 0;
}

static ssize_t on_read_body(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len,
			    uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	struct ism_h2s *x = src->ptr;
	ssize_t n = ism_h2body_read(&x->resp, len, flags);

	(void)ng;
	(void)id;
	(void)buf;
	/* Response trailers, once the body is all framed (gRPC's status). */
	if (*flags & NGHTTP2_DATA_FLAG_NO_END_STREAM)
		ism_h2_submit_trailers(&((struct ism_h2 *)ud)->io, x->id, &x->trl);
	return n;
}

static int on_send_data(nghttp2_session *ng, nghttp2_frame *f, const uint8_t *framehd, size_t len,
			nghttp2_data_source *src, void *ud)
{
	struct ism_h2s *x = src->ptr;

	(void)ng;
	return ism_h2body_send(&((struct ism_h2 *)ud)->io, &x->resp, f, framehd, len);
}

/* ---------- writing ---------- */

/* Streams whose bytes the completed send carried hear that they are out. */
static void notify_sent(struct ism_wctx *w, struct ism_h2 *h)
{
	struct ism_h2s *x, *next;

	h->io.busy++;
	for (x = h->streams; x != NULL; x = next) {
		next = x->next;
		if (!x->notify || !ism_h2io_out(&h->io, x->notify_batch))
			continue;
		x->notify = 0;
		x->notify_batch = 0;
		if (x->st != NULL)
			ism_stream_resp_sent(w, x->st);
	}
	h->io.busy--;
}

/* Whether the connection is done: nothing of ours in flight, and nghttp2
 * wants neither to read nor to write. That is a GOAWAY with no stream left
 * (ours, or the client's), or the GOAWAY of a connection error nghttp2 found
 * in a frame that returned no error to us (a SETTINGS on a stream, say): once
 * that GOAWAY is out nghttp2 frames nothing more, so a stream still open can
 * never be answered, and it ends with the connection (its upstream let go, as
 * when the client goes). */
static bool finished(const struct ism_h2 *h)
{
	switch ((enum ism_h2_state)h->state) {
	case ISM_H2_OPEN:
	case ISM_H2_NOTICE:
	case ISM_H2_GOAWAY:
		return !h->io.sending && !nghttp2_session_want_read(h->io.ng) &&
		       !nghttp2_session_want_write(h->io.ng);
	case ISM_H2_FAILED:
		return !h->io.sending && !nghttp2_session_want_write(h->io.ng);
	}
	return true;
}

/* ms after since, the worker's clock time (0 ms: none). */
static uint64_t due(uint64_t since, uint32_t ms)
{
	return ms ? since + ms : 0;
}

/* The session's deadline, from what it waits on: a send to go out
 * (timeouts.idle); a header block to end, a request's head or its trailers
 * (timeouts.requestHeader from its HEADERS, as HTTP/1.1 bounds a request head:
 * a block left unfinished holds the whole connection, which may read no other
 * frame; its stream says so or, reset, the connection's frames); with no
 * stream, the client's next one (timeouts.idle from the end of the last:
 * control frames such as PING, and our answers to them, do not count, as with
 * Envoy's idle_timeout). The earlier of a send's and a header block's. */
static void set_deadline(struct ism_wctx *w, struct ism_sess *s)
{
	const struct ism_timeouts *t = &w->table->timeouts;
	struct ism_h2 *h = s->h2;
	enum ism_sess_deadline kind = ISM_DL_NONE;
	uint64_t at = 0, head = 0, since = h->n_blocks ? h->block_ms : UINT64_MAX;

	if (h->frag && h->frag_ms < since)
		since = h->frag_ms;
	if (since != UINT64_MAX)
		head = due(since, t->request_header_ms);

	if (h->io.sending) {
		kind = ISM_DL_SEND;
		at = due(h->send_ms, t->idle_ms);
	} else if (h->n_streams == 0) {
		kind = ISM_DL_IDLE;
		at = due(h->unused_ms, t->idle_ms);
	}
	if (head && (at == 0 || head < at)) {
		kind = ISM_DL_HEADER;
		at = head;
	}
	/* Idle from now (once, not at every tick, which flushes too): the
	 * connection holds no output buffer. */
	if (kind == ISM_DL_IDLE && s->deadline_kind != ISM_DL_IDLE)
		ism_h2io_trim(&h->io);
	ism_sess_set_deadline_at(s, kind, at);
}

/* Frames what nghttp2 has and sends them when no send is in flight; closes a
 * finished connection. */
static void h2_flush(struct ism_wctx *w, struct ism_sess *s)
{
	struct ism_h2 *h = s->h2;
	const char *p;
	uint32_t len;
	int ret;

	if (h->io.busy)
		return;
	ret = ism_h2io_frame(&h->io, &p, &len);
	if (ret < 0 || (ret == 0 && finished(h))) {
		if (h->n_streams > 0)
			ism_debug("%s: HTTP/2: the session ended with %u streams open", s->peer,
				  h->n_streams);
		/* After a GOAWAY with every stream done, the client may still
		 * send (WINDOW_UPDATEs as it reads the last DATA, a PING): its
		 * bytes would meet a closed socket, whose reset drops what the
		 * kernel has not sent yet of the responses (nginx lingers
		 * there too). */
		if (ret == 0 && h->n_streams == 0 && h->state != ISM_H2_FAILED)
			ism_sess_linger(w, s);
		else
			ism_sess_close(w, s);
		return;
	}
	if (ret > 0) {
		h->send_ms = h->stir_ms = w->now;
		ism_sess_send(w, s, p, len, -1);
	}
	set_deadline(w, s);
}

/* After a call from a stream: flush after the batch of completions (the
 * responses of one batch, upstream completions, leave together). */
static void kick(struct ism_wctx *w, struct ism_sess *s)
{
	if (ism_h2io_kick(&s->h2->io))
		ism_w_kick(w, ism_ud(ISM_OP_CRECV, s->s.idx, s->s.gen));
}

void ism_h2_kicked(struct ism_wctx *w, uint64_t ud)
{
	struct ism_sess *s = w->sess.obj[(ud >> 32) & 0xffffff];

	/* Closed meanwhile (its slot may be another session's now). */
	if (s->s.gen != (uint32_t)ud || s->state != ISM_SESS_H2 || !ism_h2io_kicked(&s->h2->io))
		return;
	h2_flush(w, s);
}

/* ---------- the operations of streams ---------- */

static struct ism_h2s *sp_of(const struct ism_stream *st)
{
	return st->sp;
}

/* Submits the response whose fields nv holds; body: DATA follows. */
static int submit(struct ism_wctx *w, struct ism_stream *st, struct ism_h2nv *nv, bool body)
{
	struct ism_h2s *x = sp_of(st);
	nghttp2_data_provider dp = {.source.ptr = x, .read_callback = on_read_body};
	int rv =
	    nghttp2_submit_response(st->sess->h2->io.ng, x->id, nv->nv, nv->n, body ? &dp : NULL);

	ism_h2nv_free(nv);
	if (rv < 0)
		return -ENOMEM;
	x->head_queued = 1;
	x->notify = 1;
	x->moved_ms = w->now;
	kick(w, st->sess);
	return 0;
}

/* 100 Continue at once, a HEADERS frame before the response's (as Envoy's
 * connection manager answers Expect: 100-continue itself). */
static bool h2_cont(struct ism_wctx *w, struct ism_stream *st)
{
	struct ism_h2s *x = sp_of(st);
	nghttp2_nv nv = {(uint8_t *)":status", (uint8_t *)"100", 7, 3, NGHTTP2_NV_FLAG_NONE};

	if (nghttp2_submit_headers(st->sess->h2->io.ng, NGHTTP2_FLAG_NONE, x->id, NULL, &nv, 1,
				   NULL) != 0)
		return false;
	kick(w, st->sess);
	return true;
}

static int h2_head(struct ism_wctx *w, struct ism_stream *st, const struct ism_http_resp *resp,
		   uint8_t mode, const char *body, uint32_t len, bool done)
{
	struct ism_h2s *x = sp_of(st);
	const struct ism_table *t = w->table;
	struct ism_h2nv nv;
	char status[21], clen[21], svc[21];
	int64_t cl = resp->framing.content_length;
	bool has_body = mode != ISM_BODY_NONE && !(done && len == 0 && !x->resp.trailers);

	bool date = false;

	if (ism_h2nv_init(&nv, resp->n_headers + 7) < 0)
		return -ENOMEM;
	ISM_H2NV_ADD_LIT(&nv, ":status", status,
			 ism_fmt_num(status, (uint64_t)(resp->status > 0 ? resp->status : 0), 10));
	for (size_t i = 0; i < resp->n_headers; i++) {
		const struct ism_http_header *hd = &resp->headers[i];

		if (ism_http_end_to_end(&resp->framing, resp->headers, resp->n_headers, hd) &&
		    !ism_stream_field_replaced(w, st, hd)) {
			ism_h2nv_add(&nv, hd->name, hd->name_len, hd->value, hd->value_len);
			date = date || ism_http_header_is_date(hd);
		}
	}
	if (mode != ISM_BODY_CHUNKED && mode != ISM_BODY_CLOSE && cl >= 0 && resp->status != 204) {
		ISM_H2NV_ADD_LIT(&nv, "content-length", clen, ism_fmt_num(clen, (uint64_t)cl, 10));
	}
	/* The fields isthmus adds (spec.proxyHeaders). */
	if (ism_stream_own_server(w, st))
		ISM_H2NV_ADD_LIT(&nv, "server", t->server.p, t->server.len);
	if (ism_stream_own_svc_time(w, st))
		ISM_H2NV_ADD_LIT(&nv, ISM_SVC_TIME_NAME, svc,
				 ism_fmt_num(svc, ism_stream_service_ms(w, st), 10));
	if (!date)
		ISM_H2NV_ADD_LIT(&nv, "date", ism_w_date(w), ISM_HTTP_DATE_LEN);
	if (st->set_cookie)
		ISM_H2NV_ADD_LIT(&nv, "set-cookie", st->set_cookie, strlen(st->set_cookie));
	x->resp.b.len = x->resp.off = 0;
	if (ism_h2body_add(&st->sess->h2->io, 0, &x->resp, body, len, done) < 0) {
		ism_h2nv_free(&nv);
		return -ENOMEM;
	}
	if (submit(w, st, &nv, has_body) < 0)
		return -ENOMEM;
	if (len == 0 && !done) {
		/* A head alone is nghttp2's now, no buffer of the stream's: the
		 * body may follow at once, and go out in the same send. */
		x->notify = 0;
		return 0;
	}
	return 1;
}

static int h2_data(struct ism_wctx *w, struct ism_stream *st, const char *p, uint32_t len, int bid,
		   bool done)
{
	struct ism_h2s *x = sp_of(st);
	int ret = ism_h2body_add(&st->sess->h2->io, x->id, &x->resp, p, len, done);

	if (bid >= 0)
		ism_w_buf_recycle(w, bid);
	if (ret < 0)
		return -ENOMEM;
	if (len == 0 && !done)
		return 0;
	x->notify = 1;
	kick(w, st->sess);
	return 1;
}

static int h2_trailers(struct ism_wctx *w, struct ism_stream *st, const struct ism_http_header *h,
		       size_t n)
{
	struct ism_h2s *x = sp_of(st);

	(void)w;
	x->resp.trailers = x->resp.trailers || n > 0;
	return ism_buf_put_pairs(&x->trl, h, n);
}

/* The fields of an answer made here after the pseudo-header: Server
 * (spec.proxyHeaders.server), and Date unless lr's fields have one. */
static void local_fields(struct ism_wctx *w, const struct ism_stream *st,
			 const struct ism_local *lr, struct ism_h2nv *nv)
{
	if (ism_stream_own_server(w, st))
		ISM_H2NV_ADD_LIT(nv, "server", w->table->server.p, w->table->server.len);
	if (!ism_http_has_field(lr->hdrs, lr->n_hdrs, "date"))
		ISM_H2NV_ADD_LIT(nv, "date", ism_w_date(w), ISM_HTTP_DATE_LEN);
}

static int h2_local(struct ism_wctx *w, struct ism_stream *st, const struct ism_local *lr)
{
	struct ism_h2s *x = sp_of(st);
	struct ism_h2nv nv;
	char sts[8], clen[24];
	bool body = ism_http_resp_has_body(lr->status, "GET", 3);

	if (ism_h2nv_init(&nv, lr->n_hdrs + 6) < 0)
		return -ENOMEM;
	x->resp.b.len = x->resp.off = 0;
	if (st->grpc) {
		/* A gRPC client gets a gRPC error, trailers-only, as from Envoy. */
		struct ism_buf gb = {0};
		struct ism_http_header *g = NULL;
		int n = ism_stream_grpc_answer(st, lr, &gb, &g);

		ISM_H2NV_ADD_LIT(&nv, ":status", "200", 3);
		local_fields(w, st, lr, &nv);
		for (int i = 0; i < n; i++)
			ism_h2nv_add(&nv, g[i].name, g[i].name_len, g[i].value, g[i].value_len);
		ism_debug("%s gRPC %d %s (HTTP/2 stream %d)", st->sess->peer, lr->status, lr->why,
			  x->id);
		if (n < 0)
			ism_h2nv_free(&nv);
		n = n < 0 ? -ENOMEM : submit(w, st, &nv, false);
		ism_buf_free(&gb);
		free(g);
		return n;
	}
	snprintf(sts, sizeof(sts), "%d", lr->status);
	ISM_H2NV_ADD_LIT(&nv, ":status", sts, strlen(sts));
	local_fields(w, st, lr, &nv);
	for (size_t i = 0; i < lr->n_hdrs; i++)
		ism_h2nv_add(&nv, lr->hdrs[i].name, lr->hdrs[i].name_len, lr->hdrs[i].value,
			     lr->hdrs[i].value_len);
	if (body) {
		snprintf(clen, sizeof(clen), "%u", lr->body_len);
		ISM_H2NV_ADD_LIT(&nv, "content-length", clen, strlen(clen));
	}
	body = body && !st->is_head && lr->body_len > 0;
	if (body && ism_buf_append(&x->resp.b, lr->body, lr->body_len, UINT32_MAX) < 0) {
		ism_h2nv_free(&nv);
		return -ENOMEM;
	}
	x->resp.end = 1;
	ism_debug("%s %d %s (HTTP/2 stream %d)", st->sess->peer, lr->status, lr->why, x->id);
	return submit(w, st, &nv, body);
}

static void h2_want_body(struct ism_wctx *w, struct ism_stream *st)
{
	struct ism_h2s *x = sp_of(st);

	/* A whole body already given back, or none (every GET): nothing to
	 * credit, nothing more to deliver, no flush to ask for. */
	if (st->req_done && x->rq.fly.len == 0)
		return;
	/* What was handed over went to the upstream: the client may send more. */
	ism_h2in_want(&st->sess->h2->io, x->id, &x->rq);
	deliver(w, x);
	kick(w, st->sess);
}

/* The stream let go of x (ended or cut): the h2 stream follows. */
static void detach(struct ism_wctx *w, struct ism_sess *s, struct ism_h2s *x, uint32_t code,
		   bool reset)
{
	struct ism_h2 *h = s->h2;

	x->st = NULL;
	x->state = ISM_H2S_ENDED;
	x->notify = 0;
	ism_h2in_drop(&h->io, x->id, &x->rq);
	if (x->ng_closed) {
		h2s_free(h, x);
	} else if (reset) {
		/* The client's unread body is not wanted (RFC 9113 8.1), or the
		 * response cannot be finished. */
		nghttp2_submit_rst_stream(h->io.ng, NGHTTP2_FLAG_NONE, x->id, code);
	}
	kick(w, s);
}

static void h2_stream_done(struct ism_wctx *w, struct ism_sess *s, void *sp)
{
	struct ism_h2s *x = sp;

	detach(w, s, x, NGHTTP2_NO_ERROR, !x->rq.end);
}

static void h2_abort(struct ism_wctx *w, struct ism_sess *s, void *sp)
{
	struct ism_h2s *x = sp;

	/* A head still queued goes first (Envoy's codec frames it at once): the
	 * client sees the response begin, then the reset (on_frame_send). */
	if (x->head_queued && !x->ng_closed) {
		detach(w, s, x, 0, false);
		x->state = ISM_H2S_CUT;
		return;
	}
	detach(w, s, x, NGHTTP2_INTERNAL_ERROR, true);
}

const struct ism_sess_ops ism_h2_ops = {
    .cont = h2_cont,
    .head = h2_head,
    .data = h2_data,
    .trailers = h2_trailers,
    .local = h2_local,
    .want_body = h2_want_body,
    .stream_done = h2_stream_done,
    .abort = h2_abort,
};

/* ---------- the connection ---------- */

static int h2_init_once(void)
{
	if (h2_cbs != NULL)
		return 0;
	if (nghttp2_session_callbacks_new(&h2_cbs) != 0 || nghttp2_option_new(&h2_opt) != 0)
		return -ENOMEM;
	nghttp2_session_callbacks_set_send_callback(h2_cbs, on_send);
	nghttp2_session_callbacks_set_send_data_callback(h2_cbs, on_send_data);
	nghttp2_session_callbacks_set_on_begin_headers_callback(h2_cbs, on_begin_headers);
	nghttp2_session_callbacks_set_on_header_callback(h2_cbs, on_header);
	nghttp2_session_callbacks_set_on_frame_recv_callback(h2_cbs, on_frame_recv);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(h2_cbs, on_data);
	nghttp2_session_callbacks_set_on_frame_send_callback(h2_cbs, on_frame_send);
	nghttp2_session_callbacks_set_on_stream_close_callback(h2_cbs, on_stream_close);
	nghttp2_session_callbacks_set_on_begin_frame_callback(h2_cbs, on_begin_frame);
	nghttp2_session_callbacks_set_on_invalid_frame_recv_callback(h2_cbs, on_invalid_frame);
	/* Windows open as the upstream takes the bytes, not as they arrive. */
	nghttp2_option_set_no_auto_window_update(h2_opt, 1);
	/* nghttp2's defaults, named: rapid reset (CVE-2023-44487) sends GOAWAY
	 * past 1000 RST_STREAMs at 33 a second; CONTINUATION flood
	 * (CVE-2024-28182, 2024-27316) past 8 after a HEADERS; PING and
	 * SETTINGS ACKs queued past 1000 (a client that does not read). */
	nghttp2_option_set_stream_reset_rate_limit(h2_opt, 1000, 33);
	nghttp2_option_set_max_continuations(h2_opt, 8);
	nghttp2_option_set_max_outbound_ack(h2_opt, 1000);
	/* What an idle connection holds. A closed stream is not kept for the
	 * RFC 7540 priority tree (whose use RFC 9113 deprecates): nothing of a
	 * stream outlives it. Response fields are not indexed in an HPACK
	 * dynamic table (as HAProxy and nginx do not): up to 4 KiB of fields
	 * per connection, for about 10-30 bytes more per repeated field on the
	 * wire. */
	nghttp2_option_set_no_closed_streams(h2_opt, 1);
	nghttp2_option_set_max_deflate_dynamic_table_size(h2_opt, 0);
	return 0;
}

const nghttp2_option *ism_h2_option(void)
{
	return h2_init_once() < 0 ? NULL : h2_opt;
}

size_t ism_h2_settings(const struct ism_limits *lim, nghttp2_settings_entry *iv)
{
	iv[0] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
					 lim->h2_max_concurrent_streams};
	iv[1] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE,
					 lim->h2_initial_stream_window};
	iv[2] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE,
					 lim->h2_max_header_list};
	return ISM_H2_N_SETTINGS;
}

int ism_h2_start(struct ism_wctx *w, struct ism_sess *s)
{
	const struct ism_limits *lim = &w->table->limits;
	nghttp2_settings_entry iv[ISM_H2_N_SETTINGS + 1];
	size_t n_iv = ism_h2_settings(lim, iv);
	struct ism_h2 *h;
	nghttp2_mem mem;

	if (h2_init_once() < 0)
		return -ENOMEM;
	/* The session reads whatever comes (a peer's DATA is bounded by the
	 * windows, the rest by the frame budget): a multishot receive stays armed
	 * on plaintext, one submission for many reads. */
	ism_sock_multi(&s->s);
	h = calloc(1, sizeof(*h));
	if (h == NULL)
		return -ENOMEM;
	h->w = w;
	h->s = s;
	h->io.batch = 1;
	h->budget = ISM_H2_BUDGET;
	h->budget_ms = h->stir_ms = h->unused_ms = w->now;
	h->io.gauge = &w->st->h2_heap_bytes;
	h->io.pages = w->h2pages;
	ism_h2io_count(&h->io, sizeof(*h));
	mem = ism_h2io_mem(&h->io);
	if (nghttp2_session_server_new3(&h->io.ng, h2_cbs, h, h2_opt, &mem) != 0) {
		ism_h2io_free(&h->io);
		free(h);
		return -ENOMEM;
	}
	s->h2 = h;
	ism_wstat_add(&w->st->h2_sessions, 1);
	s->ops = &ism_h2_ops;
	s->state = ISM_SESS_H2;
	/* RFC 8441: WebSocket over HTTP/2 by extended CONNECT. */
	iv[n_iv++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1};
	if (nghttp2_submit_settings(h->io.ng, NGHTTP2_FLAG_NONE, iv, n_iv) ||
	    nghttp2_session_set_local_window_size(h->io.ng, NGHTTP2_FLAG_NONE, 0,
						  (int32_t)lim->h2_initial_conn_window))
		return -ENOMEM;
	if (s->in.len) {
		struct ism_buf in = s->in;

		s->in = (struct ism_buf){0};
		ism_h2_recv(w, s, in.p, in.len);
		ism_buf_free(&in);
	} else {
		ism_buf_free(&s->in);
		h2_flush(w, s);
		ism_sock_recv(w, &s->s);
	}
	/* The worker began to drain before the session knew it spoke HTTP/2
	 * (its preface or TLS handshake came in pieces): its GOAWAY, as the
	 * drain gave the others, naming the streams of what it read so far. */
	if (s->state == ISM_SESS_H2 && w->draining)
		ism_h2_drain(w, s);
	return 0;
}

void ism_h2_recv(struct ism_wctx *w, struct ism_sess *s, const char *p, uint32_t len)
{
	struct ism_h2 *h = s->h2;
	ssize_t n;

	h->stir_ms = w->now;
	ism_h2io_stir(&h->io);
	h->io.busy++;
	n = nghttp2_session_mem_recv(h->io.ng, (const uint8_t *)p, len);
	h->io.busy--;
	if (n < 0) {
		/* A connection error: nghttp2 has queued the GOAWAY (not for a
		 * bad preface, which is not HTTP/2 at all). */
		ism_debug("%s: HTTP/2: %s", s->peer, nghttp2_strerror((int)n));
		if (n == NGHTTP2_ERR_BAD_CLIENT_MAGIC) {
			ism_sess_close(w, s);
			return;
		}
		/* Past max_outbound_ack (a client that does not read its ACKs)
		 * or max_continuations: nghttp2 queues no GOAWAY itself. */
		if (n == NGHTTP2_ERR_FLOODED || n == NGHTTP2_ERR_TOO_MANY_CONTINUATIONS)
			nghttp2_session_terminate_session(h->io.ng, NGHTTP2_ENHANCE_YOUR_CALM);
		h->state = ISM_H2_FAILED;
	}
	/* A connection error nghttp2 found itself (too many streams, a bad
	 * frame) returns no error: its GOAWAY goes out, then the close
	 * (finished()). */
	h2_flush(w, s);
	if (s->state == ISM_SESS_H2 && h->state != ISM_H2_FAILED)
		ism_sock_recv(w, &s->s);
}

void ism_h2_sent(struct ism_wctx *w, struct ism_sess *s, int res)
{
	struct ism_h2 *h = s->h2;

	(void)res;
	ism_h2io_sent(&h->io);
	notify_sent(w, h);
	if (s->state == ISM_SESS_H2)
		h2_flush(w, s);
}

void ism_h2_expire(struct ism_wctx *w, struct ism_sess *s)
{
	struct ism_h2 *h = s->h2;

	switch ((enum ism_sess_deadline)s->deadline_kind) {
	case ISM_DL_IDLE:
		/* No stream for the idle time: GOAWAY, then the close (the
		 * GOAWAY's send is bounded as any send). */
		if (h->n_streams == 0 && taking(h)) {
			goaway(h);
			h2_flush(w, s);
			return;
		}
		ism_sess_close(w, s);
		return;
	case ISM_DL_HEADER:
		ism_debug("%s: HTTP/2: a request's header block unfinished after %u ms", s->peer,
			  w->table->timeouts.request_header_ms);
		ism_sess_close(w, s);
		return;
	case ISM_DL_LINGER: /* a lingering session is no longer HTTP/2's: ism_h1_expire's */
	case ISM_DL_SEND:
	case ISM_DL_NONE:
		ism_sess_close(w, s);
		return;
	}
	ISM_BUG_ON(1);
}

void ism_h2_tick(struct ism_wctx *w, struct ism_sess *s)
{
	struct ism_h2 *h = s->h2;
	uint64_t idle = w->table->timeouts.idle_ms;
	struct ism_h2s *x, *next;

	if (h->io.sending && w->now - h->send_ms >= idle) {
		/* The client reads nothing: its connection holds no more. */
		ism_debug("%s: HTTP/2: no send progress for %llu ms", s->peer,
			  (unsigned long long)idle);
		ism_sess_close(w, s);
		return;
	}
	if (h->state == ISM_H2_NOTICE && w->now - h->notice_ms >= ISM_H2_NOTICE_MS)
		goaway(h);
	h->io.busy++;
	for (x = h->streams; x != NULL; x = next) {
		struct ism_stream *st = x->st;

		next = x->next;
		/* A response waiting on a window the client keeps shut: the
		 * stream is reset and its upstream let go (a timeout, not a leak). */
		if (x->state != ISM_H2S_ACTIVE || st == NULL || ism_h2body_drained(&x->resp) ||
		    w->now - x->moved_ms < idle)
			continue;
		ism_debug("%s: HTTP/2 stream %d: no window for %llu ms", s->peer, x->id,
			  (unsigned long long)idle);
		if (st->flags == NULL)
			st->flags = "SI";
		x->st = NULL;
		ism_stream_abort(w, st);
		ism_buf_free(&x->resp.b);
		x->resp.off = 0;
		detach(w, s, x, NGHTTP2_CANCEL, true);
	}
	h->io.busy--;
	h2_flush(w, s);
	if (s->state == ISM_SESS_H2 && h->state == ISM_H2_OPEN && h->n_streams == 0 &&
	    ism_h2io_quiet(&h->io) && w->now - h->stir_ms >= ISM_H2IO_REST_MS)
		ism_h2io_rest(&h->io);
}

void ism_h2_drain(struct ism_wctx *w, struct ism_sess *s)
{
	struct ism_h2 *h = s->h2;

	if (h->state != ISM_H2_OPEN)
		return;
	/* Two GOAWAYs, as RFC 9113 6.8 advises and Envoy sends them: a client
	 * that sent a stream before it read the first would see it refused by
	 * a GOAWAY naming the last stream at once. */
	if (nghttp2_submit_shutdown_notice(h->io.ng) == 0) {
		h->state = ISM_H2_NOTICE;
		h->notice_ms = w->now;
	} else {
		goaway(h);
	}
	kick(w, s);
}

void ism_h2_close(struct ism_wctx *w, struct ism_sess *s)
{
	struct ism_h2 *h = s->h2;

	if (h == NULL)
		return;
	h->io.busy++; /* nothing is sent any more */
	while (h->streams != NULL) {
		struct ism_h2s *x = h->streams;

		if (x->st != NULL) {
			struct ism_stream *st = x->st;

			x->st = NULL;
			ism_stream_abort(w, st);
		}
		x->ng_closed = 1;
		h2s_free(h, x);
	}
}

void ism_h2_free(struct ism_sess *s)
{
	struct ism_h2 *h = s->h2;

	if (h == NULL)
		return;
	while (h->streams != NULL) {
		h->streams->ng_closed = 1;
		h2s_free(h, h->streams);
	}
	ism_h2io_free(&h->io);
	ism_wstat_add(&h->w->st->h2_sessions, (uint64_t)-1);
	free(h);
	s->h2 = NULL;
}
