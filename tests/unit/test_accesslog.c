/* SPDX-License-Identifier: Apache-2.0 */
/* Unit tests of the access log: the text-template parser (conf/alog.c), the
 * request capture and the JSON and text renderers (worker/accesslog.c). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conf/alog.h"
#include "conf/hfmt.h"
#include "lib/log.h"
#include "worker/accesslog.h"
#include "worker/http1.h"

#define MAX_OPS 64

/* Members of a dictionary: a key and its template, a key and its JSON text,
 * a key's object or list, a list's template or JSON, the end of either. */
#define TMPL(k, t)                                                                                 \
	{                                                                                          \
		.key = k, .key_len = sizeof(k) - 1, .tmpl = t, .len = sizeof(t) - 1                \
	}
#define JSON(k, t)                                                                                 \
	{                                                                                          \
		.key = k, .key_len = sizeof(k) - 1, .tmpl = t, .len = sizeof(t) - 1,               \
		.kind = ISM_ALOG_M_JSON                                                            \
	}
#define OBJECT(k)                                                                                  \
	{                                                                                          \
		.key = k, .key_len = sizeof(k) - 1, .kind = ISM_ALOG_M_OBJECT                      \
	}
#define LIST(k)                                                                                    \
	{                                                                                          \
		.key = k, .key_len = sizeof(k) - 1, .kind = ISM_ALOG_M_LIST                        \
	}
#define ITEM(t)                                                                                    \
	{                                                                                          \
		.tmpl = t, .len = sizeof(t) - 1                                                    \
	}
#define ITEM_JSON(t)                                                                               \
	{                                                                                          \
		.tmpl = t, .len = sizeof(t) - 1, .kind = ISM_ALOG_M_JSON                           \
	}
#define ITEM_OBJECT                                                                                \
	{                                                                                          \
		.kind = ISM_ALOG_M_OBJECT                                                          \
	}
#define END                                                                                        \
	{                                                                                          \
		.kind = ISM_ALOG_M_END                                                             \
	}

/* Parses s from a heap copy of exactly its length (no NUL after it: ASan sees
 * a read past the end). Returns the count or -1; err gets the message. */
static int parse(const char *s, struct ism_alog_op *ops, char *err, size_t errlen)
{
	size_t len = strlen(s);
	char *copy = malloc(len ? len : 1);
	int n;

	assert_non_null(copy);
	memcpy(copy, s, len);
	n = ism_alog_parse(copy, len, ops, MAX_OPS, err, errlen);
	/* Literals and names point into the template: keep them valid for the
	 * caller. */
	for (int i = 0; i < n && i < MAX_OPS; i++) {
		if (ops[i].lit.p != NULL)
			ops[i].lit.p = s + (ops[i].lit.p - copy);
		if (ops[i].alt_name.p != NULL)
			ops[i].alt_name.p = s + (ops[i].alt_name.p - copy);
	}
	free(copy);
	return n;
}

/* --- the parser --- */

static void test_parse_every_operator(void **state)
{
	static const struct {
		const char *op;
		uint8_t field;
	} cases[] = {
	    {"%START_TIME%", ISM_ALOG_F_START_TIME},
	    {"%PROTOCOL%", ISM_ALOG_F_PROTOCOL},
	    {"%RESPONSE_CODE%", ISM_ALOG_F_RESPONSE_CODE},
	    {"%RESPONSE_FLAGS%", ISM_ALOG_F_RESPONSE_FLAGS},
	    {"%BYTES_RECEIVED%", ISM_ALOG_F_BYTES_RECEIVED},
	    {"%BYTES_SENT%", ISM_ALOG_F_BYTES_SENT},
	    {"%DURATION%", ISM_ALOG_F_DURATION},
	    {"%UPSTREAM_HOST%", ISM_ALOG_F_UPSTREAM_HOST},
	    {"%UPSTREAM_CLUSTER%", ISM_ALOG_F_UPSTREAM_CLUSTER},
	    {"%UPSTREAM_REQUEST_ATTEMPT_COUNT%", ISM_ALOG_F_ATTEMPTS},
	    {"%DOWNSTREAM_REMOTE_ADDRESS%", ISM_ALOG_F_CLIENT},
	    {"%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", ISM_ALOG_F_CLIENT_IP},
	    {"%ROUTE_NAME%", ISM_ALOG_F_ROUTE_NAME},
	    {"%RESPONSE_CODE_DETAILS%", ISM_ALOG_F_CODE_DETAILS},
	    {"%DOWNSTREAM_LOCAL_ADDRESS%", ISM_ALOG_F_LOCAL},
	    {"%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%", ISM_ALOG_F_LOCAL_IP},
	    {"%DOWNSTREAM_LOCAL_PORT%", ISM_ALOG_F_LOCAL_PORT},
	    {"%UPSTREAM_CLUSTER_RAW%", ISM_ALOG_F_UPSTREAM_CLUSTER},
	    {"%UPSTREAM_LOCAL_ADDRESS%", ISM_ALOG_F_UP_LOCAL},
	    {"%UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT%", ISM_ALOG_F_UP_LOCAL_IP},
	    {"%UPSTREAM_LOCAL_PORT%", ISM_ALOG_F_UP_LOCAL_PORT},
	    {"%HOSTNAME%", ISM_ALOG_F_HOSTNAME},
	    {"%UPSTREAM_PROTOCOL%", ISM_ALOG_F_UP_PROTOCOL},
	    {"%REQUEST_DURATION%", ISM_ALOG_F_REQ_DURATION},
	    {"%REQUEST_TX_DURATION%", ISM_ALOG_F_REQ_TX_DURATION},
	    {"%RESPONSE_DURATION%", ISM_ALOG_F_RESP_DURATION},
	    {"%RESPONSE_TX_DURATION%", ISM_ALOG_F_RESP_TX_DURATION},
	    {"%CONNECTION_ID%", ISM_ALOG_F_CONNECTION_ID},
	    {"%UPSTREAM_CONNECTION_ID%", ISM_ALOG_F_UP_CONNECTION_ID},
	    {"%STREAM_ID%", ISM_ALOG_F_STREAM_ID},
	    {"%DOWNSTREAM_HANDSHAKE_DURATION%", ISM_ALOG_F_HANDSHAKE},
	};
	/* Those the header values make too: their kind in hdr. */
	static const struct {
		const char *op;
		uint8_t kind;
	} hvals[] = {
	    {"%DOWNSTREAM_REMOTE_PORT%", ISM_HV_CLIENT_PORT},
	    {"%DOWNSTREAM_DIRECT_REMOTE_ADDRESS%", ISM_HV_PEER},
	    {"%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%", ISM_HV_PEER_IP},
	    {"%DOWNSTREAM_DIRECT_REMOTE_PORT%", ISM_HV_PEER_PORT},
	    {"%DOWNSTREAM_TLS_VERSION%", ISM_HV_TLS_VERSION},
	    {"%DOWNSTREAM_TLS_CIPHER%", ISM_HV_TLS_CIPHER},
	    {"%DOWNSTREAM_TLS_SESSION_ID%", ISM_HV_TLS_SESSION_ID},
	    {"%DOWNSTREAM_PEER_URI_SAN%", ISM_HV_PEER_URI_SAN},
	    {"%DOWNSTREAM_PEER_DNS_SAN%", ISM_HV_PEER_DNS_SAN},
	    {"%DOWNSTREAM_PEER_SUBJECT%", ISM_HV_PEER_SUBJECT},
	    {"%DOWNSTREAM_PEER_ISSUER%", ISM_HV_PEER_ISSUER},
	    {"%DOWNSTREAM_PEER_SERIAL%", ISM_HV_PEER_SERIAL},
	    {"%DOWNSTREAM_PEER_FINGERPRINT_256%", ISM_HV_PEER_FINGERPRINT},
	    {"%DOWNSTREAM_PEER_FINGERPRINT_1%", ISM_HV_PEER_FINGERPRINT_1},
	    {"%DOWNSTREAM_PEER_CERT_V_START%", ISM_HV_PEER_V_START},
	    {"%DOWNSTREAM_PEER_CERT_V_END%", ISM_HV_PEER_V_END},
	    {"%DOWNSTREAM_LOCAL_URI_SAN%", ISM_HV_LOCAL_URI_SAN},
	    {"%DOWNSTREAM_LOCAL_DNS_SAN%", ISM_HV_LOCAL_DNS_SAN},
	    {"%DOWNSTREAM_LOCAL_SUBJECT%", ISM_HV_LOCAL_SUBJECT},
	    {"%UPSTREAM_REMOTE_ADDRESS%", ISM_HV_UPSTREAM_HOST},
	    {"%UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%", ISM_HV_UPSTREAM_IP},
	    {"%UPSTREAM_REMOTE_PORT%", ISM_HV_UPSTREAM_PORT},
	};
	struct ism_alog_op ops[MAX_OPS];
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(parse(cases[i].op, ops, err, sizeof(err)), 1);
		assert_int_equal(ops[0].field, cases[i].field);
		assert_int_equal(ops[0].max_len, 0);
	}
	for (size_t i = 0; i < sizeof(hvals) / sizeof(hvals[0]); i++) {
		assert_int_equal(parse(hvals[i].op, ops, err, sizeof(err)), 1);
		assert_int_equal(ops[0].field, ISM_ALOG_F_HVAL);
		assert_int_equal(ops[0].hdr, hvals[i].kind);
	}
}

