/* SPDX-License-Identifier: Apache-2.0 */
/* The access log's filter (worker/logfilter.h). The attributes' values are
 * Envoy's (its CEL attribute wrappers): what a request does not have is
 * absent, which makes the expression an error and the line unwritten, as in
 * Envoy; request.headers is the request's fields as the client sent them,
 * but for the forwarding fields the edge sets (X-Forwarded-Proto,
 * X-Forwarded-For, X-Request-Id: as the upstream gets them, as Envoy's
 * connection manager sets them before the filters run). Envoy's also has
 * the route's edits: a route that edits a field the filter reads differs. */
#include <openssl/ssl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/cel.h"
#include "conf/logattrs.h"
#include "lib/ascii.h"
#include "worker/accesslog.h"
#include "worker/hvalue.h"
#include "worker/logfilter.h"
#include "worker/policy.h"
#include "worker/router.h"
#include "worker/session.h"
#include "worker/sock.h"
#include "worker/stream.h"

/* Room for the values made for one evaluation (joined header fields, the
 * addresses, the TLS version); fields joined past it have memory of their
 * own (LF_HEAP of them), so that a client's long fields are whole. */
#define LF_SCRATCH 4096
#define LF_HEAP	   8

struct lf_ctx {
	struct ism_wctx *w;
	struct ism_stream *st;
	const struct ism_alog_rec *r;
	size_t used;
	char scratch[LF_SCRATCH];
	char *heap[LF_HEAP];
	uint32_t n_heap;
};

void ism_logfilter_capture_resp(struct ism_wctx *w, struct ism_stream *st, bool trailers,
				const struct ism_http_header *h, size_t n,
				const struct ism_http_header *own, size_t n_own)
{
	struct ism_buf *b = trailers ? &st->filter_trl : &st->filter_resp;

	if (!(trailers ? w->alog.filter_trailers : w->alog.filter_resp) || b->len > 0)
		return;
	if (ism_buf_put_pairs(b, own, n_own) < 0 || ism_buf_put_pairs(b, h, n) < 0)
		ism_buf_free(b);
}

void ism_logfilter_capture(struct ism_wctx *w, struct ism_stream *st,
			   const struct ism_http_req *req)
{
	if (w->alog.conf == NULL || !w->alog.conf->filter_headers || req == NULL)
		return;
	st->filter_hdrs.len = 0;
	/* The request's values whole (the record's are cut at 1 KiB), under
	 * the pseudo-headers' names, then its fields as the upstream gets
	 * them. */
	if (ism_buf_put_pair(&st->filter_hdrs, ":path", 5, req->target, req->target_len) < 0 ||
	    ism_buf_put_pair(&st->filter_hdrs, ":method", 7, req->method, req->method_len) < 0 ||
	    (req->host != NULL &&
	     ism_buf_put_pair(&st->filter_hdrs, ":authority", 10, req->host, req->host_len) < 0) ||
	    ism_router_edge_pairs(req, w->rs, &st->filter_hdrs) < 0)
		ism_buf_free(&st->filter_hdrs);
}

static bool str_val(const char *p, size_t len, struct ism_cel_val *out)
{
	if (p == NULL)
		return false;
	out->type = ISM_CEL_STRING;
	out->v.s.p = p;
	out->v.s.len = len;
	return true;
}

static bool int_val(int64_t i, struct ism_cel_val *out)
{
	out->type = ISM_CEL_INT;
	out->v.i = i;
	return true;
}

/* Room for n bytes of a value made now; NULL when the scratch is full. */
static char *lf_room(struct lf_ctx *c, size_t n)
{
	char *p;

	if (n > LF_SCRATCH - c->used)
		return NULL;
	p = c->scratch + c->used;
	c->used += n;
	return p;
}

static const char *pair_value(const struct ism_buf *b, const char *key, size_t len);

/* Field h of the captured request (enum ism_alog_hdr): whole when the
 * request's fields were kept for the filter (ism_logfilter_capture), else as
 * the record has it. */
