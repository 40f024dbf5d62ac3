/* SPDX-License-Identifier: Apache-2.0 */
#include "conf/alog.h"

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/fmt.h"
#include "conf/hfmt.h"
#include "lib/log.h"

/* Istio's default (meshConfig.accessLogFormat unset: EnvoyTextLogFormat in
 * Istio's pilot/pkg/model/telemetry_logging.go), without its final newline,
 * which the log adds. */
const char ism_alog_default_text[] =
    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" "
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% "
    "\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
    "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" "
    "\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% "
    "%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% "
    "%REQUESTED_SERVER_NAME% %ROUTE_NAME%";

static const struct {
	const char *name;
	uint8_t field;
} operators[] = {
    {"START_TIME", ISM_ALOG_F_START_TIME},
    {"PROTOCOL", ISM_ALOG_F_PROTOCOL},
    {"RESPONSE_CODE", ISM_ALOG_F_RESPONSE_CODE},
    {"RESPONSE_FLAGS", ISM_ALOG_F_RESPONSE_FLAGS},
    {"BYTES_RECEIVED", ISM_ALOG_F_BYTES_RECEIVED},
    {"BYTES_SENT", ISM_ALOG_F_BYTES_SENT},
    {"DURATION", ISM_ALOG_F_DURATION},
    {"UPSTREAM_HOST", ISM_ALOG_F_UPSTREAM_HOST},
    {"UPSTREAM_CLUSTER", ISM_ALOG_F_UPSTREAM_CLUSTER},
    {"UPSTREAM_REQUEST_ATTEMPT_COUNT", ISM_ALOG_F_ATTEMPTS},
    {"DOWNSTREAM_REMOTE_ADDRESS", ISM_ALOG_F_CLIENT},
    {"DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", ISM_ALOG_F_CLIENT_IP},
    {"ROUTE_NAME", ISM_ALOG_F_ROUTE_NAME},
    {"REQUESTED_SERVER_NAME", ISM_ALOG_F_SNI},
    {"REQ", ISM_ALOG_F_REQ},
    {"RESPONSE_CODE_DETAILS", ISM_ALOG_F_CODE_DETAILS},
    {"DOWNSTREAM_LOCAL_ADDRESS", ISM_ALOG_F_LOCAL},
    {"DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT", ISM_ALOG_F_LOCAL_IP},
    {"DOWNSTREAM_LOCAL_PORT", ISM_ALOG_F_LOCAL_PORT},
    {"UPSTREAM_LOCAL_ADDRESS", ISM_ALOG_F_UP_LOCAL},
    {"UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT", ISM_ALOG_F_UP_LOCAL_IP},
    {"UPSTREAM_LOCAL_PORT", ISM_ALOG_F_UP_LOCAL_PORT},
    /* isthmus names no cluster by another name (Envoy's alt_stat_name) */
    {"UPSTREAM_CLUSTER_RAW", ISM_ALOG_F_UPSTREAM_CLUSTER},
    {"RESP", ISM_ALOG_F_RESP},
    {"TRAILER", ISM_ALOG_F_TRAILER},
    {"ENVIRONMENT", ISM_ALOG_F_ENV},
    {"UPSTREAM_TRANSPORT_FAILURE_REASON", ISM_ALOG_F_TRANSPORT_FAILURE},
    {"CONNECTION_TERMINATION_DETAILS", ISM_ALOG_F_TERMINATION},
    {"HOSTNAME", ISM_ALOG_F_HOSTNAME},
    {"UPSTREAM_PROTOCOL", ISM_ALOG_F_UP_PROTOCOL},
    {"REQUEST_DURATION", ISM_ALOG_F_REQ_DURATION},
    {"REQUEST_TX_DURATION", ISM_ALOG_F_REQ_TX_DURATION},
    {"RESPONSE_DURATION", ISM_ALOG_F_RESP_DURATION},
    {"RESPONSE_TX_DURATION", ISM_ALOG_F_RESP_TX_DURATION},
    {"CONNECTION_ID", ISM_ALOG_F_CONNECTION_ID},
    {"UPSTREAM_CONNECTION_ID", ISM_ALOG_F_UP_CONNECTION_ID},
    {"STREAM_ID", ISM_ALOG_F_STREAM_ID},
    {"DOWNSTREAM_HANDSHAKE_DURATION", ISM_ALOG_F_HANDSHAKE},
    {"GRPC_STATUS", ISM_ALOG_F_GRPC_STATUS},
    {"GRPC_STATUS_NUMBER", ISM_ALOG_F_GRPC_STATUS},
};