static void test_parse_req(void **state)
{
	static const struct {
		const char *op;
		uint8_t hdr, alt;
		uint16_t max_len;
	} cases[] = {
	    {"%REQ(:METHOD)%", ISM_ALOG_H_METHOD, ISM_ALOG_H_NONE, 0},
	    {"%REQ(:PATH)%", ISM_ALOG_H_PATH, ISM_ALOG_H_NONE, 0},
	    {"%REQ(:AUTHORITY)%", ISM_ALOG_H_AUTHORITY, ISM_ALOG_H_NONE, 0},
	    {"%REQ(USER-AGENT)%", ISM_ALOG_H_USER_AGENT, ISM_ALOG_H_NONE, 0},
	    {"%REQ(user-agent)%", ISM_ALOG_H_USER_AGENT, ISM_ALOG_H_NONE, 0},
	    {"%REQ(X-REQUEST-ID)%", ISM_ALOG_H_X_REQUEST_ID, ISM_ALOG_H_NONE, 0},
	    {"%REQ(X-FORWARDED-FOR)%", ISM_ALOG_H_X_FORWARDED_FOR, ISM_ALOG_H_NONE, 0},
	    {"%REQ(REFERER)%", ISM_ALOG_H_REFERER, ISM_ALOG_H_NONE, 0},
	    {"%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%", ISM_ALOG_H_X_ENVOY_ORIGINAL_PATH,
	     ISM_ALOG_H_PATH, 0},
	    {"%REQ(REFERER?:AUTHORITY):12%", ISM_ALOG_H_REFERER, ISM_ALOG_H_AUTHORITY, 12},
	    {"%REQ(USER-AGENT):65535%", ISM_ALOG_H_USER_AGENT, ISM_ALOG_H_NONE, 65535},
	};
	struct ism_alog_op ops[MAX_OPS];
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(parse(cases[i].op, ops, err, sizeof(err)), 1);
		assert_int_equal(ops[0].field, ISM_ALOG_F_REQ);
		assert_int_equal(ops[0].hdr, cases[i].hdr);
		assert_int_equal(ops[0].alt, cases[i].alt);
		assert_int_equal(ops[0].max_len, cases[i].max_len);
	}
}

/* Literals around operators, %% as a percent sign, the final newline dropped. */
static void test_parse_literals(void **state)
{
	struct ism_alog_op ops[MAX_OPS];
	char err[256];

	(void)state;
	assert_int_equal(parse("[%DURATION%] 100%% done\n", ops, err, sizeof(err)), 4);
	assert_int_equal(ops[0].field, ISM_ALOG_F_LITERAL);
	assert_int_equal(ops[0].lit.len, 1);
	assert_memory_equal(ops[0].lit.p, "[", 1);
	assert_int_equal(ops[1].field, ISM_ALOG_F_DURATION);
	assert_int_equal(ops[2].lit.len, 6);
	assert_memory_equal(ops[2].lit.p, "] 100%", 6);
	assert_int_equal(ops[3].lit.len, 5);
	assert_memory_equal(ops[3].lit.p, " done", 5);
	assert_int_equal(parse("%%", ops, err, sizeof(err)), 1);
	assert_int_equal(ops[0].lit.len, 1);
	assert_memory_equal(ops[0].lit.p, "%", 1);
	assert_int_equal(parse("%%%%", ops, err, sizeof(err)), 2);
	assert_int_equal(parse("", ops, err, sizeof(err)), 0);
	assert_int_equal(parse("\n", ops, err, sizeof(err)), 0);
	assert_int_equal(parse("a\tb", ops, err, sizeof(err)), 1);
	/* With no room, the count alone (the caller allocates, then parses again). */
	assert_int_equal(ism_alog_parse("x%DURATION%y", 12, NULL, 0, err, sizeof(err)), 3);
}

static void test_parse_default(void **state)
{
	struct ism_alog_op ops[MAX_OPS];
	char err[256];
	int n;

	(void)state;
	n = parse(ism_alog_default_text, ops, err, sizeof(err));
	assert_true(n > 0);
	assert_int_equal(ops[1].field, ISM_ALOG_F_START_TIME);
	assert_int_equal(ops[n - 1].field, ISM_ALOG_F_ROUTE_NAME);
}

