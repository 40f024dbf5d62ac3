/* SPDX-License-Identifier: Apache-2.0 */
/* The proxy state machines: a client connection (struct ism_conn) carries one
 * exchange at a time; during it, an upstream connection (struct ism_upconn) is
 * attached. Flow control is by construction: each direction has at most one
 * receive or one send in flight, and a side is read again only once what was
 * read from it has been written to the other, so memory per exchange is bounded
 * by one ring buffer per direction plus the heads. */
#include <arpa/inet.h>
#include <errno.h>
#include <stdarg.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "health/outlier.h"
#include "worker/hash.h"
#include "worker/proxy.h"
#include "worker/proxyproto.h"
#include "worker/sniff.h"
#include "worker/tls.h"

#define HEAD_INITIAL 2048u

static void conn_close(struct ism_wctx *w, struct ism_conn *c);
static void up_close(struct ism_wctx *w, struct ism_upconn *u);
static void try_request(struct ism_wctx *w, struct ism_conn *c);
static void local_response(struct ism_wctx *w, struct ism_conn *c, int status, const char *why,
			   int close_after);
static void up_send_out(struct ism_wctx *w, struct ism_upconn *u);
static void finish_exchange(struct ism_wctx *w, struct ism_conn *c);
static void resp_from_upstream(struct ism_wctx *w, struct ism_conn *c, struct ism_upconn *u);
static void attempt_failed(struct ism_wctx *w, struct ism_conn *c, enum ism_failure f);
static void retry_done(struct ism_wctx *w, struct ism_conn *c);
static void od_settle(struct ism_wctx *w, struct ism_conn *c, enum ism_failure f);
static void wait_remove(struct ism_wctx *w, struct ism_conn *c);
static void log_exchange(struct ism_wctx *w, struct ism_conn *c);

/* ---------- buffers ---------- */

int ism_buf_reserve(struct ism_buf *b, uint32_t extra, uint32_t limit)
{
	uint32_t need = b->len + extra;
	uint32_t cap;
	char *p;

	if (need <= b->cap)
		return 0;
	if (need > limit)
		return -E2BIG;
	cap = b->cap ? b->cap : HEAD_INITIAL;
	while (cap < need)
		cap *= 2;
	if (cap > limit)
		cap = limit;
	p = realloc(b->p, cap);
	if (p == NULL)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

int ism_buf_append(struct ism_buf *b, const void *data, uint32_t len, uint32_t limit)
{
	int ret = ism_buf_reserve(b, len, limit);

	if (ret < 0)
		return ret;
	memcpy(b->p + b->len, data, len);
	b->len += len;
	return 0;
}

static int buf_printf(struct ism_buf *b, uint32_t limit, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int buf_printf(struct ism_buf *b, uint32_t limit, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || ism_buf_reserve(b, (uint32_t)n + 1, limit) < 0)
		return -ENOMEM;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (uint32_t)n;
	return 0;
}

void ism_buf_consume(struct ism_buf *b, uint32_t n)
{
	ISM_BUG_ON(n > b->len);
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
}

void ism_buf_free(struct ism_buf *b)
{
	free(b->p);
	b->p = NULL;
	b->len = b->cap = 0;
}

/* Releases a head buffer that grew large, so idle connections stay small. */
static void buf_trim(struct ism_buf *b)
{
	if (b->len == 0)
		ism_buf_free(b);
}

/* ---------- slabs ---------- */

/* Appends a new zeroed object of sz bytes to a growable pointer array. */
static void *slab_new(void ***arr, uint32_t *n, uint32_t *cap, size_t sz)
{
	void *obj;

	if (*n == *cap) {
		uint32_t ncap = *cap ? *cap * 2 : 256;
		void **p = realloc(*arr, ncap * sizeof(*p));

		if (p == NULL)
			return NULL;
		*arr = p;
		*cap = ncap;
	}
	obj = calloc(1, sz);
	if (obj != NULL)
		(*arr)[(*n)++] = obj;
	return obj;
}

/* Objects are recycled, never freed; the generation tells a recycled slot's
 * completions from its earlier life's. */
static struct ism_conn *conn_alloc(struct ism_wctx *w)
{
	struct ism_conn *c = w->free_conns;
	uint32_t idx, gen;

	if (c != NULL) {
		w->free_conns = c->next_free;
		idx = c->idx;
		gen = c->gen + 1;
	} else {
		c = slab_new((void ***)&w->conns, &w->n_conns, &w->cap_conns, sizeof(*c));
		if (c == NULL)
			return NULL;
		idx = w->n_conns - 1;
		gen = 1;
	}
	memset(c, 0, sizeof(*c));
	c->idx = idx;
	c->gen = gen;
	c->fd = -1;
	return c;
}

static struct ism_upconn *up_alloc(struct ism_wctx *w)
{
	struct ism_upconn *u = w->free_ups;
	uint32_t idx, gen;

	if (u != NULL) {
		w->free_ups = u->next_free;
		idx = u->idx;
		gen = u->gen + 1;
	} else {
		u = slab_new((void ***)&w->ups, &w->n_ups, &w->cap_ups, sizeof(*u));
		if (u == NULL)
			return NULL;
		idx = w->n_ups - 1;
		gen = 1;
	}
	memset(u, 0, sizeof(*u));
	u->idx = idx;
	u->gen = gen;
	u->fd = -1;
	return u;
}

/* ---------- submissions ---------- */

static struct ism_xio c_io(struct ism_conn *c)
{
	return (struct ism_xio){.x = &c->x,
				.fd = c->fd,
				.up = 0,
				.idx = c->idx,
				.gen = c->gen,
				.inflight = &c->inflight};
}

static struct ism_xio u_io(struct ism_upconn *u)
{
	return (struct ism_xio){.x = &u->x,
				.fd = u->fd,
				.up = 1,
				.idx = u->idx,
				.gen = u->gen,
				.inflight = &u->inflight};
}

/* The caller waits for data on one side: under TLS, plaintext (at once when
 * some is decrypted already), else a socket receive. */
static void io_recv(struct ism_wctx *w, const struct ism_xio *io, uint8_t *armed)
{
	*armed = 1;
	if (io->x->ssl != NULL)
		ism_xp_want_read(w, io);
	else
		ism_xp_sock_recv(w, io);
}

/* Sends len bytes at p (from ring buffer bid, or -1) on one side; its completion
 * reports them all sent. */
static void io_send(struct ism_wctx *w, const struct ism_xio *io, struct ism_span *span,
		    uint8_t *armed, const char *p, uint32_t len, int bid)
{
	ISM_BUG_ON(*armed);
	*span = (struct ism_span){.p = p, .len = len, .bid = bid};
	*armed = 1;
	if (io->x->ssl == NULL) {
		/* From a shared ring buffer, a send never waits in the kernel:
		 * one the socket cannot take at once comes back (-EAGAIN or
		 * short) and moves to private memory (park). */
		ism_xp_sock_send(w, io, p, len, ism_w_buf_shared(bid) ? MSG_DONTWAIT : 0);
		return;
	}
	/* Encrypted at once: the plaintext buffer is free again. */
	if (ism_xp_write(w, io, p, len) < 0) {
		shutdown(io->fd, SHUT_RDWR); /* the receive reports the end */
		ism_xp_want_read(w, io);
	}
	if (bid >= 0)
		ism_w_buf_recycle(w, bid);
	span->bid = -1;
}

static void c_recv(struct ism_wctx *w, struct ism_conn *c)
{
	struct ism_xio io = c_io(c);

	if (!c->recv_armed && !c->closing)
		io_recv(w, &io, &c->recv_armed);
}

static void c_send(struct ism_wctx *w, struct ism_conn *c, const char *p, uint32_t len, int bid)
{
	struct ism_xio io = c_io(c);

	io_send(w, &io, &c->send, &c->send_armed, p, len, bid);
	/* A client that does not read cannot hold us forever. */
	c->deadline_kind = ISM_DL_SEND;
	c->deadline = w->now + w->table->timeouts.idle_ms;
}

static void u_recv(struct ism_wctx *w, struct ism_upconn *u)
{
	struct ism_xio io = u_io(u);

	if (!u->recv_armed && !u->closing)
		io_recv(w, &io, &u->recv_armed);
}

static void u_send(struct ism_wctx *w, struct ism_upconn *u, const char *p, uint32_t len, int bid)
{
	struct ism_xio io = u_io(u);

	io_send(w, &io, &u->send, &u->send_armed, p, len, bid);
}

static void set_deadline(struct ism_wctx *w, struct ism_conn *c, enum ism_deadline kind,
			 uint32_t ms)
{
	c->deadline_kind = (uint8_t)kind;
	c->deadline = ms ? w->now + ms : 0;
	/* The route's timeout bounds the whole exchange, whatever the
	 * per-read timeout says. */
	if (c->route_deadline && (c->deadline == 0 || c->route_deadline < c->deadline) &&
	    (kind == ISM_DL_RESPONSE || kind == ISM_DL_CONNECT)) {
		c->deadline_kind = ISM_DL_RESPONSE;
		c->deadline = c->route_deadline;
	}
}

/* ---------- lifecycle ---------- */

static void conn_finalize(struct ism_wctx *w, struct ism_conn *c)
{
	close(c->fd);
	ism_xp_free(&c->x);
	free(c->sni);
	c->sni = NULL;
	ism_buf_free(&c->in);
	ism_buf_free(&c->out);
	ism_buf_free(&c->tx);
	ism_buf_free(&c->replay);
	free(c->set_cookie);
	c->set_cookie = NULL;
	free(c->log_req);
	c->log_req = NULL;
	c->state = ISM_C_FREE;
	c->next_free = w->free_conns;
	w->free_conns = c;
	w->n_active--;
	atomic_fetch_sub_explicit(&w->st->conn_active, 1, memory_order_relaxed);
}

static void up_finalize(struct ism_wctx *w, struct ism_upconn *u)
{
	w->wake_waiters = 1;
	atomic_fetch_sub_explicit(&w->shm->hdr->eps[u->ep_id].connections, 1, memory_order_relaxed);
	close(u->fd);
	ism_xp_free(&u->x);
	ism_buf_free(&u->in);
	ism_buf_free(&u->out);
	ism_buf_free(&u->tx);
	u->state = ISM_U_FREE;
	u->next_free = w->free_ups;
	w->free_ups = u;
}

static void pool_remove(struct ism_wctx *w, struct ism_upconn *u)
{
	if (u->pool_prev)
		u->pool_prev->pool_next = u->pool_next;
	else
		w->pool[u->ep_id] = u->pool_next;
	if (u->pool_next)
		u->pool_next->pool_prev = u->pool_prev;
	u->pool_next = u->pool_prev = NULL;
}

static void ep_done(struct ism_wctx *w, struct ism_conn *c, int failed)
{
	struct ism_ep_state *es;

	if (c->ep_id == UINT32_MAX)
		return;
	es = &w->shm->hdr->eps[c->ep_id];
	atomic_fetch_sub_explicit(&es->inflight, 1, memory_order_relaxed);
	if (failed)
		atomic_fetch_add_explicit(&es->failures, 1, memory_order_relaxed);
	c->ep_id = UINT32_MAX;
}

static void up_close(struct ism_wctx *w, struct ism_upconn *u)
{
	if (u->closing)
		return;
	if (u->state == ISM_U_IDLE)
		pool_remove(w, u);
	u->closing = 1;
	if (u->conn) {
		u->conn->up = NULL;
		u->conn = NULL;
	}
	/* shutdown() wakes the receive still pending on the socket; the slot is
	 * only reused once every operation on it has completed. */
	shutdown(u->fd, SHUT_RDWR);
	if (u->inflight == 0)
		up_finalize(w, u);
}

static void conn_close(struct ism_wctx *w, struct ism_conn *c)
{
	if (c->closing)
		return;
	c->closing = 1;
	c->od_pending = 0; /* cut short by the client, or told already */
	wait_remove(w, c);
	if (c->log_req) {
		/* An exchange cut short: by the upstream once its response began,
		 * else by the client. */
		if (c->flags == NULL)
			c->flags = c->resp_started && !c->resp_done ? "UC" : "DC";
		log_exchange(w, c);
	}
	if (c->up) {
		struct ism_upconn *u = c->up;

		ep_done(w, c, !c->resp_done);
		up_close(w, u);
	}
	if (c->x.ssl != NULL) {
		struct ism_xio io = c_io(c);

		ism_xp_close_notify(&io);
	}
	shutdown(c->fd, SHUT_RDWR);
	if (c->inflight == 0)
		conn_finalize(w, c);
}

/* ---------- accept ---------- */

/* The client's address: the socket's peer, or what a PROXY header says. */
static void set_peer(struct ism_conn *c, const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET) {
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, c->peer,
			  sizeof(c->peer));
		c->peer_port = ntohs(((const struct sockaddr_in *)ss)->sin_port);
	} else if (ss->ss_family == AF_INET6) {
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, c->peer,
			  sizeof(c->peer));
		c->peer_port = ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	}
}

