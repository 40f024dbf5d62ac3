/* SPDX-License-Identifier: Apache-2.0 */
/* Which DestinationRule applies to a host at this appliance, as Istio's
 * PushContext picks one for a gateway (destinationRule, then
 * SidecarScope.DestinationRule):
 *
 * - the rules are taken in Istio's order: those with a workloadSelector
 *   first, then by name, then namespace (a file has no creation times);
 * - each is indexed where the appliance can see it: the local scope (the
 *   rules of the appliance's namespace that it may see, or for an appliance
 *   of the root namespace that namespace's private ones), or among the rules
 *   its namespace exports;
 * - in each scope, the rules of one host are merged as mergeDestinationRule
 *   merges them (equal exportTo, same or no selector): the first's
 *   trafficPolicy, else the next one's; the subsets of every one, the first
 *   of a name kept;
 * - a host looks in the local scope, then among the rules the namespace of
 *   its ServiceEntry exports to the appliance's namespace, then among those
 *   of the root namespace; in each, the most specific host (the name
 *   itself, then the longest wildcard) decides, and among its rules the
 *   first that selects the appliance, else the last without a selector. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "conf/model.h"

/* One of Istio's consolidated rules: the first rule of an entry, merged with
 * the later ones. Only an entry a look-up may choose (one without a
 * selector, or the first of its key that selects the appliance) keeps the
 * rules merged into it and is merged (dr); for the others that would be work
 * for nothing (istiod merges them all: quadratic in the rules of a host). */
struct dr_entry {
	struct ism_cm_dr *dr; /* a copy of the first, the others merged in; NULL: never chosen */
	const struct ism_cm_dr *first; /* as written: its exportTo and selector */
	size_t *from;		       /* the rules merged into it (indices in drs), first first */
	size_t n_from, cap_from;       /* (from is malloc'd until the key is built) */
	bool may_apply;
};

/* The rules of one host in one scope, in Istio's order. */
struct dr_key {
	const char *host;
	const char *ns; /* the namespace that exports them; NULL: the local scope */
	struct dr_entry *e;
	size_t n;
	bool have_sel; /* an entry selects the appliance */
};

struct ism_dr_index {
	struct dr_key *keys;
	size_t n_keys;
	bool partial;		    /* a key is a partial wildcard ("*-api.example.com") */
	struct ism_strmap *by_host; /* "<ns>/<host>" ("/<host>" locally) -> index in keys */
	const struct dr_entry **in; /* by index in drs: the entry it went into first */
};

enum dr_scope { DR_NOWHERE, DR_LOCAL, DR_EXPORTED };

static const char *const private_set[] = {"."};

/* The exportTo set Istio indexes rule dr with: "." for one with a selector. */
static const char *const *export_set(const struct ism_cm_dr *dr, size_t *n)
{
	if (dr->selector_at != NULL) {
		*n = 1;
		return private_set;
	}
	*n = dr->n_export_to;
	return dr->export_to;
}

static bool set_has(const char *const *s, size_t n, const char *e)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(s[i], e) == 0)
			return true;
	return false;
}

/* Whether set a holds every element of set b. */
static bool set_covers(const char *const *a, size_t na, const char *const *b, size_t nb)
{
	for (size_t i = 0; i < nb; i++)
		if (!set_has(a, na, b[i]))
			return false;
	return true;
}

/* Exported to its own namespace only (Istio's isPrivateOnly; an empty
 * exportTo takes the mesh's default, "*"). */
static bool private_only(const struct ism_cm_dr *dr)
{
	size_t n;
	const char *const *s = export_set(dr, &n);

	return n == 1 && (strcmp(s[0], ".") == 0 || strcmp(s[0], dr->r.ns) == 0);
}

/* Whether the rules its namespace exports include dr for namespace ns. */
static bool exported_to(const struct ism_cm_dr *dr, const char *ns)
{
	size_t n;
	const char *const *s = export_set(dr, &n);

	return n == 0 || set_has(s, n, "*") || set_has(s, n, ns);
}

/* Where Istio indexes dr for this appliance's look-ups. */
static enum dr_scope scope_of(const struct ism_conf *c, const struct ism_cm_dr *dr)
{
	bool own = strcmp(dr->r.ns, c->app.ns) == 0;