static void test_parse_errors(void **state)
{
	static const struct {
		const char *s;
		const char *msg; /* exact */
	} cases[] = {
	    {"%FOO%", "unknown command operator: \"%FOO%\" at offset 0"},
	    {"%start_time%", "a lone '%' (write %% for a percent sign): \"%\" at offset 0"},
	    {"100% done", "a lone '%' (write %% for a percent sign): \"%\" at offset 3"},
	    {"x %", "a lone '%' (write %% for a percent sign): \"%\" at offset 2"},
	    {"[%DURATION",
	     "unterminated command operator (no closing '%'): \"%DURATION\" at offset 1"},
	    {"%REQ(USER-AGENT", "unterminated command operator (no ')'): \"%REQ(USER-AGENT\" at "
				"offset 0"},
	    {"%REQ(USER-AGENT)", "unterminated command operator (no closing '%'): "
				 "\"%REQ(USER-AGENT)\" at offset 0"},
	    {"%DURATION %", "malformed command operator: \"%DURATION \" at offset 0"},
	    {"%VIRTUAL_CLUSTER_NAME%",
	     "not implemented yet in the access log: \"%VIRTUAL_CLUSTER_NAME%\" at offset 0"},
	    {"%UPSTREAM_PEER_SUBJECT%",
	     "not implemented yet in the access log: \"%UPSTREAM_PEER_SUBJECT%\" at offset 0"},
	    {"%GRPC_STATUS(CAMEL)%", "%GRPC_STATUS()% takes CAMEL_STRING, SNAKE_STRING or NUMBER: "
				     "\"%GRPC_STATUS(CAMEL)%\" at offset 0"},
	    {"%GRPC_STATUS_NUMBER(NUMBER)%", "%GRPC_STATUS_NUMBER% takes no argument: "
					     "\"%GRPC_STATUS_NUMBER(NUMBER)%\" at offset 0"},
	    /* A header value's operator the line does not show: a whole PEM. */
	    {"%DOWNSTREAM_PEER_CERT%",
	     "not implemented yet in the access log: \"%DOWNSTREAM_PEER_CERT%\" at offset 0"},
	    {"%DOWNSTREAM_TLS_VERSION(x)%", "this command operator takes no argument: "
					    "\"%DOWNSTREAM_TLS_VERSION(x)%\" at offset 0"},
	    {"%REQ%",
	     "%REQ()% needs a header name, as in %REQ(USER-AGENT)%: \"%REQ%\" at offset 0"},
	    {"%REQ()%", "%REQ()% needs a header name, as in %REQ(USER-AGENT)%: \"%REQ()%\" at "
			"offset 0"},
	    {"%START_TIME(%Q)%",
	     "not a conversion START_TIME knows (strftime's, %s, %f, %1f..%9f): "
	     "\"%START_TIME(%Q)%\" at offset 0"},
	    {"%START_TIME(%0f)%",
	     "not a conversion START_TIME knows (strftime's, %s, %f, %1f..%9f): "
	     "\"%START_TIME(%0f)%\" at offset 0"},
	    {"%START_TIME(x%)%",
	     "not a conversion START_TIME knows (strftime's, %s, %f, %1f..%9f): "
	     "\"%START_TIME(x%)%\" at offset 0"},
	    {"%DURATION(x)%", "this command operator takes no argument: \"%DURATION(x)%\" at "
			      "offset 0"},
	    {"%DURATION:3%",
	     "a length (':N') applies to %REQ()%, %RESP()%, %TRAILER()% and %ENVIRONMENT()% only: "
	     "\"%DURATION:3%\" at offset 0"},
	    {"%REQ(USER-AGENT):0%", "the length after ':' must be between 1 and 65535: "
				    "\"%REQ(USER-AGENT):0%\" at offset 0"},
	    {"%REQ(USER-AGENT):65536%", "the length after ':' must be between 1 and 65535: "
					"\"%REQ(USER-AGENT):65536%\" at offset 0"},
	    {"%REQ(USER-AGENT):%", "the length after ':' must be between 1 and 65535: "
				   "\"%REQ(USER-AGENT):%\" at offset 0"},
	    {"%REQ(USER-AGENT):99999999999999999999%",
	     "the length after ':' must be between 1 and "
	     "65535: \"%REQ(USER-AGENT):99999999999999999999%\" at offset 0"},
	    {"a\nb", "control character 0x0a at offset 1"},
	};
	struct ism_alog_op ops[MAX_OPS];
	char err[256];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		err[0] = '\0';
		if (parse(cases[i].s, ops, err, sizeof(err)) != -1 ||
		    strcmp(err, cases[i].msg) != 0)
			fail_msg("%s: got \"%s\", wanted \"%s\"", cases[i].s, err, cases[i].msg);
	}
	err[0] = '\0';
	assert_int_equal(parse("%REQ(:SCHEME)%", ops, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "unknown pseudo-header (%REQ()% takes :METHOD, :PATH"));
	assert_non_null(strstr(err, "\"%REQ(:SCHEME)%\" at offset 0"));
	assert_int_equal(parse("%REQ(A)%%REQ(B)%%REQ(C)%%REQ(D)%%REQ(E)%%REQ(F)%%REQ(G)%%REQ(H)%"
			       "%REQ(USER-AGENT?I)%",
			       ops, err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "more than 8 request fields besides the usual ones"));
	assert_int_equal(parse("%REQ(USER-AGENT?)%", ops, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "an empty header name"));
}

/* %REQ()% of any field: one of the usual list, or one named by the format,
 * captured by name (its alternative too). */
static void test_parse_named_req(void **state)
{
	struct ism_alog_op ops[MAX_OPS];
	char err[256];

	(void)state;
	assert_int_equal(parse("%REQ(TRACEPARENT)% %REQ(USER-AGENT?X-UA):3% %REQ(X-A?X-B)%", ops,
			       err, sizeof(err)),
			 5);
	assert_int_equal(ops[0].hdr, ISM_ALOG_H_COUNT);
	assert_int_equal(ops[0].lit.len, 11);
	assert_memory_equal(ops[0].lit.p, "TRACEPARENT", 11);
	assert_int_equal(ops[2].hdr, ISM_ALOG_H_USER_AGENT);
	assert_int_equal(ops[2].alt, ISM_ALOG_H_COUNT + 1);
	assert_memory_equal(ops[2].alt_name.p, "X-UA", 4);
	assert_int_equal(ops[2].max_len, 3);
	assert_int_equal(ops[4].hdr, ISM_ALOG_H_COUNT + 2);
	assert_int_equal(ops[4].alt, ISM_ALOG_H_COUNT + 3);
}

/* --- capture and rendering --- */

#define START_MS 1795676726015ull /* 2026-11-26T07:05:26.015Z */
#define RID	 "0a1b2c3d-0000-4000-8000-00000000abcd"

struct fx {
	struct ism_http_header hdrs[16];
	struct ism_http_req req;
	struct ism_alog_req *q;
	struct ism_alog_rec rec;
	uint64_t meter[ISM_M_COUNT];
	struct ism_alog_op ops[MAX_OPS];
	struct ism_alog_conf conf;
	struct ism_alog log;
	char line[ISM_ALOG_LINE];
};

static int fx_teardown(void **state)
{
	struct fx *f = *state;

	ism_alog_req_free(f->q);
	free(f);
	return 0;
}

/* The request raw (NULL: it could not be parsed) is captured for fmt (NULL:
 * JSON), as a proxied exchange: 200 from an endpoint after one attempt. */
static struct fx *exchange_as(void **state, const char *raw, const char *fmt,
			      const struct ism_alog_member *dict, size_t n_dict)
{
	struct ism_http_limits lim = {
	    .max_head_bytes = 65536, .max_headers = 16, .max_uri_bytes = 8192};
	struct fx *f = calloc(1, sizeof(*f));
	char err[256];
	size_t bad;
	int n = 0;

	assert_non_null(f);
	*state = f;
	f->conf.format = fmt ? ISM_ALOG_TEXT : dict ? ISM_ALOG_DICT : ISM_ALOG_JSON;
	if (fmt != NULL)
		n = parse(fmt, f->ops, err, sizeof(err));
	if (dict != NULL)
		n = ism_alog_parse_dict(dict, n_dict, f->ops, MAX_OPS, &bad, err, sizeof(err));
	assert_true(n >= 0 && n <= MAX_OPS);
	f->conf.ops = f->ops;
	f->conf.n_ops = (uint32_t)n;
	f->req.headers = f->hdrs;
	if (raw != NULL)
		assert_int_equal(ism_http_parse_request(raw, strlen(raw), &lim, &f->req),
				 (ssize_t)strlen(raw));
	f->q = ism_alog_capture(ism_alog_headers(&f->conf), NULL, raw ? &f->req : NULL, START_MS);
	assert_non_null(f->q);
	f->rec = (struct ism_alog_rec){
	    .req = f->q,
	    .duration_ms = 4,
	    .bytes_in = 84,
	    .bytes_out = 137,
	    .status = 200,
	    .attempts = 1,
	    .client = "127.0.0.1",
	    .client_port = 40001,
	    .upstream = "web.demo.internal|127.0.0.2:18091",
	    .cluster = "outbound|80||web.demo.internal",
	    .meter = f->meter,
	    .handshake_ms = -1, /* plaintext */
	};
	for (int i = 0; i < ISM_M_COUNT; i++)
		f->meter[i] = 500u + (uint64_t)i; /* the heads: 500, 501; the wire: 502, 503 */
	snprintf(f->q->route, sizeof(f->q->route), "default/web#1");
	return f;
}

static struct fx *exchange(void **state, const char *raw, const char *fmt)
{
	return exchange_as(state, raw, fmt, NULL, 0);
}

static const char *render(struct fx *f)
{
	size_t n = ism_alog_renderer(&f->conf)(&f->conf, &f->rec, f->line, sizeof(f->line) - 1);

	f->line[n] = '\0';
	return f->line;
}

#define GET                                                                                        \
	"GET /app/x?q=1 HTTP/1.1\r\nHost: shop.example\r\nUser-Agent: curl/8.1\r\n"                \
	"x-forwarded-for: 10.0.0.9\r\n\r\n"

