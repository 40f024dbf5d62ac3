/* SPDX-License-Identifier: Apache-2.0 */
/* External authorization (worker/extauthz.h). A check's life, in the states
 * of its stream: it starts whole (its request has no body), then the states
 * of any stream (WAITING, ATTEMPT, RESPONSE, LOCAL) towards the sink below,
 * which keeps the answer's status, fields and body and, once the stream
 * ends, decides the request it checks, if that one still waits. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "lib/addr.h"
#include "lib/ascii.h"
#include "lib/grpc.h"
#include "lib/log.h"
#include "lib/pb.h"
#include "worker/authn.h"
#include "worker/extauthz.h"
#include "worker/mirror.h"
#include "worker/ring.h"
#include "worker/router.h"
#include "worker/session.h"
#include "worker/sock.h"
#include "worker/stream-int.h"
#include "worker/stream.h"
#include "worker/tls.h"
#include "worker/upstream.h"
#include "worker/xagrpc.h"

struct ism_xa_ctx {
	struct ism_sess sink; /* the session of every check */
};

/* One check: its stream's sp. */
struct xa_check {
	uint64_t of; /* the request it checks: idx << 32 | gen */
	bool grpc;   /* a gRPC call (the provider's kind when it went) */
	int status;  /* the answer's; 0: none */
	bool failed; /* no usable answer: an error */
	struct ism_buf fields;
	struct ism_buf body;
};

static const struct ism_sess_ops sink_ops;

static struct ism_xa_ctx *ctx_of(struct ism_wctx *w)
{
	if (w->xa == NULL) {
		w->xa = calloc(1, sizeof(*w->xa));
		if (w->xa == NULL)
			return NULL;
		w->xa->sink.ops = &sink_ops;
		w->xa->sink.state = ISM_SESS_STREAM;
	}
	return w->xa;
}

/* ---------- field names ---------- */

/* Whether a pattern of ps names the field name (len bytes). */
static bool pats_hold(struct ism_wctx *w, const struct ism_xa_pats *ps, const char *name,
		      size_t len)
{
	for (uint32_t i = 0; i < ps->n; i++)
		if (ism_router_strmatch(&ps->m[i], name, len, w->rs))
			return true;
	return false;
}

/* Whether the field name of len bytes is the literal lit, but for case. */
#define name_is(name, len, lit) ((len) == sizeof(lit) - 1 && ism_eq_nocase(name, lit, len))

/* Fields that frame a message or belong to one hop: never taken from an
 * answer, whatever the lists say (isthmus frames what it sends itself; the
 * answer's Trailer declares trailers of its own body). */
static bool framing(const char *name, size_t len)
{
	return ism_http_is_hop_by_hop(name, len) || name_is(name, len, "content-length") ||
	       name_is(name, len, "trailer") || (len > 0 && name[0] == ':');
}

/* ---------- the request kept ---------- */

static const char *keep(char **d, const char *s, size_t n)
{
	char *at = *d;

	if (s == NULL)
		return NULL;
	memcpy(at, s, n);
	at[n] = '\0';
	*d += n + 1;
	return at;
}

/* A copy of req (its fields in an array of their own, which an allowing
 * answer may grow). */
static struct ism_xa_wait *wait_new(const struct ism_http_req *req)
{
	size_t text =
	    req->method_len + req->target_len + req->path_len + req->query_len + req->host_len + 5;
	struct ism_xa_wait *x;
	char *d;

	for (size_t i = 0; i < req->n_headers; i++)
		text += req->headers[i].name_len + req->headers[i].value_len + 2;
	x = calloc(1, sizeof(*x));
	if (x == NULL)
		return NULL;
	x->text = malloc(text);
	x->req = *req;
	x->req.headers = malloc((req->n_headers + 1) * sizeof(*x->req.headers));
	if (x->text == NULL || x->req.headers == NULL) {
		ism_extauthz_wait_free(x);
		return NULL;
	}
	d = x->text;
	x->req.method = keep(&d, req->method, req->method_len);
	x->req.target = keep(&d, req->target, req->target_len);
	x->req.path = keep(&d, req->path, req->path_len);
	x->req.query = keep(&d, req->query, req->query_len);
	x->req.host = keep(&d, req->host, req->host_len);
	for (size_t i = 0; i < req->n_headers; i++) {
		const struct ism_http_header *h = &req->headers[i];

		x->req.headers[i] =
		    (struct ism_http_header){keep(&d, h->name, h->name_len), h->name_len,
					     keep(&d, h->value, h->value_len), h->value_len};
	}
	return x;
}

void ism_extauthz_wait_free(struct ism_xa_wait *x)
{
	if (x == NULL)
		return;
	free(x->req.headers);
	free(x->text);
	free(x->down_e);
	free(x->down_v);
	ism_buf_free(&x->query);
	ism_buf_free(&x->body);
	ism_buf_free(&x->answer);
	free(x);
}

