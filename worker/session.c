/* SPDX-License-Identifier: Apache-2.0 */
/* Client sessions (worker/session.h): the accepted connection, what precedes
 * HTTP on it (PROXY protocol header, TLS), its deadline, and the socket's
 * events handed to the protocol it speaks: HTTP/1.1 (worker/h1.c) until the
 * HTTP/2 preface says HTTP/2 (worker/h2.c). */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "lib/addr.h"
#include "lib/log.h"
#include "worker/h1.h"
#include "worker/h2.h"
#include "worker/proxyproto.h"
#include "worker/ring.h"
#include "worker/router.h"
#include "worker/session.h"
#include "worker/sniff.h"
#include "worker/sock.h"
#include "worker/stream.h"
#include "worker/tls.h"
#include "worker/tunnel.h"
#include "worker/upstream.h"

/* ---------- lifecycle ---------- */

static void sess_finalize(struct ism_wctx *w, struct ism_sess *s)
{
	ism_sock_release(w, &s->s);
	ism_h2_free(s);
	free(s->sni);
	s->sni = NULL;
	/* its private connections closed with it (ism_up_sess_closed) */
	ISM_BUG_ON(s->pp != NULL && s->pp->conns != NULL);
	free(s->pp);
	s->pp = NULL;
	ism_buf_free(&s->xfcc);
	s->xfcc_made = 0;
	ism_buf_free(&s->in);
	ism_buf_free(&s->out);
	/* a send that waited for a 100 Continue (h1.c) */
	if (s->held.len > 0 && s->held.bid >= 0)
		ism_w_buf_recycle(w, s->held.bid);
	s->held = (struct ism_span){.bid = -1};
	s->cont_flying = 0;
	s->state = ISM_SESS_FREE;
	ism_slab_put(&w->sess, s->s.idx);
	w->n_active--;
	ism_wstat_add(&w->st->conn_active, (uint64_t)-1);
}

/* Closes the connection; a stream still running ends with it. */
void ism_sess_close(struct ism_wctx *w, struct ism_sess *s)
{
	struct ism_stream *st = s->st;

	if (s->state == ISM_SESS_CLOSING || s->state == ISM_SESS_FREE)
		return;
	s->state = ISM_SESS_CLOSING;
	s->st = NULL;
	if (st != NULL)
		ism_stream_abort(w, st);
	ism_h2_close(w, s);
	ism_up_sess_closed(w, s);
	ism_sock_close(&s->s);
	if (s->s.inflight == 0)
		sess_finalize(w, s);
}

void ism_sess_linger(struct ism_wctx *w, struct ism_sess *s)
{
	if (s->state == ISM_SESS_CLOSING || s->state == ISM_SESS_FREE)
		return;
	ISM_BUG_ON(s->st != NULL);
	s->state = ISM_SESS_LINGER;
	ism_buf_free(&s->in);
	ism_buf_free(&s->out);
	ism_h2_free(s); /* HTTP/2's ends with its last stream and nothing in flight */
	ism_sock_shut_write(&s->s);
	s->linger_end = w->now + ISM_LINGER_MAX_MS;
	s->linger_bytes = 0;
	ism_sess_set_deadline(w, s, ISM_DL_LINGER, ISM_LINGER_MS);
	ism_sock_recv(w, &s->s);
}

/* The next quiet period, within the lingering's end. */
static void linger_on(struct ism_wctx *w, struct ism_sess *s)
{
	uint64_t at = w->now + ISM_LINGER_MS;

	ism_sess_set_deadline_at(s, ISM_DL_LINGER, at < s->linger_end ? at : s->linger_end);
}

void ism_sess_linger_expire(struct ism_wctx *w, struct ism_sess *s)
{
	/* A draining worker does not wait for a slow reader: closed with
	 * nothing unread, the kernel sends the rest on its own. */
	if (!w->draining && w->now < s->linger_end && ism_sock_unsent(&s->s) > 0)
		linger_on(w, s);
	else
		ism_sess_close(w, s);
}

