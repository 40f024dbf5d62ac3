/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer harness for the CEL subset: arbitrary bytes are compiled against
 * a fixed attribute table. A refusal must carry a message and an offset no
 * further than the end; an acceptance must compile the same way twice, and
 * its program, copied elsewhere and the original scrubbed, must evaluate
 * against each of four fake exchanges (typical values, nothing present,
 * values of the wrong types, extreme values) as the original did, and
 * ism_cel_filter must agree with ism_cel_eval. */
#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf/cel.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { A_STR = 1, A_STR2, A_MAP, A_DUR, A_INT, A_UINT, A_DBL, A_BOOL, A_NULL, A_N };

static const struct ism_cel_attr attrs[] = {
    {"request.url_path", ISM_CEL_STRING, A_STR}, {"request.method", ISM_CEL_STRING, A_STR2},
    {"request.headers", ISM_CEL_MAP, A_MAP},	 {"request.duration", ISM_CEL_DURATION, A_DUR},
    {"response.code", ISM_CEL_INT, A_INT},	 {"test.u", ISM_CEL_UINT, A_UINT},
    {"test.d", ISM_CEL_DOUBLE, A_DBL},		 {"connection.mtls", ISM_CEL_BOOL, A_BOOL},
    {"test.null", ISM_CEL_NULL, A_NULL},
};

static const char long_str[] =
    "/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
    "\xff\xfe\xc3";

/* The value of attribute id (or, for a map's key, of id A_N) in mode. */
static bool value(int mode, uint16_t id, struct ism_cel_val *out)
{
	static const uint8_t wrong[A_N + 1] = {0,
					       ISM_CEL_INT,
					       ISM_CEL_DOUBLE,
					       0,
					       ISM_CEL_STRING,
					       ISM_CEL_BOOL,
					       ISM_CEL_NULL,
					       ISM_CEL_DURATION,
					       ISM_CEL_UINT,
					       ISM_CEL_INT,
					       ISM_CEL_DOUBLE};
	uint8_t type = mode == 2 ? wrong[id] : attrs[id == A_N ? 0 : id - 1].type;

	if (mode == 1)
		return false;
	memset(out, 0, sizeof(*out));
	out->type = type;
	switch (type) {
	case ISM_CEL_STRING:
		out->v.s.p = mode == 3 ? long_str : "GET";
		out->v.s.len = mode == 3 ? sizeof(long_str) - 1 : 3;
		break;
	case ISM_CEL_INT:
		out->v.i = mode == 3 ? INT64_MIN : 503;
		break;
	case ISM_CEL_UINT:
		out->v.u = mode == 3 ? UINT64_MAX : 7;
		break;
	case ISM_CEL_DOUBLE:
		out->v.d = mode == 3 ? NAN : 2.5;
		break;
	case ISM_CEL_DURATION:
		out->v.ns = mode == 3 ? INT64_MAX : 1500000000;
		break;
	case ISM_CEL_BOOL:
		out->v.b = mode != 3;
		break;
	default:
		break;
	}
	return true;
}

static int g_mode;

static bool fake_attr(void *ctx, uint16_t id, struct ism_cel_val *out)
{
	(void)ctx;
	if (id == 0 || id >= A_N || id == A_MAP)
		abort();
	return value(g_mode, id, out);
}

/* Keys of one byte are present; others not. */
static bool fake_map(void *ctx, uint16_t id, const char *key, size_t len, struct ism_cel_val *out)
{
	(void)ctx;
	if (id != A_MAP || (len > 0 && key == NULL))
		abort();
	return len == 1 && value(g_mode, A_N, out);
}

static bool same(const struct ism_cel_val *a, const struct ism_cel_val *b)
{
	if (a->type != b->type)
		return false;
	switch (a->type) {
	case ISM_CEL_STRING:
		return a->v.s.len == b->v.s.len && memcmp(a->v.s.p, b->v.s.p, a->v.s.len) == 0;
	case ISM_CEL_ERROR:
		return strcmp(a->v.s.p, b->v.s.p) == 0;
	case ISM_CEL_NULL:
		return true;
	case ISM_CEL_BOOL:
		return a->v.b == b->v.b;
	default:
		return memcmp(&a->v.i, &b->v.i, sizeof(a->v.i)) == 0;
	}
}

static void run(const void *prog, size_t size, void *copy)
{
	struct ism_cel_env env = {fake_attr, fake_map, NULL};
	char s1[ISM_CEL_SCRATCH], s2[ISM_CEL_SCRATCH];
	struct ism_cel_val a, b;

	for (g_mode = 0; g_mode < 4; g_mode++) {
		memcpy(copy, prog, size);
		ism_cel_eval(prog, &env, s1, sizeof(s1), &a);
		ism_cel_eval(copy, &env, s2, sizeof(s2), &b);
		if (!same(&a, &b) || (a.type == ISM_CEL_ERROR && (a.v.s.p == NULL || !a.v.s.p[0])))
			abort();
		if (ism_cel_filter(prog, &env) != (a.type == ISM_CEL_BOOL && a.v.b))
			abort();
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	void *prog = NULL, *prog2 = NULL, *copy;
	size_t psize = 0, psize2 = 0, at = 0;
	char err[128] = "";
	int rc;

	rc = ism_cel_compile((const char *)data, size, attrs, sizeof(attrs) / sizeof(attrs[0]),
			     &prog, &psize, err, sizeof(err), &at);
	if (rc != 0) {
		if (rc != -EINVAL || prog != NULL || !err[0] || at > size)
			abort();
		return 0;
	}
	if (ism_cel_compile((const char *)data, size, attrs, sizeof(attrs) / sizeof(attrs[0]),
			    &prog2, &psize2, NULL, 0, NULL) != 0 ||
	    psize2 != psize || memcmp(prog, prog2, psize) != 0)
		abort();
	copy = aligned_alloc(8, (psize + 7) / 8 * 8);
	if (copy == NULL)
		abort();
	run(prog, psize, copy);
	free(copy);
	free(prog2);
	free(prog);
	return 0;
}
