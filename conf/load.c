/* SPDX-License-Identifier: Apache-2.0 */
/* Loading: file to tree to model, then the cross-reference checks between
 * resources (gateways named by VirtualServices, subsets, service ports). */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/model.h"

/* Lookups by name: the maps the cross-reference pass builds, first one wins. */

const struct ism_cm_se *ism_model_find_se(const struct ism_conf *c, const char *host)
{
	uint32_t i;

	if (c->se_by_host == NULL || !ism_strmap_get(c->se_by_host, host, strlen(host), &i))
		return NULL;
	return c->ses[i];
}

const struct ism_cm_subset *ism_model_find_subset(const struct ism_cm_dr *dr, const char *name)
{
	uint32_t i;

	if (dr == NULL || dr->subset_ix == NULL ||
	    !ism_strmap_get(dr->subset_ix, name, strlen(name), &i))
		return NULL;
	return &dr->subsets[i];
}

static const struct ism_cm_port_tp *port_tp(const struct ism_cm_policy *p, uint32_t port)
{
	uint32_t i;

	if (port == 0 || p->port_ix == NULL ||
	    !ism_strmap_get(p->port_ix, (const char *)&port, sizeof(port), &i))
		return NULL;
	return &p->ports[i];
}

/* Istio's GetPortLevelTrafficPolicy: a portLevelSettings entry of policy p
 * for port stands for the whole of it, with the four blocks the entry holds
 * (shadowCopyPortTrafficPolicy: the connection pool, load balancer, outlier
 * detection and TLS, a block it leaves out the default) and nothing else:
 * no proxyProtocol, retryBudget or tunnel. true: one did. */
static bool port_level(const struct ism_cm_policy *p, uint32_t port, struct ism_cm_tp *out)
{
	const struct ism_cm_port_tp *pt = port_tp(p, port);

	if (pt == NULL)
		return false;
	*out = (struct ism_cm_tp){
	    .lb = pt->tp.lb, .pool = pt->tp.pool, .od = pt->tp.od, .tls = pt->tp.tls};
	return true;
}

/* Istio's MergeSubsetTrafficPolicy: the rule's policy for the port, then the
 * subset's for the port over it, block by block (a block the subset's
 * port-level entry leaves out is the default), proxyProtocol and retryBudget
 * where the subset's own policy sets them. A subset's tunnel is its own
 * (Istio's tunnelingconfig.Apply), none under a port-level entry. */
void ism_model_policy(const struct ism_cm_dr *dr, const struct ism_cm_subset *s, uint32_t port,
		      struct ism_cm_tp *out)
{
	struct ism_cm_tp sub;
	bool sub_port;

	memset(out, 0, sizeof(*out));
	if (dr != NULL) {
		*out = dr->policy.tp;
		port_level(&dr->policy, port, out);
	}
	if (s == NULL)
		return;
	sub = s->policy.tp;
	sub_port = port_level(&s->policy, port, &sub);
	if (sub.lb.set || sub_port)
		out->lb = sub.lb;
	if (sub.pool.set || sub_port)
		out->pool = sub.pool;
	if (sub.od.set || sub_port)
		out->od = sub.od;
	if (sub.tls.set || sub_port)
		out->tls = sub.tls;
	if (sub.rb.set)
		out->rb = sub.rb;
	if (sub.pp != ISM_UPP_NONE)
		out->pp = sub.pp;
	out->tunnel_host = sub.tunnel_host;
	out->tunnel_port = sub.tunnel_port;
	out->tunnel_post = sub.tunnel_post;
}

void ism_model_pool_defaults(struct ism_pool_limits *l)
{
	*l = (struct ism_pool_limits){.max_connections = UINT32_MAX,
				      .max_pending = UINT32_MAX,
				      .max_requests_per_conn = 0,
				      .max_retries = UINT32_MAX,
				      .max_requests = UINT32_MAX};
}

const char *ism_model_label(const struct ism_node *have, const char *key)
{
	const struct ism_node *n = ism_node_get(have, key, NULL);

	/* A loaded model's labels are all strings: the loader refused others. */
	return n != NULL && n->kind == ISM_NODE_SCALAR ? n->str : "";
}

bool ism_model_labels_include(const struct ism_node *have, const struct ism_cm_label *want,
			      size_t n_want)
{
	for (size_t i = 0; i < n_want; i++) {
		const struct ism_node *n = ism_node_get(have, want[i].key, NULL);

		if (n == NULL || n->kind != ISM_NODE_SCALAR || strcmp(n->str, want[i].value) != 0)
			return false;
	}
	return true;
}

const char *ism_model_ep_label(const struct ism_cm_se_ep *e, const char *key)
{
	const struct ism_node *n;

	for (size_t i = e->n_labels - e->n_topo; i < e->n_labels; i++)
		if (strcmp(e->labels[i].key, key) == 0)
			return e->labels[i].value;
	n = ism_node_get(e->labels_at, key, NULL);
	return n != NULL && n->kind == ISM_NODE_SCALAR ? n->str : NULL;
}

bool ism_model_ep_labels_include(const struct ism_cm_se_ep *e, const struct ism_cm_label *want,
				 size_t n_want)
{
	for (size_t i = 0; i < n_want; i++) {
		const char *have = ism_model_ep_label(e, want[i].key);

		if (have == NULL || strcmp(have, want[i].value) != 0)
			return false;
	}
	return true;
}

bool ism_model_host_covers(const char *pat, const char *h)
{
	size_t pl, hl;

	if (strcmp(pat, "*") == 0)
		return true;
	if (pat[0] != '*')
		return strcmp(pat, h) == 0;
	pl = strlen(pat) - 1; /* ".example.com", "-api.example.com" */
	hl = strlen(h);
	/* A name may equal the suffix (Istio's strings.HasSuffix), which a
	 * dot-led one never does; a wildcard h is as long as pat at least. */
	if (hl < pl || (hl == pl && h[0] == '*'))
		return false;
	return strcmp(h + hl - pl, pat + 1) == 0;
}

bool ism_model_bind_host(const struct ism_cm_srvhost *s, const char *gw_ns, const char *h,
			 const char *vs_ns, const char **domain)
{
	if (s->ns != NULL && strcmp(s->ns, "*") != 0) {
		const char *want = strcmp(s->ns, ".") == 0 ? gw_ns : s->ns;

		if (strcmp(want, vs_ns) != 0)
			return false;
	}
	if (ism_model_host_covers(s->dns, h)) {
		*domain = h;
		return true;
	}
	if (h[0] == '*' && ism_model_host_covers(h, s->dns)) {
		*domain = s->dns;
		return true;
	}
	return false;
}

