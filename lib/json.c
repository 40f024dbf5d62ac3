/* SPDX-License-Identifier: Apache-2.0 */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/json.h"

size_t ism_utf8_decode(const unsigned char *p, size_t n, uint32_t *cp)
{
	size_t need;
	uint32_t c, min;

	if (p[0] < 0x80) {
		*cp = p[0];
		return 1;
	}
	if (p[0] >= 0xc2 && p[0] <= 0xdf) {
		need = 1, c = p[0] & 0x1f, min = 0x80;
	} else if (p[0] >= 0xe0 && p[0] <= 0xef) {
		need = 2, c = p[0] & 0x0f, min = 0x800;
	} else if (p[0] >= 0xf0 && p[0] <= 0xf4) {
		need = 3, c = p[0] & 0x07, min = 0x10000;
	} else {
		return 0;
	}
	if (n < need + 1)
		return 0;
	for (size_t k = 1; k <= need; k++) {
		if ((p[k] & 0xc0) != 0x80)
			return 0;
		c = c << 6 | (p[k] & 0x3f);
	}
	if (c < min || c > 0x10ffff || (c >= 0xd800 && c <= 0xdfff))
		return 0;
	*cp = c;
	return need + 1;
}

size_t ism_json_escape(char *out, size_t cap, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef";
	size_t n = 0, k;
	uint32_t cp;

	for (size_t i = 0; i < len && n + 7 < cap; i++) {
		unsigned char ch = (unsigned char)s[i];

		if (ch == '"' || ch == '\\') {
			out[n++] = '\\';
			out[n++] = (char)ch;
		} else if (ch >= 0x80 &&
			   (k = ism_utf8_decode((const unsigned char *)s + i, len - i, &cp)) > 0) {
			/* Valid UTF-8 as it is (Envoy's JSON sanitizer); a
			 * character that does not fit is left out whole. */
			if (n + k + 7 >= cap)
				break;
			memcpy(out + n, s + i, k);
			n += k;
			i += k - 1;
		} else if (ch < 0x20 || ch >= 0x7f) {
			out[n++] = '\\';
			out[n++] = 'u';
			out[n++] = '0';
			out[n++] = '0';
			out[n++] = hex[ch >> 4];
			out[n++] = hex[ch & 15];
		} else {
			out[n++] = (char)ch;
		}
	}
	if (cap)
		out[n < cap ? n : cap - 1] = '\0';
	return n;
}

/* --- reading --- */

/* The reader runs twice over the text: the first pass validates it and counts
 * the nodes and the decoded string bytes, the second builds the tree into one
 * allocation of exactly that size (the nodes, then the strings), so that a
 * document is freed with one free and a refused one allocates nothing (but a
 * number too long for parse_number's buffer, briefly). */
struct rd {
	const char *p, *end;
	struct ism_json *nodes;	 /* second pass: the next free node; first: NULL */
	char *chars;		 /* second pass: the next free string byte */
	size_t n_nodes, n_chars; /* first pass: what the second will need */
	int depth;
};

static int parse_value(struct rd *r, struct ism_json *v);

static void skip_ws(struct rd *r)
{
	while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
		r->p++;
}

/* The four hex digits at p (before end) as a number, or -1. */
static int32_t hex4(const char *p, const char *end)
{
	int32_t u = 0;

	if (end - p < 4)
		return -1;
	for (int i = 0; i < 4; i++) {
		char c = p[i];
		int d = c >= '0' && c <= '9'   ? c - '0'
			: c >= 'a' && c <= 'f' ? c - 'a' + 10
			: c >= 'A' && c <= 'F' ? c - 'A' + 10
					       : -1;

		if (d < 0)
			return -1;
		u = u << 4 | d;
	}
	return u;
}

/* Appends cp (a Unicode scalar value) as UTF-8 at o + *n (o NULL: counts). */
static void put_utf8(char *o, size_t *n, uint32_t cp)
{
	char b[4];
	size_t k;

	if (cp < 0x80) {
		b[0] = (char)cp, k = 1;
	} else if (cp < 0x800) {
		b[0] = (char)(0xc0 | cp >> 6), b[1] = (char)(0x80 | (cp & 0x3f)), k = 2;
	} else if (cp < 0x10000) {
		b[0] = (char)(0xe0 | cp >> 12), b[1] = (char)(0x80 | (cp >> 6 & 0x3f));
		b[2] = (char)(0x80 | (cp & 0x3f)), k = 3;
	} else {
		b[0] = (char)(0xf0 | cp >> 18), b[1] = (char)(0x80 | (cp >> 12 & 0x3f));
		b[2] = (char)(0x80 | (cp >> 6 & 0x3f)), b[3] = (char)(0x80 | (cp & 0x3f)), k = 4;
	}
	if (o)
		memcpy(o + *n, b, k);
	*n += k;
}

