/* SPDX-License-Identifier: Apache-2.0 */
/* Upstream connections and their pool (worker/upstream.h), in HTTP/1.1: the
 * request head written for the upstream, the request body framed again, the
 * response head parsed and its body decoded for the stream. A connection
 * serves one stream at a time and waits in its endpoint's pool between them. */
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>

#include "lib/addr.h"
#include "lib/ascii.h"
#include "lib/log.h"
#include "shm/table.h"
#include "worker/actions.h"
#include "worker/h2up.h"
#include "worker/hash.h"
#include "worker/proxyproto.h"
#include "worker/ring.h"
#include "worker/session.h"
#include "worker/sock.h"
#include "worker/stream.h"
#include "worker/tls.h"
#include "worker/tunnel.h"
#include "worker/upstream.h"

/* ---------- lifecycle ---------- */

static uint64_t cluster_connections(struct ism_wctx *w, const struct ism_cluster *cl)
{
	uint64_t n = 0;

	for (uint32_t i = 0; i < cl->n_endpoints; i++)
		n += atomic_load(&w->shm->hdr->eps[cl->endpoints[i].id].connections);
	return n;
}

/* Envoy's max_connections circuit breaker: the cluster's upstream connections,
 * all workers together. A connection is counted before it is opened and the
 * count given back when it went over the limit, so workers racing for the last
 * one never both get it. When both gave it back, one tries again; after a few
 * such rounds the request waits (a release or the next tick tries it again). */
uint32_t ism_up_ep_incarnation(const struct ism_wctx *w, uint32_t ep_id)
{
	return atomic_load_explicit(&w->shm->hdr->eps[ep_id].incarnation, memory_order_relaxed);
}

struct ism_ep_held *ism_up_held(struct ism_wctx *w, uint32_t ep_id, uint32_t inc)
{
	struct ism_ep_held *h = &w->slot->held[ep_id];

	if (h->inc != inc)
		*h = (struct ism_ep_held){.inc = inc};
	return h;
}

static bool reserve(struct ism_wctx *w, const struct ism_cluster *cl, uint32_t ep_id, bool limit)
{
	_Atomic uint32_t *mine = &w->shm->hdr->eps[ep_id].connections;
	struct ism_ep_held *h = ism_up_held(w, ep_id, ism_up_ep_incarnation(w, ep_id));

	if (!limit || cl->pool.max_connections == UINT32_MAX || cl->pool.max_connections == 0) {
		atomic_fetch_add_explicit(mine, 1, memory_order_relaxed);
		h->conns++;
		return true;
	}
	for (int round = 0; round < 3; round++) {
		atomic_fetch_add(mine, 1);
		if (cluster_connections(w, cl) <= cl->pool.max_connections) {
			h->conns++;
			return true;
		}
		atomic_fetch_sub(mine, 1);
		if (cluster_connections(w, cl) >= cl->pool.max_connections)
			return false;
	}
	return false;
}

bool ism_up_same_ep(const struct ism_wctx *w, const struct ism_upconn *u)
{
	return u->ep_inc == ism_up_ep_incarnation(w, u->ep_id);
}

/* Callers know the endpoint's slot is still the one they reserved in. */
static void unreserve(struct ism_wctx *w, uint32_t ep_id)
{
	struct ism_ep_held *h = ism_up_held(w, ep_id, ism_up_ep_incarnation(w, ep_id));

	atomic_fetch_sub_explicit(&w->shm->hdr->eps[ep_id].connections, 1, memory_order_relaxed);
	if (h->conns > 0)
		h->conns--;
}

static void up_unalloc(struct ism_wctx *w, struct ism_upconn *u)
{
	ism_sock_release(w, &u->s);
	u->state = ISM_UP_FREE;
	ism_slab_put(&w->ups, u->s.idx);
}

void ism_up_finalize(struct ism_wctx *w, struct ism_upconn *u)
{
	w->wake_waiters = 1;
	if (ism_up_same_ep(w, u))
		unreserve(w, u->ep_id);
	ism_buf_free(&u->in);
	ism_buf_free(&u->out);
	ism_buf_free(&u->hold);
	ism_h2up_free(u);
	up_unalloc(w, u);
}

/* The list u is in: its session's private connections, or its endpoint's
 * idle HTTP/1.1 connections or HTTP/2 ones. */
static struct ism_upconn **list_of(struct ism_wctx *w, const struct ism_upconn *u)
{
	if (u->owner != NULL)
		return &u->owner->pp->conns;
	return u->mux != NULL ? &w->mux[u->ep_id] : &w->pool[u->ep_id];
}

static inline void pool_remove(struct ism_wctx *w, struct ism_upconn *u)
{
	if (u->pool_prev)
		u->pool_prev->pool_next = u->pool_next;
	else
		*list_of(w, u) = u->pool_next;
	if (u->pool_next)
		u->pool_next->pool_prev = u->pool_prev;
	u->pool_next = u->pool_prev = NULL;
}

static void pool_push(struct ism_wctx *w, struct ism_upconn *u)
{
	struct ism_upconn **head = list_of(w, u);

	u->pool_prev = NULL;
	u->pool_next = *head;
	if (u->pool_next)
		u->pool_next->pool_prev = u;
	*head = u;
}

void ism_up_mux_add(struct ism_wctx *w, struct ism_upconn *u)
{
	if (u->owner == NULL) /* a private one is in its session's list already */
		pool_push(w, u);
}

void ism_up_close(struct ism_wctx *w, struct ism_upconn *u)
{
	enum ism_upstate was = (enum ism_upstate)u->state;

	if (was == ISM_UP_CLOSING || was == ISM_UP_FREE)
		return;
	if (u->owner != NULL || was == ISM_UP_IDLE || u->mux != NULL)
		pool_remove(w, u);
	u->owner = NULL;
	u->state = ISM_UP_CLOSING;
	u->st = NULL;
	/* The streams it carried fail (HTTP/2; HTTP/1.1's stream let go). */
	if (u->mux != NULL)
		ism_h2up_closing(w, u,
				 was == ISM_UP_CONNECTING ? ISM_FAIL_CONNECT : ISM_FAIL_RESET);
	ism_sock_close(&u->s);
	if (u->s.inflight == 0 && !ism_h2up_busy(u))
		ism_up_finalize(w, u);
}

void ism_up_sess_closed(struct ism_wctx *w, struct ism_sess *s)
{
	while (s->pp != NULL && s->pp->conns != NULL)
		ism_up_close(w, s->pp->conns);
}

void ism_up_detach(struct ism_wctx *w, struct ism_stream *st, struct ism_buf *replay)
{
	struct ism_upconn *u = st->up;

	st->up = NULL;
	if (st->usp != NULL) {
		ism_h2up_detach(w, u, st, replay);
		return;
	}
	if (replay != NULL && u->out.len) {
		ism_buf_free(replay);
		*replay = u->out;
		u->out = (struct ism_buf){0};
		/* What waited to go follows what went (ism_up_req_data); without
		 * it the request is not whole, and not replayed. */
		if (u->hold.len && ism_buf_append(replay, u->hold.p, u->hold.len, UINT32_MAX) < 0)
			ism_buf_free(replay);
	}
	ism_buf_free(&u->hold);
	ism_up_close(w, u);
}

void ism_up_abort(struct ism_wctx *w, struct ism_stream *st)
{
	ism_up_detach(w, st, NULL);
}

bool ism_up_replayable(const struct ism_stream *st)
{
	if (st->up == NULL)
		return false;
	return st->usp != NULL ? ism_h2up_replayable(st) : st->up->out.len > 0;
}

