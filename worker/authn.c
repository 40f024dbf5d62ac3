/* SPDX-License-Identifier: Apache-2.0 */
/* RequestAuthentication at a request (worker/authn.h), as Envoy's jwt_authn
 * filter runs what istiod gives a gateway (pilot/pkg/security/authn:
 * providers "origins-<i>" by issuer, BypassCorsPreflight):
 *
 * - one provider P: the requirement any(P, allow_missing(P));
 * - providers P1..Pn: any(P1, .., Pn, all(any(P1, allow_missing(P1)), ..)).
 *
 * A provider's verifier takes the tokens at its locations (each field
 * holding its prefix, each query parameter, each cookie), last first, and
 * stops at the first that fails: none is "Jwt is missing". allow_missing(P)
 * takes the same tokens but verifies each of them, a token's issuer choosing
 * its provider (the first with that issuer, else the first without one), and
 * comes to the last one's status, a missing token being fine. any() is the
 * first child that passes, else the last child's status; all() the first
 * that fails.
 *
 * A token passes when it parses, its issuer is the provider's (or the
 * provider has none), its exp and nbf hold within 60 s, one of its audiences
 * is the provider's (when it lists any) and a key of the provider's set
 * verifies its signature. Then the provider's outputs are made (payload and
 * claim fields) and, unless forwardOriginalToken, the token's field or query
 * parameter is removed; its claims become what the policies read. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lib/ascii.h"
#include "lib/log.h"
#include "worker/authn.h"
#include "worker/worker-t.h"

/* A block of memory the request's edits point into. */
struct ism_authn_mem {
	struct ism_authn_mem *next;
	char s[];
};

/* The claim values written into a field are at most this long. */
#define CLAIM_TEXT_MAX 4096
/* Tokens at most a provider's locations give: a request with more is refused
 * ("Found multiple Jwt tokens"), as none of them may go unchecked. */
#define TOKENS_MAX 16
/* Providers whose first verdict is kept for the all() that may follow. */
#define PROVIDERS_MEMO 64

/* One token found in the request. */
struct token {
	const char *p;
	size_t len;
	const struct ism_jwt_loc *loc;
};

/* One check of a request. */
struct check {
	struct ism_wctx *w;
	struct ism_http_req *req;
	struct ism_authn *out;
	uint64_t now;
};

/* ---------- key sets ---------- */

static void free_sets(struct ism_jwks *sets, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		ism_jwks_free(&sets[i]);
	free(sets);
}

int ism_authn_sets(const struct ism_table *t, struct ism_jwks **out)
{
	const struct ism_jwt_authn *a = &t->jwt;
	struct ism_jwks *sets = a->n ? calloc(a->n, sizeof(*sets)) : NULL;

	*out = sets;
	if (a->n && sets == NULL)
		return -ENOMEM;
	for (uint32_t i = 0; i < a->n; i++) {
		char why[160];

		/* Checked by the master with the same parser: only memory
		 * fails here (then every token of the provider fails, as
		 * Envoy's with no valid key). None: one that could not be
		 * fetched. */
		if (a->p[i].jwks.len > 0 &&
		    ism_jwks_parse(a->p[i].jwks.p, a->p[i].jwks.len, &sets[i], why, sizeof(why)) !=
			ISM_JWT_OK)
			ism_warn("JWT provider %s: key set: %s", a->p[i].issuer.p, why);
	}
	return 0;
}

void ism_authn_install(struct ism_wctx *w, struct ism_jwks *sets, uint32_t n)
{
	if (w == NULL) {
		free_sets(sets, n);
		return;
	}
	free_sets(w->jwks, w->n_jwks);
	w->jwks = sets;
	w->n_jwks = n;
}

/* ---------- the request's edits ---------- */

/* len bytes of memory that live until ism_authn_free; NULL without. */
static char *mem(struct ism_authn *a, size_t len)
{
	struct ism_authn_mem *m = malloc(sizeof(*m) + len + 1);

	if (m == NULL)
		return NULL;
	m->next = a->mem;
	a->mem = m;
	return m->s;
}

/* Removes every field called name (lowercase) from req. */
static void remove_field(struct ism_http_req *req, const struct ism_str *name)
{
	size_t n = 0;

	for (size_t i = 0; i < req->n_headers; i++) {
		const struct ism_http_header *h = &req->headers[i];

		if (h->name_len == name->len && ism_eq_nocase(h->name, name->p, name->len))
			continue;
		req->headers[n++] = *h;
	}
	req->n_headers = n;
}