static bool req_field(const struct lf_ctx *c, int h, struct ism_cel_val *out)
{
	static const struct {
		int h;
		const char *name;
	} whole[] = {{ISM_ALOG_H_PATH, ":path"},
		     {ISM_ALOG_H_METHOD, ":method"},
		     {ISM_ALOG_H_AUTHORITY, ":authority"},
		     {ISM_ALOG_H_REFERER, "referer"},
		     {ISM_ALOG_H_USER_AGENT, "user-agent"}};
	const struct ism_alog_req *q = c->r->req;

	if (q == NULL || q->http_minor < 0)
		return false;
	for (size_t i = 0; c->st->filter_hdrs.len > 0 && i < sizeof(whole) / sizeof(whole[0]); i++)
		if (whole[i].h == h) {
			const char *v =
			    pair_value(&c->st->filter_hdrs, whole[i].name, strlen(whole[i].name));

			return str_val(v, v != NULL ? strlen(v) : 0, out);
		}
	return str_val(q->val[h], q->val[h] ? q->len[h] : 0, out);
}

/* The path's part before '?' (url_path), or after it up to '#' (query). */
static bool path_part(const struct lf_ctx *c, bool query, struct ism_cel_val *out)
{
	const char *p, *q, *e;

	if (!req_field(c, ISM_ALOG_H_PATH, out))
		return false;
	p = out->v.s.p;
	e = p + out->v.s.len;
	q = memchr(p, '?', out->v.s.len);
	if (!query)
		return str_val(p, q != NULL ? (size_t)(q - p) : out->v.s.len, out);
	if (q == NULL)
		return str_val("", 0, out);
	e = memchr(q + 1, '#', (size_t)(e - q - 1)) ?: e;
	return str_val(q + 1, (size_t)(e - q - 1), out);
}

/* Operator kind's value as the access log shows it (worker/hvalue.h), in the
 * scratch: a string; port: an int. Empty: absent. */
static bool hval_attr(struct lf_ctx *c, uint8_t kind, bool port, struct ism_cel_val *out)
{
	char *p = c->scratch + c->used;
	size_t n = ism_hval_log(c->w, c->st, kind, p, LF_SCRATCH - c->used);
	int64_t v = 0;

	if (n == 0)
		return false;
	if (!port) {
		c->used += n;
		return str_val(p, n, out);
	}
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return false;
		v = v * 10 + (p[i] - '0');
	}
	return int_val(v, out);
}

/* The next value, from *off on, of a field of b (name NUL value NUL ...)
 * named key (any case); NULL past the last one. */
static const char *pair_next(const struct ism_buf *b, size_t *off, const char *key, size_t len)
{
	while (*off < b->len) {
		const char *name = b->p + *off, *value = name + strlen(name) + 1;

		*off = (size_t)(value - b->p) + strlen(value) + 1;
		if (strlen(name) == len && ism_eq_nocase(name, key, len))
			return value;
	}
	return NULL;
}

/* The values of the fields of b named key, joined with ",", as Envoy's
 * header maps give them; absent without. */
static bool pairs_joined(struct lf_ctx *c, const struct ism_buf *b, const char *key, size_t len,
			 struct ism_cel_val *out)
{
	size_t off = 0, n = 0, fields = 0, total = 0;
	const char *value, *first = NULL;
	char *p;

	while ((value = pair_next(b, &off, key, len)) != NULL) {
		first = first ? first : value;
		total += strlen(value) + 1;
		fields++;
	}
	if (fields <= 1) /* none, or one: its value as kept */
		return str_val(first, first != NULL ? total - 1 : 0, out);
	p = lf_room(c, total);
	if (p == NULL && c->n_heap < LF_HEAP && (p = malloc(total)) != NULL)
		c->heap[c->n_heap++] = p;
	if (p == NULL)
		return false;
	for (off = 0; (value = pair_next(b, &off, key, len)) != NULL;) {
		size_t vl = strlen(value);

		if (n > 0)
			p[n++] = ',';
		memcpy(p + n, value, vl);
		n += vl;
	}
	return str_val(p, n, out);
}

