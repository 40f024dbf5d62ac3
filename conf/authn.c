/* SPDX-License-Identifier: Apache-2.0 */
/* RequestAuthentication (security.istio.io): its jwtRules checked as Istio's
 * validation checks them (ValidateRequestAuthentication, validateJwtRule)
 * and kept as istiod hands them to Envoy's jwt_authn filter
 * (pilot/pkg/security/authn, convertToEnvoyJwtConfig): one provider a rule,
 * its token locations (Envoy's defaults when none is given), its audiences,
 * its key set. conf/compile.c sorts them by issuer as istiod does; the
 * workers verify tokens with them (worker/authn.c).
 *
 * istiod fetches a rule's jwksUri (or its issuer's OpenID discovery) itself
 * and inlines the keys; so does isthmus's master (master/jwks.h), through the
 * source set with ism_conf_jwks_source. A key set that cannot be had leaves
 * the rule without keys (its tokens refused, as istiod's fail-closed key
 * set), with a warning; isthmus -c fetches nothing. */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "conf/conf.h"
#include "conf/model.h"
#include "lib/ascii.h"
#include "lib/jose.h"

/* Where fetched key sets come from; NULL: nowhere (isthmus -c). */
static const struct ism_jwks_source *jwks_source;

void ism_conf_jwks_source(const struct ism_jwks_source *src)
{
	jwks_source = src;
}

/* s lowercased, in the model's pool. */
static char *lower_dup(struct ism_vctx *v, const char *s)
{
	char *d = ism_v_strdup(v, s);

	for (char *p = d; p != NULL && *p != '\0'; p++)
		*p = (char)tolower((unsigned char)*p);
	return d;
}

/* A field name at map.key (an RFC 9110 token, as Envoy takes one), lowercased
 * into *out; absent: *out untouched. */
static void header_name(struct ism_vctx *v, const struct ism_node *map, const char *key,
			bool required, const char **out)
{
	const char *s;

	if (ism_v_str(v, map, key, required, &s) <= 0)
		return;
	if (s[0] == '\0')
		ism_v_err_key(v, map, key, "must not be empty");
	else if (!ism_is_token(s))
		ism_v_err_key(v, map, key, "\"%s\" is not a field name (RFC 9110 token)", s);
	else
		*out = lower_dup(v, s);
}

/* Istio's ParseJwksURI: an http or https URL with a host. */
static const char *jwks_uri_refused(const char *s)
{
	const char *host;

	if (strncmp(s, "https://", 8) == 0)
		host = s + 8;
	else if (strncmp(s, "http://", 7) == 0)
		host = s + 7;
	else
		return "URI scheme is not supported (http or https)";
	if (*host == '\0' || *host == '/' || *host == ':')
		return "no host";
	return NULL;
}

/* fromHeaders, fromParams, fromCookies into r->loc; Envoy's defaults
 * (Authorization "Bearer ", then access_token) when none is given. */
