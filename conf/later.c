/* SPDX-License-Identifier: Apache-2.0 */
/* Mesh policies, AuthorizationPolicy (conf/authz.c), RequestAuthentication
 * (conf/authn.c) and the kinds isthmus does not implement yet: EnvoyFilter,
 * WasmPlugin. A file
 * taken from a mesh holds many such
 * documents for other workloads; what matters is whether one applies to the
 * appliance, as istiod attaches these policies to a gateway's proxy
 * (WorkloadPolicyMatcher.ShouldAttachPolicy over the root namespace and the
 * proxy's own; for an EnvoyFilter, also its patches' match.context):
 *
 * - of another namespace than the appliance's and the root one: not attached;
 * - with targetRef(s): not attached to a gateway that no Gateway API label
 *   (gateway.networking.k8s.io/gateway-name) names, which is how istiod tells
 *   a Gateway API gateway from one chosen by labels;
 * - with a selector (an EnvoyFilter's workloadSelector.labels) whose labels
 *   are not all among the appliance's: not attached, in the root namespace
 *   too;
 * - an EnvoyFilter whose every patch is for a sidecar (match.context
 *   SIDECAR_INBOUND or SIDECAR_OUTBOUND): attached, but it changes nothing of
 *   a gateway.
 *
 * An AuthorizationPolicy or a RequestAuthentication that applies is read; a
 * document of the other kinds that applies is an error, "not implemented
 * yet": isthmus would serve without what it asks (a filter's work). One that
 * does not apply loads with a warning saying why. Its selector and targets
 * are checked whatever its kind, and an AuthorizationPolicy's or a
 * RequestAuthentication's whole spec too, as Istio's validation checks a
 * policy wherever it applies; of the other kinds the rest is not read. */
#include <stdio.h>
#include <string.h>

#include "conf/model.h"

#define GATEWAY_NAME_LABEL "gateway.networking.k8s.io/gateway-name"

/* Whether every one of the EnvoyFilter's configPatches (spec) is for a
 * sidecar; false without patches. */
static bool sidecar_only(const struct ism_node *spec)
{
	const struct ism_node *ps = ism_node_get(spec, "configPatches", NULL);

	if (ps == NULL || ps->kind != ISM_NODE_SEQ || ps->n == 0)
		return false;
	for (size_t i = 0; i < ps->n; i++) {
		const struct ism_node *m = ps->items[i]->kind == ISM_NODE_MAP
					       ? ism_node_get(ps->items[i], "match", NULL)
					       : NULL;
		const struct ism_node *c =
		    m != NULL && m->kind == ISM_NODE_MAP ? ism_node_get(m, "context", NULL) : NULL;

		if (c == NULL || c->kind != ISM_NODE_SCALAR ||
		    (strcmp(c->str, "SIDECAR_INBOUND") != 0 &&
		     strcmp(c->str, "SIDECAR_OUTBOUND") != 0))
			return false;
	}
	return true;
}

void ism_model_parse_later(struct ism_vctx *v, const struct ism_node *spec, struct ism_cm_later *l)
{
	static const char *const ef_keys[] = {"labels", NULL};
	const struct ism_node *n;

	if (strcmp(l->r.kind, "EnvoyFilter") != 0) {
		l->selector_at = ism_model_policy_selector(v, spec, &l->sel, &l->n_sel);
	} else if ((n = ism_v_node(v, spec, "workloadSelector", false, ISM_NODE_MAP)) != NULL) {
		size_t old = ism_v_push(v, ".workloadSelector");

		l->selector_at = n;
		if (ism_v_keys(v, n, ef_keys, NULL))
			ism_model_labels_field(v, n, "labels", &l->sel, &l->n_sel);
		ism_v_pop(v, old);
	}
	l->target_key = ism_node_get(spec, "targetRefs", NULL) != NULL	? "targetRefs"
			: ism_node_get(spec, "targetRef", NULL) != NULL ? "targetRef"
									: NULL;
	l->sidecar_only = strcmp(l->r.kind, "EnvoyFilter") == 0 && sidecar_only(spec);
	l->spec = spec;
}

