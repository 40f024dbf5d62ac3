/* SPDX-License-Identifier: Apache-2.0 */
/* Private to worker/: the worker's per-process context, connection objects and
 * the helpers shared by the event loop (worker.c) and the proxy logic (proxy.c). */
#ifndef ISM_WORKER_PROXY_H
#define ISM_WORKER_PROXY_H

#include <liburing.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

#include "shm/shm.h"
#include "worker/balancer.h"
#include "worker/accesslog.h"
#include "worker/http1.h"
#include "worker/policy.h"
#include "worker/router.h"

#define ISM_BUF_SIZE  16384u
#define ISM_BUF_COUNT 1024u /* power of two; one ring per worker */
#define ISM_BGID      1
#define ISM_MAX_HDRS  1000

/* io_uring operations; the op travels in user_data with the object's slot and
 * generation, so a completion for a recycled slot is recognised. */
enum ism_op {
	ISM_OP_ACCEPT = 1,
	ISM_OP_CRECV,
	ISM_OP_CSEND,
	ISM_OP_UCONNECT,
	ISM_OP_URECV,
	ISM_OP_USEND,
	ISM_OP_TICK,
	ISM_OP_SIGNAL,
	ISM_OP_MASTER,
	ISM_OP_CANCEL,
	ISM_OP_RETRY, /* a retry's back-off timer */
	ISM_OP_LOGW,  /* an access-log write */
	ISM_OP_CTLS,  /* client TLS: deliver plaintext already decrypted */
	ISM_OP_UTLS,  /* upstream TLS: idem */
};

/* A growable byte buffer for message heads and bytes waiting to be parsed. */
struct ism_buf {
	char *p;
	uint32_t len;
	uint32_t cap;
};

/* Growth bounded by limit; 0 or -ENOMEM/-E2BIG. */
int ism_buf_reserve(struct ism_buf *b, uint32_t extra, uint32_t limit);
int ism_buf_append(struct ism_buf *b, const void *data, uint32_t len, uint32_t limit);
void ism_buf_consume(struct ism_buf *b, uint32_t n);
void ism_buf_free(struct ism_buf *b);

/* One send in progress: either from a ring buffer (bid >= 0), returned when the
 * send completes, or from an ism_buf (bid < 0). */
struct ism_span {
	const char *p;
	uint32_t len;
	int32_t bid;
};

enum ism_body_mode {
	ISM_BODY_NONE = 0,
	ISM_BODY_CL,
	ISM_BODY_CHUNKED,
	ISM_BODY_CLOSE, /* response delimited by the upstream closing */
};

/* A message body being relayed, by how it is delimited where it comes from.
 * What the next hop gets is re-framed from what was parsed: a length-delimited
 * body goes as it is (its length was sent in the head), a chunked one is
 * decoded and re-chunked (or sent bare to an HTTP/1.0 client, which then sees
 * the end by the close), so the sender's framing never reaches the receiver. */
struct ism_body {
	uint8_t mode;	       /* enum ism_body_mode */
	uint8_t bare;	       /* chunked in, data only out (HTTP/1.0 client) */
	uint64_t remaining;    /* ISM_BODY_CL: bytes still expected */
	struct ism_chunked ch; /* ISM_BODY_CHUNKED */
};

enum ism_cstate {
	ISM_C_FREE = 0,
	ISM_C_IDLE,  /* keep-alive, waiting for a request's first byte */
	ISM_C_HEAD,  /* reading a request head */
	ISM_C_PROXY, /* request dispatched to an upstream */
	ISM_C_LOCAL, /* sending a response made here (error, or no route) */
};

enum ism_deadline {
	ISM_DL_NONE = 0,
	ISM_DL_HEADER,	 /* 408 */
	ISM_DL_IDLE,	 /* close quietly */
	ISM_DL_CONNECT,	 /* 503 */
	ISM_DL_RESPONSE, /* 504 */
	ISM_DL_SEND,	 /* client not reading: close */
	ISM_DL_DRAIN,
};

/* The TLS layer of one side of a connection (worker/tls.c); ssl NULL: plaintext. */
struct ism_xport {
	struct ssl_st *ssl;
	struct ism_buf tx;  /* ciphertext gathering */
	struct ism_buf txs; /* ciphertext being sent */
	uint32_t txs_off;
	uint32_t plain_len;    /* the caller's send, complete once all is sent */
	uint8_t raw_recv;      /* socket receive in flight */
	uint8_t raw_send;      /* socket send in flight */
	uint8_t want;	       /* the caller waits for plaintext */
	uint8_t nop;	       /* a delivery NOP is in flight */
	uint8_t plain_pending; /* the caller's send is not complete yet */
	uint8_t established;   /* handshake done */
};

