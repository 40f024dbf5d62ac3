/* SPDX-License-Identifier: Apache-2.0 */
/* Telemetry (telemetry.istio.io): the access logging it gives the appliance,
 * as istiod computes a gateway's (Telemetries.AccessLogging, mergeLogs; a
 * gateway logs as a CLIENT):
 *
 * - the Telemetries that apply, in istiod's order (by creation time, then
 *   name): the first of the root namespace without a selector, then the
 *   first of the appliance's namespace without one, then every one of that
 *   namespace whose selector selects the appliance; a later one overrides
 *   an earlier one;
 * - their accessLogging entries for CLIENT (or CLIENT_AND_SERVER) name the
 *   providers in scope (those of the last Telemetry that names any), and
 *   each entry enables or disables its providers (an entry without
 *   providers, those of the entry before it);
 * - of the mesh's providers, "envoy" is the file access log: enabled, the
 *   appliance writes its access log (spec.accessLog, or standard output in
 *   Istio's default text format without one); disabled, it writes none. Left
 *   out, the access log is as the Appliance says (istiod's fallback to
 *   meshConfig.accessLogFile);
 * - the last entry for CLIENT that names "envoy" itself gives the log its
 *   filter: a CEL expression (conf/cel.h) over Envoy's attributes
 *   (conf/logattrs.h), a line written only when it is true. */
#include <stdlib.h>
#include <string.h>

#include "conf/cel.h"
#include "conf/logattrs.h"
#include "conf/model.h"

static void warn_ignored(struct ism_vctx *v, const struct ism_node *spec, const char *key,
			 const char *why)
{
	const struct ism_node *n = ism_node_get(spec, key, NULL);
	size_t old;

	if (n == NULL)
		return;
	old = ism_v_push(v, ".%s", key);
	ism_v_warn(v, n, "%s: ignored", why);
	ism_v_pop(v, old);
}

#define LOG_ATTR(id, name, type) {name, type, ISM_LA_##id},
static const struct ism_cel_attr log_attrs[] = {ISM_LOG_ATTRS(LOG_ATTR)};
#undef LOG_ATTR

/* The length of the attribute name at s when it is one of Envoy's that
 * isthmus does not give yet (the name itself, or a field of it); 0 when it
 * is not. */
static size_t later_attr(const char *s)
{
	static const char *const later[] = {ISM_LOG_ATTRS_LATER};
	size_t n = strspn(s, "abcdefghijklmnopqrstuvwxyz0123456789_.");

	for (size_t i = 0; i < sizeof(later) / sizeof(later[0]); i++) {
		size_t k = strlen(later[i]);

		if (k <= n && strncmp(s, later[i], k) == 0 && (k == n || s[k] == '.'))
			return k;
	}
	return 0;
}

/* filter {expression} (n): the expression compiled against the attributes
 * isthmus gives (conf/logattrs.h), into l. */
static void parse_filter(struct ism_vctx *v, const struct ism_node *n, struct ism_cm_tel_log *l)
{
	static const char *const keys[] = {"expression", NULL};
	const struct ism_node *e;
	const char *text;
	char err[256];
	void *prog = NULL;
	size_t size = 0, at = 0, old;

	ism_v_keys(v, n, keys, NULL);
	if (ism_v_str(v, n, "expression", true, &text) <= 0)
		return;
	e = ism_node_get(n, "expression", NULL);
	old = ism_v_push(v, ".expression");
	if (ism_cel_compile(text, strlen(text), log_attrs, ISM_LA_COUNT, &prog, &size, err,
			    sizeof(err), &at) < 0) {
		size_t k = at < strlen(text) ? later_attr(text + at) : 0;

		if (k > 0)
			ism_v_err(v, e,
				  "byte %zu: %.*s: an attribute of Envoy's that isthmus does not "
				  "give: not implemented yet",
				  at, (int)k, text + at);
		else
			ism_v_err(v, e, "byte %zu: %s", at, err);
	} else if ((l->filter = ism_v_alloc(v, 1, size)) != NULL) {
		memcpy((void *)l->filter, prog, size);
		l->filter_size = (uint32_t)size;
	}
	free(prog);
	ism_v_pop(v, old);
}