void ism_sess_set_deadline(struct ism_wctx *w, struct ism_sess *s, enum ism_sess_deadline kind,
			   uint32_t ms)
{
	ism_sess_set_deadline_at(s, kind, ms ? w->now + ms : 0);
}

void ism_sess_set_deadline_at(struct ism_sess *s, enum ism_sess_deadline kind, uint64_t at)
{
	s->deadline_kind = (uint8_t)kind;
	s->deadline = kind != ISM_DL_NONE ? at : 0;
}

/* Sends to the client; one that does not read cannot hold us forever. */
void ism_sess_send(struct ism_wctx *w, struct ism_sess *s, const char *p, uint32_t len, int bid)
{
	ism_sock_send(w, &s->s, p, len, bid);
	ism_sess_set_deadline(w, s, ISM_DL_SEND, w->table->timeouts.idle_ms);
}

bool ism_sess_tls(const struct ism_sess *s)
{
	return s->s.x.ssl != NULL;
}

/* An IPv4 address in IPv6 form (a dual-stack listener's IPv4 client) in its
 * own form, as Envoy reads a socket's addresses. */
static void unmap_v4(union ism_pp_addr *a)
{
	struct sockaddr_in in = {.sin_family = AF_INET};

	if (a->sa.sa_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(&a->in6.sin6_addr))
		return;
	in.sin_port = a->in6.sin6_port;
	memcpy(&in.sin_addr, &a->in6.sin6_addr.s6_addr[12], 4);
	memset(a, 0, sizeof(*a));
	a->in = in;
}

/* Text address ip and port as an address (AF_UNSPEC when it is none). */
static void text_addr(const char *ip, uint16_t port, union ism_pp_addr *a)
{
	memset(a, 0, sizeof(*a));
	if (inet_pton(AF_INET, ip, &a->in.sin_addr) == 1) {
		a->in.sin_family = AF_INET;
		a->in.sin_port = htons(port);
	} else if (inet_pton(AF_INET6, ip, &a->in6.sin6_addr) == 1) {
		a->in6.sin6_family = AF_INET6;
		a->in6.sin6_port = htons(port);
	}
}

struct ism_sess_pp *ism_sess_pp(struct ism_sess *s)
{
	socklen_t dl = sizeof(union ism_pp_addr);
	struct ism_sess_pp *pp = s->pp;

	if (pp != NULL)
		return pp;
	pp = calloc(1, sizeof(*pp));
	if (pp == NULL)
		return NULL;
	s->pp = pp;
	/* As Envoy's connection manager and tcp_proxy name the downstream
	 * connection: its remote address, as the accept found it (a reset
	 * connection's getpeername fails), and its local one (getsockname
	 * still answers for a reset or closed connection until its close). */
	text_addr(s->peer, s->peer_port, &pp->src);
	if (s->s.state != ISM_SOCK_OPEN || getsockname(s->s.fd, &pp->dst.sa, &dl) < 0)
		memset(&pp->dst, 0, sizeof(pp->dst));
	unmap_v4(&pp->src);
	unmap_v4(&pp->dst);
	return pp;
}

const char *ism_sess_direct_peer(const struct ism_sess *s, uint16_t *port)
{
	if (s->pp != NULL && s->pp->direct[0]) {
		*port = s->pp->direct_port;
		return s->pp->direct;
	}
	*port = s->peer_port;
	return s->peer;
}

const struct ism_buf *ism_sess_xfcc(struct ism_sess *s)
{
	if (s->xfcc_made == 0)
		s->xfcc_made =
		    s->s.x.ssl != NULL && ism_tls_xfcc(s->s.x.ssl, &s->xfcc) > 0 ? 1 : -1;
	return s->xfcc_made > 0 ? &s->xfcc : NULL;
}

/* ---------- accept ---------- */

/* The client's address: the socket's peer, or what a PROXY header says. */
static void set_peer(struct ism_sess *s, const void *ss)
{
	ism_addr_text(ss, s->peer, &s->peer_port);
}

/* The addresses of an inbound PROXY header (not LOCAL): the client's becomes
 * the session's peer, and both are what the headers to upstreams name (Envoy's
 * listener filter gives them to the connection). 0, or -ENOMEM. */
