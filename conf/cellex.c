/* SPDX-License-Identifier: Apache-2.0 */
/* The CEL lexer: one token at a given offset, with no state, so that the
 * parser may look as far ahead as it likes (it needs three tokens to tell an
 * attribute's dotted name from a method call). Token syntax follows
 * cel-spec's grammar (doc/langdef.md, "Syntax"); string bodies are checked
 * for their end here and decoded by cel_lex_decode when the parser keeps
 * one. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "conf/cel-lex.h"
#include "lib/ascii.h"

static bool is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static bool is_ident_start(unsigned char c)
{
	return c == '_' || ((c | 0x20) >= 'a' && (c | 0x20) <= 'z');
}

static bool is_ident(unsigned char c)
{
	return is_ident_start(c) || is_digit(c);
}

static int lex_fail(struct cel_tok *t, size_t at, const char *why)
{
	t->kind = CEL_TK_ERR;
	t->at = at;
	t->why = why;
	return -1;
}

/* The offset of the next token at or after pos: CEL's white space is
 * [\t\n\f\r ], and // starts a comment to the end of the line. */
static size_t skip_space(const char *p, size_t len, size_t pos)
{
	while (pos < len) {
		char c = p[pos];

		if (c == ' ' || c == '\t' || c == '\n' || c == '\f' || c == '\r') {
			pos++;
		} else if (c == '/' && pos + 1 < len && p[pos + 1] == '/') {
			while (pos < len && p[pos] != '\n')
				pos++;
		} else {
			break;
		}
	}
	return pos;
}

/* Digits in base (10 or 16) from *pos into *v; false on overflow (the
 * digits are still consumed). */
static bool digits(const char *p, size_t len, size_t *pos, unsigned base, uint64_t *v)
{
	bool ok = true;

	*v = 0;
	for (; *pos < len; (*pos)++) {
		int d = base == 16 ? ism_hexval((unsigned char)p[*pos])
				   : (is_digit((unsigned char)p[*pos]) ? p[*pos] - '0' : -1);

		if (d < 0)
			break;
		if (__builtin_mul_overflow(*v, base, v) ||
		    __builtin_add_overflow(*v, (unsigned)d, v))
			ok = false;
	}
	return ok;
}

/* After DIGIT*: the end of a double's fraction and exponent at pos, or pos
 * itself when neither follows (CEL: DIGIT* '.' DIGIT+ EXPONENT? | DIGIT+
 * EXPONENT). */
static size_t double_tail(const char *p, size_t len, size_t pos)
{
	size_t e;

	if (pos + 1 < len && p[pos] == '.' && is_digit((unsigned char)p[pos + 1]))
		for (pos++; pos < len && is_digit((unsigned char)p[pos]);)
			pos++;
	if (pos < len && (p[pos] | 0x20) == 'e') {
		e = pos + 1;
		if (e < len && (p[e] == '+' || p[e] == '-'))
			e++;
		if (e < len && is_digit((unsigned char)p[e])) {
			for (pos = e; pos < len && is_digit((unsigned char)p[pos]);)
				pos++;
		}
	}
	return pos;
}

/* The double in [start, end), with strtod in the C locale's syntax (the
 * lexer admits nothing it would read otherwise). */
static int lex_double(const char *p, struct cel_tok *t, char *buf)
{
	size_t n = t->end - t->start;

	memcpy(buf, p + t->start, n);
	buf[n] = '\0';
	t->kind = CEL_TK_DOUBLE;
	t->d = strtod(buf, NULL);
	/* Go's ParseFloat, which cel-go uses, refuses overflow only. */
	if (isinf(t->d))
		return lex_fail(t, t->start, "double literal out of range");
	return 0;
}

static int lex_number(const char *p, size_t len, size_t pos, struct cel_tok *t, char *buf)
{
	bool ok = true;
	size_t end;

	t->start = pos;
	if (p[pos] == '0' && pos + 1 < len && (p[pos + 1] | 0x20) == 'x') {
		end = pos + 2;
		ok = digits(p, len, &end, 16, &t->u);
		if (end == pos + 2)
			return lex_fail(t, pos, "hex literal without digits");
	} else {
		end = pos;
		ok = digits(p, len, &end, 10, &t->u);
		t->end = double_tail(p, len, end);
		if (t->end != end)
			return lex_double(p, t, buf);
	}
	if (!ok)
		return lex_fail(t, pos, "integer literal out of range");
	t->kind = CEL_TK_INT;
	if (end < len && (p[end] | 0x20) == 'u') {
		t->kind = CEL_TK_UINT;
		end++;
	}
	t->end = end;
	return 0;
}

/* The string literal at pos, after its prefix (r, b, in either case and
 * order): its end, and quote and raw, or an error. */
static int lex_string(const char *p, size_t len, size_t pos, struct cel_tok *t)
{
	size_t i = pos;
	char q;

	t->kind = CEL_TK_STRING;
	t->start = pos;
	t->raw = t->bytes = false;
	for (; p[i] != '\'' && p[i] != '"'; i++) {
		if ((p[i] | 0x20) == 'r')
			t->raw = true;
		else
			t->bytes = true;
	}
	q = p[i];
	t->quote = i + 2 < len && p[i + 1] == q && p[i + 2] == q ? 3 : 1;
	t->body = i + t->quote;
	for (i = t->body; i < len; i++) {
		if (p[i] == q &&
		    (t->quote == 1 || (i + 2 < len && p[i + 1] == q && p[i + 2] == q))) {
			t->body_end = i;
			t->end = i + t->quote;
			return 0;
		}
		if (t->quote == 1 && (p[i] == '\n' || p[i] == '\r'))
			return lex_fail(t, i, "newline in a string literal");
		if (p[i] == '\\' && !t->raw)
			i++;
	}
	return lex_fail(t, pos, "unterminated string literal");
}

