/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP/2 client sessions (RFC 9113): libnghttp2 is the frame codec, fed from
 * the session's receives and writing into its buffers; each request is a
 * stream (worker/stream.h) like an HTTP/1.1 one. The session (worker/h1.c)
 * switches to HTTP/2 on the h2c preface or ALPN h2, then hands its socket's
 * events here. Private to worker/. */
#ifndef ISM_WORKER_H2_H
#define ISM_WORKER_H2_H

#include <stdbool.h>
#include <stdint.h>

#include "worker/session.h"

/* The 24 bytes an HTTP/2 client begins with (RFC 9113 3.4). */
#define ISM_H2_PREFACE	   "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#define ISM_H2_PREFACE_LEN 24u

/* Session s speaks HTTP/2 from now on; what it holds in s->in (the preface
 * onward) is read first. 0, or -ENOMEM (the session closes). */
int ism_h2_start(struct ism_wctx *w, struct ism_sess *s);
/* len bytes from the client. */
void ism_h2_recv(struct ism_wctx *w, struct ism_sess *s, const char *p, uint32_t len);
/* The session's send of res bytes completed. */
void ism_h2_sent(struct ism_wctx *w, struct ism_sess *s, int res);
/* The session's deadline passed (idle without streams, or a send stalled). */
void ism_h2_expire(struct ism_wctx *w, struct ism_sess *s);
/* Graceful stop or reload: GOAWAY; open streams finish, new ones are refused. */
void ism_h2_drain(struct ism_wctx *w, struct ism_sess *s);
/* The connection goes: its streams end with it. Nothing when s is not HTTP/2. */
void ism_h2_close(struct ism_wctx *w, struct ism_sess *s);
/* Its socket's last operation ended (or the worker exits): the codec's state
 * and the buffers a send may have used are freed. */
void ism_h2_free(struct ism_sess *s);

#endif
