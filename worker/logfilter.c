/* SPDX-License-Identifier: Apache-2.0 */
/* The access log's filter (worker/logfilter.h). The attributes' values are
 * Envoy's (its CEL attribute wrappers): what a request does not have is
 * absent, which makes the expression an error and the line unwritten, as in
 * Envoy; request.headers is the request's fields as the client sent them
 * (Envoy's, after the route's edits: a route that edits a field the filter
 * reads differs). */
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>

#include "conf/cel.h"
#include "conf/logattrs.h"
#include "lib/addr.h"
#include "lib/ascii.h"
#include "worker/accesslog.h"
#include "worker/logfilter.h"
#include "worker/session.h"
#include "worker/sock.h"
#include "worker/stream.h"
#include "worker/tls.h"

/* Room for the values made for one evaluation (joined header fields, the
 * addresses, the TLS version): a value that does not fit is absent. */
#define LF_SCRATCH 4096

struct lf_ctx {
	struct ism_wctx *w;
	struct ism_stream *st;
	const struct ism_alog_rec *r;
	size_t used;
	char scratch[LF_SCRATCH];
};

void ism_logfilter_capture(struct ism_wctx *w, struct ism_stream *st,
			   const struct ism_http_req *req)
{
	if (w->alog.conf == NULL || w->alog.conf->filter == NULL || req == NULL)
		return;
	st->filter_hdrs.len = 0;
	if (ism_buf_put_pairs(&st->filter_hdrs, req->headers, req->n_headers) < 0)
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

/* Field h of the captured request (enum ism_alog_hdr). */
static bool req_field(const struct lf_ctx *c, int h, struct ism_cel_val *out)
{
	const struct ism_alog_req *q = c->r->req;

	if (q == NULL || q->http_minor < 0)
		return false;
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

/* An address as Envoy's asString writes it: ip:port, [ip6]:port. */
static bool addr_val(struct lf_ctx *c, const char *ip, uint16_t port, struct ism_cel_val *out)
{
	char *p = lf_room(c, INET6_ADDRSTRLEN + 8);
	int n;

	if (p == NULL || ip == NULL || ip[0] == '\0')
		return false;
	n = snprintf(p, INET6_ADDRSTRLEN + 8, strchr(ip, ':') ? "[%s]:%u" : "%s:%u", ip, port);
	return n > 0 && str_val(p, (size_t)n, out);
}

/* The endpoint of the last attempt, from its key "<service>|ip:port". */
static bool upstream_val(const struct lf_ctx *c, bool port, struct ism_cel_val *out)
{
	const char *key = c->r->upstream, *bar, *colon;

	if (key == NULL)
		return false;
	bar = strrchr(key, '|');
	key = bar != NULL ? bar + 1 : key;
	colon = strrchr(key, ':');
	if (colon == NULL)
		return false;
	if (port) {
		int64_t n = 0;

		for (const char *d = colon + 1; *d >= '0' && *d <= '9' && n < 65536; d++)
			n = n * 10 + (*d - '0');
		return int_val(n, out);
	}
	return str_val(key, strlen(key), out);
}

/* The address the client reached (a PROXY header's destination where the
 * listener takes one), as %DOWNSTREAM_LOCAL_ADDRESS% has it; or its port. */
static bool local_val(struct lf_ctx *c, bool port, struct ism_cel_val *out)
{
	const struct ism_sess_pp *pp = ism_sess_pp(c->st->sess);
	char ip[INET6_ADDRSTRLEN];
	uint16_t n;

	if (pp == NULL || !ism_addr_text(&pp->dst.sa, ip, &n))
		return false;
	return port ? int_val(n, out) : addr_val(c, ip, n, out);
}

static bool tls_val(struct lf_ctx *c, struct ism_cel_val *out)
{
	struct ism_sess *s = c->st->sess;
	const char *v;
	char *p;

	if (!ism_sess_tls(s) || (v = SSL_get_version(s->s.x.ssl)) == NULL ||
	    (p = lf_room(c, strlen(v))) == NULL)
		return false;
	memcpy(p, v, strlen(v));
	return str_val(p, strlen(v), out);
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
		return q->http2		    ? str_val("HTTP/2", 6, out)
		       : q->http_minor == 0 ? str_val("HTTP/1.0", 8, out)
					    : str_val("HTTP/1.1", 8, out);
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
	case ISM_LA_SRC_ADDRESS:
		return addr_val(c, r->client, r->client_port, out);
	case ISM_LA_SRC_PORT:
		return int_val(r->client_port, out);
	case ISM_LA_DST_ADDRESS:
	case ISM_LA_DST_PORT:
		return local_val(c, id == ISM_LA_DST_PORT, out);
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
		return tls_val(c, out);
	case ISM_LA_UP_ADDRESS:
		return upstream_val(c, false, out);
	case ISM_LA_UP_PORT:
		return upstream_val(c, true, out);
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
 * else every field of that name (any case), joined with ",". */
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
	const struct ism_buf *b = &c->st->filter_hdrs;
	size_t off = 0, n = 0;
	char *p = NULL;

	if (id != ISM_LA_REQ_HEADERS)
		return false;
	for (size_t i = 0; len > 0 && key[0] == ':' && i < sizeof(pseudo) / sizeof(pseudo[0]); i++)
		if (strlen(pseudo[i].name) == len && memcmp(pseudo[i].name, key, len) == 0)
			return lf_attr(arg, pseudo[i].attr, out);
	while (off < b->len) {
		const char *name = b->p + off, *value = name + strlen(name) + 1;
		size_t vl = strlen(value);

		off = (size_t)(value - b->p) + vl + 1;
		if (strlen(name) != len || !ism_eq_nocase(name, key, len))
			continue;
		if (p == NULL)
			p = c->scratch + c->used;
		if ((n > 0 && lf_room(c, 1) == NULL) || lf_room(c, vl) == NULL)
			return false;
		if (n > 0)
			p[n++] = ',';
		memcpy(p + n, value, vl);
		n += vl;
	}
	return p != NULL && str_val(p, n, out);
}

bool ism_logfilter_pass(struct ism_wctx *w, struct ism_stream *st, const struct ism_alog_rec *r)
{
	struct lf_ctx c = {.w = w, .st = st, .r = r};
	const struct ism_cel_env env = {.attr = lf_attr, .map_get = lf_map_get, .ctx = &c};

	if (w->alog.conf == NULL || w->alog.conf->filter == NULL)
		return true;
	return ism_cel_filter(w->alog.conf->filter, &env);
}
