/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer harness for the access log's format-string parser: arbitrary bytes
 * go to ism_alog_parse, twice (count, then fill), and what it returns must
 * hold: the same count, literals inside the input, operators and headers in
 * range, an error message on failure. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "conf/alog.h"

#define MAX_OPS 256

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ism_alog_op ops[MAX_OPS];
	const char *s = (const char *)data;
	char err[256] = "";
	int n = ism_alog_parse(s, size, NULL, 0, err, sizeof(err));

	if (n < 0) {
		if (n != -1 || err[0] == '\0')
			abort();
		return 0;
	}
	if (ism_alog_parse(s, size, ops, MAX_OPS, err, sizeof(err)) != n)
		abort();
	for (int i = 0; i < n && i < MAX_OPS; i++) {
		const struct ism_alog_op *op = &ops[i];

		if (op->field == ISM_ALOG_F_LITERAL &&
		    (op->lit.p < s || op->lit.len == 0 || op->lit.p + op->lit.len > s + size))
			abort();
		if (op->field >= ISM_ALOG_F_COUNT || op->field == ISM_ALOG_F_UPSTREAM_ENDPOINT)
			abort();
		if (op->field == ISM_ALOG_F_REQ &&
		    ((op->hdr >= ISM_ALOG_H_COUNT && op->hdr != ISM_ALOG_H_NONE) ||
		     (op->alt >= ISM_ALOG_H_COUNT && op->alt != ISM_ALOG_H_NONE)))
			abort();
	}
	return 0;
}
