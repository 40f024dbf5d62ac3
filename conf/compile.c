/* Phase 3: the model becomes an immutable struct ism_table inside an arena.
 *
 * Every string and array is copied into the arena, regexes included (PCRE2
 * with an allocator over the arena), so the table is self-contained and valid
 * in every process that maps the arena at the same address. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "conf/model.h"
#include "conf/re2syntax.h"
#include "health/priority.h"
#include "worker/hash.h"

/* The allocator PCRE2 sees. It lives in the arena because every compiled
 * pattern keeps a pointer to it (pcre2_match_data_create_from_pattern(code,
 * NULL) and pcre2_match without a match context allocate through it). While
 * compiling it hands out arena memory; once the table is finished it is sealed
 * and falls back to malloc/free, so a worker that allocates match data from a
 * pattern never writes into the published generation. */
struct re_alloc {
	struct ism_arena *arena; /* the compiler's arena; not used once sealed */
	const unsigned char *lo, *hi;
	int sealed;
};

static void *re_malloc(PCRE2_SIZE size, void *data)
{
	struct re_alloc *ra = data;

	if (ra->sealed)
		return malloc(size);
	return ism_arena_alloc(ra->arena, size, 16);
}

static void re_free(void *p, void *data)
{
	struct re_alloc *ra = data;
	const unsigned char *u = p;

	/* Arena memory is never freed one by one. */
	if (p == NULL || (u >= ra->lo && u < ra->hi))
		return;
	free(p);
}

struct ckey {
	const char *host;
	const char *subset; /* "" when none */
	uint16_t port;
	const struct ism_cm_se *se;
};

struct lgroup {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	uint16_t port;
	const char *name;
	size_t n_srv, cap_srv;
	const struct ism_cm_gw **gw;
	const struct ism_cm_server **srv;
};

struct cbuild {
	const struct ism_conf *c;
	struct ism_arena *a;
	ism_conf_ep_id_cb ep_id;
	void *ctx;
	struct ism_diags *d;
	struct ism_table *t;
	struct ckey *keys;
	size_t n_keys, cap_keys;
	struct lgroup *groups;
	size_t n_groups, cap_groups;
	const struct ism_route **vs_routes; /* per VirtualService, compiled once */
	const struct ism_hc **hcs;	    /* per health check, compiled once */
	struct re_alloc *ra;
	pcre2_compile_context *cctx;
	int rc;
};

static void *aalloc(struct cbuild *b, size_t n, size_t size, size_t align)
{
	void *p;

	if (n == 0)
		n = 1;
	if (size != 0 && n > SIZE_MAX / size)
		p = NULL;
	else
		p = ism_arena_alloc(b->a, n * size, align);
	if (p == NULL && b->rc == 0)
		b->rc = -ENOMEM;
	return p;
}

#define ANEW(b, n, type) ((type *)aalloc((b), (n), sizeof(type), _Alignof(type)))

/* Copies len bytes of s (NULL: none) into the arena, NUL-terminated. */
static struct ism_str astrn(struct cbuild *b, const char *s, size_t len)
{
	struct ism_str r = {.p = "", .len = 0};
	char *p;

	p = ism_arena_strndup(b->a, s ? s : "", s ? len : 0);
	if (p == NULL) {
		if (b->rc == 0)
			b->rc = -ENOMEM;
		return r;
	}
	r.p = p;
	r.len = (uint32_t)(s ? len : 0);
	return r;
}

static struct ism_str astr(struct cbuild *b, const char *s)
{
	return astrn(b, s, s ? strlen(s) : 0);
}

static struct ism_str acopy(struct cbuild *b, struct ism_str in, uint64_t *fp)
{
	*fp = ism_hash64(in.p ? in.p : "", in.len, *fp ^ in.len);
	return in.len ? astrn(b, in.p, in.len) : (struct ism_str){.p = "", .len = 0};
}

static struct ism_pem apem(struct cbuild *b, struct ism_pem in, uint64_t *fp)
{
	struct ism_pem out = {.path = acopy(b, in.path, fp)};

	out.text = acopy(b, in.text, fp);
	return out;
}

/* A TLS configuration copied into the arena, ISTIO_MUTUAL filled in with the
 * mesh identity, and its fingerprint: what the workers key their contexts by. */
static void copy_tls(struct cbuild *b, const struct ism_tls_conf *in, struct ism_tls_conf *out)
{
	const struct ism_tls_conf *mesh = &b->c->app.mesh;
	const struct ism_tls_conf *src = in->mode == ISM_TLS_ISTIO_MUTUAL ? mesh : in;
	uint64_t fp = in->mode | (uint64_t)in->min_ver << 8 | (uint64_t)in->max_ver << 24 |
		      (uint64_t)in->skip_verify << 40;
	struct ism_str *sans;

	memset(out, 0, sizeof(*out));
	out->mode = in->mode;
	out->min_ver = in->min_ver;
	out->max_ver = in->max_ver;
	out->skip_verify = in->skip_verify;
	out->n_certs = src->n_certs;
	for (uint32_t i = 0; i < src->n_certs; i++) {
		out->certs[i].cert = apem(b, src->certs[i].cert, &fp);
		out->certs[i].key = apem(b, src->certs[i].key, &fp);
	}
	out->ca = apem(b, src->ca, &fp);
	out->crl = apem(b, src->crl, &fp);
	out->ciphers = acopy(b, in->ciphers, &fp);
	out->sni = acopy(b, in->sni, &fp);
	sans = in->n_sans ? ANEW(b, in->n_sans, struct ism_str) : NULL;
	for (uint32_t i = 0; sans != NULL && i < in->n_sans; i++)
		sans[i] = acopy(b, in->sans[i], &fp);
	out->sans = sans;
	out->n_sans = sans ? in->n_sans : 0;
	out->fingerprint = fp;
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons(port);
	else
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

static bool parse_ip(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, s, &((struct sockaddr_in *)ss)->sin_addr) == 1) {
		ss->ss_family = AF_INET;
		*len = sizeof(struct sockaddr_in);
		return true;
	}
	if (inet_pton(AF_INET6, s, &((struct sockaddr_in6 *)ss)->sin6_addr) == 1) {
		ss->ss_family = AF_INET6;
		*len = sizeof(struct sockaddr_in6);
		return true;
	}
	return false;
}