/* ---------- the check request ---------- */

/* The values of req's fields named as field i, joined as Envoy's check
 * request joins them, once: nothing when an earlier field has that name
 * (ism_xa_field_first). 0, or -ENOMEM. */
static int put_joined(struct ism_buf *b, const struct ism_http_req *req, size_t i)
{
	const struct ism_http_header *h = &req->headers[i];
	const char *sep = name_is(h->name, h->name_len, "cookie") ? "; " : ",";
	int ret;

	if (!ism_xa_field_first(req, i))
		return 0;
	ret = ism_buf_append(b, h->name, (uint32_t)h->name_len, UINT32_MAX);
	ret |= ism_buf_append(b, ": ", 2, UINT32_MAX);
	ret |= ism_buf_append(b, h->value, (uint32_t)h->value_len, UINT32_MAX);
	for (size_t j = ism_xa_field_next(req, i, i); j < req->n_headers;
	     j = ism_xa_field_next(req, i, j)) {
		ret |= ism_buf_put_str(b, sep, UINT32_MAX);
		ret |= ism_buf_append(b, req->headers[j].value, (uint32_t)req->headers[j].value_len,
				      UINT32_MAX);
	}
	ret |= ism_buf_append(b, "\r\n", 2, UINT32_MAX);
	return ret ? -ENOMEM : 0;
}

/* includeRequestBodyInCheck: the body bytes the check carries (*len of
 * them, and whether the request's body has more); NULL when the check has no
 * body part (no setting, or a request without a body). */
static const char *check_body(const struct ism_extauthz *xa, const struct ism_xa_wait *x,
			      uint32_t *len, bool *partial)
{
	if (xa->body_max == 0 || !x->has_body)
		return NULL;
	*partial = x->body.len > xa->body_max;
	*len = *partial ? xa->body_max : x->body.len;
	return x->body.p != NULL ? x->body.p : "";
}

/* Whether field name is one of xa's additional ones (which replace it). */
static bool added(const struct ism_extauthz *xa, const char *name, size_t len)
{
	for (uint32_t i = 0; i < xa->n_add; i++)
		if (len == xa->add[i].name.len && ism_eq_nocase(name, xa->add[i].name.p, len))
			return true;
	return false;
}

/* The check, as Envoy's raw HTTP client makes it: the method, the path
 * after pathPrefix, Host, authorization and the listed fields, the body's
 * length, the additional fields; the body (includeRequestBodyInCheck as a
 * string, none as bytes). */
static int check_head(struct ism_wctx *w, const struct ism_extauthz *xa,
		      const struct ism_cluster *cl, const struct ism_xa_wait *x, struct ism_buf *b)
{
	const struct ism_http_req *req = &x->req;
	uint32_t body_len = 0;
	bool partial = false;
	const char *body = check_body(xa, x, &body_len, &partial);
	int ret = 0;

	ret |= ism_buf_append(b, req->method, (uint32_t)req->method_len, UINT32_MAX);
	ret |= ism_buf_append(b, " ", 1, UINT32_MAX);
	ret |= ism_buf_append(b, xa->path_prefix.p, xa->path_prefix.len, UINT32_MAX);
	ret |= ism_buf_append(b, req->path, (uint32_t)req->path_len, UINT32_MAX);
	if (req->query != NULL) {
		ret |= ism_buf_append(b, "?", 1, UINT32_MAX);
		ret |= ism_buf_append(b, req->query, (uint32_t)req->query_len, UINT32_MAX);
	}
	ret |= ism_buf_put_str(b, " HTTP/1.1\r\n", UINT32_MAX);
	if (!added(xa, "host", 4)) { /* else the additional field's (below) */
		ret |= ism_buf_put_str(b, "host: ", UINT32_MAX);
		if (req->host != NULL)
			ret |= ism_buf_append(b, req->host, (uint32_t)req->host_len, UINT32_MAX);
		else
			ret |= ism_buf_append(b, cl->host.p, cl->host.len, UINT32_MAX);
		ret |= ism_buf_put_str(b, "\r\n", UINT32_MAX);
	}
	for (size_t i = 0; i < req->n_headers; i++) {
		const struct ism_http_header *h = &req->headers[i];

		if (framing(h->name, h->name_len) || name_is(h->name, h->name_len, "host") ||
		    added(xa, h->name, h->name_len) ||
		    (!name_is(h->name, h->name_len, "authorization") &&
		     !pats_hold(w, &xa->req, h->name, h->name_len)))
			continue;
		ret |= put_joined(b, req, i);
	}
	if (body != NULL && !added(xa, ISM_XA_PARTIAL_BODY, sizeof(ISM_XA_PARTIAL_BODY) - 1) &&
	    pats_hold(w, &xa->req, ISM_XA_PARTIAL_BODY, sizeof(ISM_XA_PARTIAL_BODY) - 1))
		ret |= ism_buf_put_field(b, ISM_XA_PARTIAL_BODY, partial ? "true" : "false",
					 partial ? 4 : 5, UINT32_MAX);
	if (body == NULL || xa->body_bytes)
		body_len = 0;
	ret |= ism_put_num_line(b, "content-length: ", body_len, 10, UINT32_MAX);
	for (uint32_t i = 0; i < xa->n_add; i++)
		ret |= ism_buf_put_field(b, xa->add[i].name.p, xa->add[i].value.p,
					 xa->add[i].value.len, UINT32_MAX);
	ret |= ism_buf_append(b, "\r\n", 2, UINT32_MAX);
	if (body_len > 0)
		ret |= ism_buf_append(b, body, body_len, UINT32_MAX);
	return ret ? -ENOMEM : 0;
}