/* JSON: the fields README documents, in order, as before the text format. */
static void test_render_json(void **state)
{
	struct fx *f = exchange(state, GET, NULL);

	assert_string_equal(
	    render(f), "{\"time\":\"2026-11-26T07:05:26.015Z\",\"client\":\"127.0.0.1\","
		       "\"method\":\"GET\",\"authority\":\"shop.example\",\"path\":\"/app/x?q=1\","
		       "\"protocol\":\"HTTP/1.1\",\"route\":\"default/web#1\",\"status\":200,"
		       "\"bytes_in\":502,\"bytes_out\":503,\"duration_ms\":4,"
		       "\"upstream\":\"web.demo.internal|127.0.0.2:18091\","
		       "\"upstream_cluster\":\"outbound|80||web.demo.internal\",\"attempts\":1,"
		       "\"flags\":\"-\",\"request_id\":\"-\",\"user_agent\":\"curl/8.1\","
		       "\"x_forwarded_for\":\"10.0.0.9,127.0.0.1\",\"sni\":\"-\"}");
	snprintf(f->q->request_id, sizeof(f->q->request_id), RID);
	assert_non_null(strstr(render(f), "\"request_id\":\"" RID "\""));
	/* JSON captures only the headers it shows. */
	assert_non_null(f->q->val[ISM_ALOG_H_USER_AGENT]);
	assert_null(f->q->val[ISM_ALOG_H_REFERER]);
}

/* JSON: a request that could not be parsed, no route, no upstream; a string
 * is escaped. */
static void test_render_json_failure(void **state)
{
	struct fx *f = exchange(state, NULL, NULL);

	f->rec.status = 400;
	f->rec.flags = "DPE";
	f->rec.upstream = NULL;
	f->rec.attempts = 0;
	snprintf(f->q->route, sizeof(f->q->route), "a\"b");
	assert_string_equal(
	    render(f), "{\"time\":\"2026-11-26T07:05:26.015Z\",\"client\":\"127.0.0.1\","
		       "\"method\":\"-\",\"authority\":\"-\",\"path\":\"-\",\"protocol\":\"-\","
		       "\"route\":\"a\\\"b\",\"status\":400,\"bytes_in\":502,\"bytes_out\":503,"
		       "\"duration_ms\":4,\"upstream\":\"-\","
		       "\"upstream_cluster\":\"outbound|80||web.demo.internal\",\"attempts\":0,"
		       "\"flags\":\"DPE\",\"request_id\":\"-\",\"user_agent\":\"-\","
		       "\"x_forwarded_for\":\"-\",\"sni\":\"-\"}");
}

/* Istio's default template, adapted: every operator it keeps, with values. */
static void test_render_default_text(void **state)
{
	struct fx *f = exchange(state, GET, ism_alog_default_text);

	snprintf(f->q->request_id, sizeof(f->q->request_id), RID);
	f->rec.details = "via_upstream";
	/* Istio's whole default: the values a unit test has no connection for
	 * (service time, the two local addresses) are "-" here. */
	assert_string_equal(
	    render(f), "[2026-11-26T07:05:26.015Z] \"GET /app/x?q=1 HTTP/1.1\" 200 - via_upstream "
		       "- \"-\" 84 137 4 - \"10.0.0.9,127.0.0.1\" \"curl/8.1\" \"" RID "\" "
		       "\"shop.example\" \"127.0.0.2:18091\" outbound|80||web.demo.internal - - "
		       "127.0.0.1:40001 - default/web#1");
	f->rec.sni = "shop.example";
	assert_non_null(strstr(render(f), " 127.0.0.1:40001 shop.example default/web#1"));
}

/* Missing values print "-", as Envoy does: no route, no upstream, no cluster,
 * headers the client did not send, an HTTP/1.0 request without Host. */
static void test_render_text_missing(void **state)
{
	struct fx *f = exchange(state, "HEAD / HTTP/1.0\r\n\r\n",
				"%PROTOCOL% %REQ(:AUTHORITY)% %REQ(USER-AGENT)% %REQ(REFERER)% "
				"%REQ(X-REQUEST-ID)% %ROUTE_NAME% %UPSTREAM_HOST% "
				"%UPSTREAM_CLUSTER% %RESPONSE_FLAGS% %RESPONSE_CODE% "
				"%UPSTREAM_REQUEST_ATTEMPT_COUNT% %REQ(X-FORWARDED-FOR)%");

	f->q->route[0] = '\0';
	f->rec.upstream = f->rec.cluster = NULL;
	f->rec.status = 404;
	f->rec.flags = "NR";
	f->rec.attempts = 0;
	assert_string_equal(render(f), "HTTP/1.0 - - - - - - - NR 404 0 127.0.0.1");
}

/* A failed connection's reason as Envoy's formatter shows it (spaces made
 * underscores), "-" without one; no connection termination details ever. */
static void test_render_transport_failure(void **state)
{
	struct fx *f =
	    exchange(state, "GET / HTTP/1.1\r\nhost: h\r\n\r\n",
		     "\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %CONNECTION_TERMINATION_DETAILS%");

	assert_string_equal(render(f), "\"-\" -");
	f->rec.transport = "delayed connect error: Connection refused";
	assert_string_equal(render(f), "\"delayed_connect_error:_Connection_refused\" -");
}

/* %START_TIME(FORMAT)%, as Envoy's: strftime's conversions in UTC, %s the
 * epoch's seconds, %f and %Nf the fraction (milliseconds, then zeros). */
static void test_render_start_time_format(void **state)
{
	struct fx *f = exchange(state, "GET / HTTP/1.1\r\nhost: h\r\n\r\n",
				"%START_TIME(%s.%3f)% %START_TIME(%Y/%m/%dT%H:%M:%S%z)% "
				"%START_TIME(%f)% %START_TIME(%1f|%%|%j)% %START_TIME%");

	assert_string_equal(render(f), "1795676726.015 2026/11/26T07:05:26+0000 015000000 0|%|330 "
				       "2026-11-26T07:05:26.015Z");
}

/* %GRPC_STATUS(FORMAT)% and %GRPC_STATUS_NUMBER%, as Envoy's formatter
 * writes them: "-" for a request that is not gRPC. */
static void test_render_grpc_status(void **state)
{
	struct fx *f =
	    exchange(state, "GET / HTTP/1.1\r\nhost: h\r\n\r\n",
		     "%GRPC_STATUS% %GRPC_STATUS(CAMEL_STRING)% %GRPC_STATUS(SNAKE_STRING)% "
		     "%GRPC_STATUS(NUMBER)% %GRPC_STATUS_NUMBER%");

	f->rec.grpc_status = -2;
	assert_string_equal(render(f), "- - - - -");
	f->rec.grpc_status = 4;
	assert_string_equal(render(f), "DeadlineExceeded DeadlineExceeded DEADLINE_EXCEEDED 4 4");
	f->rec.grpc_status = 1;
	assert_string_equal(render(f), "Canceled Canceled CANCELLED 1 1");
	f->rec.grpc_status = 16; /* the last code with a name */
	assert_string_equal(render(f), "Unauthenticated Unauthenticated UNAUTHENTICATED 16 16");
	f->rec.grpc_status = 17; /* the first without */
	assert_string_equal(render(f), "17 17 17 17 17");
	f->rec.grpc_status = 42; /* a code of the user's */
	assert_string_equal(render(f), "42 42 42 42 42");
	f->rec.grpc_status = -1; /* not a number: Envoy's InvalidCode */
	assert_string_equal(render(f), "-1 -1 -1 -1 -1");
}

/* format: istio-json without jsonFormat: Istio's JSON default, its keys in
 * Envoy's order, typed as Envoy's json_format: numbers bare, absent values
 * null, no response flags "-". */
