/* SPDX-License-Identifier: Apache-2.0 */
/* Private to master/: the text of an answer being built (a control-socket
 * command's, an admin page's). It grows as it is appended to, up to a bound
 * set when it is started; an append that would pass the bound (or find no
 * memory) leaves the text as it was and marks it incomplete, so that the caller
 * answers with an error instead of a cut text. Master only. */
#ifndef ISM_MASTER_REPLY_H
#define ISM_MASTER_REPLY_H

#include <stdbool.h>
#include <stddef.h>

struct ism_reply {
	char *p;	 /* NUL-terminated text; NULL until the first append */
	size_t len;	 /* bytes of text */
	size_t cap;	 /* bytes allocated */
	size_t max;	 /* the most bytes of text it may hold */
	bool incomplete; /* an append did not fit: the text lacks it and what followed */
};

/* An empty reply of at most max bytes of text (nothing allocated yet). */
void ism_reply_init(struct ism_reply *r, size_t max);
/* Appends the formatted text; nothing once the reply is incomplete. */
void ism_say(struct ism_reply *r, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Makes room for len more bytes at once (a size known beforehand saves the
 * copies of growing). 0, or -1 when it cannot (the reply is then incomplete). */
int ism_reply_reserve(struct ism_reply *r, size_t len);
/* Frees the text; the reply is empty again (same bound). */
void ism_reply_free(struct ism_reply *r);

#endif