	if (dr->host == NULL)
		return DR_NOWHERE;
	if (strcmp(c->app.ns, c->app.root_ns) == 0 && own)
		return private_only(dr) ? DR_LOCAL : DR_EXPORTED;
	if (own) /* namespaceLocal: what the namespace may see of its own */
		return exported_to(dr, ".") || exported_to(dr, dr->r.ns) ? DR_LOCAL : DR_NOWHERE;
	return private_only(dr) ? DR_NOWHERE : DR_EXPORTED;
}

/* Whether dr's selector selects this appliance: in its namespace, every label
 * of it the appliance's. */
static bool selects_app(const struct ism_conf *c, const struct ism_cm_dr *dr)
{
	return strcmp(dr->r.ns, c->app.ns) == 0 &&
	       ism_model_labels_include(c->app.labels_at, dr->selector, dr->n_selector);
}

bool ism_model_dr_visible(const struct ism_conf *c, const struct ism_cm_dr *dr)
{
	enum dr_scope scope = scope_of(c, dr);

	return (dr->selector_at == NULL || selects_app(c, dr)) &&
	       (scope == DR_LOCAL || (scope == DR_EXPORTED && exported_to(dr, c->app.ns)));
}

static bool same_labels(const struct ism_cm_dr *a, const struct ism_cm_dr *b)
{
	if (a->n_selector != b->n_selector)
		return false;
	for (size_t i = 0; i < a->n_selector; i++) {
		size_t j = 0;

		while (j < b->n_selector && (strcmp(a->selector[i].key, b->selector[j].key) ||
					     strcmp(a->selector[i].value, b->selector[j].value)))
			j++;
		if (j == b->n_selector)
			return false;
	}
	return true;
}

static void set_res(struct ism_vctx *v, const struct ism_cm_dr *dr, const char *field)
{
	v->res = dr->r.label;
	ism_v_pop(v, 0);
	ism_v_push(v, "%s", field);
}

/* Rule r goes into entry e: kept there when e may apply. */
static int take(struct dr_entry *e, size_t r)
{
	if (!e->may_apply)
		return 0;
	if (e->n_from == e->cap_from) {
		size_t cap = e->cap_from ? 2 * e->cap_from : 4;
		size_t *from = realloc(e->from, cap * sizeof(*from));

		if (from == NULL)
			return -ENOMEM;
		e->from = from;
		e->cap_from = cap;
	}
	e->from[e->n_from++] = r;
	return 0;
}

/* Rule r joins the entries of its host in its scope (k), as Istio's
 * mergeDestinationRule: merged into each entry of an equal exportTo (or
 * whose exportTo its own includes) and the same or no selector; an entry of
 * its own unless the last one looked at took it. One without a selector
 * merged into the entry of a rule with one stays an entry of its own too. */
static int consolidate(struct ism_dr_index *ix, const struct ism_conf *c, struct dr_key *k,
		       size_t r)
{
	const struct ism_cm_dr *rule = c->drs[r];
	bool sel = rule->selector_at != NULL, apart = true;
	size_t n;
	const char *const *set = export_set(rule, &n);
	struct dr_entry *e;

	for (size_t i = 0; i < k->n; i++) {
		size_t en;
		const char *const *eset = export_set(k->e[i].first, &en);
		bool esel = k->e[i].first->selector_at != NULL;

		if (en == n && set_covers(set, n, eset, en) && set_covers(eset, en, set, n)) {
			apart = false;
		} else if (en > 0 && set_covers(set, n, eset, en)) {
			apart = true;
		} else {
			apart = true;
			continue;
		}
		if (sel && esel && !same_labels(rule, k->e[i].first)) {
			apart = true;
			continue;
		}
		/* Istio leaves apart as the exportTo made it: a rule without a
		 * selector merged into a selecting rule's entry is then lost to
		 * the workloads that rule does not select (istio/istio#58322). */
		apart = sel != esel;
		if (sel == esel && ix->in[r] == NULL)
			ix->in[r] = &k->e[i];
		if (take(&k->e[i], r) < 0)
			return -ENOMEM;
	}
	if (!apart)
		return 0;
	e = &k->e[k->n++];
	e->first = rule;
	e->may_apply = !sel || (!k->have_sel && k->ns == NULL && selects_app(c, rule));
	k->have_sel = k->have_sel || (sel && e->may_apply);
	if (ix->in[r] == NULL)
		ix->in[r] = e;
	return take(e, r);
}

