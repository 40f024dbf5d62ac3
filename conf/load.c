/* Loading: file to tree to model, then the cross-reference checks between
 * resources (gateways named by VirtualServices, subsets, service ports). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "conf/model.h"

/* The appliance file is small; the bound keeps a wrong path (a device, a huge
 * log) from being read whole. */
#define MAX_FILE (16u << 20)

const struct ism_cm_se *ism_model_find_se(const struct ism_conf *c, const char *host)
{
	for (size_t i = 0; i < c->n_ses; i++)
		for (size_t j = 0; j < c->ses[i]->n_hosts; j++)
			if (strcmp(c->ses[i]->hosts[j], host) == 0)
				return c->ses[i];
	return NULL;
}

const struct ism_cm_dr *ism_model_find_dr(const struct ism_conf *c, const char *host)
{
	for (size_t i = 0; i < c->n_drs; i++)
		if (c->drs[i]->host != NULL && strcmp(c->drs[i]->host, host) == 0)
			return c->drs[i];
	return NULL;
}

const struct ism_cm_subset *ism_model_find_subset(const struct ism_cm_dr *dr, const char *name)
{
	for (size_t i = 0; dr != NULL && i < dr->n_subsets; i++)
		if (strcmp(dr->subsets[i].name, name) == 0)
			return &dr->subsets[i];
	return NULL;
}

static const struct ism_cm_port_tp *port_tp(const struct ism_cm_policy *p, uint32_t port)
{
	for (size_t i = 0; port != 0 && i < p->n_ports; i++)
		if (p->ports[i].port == port)
			return &p->ports[i];
	return NULL;
}

void ism_model_policy(const struct ism_cm_dr *dr, const struct ism_cm_subset *s, uint32_t port,
		      struct ism_cm_tp *out)
{
	const struct ism_cm_port_tp *pt;

	memset(out, 0, sizeof(*out));
	if (dr != NULL) {
		*out = dr->policy.tp;
		pt = port_tp(&dr->policy, port);
		if (pt != NULL)
			*out = pt->tp;
	}
	if (s == NULL)
		return;
	if (s->policy.tp.lb.set)
		out->lb = s->policy.tp.lb;
	if (s->policy.tp.pool.set)
		out->pool = s->policy.tp.pool;
	if (s->policy.tp.od.set)
		out->od = s->policy.tp.od;
	if (s->policy.tp.tls.set)
		out->tls = s->policy.tp.tls;
	pt = port_tp(&s->policy, port);
	if (pt != NULL)
		*out = pt->tp;
}

bool ism_model_labels_include(const struct ism_cm_label *have, size_t n_have,
			      const struct ism_cm_label *want, size_t n_want)
{
	for (size_t i = 0; i < n_want; i++) {
		bool found = false;

		for (size_t j = 0; j < n_have && !found; j++)
			found = strcmp(have[j].key, want[i].key) == 0 &&
				strcmp(have[j].value, want[i].value) == 0;
		if (!found)
			return false;
	}
	return true;
}

/* "*.example.com" matches "a.example.com" and "*.a.example.com", not "example.com". */
static bool wildcard_covers(const char *pat, const char *h)
{
	size_t pl, hl;

	if (strcmp(pat, "*") == 0)
		return true;
	if (pat[0] != '*')
		return strcmp(pat, h) == 0;
	pl = strlen(pat) - 1; /* ".example.com" */
	hl = strlen(h);
	if (hl <= pl)
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
	if (wildcard_covers(s->dns, h)) {
		*domain = h;
		return true;
	}
	if (h[0] == '*' && wildcard_covers(h, s->dns)) {
		*domain = s->dns;
		return true;
	}
	return false;
}

static const struct ism_cm_gw *find_gw(const struct ism_conf *c, const char *nsname)
{
	char buf[512];

	for (size_t i = 0; i < c->n_gws; i++) {
		snprintf(buf, sizeof(buf), "%s/%s", c->gws[i]->r.ns, c->gws[i]->r.name);
		if (strcmp(buf, nsname) == 0)
			return c->gws[i];
	}
	return NULL;
}

static void set_res(struct ism_vctx *v, const struct ism_cm_res *r)
{
	v->res = r->label;
	ism_v_pop(v, 0);
}

