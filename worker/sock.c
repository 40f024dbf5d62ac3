/* SPDX-License-Identifier: Apache-2.0 */
/* The socket base (worker/sock.h): the one place that puts socket operations
 * on the ring, for client and upstream sides alike, and the buffers and slabs
 * the worker's roles share. */
#include "worker/sock.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <linux/sockios.h>

#include "lib/log.h"
#include "worker/ring.h"
#include "worker/tls.h"

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/asan_interface.h>
#define CACHE_POISON(p, n)   ASAN_POISON_MEMORY_REGION(p, n)
#define CACHE_UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION(p, n)
#else
#define CACHE_POISON(p, n)   ((void)(p), (void)(n))
#define CACHE_UNPOISON(p, n) ((void)(p), (void)(n))
#endif

#define HEAD_INITIAL 2048u

/* ---------- buffers ---------- */

/* Blocks that freed buffers gave back, by size class: HEAD_INITIAL (2 KiB)
 * shifted by the class, up to 64 KiB, for the next buffer that starts or
 * grows to that size; and a class of ISM_BLK_RECORD blocks for OpenSSL's
 * record buffers (worker/tls.c), which come and go as often. A request's
 * buffers come and go at the rate of requests (about 6 for an HTTP/2 request,
 * 13 for a gRPC call), and an HTTP/2 connection's output buffers grow through
 * several classes in each busy spell and are given back at its end. glibc
 * serves blocks of these sizes from its bins, not from its per-thread cache
 * (1,032 bytes at most): some 250 instructions a malloc and as many a free,
 * and a realloc copies the whole old block, against a dozen here and a copy
 * of the bytes held. Per thread, as glibc's own cache; at most
 * CACHE_CLASS_BYTES (256 KiB) a class stay. Under ASan a cached block is
 * poisoned, so a use after its free is still reported. */
#define CACHE_CLASSES	  7 /* the last: ISM_BLK_RECORD */
#define CACHE_CLASS_BYTES (256u * 1024u)
/* Blocks a class keeps at most: the smallest class's count. */
#define CACHE_MAX (CACHE_CLASS_BYTES / HEAD_INITIAL)
static _Thread_local struct {
	uint32_t n;
	void *v[CACHE_MAX];
} cached[CACHE_CLASSES];

/* The class of a block of cap bytes, or -1: none (neither a power of two from
 * HEAD_INITIAL to the largest class nor ISM_BLK_RECORD). */
static int cache_class(uint32_t cap)
{
	int c;

	if (cap == ISM_BLK_RECORD)
		return CACHE_CLASSES - 1;
	if (cap < HEAD_INITIAL || (cap & (cap - 1)) != 0)
		return -1;
	c = __builtin_ctz(cap) - __builtin_ctz(HEAD_INITIAL);
	return c < CACHE_CLASSES - 1 ? c : -1;
}

static void *cache_take(uint32_t cap)
{
	int c = cache_class(cap);
	void *p;

	if (c < 0 || cached[c].n == 0)
		return NULL;
	p = cached[c].v[--cached[c].n];
	CACHE_UNPOISON(p, cap);
	return p;
}

/* Keeps p (a block of cap bytes) for cache_take if its class has room, or
 * frees it. */
static void cache_give(void *p, uint32_t cap)
{
	int c = cache_class(cap);

	if (c >= 0 && cached[c].n < CACHE_CLASS_BYTES / cap) {
		CACHE_POISON(p, cap);
		cached[c].v[cached[c].n++] = p;
	} else {
		free(p);
	}
}

/* The worker's own buffers take the two above inline; OpenSSL's record
 * buffers (worker/tls.c) through these. */
void *ism_blk_take(uint32_t cap)
{
	return cache_take(cap);
}

void ism_blk_give(void *p, uint32_t cap)
{
	cache_give(p, cap);
}

int ism_buf_grow(struct ism_buf *b, uint32_t extra, uint32_t limit)
{
	uint32_t need = b->len + extra;
	uint32_t cap;
	char *p;

	if (need > limit)
		return -E2BIG;
	cap = b->cap ? b->cap : HEAD_INITIAL;
	while (cap < need)
		cap *= 2;
	if (cap > limit)
		cap = limit;
	p = cache_take(cap);
	if (p != NULL) {
		if (b->p != NULL) {
			memcpy(p, b->p, b->len);
			cache_give(b->p, b->cap);
		}
	} else {
		p = realloc(b->p, cap);
		if (p == NULL)
			return -ENOMEM;
	}
	b->p = p;
	b->cap = cap;
	return 0;
}

