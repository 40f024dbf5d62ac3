/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer harness for the gRPC health check's reading (health/grpccheck.c):
 * the input is what an upstream answers a check, after the server's side of
 * the connection preface is assumed nothing (nghttp2 wants a SETTINGS first).
 * It is fed in pieces whose sizes the input's first byte chooses, as reads of
 * a socket would split it. Besides memory safety (ASan, UBSan) it checks the
 * contract: a verdict, once given, stands whatever follows, and the end of the
 * connection always gives one. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "health/grpccheck.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ism_grpc_check *g;
	enum ism_grpc_verdict v = ISM_GRPC_MORE, w;
	size_t piece, at;
	char why[128];

	if (size < 1)
		return 0;
	piece = (size_t)data[0] % 64 + 1;
	data++;
	size--;
	g = ism_grpc_check_new("up.example", "svc", false, 1000);
	if (g == NULL)
		return 0;
	for (at = 0; at < size; at += piece) {
		size_t n = size - at < piece ? size - at : piece;

		w = ism_grpc_check_in(g, data + at, n, why, sizeof(why));
		if (v != ISM_GRPC_MORE && w != v)
			abort(); /* a verdict changed */
		v = w;
	}
	w = ism_grpc_check_in(g, NULL, 0, why, sizeof(why));
	if (w == ISM_GRPC_MORE || (v != ISM_GRPC_MORE && w != v) || why[0] == '\0')
		abort(); /* the end gives a verdict, the first one */
	ism_grpc_check_free(g);
	return 0;
}
