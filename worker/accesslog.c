/* SPDX-License-Identifier: Apache-2.0 */
#include "worker/accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "conf/cel.h"
#include "conf/hfmt.h"
#include "conf/logattrs.h"
#include "lib/grpc.h"
#include "lib/addr.h"
#include "lib/json.h"
#include "lib/log.h"
#include "worker/ring.h"

_Static_assert(ISM_HV_KINDS <= 64, "ism_alog.hv_mask has a bit per kind");

/* A value's room: a captured header, plus what X-Forwarded-For appends. */
#define VALUE_ROOM (ISM_ALOG_VALUE + 64u)

/* ---------- rendering ---------- */

/* The fields of the JSON line, in order: one operator each, rendered by the
 * same value() as a text template's. */
#define OP(f)                                                                                      \
	{                                                                                          \
		.field = ISM_ALOG_F_##f, .hdr = ISM_ALOG_H_NONE, .alt = ISM_ALOG_H_NONE            \
	}
#define METER_OP(m)                                                                                \
	{                                                                                          \
		.field = ISM_ALOG_F_METER, .hdr = ISM_M_##m, .alt = ISM_ALOG_H_NONE                \
	}
#define REQ_OP(h)                                                                                  \
	{                                                                                          \
		.field = ISM_ALOG_F_REQ, .hdr = ISM_ALOG_H_##h, .alt = ISM_ALOG_H_NONE             \
	}
static const struct ism_alog_op json_ops[] = {
    OP(START_TIME),
    OP(CLIENT_IP),
    REQ_OP(METHOD),
    REQ_OP(AUTHORITY),
    REQ_OP(PATH),
    OP(PROTOCOL),
    OP(ROUTE_NAME),
    OP(RESPONSE_CODE),
    METER_OP(DOWN_WIRE_IN),
    METER_OP(DOWN_WIRE_OUT),
    OP(DURATION),
    OP(UPSTREAM_ENDPOINT),
    OP(UPSTREAM_CLUSTER),
    OP(ATTEMPTS),
    OP(RESPONSE_FLAGS),
    REQ_OP(X_REQUEST_ID),
    REQ_OP(USER_AGENT),
    REQ_OP(X_FORWARDED_FOR),
    OP(SNI),
};
static const char *const json_keys[] = {
    "time",	   "client",	 "method",	     "authority", "path",
    "protocol",	   "route",	 "status",	     "bytes_in",  "bytes_out",
    "duration_ms", "upstream",	 "upstream_cluster", "attempts",  "flags",
    "request_id",  "user_agent", "x_forwarded_for",  "sni",
};
_Static_assert(sizeof(json_ops) / sizeof(json_ops[0]) == sizeof(json_keys) / sizeof(json_keys[0]),
	       "one key per JSON field");
#undef OP
#undef METER_OP
#undef REQ_OP

/* An output buffer; what does not fit in cap is dropped (the line is cut). */
struct out {
	char *p;
	size_t cap;
	size_t len;
};

static void put(struct out *o, const char *s, size_t n)
{
	if (n > o->cap - o->len)
		n = o->cap - o->len;
	memcpy(o->p + o->len, s, n);
	o->len += n;
}

/* Copies len bytes of s (NULL: absent) into v; returns the length copied. */
static size_t copy(char *v, size_t cap, const char *s, size_t len)
{
	if (s == NULL)
		return 0;
	if (len >= cap)
		len = cap - 1;
	memcpy(v, s, len);
	v[len] = '\0';
	return len;
}

static size_t copy_str(char *v, size_t cap, const char *s)
{
	return copy(v, cap, s, s ? strlen(s) : 0);
}

