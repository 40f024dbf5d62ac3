/* SPDX-License-Identifier: Apache-2.0 */
/* Envoy's format strings (its substitution formatter): literal text with
 * command operators %NAME%, %NAME(ARG)% and %NAME(ARG):LENGTH%, "%%" being a
 * '%'. The scanner here splits a string into those pieces; the access log
 * (conf/alog.c) and header values (conf/hfmt.c) give the names their meaning.
 * Pure: allocates nothing, never reads past the length it is given. */
#ifndef ISM_CONF_FMT_H
#define ISM_CONF_FMT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct ism_fmt_tok {
	bool op;	  /* a command operator; else literal text */
	const char *text; /* literal: the text ("%%" gives its first '%'); op: the name */
	size_t len;
	bool has_arg;
	const char *arg; /* the text between the parentheses */
	size_t arg_len;
	bool has_len;
	uint32_t max_len; /* after ':', 1..65535 */
	size_t at, end;	  /* the piece's offsets in the string, for messages */
};

/* The piece of s (len bytes) at *pos into t, *pos moved past it: 1, or 0 at
 * the end, or -1 with a message in err (errlen bytes) naming the operator and
 * its offset. Control characters other than a tab are refused. */
int ism_fmt_next(const char *s, size_t len, size_t *pos, struct ism_fmt_tok *t, char *err,
		 size_t errlen);

/* An error about operator t: "WHAT: \"%OPERATOR%\" at offset N" into err. */
void ism_fmt_fail(const char *s, const struct ism_fmt_tok *t, const char *what, char *err,
		  size_t errlen);

/* Whether operator t is NAME. */
bool ism_fmt_is(const struct ism_fmt_tok *t, const char *name);

/* The value of the environment variable of operator t (%ENVIRONMENT(NAME)%,
 * as Envoy reads it when the format is made): "" when unset, at most
 * t->max_len bytes with :LENGTH; its length in *len. */
const char *ism_fmt_env(const struct ism_fmt_tok *t, size_t *len);

#endif
