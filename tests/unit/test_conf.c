/* Unit tests of conf/: loading, validation with positions, compilation. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cmocka.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "conf/conf.h"

#define ARENA_SIZE (4u << 20)

/* --- fixtures: the arena and an endpoint-id table --- */

struct ep_table {
	char keys[64][256];
	bool hc[64];
	size_t n;
	size_t cap; /* ids beyond cap fail with -ENOSPC */
};

static int test_ep_id(void *ctx, const char *key, bool has_hc, uint32_t *id)
{
	struct ep_table *t = ctx;

	for (size_t i = 0; i < t->n; i++) {
		if (strcmp(t->keys[i], key) == 0) {
			*id = (uint32_t)i + 100;
			return 0;
		}
	}
	if (t->n >= t->cap)
		return -ENOSPC;
	snprintf(t->keys[t->n], sizeof(t->keys[0]), "%s", key);
	t->hc[t->n] = has_hc;
	*id = (uint32_t)t->n + 100;
	t->n++;
	return 0;
}

struct fx {
	void *mem;
	struct ism_arena arena;
	struct ep_table eps;
	struct ism_diags d;
	struct ism_conf *conf;
	const struct ism_table *t;
};

static int fx_setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	if (f == NULL)
		return -1;
	f->mem = malloc(ARENA_SIZE);
	if (f->mem == NULL) {
		free(f);
		return -1;
	}
	ism_arena_init(&f->arena, f->mem, ARENA_SIZE);
	f->eps.cap = 64;
	ism_diags_init(&f->d);
	*state = f;
	return 0;
}

static int fx_teardown(void **state)
{
	struct fx *f = *state;

	ism_conf_free(f->conf);
	free(f->mem);
	free(f);
	return 0;
}

static void dump(const struct ism_diags *d)
{
	ism_diags_print(stderr, d);
}

/* Loads text (must succeed) and compiles it (must succeed). */
static const struct ism_table *load_compile(struct fx *f, const char *text)
{
	int rc = ism_conf_load_buf("t.yaml", text, strlen(text), &f->conf, &f->d);

	if (rc != 0)
		dump(&f->d);
	assert_int_equal(rc, 0);
	assert_int_equal(f->d.n_errors, 0);
	rc = ism_conf_compile(f->conf, &f->arena, test_ep_id, &f->eps, &f->t, &f->d);
	if (rc != 0)
		dump(&f->d);
	assert_int_equal(rc, 0);
	assert_non_null(f->t);
	assert_int_equal(f->t->magic, ISM_TABLE_MAGIC);
	return f->t;
}

static bool has_warning(const struct ism_diags *d, const char *field_part, const char *msg_part)
{
	for (size_t i = 0; i < d->n && i < 64; i++)
		if (d->items[i].severity == ISM_DIAG_WARNING &&
		    strstr(d->items[i].field, field_part) != NULL &&
		    strstr(d->items[i].msg, msg_part) != NULL)
			return true;
	return false;
}

static const struct ism_cluster *cluster(const struct ism_table *t, const char *name)
{
	for (uint32_t i = 0; i < t->n_clusters; i++)
		if (strcmp(t->clusters[i].name.p, name) == 0)
			return &t->clusters[i];
	fail_msg("no cluster %s", name);
	return NULL;
}

static uint16_t ep_port(const struct ism_endpoint *e)
{
	return ntohs(((const struct sockaddr_in *)&e->addr)->sin_port);
}

static char *read_all(const char *path)
{
	FILE *fp = fopen(path, "rb");
	char *buf;
	long n;

	if (fp == NULL)
		return NULL;
	if (fseek(fp, 0, SEEK_END) != 0 || (n = ftell(fp)) < 0 || fseek(fp, 0, SEEK_SET) != 0) {
		fclose(fp);
		return NULL;
	}
	buf = malloc((size_t)n + 1);
	if (buf != NULL && fread(buf, 1, (size_t)n, fp) != (size_t)n) {
		free(buf);
		buf = NULL;
	}
	if (buf != NULL)
		buf[n] = '\0';
	fclose(fp);
	return buf;
}

#define APP                                                                                        \
	"apiVersion: isthmus.io/v1\n"                                                              \
	"kind: Appliance\n"                                                                        \
	"metadata:\n"                                                                              \
	"  name: t\n"                                                                              \
	"spec:\n"                                                                                  \
	"  locality: eu-west/eu-west-1a\n"

/* --- the shipped example --- */

