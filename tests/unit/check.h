/* SPDX-License-Identifier: Apache-2.0 */
/* What the cmocka unit tests share. Include it after <cmocka.h>. */
#ifndef ISM_TESTS_UNIT_CHECK_H
#define ISM_TESTS_UNIT_CHECK_H

#include <stdio.h>

/* Fails the test with the case name, since cmocka's messages do not carry it. */
#define CHECK(name, cond, ...)                                                                     \
	do {                                                                                       \
		if (!(cond)) {                                                                     \
			print_error("case \"%s\": ", (name));                                      \
			print_error(__VA_ARGS__);                                                  \
			print_error("\n");                                                         \
			fail();                                                                    \
		}                                                                                  \
	} while (0)

#endif