/* --- regexes and matches --- */

static const void *compile_re(struct cbuild *b, const char *src)
{
	size_t off;
	pcre2_code *re;
	int err;

	re = ism_re2_compile(src, strlen(src), b->cctx, &err, &off);
	if (re == NULL && b->rc == 0) {
		/* Validation compiled it already: only the arena can fail here. */
		b->rc = -ENOMEM;
	}
	return re;
}

static void conv_sm(struct cbuild *b, const struct ism_cm_sm *in, bool icase,
		    struct ism_strmatch *out)
{
	out->kind = (uint8_t)in->kind;
	out->s = astr(b, in->s);
	if (in->kind == ISM_SM_REGEX) {
		out->re = compile_re(b, in->s);
		out->re_idx = b->t->n_regexes++;
	} else
		out->ignore_case = icase && (in->kind == ISM_SM_EXACT || in->kind == ISM_SM_PREFIX);
}

static const struct ism_kvmatch *conv_kv(struct cbuild *b, const struct ism_cm_kv *in, size_t n)
{
	struct ism_kvmatch *out = ANEW(b, n, struct ism_kvmatch);

	for (size_t i = 0; out != NULL && i < n; i++) {
		out[i].name = astr(b, in[i].name);
		conv_sm(b, &in[i].m, false, &out[i].m);
	}
	return out;
}

static void conv_match(struct cbuild *b, const struct ism_cm_match *in, struct ism_match *out)
{
	conv_sm(b, &in->uri, in->ignore_uri_case, &out->uri);
	conv_sm(b, &in->scheme, false, &out->scheme);
	conv_sm(b, &in->method, false, &out->method);
	conv_sm(b, &in->authority, false, &out->authority);
	out->port = in->port;
	out->n_headers = (uint32_t)in->n_headers;
	out->headers = conv_kv(b, in->headers, in->n_headers);
	out->n_without_headers = (uint32_t)in->n_without;
	out->without_headers = conv_kv(b, in->without, in->n_without);
	out->n_query = (uint32_t)in->n_query;
	out->query = conv_kv(b, in->query, in->n_query);
}

/* --- clusters --- */

static uint32_t cluster_index(struct cbuild *b, const struct ism_cm_dest *d)
{
	const char *subset = d->subset ? d->subset : "";

	for (size_t i = 0; i < b->n_keys; i++) {
		const struct ckey *k = &b->keys[i];

		if (k->port == d->svc_port && strcmp(k->host, d->host) == 0 &&
		    strcmp(k->subset, subset) == 0)
			return (uint32_t)i;
	}
	if (ism_grow(&b->keys, &b->cap_keys, b->n_keys, sizeof(*b->keys)) < 0) {
		b->rc = -ENOMEM;
		return 0;
	}
	b->keys[b->n_keys] = (struct ckey){d->host, subset, d->svc_port, d->se};
	return (uint32_t)b->n_keys++;
}

static uint16_t endpoint_port(const struct ism_cm_se_ep *e, const struct ism_cm_se_port *sp)
{
	for (size_t i = 0; i < e->n_ports; i++)
		if (strcmp(e->ports[i].name, sp->name) == 0)
			return (uint16_t)e->ports[i].number;
	return (uint16_t)(sp->target ? sp->target : sp->number);
}

/* A cluster's endpoint while the cluster is built. */
struct cep {
	const struct ism_cm_se_ep *e;
	uint16_t port;
	size_t order; /* position in the ServiceEntry: ties keep it */
	size_t loc;   /* index in the cluster's locality list */
	uint32_t prio;
	uint32_t id;
	char text[80];
};

/* A distinct locality of a cluster (Envoy's LocalityLbEndpoints before
 * priorities split it). */
struct cloc {
	const char *name;
	struct ism_locality parsed;
	uint64_t orig;	 /* sum of its endpoint weights */
	uint32_t weight; /* as distribute says */
	bool matched;	 /* by an earlier `to` pattern */
	bool hit;	 /* by the pattern at hand */
};

struct cset {
	struct cep *ep;
	size_t n;
	struct cloc *loc;
	size_t n_loc;
	bool distributed; /* group weights come from loc[].weight */
	uint32_t n_prio;
};

static void appliance_locality(const struct ism_conf *c, struct ism_locality *l)
{
	snprintf(l->region, sizeof(l->region), "%s", c->app.region);
	snprintf(l->zone, sizeof(l->zone), "%s", c->app.zone);
	snprintf(l->subzone, sizeof(l->subzone), "%s", c->app.subzone);
}

/* Istio's LocalityMatch: each part of the pattern is "*", absent, or equal. */
static bool locality_match(const struct ism_locality *l, const char *pattern)
{
	struct ism_locality p;

	if (ism_locality_parse(pattern, &p) < 0)
		return false;
	return (strcmp(p.region, "*") == 0 || strcmp(p.region, l->region) == 0) &&
	       (p.zone[0] == '\0' || strcmp(p.zone, "*") == 0 || strcmp(p.zone, l->zone) == 0) &&
	       (p.subzone[0] == '\0' || strcmp(p.subzone, "*") == 0 ||
		strcmp(p.subzone, l->subzone) == 0);
}

/* The endpoints of the ServiceEntry that the subset selects, with their
 * localities. 0 or -ENOMEM. */
static int collect(const struct ckey *k, const struct ism_cm_subset *s, struct cset *cs)
{
	const struct ism_cm_se_port *sp = NULL;
	size_t n_eps = k->se ? k->se->n_eps : 0;

	for (size_t i = 0; k->se != NULL && i < k->se->n_ports; i++)
		if (k->se->ports[i].number == k->port)
			sp = &k->se->ports[i];
	if (sp == NULL)
		return 0;
	cs->ep = calloc(n_eps ? n_eps : 1, sizeof(*cs->ep));
	cs->loc = calloc(n_eps ? n_eps : 1, sizeof(*cs->loc));
	if (cs->ep == NULL || cs->loc == NULL)
		return -ENOMEM;
	for (size_t i = 0; i < n_eps; i++) {
		const struct ism_cm_se_ep *e = &k->se->eps[i];
		struct cep *o = &cs->ep[cs->n];
		size_t l;

		if (s != NULL &&
		    !ism_model_labels_include(e->labels, e->n_labels, s->labels, s->n_labels))
			continue;
		o->e = e;
		o->port = endpoint_port(e, sp);
		o->order = i;
		snprintf(o->text, sizeof(o->text),
			 e->addr.ss_family == AF_INET6 ? "[%s]:%u" : "%s:%u", e->address, o->port);
		for (l = 0; l < cs->n_loc; l++)
			if (strcmp(cs->loc[l].name, e->locality) == 0)
				break;
		if (l == cs->n_loc) {
			cs->loc[l].name = e->locality;
			ism_locality_parse(e->locality, &cs->loc[l].parsed); /* validated */
			cs->n_loc++;
		}
		cs->loc[l].orig += e->weight;
		o->loc = l;
		cs->n++;
	}
	return 0;
}

