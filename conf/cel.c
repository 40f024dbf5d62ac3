/* SPDX-License-Identifier: Apache-2.0 */
/* The CEL compiler: a recursive descent over cel-spec's grammar
 * (doc/langdef.md, "Syntax"), one function a precedence level, building the
 * program's nodes as it goes. Recursion happens only where the text nests
 * (brackets, a conditional's else branch), each level counted against
 * ISM_CEL_MAX_NEST; operator chains are loops, and the tree's height is
 * counted against ISM_CEL_MAX_HEIGHT as nodes are made, which bounds the
 * evaluator. Attributes are resolved here, by their dotted names, so that a
 * typo is a configuration error rather than a filter that never logs. */
#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/cel-int.h"
#include "conf/cel-lex.h"
#include "conf/cel.h"

struct cel_cc {
	const char *src;
	size_t len, pos; /* pos: where the next token is looked for */
	const struct ism_cel_attr *attrs;
	size_t n_attrs;
	int depth;
	uint16_t n;
	uint32_t pool_len;
	bool failed;
	size_t err_at;
	char err[160];
	struct cel_node node[ISM_CEL_MAX_NODES];
	uint32_t at[ISM_CEL_MAX_NODES];	   /* a node's offset in the text */
	uint8_t height[ISM_CEL_MAX_NODES]; /* of the tree under a node */
	bool sel[ISM_CEL_MAX_NODES];	   /* made by a field selection a.b */
	char pool[ISM_CEL_MAX_LEN];	   /* never longer than the text */
	char buf[ISM_CEL_MAX_LEN + 1];	   /* the lexer's scratch */
	char path[ISM_CEL_MAX_LEN + 1];	   /* an attribute's dotted name */
};

static int parse_expr(struct cel_cc *cc);
static int parse_postfix(struct cel_cc *cc, int x);

__attribute__((format(printf, 3, 4))) static int fail(struct cel_cc *cc, size_t at, const char *fmt,
						      ...)
{
	va_list ap;

	if (cc->failed)
		return -1;
	cc->failed = true;
	cc->err_at = at;
	va_start(ap, fmt);
	vsnprintf(cc->err, sizeof(cc->err), fmt, ap);
	va_end(ap);
	return -1;
}

/* The token at pos; a lexing error becomes the compile error. */
static int peek_at(struct cel_cc *cc, size_t pos, struct cel_tok *t)
{
	if (cel_lex(cc->src, cc->len, pos, t, cc->buf) < 0)
		return fail(cc, t->at, "%s", t->why);
	return 0;
}

static int peek(struct cel_cc *cc, struct cel_tok *t)
{
	return peek_at(cc, cc->pos, t);
}

static int tok_len(const struct cel_tok *t)
{
	return (int)(t->end - t->start > 24 ? 24 : t->end - t->start);
}

static int unexpected(struct cel_cc *cc, const struct cel_tok *t)
{
	if (t->kind == CEL_TK_EOF)
		return fail(cc, t->start, "unexpected end of expression");
	return fail(cc, t->start, "unexpected '%.*s'", tok_len(t), cc->src + t->start);
}

static int expect(struct cel_cc *cc, const char *op)
{
	struct cel_tok t;

	if (peek(cc, &t) < 0)
		return -1;
	if (!cel_tok_is(&t, op)) {
		if (t.kind == CEL_TK_EOF)
			return fail(cc, t.start, "expected '%s' before the end", op);
		return fail(cc, t.start, "expected '%s', not '%.*s'", op, tok_len(&t),
			    cc->src + t.start);
	}
	cc->pos = t.end;
	return 0;
}

/* Whether a node over children as high as h would be too high (an error). */
static bool too_high(struct cel_cc *cc, size_t at, int h)
{
	if (h + 1 <= ISM_CEL_MAX_HEIGHT)
		return false;
	fail(cc, at, "expression too deep: more than %d levels of operators", ISM_CEL_MAX_HEIGHT);
	return true;
}