static void test_example_file(void **state)
{
	struct fx *f = *state;
	const struct ism_table *t;
	const struct ism_listener *l;
	const struct ism_vhost *vh;
	const struct ism_cluster *api, *v1, *v2;
	const struct sockaddr_in *sin;
	int rc;

	rc = ism_conf_load("conf/isthmus.yaml", &f->conf, &f->d);
	if (rc != 0 || f->d.n != 0)
		dump(&f->d);
	assert_int_equal(rc, 0);
	assert_int_equal(f->d.n, 0); /* not even a warning */
	rc = ism_conf_compile(f->conf, &f->arena, test_ep_id, &f->eps, &t, &f->d);
	assert_int_equal(rc, 0);

	assert_int_equal(t->magic, ISM_TABLE_MAGIC);
	assert_int_equal(t->gen, 0);
	assert_string_equal(t->name.p, "demo");
	assert_string_equal(t->region.p, "eu-west");
	assert_string_equal(t->zone.p, "eu-west-1a");
	assert_string_equal(t->subzone.p, "");
	assert_int_equal(t->workers, 2);
	assert_string_equal(t->control_socket.p, "/tmp/isthmus/isthmus.sock");
	assert_int_equal(t->admin_addr.ss_family, AF_INET);
	assert_int_equal(t->admin_addrlen, sizeof(struct sockaddr_in));
	assert_int_equal(ntohs(((const struct sockaddr_in *)&t->admin_addr)->sin_port), 9901);
	assert_int_equal(t->timeouts.upstream_connect_ms, 2000);
	assert_int_equal(t->timeouts.request_header_ms, 10000);
	assert_int_equal(t->timeouts.drain_ms, 10000);

	assert_int_equal(t->n_listeners, 1);
	l = &t->listeners[0];
	assert_int_equal(l->port, 8080);
	assert_string_equal(l->name.p, "http");
	sin = (const struct sockaddr_in *)&l->addr;
	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(ntohs(sin->sin_port), 8080);
	assert_int_equal(ntohl(sin->sin_addr.s_addr), 0x7f000001);
	assert_int_equal(l->n_vhosts, 1);
	vh = &l->vhosts[0];
	assert_string_equal(vh->name.p, "demo/demo");
	assert_int_equal(vh->n_domains, 1);
	assert_string_equal(vh->domains[0].p, "*");
	assert_int_equal(vh->n_routes, 3);
	assert_string_equal(vh->routes[0].name.p, "api");
	assert_string_equal(vh->routes[1].name.p, "web-canary");
	assert_string_equal(vh->routes[2].name.p, "web");
	assert_int_equal(vh->routes[0].match[0].uri.kind, ISM_SM_PREFIX);
	assert_string_equal(vh->routes[0].match[0].uri.s.p, "/api");
	assert_int_equal(vh->routes[0].timeout_ms, 5000);
	assert_int_equal(vh->routes[1].match[0].n_headers, 1);
	assert_string_equal(vh->routes[1].match[0].headers[0].name.p, "x-canary");
	assert_int_equal(vh->routes[1].match[0].headers[0].m.kind, ISM_SM_EXACT);
	assert_string_equal(vh->routes[1].match[0].headers[0].m.s.p, "true");
	assert_int_equal(vh->routes[2].n_match, 0);
	assert_int_equal(vh->routes[2].n_dest, 2);
	assert_int_equal(vh->routes[2].dest[0].weight, 90);
	assert_int_equal(vh->routes[2].dest[1].weight, 10);
	assert_int_equal(vh->routes[2].total_weight, 100);

	assert_int_equal(t->n_clusters, 3);
	api = cluster(t, "outbound|80||api.demo.internal");
	v1 = cluster(t, "outbound|80|v1|web.demo.internal");
	v2 = cluster(t, "outbound|80|v2|web.demo.internal");
	assert_ptr_equal(&t->clusters[vh->routes[0].dest[0].cluster], api);
	assert_ptr_equal(&t->clusters[vh->routes[1].dest[0].cluster], v2);
	assert_ptr_equal(&t->clusters[vh->routes[2].dest[0].cluster], v1);
	assert_ptr_equal(&t->clusters[vh->routes[2].dest[1].cluster], v2);

	assert_int_equal(api->lb, ISM_LB_ROUND_ROBIN);
	assert_int_equal(api->connect_timeout_ms, 2000); /* the Appliance default */
	assert_int_equal(api->idle_timeout_ms, 60000);
	assert_int_equal(api->n_endpoints, 4);
	for (uint32_t i = 0; i < 4; i++)
		assert_int_equal(ep_port(&api->endpoints[i]), 18081); /* targetPort */
	assert_string_equal(api->endpoints[0].addr_text.p, "127.0.0.1:18081");
	assert_int_equal(api->endpoints[0].priority, 0);
	assert_int_equal(api->endpoints[1].priority, 1);
	assert_int_equal(api->endpoints[2].priority, 1);
	assert_int_equal(api->endpoints[3].priority, 1);
	assert_string_equal(api->endpoints[3].locality.p, "us-east/us-east-1a");
	assert_non_null(api->hc);
	assert_string_equal(api->hc->path.p, "/healthz");
	assert_string_equal(api->hc->host.p, "api.demo.internal");
	assert_int_equal(api->hc->interval_ms, 2000);
	assert_int_equal(api->hc->timeout_ms, 500);
	assert_int_equal(api->hc->n_statuses, 1);
	assert_int_equal(api->hc->statuses[0][0], 200);
	assert_int_equal(api->hc->statuses[0][1], 201);

	assert_int_equal(v1->lb, ISM_LB_LEAST_REQUEST);
	assert_int_equal(v2->lb, ISM_LB_ROUND_ROBIN); /* subset overrides */
	assert_int_equal(v1->connect_timeout_ms, 1000);
	assert_int_equal(v2->connect_timeout_ms, 1000); /* inherited */
	assert_int_equal(v1->idle_timeout_ms, 30000);
	assert_int_equal(v1->n_endpoints, 4);
	assert_int_equal(v2->n_endpoints, 1);
	assert_string_equal(v2->endpoints[0].addr_text.p, "127.0.0.1:18083");
	assert_int_equal(v2->endpoints[0].priority, 0);
	assert_string_equal(v1->endpoints[3].addr_text.p, "127.0.0.4:18082");
	assert_int_equal(v1->endpoints[3].priority, 1);
	assert_int_equal(v1->hc->statuses[0][0], 200);
	assert_int_equal(v1->hc->statuses[0][1], 300);
	assert_ptr_equal(v1->hc, v2->hc); /* one check per service host */

	/* Endpoint ids come from the callback, keyed by service host and address. */
	assert_int_equal(f->eps.n, 4 + 4 + 1);
	assert_string_equal(f->eps.keys[api->endpoints[0].id - 100],
			    "api.demo.internal|127.0.0.1:18081");
	assert_string_equal(f->eps.keys[v2->endpoints[0].id - 100],
			    "web.demo.internal|127.0.0.1:18083");
	assert_true(f->eps.hc[api->endpoints[0].id - 100]);

	/* Every pointer of the table points into the arena. */
	assert_true((const unsigned char *)t >= f->arena.base &&
		    (const unsigned char *)t < f->arena.base + f->arena.used);
	assert_true((const unsigned char *)v1->endpoints[0].addr_text.p >= f->arena.base &&
		    (const unsigned char *)v1->endpoints[0].addr_text.p <
			f->arena.base + f->arena.used);
}