uint32_t ism_fmt_num(char out[21], uint64_t n, unsigned base)
{
	char tmp[20];
	uint32_t i = sizeof(tmp), len;

	do {
		tmp[--i] = "0123456789abcdef"[n % base];
		n /= base;
	} while (n);
	len = (uint32_t)sizeof(tmp) - i;
	memcpy(out, tmp + i, len);
	out[len] = '\0';
	return len;
}

int ism_put_num_line(struct ism_buf *out, const char *prefix, uint64_t n, unsigned base,
		     uint32_t limit)
{
	size_t plen = strlen(prefix);
	char line[32 + 21 + 2];
	uint32_t len;

	ISM_BUG_ON(plen > 32);
	memcpy(line, prefix, plen);
	len = ism_fmt_num(line + plen, n, base);
	memcpy(line + plen + len, "\r\n", 2);
	return ism_buf_append(out, line, (uint32_t)(plen + len + 2), limit);
}

int ism_buf_printf(struct ism_buf *b, uint32_t limit, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || ism_buf_reserve(b, (uint32_t)n + 1, limit) < 0)
		return -ENOMEM;
	va_start(ap, fmt);
	vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (uint32_t)n;
	return 0;
}

/* "name: value\r\n" in one reservation. */
static int put_line(struct ism_buf *out, const char *name, size_t nl, const char *value, size_t vl,
		    uint32_t limit)
{
	int ret = ism_buf_reserve(out, (uint32_t)(nl + vl + 4), limit);
	char *p;

	if (ret < 0)
		return ret;
	p = out->p + out->len;
	memcpy(p, name, nl);
	memcpy(p + nl, ": ", 2);
	if (vl)
		memcpy(p + nl + 2, value, vl);
	memcpy(p + nl + 2 + vl, "\r\n", 2);
	out->len += (uint32_t)(nl + vl + 4);
	return 0;
}

int ism_buf_put_field(struct ism_buf *out, const char *name, const char *value, size_t value_len,
		      uint32_t limit)
{
	return put_line(out, name, strlen(name), value, value_len, limit);
}

int ism_buf_put_header(struct ism_buf *out, const struct ism_http_header *h, uint32_t limit)
{
	return put_line(out, h->name, h->name_len, h->value, h->value_len, limit);
}

int ism_buf_put_str(struct ism_buf *b, const char *s, uint32_t limit)
{
	return ism_buf_append(b, s, (uint32_t)strlen(s), limit);
}

int ism_buf_put_body(struct ism_buf *out, const char *p, uint32_t len, bool chunked, bool done)
{
	int ret = 0;

	if (!chunked)
		return len ? ism_buf_append(out, p, len, UINT32_MAX) : 0;
	if (len) {
		ret |= ism_put_num_line(out, "", len, 16, UINT32_MAX);
		ret |= ism_buf_append(out, p, len, UINT32_MAX);
		ret |= ism_buf_append(out, "\r\n", 2, UINT32_MAX);
	}
	if (done)
		ret |= ism_buf_append(out, "0\r\n\r\n", 5, UINT32_MAX);
	return ret ? -ENOMEM : 0;
}

int ism_buf_put_pair(struct ism_buf *b, const void *name, size_t nl, const void *value, size_t vl)
{
	char *p;

	if (ism_buf_reserve(b, (uint32_t)(nl + vl + 2), UINT32_MAX) < 0)
		return -ENOMEM;
	p = b->p + b->len;
	memcpy(p, name, nl);
	p[nl] = '\0';
	memcpy(p + nl + 1, value, vl);
	p[nl + 1 + vl] = '\0';
	b->len += (uint32_t)(nl + vl + 2);
	return 0;
}

int ism_buf_put_pairs(struct ism_buf *b, const struct ism_http_header *h, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (ism_buf_put_pair(b, h[i].name, h[i].name_len, h[i].value, h[i].value_len) < 0)
			return -ENOMEM;
	return 0;
}

size_t ism_buf_get_pairs(const struct ism_buf *b, struct ism_http_header *h, size_t cap)
{
	const char *p = b->p, *end = b->p + b->len;
	size_t n = 0;

	while (p < end && n < cap) {
		size_t nl = strlen(p), vl = strlen(p + nl + 1);

		h[n++] = (struct ism_http_header){p, nl, p + nl + 1, vl};
		p += nl + vl + 2;
	}
	return n;
}

void ism_buf_keep(struct ism_buf *b, const char *p, uint32_t len, uint32_t max)
{
	if (b->len == 0 || b->len + (uint64_t)len > max ||
	    ism_buf_append(b, p, len, UINT32_MAX) < 0)
		ism_buf_free(b);
}

