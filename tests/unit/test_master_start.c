/* SPDX-License-Identifier: Apache-2.0 */
/* The master's start when memory runs out (master/master.c): it gives up with
 * status 1 and leaves the descriptors it did not open alone (standard input
 * stays open). This binary defines calloc, which the library's calls resolve to:
 * it fails the allocation of the diagnostics record once armed. */
#include <fcntl.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf/conf.h"
#include "master/master.h"
#include "tests/unit/check.h"

#if defined(__SANITIZE_ADDRESS__)
#define ISM_TEST_OWN_CALLOC 0 /* the sanitizer's allocator must see every block */
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define ISM_TEST_OWN_CALLOC 0
#endif
#endif
#ifndef ISM_TEST_OWN_CALLOC
#define ISM_TEST_OWN_CALLOC 1
#endif

static size_t fail_size; /* 0: every allocation succeeds */

#if ISM_TEST_OWN_CALLOC
void *__libc_calloc(size_t n, size_t size);

void *calloc(size_t n, size_t size)
{
	if (fail_size != 0 && n == 1 && size == fail_size) {
		fail_size = 0;
		return NULL;
	}
	return __libc_calloc(n, size);
}
#endif

static void test_no_memory_keeps_stdin(void **state)
{
	struct ism_master_opts opts = {.conf_path = "/nonexistent/isthmus.yaml"};
	int p[2], saved = dup(0), status;

	(void)state;
	if (!ISM_TEST_OWN_CALLOC)
		skip();
	assert_true(saved >= 0);
	assert_int_equal(pipe(p), 0);
	assert_int_equal(dup2(p[0], 0), 0);
	fail_size = sizeof(struct ism_diags);
	status = ism_master_run(&opts);
	CHECK("status", status == 1, "ism_master_run returned %d", status);
	CHECK("stdin", fcntl(0, F_GETFD) >= 0, "standard input was closed");
	CHECK("armed", fail_size == 0, "the diagnostics were not allocated with calloc");
	dup2(saved, 0);
	close(saved);
	close(p[0]);
	close(p[1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_no_memory_keeps_stdin),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