static int node_add(struct cel_cc *cc, enum cel_op op, size_t at, int k0, int k1, int k2)
{
	int kids[3] = {k0, k1, k2}, h = 0;
	struct cel_node *n;

	if (cc->failed || k0 < -1 || k1 < -1 || k2 < -1)
		return -1;
	if (cc->n >= ISM_CEL_MAX_NODES)
		return fail(cc, at, "expression too large: more than %d operators and operands",
			    ISM_CEL_MAX_NODES);
	for (int k = 0; k < 3; k++)
		if (kids[k] >= 0 && cc->height[kids[k]] > h)
			h = cc->height[kids[k]];
	if (too_high(cc, at, h))
		return -1;
	n = &cc->node[cc->n];
	memset(n, 0, sizeof(*n));
	n->op = (uint8_t)op;
	for (int k = 0; k < 3; k++)
		n->kid[k] = kids[k] >= 0 ? (uint16_t)kids[k] : CEL_NONE;
	n->next = CEL_NONE;
	cc->at[cc->n] = (uint32_t)at;
	cc->height[cc->n] = (uint8_t)(h + 1);
	cc->sel[cc->n] = false;
	return cc->n++;
}

/* Node x, a literal of type. */
static int lit(struct cel_cc *cc, size_t at, enum ism_cel_type type)
{
	int x = node_add(cc, CEL_LIT, at, -1, -1, -1);

	if (x >= 0)
		cc->node[x].type = (uint8_t)type;
	return x;
}

/* n bytes at p into the pool: its offset. The pool holds what the text
 * spelled, decoded never longer, so it cannot overflow. */
static uint32_t pool_add(struct cel_cc *cc, const char *p, size_t n)
{
	uint32_t off = cc->pool_len;

	memcpy(cc->pool + off, p, n);
	cc->pool_len += (uint32_t)n;
	return off;
}

static int lit_string(struct cel_cc *cc, const struct cel_tok *t)
{
	size_t n, at;
	int x;

	if (t->bytes)
		return fail(cc, t->start, "bytes literals are not implemented yet");
	if (cel_lex_decode(cc->src, t, cc->pool + cc->pool_len, &n, &at) < 0)
		return fail(cc, at, "invalid escape sequence in a string literal");
	x = lit(cc, t->start, ISM_CEL_STRING);
	if (x < 0)
		return -1;
	cc->node[x].v.s.off = cc->pool_len;
	cc->node[x].v.s.len = (uint32_t)n;
	cc->pool_len += (uint32_t)n;
	return x;
}

/* A number literal, negated when a unary minus stood before it: CEL's
 * grammar makes -9223372036854775808 one literal. */
static int lit_number(struct cel_cc *cc, const struct cel_tok *t, bool neg)
{
	int x;

	if (t->kind == CEL_TK_DOUBLE) {
		x = lit(cc, t->start, ISM_CEL_DOUBLE);
		if (x >= 0)
			cc->node[x].v.d = neg ? -t->d : t->d;
		return x;
	}
	if (t->kind == CEL_TK_UINT) {
		x = lit(cc, t->start, ISM_CEL_UINT);
		if (x >= 0)
			cc->node[x].v.u = t->u;
		return neg ? node_add(cc, CEL_NEG, t->start, x, -1, -1) : x;
	}
	if (t->u > (uint64_t)INT64_MAX + (neg ? 1 : 0))
		return fail(cc, t->start, "integer literal out of range");
	x = lit(cc, t->start, ISM_CEL_INT);
	if (x >= 0)
		cc->node[x].v.i = neg ? (int64_t)(0 - t->u) : (int64_t)t->u;
	return x;
}

/* The attribute named path (n bytes): its index, or -1; *prefix tells
 * whether path and a dot begin some attribute's name. */
