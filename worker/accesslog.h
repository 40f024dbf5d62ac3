/* SPDX-License-Identifier: Apache-2.0 */
/* Private to worker/: the access log. One line per exchange, rendered as JSON
 * or from the generation's compiled text template, to a file or standard
 * output or to syslog, so that logging never blocks the loop:
 *  - file, stdout: appended to a per-worker buffer and written by io_uring; two
 *    64 KiB buffers, one being written while the other fills; when both are
 *    full, lines are dropped and counted. Reopened on SIGUSR1 (logrotate).
 *  - syslog: one RFC 3164 datagram per line, sent with MSG_DONTWAIT on a
 *    non-blocking socket; a full or absent receiver drops the line (counted).
 *    The socket is made anew on SIGUSR1.
 * Dropped lines are counted in the worker's shared stats (access_log_dropped). */
#ifndef ISM_WORKER_ACCESSLOG_H
#define ISM_WORKER_ACCESSLOG_H

#include <netinet/in.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "shm/table-t.h"
#include "worker/http1.h"

#define ISM_ALOG_BUF	 (64u * 1024u)
#define ISM_ALOG_LINE	 (16u * 1024u) /* a longer line is cut */
#define ISM_ALOG_VALUE	 1024u	       /* a longer value (header, route) is cut */
#define ISM_ALOG_SYSHEAD 128u	       /* room for the syslog header before a line */

/* What a request gives its line, captured when its head is parsed (the head's
 * bytes are gone by the end of the exchange). One allocation. */
struct ism_alog_req {
	uint64_t start_ms;   /* wall clock, the complete request head */
	int16_t http_minor;  /* 0 or 1; -1: the request could not be parsed */
	uint8_t http2;	     /* HTTP/2 (http_minor is 1 then) */
	char request_id[37]; /* made by the proxy when the client sent none; "" */
	char route[256];     /* route name; "" before routing or without a route */
	/* the local address of the upstream connection that answered, when
	 * the format shows it (ism_alog.wants_up_local); "" otherwise */
	char up_local[INET6_ADDRSTRLEN];
	uint16_t up_local_port;
	uint64_t up_conn_id; /* the id of that connection (ism_upconn.conn_id); 0: none */
	/* The values of the format's %RESP()% and %TRAILER()% operators, by
	 * slot (ism_alog_capture_fields), in resp_data and trl_data (malloc'd; NULL:
	 * none) */
	char *resp_data;
	char *trl_data;
	const char *resp_val[ISM_ALOG_RESP_MAX];
	uint16_t resp_len[ISM_ALOG_RESP_MAX];
	const char *val[ISM_ALOG_H_ALL]; /* into data; NULL: absent or not captured */
	uint16_t len[ISM_ALOG_H_ALL];
	char data[];
};

/* One exchange as the renderers see it. */
struct ism_alog_rec {
	const struct ism_alog_req *req;
	uint64_t duration_ms;
	uint64_t bytes_in;     /* body bytes from the client (a tunnel's bytes) */
	uint64_t bytes_out;    /* and to it */
	const uint64_t *meter; /* the stream's byte meters, by enum ism_meter */
	uint32_t status;       /* 0: no response */
	uint32_t attempts;
	const char *flags;    /* Envoy-style response flags; NULL: none */
	const char *client;   /* client IP address (by numTrustedProxies, else the peer) */
	const char *peer;     /* the connection's peer, appended to X-Forwarded-For; NULL: client */
	uint16_t client_port; /* 0: unknown */
	const char *upstream; /* "<service>|<address>:<port>" of the last attempt, or NULL */
	const char *cluster;  /* cluster name, or NULL */
	const char *sni;      /* the TLS client's server name, or NULL */
	const char *details;  /* Envoy's response code details, or NULL */
	/* Envoy's connection termination details (a TCP filter's denial), or NULL */
	const char *termination;
	/* Envoy's upstream transport failure reason (ism_up_failure_text), or NULL */
	const char *transport;
	const char *local; /* the address the client reached (text), when the format
			      shows it (ism_alog.wants_local); NULL: unknown */
	uint16_t local_port;
	const char *up_protocol; /* HTTP/1.1 or HTTP/2 of the last attempt; NULL: none */
	uint64_t conn_id;	 /* the client connection's id (ism_sess.conn_id) */
	/* ms from the request head to its last byte, to its last byte sent
	 * upstream, to the upstream's response head, and from that to the
	 * response's last byte out; -1: not known */
	int64_t req_ms, req_tx_ms, resp_ms, resp_tx_ms;
	/* ms from the client connection's accept to the end of its TLS
	 * handshake; -1: none (plaintext, TLS passed through) */
	int64_t handshake_ms;
	/* A gRPC request's status (ism_logfilter_grpc_status, any code) when
	 * the format shows it (ism_alog.wants_grpc); -2: none, not gRPC */
	int64_t grpc_status;
	/* The values of the header values' operators the format shows
	 * (ism_alog.hv_mask), by kind; NULL: absent */
	const char *hv[ISM_HV_KINDS];
};