static void pool_put(struct ism_wctx *w, struct ism_upconn *u, uint32_t idle_ms)
{
	w->wake_waiters = 1;
	u->state = ISM_UP_IDLE;
	u->st = NULL;
	u->reused = 0;
	ism_buf_free(&u->s.tx);
	ism_buf_free(&u->in);
	ism_buf_free(&u->out);
	ism_buf_free(&u->hold);
	u->idle_deadline = w->now + idle_ms;
	if (u->expires_at != 0 && u->expires_at < u->idle_deadline)
		u->idle_deadline = u->expires_at;
	if (u->owner == NULL) /* a private one stays in its session's list */
		pool_push(w, u);
	ism_sock_multi(&u->s);
	/* An idle pooled connection keeps a receive armed: the upstream closing
	 * it (or sending anything unexpected) shows up at once. */
	ism_sock_recv(w, &u->s);
}

void ism_up_release(struct ism_wctx *w, struct ism_stream *st, bool pool, uint32_t idle_ms)
{
	struct ism_upconn *u = st->up;

	if (st->usp != NULL) {
		ism_up_detach(w, st, NULL);
		return;
	}
	st->up = NULL;
	u->st = NULL;
	/* Bytes held after the response: not a clean connection. */
	if (pool && u->reusable && u->state == ISM_UP_BUSY && !u->s.send_armed &&
	    u->hold.len == 0 && !w->draining && !ism_sock_held(&u->s) &&
	    !ism_up_expired(w->now, u) && ism_up_ep_listed(w, u->ep_id) && ism_up_same_ep(w, u))
		pool_put(w, u, idle_ms);
	else
		ism_up_close(w, u);
}

/* ---------- starting an attempt ---------- */

/* The server name upstream TLS tls sends: its own (the DestinationRule's sni,
 * or ISTIO_MUTUAL's outbound_ name), else the request's host. */
static const char *up_sni(const struct ism_stream *st, const struct ism_tls_conf *tls)
{
	return tls->sni.len ? tls->sni.p : st->up_sni;
}

/* What a pooled upstream connection must match to carry a request: plaintext
 * (0), or the TLS settings and the server name its certificate was checked for
 * (Envoy keeps one pool per SNI when the SNI comes from the request). */
uint64_t ism_up_pool_key(const struct ism_stream *st, const struct ism_cluster *cl,
			 const struct ism_endpoint *ep)
{
	const struct ism_tls_conf *tls = ism_ep_tls(cl, ep);
	const char *sni;
	uint64_t k;

	if (tls->mode == ISM_TLS_NONE)
		return 0;
	sni = up_sni(st, tls);
	k = ism_hash64(sni, strlen(sni), tls->fingerprint);
	return k ? k : 1;
}

struct ism_upconn *ism_up_candidates(struct ism_wctx *w, const struct ism_stream *st,
				     const struct ism_cluster *cl, uint32_t ep_id, bool h2)
{
	if (cl->pp != ISM_UPP_NONE)
		return st->sess->pp != NULL ? st->sess->pp->conns : NULL;
	return h2 ? w->mux[ep_id] : w->pool[ep_id];
}

/* connectionPool.tcp.tcpKeepalive on an upstream socket (0: the system's). */
static void keepalive(int fd, const struct ism_cluster *cl)
{
	int one = 1, v;

	setsockopt(fd, SOL_SOCKET, SO_KEEPALIVE, &one, sizeof(one));
	if ((v = (int)cl->keepalive_probes) > 0)
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &v, sizeof(v));
	if ((v = (int)cl->keepalive_time_s) > 0)
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &v, sizeof(v));
	if ((v = (int)cl->keepalive_interval_s) > 0)
		setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &v, sizeof(v));
}

struct ism_upconn *ism_up_connect(struct ism_wctx *w, const struct ism_stream *st,
				  const struct ism_cluster *cl, const struct ism_endpoint *ep,
				  bool h2, bool *full)
{
	struct ism_upconn *u;
	struct io_uring_sqe *sqe;
	int one = 1, fd;

	if (full != NULL)
		*full = false;
	/* The session's list of private connections, for the one it gets. */
	if (cl->pp != ISM_UPP_NONE && ism_sess_pp(st->sess) == NULL)
		return NULL;
	if (!reserve(w, cl, ep->id, full != NULL)) {
		*full = true;
		return NULL;
	}
	u = ism_sock_queues_reserve(w) < 0
		? NULL
		: (struct ism_upconn *)ism_sock_new(&w->ups, sizeof(struct ism_upconn));
	if (u == NULL) {
		unreserve(w, ep->id);
		return NULL;
	}
	fd = socket(ep->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		int err = errno;

		unreserve(w, ep->id);
		up_unalloc(w, u);
		/* Out of descriptors: the worker's own shortage, not the
		 * endpoint's failure. Idle pooled connections give theirs back,
		 * and the request waits for one as for a connection. */
		if ((err == EMFILE || err == ENFILE) && full != NULL) {
			if (ism_w_warn_due(&w->fd_warn_ms, w->now))
				ism_warn("upstream connection: %s: idle pooled connections closed, "
					 "requests wait for a descriptor",
					 strerror(err));
			ism_up_reclaim_idle(w);
			*full = true;
		}
		return NULL;
	}
	ism_sock_open(w, &u->s, fd, true, u->s.idx, u->s.gen);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (cl->keepalive)
		keepalive(fd, cl);
	u->ep_id = ep->id;
	u->ep_inc = ism_up_ep_incarnation(w, ep->id);
	u->conn_id = w->conn_seq++;
	u->tls_fp = ism_up_pool_key(st, cl, ep);
	if (u->tls_fp != 0) {
		const struct ism_tls_conf *tls = ism_ep_tls(cl, ep);

		u->s.x.ssl =
		    ism_tls_client_ssl(w, tls, &u->s.x, ep->id, up_sni(st, tls), u->tls_fp, h2);
		if (u->s.x.ssl == NULL) {
			unreserve(w, ep->id);
			up_unalloc(w, u);
			return NULL;
		}
	}
	u->state = ISM_UP_CONNECTING;
	u->connect_deadline = cl->connect_timeout_ms ? w->now + cl->connect_timeout_ms : 0;
	u->expires_at = cl->tcp_max_duration_ms ? w->now + cl->tcp_max_duration_ms : 0;
	memcpy(&u->addr, &ep->addr, ep->addrlen);
	u->addrlen = ep->addrlen;
	sqe = ism_w_sqe(w);
	io_uring_prep_connect(sqe, fd, (struct sockaddr *)&u->addr, u->addrlen);
	ism_w_sqe_sock(sqe, &u->s);
	io_uring_sqe_set_data64(sqe, ism_ud(ISM_OP_UCONNECT, u->s.idx, u->s.gen));
	u->s.inflight++;
	ism_wstat_add(&w->st->upstream_connects, 1);
	u->pp = cl->pp;
	if (u->pp != ISM_UPP_NONE) {
		u->owner = st->sess;
		pool_push(w, u);
	}
	return u;
}

/* An idle connection to the endpoint that st may take: of the cluster's TLS
 * settings (clusters of one service host share endpoints; a subset may use
 * TLS, another not) and PROXY header (with one, its session's). */
static struct ism_upconn *pool_take(struct ism_wctx *w, const struct ism_stream *st,
				    const struct ism_cluster *cl, const struct ism_endpoint *ep)
{
	const uint32_t ep_id = ep->id;
	uint64_t key = ism_up_pool_key(st, cl, ep);
	struct ism_upconn *u = ism_up_candidates(w, st, cl, ep_id, false);

	if (cl->pp == ISM_UPP_NONE) {
		/* The endpoint's idle connections, none private. */
		while (u != NULL && u->tls_fp != key)
			u = u->pool_next;
		if (u != NULL)
			pool_remove(w, u);
	} else {
		/* The session's, of every state and endpoint. */
		while (u != NULL && (u->state != ISM_UP_IDLE || !ism_up_fits(u, cl, ep_id, key)))
			u = u->pool_next;
	}
	if (u == NULL)
		return NULL;
	u->state = ISM_UP_BUSY;
	u->reused = 1;
	ism_wstat_add(&w->st->upstream_reused, 1);
	return u;
}