/* An identity of ssl's certificate (the peer's, or local's) for a
 * CheckRequest's principal, as Envoy takes it: the first URI SAN, else the
 * subject. Into b, NUL-terminated; "" without one. */
static const char *principal(SSL *ssl, bool local, struct ism_buf *b)
{
	char *comma;
	bool san;

	b->len = 0;
	if (ssl == NULL ||
	    ism_tls_peer_field(ssl, local ? ISM_HV_LOCAL_URI_SAN : ISM_HV_PEER_URI_SAN, b) < 0)
		return "";
	san = b->len > 0;
	if (!san &&
	    ism_tls_peer_field(ssl, local ? ISM_HV_LOCAL_SUBJECT : ISM_HV_PEER_SUBJECT, b) < 0)
		return "";
	if (ism_buf_append(b, "", 1, UINT32_MAX) < 0)
		return "";
	/* The URI SANs come joined with ','; a subject has commas of its own. */
	if (san && (comma = strchr(b->p, ',')) != NULL)
		*comma = '\0';
	return b->p;
}

/* The gRPC check of st's kept request: a Check call's head, and its
 * CheckRequest. */
static int check_grpc(const struct ism_stream *st, const struct ism_extauthz *xa,
		      const struct ism_cluster *cl, struct ism_buf *b)
{
	const struct ism_xa_wait *x = st->xa;
	struct ism_sess *s = st->sess;
	const struct ism_sess_pp *pp = ism_sess_pp(s);
	SSL *ssl = ism_sess_tls(s) ? s->s.x.ssl : NULL;
	struct ism_buf src_id = {0}, dst_id = {0};
	char dst[INET6_ADDRSTRLEN] = "", timeout[ISM_GRPC_TIMEOUT_MAX];
	struct ism_xa_grpc_req in = {.req = &x->req,
				     .scheme = x->https ? "https" : "http",
				     .protocol = x->req.h2		     ? "HTTP/2"
						 : x->req.minor_version == 0 ? "HTTP/1.0"
									     : "HTTP/1.1",
				     .id = ((uint64_t)st->idx << 32) | st->gen,
				     .size = x->req.framing.content_length,
				     .src_ip = s->peer,
				     .src_port = s->peer_port,
				     .dst_ip = dst,
				     .sni = s->sni};
	struct ism_pbw msg = {0};
	int ret;

	in.body = check_body(xa, x, &in.body_len, &in.partial);
	in.raw_body = xa->body_bytes;
	clock_gettime(CLOCK_REALTIME, &in.time);
	if (pp == NULL || !ism_addr_text(&pp->dst.sa, dst, &in.dst_port))
		dst[0] = '\0';
	in.src_principal = principal(ssl, false, &src_id);
	in.dst_principal = principal(ssl, true, &dst_id);
	ism_xa_grpc_request(&in, &msg);
	ism_buf_free(&src_id);
	ism_buf_free(&dst_id);
	if (msg.err) {
		ism_pbw_free(&msg);
		return -ENOMEM;
	}
	ret = ism_buf_put_str(b, "POST " ISM_XA_GRPC_PATH " HTTP/1.1\r\n", UINT32_MAX);
	ret |= ism_buf_put_field(b, "host", cl->host.p, cl->host.len, UINT32_MAX);
	ret |= ism_buf_put_str(b, "content-type: application/grpc\r\n", UINT32_MAX);
	ret |= ism_buf_put_field(b, "grpc-timeout", timeout,
				 ism_grpc_timeout_fmt(timeout, xa->timeout_ms), UINT32_MAX);
	ret |= ism_put_num_line(b, "content-length: ", msg.len, 10, UINT32_MAX);
	ret |= ism_buf_append(b, "\r\n", 2, UINT32_MAX);
	ret |= ism_buf_append(b, msg.p, (uint32_t)msg.len, UINT32_MAX);
	ism_pbw_free(&msg);
	return ret < 0 ? -ENOMEM : 0;
}