size_t ism_model_find_hc(const struct ism_conf *c, const char *host, uint32_t port)
{
	const struct ism_cm_appliance *a = &c->app;
	uint32_t any = UINT32_MAX, one = UINT32_MAX;
	char key[600];

	if (a->hc_any_port == NULL || a->hc_by_port == NULL)
		return SIZE_MAX;
	ism_strmap_get(a->hc_any_port, host, strlen(host), &any);
	snprintf(key, sizeof(key), "%u|%s", port, host);
	ism_strmap_get(a->hc_by_port, key, strlen(key), &one);
	if (any == UINT32_MAX && one == UINT32_MAX)
		return SIZE_MAX;
	return any < one ? any : one;
}

/* The lookups by name, before any cross reference uses them. */
static void build_maps(struct ism_vctx *v)
{
	struct ism_conf *c = v->conf;
	size_t n_hosts = 0;

	for (size_t i = 0; i < c->n_ses; i++)
		n_hosts += c->ses[i]->n_hosts;
	c->se_by_host = ism_v_map(v, n_hosts);
	if (v->nomem)
		return;
	for (size_t i = 0; i < c->n_ses; i++)
		for (size_t j = 0; j < c->ses[i]->n_hosts; j++)
			ism_v_map_add(v, c->se_by_host, c->ses[i]->hosts[j],
				      strlen(c->ses[i]->hosts[j]), (uint32_t)i, NULL);
}

static void set_res(struct ism_vctx *v, const struct ism_cm_res *r)
{
	v->res = r->label;
	ism_v_pop(v, 0);
}

#define GW_ELSEWHERE UINT32_MAX

/* Which Gateways apply, as istiod gives a Gateway to the proxies its
 * selector selects (none or an empty one: every gateway): with spec.labels,
 * one whose selector is not among them is left out of gws, with a warning;
 * without, the appliance is the proxy every Gateway of its file selects. Then
 * the Gateways by name, as a VirtualService names them. */
static void index_gateways(struct ism_vctx *v)
{
	struct ism_conf *c = v->conf;
	size_t n = 0;

	c->gw_by_name = ism_v_map(v, c->n_gws);
	for (size_t i = 0; c->gw_by_name != NULL && i < c->n_gws; i++) {
		struct ism_cm_gw *g = c->gws[i];
		bool applies =
		    c->app.n_labels == 0 ||
		    ism_model_labels_include(c->app.labels_at, g->selector, g->n_selector);
		char buf[512];
		const char *name;

		if (!applies) {
			set_res(v, &g->r);
			ism_v_push(v, "spec.selector");
			ism_v_warn(v, g->selector_at,
				   "selects other proxies than this appliance (its spec.labels): "
				   "its servers are not served here, as istiod gives a Gateway "
				   "only to the proxies it selects");
		}
		/* As a VirtualService names it (conf/vs.c ism_model_parse_vs). */
		snprintf(buf, sizeof(buf), "%s/%s", g->r.ns, g->r.name);
		name = ism_v_strdup(v, buf);
		if (name == NULL)
			return;
		ism_v_map_add(v, c->gw_by_name, name, strlen(name),
			      applies ? (uint32_t)n : GW_ELSEWHERE, NULL);
		if (applies)
			c->gws[n++] = g;
	}
	c->n_gws = n;
}

/* A route's destination cd (the map that holds it is at "<path>" + what:
 * ".destination" for route[] and mirrors[], "" for mirror). used: whether
 * the appliance uses its VirtualService; an unknown subset is an error
 * only then (Istio validates no subset reference; a VirtualService bound to
 * the mesh only gets a warning). */
#define MESH_ONLY                                                                                  \
	" (the VirtualService is bound to the mesh only: not an error, as Istio checks no subset " \
	"reference)"

static void xref_dest_at(struct ism_vctx *v, const struct ism_cm_dest *cd, const char *what,
			 bool used)
{
	void (*report)(struct ism_vctx *, const struct ism_node *, const char *, ...) =
	    used ? ism_v_err : ism_v_warn;
	struct ism_cm_dest *d = (struct ism_cm_dest *)cd;
	const struct ism_cm_se *se;
	size_t old;

	if (d->host == NULL)
		return;
	if (d->subset != NULL &&
	    ism_model_find_subset(ism_model_find_dr(v->conf, d->host), d->subset) == NULL) {
		old = ism_v_push(v, "%s.subset", what);
		if (ism_model_find_dr(v->conf, d->host) == NULL)
			report(v, d->subset_at,
			       "unknown subset \"%s\": no DestinationRule for host %s%s", d->subset,
			       d->host, used ? "" : MESH_ONLY);
		else
			report(v, d->subset_at,
			       "unknown subset \"%s\": the DestinationRule for host %s does not "
			       "define it%s",
			       d->subset, d->host, used ? "" : MESH_ONLY);
		ism_v_pop(v, old);
	}
	se = ism_model_find_se(v->conf, d->host);
	d->se = se;
	d->svc_port = (uint16_t)d->port;
	if (se == NULL) {
		old = ism_v_push(v, "%s.host", what);
		ism_v_warn(v, d->host_at,
			   "no ServiceEntry for host %s: its cluster has no endpoints (503)",
			   d->host);
		ism_v_pop(v, old);
		return;
	}
	if (d->port != 0) {
		if (se->port_by_number != NULL &&
		    ism_strmap_get(se->port_by_number, (const char *)&d->port, sizeof(d->port),
				   NULL))
			return;
		old = ism_v_push(v, "%s.port.number", what);
		ism_v_err(v, d->port_at, "port %u is not a port of %s", d->port, se->r.label);
		ism_v_pop(v, old);
		return;
	}
	/* Without port.number: the only port, else the listener's (compile.c). */
	if (se->n_ports == 1)
		d->svc_port = (uint16_t)se->ports[0].number;
}

static void xref_dest(struct ism_vctx *v, const struct ism_cm_dest *cd, bool used)
{
	xref_dest_at(v, cd, ".destination", used);
}

/* A match naming a gateway the VirtualService is not bound to never applies
 * (Istio builds a gateway's routes from the VirtualServices bound to it): a
 * warning, as "mesh" is not (a route for sidecars, which this appliance is not).
 * kind: "http", "tcp" or "tls". */
static void xref_match_gateways(struct ism_vctx *v, const struct ism_cm_vs *vs,
				const struct ism_cm_match *m, const char *kind, size_t ri,
				size_t mi)
{
	for (size_t k = 0; k < m->n_gateways; k++) {
		bool bound = strcmp(m->gateways[k], "mesh") == 0;
		size_t old;

		for (size_t g = 0; !bound && g < vs->n_gateways; g++)
			bound = strcmp(vs->gateways[g], m->gateways[k]) == 0;
		if (bound)
			continue;
		old = ism_v_push(v, "spec.%s[%zu].match[%zu].gateways[%zu]", kind, ri, mi, k);
		ism_v_warn(v, m->gateways_at->items[k],
			   "the VirtualService is not bound to Gateway %s (spec.gateways): this "
			   "match never applies",
			   m->gateways[k]);
		ism_v_pop(v, old);
	}
}

