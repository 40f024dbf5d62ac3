/* SPDX-License-Identifier: Apache-2.0 */
#include "lib/grpc.h"

#include <stdio.h>

#define MAX_VALUE 99999999ull /* 8 digits */

int64_t ism_grpc_timeout_parse(const char *v, size_t len)
{
	uint64_t n = 0;

	if (len < 2 || len > 9)
		return -1;
	for (size_t i = 0; i + 1 < len; i++) {
		if (v[i] < '0' || v[i] > '9')
			return -1;
		n = n * 10 + (uint64_t)(v[i] - '0');
	}
	switch (v[len - 1]) {
	case 'H':
		return (int64_t)(n * 3600000);
	case 'M':
		return (int64_t)(n * 60000);
	case 'S':
		return (int64_t)(n * 1000);
	case 'm':
		return (int64_t)n;
	case 'u':
		return (int64_t)((n + 999) / 1000);
	case 'n':
		return (int64_t)((n + 999999) / 1000000);
	default:
		return -1;
	}
}

size_t ism_grpc_timeout_fmt(char *out, uint64_t ms)
{
	static const char units[] = "mSMH";
	const char *unit = units;
	uint64_t t = ms;
	int n;

	if (t > MAX_VALUE) {
		t /= 1000;
		unit++;
	}
	while (t > MAX_VALUE) {
		if (*unit == 'H') {
			t = MAX_VALUE;
		} else {
			t /= 60;
			unit++;
		}
	}
	n = snprintf(out, ISM_GRPC_TIMEOUT_MAX, "%llu%c", (unsigned long long)t, *unit);
	return n > 0 ? (size_t)n : 0;
}

const char *const ism_grpc_names[18] = {"OK",
					"CANCELLED",
					"UNKNOWN",
					"INVALID_ARGUMENT",
					"DEADLINE_EXCEEDED",
					"NOT_FOUND",
					"ALREADY_EXISTS",
					"PERMISSION_DENIED",
					"RESOURCE_EXHAUSTED",
					"FAILED_PRECONDITION",
					"ABORTED",
					"OUT_OF_RANGE",
					"UNIMPLEMENTED",
					"INTERNAL",
					"UNAVAILABLE",
					"DATA_LOSS",
					"UNAUTHENTICATED",
					NULL};

const char *const ism_grpc_camel_names[18] = {"OK",
					      "Canceled",
					      "Unknown",
					      "InvalidArgument",
					      "DeadlineExceeded",
					      "NotFound",
					      "AlreadyExists",
					      "PermissionDenied",
					      "ResourceExhausted",
					      "FailedPrecondition",
					      "Aborted",
					      "OutOfRange",
					      "Unimplemented",
					      "Internal",
					      "Unavailable",
					      "DataLoss",
					      "Unauthenticated",
					      NULL};