/* accessLogging[i] (n) into l. */
static void parse_log(struct ism_vctx *v, const struct ism_node *n, struct ism_cm_tel_log *l)
{
	static const char *const keys[] = {"match", "providers", "disabled", "filter", NULL};
	static const char *const mkeys[] = {"mode", NULL};
	static const char *const modes[] = {"CLIENT_AND_SERVER", "CLIENT", "SERVER", NULL};
	static const char *const pkeys[] = {"name", NULL};
	const struct ism_node *m, *ps;
	const char *mode = "CLIENT_AND_SERVER";
	size_t old;

	ism_v_keys(v, n, keys, NULL);
	if ((m = ism_v_node(v, n, "match", false, ISM_NODE_MAP)) != NULL) {
		old = ism_v_push(v, ".match");
		ism_v_keys(v, m, mkeys, NULL);
		ism_v_enum(v, m, "mode", modes, NULL, &mode);
		ism_v_pop(v, old);
	}
	for (uint8_t i = 0; modes[i]; i++)
		if (strcmp(modes[i], mode) == 0)
			l->mode = i;
	ism_v_bool(v, n, "disabled", &l->disabled);
	if ((m = ism_v_node(v, n, "filter", false, ISM_NODE_MAP)) != NULL) {
		old = ism_v_push(v, ".filter");
		parse_filter(v, m, l);
		ism_v_pop(v, old);
	}
	ps = ism_v_node(v, n, "providers", false, ISM_NODE_SEQ);
	if (ps == NULL)
		return;
	l->providers = ism_v_alloc(v, ps->n, sizeof(*l->providers));
	l->provider_at = ism_v_alloc(v, ps->n, sizeof(*l->provider_at));
	old = ism_v_push(v, ".providers");
	for (size_t i = 0; l->providers != NULL && l->provider_at != NULL && i < ps->n; i++) {
		size_t o2 = ism_v_push(v, "[%zu]", i);
		const char *name;

		if (ism_v_expect(v, ps->items[i], ISM_NODE_MAP)) {
			ism_v_keys(v, ps->items[i], pkeys, NULL);
			if (ism_v_str(v, ps->items[i], "name", true, &name) > 0) {
				l->provider_at[l->n_providers] = ps->items[i];
				l->providers[l->n_providers++] = name;
			}
		}
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

void ism_model_parse_telemetry(struct ism_vctx *v, const struct ism_node *spec,
			       struct ism_cm_tel *t)
{
	static const char *const keys[] = {"selector", "targetRef",	"targetRefs", "tracing",
					   "metrics",  "accessLogging", NULL};
	const struct ism_node *n;
	size_t old;

	ism_v_keys(v, spec, keys, NULL);
	t->selector_at = ism_model_policy_selector(v, spec, &t->sel, &t->n_sel);
	t->targets =
	    ism_node_get(spec, "targetRef", NULL) || ism_node_get(spec, "targetRefs", NULL);
	warn_ignored(v, spec, "targetRef",
		     "it names Kubernetes resources (a Gateway API gateway or service), "
		     "which this appliance is not: the Telemetry does not apply here");
	warn_ignored(v, spec, "targetRefs",
		     "it names Kubernetes resources (a Gateway API gateway or service), "
		     "which this appliance is not: the Telemetry does not apply here");
	warn_ignored(v, spec, "tracing", "isthmus sends no trace spans");
	warn_ignored(v, spec, "metrics",
		     "isthmus's metrics are its own (the admin address's /metrics), not Envoy's "
		     "Istio metrics");
	if ((n = ism_v_node(v, spec, "accessLogging", false, ISM_NODE_SEQ)) == NULL)
		return;
	t->logs = ism_v_alloc(v, n->n, sizeof(*t->logs));
	old = ism_v_push(v, ".accessLogging");
	for (size_t i = 0; t->logs != NULL && i < n->n; i++) {
		size_t o2 = ism_v_push(v, "[%zu]", i);

		if (ism_v_expect(v, n->items[i], ISM_NODE_MAP))
			parse_log(v, n->items[i], &t->logs[t->n_logs++]);
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

static bool for_client(const struct ism_cm_tel_log *l)
{
	return l->mode != ISM_TEL_SERVER;
}

static bool in_list(const char *const *list, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i], s) == 0)
			return true;
	return false;
}

/* Whether Telemetry t is its namespace's (no selector labels, no targets). */
static bool ns_wide(const struct ism_cm_tel *t)
{
	return t->n_sel == 0 && !t->targets;
}

/* The first of namespace ns without a selector, in istiod's order (by
 * creation time, then name); NULL when none. */
static const struct ism_cm_tel *first_ns_wide(const struct ism_conf *c, const char *ns)
{
	const struct ism_cm_tel *best = NULL;

	for (size_t i = 0; i < c->n_tels; i++)
		if (strcmp(c->tels[i]->r.ns, ns) == 0 && ns_wide(c->tels[i]) &&
		    (best == NULL || ism_model_by_creation(&c->tels[i]->r, &best->r) < 0))
			best = c->tels[i];
	return best;
}

static int tel_order_cmp(const void *pa, const void *pb)
{
	return ism_model_by_creation(&(*(const struct ism_cm_tel *const *)pa)->r,
				     &(*(const struct ism_cm_tel *const *)pb)->r);
}

/* The Telemetries that apply to the appliance, in istiod's order, those
 * with accessLogging only, into out (room for every one); their count. */
static size_t applicable(const struct ism_conf *c, const struct ism_cm_tel **out)
{
	const struct ism_cm_appliance *a = &c->app;
	const struct ism_cm_tel *t = first_ns_wide(c, a->root_ns);
	size_t n = 0, first;

	if (t != NULL && t->n_logs > 0)
		out[n++] = t;
	t = strcmp(a->ns, a->root_ns) != 0 ? first_ns_wide(c, a->ns) : NULL;
	if (t != NULL && t->n_logs > 0)
		out[n++] = t;
	first = n;
	for (size_t i = 0; i < c->n_tels; i++) {
		t = c->tels[i];
		if (strcmp(t->r.ns, a->ns) == 0 && t->n_sel > 0 && !t->targets && t->n_logs > 0 &&
		    ism_model_labels_include(a->labels_at, t->sel, t->n_sel))
			out[n++] = t;
	}
	qsort(out + first, n - first, sizeof(*out), tel_order_cmp);
	return n;
}

/* istiod's mergeLogs for a gateway (CLIENT), the mesh's default providers
 * none: -1 when "envoy" is not among the providers in scope (those the last
 * Telemetry naming any for CLIENT names), else whether the last entry for it
 * disables it (1) or enables it (0); *by: that entry's Telemetry; *filter:
 * the last entry that names "envoy" itself (its filter is the log's). */
static int envoy_log(const struct ism_cm_tel *const *tels, size_t n, const struct ism_cm_tel **by,
		     const struct ism_cm_tel_log **filter)
{
	const char *const *parent = NULL;
	size_t n_parent = 0;
	bool in_scope = false;
	int state = -1;

	for (size_t i = 0; i < n; i++) {
		bool names = false, envoy = false;

		for (size_t j = 0; j < tels[i]->n_logs; j++) {
			const struct ism_cm_tel_log *l = &tels[i]->logs[j];

			if (!for_client(l))
				continue;
			names = names || l->n_providers > 0;
			if (in_list(l->providers, l->n_providers, "envoy")) {
				envoy = true;
				*filter = l;
			}
		}
		if (names)
			in_scope = envoy;
	}
	if (!in_scope)
		return -1;
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < tels[i]->n_logs; j++) {
			const struct ism_cm_tel_log *l = &tels[i]->logs[j];

			/* an entry without providers is for those of the one before */
			if (l->n_providers > 0) {
				parent = l->providers;
				n_parent = l->n_providers;
			}
			if (for_client(l) && in_list(parent, n_parent, "envoy")) {
				state = l->disabled;
				*by = tels[i];
			}
		}
	}
	return state;
}