/* The matches and destinations of a VirtualService's tcp or tls routes (kind). */
static void xref_l4routes(struct ism_vctx *v, const struct ism_cm_vs *vs, const char *kind,
			  const struct ism_cm_l4route *rs, size_t n, bool used)
{
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < rs[i].n_match; j++)
			xref_match_gateways(v, vs, &rs[i].match[j].m, kind, i, j);
		for (size_t j = 0; j < rs[i].n_dest; j++) {
			size_t old = ism_v_push(v, "spec.%s[%zu].route[%zu]", kind, i, j);

			xref_dest(v, &rs[i].dest[j], used);
			ism_v_pop(v, old);
		}
	}
}

bool ism_model_names_ns(const char *const *list, size_t n, const char *own, const char *ns)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i], "*") == 0 ||
		    strcmp(strcmp(list[i], ".") == 0 ? own : list[i], ns) == 0)
			return true;
	return false;
}

/* How this appliance's gateways see VirtualService vs, as istiod indexes it
 * (initVirtualServices, VirtualServicesForGateway): 0 exported by the
 * appliance's namespace to itself, 1 exported to it by another namespace, 2
 * public (no exportTo, the mesh's default "*", or "*"), 3 not seen. A
 * gateway takes them in this order. */
static int vs_rank(const struct ism_conf *c, const struct ism_cm_vs *vs)
{
	const char *const *ex = vs->export_to;

	/* (no namespace is named "*": only the entry "*" names it) */
	if (vs->n_export_to == 0 || ism_model_names_ns(ex, vs->n_export_to, vs->r.ns, "*"))
		return 2;
	if (!ism_model_names_ns(ex, vs->n_export_to, vs->r.ns, c->app.ns))
		return 3;
	return strcmp(vs->r.ns, c->app.ns) == 0 ? 0 : 1;
}

static int vs_by_creation(const void *pa, const void *pb)
{
	return ism_model_by_creation(&(*(struct ism_cm_vs *const *)pa)->r,
				     &(*(struct ism_cm_vs *const *)pb)->r);
}

static int gw_by_creation(const void *pa, const void *pb)
{
	return ism_model_by_creation(&(*(struct ism_cm_gw *const *)pa)->r,
				     &(*(struct ism_cm_gw *const *)pb)->r);
}

static int pa_by_creation(const void *pa, const void *pb)
{
	return ism_model_by_creation(&(*(struct ism_cm_pa *const *)pa)->r,
				     &(*(struct ism_cm_pa *const *)pb)->r);
}

/* Gateways (whose servers of one port istiod merges in that order, the
 * first one's winning) and PeerAuthentications (of one level the oldest
 * wins) in istiod's creation order, where the file has creation times. */
static void order_by_creation(struct ism_conf *c)
{
	bool gws = false, pas = false;

	for (size_t i = 0; i < c->n_gws; i++)
		gws |= c->gws[i]->r.has_created;
	for (size_t i = 0; i < c->n_pas; i++)
		pas |= c->pas[i]->r.has_created;
	if (gws)
		qsort(c->gws, c->n_gws, sizeof(*c->gws), gw_by_creation);
	if (pas)
		qsort(c->pas, c->n_pas, sizeof(*c->pas), pa_by_creation);
}

/* The VirtualServices in the order a gateway takes them: by rank, then as
 * istiod orders them by creation time when the file has such times (one
 * exported from a cluster), else in the file's order. */
static void order_vss(struct ism_vctx *v)
{
	struct ism_conf *c = v->conf;
	struct ism_cm_vs **out = calloc(c->n_vss ? c->n_vss : 1, sizeof(*out));
	bool times = false;
	size_t k = 0;

	if (out == NULL) {
		v->nomem = 1;
		return;
	}
	for (size_t i = 0; i < c->n_vss; i++)
		times |= c->vss[i]->r.has_created;
	for (int rank = 0; rank <= 3; rank++) {
		size_t first = k;

		for (size_t i = 0; i < c->n_vss; i++)
			if (vs_rank(c, c->vss[i]) == rank)
				out[k++] = c->vss[i];
		if (times && k - first > 1)
			qsort(out + first, k - first, sizeof(*out), vs_by_creation);
	}
	memcpy(c->vss, out, c->n_vss * sizeof(*out));
	free(out);
}

static void xref_vs(struct ism_vctx *v, struct ism_cm_vs *vs)
{
	size_t bound = 0, old;
	bool used;

	set_res(v, &vs->r);
	vs->gateway_idx = ism_v_alloc(v, vs->n_gateways, sizeof(*vs->gateway_idx));
	for (size_t i = 0; vs->gateway_idx != NULL && i < vs->n_gateways; i++) {
		uint32_t g;

		vs->gateway_idx[i] = SIZE_MAX;
		if (ism_strmap_get(v->conf->gw_by_name, vs->gateways[i], strlen(vs->gateways[i]),
				   &g)) {
			/* One of another proxy: routes served there, not here. */
			if (g != GW_ELSEWHERE) {
				vs->gateway_idx[i] = g;
				bound++;
			}
			continue;
		}
		old = ism_v_push(v, "spec.gateways[%zu]", i);
		ism_v_err(v, vs->gateway_at[i], "no Gateway %s in this file", vs->gateways[i]);
		ism_v_pop(v, old);
	}
	used = vs->n_gateways > 0 || vs->delegate_only;
	if (!used)
		ism_v_warn(v, vs->r.at,
			   "bound to the mesh only: no gateway of this appliance uses it");
	if (bound > 0 && !vs->delegate_only && vs_rank(v->conf, vs) == 3) {
		for (size_t i = 0; i < vs->n_gateways; i++)
			vs->gateway_idx[i] = SIZE_MAX;
		old = ism_v_push(v, "spec.exportTo");
		ism_v_warn(v, vs->r.at,
			   "not exported to the appliance's namespace %s: no gateway of this "
			   "appliance uses it",
			   v->conf->app.ns);
		ism_v_pop(v, old);
	}
	for (size_t i = 0; i < vs->n_routes; i++) {
		const struct ism_cm_route *r = &vs->routes[i];

		for (size_t j = 0; j < r->n_match; j++)
			xref_match_gateways(v, vs, &r->match[j], "http", i, j);
		for (size_t j = 0; j < r->n_dest; j++) {
			old = ism_v_push(v, "spec.http[%zu].route[%zu]", i, j);
			xref_dest(v, &r->dest[j], used);
			ism_v_pop(v, old);
		}
		if (r->mirror != NULL) {
			old = ism_v_push(v, "spec.http[%zu].mirror", i);
			xref_dest_at(v, r->mirror, "", used);
			ism_v_pop(v, old);
		}
		for (size_t j = 0; j < r->n_mirrors; j++) {
			old = ism_v_push(v, "spec.http[%zu].mirrors[%zu]", i, j);
			xref_dest(v, &r->mirrors[j], used);
			ism_v_pop(v, old);
		}
	}
	xref_l4routes(v, vs, "tcp", vs->tcp, vs->n_tcp, used);
	xref_l4routes(v, vs, "tls", vs->tls, vs->n_tls, used);
}