static int attr_find(const struct cel_cc *cc, const char *path, size_t n, bool *prefix)
{
	int found = -1;

	*prefix = false;
	for (size_t k = 0; k < cc->n_attrs; k++) {
		const char *name = cc->attrs[k].name;
		size_t len = strlen(name);

		if (len < n || memcmp(name, path, n) != 0)
			continue;
		if (len == n)
			found = (int)k;
		else if (name[n] == '.')
			*prefix = true;
	}
	return found;
}

/* Whether the next tokens are '.', a name, and something other than '(':
 * a field selection that may extend an attribute's dotted name; *name is
 * the name's token. */
static bool next_field(struct cel_cc *cc, struct cel_tok *name)
{
	struct cel_tok dot, after;

	if (peek(cc, &dot) < 0 || !cel_tok_is(&dot, "."))
		return false;
	if (peek_at(cc, dot.end, name) < 0 || name->kind != CEL_TK_IDENT)
		return false;
	return peek_at(cc, name->end, &after) == 0 && !cel_tok_is(&after, "(");
}

/* The attribute whose dotted name starts with the identifier first: the
 * longest run of selections ".name" that still spells a prefix of some
 * attribute's name, and that name must be an attribute's. What follows
 * (a map's key, a method) is the postfix parser's. */
static int parse_attr(struct cel_cc *cc, const struct cel_tok *first)
{
	size_t n = first->end - first->start, m;
	struct cel_tok name;
	bool prefix, dotted = false;
	int k, x;

	memcpy(cc->path, cc->src + first->start, n);
	cc->pos = first->end;
	while (next_field(cc, &name)) {
		m = n + 1 + (name.end - name.start);
		cc->path[n] = '.';
		memcpy(cc->path + n + 1, cc->src + name.start, m - n - 1);
		if (attr_find(cc, cc->path, m, &prefix) < 0 && !prefix) {
			if (attr_find(cc, cc->path, n, &prefix) < 0)
				return fail(cc, first->start, "unknown attribute '%.*s'", (int)m,
					    cc->path);
			break;
		}
		n = m;
		cc->pos = name.end;
		dotted = true;
	}
	k = attr_find(cc, cc->path, n, &prefix);
	if (k < 0)
		return fail(cc, first->start, "unknown attribute '%.*s'", (int)n, cc->path);
	x = node_add(cc, cc->attrs[k].type == ISM_CEL_MAP ? CEL_MAPREF : CEL_ATTR, first->start, -1,
		     -1, -1);
	if (x >= 0) {
		cc->node[x].id = cc->attrs[k].id;
		cc->sel[x] = dotted;
	}
	return x;
}

/* One more level of nesting at offset at, or an error. */
static int nest_in(struct cel_cc *cc, size_t at)
{
	if (++cc->depth > ISM_CEL_MAX_NEST)
		return fail(cc, at, "nested deeper than %d levels", ISM_CEL_MAX_NEST);
	return 0;
}

/* An expression one level deeper, opened at offset at. */
static int parse_nested(struct cel_cc *cc, size_t at)
{
	int x = nest_in(cc, at) < 0 ? -1 : parse_expr(cc);

	cc->depth--;
	return x;
}

/* The arguments of a call, after its '(' at offset at: up to max into args
 * (the others are parsed but dropped), their count in *n. */
static int parse_args(struct cel_cc *cc, size_t at, int *args, int max, int *n)
{
	struct cel_tok t;
	int x;

	*n = 0;
	if (peek(cc, &t) < 0)
		return -1;
	if (cel_tok_is(&t, ")")) {
		cc->pos = t.end;
		return 0;
	}
	for (;;) {
		x = parse_nested(cc, at);
		if (x < 0)
			return -1;
		if (*n < max)
			args[*n] = x;
		++*n;
		if (peek(cc, &t) < 0)
			return -1;
		cc->pos = t.end;
		if (cel_tok_is(&t, ")"))
			return 0;
		if (!cel_tok_is(&t, ","))
			return fail(cc, t.start, "expected ',' or ')' in a call's arguments");
	}
}

