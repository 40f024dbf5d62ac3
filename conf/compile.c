/* SPDX-License-Identifier: Apache-2.0 */
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

#include "conf/hashring.h"
#include "conf/hfmt.h"
#include "conf/mirror.h"
#include "conf/model.h"
#include "conf/re2syntax.h"
#include "health/priority.h"
#include "lib/addr.h"
#include "lib/ascii.h"
#include "lib/log.h"
#include "lib/strmap.h"
#include "shm/table.h"

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
	char *id; /* port, subset and host, NUL-separated: the key of key_ix (malloc'd) */
};

struct lgroup {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	uint16_t port;
	const char *name;
	size_t n_srv, cap_srv;
	const struct ism_cm_gw **gw;
	size_t *gwi; /* index of gw[] in conf->gws */
	const struct ism_cm_server **srv;
};

/* The endpoints of a ServiceEntry by label, built the first time a subset of
 * it is collected: label l ("<key>\0<value>" in ix) is on the endpoints
 * eps[at[l] .. at[l + 1]), in file order. */
struct se_labels {
	bool built;
	struct ism_strmap ix;
	char *keys; /* the keys of ix */
	size_t *at;
	uint32_t *eps;
};

struct cbuild {
	const struct ism_conf *c;
	struct ism_arena *a;
	size_t hash_bytes; /* what the consistent-hash rings and tables asked of it */
	ism_conf_ep_id_cb ep_id;
	void *ctx;
	ism_conf_dns_cb dns; /* NULL: no name resolves */
	void *dns_ctx;
	struct ism_diags *d;
	struct ism_table *t;
	uint64_t seed; /* of the maps below */
	struct ckey *keys;
	size_t n_keys, cap_keys;
	struct ism_strmap key_ix; /* ckey.id -> index in keys */
	struct lgroup *groups;
	size_t n_groups, cap_groups;
	const struct ism_route **vs_routes; /* per VirtualService, compiled once */
	/* per VirtualService: 1 + the listener whose counters vs_routes[vi]
	 * holds (0: none yet); the listener build_listener builds */
	uint32_t *vs_routes_at, listener;
	uint16_t port;		    /* the port of that listener */
	const struct ism_cm_vs *vs; /* whose routes are compiled: named by warnings */
	bool quiet;	       /* the route compiled does not apply on the listener: no warning */
	struct l4comp **l4[2]; /* per VirtualService: its tcp, tls routes */
	const struct ism_hc **hcs; /* per health check, compiled once */
	/* The VirtualServices bound to each Gateway, in file order:
	 * vs_of_gw[vs_at[g] .. vs_at[g + 1]) for Gateway g. */
	size_t *vs_at;
	uint32_t *vs_of_gw;
	uint8_t *peer_mtls;	     /* per port: ism_tls_peer_mtls */
	uint8_t *proxy_protocol;     /* per port: 1 when in spec.proxyProtocol.ports */
	struct se_labels *se_labels; /* per ServiceEntry */
	char *scratch;		     /* label_key */
	size_t cap_scratch;
	struct re_alloc *ra;
	pcre2_compile_context *cctx;
	int rc;
};

/* n zeroed objects of size in arena a (NULL: the table's); NULL and b->rc
 * set when it is full. */
static void *malloc_in(struct cbuild *b, struct ism_arena *a, size_t n, size_t size, size_t align)
{
	void *p;

	if (n == 0)
		n = 1;
	if (size != 0 && n > SIZE_MAX / size)
		p = NULL;
	else
		p = ism_arena_alloc(a != NULL ? a : b->a, n * size, align);
	if (p == NULL && b->rc == 0)
		b->rc = -ENOMEM;
	return p;
}

static void *aalloc(struct cbuild *b, size_t n, size_t size, size_t align)
{
	return malloc_in(b, b->a, n, size, align);
}

#define ANEW(b, n, type) ((type *)aalloc((b), (n), sizeof(type), _Alignof(type)))
/* What the workers write after publication: in the arena's mutable part. */
#define MNEW(b, n, type) ((type *)malloc_in((b), (b)->a->mut, (n), sizeof(type), _Alignof(type)))

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

/* struct ism_tls_conf.peer_auth of t. */
static uint64_t peer_auth(const struct ism_tls_conf *t)
{
	const uint8_t head[2] = {t->mode, t->skip_verify};
	uint64_t h = ism_hash64(head, sizeof(head), 0x6973746875730005ull);

	h = ism_hash64(t->ca.text.p, t->ca.text.len, h);
	h = ism_hash64(t->crl.text.p, t->crl.text.len, h);
	for (uint32_t i = 0; i < t->n_sans; i++)
		h = ism_hash64(t->sans[i].p, t->sans[i].len + 1, h); /* with its NUL: a separator */
	return t->n_pins ? ism_hash64(t->pins, t->n_pins * sizeof(*t->pins), h) : h;
}

/* A TLS configuration copied into the arena, ISTIO_MUTUAL filled in with the
 * mesh identity, with the application protocols alpn (enum ism_alpn bits), and
 * its fingerprint: what the workers key their contexts by. */
static void copy_tls(struct cbuild *b, const struct ism_tls_conf *in, uint8_t alpn,
		     struct ism_tls_conf *out)
{
	const struct ism_tls_conf *mesh = &b->c->app.mesh;
	bool istio = in->mode == ISM_TLS_ISTIO_MUTUAL;
	const struct ism_tls_conf *src = istio ? mesh : in;
	uint64_t fp = in->mode | (uint64_t)in->min_ver << 8 | (uint64_t)in->max_ver << 24 |
		      (uint64_t)in->skip_verify << 40 | (uint64_t)in->name_check << 41 |
		      (uint64_t)alpn << 48;
	struct ism_str *sans;
	struct ism_pin *pins;

	memset(out, 0, sizeof(*out));
	out->mode = in->mode;
	out->alpn = alpn;
	out->min_ver = in->min_ver;
	out->max_ver = in->max_ver;
	out->skip_verify = in->skip_verify;
	out->name_check = in->name_check;
	out->n_certs = src->n_certs;
	for (uint32_t i = 0; i < src->n_certs; i++) {
		out->certs[i].cert = apem(b, src->certs[i].cert, &fp);
		out->certs[i].key = apem(b, src->certs[i].key, &fp);
	}
	out->ca = apem(b, src->ca, &fp);
	/* ISTIO_MUTUAL: the server's own caCrl and subjectAltNames apply, as
	 * Istio's BuildListenerTLSContext passes them; its versions, ciphers and
	 * curves do not (applyServerTLSSettings is for the other modes). */
	out->crl = apem(b, istio && in->crl.text.len ? in->crl : src->crl, &fp);
	if (!istio) {
		out->ciphers = acopy(b, in->ciphers, &fp);
		out->curves = acopy(b, in->curves, &fp);
	} else {
		out->min_ver = out->max_ver = 0;
	}
	out->sni = acopy(b, in->sni, &fp);
	sans = in->n_sans ? ANEW(b, in->n_sans, struct ism_str) : NULL;
	for (uint32_t i = 0; sans != NULL && i < in->n_sans; i++)
		sans[i] = acopy(b, in->sans[i], &fp);
	out->sans = sans;
	out->n_sans = sans ? in->n_sans : 0;
	pins = in->n_pins ? ANEW(b, in->n_pins, struct ism_pin) : NULL;
	if (pins != NULL) {
		memcpy(pins, in->pins, in->n_pins * sizeof(*pins));
		fp = ism_hash64(pins, in->n_pins * sizeof(*pins), fp ^ in->n_pins);
		out->pins = pins;
		out->n_pins = in->n_pins;
	}
	out->fingerprint = fp;
	out->peer_auth = peer_auth(out);
}

static void set_port(struct sockaddr_storage *ss, uint16_t port)
{
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons(port);
	else if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
}

/* --- regexes and matches --- */

static const void *compile_re(struct cbuild *b, const char *src, bool anchored)
{
	size_t off;
	pcre2_code *re;
	int err;

	re = ism_re2_compile(src, strlen(src), anchored, b->cctx, &err, &off);
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
		out->re = compile_re(b, in->s, true);
		out->re_idx = b->t->n_regexes++;
	} else
		out->ignore_case = icase;
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
	out->n_claims = (uint32_t)in->n_claims;
	out->claims = conv_kv(b, in->claims, in->n_claims);
	out->n_without_claims = (uint32_t)in->n_without_claims;
	out->without_claims = conv_kv(b, in->without_claims, in->n_without_claims);
	if (in->n_claims + in->n_without_claims > 0)
		b->t->jwt.routes = 1;
}

/* --- clusters --- */

/* The ServiceEntry port of the cluster; NULL when the host has no ServiceEntry
 * or it has no such port. */
static const struct ism_cm_se_port *se_port(const struct ckey *k)
{
	uint32_t at;

	if (k->se != NULL && k->se->port_by_number != NULL &&
	    ism_strmap_get(k->se->port_by_number, (const char *)&(uint32_t){k->port},
			   sizeof(uint32_t), &at))
		return &k->se->ports[at];
	return NULL;
}

/* The service port of destination d on the listener being built: the one it
 * names, else its ServiceEntry's only one, else the listener's (istiod's
 * GetDestinationCluster). */
static uint16_t dest_port(const struct cbuild *b, const struct ism_cm_dest *d)
{
	return d->svc_port ? d->svc_port : b->port;
}

/* Whether a destination's cluster depends on the listener (dest_port). */
static bool dests_on_listener(const struct ism_cm_dest *d, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (d[i].svc_port == 0)
			return true;
	return false;
}

/* A destination whose ServiceEntry lacks the listener's port has no cluster
 * in istiod's configuration: Envoy answers 503 NC (the cluster is missing). */
static void warn_missing_port(struct cbuild *b, const struct ism_cm_dest *d, uint16_t port)
{
	const struct ism_node *at = d->at;
	char field[600];

	if (d->se == NULL || d->svc_port != 0 || b->quiet)
		return;
	snprintf(field, sizeof(field), "%s: destination",
		 b->vs != NULL ? b->vs->r.label : "VirtualService");
	ism_diag_add(b->d, ISM_DIAG_WARNING, b->c->file, at ? at->line : 0, at ? at->col : 0, field,
		     "host %s has no port %u, the port of the listener routing to it (no "
		     "port.number: the listener's, as istiod takes it): no such cluster there "
		     "(requests get 503 NC, TCP connections are closed, mirrors send no copy)",
		     d->host, port);
}

/* The cluster of a destination: the first one with its host, subset and
 * service port, or a new one. */
static uint32_t cluster_index(struct cbuild *b, const struct ism_cm_dest *d)
{
	const char *subset = d->subset ? d->subset : "";
	size_t hl = strlen(d->host), sl = strlen(subset), pl, len;
	uint16_t sp = dest_port(b, d);
	char port[8], *id;
	uint32_t at;
	int rc;

	pl = (size_t)snprintf(port, sizeof(port), "%u", sp);
	len = pl + 1 + sl + 1 + hl;
	id = malloc(len);
	if (id == NULL || ism_grow(&b->keys, &b->cap_keys, b->n_keys, sizeof(*b->keys)) < 0) {
		free(id);
		b->rc = -ENOMEM;
		return 0;
	}
	memcpy(id, port, pl + 1);
	memcpy(id + pl + 1, subset, sl + 1);
	memcpy(id + pl + 1 + sl + 1, d->host, hl);
	rc = ism_strmap_add(&b->key_ix, id, len, (uint32_t)b->n_keys, &at);
	if (rc <= 0) {
		free(id);
		if (rc < 0)
			b->rc = -ENOMEM;
		return rc < 0 ? 0 : at;
	}
	b->keys[b->n_keys] = (struct ckey){d->host, subset, sp, d->se, id};
	if (se_port(&b->keys[b->n_keys]) == NULL)
		warn_missing_port(b, d, sp);
	return (uint32_t)b->n_keys++;
}

/* The endpoint's own number for service port sp (its ports mapping names it),
 * else the port's targetPort or number. */
static uint16_t endpoint_port(const struct ism_cm_se_ep *e, const struct ism_cm_se_port *sp)
{
	const struct ism_node *n = ism_node_get(e->ports_at, sp->name, NULL);
	uint64_t port;

	/* The loader validated every number of the mapping. */
	if (n != NULL && n->kind == ISM_NODE_SCALAR && ism_parse_u64(n->str, &port) == 0)
		return (uint16_t)port;
	return (uint16_t)(sp->target ? sp->target : sp->number);
}

/* A cluster's endpoint while the cluster is built. */
struct cep {
	const struct ism_cm_se_ep *e;
	struct sockaddr_storage addr; /* e's, or an address its name resolved to; port 0 */
	socklen_t addrlen;
	uint64_t resolved_ms; /* e->name's answer: wall ms */
	uint16_t port;
	size_t order; /* position in the ServiceEntry (then in the answer): ties keep it */
	size_t loc;   /* index in the cluster's locality list */
	uint32_t prio;
	uint32_t id;
	uint32_t od;
	char text[272]; /* "address:port", or "name:port" for DNS_ROUND_ROBIN */
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
	size_t n, cap;
	struct ism_cm_se_ep self; /* DNS without endpoints: the host itself */
	const char *unresolved;	  /* a name without an answer; NULL: none */
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

	if (ism_locality_parse(pattern, true, &p) < 0)
		return false;
	return (strcmp(p.region, "*") == 0 || strcmp(p.region, l->region) == 0) &&
	       (p.zone[0] == '\0' || strcmp(p.zone, "*") == 0 || strcmp(p.zone, l->zone) == 0) &&
	       (p.subzone[0] == '\0' || strcmp(p.subzone, "*") == 0 ||
		strcmp(p.subzone, l->subzone) == 0);
}

/* "<key>\0<value>" of a label into b->scratch; its length, or 0 (b->rc set)
 * when memory runs out. */
static size_t label_key(struct cbuild *b, const struct ism_cm_label *l)
{
	size_t kl = strlen(l->key), vl = strlen(l->value);

	if (kl + vl + 2 > b->cap_scratch) {
		char *p = realloc(b->scratch, kl + vl + 2);

		if (p == NULL) {
			b->rc = -ENOMEM;
			return 0;
		}
		b->scratch = p;
		b->cap_scratch = kl + vl + 2;
	}
	memcpy(b->scratch, l->key, kl + 1);
	memcpy(b->scratch + kl + 1, l->value, vl);
	return kl + 1 + vl;
}

/* The index of a ServiceEntry's endpoints by label (struct se_labels). */
static int index_labels(struct cbuild *b, const struct ism_cm_se *se, struct se_labels *x)
{
	size_t n_occ = 0, bytes = 0, k = 0, n_lab = 0;
	uint32_t *occ = NULL; /* per (endpoint, label): the label's number */
	char *p;
	int rc = -ENOMEM;

	x->built = true;
	ism_strmap_init(&x->ix, b->seed);
	for (size_t i = 0; i < se->n_eps; i++)
		for (size_t j = 0; j < se->eps[i].n_labels; j++) {
			n_occ++;
			bytes += strlen(se->eps[i].labels[j].key) +
				 strlen(se->eps[i].labels[j].value) + 2;
		}
	x->keys = p = malloc(bytes ? bytes : 1);
	occ = malloc((n_occ ? n_occ : 1) * sizeof(*occ));
	x->eps = malloc((n_occ ? n_occ : 1) * sizeof(*x->eps));
	x->at = calloc(n_occ + 2, sizeof(*x->at));
	if (x->keys == NULL || occ == NULL || x->eps == NULL || x->at == NULL)
		goto out;
	for (size_t i = 0; i < se->n_eps; i++) {
		for (size_t j = 0; j < se->eps[i].n_labels; j++) {
			size_t len = label_key(b, &se->eps[i].labels[j]);
			uint32_t l;
			int added;

			if (len == 0)
				goto out;
			memcpy(p, b->scratch, len);
			added = ism_strmap_add(&x->ix, p, len, (uint32_t)n_lab, &l);
			if (added < 0)
				goto out;
			if (added > 0) {
				l = (uint32_t)n_lab++;
				p += len + 1;
			}
			occ[k++] = l;
			x->at[l + 2]++;
		}
	}
	/* Counts to starts (at[l + 1] is where label l's postings go next),
	 * then the postings, in endpoint order. */
	for (size_t l = 0; l < n_lab; l++)
		x->at[l + 2] += x->at[l + 1];
	k = 0;
	for (size_t i = 0; i < se->n_eps; i++)
		for (size_t j = 0; j < se->eps[i].n_labels; j++)
			x->eps[x->at[occ[k++] + 1]++] = (uint32_t)i;
	rc = 0;
out:
	free(occ);
	return rc;
}

static void free_labels(struct se_labels *x)
{
	ism_strmap_free(&x->ix);
	free(x->keys);
	free(x->at);
	free(x->eps);
}

/* The endpoints of se that may carry every label of subset s: in *eps (n of
 * them, in file order), or all of them (*eps NULL). 0 or -ENOMEM. */
static int candidates(struct cbuild *b, const struct ism_cm_se *se, const struct ism_cm_subset *s,
		      const uint32_t **eps, size_t *n)
{
	struct se_labels *x = &b->se_labels[se->idx];

	*eps = NULL;
	*n = se->n_eps;
	if (s == NULL || s->n_labels == 0)
		return 0;
	if (!x->built && index_labels(b, se, x) < 0)
		return -ENOMEM;
	/* The shortest of the postings of the subset's labels. */
	for (size_t i = 0; i < s->n_labels; i++) {
		size_t len = label_key(b, &s->labels[i]);
		uint32_t l;

		if (len == 0)
			return -ENOMEM;
		if (!ism_strmap_get(&x->ix, b->scratch, len, &l)) {
			*eps = x->eps;
			*n = 0;
			return 0;
		}
		if (*eps == NULL || x->at[l + 1] - x->at[l] < *n) {
			*eps = x->eps + x->at[l];
			*n = x->at[l + 1] - x->at[l];
		}
	}
	return 0;
}

/* A slot for one more endpoint in cs; NULL when memory runs out. */
static struct cep *cep_add(struct cset *cs)
{
	if (cs->n == cs->cap) {
		size_t cap = cs->cap ? cs->cap * 2 : 8;
		struct cep *ep = realloc(cs->ep, cap * sizeof(*ep));

		if (ep == NULL)
			return NULL;
		cs->ep = ep;
		cs->cap = cap;
	}
	memset(&cs->ep[cs->n], 0, sizeof(cs->ep[cs->n]));
	return &cs->ep[cs->n];
}

/* o's address as inet_ntop writes it, as Envoy names a host: one address
 * however the file spells it (::1, 0:0:0:0:0:0:0:1, ::FFFF:127.0.0.2). The
 * text is the endpoint's key (its health, admin state and outlier slots). */
