/* SPDX-License-Identifier: Apache-2.0 */
/* `explain tcp` and `explain tls` (master/explain.c) over a published table:
 * the listener, the server an SNI picks, the tcp or tls route the workers'
 * own choice (ism_router_l4) gives, its destinations and the tunnel's bounds,
 * or why the connection is closed; and the usage mistakes. */
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
#include "master/commands.h"
#include "master/master-t.h"
#include "master/reply.h"
#include "shm/shm.h"

#define GEN_SIZE (4u << 20)

static const char conf_text[] =
    "apiVersion: isthmus.io/v1\nkind: Appliance\nmetadata: {name: t}\nspec:\n"
    "  locality: r/z\n"
    "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n"
    "  servers:\n"
    "  - port: {number: 31400, name: tcp, protocol: TCP}\n    hosts: [\"*\"]\n"
    "  - port: {number: 8443, name: tls, protocol: TLS}\n    hosts: [\"*.example.com\"]\n"
    "    tls: {mode: PASSTHROUGH}\n"
    "  - port: {number: 8080, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n"
    "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: echo}\n"
    "spec:\n  hosts: [echo.local]\n  ports: [{number: 9000, name: tcp, protocol: TCP}]\n"
    "  resolution: STATIC\n  endpoints: [{address: 127.0.0.1}, {address: 127.0.0.2}]\n"
    "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: echo}\n"
    "spec:\n  host: echo.local\n"
    "  trafficPolicy: {connectionPool: {tcp: {idleTimeout: 5m, tcpKeepalive: {time: 60s}}}}\n"
    "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\n"
    "spec:\n  hosts: [\"*.example.com\"]\n  gateways: [gw]\n"
    "  tcp:\n"
    "  - match: [{destinationSubnets: [10.0.0.0/8]}]\n"
    "    route: [{destination: {host: echo.local}, weight: 1}, "
    "{destination: {host: echo.local}, weight: 3}]\n"
    "  - route: [{destination: {host: echo.local}}]\n"
    "  tls:\n"
    "  - match: [{sniHosts: [a.example.com]}]\n"
    "    route: [{destination: {host: echo.local}}]\n";

struct fx {
	struct ism_master m;
	struct ism_conf *conf;
	struct ism_diags d;
	struct ism_reply r;
};

static int ep_id(void *ctx, enum ism_conf_slot kind, const char *key, bool has_hc, uint32_t *id)
{
	const char *ep = strrchr(key, '|');

	(void)has_hc;
	if (kind == ISM_CONF_SLOT_OUTLIER)
		return ism_shm_od_intern(ctx, key, (uint32_t)atoi(ep + 1), id);
	return ism_shm_ep_intern(ctx, key, ISM_EP_HEALTHY, id);
}

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	const struct ism_table *t = NULL;
	struct ism_arena a;
	int slot;

	if (f == NULL || ism_shm_create(&f->m.shm, GEN_SIZE) < 0)
		return -1;
	ism_diags_init(&f->d);
	if (ism_conf_load_buf("t.yaml", conf_text, strlen(conf_text), &f->conf, &f->d) < 0) {
		ism_diags_print(stderr, &f->d);
		return -1;
	}
	slot = ism_shm_gen_begin(&f->m.shm, &a);
	if (slot < 0 || ism_conf_compile(f->conf, &a, ep_id, &f->m.shm, &t, &f->d) < 0)
		return -1;
	ism_shm_gen_publish(&f->m.shm, slot, (struct ism_table *)t, 1);
	ism_reply_init(&f->r, 1 << 20);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	ism_reply_free(&f->r);
	ism_conf_free(f->conf);
	ism_shm_destroy(&f->m.shm);
	free(f);
	return 0;
}

/* The answer to explain args. */
static const char *explain(struct fx *f, const char *args)
{
	char buf[256];

	snprintf(buf, sizeof(buf), "%s", args);
	ism_reply_free(&f->r);
	ism_explain(&f->m, buf, &f->r);
	return f->r.p != NULL ? f->r.p : "";
}

