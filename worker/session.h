/* SPDX-License-Identifier: Apache-2.0 */
/* A client session: an accepted connection, what it reads before HTTP (the
 * PROXY protocol header, the TLS ClientHello), and the protocol it speaks to
 * the client. HTTP/1.1 (worker/h1.c) carries one stream at a time, later
 * requests of a pipeline waiting in its buffer. The session creates the
 * streams (worker/stream.h), feeds them the requests, and writes their
 * responses in its protocol. Private to worker/. */
#ifndef ISM_WORKER_SESSION_H
#define ISM_WORKER_SESSION_H

#include <netinet/in.h>
#include <stddef.h>
#include <stdint.h>

#include "worker/http1.h"
#include "worker/proxyproto.h"
#include "worker/worker-t.h"

enum ism_sess_state {
	ISM_SESS_FREE = 0,
	ISM_SESS_PREAMBLE, /* the PROXY header, the TLS sniff or the ClientHello */
	ISM_SESS_IDLE,	   /* no request begun (a new or kept-alive connection) */
	ISM_SESS_HEAD,	   /* reading a request head */
	ISM_SESS_STREAM,   /* a stream runs: its request body or response is in flight */
	ISM_SESS_H2,	   /* HTTP/2: streams run on it (worker/h2.c) */
	ISM_SESS_L4,	   /* TCP or TLS passthrough: its stream connects to the upstream */
	ISM_SESS_TUNNEL,   /* its stream's tunnel carries its bytes (worker/tunnel.c) */
	ISM_SESS_LINGER,   /* its end sent, the client's bytes dropped (ism_sess_linger) */
	ISM_SESS_CLOSING,  /* closed; the slot is freed when the socket's operations end */
};

/* What the session reads before HTTP (enum values of pre). */
enum ism_pre {
	ISM_PRE_NONE = 0,
	ISM_PRE_SNIFF, /* PERMISSIVE: TLS or plaintext, told by the first bytes */
	ISM_PRE_HELLO, /* HTTPS: the ClientHello, whose SNI picks the server */
	ISM_PRE_MESH,  /* mutual TLS with the mesh identity (STRICT, or PERMISSIVE once TLS) */
};

/* What the session's deadline bounds (enum values of deadline_kind). */
enum ism_sess_deadline {
	ISM_DL_NONE = 0,
	ISM_DL_HEADER, /* the preamble and the request head: 408 (or a quiet close) */
	ISM_DL_IDLE,   /* a kept-alive connection without a request: close quietly */
	ISM_DL_SEND,   /* the client does not take what is sent: close */
	ISM_DL_LINGER, /* the lingering close is over: close */
};

/* A lingering close (ism_sess_linger) ends once the client has been quiet
 * for ISM_LINGER_MS (Envoy's delayed_close_timeout) and the kernel has sent
 * all of the response, or after ISM_LINGER_MAX_MS (nginx's lingering_time),
 * or once ISM_LINGER_MAX_BYTES were dropped: a client that sends on is
 * cut off, not read for ever. */
#define ISM_LINGER_MS	     1000u
#define ISM_LINGER_MAX_MS    30000u
#define ISM_LINGER_MAX_BYTES (1u << 20)

/* How the response body goes to an HTTP/1.1 client (enum values of resp_out). */
enum ism_h1_out {
	ISM_H1_OUT_RAW = 0, /* as the data comes: the length was sent, or the close ends it */
	ISM_H1_OUT_CHUNKED, /* chunked by isthmus */
};

/* What a session keeps for the upstreams of clusters with DestinationRule
 * proxyProtocol (worker/upstream.c), made at the first need (ism_sess_pp):
 * the addresses their PROXY headers name, and the connections that sent them,
 * which serve this session only. */
struct ism_sess_pp {
	/* The client's address and the one it connected to: an inbound PROXY
	 * header's, else the socket's. AF_UNSPEC: no connection of its own (the
	 * mirror's sink, whose copies' headers name their own connections). */
	union ism_pp_addr src, dst;
	struct ism_upconn *conns; /* its private upstream connections, by pool_next */
	/* the socket's own peer where an inbound PROXY header named the client
	 * (ism_sess.peer): what ipBlocks match, Envoy's direct_remote_ip; "":
	 * no such header */
	char direct[INET6_ADDRSTRLEN];
	uint16_t direct_port;
};

