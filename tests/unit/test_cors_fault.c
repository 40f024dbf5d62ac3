/* SPDX-License-Identifier: Apache-2.0 */
/* A route's corsPolicy and fault: validated with positions (one error per
 * mistake), compiled into the route table as Istio hands them to Envoy, and
 * applied (worker/cors.h, worker/fault.h): the verdict and fields of a CORS
 * request, the shares of a fault's rolls, the access log's flags. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "check.h"
#include "conf/conf.h"
#include "loaded.h"
#include "worker/actions.h"
#include "worker/cors.h"
#include "worker/accesslog.h"
#include "worker/fault.h"
#include "worker/router.h"

#define HEAD                                                                                       \
	"apiVersion: isthmus.io/v1\nkind: Appliance\nmetadata: {name: t}\nspec:\n"                 \
	"  locality: r/z\n"                                                                        \
	"---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n"    \
	"  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [\"*\"]}]\n"          \
	"---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: up}\n"      \
	"spec:\n  hosts: [up.local]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n"        \
	"  resolution: STATIC\n  endpoints: [{address: 127.0.0.1}]\n"                              \
	"---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\n"    \
	"spec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n"
/* HEAD is 28 lines: a route's first line is line 29 of the file. */
#define ROUTE "  - route: [{destination: {host: up.local}}]\n"

/* Loads HEAD followed by routes; compiles it when it loads. The load's rc. */
static int load(struct loaded *l, const char *routes)
{
	size_t len = strlen(HEAD) + strlen(routes) + 1;
	char *text = malloc(len);
	int rc;

	assert_non_null(text);
	snprintf(text, len, "%s%s", HEAD, routes);
	rc = loaded_load(l, "t.yaml", text);
	free(text);
	return rc;
}

static void unload(struct loaded *l)
{
	loaded_free(l);
}

static const struct ism_route *route(const struct loaded *l, uint32_t i)
{
	const struct ism_vhost *vh = &l->t->listeners[0].vhosts[0];

	assert_true(i < vh->n_routes);
	return &vh->routes[i];
}

/* --- configuration --- */

static void test_cors_compiled(void **state)
{
	struct loaded l;
	const struct ism_cors *c;

	(void)state;
	assert_int_equal(load(&l,
			      ROUTE "    corsPolicy:\n"
				    "      allowOrigins: [{exact: https://a.example}, {prefix: "
				    "https://b.}, {regex: \"https://.*[.]c[.]example\"}]\n"
				    "      allowMethods: [GET, POST]\n"
				    "      allowHeaders: [X-Foo, X-Bar]\n"
				    "      exposeHeaders: [X-Up]\n"
				    "      maxAge: 24h\n"
				    "      allowCredentials: true\n"
				    "      unmatchedPreflights: IGNORE\n" ROUTE "    corsPolicy:\n"
				    "      allowOrigin: [\"*\", https://d.example]\n" ROUTE),
			 0);
	/* The rules after the first, which has no match, are warned unreachable
	 * (as Istio warns), and compiled all the same. */
	assert_int_equal(l.d.n, 2);
	assert_int_equal(l.d.n_errors, 0);
	c = route(&l, 0)->cors;
	assert_non_null(c);
	assert_int_equal(c->n_origins, 3);
	assert_int_equal(c->origins[0].kind, ISM_SM_EXACT);
	assert_string_equal(c->origins[0].s.p, "https://a.example");
	assert_int_equal(c->origins[1].kind, ISM_SM_PREFIX);
	assert_int_equal(c->origins[2].kind, ISM_SM_REGEX);
	assert_non_null(c->origins[2].re);
	/* Istio joins the lists with "," and sends maxAge in seconds. */
	assert_string_equal(c->methods.p, "GET,POST");
	assert_string_equal(c->headers.p, "X-Foo,X-Bar");
	assert_string_equal(c->expose.p, "X-Up");
	assert_string_equal(c->max_age.p, "86400");
	assert_int_equal(c->credentials, 1);
	assert_int_equal(c->forward_unmatched, 0);
	/* The deprecated allowOrigin: exact matches; the rest unset. */
	c = route(&l, 1)->cors;
	assert_non_null(c);
	assert_int_equal(c->n_origins, 2);
	assert_int_equal(c->origins[0].kind, ISM_SM_EXACT);
	assert_string_equal(c->origins[0].s.p, "*");
	assert_string_equal(c->methods.p, "");
	assert_string_equal(c->max_age.p, "");
	assert_int_equal(c->credentials, 0);
	assert_int_equal(c->forward_unmatched, 1); /* Istio's default: FORWARD */
	/* A route without one pays nothing. */
	assert_null(route(&l, 2)->cors);
	assert_null(route(&l, 2)->fault);
	unload(&l);
}

