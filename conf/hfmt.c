/* SPDX-License-Identifier: Apache-2.0 */
#include "conf/hfmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf/fmt.h"

enum arg_rule {
	ARG_NONE = 0,
	ARG_HEADER, /* REQ or RESP(NAME?ALTERNATIVE), with an optional :LENGTH */
	ARG_ENV,    /* ENVIRONMENT(NAME), with an optional :LENGTH */
};

/* The operators a header value may hold; the two that are text by the time
 * a request comes (HOSTNAME, ENVIRONMENT) are ISM_HV_LITERAL here. */
static const struct {
	const char *name;
	uint8_t kind;
	uint8_t arg;
} operators[] = {
    {"DOWNSTREAM_REMOTE_ADDRESS", ISM_HV_CLIENT, ARG_NONE},
    {"DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", ISM_HV_CLIENT_IP, ARG_NONE},
    {"DOWNSTREAM_REMOTE_PORT", ISM_HV_CLIENT_PORT, ARG_NONE},
    {"DOWNSTREAM_DIRECT_REMOTE_ADDRESS", ISM_HV_PEER, ARG_NONE},
    {"DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT", ISM_HV_PEER_IP, ARG_NONE},
    {"DOWNSTREAM_DIRECT_REMOTE_PORT", ISM_HV_PEER_PORT, ARG_NONE},
    {"DOWNSTREAM_LOCAL_ADDRESS", ISM_HV_LOCAL, ARG_NONE},
    {"DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT", ISM_HV_LOCAL_IP, ARG_NONE},
    {"DOWNSTREAM_LOCAL_PORT", ISM_HV_LOCAL_PORT, ARG_NONE},
    {"REQUESTED_SERVER_NAME", ISM_HV_SNI, ARG_NONE},
    {"PROTOCOL", ISM_HV_PROTOCOL, ARG_NONE},
    {"START_TIME", ISM_HV_START_TIME, ARG_NONE},
    {"REQ", ISM_HV_REQ, ARG_HEADER},
    {"ROUTE_NAME", ISM_HV_ROUTE_NAME, ARG_NONE},
    {"UPSTREAM_CLUSTER", ISM_HV_UPSTREAM_CLUSTER, ARG_NONE},
    {"DOWNSTREAM_TLS_VERSION", ISM_HV_TLS_VERSION, ARG_NONE},
    {"DOWNSTREAM_PEER_URI_SAN", ISM_HV_PEER_URI_SAN, ARG_NONE},
    {"DOWNSTREAM_PEER_DNS_SAN", ISM_HV_PEER_DNS_SAN, ARG_NONE},
    {"DOWNSTREAM_PEER_SUBJECT", ISM_HV_PEER_SUBJECT, ARG_NONE},
    {"DOWNSTREAM_PEER_FINGERPRINT_256", ISM_HV_PEER_FINGERPRINT, ARG_NONE},
    {"DOWNSTREAM_PEER_FINGERPRINT_1", ISM_HV_PEER_FINGERPRINT_1, ARG_NONE},
    {"DOWNSTREAM_PEER_ISSUER", ISM_HV_PEER_ISSUER, ARG_NONE},
    {"DOWNSTREAM_PEER_SERIAL", ISM_HV_PEER_SERIAL, ARG_NONE},
    {"DOWNSTREAM_PEER_CERT", ISM_HV_PEER_CERT, ARG_NONE},
    {"DOWNSTREAM_PEER_CERT_V_START", ISM_HV_PEER_V_START, ARG_NONE},
    {"DOWNSTREAM_PEER_CERT_V_END", ISM_HV_PEER_V_END, ARG_NONE},
    {"DOWNSTREAM_TLS_CIPHER", ISM_HV_TLS_CIPHER, ARG_NONE},
    {"DOWNSTREAM_TLS_SESSION_ID", ISM_HV_TLS_SESSION_ID, ARG_NONE},
    {"DOWNSTREAM_LOCAL_URI_SAN", ISM_HV_LOCAL_URI_SAN, ARG_NONE},
    {"DOWNSTREAM_LOCAL_DNS_SAN", ISM_HV_LOCAL_DNS_SAN, ARG_NONE},
    {"DOWNSTREAM_LOCAL_SUBJECT", ISM_HV_LOCAL_SUBJECT, ARG_NONE},
    {"UPSTREAM_HOST", ISM_HV_UPSTREAM_HOST, ARG_NONE},
    {"UPSTREAM_REMOTE_ADDRESS", ISM_HV_UPSTREAM_HOST, ARG_NONE},
    {"UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT", ISM_HV_UPSTREAM_IP, ARG_NONE},
    {"UPSTREAM_REMOTE_PORT", ISM_HV_UPSTREAM_PORT, ARG_NONE},
    {"UPSTREAM_LOCAL_ADDRESS", ISM_HV_UPSTREAM_LOCAL, ARG_NONE},
    {"UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT", ISM_HV_UPSTREAM_LOCAL_IP, ARG_NONE},
    {"UPSTREAM_LOCAL_PORT", ISM_HV_UPSTREAM_LOCAL_PORT, ARG_NONE},
    {"RESPONSE_CODE", ISM_HV_RESPONSE_CODE, ARG_NONE},
    {"RESP", ISM_HV_RESP, ARG_HEADER},
    {"HOSTNAME", ISM_HV_LITERAL, ARG_NONE},
    {"ENVIRONMENT", ISM_HV_LITERAL, ARG_ENV},
};