/* Entry e merged as Istio merges its rules: the first's trafficPolicy (the
 * first later one's when it has none); the subsets of each in turn, the
 * first of a name kept (the others are left out, with a warning, where
 * Istio counts them as duplicated). Its rules move to the model's memory. */
static void merge_entry(struct ism_vctx *v, struct dr_entry *e)
{
	struct ism_conf *c = v->conf;
	size_t n = 0, k = 0, *from = ism_v_alloc(v, e->n_from, sizeof(*from));
	struct ism_cm_dr *dr = ism_v_alloc(v, 1, sizeof(*dr));
	const struct ism_cm_dr **owner = NULL; /* of each subset kept */
	struct ism_cm_subset *subsets;
	struct ism_strmap *ix;

	if (from == NULL || dr == NULL)
		return;
	memcpy(from, e->from, e->n_from * sizeof(*from));
	*dr = *e->first;
	e->dr = dr;
	for (size_t f = 0; f < e->n_from; f++) {
		const struct ism_cm_dr *rule = c->drs[from[f]];

		n += rule->n_subsets;
		if (dr->tp_at == NULL && rule->tp_at != NULL) {
			dr->policy = rule->policy;
			dr->tp_at = rule->tp_at;
		}
	}
	if (e->n_from < 2 || (subsets = ism_v_alloc(v, n ? n : 1, sizeof(*subsets))) == NULL ||
	    (ix = ism_v_map(v, n ? n : 1)) == NULL)
		goto out;
	if ((owner = calloc(n ? n : 1, sizeof(*owner))) == NULL) {
		v->nomem = 1;
		goto out;
	}
	for (size_t f = 0; f < e->n_from; f++) {
		const struct ism_cm_dr *rule = c->drs[from[f]];

		for (size_t i = 0; i < rule->n_subsets; i++) {
			const char *name = rule->subsets[i].name;
			uint32_t had = 0;
			int rc = ism_v_map_add(v, ix, name, strlen(name), (uint32_t)k, &had);

			if (rc == 1) {
				owner[k] = rule;
				subsets[k++] = rule->subsets[i];
				continue;
			}
			if (rc < 0 || owner[had] == rule)
				continue; /* the rule's own duplicate: an error already */
			set_res(v, rule, "spec.subsets");
			ism_v_warn(v, rule->host_at,
				   "subset %s is also defined by %s, merged before this rule for "
				   "host %s (as Istio merges them): this one is left out",
				   name, owner[had]->r.label, rule->host);
		}
	}
	dr->subsets = subsets;
	dr->n_subsets = k;
	dr->subset_ix = ix;
out:
	free(owner);
	free(e->from);
	e->from = from;
}

struct dr_ref {
	const struct ism_cm_dr *dr;
	size_t i;	/* its index in drs */
	const char *ns; /* exported by; NULL: local */
};

/* By scope and host, then Istio's order: a selector first, then name, then
 * namespace. */
static int ref_cmp(const void *pa, const void *pb)
{
	const struct dr_ref *a = pa, *b = pb;
	int r;

	if ((a->ns == NULL) != (b->ns == NULL))
		return a->ns == NULL ? -1 : 1;
	if (a->ns != NULL && (r = strcmp(a->ns, b->ns)) != 0)
		return r;
	if ((r = strcmp(a->dr->host, b->dr->host)) != 0)
		return r;
	if ((a->dr->selector_at == NULL) != (b->dr->selector_at == NULL))
		return a->dr->selector_at != NULL ? -1 : 1;
	if ((r = strcmp(a->dr->r.name, b->dr->r.name)) != 0)
		return r;
	return strcmp(a->dr->r.ns, b->dr->r.ns);
}

static bool same_key(const struct dr_ref *a, const struct dr_ref *b)
{
	return (a->ns == NULL) == (b->ns == NULL) && (a->ns == NULL || !strcmp(a->ns, b->ns)) &&
	       strcmp(a->dr->host, b->dr->host) == 0;
}