/* --- defaults, matches, regexes --- */

static const char matches_yaml[] = APP "---\n"
				       "apiVersion: networking.istio.io/v1beta1\n"
				       "kind: Gateway\n"
				       "metadata:\n"
				       "  name: gw\n"
				       "spec:\n"
				       "  servers:\n"
				       "  - port: {number: 8080, name: web, protocol: HTTP}\n"
				       "    hosts: [\"*\"]\n"
				       "---\n"
				       "apiVersion: networking.istio.io/v1alpha3\n"
				       "kind: VirtualService\n"
				       "metadata:\n"
				       "  name: m\n"
				       "spec:\n"
				       "  hosts: [\"Shop.Example.com\"]\n"
				       "  gateways: [gw]\n"
				       "  http:\n"
				       "  - match:\n"
				       "    - uri: {regex: \"/item/[0-9]+\"}\n"
				       "      method: {exact: GET}\n"
				       "      ignoreUriCase: true\n"
				       "    - uri: {prefix: /Static}\n"
				       "      ignoreUriCase: true\n"
				       "      scheme: {exact: http}\n"
				       "      authority: {prefix: shop}\n"
				       "      port: 8080\n"
				       "      headers:\n"
				       "        X-Present: {}\n"
				       "        x-re: {regex: \"a|b\"}\n"
				       "      withoutHeaders:\n"
				       "        x-debug: {exact: \"1\"}\n"
				       "      queryParams:\n"
				       "        Flag: {exact: \"\"}\n"
				       "    route:\n"
				       "    - destination: {host: shop}\n"
				       "      weight: 0\n"
				       "  - route:\n"
				       "    - destination: {host: shop, port: {number: 81}}\n"
				       "    - destination: {host: shop}\n"
				       "      weight: 7\n"
				       "---\n"
				       "apiVersion: networking.istio.io/v1\n"
				       "kind: ServiceEntry\n"
				       "metadata:\n"
				       "  name: shop\n"
				       "spec:\n"
				       "  hosts: [shop]\n"
				       "  ports:\n"
				       "  - {number: 81, name: http}\n"
				       "  resolution: STATIC\n"
				       "  endpoints:\n"
				       "  - {address: \"::1\", locality: eu-west/eu-west-1a/sub}\n"
				       "  - {address: 127.0.0.9}\n";

static bool re_match(const struct ism_strmatch *m, const char *s)
{
	pcre2_match_data *md;
	int rc;

	/* The code's own allocator is sealed: from the pattern is safe. */
	md = pcre2_match_data_create_from_pattern(m->re, NULL);
	assert_non_null(md);
	rc = pcre2_match(m->re, (PCRE2_SPTR)s, strlen(s), 0, 0, md, NULL);
	pcre2_match_data_free(md);
	return rc >= 0;
}