/* Writes the line of r (no newline) into out (cap > 0 bytes); returns its length
 * (cut at cap). */
typedef size_t (*ism_alog_render_cb)(const struct ism_alog_conf *conf, const struct ism_alog_rec *r,
				     char *out, size_t cap);

struct ism_alog {
	int fd;	      /* file, stdout or syslog socket; -1: no access log */
	uint8_t dest; /* enum ism_alog_dest */
	char path[256];
	_Atomic uint64_t *dropped; /* the worker's shared counter */
	/* the generation's format, chosen once per generation */
	const struct ism_alog_conf *conf;
	ism_alog_render_cb render;
	uint32_t headers; /* (1 << enum ism_alog_hdr, or named slot) the format shows */
	/* the names of the format's named request fields, by slot - ISM_ALOG_H_COUNT */
	struct ism_str named[ISM_ALOG_NAMED_MAX];
	bool wants_local;    /* the format shows the address the client reached */
	bool wants_up_local; /* ... or its upstream connection's own */
	bool wants_resp;     /* the format has %RESP()% operators */
	bool wants_trailers; /* the format has %TRAILER()% operators */
	bool wants_grpc;     /* ... %GRPC_STATUS% ones (the response's fields are kept) */
	/* the filter reads the response's fields, its trailers (response.headers,
	 * response.trailers; both for response.grpc_status): kept for it */
	bool filter_resp;
	bool filter_trailers;
	uint64_t hv_mask;  /* (1 << enum ism_hval_kind) the format shows */
	char *line;	   /* ISM_ALOG_SYSHEAD + line_cap bytes */
	uint32_t line_cap; /* the longest line of the format (ism_alog_use) */
	/* file and stdout */
	char *buf[2];
	uint32_t len[2];
	uint32_t off;  /* bytes of the buffer in flight already written */
	int filling;   /* buffer lines go into */
	int in_flight; /* a write of buf[!filling] is in progress */
	/* syslog */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	uint8_t pri; /* facility * 8 + 6 (info) */
	char tag[33];
	char host[64]; /* sent over UDP only: a local socket's receiver knows it */
	int failing;   /* sends or writes fail (reported once until one succeeds) */
	time_t head_sec;
	uint32_t head_len;
	char head[ISM_ALOG_SYSHEAD]; /* "<PRI>Mmm dd hh:mm:ss [host ]tag[pid]: ", for head_sec */
};

struct ism_wctx;

/* %PROTOCOL% of request q: HTTP/1.0, HTTP/1.1, HTTP/2; NULL when it could not
 * be parsed. */
const char *ism_alog_protocol(const struct ism_alog_req *q);

/* Opens the destination conf names (nothing when it is ISM_ALOG_OFF) and takes
 * conf's format. dropped counts the lines lost. Returns 0 or -errno. */
int ism_alog_open(struct ism_alog *l, const struct ism_alog_conf *conf, _Atomic uint64_t *dropped);
/* Takes the format of a new generation (conf stays valid while it is in use):
 * its renderer and the headers to capture. The destination is kept (a change
 * of destination starts new workers). */
void ism_alog_use(struct ism_alog *l, const struct ism_alog_conf *conf);
/* Reopens the file (after logrotate moved it) or makes a new syslog socket;
 * standard output is kept. */
void ism_alog_reopen(struct ism_alog *l);
void ism_alog_close(struct ism_alog *l);