/* Adds field name: value (copied) at the end of req's. */
static void add_field(struct check *c, const struct ism_str *name, const char *v, size_t len)
{
	struct ism_http_req *req = c->req;
	char *d;

	if (req->n_headers >= ISM_MAX_HDRS || (d = mem(c->out, len)) == NULL) {
		ism_debug("JWT: no room for field %s", name->p);
		return;
	}
	memcpy(d, v, len);
	req->headers[req->n_headers++] = (struct ism_http_header){
	    .name = name->p, .name_len = name->len, .value = d, .value_len = len};
	c->out->added = true;
}

/* The byte at v[*i] (len bytes), a %XX escape decoded (*i moved to its
 * last digit); an invalid escape is its own bytes, as Envoy's
 * PercentEncoding::decode keeps it. */
static char pct_byte(const char *v, size_t len, size_t *i)
{
	int hi = *i + 2 < len ? ism_hexval((unsigned char)v[*i + 1]) : -1;
	int lo = hi >= 0 ? ism_hexval((unsigned char)v[*i + 2]) : -1;

	if (v[*i] != '%' || lo < 0)
		return v[*i];
	*i += 2;
	return (char)(hi << 4 | lo);
}

/* Whether a query parameter's name as sent (k, kl bytes) is name once its
 * escapes are decoded, as Envoy's jwt_authn reads the query
 * (parseAndDecodeQueryString): "acc%65ss_token" is access_token, and is
 * verified and removed as such. */
static bool param_named(const char *k, size_t kl, const struct ism_str *name)
{
	size_t j = 0;

	for (size_t i = 0; i < kl; i++, j++)
		if (j >= name->len || pct_byte(k, kl, &i) != name->p[j])
			return false;
	return j == name->len;
}

/* The value of req's first query parameter named name (param_named), as
 * sent: true and *v, *len; false: none. */
static bool param_value(const struct ism_http_req *req, const struct ism_str *name, const char **v,
			size_t *len)
{
	const char *q = req->query, *end = q != NULL ? q + req->query_len : NULL;
	struct ism_query_param p;

	while (ism_query_next(&q, end, &p))
		if (param_named(p.name, p.name_len, name)) {
			*v = p.value;
			*len = p.value_len;
			return true;
		}
	return false;
}

/* Removes query parameter name (every one of that name) from req's query. */
static void remove_param(struct check *c, const struct ism_str *name)
{
	struct ism_http_req *req = c->req;
	const char *q = req->query;
	struct ism_query_param p;
	char *d;
	size_t n = 0;

	if (q == NULL || (d = mem(c->out, req->query_len)) == NULL)
		return;
	while (ism_query_next(&q, req->query + req->query_len, &p)) {
		if (param_named(p.name, p.name_len, name))
			continue;
		if (n > 0)
			d[n++] = '&';
		memcpy(d + n, p.name, p.len);
		n += p.len;
	}
	req->query = n > 0 ? d : NULL;
	req->query_len = n;
}

/* ---------- finding tokens ---------- */

/* Whether c may be in a token: base64url's alphabet, or a dot. */
static bool token_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
	       c == '-' || c == '_' || c == '.';
}

/* Envoy's extractJWT: the run of token characters that begins with the first
 * one at or after offset at; the whole value when there is none. */
static void after_prefix(const char *v, size_t len, size_t at, struct token *t)
{
	size_t i = at, e;

	while (i < len && !token_char(v[i]))
		i++;
	if (i == len) {
		t->p = v;
		t->len = len;
		return;
	}
	for (e = i; e < len && token_char(v[e]);)
		e++;
	t->p = v + i;
	t->len = e - i;
}

/* Percent-decodes a query parameter's value (Envoy decodes them). */
static bool decode_param(struct check *c, const char *v, size_t len, struct token *t)
{
	char *d = mem(c->out, len);
	size_t n = 0;

	if (d == NULL)
		return false;
	for (size_t i = 0; i < len; i++)
		d[n++] = pct_byte(v, len, &i);
	t->p = d;
	t->len = n;
	return true;
}

/* The token field h holds for header or cookie location loc, into *t. */
static bool field_token(const struct ism_http_header *h, const struct ism_jwt_loc *loc,
			struct token *t)
{
	const char *name = loc->where == ISM_JWT_HEADER ? loc->name.p : "cookie";
	size_t nl = loc->where == ISM_JWT_HEADER ? loc->name.len : 6;
	const char *pre;

