/* SPDX-License-Identifier: Apache-2.0 */
#include "conf/alog.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

/* Istio's default (meshConfig.accessLogFormat unset) without
 * %RESPONSE_CODE_DETAILS%, %CONNECTION_TERMINATION_DETAILS%,
 * %UPSTREAM_TRANSPORT_FAILURE_REASON%, %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%,
 * %UPSTREAM_LOCAL_ADDRESS% and %DOWNSTREAM_LOCAL_ADDRESS%. */
const char ism_alog_default_text[] =
    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" "
    "%RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% "
    "\"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" "
    "\"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER% %DOWNSTREAM_REMOTE_ADDRESS% "
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
};

#define HDR_NAME(id, name) name,
static const char *const headers[ISM_ALOG_H_COUNT] = {ISM_ALOG_HEADERS(HDR_NAME)};
#undef HDR_NAME

struct parser {
	const char *s;
	size_t len;
	size_t at;  /* offset of the operator being parsed */
	size_t end; /* how far it goes, as far as known */
	char *err;
	size_t errlen;
};

static bool is_name(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

/* Reports an error about the operator at p->at, quoting it (at most 64
 * bytes). Returns -1. */
static int fail(struct parser *p, const char *what)
{
	size_t n = p->end - p->at < 64 ? p->end - p->at : 64;

	snprintf(p->err, p->errlen, "%s: \"%.*s\" at offset %zu", what, (int)n, p->s + p->at,
		 p->at);
	return -1;
}

/* One header name of %REQ(...)%: its id, ISM_ALOG_H_NONE, or -1. */
static int header_id(const char *s, size_t len)
{
	for (int i = 0; i < ISM_ALOG_H_COUNT; i++)
		if (strlen(headers[i]) == len && strncasecmp(headers[i], s, len) == 0)
			return i;
	return -1;
}

/* The argument of %REQ(NAME)% or %REQ(NAME?ALTERNATIVE)%. */
static int parse_req(struct parser *p, const char *arg, size_t len, struct ism_alog_op *op)
{
	const char *q = memchr(arg, '?', len);
	size_t l1 = q ? (size_t)(q - arg) : len;
	int h = header_id(arg, l1);
	int alt = q ? header_id(q + 1, len - l1 - 1) : ISM_ALOG_H_NONE;

	if (h < 0 || alt < 0)
		return fail(p, "header not captured (%REQ()% takes :METHOD, :PATH, :AUTHORITY, "
			       "USER-AGENT, X-REQUEST-ID, X-FORWARDED-FOR, REFERER, "
			       "X-ENVOY-ORIGINAL-PATH, and NAME?ALTERNATIVE)");
	op->hdr = (uint8_t)h;
	op->alt = (uint8_t)alt;
	return 0;
}

/* The operator at p->at: %NAME%, %NAME(ARG)% or %NAME(ARG):LENGTH%. Returns
 * the offset after its closing '%', or -1. */
static long parse_operator(struct parser *p, struct ism_alog_op *op)
{
	const char *s = p->s;
	size_t i = p->at + 1, name = i, name_len, arg = 0, arg_len = 0, k;
	bool has_arg = false, has_len = false;
	unsigned long max = 0;

	while (i < p->len && is_name(s[i]))
		i++;
	name_len = i - name;
	p->end = i;
	if (name_len == 0)
		return fail(p, "a lone '%' (write %% for a percent sign)");
	if (i < p->len && s[i] == '(') {
		const char *close = memchr(s + i, ')', p->len - i);

		p->end = p->len;
		if (close == NULL)
			return fail(p, "unterminated command operator (no ')')");
		has_arg = true;
		arg = i + 1;
		arg_len = (size_t)(close - s) - arg;
		i = (size_t)(close - s) + 1;
	}
	if (i < p->len && s[i] == ':') {
		has_len = true;
		for (i++; i < p->len && s[i] >= '0' && s[i] <= '9'; i++)
			max = max < 100000 ? max * 10 + (unsigned long)(s[i] - '0') : max;
	}
	p->end = i < p->len ? i + 1 : p->len;
	if (i >= p->len)
		return fail(p, "unterminated command operator (no closing '%')");
	if (s[i] != '%')
		return fail(p, "malformed command operator");
	if (has_len && (max == 0 || max > 65535))
		return fail(p, "the length after ':' must be between 1 and 65535");
	for (k = 0; k < sizeof(operators) / sizeof(operators[0]); k++)
		if (strlen(operators[k].name) == name_len &&
		    memcmp(operators[k].name, s + name, name_len) == 0)
			break;
	if (k == sizeof(operators) / sizeof(operators[0]))
		return fail(p, "unknown command operator");
	memset(op, 0, sizeof(*op));
	op->field = operators[k].field;
	op->hdr = op->alt = ISM_ALOG_H_NONE;
	if (op->field == ISM_ALOG_F_REQ) {
		if (!has_arg || arg_len == 0)
			return fail(p, "%REQ()% needs a header name, as in %REQ(USER-AGENT)%");
		if (parse_req(p, s + arg, arg_len, op) < 0)
			return -1;
		op->max_len = (uint16_t)max;
	} else if (has_arg) {
		return fail(p, "this command operator takes no argument");
	} else if (has_len) {
		return fail(p, "a length (':N') applies to %REQ()% only");
	}
	return (long)i + 1;
}

static void literal(struct ism_alog_op *ops, size_t cap, int n, const char *s, size_t len)
{
	if ((size_t)n >= cap)
		return;
	memset(&ops[n], 0, sizeof(ops[n]));
	ops[n].field = ISM_ALOG_F_LITERAL;
	ops[n].hdr = ops[n].alt = ISM_ALOG_H_NONE;
	ops[n].lit.p = s;
	ops[n].lit.len = (uint32_t)len;
}

int ism_alog_parse(const char *s, size_t len, struct ism_alog_op *ops, size_t cap, char *err,
		   size_t errlen)
{
	struct parser p = {.s = s, .len = len, .err = err, .errlen = errlen};
	size_t i = 0, lit = 0;
	int n = 0;

	if (len > 0 && s[len - 1] == '\n')
		p.len = --len;
	while (i < len) {
		struct ism_alog_op op;
		long next;

		if ((unsigned char)s[i] < 0x20 && s[i] != '\t') {
			snprintf(err, errlen,
				 "control character 0x%02x at offset %zu (a line is one line)",
				 (unsigned char)s[i], i);
			return -1;
		}
		if (s[i] != '%') {
			i++;
			continue;
		}
		if (i + 1 < len && s[i + 1] == '%') {
			/* %% is a '%': the literal ends with the first one. */
			literal(ops, cap, n++, s + lit, i + 1 - lit);
			i += 2;
			lit = i;
			continue;
		}
		if (i > lit)
			literal(ops, cap, n++, s + lit, i - lit);
		p.at = i;
		next = parse_operator(&p, &op);
		if (next < 0)
			return -1;
		if ((size_t)n < cap)
			ops[n] = op;
		n++;
		i = lit = (size_t)next;
	}
	if (i > lit)
		literal(ops, cap, n++, s + lit, i - lit);
	return n;
}