static void xref_dest(struct ism_vctx *v, const struct ism_cm_dest *cd)
{
	struct ism_cm_dest *d = (struct ism_cm_dest *)cd;
	const struct ism_cm_se *se;
	size_t old;

	if (d->host == NULL)
		return;
	if (d->subset != NULL &&
	    ism_model_find_subset(ism_model_find_dr(v->conf, d->host), d->subset) == NULL) {
		old = ism_v_push(v, ".destination.subset");
		if (ism_model_find_dr(v->conf, d->host) == NULL)
			ism_v_err(v, d->subset_at,
				  "unknown subset \"%s\": no DestinationRule for host %s",
				  d->subset, d->host);
		else
			ism_v_err(v, d->subset_at,
				  "unknown subset \"%s\": the DestinationRule for host %s does "
				  "not define it",
				  d->subset, d->host);
		ism_v_pop(v, old);
	}
	se = ism_model_find_se(v->conf, d->host);
	d->se = se;
	d->svc_port = (uint16_t)d->port;
	if (se == NULL) {
		old = ism_v_push(v, ".destination.host");
		ism_v_warn(v, d->host_at,
			   "no ServiceEntry for host %s: its cluster has no endpoints (503)",
			   d->host);
		ism_v_pop(v, old);
		return;
	}
	if (d->port != 0) {
		for (size_t i = 0; i < se->n_ports; i++)
			if (se->ports[i].number == d->port)
				return;
		old = ism_v_push(v, ".destination.port.number");
		ism_v_err(v, d->port_at, "port %u is not a port of %s", d->port, se->r.label);
		ism_v_pop(v, old);
		return;
	}
	if (se->n_ports == 1) {
		d->svc_port = (uint16_t)se->ports[0].number;
		return;
	}
	if (se->n_ports > 1) {
		old = ism_v_push(v, ".destination");
		ism_v_err(v,
			  d->at->kind == ISM_NODE_MAP ? ism_node_get(d->at, "destination", NULL)
						      : d->at,
			  "host %s has %zu ports: set port.number", d->host, se->n_ports);
		ism_v_pop(v, old);
	}
}

static void xref_vs(struct ism_vctx *v, const struct ism_cm_vs *vs)
{
	size_t bound = 0, old;

	set_res(v, &vs->r);
	for (size_t i = 0; i < vs->n_gateways; i++) {
		if (find_gw(v->conf, vs->gateways[i]) != NULL) {
			bound++;
			continue;
		}
		old = ism_v_push(v, "spec.gateways[%zu]", i);
		ism_v_err(v, vs->gateway_at[i], "no Gateway %s in this file", vs->gateways[i]);
		ism_v_pop(v, old);
	}
	if (bound == 0 && vs->n_gateways == 0)
		ism_v_warn(v, vs->r.at,
			   "bound to the mesh only: no gateway of this appliance uses it");
	for (size_t i = 0; i < vs->n_routes; i++) {
		const struct ism_cm_route *r = &vs->routes[i];

		for (size_t j = 0; j < r->n_dest; j++) {
			old = ism_v_push(v, "spec.http[%zu].route[%zu]", i, j);
			xref_dest(v, &r->dest[j]);
			ism_v_pop(v, old);
		}
	}
}

static size_t n_of_kind(const struct ism_conf *c, int kind)
{
	const size_t n[] = {c->n_gws, c->n_vss, c->n_drs, c->n_ses, c->n_pas};

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
	default:
		return &c->pas[i]->r;
	}
}

