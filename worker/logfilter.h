/* SPDX-License-Identifier: Apache-2.0 */
/* The access log's filter: a Telemetry's CEL expression (conf/cel.h),
 * evaluated as Envoy's CEL access-log filter does, over the values of
 * Envoy's attributes (conf/logattrs.h) for one exchange. Private to worker/. */
#ifndef ISM_WORKER_LOGFILTER_H
#define ISM_WORKER_LOGFILTER_H

#include <stdbool.h>
#include <stdint.h>

struct ism_alog_rec;
struct ism_http_req;
struct ism_stream;
struct ism_wctx;

/* Keeps the header fields of request req (in the session's buffer now) that
 * the filter's request.headers reads at the exchange's end: only when the
 * generation's log has a filter. Without memory, request.headers is empty. */
void ism_logfilter_capture(struct ism_wctx *w, struct ism_stream *st,
			   const struct ism_http_req *req);
/* Keeps the response's header fields h (and own, the appliance's), or its
 * trailers, that the filter's response.headers, response.trailers and
 * response.grpc_status read: only when it reads them; the first head or
 * trailers of the exchange (the one the client got). */
void ism_logfilter_capture_resp(struct ism_wctx *w, struct ism_stream *st, bool trailers,
				const struct ism_http_header *h, size_t n,
				const struct ism_http_header *own, size_t n_own);
/* The gRPC status of st's response as Envoy's Grpc::Common::getGrpcStatus
 * gives it, from what ism_logfilter_capture_resp kept: the trailers'
 * grpc-status, else the head's (a number; above 16 only with user_defined;
 * else -1, Envoy's InvalidCode), else the one of the HTTP status
 * (httpToGrpcStatus); -2 without a response. */
int64_t ism_logfilter_grpc_status(const struct ism_stream *st, uint32_t status, bool user_defined);
/* Whether the line r of st's exchange is written: the filter's verdict, true
 * without a filter. */
bool ism_logfilter_pass(struct ism_wctx *w, struct ism_stream *st, const struct ism_alog_rec *r);

#endif
