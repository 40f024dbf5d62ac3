/* SPDX-License-Identifier: Apache-2.0 */
/* VirtualService delegation: a route of a VirtualService bound to gateways
 * (the root) names with `delegate` another VirtualService without hosts; its
 * routes take the root route's place, each merged with it as Istio merges them
 * (pilot/pkg/model/virtualservice.go): match conditions combined, a delegate
 * route whose conditions conflict with the root's left out with a warning,
 * what the delegate route leaves unset (timeout, retries, rewrite,
 * directResponse, headers, mirror, mirrors and their percentages, corsPolicy,
 * fault) taken from the root route. One level: a delegate's route cannot
 * delegate again. */
#include <stdio.h>
#include <string.h>

#include "conf/mirror.h"
#include "conf/model.h"

static void set_res(struct ism_vctx *v, const struct ism_cm_vs *vs)
{
	v->res = vs->r.label;
	ism_v_pop(v, 0);
}

static const struct ism_cm_sm *sm_or_null(const struct ism_cm_sm *m)
{
	return m->kind == ISM_SM_ANY ? NULL : m;
}

/* Istio's stringMatchConflict: leaf must ask for a subset of what root
 * matches, and only an exact value under an exact one, or a prefix or exact
 * value under a prefix, is known to; anything else (a regex on either side,
 * an empty exact or prefix at the root, which Istio's GetExact() != "" does
 * not take for one, say) conflicts. Either side absent: no conflict. */
static bool sm_conflict(const struct ism_cm_sm *root, const struct ism_cm_sm *leaf)
{
	if (root == NULL || leaf == NULL)
		return false;
	if (root->kind == ISM_SM_EXACT && root->s[0] != '\0')
		return !(leaf->kind == ISM_SM_EXACT && strcmp(leaf->s, root->s) == 0);
	if (root->kind == ISM_SM_PREFIX && root->s[0] != '\0')
		return !((leaf->kind == ISM_SM_PREFIX || leaf->kind == ISM_SM_EXACT) &&
			 strncmp(leaf->s, root->s, strlen(root->s)) == 0);
	return true;
}

static const struct ism_cm_kv *kv_find(const struct ism_cm_kv *kv, size_t n, const char *name)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(kv[i].name, name) == 0)
			return &kv[i];
	return NULL;
}

static bool kv_conflict(const struct ism_cm_kv *root, size_t nr, const struct ism_cm_kv *leaf,
			size_t nl)
{
	for (size_t i = 0; i < nl; i++) {
		const struct ism_cm_kv *r = kv_find(root, nr, leaf[i].name);

		if (r != NULL && sm_conflict(&r->m, &leaf[i].m))
			return true;
	}
	return false;
}

static const struct ism_cm_label *label_find(const struct ism_cm_label *l, size_t n,
					     const char *key)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(l[i].key, key) == 0)
			return &l[i];
	return NULL;
}

/* Istio's hasConflict: whether leaf asks for something root excludes. */
static bool match_conflict(const struct ism_cm_match *root, const struct ism_cm_match *leaf)
{
	const struct ism_cm_sm *r[] = {&root->uri, &root->scheme, &root->method, &root->authority};
	const struct ism_cm_sm *l[] = {&leaf->uri, &leaf->scheme, &leaf->method, &leaf->authority};

	for (size_t i = 0; i < 4; i++)
		if (sm_conflict(sm_or_null(r[i]), sm_or_null(l[i])))
			return true;
	if (kv_conflict(root->headers, root->n_headers, leaf->headers, leaf->n_headers) ||
	    kv_conflict(root->without, root->n_without, leaf->without, leaf->n_without) ||
	    kv_conflict(root->query, root->n_query, leaf->query, leaf->n_query))
		return true;
	if (root->ignore_uri_case != leaf->ignore_uri_case)
		return true;
	if (root->port && leaf->port && root->port != leaf->port)
		return true;
	if (root->source_ns != NULL &&
	    (leaf->source_ns == NULL || strcmp(leaf->source_ns, root->source_ns) != 0))
		return true;
	for (size_t i = 0; i < leaf->n_source_labels; i++) {
		const struct ism_cm_label *rl = label_find(
		    root->source_labels, root->n_source_labels, leaf->source_labels[i].key);

		if (rl != NULL && strcmp(rl->value, leaf->source_labels[i].value) != 0)
			return true;
	}
	/* The root's gateways must include the leaf's. */
	for (size_t i = 0; root->n_gateways && i < leaf->n_gateways; i++)
		if (!ism_model_match_names_gateway(root, leaf->gateways[i]))
			return true;
	return false;
}

/* root's conditions, then leaf's, a leaf's of the same name in place of the
 * root's (Istio: maps.MergeCopy). */
