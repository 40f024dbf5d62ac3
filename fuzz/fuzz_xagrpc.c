/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer harness for the reading of a gRPC external authorizer's answer
 * (worker/xagrpc.c): the input is the body of a Check answer, its gRPC
 * frames. Besides memory safety (ASan, UBSan) it checks the contract: an
 * answer read has every string inside the input, a denied one a status of
 * 100..599, every field name a token (after a pseudo-header's ':') and every
 * value free of CR, LF and NUL. */
#include <stdlib.h>
#include <string.h>

#include "worker/xagrpc.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void inside(const uint8_t *data, size_t size, const char *p, uint32_t n)
{
	if (n > 0 &&
	    (p == NULL || (const uint8_t *)p < data || (const uint8_t *)p + n > data + size))
		abort();
}

static void list_ok(const uint8_t *data, size_t size, const struct ism_xa_list *l, bool names)
{
	if (l->n > l->cap)
		abort();
	for (uint32_t i = 0; i < l->n; i++) {
		const struct ism_xa_field_opt *f = &l->f[i];

		inside(data, size, f->name, f->name_len);
		inside(data, size, f->value, f->value_len);
		if (names &&
		    (f->name_len == 0 ||
		     (f->name_len > 1 && memchr(f->name + 1, ':', f->name_len - 1) != NULL)))
			abort();
		if (f->value_len > 0 && (memchr(f->value, '\r', f->value_len) != NULL ||
					 memchr(f->value, '\n', f->value_len) != NULL ||
					 memchr(f->value, 0, f->value_len) != NULL))
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ism_xa_grpc_resp *r = malloc(sizeof(*r));

	if (r == NULL)
		return 0;
	if (ism_xa_grpc_response(data, size, r) == 0) {
		if (!r->ok && (r->status < 100 || r->status > 599))
			abort();
		inside(data, size, r->body, r->body_len);
		list_ok(data, size, &r->hdrs, true);
		list_ok(data, size, &r->resp, true);
		list_ok(data, size, &r->remove, true);
		list_ok(data, size, &r->qset, false);
		list_ok(data, size, &r->qrm, false);
	}
	ism_xa_grpc_resp_free(r);
	free(r);
	return 0;
}
