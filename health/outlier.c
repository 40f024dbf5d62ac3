/* SPDX-License-Identifier: Apache-2.0 */
/* Outlier detection over the shared endpoint-state table.
 *
 * Every worker counts into the same atomics, so "consecutive" means consecutive
 * across the whole appliance, as one Envoy's host monitor sees all its workers.
 * Each cluster has its own slot per endpoint (ism_od_state), as each of
 * Envoy's clusters has its own detector.
 *
 * The ejection handshake: `ejected` goes 0 -> EJECTING by CAS, so exactly one
 * process ejects; that process then writes the ejection time fields and
 * publishes ejected = 1 with release order. The master returns an endpoint only
 * from 1 (acquire), so it never reads an ejected_until_ms left from a previous
 * ejection while a new one is half written. Everything else treats any nonzero
 * value as ejected. */

#include "health/outlier.h"

#include <stdatomic.h>

#include "lib/log.h"

#define EJECTING 2u

/* Called on every successful response: a counter already at 0 is only read,
 * so the shared line is not written by every worker for every request. */
static void clear(_Atomic uint32_t *c)
{
	if (atomic_load_explicit(c, memory_order_relaxed) != 0)
		atomic_store_explicit(c, 0, memory_order_relaxed);
}

static void reset_counters(struct ism_od_state *o)
{
	clear(&o->cons_5xx);
	clear(&o->cons_gateway);
	clear(&o->cons_local);
}

/* fetch_add and whether the new value reached the threshold (0 = off). >= and
 * not ==, unlike Envoy's single-threaded monitor: a counter can pass its
 * threshold between another process's increment and its reset, and must then
 * still fire; the CAS on `ejected` keeps the ejection single. */
static int bump(_Atomic uint32_t *c, uint32_t threshold)
{
	uint32_t v = atomic_fetch_add_explicit(c, 1, memory_order_relaxed) + 1;

	return threshold != 0 && v >= threshold;
}

static struct ism_od_state *od_of(struct ism_shm_hdr *h, const struct ism_endpoint *ep)
{
	return ep->od < ISM_MAX_OD_SLOTS ? &h->ods[ep->od] : NULL;
}

int ism_ep_ejected(const struct ism_shm_hdr *h, const struct ism_endpoint *ep)
{
	return ep->od < ISM_MAX_OD_SLOTS &&
	       atomic_load_explicit(&h->ods[ep->od].ejected, memory_order_relaxed) != 0;
}

uint64_t ism_ep_ejections(const struct ism_shm_hdr *h, const struct ism_endpoint *ep)
{
	return ep->od < ISM_MAX_OD_SLOTS
		   ? atomic_load_explicit(&h->ods[ep->od].ejections, memory_order_relaxed)
		   : 0;
}

/* The max-ejection-percent check, over the whole cluster (as Envoy counts it).
 * Our deliberate choice (DESIGN.md), taken per priority level: an endpoint may
 * always be ejected when no other endpoint of its priority is, so that a
 * locality that fails whole is ejected and fails over level after level, as
 * Istio's locality-failover task documents with a handful of endpoints and the
 * default 10 %. A cluster with a single priority gets Envoy's
 * always_eject_one_host. */
static int ejection_allowed(const struct ism_cluster *cl, const struct ism_shm_hdr *h,
			    const struct ism_endpoint *ep)
{
	uint64_t ejected = 0, ejected_here = 0;
	uint64_t n = cl->n_endpoints;

	for (uint32_t i = 0; i < cl->n_endpoints; i++) {
		if (ism_ep_ejected(h, &cl->endpoints[i])) {
			ejected++;
			ejected_here += cl->endpoints[i].priority == ep->priority;
		}
	}
	if (ejected_here == 0)
		return 1;
	/* Exact, as Envoy's floating point: 2 of 7 is 28.6 %, over 28. */
	return 100 * (ejected + 1) <= (uint64_t)cl->od->max_ejection_percent * n;
}

/* Envoy's eject-time backoff: k grows while k * base < max + base, so it stops
 * one step past the cap and decays from there at the sweeps. Only the process
 * that won the CAS gets here, but the master may decrement concurrently, hence
 * the CAS loop. Returns the new k. */
static uint32_t bump_mult(const struct ism_outlier *od, _Atomic uint32_t *mult)
{
	uint32_t k = atomic_load_explicit(mult, memory_order_relaxed);
	uint32_t next;

	do {
		uint64_t grown = (uint64_t)k * od->base_ejection_ms;

		next = grown < (uint64_t)od->max_ejection_ms + od->base_ejection_ms ? k + 1 : k;
	} while (next != k && !atomic_compare_exchange_weak_explicit(
				  mult, &k, next, memory_order_relaxed, memory_order_relaxed));
	return next;
}