static int keep_pp_addrs(struct ism_sess *s, const struct ism_pp *pp)
{
	s->pp = calloc(1, sizeof(*s->pp));
	if (s->pp == NULL)
		return -ENOMEM;
	memcpy(s->pp->direct, s->peer, sizeof(s->peer));
	s->pp->direct_port = s->peer_port;
	set_peer(s, &pp->src);
	memcpy(&s->pp->src, &pp->src, pp->addrlen);
	memcpy(&s->pp->dst, &pp->dst, pp->addrlen);
	return 0;
}

/* A TCP or TLS-passthrough connection: the first of routes[0..n) whose match
 * holds for server name sni ("" or NULL: none) and the address connected to
 * takes it (none: closed and logged, why saying what was missing), and its
 * stream connects to the route's destination. */
static void start_l4(struct ism_wctx *w, struct ism_sess *s, const struct ism_l4route *routes,
		     uint32_t n, const char *sni, const char *why)
{
	struct ism_stream *st = ism_stream_new(w, s);
	const struct ism_l4route *r = NULL;
	struct sockaddr_storage local;
	socklen_t ll = sizeof(local);
	bool subnets = false;

	if (st == NULL) {
		ism_sess_close(w, s);
		return;
	}
	s->st = st;
	s->state = ISM_SESS_L4;
	ism_sess_set_deadline(w, s, ISM_DL_NONE, 0);
	for (uint32_t i = 0; i < n && !subnets; i++)
		subnets = routes[i].n_subnets > 0;
	/* The address the client connected to, for destinationSubnets only;
	 * an IPv4 client's of a dual-stack listener as IPv4, as its peer. */
	if (n > 0 && (!subnets || getsockname(s->s.fd, (struct sockaddr *)&local, &ll) == 0)) {
		if (subnets)
			unmap_v4((union ism_pp_addr *)&local);
		r = ism_router_l4(routes, n, sni, subnets ? &local : NULL);
	}
	ism_stream_l4(w, st, r, r == NULL ? why : NULL);
}

/* Whether listener l has a TLS-passthrough server. */
static bool has_passthrough(const struct ism_listener *l)
{
	for (uint32_t i = 0; i < l->n_tls; i++)
		if (l->tls[i].passthrough)
			return true;
	return false;
}

void ism_sess_accepted(struct ism_wctx *w, int fd, int listener)
{
	union ism_pp_addr ss;
	socklen_t sl = sizeof(ss);
	struct ism_sess *s;
	int one = 1;

	ism_wstat_add(&w->st->conn_accepted, 1);
	if (w->n_active >= w->table->limits.max_connections || ism_sock_queues_reserve(w) < 0 ||
	    (s = (struct ism_sess *)ism_sock_new(&w->sess, sizeof(struct ism_sess))) == NULL) {
		ism_wstat_add(&w->st->conn_rejected, 1);
		close(fd);
		return;
	}
	ism_sock_open(w, &s->s, fd, false, s->s.idx, s->s.gen);
	s->ops = &ism_h1_ops;
	s->listener = (uint16_t)listener;
	s->state = ISM_SESS_IDLE;
	if (listener < (int)w->table->n_listeners) {
		const struct ism_listener *l = &w->table->listeners[listener];

		s->pre_pp = l->proxy_protocol;
		s->pre = l->n_tls				   ? ISM_PRE_HELLO
			 : l->peer_mtls == ISM_TLS_MUTUAL	   ? ISM_PRE_MESH
			 : l->peer_mtls == ISM_TLS_OPTIONAL_MUTUAL ? ISM_PRE_SNIFF
								   : ISM_PRE_NONE;
		if (s->pre_pp || s->pre != ISM_PRE_NONE)
			s->state = ISM_SESS_PREAMBLE;
	}
	w->n_active++;
	s->conn_id = w->conn_seq++;
	s->accept_ms = w->now;
	ism_wstat_add(&w->st->conn_active, 1);
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	/* A dual-stack listener's IPv4 client is named as IPv4, as Envoy's
	 * listener reads the peer (policies' IPv4 blocks, X-Forwarded-For, the
	 * log); a PROXY header's address stays as written, as Envoy's. */
	if (getpeername(fd, &ss.sa, &sl) == 0) {
		unmap_v4(&ss);
		set_peer(s, &ss);
	}
	/* A connection that never sends a complete request is bounded by the
	 * request-header timeout, counted from the accept. */
	ism_sess_set_deadline(w, s, ISM_DL_HEADER, w->table->timeouts.request_header_ms);
	/* TCP: no byte is needed to route (the client may wait for the server's). */
	if (s->state == ISM_SESS_IDLE && listener < (int)w->table->n_listeners &&
	    w->table->listeners[listener].tcp) {
		const struct ism_listener *l = &w->table->listeners[listener];

		start_l4(w, s, l->tcp_routes, l->n_tcp, NULL, "no TCP route");
		return;
	}
	/* Plaintext HTTP/1.1 from the first byte: one receive stays armed. */
	if (s->state == ISM_SESS_IDLE)
		ism_sock_multi(&s->s);
	ism_sock_recv(w, &s->s);
}