static struct ism_cm_kv *kv_merge(struct ism_vctx *v, const struct ism_cm_kv *root, size_t nr,
				  const struct ism_cm_kv *leaf, size_t nl, size_t *n)
{
	struct ism_cm_kv *out = ism_v_alloc(v, nr + nl, sizeof(*out));

	*n = 0;
	if (out == NULL)
		return NULL;
	for (size_t i = 0; i < nr; i++) {
		const struct ism_cm_kv *l = kv_find(leaf, nl, root[i].name);

		out[(*n)++] = l != NULL ? *l : root[i];
	}
	for (size_t i = 0; i < nl; i++)
		if (kv_find(root, nr, leaf[i].name) == NULL)
			out[(*n)++] = leaf[i];
	return out;
}

/* Istio's mergeHTTPMatchRequest: leaf's conditions, root's where leaf has none. */
static void match_merge(struct ism_vctx *v, const struct ism_cm_match *root,
			const struct ism_cm_match *leaf, struct ism_cm_match *out)
{
	const struct ism_cm_sm *r[] = {&root->uri, &root->scheme, &root->method, &root->authority};
	struct ism_cm_sm *o[] = {&out->uri, &out->scheme, &out->method, &out->authority};

	*out = *leaf;
	for (size_t i = 0; i < 4; i++)
		if (o[i]->kind == ISM_SM_ANY)
			*o[i] = *r[i];
	out->headers = kv_merge(v, root->headers, root->n_headers, leaf->headers, leaf->n_headers,
				&out->n_headers);
	out->without = kv_merge(v, root->without, root->n_without, leaf->without, leaf->n_without,
				&out->n_without);
	out->query =
	    kv_merge(v, root->query, root->n_query, leaf->query, leaf->n_query, &out->n_query);
	if (out->port == 0)
		out->port = root->port;
	if (out->source_ns == NULL)
		out->source_ns = root->source_ns;
	out->source_labels = ism_v_alloc(v, root->n_source_labels + leaf->n_source_labels,
					 sizeof(*out->source_labels));
	out->n_source_labels = 0;
	for (size_t i = 0; out->source_labels != NULL && i < root->n_source_labels; i++)
		if (label_find(leaf->source_labels, leaf->n_source_labels,
			       root->source_labels[i].key) == NULL)
			out->source_labels[out->n_source_labels++] = root->source_labels[i];
	for (size_t i = 0; out->source_labels != NULL && i < leaf->n_source_labels; i++)
		out->source_labels[out->n_source_labels++] = leaf->source_labels[i];
	if (out->n_gateways == 0) {
		out->n_gateways = root->n_gateways;
		out->gateways = root->gateways;
		out->gateways_at = root->gateways_at;
	}
}

/* Istio's mergeHTTPMatchRequests: every leaf condition merged with each root
 * condition it does not conflict with; false when one conflicts with all. */
static bool matches_merge(struct ism_vctx *v, const struct ism_cm_route *root,
			  const struct ism_cm_route *leaf, struct ism_cm_route *out)
{
	if (root->n_match == 0 || leaf->n_match == 0) {
		const struct ism_cm_route *from = root->n_match ? root : leaf;

		out->match = from->match;
		out->n_match = from->n_match;
		return true;
	}
	out->match = ism_v_alloc(v, root->n_match * leaf->n_match, sizeof(*out->match));
	out->n_match = 0;
	if (out->match == NULL)
		return false;
	for (size_t i = 0; i < leaf->n_match; i++) {
		size_t before = out->n_match;

		for (size_t j = 0; j < root->n_match; j++)
			if (!match_conflict(&root->match[j], &leaf->match[i]))
				match_merge(v, &root->match[j], &leaf->match[i],
					    &out->match[out->n_match++]);
		if (out->n_match == before)
			return false;
	}
	return true;
}

/* Istio's mergeHTTPRoute; false when the leaf route is left out. */
static bool route_merge(struct ism_vctx *v, const struct ism_cm_route *root,
			const struct ism_cm_route *leaf, struct ism_cm_route *out)
{
	*out = *leaf;
	if (!matches_merge(v, root, leaf, out))
		return false;
	if (leaf->name == NULL) {
		out->name = root->name;
	} else if (root->name != NULL) {
		char buf[512];

		snprintf(buf, sizeof(buf), "%s-%s", root->name, leaf->name);
		out->name = ism_v_strdup(v, buf);
	}
	if (leaf->timeout_ms == 0)
		out->timeout_ms = root->timeout_ms;
	if (!leaf->has_retry) {
		out->has_retry = root->has_retry;
		out->retry = root->retry;
		out->retry_prev_set = root->retry_prev_set;
	}
	if (!ism_model_rewrite_set(&leaf->rewrite))
		out->rewrite = root->rewrite;
	if (!leaf->direct.set)
		out->direct = root->direct;
	if (!ism_model_headers_set(&leaf->headers))
		out->headers = root->headers;
	ism_model_mirrors_merge(root, out);
	if (leaf->cors == NULL)
		out->cors = root->cors;
	if (leaf->fault == NULL)
		out->fault = root->fault;
	return true;
}

