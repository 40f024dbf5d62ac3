/* SPDX-License-Identifier: Apache-2.0 */
#define PCRE2_CODE_UNIT_WIDTH 8

#include "worker/router.h"

#include <errno.h>
#include <netinet/in.h>
#include <limits.h>
#include <pcre2.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/re2syntax.h"
#include "lib/ascii.h"
#include "lib/strmap.h"
#include "worker/authn.h"
#include "worker/pathnorm.h"
#include "worker/sock.h"

/* What one regex evaluation may cost. PCRE2 backtracks, so a pattern RE2
 * runs in linear time ("/(a|aa)+") can take exponential time here: the match
 * limit bounds the steps (about 1 ms with the JIT at 10,000; the interpreter,
 * used where the JIT is unavailable, counts smaller steps), the heap limit
 * what the interpreter's backtracking may allocate. */
#define RE_MATCH_LIMIT_JIT    10000u
#define RE_MATCH_LIMIT_INTERP 100000u
#define RE_HEAP_LIMIT_KIB     16384u
#define RE_JIT_STACK_MAX      (1u << 20)

/* JIT compilation failed for a regex: it is interpreted. */
#define JIT_NONE ((pcre2_code *)&jit_none_mark)
static const char jit_none_mark;

/* Envoy joins repeated headers with "," before matching; the joined value is
 * built here, so the buffer only grows and is reused for every request. The
 * regexes of the table in use are JIT-compiled by each worker for itself,
 * when first used: JIT code lives in the compiling process's memory, so the
 * master's compiled patterns (in the shared region) are only interpreted. */
struct ism_router_scratch {
	pcre2_match_data *md;
	pcre2_compile_context *cctx;
	pcre2_match_context *mjit;    /* match limit, the JIT stack */
	pcre2_match_context *minterp; /* match and heap limits */
	pcre2_jit_stack *jstack;
	pcre2_code **jit; /* by ism_strmatch.re_idx: NULL not compiled yet, JIT_NONE */
	uint32_t n_jit;
	bool limit_hit;			 /* the last ism_router_route stopped at a match limit */
	const struct ism_match *matched; /* the match block that chose the last route */
	const char *scheme;		 /* the last ism_router_route's request's */
	char *join;
	size_t join_cap;
	char *path; /* a normalised path */
	size_t path_cap;
	/* the verified JWT's claims a route's claim matches read (worker/authn.h) */
	const struct ism_json *jwt;
	const struct ism_jwt_provider *jwt_by;
};

void ism_router_set_claims(struct ism_router_scratch *s, const struct ism_json *payload,
			   const struct ism_jwt_provider *by)
{
	s->jwt = payload;
	s->jwt_by = by;
}

struct ism_router_scratch *ism_router_scratch_new(void)
{
	struct ism_router_scratch *s;

	s = calloc(1, sizeof(*s));
	if (!s)
		return NULL;
	s->md = pcre2_match_data_create(32, NULL);
	s->cctx = pcre2_compile_context_create(NULL);
	s->mjit = pcre2_match_context_create(NULL);
	s->minterp = pcre2_match_context_create(NULL);
	s->jstack = pcre2_jit_stack_create(32u << 10, RE_JIT_STACK_MAX, NULL);
	if (!s->md || !s->cctx || !s->mjit || !s->minterp || !s->jstack) {
		ism_router_scratch_free(s);
		return NULL;
	}
	pcre2_set_match_limit(s->mjit, RE_MATCH_LIMIT_JIT);
	pcre2_jit_stack_assign(s->mjit, NULL, s->jstack);
	pcre2_set_match_limit(s->minterp, RE_MATCH_LIMIT_INTERP);
	pcre2_set_heap_limit(s->minterp, RE_HEAP_LIMIT_KIB);
	return s;
}

static void jit_drop(struct ism_router_scratch *s)
{
	for (uint32_t i = 0; i < s->n_jit; i++)
		if (s->jit[i] != JIT_NONE)
			pcre2_code_free(s->jit[i]);
	free(s->jit);
	s->jit = NULL;
	s->n_jit = 0;
}