static void test_fault_compiled(void **state)
{
	struct loaded l;
	const struct ism_fault *f;

	(void)state;
	assert_int_equal(
	    load(&l, ROUTE
		 "    fault:\n"
		 "      delay: {fixedDelay: 5s, percentage: {value: 0.1}}\n"
		 "      abort: {httpStatus: 555, percentage: {value: 100}}\n" ROUTE
		 "    fault: {delay: {fixedDelay: 7ms, percent: 5}}\n" ROUTE
		 "    fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 50}}}\n" ROUTE
		 "    fault: {abort: {httpStatus: 503, percentage: {value: 0}}}\n"),
	    0);
	assert_int_equal(l.d.n, 3); /* the three unreachable rules, as above */
	assert_int_equal(l.d.n_errors, 0);
	f = route(&l, 0)->fault;
	assert_non_null(f);
	/* Istio: value × 10000 per million. */
	assert_int_equal(f->delay_ms, 5000);
	assert_int_equal(f->delay_ppm, 1000);
	assert_int_equal(f->abort_status, 555);
	assert_int_equal(f->abort_ppm, 1000000);
	assert_int_equal(f->abort_grpc, -1);
	f = route(&l, 1)->fault;
	assert_int_equal(f->delay_ms, 7);
	assert_int_equal(f->delay_ppm, 50000); /* the deprecated integer percent */
	assert_int_equal(f->abort_status, 0);
	f = route(&l, 2)->fault;
	assert_int_equal(f->abort_status, 200); /* Envoy: HTTP 200 with the gRPC status */
	assert_int_equal(f->abort_grpc, 14);
	assert_int_equal(f->abort_ppm, 500000);
	/* A fault that can do nothing costs its route nothing. */
	assert_null(route(&l, 3)->fault);
	unload(&l);
}

/* Without a percentage Istio gives Envoy 0 %: loaded, with a warning, and inert. */
static void test_fault_without_percentage(void **state)
{
	struct loaded l;

	(void)state;
	assert_int_equal(load(&l, ROUTE "    fault: {abort: {httpStatus: 500}}\n"), 0);
	assert_int_equal(l.d.n_errors, 0);
	assert_int_equal(l.d.n, 1);
	assert_non_null(strstr(l.d.items[0].msg, "no request is aborted"));
	assert_int_equal(l.d.items[0].line, 30);
	assert_null(route(&l, 0)->fault);
	unload(&l);
}