static const char *key_name(struct ism_vctx *v, const char *ns, const char *host)
{
	size_t nl = ns ? strlen(ns) : 0, hl = strlen(host);
	char *k = ism_v_alloc(v, nl + hl + 2, 1);

	if (k != NULL) {
		memcpy(k, ns ? ns : "", nl);
		k[nl] = '/';
		memcpy(k + nl + 1, host, hl + 1);
	}
	return k;
}

/* The keys of ix from refs (sorted; n of them). */
static void build_keys(struct ism_vctx *v, struct ism_dr_index *ix, const struct dr_ref *refs,
		       size_t n)
{
	for (size_t i = 0, end; i < n; i = end) {
		struct dr_key *k = &ix->keys[ix->n_keys];
		const char *name;

		for (end = i + 1; end < n && same_key(&refs[i], &refs[end]); end++)
			;
		k->host = refs[i].dr->host;
		k->ns = refs[i].ns;
		ix->partial = ix->partial || ism_model_partial_wild(k->host);
		k->e = ism_v_alloc(v, end - i, sizeof(*k->e));
		name = key_name(v, k->ns, k->host);
		if (k->e == NULL || name == NULL)
			return;
		for (size_t j = i; j < end && !v->nomem; j++)
			if (consolidate(ix, v->conf, k, refs[j].i) < 0)
				v->nomem = 1;
		for (size_t j = 0; j < k->n; j++) {
			if (k->e[j].may_apply && !v->nomem)
				merge_entry(v, &k->e[j]);
			if (k->e[j].dr == NULL) {
				free(k->e[j].from);
				k->e[j].from = NULL;
				k->e[j].n_from = 0;
			}
		}
		ism_v_map_add(v, ix->by_host, name, strlen(name), (uint32_t)ix->n_keys, NULL);
		ix->n_keys++;
	}
}

static const struct dr_key *find_key(const struct ism_dr_index *ix, const char *ns,
				     const char *star, const char *host)
{
	char buf[600];
	uint32_t i;
	int len = snprintf(buf, sizeof(buf), "%s/%s%s", ns ? ns : "", star, host);

	if (len <= 0 || (size_t)len >= sizeof(buf) ||
	    !ism_strmap_get(ix->by_host, buf, (size_t)len, &i))
		return NULL;
	return &ix->keys[i];
}

/* The most specific key of scope ns (NULL: local) for host (Istio's
 * MostSpecificHostMatch): the host itself, then the longest wildcard that
 * covers it; NULL when none. */
static const struct dr_key *best_key(const struct ism_dr_index *ix, const char *ns,
				     const char *host)
{
	const struct dr_key *k = find_key(ix, ns, "", host);
	/* At each dot, or with a partial wildcard among the keys at each byte
	 * (the longest suffix first) from the first: "*api.internal" covers
	 * api.internal, as Istio's strings.HasSuffix. */
	bool each = ix->partial && host[0] != '*';

	for (const char *d = each ? host : host + 1; k == NULL && *d != '\0'; d++)
		if (*d == '.' || each)
			k = find_key(ix, ns, "*", d);
	return k != NULL ? k : find_key(ix, ns, "", "*");
}

/* SidecarScope.DestinationRule over k's entries (those exported to the
 * appliance's namespace, for an exported scope): the first whose selector
 * selects the appliance, else the last without a selector. *seen: whether
 * any entry was looked at. */
static const struct dr_entry *choose(const struct ism_conf *c, const struct dr_key *k, bool *seen)
{
	const struct dr_entry *any = NULL;

	*seen = false;
	for (size_t i = 0; i < k->n; i++) {
		const struct dr_entry *e = &k->e[i];

		if (k->ns != NULL && !exported_to(e->first, c->app.ns))
			continue;
		*seen = true;
		if (e->first->selector_at == NULL)
			any = e;
		else if (selects_app(c, e->first))
			return e;
	}
	return any;
}