/* ---------- before HTTP: PROXY protocol and TLS ---------- */

/* Starts TLS on a client connection whose preamble is read: what was
 * received so far goes to the session. */
static int start_tls(struct ism_wctx *w, struct ism_sess *s, const struct ism_tls_conf *conf)
{
	s->s.x.ssl = ism_tls_server_ssl(w, conf, &s->s.x);
	if (s->s.x.ssl == NULL)
		return -ENOMEM;
	s->peer_auth = conf->peer_auth;
	s->pre = ISM_PRE_NONE;
	if (s->in.len && ism_xp_feed(&s->s, s->in.p, s->in.len) < 0)
		return -ENOMEM;
	s->in.len = 0;
	return 0;
}

/* The ClientHello's SNI picks the HTTPS server; TLS starts with its settings.
 * 1: started, 2: passed through (a tunnel's), 0: more bytes needed, < 0: the
 * connection goes. */
static int hello(struct ism_wctx *w, struct ism_sess *s, const struct ism_listener *l)
{
	char name[256];
	int srv, n;

	n = s->in.len ? ism_sniff_sni((const uint8_t *)s->in.p, s->in.len, name, sizeof(name))
		      : -EAGAIN;
	if (n == -EAGAIN)
		return 0;
	if (n < 0) {
		/* Not TLS (plain HTTP to an HTTPS port, say): nothing to answer with. */
		ism_wstat_add(&w->st->tls_handshake_fail, 1);
		return n;
	}
	if (n == 0)
		name[0] = '\0';
	srv = ism_router_pick_server(l, name);
	/* Each request picks its server again by it: a connection whose SNI
	 * could not be kept would be routed by another server's hosts. */
	s->sni = n > 0 ? strdup(name) : NULL;
	if (n > 0 && s->sni == NULL)
		return -ENOMEM;
	/* TLS passthrough: the ClientHello goes on untouched, with what follows
	 * it; one that no route takes is closed and logged. */
	if (srv < 0 && has_passthrough(l)) {
		start_l4(w, s, NULL, 0, name, n > 0 ? "no server for the SNI" : "no SNI");
		return 2;
	}
	if (srv >= 0 && l->tls[srv].passthrough) {
		start_l4(w, s, l->tls[srv].l4, n > 0 ? l->tls[srv].n_l4 : 0, name,
			 n > 0 ? "no TLS route for the SNI" : "no SNI");
		return 2;
	}
	if (srv < 0) {
		ism_debug("%s: no HTTPS server for SNI \"%s\"", s->peer, name);
		ism_wstat_add(&w->st->tls_handshake_fail, 1);
		return -ENOENT;
	}
	s->tls_tcp = l->tls[srv].tcp;
	return start_tls(w, s, &l->tls[srv].tls) < 0 ? -ENOMEM : 1;
}

/* TLS started: the handshake goes on with what the socket has. */
static void tls_started(struct ism_wctx *w, struct ism_sess *s);