/* Istio's applyLocalityWeights: the first entry whose `from` matches the
 * appliance applies. Each `to` pattern's weight is split over the localities
 * it matches (and no earlier pattern did) in proportion to their weights,
 * rounded up; localities no pattern matches lose their endpoints. */
static void apply_distribute(const struct ism_conf *c, const struct ism_cm_llb *l, struct cset *cs)
{
	const struct ism_cm_distribute *d = NULL;
	struct ism_locality app;
	size_t kept = 0;

	appliance_locality(c, &app);
	for (size_t i = 0; i < l->n_distribute && d == NULL; i++)
		if (locality_match(&app, l->distribute[i].from))
			d = &l->distribute[i];
	if (d == NULL)
		return;
	cs->distributed = true;
	for (size_t t = 0; t < d->n_to; t++) {
		uint64_t total = 0;

		for (size_t i = 0; i < cs->n_loc; i++) {
			struct cloc *lc = &cs->loc[i];

			lc->hit = !lc->matched && locality_match(&lc->parsed, d->to[t]);
			if (lc->hit)
				total += lc->orig;
		}
		for (size_t i = 0; i < cs->n_loc; i++) {
			if (!cs->loc[i].hit)
				continue;
			cs->loc[i].matched = true;
			cs->loc[i].weight =
			    (uint32_t)((cs->loc[i].orig * d->weight[t] + total - 1) / total);
		}
	}
	for (size_t i = 0; i < cs->n; i++)
		if (cs->loc[cs->ep[i].loc].matched)
			cs->ep[kept++] = cs->ep[i];
	cs->n = kept;
}

/* The part of a locality a topology label names; NULL for any other label. */
static const char *topology_part(const struct ism_locality *l, const char *k, size_t kl)
{
	const struct {
		const char *label;
		const char *part;
	} parts[] = {
	    {"topology.kubernetes.io/region", l->region},
	    {"topology.kubernetes.io/zone", l->zone},
	    {"topology.istio.io/subzone", l->subzone},
	};

	for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
		if (strlen(parts[i].label) == kl && strncmp(k, parts[i].label, kl) == 0)
			return parts[i].part;
	return NULL;
}

/* A label's value; "" when absent, as Go's map lookup gives. */
static const char *label_value(const struct ism_cm_label *l, size_t n, const char *k, size_t kl)
{
	for (size_t i = 0; i < n; i++)
		if (strlen(l[i].key) == kl && strncmp(l[i].key, k, kl) == 0)
			return l[i].value;
	return "";
}

/* Istio's failoverPriority: does endpoint e agree with the appliance on entry s? */
static bool fprio_match(const struct ism_conf *c, const struct ism_locality *app,
			const struct ism_locality *el, const struct ism_cm_se_ep *e, const char *s)
{
	const char *eq = strchr(s, '=');
	size_t kl = eq ? (size_t)(eq - s) : strlen(s);
	const char *want = eq ? eq + 1 : topology_part(app, s, kl);
	const char *have = topology_part(el, s, kl);

	if (want == NULL)
		want = label_value(c->app.labels, c->app.n_labels, s, kl);
	if (have == NULL)
		have = label_value(e->labels, e->n_labels, s, kl);
	return strcmp(want, have) == 0;
}

/* Istio's applyFailoverPriorities and applyLocalityFailover, then compaction.
 * l is NULL for the mesh default (locality failover, no failover list). */
static void assign_priorities(struct cbuild *b, const struct ism_cm_llb *l, struct cset *cs)
{
	size_t nfo = l ? l->n_failover : 0, nfp = l ? l->n_fprio : 0;
	struct ism_failover *fo = calloc(nfo ? nfo : 1, sizeof(*fo));
	uint32_t *raw = calloc(cs->n ? cs->n : 1, sizeof(*raw));
	int *match = calloc(nfp ? nfp : 1, sizeof(*match));
	struct ism_locality app;

	if (fo == NULL || raw == NULL || match == NULL) {
		b->rc = -ENOMEM;
		goto out_free;
	}
	appliance_locality(b->c, &app);
	for (size_t i = 0; i < nfo; i++)
		fo[i] = (struct ism_failover){l->failover[i].from, l->failover[i].to};
	for (size_t i = 0; i < cs->n; i++) {
		const struct ism_locality *el = &cs->loc[cs->ep[i].loc].parsed;
		uint32_t lp = ism_locality_priority(&app, el, fo, (uint32_t)nfo);
		uint32_t fp;

		if (nfp == 0) {
			raw[i] = lp;
			continue;
		}
		for (size_t j = 0; j < nfp; j++)
			match[j] = fprio_match(b->c, &app, el, cs->ep[i].e, l->fprio[j]);
		fp = ism_failover_priority(match, (uint32_t)nfp);
		/* With failover as well, Istio applies it within each tier. */
		raw[i] = nfo ? fp * 5 + lp : fp;
	}
	cs->n_prio = ism_priority_compact(raw, (uint32_t)cs->n);
	if (cs->n_prio > ISM_MAX_PRIORITIES) {
		const struct ism_node *at = l != NULL ? l->fo_at : NULL;

		ism_diag_add(b->d, ISM_DIAG_ERROR, b->c->file, at ? at->line : 0, at ? at->col : 0,
			     "",
			     "the failover settings give %u priority levels; at most %u "
			     "are supported",
			     cs->n_prio, ISM_MAX_PRIORITIES);
		b->rc = -EINVAL;
		goto out_free;
	}
	for (size_t i = 0; i < cs->n; i++)
		cs->ep[i].prio = raw[i];
out_free:
	free(match);
	free(raw);
	free(fo);
}