static void want(const char *args, const char *out, const char *line)
{
	CHECK(args, strstr(out, line) != NULL, "no \"%s\" in:\n%s", line, out);
}

static void test_explain_tcp(void **state)
{
	struct fx *f = *state;
	const char *out;

	out = explain(f, "tcp");
	want("tcp", out, "generation 1, listener tcp (port 31400, TCP)\n");
	/* The listener is bound to 0.0.0.0: the address connected to is unknown,
	 * and the entry with destinationSubnets cannot hold. */
	want("tcp", out, "tcp route: default/vs#tcp1 (entry 2 of 2)\n");
	want("tcp", out, "destination: outbound|9000||echo.local weight 100 of 100\n");
	want("tcp", out,
	     "tunnel to outbound|9000||echo.local: idle timeout 300000 ms, max duration none, "
	     "tcp keepalive probes 0, time 60 s, interval 0 s (0: the system's)\n");
	want("tcp", out, "cluster outbound|9000||echo.local: 2 endpoints");
	out = explain(f, "tcp 31400 to=10.1.2.3 from=192.0.2.1");
	want("tcp to=", out,
	     "tcp route: default/vs#tcp0 (entry 1 of 2, destinationSubnets hold)\n");
	want("tcp to=", out, "destination: outbound|9000||echo.local weight 1 of 4\n");
	want("tcp to=", out, "destination: outbound|9000||echo.local weight 3 of 4\n");
	/* One cluster named twice is explained once. */
	CHECK("tcp to=", strstr(strstr(out, "tunnel to ") + 1, "tunnel to ") == NULL, "%s", out);
	out = explain(f, "tcp 31400 to=192.0.2.9");
	want("tcp to=other", out, "tcp route: default/vs#tcp1 (entry 2 of 2)\n");
	/* An HTTP request on the TCP listener is not HTTP. */
	out = explain(f, "GET http://x:31400/");
	want("GET on tcp", out,
	     "listener: TCP, its connections are not HTTP (explain tcp 31400)\n");
}

static void test_explain_tls(void **state)
{
	struct fx *f = *state;
	const char *out;

	out = explain(f, "tls A.Example.com");
	want("tls", out, "generation 1, listener tls (port 8443, TLS)\n");
	want("tls", out, "TLS passthrough server: default/gw#1\n");
	want("tls", out, "tls route: default/vs#tls0 (entry 1 of 1, sniHost a.example.com)\n");
	want("tls", out, "destination: outbound|9000||echo.local weight 100 of 100\n");
	out = explain(f, "tls b.example.com 8443");
	want("tls other", out,
	     "server: none for SNI \"b.example.com\": the connection is closed\n");
	/* A name the worker's reading of the ClientHello refuses. */
	out = explain(f, "tls \xc3\xa9.example.com 8443");
	want("tls non-ASCII", out, "is no server name");
	out = explain(f, "tls -");
	want("tls -", out,
	     "server: none without SNI (no \"*\" server on the port): the connection is closed\n");
	out = explain(f, "GET http://a.example.com:8443/");
	want("GET on passthrough", out,
	     "TLS passthrough server: default/gw#1: TLS is not terminated here, its connections "
	     "are not HTTP (explain tls a.example.com 8443)\n");
}

static void test_explain_mistakes(void **state)
{
	static const char *const cases[][2] = {
	    {"tls", "error: usage: explain METHOD URL"},
	    {"tcp 8443", "error: the listener on port 8443 is not TCP\n"},
	    {"tls a.example.com 31400", "error: the listener on port 31400 is not TLS\n"},
	    {"tcp 9", "error: no listener on port 9\n"},
	    {"tcp sideways", "error: not an argument of explain tcp: sideways\n"},
	    {"tcp to=nowhere", "error: to=nowhere is not an IP address\n"},
	};
	struct fx *f = *state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		want(cases[i][0], explain(f, cases[i][0]), cases[i][1]);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_explain_tcp),
	    cmocka_unit_test(test_explain_tls),
	    cmocka_unit_test(test_explain_mistakes),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
