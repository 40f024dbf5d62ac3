/* SPDX-License-Identifier: Apache-2.0 */
/* Request mirroring in the model: an HTTP route's mirror, mirrorPercentage,
 * the deprecated mirrorPercent (mirror_percent) and mirrors[] (Istio's
 * HTTPRoute and HTTPMirrorPolicy), validated as Istio's validation does, and
 * turned into the route table's ism_mirror entries as Istio's route
 * translation does (pilot/pkg/networking/core/route: MirrorPercent,
 * MirrorPercentByPolicy). */
#include <stdio.h>
#include <string.h>

#include "conf/mirror.h"

#define MILLION 1000000

/* key: {value: 0..100} (Istio's Percent) into *out in millionths; absent:
 * *out unchanged. */
static void parse_percent(struct ism_vctx *v, const struct ism_node *map, const char *key,
			  int32_t *out)
{
	uint32_t ppm;

	if (ism_v_percent(v, map, key, &ppm) > 0)
		*out = (int32_t)ppm;
}

/* mirrors[]: {destination (required), percentage}. */
static void parse_mirrors(struct ism_vctx *v, const struct ism_node *route, const char *ns,
			  struct ism_cm_route *r)
{
	static const char *const keys[] = {"destination", "percentage", NULL};
	const struct ism_node *l = ism_v_node(v, route, "mirrors", false, ISM_NODE_SEQ);
	size_t old;

	if (l == NULL)
		return;
	r->mirrors = ism_v_alloc(v, l->n, sizeof(*r->mirrors));
	old = ism_v_push(v, ".mirrors");
	for (size_t i = 0; r->mirrors != NULL && i < l->n; i++) {
		const struct ism_node *it = l->items[i], *dn;
		struct ism_cm_dest *d = &r->mirrors[r->n_mirrors++];
		int32_t pct = MILLION; /* Istio: 100 % when not given */
		size_t o2 = ism_v_push(v, "[%zu]", i);

		d->at = it;
		if (ism_v_expect(v, it, ISM_NODE_MAP)) {
			ism_v_keys(v, it, keys, NULL);
			dn = ism_v_node(v, it, "destination", true, ISM_NODE_MAP);
			if (dn != NULL) {
				size_t o3 = ism_v_push(v, ".destination");

				ism_model_destination(v, dn, ns, d);
				ism_v_pop(v, o3);
			}
			parse_percent(v, it, "percentage", &pct);
		}
		d->weight = (uint32_t)pct;
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

void ism_model_mirrors(struct ism_vctx *v, const struct ism_node *route, const char *ns,
		       struct ism_cm_route *r)
{
	const struct ism_node *n = ism_v_node(v, route, "mirror", false, ISM_NODE_MAP);
	const struct ism_node *old_new = ism_node_get(route, "mirrorPercent", NULL);
	const struct ism_node *old_snake = ism_node_get(route, "mirror_percent", NULL);
	const char *old_key = old_new != NULL ? "mirrorPercent" : "mirror_percent";
	uint32_t pct;
	size_t old;

	r->mirror_pct = r->mirror_pct_old = -1;
	if (n != NULL) {
		r->mirror = ism_v_alloc(v, 1, sizeof(*r->mirror));
		old = ism_v_push(v, ".mirror");
		if (r->mirror != NULL) {
			r->mirror->at = n;
			ism_model_destination(v, n, ns, r->mirror);
		}
		ism_v_pop(v, old);
	}
	parse_percent(v, route, "mirrorPercentage", &r->mirror_pct);
	if (old_new != NULL && old_snake != NULL) {
		old = ism_v_push(v, ".mirror_percent");
		ism_v_err(v, old_snake, "mirrorPercent and mirror_percent are the same field");
		ism_v_pop(v, old);
	} else if (ism_v_u32(v, route, old_key, false, 0, 100, &pct) > 0) {
		/* Istio's deprecated UInt32Value: a whole percentage, under
		 * mirrorPercentage when both are set. */
		r->mirror_pct_old = (int32_t)pct * 10000;
	}
	parse_mirrors(v, route, ns, r);
	if (r->mirror != NULL && ism_node_get(route, "mirrors", NULL) != NULL) {
		old = ism_v_push(v, ".mirrors");
		ism_v_err(v, ism_node_get(route, "mirrors", NULL),
			  "a route cannot have both mirror and mirrors (Istio)");
		ism_v_pop(v, old);
	}
	/* Istio mirrors only what a route forwards: refused rather than ignored. */
	if ((n != NULL || ism_node_get(route, "mirrors", NULL) != NULL) &&
	    (ism_node_get(route, "redirect", NULL) != NULL ||
	     ism_node_get(route, "directResponse", NULL) != NULL)) {
		const char *k = n != NULL ? "mirror" : "mirrors";

		old = ism_v_push(v, ".%s", k);
		ism_v_err(v, ism_node_get(route, k, NULL),
			  "cannot be combined with redirect or directResponse (nothing is "
			  "forwarded)");
		ism_v_pop(v, old);
	}
}

void ism_model_mirrors_merge(const struct ism_cm_route *root, struct ism_cm_route *out)
{
	/* Istio's mergeHTTPRoute: each field the delegate route leaves unset
	 * comes from the root route. */
	if (out->mirror == NULL)
		out->mirror = root->mirror;
	if (out->mirror_pct < 0)
		out->mirror_pct = root->mirror_pct;
	if (out->mirror_pct_old < 0)
		out->mirror_pct_old = root->mirror_pct_old;
	if (out->n_mirrors == 0) {
		out->n_mirrors = root->n_mirrors;
		out->mirrors = root->mirrors;
	}
}

uint32_t ism_model_mirror_pct(const struct ism_cm_route *r)
{
	/* Istio's MirrorPercent: mirrorPercentage, else mirrorPercent, else 100 %;
	 * an explicit 0 mirrors nothing. */
	if (r->mirror_pct >= 0)
		return (uint32_t)r->mirror_pct;
	if (r->mirror_pct_old >= 0)
		return (uint32_t)r->mirror_pct_old;
	return MILLION;
}