static void test_matches_and_defaults(void **state)
{
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, matches_yaml);
	const struct ism_vhost *vh;
	const struct ism_match *m0, *m1;
	const struct ism_cluster *c;
	size_t used;

	/* Defaults. */
	assert_int_equal(t->workers, 0);
	assert_string_equal(t->control_socket.p, "/run/isthmus/isthmus.sock");
	assert_int_equal(t->admin_addr.ss_family, 0);
	assert_string_equal(t->user.p, "");
	assert_int_equal(t->limits.max_request_header_bytes, 32768);
	assert_int_equal(t->limits.max_request_headers, 100);
	assert_int_equal(t->limits.max_uri_bytes, 8192);
	assert_int_equal(t->limits.max_request_body_bytes, 0);
	assert_int_equal(t->limits.max_connections, 16384);
	assert_int_equal(t->limits.max_response_header_bytes, 65536);
	assert_int_equal(t->timeouts.request_header_ms, 10000);
	assert_int_equal(t->timeouts.idle_ms, 60000);
	assert_int_equal(t->timeouts.upstream_connect_ms, 10000);
	assert_int_equal(t->timeouts.upstream_response_ms, 60000);
	assert_int_equal(t->timeouts.drain_ms, 30000);
	assert_int_equal(t->n_listeners, 1);
	assert_int_equal(
	    ntohl(((const struct sockaddr_in *)&t->listeners[0].addr)->sin_addr.s_addr),
	    0); /* 0.0.0.0 */
	assert_string_equal(t->listeners[0].name.p, "web");

	vh = &t->listeners[0].vhosts[0];
	assert_string_equal(vh->domains[0].p, "shop.example.com"); /* lowercased */
	assert_int_equal(vh->n_routes, 2);
	assert_string_equal(vh->routes[0].name.p, "default/m#0");
	assert_string_equal(vh->routes[1].name.p, "default/m#1");
	assert_int_equal(vh->routes[0].n_match, 2);
	m0 = &vh->routes[0].match[0];
	m1 = &vh->routes[0].match[1];
	assert_int_equal(m0->uri.kind, ISM_SM_REGEX);
	assert_int_equal(m0->uri.ignore_case, 0); /* ignoreUriCase: exact and prefix only */
	assert_non_null(m0->uri.re);
	assert_true(re_match(&m0->uri, "/item/42"));
	assert_false(re_match(&m0->uri, "/item/42x")); /* anchored at the end */
	assert_false(re_match(&m0->uri, "x/item/42")); /* and at the start */
	assert_int_equal(m0->method.kind, ISM_SM_EXACT);
	assert_int_equal(m0->scheme.kind, ISM_SM_ANY);
	assert_int_equal(m1->uri.kind, ISM_SM_PREFIX);
	assert_int_equal(m1->uri.ignore_case, 1);
	assert_string_equal(m1->uri.s.p, "/Static");
	assert_int_equal(m1->scheme.kind, ISM_SM_EXACT);
	assert_int_equal(m1->authority.kind, ISM_SM_PREFIX);
	assert_int_equal(m1->port, 8080);
	assert_int_equal(m1->n_headers, 2);
	assert_string_equal(m1->headers[0].name.p, "x-present"); /* lowercased */
	assert_int_equal(m1->headers[0].m.kind, ISM_SM_PRESENT);
	assert_true(re_match(&m1->headers[1].m, "b"));
	assert_false(re_match(&m1->headers[1].m, "ab")); /* the alternation is grouped */
	assert_int_equal(m1->n_without_headers, 1);
	assert_string_equal(m1->without_headers[0].m.s.p, "1");
	assert_int_equal(m1->n_query, 1);
	assert_string_equal(m1->query[0].name.p, "Flag"); /* as written */
	assert_int_equal(m1->query[0].m.kind, ISM_SM_EXACT);
	assert_int_equal(m1->query[0].m.s.len, 0);

	/* A single destination takes everything, whatever its weight. */
	assert_int_equal(vh->routes[0].dest[0].weight, 100);
	/* Several: a missing weight is 0. */
	assert_int_equal(vh->routes[1].dest[0].weight, 0);
	assert_int_equal(vh->routes[1].dest[1].weight, 7);
	assert_int_equal(vh->routes[1].total_weight, 7);
	/* All three destinations are one cluster (the service's only port). */
	assert_int_equal(t->n_clusters, 1);
	c = cluster(t, "outbound|81||shop.default.svc.cluster.local");
	assert_int_equal(c->lb, ISM_LB_LEAST_REQUEST); /* Istio's default */
	assert_int_equal(c->connect_timeout_ms, 10000);
	assert_null(c->hc);
	assert_int_equal(c->n_endpoints, 2);
	assert_int_equal(c->endpoints[0].addr.ss_family, AF_INET6);
	assert_int_equal(c->endpoints[0].addrlen, sizeof(struct sockaddr_in6));
	assert_string_equal(c->endpoints[0].addr_text.p, "[::1]:81");
	assert_int_equal(c->endpoints[0].priority, 0); /* same region and zone */
	assert_int_equal(c->endpoints[0].weight, 1);
	assert_int_equal(c->endpoints[1].priority, 1); /* no locality */
	assert_false(f->eps.hc[0]);

	/* The table fits, and a too small arena is -ENOMEM with a diagnostic. */
	used = f->arena.used;
	ism_arena_init(&f->arena, f->mem, used / 2);
	assert_int_equal(ism_conf_compile(f->conf, &f->arena, test_ep_id, &f->eps, &t, &f->d),
			 -ENOMEM);
	assert_int_equal(f->d.n_errors, 1);
	assert_non_null(strstr(f->d.items[f->d.n - 1].msg, "does not fit"));
}

/* The endpoint table full: the callback's error is returned and reported. */
static void test_ep_id_full(void **state)
{
	struct fx *f = *state;
	const struct ism_table *t;

	assert_int_equal(
	    ism_conf_load_buf("t.yaml", matches_yaml, strlen(matches_yaml), &f->conf, &f->d), 0);
	f->eps.cap = 1;
	assert_int_equal(ism_conf_compile(f->conf, &f->arena, test_ep_id, &f->eps, &t, &f->d),
			 -ENOSPC);
	assert_null(t);
	assert_int_equal(f->d.n_errors, 1);
	assert_non_null(strstr(f->d.items[0].msg, "127.0.0.9:81"));
}

