/* SPDX-License-Identifier: Apache-2.0 */
/* Tunnels: a byte pump between a client session's socket and an upstream
 * connection's, for an HTTP/1.1 upgrade the upstream accepted (101 Switching
 * Protocols: WebSocket), a TLS-passthrough server and a TCP route. Each
 * direction has at most one receive and one send in flight (what was read from
 * a side is read again only once it was written to the other), so a tunnel
 * holds at most a ring buffer's worth each way; a side that ends its sending
 * (EOF) is passed on as a half close where the other side's transport allows
 * it. The stream that made the tunnel (worker/stream.h) keeps its accounting:
 * endpoint, route, access-log line, counters. Private to worker/. */
#ifndef ISM_WORKER_TUNNEL_H
#define ISM_WORKER_TUNNEL_H

#include <stdbool.h>
#include <stdint.h>

#include "worker/sock.h"
#include "worker/worker-t.h"

/* Where a tunnel is, by the ends (EOF) its sides sent. A side that ended is
 * not read again; its end goes on to the other side (a half close) once what
 * goes to that side is out. */
enum ism_tun_state {
	ISM_TUN_OPEN = 1,	/* bytes both ways */
	ISM_TUN_CLIENT_ENDED,	/* the client ended; the upstream's bytes still go */
	ISM_TUN_UPSTREAM_ENDED, /* the upstream ended; the client's bytes still go */
	ISM_TUN_DRAINING,	/* both ended: its last sends go, then it closes */
	ISM_TUN_CLOSED,		/* ended: its stream logged it, its sockets close */
};

/* What the send in flight to a side carries. */
enum ism_tun_send {
	ISM_TUN_IDLE = 0, /* none in flight */
	ISM_TUN_RELAY,	  /* bytes read from the other side (a ring buffer) */
	ISM_TUN_EARLY,	  /* what the other side's connection held before the tunnel */
	ISM_TUN_HEAD,	  /* the rest of the upgrade request's head (to the upstream) */
};

/* The two sides, indices of the per-side arrays. */
enum ism_tun_side {
	ISM_TUN_CLIENT = 0,
	ISM_TUN_UPSTREAM = 1,
};

struct ism_l4counters;

struct ism_tunnel {
	uint8_t state;	 /* enum ism_tun_state */
	uint8_t send[2]; /* enum ism_tun_send: what the send in flight to side i carries */
	/* bytes read from side i while the send to the other was in flight (a
	 * receive armed before the tunnel, during its early send): ring buffer
	 * pend_bid[i] (-1: none), sent next */
	int32_t pend_bid[2];
	uint32_t pend_len[2];
	struct ism_stream *st;
	struct ism_sock *sk[2]; /* the session's socket, the upstream connection's */
	uint64_t opened_ms;	/* monotonic */
	uint32_t idle_ms;	/* silence both ways closes it after that long; 0: never */
	uint64_t idle_deadline;
	uint64_t end_deadline;	      /* maxConnectionDuration; 0: none */
	struct ism_l4counters *stats; /* the TCP or TLS route's; NULL: none */
};

/* Stream st's exchange becomes a tunnel between its session and its upstream
 * connection (both open, nothing in flight on either but the upstream's send of
 * the request head, which an upstream may answer before it read it all),
 * bounded by idle_ms of silence and max_ms in all (0: none). What the client
 * sent early (the session's buffer: a TLS ClientHello, bytes after an upgrade
 * request) goes to the upstream first, after that head; what the upstream sent
 * after its answer to a TCP or TLS route's CONNECT (the upstream connection's
 * buffer) to the client. 0, or -ENOMEM (nothing changed). */
int ism_tunnel_open(struct ism_wctx *w, struct ism_stream *st, uint32_t idle_ms, uint32_t max_ms,
		    struct ism_l4counters *stats);
/* An event of the tunnel's socket on side (enum ism_tun_side); FREE events are
 * the sockets' owners'. */
void ism_tunnel_event(struct ism_wctx *w, struct ism_tunnel *t, int side, struct ism_sock_ev ev);
/* Deadlines: silence, maxConnectionDuration. */
void ism_tunnel_tick(struct ism_wctx *w, struct ism_tunnel *t);
/* Ends the tunnel: its stream logs it with flags (NULL: none), both sides close. */
void ism_tunnel_close(struct ism_wctx *w, struct ism_tunnel *t, const char *flags);
/* The tunnel's memory goes (its stream ends it; the sockets are their owners'). */
void ism_tunnel_free(struct ism_wctx *w, struct ism_tunnel *t);

#endif
