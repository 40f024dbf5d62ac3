/* SPDX-License-Identifier: Apache-2.0 */
/* YAML text to position-keeping trees (libyaml event API), and the pool. */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "conf/tree.h"
#include "lib/strmap.h"

/* --- pool --- */

struct ism_pool_block {
	struct ism_pool_block *next;
	size_t size;
	_Alignas(16) unsigned char data[];
};

#define POOL_BLOCK 16384

void ism_pool_init(struct ism_pool *p)
{
	p->head = NULL;
	p->lo = p->hi = 0;
}

/* size bytes at the bottom (aligned: a multiple of 16) or at the top of the
 * head's free bytes; NULL when malloc fails. */
static void *pool_take(struct ism_pool *p, size_t size, bool aligned)
{
	struct ism_pool_block *b;
	size_t want = aligned ? (size + 15) & ~(size_t)15 : size;
	unsigned char *ret;

	if (want < size)
		return NULL;
	if (p->head == NULL || p->hi - p->lo < want) {
		size_t bsize = want > POOL_BLOCK ? want : POOL_BLOCK;

		if (bsize > SIZE_MAX - sizeof(*b))
			return NULL;
		b = malloc(sizeof(*b) + bsize);
		if (b == NULL)
			return NULL;
		b->size = bsize;
		/* A large one-off request gets its own block behind the head, so the
		 * rest of the current block stays usable. */
		if (p->head != NULL && bsize == want && p->hi > p->lo) {
			b->next = p->head->next;
			p->head->next = b;
			memset(b->data, 0, want);
			return b->data;
		}
		b->next = p->head;
		p->head = b;
		p->lo = 0;
		p->hi = bsize;
	}
	if (aligned) {
		ret = p->head->data + p->lo;
		p->lo += want;
	} else {
		p->hi -= want;
		ret = p->head->data + p->hi;
	}
	memset(ret, 0, want);
	return ret;
}

void *ism_pool_alloc(struct ism_pool *p, size_t size)
{
	return pool_take(p, size, true);
}

char *ism_pool_strndup(struct ism_pool *p, const char *s, size_t len)
{
	char *r;

	if (len == SIZE_MAX)
		return NULL;
	/* Strings need no alignment: packed, a short one costs its bytes only. */
	r = pool_take(p, len + 1, false);
	if (r == NULL)
		return NULL;
	memcpy(r, s, len);
	r[len] = '\0';
	return r;
}

void ism_pool_free(struct ism_pool *p)
{
	struct ism_pool_block *b = p->head;

	while (b != NULL) {
		struct ism_pool_block *next = b->next;

		free(b);
		b = next;
	}
	p->head = NULL;
	p->lo = p->hi = 0;
}

/* --- tree queries --- */

struct ism_node *ism_node_get(const struct ism_node *map, const char *key,
			      const struct ism_node **keynode)
{
	size_t i = 0;

	if (map == NULL || map->kind != ISM_NODE_MAP)
		return NULL;
	if (map->index != NULL) {
		uint32_t at;

		if (!ism_strmap_get(map->index, key, strlen(key), &at))
			return NULL;
		i = at;
	} else {
		while (i < map->n && strcmp(map->pairs[i].key->str, key) != 0)
			i++;
		if (i == map->n)
			return NULL;
	}
	if (keynode != NULL)
		*keynode = map->pairs[i].key;
	return map->pairs[i].value;
}

bool ism_node_is_null(const struct ism_node *n)
{
	if (n == NULL || n->kind != ISM_NODE_SCALAR || !n->plain)
		return false;
	return ism_yaml_resolve(n->str) == ISM_YAML_NULL;
}

static bool yaml_word(const char *s, const char *const *words)
{
	for (; *words != NULL; words++)
		if (strcmp(s, *words) == 0)
			return true;
	return false;
}

