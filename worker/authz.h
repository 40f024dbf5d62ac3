/* SPDX-License-Identifier: Apache-2.0 */
/* The appliance's AuthorizationPolicies at a request or a connection, as
 * Envoy's RBAC filters decide (istiod's DENY filter, then its ALLOW one): a
 * pure check over what the caller gives of the request and its connection,
 * used by the worker before routing and by the master's explain. */
#ifndef ISM_WORKER_AUTHZ_H
#define ISM_WORKER_AUTHZ_H

#include <openssl/ssl.h>
#include <stdbool.h>
#include <stddef.h>

#include "lib/json.h"
#include "shm/table-t.h"
#include "worker/http1.h"

struct ism_router_scratch;

/* Envoy's response code details of a denial no ALLOW rule matched. */
#define ISM_AZ_NONE ISM_AZ_DETAILS "none]"

/* What a check reads. */
struct ism_az_in {
	const struct ism_http_req *req; /* the request (normalised path); NULL: a connection */
	const char *peer;		/* source.ip: the socket's peer (never a PROXY header's) */
	const char *client; /* remote.ip: X-Forwarded-For's client, a PROXY header's, the peer */
	const char *sni;    /* the ClientHello's server name; NULL: none */
	SSL *ssl;	    /* the client's TLS (its certificate); NULL: none */
	/* The address the client connected to, asked for when a condition
	 * needs it; false when unknown. */
	bool (*dest)(void *ctx, struct sockaddr_storage *out);
	void *ctx;
	struct ism_router_scratch *rs; /* for the string matches */
	/* The claims of the request's verified JWT (worker/authn.h) and the
	 * provider that verified it; NULL: none. */
	const struct ism_json *jwt;
	const struct ism_jwt_provider *jwt_by;
};

/* The filters that judge a request (req) or a connection (!req). */
static inline const struct ism_az_rbac *ism_authz_deny(const struct ism_authz *az, bool req)
{
	return req ? &az->deny : &az->tcp_deny;
}

static inline const struct ism_az_rbac *ism_authz_allow(const struct ism_authz *az, bool req)
{
	return req ? &az->allow : &az->tcp_allow;
}

/* Whether a request (req) or a connection has anything to be checked against. */
static inline bool ism_authz_any(const struct ism_authz *az, bool req)
{
	return ism_authz_deny(az, req)->n != 0 || ism_authz_allow(az, req)->on;
}

/* Whether a rule of the CUSTOM policies matches the request in: its
 * provider (az->xa) decides it (worker/extauthz.h). */
bool ism_authz_custom(const struct ism_authz *az, const struct ism_az_in *in);

/* NULL when in may go on, else why not: Envoy's response code details,
 * "rbac_access_denied_matched_policy[<the DENY rule>]" or ISM_AZ_NONE
 * (strings of the table). *rule: the rule that decided, the DENY one that
 * matched or the ALLOW one that let it through; NULL when none did. */
const char *ism_authz_check(const struct ism_authz *az, const struct ism_az_in *in,
			    const struct ism_az_policy **rule);

#endif