int ism_router_use_table(struct ism_router_scratch *s, const struct ism_table *t)
{
	jit_drop(s);
	if (t->n_regexes == 0)
		return 0;
	s->jit = calloc(t->n_regexes, sizeof(*s->jit));
	if (s->jit == NULL)
		return -ENOMEM;
	s->n_jit = t->n_regexes;
	return 0;
}

void ism_router_scratch_free(struct ism_router_scratch *s)
{
	if (!s)
		return;
	jit_drop(s);
	pcre2_match_data_free(s->md);
	pcre2_compile_context_free(s->cctx);
	pcre2_match_context_free(s->mjit);
	pcre2_match_context_free(s->minterp);
	pcre2_jit_stack_free(s->jstack);
	free(s->join);
	free(s->path);
	free(s);
}

bool ism_router_limit_hit(const struct ism_router_scratch *s)
{
	return s->limit_hit;
}

/* --- the path --- */

int ism_router_normalize(struct ism_router_scratch *s, uint8_t mode, struct ism_http_req *req)
{
	size_t cap = ISM_PATHNORM_MAX_OUT(req->path_len);
	ssize_t n;

	if (req->path_len == 0 || req->path[0] != '/' ||
	    ism_pathnorm_is_normal((enum ism_pathnorm_mode)mode, req->path, req->path_len))
		return 0;
	if (cap > s->path_cap) {
		char *p = realloc(s->path, cap);

		if (p == NULL)
			return -ENOMEM;
		s->path = p;
		s->path_cap = cap;
	}
	n = ism_pathnorm((enum ism_pathnorm_mode)mode, req->path, req->path_len, s->path, cap);
	if (n < 0)
		return (int)n;
	req->path = s->path;
	req->path_len = (size_t)n;
	return 0;
}

/* --- virtual hosts --- */

static bool ieq(const char *a, size_t alen, const char *b, size_t blen)
{
	return alen == blen && strncasecmp(a, b, alen) == 0;
}

int ism_router_domain_rank(const struct ism_str *d, const char *host, size_t n)
{
	size_t sl = d->len - 1; /* "*.suffix": the length of ".suffix" */

	if (d->len == 1 && d->p[0] == '*')
		return 0;
	/* The host must be longer than ".suffix", so "*.example.com" never
	 * matches "example.com". */
	if (d->len > 1 && d->p[0] == '*')
		return n > sl && strncasecmp(host + n - sl, d->p + 1, sl) == 0 ? (int)sl : -1;
	return ieq(host, n, d->p, d->len) ? INT_MAX : -1;
}

/* The slot of ix holding name (len bytes, lowercase) as a wildcard's suffix
 * (wild) or exactly; NULL: none. */
static const struct ism_name_slot *name_slot(const struct ism_name_index *ix, const char *name,
					     size_t len, bool wild)
{
	uint64_t h = ism_hash64(name, len, ix->seed);

	for (uint32_t i = (uint32_t)h & (ix->cap - 1);; i = (i + 1) & (ix->cap - 1)) {
		const struct ism_name_slot *sl = &ix->slots[i];
		size_t off =
		    sl->name != NULL && sl->wild; /* a wildcard's suffix starts at its '.' */

		if (sl->name == NULL)
			return NULL;
		if (sl->hash == h && sl->wild == wild && sl->name->len - off == len &&
		    memcmp(sl->name->p + off, name, len) == 0)
			return sl;
	}
}

/* The entry of ix that names host (n bytes, any case) as ism_router_domain_rank
 * ranks names: exactly, else by the longest wildcard, else "*"; -1: none; -2:
 * ix cannot tell (none was built, or the host is too long for it), the entries
 * are to be scanned. */
static int64_t name_find(const struct ism_name_index *ix, const char *host, size_t n)
{
	char low[ISM_NAME_INDEX_MAX];
	const struct ism_name_slot *sl;

	if (ix == NULL || ix->cap == 0 || n > sizeof(low))
		return -2;
	/* Only the host's bytes are written and read; the first is set apart so
	 * that GCC does not take a short host for an uninitialized read. */
	low[0] = '\0';
	for (size_t i = 0; i < n; i++)
		low[i] = ism_lower(host[i]);
	sl = name_slot(ix, low, n, false);
	/* The host must be longer than the suffix: from its second byte on,
	 * at each dot, and where a partial wildcard's suffix would start; the
	 * longest suffix first, as Envoy ranks wildcards. */
	for (size_t i = 1; sl == NULL && i < n; i++)
		if (low[i] == '.' || (n - i < 8 * sizeof(ix->partial) &&
				      (ix->partial[(n - i) / 8] >> ((n - i) % 8)) & 1))
			sl = name_slot(ix, low + i, n - i, true);
	return sl != NULL ? (int64_t)sl->entry : (int64_t)ix->any;
}

