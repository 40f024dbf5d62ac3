/* SPDX-License-Identifier: Apache-2.0 */
/* Open-file planning (master/fds.c): the derived default, explicit values that
 * fit, need a raise of the soft or the hard limit, or cannot be honoured, at
 * the start and at a reload. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "master/fds.h"
#include "tests/unit/check.h"

struct fcase {
	const char *name;
	uint32_t explicit_max, listeners;
	uint64_t soft, hard;
	enum ism_fds_raise raise;
	int ret;
	uint32_t max_conn;
	uint64_t new_soft, new_hard;
};

static void test_need(void **state)
{
	(void)state;
	CHECK("need", ism_fds_need(1000, 3) == 2000 + ISM_FDS_RESERVE + 3, "need(1000, 3) = %llu",
	      (unsigned long long)ism_fds_need(1000, 3));
	CHECK("need max", ism_fds_need(UINT32_MAX, 0) == (uint64_t)UINT32_MAX * 2 + ISM_FDS_RESERVE,
	      "need overflows");
}

static void test_plans(void **state)
{
	const uint64_t dflt = ism_fds_need(ISM_FDS_DEFAULT_MAX, 1);
	const struct fcase cases[] = {
	    /* No value: 16384 when the limits allow it; the soft limit is raised. */
	    {"default, room", 0, 1, 1048576, 1048576, ISM_FDS_RAISE, 0, 16384, 1048576, 1048576},
	    {"default, soft raised", 0, 1, 1024, 1048576, ISM_FDS_RAISE, 0, 16384, dflt, 1048576},
	    /* A lower hard limit gives a lower default, the hard limit untouched. */
	    {"default, hard 4096", 0, 1, 1024, 4096, ISM_FDS_RAISE, 0, (4096 - 65) / 2, 4095, 4096},
	    {"default, 2 listeners", 0, 2, 4096, 4096, ISM_FDS_RAISE, 0, (4096 - 66) / 2, 4096,
	     4096},
	    /* A reload derives from the limit the workers have. */
	    {"default, reload", 0, 1, 2000, 1048576, ISM_FDS_KEEP, 0, (2000 - 65) / 2, 2000,
	     1048576},
	    {"default, no room", 0, 1, 66, 66, ISM_FDS_RAISE, -EMFILE, 0, 66, 66},
	    {"default, one", 0, 1, 67, 67, ISM_FDS_RAISE, 0, 1, 67, 67},
	    /* An explicit value: kept when it fits, else the limits are raised. */
	    {"fits", 1000, 1, 4096, 4096, ISM_FDS_RAISE, 0, 1000, 4096, 4096},
	    {"soft raised", 3000, 1, 1024, 8192, ISM_FDS_RAISE, 0, 3000, 6065, 8192},
	    {"hard raised", 100000, 1, 1024, 4096, ISM_FDS_RAISE, 0, 100000, 200065, 200065},
	    {"exactly soft", 2015, 1, 4095, 4096, ISM_FDS_KEEP, 0, 2015, 4095, 4096},
	    /* A reload cannot raise what the running workers have. */
	    {"reload over soft", 2016, 1, 4095, 1048576, ISM_FDS_KEEP, -EMFILE, 2016, 4095,
	     1048576},
	    {"reload fits", 100, 1, 4095, 4096, ISM_FDS_KEEP, 0, 100, 4095, 4096},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct fcase *c = &cases[i];
		struct ism_fds_plan p;
		int ret =
		    ism_fds_plan(c->explicit_max, c->listeners, c->soft, c->hard, c->raise, &p);

		CHECK(c->name, ret == c->ret, "returned %d, want %d", ret, c->ret);
		if (ret < 0) {
			CHECK(c->name, p.need > p.soft, "refused, yet need %llu <= soft %llu",
			      (unsigned long long)p.need, (unsigned long long)p.soft);
			continue;
		}
		CHECK(c->name, p.max_conn == c->max_conn, "max_conn %u, want %u", p.max_conn,
		      c->max_conn);
		CHECK(c->name, p.soft == c->new_soft && p.hard == c->new_hard,
		      "limit %llu/%llu, want %llu/%llu", (unsigned long long)p.soft,
		      (unsigned long long)p.hard, (unsigned long long)c->new_soft,
		      (unsigned long long)c->new_hard);
		CHECK(c->name, p.need <= p.soft && p.soft <= p.hard,
		      "need %llu soft %llu hard %llu", (unsigned long long)p.need,
		      (unsigned long long)p.soft, (unsigned long long)p.hard);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_need),
	    cmocka_unit_test(test_plans),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