static const struct dr_entry *lookup(const struct ism_conf *c, const char *host)
{
	const struct ism_dr_index *ix = c->dr_index;
	const struct ism_cm_se *se = ism_model_find_se(c, host);
	const char *ns[] = {se ? se->r.ns : NULL, c->app.root_ns};
	const struct dr_key *k;
	const struct dr_entry *e;
	bool seen;

	if (ix == NULL)
		return NULL;
	if ((k = best_key(ix, NULL, host)) != NULL)
		return choose(c, k, &seen);
	for (size_t i = 0; i < 2; i++) {
		if (ns[i] == NULL || (k = best_key(ix, ns[i], host)) == NULL)
			continue;
		e = choose(c, k, &seen);
		if (seen)
			return e;
	}
	return NULL;
}

const struct ism_cm_dr *ism_model_find_dr(const struct ism_conf *c, const char *host)
{
	const struct dr_entry *e = lookup(c, host);

	return e ? e->dr : NULL;
}

/* The service hosts by what a wildcard rule names of them: every suffix of
 * each from a dot (".example.com" for "*.example.com"), and "" (for "*"):
 * -> the index of the first such host in hosts. */
struct covers {
	const char **hosts;
	struct ism_strmap *by_suffix;
};

static void covers_build(struct ism_vctx *v, struct covers *cv)
{
	const struct ism_conf *c = v->conf;
	size_t n = 0, n_keys = 1, k = 0;

	for (size_t i = 0; i < c->n_ses; i++)
		for (size_t h = 0; h < c->ses[i]->n_hosts; h++, n++)
			for (const char *d = strchr(c->ses[i]->hosts[h], '.'); d;
			     d = strchr(d + 1, '.'))
				n_keys++;
	cv->hosts = ism_v_alloc(v, n ? n : 1, sizeof(*cv->hosts));
	cv->by_suffix = ism_v_map(v, n_keys);
	if (cv->hosts == NULL || cv->by_suffix == NULL)
		return;
	for (size_t i = 0; i < c->n_ses; i++) {
		for (size_t h = 0; h < c->ses[i]->n_hosts; h++, k++) {
			const char *host = c->ses[i]->hosts[h];

			cv->hosts[k] = host;
			ism_v_map_add(v, cv->by_suffix, "", 0, (uint32_t)k, NULL);
			for (const char *d = strchr(host, '.'); d; d = strchr(d + 1, '.'))
				ism_v_map_add(v, cv->by_suffix, d, strlen(d), (uint32_t)k, NULL);
		}
	}
}

/* The first service host rule dr's host covers; NULL when none. The suffix
 * map is built for the first wildcard rule that asks. */
static const char *covered_host(struct ism_vctx *v, struct covers *cv, const struct ism_cm_dr *dr)
{
	uint32_t k;

	if (dr->host[0] != '*')
		return ism_model_find_se(v->conf, dr->host) ? dr->host : NULL;
	if (ism_model_partial_wild(dr->host)) {
		const struct ism_conf *c = v->conf;

		for (size_t i = 0; i < c->n_ses; i++)
			for (size_t h = 0; h < c->ses[i]->n_hosts; h++)
				if (ism_model_host_covers(dr->host, c->ses[i]->hosts[h]))
					return c->ses[i]->hosts[h];
		return NULL;
	}
	if (cv->hosts == NULL)
		covers_build(v, cv);
	if (cv->by_suffix == NULL ||
	    !ism_strmap_get(cv->by_suffix, dr->host + 1, strlen(dr->host + 1), &k))
		return NULL;
	return cv->hosts[k];
}

/* Why rule d, which no service host of this appliance gets, does not apply: a
 * warning, unless its host is no service's. */
