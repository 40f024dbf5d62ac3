/* SPDX-License-Identifier: Apache-2.0 */
/* The end of an exchange (worker/stream-int.h): its line in the access log,
 * with Envoy's response flags and response code details, and its place in
 * the worker's, the cluster's, the listener's and the route's counters. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/addr.h"
#include "lib/jose.h"
#include "lib/log.h"
#include "worker/accesslog.h"
#include "worker/cors.h"
#include "worker/h2up.h"
#include "worker/hvalue.h"
#include "worker/logfilter.h"
#include "worker/ring.h"
#include "worker/session.h"
#include "worker/stream-int.h"
#include "worker/stream.h"
#include "worker/upstream.h"

void ism_stream_count_status(struct ism_wctx *w, int status)
{
	int cls = status / 100;

	if (cls >= 1 && cls <= 5)
		ism_wstat_add(&w->st->resp_class[cls], 1);
}

const char *ism_stream_flag_for(int status, const char *why)
{
	switch (status) {
	case 401:
		/* Envoy's jwt_authn filter answers without a flag. */
		return NULL;
	case 403:
		/* Envoy's RBAC and jwt_authn filters answer without a flag, and
		 * so does its connection manager refusing an upgrade. */
		return strcmp(why, ISM_WHY_RBAC) == 0 || strcmp(why, ISM_WHY_UPGRADE) == 0 ||
			       strcmp(why, ism_jwt_status_text(ISM_JWT_AUDIENCE_DENIED)) == 0
			   ? NULL
			   : "DPE";
	case 404:
		/* Envoy's connection manager refuses a path that is not
		 * relative without a flag. */
		return strcmp(why, ISM_WHY_ABSOLUTE_PATH) == 0 ? NULL : "NR";
	case 421:
		/* A connection a reload no longer takes (taken_as_now). */
		return NULL;
	case 408:
		return strcmp(why, ISM_WHY_STREAM_IDLE) == 0 ? "SI" : "DT";
	case 504:
		return "UT";
	case 502:
		/* Every 502 made here is an upstream protocol error (a malformed or
		 * too large head or body, an upgrade not switched). */
		return "UPE";
	case 503:
		if (strstr(why, "overflow"))
			return "UO";
		if (strcmp(why, ISM_WHY_NO_HEALTHY) == 0)
			return "UH";
		if (strcmp(why, ISM_WHY_CLOSED) == 0)
			return "UC";
		if (strcmp(why, ISM_WHY_RESET) == 0 || strcmp(why, ISM_WHY_REFUSED) == 0)
			return "UR";
		if (strstr(why, "connect"))
			return "UF";
		return "NC";
	default:
		return status >= 400 ? "DPE" : NULL;
	}
}

void ism_stream_log_begin(struct ism_wctx *w, struct ism_stream *st, const struct ism_http_req *req)
{
	if (w->alog.fd < 0)
		return;
	ism_alog_req_free(st->log_req);
	/* The exchange's start: its stream's (the wall clock that long ago). */
	st->log_req = ism_alog_capture(w->alog.headers, w->alog.named, req,
				       ism_wall_ms() - (w->now - st->t0_ms));
	st->flags = NULL;
	ism_logfilter_capture(w, st, req);
}

/* Envoy's response code details of the exchange: via_upstream for an
 * upstream's answer; for one made here, the router's detail of its reason
 * (flags; a failed connection's with its transport failure reason, made in
 * buf), the fault filter's, direct_response for a route's own; NULL when
 * Envoy's is not known. */
