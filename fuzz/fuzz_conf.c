/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer harness for the appliance-file loader and compiler: arbitrary
 * bytes go to ism_conf_load_buf; what loads is compiled into a heap arena. */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"

#define ARENA_SIZE (4u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Ids from a counter, with a bound so that -ENOSPC is exercised too. */
static int fuzz_ep_id(void *ctx, enum ism_conf_slot kind, const char *key, bool has_hc,
		      uint32_t *id)
{
	uint32_t *next = ctx;

	(void)key;
	(void)has_hc;
	if (kind == ISM_CONF_SLOT_OUTLIER) {
		*id = ISM_NO_OD_SLOT;
		return 0;
	}
	if (*next >= 1000)
		return -ENOSPC;
	*id = (*next)++;
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ism_diags d;
	struct ism_conf *conf = NULL;
	const struct ism_table *t;
	struct ism_arena arena;
	uint32_t next = 0;
	char out[4096];
	void *mem;

	ism_diags_init(&d);
	if (ism_conf_load_buf("fuzz.yaml", (const char *)data, size, &conf, &d) == 0) {
		mem = malloc(ARENA_SIZE);
		if (mem != NULL) {
			ism_arena_init(&arena, mem, ARENA_SIZE);
			if (ism_conf_compile(conf, &arena, fuzz_ep_id, &next, &t, &d) == 0 &&
			    t->magic != ISM_TABLE_MAGIC)
				abort();
			free(mem);
		}
		ism_conf_free(conf);
	}
	ism_diags_format(out, sizeof(out), &d);
	return 0;
}