static void test_render_istio_json(void **state)
{
	struct fx *f =
	    exchange_as(state, GET, NULL, ism_alog_default_json, ism_alog_default_json_len);

	snprintf(f->q->request_id, sizeof(f->q->request_id), RID);
	f->rec.details = "via_upstream";
	assert_string_equal(
	    render(f),
	    "{\"authority\":\"shop.example\",\"bytes_received\":84,\"bytes_sent\":137,"
	    "\"connection_termination_details\":null,\"downstream_local_address\":null,"
	    "\"downstream_remote_address\":\"127.0.0.1:40001\",\"duration\":4,"
	    "\"method\":\"GET\",\"path\":\"/app/x?q=1\",\"protocol\":\"HTTP/1.1\","
	    "\"request_id\":\"" RID "\",\"requested_server_name\":null,\"response_code\":200,"
	    "\"response_code_details\":\"via_upstream\",\"response_flags\":\"-\","
	    "\"route_name\":\"default/web#1\",\"start_time\":\"2026-11-26T07:05:26.015Z\","
	    "\"upstream_cluster\":\"outbound|80||web.demo.internal\","
	    "\"upstream_host\":\"127.0.0.2:18091\",\"upstream_local_address\":null,"
	    "\"upstream_service_time\":null,\"upstream_transport_failure_reason\":null,"
	    "\"user_agent\":\"curl/8.1\",\"x_forwarded_for\":\"10.0.0.9,127.0.0.1\"}");
	/* A failure: its flags and the reason, no upstream. */
	f->rec.status = 503;
	f->rec.flags = "UF,URX";
	f->rec.transport = "delayed connect error: Connection refused";
	f->rec.upstream = NULL;
	assert_non_null(strstr(render(f), "\"response_code\":503,"));
	assert_non_null(strstr(render(f), "\"response_flags\":\"UF,URX\","));
	assert_non_null(strstr(render(f), "\"upstream_host\":null,"));
	assert_non_null(strstr(render(f), "\"upstream_transport_failure_reason\":\"delayed_connect_"
					  "error:_Connection_refused\","));
}

/* A jsonFormat of the user's: keys escaped, a value of several parts one
 * string ("-" for an absent part), an empty value "", a port a number or
 * null, the protocol "-" when unknown. */
static void test_render_dict(void **state)
{
	static const struct ism_alog_member m[] = {
	    TMPL("a\"b", "%PROTOCOL%/%DURATION%ms"),
	    TMPL("port", "%DOWNSTREAM_LOCAL_PORT%"),
	    TMPL("empty", ""),
	    TMPL("proto", "%PROTOCOL%"),
	    TMPL("c", "x%REQ(REFERER)%\"y"),
	};
	struct fx *f = exchange_as(state, GET, NULL, m, sizeof(m) / sizeof(m[0]));

	assert_string_equal(render(f), "{\"a\\\"b\":\"HTTP/1.1/4ms\",\"port\":null,\"empty\":\"\","
				       "\"proto\":\"HTTP/1.1\",\"c\":\"x-\\\"y\"}");
	f->rec.local = "10.1.1.1";
	f->rec.local_port = 8443;
	assert_non_null(strstr(render(f), "\"port\":8443,"));
	/* A request that could not be parsed has no protocol: "-", as Envoy. */
	ism_alog_req_free(f->q);
	f->q = ism_alog_capture(ism_alog_headers(&f->conf), NULL, NULL, START_MS);
	assert_non_null(f->q);
	f->rec.req = f->q;
	assert_non_null(strstr(render(f), "\"a\\\"b\":\"-/4ms\""));
	assert_non_null(strstr(render(f), "\"proto\":\"-\","));
}

/* A dictionary's members parse into one list: a key op, then the member's;
 * the %RESP()% slots count across members; an error names the member. */
static void test_parse_dict(void **state)
{
	static const struct ism_alog_member ok[] = {
	    TMPL("s", "%RESP(SERVER)%"),
	    TMPL("t", "[%RESP(X-T)%]"),
	};
	static const struct ism_alog_member bad[] = {
	    TMPL("a", "%DURATION%"),
	    TMPL("b", "x %UPSTREAM_PEER%"),
	};
	struct ism_alog_op ops[MAX_OPS];
	char err[256];
	size_t at = 99;

	(void)state;
	assert_int_equal(ism_alog_parse_dict(ok, 2, ops, MAX_OPS, &at, err, sizeof(err)), 6);
	assert_int_equal(ops[0].field, ISM_ALOG_F_KEY);
	assert_int_equal(ops[0].lit.len, 1);
	assert_int_equal(ops[1].field, ISM_ALOG_F_RESP);
	assert_int_equal(ops[1].hdr, 0);
	assert_int_equal(ops[2].field, ISM_ALOG_F_KEY);
	assert_int_equal(ops[3].field, ISM_ALOG_F_LITERAL);
	assert_int_equal(ops[4].field, ISM_ALOG_F_RESP);
	assert_int_equal(ops[4].hdr, 1);
	/* Counting only. */
	assert_int_equal(ism_alog_parse_dict(ok, 2, NULL, 0, &at, err, sizeof(err)), 6);
	assert_int_equal(ism_alog_parse_dict(bad, 2, ops, MAX_OPS, &at, err, sizeof(err)), -1);
	assert_int_equal(at, 1);
	assert_string_equal(err, "unknown command operator: \"%UPSTREAM_PEER%\" at offset 2");
}

/* Nested objects and lists, as Envoy's json_format writes them: each value
 * typed as a member's of the top level, JSON values (numbers, booleans, null)
 * as they are, empty objects and lists, an empty template "". */
static void test_render_dict_nested(void **state)
{
	static const struct ism_alog_member m[] = {
	    TMPL("code", "%RESPONSE_CODE%"),
	    OBJECT("upstream"),
	    TMPL("host", "%UPSTREAM_HOST%"),
	    OBJECT("none"),
	    END,
	    LIST("times"),
	    ITEM("%DURATION%"),
	    ITEM_JSON("1.5"),
	    ITEM("at %PROTOCOL%"),
	    ITEM(""),
	    ITEM_OBJECT,
	    TMPL("flags", "%RESPONSE_FLAGS%"),
	    END,
	    END,
	    LIST("empty"),
	    END,
	    END,
	    JSON("version", "2"),
	    JSON("on", "true"),
	    JSON("nothing", "null"),
	    TMPL("route", "%ROUTE_NAME%"),
	};
	struct fx *f = exchange_as(state, GET, NULL, m, sizeof(m) / sizeof(m[0]));

	assert_string_equal(
	    render(f), "{\"code\":200,\"upstream\":{\"host\":\"127.0.0.2:18091\",\"none\":{},"
		       "\"times\":[4,1.5,\"at HTTP/1.1\",\"\",{\"flags\":\"-\"}],\"empty\":[]},"
		       "\"version\":2,\"on\":true,\"nothing\":null,\"route\":\"default/web#1\"}");
	/* Absent values, as at the top level. */
	f->rec.upstream = NULL;
	f->q->route[0] = '\0';
	assert_non_null(strstr(render(f), "{\"host\":null,"));
	assert_non_null(strstr(render(f), ",\"route\":null}"));
}

/* The structure of a dictionary as ops, and what the parser refuses: an end
 * without an object or list, a list item with a key, an object member
 * without one, nesting deeper than ISM_ALOG_DICT_DEPTH, no end. */