static const char *ip_text(const struct cep *o, const struct ism_cm_se_ep *e,
			   char ip[INET6_ADDRSTRLEN])
{
	uint16_t port;

	return ism_addr_text((const struct sockaddr *)&o->addr, ip, &port) ? ip : e->address;
}

/* The cluster endpoints endpoint e gives: itself, or for a name one per
 * address of its answer (DNS) or one for the name, connecting to the first
 * address (DNS_ROUND_ROBIN), none while it has no answer. The new ones are
 * cs->ep[first .. cs->n), their locality still to set. 0 or -ENOMEM. */
static int expand(struct cbuild *b, const struct ckey *k, const struct ism_cm_se_ep *e, size_t i,
		  uint16_t port, struct cset *cs)
{
	const struct ism_dns_addr *a = NULL;
	char ip[INET6_ADDRSTRLEN];
	uint64_t when = 0;
	size_t n = 1;
	struct cep *o;

	if (e->name != NULL) {
		n = b->dns != NULL ? b->dns(b->dns_ctx, e->name,
					    k->se->resolution == ISM_RES_DNS_RR, &a, &when)
				   : 0;
		if (n == 0 && cs->unresolved == NULL)
			cs->unresolved = e->name;
		if (n > 0 && k->se->resolution == ISM_RES_DNS_RR)
			n = 1;
	}
	for (size_t j = 0; j < n; j++) {
		if ((o = cep_add(cs)) == NULL)
			return -ENOMEM;
		o->e = e;
		o->port = port;
		o->order = i << 16 | j; /* an answer has fewer than 65536 addresses */
		o->resolved_ms = when;
		o->addr = a != NULL ? a[j].addr : e->addr;
		o->addrlen = a != NULL ? a[j].len : e->addrlen;
		if (e->name != NULL && k->se->resolution == ISM_RES_DNS_RR)
			snprintf(o->text, sizeof(o->text), "%s:%u", e->name, port);
		else if (e->is_unix) /* the path, as Envoy names a pipe */
			snprintf(o->text, sizeof(o->text), "%s",
				 e->address + sizeof(ISM_UNIX_PREFIX) - 1);
		else
			ism_addr_port_text(o->text, sizeof(o->text),
					   a != NULL ? a[j].text : ip_text(o, e, ip), port);
		cs->n++;
	}
	return 0;
}

/* The endpoints of the ServiceEntry that the subset selects, with their
 * localities. 0 or -ENOMEM. */
/* One endpoint per address and port, the first listed, as one socket address
 * has one id (so one health check, one admin state, one share); then each
 * locality's weight from what is kept, each configured endpoint's once however
 * many addresses its name has (Istio's locality weight sums the configured
 * endpoints'), so a repeat adds nothing to its locality under distribute. A
 * name's addresses are not compared: its answer changes. 0 or -ENOMEM. */
static int drop_repeats(struct cbuild *b, struct cset *cs)
{
	struct ism_strmap seen;
	bool *repeat = calloc(cs->n ? cs->n : 1, sizeof(*repeat));
	size_t kept = 0;
	int rc = 0;

	if (repeat == NULL)
		return -ENOMEM;
	ism_strmap_init(&seen, b->seed);
	for (size_t i = 0; i < cs->n && rc >= 0; i++) {
		if (cs->ep[i].e->name != NULL)
			continue;
		/* the keys are the entries' own text: none moves meanwhile */
		rc = ism_strmap_add(&seen, cs->ep[i].text, strlen(cs->ep[i].text), 0, NULL);
		repeat[i] = rc == 0;
	}
	ism_strmap_free(&seen);
	for (size_t i = 0; i < cs->n && rc >= 0; i++) {
		if (repeat[i])
			continue;
		if (i == 0 || cs->ep[i - 1].e != cs->ep[i].e)
			cs->loc[cs->ep[i].loc].orig += cs->ep[i].e->weight;
		cs->ep[kept++] = cs->ep[i];
	}
	free(repeat);
	if (rc < 0)
		return rc;
	cs->n = kept;
	return 0;
}

static int collect(struct cbuild *b, const struct ckey *k, const struct ism_cm_subset *s,
		   struct cset *cs)
{
	const struct ism_cm_se_port *sp = se_port(k);
	struct ism_strmap locs; /* locality -> index in cs->loc */
	const uint32_t *cand;
	size_t n_cand;
	uint32_t at;
	int rc = 0;

