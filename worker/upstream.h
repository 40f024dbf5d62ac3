/* SPDX-License-Identifier: Apache-2.0 */
/* Upstream connections and their pool. An HTTP/1.1 connection carries one
 * stream at a time, is kept idle in its endpoint's pool between streams, and
 * speaks HTTP/1.1 to the upstream: the request head and body out, the
 * response head parsed and its body decoded for the stream (worker/stream.h).
 * An HTTP/2 connection (worker/h2up.c) carries up to its stream limit at once
 * and stays in its endpoint's list of such connections while it lives.
 *
 * A connection of a cluster with DestinationRule proxyProtocol starts with a
 * PROXY header naming its session's client (struct ism_sess_pp), so it is
 * private to that session, as Envoy keys its pools by those addresses and
 * HAProxy keeps such connections private: it lives in the session's list, not
 * its endpoint's, carries only that session's streams (HTTP/1.1 one after the
 * other, HTTP/2 at once), and closes when the session does.
 * Private to worker/. */
#ifndef ISM_WORKER_UPSTREAM_H
#define ISM_WORKER_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "shm/table-t.h"
#include "worker/http1.h"
#include "worker/worker-t.h"

enum ism_upstate {
	ISM_UP_FREE = 0,
	ISM_UP_CONNECTING, /* connect, then the TLS handshake */
	ISM_UP_BUSY,	   /* carrying a stream */
	ISM_UP_IDLE,	   /* in the pool */
	ISM_UP_MUX,	   /* HTTP/2: ready, carrying streams (or none, until its idle time) */
	ISM_UP_TUNNEL,	   /* its stream's tunnel carries its bytes (worker/tunnel.c) */
	ISM_UP_CLOSING,	   /* closed; the slot is freed when the socket's operations end */
};

struct ism_upconn {
	struct ism_sock s; /* first: the socket base (worker/sock.h) */
	uint8_t state;	   /* enum ism_upstate */
	uint8_t reused;	   /* taken from the pool for this stream */
	uint8_t got_bytes; /* response bytes seen for this stream */
	uint8_t reusable;  /* may go back to the pool after this stream */
	uint8_t head_done; /* the final response head was parsed */
	/* an upgraded request ended (an HTTP/2 client's END_STREAM on its
	 * WebSocket): the sending half ends once what goes before it is out */
	uint8_t shut_wr;
	/* an upgrade answered otherwise than with its 101: what its client
	 * still sends is dropped, never sent */
	uint8_t refused;
	/* the body bytes that came with the head are malformed: the response
	 * is cut once its head went to the client (ism_up_resume) */
	uint8_t body_bad;
	uint32_t ep_id;
	uint32_t ep_inc;   /* the endpoint slot's incarnation when it connected */
	uint64_t conn_id;  /* Envoy's %UPSTREAM_CONNECTION_ID% (ism_wctx.conn_seq) */
	int connect_err;   /* errno of a connect that failed; 0: none */
	uint32_t requests; /* requests sent on this connection */
	uint32_t interim;  /* bytes of interim (1xx) heads for this stream */
	uint32_t idle_ms;  /* HTTP/2: how long it stays without streams */
	uint64_t idle_deadline;
	/* its cluster's connectionPool.tcp.maxConnectionDuration from its
	 * connect: no stream starts on it after that, and it closes once it
	 * carries none (Envoy's max_connection_duration, which Istio sets on
	 * HTTP clusters); 0: never */
	uint64_t expires_at;
	/* CONNECTING: when it is given up if not usable by then (its cluster's
	 * connectTimeout from the connect); 0: never */
	uint64_t connect_deadline;
	uint64_t tls_fp; /* TLS settings and server name it was made with; 0: plaintext */
	uint8_t pp;	 /* the PROXY header it starts with (enum ism_upstream_pp) */
	/* pp: the session whose addresses that header names, the only one it
	 * serves (its list holds u); NULL: none, shared in its endpoint's lists */
	struct ism_sess *owner;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	/* its own address (getsockname), read at the first ask (ism_up_local) */
	struct sockaddr_storage local;
	socklen_t local_len; /* 0: not read yet */
	struct ism_stream *st;
	struct ism_body resp; /* how the response body is delimited */
	struct ism_buf in;    /* response head bytes */
	struct ism_buf out;   /* the request head (and body when whole), kept for a replay */
	struct ism_buf hold;  /* body bytes that came while it could not send: go next */
	struct ism_h2c *mux;  /* HTTP/2: its state (worker/h2up.c); NULL: HTTP/1.1 */
	/* the list it is in: the endpoint's idle (HTTP/1.1) or HTTP/2 connections,
	 * or (owner) its session's private ones, from its connect to its close */
	struct ism_upconn *pool_next;
	struct ism_upconn *pool_prev;
};