static void test_parse_dict_nested(void **state)
{
	static const struct ism_alog_member ok[] = {
	    OBJECT("o"), LIST("l"), ITEM("%DURATION% ms"), ITEM_JSON("3"), END, END,
	};
	static const struct ism_alog_member stray_end[] = {TMPL("a", "x"), END};
	static const struct ism_alog_member keyed_item[] = {LIST("l"), TMPL("a", "x"), END};
	static const struct ism_alog_member bare_member[] = {OBJECT("o"), ITEM("x"), END};
	static const struct ism_alog_member open[] = {OBJECT("o"), TMPL("a", "x")};
	static const uint8_t fields[] = {
	    ISM_ALOG_F_KEY,  ISM_ALOG_F_OPEN,	  ISM_ALOG_F_KEY,     ISM_ALOG_F_OPEN,
	    ISM_ALOG_F_ITEM, ISM_ALOG_F_DURATION, ISM_ALOG_F_LITERAL, ISM_ALOG_F_ITEM,
	    ISM_ALOG_F_JSON, ISM_ALOG_F_CLOSE,	  ISM_ALOG_F_CLOSE,
	};
	struct ism_alog_member deep[2 * (ISM_ALOG_DICT_DEPTH + 1)];
	struct ism_alog_op ops[MAX_OPS];
	char err[256];
	size_t at = 99;

	(void)state;
	assert_int_equal(ism_alog_parse_dict(ok, 6, ops, MAX_OPS, &at, err, sizeof(err)), 11);
	for (size_t i = 0; i < sizeof(fields); i++)
		assert_int_equal(ops[i].field, fields[i]);
	assert_memory_equal(ops[1].lit.p, "{", 1);
	assert_memory_equal(ops[3].lit.p, "[", 1);
	assert_memory_equal(ops[8].lit.p, "3", 1);
	assert_memory_equal(ops[9].lit.p, "]", 1);
	assert_memory_equal(ops[10].lit.p, "}", 1);
	assert_int_equal(ism_alog_parse_dict(ok, 6, NULL, 0, &at, err, sizeof(err)), 11);

	assert_int_equal(ism_alog_parse_dict(stray_end, 2, ops, MAX_OPS, &at, err, sizeof(err)),
			 -1);
	assert_int_equal(at, 1);
	assert_string_equal(err, "an end without an object or list");
	assert_int_equal(ism_alog_parse_dict(keyed_item, 3, ops, MAX_OPS, &at, err, sizeof(err)),
			 -1);
	assert_int_equal(at, 1);
	assert_string_equal(err, "a list item with a key");
	assert_int_equal(ism_alog_parse_dict(bare_member, 3, ops, MAX_OPS, &at, err, sizeof(err)),
			 -1);
	assert_string_equal(err, "an object member without a key");
	assert_int_equal(ism_alog_parse_dict(open, 2, ops, MAX_OPS, &at, err, sizeof(err)), -1);
	assert_string_equal(err, "an object or list without its end");

	/* ISM_ALOG_DICT_DEPTH objects, one in the other, then one more. */
	for (int i = 0; i <= ISM_ALOG_DICT_DEPTH; i++) {
		deep[i] = (struct ism_alog_member)OBJECT("o");
		deep[2 * ISM_ALOG_DICT_DEPTH + 1 - i] = (struct ism_alog_member)END;
	}
	assert_int_equal(
	    ism_alog_parse_dict(deep + 1, 2 * ISM_ALOG_DICT_DEPTH, NULL, 0, &at, err, sizeof(err)),
	    3 * ISM_ALOG_DICT_DEPTH);
	assert_int_equal(ism_alog_parse_dict(deep, 2 * (ISM_ALOG_DICT_DEPTH + 1), NULL, 0, &at, err,
					     sizeof(err)),
			 -1);
	assert_int_equal(at, ISM_ALOG_DICT_DEPTH);
	assert_string_equal(err, "objects and lists nested deeper than 16");
}

/* A YAML number as the JSON Envoy writes for it: the double's shortest form,
 * positional from 1e-4 below 1e16; what is not a decimal number, or does not
 * fit a double, is refused. */
static void test_json_number(void **state)
{
	static const char *const ok[][2] = {
	    {"200", "200"},
	    {"-7", "-7"},
	    {"+3", "3"},
	    {"0", "0"},
	    {"-0", "-0"},
	    {"1.50", "1.5"},
	    {".5", "0.5"},
	    {"1.", "1"},
	    {"2.5e3", "2500"},
	    {"1e15", "1000000000000000"},
	    {"1e16", "1e+16"},
	    {"0.0001", "0.0001"},
	    {"0.00001", "1e-05"},
	    {"1.25E-7", "1.25e-07"},
	    {"123456789012345678", "1.2345678901234568e+17"},
	    {"0.1", "0.1"},
	    {"3.14159", "3.14159"},
	};
	static const char *const not_numbers[] = {"",	   "abc",   "0x10", "1e", ".", "-",
						  "1.2.3", "1_000", "12a",  "e5", " 1"};
	char out[64];

	(void)state;
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		int n = ism_alog_json_number(ok[i][0], strlen(ok[i][0]), out, sizeof(out));

		assert_int_equal(n, (int)strlen(ok[i][1]));
		assert_string_equal(out, ok[i][1]);
	}
	for (size_t i = 0; i < sizeof(not_numbers) / sizeof(not_numbers[0]); i++)
		assert_int_equal(
		    ism_alog_json_number(not_numbers[i], strlen(not_numbers[i]), out, sizeof(out)),
		    -EINVAL);
	assert_int_equal(ism_alog_json_number("1e999", 5, out, sizeof(out)), -ERANGE);
	assert_int_equal(ism_alog_json_number("-1e999", 6, out, sizeof(out)), -ERANGE);
	assert_int_equal(ism_alog_json_number("123456", 6, out, 4), -ENOSPC);
}

/* The operators whose values the stream gives the line: the host name, the
 * upstream's protocol, Envoy's timings (absent: "-", or null in JSON), the
 * header values' (a port a number in JSON). */
static void test_render_more_operators(void **state)
{
	static const struct ism_alog_member m[] = {
	    TMPL("req", "%REQUEST_DURATION%"),
	    TMPL("sent", "%REQUEST_TX_DURATION%"),
	    TMPL("resp", "%RESPONSE_DURATION%"),
	    TMPL("tx", "%RESPONSE_TX_DURATION%"),
	    TMPL("up", "%UPSTREAM_PROTOCOL%"),
	    TMPL("tls", "%DOWNSTREAM_TLS_VERSION%"),
	    TMPL("port", "%UPSTREAM_REMOTE_PORT%"),
	    TMPL("ip", "%UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"),
	    TMPL("hs", "%DOWNSTREAM_HANDSHAKE_DURATION%"),
	};
	struct fx *f = exchange_as(state, GET, NULL, m, sizeof(m) / sizeof(m[0]));
	char host[300];

	f->rec.req_ms = f->rec.req_tx_ms = f->rec.resp_ms = f->rec.resp_tx_ms = -1;
	f->rec.handshake_ms = -1;
	assert_string_equal(render(f),
			    "{\"req\":null,\"sent\":null,\"resp\":null,\"tx\":null,\"up\":null,"
			    "\"tls\":null,\"port\":null,\"ip\":null,\"hs\":null}");
	f->rec.handshake_ms = 3;
	f->rec.req_ms = 0;
	f->rec.req_tx_ms = 1;
	f->rec.resp_ms = 7;
	f->rec.resp_tx_ms = 12;
	f->rec.up_protocol = "HTTP/2";
	f->rec.hv[ISM_HV_TLS_VERSION] = "TLSv1.3";
	f->rec.hv[ISM_HV_UPSTREAM_PORT] = "18091";
	f->rec.hv[ISM_HV_UPSTREAM_IP] = "127.0.0.2";
	assert_string_equal(
	    render(f),
	    "{\"req\":0,\"sent\":1,\"resp\":7,\"tx\":12,\"up\":\"HTTP/2\",\"tls\":\"TLSv1.3\","
	    "\"port\":18091,\"ip\":\"127.0.0.2\",\"hs\":3}");
	/* Which of them the format shows, for the stream to make. */
	ism_alog_use(&f->log, &f->conf);
	assert_true(f->log.hv_mask ==
		    ((1ull << ISM_HV_TLS_VERSION) | (1ull << ISM_HV_UPSTREAM_PORT) |
		     (1ull << ISM_HV_UPSTREAM_IP)));
	ism_alog_req_free(f->q);
	f->q = NULL;
	free(*state);
	*state = NULL;

	f = exchange(state, GET,
		     "%HOSTNAME% %REQUEST_DURATION% %CONNECTION_ID% %STREAM_ID% "
		     "%DOWNSTREAM_HANDSHAKE_DURATION%");
	f->rec.req_ms = f->rec.handshake_ms = -1;
	f->rec.conn_id = 12345678901234ull;
	snprintf(f->q->request_id, sizeof(f->q->request_id), RID);
	snprintf(host, sizeof(host), "%s - 12345678901234 " RID " -", ism_hostname());
	assert_string_equal(render(f), host);
	/* The stream's id is the request's: captured for it. */
	assert_true(ism_alog_headers(&f->conf) & (1u << ISM_ALOG_H_X_REQUEST_ID));
}