static size_t n_of_kind(const struct ism_conf *c, int kind)
{
	const size_t n[] = {c->n_gws, c->n_vss, c->n_drs,  c->n_ses,   c->n_pas,
			    c->n_wes, c->n_pcs, c->n_tels, c->n_laters};

	return n[kind];
}

static const struct ism_cm_res *res_of_kind(const struct ism_conf *c, int kind, size_t i)
{
	switch (kind) {
	case 0:
		return &c->gws[i]->r;
	case 1:
		return &c->vss[i]->r;
	case 2:
		return &c->drs[i]->r;
	case 3:
		return &c->ses[i]->r;
	case 4:
		return &c->pas[i]->r;
	case 5:
		return &c->wes[i]->r;
	case 6:
		return &c->pcs[i]->r;
	case 7:
		return &c->tels[i]->r;
	default:
		return &c->laters[i]->r;
	}
}

static void xref_unique(struct ism_vctx *v)
{
	struct ism_conf *c = v->conf;

	/* Resources of one kind must have distinct namespace/name; the label
	 * "<Kind> <ns>/<name>" says exactly that. */
	for (int kind = 0; kind < 9; kind++) {
		struct ism_strmap *labels = ism_v_map(v, n_of_kind(c, kind));

		for (size_t i = 0; labels != NULL && i < n_of_kind(c, kind); i++) {
			const struct ism_cm_res *a = res_of_kind(c, kind, i);
			uint32_t first;

			if (ism_v_map_add(v, labels, a->label, strlen(a->label), (uint32_t)i,
					  &first) != 0)
				continue;
			set_res(v, a);
			ism_v_push(v, "metadata.name");
			ism_v_err(v, a->at, "defined twice (first at line %d)",
				  res_of_kind(c, kind, first)->at->line);
		}
	}
	for (size_t i = 0; i < c->n_ses; i++) {
		for (size_t h = 0; h < c->ses[i]->n_hosts; h++) {
			const struct ism_cm_se *o = ism_model_find_se(c, c->ses[i]->hosts[h]);

			if (o == c->ses[i])
				continue;
			set_res(v, &c->ses[i]->r);
			ism_v_push(v, "spec.hosts[%zu]", h);
			ism_v_err(v, c->ses[i]->r.at, "host %s is already defined by %s",
				  c->ses[i]->hosts[h], o->r.label);
		}
	}
}

/* Health check i joins the lookups: the first check of a host covers its port
 * (every port for port 0), and later ones of the same host and port clash. */
static void add_hc(struct ism_vctx *v, struct ism_strmap *any, size_t i)
{
	struct ism_cm_appliance *a = &v->conf->app;
	const struct ism_cm_hc *h = &a->hcs[i];
	char key[600];
	const char *k;

	ism_v_map_add(v, any, h->host, strlen(h->host), (uint32_t)i, NULL);
	if (h->port == 0) {
		ism_v_map_add(v, a->hc_any_port, h->host, strlen(h->host), (uint32_t)i, NULL);
		return;
	}
	snprintf(key, sizeof(key), "%u|%s", h->port, h->host);
	k = ism_v_strdup(v, key);
	if (k != NULL)
		ism_v_map_add(v, a->hc_by_port, k, strlen(k), (uint32_t)i, NULL);
}

static void xref_hcs(struct ism_vctx *v)
{
	struct ism_cm_appliance *a = &v->conf->app;
	struct ism_strmap *any = ism_v_map(v, a->n_hcs); /* host -> first check */

	set_res(v, &a->r);
	a->hc_any_port = ism_v_map(v, a->n_hcs);
	a->hc_by_port = ism_v_map(v, a->n_hcs);
	for (size_t i = 0; !v->nomem && i < a->n_hcs; i++) {
		const struct ism_cm_hc *h = &a->hcs[i];
		const struct ism_cm_se *se;
		size_t old = ism_v_push(v, "spec.healthChecks[%zu]", i);
		size_t j = SIZE_MAX;
		uint32_t first;

		if (h->host == NULL)
			goto next;
		/* The first earlier check of the host that has its port, or any
		 * port, or (for port 0) any earlier check of the host. */
		if (h->port != 0)
			j = ism_model_find_hc(v->conf, h->host, h->port);
		else if (ism_strmap_get(any, h->host, strlen(h->host), &first))
			j = first;
		if (j != SIZE_MAX) {
			ism_v_err(v, h->at, "healthChecks[%zu] already covers host %s", j, h->host);
			goto next;
		}
		se = ism_model_find_se(v->conf, h->host);
		if (se == NULL) {
			ism_v_warn(v, h->at, "no ServiceEntry for host %s", h->host);
		} else if (h->port != 0) {
			bool found = se->port_by_number != NULL &&
				     ism_strmap_get(se->port_by_number, (const char *)&h->port,
						    sizeof(h->port), NULL);

			if (!found)
				ism_v_err(v, h->at, "port %u is not a port of %s", h->port,
					  se->r.label);
		}
	next:
		if (h->host != NULL)
			add_hc(v, any, i);
		ism_v_pop(v, old);
	}
}

/* The failover fields warned about so far, each once. */
struct fo_done {
	const struct ism_node **at; /* the keys of set: pointer values */
	size_t n;
	struct ism_strmap set;
};

/* Istio applies failover and failoverPriority only with outlierDetection:
 * without it every endpoint stays at priority 0. Warns once per field, for
 * the first (subset, port) whose merged policy has it without detection. */
static void warn_failover(struct ism_vctx *v, const struct ism_cm_dr *dr,
			  const struct ism_cm_subset *s, uint32_t port, struct fo_done *done)
{
	struct ism_cm_tp tp;
	const struct ism_cm_llb *l;

	ism_model_policy(dr, s, port, &tp);
	l = &tp.lb.llb;
	/* zoneAwareLbSetting fails over without outlierDetection (Istio's
	 * ForceFailover). */
	if (!l->set || !l->enabled || l->fo_at == NULL || tp.od.set || l->zone_aware)
		return;
	if (ism_strmap_get(&done->set, (const char *)&l->fo_at, sizeof(l->fo_at), NULL))
		return;
	done->at[done->n] = l->fo_at;
	if (ism_strmap_add(&done->set, (const char *)&done->at[done->n], sizeof(l->fo_at),
			   (uint32_t)done->n, NULL) < 0) {
		v->nomem = 1;
		return;
	}
	done->n++;
	ism_v_pop(v, 0);
	ism_v_push(v, "%s", l->fo_path ? l->fo_path : "");
	ism_v_warn(v, l->fo_at, "failover requires outlierDetection; it has no effect");
	ism_v_pop(v, 0);
}