/* Whether a string literal starts at pos: a quote, or one or two prefix
 * letters (r, b; one of each) and a quote. */
static bool string_start(const char *p, size_t len, size_t pos)
{
	bool r = false, b = false;

	for (; pos < len; pos++) {
		char c = (char)(p[pos] | 0x20);

		if (p[pos] == '\'' || p[pos] == '"')
			return true;
		if (c == 'r' && !r)
			r = true;
		else if (c == 'b' && !b)
			b = true;
		else
			return false;
	}
	return false;
}

static const char *const two_char_ops[] = {"||", "&&", "==", "!=", "<=", ">="};
static const char one_char_ops[] = "()[]{}.,?:<>+-*/%!";

static int lex_punct(const char *p, size_t len, size_t pos, struct cel_tok *t)
{
	t->kind = CEL_TK_PUNCT;
	t->start = pos;
	if (pos + 1 < len)
		for (size_t k = 0; k < sizeof(two_char_ops) / sizeof(two_char_ops[0]); k++)
			if (memcmp(p + pos, two_char_ops[k], 2) == 0) {
				memcpy(t->op, two_char_ops[k], 3);
				t->end = pos + 2;
				return 0;
			}
	if (p[pos] == '\0' || strchr(one_char_ops, p[pos]) == NULL)
		return lex_fail(t, pos, "unexpected character");
	t->op[0] = p[pos];
	t->op[1] = '\0';
	t->end = pos + 1;
	return 0;
}

int cel_lex(const char *p, size_t len, size_t pos, struct cel_tok *t, char *buf)
{
	unsigned char c;

	memset(t, 0, sizeof(*t));
	pos = skip_space(p, len, pos);
	t->start = t->end = pos;
	if (pos >= len) {
		t->kind = CEL_TK_EOF;
		return 0;
	}
	c = (unsigned char)p[pos];
	if (string_start(p, len, pos))
		return lex_string(p, len, pos, t);
	if (is_digit(c) || (c == '.' && pos + 1 < len && is_digit((unsigned char)p[pos + 1])))
		return lex_number(p, len, pos, t, buf);
	if (is_ident_start(c)) {
		t->kind = CEL_TK_IDENT;
		while (t->end < len && is_ident((unsigned char)p[t->end]))
			t->end++;
		return 0;
	}
	return lex_punct(p, len, pos, t);
}

bool cel_tok_is(const struct cel_tok *t, const char *op)
{
	return t->kind == CEL_TK_PUNCT && strcmp(t->op, op) == 0;
}

/* Appends code point cp as UTF-8 at out. */
static size_t put_utf8(char *out, uint32_t cp)
{
	if (cp < 0x80) {
		out[0] = (char)cp;
		return 1;
	}
	if (cp < 0x800) {
		out[0] = (char)(0xc0 | cp >> 6);
		out[1] = (char)(0x80 | (cp & 0x3f));
		return 2;
	}
	if (cp < 0x10000) {
		out[0] = (char)(0xe0 | cp >> 12);
		out[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
		out[2] = (char)(0x80 | (cp & 0x3f));
		return 3;
	}
	out[0] = (char)(0xf0 | cp >> 18);
	out[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
	out[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
	out[3] = (char)(0x80 | (cp & 0x3f));
	return 4;
}

/* The code point of n hex digits at p[i..], or -1. */
static int32_t hex_cp(const char *p, size_t i, size_t end, unsigned n)
{
	uint32_t cp = 0;

	if (end - i < n)
		return -1;
	for (unsigned k = 0; k < n; k++) {
		int d = ism_hexval((unsigned char)p[i + k]);

		if (d < 0)
			return -1;
		cp = cp << 4 | (uint32_t)d;
	}
	return cp > 0x10ffff ? -1 : (int32_t)cp;
}

/* The code point of an escape's letter and digits at p[i] (after the
 * backslash), its length in *n; -1 when invalid. */
static int32_t escape_cp(const char *p, size_t i, size_t end, size_t *n)
{
	static const char simple[] = "\\\\''\"\"``??a\ab\bf\fn\nr\rt\tv\v";
	int32_t cp;

	for (size_t k = 0; k + 1 < sizeof(simple); k += 2)
		if (p[i] == simple[k]) {
			*n = 1;
			return (unsigned char)simple[k + 1];
		}
	if (p[i] >= '0' && p[i] <= '3') {
		*n = 3;
		if (end - i < 3 || p[i + 1] < '0' || p[i + 1] > '7' || p[i + 2] < '0' ||
		    p[i + 2] > '7')
			return -1;
		return (p[i] - '0') << 6 | (p[i + 1] - '0') << 3 | (p[i + 2] - '0');
	}
	*n = p[i] == 'x' || p[i] == 'X' ? 3 : p[i] == 'u' ? 5 : p[i] == 'U' ? 9 : 0;
	if (*n == 0)
		return -1;
	cp = hex_cp(p, i + 1, end, (unsigned)*n - 1);
	/* Surrogate halves are not code points (cel-go refuses them). */
	return cp >= 0xd800 && cp <= 0xdfff ? -1 : cp;
}

int cel_lex_decode(const char *p, const struct cel_tok *t, char *out, size_t *n, size_t *at)
{
	size_t i = t->body, o = 0, k;
	int32_t cp;

	while (i < t->body_end) {
		if (p[i] != '\\' || t->raw) {
			out[o++] = p[i++];
			continue;
		}
		cp = escape_cp(p, i + 1, t->body_end, &k);
		if (cp < 0) {
			*at = i;
			return -EINVAL;
		}
		o += put_utf8(out + o, (uint32_t)cp);
		i += 1 + k;
	}
	*n = o;
	return 0;
}