/* Envoy's byte meters, each its own count and a number in JSON; the bodies'
 * counts beside them. */
static void test_render_meters(void **state)
{
	static const struct ism_alog_member m[] = {
	    TMPL("a", "%DOWNSTREAM_HEADER_BYTES_RECEIVED%"),
	    TMPL("b", "%DOWNSTREAM_HEADER_BYTES_SENT%"),
	    TMPL("c", "%DOWNSTREAM_WIRE_BYTES_RECEIVED%"),
	    TMPL("d", "%DOWNSTREAM_WIRE_BYTES_SENT%"),
	    TMPL("e", "%UPSTREAM_HEADER_BYTES_RECEIVED%"),
	    TMPL("f", "%UPSTREAM_HEADER_BYTES_SENT%"),
	    TMPL("g", "%UPSTREAM_WIRE_BYTES_RECEIVED%"),
	    TMPL("h", "%UPSTREAM_WIRE_BYTES_SENT%"),
	    TMPL("i", "%BYTES_RECEIVED% %BYTES_SENT%"),
	};
	struct fx *f = exchange_as(state, GET, NULL, m, sizeof(m) / sizeof(m[0]));

	assert_string_equal(render(f), "{\"a\":500,\"b\":501,\"c\":502,\"d\":503,\"e\":504,"
				       "\"f\":505,\"g\":506,\"h\":507,\"i\":\"84 137\"}");
}

/* A request that could not be parsed: only what the connection knows. */
static void test_render_text_unparsed(void **state)
{
	struct fx *f = exchange(state, NULL,
				"\"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" "
				"%RESPONSE_CODE% %RESPONSE_FLAGS% \"%REQ(X-FORWARDED-FOR)%\" "
				"%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%");

	f->rec.status = 431;
	f->rec.flags = "DPE";
	assert_string_equal(render(f), "\"- - -\" 431 DPE \"-\" 127.0.0.1");
}

/* Alternatives, lengths, %%, IPv6 client addresses, the client's request id or the one made. */
static void test_render_text_operators(void **state)
{
	struct fx *f = exchange(state,
				"POST /p HTTP/1.1\r\nhost: h\r\nX-Request-Id: client-id\r\n"
				"Referer: http://example.com/from/here\r\n\r\n",
				"%REQ(REFERER):18% %REQ(USER-AGENT?:AUTHORITY)% 100%% "
				"%REQ(X-REQUEST-ID)% %DOWNSTREAM_REMOTE_ADDRESS% "
				"%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% %BYTES_RECEIVED% "
				"%BYTES_SENT% %DURATION% %REQ(:METHOD)%");

	f->rec.client = "2001:db8::1";
	/* None made (preserveExternalRequestId): the client's went upstream. */
	assert_string_equal(render(f), "http://example.com h 100% client-id [2001:db8::1]:40001 "
				       "2001:db8::1 84 137 4 POST");
	/* One made in place of the client's: that one went upstream. */
	snprintf(f->q->request_id, sizeof(f->q->request_id), RID);
	assert_string_equal(render(f), "http://example.com h 100% " RID " [2001:db8::1]:40001 "
				       "2001:db8::1 84 137 4 POST");
}

/* A long value is cut at ISM_ALOG_VALUE when captured; the line at its room. */
static void test_capture_limits(void **state)
{
	static char raw[4096];
	char ua[2000];
	struct fx *f;
	size_t n;

	memset(ua, 'u', sizeof(ua) - 1);
	ua[sizeof(ua) - 1] = '\0';
	snprintf(raw, sizeof(raw), "GET / HTTP/1.1\r\nHost: h\r\nUser-Agent: %s\r\n\r\n", ua);
	f = exchange(state, raw, "%REQ(USER-AGENT)%%REQ(USER-AGENT)%");
	assert_int_equal(f->q->len[ISM_ALOG_H_USER_AGENT], ISM_ALOG_VALUE);
	assert_null(f->q->val[ISM_ALOG_H_REFERER]); /* not in the format: not captured */
	assert_int_equal(strlen(render(f)), 2 * ISM_ALOG_VALUE);
	n = ism_alog_renderer(&f->conf)(&f->conf, &f->rec, f->line, 100);
	assert_int_equal(n, 100);
}

/* The HTTP date of answers (ism_w_date): RFC 9110's IMF-fixdate, in English. */
static void test_time_http(void **state)
{
	char d[ISM_HTTP_DATE_LEN + 1];

	(void)state;
	ism_time_http(784111777, d); /* RFC 9110 5.6.7's example */
	assert_string_equal(d, "Sun, 06 Nov 1994 08:49:37 GMT");
	ism_time_http(0, d);
	assert_string_equal(d, "Thu, 01 Jan 1970 00:00:00 GMT");
	ism_time_http(1798761599, d); /* the last second of 2026 */
	assert_string_equal(d, "Thu, 31 Dec 2026 23:59:59 GMT");
	ism_time_http(951782400, d); /* a leap day */
	assert_string_equal(d, "Tue, 29 Feb 2000 00:00:00 GMT");
}

/* %RESP()%: any field of the response, the fields isthmus adds first, the
 * alternative's when the first is absent, cut at :N; at most 8 of them. */
static void test_render_resp(void **state)
{
	static const struct ism_http_header resp[] = {
	    {"Content-Type", 12, "text/html", 9},
	    {"server", 6, "upstream/1.0", 12},
	    {"x-b", 3, "bee", 3},
	};
	static const struct ism_http_header own[] = {{"server", 6, "isthmus", 7}};
	struct fx *f = exchange(state, GET,
				"%RESP(CONTENT-TYPE)% %RESP(SERVER)% %RESP(X-A?X-B)% %RESP(X-C)% "
				"%RESP(content-type):4%");
	struct ism_alog l = {.conf = &f->conf};
	struct ism_alog_op ops[MAX_OPS];
	char err[256];

	assert_int_equal(f->ops[0].field, ISM_ALOG_F_RESP);
	assert_int_equal(f->ops[8].hdr, 4); /* the fifth RESP's slot */
	ism_alog_use(&l, &f->conf);
	assert_true(l.wants_resp);
	ism_alog_capture_fields(&l, f->q, ISM_ALOG_F_RESP, resp, 3, own, 1);
	assert_string_equal(render(f), "text/html isthmus bee - text");
	assert_int_equal(parse("%RESP(a)%%RESP(b)%%RESP(c)%%RESP(d)%%RESP(e)%%RESP(f)%%RESP(g)%"
			       "%RESP(h)%",
			       ops, err, sizeof(err)),
			 8);
	assert_int_equal(parse("%RESP(a)%%RESP(b)%%RESP(c)%%RESP(d)%%RESP(e)%%RESP(f)%%RESP(g)%"
			       "%RESP(h)%%RESP(i)%",
			       ops, err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "more than 8 %RESP()% and %TRAILER()% operators"));
	assert_int_equal(parse("%RESP(a?)%", ops, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "an empty header name"));
	assert_int_equal(parse("%RESP%", ops, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "%RESP()% needs a header name"));
}

/* %ENVIRONMENT()%: the variable's value when the format is parsed, cut at
 * :N; absent when unset or empty; in JSON, a string. */