	t->loc = loc;
	if (h->name_len != nl || !ism_eq_nocase(h->name, name, nl))
		return false;
	if (loc->where == ISM_JWT_COOKIE)
		return ism_http_cookie_value(h->value, h->value_len, loc->name.p, loc->name.len,
					     &t->p, &t->len);
	if (loc->prefix.len == 0) {
		t->p = h->value;
		t->len = h->value_len;
		return true;
	}
	pre = memmem(h->value, h->value_len, loc->prefix.p, loc->prefix.len);
	if (pre == NULL)
		return false;
	after_prefix(h->value, h->value_len, (size_t)(pre - h->value) + loc->prefix.len, t);
	return true;
}

/* The tokens at provider p's locations (out has room for TOKENS_MAX + 1),
 * in Envoy's order: fields (each one of the name), query parameters (the
 * first of the name), cookies (the first of the name). More than TOKENS_MAX:
 * TOKENS_MAX + 1. */
static size_t find_tokens(struct check *c, const struct ism_jwt_provider *p, struct token *out)
{
	const struct ism_http_req *req = c->req;
	size_t n = 0;

	for (int where = ISM_JWT_HEADER; where <= ISM_JWT_COOKIE; where++)
		for (uint32_t l = 0; l < p->n_loc && n <= TOKENS_MAX; l++) {
			const struct ism_jwt_loc *loc = &p->loc[l];
			const char *v;
			size_t len;

			if (loc->where != where)
				continue;
			if (where == ISM_JWT_PARAM) {
				if (param_value(req, &loc->name, &v, &len) &&
				    decode_param(c, v, len, &out[n]))
					out[n++].loc = loc;
				continue;
			}
			for (size_t i = 0; i < req->n_headers && n <= TOKENS_MAX; i++) {
				if (!field_token(&req->headers[i], loc, &out[n]))
					continue;
				n++;
				if (where == ISM_JWT_COOKIE)
					break; /* the first cookie of the name */
			}
		}
	return n;
}

/* ---------- verifying ---------- */

/* Whether jwt's iss is issuer, every byte of it (a NUL within iss is no
 * end: Envoy compares whole strings). */
static bool iss_is(const struct ism_jwt *jwt, const struct ism_str *issuer)
{
	return jwt->iss != NULL && jwt->iss_len == issuer->len &&
	       memcmp(jwt->iss, issuer->p, issuer->len) == 0;
}

/* Envoy's JwksCache::findByIssuer: the first provider with jwt's issuer, else
 * the first without an issuer; -1: none. */
static int by_issuer(const struct ism_jwt_authn *a, const struct ism_jwt *jwt)
{
	int any = -1;

	for (uint32_t i = 0; i < a->n; i++) {
		if (a->p[i].issuer.len == 0 && any < 0)
			any = (int)i;
		else if (iss_is(jwt, &a->p[i].issuer))
			return (int)i;
	}
	return any;
}

/* A verified token's outputs: its payload and claims as fields, its own
 * field or parameter removed unless forwarded, its claims for the policies
 * (Envoy's metadata: the last verified one's). */
static void token_passed(struct check *c, const struct ism_jwt_provider *p, const struct token *t,
			 struct ism_jwt *jwt)
{
	char text[CLAIM_TEXT_MAX];

	if (p->payload_header.len > 0)
		add_field(c, &p->payload_header, jwt->payload_b64, jwt->payload_b64_len);
	for (uint32_t i = 0; i < p->n_claim_hdrs; i++) {
		const struct ism_json *v = ism_jwt_claim(jwt, p->claim_hdrs[i].claim.p);
		size_t len = v != NULL ? ism_jwt_claim_text(v, text, sizeof(text)) : 0;

		/* A claim is the issuer's signed text, not a field value: one with
		 * a NUL, CR or LF would end the field upstream (another field, or
		 * a request smuggled after the head). It is not output. */
		if (len > 0 && ism_http_value_ok(text, len))
			add_field(c, &p->claim_hdrs[i].header, text, len);
		else if (len > 0)
			ism_debug("JWT: claim %s holds a NUL, CR or LF: not output to %s",
				  p->claim_hdrs[i].claim.p, p->claim_hdrs[i].header.p);
	}
	if (!p->forward) {
		if (t->loc->where == ISM_JWT_HEADER)
			remove_field(c->req, &t->loc->name);
		else if (t->loc->where == ISM_JWT_PARAM)
			remove_param(c, &t->loc->name);
	}
	if (c->out->by != NULL)
		ism_jwt_free(&c->out->jwt);
	c->out->jwt = *jwt;
	c->out->by = p;
	memset(jwt, 0, sizeof(*jwt)); /* moved */
}