/* The request goes out on a usable connection; the response is read from now. */
static void send_request(struct ism_wctx *w, struct ism_upconn *u)
{
	ism_sock_recv(w, &u->s);
	ism_sock_send(w, &u->s, u->out.p, u->out.len, -1);
}

const struct sockaddr *ism_up_local(struct ism_upconn *u)
{
	socklen_t len = sizeof(u->local);

	if (u->local_len == 0 && getsockname(u->s.fd, (struct sockaddr *)&u->local, &len) == 0)
		u->local_len = len;
	return u->local_len ? (const struct sockaddr *)&u->local : NULL;
}

struct ism_upconn *ism_up_start(struct ism_wctx *w, struct ism_stream *st,
				const struct ism_cluster *cl, const struct ism_endpoint *ep,
				struct ism_buf *head, bool fresh, bool *full)
{
	struct ism_upconn *u;
	struct ism_buf tmp;

	if (ism_h2up_wanted(st, cl))
		return ism_h2up_start(w, st, cl, ep, head, full);
	u = fresh ? NULL : pool_take(w, st, cl, ep);
	if (full != NULL)
		*full = false;
	if (u == NULL)
		u = ism_up_connect(w, st, cl, ep, false, full);
	if (u == NULL)
		return NULL;
	/* Plaintext HTTP/1.1: one receive stays armed, in the pool too. */
	if (!st->l4)
		ism_sock_multi(&u->s);
	u->st = st;
	st->meter[ISM_M_UP_HEAD_OUT] += st->up_head_len;
	u->got_bytes = 0;
	u->head_done = 0;
	u->interim = 0;
	u->refused = 0;
	u->reusable = 1;
	if (++u->requests >= cl->pool.max_requests_per_conn && cl->pool.max_requests_per_conn)
		u->reusable = 0;
	tmp = u->out;
	u->out = *head;
	*head = tmp;
	head->len = 0;
	if (u->state == ISM_UP_BUSY)
		send_request(w, u);
	return u;
}

void ism_up_tunnel_ask(struct ism_wctx *w, struct ism_upconn *u, const struct ism_str *authority,
		       bool post)
{
	const uint32_t limit = UINT32_MAX;
	int ret = 0;

	u->out.len = 0;
	if (post) {
		/* Envoy's use_post, its post_path "/" (Istio sets none): the
		 * bytes follow the head, neither chunked nor counted. */
		ret |= ism_buf_put_str(&u->out, "POST / HTTP/1.1\r\n", limit);
	} else {
		ret |= ism_buf_put_str(&u->out, "CONNECT ", limit);
		ret |= ism_buf_append(&u->out, authority->p, authority->len, limit);
		ret |= ism_buf_put_str(&u->out, " HTTP/1.1\r\n", limit);
	}
	ret |= ism_buf_put_field(&u->out, "host", authority->p, authority->len, limit);
	ret |= ism_buf_put_str(&u->out, "\r\n", limit);
	if (ret) {
		ism_stream_up_failed(w, u->st, ISM_FAIL_CONNECT);
		return;
	}
	u->st->meter[ISM_M_UP_HEAD_OUT] += u->out.len;
	send_request(w, u);
}

size_t ism_up_failure_text(int err, unsigned long tls, char *out, size_t cap)
{
	int n;

	if (tls != 0)
		n = snprintf(out, cap, "TLS_error:|%lu:%s::%s:TLS_error_end", tls,
			     ERR_lib_error_string(tls) ? ERR_lib_error_string(tls) : "",
			     ERR_reason_error_string(tls) ? ERR_reason_error_string(tls) : "");
	else if (err > 0)
		n = snprintf(out, cap, "delayed connect error: %s", strerror(err));
	else
		n = 0;
	if (n < 0 || cap == 0)
		return 0;
	return (size_t)n < cap ? (size_t)n : cap - 1;
}

/* ---------- the request ---------- */

/* Written without printf (the hot path). */
void ism_up_request_id(struct ism_wctx *w, char out[37])
{
	uint32_t r[4];

	for (int i = 0; i < 4; i++)
		r[i] = ism_w_rand(w);
	ism_uuid4(r, out);
}

/* Whether the route's header edits (NULL: none) drop field name (a literal):
 * the client's and the one isthmus makes alike, as Envoy's router edits the
 * request after its connection manager added its own. */
static bool edit_drops(const struct ism_hdr_edits *drops, const char *name)
{
	return drops != NULL && ism_act_drops(drops, name, strlen(name));
}

/* The values of the route's header edits, and x-envoy-original-path (set
 * after them by Envoy, so it wins over one they send); x-envoy-attempt-count
 * is isthmus's when count (Envoy's router sets it after the edits too). */
static int put_edits(struct ism_buf *out, const struct ism_req_edits *ed, bool count,
		     uint32_t limit)
{
	int ret = 0;

	for (uint32_t i = 0; ed->hdrs != NULL && i < ed->hdrs->n; i++) {
		const struct ism_hdr_edit *x = &ed->hdrs->e[i];

		if (ed->orig_path != NULL && x->name.len == 21 &&
		    memcmp(x->name.p, "x-envoy-original-path", 21) == 0)
			continue;
		if (count && x->name.len == 21 &&
		    memcmp(x->name.p, "x-envoy-attempt-count", 21) == 0)
			continue;
		for (uint32_t j = 0; j < x->n_values; j++)
			ret |= ism_buf_put_header(out,
						  &(struct ism_http_header){x->name.p, x->name.len,
									    x->values[j].p,
									    x->values[j].len},
						  limit);
	}
	if (ed->orig_path != NULL)
		ret |= ism_buf_put_field(out, "x-envoy-original-path", ed->orig_path, ed->orig_len,
					 limit);
	return ret;
}

/* The x-envoy-* fields Envoy's connection manager removes from a request
 * from outside (every request to an Istio gateway is one: it uses the remote
 * address, and no address is internal): they would steer the mesh's own
 * Envoys behind us — their retries and timeouts, tracing, the internal mark.
 * x-envoy-original-path is the rewrite's (put_edits); x-envoy-attempt-count
 * isthmus's when table t has it (the stream writes it per attempt). */
static bool envoy_control(const struct ism_table *t, const struct ism_http_header *h)
{
	static const char *const names[] = {
	    "x-envoy-internal",
	    "x-envoy-decorator-operation",
	    "x-envoy-downstream-service-cluster",
	    "x-envoy-downstream-service-node",
	    "x-envoy-retriable-status-codes",
	    "x-envoy-retriable-header-names",
	    "x-envoy-retry-on",
	    "x-envoy-retry-grpc-on",
	    "x-envoy-max-retries",
	    "x-envoy-upstream-alt-stat-name",
	    "x-envoy-upstream-rq-timeout-ms",
	    "x-envoy-upstream-rq-per-try-timeout-ms",
	    "x-envoy-upstream-rq-timeout-alt-response",
	    "x-envoy-expected-rq-timeout-ms",
	    "x-envoy-force-trace",
	    "x-envoy-ip-tags",
	    "x-envoy-original-url",
	    "x-envoy-hedge-on-per-try-timeout",
	    "x-envoy-external-address",
	};

	if (h->name_len < 8 || !ism_eq_nocase(h->name, "x-envoy-", 8))
		return false;
	if (t->attempt_count && ism_http_header_is(h, "x-envoy-attempt-count"))
		return true;
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (ism_http_header_is(h, names[i]))
			return true;
	return false;
}