/* Why later-kind document l does not apply to the appliance, as a warning at
 * the field that says so; false when it applies. */
static bool not_here(struct ism_vctx *v, const struct ism_cm_later *l)
{
	const struct ism_cm_appliance *a = &v->conf->app;
	bool own = strcmp(l->r.ns, a->ns) == 0, root = strcmp(l->r.ns, a->root_ns) == 0;
	const struct ism_node *at = l->r.at;
	char buf[320];
	const char *why = buf;

	if (!own && !root) {
		snprintf(buf, sizeof(buf),
			 "it applies to the proxies of namespace %s, not to this appliance "
			 "(namespace %s)",
			 l->r.ns, a->ns);
	} else if (l->target_key != NULL &&
		   (a->labels_at == NULL ||
		    ism_node_get(a->labels_at, GATEWAY_NAME_LABEL, NULL) == NULL)) {
		ism_v_push(v, ".%s", l->target_key);
		at = ism_node_get(l->spec, l->target_key, NULL);
		why =
		    "istiod attaches a policy that names its targets to those (Gateway API "
		    "gateways, waypoints, services) only, never to a gateway chosen by its labels "
		    "as this appliance is";
	} else if (l->selector_at != NULL &&
		   !ism_model_labels_include(a->labels_at, l->sel, l->n_sel)) {
		ism_v_push(v, ".%s",
			   strcmp(l->r.kind, "EnvoyFilter") == 0 ? "workloadSelector" : "selector");
		at = l->selector_at;
		why = "it does not select this appliance (its spec.labels)";
	} else if (l->sidecar_only) {
		ism_v_push(v, ".configPatches");
		at = ism_node_get(l->spec, "configPatches", NULL);
		why = "every patch is for a sidecar (match.context SIDECAR_INBOUND or "
		      "SIDECAR_OUTBOUND), none for a gateway";
	} else {
		return false;
	}
	if (strcmp(l->r.kind, "AuthorizationPolicy") == 0 ||
	    strcmp(l->r.kind, "RequestAuthentication") == 0)
		ism_v_warn(v, at, "%s: ignored (its spec is checked, not applied)", why);
	else
		ism_v_warn(v, at, "%s: ignored (%s is " ISM_NOT_IMPL "; its spec is not read)", why,
			   l->r.kind);
	return true;
}

void ism_model_laters(struct ism_vctx *v)
{
	const struct ism_cm_appliance *a = &v->conf->app;

	for (size_t i = 0; i < v->conf->n_laters; i++) {
		struct ism_cm_later *l = v->conf->laters[i];

		v->res = l->r.label;
		ism_v_pop(v, 0);
		ism_v_push(v, "spec");
		l->ignored = not_here(v, l);
		/* A policy that does not apply is checked all the same: a mistake
		 * in it is one whichever proxy it was written for. */
		ism_v_pop(v, 0);
		ism_v_push(v, "spec");
		if (strcmp(l->r.kind, "AuthorizationPolicy") == 0) {
			ism_model_parse_authz(v, l->spec, l);
			if (l->ignored)
				l->az = NULL;
			continue;
		}
		if (strcmp(l->r.kind, "RequestAuthentication") == 0) {
			ism_model_parse_authn(v, l->spec, l);
			if (l->ignored)
				l->ra = NULL;
			continue;
		}
		if (l->ignored)
			continue;
		ism_v_pop(v, 0);
		ism_v_push(v, "kind");
		ism_v_err(
		    v, l->kind_at,
		    "%s is " ISM_NOT_IMPL ", and this one applies to the appliance (%s)", l->r.kind,
		    l->target_key != NULL    ? "its targets may name this appliance's Gateway"
		    : l->selector_at != NULL ? "its selector selects the appliance's labels"
		    : strcmp(l->r.ns, a->root_ns) == 0
			? "a policy of the root namespace without a selector applies to every "
			  "proxy"
			: "a policy of the appliance's namespace without a selector applies to "
			  "every proxy of it");
	}
	v->res = "";
	ism_v_pop(v, 0);
}
