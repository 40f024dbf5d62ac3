/* SPDX-License-Identifier: Apache-2.0 */
/* Between the files that make up streams: stream.c (the lifecycle, the
 * attempts, the request and the response), answer.c (answers made here),
 * exchange.c (the access-log line and the counters) and hvalue.c (header
 * values with operators); extauthz.c answers with them too. Private to
 * them. */
#ifndef ISM_WORKER_STREAM_INT_H
#define ISM_WORKER_STREAM_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "worker/session.h"
#include "worker/stream.h"
#include "worker/worker-t.h"

struct ism_cors;
struct ism_route;

/* Why an attempt ended before a response head, as the local answer says it
 * (ism_stream_flag_for reads its flag from the words: UC, UR). */
#define ISM_WHY_CLOSED	     "upstream connection closed before the response head"
#define ISM_WHY_RESET	     "upstream reset the stream before the response head"
#define ISM_WHY_REFUSED	     "upstream refused the stream before the response head"
#define ISM_WHY_RETRY_BUFFER "exceeded request buffer limit while retrying upstream"
/* A gRPC-Web text request whose body is not base64 (Envoy's answer). */
#define ISM_WHY_GW_BASE64 "Bad gRPC-web request, invalid base64 data."
/* An upgrade other than WebSocket (Envoy: 403 upgrade_failed). */
#define ISM_WHY_UPGRADE "upgrade not allowed"
/* An AuthorizationPolicy's denial (Envoy's RBAC filter's answer). */
#define ISM_WHY_RBAC "RBAC: access denied"

/* The request's cluster; NULL before one is chosen, or when a newer table
 * has none of its name (ism_streams_regen). */
static inline const struct ism_cluster *ism_stream_cluster(struct ism_wctx *w,
							   const struct ism_stream *st)
{
	if (st->cluster >= w->table->n_clusters)
		return NULL;
	return &w->table->clusters[st->cluster];
}

/* ---- stream.c ---- */

/* A response made here, lr; flags: the access log's reason code (NULL: none,
 * a route's own answer). During a fault delay it waits for the delay's end
 * (the first one made; without memory it goes at once). */
void ism_stream_answer(struct ism_wctx *w, struct ism_stream *st, const struct ism_local *lr,
		       const char *flags);
/* The fields in[0..n) with edits e applied, in the worker's scratch (valid
 * until its next use), *n_out of them; NULL without memory. in may be the
 * scratch itself (edits on edits: the route's, then CORS's). */
struct ism_http_header *ism_stream_edit_fields(struct ism_wctx *w, const struct ism_hdr_edits *e,
					       const struct ism_http_header *in, size_t n,
					       size_t *n_out);

/* ---- answer.c ---- */

/* The stream's deadline of kind is ms from now (0: none), or the route's
 * timeout if that comes first; the loop wakes for it (w->stream_wake). */
void ism_stream_set_deadline(struct ism_wctx *w, struct ism_stream *st,
			     enum ism_stream_deadline kind, uint32_t ms);

/* An answer made while a fault delay runs (ism_stream_answer, flags its
 * reason code), copied whole for the delay's end; NULL without memory. */
struct ism_deferred *ism_stream_defer(const struct ism_local *lr, const char *flags);
/* An error answered here: why, a line of text, is its body; hdrs (n, 0..2):
 * more fields. */
void ism_stream_error(struct ism_wctx *w, struct ism_stream *st, int status, const char *why,
		      bool close, const struct ism_http_header *hdrs, size_t n);
/* ism_stream_error without more fields. */
void ism_stream_local(struct ism_wctx *w, struct ism_stream *st, int status, const char *why,
		      bool close);
/* A fault's abort: its status and Envoy's text, or with a gRPC status (code;
 * -1: none), 200 and that grpc-status for a gRPC client (trailers-only); its
 * flag is FI alone (ism_alog_flags). */
void ism_stream_fault_abort(struct ism_wctx *w, struct ism_stream *st, int status, int code);
/* The route's corsPolicy: a preflight is answered here, 200 with its fields
 * and no body; an allowed origin's other requests go on, st->cors holding
 * what their answers get. True when the request is answered. */
bool ism_stream_cors(struct ism_wctx *w, struct ism_stream *st, const struct ism_cors *c,
		     const struct ism_http_req *req);
/* tls.httpsRedirect: 301 to the same URL over https (Envoy's require_tls). */
void ism_stream_https_redirect(struct ism_wctx *w, struct ism_stream *st,
			       const struct ism_http_req *req);
/* A route's redirect: Location as Envoy writes it, no body. */
void ism_stream_redirect(struct ism_wctx *w, struct ism_stream *st, const struct ism_route *r,
			 const struct ism_http_req *req, uint16_t port, bool tls);
/* A route's direct response: its status and body (text/plain when it has
 * one, as Envoy's local replies), and, as Envoy gives a direct 201 or 3xx
 * answer, the request's own URL as Location. */
void ism_stream_direct_response(struct ism_wctx *w, struct ism_stream *st,
				const struct ism_route *r, const struct ism_http_req *req,
				uint16_t port, bool tls);
/* A fault delay is over: the answer made meanwhile (st->deferred) goes now.
 * false: none was made, the request goes on. */
bool ism_stream_answer_deferred(struct ism_wctx *w, struct ism_stream *st);

/* ---- exchange.c ---- */

/* A response of this status, in the worker's counters of status classes. */
void ism_stream_count_status(struct ism_wctx *w, int status);
/* The access log's reason code for a response made here, in the manner of
 * Envoy's response flags (docs/operations.md lists them). */
const char *ism_stream_flag_for(int status, const char *why);
/* The access log's view of a request, captured while its head is in the
 * session's buffer (req NULL: it could not be parsed). Only when the log is on. */
void ism_stream_log_begin(struct ism_wctx *w, struct ism_stream *st,
			  const struct ism_http_req *req);
/* The line of the exchange that ends now. */
void ism_stream_log(struct ism_wctx *w, struct ism_stream *st);
/* The exchange's duration and status, in the worker's and the cluster's counters. */
void ism_stream_count(struct ism_wctx *w, struct ism_stream *st);
/* The access log's %RESP()% values of the answer whose fields are h[0, n),
 * with those isthmus adds to it: Server, Date, and for an upstream's answer
 * (upstream) x-envoy-upstream-service-time. */
void ism_stream_log_resp(struct ism_wctx *w, struct ism_stream *st, const struct ism_http_header *h,
			 size_t n, bool upstream);
/* Envoy's response code details of an answer made here for a reason Envoy
 * names the same: its connection manager's (the request-header timeout, the
 * body over the limit, an HTTP/1.1 request without Host) and its router's
 * (the request not kept whole for a retry). NULL: the reason code decides
 * (code_details). */
const char *ism_stream_local_details(int status, const char *why);

#endif