/* Before HTTP: the PROXY protocol header, then what decides TLS (the first
 * bytes on a PERMISSIVE port, the ClientHello's SNI on an HTTPS one). The
 * bytes gather in s->in; the request-header timeout bounds the whole. */
static void on_preamble(struct ism_wctx *w, struct ism_sess *s, int res, int bid)
{
	const struct ism_table *t = w->table;
	const struct ism_listener *l =
	    s->listener < t->n_listeners ? &t->listeners[s->listener] : NULL;
	int ret;

	if (res <= 0 || l == NULL) {
		if (bid >= 0)
			ism_w_buf_recycle(w, bid);
		ism_sess_close(w, s);
		return;
	}
	ism_wstat_add(&w->st->bytes_in, (uint64_t)res);
	ret = ism_buf_append(&s->in, ism_w_buf_addr(w, bid), (uint32_t)res, 2 * ISM_BUF_SIZE + 64);
	ism_w_buf_recycle(w, bid);
	if (ret < 0) {
		ism_sess_close(w, s);
		return;
	}
	if (s->pre_pp) {
		struct ism_pp pp;
		int n = ism_pp_parse((const uint8_t *)s->in.p, s->in.len, &pp);

		if (n == 0) {
			ism_sock_recv(w, &s->s);
			return;
		}
		if (n < 0) {
			ism_wstat_add(&w->st->proxy_protocol_errors, 1);
			ism_debug("%s: malformed PROXY protocol header", s->peer);
			ism_sess_close(w, s);
			return;
		}
		if (!pp.local && keep_pp_addrs(s, &pp) < 0) {
			ism_sess_close(w, s);
			return;
		}
		ism_buf_consume(&s->in, (uint32_t)n);
		s->pre_pp = 0;
	}
	if (s->pre == ISM_PRE_SNIFF) {
		enum ism_sniff k = ism_sniff_tls((const uint8_t *)s->in.p, s->in.len);

		if (k == ISM_SNIFF_MORE) {
			ism_sock_recv(w, &s->s);
			return;
		}
		s->pre = k == ISM_SNIFF_TLS ? ISM_PRE_MESH : ISM_PRE_NONE;
	}
	switch ((enum ism_pre)s->pre) {
	case ISM_PRE_HELLO:
		ret = hello(w, s, l);
		if (ret == 0) {
			ism_sock_recv(w, &s->s);
			return;
		}
		if (ret == 2)
			return;
		break;
	case ISM_PRE_MESH:
		ret = start_tls(w, s, &t->mesh);
		break;
	case ISM_PRE_NONE:
	case ISM_PRE_SNIFF:
		if (l->tcp) {
			start_l4(w, s, l->tcp_routes, l->n_tcp, NULL, "no TCP route");
			return;
		}
		s->state = ISM_SESS_IDLE;
		ism_sock_multi(&s->s); /* plaintext HTTP/1.1 from here */
		ism_h1_begin(w, s);
		return;
	}
	if (ret < 0) {
		ism_sess_close(w, s);
		return;
	}
	tls_started(w, s);
}

static void on_event(struct ism_wctx *w, struct ism_sess *s, struct ism_sock_ev ev);

/* The handshake of a TLS server that terminates for tcp routes is over: the
 * connection's plaintext goes to the first of the server's routes that
 * applies (picked again by the SNI, in the table serving now: a reload since
 * the ClientHello may have changed the server; one that no longer terminates
 * for tcp routes closes the connection). false: the connection goes. */
static bool tls_tcp_start(struct ism_wctx *w, struct ism_sess *s)
{
	const struct ism_table *t = w->table;
	const struct ism_listener *l =
	    s->listener < t->n_listeners ? &t->listeners[s->listener] : NULL;
	int srv = l != NULL ? ism_router_pick_server(l, s->sni != NULL ? s->sni : "") : -1;

	if (srv < 0 || !l->tls[srv].tcp) {
		ism_sess_close(w, s);
		return false;
	}
	start_l4(w, s, l->tls[srv].l4, l->tls[srv].n_l4, NULL, "no TCP route");
	return s->state == ISM_SESS_L4;
}

