/* SPDX-License-Identifier: Apache-2.0 */
/* Tunnels in the appliance file: Gateway TCP and TLS passthrough servers,
 * VirtualService tcp and tls routes compiled into the listeners' and servers'
 * ism_l4route entries (shm/table-t.h), validated with positions (one error
 * per mistake), and Istio's own samples that use them. */
#include <arpa/inet.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "check.h"
#include "conf/conf.h"
#include "loaded.h"
#include "worker/router.h"

#define APP                                                                                        \
	"apiVersion: isthmus.io/v1\nkind: Appliance\nmetadata: {name: t}\nspec:\n"                 \
	"  locality: r/z\n"

/* The services the samples name, as ServiceEntries (Istio has them from
 * Kubernetes): tcp-echo (samples/tcp-echo/tcp-echo-services.yaml: port 9000
 * "tcp", versions v1 and v2) and my-nginx (the SNI passthrough task). */
#define SERVICES                                                                                   \
	"---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: "           \
	"tcp-echo}\n"                                                                              \
	"spec:\n  hosts: [tcp-echo]\n"                                                             \
	"  ports: [{number: 9000, name: tcp, protocol: TCP}, {number: 9001, name: tcp-other}]\n"   \
	"  resolution: STATIC\n  endpoints:\n"                                                     \
	"  - {address: 127.0.0.1, labels: {version: v1}}\n"                                        \
	"  - {address: 127.0.0.2, labels: {version: v2}}\n"                                        \
	"---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: nginx}\n"   \
	"spec:\n  hosts: [my-nginx]\n  ports: [{number: 443, name: tls, protocol: TLS}]\n"         \
	"  resolution: STATIC\n  endpoints: [{address: 127.0.0.3}]\n"

/* Loads APP + SERVICES + the Istio sample file (make unit runs from the
 * repository's root), which must load. */
static void load_sample(struct loaded *l, const char *name)
{
	char path[256];
	char *sample, *text;
	size_t len;

	snprintf(path, sizeof(path), "tests/fixtures/istio-samples/%s", name);
	sample = loaded_read_file(path);
	if (sample == NULL)
		fail_msg("cannot read %s", path);
	len = strlen(APP SERVICES) + strlen(sample) + 8;
	text = malloc(len);
	assert_non_null(text);
	snprintf(text, len, "%s---\n%s", APP SERVICES, sample);
	if (loaded_load(l, name, text) != 0)
		ism_diags_print(stderr, &l->d);
	assert_int_equal(l->d.n_errors, 0);
	assert_non_null(l->t);
	free(text);
	free(sample);
}

/* Loads APP + SERVICES + text; the load's rc (compiled when it loads). */
static int load(struct loaded *l, const char *text)
{
	size_t len = strlen(APP SERVICES) + strlen(text) + 1;
	char *all = malloc(len);
	int rc;

	assert_non_null(all);
	snprintf(all, len, "%s%s", APP SERVICES, text);
	rc = loaded_load(l, "t.yaml", all);
	free(all);
	return rc;
}

static const struct ism_listener *listener(const struct ism_table *t, uint16_t port)
{
	for (uint32_t i = 0; i < t->n_listeners; i++)
		if (t->listeners[i].port == port)
			return &t->listeners[i];
	fail_msg("no listener on port %u", port);
	return NULL;
}

static const char *cluster_of(const struct ism_table *t, const struct ism_l4route *r, uint32_t d)
{
	assert_true(d < r->n_dest);
	return t->clusters[r->dest[d].cluster].name.p;
}

static bool has_diag(const struct ism_diags *d, int sev, const char *field, const char *msg)
{
	for (size_t i = 0; i < d->n && i < 64; i++)
		if ((int)d->items[i].severity == sev && strstr(d->items[i].field, field) != NULL &&
		    strstr(d->items[i].msg, msg) != NULL)
			return true;
	ism_diags_print(stderr, d);
	return false;
}

/* --- Istio's samples --- */

/* samples/tcp-echo/tcp-echo-all-v1.yaml: a TCP server on 31400 and a tcp route
 * to subset v1, as Istio's TCP traffic shifting task applies it. */