const struct ism_vhost *ism_router_vhost(const struct ism_vhost *vhosts, uint32_t n_vhosts,
					 const struct ism_name_index *ix, const char *host,
					 size_t host_len)
{
	const struct ism_vhost *best = NULL;
	int best_rank = -1;
	int64_t e;
	size_t n;

	if (!host) {
		host = "";
		host_len = 0;
	}
	n = ism_host_len(host, host_len);
	e = name_find(ix, host, n);
	if (e != -2)
		return e >= 0 ? &vhosts[e] : NULL;
	for (uint32_t i = 0; i < n_vhosts && best_rank < INT_MAX; i++) {
		for (uint32_t j = 0; j < vhosts[i].n_domains; j++) {
			int rank = ism_router_domain_rank(&vhosts[i].domains[j], host, n);

			if (rank > best_rank) {
				best = &vhosts[i];
				best_rank = rank;
			}
		}
	}
	return best;
}

int ism_router_pick_server(const struct ism_listener *l, const char *sni)
{
	int best = -1, best_rank = -1;
	size_t n = strlen(sni);
	int64_t e = name_find(&l->sni_index, sni, n);

	if (e != -2)
		return (int)e;

	/* As a Host picks a vhost: exact, then the longest wildcard, then "*". */
	for (uint32_t s = 0; s < l->n_tls; s++) {
		for (uint32_t h = 0; h < l->tls[s].n_sni; h++) {
			int rank = ism_router_domain_rank(&l->tls[s].sni[h], sni, n);

			if (rank > best_rank) {
				best = (int)s;
				best_rank = rank;
			}
		}
	}
	/* No SNI and no "*" server: none, as Istio gives every server but a "*"
	 * one its hosts as the filter chain's server_names (Envoy then closes a
	 * connection without SNI: no filter chain matches). */
	return best;
}

/* --- string matches --- */

/* This worker's JIT-compiled copy of regex m, compiled from its source the
 * first time; NULL when it must be interpreted. */
static const pcre2_code *re_jit(const struct ism_strmatch *m, struct ism_router_scratch *s)
{
	pcre2_code **slot;
	size_t off;
	int err;

	if (m->re_idx >= s->n_jit)
		return NULL;
	slot = &s->jit[m->re_idx];
	if (*slot == NULL) {
		*slot = ism_re2_compile(m->s.p, m->s.len, !m->search, s->cctx, &err, &off);
		if (*slot != NULL && pcre2_jit_compile(*slot, PCRE2_JIT_COMPLETE) != 0) {
			pcre2_code_free(*slot);
			*slot = NULL;
		}
		if (*slot == NULL)
			*slot = JIT_NONE;
	}
	return *slot == JIT_NONE ? NULL : *slot;
}

/* Runs regex m on v[0..len) from start: the pairs of the ovector filled (at
 * least 1: rc 0 means the ovector was too small for every group, but pair 0,
 * the whole match, is always filled), 0 when it does not match, -1 when it
 * stopped at a limit (s->limit_hit set). */
static int re_run(const struct ism_strmatch *m, const char *v, size_t len, size_t start,
		  struct ism_router_scratch *s)
{
	const pcre2_code *jit;
	int rc;

	if (!m->re || s->limit_hit)
		return 0;
	jit = re_jit(m, s);
	/* PCRE2 before 10.43 rejects a NULL subject even with length 0. */
	if (jit != NULL)
		rc = pcre2_match(jit, (PCRE2_SPTR)(v ? v : ""), len, start, 0, s->md, s->mjit);
	else
		rc = pcre2_match((const pcre2_code *)m->re, (PCRE2_SPTR)(v ? v : ""), len, start, 0,
				 s->md, s->minterp);
	if (rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_HEAPLIMIT ||
	    rc == PCRE2_ERROR_DEPTHLIMIT || rc == PCRE2_ERROR_JIT_STACKLIMIT) {
		s->limit_hit = true;
		return -1;
	}
	if (rc < 0)
		return 0;
	return rc == 0 ? (int)pcre2_get_ovector_count(s->md) : rc;
}