	if (sp == NULL)
		return 0;
	if (candidates(b, k->se, s, &cand, &n_cand) < 0)
		return -ENOMEM;
	/* Istio: DNS without endpoints resolves the host itself. */
	if (ism_model_se_self(k->se)) {
		cs->self = (struct ism_cm_se_ep){
		    .address = k->host, .name = k->host, .weight = 1, .locality = ""};
		n_cand = s == NULL || s->n_labels == 0 ? 1 : 0;
	}
	cs->loc = calloc(n_cand ? n_cand : 1, sizeof(*cs->loc));
	if (cs->loc == NULL)
		return -ENOMEM;
	ism_strmap_init(&locs, b->seed);
	for (size_t c = 0; c < n_cand; c++) {
		size_t i = cand != NULL ? cand[c] : c;
		const struct ism_cm_se_ep *e = k->se->n_eps ? &k->se->eps[i] : &cs->self;
		size_t l = cs->n_loc, first = cs->n;

		if (s != NULL && !ism_model_ep_labels_include(e, s->labels, s->n_labels))
			continue;
		rc = expand(b, k, e, i, endpoint_port(e, sp), cs);
		if (rc < 0)
			break;
		if (cs->n == first)
			continue;
		rc = ism_strmap_add(&locs, e->locality, strlen(e->locality), (uint32_t)l, &at);
		if (rc < 0)
			break;
		if (rc == 0) {
			l = at;
		} else {
			cs->loc[l].name = e->locality;
			ism_locality_parse(e->locality, true, &cs->loc[l].parsed); /* validated */
			cs->n_loc++;
		}
		for (size_t j = first; j < cs->n; j++)
			cs->ep[j].loc = l;
	}
	ism_strmap_free(&locs);
	return rc < 0 ? rc : drop_repeats(b, cs);
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
			/* total 0: what matches holds only repeats, now none */
			if (!cs->loc[i].hit || total == 0)
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

/* The first failoverPriority entry of label name k that an endpoint whose value
 * for it is x disagrees with (SIZE_MAX: none). */
static size_t fkey_fail(const struct ism_cm_fkey *k, const char *x)
{
	return strcmp(x, k->want) != 0 ? k->first : k->next_diff;
}

/* How many leading failoverPriority entries endpoint e (in locality el) agrees
 * with (Istio's applyFailoverPriorityPerLocality: agreeing with the first j of
 * N gives priority N - j), found through the label names the endpoint has
 * rather than by trying every entry. */
static size_t fprio_agree(const struct ism_cm_llb *l, const struct ism_locality *el,
			  const struct ism_cm_se_ep *e)
{
	const char *parts[] = {"", el->region, el->zone, el->subzone};
	size_t j = SIZE_MAX, f;

	for (int t = ISM_FPRIO_REGION; t <= ISM_FPRIO_SUBZONE; t++) {
		if (l->topo_fkey[t] == SIZE_MAX)
			continue;
		f = fkey_fail(&l->fkeys[l->topo_fkey[t]], parts[t]);
		j = f < j ? f : j;
	}
	for (size_t i = 0; i < e->n_labels; i++) {
		const char *key = e->labels[i].key;
		uint32_t at;

		if (!ism_strmap_get(l->fkey_ix, key, strlen(key), &at) ||
		    l->fkeys[at].topo != ISM_FPRIO_LABEL)
			continue;
		f = fkey_fail(&l->fkeys[at], e->labels[i].value);
		j = f < j ? f : j;
	}
	/* The label names it lacks (a missing label is the empty value): the
	 * first of them to fail. Names it has are skipped, at most one each. */
	for (size_t i = 0; i < l->n_absent; i++) {
		const struct ism_cm_fkey *k = &l->fkeys[l->absent_order[i]];

		if (k->absent_fail >= j)
			break;
		if (ism_model_ep_label(e, k->key) == NULL) {
			j = k->absent_fail;
			break;
		}
	}
	return j < l->n_fprio ? j : l->n_fprio;
}

static int u32_cmp(const void *pa, const void *pb)
{
	uint32_t a = *(const uint32_t *)pa, b = *(const uint32_t *)pb;

	return a < b ? -1 : a > b;
}

/* How many distinct values raw[n] holds: the levels ism_priority_compact
 * would give, counted in n log n. -ENOMEM when memory runs out. */
static long count_levels(const uint32_t *raw, size_t n)
{
	uint32_t *v = malloc((n ? n : 1) * sizeof(*v));
	long count = 0;

	if (v == NULL)
		return -ENOMEM;
	memcpy(v, raw, n * sizeof(*v));
	qsort(v, n, sizeof(*v), u32_cmp);
	for (size_t i = 0; i < n; i++)
		count += i == 0 || v[i] != v[i - 1];
	free(v);
	return count;
}

/* Istio's applyFailoverPriorities and applyLocalityFailover (for
 * zoneAwareLbSetting applyZoneAwareRegionalFailover: three region tiers within
 * each failoverPriority tier), then compaction. l is NULL for the mesh default
 * (locality failover, no failover list). */
static void assign_priorities(struct cbuild *b, const struct ism_cm_llb *l, struct cset *cs)
{
	size_t nfp = l ? l->n_fprio : 0;
	bool zone = l != NULL && l->zone_aware;
	struct ism_failover fo = {0};
	uint32_t nfo = 0;
	uint32_t *raw = calloc(cs->n ? cs->n : 1, sizeof(*raw));
	struct ism_locality app;
	long levels;

	if (raw == NULL) {
		b->rc = -ENOMEM;
		goto out_free;
	}
	appliance_locality(b->c, &app);
	/* Only the first failover entry from the appliance's region applies
	 * (ism_locality_priority skips the others): it alone is passed on. */
	for (size_t i = 0; l != NULL && i < l->n_failover && nfo == 0; i++) {
		if (strcmp(l->failover[i].from, app.region) != 0)
			continue;
		fo = (struct ism_failover){l->failover[i].from, l->failover[i].to};
		nfo = 1;
	}
	for (size_t i = 0; i < cs->n; i++) {
		const struct ism_locality *el = &cs->loc[cs->ep[i].loc].parsed;
		uint32_t lp = zone ? ism_region_priority(&app, el, &fo, nfo)
				   : ism_locality_priority(&app, el, &fo, nfo);
		uint32_t fp;

		if (nfp == 0) {
			raw[i] = lp;
			continue;
		}
		fp = (uint32_t)(nfp - fprio_agree(l, el, cs->ep[i].e));
		/* With failover as well, Istio applies it within each tier; the
		 * zone-aware regions always. */
		raw[i] = zone ? fp * 3 + lp : l->n_failover ? fp * 5 + lp : fp;
	}
	/* Compaction takes a pass per level: count them first. */
	levels = count_levels(raw, cs->n);
	if (levels < 0) {
		b->rc = -ENOMEM;
		goto out_free;
	}
	if (levels > ISM_MAX_PRIORITIES) {
		const struct ism_node *at = l != NULL ? l->fo_at : NULL;

		ism_diag_add(b->d, ISM_DIAG_ERROR, b->c->file, at ? at->line : 0, at ? at->col : 0,
			     "",
			     "the failover settings give %ld priority levels; at most %u "
			     "are supported",
			     levels, ISM_MAX_PRIORITIES);
		b->rc = -EINVAL;
		goto out_free;
	}
	cs->n_prio = ism_priority_compact(raw, (uint32_t)cs->n);
	for (size_t i = 0; i < cs->n; i++)
		cs->ep[i].prio = raw[i];
out_free:
	free(raw);
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

/* No id for endpoint e of k (rc, for its outlier slot when od): an error at
 * the ServiceEntry's endpoints (its hosts when it lists none). */
static void endpoint_id_error(struct cbuild *b, const struct ckey *k, const struct cep *e, int rc,
			      bool od)
{
	const struct ism_node *spec =
	    k->se != NULL ? ism_node_get(k->se->r.at, "spec", NULL) : NULL;
	const struct ism_node *eps = spec != NULL ? ism_node_get(spec, "endpoints", NULL) : NULL;
	const struct ism_node *at = eps != NULL	   ? eps
				    : spec != NULL ? ism_node_get(spec, "hosts", NULL)
						   : NULL;
	char field[400] = "";

	if (spec != NULL)
		snprintf(field, sizeof(field), "%s: spec.%s", k->se->r.label,
			 eps != NULL ? "endpoints" : "hosts");
	if (rc == -ENOSPC)
		ism_diag_add(
		    b->d, ISM_DIAG_ERROR, b->c->file, at ? at->line : 0, at ? at->col : 0, field,
		    "cannot assign an id to endpoint %s|%s: %s: the %u %s of the "
		    "generations running, draining and loaded are all taken (a reload "
		    "that replaces most endpoints can go in two steps)",
		    k->host, e->text, strerror(-rc), od ? ISM_MAX_OD_SLOTS : ISM_MAX_ENDPOINTS,
		    od ? "endpoint ids of clusters" : "endpoint ids");
	else
		ism_diag_add(b->d, ISM_DIAG_ERROR, b->c->file, at ? at->line : 0, at ? at->col : 0,
			     field, "cannot assign an id to endpoint %s|%s: %s", k->host, e->text,
			     strerror(-rc));
}

/* Whether endpoint c of cluster k (whose health check is hc) is, under its key
 * "<host>|<address>:<port>", the endpoint of another service port whose
 * health check is another (one checked and the other not, or each its own):
 * the same endpoint port, or Unix socket. One endpoint slot would hold one
 * health for both, which one check decided, where Envoy has a cluster, with
 * its own hosts and health checker, per service port. */
static bool key_shared_apart(const struct cbuild *b, const struct ckey *k, size_t hc,
			     const struct cep *c)
{
	for (size_t p = 0; p < k->se->n_ports; p++) {
		const struct ism_cm_se_port *q = &k->se->ports[p];

		if (q->number != k->port && (c->e->is_unix || endpoint_port(c->e, q) == c->port) &&
		    ism_model_find_hc(b->c, k->host, q->number) != hc)
			return true;
	}
	return false;
}

/* Endpoint ids, asked in the ServiceEntry's order. An endpoint is keyed
 * "<host>|<address>:<port>", or "<host>:<service port>|<address>:<port>"
 * where another service port reaches it with another health check
 * (key_shared_apart): each port has its own slot and health then. */
static void assign_ids(struct cbuild *b, const struct ckey *k, const struct ism_cluster *cl,
		       struct cset *cs)
{
	size_t hc = cs->n > 0 ? ism_model_find_hc(b->c, k->host, k->port) : SIZE_MAX;

	for (size_t i = 0; i < cs->n && b->rc == 0; i++) {
		char key[2 * ISM_EP_KEY_MAX];
		int len, rc;

		if (key_shared_apart(b, k, hc, &cs->ep[i]))
			len = snprintf(key, sizeof(key), "%s:%u|%s", k->host, k->port,
				       cs->ep[i].text);
		else
			len = snprintf(key, sizeof(key), "%s|%s", k->host, cs->ep[i].text);
		/* Names the file may hold fit (shm/shm-t.h): this refuses in
		 * isthmus -c what a start would. */
		if (len >= ISM_EP_KEY_MAX)
			rc = -ENAMETOOLONG;
		else
			rc = b->ep_id(b->ctx, ISM_CONF_SLOT_ENDPOINT, key, cl->hc != NULL,
				      &cs->ep[i].id);
		bool od = false;

		if (rc == 0) {
			snprintf(key, sizeof(key), "%s|%u", cl->name.p, cs->ep[i].id);
			rc = b->ep_id(b->ctx, ISM_CONF_SLOT_OUTLIER, key, false, &cs->ep[i].od);
			od = true;
		}
		if (rc < 0) {
			endpoint_id_error(b, k, &cs->ep[i], rc, od);
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
		/* Each configured endpoint once (its addresses follow each
		 * other), as the locality's weight in collect. */
		if (!cs->distributed && (g->count == 1 || cs->ep[i - 1].e != c->e))
			g->weight = g->weight > UINT32_MAX - c->e->weight
					? UINT32_MAX
					: g->weight + c->e->weight;
		o->id = c->id;
		o->od = c->od;
		o->addr = c->addr;
		o->addrlen = c->addrlen;
		set_port(&o->addr, c->port);
		o->addr_text = astr(b, c->text);
		if (c->e->name != NULL)
			o->dns_name = astr(b, c->e->name);
		o->resolved_ms = c->resolved_ms;
		o->mesh_tls = ism_model_ep_mesh_tls(c->e);
		o->locality = g->locality;
		o->weight = c->e->weight;
		o->priority = (uint8_t)c->prio;
		o->group = ng - 1;
	}
	cl->endpoints = eps;
	cl->n_endpoints = (uint32_t)cs->n;
	if (cs->unresolved != NULL)
		cl->unresolved = astr(b, cs->unresolved);
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
	bool zone = l != NULL && l->zone_aware;
	/* zoneAwareLbSetting fails over without outlierDetection (Istio's
	 * ForceFailover); disabled, it leaves every endpoint in one priority. */
	bool failover = enabled && (tp->od.set || zone);
	struct cset cs = {0};

	if (collect(b, k, s, &cs) < 0) {
		b->rc = -ENOMEM;
		goto out_free;
	}
	if (enabled && l != NULL && l->n_distribute > 0)
		apply_distribute(b->c, l, &cs);
	else if (failover)
		assign_priorities(b, l, &cs);
	cl->zone_aware = enabled && zone;
	cl->locality_weighted =
	    enabled && l != NULL && !zone &&
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
		rc = ism_ring_build(keys, w, n, cl->hash.ring_size, ISM_RING_ENVOY_MAX, points,
				    owners, cap);
		if (rc != -ENOSPC || cap >= (1u << 24))
			break;
		free(points);
		free(owners);
		cap *= 2;
	}
	if (rc > 0) {
		uint64_t *ap;
		uint32_t *ao;

		b->hash_bytes += (size_t)rc * (sizeof(*ap) + sizeof(*ao));
		ap = ANEW(b, (size_t)rc, uint64_t);
		ao = ANEW(b, (size_t)rc, uint32_t);

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
	cl->hash.cookie_attrs = astr(b, h->cookie_attrs);
	cl->hash.issue_cookie = h->cookie_issue;
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
		uint32_t *table;

		b->hash_bytes += (size_t)h->table_size * sizeof(*table);
		table = ANEW(b, h->table_size, uint32_t);

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
	o->service = astr(b, h->service ? h->service : "");
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
	if (cl->lb == ISM_LB_ROUND_ROBIN || cl->lb == ISM_LB_LEAST_REQUEST) {
		cl->warmup_ms = tp->lb.warmup_ms;
		cl->warmup_aggression = tp->lb.warmup_aggression;
		cl->warmup_minimum = tp->lb.warmup_minimum;
	}
	cl->connect_timeout_ms =
	    tp->pool.has_connect ? tp->pool.connect_ms : c->app.timeouts.upstream_connect_ms;
	cl->idle_timeout_ms = tp->pool.has_idle ? tp->pool.idle_ms : ISM_DEFAULT_POOL_IDLE_MS;
	/* Istio: without http.idleTimeout, tcp.idleTimeout is the pooled HTTP
	 * connections' too (0 there would close them at once: left out). */
	if (!tp->pool.has_idle && tp->pool.has_tcp_idle && tp->pool.tcp_idle_ms > 0)
		cl->idle_timeout_ms = tp->pool.tcp_idle_ms;
	cl->tcp_idle_ms = tp->pool.set ? tp->pool.tcp_idle_ms : ISM_DEFAULT_TCP_IDLE_MS;
	cl->tcp_max_duration_ms = tp->pool.tcp_max_ms;
	cl->keepalive = tp->pool.keepalive;
	cl->keepalive_probes = tp->pool.ka_probes;
	cl->keepalive_time_s = tp->pool.ka_time_s;
	cl->keepalive_interval_s = tp->pool.ka_interval_s;
	if (tp->pool.set)
		cl->pool = tp->pool.limits;
	else
		ism_model_pool_defaults(&cl->pool);
	if (tp->rb.set) {
		cl->pool.retry_budget_ppm = tp->rb.ppm;
		cl->pool.retry_budget_min = tp->rb.min_retries;
	}
	cl->overprovisioning = ISM_DEFAULT_OVERPROVISIONING;
	cl->panic_threshold = ISM_DEFAULT_PANIC_THRESHOLD;
	if (tp->od.set) {
		struct ism_outlier *od = ANEW(b, 1, struct ism_outlier);

		if (od != NULL)
			*od = tp->od.od;
		cl->od = od;
		/* Istio: healthy_panic_threshold = minHealthPercent (default 0: no panic). */
		cl->panic_threshold = (uint8_t)tp->od.min_health;
	}
}

/* What the cluster's connections speak, as Istio's cluster builder decides it:
 * the service port's protocol (setUpstreamProtocol), upgraded by
 * h2UpgradePolicy UPGRADE (shouldH2Upgrade; DO_NOT_UPGRADE does not downgrade an
 * HTTP2 port, and DEFAULT is the mesh default, DO_NOT_UPGRADE), and replaced by
 * useClientProtocol (setUseDownstreamProtocol, applied last). */
static uint8_t upstream_proto(const struct ckey *k, const struct ism_cm_pool *pool)
{
	const struct ism_cm_se_port *sp = se_port(k);

	if (pool->use_client)
		return ISM_UP_AS_CLIENT;
	if (pool->h2_upgrade == ISM_H2UP_UPGRADE)
		return ISM_UP_HTTP2;
	return sp != NULL ? sp->proto : ISM_UP_HTTP1;
}

/* The HTTP/2 settings of the cluster's connections. Istio writes
 * maxConcurrentStreams and http2KeepAlive into the explicit HTTP/2 options only:
 * a useClientProtocol cluster has Envoy's defaults. */
static void apply_h2(const struct ism_cm_pool *pool, struct ism_cluster *cl)
{
	cl->h2_max_streams = ISM_H2_MAX_STREAMS;
	if (cl->proto != ISM_UP_HTTP2)
		return;
	if (pool->max_streams != 0 && pool->max_streams < ISM_H2_MAX_STREAMS)
		cl->h2_max_streams = pool->max_streams;
	cl->h2_ping_interval_ms = pool->ping_interval_ms;
	cl->h2_ping_timeout_ms = pool->ping_timeout_ms;
}

/* What the ClientHello of a cluster speaking proto offers (see enum ism_alpn). */
static uint8_t upstream_alpn(uint8_t proto, uint8_t mode)
{
	static const uint8_t by_proto[] = {
	    [ISM_UP_HTTP1] = ISM_ALPN_HTTP11,
	    [ISM_UP_HTTP2] = ISM_ALPN_H2,
	    [ISM_UP_AS_CLIENT] = ISM_ALPN_H2 | ISM_ALPN_HTTP11,
	};

	if (mode == ISM_TLS_NONE)
		return 0;
	return by_proto[proto] | (mode == ISM_TLS_ISTIO_MUTUAL ? ISM_ALPN_ISTIO : 0);
}

/* The "/ns/N/sa/S" of SPIFFE identity id (spiffe://TD/ns/N/sa/S, no part
 * empty), as Istio parses one; NULL when id is not of that form. */
static const char *spiffe_path(const char *id)
{
	const char *path, *ns_end;

	if (strncmp(id, "spiffe://", 9) != 0 || (path = strchr(id + 9, '/')) == NULL ||
	    path == id + 9 || strncmp(path, "/ns/", 4) != 0 ||
	    (ns_end = strchr(path + 4, '/')) == NULL || ns_end == path + 4 ||
	    strncmp(ns_end, "/sa/", 4) != 0 || ns_end[4] == '\0' || strchr(ns_end + 4, '/') != NULL)
		return NULL;
	return path;
}

/* Adds uri to the n names at out unless it is there; returns the new n. */
static uint32_t add_account(struct cbuild *b, struct ism_str *out, uint32_t n, const char *uri)
{
	for (uint32_t j = 0; j < n; j++)
		if (out[j].len == strlen(uri) && memcmp(out[j].p, uri, out[j].len) == 0)
			return n;
	out[n] = astr(b, uri);
	return n + 1;
}

/* Istio's service accounts of service se: its subjectAltNames and its
 * endpoints' serviceAccount as spiffe://<trustDomain>/ns/<namespace>/sa/<name>,
 * each once; then each spiffe://TD/ns/N/sa/S of them under every trust
 * domain alias too (ExpandWithTrustDomains). Into *sans (in the arena);
 * returns how many. */
static uint32_t service_accounts(struct cbuild *b, const struct ism_cm_se *se,
				 const struct ism_str **sans)
{
	const struct ism_cm_appliance *a = &b->c->app;
	size_t cap = (se->n_sans + se->n_eps) * (1 + a->n_td_aliases);
	struct ism_str *out = cap ? ANEW(b, cap, struct ism_str) : NULL;
	uint32_t n = 0, direct;
	char uri[600];

	*sans = out;
	if (out == NULL)
		return 0;
	for (uint32_t i = 0; i < se->n_sans; i++)
		out[n++] = se->sans[i];
	for (size_t i = 0; i < se->n_eps; i++) {
		if (se->eps[i].service_account == NULL)
			continue;
		snprintf(uri, sizeof(uri), "spiffe://%s/ns/%s/sa/%s", a->trust_domain, se->r.ns,
			 se->eps[i].service_account);
		n = add_account(b, out, n, uri);
	}
	direct = n;
	for (uint32_t i = 0; i < direct; i++) {
		const char *path = spiffe_path(out[i].p);

		for (size_t k = 0; path != NULL && k < a->n_td_aliases; k++) {
			snprintf(uri, sizeof(uri), "spiffe://%s%s", a->td_aliases[k], path);
			n = add_account(b, out, n, uri);
		}
	}
	return n;
}

/* The TLS settings of the cluster of k's host and port with subset (may be
 * ""), whose merged policy is tp. */
static void cluster_tls(struct cbuild *b, const struct ckey *k, const char *subset,
			const struct ism_cm_tp *tp, struct ism_tls_conf *out)
{
	struct ism_tls_conf in = tp->tls.c;
	char name[600];

	/* The certificate must carry the server name unless the DestinationRule
	 * names subjectAltNames (Istio's automatic SAN validation, which istiod
	 * sets with automatic SNI only: not under an explicit sni). */
	in.name_check = in.n_sans == 0 && in.sni.len == 0 && !in.skip_verify &&
			in.mode != ISM_TLS_ISTIO_MUTUAL && in.mode != ISM_TLS_NONE;
	/* Without subjectAltNames of its own, Istio's service accounts of the
	 * service, for SIMPLE, MUTUAL and ISTIO_MUTUAL. */
	if (in.n_sans == 0 && in.mode != ISM_TLS_NONE && k->se != NULL)
		in.n_sans = service_accounts(b, k->se, &in.sans);
	copy_tls(b, &in, upstream_alpn(upstream_proto(k, &tp->pool), in.mode), out);
	if (out->mode == ISM_TLS_ISTIO_MUTUAL && out->sni.len == 0) {
		/* Istio's mesh SNI, the cluster's DNS SRV form (BuildDNSSrvSubsetKey),
		 * which sidecars and east-west gateways expect; a DestinationRule sni
		 * wins. Not in the fingerprint: the context is the same for all. */
		snprintf(name, sizeof(name), "outbound_.%u_.%s_.%s", k->port, subset, k->host);
		out->sni = astr(b, name);
	}
}

/* Istio's automatic mutual TLS for the cluster of k with subset (may be "")
 * under policy tp (its buildUpstreamTLSSettings without tls): ISTIO_MUTUAL
 * with the service accounts and the mesh SNI, when the policy sets no tls,
 * the service is MESH_INTERNAL, enableAutoMtls is on, the namespace's
 * PeerAuthentication does not DISABLE it, the appliance has a mesh identity,
 * and an endpoint takes it. NULL otherwise. */
static const struct ism_tls_conf *auto_tls(struct cbuild *b, const struct ckey *k,
					   const char *subset, const struct ism_cm_tp *tp)
{
	struct ism_tls_conf *out;
	struct ism_cm_tp mesh;

	if (tp->tls.set || k->se == NULL || !b->c->app.has_mesh ||
	    !ism_model_se_auto_mtls(b->c, k->se, NULL) ||
	    (out = ANEW(b, 1, struct ism_tls_conf)) == NULL)
		return NULL;
	mesh = *tp;
	mesh.tls.c = (struct ism_tls_conf){.mode = ISM_TLS_ISTIO_MUTUAL};
	cluster_tls(b, k, subset, &mesh, out);
	return out;
}

/* What the active health check of a subset's cluster speaks: the settings of
 * the service port without a subset (the DestinationRule's own or port-level
 * tls), whether or not a route uses that cluster, since one check serves an
 * endpoint for every subset that holds it. */
static const struct ism_tls_conf *check_tls(struct cbuild *b, const struct ism_cm_dr *dr,
					    const struct ckey *k)
{
	struct ism_tls_conf *out = ANEW(b, 1, struct ism_tls_conf);
	struct ism_cm_tp tp;

	if (out == NULL)
		return NULL;
	ism_model_policy(dr, NULL, k->port, &tp);
	cluster_tls(b, k, "", &tp, out);
	return out;
}

static void fill_cluster(struct cbuild *b, const struct ckey *k, struct ism_cluster *cl)
{
	const struct ism_conf *c = b->c;
	const struct ism_cm_dr *dr = ism_model_find_dr(c, k->host);
	const struct ism_cm_subset *s = k->subset[0] ? ism_model_find_subset(dr, k->subset) : NULL;
	struct ism_cm_tp tp;
	char name[600];
	size_t hc;

	ism_model_policy(dr, s, k->port, &tp);
	snprintf(name, sizeof(name), "outbound|%u|%s|%s", k->port, k->subset, k->host);
	cl->name = astr(b, name);
	cl->host = astr(b, k->host);
	cl->subset = astr(b, k->subset);
	cl->port = k->port;
	cl->missing = se_port(k) == NULL;
	apply_policy(b, &tp, cl);
	cl->proto = upstream_proto(k, &tp.pool);
	apply_h2(&tp.pool, cl);
	cluster_tls(b, k, k->subset, &tp, &cl->tls);
	cl->auto_tls = auto_tls(b, k, k->subset, &tp);
	cl->pp = tp.pp;
	if (tp.tunnel_host != NULL) {
		ism_addr_port_text(name, sizeof(name), tp.tunnel_host, (uint16_t)tp.tunnel_port);
		cl->tunnel = astr(b, name);
		cl->tunnel_post = tp.tunnel_post;
	}
	hc = ism_model_find_hc(c, k->host, k->port);
	if (hc != SIZE_MAX) {
		struct ism_cm_tp svc;

		cl->hc = compile_hc(b, hc, k->host);
		cl->hc_tls = k->subset[0] == '\0' ? &cl->tls : check_tls(b, dr, k);
		/* as hc_tls: the service port's, one check serving every subset */
		ism_model_policy(dr, NULL, k->port, &svc);
		cl->hc_pp = svc.pp;
		cl->hc_auto_tls = k->subset[0] == '\0' ? cl->auto_tls : auto_tls(b, k, "", &svc);
	}
	fill_endpoints(b, k, s, &tp, cl);
	if (tp.lb.has_hash)
		build_hash(b, &tp.lb.hash, cl);
	else
		cl->hash.on = ISM_HASH_NONE;
	cl->dyn = MNEW(b, 1, struct ism_cluster_dyn);
	cl->eff_weight = MNEW(b, cl->n_groups, uint32_t);
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
}

/* Whether the cluster of destination d balances by consistent hash. Istio
 * gives a route of one such destination a retry policy without Envoy's
 * previous_hosts predicate unless retryIgnorePreviousHosts says otherwise
 * (route/retry: "When Consistent Hashing is enabled, we don't want to use
 * other hosts during retries"): its retries go to the endpoint the key
 * hashes to. */
static bool dest_hashed(struct cbuild *b, const struct ism_cm_dest *d)
{
	const struct ism_cm_dr *dr = ism_model_find_dr(b->c, d->host);
	const struct ism_cm_subset *s = d->subset ? ism_model_find_subset(dr, d->subset) : NULL;
	struct ism_cm_tp tp;

	ism_model_policy(dr, s, dest_port(b, d), &tp);
	return tp.lb.has_hash;
}

/* The path rewrite of a forwarding route, or the path of a redirect. */
static void compile_path(struct cbuild *b, const struct ism_cm_route *r, struct ism_path_rewrite *p)
{
	const struct ism_cm_rewrite *rw = &r->rewrite;
	const struct ism_cm_redirect *rd = &r->redirect;

	if (rd->uri != NULL || rd->prefix_rewrite != NULL) {
		p->kind = rd->uri != NULL ? ISM_PATH_REPLACE : ISM_PATH_PREFIX;
		p->value = astr(b, rd->uri != NULL ? rd->uri : rd->prefix_rewrite);
	} else if (rw->uri != NULL) {
		p->kind = ISM_PATH_PREFIX;
		p->value = astr(b, rw->uri);
	} else if (rw->re != NULL) {
		p->kind = ISM_PATH_REGEX;
		p->value = astr(b, rw->sub);
		p->re = (struct ism_strmatch){.kind = ISM_SM_REGEX,
					      .search = 1,
					      .s = astr(b, rw->re),
					      .re = compile_re(b, rw->re, false),
					      .re_idx = b->t->n_regexes++};
	}
}

/* --- header operations --- */

/* One field while header operations are composed (struct ism_hdr_edit). */
struct hedit {
	const char *name;
	bool drop, removed;
	size_t n, cap;
	const struct ism_cm_kvs **values;
};

struct hstate {
	struct hedit *e;
	size_t n, cap;
};

static struct hedit *hstate_field(struct cbuild *b, struct hstate *h, const char *name)
{
	for (size_t i = 0; i < h->n; i++)
		if (strcmp(h->e[i].name, name) == 0)
			return &h->e[i];
	if (ism_grow(&h->e, &h->cap, h->n, sizeof(*h->e)) < 0) {
		b->rc = -ENOMEM;
		return NULL;
	}
	h->e[h->n] = (struct hedit){.name = name};
	return &h->e[h->n++];
}

/* kv's value is sent after the field's values so far; set: instead of them,
 * and of the message's own. Envoy sends no empty value. */
static void hstate_put(struct cbuild *b, struct hstate *h, const struct ism_cm_kvs *kv, bool set)
{
	struct hedit *e;

	if (kv->value[0] == '\0' || (e = hstate_field(b, h, kv->name)) == NULL)
		return;
	if (set) {
		e->drop = true;
		e->n = 0;
	}
	if (ism_grow(&e->values, &e->cap, e->n, sizeof(*e->values)) < 0) {
		b->rc = -ENOMEM;
		return;
	}
	e->values[e->n++] = kv;
}

/* Envoy's HeaderParser::evaluateHeaders over the operations ops[0..n) (one
 * parser when n > 1: Istio appends a single destination's operations to its
 * route's): every remove, then every set (the last of a name wins), then
 * every add. */
static void hstate_apply(struct cbuild *b, struct hstate *h, const struct ism_cm_hdrops *const *ops,
			 size_t n)
{
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < ops[i]->n_remove; j++) {
			struct hedit *e = hstate_field(b, h, ops[i]->remove[j]);

			if (e != NULL) {
				e->drop = e->removed = true;
				e->n = 0;
			}
		}
	}
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < ops[i]->n_set; j++)
			hstate_put(b, h, &ops[i]->set[j], true);
	for (size_t i = 0; i < n; i++)
		for (size_t j = 0; j < ops[i]->n_add; j++)
			hstate_put(b, h, &ops[i]->add[j], false);
}

/* A value with command operators, parsed into the arena (its text and header
 * names copied, names lowercased). The configuration was checked: a parse
 * that fails here leaves it as text. */
static struct ism_hval hval_parts(struct cbuild *b, const char *s)
{
	char err[256];
	int n = ism_hval_parse(s, strlen(s), NULL, 0, err, sizeof(err));
	struct ism_hval_part *p = n > 0 ? ANEW(b, (size_t)n, struct ism_hval_part) : NULL;

	if (p == NULL || ism_hval_parse(s, strlen(s), p, (size_t)n, err, sizeof(err)) != n)
		return (struct ism_hval){0};
	for (int i = 0; i < n; i++) {
		p[i].a = astrn(b, p[i].a.p, p[i].a.len);
		p[i].b = astrn(b, p[i].b.p, p[i].b.len);
		bool named = p[i].kind == ISM_HV_REQ || p[i].kind == ISM_HV_RESP;

		for (uint32_t k = 0; named && k < p[i].a.len; k++)
			((char *)p[i].a.p)[k] = ism_lower(p[i].a.p[k]);
		for (uint32_t k = 0; named && k < p[i].b.len; k++)
			((char *)p[i].b.p)[k] = ism_lower(p[i].b.p[k]);
	}
	return (struct ism_hval){.n = (uint32_t)n, .parts = p};
}

