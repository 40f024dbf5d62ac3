/* SPDX-License-Identifier: Apache-2.0 */
/* A stream: one request and its response, whatever the client session speaks.
 * It routes the request, picks the cluster and the endpoint, attaches to an
 * upstream connection, retries, keeps the timeouts of the exchange, tells
 * outlier detection how attempts went, and writes the access-log line and the
 * counters. Sessions (worker/session.h) create streams and feed them the
 * request; upstream connections (worker/upstream.h) feed them the response.
 * Private to worker/. */
#ifndef ISM_WORKER_STREAM_H
#define ISM_WORKER_STREAM_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <strings.h>

#include "lib/ascii.h"
#include "worker/http1.h"
#include "worker/policy.h"
#include "worker/worker-t.h"

enum ism_stream_state {
	ISM_ST_FREE = 0,
	ISM_ST_NEW,	  /* created by its session, request not routed yet */
	ISM_ST_WAITING,	  /* queued for an upstream connection (maxConnections reached) */
	ISM_ST_BACKOFF,	  /* a retry's back-off timer runs */
	ISM_ST_ATTEMPT,	  /* an upstream attempt: connecting, sending, awaiting the response head */
	ISM_ST_RESPONSE,  /* the upstream's response goes to the client */
	ISM_ST_LOCAL,	  /* a response made here goes to the client */
	ISM_ST_ABANDONED, /* its session went away; freed once its timer is back */
	ISM_ST_DELAY,	  /* a fault delay runs; the request goes on, or is aborted, after it */
	ISM_ST_UPGRADE,	  /* the upstream's 101 goes to the client; a tunnel follows */
	ISM_ST_TUNNEL,	  /* bytes flow both ways (worker/tunnel.c) until either side ends */
	ISM_ST_AUTHZ,	  /* a CUSTOM policy's provider checks the request (worker/extauthz.h) */
};

/* What a stream's deadline bounds (enum values of deadline_kind). */
enum ism_stream_deadline {
	ISM_SDL_NONE = 0,
	ISM_SDL_CONNECT,  /* the connect, or the wait for a pooled connection: 503 */
	ISM_SDL_RESPONSE, /* bytes from the upstream, and the route's timeout: 504 */
	/* no byte either way (timeouts.streamIdle): the client's body, read for
	 * an external check or sent to the upstream, or the response between
	 * reads: 408, or the response cut (SI), Envoy's stream idle timeout */
	ISM_SDL_BODY,
};

/* What the request head of each attempt says of it (ism_stream.stamp), as
 * Envoy's router writes it. */
enum ism_stamp {
	ISM_STAMP_COUNT = 1,	/* x-envoy-attempt-count (spec.proxyHeaders.attemptCount) */
	ISM_STAMP_EXPECTED = 2, /* x-envoy-expected-rq-timeout-ms (envoyDebugHeaders) */
	/* grpc-timeout: a gRPC request's time as the attempt has it, in place of
	 * the client's (Envoy's max_grpc_timeout, which Istio sets) */
	ISM_STAMP_GRPC = 4,
};

struct ism_cors_out;
struct ism_deferred;
struct ism_xa_wait;