/* What becomes of X-Forwarded-Client-Cert (enum ism_fcc), as Envoy's
 * connection manager decides it: the client's fields are kept (keep), and the
 * element of the client's certificate follows them (*ours, NULL: none). */
static bool xfcc_keeps(uint8_t fcc, struct ism_sess *s, const struct ism_buf **ours)
{
	*ours = NULL;
	switch ((enum ism_fcc)fcc) {
	case ISM_FCC_ALWAYS_FORWARD_ONLY:
		return true;
	case ISM_FCC_SANITIZE:
		return false;
	case ISM_FCC_FORWARD_ONLY:
		return ism_sess_xfcc(s) != NULL;
	case ISM_FCC_APPEND_FORWARD:
		*ours = ism_sess_xfcc(s);
		return *ours != NULL;
	case ISM_FCC_SANITIZE_SET:
		*ours = ism_sess_xfcc(s);
		return false;
	}
	return false;
}

/* X-Forwarded-Port: the port the client connected to (a PROXY header's
 * destination when the listener takes one), as Envoy's connection manager
 * sets it; none for a session without a connection of its own. */
static int put_forwarded_port(struct ism_buf *out, struct ism_sess *s, uint32_t limit)
{
	const struct ism_sess_pp *pp = ism_sess_pp(s);
	char ip[INET6_ADDRSTRLEN];
	uint16_t port;

	if (pp == NULL || !ism_addr_text(&pp->dst.sa, ip, &port))
		return 0;
	return ism_put_num_line(out, "x-forwarded-port: ", port, 10, limit);
}

/* Whether the last element of field h's list (NULL: none) is host, as Envoy
 * appends a Host to X-Forwarded-Host only when it is not the last one there
 * (split at commas, not trimmed). */
static bool last_token_is(const struct ism_http_header *h, const char *host, size_t len)
{
	const char *v, *comma;
	size_t n;

	if (h == NULL)
		return false;
	v = h->value;
	n = h->value_len;
	comma = memrchr(v, ',', n);
	if (comma != NULL) {
		n -= (size_t)(comma + 1 - v);
		v = comma + 1;
	}
	return n == len && memcmp(v, host, len) == 0;
}

/* The request line. An HTTP/1.0 client is forwarded as HTTP/1.0, so the
 * upstream answers in a framing that client can read (no chunked coding),
 * unless it is a gRPC-Web request: its translation drops the body's length
 * (HTTP/1.0 has no chunked coding, RFC 9112 6.1), and the answer is isthmus's
 * to frame anyway. */
static int put_request_line(struct ism_buf *out, const struct ism_stream *st,
			    const struct ism_http_req *req, uint32_t limit)
{
	bool http10 = st->http10 && st->gw == NULL;
	int ret = 0;

	ret |= ism_buf_append(out, req->method, (uint32_t)req->method_len, limit);
	ret |= ism_buf_append(out, " ", 1, limit);
	ret |= ism_buf_append(out, req->path, (uint32_t)req->path_len, limit);
	if (req->query) {
		ret |= ism_buf_append(out, "?", 1, limit);
		ret |= ism_buf_append(out, req->query, (uint32_t)req->query_len, limit);
	}
	ret |= ism_buf_put_str(out, http10 ? " HTTP/1.0\r\n" : " HTTP/1.1\r\n", limit);
	if (http10)
		ret |= ism_buf_append(out, "connection: keep-alive\r\n", 24, limit);
	return ret;
}

/* What putting the client's fields found that the fields isthmus adds after
 * them need. */
struct client_said {
	const char *xff; /* X-Forwarded-For's value; NULL: none */
	size_t xff_len;
	/* the last X-Forwarded-Host, when the route sets one; NULL: none */
	const struct ism_http_header *xfh_last;
	bool xfp_kept, xfport_kept;
	bool have_rid; /* an X-Request-Id went on, or the route drops it */
	int ret;       /* nonzero: out could not take them all */
};

/* Puts the client's fields that go on as they are, and returns what the
 * fields added after them need; drops: ed's header edits (NULL: none);
 * drop_xfcc: X-Forwarded-Client-Cert is not among them. Its findings are
 * scalars until they are returned by value: a structure filled through a
 * pointer stayed in memory, 6 instructions a request more (callgrind). */
static struct client_said put_client_fields(const struct ism_table *t, const struct ism_stream *st,
					    const struct ism_http_req *req,
					    const struct ism_req_edits *ed,
					    const struct ism_hdr_edits *drops, bool drop_xfcc,
					    struct ism_buf *out, uint32_t limit)
{
	const char *xff = NULL;
	size_t xff_len = 0;
	const struct ism_http_header *xfh_last = NULL;
	bool xfp_kept = false, xfport_kept = false, te = false;
	bool have_rid = edit_drops(drops, "x-request-id");
	int ret = 0;

	for (size_t i = 0; i < req->n_headers; i++) {
		const struct ism_http_header *h = &req->headers[i];

		if (ism_http_header_is(h, "host"))
			continue;
		/* A trusted proxy's goes on as it is (Envoy's, and the scheme
		 * request_https read from it); the client's is replaced. */
		if (ism_http_header_is(h, "x-forwarded-proto")) {
			if (t->trusted_proxies == 0)
				continue;
			xfp_kept = true;
		}
		if (ed != NULL &&
		    ((ed->orig_path != NULL && ism_http_header_is(h, "x-envoy-original-path")) ||
		     (drops != NULL && ism_act_drops(drops, h->name, h->name_len))))
			continue;
		if (ism_http_header_is(h, "x-forwarded-for")) {
			xff = h->value;
			xff_len = h->value_len;
			continue;
		}
		/* Kept as they are, or (with an element of ours to append)
		 * joined with it below. */
		if (ism_http_header_is(h, "x-forwarded-client-cert") && drop_xfcc)
			continue;
		if (envoy_control(t, h))
			continue;
		/* Written per attempt instead (ISM_STAMP_GRPC). */
		if ((st->stamp & ISM_STAMP_GRPC) && ism_http_header_is(h, "grpc-timeout"))
			continue;
		/* TE is hop-by-hop but for "trailers", which goes on alone, once
		 * (Envoy's sanitizeTEHeader). */
		if (!te && ism_http_te_trailers(h)) {
			te = true;
			ret |= ism_buf_put_str(out, "te: trailers\r\n", limit);
			continue;
		}
		if (!ism_http_end_to_end(&req->framing, req->headers, req->n_headers, h))
			continue;
		/* Every request is an edge request (as above): Envoy replaces
		 * the client's id unless told to preserve it. */
		if (ism_http_header_is(h, "x-request-id")) {
			if (!t->preserve_rid && t->request_id)
				continue;
			have_rid = true;
		}
		/* Envoy sets its own unless a trusted proxy sent one. */
		if (t->xf_port && ism_http_header_is(h, "x-forwarded-port")) {
			if (t->trusted_proxies == 0)
				continue;
			xfport_kept = true;
		}
		if (ed != NULL && ed->xfh != NULL && ism_http_header_is(h, "x-forwarded-host"))
			xfh_last = h;
		ret |= ism_buf_put_header(out, h, limit);
	}
	return (struct client_said){xff, xff_len, xfh_last, xfp_kept, xfport_kept, have_rid, ret};
}

/* X-Forwarded-For: the client's with the peer appended (after a comma, as
 * Envoy's appendXff), else the peer's (unless the route drops it). */
static int put_xff(struct ism_buf *out, const char *xff, size_t xff_len, const char *peer,
		   const struct ism_hdr_edits *drops, uint32_t limit)
{
	int ret = 0;

	if (xff) {
		ret |= ism_buf_put_str(out, "x-forwarded-for: ", limit);
		ret |= ism_buf_append(out, xff, (uint32_t)xff_len, limit);
		ret |= ism_buf_append(out, ",", 1, limit);
		ret |= ism_buf_put_str(out, peer, limit);
		ret |= ism_buf_append(out, "\r\n", 2, limit);
	} else if (!edit_drops(drops, "x-forwarded-for")) {
		ret |= ism_buf_put_field(out, "x-forwarded-for", peer, strlen(peer), limit);
	}
	return ret;
}