struct cel_fn {
	const char *name;
	uint8_t op;   /* enum cel_op */
	uint8_t argc; /* besides the receiver */
	bool method;  /* called as r.name(...) */
};

static const struct cel_fn functions[] = {
    {"size", CEL_SIZE, 1, false},	 {"size", CEL_SIZE, 0, true},
    {"startsWith", CEL_STARTS, 1, true}, {"endsWith", CEL_ENDS, 1, true},
    {"contains", CEL_CONTAINS, 1, true}, {"int", CEL_TO_INT, 1, false},
    {"uint", CEL_TO_UINT, 1, false},	 {"double", CEL_TO_DOUBLE, 1, false},
    {"string", CEL_TO_STRING, 1, false}, {"duration", CEL_TO_DURATION, 1, false},
};

/* CEL's standard functions and macros, and the extensions' that Envoy may
 * enable, that the subset lacks. */
static const char *const not_yet[] = {
    "all",	     "exists",	     "exists_one",   "map",	    "filter",	  "matches",
    "timestamp",     "bytes",	     "type",	     "dyn",	    "bool",	  "getDate",
    "getDayOfMonth", "getDayOfWeek", "getDayOfYear", "getFullYear", "getHours",	  "getMilliseconds",
    "getMinutes",    "getMonth",     "getSeconds",   "lowerAscii",  "upperAscii", "replace",
    "split",	     "join",	     "substring",    "trim",	    "indexOf",	  "lastIndexOf",
    "charAt",	     "format",	     "quote",	     "reverse",	    "optional",	  "orValue",
    "hasValue",	     "value",	     "or",	     "sort",
};

static bool name_is(const struct cel_cc *cc, const struct cel_tok *t, const char *name)
{
	size_t n = t->end - t->start;

	return strlen(name) == n && memcmp(cc->src + t->start, name, n) == 0;
}

/* The function name (token t) called as a method or not, or an error
 * that says why there is none. */
static const struct cel_fn *find_fn(struct cel_cc *cc, const struct cel_tok *t, bool method)
{
	int n = tok_len(t);
	bool other = false;

	for (size_t k = 0; k < sizeof(functions) / sizeof(functions[0]); k++)
		if (name_is(cc, t, functions[k].name)) {
			if (functions[k].method == method)
				return &functions[k];
			other = true;
		}
	for (size_t k = 0; k < sizeof(not_yet) / sizeof(not_yet[0]); k++)
		if (name_is(cc, t, not_yet[k])) {
			fail(cc, t->start, "'%.*s' is not implemented yet", n, cc->src + t->start);
			return NULL;
		}
	if (other)
		fail(cc, t->start,
		     method ? "'%.*s' is not a method: call it as %.*s(x)"
			    : "'%.*s' is a method: call it as s.%.*s(x)",
		     n, cc->src + t->start, n, cc->src + t->start);
	else
		fail(cc, t->start, "unknown function '%.*s'", n, cc->src + t->start);
	return NULL;
}

/* duration('...') with a literal argument becomes the duration itself:
 * Envoy's cel-cpp folds constants, and a bad one fails the configuration. */
static int fold_duration(struct cel_cc *cc, int call, int arg)
{
	struct cel_node *a = &cc->node[arg];
	int64_t ns;

	if (a->op != CEL_LIT || a->type != ISM_CEL_STRING)
		return call;
	if (cel_duration_parse(cc->pool + a->v.s.off, a->v.s.len, &ns) < 0)
		return fail(cc, cc->at[arg], "invalid duration '%.*s'", (int)a->v.s.len,
			    cc->pool + a->v.s.off);
	a->type = ISM_CEL_DURATION;
	a->v.ns = ns;
	return arg;
}

/* A call of the function named by token name, its '(' next; recv is the
 * receiver's node for a method, else -1. */