/* Gateway host patterns and namespaces decide the domains of a VirtualService. */
static void test_binding(void **state)
{
	static const char yaml[] = APP
	    "  namespace: front\n"
	    "---\n"
	    "apiVersion: networking.istio.io/v1\n"
	    "kind: Gateway\n"
	    "metadata: {name: a}\n"
	    "spec:\n"
	    "  servers:\n"
	    "  - port: {number: 80, name: http, protocol: HTTP}\n"
	    "    hosts: [\"*.example.com\", \"other/foo.com\", \"./bar.com\", \"*/x.org\"]\n"
	    "---\n"
	    "apiVersion: networking.istio.io/v1\n"
	    "kind: Gateway\n"
	    "metadata: {name: b, namespace: edge}\n"
	    "spec:\n"
	    "  servers:\n"
	    "  - port: {number: 80, protocol: HTTP}\n"
	    "    hosts: [\"front/one.net\"]\n"
	    "  - port: {number: 80}\n"
	    "    bind: 127.0.0.5\n"
	    "    hosts: [\"*\"]\n"
	    "---\n"
	    "apiVersion: networking.istio.io/v1\n"
	    "kind: VirtualService\n"
	    "metadata: {name: v}\n"
	    "spec:\n"
	    "  hosts: [a.example.com, example.com, \"*.example.com\", bar.com, foo.com, x.org]\n"
	    "  gateways: [a]\n"
	    "  http:\n"
	    "  - route: [{destination: {host: s, port: {number: 80}}}]\n"
	    "---\n"
	    "apiVersion: networking.istio.io/v1\n"
	    "kind: VirtualService\n"
	    "metadata: {name: w}\n"
	    "spec:\n"
	    "  hosts: [\"*\"]\n"
	    "  gateways: [edge/b, mesh]\n"
	    "  http:\n"
	    "  - route: [{destination: {host: s}}]\n";
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_listener *l0, *l1;

	/* Gateway b's first server shares 0.0.0.0:80 with a; its second binds apart. */
	assert_int_equal(t->n_listeners, 2);
	l0 = &t->listeners[0];
	l1 = &t->listeners[1];
	assert_int_equal(l0->port, 80);
	assert_string_equal(l0->name.p, "http");
	assert_int_equal(ntohl(((const struct sockaddr_in *)&l1->addr)->sin_addr.s_addr),
			 0x7f000005);
	assert_int_equal(l0->n_vhosts, 2);
	assert_string_equal(l0->vhosts[0].name.p, "front/v");
	assert_int_equal(l0->vhosts[0].n_domains, 4);
	assert_string_equal(l0->vhosts[0].domains[0].p, "a.example.com");
	assert_string_equal(l0->vhosts[0].domains[1].p, "*.example.com");
	assert_string_equal(l0->vhosts[0].domains[2].p, "bar.com"); /* "." = Gateway ns */
	assert_string_equal(l0->vhosts[0].domains[3].p, "x.org");
	/* "*" takes the server's host as its domain. */
	assert_string_equal(l0->vhosts[1].name.p, "front/w");
	assert_int_equal(l0->vhosts[1].n_domains, 1);
	assert_string_equal(l0->vhosts[1].domains[0].p, "one.net");
	assert_int_equal(l1->n_vhosts, 1);
	assert_string_equal(l1->vhosts[0].domains[0].p, "*");
	/* No ServiceEntry for s: a warning, and an empty cluster. */
	assert_true(has_warning(&f->d, "VirtualService front/v: spec.http[0].route[0]",
				"no ServiceEntry for host s.front.svc.cluster.local"));
	assert_int_equal(t->n_clusters, 2);
	assert_string_equal(t->clusters[0].name.p, "outbound|80||s.front.svc.cluster.local");
	assert_string_equal(t->clusters[1].name.p, "outbound|0||s.front.svc.cluster.local");
	assert_int_equal(t->clusters[0].n_endpoints, 0);
	/* Both VirtualServices use a gateway: no mesh-only warning. */
	assert_false(has_warning(&f->d, "", "no gateway of this appliance"));
}

/* Durations in Istio's (Go's) form, kept in milliseconds. */
static void test_durations(void **state)
{
	static const char yaml[] = APP "  timeouts:\n"
				       "    requestHeader: 1.5s\n"
				       "    idle: 2m\n"
				       "    upstreamConnect: 250ms\n"
				       "    upstreamResponse: 1m30s\n"
				       "    drain: 100us\n";
	static const char big[] = APP "  timeouts:\n    idle: 1h\n";
	static const char over[] = APP "  timeouts:\n    idle: 5000h\n";
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	struct ism_conf *c;

	assert_int_equal(t->timeouts.request_header_ms, 1500);
	assert_int_equal(t->timeouts.idle_ms, 120000);
	assert_int_equal(t->timeouts.upstream_connect_ms, 250);
	assert_int_equal(t->timeouts.upstream_response_ms, 90000);
	assert_int_equal(t->timeouts.drain_ms, 1); /* rounded up, never 0 */
	assert_int_equal(ism_conf_load_buf("t.yaml", big, strlen(big), &c, &f->d), 0);
	ism_conf_free(c);
	/* More than 2^32 ms does not fit. */
	assert_int_equal(ism_conf_load_buf("t.yaml", over, strlen(over), &c, &f->d), -EINVAL);
	assert_null(c);
}

/* --- the Istio samples --- */

static const char samples_prefix[] =
    APP "---\n"
	"apiVersion: networking.istio.io/v1\n"
	"kind: ServiceEntry\n"
	"metadata: {name: bookinfo}\n"
	"spec:\n"
	"  hosts: [productpage, details, ratings]\n"
	"  ports: [{number: 9080, name: http, protocol: HTTP}]\n"
	"  resolution: STATIC\n"
	"  endpoints:\n"
	"  - {address: 127.0.0.1, labels: {version: v1}}\n"
	"---\n"
	"apiVersion: networking.istio.io/v1\n"
	"kind: ServiceEntry\n"
	"metadata: {name: reviews}\n"
	"spec:\n"
	"  hosts: [reviews]\n"
	"  ports: [{number: 9080, name: http, protocol: HTTP}]\n"
	"  resolution: STATIC\n"
	"  endpoints:\n"
	"  - {address: 127.0.0.1, ports: {http: 9081}, labels: {version: v1}}\n"
	"  - {address: 127.0.0.1, ports: {http: 9082}, labels: {version: v2}}\n"
	"  - {address: 127.0.0.1, ports: {http: 9083}, labels: {version: v3}}\n"
	"---\n"
	"apiVersion: networking.istio.io/v1\n"
	"kind: ServiceEntry\n"
	"metadata: {name: helloworld}\n"
	"spec:\n"
	"  hosts: [helloworld]\n"
	"  ports: [{number: 5000, name: http, protocol: HTTP}]\n"
	"  resolution: STATIC\n"
	"  endpoints: [{address: 127.0.0.1}]\n"
	"---\n";

static const char *samples_dir(void)
{
	const char *env = getenv("ISM_SAMPLES_DIR");

	return env != NULL && env[0] ? env : "../shared/istio-samples";
}

