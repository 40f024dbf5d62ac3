/* SPDX-License-Identifier: Apache-2.0 */
/* The socket base (struct ism_sock, worker/worker-t.h) of client and upstream
 * connections alike: receives into the shared ring, sends, the TLS transport
 * between them, stalled sends moved out of the shared ring, and the queue of
 * receives waiting for a ring buffer; plus the byte buffers and slabs the roles
 * use. The owner of a socket (a session or an upstream connection) embeds it
 * as its first member and reacts to the events ism_sock_complete returns.
 * Private to worker/; the worker's process only. */
#ifndef ISM_WORKER_SOCK_H
#define ISM_WORKER_SOCK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "worker/worker-t.h"

/* ---- byte buffers ---- */

/* ism_buf_reserve's growth, when b has less room than extra more bytes. */
int ism_buf_grow(struct ism_buf *b, uint32_t extra, uint32_t limit);
/* Room for extra more bytes, growth bounded by limit; 0 or -ENOMEM/-E2BIG.
 * Inline while the room is there (the hot path's writes, a few dozen a
 * request). */
static inline int ism_buf_reserve(struct ism_buf *b, uint32_t extra, uint32_t limit)
{
	return b->len + extra <= b->cap ? 0 : ism_buf_grow(b, extra, limit);
}
static inline int ism_buf_append(struct ism_buf *b, const void *data, uint32_t len, uint32_t limit)
{
	int ret = ism_buf_reserve(b, len, limit);

	if (ret < 0 || len == 0)
		return ret;
	memcpy(b->p + b->len, data, len);
	b->len += len;
	return 0;
}
int ism_buf_printf(struct ism_buf *b, uint32_t limit, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* n in base 10 or 16, NUL-terminated, without printf; its length. */
uint32_t ism_fmt_num(char out[21], uint64_t n, unsigned base);
/* Appends prefix, n in base 10 or 16, CRLF: a content-length field or a chunk
 * size line, on the hot path, without printf. */
int ism_put_num_line(struct ism_buf *out, const char *prefix, uint64_t n, unsigned base,
		     uint32_t limit);
/* Appends a header field line "name: value\r\n". */
int ism_buf_put_header(struct ism_buf *out, const struct ism_http_header *h, uint32_t limit);
/* The same from a NUL-terminated name (a literal) and a value of value_len
 * bytes, in one reservation: the fields isthmus writes on the hot path. */
int ism_buf_put_field(struct ism_buf *out, const char *name, const char *value, size_t value_len,
		      uint32_t limit);
/* Appends the NUL-terminated s (without its NUL). */
int ism_buf_put_str(struct ism_buf *b, const char *s, uint32_t limit);
/* Appends body data as it is, or (chunked) as a chunk of its own; done adds
 * the last chunk. 0 or -ENOMEM. */
int ism_buf_put_body(struct ism_buf *out, const char *p, uint32_t len, bool chunked, bool done);
/* Appends one header field as "name NUL value NUL" (a decoded HTTP/2 header
 * list, kept trailers), in one reservation. */
int ism_buf_put_pair(struct ism_buf *b, const void *name, size_t nl, const void *value, size_t vl);
/* Appends header fields as such pairs. */
int ism_buf_put_pairs(struct ism_buf *b, const struct ism_http_header *h, size_t n);
/* The fields of b's pairs into h (at most cap, pointing into b); their count. */
size_t ism_buf_get_pairs(const struct ism_buf *b, struct ism_http_header *h, size_t cap);
/* A request kept for a replay grows by len bytes while it stays within max
 * (Envoy buffers a request for retries likewise); beyond, or empty already, it
 * is dropped (the request cannot be replayed). */
void ism_buf_keep(struct ism_buf *b, const char *p, uint32_t len, uint32_t max);
void ism_buf_consume(struct ism_buf *b, uint32_t n);
void ism_buf_free(struct ism_buf *b);

/* The blocks behind the buffers, from the thread's cache of blocks given back:
 * a power of two from 2 KiB to 64 KiB, or ISM_BLK_RECORD (OpenSSL's record
 * buffers, see worker/tls.h). NULL when none of that size is kept. */
#define ISM_BLK_RECORD 18432u
void *ism_blk_take(uint32_t cap);
/* Keeps p (a block of cap bytes from malloc) for ism_blk_take when its size
 * has room, or frees it. */
void ism_blk_give(void *p, uint32_t cap);
/* Frees b when it is empty, so that idle objects hold no buffer. */
void ism_buf_trim(struct ism_buf *b);

/* A zeroed object of sz bytes: a free slot again, or a new one; its slot and
 * generation in *idx and *gen. NULL without memory. */
void *ism_slab_get(struct ism_slab *sl, size_t sz, uint32_t *idx, uint32_t *gen);
/* Slot idx is free (its object stays, for the next life). */
void ism_slab_put(struct ism_slab *sl, uint32_t idx);
/* The object of slot idx, which must be in its life gen. */
void *ism_slab_at(const struct ism_slab *sl, uint32_t idx, uint32_t gen);
/* Frees every object (their owners have let go of what they hold). */
void ism_slab_free(struct ism_slab *sl);

/* Appends ud to a queue of user_data (a slot, its generation and an op). A
 * queue holds each of its objects once at most, and room for them is made
 * where they are made (ism_ud_reserve, ism_sock_queues_reserve), where a
 * failure refuses that one object: a push within that bound never
 * allocates, so never fails. */
void ism_ud_push(uint64_t **q, uint32_t *n, uint32_t *cap, uint64_t ud);
/* Room in queue q for need entries. 0 or -ENOMEM. */
int ism_ud_reserve(uint64_t **q, uint32_t *cap, uint32_t need);

/* ---- the socket ---- */

/* Room in the worker's queues of sockets (TLS deliveries, buffer waits, HTTP/2
 * kicks, each holding a socket once at most) for one socket more than every
 * one made: called before a socket is made. 0 or -ENOMEM (not made). */
int ism_sock_queues_reserve(struct ism_wctx *w);
/* A new zeroed owner of sz bytes from slab sl, its socket base first, not open. */
struct ism_sock *ism_sock_new(struct ism_slab *sl, size_t sz);
/* Makes s an open socket on fd, the slot (idx, gen) of its owner; fd is also
 * registered with the ring where its table has room. */
void ism_sock_open(struct ism_wctx *w, struct ism_sock *s, int fd, bool up, uint32_t idx,
		   uint32_t gen);
/* Arms a receive unless one is armed or the socket closes: a ring receive,
 * multishot where the owner set s->mshot and the kernel has it; under TLS it
 * receives ciphertext, and plaintext decrypted already needs none. Either way
 * the owner gets one RECV event per call, never from inside the call: bytes a
 * multishot brought before (held, or in the TLS session) come after the batch
 * (ism_sock_held_run). */
void ism_sock_recv(struct ism_wctx *w, struct ism_sock *s);
/* The owner takes multishot receives from the next one armed. */
void ism_sock_multi(struct ism_sock *s);
/* The owner takes single receives from now (HTTP/2, a tunnel, a body that
 * streams through): a multishot armed is cancelled; what it brought still
 * comes, in order. */
void ism_sock_single(struct ism_wctx *w, struct ism_sock *s);
/* Whether bytes (or the end) came that the owner has not asked for yet. */
bool ism_sock_held(const struct ism_sock *s);
/* The owner asked and something came before (held bytes, or what the TLS
 * session holds): it goes to the owner after the batch, through the
 * completion path as op CTLS/UTLS (counted in flight until then, so the slot
 * stays). */
void ism_sock_deliver_later(struct ism_wctx *w, struct ism_sock *s);
/* After a batch of completions: held bytes go to the owners that asked for
 * them, as RECV events in private buffers (the worker's loop). */
void ism_sock_held_run(struct ism_wctx *w);
/* Whether a client socket's handshake step may run in this turn: while the
 * turn's steps took less than ISM_HS_TURN_NS (the first always does). If not,
 * the socket waits in the handshake queue, once, counted in flight; its step
 * comes through the completion path as op CTLS in a later turn, before any
 * step of a socket queued after it (ism_sock_hs_run). */
bool ism_sock_hs_turn(struct ism_wctx *w, struct ism_sock *s);
/* At the start of a turn: the waiting handshake steps, in order, while the
 * turn's budget lasts. */
void ism_sock_hs_run(struct ism_wctx *w);
/* Sends len bytes at p, from receive buffer bid or (bid < 0) the caller's
 * memory, which must stay until the SENT event. A send from a receive buffer
 * never waits in the kernel: what the peer cannot take at once moves to s->tx
 * (the buffer goes back), so a peer that does not read holds no receive
 * buffer, shared or private. */
void ism_sock_send(struct ism_wctx *w, struct ism_sock *s, const char *p, uint32_t len, int bid);
/* Bytes that go out before anything else on an upstream socket (a PROXY
 * protocol header), given once it is connected and before anything is sent:
 * under TLS, ahead of the ClientHello in the handshake's first send; in
 * plaintext, with the owner's first send, which completes with the owner's own
 * length (a send of 0 bytes sends them alone). 0, or -ENOMEM. */
int ism_sock_preface(struct ism_sock *s, const void *p, uint32_t len);
/* Whether a plaintext socket's preface is still to go. */
bool ism_sock_preface_pending(const struct ism_sock *s);
/* Shuts the socket down (after a TLS close_notify when it may); its slot is
 * free once inflight is 0: at once (check it), or at the FREE event. */
void ism_sock_close(struct ism_sock *s);
/* The end of what is sent (TLS: close_notify, then a FIN); receives go on. */
void ism_sock_shut_write(struct ism_sock *s);
/* Bytes the kernel holds of what was sent, not yet acknowledged by the peer
 * (SIOCOUTQ); 0 when unknown. */
int ism_sock_unsent(const struct ism_sock *s);
/* Gives back what an open or closed socket holds (descriptor, TLS, buffers). */
void ism_sock_release(struct ism_wctx *w, struct ism_sock *s);

enum ism_sock_evkind {
	ISM_SEV_NONE = 0,  /* handled here; nothing for the owner */
	ISM_SEV_FREE,	   /* the socket was closing and its last operation ended */
	ISM_SEV_CONNECTED, /* a connect ended: res 0 or -errno */
	ISM_SEV_RECV,	   /* res bytes in buffer bid (res > 0), the end (0) or -errno */
	ISM_SEV_SENT,	   /* the send ended: res its whole length, or -errno */
	ISM_SEV_HANDSHAKE, /* the TLS handshake has just completed */
	ISM_SEV_TLS_FAIL,  /* the TLS handshake failed: res -errno or ISM_XP_EOF */
};

struct ism_sock_ev {
	uint8_t kind; /* enum ism_sock_evkind */
	int res;
	int bid;
};

/* The completion of op on s (res, the buffer id and the CQE's flags as the
 * ring gave them). */
struct ism_sock_ev ism_sock_complete(struct ism_wctx *w, struct ism_sock *s, enum ism_op op,
				     int res, int bid, uint32_t flags);
/* After a HANDSHAKE event: the handshake's first plaintext, or what else the
 * session has for the owner, as an event (NONE: nothing yet). */
struct ism_sock_ev ism_sock_tls_read(struct ism_wctx *w, struct ism_sock *s);

/* A receive that found the ring empty waits, still counted in flight, until
 * buffers come back: running out of buffers delays these sockets and never
 * turns into a loop of failing receives. */
void ism_sock_bufwait(struct ism_wctx *w, uint64_t ud);
/* Receives waiting for a ring buffer go again, as many as there are free
 * buffers; those of sockets closed meanwhile end (their owners see -ECANCELED). */
void ism_sock_resume_recvs(struct ism_wctx *w);

#endif