/* The escape after a backslash at r->p: appended at o + *n, r->p past it. */
static int parse_escape(struct rd *r, char *o, size_t *n)
{
	static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
	const char *e;
	int32_t u, lo;

	if (r->p >= r->end)
		return -1;
	if (*r->p != 'u') {
		e = memchr(from, *r->p, sizeof(from) - 1);
		if (e == NULL)
			return -1;
		if (o)
			o[*n] = to[e - from];
		(*n)++;
		r->p++;
		return 0;
	}
	u = hex4(r->p + 1, r->end);
	if (u < 0 || (u >= 0xdc00 && u <= 0xdfff))
		return -1;
	r->p += 5;
	if (u >= 0xd800 && u <= 0xdbff) {
		/* A high surrogate stands only as the first half of a pair. */
		if (r->end - r->p < 2 || r->p[0] != '\\' || r->p[1] != 'u')
			return -1;
		lo = hex4(r->p + 2, r->end);
		if (lo < 0xdc00 || lo > 0xdfff)
			return -1;
		r->p += 6;
		u = 0x10000 + ((u - 0xd800) << 10) + (lo - 0xdc00);
	}
	put_utf8(o, n, (uint32_t)u);
	return 0;
}

/* The string at r->p (its opening quote) into v. */
static int parse_string(struct rd *r, struct ism_json *v)
{
	char *o = r->chars;
	size_t n = 0, k;
	uint32_t cp;

	r->p++;
	for (;;) {
		if (r->p >= r->end)
			return -1;
		if (*r->p == '"')
			break;
		if (*r->p == '\\') {
			r->p++;
			if (parse_escape(r, o, &n) < 0)
				return -1;
			continue;
		}
		if ((unsigned char)*r->p < 0x20)
			return -1;
		k = ism_utf8_decode((const unsigned char *)r->p, (size_t)(r->end - r->p), &cp);
		if (k == 0)
			return -1;
		if (o)
			memcpy(o + n, r->p, k);
		n += k;
		r->p += k;
	}
	r->p++;
	v->type = ISM_JSON_STRING;
	v->n = (uint32_t)n;
	if (o) {
		o[n] = '\0';
		v->str = o;
		r->chars += n + 1;
	} else {
		r->n_chars += n + 1;
	}
	return 0;
}

static const char *skip_digits(const char *p, const char *end)
{
	while (p < end && *p >= '0' && *p <= '9')
		p++;
	return p;
}

/* The number at r->p: RFC 8259's grammar checked here, its value from strtod
 * on a NUL-terminated copy (the text is not terminated); one too large for a
 * double is refused rather than kept as an infinity JSON cannot write. */
static int parse_number(struct rd *r, struct ism_json *v)
{
	const char *s = r->p, *p = r->p, *q;
	char small[64], *copy;
	size_t len;

	if (p < r->end && *p == '-')
		p++;
	if (p < r->end && *p == '0')
		p++;
	else if ((q = skip_digits(p, r->end)) > p)
		p = q;
	else
		return -1;
	if (p < r->end && *p == '.') {
		q = skip_digits(p + 1, r->end);
		if (q == p + 1)
			return -1;
		p = q;
	}
	if (p < r->end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < r->end && (*p == '+' || *p == '-'))
			p++;
		q = skip_digits(p, r->end);
		if (q == p)
			return -1;
		p = q;
	}
	len = (size_t)(p - s);
	copy = len < sizeof(small) ? small : malloc(len + 1);
	if (copy == NULL)
		return -1;
	memcpy(copy, s, len);
	copy[len] = '\0';
	v->type = ISM_JSON_NUMBER;
	v->num = strtod(copy, NULL);
	if (copy != small)
		free(copy);
	if (isinf(v->num))
		return -1;
	r->p = p;
	return 0;
}