/* Providers other than "envoy" (meshConfig's extensionProviders, which
 * isthmus has not): a warning each. */
static void warn_providers(struct ism_vctx *v, const struct ism_cm_tel *t)
{
	for (size_t j = 0; j < t->n_logs; j++)
		for (size_t k = 0; k < t->logs[j].n_providers; k++) {
			if (strcmp(t->logs[j].providers[k], "envoy") == 0)
				continue;
			v->res = t->r.label;
			ism_v_pop(v, 0);
			ism_v_push(v, "spec.accessLogging[%zu].providers[%zu]", j, k);
			ism_v_warn(
			    v, t->logs[j].provider_at[k],
			    "provider %s: an extension provider of Istio's meshConfig, which "
			    "isthmus has not (its access log is the \"envoy\" provider's): "
			    "ignored",
			    t->logs[j].providers[k]);
		}
}

/* Whether filter reads a request value the access log's record cuts
 * (ISM_ALOG_VALUE): the worker then keeps the request's fields whole for it
 * (worker/logfilter.c), so that a client cannot keep its request out of the
 * log with a long value. */
static bool reads_request(const void *filter)
{
	static const uint16_t whole[] = {
	    ISM_LA_REQ_HEADERS, ISM_LA_REQ_PATH,   ISM_LA_REQ_URL_PATH, ISM_LA_REQ_QUERY,
	    ISM_LA_REQ_HOST,	ISM_LA_REQ_METHOD, ISM_LA_REQ_REFERER,	ISM_LA_REQ_USERAGENT};

	for (size_t i = 0; i < sizeof(whole) / sizeof(whole[0]); i++)
		if (ism_cel_reads(filter, whole[i]))
			return true;
	return false;
}
void ism_model_telemetry(struct ism_vctx *v)
{
	struct ism_conf *c = v->conf;
	struct ism_cm_appliance *a = &c->app;
	const struct ism_cm_tel **tels = calloc(c->n_tels ? c->n_tels : 1, sizeof(*tels));
	const struct ism_cm_tel *by = NULL;
	const struct ism_cm_tel_log *filter = NULL;
	size_t n;
	int state;

	if (tels == NULL) {
		v->nomem = 1;
		return;
	}
	n = applicable(c, tels);
	/* (a selector without labels makes a namespace's Telemetry, as istiod
	 * reads it) */
	for (size_t i = 0; i < c->n_tels; i++)
		ism_model_warn_elsewhere(v, &c->tels[i]->r,
					 c->tels[i]->n_sel ? c->tels[i]->selector_at : NULL,
					 c->tels[i]->sel, c->tels[i]->n_sel);
	for (size_t i = 0; i < n; i++)
		warn_providers(v, tels[i]);
	state = envoy_log(tels, n, &by, &filter);
	if (state == 1 && a->access_log.dest != ISM_ALOG_OFF) {
		v->res = a->r.label;
		ism_v_pop(v, 0);
		ism_v_push(v, "spec.accessLog");
		ism_v_warn(v, a->access_log_spec_at != NULL ? a->access_log_spec_at : a->r.at,
			   "%s disables the \"envoy\" access log provider: no access log is "
			   "written",
			   by->r.label);
		a->access_log.dest = ISM_ALOG_OFF;
	} else if (state == 0 && a->access_log.dest == ISM_ALOG_OFF) {
		ism_model_alog_stdout(v, &a->access_log);
	}
	if (state == 0 && filter != NULL) {
		a->access_log.filter = filter->filter;
		a->access_log.filter_size = filter->filter_size;
		a->access_log.filter_headers =
		    filter->filter != NULL && reads_request(filter->filter);
	}
	v->res = "";
	ism_v_pop(v, 0);
	free(tels);
}
