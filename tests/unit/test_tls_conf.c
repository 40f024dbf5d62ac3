/* SPDX-License-Identifier: Apache-2.0 */
/* TLS in the appliance file: certificate files checked at load with positions,
 * HTTPS servers compiled with their own routes, credentials, PeerAuthentication
 * precedence, PROXY protocol ports, and the SNI choice of a server. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "conf/conf.h"
#include "conf/tlsctx.h"
#include "loaded.h"
#include "tests/unit/selfsigned.h"
#include "worker/router.h"
#include "worker/tls.h"

static char dir[64];

static bool covers(const char *pattern, const char *name)
{
	return ism_tlsctx_dns_name_covers(pattern, strlen(pattern), name);
}

/* A certificate's DNS names cover a server name as Envoy's dnsNameMatch. */
static void test_dns_name_covers(void **state)
{
	(void)state;
	assert_true(covers("api.example.com", "api.example.com"));
	assert_true(covers("API.Example.com", "api.example.COM"));
	assert_true(covers("*.internal", "a.internal"));
	assert_true(covers("*.example.com", "api.example.com"));
	assert_true(covers("*.Example.com", "API.example.com"));
	assert_true(covers("f*.example.com", "foo.example.com"));
	assert_true(covers("f*.example.com", "f.example.com"));
	assert_true(covers("*o.example.com", "foo.example.com"));
	assert_true(covers("b*z.example.com", "baz.example.com"));
	assert_true(covers("b*z.example.com", "bz.example.com"));
	assert_false(covers("b*z.example.com", "b.example.com"));
	assert_false(covers("b*z.example.com", "bzz.example.org"));
	assert_false(covers("*.example.com", "a.b.example.com"));
	assert_false(covers("*.example.com", "example.com"));
	assert_false(covers("*.example.com", "a.example.org"));
	assert_false(covers("*", "localhost"));
	assert_false(covers("*", "a.b"));
	assert_false(covers("a.*.example.com", "a.b.example.com"));
	assert_false(covers("*.*.example.com", "a.b.example.com"));
	assert_false(covers("**.example.com", "a.example.com"));
	assert_false(covers("xn--*.example.com", "xn--a.example.com"));
	assert_false(covers("foo.example.com", "bar.example.com"));
	assert_false(covers("foo.example.com", "foo.example.co"));
	/* a pattern with a NUL inside does not cover its prefix */
	assert_false(ism_tlsctx_dns_name_covers("a.example.com\0.evil", 19, "a.example.com"));
}

/* A self-signed EC certificate for name, written to <dir>/<file>.crt and .key. */
static void make_cert(const char *file, const char *name)
{
	EVP_PKEY *pk;
	X509 *x;
	char path[160];
	FILE *f;

	self_signed(name, &pk, &x);
	snprintf(path, sizeof(path), "%s/%s.crt", dir, file);
	f = fopen(path, "w");
	assert_non_null(f);
	PEM_write_X509(f, x);
	fclose(f);
	snprintf(path, sizeof(path), "%s/%s.key", dir, file);
	f = fopen(path, "w");
	assert_non_null(f);
	PEM_write_PrivateKey(f, pk, NULL, NULL, 0, NULL, NULL);
	fclose(f);
	X509_free(x);
	EVP_PKEY_free(pk);
}

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/isthmus-tls-XXXXXX");
	if (mkdtemp(dir) == NULL)
		return -1;
	make_cert("a", "a.example.com");
	make_cert("b", "b.example.com");
	return 0;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	return system(cmd) == 0 ? 0 : -1;
}

/* Loads text as <dir>/t.yaml (relative certificate paths resolve in dir). */
static int load(struct loaded *l, const char *text)
{
	char name[128];

	snprintf(name, sizeof(name), "%s/t.yaml", dir);
	return loaded_load(l, name, text);
}

static void unload(struct loaded *l)
{
	loaded_free(l);
}

static bool has_diag(const struct ism_diags *d, const char *field, const char *msg)
{
	for (size_t i = 0; i < d->n && i < 64; i++)
		if (strstr(d->items[i].field, field) && strstr(d->items[i].msg, msg))
			return true;
	ism_diags_print(stderr, d);
	return false;
}

#define APP                                                                                        \
	"apiVersion: isthmus.io/v1\nkind: Appliance\nmetadata: {name: t}\nspec:\n"                 \
	"  locality: r/z\n"
#define SE                                                                                         \
	"---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: up}\n"      \
	"spec:\n  hosts: [up.local]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n"        \
	"  resolution: STATIC\n  endpoints: [{address: 127.0.0.1}]\n"
#define VS                                                                                         \
	"---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\n"    \
	"spec:\n  hosts: [a.example.com, b.example.com]\n  gateways: [gw]\n"                       \
	"  http: [{route: [{destination: {host: up.local}}]}]\n"
#define GW "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n"