static inline void ism_alog_drop(struct ism_alog *l, uint64_t lines)
{
	atomic_fetch_add_explicit(l->dropped, lines, memory_order_relaxed);
}

/* The lines of buffered text p (n bytes) lost: each counted. */
static inline void ism_alog_drop_text(struct ism_alog *l, const char *p, size_t n)
{
	uint64_t lines = 0;

	for (const char *end = p + n; (p = memchr(p, '\n', (size_t)(end - p))) != NULL; p++)
		lines++;
	ism_alog_drop(l, lines);
}

/* The renderer of conf's format: JSON, or conf's text template. */
ism_alog_render_cb ism_alog_renderer(const struct ism_alog_conf *conf);
/* The headers (1 << enum ism_alog_hdr) that conf's format shows. */
uint32_t ism_alog_headers(const struct ism_alog_conf *conf);
/* Copies what the line will show of req (NULL: it could not be parsed): the
 * headers in mask (named ones by their names in named[], NULL: none), each
 * cut at ISM_ALOG_VALUE bytes. NULL when out of memory; the caller frees it
 * (ism_alog_req_free). */
struct ism_alog_req *ism_alog_capture(uint32_t mask, const struct ism_str *named,
				      const struct ism_http_req *req, uint64_t start_ms);
/* Captures *q again from req as a route's actions changed it (its :path and
 * :authority are what the upstream gets; its fields as the route's header
 * edits hdrs (NULL: none) leave them) and with orig (NULL: none) as
 * x-envoy-original-path, keeping its start, request id and route. 0, or
 * -ENOMEM (*q is kept as it was). */
int ism_alog_rewritten(struct ism_alog_req **q, uint32_t mask, const struct ism_str *named,
		       const struct ism_http_req *req, const struct ism_hdr_edits *hdrs,
		       const char *orig, size_t orig_len);

/* The values of l's %RESP()% operators (field ISM_ALOG_F_RESP) in the
 * response head the client gets, or of its %TRAILER()% operators
 * (ISM_ALOG_F_TRAILER) in the response's trailers: the fields h[0, n), and
 * own[0, n_own) (those isthmus adds: Server, Date,
 * x-envoy-upstream-service-time) first; each cut at ISM_ALOG_VALUE bytes.
 * Once per field kind; without memory the line shows them absent. */
void ism_alog_capture_fields(const struct ism_alog *l, struct ism_alog_req *q, uint8_t field,
			     const struct ism_http_header *h, size_t n,
			     const struct ism_http_header *own, size_t n_own);
/* Frees q (NULL: nothing) and what it holds. */
void ism_alog_req_free(struct ism_alog_req *q);

/* Renders r and hands the line to the destination. */
void ism_alog_log(struct ism_wctx *w, const struct ism_alog_rec *r);

/* Response flags an exchange gathers beside its reason code (st->flags). */
enum ism_alog_flag {
	ISM_ALOG_DI = 1u << 0,	/* a route's fault delayed it */
	ISM_ALOG_FI = 1u << 1,	/* a route's fault aborted it */
	ISM_ALOG_URX = 1u << 2, /* a retry its policy wanted, past its attempts */
	ISM_ALOG_UO = 1u << 3,	/* a retry the cluster's maxRetries refused */
};

/* The response flags of an exchange: flags (a reason code, or several
 * comma-separated; NULL: none) with those of add (enum ism_alog_flag bits), in
 * the order Envoy's access log prints them. flags itself where add is 0, else
 * written into buf. */
const char *ism_alog_flags(uint8_t add, const char *flags, char *buf, size_t len);
/* The flags of a list as Envoy's response-flag bits (its StreamInfo's
 * legacy mask, CEL's response.flags): bit i for the i-th flag in the order
 * its access log prints them (LH 0x1, UH 0x2, ... DF 0x4000000). */
uint64_t ism_alog_flag_bits(const char *flags);
/* ip:port (an IPv6 address in brackets) into v (cap bytes), as Envoy writes
 * an address; its length, 0 without ip. */
size_t ism_alog_addr_port(char *v, size_t cap, const char *ip, uint16_t port);

/* Starts writing what has accumulated, if no write is in flight. */
void ism_alog_flush(struct ism_wctx *w);
/* The completion of an access-log write. */
void ism_alog_written(struct ism_wctx *w, int res);

#endif