static int size_cmp(const void *pa, const void *pb)
{
	size_t a = *(const size_t *)pa, b = *(const size_t *)pb;

	return a < b ? -1 : a > b;
}

/* The positions in the rule's portLevelSettings where subset s's merged
 * policy can warn about a field not warned about yet, ascending, into pos;
 * their count. At the others it cannot: with no entry of the subset for the
 * port, the merged loadBalancer and outlierDetection are the subset's where it
 * sets them, else the rule's entry's. outlierDetection set warns of nothing;
 * neither set is the rule's entry alone, seen before the subsets; the
 * subset's loadBalancer without its outlierDetection warns at the first port
 * whose entry lacks outlierDetection, if anywhere. So: the ports the subset
 * has entries for, and that first port (no_od: the entries without
 * outlierDetection, in order). */
static size_t subset_ports(const struct ism_cm_dr *dr, const struct ism_cm_subset *s,
			   const size_t *no_od, size_t n_no_od, size_t *pos)
{
	const struct ism_cm_policy *sp = &s->policy;
	size_t n = 0;
	uint32_t at;

	for (size_t i = 0; dr->policy.port_ix != NULL && i < sp->n_ports; i++)
		if (ism_strmap_get(dr->policy.port_ix, (const char *)&sp->ports[i].port,
				   sizeof(sp->ports[i].port), &at))
			pos[n++] = at;
	for (size_t i = 0; sp->tp.lb.set && !sp->tp.od.set && i < n_no_od; i++) {
		uint32_t port = dr->policy.ports[no_od[i]].port;

		if (sp->port_ix == NULL ||
		    !ism_strmap_get(sp->port_ix, (const char *)&port, sizeof(port), NULL)) {
			pos[n++] = no_od[i];
			break;
		}
	}
	qsort(pos, n, sizeof(*pos), size_cmp);
	return n;
}

static void xref_dr(struct ism_vctx *v, const struct ism_cm_dr *dr)
{
	/* Every place a failover field can be written: the rule, its subsets, and
	 * their port-level settings. */
	size_t cap = 1 + dr->policy.n_ports, max_sp = 0, n_no_od = 0;
	struct fo_done done = {0};
	size_t *no_od, *pos;

	for (size_t i = 0; i < dr->n_subsets; i++) {
		cap += 1 + dr->subsets[i].policy.n_ports;
		if (dr->subsets[i].policy.n_ports > max_sp)
			max_sp = dr->subsets[i].policy.n_ports;
	}
	ism_strmap_init(&done.set, v->conf->seed);
	done.at = calloc(cap, sizeof(*done.at));
	no_od = calloc(dr->policy.n_ports + 1, sizeof(*no_od));
	pos = calloc(max_sp + 1, sizeof(*pos));
	if (done.at == NULL || no_od == NULL || pos == NULL) {
		v->nomem = 1;
		goto out_free;
	}
	set_res(v, &dr->r);
	warn_failover(v, dr, NULL, 0, &done);
	for (size_t p = 0; p < dr->policy.n_ports; p++) {
		warn_failover(v, dr, NULL, dr->policy.ports[p].port, &done);
		if (!dr->policy.ports[p].tp.od.set)
			no_od[n_no_od++] = p;
	}
	for (size_t i = 0; i < dr->n_subsets; i++) {
		const struct ism_cm_subset *s = &dr->subsets[i];
		size_t n = subset_ports(dr, s, no_od, n_no_od, pos);

		warn_failover(v, dr, s, 0, &done);
		/* As if for every port of the rule's portLevelSettings, in order:
		 * the others would warn of nothing new (subset_ports). */
		for (size_t p = 0; p < n; p++)
			warn_failover(v, dr, s, dr->policy.ports[pos[p]].port, &done);
		for (size_t p = 0; p < s->policy.n_ports; p++)
			warn_failover(v, dr, s, s->policy.ports[p].port, &done);
	}
out_free:
	ism_strmap_free(&done.set);
	free(done.at);
	free(no_od);
	free(pos);
}

static int we_cmp(const void *pa, const void *pb)
{
	const struct ism_cm_we *a = *(struct ism_cm_we *const *)pa;
	const struct ism_cm_we *b = *(struct ism_cm_we *const *)pb;

	return strcmp(a->r.name, b->r.name);
}

/* Whether ServiceEntry se's workloadSelector takes WorkloadEntry we: of its
 * namespace, with its labels; one whose address is a name only for DNS
 * resolution (as Istio: a STATIC service's endpoints are addresses). */
static bool selects(struct ism_vctx *v, const struct ism_cm_se *se, struct ism_cm_we *we)
{
	const char *why = NULL;

	if (strcmp(we->r.ns, se->r.ns) != 0 ||
	    !ism_model_ep_labels_include(&we->ep, se->selector, se->n_selector))
		return false;
	we->matched = true;
	if (we->ep.is_unix && se->resolution != ISM_RES_STATIC)
		why = "a Unix socket, and resolution is not STATIC";
	else if (we->ep.name != NULL && se->resolution == ISM_RES_STATIC)
		why = "a host name, and resolution is STATIC (Istio selects it for DNS resolution "
		      "only)";
	if (why == NULL)
		return true;
	set_res(v, &se->r);
	ism_v_push(v, "spec.workloadSelector");
	ism_v_warn(v, se->selector_at, "%s is not an endpoint: its address is %s", we->r.label,
		   why);
	return false;
}

/* A label of a WorkloadEntry. */
struct we_by {
	const char *ns, *key, *value;
	struct ism_cm_we *we;
};

static int we_by_cmp(const void *pa, const void *pb)
{
	const struct we_by *a = pa, *b = pb;
	int d = strcmp(a->ns, b->ns);

	if (d == 0)
		d = strcmp(a->key, b->key);
	return d != 0 ? d : strcmp(a->value, b->value);
}

/* Every label of every WorkloadEntry, by namespace, key and value (into a
 * new array, *n entries): a selector finds the entries that have its first
 * label by a binary search, so that N selectors over M entries take about
 * (N + M) log M whatever their labels, not N times M. NULL when memory runs
 * out. */
static struct we_by *we_index(struct ism_vctx *v, size_t *n)
{
	const struct ism_conf *c = v->conf;
	size_t total = 0, k = 0;
	struct we_by *ix;