static void parse_locations(struct ism_vctx *v, const struct ism_node *m, struct ism_cm_jwt_rule *r)
{
	static const char *const hkeys[] = {"name", "prefix", NULL};
	const struct ism_node *hl = ism_v_node(v, m, "fromHeaders", false, ISM_NODE_SEQ);
	const struct ism_node *pl, *cl;
	size_t np = 0, nc = 0, nh = hl != NULL ? hl->n : 0, old;
	const char **params = ism_v_strlist(v, m, "fromParams", false, &np, &pl);
	const char **cookies = ism_v_strlist(v, m, "fromCookies", false, &nc, &cl);

	if (nh + np + nc == 0) {
		r->loc = ism_v_alloc(v, 2, sizeof(*r->loc));
		if (r->loc == NULL)
			return;
		r->loc[0] = (struct ism_jwt_loc){.where = ISM_JWT_HEADER,
						 .name = {"authorization", 13},
						 .prefix = {"Bearer ", 7}};
		r->loc[1] =
		    (struct ism_jwt_loc){.where = ISM_JWT_PARAM, .name = {"access_token", 12}};
		r->n_loc = 2;
		return;
	}
	r->loc = ism_v_alloc(v, nh + np + nc, sizeof(*r->loc));
	if (r->loc == NULL)
		return;
	old = ism_v_push(v, ".fromHeaders");
	for (size_t i = 0; i < nh; i++) {
		const struct ism_node *e = hl->items[i];
		size_t o2 = ism_v_push(v, "[%zu]", i);
		const char *name = NULL, *prefix = "";

		if (ism_v_expect(v, e, ISM_NODE_MAP) && ism_v_keys(v, e, hkeys, NULL)) {
			header_name(v, e, "name", true, &name);
			ism_v_str(v, e, "prefix", false, &prefix);
		}
		if (name != NULL)
			r->loc[r->n_loc++] =
			    (struct ism_jwt_loc){.where = ISM_JWT_HEADER,
						 .name = {name, (uint32_t)strlen(name)},
						 .prefix = {prefix, (uint32_t)strlen(prefix)}};
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
	for (size_t i = 0; i < np; i++)
		r->loc[r->n_loc++] = (struct ism_jwt_loc){
		    .where = ISM_JWT_PARAM, .name = {params[i], (uint32_t)strlen(params[i])}};
	for (size_t i = 0; i < nc; i++)
		r->loc[r->n_loc++] = (struct ism_jwt_loc){
		    .where = ISM_JWT_COOKIE, .name = {cookies[i], (uint32_t)strlen(cookies[i])}};
}

static void parse_claim_headers(struct ism_vctx *v, const struct ism_node *m,
				struct ism_cm_jwt_rule *r)
{
	static const char *const keys[] = {"header", "claim", NULL};
	const struct ism_node *l = ism_v_node(v, m, "outputClaimToHeaders", false, ISM_NODE_SEQ);
	size_t old;

	if (l == NULL || l->n == 0 ||
	    (r->claim_hdrs = ism_v_alloc(v, l->n, sizeof(*r->claim_hdrs))) == NULL)
		return;
	old = ism_v_push(v, ".outputClaimToHeaders");
	for (size_t i = 0; i < l->n; i++) {
		const struct ism_node *e = l->items[i];
		size_t o2 = ism_v_push(v, "[%zu]", i);
		const char *header = NULL, *claim = NULL;

		if (ism_v_expect(v, e, ISM_NODE_MAP) && ism_v_keys(v, e, keys, NULL)) {
			header_name(v, e, "header", true, &header);
			if (ism_v_str(v, e, "claim", true, &claim) > 0 && claim[0] == '\0') {
				ism_v_err_key(v, e, "claim", "must not be empty");
				claim = NULL;
			}
		}
		if (header != NULL && claim != NULL)
			r->claim_hdrs[r->n_claim_hdrs++] = (struct ism_jwt_claim_hdr){
			    .claim = {claim, (uint32_t)strlen(claim)},
			    .header = {header, (uint32_t)strlen(header)}};
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

/* spaceDelimitedClaims, with scope and permission (istiod's
 * buildSpaceDelimitedClaims), each once. */
static void parse_spaced(struct ism_vctx *v, const struct ism_node *m, struct ism_cm_jwt_rule *r)
{
	static const char *const always[] = {"permission", "scope"};
	size_t n = 0;
	const char **given = ism_v_strlist(v, m, "spaceDelimitedClaims", false, &n, NULL);

	r->spaced = ism_v_alloc(v, n + 2, sizeof(*r->spaced));
	if (r->spaced == NULL)
		return;
	for (size_t i = 0; i < n + 2; i++) {
		const char *s = i < 2 ? always[i] : given[i - 2];
		bool dup = false;

		for (size_t j = 0; j < r->n_spaced && !dup; j++)
			dup = strcmp(r->spaced[j], s) == 0;
		if (!dup)
			r->spaced[r->n_spaced++] = s;
	}
}

/* Whether text is a key set Envoy could use (lib/jose.h); why when not. */
static bool usable(const char *text, char *why, size_t cap)
{
	struct ism_jwks set;

	bool ok;

	why[0] = '\0';
	/* It makes OpenSSL keys, on the loader's thread. */
	ism_conf_ssl_enter();
	ok = ism_jwks_parse(text, strlen(text), &set, why, cap) == ISM_JWT_OK;
	if (ok)
		ism_jwks_free(&set);
	ism_conf_ssl_leave();
	return ok;
}

/* The key set: jwks, refused when Envoy could not use it; without it, what
 * the source fetched from jwksUri (or the issuer's discovery). A key set that
 * cannot be had is a warning, the rule keeps no keys; fetch false (a policy
 * that does not apply): nothing fetched. */
static void parse_jwks(struct ism_vctx *v, const struct ism_node *m, const char *uri,
		       uint32_t timeout_ms, bool fetch, struct ism_cm_jwt_rule *r)
{
	const char *at = uri == NULL				     ? "issuer"
			 : ism_node_get(m, "jwks_uri", NULL) != NULL ? "jwks_uri"
								     : "jwksUri";
	const char *what = uri != NULL ? uri : "the issuer's OpenID discovery";
	const char *text;
	char why[256];
	int rc = ism_v_str(v, m, "jwks", false, &r->jwks);

	if (rc < 0)
		return;
	if (rc > 0 && r->jwks[0] != '\0') {
		if (!usable(r->jwks, why, sizeof(why)))
			ism_v_err_key(v, m, "jwks", "jwks parse error: %s", why);
		return;
	}
	r->jwks = NULL;
	if ((r->issuer[0] == '\0' && uri == NULL) || !fetch)
		return; /* refused (neither issuer nor jwksUri), or not applied */
	if (jwks_source == NULL) {
		ism_v_warn(v, ism_node_get(m, at, NULL),
			   "%s: the key set is fetched when isthmus runs (isthmus -c fetches "
			   "nothing)",
			   what);
		return;
	}
	text = jwks_source->get(jwks_source->ctx, r->issuer, uri, timeout_ms, why, sizeof(why));
	if (text == NULL)
		ism_v_warn(v, ism_node_get(m, at, NULL),
			   "%s: the key set cannot be fetched (%s): its tokens are refused until "
			   "a refresh fetches it",
			   what, why);
	else if (!usable(text, why, sizeof(why)))
		ism_v_warn(v, ism_node_get(m, at, NULL),
			   "%s: what was fetched is no usable key set (%s): its tokens are refused "
			   "until a refresh fetches one",
			   what, why);
	else
		r->jwks = ism_v_strdup(v, text);
}

static void parse_rule(struct ism_vctx *v, const struct ism_node *m, bool fetch,
		       struct ism_cm_jwt_rule *r)
{
	static const char *const known[] = {"issuer",
					    "audiences",
					    "jwksUri",
					    "jwks_uri",
					    "jwks",
					    "fromHeaders",
					    "fromParams",
					    "fromCookies",
					    "outputPayloadToHeader",
					    "forwardOriginalToken",
					    "outputClaimToHeaders",
					    "timeout",
					    "spaceDelimitedClaims",
					    NULL};
	/* presence: istiod gives Envoy nothing of it (nothing reads it in
	 * pilot/), so what a gateway does with it is not defined yet. */
	static const char *const later[] = {"presence", NULL};
	/* jwks_uri: the proto's own name, which Istio's schema takes beside
	 * its JSON name, jwksUri (one of them, or jwks, at most). */
	static const char *const sources[] = {"jwksUri", "jwks_uri", "jwks", NULL};
	const char *ukey, *uri = NULL, *why;
	uint32_t timeout = 5000; /* istiod's default */

	if (!ism_v_keys(v, m, known, later))
		return;
	ism_model_one_of(v, m, sources, "jwks or jwksUri");
	ukey = ism_node_get(m, "jwks_uri", NULL) != NULL ? "jwks_uri" : "jwksUri";
	r->issuer = "";
	ism_v_str(v, m, "issuer", false, &r->issuer);
	r->aud = ism_v_strlist(v, m, "audiences", false, &r->n_aud, NULL);
	if (r->n_aud > ISM_JWT_AUD_MAX)
		ism_v_err_key(v, m, "audiences", "at most %d audiences", ISM_JWT_AUD_MAX);
	if (ism_v_str(v, m, ukey, false, &uri) > 0 && uri[0] == '\0')
		uri = NULL;
	if (r->issuer[0] == '\0' && uri == NULL)
		ism_v_err(v, m, "issuer or jwksUri must be non-empty string");
	if (uri != NULL && (why = jwks_uri_refused(uri)) != NULL) {
		ism_v_err_key(v, m, ukey, "\"%s\": %s", uri, why);
		uri = NULL;
	}
	/* How long a fetch of the key set may take. */
	ism_v_istio_dur(v, m, "timeout", &timeout);
	if (v->d->n_errors == 0 || ism_node_get(m, "jwks", NULL) != NULL)
		parse_jwks(v, m, uri, timeout, fetch, r);
	parse_locations(v, m, r);
	header_name(v, m, "outputPayloadToHeader", false, &r->payload_header);
	ism_v_bool(v, m, "forwardOriginalToken", &r->forward);
	parse_claim_headers(v, m, r);
	parse_spaced(v, m, r);
}

void ism_model_parse_authn(struct ism_vctx *v, const struct ism_node *spec, struct ism_cm_later *l)
{
	static const char *const known[] = {"selector", "targetRef", "targetRefs", "jwtRules",
					    NULL};
	struct ism_cm_ra *ra = ism_v_alloc(v, 1, sizeof(*ra));
	const struct ism_node *rules;
	size_t old;

	if (ra == NULL)
		return;
	l->ra = ra;
	ism_v_keys(v, spec, known, NULL);
	rules = ism_v_node(v, spec, "jwtRules", false, ISM_NODE_SEQ);
	if (rules == NULL || rules->n == 0 ||
	    (ra->rules = ism_v_alloc(v, rules->n, sizeof(*ra->rules))) == NULL)
		return;
	old = ism_v_push(v, ".jwtRules");
	for (size_t i = 0; i < rules->n; i++) {
		size_t o2 = ism_v_push(v, "[%zu]", i);

		if (ism_v_expect(v, rules->items[i], ISM_NODE_MAP))
			parse_rule(v, rules->items[i], !l->ignored, &ra->rules[ra->n_rules++]);
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}