static void test_https_servers(void **state)
{
	struct loaded l;
	const struct ism_listener *li;

	(void)state;
	assert_int_equal(load(&l, APP
			      "  credentials:\n  - {name: bcert, certificate: b.crt, "
			      "privateKey: b.key}\n" GW "  servers:\n"
			      "  - port: {number: 443, name: https, protocol: HTTPS}\n"
			      "    hosts: [a.example.com]\n"
			      "    tls: {mode: SIMPLE, serverCertificate: a.crt, privateKey: "
			      "a.key, minProtocolVersion: TLSV1_3, ecdhCurves: [X25519, P-256],\n"
			      "          cipherSuites: [ECDHE-RSA-AES128-SHA256, "
			      "ECDHE-RSA-AES256-GCM-SHA384]}\n"
			      "  - port: {number: 443, name: https-b, protocol: HTTPS}\n"
			      "    hosts: [\"*.example.com\"]\n"
			      "    tls: {mode: SIMPLE, credentialName: bcert, minProtocolVersion: "
			      "TLSV1_1}\n"
			      "  - port: {number: 80, name: http-80, protocol: HTTP}\n"
			      "    hosts: [a.example.com]\n    tls: {httpsRedirect: true}\n" SE VS),
			 0);
	assert_int_equal(l.t->n_listeners, 2);
	li = &l.t->listeners[0];
	assert_int_equal(li->n_tls, 2);
	assert_int_equal(li->n_vhosts, 0);
	assert_int_equal(li->tls[0].tls.mode, ISM_TLS_SIMPLE);
	assert_int_equal(li->tls[0].tls.min_ver, 0x0304);
	assert_int_equal(li->tls[0].tls.n_certs, 1);
	/* ecdhCurves: OpenSSL's groups list, as Envoy's ecdh_curves. */
	assert_string_equal(li->tls[0].tls.curves.p, "X25519:P-256");
	assert_int_equal(li->tls[1].tls.curves.len, 0);
	/* A suite outside Istio's ValidCipherSuites is left out, with a warning,
	 * as istiod filters it (Envoy then never sees it). */
	assert_string_equal(li->tls[0].tls.ciphers.p, "ECDHE-RSA-AES256-GCM-SHA384");
	assert_true(has_diag(&l.d, "spec.servers[0].tls.cipherSuites[0]",
			     "\"ECDHE-RSA-AES128-SHA256\": not a cipher suite Istio supports"));
	/* A version below 1.2 without suites for it: a warning, as Istio's
	 * validation gives, and loaded as asked. */
	assert_int_equal(li->tls[1].tls.min_ver, 0x0302);
	assert_true(has_diag(&l.d, "spec.servers[1].tls.minProtocolVersion",
			     "versions below TLS 1.2 need cipherSuites that suit them"));
	assert_non_null(strstr(li->tls[0].tls.certs[0].cert.text.p, "BEGIN CERTIFICATE"));
	assert_non_null(strstr(li->tls[1].tls.certs[0].cert.path.p, "/b.crt"));
	assert_true(li->tls[0].tls.fingerprint != li->tls[1].tls.fingerprint);
	/* HTTPS servers offer h2 and http/1.1 by ALPN, as Istio's gateway; the
	 * TLS listener takes no prior-knowledge HTTP/2, the plaintext one does. */
	assert_int_equal(li->tls[0].tls.alpn, ISM_ALPN_H2 | ISM_ALPN_HTTP11);
	assert_int_equal(li->tls[1].tls.alpn, ISM_ALPN_H2 | ISM_ALPN_HTTP11);
	assert_int_equal(li->h2c, 0);
	assert_int_equal(l.t->listeners[1].h2c, 1);
	/* Each server routes only its own hosts. */
	assert_int_equal(li->tls[0].n_vhosts, 1);
	assert_int_equal(li->tls[0].vhosts[0].n_domains, 1);
	assert_string_equal(li->tls[0].vhosts[0].domains[0].p, "a.example.com");
	assert_int_equal(li->tls[1].vhosts[0].n_domains, 2);
	/* SNI: exact, then wildcard; unknown or none (no "*" server) refused,
	 * as Envoy finds no filter chain for them. */
	assert_int_equal(ism_router_pick_server(li, "a.example.com"), 0);
	assert_int_equal(ism_router_pick_server(li, "x.example.com"), 1);
	assert_int_equal(ism_router_pick_server(li, "x.y.example.com"), 1);
	assert_int_equal(ism_router_pick_server(li, "example.com"), -1);
	assert_int_equal(ism_router_pick_server(li, ""), -1);
	/* The plain listener: vhosts marked for the redirect. */
	assert_int_equal(l.t->listeners[1].n_tls, 0);
	assert_int_equal(l.t->listeners[1].vhosts[0].https_redirect, 1);
	unload(&l);
}

/* Gateway servers of protocol TLS whose mode terminates, as Istio's gateway
 * builds them: TLS with the server's certificate, h2 and http/1.1 offered by
 * ALPN as there, then the tcp routes of the VirtualServices of its hosts
 * whose match holds, as a TCP server's; one without a route has no server
 * name (Istio makes no filter chain for it) and a warning. */
static void test_tls_terminated_tcp(void **state)
{
	struct loaded l;
	const struct ism_listener *li;

	(void)state;
	assert_int_equal(load(&l, APP GW
			      "  servers:\n"
			      "  - port: {number: 443, name: tls, protocol: TLS}\n"
			      "    hosts: [a.example.com]\n"
			      "    tls: {mode: SIMPLE, serverCertificate: a.crt, privateKey: "
			      "a.key}\n"
			      "  - port: {number: 443, name: tls-b, protocol: TLS}\n"
			      "    hosts: [b.example.com]\n"
			      "    tls: {mode: MUTUAL, serverCertificate: b.crt, privateKey: "
			      "b.key, caCertificates: a.crt}\n"
			      "  - port: {number: 443, name: https, protocol: HTTPS}\n"
			      "    hosts: [c.example.com]\n"
			      "    tls: {mode: SIMPLE, serverCertificate: a.crt, privateKey: "
			      "a.key}\n" SE
			      "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n"
			      "metadata: {name: vs}\nspec:\n  hosts: [a.example.com]\n"
			      "  gateways: [gw]\n"
			      "  tcp:\n  - match: [{port: 8443}]\n"
			      "    route: [{destination: {host: up.local}}]\n"
			      "  - route: [{destination: {host: up.local}}]\n"),
			 0);
	li = &l.t->listeners[0];
	assert_int_equal(li->n_tls, 3);
	assert_int_equal(li->tls[0].tcp, 1);
	assert_int_equal(li->tls[0].passthrough, 0);
	assert_int_equal(li->tls[0].tls.mode, ISM_TLS_SIMPLE);
	assert_int_equal(li->tls[0].tls.alpn, ISM_ALPN_H2 | ISM_ALPN_HTTP11);
	assert_int_equal(li->tls[0].n_l4, 1);
	assert_string_equal(li->tls[0].l4[0].name.p, "default/vs#tcp1");
	assert_int_equal(li->tls[0].n_vhosts, 0);
	assert_int_equal(ism_router_pick_server(li, "a.example.com"), 0);
	/* b: MUTUAL, no VirtualService: no route, no server name. */
	assert_int_equal(li->tls[1].tcp, 1);
	assert_int_equal(li->tls[1].tls.mode, ISM_TLS_MUTUAL);
	assert_int_equal(li->tls[1].n_l4, 0);
	assert_int_equal(ism_router_pick_server(li, "b.example.com"), -1);
	assert_true(has_diag(&l.d, "spec.servers[1]", "no tcp route of a VirtualService bound"));
	/* The HTTPS server beside them stays HTTP's. */
	assert_int_equal(li->tls[2].tcp, 0);
	assert_int_equal(li->tls[2].tls.alpn, ISM_ALPN_H2 | ISM_ALPN_HTTP11);
	unload(&l);
	/* A TLS server that terminates needs its certificate as an HTTPS one. */
	assert_int_not_equal(load(&l, APP GW
				  "  servers:\n"
				  "  - port: {number: 443, name: tls, protocol: TLS}\n"
				  "    hosts: [a.example.com]\n    tls: {mode: SIMPLE}\n" SE),
			     0);
	assert_true(l.d.n_errors > 0);
	unload(&l);
}

/* A passthrough server of *.example.com and a VirtualService of hosts whose
 * one TLS route takes sni (YAML lists). */
#define PT_VS(hosts, sni)                                                                          \
	APP GW "  servers:\n"                                                                      \
	       "  - port: {number: 443, name: tls, protocol: TLS}\n"                               \
	       "    hosts: [\"*.example.com\"]\n    tls: {mode: PASSTHROUGH}\n" SE                 \
	       "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n"                   \
	       "metadata: {name: pt}\nspec:\n  hosts: " hosts "\n  gateways: [gw]\n"               \
	       "  tls: [{match: [{sniHosts: " sni                                                  \
	       "}], route: [{destination: {host: up.local}}]}]\n"