struct ism_stream {
	uint32_t idx;
	uint32_t gen;
	uint8_t state; /* enum ism_stream_state */
	uint8_t deadline_kind;
	uint16_t inflight; /* its timer on the ring */
	uint8_t sending;   /* the session sends what this stream gave it */
	struct ism_sess *sess;
	void *sp; /* the session's own state for it (HTTP/2: its stream), or NULL */
	struct ism_upconn *up;
	void *usp; /* the upstream connection's own state for it (HTTP/2: its stream) */
	uint64_t deadline;
	uint64_t route_deadline; /* VirtualService timeout of the exchange; 0: none */
	/* the request */
	uint8_t is_head;
	uint8_t idempotent;   /* its method is (RFC 9110 9.2.2): safe to send twice */
	uint8_t grpc;	      /* content-type application/grpc: errors made here are gRPC ones */
	struct ism_gw *gw;    /* a gRPC-Web request (worker/grpcweb.h); NULL: not one */
	uint8_t http10;	      /* forwarded as HTTP/1.0, so the answer suits the client */
	uint8_t req_done;     /* the request body is all read from the client */
	uint8_t req_streamed; /* body bytes went out after the head, not kept: no replay */
	int8_t req_chunked;   /* the body has no length: the upstream gets it chunked */
	uint64_t req_seen;    /* request body bytes taken from the client so far */
	/* the response */
	uint8_t resp_head_done; /* the final head came (interim ones are dropped) */
	uint8_t resp_started;	/* bytes of the final response went to the client */
	uint8_t resp_done;	/* the upstream's response is all read */
	uint8_t counted;	/* the exchange is in the counters */
	/* The route's response edits name Server: they decide it, not
	 * spec.proxyHeaders.server (ism_stream_own_server); likewise
	 * x-envoy-upstream-service-time (ism_stream_own_svc_time). */
	uint8_t route_server;
	uint8_t route_svc_time;
	uint16_t status;
	/* the route, the cluster and the attempts */
	/* Everything of the table below is the table the worker uses: one that
	 * replaces it moves them to its namesakes (ism_streams_regen). */
	uint32_t cluster;   /* index in the table; UINT32_MAX: none */
	int32_t tls_server; /* HTTPS listener: its server the SNI picks, for this request */
	uint32_t ep_id; /* endpoint of the attempt in progress (in-flight count held); UINT32_MAX */
	uint32_t ep_inc;	       /* its slot's incarnation then (ism_up_ep_incarnation) */
	uint32_t prev_ep;	       /* endpoint of the latest attempt */
	const struct ism_endpoint *ep; /* idem, in the table; NULL: none */
	struct ism_retry_state rs;
	uint8_t retry_counted; /* counted in the cluster's retries_active */
	uint8_t rq_counted;    /* counted in the cluster's in_flight (http2MaxRequests) */
	uint8_t od_pending;    /* a 2xx-4xx response streams: outlier outcome told at its end */
	uint8_t up_cut;	       /* the upstream cut the response short (upstream_cut) */
	/* why the latest attempt's connection could not be made (Envoy's
	 * upstream transport failure reason, ism_up_failure_text): a connect's
	 * errno, or the handshake's first OpenSSL error; 0: none */
	int up_errno;
	unsigned long up_tls_err;
	uint8_t waiting; /* in the worker's queue for a connection */
	uint8_t has_hash;
	uint64_t hash;		/* consistent-hash key */
	uint64_t wait_deadline; /* when the wait for a connection ends (503); 0: not waiting */
	struct ism_stream *wait_next;
	struct ism_stream *wait_prev;
	char *set_cookie;		  /* issued hash cookie, added to the response */
	struct ism_hdr_edits *resp_edits; /* the route's edits of the response; NULL: none */
	struct ism_buf replay; /* the request (head, and body when whole) kept for a retry */
	/* The fields of the request head that differ per attempt (enum
	 * ism_stamp bits; stamp_attempt): stamp_len bytes at byte stamp_at of
	 * the request; stamp_at 0: none. */
	uint32_t stamp_at;
	uint16_t stamp_len;
	uint8_t stamp;
	uint32_t route_timeout_ms; /* the VirtualService's timeout; 0: none */
	struct ism_buf req_trl;	   /* request trailers (HTTP/2 clients): name NUL value NUL ... */
	struct __kernel_timespec retry_ts;
	uint32_t connect_timeout_ms;
	uint32_t response_timeout_ms; /* the wait for the head, without a route timeout */
	uint32_t read_idle_ms;	      /* no byte either way (timeouts.streamIdle); 0: none */
	uint32_t pool_idle_ms;
	char up_sni[256]; /* server name for upstream TLS: the request's host */
	/* the access log and the counters */
	struct ism_alog_req *log_req; /* the request's part of the line; NULL: log off */
	/* the request's fields, for the log's filter (worker/logfilter.h); empty: none */
	struct ism_buf filter_hdrs;
	/* the response's fields and trailers, when the filter reads them */
	struct ism_buf filter_resp;
	/* the request's X-Forwarded-For fields joined into one (join_xff) */
	struct ism_buf xff;
	struct ism_buf filter_trl;
	const char *flags; /* reason code of a failure (Envoy-style), or NULL */
	/* Envoy's response code details of an answer made here whose reason
	 * Envoy names (ism_stream_local_details); NULL: the flags decide */
	const char *local_details;
	/* Envoy's HTTP/2 codec's detail of a request nghttp2 reset after its
	 * head (a body against its content-length, a bad trailer field); NULL:
	 * none */
	const char *codec_details;
	/* Envoy's details of an AuthorizationPolicy's (or a JWT provider's)
	 * denial (malloc'd; the table's may be gone when the line is
	 * written); NULL: none */
	char *denied;
	/* What the request's JWTs came to (worker/authn.h), when a
	 * RequestAuthentication applies: the claims the policies read, the
	 * memory the request's edits point into; NULL: none. */
	struct ism_authn *authn;
	/* ISM_ST_AUTHZ: the request kept while its check runs, then what an
	 * allowing answer adds to the response (worker/extauthz.h); NULL */
	struct ism_xa_wait *xa;
	uint8_t log_flags;		  /* enum ism_alog_flag bits: flags beside flags */
	uint64_t t0_ms;			  /* monotonic: when the request head was complete */
	uint64_t req_end_ms;		  /* monotonic: when its body was (0: not yet) */
	uint64_t delay_end_ms;		  /* monotonic: when a fault delay ends, ended (0: none) */
	uint64_t resp_head_ms;		  /* monotonic: when the upstream's head came (0: not) */
	uint64_t req_sent_ms;		  /* monotonic: when its last byte went upstream (0: not) */
	struct ism_counters *lis_stats;	  /* of the table; NULL: none */
	struct ism_counters *route_stats; /* idem; NULL: no route */
	/* The match block that chose the route (NULL: a route without any):
	 * the prefix a prefix rewrite replaces, the request's own (a request
	 * that waits for a check resumes after others were routed). */
	const struct ism_match *route_match;
	/* The X-Request-Id isthmus made for the request, before it routes it, as
	 * Envoy's connection manager makes it ("": none made). */
	char rid[37];
	uint64_t bytes_in;	     /* body bytes from the client (a tunnel's bytes) */
	uint64_t bytes_out;	     /* and to it */
	uint64_t meter[ISM_M_COUNT]; /* Envoy's byte meters (enum ism_meter) */
	uint32_t up_head_len;	     /* the request head sent upstream (HTTP/1.1) */
	/* request mirroring (worker/mirror.c) */
	uint8_t mirror; /* a mirrored copy: its sink session discards the response */
	/* the original: its copies waiting for its body; a copy: the next one */
	struct ism_stream *copies;
	/* The client by gatewayTopology.numTrustedProxies, when the X-Forwarded-For
	 * the client sent names it; "" otherwise (the session's peer). */
	char xff_client[INET6_ADDRSTRLEN];
	/* fault injection and CORS (worker/fault.h, worker/cors.h) */
	struct ism_deferred *deferred; /* ISM_ST_DELAY: an answer made meanwhile; NULL */
	struct ism_cors_out *cors;     /* Access-Control-* fields of the answer (malloc'd); NULL */
	/* tunnels (worker/tunnel.h) */
	uint8_t upgrade; /* an HTTP/1.1 upgrade (WebSocket): a 101 makes the exchange a tunnel */
	uint8_t l4;	 /* a TCP or TLS-passthrough connection: a tunnel once connected */
	struct ism_tunnel *tun;		 /* ISM_ST_TUNNEL: the pump; NULL */
	struct ism_l4counters *l4_stats; /* the TCP or TLS route's; NULL: none */
};

