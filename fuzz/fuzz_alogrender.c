/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer harness for the access log's renderers (worker/accesslog.c) on a
 * hostile request: the input (after byte 0) is a request head a client sends;
 * captured as a worker captures it, it is rendered as the default JSON object,
 * as a JSON dictionary of %REQ(..)% templates and as a text template; byte 0
 * picks the response flags and details given. Besides memory safety (ASan,
 * UBSan) it checks that no line passes its bound, that a JSON line that was
 * not cut reads back (lib/json.c) and holds no raw byte below 0x20, and that a
 * text line holds no CR or LF. Found by a fuzzing review, which wrote it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/alog.h"
#include "lib/json.h"
#include "worker/accesslog.h"
#include "worker/worker-t.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MAX_OPS 256
#define TMPL(k, t)                                                                                 \
	{                                                                                          \
		.key = k, .key_len = sizeof(k) - 1, .tmpl = t, .len = sizeof(t) - 1                \
	}
static struct ism_alog_op dops[MAX_OPS], tops[MAX_OPS];
static struct ism_alog_conf jconf, dconf, tconf;
static struct ism_alog dl, tl, jl;
static char line[ISM_ALOG_LINE];

static void fail(const char *what, const char *l)
{
	fprintf(stderr, "fuzz_alogrender: %s: %s\n", what, l);
	abort();
}

static void init(void)
{
	static const char text[] =
	    "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" "
	    "%RESPONSE_CODE% %RESPONSE_FLAGS% %REQ(X-FORWARDED-FOR)% \"%REQ(USER-AGENT)%\" "
	    "\"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" %REQ(X-A)% %REQ(COOKIE):10% "
	    "%RESPONSE_CODE_DETAILS%";
	static const struct ism_alog_member dict[] = {
	    TMPL("path", "%REQ(:PATH)%"),      TMPL("ua", "%REQ(USER-AGENT)%"),
	    TMPL("a", "%REQ(X-A)%"),	       TMPL("b", "x %REQ(X-B)% y"),
	    TMPL("auth", "%REQ(:AUTHORITY)%"), TMPL("m", "%REQ(:METHOD)%"),
	    TMPL("cut", "%REQ(X-A):3%"),       TMPL("det", "%RESPONSE_CODE_DETAILS%"),
	    TMPL("fl", "%RESPONSE_FLAGS%"),    TMPL("xff", "%REQ(X-FORWARDED-FOR)%"),
	    TMPL("code", "%RESPONSE_CODE%"),
	};
	static char tcopy[sizeof(text)];
	char err[256];
	size_t bad;
	int n;

	memcpy(tcopy, text, sizeof(text));
	n = ism_alog_parse(tcopy, sizeof(text) - 1, tops, MAX_OPS, err, sizeof(err));
	if (n < 0)
		fail("the text format", err);
	tconf = (struct ism_alog_conf){.format = ISM_ALOG_TEXT, .ops = tops, .n_ops = (uint32_t)n};
	n = ism_alog_parse_dict(dict, sizeof(dict) / sizeof(dict[0]), dops, MAX_OPS, &bad, err,
				sizeof(err));
	if (n < 0)
		fail("the dictionary", err);
	dconf = (struct ism_alog_conf){.format = ISM_ALOG_DICT, .ops = dops, .n_ops = (uint32_t)n};
	jconf = (struct ism_alog_conf){.format = ISM_ALOG_JSON};
	jl.conf = &jconf;
	dl.conf = &dconf;
	tl.conf = &tconf;
	ism_alog_use(&jl, &jconf);
	ism_alog_use(&dl, &dconf);
	ism_alog_use(&tl, &tconf);
}

static void render(const struct ism_alog *l, const struct ism_alog_conf *c,
		   const struct ism_http_req *req, struct ism_alog_rec *rec, bool json)
{
	struct ism_alog_req *q = ism_alog_capture(l->headers, l->named, req, 1795676726015ull);
	size_t cap = sizeof(line) - 1, n;
	struct ism_json_doc doc;

	if (q == NULL)
		return;
	rec->req = q;
	n = ism_alog_renderer(c)(c, rec, line, cap);
	if (n > cap)
		fail("a line past its bound", "");
	line[n] = '\0';
	for (size_t i = 0; i < n; i++)
		if ((json && (unsigned char)line[i] < 0x20) ||
		    (!json && (line[i] == '\n' || line[i] == '\r')))
			fail(json ? "a raw control byte in a JSON line" : "CR or LF in a text line",
			     line);
	if (json && n < cap - 1) {
		if (ism_json_parse(line, n, &doc) < 0)
			fail("a JSON line that does not parse", line);
		ism_json_free(&doc);
	}
	ism_alog_req_free(q);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ism_http_header hdrs[64];
	static uint64_t meter[ISM_M_COUNT];
	struct ism_http_limits lim = {
	    .max_head_bytes = 65536, .max_headers = 64, .max_uri_bytes = 16384};
	struct ism_http_req req = {.headers = hdrs};
	struct ism_alog_rec rec = {.duration_ms = 4,
				   .status = 200,
				   .attempts = 1,
				   .client = "127.0.0.1",
				   .client_port = 1,
				   .meter = meter,
				   .handshake_ms = -1,
				   .grpc_status = -2,
				   .req_ms = -1,
				   .req_tx_ms = -1,
				   .resp_ms = -1,
				   .resp_tx_ms = -1};
	const struct ism_http_req *rq;
	char *buf;

	if (jl.conf == NULL)
		init();
	if (size < 1 || (buf = malloc(size)) == NULL)
		return 0;
	memcpy(buf, data + 1, size - 1);
	rq = ism_http_parse_request(buf, size - 1, &lim, &req) > 0 ? &req : NULL;
	if (data[0] & 1) {
		rec.flags = "UF,URX";
		rec.details = "upstream_reset_before_response_started{connection_failure}";
	}
	render(&jl, &jconf, rq, &rec, true);
	render(&dl, &dconf, rq, &rec, true);
	render(&tl, &tconf, rq, &rec, false);
	free(buf);
	return 0;
}