void ism_buf_consume(struct ism_buf *b, uint32_t n)
{
	ISM_BUG_ON(n > b->len);
	memmove(b->p, b->p + n, b->len - n);
	b->len -= n;
}

void ism_buf_free(struct ism_buf *b)
{
	if (b->p != NULL)
		cache_give(b->p, b->cap);
	b->p = NULL;
	b->len = b->cap = 0;
}

void ism_buf_trim(struct ism_buf *b)
{
	if (b->len == 0)
		ism_buf_free(b);
}

void *ism_slab_get(struct ism_slab *sl, size_t sz, uint32_t *idx, uint32_t *gen)
{
	uint32_t i;

	if (sl->n_free) {
		i = sl->free[--sl->n_free];
		memset(sl->obj[i], 0, sz);
	} else {
		void *obj;

		if (sl->n == sl->cap) {
			uint32_t ncap = sl->cap ? sl->cap * 2 : 256;
			void **o = realloc(sl->obj, ncap * sizeof(*o));

			if (o == NULL)
				return NULL;
			sl->obj = o;
			uint32_t *g = realloc(sl->gen, ncap * sizeof(*g));

			if (g == NULL)
				return NULL;
			sl->gen = g;
			uint32_t *f = realloc(sl->free, ncap * sizeof(*f));

			if (f == NULL)
				return NULL;
			sl->free = f;
			sl->cap = ncap;
		}
		obj = calloc(1, sz);
		if (obj == NULL)
			return NULL;
		i = sl->n++;
		sl->obj[i] = obj;
		sl->gen[i] = 0;
	}
	*idx = i;
	*gen = ++sl->gen[i];
	return sl->obj[i];
}

void ism_slab_put(struct ism_slab *sl, uint32_t idx)
{
	ISM_BUG_ON(sl->n_free >= sl->n);
	sl->free[sl->n_free++] = idx;
}

void *ism_slab_at(const struct ism_slab *sl, uint32_t idx, uint32_t gen)
{
	ISM_BUG_ON(idx >= sl->n || sl->gen[idx] != gen);
	return sl->obj[idx];
}

void ism_slab_free(struct ism_slab *sl)
{
	for (uint32_t i = 0; i < sl->n; i++)
		free(sl->obj[i]);
	free(sl->obj);
	free(sl->gen);
	free(sl->free);
	*sl = (struct ism_slab){0};
}

/* ---------- the socket ---------- */

int ism_sock_queues_reserve(struct ism_wctx *w)
{
	/* every socket ever made, and the one about to be, twice: a socket is
	 * in a queue once at most but for a turn where it is queued again
	 * (kicked by a stream and by its connection) */
	uint32_t need = 2 * (w->sess.n + w->ups.n + 1);

	if (ism_ud_reserve(&w->held, &w->cap_held, need) < 0 ||
	    ism_ud_reserve(&w->bufwait, &w->cap_bufwait, need) < 0 ||
	    ism_ud_reserve(&w->h2_kicked, &w->cap_h2_kicked, need) < 0 ||
	    ism_ud_reserve(&w->hsq, &w->cap_hsq, need) < 0)
		return -ENOMEM;
	return 0;
}

struct ism_sock *ism_sock_new(struct ism_slab *sl, size_t sz)
{
	uint32_t idx, gen;
	struct ism_sock *s = ism_slab_get(sl, sz, &idx, &gen);

	if (s == NULL)
		return NULL;
	s->idx = idx;
	s->gen = gen;
	s->fd = -1;
	return s;
}

/* Puts the file of descriptor fd at index fd of the ring's table (value
 * &w->fdnum[fd]), or takes it out (value -1). The update runs in the ring,
 * before the entries queued after it: no system call of its own, and nothing
 * completes unless it failed. */
static void files_update(struct ism_wctx *w, int fd, int *value)
{
	struct io_uring_sqe *sqe = ism_w_sqe(w);

	io_uring_prep_files_update(sqe, value, 1, fd);
	sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
	io_uring_sqe_set_data64(sqe, ism_ud(ISM_OP_FILES, 0, 0));
}

void ism_sock_open(struct ism_wctx *w, struct ism_sock *s, int fd, bool up, uint32_t idx,
		   uint32_t gen)
{
	memset(s, 0, sizeof(*s));
	s->fd = fd;
	s->up = up;
	s->idx = idx;
	s->gen = gen;
	s->state = ISM_SOCK_OPEN;
	s->send.bid = -1;
	if ((uint32_t)fd < w->n_fixed) {
		files_update(w, fd, &w->fdnum[fd]);
		s->fixed = 1;
	}
}