/* An HTTPS server and a passthrough server share port 443, told apart by
 * SNI as Istio allows: the HTTPS one terminates TLS for its HTTP routes, the
 * other passes the bytes through to its tls routes, by its routes' SNI hosts. */
static void test_https_and_passthrough(void **state)
{
	struct loaded l;
	const struct ism_listener *li;

	(void)state;
	assert_int_equal(
	    load(&l, APP GW "  servers:\n"
			    "  - port: {number: 443, name: https, protocol: HTTPS}\n"
			    "    hosts: [a.example.com]\n"
			    "    tls: {mode: SIMPLE, serverCertificate: a.crt, privateKey: a.key}\n"
			    "  - port: {number: 443, name: tls, protocol: TLS}\n"
			    "    hosts: [\"*.example.com\"]\n    tls: {mode: PASSTHROUGH}\n" SE VS
			    "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n"
			    "metadata: {name: pt}\nspec:\n  hosts: [\"*.example.com\"]\n"
			    "  gateways: [gw]\n"
			    "  tls: [{match: [{sniHosts: [b.example.com, \"*.c.example.com\"]}], "
			    "route: [{destination: {host: up.local}}]}]\n"),
	    0);
	assert_int_equal(l.t->n_listeners, 1);
	li = &l.t->listeners[0];
	assert_int_equal(li->n_tls, 2);
	assert_int_equal(li->tls[0].passthrough, 0);
	assert_int_equal(li->tls[0].tls.mode, ISM_TLS_SIMPLE);
	assert_int_equal(li->tls[0].n_vhosts, 1);
	assert_int_equal(li->tls[0].n_l4, 0);
	assert_int_equal(li->tls[1].passthrough, 1);
	assert_int_equal(li->tls[1].tls.mode, ISM_TLS_NONE);
	assert_int_equal(li->tls[1].n_vhosts, 0); /* vs's HTTP routes: not through it */
	assert_int_equal(li->tls[1].n_l4, 2);
	assert_int_equal(li->tls[1].n_sni, 2);
	assert_int_equal(ism_router_pick_server(li, "a.example.com"), 0);
	assert_int_equal(ism_router_pick_server(li, "b.example.com"), 1);
	assert_int_equal(ism_router_pick_server(li, "x.c.example.com"), 1);
	/* The server's own hosts are not its names: what its routes name is. */
	assert_int_equal(ism_router_pick_server(li, "d.example.com"), -1);
	unload(&l);
	/* A partial wildcard among the SNI hosts, as Istio takes it there. */
	assert_int_equal(load(&l, PT_VS("[\"*.example.com\"]", "[\"*-db.example.com\"]")), 0);
	li = &l.t->listeners[0];
	assert_int_equal(ism_router_pick_server(li, "orders-db.example.com"), 0);
	assert_int_equal(ism_router_pick_server(li, "-db.example.com"), -1);
	assert_int_equal(ism_router_pick_server(li, "orders.example.com"), -1);
	unload(&l);
	/* An SNI host equal to a partial wildcard's suffix is within it, as
	 * Istio's SubsetOf. */
	assert_int_equal(load(&l, PT_VS("[\"*db.example.com\"]", "[db.example.com]")), 0);
	assert_int_equal(ism_router_pick_server(&l.t->listeners[0], "db.example.com"), 0);
	unload(&l);
}

/* httpsRedirect covers every host of its server, bound by a VirtualService or
 * not; the redirecting vhosts come first, so a host that a server without the
 * redirect also names is redirected. */
static void test_https_redirect_hosts(void **state)
{
	struct loaded l;
	const struct ism_listener *li;
	const struct ism_vhost *vh;

	(void)state;
	assert_int_equal(load(&l, APP GW "  servers:\n"
					 "  - port: {number: 80, name: http-80-2, protocol: HTTP}\n"
					 "    hosts: [\"*.example.com\", b.example.com]\n"
					 "    tls: {httpsRedirect: true}\n"
					 "  - port: {number: 80, name: http-80-3, protocol: HTTP}\n"
					 "    hosts: [b.example.com, c.example.org]\n" SE VS),
			 0);
	li = &l.t->listeners[0];
	vh = ism_router_vhost(li->vhosts, li->n_vhosts, &li->vhost_index, "x.example.com", 13);
	assert_non_null(vh);
	assert_int_equal(vh->https_redirect, 1);
	assert_int_equal(vh->n_routes, 0);
	assert_string_equal(vh->name.p, "default/gw#0");
	assert_string_equal(vh->domains[0].p, "*.example.com");
	vh = ism_router_vhost(li->vhosts, li->n_vhosts, &li->vhost_index, "b.example.com", 13);
	assert_non_null(vh);
	assert_int_equal(vh->https_redirect, 1);
	vh = ism_router_vhost(li->vhosts, li->n_vhosts, &li->vhost_index, "a.example.com", 13);
	assert_non_null(vh);
	assert_int_equal(vh->https_redirect, 1);
	assert_null(
	    ism_router_vhost(li->vhosts, li->n_vhosts, &li->vhost_index, "c.example.org", 13));
	assert_null(
	    ism_router_vhost(li->vhosts, li->n_vhosts, &li->vhost_index, "example.com", 11));
	unload(&l);
}

/* A VirtualService of hosts n, routed to up.local, named vs-<name>. */
#define VS_HOSTS(name, hosts)                                                                      \
	"---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs-" name \
	"}\nspec:\n  hosts: " hosts "\n  gateways: [gw]\n"                                         \
	"  http: [{route: [{destination: {host: up.local}}]}]\n"

/* A partial wildcard host (Istio's ValidateWildcardDomain takes it) matches
 * as a suffix of one byte more at least, the longest wildcard first, as
 * Envoy's virtual hosts: through the listener's name index (over 16 names)
 * and by a scan alike. */
