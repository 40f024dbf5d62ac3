/* SPDX-License-Identifier: Apache-2.0 */
/* Request mirroring (worker/mirror.h). A copy's life, in the states of its
 * stream: NEW while it waits for the original's body (its head and body
 * gathered in its replay buffer, linked from the original), then the states
 * of any stream (WAITING, ATTEMPT, RESPONSE, LOCAL) once started, towards the
 * sink session below, which counts its outcome and frees its place. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "worker/h2up.h"
#include "worker/mirror.h"
#include "worker/ring.h"
#include "worker/session.h"
#include "worker/sock.h"
#include "worker/stream.h"
#include "worker/upstream.h"

#define MILLION 1000000u

struct ism_mirror_ctx {
	struct ism_sess sink; /* the session of every copy */
	uint32_t in_flight;   /* copies alive: waiting for a body or started */
	/* copies whose response head or local answer the sink took: told it
	 * "went out" after the batch (a session never answers in the call) */
	uint64_t *sent;
	uint32_t n_sent, cap_sent;
};

static const struct ism_sess_ops sink_ops;

static struct ism_mirror_ctx *ctx_of(struct ism_wctx *w)
{
	if (w->mirror == NULL) {
		w->mirror = calloc(1, sizeof(*w->mirror));
		if (w->mirror == NULL)
			return NULL;
		w->mirror->sink.ops = &sink_ops;
		w->mirror->sink.state = ISM_SESS_STREAM;
	}
	return w->mirror;
}

static void count_drop(struct ism_wctx *w, enum ism_mirror_drop why)
{
	ism_wstat_add(&w->st->mirror_dropped[why], 1);
}

/* ---------- the sink: the session of the copies ---------- */

void ism_mirror_later(struct ism_wctx *w, struct ism_stream *st)
{
	struct ism_mirror_ctx *m = ctx_of(w);

	/* Without memory the stream ends at its deadline, as a stalled one. */
	if (m == NULL)
		return;
	if (m->n_sent == m->cap_sent) {
		uint32_t cap = m->cap_sent ? m->cap_sent * 2 : 64;
		uint64_t *p = realloc(m->sent, cap * sizeof(*p));

		/* Without memory the copy ends at its deadline, as a stalled one. */
		if (p == NULL)
			return;
		m->sent = p;
		m->cap_sent = cap;
	}
	m->sent[m->n_sent++] = ((uint64_t)st->idx << 32) | st->gen;
}

static int sink_head(struct ism_wctx *w, struct ism_stream *st, const struct ism_http_resp *resp,
		     uint8_t mode, const char *body, uint32_t len, bool done)
{
	(void)mode;
	(void)body;
	(void)len;
	(void)done;
	if (resp->status >= 100 && resp->status < 600)
		ism_wstat_add(&w->st->mirror_resp_class[resp->status / 100], 1);
	ism_mirror_later(w, st);
	return 1;
}

static int sink_data(struct ism_wctx *w, struct ism_stream *st, const char *p, uint32_t len,
		     int bid, bool done)
{
	(void)st;
	(void)p;
	(void)len;
	(void)done;
	if (bid >= 0)
		ism_w_buf_recycle(w, bid);
	return 0;
}

/* An answer made here for a copy: its attempt failed (connect, timeout,
 * reset, overflow of the mirror cluster). */
static int sink_local(struct ism_wctx *w, struct ism_stream *st, const struct ism_local *lr)
{
	count_drop(w, lr->why != NULL && strstr(lr->why, "no healthy") != NULL
			  ? ISM_MIRROR_DROP_NO_HEALTHY
			  : ISM_MIRROR_DROP_FAILED);
	ism_mirror_later(w, st);
	return 0;
}

static void sink_end(struct ism_wctx *w, struct ism_sess *s, void *sp)
{
	(void)s;
	(void)sp;
	ISM_BUG_ON(w->mirror->in_flight == 0);
	w->mirror->in_flight--;
}

static const struct ism_sess_ops sink_ops = {
    .cont = ism_sess_no_continue,
    .head = sink_head,
    .data = sink_data,
    .trailers = ism_sess_drop_trailers,
    .local = sink_local,
    .want_body = ism_sess_whole_request,
    .stream_done = sink_end,
    .abort = sink_end,
};