	for (size_t j = 0; j < c->n_wes; j++)
		total += c->wes[j]->ep.n_labels;
	ix = ism_v_alloc(v, total + 1, sizeof(*ix));
	for (size_t j = 0; ix != NULL && j < c->n_wes; j++)
		for (size_t l = 0; l < c->wes[j]->ep.n_labels; l++) {
			const struct ism_cm_label *lb = &c->wes[j]->ep.labels[l];
			const char *now = ism_model_ep_label(&c->wes[j]->ep, lb->key);

			/* the value in force (a topology label replaces one written) */
			if (now != NULL && strcmp(now, lb->value) == 0)
				ix[k++] =
				    (struct we_by){c->wes[j]->r.ns, lb->key, lb->value, c->wes[j]};
		}
	if (ix != NULL)
		qsort(ix, k, sizeof(*ix), we_by_cmp);
	*n = k;
	return ix;
}

/* Into sel, the WorkloadEntries se selects: among the entries of ix (n) that
 * have its first label, or all when the selector has no label. Returns how
 * many. */
static size_t selected(struct ism_vctx *v, struct ism_cm_se *se, const struct we_by *ix, size_t n,
		       struct ism_cm_we **sel)
{
	const struct ism_conf *c = v->conf;
	struct we_by want;
	size_t lo = 0, hi = n, k = 0;

