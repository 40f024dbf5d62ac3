/* SPDX-License-Identifier: Apache-2.0 */
/* Types shared by the worker's files, and nothing else: the per-process
 * context, the socket base, buffers and io_uring operation codes. The roles
 * have headers of their own: sock.h (the socket base), session.h (client
 * connections), stream.h (one request and its response), upstream.h (upstream
 * connections and their pool). Private to worker/. */
#ifndef ISM_WORKER_WORKER_T_H
#define ISM_WORKER_WORKER_T_H

#include <liburing.h>
#include <stdbool.h>
#include <poll.h>
#include <stdint.h>

#include "shm/shm.h"
#include "worker/accesslog.h"
#include "worker/http1.h"

#define ISM_BUF_SIZE 16384u
/* A multishot receive ends once it brought this many bytes (the kernel's
 * total-length cap, Linux 6.17; its last read may add one ring buffer): what
 * it reads ahead of its owner stays that small. */
#define ISM_RECV_MSHOT_LIMIT (2u * ISM_BUF_SIZE)
/* The shared receive buffers: one ring per worker, of limits.receiveBuffersPerWorker
 * (a power of two, at most ISM_BUF_COUNT_MAX); private buffers' ids start at
 * ISM_BUF_COUNT_MAX. */
#define ISM_BUF_COUNT_MAX ISM_RECV_BUFFERS_MAX
#define ISM_BGID	  1
#define ISM_MAX_HDRS	  1000
#define ISM_REPLAY_MAX	  (64u * 1024u) /* a request kept whole for a retry, at most */
/* Free private buffers that keep their memory for the next (1 MiB): past a
 * burst of TLS reads, the rest go back to the allocator. */
#define ISM_XBUF_KEEP 64u
/* Submission entries that may wait for the kernel's room (ism_w_sqe): as many
 * as the ring's queue holds, more than one turn prepares. */
#define ISM_SQ_BACKLOG 4096u
/* Client handshake time a loop turn may take, the first step always (about
 * one RSA-2048 signature, a few ECDSA ones): the rest wait for the next turns,
 * so that an open connection waits for a few steps, not for a burst. */
#define ISM_HS_TURN_NS 250000u

/* io_uring operations; the op travels in user_data with the object's slot and
 * generation, so a completion for a recycled slot is recognised. */
enum ism_op {
	ISM_OP_ACCEPT = 1,
	ISM_OP_CRECV, /* client socket: receive */
	ISM_OP_CSEND,
	ISM_OP_UCONNECT,
	ISM_OP_URECV, /* upstream socket: receive */
	ISM_OP_USEND,
	ISM_OP_TICK,
	ISM_OP_SIGNAL,
	ISM_OP_MASTER,
	ISM_OP_CANCEL,
	ISM_OP_RETRY, /* a stream's retry back-off timer */
	ISM_OP_LOGW,  /* an access-log write */
	ISM_OP_CTLS,  /* client: deliver bytes at hand (decrypted TLS, held plaintext) */
	ISM_OP_UTLS,  /* upstream: idem */
	ISM_OP_FILES, /* a registered descriptor installed or removed (failures only) */
};

/* Objects of one kind (sessions, streams, upstream connections), recycled and
 * never freed while the worker runs: a slot's index and generation, which
 * user_data carries, tell its lives apart (worker/sock.c). */
struct ism_slab {
	void **obj;
	uint32_t *gen;	/* the current life of each slot */
	uint32_t *free; /* free slots, a stack */
	uint32_t n, cap, n_free;
};

/* A growable byte buffer for message heads and bytes waiting to be parsed. */
struct ism_buf {
	char *p;
	uint32_t len;
	uint32_t cap;
};

/* One send in progress: either from a ring buffer (bid >= 0), returned when the
 * send completes, or from memory of the sender's (bid < 0). */
struct ism_span {
	const char *p;
	uint32_t len;
	int32_t bid;
};

/* The TLS layer of a socket (worker/tls.c); ssl NULL: plaintext. */
struct ism_xport {
	struct ssl_st *ssl;
	struct ism_buf tx;  /* ciphertext gathering */
	struct ism_buf txs; /* ciphertext being sent */
	struct ism_buf rx;  /* ciphertext received, for the session to read from rx_off */
	uint32_t txs_off;
	uint32_t rx_off;
	uint32_t plain_len;    /* the caller's send, complete once all is sent */
	uint32_t plain_ct;     /* the ciphertext of the caller's send */
	uint8_t raw_recv;      /* socket receive in flight (a multishot counts until its end) */
	uint8_t raw_send;      /* socket send in flight */
	uint8_t want;	       /* the caller waits for plaintext */
	uint8_t queued;	       /* a delivery of what the session holds is queued */
	uint8_t plain_pending; /* the caller's send is not complete yet */
	uint8_t established;   /* handshake done */
	uint8_t stalled;       /* reading waits for the session's own records to go out */
	uint8_t key_updates;   /* KeyUpdates received since the last plaintext */
	uint8_t fin_pending;   /* the write side ends (a FIN) once tx and txs are out */
	uint8_t notified;      /* close_notify written: nothing the session writes after goes */
	/* the first OpenSSL error of a failed handshake; 0: none */
	unsigned long fail_err;
	/* The end a receive brought (ISM_XP_EOF or -errno) while the caller was
	 * not reading: it comes after the plaintext received before it. */
	int end;
};