int ism_router_find(struct ism_router_scratch *s, const struct ism_strmatch *m, const char *v,
		    size_t len, size_t start, const size_t **ov)
{
	int rc;

	s->limit_hit = false;
	rc = re_run(m, v, len, start, s);
	*ov = pcre2_get_ovector_pointer(s->md);
	return rc;
}

static bool re_match(const struct ism_strmatch *m, const char *v, size_t len,
		     struct ism_router_scratch *s)
{
	PCRE2_SIZE *ov;

	if (re_run(m, v, len, 0, s) <= 0)
		return false;
	ov = pcre2_get_ovector_pointer(s->md);
	/* The pattern is compiled anchored at both ends; checked again so that a
	 * table compiled without the flags cannot match a substring. */
	return ov[0] == 0 && ov[1] == len;
}

static bool pchar(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       (c != '\0' && strchr(ISM_PCHARS, c) != NULL);
}

/* Whether v[from, to) is all pchars (or '/' too, with slash). */
static bool pchars(const char *v, size_t from, size_t to, bool slash)
{
	for (size_t j = from; j < to; j++)
		if (!pchar(v[j]) && !(slash && v[j] == '/'))
			return false;
	return true;
}

/* Whether path v matches URI template t (ISM_SM_TEMPLATE): a "{*}" takes
 * the whole segment (its template segment is whole too), the one "{**}" what
 * is left before the literal text after it. */
static bool template_holds(const struct ism_str *t, const char *v, size_t len)
{
	size_t i = 0, j = 0;

	while (i < t->len) {
		if (t->len - i >= 4 && memcmp(t->p + i, "{**}", 4) == 0) {
			size_t rest = t->len - i - 4;

			return len - j >= rest && memcmp(v + len - rest, t->p + i + 4, rest) == 0 &&
			       pchars(v, j, len - rest, true);
		}
		if (t->len - i >= 3 && memcmp(t->p + i, "{*}", 3) == 0) {
			size_t k = j;

			while (k < len && pchar(v[k]))
				k++;
			if (k == j)
				return false;
			j = k;
			i += 3;
			continue;
		}
		if (j >= len || t->p[i] != v[j])
			return false;
		i++;
		j++;
	}
	return j == len;
}

/* Whether m holds for a value that is present (v, len). */
static bool sm_match(const struct ism_strmatch *m, const char *v, size_t len,
		     struct ism_router_scratch *s)
{
	switch (m->kind) {
	case ISM_SM_ANY:
	case ISM_SM_PRESENT:
		return true;
	case ISM_SM_EXACT:
		if (len != m->s.len)
			return false;
		if (m->ignore_case)
			return strncasecmp(v, m->s.p, len) == 0;
		return len == 0 || memcmp(v, m->s.p, len) == 0;
	case ISM_SM_PREFIX:
		if (len < m->s.len)
			return false;
		if (m->ignore_case)
			return strncasecmp(v, m->s.p, m->s.len) == 0;
		return m->s.len == 0 || memcmp(v, m->s.p, m->s.len) == 0;
	case ISM_SM_SUFFIX:
		if (len < m->s.len)
			return false;
		if (m->ignore_case)
			return strncasecmp(v + len - m->s.len, m->s.p, m->s.len) == 0;
		return m->s.len == 0 || memcmp(v + len - m->s.len, m->s.p, m->s.len) == 0;
	case ISM_SM_TEMPLATE:
		return template_holds(&m->s, v, len);
	case ISM_SM_REGEX:
		return re_match(m, v, len, s);
	default:
		/* An unknown kind is a compiler bug; matching nothing is the safe answer. */
		return false;
	}
}

/* For a value that may be absent (v == NULL): only "no condition" holds then. */
static bool sm_match_opt(const struct ism_strmatch *m, const char *v, size_t len,
			 struct ism_router_scratch *s)
{
	if (!v)
		return m->kind == ISM_SM_ANY;
	return sm_match(m, v, len, s);
}