/* The composed edits into the arena; h is freed. */
static struct ism_hdr_edits emit_edits(struct cbuild *b, struct hstate *h)
{
	struct ism_hdr_edits out = {0};
	struct ism_hdr_edit *e = h->n ? ANEW(b, h->n, struct ism_hdr_edit) : NULL;
	bool dynamic = false;

	for (size_t i = 0; e != NULL && i < h->n; i++) {
		struct ism_str *v = h->e[i].n ? ANEW(b, h->e[i].n, struct ism_str) : NULL;
		struct ism_hval *f = NULL;

		for (size_t j = 0; v != NULL && j < h->e[i].n; j++) {
			const struct ism_cm_kvs *kv = h->e[i].values[j];

			v[j] = astr(b, kv->value);
			if (kv->fmt && f == NULL)
				f = ANEW(b, h->e[i].n, struct ism_hval);
			if (kv->fmt && f != NULL)
				f[j] = hval_parts(b, kv->value);
		}
		dynamic = dynamic || f != NULL;
		e[i] = (struct ism_hdr_edit){.name = astr(b, h->e[i].name),
					     .drop = h->e[i].drop,
					     .removed = h->e[i].removed,
					     .n_values = v ? (uint32_t)h->e[i].n : 0,
					     .values = v,
					     .fmts = f};
	}
	if (e != NULL)
		out = (struct ism_hdr_edits){.n = (uint32_t)h->n, .dynamic = dynamic, .e = e};
	for (size_t i = 0; i < h->n; i++)
		free(h->e[i].values);
	free(h->e);
	*h = (struct hstate){0};
	return out;
}

/* The edits of one direction of a destination: its operations (d, NULL:
 * none) and its route's (r), composed as Istio has Envoy do it: one parser
 * for a route of a single destination (the destination's operations after
 * the route's), else the weighted cluster's parser before the route's. */
static struct ism_hdr_edits compose_edits(struct cbuild *b, const struct ism_cm_hdrops *r,
					  const struct ism_cm_hdrops *d, bool single)
{
	struct hstate h = {0};
	const struct ism_cm_hdrops *both[] = {r, d};

	if (d == NULL) {
		hstate_apply(b, &h, &r, 1);
	} else if (single) {
		hstate_apply(b, &h, both, 2);
	} else {
		hstate_apply(b, &h, &d, 1);
		hstate_apply(b, &h, &r, 1);
	}
	return emit_edits(b, &h);
}

static bool has_ops(const struct ism_cm_headers *h)
{
	return h->req.n_set + h->req.n_add + h->req.n_remove + h->resp.n_set + h->resp.n_add +
		   h->resp.n_remove >
	       0;
}

/* The route's actions beyond its destinations; NULL when it has none. */
static const struct ism_route_actions *compile_actions(struct cbuild *b,
						       const struct ism_cm_route *r)
{
	const struct ism_cm_redirect *rd = &r->redirect;
	struct ism_route_actions *a;

	if (r->rewrite.uri == NULL && r->rewrite.re == NULL && !rd->set && !r->direct.set)
		return NULL;
	a = ANEW(b, 1, struct ism_route_actions);
	if (a == NULL)
		return NULL;
	compile_path(b, r, &a->path);
	if (rd->set) {
		a->kind = ISM_ROUTE_REDIRECT;
		a->redirect = (struct ism_redirect){
		    .code = (uint16_t)rd->code,
		    .port = (uint16_t)rd->port,
		    .port_from_request = rd->port_from_request,
		    .scheme = rd->scheme ? astr(b, rd->scheme) : (struct ism_str){"", 0},
		    .authority = rd->authority ? astr(b, rd->authority) : (struct ism_str){"", 0}};
	} else if (r->direct.set) {
		/* Istio translates a redirect first: one a delegate route has wins
		 * over the directResponse it takes from its root. */
		a->kind = ISM_ROUTE_DIRECT;
		a->direct =
		    (struct ism_direct){.status = (uint16_t)r->direct.status,
					.body = astrn(b, r->direct.body, r->direct.body_len)};
	}
	if (a->kind != ISM_ROUTE_FORWARD)
		a->resp = compose_edits(b, &r->headers.resp, NULL, true);
	return a;
}

/* What the requests of route r to destination d (NULL: a destination without
 * headers of its own) and their responses change; NULL when nothing. The
 * authority of the route (rewrite.authority, or its headers' host) wins over
 * the destination's, as Istio has it. */
static const struct ism_dest_actions *
compile_dest_actions(struct cbuild *b, const struct ism_cm_route *r, const struct ism_cm_dest *d)
{
	const char *auth = r->rewrite.authority ? r->rewrite.authority : r->headers.authority;
	const struct ism_cm_headers *dh = d != NULL ? &d->headers : NULL;
	bool single = r->n_dest == 1;
	struct ism_dest_actions *a;

	if (auth == NULL && dh != NULL)
		auth = dh->authority;
	if (auth == NULL && !has_ops(&r->headers) && (dh == NULL || !has_ops(dh)))
		return NULL;
	a = ANEW(b, 1, struct ism_dest_actions);
	if (a == NULL)
		return NULL;
	a->authority = auth ? astr(b, auth) : (struct ism_str){.p = "", .len = 0};
	a->req = compose_edits(b, &r->headers.req, dh ? &dh->req : NULL, single);
	a->resp = compose_edits(b, &r->headers.resp, dh ? &dh->resp : NULL, single);
	return a;
}

/* Route r's mirrors (Istio's mirror with its percentage, or mirrors[]), those
 * with a share of 0 left out as Istio leaves them out; *n of them. A cluster
 * that only a mirror names exists all the same. */
static const struct ism_mirror *compile_mirrors(struct cbuild *b, const struct ism_cm_route *r,
						uint32_t *n)
{
	size_t max = r->mirror != NULL ? 1 : r->n_mirrors;
	struct ism_mirror *m;

	*n = 0;
	if (max == 0 || (m = ANEW(b, max, struct ism_mirror)) == NULL)
		return NULL;
	if (r->mirror != NULL && ism_model_mirror_pct(r) > 0)
		m[(*n)++] =
		    (struct ism_mirror){cluster_index(b, r->mirror), ism_model_mirror_pct(r)};
	for (size_t i = 0; r->mirror == NULL && i < r->n_mirrors; i++)
		if (r->mirrors[i].weight > 0)
			m[(*n)++] = (struct ism_mirror){cluster_index(b, &r->mirrors[i]),
							r->mirrors[i].weight};
	return *n ? m : NULL;
}

/* corsPolicy: origins become string matches (their regexes numbered with the
 * route matches'), the rest strings in the arena. */
static const struct ism_cors *compile_cors(struct cbuild *b, const struct ism_cm_cors *in)
{
	struct ism_cors *c;
	struct ism_strmatch *o;

	if (in == NULL)
		return NULL;
	c = ANEW(b, 1, struct ism_cors);
	o = ANEW(b, in->n_origins, struct ism_strmatch);
	if (c == NULL || o == NULL)
		return NULL;
	for (size_t i = 0; i < in->n_origins; i++)
		conv_sm(b, &in->origins[i], false, &o[i]);
	c->n_origins = (uint32_t)in->n_origins;
	c->origins = o;
	c->credentials = in->credentials;
	c->forward_unmatched = !in->ignore_unmatched;
	c->methods = astr(b, in->methods);
	c->headers = astr(b, in->headers);
	c->expose = astr(b, in->expose);
	c->max_age = astr(b, in->max_age);
	return c;
}

/* fault; NULL when it can do nothing (no share, no delay, no status): such a
 * route pays nothing for it. */
static const struct ism_fault *compile_fault(struct cbuild *b, const struct ism_fault *in)
{
	bool delays = in != NULL && in->delay_ms > 0 && in->delay_ppm > 0;
	bool aborts = in != NULL && in->abort_status > 0 && in->abort_ppm > 0;
	struct ism_fault *f;

	if (!delays && !aborts)
		return NULL;
	f = ANEW(b, 1, struct ism_fault);
	if (f != NULL)
		*f = (struct ism_fault){.delay_ms = delays ? in->delay_ms : 0,
					.delay_ppm = delays ? in->delay_ppm : 0,
					.abort_ppm = aborts ? in->abort_ppm : 0,
					.abort_status = aborts ? in->abort_status : 0,
					.abort_grpc = aborts ? in->abort_grpc : -1};
	return f;
}

/* A route's weighted destinations (their clusters and weights; no actions),
 * *total the sum of the weights. */
static struct ism_dest *compile_dests(struct cbuild *b, const struct ism_cm_dest *in, size_t n,
				      uint32_t *total)
{
	struct ism_dest *d = ANEW(b, n, struct ism_dest);
	uint64_t sum = 0;

	for (size_t j = 0; d != NULL && j < n; j++) {
		d[j].cluster = cluster_index(b, &in[j]);
		d[j].weight = in[j].weight;
		sum += in[j].weight;
	}
	*total = sum > UINT32_MAX ? UINT32_MAX : (uint32_t)sum;
	return d;
}

/* Whether route r's clusters depend on the listener (dests_on_listener). */
static bool route_on_listener(const struct ism_cm_route *r)
{
	return dests_on_listener(r->dest, r->n_dest) ||
	       (r->mirror != NULL && dests_on_listener(r->mirror, 1)) ||
	       dests_on_listener(r->mirrors, r->n_mirrors);
}

/* Whether route r can apply on a listener of port: a match for any port or
 * for that one (routes_for_gateway leaves the others out). */
static bool route_on_port(const struct ism_cm_route *r, uint16_t port)
{
	for (size_t j = 0; j < r->n_match; j++)
		if (r->match[j].port == 0 || r->match[j].port == port)
			return true;
	return r->n_match == 0;
}

/* Route r's destinations and mirrors on the listener being built, in o:
 * each destination keeps the actions o->dest had (none when NULL). Consistent
 * hashing turns off retry's previous-hosts predicate by the cluster's policy,
 * which depends on the port too. A route that cannot apply there keeps what
 * it had, and the clusters a first compile makes for it warn of nothing. */
static void route_targets(struct cbuild *b, const struct ism_cm_route *r, struct ism_route *o)
{
	const struct ism_dest *had = o->dest;
	bool applies = route_on_port(r, b->port);
	uint32_t total;
	struct ism_dest *d;

	if (had != NULL && !applies)
		return;
	b->quiet = !applies;
	d = compile_dests(b, r->dest, r->n_dest, &total);
	for (size_t j = 0; d != NULL && had != NULL && j < r->n_dest; j++)
		d[j].act = had[j].act;
	o->n_dest = (uint32_t)r->n_dest;
	o->dest = d;
	o->total_weight = total;
	o->retry.ignore_previous_hosts = r->retry.ignore_previous_hosts;
	if (!r->retry_prev_set && r->n_dest == 1 && dest_hashed(b, &r->dest[0]))
		o->retry.ignore_previous_hosts = 0;
	o->mirrors = compile_mirrors(b, r, &o->n_mirrors);
	b->quiet = false;
}

/* A VirtualService's routes as listener b->listener has them: their counters
 * its own, as Envoy counts a route per route configuration (one per port), so
 * that a route served on two ports is not one count shown under both. The
 * first listener takes them as compiled, each later one a copy (listeners
 * are built in order: the copy replaces the cache), whose routes to the
 * listener's port (route_on_listener) are made for its port. */
static const struct ism_route *listener_routes(struct cbuild *b, size_t vi, uint32_t n)
{
	const struct ism_cm_vs *vs = b->c->vss[vi];
	const struct ism_route *cached = b->vs_routes[vi];
	uint32_t at = b->vs_routes_at[vi];
	struct ism_route *copy;

	if (at == 0 || at == b->listener + 1) {
		b->vs_routes_at[vi] = b->listener + 1;
		return cached;
	}
	copy = ANEW(b, n, struct ism_route);
	b->vs = vs;
	for (uint32_t i = 0; copy != NULL && i < n; i++) {
		copy[i] = cached[i];
		copy[i].stats = MNEW(b, 1, struct ism_counters);
		if (b->groups[at - 1].port != b->port && route_on_listener(&vs->routes[i]))
			route_targets(b, &vs->routes[i], &copy[i]);
	}
	b->vs = NULL;
	b->vs_routes[vi] = copy;
	b->vs_routes_at[vi] = b->listener + 1;
	return copy;
}

static const struct ism_route *compile_routes(struct cbuild *b, size_t vi)
{
	const struct ism_cm_vs *vs = b->c->vss[vi];
	struct ism_route *routes;

	if (b->vs_routes[vi] != NULL)
		return listener_routes(b, vi, (uint32_t)vs->n_routes);
	routes = ANEW(b, vs->n_routes, struct ism_route);
	b->vs = vs;
	for (size_t i = 0; routes != NULL && i < vs->n_routes; i++) {
		const struct ism_cm_route *r = &vs->routes[i];
		struct ism_route *o = &routes[i];
		struct ism_match *m = ANEW(b, r->n_match, struct ism_match);
		const struct ism_dest_actions *da;
		struct ism_dest *d;
		char name[512];

		compile_retry(b, &r->retry, &o->retry);
		route_targets(b, r, o);
		d = (struct ism_dest *)o->dest;
		if (m == NULL || d == NULL)
			return NULL;
		if (r->name != NULL)
			snprintf(name, sizeof(name), "%s", r->name);
		else
			snprintf(name, sizeof(name), "%s/%s#%zu", vs->r.ns, vs->r.name, i);
		o->name = astr(b, name);
		for (size_t j = 0; j < r->n_match; j++)
			conv_match(b, &r->match[j], &m[j]);
		/* Destinations without headers of their own share their route's. */
		da = compile_dest_actions(b, r, NULL);
		for (size_t j = 0; j < r->n_dest; j++) {
			const struct ism_cm_dest *cd = &r->dest[j];

			d[j].act = has_ops(&cd->headers) || cd->headers.authority
				       ? compile_dest_actions(b, r, cd)
				       : da;
		}
		o->n_match = (uint32_t)r->n_match;
		o->match = m;
		o->timeout_ms = r->timeout_ms;
		o->act = compile_actions(b, r);
		o->fault = compile_fault(b, r->fault);
		o->cors = compile_cors(b, r->cors);
		/* One counter set per route and listener, whichever vhosts
		 * and gateways of the listener share it. */
		o->stats = MNEW(b, 1, struct ism_counters);
	}
	b->vs = NULL;
	b->vs_routes[vi] = routes;
	b->vs_routes_at[vi] = b->listener + 1;
	return routes;
}

/* Istio's sourceMatchHTTP for a gateway proxy: a match naming gateways
 * applies through those; else its sourceLabels must all be the appliance's
 * labels and its sourceNamespace the appliance's namespace. */
static bool match_applies(const struct ism_conf *c, const struct ism_cm_match *m, const char *gw)
{
	if (m->n_gateways > 0)
		return gw != NULL && ism_model_match_names_gateway(m, gw);
	if (!ism_model_labels_include(c->app.labels_at, m->source_labels, m->n_source_labels))
		return false;
	return m->source_ns == NULL || (c->app.ns != NULL && strcmp(m->source_ns, c->app.ns) == 0);
}

/* Whether a match of VirtualService vs names a port other than port. */
static bool other_port(const struct ism_cm_vs *vs, uint16_t port)
{
	for (size_t i = 0; i < vs->n_routes; i++)
		for (size_t j = 0; j < vs->routes[i].n_match; j++)
			if (vs->routes[i].match[j].port != 0 && vs->routes[i].match[j].port != port)
				return true;
	return false;
}

/* The routes of VirtualService vi for requests that came through Gateway gw
 * ("<ns>/<name>") on a listener of port port, their count in *n. A match
 * naming gateways applies only through one of them, one naming another port
 * not at all, and a route whose every match is left out is left out (Istio's
 * TranslateRoute and sourceMatchHTTP). Without such matches: the routes
 * compiled once. */
static const struct ism_route *routes_for_gateway(struct cbuild *b, size_t vi, const char *gw,
						  uint16_t port, uint32_t *n)
{
	const struct ism_cm_vs *vs = b->c->vss[vi];
	const struct ism_route *all = compile_routes(b, vi);
	struct ism_route *out;
	uint32_t k = 0;

	*n = (uint32_t)vs->n_routes;
	if ((!vs->match_source && !other_port(vs, port)) || all == NULL)
		return all;
	out = ANEW(b, vs->n_routes, struct ism_route);
	for (size_t i = 0; out != NULL && i < vs->n_routes; i++) {
		const struct ism_cm_route *r = &vs->routes[i];
		struct ism_match *m = r->n_match ? ANEW(b, r->n_match, struct ism_match) : NULL;
		uint32_t nm = 0;

		for (size_t j = 0; m != NULL && j < r->n_match; j++)
			if (match_applies(b->c, &r->match[j], gw) &&
			    (r->match[j].port == 0 || r->match[j].port == port))
				m[nm++] = all[i].match[j];
		if (r->n_match > 0 && nm == 0)
			continue;
		out[k] = all[i]; /* destinations, policies and counters shared */
		out[k].match = m;
		out[k].n_match = nm;
		k++;
	}
	*n = k;
	return out;
}

/* --- listeners --- */

/* The routes of listener l that have one name (two VirtualServices' routes
 * named alike) count in one set of counters: a route's series is named by
 * listener and route name, and two series of one name would make the whole
 * metrics page unreadable to Prometheus. */
static void one_counter_per_name(struct cbuild *b, const struct ism_listener *l)
{
	struct ism_strmap first; /* name -> index in owners */
	struct ism_counters **owners = NULL;
	size_t n = 0, cap = 0;

	ism_strmap_init(&first, b->seed);
	for (uint32_t set = 0; set < ism_listener_sets(l) && b->rc == 0; set++) {
		uint32_t nv;
		const struct ism_vhost *vh = ism_listener_set(l, set, &nv);

		for (uint32_t v = 0; v < nv && b->rc == 0; v++)
			for (uint32_t i = 0; i < vh[v].n_routes; i++) {
				struct ism_route *rt = (struct ism_route *)&vh[v].routes[i];
				uint32_t at;
				int rc;

				if (rt->stats == NULL)
					continue;
				rc = ism_strmap_add(&first, rt->name.p, rt->name.len, (uint32_t)n,
						    &at);
				if (rc == 0) {
					rt->stats = owners[at];
					continue;
				}
				if (rc < 0 || ism_grow(&owners, &cap, n, sizeof(*owners)) < 0) {
					b->rc = -ENOMEM;
					break;
				}
				owners[n++] = rt->stats;
			}
	}
	free(owners);
	ism_strmap_free(&first);
}