static const char *code_details(const struct ism_stream *st, const char *transport, char *buf,
				size_t cap)
{
	static const char *const map[][2] = {
	    {"NR", "route_not_found"},
	    {"UH", "no_healthy_upstream"},
	    {"NC", "cluster_not_found"},
	    {"UT", "response_timeout"},
	    {"UF", "upstream_reset_before_response_started{connection_failure}"},
	    {"UC", "upstream_reset_before_response_started{connection_termination}"},
	    {"UR", "upstream_reset_before_response_started{remote_reset}"},
	    {"UO", "upstream_reset_before_response_started{overflow}"},
	    {"UPE", "upstream_reset_before_response_started{protocol_error}"},
	};

	if (st->codec_details != NULL)
		return st->codec_details;
	if (st->state != ISM_ST_LOCAL)
		return st->status != 0 ? "via_upstream" : NULL;
	if (st->log_flags & ISM_ALOG_FI)
		return "fault_filter_abort";
	if (st->local_details != NULL)
		return st->local_details;
	/* A route's redirect or directResponse; a CORS preflight's, Envoy's CORS
	 * filter's. */
	if (st->flags == NULL)
		return st->cors != NULL && st->cors->preflight ? "cors_response"
							       : "direct_response";
	/* Envoy's router: "{reset reason,transport failure reason}" (the log
	 * shows its spaces as underscores). */
	if (transport != NULL && strcmp(st->flags, "UF") == 0 &&
	    snprintf(buf, cap, "upstream_reset_before_response_started{connection_failure,%s}",
		     transport) > 0)
		return buf;
	for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcmp(st->flags, map[i][0]) == 0)
			return map[i][1];
	return NULL;
}

/* The values of the header values' operators the line shows (mask), made
 * into buf (cap bytes) and pointed at by hv. */
static void log_hvals(struct ism_wctx *w, struct ism_stream *st, uint64_t mask, const char **hv,
		      char *buf, size_t cap)
{
	size_t off = 0;

	for (uint8_t k = 0; mask != 0 && k < ISM_HV_KINDS; k++, mask >>= 1) {
		size_t n;

		if (!(mask & 1) || off + 1 >= cap)
			continue;
		n = ism_hval_log(w, st, k, buf + off, cap - off - 1);
		if (n == 0)
			continue;
		buf[off + n] = '\0';
		hv[k] = buf + off;
		off += n + 1;
	}
}

/* Envoy's timings of the exchange, in ms from the request head: its last
 * byte, its last byte sent upstream, the upstream's response head, and from
 * that head to the response's last byte out (now); and of its connection,
 * from the accept to the TLS handshake's end; -1 when not known. */
static void log_times(const struct ism_wctx *w, const struct ism_stream *st, struct ism_alog_rec *r)
{
	r->req_ms = st->req_done ? (int64_t)(st->req_end_ms - st->t0_ms) : -1;
	r->req_tx_ms = st->req_sent_ms ? (int64_t)(st->req_sent_ms - st->t0_ms) : -1;
	r->resp_ms = st->resp_head_ms ? (int64_t)(st->resp_head_ms - st->t0_ms) : -1;
	r->resp_tx_ms = st->resp_head_ms && st->state != ISM_ST_LOCAL
			    ? (int64_t)(w->now - st->resp_head_ms)
			    : -1;
	r->handshake_ms =
	    st->sess->handshaken ? (int64_t)(st->sess->handshake_ms - st->sess->accept_ms) : -1;
}