/* The check of st's kept request into b, which shows X-Forwarded-Proto,
 * X-Forwarded-For and X-Request-Id as the upstream gets them
 * (ism_router_header), as Envoy's
 * ext_authz filter reads the header map its connection manager changed: an
 * authorizer that reads them gets the connection's scheme, not what a
 * client said. The kept request itself stays as it came. 0, or -ENOMEM. */
static int check_build(struct ism_wctx *w, struct ism_stream *st, const struct ism_extauthz *xa,
		       const struct ism_cluster *cl, struct ism_buf *b)
{
	struct ism_http_req *req = &st->xa->req;
	struct ism_http_header *kept = req->headers, *h;
	size_t n_kept = req->n_headers, cap = n_kept + 3; /* the edge's three may be new */
	struct ism_buf pairs = {0};
	int ret = -ENOMEM;

	h = malloc(cap * sizeof(*h));
	if (h != NULL && ism_router_edge_pairs(req, w->rs, &pairs) == 0) {
		req->headers = h;
		req->n_headers = ism_buf_get_pairs(&pairs, h, cap);
		ret = xa->grpc ? check_grpc(st, xa, cl, b) : check_head(w, xa, cl, st->xa, b);
		req->headers = kept;
		req->n_headers = n_kept;
	}
	ism_buf_free(&pairs);
	free(h);
	return ret < 0 ? -ENOMEM : 0;
}

/* What chk's answer (or its failure) decides for the request it checks. */
static void decide(struct ism_wctx *w, struct xa_check *chk);

struct ism_xa_wait *ism_extauthz_keep(struct ism_wctx *w, struct ism_stream *st,
				      const struct ism_http_req *req, const char *body,
				      uint32_t len, bool req_done)
{
	struct ism_xa_wait *x;

	if (ctx_of(w) == NULL)
		return NULL;
	x = wait_new(req);
	if (x == NULL || ism_buf_append(&x->body, body, len, UINT32_MAX) < 0) {
		ism_extauthz_wait_free(x);
		return NULL;
	}
	x->req_done = req_done;
	x->has_body = !req_done || len > 0;
	x->cap = ISM_REPLAY_MAX;
	st->xa = x;
	st->state = ISM_ST_AUTHZ;
	return x;
}

/* includeRequestBodyInCheck: whether the body the check carries is there
 * (all of it, or with allowPartialMessage its first body_max bytes), as
 * Envoy's filter buffers it first; if not, more is asked for, or a body over
 * the bound is answered 413 as Envoy's buffer limit answers it. A WebSocket
 * upgrade is checked at once, as Envoy does not buffer one. */
static bool body_read(struct ism_wctx *w, struct ism_stream *st, const struct ism_extauthz *xa)
{
	struct ism_xa_wait *x = st->xa;

	x->reading = false;
	st->deadline_kind = ISM_SDL_NONE;
	st->deadline = 0;
	if (xa->body_max == 0 || !x->has_body || st->upgrade)
		return true;
	if (x->body.len > xa->body_max && !xa->body_partial) {
		ism_stream_local(w, st, 413, ISM_WHY_BODY_TOO_LARGE, true);
		return false;
	}
	if (!x->req_done && !(xa->body_partial && x->body.len >= xa->body_max)) {
		/* Each piece within timeouts.idle of the last (Envoy's stream
		 * idle timeout). */
		x->reading = true;
		ism_stream_set_deadline(w, st, ISM_SDL_BODY, st->read_idle_ms);
		st->sess->ops->want_body(w, st);
		return false;
	}
	/* What comes while the check runs is kept as without the setting. */
	x->cap = x->body.len + ISM_REPLAY_MAX;
	return true;
}

int ism_extauthz_send(struct ism_wctx *w, struct ism_stream *st)
{
	const struct ism_table *t = w->table;
	const struct ism_extauthz *xa = t->authz.xa;
	struct xa_check *chk;
	struct ism_stream *c;
	const struct ism_cluster *cl;

	if (xa == NULL) {
		/* A reload took the CUSTOM policy away while the body was read
		 * for the check: it goes on unchecked, as decide() lets one on. */
		ism_stream_authz_allow(w, st);
		return 0;
	}
	if (xa->cluster >= t->n_clusters)
		return -ENOMEM;
	if (!body_read(w, st, xa))
		return 0;
	cl = &t->clusters[xa->cluster];
	chk = calloc(1, sizeof(*chk));
	c = chk != NULL ? ism_stream_new(w, &w->xa->sink) : NULL;
	if (c == NULL) {
		free(chk);
		return -ENOMEM;
	}
	chk->of = ((uint64_t)st->idx << 32) | st->gen;
	chk->grpc = xa->grpc;
	c->sp = chk;
	c->mirror = 1;	/* an internal stream: its sink takes the response */
	c->counted = 1; /* not in the worker's, listener's or route's counters */
	c->cluster = xa->cluster;
	c->is_head = st->is_head && !xa->grpc;
	c->idempotent = 1; /* no body: a stale connection's check goes again */
	c->req_done = 1;
	c->route_deadline = w->now + xa->timeout_ms;
	if (cl->tls.mode != ISM_TLS_NONE)
		snprintf(c->up_sni, sizeof(c->up_sni), "%s", cl->host.p);
	c->grpc = xa->grpc;
	st->xa->check = ((uint64_t)c->idx << 32) | c->gen;
	st->xa->checking = true;
	if (check_build(w, st, xa, cl, &c->replay) < 0 || ism_stream_mirror_start(w, c) < 0) {
		st->xa->checking = false;
		/* Not started: an error, as Envoy's when its cluster cannot be had. */
		c->sp = NULL;
		ism_stream_abort(w, c);
		chk->failed = true;
		decide(w, chk);
		free(chk);
	}
	return 0;
}