/* What a client connection still reads before HTTP (enum values of pre). */
enum ism_pre {
	ISM_PRE_NONE = 0,
	ISM_PRE_SNIFF, /* PERMISSIVE: TLS or plaintext, told by the first bytes */
	ISM_PRE_HELLO, /* HTTPS: the ClientHello, whose SNI picks the server */
	ISM_PRE_MESH,  /* mutual TLS with the mesh identity (STRICT, or PERMISSIVE once TLS) */
};

struct ism_upconn;

struct ism_conn {
	uint32_t idx;
	uint32_t gen;
	int fd;
	uint8_t state; /* enum ism_cstate */
	uint8_t closing;
	uint8_t recv_armed;
	uint8_t send_armed;
	uint8_t keepalive; /* this exchange ends with the connection kept */
	uint8_t http10;
	uint8_t is_head;
	uint8_t req_done;     /* request body fully read from the client */
	uint8_t req_streamed; /* some body bytes went out after the head */
	uint8_t resp_head_done;
	uint8_t resp_started; /* bytes of the final response sent to the client */
	uint8_t resp_done;
	uint8_t close_after; /* close once the send in progress completes */
	uint8_t deadline_kind;
	uint16_t listener;
	uint16_t inflight;
	uint64_t deadline;
	uint64_t route_deadline; /* VirtualService timeout of this exchange; 0: none */
	uint64_t req_seen;	 /* request body bytes forwarded so far */
	struct ism_body req;
	struct ism_body resp;
	struct ism_buf in;  /* client bytes not yet consumed */
	struct ism_buf out; /* heads and local responses to the client */
	struct ism_buf tx;  /* response body bytes re-framed, or parked (see ism_park) */
	struct ism_span send;
	struct ism_upconn *up;
	uint32_t ep_id; /* endpoint of the attempt in progress (in-flight count held); UINT32_MAX */
	uint32_t prev_ep; /* endpoint of the latest attempt */
	uint32_t cluster; /* cluster index in the table of generation table_gen */
	uint64_t table_gen;
	struct ism_retry_state rs;
	uint8_t retry_pending;	/* a back-off timer is in flight */
	uint8_t waiting;	/* queued for an upstream connection (maxConnections reached) */
	uint64_t wait_deadline; /* when the wait for a connection ends (503); 0: not waiting */
	struct ism_conn *wait_next;
	struct ism_conn *wait_prev;
	uint8_t retry_counted; /* counted in the cluster's retries_active */
	uint8_t od_pending;    /* a 2xx-4xx response streams: outlier outcome told at its end */
	uint8_t has_hash;
	uint64_t hash;	       /* consistent-hash key */
	char *set_cookie;      /* issued hash cookie, added to the response */
	struct ism_buf replay; /* the request head (whole request) kept for a retry */
	struct __kernel_timespec retry_ts;
	struct ism_alog_req *log_req; /* access log: the request's part, while an exchange runs */
	const char *flags; /* access log: reason code of a failure (Envoy-style), or NULL */
	uint64_t t0_ms;	   /* monotonic: when the request head was complete */
	struct ism_counters *lis_stats;	  /* of the table of table_gen */
	struct ism_counters *route_stats; /* idem; NULL: no route */
	uint64_t req_bytes_in;
	uint64_t req_bytes_out;
	uint32_t connect_timeout_ms;
	uint32_t response_timeout_ms;
	uint32_t pool_idle_ms;
	uint16_t status;
	char peer[INET6_ADDRSTRLEN];
	/* The exchange's client by gatewayTopology.numTrustedProxies, when the
	 * X-Forwarded-For the client sent names it; "" otherwise (the peer). */
	char xff_client[INET6_ADDRSTRLEN];
	struct ism_xport x;
	uint8_t pre_pp;	  /* a PROXY protocol header is still expected */
	uint8_t pre;	  /* enum ism_pre: what TLS work precedes HTTP */
	char *sni;	  /* the ClientHello's server name, NULL when none */
	char up_sni[256]; /* server name for upstream TLS: the request's host */
	uint16_t peer_port;
	struct ism_conn *next_free;
};

enum ism_ustate {
	ISM_U_FREE = 0,
	ISM_U_CONNECTING,
	ISM_U_BUSY, /* serving an exchange */
	ISM_U_IDLE, /* in the pool */
};

struct ism_upconn {
	uint32_t idx;
	uint32_t gen;
	int fd;
	uint8_t state; /* enum ism_ustate */
	uint8_t closing;
	uint8_t recv_armed;
	uint8_t send_armed;
	uint8_t reused;	   /* taken from the pool for this exchange */
	uint8_t got_bytes; /* response bytes seen in this exchange */
	uint8_t reusable;
	uint16_t inflight;
	uint32_t ep_id;
	uint32_t requests; /* requests sent on this connection */
	uint64_t idle_deadline;
	struct sockaddr_storage addr;
	socklen_t addrlen;
	struct ism_conn *conn;
	struct ism_buf in;  /* response head bytes */
	struct ism_buf out; /* request head (kept until the response starts, for a replay) */
	struct ism_buf tx;  /* request body bytes re-framed, or parked */
	struct ism_span send;
	struct ism_xport x;
	uint64_t tls_fp; /* TLS configuration it was made with; 0: plaintext */
	struct ism_upconn *pool_next;
	struct ism_upconn *pool_prev;
	struct ism_upconn *next_free;
};

