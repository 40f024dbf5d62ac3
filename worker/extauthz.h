/* SPDX-License-Identifier: Apache-2.0 */
/* External authorization: a CUSTOM AuthorizationPolicy's provider (Istio's
 * envoyExtAuthzHttp) asked about a request, as Envoy's ext_authz filter asks
 * its HTTP service. The request a CUSTOM rule matches is kept here (its
 * head, the body bytes read with it) while a check request goes to the
 * provider's cluster; the check is a stream (worker/stream.h) of a sink
 * session, as a mirrored copy is, so it has the upstream pool, balancing and
 * timeouts of every stream. Its answer decides: 200 lets the request go on
 * (with the answer's fields the provider names), 5xx or a failure is an
 * error, any other status denies with that answer. Private to worker/. */
#ifndef ISM_WORKER_EXTAUTHZ_H
#define ISM_WORKER_EXTAUTHZ_H

#include <stdbool.h>
#include <stdint.h>

#include "shm/table-t.h"
#include "worker/http1.h"
#include "worker/worker-t.h"

/* Envoy's response code details of the two answers ext_authz makes. */
#define ISM_XA_DENIED "ext_authz_denied"
#define ISM_XA_ERROR  "ext_authz_error"
/* The flag of both (Envoy's UnauthorizedExternalService). */
#define ISM_XA_FLAG "UAEX"
/* An answer body over this is an error. */
#define ISM_XA_BODY_MAX (64u * 1024u)
/* Fields of an HTTP answer read: all it may have. */
#define ISM_XA_FIELDS_MAX ISM_MAX_HDRS

/* A request waiting for its check (ism_stream.xa, state ISM_ST_AUTHZ), and
 * what stream.c needs to go on with it. */
struct ism_xa_wait {
	struct ism_http_req req; /* a copy; its fields edited by an allowing answer */
	struct ism_buf body;	 /* the body bytes read so far (decoded) */
	uint8_t req_done;	 /* the body ended within them */
	uint8_t has_body;	 /* the request has a body (its head did not end it) */
	/* includeRequestBodyInCheck: the body is read before the check is sent
	 * (ism_extauthz_send, again as it comes) */
	uint8_t reading;
	uint64_t cap; /* the body bytes kept at most (then 507) */
	uint8_t https, undecided;
	const struct ism_vhost *vh; /* as found before the check (routed again on a newer table) */
	const struct ism_route *r;
	/* headersToDownstreamOnAllow: added to the upstream's response; n 0: none */
	struct ism_hdr_edits down;
	/* the memory of the above: the request's strings, the answer's fields,
	 * the edits (made only for an answer that has such fields) */
	char *text;
	struct ism_buf answer;
	struct ism_hdr_edit *down_e;
	struct ism_str *down_v;
	struct ism_buf query; /* the query a gRPC answer edited */
	/* The check in flight (its stream: idx << 32 | gen), cancelled if the
	 * request goes first, as Envoy's ext_authz cancels its call */
	uint64_t check;
	bool checking;
};

/* Stream st's request (req, the body bytes body, len read with it, req_done)
 * is kept in st->xa, st in ISM_ST_AUTHZ; the caller adds what it goes on
 * with. NULL without memory (nothing kept). */
struct ism_xa_wait *ism_extauthz_keep(struct ism_wctx *w, struct ism_stream *st,
				      const struct ism_http_req *req, const char *body,
				      uint32_t len, bool req_done);
/* The check of st's kept request starts: st waits until
 * ism_stream_authz_allow, or an answer (denied, error) ends it; a check that
 * cannot start is an error at once (decided in the call). With
 * includeRequestBodyInCheck, the body is read first (st->xa->reading: called
 * again as more of it is kept), or answered 413 past the bound. 0, or
 * -ENOMEM (nothing started: the caller answers). */
int ism_extauthz_send(struct ism_wctx *w, struct ism_stream *st);
void ism_extauthz_wait_free(struct ism_xa_wait *x);
/* Request st goes away: a check of it still in flight is cancelled (its
 * upstream stream reset, or its connection closed), then st->xa freed. */
void ism_extauthz_gone(struct ism_wctx *w, struct ism_stream *st);
void ism_extauthz_free(struct ism_wctx *w);

#endif
