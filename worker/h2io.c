/* SPDX-License-Identifier: Apache-2.0 */
#include "worker/h2io.h"

#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "lib/ascii.h"
#include "lib/log.h"
#include "worker/sock.h"

/* ---------- what the connection holds ---------- */

void ism_h2io_count(struct ism_h2io *io, int64_t n)
{
	ISM_BUG_ON(n < 0 && io->held < (uint64_t)-n);
	io->held += (uint64_t)n;
	if (io->gauge != NULL)
		ism_wstat_add(io->gauge, (uint64_t)n);
}

/* gather and wire as they are now, in held. */
static void out_count(struct ism_h2io *io)
{
	uint32_t cap = io->gather.cap + io->wire.cap;

	ism_h2io_count(io, (int64_t)cap - (int64_t)io->out_cap);
	io->out_cap = cap;
}

/* The entry of big block p (NULL: a free entry), or NULL. */
static struct ism_h2io_big *big_of(struct ism_h2io *io, const void *p)
{
	for (int i = 0; i < ISM_H2IO_BIG_MAX; i++)
		if (io->big[i].p == p)
			return &io->big[i];
	return NULL;
}

/* Its pages are held again (they may be touched). */
static void big_wake(struct ism_h2io *io, struct ism_h2io_big *b)
{
	if (!b->rested)
		return;
	b->rested = 0;
	io->rested -= b->len;
	ism_h2io_count(io, (int64_t)b->len);
}

void ism_h2io_stir(struct ism_h2io *io)
{
	io->stirred = 1;
	if (io->rested == 0)
		return;
	for (int i = 0; i < ISM_H2IO_BIG_MAX; i++)
		big_wake(io, &io->big[i]);
	ISM_BUG_ON(io->rested != 0);
}

static bool all_zero(const char *p, size_t n)
{
	return n == 0 || (p[0] == 0 && memcmp(p, p + 1, n - 1) == 0);
}

bool ism_h2io_quiet(const struct ism_h2io *io)
{
	return !io->sending && io->gather.len == 0 && !nghttp2_session_want_write(io->ng);
}

uint64_t ism_h2io_rest(struct ism_h2io *io)
{
	uint64_t given = 0;

	if (!io->stirred)
		return 0;
	io->stirred = 0;
	for (int i = 0; i < ISM_H2IO_BIG_MAX; i++) {
		struct ism_h2io_big *b = &io->big[i];

		if (b->p == NULL || b->rested || !(b->scratch || all_zero(b->p, b->len)))
			continue;
		/* Private anonymous memory: the pages read back as zeros. */
		if (madvise(b->p, b->len, MADV_DONTNEED) != 0)
			continue;
		b->rested = 1;
		io->rested += b->len;
		given += b->len;
	}
	if (given)
		ism_h2io_count(io, -(int64_t)given);
	return given;
}

/* ---------- page runs ---------- */

struct ism_h2runs {
	void **v;
	uint32_t n, cap;
};

struct ism_h2pages {
	struct ism_h2runs free[ISM_H2PAGES_RUN_MAX + 1]; /* by length in pages */
	struct ism_h2runs maps;				 /* every mapping, for the exit */
	char *bump;					 /* the latest mapping's uncarved part */
	size_t left;
};

static int runs_push(struct ism_h2runs *r, void *p)
{
	if (r->n == r->cap) {
		uint32_t cap = r->cap ? 2 * r->cap : 64;
		void **v = realloc(r->v, cap * sizeof(*v));

		if (v == NULL)
			return -ENOMEM;
		r->v = v;
		r->cap = cap;
	}
	r->v[r->n++] = p;
	return 0;
}

struct ism_h2pages *ism_h2pages_new(void)
{
	return calloc(1, sizeof(struct ism_h2pages));
}

void ism_h2pages_free(struct ism_h2pages *pp)
{
	if (pp == NULL)
		return;
	for (uint32_t i = 0; i < pp->maps.n; i++)
		munmap(pp->maps.v[i], ISM_H2PAGES_MAP_SIZE);
	for (uint32_t k = 0; k <= ISM_H2PAGES_RUN_MAX; k++)
		free(pp->free[k].v);
	free(pp->maps.v);
	free(pp);
}