bool ism_yaml_bool(const char *s, bool *value)
{
	static const char *const trues[] = {"y",    "Y",    "yes", "Yes", "YES", "true",
					    "True", "TRUE", "on",  "On",  "ON",	 NULL};
	static const char *const falses[] = {"n",     "N",     "no",  "No",  "NO",  "false",
					     "False", "FALSE", "off", "Off", "OFF", NULL};

	if (yaml_word(s, trues))
		*value = true;
	else if (yaml_word(s, falses))
		*value = false;
	else
		return false;
	return true;
}

enum ism_yaml_type ism_yaml_resolve(const char *s)
{
	static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
	static const char *const nans[] = {".nan", ".NaN", ".NAN", NULL};
	static const char *const infs[] = {".inf", ".Inf", ".INF", NULL};
	const char *p = s;
	bool digits = false, dot = false, b;

	if (yaml_word(s, nulls))
		return ISM_YAML_NULL;
	if (ism_yaml_bool(s, &b))
		return ISM_YAML_BOOL;
	if (yaml_word(s, nans))
		return ISM_YAML_FLOAT;
	if (*p == '+' || *p == '-')
		p++;
	if (yaml_word(p, infs))
		return ISM_YAML_FLOAT;
	/* go-yaml v2 drops each '_' and parses with Go's ParseInt(s, 0, 64): a
	 * prefix takes its own digits, at least one ("0bde4f1", "0o9", "0x_"
	 * are strings) */
	if (p[0] == '0' && (p[1] == 'x' || p[1] == 'b' || p[1] == 'o')) {
		const char *set = p[1] == 'x'	? "0123456789abcdefABCDEF_"
				  : p[1] == 'b' ? "01_"
						: "01234567_";

		if (strspn(p + 2, set) == strlen(p + 2) && strspn(p + 2, "_") < strlen(p + 2))
			return ISM_YAML_INT;
		return ISM_YAML_STR;
	}
	for (; *p; p++) {
		if (*p >= '0' && *p <= '9')
			digits = true;
		else if (*p == '_' && digits)
			continue;
		else if (*p == '.' && !dot)
			dot = true;
		else
			break;
	}
	if (!digits)
		return ISM_YAML_STR;
	if ((*p == 'e' || *p == 'E') && dot) {
		p++;
		if (*p == '+' || *p == '-')
			p++;
		if (*p < '0' || *p > '9')
			return ISM_YAML_STR;
		p += strspn(p, "0123456789");
	}
	if (*p != '\0')
		return ISM_YAML_STR;
	return dot ? ISM_YAML_FLOAT : ISM_YAML_INT;
}

const char *ism_node_kind_name(enum ism_node_kind k)
{
	switch (k) {
	case ISM_NODE_SCALAR:
		return "a string";
	case ISM_NODE_MAP:
		return "a mapping";
	case ISM_NODE_SEQ:
		return "a list";
	}
	return "?";
}

/* --- building --- */

/* Deep nesting (ISM_CONF_MAX_DEPTH) has no use in an appliance file; the
 * bound keeps every later walk over the tree cheap and keeps hostile input
 * from growing the stack. The node bound (ISM_CONF_MAX_NODES) keeps the
 * memory a file of ISM_CONF_MAX_FILE bytes can take to a few hundred MB. */
/* A mapping with this many keys or more finds them by hash, while it is built
 * (duplicate keys) and afterwards (ism_node_get); below, a scan is cheaper. */
#define INDEX_MIN 8

struct frame {
	struct ism_node *node;
	struct ism_node **kids; /* map: key, value, key, value...; seq: items */
	size_t n, cap;
	struct ism_strmap keys; /* map of INDEX_MIN keys or more: key -> key index */
};

struct builder {
	struct ism_pool *pool;
	const char *name;
	struct ism_diags *d;
	struct frame stack[ISM_CONF_MAX_DEPTH];
	int depth;
	struct ism_node **docs;
	size_t n_docs, cap_docs;
	uint64_t seed; /* for the maps of this parse */
	size_t n_nodes;
	const char *buf; /* the text, for what an error points at */
	size_t len;
	int rc;
};