void ism_mirror_after_batch(struct ism_wctx *w)
{
	struct ism_mirror_ctx *m = w->mirror;

	/* Telling one copy may add others (a copy that ends frees a connection
	 * another one waits for): those are told in the same pass. */
	for (uint32_t i = 0; m != NULL && i < m->n_sent; i++) {
		uint32_t idx = (uint32_t)(m->sent[i] >> 32), gen = (uint32_t)m->sent[i];
		struct ism_stream *st;

		if (idx >= w->streams.n || w->streams.gen[idx] != gen)
			continue;
		st = w->streams.obj[idx];
		if (!st->mirror || !st->sending)
			continue;
		switch ((enum ism_stream_state)st->state) {
		case ISM_ST_RESPONSE:
		case ISM_ST_LOCAL:
			ism_stream_resp_sent(w, st);
			break;
		case ISM_ST_FREE:
		case ISM_ST_NEW:
		case ISM_ST_WAITING:
		case ISM_ST_BACKOFF:
		case ISM_ST_ATTEMPT:
		case ISM_ST_ABANDONED:
		case ISM_ST_DELAY:   /* a copy has no fault */
		case ISM_ST_AUTHZ:   /* nor a check */
		case ISM_ST_UPGRADE: /* nor an upgrade */
		case ISM_ST_TUNNEL:
			break;
		}
	}
	if (m != NULL)
		m->n_sent = 0;
}

/* ---------- copies ---------- */

int ism_mirror_shadow_host(const char *host, size_t len, char *out, size_t cap)
{
	size_t hl = len;

	/* The port, if any, follows the last colon, outside an IPv6 literal. */
	for (size_t i = len; i > 0; i--) {
		if (host[i - 1] == ']')
			break;
		if (host[i - 1] == ':') {
			hl = i - 1;
			break;
		}
	}
	if (len + 7 > cap)
		return -E2BIG;
	memcpy(out, host, hl);
	memcpy(out + hl, "-shadow", 7);
	memcpy(out + hl + 7, host + hl, len - hl);
	return (int)(len + 7);
}

/* The head of copy c into its replay buffer: head (built by ism_up_request,
 * its Host field first after the request line, and any connection field)
 * with the Host's shadow form. */
static int copy_head(struct ism_stream *c, const struct ism_buf *head)
{
	const char *p = head->p, *end = p + head->len, *h, *v, *e, *hend;
	char host[1024];
	int n;

	hend = memmem(p, head->len, "\r\n\r\n", 4);
	h = memmem(p, head->len, "\r\nhost: ", 8);
	if (hend == NULL || h == NULL || h > hend)
		return -EINVAL;
	v = h + 8;
	e = memmem(v, (size_t)(end - v), "\r\n", 2);
	n = ism_mirror_shadow_host(v, (size_t)(e - v), host, sizeof(host));
	if (n < 0)
		return n;
	if (ism_buf_append(&c->replay, p, (uint32_t)(v - p), UINT32_MAX) < 0 ||
	    ism_buf_append(&c->replay, host, (uint32_t)n, UINT32_MAX) < 0 ||
	    ism_buf_append(&c->replay, e, (uint32_t)(hend + 4 - e), UINT32_MAX) < 0)
		return -ENOMEM;
	return 0;
}

/* Copy c's place and memory go (its stream never started). */
static void drop(struct ism_wctx *w, struct ism_stream *c, enum ism_mirror_drop why)
{
	count_drop(w, why);
	c->copies = NULL;
	ism_stream_abort(w, c);
	w->mirror->in_flight--;
}

/* Copy c has its whole request: it goes. */
static void start(struct ism_wctx *w, struct ism_stream *c)
{
	int ret;

	c->copies = NULL;
	c->route_deadline = w->now + c->route_timeout_ms;
	ret = ism_stream_mirror_start(w, c);
	if (ret == 0) {
		ism_wstat_add(&w->st->mirror_sent, 1);
		return;
	}
	drop(w, c, ret == -ENOENT ? ISM_MIRROR_DROP_NO_HEALTHY : ISM_MIRROR_DROP_FAILED);
}