/* Envoy's order: by priority, then locality; ties keep the file's order. */
static int cep_cmp(const void *pa, const void *pb, void *ctx)
{
	const struct cep *a = pa, *b = pb;
	const struct cloc *locs = ctx;
	int c;

	if (a->prio != b->prio)
		return a->prio < b->prio ? -1 : 1;
	c = strcmp(locs[a->loc].name, locs[b->loc].name);
	if (c != 0)
		return c;
	return a->order < b->order ? -1 : a->order > b->order;
}

/* Endpoint ids, asked in the ServiceEntry's order. */
static void assign_ids(struct cbuild *b, const struct ckey *k, const struct ism_cluster *cl,
		       struct cset *cs)
{
	for (size_t i = 0; i < cs->n && b->rc == 0; i++) {
		char key[600];
		int rc;

		snprintf(key, sizeof(key), "%s|%s", k->host, cs->ep[i].text);
		rc = b->ep_id(b->ctx, key, cl->hc != NULL, &cs->ep[i].id);
		if (rc < 0) {
			ism_diag_add(b->d, ISM_DIAG_ERROR, b->c->file, 0, 0, "",
				     "cannot assign an id to endpoint %s: %s", key, strerror(-rc));
			b->rc = rc;
		}
	}
}

/* The sorted endpoints and their groups (one per priority and locality) into
 * the arena. */
static void emit_endpoints(struct cbuild *b, const struct cset *cs, struct ism_cluster *cl)
{
	struct ism_endpoint *eps = ANEW(b, cs->n, struct ism_endpoint);
	struct ism_lgroup *gs = ANEW(b, cs->n, struct ism_lgroup);
	uint32_t ng = 0;

	if (eps == NULL || gs == NULL)
		return;
	for (size_t i = 0; i < cs->n; i++) {
		const struct cep *c = &cs->ep[i];
		const struct cloc *lc = &cs->loc[c->loc];
		struct ism_endpoint *o = &eps[i];
		struct ism_lgroup *g = ng ? &gs[ng - 1] : NULL;

		if (g == NULL || g->priority != c->prio || strcmp(g->locality.p, lc->name) != 0) {
			g = &gs[ng++];
			g->locality = astr(b, lc->name);
			g->priority = (uint8_t)c->prio;
			g->first = (uint32_t)i;
			g->weight = cs->distributed ? lc->weight : 0;
		}
		g->count++;
		if (!cs->distributed)
			g->weight = g->weight > UINT32_MAX - c->e->weight
					? UINT32_MAX
					: g->weight + c->e->weight;
		o->id = c->id;
		o->addr = c->e->addr;
		o->addrlen = c->e->addrlen;
		set_port(&o->addr, c->port);
		o->addr_text = astr(b, c->text);
		o->locality = g->locality;
		o->weight = c->e->weight;
		o->priority = (uint8_t)c->prio;
		o->group = ng - 1;
	}
	cl->endpoints = eps;
	cl->n_endpoints = (uint32_t)cs->n;
	cl->groups = gs;
	cl->n_groups = ng;
	cl->n_priorities = (uint8_t)(cs->n_prio ? cs->n_prio : 1);
}

/* Endpoints, priorities and locality groups of a cluster (traffic-semantics.md
 * section 2). Failover needs outlier detection, as in Istio; distribute
 * does not. */
static void fill_endpoints(struct cbuild *b, const struct ckey *k, const struct ism_cm_subset *s,
			   const struct ism_cm_tp *tp, struct ism_cluster *cl)
{
	const struct ism_cm_llb *l = tp->lb.set && tp->lb.llb.set ? &tp->lb.llb : NULL;
	bool enabled = l == NULL || l->enabled;
	bool failover = enabled && tp->od.set;
	struct cset cs = {0};

	if (collect(k, s, &cs) < 0) {
		b->rc = -ENOMEM;
		goto out_free;
	}
	if (enabled && l != NULL && l->n_distribute > 0)
		apply_distribute(b->c, l, &cs);
	else if (failover)
		assign_priorities(b, l, &cs);
	cl->locality_weighted =
	    enabled && l != NULL &&
	    (l->n_distribute > 0 || (failover && (l->n_failover > 0 || l->n_fprio > 0)));
	if (b->rc == 0)
		assign_ids(b, k, cl, &cs);
	if (b->rc < 0)
		goto out_free;
	if (cs.n > 1)
		qsort_r(cs.ep, cs.n, sizeof(*cs.ep), cep_cmp, cs.loc);
	emit_endpoints(b, &cs, cl);
out_free:
	free(cs.loc);
	free(cs.ep);
}

/* The consistent-hash table over the cluster's endpoints, keyed by
 * "address:port" and weighted by the endpoint weights. */
static int build_ring(struct cbuild *b, const char *const *keys, const uint32_t *w,
		      struct ism_cluster *cl)
{
	uint32_t n = cl->n_endpoints, cap = cl->hash.ring_size + n;
	uint64_t *points = NULL;
	uint32_t *owners = NULL;
	int rc;

	/* The builder may place more points than the minimum: grow until they fit. */
	for (;;) {
		points = malloc((size_t)cap * sizeof(*points));
		owners = malloc((size_t)cap * sizeof(*owners));
		if (points == NULL || owners == NULL) {
			rc = -ENOMEM;
			break;
		}
		rc = ism_ring_build(keys, w, n, cl->hash.ring_size, points, owners, cap);
		if (rc != -ENOSPC || cap >= (1u << 24))
			break;
		free(points);
		free(owners);
		cap *= 2;
	}
	if (rc > 0) {
		uint64_t *ap = ANEW(b, (size_t)rc, uint64_t);
		uint32_t *ao = ANEW(b, (size_t)rc, uint32_t);

		if (ap != NULL && ao != NULL) {
			memcpy(ap, points, (size_t)rc * sizeof(*ap));
			memcpy(ao, owners, (size_t)rc * sizeof(*ao));
			cl->hash.ring_hashes = ap;
			cl->hash.table = ao;
			cl->hash.table_len = (uint32_t)rc;
		}
		rc = 0;
	}
	free(points);
	free(owners);
	return rc;
}