static void test_sample_tcp_echo(void **state)
{
	const struct ism_listener *li;
	const struct ism_l4route *r;
	const struct ism_cluster *cl;
	struct loaded l;

	(void)state;
	load_sample(&l, "tcp-echo-all-v1.yaml");
	assert_int_equal(l.t->n_listeners, 1);
	li = listener(l.t, 31400);
	assert_string_equal(li->name.p, "tcp");
	assert_int_equal(li->tcp, 1);
	assert_int_equal(li->n_vhosts, 0);
	assert_int_equal(li->n_tls, 0);
	assert_int_equal(li->h2c, 0);
	assert_int_equal(li->n_tcp, 1);
	r = &li->tcp_routes[0];
	assert_string_equal(r->name.p, "default/tcp-echo#tcp0");
	assert_int_equal(r->n_sni, 0);
	assert_int_equal(r->n_subnets, 0);
	assert_int_equal(r->n_dest, 1);
	assert_int_equal(r->total_weight, 100);
	assert_non_null(r->stats);
	assert_null(r->dest[0].act);
	assert_string_equal(cluster_of(l.t, r, 0),
			    "outbound|9000|v1|tcp-echo.default.svc.cluster.local");
	cl = &l.t->clusters[r->dest[0].cluster];
	assert_int_equal(cl->n_endpoints, 1);
	assert_string_equal(cl->endpoints[0].addr_text.p, "127.0.0.1:9000");
	/* connectionPool.tcp's defaults: Istio's 1 h idle timeout for tunnels. */
	assert_int_equal(cl->tcp_idle_ms, 3600000);
	assert_int_equal(cl->tcp_max_duration_ms, 0);
	assert_int_equal(cl->keepalive, 0);
	loaded_free(&l);
}

/* Istio's "Ingress Gateway without TLS Termination" task: an HTTPS server with
 * tls.mode PASSTHROUGH and a tls route by SNI to my-nginx:443. */
static void test_sample_sni_passthrough(void **state)
{
	const struct ism_listener *li;
	const struct ism_tls_server *ts;
	struct loaded l;

	(void)state;
	load_sample(&l, "ingress-sni-passthrough.yaml");
	li = listener(l.t, 443);
	assert_int_equal(li->tcp, 0);
	assert_int_equal(li->n_vhosts, 0);
	assert_int_equal(li->n_tls, 1);
	ts = &li->tls[0];
	assert_string_equal(ts->name.p, "default/mygateway#0");
	assert_int_equal(ts->passthrough, 1);
	assert_int_equal(ts->tls.mode, ISM_TLS_NONE);
	assert_int_equal(ts->tls.n_certs, 0);
	assert_int_equal(ts->n_vhosts, 0);
	assert_int_equal(ts->n_sni, 1);
	assert_string_equal(ts->sni[0].p, "nginx.example.com");
	assert_int_equal(ts->n_l4, 1);
	assert_string_equal(ts->l4[0].name.p, "default/nginx#tls0");
	assert_int_equal(ts->l4[0].n_sni, 1);
	assert_string_equal(ts->l4[0].sni[0].p, "nginx.example.com");
	assert_string_equal(cluster_of(l.t, &ts->l4[0], 0),
			    "outbound|443||my-nginx.default.svc.cluster.local");
	assert_int_equal(ism_router_pick_server(li, "nginx.example.com"), 0);
	assert_int_equal(ism_router_pick_server(li, "other.example.com"), -1);
	assert_int_equal(l.d.n, 0);
	loaded_free(&l);
}

/* --- tcp routes --- */

#define TCP_GW                                                                                     \
	"---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n"    \
	"  servers:\n  - port: {number: 31400, name: tcp, protocol: TCP}\n    hosts: [\"*\"]\n"    \
	"  - port: {number: 31401, name: mongo, protocol: MONGO}\n    hosts: [\"*\"]\n"            \
	"---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: other}\n"        \
	"spec:\n  servers:\n  - port: {number: 31402, name: tcp, protocol: TCP}\n"                 \
	"    hosts: [\"*\"]\n"
#define VS_HEAD                                                                                    \
	"---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\n"    \
	"spec:\n  hosts: [\"*\"]\n  gateways: [gw, other]\n"
/* After TLS_GW: one gateway. */
#define VS_GW                                                                                      \
	"---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\n"    \
	"spec:\n  hosts: [\"*\"]\n  gateways: [gw]\n"

/* Routes in order, each match an entry, the matches of other ports and
 * gateways left out; subnets masked to their prefix; a route without match
 * takes the rest. */