static void tls_started(struct ism_wctx *w, struct ism_sess *s)
{
	s->state = ISM_SESS_IDLE;
	/* HTTP/1.1 or HTTP/2 (by ALPN) from here: either keeps a receive armed. */
	ism_sock_multi(&s->s);
	s->s.recv_armed = 1;
	s->s.x.want = 1;
	on_event(w, s, ism_sock_tls_read(w, &s->s));
}

/* What a read of the client brought (res bytes in buffer bid, or the end). */
static void on_read(struct ism_wctx *w, struct ism_sess *s, int res, int bid)
{
	if (res <= 0) {
		if (bid >= 0)
			ism_w_buf_recycle(w, bid);
		/* The end (a FIN) too ends the exchange, as Envoy's connection
		 * manager takes one: no half close on HTTP connections. */
		ism_sess_close(w, s);
		return;
	}
	ism_wstat_add(&w->st->bytes_in, (uint64_t)res);
	if (s->state == ISM_SESS_LINGER) {
		ism_w_buf_recycle(w, bid);
		s->linger_bytes += (uint32_t)res;
		if (s->linger_bytes > ISM_LINGER_MAX_BYTES) {
			ism_sess_close(w, s);
			return;
		}
		linger_on(w, s);
		ism_sock_recv(w, &s->s);
		return;
	}
	if (s->state == ISM_SESS_L4) {
		/* Bytes before the upstream is connected: they go first once it
		 * is (the receive is not armed again until then). */
		int ret = ism_buf_append(&s->in, ism_w_buf_addr(w, bid), (uint32_t)res,
					 2 * ISM_BUF_SIZE + 64);

		ism_w_buf_recycle(w, bid);
		if (ret < 0)
			ism_sess_close(w, s);
		return;
	}
	if (s->state == ISM_SESS_H2) {
		ism_h2_recv(w, s, ism_w_buf_addr(w, bid), (uint32_t)res);
		ism_w_buf_recycle(w, bid);
		return;
	}
	ism_h1_recv(w, s, ism_w_buf_addr(w, bid), (uint32_t)res, bid);
}

/* ---------- completions ---------- */

/* The client's send went out. */
static void on_sent(struct ism_wctx *w, struct ism_sess *s, int res)
{
	if (res < 0) {
		ism_sess_close(w, s);
		return;
	}
	ism_wstat_add(&w->st->bytes_out, (uint64_t)res);
	ism_sess_set_deadline(w, s, ISM_DL_NONE, 0);
	if (s->state == ISM_SESS_H2)
		ism_h2_sent(w, s, res);
	else
		ism_h1_sent(w, s, res);
}

static void on_event(struct ism_wctx *w, struct ism_sess *s, struct ism_sock_ev ev)
{
	if (s->state == ISM_SESS_TUNNEL && ev.kind != ISM_SEV_FREE) {
		ism_tunnel_event(w, s->st->tun, ISM_TUN_CLIENT, ev);
		return;
	}
	switch ((enum ism_sock_evkind)ev.kind) {
	case ISM_SEV_NONE:
		return;
	case ISM_SEV_FREE:
		sess_finalize(w, s);
		return;
	case ISM_SEV_RECV:
		if (s->state == ISM_SESS_PREAMBLE)
			on_preamble(w, s, ev.res, ev.bid);
		else
			on_read(w, s, ev.res, ev.bid);
		return;
	case ISM_SEV_SENT:
		on_sent(w, s, ev.res);
		return;
	case ISM_SEV_HANDSHAKE:
		ism_wstat_add(&w->st->tls_handshakes, 1);
		s->handshake_ms = w->now;
		s->handshaken = 1;
		if (SSL_session_reused(s->s.x.ssl))
			ism_wstat_add(&w->st->tls_resumed, 1);
		if (s->tls_tcp) {
			/* Nothing is read until the tunnel reads (what came with
			 * the handshake waits in the session), as Envoy's TCP
			 * proxy reads nothing before the upstream connects: an
			 * end the client sends meanwhile comes after its bytes. */
			if (tls_tcp_start(w, s)) {
				s->s.recv_armed = 0;
				s->s.x.want = 0;
			}
			return;
		}
		/* The request may have come with it. */
		on_event(w, s, ism_sock_tls_read(w, &s->s));
		return;
	case ISM_SEV_TLS_FAIL:
		/* A client going away mid-handshake is not a failed handshake. */
		if (ev.res != ISM_XP_EOF && ev.res != -ECONNRESET && ev.res != -EPIPE)
			ism_wstat_add(&w->st->tls_handshake_fail, 1);
		ism_sess_close(w, s);
		return;
	case ISM_SEV_CONNECTED:
		break;
	}
	ISM_BUG_ON(1);
}