void ism_proxy_accepted(struct ism_wctx *w, int fd, int listener)
{
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	struct ism_conn *c;
	int one = 1;

	atomic_fetch_add_explicit(&w->st->conn_accepted, 1, memory_order_relaxed);
	if (w->n_active >= w->table->limits.max_connections || (c = conn_alloc(w)) == NULL) {
		atomic_fetch_add_explicit(&w->st->conn_rejected, 1, memory_order_relaxed);
		close(fd);
		return;
	}
	c->fd = fd;
	c->listener = (uint16_t)listener;
	c->state = ISM_C_IDLE;
	c->ep_id = UINT32_MAX;
	c->prev_ep = UINT32_MAX;
	if (listener < (int)w->table->n_listeners) {
		const struct ism_listener *l = &w->table->listeners[listener];

		c->pre_pp = l->proxy_protocol;
		c->pre = l->n_tls				   ? ISM_PRE_HELLO
			 : l->peer_mtls == ISM_TLS_MUTUAL	   ? ISM_PRE_MESH
			 : l->peer_mtls == ISM_TLS_OPTIONAL_MUTUAL ? ISM_PRE_SNIFF
								   : ISM_PRE_NONE;
	}
	w->n_active++;
	atomic_fetch_add_explicit(&w->st->conn_active, 1, memory_order_relaxed);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (getpeername(fd, (struct sockaddr *)&ss, &sl) == 0)
		set_peer(c, &ss);
	/* A connection that never sends a complete request is bounded by the
	 * request-header timeout, counted from the accept. */
	set_deadline(w, c, ISM_DL_HEADER, w->table->timeouts.request_header_ms);
	c_recv(w, c);
}

/* ---------- local responses ---------- */

static void count_status(struct ism_wctx *w, int status)
{
	int cls = status / 100;

	if (cls >= 1 && cls <= 5)
		atomic_fetch_add_explicit(&w->st->resp_class[cls], 1, memory_order_relaxed);
}

/* The access log's reason code for a response made here, in the manner of
 * Envoy's response flags (README lists them). */
static const char *flag_for(int status, const char *why)
{
	switch (status) {
	case 404:
		return "NR";
	case 408:
		return "DT";
	case 504:
		return "UT";
	case 502:
		return strstr(why, "invalid") || strstr(why, "malformed") ? "UPE" : "UC";
	case 503:
		if (strstr(why, "overflow"))
			return "UO";
		if (strstr(why, "no healthy"))
			return "UH";
		if (strstr(why, "connect"))
			return "UF";
		return "NC";
	default:
		return status >= 400 && status < 500 ? "DPE" : status >= 500 ? "DPE" : NULL;
	}
}

/* A response made here; extra: more header lines ("name: value\r\n"...). */
static void local_response_ex(struct ism_wctx *w, struct ism_conn *c, int status, const char *why,
			      int close_after, const char *extra)
{
	wait_remove(w, c);
	retry_done(w, c);
	ism_buf_free(&c->replay);
	if (status >= 500)
		od_settle(w, c, ISM_FAIL_RESET);
	c->od_pending = 0;
	c->flags = flag_for(status, why);
	ep_done(w, c, status >= 500);
	if (c->up)
		up_close(w, c->up);
	if (c->send_armed || c->resp_started) {
		/* Part of a response is already on the wire: all we can do is close. */
		conn_close(w, c);
		return;
	}
	/* A request whose body was not read leaves the stream unparseable. */
	if (!c->req_done || w->draining)
		close_after = 1;
	c->out.len = 0;
	if (buf_printf(&c->out, 4096 + (uint32_t)strlen(extra),
		       "HTTP/1.1 %d %s\r\ncontent-type: text/plain\r\ncontent-length: %zu\r\n%s%s"
		       "\r\n%s\n",
		       status, ism_http_reason(status), strlen(why) + 1, extra,
		       close_after ? "connection: close\r\n" : "", why) < 0) {
		conn_close(w, c);
		return;
	}
	count_status(w, status);
	if (status >= 400 && status < 500)
		atomic_fetch_add_explicit(&w->st->bad_requests, 1, memory_order_relaxed);
	ism_debug("%s %d %s", c->peer, status, why);
	c->status = (uint16_t)status;
	c->state = ISM_C_LOCAL;
	c->close_after = (uint8_t)close_after;
	c->resp_started = 1;
	c->resp_done = 1;
	c_send(w, c, c->out.p, c->out.len, -1);
}

static void local_response(struct ism_wctx *w, struct ism_conn *c, int status, const char *why,
			   int close_after)
{
	local_response_ex(w, c, status, why, close_after, "");
}

/* ---------- request ---------- */

static int hdr_is(const struct ism_http_header *h, const char *name)
{
	size_t n = strlen(name);

	return h->name_len == n && strncasecmp(h->name, name, n) == 0;
}

static int put_header(struct ism_buf *out, const struct ism_http_header *h, uint32_t limit)
{
	int ret = ism_buf_append(out, h->name, (uint32_t)h->name_len, limit);

	ret |= ism_buf_append(out, ": ", 2, limit);
	ret |= ism_buf_append(out, h->value, (uint32_t)h->value_len, limit);
	ret |= ism_buf_append(out, "\r\n", 2, limit);
	return ret;
}

/* Envoy's xff_num_trusted_hops (Istio's gatewayTopology.numTrustedProxies N):
 * the client is the Nth address from the right of the X-Forwarded-For the
 * client sent (the last such field, the one forwarded), when it has that many
 * and that one is an IP address; else the connection's peer. */
static void trusted_client(const struct ism_table *t, const struct ism_http_req *req,
			   struct ism_conn *c)
{
	const struct ism_http_header *xff = NULL;
	const char *p, *e, *s;
	uint32_t k = 0;

	c->xff_client[0] = '\0';
	if (t->trusted_proxies == 0)
		return;
	for (size_t i = 0; i < req->n_headers; i++)
		if (hdr_is(&req->headers[i], "x-forwarded-for"))
			xff = &req->headers[i];
	if (xff == NULL)
		return;
	for (e = xff->value + xff->value_len;; e = s - 1) {
		/* [s, e) is an element, right to left. */
		for (s = e; s > xff->value && s[-1] != ','; s--)
			;
		if (++k < t->trusted_proxies) {
			if (s == xff->value)
				return; /* fewer addresses than trusted hops */
			continue;
		}
		for (p = s; p < e && (*p == ' ' || *p == '\t'); p++)
			;
		while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if ((size_t)(e - p) < sizeof(c->xff_client)) {
			unsigned char addr[sizeof(struct in6_addr)];

			memcpy(c->xff_client, p, (size_t)(e - p));
			c->xff_client[e - p] = '\0';
			if (inet_pton(AF_INET, c->xff_client, addr) != 1 &&
			    inet_pton(AF_INET6, c->xff_client, addr) != 1)
				c->xff_client[0] = '\0';
		}
		return;
	}
}

/* The exchange's client address: by numTrustedProxies, else the peer. */
static const char *client_addr(const struct ism_conn *c)
{
	return c->xff_client[0] ? c->xff_client : c->peer;
}

/* Appends prefix, n in base 10 or 16, CRLF: a content-length field or a chunk
 * size line, on the hot path, without printf. */
static int put_num_line(struct ism_buf *out, const char *prefix, uint64_t n, unsigned base,
			uint32_t limit)
{
	char line[32 + 20 + 2];
	size_t i = sizeof(line), plen = strlen(prefix);

	ISM_BUG_ON(plen > 32);
	line[--i] = '\n';
	line[--i] = '\r';
	do {
		line[--i] = "0123456789abcdef"[n % base];
		n /= base;
	} while (n);
	i -= plen;
	memcpy(line + i, prefix, plen);
	return ism_buf_append(out, line + i, (uint32_t)(sizeof(line) - i), limit);
}

static int put_content_length(struct ism_buf *out, uint64_t n, uint32_t limit)
{
	return put_num_line(out, "content-length: ", n, 10, limit);
}

static void request_id(struct ism_wctx *w, char out[37])
{
	uint32_t r[4];

	for (int i = 0; i < 4; i++)
		r[i] = ism_w_rand(w);
	r[1] = (r[1] & 0xffff0fffu) | 0x00004000u;
	r[2] = (r[2] & 0x3fffffffu) | 0x80000000u;
	snprintf(out, 37, "%08x-%04x-%04x-%04x-%04x%08x", r[0], r[1] >> 16, r[1] & 0xffff,
		 r[2] >> 16, r[2] & 0xffff, r[3]);
}

/* Writes the request head the upstream gets: origin-form target, the client's
 * end-to-end headers, and the proxy's own X-Forwarded-* and X-Request-Id. */
static int build_upstream_head(struct ism_wctx *w, struct ism_conn *c,
			       const struct ism_http_req *req, const struct ism_cluster *cl,
			       struct ism_buf *out)
{
	const uint32_t limit = w->table->limits.max_request_header_bytes + 4096;
	const char *xff = NULL;
	size_t xff_len = 0;
	int have_rid = 0, ret = 0;

	out->len = 0;
	/* An HTTP/1.0 client is forwarded as HTTP/1.0, so the upstream answers in a
	 * framing that client can read (no chunked coding). */
	ret |= buf_printf(out, limit, "%.*s %.*s%s%.*s HTTP/1.%d\r\n", (int)req->method_len,
			  req->method, (int)req->path_len, req->path, req->query ? "?" : "",
			  (int)req->query_len, req->query ? req->query : "", c->http10 ? 0 : 1);
	if (c->http10)
		ret |= buf_printf(out, limit, "connection: keep-alive\r\n");
	if (req->host)
		ret |= buf_printf(out, limit, "host: %.*s\r\n", (int)req->host_len, req->host);
	else
		ret |= buf_printf(out, limit, "host: %s\r\n", cl->host.p);
	for (size_t i = 0; i < req->n_headers; i++) {
		const struct ism_http_header *h = &req->headers[i];

		if (hdr_is(h, "host") || hdr_is(h, "x-forwarded-proto"))
			continue;
		if (hdr_is(h, "x-forwarded-for")) {
			xff = h->value;
			xff_len = h->value_len;
			continue;
		}
		if (!ism_http_end_to_end(&req->framing, req->headers, req->n_headers, h))
			continue;
		if (hdr_is(h, "x-request-id"))
			have_rid = 1;
		ret |= put_header(out, h, limit);
	}
	/* The framing that was parsed, whatever the fields said (a Connection
	 * field naming Content-Length must not unframe the body). */
	if (req->framing.chunked)
		ret |= buf_printf(out, limit, "transfer-encoding: chunked\r\n");
	else if (req->framing.content_length >= 0)
		ret |= put_content_length(out, (uint64_t)req->framing.content_length, limit);
	if (xff)
		ret |= buf_printf(out, limit, "x-forwarded-for: %.*s, %s\r\n", (int)xff_len, xff,
				  c->peer);
	else
		ret |= buf_printf(out, limit, "x-forwarded-for: %s\r\n", c->peer);
	ret |= buf_printf(out, limit, "x-forwarded-proto: %s\r\n", c->x.ssl ? "https" : "http");
	if (!have_rid) {
		char rid[37];

		request_id(w, rid);
		ret |= buf_printf(out, limit, "x-request-id: %s\r\n", rid);
		if (c->log_req != NULL)
			memcpy(c->log_req->request_id, rid, sizeof(rid));
	}
	ret |= ism_buf_append(out, "\r\n", 2, limit);
	return ret ? -ENOMEM : 0;
}