static void test_tcp_routes(void **state)
{
	const struct ism_listener *li;
	const struct ism_l4route *e;
	struct loaded l;
	char a[64];

	(void)state;
	assert_int_equal(
	    load(&l, TCP_GW VS_HEAD
		 "  tcp:\n"
		 "  - match:\n"
		 "    - {port: 31401}\n"
		 "    - {port: 31400, destinationSubnets: [10.1.2.3/8, \"192.0.2.7\", "
		 "\"2001:db8::ff/32\"]}\n"
		 "    - {port: 31402, gateways: [other]}\n"
		 "    route: [{destination: {host: tcp-echo, port: {number: 9000}, subset: v1}}]\n"
		 "  - match: [{gateways: [other]}]\n"
		 "    route:\n"
		 "    - {destination: {host: tcp-echo, port: {number: 9001}}, weight: 3}\n"
		 "    - {destination: {host: tcp-echo, port: {number: 9000}}, weight: 1}\n"
		 "  - route: [{destination: {host: tcp-echo, port: {number: 9000}, subset: v2}}]\n"
		 "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
		 "metadata: {name: d}\nspec:\n  host: tcp-echo\n"
		 "  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: "
		 "v2}}]\n"),
	    0);
	assert_int_equal(l.d.n, 0);
	/* 31400 (gw): match[1] of route 0, then route 2. */
	li = listener(l.t, 31400);
	assert_int_equal(li->tcp, 1);
	assert_int_equal(li->n_tcp, 2);
	e = &li->tcp_routes[0];
	assert_string_equal(e->name.p, "default/vs#tcp0");
	assert_int_equal(e->n_subnets, 3);
	assert_int_equal(e->subnets[0].family, AF_INET);
	assert_int_equal(e->subnets[0].prefix, 8);
	assert_string_equal(inet_ntop(AF_INET, e->subnets[0].addr, a, sizeof(a)), "10.0.0.0");
	assert_int_equal(e->subnets[1].prefix, 32);
	assert_string_equal(inet_ntop(AF_INET, e->subnets[1].addr, a, sizeof(a)), "192.0.2.7");
	assert_int_equal(e->subnets[2].family, AF_INET6);
	assert_int_equal(e->subnets[2].prefix, 32);
	assert_string_equal(inet_ntop(AF_INET6, e->subnets[2].addr, a, sizeof(a)), "2001:db8::");
	assert_string_equal(li->tcp_routes[1].name.p, "default/vs#tcp2");
	assert_int_equal(li->tcp_routes[1].n_subnets, 0);
	assert_string_equal(cluster_of(l.t, &li->tcp_routes[1], 0),
			    "outbound|9000|v2|tcp-echo.default.svc.cluster.local");
	/* A MONGO server is a TCP listener: match[0] (its port), then route 2. */
	li = listener(l.t, 31401);
	assert_int_equal(li->tcp, 1);
	assert_int_equal(li->n_tcp, 2);
	assert_int_equal(li->tcp_routes[0].n_subnets, 0);
	assert_ptr_equal(li->tcp_routes[0].stats, listener(l.t, 31400)->tcp_routes[0].stats);
	/* 31402 (other): match[2] of route 0, route 1 (its weights), route 2. */
	li = listener(l.t, 31402);
	assert_int_equal(li->n_tcp, 3);
	assert_string_equal(li->tcp_routes[1].name.p, "default/vs#tcp1");
	assert_int_equal(li->tcp_routes[1].n_dest, 2);
	assert_int_equal(li->tcp_routes[1].total_weight, 4);
	assert_string_equal(cluster_of(l.t, &li->tcp_routes[1], 0),
			    "outbound|9001||tcp-echo.default.svc.cluster.local");
	/* The same route's counters, on every listener and match. */
	assert_ptr_equal(li->tcp_routes[2].stats, listener(l.t, 31400)->tcp_routes[1].stats);
	assert_ptr_not_equal(li->tcp_routes[0].stats, li->tcp_routes[1].stats);
	loaded_free(&l);
}

/* A TCP server no route applies to: loaded, with a warning (its connections
 * are closed); a VirtualService of tcp routes only makes no virtual host. */
static void test_tcp_without_route(void **state)
{
	struct loaded l;

	(void)state;
	assert_int_equal(load(&l, TCP_GW VS_HEAD
			      "  tcp:\n  - match: [{port: 31401}]\n"
			      "    route: [{destination: {host: tcp-echo, port: {number: "
			      "9000}}}]\n"),
			 0);
	assert_int_equal(listener(l.t, 31400)->n_tcp, 0);
	assert_true(has_diag(&l.d, ISM_DIAG_WARNING, "Gateway default/gw: spec.servers[0]",
			     "no tcp route of a VirtualService bound to it applies on port 31400"));
	assert_int_equal(listener(l.t, 31401)->n_tcp, 1);
	loaded_free(&l);
	/* tls routes where no passthrough server binds them: said. */
	assert_int_equal(load(&l, TCP_GW VS_HEAD "  tls:\n  - match: [{sniHosts: [a.b]}]\n"
						 "    route: [{destination: {host: my-nginx}}]\n"),
			 0);
	assert_true(has_diag(&l.d, ISM_DIAG_WARNING, "VirtualService default/vs: spec.tls",
			     "no TLS passthrough server of its gateways binds its hosts"));
	loaded_free(&l);
}