struct ism_sess {
	struct ism_sock s; /* first: the socket base (worker/sock.h) */
	uint8_t state;	   /* enum ism_sess_state */
	uint8_t pre_pp;	   /* a PROXY protocol header is still expected */
	uint8_t pre;	   /* enum ism_pre */
	uint8_t deadline_kind;
	uint8_t keepalive;   /* the exchange ends with the connection kept */
	uint8_t http10;	     /* the request is HTTP/1.0 */
	uint8_t close_after; /* close once the response in progress is sent */
	uint8_t resp_out;    /* enum ism_h1_out */
	uint8_t served;	     /* a request was read: HTTP/1.1 it is */
	uint8_t handshaken;  /* its TLS handshake ended, at handshake_ms */
	uint8_t cont_flying; /* HTTP/1.1: its 100 Continue is being sent (h1.c) */
	uint8_t tls_tcp;     /* its TLS server terminates for tcp routes: L4 from the handshake */
	uint16_t listener;
	const struct ism_sess_ops *ops; /* HTTP/1.1 (h1.c) or HTTP/2 (h2.c) */
	struct ism_h2 *h2;		/* HTTP/2: the connection's state (h2.c) */
	uint64_t deadline;
	struct ism_body req; /* how the request body is delimited */
	struct ism_buf in;   /* client bytes not yet consumed */
	/* HTTP/1.1: in's length when a head was last parsed unfinished, its
	 * request line whole (0: none), so that bytes without a line end do not
	 * have it parsed again from its start (h1.c try_request) */
	uint32_t head_seen;
	struct ism_buf out;   /* response heads, local responses */
	struct ism_span held; /* HTTP/1.1: a send waiting for the 100 Continue (len 0: none) */
	struct ism_stream *st;
	char peer[INET6_ADDRSTRLEN];
	uint16_t peer_port;
	uint64_t conn_id;	/* Envoy's %CONNECTION_ID% (ism_wctx.conn_seq) */
	uint64_t accept_ms;	/* monotonic: when the connection was accepted */
	uint64_t handshake_ms;	/* monotonic: when its TLS handshake ended (handshaken) */
	uint64_t linger_end;	/* LINGER: when it closes whatever comes */
	uint32_t linger_bytes;	/* LINGER: what it dropped */
	char *sni;		/* the ClientHello's server name, NULL when none */
	uint64_t peer_auth;	/* its server's, at the handshake (struct ism_tls_conf) */
	int8_t xfcc_made;	/* xfcc: 0 not made yet, 1 made, -1 no client certificate */
	struct ism_buf xfcc;	/* the client certificate's X-Forwarded-Client-Cert element */
	struct ism_sess_pp *pp; /* NULL until needed */
};

_Static_assert(offsetof(struct ism_sess, s) == 0, "the socket base comes first");

/* An accepted connection on listener l. */
void ism_sess_accepted(struct ism_wctx *w, int fd, int listener);
/* A completion on the session's socket (slot idx, gen). */
void ism_sess_complete(struct ism_wctx *w, enum ism_op op, uint32_t idx, uint32_t gen, int res,
		       int bid, uint32_t flags);
/* Deadlines past due. */
void ism_sess_tick(struct ism_wctx *w);
/* Graceful stop: idle connections close after a moment, busy ones after the
 * response in progress. */
void ism_sess_drain(struct ism_wctx *w);
/* The drain time is over: open tunnels close (their lines are logged). */
void ism_sess_drain_over(struct ism_wctx *w);
void ism_sess_free_all(struct ism_wctx *w);

/* The session's ism_sess_pp, made at the first call (its addresses those of
 * its socket, unless an inbound PROXY header gave them); NULL without memory. */
struct ism_sess_pp *ism_sess_pp(struct ism_sess *s);
/* The socket's own peer (Envoy's direct remote address), whatever a PROXY
 * header said, as the accept found it; its port in *port. "" when unknown. */
const char *ism_sess_direct_peer(const struct ism_sess *s, uint16_t *port);

/* Whether the client is TLS (X-Forwarded-Proto, upstream SNI). */
bool ism_sess_tls(const struct ism_sess *s);
/* The X-Forwarded-Client-Cert element of the client's certificate
 * (ism_tls_xfcc), made at the first request that needs it; NULL when the
 * client is not mutual TLS (or the element cannot be made). */
const struct ism_buf *ism_sess_xfcc(struct ism_sess *s);

/* ---- for the protocols ---- */

/* Closes the connection; the streams on it end with it. */
void ism_sess_close(struct ism_wctx *w, struct ism_sess *s);
/* Closes the connection after its response, the client perhaps still
 * sending (HTTP/1.1: a body not read, a pipelined request; HTTP/2: frames
 * after the GOAWAY, WINDOW_UPDATEs as it reads): its FIN goes at once, what
 * the client sends is read and dropped until its end or the bounds of
 * ISM_LINGER_MS, then it closes. Bytes that reach a closed socket (or one
 * closed with bytes unread) make the kernel send a reset, which drops what
 * it has not sent yet of the response and can overtake the rest at the
 * client (nginx's lingering close, Envoy's delayed close). */
void ism_sess_linger(struct ism_wctx *w, struct ism_sess *s);
/* The lingering close's deadline passed: closes, or waits on. */
void ism_sess_linger_expire(struct ism_wctx *w, struct ism_sess *s);
/* The cont op of a sink of internal streams (worker/mirror.h,
 * worker/extauthz.h): no client to tell. */
