/* SPDX-License-Identifier: Apache-2.0 */
/* The Prometheus writer (master/metrics.c): a family's header, samples with
 * and without labels, label values escaped as the text format wants
 * (backslash, double quote, newline), and float samples. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "master/metrics.h"
#include "tests/unit/check.h"

static void test_family_and_samples(void **state)
{
	static const struct ism_metric m = {"x_total", "counter", "Things."};
	struct ism_reply r;

	(void)state;
	ism_reply_init(&r, 4096);
	ism_prom_family(&r, &m);
	ism_prom_u64(&r, m.name, 18446744073709551615ull, NULL);
	ism_prom_u64(&r, m.name, 7, "a", "1", "b", "two", NULL);
	ism_prom_f64(&r, "y_seconds", 0.25, NULL);
	ism_prom_f64(&r, "y_seconds", 1796150000.5, "k", "v", NULL);
	CHECK("text",
	      strcmp(r.p, "# HELP x_total Things.\n# TYPE x_total counter\n"
			  "x_total 18446744073709551615\n"
			  "x_total{a=\"1\",b=\"two\"} 7\n"
			  "y_seconds 0.25\n"
			  "y_seconds{k=\"v\"} 1796150000.5\n") == 0,
	      "got:\n%s", r.p);
	ism_reply_free(&r);
}

static void test_label_escaping(void **state)
{
	struct ism_reply r;

	(void)state;
	ism_reply_init(&r, 4096);
	ism_prom_u64(&r, "z", 1, "route", "a\"b\\c\nd", "e", "", NULL);
	CHECK("escaped", strcmp(r.p, "z{route=\"a\\\"b\\\\c\\nd\",e=\"\"} 1\n") == 0, "got: %s",
	      r.p);
	ism_reply_free(&r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_family_and_samples),
	    cmocka_unit_test(test_label_escaping),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