/* The servers of every Gateway, grouped by listening address and port. */
static void group_servers(struct cbuild *b)
{
	const struct ism_conf *c = b->c;
	struct sockaddr_storage *addrs; /* per server: its address, a key of by_addr */
	struct ism_strmap by_addr;	/* address -> index in groups */
	size_t n = 0, k = 0;

	ism_strmap_init(&by_addr, b->seed);
	for (size_t g = 0; g < c->n_gws; g++)
		n += c->gws[g]->n_servers;
	addrs = calloc(n ? n : 1, sizeof(*addrs));
	if (addrs == NULL)
		goto nomem;
	for (size_t g = 0; g < c->n_gws; g++) {
		for (size_t s = 0; s < c->gws[g]->n_servers; s++) {
			const struct ism_cm_server *srv = &c->gws[g]->servers[s];
			struct sockaddr_storage *ss = &addrs[k++];
			struct lgroup *lg;
			socklen_t len;
			uint32_t at;
			int rc;

			if (!ism_addr_parse(srv->bind ? srv->bind : c->app.listen, ss, &len))
				continue; /* validated already */
			set_port(ss, srv->port);
			rc = ism_strmap_add(&by_addr, (const char *)ss, len, (uint32_t)b->n_groups,
					    &at);
			if (rc < 0)
				goto nomem;
			if (rc == 0) {
				lg = &b->groups[at];
			} else {
				if (ism_grow(&b->groups, &b->cap_groups, b->n_groups, sizeof(*lg)) <
				    0)
					goto nomem;
				lg = &b->groups[b->n_groups++];
				memset(lg, 0, sizeof(*lg));
				lg->addr = *ss;
				lg->addrlen = len;
				lg->port = srv->port;
				lg->name = srv->port_name;
			}
			if (lg->n_srv == lg->cap_srv) {
				size_t cap = lg->cap_srv;

				if (ism_grow(&lg->gw, &cap, lg->n_srv, sizeof(*lg->gw)) < 0)
					goto nomem;
				cap = lg->cap_srv;
				if (ism_grow(&lg->gwi, &cap, lg->n_srv, sizeof(*lg->gwi)) < 0)
					goto nomem;
				cap = lg->cap_srv;
				if (ism_grow(&lg->srv, &cap, lg->n_srv, sizeof(*lg->srv)) < 0)
					goto nomem;
				lg->cap_srv = cap;
			}
			lg->gw[lg->n_srv] = c->gws[g];
			lg->gwi[lg->n_srv] = g;
			lg->srv[lg->n_srv++] = srv;
		}
	}
out:
	ism_strmap_free(&by_addr);
	free(addrs);
	return;
nomem:
	b->rc = -ENOMEM;
	goto out;
}

/* vs_at and vs_of_gw: the VirtualServices of each Gateway (resolved by the
 * cross-reference pass), each once, in file order. */
static void index_vs_by_gw(struct cbuild *b)
{
	const struct ism_conf *c = b->c;
	size_t *pos = calloc(c->n_gws + 1, sizeof(*pos));

	b->vs_at = calloc(c->n_gws + 1, sizeof(*b->vs_at));
	if (pos == NULL || b->vs_at == NULL)
		goto nomem;
	/* Two passes (count, then place); pos[g] - 1 is the last VirtualService
	 * counted for g, so that one naming a Gateway twice counts once. */
	for (int pass = 0; pass < 2; pass++) {
		for (size_t i = 0; i < c->n_vss; i++) {
			const struct ism_cm_vs *vs = c->vss[i];

			for (size_t j = 0; vs->gateway_idx != NULL && j < vs->n_gateways; j++) {
				size_t g = vs->gateway_idx[j];

				if (g == SIZE_MAX)
					continue;
				if (pass == 0 && pos[g] != i + 1) {
					pos[g] = i + 1;
					b->vs_at[g + 1]++;
				} else if (pass == 1 && (pos[g] == b->vs_at[g] ||
							 b->vs_of_gw[pos[g] - 1] != i)) {
					b->vs_of_gw[pos[g]++] = (uint32_t)i;
				}
			}
		}
		if (pass == 1)
			break;
		for (size_t g = 0; g < c->n_gws; g++)
			b->vs_at[g + 1] += b->vs_at[g];
		memcpy(pos, b->vs_at, c->n_gws * sizeof(*pos));
		b->vs_of_gw =
		    malloc((b->vs_at[c->n_gws] ? b->vs_at[c->n_gws] : 1) * sizeof(*b->vs_of_gw));
		if (b->vs_of_gw == NULL)
			goto nomem;
	}
	free(pos);
	return;
nomem:
	free(pos);
	b->rc = -ENOMEM;
}

/* Which VirtualService hosts the servers of a listener group serve, found
 * through an index of the servers' host patterns rather than by trying every
 * (VirtualService host, server host) pair, so that a Gateway with many hosts
 * and many VirtualServices compile in n log n. ism_model_bind_host stays the
 * rule: the index only finds the candidates it is asked about. */

enum bind_class {
	BIND_ANY = 0, /* "*" / or no namespace: any VirtualService namespace */
	BIND_DOT,     /* "./": the Gateway's namespace */
	BIND_NS,      /* "<ns>/": that namespace */
};

/* One host pattern of one server of the group. */
struct bind_entry {
	uint32_t g;	  /* Gateway index */
	uint32_t cls;	  /* enum bind_class */
	const char *ns;	  /* BIND_NS: the namespace; else "" */
	const char *rdns; /* the dns part, reversed: suffixes become prefixes */
	uint32_t s, p;	  /* server in the group, host of the server */
};

/* A (VirtualService host, server host) pair that binds, and the domain. */
struct bind_event {
	uint32_t vs, s, h, p;
	const char *dom;
};

struct binder {
	struct bind_entry *e; /* sorted by (g, cls, ns, rdns, s, p) */
	size_t n;
	char *rbuf; /* the reversed strings */
	struct bind_event *ev;
	size_t n_ev, cap_ev;
};

static void reverse(char *out, const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++)
		out[i] = s[len - 1 - i];
	out[len] = '\0';
}

static int entry_key_cmp(const struct bind_entry *a, uint32_t g, uint32_t cls, const char *ns,
			 const char *rdns)
{
	int c;

	if (a->g != g)
		return a->g < g ? -1 : 1;
	if (a->cls != cls)
		return a->cls < cls ? -1 : 1;
	c = strcmp(a->ns, ns);
	return c != 0 ? c : strcmp(a->rdns, rdns);
}

static int entry_cmp(const void *pa, const void *pb)
{
	const struct bind_entry *a = pa, *b = pb;
	int c = entry_key_cmp(a, b->g, b->cls, b->ns, b->rdns);

	if (c != 0)
		return c;
	if (a->s != b->s)
		return a->s < b->s ? -1 : 1;
	return a->p < b->p ? -1 : a->p > b->p;
}

static int binder_index(struct binder *x, const struct lgroup *lg)
{
	size_t total = 0, k = 0;
	char *r;

	x->n = 0;
	for (size_t s = 0; s < lg->n_srv; s++)
		for (size_t p = 0; p < lg->srv[s]->n_hosts; p++) {
			total += strlen(lg->srv[s]->hosts[p].dns) + 1;
			x->n++;
		}
	x->e = calloc(x->n ? x->n : 1, sizeof(*x->e));
	x->rbuf = r = malloc(total ? total : 1);
	if (x->e == NULL || x->rbuf == NULL)
		return -ENOMEM;
	for (size_t s = 0; s < lg->n_srv; s++) {
		for (size_t p = 0; p < lg->srv[s]->n_hosts; p++) {
			const struct ism_cm_srvhost *h = &lg->srv[s]->hosts[p];
			struct bind_entry *e = &x->e[k++];
			size_t len = strlen(h->dns);

			e->g = (uint32_t)lg->gwi[s];
			e->ns = "";
			if (h->ns == NULL || strcmp(h->ns, "*") == 0) {
				e->cls = BIND_ANY;
			} else if (strcmp(h->ns, ".") == 0) {
				e->cls = BIND_DOT;
			} else {
				e->cls = BIND_NS;
				e->ns = h->ns;
			}
			reverse(r, h->dns, len);
			e->rdns = r;
			r += len + 1;
			e->s = (uint32_t)s;
			e->p = (uint32_t)p;
		}
	}
	qsort(x->e, x->n, sizeof(*x->e), entry_cmp);
	return 0;
}

/* Adds an event for every entry of class (g, cls, ns) whose reversed pattern
 * is rdns (prefix false) or starts with it (prefix true) and that binds. */
static int binder_probe(struct binder *x, const struct lgroup *lg, uint32_t vi,
			const struct ism_cm_vs *vs, uint32_t hi, uint32_t g, uint32_t cls,
			const char *ns, const char *rdns, bool prefix)
{
	size_t lo = 0, hi_ = x->n, rl = strlen(rdns);

	while (lo < hi_) {
		size_t mid = lo + (hi_ - lo) / 2;

		if (entry_key_cmp(&x->e[mid], g, cls, ns, rdns) < 0)
			lo = mid + 1;
		else
			hi_ = mid;
	}
	for (size_t i = lo; i < x->n; i++) {
		const struct bind_entry *e = &x->e[i];
		const char *dom;

		if (e->g != g || e->cls != cls || strcmp(e->ns, ns) != 0 ||
		    (prefix ? strncmp(e->rdns, rdns, rl) : strcmp(e->rdns, rdns)) != 0)
			break;
		if (!ism_model_bind_host(&lg->srv[e->s]->hosts[e->p], lg->gw[e->s]->r.ns,
					 vs->hosts[hi], vs->r.ns, &dom))
			continue;
		if (ism_grow(&x->ev, &x->cap_ev, x->n_ev, sizeof(*x->ev)) < 0)
			return -ENOMEM;
		x->ev[x->n_ev++] = (struct bind_event){vi, e->s, hi, e->p, dom};
	}
	return 0;
}

/* The events of host hi of VirtualService vi on the servers of Gateway g in
 * class (cls, ns): the patterns that cover the host ("*", the host itself,
 * "*.<suffix>" for each suffix after a dot) and, for a wildcard host, the
 * patterns it covers (every one for "*", those ending in ".<suffix>" for
 * "*.<suffix>"). */
static int binder_host(struct binder *x, const struct lgroup *lg, uint32_t vi,
		       const struct ism_cm_vs *vs, uint32_t hi, uint32_t g, uint32_t cls,
		       const char *ns)
{
	const char *h = vs->hosts[hi];
	size_t hl = strlen(h);
	char r[600];
	int rc;

	/* Hosts are names of at most 253 bytes, or short names made into
	 * "<name>.<ns>.svc.cluster.local" in 512 (conf/model.c). */
	ISM_BUG_ON(hl + 2 > sizeof(r));
	rc = binder_probe(x, lg, vi, vs, hi, g, cls, ns, "*", false);
	if (rc == 0 && h[0] != '*') {
		reverse(r, h, hl);
		rc = binder_probe(x, lg, vi, vs, hi, g, cls, ns, r, false);
	}
	for (size_t k = 1; rc == 0 && k < hl; k++) {
		if (h[k] != '.')
			continue;
		reverse(r, h + k, hl - k);
		r[hl - k] = '*';
		r[hl - k + 1] = '\0';
		rc = binder_probe(x, lg, vi, vs, hi, g, cls, ns, r, false);
	}
	if (rc == 0 && h[0] == '*') {
		reverse(r, h + 1, hl - 1);
		rc = binder_probe(x, lg, vi, vs, hi, g, cls, ns, r, true);
	}
	return rc;
}

/* Every event of VirtualService vi on the servers of Gateway g, for the
 * server host patterns whose namespace part admits the VirtualService's. */
static int binder_vs(struct binder *x, const struct cbuild *b, const struct lgroup *lg, uint32_t vi,
		     uint32_t g)
{
	const struct ism_cm_vs *vs = b->c->vss[vi];
	bool own_ns = strcmp(b->c->gws[g]->r.ns, vs->r.ns) == 0;
	int rc = 0;

	for (uint32_t hi = 0; rc == 0 && hi < vs->n_hosts; hi++) {
		rc = binder_host(x, lg, vi, vs, hi, g, BIND_ANY, "");
		if (rc == 0 && own_ns)
			rc = binder_host(x, lg, vi, vs, hi, g, BIND_DOT, "");
		if (rc == 0)
			rc = binder_host(x, lg, vi, vs, hi, g, BIND_NS, vs->r.ns);
	}
	return rc;
}

/* The events of every VirtualService bound to a Gateway of the group. */
static int binder_events(struct binder *x, const struct cbuild *b, const struct lgroup *lg)
{
	/* Never NULL, even without events: the sorts and runs take it as is. */
	int rc = ism_grow(&x->ev, &x->cap_ev, 0, sizeof(*x->ev));

	if (rc == 0)
		rc = binder_index(x, lg);

	/* A Gateway's servers are next to each other in the group. */
	for (size_t s = 0; rc == 0 && s < lg->n_srv; s++) {
		size_t g = lg->gwi[s];

		if (s > 0 && lg->gwi[s - 1] == g)
			continue;
		for (size_t i = b->vs_at[g]; rc == 0 && i < b->vs_at[g + 1]; i++)
			rc = binder_vs(x, b, lg, b->vs_of_gw[i], (uint32_t)g);
	}
	return rc;
}

static void binder_free(struct binder *x)
{
	free(x->e);
	free(x->rbuf);
	free(x->ev);
}

/* Events of plaintext listeners: by VirtualService, then server, host of the
 * VirtualService, host of the server (the order domains are listed in). */
static int event_cmp_vs(const void *pa, const void *pb)
{
	const struct bind_event *a = pa, *b = pb;

	if (a->vs != b->vs)
		return a->vs < b->vs ? -1 : 1;
	if (a->s != b->s)
		return a->s < b->s ? -1 : 1;
	if (a->h != b->h)
		return a->h < b->h ? -1 : 1;
	return a->p < b->p ? -1 : a->p > b->p;
}

/* Events of HTTPS listeners: by server first (each has its own vhosts). */
static int event_cmp_srv(const void *pa, const void *pb)
{
	const struct bind_event *a = pa, *b = pb;

	if (a->s != b->s)
		return a->s < b->s ? -1 : 1;
	return event_cmp_vs(pa, pb);
}

/* The length of the run of events from ev[0] with its VirtualService. */
static size_t event_run(const struct bind_event *ev, size_t n)
{
	size_t i = 1;

	while (i < n && ev[i].vs == ev[0].vs)
		i++;
	return i;
}

/* Which servers of a listener group a vhost is built from: those with (1) or
 * without (0) httpsRedirect. */
static bool srv_selected(const struct lgroup *lg, int redirect, size_t s)
{
	return (int)lg->srv[s]->tls.https_redirect == redirect;
}

/* The vhost of one VirtualService from its events (one run) through Gateway
 * gwi (SIZE_MAX: every one), in vh; 1 when made, 0 when none of its domains are
 * served. */
static int emit_vhost(struct cbuild *b, const struct lgroup *lg, const struct bind_event *ev,
		      size_t n, int redirect, size_t gwi, struct ism_vhost *vh)
{
	const struct ism_cm_vs *vs = b->c->vss[ev[0].vs];
	const char **doms = calloc(n, sizeof(*doms));
	struct ism_strmap seen;
	struct ism_str *ds;
	size_t nd = 0;
	char vname[512];
	int rc = 0;

	ism_strmap_init(&seen, b->seed);
	if (doms == NULL || ism_strmap_reserve(&seen, n) < 0) {
		free(doms);
		b->rc = -ENOMEM;
		return 0;
	}
	for (size_t i = 0; rc >= 0 && i < n; i++) {
		if (!srv_selected(lg, redirect, ev[i].s) ||
		    (gwi != SIZE_MAX && lg->gwi[ev[i].s] != gwi))
			continue;
		rc = ism_strmap_add(&seen, ev[i].dom, strlen(ev[i].dom), 0, NULL);
		if (rc > 0)
			doms[nd++] = ev[i].dom;
	}
	ism_strmap_free(&seen);
	if (rc < 0) {
		free(doms);
		b->rc = -ENOMEM;
		return 0;
	}
	ds = nd ? ANEW(b, nd, struct ism_str) : NULL;
	for (size_t j = 0; ds != NULL && j < nd; j++)
		ds[j] = astr(b, doms[j]);
	free(doms);
	if (nd == 0 || ds == NULL)
		return 0;
	snprintf(vname, sizeof(vname), "%s/%s", vs->r.ns, vs->r.name);
	vh->name = astr(b, vname);
	vh->https_redirect = (uint8_t)redirect;
	vh->n_domains = (uint32_t)nd;
	vh->domains = ds;
	if (gwi == SIZE_MAX) {
		vh->routes = routes_for_gateway(b, ev[0].vs, NULL, lg->port, &vh->n_routes);
	} else {
		const struct ism_cm_gw *gw = b->c->gws[gwi];

		snprintf(vname, sizeof(vname), "%s/%s", gw->r.ns, gw->r.name);
		vh->routes = routes_for_gateway(b, ev[0].vs, vname, lg->port, &vh->n_routes);
	}
	/* No route of it applies here: istiod omits the VirtualService for
	 * this server ("no routes matched"), so its hosts are the other
	 * virtual hosts' to take (an HTTPS redirect's host keeps one). */
	if (vh->n_routes == 0 && !redirect && b->rc == 0) {
		*vh = (struct ism_vhost){0};
		return 0;
	}
	return 1;
}

/* The vhosts of the runs of n events (one run per VirtualService), appended
 * to vh; their count. */
static uint32_t emit_vhosts(struct cbuild *b, const struct lgroup *lg, const struct bind_event *ev,
			    size_t n, int redirect, struct ism_vhost *vh)
{
	uint32_t nv = 0;

	for (size_t i = 0; i < n && b->rc == 0;) {
		size_t run = event_run(ev + i, n - i);

		/* A VirtualService of tcp or tls routes only has no virtual host
		 * (nor has it in Istio: no HTTP route takes its domains). */
		if (b->c->vss[ev[i].vs]->n_routes == 0) {
			i += run;
			continue;
		}
		if (!b->c->vss[ev[i].vs]->match_source) {
			nv += (uint32_t)emit_vhost(b, lg, ev + i, run, redirect, SIZE_MAX, &vh[nv]);
			i += run;
			continue;
		}
		/* Routes that differ per gateway: a vhost per gateway, in the
		 * order the events name them. */
		for (size_t j = 0; j < run && b->rc == 0; j++) {
			size_t g = lg->gwi[ev[i + j].s], k = 0;

			while (k < j && lg->gwi[ev[i + k].s] != g)
				k++;
			if (k == j)
				nv +=
				    (uint32_t)emit_vhost(b, lg, ev + i, run, redirect, g, &vh[nv]);
		}
		i += run;
	}
	return nv;
}