/* --- tls routes --- */

#define TLS_GW                                                                                     \
	"---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n"    \
	"  servers:\n  - port: {number: 443, name: tls, protocol: TLS}\n"                          \
	"    hosts: [\"*.example.com\"]\n    tls: {mode: PASSTHROUGH}\n"                           \
	"  - port: {number: 443, name: tls2, protocol: TLS}\n"                                     \
	"    hosts: [\"*.example.org\"]\n    tls: {}\n"                                            \
	"  - port: {number: 8443, name: tls3, protocol: TLS}\n"                                    \
	"    hosts: [\"*\"]\n    tls: {mode: PASSTHROUGH}\n"

/* Each SNI host of a match an entry, the most specific first (Envoy picks a
 * filter chain so), ties in Istio's order; a passthrough server's names are
 * its routes' SNI hosts; matches of another port are left out, and a match
 * whose SNI host an earlier one took is left out with a warning. */
static void test_tls_routes(void **state)
{
	const struct ism_listener *li;
	const struct ism_tls_server *ts;
	struct loaded l;

	(void)state;
	assert_int_equal(
	    load(&l, TLS_GW
		 "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n"
		 "metadata: {name: a}\nspec:\n  hosts: [\"*.example.com\"]\n  gateways: [gw]\n"
		 "  tls:\n"
		 "  - match:\n"
		 "    - {sniHosts: [\"*.example.com\"]}\n"
		 "    - {port: 8443, sniHosts: [x.example.com]}\n"
		 "    route: [{destination: {host: my-nginx}}]\n"
		 "  - match: [{sniHosts: [a.example.com, \"*.b.example.com\", A.Example.com], "
		 "destinationSubnets: [127.0.0.0/8]}]\n"
		 "    route:\n"
		 "    - {destination: {host: my-nginx}, weight: 25}\n"
		 "    - {destination: {host: tcp-echo, port: {number: 9000}}, weight: 75}\n"
		 "  - match: [{sniHosts: [a.example.com]}]\n"
		 "    route: [{destination: {host: my-nginx}}]\n"
		 "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n"
		 "metadata: {name: b}\nspec:\n  hosts: [\"*.example.org\"]\n  gateways: [gw]\n"
		 "  tls:\n  - match: [{sniHosts: [\"*.example.org\"]}]\n"
		 "    route: [{destination: {host: my-nginx}}]\n"),
	    0);
	assert_true(has_diag(&l.d, ISM_DIAG_WARNING,
			     "VirtualService default/a: spec.tls[2].match[0].sniHosts[0]",
			     "SNI host \"a.example.com\" is taken by an earlier tls match"));
	li = listener(l.t, 443);
	assert_int_equal(li->n_tls, 2);
	ts = &li->tls[0];
	assert_int_equal(ts->passthrough, 1);
	/* Istio's order: *.example.com; a.example.com, *.b.example.com. */
	assert_int_equal(ts->n_l4, 3);
	assert_string_equal(ts->l4[0].sni[0].p, "a.example.com");
	assert_string_equal(ts->l4[0].name.p, "default/a#tls1");
	assert_int_equal(ts->l4[0].n_subnets, 1);
	assert_int_equal(ts->l4[0].n_dest, 2);
	assert_int_equal(ts->l4[0].total_weight, 100);
	assert_string_equal(ts->l4[1].sni[0].p, "*.b.example.com");
	assert_ptr_equal(ts->l4[1].stats, ts->l4[0].stats);
	assert_string_equal(ts->l4[2].sni[0].p, "*.example.com");
	assert_string_equal(ts->l4[2].name.p, "default/a#tls0");
	assert_int_equal(ts->l4[2].n_subnets, 0);
	assert_int_equal(ts->n_sni, 3);
	assert_string_equal(ts->sni[0].p, "a.example.com");
	/* The second server (tls: {}, Istio's default mode) binds b only. */
	assert_int_equal(li->tls[1].passthrough, 1);
	assert_int_equal(li->tls[1].n_l4, 1);
	assert_string_equal(li->tls[1].l4[0].sni[0].p, "*.example.org");
	assert_int_equal(ism_router_pick_server(li, "a.example.com"), 0);
	assert_int_equal(ism_router_pick_server(li, "z.example.org"), 1);
	/* 8443: x.example.com (its port) first, then the others. */
	li = listener(l.t, 8443);
	ts = &li->tls[0];
	assert_int_equal(ts->n_l4, 5);
	assert_string_equal(ts->l4[0].sni[0].p, "x.example.com");
	assert_string_equal(ts->l4[1].sni[0].p, "a.example.com");
	assert_string_equal(ts->l4[3].sni[0].p, "*.example.com");
	assert_string_equal(ts->l4[4].sni[0].p, "*.example.org");
	loaded_free(&l);
}

