/* SPDX-License-Identifier: Apache-2.0 */
/* Protocol Buffers' wire format, as much as isthmus's gRPC calls need
 * (health checks, external authorization): a writer of varints and
 * length-delimited fields, nested messages included, into a growing buffer,
 * and a reader of one message's fields. No schema: the callers know their
 * field numbers. */
#ifndef ISM_LIB_PB_H
#define ISM_LIB_PB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Wire types. */
enum ism_pb_wire {
	ISM_PB_VARINT = 0,
	ISM_PB_I64 = 1,
	ISM_PB_LEN = 2,
	ISM_PB_I32 = 5,
};

/* A message being written. err: an allocation failed (what follows is not
 * written; the caller looks once, at the end). */
struct ism_pbw {
	uint8_t *p;
	size_t len, cap;
	bool err;
};

void ism_pbw_varint(struct ism_pbw *w, uint32_t field, uint64_t v);
/* A string or bytes field (written even when empty). */
void ism_pbw_bytes(struct ism_pbw *w, uint32_t field, const void *p, size_t n);
/* The same, left out when n is 0 (proto3's default). */
void ism_pbw_str(struct ism_pbw *w, uint32_t field, const void *p, size_t n);
/* A nested message (or a string made piece by piece): begin returns its
 * mark, its fields (or raw bytes) follow, end (with the mark) writes its
 * length before them. */
size_t ism_pbw_begin(struct ism_pbw *w, uint32_t field);
void ism_pbw_end(struct ism_pbw *w, size_t mark);
/* Bytes as they are, within a field begun. */
void ism_pbw_raw(struct ism_pbw *w, const void *p, size_t n);
void ism_pbw_free(struct ism_pbw *w);

/* One field read. */
struct ism_pb_field {
	uint32_t num;
	uint8_t wire;	  /* enum ism_pb_wire */
	uint64_t v;	  /* ISM_PB_VARINT, ISM_PB_I64, ISM_PB_I32 */
	const uint8_t *p; /* ISM_PB_LEN: its bytes (others: where the value is) */
	size_t len;	  /* ISM_PB_LEN: their number; others: 0 */
};

/* Reads the next field of the message [*at, end): 1 and *f, 0 at its end,
 * -1 when it does not parse (a truncated field, a wire type of groups). */
int ism_pb_next(const uint8_t **at, const uint8_t *end, struct ism_pb_field *f);

#endif