int ism_grow(void *pv, size_t *cap, size_t n, size_t elem)
{
	void **p = pv;
	size_t ncap;
	void *np;

	if (n < *cap)
		return 0;
	ncap = *cap ? *cap * 2 : 8;
	np = realloc(*p, ncap * elem);
	if (np == NULL)
		return -ENOMEM;
	*p = np;
	*cap = ncap;
	return 0;
}

static int builder_error(struct builder *b, const struct ism_node *at, const char *msg)
{
	ism_diag_add(b->d, ISM_DIAG_ERROR, b->name, at->line, at->col, "", "%s", msg);
	b->rc = -EINVAL;
	return 0;
}

/* A node at m in *out: 0, -ENOMEM, or -EINVAL past ISM_CONF_MAX_NODES. */
static int new_node(struct builder *b, enum ism_node_kind kind, const yaml_mark_t *m,
		    struct ism_node **out)
{
	struct ism_node *n = ism_pool_alloc(b->pool, sizeof(*n));

	*out = n;
	if (n == NULL)
		return -ENOMEM;
	n->kind = kind;
	n->line = (int)m->line + 1;
	n->col = (int)m->column + 1;
	if (++b->n_nodes > ISM_CONF_MAX_NODES) {
		char msg[128];

		snprintf(msg, sizeof(msg),
			 "more than %u YAML nodes (keys, values and list items): too big to load",
			 ISM_CONF_MAX_NODES);
		builder_error(b, n, msg);
		return -EINVAL;
	}
	return 0;
}

/* The first key of the mapping being built that equals key k (about to be
 * added), in *first; NULL when none. 0 or -ENOMEM. */
static int find_key(struct builder *b, struct frame *f, const struct ism_node *k,
		    const struct ism_node **first)
{
	size_t nk = f->n / 2;
	uint32_t at;
	int rc;

	*first = NULL;
	if (nk < INDEX_MIN) {
		for (size_t i = 0; i < f->n && *first == NULL; i += 2)
			if (strcmp(f->kids[i]->str, k->str) == 0)
				*first = f->kids[i];
		return 0;
	}
	if (f->keys.n == 0) {
		ism_strmap_init(&f->keys, b->seed);
		/* A key seen twice already was reported: the first one stays. */
		for (size_t i = 0; i < nk; i++)
			if (ism_strmap_add(&f->keys, f->kids[2 * i]->str,
					   strlen(f->kids[2 * i]->str), (uint32_t)i, NULL) < 0)
				return -ENOMEM;
	}
	rc = ism_strmap_add(&f->keys, k->str, strlen(k->str), (uint32_t)nk, &at);
	if (rc < 0)
		return -ENOMEM;
	if (rc == 0)
		*first = f->kids[2 * at];
	return 0;
}

/* Adds a finished node to the enclosing container or document. */
static int attach(struct builder *b, struct ism_node *n)
{
	struct frame *f;

	if (b->depth == 0) {
		if (ism_grow(&b->docs, &b->cap_docs, b->n_docs, sizeof(*b->docs)) < 0)
			return -ENOMEM;
		b->docs[b->n_docs++] = n;
		return 0;
	}
	f = &b->stack[b->depth - 1];
	if (f->node->kind == ISM_NODE_MAP && f->n % 2 == 0) {
		const struct ism_node *first;

		/* Errors here are reported and the node kept, so that the tree
		 * stays well formed and parsing goes on to find more errors. */
		if (n->kind != ISM_NODE_SCALAR) {
			builder_error(b, n, "mapping keys must be strings");
			n->str = "";
		}
		if (find_key(b, f, n, &first) < 0)
			return -ENOMEM;
		if (first != NULL) {
			char msg[512];

			snprintf(msg, sizeof(msg),
				 "duplicate key \"%.200s\" (first at line %d, column %d)", n->str,
				 first->line, first->col);
			builder_error(b, n, msg);
		}
	}
	if (ism_grow(&f->kids, &f->cap, f->n, sizeof(*f->kids)) < 0)
		return -ENOMEM;
	f->kids[f->n++] = n;
	return 0;
}