static int parse_call(struct cel_cc *cc, const struct cel_tok *name, int recv)
{
	const struct cel_fn *fn = find_fn(cc, name, recv >= 0);
	struct cel_tok open;
	int args[2] = {-1, -1}, n, x;

	if (fn == NULL || peek(cc, &open) < 0)
		return -1;
	cc->pos = open.end;
	if (parse_args(cc, open.start, args, 1, &n) < 0)
		return -1;
	if (n != fn->argc)
		return fail(cc, name->start, "'%s' takes %d argument%s, not %d", fn->name, fn->argc,
			    fn->argc == 1 ? "" : "s", n);
	if (recv >= 0)
		return node_add(cc, fn->op, name->start, recv, args[0], -1);
	x = node_add(cc, fn->op, name->start, args[0], -1, -1);
	return fn->op == CEL_TO_DURATION && x >= 0 ? fold_duration(cc, x, args[0]) : x;
}

/* has(a.b): whether attribute a.b has a value, or map a holds key b. CEL
 * allows only a field selection inside. */
static int parse_has(struct cel_cc *cc, const struct cel_tok *name)
{
	struct cel_tok open;
	int arg = -1, n;
	struct cel_node *a;

	if (peek(cc, &open) < 0)
		return -1;
	cc->pos = open.end;
	if (parse_args(cc, open.start, &arg, 1, &n) < 0)
		return -1;
	if (n != 1)
		return fail(cc, name->start, "'has' takes 1 argument, not %d", n);
	a = &cc->node[arg];
	if (!cc->sel[arg] || (a->op != CEL_ATTR && a->op != CEL_MAPKEY && a->op != CEL_MAPREF))
		return fail(cc, cc->at[arg], "has() needs a field selection, as in has(m.key)");
	if (a->op == CEL_MAPREF)
		return fail(cc, cc->at[arg], "has() of a map attribute is not implemented yet");
	a->op = a->op == CEL_ATTR ? CEL_HAS_ATTR : CEL_HAS_KEY;
	return arg;
}

/* CEL's reserved words, which name nothing. */
static const char *const reserved[] = {
    "as",  "break", "const",   "continue",  "else",   "for", "function", "if",	  "import",
    "let", "loop",  "package", "namespace", "return", "var", "void",	 "while", "in",
};

static int parse_ident(struct cel_cc *cc, const struct cel_tok *t)
{
	struct cel_tok next;
	int x;

	if (name_is(cc, t, "true") || name_is(cc, t, "false")) {
		cc->pos = t->end;
		x = lit(cc, t->start, ISM_CEL_BOOL);
		if (x >= 0)
			cc->node[x].v.i = name_is(cc, t, "true");
		return x;
	}
	if (name_is(cc, t, "null")) {
		cc->pos = t->end;
		return lit(cc, t->start, ISM_CEL_NULL);
	}
	for (size_t k = 0; k < sizeof(reserved) / sizeof(reserved[0]); k++)
		if (name_is(cc, t, reserved[k]))
			return fail(cc, t->start, "unexpected reserved word '%s'", reserved[k]);
	if (peek_at(cc, t->end, &next) < 0)
		return -1;
	if (!cel_tok_is(&next, "("))
		return parse_attr(cc, t);
	cc->pos = t->end;
	return name_is(cc, t, "has") ? parse_has(cc, t) : parse_call(cc, t, -1);
}

/* A list literal after its '[' at offset at: elements chained by next. */
static int parse_list(struct cel_cc *cc, size_t at)
{
	int first = -1, last = -1, x, h = 0;
	struct cel_tok t;

	for (;;) {
		if (peek(cc, &t) < 0)
			return -1;
		if (cel_tok_is(&t, "]"))
			break;
		x = parse_nested(cc, at);
		if (x < 0)
			return -1;
		if (last >= 0)
			cc->node[last].next = (uint16_t)x;
		else
			first = x;
		last = x;
		h = cc->height[x] > h ? cc->height[x] : h;
		if (peek(cc, &t) < 0)
			return -1;
		if (!cel_tok_is(&t, ",") && !cel_tok_is(&t, "]"))
			return fail(cc, t.start, "expected ',' or ']' in a list");
		if (cel_tok_is(&t, ","))
			cc->pos = t.end;
	}
	cc->pos = t.end;
	x = node_add(cc, CEL_LIST, at, first, -1, -1);
	if (x >= 0 && too_high(cc, at, h))
		return -1;
	if (x >= 0)
		cc->height[x] = (uint8_t)(h + 1);
	return x;
}