/* Room for len bytes in the scratch's join buffer; false without memory. */
static bool join_room(struct ism_router_scratch *s, size_t len)
{
	char *p;

	if (len <= s->join_cap)
		return true;
	p = realloc(s->join, len);
	if (p == NULL)
		return false;
	s->join = p;
	s->join_cap = len;
	return true;
}

/* Envoy's request pseudo-header name (":method", ":authority", ":scheme",
 * ":path": the path with its query, as Envoy's :path), false when the
 * request has none of that name (":status", any other). */
static bool pseudo_header(const struct ism_http_req *req, const struct ism_str *name,
			  struct ism_router_scratch *s, const char **v, size_t *len)
{
	if (strcmp(name->p, ":method") == 0) {
		*v = req->method;
		*len = req->method_len;
	} else if (strcmp(name->p, ":authority") == 0 && req->host != NULL) {
		*v = req->host;
		*len = req->host_len;
	} else if (strcmp(name->p, ":scheme") == 0 && s->scheme != NULL) {
		*v = s->scheme;
		*len = strlen(s->scheme);
	} else if (strcmp(name->p, ":path") == 0 && req->path != NULL) {
		*v = req->path;
		*len = req->path_len;
		if (req->query == NULL || !join_room(s, req->path_len + 1 + req->query_len))
			return true;
		memcpy(s->join, req->path, req->path_len);
		s->join[req->path_len] = '?';
		memcpy(s->join + req->path_len + 1, req->query, req->query_len);
		*v = s->join;
		*len = req->path_len + 1 + req->query_len;
	} else {
		return false;
	}
	return true;
}

bool ism_router_header(const struct ism_http_req *req, const struct ism_str *name,
		       struct ism_router_scratch *s, const char **v, size_t *len)
{
	const struct ism_http_header *first = NULL;
	const char *more = NULL; /* a value the edge appends (the peer to X-Forwarded-For) */
	size_t i, n = 0, total = 0, off = 0;

	/* Envoy's header map has the pseudo-headers; HTTP/1.1's Host is its
	 * :authority, which a lookup of "host" finds (its static lookup table
	 * maps the one name to the other). */
	if (name->len > 0 && name->p[0] == ':')
		return pseudo_header(req, name, s, v, len);
	if (ieq(name->p, name->len, "host", 4)) {
		*v = req->host;
		*len = req->host_len;
		return req->host != NULL;
	}
	if (req->edge_peer != NULL && ieq(name->p, name->len, "x-forwarded-for", 15))
		more = req->edge_peer;
	for (i = 0; i < req->n_headers; i++) {
		const struct ism_http_header *h = &req->headers[i];

		if (!ieq(h->name, h->name_len, name->p, name->len))
			continue;
		if (!first)
			first = h;
		n++;
		total += h->value_len + 1;
	}
	/* The client's is replaced but for a trusted proxy's, and added when
	 * there is none (put_forwarded sends the same). */
	if (req->edge_xfp != NULL && ieq(name->p, name->len, "x-forwarded-proto", 17) &&
	    (first == NULL || !req->xfp_trusted)) {
		*v = req->edge_xfp;
		*len = strlen(req->edge_xfp);
		return true;
	}
	if (req->edge_rid != NULL && ieq(name->p, name->len, "x-request-id", 12) &&
	    (first == NULL || !req->rid_kept)) {
		*v = req->edge_rid;
		*len = strlen(req->edge_rid);
		return true;
	}
	if (!first && !more)
		return false;
	if (n == 1 && !more) {
		*v = first->value;
		*len = first->value_len;
		return true;
	}
	if (n == 0) {
		*v = more;
		*len = strlen(more);
		return true;
	}
	if (more != NULL)
		total += strlen(more) + 1;
	if (!join_room(s, total)) {
		/* Without memory, the first value is the best available answer. */
		*v = first->value;
		*len = first->value_len;
		return true;
	}
	for (i = 0; i < req->n_headers; i++) {
		const struct ism_http_header *h = &req->headers[i];

		if (!ieq(h->name, h->name_len, name->p, name->len))
			continue;
		if (off)
			s->join[off++] = ',';
		memcpy(s->join + off, h->value, h->value_len);
		off += h->value_len;
	}
	if (more != NULL) {
		s->join[off++] = ',';
		memcpy(s->join + off, more, strlen(more));
		off += strlen(more);
	}
	*v = s->join;
	*len = off;
	return true;
}