/* Loads prefix + (destination-rule-all.yaml unless it is the sample) + the sample. */
static const struct ism_table *load_sample(struct fx *f, const char *name)
{
	char path[512];
	char *sample, *drs = NULL, *text;
	const struct ism_table *t;
	size_t len;

	snprintf(path, sizeof(path), "%s/%s", samples_dir(), name);
	sample = read_all(path);
	if (sample == NULL)
		fail_msg("cannot read %s (set ISM_SAMPLES_DIR)", path);
	if (strcmp(name, "destination-rule-all.yaml") != 0) {
		snprintf(path, sizeof(path), "%s/destination-rule-all.yaml", samples_dir());
		drs = read_all(path);
		assert_non_null(drs);
	}
	len = strlen(samples_prefix) + (drs ? strlen(drs) : 0) + strlen(sample) + 16;
	text = malloc(len);
	assert_non_null(text);
	snprintf(text, len, "%s%s%s%s", samples_prefix, drs ? drs : "", drs ? "\n---\n" : "",
		 sample);
	t = load_compile(f, text);
	free(text);
	free(drs);
	free(sample);
	return t;
}

static void test_sample_bookinfo(void **state)
{
	struct fx *f = *state;
	const struct ism_table *t = load_sample(f, "bookinfo-gateway.yaml");
	const struct ism_route *r;

	assert_int_equal(t->n_listeners, 1);
	assert_int_equal(t->listeners[0].port, 8080);
	assert_int_equal(t->listeners[0].n_vhosts, 1);
	assert_string_equal(t->listeners[0].vhosts[0].name.p, "default/bookinfo");
	r = &t->listeners[0].vhosts[0].routes[0];
	assert_int_equal(r->n_match, 5);
	assert_int_equal(r->match[0].uri.kind, ISM_SM_EXACT);
	assert_string_equal(r->match[0].uri.s.p, "/productpage");
	assert_int_equal(r->match[1].uri.kind, ISM_SM_PREFIX);
	assert_string_equal(r->match[4].uri.s.p, "/api/v1/products");
	assert_string_equal(t->clusters[r->dest[0].cluster].name.p,
			    "outbound|9080||productpage.default.svc.cluster.local");
	assert_int_equal(t->clusters[r->dest[0].cluster].n_endpoints, 1);
	assert_int_equal(f->d.n_errors, 0);
}

static void test_sample_helloworld(void **state)
{
	struct fx *f = *state;
	const struct ism_table *t = load_sample(f, "helloworld-gateway.yaml");

	assert_int_equal(t->listeners[0].port, 80);
	assert_string_equal(t->listeners[0].vhosts[0].routes[0].match[0].uri.s.p, "/hello");
	assert_string_equal(t->clusters[0].name.p,
			    "outbound|5000||helloworld.default.svc.cluster.local");
}

static void test_sample_drs(void **state)
{
	struct fx *f = *state;
	const struct ism_table *t = load_sample(f, "destination-rule-all.yaml");

	assert_int_equal(t->n_listeners, 0);
	assert_int_equal(t->n_clusters, 0);
	assert_int_equal(f->d.n, 0);
}

static void test_sample_peer_authn(void **state)
{
	struct fx *f = *state;

	load_sample(f, "testdata-peer-authn-strict.yaml");
	assert_true(has_warning(&f->d, "PeerAuthentication testns/default", "not enforced yet"));
}

static void test_sample_weighted(void **state)
{
	struct fx *f = *state;
	const struct ism_table *t = load_sample(f, "testdata-rule-weighted-route.yaml");

	/* Bound to the mesh only: loaded, warned about, not routed at the gateway. */
	assert_true(has_warning(&f->d, "VirtualService testns/c-weighted",
				"no gateway of this appliance uses it"));
	assert_int_equal(t->n_listeners, 0);
	assert_int_equal(t->n_clusters, 0);
}

static void test_sample_reviews(void **state)
{
	struct fx *f = *state;

	load_sample(f, "virtual-service-reviews-80-20.yaml");
	assert_true(has_warning(&f->d, "VirtualService default/reviews",
				"no gateway of this appliance uses it"));
}

static void test_sample_jason(void **state)
{
	struct fx *f = *state;

	load_sample(f, "virtual-service-reviews-jason-v2-v3.yaml");
	assert_true(has_warning(&f->d, "VirtualService default/reviews",
				"no gateway of this appliance uses it"));
}

/* --- invalid files: exact position, field path and message --- */

struct bad {
	const char *name;
	const char *yaml;
	int line, col;
	const char *field; /* exact */
	const char *msg;   /* substring */
};

#define GW_DOC                                                                                     \
	"---\n"                                                                                    \
	"apiVersion: networking.istio.io/v1\n"                                                     \
	"kind: Gateway\n"                                                                          \
	"metadata: {name: gw}\n"                                                                   \
	"spec:\n"                                                                                  \
	"  servers: [{port: {number: 80, protocol: HTTP}, hosts: [\"*\"]}]\n"

/* APP is lines 1-6, GW_DOC lines 7-12, the VirtualService lines 13-21; its first
 * route entry is line 22. */
#define VS_HEAD                                                                                    \
	APP GW_DOC "---\n"                                                                         \
		   "apiVersion: networking.istio.io/v1\n"                                          \
		   "kind: VirtualService\n"                                                        \
		   "metadata: {name: vs, namespace: shop}\n"                                       \
		   "spec:\n"                                                                       \
		   "  hosts: [\"*\"]\n"                                                            \
		   "  gateways: [default/gw]\n"                                                    \
		   "  http:\n"                                                                     \
		   "  - route:\n"

#define VS_FIELD "VirtualService shop/vs: "