/* A copy of st for mirror mi, or NULL when it is dropped (and counted). */
static struct ism_stream *new_copy(struct ism_wctx *w, const struct ism_stream *st,
				   const struct ism_mirror *mi, const struct ism_http_req *req,
				   const struct ism_buf *head)
{
	const struct ism_table *t = w->table;
	struct ism_mirror_ctx *m = ctx_of(w);
	const struct ism_cluster *cl;
	struct ism_stream *c;

	if (m == NULL || mi->cluster >= t->n_clusters) {
		count_drop(w, ISM_MIRROR_DROP_FAILED);
		return NULL;
	}
	if (m->in_flight >= t->limits.mirror_max_in_flight) {
		count_drop(w, ISM_MIRROR_DROP_IN_FLIGHT);
		return NULL;
	}
	if (req->framing.content_length > (int64_t)t->limits.mirror_max_body_bytes) {
		count_drop(w, ISM_MIRROR_DROP_BODY);
		return NULL;
	}
	c = ism_stream_new(w, &m->sink);
	if (c == NULL) {
		count_drop(w, ISM_MIRROR_DROP_FAILED);
		return NULL;
	}
	m->in_flight++;
	cl = &t->clusters[mi->cluster];
	c->mirror = 1;
	c->counted = 1; /* not in the worker's, listener's or route's counters */
	c->cluster = mi->cluster;
	c->is_head = st->is_head;
	c->idempotent = st->idempotent;
	c->grpc = st->grpc;
	c->http10 = st->http10;
	c->req_done = 1;
	c->req_chunked = (int8_t)(req->framing.chunked && !ism_h2up_wanted(c, cl));
	/* The request's route timeout bounds the copy, as Envoy's shadow;
	 * without one, timeouts.upstreamResponse bounds its whole exchange.
	 * Either runs from the copy's start (start()), once the request is
	 * whole, as the original's route timeout runs from its end. */
	c->route_timeout_ms =
	    st->route_timeout_ms ? st->route_timeout_ms : t->timeouts.upstream_response_ms;
	snprintf(c->up_sni, sizeof(c->up_sni), "%s", cl->host.p);
	if (copy_head(c, head) < 0) {
		drop(w, c, ISM_MIRROR_DROP_FAILED);
		return NULL;
	}
	return c;
}

/* Body bytes for copy c; false when it was dropped. */
static bool copy_body(struct ism_wctx *w, struct ism_stream *c, const char *p, uint32_t len,
		      bool done)
{
	c->req_seen += len;
	if (c->req_seen > w->table->limits.mirror_max_body_bytes) {
		drop(w, c, ISM_MIRROR_DROP_BODY);
		return false;
	}
	if (ism_up_body_into(c, &c->replay, p, len, done) < 0) {
		drop(w, c, ISM_MIRROR_DROP_FAILED);
		return false;
	}
	return true;
}

void ism_mirror_request(struct ism_wctx *w, struct ism_stream *st, const struct ism_route *r,
			const struct ism_http_req *req, const struct ism_buf *head,
			const char *body, uint32_t len, bool req_done)
{
	struct ism_stream **tail = &st->copies;

	/* A copy of an upgrade would take the mirror's connection with it. */
	if (req->framing.upgrade)
		return;
	for (uint32_t i = 0; i < r->n_mirrors; i++) {
		const struct ism_mirror *mi = &r->mirrors[i];
		struct ism_stream *c;

		if (mi->per_million < MILLION && ism_w_rand(w) % MILLION >= mi->per_million)
			continue;
		c = new_copy(w, st, mi, req, head);
		if (c == NULL || !copy_body(w, c, body, len, req_done))
			continue;
		if (req_done) {
			start(w, c);
			continue;
		}
		*tail = c;
		tail = &c->copies;
	}
}

void ism_mirror_body(struct ism_wctx *w, struct ism_stream *st, const char *p, uint32_t len,
		     bool done)
{
	struct ism_stream **link = &st->copies;

	while (*link != NULL) {
		struct ism_stream *c = *link, *next = c->copies;

		if (!copy_body(w, c, p, len, done)) {
			*link = next;
			continue;
		}
		if (done) {
			*link = next;
			start(w, c);
			continue;
		}
		link = &c->copies;
	}
}

void ism_mirror_orphaned(struct ism_wctx *w, struct ism_stream *st)
{
	struct ism_stream *c = st->copies;

	st->copies = NULL;
	while (c != NULL) {
		struct ism_stream *next = c->copies;

		drop(w, c, ISM_MIRROR_DROP_FAILED);
		c = next;
	}
}

void ism_mirror_free(struct ism_wctx *w)
{
	if (w->mirror == NULL)
		return;
	free(w->mirror->sent);
	free(w->mirror->sink.pp);
	free(w->mirror);
	w->mirror = NULL;
}