/* ---------- multishot receives ---------- */

/* What a multishot brings before its owner asks is copied (its ring buffer
 * goes back at once, so a peer that is not read from pins no shared buffer).
 * The kernel ends a multishot once it brought ISM_RECV_MSHOT_LIMIT bytes (one
 * ring buffer more at most), and a new one is armed only once the held bytes
 * went to the owner: so no more than that is ever held. Past HOLD_SOFT (the
 * limit) the multishot is also cancelled, and HOLD_CAP stands guard: past it,
 * the rest is dropped and the owner, once it has had what was held, sees the
 * receive fail. */
#define HOLD_SOFT ISM_RECV_MSHOT_LIMIT
#define HOLD_CAP  (2u * ISM_RECV_MSHOT_LIMIT)

int ism_ud_reserve(uint64_t **q, uint32_t *cap, uint32_t need)
{
	uint32_t ncap = *cap ? *cap : 64;
	uint64_t *p;

	if (need <= *cap)
		return 0;
	while (ncap < need)
		ncap *= 2;
	p = realloc(*q, ncap * sizeof(*p));
	if (p == NULL)
		return -ENOMEM;
	*q = p;
	*cap = ncap;
	return 0;
}

void ism_ud_push(uint64_t **q, uint32_t *n, uint32_t *cap, uint64_t ud)
{
	/* room was reserved as its objects were made: nothing to fail here */
	ISM_BUG_ON(*n == *cap && ism_ud_reserve(q, cap, *n + 1) < 0);
	(*q)[(*n)++] = ud;
}

static bool has_held(const struct ism_sock *s)
{
	return s->held.len > s->held_off || s->held_end;
}

bool ism_sock_held(const struct ism_sock *s)
{
	return s->x.ssl != NULL ? ism_xp_unread(s) : has_held(s);
}

void ism_sock_deliver_later(struct ism_wctx *w, struct ism_sock *s)
{
	s->inflight++;
	ism_ud_push(&w->held, &w->n_held, &w->cap_held,
		    ism_ud(s->up ? ISM_OP_UTLS : ISM_OP_CTLS, s->idx, s->gen));
}

static void rx_cancel(struct ism_wctx *w, struct ism_sock *s)
{
	struct io_uring_sqe *sqe = ism_w_sqe(w);

	io_uring_prep_cancel64(sqe, ism_ud(s->up ? ISM_OP_URECV : ISM_OP_CRECV, s->idx, s->gen), 0);
	io_uring_sqe_set_data64(sqe, ism_ud(ISM_OP_CANCEL, 0, 0));
	s->rx = ISM_RX_CANCEL;
}

/* A multishot's completion (res, bid) that the owner has not asked for. */
static void hold(struct ism_wctx *w, struct ism_sock *s, int res, int bid)
{
	if (s->held_end) { /* past the cap, or after the end */
		if (bid >= 0)
			ism_w_buf_recycle(w, bid);
		return;
	}
	if (res <= 0) {
		s->held_end = 1;
		s->held_res = res;
		return;
	}
	if (ism_buf_append(&s->held, ism_w_buf_addr(w, bid), (uint32_t)res, HOLD_CAP) < 0) {
		s->held_end = 1;
		s->held_res = -ENOBUFS;
	}
	ism_w_buf_recycle(w, bid);
	if ((s->held.len >= HOLD_SOFT || s->held_end) && s->rx == ISM_RX_MULTI)
		rx_cancel(w, s);
}

/* The next of the held bytes (or the end held after them), for the owner. */
static struct ism_sock_ev held_deliver(struct ism_wctx *w, struct ism_sock *s);

void ism_sock_recv(struct ism_wctx *w, struct ism_sock *s)
{
	if (s->recv_armed || s->state != ISM_SOCK_OPEN)
		return;
	s->recv_armed = 1;
	if (s->x.ssl != NULL) {
		ism_xp_want_read(w, s);
		return;
	}
	if (has_held(s)) {
		ism_sock_deliver_later(w, s);
		return;
	}
	switch ((enum ism_sock_rx)s->rx) {
	case ISM_RX_SINGLE:
		ism_xp_sock_recv(w, s, s->mshot && w->mshot);
		s->rx = s->mshot && w->mshot ? ISM_RX_MULTI : ISM_RX_SINGLE;
		return;
	case ISM_RX_MULTI:  /* still armed: its next bytes are the owner's */
	case ISM_RX_CANCEL: /* its end arms the next receive */
		return;
	}
	ISM_BUG_ON(1);
}

void ism_sock_multi(struct ism_sock *s)
{
	s->mshot = 1;
}