/* The byte meters' operators, by enum ism_meter. */
static const char *const meters[ISM_M_COUNT] = {
    [ISM_M_DOWN_HEAD_IN] = "DOWNSTREAM_HEADER_BYTES_RECEIVED",
    [ISM_M_DOWN_HEAD_OUT] = "DOWNSTREAM_HEADER_BYTES_SENT",
    [ISM_M_DOWN_WIRE_IN] = "DOWNSTREAM_WIRE_BYTES_RECEIVED",
    [ISM_M_DOWN_WIRE_OUT] = "DOWNSTREAM_WIRE_BYTES_SENT",
    [ISM_M_UP_HEAD_IN] = "UPSTREAM_HEADER_BYTES_RECEIVED",
    [ISM_M_UP_HEAD_OUT] = "UPSTREAM_HEADER_BYTES_SENT",
    [ISM_M_UP_WIRE_IN] = "UPSTREAM_WIRE_BYTES_RECEIVED",
    [ISM_M_UP_WIRE_OUT] = "UPSTREAM_WIRE_BYTES_SENT",
};

/* Envoy's other operators: known, not in the access log yet. */
static const char *const later[] = {
    "DOWNSTREAM_PEER_CERT",
    "VIRTUAL_CLUSTER_NAME",
    "DYNAMIC_METADATA",
    "CLUSTER_METADATA",
    "UPSTREAM_METADATA",
    "FILTER_STATE",
    "UPSTREAM_FILTER_STATE",
    "METADATA",
    "CEL",
    /* the upstream connection's TLS (Envoy's StreamInfoUpstreamSsl...) */
    "UPSTREAM_PEER_SUBJECT",
    "UPSTREAM_PEER_ISSUER",
    "UPSTREAM_PEER_CERT",
    "UPSTREAM_PEER_CERT_V_START",
    "UPSTREAM_PEER_CERT_V_END",
    "UPSTREAM_PEER_URI_SAN",
    "UPSTREAM_PEER_DNS_SAN",
    "UPSTREAM_PEER_IP_SAN",
    "UPSTREAM_LOCAL_SUBJECT",
    "UPSTREAM_LOCAL_URI_SAN",
    "UPSTREAM_LOCAL_DNS_SAN",
    "UPSTREAM_LOCAL_IP_SAN",
    "UPSTREAM_TLS_CIPHER",
    "UPSTREAM_TLS_VERSION",
    "UPSTREAM_TLS_SESSION_ID",
    NULL,
};

#define HDR_NAME(id, name) name,
static const char *const headers[ISM_ALOG_H_COUNT] = {ISM_ALOG_HEADERS(HDR_NAME)};
#undef HDR_NAME

/* One header name of %REQ(...)%: its id, ISM_ALOG_H_NONE, or -1. "host" is
 * the :authority, as Envoy's request header map finds it (over HTTP/2 too). */
static int header_id(const char *s, size_t len)
{
	if (len == 4 && strncasecmp(s, "host", 4) == 0)
		return ISM_ALOG_H_AUTHORITY;
	for (int i = 0; i < ISM_ALOG_H_COUNT; i++)
		if (strlen(headers[i]) == len && strncasecmp(headers[i], s, len) == 0)
			return i;
	return -1;
}

