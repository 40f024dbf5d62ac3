/* SPDX-License-Identifier: Apache-2.0 */
/* Protocol Buffers' wire format (lib/pb.h). */
#include <stdlib.h>
#include <string.h>

#include "lib/pb.h"

static bool grow(struct ism_pbw *w, size_t n);

/* Room for n more bytes (the buffer grown when it has not). */
static inline bool room(struct ism_pbw *w, size_t n)
{
	return (w->len + n <= w->cap && !w->err) || grow(w, n);
}

static bool grow(struct ism_pbw *w, size_t n)
{
	size_t cap;
	uint8_t *p;

	if (w->err)
		return false;
	cap = w->cap ? w->cap * 2 : 2048;
	while (cap < w->len + n)
		cap *= 2;
	p = realloc(w->p, cap);
	if (p == NULL) {
		w->err = true;
		return false;
	}
	w->p = p;
	w->cap = cap;
	return true;
}

/* v as a varint at out (10 bytes of room); its length. */
static size_t put_varint(uint8_t *out, uint64_t v)
{
	size_t n = 0;

	do {
		out[n++] = (uint8_t)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
		v >>= 7;
	} while (v != 0);
	return n;
}

static inline void raw_varint(struct ism_pbw *w, uint64_t v)
{
	if (room(w, 10))
		w->len += put_varint(w->p + w->len, v);
}

void ism_pbw_varint(struct ism_pbw *w, uint32_t field, uint64_t v)
{
	raw_varint(w, (uint64_t)field << 3 | ISM_PB_VARINT);
	raw_varint(w, v);
}

void ism_pbw_raw(struct ism_pbw *w, const void *p, size_t n)
{
	if (n > 0 && room(w, n)) {
		memcpy(w->p + w->len, p, n);
		w->len += n;
	}
}

void ism_pbw_bytes(struct ism_pbw *w, uint32_t field, const void *p, size_t n)
{
	raw_varint(w, (uint64_t)field << 3 | ISM_PB_LEN);
	raw_varint(w, n);
	ism_pbw_raw(w, p, n);
}

void ism_pbw_str(struct ism_pbw *w, uint32_t field, const void *p, size_t n)
{
	if (n > 0)
		ism_pbw_bytes(w, field, p, n);
}

size_t ism_pbw_begin(struct ism_pbw *w, uint32_t field)
{
	raw_varint(w, (uint64_t)field << 3 | ISM_PB_LEN);
	/* One byte for the length, moved along when it needs more. */
	if (room(w, 1))
		w->p[w->len++] = 0;
	return w->len;
}

void ism_pbw_end(struct ism_pbw *w, size_t mark)
{
	uint8_t len[10];
	size_t body, n;

	if (w->err)
		return;
	body = w->len - mark;
	n = put_varint(len, body);
	if (n > 1) {
		if (!room(w, n - 1))
			return;
		memmove(w->p + mark + n - 1, w->p + mark, body);
		w->len += n - 1;
	}
	memcpy(w->p + mark - 1, len, n);
}

void ism_pbw_free(struct ism_pbw *w)
{
	free(w->p);
	*w = (struct ism_pbw){0};
}

static bool get_varint(const uint8_t **p, const uint8_t *end, uint64_t *v)
{
	*v = 0;
	for (unsigned shift = 0; shift < 64 && *p < end; shift += 7) {
		uint8_t b = *(*p)++;

		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return true;
	}
	return false;
}

int ism_pb_next(const uint8_t **at, const uint8_t *end, struct ism_pb_field *f)
{
	const uint8_t *p = *at;
	uint64_t key;

	if (p >= end)
		return 0;
	if (!get_varint(&p, end, &key) || key >> 3 == 0 || key >> 3 > UINT32_MAX)
		return -1;
	*f = (struct ism_pb_field){.num = (uint32_t)(key >> 3), .wire = (uint8_t)(key & 7), .p = p};
	switch (f->wire) {
	case ISM_PB_VARINT:
		if (!get_varint(&p, end, &f->v))
			return -1;
		break;
	case ISM_PB_I64:
	case ISM_PB_I32: {
		size_t n = f->wire == ISM_PB_I64 ? 8 : 4;

		if ((size_t)(end - p) < n)
			return -1;
		for (size_t i = 0; i < n; i++)
			f->v |= (uint64_t)p[i] << (8 * i);
		p += n;
		break;
	}
	case ISM_PB_LEN:
		if (!get_varint(&p, end, &f->v) || f->v > (uint64_t)(end - p))
			return -1;
		f->p = p;
		f->len = (size_t)f->v;
		p += f->len;
		break;
	default:
		return -1;
	}
	*at = p;
	return 1;
}