static void build_hash(struct cbuild *b, const struct ism_cm_hash *h, struct ism_cluster *cl)
{
	uint32_t n = cl->n_endpoints;
	const char **keys;
	uint32_t *w;
	int rc = 0;

	cl->hash.on = h->on;
	cl->hash.name = astr(b, h->name);
	cl->hash.cookie_path = astr(b, h->cookie_path);
	cl->hash.cookie_ttl_ms = h->cookie_ttl_ms;
	cl->hash.ring_size = h->ring_size;
	cl->hash.table_size = h->table_size;
	if (n == 0 || b->rc < 0)
		return;
	keys = calloc(n, sizeof(*keys));
	w = calloc(n, sizeof(*w));
	if (keys == NULL || w == NULL) {
		rc = -ENOMEM;
		goto out_free;
	}
	for (uint32_t i = 0; i < n; i++) {
		keys[i] = cl->endpoints[i].addr_text.p;
		w[i] = cl->endpoints[i].weight;
	}
	if (h->lb == ISM_LB_MAGLEV) {
		uint32_t *table = ANEW(b, h->table_size, uint32_t);

		if (table == NULL)
			goto out_free;
		rc = ism_maglev_build(keys, w, n, h->table_size, table);
		cl->hash.table = table;
		cl->hash.table_len = h->table_size;
	} else {
		rc = build_ring(b, keys, w, cl);
	}
out_free:
	if (rc < 0 && b->rc == 0) {
		if (rc != -ENOMEM)
			ism_diag_add(b->d, ISM_DIAG_ERROR, b->c->file, 0, 0, "",
				     "%s: cannot build the consistent-hash table: %s", cl->name.p,
				     strerror(-rc));
		b->rc = rc;
	}
	free(w);
	free(keys);
}

static const struct ism_hc *compile_hc(struct cbuild *b, size_t i, const char *svc_host)
{
	const struct ism_cm_hc *h = &b->c->app.hcs[i];
	struct ism_hc *o;
	uint16_t(*st)[2];

	if (b->hcs[i] != NULL)
		return b->hcs[i];
	o = ANEW(b, 1, struct ism_hc);
	st = aalloc(b, h->n_ranges, sizeof(*st), _Alignof(uint16_t));
	if (o == NULL || st == NULL)
		return NULL;
	o->type = h->type;
	o->path = astr(b, h->path);
	o->host = astr(b, h->host_header ? h->host_header : svc_host);
	o->interval_ms = h->interval_ms;
	o->timeout_ms = h->timeout_ms;
	o->healthy_threshold = h->healthy;
	o->unhealthy_threshold = h->unhealthy;
	memcpy(st, h->ranges, h->n_ranges * sizeof(*st));
	o->statuses = (const uint16_t(*)[2])st;
	o->n_statuses = (uint32_t)h->n_ranges;
	o->unhealthy_interval_ms = h->unhealthy_interval_ms;
	o->unhealthy_edge_interval_ms = h->unhealthy_edge_interval_ms;
	o->healthy_edge_interval_ms = h->healthy_edge_interval_ms;
	o->initial_jitter_ms = h->initial_jitter_ms;
	o->interval_jitter_ms = h->interval_jitter_ms;
	o->interval_jitter_percent = h->interval_jitter_percent;
	b->hcs[i] = o;
	return o;
}

/* The merged TrafficPolicy's load balancer, pool and outlier detection. */
static void apply_policy(struct cbuild *b, const struct ism_cm_tp *tp, struct ism_cluster *cl)
{
	const struct ism_conf *c = b->c;

	if (tp->lb.has_hash)
		cl->lb = tp->lb.hash.lb;
	else
		cl->lb = tp->lb.has_simple ? tp->lb.simple : ISM_LB_LEAST_REQUEST;
	cl->connect_timeout_ms =
	    tp->pool.has_connect ? tp->pool.connect_ms : c->app.timeouts.upstream_connect_ms;
	cl->idle_timeout_ms = tp->pool.has_idle ? tp->pool.idle_ms : ISM_DEFAULT_POOL_IDLE_MS;
	if (tp->pool.set)
		cl->pool = tp->pool.limits;
	else
		cl->pool = (struct ism_pool_limits){.max_connections = UINT32_MAX,
						    .max_pending = UINT32_MAX,
						    .max_requests_per_conn = 0,
						    .max_retries = UINT32_MAX};
	cl->overprovisioning = ISM_DEFAULT_OVERPROVISIONING;
	if (tp->od.set) {
		struct ism_outlier *od = ANEW(b, 1, struct ism_outlier);

		if (od != NULL)
			*od = tp->od.od;
		cl->od = od;
		/* Istio: healthy_panic_threshold = minHealthPercent (default 0: no panic). */
		cl->panic_threshold = (uint8_t)tp->od.min_health;
	}
}

static void fill_cluster(struct cbuild *b, const struct ckey *k, struct ism_cluster *cl)
{
	const struct ism_conf *c = b->c;
	const struct ism_cm_dr *dr = ism_model_find_dr(c, k->host);
	const struct ism_cm_subset *s = k->subset[0] ? ism_model_find_subset(dr, k->subset) : NULL;
	struct ism_cluster_dyn *dyn;
	struct ism_cm_tp tp;
	char name[600];

	ism_model_policy(dr, s, k->port, &tp);
	snprintf(name, sizeof(name), "outbound|%u|%s|%s", k->port, k->subset, k->host);
	cl->name = astr(b, name);
	cl->host = astr(b, k->host);
	cl->subset = astr(b, k->subset);
	cl->port = k->port;
	apply_policy(b, &tp, cl);
	copy_tls(b, &tp.tls.c, &cl->tls);
	if (cl->tls.mode == ISM_TLS_ISTIO_MUTUAL && cl->tls.sni.len == 0) {
		/* Istio's mesh SNI, the cluster's DNS SRV form (BuildDNSSrvSubsetKey),
		 * which sidecars and east-west gateways expect; a DestinationRule sni
		 * wins. Not in the fingerprint: the context is the same for all. */
		snprintf(name, sizeof(name), "outbound_.%u_.%s_.%s", k->port, k->subset, k->host);
		cl->tls.sni = astr(b, name);
	}
	for (size_t i = 0; i < c->app.n_hcs; i++) {
		const struct ism_cm_hc *h = &c->app.hcs[i];

		if (strcmp(h->host, k->host) == 0 && (h->port == 0 || h->port == k->port)) {
			cl->hc = compile_hc(b, i, k->host);
			break;
		}
	}
	fill_endpoints(b, k, s, &tp, cl);
	if (tp.lb.has_hash)
		build_hash(b, &tp.lb.hash, cl);
	else
		cl->hash.on = ISM_HASH_NONE;
	dyn = ANEW(b, 1, struct ism_cluster_dyn);
	if (dyn != NULL)
		dyn->eff_weight = ANEW(b, cl->n_groups, uint32_t);
	cl->dyn = dyn;
}