/* The slot of request field name (len bytes) in *slot: one of the list, or
 * the next named slot (*n_named of them taken); -1 with the message in err. */
static int req_slot(const char *s, const struct ism_fmt_tok *t, const char *name, size_t len,
		    int *n_named, uint8_t *slot, char *err, size_t errlen)
{
	int h = header_id(name, len);

	if (len == 0) {
		ism_fmt_fail(s, t, "an empty header name", err, errlen);
		return -1;
	}
	if (h >= 0) {
		*slot = (uint8_t)h;
		return 0;
	}
	if (name[0] == ':') {
		ism_fmt_fail(s, t,
			     "unknown pseudo-header (%REQ()% takes :METHOD, :PATH and :AUTHORITY)",
			     err, errlen);
		return -1;
	}
	if (*n_named >= ISM_ALOG_NAMED_MAX) {
		ism_fmt_fail(s, t, "more than 8 request fields besides the usual ones", err,
			     errlen);
		return -1;
	}
	*slot = (uint8_t)(ISM_ALOG_H_COUNT + (*n_named)++);
	return 0;
}

/* The argument of %REQ(NAME)% or %REQ(NAME?ALTERNATIVE)%: fields of the usual
 * list are captured always, others (the format's, at most 8) by name. */
static int parse_req(const char *s, const struct ism_fmt_tok *t, struct ism_alog_op *op,
		     int *n_named, char *err, size_t errlen)
{
	const char *q = memchr(t->arg, '?', t->arg_len);
	size_t l1 = q ? (size_t)(q - t->arg) : t->arg_len;

	if (req_slot(s, t, t->arg, l1, n_named, &op->hdr, err, errlen) < 0 ||
	    (q != NULL &&
	     req_slot(s, t, q + 1, t->arg_len - l1 - 1, n_named, &op->alt, err, errlen) < 0))
		return -1;
	if (op->hdr >= ISM_ALOG_H_COUNT)
		op->lit = (struct ism_str){t->arg, (uint32_t)l1};
	if (q != NULL && op->alt >= ISM_ALOG_H_COUNT)
		op->alt_name = (struct ism_str){q + 1, (uint32_t)(t->arg_len - l1 - 1)};
	return 0;
}

/* The argument of %RESP(NAME)% or %RESP(NAME?ALTERNATIVE)%, any names; the
 * slot it takes among the format's (*n_resp of them before it). */
static int parse_resp(const char *s, const struct ism_fmt_tok *t, struct ism_alog_op *op,
		      int *n_resp, char *err, size_t errlen)
{
	const char *q = memchr(t->arg, '?', t->arg_len);
	size_t l1 = q ? (size_t)(q - t->arg) : t->arg_len;

	if (l1 == 0 || (q != NULL && l1 + 1 == t->arg_len)) {
		ism_fmt_fail(s, t, "an empty header name", err, errlen);
		return -1;
	}
	if (*n_resp >= ISM_ALOG_RESP_MAX) {
		ism_fmt_fail(s, t, "more than 8 %RESP()% and %TRAILER()% operators", err, errlen);
		return -1;
	}
	op->hdr = (uint8_t)(*n_resp)++;
	op->lit = (struct ism_str){t->arg, (uint32_t)l1};
	if (q != NULL)
		op->alt_name = (struct ism_str){q + 1, (uint32_t)(t->arg_len - l1 - 1)};
	return 0;
}

/* Whether the line may show the header values' operator kind (-1: none).
 * The log's own operators are looked up first; what is left of those without
 * an argument is what the connection, the client's certificate and the last
 * attempt's endpoint give by the exchange's end, but for a certificate's
 * PEM, kilobytes long. */
static bool hval_kind_ok(int kind)
{
	return kind > ISM_HV_LITERAL && kind != ISM_HV_PEER_CERT;
}

/* Operator t as an access-log op (*n_resp, *n_named: the RESP operators and
 * the named request fields before it); -1 with the message in err. */