/* The first value of the field of b named key; NULL without one. */
static const char *pair_value(const struct ism_buf *b, const char *key, size_t len)
{
	size_t off = 0;

	return pair_next(b, &off, key, len);
}

int64_t ism_logfilter_grpc_status(const struct ism_stream *st, uint32_t status, bool user_defined)
{
	const char *v = pair_value(&st->filter_trl, "grpc-status", 11);
	int64_t code = 0;

	if (v == NULL)
		v = pair_value(&st->filter_resp, "grpc-status", 11);
	if (v == NULL)
		return status != 0 ? ism_http_to_grpc((int)status) : -2;
	for (size_t i = 0; v[i] != '\0' && code >= 0; i++)
		code =
		    v[i] >= '0' && v[i] <= '9' && code < INT32_MAX ? code * 10 + (v[i] - '0') : -1;
	return v[0] != '\0' && code >= 0 && (user_defined || code <= 16) ? code : -1;
}

/* response.grpc_status (ism_logfilter_grpc_status, known codes only). */
static bool grpc_status(struct lf_ctx *c, struct ism_cel_val *out)
{
	int64_t code = ism_logfilter_grpc_status(c->st, c->r->status, false);

	return code != -2 && int_val(code, out);
}

/* A field of a TLS connection's certificate (operator kind's value), as
 * Envoy's CEL gives it: absent on a plain connection; first: the first of a
 * comma-separated list (a SAN), absent when the certificate has none;
 * empty: "" when the certificate has none (a subject). */
static bool cert_attr(struct lf_ctx *c, uint8_t kind, bool first, bool empty,
		      struct ism_cel_val *out)
{
	const char *comma;

	if (!ism_sess_tls(c->st->sess))
		return false;
	if (!hval_attr(c, kind, false, out))
		return empty && str_val("", 0, out);
	if (first && (comma = memchr(out->v.s.p, ',', out->v.s.len)) != NULL)
		out->v.s.len = (size_t)(comma - out->v.s.p);
	return true;
}

/* What Envoy's CEL says of the upstream (upstream.*): absent until an
 * attempt was made. */
static bool upstream_attr(struct lf_ctx *c, uint16_t id, struct ism_cel_val *out)
{
	const struct ism_alog_rec *r = c->r;

	if (r->upstream == NULL)
		return false;
	switch ((enum ism_log_attr)id) {
	case ISM_LA_UP_ADDRESS:
		return hval_attr(c, ISM_HV_UPSTREAM_HOST, false, out);
	case ISM_LA_UP_PORT:
		return hval_attr(c, ISM_HV_UPSTREAM_PORT, true, out);
	case ISM_LA_UP_LOCAL_ADDRESS: {
		/* Kept when the exchange's response head came (ism_alog_use). */
		const size_t cap = INET6_ADDRSTRLEN + 8;
		char *p = r->req != NULL ? lf_room(c, cap) : NULL;
		size_t n = p != NULL
			       ? ism_alog_addr_port(p, cap, r->req->up_local, r->req->up_local_port)
			       : 0;

		return n > 0 && str_val(p, n, out);
	}
	case ISM_LA_UP_TRANSPORT_FAILURE:
		return str_val(r->transport ? r->transport : "",
			       r->transport ? strlen(r->transport) : 0, out);
	case ISM_LA_UP_ATTEMPTS:
		out->type = ISM_CEL_UINT;
		out->v.u = r->attempts;
		return true;
	default:
		return false;
	}
}