	if (se->n_selector == 0) {
		for (size_t j = 0; j < c->n_wes; j++)
			if (selects(v, se, c->wes[j]))
				sel[k++] = c->wes[j];
		return k;
	}
	want = (struct we_by){se->r.ns, se->selector[0].key, se->selector[0].value, NULL};
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (we_by_cmp(&ix[mid], &want) < 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	for (size_t j = lo; j < n && we_by_cmp(&ix[j], &want) == 0; j++)
		if (selects(v, se, ix[j].we))
			sel[k++] = ix[j].we;
	return k;
}

/* The endpoints of the ServiceEntries with a workloadSelector: the
 * WorkloadEntries it selects (we_index), in the order of their names (as
 * Istio sorts them). A WorkloadEntry whose labels no selector matches
 * warns. */
static void xref_selectors(struct ism_vctx *v)
{
	struct ism_conf *c = v->conf;
	struct ism_cm_we **sel = ism_v_alloc(v, c->n_wes + 1, sizeof(*sel));
	size_t n_ix = 0;
	struct we_by *ix = sel != NULL ? we_index(v, &n_ix) : NULL;

	for (size_t i = 0; ix != NULL && i < c->n_ses; i++) {
		struct ism_cm_se *se = c->ses[i];
		size_t n;

		if (se->selector_at == NULL)
			continue;
		n = selected(v, se, ix, n_ix, sel);
		qsort(sel, n, sizeof(*sel), we_cmp);
		if (se->resolution == ISM_RES_DNS_RR && n > 1) {
			set_res(v, &se->r);
			ism_v_push(v, "spec.workloadSelector");
			ism_v_err(v, se->selector_at,
				  "resolution DNS_ROUND_ROBIN takes at most one endpoint; this "
				  "selects %zu WorkloadEntries",
				  n);
		}
		se->eps = ism_v_alloc(v, n + 1, sizeof(*se->eps));
		for (size_t j = 0; se->eps != NULL && j < n; j++)
			se->eps[se->n_eps++] = sel[j]->ep;
	}
	for (size_t i = 0; i < c->n_wes; i++) {
		if (c->wes[i]->matched)
			continue;
		set_res(v, &c->wes[i]->r);
		ism_v_push(v, "spec.labels");
		ism_v_warn(v, c->wes[i]->ep.labels_at ? c->wes[i]->ep.labels_at : c->wes[i]->r.at,
			   "no ServiceEntry of namespace %s selects it", c->wes[i]->r.ns);
	}
}

/* Envoy's bound on a locality of a cluster: its endpoints' weights sum to at
 * most 2^32 - 1 (Envoy refuses the cluster otherwise). Checked per
 * ServiceEntry, whose service's cluster holds every endpoint once (a subset's
 * holds fewer); reported at the endpoint whose weight passes it. */
static void xref_weights(struct ism_vctx *v)
{
	struct ism_conf *c = v->conf;

	for (size_t i = 0; i < c->n_ses && !v->nomem; i++) {
		const struct ism_cm_se *se = c->ses[i];
		uint64_t *sum = ism_v_alloc(v, se->n_eps, sizeof(*sum));
		struct ism_strmap locs; /* locality -> index in sum */
		uint32_t n_locs = 0, at;

		ism_strmap_init(&locs, c->seed);
		for (size_t j = 0; sum != NULL && j < se->n_eps; j++) {
			const struct ism_cm_se_ep *e = &se->eps[j];
			const struct ism_node *w = ism_node_get(e->at, "weight", NULL);
			int rc =
			    ism_strmap_add(&locs, e->locality, strlen(e->locality), n_locs, &at);

			if (rc < 0) {
				v->nomem = 1;
				break;
			}
			if (rc > 0)
				at = n_locs++;
			if (sum[at] > UINT32_MAX || (sum[at] += e->weight) <= UINT32_MAX)
				continue;
			set_res(v, &se->r);
			if (se->selector_at != NULL)
				ism_v_push(v, "spec.workloadSelector");
			else
				ism_v_push(v, "spec.endpoints[%zu].weight", j);
			ism_v_err(
			    v,
			    se->selector_at != NULL ? se->selector_at
			    : w != NULL		    ? w
						    : e->at,
			    "the weights of the endpoints of locality \"%s\" sum to more than "
			    "4294967295 (%s), which Envoy refuses",
			    e->locality,
			    se->selector_at != NULL ? "with the WorkloadEntries selected"
						    : "with this one");
		}
		ism_strmap_free(&locs);
	}
}

/* The first ProxyConfig as istiod sorts them (by creation time, then name:
 * ism_model_by_creation) of namespace ns: one whose selector selects the appliance
 * (workload), or one without a selector; NULL when none. */
static const struct ism_cm_pc *pc_first(const struct ism_conf *c, const char *ns, bool workload)
{
	const struct ism_cm_pc *best = NULL;

	for (size_t i = 0; i < c->n_pcs; i++) {
		const struct ism_cm_pc *pc = c->pcs[i];

		if (strcmp(pc->r.ns, ns) != 0)
			continue;
		if (workload ? pc->n_sel == 0 ||
				   !ism_model_labels_include(c->app.labels_at, pc->sel, pc->n_sel)
			     : pc->selector_at != NULL)
			continue;
		if (best == NULL || ism_model_by_creation(&pc->r, &best->r) < 0)
			best = pc;
	}
	return best;
}

bool ism_model_warn_elsewhere(struct ism_vctx *v, const struct ism_cm_res *r,
			      const struct ism_node *sel_at, const struct ism_cm_label *sel,
			      size_t n_sel)
{
	const struct ism_cm_appliance *a = &v->conf->app;
	bool own = strcmp(r->ns, a->ns) == 0, root = strcmp(r->ns, a->root_ns) == 0;

	set_res(v, r);
	if (!own && !root) {
		ism_v_push(v, "spec");
		ism_v_warn(v, r->at,
			   "it applies to the proxies of namespace %s, not to this appliance "
			   "(namespace %s)",
			   r->ns, a->ns);
		return true;
	}
	if (sel_at != NULL &&
	    (!own || n_sel == 0 || !ism_model_labels_include(a->labels_at, sel, n_sel))) {
		ism_v_push(v, "spec.selector");
		ism_v_warn(v, sel_at,
			   "it does not select this appliance (its labels, in its namespace %s): "
			   "it does not apply here",
			   a->ns);
		return true;
	}
	return false;
}

/* Why ProxyConfig pc, not among those that apply (in), does not: a warning. */
static void pc_unused(struct ism_vctx *v, const struct ism_cm_pc *pc, const struct ism_cm_pc **in)
{
	bool own = strcmp(pc->r.ns, v->conf->app.ns) == 0;
	const struct ism_cm_pc *first = own && pc->selector_at ? in[0]
					: own && in[1]	       ? in[1]
							       : in[2];

	if (ism_model_warn_elsewhere(v, &pc->r, pc->selector_at, pc->sel, pc->n_sel) ||
	    first == NULL)
		return;
	set_res(v, &pc->r);
	ism_v_push(v, "spec");
	ism_v_warn(v, pc->r.at, "%s comes first by %s: this one does not apply here",
		   first->r.label, first->r.has_created ? "creation time" : "name");
}

/* ProxyConfig, as istiod makes a proxy's effective one: the first that
 * selects the appliance in its namespace, then the first of that namespace
 * without a selector, then the first of the root namespace without one; the
 * first of those that sets concurrency decides the workers (0: one per
 * CPU), over spec.workers, as istiod puts ProxyConfig before a proxy's own
 * settings. */
static void apply_proxy_config(struct ism_vctx *v)
{
	struct ism_cm_appliance *a = &v->conf->app;
	bool in_root = strcmp(a->ns, a->root_ns) == 0;
	const struct ism_cm_pc *in[3] = {pc_first(v->conf, a->ns, true),
					 in_root ? NULL : pc_first(v->conf, a->ns, false),
					 pc_first(v->conf, a->root_ns, false)};
	const struct ism_cm_pc *from = NULL;

	for (size_t i = 0; i < v->conf->n_pcs; i++) {
		const struct ism_cm_pc *pc = v->conf->pcs[i];

		if (pc != in[0] && pc != in[1] && pc != in[2])
			pc_unused(v, pc, in);
	}
	for (size_t i = 0; from == NULL && i < 3; i++)
		if (in[i] != NULL && in[i]->concurrency >= 0)
			from = in[i];
	if (from == NULL)
		goto out;
	if (a->workers_at != NULL) {
		set_res(v, &a->r);
		ism_v_push(v, "spec.workers");
		ism_v_warn(v, a->workers_at,
			   "%s sets concurrency %lld, which decides the workers in its place "
			   "(istiod puts a ProxyConfig before a proxy's own settings)",
			   from->r.label, (long long)from->concurrency);
	}
	a->workers = from->concurrency > 64 ? 64 : (uint32_t)from->concurrency;
	if (from->concurrency > 64) {
		set_res(v, &from->r);
		ism_v_push(v, "spec.concurrency");
		ism_v_warn(v, from->concurrency_at, "more than 64: the appliance runs 64 workers");
	}
out:
	v->res = "";
	ism_v_pop(v, 0);
}

/* The ServiceEntries the appliance's namespace sees (istiod's service index
 * for a gateway: exportTo empty, the mesh's default "*", or naming that
 * namespace; "~" none): the others are left out, with a warning. */
static void select_ses(struct ism_vctx *v)
{
	struct ism_conf *c = v->conf;
	size_t k = 0;

	for (size_t i = 0; i < c->n_ses; i++) {
		struct ism_cm_se *se = c->ses[i];

		if (se->n_export_to == 0 ||
		    ism_model_names_ns(se->export_to, se->n_export_to, se->r.ns, c->app.ns)) {
			se->idx = k;
			c->ses[k++] = se;
			continue;
		}
		set_res(v, &se->r);
		ism_v_push(v, "spec.exportTo");
		ism_v_warn(v, se->r.at,
			   "not exported to the appliance's namespace %s: its hosts are not "
			   "services here",
			   c->app.ns);
	}
	c->n_ses = k;
	v->res = "";
	ism_v_pop(v, 0);
}

void ism_model_xref(struct ism_vctx *v)
{
	select_ses(v);
	build_maps(v);
	if (v->nomem)
		return;
	xref_unique(v); /* in the file's order: "first at line N" */
	order_by_creation(v->conf);
	index_gateways(v);
	order_vss(v);
	apply_proxy_config(v);
	ism_model_telemetry(v);
	ism_model_laters(v);
	ism_tls_xref_drs(v);
	ism_model_dr_index(v);
	xref_selectors(v);
	ism_model_xref_dns_names(v);
	xref_weights(v);
	for (size_t i = 0; i < v->conf->n_drs; i++)
		if (ism_model_dr_visible(v->conf, v->conf->drs[i]))
			xref_dr(v, v->conf->drs[i]);
	for (size_t i = 0; i < v->conf->n_vss; i++)
		xref_vs(v, v->conf->vss[i]);
	ism_model_delegate(v);
	xref_hcs(v);
	ism_tls_xref(v);
	ism_model_xref_extauthz(v);
	ism_model_xref_listeners(v);
	v->res = "";
	ism_v_pop(v, 0);
}

static bool is_appliance(const struct ism_node *doc)
{
	const struct ism_node *k = ism_node_get(doc, "kind", NULL);

	return k != NULL && k->kind == ISM_NODE_SCALAR && strcmp(k->str, "Appliance") == 0;
}

/* The Appliance goes first: its namespace is the default of every resource. */
static void load_docs(struct ism_vctx *v, const struct ism_yaml_docs *docs)
{
	struct ism_conf *c = v->conf;
	const struct ism_node *first = NULL;

	for (size_t i = 0; i < docs->n; i++) {
		if (!is_appliance(docs->docs[i]))
			continue;
		if (first != NULL) {
			v->res = "";
			ism_v_pop(v, 0);
			ism_v_err(v, docs->docs[i],
				  "a second Appliance document (the first is at line %d)",
				  first->line);
			continue;
		}
		first = docs->docs[i];
		ism_model_doc(v, docs->docs[i]);
	}
	if (first == NULL) {
		ism_diag_add(v->d, ISM_DIAG_ERROR, v->file, 0, 0, "",
			     "no Appliance document (kind: Appliance, apiVersion: isthmus.io/v1)");
		c->app.ns = "default";
	}
	if (c->app.ns == NULL)
		c->app.ns = "default";
	for (size_t i = 0; i < docs->n; i++)
		if (!is_appliance(docs->docs[i]))
			ism_model_doc(v, docs->docs[i]);
}

int ism_conf_load_buf(const char *name, const char *buf, size_t len, struct ism_conf **out,
		      struct ism_diags *d)
{
	struct ism_vctx v = {.d = d, .res = ""};
	struct ism_yaml_docs docs;
	struct ism_conf *c;
	size_t errors_before = d->n_errors;
	int rc;