static const struct bad bads[] = {
    {"syntax error", APP "  workers: [1, 2\n  user: x\n", 8, 7, "",
     "YAML syntax error: did not find expected ',' or ']'"},
    {"tab indentation", APP "\tuser: x\n", 7, 1, "", "YAML syntax error"},
    {"duplicate key", APP "  workers: 2\n  locality: a/b\n", 8, 3, "",
     "duplicate key \"locality\" (first at line 6, column 3)"},
    {"missing Appliance", GW_DOC, 0, 0, "", "no Appliance document"},
    {"two Appliances", APP "---\n" APP, 8, 1, "",
     "a second Appliance document (the first is at line 1)"},
    {"bad locality",
     "apiVersion: isthmus.io/v1\nkind: Appliance\nmetadata: {name: t}\n"
     "spec:\n  locality: eu-west\n",
     5, 13, "Appliance t: spec.locality", "must be \"region/zone\""},
    {"workers out of range", APP "  workers: 65\n", 7, 12, "Appliance t: spec.workers",
     "between 1 and 64"},
    {"bad appliance duration", APP "  timeouts:\n    idle: 10\n", 8, 11,
     "Appliance t: spec.timeouts.idle", "must be a duration"},
    {"negative duration", APP "  timeouts:\n    drain: -5s\n", 8, 12,
     "Appliance t: spec.timeouts.drain", "must be a duration"},
    {"bad status range",
     APP "  healthChecks:\n  - host: a.b\n    expectedStatuses: [200, "
	 "\"300-200\"]\n",
     9, 29, "Appliance t: spec.healthChecks[0].expectedStatuses[1]", "range"},
    {"wrong type",
     APP "---\napiVersion: networking.istio.io/v1\nkind: Gateway\n"
	 "metadata: {name: gw}\nspec:\n  servers: x\n",
     12, 12, "Gateway default/gw: spec.servers", "expected a list, got a string"},
    {"bad port",
     APP "---\napiVersion: networking.istio.io/v1\nkind: Gateway\n"
	 "metadata: {name: gw}\nspec:\n  servers:\n  - port: {number: 70000}\n"
	 "    hosts: [\"*\"]\n",
     13, 20, "Gateway default/gw: spec.servers[0].port.number", "between 1 and 65535"},
    {"tls block",
     APP "---\napiVersion: networking.istio.io/v1\nkind: Gateway\n"
	 "metadata: {name: gw}\nspec:\n  servers:\n  - port: {number: 443}\n"
	 "    hosts: [\"*\"]\n    tls:\n      mode: SIMPLE\n",
     15, 5, "Gateway default/gw: spec.servers[0].tls", "not implemented yet"},
    {"HTTPS protocol",
     APP "---\napiVersion: networking.istio.io/v1\nkind: Gateway\n"
	 "metadata: {name: gw}\nspec:\n  servers:\n"
	 "  - port: {number: 443, protocol: HTTPS}\n    hosts: [\"*\"]\n",
     13, 35, "Gateway default/gw: spec.servers[0].port.protocol", "HTTPS is not implemented yet"},
    {"unknown field", VS_HEAD "    - destination: {host: a.b}\n    foo: 1\n", 23, 5,
     VS_FIELD "spec.http[0].foo", "unknown field"},
    {"retries not implemented",
     VS_HEAD "    - destination: {host: a.b}\n    retries:\n"
	     "      attempts: 3\n",
     23, 5, VS_FIELD "spec.http[0].retries", "not implemented yet"},
    {"bad route timeout", VS_HEAD "    - destination: {host: a.b}\n    timeout: 1x\n", 23, 14,
     VS_FIELD "spec.http[0].timeout", "must be a duration"},
    {"weight out of range",
     VS_HEAD "    - destination: {host: a.b}\n    - destination: {host: c.d}\n"
	     "      weight: 100001\n",
     24, 15, VS_FIELD "spec.http[0].route[1].weight", "between 0 and 100000"},
    {"bad regex",
     VS_HEAD "    - destination: {host: a.b}\n    match:\n    - uri:\n"
	     "        regex: \"a(b\"\n",
     25, 16, VS_FIELD "spec.http[0].match[0].uri.regex", "invalid regular expression at offset 3"},
    {"two StringMatch kinds",
     VS_HEAD "    - destination: {host: a.b}\n    match:\n"
	     "    - uri: {exact: /a, prefix: /b}\n",
     24, 24, VS_FIELD "spec.http[0].match[0].uri.prefix", "only one of"},
    {"unknown gateway",
     APP GW_DOC "---\napiVersion: networking.istio.io/v1\n"
		"kind: VirtualService\nmetadata: {name: vs}\nspec:\n"
		"  hosts: [\"*\"]\n  gateways: [gw, nope]\n  http:\n"
		"  - route: [{destination: {host: a.b}}]\n",
     19, 18, "VirtualService default/vs: spec.gateways[1]", "no Gateway default/nope"},
    {"unknown subset",
     VS_HEAD "    - destination: {host: a.b, subset: v9}\n"
	     "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
	     "metadata: {name: ab}\nspec:\n  host: a.b\n  subsets: [{name: v1}]\n",
     22, 40, VS_FIELD "spec.http[0].route[0].destination.subset",
     "unknown subset \"v9\": the DestinationRule for host a.b does not define it"},
    {"bad address",
     APP "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
	 "metadata: {name: se}\nspec:\n  hosts: [a.b]\n"
	 "  ports: [{number: 80, name: http}]\n  resolution: STATIC\n"
	 "  endpoints:\n  - address: db.internal\n",
     16, 14, "ServiceEntry default/se: spec.endpoints[0].address",
     "must be an IPv4 or IPv6 address"},
    {"DNS resolution",
     APP "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
	 "metadata: {name: se}\nspec:\n  hosts: [a.b]\n"
	 "  ports: [{number: 80, name: http}]\n  resolution: DNS\n",
     14, 15, "ServiceEntry default/se: spec.resolution", "DNS is not implemented yet"},
    {"passthrough lb",
     APP "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
	 "metadata: {name: d}\nspec:\n  host: a.b\n  trafficPolicy:\n"
	 "    loadBalancer: {simple: PASSTHROUGH}\n",
     14, 28, "DestinationRule default/d: spec.trafficPolicy.loadBalancer.simple",
     "PASSTHROUGH is not implemented yet"},
    {"outlier detection",
     APP "---\napiVersion: networking.istio.io/v1\n"
	 "kind: DestinationRule\nmetadata: {name: d}\nspec:\n  host: a.b\n"
	 "  trafficPolicy:\n    outlierDetection: {}\n",
     14, 5, "DestinationRule default/d: spec.trafficPolicy.outlierDetection",
     "not implemented yet"},
    {"ambiguous port",
     VS_HEAD "    - destination: {host: a.b}\n"
	     "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
	     "metadata: {name: se}\nspec:\n  hosts: [a.b]\n"
	     "  ports: [{number: 80, name: http}, {number: 81, name: alt}]\n"
	     "  resolution: STATIC\n",
     22, 20, VS_FIELD "spec.http[0].route[0].destination", "has 2 ports: set port.number"},
    {"alias", APP "  user: &u x\n  group: *u\n", 8, 10, "", "aliases"},
    {"unknown kind", APP "---\napiVersion: v1\nkind: ConfigMap\n", 9, 7, "kind",
     "unknown kind \"ConfigMap\""},
    {"wrong apiVersion", APP "---\napiVersion: networking.istio.io/v2\nkind: Gateway\n", 8, 13,
     "apiVersion", "is not an apiVersion of Gateway"},
    {"missing metadata.name",
     APP "---\napiVersion: networking.istio.io/v1\nkind: Gateway\n"
	 "metadata: {namespace: x}\nspec: {}\n",
     10, 11, "metadata.name", "required field missing"},
    {"duplicate resource", APP GW_DOC GW_DOC, 14, 1, "Gateway default/gw: metadata.name",
     "defined twice (first at line 8)"},
};