/* Provider qi's checks of a parsed token, in Envoy's order: time, audiences,
 * signature. */
static enum ism_jwt_status token_holds(struct check *c, uint32_t qi, const struct ism_jwt *jwt)
{
	const struct ism_jwt_provider *q = &c->w->table->jwt.p[qi];
	enum ism_jwt_status s = ism_jwt_check_time(jwt, c->now, ISM_JWT_CLOCK_SKEW);
	const char *aud[ISM_JWT_AUD_MAX];
	size_t na = q->n_aud < ISM_JWT_AUD_MAX ? q->n_aud : ISM_JWT_AUD_MAX;

	if (s != ISM_JWT_OK)
		return s;
	for (size_t i = 0; i < na; i++)
		aud[i] = q->aud[i].p;
	if (!ism_jwt_audience_ok(jwt, aud, na))
		return ISM_JWT_AUDIENCE_DENIED;
	/* A key set that could not be fetched: istiod's fail-closed one, a key
	 * no token was signed with. */
	if (q->jwks.len == 0)
		return ISM_JWT_VERIFICATION_FAIL;
	if (qi >= c->w->n_jwks || c->w->jwks[qi].n == 0)
		return ISM_JWT_JWKS_NO_VALID_KEYS;
	return ism_jwt_verify(jwt, &c->w->jwks[qi]);
}

/* One token checked against provider p (its issuer allowed at the location:
 * p's); any: allow_missing's, the provider chosen by the token's issuer. A
 * verified token's parse is left in *jwt and its provider in *q. */
static enum ism_jwt_status verify_token(struct check *c, uint32_t pi, bool any,
					const struct token *t, struct ism_jwt *jwt, int *q)
{
	const struct ism_jwt_authn *a = &c->w->table->jwt;
	const struct ism_jwt_provider *p = &a->p[pi];
	enum ism_jwt_status s = ism_jwt_parse(t->p, t->len, jwt);

	*q = (int)pi;
	if (s != ISM_JWT_OK)
		return s;
	if (p->issuer.len > 0 && !iss_is(jwt, &p->issuer))
		s = ISM_JWT_UNKNOWN_ISSUER;
	else if (any && (*q = by_issuer(a, jwt)) < 0)
		s = ISM_JWT_UNKNOWN_ISSUER;
	else
		s = token_holds(c, (uint32_t)*q, jwt);
	if (s != ISM_JWT_OK)
		ism_jwt_free(jwt);
	return s;
}

/* Provider pi's verifier, or (any) allow_missing's over pi's locations: every
 * token found must verify, in Envoy's order (the last found first), the
 * first that fails says why; no token is fine for allow_missing. Nothing of
 * a verified token (its field removed, its claims output) is applied unless
 * they all are: a good token beside a bad one would otherwise pass the bad
 * one to the upstream, which might take it for the good one — the hole
 * Envoy's authenticator closes for a provider, and which its allow_missing
 * (going on after a failure, the last token's status its verdict) left
 * open: isthmus holds allow_missing to the same rule. */
static enum ism_jwt_status verifier(struct check *c, uint32_t pi, bool any)
{
	const struct ism_jwt_authn *a = &c->w->table->jwt;
	struct token toks[TOKENS_MAX + 1];
	struct ism_jwt jwts[TOKENS_MAX];
	int q[TOKENS_MAX];
	size_t n = find_tokens(c, &a->p[pi], toks), i = n;
	enum ism_jwt_status s = ISM_JWT_OK;

	if (n > TOKENS_MAX)
		return ISM_JWT_MULTIPLE_TOKENS;
	if (n == 0)
		return any ? ISM_JWT_OK : ISM_JWT_MISSED;
	while (i-- > 0 && (s = verify_token(c, pi, any, &toks[i], &jwts[i], &q[i])) == ISM_JWT_OK)
		;
	/* i: the token that failed (SIZE_MAX: none); those after it verified. */
	for (size_t j = n; j-- > i + 1;) {
		if (s == ISM_JWT_OK)
			token_passed(c, &a->p[q[j]], &toks[j], &jwts[j]);
		else
			ism_jwt_free(&jwts[j]);
	}
	return s;
}

/* any(Pi, allow_missing(Pi)); p_status: Pi's own, when known (-1: not yet). */
static enum ism_jwt_status provider_or_missing(struct check *c, uint32_t pi, int p_status)
{
	enum ism_jwt_status s =
	    p_status >= 0 ? (enum ism_jwt_status)p_status : verifier(c, pi, false);

