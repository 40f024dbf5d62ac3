/* SPDX-License-Identifier: Apache-2.0 */
/* The CEL lexer, private to the compiler (conf/cel.c). Pure: a token is a
 * function of the text and an offset, so the parser looks ahead freely. */
#ifndef ISM_CONF_CEL_LEX_H
#define ISM_CONF_CEL_LEX_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum cel_tok_kind {
	CEL_TK_EOF,
	CEL_TK_IDENT,
	CEL_TK_INT,    /* u: the magnitude, which may exceed INT64_MAX */
	CEL_TK_UINT,   /* u */
	CEL_TK_DOUBLE, /* d */
	CEL_TK_STRING, /* body, body_end, raw, bytes */
	CEL_TK_PUNCT,  /* op */
	CEL_TK_ERR,    /* at, why */
};

struct cel_tok {
	enum cel_tok_kind kind;
	size_t start, end; /* the token's bytes */
	char op[3];
	bool raw, bytes;
	uint8_t quote; /* 1 or 3 */
	size_t body, body_end;
	uint64_t u;
	double d;
	size_t at;
	const char *why;
};

/* The token at or after pos in p (len bytes) into *t. 0, or -1 with t a
 * CEL_TK_ERR (why: a static reason, at: its offset). buf (len + 1 bytes) is
 * scratch for a number's text. */
int cel_lex(const char *p, size_t len, size_t pos, struct cel_tok *t, char *buf);

/* Whether t is the operator or punctuation op. */
bool cel_tok_is(const struct cel_tok *t, const char *op);

/* Decodes string token t's body into out (room for body_end - body bytes:
 * decoding never lengthens it), its length in *n. 0, or -EINVAL with *at
 * the offset of an invalid escape. */
int cel_lex_decode(const char *p, const struct cel_tok *t, char *out, size_t *n, size_t *at);

#endif