/* ---------- the answer ---------- */

/* The request chk checks, if it still waits for it. */
static struct ism_stream *checked(struct ism_wctx *w, const struct xa_check *chk)
{
	uint32_t idx = (uint32_t)(chk->of >> 32), gen = (uint32_t)chk->of;
	struct ism_stream *st;

	if (idx >= w->streams.n || w->streams.gen[idx] != gen)
		return NULL;
	st = w->streams.obj[idx];
	return st->state == ISM_ST_AUTHZ && st->xa != NULL ? st : NULL;
}

/* Envoy's local reply of ext_authz: status, body, fields; flag UAEX. */
static void refuse(struct ism_wctx *w, struct ism_stream *st, int status, const char *details,
		   const char *body, uint32_t len, const struct ism_http_header *h, size_t n)
{
	char why[256];
	size_t k = 0;

	/* What a gRPC client gets as grpc-message: the body's first line. */
	for (; k < len && k < sizeof(why) - 1 && body[k] != '\r' && body[k] != '\n'; k++)
		why[k] = body[k] >= 0x20 && body[k] != 0x7f ? body[k] : ' ';
	why[k] = '\0';
	free(st->denied);
	st->denied = strdup(details);
	st->codec_details = st->denied;
	ism_stream_answer(w, st,
			  &(struct ism_local){.status = status,
					      .why = k > 0 ? why : details,
					      .body = body,
					      .body_len = len,
					      .hdrs = h,
					      .n_hdrs = n},
			  ISM_XA_FLAG);
}

/* Whether a denying answer's field may reach the client at all: never one
 * that frames the answer, nor host, nor its Server where isthmus writes its
 * own (Envoy's connection manager overwrites it). */
static bool deny_passes(struct ism_wctx *w, const struct ism_stream *st, const char *name,
			size_t len)
{
	return !framing(name, len) && !name_is(name, len, "host") &&
	       !(name_is(name, len, "server") && ism_stream_own_server(w, st));
}

/* A denying answer's fields the client gets: those headersToDownstreamOnDeny
 * names, with www-authenticate and location; without the list, all that
 * deny_passes. Into h (cap); their count. */
static size_t deny_fields(struct ism_wctx *w, const struct ism_stream *st,
			  const struct ism_extauthz *xa, const struct ism_http_header *in, size_t n,
			  struct ism_http_header *h, size_t cap)
{
	size_t k = 0;

	for (size_t i = 0; i < n && k < cap; i++) {
		const char *name = in[i].name;
		size_t len = in[i].name_len;

		if (!deny_passes(w, st, name, len))
			continue;
		if (xa->deny_all || pats_hold(w, &xa->down_deny, name, len) ||
		    name_is(name, len, "www-authenticate") || name_is(name, len, "location"))
			h[k++] = in[i];
	}
	return k;
}

/* The kept request's fields of name removed. */
static void drop_field(struct ism_http_req *req, const char *name, size_t len)
{
	size_t k = 0;

	for (size_t i = 0; i < req->n_headers; i++)
		if (req->headers[i].name_len != len ||
		    !ism_eq_nocase(req->headers[i].name, name, len))
			req->headers[k++] = req->headers[i];
	req->n_headers = k;
}

/* An allowing answer's fields (in, n; pointing into x->answer): those
 * headersToUpstreamOnAllow names replace the request's of their name (the
 * last of a name wins, as Envoy sets them), those headersToDownstreamOnAllow
 * names are added to the response. */