	return s == ISM_JWT_OK ? s : verifier(c, pi, true);
}

/* A CORS preflight: OPTIONS with Origin and Access-Control-Request-Method. */
static bool cors_preflight(const struct ism_http_req *req)
{
	bool origin = false, method = false;

	if (req->method_len != 7 || memcmp(req->method, "OPTIONS", 7) != 0)
		return false;
	for (size_t i = 0; i < req->n_headers; i++) {
		origin |=
		    ism_http_header_is(&req->headers[i], "origin") && req->headers[i].value_len > 0;
		method |= ism_http_header_is(&req->headers[i], "access-control-request-method") &&
			  req->headers[i].value_len > 0;
	}
	return origin && method;
}

struct ism_authn *ism_authn_check(struct ism_wctx *w, struct ism_http_req *req)
{
	const struct ism_jwt_authn *a = &w->table->jwt;
	struct ism_authn *out = calloc(1, sizeof(*out));
	struct check c = {.w = w, .req = req, .out = out, .now = (uint64_t)time(NULL)};
	int first[PROVIDERS_MEMO];
	enum ism_jwt_status s = ISM_JWT_OK;

	if (out == NULL)
		return NULL;
	/* What the providers output comes from them only (Envoy's extractor
	 * removes them before it verifies). */
	for (uint32_t i = 0; i < a->n; i++) {
		if (a->p[i].payload_header.len > 0)
			remove_field(req, &a->p[i].payload_header);
		for (uint32_t j = 0; j < a->p[i].n_claim_hdrs; j++)
			remove_field(req, &a->p[i].claim_hdrs[j].header);
	}
	if (cors_preflight(req))
		return out;
	if (a->n == 1) {
		out->status = provider_or_missing(&c, 0, -1);
		return out;
	}
	/* any(P1..Pn, all(..)): the providers' own verdicts are kept for the
	 * all() that follows when none passed. */
	for (uint32_t i = 0; i < a->n; i++) {
		s = verifier(&c, i, false);
		if (s == ISM_JWT_OK)
			return out;
		if (i < PROVIDERS_MEMO)
			first[i] = (int)s;
	}
	for (uint32_t i = 0; i < a->n; i++) {
		s = provider_or_missing(&c, i, i < PROVIDERS_MEMO ? first[i] : -1);
		if (s != ISM_JWT_OK)
			break;
	}
	out->status = s;
	return out;
}

void ism_authn_free(struct ism_authn *a)
{
	if (a == NULL)
		return;
	while (a->mem != NULL) {
		struct ism_authn_mem *m = a->mem;

		a->mem = m->next;
		free(m);
	}
	if (a->by != NULL)
		ism_jwt_free(&a->jwt);
	free(a);
}

/* ---------- claims, for the policies and the routes ---------- */

/* Whether claim name (top level) is one provider p splits at spaces. */
static bool spaced(const struct ism_jwt_provider *p, const char *name, size_t len)
{
	for (uint32_t i = 0; p != NULL && i < p->n_spaced; i++)
		if (p->spaced[i].len == len && memcmp(p->spaced[i].p, name, len) == 0)
			return true;
	return false;
}

bool ism_authn_claim_holds(const struct ism_json *payload, const struct ism_jwt_provider *by,
			   const char *path, size_t len,
			   bool (*holds)(void *ctx, const char *v, size_t len), void *ctx)
{
	const struct ism_json *v = payload;
	const char *p = path, *end = path + len;
	bool top = memchr(path, ']', len) == NULL;

	while (v != NULL && p < end) {
		const char *e = memchr(p, ']', (size_t)(end - p));
		size_t n = (size_t)((e != NULL ? e : end) - p);

		v = ism_json_get_n(v, p, n);
		p += n + 1;
	}
	if (v == NULL)
		return false;
	if (v->type == ISM_JSON_STRING && !(top && spaced(by, path, len)))
		return holds(ctx, v->str, v->n);
	if (v->type == ISM_JSON_STRING) {
		/* Envoy's payload metadata holds it as the list of its words. */
		for (size_t i = 0; i < v->n;) {
			size_t e = i;

			while (e < v->n && v->str[e] != ' ')
				e++;
			if (e > i && holds(ctx, v->str + i, e - i))
				return true;
			i = e + 1;
		}
		return false;
	}
	for (uint32_t i = 0; v->type == ISM_JSON_ARRAY && i < v->n; i++)
		if (v->items[i].type == ISM_JSON_STRING &&
		    holds(ctx, v->items[i].str, v->items[i].n))
			return true;
	return false;
}