/* The direct children of the container opening before p, in text the first
 * pass has validated: its commas outside strings and nested containers. A
 * byte is scanned once for each container around it, ISM_JSON_MAX_DEPTH
 * times at most. */
static uint32_t count_items(const char *p)
{
	uint32_t commas = 0;
	bool any = false;
	int depth = 0;

	for (;; p++) {
		switch (*p) {
		case '"':
			for (p++; *p != '"'; p++)
				if (*p == '\\')
					p++;
			break;
		case '[':
		case '{':
			depth++;
			break;
		case ']':
		case '}':
			if (depth-- == 0)
				return any ? commas + 1 : 0;
			break;
		case ',':
			commas += depth == 0;
			continue;
		case ' ':
		case '\t':
		case '\n':
		case '\r':
			continue;
		}
		any = true;
	}
}

/* The array or object at r->p (its bracket) into v: its items are one block of
 * nodes, an object's names and values alternating. */
static int parse_container(struct rd *r, struct ism_json *v)
{
	bool obj = *r->p == '{';
	char close = obj ? '}' : ']';
	struct ism_json scratch, *items = NULL;
	uint32_t n = 0;

	if (++r->depth > ISM_JSON_MAX_DEPTH)
		return -1;
	r->p++;
	if (r->nodes) {
		items = r->nodes;
		r->nodes += (size_t)count_items(r->p) * (obj ? 2 : 1);
	}
	skip_ws(r);
	if (r->p < r->end && *r->p == close)
		goto done;
	for (;;) {
		struct ism_json *slot = items ? &items[n * (obj ? 2 : 1)] : &scratch;

		skip_ws(r);
		if (obj) {
			if (r->p >= r->end || *r->p != '"' || parse_string(r, slot) < 0)
				return -1;
			skip_ws(r);
			if (r->p >= r->end || *r->p != ':')
				return -1;
			r->p++;
			skip_ws(r);
			slot = items ? slot + 1 : &scratch;
		}
		if (parse_value(r, slot) < 0)
			return -1;
		n++;
		skip_ws(r);
		if (r->p < r->end && *r->p == ',') {
			r->p++;
			continue;
		}
		if (r->p < r->end && *r->p == close)
			break;
		return -1;
	}
done:
	r->p++;
	r->depth--;
	r->n_nodes += (size_t)n * (obj ? 2 : 1);
	v->type = obj ? ISM_JSON_OBJECT : ISM_JSON_ARRAY;
	v->n = n;
	v->items = items;
	return 0;
}

static int parse_literal(struct rd *r, struct ism_json *v, const char *word, uint8_t type)
{
	size_t len = strlen(word);

	if ((size_t)(r->end - r->p) < len || memcmp(r->p, word, len) != 0)
		return -1;
	r->p += len;
	v->type = type;
	return 0;
}

static int parse_value(struct rd *r, struct ism_json *v)
{
	memset(v, 0, sizeof(*v));
	if (r->p >= r->end)
		return -1;
	switch (*r->p) {
	case '{':
	case '[':
		return parse_container(r, v);
	case '"':
		return parse_string(r, v);
	case 't':
		return parse_literal(r, v, "true", ISM_JSON_TRUE);
	case 'f':
		return parse_literal(r, v, "false", ISM_JSON_FALSE);
	case 'n':
		return parse_literal(r, v, "null", ISM_JSON_NULL);
	default:
		return parse_number(r, v);
	}
}

/* One pass over s: the whole text one value with whitespace around it. */
static int parse_doc(struct rd *r, const char *s, size_t len, struct ism_json *root)
{
	r->p = s;
	r->end = s + len;
	r->depth = 0;
	skip_ws(r);
	if (parse_value(r, root) < 0)
		return -1;
	skip_ws(r);
	return r->p == r->end ? 0 : -1;
}

int ism_json_parse(const char *s, size_t len, struct ism_json_doc *doc)
{
	struct rd r = {0};
	size_t size;

	memset(doc, 0, sizeof(*doc));
	/* A string's or a container's n counts in 32 bits. */
	if (len > INT32_MAX || parse_doc(&r, s, len, &doc->root) < 0) {
		memset(doc, 0, sizeof(*doc));
		return -1;
	}
	size = r.n_nodes * sizeof(struct ism_json) + r.n_chars;
	if (size > 0) {
		doc->mem = malloc(size);
		if (doc->mem == NULL)
			return -1;
	}
	r.nodes = doc->mem;
	/* A bare scalar needs no memory: mem stays NULL, and NULL + 0 is no
	 * pointer C allows. */
	r.chars = doc->mem != NULL ? (char *)doc->mem + r.n_nodes * sizeof(struct ism_json) : NULL;
	if (parse_doc(&r, s, len, &doc->root) < 0) {
		ism_json_free(doc);
		return -1;
	}
	return 0;
}