void ism_sess_complete(struct ism_wctx *w, enum ism_op op, uint32_t idx, uint32_t gen, int res,
		       int bid, uint32_t flags)
{
	struct ism_sess *s;

	s = ism_slab_at(&w->sess, idx, gen);
	on_event(w, s, ism_sock_complete(w, &s->s, op, res, bid, flags));
}

/* ---------- timers, drain ---------- */

void ism_sess_tick(struct ism_wctx *w)
{
	for (uint32_t i = 0; i < w->sess.n; i++) {
		struct ism_sess *s = w->sess.obj[i];

		if (s->state == ISM_SESS_TUNNEL) {
			ism_tunnel_tick(w, s->st->tun);
			continue;
		}
		if (s->state == ISM_SESS_H2)
			ism_h2_tick(w, s);
		if (s->state == ISM_SESS_FREE || s->state == ISM_SESS_CLOSING || s->deadline == 0)
			continue;
		if (s->deadline > w->now)
			continue;
		if (s->state == ISM_SESS_H2)
			ism_h2_expire(w, s);
		else
			ism_h1_expire(w, s);
	}
}

/* Graceful stop: HTTP/1.1 closes idle connections after a moment and busy
 * ones after the response in progress; HTTP/2 sends GOAWAY. */
void ism_sess_drain(struct ism_wctx *w)
{
	for (uint32_t i = 0; i < w->sess.n; i++) {
		struct ism_sess *s = w->sess.obj[i];

		if (s->state == ISM_SESS_H2)
			ism_h2_drain(w, s);
		else
			ism_h1_drain(w, s);
	}
}

void ism_sess_drain_over(struct ism_wctx *w)
{
	/* Every connection closes now, its exchanges cut (logged DC, as
	 * Envoy's at its drain timeout), so that what they held of the shared
	 * counts (requests in flight to endpoints and clusters, places in
	 * the queue for a connection, retries) goes back before the worker
	 * exits: the next workers' limits would count them for ever. */
	for (uint32_t i = 0; i < w->sess.n; i++) {
		struct ism_sess *s = w->sess.obj[i];

		if (s->state == ISM_SESS_TUNNEL)
			ism_tunnel_close(w, s->st->tun, NULL);
		else if (s->state != ISM_SESS_FREE)
			ism_sess_close(w, s);
	}
}

void ism_sess_free_all(struct ism_wctx *w)
{
	for (uint32_t i = 0; i < w->sess.n; i++) {
		struct ism_sess *s = w->sess.obj[i];

		if (s->state != ISM_SESS_FREE)
			ism_sock_release(w, &s->s);
		ism_h2_free(s);
		ism_buf_free(&s->in);
		ism_buf_free(&s->out);
		free(s->sni);
		free(s->pp);
	}
	ism_slab_free(&w->sess);
}

bool ism_sess_no_continue(struct ism_wctx *w, struct ism_stream *st)
{
	(void)w;
	(void)st;
	return false;
}

void ism_sess_whole_request(struct ism_wctx *w, struct ism_stream *st)
{
	(void)w;
	ISM_BUG_ON(!st->req_done);
}

int ism_sess_drop_trailers(struct ism_wctx *w, struct ism_stream *st,
			   const struct ism_http_header *h, size_t n)
{
	(void)w;
	(void)st;
	(void)h;
	(void)n;
	return 0;
}
