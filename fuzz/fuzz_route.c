/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer harness for what a worker does with a client's request before it
 * forwards it: parsing (worker/http1.c), path normalisation, the virtual host
 * and the route (worker/router.c, with header, query, regex, method, scheme,
 * port and authority matches), the AuthorizationPolicy (worker/authz.c), CORS,
 * the consistent-hash key, the route's path rewrite and a redirect's or
 * direct answer's Location (worker/actions.c), and the edge fields, over one
 * table (ROUTE_YAML) that has each kind. Byte 0 of the input picks the path
 * normalisation, the scheme, the client's address and whether the edge
 * fields are set; the rest is the request head. Besides memory safety (ASan,
 * UBSan) it checks that a rewritten path holds no CR, LF, space or NUL and a
 * Location no CR, LF or NUL. Found by a fuzzing review, which wrote it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/conf.h"
#include "worker/actions.h"
#include "worker/authz.h"
#include "worker/cors.h"
#include "worker/policy.h"
#include "worker/router.h"
#include "worker/worker-t.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char ROUTE_YAML[] =
    "apiVersion: isthmus.io/v1\n"
    "kind: Appliance\n"
    "metadata: {name: fz, namespace: istio-system}\n"
    "spec:\n"
    "  listenAddress: 127.0.0.1\n"
    "  locality: eu/eu-1\n"
    "  workers: 1\n"
    "  labels: {istio: ingressgateway}\n"
    "---\n"
    "apiVersion: networking.istio.io/v1\n"
    "kind: Gateway\n"
    "metadata: {name: gw}\n"
    "spec:\n"
    "  servers:\n"
    "  - port: {number: 8080, name: http, protocol: HTTP}\n"
    "    hosts: [\"*\"]\n"
    "---\n"
    "apiVersion: networking.istio.io/v1\n"
    "kind: ServiceEntry\n"
    "metadata: {name: svc}\n"
    "spec:\n"
    "  hosts: [svc.test.internal]\n"
    "  ports: [{number: 80, name: http, protocol: HTTP}]\n"
    "  resolution: STATIC\n"
    "  endpoints:\n"
    "  - {address: 127.0.0.2, ports: {http: 8081}, labels: {version: v1}}\n"
    "---\n"
    "apiVersion: networking.istio.io/v1\n"
    "kind: DestinationRule\n"
    "metadata: {name: dr}\n"
    "spec:\n"
    "  host: svc.test.internal\n"
    "  trafficPolicy:\n"
    "    loadBalancer:\n"
    "      consistentHash: {httpCookie: {name: sess, ttl: 10s, path: /}}\n"
    "  subsets:\n"
    "  - name: v1\n"
    "    labels: {version: v1}\n"
    "    trafficPolicy:\n"
    "      loadBalancer:\n"
    "        consistentHash: {httpHeaderName: x-user}\n"
    "  - name: q\n"
    "    labels: {version: v1}\n"
    "    trafficPolicy:\n"
    "      loadBalancer:\n"
    "        consistentHash: {httpQueryParameterName: user}\n"
    "---\n"
    "apiVersion: networking.istio.io/v1\n"
    "kind: VirtualService\n"
    "metadata: {name: vs}\n"
    "spec:\n"
    "  hosts: [\"*\"]\n"
    "  gateways: [gw]\n"
    "  http:\n"
    "  - match: [{uri: {prefix: /api/}, headers: {x-a: {exact: \"1\"}}}]\n"
    "    rewrite: {uri: /}\n"
    "    route: [{destination: {host: svc.test.internal, subset: v1}}]\n"
    "  - match: [{uri: {regex: \"/svc/[^/]+/.*\"}}]\n"
    "    rewrite: {uriRegexRewrite: {match: \"^/svc/([^/]+)/(.*)$\", rewrite: "
    "\"/\\\\2/\\\\1/\\\\2\\\\2\\\\2\"}}\n"
    "    route: [{destination: {host: svc.test.internal}}]\n"
    "  - match: [{uri: {prefix: /gone}}]\n"
    "    rewrite: {uriRegexRewrite: {match: \"(.)\", rewrite: \"\\\\1\\\\1\\\\1\\\\1\"}}\n"
    "    route: [{destination: {host: svc.test.internal, subset: q}}]\n"
    "  - match: [{uri: {prefix: /redir}, authority: {prefix: \"exact\"}}]\n"
    "    redirect: {uri: /new, authority: other.example, redirectCode: 308, port: 8443, scheme: "
    "https}\n"
    "  - match: [{uri: {prefix: /redir2}}]\n"
    "    redirect: {uri: \"/x?y=1\", derivePort: FROM_REQUEST_PORT}\n"
    "  - match: [{uri: {prefix: /redir3}}]\n"
    "    redirect: {authority: \"a.example\"}\n"
    "  - match: [{uri: {exact: /dr}}]\n"
    "    directResponse: {status: 301, body: {string: moved}}\n"
    "  - match: [{queryParams: {q: {regex: \"a+b\"}, r: {exact: \"\"}}}, {method: {exact: "
    "PATCH}}]\n"
    "    route: [{destination: {host: svc.test.internal}, weight: 50}, {destination: {host: "
    "svc.test.internal, subset: v1}, weight: 50}]\n"
    "  - match: [{headers: {cookie: {regex: \".*sess=(a|aa)+$\"}}}, {scheme: {exact: https}}, "
    "{port: 8080, ignoreUriCase: true, uri: {prefix: /CaSe}}]\n"
    "    route: [{destination: {host: svc.test.internal}}]\n"
    "  - match: [{headers: {x-no: {prefix: a}}, withoutHeaders: {x-b: {}}}, {uri: {prefix: /x}, "
    "withoutHeaders: {x-c: {exact: z}}}]\n"
    "    rewrite: {uri: \"/\", authority: \"backend:8080\"}\n"
    "    route: [{destination: {host: svc.test.internal}}]\n"
    "  - match: [{uri: {prefix: /cors}}]\n"
    "    corsPolicy:\n"
    "      allowOrigins: [{exact: \"https://app.example\"}, {regex: "
    "\"https://[a-z]+[.]cdn[.]example\"}, {prefix: \"http://p\"}]\n"
    "      allowMethods: [GET, POST, PUT]\n"
    "      allowHeaders: [X-Token, Content-Type]\n"
    "      exposeHeaders: [X-Upstream]\n"
    "      maxAge: 1h\n"
    "      allowCredentials: true\n"
    "    route: [{destination: {host: svc.test.internal}}]\n"
    "  - route: [{destination: {host: svc.test.internal}}]\n"
    "---\n"
    "apiVersion: security.istio.io/v1\n"
    "kind: AuthorizationPolicy\n"
    "metadata: {name: deny, namespace: istio-system}\n"
    "spec:\n"
    "  selector: {matchLabels: {istio: ingressgateway}}\n"
    "  action: DENY\n"
    "  rules:\n"
    "  - to: [{operation: {paths: [\"/admin*\", \"*/secret\", \"/a/{*}/b/{*}/c\", \"/p/{**}\"], "
    "methods: [DELETE, GET]}}]\n"
    "  - to: [{operation: {hosts: [\"evil.*\", \"*.bad.com\"], notPaths: [\"/ok\"]}}]\n"
    "  - when: [{key: \"request.headers[x-deny]\", values: [\"yes\", \"y*\"]}]\n"
    "  - from: [{source: {remoteIpBlocks: [\"10.0.0.0/8\"], notIpBlocks: [\"127.0.0.9\"]}}]\n"
    "---\n"
    "apiVersion: security.istio.io/v1\n"
    "kind: AuthorizationPolicy\n"
    "metadata: {name: allow, namespace: istio-system}\n"
    "spec:\n"
    "  selector: {matchLabels: {istio: ingressgateway}}\n"
    "  action: ALLOW\n"
    "  rules:\n"
    "  - to: [{operation: {paths: [\"/*\"], ports: [\"8080\"]}}]\n"
    "    when: [{key: \"request.headers[user-agent]\", notValues: [\"bot*\"]}]\n"
    "  - to: [{operation: {notMethods: [TRACE]}}]\n";