_Static_assert(offsetof(struct ism_upconn, s) == 0, "the socket base comes first");

/* Starts an attempt of stream st on endpoint ep of cluster cl: an idle pooled
 * connection of the same TLS settings and server name (unless fresh; with
 * proxyProtocol, one of st's session's), or a new one; a pooled one sends at
 * once, a new one once connected (after its PROXY header). head (the request
 * to send, built by ism_up_request) is taken. Returns the connection, NULL when
 * none could be made (nothing was taken then); when the pool is full
 * (maxConnections), NULL with *full set. full NULL: the limit does not apply
 * (a replay in place of a connection the upstream closed). */
/* The local address of connection u (%UPSTREAM_LOCAL_ADDRESS%), read once;
 * NULL when the socket cannot tell. */
const struct sockaddr *ism_up_local(struct ism_upconn *u);
struct ism_upconn *ism_up_start(struct ism_wctx *w, struct ism_stream *st,
				const struct ism_cluster *cl, const struct ism_endpoint *ep,
				struct ism_buf *head, bool fresh, bool *full);
/* What a route's actions add to the request head beyond req, whose path and
 * host the stream rewrote in req itself. */
struct ism_req_edits {
	/* x-envoy-original-path, in place of any the client sent: the path and
	 * query before a rewrite; NULL: none */
	const char *orig_path;
	size_t orig_len;
	const struct ism_hdr_edits *hdrs; /* the route's header edits; NULL: none */
	/* The Host before the route's authority rewrite, which X-Forwarded-Host
	 * gets (spec.proxyHeaders.xForwardedHost); NULL: none */
	const char *xfh;
	size_t xfh_len;
	/* hdrs made for this request (values with command operators), which
	 * the caller frees once the head is written; NULL: none */
	struct ism_hdr_edits *made;
};

/* Writes the request head the upstream gets into out: origin-form target, the
 * client's end-to-end fields, the framing isthmus parsed, X-Forwarded-* and
 * X-Request-Id (the one made goes to the access log when the client sent
 * none), and what ed (NULL: nothing) adds. */
int ism_up_request(struct ism_wctx *w, const struct ism_stream *st, const struct ism_http_req *req,
		   const struct ism_cluster *cl, const struct ism_req_edits *ed,
		   struct ism_buf *out);
/* A new X-Request-Id: a random (version 4) UUID, 36 characters and a NUL. */
void ism_up_request_id(struct ism_wctx *w, char out[37]);
/* Envoy's upstream transport failure reason for a connection that could not be
 * made: "delayed connect error: <strerror>" for a failed connect (err), or
 * "TLS_error:|<code>:<library>:<function>:<reason>:TLS_error_end" for a failed
 * handshake (tls, an OpenSSL error code: OpenSSL's texts where Envoy's
 * BoringSSL has its own). Returns its length (cut at cap); 0: none known. */
size_t ism_up_failure_text(int err, unsigned long tls, char *out, size_t cap);
/* A TCP or TLS route's connection u (up, its stream's) asks its endpoint, an
 * HTTP proxy, for a tunnel to authority ("host:port"): "CONNECT authority
 * HTTP/1.1" (post: "POST / HTTP/1.1") with it as the Host field; the answer
 * comes to the stream (ism_stream_up_tunnel, or a failed connect). */
void ism_up_tunnel_ask(struct ism_wctx *w, struct ism_upconn *u, const struct ism_str *authority,
		       bool post);
/* Appends request body data to the request being built (before ism_up_start):
 * as it is, or as a chunk when the body has no length; done adds the end. */
int ism_up_body_into(const struct ism_stream *st, struct ism_buf *out, const char *p, uint32_t len,
		     bool done);
/* Request body data for stream st (ring buffer bid or -1, which is the
 * connection's from now on): 1 when a send started (ism_stream_up_sent
 * follows), 0 when there was nothing to send, -ENOMEM. */
int ism_up_req_data(struct ism_wctx *w, struct ism_stream *st, const char *p, uint32_t len, int bid,
		    bool done);
/* Stream st wants more of the response (what was given went to the client). */
void ism_up_resume(struct ism_wctx *w, struct ism_stream *st);
/* Whether the request of st's attempt is kept whole, for a retry. */
bool ism_up_replayable(const struct ism_stream *st);
/* Stream st is done with its connection (st->up becomes NULL): an HTTP/1.1
 * one goes back to the pool when pool says it may and it can carry another
 * request, else it closes; an HTTP/2 one goes on with its other streams. */
void ism_up_release(struct ism_wctx *w, struct ism_stream *st, bool pool, uint32_t idle_ms);
/* Ends st's attempt before its end: the request kept for a replay moves to
 * replay (when the stream may still replay it); HTTP/1.1 closes the
 * connection, HTTP/2 resets the stream. */