/* Envoy's other operators: known, not made here (metadata isthmus does not
 * keep, times and counts of the whole exchange). */
static const char *const later[] = {
    "UPSTREAM_TRANSPORT_FAILURE_REASON",
    "UPSTREAM_METADATA",
    "DYNAMIC_METADATA",
    "CLUSTER_METADATA",
    "FILTER_STATE",
    "PER_REQUEST_STATE",
    "TRAILER",
    "RESPONSE_CODE_DETAILS",
    "RESPONSE_FLAGS",
    "BYTES_RECEIVED",
    "BYTES_SENT",
    "DURATION",
    "REQUEST_DURATION",
    "RESPONSE_DURATION",
    "CONNECTION_ID",
    "VIRTUAL_CLUSTER_NAME",
    "METADATA",
    "CEL",
    NULL,
};

bool ism_hval_dynamic(const char *s, size_t len)
{
	for (size_t i = 0; i < len; i++) {
		if (s[i] != '%')
			continue;
		if (i + 1 < len && s[i + 1] == '%')
			i++;
		else
			return true;
	}
	return false;
}

static void put(struct ism_hval_part *parts, size_t cap, int n, struct ism_hval_part p)
{
	if ((size_t)n < cap)
		parts[n] = p;
}

const char *ism_hostname(void)
{
	static char name[256];

	if (name[0] == '\0' && gethostname(name, sizeof(name) - 1) < 0)
		snprintf(name, sizeof(name), "-");
	return name;
}

/* The index of operator t in the table; -1 when it has none. */
static int lookup(const struct ism_fmt_tok *t)
{
	for (size_t k = 0; k < sizeof(operators) / sizeof(operators[0]); k++)
		if (ism_fmt_is(t, operators[k].name))
			return (int)k;
	return -1;
}

int ism_hval_kind_of(const struct ism_fmt_tok *t)
{
	int k = lookup(t);

	return k >= 0 && operators[k].arg == ARG_NONE && operators[k].kind != ISM_HV_LITERAL
		   ? operators[k].kind
		   : -1;
}

/* Operator t as a piece; -1 with the message in err. */
static int operator(const char *s, const struct ism_fmt_tok *t, struct ism_hval_part *out,
		    char *err, size_t errlen)
{
	const char *q, *v;
	int k = lookup(t);

	if (k < 0) {
		for (const char *const *l = later; *l; l++)
			if (ism_fmt_is(t, *l)) {
				ism_fmt_fail(s, t, "not implemented yet in header values", err,
					     errlen);
				return -1;
			}
		ism_fmt_fail(s, t, "unknown command operator", err, errlen);
		return -1;
	}
	memset(out, 0, sizeof(*out));
	out->kind = operators[k].kind;
	if (operators[k].arg == ARG_NONE && (t->has_arg || t->has_len)) {
		ism_fmt_fail(s, t, "this command operator takes no argument (nor :LENGTH)", err,
			     errlen);
		return -1;
	}
	if (operators[k].arg != ARG_NONE && (!t->has_arg || t->arg_len == 0)) {
		ism_fmt_fail(s, t, "this command operator needs a name, as in %REQ(USER-AGENT)%",
			     err, errlen);
		return -1;
	}
	out->max_len = (uint16_t)t->max_len;
	switch (operators[k].arg) {
	case ARG_HEADER:
		q = memchr(t->arg, '?', t->arg_len);
		out->a =
		    (struct ism_str){t->arg, (uint32_t)(q ? (size_t)(q - t->arg) : t->arg_len)};
		if (q != NULL)
			out->b = (struct ism_str){q + 1, (uint32_t)(t->arg_len - out->a.len - 1)};
		if (out->a.len == 0 || (q != NULL && out->b.len == 0)) {
			ism_fmt_fail(s, t, "an empty header name", err, errlen);
			return -1;
		}
		break;
	case ARG_ENV: {
		size_t n;

		v = ism_fmt_env(t, &n);
		out->a = (struct ism_str){v, (uint32_t)n};
		break;
	}
	default:
		if (ism_fmt_is(t, "HOSTNAME"))
			out->a = (struct ism_str){ism_hostname(), (uint32_t)strlen(ism_hostname())};
		break;
	}
	if (out->kind == ISM_HV_LITERAL && out->max_len && out->a.len > out->max_len)
		out->a.len = out->max_len;
	return 0;
}

int ism_hval_parse(const char *s, size_t len, struct ism_hval_part *parts, size_t cap, char *err,
		   size_t errlen)
{
	struct ism_fmt_tok t;
	size_t pos = 0;
	int n = 0, rc;

	while ((rc = ism_fmt_next(s, len, &pos, &t, err, errlen)) > 0) {
		struct ism_hval_part p = {.kind = ISM_HV_LITERAL,
					  .a = {.p = t.text, .len = (uint32_t)t.len}};

		if (t.op && operator(s, &t, &p, err, errlen) < 0)
			return -1;
		put(parts, cap, n++, p);
	}
	return rc < 0 ? -1 : n;
}