/* A VirtualService bound to two passthrough servers of one port: its matches
 * are taken through the first (Envoy would have one filter chain per SNI
 * host), without a warning, and the SNI finds them there. */
static void test_tls_two_servers(void **state)
{
	const struct ism_listener *li;
	struct loaded l;

	(void)state;
	assert_int_equal(load(&l, TLS_GW VS_GW "  tls:\n"
					       "  - match: [{sniHosts: [a.example.com, "
					       "\"*.example.org\"]}]\n"
					       "    route: [{destination: {host: my-nginx}}]\n"),
			 0);
	assert_int_equal(l.d.n, 0);
	li = listener(l.t, 443);
	assert_int_equal(li->tls[0].n_l4, 2);
	assert_int_equal(li->tls[1].n_l4, 0);
	assert_int_equal(ism_router_pick_server(li, "x.example.org"), 0);
	assert_ptr_equal(ism_router_l4(li->tls[0].l4, li->tls[0].n_l4, "x.example.org", NULL),
			 &li->tls[0].l4[1]);
	loaded_free(&l);
}

/* --- connectionPool.tcp --- */

/* A tcp route to my-nginx, whose DestinationRule's connectionPool.tcp is
 * pool. */
#define MY_NGINX_TCP(pool)                                                                         \
	TCP_GW VS_HEAD "  tcp:\n  - route: [{destination: {host: my-nginx}}]\n"                    \
		       "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n"          \
		       "metadata: {name: d}\nspec:\n  host: my-nginx\n"                            \
		       "  trafficPolicy: {connectionPool: {tcp: " pool "}}\n"

/* idleTimeout, maxConnectionDuration and tcpKeepalive per cluster, merged as
 * every connectionPool field is: a portLevelSettings entry replaces the
 * rule's block whole, a subset's block replaces the inherited one; Istio's
 * defaults where the block does not say (a tunnel idle for 1 h closes). */