void ism_sock_single(struct ism_wctx *w, struct ism_sock *s)
{
	s->mshot = 0;
	if (s->rx == ISM_RX_MULTI)
		rx_cancel(w, s);
}

void ism_sock_held_run(struct ism_wctx *w)
{
	/* Deliveries may queue more (an owner that asks again): run to empty. */
	for (uint32_t i = 0; i < w->n_held; i++) {
		uint64_t ud = w->held[i];

		ism_w_dispatch(w, (enum ism_op)(ud >> 56), (uint32_t)(ud >> 32) & 0xffffff,
			       (uint32_t)ud, 0, 0);
	}
	w->n_held = 0;
}

bool ism_sock_hs_turn(struct ism_wctx *w, struct ism_sock *s)
{
	if (s->x.queued) /* waiting in the queue: its turn comes there */
		return false;
	if (w->hs_ns < ISM_HS_TURN_NS) /* none waits then: the queue ran first */
		return true;
	s->inflight++;
	s->x.queued = 1;
	ism_ud_push(&w->hsq, &w->n_hsq, &w->cap_hsq, ism_ud(ISM_OP_CTLS, s->idx, s->gen));
	return false;
}

void ism_sock_hs_run(struct ism_wctx *w)
{
	uint32_t i = 0;

	/* A step queues no other socket; those whose turn did not come move to
	 * the front. */
	while (i < w->n_hsq && w->hs_ns < ISM_HS_TURN_NS) {
		uint64_t ud = w->hsq[i++];

		ism_w_dispatch(w, ISM_OP_CTLS, (uint32_t)(ud >> 32) & 0xffffff, (uint32_t)ud, 0, 0);
	}
	memmove(w->hsq, w->hsq + i, (w->n_hsq - i) * sizeof(*w->hsq));
	w->n_hsq -= i;
}

/* Puts the rest of the send in flight (plaintext) on the ring. From a receive
 * buffer (the shared ring's, or a private one that decrypted or held bytes
 * came in), MSG_DONTWAIT: one the socket cannot take at once comes back
 * (-EAGAIN or short) and moves to the connection's memory (park), so a peer
 * that does not read pins no receive buffer. */
static void send_rest(struct ism_wctx *w, struct ism_sock *s)
{
	ism_xp_sock_send(w, s, s->send.p + s->sent, s->send.len - s->sent,
			 s->send.bid >= 0 ? MSG_DONTWAIT : 0);
}

/* The preface waits in x.tx, which TLS fills with the handshake's records
 * after it and plaintext does not use otherwise. */
int ism_sock_preface(struct ism_sock *s, const void *p, uint32_t len)
{
	ISM_BUG_ON(s->send_armed || s->x.tx.len != 0 || s->x.established);
	return ism_buf_append(&s->x.tx, p, len, UINT32_MAX);
}

bool ism_sock_preface_pending(const struct ism_sock *s)
{
	return s->x.ssl == NULL && s->x.tx.len != 0;
}

/* A plaintext socket's first send takes the preface along, both from x.tx
 * (freed once sent: plain_sent); its ring buffer goes back at once. Kept out
 * of ism_sock_send, which every send runs. */
static __attribute__((noinline)) void with_preface(struct ism_wctx *w, struct ism_sock *s)
{
	struct ism_span *span = &s->send;

	if (ism_buf_append(&s->x.tx, span->p, span->len, UINT32_MAX) < 0) {
		/* The owner's bytes never go without it: the send fails. */
		shutdown(s->fd, SHUT_RDWR);
		return;
	}
	if (span->bid >= 0)
		ism_w_buf_recycle(w, span->bid);
	*span = (struct ism_span){.p = s->x.tx.p, .len = s->x.tx.len, .bid = -1};
}

void ism_sock_send(struct ism_wctx *w, struct ism_sock *s, const char *p, uint32_t len, int bid)
{
	ISM_BUG_ON(s->send_armed);
	s->send = (struct ism_span){.p = p, .len = len, .bid = bid};
	s->sent = 0;
	s->send_len = len;
	s->send_armed = 1;
	if (s->x.ssl == NULL) {
		if (__builtin_expect(s->x.tx.len != 0, 0))
			with_preface(w, s);
		send_rest(w, s);
		return;
	}
	/* Encrypted at once: the plaintext buffer is free again. */
	if (ism_xp_write(w, s, p, len) < 0) {
		shutdown(s->fd, SHUT_RDWR); /* the receive reports the end */
		ism_xp_want_read(w, s);
	}
	if (bid >= 0)
		ism_w_buf_recycle(w, bid);
	s->send.bid = -1;
}

