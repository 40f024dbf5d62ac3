/* SPDX-License-Identifier: Apache-2.0 */
/* RequestAuthentication at a request: Envoy's jwt_authn filter as istiod
 * configures it for a gateway (worker/authn.c). Before the AuthorizationPolicy
 * check: a request without a token goes on; one whose token a provider
 * refuses is answered 401 (403 for its audiences), and a verified token's
 * claims are what the policies' requestPrincipals and request.auth.* read. */
#ifndef ISM_WORKER_AUTHN_H
#define ISM_WORKER_AUTHN_H

#include <stdbool.h>

#include "lib/jose.h"
#include "shm/table-t.h"
#include "worker/http1.h"

struct ism_wctx;

/* What the request's tokens came to. */
struct ism_authn {
	enum ism_jwt_status status; /* ISM_JWT_OK: the request goes on */
	/* The token verified last (Envoy's jwt_authn metadata): its claims for
	 * the policies; by NULL: none. */
	struct ism_jwt jwt;
	const struct ism_jwt_provider *by;
	/* Fields were added (outputPayloadToHeader, outputClaimToHeaders): the
	 * route is looked up again, as istiod has Envoy clear its route cache
	 * at a gateway. */
	bool added;
	struct ism_authn_mem *mem; /* what the request's edits point into */
};

/* The key sets of table t's providers (one each), parsed into *out (NULL
 * when t has none); -ENOMEM when memory runs out. */
int ism_authn_sets(const struct ism_table *t, struct ism_jwks **out);
/* Sets (n of them, from ism_authn_sets) become w's (w->jwks), its old ones
 * freed; w NULL: they are freed. */
void ism_authn_install(struct ism_wctx *w, struct ism_jwks *sets, uint32_t n);

/* Checks req's tokens against the table's providers (t->jwt.n > 0), as
 * Envoy's requirement "any provider, or each provider's token valid or
 * missing": the configured output fields are removed first, a verified
 * token's are added, its own field (or query parameter) removed unless
 * forwardOriginalToken. req's fields are edited in place (their array has
 * room for ISM_MAX_HDRS). NULL without memory; ism_authn_free it once req is
 * written and its claims read. */
struct ism_authn *ism_authn_check(struct ism_wctx *w, struct ism_http_req *req);
void ism_authn_free(struct ism_authn *a);

/* Whether the claim at path (len bytes: names joined with ']') of a verified
 * token's payload holds for holds(): a string (split into words when its
 * provider by lists the top-level claim in spaceDelimitedClaims), or one
 * string of a list, as Envoy's metadata matcher reads the jwt_authn payload
 * (istiod's list-or-value matcher, for AuthorizationPolicy and VirtualService
 * claims alike). */
bool ism_authn_claim_holds(const struct ism_json *payload, const struct ism_jwt_provider *by,
			   const char *path, size_t len,
			   bool (*holds)(void *ctx, const char *v, size_t len), void *ctx);

/* The verified token's claims (its payload); NULL when a is NULL or no
 * token was verified. */
static inline const struct ism_json *ism_authn_claims(const struct ism_authn *a)
{
	return a != NULL && a->by != NULL ? &a->jwt.payload.root : NULL;
}

/* Envoy's answer to a refused token: 401, or 403 for its audiences. */
static inline int ism_authn_http_status(enum ism_jwt_status s)
{
	return s == ISM_JWT_AUDIENCE_DENIED ? 403 : 401;
}

#endif
