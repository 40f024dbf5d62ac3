/* SPDX-License-Identifier: Apache-2.0 */
#include "worker/h2io.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "worker/sock.h"

ssize_t ism_h2io_gather(struct ism_h2io *io, const uint8_t *data, size_t len)
{
	if (io->gather.len >= ISM_H2_GATHER_MAX && io->sending)
		return NGHTTP2_ERR_WOULDBLOCK;
	if (ism_buf_append(&io->gather, data, (uint32_t)len, UINT32_MAX) < 0)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
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
}

void ism_h2io_free(struct ism_h2io *io)
{
	if (io->ng != NULL)
		nghttp2_session_del(io->ng);
	io->ng = NULL;
	ism_buf_free(&io->gather);
	ism_buf_free(&io->wire);
}

ssize_t ism_h2body_read(struct ism_h2body *bd, uint8_t *buf, size_t len, uint32_t *flags)
{
	uint32_t avail = bd->b.len - bd->off;
	size_t n = avail < len ? avail : len;

	if (n) {
		memcpy(buf, bd->b.p + bd->off, n);
		bd->off += (uint32_t)n;
	}
	if (bd->off == bd->b.len)
		bd->off = bd->b.len = 0;
	if (bd->b.len == 0 && bd->end) {
		*flags |= NGHTTP2_DATA_FLAG_EOF;
		if (bd->trailers)
			*flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
		return (ssize_t)n;
	}
	if (n == 0) {
		bd->deferred = 1;
		return NGHTTP2_ERR_DEFERRED;
	}
	return (ssize_t)n;
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

int ism_h2nv_init(struct ism_h2nv *h, size_t n, uint32_t name_bytes)
{
	*h = (struct ism_h2nv){0};
	h->nv = malloc(n * sizeof(*h->nv));
	if (h->nv == NULL || ism_buf_reserve(&h->scratch, name_bytes, UINT32_MAX) < 0) {
		ism_h2nv_free(h);
		return -ENOMEM;
	}
	h->cap = n;
	return 0;
}

void ism_h2nv_add(struct ism_h2nv *h, const char *name, size_t nl, const char *value, size_t vl)
{
	char *lc = h->scratch.p + h->scratch.len;

	if (h->n == h->cap || h->scratch.len + nl > h->scratch.cap)
		return;
	for (size_t i = 0; i < nl; i++)
		lc[i] = (char)tolower((unsigned char)name[i]);
	h->scratch.len += (uint32_t)nl;
	h->nv[h->n++] =
	    (nghttp2_nv){(uint8_t *)lc, (uint8_t *)(uintptr_t)value, nl, vl, NGHTTP2_NV_FLAG_NONE};
}

void ism_h2nv_free(struct ism_h2nv *h)
{
	free(h->nv);
	ism_buf_free(&h->scratch);
	*h = (struct ism_h2nv){0};
}

int ism_h2in_add(struct ism_h2in *in, const uint8_t *p, size_t len)
{
	if (ism_buf_append(&in->gather, p, (uint32_t)len, UINT32_MAX) < 0)
		return -ENOMEM;
	in->unconsumed += len;
	return 0;
}

void ism_h2in_want(struct ism_h2io *io, int32_t id, struct ism_h2in *in)
{
	if (in->fly.len) {
		nghttp2_session_consume(io->ng, id, in->fly.len);
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
		nghttp2_session_consume(io->ng, id, in->unconsumed);
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
	if (ism_h2nv_init(&nv, n / 2 + 1, trl->len) < 0) {
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