/* --- routes --- */

static void compile_retry(struct cbuild *b, const struct ism_retry *in, struct ism_retry *out)
{
	uint16_t *codes = NULL;

	*out = *in;
	if (in->n_codes > 0) {
		codes = ANEW(b, in->n_codes, uint16_t);
		if (codes != NULL)
			memcpy(codes, in->codes, in->n_codes * sizeof(*codes));
	}
	out->codes = codes;
	out->backoff_base_ms = 25;
}

static const struct ism_route *compile_routes(struct cbuild *b, size_t vi)
{
	const struct ism_cm_vs *vs = b->c->vss[vi];
	struct ism_route *routes;

	if (b->vs_routes[vi] != NULL)
		return b->vs_routes[vi];
	routes = ANEW(b, vs->n_routes, struct ism_route);
	for (size_t i = 0; routes != NULL && i < vs->n_routes; i++) {
		const struct ism_cm_route *r = &vs->routes[i];
		struct ism_route *o = &routes[i];
		struct ism_match *m = ANEW(b, r->n_match, struct ism_match);
		struct ism_dest *d = ANEW(b, r->n_dest, struct ism_dest);
		uint64_t total = 0;
		char name[512];

		if (m == NULL || d == NULL)
			return NULL;
		if (r->name != NULL)
			snprintf(name, sizeof(name), "%s", r->name);
		else
			snprintf(name, sizeof(name), "%s/%s#%zu", vs->r.ns, vs->r.name, i);
		o->name = astr(b, name);
		for (size_t j = 0; j < r->n_match; j++)
			conv_match(b, &r->match[j], &m[j]);
		for (size_t j = 0; j < r->n_dest; j++) {
			d[j].cluster = cluster_index(b, &r->dest[j]);
			d[j].weight = r->dest[j].weight;
			total += d[j].weight;
		}
		o->n_match = (uint32_t)r->n_match;
		o->match = m;
		o->n_dest = (uint32_t)r->n_dest;
		o->dest = d;
		o->total_weight = total > UINT32_MAX ? UINT32_MAX : (uint32_t)total;
		o->timeout_ms = r->timeout_ms;
		compile_retry(b, &r->retry, &o->retry);
	}
	b->vs_routes[vi] = routes;
	return routes;
}

/* --- listeners --- */

static void group_servers(struct cbuild *b)
{
	const struct ism_conf *c = b->c;

	for (size_t g = 0; g < c->n_gws; g++) {
		for (size_t s = 0; s < c->gws[g]->n_servers; s++) {
			const struct ism_cm_server *srv = &c->gws[g]->servers[s];
			struct sockaddr_storage ss;
			struct lgroup *lg = NULL;
			socklen_t len;

			if (!parse_ip(srv->bind ? srv->bind : c->app.listen, &ss, &len))
				continue; /* validated already */
			set_port(&ss, srv->port);
			for (size_t i = 0; i < b->n_groups && lg == NULL; i++)
				if (b->groups[i].addrlen == len &&
				    memcmp(&b->groups[i].addr, &ss, len) == 0)
					lg = &b->groups[i];
			if (lg == NULL) {
				if (ism_grow(&b->groups, &b->cap_groups, b->n_groups, sizeof(*lg)) <
				    0)
					goto nomem;
				lg = &b->groups[b->n_groups++];
				memset(lg, 0, sizeof(*lg));
				lg->addr = ss;
				lg->addrlen = len;
				lg->port = srv->port;
				lg->name = srv->port_name;
			}
			if (lg->n_srv == lg->cap_srv) {
				size_t cap = lg->cap_srv;

				if (ism_grow(&lg->gw, &cap, lg->n_srv, sizeof(*lg->gw)) < 0)
					goto nomem;
				cap = lg->cap_srv;
				if (ism_grow(&lg->srv, &cap, lg->n_srv, sizeof(*lg->srv)) < 0)
					goto nomem;
				lg->cap_srv = cap;
			}
			lg->gw[lg->n_srv] = c->gws[g];
			lg->srv[lg->n_srv++] = srv;
		}
	}
	return;
nomem:
	b->rc = -ENOMEM;
}

static bool vs_uses_gw(const struct ism_cm_vs *vs, const struct ism_cm_gw *gw)
{
	char buf[512];

	snprintf(buf, sizeof(buf), "%s/%s", gw->r.ns, gw->r.name);
	for (size_t i = 0; i < vs->n_gateways; i++)
		if (strcmp(vs->gateways[i], buf) == 0)
			return true;
	return false;
}

/* Which servers of a listener group a set of vhosts is built from. */
struct srv_filter {
	size_t only;  /* this server only; SIZE_MAX: any */
	int redirect; /* servers with (1) or without (0) httpsRedirect */
};

static bool srv_selected(const struct lgroup *lg, const struct srv_filter *f, size_t s)
{
	return (f->only == SIZE_MAX || f->only == s) &&
	       (int)lg->srv[s]->tls.https_redirect == f->redirect;
}

/* The domains VirtualService vs serves on listener group lg; count returned. */
static size_t vs_domains(const struct lgroup *lg, const struct srv_filter *f,
			 const struct ism_cm_vs *vs, const char **out, size_t cap)
{
	size_t n = 0;

	for (size_t s = 0; s < lg->n_srv; s++) {
		if (!srv_selected(lg, f, s) || !vs_uses_gw(vs, lg->gw[s]))
			continue;
		for (size_t h = 0; h < vs->n_hosts; h++) {
			for (size_t p = 0; p < lg->srv[s]->n_hosts; p++) {
				const char *dom;
				bool dup = false;

				if (!ism_model_bind_host(&lg->srv[s]->hosts[p], lg->gw[s]->r.ns,
							 vs->hosts[h], vs->r.ns, &dom))
					continue;
				for (size_t i = 0; i < n && !dup; i++)
					dup = strcmp(out[i], dom) == 0;
				if (!dup && n < cap)
					out[n++] = dom;
			}
		}
	}
	return n;
}