static void test_render_environment(void **state)
{
	static const struct ism_alog_member m[] = {
	    TMPL("a", "%ENVIRONMENT(ISM_TEST_POD)%"),
	    TMPL("b", "%ENVIRONMENT(ISM_TEST_POD):3%"),
	    TMPL("c", "%ENVIRONMENT(ISM_TEST_UNSET)%"),
	    TMPL("d", "%ENVIRONMENT(ISM_TEST_EMPTY)%"),
	};
	struct ism_alog_op ops[MAX_OPS];
	char err[256];
	struct fx *f;

	setenv("ISM_TEST_POD", "4711", 1);
	setenv("ISM_TEST_EMPTY", "", 1);
	unsetenv("ISM_TEST_UNSET");
	f = exchange_as(state, GET, NULL, m, sizeof(m) / sizeof(m[0]));
	/* Read once: a change after the parse changes nothing. */
	setenv("ISM_TEST_POD", "9999", 1);
	assert_string_equal(render(f), "{\"a\":\"4711\",\"b\":\"471\",\"c\":null,\"d\":null}");
	assert_int_equal(parse("%ENVIRONMENT%", ops, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "%ENVIRONMENT()% needs a variable's name"));
	unsetenv("ISM_TEST_POD");
	unsetenv("ISM_TEST_EMPTY");
}

/* %TRAILER()%: a trailer field of the response, captured apart from the
 * head's; its slots are counted with %RESP()%'s. */
static void test_render_trailer(void **state)
{
	static const struct ism_http_header head[] = {{"grpc-status", 11, "0", 1}};
	static const struct ism_http_header trl[] = {
	    {"grpc-status", 11, "5", 1},
	    {"grpc-message", 12, "not found", 9},
	};
	struct fx *f = exchange(state, GET,
				"%RESP(GRPC-STATUS)% %TRAILER(GRPC-STATUS)% "
				"%TRAILER(X-NONE?GRPC-MESSAGE):3% %TRAILER(X-NONE)%");
	struct ism_alog l = {.conf = &f->conf};
	struct ism_alog_op ops[MAX_OPS];
	char err[256];

	assert_int_equal(f->ops[2].field, ISM_ALOG_F_TRAILER);
	assert_int_equal(f->ops[2].hdr, 1); /* after the RESP's slot */
	ism_alog_use(&l, &f->conf);
	assert_true(l.wants_resp && l.wants_trailers);
	assert_string_equal(render(f), "- - - -");
	ism_alog_capture_fields(&l, f->q, ISM_ALOG_F_RESP, head, 1, NULL, 0);
	assert_string_equal(render(f), "0 - - -");
	ism_alog_capture_fields(&l, f->q, ISM_ALOG_F_TRAILER, trl, 2, NULL, 0);
	assert_string_equal(render(f), "0 5 not -");
	/* Once: a second set of trailers changes nothing. */
	ism_alog_capture_fields(&l, f->q, ISM_ALOG_F_TRAILER, head, 1, NULL, 0);
	assert_string_equal(render(f), "0 5 not -");
	assert_int_equal(parse("%RESP(a)%%RESP(b)%%RESP(c)%%RESP(d)%%TRAILER(e)%%TRAILER(f)%"
			       "%TRAILER(g)%%TRAILER(h)%%TRAILER(i)%",
			       ops, err, sizeof(err)),
			 -1);
	assert_non_null(strstr(err, "more than 8 %RESP()% and %TRAILER()% operators"));
	assert_int_equal(parse("%TRAILER%", ops, err, sizeof(err)), -1);
	assert_non_null(strstr(err, "%TRAILER()% needs a header name"));
}

/* A named request field is captured by its name, any case; its alternative
 * when it is absent. */
static void test_render_named_req(void **state)
{
	struct fx *f =
	    exchange(state, NULL, "%REQ(TRACEPARENT)% %REQ(X-NONE?USER-AGENT)% %REQ(X-NO)%");
	struct ism_alog l = {.conf = &f->conf};
	struct ism_http_limits lim = {
	    .max_head_bytes = 65536, .max_headers = 16, .max_uri_bytes = 8192};
	static const char raw[] = "GET / HTTP/1.1\r\nHost: h\r\ntraceparent: 00-abc-01\r\n"
				  "User-Agent: ua/1\r\n\r\n";

	ism_alog_use(&l, &f->conf);
	assert_int_equal(ism_http_parse_request(raw, strlen(raw), &lim, &f->req),
			 (ssize_t)strlen(raw));
	ism_alog_req_free(f->q);
	f->q = ism_alog_capture(l.headers, l.named, &f->req, START_MS);
	assert_non_null(f->q);
	f->rec.req = f->q;
	assert_string_equal(render(f), "00-abc-01 ua/1 -");
}

/* Response flags as Envoy's StreamInfo bits (CEL's response.flags): bit i
 * for the i-th flag of its access log's order. */
static void test_flag_bits(void **state)
{
	(void)state;
	assert_int_equal(ism_alog_flag_bits(NULL), 0);
	assert_int_equal(ism_alog_flag_bits("LH"), 0x1);
	assert_int_equal(ism_alog_flag_bits("NR"), 0x100);
	assert_int_equal(ism_alog_flag_bits("UH,DI"), 0x202);
	assert_int_equal(ism_alog_flag_bits("UAEX"), 0x1000);
	assert_int_equal(ism_alog_flag_bits("UF,URX"), 0x8020);
	assert_int_equal(ism_alog_flag_bits("SI"), 0x10000);
	assert_int_equal(ism_alog_flag_bits("DPE"), 0x40000);
	assert_int_equal(ism_alog_flag_bits("DF"), 0x4000000);
	assert_int_equal(ism_alog_flag_bits("DR"), 0x10000000);
	assert_int_equal(ism_alog_flag_bits("U"), 0); /* a prefix is not a flag */
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_time_http),
	    cmocka_unit_test(test_flag_bits),
	    cmocka_unit_test(test_parse_named_req),
	    cmocka_unit_test_teardown(test_render_named_req, fx_teardown),
	    cmocka_unit_test_teardown(test_render_resp, fx_teardown),
	    cmocka_unit_test(test_parse_every_operator),
	    cmocka_unit_test(test_parse_req),
	    cmocka_unit_test(test_parse_literals),
	    cmocka_unit_test(test_parse_default),
	    cmocka_unit_test(test_parse_errors),
	    cmocka_unit_test_teardown(test_render_json, fx_teardown),
	    cmocka_unit_test_teardown(test_render_json_failure, fx_teardown),
	    cmocka_unit_test_teardown(test_render_istio_json, fx_teardown),
	    cmocka_unit_test_teardown(test_render_dict, fx_teardown),
	    cmocka_unit_test(test_parse_dict),
	    cmocka_unit_test_teardown(test_render_dict_nested, fx_teardown),
	    cmocka_unit_test(test_parse_dict_nested),
	    cmocka_unit_test(test_json_number),
	    cmocka_unit_test_teardown(test_render_more_operators, fx_teardown),
	    cmocka_unit_test_teardown(test_render_meters, fx_teardown),
	    cmocka_unit_test_teardown(test_render_trailer, fx_teardown),
	    cmocka_unit_test_teardown(test_render_environment, fx_teardown),
	    cmocka_unit_test_teardown(test_render_default_text, fx_teardown),
	    cmocka_unit_test_teardown(test_render_text_missing, fx_teardown),
	    cmocka_unit_test_teardown(test_render_transport_failure, fx_teardown),
	    cmocka_unit_test_teardown(test_render_start_time_format, fx_teardown),
	    cmocka_unit_test_teardown(test_render_grpc_status, fx_teardown),
	    cmocka_unit_test_teardown(test_render_text_unparsed, fx_teardown),
	    cmocka_unit_test_teardown(test_render_text_operators, fx_teardown),
	    cmocka_unit_test_teardown(test_capture_limits, fx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