/* While one process decides an ejection of a cluster's, no other does: two
 * workers that each count the others' endpoints not ejected would pass the
 * max-ejection-percent check together, one endpoint each. A lease rather than
 * a lock: one that a process took and did not give back (it died) is free
 * after EJECT_LEASE_MS. False: another decides now; the failure stays counted
 * and the endpoint's next outcome tries again. */
#define EJECT_LEASE_MS 1000u

static bool lease_take(struct ism_cluster_dyn *d, uint64_t now_ms)
{
	uint64_t held;

	if (d == NULL) /* a table never published (tests) */
		return true;
	held = atomic_load_explicit(&d->eject_lease_ms, memory_order_relaxed);
	if (held != 0 && now_ms < held + EJECT_LEASE_MS)
		return false;
	return atomic_compare_exchange_strong_explicit(&d->eject_lease_ms, &held,
						       now_ms ? now_ms : 1, memory_order_acq_rel,
						       memory_order_relaxed);
}

static void lease_give(struct ism_cluster_dyn *d)
{
	if (d != NULL)
		atomic_store_explicit(&d->eject_lease_ms, 0, memory_order_release);
}

static int try_eject(const struct ism_cluster *cl, struct ism_shm_hdr *h,
		     const struct ism_endpoint *ep, struct ism_od_state *o, uint64_t now_ms)
{
	struct ism_ep_state *e = &h->eps[ep->id];
	uint32_t zero = 0;
	uint32_t k;

	if (atomic_load_explicit(&o->ejected, memory_order_relaxed) != 0 ||
	    !lease_take(cl->dyn, now_ms))
		return 0;
	if (!ejection_allowed(cl, h, ep) ||
	    !atomic_compare_exchange_strong_explicit(&o->ejected, &zero, EJECTING,
						     memory_order_acq_rel, memory_order_relaxed)) {
		lease_give(cl->dyn);
		return 0;
	}
	k = bump_mult(cl->od, &o->eject_mult);
	atomic_store_explicit(&o->ejected_at_ms, now_ms, memory_order_relaxed);
	atomic_store_explicit(&o->ejected_until_ms, now_ms + ism_outlier_ejection_ms(cl->od, k),
			      memory_order_relaxed);
	atomic_fetch_add_explicit(&o->ejections, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&e->ejections, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&e->ejected_in, 1, memory_order_relaxed);
	reset_counters(o);
	atomic_store_explicit(&o->ejected, 1, memory_order_release);
	lease_give(cl->dyn);
	return 1;
}

int ism_outlier_record(const struct ism_cluster *cl, struct ism_shm_hdr *h,
		       const struct ism_endpoint *ep, enum ism_outcome outcome, uint64_t now_ms)
{
	const struct ism_outlier *od = cl->od;
	struct ism_od_state *o = od_of(h, ep);
	int hit = 0;

	if (o == NULL)
		return 0;
	/* Envoy maps a local-origin failure to 503 unless the modes are split. */
	if (outcome == ISM_OUTCOME_LOCAL && !od->split_local)
		outcome = ISM_OUTCOME_GATEWAY;

	switch (outcome) {
	case ISM_OUTCOME_SUCCESS:
		reset_counters(o);
		return 0;
	case ISM_OUTCOME_GATEWAY:
		/* Checked first, as Envoy does; 502/503/504 are 5xx as well. */
		if (bump(&o->cons_gateway, od->consecutive_gateway)) {
			atomic_store_explicit(&o->cons_gateway, 0, memory_order_relaxed);
			hit = 1;
		}
		if (bump(&o->cons_5xx, od->consecutive_5xx)) {
			atomic_store_explicit(&o->cons_5xx, 0, memory_order_relaxed);
			hit = 1;
		}
		break;
	case ISM_OUTCOME_5XX:
		atomic_store_explicit(&o->cons_gateway, 0, memory_order_relaxed);
		if (bump(&o->cons_5xx, od->consecutive_5xx)) {
			atomic_store_explicit(&o->cons_5xx, 0, memory_order_relaxed);
			hit = 1;
		}
		break;
	case ISM_OUTCOME_LOCAL:
		/* Split mode only (mapped above otherwise). */
		if (bump(&o->cons_local, od->consecutive_local)) {
			atomic_store_explicit(&o->cons_local, 0, memory_order_relaxed);
			hit = 1;
		}
		return hit ? try_eject(cl, h, ep, o, now_ms) : 0;
	}
	/* An upstream response means the connection itself succeeded: Envoy
	 * reports the local-origin success before the response code, which in
	 * split mode resets the local-origin counter. */
	if (od->split_local)
		atomic_store_explicit(&o->cons_local, 0, memory_order_relaxed);
	/* Envoy resets the counter that fired whether or not the ejection then
	 * passes the max-ejection check, so that a new run of errors is needed. */
	return hit ? try_eject(cl, h, ep, o, now_ms) : 0;
}