static int parse_primary(struct cel_cc *cc)
{
	struct cel_tok t;
	int x;

	if (peek(cc, &t) < 0)
		return -1;
	switch (t.kind) {
	case CEL_TK_IDENT:
		return parse_ident(cc, &t);
	case CEL_TK_INT:
	case CEL_TK_UINT:
	case CEL_TK_DOUBLE:
		cc->pos = t.end;
		return lit_number(cc, &t, false);
	case CEL_TK_STRING:
		cc->pos = t.end;
		return lit_string(cc, &t);
	default:
		break;
	}
	cc->pos = t.end;
	if (cel_tok_is(&t, "(")) {
		x = parse_nested(cc, t.start);
		return x < 0 || expect(cc, ")") < 0 ? -1 : x;
	}
	if (cel_tok_is(&t, "["))
		return parse_list(cc, t.start);
	if (cel_tok_is(&t, "{"))
		return fail(cc, t.start, "map literals are not implemented yet");
	if (cel_tok_is(&t, ".") && peek(cc, &t) == 0 && t.kind == CEL_TK_IDENT)
		return parse_ident(cc, &t); /* .name: the root namespace's */
	return unexpected(cc, &t);
}

/* .name after x at dot: a method call, or a map attribute's key. */
static int parse_select(struct cel_cc *cc, int x, const struct cel_tok *dot)
{
	struct cel_tok name, after;
	int y;

	if (peek_at(cc, dot->end, &name) < 0)
		return -1;
	if (name.kind != CEL_TK_IDENT)
		return fail(cc, name.start, "expected a name after '.'");
	cc->pos = name.end;
	if (peek(cc, &after) < 0)
		return -1;
	if (cel_tok_is(&after, "("))
		return parse_call(cc, &name, x);
	if (cc->node[x].op != CEL_MAPREF)
		return fail(cc, name.start, "no field '%.*s': the value is not a map attribute",
			    tok_len(&name), cc->src + name.start);
	y = node_add(cc, CEL_MAPKEY, cc->at[x], -1, -1, -1);
	if (y < 0)
		return -1;
	cc->node[y].id = cc->node[x].id;
	cc->node[y].v.s.len = (uint32_t)(name.end - name.start);
	cc->node[y].v.s.off = pool_add(cc, cc->src + name.start, name.end - name.start);
	cc->sel[y] = true;
	return y;
}

/* [key] after map x, the '[' at offset at. A literal key is kept in the
 * node, looked up without evaluating anything. */
static int parse_index(struct cel_cc *cc, int x, size_t at)
{
	int k = parse_nested(cc, at), y;

	if (k < 0 || expect(cc, "]") < 0)
		return -1;
	if (cc->node[x].op != CEL_MAPREF)
		return fail(cc, at,
			    "an index on a value other than a map attribute is not "
			    "implemented yet");
	if (cc->node[k].op == CEL_LIT && cc->node[k].type == ISM_CEL_STRING) {
		y = node_add(cc, CEL_MAPKEY, cc->at[x], -1, -1, -1);
		if (y >= 0)
			cc->node[y].v.s = cc->node[k].v.s;
	} else {
		y = node_add(cc, CEL_MAPIDX, cc->at[x], k, -1, -1);
	}
	if (y >= 0)
		cc->node[y].id = cc->node[x].id;
	return y;
}

