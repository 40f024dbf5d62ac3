/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer harness for the RE2 syntax check: arbitrary bytes go to
 * ism_re2_check. A refusal must carry a reason and an offset inside the
 * pattern; an acceptance must be a pattern PCRE2 compiles with the options
 * conf/re2syntax.h recommends, the one exception being PCRE2's compiled-size
 * limit (PCRE2_ERROR_PATTERN_TOO_LARGE: PCRE2 copies a repeated group once per
 * count, so (?:[a-z]...){1000} outgrows its 64 KiB while RE2 takes it). */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "conf/re2syntax.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static pcre2_compile_context *cc;
	const char *why = NULL;
	size_t off = 0;
	PCRE2_SIZE eoff;
	pcre2_code *re;
	int rc, err;

	if (!cc) {
		cc = pcre2_compile_context_create(NULL);
		if (!cc || pcre2_set_newline(cc, PCRE2_NEWLINE_LF) != 0)
			abort();
	}
	rc = ism_re2_check((const char *)data, size, &off, &why);
	if (rc == -EINVAL) {
		if (!why || !why[0] || (size > 0 && off >= size) || (size == 0 && off != 0))
			abort();
		return 0;
	}
	if (rc != 0)
		abort();
	re = pcre2_compile((PCRE2_SPTR)data, size,
			   PCRE2_UTF | PCRE2_ANCHORED | PCRE2_ENDANCHORED | PCRE2_DOLLAR_ENDONLY |
			       PCRE2_ALT_CIRCUMFLEX | PCRE2_NEVER_BACKSLASH_C,
			   &err, &eoff, cc);
	if (!re && err != PCRE2_ERROR_PATTERN_TOO_LARGE)
		abort();
	pcre2_code_free(re);
	return 0;
}