	*out = NULL;
	c = calloc(1, sizeof(*c));
	if (c == NULL) {
		ism_diag_add(d, ISM_DIAG_ERROR, name, 0, 0, "", "out of memory");
		return -ENOMEM;
	}
	ism_pool_init(&c->pool);
	c->seed = ism_strmap_seed();
	ism_strmap_init(&c->files_ix, c->seed);
	v.conf = c;
	c->file = ism_pool_strndup(&c->pool, name, strlen(name));
	if (c->file == NULL) {
		rc = -ENOMEM;
		goto out_free;
	}
	v.file = c->file;
	rc = ism_yaml_parse(&c->pool, c->file, buf, len, &docs, d);
	if (rc < 0)
		goto out_free;
	c->gws = ism_v_alloc(&v, docs.n, sizeof(*c->gws));
	c->vss = ism_v_alloc(&v, docs.n, sizeof(*c->vss));
	c->drs = ism_v_alloc(&v, docs.n, sizeof(*c->drs));
	c->ses = ism_v_alloc(&v, docs.n, sizeof(*c->ses));
	c->pas = ism_v_alloc(&v, docs.n, sizeof(*c->pas));
	c->wes = ism_v_alloc(&v, docs.n, sizeof(*c->wes));
	c->pcs = ism_v_alloc(&v, docs.n, sizeof(*c->pcs));
	c->tels = ism_v_alloc(&v, docs.n, sizeof(*c->tels));
	c->laters = ism_v_alloc(&v, docs.n, sizeof(*c->laters));
	if (v.nomem) {
		rc = -ENOMEM;
		goto out_free;
	}
	load_docs(&v, &docs);
	if (!v.nomem && d->n_errors == errors_before)
		ism_model_xref(&v);
	if (v.nomem) {
		ism_diag_add(d, ISM_DIAG_ERROR, name, 0, 0, "", "out of memory");
		rc = -ENOMEM;
		goto out_free;
	}
	if (d->n_errors != errors_before) {
		rc = -EINVAL;
		goto out_free;
	}
	*out = c;
	return 0;
out_free:
	ism_conf_free(c);
	return rc;
}

int ism_conf_read_file(const char *path, size_t max, char **buf, size_t *len)
{
	struct stat st;
	size_t got = 0;
	int fd, rc = 0;
	char *b;

	fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* a FIFO's open waits for a writer */
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		rc = -errno;
		goto out_close;
	}
	if (!S_ISREG(st.st_mode)) {
		rc = -EINVAL;
		goto out_close;
	}
	if ((uint64_t)st.st_size > max) {
		rc = -EFBIG;
		goto out_close;
	}
	b = malloc((size_t)st.st_size + 1);
	if (b == NULL) {
		rc = -ENOMEM;
		goto out_close;
	}
	while (got < (size_t)st.st_size) {
		ssize_t r = read(fd, b + got, (size_t)st.st_size - got);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			rc = -errno;
			free(b);
			goto out_close;
		}
		if (r == 0)
			break;
		got += (size_t)r;
	}
	b[got] = '\0';
	*buf = b;
	*len = got;
out_close:
	close(fd);
	return rc;
}

const char *ism_conf_read_why(int rc, size_t max, char buf[64])
{
	if (rc == -EINVAL)
		return "not a regular file";
	if (rc != -EFBIG)
		return strerror(-rc);
	if (max % (1u << 20) == 0)
		snprintf(buf, 64, "larger than the %zu MiB limit", max >> 20);
	else
		snprintf(buf, 64, "larger than the %zu-byte limit", max);
	return buf;
}

int ism_conf_load(const char *path, struct ism_conf **out, struct ism_diags *d)
{
	char *buf = NULL;
	size_t len = 0;
	int rc;

	*out = NULL;
	rc = ism_conf_read_file(path, ISM_CONF_MAX_FILE, &buf, &len);
	if (rc < 0) {
		char why[64];

		ism_diag_add(d, ISM_DIAG_ERROR, path, 0, 0, "", "cannot read: %s",
			     ism_conf_read_why(rc, ISM_CONF_MAX_FILE, why));
		return rc;
	}
	rc = ism_conf_load_buf(path, buf, len, out, d);
	free(buf);
	return rc;
}

size_t ism_conf_files(const struct ism_conf *conf, const char *const **files)
{
	*files = conf->files;
	return conf->n_files;
}

bool ism_conf_server_port_at(const struct ism_conf *conf, uint16_t port, int *line, int *col,
			     char *field, size_t len)
{
	for (size_t g = 0; g < conf->n_gws; g++)
		for (size_t i = 0; i < conf->gws[g]->n_servers; i++) {
			const struct ism_cm_server *s = &conf->gws[g]->servers[i];
			const struct ism_node *n =
			    ism_node_get(ism_node_get(s->at, "port", NULL), "number", NULL);

			if (s->port != port)
				continue;
			if (n == NULL)
				n = s->at;
			*line = n->line;
			*col = n->col;
			snprintf(field, len, "%s: spec.servers[%zu].port.number",
				 conf->gws[g]->r.label, i);
			return true;
		}
	return false;
}

uint32_t ism_conf_max_connections(const struct ism_conf *conf, int *line, int *col,
				  const char **res)
{
	static const char *const path[] = {"spec", "limits", "maxConnectionsPerWorker"};
	const struct ism_node *n = conf->app.r.at;

	for (size_t i = 0; i < sizeof(path) / sizeof(path[0]) && n != NULL; i++)
		n = n->kind == ISM_NODE_MAP ? ism_node_get(n, path[i], NULL) : NULL;
	if (n == NULL)
		return 0;
	*line = n->line;
	*col = n->col;
	*res = conf->app.r.label;
	return conf->app.limits.max_connections;
}

void ism_conf_free(struct ism_conf *conf)
{
	if (conf == NULL)
		return;
	ism_pool_free(&conf->pool);
	ism_strmap_free(&conf->files_ix);
	free(conf->files);
	free(conf);
}