void ism_json_free(struct ism_json_doc *doc)
{
	free(doc->mem);
	memset(doc, 0, sizeof(*doc));
}

const struct ism_json *ism_json_get_n(const struct ism_json *o, const char *name, size_t len)
{
	const struct ism_json *found = NULL;

	if (o == NULL || o->type != ISM_JSON_OBJECT)
		return NULL;
	for (uint32_t i = 0; i < o->n; i++) {
		const struct ism_json *k = &o->items[2 * i];

		if (k->n == len && memcmp(k->str, name, len) == 0)
			found = k + 1;
	}
	return found;
}

const struct ism_json *ism_json_get(const struct ism_json *o, const char *name)
{
	return ism_json_get_n(o, name, strlen(name));
}

/* --- writing --- */

struct wr {
	char *out;
	size_t cap, n;
};

static void wr_put(struct wr *w, const char *s, size_t k)
{
	if (w->n < w->cap)
		memcpy(w->out + w->n, s, k < w->cap - w->n ? k : w->cap - w->n);
	w->n += k;
}

static void wr_string(struct wr *w, const char *s, size_t len)
{
	static const char hex[] = "0123456789abcdef", from[] = "\"\\\b\f\n\r\t", to[] = "\"\\bfnrt";
	size_t run = 0;

	wr_put(w, "\"", 1);
	for (size_t i = 0; i < len; i++) {
		unsigned char ch = (unsigned char)s[i];
		char esc[6] = {'\\', 'u', '0', '0', hex[ch >> 4], hex[ch & 15]};
		const char *e;

		if (ch >= 0x20 && ch != '"' && ch != '\\')
			continue;
		wr_put(w, s + run, i - run);
		run = i + 1;
		e = memchr(from, ch, sizeof(from) - 1);
		if (e)
			esc[1] = to[e - from];
		wr_put(w, esc, e ? 2 : 6);
	}
	wr_put(w, s + run, len - run);
	wr_put(w, "\"", 1);
}

/* The shortest of %.15g, %.16g and %.17g that reads back as d. */
static void wr_number(struct wr *w, double d)
{
	char b[32];
	int k = 0;

	if (!isfinite(d)) {
		wr_put(w, "null", 4);
		return;
	}
	for (int prec = 15; prec <= 17; prec++) {
		k = snprintf(b, sizeof(b), "%.*g", prec, d);
		if (strtod(b, NULL) == d)
			break;
	}
	wr_put(w, b, (size_t)k);
}

static void wr_value(struct wr *w, const struct ism_json *v)
{
	switch (v->type) {
	case ISM_JSON_NULL:
		wr_put(w, "null", 4);
		break;
	case ISM_JSON_FALSE:
		wr_put(w, "false", 5);
		break;
	case ISM_JSON_TRUE:
		wr_put(w, "true", 4);
		break;
	case ISM_JSON_NUMBER:
		wr_number(w, v->num);
		break;
	case ISM_JSON_STRING:
		wr_string(w, v->str, v->n);
		break;
	case ISM_JSON_ARRAY:
	case ISM_JSON_OBJECT: {
		bool obj = v->type == ISM_JSON_OBJECT;

		wr_put(w, obj ? "{" : "[", 1);
		for (uint32_t i = 0; i < v->n; i++) {
			if (i > 0)
				wr_put(w, ",", 1);
			if (obj) {
				wr_string(w, v->items[2 * i].str, v->items[2 * i].n);
				wr_put(w, ":", 1);
				wr_value(w, &v->items[2 * i + 1]);
			} else {
				wr_value(w, &v->items[i]);
			}
		}
		wr_put(w, obj ? "}" : "]", 1);
		break;
	}
	}
}

size_t ism_json_write(const struct ism_json *v, char *out, size_t cap)
{
	struct wr w = {out, cap, 0};

	wr_value(&w, v);
	if (cap > 0)
		out[w.n < cap ? w.n : cap - 1] = '\0';
	return w.n;
}