static const struct ism_table *table;
static struct ism_router_scratch *rs;

static int ep_id(void *ctx, enum ism_conf_slot kind, const char *key, bool has_hc, uint32_t *id)
{
	uint32_t *next = ctx;

	(void)key;
	(void)has_hc;
	*id = kind == ISM_CONF_SLOT_OUTLIER ? ISM_NO_OD_SLOT : (*next)++;
	return 0;
}

static bool no_dest(void *ctx, struct sockaddr_storage *out)
{
	(void)ctx;
	(void)out;
	return false;
}

/* The table, compiled once (held for the process). */
static void init(void)
{
	static struct ism_conf *conf;
	static struct ism_arena arena;
	static uint32_t next;
	struct ism_diags d;
	void *mem = malloc(8u << 20);

	ism_diags_init(&d);
	if (mem == NULL ||
	    ism_conf_load_buf("route.yaml", ROUTE_YAML, sizeof(ROUTE_YAML) - 1, &conf, &d) < 0)
		abort();
	ism_arena_init(&arena, mem, 8u << 20);
	if (ism_conf_compile(conf, &arena, ep_id, &next, &table, &d) < 0)
		abort();
	rs = ism_router_scratch_new();
	if (rs == NULL)
		abort();
}

static void clean(const char *what, const char *p, size_t n, bool space)
{
	if (memchr(p, '\r', n) || memchr(p, '\n', n) || memchr(p, '\0', n) ||
	    (space && memchr(p, ' ', n))) {
		fprintf(stderr, "fuzz_route: CR, LF%s or NUL in %s\n", space ? ", space" : "",
			what);
		abort();
	}
}