enum ism_sock_state {
	ISM_SOCK_FREE = 0,
	ISM_SOCK_OPEN,
	ISM_SOCK_CLOSING, /* shut down; the slot is reused once inflight is 0 */
};

/* A socket's receive on the ring (worker/sock.c; under TLS, worker/tls.c too). */
enum ism_sock_rx {
	ISM_RX_SINGLE = 0, /* no multishot: a single receive at most */
	ISM_RX_MULTI,	   /* a multishot receive, armed or waiting for a ring buffer */
	ISM_RX_CANCEL,	   /* the multishot is cancelled; its last completion is to come */
};

/* The socket base of both sides of a proxied exchange: the descriptor, its
 * transport, what is armed on the ring and the send in flight. At most one
 * receive and one send are in flight at a time (flow control by construction:
 * a side is read again only once what was read from it has been written to
 * the other). A multishot receive stays armed across reads; what it brings
 * before the owner asks is held, bounded, so the owner still sees one read
 * per request. Only worker/sock.c touches the ring for it. */
struct ism_sock {
	int fd;
	uint32_t idx; /* slot in its slab: user_data carries it, with gen */
	uint32_t gen;
	uint8_t up;	    /* upstream side (URECV/USEND/UTLS), else client side */
	uint8_t state;	    /* enum ism_sock_state */
	uint8_t recv_armed; /* the owner asked for bytes and has not had them yet */
	uint8_t send_armed;
	uint16_t inflight; /* operations of the ring on this slot (a multishot counts once) */
	uint8_t mshot;	   /* the owner takes multishot receives (HTTP/1.1, HTTP/2) */
	uint8_t rx;	   /* enum ism_sock_rx */
	uint8_t fixed;	   /* fd is also registered with the ring, at index fd */
	uint8_t held_end;  /* the receive's end (held_res) comes after the held bytes */
	int held_res;
	uint32_t held_off;   /* held bytes delivered already */
	struct ism_buf held; /* bytes a multishot brought before the owner asked */
	struct ism_xport x;
	struct ism_span send; /* the send in flight */
	uint32_t sent;	      /* bytes of it already sent */
	uint32_t send_len;    /* the whole send, as its owner asked for it */
	struct ism_buf tx;    /* private bytes being sent: re-framed bodies, parked sends */
};

struct ism_sess;
struct ism_stream;
struct ism_upconn;
struct ism_lb;
struct ism_router_scratch;
struct ism_tls;
struct ism_mirror_ctx;
struct ism_xa_ctx;
struct ism_h2pages;

/* The one per-process context of a worker. */
/* A listener's accepts in this worker. */
struct ism_accept {
	uint8_t armed;	/* accept requests in flight (one, two while one is a kick) */
	uint8_t paused; /* after EMFILE/ENFILE: the tick arms it again */
};