static int allow_fields(struct ism_wctx *w, const struct ism_extauthz *xa, struct ism_xa_wait *x,
			const struct ism_http_header *in, size_t n)
{
	struct ism_http_header *grown;

	/* Room for every field of the answer, either way (n is at most
	 * ISM_XA_FIELDS_MAX). */
	if (xa->up.n > 0) {
		grown = realloc(x->req.headers, (x->req.n_headers + n + 1) * sizeof(*grown));
		if (grown == NULL)
			return -ENOMEM;
		x->req.headers = grown;
	}
	if (xa->down_allow.n > 0) {
		x->down_e = calloc(n + 1, sizeof(*x->down_e));
		x->down_v = calloc(n + 1, sizeof(*x->down_v));
		if (x->down_e == NULL || x->down_v == NULL)
			return -ENOMEM;
	}
	for (size_t i = 0; i < n; i++) {
		const struct ism_http_header *h = &in[i];

		if (framing(h->name, h->name_len))
			continue;
		if (xa->up.n > 0 && pats_hold(w, &xa->up, h->name, h->name_len)) {
			drop_field(&x->req, h->name, h->name_len);
			x->req.headers[x->req.n_headers++] = *h;
			if (name_is(h->name, h->name_len, "host")) {
				x->req.host = h->value;
				x->req.host_len = h->value_len;
			}
		}
		if (xa->down_allow.n > 0 && pats_hold(w, &xa->down_allow, h->name, h->name_len)) {
			x->down_v[x->down.n] = (struct ism_str){h->value, (uint32_t)h->value_len};
			x->down_e[x->down.n] =
			    (struct ism_hdr_edit){.name = {h->name, (uint32_t)h->name_len},
						  .n_values = 1,
						  .values = &x->down_v[x->down.n]};
			x->down.n++;
		}
	}
	x->down.e = x->down_e;
	return 0;
}

/* An error (Envoy's): failOpen lets the request on, else statusOnError. */
static void errored(struct ism_wctx *w, struct ism_stream *st, const struct ism_extauthz *xa)
{
	if (xa->fail_open) {
		ism_wstat_add(&w->st->ext_authz[ISM_XA_R_FAIL_OPEN], 1);
		ism_stream_authz_allow(w, st);
		return;
	}
	ism_wstat_add(&w->st->ext_authz[ISM_XA_R_ERROR], 1);
	refuse(w, st, xa->status_on_error, ISM_XA_ERROR, "", 0, NULL, 0);
}

/* The last value of the answer's field name (head or trailers); NULL. */
static const char *answer_field(const struct xa_check *chk, const char *name)
{
	struct ism_http_header h[ISM_XA_FIELDS_MAX];
	size_t n = ism_buf_get_pairs(&chk->fields, h, ISM_XA_FIELDS_MAX);
	const char *v = NULL;

	for (size_t i = 0; i < n; i++)
		if (ism_http_header_is(&h[i], name))
			v = h[i].value;
	return v;
}

/* The kept request's query as a CheckResponse edits it: the keys to set or
 * remove dropped, then each one set appended. 0, or -ENOMEM. */
static int edit_query(struct ism_xa_wait *x, const struct ism_xa_grpc_resp *r)
{
	const char *q = x->req.query, *end = q != NULL ? q + x->req.query_len : NULL;
	struct ism_query_param p;
	struct ism_buf b = {0};
	int ret = 0;

	if (r->qset.n == 0 && r->qrm.n == 0)
		return 0;
	while (ism_query_next(&q, end, &p)) {
		bool drop = false;

		for (uint32_t i = 0; i < r->qrm.n && !drop; i++)
			drop = r->qrm.f[i].name_len == p.name_len &&
			       memcmp(r->qrm.f[i].name, p.name, p.name_len) == 0;
		for (uint32_t i = 0; i < r->qset.n && !drop; i++)
			drop = r->qset.f[i].name_len == p.name_len &&
			       memcmp(r->qset.f[i].name, p.name, p.name_len) == 0;
		if (!drop && p.len > 0) {
			if (b.len > 0)
				ret |= ism_buf_append(&b, "&", 1, UINT32_MAX);
			ret |= ism_buf_append(&b, p.name, (uint32_t)p.len, UINT32_MAX);
		}
	}
	for (uint32_t i = 0; i < r->qset.n; i++) {
		if (b.len > 0)
			ret |= ism_buf_append(&b, "&", 1, UINT32_MAX);
		ret |= ism_buf_append(&b, r->qset.f[i].name, r->qset.f[i].name_len, UINT32_MAX);
		ret |= ism_buf_append(&b, "=", 1, UINT32_MAX);
		ret |= ism_buf_append(&b, r->qset.f[i].value, r->qset.f[i].value_len, UINT32_MAX);
	}
	if (ret < 0) {
		ism_buf_free(&b);
		return -ENOMEM;
	}
	ism_buf_free(&x->query);
	x->query = b;
	x->req.query = b.len > 0 ? b.p : NULL;
	x->req.query_len = b.len;
	return 0;
}

/* An allowing CheckResponse's edits of the kept request and of the response
 * (their strings in x->answer). 0, or -ENOMEM. */