static size_t printed(int n, size_t cap)
{
	return n < 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

/* Header h of the request, as the upstream got it (Envoy logs it so): the
 * X-Request-Id the proxy made (in place of the client's, unless
 * preserveExternalRequestId keeps it), and X-Forwarded-For with the peer's
 * address appended. 0 when absent. */
static size_t header(const struct ism_alog_rec *r, uint8_t h, char *v, size_t cap)
{
	const struct ism_alog_req *q = r->req;
	const char *peer = r->peer ? r->peer : r->client;

	if (h >= ISM_ALOG_H_ALL)
		return 0;
	if (h == ISM_ALOG_H_X_REQUEST_ID && (q->val[h] == NULL || q->request_id[0] != '\0'))
		return copy_str(v, cap, q->request_id);
	if (h == ISM_ALOG_H_X_FORWARDED_FOR && q->http_minor >= 0 && peer && peer[0]) {
		if (q->val[h] == NULL)
			return copy_str(v, cap, peer);
		return printed(snprintf(v, cap, "%.*s,%s", (int)q->len[h], q->val[h], peer), cap);
	}
	return copy(v, cap, q->val[h], q->len[h]);
}

/* ip and port as Envoy shows an address ("[v6]:port", "v4:port"); 0 when ip
 * is unknown. */
size_t ism_alog_addr_port(char *v, size_t cap, const char *ip, uint16_t port)
{
	if (ip == NULL || ip[0] == '\0')
		return 0;
	return printed(ism_addr_port_text(v, cap, ip, port), cap);
}

/* A duration in ms; 0 (absent) when negative. */
static size_t ms(char *v, size_t cap, int64_t d)
{
	return d >= 0 ? printed(snprintf(v, cap, "%lld", (long long)d), cap) : 0;
}

/* Whether a header values' operator gives a port (a number in JSON). */
static bool hval_port(uint8_t kind)
{
	return kind == ISM_HV_CLIENT_PORT || kind == ISM_HV_PEER_PORT ||
	       kind == ISM_HV_UPSTREAM_PORT;
}

/* A request header operator's value: its header, else its alternative,
 * cut to the operator's length. */
static size_t req_header(const struct ism_alog_op *op, const struct ism_alog_rec *r, char *v,
			 size_t cap)
{
	size_t n = header(r, op->hdr, v, cap);

	if (n == 0)
		n = header(r, op->alt, v, cap);
	if (op->max_len && n > op->max_len)
		n = op->max_len;
	return n;
}

/* A response header or trailer operator's value, cut to the operator's
 * length. */
static size_t resp_header(const struct ism_alog_op *op, const struct ism_alog_req *q, char *v,
			  size_t cap)
{
	size_t n = op->hdr < ISM_ALOG_RESP_MAX
		       ? copy(v, cap, q->resp_val[op->hdr], q->resp_len[op->hdr])
		       : 0;

	return op->max_len && n > op->max_len ? op->max_len : n;
}

const char *ism_alog_protocol(const struct ism_alog_req *q)
{
	if (q->http_minor < 0)
		return NULL;
	return q->http2 ? "HTTP/2" : q->http_minor == 0 ? "HTTP/1.0" : "HTTP/1.1";
}

/* Reason s (NULL: absent) as Envoy shows response code details and transport
 * failures: spaces made underscores. */
static size_t underscored(char *v, size_t cap, const char *s)
{
	size_t n = copy_str(v, cap, s);

	for (size_t i = 0; i < n; i++)
		v[i] = v[i] == ' ' ? '_' : v[i];
	return n;
}

/* The value of an operator that gives a number, as value() does. */
static size_t number(const struct ism_alog_op *op, const struct ism_alog_rec *r, char *v,
		     size_t cap)
{
	const struct ism_alog_req *q = r->req;

	switch (op->field) {
	case ISM_ALOG_F_RESPONSE_CODE:
		return printed(snprintf(v, cap, "%u", r->status), cap);
	case ISM_ALOG_F_BYTES_RECEIVED:
		return printed(snprintf(v, cap, "%llu", (unsigned long long)r->bytes_in), cap);
	case ISM_ALOG_F_BYTES_SENT:
		return printed(snprintf(v, cap, "%llu", (unsigned long long)r->bytes_out), cap);
	case ISM_ALOG_F_METER:
		return printed(snprintf(v, cap, "%llu", (unsigned long long)r->meter[op->hdr]),
			       cap);
	case ISM_ALOG_F_DURATION:
		return printed(snprintf(v, cap, "%llu", (unsigned long long)r->duration_ms), cap);
	case ISM_ALOG_F_ATTEMPTS:
		return printed(snprintf(v, cap, "%u", r->attempts), cap);
	case ISM_ALOG_F_LOCAL_PORT:
		return r->local != NULL ? printed(snprintf(v, cap, "%u", r->local_port), cap) : 0;
	case ISM_ALOG_F_UP_LOCAL_PORT:
		return q->up_local[0] ? printed(snprintf(v, cap, "%u", q->up_local_port), cap) : 0;
	case ISM_ALOG_F_CONNECTION_ID:
		return printed(snprintf(v, cap, "%llu", (unsigned long long)r->conn_id), cap);
	case ISM_ALOG_F_UP_CONNECTION_ID:
		return q->up_conn_id
			   ? printed(snprintf(v, cap, "%llu", (unsigned long long)q->up_conn_id),
				     cap)
			   : 0;
	case ISM_ALOG_F_REQ_DURATION:
		return ms(v, cap, r->req_ms);
	case ISM_ALOG_F_REQ_TX_DURATION:
		return ms(v, cap, r->req_tx_ms);
	case ISM_ALOG_F_RESP_DURATION:
		return ms(v, cap, r->resp_ms);
	case ISM_ALOG_F_RESP_TX_DURATION:
		return ms(v, cap, r->resp_tx_ms);
	case ISM_ALOG_F_HANDSHAKE:
		return ms(v, cap, r->handshake_ms);
	case ISM_ALOG_F_GRPC_STATUS: /* a code without a name, or NUMBER */
		return r->grpc_status != -2
			   ? printed(snprintf(v, cap, "%lld", (long long)r->grpc_status), cap)
			   : 0;
	case ISM_ALOG_F_HVAL: /* a port */
		return copy_str(v, cap, r->hv[op->hdr]);
	default:
		ISM_BUG_ON(1); /* an operator the parser does not make */
		return 0;
	}
}

/* The value of op for r, written into v (VALUE_ROOM bytes): its length, 0 when
 * absent (shown as "-"). *num: a number, which JSON writes bare. */
static size_t value(const struct ism_alog_op *op, const struct ism_alog_rec *r, char *v, size_t cap,
		    bool *num)
{
	const struct ism_alog_req *q = r->req;
	const char *bar;

	*num = false;
	switch (op->field) {
	case ISM_ALOG_F_START_TIME:
		return op->lit.len > 0
			   ? ism_time_format(op->lit.p, op->lit.len, q->start_ms, v, cap)
			   : ism_time_iso(q->start_ms, v, cap);
	case ISM_ALOG_F_REQ:
		return req_header(op, r, v, cap);
	case ISM_ALOG_F_PROTOCOL:
		return copy_str(v, cap, ism_alog_protocol(q));
	case ISM_ALOG_F_RESPONSE_FLAGS:
		return copy_str(v, cap, r->flags);
	case ISM_ALOG_F_UPSTREAM_HOST:
		bar = r->upstream ? strchr(r->upstream, '|') : NULL;
		return copy_str(v, cap, bar ? bar + 1 : r->upstream);
	case ISM_ALOG_F_UPSTREAM_ENDPOINT:
		return copy_str(v, cap, r->upstream);
	case ISM_ALOG_F_UPSTREAM_CLUSTER:
		return copy_str(v, cap, r->cluster);
	case ISM_ALOG_F_CLIENT:
		return ism_alog_addr_port(v, cap, r->client, r->client_port);
	case ISM_ALOG_F_CLIENT_IP:
		return copy_str(v, cap, r->client);
	case ISM_ALOG_F_LOCAL:
		return ism_alog_addr_port(v, cap, r->local, r->local_port);
	case ISM_ALOG_F_LOCAL_IP:
		return copy_str(v, cap, r->local);
	case ISM_ALOG_F_CODE_DETAILS:
		return underscored(v, cap, r->details);
	case ISM_ALOG_F_TRANSPORT_FAILURE:
		return underscored(v, cap, r->transport);
	case ISM_ALOG_F_ENV:
		return copy(v, cap, op->lit.p, op->lit.len);
	case ISM_ALOG_F_TERMINATION:
		/* Set by Envoy's network filters that end a connection: an
		 * AuthorizationPolicy's TCP filter. */
		return r->termination != NULL ? copy(v, cap, r->termination, strlen(r->termination))
					      : 0;
	case ISM_ALOG_F_RESP:
	case ISM_ALOG_F_TRAILER:
		return resp_header(op, q, v, cap);
	case ISM_ALOG_F_UP_LOCAL:
		return ism_alog_addr_port(v, cap, q->up_local, q->up_local_port);
	case ISM_ALOG_F_UP_LOCAL_IP:
		return copy_str(v, cap, q->up_local[0] ? q->up_local : NULL);
	case ISM_ALOG_F_ROUTE_NAME:
		return copy_str(v, cap, q->route[0] ? q->route : NULL);
	case ISM_ALOG_F_SNI:
		return copy_str(v, cap, r->sni);
	case ISM_ALOG_F_LITERAL:
		return copy(v, cap, op->lit.p, op->lit.len);
	case ISM_ALOG_F_HOSTNAME:
		return copy_str(v, cap, ism_hostname());
	case ISM_ALOG_F_STREAM_ID:
		/* Envoy's stream id is the request's X-Request-Id. */
		return header(r, ISM_ALOG_H_X_REQUEST_ID, v, cap);
	case ISM_ALOG_F_UP_PROTOCOL:
		return copy_str(v, cap, r->up_protocol);
	case ISM_ALOG_F_GRPC_STATUS:
		/* Envoy's names: grpcStatusToString's (CAMEL_STRING), absl's
		 * (SNAKE_STRING); a code without one is its number, as NUMBER */
		if (op->hdr != ISM_ALOG_GRPC_NUMBER && r->grpc_status >= 0 && r->grpc_status <= 16)
			return copy_str(v, cap,
					(op->hdr == ISM_ALOG_GRPC_SNAKE
					     ? ism_grpc_names
					     : ism_grpc_camel_names)[r->grpc_status]);
		break;
	case ISM_ALOG_F_HVAL:
		if (!hval_port(op->hdr))
			return copy_str(v, cap, op->hdr < ISM_HV_KINDS ? r->hv[op->hdr] : NULL);
		break;
	default:
		break;
	}
	*num = true;
	return number(op, r, v, cap);
}

static size_t render_json(const struct ism_alog_conf *conf, const struct ism_alog_rec *r,
			  char *line, size_t cap)
{
	struct out o = {.p = line, .cap = cap};
	char v[VALUE_ROOM], esc[ISM_ALOG_VALUE + 1];

	(void)conf;
	for (size_t i = 0; i < sizeof(json_ops) / sizeof(json_ops[0]); i++) {
		bool num;
		size_t n = value(&json_ops[i], r, v, sizeof(v), &num);

		put(&o, i ? ",\"" : "{\"", 2);
		put(&o, json_keys[i], strlen(json_keys[i]));
		put(&o, "\":", 2);
		if (num) {
			put(&o, v, n);
			continue;
		}
		n = n ? ism_json_escape(esc, sizeof(esc), v, n) : copy_str(esc, sizeof(esc), "-");
		put(&o, "\"", 1);
		put(&o, esc, n);
		put(&o, "\"", 1);
	}
	put(&o, "}", 1);
	return o.len;
}

/* s as a JSON string, quotes included (escaped into esc, cut at its room). */
static void put_json_str(struct out *o, char *esc, size_t room, const char *s, size_t n)
{
	put(o, "\"", 1);
	put(o, esc, ism_json_escape(esc, room, s, n));
	put(o, "\"", 1);
}

/* Whether op is a dictionary's structure rather than a value's part. */
static bool dict_structure(uint8_t field)
{
	return field == ISM_ALOG_F_KEY || field == ISM_ALOG_F_ITEM || field == ISM_ALOG_F_OPEN ||
	       field == ISM_ALOG_F_CLOSE || field == ISM_ALOG_F_JSON;
}

/* The value of ops[0, n) (a template's, n > 0), typed as Envoy's json_format:
 * one operator alone is a number for the counts, codes and ports, a string
 * otherwise, null when absent (the response flags and the protocol: "-", as
 * Envoy gives them); several parts are their string, "-" for an absent
 * part. v and esc: the caller's room (VALUE_ROOM, 2 * VALUE_ROOM bytes). */
static void put_dict_value(struct out *o, const struct ism_alog_op *ops, uint32_t n,
			   const struct ism_alog_rec *r, char *v, char *esc)
{
	bool num;
	size_t len;

	if (n == 1 && ops[0].field != ISM_ALOG_F_LITERAL) {
		len = value(&ops[0], r, v, VALUE_ROOM, &num);
		if (len == 0 && (ops[0].field == ISM_ALOG_F_RESPONSE_FLAGS ||
				 ops[0].field == ISM_ALOG_F_PROTOCOL))
			put(o, "\"-\"", 3);
		else if (len == 0)
			put(o, "null", 4);
		else if (num)
			put(o, v, len);
		else
			put_json_str(o, esc, 2 * VALUE_ROOM, v, len);
		return;
	}
	put(o, "\"", 1);
	for (uint32_t i = 0; i < n; i++) {
		len = value(&ops[i], r, v, VALUE_ROOM, &num);
		put(o, esc, len ? ism_json_escape(esc, 2 * VALUE_ROOM, v, len) : 0);
		if (len == 0 && ops[i].field != ISM_ALOG_F_LITERAL)
			put(o, "-", 1);
	}
	put(o, "\"", 1);
}

/* Istio's JSON encoding: the dictionary's members (keys escaped as JSON
 * strings), nested objects and lists, values written as they are (numbers,
 * true, false, null) or typed from their template (put_dict_value); an empty
 * template is "". */
static size_t render_dict(const struct ism_alog_conf *conf, const struct ism_alog_rec *r,
			  char *line, size_t cap)
{
	struct out o = {.p = line, .cap = cap};
	char v[VALUE_ROOM], esc[2 * VALUE_ROOM];
	const struct ism_alog_op *ops = conf->ops;
	uint32_t i = 0, n = conf->n_ops;

	put(&o, "{", 1);
	while (i < n) {
		const struct ism_alog_op *op = &ops[i];
		uint32_t end = i + 1;

		switch (op->field) {
		case ISM_ALOG_F_KEY:
		case ISM_ALOG_F_ITEM:
			if (i > 0 && ops[i - 1].field != ISM_ALOG_F_OPEN)
				put(&o, ",", 1);
			if (op->field == ISM_ALOG_F_KEY) {
				put_json_str(&o, esc, sizeof(esc), op->lit.p, op->lit.len);
				put(&o, ":", 1);
			}
			/* a value without parts: an empty template */
			if (end == n || ops[end].field == ISM_ALOG_F_KEY ||
			    ops[end].field == ISM_ALOG_F_ITEM || ops[end].field == ISM_ALOG_F_CLOSE)
				put(&o, "\"\"", 2);
			break;
		case ISM_ALOG_F_OPEN:
		case ISM_ALOG_F_CLOSE:
		case ISM_ALOG_F_JSON:
			put(&o, op->lit.p, op->lit.len);
			break;
		default:
			while (end < n && !dict_structure(ops[end].field))
				end++;
			put_dict_value(&o, op, end - i, r, v, esc);
			break;
		}
		i = end;
	}
	put(&o, "}", 1);
	return o.len;
}

static size_t render_text(const struct ism_alog_conf *conf, const struct ism_alog_rec *r,
			  char *line, size_t cap)
{
	struct out o = {.p = line, .cap = cap};
	char v[VALUE_ROOM];

	for (uint32_t i = 0; i < conf->n_ops; i++) {
		const struct ism_alog_op *op = &conf->ops[i];
		bool num;
		size_t n;

		if (op->field == ISM_ALOG_F_LITERAL) {
			put(&o, op->lit.p, op->lit.len);
			continue;
		}
		n = value(op, r, v, sizeof(v), &num);
		put(&o, n ? v : "-", n ? n : 1);
	}
	return o.len;
}

ism_alog_render_cb ism_alog_renderer(const struct ism_alog_conf *conf)
{
	switch ((enum ism_alog_format)conf->format) {
	case ISM_ALOG_TEXT:
		return render_text;
	case ISM_ALOG_DICT:
		return render_dict;
	case ISM_ALOG_JSON:
		break;
	}
	return render_json;
}

uint32_t ism_alog_headers(const struct ism_alog_conf *conf)
{
	const struct ism_alog_op *ops = json_ops;
	size_t n = sizeof(json_ops) / sizeof(json_ops[0]);
	uint32_t mask = 0;

	if (conf->format != ISM_ALOG_JSON) {
		ops = conf->ops;
		n = conf->n_ops;
	}
	for (size_t i = 0; i < n; i++) {
		if (ops[i].field == ISM_ALOG_F_STREAM_ID)
			mask |= 1u << ISM_ALOG_H_X_REQUEST_ID;
		if (ops[i].field != ISM_ALOG_F_REQ)
			continue;
		if (ops[i].hdr < ISM_ALOG_H_ALL)
			mask |= 1u << ops[i].hdr;
		if (ops[i].alt < ISM_ALOG_H_ALL)
			mask |= 1u << ops[i].alt;
	}
	return mask;
}

/* ---------- capture ---------- */

#define HDR_NAME(id, name) {name, sizeof(name) - 1},
static const struct ism_str hdr_names[ISM_ALOG_H_COUNT] = {ISM_ALOG_HEADERS(HDR_NAME)};
#undef HDR_NAME

/* The name of field slot k of a capture (NULL: a pseudo-header, or a named
 * slot without a name). */
static const struct ism_str *slot_name(int k, const struct ism_str *named)
{
	if (k >= ISM_ALOG_H_COUNT)
		return named != NULL ? &named[k - ISM_ALOG_H_COUNT] : NULL;
	return hdr_names[k].p[0] == ':' ? NULL : &hdr_names[k];
}

/* As ism_alog_capture; orig (NULL: none): the path before a rewrite, which
 * x-envoy-original-path shows whatever the client sent; hdrs (NULL: none):
 * the route's header edits, which %REQ()% shows as Envoy's does (the route
 * changes the request's own fields): a field an edit sets or removes has the
 * edit's first value or none, one it adds to keeps the client's first. */
static struct ism_alog_req *capture(uint32_t mask, const struct ism_str *named,
				    const struct ism_http_req *req,
				    const struct ism_hdr_edits *hdrs, const char *orig,
				    size_t orig_len, uint64_t start_ms)
{
	const char *src[ISM_ALOG_H_ALL] = {0};
	size_t len[ISM_ALOG_H_ALL] = {0}, total = 0;
	struct ism_alog_req *q;
	char *d;

	if (req != NULL) {
		src[ISM_ALOG_H_METHOD] = req->method;
		len[ISM_ALOG_H_METHOD] = req->method_len;
		src[ISM_ALOG_H_PATH] = req->target;
		len[ISM_ALOG_H_PATH] = req->target_len;
		src[ISM_ALOG_H_AUTHORITY] = req->host;
		len[ISM_ALOG_H_AUTHORITY] = req->host_len;
		src[ISM_ALOG_H_X_ENVOY_ORIGINAL_PATH] = orig;
		len[ISM_ALOG_H_X_ENVOY_ORIGINAL_PATH] = orig_len;
	}
	for (size_t i = 0; req != NULL && i < req->n_headers; i++) {
		const struct ism_http_header *h = &req->headers[i];

		for (int k = 0; k < ISM_ALOG_H_ALL; k++) {
			const struct ism_str *name = slot_name(k, named);

			if (src[k] != NULL || !(mask >> k & 1) || name == NULL)
				continue;
			if (name->len == h->name_len &&
			    strncasecmp(name->p, h->name, h->name_len) == 0) {
				src[k] = h->value;
				len[k] = h->value_len;
			}
		}
	}
	for (uint32_t i = 0; hdrs != NULL && i < hdrs->n; i++) {
		const struct ism_hdr_edit *x = &hdrs->e[i];

		for (int k = 0; k < ISM_ALOG_H_ALL; k++) {
			const struct ism_str *name = slot_name(k, named);

			/* a rewrite's x-envoy-original-path is set after the
			 * edits, as Envoy's router sets it */
			if (!(mask >> k & 1) || name == NULL || name->len != x->name.len ||
			    strncasecmp(name->p, x->name.p, name->len) != 0 ||
			    (k == ISM_ALOG_H_X_ENVOY_ORIGINAL_PATH && orig != NULL))
				continue;
			if (x->drop)
				src[k] = NULL;
			if (src[k] == NULL && x->n_values > 0) {
				src[k] = x->values[0].p;
				len[k] = x->values[0].len;
			}
		}
	}
	for (int k = 0; k < ISM_ALOG_H_ALL; k++) {
		if (!(mask >> k & 1))
			src[k] = NULL;
		if (len[k] > ISM_ALOG_VALUE)
			len[k] = ISM_ALOG_VALUE;
		total += src[k] ? len[k] : 0;
	}
	q = malloc(sizeof(*q) + total);
	if (q == NULL)
		return NULL;
	memset(q, 0, sizeof(*q));
	q->start_ms = start_ms;
	q->http_minor = (int16_t)(req ? req->minor_version : -1);
	q->http2 = req ? req->h2 : 0;
	d = q->data;
	for (int k = 0; k < ISM_ALOG_H_ALL; k++) {
		if (src[k] == NULL)
			continue;
		memcpy(d, src[k], len[k]);
		q->val[k] = d;
		q->len[k] = (uint16_t)len[k];
		d += len[k];
	}
	return q;
}

struct ism_alog_req *ism_alog_capture(uint32_t mask, const struct ism_str *named,
				      const struct ism_http_req *req, uint64_t start_ms)
{
	return capture(mask, named, req, NULL, NULL, 0, start_ms);
}

int ism_alog_rewritten(struct ism_alog_req **q, uint32_t mask, const struct ism_str *named,
		       const struct ism_http_req *req, const struct ism_hdr_edits *hdrs,
		       const char *orig, size_t orig_len)
{
	struct ism_alog_req *n = capture(mask, named, req, hdrs, orig, orig_len, (*q)->start_ms);

	if (n == NULL)
		return -ENOMEM;
	memcpy(n->request_id, (*q)->request_id, sizeof(n->request_id));
	memcpy(n->route, (*q)->route, sizeof(n->route));
	ism_alog_req_free(*q);
	*q = n;
	return 0;
}

void ism_alog_req_free(struct ism_alog_req *q)
{
	if (q != NULL) {
		free(q->resp_data);
		free(q->trl_data);
	}
	free(q);
}

void ism_alog_capture_fields(const struct ism_alog *l, struct ism_alog_req *q, uint8_t field,
			     const struct ism_http_header *h, size_t n,
			     const struct ism_http_header *own, size_t n_own)
{
	const struct ism_http_header *found[ISM_ALOG_RESP_MAX] = {0};
	char **data = field == ISM_ALOG_F_RESP ? &q->resp_data : &q->trl_data;
	size_t total = 0;
	char *d;

	if (!(field == ISM_ALOG_F_RESP ? l->wants_resp : l->wants_trailers) || *data != NULL)
		return;
	for (uint32_t i = 0; i < l->conf->n_ops; i++) {
		const struct ism_alog_op *op = &l->conf->ops[i];
		const struct ism_http_header *f = NULL;

		if (op->field != field)
			continue;
		for (int pass = 0; pass < 2 && f == NULL; pass++) {
			struct ism_str name = pass == 0 ? op->lit : op->alt_name;

			if (name.len > 0 &&
			    (f = ism_http_field(own, n_own, name.p, name.len)) == NULL)
				f = ism_http_field(h, n, name.p, name.len);
		}
		found[op->hdr] = f;
		total +=
		    f != NULL ? (f->value_len < ISM_ALOG_VALUE ? f->value_len : ISM_ALOG_VALUE) : 0;
	}
	if (total == 0 || (*data = d = malloc(total)) == NULL)
		return;
	for (int k = 0; k < ISM_ALOG_RESP_MAX; k++) {
		if (found[k] == NULL)
			continue;
		q->resp_len[k] =
		    (uint16_t)(found[k]->value_len < ISM_ALOG_VALUE ? found[k]->value_len
								    : ISM_ALOG_VALUE);
		memcpy(d, found[k]->value, q->resp_len[k]);
		q->resp_val[k] = d;
		d += q->resp_len[k];
	}
}

/* ---------- destinations ---------- */

/* A new descriptor for l's destination, or -1 (errno set). */
static int open_dest(const struct ism_alog *l)
{
	switch (l->dest) {
	case ISM_ALOG_STDOUT:
		return dup(STDOUT_FILENO);
	case ISM_ALOG_FILE:
		return open(l->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	case ISM_ALOG_SYSLOG:
		/* Not connected: each send names the address, so a syslog daemon
		 * that restarts (a new socket at the same path) is found again. */
		return socket(l->addr.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	default:
		errno = EINVAL;
		return -1;
	}
}

/* The room a line of conf needs: a JSON line whole however long its values
 * (each one is cut at ISM_ALOG_VALUE, then escaped, up to six bytes a byte
 * for Istio's templates), so that it stays JSON; a text line is cut at
 * ISM_ALOG_LINE. At most what a write buffer takes. */
static uint32_t line_room(const struct ism_alog_conf *conf)
{
	size_t n = 2;

	switch ((enum ism_alog_format)conf->format) {
	case ISM_ALOG_TEXT:
		return ISM_ALOG_LINE;
	case ISM_ALOG_JSON:
		n += sizeof(json_ops) / sizeof(json_ops[0]) * (ISM_ALOG_VALUE + 1 + 32);
		break;
	case ISM_ALOG_DICT:
		for (uint32_t i = 0; i < conf->n_ops; i++)
			n += dict_structure(conf->ops[i].field) ||
				     conf->ops[i].field == ISM_ALOG_F_LITERAL
				 ? 6 * (size_t)conf->ops[i].lit.len + 8
				 : 2 * VALUE_ROOM + 8;
		break;
	}
	n = n < ISM_ALOG_LINE ? ISM_ALOG_LINE : n;
	return (uint32_t)(n < ISM_ALOG_BUF - 1 ? n : ISM_ALOG_BUF - 1);
}

void ism_alog_use(struct ism_alog *l, const struct ism_alog_conf *conf)
{
	uint32_t room = line_room(conf);
	char *line;

	/* Room for a line as long as the format may make (ism_alog_open
	 * allocates it; without the memory the room stays, and such a line
	 * is cut). */
	if (l->line == NULL) {
		l->line_cap = room;
	} else if (room > l->line_cap &&
		   (line = realloc(l->line, ISM_ALOG_SYSHEAD + room)) != NULL) {
		l->line = line;
		l->line_cap = room;
	}
	l->conf = conf;
	l->render = ism_alog_renderer(conf);
	l->headers = ism_alog_headers(conf);
	l->wants_local = l->wants_up_local = l->wants_resp = l->wants_trailers = false;
	l->wants_grpc = false;
	l->hv_mask = 0;
	memset(l->named, 0, sizeof(l->named));
	/* The fields a filter reads of the request (worker/logfilter.c), and
	 * the upstream connection's own address when it reads that. */
	if (conf->filter != NULL && ism_cel_reads(conf->filter, ISM_LA_UP_LOCAL_ADDRESS))
		l->wants_up_local = true;
	l->filter_resp =
	    conf->filter != NULL && (ism_cel_reads(conf->filter, ISM_LA_RESP_HEADERS) ||
				     ism_cel_reads(conf->filter, ISM_LA_RESP_GRPC_STATUS));
	l->filter_trailers =
	    conf->filter != NULL && (ism_cel_reads(conf->filter, ISM_LA_RESP_TRAILERS) ||
				     ism_cel_reads(conf->filter, ISM_LA_RESP_GRPC_STATUS));
	if (conf->filter != NULL)
		l->headers |= 1u << ISM_ALOG_H_METHOD | 1u << ISM_ALOG_H_PATH |
			      1u << ISM_ALOG_H_AUTHORITY | 1u << ISM_ALOG_H_USER_AGENT |
			      1u << ISM_ALOG_H_X_REQUEST_ID | 1u << ISM_ALOG_H_REFERER;
	l->wants_resp = l->filter_resp;
	l->wants_trailers = l->filter_trailers;
	for (uint32_t i = 0; conf->format != ISM_ALOG_JSON && i < conf->n_ops; i++) {
		const struct ism_alog_op *op = &conf->ops[i];
		uint8_t f = op->field;

		if (f == ISM_ALOG_F_REQ && op->hdr >= ISM_ALOG_H_COUNT && op->hdr < ISM_ALOG_H_ALL)
			l->named[op->hdr - ISM_ALOG_H_COUNT] = op->lit;
		if (f == ISM_ALOG_F_REQ && op->alt >= ISM_ALOG_H_COUNT && op->alt < ISM_ALOG_H_ALL)
			l->named[op->alt - ISM_ALOG_H_COUNT] = op->alt_name;

		l->wants_local = l->wants_local || f == ISM_ALOG_F_LOCAL ||
				 f == ISM_ALOG_F_LOCAL_IP || f == ISM_ALOG_F_LOCAL_PORT;
		l->wants_up_local = l->wants_up_local || f == ISM_ALOG_F_UP_LOCAL ||
				    f == ISM_ALOG_F_UP_LOCAL_IP || f == ISM_ALOG_F_UP_LOCAL_PORT;
		l->wants_resp = l->wants_resp || f == ISM_ALOG_F_RESP;
		l->wants_trailers = l->wants_trailers || f == ISM_ALOG_F_TRAILER;
		if (f == ISM_ALOG_F_GRPC_STATUS) /* its fields are kept as the filter's */
			l->wants_grpc = l->filter_resp = l->filter_trailers = l->wants_resp =
			    l->wants_trailers = true;
		if (f == ISM_ALOG_F_HVAL && op->hdr < ISM_HV_KINDS)
			l->hv_mask |= 1ull << op->hdr;
	}
}

static void syslog_setup(struct ism_alog *l, const struct ism_alog_conf *conf)
{
	snprintf(l->path, sizeof(l->path), "%s", conf->address.p);
	memcpy(&l->addr, &conf->addr, conf->addrlen);
	l->addrlen = conf->addrlen;
	l->pri = (uint8_t)(conf->facility * 8 + 6);
	snprintf(l->tag, sizeof(l->tag), "%s", conf->tag.p);
	/* RFC 3164 puts the host name after the time; a local daemon adds it
	 * itself and, like syslog(3), is not sent one. */
	if (l->addr.ss_family != AF_UNIX && gethostname(l->host, sizeof(l->host)) < 0)
		snprintf(l->host, sizeof(l->host), "-");
	l->host[sizeof(l->host) - 1] = '\0';
}

int ism_alog_open(struct ism_alog *l, const struct ism_alog_conf *conf, _Atomic uint64_t *dropped)
{
	int err;

	memset(l, 0, sizeof(*l));
	l->fd = -1;
	l->dropped = dropped;
	ism_alog_use(l, conf);
	if (conf->dest == ISM_ALOG_OFF)
		return 0;
	l->dest = conf->dest;
	l->line = malloc(ISM_ALOG_SYSHEAD + l->line_cap);
	if (l->dest == ISM_ALOG_SYSLOG) {
		syslog_setup(l, conf);
	} else {
		snprintf(l->path, sizeof(l->path), "%s", conf->path.p);
		l->buf[0] = malloc(ISM_ALOG_BUF);
		l->buf[1] = malloc(ISM_ALOG_BUF);
	}
	if (l->line == NULL || (l->dest != ISM_ALOG_SYSLOG && (!l->buf[0] || !l->buf[1]))) {
		ism_alog_close(l);
		return -ENOMEM;
	}
	l->fd = open_dest(l);
	if (l->fd < 0) {
		err = errno;
		ism_err("access log %s: %s", l->path, strerror(err));
		ism_alog_close(l);
		return -err;
	}
	return 0;
}

void ism_alog_reopen(struct ism_alog *l)
{
	int fd;

	if (l->fd < 0 || l->dest == ISM_ALOG_STDOUT)
		return;
	fd = open_dest(l);
	if (fd < 0) {
		ism_err("access log %s: reopen: %s (keeping the old one)", l->path,
			strerror(errno));
		return;
	}
	/* A write in flight keeps its own reference to the old file. */
	close(l->fd);
	l->fd = fd;
	l->failing = 0;
}

void ism_alog_close(struct ism_alog *l)
{
	if (l->fd >= 0)
		close(l->fd);
	free(l->buf[0]);
	free(l->buf[1]);
	free(l->line);
	l->buf[0] = l->buf[1] = l->line = NULL;
	l->fd = -1;
}

/* ---------- syslog ---------- */

/* The header of the second sec, as syslog(3) writes it: local time. */
static void syslog_head(struct ism_alog *l, time_t sec)
{
	char ts[32];
	struct tm tm;

	if (l->head_len != 0 && sec == l->head_sec)
		return;
	localtime_r(&sec, &tm);
	strftime(ts, sizeof(ts), "%b %e %H:%M:%S", &tm);
	l->head_len =
	    (uint32_t)printed(snprintf(l->head, sizeof(l->head), "<%u>%s %s%s%s[%ld]: ", l->pri, ts,
				       l->host, l->host[0] ? " " : "", l->tag, (long)getpid()),
			      sizeof(l->head));
	l->head_sec = sec;
}

/* One datagram: the header, then the line rendered after ISM_ALOG_SYSHEAD. */
static void syslog_send(struct ism_alog *l, size_t n, uint64_t now_ms)
{
	char *p;

	syslog_head(l, (time_t)(now_ms / 1000));
	p = l->line + ISM_ALOG_SYSHEAD - l->head_len;
	memcpy(p, l->head, l->head_len);
	if (sendto(l->fd, p, l->head_len + n, MSG_DONTWAIT | MSG_NOSIGNAL,
		   (const struct sockaddr *)&l->addr, l->addrlen) >= 0) {
		l->failing = 0;
		return;
	}
	ism_alog_drop(l, 1);
	if (!l->failing)
		ism_warn("access log: syslog %s: %s (lines are dropped and counted until it "
			 "takes them again)",
			 l->path, strerror(errno));
	l->failing = 1;
}

/* ---------- file and standard output ---------- */

static void submit(struct ism_wctx *w)
{
	struct ism_alog *l = &w->alog;
	int b = !l->filling;
	struct io_uring_sqe *sqe = ism_w_sqe(w);

	io_uring_prep_write(sqe, l->fd, l->buf[b] + l->off, l->len[b] - l->off, (uint64_t)-1);
	io_uring_sqe_set_data64(sqe, ism_ud(ISM_OP_LOGW, 0, 0));
	l->in_flight = 1;
}

void ism_alog_flush(struct ism_wctx *w)
{
	struct ism_alog *l = &w->alog;

	if (l->fd < 0 || l->in_flight || l->len[l->filling] == 0)
		return;
	l->filling = !l->filling;
	l->len[l->filling] = 0;
	l->off = 0;
	submit(w);
}

void ism_alog_written(struct ism_wctx *w, int res)
{
	struct ism_alog *l = &w->alog;
	int b = !l->filling;

	l->in_flight = 0;
	if (res > 0 && l->off + (uint32_t)res < l->len[b]) {
		l->off += (uint32_t)res; /* short write: the rest */
		submit(w);
		return;
	}
	if (res < 0) {
		/* Every line not written yet is lost: counted one by one. */
		ism_alog_drop_text(l, l->buf[b] + l->off, l->len[b] - l->off);
		if (!l->failing)
			ism_warn("access log: %s: %s (lines are dropped and counted until a write "
				 "succeeds)",
				 l->path, strerror(-res));
		l->failing = 1;
	} else if (l->failing) {
		ism_notice("access log: %s: written again", l->path);
		l->failing = 0;
	}
	l->len[b] = 0;
	if (l->len[l->filling] >= ISM_ALOG_BUF / 2)
		ism_alog_flush(w);
}

/* Appends one line and its newline. */
static void append(struct ism_wctx *w, const char *line, size_t len)
{
	struct ism_alog *l = &w->alog;
	uint32_t *fill = &l->len[l->filling];

	if (*fill + len + 1 > ISM_ALOG_BUF) {
		ism_alog_flush(w);
		fill = &l->len[l->filling];
		if (*fill + len + 1 > ISM_ALOG_BUF) {
			ism_alog_drop(l, 1); /* both buffers full: the disk is behind */
			return;
		}
	}
	memcpy(l->buf[l->filling] + *fill, line, len);
	*fill += (uint32_t)len;
	l->buf[l->filling][(*fill)++] = '\n';
	if (*fill >= ISM_ALOG_BUF / 2)
		ism_alog_flush(w);
}

void ism_alog_log(struct ism_wctx *w, const struct ism_alog_rec *r)
{
	struct ism_alog *l = &w->alog;
	char *line;
	size_t n;

	if (l->fd < 0)
		return;
	line = l->line + ISM_ALOG_SYSHEAD;
	n = l->render(l->conf, r, line, l->line_cap);
	if (l->dest == ISM_ALOG_SYSLOG)
		syslog_send(l, n, r->req->start_ms + r->duration_ms);
	else
		append(w, line, n);
}

/* Envoy's response flags, in the order its access log prints them. */
static const char *const flag_order[] = {"LH", "UH", "UT",  "LR",    "UR",   "UF",   "UC", "UO",
					 "NR", "DI", "FI",  "RL",    "UAEX", "RLSE", "DC", "URX",
					 "SI", "IH", "DPE", "UMSDR", "RFCF", "NFCF", "DT", "UPE",
					 "NC", "OM", "DF",  "DO",    "DR"};

/* Whether the comma-separated list has the token. */
static bool has_flag(const char *list, const char *token)
{
	size_t n = strlen(token);

	for (const char *p = list; p != NULL && *p != '\0';) {
		const char *comma = strchr(p, ',');
		size_t len = comma != NULL ? (size_t)(comma - p) : strlen(p);

		if (len == n && memcmp(p, token, n) == 0)
			return true;
		p = comma != NULL ? comma + 1 : NULL;
	}
	return false;
}

uint64_t ism_alog_flag_bits(const char *flags)
{
	uint64_t bits = 0;

	for (size_t i = 0; flags != NULL && i < sizeof(flag_order) / sizeof(flag_order[0]); i++)
		if (has_flag(flags, flag_order[i]))
			bits |= 1ull << i;
	return bits;
}

const char *ism_alog_flags(uint8_t add, const char *flags, char *buf, size_t len)
{
	static const struct {
		uint8_t bit;
		const char *name;
	} added[] = {
	    {ISM_ALOG_DI, "DI"}, {ISM_ALOG_FI, "FI"}, {ISM_ALOG_URX, "URX"}, {ISM_ALOG_UO, "UO"}};
	size_t off = 0;

	if (add == 0)
		return flags;
	buf[0] = '\0';
	for (size_t i = 0; i < sizeof(flag_order) / sizeof(flag_order[0]); i++) {
		bool on = has_flag(flags, flag_order[i]);

		for (size_t j = 0; j < sizeof(added) / sizeof(added[0]) && !on; j++)
			on = (add & added[j].bit) && strcmp(added[j].name, flag_order[i]) == 0;
		if (on && off < len)
			off += (size_t)snprintf(buf + off, len - off, "%s%s", off ? "," : "",
						flag_order[i]);
	}
	return buf;
}