static bool request_attr(struct lf_ctx *c, uint16_t id, struct ism_cel_val *out)
{
	const struct ism_alog_req *q = c->r->req;

	switch ((enum ism_log_attr)id) {
	case ISM_LA_REQ_PATH:
		return req_field(c, ISM_ALOG_H_PATH, out);
	case ISM_LA_REQ_URL_PATH:
		return path_part(c, false, out);
	case ISM_LA_REQ_QUERY:
		return path_part(c, true, out);
	case ISM_LA_REQ_HOST:
		return req_field(c, ISM_ALOG_H_AUTHORITY, out);
	case ISM_LA_REQ_METHOD:
		return req_field(c, ISM_ALOG_H_METHOD, out);
	case ISM_LA_REQ_REFERER:
		return req_field(c, ISM_ALOG_H_REFERER, out);
	case ISM_LA_REQ_USERAGENT:
		return req_field(c, ISM_ALOG_H_USER_AGENT, out);
	case ISM_LA_REQ_ID:
		if (q != NULL && q->request_id[0] != '\0')
			return str_val(q->request_id, strlen(q->request_id), out);
		return req_field(c, ISM_ALOG_H_X_REQUEST_ID, out);
	case ISM_LA_REQ_SCHEME:
		if (q == NULL || q->http_minor < 0)
			return false;
		return ism_sess_tls(c->st->sess) ? str_val("https", 5, out)
						 : str_val("http", 4, out);
	case ISM_LA_REQ_PROTOCOL:
		if (q == NULL || q->http_minor < 0)
			return false;
		return str_val(ism_alog_protocol(q), strlen(ism_alog_protocol(q)), out);
	case ISM_LA_REQ_HEADERS:
		out->type = ISM_CEL_MAP;
		return q != NULL && q->http_minor >= 0;
	default:
		return false;
	}
}

static bool lf_attr(void *arg, uint16_t id, struct ism_cel_val *out)
{
	struct lf_ctx *c = arg;
	const struct ism_alog_rec *r = c->r;
	struct ism_sess *s = c->st->sess;

	switch ((enum ism_log_attr)id) {
	case ISM_LA_REQ_DURATION:
		out->type = ISM_CEL_DURATION;
		out->v.ns = (int64_t)r->duration_ms * 1000000;
		return true;
	case ISM_LA_REQ_SIZE:
		return int_val((int64_t)r->bytes_in, out);
	case ISM_LA_RESP_CODE:
		return r->status != 0 && int_val(r->status, out);
	case ISM_LA_RESP_CODE_DETAILS:
		return str_val(r->details, r->details ? strlen(r->details) : 0, out);
	case ISM_LA_RESP_SIZE:
		return int_val((int64_t)r->bytes_out, out);
	case ISM_LA_RESP_FLAGS:
		return int_val((int64_t)ism_alog_flag_bits(r->flags), out);
	case ISM_LA_RESP_HEADERS:
	case ISM_LA_RESP_TRAILERS:
		out->type = ISM_CEL_MAP;
		return true;
	case ISM_LA_RESP_GRPC_STATUS:
		return grpc_status(c, out);
	case ISM_LA_SRC_ADDRESS:
		return hval_attr(c, ISM_HV_CLIENT, false, out);
	case ISM_LA_SRC_PORT:
		return hval_attr(c, ISM_HV_CLIENT_PORT, true, out);
	case ISM_LA_DST_ADDRESS:
		return hval_attr(c, ISM_HV_LOCAL, false, out);
	case ISM_LA_DST_PORT:
		return hval_attr(c, ISM_HV_LOCAL_PORT, true, out);
	case ISM_LA_CONN_ID:
		out->type = ISM_CEL_UINT;
		out->v.u = r->conn_id;
		return true;
	case ISM_LA_CONN_MTLS:
		out->type = ISM_CEL_BOOL;
		out->v.b = ism_sess_tls(s) && SSL_get0_peer_certificate(s->s.x.ssl) != NULL;
		return true;
	case ISM_LA_CONN_SNI:
		return str_val(r->sni ? r->sni : "", r->sni ? strlen(r->sni) : 0, out);
	case ISM_LA_CONN_TLS_VERSION:
		return hval_attr(c, ISM_HV_TLS_VERSION, false, out);
	case ISM_LA_CONN_TERMINATION:
		return str_val(r->termination, r->termination ? strlen(r->termination) : 0, out);
	case ISM_LA_CONN_SUBJECT_LOCAL:
		return cert_attr(c, ISM_HV_LOCAL_SUBJECT, false, true, out);
	case ISM_LA_CONN_SUBJECT_PEER:
		return cert_attr(c, ISM_HV_PEER_SUBJECT, false, true, out);
	case ISM_LA_CONN_URI_SAN_LOCAL:
		return cert_attr(c, ISM_HV_LOCAL_URI_SAN, true, false, out);
	case ISM_LA_CONN_URI_SAN_PEER:
		return cert_attr(c, ISM_HV_PEER_URI_SAN, true, false, out);
	case ISM_LA_CONN_DNS_SAN_LOCAL:
		return cert_attr(c, ISM_HV_LOCAL_DNS_SAN, true, false, out);
	case ISM_LA_CONN_DNS_SAN_PEER:
		return cert_attr(c, ISM_HV_PEER_DNS_SAN, true, false, out);
	case ISM_LA_CONN_SHA256_PEER:
		return cert_attr(c, ISM_HV_PEER_FINGERPRINT, false, false, out);
	case ISM_LA_UP_ADDRESS:
	case ISM_LA_UP_PORT:
	case ISM_LA_UP_LOCAL_ADDRESS:
	case ISM_LA_UP_TRANSPORT_FAILURE:
	case ISM_LA_UP_ATTEMPTS:
		return upstream_attr(c, id, out);
	case ISM_LA_XDS_CLUSTER:
		return str_val(r->cluster, r->cluster ? strlen(r->cluster) : 0, out);
	case ISM_LA_XDS_ROUTE:
		return r->req != NULL && r->req->route[0] != '\0' &&
		       str_val(r->req->route, strlen(r->req->route), out);
	default:
		return request_attr(c, id, out);
	}
}