/* A send from a receive buffer found the socket full (-EAGAIN) or took part
 * of the bytes: the rest moves to s->tx and the buffer goes back, so a peer
 * that does not read holds no receive buffer, only this copy (ISM_BUF_SIZE at
 * most). 0, or -ENOMEM. */
static int park(struct ism_wctx *w, struct ism_sock *s)
{
	struct ism_span *span = &s->send;

	s->tx.len = 0;
	if (ism_buf_append(&s->tx, span->p + s->sent, span->len - s->sent, UINT32_MAX) < 0)
		return -ENOMEM;
	ism_w_buf_recycle(w, span->bid);
	*span = (struct ism_span){.p = s->tx.p, .len = s->tx.len, .bid = -1};
	s->sent = 0;
	ism_wstat_add(&w->st->send_parked, 1);
	return 0;
}

static struct ism_sock_ev ev_of(int kind, int res, int bid)
{
	return (struct ism_sock_ev){.kind = (uint8_t)kind, .res = res, .bid = bid};
}

/* A plaintext send completed with res. */
static struct ism_sock_ev plain_sent(struct ism_wctx *w, struct ism_sock *s, int res)
{
	struct ism_span *span = &s->send;

	s->send_armed = 0;
	if (span->bid >= 0 &&
	    (res == -EAGAIN || (res >= 0 && s->sent + (uint32_t)res < span->len))) {
		s->sent += res > 0 ? (uint32_t)res : 0;
		if (park(w, s) < 0) {
			ism_w_buf_recycle(w, span->bid);
			span->bid = -1;
			return ev_of(ISM_SEV_SENT, -ENOMEM, -1);
		}
		s->send_armed = 1;
		send_rest(w, s);
		return ev_of(ISM_SEV_NONE, 0, -1);
	}
	if (res >= 0 && s->sent + (uint32_t)res < span->len) {
		/* Short send from the caller's memory: push the rest. */
		s->sent += (uint32_t)res;
		s->send_armed = 1;
		send_rest(w, s);
		return ev_of(ISM_SEV_NONE, 0, -1);
	}
	if (span->bid >= 0)
		ism_w_buf_recycle(w, span->bid);
	span->bid = -1;
	if (__builtin_expect(s->x.tx.len != 0, 0) && span->p == s->x.tx.p) {
		ism_buf_free(&s->x.tx); /* the preface went with this send */
		span->p = NULL;
	}
	return ev_of(ISM_SEV_SENT, res < 0 ? res : (int)s->send_len, -1);
}

/* What a TLS read or handshake step came to, for the owner. */
static struct ism_sock_ev tls_result(struct ism_sock *s, int r, int pb)
{
	if (r == ISM_XP_HANDSHAKE)
		return ev_of(ISM_SEV_HANDSHAKE, 0, -1);
	if (r == 0)
		return ev_of(ISM_SEV_NONE, 0, -1);
	if (r < 0 && !s->x.established)
		return ev_of(ISM_SEV_TLS_FAIL, r, -1);
	s->recv_armed = 0;
	if (r > 0)
		return ev_of(ISM_SEV_RECV, r, pb);
	return ev_of(ISM_SEV_RECV, r == ISM_XP_EOF ? 0 : r, -1);
}

struct ism_sock_ev ism_sock_tls_read(struct ism_wctx *w, struct ism_sock *s)
{
	int pb = -1;
	int r = ism_xp_advance(w, s, &pb); /* before pb is read */

	return tls_result(s, r, pb);
}

static struct ism_sock_ev held_deliver(struct ism_wctx *w, struct ism_sock *s)
{
	uint32_t n = s->held.len - s->held_off;
	int xb;

	ISM_BUG_ON(!s->recv_armed || !has_held(s));
	s->recv_armed = 0;
	if (n == 0) {
		s->held_end = 0;
		return ev_of(ISM_SEV_RECV, s->held_res, -1);
	}
	xb = ism_w_xbuf_get(w);
	if (xb < 0)
		return ev_of(ISM_SEV_RECV, -ENOMEM, -1);
	if (n > ISM_BUF_SIZE)
		n = ISM_BUF_SIZE;
	/* Taken from the front without moving the rest: held can be large. */
	memcpy(ism_w_buf_addr(w, xb), s->held.p + s->held_off, n);
	s->held_off += n;
	if (s->held_off == s->held.len) {
		ism_buf_free(&s->held);
		s->held_off = 0;
	}
	return ev_of(ISM_SEV_RECV, (int)n, xb);
}

/* A receive completed (more: a multishot that stays armed), plaintext or
 * TLS. false: the end of a multishot that was cancelled here, nothing for the
 * owner. */