static void test_tcp_pool(void **state)
{
	const struct ism_cluster *cl;
	struct loaded l;

	(void)state;
	assert_int_equal(load(&l, TCP_GW VS_HEAD
			      "  tcp:\n  - match: [{port: 31400}]\n"
			      "    route: [{destination: {host: tcp-echo, port: {number: 9000}}}]\n"
			      "  - match: [{port: 31401}]\n"
			      "    route: [{destination: {host: tcp-echo, port: {number: 9001}}}]\n"
			      "  - route: [{destination: {host: tcp-echo, port: {number: 9000}, "
			      "subset: v2}}]\n"
			      "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
			      "metadata: {name: d}\nspec:\n  host: tcp-echo\n  trafficPolicy:\n"
			      "    connectionPool:\n      tcp:\n"
			      "        idleTimeout: 10m\n        maxConnectionDuration: 1h\n"
			      "        tcpKeepalive: {probes: 3, time: 600s, interval: 75.5s}\n"
			      "    portLevelSettings:\n"
			      "    - port: {number: 9001}\n"
			      "      connectionPool: {tcp: {idleTimeout: 0s}}\n"
			      "  subsets:\n  - name: v2\n    labels: {version: v2}\n"
			      "    trafficPolicy: {connectionPool: {http: {idleTimeout: 5s}}}\n"),
			 0);
	assert_int_equal(l.d.n_errors, 0);
	cl = loaded_cluster(l.t, "outbound|9000||tcp-echo.default.svc.cluster.local");
	assert_int_equal(cl->tcp_idle_ms, 600000);
	assert_int_equal(cl->tcp_max_duration_ms, 3600000);
	assert_int_equal(cl->keepalive, 1);
	assert_int_equal(cl->keepalive_probes, 3);
	assert_int_equal(cl->keepalive_time_s, 600);
	assert_int_equal(cl->keepalive_interval_s, 75); /* whole seconds, as Istio */
	/* Istio: without http.idleTimeout, tcp.idleTimeout is the HTTP pool's. */
	assert_int_equal(cl->idle_timeout_ms, 600000);
	/* Port 9001: its own block, 0s (no idle timeout), no keepalive. */
	cl = loaded_cluster(l.t, "outbound|9001||tcp-echo.default.svc.cluster.local");
	assert_int_equal(cl->tcp_idle_ms, 0);
	assert_int_equal(cl->tcp_max_duration_ms, 0);
	assert_int_equal(cl->keepalive, 0);
	assert_int_equal(cl->idle_timeout_ms, 3600000); /* the default hour */
	/* Subset v2: its pool block, without tcp: the defaults. */
	cl = loaded_cluster(l.t, "outbound|9000|v2|tcp-echo.default.svc.cluster.local");
	assert_int_equal(cl->tcp_idle_ms, 3600000);
	assert_int_equal(cl->tcp_max_duration_ms, 0);
	assert_int_equal(cl->keepalive, 0);
	assert_int_equal(cl->idle_timeout_ms, 5000);
	/* An empty tcpKeepalive: SO_KEEPALIVE with the system's values. */
	loaded_free(&l);
	assert_int_equal(load(&l, MY_NGINX_TCP("{tcpKeepalive: {}}")), 0);
	cl = loaded_cluster(l.t, "outbound|443||my-nginx.default.svc.cluster.local");
	assert_int_equal(cl->keepalive, 1);
	assert_int_equal(cl->keepalive_probes, 0);
	assert_int_equal(cl->keepalive_time_s, 0);
	assert_int_equal(cl->keepalive_interval_s, 0);
	assert_int_equal(cl->tcp_idle_ms, 3600000);
	loaded_free(&l);
	/* An idleTimeout under 1 ms, which Istio's validation lets through: no
	 * idle timeout, as 0s, since Envoy takes its milliseconds (0); it was
	 * rounded up to 1 ms, closing every quiet tunnel at the next tick. */
	assert_int_equal(load(&l, MY_NGINX_TCP("{idleTimeout: 500us}")), 0);
	cl = loaded_cluster(l.t, "outbound|443||my-nginx.default.svc.cluster.local");
	assert_int_equal(cl->tcp_idle_ms, 0);
	loaded_free(&l);
}

/* --- mistakes --- */

/* One error per mistake, at its place. APP and SERVICES are lines 1-25: the
 * text starts at line 26. */