static void test_partial_wildcard_hosts(void **state)
{
	static const char *const want[][2] = {
	    {"shop-api.example.com", "*-api.example.com"},
	    {"SHOP-API.example.com", "*-api.example.com"},
	    {"x.shop-api.example.com", "*-api.example.com"},
	    {"myapi.example.com", "*api.example.com"},
	    {"-api.example.com", "*api.example.com"},
	    {"api.example.com", "*.example.com"},
	    {"shop.example.com", "*.example.com"},
	    {"h3.example.org", "h3.example.org"},
	};
	struct loaded l;
	const struct ism_listener *li;
	const struct ism_vhost *vh;

	(void)state;
	assert_int_equal(
	    load(&l, APP GW
		 "  servers:\n"
		 "  - port: {number: 80, name: http, protocol: HTTP}\n"
		 "    hosts: [\"*\"]\n" SE VS_HOSTS("a", "[\"*-api.example.com\"]")
		     VS_HOSTS("b", "[\"*api.example.com\"]") VS_HOSTS("c", "[\"*.example.com\"]")
			 VS_HOSTS("d", "[h0.example.org, h1.example.org, h2.example.org, "
				       "h3.example.org, h4.example.org, h5.example.org, "
				       "h6.example.org, h7.example.org, h8.example.org, "
				       "h9.example.org, h10.example.org, h11.example.org, "
				       "h12.example.org, h13.example.org, h14.example.org]")),
	    0);
	li = &l.t->listeners[0];
	assert_true(li->vhost_index.cap > 0); /* the index is there */
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		const char *h = want[i][0];
		const struct ism_vhost *ix =
		    ism_router_vhost(li->vhosts, li->n_vhosts, &li->vhost_index, h, strlen(h));
		const struct ism_vhost *scan =
		    ism_router_vhost(li->vhosts, li->n_vhosts, NULL, h, strlen(h));
		bool named = false;

		assert_non_null(ix);
		assert_ptr_equal(ix, scan);
		for (uint32_t d = 0; d < ix->n_domains; d++)
			named = named || strcmp(ix->domains[d].p, want[i][1]) == 0;
		if (!named)
			fail_msg("%s: a virtual host without %s", h, want[i][1]);
	}
	unload(&l);
	/* Bound to a Gateway host it covers as Istio compares configuration
	 * (SubsetOf: the suffix itself too), where the server's name serves. */
	assert_int_equal(load(&l, APP GW
			      "  servers:\n"
			      "  - port: {number: 80, name: http, protocol: HTTP}\n"
			      "    hosts: [api.example.com, myapi.example.org]\n" SE VS_HOSTS(
				  "a", "[\"*api.example.com\"]")),
			 0);
	li = &l.t->listeners[0];
	vh = ism_router_vhost(li->vhosts, li->n_vhosts, &li->vhost_index, "api.example.com", 15);
	assert_non_null(vh);
	assert_int_equal(vh->n_domains, 1);
	assert_string_equal(vh->domains[0].p, "api.example.com");
	assert_int_equal(vh->n_routes, 1);
	assert_null(
	    ism_router_vhost(li->vhosts, li->n_vhosts, &li->vhost_index, "myapi.example.org", 17));
	unload(&l);
}

/* up.local on an HTTP port (80) and a GRPC one (81), and the head of a
 * VirtualService for every host whose one route's destinations follow. */
#define SE_HTTP_GRPC                                                                               \
	"---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: up}\n"      \
	"spec:\n  hosts: [up.local]\n  resolution: STATIC\n  endpoints: [{address: 127.0.0.1}]\n"  \
	"  ports: [{number: 80, name: http, protocol: HTTP}, {number: 81, name: grpc, protocol: "  \
	"GRPC}]\n"
#define VS_ANY                                                                                     \
	"---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\n"    \
	"spec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n  - route:\n"

/* ISTIO_MUTUAL sends Istio's mesh SNI, outbound_.<port>_.<subset>_.<host>, in
 * the clusters' TLS settings without making them other contexts; a
 * DestinationRule sni wins. */
static void test_istio_mutual_sni(void **state)
{
	static const char mesh[] = "  meshIdentity: {certificate: a.crt, privateKey: a.key, "
				   "caCertificates: b.crt}\n";
	static const char rest[] = GW
	    "  servers:\n  - port: {number: 80, name: http-80-4, protocol: HTTP}\n    hosts: "
	    "[\"*\"]\n" SE
	    "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\n"
	    "spec:\n  hosts: [a.example.com, b.example.com]\n  gateways: [gw]\n  http:\n"
	    "  - match: [{uri: {prefix: /v1}}]\n    route: [{destination: {host: up.local, subset: "
	    "v1}}]\n  - match: [{uri: {prefix: /own}}]\n    route: [{destination: {host: "
	    "up.local, subset: own}}]\n  - route: [{destination: {host: up.local}}]\n"
	    "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\n"
	    "spec:\n  host: up.local\n  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}\n  subsets:\n"
	    "  - {name: v1, labels: {}}\n  - name: own\n    labels: {}\n"
	    "    trafficPolicy: {tls: {mode: ISTIO_MUTUAL, sni: own.example}}\n";
	const char *want[][2] = {{"v1", "outbound_.80_.v1_.up.local"},
				 {"", "outbound_.80_._.up.local"},
				 {"own", "own.example"}};
	const struct ism_cluster *by[3] = {NULL, NULL, NULL};
	struct loaded l;
	char text[4096];

	(void)state;
	snprintf(text, sizeof(text), APP "%s%s", mesh, rest);
	assert_int_equal(load(&l, text), 0);
	assert_int_equal(l.t->n_clusters, 3);
	for (uint32_t i = 0; i < l.t->n_clusters; i++)
		for (size_t j = 0; j < 3; j++)
			if (strcmp(l.t->clusters[i].subset.p, want[j][0]) == 0)
				by[j] = &l.t->clusters[i];
	for (size_t j = 0; j < 3; j++) {
		assert_non_null(by[j]);
		assert_int_equal(by[j]->tls.mode, ISM_TLS_ISTIO_MUTUAL);
		assert_string_equal(by[j]->tls.sni.p, want[j][1]);
	}
	/* One context for the derived names; an explicit sni is another. */
	assert_true(by[0]->tls.fingerprint == by[1]->tls.fingerprint);
	assert_true(by[0]->tls.fingerprint != by[2]->tls.fingerprint);
	unload(&l);
}

/* ISTIO_MUTUAL offers Istio's mesh ALPN for the cluster's protocol: the
 * istio-h2 list towards an HTTP/2 (GRPC) port, the istio-http/1.1 one towards
 * an HTTP one; SIMPLE offers h2 alone to an HTTP/2 port. The mesh identity,
 * served on plaintext listeners, takes h2 and http/1.1. */
