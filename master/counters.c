/* SPDX-License-Identifier: Apache-2.0 */
/* The listener, route and cluster counters kept by name across generations
 * (master/counters.h). Lookups are linear: they run for the generations not
 * reclaimed yet (none in steady state, one for about a second after a
 * publish) and once at each reclaim. */
#include "master/counters.h"

#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>

#include "lib/strmap.h"

void ism_older_tables(const struct ism_shm_hdr *h, const struct ism_table *cur, struct ism_older *o)
{
	o->n = 0;
	for (int i = 0; i < ISM_GEN_SLOTS; i++) {
		uint64_t gen = atomic_load(&h->gens[i].gen);
		const struct ism_table *t = h->gens[i].table;

		if (gen != 0 && gen != UINT64_MAX && t != NULL && t != cur)
			o->t[o->n++] = t;
	}
}

static const struct ism_cluster_dyn *cluster_named(const struct ism_table *t,
						   const struct ism_str *name)
{
	for (uint32_t c = 0; c < t->n_clusters; c++)
		if (ism_str_eq(&t->clusters[c].name, name))
			return t->clusters[c].dyn;
	return NULL;
}

static const struct ism_listener *listener_named(const struct ism_table *t,
						 const struct ism_str *name)
{
	for (uint32_t l = 0; l < t->n_listeners; l++)
		if (ism_str_eq(&t->listeners[l].name, name))
			return &t->listeners[l];
	return NULL;
}

static const struct ism_counters *route_in(const struct ism_listener *l,
					   const struct ism_str *route)
{
	for (uint32_t set = 0; set < ism_listener_sets(l); set++) {
		uint32_t nv;
		const struct ism_vhost *vh = ism_listener_set(l, set, &nv);

		for (uint32_t v = 0; v < nv; v++)
			for (uint32_t i = 0; i < vh[v].n_routes; i++)
				if (vh[v].routes[i].stats != NULL &&
				    ism_str_eq(&vh[v].routes[i].name, route))
					return vh[v].routes[i].stats;
	}
	return NULL;
}

static const struct ism_l4counters *l4_among(const struct ism_l4route *rt, uint32_t n,
					     const struct ism_str *route)
{
	for (uint32_t i = 0; i < n; i++)
		if (rt[i].stats != NULL && ism_str_eq(&rt[i].name, route))
			return rt[i].stats;
	return NULL;
}

static const struct ism_l4counters *l4_in(const struct ism_listener *l, const struct ism_str *route)
{
	const struct ism_l4counters *c = l4_among(l->tcp_routes, l->n_tcp, route);

	for (uint32_t i = 0; c == NULL && i < l->n_tls; i++)
		c = l4_among(l->tls[i].l4, l->tls[i].n_l4, route);
	return c;
}

/* t's counters of that kind and name (ism_counters_sum); NULL when t has
 * none. */
static const void *counted_in(const struct ism_table *t, enum ism_counted kind,
			      const struct ism_str *listener, const struct ism_str *name)
{
	const struct ism_listener *l;

	switch (kind) {
	case ISM_COUNTED_LISTENER:
		l = listener_named(t, name);
		return l != NULL ? l->stats : NULL;
	case ISM_COUNTED_ROUTE:
		l = listener_named(t, listener);
		return l != NULL ? route_in(l, name) : NULL;
	case ISM_COUNTED_L4:
		l = listener_named(t, listener);
		return l != NULL ? l4_in(l, name) : NULL;
	case ISM_COUNTED_CLUSTER:
		return cluster_named(t, name);
	}
	return NULL;
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
		const void *c = counted_in(o->t[i], kind, listener, name);

		if (c != NULL && c != own)
			n += counter_at(c, off);
	}
	return n;
}

/* The counts of from into to (either NULL: nothing). */
static void add_counters(const struct ism_counters *from, const struct ism_counters *to)
{
	struct ism_counters *dst = (struct ism_counters *)to;

	if (from == NULL || to == NULL || from == to)
		return;
	for (int k = 0; k < 6; k++)
		atomic_fetch_add(&dst->responses[k], atomic_load(&from->responses[k]));
}

static void add_l4(const struct ism_l4counters *from, const struct ism_l4counters *to)
{
	struct ism_l4counters *dst = (struct ism_l4counters *)to;

	if (from == NULL || to == NULL || from == to)
		return;
	atomic_fetch_add(&dst->connections, atomic_load(&from->connections));
	atomic_fetch_add(&dst->bytes_in, atomic_load(&from->bytes_in));
	atomic_fetch_add(&dst->bytes_out, atomic_load(&from->bytes_out));
}

/* Whether p was carried already (a route's counters are one object for
 * every listener and vhost it serves); notes it. */
static bool carried(struct ism_strmap *seen, const void *p)
{
	return ism_strmap_add(seen, (const char *)&p, sizeof(p), 0, NULL) == 0;
}

static void carry_l4(const struct ism_l4route *rt, uint32_t n, const struct ism_listener *to,
		     struct ism_strmap *seen)
{
	for (uint32_t i = 0; i < n; i++)
		if (rt[i].stats != NULL && !carried(seen, rt[i].stats))
			add_l4(rt[i].stats, l4_in(to, &rt[i].name));
}

void ism_counters_carry(const struct ism_table *from, const struct ism_table *to)
{
	struct ism_strmap seen;

	if (from == NULL || to == NULL || from == to)
		return;
	for (uint32_t c = 0; c < from->n_clusters; c++) {
		const struct ism_cluster_dyn *src = from->clusters[c].dyn;
		struct ism_cluster_dyn *dst =
		    (struct ism_cluster_dyn *)cluster_named(to, &from->clusters[c].name);

		if (src == NULL || dst == NULL || src == dst)
			continue;
		for (int k = 0; k < 6; k++)
			atomic_fetch_add(&dst->responses[k], atomic_load(&src->responses[k]));
		atomic_fetch_add(&dst->retries, atomic_load(&src->retries));
		atomic_fetch_add(&dst->overflow, atomic_load(&src->overflow));
	}
	ism_strmap_init(&seen, 0x6973746875730003ull);
	for (uint32_t li = 0; li < from->n_listeners; li++) {
		const struct ism_listener *l = &from->listeners[li];
		const struct ism_listener *tl = listener_named(to, &l->name);

		if (tl == NULL)
			continue;
		add_counters(l->stats, tl->stats);
		for (uint32_t set = 0; set < ism_listener_sets(l); set++) {
			uint32_t nv;
			const struct ism_vhost *vh = ism_listener_set(l, set, &nv);

			for (uint32_t v = 0; v < nv; v++)
				for (uint32_t i = 0; i < vh[v].n_routes; i++) {
					const struct ism_route *rt = &vh[v].routes[i];

					if (rt->stats != NULL && !carried(&seen, rt->stats))
						add_counters(rt->stats, route_in(tl, &rt->name));
				}
		}
		carry_l4(l->tcp_routes, l->n_tcp, tl, &seen);
		for (uint32_t i = 0; i < l->n_tls; i++)
			carry_l4(l->tls[i].l4, l->tls[i].n_l4, tl, &seen);
	}
	ism_strmap_free(&seen);
}