/* A run of k pages (zeroed when new or given back), NULL without memory. */
static void *run_get(struct ism_h2pages *pp, uint32_t k)
{
	size_t len = (size_t)k * ISM_H2IO_PAGE;
	void *p;

	if (pp->free[k].n)
		return pp->free[k].v[--pp->free[k].n];
	if (pp->left < len) {
		/* The rest of the mapping goes to the one-page list. */
		while (pp->left >= ISM_H2IO_PAGE && runs_push(&pp->free[1], pp->bump) == 0) {
			pp->bump += ISM_H2IO_PAGE;
			pp->left -= ISM_H2IO_PAGE;
		}
		p = mmap(NULL, ISM_H2PAGES_MAP_SIZE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return NULL;
		if (runs_push(&pp->maps, p) < 0) {
			munmap(p, ISM_H2PAGES_MAP_SIZE);
			return NULL;
		}
		pp->bump = p;
		pp->left = ISM_H2PAGES_MAP_SIZE;
	}
	p = pp->bump;
	pp->bump += len;
	pp->left -= len;
	return p;
}

/* Run p of k pages is free; its pages go back to the kernel unless they did
 * (rested). Without room on the list the run is lost (its address space). */
static void run_put(struct ism_h2pages *pp, void *p, uint32_t k, bool rested)
{
	/* A run on the list reads as zeros (mem_calloc counts on it). */
	if (!rested && madvise(p, (size_t)k * ISM_H2IO_PAGE, MADV_DONTNEED) != 0)
		return;
	runs_push(&pp->free[k], p);
}

/* ---------- nghttp2's allocator ---------- */

/* Adds (sign 1) or takes away (-1) glibc block p's usable size. */
static void mem_count(struct ism_h2io *io, void *p, int sign)
{
	if (p != NULL)
		ism_h2io_count(io, sign * (int64_t)malloc_usable_size(p));
}

/* A run of pages for size bytes, followed in io->big; NULL when it cannot
 * be (no pool, too big, no entry left, no memory): glibc's then. */
static void *big_alloc(struct ism_h2io *io, size_t size)
{
	uint32_t k = (uint32_t)((size + ISM_H2IO_PAGE - 1) / ISM_H2IO_PAGE);
	struct ism_h2io_big *b = big_of(io, NULL);
	void *p;

	if (io->pages == NULL || size > ISM_H2PAGES_RUN_MAX * ISM_H2IO_PAGE || b == NULL)
		return NULL;
	p = run_get(io->pages, k);
	if (p == NULL)
		return NULL;
	*b = (struct ism_h2io_big){.p = p, .len = (size_t)k * ISM_H2IO_PAGE};
	ism_h2io_count(io, (int64_t)b->len);
	return p;
}

static void *mem_malloc(size_t size, void *ud)
{
	struct ism_h2io *io = ud;
	void *p = size >= ISM_H2IO_PAGE ? big_alloc(io, size) : NULL;

	if (p != NULL)
		return p;
	p = malloc(size);
	mem_count(io, p, 1);
	return p;
}

static void mem_free(void *p, void *ud)
{
	struct ism_h2io *io = ud;
	struct ism_h2io_big *b;

	if (p == NULL)
		return;
	b = big_of(io, p);
	if (b == NULL) {
		mem_count(io, p, -1);
		free(p);
		return;
	}
	ism_h2io_count(io, -(int64_t)(b->rested ? 0 : b->len));
	if (b->rested)
		io->rested -= b->len;
	run_put(io->pages, b->p, (uint32_t)(b->len / ISM_H2IO_PAGE), b->rested);
	*b = (struct ism_h2io_big){0};
}

static void *mem_calloc(size_t n, size_t size, void *ud)
{
	void *p;

	if (size != 0 && n > SIZE_MAX / size)
		return NULL;
	/* A new run reads as zeros already. */
	if (n * size >= ISM_H2IO_PAGE && (p = big_alloc(ud, n * size)) != NULL)
		return p;
	p = calloc(n, size);
	mem_count(ud, p, 1);
	return p;
}

/* The bytes of block p, big or glibc's. */
static size_t mem_size(struct ism_h2io *io, void *p)
{
	struct ism_h2io_big *b = big_of(io, p);

	return b != NULL ? b->len : malloc_usable_size(p);
}

static void *mem_realloc(void *p, size_t size, void *ud)
{
	struct ism_h2io *io = ud;
	void *q;

	if (size == 0) {
		mem_free(p, ud);
		return NULL;
	}
	if (size < ISM_H2IO_PAGE && (p == NULL || big_of(io, p) == NULL)) {
		mem_count(io, p, -1);
		q = realloc(p, size);
		/* Without memory p stays as it was, and counted. */
		mem_count(io, q != NULL ? q : p, 1);
		return q;
	}
	/* To or from a run of pages: a new block, the bytes copied. */
	q = mem_malloc(size, ud);
	if (q == NULL || p == NULL)
		return q;
	memcpy(q, p, mem_size(io, p) < size ? mem_size(io, p) : size);
	mem_free(p, ud);
	return q;
}

nghttp2_mem ism_h2io_mem(struct ism_h2io *io)
{
	return (nghttp2_mem){
	    .mem_user_data = io,
	    .malloc = mem_malloc,
	    .free = mem_free,
	    .calloc = mem_calloc,
	    .realloc = mem_realloc,
	};
}

/* ---------- output ---------- */

bool ism_h2io_kick(struct ism_h2io *io)
{
	if (io->busy || io->kicked)
		return false;
	io->kicked = 1;
	return true;
}

bool ism_h2io_kicked(struct ism_h2io *io)
{
	bool k = io->kicked;

	io->kicked = 0;
	return k;
}

/* An HTTP/2 frame's header: length, type, flags, stream id. */
#define ISM_H2_FRAME_HD 9u

/* Room in the output for len more bytes: 0, WOULDBLOCK (nghttp2 tries again
 * later) while a full batch waits for the one in flight, or
 * CALLBACK_FAILURE without memory. */
static int gather_room(struct ism_h2io *io, size_t len)
{
	uint32_t need = io->gather.len + (uint32_t)len;

	ism_h2io_stir(io);
	if (io->gather.len >= ISM_H2_GATHER_MAX && io->sending)
		return NGHTTP2_ERR_WOULDBLOCK;
	/* Past its first block, the buffer grows at once to what a burst of
	 * frames fills, not by doublings that copy it each time. */
	if (need > io->gather.cap && io->gather.cap != 0 && need < ISM_H2_GATHER_BURST)
		need = ISM_H2_GATHER_BURST;
	if (ism_buf_reserve(&io->gather, need - io->gather.len, UINT32_MAX) < 0)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	return 0;
}

static void gather_put(struct ism_h2io *io, const void *data, size_t len)
{
	/* An empty DATA frame (a body whose end came alone) may have no
	 * buffer at all: memcpy's NULL is undefined even for no bytes. */
	if (len == 0)
		return;
	memcpy(io->gather.p + io->gather.len, data, len);
	io->gather.len += (uint32_t)len;
}

ssize_t ism_h2io_gather(struct ism_h2io *io, const uint8_t *data, size_t len)
{
	int ret = gather_room(io, len);

	if (ret < 0)
		return ret;
	/* The block nghttp2 frames its output in. */
	for (int i = 0; i < ISM_H2IO_BIG_MAX; i++) {
		struct ism_h2io_big *b = &io->big[i];

		if (b->p != NULL && (const char *)data >= b->p &&
		    (const char *)data < b->p + b->len)
			b->scratch = 1;
	}
	gather_put(io, data, len);
	out_count(io);
	return (ssize_t)len;
}

int ism_h2io_frame(struct ism_h2io *io, const char **p, uint32_t *len)
{
	struct ism_buf t;

	if (nghttp2_session_send(io->ng) < 0)
		return -EPROTO;
	if (io->sending || io->gather.len == 0)
		return 0;
	t = io->wire;
	io->wire = io->gather;
	io->gather = t;
	io->gather.len = 0;
	io->sending = 1;
	io->fly_batch = io->batch++;
	*p = io->wire.p;
	*len = io->wire.len;
	return 1;
}

void ism_h2io_sent(struct ism_h2io *io)
{
	io->sending = 0;
	io->wire.len = 0;
	io->sent_batch = io->fly_batch;
}

void ism_h2io_trim(struct ism_h2io *io)
{
	if (io->sending || io->gather.len)
		return;
	ism_buf_free(&io->gather);
	ism_buf_free(&io->wire);
	out_count(io);
}

void ism_h2io_free(struct ism_h2io *io)
{
	if (io->ng != NULL)
		nghttp2_session_del(io->ng);
	io->ng = NULL;
	ism_buf_free(&io->gather);
	ism_buf_free(&io->wire);
	out_count(io);
	ISM_BUG_ON(io->rested != 0);
	ism_h2io_count(io, -(int64_t)io->held);
}

ssize_t ism_h2body_read(struct ism_h2body *bd, size_t len, uint32_t *flags)
{
	uint32_t avail = bd->b.len - bd->off;
	size_t n = avail < len ? avail : len;

	if (n == avail && bd->end) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		if (bd->trailers)
			*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
	} else if (n == 0) {
		bd->deferred = 1;
		return NGHTTP2_ERR_DEFERRED;
	}
	*flags |= NGHTTP2_DATA_FLAG_NO_COPY;
	return (ssize_t)n;
}