static bool rx_ended(struct ism_sock *s, int res, bool more)
{
	enum ism_sock_rx was = (enum ism_sock_rx)s->rx;

	if (!more)
		s->rx = ISM_RX_SINGLE;
	switch (was) {
	case ISM_RX_SINGLE: /* armed for an owner that asked */
	case ISM_RX_MULTI:
		return true;
	case ISM_RX_CANCEL:
		return more || res != -ECANCELED;
	}
	ISM_BUG_ON(1);
	return false;
}

/* A plaintext receive's completion on an open socket: the owner's at once
 * when it asked and nothing is held before it, else held. */
static struct ism_sock_ev plain_recv(struct ism_wctx *w, struct ism_sock *s, int res, int bid,
				     bool owners)
{
	if (!owners) {
		/* The cancelled multishot is over: an owner waiting for bytes
		 * gets a new receive (a queued delivery serves it otherwise). */
		if (s->recv_armed && !has_held(s)) {
			s->recv_armed = 0;
			ism_sock_recv(w, s);
		}
		return ev_of(ISM_SEV_NONE, 0, -1);
	}
	if (s->recv_armed && !has_held(s)) {
		s->recv_armed = 0;
		return ev_of(ISM_SEV_RECV, res, bid);
	}
	hold(w, s, res, bid);
	return ev_of(ISM_SEV_NONE, 0, -1);
}

/* A receive of ciphertext completed (more: a multishot that stays armed).
 * What it brings goes to the session at once (its ring buffer goes back), and
 * the session holds it until the owner asks: past HOLD_SOFT bytes the
 * multishot is cancelled, past HOLD_CAP the rest is dropped and the owner, once
 * it has read what came before, sees the receive fail, as for plaintext. */
static struct ism_sock_ev tls_recv(struct ism_wctx *w, struct ism_sock *s, int res, int bid,
				   bool more, bool owners)
{
	int pb = -1, r;

	if (!more)
		s->x.raw_recv = 0;
	if (res > 0 && ism_xp_read_ahead(s) + (uint32_t)res > HOLD_CAP) {
		ism_w_buf_recycle(w, bid);
		res = -ENOBUFS;
		bid = -1;
	}
	/* The end of a multishot cancelled here: nothing came, but an owner
	 * waiting gets its next receive armed. */
	r = !owners ? ism_xp_advance(w, s, &pb) : ism_xp_on_recv(w, s, res, bid, &pb);
	if (s->rx == ISM_RX_MULTI && ism_xp_read_ahead(s) >= HOLD_SOFT)
		rx_cancel(w, s);
	return tls_result(s, r, pb);
}

struct ism_sock_ev ism_sock_complete(struct ism_wctx *w, struct ism_sock *s, enum ism_op op,
				     int res, int bid, uint32_t flags)
{
	bool is_send = op == ISM_OP_CSEND || op == ISM_OP_USEND;
	bool is_recv = op == ISM_OP_CRECV || op == ISM_OP_URECV;
	bool delivery = op == ISM_OP_CTLS || op == ISM_OP_UTLS; /* queued by deliver_later */
	bool more = flags & IORING_CQE_F_MORE, owners = true;
	int pb = -1, r;
	uint32_t len = 0;

	ISM_BUG_ON(s->inflight == 0);
	/* A multishot stays one operation in flight until its last completion. */
	if (!more)
		s->inflight--;
	if (is_recv)
		owners = rx_ended(s, res, more);
	if (s->state == ISM_SOCK_CLOSING) {
		if (bid >= 0)
			ism_w_buf_recycle(w, bid);
		if (is_send && s->x.ssl == NULL) {
			s->send_armed = 0;
			if (s->send.bid >= 0)
				ism_w_buf_recycle(w, s->send.bid);
			s->send.bid = -1;
		}
		return ev_of(s->inflight == 0 ? ISM_SEV_FREE : ISM_SEV_NONE, 0, -1);
	}
	if (op == ISM_OP_UCONNECT)
		return ev_of(ISM_SEV_CONNECTED, res, -1);
	if (is_send && s->x.ssl == NULL)
		return plain_sent(w, s, res);
	if (is_send) {
		r = ism_xp_on_send(w, s, res, &len);
		if (r == 0)
			return ev_of(ISM_SEV_NONE, 0, -1);
		s->send_armed = 0;
		return ev_of(ISM_SEV_SENT, r > 0 ? (int)len : r, -1);
	}
	if (s->x.ssl == NULL)
		return delivery ? held_deliver(w, s) : plain_recv(w, s, res, bid, owners);
	if (is_recv)
		return tls_recv(w, s, res, bid, more, owners);
	r = ism_xp_on_delivery(w, s, &pb);
	return tls_result(s, r, pb);
}