void ism_stream_log(struct ism_wctx *w, struct ism_stream *st)
{
	const struct ism_sess_pp *pp;
	const struct ism_cluster *cl;
	struct ism_alog_rec r;
	char flags[32], local[INET6_ADDRSTRLEN] = "";
	char transport[160], details[256], hv[2048];
	uint16_t local_port = 0;

	if (st->log_req == NULL)
		return;
	/* Envoy makes an X-Request-Id for every request it parsed, answered here
	 * (no route, a redirect, an overflow) or not: the line shows one. */
	if (w->table->request_id && st->log_req->http_minor >= 0 &&
	    st->log_req->request_id[0] == '\0' &&
	    !(w->table->preserve_rid && st->log_req->val[ISM_ALOG_H_X_REQUEST_ID] != NULL)) {
		if (st->rid[0] != '\0')
			memcpy(st->log_req->request_id, st->rid, sizeof(st->rid));
		else
			ism_up_request_id(w, st->log_req->request_id);
	}
	cl = ism_stream_cluster(w, st);
	if (ism_up_failure_text(st->up_errno, st->up_tls_err, transport, sizeof(transport)) == 0)
		transport[0] = '\0';
	r = (struct ism_alog_rec){
	    .req = st->log_req,
	    /* Monotonic, as Envoy's: a step of the wall clock meanwhile
	     * (NTP, an operator) does not lengthen or wrap it. */
	    .duration_ms = w->now - st->t0_ms,
	    .bytes_in = st->bytes_in,
	    .bytes_out = st->bytes_out,
	    .meter = st->meter,
	    .status = st->status,
	    .attempts = st->rs.tries,
	    .flags = ism_alog_flags(st->log_flags, st->flags, flags, sizeof(flags)),
	    .client = ism_stream_client(st),
	    .peer = st->sess->peer,
	    .client_port = st->xff_client[0] ? 0 : st->sess->peer_port,
	    .upstream = st->prev_ep != UINT32_MAX ? w->shm->pub->ep_keys[st->prev_ep] : NULL,
	    .cluster = cl != NULL && !cl->missing ? cl->name.p : NULL, /* Envoy's: one found */
	    .sni = st->sess->sni,
	    .details = code_details(st, transport[0] ? transport : NULL, details, sizeof(details)),
	    .termination = st->l4 ? st->denied : NULL,
	    .transport = transport[0] ? transport : NULL,
	    .conn_id = st->sess->conn_id,
	    .up_protocol = st->prev_ep == UINT32_MAX || st->l4 || cl == NULL ? NULL
			   : ism_h2up_wanted(st, cl)			     ? "HTTP/2"
									     : "HTTP/1.1",
	};
	/* Envoy's %GRPC_STATUS%: a gRPC request's only, any code */
	r.grpc_status =
	    w->alog.wants_grpc && st->grpc ? ism_logfilter_grpc_status(st, st->status, true) : -2;
	log_times(w, st, &r);
	log_hvals(w, st, w->alog.hv_mask, r.hv, hv, sizeof(hv));
	if (w->alog.wants_local && (pp = ism_sess_pp(st->sess)) != NULL &&
	    ism_addr_text(&pp->dst.sa, local, &local_port)) {
		r.local = local;
		r.local_port = local_port;
	}
	if (ism_logfilter_pass(w, st, &r))
		ism_alog_log(w, &r);
	ism_alog_req_free(st->log_req);
	st->log_req = NULL;
}

void ism_stream_count(struct ism_wctx *w, struct ism_stream *st)
{
	static const uint32_t bounds[ISM_LAT_BUCKETS] = ISM_LAT_BOUNDS_MS;
	const struct ism_cluster *cl = ism_stream_cluster(w, st);
	uint64_t ms = w->now - st->t0_ms;
	int b = 0;

	/* Counted once, as soon as the last of the response goes to the
	 * session: a client that has its answer sees it in the counters. */
	if (st->counted)
		return;
	st->counted = 1;

	while (b < ISM_LAT_BUCKETS - 1 && ms > bounds[b])
		b++;
	ism_wstat_add(&w->st->latency_bucket[b], 1);
	ism_wstat_add(&w->st->latency_sum_ms, ms);
	if (st->status < 100 || st->status >= 600)
		return;
	if (cl != NULL)
		atomic_fetch_add_explicit(&cl->dyn->responses[st->status / 100], 1,
					  memory_order_relaxed);
	if (st->lis_stats != NULL)
		atomic_fetch_add_explicit(&st->lis_stats->responses[st->status / 100], 1,
					  memory_order_relaxed);
	if (st->route_stats != NULL)
		atomic_fetch_add_explicit(&st->route_stats->responses[st->status / 100], 1,
					  memory_order_relaxed);
}