/* ---- from the external authorizer (worker/extauthz.c) ---- */

/* The check of st's request (kept in st->xa) let it through: it goes on as
 * it would have without one, from the DENY and ALLOW policies on. */
void ism_stream_authz_allow(struct ism_wctx *w, struct ism_stream *st);

/* ---- from the worker ---- */

/* The worker moved from table old (still mapped) to w->table: every stream
 * goes on with the newer table's namesakes of what it had of the old one
 * (worker/regen.h), so that nothing of it points into the old one. A
 * request waiting for its external check is routed again on the new table. */
void ism_streams_regen(struct ism_wctx *w, const struct ism_table *old);

/* ---- from the session ---- */

/* A new stream of session s for one request (NULL without memory). */
struct ism_stream *ism_stream_new(struct ism_wctx *w, struct ism_sess *s);
/* The request head req (its fields point into the session's buffer, valid
 * during the call only): normalise the path, route, pick an endpoint, build
 * what the upstream gets, and start the attempt. body (len bytes, the body's
 * decoded bytes that came with the head) travels with the head; req_done says
 * whether the body ended within them. Answers locally when it cannot proceed. */
void ism_stream_request(struct ism_wctx *w, struct ism_stream *st, struct ism_http_req *req,
			const char *body, uint32_t len, bool req_done);