/* Takes the body bytes among the len bytes at p (the rest belongs to the next
 * message): returns how many, ISM_HTTP_EBAD on malformed chunking or -ENOMEM;
 * *done when the body ended within them. A body delimited by its length or by
 * the close goes on as it is (the caller sends p itself); a chunked one is
 * re-framed, appended to tx: each run of data as a chunk of its own, then the
 * last chunk (extensions and trailers dropped, as Envoy and HAProxy do), or
 * the data alone for an HTTP/1.0 client. */
static ssize_t body_take(struct ism_body *b, const char *p, uint32_t len, struct ism_buf *tx,
			 uint8_t *done)
{
	size_t used, off = 0, dlen, n;
	const char *data;
	int r = ISM_CHUNK_MORE, ret = 0;

	*done = 0;
	switch (b->mode) {
	case ISM_BODY_NONE:
		*done = 1;
		return 0;
	case ISM_BODY_CL:
		n = b->remaining < len ? (size_t)b->remaining : len;
		b->remaining -= n;
		*done = b->remaining == 0;
		return (ssize_t)n;
	case ISM_BODY_CLOSE:
		return len;
	case ISM_BODY_CHUNKED:
		while (r == ISM_CHUNK_MORE && off < len && ret == 0) {
			r = ism_chunked_next(&b->ch, p + off, len - off, &used, &data, &dlen);
			if (r < 0)
				return r;
			off += used;
			if (dlen == 0)
				continue;
			if (!b->bare)
				ret |= put_num_line(tx, "", dlen, 16, UINT32_MAX);
			ret |= ism_buf_append(tx, data, (uint32_t)dlen, UINT32_MAX);
			if (!b->bare)
				ret |= ism_buf_append(tx, "\r\n", 2, UINT32_MAX);
		}
		if (r == ISM_CHUNK_END) {
			*done = 1;
			if (!b->bare)
				ret |= ism_buf_append(tx, "0\r\n\r\n", 5, UINT32_MAX);
		}
		return ret ? -ENOMEM : (ssize_t)off;
	}
	ISM_BUG_ON(1);
	return -1;
}

/* body_take for the bytes that came with a head: they go out in the same send,
 * appended to out after the head. */
static ssize_t body_take_into(struct ism_body *b, const char *p, uint32_t len, struct ism_buf *out,
			      uint8_t *done)
{
	ssize_t n = body_take(b, p, len, out, done);

	if (n > 0 && b->mode != ISM_BODY_CHUNKED &&
	    ism_buf_append(out, p, (uint32_t)n, UINT32_MAX) < 0)
		return -ENOMEM;
	return n;
}

/* The body bytes of one later read (ring buffer bid) on their way to the other
 * side: *out is what to send, the bytes themselves (with bid) or the chunks
 * re-framed in tx (bid -1: the caller returns the buffer). Returns as body_take. */
static ssize_t body_relay(struct ism_body *b, char *data, uint32_t len, int bid, struct ism_buf *tx,
			  struct ism_span *out, uint8_t *done)
{
	ssize_t n;

	tx->len = 0;
	n = body_take(b, data, len, tx, done);
	if (b->mode == ISM_BODY_CHUNKED)
		*out = (struct ism_span){.p = tx->p, .len = tx->len, .bid = -1};
	else
		*out = (struct ism_span){.p = data, .len = n > 0 ? (uint32_t)n : 0, .bid = bid};
	return n;
}

/* A send from a ring buffer found the socket full (-EAGAIN) or took part of the
 * bytes: the rest moves to the side's private buffer tx and the ring buffer goes
 * back, so a peer that does not read holds no shared receive buffer, only this
 * copy (ISM_BUF_SIZE at most). The caller sends *span again. 0, or -ENOMEM. */
static int park(struct ism_wctx *w, struct ism_span *span, struct ism_buf *tx, int res)
{
	uint32_t sent = res > 0 ? (uint32_t)res : 0;

	tx->len = 0;
	if (ism_buf_append(tx, span->p + sent, span->len - sent, UINT32_MAX) < 0)
		return -ENOMEM;
	ism_w_buf_recycle(w, span->bid);
	*span = (struct ism_span){.p = tx->p, .len = tx->len, .bid = -1};
	atomic_fetch_add_explicit(&w->st->send_parked, 1, memory_order_relaxed);
	return 0;
}

/* Whether a send completion is one that park() handles. */
static bool must_park(const struct ism_span *span, int res)
{
	return ism_w_buf_shared(span->bid) &&
	       (res == -EAGAIN || (res >= 0 && (uint32_t)res < span->len));
}

static const struct ism_cluster *req_cluster(struct ism_wctx *w, const struct ism_conn *c);

/* The server name upstream TLS sends: the cluster's (the DestinationRule's sni,
 * or ISTIO_MUTUAL's outbound_ name), else the request's host. */
static const char *up_sni(const struct ism_conn *c, const struct ism_cluster *cl)
{
	return cl->tls.sni.len ? cl->tls.sni.p : c->up_sni;
}

/* What a pooled upstream connection must match to carry a request: plaintext
 * (0), or the TLS settings and the server name its certificate was checked for
 * (Envoy keeps one pool per SNI when the SNI comes from the request). */
static uint64_t pool_key(const struct ism_conn *c, const struct ism_cluster *cl)
{
	const char *sni;
	uint64_t k;

	if (cl->tls.mode == ISM_TLS_NONE)
		return 0;
	sni = up_sni(c, cl);
	k = ism_hash64(sni, strlen(sni), cl->tls.fingerprint);
	return k ? k : 1;
}