void ism_stream_log_resp(struct ism_wctx *w, struct ism_stream *st, const struct ism_http_header *h,
			 size_t n, bool upstream)
{
	const struct ism_table *t = w->table;
	struct ism_http_header own[4];
	size_t n_own = 0;
	char svc[21], status[21];

	/* Envoy's response header map holds the status as :status. */
	if (st->status >= 100 && st->status <= 999)
		own[n_own++] = (struct ism_http_header){":status", 7, status,
							ism_fmt_num(status, st->status, 10)};
	if (ism_stream_own_server(w, st))
		own[n_own++] = (struct ism_http_header){"server", 6, t->server.p, t->server.len};
	if (!ism_http_has_field(h, n, "date"))
		own[n_own++] =
		    (struct ism_http_header){"date", 4, ism_w_date(w), ISM_HTTP_DATE_LEN};
	if (upstream && t->debug_headers)
		own[n_own++] =
		    (struct ism_http_header){ISM_SVC_TIME_NAME, sizeof(ISM_SVC_TIME_NAME) - 1, svc,
					     ism_fmt_num(svc, ism_stream_service_ms(w, st), 10)};
	ism_alog_capture_fields(&w->alog, st->log_req, ISM_ALOG_F_RESP, h, n, own, n_own);
	ism_logfilter_capture_resp(w, st, false, h, n, own, n_own);
}

const char *ism_stream_local_details(int status, const char *why)
{
	static const struct {
		int status;
		const char *why, *details;
	} map[] = {
	    {408, ISM_WHY_HEAD_TIMEOUT, "request_header_timeout"},
	    {408, ISM_WHY_STREAM_IDLE, "stream_idle_timeout"},
	    {504, ISM_WHY_PER_TRY_TIMEOUT, "upstream_per_try_timeout"},
	    {413, ISM_WHY_BODY_TOO_LARGE, "request_payload_too_large"},
	    {507, ISM_WHY_RETRY_BUFFER, "request_payload_exceeded_retry_buffer_limit"},
	    {400, ISM_WHY_NO_HOST, "missing_host_header"},
	    /* Envoy's HTTP/1.1 codec's, for the requests the parser refuses;
	     * Envoy has no URI limit of its own, its request line counts
	     * toward its header limit: a 414 of maxUriBytes has that one's */
	    {400, ISM_WHY_BAD_REQUEST, "http1.codec_error"},
	    {414, ISM_WHY_URI_TOO_LONG, "http1.headers_too_large"},
	    {400, ISM_WHY_BAD_CHUNK, "http1.codec_error"},
	    {400, ISM_WHY_BAD_PATH, "path_normalization_failed"},
	    {404, ISM_WHY_ABSOLUTE_PATH, "absolute_path_rejected"},
	    {431, ISM_WHY_HEAD_TOO_BIG, "http1.headers_too_large"},
	    {431, ISM_WHY_TOO_MANY, "http1.too_many_headers"},
	    {501, ISM_WHY_TE, "http1.invalid_transfer_encoding"},
	    {505, ISM_WHY_VERSION, "http1.codec_error"},
	    /* Envoy's HTTP/2 codec's: a header list over its limits (size or
	     * count), a field nghttp2 refuses (it resets these two first) */
	    {431, ISM_WHY_H2_HEAD_TOO_BIG, "http2.too_many_headers"},
	    {400, ISM_WHY_H2_BAD_LENGTH, "http2.invalid.header.field"},
	    {400, ISM_WHY_H2_HOSTS, "http2.invalid.header.field"},
	    {400, ISM_WHY_BAD_HOST, "http2.invalid.header.field"},
	    {400, ISM_WHY_H2_CONNECT_END, "http2.violation.of.messaging.rule"},
	    {403, ISM_WHY_UPGRADE, "upgrade_failed"},
	    /* Envoy's router: an HTTP/2 upstream's REFUSED_STREAM (UR) */
	    {503, ISM_WHY_REFUSED,
	     "upstream_reset_before_response_started{remote_refused_stream_reset}"},
	};

	for (size_t i = 0; why != NULL && i < sizeof(map) / sizeof(map[0]); i++)
		if (status == map[i].status && strcmp(why, map[i].why) == 0)
			return map[i].details;
	return NULL;
}