static int grpc_edits(struct ism_xa_wait *x, const struct ism_xa_grpc_resp *r)
{
	struct ism_http_header *grown;

	grown = realloc(x->req.headers, (x->req.n_headers + r->hdrs.n + 1) * sizeof(*grown));
	if (grown == NULL)
		return -ENOMEM;
	x->req.headers = grown;
	for (uint32_t i = 0; i < r->remove.n; i++) {
		const struct ism_xa_field_opt *f = &r->remove.f[i];

		/* Envoy removes neither pseudo-headers nor Host. */
		if (!framing(f->name, f->name_len) && !name_is(f->name, f->name_len, "host"))
			drop_field(&x->req, f->name, f->name_len);
	}
	for (uint32_t i = 0; i < r->hdrs.n; i++) {
		const struct ism_xa_field_opt *f = &r->hdrs.f[i];

		if (framing(f->name, f->name_len))
			continue;
		if (!f->append)
			drop_field(&x->req, f->name, f->name_len);
		x->req.headers[x->req.n_headers++] =
		    (struct ism_http_header){f->name, f->name_len, f->value, f->value_len};
		if (name_is(f->name, f->name_len, "host")) {
			x->req.host = f->value;
			x->req.host_len = f->value_len;
		}
	}
	if (r->resp.n > 0) {
		x->down_e = calloc(r->resp.n, sizeof(*x->down_e));
		x->down_v = calloc(r->resp.n, sizeof(*x->down_v));
		if (x->down_e == NULL || x->down_v == NULL)
			return -ENOMEM;
		for (uint32_t i = 0; i < r->resp.n; i++) {
			const struct ism_xa_field_opt *f = &r->resp.f[i];

			if (framing(f->name, f->name_len))
				continue;
			x->down_v[x->down.n] = (struct ism_str){f->value, f->value_len};
			x->down_e[x->down.n] =
			    (struct ism_hdr_edit){.name = {f->name, f->name_len},
						  .drop = !f->append,
						  .n_values = 1,
						  .values = &x->down_v[x->down.n]};
			x->down.n++;
		}
		x->down.e = x->down_e;
	}
	return edit_query(x, r);
}

/* The gRPC service's answer: a CheckResponse in a 200 whose grpc-status is
 * 0; anything else is an error. */
static void decide_grpc(struct ism_wctx *w, struct ism_stream *st, const struct ism_extauthz *xa,
			struct xa_check *chk)
{
	struct ism_xa_grpc_resp r = {0};
	struct ism_http_header *h;
	const char *gs = answer_field(chk, "grpc-status");
	size_t n = 0;

	if (chk->failed || chk->status != 200 || gs == NULL || strcmp(gs, "0") != 0 ||
	    ism_xa_grpc_response((const uint8_t *)chk->body.p, chk->body.len, &r) < 0) {
		ism_xa_grpc_resp_free(&r);
		errored(w, st, xa);
		return;
	}
	if (!r.ok) {
		ism_wstat_add(&w->st->ext_authz[ISM_XA_R_DENIED], 1);
		h = malloc((r.hdrs.n + 1) * sizeof(*h));
		for (uint32_t i = 0; h != NULL && i < r.hdrs.n; i++)
			if (deny_passes(w, st, r.hdrs.f[i].name, r.hdrs.f[i].name_len))
				h[n++] = (struct ism_http_header){
				    r.hdrs.f[i].name, r.hdrs.f[i].name_len, r.hdrs.f[i].value,
				    r.hdrs.f[i].value_len};
		refuse(w, st, r.status, ISM_XA_DENIED, r.body ? r.body : "", r.body_len, h, n);
		free(h);
		ism_xa_grpc_resp_free(&r);
		return;
	}
	ism_wstat_add(&w->st->ext_authz[ISM_XA_R_OK], 1);
	/* The edits point into the answer, which the request keeps now. */
	st->xa->answer = chk->body;
	chk->body = (struct ism_buf){0};
	if (grpc_edits(st->xa, &r) < 0) {
		ism_xa_grpc_resp_free(&r);
		ism_stream_local(w, st, 503, "out of memory", false);
		return;
	}
	ism_xa_grpc_resp_free(&r);
	ism_stream_authz_allow(w, st);
}

/* The HTTP service's answer. */
static void decide_http(struct ism_wctx *w, struct ism_stream *st, const struct ism_extauthz *xa,
			struct xa_check *chk)
{
	struct ism_http_header h[ISM_XA_FIELDS_MAX];
	size_t n;

	if (chk->failed || chk->status >= 500 || chk->status < 200) {
		errored(w, st, xa);
		return;
	}
	n = ism_buf_get_pairs(&chk->fields, h, ISM_XA_FIELDS_MAX);
	if (chk->status != 200) {
		ism_wstat_add(&w->st->ext_authz[ISM_XA_R_DENIED], 1);
		n = deny_fields(w, st, xa, h, n, h, ISM_XA_FIELDS_MAX);
		refuse(w, st, chk->status, ISM_XA_DENIED, chk->body.p ? chk->body.p : "",
		       chk->body.len, h, n);
		return;
	}
	ism_wstat_add(&w->st->ext_authz[ISM_XA_R_OK], 1);
	/* The fields point into the answer, which the request keeps now. */
	st->xa->answer = chk->fields;
	chk->fields = (struct ism_buf){0};
	if (allow_fields(w, xa, st->xa, h, n) < 0) {
		ism_stream_local(w, st, 503, "out of memory", false);
		return;
	}
	ism_stream_authz_allow(w, st);
}