/* The rewritten path, and the Location of a redirect or a direct answer (as
 * worker/answer.c makes it: with a Host, or a redirect's authority). */
static void actions(const struct ism_route *r, const struct ism_http_req *req, bool https,
		    uint16_t port)
{
	static struct ism_buf path, loc;
	const struct ism_match *m = ism_router_matched(rs);
	bool redir = r->act->kind == ISM_ROUTE_REDIRECT;

	if (ism_act_rewrite_path(rs, &r->act->path, m, req->path, req->path_len, req->query,
				 req->query_len, 8192, &path) < 0)
		return;
	clean("a rewritten path", path.p, path.len, true);
	if (!((redir && (req->host != NULL || r->act->redirect.authority.len > 0)) ||
	      (r->act->kind == ISM_ROUTE_DIRECT && req->host != NULL)))
		return;
	if (ism_act_location(redir ? &r->act->redirect : NULL, port, https, req->host,
			     req->host_len, path.p, path.len, 8192, &loc) == 0)
		clean("a Location", loc.p, loc.len, false);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ism_http_header hdrs[64];
	static struct ism_buf pairs;
	struct ism_http_limits lim = {
	    .max_head_bytes = 8192, .max_headers = 64, .max_uri_bytes = 4096};
	struct ism_http_req req = {.headers = hdrs};
	const struct ism_listener *l;
	const struct ism_vhost *vh;
	const struct ism_route *r;
	const struct ism_az_policy *rule;
	struct ism_az_in in;
	uint8_t fl;
	bool https;
	char *buf;

	if (table == NULL)
		init();
	if (size < 1)
		return 0;
	fl = data[0];
	https = fl & 4;
	buf = malloc(size);
	if (buf == NULL)
		return 0;
	memcpy(buf, data + 1, size - 1);
	if (ism_http_parse_request(buf, size - 1, &lim, &req) <= 0)
		goto out;
	if (fl & 0x10) {
		req.edge_xfp = (fl & 0x20) ? "https" : "http";
		req.edge_peer = "127.0.0.1";
		req.edge_rid = "rid";
	}
	if (ism_router_normalize(rs, fl & 3, &req) < 0)
		goto out;
	l = &table->listeners[0];
	vh = ism_router_vhost(l->vhosts, l->n_vhosts, &l->vhost_index, req.host ? req.host : "",
			      req.host ? req.host_len : 0);
	in = (struct ism_az_in){.req = &req,
				.peer = "127.0.0.1",
				.client = (fl & 8) ? "10.1.2.3" : "127.0.0.9",
				.dest = no_dest,
				.rs = rs};
	(void)ism_authz_check(&table->authz, &in, &rule);
	if (vh == NULL ||
	    (r = ism_router_route(vh, &req, https ? "https" : "http", l->port, rs)) == NULL)
		goto out;
	if (r->cors) {
		struct ism_cors_out *co = NULL;

		if (ism_cors_check(r->cors, &req, rs, &co) >= 0)
			free(co);
	}
	for (uint32_t i = 0; i < r->n_dest; i++) {
		const struct ism_cluster *cl = &table->clusters[r->dest[i].cluster];
		uint64_t h;

		if (cl->lb == ISM_LB_RING_HASH || cl->lb == ISM_LB_MAGLEV)
			(void)ism_hash_key(&cl->hash, &req, "127.0.0.1", rs, &h);
	}
	if (r->act)
		actions(r, &req, https, l->port);
	pairs.len = 0;
	(void)ism_router_edge_pairs(&req, rs, &pairs);
out:
	free(buf);
	return 0;
}