/* The end of what an open socket sends (TLS: close_notify first), and with
 * SHUT_RDWR of what it reads. */
static void shut(struct ism_sock *s, int how)
{
	if (s->x.ssl != NULL) {
		ism_xp_close_notify(s);
		/* Behind a send in flight (the caller's last, or the session's own
		 * records: KeyUpdate answers), the close_notify waits: the FIN goes
		 * after it (ism_xp_on_send), not under the send's feet. */
		if (how == SHUT_WR && ism_xp_fin_after_send(s))
			return;
	}
	shutdown(s->fd, how);
}

void ism_sock_close(struct ism_sock *s)
{
	if (s->state != ISM_SOCK_OPEN)
		return;
	s->state = ISM_SOCK_CLOSING;
	/* shutdown() wakes the receive still pending on the socket; the slot is
	 * only reused once every operation on it has completed. */
	shut(s, SHUT_RDWR);
}

void ism_sock_shut_write(struct ism_sock *s)
{
	if (s->state == ISM_SOCK_OPEN)
		shut(s, SHUT_WR);
}

int ism_sock_unsent(const struct ism_sock *s)
{
	int n = 0;

	if (s->fd < 0 || ioctl(s->fd, SIOCOUTQ, &n) < 0)
		return 0;
	return n;
}

void ism_sock_release(struct ism_wctx *w, struct ism_sock *s)
{
	static int none = -1;

	/* Out of the table first, so that the close is the socket's last
	 * reference: a descriptor number the next socket gets is installed
	 * after this removal, in the ring's order. */
	if (s->fixed)
		files_update(w, s->fd, &none);
	s->fixed = 0;
	if (s->fd >= 0)
		close(s->fd);
	s->fd = -1;
	ism_xp_free(&s->x);
	ism_buf_free(&s->tx);
	ism_buf_free(&s->held);
	s->held_off = 0;
	s->held_end = 0;
	s->state = ISM_SOCK_FREE;
}

/* ---------- receives waiting for a ring buffer ---------- */

void ism_sock_bufwait(struct ism_wctx *w, uint64_t ud)
{
	ism_ud_push(&w->bufwait, &w->n_bufwait, &w->cap_bufwait, ud);
	ism_wstat_add(&w->st->recv_buffer_waits, 1);
}

/* The socket a receive's user_data names: the owners embed it first. */
static struct ism_sock *sock_of(struct ism_wctx *w, enum ism_op op, uint32_t idx)
{
	return (struct ism_sock *)(op == ISM_OP_CRECV ? w->sess.obj[idx] : w->ups.obj[idx]);
}

/* A receive that waited for a ring buffer goes again, as it was: a cancelled
 * multishot ends instead (its owner's next receive is armed as it ends). */
static void recv_again(struct ism_wctx *w, struct ism_sock *s, enum ism_op op, uint64_t ud)
{
	switch ((enum ism_sock_rx)s->rx) {
	case ISM_RX_SINGLE:
	case ISM_RX_MULTI:
		ism_w_recv(w, s, ud, s->rx == ISM_RX_MULTI);
		return;
	case ISM_RX_CANCEL:
		ism_w_dispatch(w, op, s->idx, s->gen, -ECANCELED, 0);
		return;
	}
	ISM_BUG_ON(1);
}

void ism_sock_resume_recvs(struct ism_wctx *w)
{
	uint32_t n = w->n_bufwait, kept = 0, budget = w->buf_avail;

	if (n == 0)
		return;
	for (uint32_t i = 0; i < n; i++) {
		uint64_t ud = w->bufwait[i];
		enum ism_op op = (enum ism_op)(ud >> 56);
		uint32_t idx = (uint32_t)(ud >> 32) & 0xffffff;
		struct ism_sock *s = sock_of(w, op, idx);

		if (s->state != ISM_SOCK_OPEN) { /* closed meanwhile: the receive ends here */
			ism_w_dispatch(w, op, idx, (uint32_t)ud, -ECANCELED, 0);
		} else if (budget > 0) {
			budget--;
			recv_again(w, s, op, ud);
		} else {
			w->bufwait[kept++] = ud;
		}
	}
	/* Receives queued while this ran (none today) stay behind the kept ones. */
	memmove(w->bufwait + kept, w->bufwait + n, (w->n_bufwait - n) * sizeof(*w->bufwait));
	w->n_bufwait = kept + (w->n_bufwait - n);
}
