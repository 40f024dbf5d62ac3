/* SPDX-License-Identifier: Apache-2.0 */
/* The worker's ring (worker/worker.c): submission entries, the shared receive
 * buffers and the private ones, and the per-process random numbers. Private to
 * worker/. */
#ifndef ISM_WORKER_RING_H
#define ISM_WORKER_RING_H

#include <stdbool.h>
#include <stdint.h>

#include <liburing.h>

#include "worker/worker-t.h"

/* A completion's user_data: the operation, the slot's index and generation. */
static inline uint64_t ism_ud(enum ism_op op, uint32_t idx, uint32_t gen)
{
	return ((uint64_t)op << 56) | ((uint64_t)(idx & 0xffffff) << 32) | gen;
}

/* A submission entry; the queue is flushed to make room when full, and an
 * entry the kernel has no room for waits in the worker's backlog. */
struct io_uring_sqe *ism_w_sqe(struct ism_wctx *w);
/* The backlog's entries to the submission queue, in order, submitting as the
 * queue fills; what the kernel still refuses waits for the next turn. */
void ism_w_sqb_move(struct ism_wctx *w);
/* Whether a warning of a kind last given at *last_ms may be given now (at most
 * once a second); if so, now is its time. */
static inline bool ism_w_warn_due(uint64_t *last_ms, uint64_t now)
{
	if (*last_ms != 0 && now - *last_ms < 1000)
		return false;
	*last_ms = now;
	return true;
}
/* A receive into a ring buffer on socket s, completing with user_data ud; a
 * multishot one completes once per read (IORING_CQE_F_MORE) until it ends. */
void ism_w_recv(struct ism_wctx *w, const struct ism_sock *s, uint64_t ud, bool multishot);
/* An entry prepared on s->fd names it as s is open: registered or not. */
static inline void ism_w_sqe_sock(struct io_uring_sqe *sqe, const struct ism_sock *s)
{
	if (s->fixed)
		sqe->flags |= IOSQE_FIXED_FILE;
}
/* Gives buffer bid back: to the shared ring, or to the private free list. */
void ism_w_buf_recycle(struct ism_wctx *w, int bid);
/* A private buffer (id >= ISM_BUF_COUNT_MAX) of ISM_BUF_SIZE bytes, or -1. */
int ism_w_xbuf_get(struct ism_wctx *w);
char *ism_w_buf_addr(struct ism_wctx *w, int bid);
uint32_t ism_w_rand(struct ism_wctx *w);
/* The Date of an answer isthmus writes or completes (RFC 9110 6.6.1: a proxy
 * adds one to a response without it, as Envoy's connection manager does):
 * now, as ISM_HTTP_DATE_LEN bytes, formatted once a second. */
const char *ism_w_date(struct ism_wctx *w);
/* Puts an HTTP/2 session or upstream connection (its socket's user_data: op
 * ISM_OP_CRECV or ISM_OP_URECV) on the list flushed after the batch. */
void ism_w_kick(struct ism_wctx *w, uint64_t ud);
/* Hands a completion (op, slot idx and gen, res, the CQE's flags) to the
 * object it belongs to: a session, a stream or an upstream connection. */
void ism_w_dispatch(struct ism_wctx *w, enum ism_op op, uint32_t idx, uint32_t gen, int res,
		    uint32_t flags);

#endif
