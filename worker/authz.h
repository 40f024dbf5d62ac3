/* SPDX-License-Identifier: Apache-2.0 */
/* The appliance's AuthorizationPolicies at a request or a connection, as
 * Envoy's RBAC filters decide (istiod's DENY filter, then its ALLOW one). */
#ifndef ISM_WORKER_AUTHZ_H
#define ISM_WORKER_AUTHZ_H

#include <stddef.h>

#include "shm/table-t.h"
#include "worker/http1.h"

struct ism_wctx;
struct ism_stream;

/* Envoy's response code details of a denial no ALLOW rule matched. */
#define ISM_AZ_NONE "rbac_access_denied_matched_policy[none]"

const char *ism_authz_check(struct ism_wctx *w, struct ism_stream *st,
			    const struct ism_http_req *req, const struct ism_az_rbac *deny,
			    const struct ism_az_rbac *allow);

/* NULL when stream st may go on, else why not: Envoy's response code
 * details, "rbac_access_denied_matched_policy[<the DENY rule>]" or
 * ISM_AZ_NONE (valid while the worker's table is). req: the request
 * (normalised path), or NULL for a TCP or TLS passthrough connection, which
 * the filters built for those decide. */
static inline const char *ism_authz_denied(struct ism_wctx *w, struct ism_stream *st,
					   const struct ism_http_req *req,
					   const struct ism_authz *az)
{
	const struct ism_az_rbac *deny = req != NULL ? &az->deny : &az->tcp_deny;
	const struct ism_az_rbac *allow = req != NULL ? &az->allow : &az->tcp_allow;

	if (deny->n == 0 && !allow->on)
		return NULL;
	return ism_authz_check(w, st, req, deny, allow);
}

#endif
