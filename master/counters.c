/* SPDX-License-Identifier: Apache-2.0 */
/* The listener, route and cluster counters kept by name across generations
 * (master/counters.h). A generation is indexed by kind and name once for each
 * use (a metrics page, a reclaim), so that a lookup costs the same whatever
 * the number of routes. */
#include "master/counters.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "shm/table.h"

/* Calls each(ctx, kind, listener, name, obj) for every counted object of t,
 * in the order a search would find them (a route's counters are one object
 * for every vhost of its listener that has the route). */
typedef void each_counted_fn(void *ctx, enum ism_counted kind, const struct ism_str *listener,
			     const struct ism_str *name, const void *obj);

static void each_l4(const struct ism_l4route *rt, uint32_t n, const struct ism_listener *l,
		    each_counted_fn *each, void *ctx)
{
	for (uint32_t i = 0; i < n; i++)
		if (rt[i].stats != NULL)
			each(ctx, ISM_COUNTED_L4, &l->name, &rt[i].name, rt[i].stats);
}

static void each_counted(const struct ism_table *t, each_counted_fn *each, void *ctx)
{
	for (uint32_t c = 0; c < t->n_clusters; c++)
		if (t->clusters[c].dyn != NULL)
			each(ctx, ISM_COUNTED_CLUSTER, NULL, &t->clusters[c].name,
			     t->clusters[c].dyn);
	for (uint32_t li = 0; li < t->n_listeners; li++) {
		const struct ism_listener *l = &t->listeners[li];

		if (l->stats != NULL)
			each(ctx, ISM_COUNTED_LISTENER, NULL, &l->name, l->stats);
		for (uint32_t set = 0; set < ism_listener_sets(l); set++) {
			uint32_t nv;
			const struct ism_vhost *vh = ism_listener_set(l, set, &nv);

			for (uint32_t v = 0; v < nv; v++)
				for (uint32_t i = 0; i < vh[v].n_routes; i++)
					if (vh[v].routes[i].stats != NULL)
						each(ctx, ISM_COUNTED_ROUTE, &l->name,
						     &vh[v].routes[i].name, vh[v].routes[i].stats);
		}
		each_l4(l->tcp_routes, l->n_tcp, l, each, ctx);
		for (uint32_t i = 0; i < l->n_tls; i++)
			each_l4(l->tls[i].l4, l->tls[i].n_l4, l, each, ctx);
	}
}

/* A key: its kind's digit, the listener's name (none: empty), NUL, the
 * name. */
static size_t key_len(const struct ism_str *listener, const struct ism_str *name)
{
	return 2 + (listener != NULL ? listener->len : 0) + name->len;
}

static void key_write(char *p, enum ism_counted kind, const struct ism_str *listener,
		      const struct ism_str *name)
{
	size_t ll = listener != NULL ? listener->len : 0;

	p[0] = (char)('0' + kind);
	if (ll)
		memcpy(p + 1, listener->p, ll);
	p[1 + ll] = '\0';
	if (name->len)
		memcpy(p + 2 + ll, name->p, name->len);
}

struct index_build {
	struct ism_counted_index *x;
	size_t bytes, n, at;
	bool failed;
};

static void count_key(void *ctx, enum ism_counted kind, const struct ism_str *listener,
		      const struct ism_str *name, const void *obj)
{
	struct index_build *b = ctx;

	(void)kind;
	(void)obj;
	b->bytes += key_len(listener, name);
	b->n++;
}

static void add_key(void *ctx, enum ism_counted kind, const struct ism_str *listener,
		    const struct ism_str *name, const void *obj)
{
	struct index_build *b = ctx;
	char *key = b->x->keys + b->at;
	size_t len = key_len(listener, name);
	int ret;

	key_write(key, kind, listener, name);
	b->at += len;
	/* The first of a name stays, as a search finds it first. */
	ret = ism_strmap_add(&b->x->map, key, len, (uint32_t)b->n, NULL);
	if (ret < 0)
		b->failed = true;
	else if (ret > 0)
		b->x->objs[b->n++] = obj;
}

/* x indexes t; false when out of memory (logged: x then finds nothing). */
static bool index_table(struct ism_counted_index *x, const struct ism_table *t)
{
	struct index_build b = {.x = x};

	memset(x, 0, sizeof(*x));
	ism_strmap_init(&x->map, 0x6973746875730004ull);
	each_counted(t, count_key, &b);
	x->keys = malloc(b.bytes ? b.bytes : 1);
	x->objs = calloc(b.n ? b.n : 1, sizeof(*x->objs));
	if (x->keys == NULL || x->objs == NULL || ism_strmap_reserve(&x->map, b.n) < 0) {
		b.failed = true;
	} else {
		b.n = 0;
		each_counted(t, add_key, &b);
	}
	if (b.failed) {
		ism_strmap_free(&x->map);
		ism_warn("counters: out of memory indexing a generation: its counts are left out");
	}
	return !b.failed;
}

