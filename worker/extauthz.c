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

#include "lib/ascii.h"
#include "lib/log.h"
#include "worker/extauthz.h"
#include "worker/mirror.h"
#include "worker/ring.h"
#include "worker/session.h"
#include "worker/sock.h"
#include "worker/stream-int.h"
#include "worker/stream.h"
#include "worker/upstream.h"

struct ism_xa_ctx {
	struct ism_sess sink; /* the session of every check */
};

/* One check: its stream's sp. */
struct xa_check {
	uint64_t of; /* the request it checks: idx << 32 | gen */
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

static bool pat_holds(const struct ism_xa_pat *p, const char *name, size_t len)
{
	switch ((enum ism_xa_pat_kind)p->kind) {
	case ISM_XA_EXACT:
		return len == p->s.len && ism_eq_nocase(name, p->s.p, len);
	case ISM_XA_PREFIX:
		return len >= p->s.len && ism_eq_nocase(name, p->s.p, p->s.len);
	case ISM_XA_SUFFIX:
		return len >= p->s.len && ism_eq_nocase(name + len - p->s.len, p->s.p, p->s.len);
	}
	return false;
}

static bool pats_hold(const struct ism_xa_pats *ps, const char *name, size_t len)
{
	for (uint32_t i = 0; i < ps->n; i++)
		if (pat_holds(&ps->p[i], name, len))
			return true;
	return false;
}

/* Whether the field name of len bytes is the literal lit, but for case. */
#define name_is(name, len, lit) ((len) == sizeof(lit) - 1 && ism_eq_nocase(name, lit, len))

/* Fields that frame a message or belong to one hop: never taken from an
 * answer, whatever the lists say (isthmus frames what it sends itself). */
static bool framing(const char *name, size_t len)
{
	return ism_http_is_hop_by_hop(name, len) || name_is(name, len, "content-length") ||
	       (len > 0 && name[0] == ':');
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
	ism_buf_free(&x->body);
	ism_buf_free(&x->answer);
	free(x);
}

/* ---------- the check request ---------- */

/* The values of req's fields named as field i, joined as Envoy's check
 * request joins them, once: nothing when an earlier field has that name.
 * 0, or -ENOMEM. */
static int put_joined(struct ism_buf *b, const struct ism_http_req *req, size_t i)
{
	const struct ism_http_header *h = &req->headers[i];
	const char *sep = name_is(h->name, h->name_len, "cookie") ? "; " : ",";
	int ret;

	for (size_t j = 0; j < i; j++)
		if (req->headers[j].name_len == h->name_len &&
		    ism_eq_nocase(req->headers[j].name, h->name, h->name_len))
			return 0;
	ret = ism_buf_append(b, h->name, (uint32_t)h->name_len, UINT32_MAX);
	ret |= ism_buf_append(b, ": ", 2, UINT32_MAX);
	ret |= ism_buf_append(b, h->value, (uint32_t)h->value_len, UINT32_MAX);
	for (size_t j = i + 1; j < req->n_headers; j++) {
		const struct ism_http_header *o = &req->headers[j];

		if (o->name_len != h->name_len || !ism_eq_nocase(o->name, h->name, h->name_len))
			continue;
		ret |= ism_buf_put_str(b, sep, UINT32_MAX);
		ret |= ism_buf_append(b, o->value, (uint32_t)o->value_len, UINT32_MAX);
	}
	ret |= ism_buf_append(b, "\r\n", 2, UINT32_MAX);
	return ret ? -ENOMEM : 0;
}

/* Whether field name is one of xa's additional ones (which replace it). */
static bool added(const struct ism_extauthz *xa, const char *name, size_t len)
{
	for (uint32_t i = 0; i < xa->n_add; i++)
		if (len == xa->add[i].name.len && ism_eq_nocase(name, xa->add[i].name.p, len))
			return true;
	return false;
}

/* The check's head, as Envoy's raw HTTP client makes it: the method, the
 * path after pathPrefix, Host, authorization and the listed fields,
 * content-length 0, the additional fields. */
static int check_head(const struct ism_extauthz *xa, const struct ism_cluster *cl,
		      const struct ism_http_req *req, struct ism_buf *b)
{
	int ret = 0;

	ret |= ism_buf_append(b, req->method, (uint32_t)req->method_len, UINT32_MAX);
	ret |= ism_buf_append(b, " ", 1, UINT32_MAX);
	ret |= ism_buf_append(b, xa->path_prefix.p, xa->path_prefix.len, UINT32_MAX);
	ret |= ism_buf_append(b, req->path, (uint32_t)req->path_len, UINT32_MAX);
	if (req->query != NULL) {
		ret |= ism_buf_append(b, "?", 1, UINT32_MAX);
		ret |= ism_buf_append(b, req->query, (uint32_t)req->query_len, UINT32_MAX);
	}
	ret |= ism_buf_put_str(b, " HTTP/1.1\r\nhost: ", UINT32_MAX);
	if (req->host != NULL)
		ret |= ism_buf_append(b, req->host, (uint32_t)req->host_len, UINT32_MAX);
	else
		ret |= ism_buf_append(b, cl->host.p, cl->host.len, UINT32_MAX);
	ret |= ism_buf_put_str(b, "\r\n", UINT32_MAX);
	for (size_t i = 0; i < req->n_headers; i++) {
		const struct ism_http_header *h = &req->headers[i];

		if (framing(h->name, h->name_len) || name_is(h->name, h->name_len, "host") ||
		    added(xa, h->name, h->name_len) ||
		    (!name_is(h->name, h->name_len, "authorization") &&
		     !pats_hold(&xa->req, h->name, h->name_len)))
			continue;
		ret |= put_joined(b, req, i);
	}
	ret |= ism_buf_put_str(b, "content-length: 0\r\n", UINT32_MAX);
	for (uint32_t i = 0; i < xa->n_add; i++)
		ret |= ism_buf_put_field(b, xa->add[i].name.p, xa->add[i].value.p,
					 xa->add[i].value.len, UINT32_MAX);
	ret |= ism_buf_append(b, "\r\n", 2, UINT32_MAX);
	return ret ? -ENOMEM : 0;
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
	st->xa = x;
	st->state = ISM_ST_AUTHZ;
	return x;
}

int ism_extauthz_send(struct ism_wctx *w, struct ism_stream *st)
{
	const struct ism_table *t = w->table;
	const struct ism_extauthz *xa = t->authz.xa;
	struct xa_check *chk;
	struct ism_stream *c;
	const struct ism_cluster *cl;

	if (xa == NULL || xa->cluster >= t->n_clusters)
		return -ENOMEM;
	cl = &t->clusters[xa->cluster];
	chk = calloc(1, sizeof(*chk));
	c = chk != NULL ? ism_stream_new(w, &w->xa->sink) : NULL;
	if (c == NULL) {
		free(chk);
		return -ENOMEM;
	}
	chk->of = ((uint64_t)st->idx << 32) | st->gen;
	c->sp = chk;
	c->mirror = 1;	/* an internal stream: its sink takes the response */
	c->counted = 1; /* not in the worker's, listener's or route's counters */
	c->cluster = xa->cluster;
	c->is_head = st->is_head;
	c->idempotent = 1; /* no body: a stale connection's check goes again */
	c->req_done = 1;
	c->route_deadline = w->now + xa->timeout_ms;
	if (cl->tls.mode != ISM_TLS_NONE)
		snprintf(c->up_sni, sizeof(c->up_sni), "%s", cl->host.p);
	if (check_head(xa, cl, &st->xa->req, &c->replay) < 0 || ism_stream_mirror_start(w, c) < 0) {
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

/* A denying answer's fields the client gets: those headersToDownstreamOnDeny
 * names, with www-authenticate and location; without the list, all but host
 * (and never those that frame the answer, nor its Server where isthmus
 * writes its own, as Envoy's connection manager overwrites it). Into h
 * (cap); their count. */
static size_t deny_fields(const struct ism_wctx *w, const struct ism_stream *st,
			  const struct ism_extauthz *xa, const struct ism_http_header *in, size_t n,
			  struct ism_http_header *h, size_t cap)
{
	size_t k = 0;

	for (size_t i = 0; i < n && k < cap; i++) {
		const char *name = in[i].name;
		size_t len = in[i].name_len;

		if (framing(name, len) || name_is(name, len, "host") ||
		    (name_is(name, len, "server") && ism_stream_own_server(w, st)))
			continue;
		if (xa->deny_all || pats_hold(&xa->down_deny, name, len) ||
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
static int allow_fields(const struct ism_extauthz *xa, struct ism_xa_wait *x,
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
		if (xa->up.n > 0 && pats_hold(&xa->up, h->name, h->name_len)) {
			drop_field(&x->req, h->name, h->name_len);
			x->req.headers[x->req.n_headers++] = *h;
			if (name_is(h->name, h->name_len, "host")) {
				x->req.host = h->value;
				x->req.host_len = h->value_len;
			}
		}
		if (xa->down_allow.n > 0 && pats_hold(&xa->down_allow, h->name, h->name_len)) {
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

static void decide(struct ism_wctx *w, struct xa_check *chk)
{
	struct ism_stream *st = checked(w, chk);
	const struct ism_extauthz *xa = w->table->authz.xa;
	struct ism_http_header h[ISM_XA_FIELDS_MAX];
	size_t n;

	if (st == NULL)
		return; /* its client went away meanwhile */
	if (st->table_gen != w->table->gen || xa == NULL) {
		ism_stream_local(w, st, 503, "configuration changed while the request waited",
				 false);
		return;
	}
	if (chk->failed || chk->status >= 500 || chk->status < 200) {
		if (xa->fail_open) {
			ism_wstat_add(&w->st->ext_authz[ISM_XA_R_FAIL_OPEN], 1);
			ism_stream_authz_allow(w, st);
			return;
		}
		ism_wstat_add(&w->st->ext_authz[ISM_XA_R_ERROR], 1);
		refuse(w, st, xa->status_on_error, ISM_XA_ERROR, "", 0, NULL, 0);
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
	if (allow_fields(xa, st->xa, h, n) < 0) {
		ism_stream_local(w, st, 503, "out of memory", false);
		return;
	}
	ism_stream_authz_allow(w, st);
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
    .interim = ism_sess_drop_interim,
    .flush = ism_sess_nothing_queued,
    .head = sink_head,
    .data = sink_data,
    .trailers = ism_sess_drop_trailers,
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