static void test_errors(void **state)
{
	static const struct {
		const char *text;
		int line, col;
		const char *field, *msg;
	} cases[] = {
	    {"---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec:\n"
	     "  servers:\n  - port: {number: 443, name: t, protocol: TLS}\n    hosts: [\"*\"]\n"
	     "    tls: {mode: AUTO_PASSTHROUGH}\n",
	     34, 17, "Gateway default/g: spec.servers[0].tls.mode",
	     "AUTO_PASSTHROUGH is the mode of an east-west gateway"},
	    {"---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec:\n"
	     "  servers:\n  - port: {number: 443, name: t, protocol: TLS}\n    hosts: [\"*\"]\n",
	     32, 5, "Gateway default/g: spec.servers[0]", "a TLS server needs tls"},
	    {"---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec:\n"
	     "  servers:\n  - port: {number: 9000, name: t, protocol: TCP}\n    hosts: [\"*\"]\n"
	     "    tls: {httpsRedirect: true}\n",
	     34, 10, "Gateway default/g: spec.servers[0].tls", "a TCP server has no tls"},
	    {"---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec:\n"
	     "  servers:\n  - port: {number: 80, name: t, protocol: UDP}\n    hosts: [\"*\"]\n",
	     32, 43, "Gateway default/g: spec.servers[0].port.protocol",
	     "UDP is not implemented yet"},
	    {"---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec:\n"
	     "  servers:\n  - port: {number: 9000, name: t, protocol: TCP}\n    hosts: [\"*\"]\n"
	     "  - port: {number: 9000, name: h, protocol: HTTP}\n    hosts: [\"*\"]\n",
	     34, 45, "Gateway default/g: spec.servers[1].port.protocol",
	     "port 9000: this HTTP server cannot share it with the TCP server at line 32"},
	    {"---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec:\n"
	     "  servers:\n  - port: {number: 9000, name: t, protocol: TCP}\n    hosts: [\"*\"]\n"
	     "  - port: {number: 9000, name: u, protocol: tcp}\n    hosts: [a.b]\n",
	     34, 45, "Gateway default/g: spec.servers[1].port.protocol",
	     "port 9000: this TCP server cannot share it with the TCP server at line 32"},
	    {"---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec:\n"
	     "  servers:\n  - port: {number: 9000, name: t, protocol: TLS}\n    hosts: [\"*\"]\n"
	     "    tls: {mode: PASSTHROUGH}\n"
	     "  - port: {number: 9000, name: h, protocol: HTTP}\n    hosts: [\"*\"]\n",
	     35, 45, "Gateway default/g: spec.servers[1].port.protocol",
	     "cannot share it with the TLS passthrough server at line 32"},
	    {TLS_GW "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n"
		    "metadata: {name: vs}\nspec:\n  hosts: [a.example.com]\n  gateways: [gw]\n"
		    "  tls:\n  - match: [{sniHosts: [a.example.net]}]\n"
		    "    route: [{destination: {host: my-nginx}}]\n",
	     49, 25, "VirtualService default/vs: spec.tls[0].match[0].sniHosts[0]",
	     "SNI host \"a.example.net\" is not within any of the VirtualService's hosts"},
	    {TLS_GW VS_GW "  tls:\n  - match: [{port: 443}]\n"
			  "    route: [{destination: {host: my-nginx}}]\n",
	     49, 13, "VirtualService default/vs: spec.tls[0].match[0].sniHosts",
	     "required field missing"},
	    {TLS_GW VS_GW "  tls:\n  - match: [{sniHosts: []}]\n"
			  "    route: [{destination: {host: my-nginx}}]\n",
	     49, 24, "VirtualService default/vs: spec.tls[0].match[0].sniHosts",
	     "must not be empty"},
	    {TLS_GW VS_GW "  tls:\n  - route: [{destination: {host: my-nginx}}]\n", 49, 5,
	     "VirtualService default/vs: spec.tls[0].match", "required field missing"},
	    {TLS_GW VS_GW "  tls:\n  - match: [{sniHosts: [\"a..b\"]}]\n"
			  "    route: [{destination: {host: my-nginx}}]\n",
	     49, 25, "VirtualService default/vs: spec.tls[0].match[0].sniHosts[0]",
	     "invalid SNI host \"a..b\""},
	    {TCP_GW VS_HEAD "  tcp:\n  - match: [{destinationSubnets: [10.0.0.0/33]}]\n"
			    "    route: [{destination: {host: my-nginx}}]\n",
	     52, 35, "VirtualService default/vs: spec.tcp[0].match[0].destinationSubnets[0]",
	     "\"10.0.0.0/33\" is not an IP address or a CIDR block"},
	    {TCP_GW VS_HEAD "  tcp:\n  - match: [{destinationSubnets: [\"::1/08\"]}]\n"
			    "    route: [{destination: {host: my-nginx}}]\n",
	     52, 35, "VirtualService default/vs: spec.tcp[0].match[0].destinationSubnets[0]",
	     "is not an IP address or a CIDR block"},
	    {TCP_GW VS_HEAD "  tcp:\n  - match: [{port: 31400, sniHosts: [a]}]\n"
			    "    route: [{destination: {host: my-nginx}}]\n",
	     52, 27, "VirtualService default/vs: spec.tcp[0].match[0].sniHosts", "unknown field"},
	    {TCP_GW VS_HEAD "  tcp:\n  - match: [{port: 31400}]\n", 52, 5,
	     "VirtualService default/vs: spec.tcp[0].route", "required field missing"},
	    {TCP_GW VS_HEAD "  tcp:\n  - route: [{destination: {host: my-nginx}, weight: -1}]\n",
	     52, 53, "VirtualService default/vs: spec.tcp[0].route[0].weight",
	     "must be an integer between 0 and 2147483647"},
	    {TCP_GW VS_HEAD "  tcp:\n  - route: [{destination: {host: my-nginx}, headers: {}}]\n",
	     52, 45, "VirtualService default/vs: spec.tcp[0].route[0].headers", "unknown field"},
	    {TCP_GW VS_HEAD "  tcp:\n  - route: [{destination: {host: my-nginx, subset: v9}}]\n",
	     52, 52, "VirtualService default/vs: spec.tcp[0].route[0].destination.subset",
	     "unknown subset \"v9\""},
	    {TCP_GW
	     "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: d}\n"
	     "spec:\n  tcp:\n  - route: [{destination: {host: my-nginx}}]\n",
	     49, 3, "VirtualService default/d: spec.tcp",
	     "a VirtualService without hosts is a delegate and has no tcp routes"},
	    {TCP_GW VS_HEAD, 49, 3, "VirtualService default/vs: spec.http",
	     "required field missing: a VirtualService has http, tcp or tls routes"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct ism_diag *e = NULL;
		struct loaded l;

		CHECK(cases[i].field, load(&l, cases[i].text) < 0, "loaded");
		for (size_t j = 0; j < l.d.n && j < 64; j++)
			if (l.d.items[j].severity == ISM_DIAG_ERROR)
				e = &l.d.items[j];
		if (l.d.n_errors != 1 || e == NULL)
			ism_diags_print(stderr, &l.d);
		CHECK(cases[i].field, l.d.n_errors == 1 && e != NULL, "%zu errors", l.d.n_errors);
		CHECK(cases[i].field, strcmp(e->field, cases[i].field) == 0, "field %s", e->field);
		CHECK(cases[i].field, strstr(e->msg, cases[i].msg) != NULL, "message %s", e->msg);
		CHECK(cases[i].field, e->line == cases[i].line && e->col == cases[i].col,
		      "at %d:%d, want %d:%d", e->line, e->col, cases[i].line, cases[i].col);
		loaded_free(&l);
	}
}

/* What has no effect is said, and the file loads: certificates of a
 * passthrough server (Istio warns the same), handshake settings, an IP as SNI
 * host (Istio warns), sourceSubnet (which Istio does not use). */
static void test_warnings(void **state)
{
	struct loaded l;

	(void)state;
	assert_int_equal(
	    load(&l,
		 "---\napiVersion: networking.istio.io/v1\nkind: Gateway\n"
		 "metadata: {name: other}\nspec:\n  servers: [{port: {number: 80, name: http-80, "
		 "protocol: HTTP}, hosts: "
		 "[\"*\"]}]\n"
		 "---\napiVersion: networking.istio.io/v1\nkind: Gateway\n"
		 "metadata: {name: gw}\nspec:\n  servers:\n"
		 "  - port: {number: 443, name: a, protocol: HTTPS}\n    hosts: [\"*\"]\n"
		 "    tls: {mode: PASSTHROUGH, credentialName: c, minProtocolVersion: TLSV1_3}\n"
		 "  - port: {number: 444, name: b, protocol: TLS}\n    hosts: [\"*\"]\n"
		 "    tls: {serverCertificate: /nonexistent.crt}\n"
		 "  - port: {number: 9000, name: c, protocol: TCP}\n    hosts: [\"*\"]\n" VS_HEAD
		 "  tls:\n  - match: [{sniHosts: [192.0.2.1]}]\n"
		 "    route: [{destination: {host: my-nginx}}]\n"
		 "  tcp:\n  - match: [{sourceSubnet: 10.0.0.0/8}]\n"
		 "    route: [{destination: {host: my-nginx}}]\n"),
	    0);
	assert_int_equal(l.d.n_errors, 0);
	assert_true(has_diag(&l.d, ISM_DIAG_WARNING, "spec.servers[0].tls.credentialName",
			     "PASSTHROUGH mode does not use certificates"));
	assert_true(has_diag(&l.d, ISM_DIAG_WARNING, "spec.servers[0].tls.minProtocolVersion",
			     "has no effect: TLS is not terminated here"));
	assert_true(has_diag(&l.d, ISM_DIAG_WARNING, "spec.servers[1].tls.serverCertificate",
			     "Istio's default mode, PASSTHROUGH, does not terminate TLS"));
	assert_true(has_diag(&l.d, ISM_DIAG_WARNING, "spec.tls[0].match[0].sniHosts[0]",
			     "goes against the SNI specification"));
	assert_true(has_diag(&l.d, ISM_DIAG_WARNING, "spec.tcp[0].match[0].sourceSubnet",
			     "Istio does not use it either"));
	assert_int_equal(listener(l.t, 443)->tls[0].n_l4, 1);
	assert_int_equal(listener(l.t, 444)->tls[0].n_l4, 1);
	assert_int_equal(listener(l.t, 9000)->n_tcp, 1);
	loaded_free(&l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_sample_tcp_echo), cmocka_unit_test(test_sample_sni_passthrough),
	    cmocka_unit_test(test_tcp_routes),	    cmocka_unit_test(test_tcp_without_route),
	    cmocka_unit_test(test_tls_routes),	    cmocka_unit_test(test_tls_two_servers),
	    cmocka_unit_test(test_tcp_pool),	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_warnings),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