static void decide(struct ism_wctx *w, struct xa_check *chk)
{
	struct ism_stream *st = checked(w, chk);
	const struct ism_extauthz *xa = w->table->authz.xa;

	if (st == NULL)
		return;		  /* its client went away meanwhile */
	st->xa->checking = false; /* this check, ending */
	/* A reload that came meanwhile routed the request again on the new
	 * table (ism_streams_regen); the check stands, as Envoy's in-flight
	 * request keeps its filters. */
	if (xa == NULL) {
		/* No CUSTOM policy now: nothing to apply of the answer. */
		ism_stream_authz_allow(w, st);
		return;
	}
	/* The answer is read as the kind of service it came from (a reload
	 * may have changed the provider's kind meanwhile). */
	if (chk->grpc)
		decide_grpc(w, st, xa, chk);
	else
		decide_http(w, st, xa, chk);
}

/* ---------- the sink: the session of every check ---------- */

static void take_body(struct xa_check *chk, const char *p, uint32_t len)
{
	if (chk->body.len + len > ISM_XA_BODY_MAX ||
	    ism_buf_append(&chk->body, p, len, UINT32_MAX) < 0)
		chk->failed = true;
}

static int sink_head(struct ism_wctx *w, struct ism_stream *c, const struct ism_http_resp *resp,
		     uint8_t mode, const char *body, uint32_t len, bool done)
{
	struct xa_check *chk = c->sp;

	(void)mode;
	(void)done;
	chk->status = resp->status;
	if (ism_buf_put_pairs(&chk->fields, resp->headers, resp->n_headers) < 0)
		chk->failed = true;
	take_body(chk, body, len);
	ism_mirror_later(w, c);
	return 1;
}

static int sink_data(struct ism_wctx *w, struct ism_stream *c, const char *p, uint32_t len, int bid,
		     bool done)
{
	(void)done;
	take_body(c->sp, p, len);
	if (bid >= 0)
		ism_w_buf_recycle(w, bid);
	return 0;
}

/* A gRPC answer's trailers: grpc-status is there. */
static int sink_trailers(struct ism_wctx *w, struct ism_stream *c, const struct ism_http_header *h,
			 size_t n)
{
	struct xa_check *chk = c->sp;

	(void)w;
	if (ism_buf_put_pairs(&chk->fields, h, n) < 0)
		chk->failed = true;
	return 0;
}

/* An answer made here for a check: its attempt failed (no healthy
 * endpoint, connect, timeout, reset, overflow). */
static int sink_local(struct ism_wctx *w, struct ism_stream *c, const struct ism_local *lr)
{
	struct xa_check *chk = c->sp;

	(void)lr;
	chk->failed = true;
	ism_mirror_later(w, c);
	return 0;
}

static void sink_end(struct ism_wctx *w, struct ism_sess *s, void *sp)
{
	struct xa_check *chk = sp;

	(void)s;
	if (chk == NULL)
		return;
	decide(w, chk);
	ism_buf_free(&chk->fields);
	ism_buf_free(&chk->body);
	free(chk);
}

static void sink_abort(struct ism_wctx *w, struct ism_sess *s, void *sp)
{
	struct xa_check *chk = sp;

	if (chk != NULL)
		chk->failed = true;
	sink_end(w, s, sp);
}

static const struct ism_sess_ops sink_ops = {
    .cont = ism_sess_no_continue,
    .head = sink_head,
    .data = sink_data,
    .trailers = sink_trailers,
    .local = sink_local,
    .want_body = ism_sess_whole_request,
    .stream_done = sink_end,
    .abort = sink_abort,
};

void ism_extauthz_free(struct ism_wctx *w)
{
	if (w->xa == NULL)
		return;
	free(w->xa->sink.pp);
	free(w->xa);
	w->xa = NULL;
}

void ism_extauthz_gone(struct ism_wctx *w, struct ism_stream *st)
{
	struct ism_xa_wait *x = st->xa;
	uint32_t idx = (uint32_t)(x->check >> 32), gen = (uint32_t)x->check;
	struct ism_stream *c;

	st->xa = NULL;
	if (x->checking && idx < w->streams.n && w->streams.gen[idx] == gen &&
	    (c = w->streams.obj[idx])->sess == &w->xa->sink && c->sp != NULL) {
		/* Its sink forgets it: nothing decides for a request gone. */
		struct xa_check *chk = c->sp;

		c->sp = NULL;
		ism_buf_free(&chk->fields);
		ism_buf_free(&chk->body);
		free(chk);
		ism_stream_abort(w, c);
	}
	ism_extauthz_wait_free(x);
}