static void test_invalid(void **state)
{
	struct fx *f = *state;
	size_t failures = 0;

	for (size_t i = 0; i < sizeof(bads) / sizeof(bads[0]); i++) {
		const struct bad *b = &bads[i];
		struct ism_conf *c = (struct ism_conf *)1;
		bool found = false;
		int rc;

		ism_diags_init(&f->d);
		rc = ism_conf_load_buf("bad.yaml", b->yaml, strlen(b->yaml), &c, &f->d);
		for (size_t j = 0; j < f->d.n && j < 64; j++) {
			const struct ism_diag *g = &f->d.items[j];

			found = found || (g->severity == ISM_DIAG_ERROR && g->line == b->line &&
					  g->col == b->col && strcmp(g->field, b->field) == 0 &&
					  strstr(g->msg, b->msg) != NULL);
		}
		if (rc != -EINVAL || c != NULL || !found) {
			fprintf(stderr, "case \"%s\": rc %d, wanted %d:%d [%s] \"%s\"; got:\n",
				b->name, rc, b->line, b->col, b->field, b->msg);
			dump(&f->d);
			failures++;
		}
	}
	assert_int_equal(failures, 0);
}

/* Several errors in one file are all reported, and formatted as documented. */
static void test_several_errors_and_format(void **state)
{
	static const char yaml[] = APP "  workers: 0\n  listenAddress: nowhere\n";
	struct fx *f = *state;
	char buf[2048];
	size_t n;

	assert_int_equal(ism_conf_load_buf("conf/x.yaml", yaml, strlen(yaml), &f->conf, &f->d),
			 -EINVAL);
	assert_null(f->conf);
	assert_int_equal(f->d.n_errors, 2);
	n = ism_diags_format(buf, sizeof(buf), &f->d);
	assert_int_equal(n, strlen(buf));
	assert_non_null(strstr(buf, "conf/x.yaml:7:12: error: Appliance t: spec.workers: must be "
				    "an integer between 1 and 64, or \"auto\" (one per CPU)\n"));
	assert_non_null(strstr(buf, "conf/x.yaml:8:18: error: Appliance t: spec.listenAddress: "
				    "must be an IPv4 or IPv6 address\n"));
	/* Truncation keeps the buffer a string. */
	n = ism_diags_format(buf, 20, &f->d);
	assert_int_equal(n, 19);
	assert_int_equal(strlen(buf), 19);
}

static void test_unreadable_file(void **state)
{
	struct fx *f = *state;

	assert_int_equal(ism_conf_load("/nonexistent/isthmus.yaml", &f->conf, &f->d), -ENOENT);
	assert_null(f->conf);
	assert_int_equal(f->d.n_errors, 1);
	assert_string_equal(f->d.items[0].file, "/nonexistent/isthmus.yaml");
}

/* Diagnostics beyond the kept 64 are counted. */
static void test_many_errors(void **state)
{
	struct fx *f = *state;
	size_t cap = 200 * 40 + 256;
	char *yaml = malloc(cap);
	size_t len;

	assert_non_null(yaml);
	len = (size_t)snprintf(yaml, cap, "%s  limits:\n", APP);
	for (int i = 0; i < 200; i++)
		len += (size_t)snprintf(yaml + len, cap - len, "    bogus%d: 1\n", i);
	assert_int_equal(ism_conf_load_buf("t.yaml", yaml, len, &f->conf, &f->d), -EINVAL);
	assert_int_equal(f->d.n_errors, 200);
	assert_int_equal(f->d.n, 200);
	assert_string_equal(f->d.items[63].field, "Appliance t: spec.limits.bogus63");
	free(yaml);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_example_file, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_matches_and_defaults, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_ep_id_full, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_binding, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_durations, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_sample_bookinfo, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_sample_helloworld, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_sample_drs, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_sample_peer_authn, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_sample_weighted, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_sample_reviews, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_sample_jason, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_invalid, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_several_errors_and_format, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_unreadable_file, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_many_errors, fx_setup, fx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