static struct ism_upconn *up_connect(struct ism_wctx *w, struct ism_conn *c,
				     const struct ism_endpoint *ep)
{
	const struct ism_cluster *cl = req_cluster(w, c);
	struct ism_upconn *u = up_alloc(w);
	struct io_uring_sqe *sqe;
	int one = 1;

	if (u == NULL)
		return NULL;
	u->fd = socket(ep->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (u->fd < 0) {
		u->state = ISM_U_FREE;
		u->next_free = w->free_ups;
		w->free_ups = u;
		return NULL;
	}
	setsockopt(u->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	u->state = ISM_U_CONNECTING;
	u->ep_id = ep->id;
	u->tls_fp = cl != NULL ? pool_key(c, cl) : 0;
	if (u->tls_fp != 0) {
		u->x.ssl = ism_tls_client_ssl(w, &cl->tls, ep->id, up_sni(c, cl), u->tls_fp);
		if (u->x.ssl == NULL) {
			close(u->fd);
			u->state = ISM_U_FREE;
			u->next_free = w->free_ups;
			w->free_ups = u;
			return NULL;
		}
	}
	atomic_fetch_add_explicit(&w->shm->hdr->eps[ep->id].connections, 1, memory_order_relaxed);
	memcpy(&u->addr, &ep->addr, ep->addrlen);
	u->addrlen = ep->addrlen;
	sqe = ism_w_sqe(w);
	io_uring_prep_connect(sqe, u->fd, (struct sockaddr *)&u->addr, u->addrlen);
	io_uring_sqe_set_data64(sqe, ism_ud(ISM_OP_UCONNECT, u->idx, u->gen));
	u->inflight++;
	atomic_fetch_add_explicit(&w->st->upstream_connects, 1, memory_order_relaxed);
	set_deadline(w, c, ISM_DL_CONNECT, c->connect_timeout_ms);
	return u;
}

/* An idle connection to the endpoint, of the cluster's TLS settings (clusters
 * of one service host share endpoints; a subset may use TLS, another not). */
static struct ism_upconn *pool_take(struct ism_wctx *w, uint32_t ep_id, uint64_t tls_fp)
{
	struct ism_upconn *u = w->pool[ep_id];

	while (u != NULL && u->tls_fp != tls_fp)
		u = u->pool_next;
	if (u == NULL)
		return NULL;
	pool_remove(w, u);
	u->state = ISM_U_BUSY;
	u->reused = 1;
	atomic_fetch_add_explicit(&w->st->upstream_reused, 1, memory_order_relaxed);
	return u;
}

/* Sends the request head (and the body bytes that came with it) once the
 * upstream connection is usable. */
static void up_send_out(struct ism_wctx *w, struct ism_upconn *u)
{
	struct ism_conn *c = u->conn;

	u_recv(w, u);
	set_deadline(w, c, ISM_DL_RESPONSE,
		     c->rs.per_try_ms && c->rs.per_try_ms < c->response_timeout_ms
			 ? c->rs.per_try_ms
			 : c->response_timeout_ms);
	u_send(w, u, u->out.p, u->out.len, -1);
}

/* Envoy's max_connections circuit breaker: the cluster's upstream connections,
 * all workers together. */
static int pool_full(struct ism_wctx *w, const struct ism_cluster *cl)
{
	uint64_t n = 0;

	if (cl->pool.max_connections == UINT32_MAX || cl->pool.max_connections == 0)
		return 0;
	for (uint32_t i = 0; i < cl->n_endpoints; i++)
		n += atomic_load_explicit(&w->shm->hdr->eps[cl->endpoints[i].id].connections,
					  memory_order_relaxed);
	return n >= cl->pool.max_connections;
}

/* Starts an attempt: the request head (and the body bytes that came with it)
 * in head goes to endpoint ep of cluster cl, over a pooled connection or a new
 * one. head is taken (swapped with the connection's old buffer). */
/* maxConnections reached: the request waits for a connection of the cluster to
 * be released, if http1MaxPendingRequests allows; else 503 (overflow). */
static void wait_for_connection(struct ism_wctx *w, struct ism_conn *c,
				const struct ism_cluster *cl, struct ism_buf *head)
{
	if (atomic_load_explicit(&cl->dyn->pending, memory_order_relaxed) >= cl->pool.max_pending) {
		atomic_fetch_add_explicit(&cl->dyn->overflow, 1, memory_order_relaxed);
		local_response(w, c, 503, "upstream overflow (maxConnections)", 0);
		return;
	}
	atomic_fetch_add_explicit(&cl->dyn->pending, 1, memory_order_relaxed);
	ism_buf_free(&c->replay);
	c->replay = *head;
	*head = (struct ism_buf){0};
	c->waiting = 1;
	c->wait_next = NULL;
	c->wait_prev = w->wait_tail;
	if (w->wait_tail)
		w->wait_tail->wait_next = c;
	else
		w->wait_head = c;
	w->wait_tail = c;
	c->state = ISM_C_PROXY;
	/* A wait is bounded like a connect, from the first time it queued: going
	 * back to the queue after a wake-up does not extend it. */
	if (c->wait_deadline == 0)
		c->wait_deadline = w->now + c->connect_timeout_ms;
	c->deadline_kind = ISM_DL_CONNECT;
	c->deadline = c->route_deadline && c->route_deadline < c->wait_deadline ? c->route_deadline
										: c->wait_deadline;
}

static void wait_remove(struct ism_wctx *w, struct ism_conn *c)
{
	const struct ism_cluster *cl;

	if (!c->waiting)
		return;
	if (c->wait_prev)
		c->wait_prev->wait_next = c->wait_next;
	else
		w->wait_head = c->wait_next;
	if (c->wait_next)
		c->wait_next->wait_prev = c->wait_prev;
	else
		w->wait_tail = c->wait_prev;
	c->wait_next = c->wait_prev = NULL;
	c->waiting = 0;
	cl = w->table->gen == c->table_gen && c->cluster < w->table->n_clusters
		 ? &w->table->clusters[c->cluster]
		 : NULL;
	if (cl != NULL)
		atomic_fetch_sub_explicit(&cl->dyn->pending, 1, memory_order_relaxed);
}

/* Starts an attempt: the request head (and the body bytes that came with it)
 * in head goes to endpoint ep of cluster cl, over a pooled connection or a new
 * one. head is taken (swapped with the connection's old buffer). */
static void dispatch(struct ism_wctx *w, struct ism_conn *c, const struct ism_cluster *cl,
		     const struct ism_endpoint *ep, struct ism_buf *head)
{
	struct ism_upconn *u = pool_take(w, ep->id, pool_key(c, cl));
	struct ism_buf tmp;

	if (u == NULL && pool_full(w, cl)) {
		wait_for_connection(w, c, cl, head);
		return;
	}
	c->wait_deadline = 0;
	c->ep_id = ep->id;
	c->prev_ep = ep->id;
	c->rs.tries++;
	atomic_fetch_add_explicit(&w->shm->hdr->eps[ep->id].inflight, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&w->shm->hdr->eps[ep->id].requests, 1, memory_order_relaxed);
	if (u == NULL)
		u = up_connect(w, c, ep);
	if (u == NULL) {
		local_response(w, c, 503, "upstream connect error", 0);
		return;
	}
	u->conn = c;
	u->got_bytes = 0;
	u->reusable = 1;
	if (++u->requests >= cl->pool.max_requests_per_conn && cl->pool.max_requests_per_conn)
		u->reusable = 0;
	c->up = u;
	tmp = u->out;
	u->out = *head;
	*head = tmp;
	head->len = 0;
	c->state = ISM_C_PROXY;
	if (u->state == ISM_U_BUSY)
		up_send_out(w, u);
}

/* The request's cluster, while the worker still uses the table it was routed
 * with; NULL after a reload moved the worker on (its indices mean nothing now). */
static const struct ism_cluster *req_cluster(struct ism_wctx *w, const struct ism_conn *c)
{
	if (w->table->gen != c->table_gen || c->cluster >= w->table->n_clusters)
		return NULL;
	return &w->table->clusters[c->cluster];
}

static int pick_endpoint(struct ism_wctx *w, struct ism_conn *c, uint32_t exclude)
{
	struct ism_lb_req rq = {
	    .exclude_id = exclude,
	    .rnd = ism_w_rand(w),
	    .rnd2 = ism_w_rand(w),
	    .hash = c->hash,
	    .has_hash = c->has_hash,
	};

	return ism_lb_pick(w->lb, c->cluster, w->shm->hdr->eps, &rq);
}

/* Tells outlier detection how the attempt on c->prev_ep went; an ejection is
 * announced to every process (health epoch) and the master woken to recompute
 * the priority loads. */
static void record_outcome(struct ism_wctx *w, struct ism_conn *c, enum ism_failure f, int status)
{
	const struct ism_cluster *cl = req_cluster(w, c);
	uint64_t one = 1;

	if (cl == NULL || cl->od == NULL || c->prev_ep == UINT32_MAX)
		return;
	if (!ism_outlier_record(cl, w->shm->hdr->eps, c->prev_ep, ism_outcome_of(f, status),
				w->now))
		return;
	atomic_fetch_add(&w->shm->hdr->health_epoch, 1);
	if (write(w->notify_fd, &one, sizeof(one)) < 0)
		ism_debug("notify master: %s", strerror(errno));
	ism_warn("endpoint %s ejected by outlier detection (cluster %s, %s)",
		 w->shm->hdr->ep_keys[c->prev_ep], cl->name.p,
		 f == ISM_FAIL_CONNECT	 ? "connect failure"
		 : f == ISM_FAIL_RESET	 ? "reset"
		 : f == ISM_FAIL_TIMEOUT ? "timeout"
					 : "5xx");
}

/* The outcome of a response that streamed (od_pending), told to outlier
 * detection once it is known: success when it ended as framed, else f. */
static void od_settle(struct ism_wctx *w, struct ism_conn *c, enum ism_failure f)
{
	if (!c->od_pending)
		return;
	c->od_pending = 0;
	record_outcome(w, c, f, f == ISM_FAIL_NONE ? c->status : 0);
}

static void retry_done(struct ism_wctx *w, struct ism_conn *c)
{
	const struct ism_cluster *cl = req_cluster(w, c);

	if (c->retry_counted && cl != NULL)
		atomic_fetch_sub_explicit(&cl->dyn->retries_active, 1, memory_order_relaxed);
	c->retry_counted = 0;
}

/* Whether this failed attempt may be retried: attempts left, a request we can
 * replay whole (its body went out with the head), time left, the retry policy
 * wants it, and the cluster's maxRetries allows one more retry in flight. */
static int retry_possible(struct ism_wctx *w, struct ism_conn *c, enum ism_failure f, int status)
{
	const struct ism_cluster *cl = req_cluster(w, c);

	if (cl == NULL || c->rs.retries_left == 0 || !c->req_done || c->req_streamed ||
	    w->draining || c->resp_started)
		return 0;
	if (c->replay.len == 0 && (c->up == NULL || c->up->out.len == 0))
		return 0;
	if (c->route_deadline && w->now >= c->route_deadline)
		return 0;
	if (!ism_retry_wanted(&c->rs, f, status))
		return 0;
	if (!c->retry_counted &&
	    atomic_load_explicit(&cl->dyn->retries_active, memory_order_relaxed) >=
		cl->pool.max_retries) {
		atomic_fetch_add_explicit(&cl->dyn->overflow, 1, memory_order_relaxed);
		return 0;
	}
	return 1;
}

/* Ends the attempt in progress: the upstream connection is closed and the
 * request head kept in c->replay when it can be replayed. */
static void end_attempt(struct ism_wctx *w, struct ism_conn *c)
{
	struct ism_upconn *u = c->up;

	if (u == NULL)
		return;
	if (c->req_done && !c->req_streamed && u->out.len) {
		ism_buf_free(&c->replay);
		c->replay = u->out;
		u->out = (struct ism_buf){0};
	}
	ep_done(w, c, 1);
	c->up = NULL;
	u->conn = NULL;
	up_close(w, u);
}

/* Schedules the next attempt after Envoy's jittered back-off. */
static void schedule_retry(struct ism_wctx *w, struct ism_conn *c)
{
	const struct ism_cluster *cl = req_cluster(w, c);
	struct io_uring_sqe *sqe;
	uint32_t ms = ism_retry_backoff_ms(c->rs.backoff_base_ms, c->rs.tries, ism_w_rand(w));

	c->rs.retries_left--;
	atomic_fetch_add_explicit(&cl->dyn->retries, 1, memory_order_relaxed);
	if (!c->retry_counted) {
		atomic_fetch_add_explicit(&cl->dyn->retries_active, 1, memory_order_relaxed);
		c->retry_counted = 1;
	}
	c->retry_ts.tv_sec = ms / 1000;
	c->retry_ts.tv_nsec = (long long)(ms % 1000) * 1000000;
	sqe = ism_w_sqe(w);
	io_uring_prep_timeout(sqe, &c->retry_ts, 0, 0);
	io_uring_sqe_set_data64(sqe, ism_ud(ISM_OP_RETRY, c->idx, c->gen));
	c->inflight++;
	c->retry_pending = 1;
	/* Only the route's timeout bounds the wait. */
	set_deadline(w, c, ISM_DL_RESPONSE, 0);
}

static void do_retry(struct ism_wctx *w, struct ism_conn *c)
{
	const struct ism_cluster *cl = req_cluster(w, c);
	struct ism_buf head;
	int ei;

	if (c->state != ISM_C_PROXY || c->up != NULL || c->waiting)
		return; /* answered meanwhile (route timeout), or queued */
	if (cl == NULL) {
		local_response(w, c, 503, "configuration changed during a retry", 0);
		return;
	}
	ei = pick_endpoint(w, c, c->rs.ignore_previous ? c->prev_ep : UINT32_MAX);
	if (ei < 0) {
		local_response(w, c, 503, "no healthy upstream", 0);
		return;
	}
	head = c->replay;
	c->replay = (struct ism_buf){0};
	dispatch(w, c, cl, &cl->endpoints[ei], &head);
	ism_buf_free(&head);
}

/* An attempt failed before a usable response: tell outlier detection, then
 * retry if the policy allows, else answer 503 (connect), 504 (timeout) or 502. */
static void attempt_failed(struct ism_wctx *w, struct ism_conn *c, enum ism_failure f)
{
	if (c->up != NULL)
		record_outcome(w, c, f, 0);
	end_attempt(w, c);
	if (retry_possible(w, c, f, 0)) {
		schedule_retry(w, c);
		return;
	}
	if (f == ISM_FAIL_CONNECT)
		local_response(w, c, 503, "upstream connect error", 0);
	else if (f == ISM_FAIL_TIMEOUT)
		local_response(w, c, 504, "upstream timeout", 1);
	else
		local_response(w, c, 502, "upstream connection closed", 1);
}

/* The access log's view of a request, captured while its head is in the buffer
 * (req NULL: it could not be parsed). Only when the log is on. */
static void log_begin(struct ism_wctx *w, struct ism_conn *c, const struct ism_http_req *req)
{
	if (w->alog.fd < 0)
		return;
	free(c->log_req);
	c->log_req = ism_alog_capture(w->alog.headers, req, ism_wall_ms());
	c->flags = NULL;
}

/* The line of the exchange that ends now. */
static void log_exchange(struct ism_wctx *w, struct ism_conn *c)
{
	const struct ism_cluster *cl;
	struct ism_alog_rec r;

	if (c->log_req == NULL)
		return;
	cl = req_cluster(w, c);
	r = (struct ism_alog_rec){
	    .req = c->log_req,
	    .duration_ms = ism_wall_ms() - c->log_req->start_ms,
	    .bytes_in = c->req_bytes_in,
	    .bytes_out = c->req_bytes_out,
	    .status = c->status,
	    .attempts = c->rs.tries,
	    .flags = c->flags,
	    .client = client_addr(c),
	    .peer = c->peer,
	    .client_port = c->xff_client[0] ? 0 : c->peer_port,
	    .upstream = c->prev_ep != UINT32_MAX ? w->shm->hdr->ep_keys[c->prev_ep] : NULL,
	    .cluster = cl ? cl->name.p : NULL,
	    .sni = c->sni,
	};
	ism_alog_log(w, &r);
	c->xff_client[0] = '\0';
	free(c->log_req);
	c->log_req = NULL;
	c->req_bytes_in = c->req_bytes_out = 0;
	c->flags = NULL;
}

/* httpCookie with a ttl: a request without the cookie gets one, so that its
 * next requests hash to the same endpoint (Istio's consistentHash.httpCookie). */
static void issue_cookie(struct ism_wctx *w, struct ism_conn *c, const struct ism_cluster *cl)
{
	const struct ism_hash_policy *hp = &cl->hash;
	char value[17];
	int n;

	if (hp->on != ISM_HASH_COOKIE || hp->cookie_ttl_ms == 0)
		return;
	snprintf(value, sizeof(value), "%08x%08x", ism_w_rand(w), ism_w_rand(w));
	free(c->set_cookie);
	n = asprintf(&c->set_cookie, "%s=%s; Max-Age=%u; Path=%s; HttpOnly", hp->name.p, value,
		     hp->cookie_ttl_ms / 1000 ? hp->cookie_ttl_ms / 1000 : 1,
		     hp->cookie_path.len ? hp->cookie_path.p : "/");
	if (n < 0) {
		c->set_cookie = NULL;
		return;
	}
	c->hash = ism_hash64(value, strlen(value), 0);
	c->has_hash = 1;
}

/* Parses what the client sent; when a head is complete, routes it and starts
 * the exchange. */
/* tls.httpsRedirect: 301 to the same URL over https (Envoy's require_tls). */
static void https_redirect(struct ism_wctx *w, struct ism_conn *c, const struct ism_http_req *req)
{
	size_t hl = req->host ? ism_router_host_len(req->host, req->host_len) : 0;
	char *loc = NULL;

	if (req->host == NULL) {
		local_response(w, c, 400, "no Host to redirect to", 1);
		return;
	}
	if (asprintf(&loc, "location: https://%.*s%.*s\r\n", (int)hl, req->host,
		     (int)req->target_len, req->target) < 0) {
		conn_close(w, c);
		return;
	}
	local_response_ex(w, c, 301, "use https", 0, loc);
	free(loc);
}

static void try_request(struct ism_wctx *w, struct ism_conn *c)
{
	const struct ism_table *t = w->table;
	const struct ism_listener *l;
	const struct ism_vhost *vh;
	const struct ism_route *r;
	const struct ism_cluster *cl;
	struct ism_http_limits lim = {
	    .max_head_bytes = t->limits.max_request_header_bytes,
	    .max_headers = t->limits.max_request_headers < ISM_MAX_HDRS
			       ? t->limits.max_request_headers
			       : ISM_MAX_HDRS,
	    .max_uri_bytes = t->limits.max_uri_bytes,
	};
	struct ism_http_req req = {.headers = w->hdrs};
	struct ism_buf head = {0};
	ssize_t n;
	int ci, ei, ret;
	uint8_t done = 0;
	ssize_t body;

	if (c->listener >= t->n_listeners) {
		local_response(w, c, 503, "listener not configured", 1);
		return;
	}
	l = &t->listeners[c->listener];
	n = ism_http_parse_request(c->in.p, c->in.len, &lim, &req);
	if (n == ISM_HTTP_INCOMPLETE) {
		if (c->state == ISM_C_IDLE) {
			c->state = ISM_C_HEAD;
			set_deadline(w, c, ISM_DL_HEADER, t->timeouts.request_header_ms);
		}
		c_recv(w, c);
		return;
	}
	c->req_done = 0;
	if (n < 0) {
		c->req_done = 1;
		log_begin(w, c, NULL);
		local_response(w, c, ism_http_error_status(n), "bad request", 1);
		return;
	}
	atomic_fetch_add_explicit(&w->st->requests, 1, memory_order_relaxed);
	ret = ism_router_normalize(w->rs, t->path_norm, &req);
	if (ret < 0) {
		c->req_done = 1;
		log_begin(w, c, &req);
		local_response(w, c, ret == -ENOMEM ? 503 : 400,
			       ret == -ENOMEM ? "out of memory" : "bad request path", 1);
		return;
	}
	trusted_client(t, &req, c);
	c->t0_ms = w->now;
	c->cluster = UINT32_MAX;
	c->table_gen = t->gen;
	c->lis_stats = l->stats;
	c->route_stats = NULL;
	c->prev_ep = UINT32_MAX;
	c->rs.tries = 0;
	log_begin(w, c, &req);
	c->http10 = req.minor_version == 0;
	c->keepalive = c->http10 ? req.framing.conn == ISM_HTTP_CONN_KEEPALIVE
				 : req.framing.conn != ISM_HTTP_CONN_CLOSE;
	c->is_head = req.method_len == 4 && memcmp(req.method, "HEAD", 4) == 0;
	c->resp.mode = ISM_BODY_NONE;
	c->resp_head_done = c->resp_started = c->resp_done = 0;
	c->od_pending = 0;
	c->req_streamed = 0;
	c->req_seen = 0;
	c->status = 0;
	c->req = (struct ism_body){.mode = ISM_BODY_NONE};
	if (req.framing.chunked) {
		c->req.mode = ISM_BODY_CHUNKED;
		ism_chunked_init(&c->req.ch);
	} else if (req.framing.content_length > 0) {
		c->req.mode = ISM_BODY_CL;
		c->req.remaining = (uint64_t)req.framing.content_length;
		if (t->limits.max_request_body_bytes &&
		    c->req.remaining > t->limits.max_request_body_bytes) {
			local_response(w, c, 413, "request body too large", 1);
			return;
		}
	}
	c->req_done = c->req.mode == ISM_BODY_NONE;
	/* Upgrade is hop-by-hop and is dropped (h2c offers are common and harmless);
	 * tunnels are not proxied. */
	if (req.method_len == 7 && memcmp(req.method, "CONNECT", 7) == 0) {
		local_response(w, c, 501, "CONNECT is not supported", 1);
		return;
	}
	if (l->n_tls) {
		/* The server the SNI chose (found again: a reload may reorder them). */
		int s = ism_router_pick_server(l, c->sni ? c->sni : "");

		vh = s >= 0
			 ? ism_router_vhost(l->tls[s].vhosts, l->tls[s].n_vhosts,
					    req.host ? req.host : "", req.host ? req.host_len : 0)
			 : NULL;
	} else {
		vh = ism_router_vhost(l->vhosts, l->n_vhosts, req.host ? req.host : "",
				      req.host ? req.host_len : 0);
	}
	if (vh != NULL && vh->https_redirect && c->x.ssl == NULL) {
		https_redirect(w, c, &req);
		goto consume;
	}
	r = vh ? ism_router_route(vh, &req, c->x.ssl ? "https" : "http", l->port, w->rs) : NULL;
	c->route_stats = r ? r->stats : NULL;
	if (r != NULL && c->log_req != NULL)
		snprintf(c->log_req->route, sizeof(c->log_req->route), "%s", r->name.p);
	if (r == NULL && ism_router_limit_hit(w->rs)) {
		/* Not "no route": a regex could not decide within its bound. */
		atomic_fetch_add_explicit(&w->st->regex_limit, 1, memory_order_relaxed);
		local_response(w, c, 500, "route regex reached its match limit", 0);
		goto consume;
	}
	if (r == NULL) {
		local_response(w, c, 404, "no route", 0);
		goto consume;
	}
	ci = ism_router_pick_dest(r, ism_w_rand(w));
	if (ci < 0 || (uint32_t)ci >= t->n_clusters) {
		local_response(w, c, 503, "no destination", 0);
		goto consume;
	}
	cl = &t->clusters[ci];
	c->cluster = (uint32_t)ci;
	c->table_gen = t->gen;
	c->prev_ep = UINT32_MAX;
	c->wait_deadline = 0;
	ism_retry_state_init(&c->rs, &r->retry);
	c->has_hash = 0;
	if (cl->lb == ISM_LB_RING_HASH || cl->lb == ISM_LB_MAGLEV) {
		c->has_hash = (uint8_t)ism_hash_key(&cl->hash, &req, client_addr(c), &c->hash);
		if (!c->has_hash)
			issue_cookie(w, c, cl);
	}
	ei = pick_endpoint(w, c, UINT32_MAX);
	if (ei < 0) {
		local_response(w, c, 503, "no healthy upstream", 0);
		goto consume;
	}
	if (cl->tls.mode != ISM_TLS_NONE) {
		/* Upstream SNI by default: the request's host, without its port. */
		if (req.host != NULL)
			snprintf(c->up_sni, sizeof(c->up_sni), "%.*s",
				 (int)ism_router_host_len(req.host, req.host_len), req.host);
		else
			snprintf(c->up_sni, sizeof(c->up_sni), "%s", cl->host.p);
	}
	c->connect_timeout_ms = cl->connect_timeout_ms;
	c->pool_idle_ms = cl->idle_timeout_ms;
	c->response_timeout_ms = t->timeouts.upstream_response_ms;
	c->route_deadline = r->timeout_ms ? w->now + r->timeout_ms : 0;
	if (build_upstream_head(w, c, &req, cl, &head) < 0) {
		ism_buf_free(&head);
		local_response(w, c, 431, "request head too large", 1);
		return;
	}
	/* Body bytes that arrived with the head travel with it. */
	body = body_take_into(&c->req, c->in.p + n, c->in.len - (uint32_t)n, &head, &done);
	if (body < 0) {
		ism_buf_free(&head);
		if (body == -ENOMEM)
			local_response(w, c, 503, "out of memory", 1);
		else
			local_response(w, c, 400, "malformed chunked body", 1);
		return;
	}
	c->req_seen = (uint64_t)body;
	if (t->limits.max_request_body_bytes && c->req_seen > t->limits.max_request_body_bytes) {
		ism_buf_free(&head);
		c->req_done = 1;
		local_response(w, c, 413, "request body too large", 1);
		return;
	}
	c->req_done = done;
	ism_buf_consume(&c->in, (uint32_t)n + (uint32_t)body);
	dispatch(w, c, cl, &cl->endpoints[ei], &head);
	ism_buf_free(&head);
	return;
consume:
	/* Answered here: drop the head; a body, if any, is not read (close). */
	ism_buf_consume(&c->in, (uint32_t)n);
}

/* ---------- response ---------- */

/* The head the client gets for a response head of the upstream: its
 * end-to-end fields, then (final head) the framing of what is relayed: the
 * upstream's transfer codings for a re-chunked body, the parsed length, or for
 * a response without a body the length it announces (HEAD, 304), never one on
 * a 1xx or a 204 (RFC 9110 8.6). */
static int build_client_head(struct ism_wctx *w, struct ism_conn *c,
			     const struct ism_http_resp *resp, int final)
{
	const uint32_t limit = w->table->limits.max_response_header_bytes + 4096;
	int64_t cl = resp->framing.content_length;
	int ret = 0;

	ret |= buf_printf(&c->out, limit, "HTTP/1.1 %d %.*s\r\n", resp->status,
			  (int)resp->reason_len, resp->reason ? resp->reason : "");
	for (size_t i = 0; i < resp->n_headers; i++) {
		const struct ism_http_header *h = &resp->headers[i];

		if (ism_http_end_to_end(&resp->framing, resp->headers, resp->n_headers, h))
			ret |= put_header(&c->out, h, limit);
		else if (final && c->resp.mode == ISM_BODY_CHUNKED && !c->resp.bare &&
			 hdr_is(h, "transfer-encoding"))
			ret |= put_header(&c->out, h, limit);
	}
	if (final && c->resp.mode != ISM_BODY_CHUNKED && c->resp.mode != ISM_BODY_CLOSE &&
	    cl >= 0 && resp->status != 204)
		ret |= put_content_length(&c->out, (uint64_t)cl, limit);
	if (final && c->set_cookie)
		ret |= buf_printf(&c->out, limit, "set-cookie: %s\r\n", c->set_cookie);
	if (final && !c->keepalive)
		ret |= buf_printf(&c->out, limit, "connection: close\r\n");
	else if (final && c->http10)
		ret |= buf_printf(&c->out, limit, "connection: keep-alive\r\n");
	ret |= ism_buf_append(&c->out, "\r\n", 2, limit);
	return ret ? -ENOMEM : 0;
}

/* How the response body is delimited, and how it is relayed. */
static void resp_framing(struct ism_conn *c, const struct ism_http_resp *resp)
{
	c->resp = (struct ism_body){.mode = ISM_BODY_NONE};
	if (!ism_http_resp_has_body(resp->status, c->is_head ? "HEAD" : "GET", c->is_head ? 4 : 3))
		return;
	if (resp->framing.chunked) {
		c->resp.mode = ISM_BODY_CHUNKED;
		/* An HTTP/1.0 client cannot read chunks: it gets the data, then
		 * the close. */
		c->resp.bare = c->http10;
		ism_chunked_init(&c->resp.ch);
	} else if (resp->framing.content_length > 0) {
		c->resp.mode = ISM_BODY_CL;
		c->resp.remaining = (uint64_t)resp->framing.content_length;
	} else if (resp->framing.content_length < 0) {
		c->resp.mode = ISM_BODY_CLOSE;
	}
}

/* Parses the upstream's response head(s) in u->in. Interim 1xx heads are passed
 * on; the final one decides the body framing and the fate of both connections. */
static void resp_from_upstream(struct ism_wctx *w, struct ism_conn *c, struct ism_upconn *u)
{
	struct ism_http_limits lim = {
	    .max_head_bytes = w->table->limits.max_response_header_bytes,
	    .max_headers = ISM_MAX_HDRS,
	    .max_uri_bytes = 0,
	};
	c->out.len = 0;
	for (;;) {
		struct ism_http_resp resp = {.headers = w->uhdrs};
		ssize_t n = ism_http_parse_response(u->in.p, u->in.len, &lim, &resp);
		uint8_t done = 0;
		ssize_t body;
		int retry;

		if (n == ISM_HTTP_INCOMPLETE) {
			if (c->out.len) /* interim responses ready */
				c_send(w, c, c->out.p, c->out.len, -1);
			else
				u_recv(w, u);
			return;
		}
		if (n < 0 || resp.status == 101) {
			u->reusable = 0;
			attempt_failed(w, c, ISM_FAIL_RESET);
			return;
		}
		if (resp.status < 200) {
			if (build_client_head(w, c, &resp, 0) < 0) {
				conn_close(w, c);
				return;
			}
			ism_buf_consume(&u->in, (uint32_t)n);
			continue;
		}
		retry = retry_possible(w, c, ISM_FAIL_NONE, resp.status);
		/* A response that streams tells outlier detection how it ended
		 * (od_settle): one cut short by the upstream is a failure. */
		if (retry || ism_outcome_of(ISM_FAIL_NONE, resp.status) != ISM_OUTCOME_SUCCESS)
			record_outcome(w, c, ISM_FAIL_NONE, resp.status);
		else
			c->od_pending = 1;
		if (retry) {
			/* A retriable status: this response is dropped, its connection
			 * too (its body was not read). */
			c->out.len = 0;
			end_attempt(w, c);
			schedule_retry(w, c);
			return;
		}
		c->status = (uint16_t)resp.status;
		resp_framing(c, &resp);
		if (resp.framing.conn == ISM_HTTP_CONN_CLOSE ||
		    (resp.minor_version == 0 && resp.framing.conn != ISM_HTTP_CONN_KEEPALIVE) ||
		    c->resp.mode == ISM_BODY_CLOSE)
			u->reusable = 0;
		if (c->resp.mode == ISM_BODY_CLOSE || c->resp.bare || w->draining || !c->req_done)
			c->keepalive = 0;
		if (build_client_head(w, c, &resp, 1) < 0) {
			local_response(w, c, 502, "upstream response head too large", 1);
			return;
		}
		ism_buf_consume(&u->in, (uint32_t)n);
		body = body_take_into(&c->resp, u->in.p, u->in.len, &c->out, &done);
		if (body == -ENOMEM) {
			conn_close(w, c);
			return;
		}
		if (body < 0) {
			u->reusable = 0;
			local_response(w, c, 502, "malformed upstream body", 1);
			return;
		}
		if ((uint32_t)body < u->in.len)
			u->reusable = 0; /* bytes after the response: not a clean stream */
		u->in.len = 0;
		buf_trim(&u->in);
		ism_buf_free(&u->out); /* the response started: no replay any more */
		c->resp_head_done = 1;
		c->resp_started = 1;
		c->resp_done = done || c->resp.mode == ISM_BODY_NONE;
		count_status(w, resp.status);
		c_send(w, c, c->out.p, c->out.len, -1);
		return;
	}
}

static void pool_put(struct ism_wctx *w, struct ism_upconn *u, uint32_t idle_ms)
{
	w->wake_waiters = 1;
	u->state = ISM_U_IDLE;
	u->conn = NULL;
	u->reused = 0;
	ism_buf_free(&u->tx);
	u->idle_deadline = w->now + idle_ms;
	u->pool_prev = NULL;
	u->pool_next = w->pool[u->ep_id];
	if (u->pool_next)
		u->pool_next->pool_prev = u;
	w->pool[u->ep_id] = u;
	/* An idle pooled connection keeps a receive armed: the upstream closing
	 * it (or sending anything unexpected) shows up at once. */
	u_recv(w, u);
}

/* Requests of this cluster wait for a connection (in any worker): an idle
 * pooled connection would hold capacity they cannot use, so it is closed. */
static int others_wait(struct ism_wctx *w, const struct ism_conn *c)
{
	const struct ism_cluster *cl = req_cluster(w, c);

	return cl != NULL && atomic_load_explicit(&cl->dyn->pending, memory_order_relaxed) > 0;
}

/* The exchange's duration and status, in the worker's and the cluster's counters. */
static void count_exchange(struct ism_wctx *w, const struct ism_conn *c)
{
	static const uint32_t bounds[ISM_LAT_BUCKETS] = ISM_LAT_BOUNDS_MS;
	const struct ism_cluster *cl = req_cluster(w, c);
	uint64_t ms = w->now - c->t0_ms;
	int b = 0;

	while (b < ISM_LAT_BUCKETS - 1 && ms > bounds[b])
		b++;
	atomic_fetch_add_explicit(&w->st->latency_bucket[b], 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&w->st->latency_sum_ms, ms, memory_order_relaxed);
	if (c->status < 100 || c->status >= 600 || w->table->gen != c->table_gen)
		return;
	if (cl != NULL)
		atomic_fetch_add_explicit(&cl->dyn->responses[c->status / 100], 1,
					  memory_order_relaxed);
	if (c->lis_stats != NULL)
		atomic_fetch_add_explicit(&c->lis_stats->responses[c->status / 100], 1,
					  memory_order_relaxed);
	if (c->route_stats != NULL)
		atomic_fetch_add_explicit(&c->route_stats->responses[c->status / 100], 1,
					  memory_order_relaxed);
}

static void finish_exchange(struct ism_wctx *w, struct ism_conn *c)
{
	struct ism_upconn *u = c->up;

	od_settle(w, c, ISM_FAIL_NONE);
	count_exchange(w, c);
	log_exchange(w, c);
	c->prev_ep = UINT32_MAX; /* the next exchange starts with no attempt */
	c->rs.tries = 0;
	retry_done(w, c);
	ism_buf_free(&c->replay);
	free(c->set_cookie);
	c->set_cookie = NULL;
	if (u) {
		ep_done(w, c, c->status >= 500);
		c->up = NULL;
		u->conn = NULL;
		if (u->reusable && c->req_done && !u->send_armed && !w->draining &&
		    w->shm->hdr->eps[u->ep_id].in_use && !others_wait(w, c))
			pool_put(w, u, c->pool_idle_ms);
		else
			up_close(w, u);
	}
	if (!c->keepalive || !c->req_done || c->close_after) {
		conn_close(w, c);
		return;
	}
	/* Idle keep-alive connections hold no buffer: the next request's bytes
	 * land in a ring buffer first. */
	ism_buf_free(&c->out);
	ism_buf_free(&c->tx);
	c->route_deadline = 0;
	c->state = ISM_C_IDLE;
	c->resp_started = c->resp_done = 0;
	if (c->in.len) {
		try_request(w, c);
	} else {
		buf_trim(&c->in);
		set_deadline(w, c, ISM_DL_IDLE,
			     w->draining && w->table->timeouts.idle_ms > 1000
				 ? 1000
				 : w->table->timeouts.idle_ms);
		c_recv(w, c);
	}
}

/* ---------- completions ---------- */

static void on_crecv(struct ism_wctx *w, struct ism_conn *c, int res, int bid)
{
	char *data = bid >= 0 ? ism_w_buf_addr(w, bid) : NULL;

	if (res <= 0) {
		if (bid >= 0)
			ism_w_buf_recycle(w, bid);
		conn_close(w, c);
		return;
	}
	atomic_fetch_add_explicit(&w->st->bytes_in, (uint64_t)res, memory_order_relaxed);
	c->req_bytes_in += (uint64_t)res;
	if (c->state == ISM_C_IDLE || c->state == ISM_C_HEAD) {
		int ret = ism_buf_append(&c->in, data, (uint32_t)res,
					 w->table->limits.max_request_header_bytes + ISM_BUF_SIZE);

		ism_w_buf_recycle(w, bid);
		if (ret < 0) {
			c->req_done = 1;
			local_response(w, c, 431, "request head too large", 1);
			return;
		}
		try_request(w, c);
		return;
	}
	if (c->state == ISM_C_PROXY && c->up && !c->req_done) {
		struct ism_span out;
		uint8_t done = 0;
		ssize_t n = body_relay(&c->req, data, (uint32_t)res, bid, &c->up->tx, &out, &done);

		if (n < 0) {
			ism_w_buf_recycle(w, bid);
			local_response(w, c, n == -ENOMEM ? 503 : 400,
				       n == -ENOMEM ? "out of memory" : "malformed chunked body",
				       1);
			return;
		}
		if (n < res &&
		    ism_buf_append(&c->in, data + n, (uint32_t)(res - n),
				   w->table->limits.max_request_header_bytes + ISM_BUF_SIZE) < 0)
			c->keepalive = 0;
		c->req_done = done;
		c->req_streamed = 1;
		c->req_seen += (uint64_t)n;
		if (w->table->limits.max_request_body_bytes &&
		    c->req_seen > w->table->limits.max_request_body_bytes) {
			/* A chunked body has no length up front: count it as it passes. */
			ism_w_buf_recycle(w, bid);
			c->req_done = 1;
			local_response(w, c, 413, "request body too large", 1);
			return;
		}
		set_deadline(w, c, ISM_DL_RESPONSE, c->response_timeout_ms);
		if (out.bid < 0)
			ism_w_buf_recycle(w, bid);
		if (out.len > 0) {
			u_send(w, c->up, out.p, out.len, out.bid);
			return;
		}
		if (out.bid >= 0)
			ism_w_buf_recycle(w, bid);
		if (!done)
			c_recv(w, c);
		return;
	}
	/* Bytes while a response is in progress and the request is complete: a
	 * pipelined request; keep them for later. */
	if (ism_buf_append(&c->in, data, (uint32_t)res,
			   w->table->limits.max_request_header_bytes + ISM_BUF_SIZE) < 0)
		c->keepalive = 0;
	ism_w_buf_recycle(w, bid);
}

static void on_csend(struct ism_wctx *w, struct ism_conn *c, int res)
{
	struct ism_upconn *u = c->up;

	if (res > 0) {
		atomic_fetch_add_explicit(&w->st->bytes_out, (uint64_t)res, memory_order_relaxed);
		c->req_bytes_out += (uint64_t)res;
	}
	if (must_park(&c->send, res)) {
		if (park(w, &c->send, &c->tx, res) < 0) {
			conn_close(w, c);
			return;
		}
		c_send(w, c, c->send.p, c->send.len, -1);
		return;
	}
	if (res < 0) {
		if (c->send.bid >= 0)
			ism_w_buf_recycle(w, c->send.bid);
		conn_close(w, c);
		return;
	}
	if ((uint32_t)res < c->send.len) {
		/* Short send: push the rest. */
		c_send(w, c, c->send.p + res, c->send.len - (uint32_t)res, c->send.bid);
		return;
	}
	if (c->send.bid >= 0)
		ism_w_buf_recycle(w, c->send.bid);
	c->send.bid = -1;
	set_deadline(w, c, ISM_DL_RESPONSE, c->response_timeout_ms);
	if (c->state == ISM_C_LOCAL) {
		finish_exchange(w, c);
		return;
	}
	if (c->state != ISM_C_PROXY || u == NULL) {
		conn_close(w, c);
		return;
	}
	if (!c->resp_head_done) {
		/* Interim (1xx) responses went out; go on with what follows them. */
		resp_from_upstream(w, c, u);
		return;
	}
	if (c->resp_done) {
		finish_exchange(w, c);
		return;
	}
	u_recv(w, u);
}

static void on_uconnect(struct ism_wctx *w, struct ism_upconn *u, int res)
{
	struct ism_conn *c = u->conn;

	if (c == NULL) {
		up_close(w, u);
		return;
	}
	if (res < 0) {
		atomic_fetch_add_explicit(&w->st->upstream_connect_fail, 1, memory_order_relaxed);
		ism_debug("connect to endpoint %u: %s", u->ep_id, strerror(-res));
		attempt_failed(w, c, ISM_FAIL_CONNECT);
		return;
	}
	if (u->x.ssl != NULL) {
		/* The handshake first; the request goes once it completes. */
		struct ism_xio io = u_io(u);
		int pb = -1;

		if (ism_xp_advance(w, &io, &pb) < 0) {
			atomic_fetch_add_explicit(&w->st->tls_handshake_fail, 1,
						  memory_order_relaxed);
			attempt_failed(w, c, ISM_FAIL_CONNECT);
		}
		return;
	}
	u->state = ISM_U_BUSY;
	up_send_out(w, u);
}

static void on_usend(struct ism_wctx *w, struct ism_upconn *u, int res)
{
	struct ism_conn *c = u->conn;
	int bid = u->send.bid;

	if (c && must_park(&u->send, res)) {
		if (park(w, &u->send, &u->tx, res) < 0) {
			conn_close(w, c);
			return;
		}
		u_send(w, u, u->send.p, u->send.len, -1);
		return;
	}
	if (res >= 0 && (uint32_t)res < u->send.len && c) {
		u_send(w, u, u->send.p + res, u->send.len - (uint32_t)res, bid);
		return;
	}
	if (bid >= 0)
		ism_w_buf_recycle(w, bid);
	u->send.bid = -1;
	if (c == NULL) {
		up_close(w, u);
		return;
	}
	if (res < 0) {
		/* The receive side reports what the upstream did, if anything. */
		u->reusable = 0;
		if (!u->got_bytes && !c->resp_started)
			return;
		conn_close(w, c);
		return;
	}
	if (!c->req_done)
		c_recv(w, c);
	if (c->resp_done && c->req_done && !c->send_armed)
		finish_exchange(w, c);
}

/* The upstream closed or failed before the response ended. */
static void upstream_eof(struct ism_wctx *w, struct ism_upconn *u, struct ism_conn *c, int res)
{
	if (c->resp_head_done && c->resp.mode == ISM_BODY_CLOSE) {
		c->resp_done = 1;
		c->keepalive = 0;
		u->reusable = 0;
		if (!c->send_armed)
			finish_exchange(w, c);
		return;
	}
	if (!c->resp_head_done && !u->got_bytes && u->reused && !c->req_streamed && c->req_done &&
	    u->out.len) {
		/* A pooled connection the upstream had closed: replay once on a
		 * fresh connection; nothing reached the upstream application. */
		struct ism_endpoint ep = {.id = u->ep_id, .addrlen = u->addrlen};
		struct ism_buf head = u->out;
		struct ism_upconn *nu;

		memcpy(&ep.addr, &u->addr, u->addrlen);
		u->out = (struct ism_buf){0};
		c->up = NULL;
		u->conn = NULL;
		up_close(w, u);
		nu = up_connect(w, c, &ep);
		if (nu == NULL) {
			ism_buf_free(&head);
			local_response(w, c, 503, "upstream connect error", 0);
			return;
		}
		nu->conn = c;
		nu->reusable = 1;
		nu->out = head;
		c->up = nu;
		return;
	}
	ism_debug("upstream endpoint %u closed: %s", u->ep_id, res < 0 ? strerror(-res) : "EOF");
	if (c->resp_head_done) {
		od_settle(w, c, ISM_FAIL_RESET); /* as Envoy: a reset after the head */
		conn_close(w, c); /* part of the response is out: only a close tells */
		return;
	}
	attempt_failed(w, c, ISM_FAIL_RESET);
}

static void on_urecv(struct ism_wctx *w, struct ism_upconn *u, int res, int bid)
{
	struct ism_conn *c = u->conn;
	char *data = bid >= 0 ? ism_w_buf_addr(w, bid) : NULL;

	if (c == NULL || u->state != ISM_U_BUSY) {
		if (bid >= 0)
			ism_w_buf_recycle(w, bid);
		/* Idle in the pool: a close or stray bytes end the connection. */
		up_close(w, u);
		return;
	}
	if (res <= 0) {
		if (bid >= 0)
			ism_w_buf_recycle(w, bid);
		upstream_eof(w, u, c, res);
		return;
	}
	u->got_bytes = 1;
	set_deadline(w, c, ISM_DL_RESPONSE, c->response_timeout_ms);
	if (!c->resp_head_done) {
		int ret = ism_buf_append(&u->in, data, (uint32_t)res,
					 w->table->limits.max_response_header_bytes + ISM_BUF_SIZE);

		ism_w_buf_recycle(w, bid);
		if (ret < 0) {
			u->reusable = 0;
			local_response(w, c, 502, "upstream response head too large", 1);
			return;
		}
		if (c->send_armed) /* interim response still going out */
			return;
		resp_from_upstream(w, c, u);
		return;
	}
	struct ism_span out;
	uint8_t done = 0;
	ssize_t n = body_relay(&c->resp, data, (uint32_t)res, bid, &c->tx, &out, &done);

	if (out.bid < 0 || out.len == 0)
		ism_w_buf_recycle(w, bid);
	if (n < 0) {
		if (n != -ENOMEM)
			od_settle(w, c, ISM_FAIL_RESET); /* a malformed body */
		conn_close(w, c);
		return;
	}
	if (n < res)
		u->reusable = 0;
	c->resp_done = done;
	if (out.len == 0) {
		if (done && !c->send_armed)
			finish_exchange(w, c);
		else
			u_recv(w, u);
		return;
	}
	c_send(w, c, out.p, out.len, out.bid);
}

/* Starts TLS on a client connection whose preamble is read: what was
 * received so far goes to the session. */
static int start_tls(struct ism_wctx *w, struct ism_conn *c, const struct ism_tls_conf *conf)
{
	struct ism_xio io = c_io(c);

	c->x.ssl = ism_tls_server_ssl(w, conf);
	if (c->x.ssl == NULL)
		return -ENOMEM;
	c->pre = ISM_PRE_NONE;
	if (c->in.len && ism_xp_feed(&io, c->in.p, c->in.len) < 0)
		return -ENOMEM;
	c->in.len = 0;
	return 0;
}

/* What a client TLS session produced: plaintext for HTTP, progress, or the end. */
static void client_tls_result(struct ism_wctx *w, struct ism_conn *c, int r, int pb)
{
	if (r == ISM_XP_HANDSHAKE) {
		struct ism_xio io = c_io(c);

		atomic_fetch_add_explicit(&w->st->tls_handshakes, 1, memory_order_relaxed);
		if (SSL_session_reused(c->x.ssl))
			atomic_fetch_add_explicit(&w->st->tls_resumed, 1, memory_order_relaxed);
		r = ism_xp_advance(w, &io, &pb); /* the request may have come with it */
	}
	if (r == 0)
		return;
	if (r < 0 && !c->x.established) {
		/* A client going away mid-handshake is not a failed handshake. */
		if (r != ISM_XP_EOF && r != -ECONNRESET && r != -EPIPE)
			atomic_fetch_add_explicit(&w->st->tls_handshake_fail, 1,
						  memory_order_relaxed);
		conn_close(w, c);
		return;
	}
	c->recv_armed = 0;
	on_crecv(w, c, r > 0 ? r : (r == ISM_XP_EOF ? 0 : r), r > 0 ? pb : -1);
}

/* A socket completion of a client TLS connection. */
static void on_ctls(struct ism_wctx *w, struct ism_conn *c, enum ism_op op, int res, int bid)
{
	struct ism_xio io = c_io(c);
	int pb = -1, r;
	uint32_t len = 0;

	if (op == ISM_OP_CSEND) {
		r = ism_xp_on_send(w, &io, res, &len);
		if (r != 0) {
			c->send_armed = 0;
			on_csend(w, c, r > 0 ? (int)len : r);
		}
		return;
	}
	r = ism_xp_on_recv(w, &io, res, bid, op == ISM_OP_CTLS, &pb);
	client_tls_result(w, c, r, pb);
}

/* Before HTTP: the PROXY protocol header, then what decides TLS (the first
 * bytes on a PERMISSIVE port, the ClientHello's SNI on an HTTPS one). The
 * bytes gather in c->in; the request-header timeout bounds the whole. */
static void on_preamble(struct ism_wctx *w, struct ism_conn *c, int res, int bid)
{
	const struct ism_table *t = w->table;
	const struct ism_listener *l =
	    c->listener < t->n_listeners ? &t->listeners[c->listener] : NULL;
	int ret;

	if (res <= 0 || l == NULL) {
		if (bid >= 0)
			ism_w_buf_recycle(w, bid);
		conn_close(w, c);
		return;
	}
	atomic_fetch_add_explicit(&w->st->bytes_in, (uint64_t)res, memory_order_relaxed);
	ret = ism_buf_append(&c->in, ism_w_buf_addr(w, bid), (uint32_t)res, 2 * ISM_BUF_SIZE + 64);
	ism_w_buf_recycle(w, bid);
	if (ret < 0) {
		conn_close(w, c);
		return;
	}
	if (c->pre_pp) {
		struct ism_pp pp;
		int n = ism_pp_parse((const uint8_t *)c->in.p, c->in.len, &pp);

		if (n == 0) {
			c_recv(w, c);
			return;
		}
		if (n < 0) {
			atomic_fetch_add_explicit(&w->st->proxy_protocol_errors, 1,
						  memory_order_relaxed);
			ism_debug("%s: malformed PROXY protocol header", c->peer);
			conn_close(w, c);
			return;
		}
		if (!pp.local)
			set_peer(c, &pp.src);
		ism_buf_consume(&c->in, (uint32_t)n);
		c->pre_pp = 0;
	}
	if (c->pre == ISM_PRE_SNIFF) {
		enum ism_sniff k = ism_sniff_tls((const uint8_t *)c->in.p, c->in.len);

		if (k == ISM_SNIFF_MORE) {
			c_recv(w, c);
			return;
		}
		c->pre = k == ISM_SNIFF_TLS ? ISM_PRE_MESH : ISM_PRE_NONE;
	}
	if (c->pre == ISM_PRE_HELLO) {
		char name[256];
		int srv;
		int n = c->in.len
			    ? ism_sniff_sni((const uint8_t *)c->in.p, c->in.len, name, sizeof(name))
			    : -EAGAIN;

		if (n == -EAGAIN) {
			c_recv(w, c);
			return;
		}
		if (n < 0) {
			/* Not TLS (plain HTTP to an HTTPS port, say): nothing to answer with. */
			atomic_fetch_add_explicit(&w->st->tls_handshake_fail, 1,
						  memory_order_relaxed);
			conn_close(w, c);
			return;
		}
		if (n == 0)
			name[0] = '\0';
		srv = ism_router_pick_server(l, name);
		if (srv < 0) {
			ism_debug("%s: no HTTPS server for SNI \"%s\"", c->peer, name);
			atomic_fetch_add_explicit(&w->st->tls_handshake_fail, 1,
						  memory_order_relaxed);
			conn_close(w, c);
			return;
		}
		c->sni = n > 0 ? strdup(name) : NULL;
		ret = start_tls(w, c, &l->tls[srv].tls);
	} else if (c->pre == ISM_PRE_MESH) {
		ret = start_tls(w, c, &t->mesh);
	} else {
		try_request(w, c);
		return;
	}
	if (ret < 0) {
		conn_close(w, c);
		return;
	}
	{
		struct ism_xio io = c_io(c);
		int pb = -1;

		c->recv_armed = 1;
		c->x.want = 1;
		client_tls_result(w, c, ism_xp_advance(w, &io, &pb), pb);
	}
}

/* A socket completion of an upstream TLS connection. */
static void on_utls(struct ism_wctx *w, struct ism_upconn *u, enum ism_op op, int res, int bid)
{
	struct ism_xio io = u_io(u);
	int pb = -1, r;
	uint32_t len = 0;

	if (op == ISM_OP_USEND) {
		r = ism_xp_on_send(w, &io, res, &len);
		if (r != 0) {
			u->send_armed = 0;
			on_usend(w, u, r > 0 ? (int)len : r);
		}
		return;
	}
	r = ism_xp_on_recv(w, &io, res, bid, op == ISM_OP_UTLS, &pb);
	if (r == ISM_XP_HANDSHAKE) {
		ism_tls_client_done(u->x.ssl);
		if (u->conn == NULL) {
			up_close(w, u);
			return;
		}
		u->state = ISM_U_BUSY;
		up_send_out(w, u);
		return;
	}
	if (r < 0 && u->state == ISM_U_CONNECTING) {
		atomic_fetch_add_explicit(&w->st->tls_handshake_fail, 1, memory_order_relaxed);
		if (u->conn != NULL)
			attempt_failed(w, u->conn, ISM_FAIL_CONNECT);
		else
			up_close(w, u);
		return;
	}
	if (r == 0)
		return;
	u->recv_armed = 0;
	on_urecv(w, u, r > 0 ? r : (r == ISM_XP_EOF ? 0 : r), r > 0 ? pb : -1);
}

/* A receive that found the ring empty waits (still counted in flight) until
 * buffers come back: running out of buffers delays these connections, and
 * never turns into a loop of failing receives. */
static void bufwait_push(struct ism_wctx *w, uint64_t ud)
{
	if (w->n_bufwait == w->cap_bufwait) {
		uint32_t cap = w->cap_bufwait ? w->cap_bufwait * 2 : 64;
		uint64_t *p = realloc(w->bufwait, cap * sizeof(*p));

		ISM_BUG_ON(p == NULL); /* bounded by the connection slabs, which did grow */
		w->bufwait = p;
		w->cap_bufwait = cap;
	}
	w->bufwait[w->n_bufwait++] = ud;
	atomic_fetch_add_explicit(&w->st->recv_buffer_waits, 1, memory_order_relaxed);
}

/* The fd of the object a receive's user_data names, or -1 when it is closing. */
static int recv_fd(struct ism_wctx *w, enum ism_op op, uint32_t idx)
{
	if (op == ISM_OP_CRECV)
		return w->conns[idx]->closing ? -1 : w->conns[idx]->fd;
	return w->ups[idx]->closing ? -1 : w->ups[idx]->fd;
}

void ism_proxy_resume_recvs(struct ism_wctx *w)
{
	uint32_t n = w->n_bufwait, kept = 0, budget = w->buf_avail;

	if (n == 0)
		return;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t ud = w->bufwait[i];
		enum ism_op op = (enum ism_op)(ud >> 56);
		uint32_t idx = (uint32_t)(ud >> 32) & 0xffffff;
		int fd = recv_fd(w, op, idx);

		if (fd < 0) { /* closed meanwhile: the receive ends here */
			ism_proxy_complete(w, op, idx, (uint32_t)ud, -ECANCELED, 0);
		} else if (budget > 0) {
			budget--;
			ism_w_recv(w, fd, ud);
		} else {
			w->bufwait[kept++] = ud;
		}
	}
	/* Receives queued while this ran (none today) stay behind the kept ones. */
	memmove(w->bufwait + kept, w->bufwait + n, (w->n_bufwait - n) * sizeof(*w->bufwait));
	w->n_bufwait = kept + (w->n_bufwait - n);
}

void ism_proxy_complete(struct ism_wctx *w, enum ism_op op, uint32_t idx, uint32_t gen, int res,
			uint32_t flags)
{
	int bid = (flags & IORING_CQE_F_BUFFER) ? (int)(flags >> IORING_CQE_BUFFER_SHIFT) : -1;

	if (res == -ENOBUFS && (op == ISM_OP_CRECV || op == ISM_OP_URECV)) {
		bufwait_push(w, ism_ud(op, idx, gen));
		return;
	}

	if (op == ISM_OP_CRECV || op == ISM_OP_CSEND || op == ISM_OP_RETRY || op == ISM_OP_CTLS) {
		struct ism_conn *c;

		ISM_BUG_ON(idx >= w->n_conns);
		c = w->conns[idx];
		ISM_BUG_ON(c->gen != gen || c->inflight == 0);
		c->inflight--;
		if (c->x.ssl != NULL && op != ISM_OP_RETRY) {
			if (c->closing) {
				if (bid >= 0)
					ism_w_buf_recycle(w, bid);
				if (c->inflight == 0)
					conn_finalize(w, c);
				return;
			}
			on_ctls(w, c, op, res, bid);
			return;
		}
		if (op == ISM_OP_CRECV)
			c->recv_armed = 0;
		else if (op == ISM_OP_CSEND)
			c->send_armed = 0;
		else
			c->retry_pending = 0;
		if (c->closing) {
			if (bid >= 0)
				ism_w_buf_recycle(w, bid);
			if (op == ISM_OP_CSEND && c->send.bid >= 0)
				ism_w_buf_recycle(w, c->send.bid);
			c->send.bid = op == ISM_OP_CSEND ? -1 : c->send.bid;
			if (c->inflight == 0)
				conn_finalize(w, c);
			return;
		}
		if (op == ISM_OP_CRECV && (c->pre_pp || c->pre != ISM_PRE_NONE))
			on_preamble(w, c, res, bid);
		else if (op == ISM_OP_CRECV)
			on_crecv(w, c, res, bid);
		else if (op == ISM_OP_CSEND)
			on_csend(w, c, res);
		else
			do_retry(w, c);
		return;
	}
	if (op == ISM_OP_UCONNECT || op == ISM_OP_URECV || op == ISM_OP_USEND ||
	    op == ISM_OP_UTLS) {
		struct ism_upconn *u;

		ISM_BUG_ON(idx >= w->n_ups);
		u = w->ups[idx];
		ISM_BUG_ON(u->gen != gen || u->inflight == 0);
		u->inflight--;
		if (u->x.ssl != NULL && op != ISM_OP_UCONNECT) {
			if (u->closing) {
				if (bid >= 0)
					ism_w_buf_recycle(w, bid);
				if (u->inflight == 0)
					up_finalize(w, u);
				return;
			}
			on_utls(w, u, op, res, bid);
			return;
		}
		if (op == ISM_OP_URECV)
			u->recv_armed = 0;
		else if (op == ISM_OP_USEND)
			u->send_armed = 0;
		if (u->closing) {
			if (bid >= 0)
				ism_w_buf_recycle(w, bid);
			if (op == ISM_OP_USEND && u->send.bid >= 0)
				ism_w_buf_recycle(w, u->send.bid);
			u->send.bid = op == ISM_OP_USEND ? -1 : u->send.bid;
			if (u->inflight == 0)
				up_finalize(w, u);
			return;
		}
		if (op == ISM_OP_UCONNECT)
			on_uconnect(w, u, res);
		else if (op == ISM_OP_URECV)
			on_urecv(w, u, res, bid);
		else
			on_usend(w, u, res);
		return;
	}
	ISM_BUG_ON(1);
}

/* ---------- timers, drain, generations ---------- */

static void expire(struct ism_wctx *w, struct ism_conn *c)
{
	switch (c->deadline_kind) {
	case ISM_DL_HEADER:
		/* Still in the PROXY header or the TLS handshake: there is no HTTP
		 * to answer in. */
		if ((c->in.len == 0 && c->state == ISM_C_IDLE) || c->pre_pp ||
		    c->pre != ISM_PRE_NONE || (c->x.ssl != NULL && !c->x.established)) {
			conn_close(w, c);
			return;
		}
		c->req_done = 1;
		local_response(w, c, 408, "request timeout", 1);
		return;
	case ISM_DL_CONNECT:
		if (c->waiting) {
			local_response(w, c, 503, "upstream overflow (no connection in time)", 0);
			return;
		}
		atomic_fetch_add_explicit(&w->st->upstream_connect_fail, 1, memory_order_relaxed);
		attempt_failed(w, c, ISM_FAIL_CONNECT);
		return;
	case ISM_DL_RESPONSE:
		if (c->state == ISM_C_PROXY && !c->resp_started) {
			attempt_failed(w, c, ISM_FAIL_TIMEOUT);
			return;
		}
		od_settle(w, c, ISM_FAIL_TIMEOUT); /* the upstream stalled mid-body */
		conn_close(w, c);
		return;
	default:
		conn_close(w, c);
		return;
	}
}

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
				up_close(w, w->pool[cl->endpoints[e].id]);
	}
}