/* Appends to vh the vhosts the servers f selects give; returns their count. */
static uint32_t build_vhosts(struct cbuild *b, const struct lgroup *lg, const struct srv_filter *f,
			     struct ism_vhost *vh)
{
	const struct ism_conf *c = b->c;
	uint32_t nv = 0;

	for (size_t i = 0; i < c->n_vss && b->rc == 0; i++) {
		const struct ism_cm_vs *vs = c->vss[i];
		size_t cap = 0, n;
		const char **doms;
		struct ism_str *ds;
		char vname[512];

		for (size_t s = 0; s < lg->n_srv; s++)
			cap += vs->n_hosts * lg->srv[s]->n_hosts;
		if (cap == 0)
			continue;
		doms = calloc(cap, sizeof(*doms));
		if (doms == NULL) {
			b->rc = -ENOMEM;
			return nv;
		}
		n = vs_domains(lg, f, vs, doms, cap);
		ds = n ? ANEW(b, n, struct ism_str) : NULL;
		for (size_t j = 0; ds != NULL && j < n; j++)
			ds[j] = astr(b, doms[j]);
		free(doms);
		if (n == 0 || ds == NULL)
			continue;
		snprintf(vname, sizeof(vname), "%s/%s", vs->r.ns, vs->r.name);
		vh[nv].name = astr(b, vname);
		vh[nv].https_redirect = (uint8_t)f->redirect;
		vh[nv].n_domains = (uint32_t)n;
		vh[nv].domains = ds;
		vh[nv].n_routes = (uint32_t)vs->n_routes;
		vh[nv].routes = compile_routes(b, i);
		nv++;
	}
	return nv;
}

/* A Gateway server's name in the table: its own, else "<ns>/<gateway>#<index>". */
static struct ism_str server_name(struct cbuild *b, const struct lgroup *lg, size_t s)
{
	const struct ism_cm_server *srv = lg->srv[s];
	char name[600];

	if (srv->name != NULL)
		return astr(b, srv->name);
	snprintf(name, sizeof(name), "%s/%s#%zu", lg->gw[s]->r.ns, lg->gw[s]->r.name,
		 (size_t)(srv - lg->gw[s]->servers));
	return astr(b, name);
}

/* One vhost per server with httpsRedirect, for all its hosts: every host the
 * server names is redirected, whether a VirtualService binds it or not (Istio
 * adds a virtual host with require_tls for each such host). Returns the count. */
static uint32_t build_redirect_vhosts(struct cbuild *b, const struct lgroup *lg,
				      struct ism_vhost *vh)
{
	uint32_t nv = 0;

	for (size_t s = 0; s < lg->n_srv && b->rc == 0; s++) {
		const struct ism_cm_server *srv = lg->srv[s];
		struct ism_str *ds;

		if (!srv->tls.https_redirect || srv->n_hosts == 0)
			continue;
		ds = ANEW(b, srv->n_hosts, struct ism_str);
		if (ds == NULL)
			return nv;
		for (size_t h = 0; h < srv->n_hosts; h++)
			ds[h] = astr(b, srv->hosts[h].dns);
		vh[nv] = (struct ism_vhost){.name = server_name(b, lg, s),
					    .https_redirect = 1,
					    .n_domains = (uint32_t)srv->n_hosts,
					    .domains = ds};
		nv++;
	}
	return nv;
}

/* An HTTPS server of a listener: its SNI names, certificates and own routes. */
static void build_tls_server(struct cbuild *b, const struct lgroup *lg, size_t s,
			     struct ism_tls_server *ts)
{
	const struct ism_cm_server *srv = lg->srv[s];
	const struct srv_filter f = {.only = s, .redirect = 0};
	struct ism_str *sni = ANEW(b, srv->n_hosts, struct ism_str);
	struct ism_vhost *vh = ANEW(b, b->c->n_vss, struct ism_vhost);

	if (sni == NULL || vh == NULL)
		return;
	ts->name = server_name(b, lg, s);
	for (size_t h = 0; h < srv->n_hosts; h++)
		sni[h] = astr(b, srv->hosts[h].dns);
	ts->sni = sni;
	ts->n_sni = (uint32_t)srv->n_hosts;
	copy_tls(b, &srv->tls.c, &ts->tls);
	ts->vhosts = vh;
	ts->n_vhosts = build_vhosts(b, lg, &f, vh);
}

static void build_listener(struct cbuild *b, const struct lgroup *lg, struct ism_listener *l)
{
	const struct ism_conf *c = b->c;
	struct ism_vhost *vh;
	char name[16];

	snprintf(name, sizeof(name), "%u", lg->port);
	l->name = astr(b, lg->name ? lg->name : name);
	l->addr = lg->addr;
	l->addrlen = lg->addrlen;
	l->port = lg->port;
	for (size_t i = 0; i < c->app.n_pp_ports; i++)
		if (c->app.pp_ports[i] == lg->port)
			l->proxy_protocol = 1;
	if (lg->srv[0]->https) {
		/* Every server of the port is HTTPS (the loader checked it). */
		struct ism_tls_server *ts = ANEW(b, lg->n_srv, struct ism_tls_server);

		for (size_t s = 0; ts != NULL && s < lg->n_srv && b->rc == 0; s++)
			build_tls_server(b, lg, s, &ts[s]);
		l->tls = ts;
		l->n_tls = ts ? (uint32_t)lg->n_srv : 0;
		return;
	}
	l->peer_mtls = ism_tls_peer_mtls(c, lg->port);
	vh = ANEW(b, 2 * c->n_vss + lg->n_srv, struct ism_vhost);
	if (vh == NULL)
		return;
	l->vhosts = vh;
	/* The redirecting vhosts first: a domain that a server with httpsRedirect
	 * and one without both serve is redirected (the first of equal rank wins),
	 * as Istio sets require_tls on the virtual host they share. */
	for (int redirect = 1; redirect >= 0; redirect--) {
		const struct srv_filter f = {.only = SIZE_MAX, .redirect = redirect};

		l->n_vhosts += build_vhosts(b, lg, &f, vh + l->n_vhosts);
		if (redirect)
			l->n_vhosts += build_redirect_vhosts(b, lg, vh + l->n_vhosts);
	}
}