static int parse_postfix(struct cel_cc *cc, int x)
{
	struct cel_tok t;

	while (x >= 0) {
		if (peek(cc, &t) < 0)
			return -1;
		if (cel_tok_is(&t, "."))
			x = parse_select(cc, x, &t);
		else if (cel_tok_is(&t, "["))
			cc->pos = t.end, x = parse_index(cc, x, t.start);
		else
			break;
	}
	return x;
}

/* Unary = Member | "!" {"!"} Member | "-" {"-"} Member. */
static int parse_unary(struct cel_cc *cc)
{
	struct cel_tok t, op;
	int n = 0, x;

	if (peek(cc, &op) < 0)
		return -1;
	if (!cel_tok_is(&op, "!") && !cel_tok_is(&op, "-"))
		return parse_postfix(cc, parse_primary(cc));
	for (t = op; cel_tok_is(&t, op.op); n++) {
		cc->pos = t.end;
		if (peek(cc, &t) < 0)
			return -1;
	}
	if (op.op[0] == '-' &&
	    (t.kind == CEL_TK_INT || t.kind == CEL_TK_UINT || t.kind == CEL_TK_DOUBLE)) {
		cc->pos = t.end;
		x = parse_postfix(cc, lit_number(cc, &t, true));
		n--;
	} else {
		x = parse_postfix(cc, parse_primary(cc));
	}
	while (n-- > 0 && x >= 0)
		x = node_add(cc, op.op[0] == '!' ? CEL_NOT : CEL_NEG, op.start, x, -1, -1);
	return x;
}

struct cel_binop {
	const char *tok;
	uint8_t op; /* enum cel_op */
};

static const struct cel_binop mul_ops[] = {{"*", CEL_MUL}, {"/", CEL_DIV}, {"%", CEL_MOD}, {0}};
static const struct cel_binop add_ops[] = {{"+", CEL_ADD}, {"-", CEL_SUB}, {0}};
/* CEL puts every relation, `in` included, at one level. */
static const struct cel_binop rel_ops[] = {
    {"==", CEL_EQ}, {"!=", CEL_NE}, {"<", CEL_LT},  {"<=", CEL_LE},
    {">", CEL_GT},  {">=", CEL_GE}, {"in", CEL_IN}, {0},
};
static const struct cel_binop and_ops[] = {{"&&", CEL_AND}, {0}};
static const struct cel_binop or_ops[] = {{"||", CEL_OR}, {0}};

/* The operator among ops that token t is, or NULL. */
static const struct cel_binop *binop(const struct cel_cc *cc, const struct cel_tok *t,
				     const struct cel_binop *ops)
{
	for (; ops->tok != NULL; ops++)
		if (cel_tok_is(t, ops->tok) ||
		    (t->kind == CEL_TK_IDENT && name_is(cc, t, ops->tok)))
			return ops;
	return NULL;
}

/* A left-associative chain of the operators in ops[level] over the next
 * level's operands (unary ones after the last). */
static int parse_chain(struct cel_cc *cc, const struct cel_binop *const *ops)
{
	const struct cel_binop *b;
	struct cel_tok t;
	int x, y;

	x = ops[1] ? parse_chain(cc, ops + 1) : parse_unary(cc);
	while (x >= 0) {
		if (peek(cc, &t) < 0)
			return -1;
		b = binop(cc, &t, ops[0]);
		if (b == NULL)
			break;
		cc->pos = t.end;
		y = ops[1] ? parse_chain(cc, ops + 1) : parse_unary(cc);
		x = node_add(cc, b->op, t.start, x, y, -1);
	}
	return x;
}

static const struct cel_binop *const levels[] = {or_ops, and_ops, rel_ops, add_ops, mul_ops, NULL};