/* X-Forwarded-Client-Cert: the client's elements when kept, then ours. */
static int put_xfcc(struct ism_buf *out, const struct ism_http_req *req, bool kept,
		    const struct ism_buf *ours, uint32_t limit)
{
	int ret = 0;

	ret |= ism_buf_put_str(out, "x-forwarded-client-cert: ", limit);
	for (size_t i = 0; kept && i < req->n_headers; i++) {
		const struct ism_http_header *h = &req->headers[i];

		if (ism_http_header_is(h, "x-forwarded-client-cert") && h->value_len > 0) {
			ret |= ism_buf_append(out, h->value, (uint32_t)h->value_len, limit);
			ret |= ism_buf_append(out, ",", 1, limit);
		}
	}
	ret |= ism_buf_append(out, ours->p, ours->len, limit);
	ret |= ism_buf_append(out, "\r\n", 2, limit);
	return ret;
}

/* What Envoy's connection manager says of where the request came from after
 * X-Forwarded-For and X-Forwarded-Client-Cert: X-Envoy-External-Address,
 * X-Forwarded-Proto, -Port and -Host, each unless kept or dropped (said by
 * value, as put_client_fields returns it). */
static int put_forwarded(const struct ism_table *t, const struct ism_stream *st,
			 const struct ism_req_edits *ed, const struct ism_hdr_edits *drops,
			 struct client_said said, struct ism_buf *out, uint32_t limit)
{
	int ret = 0;

	if (!edit_drops(drops, "x-envoy-external-address")) {
		const char *client = ism_stream_client(st);

		ret |= ism_buf_put_field(out, "x-envoy-external-address", client, strlen(client),
					 limit);
	}
	if (!said.xfp_kept && !edit_drops(drops, "x-forwarded-proto"))
		ret |= ism_buf_put_str(out,
				       ism_sess_tls(st->sess) ? "x-forwarded-proto: https\r\n"
							      : "x-forwarded-proto: http\r\n",
				       limit);
	if (t->xf_port && !said.xfport_kept && !edit_drops(drops, "x-forwarded-port"))
		ret |= put_forwarded_port(out, st->sess, limit);
	if (ed != NULL && ed->xfh != NULL && !edit_drops(drops, "x-forwarded-host") &&
	    !last_token_is(said.xfh_last, ed->xfh, ed->xfh_len))
		ret |= ism_buf_put_field(out, "x-forwarded-host", ed->xfh, ed->xfh_len, limit);
	return ret;
}

/* An X-Request-Id made for the request, which the access log shows too. */
static int put_request_id(struct ism_wctx *w, const struct ism_stream *st, struct ism_buf *out,
			  uint32_t limit)
{
	char rid[37];
	int ret;

	if (st->rid[0] != '\0')
		memcpy(rid, st->rid, sizeof(rid));
	else
		ism_up_request_id(w, rid);
	ret = ism_buf_put_field(out, "x-request-id", rid, 36, limit);
	if (st->log_req != NULL)
		memcpy(st->log_req->request_id, rid, sizeof(rid));
	return ret;
}

int ism_up_request(struct ism_wctx *w, const struct ism_stream *st, const struct ism_http_req *req,
		   const struct ism_cluster *cl, const struct ism_req_edits *ed,
		   struct ism_buf *out)
{
	const struct ism_hdr_edits *drops = ed != NULL ? ed->hdrs : NULL;
	const struct ism_buf *xfcc = NULL;
	const bool xfcc_kept = xfcc_keeps(w->table->fcc, st->sess, &xfcc);
	/* The client's certificate is room the client did not take. */
	const uint32_t limit =
	    w->table->limits.max_request_header_bytes + 4096 + (xfcc ? xfcc->len + 32 : 0);
	struct client_said said;
	int ret = 0;

	out->len = 0;
	ret |= put_request_line(out, st, req, limit);
	if (req->host)
		ret |= ism_buf_put_field(out, "host", req->host, req->host_len, limit);
	else
		ret |= ism_buf_put_field(out, "host", cl->host.p, strlen(cl->host.p), limit);
	said =
	    put_client_fields(w->table, st, req, ed, drops, !xfcc_kept || xfcc != NULL, out, limit);
	ret |= said.ret;
	/* The framing that was parsed, whatever the fields said (a Connection
	 * field naming Content-Length must not unframe the body). */
	if (req->framing.chunked)
		ret |= ism_buf_append(out, "transfer-encoding: chunked\r\n", 28, limit);
	else if (req->framing.content_length >= 0)
		ret |= ism_put_num_line(
		    out, "content-length: ", (uint64_t)req->framing.content_length, 10, limit);
	/* No body where the method gives one a meaning: said, as Envoy's
	 * codec says it (RFC 9110 8.6; an origin may answer 411 without). */
	else if (!st->upgrade && !ism_http_method_bodiless(req->method, req->method_len))
		ret |= ism_buf_put_str(out, "content-length: 0\r\n", limit);
	ret |= put_xff(out, said.xff, said.xff_len, st->sess->peer, drops, limit);
	if (xfcc != NULL && !edit_drops(drops, "x-forwarded-client-cert"))
		ret |= put_xfcc(out, req, xfcc_kept, xfcc, limit);
	ret |= put_forwarded(w->table, st, ed, drops, said, out, limit);
	if (!said.have_rid && w->table->request_id)
		ret |= put_request_id(w, st, out, limit);
	if (ed != NULL)
		ret |= put_edits(out, ed, w->table->attempt_count, limit);
	/* An upgrade goes on with its Upgrade field (hop-by-hop, so not among
	 * the fields above) and the Connection option that carries it. */
	for (size_t i = 0; st->upgrade && i < req->n_headers; i++)
		if (ism_http_header_is(&req->headers[i], "upgrade")) {
			ret |= ism_buf_put_header(out, &req->headers[i], limit);
			ret |= ism_buf_put_str(out, "connection: upgrade\r\n", limit);
			break;
		}
	ret |= ism_buf_append(out, "\r\n", 2, limit);
	return ret ? -ENOMEM : 0;
}

int ism_up_body_into(const struct ism_stream *st, struct ism_buf *out, const char *p, uint32_t len,
		     bool done)
{
	/* A body without a length goes chunked (the client's extensions and
	 * trailers dropped, as Envoy and HAProxy do). */
	return ism_buf_put_body(out, p, len, st->req_chunked, done);
}

/* An upgraded request ended and what went before is out: the upstream's
 * receiving half ends (over TLS a close_notify first), as a tunnel's: its
 * answer still comes, then its close ends the response. */
static void shut_wr(struct ism_upconn *u)
{
	u->shut_wr = 0;
	ism_sock_shut_write(&u->s);
}

/* Whether u's request is an upgrade its upstream has not answered yet. What
 * its client sends meanwhile (an HTTP/2 client's WebSocket DATA) waits for
 * the 101, as Envoy pauses the upstream request until then
 * (paused_for_websocket_): an upstream that does not switch reads bytes sent
 * before it as its next request, one isthmus never routed or authorized. */
static bool paused(const struct ism_upconn *u)
{
	return u->st->upgrade && !u->head_done;
}

/* What waited in u->hold goes: true; false when nothing waited. The stream
 * hears of the send when it went (on_sent). */
static bool send_held(struct ism_wctx *w, struct ism_upconn *u)
{
	if (u->hold.len == 0)
		return false;
	ism_buf_keep(&u->out, u->hold.p, u->hold.len, ISM_REPLAY_MAX);
	ism_buf_free(&u->s.tx);
	u->s.tx = u->hold;
	u->hold = (struct ism_buf){0};
	ism_sock_send(w, &u->s, u->s.tx.p, u->s.tx.len, -1);
	return true;
}