void ism_proxy_tick(struct ism_wctx *w)
{
	release_to_waiters(w);
	/* Connections released by other workers are not announced: look again. */
	if (w->wait_head)
		w->wake_waiters = 1;
	for (uint32_t i = 0; i < w->n_conns; i++) {
		struct ism_conn *c = w->conns[i];

		if (c->state == ISM_C_FREE || c->closing || c->deadline == 0)
			continue;
		if (c->deadline <= w->now)
			expire(w, c);
	}
	for (uint32_t i = 0; i < w->n_ups; i++) {
		struct ism_upconn *u = w->ups[i];

		if (u->state == ISM_U_IDLE && !u->closing && u->idle_deadline <= w->now)
			up_close(w, u);
	}
}

void ism_proxy_drain(struct ism_wctx *w)
{
	/* Busy connections end after their current response, which carries
	 * "connection: close". */
	for (uint32_t i = 0; i < w->n_conns; i++) {
		struct ism_conn *c = w->conns[i];

		/* An idle connection is closed once it has stayed idle for a moment:
		 * closing it at once would race with a request the client is sending
		 * (which would see a reset). A request that arrives is answered with
		 * "connection: close". */
		if (c->state == ISM_C_IDLE && !c->closing && c->in.len == 0)
			set_deadline(w, c, ISM_DL_IDLE,
				     w->table->timeouts.idle_ms < 1000 ? w->table->timeouts.idle_ms
								       : 1000);
		else if (c->state != ISM_C_FREE && !c->resp_head_done)
			c->keepalive = 0;
	}
	for (uint32_t i = 0; i < w->n_ups; i++)
		if (w->ups[i]->state == ISM_U_IDLE)
			up_close(w, w->ups[i]);
}