/* More request body, decoded (from ring buffer bid, or -1), taken by the
 * session after its ops' want_body; done when it ended. */
void ism_stream_req_data(struct ism_wctx *w, struct ism_stream *st, const char *p, uint32_t len,
			 int bid, bool done);
/* Trailer fields of the request, before its body's end: an HTTP/2 upstream
 * gets them, an HTTP/1.1 one does not. */
void ism_stream_req_trailers(struct ism_wctx *w, struct ism_stream *st,
			     const struct ism_http_header *h, size_t n);
/* Why a request the session could not read is refused, where the access
 * log's %RESPONSE_CODE_DETAILS% gives Envoy's detail for it (exchange.c,
 * ism_stream_local_details): an HTTP/1.1 request without Host (400,
 * missing_host_header), a head not complete in time (408,
 * request_header_timeout), a body over the limit (413,
 * request_payload_too_large), an HTTP/2 header block over the limits (431,
 * http2.too_many_headers) or with a field nghttp2 would have refused (400,
 * http2.invalid.header.field). */
/* A request the codec refused within its header block (HTTP/2: a field or
 * a pseudo-header nghttp2 does not take, wire bytes of it), reset before it
 * was a request: logged as Envoy's codec logs the stream it resets, without
 * request fields, response code 0, flag DPE, details details. */
void ism_stream_refused_head(struct ism_wctx *w, struct ism_sess *s, uint64_t wire,
			     const char *details);
/* Envoy's xff_num_trusted_hops (Istio's gatewayTopology.numTrustedProxies,
 * trusted): into out, the Nth address from the right of the X-Forwarded-For
 * req has (the last such field, the one forwarded), when it has that many and
 * that one is an IP address; else "" (the client is the connection's peer). */
void ism_stream_xff_client(uint32_t trusted, const struct ism_http_req *req,
			   char out[INET6_ADDRSTRLEN]);

#define ISM_WHY_HEAD_TIMEOUT	"request timeout"
#define ISM_WHY_ROUTE_TIMEOUT	"upstream request timeout" /* Envoy's words */
#define ISM_WHY_MISDIRECTED	"the server's client authentication changed: connect again"
#define ISM_WHY_PER_TRY_TIMEOUT "upstream per-try timeout"
#define ISM_WHY_STREAM_IDLE	"stream timeout"
#define ISM_WHY_BODY_TOO_LARGE	"request body too large"
#define ISM_WHY_H2_HEAD_TOO_BIG "request headers too large"
#define ISM_WHY_H2_BAD_LENGTH	"bad content-length"
#define ISM_WHY_H2_HOSTS	"more than one host"
#define ISM_WHY_H2_CONNECT_END	"an extended CONNECT that ends its stream"
/* A request path that normalisation refuses, or an HTTP/2 :path with a
 * fragment (Envoy: path_normalization_failed). */
#define ISM_WHY_BAD_PATH      "bad request path"
#define ISM_WHY_BAD_HOST      "bad authority"
#define ISM_WHY_ABSOLUTE_PATH "not a relative path"

/* An answer made here to a gRPC request (st->grpc), as Envoy's local reply
 * gives it: HTTP 200, trailers-only, with lr's fields but its framing, then
 * content-type (gRPC's, or gRPC-Web's for a gRPC-Web request), grpc-status
 * (lr's, or the one Envoy maps its status to) and grpc-message (lr's body,
 * percent-encoded; none when it has none). Into *out (allocated; its strings
 * in b): how many, or -ENOMEM. */