/* Each mistake: exactly one error, at its line and column, naming the field. */
static void test_bad_input(void **state)
{
	static const struct {
		const char *yaml; /* after ROUTE: line 30 on */
		int line, col;
		const char *field, *msg;
	} cases[] = {
	    {"    fault: {}\n", 30, 12, "http[0].fault", "must set delay, abort or both"},
	    {"    fault: {delay: {fixedDelay: 1s, percentage: {value: 101}}}\n", 30, 57,
	     "fault.delay.percentage.value", "between 0 and 100"},
	    {"    fault: {delay: {fixedDelay: 1s, percentage: {value: -1}}}\n", 30, 57,
	     "fault.delay.percentage.value", "between 0 and 100"},
	    {"    fault: {delay: {fixedDelay: 1s, percentage: {value: 0.00001}}}\n", 30, 57,
	     "fault.delay.percentage.value", "0.0001"},
	    {"    fault: {delay: {fixedDelay: 1s, percentage: {value: 1x}}}\n", 30, 57,
	     "fault.delay.percentage.value", "between 0 and 100"},
	    {"    fault: {delay: {fixedDelay: 1s, percent: 101}}\n", 30, 46, "fault.delay.percent",
	     "between 0 and 100"},
	    {"    fault: {delay: {fixedDelay: 0s, percent: 1}}\n", 30, 33, "fault.delay.fixedDelay",
	     "at least 1ms"},
	    {"    fault: {delay: {fixedDelay: 5, percent: 1}}\n", 30, 33, "fault.delay.fixedDelay",
	     "duration"},
	    {"    fault: {delay: {exponentialDelay: 1s, percent: 1}}\n", 30, 21,
	     "fault.delay.exponentialDelay", "not implemented yet"},
	    {"    fault: {abort: {httpStatus: 500, percent: 1}}\n", 30, 38, "fault.abort.percent",
	     "unknown field"},
	    {"    fault: {abort: {httpStatus: 600, percentage: {value: 1}}}\n", 30, 33,
	     "fault.abort.httpStatus", "between 200 and 599"},
	    {"    fault: {abort: {grpcStatus: \"14\", percentage: {value: 1}}}\n", 30, 33,
	     "fault.abort.grpcStatus", "unknown value \"14\""},
	    {"    fault: {abort: {http2Error: x, percentage: {value: 1}}}\n", 30, 21,
	     "fault.abort.http2Error", "not implemented yet"},
	    {"    fault: {abort: {httpStatus: 500, grpcStatus: INTERNAL}}\n", 30, 50,
	     "fault.abort.grpcStatus", "only one of"},
	    {"    fault: {sideways: {}}\n", 30, 13, "fault.sideways", "unknown field"},
	    {"    corsPolicy: {allowOrigins: [{}]}\n", 30, 33, "corsPolicy.allowOrigins[0]",
	     "must set one of exact, prefix, regex"},
	    {"    corsPolicy: {allowOrigins: [{exact: \"\"}]}\n", 30, 33,
	     "corsPolicy.allowOrigins[0]", "allows no origin"},
	    {"    corsPolicy: {allowOrigins: [{regex: \"(a\"}]}\n", 30, 41,
	     "corsPolicy.allowOrigins[0].regex", "missing )"},
	    {"    corsPolicy: {allowOrigins: [{exact: x}], allowMethods: [GET, get]}\n", 30, 66,
	     "corsPolicy.allowMethods[1]", "\"get\" is not a supported HTTP method"},
	    {"    corsPolicy: {allowOrigins: [{exact: x}], allowHeaders: [\"a b\"]}\n", 30, 61,
	     "corsPolicy.allowHeaders[0]", "not a valid header name"},
	    {"    corsPolicy: {allowOrigins: [{exact: x}], exposeHeaders: [\"a:b\"]}\n", 30, 62,
	     "corsPolicy.exposeHeaders[0]", "not a valid header name"},
	    {"    corsPolicy: {allowOrigins: [{exact: x}], maxAge: 1500ms}\n", 30, 54,
	     "corsPolicy.maxAge", "whole seconds"},
	    {"    corsPolicy: {allowOrigins: [{exact: x}], allowCredentials: maybe}\n", 30, 64,
	     "corsPolicy.allowCredentials", "true or false"},
	    {"    corsPolicy: {allowOrigins: [{exact: x}], unmatchedPreflights: DROP}\n", 30, 67,
	     "corsPolicy.unmatchedPreflights", "expected UNSPECIFIED, FORWARD or IGNORE"},
	    {"    corsPolicy: {allowOrigins: [{exact: x}], allowOrigns: [y]}\n", 30, 46,
	     "corsPolicy.allowOrigns", "did you mean 'allowOrigins'?"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char routes[512];
		struct loaded l;
		const struct ism_diag *e = NULL;

		snprintf(routes, sizeof(routes), ROUTE "%s", cases[i].yaml);
		CHECK(cases[i].yaml, load(&l, routes) < 0, "loaded");
		for (size_t j = 0; j < l.d.n; j++)
			if (l.d.items[j].severity == ISM_DIAG_ERROR)
				e = &l.d.items[j];
		CHECK(cases[i].yaml, l.d.n_errors == 1 && e != NULL, "%zu errors", l.d.n_errors);
		CHECK(cases[i].yaml, strstr(e->field, cases[i].field) != NULL, "field %s",
		      e->field);
		CHECK(cases[i].yaml, strstr(e->msg, cases[i].msg) != NULL, "message %s", e->msg);
		CHECK(cases[i].yaml, e->line == cases[i].line && e->col == cases[i].col,
		      "at %d:%d, want %d:%d", e->line, e->col, cases[i].line, cases[i].col);
		unload(&l);
	}
}

/* A fault beside a redirect or a directResponse is refused, as Istio refuses
 * it: one error, at the fault. */
static void test_fault_conflicts(void **state)
{
	static const char *const routes[] = {
	    "  - redirect: {uri: /x}\n    fault: {abort: {httpStatus: 500}}\n",
	    "  - directResponse: {status: 200}\n    fault: {abort: {httpStatus: 500}}\n",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(routes) / sizeof(routes[0]); i++) {
		struct loaded l;

		CHECK(routes[i], load(&l, routes[i]) < 0, "loaded");
		CHECK(routes[i], l.d.n_errors == 1, "%zu errors", l.d.n_errors);
		for (size_t j = 0; j < l.d.n; j++)
			if (l.d.items[j].severity == ISM_DIAG_ERROR)
				CHECK(routes[i],
				      strstr(l.d.items[j].field, "http[0].fault") != NULL &&
					  strstr(l.d.items[j].msg, "cannot be combined") != NULL,
				      "%s: %s", l.d.items[j].field, l.d.items[j].msg);
		unload(&l);
	}
}

/* A delegate route without corsPolicy or fault takes its root route's, as
 * Istio's mergeHTTPRoute does; one with its own keeps it. */
static void test_cors_delegate(void **state)
{
	static const char routes[] =
	    "  - match: [{uri: {prefix: /shop}}]\n"
	    "    corsPolicy: {allowOrigins: [{exact: https://root.example}]}\n"
	    "    fault: {abort: {httpStatus: 500, percentage: {value: 1}}}\n"
	    "    delegate: {name: shop}\n" ROUTE "---\napiVersion: networking.istio.io/v1\nkind: "
	    "VirtualService\nmetadata: {name: shop}\n"
	    "spec:\n  http:\n"
	    "  - match: [{uri: {prefix: /shop/a}}]\n"
	    "    route: [{destination: {host: up.local}}]\n"
	    "  - route: [{destination: {host: up.local}}]\n"
	    "    corsPolicy: {allowOrigins: [{exact: https://leaf.example}]}\n"
	    "    fault: {delay: {fixedDelay: 1s, percentage: {value: 2}}}\n";
	struct loaded l;

	(void)state;
	assert_int_equal(load(&l, routes), 0);
	assert_string_equal(route(&l, 0)->cors->origins[0].s.p, "https://root.example");
	assert_string_equal(route(&l, 1)->cors->origins[0].s.p, "https://leaf.example");
	assert_int_equal(route(&l, 0)->fault->abort_status, 500);
	assert_int_equal(route(&l, 1)->fault->abort_status, 0);
	assert_int_equal(route(&l, 1)->fault->delay_ms, 1000);
	assert_null(route(&l, 2)->cors);
	unload(&l);
}

/* --- CORS at work --- */

struct treq {
	struct ism_http_req req;
	struct ism_http_header h[6];
};

/* A request: method, then "name", "value" pairs, NULL-ended. */
static const struct ism_http_req *mkreq(struct treq *t, const char *method, ...)
{
	const char *name;
	va_list ap;

	memset(t, 0, sizeof(*t));
	t->req.method = method;
	t->req.method_len = strlen(method);
	t->req.headers = t->h;
	va_start(ap, method);
	while ((name = va_arg(ap, const char *)) != NULL) {
		const char *value = va_arg(ap, const char *);

		t->h[t->req.n_headers++] =
		    (struct ism_http_header){name, strlen(name), value, strlen(value)};
	}
	va_end(ap);
	return &t->req;
}

/* The verdict of c on req, when only the verdict matters. */
static int verdict(const struct ism_cors *c, const struct ism_http_req *req,
		   struct ism_router_scratch *rs)
{
	struct ism_cors_out *o;
	int v = ism_cors_check(c, req, rs, &o);

	assert_true(v == ISM_CORS_PASS ? o == NULL : o != NULL);
	free(o);
	return v;
}

/* The value o sets field name to, or NULL; each field o sets drops the
 * message's own of that name. */
static const char *out_field(const struct ism_cors_out *o, const char *name)
{
	for (uint32_t i = 0; o != NULL && i < o->edits.n; i++) {
		const struct ism_hdr_edit *e = &o->edits.e[i];

		assert_true(e->drop && e->n_values == 1);
		if (strcmp(e->name.p, name) == 0)
			return e->values[0].p;
	}
	return NULL;
}

static void test_cors_check(void **state)
{
	struct loaded l;
	struct ism_router_scratch *rs = ism_router_scratch_new();
	const struct ism_cors *c, *star, *ign;
	struct ism_cors_out *o;
	struct treq t;

	(void)state;
	assert_non_null(rs);
	assert_int_equal(load(&l, ROUTE "    corsPolicy:\n"
					"      allowOrigins: [{exact: https://a.example}, {regex: "
					"\"https://[a-z]+[.]c[.]example\"}]\n"
					"      allowMethods: [GET, POST]\n"
					"      allowHeaders: [\"*\"]\n"
					"      exposeHeaders: [X-Up, X-Down]\n"
					"      maxAge: 10s\n"
					"      allowCredentials: true\n" ROUTE "    corsPolicy:\n"
					"      allowOrigins: [{exact: \"*\"}]\n"
					"      allowMethods: [\"*\"]\n" ROUTE "    corsPolicy:\n"
					"      allowOrigins: [{exact: https://a.example}]\n"
					"      unmatchedPreflights: IGNORE\n"),
			 0);
	assert_int_equal(ism_router_use_table(rs, l.t), 0);
	c = route(&l, 0)->cors;
	star = route(&l, 1)->cors;
	ign = route(&l, 2)->cors;

	/* No Origin, or an empty one: not a CORS request. */
	assert_int_equal(verdict(c, mkreq(&t, "GET", NULL), rs), ISM_CORS_PASS);
	assert_int_equal(verdict(c, mkreq(&t, "GET", "origin", "", NULL), rs), ISM_CORS_PASS);
	/* An allowed origin's request: the origin as sent, credentials, exposed headers. */
	assert_int_equal(
	    ism_cors_check(c, mkreq(&t, "POST", "Origin", "https://a.example", NULL), rs, &o),
	    ISM_CORS_ACTUAL);
	assert_int_equal(o->preflight, 0);
	assert_int_equal(o->edits.n, 3);
	assert_string_equal(out_field(o, "access-control-allow-origin"), "https://a.example");
	assert_string_equal(out_field(o, "access-control-allow-credentials"), "true");
	assert_string_equal(out_field(o, "access-control-expose-headers"), "X-Up,X-Down");
	assert_string_equal(o->edits.e[0].name.p, "access-control-allow-origin");
	assert_string_equal(o->edits.e[2].name.p, "access-control-expose-headers");
	free(o);
	/* A regex origin, matched whole; exact is case-sensitive, as Envoy's. */
	assert_int_equal(verdict(c, mkreq(&t, "GET", "origin", "https://x.c.example", NULL), rs),
			 ISM_CORS_ACTUAL);
	assert_int_equal(
	    verdict(c, mkreq(&t, "GET", "origin", "https://x.c.example.evil", NULL), rs),
	    ISM_CORS_PASS);
	assert_int_equal(verdict(c, mkreq(&t, "GET", "origin", "https://A.example", NULL), rs),
			 ISM_CORS_PASS);
	/* An allowed origin's preflight: answered, "*" headers echo those asked. */
	assert_int_equal(ism_cors_check(c,
					mkreq(&t, "OPTIONS", "origin", "https://a.example",
					      "access-control-request-method", "PUT",
					      "access-control-request-headers", "x-a, x-b", NULL),
					rs, &o),
			 ISM_CORS_PREFLIGHT);
	assert_int_equal(o->preflight, 1);
	assert_int_equal(o->edits.n, 5);
	assert_string_equal(out_field(o, "access-control-allow-methods"), "GET,POST");
	assert_string_equal(out_field(o, "access-control-allow-headers"), "x-a, x-b");
	assert_string_equal(out_field(o, "access-control-max-age"), "10");
	assert_null(out_field(o, "access-control-expose-headers"));
	free(o);
	/* OPTIONS without Access-Control-Request-Method is not a preflight. */
	assert_int_equal(verdict(c, mkreq(&t, "OPTIONS", "origin", "https://a.example", NULL), rs),
			 ISM_CORS_ACTUAL);
	/* A refused origin's preflight goes on (FORWARD) ... */
	assert_int_equal(verdict(c,
				 mkreq(&t, "OPTIONS", "origin", "https://b.example",
				       "access-control-request-method", "GET", NULL),
				 rs),
			 ISM_CORS_PASS);
	/* ... or is answered without a field (IGNORE). */
	assert_int_equal(ism_cors_check(ign,
					mkreq(&t, "OPTIONS", "origin", "https://b.example",
					      "access-control-request-method", "GET", NULL),
					rs, &o),
			 ISM_CORS_PREFLIGHT);
	assert_int_equal(o->edits.n, 0);
	free(o);
	/* A match that holds for "*" allows every origin (Envoy); "*" methods echo
	 * the one asked. */
	assert_int_equal(ism_cors_check(star,
					mkreq(&t, "OPTIONS", "origin", "https://z.example",
					      "access-control-request-method", "PATCH", NULL),
					rs, &o),
			 ISM_CORS_PREFLIGHT);
	assert_string_equal(out_field(o, "access-control-allow-origin"), "https://z.example");
	assert_string_equal(out_field(o, "access-control-allow-methods"), "PATCH");
	assert_null(out_field(o, "access-control-allow-credentials"));
	assert_null(out_field(o, "access-control-max-age"));
	free(o);
	ism_router_scratch_free(rs);
	unload(&l);
}

/* The fields are set on a response head (by worker/actions.h, in place as
 * the stream applies them): the upstream's own of those names go. */
static void test_cors_apply(void **state)
{
	struct ism_http_header h[4] = {
	    {"Content-Type", 12, "text/plain", 10},
	    {"Access-Control-Allow-Origin", 27, "*", 1},
	    {"x-up", 4, "1", 1},
	};
	struct ism_cors_out *o;
	struct treq t;
	struct loaded l;
	struct ism_router_scratch *rs = ism_router_scratch_new();
	size_t n;

	(void)state;
	assert_int_equal(load(&l, ROUTE "    corsPolicy: {allowOrigins: [{prefix: https://}], "
					"allowCredentials: true}\n"),
			 0);
	assert_int_equal(ism_router_use_table(rs, l.t), 0);
	assert_int_equal(ism_cors_check(route(&l, 0)->cors,
					mkreq(&t, "GET", "origin", "https://a.example", NULL), rs,
					&o),
			 ISM_CORS_ACTUAL);
	n = ism_act_apply(&o->edits, h, 3, h, 4);
	assert_int_equal(n, 4);
	assert_true(ism_http_header_is(&h[0], "content-type"));
	assert_true(ism_http_header_is(&h[1], "x-up"));
	assert_true(ism_http_header_is(&h[2], "access-control-allow-origin"));
	assert_int_equal(h[2].value_len, strlen("https://a.example"));
	assert_true(ism_http_header_is(&h[3], "access-control-allow-credentials"));
	free(o);
	ism_router_scratch_free(rs);
	unload(&l);
}

/* --- fault at work --- */

/* The rolls hit the configured share: exactly over evenly spread numbers, and
 * within 0.5 point over 100,000 pseudo-random ones. */
static void test_fault_shares(void **state)
{
	const struct ism_fault f = {.delay_ms = 5,
				    .delay_ppm = 500000,
				    .abort_status = 503,
				    .abort_ppm = 250000,
				    .abort_grpc = -1};
	const struct ism_fault never = {.delay_ms = 5, .abort_status = 503, .abort_grpc = -1};
	const struct ism_fault always = {.delay_ms = 5,
					 .delay_ppm = 1000000,
					 .abort_status = 503,
					 .abort_ppm = 1000000,
					 .abort_grpc = -1};
	uint64_t x = 0x9e3779b97f4a7c15ull;
	uint32_t delayed = 0, aborted = 0;

	(void)state;
	for (uint64_t i = 0; i < 1000; i++) {
		uint32_t rnd = (uint32_t)((i << 32) / 1000);

		delayed += ism_fault_delay_ms(&f, rnd) == 5;
		aborted += ism_fault_aborts(&f, rnd);
	}
	assert_int_equal(delayed, 500);
	assert_int_equal(aborted, 250);
	assert_int_equal(ism_fault_delay_ms(&never, 0), 0);
	assert_false(ism_fault_aborts(&never, 0));
	assert_int_equal(ism_fault_delay_ms(&always, UINT32_MAX), 5);
	assert_true(ism_fault_aborts(&always, UINT32_MAX));
	delayed = aborted = 0;
	for (int i = 0; i < 100000; i++) {
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		delayed +=
		    ism_fault_delay_ms(&f, (uint32_t)((x * 0x2545F4914F6CDD1Dull) >> 32)) != 0;
		x ^= x >> 12;
		x ^= x << 25;
		x ^= x >> 27;
		aborted += ism_fault_aborts(&f, (uint32_t)((x * 0x2545F4914F6CDD1Dull) >> 32));
	}
	assert_in_range(delayed, 49500, 50500);
	assert_in_range(aborted, 24500, 25500);
}

static void test_fault_flags(void **state)
{
	char buf[32];

	(void)state;
	assert_null(ism_alog_flags(0, NULL, buf, sizeof(buf)));
	assert_string_equal(ism_alog_flags(0, "UF", buf, sizeof(buf)), "UF");
	assert_string_equal(ism_alog_flags(ISM_ALOG_DI, NULL, buf, sizeof(buf)), "DI");
	assert_string_equal(ism_alog_flags(ISM_ALOG_FI, NULL, buf, sizeof(buf)), "FI");
	assert_string_equal(ism_alog_flags(ISM_ALOG_DI | ISM_ALOG_FI, NULL, buf, sizeof(buf)),
			    "DI,FI");
	/* Envoy's order: upstream and routing codes first, downstream ones after. */
	assert_string_equal(ism_alog_flags(ISM_ALOG_DI, "UF", buf, sizeof(buf)), "UF,DI");
	assert_string_equal(ism_alog_flags(ISM_ALOG_DI, "UT", buf, sizeof(buf)), "UT,DI");
	assert_string_equal(ism_alog_flags(ISM_ALOG_DI, "DC", buf, sizeof(buf)), "DI,DC");
	assert_string_equal(ism_alog_flags(ISM_ALOG_DI | ISM_ALOG_FI, "DC", buf, sizeof(buf)),
			    "DI,FI,DC");
	/* Retries: URX after the reset's or failure's code, UO among the upstream
	 * codes, each once; a code of several (UH,DF) sorted in with them. */
	assert_string_equal(ism_alog_flags(ISM_ALOG_URX, NULL, buf, sizeof(buf)), "URX");
	assert_string_equal(ism_alog_flags(ISM_ALOG_URX, "UR", buf, sizeof(buf)), "UR,URX");
	assert_string_equal(ism_alog_flags(ISM_ALOG_URX, "UPE", buf, sizeof(buf)), "URX,UPE");
	assert_string_equal(ism_alog_flags(ISM_ALOG_UO, "UO", buf, sizeof(buf)), "UO");
	assert_string_equal(ism_alog_flags(ISM_ALOG_UO | ISM_ALOG_DI, "UF", buf, sizeof(buf)),
			    "UF,UO,DI");
	assert_string_equal(ism_alog_flags(ISM_ALOG_DI, "UH,DF", buf, sizeof(buf)), "UH,DI,DF");
	/* Cut to the buffer, never past it. */
	assert_string_equal(ism_alog_flags(ISM_ALOG_URX, "UF", buf, 4), "UF,");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_cors_compiled),
	    cmocka_unit_test(test_fault_compiled),
	    cmocka_unit_test(test_fault_without_percentage),
	    cmocka_unit_test(test_bad_input),
	    cmocka_unit_test(test_fault_conflicts),
	    cmocka_unit_test(test_cors_delegate),
	    cmocka_unit_test(test_cors_check),
	    cmocka_unit_test(test_cors_apply),
	    cmocka_unit_test(test_fault_shares),
	    cmocka_unit_test(test_fault_flags),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