void ism_proxy_table_changed(struct ism_wctx *w)
{
	ism_tls_table_changed(w);
	/* Pooled connections to endpoints that left the configuration go. */
	for (uint32_t i = 0; i < w->n_ups; i++) {
		struct ism_upconn *u = w->ups[i];

		if (u->state == ISM_U_IDLE && !atomic_load(&w->shm->hdr->eps[u->ep_id].in_use))
			up_close(w, u);
	}
}

void ism_proxy_free_all(struct ism_wctx *w)
{
	for (uint32_t i = 0; i < w->n_conns; i++) {
		struct ism_conn *c = w->conns[i];

		if (c->state != ISM_C_FREE)
			close(c->fd);
		ism_buf_free(&c->in);
		ism_buf_free(&c->out);
		ism_buf_free(&c->tx);
		free(c);
	}
	for (uint32_t i = 0; i < w->n_ups; i++) {
		struct ism_upconn *u = w->ups[i];

		if (u->state != ISM_U_FREE)
			close(u->fd);
		ism_buf_free(&u->in);
		ism_buf_free(&u->out);
		ism_buf_free(&u->tx);
		free(u);
	}
	free(w->conns);
	free(w->ups);
}

void ism_proxy_after_batch(struct ism_wctx *w)
{
	uint32_t n = 0;

	if (!w->wake_waiters)
		return;
	w->wake_waiters = 0;
	for (struct ism_conn *c = w->wait_head; c != NULL; c = c->wait_next)
		n++;
	/* Each waiter gets one try per release; one that still finds the pool
	 * full goes back to the end of the queue. */
	while (n-- > 0 && w->wait_head != NULL) {
		struct ism_conn *c = w->wait_head;

		wait_remove(w, c);
		do_retry(w, c);
	}
}