struct ism_local;
int ism_stream_grpc_answer(const struct ism_stream *st, const struct ism_local *lr,
			   struct ism_buf *b, struct ism_http_header **out);

/* A request the session could not read (status: 400, 408, 413, 431, 501 ...):
 * answered here, with why as the body and the access log's reason. */
void ism_stream_refuse(struct ism_wctx *w, struct ism_stream *st, struct ism_http_req *req,
		       int status, const char *why);
/* What the session was given to send (a head, body bytes) went out. */
void ism_stream_resp_sent(struct ism_wctx *w, struct ism_stream *st);
/* The session ends (the client went, or it could not send): the stream ends
 * too, its access-log line says why. */
void ism_stream_abort(struct ism_wctx *w, struct ism_stream *st);

/* A TCP or TLS-passthrough connection of the stream's session, taken by route
 * r (NULL: none; why says what failed): a destination, an endpoint, a connect
 * (another endpoint after a connect failure), then a tunnel carrying the
 * session's bytes both ways, the early ones (its buffer) first. Without a
 * route, a healthy endpoint or a connection, the session closes, logged. */
void ism_stream_l4(struct ism_wctx *w, struct ism_stream *st, const struct ism_l4route *r,
		   const char *why);
/* The stream's tunnel ended (flags: why, for the access log; NULL): logged and
 * counted, its upstream connection and its session close. */
void ism_stream_tunnel_end(struct ism_wctx *w, struct ism_stream *st, const char *flags);

/* ---- from the upstream connection ---- */

/* The connection is usable: the request goes out. */
void ism_stream_up_ready(struct ism_wctx *w, struct ism_stream *st);
/* A 2xx answered the CONNECT of a TCP or TLS route's tunnel (ism_up_tunnel_ask):
 * the tunnel opens. */
void ism_stream_up_tunnel(struct ism_wctx *w, struct ism_stream *st);
/* Bytes came from the upstream: its response timeout starts again. */
void ism_stream_up_bytes(struct ism_wctx *w, struct ism_stream *st);
/* The request bytes handed to the upstream went out. */
void ism_stream_up_sent(struct ism_wctx *w, struct ism_stream *st);
/* The final response head (an upstream's 1xx heads are not relayed, as
 * Envoy's connection manager swallows them unless it proxies 100-continue,
 * which Istio does not set), with the body bytes (decoded) that came with it,
 * done when the body ended within them. */
void ism_stream_up_head(struct ism_wctx *w, struct ism_stream *st, const struct ism_http_resp *resp,
			uint8_t mode, const char *body, uint32_t len, bool done);
/* The upstream accepted the upgrade the stream asked for: its 101 head resp
 * goes to the client, with the len bytes at p the upstream sent after it,
 * then the exchange becomes a tunnel. */
void ism_stream_up_upgrade(struct ism_wctx *w, struct ism_stream *st,
			   const struct ism_http_resp *resp, const char *p, uint32_t len);
/* Trailer fields of the response, before its last data (HTTP/2 upstreams):
 * false when the stream ended (cut: no memory), its upstream side let go. */
bool ism_stream_up_trailers(struct ism_wctx *w, struct ism_stream *st,
			    const struct ism_http_header *h, size_t n);
/* Response body bytes (decoded; ring buffer bid or -1), done when it ended. */
void ism_stream_up_data(struct ism_wctx *w, struct ism_stream *st, const char *p, uint32_t len,
			int bid, bool done);
/* The attempt failed before a usable response head (f: connect, reset,
 * timeout), or the upstream cut the response short after its head. */
void ism_stream_up_failed(struct ism_wctx *w, struct ism_stream *st, enum ism_failure f);
/* The upstream reset the stream after the response head went to the client
 * (an HTTP/2 RST_STREAM, or nghttp2's for DATA that contradict the head's
 * content-length): the response is cut short, logged UR. */
void ism_stream_up_reset(struct ism_wctx *w, struct ism_stream *st);
/* The upstream sent a head it must not (malformed, too large), or a body its
 * framing refuses: Envoy's protocol-error reset, retried as a reset, else
 * 502 UPE; after the head went out, the response is cut. */
