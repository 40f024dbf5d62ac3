/* SPDX-License-Identifier: Apache-2.0 */
/* Diagnostics: collection and formatting. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "conf/tree.h"
#include "lib/log.h"

void ism_diags_init(struct ism_diags *d)
{
	memset(d, 0, sizeof(*d));
}

void ism_diag_addv(struct ism_diags *d, enum ism_diag_severity sev, const char *file, int line,
		   int col, const char *field, const char *fmt, va_list ap)
{
	struct ism_diag *g;
	size_t cap = sizeof(d->items) / sizeof(d->items[0]);
	char msg[sizeof(g->msg)];

	if (sev == ISM_DIAG_ERROR)
		d->n_errors++;
	/* n counts everything; only the first ones are kept, except that once
	 * full an error displaces the last warning kept: a file with many
	 * warnings still shows why it was refused (a route table too big for its
	 * arena comes last of all). */
	if (d->n++ < cap) {
		g = &d->items[d->n - 1];
	} else {
		size_t w = cap;

		while (sev == ISM_DIAG_ERROR && w > 0 &&
		       d->items[w - 1].severity != ISM_DIAG_WARNING)
			w--;
		if (sev != ISM_DIAG_ERROR || w == 0)
			return;
		memmove(&d->items[w - 1], &d->items[w], (cap - w) * sizeof(d->items[0]));
		g = &d->items[cap - 1];
	}
	g->severity = sev;
	snprintf(g->file, sizeof(g->file), "%s", file ? file : "");
	g->line = line;
	g->col = col;
	snprintf(g->field, sizeof(g->field), "%s", field ? field : "");
	vsnprintf(msg, sizeof(msg), fmt, ap);
	ism_log_escape(g->msg, sizeof(g->msg), msg);
}

void ism_diag_add(struct ism_diags *d, enum ism_diag_severity sev, const char *file, int line,
		  int col, const char *field, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	ism_diag_addv(d, sev, file, line, col, field, fmt, ap);
	va_end(ap);
}

static int format_one(char *buf, size_t len, const struct ism_diag *g)
{
	const char *sev = g->severity == ISM_DIAG_ERROR ? "error" : "warning";
	const char *sep = g->field[0] ? ": " : "";

	if (g->line > 0)
		return snprintf(buf, len, "%s:%d:%d: %s: %s%s%s\n", g->file, g->line, g->col, sev,
				g->field, sep, g->msg);
	return snprintf(buf, len, "%s: %s: %s%s%s\n", g->file, sev, g->field, sep, g->msg);
}

void ism_diags_print(FILE *out, const struct ism_diags *d)
{
	size_t cap = sizeof(d->items) / sizeof(d->items[0]);
	size_t kept = d->n < cap ? d->n : cap;
	char line[1200];

	for (size_t i = 0; i < kept; i++) {
		format_one(line, sizeof(line), &d->items[i]);
		fputs(line, out);
	}
	if (d->n > kept)
		fprintf(out, "(%zu more diagnostics not shown)\n", d->n - kept);
}

size_t ism_diags_format(char *buf, size_t len, const struct ism_diags *d)
{
	size_t cap = sizeof(d->items) / sizeof(d->items[0]);
	size_t kept = d->n < cap ? d->n : cap;
	size_t used = 0;

	if (len == 0)
		return 0;
	buf[0] = '\0';
	for (size_t i = 0; i < kept && used < len - 1; i++) {
		int w = format_one(buf + used, len - used, &d->items[i]);

		if (w < 0)
			break;
		used += (size_t)w < len - used ? (size_t)w : len - used - 1;
	}
	if (d->n > kept && used < len - 1) {
		int w = snprintf(buf + used, len - used, "(%zu more diagnostics not shown)\n",
				 d->n - kept);

		if (w > 0)
			used += (size_t)w < len - used ? (size_t)w : len - used - 1;
	}
	return used;
}