/* The field path to the node being built ("spec.http[0].route"), from the
 * keys and item counts on the stack; cut with "..." where it does not fit. */
static void stack_path(const struct builder *b, char *buf, size_t size)
{
	size_t len = 0;

	buf[0] = '\0';
	for (int i = 0; i < b->depth && len + 4 < size; i++) {
		const struct frame *f = &b->stack[i];
		int w;

		if (f->node->kind == ISM_NODE_SEQ)
			w = snprintf(buf + len, size - len, "[%zu]", f->n);
		else if (f->n % 2 == 1 && f->kids[f->n - 1]->kind == ISM_NODE_SCALAR)
			w = snprintf(buf + len, size - len, "%s%.64s", len ? "." : "",
				     f->kids[f->n - 1]->str);
		else
			continue;
		if (w < 0 || (size_t)w >= size - len) {
			snprintf(buf + (size > 4 ? size - 4 : 0), size > 4 ? 4 : size, "...");
			return;
		}
		len += (size_t)w;
	}
}

#define YAML_TAG_PREFIX "tag:yaml.org,2002:"

/* The error at n for a tag isthmus does not read, or whose scalar's text is
 * not of its type; the tag as the file writes it, !!name for the core
 * schema's. */
static void tag_error(struct builder *b, const struct ism_node *n, const char *tag, const char *why)
{
	const size_t pl = sizeof(YAML_TAG_PREFIX) - 1;
	const bool core = strncmp(tag, YAML_TAG_PREFIX, pl) == 0;
	char path[256];

	stack_path(b, path, sizeof(path));
	if (why == NULL)
		ism_diag_add(b->d, ISM_DIAG_ERROR, b->name, n->line, n->col, path,
			     "YAML tag %s%.64s is not implemented yet"
			     " (isthmus reads !!str, !!int, !!float, !!bool and !!null)",
			     core ? "!!" : "", core ? tag + pl : tag);
	else
		ism_diag_add(b->d, ISM_DIAG_ERROR, b->name, n->line, n->col, path,
			     "!!%s \"%.64s\" is not %s, as YAML reads it", tag + pl, n->str, why);
	b->rc = -EINVAL;
}

/* A collection's tag: none, or its own kind's. */
static void collection_tag(struct builder *b, const struct ism_node *n, const yaml_char_t *t)
{
	const char *tag = (const char *)t;

	if (tag != NULL && strcmp(tag, n->kind == ISM_NODE_MAP ? YAML_TAG_PREFIX "map"
							       : YAML_TAG_PREFIX "seq") != 0)
		tag_error(b, n, tag, NULL);
}

static int push(struct builder *b, enum ism_node_kind kind, const yaml_mark_t *m,
		const yaml_char_t *tag)
{
	struct ism_node *n;
	struct frame *f;
	int rc = new_node(b, kind, m, &n);

	if (rc < 0)
		return rc;
	collection_tag(b, n, tag);
	if (b->depth == ISM_CONF_MAX_DEPTH) {
		char path[256];

		stack_path(b, path, sizeof(path));
		ism_diag_add(b->d, ISM_DIAG_ERROR, b->name, n->line, n->col, path,
			     "nesting too deep: more than %d levels of mappings and lists",
			     ISM_CONF_MAX_DEPTH);
		b->rc = -EINVAL;
		return -EINVAL;
	}
	f = &b->stack[b->depth++];
	f->node = n;
	f->kids = NULL;
	f->n = 0;
	f->cap = 0;
	ism_strmap_init(&f->keys, b->seed);
	return 0;
}

/* The index ism_node_get uses for a mapping of INDEX_MIN keys or more, in the
 * pool with the tree. NULL when malloc fails. */
static struct ism_strmap *index_map(struct builder *b, const struct ism_node *n)
{
	size_t cap = ism_strmap_fixed_cap(n->n);
	struct ism_strmap *ix = ism_pool_alloc(b->pool, sizeof(*ix));
	struct ism_strmap_slot *slots;