/* Whether match m of a route on a listener of port port holds for every
 * request, as istiod's IsCatchAllRoute sees the route it makes of it: a path
 * prefix "/" or regex ".*" (or none), no header, query or claim condition
 * (method, scheme and authority are header matchers in Envoy), and a port
 * that is the listener's, if any. */
static bool match_catches_all(const struct ism_match *m, uint32_t port)
{
	const struct ism_strmatch *u = &m->uri;
	bool any_path = u->kind == ISM_SM_ANY ||
			(u->kind == ISM_SM_PREFIX && u->s.len == 1 && u->s.p[0] == '/') ||
			(u->kind == ISM_SM_REGEX && !u->search && u->s.len == 2 &&
			 memcmp(u->s.p, ".*", 2) == 0);

	return any_path && (m->port == 0 || m->port == port) && m->scheme.kind == ISM_SM_ANY &&
	       m->method.kind == ISM_SM_ANY && m->authority.kind == ISM_SM_ANY &&
	       m->n_headers == 0 && m->n_without_headers == 0 && m->n_query == 0 &&
	       m->n_claims == 0 && m->n_without_claims == 0;
}

/* The routes of a virtual host that several VirtualServices bind one domain
 * to (the n vhosts in[], in istiod's order), as istiod builds a gateway's
 * virtual host of the domain: each one's routes in turn, each match its own
 * route, a VirtualService's taken up to its first catch-all match (the rest
 * can never match: istiod leaves them out), then every catch-all route moved
 * behind the others, in their order (SortVHostRoutes). A route whose matches
 * end in a catch-all is split: its matches before it stay, as one route,
 * where the route was. Destinations, policies and counters are shared. */
static const struct ism_route *merge_routes(struct cbuild *b, const struct ism_vhost *const *in,
					    uint32_t n, uint32_t port, uint32_t *n_out)
{
	uint32_t total = 0, k = 0, nc = 0;
	struct ism_route *out, *all_catch;

	for (uint32_t i = 0; i < n; i++)
		total += in[i]->n_routes;
	out = ANEW(b, total + n, struct ism_route);
	all_catch = ANEW(b, n, struct ism_route); /* one per VirtualService at most */
	if (out == NULL || all_catch == NULL) {
		*n_out = 0;
		return NULL;
	}
	for (uint32_t i = 0; i < n; i++) {
		for (uint32_t r = 0; r < in[i]->n_routes; r++) {
			const struct ism_route *rt = &in[i]->routes[r];
			uint32_t c = 0;

			while (c < rt->n_match && !match_catches_all(&rt->match[c], port))
				c++;
			if (rt->n_match > 0 && c == rt->n_match) {
				out[k++] = *rt;
				continue;
			}
			if (c > 0) { /* the matches before the catch-all */
				out[k] = *rt;
				out[k++].n_match = c;
			}
			all_catch[nc] = *rt;
			if (rt->n_match > 0) {
				all_catch[nc].match = &rt->match[c];
				all_catch[nc].n_match = 1;
			}
			nc++;
			break;
		}
	}
	memcpy(&out[k], all_catch, nc * sizeof(*out));
	*n_out = k + nc;
	return out;
}

/* The n vhosts of a listener (or an HTTPS server) vh[], with each domain that
 * several of them serve (of one https_redirect) given a vhost of its own
 * whose routes are theirs merged (merge_routes), as istiod merges the
 * VirtualServices of one host on a gateway; the router would take the first
 * one's routes only. The merged vhost takes the place of the first that
 * served the domain. Returns the vhosts (vh itself when no domain is
 * shared), their count in *n. */