/* Expr = ConditionalOr ["?" ConditionalOr ":" Expr]. */
static int parse_expr(struct cel_cc *cc)
{
	struct cel_tok t;
	int c, a, b;

	c = parse_chain(cc, levels);
	if (c < 0 || peek(cc, &t) < 0)
		return -1;
	if (!cel_tok_is(&t, "?"))
		return c;
	cc->pos = t.end;
	a = parse_chain(cc, levels);
	if (a < 0 || expect(cc, ":") < 0)
		return -1;
	b = parse_nested(cc, t.start);
	return node_add(cc, CEL_COND, t.start, c, a, b);
}

/* What the parser let through that the subset cannot evaluate: a map
 * attribute or a list anywhere but on the right of `in`. */
static int check(struct cel_cc *cc, uint16_t x, bool in_rhs)
{
	const struct cel_node *n = &cc->node[x];

	if (n->op == CEL_MAPREF && !in_rhs)
		return fail(cc, cc->at[x],
			    "a map attribute used as a value is not implemented "
			    "yet (m['key'], m.key, 'key' in m and has(m.key) are)");
	if (n->op == CEL_LIST && !in_rhs)
		return fail(cc, cc->at[x],
			    "a list other than the right side of 'in' is not "
			    "implemented yet");
	for (int k = 0; k < 3; k++)
		if (n->kid[k] != CEL_NONE && check(cc, n->kid[k], n->op == CEL_IN && k == 1) < 0)
			return -1;
	if (n->op != CEL_LIST || n->kid[0] == CEL_NONE)
		return 0;
	for (uint16_t e = cc->node[n->kid[0]].next; e != CEL_NONE; e = cc->node[e].next)
		if (check(cc, e, false) < 0)
			return -1;
	return 0;
}

/* The program block of a compiled tree rooted at root. */
static int emit(const struct cel_cc *cc, int root, void **prog, size_t *size)
{
	size_t nodes = (size_t)cc->n * sizeof(struct cel_node);
	struct cel_prog h = {
	    .magic = CEL_MAGIC,
	    .version = CEL_VERSION,
	    .n_nodes = cc->n,
	    .root = (uint16_t)root,
	    .height = cc->height[root],
	    .pool_off = (uint32_t)(sizeof(h) + nodes),
	    .pool_len = cc->pool_len,
	    .size = (uint32_t)(sizeof(h) + nodes + cc->pool_len),
	};
	char *p = malloc(h.size);

	if (p == NULL)
		return -ENOMEM;
	memcpy(p, &h, sizeof(h));
	memcpy(p + sizeof(h), cc->node, nodes);
	memcpy(p + h.pool_off, cc->pool, cc->pool_len);
	*prog = p;
	*size = h.size;
	return 0;
}

static int compile(struct cel_cc *cc, void **prog, size_t *size)
{
	struct cel_tok t;
	int root;

	if (cc->len > ISM_CEL_MAX_LEN)
		return fail(cc, ISM_CEL_MAX_LEN, "expression longer than %d bytes",
			    ISM_CEL_MAX_LEN);
	root = parse_expr(cc);
	if (root < 0 || peek(cc, &t) < 0)
		return -1;
	if (t.kind != CEL_TK_EOF)
		return unexpected(cc, &t);
	if (check(cc, (uint16_t)root, false) < 0)
		return -1;
	return emit(cc, root, prog, size);
}

int ism_cel_compile(const char *text, size_t len, const struct ism_cel_attr *attrs, size_t n_attrs,
		    void **prog, size_t *size, char *err, size_t errcap, size_t *at)
{
	struct cel_cc *cc = calloc(1, sizeof(*cc));
	int rc;

	*prog = NULL;
	*size = 0;
	if (cc == NULL)
		return -ENOMEM;
	cc->src = text;
	cc->len = len;
	cc->attrs = attrs;
	cc->n_attrs = n_attrs;
	rc = compile(cc, prog, size);
	if (rc == -1) {
		rc = -EINVAL;
		if (err != NULL && errcap > 0)
			snprintf(err, errcap, "%s", cc->err);
		if (at != NULL)
			*at = cc->err_at;
	}
	free(cc);
	return rc;
}