static void test_upstream_alpn(void **state)
{
	static const char text[] = APP
	    "  meshIdentity: {certificate: a.crt, privateKey: a.key, caCertificates: b.crt}\n" GW
	    "  servers:\n  - port: {number: 80, name: http-80-5, protocol: HTTP}\n    hosts: "
	    "[\"*\"]\n" SE_HTTP_GRPC VS_ANY
	    "    - {destination: {host: up.local, port: {number: 80}}, weight: 1}\n"
	    "    - {destination: {host: up.local, port: {number: 81}}}\n"
	    "    - {destination: {host: up.local, port: {number: 81}, subset: s}}\n"
	    "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\n"
	    "spec:\n  host: up.local\n  trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}\n"
	    "  subsets: [{name: s, labels: {}, trafficPolicy: {tls: {mode: SIMPLE}}}]\n";
	const struct ism_cluster *h1 = NULL, *h2 = NULL, *simple = NULL;
	struct loaded l;

	(void)state;
	assert_int_equal(load(&l, text), 0);
	for (uint32_t i = 0; i < l.t->n_clusters; i++) {
		const struct ism_cluster *c = &l.t->clusters[i];

		if (c->subset.len != 0)
			simple = c;
		else if (c->port == 80)
			h1 = c;
		else
			h2 = c;
	}
	assert_non_null(h1);
	assert_non_null(h2);
	assert_non_null(simple);
	assert_int_equal(h1->proto, ISM_UP_HTTP1);
	assert_int_equal(h1->tls.alpn, ISM_ALPN_ISTIO | ISM_ALPN_HTTP11);
	assert_int_equal(h2->proto, ISM_UP_HTTP2);
	assert_int_equal(h2->tls.alpn, ISM_ALPN_ISTIO | ISM_ALPN_H2);
	assert_true(h1->tls.fingerprint != h2->tls.fingerprint);
	assert_int_equal(simple->tls.mode, ISM_TLS_SIMPLE);
	assert_int_equal(simple->tls.alpn, ISM_ALPN_H2);
	assert_int_equal(l.t->mesh.alpn, ISM_ALPN_H2 | ISM_ALPN_HTTP11);
	assert_int_equal(l.t->listeners[0].h2c, 1);
	unload(&l);
}

/* One active health check serves an endpoint for every subset, so it speaks
 * the TLS of the service port without a subset (the rule's own or port-level
 * tls), even where only subsets are routed; a cluster without a subset gives
 * its own. */
static void test_health_check_tls(void **state)
{
	static const char text[] = APP
	    "  meshIdentity: {certificate: a.crt, privateKey: a.key, caCertificates: b.crt}\n"
	    "  healthChecks: [{host: up.local}]\n" GW
	    "  servers:\n  - port: {number: 80, name: http-80-6, protocol: HTTP}\n    hosts: "
	    "[\"*\"]\n" SE_HTTP_GRPC VS_ANY
	    "    - {destination: {host: up.local, port: {number: 80}, subset: s}, weight: 1}\n"
	    "    - {destination: {host: up.local, port: {number: 81}, subset: s}}\n"
	    "    - {destination: {host: up.local, port: {number: 80}}}\n"
	    "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\n"
	    "spec:\n  host: up.local\n  trafficPolicy:\n    tls: {mode: ISTIO_MUTUAL}\n"
	    "    portLevelSettings: [{port: {number: 81}, tls: {mode: DISABLE}}]\n"
	    "  subsets: [{name: s, labels: {}, trafficPolicy: {tls: {mode: SIMPLE}}}]\n";
	const struct ism_cluster *s80, *s81, *all80;
	struct loaded l;

	(void)state;
	assert_int_equal(load(&l, text), 0);
	s80 = loaded_cluster(l.t, "outbound|80|s|up.local");
	s81 = loaded_cluster(l.t, "outbound|81|s|up.local");
	all80 = loaded_cluster(l.t, "outbound|80||up.local");
	assert_int_equal(s80->tls.mode, ISM_TLS_SIMPLE);
	assert_non_null(s80->hc_tls);
	assert_int_equal(s80->hc_tls->mode, ISM_TLS_ISTIO_MUTUAL);
	assert_string_equal(s80->hc_tls->sni.p, "outbound_.80_._.up.local");
	assert_int_equal(s80->hc_tls->alpn, ISM_ALPN_ISTIO | ISM_ALPN_HTTP11);
	assert_true(s80->hc_tls->fingerprint == all80->tls.fingerprint);
	assert_true(all80->hc_tls == &all80->tls);
	assert_int_equal(s81->tls.mode, ISM_TLS_SIMPLE);
	assert_non_null(s81->hc_tls);
	assert_int_equal(s81->hc_tls->mode, ISM_TLS_NONE);
	unload(&l);
}

/* Istio's automatic SAN validation (Envoy's auto_san_validation): the
 * upstream's certificate must carry the server name unless the rule names
 * subjectAltNames, which are checked instead. */
static void test_upstream_name_check(void **state)
{
	static const char text[] = APP GW
	    "  servers:\n  - port: {number: 80, name: http-80-6, protocol: HTTP}\n    hosts: "
	    "[\"*\"]\n" SE_HTTP_GRPC VS_ANY
	    "    - {destination: {host: up.local, port: {number: 80}, subset: s}, weight: 1}\n"
	    "    - {destination: {host: up.local, port: {number: 80}}}\n"
	    "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\n"
	    "spec:\n  host: up.local\n  trafficPolicy:\n    tls: {mode: SIMPLE}\n"
	    "  subsets: [{name: s, labels: {}, trafficPolicy: {tls: {mode: SIMPLE, "
	    "subjectAltNames: [other.example]}}}]\n";
	const struct ism_cluster *s80, *all80;
	struct loaded l;

	(void)state;
	assert_int_equal(load(&l, text), 0);
	s80 = loaded_cluster(l.t, "outbound|80|s|up.local");
	all80 = loaded_cluster(l.t, "outbound|80||up.local");
	assert_int_equal(all80->tls.mode, ISM_TLS_SIMPLE);
	assert_true(all80->tls.name_check);
	assert_int_equal(s80->tls.mode, ISM_TLS_SIMPLE);
	assert_int_equal(s80->tls.n_sans, 1);
	assert_false(s80->tls.name_check);
	unload(&l);
}

