/* SPDX-License-Identifier: Apache-2.0 */
/* An appliance file loaded from text and compiled into a heap arena, for the
 * unit tests of what conf/ makes of a file. Include it after <cmocka.h>. */
#ifndef ISM_TESTS_UNIT_LOADED_H
#define ISM_TESTS_UNIT_LOADED_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"

#define LOADED_ARENA_SIZE (4u << 20)

struct loaded {
	struct ism_diags d;
	struct ism_conf *conf;
	void *mem;
	struct ism_arena arena;
	const struct ism_table *t;
};

/* Endpoint ids 0, 1, 2... in the order asked; no outlier slots. */
static inline int loaded_ep_id(void *ctx, enum ism_conf_slot kind, const char *key, bool has_hc,
			       uint32_t *id)
{
	uint32_t *next = ctx;

	(void)key;
	(void)has_hc;
	if (kind == ISM_CONF_SLOT_OUTLIER) {
		*id = ISM_NO_OD_SLOT;
		return 0;
	}
	*id = (*next)++;
	return 0;
}

/* Endpoint slots by key (loaded_slot_id): a key keeps its id across loads,
 * as the master keeps them; no outlier slots. */
struct loaded_slots {
	char keys[64][300];
	uint32_t n;
};

static inline int loaded_slot_id(void *ctx, enum ism_conf_slot kind, const char *key, bool has_hc,
				 uint32_t *id)
{
	struct loaded_slots *s = ctx;

	(void)has_hc;
	if (kind == ISM_CONF_SLOT_OUTLIER) {
		*id = ISM_NO_OD_SLOT;
		return 0;
	}
	for (uint32_t i = 0; i < s->n; i++)
		if (strcmp(s->keys[i], key) == 0) {
			*id = i;
			return 0;
		}
	assert_true(s->n < 64);
	snprintf(s->keys[s->n], sizeof(s->keys[0]), "%s", key);
	*id = s->n++;
	return 0;
}

/* Loads text as file name; when it loads, compiles it (which must succeed)
 * with endpoint ids from ep_id (ctx). The load's rc; the diagnostics are in
 * l->d either way. */
static inline int loaded_load_ids(struct loaded *l, const char *name, const char *text,
				  ism_conf_ep_id_cb ep_id, void *ctx)
{
	int rc;

	memset(l, 0, sizeof(*l));
	ism_diags_init(&l->d);
	rc = ism_conf_load_buf(name, text, strlen(text), &l->conf, &l->d);
	if (rc < 0)
		return rc;
	l->mem = malloc(LOADED_ARENA_SIZE);
	assert_non_null(l->mem);
	ism_arena_init(&l->arena, l->mem, LOADED_ARENA_SIZE);
	rc = ism_conf_compile(l->conf, &l->arena, ep_id, ctx, &l->t, &l->d);
	assert_int_equal(rc, 0);
	return 0;
}

/* loaded_load_ids with ids 0, 1, 2... in the order asked (loaded_ep_id). */
static inline int loaded_load(struct loaded *l, const char *name, const char *text)
{
	uint32_t next = 0;

	return loaded_load_ids(l, name, text, loaded_ep_id, &next);
}

/* The cluster of t named name ("outbound|<port>|<subset>|<host>"); fails the
 * test when there is none. */
static inline const struct ism_cluster *loaded_cluster(const struct ism_table *t, const char *name)
{
	for (uint32_t i = 0; i < t->n_clusters; i++)
		if (strcmp(t->clusters[i].name.p, name) == 0)
			return &t->clusters[i];
	fail_msg("no cluster %s", name);
	return NULL;
}

/* The whole file at path, NUL-terminated (malloc'd); NULL when unreadable. */
static inline char *loaded_read_file(const char *path)
{
	FILE *fp = fopen(path, "rb");
	char *buf = NULL;
	long n;

	if (fp == NULL)
		return NULL;
	if (fseek(fp, 0, SEEK_END) == 0 && (n = ftell(fp)) >= 0 && fseek(fp, 0, SEEK_SET) == 0) {
		buf = malloc((size_t)n + 1);
		if (buf != NULL && fread(buf, 1, (size_t)n, fp) != (size_t)n) {
			free(buf);
			buf = NULL;
		}
		if (buf != NULL)
			buf[n] = '\0';
	}
	fclose(fp);
	return buf;
}

static inline void loaded_free(struct loaded *l)
{
	ism_conf_free(l->conf);
	free(l->mem);
}

#endif
