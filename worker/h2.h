/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP/2 client sessions (RFC 9113): libnghttp2 is the frame codec, fed from
 * the session's receives and writing into its buffers; each request is a
 * stream (worker/stream.h) like an HTTP/1.1 one. The session (worker/h1.c)
 * switches to HTTP/2 on the h2c preface or ALPN h2, then hands its socket's
 * events here. Private to worker/. */
#ifndef ISM_WORKER_H2_H
#define ISM_WORKER_H2_H

#include <stdbool.h>
#include <nghttp2/nghttp2.h>
#include <stdint.h>

#include "worker/http1.h"
#include "worker/session.h"

struct ism_limits;

/* The 24 bytes an HTTP/2 client begins with (RFC 9113 3.4). */
#define ISM_H2_PREFACE	   "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define ISM_H2_PREFACE_LEN 24u

/* Session s speaks HTTP/2 from now on; what it holds in s->in (the preface
 * onward) is read first. 0, or -ENOMEM (the session closes). */
int ism_h2_start(struct ism_wctx *w, struct ism_sess *s);
/* len bytes from the client. */
void ism_h2_recv(struct ism_wctx *w, struct ism_sess *s, const char *p, uint32_t len);
/* After the batch: the session of ud (its socket's user_data), which its
 * streams gave frames during the batch, frames and sends them (worker.c). */
void ism_h2_kicked(struct ism_wctx *w, uint64_t ud);
/* The session's send of res bytes completed. */
void ism_h2_sent(struct ism_wctx *w, struct ism_sess *s, int res);
/* The session's deadline passed (idle without streams, a send stalled, or a
 * request's header block unfinished). */
void ism_h2_expire(struct ism_wctx *w, struct ism_sess *s);
/* Graceful stop or reload: GOAWAY; open streams finish, new ones are refused. */
void ism_h2_drain(struct ism_wctx *w, struct ism_sess *s);
/* The connection goes: its streams end with it. Nothing when s is not HTTP/2. */
void ism_h2_close(struct ism_wctx *w, struct ism_sess *s);
/* Every tick (worker/session.c): a stream whose response waited on the
 * client's flow-control window for timeouts.idle is reset (its upstream is
 * let go), and a connection whose send made no progress for as long closes. */
void ism_h2_tick(struct ism_wctx *w, struct ism_sess *s);
/* Its socket's last operation ended (or the worker exits): the codec's state
 * and the buffers a send may have used are freed. */
void ism_h2_free(struct ism_sess *s);

/* The pure parts of a request's header block, shared with fuzz/fuzz_h2.c. */

/* A header block as nghttp2 hands it over: name NUL value NUL ... */
struct ism_h2head {
	struct ism_buf b;
	uint32_t n;
	uint32_t bytes; /* RFC 9113 6.5.2's size: name + value + 32 per field */
	uint8_t over;	/* past the limits: b is freed and stays empty */
	uint8_t grpc;	/* a gRPC content type came, kept past the limits */
	uint8_t head;	/* :method HEAD came, likewise (its answer has no body) */
};

/* Adds a field (nghttp2 validated it); -ENOMEM, else 0. Past the header list
 * limit or the field count, the block is marked over and its bytes dropped. */
int ism_h2_head_add(const struct ism_limits *lim, struct ism_h2head *hd, const uint8_t *name,
		    size_t nl, const uint8_t *value, size_t vl);
/* The request a complete header block makes (fields point into hd->b and
 * cookie, where crumbs are joined); end: END_STREAM came with it. 0, or the
 * status it is refused with and *why. */
int ism_h2_parse_head(const struct ism_limits *lim, const struct ism_h2head *hd,
		      struct ism_http_req *req, struct ism_buf *cookie, bool end, const char **why);
/* The nghttp2 server option and SETTINGS every client session gets. */
const nghttp2_option *ism_h2_option(void);
size_t ism_h2_settings(const struct ism_limits *lim, nghttp2_settings_entry *iv);
#define ISM_H2_N_SETTINGS 3

#endif
