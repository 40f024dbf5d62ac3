/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP/1.1 on a client session: what the session (worker/session.c) hands
 * it. Private to worker/. */
#ifndef ISM_WORKER_H1_H
#define ISM_WORKER_H1_H

#include <stdbool.h>
#include <stdint.h>

#include "worker/session.h"

/* The session's preamble is read: the requests (or the HTTP/2 preface) in
 * s->in, then more from the socket. */
void ism_h1_begin(struct ism_wctx *w, struct ism_sess *s);
/* res (> 0) bytes from the client in ring buffer bid at data. */
void ism_h1_recv(struct ism_wctx *w, struct ism_sess *s, char *data, uint32_t res, int bid);
/* The session's send of res bytes completed. */
void ism_h1_sent(struct ism_wctx *w, struct ism_sess *s, int res);
/* The session's deadline passed (also before HTTP: the preamble, TLS). */
void ism_h1_expire(struct ism_wctx *w, struct ism_sess *s);
/* Graceful stop: an idle connection closes after a moment, a busy one after
 * the response in progress. */
void ism_h1_drain(struct ism_wctx *w, struct ism_sess *s);

#endif
