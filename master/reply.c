/* SPDX-License-Identifier: Apache-2.0 */
/* Answers that grow: see master/reply.h. */
#include "master/reply.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REPLY_FIRST_CAP 4096

void ism_reply_init(struct ism_reply *r, size_t max)
{
	*r = (struct ism_reply){.max = max};
}

/* Doubling keeps appending linear in the text's size. */
int ism_reply_reserve(struct ism_reply *r, size_t len)
{
	size_t need = r->len + len + 1, cap = r->cap ? r->cap : REPLY_FIRST_CAP;
	char *p;

	if (r->incomplete || len > r->max - r->len) {
		r->incomplete = true;
		return -1;
	}
	if (need <= r->cap)
		return 0;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	if (cap > r->max + 1)
		cap = r->max + 1;
	p = realloc(r->p, cap);
	if (p == NULL) {
		r->incomplete = true;
		return -1;
	}
	r->p = p;
	r->cap = cap;
	return 0;
}

void ism_say(struct ism_reply *r, const char *fmt, ...)
{
	size_t avail = r->incomplete || r->p == NULL ? 0 : r->cap - r->len;
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(avail ? r->p + r->len : NULL, avail, fmt, ap);
	va_end(ap);
	if (n >= 0 && (size_t)n < avail) {
		r->len += (size_t)n;
		return;
	}
	/* It did not fit: what was written is undone, room is made, and the
	 * text is formatted again. */
	if (r->p != NULL)
		r->p[r->len] = '\0';
	if (n < 0 || ism_reply_reserve(r, (size_t)n) < 0)
		return;
	va_start(ap, fmt);
	vsnprintf(r->p + r->len, r->cap - r->len, fmt, ap);
	va_end(ap);
	r->len += (size_t)n;
}

void ism_reply_free(struct ism_reply *r)
{
	free(r->p);
	ism_reply_init(r, r->max);
}