/* The one per-process context of a worker. */
struct ism_wctx {
	struct io_uring ring;
	struct io_uring_buf_ring *br;
	unsigned char *bufs;
	uint32_t br_pending; /* buffers added but not yet published */
	uint32_t buf_avail;  /* ring buffers free (published or about to be) */
	/* receives that found the ring empty, waiting for buffers (user_data) */
	uint64_t *bufwait;
	uint32_t n_bufwait, cap_bufwait;
	/* per listener: 1 while its accepts pause after EMFILE/ENFILE */
	uint8_t *accept_paused;
	uint64_t accept_pause_ms; /* when the current episode began; 0: none */
	uint64_t accept_fail_ms;  /* the episode's latest failure */
	uint64_t accept_refused;  /* accept failures in the current episode */
	struct ism_shm *shm;
	struct ism_worker_slot *slot;
	struct ism_worker_stats *st;
	int index;
	const int *listen_fds;
	int n_listen;
	int master_fd;
	int notify_fd;
	int signal_fd;
	const struct ism_table *table;
	struct ism_lb *lb;
	struct ism_router_scratch *rs;
	uint64_t now;
	uint64_t rng;
	int draining;
	int stale; /* a newer generation has other listeners: stay on ours until retired */
	uint64_t drain_deadline;
	uint32_t n_active;
	/* requests waiting for an upstream connection (http1MaxPendingRequests), FIFO */
	struct ism_conn *wait_head;
	struct ism_conn *wait_tail;
	int wake_waiters; /* a connection was released: retry the queue after this batch */
	/* connection slabs */
	struct ism_conn **conns;
	uint32_t n_conns, cap_conns;
	struct ism_conn *free_conns;
	struct ism_upconn **ups;
	uint32_t n_ups, cap_ups;
	struct ism_upconn *free_ups;
	struct ism_upconn *pool[ISM_MAX_ENDPOINTS];
	struct ism_http_header hdrs[ISM_MAX_HDRS];
	struct ism_http_header uhdrs[ISM_MAX_HDRS];
	struct __kernel_timespec tick_ts;
	struct ism_alog alog;
	/* private buffers: decrypted TLS data (ids from ISM_BUF_COUNT on) */
	char **xbufs;
	uint32_t *xfree;
	uint32_t n_xbufs, n_xfree, cap_xbufs;
	struct ism_tls *tls; /* TLS contexts (worker/tls.c) */
	char sigbuf[128];
	char masterbuf[64];
};

static inline uint64_t ism_ud(enum ism_op op, uint32_t idx, uint32_t gen)
{
	return ((uint64_t)op << 56) | ((uint64_t)(idx & 0xffffff) << 32) | gen;
}

/* Whether buffer id bid is one of the shared ring's (not a private one). */
static inline bool ism_w_buf_shared(int bid)
{
	return bid >= 0 && (uint32_t)bid < ISM_BUF_COUNT;
}

/* worker.c: submission helpers */
struct io_uring_sqe *ism_w_sqe(struct ism_wctx *w);
/* A receive into a ring buffer on fd, completing with user_data ud. */
void ism_w_recv(struct ism_wctx *w, int fd, uint64_t ud);
void ism_w_buf_recycle(struct ism_wctx *w, int bid);
int ism_w_xbuf_get(struct ism_wctx *w);
char *ism_w_buf_addr(struct ism_wctx *w, int bid);
uint32_t ism_w_rand(struct ism_wctx *w);

/* proxy.c: the connection state machines */
void ism_proxy_accepted(struct ism_wctx *w, int fd, int listener);
void ism_proxy_complete(struct ism_wctx *w, enum ism_op op, uint32_t idx, uint32_t gen, int res,
			uint32_t flags);
void ism_proxy_tick(struct ism_wctx *w);
void ism_proxy_drain(struct ism_wctx *w);
void ism_proxy_table_changed(struct ism_wctx *w);
void ism_proxy_free_all(struct ism_wctx *w);
/* After each batch of completions: serves queued requests if a connection was released. */
void ism_proxy_after_batch(struct ism_wctx *w);
/* Receives waiting for a ring buffer (ENOBUFS) go again, as many as there are
 * free buffers; those of connections closed meanwhile end. */
void ism_proxy_resume_recvs(struct ism_wctx *w);

#endif