int ism_h2body_send(struct ism_h2io *io, struct ism_h2body *bd, const nghttp2_frame *f,
		    const uint8_t *framehd, size_t len)
{
	int ret;

	/* No padding: the sessions choose none. */
	ISM_BUG_ON(f->data.padlen != 0);
	/* The frame waited for room (WOULDBLOCK), and meanwhile the body was
	 * let go (the stream aborted): nghttp2 resets the stream. */
	if (len > bd->b.len - bd->off)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	ret = gather_room(io, ISM_H2_FRAME_HD + len);
	if (ret < 0)
		return ret;
	gather_put(io, framehd, ISM_H2_FRAME_HD);
	gather_put(io, bd->b.p + bd->off, len);
	bd->off += (uint32_t)len;
	if (bd->off == bd->b.len)
		bd->off = bd->b.len = 0;
	out_count(io);
	return 0;
}

int ism_h2body_add(struct ism_h2io *io, int32_t id, struct ism_h2body *bd, const char *p,
		   uint32_t len, bool end)
{
	if (len && ism_buf_append(&bd->b, p, len, UINT32_MAX) < 0)
		return -ENOMEM;
	bd->end = end;
	if (bd->deferred && id > 0) {
		bd->deferred = 0;
		nghttp2_session_resume_data(io->ng, id);
	}
	return 0;
}

