/* SPDX-License-Identifier: Apache-2.0 */
/* Routing: from a parsed request to a route and a weighted destination cluster.
 * Pure functions over an immutable ism_table; a worker-private scratch holds the
 * PCRE2 match data. */
#ifndef ISM_WORKER_ROUTER_H
#define ISM_WORKER_ROUTER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lib/json.h"
#include "shm/table-t.h"
#include "worker/http1.h"

struct ism_buf;
struct ism_router_scratch;

/* Per-process scratch for regex matching; NULL on allocation failure. */
struct ism_router_scratch *ism_router_scratch_new(void);
void ism_router_scratch_free(struct ism_router_scratch *s);
/* Moves the scratch to table t (its regexes are JIT-compiled for this process
 * as they are first used), dropping what it held for the previous one: call it
 * before the previous table is released. 0 or -ENOMEM. */
int ism_router_use_table(struct ism_router_scratch *s, const struct ism_table *t);
/* Whether the last ism_router_route gave up because a regex reached its match
 * limit (its NULL then means "could not decide", not "no route"). */
bool ism_router_limit_hit(const struct ism_router_scratch *s);

/* The request's path as pathNormalization mode (enum ism_pathnorm_mode) has it,
 * before routing: routes match it and the upstream gets it. A path already
 * normal is left where it is (one scan); another is written to the scratch and
 * req->path points there until the next call. 0, -EINVAL (the path is refused:
 * 400) or -ENOMEM. */
int ism_router_normalize(struct ism_router_scratch *s, uint8_t mode, struct ism_http_req *req);

/* The virtual host of listener l that serves host (a Host header value; any
 * ":port" is ignored, case-insensitive): an exact domain first, then the longest
 * "*.suffix" wildcard, then "*". NULL when none. */
/* How well domain d ("*", "*.suffix" or an exact name) matches host[0..n)
 * (no port): -1 not at all, 0 "*", the suffix length for a wildcard, INT_MAX
 * exactly. The best rank wins, the first among equals. */
int ism_router_domain_rank(const struct ism_str *d, const char *host, size_t n);
const struct ism_vhost *ism_router_vhost(const struct ism_vhost *vhosts, uint32_t n_vhosts,
					 const struct ism_name_index *ix, const char *host,
					 size_t host_len);

/* The HTTPS server (Gateway server with tls) of listener l for the SNI name
 * (lowercase; "" when none): exact name, then the longest wildcard, then "*".
 * -1: no server has that name (without SNI: no "*" server). */
int ism_router_pick_server(const struct ism_listener *l, const char *sni);

/* The first route of vh whose match holds for req (Istio: first match wins; the
 * match blocks of a route are ORed, the conditions inside one are ANDed).
 * scheme is "http" or "https". NULL when no route matches (404). */
const struct ism_route *ism_router_route(const struct ism_vhost *vh, const struct ism_http_req *req,
					 const char *scheme, uint16_t port,
					 struct ism_router_scratch *s);

/* Whether string match m holds for the value v (len bytes), as in a route's
 * match (a regex bounded as there; one that reaches its bound does not hold). */
bool ism_router_strmatch(const struct ism_strmatch *m, const char *v, size_t len,
			 struct ism_router_scratch *s);

/* The claims the routes' claim matches read from now on: a verified JWT's
 * payload and its provider (worker/authn.h); NULL: none. */
void ism_router_set_claims(struct ism_router_scratch *s, const struct ism_json *payload,
			   const struct ism_jwt_provider *by);

/* Finds header name in req; with several occurrences, joins their values
 * with "," into the scratch (Envoy's rule), valid until its next use. false
 * when absent. */
bool ism_router_header(const struct ism_http_req *req, const struct ism_str *name,
		       struct ism_router_scratch *s, const char **v, size_t *len);

/* Puts req's fields into b as pairs (ism_buf_put_pair), as the upstream gets
 * them: X-Forwarded-Proto, X-Forwarded-For and X-Request-Id last, with the
 * values ism_router_header gives, once the edge's are set (req->edge_xfp);
 * the others as they came. What Envoy's filters read from the header map its
 * connection manager changed. 0, or -ENOMEM. */
int ism_router_edge_pairs(const struct ism_http_req *req, struct ism_router_scratch *s,
			  struct ism_buf *b);

/* Whether address a is in subnet sn. */
bool ism_router_in_subnet(const struct ism_subnet *sn, const struct sockaddr_storage *a);

/* The match block of the route the last ism_router_route returned that held
 * (the first of them); NULL when that route has none. */
const struct ism_match *ism_router_matched(const struct ism_router_scratch *s);

/* Picks a destination of dest[0..n) by weight (total_weight their sum): rnd
 * is uniform in [0, 2^32). NULL when none has a weight > 0. */
const struct ism_dest *ism_router_pick_weighted(const struct ism_dest *dest, uint32_t n,
						uint32_t total_weight, uint32_t rnd);
/* The same for a route's destinations. */
const struct ism_dest *ism_router_pick(const struct ism_route *r, uint32_t rnd);
/* The same, as the index of the destination's cluster, or -1. */
int ism_router_pick_dest(const struct ism_route *r, uint32_t rnd);

/* Searches regex m (a rewrite's: m->search) in v[0..len) from offset start.
 * Returns the pairs of *ov filled (>= 1; unset groups are PCRE2_UNSET, which
 * is SIZE_MAX) on a match, 0 when there is none, -1 when the search stopped at
 * its match limit (ism_router_limit_hit is then true). *ov stays valid until
 * the next use of s. */
int ism_router_find(struct ism_router_scratch *s, const struct ism_strmatch *m, const char *v,
		    size_t len, size_t start, const size_t **ov);

/* The first of the TCP or TLS routes r[0..n) whose match holds for a
 * connection with server name sni (lowercase; NULL or "": none) to the local
 * address local (NULL: unknown, which no destinationSubnets holds for). NULL:
 * none does. */
const struct ism_l4route *ism_router_l4(const struct ism_l4route *r, uint32_t n, const char *sni,
					const struct sockaddr_storage *local);

#endif
