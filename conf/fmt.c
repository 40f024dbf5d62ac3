/* SPDX-License-Identifier: Apache-2.0 */
#include "conf/fmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool is_name(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

void ism_fmt_fail(const char *s, const struct ism_fmt_tok *t, const char *what, char *err,
		  size_t errlen)
{
	size_t n = t->end - t->at < 64 ? t->end - t->at : 64;

	snprintf(err, errlen, "%s: \"%.*s\" at offset %zu", what, (int)n, s + t->at, t->at);
}

bool ism_fmt_is(const struct ism_fmt_tok *t, const char *name)
{
	return t->op && strlen(name) == t->len && memcmp(name, t->text, t->len) == 0;
}

const char *ism_fmt_env(const struct ism_fmt_tok *t, size_t *len)
{
	char name[128];
	const char *v;

	snprintf(name, sizeof(name), "%.*s", (int)t->arg_len, t->arg);
	v = getenv(name);
	v = v != NULL ? v : "";
	*len = strlen(v);
	if (t->has_len && *len > t->max_len)
		*len = t->max_len;
	return v;
}

/* The operator at t->at (its '%'): %NAME%, %NAME(ARG)% or %NAME(ARG):LENGTH%.
 * Returns the offset after its closing '%', or -1. */
static long operator(const char *s, size_t len, struct ism_fmt_tok *t, char *err, size_t errlen)
{
	size_t i = t->at + 1;
	unsigned long max = 0;

	t->op = true;
	t->text = s + i;
	while (i < len && is_name(s[i]))
		i++;
	t->len = (size_t)(s + i - t->text);
	t->end = i;
	if (t->len == 0) {
		ism_fmt_fail(s, t, "a lone '%' (write %% for a percent sign)", err, errlen);
		return -1;
	}
	if (i < len && s[i] == '(') {
		const char *close = memchr(s + i, ')', len - i);

		t->end = len;
		if (close == NULL) {
			ism_fmt_fail(s, t, "unterminated command operator (no ')')", err, errlen);
			return -1;
		}
		t->has_arg = true;
		t->arg = s + i + 1;
		t->arg_len = (size_t)(close - t->arg);
		i = (size_t)(close - s) + 1;
	}
	if (i < len && s[i] == ':') {
		t->has_len = true;
		for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++)
			max = max < 100000 ? max * 10 + (unsigned long)(s[i] - '0') : max;
	}
	t->end = i < len ? i + 1 : len;
	if (i >= len) {
		ism_fmt_fail(s, t, "unterminated command operator (no closing '%')", err, errlen);
		return -1;
	}
	if (s[i] != '%') {
		ism_fmt_fail(s, t, "malformed command operator", err, errlen);
		return -1;
	}
	if (t->has_len && (max == 0 || max > 65535)) {
		ism_fmt_fail(s, t, "the length after ':' must be between 1 and 65535", err, errlen);
		return -1;
	}
	t->max_len = (uint32_t)max;
	return (long)i + 1;
}

int ism_fmt_next(const char *s, size_t len, size_t *pos, struct ism_fmt_tok *t, char *err,
		 size_t errlen)
{
	size_t i = *pos;
	long next;

	memset(t, 0, sizeof(*t));
	if (i >= len)
		return 0;
	t->at = i;
	t->text = s + i;
	for (; i < len; i++) {
		if ((unsigned char)s[i] < 0x20 && s[i] != '\t') {
			snprintf(err, errlen, "control character 0x%02x at offset %zu",
				 (unsigned char)s[i], i);
			return -1;
		}
		if (s[i] == '%')
			break;
	}
	if (i < len && i + 1 < len && s[i + 1] == '%') {
		/* %% is a '%': the literal ends with the first one. */
		t->len = i + 1 - t->at;
		t->end = i + 2;
		*pos = i + 2;
		return 1;
	}
	if (i > t->at) {
		t->len = i - t->at;
		t->end = i;
		*pos = i;
		return 1;
	}
	next = operator(s, len, t, err, errlen);
	if (next < 0)
		return -1;
	*pos = (size_t)next;
	return 1;
}