static void test_errors(void **state)
{
	static const struct {
		const char *text, *field, *msg;
	} cases[] = {
	    {GW "  servers:\n  - port: {number: 443, name: https-443, protocol: HTTPS}\n    hosts: "
		"[\"*\"]\n"
		"    tls: {mode: SIMPLE, serverCertificate: a.crt, privateKey: b.key}\n",
	     "spec.servers[0].tls.privateKey", "the key does not belong to the certificate"},
	    {GW "  servers:\n  - port: {number: 443, name: https-443-2, protocol: HTTPS}\n    "
		"hosts: [\"*\"]\n"
		"    tls: {mode: SIMPLE, serverCertificate: nope.crt, privateKey: a.key}\n",
	     "spec.servers[0].tls.serverCertificate", "nope.crt: No such file"},
	    {GW "  servers:\n  - port: {number: 443, name: https-443-3, protocol: HTTPS}\n    "
		"hosts: [\"*\"]\n"
		"    tls: {mode: SIMPLE, serverCertificate: a.key, privateKey: a.key}\n",
	     "spec.servers[0].tls.serverCertificate", "a.key"},
	    {GW "  servers:\n  - port: {number: 443, name: https-443-4, protocol: HTTPS}\n    "
		"hosts: [\"*\"]\n"
		"    tls: {mode: MUTUAL, serverCertificate: a.crt, privateKey: a.key}\n",
	     "spec.servers[0].tls", "caCertificates is required"},
	    {GW "  servers:\n  - port: {number: 443, name: https-443-5, protocol: HTTPS}\n    "
		"hosts: [\"*\"]\n"
		"    tls: {mode: SIMPLE, credentialName: missing}\n",
	     "spec.servers[0].tls", "credential \"missing\""},
	    {GW "  servers:\n  - port: {number: 443, name: https-443-6, protocol: HTTPS}\n    "
		"hosts: [\"*\"]\n"
		"    tls: {mode: SIMPLE, serverCertificate: a.crt, privateKey: a.key, "
		"cipherSuites: [\"AES128-SHA:AES256-SHA\"]}\n",
	     "spec.servers[0].tls.cipherSuites[0]", "one name per entry"},
	    {GW "  servers:\n  - port: {number: 443, name: https-443-7, protocol: HTTPS}\n    "
		"hosts: [\"*\"]\n"
		"    tls: {mode: SIMPLE, serverCertificate: a.crt, privateKey: a.key, "
		"ecdhCurves: [X25519, X448]}\n",
	     "spec.servers[0].tls.ecdhCurves[1]", "\"X448\": unknown ECDH curve (Envoy's names"},
	    {GW "  servers:\n  - port: {number: 443, name: https-443-8, protocol: HTTPS}\n    "
		"hosts: [\"*\"]\n"
		"    tls: {mode: SIMPLE, serverCertificate: a.crt, privateKey: a.key, "
		"minProtocolVersion: TLSV1_3, maxProtocolVersion: TLSV1_2}\n",
	     "spec.servers[0].tls", "below minProtocolVersion"},
	    {GW "  servers:\n  - port: {number: 443, name: https-443-9, protocol: HTTPS}\n    "
		"hosts: [\"*\"]\n"
		"    tls: {mode: SIMPLE, serverCertificate: a.crt, privateKey: a.key, "
		"maxProtocolVersion: TLSV1_1}\n",
	     "spec.servers[0].tls", "below the minimum, TLS 1.2 when"},
	    {GW "  servers:\n  - port: {number: 8443, name: https-8443, protocol: HTTPS}\n    "
		"hosts: [\"*\"]\n"
		"    tls: {mode: SIMPLE, serverCertificate: a.crt, privateKey: a.key}\n"
		"  - port: {number: 8443, name: http-8443, protocol: HTTP}\n    hosts: [\"*\"]\n",
	     "spec.servers[1].port.protocol",
	     "this HTTP server cannot share it with the HTTPS server"},
	    {"---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
	     "metadata: {name: default}\nspec: {mtls: {mode: STRICT}}\n",
	     "PeerAuthentication default/default",
	     "STRICT needs the Appliance's spec.meshIdentity"},
	    /* A port's TLS servers name each host once (Istio skips the second). */
	    {GW "  servers:\n  - port: {number: 443, name: https-443-9, protocol: HTTPS}\n"
		"    hosts: [a.example.com]\n"
		"    tls: {mode: SIMPLE, serverCertificate: a.crt, privateKey: a.key}\n"
		"  - port: {number: 443, name: https-443-10, protocol: HTTPS}\n"
		"    hosts: [b.example.com, a.example.com]\n"
		"    tls: {mode: SIMPLE, serverCertificate: a.crt, privateKey: a.key}\n",
	     "spec.servers[1].hosts[1]", "host a.example.com is named by the server at line"},
	    /* The mesh's policy: what leaves the appliance plaintext instead. */
	    {"---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
	     "metadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n",
	     "PeerAuthentication istio-system/default: spec.mtls.mode",
	     "needs the Appliance's spec.meshIdentity (an Istio ingress gateway applies no "
	     "PeerAuthentication: to leave this appliance's ports plaintext, give namespace "
	     "default a policy of mode DISABLE)"},
	    {"---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
	     "metadata: {name: wl}\nspec:\n  selector: {matchLabels: {app: gw}}\n"
	     "  portLevelMtls: {}\n",
	     "PeerAuthentication default/wl: spec.portLevelMtls", "must have at least one port"},
	    {"---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
	     "metadata: {name: wl}\nspec:\n  selector: {matchLabels: {}}\n"
	     "  portLevelMtls: {\"80\": {mode: STRICT}}\n",
	     "PeerAuthentication default/wl: spec.portLevelMtls", "cannot have port-level mTLS"},
	    {"---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\n"
	     "spec:\n  host: up.local\n  trafficPolicy:\n    tls: {mode: ISTIO_MUTUAL}\n",
	     "spec.trafficPolicy.tls", "ISTIO_MUTUAL needs the Appliance's spec.meshIdentity"},
	    /* A credential without a CA (nor a "<name>-cacert" one) verifies no
	     * client certificate: refused for OPTIONAL_MUTUAL as for MUTUAL. */
	    {"  credentials:\n  - {name: c, certificate: a.crt, privateKey: a.key}\n" GW
	     "  servers:\n  - port: {number: 443, name: https-443-11, protocol: HTTPS}\n"
	     "    hosts: [\"*\"]\n    tls: {mode: OPTIONAL_MUTUAL, credentialName: c}\n",
	     "spec.servers[0].tls", "mode needs client CA certificates"},
	    {"  credentials:\n  - {name: c, certificate: a.crt, privateKey: a.key}\n" GW
	     "  servers:\n  - port: {number: 443, name: https-443-12, protocol: HTTPS}\n"
	     "    hosts: [\"*\"]\n    tls: {mode: MUTUAL, credentialName: c}\n",
	     "spec.servers[0].tls", "mode needs client CA certificates"},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct loaded l;
		char text[2048];

		snprintf(text, sizeof(text), APP "%s", cases[i].text);
		if (load(&l, text) == 0) {
			unload(&l);
			fail_msg("case %zu loaded", i);
		}
		assert_true(has_diag(&l.d, cases[i].field, cases[i].msg));
		assert_true(l.d.items[0].line > 0);
	}
}