void ism_up_detach(struct ism_wctx *w, struct ism_stream *st, struct ism_buf *replay);
/* The same without a replay (the stream answers or goes away). */
void ism_up_abort(struct ism_wctx *w, struct ism_stream *st);
void ism_up_close(struct ism_wctx *w, struct ism_upconn *u);
/* Session s closes (its streams let go of their connections already): its
 * private connections close with it. */
void ism_up_sess_closed(struct ism_wctx *w, struct ism_sess *s);

/* ---- for worker/h2up.c ---- */

/* A new connection to ep (TLS as cl says; h2: its ALPN offers HTTP/2). With
 * full, maxConnections applies: NULL with *full set when the cluster has its
 * connections already. */
struct ism_upconn *ism_up_connect(struct ism_wctx *w, const struct ism_stream *st,
				  const struct ism_cluster *cl, const struct ism_endpoint *ep,
				  bool h2, bool *full);
/* The TLS settings and server name a connection must match to carry st. */
uint64_t ism_up_pool_key(const struct ism_stream *st, const struct ism_cluster *cl,
			 const struct ism_endpoint *ep);
/* Where st looks for a connection of cluster cl to endpoint ep_id to share (h2:
 * HTTP/2 ones, else idle HTTP/1.1 ones), linked by pool_next: with
 * proxyProtocol, its session's private connections (any endpoint, state and
 * protocol: those of u->ep_id, u->tls_fp and u->pp that fit), else the
 * endpoint's list. */
struct ism_upconn *ism_up_candidates(struct ism_wctx *w, const struct ism_stream *st,
				     const struct ism_cluster *cl, uint32_t ep_id, bool h2);
/* Whether u of such a list is to endpoint ep_id with pool key key (ism_up_pool_key)
 * and cluster cl's PROXY header. */
static inline bool ism_up_fits(const struct ism_upconn *u, const struct ism_cluster *cl,
			       uint32_t ep_id, uint64_t key)
{
	return u->ep_id == ep_id && u->tls_fp == key && u->pp == cl->pp;
}
/* Whether u is still connecting past its connect deadline: it takes no new
 * stream, and the next tick closes it. */
bool ism_up_overdue(const struct ism_wctx *w, const struct ism_upconn *u);
/* Closes the idle pooled connections (HTTP/1.1 ones and HTTP/2 ones without
 * streams): the descriptors they hold, when the worker has run out. */
void ism_up_reclaim_idle(struct ism_wctx *w);
/* Whether u lived its maxConnectionDuration (expires_at). */
static inline bool ism_up_expired(uint64_t now, const struct ism_upconn *u)
{
	return u->expires_at != 0 && u->expires_at <= now;
}
/* Whether u's endpoint slot still holds the endpoint u connected to (a slot a
 * reload swept may be given to another): if not, u carries nothing more and
 * its count is not the slot's. */
bool ism_up_same_ep(const struct ism_wctx *w, const struct ism_upconn *u);
/* The incarnation of endpoint slot ep_id now (struct ism_ep_state). */
uint32_t ism_up_ep_incarnation(const struct ism_wctx *w, uint32_t ep_id);
/* This worker's record of what it holds of endpoint ep_id's shared counts
 * (struct ism_ep_held, in its slot), for the slot's incarnation inc: a record
 * of an earlier incarnation starts again. */
struct ism_ep_held *ism_up_held(struct ism_wctx *w, uint32_t ep_id, uint32_t inc);
/* An HTTP/2 connection joins its endpoint's list (until it closes). */
void ism_up_mux_add(struct ism_wctx *w, struct ism_upconn *u);
/* The connection's last operation ended: its slot is free. */
void ism_up_finalize(struct ism_wctx *w, struct ism_upconn *u);

/* A completion on the connection's socket (slot idx, gen). */
void ism_up_complete(struct ism_wctx *w, enum ism_op op, uint32_t idx, uint32_t gen, int res,
		     int bid, uint32_t flags);
/* Connections still connecting past their connect deadline (their streams
 * fail as a connect failure), idle ones past their idle time, and those of
 * clusters whose streams wait for a connection (their capacity goes to the
 * waiters). */
void ism_up_tick(struct ism_wctx *w);
void ism_up_drain(struct ism_wctx *w);
/* Pooled connections to endpoints that left the configuration go. */
void ism_up_table_changed(struct ism_wctx *w);
/* Whether the current table lists endpoint id (ism_up_table_changed). */
bool ism_up_ep_listed(const struct ism_wctx *w, uint32_t id);
void ism_up_free_all(struct ism_wctx *w);

#endif