static void xref_unique(struct ism_vctx *v)
{
	struct ism_conf *c = v->conf;

	/* Resources of one kind must have distinct namespace/name; the label
	 * "<Kind> <ns>/<name>" says exactly that. */
	for (int kind = 0; kind < 5; kind++) {
		for (size_t i = 0; i < n_of_kind(c, kind); i++) {
			const struct ism_cm_res *a = res_of_kind(c, kind, i);

			for (size_t j = 0; j < i; j++) {
				const struct ism_cm_res *b = res_of_kind(c, kind, j);

				if (strcmp(a->label, b->label) != 0)
					continue;
				set_res(v, a);
				ism_v_push(v, "metadata.name");
				ism_v_err(v, a->at, "defined twice (first at line %d)",
					  b->at->line);
				break;
			}
		}
	}
	for (size_t i = 0; i < c->n_drs; i++) {
		const struct ism_cm_dr *dr = c->drs[i];

		if (dr->host == NULL)
			continue;
		for (size_t j = 0; j < i; j++) {
			if (c->drs[j]->host == NULL || strcmp(c->drs[j]->host, dr->host) != 0)
				continue;
			set_res(v, &dr->r);
			ism_v_push(v, "spec.host");
			ism_v_err(v, dr->host_at, "%s already applies to host %s",
				  c->drs[j]->r.label, dr->host);
			break;
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

static void xref_hcs(struct ism_vctx *v)
{
	const struct ism_cm_appliance *a = &v->conf->app;

	set_res(v, &a->r);
	for (size_t i = 0; i < a->n_hcs; i++) {
		const struct ism_cm_hc *h = &a->hcs[i];
		const struct ism_cm_se *se;
		size_t old = ism_v_push(v, "spec.healthChecks[%zu]", i);

		if (h->host == NULL)
			goto next;
		for (size_t j = 0; j < i; j++) {
			const struct ism_cm_hc *o = &a->hcs[j];

			if (o->host != NULL && strcmp(o->host, h->host) == 0 &&
			    (o->port == h->port || o->port == 0 || h->port == 0)) {
				ism_v_err(v, h->at, "healthChecks[%zu] already covers host %s", j,
					  h->host);
				goto next;
			}
		}
		se = ism_model_find_se(v->conf, h->host);
		if (se == NULL) {
			ism_v_warn(v, h->at, "no ServiceEntry for host %s", h->host);
		} else if (h->port != 0) {
			bool found = false;

			for (size_t p = 0; p < se->n_ports; p++)
				found = found || se->ports[p].number == h->port;
			if (!found)
				ism_v_err(v, h->at, "port %u is not a port of %s", h->port,
					  se->r.label);
		}
	next:
		ism_v_pop(v, old);
	}
}

/* Istio applies failover and failoverPriority only with outlierDetection:
 * without it every endpoint stays at priority 0. Warns once per field, for
 * the first (subset, port) whose merged policy has it without detection. */
static void warn_failover(struct ism_vctx *v, const struct ism_cm_dr *dr,
			  const struct ism_cm_subset *s, uint32_t port,
			  const struct ism_node **done, size_t *n_done)
{
	struct ism_cm_tp tp;
	const struct ism_cm_llb *l;

	ism_model_policy(dr, s, port, &tp);
	l = &tp.lb.llb;
	if (!l->set || !l->enabled || l->fo_at == NULL || tp.od.set)
		return;
	for (size_t i = 0; i < *n_done; i++)
		if (done[i] == l->fo_at)
			return;
	done[(*n_done)++] = l->fo_at;
	ism_v_pop(v, 0);
	ism_v_push(v, "%s", l->fo_path ? l->fo_path : "");
	ism_v_warn(v, l->fo_at, "failover requires outlierDetection; it has no effect");
	ism_v_pop(v, 0);
}

static void xref_dr(struct ism_vctx *v, const struct ism_cm_dr *dr)
{
	/* Every place a failover field can be written: the rule, its subsets, and
	 * their port-level settings. */
	size_t cap = 1 + dr->policy.n_ports, n_done = 0;
	const struct ism_node **done;

	for (size_t i = 0; i < dr->n_subsets; i++)
		cap += 1 + dr->subsets[i].policy.n_ports;
	done = calloc(cap, sizeof(*done));
	if (done == NULL) {
		v->nomem = 1;
		return;
	}
	set_res(v, &dr->r);
	warn_failover(v, dr, NULL, 0, done, &n_done);
	for (size_t p = 0; p < dr->policy.n_ports; p++)
		warn_failover(v, dr, NULL, dr->policy.ports[p].port, done, &n_done);
	for (size_t i = 0; i < dr->n_subsets; i++) {
		const struct ism_cm_subset *s = &dr->subsets[i];

		warn_failover(v, dr, s, 0, done, &n_done);
		for (size_t p = 0; p < dr->policy.n_ports; p++)
			warn_failover(v, dr, s, dr->policy.ports[p].port, done, &n_done);
		for (size_t p = 0; p < s->policy.n_ports; p++)
			warn_failover(v, dr, s, s->policy.ports[p].port, done, &n_done);
	}
	free(done);
}

void ism_model_xref(struct ism_vctx *v)
{
	xref_unique(v);
	for (size_t i = 0; i < v->conf->n_drs; i++)
		xref_dr(v, v->conf->drs[i]);
	for (size_t i = 0; i < v->conf->n_vss; i++)
		xref_vs(v, v->conf->vss[i]);
	xref_hcs(v);
	ism_tls_xref(v);
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

	fd = open(path, O_RDONLY | O_CLOEXEC);
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

int ism_conf_load(const char *path, struct ism_conf **out, struct ism_diags *d)
{
	char *buf = NULL;
	size_t len = 0;
	int rc;

	*out = NULL;
	rc = ism_conf_read_file(path, MAX_FILE, &buf, &len);
	if (rc < 0) {
		ism_diag_add(d, ISM_DIAG_ERROR, path, 0, 0, "", "cannot read: %s", strerror(-rc));
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
	free(conf->files);
	free(conf);
}