	if (ix == NULL || cap == 0)
		return NULL;
	slots = ism_pool_alloc(b->pool, cap * sizeof(*slots));
	if (slots == NULL)
		return NULL;
	ism_strmap_init_fixed(ix, b->seed, slots, cap);
	/* Duplicates (reported) keep the first, as the scan would find it. */
	for (size_t i = 0; i < n->n; i++)
		ism_strmap_add(ix, n->pairs[i].key->str, strlen(n->pairs[i].key->str), (uint32_t)i,
			       NULL);
	return ix;
}

static int pop(struct builder *b)
{
	struct frame *f = &b->stack[--b->depth];
	struct ism_node *n = f->node;
	int rc = 0;

	if (n->kind == ISM_NODE_MAP) {
		n->n = f->n / 2;
		n->pairs = ism_pool_alloc(b->pool, (n->n ? n->n : 1) * sizeof(*n->pairs));
		if (n->pairs == NULL) {
			rc = -ENOMEM;
			goto out_kids;
		}
		for (size_t i = 0; i < n->n; i++) {
			n->pairs[i].key = f->kids[2 * i];
			n->pairs[i].value = f->kids[2 * i + 1];
		}
		if (n->n >= INDEX_MIN) {
			n->index = index_map(b, n);
			if (n->index == NULL) {
				rc = -ENOMEM;
				goto out_kids;
			}
		}
	} else {
		n->n = f->n;
		n->items = ism_pool_alloc(b->pool, (n->n ? n->n : 1) * sizeof(*n->items));
		if (n->items == NULL) {
			rc = -ENOMEM;
			goto out_kids;
		}
		if (n->n)
			memcpy(n->items, f->kids, n->n * sizeof(*n->items));
	}
	rc = attach(b, n);
out_kids:
	free(f->kids);
	f->kids = NULL;
	ism_strmap_free(&f->keys);
	return rc;
}

/* A scalar's tag (its text in n->str): a core type's, as go-yaml reads it
 * for Kubernetes (!!str a string whatever its text; !!int, !!float, !!bool,
 * !!null a value of that type, written quoted or not), into n->tag and
 * n->plain; any other is refused (reported). */
static void scalar_tag(struct builder *b, struct ism_node *n, const yaml_char_t *t)
{
	static const struct {
		const char *name, *what;
		uint8_t tag;
		enum ism_yaml_type type;
	} core[] = {
	    {"str", NULL, ISM_TAG_STR, ISM_YAML_STR},
	    {"int", "an integer", ISM_TAG_INT, ISM_YAML_INT},
	    {"float", "a number", ISM_TAG_FLOAT, ISM_YAML_FLOAT},
	    {"bool", "a boolean", ISM_TAG_BOOL, ISM_YAML_BOOL},
	    {"null", "null", ISM_TAG_NULL, ISM_YAML_NULL},
	};
	const size_t pl = sizeof(YAML_TAG_PREFIX) - 1, nc = sizeof(core) / sizeof(core[0]);
	const char *tag = (const char *)t;
	enum ism_yaml_type type;
	size_t i = nc;

	if (tag == NULL)
		return;
	/* The non-specific tag "!": a string, as for a quoted scalar. */
	if (strcmp(tag, "!") == 0) {
		n->tag = ISM_TAG_STR;
		n->plain = false;
		return;
	}
	if (strncmp(tag, YAML_TAG_PREFIX, pl) == 0)
		for (i = 0; i < nc && strcmp(tag + pl, core[i].name) != 0; i++)
			;
	if (i == nc) {
		tag_error(b, n, tag, NULL);
		return;
	}
	n->tag = core[i].tag;
	n->plain = core[i].type != ISM_YAML_STR;
	type = ism_yaml_resolve(n->str);
	/* go-yaml takes an integer for !!float (80 is 80.0). */
	if (n->plain && type != core[i].type &&
	    !(core[i].type == ISM_YAML_FLOAT && type == ISM_YAML_INT))
		tag_error(b, n, tag, core[i].what);
}

