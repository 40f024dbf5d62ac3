/* SPDX-License-Identifier: Apache-2.0 */
/* Answers that grow (master/reply.c): appends past the first allocation, the
 * exact text, the bound (an append that does not fit marks the reply
 * incomplete and leaves the text as it was), and appends after that. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "master/reply.h"
#include "tests/unit/check.h"

static void test_empty(void **state)
{
	struct ism_reply r;

	(void)state;
	ism_reply_init(&r, 100);
	CHECK("empty", r.p == NULL && r.len == 0 && !r.incomplete, "a new reply holds something");
	ism_say(&r, "%s", "");
	CHECK("empty append", r.p != NULL && r.len == 0 && r.p[0] == '\0' && !r.incomplete,
	      "an empty append: len %zu", r.len);
	ism_reply_free(&r);
	CHECK("freed", r.p == NULL && r.len == 0 && r.max == 100, "free does not reset the reply");
}

/* 200,000 lines (several MB, far past the first allocation), checked byte for byte. */
static void test_grows_exactly(void **state)
{
	struct ism_reply r;
	char want[64];
	size_t off = 0;

	(void)state;
	ism_reply_init(&r, 64u << 20);
	for (int i = 0; i < 200000; i++)
		ism_say(&r, "metric_%d{endpoint=\"10.0.%d.%d:80\"} %d\n", i, i / 256, i % 256, i);
	CHECK("grown", !r.incomplete && r.len < r.cap && r.p[r.len] == '\0',
	      "len %zu cap %zu incomplete %d", r.len, r.cap, r.incomplete);
	for (int i = 0; i < 200000; i++) {
		int n = snprintf(want, sizeof(want), "metric_%d{endpoint=\"10.0.%d.%d:80\"} %d\n",
				 i, i / 256, i % 256, i);

		CHECK("line", off + (size_t)n <= r.len && memcmp(r.p + off, want, (size_t)n) == 0,
		      "line %d differs", i);
		off += (size_t)n;
	}
	CHECK("length", off == r.len, "%zu bytes of lines, len %zu", off, r.len);
	ism_reply_free(&r);
}

/* The bound: text up to max exactly fits; one more byte does not, and then
 * nothing more is appended, not even what would fit. */
static void test_bound(void **state)
{
	struct ism_reply r;
	char big[10001];

	(void)state;
	memset(big, 'x', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ism_reply_init(&r, 10000);
	ism_say(&r, "%s", big);
	CHECK("exactly max", !r.incomplete && r.len == 10000 && r.p[10000] == '\0',
	      "10000 bytes into a 10000-byte reply: len %zu incomplete %d", r.len, r.incomplete);
	ism_say(&r, "y");
	CHECK("one more", r.incomplete && r.len == 10000 && r.p[10000] == '\0',
	      "a byte past the bound: len %zu incomplete %d", r.len, r.incomplete);
	ism_reply_free(&r);

	ism_reply_init(&r, 100);
	ism_say(&r, "%s", "0123456789");
	ism_say(&r, "%s", big);	 /* does not fit */
	ism_say(&r, "%s", "ab"); /* would fit, but the text is incomplete already */
	CHECK("after", r.incomplete && r.len == 10 && strcmp(r.p, "0123456789") == 0,
	      "text after an append that did not fit: %zu \"%s\"", r.len, r.p);
	ism_reply_free(&r);
	CHECK("free clears", !r.incomplete && r.len == 0, "free keeps the incomplete mark");
}

/* Room made at once: the appends that fit in it move nothing; room past the
 * bound is refused. */
static void test_reserve(void **state)
{
	struct ism_reply r;
	char *before;

	(void)state;
	ism_reply_init(&r, 1u << 20);
	CHECK("reserve", ism_reply_reserve(&r, 300000) == 0 && r.cap >= 300001,
	      "reserve 300000: cap %zu", r.cap);
	before = r.p;
	for (int i = 0; i < 30000; i++)
		ism_say(&r, "%09d\n", i);
	CHECK("no move", r.p == before && r.len == 300000 && !r.incomplete,
	      "appends within the reserved room moved the text or lost some: len %zu", r.len);
	CHECK("content", memcmp(r.p + 299990, "000029999\n", 10) == 0, "last line wrong");
	CHECK("past bound", ism_reply_reserve(&r, (1u << 20) - 299999) == -1 && r.incomplete,
	      "room past the bound was granted");
	ism_reply_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_empty),
	    cmocka_unit_test(test_grows_exactly),
	    cmocka_unit_test(test_bound),
	    cmocka_unit_test(test_reserve),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