static void test_peer_authentication(void **state)
{
	static const char mesh[] = "  namespace: edge\n  labels: {app: gw}\n"
				   "  meshIdentity: {certificate: a.crt, privateKey: a.key, "
				   "caCertificates: b.crt}\n"
				   "  proxyProtocol: {ports: [81]}\n";
	static const char pa[] =
	    "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
	    "metadata: {name: mesh, namespace: istio-system}\nspec: {mtls: {mode: DISABLE}}\n"
	    "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
	    "metadata: {name: ns, namespace: edge}\nspec: {mtls: {mode: STRICT}}\n"
	    "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
	    "metadata: {name: wl, namespace: edge}\nspec:\n  selector: {matchLabels: {app: gw}}\n"
	    "  mtls: {mode: UNSET}\n  portLevelMtls: {\"81\": {mode: PERMISSIVE}}\n";
	struct loaded l;
	char text[4096];

	(void)state;
	snprintf(text, sizeof(text),
		 APP
		 "%s" GW "  servers:\n  - port: {number: 80, name: http-80-7, protocol: HTTP}\n    "
		 "hosts: [\"*\"]\n"
		 "  - port: {number: 81, name: http-81, protocol: HTTP}\n    hosts: [\"*\"]\n%s",
		 mesh, pa);
	assert_int_equal(load(&l, text), 0);
	/* 80: the workload policy is UNSET, the namespace's STRICT applies. */
	assert_int_equal(l.t->listeners[0].peer_mtls, ISM_TLS_MUTUAL);
	assert_int_equal(l.t->listeners[0].proxy_protocol, 0);
	/* 81: the workload's port-level PERMISSIVE. */
	assert_int_equal(l.t->listeners[1].peer_mtls, ISM_TLS_OPTIONAL_MUTUAL);
	assert_int_equal(l.t->listeners[1].proxy_protocol, 1);
	assert_int_equal(l.t->mesh.n_certs, 1);
	unload(&l);
	/* A selector without labels is a namespace policy, as in Istio: the
	 * first namespace policy of the file applies, not this one. */
	snprintf(text, sizeof(text),
		 APP "%s" GW "  servers:\n  - port: {number: 80, name: http-80-8, protocol: "
		     "HTTP}\n    hosts: [\"*\"]\n"
		     "  - port: {number: 81, name: http-81-2, protocol: HTTP}\n    hosts: [\"*\"]\n"
		     "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
		     "metadata: {name: ns, namespace: edge}\nspec: {mtls: {mode: DISABLE}}\n"
		     "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
		     "metadata: {name: empty, namespace: edge}\n"
		     "spec: {selector: {matchLabels: {}}, mtls: {mode: STRICT}}\n",
		 mesh);
	assert_int_equal(load(&l, text), 0);
	assert_int_equal(l.t->listeners[0].peer_mtls, ISM_TLS_NONE);
	unload(&l);
	/* With creation times (a file exported from a cluster), the oldest of a
	 * level wins, as Istio keeps it: here the second of the file. */
	snprintf(text, sizeof(text),
		 APP
		 "%s" GW "  servers:\n  - port: {number: 80, name: http-80-9, protocol: "
		 "HTTP}\n    hosts: [\"*\"]\n"
		 "  - port: {number: 81, name: http-81-3, protocol: HTTP}\n    hosts: [\"*\"]\n"
		 "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
		 "metadata: {name: a, namespace: edge, creationTimestamp: 2024-05-02T00:00:00Z}\n"
		 "spec: {mtls: {mode: DISABLE}}\n"
		 "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
		 "metadata: {name: b, namespace: edge, creationTimestamp: 2024-05-01T00:00:00Z}\n"
		 "spec: {mtls: {mode: STRICT}}\n",
		 mesh);
	assert_int_equal(load(&l, text), 0);
	assert_int_equal(l.t->listeners[0].peer_mtls, ISM_TLS_MUTUAL);
	assert_true(has_diag(&l.d, "PeerAuthentication edge/a: metadata.name",
			     "PeerAuthentication edge/b, of the same level, is older"));
	unload(&l);
}

/* The policies that do not apply, and a mesh-wide STRICT over a plaintext
 * port, are told with their positions. */
static void test_peer_authentication_warnings(void **state)
{
	static const char mesh[] = "  namespace: edge\n  labels: {app: gw}\n"
				   "  meshIdentity: {certificate: a.crt, privateKey: a.key, "
				   "caCertificates: b.crt}\n";
	static const char pa[] =
	    "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
	    "metadata: {name: mesh, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n"
	    "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
	    "metadata: {name: mesh2, namespace: istio-system}\nspec: {mtls: {mode: DISABLE}}\n"
	    "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
	    "metadata: {name: rootsel, namespace: istio-system}\n"
	    "spec: {selector: {matchLabels: {app: gw}}, mtls: {mode: DISABLE}}\n"
	    "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
	    "metadata: {name: shopsel, namespace: shop}\n"
	    "spec: {selector: {matchLabels: {app: gw}}, mtls: {mode: DISABLE}}\n"
	    "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
	    "metadata: {name: shop, namespace: shop}\nspec: {mtls: {mode: DISABLE}}\n"
	    "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
	    "metadata: {name: other, namespace: edge}\n"
	    "spec: {selector: {matchLabels: {app: web}}, mtls: {mode: DISABLE}}\n";
	struct loaded l;
	char text[4096];

	(void)state;
	snprintf(text, sizeof(text),
		 APP "%s" GW "  servers:\n  - port: {number: 80, name: http-80-9, protocol: "
		     "HTTP}\n    hosts: [\"*\"]\n%s",
		 mesh, pa);
	assert_int_equal(load(&l, text), 0);
	assert_int_equal(l.t->listeners[0].peer_mtls, ISM_TLS_MUTUAL);
	assert_true(
	    has_diag(&l.d, "PeerAuthentication istio-system/mesh: spec.mtls.mode",
		     "the mesh-wide STRICT makes the plaintext HTTP port 80 (and any other) "
		     "mutual TLS only"));
	assert_true(has_diag(&l.d, "PeerAuthentication istio-system/mesh2: metadata.name",
			     "PeerAuthentication istio-system/mesh, of the same level, is first"));
	assert_true(has_diag(&l.d, "PeerAuthentication istio-system/rootsel: spec.selector",
			     "in the root namespace istio-system applies to no workload"));
	assert_true(has_diag(&l.d, "PeerAuthentication shop/shopsel: metadata.namespace",
			     "it selects workloads of namespace shop, not this appliance"));
	assert_true(has_diag(&l.d, "PeerAuthentication edge/other: spec.selector",
			     "it does not select this appliance"));
	/* shop's own policy speaks for shop's services (automatic mutual TLS). */
	assert_false(has_diag(&l.d, "PeerAuthentication shop/shop:", ""));
	unload(&l);
	/* Without meshIdentity, the mesh's STRICT overridden by the namespace's
	 * DISABLE (what its error says to do) asks for no certificate. */
	snprintf(text, sizeof(text),
		 APP
		 "  namespace: edge\n" GW "  servers:\n  - port: {number: 80, name: http-80-11, "
		 "protocol: HTTP}\n    hosts: [\"*\"]\n"
		 "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
		 "metadata: {name: mesh, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n"
		 "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
		 "metadata: {name: edge, namespace: edge}\nspec: {mtls: {mode: DISABLE}}\n");
	if (load(&l, text) != 0)
		ism_diags_print(stderr, &l.d);
	assert_non_null(l.t);
	assert_int_equal(l.t->listeners[0].peer_mtls, ISM_TLS_NONE);
	unload(&l);
	/* A namespace policy that sets a mode overrides the mesh's: no warning. */
	snprintf(text, sizeof(text),
		 APP "%s" GW "  servers:\n  - port: {number: 80, name: http-80-10, protocol: "
		     "HTTP}\n    hosts: [\"*\"]\n%s"
		     "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
		     "metadata: {name: edge, namespace: edge}\nspec: {mtls: {mode: PERMISSIVE}}\n",
		 mesh, pa);
	assert_int_equal(load(&l, text), 0);
	assert_int_equal(l.t->listeners[0].peer_mtls, ISM_TLS_OPTIONAL_MUTUAL);
	assert_false(has_diag(&l.d, "PeerAuthentication istio-system/mesh: spec.mtls.mode", ""));
	unload(&l);
}

