/* SPDX-License-Identifier: Apache-2.0 */
/* Private to conf/: the YAML tree whose nodes keep their positions, a pool
 * allocator that owns everything the loader builds, and the diagnostic helpers.
 *
 * Phase 1 of DESIGN.md's "configuration in two phases": libyaml's event stream
 * becomes one tree per document. Scalars keep their text; mappings keep their
 * keys in file order (duplicate keys are rejected while building); every node
 * keeps the 1-based line and column of its first character. */
#ifndef ISM_CONF_TREE_H
#define ISM_CONF_TREE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "conf/conf.h"

struct ism_strmap;

/* --- pool: a chain of blocks, freed at once --- */

struct ism_pool_block;

struct ism_pool {
	struct ism_pool_block *head;
	/* head's free bytes are [lo, hi): aligned objects are taken upwards from
	 * lo, strings (unaligned) downwards from hi */
	size_t lo, hi;
};

void ism_pool_init(struct ism_pool *p);
/* Zeroed, 16-byte aligned memory; NULL when malloc fails. */
void *ism_pool_alloc(struct ism_pool *p, size_t size);
/* A NUL-terminated copy of len bytes of s; NULL when malloc fails. */
char *ism_pool_strndup(struct ism_pool *p, const char *s, size_t len);
void ism_pool_free(struct ism_pool *p);

/* Makes room for element n of a malloc'd array *pv of *cap elements of elem
 * bytes, doubling it (from 8) when full. 0 or -ENOMEM (the array is kept). */
int ism_grow(void *pv, size_t *cap, size_t n, size_t elem);

/* --- tree --- */

enum ism_node_kind {
	ISM_NODE_SCALAR = 0,
	ISM_NODE_MAP,
	ISM_NODE_SEQ,
};

/* A scalar's YAML tag, of those isthmus reads: the core types' (as go-yaml
 * resolves them for Kubernetes). Any other tag is refused while the tree is
 * built. */
enum ism_node_tag {
	ISM_TAG_NONE = 0, /* no tag: the scalar's style and text say its type */
	ISM_TAG_STR,	  /* !!str (or the non-specific !): a string, whatever its text */
	ISM_TAG_INT,	  /* !!int: its text is an integer */
	ISM_TAG_FLOAT,	  /* !!float: an integer or a floating-point number */
	ISM_TAG_BOOL,	  /* !!bool: a boolean word */
	ISM_TAG_NULL,	  /* !!null: a null word */
};

struct ism_node;

struct ism_pair {
	struct ism_node *key; /* always a scalar */
	struct ism_node *value;
};

/* 64 bytes: a file can hold millions of nodes. */
struct ism_node {
	enum ism_node_kind kind;
	int line;
	int col;
	/* scalar */
	/* its text is typed as YAML 1.1 types an unquoted scalar's ("80" an
	 * integer; "null", "~" and "" null): unquoted without a tag, or tagged
	 * !!int, !!float, !!bool or !!null; false when quoted or !!str */
	bool plain;
	uint8_t tag; /* enum ism_node_tag */
	const char *str;
	size_t len;
	/* map: pairs; seq: items */
	size_t n;
	struct ism_pair *pairs;
	struct ism_node **items;
	/* map with many keys: key -> index in pairs, for ism_node_get; else NULL */
	const struct ism_strmap *index;
};

struct ism_yaml_docs {
	size_t n;
	struct ism_node **docs; /* the root node of each document; NULL for an empty one */
};

/* Parses buf (len bytes) into trees allocated from pool. Returns 0, or -EINVAL
 * with a syntax error (libyaml's position and problem) or duplicate-key errors
 * in d, or -ENOMEM. */
int ism_yaml_parse(struct ism_pool *pool, const char *name, const char *buf, size_t len,
		   struct ism_yaml_docs *out, struct ism_diags *d);

/* The value for key in map, or NULL. The pair's key node goes to *key when asked.
 * Constant time on average for a mapping with many keys (hashed), so a caller
 * may look up every key of a mapping. */
struct ism_node *ism_node_get(const struct ism_node *map, const char *key,
			      const struct ism_node **keynode);
/* True for a plain null scalar (``, `~`, `null`). */
bool ism_node_is_null(const struct ism_node *n);

/* What YAML 1.1 makes of an unquoted scalar's text, as go-yaml v2 (the
 * library Kubernetes reads a file with) resolves it. */
enum ism_yaml_type {
	ISM_YAML_STR = 0,
	ISM_YAML_NULL,	/* "", ~, null, Null, NULL */
	ISM_YAML_BOOL,	/* ism_yaml_bool's words */
	ISM_YAML_INT,	/* 80, -1, 0x1f, 0o17, 0b101, 1_000 */
	ISM_YAML_FLOAT, /* 1.5, -2.5e3, .inf, .nan */
};
enum ism_yaml_type ism_yaml_resolve(const char *s);
/* Whether s is one of YAML 1.1's boolean words (y, Y, yes, Yes, YES, n, N, no,
 * No, NO, true, True, TRUE, false, False, FALSE, on, On, ON, off, Off, OFF),
 * and its value in *value. */
bool ism_yaml_bool(const char *s, bool *value);
const char *ism_node_kind_name(enum ism_node_kind k);

/* --- diagnostics --- */

void ism_diag_addv(struct ism_diags *d, enum ism_diag_severity sev, const char *file, int line,
		   int col, const char *field, const char *fmt, va_list ap)
    __attribute__((format(printf, 7, 0)));

#endif
