/* SPDX-License-Identifier: Apache-2.0 */
/* CORS (a route's Istio corsPolicy, as Envoy's CORS filter does it): what the
 * policy makes of a request, and the Access-Control-* fields of its response.
 * Private to worker/. */
#ifndef ISM_WORKER_CORS_H
#define ISM_WORKER_CORS_H

#include <stddef.h>
#include <stdint.h>

#include "shm/table-t.h"
#include "worker/http1.h"

struct ism_router_scratch;

#define ISM_CORS_MAX_FIELDS 5

/* The Access-Control-* fields of one exchange, in one malloc'd block, as
 * header edits that set each field (drop the message's own of that name,
 * send this value), as Envoy's CORS filter sets them: on a response head and
 * on an answer made here alike (worker/actions.h applies them). Nothing in it
 * points into the route table, which a reload may retire while the exchange
 * runs. */
struct ism_cors_out {
	uint8_t preflight; /* answered here: 200 with these fields, no body */
	struct ism_hdr_edits edits;
	struct ism_hdr_edit e[ISM_CORS_MAX_FIELDS];
	struct ism_str v[ISM_CORS_MAX_FIELDS];
	char text[]; /* the names and values, each NUL-terminated */
};

enum ism_cors_verdict {
	ISM_CORS_PASS = 0,  /* no Origin, or a refused one: the request goes on untouched */
	ISM_CORS_ACTUAL,    /* an allowed origin's request: it goes on, its response gets *out */
	ISM_CORS_PREFLIGHT, /* answered here with *out: 200, its fields (none for a refused
			       origin whose preflight the policy does not forward) */
};

/* What policy c makes of request req (its Origin, method and
 * Access-Control-Request-* fields); rs matches the origins. *out (malloc'd,
 * the caller's to free) for ISM_CORS_ACTUAL and ISM_CORS_PREFLIGHT, else
 * NULL. Returns the verdict, or -ENOMEM. */
int ism_cors_check(const struct ism_cors *c, const struct ism_http_req *req,
		   struct ism_router_scratch *rs, struct ism_cors_out **out);

#endif