static int on_scalar(struct builder *b, const yaml_event_t *ev)
{
	size_t len = ev->data.scalar.length;
	struct ism_node *n;
	int rc = new_node(b, ISM_NODE_SCALAR, &ev->start_mark, &n);

	if (rc < 0)
		return rc;
	n->str = ism_pool_strndup(b->pool, (const char *)ev->data.scalar.value, len);
	if (n->str == NULL)
		return -ENOMEM;
	/* An embedded NUL would make the C string lie about the value. */
	if (strlen(n->str) != len)
		builder_error(b, n, "NUL character in a string");
	n->len = len;
	n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
	scalar_tag(b, n, ev->data.scalar.tag);
	return attach(b, n);
}

/* The line and column (from 1, columns in characters as libyaml counts
 * them) of byte off of the text. */
static void text_position(const struct builder *b, size_t off, int *line, int *col)
{
	int l = 1, c = 1;

	for (size_t i = 0; i < off && i < b->len; i++) {
		unsigned char ch = (unsigned char)b->buf[i];

		if (ch == '\n' || (ch == '\r' && (i + 1 >= b->len || b->buf[i + 1] != '\n'))) {
			l++;
			c = 1;
		} else if ((ch & 0xc0) != 0x80 && ch != '\r') {
			c++; /* a UTF-8 continuation byte is part of the character before */
		}
	}
	*line = l;
	*col = c;
}

/* libyaml's reader decodes the text ahead of the scanner, and tells where it
 * found a byte that is not UTF-8 or a character YAML refuses (a NUL, another
 * control) by its offset alone: its problem_mark is left at the start. */
static void reader_error(struct builder *b, const yaml_parser_t *p)
{
	const char *what = p->problem ? p->problem : "error";
	int line, col;

	text_position(b, p->problem_offset, &line, &col);
	if (strstr(what, "control") != NULL)
		ism_diag_add(b->d, ISM_DIAG_ERROR, b->name, line, col, "",
			     "YAML syntax error: %s (U+%04X)", what, (unsigned)p->problem_value);
	else if (p->problem_value >= 0)
		ism_diag_add(b->d, ISM_DIAG_ERROR, b->name, line, col, "",
			     "YAML syntax error: not UTF-8 text: %s (byte 0x%02X)", what,
			     (unsigned)p->problem_value);
	else
		ism_diag_add(b->d, ISM_DIAG_ERROR, b->name, line, col, "",
			     "YAML syntax error: not UTF-8 text: %s", what);
	b->rc = -EINVAL;
}

static void syntax_error(struct builder *b, const yaml_parser_t *p)
{
	const yaml_mark_t *m = &p->problem_mark;

	if (p->error == YAML_MEMORY_ERROR) {
		b->rc = -ENOMEM;
		ism_diag_add(b->d, ISM_DIAG_ERROR, b->name, 0, 0, "", "out of memory");
		return;
	}
	if (p->error == YAML_READER_ERROR) {
		reader_error(b, p);
		return;
	}
	if (m->index < b->len && b->buf[m->index] == '\t')
		/* libyaml's words for it ("cannot start any token") do not say
		 * what is wrong. */
		ism_diag_add(b->d, ISM_DIAG_ERROR, b->name, (int)m->line + 1, (int)m->column + 1,
			     "",
			     "YAML syntax error: a tab character; YAML indents with spaces only");
	else if (p->context != NULL)
		ism_diag_add(b->d, ISM_DIAG_ERROR, b->name, (int)m->line + 1, (int)m->column + 1,
			     "", "YAML syntax error: %s %s (line %d, column %d)",
			     p->problem ? p->problem : "error", p->context,
			     (int)p->context_mark.line + 1, (int)p->context_mark.column + 1);
	else
		ism_diag_add(b->d, ISM_DIAG_ERROR, b->name, (int)m->line + 1, (int)m->column + 1,
			     "", "YAML syntax error: %s", p->problem ? p->problem : "error");
	b->rc = -EINVAL;
}