static struct ism_vhost *merge_shared_domains(struct cbuild *b, struct ism_vhost *vh, uint32_t *n,
					      uint32_t port)
{
	struct ism_strmap seen[2];
	uint32_t nd = 0, ng = 0, shared = 0, *group = NULL, *count = NULL, *at = NULL, *mem = NULL;
	const struct ism_vhost **in = NULL; /* one domain's vhosts */
	struct ism_vhost *out = NULL;
	uint32_t k = 0, d;

	for (uint32_t i = 0; i < *n; i++)
		nd += vh[i].n_domains;
	ism_strmap_init(&seen[0], b->seed);
	ism_strmap_init(&seen[1], b->seed);
	group = calloc(nd + 1, sizeof(*group)); /* per (vhost, domain): its domain's group */
	count = calloc(nd + 1, sizeof(*count)); /* per group: the vhosts serving it */
	at = calloc(nd + 2, sizeof(*at));	/* per group: its first member in mem */
	mem = calloc(nd + 1, sizeof(*mem));	/* the members (vhosts), group by group */
	in = calloc(*n + 1, sizeof(*in));
	if (group == NULL || count == NULL || at == NULL || mem == NULL || in == NULL)
		goto nomem;
	d = 0;
	for (uint32_t i = 0; i < *n; i++) {
		struct ism_strmap *m = &seen[vh[i].https_redirect != 0];

		for (uint32_t j = 0; j < vh[i].n_domains; j++, d++) {
			const struct ism_str *dom = &vh[i].domains[j];
			int rc = ism_strmap_add(m, dom->p, dom->len, ng, &group[d]);

			if (rc < 0)
				goto nomem;
			if (rc > 0)
				group[d] = ng++;
			shared += count[group[d]]++ == 1;
		}
	}
	if (shared == 0)
		goto done;
	for (uint32_t g = 0; g < ng; g++)
		at[g + 1] = at[g] + count[g];
	memset(count, 0, ng * sizeof(*count));
	d = 0;
	for (uint32_t i = 0; i < *n; i++)
		for (uint32_t j = 0; j < vh[i].n_domains; j++, d++)
			if (count[group[d]] == 0 || mem[at[group[d]] + count[group[d]] - 1] != i)
				mem[at[group[d]] + count[group[d]]++] = i;
	out = ANEW(b, *n + shared, struct ism_vhost);
	if (out == NULL)
		goto nomem;
	d = 0;
	for (uint32_t i = 0; i < *n; i++) {
		struct ism_str *own = ANEW(b, vh[i].n_domains, struct ism_str);
		uint32_t n_own = 0;

		if (own == NULL)
			goto nomem;
		for (uint32_t j = 0; j < vh[i].n_domains; j++, d++) {
			uint32_t g = group[d], nm = count[g];
			char name[512];
			size_t len = 0;

			if (nm == 1) {
				own[n_own++] = vh[i].domains[j];
				continue;
			}
			if (mem[at[g]] != i)
				continue; /* merged where the domain was first served */
			for (uint32_t m = 0; m < nm; m++) {
				in[m] = &vh[mem[at[g] + m]];
				if (len < sizeof(name))
					len +=
					    (size_t)snprintf(name + len, sizeof(name) - len, "%s%s",
							     m ? "," : "", in[m]->name.p);
			}
			out[k] = (struct ism_vhost){.name = astr(b, name),
						    .https_redirect = vh[i].https_redirect,
						    .n_domains = 1,
						    .domains = &vh[i].domains[j]};
			out[k].routes = merge_routes(b, in, nm, port, &out[k].n_routes);
			if (out[k++].routes == NULL)
				goto nomem;
		}
		if (n_own > 0) {
			out[k] = vh[i];
			out[k].n_domains = n_own;
			out[k++].domains = own;
		}
	}
	vh = out;
	*n = k;
	goto done;
nomem:
	b->rc = -ENOMEM;
done:
	ism_strmap_free(&seen[0]);
	ism_strmap_free(&seen[1]);
	free(group);
	free(count);
	free(at);
	free(mem);
	free(in);
	return vh;
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

/* How many VirtualServices n events (sorted) are of. */
static size_t count_vs(const struct bind_event *ev, size_t n)
{
	size_t count = 0;

	for (size_t i = 0; i < n; i += event_run(ev + i, n - i))
		count++;
	return count;
}

/* --- name indexes (struct ism_name_index) --- */

/* The names of entry i of an indexed array (*n of them). */
typedef const struct ism_str *names_fn(const void *arr, uint32_t i, uint32_t *n);

static const struct ism_str *vhost_names(const void *arr, uint32_t i, uint32_t *n)
{
	const struct ism_vhost *vh = arr;

	*n = vh[i].n_domains;
	return vh[i].domains;
}

static const struct ism_str *server_names(const void *arr, uint32_t i, uint32_t *n)
{
	const struct ism_tls_server *ts = arr;

	*n = ts[i].n_sni;
	return ts[i].sni;
}

/* Whether name is one an index takes: "*", "*.suffix", a partial wildcard
 * ("*-api.example.com": its suffix length in the index's partial set) or
 * exact, lowercase, within ISM_NAME_INDEX_MAX bytes. */
static bool indexable(const struct ism_str *name)
{
	if (name->len > ISM_NAME_INDEX_MAX)
		return false;
	for (uint32_t i = 0; i < name->len; i++)
		if ((name->p[i] >= 'A' && name->p[i] <= 'Z') || (name->p[i] == '*' && i > 0))
			return false;
	return true;
}

/* ix over the n entries of arr (none for a set of fewer than
 * ISM_NAME_INDEX_MIN names, or one with a name it cannot take: scanned). */
static void index_names(struct cbuild *b, struct ism_name_index *ix, const void *arr, uint32_t n,
			names_fn *names)
{
	struct ism_name_slot *slots;
	size_t total = 0, cap = 8;

	*ix = (struct ism_name_index){.any = -1, .seed = b->seed};
	for (uint32_t i = 0; i < n; i++) {
		uint32_t k;
		const struct ism_str *nm = names(arr, i, &k);

		for (uint32_t j = 0; j < k; j++)
			if (!indexable(&nm[j]))
				return;
		total += k;
	}
	if (total < ISM_NAME_INDEX_MIN)
		return;
	while (cap < 2 * total)
		cap *= 2;
	slots = ANEW(b, cap, struct ism_name_slot);
	if (slots == NULL)
		return;
	memset(slots, 0, cap * sizeof(*slots));
	for (uint32_t i = 0; i < n; i++) {
		uint32_t k;
		const struct ism_str *nm = names(arr, i, &k);

		for (uint32_t j = 0; j < k; j++) {
			bool wild = nm[j].len > 1 && nm[j].p[0] == '*';
			size_t off = wild; /* a wildcard by its ".suffix" */
			uint64_t h = ism_hash64(nm[j].p + off, nm[j].len - off, ix->seed);
			size_t at = h & (cap - 1);

			if (nm[j].len == 1 && nm[j].p[0] == '*') {
				if (ix->any < 0)
					ix->any = (int32_t)i;
				continue;
			}
			if (wild && nm[j].p[1] != '.' && nm[j].len - 1 < 8 * sizeof(ix->partial))
				ix->partial[(nm[j].len - 1) / 8] |=
				    (uint8_t)(1u << ((nm[j].len - 1) % 8));
			/* The first entry of a name keeps it, as a scan finds it. */
			while (slots[at].name != NULL &&
			       !(slots[at].hash == h && slots[at].wild == wild &&
				 slots[at].name->len == nm[j].len &&
				 memcmp(slots[at].name->p, nm[j].p, nm[j].len) == 0))
				at = (at + 1) & (cap - 1);
			if (slots[at].name == NULL)
				slots[at] = (struct ism_name_slot){
				    .hash = h, .name = &nm[j], .entry = i, .wild = wild};
		}
	}
	ix->slots = slots;
	ix->cap = (uint32_t)cap;
}

/* An HTTPS server of a listener: its SNI names, certificates and own routes,
 * from its n events. */
static void build_tls_server(struct cbuild *b, const struct lgroup *lg, size_t s,
			     const struct bind_event *ev, size_t n, struct ism_tls_server *ts)
{
	const struct ism_cm_server *srv = lg->srv[s];
	struct ism_str *sni = ANEW(b, srv->n_hosts, struct ism_str);
	struct ism_vhost *vh = ANEW(b, count_vs(ev, n), struct ism_vhost);

	if (sni == NULL || vh == NULL)
		return;
	ts->name = server_name(b, lg, s);
	for (size_t h = 0; h < srv->n_hosts; h++)
		sni[h] = astr(b, srv->hosts[h].dns);
	ts->sni = sni;
	ts->n_sni = (uint32_t)srv->n_hosts;
	copy_tls(b, &srv->tls.c, ISM_ALPN_H2 | ISM_ALPN_HTTP11, &ts->tls);
	ts->n_vhosts = emit_vhosts(b, lg, ev, n, 0, vh);
	ts->vhosts = merge_shared_domains(b, vh, &ts->n_vhosts, lg->port);
	index_names(b, &ts->vhost_index, ts->vhosts, ts->n_vhosts, vhost_names);
}

/* --- tcp and tls routes --- */

/* What of a tcp or tls route is the same wherever it is taken: compiled once
 * (struct cbuild l4), its parts in the arena. */
struct l4comp {
	struct ism_str name;
	const struct ism_dest *dest;
	uint32_t n_dest, total;
	struct ism_l4counters *stats;
	const struct ism_subnet **subnets; /* per match (malloc'd array) */
	const struct ism_cm_vs *vs;	   /* whose route it is */
	uint16_t port;			   /* of the listener dest was made for */
	bool on_listener;		   /* dest depends on the listener (dests_on_listener) */
};

/* The compiled routes of VirtualService vi's spec.tcp (tls 0) or spec.tls. */
static const struct l4comp *l4_routes(struct cbuild *b, size_t vi, int tls)
{
	const struct ism_cm_vs *vs = b->c->vss[vi];
	size_t n = tls ? vs->n_tls : vs->n_tcp;
	const struct ism_cm_l4route *rs = tls ? vs->tls : vs->tcp;
	struct l4comp *out;

	if (b->l4[tls][vi] != NULL)
		return b->l4[tls][vi];
	out = calloc(n ? n : 1, sizeof(*out));
	if (out == NULL) {
		b->rc = -ENOMEM;
		return NULL;
	}
	b->l4[tls][vi] = out;
	for (size_t i = 0; i < n && b->rc == 0; i++) {
		const struct ism_cm_l4route *r = &rs[i];
		char name[600];

		snprintf(name, sizeof(name), "%s/%s#%s%zu", vs->r.ns, vs->r.name,
			 tls ? "tls" : "tcp", i);
		out[i].name = astr(b, name);
		b->vs = vs;
		out[i].dest = compile_dests(b, r->dest, r->n_dest, &out[i].total);
		b->vs = NULL;
		out[i].n_dest = (uint32_t)r->n_dest;
		out[i].vs = vs;
		out[i].port = b->port;
		out[i].on_listener = dests_on_listener(r->dest, r->n_dest);
		/* One counter set per route, whichever matches and listeners take it. */
		out[i].stats = MNEW(b, 1, struct ism_l4counters);
		out[i].subnets = calloc(r->n_match ? r->n_match : 1, sizeof(*out[i].subnets));
		if (out[i].subnets == NULL) {
			b->rc = -ENOMEM;
			break;
		}
		for (size_t j = 0; j < r->n_match; j++) {
			size_t ns = r->match[j].n_subnets;
			struct ism_subnet *sn = ns ? ANEW(b, ns, struct ism_subnet) : NULL;

			if (sn != NULL)
				memcpy(sn, r->match[j].subnets,
				       r->match[j].n_subnets * sizeof(*sn));
			out[i].subnets[j] = sn;
		}
	}
	return out;
}

static void free_l4(struct cbuild *b)
{
	for (int tls = 0; tls < 2; tls++) {
		for (size_t vi = 0; b->l4[tls] != NULL && vi < b->c->n_vss; vi++) {
			const struct ism_cm_vs *vs = b->c->vss[vi];
			size_t n = tls ? vs->n_tls : vs->n_tcp;

			for (size_t i = 0; b->l4[tls][vi] != NULL && i < n; i++)
				free(b->l4[tls][vi][i].subnets);
			free(b->l4[tls][vi]);
		}
		free(b->l4[tls]);
	}
}

/* Entries of a listener or server while they are collected. */
struct l4list {
	struct ism_l4route *e;
	size_t n, cap;
	const char **sni; /* tls: per entry, its SNI host */
	size_t cap_sni;
};

/* Appends an entry for match mi of route mr (compiled: r); mi past its
 * matches: the entry of a route without any. Destinations to the listener's
 * port are made for the listener being built. */
static void l4_add(struct cbuild *b, struct l4list *x, const struct l4comp *r, size_t mi,
		   const struct ism_cm_l4route *mr)
{
	struct ism_l4route *e;

	if (ism_grow(&x->e, &x->cap, x->n, sizeof(*x->e)) < 0) {
		b->rc = -ENOMEM;
		return;
	}
	e = &x->e[x->n++];
	*e = (struct ism_l4route){.name = r->name,
				  .n_dest = r->n_dest,
				  .dest = r->dest,
				  .total_weight = r->total,
				  .stats = r->stats};
	if (r->on_listener && r->port != b->port) {
		b->vs = r->vs;
		e->dest = compile_dests(b, mr->dest, mr->n_dest, &e->total_weight);
		b->vs = NULL;
	}
	if (mi < mr->n_match) {
		e->n_subnets = (uint32_t)mr->match[mi].n_subnets;
		e->subnets = e->n_subnets ? r->subnets[mi] : NULL;
	}
}

/* The gateway a server of a listener group came with, as routes name one. */
static void gateway_name(const struct lgroup *lg, size_t s, char *out, size_t len)
{
	snprintf(out, len, "%s/%s", lg->gw[s]->r.ns, lg->gw[s]->r.name);
}

/* Istio's l4SingleMatch at a gateway: the match's port, if it has one, is
 * the listener's; its gateways and source conditions as an HTTP match's. */
static bool l4_applies(const struct ism_conf *c, const struct ism_cm_match *m, const char *gw,
		       uint16_t port)
{
	return (m->port == 0 || m->port == port) && match_applies(c, m, gw);
}

/* A server that takes no connection: said at load, as Envoy would close them. */
static void warn_no_l4(struct cbuild *b, const struct lgroup *lg, size_t s, const char *kind)
{
	const struct ism_cm_server *srv = lg->srv[s];
	char field[600];

	snprintf(field, sizeof(field), "%s: spec.servers[%zu]", lg->gw[s]->r.label,
		 (size_t)(srv - lg->gw[s]->servers));
	ism_diag_add(b->d, ISM_DIAG_WARNING, b->c->file, srv->at ? srv->at->line : 0,
		     srv->at ? srv->at->col : 0, field,
		     "no %s route of a VirtualService bound to it applies on port %u: its "
		     "connections are closed",
		     kind, lg->port);
}

/* The tcp routes of server s of the group, from its events (sorted by
 * VirtualService): every tcp route whose match holds, in order, into *e and
 * *n (none: a warning; *e NULL). */
static void tcp_entries(struct cbuild *b, const struct lgroup *lg, size_t s,
			const struct bind_event *ev, size_t n, const struct ism_l4route **e,
			uint32_t *n_e)
{
	struct l4list x = {0};
	char gw[600];

	*e = NULL;
	*n_e = 0;
	gateway_name(lg, s, gw, sizeof(gw));
	for (size_t i = 0; i < n && b->rc == 0; i += event_run(ev + i, n - i)) {
		const struct ism_cm_vs *vs = b->c->vss[ev[i].vs];
		const struct l4comp *rc = l4_routes(b, ev[i].vs, 0);

		for (size_t r = 0; rc != NULL && r < vs->n_tcp && b->rc == 0; r++) {
			const struct ism_cm_l4route *mr = &vs->tcp[r];

			if (mr->n_match == 0)
				l4_add(b, &x, &rc[r], 0, mr);
			for (size_t j = 0; j < mr->n_match; j++)
				if (l4_applies(b->c, &mr->match[j].m, gw, lg->port))
					l4_add(b, &x, &rc[r], j, mr);
		}
	}
	if (x.n > 0) {
		struct ism_l4route *out = ANEW(b, x.n, struct ism_l4route);

		if (out != NULL) {
			memcpy(out, x.e, x.n * sizeof(*out));
			*e = out;
			*n_e = (uint32_t)x.n;
		}
	} else if (b->rc == 0) {
		warn_no_l4(b, lg, s, "tcp");
	}
	free(x.e);
}

/* A TCP listener's routes: its one server's. */
static void build_tcp_routes(struct cbuild *b, const struct lgroup *lg, const struct bind_event *ev,
			     size_t n, struct ism_listener *l)
{
	tcp_entries(b, lg, 0, ev, n, &l->tcp_routes, &l->n_tcp);
}

/* A TLS server that terminates TLS for tcp routes: its TLS as an HTTPS
 * server's, h2 and http/1.1 by ALPN too (Istio's BuildListenerTLSContext for
 * TCP), its routes as a TCP server's (Istio's
 * buildGatewayNetworkFiltersFromTCPRoutes serves both); its hosts are its
 * server names while it has a route. */
static void build_tls_tcp(struct cbuild *b, const struct lgroup *lg, size_t s,
			  const struct bind_event *ev, size_t n, struct ism_tls_server *ts)
{
	const struct ism_cm_server *srv = lg->srv[s];
	struct ism_str *sni = ANEW(b, srv->n_hosts, struct ism_str);

	if (sni == NULL)
		return;
	ts->name = server_name(b, lg, s);
	ts->tcp = 1;
	copy_tls(b, &srv->tls.c, ISM_ALPN_H2 | ISM_ALPN_HTTP11, &ts->tls);
	tcp_entries(b, lg, s, ev, n, &ts->l4, &ts->n_l4);
	for (size_t h = 0; h < srv->n_hosts; h++)
		sni[h] = astr(b, srv->hosts[h].dns);
	ts->sni = sni;
	ts->n_sni = ts->n_l4 > 0 ? (uint32_t)srv->n_hosts : 0;
}

/* How specific an SNI pattern is, as Envoy ranks server names: an exact name
 * first, then wildcards by the length of their suffix, "*" last. */
static uint32_t sni_rank(const char *p)
{
	if (p[0] != '*')
		return UINT32_MAX;
	return (uint32_t)strlen(p) - 1;
}

/* A tls match with an SNI host another match of the listener has already
 * is left out, as Istio leaves it out (Envoy refuses two filter chains with
 * the same server name): its position, in a warning. */
static void warn_sni_taken(struct cbuild *b, const struct ism_cm_vs *vs, size_t r, size_t j,
			   size_t k)
{
	const struct ism_node *at = vs->tls[r].match[j].sni_at;
	char field[600];

	at = at != NULL && k < at->n ? at->items[k] : at;
	snprintf(field, sizeof(field), "%s: spec.tls[%zu].match[%zu].sniHosts[%zu]", vs->r.label, r,
		 j, k);
	ism_diag_add(b->d, ISM_DIAG_WARNING, b->c->file, at ? at->line : 0, at ? at->col : 0, field,
		     "SNI host \"%s\" is taken by an earlier tls match on this port: this match "
		     "is left out, as Istio leaves it out",
		     vs->tls[r].match[j].sni[k]);
}

/* The SNI hosts the tls matches of a listener took, and which match took
 * each: a VirtualService bound to two passthrough servers of the port is
 * taken through the first, its matches left alone through the second. */
struct sni_claims {
	struct ism_strmap by_name; /* SNI host -> index in owner */
	const struct ism_cm_l4match **owner;
	size_t n, cap;
};

/* 1 when every SNI host of match m was free and is now taken by it, 0 when m
 * took them through an earlier server, -1 when another match took one (its
 * index in *k). */
static int sni_claim(struct cbuild *b, struct sni_claims *c, const struct ism_cm_l4match *m,
		     size_t *k)
{
	uint32_t at;

	for (*k = 0; *k < m->n_sni; (*k)++)
		if (ism_strmap_get(&c->by_name, m->sni[*k], strlen(m->sni[*k]), &at))
			return c->owner[at] == m ? 0 : -1;
	if (ism_grow(&c->owner, &c->cap, c->n, sizeof(*c->owner)) < 0) {
		b->rc = -ENOMEM;
		return 0;
	}
	c->owner[c->n] = m;
	for (size_t i = 0; i < m->n_sni; i++)
		if (ism_strmap_add(&c->by_name, m->sni[i], strlen(m->sni[i]), (uint32_t)c->n,
				   NULL) < 0)
			b->rc = -ENOMEM;
	c->n++;
	return 1;
}

/* Adds an entry per SNI host of match j of tls route mr (compiled: rc). */
static void add_tls_match(struct cbuild *b, struct l4list *x, const struct l4comp *rc,
			  const struct ism_cm_l4route *mr, size_t j)
{
	const struct ism_cm_l4match *m = &mr->match[j];

	for (size_t k = 0; k < m->n_sni && b->rc == 0; k++) {
		size_t same = 0;

		while (same < k && strcmp(m->sni[same], m->sni[k]) != 0)
			same++;
		if (same < k)
			continue; /* written twice in the match */
		if (ism_grow(&x->sni, &x->cap_sni, x->n, sizeof(*x->sni)) < 0) {
			b->rc = -ENOMEM;
			return;
		}
		x->sni[x->n] = m->sni[k];
		l4_add(b, x, rc, j, mr);
	}
}

static int sni_order_cmp(const void *pa, const void *pb, void *ctx)
{
	size_t a = *(const size_t *)pa, b = *(const size_t *)pb;
	const char *const *sni = ctx;
	uint32_t ra = sni_rank(sni[a]), rb = sni_rank(sni[b]);

	if (ra != rb)
		return ra > rb ? -1 : 1;
	return a < b ? -1 : a > b;
}

/* A server that passes TLS through: the tls routes of the VirtualServices
 * bound to it (its events ev[0..n), by VirtualService), one entry per SNI
 * host, the most specific first as Envoy picks a filter chain by server name,
 * then in Istio's order. Its server names are those SNI hosts, which are what
 * Envoy's filter chains for it match (the server's own hosts only choose the
 * VirtualServices). claimed: the SNI hosts taken on the listener so far. */
static void build_passthrough(struct cbuild *b, const struct lgroup *lg, size_t s,
			      const struct bind_event *ev, size_t n, struct sni_claims *claimed,
			      struct ism_tls_server *ts)
{
	bool taken_here = false; /* by a match that another server of the port has */
	struct l4list x = {0};
	struct ism_l4route *e;
	struct ism_str *sni;
	size_t *idx = NULL, k;
	char gw[600];

	ts->name = server_name(b, lg, s);
	ts->passthrough = 1;
	gateway_name(lg, s, gw, sizeof(gw));
	for (size_t i = 0; i < n && b->rc == 0; i += event_run(ev + i, n - i)) {
		const struct ism_cm_vs *vs = b->c->vss[ev[i].vs];
		const struct l4comp *rc = l4_routes(b, ev[i].vs, 1);

		for (size_t r = 0; rc != NULL && r < vs->n_tls && b->rc == 0; r++) {
			for (size_t j = 0; j < vs->tls[r].n_match && b->rc == 0; j++) {
				if (!l4_applies(b->c, &vs->tls[r].match[j].m, gw, lg->port))
					continue;
				switch (sni_claim(b, claimed, &vs->tls[r].match[j], &k)) {
				case 1:
					add_tls_match(b, &x, &rc[r], &vs->tls[r], j);
					break;
				case 0:
					taken_here = true;
					break;
				default:
					warn_sni_taken(b, vs, r, j, k);
				}
			}
		}
	}
	if (x.n == 0 && !taken_here && b->rc == 0)
		warn_no_l4(b, lg, s, "tls");
	idx = malloc((x.n ? x.n : 1) * sizeof(*idx));
	e = ANEW(b, x.n, struct ism_l4route);
	sni = ANEW(b, x.n, struct ism_str);
	if (idx == NULL || e == NULL || sni == NULL || b->rc < 0) {
		if (b->rc == 0)
			b->rc = -ENOMEM;
		goto out;
	}
	for (size_t i = 0; i < x.n; i++)
		idx[i] = i;
	qsort_r(idx, x.n, sizeof(*idx), sni_order_cmp, x.sni);
	for (size_t i = 0; i < x.n; i++) {
		e[i] = x.e[idx[i]];
		sni[i] = astr(b, x.sni[idx[i]]);
		e[i].sni = &sni[i];
		e[i].n_sni = 1;
	}
	ts->l4 = e;
	ts->n_l4 = (uint32_t)x.n;
	ts->sni = sni;
	ts->n_sni = (uint32_t)x.n;
out:
	free(idx);
	free(x.e);
	free(x.sni);
}

/* A VirtualService bound to a Gateway whose tcp (tls) routes no TCP
 * (passthrough) server took: said at load, as nothing would otherwise tell. */
static void warn_l4_unused(struct cbuild *b)
{
	static const char *const kinds[] = {"tcp", "tls"};
	static const char *const servers[] = {"TCP or TLS-terminating TLS server",
					      "TLS passthrough server"};

	for (size_t vi = 0; vi < b->c->n_vss; vi++) {
		const struct ism_cm_vs *vs = b->c->vss[vi];

		for (int tls = 0; tls < 2; tls++) {
			const struct ism_node *at =
			    ism_node_get(ism_node_get(vs->r.at, "spec", NULL), kinds[tls], NULL);
			char field[600];

			if ((tls ? vs->n_tls : vs->n_tcp) == 0 || vs->n_gateways == 0 ||
			    b->l4[tls][vi] != NULL)
				continue;
			snprintf(field, sizeof(field), "%s: spec.%s", vs->r.label, kinds[tls]);
			ism_diag_add(b->d, ISM_DIAG_WARNING, b->c->file, at ? at->line : 0,
				     at ? at->col : 0, field,
				     "no %s of its gateways binds its hosts: these routes take no "
				     "connection",
				     servers[tls]);
		}
	}
}

/* The servers of a TLS listener (HTTPS and passthrough), in the order of
 * the file, each from its events. */
static void build_tls_servers(struct cbuild *b, const struct lgroup *lg, struct binder *x,
			      struct ism_listener *l)
{
	struct ism_tls_server *ts = ANEW(b, lg->n_srv, struct ism_tls_server);
	struct sni_claims claimed = {0};
	size_t i = 0;

	ism_strmap_init(&claimed.by_name, b->seed);
	qsort(x->ev, x->n_ev, sizeof(*x->ev), event_cmp_srv);
	for (size_t s = 0; ts != NULL && s < lg->n_srv && b->rc == 0; s++) {
		size_t n = 0;

		while (i + n < x->n_ev && x->ev[i + n].s == s)
			n++;
		if (lg->srv[s]->kind == ISM_SRV_PASSTHROUGH)
			build_passthrough(b, lg, s, x->ev + i, n, &claimed, &ts[s]);
		else if (lg->srv[s]->kind == ISM_SRV_TLS_TCP)
			build_tls_tcp(b, lg, s, x->ev + i, n, &ts[s]);
		else
			build_tls_server(b, lg, s, x->ev + i, n, &ts[s]);
		i += n;
	}
	ism_strmap_free(&claimed.by_name);
	free(claimed.owner);
	l->tls = ts;
	l->n_tls = ts ? (uint32_t)lg->n_srv : 0;
	index_names(b, &l->sni_index, l->tls, l->n_tls, server_names);
}

static void build_listener(struct cbuild *b, const struct lgroup *lg, struct ism_listener *l)
{
	struct binder x = {0};
	struct ism_vhost *vh;
	char name[16];

	snprintf(name, sizeof(name), "%u", lg->port);
	l->name = astr(b, lg->name ? lg->name : name);
	l->addr = lg->addr;
	l->addrlen = lg->addrlen;
	l->port = lg->port;
	l->proxy_protocol = b->proxy_protocol[lg->port];
	for (size_t i = 0; i < lg->n_srv; i++)
		l->grpc_web |= strcmp(lg->srv[i]->protocol, "GRPC-WEB") == 0;
	if (binder_events(&x, b, lg) < 0) {
		b->rc = -ENOMEM;
		goto out;
	}
	if (lg->srv[0]->kind == ISM_SRV_TCP) {
		/* The port's one server (the loader checked it). */
		l->tcp = 1;
		qsort(x.ev, x.n_ev, sizeof(*x.ev), event_cmp_vs);
		build_tcp_routes(b, lg, x.ev, x.n_ev, l);
		goto out;
	}
	if (ism_srv_class(lg->srv[0]->kind) == ISM_SRV_HTTPS) {
		/* Every server of the port is HTTPS or passes TLS through (the
		 * loader checked it). */
		build_tls_servers(b, lg, &x, l);
		goto out;
	}
	l->peer_mtls = b->peer_mtls[lg->port];
	l->h2c = 1;
	qsort(x.ev, x.n_ev, sizeof(*x.ev), event_cmp_vs);
	/* Two per VirtualService and gateway at most (redirecting servers and
	 * the others), and one per server with httpsRedirect. */
	vh = ANEW(b, 2 * x.n_ev + lg->n_srv, struct ism_vhost);
	if (vh == NULL)
		goto out;
	l->vhosts = vh;
	/* The redirecting vhosts first: a domain that a server with httpsRedirect
	 * and one without both serve is redirected (the first of equal rank wins),
	 * as Istio sets require_tls on the virtual host they share. */
	for (int redirect = 1; redirect >= 0; redirect--) {
		l->n_vhosts += emit_vhosts(b, lg, x.ev, x.n_ev, redirect, vh + l->n_vhosts);
		if (redirect)
			l->n_vhosts += build_redirect_vhosts(b, lg, vh + l->n_vhosts);
	}
	l->vhosts = merge_shared_domains(b, vh, &l->n_vhosts, lg->port);
	index_names(b, &l->vhost_index, l->vhosts, l->n_vhosts, vhost_names);
out:
	binder_free(&x);
}

/* --- the table --- */

/* The fields an HTTP/1.1 head from an upstream gets (spec.proxyHeaders), as
 * one run of bytes: struct ism_table.own_h1. */
static void own_h1(struct cbuild *b, const struct ism_cm_appliance *a, struct ism_table *t)
{
	char buf[ISM_SERVER_MAX + 64];

	/* The server value is at most ISM_SERVER_MAX bytes (checked). */
	snprintf(buf, sizeof(buf), "%s%s%s%s", a->server[0] ? "server: " : "", a->server,
		 a->server[0] ? "\r\n" : "", a->debug_headers ? ISM_SVC_TIME_FIELD : "");
	t->own_h1 = astr(b, buf);
	t->own_h1_server = a->server[0] ? (uint32_t)(strlen(a->server) + 10) : 0;
}

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
		ops[i].alt_name = astrn(b, m->ops[i].alt_name.p, m->ops[i].alt_name.len);
	}
	t->ops = ops;
	/* The program is position-independent: its bytes as they are. */
	if (m->filter != NULL) {
		void *f = aalloc(b, m->filter_size, 1, 16);

		if (f != NULL)
			memcpy(f, m->filter, m->filter_size);
		t->filter = f;
	}
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
	t->trusted_proxies = a->trusted_proxies;
	t->fcc = a->fcc;
	t->preserve_rid = a->preserve_rid;
	t->server = astr(b, a->server);
	t->log_level = a->log_level;
	t->debug_headers = a->debug_headers;
	t->attempt_count = a->attempt_count;
	t->request_id = a->request_id;
	t->xf_port = a->xf_port;
	t->xf_host = a->xf_host;
	own_h1(b, a, t);
	/* Served on plaintext listeners (PeerAuthentication), which take HTTP/2. */
	copy_tls(b, &a->mesh, ISM_ALPN_H2 | ISM_ALPN_HTTP11, &t->mesh);
}

/* --- AuthorizationPolicy: Envoy's RBAC filters (conf/authz.c) --- */

/* Condition c as the table's: its values, then its notValues negated, each a
 * condition of their own (out has room for two). How many were made. */
static uint32_t conv_az_cond(struct cbuild *b, const struct ism_cm_az_cond *c,
			     struct ism_az_cond *out)
{
	const struct ism_az_val *lists[2] = {c->values, c->nots};
	const size_t counts[2] = {c->n_values, c->n_nots};
	uint32_t made = 0;

	for (int neg = 0; neg < 2; neg++) {
		struct ism_az_val *v = counts[neg] ? ANEW(b, counts[neg], struct ism_az_val) : NULL;

		if (v == NULL)
			continue;
		for (size_t i = 0; i < counts[neg]; i++) {
			const struct ism_az_val *in = &lists[neg][i];

			v[i] = *in;
			if (in->m.s.p != NULL)
				conv_sm(b, &(struct ism_cm_sm){in->m.kind, in->m.s.p},
					in->m.ignore_case, &v[i].m);
			if (in->sub.s.p != NULL)
				conv_sm(b, &(struct ism_cm_sm){in->sub.kind, in->sub.s.p}, false,
					&v[i].sub);
		}
		out[made++] = (struct ism_az_cond){.attr = (uint8_t)c->attr,
						   .negate = (uint8_t)neg,
						   .name = astr(b, c->name),
						   .n = (uint32_t)counts[neg],
						   .v = v};
	}
	return made;
}

/* The conditions of x (a source or an operation) and y (the rule's when keys
 * of the same side) as one AND, for a TCP port's filter when tcp: there,
 * istiod leaves an HTTP attribute's values out of a DENY (or AUDIT) rule,
 * which so denies more, and the whole rule out of an ALLOW filter (false). */