int ism_up_req_data(struct ism_wctx *w, struct ism_stream *st, const char *p, uint32_t len, int bid,
		    bool done)
{
	struct ism_upconn *u = st->up;
	int ret;

	if (st->usp != NULL)
		return ism_h2up_req_data(w, st, p, len, bid, done);
	if (u->refused) { /* its answer went as a response: the rest is no request */
		if (bid >= 0)
			ism_w_buf_recycle(w, bid);
		return 0;
	}
	u->shut_wr = done && st->upgrade;
	if (!u->st->req_chunked && len == 0) {
		if (bid >= 0)
			ism_w_buf_recycle(w, bid);
		if (u->shut_wr && u->state == ISM_UP_BUSY && !u->s.send_armed && !paused(u))
			shut_wr(u);
		return 0;
	}
	/* The session was asked for these bytes by an attempt that failed, and
	 * they came while this one connects or sends its head: they wait, and
	 * go once it sent what went before (on_sent). An upgrade's wait for
	 * its 101. */
	if (u->state != ISM_UP_BUSY || u->s.send_armed || paused(u)) {
		ret = ism_up_body_into(u->st, &u->hold, p, len, done);
		if (bid >= 0)
			ism_w_buf_recycle(w, bid);
		return ret < 0 ? ret : 1;
	}
	/* A ring buffer goes out as it is; the memory of others (an HTTP/2
	 * client's stream, which may go while the send is in flight) is copied. */
	if (!u->st->req_chunked && bid >= 0) {
		ism_buf_keep(&u->out, p, len, ISM_REPLAY_MAX);
		ism_sock_send(w, &u->s, p, len, bid);
		return 1;
	}
	u->s.tx.len = 0;
	ret = ism_up_body_into(u->st, &u->s.tx, p, len, done);
	if (bid >= 0)
		ism_w_buf_recycle(w, bid);
	if (ret < 0)
		return ret;
	if (u->s.tx.len == 0)
		return 0;
	ism_buf_keep(&u->out, u->s.tx.p, u->s.tx.len, ISM_REPLAY_MAX);
	ism_sock_send(w, &u->s, u->s.tx.p, u->s.tx.len, -1);
	return 1;
}

/* ---------- the response ---------- */

/* How the response body is delimited (RFC 9112 6.3). */
static uint8_t resp_mode(const struct ism_stream *st, const struct ism_http_resp *resp)
{
	if (!ism_http_resp_has_body(resp->status, st->is_head ? "HEAD" : "GET",
				    st->is_head ? 4 : 3))
		return ISM_BODY_NONE;
	if (resp->framing.chunked)
		return ISM_BODY_CHUNKED;
	if (resp->framing.content_length > 0)
		return ISM_BODY_CL;
	return resp->framing.content_length < 0 ? ISM_BODY_CLOSE : ISM_BODY_NONE;
}

/* The answer to a TCP or TLS route's CONNECT (ism_up_tunnel_ask), n as
 * ism_http_parse_response returned it: a 2xx opens the tunnel, what came after
 * the head going to the client first; anything else is a failed connect, as
 * Envoy's tcp_proxy takes it. */
static void tunnel_answer(struct ism_wctx *w, struct ism_upconn *u, ssize_t n, int status)
{
	struct ism_stream *st = u->st;

	if (n == ISM_HTTP_INCOMPLETE) {
		ism_sock_recv(w, &u->s);
		return;
	}
	u->reusable = 0;
	if (n < 0 || status < 200 || status > 299) {
		ism_debug("upstream endpoint %u: CONNECT answered %d", u->ep_id,
			  n < 0 ? -1 : status);
		ism_stream_up_failed(w, st, ISM_FAIL_CONNECT);
		return;
	}
	u->head_done = 1;
	ism_buf_consume(&u->in, (uint32_t)n);
	ism_stream_up_tunnel(w, st);
}

/* The final head resp, n bytes of u->in: it sets how the body is delimited
 * and whether the connection can carry another request, and goes to the
 * stream with the body bytes that came with it. */
static void final_head(struct ism_wctx *w, struct ism_upconn *u, const struct ism_http_resp *resp,
		       size_t n)
{
	struct ism_stream *st = u->st;
	size_t data_len = 0;
	bool done = false;
	ssize_t body;

	u->head_done = 1;
	u->resp = (struct ism_body){.mode = resp_mode(st, resp)};
	if (u->resp.mode == ISM_BODY_CHUNKED)
		ism_chunked_init(&u->resp.ch);
	else if (u->resp.mode == ISM_BODY_CL)
		u->resp.remaining = (uint64_t)resp->framing.content_length;
	if (resp->framing.conn == ISM_HTTP_CONN_CLOSE ||
	    (resp->minor_version == 0 && resp->framing.conn != ISM_HTTP_CONN_KEEPALIVE) ||
	    u->resp.mode == ISM_BODY_CLOSE)
		u->reusable = 0;
	/* Body bytes that came with the head: decoded in place, they go with
	 * the head. */
	body = ism_body_take(&u->resp, u->in.p + n, u->in.len - n, &data_len, &done);
	if (body < 0) {
		/* The head goes first, then the cut (when the stream asks for
		 * more), as when the bad bytes come in a later read (Envoy
		 * streams the head): whether a request the upstream answered is
		 * tried again cannot depend on how its answer was cut into
		 * segments. */
		u->reusable = 0;
		u->body_bad = 1;
		ism_stream_up_head(w, st, resp, u->resp.mode, u->in.p + n, 0, false);
		return;
	}
	if (n + (size_t)body < u->in.len)
		u->reusable = 0; /* bytes after the response: not a clean stream */
	if (!done)		 /* the body streams through: a multishot would read it ahead */
		ism_sock_single(w, &u->s);
	ism_stream_up_head(w, st, resp, u->resp.mode, u->in.p + n, (uint32_t)data_len, done);
}

/* Parses the response head(s) in u->in. Interim 1xx heads are dropped
 * (ism_stream_up_head); the final one decides the body framing and whether
 * the connection can carry another request. */