/* request.headers[key]: the pseudo-headers as Envoy's header map has them,
 * else the request's fields; response.headers[key], response.trailers[key]:
 * the response's. */
static bool lf_map_get(void *arg, uint16_t id, const char *key, size_t len, struct ism_cel_val *out)
{
	static const struct {
		const char *name;
		uint16_t attr;
	} pseudo[] = {{":path", ISM_LA_REQ_PATH},
		      {":authority", ISM_LA_REQ_HOST},
		      {":method", ISM_LA_REQ_METHOD},
		      {":scheme", ISM_LA_REQ_SCHEME}};
	struct lf_ctx *c = arg;

	switch ((enum ism_log_attr)id) {
	case ISM_LA_REQ_HEADERS:
		for (size_t i = 0;
		     len > 0 && key[0] == ':' && i < sizeof(pseudo) / sizeof(pseudo[0]); i++)
			if (strlen(pseudo[i].name) == len && memcmp(pseudo[i].name, key, len) == 0)
				return lf_attr(arg, pseudo[i].attr, out);
		return pairs_joined(c, &c->st->filter_hdrs, key, len, out);
	case ISM_LA_RESP_HEADERS:
		return pairs_joined(c, &c->st->filter_resp, key, len, out);
	case ISM_LA_RESP_TRAILERS:
		return pairs_joined(c, &c->st->filter_trl, key, len, out);
	default:
		return false;
	}
}

bool ism_logfilter_pass(struct ism_wctx *w, struct ism_stream *st, const struct ism_alog_rec *r)
{
	struct lf_ctx c = {.w = w, .st = st, .r = r};
	const struct ism_cel_env env = {.attr = lf_attr, .map_get = lf_map_get, .ctx = &c};
	bool pass;

	if (w->alog.conf == NULL || w->alog.conf->filter == NULL)
		return true;
	pass = ism_cel_filter(w->alog.conf->filter, &env);
	for (uint32_t i = 0; i < c.n_heap; i++)
		free(c.heap[i]);
	return pass;
}