static void index_free(struct ism_counted_index *x)
{
	ism_strmap_free(&x->map);
	free(x->keys);
	free(x->objs);
	memset(x, 0, sizeof(*x));
}

/* The object of that kind and name x indexes; NULL: none. */
static const void *index_find(const struct ism_counted_index *x, enum ism_counted kind,
			      const struct ism_str *listener, const struct ism_str *name)
{
	char small[512], *key = small;
	size_t len = key_len(listener, name);
	uint32_t i;
	bool found;

	if (len > sizeof(small) && (key = malloc(len)) == NULL)
		return NULL;
	key_write(key, kind, listener, name);
	found = ism_strmap_get(&x->map, key, len, &i);
	if (key != small)
		free(key);
	return found ? x->objs[i] : NULL;
}

void ism_older_tables(const struct ism_shm *shm, const struct ism_table *cur, struct ism_older *o)
{
	o->n = 0;
	for (int i = 0; i < ISM_GEN_SLOTS; i++) {
		const struct ism_table *t = ism_shm_gen_table(shm, i);

		if (t != NULL && t != cur) {
			o->t[o->n] = t;
			index_table(&o->idx[o->n++], t);
		}
	}
}

void ism_older_free(struct ism_older *o)
{
	for (int i = 0; i < o->n; i++)
		index_free(&o->idx[i]);
	o->n = 0;
}

static uint64_t counter_at(const void *obj, size_t off)
{
	return atomic_load((const _Atomic uint64_t *)((const char *)obj + off));
}

uint64_t ism_counters_sum(const struct ism_older *o, enum ism_counted kind,
			  const struct ism_str *listener, const struct ism_str *name,
			  const void *own, size_t off)
{
	uint64_t n = counter_at(own, off);

	for (int i = 0; i < o->n; i++) {
		const void *c = index_find(&o->idx[i], kind, listener, name);

		if (c != NULL && c != own)
			n += counter_at(c, off);
	}
	return n;
}

/* The counts of from into to. */
static void add_counters(const struct ism_counters *from, const struct ism_counters *to)
{
	struct ism_counters *dst = (struct ism_counters *)to;

	for (int k = 0; k < 6; k++)
		atomic_fetch_add(&dst->responses[k], atomic_load(&from->responses[k]));
}

static void add_l4(const struct ism_l4counters *from, const struct ism_l4counters *to)
{
	struct ism_l4counters *dst = (struct ism_l4counters *)to;

	atomic_fetch_add(&dst->connections, atomic_load(&from->connections));
	atomic_fetch_add(&dst->bytes_in, atomic_load(&from->bytes_in));
	atomic_fetch_add(&dst->bytes_out, atomic_load(&from->bytes_out));
}

static void add_cluster(const struct ism_cluster_dyn *from, const struct ism_cluster_dyn *to)
{
	struct ism_cluster_dyn *dst = (struct ism_cluster_dyn *)to;

	for (int k = 0; k < 6; k++)
		atomic_fetch_add(&dst->responses[k], atomic_load(&from->responses[k]));
	atomic_fetch_add(&dst->retries, atomic_load(&from->retries));
	atomic_fetch_add(&dst->overflow, atomic_load(&from->overflow));
}

struct carry {
	struct ism_counted_index to;
	struct ism_strmap seen; /* the objects of from carried already */
};

/* Whether p was carried already (a route's counters are one object for
 * every vhost of its listener that has the route); notes it. */
static bool carried(struct ism_strmap *seen, const void *p)
{
	return ism_strmap_add(seen, (const char *)&p, sizeof(p), 0, NULL) == 0;
}

static void carry_one(void *ctx, enum ism_counted kind, const struct ism_str *listener,
		      const struct ism_str *name, const void *obj)
{
	struct carry *k = ctx;
	const void *dst = index_find(&k->to, kind, listener, name);

	if (dst == NULL || dst == obj || carried(&k->seen, obj))
		return;
	switch (kind) {
	case ISM_COUNTED_LISTENER:
	case ISM_COUNTED_ROUTE:
		add_counters(obj, dst);
		break;
	case ISM_COUNTED_L4:
		add_l4(obj, dst);
		break;
	case ISM_COUNTED_CLUSTER:
		add_cluster(obj, dst);
		break;
	}
}

void ism_counters_carry(const struct ism_table *from, const struct ism_table *to)
{
	struct carry k;

	if (from == NULL || to == NULL || from == to || !index_table(&k.to, to))
		return;
	ism_strmap_init(&k.seen, 0x6973746875730003ull);
	each_counted(from, carry_one, &k);
	ism_strmap_free(&k.seen);
	index_free(&k.to);
}