static void parse_head(struct ism_wctx *w, struct ism_upconn *u)
{
	struct ism_stream *st = u->st;
	struct ism_http_limits lim = {
	    .max_head_bytes = w->table->limits.max_response_header_bytes,
	    .max_headers = ISM_MAX_HDRS,
	    .max_uri_bytes = 0,
	};

	for (;;) {
		struct ism_http_resp resp = {.headers = w->uhdrs};
		ssize_t n = ism_http_parse_response(u->in.p, u->in.len, &lim, &resp);

		if (n > 0) /* a whole head, interim ones too */
			st->meter[ISM_M_UP_HEAD_IN] += (uint64_t)n;
		if (st->l4) {
			tunnel_answer(w, u, n, resp.status);
			return;
		}
		if (n == ISM_HTTP_INCOMPLETE) {
			ism_sock_recv(w, &u->s);
			return;
		}
		if (n >= 0 && resp.status == 101 && st->upgrade) {
			/* The upgrade is accepted: what follows the head is the
			 * tunnel's. */
			u->head_done = 1;
			u->reusable = 0;
			/* An HTTP/2 client's WebSocket reads the rest as a body;
			 * what it sent before the 101 goes now, and its end. */
			u->resp = (struct ism_body){.mode = ISM_BODY_CLOSE};
			if (!u->s.send_armed && !send_held(w, u) && u->shut_wr)
				shut_wr(u);
			ism_stream_up_upgrade(w, st, &resp, u->in.p + n, u->in.len - (uint32_t)n);
			return;
		}
		/* An HTTP/2 client's extended CONNECT (RFC 8441) takes a 2xx
		 * for its tunnel: a 2xx that is not the upstream's 101 would
		 * open none. */
		if (n >= 0 && st->upgrade && st->sess->ops->upgrade == NULL && resp.status >= 200 &&
		    resp.status < 300) {
			u->reusable = 0;
			ism_stream_up_bad(w, st, ISM_WHY_NO_SWITCH);
			return;
		}
		if (n < 0 || resp.status == 101) {
			/* A head the parser refuses (or a 101 to a request that
			 * asked for no upgrade): Envoy's codec's protocol error. */
			u->reusable = 0;
			ism_stream_up_bad(w, st, ISM_WHY_PROTOCOL);
			return;
		}
		if (resp.status < 200) {
			/* The interim heads together are held to the head's
			 * bound: an upstream sending them without end would
			 * hold the exchange (each read re-arms its timer). */
			u->interim += (uint32_t)n;
			if (u->interim > lim.max_head_bytes) {
				u->reusable = 0;
				ism_stream_up_bad(w, st, ISM_WHY_INTERIM);
				return;
			}
			ism_buf_consume(&u->in, (uint32_t)n);
			continue;
		}
		/* Any other final answer to an upgrade refuses it: what the
		 * client sent for the tunnel is dropped unsent, and the
		 * connection, which may have been half closed, is not used
		 * again (Envoy drains it). */
		if (st->upgrade) {
			u->reusable = 0;
			u->refused = 1;
			ism_buf_free(&u->hold);
		}
		final_head(w, u, &resp, (size_t)n);
		return;
	}
}

void ism_up_resume(struct ism_wctx *w, struct ism_stream *st)
{
	struct ism_upconn *u = st->up;

	if (st->usp != NULL) {
		ism_h2up_resume(w, st);
		return;
	}
	if (u->state != ISM_UP_BUSY || u->st == NULL)
		return;
	if (!u->head_done) {
		parse_head(w, u);
		return;
	}
	if (u->body_bad) {
		ism_stream_up_bad(w, st, "malformed upstream body");
		return;
	}
	/* The response started: the head's bytes went to the client and the
	 * request is not replayed any more. */
	u->in.len = 0;
	ism_buf_trim(&u->in);
	ism_buf_free(&u->out);
	ism_sock_recv(w, &u->s);
}

/* The upstream closed or failed before the response ended. */
static void on_eof(struct ism_wctx *w, struct ism_upconn *u, int res)
{
	u->reusable = 0;
	/* The peer's close (a FIN) ends a body that the close delimits; a
	 * reset or a receive that failed cuts it, as any body (RFC 9112 8: an
	 * incomplete message is not passed on as whole). */
	if (res == 0 && u->head_done && u->resp.mode == ISM_BODY_CLOSE) {
		ism_stream_up_data(w, u->st, NULL, 0, -1, true);
		return;
	}
	ism_debug("upstream endpoint %u closed: %s", u->ep_id, res < 0 ? strerror(-res) : "EOF");
	ism_stream_up_failed(w, u->st, ISM_FAIL_RESET);
}

static void on_recv(struct ism_wctx *w, struct ism_upconn *u, int res, int bid)
{
	struct ism_stream *st = u->st;
	char *data = bid >= 0 ? ism_w_buf_addr(w, bid) : NULL;
	size_t data_len = 0;
	bool done = false;
	ssize_t n;

	if (st == NULL || u->state != ISM_UP_BUSY) {
		if (bid >= 0)
			ism_w_buf_recycle(w, bid);
		/* Idle in the pool: a close or stray bytes end the connection. */
		ism_up_close(w, u);
		return;
	}
	if (res <= 0) {
		if (bid >= 0)
			ism_w_buf_recycle(w, bid);
		on_eof(w, u, res);
		return;
	}
	u->got_bytes = 1;
	st->meter[ISM_M_UP_WIRE_IN] += (uint64_t)res;
	ism_stream_up_bytes(w, st);
	if (!u->head_done) {
		int ret = ism_buf_append(&u->in, data, (uint32_t)res,
					 w->table->limits.max_response_header_bytes + ISM_BUF_SIZE);

		ism_w_buf_recycle(w, bid);
		if (ret < 0) {
			u->reusable = 0;
			ism_stream_up_bad(w, st, "upstream response head too large");
			return;
		}
		parse_head(w, u);
		return;
	}
	n = ism_body_take(&u->resp, data, (size_t)res, &data_len, &done);
	if (n < 0) {
		ism_w_buf_recycle(w, bid);
		u->reusable = 0;
		ism_stream_up_bad(w, st, "malformed upstream body");
		return;
	}
	if (n < res)
		u->reusable = 0; /* bytes after the response */
	if (data_len == 0) {
		ism_w_buf_recycle(w, bid);
		bid = -1;
	}
	ism_stream_up_data(w, st, data, (uint32_t)data_len, bid, done);
}

/* ---------- completions ---------- */

static void on_sent(struct ism_wctx *w, struct ism_upconn *u, int res)
{
	if (u->st == NULL) {
		ism_up_close(w, u);
		return;
	}
	if (res < 0) {
		/* The receive side reports what the upstream did; the rest of the
		 * request is not sent (the session closes after the response). */
		u->reusable = 0;
		return;
	}
	u->st->meter[ISM_M_UP_WIRE_OUT] += (uint64_t)res;
	/* What waited for this send goes now; the stream hears of the send
	 * when that went too. An upgrade's waits for its 101 (parse_head),
	 * and so does the stream. */
	if (u->hold.len > 0) {
		if (!paused(u))
			send_held(w, u);
		return;
	}
	/* A tunnel's CONNECT is out: its answer comes (parse_head). */
	if (u->st->l4)
		return;
	if (u->shut_wr && !paused(u))
		shut_wr(u);
	ism_stream_up_sent(w, u->st);
}

/* The connection (and its TLS handshake) is up: the request goes. */
static void on_ready(struct ism_wctx *w, struct ism_upconn *u)
{
	if (u->st == NULL) {
		ism_up_close(w, u);
		return;
	}
	u->state = ISM_UP_BUSY;
	/* A TCP or TLS route's connection carries the tunnel's bytes only. */
	if (!u->st->l4)
		send_request(w, u);
	ism_stream_up_ready(w, u->st);
}

/* The connection could not be made (connect or TLS handshake failed, or not
 * done within the connect timeout). */
static void connect_failed(struct ism_wctx *w, struct ism_upconn *u)
{
	if (u->mux != NULL)
		ism_up_close(w, u); /* its streams fail with it */
	else if (u->st != NULL && u->state == ISM_UP_CONNECTING)
		ism_stream_up_failed(w, u->st, ISM_FAIL_CONNECT);
	else
		ism_up_close(w, u);
}

/* Connected: the PROXY header goes first, before the TLS handshake too
 * (ism_sock_preface), made now as Envoy's transport socket makes it once
 * connected. It names the session's client and the address that client
 * connected to; a session without a connection of its own (the mirror's
 * copies) has none, and Envoy's header then names the connection's own
 * addresses (v1) or none (v2, LOCAL). 0, or -ENOMEM. */
static int pp_header(struct ism_upconn *u)
{
	const struct ism_sess_pp *spp = u->owner->pp;
	const struct sockaddr *src = &spp->src.sa, *dst = &spp->dst.sa;
	uint8_t hdr[ISM_PP_WRITE_MAX];
	union ism_pp_addr local;
	socklen_t len = sizeof(local);

	if (spp->src.sa.sa_family == AF_UNSPEC) {
		src = dst = NULL;
		if (u->pp == ISM_UPP_V1 && getsockname(u->s.fd, &local.sa, &len) == 0) {
			src = &local.sa;
			dst = (const struct sockaddr *)&u->addr;
		}
	}
	/* enum ism_upstream_pp's values are the protocol's versions */
	return ism_sock_preface(&u->s, hdr, (uint32_t)ism_pp_write(hdr, u->pp, src, dst));
}