static int parse_operator(const char *s, const struct ism_fmt_tok *t, struct ism_alog_op *op,
			  int *n_resp, int *n_named, char *err, size_t errlen)
{
	int kind = -1, meter = ISM_M_COUNT;
	size_t k;

	for (k = 0; k < sizeof(operators) / sizeof(operators[0]); k++)
		if (ism_fmt_is(t, operators[k].name))
			break;
	if (k == sizeof(operators) / sizeof(operators[0]))
		for (meter = 0; meter < ISM_M_COUNT && !ism_fmt_is(t, meters[meter]); meter++)
			;
	if (k == sizeof(operators) / sizeof(operators[0]) && meter == ISM_M_COUNT &&
	    !hval_kind_ok(kind = ism_hval_kind_of(t))) {
		for (const char *const *l = later; *l; l++)
			if (ism_fmt_is(t, *l)) {
				ism_fmt_fail(s, t, "not implemented yet in the access log", err,
					     errlen);
				return -1;
			}
		ism_fmt_fail(s, t, "unknown command operator", err, errlen);
		return -1;
	}
	memset(op, 0, sizeof(*op));
	op->hdr = op->alt = ISM_ALOG_H_NONE;
	if (kind >= 0) {
		op->field = ISM_ALOG_F_HVAL;
		op->hdr = (uint8_t)kind;
	} else if (meter < ISM_M_COUNT) {
		op->field = ISM_ALOG_F_METER;
		op->hdr = (uint8_t)meter;
	} else {
		op->field = operators[k].field;
	}
	if (op->field == ISM_ALOG_F_REQ || op->field == ISM_ALOG_F_RESP ||
	    op->field == ISM_ALOG_F_TRAILER) {
		static const char *const needs[] = {
		    "%REQ()% needs a header name, as in %REQ(USER-AGENT)%",
		    "%RESP()% needs a header name, as in %RESP(CONTENT-TYPE)%",
		    "%TRAILER()% needs a header name, as in %TRAILER(GRPC-STATUS)%",
		};

		if (!t->has_arg || t->arg_len == 0) {
			ism_fmt_fail(s, t,
				     needs[op->field == ISM_ALOG_F_REQ	  ? 0
					   : op->field == ISM_ALOG_F_RESP ? 1
									  : 2],
				     err, errlen);
			return -1;
		}
		if ((op->field == ISM_ALOG_F_REQ ? parse_req(s, t, op, n_named, err, errlen)
						 : parse_resp(s, t, op, n_resp, err, errlen)) < 0)
			return -1;
		op->max_len = (uint16_t)t->max_len;
	} else if (op->field == ISM_ALOG_F_GRPC_STATUS) {
		static const char *const formats[] = {"CAMEL_STRING", "SNAKE_STRING", "NUMBER"};
		bool number = ism_fmt_is(t, "GRPC_STATUS_NUMBER");
		uint8_t f = ISM_ALOG_GRPC_CAMEL;

		while (!number && t->has_arg && t->arg_len > 0 && f < 3 &&
		       (strlen(formats[f]) != t->arg_len ||
			memcmp(formats[f], t->arg, t->arg_len) != 0))
			f++;
		if (f == 3 || (number && t->has_arg)) {
			ism_fmt_fail(
			    s, t,
			    number ? "%GRPC_STATUS_NUMBER% takes no argument"
				   : "%GRPC_STATUS()% takes CAMEL_STRING, SNAKE_STRING or NUMBER",
			    err, errlen);
			return -1;
		}
		op->hdr = number ? ISM_ALOG_GRPC_NUMBER : f;
	} else if (op->field == ISM_ALOG_F_START_TIME && t->has_arg) {
		/* Envoy's %START_TIME(FORMAT)%: strftime's, %s, %f, %Nf. */
		size_t at;
		const char *why = ism_time_format_check(t->arg, t->arg_len, &at);

		if (why != NULL) {
			ism_fmt_fail(s, t, why, err, errlen);
			return -1;
		}
		op->lit = (struct ism_str){t->arg, (uint32_t)t->arg_len};
	} else if (op->field == ISM_ALOG_F_ENV) {
		size_t n;

		if (!t->has_arg || t->arg_len == 0) {
			ism_fmt_fail(s, t,
				     "%ENVIRONMENT()% needs a variable's name, as in "
				     "%ENVIRONMENT(POD_NAME)%",
				     err, errlen);
			return -1;
		}
		op->lit.p = ism_fmt_env(t, &n);
		op->lit.len = (uint32_t)n;
	} else if (t->has_arg) {
		ism_fmt_fail(s, t, "this command operator takes no argument", err, errlen);
		return -1;
	} else if (t->has_len) {
		ism_fmt_fail(s, t,
			     "a length (':N') applies to %REQ()%, %RESP()%, %TRAILER()% and "
			     "%ENVIRONMENT()% only",
			     err, errlen);
		return -1;
	}
	return 0;
}