struct ism_wctx {
	struct io_uring ring;
	struct io_uring_buf_ring *br;
	unsigned char *bufs;
	uint32_t br_pending; /* buffers added but not yet published */
	uint32_t buf_avail;  /* ring buffers free (published or about to be) */
	uint32_t n_bufs;     /* ring buffers in all (a power of two) */
	/* receives that found the ring empty, waiting for buffers (user_data) */
	uint64_t *bufwait;
	uint32_t n_bufwait, cap_bufwait;
	/* sockets whose held bytes go to their owners after the batch (user_data) */
	uint64_t *held;
	uint32_t n_held, cap_held;
	/* HTTP/2 sessions and upstream connections whose streams gave them frames
	 * during the batch: framed and sent once, after it (user_data of the
	 * socket, ism_w_kick) */
	uint64_t *h2_kicked;
	uint32_t n_h2_kicked, cap_h2_kicked;
	/* client TLS sessions whose next handshake step waits for a later turn,
	 * in order (user_data, ism_sock_hs_turn): handshakes are the heavy work,
	 * so a turn runs them for ISM_HS_TURN_NS at most, and the light work of
	 * established connections goes out between the steps of a burst */
	uint64_t *hsq;
	uint32_t n_hsq, cap_hsq;
	uint64_t hs_ns; /* time this turn's client handshake steps took */
	/* the endpoints the current table lists (bit per id): a connection to
	 * one it no longer lists is not kept idle (ism_up_table_changed) */
	uint8_t ep_listed[ISM_MAX_ENDPOINTS / 8];
	uint32_t ring_busy; /* waits in a row the kernel refused for want of room */
	/* submission entries the kernel had no room for, in order (ism_w_sqe):
	 * moved to the queue before the loop submits again; room for
	 * ISM_SQ_BACKLOG, whose pages are touched only when used */
	struct io_uring_sqe *sqb;
	uint32_t n_sqb;
	uint64_t sqb_warn_ms; /* when the backlog was last said to fill */
	uint8_t mshot;	      /* the kernel takes multishot receives */
	/* The ring's table of registered descriptors: a socket's operations name
	 * it by index (its fd number) and skip the descriptor lookup; fdnum[i] is
	 * i, what an update installs at index i (worker/sock.c). */
	int *fdnum;
	uint32_t n_fixed; /* its size; 0: none (descriptors as they are) */
	/* per listener: its accepts in flight, whether they pause after
	 * EMFILE/ENFILE (worker/worker.c) */
	struct ism_accept *accepts;
	struct pollfd *accept_pfd; /* the tick's look at the listen queues */
	uint64_t accept_pause_ms;  /* when the current episode began; 0: none */
	uint64_t fd_warn_ms;	   /* when an upstream socket last found no descriptor */
	uint64_t accept_fail_ms;   /* the episode's latest failure */
	uint64_t accept_refused;   /* accept failures in the current episode */
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
	/* page runs of the HTTP/2 sessions' big blocks (worker/h2io.h), made at
	 * start; NULL: none (the blocks come from glibc) */
	struct ism_h2pages *h2pages;
	uint64_t now;
	/* The next connection's id, client or upstream (Envoy's %CONNECTION_ID%,
	 * %UPSTREAM_CONNECTION_ID%, from one counter as Envoy's): this worker's
	 * pid in the top bits, so that workers, and those of a reload, never
	 * share one. */
	uint64_t conn_seq;
	uint64_t rng;
	int64_t date_sec; /* the second date[] is of (ism_w_date) */
	char date[32];	  /* an IMF-fixdate, ISM_HTTP_DATE_LEN bytes */
	int draining;
	int stale; /* a newer generation has other listeners: stay on ours until retired */
	uint64_t drain_deadline;
	uint32_t n_active; /* client connections open */
	/* streams waiting for an upstream connection (http1MaxPendingRequests), FIFO */
	struct ism_stream *wait_head;
	struct ism_stream *wait_tail;
	int wake_waiters; /* a connection was released: retry the queue after this batch */
	/* The earliest stream deadline (or earlier: one since moved or cleared);
	 * UINT64_MAX: none. The loop's wait ends then. */
	uint64_t stream_wake;
	uint64_t stream_scan_ms; /* the tick's last look at every stream */
	/* slabs: objects are recycled, never freed; a slot's gen tells its lives apart */
	struct ism_slab sess;			    /* struct ism_sess */
	struct ism_slab streams;		    /* struct ism_stream */
	struct ism_slab ups;			    /* struct ism_upconn */
	struct ism_upconn *pool[ISM_MAX_ENDPOINTS]; /* idle HTTP/1.1 connections */
	struct ism_upconn *mux[ISM_MAX_ENDPOINTS];  /* HTTP/2 connections */
	struct ism_http_header hdrs[ISM_MAX_HDRS];
	struct ism_http_header uhdrs[ISM_MAX_HDRS];
	/* a route's actions on the request in hand (worker/stream.c): the
	 * rewritten path and query, the original ones */
	struct ism_buf act_path;
	struct ism_buf act_orig;
	/* the fields of a response head the route's actions edited */
	struct ism_http_header *act_hdrs;
	size_t act_cap;
	struct __kernel_timespec tick_ts;
	struct ism_alog alog;
	/* private buffers: decrypted TLS data (ids from ISM_BUF_COUNT_MAX on);
	 * a free one keeps its memory while fewer than ISM_XBUF_KEEP do
	 * (x_kept), else its slot alone stays (xbufs[i] NULL) */
	char **xbufs;
	uint32_t *xfree;
	uint32_t n_xbufs, n_xfree, cap_xbufs, x_kept;
	struct ism_tls *tls;	       /* TLS contexts (worker/tls.c) */
	struct ism_mirror_ctx *mirror; /* request mirroring (worker/mirror.c); NULL: unused */
	struct ism_xa_ctx *xa;	       /* external authorization (worker/extauthz.c); NULL */
	/* The key sets of the table's JWT providers (worker/authn.c), parsed
	 * when the table came: jwks[i] is table->jwt.p[i]'s. */
	struct ism_jwks *jwks;
	uint32_t n_jwks;
	char sigbuf[128];
	char masterbuf[64];
};

#endif