int ism_h2nv_init(struct ism_h2nv *h, size_t n)
{
	h->n = 0;
	h->cap = n;
	h->nv = h->local;
	if (n > ISM_H2NV_LOCAL && (h->nv = malloc(n * sizeof(*h->nv))) == NULL)
		return -ENOMEM;
	return 0;
}

void ism_h2nv_free(struct ism_h2nv *h)
{
	if (h->nv != h->local)
		free(h->nv);
	h->nv = NULL;
	h->n = h->cap = 0;
}

int ism_h2in_add(struct ism_h2in *in, const uint8_t *p, size_t len)
{
	if (ism_buf_append(&in->gather, p, (uint32_t)len, UINT32_MAX) < 0)
		return -ENOMEM;
	in->unconsumed += len;
	return 0;
}

/* io's unread bytes become unread, taken bytes having been consumed: the
 * connection's credit keeps every byte taken and min(unread, early_max) of
 * those not given back. */
static void set_unread(struct ism_h2io *io, uint64_t unread, uint64_t taken)
{
	uint64_t before = io->unread < io->early_max ? io->unread : io->early_max;
	uint64_t after = unread < io->early_max ? unread : io->early_max;
	uint64_t credit = taken + after - before; /* after falls by at most taken */

	io->unread = unread;
	if (credit)
		nghttp2_session_consume_connection(io->ng, (size_t)credit);
}

void ism_h2io_received(struct ism_h2io *io, size_t n)
{
	set_unread(io, io->unread + n, 0);
}

/* n bytes of stream id consumed: to its window, and to the connection's unless
 * that was given back as they arrived. */
static void consumed(struct ism_h2io *io, int32_t id, size_t n)
{
	if (io->early_max == 0) {
		nghttp2_session_consume(io->ng, id, n);
		return;
	}
	nghttp2_session_consume_stream(io->ng, id, n);
	set_unread(io, io->unread - (n < io->unread ? n : io->unread), n);
}

void ism_h2in_want(struct ism_h2io *io, int32_t id, struct ism_h2in *in)
{
	if (in->fly.len) {
		consumed(io, id, in->fly.len);
		in->unconsumed -= in->fly.len;
		in->fly.len = 0;
	}
	in->want = 1;
}

bool ism_h2in_take(struct ism_h2in *in, const char **p, uint32_t *len, bool *done)
{
	struct ism_buf t;

	if (!in->want || in->fly.len || in->end_given || (in->gather.len == 0 && !in->end))
		return false;
	t = in->fly;
	in->fly = in->gather;
	in->gather = t;
	in->gather.len = 0;
	in->want = 0;
	in->end_given = in->end;
	*p = in->fly.p;
	*len = in->fly.len;
	*done = in->end;
	return true;
}

void ism_h2in_drop(struct ism_h2io *io, int32_t id, struct ism_h2in *in)
{
	/* Of a closed stream, nghttp2 credits the connection's window only. */
	if (in->unconsumed)
		consumed(io, id, in->unconsumed);
	in->unconsumed = 0;
	in->gather.len = 0;
	in->fly.len = 0;
	in->end_given = 1;
}

void ism_h2in_free(struct ism_h2in *in)
{
	ism_buf_free(&in->gather);
	ism_buf_free(&in->fly);
}

void ism_h2_submit_trailers(struct ism_h2io *io, int32_t id, const struct ism_buf *trl)
{
	const char *p = trl->p, *end = trl->p + trl->len;
	struct ism_h2nv nv;
	size_t n = 0;

	for (const char *q = p; q < end; q += strlen(q) + 1)
		n++;
	if (ism_h2nv_init(&nv, n / 2 + 1) < 0) {
		nghttp2_submit_rst_stream(io->ng, NGHTTP2_FLAG_NONE, id, NGHTTP2_INTERNAL_ERROR);
		return;
	}
	while (p < end) {
		size_t nl = strlen(p), vl = strlen(p + nl + 1);

		ism_h2nv_add(&nv, p, nl, p + nl + 1, vl);
		p += nl + vl + 2;
	}
	nghttp2_submit_trailer(io->ng, id, nv.nv, nv.n);
	ism_h2nv_free(&nv);
}