/* The ops of template s (len bytes) from ops[n] on (those past cap counted,
 * not written); *n_resp and *n_named count the slots taken, across the
 * templates of one format. The new count, or -1 with the message in err. */
static int parse_ops(const char *s, size_t len, struct ism_alog_op *ops, size_t cap, int n,
		     int *n_resp, int *n_named, char *err, size_t errlen)
{
	struct ism_fmt_tok t;
	size_t pos = 0;
	int rc;

	while ((rc = ism_fmt_next(s, len, &pos, &t, err, errlen)) > 0) {
		struct ism_alog_op op = {.field = ISM_ALOG_F_LITERAL,
					 .hdr = ISM_ALOG_H_NONE,
					 .alt = ISM_ALOG_H_NONE,
					 .lit = {.p = t.text, .len = (uint32_t)t.len}};

		if (t.op && parse_operator(s, &t, &op, n_resp, n_named, err, errlen) < 0)
			return -1;
		if ((size_t)n < cap)
			ops[n] = op;
		n++;
	}
	return rc < 0 ? -1 : n;
}

int ism_alog_parse(const char *s, size_t len, struct ism_alog_op *ops, size_t cap, char *err,
		   size_t errlen)
{
	int n_resp = 0, n_named = 0;

	if (len > 0 && s[len - 1] == '\n')
		len--;
	return parse_ops(s, len, ops, cap, 0, &n_resp, &n_named, err, errlen);
}

/* Istio's JSON default (meshConfig.accessLogEncoding: JSON without a format:
 * EnvoyJSONLogFormatIstio in Istio's pilot/pkg/model/telemetry_logging.go), in
 * the order of its keys, as Envoy writes them. */
#define MEMBER(k, f)                                                                               \
	{                                                                                          \
		.key = k, .key_len = sizeof(k) - 1, .tmpl = f, .len = sizeof(f) - 1                \
	}
