/* SPDX-License-Identifier: Apache-2.0 */
/* /proc/PID/stat parsing (master/procstat.c): CPU time from utime and stime,
 * memory from vsize and rss, a command name holding spaces and parentheses,
 * negative fields, and text that is not such a line. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "master/procstat.h"
#include "tests/unit/check.h"

/* utime 250 and stime 50 ticks, vsize 123456789, rss 1000 pages. */
#define STAT_TAIL                                                                                  \
	" S 1 812 812 0 -1 4194560 1200 0 3 0 250 50 0 0 20 0 3 0 4242 123456789 1000 "            \
	"18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 17 1 0 0 0 0 0\n"

static void test_parse(void **state)
{
	static const char *const lines[] = {
	    "812 (isthmus)" STAT_TAIL,
	    "812 (a) b (c)" STAT_TAIL,
	    "812 ()" STAT_TAIL,
	};
	struct ism_procstat ps;

	(void)state;
	for (size_t i = 0; i < sizeof(lines) / sizeof(lines[0]); i++) {
		int ret = ism_procstat_parse(lines[i], strlen(lines[i]), 100, 4096, &ps);

		CHECK(lines[i], ret == 0, "returned %d", ret);
		CHECK(lines[i], ps.cpu_s == 3.0, "cpu %g s", ps.cpu_s);
		CHECK(lines[i], ps.rss_bytes == 4096000, "rss %llu",
		      (unsigned long long)ps.rss_bytes);
		CHECK(lines[i], ps.vsize_bytes == 123456789, "vsize %llu",
		      (unsigned long long)ps.vsize_bytes);
	}
}

static void test_refused(void **state)
{
	static const char *const bad[] = {
	    "",
	    "812 isthmus S 1",
	    "812 (isthmus) S 1 812 812 0 -1 4194560 1200 0 3 0 250",
	    "812 (isthmus) S 1 812 812 0 -1 4194560 1200 0 3 0 25x0 50 0 0 20 0 3 0 4242 1 1\n",
	};
	struct ism_procstat ps;

	(void)state;
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		CHECK(bad[i], ism_procstat_parse(bad[i], strlen(bad[i]), 100, 4096, &ps) == -EINVAL,
		      "accepted");
}

/* This process: some CPU and memory, and a few descriptors. */
static void test_self(void **state)
{
	struct ism_procstat ps;
	int fds = ism_procstat_open_fds();

	(void)state;
	CHECK("self", ism_procstat_read(0, &ps) == 0 && ps.rss_bytes > 0 && ps.vsize_bytes > 0,
	      "rss %llu", (unsigned long long)ps.rss_bytes);
	CHECK("getpid", ism_procstat_read(getpid(), &ps) == 0, "cannot read /proc/<pid>/stat");
	CHECK("fds", fds >= 3, "%d open descriptors", fds);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_parse),
	    cmocka_unit_test(test_refused),
	    cmocka_unit_test(test_self),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