static void warn_unused(struct ism_vctx *v, struct covers *cv, size_t d)
{
	struct ism_conf *c = v->conf;
	const struct ism_cm_dr *dr = c->drs[d];
	enum dr_scope scope = scope_of(c, dr);
	const struct dr_entry *e, *in = c->dr_index->in[d];
	const struct ism_cm_se *se;
	const char *h;

	if (dr->selector_at != NULL && !selects_app(c, dr)) {
		set_res(v, dr, "spec.workloadSelector");
		ism_v_warn(v, dr->selector_at,
			   "selects other workloads (its matchLabels are not all this appliance's "
			   "labels, or it is not in the appliance's namespace %s): it does not "
			   "apply here",
			   c->app.ns);
		return;
	}
	if (scope == DR_NOWHERE || (scope == DR_EXPORTED && !exported_to(dr, c->app.ns))) {
		set_res(v, dr, "spec.exportTo");
		ism_v_warn(v, dr->host_at,
			   "not exported to the appliance's namespace %s: it does not apply here",
			   c->app.ns);
		return;
	}
	if ((h = covered_host(v, cv, dr)) == NULL)
		return;
	set_res(v, dr, "spec.host");
	if (in != NULL && in->first != dr) {
		ism_v_warn(v, dr->host_at,
			   "merged into %s (rules of one host and namespace with the same "
			   "exportTo, as Istio merges them), which does not apply here",
			   in->first->r.label);
		return;
	}
	e = lookup(c, h);
	se = ism_model_find_se(c, h);
	if (strcmp(dr->r.ns, c->app.ns) != 0 && strcmp(dr->r.ns, c->app.root_ns) != 0 &&
	    strcmp(dr->r.ns, se->r.ns) != 0)
		ism_v_warn(v, dr->host_at,
			   "for host %s, Istio does not look in namespace %s: only in the "
			   "appliance's (%s), the host's ServiceEntry's (%s) and the root "
			   "namespace (%s)",
			   h, dr->r.ns, c->app.ns, se->r.ns, c->app.root_ns);
	else if (e != NULL)
		ism_v_warn(v, dr->host_at,
			   "for host %s, %s applies in its place (Istio looks in the appliance's "
			   "namespace first, then in the service's, then in %s; the most specific "
			   "host first, and among the rules of one host the first that selects the "
			   "appliance, else the last without a selector)",
			   h, e->first->r.label, c->app.root_ns);
	else
		ism_v_warn(
		    v, dr->host_at,
		    "for host %s, no DestinationRule applies: the rules Istio looks at first "
		    "select other workloads",
		    h);
}

/* Which rules a service host of this appliance gets (into used), and a
 * warning for each of the others. */
static void check_use(struct ism_vctx *v)
{
	struct ism_conf *c = v->conf;
	bool *used = calloc(c->n_drs ? c->n_drs : 1, sizeof(*used));
	struct covers cv = {0};

	if (used == NULL) {
		v->nomem = 1;
		return;
	}
	for (size_t i = 0; i < c->n_ses; i++) {
		for (size_t h = 0; h < c->ses[i]->n_hosts; h++) {
			const struct dr_entry *e = lookup(c, c->ses[i]->hosts[h]);

			for (size_t f = 0; e != NULL && f < e->n_from; f++)
				used[e->from[f]] = true;
		}
	}
	for (size_t d = 0; d < c->n_drs; d++)
		if (!used[d] && c->drs[d]->host != NULL)
			warn_unused(v, &cv, d);
	v->res = "";
	ism_v_pop(v, 0);
	free(used);
}

void ism_model_dr_index(struct ism_vctx *v)
{
	struct ism_conf *c = v->conf;
	struct ism_dr_index *ix = ism_v_alloc(v, 1, sizeof(*ix));
	struct dr_ref *refs = calloc(c->n_drs ? c->n_drs : 1, sizeof(*refs));
	size_t n = 0, cap = c->n_drs ? c->n_drs : 1;

	if (ix == NULL || refs == NULL) {
		v->nomem = 1;
		goto out_free;
	}
	for (size_t i = 0; i < c->n_drs; i++) {
		enum dr_scope s = scope_of(c, c->drs[i]);

		if (s != DR_NOWHERE)
			refs[n++] =
			    (struct dr_ref){c->drs[i], i, s == DR_LOCAL ? NULL : c->drs[i]->r.ns};
	}
	qsort(refs, n, sizeof(*refs), ref_cmp);
	ix->keys = ism_v_alloc(v, cap, sizeof(*ix->keys));
	ix->in = ism_v_alloc(v, cap, sizeof(*ix->in));
	ix->by_host = ism_v_map(v, cap);
	if (ix->keys == NULL || ix->in == NULL || ix->by_host == NULL)
		goto out_free;
	build_keys(v, ix, refs, n);
	c->dr_index = ix;
	check_use(v);
out_free:
	free(refs);
}