static int uneject(struct ism_shm_hdr *h, struct ism_od_state *o, uint64_t now_ms)
{
	uint32_t one = 1;

	if (!atomic_compare_exchange_strong_explicit(&o->ejected, &one, 0, memory_order_acq_rel,
						     memory_order_acquire))
		return 0;
	atomic_store_explicit(&o->returned_at_ms, now_ms, memory_order_relaxed);
	reset_counters(o);
	if (o->ep < ISM_MAX_ENDPOINTS)
		atomic_fetch_sub_explicit(&h->eps[o->ep].ejected_in, 1, memory_order_relaxed);
	return 1;
}

/* Only returns count as a change of state: a multiplier decrement changes no
 * endpoint's eligibility, so it needs no recomputation of the loads. A
 * cluster without outlier detection (a reload removed it) still returns the
 * ejections it was left with, when their time is up. */
int ism_outlier_sweep(const struct ism_cluster *cl, struct ism_shm_hdr *h,
		      const struct ism_shm_pub *pub, uint64_t now_ms)
{
	const struct ism_outlier *od = cl->od;
	int changed = 0;

	for (uint32_t i = 0; i < cl->n_endpoints; i++) {
		struct ism_od_state *o = od_of(h, &cl->endpoints[i]);
		uint32_t ej = o ? atomic_load_explicit(&o->ejected, memory_order_acquire) : 0;

		if (ej == 1) {
			if (now_ms >=
				atomic_load_explicit(&o->ejected_until_ms, memory_order_relaxed) &&
			    uneject(h, o, now_ms)) {
				/* As its ejection and a health check's return are. */
				ism_notice("endpoint %s returned from ejection: its ejection time "
					   "is over (cluster %s)",
					   pub != NULL && o->ep < ISM_MAX_ENDPOINTS
					       ? pub->ep_keys[o->ep]
					       : "?",
					   cl->name.p);
				changed++;
			}
			continue;
		}
		if (o == NULL || ej != 0 || od == NULL)
			continue; /* being ejected right now; no multiplier to decay */
		/* Envoy decrements k at every sweep once the endpoint has been back
		 * for an interval; the CAS loses only to a concurrent ejection,
		 * which is then the fresher truth. */
		uint32_t k = atomic_load_explicit(&o->eject_mult, memory_order_relaxed);
		uint64_t back = atomic_load_explicit(&o->returned_at_ms, memory_order_relaxed);

		if (k > 0 && now_ms >= back && now_ms - back >= od->interval_ms)
			atomic_compare_exchange_strong_explicit(
			    &o->eject_mult, &k, k - 1, memory_order_relaxed, memory_order_relaxed);
	}
	return changed;
}

int ism_outlier_uneject(const struct ism_table *t, struct ism_shm_hdr *h, uint32_t ep_id,
			uint64_t now_ms)
{
	int n = 0;

	/* Nothing to look for in the usual case: ejected nowhere. */
	if (ep_id >= ISM_MAX_ENDPOINTS ||
	    atomic_load_explicit(&h->eps[ep_id].ejected_in, memory_order_relaxed) == 0)
		return 0;
	for (uint32_t c = 0; t != NULL && c < t->n_clusters; c++) {
		const struct ism_cluster *cl = &t->clusters[c];

		for (uint32_t i = 0; i < cl->n_endpoints; i++) {
			struct ism_od_state *o = od_of(h, &cl->endpoints[i]);

			if (cl->endpoints[i].id == ep_id && o != NULL)
				n += uneject(h, o, now_ms);
		}
	}
	return n;
}

uint64_t ism_outlier_ejection_ms(const struct ism_outlier *od, uint32_t k)
{
	uint64_t t = (uint64_t)od->base_ejection_ms * k;

	return t < od->max_ejection_ms ? t : od->max_ejection_ms;
}

int ism_ep_admin_out(const struct ism_ep_state *e)
{
	return atomic_load_explicit(&e->admin, memory_order_relaxed) != ISM_EP_ADMIN_READY ||
	       atomic_load_explicit(&e->weight, memory_order_relaxed) == ISM_EP_WEIGHT_SET;
}

static int usable(const struct ism_ep_state *e)
{
	return atomic_load_explicit(&e->health, memory_order_relaxed) == ISM_EP_HEALTHY &&
	       !ism_ep_admin_out(e);
}

int ism_ep_eligible(const struct ism_shm_hdr *h, const struct ism_endpoint *ep)
{
	const struct ism_ep_state *e = &h->eps[ep->id];

	/* ejected_in, on the line just read, spares the outlier slot's line
	 * while the endpoint is ejected nowhere. */
	return usable(e) && (atomic_load_explicit(&e->ejected_in, memory_order_relaxed) == 0 ||
			     !ism_ep_ejected(h, ep));
}

int ism_ep_state_eligible(const struct ism_ep_state *e)
{
	return usable(e) && atomic_load_explicit(&e->ejected_in, memory_order_relaxed) == 0;
}