#define ISM_WHY_PROTOCOL     "malformed upstream response head"
#define ISM_WHY_MAX_REQUESTS "upstream overflow (http2MaxRequests)"
#define ISM_WHY_NO_HEALTHY   "no healthy upstream"
#define ISM_WHY_NO_CLUSTER   "cluster not found"
#define ISM_WHY_NO_SWITCH    "upstream answered the upgrade with a 2xx, not 101"
#define ISM_WHY_INTERIM	     "upstream interim (1xx) heads over maxResponseHeaderBytes"
void ism_stream_up_bad(struct ism_wctx *w, struct ism_stream *st, const char *why);

/* ---- for worker/mirror.c ---- */

/* Starts mirrored copy st (st->mirror, its cluster, route_deadline and
 * framing set): its request, head and whole body in st->replay, goes to an
 * endpoint of st->cluster, without retries. 0: started (its session hears
 * how it ends); -ENOENT: no healthy endpoint, -EBUSY: the cluster's
 * http2MaxRequests reached, -ESTALE: the table changed (st is left as it was). */
int ism_stream_mirror_start(struct ism_wctx *w, struct ism_stream *st);

/* ---- the worker ---- */

/* A stream's timer (the retry back-off, a fault delay) completed. */
void ism_stream_timer(struct ism_wctx *w, uint32_t idx, uint32_t gen);
/* Deadlines past due; streams waiting for a connection get their try after a
 * connection was released (after each batch, and at the tick). */
void ism_stream_tick(struct ism_wctx *w);
/* Streams whose deadline has come expire; w->stream_wake becomes the next
 * deadline. Run when the loop wakes at stream_wake (a deadline fires at its
 * millisecond, as Envoy's timers do, not at the 100 ms tick). */
void ism_stream_expire_due(struct ism_wctx *w);
void ism_stream_after_batch(struct ism_wctx *w);
void ism_stream_free_all(struct ism_wctx *w);
/* The client address of stream st: by numTrustedProxies, else the peer. */
const char *ism_stream_client(const struct ism_stream *st);

/* The fields isthmus writes into the heads clients get (Istio's proxyHeaders):
 * whether st's head (st NULL: none) gets spec.proxyHeaders.server as its
 * Server, the upstream's replaced; not when the route's edits name Server. */
static inline bool ism_stream_own_server(const struct ism_wctx *w, const struct ism_stream *st)
{
	return w->table->server.len > 0 && (st == NULL || !st->route_server);
}
/* Whether st's head gets isthmus's x-envoy-upstream-service-time
 * (spec.proxyHeaders.envoyDebugHeaders): Envoy's router sets it before the
 * route's response edits apply, so one that sets or removes it decides. */
static inline bool ism_stream_own_svc_time(const struct ism_wctx *w, const struct ism_stream *st)
{
	return w->table->debug_headers && st != NULL && !st->route_svc_time;
}
/* Whether field h of an upstream's head for st gives way to them: Server,
 * and x-envoy-upstream-service-time (the client got the upstream's and
 * isthmus's, the upstream's first). */
static inline bool ism_stream_field_replaced(const struct ism_wctx *w, const struct ism_stream *st,
					     const struct ism_http_header *h)
{
	return (h->name_len == 6 && ism_stream_own_server(w, st) &&
		ism_eq_nocase(h->name, "server", 6)) ||
	       (h->name_len == sizeof(ISM_SVC_TIME_NAME) - 1 && ism_stream_own_svc_time(w, st) &&
		ism_eq_nocase(h->name, ISM_SVC_TIME_NAME, h->name_len));
}
/* x-envoy-upstream-service-time of st's response: ms since its request ended
 * (Envoy's router: since the request was complete), or since its head came
 * when the response comes before the body's end; not before a fault delay
 * ended (the router sees the request after the fault filter). */
static inline uint64_t ism_stream_service_ms(const struct ism_wctx *w, const struct ism_stream *st)
{
	uint64_t from = st->req_end_ms ? st->req_end_ms : st->t0_ms;

	return w->now - (st->delay_end_ms > from ? st->delay_end_ms : from);
}

#endif