static int step(struct builder *b, const yaml_event_t *ev)
{
	switch (ev->type) {
	case YAML_MAPPING_START_EVENT:
		return push(b, ISM_NODE_MAP, &ev->start_mark, ev->data.mapping_start.tag);
	case YAML_SEQUENCE_START_EVENT:
		return push(b, ISM_NODE_SEQ, &ev->start_mark, ev->data.sequence_start.tag);
	case YAML_MAPPING_END_EVENT:
	case YAML_SEQUENCE_END_EVENT:
		return pop(b);
	case YAML_SCALAR_EVENT:
		return on_scalar(b, ev);
	case YAML_ALIAS_EVENT: {
		/* Aliases would let a few bytes expand into a huge tree, and no Istio
		 * resource needs them. */
		struct ism_node at = {.line = (int)ev->start_mark.line + 1,
				      .col = (int)ev->start_mark.column + 1};

		builder_error(b, &at, "YAML aliases (*name) are not supported");
		return -EINVAL;
	}
	default:
		return 0;
	}
}

/* The length of a UTF-8 byte order mark at the start of buf (len bytes): 3 or 0. */
static size_t utf8_bom(const char *buf, size_t len)
{
	return len >= 3 && memcmp(buf, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
}

int ism_yaml_parse(struct ism_pool *pool, const char *name, const char *buf, size_t len,
		   struct ism_yaml_docs *out, struct ism_diags *d)
{
	/* A UTF-8 byte order mark (which editors on Windows write) is no
	 * character of the text, as go-yaml (kubectl) and PyYAML read it:
	 * libyaml, told the encoding, would count it as the first line's first
	 * column, and the first key would not line up with the next. */
	const size_t bom = utf8_bom(buf, len);
	struct builder b = {.pool = pool,
			    .name = name,
			    .d = d,
			    .seed = ism_strmap_seed(),
			    .buf = buf + bom,
			    .len = len - bom};
	yaml_parser_t parser;
	yaml_event_t ev;
	bool done = false;
	int rc = 0;

	out->n = 0;
	out->docs = NULL;
	buf += bom;
	len -= bom;
	/* The file is UTF-8 (as documented): libyaml would read UTF-16 after its
	 * byte order mark, which no other tool of a UTF-8 setup does. */
	if (len >= 2 &&
	    ((buf[0] == '\xff' && buf[1] == '\xfe') || (buf[0] == '\xfe' && buf[1] == '\xff'))) {
		ism_diag_add(d, ISM_DIAG_ERROR, name, 1, 1, "",
			     "the file is UTF-16 text (it starts with a UTF-16 byte order mark): "
			     "isthmus reads UTF-8 only");
		return -EINVAL;
	}
	if (!yaml_parser_initialize(&parser))
		return -ENOMEM;
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	yaml_parser_set_encoding(&parser, YAML_UTF8_ENCODING);
	while (!done) {
		if (!yaml_parser_parse(&parser, &ev)) {
			syntax_error(&b, &parser);
			rc = b.rc;
			goto out_stack;
		}
		done = ev.type == YAML_STREAM_END_EVENT;
		rc = step(&b, &ev);
		yaml_event_delete(&ev);
		if (rc < 0)
			goto out_stack;
	}
	rc = b.rc;
	if (rc < 0)
		goto out_stack;
	out->docs = ism_pool_alloc(pool, (b.n_docs ? b.n_docs : 1) * sizeof(*out->docs));
	if (out->docs == NULL) {
		rc = -ENOMEM;
		goto out_stack;
	}
	if (b.n_docs)
		memcpy(out->docs, b.docs, b.n_docs * sizeof(*out->docs));
	out->n = b.n_docs;
out_stack:
	while (b.depth > 0) {
		b.depth--;
		free(b.stack[b.depth].kids);
		ism_strmap_free(&b.stack[b.depth].keys);
	}
	free(b.docs);
	yaml_parser_delete(&parser);
	if (rc == -ENOMEM && d->n_errors == 0)
		ism_diag_add(d, ISM_DIAG_ERROR, name, 0, 0, "", "out of memory");
	return rc;
}
