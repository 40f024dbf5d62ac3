/* SPDX-License-Identifier: Apache-2.0 */
#include "worker/regen.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "shm/table.h"

/* One named object with counters: field is the address of its counters
 * pointer in its table (the map's key memory, valid as long as the table). */
typedef int (*visit_fn)(void *arg, const struct ism_str *name, void *const *field);

/* Every route of t (l4: every TCP and TLS route), once per place it has
 * (a VirtualService's routes are shared by its virtual hosts). */
static int each_route(const struct ism_table *t, bool l4, visit_fn fn, void *arg)
{
	int ret = 0;

	for (uint32_t l = 0; l < t->n_listeners && ret == 0; l++) {
		const struct ism_listener *li = &t->listeners[l];

		if (l4) {
			for (uint32_t i = 0; i < li->n_tcp && ret == 0; i++)
				ret = fn(arg, &li->tcp_routes[i].name,
					 (void *const *)&li->tcp_routes[i].stats);
			for (uint32_t s = 0; s < li->n_tls && ret == 0; s++)
				for (uint32_t i = 0; i < li->tls[s].n_l4 && ret == 0; i++)
					ret = fn(arg, &li->tls[s].l4[i].name,
						 (void *const *)&li->tls[s].l4[i].stats);
			continue;
		}
		for (uint32_t set = 0; set < ism_listener_sets(li) && ret == 0; set++) {
			uint32_t nv;
			const struct ism_vhost *vh = ism_listener_set(li, set, &nv);

			for (uint32_t v = 0; v < nv && ret == 0; v++)
				for (uint32_t i = 0; i < vh[v].n_routes && ret == 0; i++)
					ret = fn(arg, &vh[v].routes[i].name,
						 (void *const *)&vh[v].routes[i].stats);
		}
	}
	return ret;
}

struct names {
	struct ism_strmap map; /* the newer table's names -> index in s->to */
	struct ism_regen_stats *s;
	uint32_t cap;
};

static int add_new(void *arg, const struct ism_str *name, void *const *field)
{
	struct names *nm = arg;
	struct ism_regen_stats *s = nm->s;
	int ret;

	if (*field == NULL)
		return 0;
	if (s->n == nm->cap) {
		uint32_t cap = nm->cap ? 2 * nm->cap : 16;
		void **to = realloc(s->to, cap * sizeof(*to));

		if (to == NULL)
			return -ENOMEM;
		s->to = to;
		nm->cap = cap;
	}
	ret = ism_strmap_add(&nm->map, name->p, name->len, s->n, NULL);
	if (ret < 0)
		return ret;
	if (ret > 0)
		s->to[s->n++] = *field;
	return 0;
}

static int add_old(void *arg, const struct ism_str *name, void *const *field)
{
	struct names *nm = arg;
	uint32_t i;
	int ret;

	if (*field == NULL || !ism_strmap_get(&nm->map, name->p, name->len, &i))
		return 0;
	ret = ism_strmap_add(&nm->s->by_old, (const char *)field, sizeof(*field), i, NULL);
	return ret < 0 ? ret : 0;
}

static int stats_init(struct ism_regen_stats *s, const struct ism_regen *g, bool l4)
{
	struct names nm = {.s = s};
	int ret;

	ism_strmap_init(&nm.map, ism_strmap_seed());
	ism_strmap_init(&s->by_old, ism_strmap_seed());
	ret = each_route(g->cur, l4, add_new, &nm);
	if (ret == 0)
		ret = each_route(g->old, l4, add_old, &nm);
	ism_strmap_free(&nm.map);
	return ret;
}

static void stats_free(struct ism_regen_stats *s)
{
	ism_strmap_free(&s->by_old);
	free(s->to);
	s->to = NULL;
	s->n = 0;
}

static void *stats_get(const struct ism_regen_stats *s, const void *old)
{
	uint32_t i;

	if (old == NULL || !ism_strmap_get(&s->by_old, (const char *)&old, sizeof(old), &i))
		return NULL;
	return s->to[i];
}

int ism_regen_init(struct ism_regen *g, const struct ism_table *old, const struct ism_table *cur)
{
	int ret = 0;

	*g = (struct ism_regen){.old = old, .cur = cur};
	ism_strmap_init(&g->clusters, ism_strmap_seed());
	for (uint32_t i = 0; i < cur->n_clusters && ret >= 0; i++)
		ret = ism_strmap_add(&g->clusters, cur->clusters[i].name.p,
				     cur->clusters[i].name.len, i, NULL);
	if (ret >= 0)
		ret = stats_init(&g->routes, g, false);
	if (ret >= 0)
		ret = stats_init(&g->l4, g, true);
	if (ret < 0) {
		ism_regen_free(g);
		return ret;
	}
	return 0;
}

void ism_regen_free(struct ism_regen *g)
{
	ism_strmap_free(&g->clusters);
	stats_free(&g->routes);
	stats_free(&g->l4);
}

uint32_t ism_regen_cluster(const struct ism_regen *g, uint32_t i)
{
	const struct ism_str *name;
	uint32_t ci;

	if (i >= g->old->n_clusters)
		return UINT32_MAX;
	name = &g->old->clusters[i].name;
	return ism_strmap_get(&g->clusters, name->p, name->len, &ci) ? ci : UINT32_MAX;
}

const struct ism_endpoint *ism_regen_endpoint(const struct ism_regen *g, uint32_t ci,
					      const struct ism_endpoint *ep)
{
	const struct ism_cluster *cl;

	if (ep == NULL || ci >= g->cur->n_clusters)
		return NULL;
	cl = &g->cur->clusters[ci];
	for (uint32_t e = 0; e < cl->n_endpoints; e++)
		if (cl->endpoints[e].id == ep->id)
			return &cl->endpoints[e];
	return NULL;
}

struct ism_counters *ism_regen_route(const struct ism_regen *g, const struct ism_counters *c)
{
	return stats_get(&g->routes, c);
}

struct ism_l4counters *ism_regen_l4(const struct ism_regen *g, const struct ism_l4counters *c)
{
	return stats_get(&g->l4, c);
}