/* The connection (and its TLS handshake) is up. */
static void ready(struct ism_wctx *w, struct ism_upconn *u)
{
	if (u->mux != NULL)
		ism_h2up_ready(w, u);
	else
		on_ready(w, u);
}

static void on_event(struct ism_wctx *w, struct ism_upconn *u, struct ism_sock_ev ev)
{
	if (u->state == ISM_UP_TUNNEL && ev.kind != ISM_SEV_FREE) {
		ism_tunnel_event(w, u->st->tun, ISM_TUN_UPSTREAM, ev);
		return;
	}
	switch ((enum ism_sock_evkind)ev.kind) {
	case ISM_SEV_NONE:
		return;
	case ISM_SEV_FREE:
		ism_up_finalize(w, u);
		return;
	case ISM_SEV_CONNECTED:
		if (u->mux == NULL && u->st == NULL) {
			ism_up_close(w, u);
		} else if (ev.res < 0) {
			u->connect_err = -ev.res;
			ism_wstat_add(&w->st->upstream_connect_fail, 1);
			ism_debug("connect to endpoint %u: %s", u->ep_id, strerror(-ev.res));
			connect_failed(w, u);
		} else if (u->pp != ISM_UPP_NONE && pp_header(u) < 0) {
			connect_failed(w, u);
		} else if (u->s.x.ssl == NULL) {
			ready(w, u);
		} else {
			/* The handshake first; the request goes once it completes. */
			on_event(w, u, ism_sock_tls_read(w, &u->s));
		}
		return;
	case ISM_SEV_RECV:
		if (u->mux != NULL)
			ism_h2up_recv(w, u, ev.res, ev.bid);
		else
			on_recv(w, u, ev.res, ev.bid);
		return;
	case ISM_SEV_SENT:
		if (u->mux != NULL)
			ism_h2up_sent(w, u, ev.res);
		else
			on_sent(w, u, ev.res);
		return;
	case ISM_SEV_HANDSHAKE:
		ism_tls_client_done(u->s.x.ssl);
		ready(w, u);
		return;
	case ISM_SEV_TLS_FAIL:
		ism_wstat_add(&w->st->tls_handshake_fail, 1);
		connect_failed(w, u);
		return;
	}
	ISM_BUG_ON(1);
}

void ism_up_complete(struct ism_wctx *w, enum ism_op op, uint32_t idx, uint32_t gen, int res,
		     int bid, uint32_t flags)
{
	struct ism_upconn *u;

	u = ism_slab_at(&w->ups, idx, gen);
	on_event(w, u, ism_sock_complete(w, &u->s, op, res, bid, flags));
}

/* ---------- timers, drain, generations ---------- */

/* Idle pooled connections of clusters whose requests wait for a connection,
 * in any worker, are closed: the capacity goes to the waiters. */
static void release_to_waiters(struct ism_wctx *w)
{
	for (uint32_t i = 0; i < w->table->n_clusters; i++) {
		const struct ism_cluster *cl = &w->table->clusters[i];

		if (cl->dyn == NULL ||
		    atomic_load_explicit(&cl->dyn->pending, memory_order_relaxed) == 0)
			continue;
		for (uint32_t e = 0; e < cl->n_endpoints; e++)
			while (w->pool[cl->endpoints[e].id] != NULL)
				ism_up_close(w, w->pool[cl->endpoints[e].id]);
	}
}

bool ism_up_overdue(const struct ism_wctx *w, const struct ism_upconn *u)
{
	return u->state == ISM_UP_CONNECTING && u->connect_deadline != 0 &&
	       u->connect_deadline <= w->now;
}

void ism_up_tick(struct ism_wctx *w)
{
	release_to_waiters(w);
	for (uint32_t i = 0; i < w->ups.n; i++) {
		struct ism_upconn *u = w->ups.obj[i];

		switch ((enum ism_upstate)u->state) {
		case ISM_UP_CONNECTING:
			/* As Envoy's connect timeout: the connection's own, from
			 * its connect, whatever streams joined it since (an
			 * HTTP/2 one takes many; HTTP/1.1's one stream has the
			 * same deadline). A SYN or a TLS handshake left
			 * unanswered ends as a failed connect. */
			if (ism_up_overdue(w, u)) {
				ism_wstat_add(&w->st->upstream_connect_fail, 1);
				ism_debug("connect to endpoint %u: timed out", u->ep_id);
				connect_failed(w, u);
			}
			break;
		case ISM_UP_IDLE:
			if (u->idle_deadline <= w->now)
				ism_up_close(w, u);
			break;
		case ISM_UP_MUX:
			ism_h2up_tick(w, u);
			break;
		case ISM_UP_FREE:
		case ISM_UP_BUSY:
		case ISM_UP_TUNNEL:
		case ISM_UP_CLOSING:
			break;
		}
	}
}

void ism_up_reclaim_idle(struct ism_wctx *w)
{
	for (uint32_t i = 0; i < w->ups.n; i++) {
		struct ism_upconn *u = w->ups.obj[i];

		if (u->state == ISM_UP_IDLE || (u->state == ISM_UP_MUX && ism_h2up_idle(u)))
			ism_up_close(w, u);
	}
}

void ism_up_drain(struct ism_wctx *w)
{
	for (uint32_t i = 0; i < w->ups.n; i++) {
		struct ism_upconn *u = w->ups.obj[i];

		if (u->mux != NULL && u->state != ISM_UP_CLOSING)
			ism_h2up_drain(w, u);
		else if (u->state == ISM_UP_IDLE)
			ism_up_close(w, u);
	}
}

bool ism_up_ep_listed(const struct ism_wctx *w, uint32_t id)
{
	return id < ISM_MAX_ENDPOINTS && (w->ep_listed[id / 8] & (1u << (id % 8)));
}

void ism_up_table_changed(struct ism_wctx *w)
{
	const struct ism_table *t = w->table;

	/* An endpoint a reload or a DNS answer removed keeps its slot until
	 * every worker has left the tables that list it: what the new table
	 * lists tells, as Envoy drains a removed host's pools at once. */
	memset(w->ep_listed, 0, sizeof(w->ep_listed));
	for (uint32_t c = 0; c < t->n_clusters; c++)
		for (uint32_t e = 0; e < t->clusters[c].n_endpoints; e++) {
			uint32_t id = t->clusters[c].endpoints[e].id;

			if (id < ISM_MAX_ENDPOINTS)
				w->ep_listed[id / 8] |= (uint8_t)(1u << (id % 8));
		}
	for (uint32_t i = 0; i < w->ups.n; i++) {
		struct ism_upconn *u = w->ups.obj[i];

		if ((u->state == ISM_UP_IDLE || (u->state == ISM_UP_MUX && ism_h2up_idle(u))) &&
		    (!ism_up_ep_listed(w, u->ep_id) || !ism_up_same_ep(w, u)))
			ism_up_close(w, u);
	}
}

void ism_up_free_all(struct ism_wctx *w)
{
	for (uint32_t i = 0; i < w->ups.n; i++) {
		struct ism_upconn *u = w->ups.obj[i];

		/* The worker ends: the connection's place among its endpoint's
		 * (maxConnections) goes back; its finalize will not come. */
		if (u->state != ISM_UP_FREE && ism_up_same_ep(w, u))
			unreserve(w, u->ep_id);
		if (u->state != ISM_UP_FREE)
			ism_sock_release(w, &u->s);
		ism_buf_free(&u->in);
		ism_buf_free(&u->out);
		ism_h2up_free(u);
	}
	ism_slab_free(&w->ups);
}