int ism_router_edge_pairs(const struct ism_http_req *req, struct ism_router_scratch *s,
			  struct ism_buf *b)
{
	static const struct ism_str edge[] = {
	    {"x-forwarded-proto", 17}, {"x-forwarded-for", 15}, {"x-request-id", 12}};
	enum { N_EDGE = sizeof(edge) / sizeof(edge[0]) };

	for (size_t i = 0; i < req->n_headers; i++) {
		const struct ism_http_header *h = &req->headers[i];
		bool edge_field = false;

		for (size_t k = 0; req->edge_xfp != NULL && k < N_EDGE && !edge_field; k++)
			edge_field = ieq(h->name, h->name_len, edge[k].p, edge[k].len);
		if (!edge_field &&
		    ism_buf_put_pair(b, h->name, h->name_len, h->value, h->value_len) < 0)
			return -ENOMEM;
	}
	for (size_t k = 0; req->edge_xfp != NULL && k < N_EDGE; k++) {
		const char *v;
		size_t len;

		if (ism_router_header(req, &edge[k], s, &v, &len) &&
		    ism_buf_put_pair(b, edge[k].p, edge[k].len, v, len) < 0)
			return -ENOMEM;
	}
	return 0;
}

/* Whether header condition kv holds; a header the request lacks holds no
 * condition, or, with missing_empty, is taken as the empty value but for a
 * presence match (istiod's treat_missing_header_as_empty on a withoutHeaders
 * condition). */
static bool header_holds(const struct ism_kvmatch *kv, const struct ism_http_req *req,
			 struct ism_router_scratch *s, bool missing_empty)
{
	const char *v = "";
	size_t len = 0;

	if (!ism_router_header(req, &kv->name, s, &v, &len) &&
	    (!missing_empty || kv->m.kind == ISM_SM_PRESENT))
		return false;
	return sm_match(&kv->m, v, len, s);
}

struct claim_ctx {
	const struct ism_strmatch *m;
	struct ism_router_scratch *s;
};

static bool claim_value_holds(void *ctx, const char *v, size_t len)
{
	struct claim_ctx *c = ctx;

	return sm_match(c->m, v, len, c->s);
}

/* A route's claim match: Envoy's metadata matcher on the jwt_authn payload,
 * false without a verified token. */
static bool claim_holds(const struct ism_kvmatch *kv, struct ism_router_scratch *s)
{
	struct claim_ctx c = {&kv->m, s};

	return s->jwt != NULL && ism_authn_claim_holds(s->jwt, s->jwt_by, kv->name.p, kv->name.len,
						       claim_value_holds, &c);
}

static bool match_holds(const struct ism_match *m, const struct ism_http_req *req,
			const char *scheme, uint16_t port, struct ism_router_scratch *s)
{
	const char *v;
	size_t len;
	uint32_t i;

	if (m->port && m->port != port)
		return false;
	if (!sm_match_opt(&m->uri, req->path, req->path_len, s))
		return false;
	if (!sm_match_opt(&m->method, req->method, req->method_len, s))
		return false;
	if (!sm_match_opt(&m->scheme, scheme, scheme ? strlen(scheme) : 0, s))
		return false;
	if (!sm_match_opt(&m->authority, req->host, req->host_len, s))
		return false;
	for (i = 0; i < m->n_headers; i++)
		if (!header_holds(&m->headers[i], req, s, false))
			return false;
	for (i = 0; i < m->n_without_headers; i++)
		if (header_holds(&m->without_headers[i], req, s, true))
			return false;
	for (i = 0; i < m->n_query; i++) {
		if (!ism_http_query_value(req->query, req->query_len, m->query[i].name.p,
					  m->query[i].name.len, &v, &len))
			return false;
		if (!sm_match(&m->query[i].m, v, len, s))
			return false;
	}
	for (i = 0; i < m->n_claims; i++)
		if (!claim_holds(&m->claims[i], s))
			return false;
	for (i = 0; i < m->n_without_claims; i++)
		if (claim_holds(&m->without_claims[i], s))
			return false;
	return true;
}