static const struct ism_cm_vs *find_vs(const struct ism_conf *c, const char *name)
{
	for (size_t i = 0; i < c->n_vss; i++) {
		const struct ism_cm_vs *vs = c->vss[i];
		size_t nl = strlen(vs->r.ns);

		if (strncmp(name, vs->r.ns, nl) == 0 && name[nl] == '/' &&
		    strcmp(name + nl + 1, vs->r.name) == 0)
			return vs;
	}
	return NULL;
}

/* Whether delegate d is exported to root VirtualService vs's namespace (an
 * empty exportTo is the mesh's default, every namespace), as istiod wants
 * it to merge them. */
static bool exported_to_root(const struct ism_cm_vs *d, const struct ism_cm_vs *vs)
{
	return d->n_export_to == 0 ||
	       ism_model_names_ns(d->export_to, d->n_export_to, d->r.ns, vs->r.ns);
}

/* The delegate of root route i of vs, checked; NULL (reported) when unusable. */
static const struct ism_cm_vs *delegate_of(struct ism_vctx *v, const struct ism_cm_vs *vs, size_t i)
{
	const struct ism_cm_route *r = &vs->routes[i];
	const struct ism_cm_vs *d = find_vs(v->conf, r->delegate);
	size_t old = ism_v_push(v, "spec.http[%zu].delegate", i);

	if (vs->delegate_only)
		ism_v_err(v, r->delegate_at,
			  "a delegate VirtualService's route cannot delegate again (Istio "
			  "supports one level)");
	else if (d == NULL)
		ism_v_err(v, r->delegate_at, "no VirtualService %s in this file", r->delegate);
	else if (!d->delegate_only)
		ism_v_err(v, r->delegate_at,
			  "VirtualService %s has hosts: only one without hosts can be a delegate",
			  r->delegate);
	else if (!exported_to_root(d, vs))
		ism_v_warn(v, r->delegate_at,
			   "delegate %s is not exported to namespace %s (its exportTo): this route "
			   "is left out, as istiod leaves it out",
			   r->delegate, vs->r.ns);
	ism_v_pop(v, old);
	return vs->delegate_only || d == NULL || !d->delegate_only || !exported_to_root(d, vs)
		   ? NULL
		   : d;
}

static void delegate_vs(struct ism_vctx *v, struct ism_cm_vs *vs)
{
	struct ism_cm_route *out;
	size_t n = 0, k = 0, old;

	for (size_t i = 0; i < vs->n_routes; i++) {
		const struct ism_cm_vs *d =
		    vs->routes[i].delegate != NULL ? delegate_of(v, vs, i) : NULL;

		n += d != NULL ? d->n_routes : vs->routes[i].delegate == NULL;
	}
	if (vs->delegate_only)
		return;
	out = ism_v_alloc(v, n, sizeof(*out));
	for (size_t i = 0; out != NULL && i < vs->n_routes; i++) {
		const struct ism_cm_route *r = &vs->routes[i];
		const struct ism_cm_vs *d =
		    r->delegate != NULL ? find_vs(v->conf, r->delegate) : NULL;

		if (r->delegate == NULL) {
			out[k++] = *r;
			continue;
		}
		if (d == NULL || !d->delegate_only || !exported_to_root(d, vs))
			continue;
		for (size_t j = 0; j < d->n_routes; j++) {
			if (route_merge(v, r, &d->routes[j], &out[k])) {
				k++;
				continue;
			}
			old = ism_v_push(v, "spec.http[%zu].delegate", i);
			ism_v_warn(v, r->delegate_at,
				   "route http[%zu] of delegate %s conflicts with the match "
				   "conditions here: left out (as Istio does)",
				   j, r->delegate);
			ism_v_pop(v, old);
		}
	}
	if (out == NULL)
		return;
	vs->routes = out;
	vs->n_routes = k;
	vs->match_source = false;
	for (size_t i = 0; i < k; i++)
		for (size_t j = 0; j < out[i].n_match; j++)
			vs->match_source |= ism_model_match_source(&out[i].match[j]);
}

void ism_model_delegate(struct ism_vctx *v)
{
	for (size_t i = 0; i < v->conf->n_vss; i++) {
		struct ism_cm_vs *vs = v->conf->vss[i];
		bool any = false;

		for (size_t j = 0; j < vs->n_routes; j++)
			any |= vs->routes[j].delegate != NULL;
		if (!any)
			continue;
		set_res(v, vs);
		delegate_vs(v, vs);
	}
	v->res = "";
	ism_v_pop(v, 0);
}