bool ism_sess_no_continue(struct ism_wctx *w, struct ism_stream *st);
/* The want_body op of such a sink: its streams start with their whole
 * request. */
void ism_sess_whole_request(struct ism_wctx *w, struct ism_stream *st);
/* The trailers op of a session that drops a response's trailers. */
int ism_sess_drop_trailers(struct ism_wctx *w, struct ism_stream *st,
			   const struct ism_http_header *h, size_t n);
/* The session's one deadline: kind after ms (0 ms or ISM_DL_NONE: none). */
void ism_sess_set_deadline(struct ism_wctx *w, struct ism_sess *s, enum ism_sess_deadline kind,
			   uint32_t ms);
/* The same at the worker's clock time at (0 or ISM_DL_NONE: none; one already
 * past expires at the next tick). */
void ism_sess_set_deadline_at(struct ism_sess *s, enum ism_sess_deadline kind, uint64_t at);
/* Sends to the client (see ism_sock_send); a client that does not read is
 * closed after the idle timeout. */
void ism_sess_send(struct ism_wctx *w, struct ism_sess *s, const char *p, uint32_t len, int bid);

/* ---- for the streams of the session: what they ask of its protocol ---- */

/* A response made here: an error, a redirect, a route's direct response. */
struct ism_local {
	int status;
	const char *why;  /* the reason, for the debug log (and a gRPC client's grpc-message) */
	const char *body; /* sent as it is, with its content-length; not to a HEAD request,
			     nor for a status without a body (204, 304) */
	uint32_t body_len;
	const struct ism_http_header *hdrs; /* the other fields (content-type, location ...) */
	size_t n_hdrs;
	bool close; /* HTTP/1.1: the connection closes after it */
	/* A gRPC client's grpc-status (decimal); NULL: the one Envoy maps status to */
	const char *grpc_status;
};

struct ism_sess_ops {
	/* 100 Continue to a client whose request asked for it (Expect:
	 * 100-continue), now: isthmus answers it itself, as Envoy's connection
	 * manager does (the field does not go upstream, and an upstream's 1xx
	 * heads are not relayed). */
	bool (*cont)(struct ism_wctx *w, struct ism_stream *st); /* false: not sent */
	/* The final response head of the upstream (mode: how the upstream
	 * delimits its body), with the body bytes that came with it; done: the
	 * body ended. 1: a send started (ism_stream_resp_sent follows once it
	 * is out); 0: taken, nothing of the stream's in flight (the body may come
	 * at once); or -ENOMEM / -E2BIG (the head does not fit: nothing was
	 * sent). */
	int (*head)(struct ism_wctx *w, struct ism_stream *st, const struct ism_http_resp *resp,
		    uint8_t mode, const char *body, uint32_t len, bool done);
	/* Response body bytes (from ring buffer bid, or -1); done: the body
	 * ended. 1: a send started (ism_stream_resp_sent follows); 0: nothing
	 * to send; or -ENOMEM. The buffer is the session's in every case. */
	int (*data)(struct ism_wctx *w, struct ism_stream *st, const char *p, uint32_t len, int bid,
		    bool done);
	/* Trailer fields of the response (before its last data): HTTP/2
	 * sends them, HTTP/1.1 drops them. 0 or -ENOMEM. */
	int (*trailers)(struct ism_wctx *w, struct ism_stream *st, const struct ism_http_header *h,
			size_t n);
	/* A response made here (struct ism_local). 0, or -ENOMEM (nothing was
	 * sent). */
	int (*local)(struct ism_wctx *w, struct ism_stream *st, const struct ism_local *lr);
	/* The upstream's 101 head (resp) of an upgrade: sent, with what the
	 * upstream sent after it (len bytes at p); ism_stream_resp_sent follows.
	 * 0, or -ENOMEM (nothing was sent). HTTP/2: NULL (no upgrades). */
	int (*upgrade)(struct ism_wctx *w, struct ism_stream *st, const struct ism_http_resp *resp,
		       const char *p, uint32_t len);
	/* What the session gave (ism_stream_req_data) went upstream: its
	 * memory and flow-control credit go back, and it reads more of the
	 * request body, if the body has not ended (st->req_done). */
	void (*want_body)(struct ism_wctx *w, struct ism_stream *st);
	/* The stream ended whole (answered, its request read or not); sp was
	 * its st->sp. The session goes on with the next request, or closes. */
	void (*stream_done)(struct ism_wctx *w, struct ism_sess *s, void *sp);
	/* The stream (its st->sp: sp) cannot end well (part of a response is
	 * out): HTTP/1.1 closes the connection, HTTP/2 resets the stream. */
	void (*abort)(struct ism_wctx *w, struct ism_sess *s, void *sp);
};

extern const struct ism_sess_ops ism_h1_ops;
extern const struct ism_sess_ops ism_h2_ops;

#endif