const struct ism_route *ism_router_route(const struct ism_vhost *vh, const struct ism_http_req *req,
					 const char *scheme, uint16_t port,
					 struct ism_router_scratch *s)
{
	uint32_t i, j;

	s->limit_hit = false;
	s->matched = NULL;
	s->scheme = scheme;
	for (i = 0; i < vh->n_routes; i++) {
		const struct ism_route *r = &vh->routes[i];

		if (r->n_match == 0)
			return r;
		for (j = 0; j < r->n_match; j++) {
			if (match_holds(&r->match[j], req, scheme, port, s)) {
				s->matched = &r->match[j];
				return r;
			}
			/* No answer is better than the wrong route. */
			if (s->limit_hit)
				return NULL;
		}
	}
	return NULL;
}

bool ism_router_strmatch(const struct ism_strmatch *m, const char *v, size_t len,
			 struct ism_router_scratch *s)
{
	s->limit_hit = false;
	return sm_match(m, v, len, s);
}

const struct ism_dest *ism_router_pick_weighted(const struct ism_dest *dest, uint32_t n,
						uint32_t total_weight, uint32_t rnd)
{
	uint64_t target, cum = 0;
	uint32_t i;

	if (total_weight == 0)
		return NULL;
	target = ((uint64_t)rnd * total_weight) >> 32;
	for (i = 0; i < n; i++) {
		cum += dest[i].weight;
		if (target < cum)
			return &dest[i];
	}
	/* total_weight larger than the sum of the weights: a compiler bug; the last
	 * destination with a weight is the least surprising answer. */
	for (i = n; i > 0; i--)
		if (dest[i - 1].weight)
			return &dest[i - 1];
	return NULL;
}

const struct ism_dest *ism_router_pick(const struct ism_route *r, uint32_t rnd)
{
	return ism_router_pick_weighted(r->dest, r->n_dest, r->total_weight, rnd);
}

int ism_router_pick_dest(const struct ism_route *r, uint32_t rnd)
{
	const struct ism_dest *d = ism_router_pick(r, rnd);

	return d != NULL ? (int)d->cluster : -1;
}

const struct ism_match *ism_router_matched(const struct ism_router_scratch *s)
{
	return s->matched;
}

/* --- TCP and TLS routes --- */

bool ism_router_in_subnet(const struct ism_subnet *sn, const struct sockaddr_storage *a)
{
	const uint8_t *p;
	unsigned bits = sn->prefix, whole = bits / 8, rest = bits % 8;

	if (a->ss_family != sn->family)
		return false;
	p = a->ss_family == AF_INET ? (const uint8_t *)&((const struct sockaddr_in *)a)->sin_addr
				    : (const uint8_t *)&((const struct sockaddr_in6 *)a)->sin6_addr;
	for (unsigned i = 0; i < whole; i++)
		if (p[i] != sn->addr[i])
			return false;
	return rest == 0 || ((p[whole] ^ sn->addr[whole]) & (0xff00u >> rest)) == 0;
}

/* destinationSubnets: none, or one holds the address connected to. */
static bool subnets_hold(const struct ism_l4route *r, const struct sockaddr_storage *local)
{
	if (r->n_subnets == 0)
		return true;
	for (uint32_t k = 0; local != NULL && k < r->n_subnets; k++)
		if (ism_router_in_subnet(&r->subnets[k], local))
			return true;
	return false;
}

/* sniHosts: none (a TCP route), or one names sni. */
static bool sni_holds(const struct ism_l4route *r, const char *sni, size_t sl)
{
	if (r->n_sni == 0)
		return true;
	for (uint32_t k = 0; sl && k < r->n_sni; k++)
		if (ism_router_domain_rank(&r->sni[k], sni, sl) >= 0)
			return true;
	return false;
}

const struct ism_l4route *ism_router_l4(const struct ism_l4route *r, uint32_t n, const char *sni,
					const struct sockaddr_storage *local)
{
	size_t sl = sni != NULL ? strlen(sni) : 0;

	for (uint32_t i = 0; i < n; i++)
		if (sni_holds(&r[i], sni, sl) && subnets_hold(&r[i], local))
			return &r[i];
	return NULL;
}