/* --- the table --- */

/* The access log's settings; the text template's operators were parsed at load. */
static void fill_access_log(struct cbuild *b, struct ism_alog_conf *t,
			    const struct ism_alog_conf *m)
{
	struct ism_alog_op *ops = ANEW(b, m->n_ops, struct ism_alog_op);

	*t = *m;
	t->path = astrn(b, m->path.p, m->path.len);
	t->address = astrn(b, m->address.p, m->address.len);
	t->tag = astrn(b, m->tag.p, m->tag.len);
	for (uint32_t i = 0; ops != NULL && i < m->n_ops; i++) {
		ops[i] = m->ops[i];
		ops[i].lit = astrn(b, m->ops[i].lit.p, m->ops[i].lit.len);
	}
	t->ops = ops;
}

static void fill_appliance(struct cbuild *b, struct ism_table *t)
{
	const struct ism_cm_appliance *a = &b->c->app;

	t->magic = ISM_TABLE_MAGIC;
	t->gen = 0;
	t->name = astr(b, a->r.name);
	t->region = astr(b, a->region);
	t->zone = astr(b, a->zone);
	t->subzone = astr(b, a->subzone);
	t->workers = a->workers;
	t->user = astr(b, a->user);
	t->group = astr(b, a->group);
	t->control_socket = astr(b, a->control_socket);
	t->pid_file = astr(b, a->pid_file);
	fill_access_log(b, &t->access_log, &a->access_log);
	t->admin_addr = a->admin;
	t->admin_addrlen = a->admin_len;
	t->limits = a->limits;
	t->timeouts = a->timeouts;
	t->path_norm = a->path_norm;
	copy_tls(b, &a->mesh, &t->mesh);
}

static int setup_re(struct cbuild *b)
{
	pcre2_general_context *g;

	b->ra = ANEW(b, 1, struct re_alloc);
	if (b->ra == NULL)
		return -ENOMEM;
	b->ra->arena = b->a;
	b->ra->lo = b->a->base;
	b->ra->hi = b->a->base + b->a->size;
	/* Both contexts are allocated from the arena too (a few hundred bytes). */
	g = pcre2_general_context_create(re_malloc, re_free, b->ra);
	if (g == NULL)
		return -ENOMEM;
	b->cctx = pcre2_compile_context_create(g);
	if (b->cctx == NULL)
		return -ENOMEM;
	return 0;
}

static void build(struct cbuild *b)
{
	const struct ism_conf *c = b->c;
	struct ism_listener *ls;
	struct ism_cluster *cls;

	b->t = ANEW(b, 1, struct ism_table);
	if (b->t == NULL)
		return;
	fill_appliance(b, b->t);
	group_servers(b);
	if (b->rc < 0)
		return;
	ls = ANEW(b, b->n_groups, struct ism_listener);
	for (size_t i = 0; ls != NULL && i < b->n_groups && b->rc == 0; i++)
		build_listener(b, &b->groups[i], &ls[i]);
	if (b->rc < 0)
		return;
	b->t->listeners = ls;
	b->t->n_listeners = (uint32_t)b->n_groups;
	cls = ANEW(b, b->n_keys, struct ism_cluster);
	for (size_t i = 0; cls != NULL && i < b->n_keys && b->rc == 0; i++)
		fill_cluster(b, &b->keys[i], &cls[i]);
	b->t->clusters = cls;
	b->t->n_clusters = (uint32_t)b->n_keys;
	(void)c;
}

/* The workers' response counters per listener and per route. */
static void alloc_counters(struct cbuild *b)
{
	struct ism_table *t = b->t;

	for (uint32_t l = 0; l < t->n_listeners && b->rc == 0; l++) {
		struct ism_listener *li = (struct ism_listener *)&t->listeners[l];

		li->stats = ANEW(b, 1, struct ism_counters);
		for (uint32_t set = 0; set < ism_listener_sets(li) && b->rc == 0; set++) {
			uint32_t nv;
			const struct ism_vhost *vh = ism_listener_set(li, set, &nv);

			/* A VirtualService's routes are shared by every vhost it
			 * makes: one counter set each. */
			for (uint32_t v = 0; v < nv && b->rc == 0; v++)
				for (uint32_t r = 0; r < vh[v].n_routes && b->rc == 0; r++)
					if (vh[v].routes[r].stats == NULL)
						((struct ism_route *)&vh[v].routes[r])->stats =
						    ANEW(b, 1, struct ism_counters);
		}
	}
}

int ism_conf_compile(const struct ism_conf *conf, struct ism_arena *arena, ism_conf_ep_id_cb ep_id,
		     void *ctx, const struct ism_table **out, struct ism_diags *d)
{
	struct cbuild b = {.c = conf, .a = arena, .ep_id = ep_id, .ctx = ctx, .d = d};

	*out = NULL;
	b.vs_routes = calloc(conf->n_vss ? conf->n_vss : 1, sizeof(*b.vs_routes));
	b.hcs = calloc(conf->app.n_hcs ? conf->app.n_hcs : 1, sizeof(*b.hcs));
	if (b.vs_routes == NULL || b.hcs == NULL) {
		b.rc = -ENOMEM;
		goto out_free;
	}
	b.rc = setup_re(&b);
	if (b.rc == 0)
		build(&b);
	if (b.ra != NULL)
		b.ra->sealed = 1;
out_free:
	for (size_t i = 0; i < b.n_groups; i++) {
		free(b.groups[i].gw);
		free(b.groups[i].srv);
	}
	free(b.groups);
	free(b.keys);
	free(b.hcs);
	free(b.vs_routes);
	if (b.rc == 0)
		alloc_counters(&b);
	if (b.rc == -ENOMEM)
		ism_diag_add(d, ISM_DIAG_ERROR, conf->file, 0, 0, "",
			     "the route table does not fit in its arena (%zu bytes)", arena->size);
	if (b.rc < 0)
		return b.rc;
	*out = b.t;
	return 0;
}
