/* SPDX-License-Identifier: Apache-2.0 */
#include "master/events.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "shm/shm.h"

void ism_event_add(struct ism_events *ev, const char *kind, const char *fmt, ...)
{
	struct ism_event *e;
	va_list ap;

	if (ev == NULL)
		return;
	e = &ev->ring[ev->n % ISM_EVENTS_MAX];
	e->wall_ms = ism_wall_ms();
	snprintf(e->kind, sizeof(e->kind), "%s", kind);
	va_start(ap, fmt);
	vsnprintf(e->text, sizeof(e->text), fmt, ap);
	va_end(ap);
	ev->n++;
}

const char *ism_events_admin_name(uint32_t admin)
{
	return admin == ISM_EP_ADMIN_DRAIN   ? "drain"
	       : admin == ISM_EP_ADMIN_MAINT ? "maint"
					     : "ready";
}

/* Health and admin changes of the endpoints. A slot the sweep freed and a
 * later build gave to another endpoint (a new incarnation) is that endpoint's
 * first look, as observe_ejections takes an outlier slot's: the one before it
 * neither changed into it nor was set to its state. */
static void observe_endpoints(struct ism_events *ev, const struct ism_shm *shm)
{
	const struct ism_shm_hdr *h = shm->hdr;

	for (int i = 0; i < ISM_MAX_ENDPOINTS; i++) {
		const struct ism_ep_state *e = &h->eps[i];
		uint32_t inc = atomic_load(&e->incarnation);
		uint8_t health, admin;

		if (!ism_shm_ep_in_use(shm, (uint32_t)i)) {
			ev->ep_seen[i] = 0;
			continue;
		}
		health = (uint8_t)atomic_load(&e->health);
		admin = (uint8_t)atomic_load(&e->admin);
		if (ev->ep_seen[i] == inc) {
			if (health != ev->ep_health[i])
				ism_event_add(ev, "health", "%s is now %s", shm->pub->ep_keys[i],
					      health == ISM_EP_HEALTHY ? "healthy" : "unhealthy");
			if (admin != ev->ep_admin[i])
				ism_event_add(ev, "admin", "%s set to %s", shm->pub->ep_keys[i],
					      ism_events_admin_name(admin));
		}
		ev->ep_seen[i] = inc;
		ev->ep_health[i] = health;
		ev->ep_admin[i] = admin;
	}
}

/* Ejections and returns, per cluster: each has its own outlier detection. */
static void observe_ejections(struct ism_events *ev, const struct ism_table *t,
			      const struct ism_shm *shm)
{
	const struct ism_shm_hdr *h = shm->hdr;

	for (uint32_t c = 0; c < t->n_clusters; c++) {
		const struct ism_cluster *cl = &t->clusters[c];

		for (uint32_t i = 0; i < cl->n_endpoints; i++) {
			const struct ism_endpoint *ep = &cl->endpoints[i];
			const struct ism_od_state *o;
			uint8_t ejected;

			if (ep->od >= ISM_MAX_OD_SLOTS || ep->id >= ISM_MAX_ENDPOINTS)
				continue;
			o = &h->ods[ep->od];
			ejected = atomic_load(&o->ejected) != 0;
			if (ev->od_seen[ep->od] == o->incarnation &&
			    ejected != ev->od_ejected[ep->od])
				ism_event_add(ev, "ejection", "%s %s (cluster %s)",
					      shm->pub->ep_keys[ep->id],
					      ejected ? "ejected by outlier detection"
						      : "returned from ejection",
					      cl->name.p);
			ev->od_seen[ep->od] = o->incarnation;
			ev->od_ejected[ep->od] = ejected;
		}
	}
}

static size_t fmt_loads(char *out, size_t cap, const uint8_t *loads, uint32_t n)
{
	size_t len = 0;

	for (uint32_t p = 0; p < n && len < cap; p++)
		len += (size_t)snprintf(out + len, cap - len, "%s%u", p ? "/" : "", loads[p]);
	return len;
}

static void observe_loads(struct ism_events *ev, const struct ism_table *t)
{
	if (ev->loads_of != t) {
		/* A new generation: take its loads as the new baseline. */
		free(ev->loads);
		ev->loads = calloc(t->n_clusters ? t->n_clusters : 1, ISM_MAX_PRIORITIES);
		ev->loads_of = ev->loads ? t : NULL;
		for (uint32_t c = 0; ev->loads && c < t->n_clusters; c++)
			if (t->clusters[c].dyn)
				memcpy(ev->loads + (size_t)c * ISM_MAX_PRIORITIES,
				       t->clusters[c].dyn->healthy_load, ISM_MAX_PRIORITIES);
		return;
	}
	for (uint32_t c = 0; c < t->n_clusters; c++) {
		const struct ism_cluster *cl = &t->clusters[c];
		uint8_t *old = ev->loads + (size_t)c * ISM_MAX_PRIORITIES;
		char a[96], b[96];

		if (cl->dyn == NULL || cl->n_priorities < 2 ||
		    memcmp(old, cl->dyn->healthy_load, ISM_MAX_PRIORITIES) == 0)
			continue;
		fmt_loads(a, sizeof(a), old, cl->n_priorities);
		fmt_loads(b, sizeof(b), cl->dyn->healthy_load, cl->n_priorities);
		ism_event_add(ev, "failover", "%s priority loads %s -> %s", cl->name.p, a, b);
		memcpy(old, cl->dyn->healthy_load, ISM_MAX_PRIORITIES);
	}
}

void ism_events_observe(struct ism_events *ev, const struct ism_table *t, const struct ism_shm *shm)
{
	observe_endpoints(ev, shm);
	if (t != NULL) {
		observe_ejections(ev, t, shm);
		observe_loads(ev, t);
	}
}

void ism_events_free(struct ism_events *ev)
{
	free(ev->loads);
	ev->loads = NULL;
	ev->loads_of = NULL;
}