static bool conv_az_and(struct cbuild *b, const struct ism_cm_az_and *x,
			const struct ism_cm_az_and *y, bool tcp, bool allow, struct ism_az_and *out)
{
	const struct ism_cm_az_and *lists[2] = {x, y};
	size_t cap = 2 * (x->n + y->n);
	struct ism_az_cond *c = cap ? ANEW(b, cap, struct ism_az_cond) : NULL;

	*out = (struct ism_az_and){.c = c};
	for (int k = 0; k < 2; k++)
		for (size_t i = 0; i < lists[k]->n; i++) {
			if (tcp && lists[k]->c[i].http_only) {
				if (allow)
					return false;
				continue;
			}
			if (c != NULL)
				out->n += conv_az_cond(b, &lists[k]->c[i], c + out->n);
		}
	return true;
}

/* Rule r as Envoy's policy: one permission per operation (one without),
 * one principal per source (one without); false when it is left out. */
static bool conv_az_rule(struct cbuild *b, const struct ism_cm_az_rule *r, bool tcp, bool allow,
			 struct ism_az_policy *p)
{
	static const struct ism_cm_az_and none;
	uint32_t np = r->n_to ? (uint32_t)r->n_to : 1, nq = r->n_from ? (uint32_t)r->n_from : 1;
	struct ism_az_and *perm = ANEW(b, np, struct ism_az_and);
	struct ism_az_and *prin = ANEW(b, nq, struct ism_az_and);

	if (perm == NULL || prin == NULL)
		return false;
	for (uint32_t i = 0; i < np; i++)
		if (!conv_az_and(b, r->n_to ? &r->to[i] : &none, &r->when_perm, tcp, allow,
				 &perm[i]))
			return false;
	for (uint32_t i = 0; i < nq; i++)
		if (!conv_az_and(b, r->n_from ? &r->from[i] : &none, &r->when_prin, tcp, allow,
				 &prin[i]))
			return false;
	*p = (struct ism_az_policy){.n_perm = np, .n_prin = nq, .perm = perm, .prin = prin};
	return true;
}

static int az_policy_cmp(const void *a, const void *b)
{
	return strcmp(((const struct ism_az_policy *)a)->details.p,
		      ((const struct ism_az_policy *)b)->details.p);
}

/* Whether policy az is enforced: not a dry run, except a CUSTOM one, whose
 * rules istiod has call the authorizer all the same. */
static bool enforced(const struct ism_cm_az *az)
{
	return !az->dry_run || az->action == ISM_AZ_CUSTOM;
}

/* The RBAC filter of action (ALLOW, DENY or CUSTOM), for TCP ports when tcp:
 * the rules of the enforced policies that apply, by name as Envoy's engine
 * holds them. An AUDIT policy decides nothing, a dry-run one is not
 * enforced; an ALLOW policy without rules turns the filter on and adds no
 * rule (Envoy's policy that never matches). CUSTOM rules are built as DENY
 * ones (istiod's shadow rules). */
static void conv_az_rbac(struct cbuild *b, enum ism_az_action action, bool tcp,
			 struct ism_az_rbac *out)
{
	const struct ism_conf *c = b->c;
	struct ism_az_policy *p;
	size_t n = 0;

	for (size_t i = 0; i < c->n_laters; i++) {
		const struct ism_cm_az *az = c->laters[i]->az;

		if (az != NULL && az->action == action && enforced(az)) {
			out->on = 1;
			n += az->n_rules;
		}
	}
	p = n ? ANEW(b, n, struct ism_az_policy) : NULL;
	for (size_t i = 0; p != NULL && i < c->n_laters; i++) {
		const struct ism_cm_later *l = c->laters[i];
		char name[600];

		if (l->az == NULL || l->az->action != action || !enforced(l->az))
			continue;
		for (size_t j = 0; j < l->az->n_rules; j++) {
			if (!conv_az_rule(b, &l->az->rules[j], tcp, action == ISM_AZ_ALLOW,
					  &p[out->n]))
				continue;
			snprintf(name, sizeof(name), ISM_AZ_DETAILS "ns[%s]-policy[%s]-rule[%zu]]",
				 l->r.ns, l->r.name, j);
			p[out->n++].details = astr(b, name);
		}
	}
	if (p != NULL)
		qsort(p, out->n, sizeof(*p), az_policy_cmp);
	out->p = p;
}

static struct ism_xa_pats conv_xa_pats(struct cbuild *b, const struct ism_cm_xa_pats *in)
{
	struct ism_strmatch *m = in->n ? ANEW(b, in->n, struct ism_strmatch) : NULL;

	for (size_t i = 0; m != NULL && i < in->n; i++) {
		const char *s = in->p[i];
		size_t len = strlen(s);

		if (s[0] == '*')
			m[i] = (struct ism_strmatch){.kind = ISM_SM_SUFFIX,
						     .s = astrn(b, s + 1, len - 1)};
		else if (s[len - 1] == '*')
			m[i] =
			    (struct ism_strmatch){.kind = ISM_SM_PREFIX, .s = astrn(b, s, len - 1)};
		else
			m[i] = (struct ism_strmatch){.kind = ISM_SM_EXACT, .s = astrn(b, s, len)};
		m[i].ignore_case = 1;
	}
	return (struct ism_xa_pats){m != NULL ? (uint32_t)in->n : 0, m};
}

/* The provider the CUSTOM policies name (the loader checked it is one, the
 * same for all); NULL without CUSTOM rules. */
static const struct ism_extauthz *conv_extauthz(struct cbuild *b)
{
	const struct ism_conf *c = b->c;
	const struct ism_cm_xa *x = NULL;
	struct ism_extauthz *out;
	struct ism_xa_field *add;

	for (size_t i = 0; x == NULL && i < c->n_laters; i++) {
		const struct ism_cm_az *az = c->laters[i]->az;

		for (size_t j = 0; az != NULL && az->action == ISM_AZ_CUSTOM &&
				   az->provider != NULL && j < c->app.n_xas;
		     j++)
			if (strcmp(c->app.xas[j].name, az->provider) == 0)
				x = &c->app.xas[j];
	}
	if (x == NULL || (out = ANEW(b, 1, struct ism_extauthz)) == NULL)
		return NULL;
	*out = (struct ism_extauthz){.cluster = cluster_index(b, &x->dest),
				     .timeout_ms = x->timeout_ms,
				     .status_on_error = x->status_on_error,
				     .fail_open = x->fail_open,
				     .grpc = x->grpc,
				     .body_max = x->body_max,
				     .body_partial = x->body_partial,
				     .body_bytes = x->body_bytes,
				     .deny_all = !x->down_deny.set,
				     .name = astr(b, x->name),
				     .path_prefix = astr(b, x->path_prefix),
				     .req = conv_xa_pats(b, &x->req),
				     .up = conv_xa_pats(b, &x->up),
				     .down_allow = conv_xa_pats(b, &x->down_allow),
				     .down_deny = conv_xa_pats(b, &x->down_deny)};
	add = x->n_add ? ANEW(b, x->n_add, struct ism_xa_field) : NULL;
	for (size_t i = 0; add != NULL && i < x->n_add; i++)
		add[i] = (struct ism_xa_field){astr(b, x->add_name[i]), astr(b, x->add_value[i])};
	out->n_add = add != NULL ? (uint32_t)x->n_add : 0;
	out->add = add;
	return out;
}

static void conv_authz(struct cbuild *b, struct ism_authz *out)
{
	conv_az_rbac(b, ISM_AZ_DENY, false, &out->deny);
	conv_az_rbac(b, ISM_AZ_ALLOW, false, &out->allow);
	conv_az_rbac(b, ISM_AZ_DENY, true, &out->tcp_deny);
	conv_az_rbac(b, ISM_AZ_ALLOW, true, &out->tcp_allow);
	conv_az_rbac(b, ISM_AZ_CUSTOM, false, &out->custom);
	if (out->custom.n > 0)
		out->xa = conv_extauthz(b);
	if (out->xa == NULL)
		out->custom = (struct ism_az_rbac){0};
}

/* --- RequestAuthentication: Envoy's jwt_authn providers (conf/authn.c) --- */

static const struct ism_str *conv_strs(struct cbuild *b, const char *const *in, size_t n)
{
	struct ism_str *out = n ? ANEW(b, n, struct ism_str) : NULL;

	for (size_t i = 0; out != NULL && i < n; i++)
		out[i] = astr(b, in[i]);
	return out;
}

static void conv_jwt_provider(struct cbuild *b, const struct ism_cm_jwt_rule *r,
			      struct ism_jwt_provider *p)
{
	struct ism_jwt_loc *loc = r->n_loc ? ANEW(b, r->n_loc, struct ism_jwt_loc) : NULL;
	struct ism_jwt_claim_hdr *ch =
	    r->n_claim_hdrs ? ANEW(b, r->n_claim_hdrs, struct ism_jwt_claim_hdr) : NULL;

	*p = (struct ism_jwt_provider){.issuer = astr(b, r->issuer),
				       .n_aud = (uint32_t)r->n_aud,
				       .aud = conv_strs(b, r->aud, r->n_aud),
				       .jwks = astr(b, r->jwks),
				       .n_loc = loc != NULL ? (uint32_t)r->n_loc : 0,
				       .loc = loc,
				       .forward = r->forward,
				       .payload_header = astr(b, r->payload_header),
				       .n_claim_hdrs = ch != NULL ? (uint32_t)r->n_claim_hdrs : 0,
				       .claim_hdrs = ch,
				       .n_spaced = (uint32_t)r->n_spaced,
				       .spaced = conv_strs(b, r->spaced, r->n_spaced)};
	for (size_t i = 0; loc != NULL && i < r->n_loc; i++)
		loc[i] = (struct ism_jwt_loc){.where = r->loc[i].where,
					      .name = astr(b, r->loc[i].name.p),
					      .prefix = astr(b, r->loc[i].prefix.p)};
	for (size_t i = 0; ch != NULL && i < r->n_claim_hdrs; i++)
		ch[i] = (struct ism_jwt_claim_hdr){.claim = astr(b, r->claim_hdrs[i].claim.p),
						   .header = astr(b, r->claim_hdrs[i].header.p)};
}

/* The jwtRules of the RequestAuthentications that apply, each a provider, by
 * issuer as istiod sorts them (in document order among equal issuers). */
static void conv_authn(struct cbuild *b, struct ism_jwt_authn *out)
{
	const struct ism_conf *c = b->c;
	struct ism_jwt_provider *p;
	size_t n = 0;

	for (size_t i = 0; i < c->n_laters; i++)
		if (c->laters[i]->ra != NULL)
			n += c->laters[i]->ra->n_rules;
	if (n == 0 || (p = ANEW(b, n, struct ism_jwt_provider)) == NULL)
		return;
	for (size_t i = 0; i < c->n_laters; i++)
		for (size_t j = 0; c->laters[i]->ra != NULL && j < c->laters[i]->ra->n_rules; j++)
			conv_jwt_provider(b, &c->laters[i]->ra->rules[j], &p[out->n++]);
	/* An insertion sort: stable, and the rules are few. */
	for (uint32_t i = 1; i < out->n; i++) {
		struct ism_jwt_provider x = p[i];
		uint32_t j = i;

		for (; j > 0 && strcmp(p[j - 1].issuer.p, x.issuer.p) > 0; j--)
			p[j] = p[j - 1];
		p[j] = x;
	}
	out->p = p;
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

/* Listeners whose names are alike (two Gateways both calling their port
 * `http`) are each named by their address and port instead, as Envoy and
 * Istio name a listener (0.0.0.0_8080): the name is the `listener` label of
 * their metrics and the key their counters are kept by across generations,
 * and two listeners sharing it would be duplicate series whose counts a
 * reload mixes. A name no other listener has stays. */
static void name_listeners(struct cbuild *b, struct ism_listener *ls, size_t n)
{
	uint32_t *first = calloc(n ? n : 1, sizeof(*first)); /* the first listener of its name */
	bool *shared = calloc(n ? n : 1, sizeof(*shared));   /* by that first one */
	struct ism_strmap names;

	ism_strmap_init(&names, b->seed);
	if (first == NULL || shared == NULL)
		goto nomem;
	for (size_t i = 0; i < n; i++) {
		int rc =
		    ism_strmap_add(&names, ls[i].name.p, ls[i].name.len, (uint32_t)i, &first[i]);

		if (rc < 0)
			goto nomem;
		if (rc > 0)
			first[i] = (uint32_t)i;
		else
			shared[first[i]] = true;
	}
	for (size_t i = 0; i < n; i++) {
		char ip[INET6_ADDRSTRLEN], name[INET6_ADDRSTRLEN + 8];
		uint16_t port;

		if (shared[first[i]] &&
		    ism_addr_text((const struct sockaddr *)&ls[i].addr, ip, &port)) {
			snprintf(name, sizeof(name), "%s_%u", ip, port);
			ls[i].name = astr(b, name);
		}
	}
	goto out;
nomem:
	b->rc = -ENOMEM;
out:
	ism_strmap_free(&names);
	free(first);
	free(shared);
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
	conv_authz(b, &b->t->authz);
	conv_authn(b, &b->t->jwt);
	group_servers(b);
	index_vs_by_gw(b);
	b->peer_mtls = malloc(65536);
	b->proxy_protocol = calloc(65536, 1);
	if (b->peer_mtls == NULL || b->proxy_protocol == NULL)
		b->rc = -ENOMEM;
	if (b->rc < 0)
		return;
	ism_tls_peer_mtls(c, b->peer_mtls);
	if (c->app.pp_all)
		memset(b->proxy_protocol, 1, 65536);
	for (size_t i = 0; i < c->app.n_pp_ports; i++)
		b->proxy_protocol[c->app.pp_ports[i]] = 1;
	ls = ANEW(b, b->n_groups, struct ism_listener);
	for (size_t i = 0; ls != NULL && i < b->n_groups && b->rc == 0; i++) {
		b->listener = (uint32_t)i;
		b->port = b->groups[i].port;
		build_listener(b, &b->groups[i], &ls[i]);
		one_counter_per_name(b, &ls[i]);
	}
	if (ls != NULL && b->rc == 0)
		name_listeners(b, ls, b->n_groups);
	if (b->rc < 0)
		return;
	warn_l4_unused(b);
	b->t->listeners = ls;
	b->t->n_listeners = (uint32_t)b->n_groups;
	cls = ANEW(b, b->n_keys, struct ism_cluster);
	for (size_t i = 0; cls != NULL && i < b->n_keys && b->rc == 0; i++)
		fill_cluster(b, &b->keys[i], &cls[i]);
	b->t->clusters = cls;
	b->t->n_clusters = (uint32_t)b->n_keys;
}

/* The workers' response counters per listener (a route's are made with it). */
static void alloc_counters(struct cbuild *b)
{
	struct ism_table *t = b->t;

	for (uint32_t l = 0; l < t->n_listeners && b->rc == 0; l++) {
		struct ism_listener *li = (struct ism_listener *)&t->listeners[l];

		li->stats = MNEW(b, 1, struct ism_counters);
	}
}

int ism_conf_compile(const struct ism_conf *conf, struct ism_arena *arena, ism_conf_ep_id_cb ep_id,
		     void *ctx, const struct ism_table **out, struct ism_diags *d)
{
	return ism_conf_compile_dns(conf, arena, ep_id, ctx, NULL, NULL, out, d);
}

int ism_conf_compile_dns(const struct ism_conf *conf, struct ism_arena *arena,
			 ism_conf_ep_id_cb ep_id, void *ctx, ism_conf_dns_cb dns, void *dns_ctx,
			 const struct ism_table **out, struct ism_diags *d)
{
	struct cbuild b = {.c = conf,
			   .a = arena,
			   .ep_id = ep_id,
			   .ctx = ctx,
			   .dns = dns,
			   .dns_ctx = dns_ctx,
			   .d = d};

	*out = NULL;
	b.seed = ism_strmap_seed();
	ism_strmap_init(&b.key_ix, b.seed);
	b.vs_routes = calloc(conf->n_vss ? conf->n_vss : 1, sizeof(*b.vs_routes));
	b.vs_routes_at = calloc(conf->n_vss ? conf->n_vss : 1, sizeof(*b.vs_routes_at));
	b.hcs = calloc(conf->app.n_hcs ? conf->app.n_hcs : 1, sizeof(*b.hcs));
	b.se_labels = calloc(conf->n_ses ? conf->n_ses : 1, sizeof(*b.se_labels));
	for (int tls = 0; tls < 2; tls++)
		b.l4[tls] = calloc(conf->n_vss ? conf->n_vss : 1, sizeof(*b.l4[tls]));
	if (b.vs_routes == NULL || b.vs_routes_at == NULL || b.hcs == NULL || b.se_labels == NULL ||
	    b.l4[0] == NULL || b.l4[1] == NULL) {
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
		free(b.groups[i].gwi);
		free(b.groups[i].srv);
	}
	free(b.groups);
	for (size_t i = 0; i < b.n_keys; i++)
		free(b.keys[i].id);
	ism_strmap_free(&b.key_ix);
	free(b.keys);
	free(b.vs_at);
	free(b.vs_of_gw);
	free(b.peer_mtls);
	free(b.proxy_protocol);
	for (size_t i = 0; b.se_labels != NULL && i < conf->n_ses; i++)
		if (b.se_labels[i].built)
			free_labels(&b.se_labels[i]);
	free(b.se_labels);
	free(b.scratch);
	free(b.hcs);
	free(b.vs_routes);
	free(b.vs_routes_at);
	free_l4(&b);
	if (b.rc == 0)
		alloc_counters(&b);
	if (b.rc == -ENOMEM)
		ism_diag_add(d, ISM_DIAG_ERROR, conf->file, 0, 0, "",
			     "the route table does not fit in its arena (%zu bytes)%s", arena->size,
			     b.hash_bytes > arena->size / 2
				 ? ": consistentHash rings and Maglev tables fill most of it "
				   "(ringHash.minimumRingSize, maglev.tableSize, for each cluster "
				   "and subset)"
				 : "");
	if (b.rc < 0)
		return b.rc;
	b.t->arena_used = arena->used;
	b.t->arena_size = arena->size;
	if (arena->used > arena->size / 4 * 3)
		ism_diag_add(d, ISM_DIAG_WARNING, conf->file, 0, 0, "",
			     "the route table fills %llu %% of its arena (%zu of %zu bytes): near "
			     "the bound, past which a file is refused%s",
			     (unsigned long long)(arena->used * 100 / arena->size), arena->used,
			     arena->size,
			     b.hash_bytes > arena->used / 2
				 ? " (consistentHash rings and Maglev tables fill most of it)"
				 : "");
	*out = b.t;
	return 0;
}