const struct ism_alog_member ism_alog_default_json[] = {
    MEMBER("authority", "%REQ(:AUTHORITY)%"),
    MEMBER("bytes_received", "%BYTES_RECEIVED%"),
    MEMBER("bytes_sent", "%BYTES_SENT%"),
    MEMBER("connection_termination_details", "%CONNECTION_TERMINATION_DETAILS%"),
    MEMBER("downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"),
    MEMBER("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    MEMBER("duration", "%DURATION%"),
    MEMBER("method", "%REQ(:METHOD)%"),
    MEMBER("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
    MEMBER("protocol", "%PROTOCOL%"),
    MEMBER("request_id", "%REQ(X-REQUEST-ID)%"),
    MEMBER("requested_server_name", "%REQUESTED_SERVER_NAME%"),
    MEMBER("response_code", "%RESPONSE_CODE%"),
    MEMBER("response_code_details", "%RESPONSE_CODE_DETAILS%"),
    MEMBER("response_flags", "%RESPONSE_FLAGS%"),
    MEMBER("route_name", "%ROUTE_NAME%"),
    MEMBER("start_time", "%START_TIME%"),
    MEMBER("upstream_cluster", "%UPSTREAM_CLUSTER_RAW%"),
    MEMBER("upstream_host", "%UPSTREAM_HOST%"),
    MEMBER("upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%"),
    MEMBER("upstream_service_time", "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%"),
    MEMBER("upstream_transport_failure_reason", "%UPSTREAM_TRANSPORT_FAILURE_REASON%"),
    MEMBER("user_agent", "%REQ(USER-AGENT)%"),
    MEMBER("x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"),
};
#undef MEMBER
const size_t ism_alog_default_json_len =
    sizeof(ism_alog_default_json) / sizeof(ism_alog_default_json[0]);

/* An op of a dictionary's structure (its text in lit), written when there
 * is room; the count with it. */
static int dict_op(struct ism_alog_op *ops, size_t cap, int n, uint8_t field, const char *lit,
		   size_t len)
{
	if ((size_t)n < cap)
		ops[n] = (struct ism_alog_op){.field = field,
					      .hdr = ISM_ALOG_H_NONE,
					      .alt = ISM_ALOG_H_NONE,
					      .lit = {lit, (uint32_t)len}};
	return n + 1;
}

/* Member m's value: its template's ops, its JSON text, or the opening of its
 * object or list (in_list[*depth] then tells which); the new count, or -1
 * with the message in err. */
static int dict_value(const struct ism_alog_member *m, struct ism_alog_op *ops, size_t cap, int n,
		      bool *in_list, int *depth, int *n_resp, int *n_named, char *err,
		      size_t errlen)
{
	switch ((enum ism_alog_member_kind)m->kind) {
	case ISM_ALOG_M_TEMPLATE:
		return parse_ops(m->tmpl, m->len, ops, cap, n, n_resp, n_named, err, errlen);
	case ISM_ALOG_M_JSON:
		return dict_op(ops, cap, n, ISM_ALOG_F_JSON, m->tmpl, m->len);
	case ISM_ALOG_M_OBJECT:
	case ISM_ALOG_M_LIST:
		if (*depth >= ISM_ALOG_DICT_DEPTH) {
			snprintf(err, errlen, "objects and lists nested deeper than %d",
				 ISM_ALOG_DICT_DEPTH);
			return -1;
		}
		in_list[++*depth] = m->kind == ISM_ALOG_M_LIST;
		return dict_op(ops, cap, n, ISM_ALOG_F_OPEN, in_list[*depth] ? "[" : "{", 1);
	case ISM_ALOG_M_END:
		break;
	}
	snprintf(err, errlen, "a member of unknown kind %u", m->kind);
	return -1;
}

int ism_alog_parse_dict(const struct ism_alog_member *m, size_t n_members, struct ism_alog_op *ops,
			size_t cap, size_t *bad, char *err, size_t errlen)
{
	bool in_list[ISM_ALOG_DICT_DEPTH + 1] = {false};
	int n = 0, n_resp = 0, n_named = 0, depth = 0;

	*bad = 0;
	for (size_t i = 0; i < n_members; i++) {
		*bad = i;
		if (m[i].kind == ISM_ALOG_M_END) {
			if (depth == 0 || m[i].key != NULL) {
				snprintf(err, errlen, "an end without an object or list");
				return -1;
			}
			n = dict_op(ops, cap, n, ISM_ALOG_F_CLOSE, in_list[depth] ? "]" : "}", 1);
			depth--;
			continue;
		}
		if ((m[i].key == NULL) != in_list[depth]) {
			snprintf(err, errlen,
				 in_list[depth] ? "a list item with a key"
						: "an object member without a key");
			return -1;
		}
		n = m[i].key != NULL ? dict_op(ops, cap, n, ISM_ALOG_F_KEY, m[i].key, m[i].key_len)
				     : dict_op(ops, cap, n, ISM_ALOG_F_ITEM, NULL, 0);
		n = dict_value(&m[i], ops, cap, n, in_list, &depth, &n_resp, &n_named, err, errlen);
		if (n < 0)
			return -1;
	}
	if (depth > 0) {
		snprintf(err, errlen, "an object or list without its end");
		return -1;
	}
	return n;
}

/* A double of significant digits[0, n) and decimal exponent exp (d.ddd x
 * 10^exp) as fmt writes it: positional from 1e-4 below 1e16, else
 * d[.ddd]e[+-]XX. Its length, or -ENOSPC. */
static int json_number_text(bool neg, const char *digits, int n, int exp, char *out, size_t cap)
{
	char t[64];
	size_t len = 0;

	if (neg)
		t[len++] = '-';
	if (exp < -4 || exp >= 16) {
		t[len++] = digits[0];
		if (n > 1) {
			t[len++] = '.';
			memcpy(t + len, digits + 1, (size_t)n - 1);
			len += (size_t)n - 1;
		}
		len += (size_t)snprintf(t + len, sizeof(t) - len, "e%c%02d", exp < 0 ? '-' : '+',
					exp < 0 ? -exp : exp);
	} else if (exp < 0) {
		t[len++] = '0';
		t[len++] = '.';
		for (int i = -1; i > exp; i--)
			t[len++] = '0';
		memcpy(t + len, digits, (size_t)n);
		len += (size_t)n;
	} else {
		for (int i = 0; i <= exp || i < n; i++) {
			if (i == exp + 1)
				t[len++] = '.';
			t[len++] = i < n ? digits[i] : '0';
		}
	}
	if (len >= cap)
		return -ENOSPC;
	memcpy(out, t, len);
	out[len] = '\0';
	return (int)len;
}

/* Whether s (len bytes) is a decimal number of YAML's core schema:
 * [-+]?(.digits|digits(.digits?)?)([eE][-+]?digits)? */
static bool yaml_decimal(const char *s, size_t len)
{
	size_t i = 0, int_digits = 0, frac_digits = 0, exp_digits = 0;

	if (i < len && (s[i] == '-' || s[i] == '+'))
		i++;
	for (; i < len && s[i] >= '0' && s[i] <= '9'; i++)
		int_digits++;
	if (i < len && s[i] == '.')
		for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++)
			frac_digits++;
	if (int_digits == 0 && frac_digits == 0)
		return false;
	if (i < len && (s[i] == 'e' || s[i] == 'E')) {
		i++;
		if (i < len && (s[i] == '-' || s[i] == '+'))
			i++;
		for (; i < len && s[i] >= '0' && s[i] <= '9'; i++)
			exp_digits++;
		if (exp_digits == 0)
			return false;
	}
	return i == len;
}

int ism_alog_json_number(const char *s, size_t len, char *out, size_t cap)
{
	char buf[64], digits[24], *e;
	int prec, exp, n_digits = 0;
	double d;

	if (len == 0 || len >= sizeof(buf) || !yaml_decimal(s, len))
		return -EINVAL;
	memcpy(buf, s, len);
	buf[len] = '\0';
	d = strtod(buf, NULL);
	if (!isfinite(d))
		return -ERANGE;
	/* The fewest significant digits that read back as d, as Envoy's
	 * serializer (fmt's shortest form) writes a double. */
	for (prec = 0; prec < 17; prec++) {
		snprintf(buf, sizeof(buf), "%.*e", prec, d);
		if (strtod(buf, NULL) == d)
			break;
	}
	for (const char *p = buf; *p != 'e'; p++)
		if (*p >= '0' && *p <= '9')
			digits[n_digits++] = *p;
	exp = (int)strtol(strchr(buf, 'e') + 1, &e, 10);
	while (n_digits > 1 && digits[n_digits - 1] == '0')
		n_digits--;
	return json_number_text(signbit(d), digits, n_digits, exp, out, cap);
}
