/* SPDX-License-Identifier: Apache-2.0 */
/* The compiled CEL program's layout and what the compiler (conf/cel.c) and
 * the evaluator (conf/celeval.c) share; private to them. A program is one
 * block: a header, an array of fixed-size nodes, then a pool of string bytes.
 * Nodes name their children by index and strings by pool offset, so the
 * block may be copied anywhere. */
#ifndef ISM_CONF_CEL_INT_H
#define ISM_CONF_CEL_INT_H

#include <stddef.h>
#include <stdint.h>

#include "conf/cel.h"

#define CEL_MAGIC   0x4c454349u /* "ICEL" */
#define CEL_VERSION 1
/* No child. */
#define CEL_NONE 0xffffu

enum cel_op {
	CEL_LIT,      /* the value in type and v */
	CEL_ATTR,     /* attribute id */
	CEL_MAPREF,   /* map attribute id: only as IN's kid[1] */
	CEL_MAPKEY,   /* map id at the key in v.s */
	CEL_MAPIDX,   /* map id at the key kid[0] */
	CEL_HAS_ATTR, /* whether attribute id has a value */
	CEL_HAS_KEY,  /* whether map id holds the key in v.s */
	CEL_LIST,     /* elements from kid[0] on, chained by next */
	CEL_IN,	      /* kid[0] in kid[1] (a LIST or a MAPREF) */
	CEL_NOT,      /* !kid[0] */
	CEL_NEG,      /* -kid[0] */
	CEL_AND,      /* kid[0] && kid[1] */
	CEL_OR,	      /* kid[0] || kid[1] */
	CEL_COND,     /* kid[0] ? kid[1] : kid[2] */
	CEL_EQ,	      /* the binary operators, on kid[0] and kid[1] */
	CEL_NE,
	CEL_LT,
	CEL_LE,
	CEL_GT,
	CEL_GE,
	CEL_ADD,
	CEL_SUB,
	CEL_MUL,
	CEL_DIV,
	CEL_MOD,
	CEL_SIZE, /* the functions, on kid[0] (and kid[1]) */
	CEL_STARTS,
	CEL_ENDS,
	CEL_CONTAINS,
	CEL_TO_INT,
	CEL_TO_UINT,
	CEL_TO_DOUBLE,
	CEL_TO_STRING,
	CEL_TO_DURATION,
};

struct cel_node {
	uint8_t op;   /* enum cel_op */
	uint8_t type; /* LIT: enum ism_cel_type of v */
	uint16_t id;  /* attribute id */
	uint16_t kid[3];
	uint16_t next; /* a list's next element, or CEL_NONE */
	union {
		int64_t i;
		uint64_t u;
		double d;
		int64_t ns;
		struct {
			uint32_t off, len; /* in the pool */
		} s;
	} v;
};

struct cel_prog {
	uint32_t magic;
	uint16_t version;
	uint16_t n_nodes;
	uint16_t root;
	uint16_t height;   /* of the tree under root */
	uint32_t pool_off; /* from the start of the block */
	uint32_t pool_len;
	uint32_t size; /* of the whole block */
		       /* nodes, then the pool */
};

_Static_assert(sizeof(struct cel_node) == 24, "cel_node is 24 bytes");
_Static_assert(sizeof(struct cel_prog) % 8 == 0, "nodes follow the header aligned");

/* Parses a Go duration ("1h2m3.5s", "-1.5ms", "0"; units ns us µs μs ms s
 * m h) of len bytes into *ns. 0, or -EINVAL (syntax) or -ERANGE (beyond
 * int64 nanoseconds). */
int cel_duration_parse(const char *p, size_t len, int64_t *ns);

#endif