/* A set of 16 names or more is looked up by hash (struct ism_name_index): it
 * picks what a scan of every name picks, exact first, then the longest
 * wildcard, then "*", the first of equal ones; an SNI's server likewise. */
static void test_name_index(void **state)
{
	static const char *const hosts[] = {"h3.example.com",
					    "H3.Example.COM:8080",
					    "h19.example.com",
					    "x.w.example.com",
					    "y.a.w.example.com",
					    "a.w.example.com",
					    "w.example.com",
					    "zz.example.com",
					    "example.com",
					    "other.org",
					    "",
					    ".example.com",
					    "h3.example.com.",
					    "a..w.example.com"};
	char text[16384];
	size_t len;
	struct loaded l;
	struct ism_listener scan;
	const struct ism_listener *li;

	(void)state;
	len =
	    (size_t)snprintf(text, sizeof(text),
			     APP GW "  servers:\n  - port: {number: 80, name: http, protocol: "
				    "HTTP}\n    hosts: [\"*\"]\n"
				    "  - port: {number: 443, name: https, protocol: HTTPS}\n"
				    "    hosts: [\"*\"]\n"
				    "    tls: {mode: SIMPLE, serverCertificate: a.crt, privateKey: "
				    "a.key}\n");
	for (int i = 0; i < 20; i++)
		len += (size_t)snprintf(text + len, sizeof(text) - len,
					"---\napiVersion: networking.istio.io/v1\nkind: "
					"VirtualService\nmetadata: {name: v%d}\nspec:\n  hosts: "
					"[h%d.example.com]\n  gateways: [gw]\n  http: [{route: "
					"[{destination: {host: up.local}}]}]\n",
					i, i);
	for (int i = 0; i < 3; i++)
		len += (size_t)snprintf(
		    text + len, sizeof(text) - len,
		    "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: "
		    "{name: w%d}\nspec:\n  hosts: [\"%s\"]\n  gateways: [gw]\n  http: [{route: "
		    "[{destination: {host: up.local}}]}]\n",
		    i,
		    (const char *[]){"*.w.example.com", "*.a.w.example.com", "*.example.com"}[i]);
	len += (size_t)snprintf(text + len, sizeof(text) - len,
				VS_ANY "    - destination: {host: up.local}\n");
	for (int i = 0; i < 18; i++)
		len += (size_t)snprintf(text + len, sizeof(text) - len,
					"  - port: {number: 8443, name: s%d, protocol: HTTPS}\n"
					"    hosts: [\"%s%d.example.com\"]\n"
					"    tls: {mode: SIMPLE, serverCertificate: a.crt, "
					"privateKey: a.key}\n",
					i, i == 17 ? "*.s" : "s", i);
	/* The servers of port 8443 go in the Gateway: moved before the
	 * VirtualServices. */
	assert_true(len < sizeof(text));
	{
		char *vs =
		    strstr(text, "---\napiVersion: networking.istio.io/v1\nkind: VirtualService");
		char *srv = strstr(text, "  - port: {number: 8443");
		size_t nsrv = strlen(srv), nvs = (size_t)(srv - vs);
		char *tmp = malloc(nvs);

		assert_non_null(tmp);
		memcpy(tmp, vs, nvs);
		memmove(vs, srv, nsrv);
		memcpy(vs + nsrv, tmp, nvs);
		free(tmp);
	}
	if (load(&l, text) != 0)
		ism_diags_print(stderr, &l.d);
	assert_non_null(l.t);
	for (uint32_t k = 0; k < l.t->n_listeners; k++) {
		li = &l.t->listeners[k];
		scan = *li;
		scan.sni_index.cap = 0;
		if (li->n_tls == 0) {
			assert_true(li->vhost_index.cap > 0);
			for (size_t h = 0; h < sizeof(hosts) / sizeof(hosts[0]); h++)
				assert_ptr_equal(ism_router_vhost(li->vhosts, li->n_vhosts,
								  &li->vhost_index, hosts[h],
								  strlen(hosts[h])),
						 ism_router_vhost(li->vhosts, li->n_vhosts, NULL,
								  hosts[h], strlen(hosts[h])));
			assert_string_equal(ism_router_vhost(li->vhosts, li->n_vhosts,
							     &li->vhost_index, "H3.example.com", 14)
						->domains[0]
						.p,
					    "h3.example.com");
			continue;
		}
		for (size_t h = 0; h < sizeof(hosts) / sizeof(hosts[0]); h++)
			assert_int_equal(ism_router_pick_server(li, hosts[h]),
					 ism_router_pick_server(&scan, hosts[h]));
		if (li->n_tls >= 16) {
			assert_true(li->sni_index.cap > 0);
			assert_int_equal(ism_router_pick_server(li, "s7.example.com"), 7);
			assert_int_equal(ism_router_pick_server(li, "q.s17.example.com"), 17);
			assert_int_equal(ism_router_pick_server(li, ""), -1);
		}
	}
	unload(&l);
}

/* The master fetches every kind of algorithm a handshake uses before it forks
 * (the workers inherit them): each one is there. */
static void test_tls_warm(void **state)
{
	const char *what = NULL;

	(void)state;
	assert_int_equal(ism_tls_warm(&what), 0);
	assert_null(what);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_tls_warm),
	    cmocka_unit_test(test_https_servers),
	    cmocka_unit_test(test_tls_terminated_tcp),
	    cmocka_unit_test(test_https_and_passthrough),
	    cmocka_unit_test(test_https_redirect_hosts),
	    cmocka_unit_test(test_partial_wildcard_hosts),
	    cmocka_unit_test(test_istio_mutual_sni),
	    cmocka_unit_test(test_upstream_alpn),
	    cmocka_unit_test(test_health_check_tls),
	    cmocka_unit_test(test_upstream_name_check),
	    cmocka_unit_test(test_errors),
	    cmocka_unit_test(test_dns_name_covers),
	    cmocka_unit_test(test_peer_authentication),
	    cmocka_unit_test(test_peer_authentication_warnings),
	    cmocka_unit_test(test_name_index),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
