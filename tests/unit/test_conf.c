/* SPDX-License-Identifier: Apache-2.0 */
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
#include <sys/un.h>

#include <cmocka.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "conf/cel-int.h"
#include "conf/cel.h"
#include "conf/conf.h"
#include "lib/log.h"
#include "conf/logattrs.h"
#include "conf/model.h"
#include "shm/table.h"
#include "loaded.h"

#define ARENA_SIZE (4u << 20)

/* --- fixtures: the arena and an endpoint-id table --- */

struct ep_table {
	char keys[64][256];
	bool hc[64];
	size_t n;
	size_t cap; /* ids beyond cap fail with -ENOSPC */
};

static int test_ep_id(void *ctx, enum ism_conf_slot kind, const char *key, bool has_hc,
		      uint32_t *id)
{
	struct ep_table *t = ctx;

	if (kind == ISM_CONF_SLOT_OUTLIER) {
		*id = ISM_NO_OD_SLOT;
		return 0;
	}

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

static bool has_diag(const struct ism_diags *d, int severity, const char *field_part,
		     const char *msg_part)
{
	for (size_t i = 0; i < d->n && i < 64; i++)
		if ((int)d->items[i].severity == severity &&
		    strstr(d->items[i].field, field_part) != NULL &&
		    strstr(d->items[i].msg, msg_part) != NULL)
			return true;
	return false;
}

static bool has_warning(const struct ism_diags *d, const char *field_part, const char *msg_part)
{
	return has_diag(d, ISM_DIAG_WARNING, field_part, msg_part);
}

/* The line of the first warning whose message has msg_part; 0: none. */
static int warning_line(const struct ism_diags *d, const char *msg_part)
{
	for (size_t i = 0; i < d->n && i < 64; i++)
		if (d->items[i].severity == ISM_DIAG_WARNING && strstr(d->items[i].msg, msg_part))
			return d->items[i].line;
	return 0;
}

/* load_compile of another text in the same fixture, the first one's
 * configuration and table gone. */
static const struct ism_table *reload_compile(struct fx *f, const char *text)
{
	ism_conf_free(f->conf);
	f->conf = NULL;
	ism_arena_init(&f->arena, f->mem, ARENA_SIZE);
	return load_compile(f, text);
}

/* The cluster of service s (namespace default) for port and subset. */
static const struct ism_cluster *s_cluster(const struct ism_table *t, unsigned port,
					   const char *subset)
{
	char name[128];

	snprintf(name, sizeof(name), "outbound|%u|%s|s.default.svc.cluster.local", port, subset);
	return loaded_cluster(t, name);
}

static uint16_t ep_port(const struct ism_endpoint *e)
{
	return ntohs(((const struct sockaddr_in *)&e->addr)->sin_port);
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
	api = loaded_cluster(t, "outbound|80||api.demo.internal");
	v1 = loaded_cluster(t, "outbound|80|v1|web.demo.internal");
	v2 = loaded_cluster(t, "outbound|80|v2|web.demo.internal");
	assert_ptr_equal(&t->clusters[vh->routes[0].dest[0].cluster], api);
	assert_ptr_equal(&t->clusters[vh->routes[1].dest[0].cluster], v2);
	assert_ptr_equal(&t->clusters[vh->routes[2].dest[0].cluster], v1);
	assert_ptr_equal(&t->clusters[vh->routes[2].dest[1].cluster], v2);

	assert_int_equal(api->lb, ISM_LB_ROUND_ROBIN);
	assert_int_equal(api->connect_timeout_ms, 2000); /* the Appliance default */
	assert_int_equal(api->idle_timeout_ms, 3600000); /* Envoy's default hour */
	assert_int_equal(api->n_endpoints, 4);
	for (uint32_t i = 0; i < 4; i++)
		assert_int_equal(ep_port(&api->endpoints[i]), 18081); /* targetPort */
	assert_string_equal(api->endpoints[0].addr_text.p, "127.0.0.1:18081");
	/* outlierDetection turns locality failover on: zone, region, us-east. */
	assert_non_null(api->od);
	assert_int_equal(api->od->max_ejection_percent, 100);
	assert_int_equal(api->n_priorities, 3);
	assert_int_equal(api->endpoints[0].priority, 0);
	assert_int_equal(api->endpoints[1].priority, 1);
	assert_int_equal(api->endpoints[2].priority, 1);
	assert_int_equal(api->endpoints[3].priority, 2);
	assert_string_equal(api->endpoints[3].locality.p, "us-east/us-east-1a");
	assert_int_equal(api->n_groups, 4);
	assert_int_equal(api->locality_weighted, 1); /* failover is set */
	assert_int_equal(api->panic_threshold, 0);
	assert_int_equal(api->overprovisioning, 140);
	assert_non_null(api->dyn);
	assert_non_null(api->eff_weight);
	assert_non_null(api->hc);
	assert_int_equal(api->hc->type, ISM_HC_HTTP);
	assert_string_equal(api->hc->path.p, "/healthz");
	assert_string_equal(api->hc->host.p, "api.demo.internal");
	assert_int_equal(api->hc->interval_ms, 2000);
	assert_int_equal(api->hc->unhealthy_interval_ms, 1000);
	assert_int_equal(api->hc->unhealthy_edge_interval_ms, 1000);
	assert_int_equal(api->hc->healthy_edge_interval_ms, 2000);
	assert_int_equal(api->hc->timeout_ms, 500);
	assert_int_equal(vh->routes[0].retry.attempts, 2);
	assert_int_equal(vh->routes[0].retry.per_try_timeout_ms, 2000);
	assert_int_equal(vh->routes[0].retry.retry_on, ISM_RETRY_CONNECT_FAILURE | ISM_RETRY_RESET |
							   ISM_RETRY_RETRIABLE_STATUS_CODES);
	assert_int_equal(vh->routes[0].retry.n_codes, 1);
	assert_int_equal(vh->routes[0].retry.codes[0], 503);
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
	assert_int_equal(v1->endpoints[3].priority, 2); /* Istio's default failover */
	assert_int_equal(v1->locality_weighted, 0);	/* no failover list: Istio leaves it off */
	assert_non_null(v2->od);			/* inherited from the rule */
	assert_int_equal(v2->pool.max_connections, UINT32_MAX);
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
	assert_int_equal(t->limits.h2_max_concurrent_streams, 100);
	assert_int_equal(t->limits.h2_initial_stream_window, 65536);
	assert_int_equal(t->limits.h2_initial_conn_window, 1048576);
	assert_int_equal(t->limits.h2_max_header_list, 32768); /* maxRequestHeaderBytes */
	assert_int_equal(t->timeouts.request_header_ms, 10000);
	assert_int_equal(t->timeouts.idle_ms, 60000);
	assert_int_equal(t->timeouts.upstream_connect_ms, 10000);
	assert_int_equal(t->timeouts.upstream_response_ms, 60000);
	assert_int_equal(t->timeouts.stream_idle_ms, 300000); /* Envoy's default */
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
	c = loaded_cluster(t, "outbound|81||shop.default.svc.cluster.local");
	assert_int_equal(c->lb, ISM_LB_LEAST_REQUEST); /* Istio's default */
	assert_int_equal(c->connect_timeout_ms, 10000);
	assert_null(c->hc);
	assert_int_equal(c->n_endpoints, 2);
	/* No outlierDetection: no failover, every endpoint at priority 0, one
	 * group per locality, sorted by locality ("" first). */
	assert_null(c->od);
	assert_int_equal(c->n_priorities, 1);
	assert_int_equal(c->n_groups, 2);
	assert_string_equal(c->endpoints[0].addr_text.p, "127.0.0.9:81");
	assert_int_equal(c->endpoints[0].priority, 0);
	assert_string_equal(c->endpoints[1].addr_text.p, "[::1]:81");
	assert_int_equal(c->endpoints[1].priority, 0);
	assert_int_equal(c->endpoints[1].group, 1);
	assert_int_equal(c->endpoints[1].weight, 1);
	assert_int_equal(c->endpoints[1].addr.ss_family, AF_INET6);
	assert_int_equal(c->endpoints[1].addrlen, sizeof(struct sockaddr_in6));
	assert_int_equal(c->locality_weighted, 0);
	assert_int_equal(c->panic_threshold, 50); /* no outlierDetection: Envoy's */
	assert_int_equal(c->hash.on, ISM_HASH_NONE);
	assert_int_equal(c->pool.max_connections, UINT32_MAX);
	assert_int_equal(c->pool.max_pending, UINT32_MAX);
	assert_int_equal(c->pool.max_requests_per_conn, 0);
	assert_int_equal(c->pool.max_retries, UINT32_MAX);
	/* Istio's default retry policy for a route without retries: no
	 * retriable status code since Istio 1.24 (an upstream's 503 is not
	 * retried). */
	assert_int_equal(vh->routes[0].retry.attempts, 2);
	assert_int_equal(vh->routes[0].retry.retry_on,
			 ISM_RETRY_CONNECT_FAILURE | ISM_RETRY_REFUSED_STREAM |
			     ISM_RETRY_GRPC_UNAVAILABLE | ISM_RETRY_GRPC_CANCELLED |
			     ISM_RETRY_RETRIABLE_STATUS_CODES);
	assert_int_equal(vh->routes[0].retry.n_codes, 0);
	assert_int_equal(vh->routes[0].retry.ignore_previous_hosts, 1);
	assert_int_equal(vh->routes[0].retry.backoff_base_ms, 25);
	assert_int_equal(vh->routes[0].retry.per_try_timeout_ms, 0);
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
	/* At the ServiceEntry's endpoints (it had no position). */
	assert_true(f->d.items[0].line > 0);
	assert_non_null(strstr(f->d.items[0].field, "ServiceEntry default/"));
	assert_non_null(strstr(f->d.items[0].field, ": spec.endpoints"));
}

/* Gateway host patterns and namespaces decide the domains of a VirtualService. */
/* The name of the cluster the first route of listener l's first vhost goes
 * to (mirror: its first mirror's). */
static const char *route_cluster(const struct ism_table *t, uint32_t l, bool mirror)
{
	const struct ism_route *r = &t->listeners[l].vhosts[0].routes[0];

	return t->clusters[mirror ? r->mirrors[0].cluster : r->dest[0].cluster].name.p;
}

/* A destination without port.number to a host of several ports goes to the
 * port of the listener the request came through (istiod's
 * GetDestinationCluster), mirrors and tcp routes too; a listener port the
 * ServiceEntry lacks is a cluster istiod never makes: a warning, 503 NC. */
static void test_listener_port(void **state)
{
	static const char yaml[] = APP
	    "---\napiVersion: networking.istio.io/v1\nkind: Gateway\n"
	    "metadata: {name: gw}\nspec:\n  servers:\n"
	    "  - {port: {number: 80, name: a, protocol: HTTP}, hosts: [\"*\"]}\n"
	    "  - {port: {number: 81, name: b, protocol: HTTP}, hosts: [\"*\"]}\n"
	    "  - {port: {number: 82, name: c, protocol: HTTP}, hosts: [\"*\"]}\n"
	    "  - {port: {number: 90, name: d, protocol: TCP}, hosts: [\"*\"]}\n"
	    "  - {port: {number: 91, name: e, protocol: TCP}, hosts: [\"*\"]}\n"
	    "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n"
	    "metadata: {name: vs}\nspec:\n  hosts: [\"*\"]\n  gateways: [gw]\n"
	    "  http:\n  - route: [{destination: {host: s}}]\n"
	    "    mirror: {host: s}\n"
	    "  tcp:\n  - route: [{destination: {host: s}}]\n"
	    "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: s}\n"
	    "spec:\n  hosts: [s]\n  resolution: STATIC\n  endpoints: [{address: 10.0.0.1}]\n"
	    "  ports:\n  - {number: 80, name: http, protocol: HTTP, targetPort: 8080}\n"
	    "  - {number: 81, name: alt, protocol: HTTP2}\n"
	    "  - {number: 90, name: tcp, protocol: TCP}\n"
	    "  - {number: 91, name: tcp2, protocol: TCP}\n"
	    /* a route for port 80 only: no cluster of it is reached on 81 or 82 */
	    "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n"
	    "metadata: {name: two}\nspec:\n  hosts: [two.example]\n  gateways: [gw]\n"
	    "  http:\n  - match: [{port: 80}]\n    route: [{destination: {host: s2}}]\n"
	    "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: s2}\n"
	    "spec:\n  hosts: [s2]\n  resolution: STATIC\n  endpoints: [{address: 10.0.0.2}]\n"
	    "  ports: [{number: 80, name: a}, {number: 90, name: b}]\n";
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_cluster *c;

	assert_int_equal(t->n_listeners, 5);
	assert_string_equal(route_cluster(t, 0, false), "outbound|80||s.default.svc.cluster.local");
	assert_string_equal(route_cluster(t, 0, true), "outbound|80||s.default.svc.cluster.local");
	assert_string_equal(route_cluster(t, 1, false), "outbound|81||s.default.svc.cluster.local");
	assert_string_equal(route_cluster(t, 1, true), "outbound|81||s.default.svc.cluster.local");
	assert_string_equal(route_cluster(t, 2, false), "outbound|82||s.default.svc.cluster.local");
	/* The service port's own settings: its targetPort, its protocol. */
	c = loaded_cluster(t, "outbound|80||s.default.svc.cluster.local");
	assert_int_equal(c->n_endpoints, 1);
	assert_int_equal(c->missing, 0);
	assert_int_equal(ep_port(&c->endpoints[0]), 8080);
	assert_int_equal(loaded_cluster(t, "outbound|81||s.default.svc.cluster.local")->proto,
			 ISM_UP_HTTP2);
	c = loaded_cluster(t, "outbound|82||s.default.svc.cluster.local");
	assert_int_equal(c->n_endpoints, 0);
	assert_int_equal(c->missing, 1);
	assert_true(has_warning(&f->d, "VirtualService default/vs: destination",
				"host s.default.svc.cluster.local has no port 82"));
	assert_int_equal(warning_line(&f->d, "has no port 82"), 26);
	assert_false(has_warning(&f->d, "", "has no port 80"));
	assert_false(has_warning(&f->d, "", "s2.default.svc.cluster.local has no port"));
	/* The counters stay one set per listener. */
	assert_ptr_not_equal(t->listeners[0].vhosts[0].routes[0].stats,
			     t->listeners[1].vhosts[0].routes[0].stats);
	for (uint32_t l = 3; l < 5; l++) {
		char want[64];

		snprintf(want, sizeof(want), "outbound|%u||s.default.svc.cluster.local",
			 t->listeners[l].port);
		assert_int_equal(t->listeners[l].n_tcp, 1);
		assert_string_equal(
		    t->clusters[t->listeners[l].tcp_routes[0].dest[0].cluster].name.p, want);
	}
}

/* metadata.creationTimestamp: RFC 3339 as Kubernetes writes it (and with a
 * fraction or an offset); anything else refused. */
static void test_parse_time(void **state)
{
	static const struct {
		const char *s;
		int64_t want; /* -1: refused */
	} cases[] = {
	    {"1970-01-01T00:00:00Z", 0},
	    {"2024-05-01T12:00:00Z", 1714564800},
	    {"2024-02-29T00:00:00Z", 1709164800},
	    {"2000-02-29T00:00:00z", 951782400},
	    {"2024-05-01T12:00:00.123456Z", 1714564800},
	    {"2024-05-01T14:30:00+02:30", 1714564800},
	    {"2024-05-01T09:00:00-03:00", 1714564800},
	    {"2023-02-29T00:00:00Z", -1},
	    {"1900-02-29T00:00:00Z", -1},
	    {"2024-04-31T00:00:00Z", -1},
	    {"2024-13-01T00:00:00Z", -1},
	    {"2024-05-01T24:00:00Z", -1},
	    {"2024-05-01 12:00:00Z", -1},
	    {"2024-05-01T12:00:00", -1},
	    {"2024-05-01T12:00:00.Z", -1},
	    {"2024-05-01T12:00:00+0200", -1},
	    {"2024-05-01T12:00:00Zx", -1},
	    {"24-05-01T12:00:00Z", -1},
	    {"", -1},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int64_t t = -1;
		bool ok = ism_model_parse_time(cases[i].s, &t);

		if (ok != (cases[i].want >= 0) || (ok && t != cases[i].want))
			fail_msg("\"%s\": %s %lld, want %lld", cases[i].s, ok ? "took" : "refused",
				 (long long)t, (long long)cases[i].want);
	}
}

/* Gateways with creation times are merged as istiod merges them, the
 * oldest first: its server names the shared port's listener. */
static void test_gateway_creation_order(void **state)
{
	static const char yaml[] = APP
	    "---\napiVersion: networking.istio.io/v1\nkind: Gateway\n"
	    "metadata: {name: a, creationTimestamp: \"2024-05-02T00:00:00Z\"}\nspec:\n"
	    "  servers: [{port: {number: 80, name: written-first, protocol: HTTP}, hosts: "
	    "[a.example]}]\n"
	    "---\napiVersion: networking.istio.io/v1\nkind: Gateway\n"
	    "metadata: {name: b, creationTimestamp: \"2024-05-01T00:00:00Z\"}\nspec:\n"
	    "  servers: [{port: {number: 80, name: older, protocol: HTTP}, hosts: [b.example]}]\n";
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);

	assert_int_equal(t->n_listeners, 1);
	assert_string_equal(t->listeners[0].name.p, "older");
	t = reload_compile(f, "apiVersion: isthmus.io/v1\nkind: Appliance\nmetadata: {name: t}\n"
			      "spec: {locality: r/z}\n"
			      "---\napiVersion: networking.istio.io/v1\nkind: Gateway\n"
			      "metadata: {name: a}\nspec:\n  servers: [{port: {number: 80, name: "
			      "written-first, protocol: HTTP}, hosts: [a.example]}]\n"
			      "---\napiVersion: networking.istio.io/v1\nkind: Gateway\n"
			      "metadata: {name: b}\nspec:\n  servers: [{port: {number: 80, name: "
			      "older, protocol: HTTP}, hosts: [b.example]}]\n");
	assert_string_equal(t->listeners[0].name.p, "written-first");
}

static void test_binding(void **state)
{
	static const char yaml[] =
	    APP "  namespace: front\n"
		"  listenAddress: 127.0.0.1\n" /* not a wildcard beside 127.0.0.5:80 */
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
		"  - port: {number: 80, name: http-80, protocol: HTTP}\n"
		"    hosts: [\"front/one.net\"]\n"
		"  - port: {number: 80, name: http-bound, protocol: HTTP}\n"
		"    bind: 127.0.0.5\n"
		"    hosts: [\"*\"]\n"
		"---\n"
		"apiVersion: networking.istio.io/v1\n"
		"kind: VirtualService\n"
		"metadata: {name: v}\n"
		"spec:\n"
		"  hosts: [example.com, \"*.example.com\", bar.com, foo.com, x.org]\n"
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

	/* Gateway b's first server shares 127.0.0.1:80 with a; its second binds apart. */
	assert_int_equal(t->n_listeners, 2);
	l0 = &t->listeners[0];
	l1 = &t->listeners[1];
	assert_int_equal(l0->port, 80);
	assert_string_equal(l0->name.p, "http");
	assert_int_equal(ntohl(((const struct sockaddr_in *)&l1->addr)->sin_addr.s_addr),
			 0x7f000005);
	assert_int_equal(l0->n_vhosts, 2);
	assert_string_equal(l0->vhosts[0].name.p, "front/v");
	assert_int_equal(l0->vhosts[0].n_domains, 3);
	assert_string_equal(l0->vhosts[0].domains[0].p, "*.example.com");
	assert_string_equal(l0->vhosts[0].domains[1].p, "bar.com"); /* "." = Gateway ns */
	assert_string_equal(l0->vhosts[0].domains[2].p, "x.org");
	/* "*" takes the server's host as its domain. */
	assert_string_equal(l0->vhosts[1].name.p, "front/w");
	assert_int_equal(l0->vhosts[1].n_domains, 1);
	assert_string_equal(l0->vhosts[1].domains[0].p, "one.net");
	assert_int_equal(l1->n_vhosts, 1);
	assert_string_equal(l1->vhosts[0].domains[0].p, "*");
	/* No ServiceEntry for s: a warning, and an empty cluster. */
	assert_true(has_warning(&f->d, "VirtualService front/v: spec.http[0].route[0]",
				"no ServiceEntry for host s.front.svc.cluster.local"));
	/* w names no port: the listener's, 80 as v's (istiod's GetDestinationCluster). */
	assert_int_equal(t->n_clusters, 1);
	assert_string_equal(t->clusters[0].name.p, "outbound|80||s.front.svc.cluster.local");
	assert_int_equal(t->clusters[0].n_endpoints, 0);
	assert_int_equal(t->clusters[0].missing, 1);
	/* Both VirtualServices use a gateway: no mesh-only warning. */
	assert_false(has_warning(&f->d, "", "no gateway of this appliance"));
}

/* match.gateways: a match applies only through the gateways it names, a route
 * whose every match is left out is left out (Istio's sourceMatchHTTP), and the
 * routes of one VirtualService differ per gateway even on one port; gateway
 * references resolve as Istio resolves them. sourceLabels and sourceNamespace
 * are compared with the appliance's labels and namespace, as Istio compares
 * them with the gateway proxy's. */
/* A Gateway server's hosts are lowercased as the VirtualServices' are (DNS
 * names are case-insensitive, and Envoy matches a virtual host's domains
 * without case): a server host written "Shop.Example.COM" binds the
 * VirtualService of shop.example.com, and a VirtualService of
 * "*.example.net" takes the server's more specific host, lowercased, as its
 * domain. */
static void test_gateway_hosts_lowercased(void **state)
{
	static const char yaml[] =
	    APP "---\n"
		"apiVersion: networking.istio.io/v1\n"
		"kind: Gateway\n"
		"metadata: {name: gw}\n"
		"spec:\n"
		"  servers:\n"
		"  - port: {number: 80, name: http, protocol: HTTP}\n"
		"    hosts: [\"Shop.Example.COM\", \"./Other.Example.NET\"]\n"
		"---\n"
		"apiVersion: networking.istio.io/v1\n"
		"kind: VirtualService\n"
		"metadata: {name: v}\n"
		"spec:\n"
		"  hosts: [shop.example.com]\n"
		"  gateways: [gw]\n"
		"  http:\n"
		"  - route: [{destination: {host: s}}]\n"
		"---\n"
		"apiVersion: networking.istio.io/v1\n"
		"kind: VirtualService\n"
		"metadata: {name: w}\n"
		"spec:\n"
		"  hosts: [\"*.example.net\"]\n"
		"  gateways: [gw]\n"
		"  http:\n"
		"  - route: [{destination: {host: s}}]\n";
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_listener *l = &t->listeners[0];

	assert_int_equal(t->n_listeners, 1);
	assert_int_equal(l->n_vhosts, 2);
	assert_string_equal(l->vhosts[0].name.p, "default/v");
	assert_int_equal(l->vhosts[0].n_domains, 1);
	assert_string_equal(l->vhosts[0].domains[0].p, "shop.example.com");
	assert_string_equal(l->vhosts[1].name.p, "default/w");
	assert_int_equal(l->vhosts[1].n_domains, 1);
	assert_string_equal(l->vhosts[1].domains[0].p, "other.example.net");
}

static void test_match_gateways(void **state)
{
	static const char yaml[] =
	    APP "  namespace: front\n"
		"  labels: {tier: edge, team: net}\n"
		"---\n"
		"apiVersion: networking.istio.io/v1\n"
		"kind: Gateway\n"
		"metadata: {name: pub}\n"
		"spec:\n"
		"  servers:\n"
		"  - port: {number: 80, name: http-80-2, protocol: HTTP}\n"
		"    hosts: [\"*/pub.example.com\"]\n"
		"---\n"
		"apiVersion: networking.istio.io/v1\n"
		"kind: Gateway\n"
		"metadata: {name: int, namespace: edge}\n"
		"spec:\n"
		"  servers:\n"
		"  - port: {number: 80, name: http-80-3, protocol: HTTP}\n"
		"    hosts: [\"*/int.example.com\"]\n"
		"  - port: {number: 81, name: http-81, protocol: HTTP}\n"
		"    hosts: [\"*\"]\n"
		"---\n"
		"apiVersion: networking.istio.io/v1\n"
		"kind: VirtualService\n"
		"metadata: {name: v}\n"
		"spec:\n"
		"  hosts: [pub.example.com, int.example.com]\n"
		"  gateways: [./pub, int.edge.svc.cluster.local]\n"
		"  http:\n"
		"  - name: public-only\n"
		"    match: [{uri: {prefix: /a}, gateways: [pub]}, {uri: {prefix: /b}}]\n"
		"    route: [{destination: {host: s, port: {number: 80}}}]\n"
		"  - name: internal-only\n"
		"    match: [{uri: {prefix: /c}, gateways: [edge/int], statPrefix: c}]\n"
		"    route: [{destination: {host: s, port: {number: 80}}}]\n"
		"  - name: sidecars\n"
		"    match: [{gateways: [mesh]}, {gateways: [other]}]\n"
		"    route: [{destination: {host: s, port: {number: 80}}}]\n"
		"  - name: ours\n"
		"    match: [{sourceLabels: {tier: edge}, sourceNamespace: front}]\n"
		"    route: [{destination: {host: s, port: {number: 80}}}]\n"
		"  - name: not-ours\n"
		"    match: [{sourceLabels: {tier: core}}, {sourceNamespace: back}]\n"
		"    route: [{destination: {host: s, port: {number: 80}}}]\n"
		"  - name: all\n"
		"    route: [{destination: {host: s, port: {number: 80}}}]\n";
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_listener *l80, *l81;
	const struct ism_vhost *pub, *in;

	assert_non_null(t);
	assert_int_equal(t->n_listeners, 2);
	l80 = &t->listeners[0];
	l81 = &t->listeners[1];
	/* One port, two gateways: a vhost each, with their own routes. */
	assert_int_equal(l80->n_vhosts, 2);
	pub = &l80->vhosts[0];
	in = &l80->vhosts[1];
	assert_int_equal(pub->n_domains, 1);
	assert_string_equal(pub->domains[0].p, "pub.example.com");
	assert_int_equal(pub->n_routes, 3);
	assert_string_equal(pub->routes[0].name.p, "public-only");
	assert_int_equal(pub->routes[0].n_match, 2);
	/* sourceLabels and sourceNamespace against the appliance's own. */
	assert_string_equal(pub->routes[1].name.p, "ours");
	assert_string_equal(pub->routes[2].name.p, "all");
	assert_int_equal(in->n_domains, 1);
	assert_string_equal(in->domains[0].p, "int.example.com");
	assert_int_equal(in->n_routes, 4);
	assert_string_equal(in->routes[0].name.p, "public-only");
	assert_int_equal(in->routes[0].n_match, 1); /* /b only */
	assert_string_equal(in->routes[1].name.p, "internal-only");
	assert_string_equal(in->routes[2].name.p, "ours");
	assert_string_equal(in->routes[3].name.p, "all");
	/* The copies share their counters with the routes they filter. */
	assert_ptr_equal(pub->routes[0].stats, in->routes[0].stats);
	assert_ptr_equal(pub->routes[2].stats, in->routes[3].stats);
	/* Gateway int's other port, its hosts "*" bound to both names. */
	assert_int_equal(l81->n_vhosts, 1);
	assert_int_equal(l81->vhosts[0].n_routes, 4);
	assert_true(has_warning(&f->d, "spec.http[2].match[1].gateways[0]",
				"not bound to Gateway front/other"));
	assert_false(has_warning(&f->d, "spec.http[2].match[0].gateways[0]", ""));
	assert_true(has_warning(&f->d, "spec.http[1].match[0].statPrefix", "has no effect"));
}

/* Durations in Istio's (Go's) form, kept in milliseconds. */
static void test_durations(void **state)
{
	static const char yaml[] = APP "  timeouts:\n"
				       "    requestHeader: 1.5s\n"
				       "    idle: 2m\n"
				       "    upstreamConnect: 250ms\n"
				       "    upstreamResponse: 1m30s\n"
				       "    streamIdle: 0s\n"
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
	assert_int_equal(t->timeouts.stream_idle_ms, 0); /* none, as Istio's gateway */
	assert_int_equal(t->timeouts.drain_ms, 1);	 /* rounded up, never 0 */
	assert_int_equal(ism_conf_load_buf("t.yaml", big, strlen(big), &c, &f->d), 0);
	ism_conf_free(c);
	/* More than 2^32 ms does not fit. */
	assert_int_equal(ism_conf_load_buf("t.yaml", over, strlen(over), &c, &f->d), -EINVAL);
	assert_null(c);
	/* The largest, and one past it: too large, unless it is no duration. */
	{
		uint32_t ms = 0;

		assert_int_equal(ism_parse_duration_ms("1193h2m47.295s", &ms), 0);
		assert_int_equal(ms, UINT32_MAX);
		assert_int_equal(ism_parse_duration_ms("4294967295ms", &ms), 0);
		assert_int_equal(ism_parse_duration_ms("1193h2m47.296s", &ms), -ERANGE);
		assert_int_equal(ism_parse_duration_ms("4294967296ms", &ms), -ERANGE);
		assert_int_equal(ism_parse_duration_ms("99999999999999999999h", &ms), -ERANGE);
		assert_int_equal(ism_parse_duration_ms("1194h1s", &ms), -ERANGE);
		assert_int_equal(ism_parse_duration_ms("1194hx", &ms), -EINVAL);
		assert_int_equal(ism_parse_duration_ms("99999999999999999999", &ms), -EINVAL);
		/* As Go's time.ParseDuration: a leading '+', and the Greek mu
		 * (U+03BC) as well as the micro sign (U+00B5). */
		assert_int_equal(ism_parse_duration_ms("+1s", &ms), 0);
		assert_int_equal(ms, 1000);
		/* Long fractions of long units, exactly (their product with
		 * an hour's nanoseconds is past 64 bits: 0.500000000m was
		 * 11.55 s, and 0.005200000h was refused as not whole ms). */
		assert_int_equal(ism_parse_duration_ms("0.500000000m", &ms), 0);
		assert_int_equal(ms, 30000);
		assert_int_equal(ism_parse_duration_ms("0.005200000h", &ms), 0);
		assert_int_equal(ms, 18720);
		assert_int_equal(ism_parse_duration_ms("1.999999999h", &ms), 0);
		assert_int_equal(ms, 7200000); /* 7199999.9964 ms, rounded up */
		assert_int_equal(ism_parse_duration_ms("+0", &ms), 0);
		assert_int_equal(ms, 0);
		assert_int_equal(ism_parse_duration_ms("2500\xce\xbcs", &ms), 0);
		assert_int_equal(ms, 3);
		assert_int_equal(ism_parse_duration_ms("2500\xc2\xb5s", &ms), 0);
		assert_int_equal(ms, 3);
		assert_int_equal(ism_parse_duration_ms("+", &ms), -EINVAL);
		assert_int_equal(ism_parse_duration_ms("++1s", &ms), -EINVAL);
		assert_int_equal(ism_parse_duration_ms("1s+1s", &ms), -EINVAL);
	}
}

/* spec.pathNormalization's modes by Istio's names, case and all; DEFAULT is
 * BASE, as is no mode. */
static void test_path_normalization_names(void **state)
{
	static const struct {
		const char *name;
		int mode;
	} ok[] = {
	    {"NONE", ISM_PATHNORM_NONE},
	    {"BASE", ISM_PATHNORM_BASE},
	    {"MERGE_SLASHES", ISM_PATHNORM_MERGE_SLASHES},
	    {"DECODE_AND_MERGE_SLASHES", ISM_PATHNORM_DECODE_AND_MERGE_SLASHES},
	    {"DEFAULT", ISM_PATHNORM_BASE},
	};
	static const char *const bad[] = {"base", "Base", "MERGE", "DECODE", "MERGE_SLASHES_"};
	struct fx *f = *state;
	char yaml[512];
	struct ism_conf *c = NULL;

	assert_int_equal(reload_compile(f, APP)->path_norm, ISM_PATHNORM_BASE);
	for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
		snprintf(yaml, sizeof(yaml), APP "  pathNormalization:\n    normalization: %s\n",
			 ok[i].name);
		assert_int_equal(reload_compile(f, yaml)->path_norm, ok[i].mode);
	}
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		snprintf(yaml, sizeof(yaml), APP "  pathNormalization:\n    normalization: %s\n",
			 bad[i]);
		assert_int_equal(ism_conf_load_buf("t.yaml", yaml, strlen(yaml), &c, &f->d),
				 -EINVAL);
		assert_null(c);
		assert_true(has_diag(&f->d, ISM_DIAG_ERROR, "spec.pathNormalization.normalization",
				     bad[i]));
	}
}

/* The file's durations and CEL's duration() read one syntax: where both
 * bounds allow a text, they agree on it (the sign aside: CEL's may be '-'). */
static void test_duration_syntax(void **state)
{
	static const struct {
		const char *s;
		int64_t ns; /* -1: refused by both */
	} cases[] = {
	    {"0", 0},
	    {"+0", 0},
	    {"1h2m3.5s", 3723500000000},
	    {"1ms1us1ns", 1001001},
	    {".5s", 500000000},
	    {"1.s", 1000000000},
	    {"1.5h", 5400000000000},
	    {"2500\xce\xbcs", 2500000},
	    {"2500\xc2\xb5s", 2500000},
	    {"1m.5s", 60500000000},
	    {"", -1},
	    {"+", -1},
	    {"00", -1},
	    {"1", -1},
	    {".s", -1},
	    {".", -1},
	    {"s", -1},
	    {"1x", -1},
	    {"1mss", -1},
	    {"1hm", -1},
	    {"1h-1m", -1},
	    {"1s+1s", -1},
	    {"++1s", -1},
	    {"1..5s", -1},
	    {"1.5.s", -1},
	    {"99999999999999999999x", -1}, /* syntax before bounds */
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const char *s = cases[i].s;
		uint64_t ns = 0;
		int64_t cel = 0;

		if (cases[i].ns < 0) {
			assert_int_equal(ism_parse_duration_ns(s, &ns), -EINVAL);
			assert_int_equal(cel_duration_parse(s, strlen(s), &cel), -EINVAL);
			continue;
		}
		assert_int_equal(ism_parse_duration_ns(s, &ns), 0);
		assert_int_equal(cel_duration_parse(s, strlen(s), &cel), 0);
		assert_int_equal(ns, cases[i].ns);
		assert_int_equal(cel, cases[i].ns);
	}
	/* The sign: CEL's alone may be '-'. */
	{
		uint64_t ns;
		int64_t cel;

		assert_int_equal(ism_parse_duration_ns("-1s", &ns), -EINVAL);
		assert_int_equal(cel_duration_parse("-1s", 3, &cel), 0);
		assert_int_equal(cel, -1000000000);
	}
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

/* Istio's own YAML, copied into the repository (make unit runs from its root). */
static const char *samples_dir(void)
{
	return "tests/fixtures/istio-samples";
}

/* Loads prefix + (destination-rule-all.yaml unless it is the sample) + the sample. */
static const struct ism_table *load_sample(struct fx *f, const char *name)
{
	char path[512];
	char *sample, *drs = NULL, *text;
	const struct ism_table *t;
	size_t len;

	snprintf(path, sizeof(path), "%s/%s", samples_dir(), name);
	sample = loaded_read_file(path);
	if (sample == NULL)
		fail_msg("cannot read %s", path);
	if (strcmp(name, "destination-rule-all.yaml") != 0) {
		snprintf(path, sizeof(path), "%s/destination-rule-all.yaml", samples_dir());
		drs = loaded_read_file(path);
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

	/* A namespace-wide policy of another namespace: not the appliance's. */
	assert_non_null(load_sample(f, "testdata-peer-authn-strict.yaml"));
	assert_int_equal(f->d.n_errors, 0);
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

/* A VirtualService bound to the mesh only may name a subset no
 * DestinationRule defines: a warning, as Istio checks no subset reference
 * (one the appliance uses: an error, test_invalid's "unknown subset"). */
static void test_mesh_only_unknown_subset(void **state)
{
	static const char yaml[] = APP "---\napiVersion: networking.istio.io/v1\n"
				       "kind: VirtualService\nmetadata: {name: reviews}\nspec:\n"
				       "  hosts: [reviews]\n  http:\n"
				       "  - route: [{destination: {host: reviews, subset: v1}}]\n";
	struct fx *f = *state;

	load_compile(f, yaml);
	assert_true(
	    has_warning(&f->d, "VirtualService default/reviews: spec.http[0].route[0]",
			"unknown subset \"v1\": no DestinationRule for host "
			"reviews.default.svc.cluster.local (the VirtualService is bound to the "
			"mesh only"));
}

/* --- locality load balancing, retries, hashing, pools (issue 3) --- */

/* The 1-based line and column of the first occurrence of needle in text. */
static void pos_of(const char *text, const char *needle, int *line, int *col)
{
	const char *at = strstr(text, needle);

	assert_non_null(at);
	*line = 1;
	*col = 1;
	for (const char *p = text; p < at; p++) {
		if (*p == '\n') {
			(*line)++;
			*col = 1;
		} else {
			(*col)++;
		}
	}
}

static const struct ism_diag *find_diag(const struct ism_diags *d, enum ism_diag_severity sev,
					const char *field, const char *msg_part)
{
	for (size_t i = 0; i < d->n && i < 64; i++)
		if (d->items[i].severity == sev && strcmp(d->items[i].field, field) == 0 &&
		    strstr(d->items[i].msg, msg_part) != NULL)
			return &d->items[i];
	return NULL;
}

/* The Istio locality-failover task: the client in region1/zone1, one
 * helloworld endpoint in each of four localities (listed out of order). */
#define TASK_HEAD                                                                                  \
	"apiVersion: isthmus.io/v1\nkind: Appliance\nmetadata: {name: t}\n"                        \
	"spec:\n  locality: region1/zone1\n  labels: {net: n1}\n"                                  \
	"---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\n"           \
	"spec:\n  servers: [{port: {number: 80, name: http-80-4, protocol: HTTP}, hosts: "         \
	"[\"*\"]}]\n"                                                                              \
	"---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\n"    \
	"spec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n"                                     \
	"  - route: [{destination: {host: helloworld}}]\n"

#define TASK_SE                                                                                    \
	"---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: hw}\n"      \
	"spec:\n  hosts: [helloworld]\n  ports: [{number: 5000, name: http}]\n"                    \
	"  resolution: STATIC\n  endpoints:\n"                                                     \
	"  - {address: 10.0.0.4, locality: region3/zone4, labels: {net: n1}}\n"                    \
	"  - {address: 10.0.0.2, locality: region1/zone2, labels: {net: n1}}\n"                    \
	"  - {address: 10.0.0.1, locality: region1/zone1, labels: {net: n1}, weight: 3}\n"         \
	"  - {address: 10.0.0.3, locality: region2/zone3, labels: {net: n2}}\n"

#define TASK_DR(policy)                                                                            \
	"---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: hw}\n"   \
	"spec:\n  host: helloworld\n  trafficPolicy:\n" policy

#define TASK_CLUSTER "outbound|5000||helloworld.default.svc.cluster.local"

static void check_ep(const struct ism_cluster *c, uint32_t i, const char *addr, uint32_t prio,
		     uint32_t group)
{
	assert_string_equal(c->endpoints[i].addr_text.p, addr);
	assert_int_equal(c->endpoints[i].priority, prio);
	assert_int_equal(c->endpoints[i].group, group);
}

static void check_group(const struct ism_cluster *c, uint32_t g, const char *loc, uint32_t prio,
			uint32_t weight, uint32_t first, uint32_t count)
{
	assert_string_equal(c->groups[g].locality.p, loc);
	assert_int_equal(c->groups[g].priority, prio);
	assert_int_equal(c->groups[g].weight, weight);
	assert_int_equal(c->groups[g].first, first);
	assert_int_equal(c->groups[g].count, count);
}

static void test_failover_task(void **state)
{
	static const char yaml[] = TASK_HEAD TASK_SE TASK_DR(
	    "    loadBalancer:\n      simple: ROUND_ROBIN\n      localityLbSetting:\n"
	    "        enabled: true\n        failover:\n        - from: region1\n"
	    "          to: region2\n"
	    "    outlierDetection:\n      consecutive5xxErrors: 1\n      interval: 1s\n"
	    "      baseEjectionTime: 1m\n");
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_cluster *c = loaded_cluster(t, TASK_CLUSTER);

	/* P0 region1/zone1, P1 region1/zone2 (2 before compaction), P2 region2
	 * (the failover target), P3 region3. */
	assert_int_equal(c->n_endpoints, 4);
	assert_int_equal(c->n_priorities, 4);
	check_ep(c, 0, "10.0.0.1:5000", 0, 0);
	check_ep(c, 1, "10.0.0.2:5000", 1, 1);
	check_ep(c, 2, "10.0.0.3:5000", 2, 2);
	check_ep(c, 3, "10.0.0.4:5000", 3, 3);
	assert_int_equal(c->n_groups, 4);
	check_group(c, 0, "region1/zone1", 0, 3, 0, 1);
	check_group(c, 1, "region1/zone2", 1, 1, 1, 1);
	check_group(c, 2, "region2/zone3", 2, 1, 2, 1);
	check_group(c, 3, "region3/zone4", 3, 1, 3, 1);
	assert_int_equal(c->locality_weighted, 1);
	assert_int_equal(c->lb, ISM_LB_ROUND_ROBIN);
	assert_non_null(c->od);
	assert_int_equal(c->od->consecutive_5xx, 1);
	assert_int_equal(c->od->consecutive_gateway, 0);
	assert_int_equal(c->od->interval_ms, 1000);
	assert_int_equal(c->od->base_ejection_ms, 60000);
	assert_int_equal(c->od->max_ejection_ms, 300000);
	assert_int_equal(c->od->max_ejection_percent, 10);
	assert_int_equal(c->od->split_local, 0);
	assert_int_equal(c->od->consecutive_local, 5);
	assert_int_equal(c->panic_threshold, 0);
	assert_int_equal(c->overprovisioning, 140);
	assert_non_null(c->dyn);
	assert_non_null(c->eff_weight);
	assert_int_equal(c->eff_weight[3], 0); /* zeroed: the master fills it */
	/* Ids are asked in the ServiceEntry's order. */
	assert_string_equal(f->eps.keys[0], "helloworld.default.svc.cluster.local|10.0.0.4:5000");
	assert_int_equal(c->endpoints[3].id, 100);
	assert_int_equal(f->d.n, 0);
}

/* An endpoint's locality may be a region alone (Istio's ConvertLocality
 * reads "region1" as region region1, no zone): ranked as another zone of
 * the region (Istio's LbPriority compares the empty zone), grouped as its
 * own locality; a label's value too. (The appliance's own still needs a
 * zone, and an empty part is still an error: the table of bad files.) */
static void test_region_only_locality(void **state)
{
	static const char yaml[] =
	    TASK_HEAD "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
		      "metadata: {name: hw}\nspec:\n  hosts: [helloworld]\n"
		      "  ports: [{number: 5000, name: http}]\n  resolution: STATIC\n  endpoints:\n"
		      "  - {address: 10.0.0.3, locality: region2}\n"
		      "  - {address: 10.0.0.2, labels: {istio-locality: region1}}\n"
		      "  - {address: 10.0.0.1, locality: region1/zone1}\n" TASK_DR(
			  "    loadBalancer:\n      localityLbSetting:\n        failover:\n"
			  "        - {from: region1, to: region2}\n"
			  "    outlierDetection: {consecutive5xxErrors: 1}\n");
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_cluster *c = loaded_cluster(t, TASK_CLUSTER);

	assert_int_equal(c->n_endpoints, 3);
	assert_int_equal(c->n_priorities, 3);
	check_ep(c, 0, "10.0.0.1:5000", 0, 0);
	check_ep(c, 1, "10.0.0.2:5000", 1, 1);
	check_ep(c, 2, "10.0.0.3:5000", 2, 2);
	check_group(c, 1, "region1", 1, 1, 1, 1);
	check_group(c, 2, "region2", 2, 1, 2, 1);
	assert_int_equal(f->d.n, 0);
}

/* Forms Kubernetes takes that isthmus takes too: metadata fields the API
 * server adds to objects made with generateName or being deleted, and a
 * percentage written ".5". */
static void test_kubernetes_forms(void **state)
{
	static const char yaml[] = TASK_HEAD TASK_SE
	    "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
	    "metadata: {name: hw, generateName: hw-, selfLink: /x, "
	    "deletionTimestamp: \"2026-01-01T00:00:00Z\", "
	    "deletionGracePeriodSeconds: 30}\nspec:\n  host: helloworld\n"
	    /* strings to go-yaml, though they start as its integers do */
	    "  subsets: [{name: v1, labels: {version: 0bde4f1, b: 0o9ab, c: 0x}}]\n";
	static const char pct[] =
	    TASK_HEAD "    fault: {abort: {httpStatus: 503, percentage: {value: .5}}}\n" TASK_SE;
	struct fx *f = *state;

	assert_non_null(load_compile(f, yaml));
	assert_int_equal(f->d.n, 0);
	assert_non_null(reload_compile(f, pct));
	assert_int_equal(f->d.n, 0);
}

/* Istio's validation warns of the rules after one without matches, which
 * takes every request (VirtualServiceUnreachableRule): by name, else by
 * index; the rules before it are not warned of. */
static void test_unreachable_rules(void **state)
{
	/* TASK_HEAD's route (http[0]) has no match */
	static const char yaml[] =
	    TASK_HEAD "  - route: [{destination: {host: helloworld}}]\n"
		      "  - match: [{uri: {prefix: /b}}]\n"
		      "    route: [{destination: {host: helloworld}}]\n"
		      "  - name: last\n"
		      "    route: [{destination: {host: helloworld}}]\n" TASK_SE;
	struct fx *f = *state;

	assert_non_null(load_compile(f, yaml));
	assert_int_equal(f->d.n, 3);
	assert_false(has_warning(&f->d, "spec.http[0]", "not used"));
	assert_true(has_warning(&f->d, "spec.http[1]",
				"virtualService rule #1 not used (only the last rule can have no "
				"matches)"));
	assert_true(has_warning(&f->d, "spec.http[2]",
				"virtualService rule #2 not used (route without matches defined "
				"before)"));
	assert_true(
	    has_warning(&f->d, "spec.http[3]",
			"virtualService rule \"last\" not used (only the last rule can have "
			"no matches)"));
}

/* Istio's VirtualServiceIneffectiveMatch: a match a former rule has (its
 * name and its keys' order aside), a rule all of whose matches are such, and a
 * prefix match a former one with a shorter prefix covers (the method
 * defaulting to GET, as Istio's check takes it); tcp rules by their matches
 * too. Disjoint and uncovered matches are not warned of. */
static void test_ineffective_matches(void **state)
{
	static const char yaml[] =
	    "apiVersion: isthmus.io/v1\nkind: Appliance\nmetadata: {name: t}\n"
	    "spec:\n  locality: region1/zone1\n"
	    "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\n"
	    "spec:\n  servers: [{port: {number: 80, name: http-80-4, protocol: HTTP}, hosts: "
	    "[\"*\"]}]\n"
	    "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\n"
	    "spec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n"
	    "  - name: api\n"
	    "    match:\n"
	    "    - uri: {prefix: /api}\n"
	    "    - {name: one, headers: {x-a: {exact: '1'}}, uri: {exact: /x}}\n"
	    "    route: [{destination: {host: helloworld}}]\n"
	    "  - name: again\n"
	    "    match: [{uri: {exact: /x}, name: two, headers: {x-a: {exact: '1'}}}]\n"
	    "    route: [{destination: {host: helloworld}}]\n"
	    "  - match:\n"
	    "    - uri: {prefix: /api/v1}\n"
	    "    - {uri: {prefix: /apix}, method: {exact: POST}}\n"
	    "    - {uri: {prefix: /apiy}, headers: {x-b: {exact: '1'}}}\n"
	    "    - uri: {prefix: /b}\n"
	    "    route: [{destination: {host: helloworld}}]\n"
	    "  tcp:\n"
	    "  - match: [{port: 31400}]\n"
	    "    route: [{destination: {host: helloworld}}]\n"
	    "  - match: [{port: 31400}]\n"
	    "    route: [{destination: {host: helloworld}}]\n" TASK_SE;
	struct fx *f = *state;

	assert_non_null(load_compile(f, yaml));
	assert_true(has_warning(&f->d, "spec.http[1].match[0]",
				"virtualService rule \"again\" match \"two\" is not used "
				"(duplicate/overlapping match in rule \"api\")"));
	assert_true(has_warning(&f->d, "spec.http[1]",
				"virtualService rule \"again\" not used (all matches used by prior "
				"rules)"));
	assert_true(
	    has_warning(&f->d, "spec.http[2].match[0]",
			"virtualService rule #2 match #0 of prefix /api/v1 is not used "
			"(duplicate/overlapping match in rule #0 of prefix /api on \"api\")"));
	assert_false(has_warning(&f->d, "spec.http[2].match[1]", "not used"));
	assert_false(has_warning(&f->d, "spec.http[2].match[2]", "not used"));
	assert_false(has_warning(&f->d, "spec.http[2].match[3]", "not used"));
	assert_false(has_warning(&f->d, "spec.http[2]", "not used (all matches"));
	assert_true(
	    has_warning(&f->d, "spec.tcp[1].match[0]",
			"virtualService rule #1 match #0 is not used (duplicate/overlapping "
			"match in rule #0)"));
	assert_true(
	    has_warning(&f->d, "spec.tcp[1]",
			"virtualService rule #1 not used (all matches used by prior rules)"));
}

static void test_failover_without_outlier(void **state)
{
	static const char yaml[] = TASK_HEAD TASK_SE TASK_DR(
	    "    loadBalancer:\n      localityLbSetting:\n        failover:\n"
	    "        - {from: region1, to: region2}\n");
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_cluster *c = loaded_cluster(t, TASK_CLUSTER);
	const struct ism_diag *w;
	int line, col;

	/* No failover: one priority, groups by locality only. */
	assert_null(c->od);
	assert_int_equal(c->n_priorities, 1);
	for (uint32_t i = 0; i < 4; i++)
		assert_int_equal(c->endpoints[i].priority, 0);
	assert_int_equal(c->n_groups, 4);
	check_group(c, 0, "region1/zone1", 0, 3, 0, 1);
	check_group(c, 3, "region3/zone4", 0, 1, 3, 1);
	assert_int_equal(c->locality_weighted, 0);
	assert_int_equal(c->lb, ISM_LB_LEAST_REQUEST);
	w = find_diag(&f->d, ISM_DIAG_WARNING,
		      "DestinationRule default/hw: "
		      "spec.trafficPolicy.loadBalancer.localityLbSetting.failover",
		      "failover requires outlierDetection; it has no effect");
	assert_non_null(w);
	pos_of(yaml, "failover:", &line, &col);
	assert_int_equal(w->line, line);
	assert_int_equal(w->col, col);
	assert_string_equal(w->file, "t.yaml");
	assert_int_equal(f->d.n, 1);
}

static void test_failover_disabled(void **state)
{
	static const char yaml[] = TASK_HEAD TASK_SE TASK_DR(
	    "    loadBalancer:\n      localityLbSetting:\n        enabled: false\n"
	    "    outlierDetection: {minHealthPercent: 60}\n");
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_cluster *c = loaded_cluster(t, TASK_CLUSTER);

	assert_non_null(c->od);
	assert_int_equal(c->panic_threshold, 60);
	assert_int_equal(c->n_priorities, 1);
	assert_int_equal(c->endpoints[3].priority, 0);
	assert_int_equal(f->d.n, 0);
}

/* failoverPriority alone: tiers by label agreement (net from the Appliance's
 * labels, then the zone); with failover too: tier * 5 + locality priority. */
static void test_failover_priority(void **state)
{
	static const char yaml[] = TASK_HEAD TASK_SE TASK_DR(
	    "    loadBalancer:\n      localityLbSetting:\n        failoverPriority:\n"
	    "        - net\n        - topology.kubernetes.io/zone\n"
	    "    outlierDetection: {}\n");
	static const char both[] = TASK_HEAD TASK_SE TASK_DR(
	    "    loadBalancer:\n      localityLbSetting:\n        failoverPriority: [net=n2]\n"
	    "        failover: [{from: region1, to: region3}]\n"
	    "    outlierDetection: {}\n");
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_cluster *c = loaded_cluster(t, TASK_CLUSTER);

	/* .1 n1 zone1: both match, 0; .2 n1 zone2 and .4 n1 zone4: net only, 1;
	 * .3 n2: none, 2. */
	assert_int_equal(c->n_priorities, 3);
	check_ep(c, 0, "10.0.0.1:5000", 0, 0);
	check_ep(c, 1, "10.0.0.2:5000", 1, 1);
	check_ep(c, 2, "10.0.0.4:5000", 1, 2);
	check_ep(c, 3, "10.0.0.3:5000", 2, 3);
	check_group(c, 1, "region1/zone2", 1, 1, 1, 1);
	check_group(c, 2, "region3/zone4", 1, 1, 2, 1);
	assert_int_equal(c->locality_weighted, 1);

	t = reload_compile(f, both);
	c = loaded_cluster(t, TASK_CLUSTER);
	/* net=n2: .3 tier 0 (raw 0*5+4 = 4: region2 is not the failover target); the others tier 1:
	 * .1 5, .2 7, .4 (region3 is the failover target) 8. */
	assert_int_equal(c->n_priorities, 4);
	check_ep(c, 0, "10.0.0.3:5000", 0, 0);
	check_ep(c, 1, "10.0.0.1:5000", 1, 1);
	check_ep(c, 2, "10.0.0.2:5000", 2, 2);
	check_ep(c, 3, "10.0.0.4:5000", 3, 3);
}

/* zoneAwareLbSetting: the appliance's region one priority, every zone in it
 * (no zone first, and no locality weighting: without the proxy's own cluster
 * Envoy balances the region's hosts as one set), then the failover region,
 * then the others; without outlierDetection (Istio's ForceFailover);
 * failoverPriority's tiers over the regions' (x3); disabled: one priority. */
static void test_zone_aware(void **state)
{
	static const char yaml[] = TASK_HEAD TASK_SE TASK_DR(
	    "    loadBalancer:\n      zoneAwareLbSetting:\n"
	    "        failover: [{from: region1, to: region3}]\n        minClusterSize: 2\n");
	static const char fprio[] = TASK_HEAD TASK_SE TASK_DR(
	    "    loadBalancer:\n      zoneAwareLbSetting: {failoverPriority: [net=n2]}\n");
	static const char off[] = TASK_HEAD TASK_SE TASK_DR(
	    "    loadBalancer:\n      zoneAwareLbSetting: {enabled: false}\n");
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_cluster *c = loaded_cluster(t, TASK_CLUSTER);

	assert_int_equal(c->n_priorities, 3);
	check_ep(c, 0, "10.0.0.1:5000", 0, 0);
	check_ep(c, 1, "10.0.0.2:5000", 0, 1);
	check_ep(c, 2, "10.0.0.4:5000", 1, 2);
	check_ep(c, 3, "10.0.0.3:5000", 2, 3);
	assert_int_equal(c->locality_weighted, 0);
	assert_true(has_warning(&f->d, "loadBalancer.zoneAwareLbSetting", "self-discovery"));
	assert_false(has_warning(&f->d, "", "requires outlierDetection"));

	t = reload_compile(f, fprio);
	c = loaded_cluster(t, TASK_CLUSTER);
	/* net=n2: .3 tier 0 (raw 0*3+2); the others tier 1: .1 and .2 the
	 * region (3), .4 another region (5). */
	assert_int_equal(c->n_priorities, 3);
	check_ep(c, 0, "10.0.0.3:5000", 0, 0);
	check_ep(c, 1, "10.0.0.1:5000", 1, 1);
	check_ep(c, 2, "10.0.0.2:5000", 1, 2);
	check_ep(c, 3, "10.0.0.4:5000", 2, 3);

	t = reload_compile(f, off);
	c = loaded_cluster(t, TASK_CLUSTER);
	assert_int_equal(c->n_priorities, 1);
	assert_int_equal(c->locality_weighted, 0);
}

/* distribute: the first matching `from` applies; weights split in proportion,
 * rounded up; unmatched localities lose their endpoints. */
static void test_distribute(void **state)
{
	static const char yaml[] = TASK_HEAD
	    "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: hw}\n"
	    "spec:\n  hosts: [helloworld]\n  ports: [{number: 5000, name: http}]\n"
	    "  resolution: STATIC\n  endpoints:\n"
	    "  - {address: 10.0.0.1, locality: region1/zone1}\n"
	    "  - {address: 10.0.0.2, locality: region1/zone2}\n"
	    "  - {address: 10.0.0.3, locality: region2/zone3, weight: 5}\n"
	    "  - {address: 10.0.0.4, locality: region3/zone4}\n"
	    "  - {address: 10.0.0.5, locality: region1/zone1}\n" TASK_DR(
		"    loadBalancer:\n      localityLbSetting:\n        distribute:\n"
		"        - from: region9/*\n          to: {\"region3/*\": 100}\n"
		"        - from: region1/*\n"
		"          to: {\"region1/*\": 80, region2/zone3: 20}\n"
		"    outlierDetection: {}\n");
	static const char region_only[] = TASK_HEAD
	    "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: hw}\n"
	    "spec:\n  hosts: [helloworld]\n  ports: [{number: 5000, name: http}]\n"
	    "  resolution: STATIC\n  endpoints:\n"
	    "  - {address: 10.0.0.1, locality: region1/zone1}\n"
	    "  - {address: 10.0.0.3, locality: region2/zone3}\n" TASK_DR(
		"    loadBalancer:\n      localityLbSetting:\n        distribute:\n"
		"        - from: region1\n          to: {region2: 100}\n"
		"    outlierDetection: {}\n");
	static const char repeats[] = TASK_HEAD
	    "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: hw}\n"
	    "spec:\n  hosts: [helloworld]\n  ports: [{number: 5000, name: http}]\n"
	    "  resolution: STATIC\n  endpoints:\n"
	    "  - {address: 10.0.0.1, locality: region1/zone1}\n"
	    "  - {address: 10.0.0.2, locality: region1/zone2}\n"
	    "  - {address: 10.0.0.1, locality: region1/zone2, weight: 7}\n"
	    "  - {address: 10.0.0.2, locality: region1/zone3}\n"
	    "  - {address: 10.0.0.3, locality: region2/zone3, weight: 5}\n"
	    "  - {address: 10.0.0.3, locality: region3/zone4}\n" TASK_DR(
		"    loadBalancer:\n      localityLbSetting:\n        distribute:\n"
		"        - from: region1/*\n"
		"          to: {\"region1/*\": 70, region2/zone3: 20, \"region3/*\": 10}\n"
		"    outlierDetection: {}\n");
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_cluster *c = loaded_cluster(t, TASK_CLUSTER);

	/* region1/zone1 (2 of 3) gets ceil(2*80/3) = 54, zone2 ceil(80/3) = 27;
	 * region2/zone3 20; region3 no endpoints. distribute wins over the
	 * failover outlierDetection would bring: one priority. */
	assert_int_equal(c->n_endpoints, 4);
	assert_int_equal(c->n_priorities, 1);
	assert_int_equal(c->n_groups, 3);
	check_group(c, 0, "region1/zone1", 0, 54, 0, 2);
	check_group(c, 1, "region1/zone2", 0, 27, 2, 1);
	check_group(c, 2, "region2/zone3", 0, 20, 3, 1);
	check_ep(c, 0, "10.0.0.1:5000", 0, 0);
	check_ep(c, 1, "10.0.0.5:5000", 0, 0);
	check_ep(c, 3, "10.0.0.3:5000", 0, 2);
	assert_int_equal(c->locality_weighted, 1);
	assert_int_equal(f->eps.n, 4); /* no id for the removed endpoint */
	assert_int_equal(c->eff_weight[2], 0);

	/* An address listed again (in another locality, with another weight)
	 * is the first one: its repeat adds nothing to region1/zone2's weight
	 * (1 each: 35 and 35, not 8 and 63), and region1/zone3, which holds only
	 * a repeat, has no group; region3, which holds only a repeat too, makes
	 * the share sent to it nobody's. */
	t = reload_compile(f, repeats);
	c = loaded_cluster(t, TASK_CLUSTER);
	assert_int_equal(c->n_endpoints, 3);
	assert_int_equal(c->n_groups, 3);
	check_group(c, 0, "region1/zone1", 0, 35, 0, 1);
	check_group(c, 1, "region1/zone2", 0, 35, 1, 1);
	check_group(c, 2, "region2/zone3", 0, 20, 2, 1);
	check_ep(c, 0, "10.0.0.1:5000", 0, 0);
	check_ep(c, 1, "10.0.0.2:5000", 0, 1);
	check_ep(c, 2, "10.0.0.3:5000", 0, 2);

	/* Istio's LocalityMatch: a pattern without zone (or subzone) matches
	 * every zone of its region, in from as in to. */
	t = reload_compile(f, region_only);
	c = loaded_cluster(t, TASK_CLUSTER);
	assert_int_equal(c->n_endpoints, 1);
	assert_int_equal(c->n_groups, 1);
	check_ep(c, 0, "10.0.0.3:5000", 0, 0);
}

/* Istio's applyLocalityWeights and applyLocalityFailover take the first
 * entry that applies and stop there (a `return` after the first distribute
 * entry whose from matches, a `break` after the first failover entry from the
 * proxy's region); a later entry that also applies changes nothing. */
static void test_locality_first_entry_wins(void **state)
{
	static const char distribute[] = TASK_HEAD TASK_SE TASK_DR(
	    "    loadBalancer:\n      localityLbSetting:\n        distribute:\n"
	    "        - from: region1/*\n          to: {region2/zone3: 100}\n"
	    "        - from: region1/zone1\n          to: {\"region3/*\": 100}\n"
	    "    outlierDetection: {}\n");
	static const char failover[] = TASK_HEAD TASK_SE TASK_DR(
	    "    loadBalancer:\n      localityLbSetting:\n        failover:\n"
	    "        - {from: region1, to: region3}\n"
	    "        - {from: region1, to: region2}\n"
	    "    outlierDetection: {consecutive5xxErrors: 1}\n");
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, distribute);
	const struct ism_cluster *c = loaded_cluster(t, TASK_CLUSTER);

	/* the first entry: everything to region2/zone3 */
	assert_int_equal(c->n_endpoints, 1);
	assert_int_equal(c->n_groups, 1);
	check_ep(c, 0, "10.0.0.3:5000", 0, 0);
	check_group(c, 0, "region2/zone3", 0, 100, 0, 1);

	/* the first entry: region3 is the failover region (P2), region2 after it */
	t = reload_compile(f, failover);
	c = loaded_cluster(t, TASK_CLUSTER);
	assert_int_equal(c->n_endpoints, 4);
	assert_int_equal(c->n_priorities, 4);
	check_ep(c, 0, "10.0.0.1:5000", 0, 0);
	check_ep(c, 1, "10.0.0.2:5000", 1, 1);
	check_ep(c, 2, "10.0.0.4:5000", 2, 2);
	check_ep(c, 3, "10.0.0.3:5000", 3, 3);
}

/* Envoy warms endpoints up (slow start) under ROUND_ROBIN and LEAST_REQUEST
 * only, and Istio sets slow_start_config for those only: with RANDOM or a
 * consistent hash the warmup has no effect (a warning says so), so the
 * cluster has none. */
static void test_warmup_only_rr_lr(void **state)
{
	static const char yaml[] = TASK_HEAD TASK_SE
	    "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: hw}\n"
	    "spec:\n  host: helloworld\n  trafficPolicy:\n"
	    "    loadBalancer: {simple: RANDOM, warmup: {duration: 10s}}\n"
	    "  subsets:\n"
	    "  - name: rr\n    labels: {net: n1}\n    trafficPolicy:\n"
	    "      loadBalancer: {simple: ROUND_ROBIN, warmup: {duration: 10s}}\n"
	    "  - name: hash\n    labels: {net: n1}\n    trafficPolicy:\n"
	    "      loadBalancer: {consistentHash: {httpHeaderName: x-id}, warmupDurationSecs: "
	    "10s}\n"
	    "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: s}\n"
	    "spec:\n  hosts: [a.example.com]\n  gateways: [gw]\n  http:\n"
	    "  - route: [{destination: {host: helloworld, subset: rr}}]\n"
	    "  - route: [{destination: {host: helloworld, subset: hash}}]\n";
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_cluster *c = loaded_cluster(t, TASK_CLUSTER);

	assert_int_equal(c->lb, ISM_LB_RANDOM);
	assert_int_equal(c->warmup_ms, 0);
	assert_true(has_warning(&f->d, "warmup", "has no effect with RANDOM"));
	c = loaded_cluster(t, "outbound|5000|rr|helloworld.default.svc.cluster.local");
	assert_int_equal(c->lb, ISM_LB_ROUND_ROBIN);
	assert_int_equal(c->warmup_ms, 10000);
	c = loaded_cluster(t, "outbound|5000|hash|helloworld.default.svc.cluster.local");
	assert_int_equal(c->warmup_ms, 0);
}

static void test_retries(void **state)
{
	static const char yaml[] =
	    TASK_HEAD "  - name: explicit\n"
		      "    route: [{destination: {host: helloworld}}]\n"
		      "    retries:\n      attempts: 3\n      perTryTimeout: 500ms\n"
		      "      retryOn: \"5xx,409,gateway-error,429\"\n"
		      "      retryIgnorePreviousHosts: false\n"
		      "      retryRemoteLocalities: true\n"
		      "      backoff: 100ms\n"
		      "  - name: \"off\"\n"
		      "    route: [{destination: {host: helloworld}}]\n"
		      "    retries: {attempts: 0}\n"
		      "  - name: names\n"
		      "    route: [{destination: {host: helloworld}}]\n"
		      "    retries: {attempts: 1}\n" TASK_SE;
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_route *r = t->listeners[0].vhosts[0].routes;

	assert_int_equal(t->listeners[0].vhosts[0].n_routes, 4);
	/* Istio's default. */
	assert_int_equal(r[0].retry.attempts, 2);
	assert_int_equal(r[0].retry.n_codes, 0);
	/* Numeric entries are status codes and imply retriable-status-codes. */
	assert_int_equal(r[1].retry.attempts, 3);
	assert_int_equal(r[1].retry.per_try_timeout_ms, 500);
	assert_int_equal(r[1].retry.retry_on, ISM_RETRY_5XX | ISM_RETRY_GATEWAY_ERROR |
						  ISM_RETRY_RETRIABLE_STATUS_CODES);
	assert_int_equal(r[1].retry.n_codes, 2);
	assert_int_equal(r[1].retry.codes[0], 409);
	assert_int_equal(r[1].retry.codes[1], 429);
	assert_int_equal(r[1].retry.ignore_previous_hosts, 0);
	assert_int_equal(r[1].retry.backoff_base_ms, 100);
	assert_int_equal(r[0].retry.backoff_base_ms, 25); /* Envoy's default base */
	assert_true((const unsigned char *)r[1].retry.codes >= f->arena.base &&
		    (const unsigned char *)r[1].retry.codes < f->arena.base + f->arena.used);
	/* attempts: 0 disables. */
	assert_int_equal(r[2].retry.attempts, 0);
	assert_int_equal(r[2].retry.retry_on, 0);
	assert_int_equal(r[2].retry.n_codes, 0);
	/* No retryOn: Istio's default conditions, with the attempts given. */
	assert_int_equal(r[3].retry.attempts, 1);
	assert_int_equal(r[3].retry.retry_on, ISM_RETRY_CONNECT_FAILURE | ISM_RETRY_REFUSED_STREAM |
						  ISM_RETRY_GRPC_UNAVAILABLE |
						  ISM_RETRY_GRPC_CANCELLED |
						  ISM_RETRY_RETRIABLE_STATUS_CODES);
	assert_int_equal(r[3].retry.n_codes, 0);
	/* retryRemoteLocalities: Envoy's previous_priorities, off by default */
	assert_int_equal(r[1].retry.remote_localities, 1);
	assert_int_equal(r[0].retry.remote_localities, 0);
	assert_int_equal(r[3].retry.remote_localities, 0);
	assert_false(has_warning(
	    &f->d, "VirtualService default/vs: spec.http[1].retries.retryRemoteLocalities", ""));
}

/* The gRPC names and the rest of Envoy's vocabulary. */
static void test_retry_names(void **state)
{
	static const char yaml[] = TASK_HEAD
	    "    retries:\n      attempts: 2\n      retryOn: reset,reset-before-request,"
	    "connect-failure,envoy-ratelimited,retriable-4xx,refused-stream,"
	    "retriable-status-codes,cancelled,deadline-exceeded,internal,resource-exhausted,"
	    "unavailable,retriable-headers,http3-post-connect-failure\n" TASK_SE;
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_route *r = t->listeners[0].vhosts[0].routes;

	assert_int_equal(r[0].retry.retry_on, 0x7fffu & ~(ISM_RETRY_5XX | ISM_RETRY_GATEWAY_ERROR |
							  ISM_RETRY_RETRIABLE_HEADERS));
	assert_int_equal(r[0].retry.n_codes, 0);
	/* Two that never hold at a gateway: accepted, with a warning each. */
	assert_true(has_warning(&f->d, "spec.http[0].retries.retryOn",
				"\"retriable-headers\" has no effect"));
	assert_true(has_warning(&f->d, "spec.http[0].retries.retryOn",
				"\"http3-post-connect-failure\" has no effect"));
}

#define HASH_SE                                                                                    \
	"---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: hw}\n"      \
	"spec:\n  hosts: [helloworld]\n  ports: [{number: 5000, name: http}]\n"                    \
	"  resolution: STATIC\n  endpoints:\n"                                                     \
	"  - {address: 10.0.0.1, locality: region1/zone1, labels: {v: a}}\n"                       \
	"  - {address: 10.0.0.2, locality: region1/zone1, labels: {v: a}, weight: 2}\n"            \
	"  - {address: 10.0.0.3, locality: region1/zone1, labels: {v: a}}\n"

static void test_consistent_hash(void **state)
{
	static const char yaml[] =
	    "apiVersion: isthmus.io/v1\nkind: Appliance\nmetadata: {name: t}\n"
	    "spec:\n  locality: region1/zone1\n"
	    "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\n"
	    "spec:\n  servers: [{port: {number: 80, name: http-80-5, protocol: HTTP}, hosts: "
	    "[\"*\"]}]\n"
	    "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\n"
	    "spec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n"
	    "  - route:\n"
	    "    - {destination: {host: helloworld, subset: ring}, weight: 1}\n"
	    "    - {destination: {host: helloworld, subset: maglev}, weight: 1}\n"
	    "    - {destination: {host: helloworld, subset: cookie}, weight: 1}\n"
	    "    - {destination: {host: helloworld, subset: legacy}, weight: 1}\n" HASH_SE
	    "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: hw}\n"
	    "spec:\n  host: helloworld\n  subsets:\n"
	    "  - name: ring\n    labels: {v: a}\n    trafficPolicy:\n      loadBalancer:\n"
	    "        consistentHash:\n          httpHeaderName: X-User\n"
	    "          ringHash: {minimumRingSize: 64}\n"
	    "  - name: maglev\n    trafficPolicy:\n      loadBalancer:\n"
	    "        consistentHash:\n          useSourceIp: true\n"
	    "          maglev: {tableSize: 251}\n"
	    "  - name: cookie\n    trafficPolicy:\n      loadBalancer:\n"
	    "        consistentHash:\n          httpCookie: {name: sid, path: /, ttl: 1h}\n"
	    "  - name: legacy\n    trafficPolicy:\n      loadBalancer:\n"
	    "        consistentHash: {httpQueryParameterName: u, minimumRingSize: 32}\n";
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_cluster *ring =
	    loaded_cluster(t, "outbound|5000|ring|helloworld.default.svc.cluster.local");
	const struct ism_cluster *mag =
	    loaded_cluster(t, "outbound|5000|maglev|helloworld.default.svc.cluster.local");
	const struct ism_cluster *ck =
	    loaded_cluster(t, "outbound|5000|cookie|helloworld.default.svc.cluster.local");
	const struct ism_cluster *leg =
	    loaded_cluster(t, "outbound|5000|legacy|helloworld.default.svc.cluster.local");
	uint32_t seen[3] = {0};

	assert_int_equal(ring->lb, ISM_LB_RING_HASH);
	assert_int_equal(ring->hash.on, ISM_HASH_HEADER);
	assert_string_equal(ring->hash.name.p, "x-user");
	assert_int_equal(ring->hash.ring_size, 64);
	assert_true(ring->hash.table_len >= 64);
	assert_non_null(ring->hash.ring_hashes);
	for (uint32_t i = 0; i < ring->hash.table_len; i++) {
		assert_true(ring->hash.table[i] < 3);
		seen[ring->hash.table[i]]++;
		if (i > 0)
			assert_true(ring->hash.ring_hashes[i - 1] <= ring->hash.ring_hashes[i]);
	}
	assert_true(seen[0] > 0 && seen[1] > seen[0] && seen[2] > 0); /* weight 2 gets more */

	assert_int_equal(mag->lb, ISM_LB_MAGLEV);
	assert_int_equal(mag->hash.on, ISM_HASH_SOURCE_IP);
	assert_int_equal(mag->hash.table_size, 251);
	assert_int_equal(mag->hash.table_len, 251);
	assert_null(mag->hash.ring_hashes);
	memset(seen, 0, sizeof(seen));
	for (uint32_t i = 0; i < 251; i++) {
		assert_true(mag->hash.table[i] < 3);
		seen[mag->hash.table[i]]++;
	}
	assert_true(seen[0] > 0 && seen[1] > seen[0] && seen[2] > 0);

	assert_int_equal(ck->lb, ISM_LB_RING_HASH);
	assert_int_equal(ck->hash.on, ISM_HASH_COOKIE);
	assert_string_equal(ck->hash.name.p, "sid");
	assert_string_equal(ck->hash.cookie_path.p, "/");
	assert_int_equal(ck->hash.cookie_ttl_ms, 3600000);
	assert_int_equal(ck->hash.ring_size, 1024); /* the default */
	assert_true(ck->hash.table_len >= 1024);

	assert_int_equal(leg->hash.on, ISM_HASH_QUERY_PARAM);
	assert_string_equal(leg->hash.name.p, "u");
	assert_int_equal(leg->hash.ring_size, 32); /* deprecated alias */
	assert_int_equal(f->d.n, 0);
}

/* A gateway whose route goes to service s's ports 80 and 81, without and with
 * subset a (more destinations may follow), and s. */
#define S_GW_ROUTE                                                                                 \
	"---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\n"           \
	"spec:\n  servers: [{port: {number: 80, name: http-80-6, protocol: HTTP}, hosts: "         \
	"[\"*\"]}]\n"                                                                              \
	"---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\n"    \
	"spec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n"                                     \
	"  - route:\n"                                                                             \
	"    - {destination: {host: s, port: {number: 80}}, weight: 1}\n"                          \
	"    - {destination: {host: s, port: {number: 81}}, weight: 1}\n"                          \
	"    - {destination: {host: s, port: {number: 80}, subset: a}, weight: 1}\n"               \
	"    - {destination: {host: s, port: {number: 81}, subset: a}, weight: 1}\n"

#define S_SE                                                                                       \
	"---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: s}\n"       \
	"spec:\n  hosts: [s]\n  ports: [{number: 80, name: http}, {number: 81, name: alt}]\n"      \
	"  resolution: STATIC\n  endpoints: [{address: 10.0.0.1}]\n"

/* A Gateway on port 80, a VirtualService to service s, and the head of s's
 * ServiceEntry, its spec to follow. */
#define GW_VS_S                                                                                    \
	"---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\n"           \
	"spec:\n  servers: [{port: {number: 80, name: http-80-7, protocol: HTTP}, hosts: "         \
	"[\"*\"]}]\n"                                                                              \
	"---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\n"    \
	"spec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n"                                     \
	"  - route: [{destination: {host: s}}]\n"                                                  \
	"---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: s}\n"

/* A MESH_INTERNAL service with an endpoint in the mesh (serviceAccount), on
 * an appliance without meshIdentity: no automatic mutual TLS, and a warning
 * at the ServiceEntry's location saying so. */
static void test_auto_mtls_without_mesh(void **state)
{
	static const char yaml[] = APP GW_VS_S
	    "spec:\n  hosts: [s]\n  ports: [{number: 80, name: http}]\n  location: MESH_INTERNAL\n"
	    "  resolution: STATIC\n"
	    "  endpoints: [{address: 10.0.0.1}, {address: 10.0.0.2, serviceAccount: web}]\n";
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_cluster *c = s_cluster(t, 80, "");
	const struct ism_diag *w;
	int line, col;

	assert_non_null(c);
	assert_null(c->auto_tls);
	assert_int_equal(c->n_endpoints, 2);
	assert_false(c->endpoints[0].mesh_tls);
	assert_true(c->endpoints[1].mesh_tls);
	assert_int_equal(ism_ep_tls(c, &c->endpoints[1])->mode, ISM_TLS_NONE);
	w = find_diag(&f->d, ISM_DIAG_WARNING, "ServiceEntry default/s: spec.location",
		      "endpoints[1] takes Istio's automatic mutual TLS");
	assert_non_null(w);
	pos_of(yaml, "MESH_INTERNAL", &line, &col);
	assert_int_equal(w->line, line);
	assert_int_equal(w->col, col);
}

/* spec.proxyHeaders: every field of Istio's ProxyConfig.proxyHeaders loads;
 * those Istio's gateway does not use (X-Forwarded-Client-Cert's) warn. */
static void test_proxy_headers(void **state)
{
	static const char yaml[] =
	    "apiVersion: isthmus.io/v1\nkind: Appliance\nmetadata: {name: t}\n"
	    "spec:\n  locality: region1/zone1\n"
	    "  proxyHeaders:\n"
	    "    requestId: {disabled: true}\n"
	    "    xForwardedPort: {enabled: true}\n"
	    "    xForwardedHost: {enabled: true}\n"
	    "    attemptCount: {disabled: true}\n"
	    "    forwardedClientCert: APPEND_FORWARD\n"
	    "    setCurrentClientCertDetails: {subject: true, cert: true, chain: false, dns: "
	    "true}\n"
	    "    metadataExchangeHeaders: {mode: IN_MESH}\n" GW_VS_S
	    "spec:\n  hosts: [s]\n  ports: [{number: 80, name: http}]\n"
	    "  resolution: STATIC\n  endpoints: [{address: 10.0.0.1}]\n";
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);

	assert_false(t->request_id);
	assert_true(t->xf_port);
	assert_true(t->xf_host);
	assert_false(t->attempt_count);
	assert_true(t->debug_headers);
	assert_int_equal(t->fcc, ISM_FCC_SANITIZE_SET); /* gatewayTopology's default */
	assert_true(
	    has_warning(&f->d, "spec.proxyHeaders.forwardedClientCert", "not used at a gateway"));
	assert_true(has_warning(&f->d, "spec.proxyHeaders.setCurrentClientCertDetails",
				"not used at a gateway"));
}

/* A Gateway field Istio's API keeps without effect loads, with a warning
 * (targetPort, which Istio's validateServerPort refuses, is in test_invalid). */
static void test_gateway_no_effect(void **state)
{
	static const char yaml[] =
	    "apiVersion: isthmus.io/v1\nkind: Appliance\nmetadata: {name: t}\n"
	    "spec:\n  locality: region1/zone1\n"
	    "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\n"
	    "spec:\n  servers:\n  - port: {number: 80, name: http-80, protocol: HTTP}\n"
	    "    hosts: [\"*\"]\n    defaultEndpoint: 127.0.0.1:8080\n";
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);

	assert_int_equal(t->n_listeners, 1);
	assert_int_equal(t->listeners[0].port, 80);
	assert_true(has_warning(&f->d, "spec.servers[0].defaultEndpoint", "no effect"));
}

/* Kinds Istio has no gateway use (a Sidecar, a WorkloadGroup) load, with a
 * warning, and make nothing; an unknown kind and a kind isthmus does not make
 * yet stay errors. */
static void test_kinds_no_effect(void **state)
{
	static const char yaml[] =
	    "apiVersion: isthmus.io/v1\nkind: Appliance\nmetadata: {name: t}\n"
	    "spec:\n  locality: region1/zone1\n"
	    "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\n"
	    "spec:\n  servers:\n  - port: {number: 80, name: http-80-9, protocol: HTTP}\n    "
	    "hosts: [\"*\"]\n"
	    "---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: sc}\n"
	    "spec:\n  egress: [{hosts: [\"./*\"]}]\n"
	    "---\napiVersion: networking.istio.io/v1beta1\nkind: WorkloadGroup\nmetadata: {name: "
	    "wg}\nspec:\n  template: {serviceAccount: vm}\n";
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);

	assert_int_equal(t->n_listeners, 1);
	assert_true(has_warning(&f->d, "kind", "a Sidecar has no effect on a gateway"));
	assert_true(has_warning(&f->d, "kind", "a WorkloadGroup has no effect here"));
	assert_true(has_warning(&f->d, "Sidecar default/sc: kind", "ignored"));
	assert_true(has_warning(&f->d, "WorkloadGroup default/wg: kind", "ignored"));
}

/* Pool limits and outlier detection; portLevelSettings replace the whole
 * policy for their port, without inheriting what they leave out. */
static void test_pool_outlier_ports(void **state)
{
	static const char yaml[] =
	    "apiVersion: isthmus.io/v1\nkind: Appliance\nmetadata: {name: t}\n"
	    "spec:\n  locality: region1/zone1\n" S_GW_ROUTE S_SE
	    "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: s}\n"
	    "spec:\n  host: s\n  trafficPolicy:\n"
	    "    loadBalancer: {simple: RANDOM}\n"
	    "    connectionPool:\n"
	    "      tcp: {maxConnections: 100, connectTimeout: 2s}\n"
	    "      http: {http1MaxPendingRequests: 10, maxRequestsPerConnection: 1,\n"
	    "             maxRetries: 0, idleTimeout: 5s}\n"
	    "    outlierDetection:\n"
	    "      consecutiveErrors: 7\n      baseEjectionTime: 400s\n"
	    "      maxEjectionPercent: 0\n      minHealthPercent: 50\n"
	    "      splitExternalLocalOriginErrors: true\n"
	    "      consecutiveLocalOriginFailures: 2\n"
	    "    portLevelSettings:\n"
	    "    - port: {number: 81}\n"
	    "      connectionPool: {tcp: {maxConnections: 5}}\n"
	    "  subsets:\n"
	    "  - name: a\n    trafficPolicy:\n"
	    "      outlierDetection: {consecutiveGatewayErrors: 3, consecutive5xxErrors: 0,\n"
	    "                         splitExternalLocalOriginErrors: true,\n"
	    "                         consecutiveLocalOriginFailures: 0}\n";
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_cluster *p80 = s_cluster(t, 80, "");
	const struct ism_cluster *p81 = s_cluster(t, 81, "");
	const struct ism_cluster *a80 = s_cluster(t, 80, "a");
	const struct ism_cluster *a81 = s_cluster(t, 81, "a");

	assert_int_equal(p80->lb, ISM_LB_RANDOM);
	assert_int_equal(p80->pool.max_connections, 100);
	assert_int_equal(p80->pool.max_pending, 10);
	assert_int_equal(p80->pool.max_requests_per_conn, 1);
	assert_int_equal(p80->pool.max_retries, UINT32_MAX); /* 0: Istio's default */
	assert_int_equal(p80->connect_timeout_ms, 2000);
	assert_int_equal(p80->idle_timeout_ms, 5000);
	assert_non_null(p80->od);
	/* consecutiveErrors: gateway errors only, as old Istio. */
	assert_int_equal(p80->od->consecutive_gateway, 7);
	assert_int_equal(p80->od->consecutive_5xx, 0);
	assert_int_equal(p80->od->base_ejection_ms, 400000);
	assert_int_equal(p80->od->max_ejection_ms, 400000);
	assert_int_equal(p80->od->max_ejection_percent, 10);
	assert_int_equal(p80->od->interval_ms, 10000);
	assert_int_equal(p80->od->split_local, 1);
	assert_int_equal(p80->od->consecutive_local, 2);
	assert_int_equal(p80->panic_threshold, 50);

	/* Port 81: only its connectionPool; load balancer and detection default. */
	assert_int_equal(p81->lb, ISM_LB_LEAST_REQUEST);
	assert_int_equal(p81->pool.max_connections, 5);
	assert_int_equal(p81->pool.max_pending, UINT32_MAX);
	assert_int_equal(p81->connect_timeout_ms, 10000);
	assert_null(p81->od);
	assert_int_equal(p81->panic_threshold, 50);

	/* The subset replaces outlierDetection whole and inherits the rest. */
	assert_int_equal(a80->lb, ISM_LB_RANDOM);
	assert_int_equal(a80->pool.max_connections, 100);
	assert_int_equal(a80->od->consecutive_gateway, 3);
	assert_int_equal(a80->od->consecutive_5xx, 0);
	assert_int_equal(a80->od->base_ejection_ms, 30000);
	/* consecutiveLocalOriginFailures 0 keeps Envoy's 5, as Istio sends it
	 * only when > 0. */
	assert_int_equal(a80->od->split_local, 1);
	assert_int_equal(a80->od->consecutive_local, 5);
	assert_int_equal(a80->panic_threshold, 0);
	/* Subset at port 81: the rule's port settings, then the subset's block. */
	assert_int_equal(a81->pool.max_connections, 5);
	assert_int_equal(a81->lb, ISM_LB_LEAST_REQUEST);
	assert_non_null(a81->od);
	assert_int_equal(a81->od->consecutive_gateway, 3);
}

/* trafficPolicy.proxyProtocol: the rule's (V1 when the version is left out),
 * replaced by a subset's. A portLevelSettings entry for the port, which
 * cannot have one, stands for the whole policy there (Istio's
 * GetPortLevelTrafficPolicy: shadowCopyPortTrafficPolicy keeps the four
 * blocks only), so the rule's is gone at that port, a subset's own stays
 * (MergeTrafficPolicy) unless the subset's own port-level entry stands for
 * its policy. The health check takes the service port's without a subset,
 * as it takes its tls. */
static void test_upstream_proxy_protocol(void **state)
{
	static const char yaml[] =
	    "apiVersion: isthmus.io/v1\nkind: Appliance\nmetadata: {name: t}\n"
	    "spec:\n  locality: region1/zone1\n  healthChecks: [{host: s}]\n" S_GW_ROUTE
	    "    - {destination: {host: s, port: {number: 81}, subset: b}, weight: 1}\n"
	    "    - {destination: {host: t, port: {number: 80}}, weight: 1}\n" S_SE
	    "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: t}\n"
	    "spec:\n  hosts: [t]\n  ports: [{number: 80, name: http}]\n"
	    "  resolution: STATIC\n  endpoints: [{address: 10.0.0.2}]\n"
	    "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: s}\n"
	    "spec:\n  host: s\n  trafficPolicy:\n"
	    "    proxyProtocol: {}\n"
	    "    portLevelSettings:\n"
	    "    - port: {number: 81}\n"
	    "      connectionPool: {tcp: {maxConnections: 5}}\n"
	    "  subsets:\n"
	    "  - name: a\n    trafficPolicy: {proxyProtocol: {version: V2}}\n"
	    "  - name: b\n    trafficPolicy:\n"
	    "      portLevelSettings: [{port: {number: 81}, loadBalancer: {simple: RANDOM}}]\n";
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_cluster *p80 = s_cluster(t, 80, ""), *p81 = s_cluster(t, 81, "");
	const struct ism_cluster *a80 = s_cluster(t, 80, "a"), *a81 = s_cluster(t, 81, "a");
	const struct ism_cluster *b81 = s_cluster(t, 81, "b");
	const struct ism_cluster *other =
	    loaded_cluster(t, "outbound|80||t.default.svc.cluster.local");

	assert_int_equal(p80->pp, ISM_UPP_V1);
	assert_int_equal(p81->pp, ISM_UPP_NONE);
	assert_int_equal(p81->pool.max_connections, 5);
	assert_int_equal(a80->pp, ISM_UPP_V2);
	assert_int_equal(a81->pp, ISM_UPP_V2);
	assert_int_equal(b81->pp, ISM_UPP_NONE);
	assert_int_equal(b81->lb, ISM_LB_RANDOM);
	assert_int_equal(other->pp, ISM_UPP_NONE);
	assert_non_null(a80->hc);
	assert_int_equal(a80->hc_pp, ISM_UPP_V1);
	assert_int_equal(p81->hc_pp, ISM_UPP_NONE);
	assert_int_equal(f->d.n, 0);
}

/* A subset's portLevelSettings entry for the port stands for its whole
 * policy there (Istio's MergeTrafficPolicy with hasPortLevel): the rule's
 * tls and connectionPool are replaced by the entry's, which sets neither, so
 * the defaults apply, while the subset at another port keeps the rule's. */
static void test_subset_port_level_replaces(void **state)
{
	static const char yaml[] =
	    "apiVersion: isthmus.io/v1\nkind: Appliance\nmetadata: {name: t}\n"
	    "spec:\n  locality: region1/zone1\n" S_GW_ROUTE S_SE
	    "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: s}\n"
	    "spec:\n  host: s\n  trafficPolicy:\n"
	    "    tls: {mode: SIMPLE, insecureSkipVerify: true}\n"
	    "    connectionPool: {tcp: {maxConnections: 9}}\n"
	    "  subsets:\n"
	    "  - name: a\n    trafficPolicy:\n"
	    "      portLevelSettings: [{port: {number: 81}, loadBalancer: {simple: RANDOM}}]\n";
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_cluster *a80 = s_cluster(t, 80, "a"), *a81 = s_cluster(t, 81, "a");
	const struct ism_cluster *p81 = s_cluster(t, 81, "");

	assert_int_equal(p81->tls.mode, ISM_TLS_SIMPLE);
	assert_int_equal(p81->pool.max_connections, 9);
	assert_int_equal(a80->tls.mode, ISM_TLS_SIMPLE);
	assert_int_equal(a80->pool.max_connections, 9);
	assert_int_equal(a81->lb, ISM_LB_RANDOM);
	assert_int_equal(a81->tls.mode, ISM_TLS_NONE);
	assert_int_equal(a81->pool.max_connections, UINT32_MAX);
}

/* Endpoints on Unix domain sockets (unix://<path>, unix://@<abstract>):
 * AF_UNIX addresses whose length counts the path's NUL (none for an
 * abstract name, whose first byte is NUL), named by their path, keyed
 * <host>|<path>; the service port does not touch them. */
static void test_unix_endpoints(void **state)
{
	static const char yaml[] =
	    "apiVersion: isthmus.io/v1\nkind: Appliance\nmetadata: {name: t}\n"
	    "spec:\n  locality: region1/zone1\n"
	    "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\n"
	    "spec:\n  servers: [{port: {number: 80, name: http-80-10, protocol: HTTP}, hosts: "
	    "[\"*\"]}]\n"
	    "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\n"
	    "spec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http: [{route: [{destination: {host: "
	    "u}}]}]\n"
	    "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: u}\n"
	    "spec:\n  hosts: [u]\n  ports: [{number: 8080, name: http}]\n  resolution: STATIC\n"
	    "  endpoints: [{address: \"unix:///run/app.sock\"}, {address: \"unix://@app\"}]\n";
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_cluster *cl =
	    loaded_cluster(t, "outbound|8080||u.default.svc.cluster.local");
	const struct sockaddr_un *a, *b;

	assert_int_equal(cl->n_endpoints, 2);
	a = (const struct sockaddr_un *)&cl->endpoints[0].addr;
	b = (const struct sockaddr_un *)&cl->endpoints[1].addr;
	assert_int_equal(a->sun_family, AF_UNIX);
	assert_string_equal(a->sun_path, "/run/app.sock");
	assert_int_equal(cl->endpoints[0].addrlen, offsetof(struct sockaddr_un, sun_path) + 14);
	assert_string_equal(cl->endpoints[0].addr_text.p, "/run/app.sock");
	assert_int_equal(b->sun_family, AF_UNIX);
	assert_int_equal(b->sun_path[0], '\0');
	assert_memory_equal(b->sun_path + 1, "app", 3);
	assert_int_equal(cl->endpoints[1].addrlen, offsetof(struct sockaddr_un, sun_path) + 4);
	assert_string_equal(cl->endpoints[1].addr_text.p, "@app");
	assert_string_equal(f->eps.keys[cl->endpoints[0].id - 100],
			    "u.default.svc.cluster.local|/run/app.sock");
	assert_int_equal(f->d.n, 0);
}

/* trafficPolicy.tunnel: the rule's CONNECT authority on its clusters (an
 * IPv6 target in brackets); a subset's own, and none for a subset without
 * one, as Istio's tunnelingconfig.Apply takes a subset's policy alone. */
static void test_tunnel(void **state)
{
	static const char yaml[] =
	    "apiVersion: isthmus.io/v1\nkind: Appliance\nmetadata: {name: t}\n"
	    "spec:\n  locality: region1/zone1\n" S_GW_ROUTE
	    "    - {destination: {host: s, port: {number: 81}, subset: b}, weight: 1}\n"
	    "    - {destination: {host: s, port: {number: 81}, subset: a}, weight: 1}\n" S_SE
	    "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: s}\n"
	    "spec:\n  host: s\n  trafficPolicy:\n"
	    "    tunnel: {protocol: POST, targetHost: egress.example.com, targetPort: 8443}\n"
	    "  subsets:\n"
	    "  - name: a\n    trafficPolicy: {tunnel: {protocol: CONNECT, targetHost: "
	    "\"2001:db8::7\","
	    " targetPort: 443}}\n"
	    "  - name: b\n    trafficPolicy: {loadBalancer: {simple: RANDOM}}\n";
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_cluster *p80 = s_cluster(t, 80, ""), *a81 = s_cluster(t, 81, "a");
	const struct ism_cluster *b81 = s_cluster(t, 81, "b");

	assert_string_equal(p80->tunnel.p, "egress.example.com:8443");
	assert_int_equal(p80->tunnel_post, 1);
	assert_string_equal(a81->tunnel.p, "[2001:db8::7]:443");
	assert_int_equal(a81->tunnel_post, 0);
	assert_int_equal(b81->tunnel.len, 0);
	assert_int_equal(f->d.n, 0);
}

/* --- HTTP/2 and gRPC --- */

/* Gateway servers HTTP, HTTP2 and GRPC (any case, as Istio parses protocols)
 * are plaintext HTTP servers and may share a port; every plaintext listener
 * takes HTTP/2 with prior knowledge. ServiceEntry ports HTTP2, GRPC and
 * GRPC-WEB make HTTP/2 clusters; HTTP, HTTPS, no protocol, an empty one
 * (Istio's sniffing) and MONGO, REDIS, MYSQL (an http route's upstream
 * speaks HTTP/1.1 whatever they say) HTTP/1.1 ones. */
static void test_h2_protocols(void **state)
{
	static const char yaml[] =
	    APP "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\n"
		"spec:\n  servers:\n"
		"  - {port: {number: 80, name: web, protocol: HTTP}, hosts: [a.example.com]}\n"
		"  - {port: {number: 80, name: web-grpc, protocol: grpc}, hosts: [b.example.com]}\n"
		"  - {port: {number: 81, name: h2, protocol: Http2}, hosts: [\"*\"],\n"
		"     tls: {httpsRedirect: true}}\n"
		"---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n"
		"metadata: {name: vs}\nspec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n"
		"  - route:\n"
		"    - {destination: {host: s, port: {number: 1}}, weight: 1}\n"
		"    - {destination: {host: s, port: {number: 2}}, weight: 1}\n"
		"    - {destination: {host: s, port: {number: 3}}, weight: 1}\n"
		"    - {destination: {host: s, port: {number: 4}}, weight: 1}\n"
		"    - {destination: {host: s, port: {number: 5}}, weight: 1}\n"
		"    - {destination: {host: s, port: {number: 6}}, weight: 1}\n"
		"    - {destination: {host: s, port: {number: 7}}, weight: 1}\n"
		"    - {destination: {host: s, port: {number: 8}}, weight: 1}\n"
		"    - {destination: {host: s, port: {number: 9}}, weight: 1}\n"
		"    - {destination: {host: s, port: {number: 10}}, weight: 1}\n"
		"    - {destination: {host: t}, weight: 1}\n"
		"---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: s}\n"
		"spec:\n  hosts: [s]\n  resolution: STATIC\n  endpoints: [{address: 10.0.0.1}]\n"
		"  ports:\n  - {number: 1, name: a, protocol: HTTP}\n"
		"  - {number: 2, name: b, protocol: HTTP2}\n"
		"  - {number: 3, name: c, protocol: GRPC}\n"
		"  - {number: 4, name: d, protocol: grpc-web}\n"
		"  - {number: 5, name: e, protocol: HTTPS}\n"
		"  - {number: 6, name: f}\n"
		"  - {number: 7, name: g, protocol: \"\"}\n" /* Istio: sniffed */
		"  - {number: 8, name: h, protocol: MONGO}\n"
		"  - {number: 9, name: i, protocol: REDIS}\n"
		"  - {number: 10, name: j, protocol: mysql}\n";
	/* Service s's ports 1..10, then host t (no ServiceEntry). */
	static const uint8_t want[] = {ISM_UP_HTTP1, ISM_UP_HTTP2, ISM_UP_HTTP2, ISM_UP_HTTP2,
				       ISM_UP_HTTP1, ISM_UP_HTTP1, ISM_UP_HTTP1, ISM_UP_HTTP1,
				       ISM_UP_HTTP1, ISM_UP_HTTP1, ISM_UP_HTTP1};
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);

	assert_int_equal(t->n_listeners, 2);
	for (uint32_t i = 0; i < t->n_listeners; i++) {
		assert_int_equal(t->listeners[i].h2c, 1);
		assert_int_equal(t->listeners[i].n_tls, 0);
	}
	assert_int_equal(t->listeners[0].port, 80);
	assert_int_equal(t->listeners[0].n_vhosts, 1);
	assert_int_equal(t->listeners[0].vhosts[0].n_domains, 2);
	/* The HTTP2 server keeps what a plaintext server may have: the redirect. */
	assert_int_equal(t->listeners[1].vhosts[0].https_redirect, 1);
	for (unsigned i = 0; i < sizeof(want); i++) {
		const struct ism_cluster *c =
		    i < 10 ? s_cluster(t, i + 1, "")
			   : loaded_cluster(t, "outbound|80||t.default.svc.cluster.local");

		assert_int_equal(c->proto, want[i]);
		assert_int_equal(c->h2_max_streams, ISM_H2_MAX_STREAMS);
		assert_int_equal(c->h2_ping_interval_ms, 0);
		assert_int_equal(c->pool.max_requests, UINT32_MAX);
		assert_int_equal(c->tls.alpn, 0); /* plaintext */
	}
}

/* connectionPool.http's HTTP/2 fields, merged as the other connectionPool
 * fields (a block replaces the inherited one whole), and the protocol they
 * decide with the port's: UPGRADE makes HTTP/2, DO_NOT_UPGRADE leaves an HTTP2
 * port HTTP/2, useClientProtocol wins and gets Envoy's HTTP/2 defaults. The
 * ClientHello of a TLS cluster offers what its protocol needs. */
static void test_h2_pool(void **state)
{
	static const char yaml[] = APP
	    "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\n"
	    "spec:\n  servers: [{port: {number: 80, name: http-80-11, protocol: HTTP}, hosts: "
	    "[\"*\"]}]\n"
	    "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n"
	    "metadata: {name: vs}\nspec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n"
	    "  - route:\n"
	    "    - {destination: {host: s, port: {number: 80}}, weight: 1}\n"
	    "    - {destination: {host: s, port: {number: 81}}, weight: 1}\n"
	    "    - {destination: {host: s, port: {number: 80}, subset: c}, weight: 1}\n"
	    "    - {destination: {host: s, port: {number: 81}, subset: c}, weight: 1}\n"
	    "    - {destination: {host: s, port: {number: 80}, subset: \"n\"}, weight: 1}\n"
	    "    - {destination: {host: s, port: {number: 81}, subset: \"n\"}, weight: 1}\n"
	    "    - {destination: {host: s, port: {number: 82}}, weight: 1}\n"
	    "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: s}\n"
	    "spec:\n  hosts: [s]\n  resolution: STATIC\n  endpoints: [{address: 10.0.0.1}]\n"
	    "  ports:\n  - {number: 80, name: http, protocol: HTTP}\n"
	    "  - {number: 81, name: grpc, protocol: GRPC}\n"
	    "  - {number: 82, name: h2, protocol: HTTP2}\n"
	    "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: s}\n"
	    "spec:\n  host: s\n  trafficPolicy:\n"
	    "    tls: {mode: SIMPLE}\n"
	    "    connectionPool:\n"
	    "      http:\n"
	    "        http2MaxRequests: 500\n"
	    "        h2UpgradePolicy: UPGRADE\n"
	    "        maxConcurrentStreams: 5000\n"
	    "        http2KeepAlive: {interval: 30s, timeout: 1500ms}\n"
	    "    portLevelSettings:\n"
	    "    - port: {number: 82}\n"
	    "      connectionPool:\n"
	    "        http: {h2UpgradePolicy: DO_NOT_UPGRADE, maxConcurrentStreams: 0,\n"
	    "               http2MaxRequests: 0}\n"
	    "  subsets:\n"
	    "  - name: c\n    trafficPolicy:\n"
	    "      connectionPool:\n"
	    "        http: {useClientProtocol: true, maxConcurrentStreams: 10,\n"
	    "               http2KeepAlive: {interval: 1s, timeout: 1s}}\n"
	    "  - name: \"n\"\n    trafficPolicy:\n"
	    "      connectionPool:\n"
	    "        http: {h2UpgradePolicy: DEFAULT, maxConcurrentStreams: 7}\n";
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_cluster *p80 = s_cluster(t, 80, "");
	const struct ism_cluster *p81 = s_cluster(t, 81, "");
	const struct ism_cluster *p82 = s_cluster(t, 82, "");
	const struct ism_cluster *c80 = s_cluster(t, 80, "c");
	const struct ism_cluster *c81 = s_cluster(t, 81, "c");
	const struct ism_cluster *n80 = s_cluster(t, 80, "n");
	const struct ism_cluster *n81 = s_cluster(t, 81, "n");

	/* The rule: an HTTP port upgraded; streams capped; PINGs. */
	assert_int_equal(p80->proto, ISM_UP_HTTP2);
	assert_int_equal(p80->pool.max_requests, 500);
	assert_int_equal(p80->h2_max_streams, ISM_H2_MAX_STREAMS);
	assert_int_equal(p80->h2_ping_interval_ms, 30000);
	assert_int_equal(p80->h2_ping_timeout_ms, 1500);
	assert_int_equal(p80->tls.alpn, ISM_ALPN_H2);
	assert_int_equal(p81->proto, ISM_UP_HTTP2);
	/* Port 82's own policy: DO_NOT_UPGRADE keeps an HTTP2 port HTTP/2; 0 is the
	 * default for both counts; no PINGs: the rule's blocks do not apply. */
	assert_int_equal(p82->proto, ISM_UP_HTTP2);
	assert_int_equal(p82->pool.max_requests, UINT32_MAX);
	assert_int_equal(p82->h2_max_streams, ISM_H2_MAX_STREAMS);
	assert_int_equal(p82->h2_ping_interval_ms, 0);
	assert_int_equal(p82->tls.mode, ISM_TLS_NONE); /* the entry has no tls block */
	assert_int_equal(p82->tls.alpn, 0);
	/* Subset c: the client's protocol, whatever the port; Envoy's HTTP/2
	 * defaults (Istio sets the streams and PINGs on explicit HTTP/2 only);
	 * the ClientHello offers both (narrowed per connection by the worker). */
	assert_int_equal(c80->proto, ISM_UP_AS_CLIENT);
	assert_int_equal(c81->proto, ISM_UP_AS_CLIENT);
	assert_int_equal(c80->h2_max_streams, ISM_H2_MAX_STREAMS);
	assert_int_equal(c80->h2_ping_interval_ms, 0);
	assert_int_equal(c80->pool.max_requests, UINT32_MAX); /* the block, replaced */
	assert_int_equal(c80->tls.alpn, ISM_ALPN_H2 | ISM_ALPN_HTTP11);
	/* Subset n: DEFAULT is the mesh's, no upgrade: the port decides. */
	assert_int_equal(n80->proto, ISM_UP_HTTP1);
	assert_int_equal(n80->h2_max_streams, ISM_H2_MAX_STREAMS);
	assert_int_equal(n80->tls.alpn, ISM_ALPN_HTTP11);
	assert_int_equal(n81->proto, ISM_UP_HTTP2);
	assert_int_equal(n81->h2_max_streams, 7);
	assert_int_equal(n81->tls.alpn, ISM_ALPN_H2);
	/* The offered protocols are part of the context. */
	assert_true(n80->tls.fingerprint != n81->tls.fingerprint);
	assert_true(n81->tls.fingerprint == p80->tls.fingerprint);
	assert_true(c80->tls.fingerprint != n80->tls.fingerprint);
}

/* spec.limits' HTTP/2 settings, as set; the header list follows
 * maxRequestHeaderBytes unless set apart. */
static void test_h2_limits(void **state)
{
	static const char set[] = APP "  limits:\n"
				      "    http2MaxConcurrentStreams: 1000\n"
				      "    http2InitialStreamWindowSize: 65535\n"
				      "    http2InitialConnectionWindowSize: 2147483647\n"
				      "    http2MaxHeaderListSize: 1024\n";
	static const char follow[] = APP "  limits: {maxRequestHeaderBytes: 8192}\n";
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, set);

	assert_int_equal(t->limits.h2_max_concurrent_streams, 1000);
	assert_int_equal(t->limits.h2_initial_stream_window, 65535);
	assert_int_equal(t->limits.h2_initial_conn_window, 2147483647u);
	assert_int_equal(t->limits.h2_max_header_list, 1024);
	assert_int_equal(t->limits.max_request_header_bytes, 32768);
	t = reload_compile(f, follow);
	assert_int_equal(t->limits.h2_max_header_list, 8192);
	assert_int_equal(t->limits.h2_max_concurrent_streams, 100);
}

#define SEL_DR "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n"

/* DestinationRule workloadSelector: a rule applies where its matchLabels are
 * all the appliance's labels, in the appliance's namespace. It is merged with
 * the rule of its host without a selector only when their exportTo are equal
 * (Istio's mergeDestinationRule; a rule with a selector counts as "."): its
 * trafficPolicy first, the other's when it has none; its subsets, then the
 * other's of other names. */
static void test_dr_workload_selector(void **state)
{
#define SEL_BASE(exp)                                                                              \
	SEL_DR "metadata: {name: base}\nspec:\n  host: s\n" exp                                    \
	       "  trafficPolicy: {loadBalancer: {simple: RANDOM}}\n"                               \
	       "  subsets: [{name: a, labels: {v: \"1\"}}, {name: b, labels: {v: \"2\"}}]\n"
#define SEL_REST                                                                                   \
	SEL_DR "metadata: {name: mine}\nspec:\n  host: s\n"                                        \
	       "  workloadSelector: {matchLabels: {istio: ingressgateway}}\n"                      \
	       "  exportTo: [.]\n"                                                                 \
	       "  subsets: [{name: a, labels: {v: \"3\"}}]\n" SEL_DR                               \
	       "metadata: {name: theirs}\nspec:\n  host: s\n"                                      \
	       "  workloadSelector: {matchLabels: {istio: ingressgateway, app: other}}\n"          \
	       "  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}\n" SEL_DR                   \
	       "metadata: {name: elsewhere, namespace: other}\nspec:\n"                            \
	       "  host: s.default.svc.cluster.local\n"                                             \
	       "  workloadSelector: {matchLabels: {istio: ingressgateway}}\n"                      \
	       "  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}\n"
#define SEL_APP APP "  labels: {istio: ingressgateway, app: gw}\n"
	static const char merged[] = SEL_APP S_GW_ROUTE S_SE SEL_BASE("  exportTo: [.]\n") SEL_REST;
	static const char unselected[] =
	    APP "  labels: {app: gw}\n" S_GW_ROUTE S_SE SEL_BASE("  exportTo: [.]\n") SEL_REST;
	static const char apart[] = SEL_APP
	    "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\n"
	    "spec:\n  servers: [{port: {number: 80, name: http-80-12, protocol: HTTP}, hosts: "
	    "[\"*\"]}]\n"
	    "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\n"
	    "spec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n"
	    "  - route: [{destination: {host: s, port: {number: 80}, subset: a}}]\n" S_SE SEL_BASE(
		"") SEL_REST;
	static const char own_policy[] =
	    APP "  labels: {istio: ingressgateway}\n" S_GW_ROUTE S_SE SEL_DR
		"metadata: {name: base}\nspec:\n  host: s\n  exportTo: [.]\n"
		"  trafficPolicy: {loadBalancer: {simple: RANDOM}}\n"
		"  subsets: [{name: a, labels: {v: \"1\"}}]\n" SEL_DR
		"metadata: {name: mine}\nspec:\n  host: s\n"
		"  workloadSelector: {matchLabels: {istio: ingressgateway}}\n"
		"  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}\n";
	static const char several[] = SEL_APP S_GW_ROUTE S_SE SEL_DR
	    "metadata: {name: zz}\nspec:\n  host: s\n"
	    "  workloadSelector: {matchLabels: {istio: ingressgateway}}\n"
	    "  trafficPolicy: {loadBalancer: {simple: RANDOM}}\n"
	    "  subsets: [{name: a, labels: {v: \"1\"}}]\n" SEL_DR
	    "metadata: {name: ab}\nspec:\n  host: s\n"
	    "  workloadSelector: {matchLabels: {app: gw}}\n"
	    "  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}\n"
	    "  subsets: [{name: b, labels: {v: \"3\"}}]\n" SEL_DR
	    "metadata: {name: base}\nspec:\n  host: s\n"
	    "  trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}\n"
	    "  subsets: [{name: c, labels: {v: \"4\"}}, {name: a, labels: {v: \"5\"}}]\n" SEL_DR
	    "metadata: {name: aa}\nspec:\n  host: s\n"
	    "  workloadSelector: {matchLabels: {app: gw}}\n"
	    "  subsets: [{name: a, labels: {v: \"2\"}}]\n";
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, merged);
	const struct ism_cm_dr *dr = ism_model_find_dr(f->conf, "s.default.svc.cluster.local");

	assert_int_equal(s_cluster(t, 80, "")->lb, ISM_LB_RANDOM);
	assert_string_equal(dr->r.name, "mine");
	assert_int_equal(dr->n_subsets, 2);
	assert_string_equal(dr->subsets[0].name, "a");
	assert_string_equal(dr->subsets[0].labels[0].value, "3");
	assert_string_equal(dr->subsets[1].name, "b");
	assert_ptr_equal(ism_model_find_subset(dr, "b"), &dr->subsets[1]);
	assert_true(has_warning(&f->d, "DestinationRule default/theirs: spec.workloadSelector",
				"selects other workloads"));
	assert_true(has_warning(&f->d, "DestinationRule other/elsewhere: spec.workloadSelector",
				"not in the appliance's namespace default"));
	assert_false(has_warning(&f->d, "DestinationRule default/mine", ""));
	assert_false(has_warning(&f->d, "DestinationRule default/base: spec.host", ""));
	assert_true(has_warning(&f->d, "DestinationRule default/base: spec.subsets",
				"subset a is also defined by DestinationRule default/mine"));

	/* Neither selects the appliance: base applies alone, though Istio merged
	 * it into both (and loses it, istio/istio#58322). */
	t = reload_compile(f, unselected);
	dr = ism_model_find_dr(f->conf, "s.default.svc.cluster.local");
	assert_string_equal(dr->r.name, "base");
	assert_int_equal(dr->n_subsets, 2);
	assert_string_equal(dr->subsets[0].labels[0].value, "1");
	assert_int_equal(s_cluster(t, 80, "")->lb, ISM_LB_RANDOM);

	/* Without base's exportTo: two rules, mine alone applies. */
	t = reload_compile(f, apart);
	dr = ism_model_find_dr(f->conf, "s.default.svc.cluster.local");
	assert_string_equal(dr->r.name, "mine");
	assert_int_equal(dr->n_subsets, 1);
	assert_int_not_equal(s_cluster(t, 80, "a")->lb, ISM_LB_RANDOM);
	assert_true(has_warning(&f->d, "DestinationRule default/base: spec.host",
				"DestinationRule default/mine applies in its place"));

	t = reload_compile(f, own_policy);
	assert_int_equal(s_cluster(t, 80, "")->lb, ISM_LB_ROUND_ROBIN);
	assert_int_equal(s_cluster(t, 80, "a")->lb, ISM_LB_ROUND_ROBIN);

	/* Several select the appliance: the first by name applies, and one with
	 * the same labels is merged into it; the rule without a selector (another
	 * exportTo) is not. */
	t = reload_compile(f, several);
	dr = ism_model_find_dr(f->conf, "s.default.svc.cluster.local");
	assert_string_equal(dr->r.name, "aa");
	assert_int_equal(s_cluster(t, 80, "")->lb, ISM_LB_ROUND_ROBIN); /* ab's */
	assert_int_equal(dr->n_subsets, 2);
	assert_string_equal(dr->subsets[0].labels[0].value, "2");
	assert_string_equal(dr->subsets[1].name, "b");
	assert_true(has_warning(&f->d, "DestinationRule default/zz: spec.host",
				"DestinationRule default/aa applies in its place"));
	assert_true(has_warning(&f->d, "DestinationRule default/base: spec.host",
				"DestinationRule default/aa applies in its place"));
	assert_false(has_warning(&f->d, "DestinationRule default/ab", ""));
	assert_false(has_diag(&f->d, ISM_DIAG_ERROR, "", ""));
#undef SEL_BASE
#undef SEL_REST
#undef SEL_APP
}

/* The rule named name of the host's, or fails. */
static const struct ism_cm_dr *dr_named(const struct ism_conf *c, const char *host,
					const char *label)
{
	const struct ism_cm_dr *dr = ism_model_find_dr(c, host);

	assert_non_null(dr);
	assert_string_equal(dr->r.label, label);
	return dr;
}

#define SC_SE(name, ns)                                                                            \
	"---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"                            \
	"metadata: {name: " name ", namespace: " ns "}\n"                                          \
	"spec:\n  hosts: [" name "]\n  ports: [{number: 80, name: http}]\n"                        \
	"  resolution: STATIC\n  endpoints: [{address: 10.0.0.1}]\n"
#define SC_DR(name, ns, host, rest)                                                                \
	SEL_DR "metadata: {name: " name ", namespace: " ns "}\nspec:\n  host: \"" host "\"\n" rest

/* Which rule a host gets, as Istio's gateway looks it up: the appliance's
 * namespace first (for an appliance of the root namespace, its private
 * rules), then what the service's namespace exports to it, then what the
 * root namespace exports; in each the host itself, then the longest wildcard.
 * Rules of one host and namespace with equal exportTo are merged; of others,
 * the last without a selector applies. */
static void test_dr_scopes(void **state)
{
#define SC_BASE                                                                                    \
	SC_SE("s", "default")                                                                      \
	SC_SE("t", "default")                                                                      \
	SC_SE("u", "shop")                                                                         \
	SC_DR("mesh", "istio-system", "*.local",                                                   \
	      "  trafficPolicy: {loadBalancer: {simple: RANDOM}}\n")                               \
	SC_DR("s", "default", "s", "  subsets: [{name: a, labels: {v: \"1\"}}]\n")                 \
	SC_DR("u-hidden", "shop", "u", "  exportTo: [.]\n")
	static const char root[] = APP "  namespace: istio-system\n" SC_BASE SC_DR(
	    "far", "elsewhere", "s.default.svc.cluster.local", "");
	static const char root_private[] = APP "  namespace: istio-system\n" SC_BASE SC_DR(
	    "local", "istio-system", "*.svc.cluster.local", "  exportTo: [.]\n")
	    SC_DR("longer", "istio-system", "*.default.svc.cluster.local",
		  "  exportTo: [istio-system]\n");
	static const char own_ns[] = APP "  namespace: gw\n" SC_BASE SC_DR("gw-wide", "gw", "*", "")
	    SC_DR("u-gw", "shop", "u", "  exportTo: [gw, other]\n");
	static const char merge[] = APP "  namespace: gw\n" SC_SE("s", "gw")
	    SC_DR("b", "gw", "s",
		  "  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}\n"
		  "  subsets: [{name: x, labels: {v: \"2\"}}, {name: \"y\", labels: {v: \"3\"}}]\n")
		SC_DR("a", "gw", "s", "  subsets: [{name: x, labels: {v: \"1\"}}]\n")
		    SC_DR("c", "gw", "s",
			  "  exportTo: [\"*\"]\n"
			  "  trafficPolicy: {loadBalancer: {simple: RANDOM}}\n");
	struct fx *f = *state;
	const struct ism_cm_dr *dr;

	/* An appliance of the root namespace: the service's own rule before the
	 * root namespace's wildcard, which covers the others; a rule its
	 * namespace keeps to itself is not seen. */
	load_compile(f, root);
	dr_named(f->conf, "s.default.svc.cluster.local", "DestinationRule default/s");
	dr_named(f->conf, "t.default.svc.cluster.local", "DestinationRule istio-system/mesh");
	dr_named(f->conf, "u.shop.svc.cluster.local", "DestinationRule istio-system/mesh");
	assert_true(has_warning(&f->d, "DestinationRule shop/u-hidden: spec.exportTo",
				"not exported to the appliance's namespace istio-system"));
	assert_false(has_warning(&f->d, "DestinationRule istio-system/mesh", ""));
	assert_true(
	    has_warning(&f->d, "DestinationRule elsewhere/far: spec.host",
			"Istio does not look in namespace elsewhere: only in the appliance's "
			"(istio-system), the host's ServiceEntry's (default)"));

	/* Its private rules come first, the longest wildcard first. */
	reload_compile(f, root_private);
	dr_named(f->conf, "s.default.svc.cluster.local", "DestinationRule istio-system/longer");
	dr_named(f->conf, "u.shop.svc.cluster.local", "DestinationRule istio-system/local");
	assert_true(has_warning(&f->d, "DestinationRule default/s: spec.host",
				"for host s.default.svc.cluster.local, DestinationRule "
				"istio-system/longer applies in its place"));

	/* An appliance of another namespace: its own rules first ("*" covers
	 * every host); exportTo naming it counts. */
	reload_compile(f, own_ns);
	dr_named(f->conf, "s.default.svc.cluster.local", "DestinationRule gw/gw-wide");
	dr_named(f->conf, "u.shop.svc.cluster.local", "DestinationRule gw/gw-wide");
	assert_true(has_warning(&f->d, "DestinationRule shop/u-gw: spec.host",
				"DestinationRule gw/gw-wide applies in its place"));

	/* a and b (no exportTo) merge: a's subsets and b's policy, b's x left
	 * out; c (another exportTo) stands apart and, the last, applies. */
	reload_compile(f, merge);
	dr = dr_named(f->conf, "s.gw.svc.cluster.local", "DestinationRule gw/c");
	assert_int_equal(dr->n_subsets, 0);
	assert_true(has_warning(&f->d, "DestinationRule gw/a: spec.host",
				"DestinationRule gw/c applies in its place"));
	assert_true(has_warning(&f->d, "DestinationRule gw/b: spec.host", "merged into"));
	assert_true(has_warning(&f->d, "DestinationRule gw/b: spec.subsets",
				"subset x is also defined by DestinationRule gw/a, merged before"));
	assert_false(has_diag(&f->d, ISM_DIAG_ERROR, "", ""));
#undef SC_BASE
}

#define PC_DOC(name, ns, rest)                                                                     \
	"---\napiVersion: networking.istio.io/v1beta1\nkind: ProxyConfig\n"                        \
	"metadata: {name: " name ", namespace: " ns "}\nspec:\n" rest

/* ProxyConfig: the first that selects the appliance in its namespace, then
 * the first of that namespace without a selector, then the root namespace's;
 * the first of those that sets concurrency decides the workers, over
 * spec.workers (0: one per CPU). */
static void test_proxy_config(void **state)
{
#define PC_APP APP "  labels: {istio: ingressgateway}\n"
	static const char mesh[] = PC_APP PC_DOC("mesh", "istio-system", "  concurrency: 3\n")
	    PC_DOC("elsewhere", "shop", "  concurrency: 9\n");
	static const char ns[] = PC_APP PC_DOC("mesh", "istio-system", "  concurrency: 3\n")
	    PC_DOC("here", "default", "  concurrency: 2\n  environmentVariables: {A: b}\n");
	static const char workload[] = PC_APP PC_DOC("here", "default", "  concurrency: 2\n")
	    PC_DOC("zz", "default",
		   "  selector: {matchLabels: {istio: ingressgateway}}\n  concurrency: 7\n")
		PC_DOC("gw", "default",
		       "  selector: {matchLabels: {istio: ingressgateway}}\n  concurrency: 5\n")
		    PC_DOC("other", "default",
			   "  selector: {matchLabels: {app: other}}\n  concurrency: 8\n");
	static const char unset[] = PC_APP PC_DOC("here", "default", "  concurrency: 2\n")
	    PC_DOC("gw", "default", "  selector: {matchLabels: {istio: ingressgateway}}\n");
	static const char over[] =
	    PC_APP "  workers: 4\n" PC_DOC("mesh", "istio-system", "  concurrency: 0\n");
	static const char max_workers[] = APP "  workers: 64\n";
	/* With creation times, the oldest first (zz), whatever the names. */
	static const char created[] =
	    PC_APP "---\napiVersion: networking.istio.io/v1beta1\nkind: ProxyConfig\n"
		   "metadata: {name: gw, namespace: default, creationTimestamp: "
		   "\"2024-05-02T00:00:00Z\"}\n"
		   "spec:\n  selector: {matchLabels: {istio: ingressgateway}}\n  concurrency: 5\n"
		   "---\napiVersion: networking.istio.io/v1beta1\nkind: ProxyConfig\n"
		   "metadata: {name: zz, namespace: default, creationTimestamp: "
		   "\"2024-05-01T00:00:00Z\"}\n"
		   "spec:\n  selector: {matchLabels: {istio: ingressgateway}}\n  concurrency: 7\n";
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, mesh);

	assert_int_equal(f->conf->app.workers, 3);
	assert_int_equal(t->workers, 3);
	assert_true(has_warning(&f->d, "ProxyConfig shop/elsewhere: spec",
				"applies to the proxies of namespace shop"));
	reload_compile(f, ns);
	assert_int_equal(f->conf->app.workers, 2);
	assert_true(has_warning(&f->d, "ProxyConfig default/here: spec.environmentVariables",
				"no meaning here"));
	reload_compile(f, workload);
	assert_int_equal(f->conf->app.workers, 5);
	assert_true(has_warning(&f->d, "ProxyConfig default/zz: spec",
				"ProxyConfig default/gw comes first by name"));
	assert_true(has_warning(&f->d, "ProxyConfig default/other: spec.selector",
				"does not select this appliance"));
	reload_compile(f, created);
	assert_int_equal(f->conf->app.workers, 7);
	assert_true(has_warning(&f->d, "ProxyConfig default/gw: spec",
				"ProxyConfig default/zz comes first by creation time"));
	reload_compile(f, unset);
	assert_int_equal(f->conf->app.workers, 2); /* gw applies, without concurrency */
	reload_compile(f, over);
	assert_int_equal(f->conf->app.workers, 0);
	assert_true(has_warning(&f->d, "Appliance t: spec.workers",
				"ProxyConfig istio-system/mesh sets concurrency 0, which decides"));
	/* spec.workers alone: 1..64, both bounds included (65 is an error) */
	reload_compile(f, max_workers);
	assert_int_equal(f->conf->app.workers, 64);
	assert_int_equal(f->t->workers, 64);
#undef PC_APP
}

#define TEL_DOC(name, ns, rest)                                                                    \
	"---\napiVersion: telemetry.istio.io/v1\nkind: Telemetry\n"                                \
	"metadata: {name: " name ", namespace: " ns "}\nspec:\n" rest

/* Telemetry's accessLogging, as istiod computes a gateway's: the root
 * namespace's, then the appliance namespace's, then those selecting it; the
 * "envoy" provider enabled writes the access log (standard output, Istio's
 * text, without spec.accessLog), disabled writes none; left out, the
 * Appliance decides. */
static void test_telemetry(void **state)
{
#define TEL_APP APP "  labels: {istio: ingressgateway}\n"
#define TEL_MESH                                                                                   \
	TEL_DOC("mesh-default", "istio-system", "  accessLogging: [{providers: [{name: envoy}]}]\n")
	static const char on[] = TEL_APP TEL_MESH TEL_DOC(
	    "metrics", "default", "  metrics: [{providers: [{name: prometheus}]}]\n");
	static const char off[] = TEL_APP "  accessLog: {path: /tmp/x.log}\n" TEL_MESH TEL_DOC(
	    "quiet", "default", "  accessLogging: [{disabled: true}]\n");
	static const char server_only[] = TEL_APP "  accessLog: {path: /tmp/x.log}\n" TEL_DOC(
	    "srv", "default",
	    "  accessLogging: [{match: {mode: SERVER}, providers: [{name: envoy}], disabled: "
	    "true}]\n");
	static const char workload[] =
	    TEL_APP TEL_MESH TEL_DOC("gw", "default",
				     "  selector: {matchLabels: {istio: ingressgateway}}\n"
				     "  accessLogging: [{providers: [{name: envoy}, {name: otel}], "
				     "disabled: true}]\n")
		TEL_DOC("other", "default",
			"  selector: {matchLabels: {app: x}}\n"
			"  accessLogging: [{providers: [{name: envoy}]}]\n")
		    TEL_DOC("far", "shop", "  accessLogging: [{providers: [{name: envoy}]}]\n");
	/* istiod's mergeLogs: the providers in scope are those the last
	 * Telemetry naming any names: the namespace's otel takes the mesh's
	 * envoy out (the Appliance decides: no log). */
	static const char out_of_scope[] = TEL_APP TEL_MESH TEL_DOC(
	    "otel-only", "default", "  accessLogging: [{providers: [{name: otel}]}]\n");
	/* Those selecting the appliance in the order of their names (b after
	 * a, whatever the file's order): b's disabled is the last word. */
	static const char by_name[] = TEL_APP TEL_MESH TEL_DOC(
	    "b-off", "default",
	    "  selector: {matchLabels: {istio: ingressgateway}}\n"
	    "  accessLogging: [{providers: [{name: envoy}], disabled: true}]\n")
	    TEL_DOC("a-on", "default",
		    "  selector: {matchLabels: {istio: ingressgateway}}\n"
		    "  accessLogging: [{providers: [{name: envoy}]}]\n");
	/* Two namespace-wide Telemetries in one namespace: istiod's
	 * namespaceWideTelemetryConfig takes the first of them (the oldest;
	 * without creation times, the first by name), the other
	 * changes nothing, whatever the file's order. */
	static const char ns_wide_first[] =
	    TEL_APP TEL_DOC("b-on", "default", "  accessLogging: [{providers: [{name: envoy}]}]\n")
		TEL_DOC("a-off", "default",
			"  accessLogging: [{providers: [{name: envoy}], disabled: true}]\n");
	/* With creation times, the oldest first: b-off (the older) is taken,
	 * a-on changes nothing, though first by name. */
	static const char created[] =
	    TEL_APP "---\napiVersion: telemetry.istio.io/v1\nkind: Telemetry\n"
		    "metadata: {name: a-on, namespace: default, creationTimestamp: "
		    "\"2024-05-02T00:00:00Z\"}\n"
		    "spec:\n  accessLogging: [{providers: [{name: envoy}]}]\n"
		    "---\napiVersion: telemetry.istio.io/v1\nkind: Telemetry\n"
		    "metadata: {name: b-off, namespace: default, creationTimestamp: "
		    "\"2024-05-01T00:00:00Z\"}\n"
		    "spec:\n  accessLogging: [{providers: [{name: envoy}], disabled: true}]\n";
	struct fx *f = *state;
	const struct ism_alog_conf *l;

	load_compile(f, on);
	l = &f->conf->app.access_log;
	assert_int_equal(l->dest, ISM_ALOG_STDOUT);
	assert_int_equal(l->format, ISM_ALOG_TEXT);
	assert_true(l->n_ops > 0);
	assert_true(has_warning(&f->d, "Telemetry default/metrics: spec.metrics", "ignored"));
	reload_compile(f, off);
	assert_int_equal(f->conf->app.access_log.dest, ISM_ALOG_OFF);
	assert_true(
	    has_warning(&f->d, "Appliance t: spec.accessLog",
			"Telemetry default/quiet disables the \"envoy\" access log provider"));
	/* at spec.accessLog, not at the document's start */
	assert_int_equal(warning_line(&f->d, "disables the \"envoy\""), 8);
	reload_compile(f, server_only);
	assert_int_equal(f->conf->app.access_log.dest, ISM_ALOG_FILE);
	reload_compile(f, workload);
	assert_int_equal(f->conf->app.access_log.dest, ISM_ALOG_OFF);
	assert_true(has_warning(&f->d, "Telemetry default/gw: spec.accessLogging[0].providers[1]",
				"provider otel"));
	assert_int_equal(warning_line(&f->d, "provider otel"), 20);
	assert_true(
	    has_warning(&f->d, "Telemetry default/other: spec", "does not select this appliance"));
	assert_true(has_warning(&f->d, "Telemetry shop/far: spec", "namespace shop"));
	reload_compile(f, out_of_scope);
	assert_int_equal(f->conf->app.access_log.dest, ISM_ALOG_OFF);
	reload_compile(f, by_name);
	assert_int_equal(f->conf->app.access_log.dest, ISM_ALOG_OFF);
	reload_compile(f, ns_wide_first);
	assert_int_equal(f->conf->app.access_log.dest, ISM_ALOG_OFF);
	reload_compile(f, created);
	assert_int_equal(f->conf->app.access_log.dest, ISM_ALOG_OFF);
#undef TEL_APP
#undef TEL_MESH
}

/* A status for the filter's response.code; false: none (no response). */
static bool tel_code(void *ctx, uint16_t id, struct ism_cel_val *out)
{
	const int *code = ctx;

	if (id != ISM_LA_RESP_CODE || *code == 0)
		return false;
	out->type = ISM_CEL_INT;
	out->v.i = *code;
	return true;
}

/* Telemetry's accessLogging filter, as istiod's mergeLogs picks it: the last
 * entry for CLIENT that names "envoy" itself, whichever Telemetry; an entry
 * without providers enables or disables, but brings no filter. The table gets
 * the program, which passes or not as the expression says. */
static void test_telemetry_filter(void **state)
{
	static const char yaml[] = APP "  labels: {istio: ingressgateway}\n" TEL_DOC(
	    "mesh-default", "istio-system",
	    "  accessLogging:\n  - providers: [{name: envoy}]\n"
	    "    filter: {expression: \"response.code >= 500\"}\n")
	    TEL_DOC("gw", "default",
		    "  selector: {matchLabels: {istio: ingressgateway}}\n"
		    "  accessLogging:\n  - providers: [{name: envoy}]\n"
		    "    filter: {expression: \"response.code >= 400\"}\n"
		    "  - filter: {expression: \"false\"}\n");
	static const char server[] =
	    APP TEL_DOC("mesh-default", "istio-system",
			"  accessLogging:\n  - providers: [{name: envoy}]\n"
			"  - match: {mode: SERVER}\n    providers: [{name: envoy}]\n"
			"    filter: {expression: \"false\"}\n");
	struct fx *f = *state;
	int code = 404;
	const struct ism_cel_env env = {.attr = tel_code, .ctx = &code};

	load_compile(f, yaml);
	assert_non_null(f->t->access_log.filter);
	assert_true(ism_cel_filter(f->t->access_log.filter, &env));
	code = 200;
	assert_false(ism_cel_filter(f->t->access_log.filter, &env));
	code = 0; /* no response: an error, not logged */
	assert_false(ism_cel_filter(f->t->access_log.filter, &env));
	/* A SERVER entry's filter is not the gateway's. */
	reload_compile(f, server);
	assert_int_equal(f->t->access_log.dest, ISM_ALOG_STDOUT);
	assert_null(f->t->access_log.filter);
}

/* Documents of the kinds not implemented yet that do not apply to the
 * appliance load, each with a warning saying why, as istiod would not attach
 * them to a gateway: another namespace's, one naming targetRefs, one whose
 * selector does not select the appliance (root namespace too), an
 * EnvoyFilter whose every patch is a sidecar's. */
static void test_later_kinds_elsewhere(void **state)
{
#define LATER(kind, api, name, ns, spec)                                                           \
	"---\napiVersion: " api "\nkind: " kind "\nmetadata: {name: " name ", namespace: " ns      \
	"}\nspec:\n" spec
	static const char yaml[] = APP "  labels: {istio: ingressgateway}\n" LATER(
	    "AuthorizationPolicy", "security.istio.io/v1", "viewer", "bookinfo",
	    "  rules: [{from: [{source: {principals: [a]}}]}]\n")
	    LATER("AuthorizationPolicy", "security.istio.io/v1beta1", "deny-x", "istio-system",
		  "  selector: {matchLabels: {app: x}}\n  action: DENY\n  rules: [{}]\n")
		LATER("RequestAuthentication", "security.istio.io/v1", "jwt", "default",
		      "  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, "
		      "name: gw}]\n")
		    LATER("EnvoyFilter", "networking.istio.io/v1alpha3", "tweak", "istio-system",
			  "  configPatches:\n  - applyTo: HTTP_FILTER\n"
			  "    match: {context: SIDECAR_INBOUND}\n"
			  "  - applyTo: CLUSTER\n    match: {context: SIDECAR_OUTBOUND}\n")
			LATER("WasmPlugin", "extensions.istio.io/v1alpha1", "w", "default",
			      "  selector: {matchLabels: {istio: egressgateway}}\n");
	struct fx *f = *state;

	load_compile(f, yaml);
	assert_true(has_warning(&f->d, "AuthorizationPolicy bookinfo/viewer: spec",
				"proxies of namespace bookinfo"));
	assert_true(has_warning(&f->d, "AuthorizationPolicy istio-system/deny-x: spec.selector",
				"does not select this appliance"));
	assert_true(has_warning(&f->d, "RequestAuthentication default/jwt: spec.targetRefs",
				"never to a gateway chosen by its labels"));
	assert_true(has_warning(&f->d, "EnvoyFilter istio-system/tweak: spec.configPatches",
				"every patch is for a sidecar"));
	assert_true(has_warning(&f->d, "WasmPlugin default/w: spec.selector",
				"does not select this appliance"));
#undef LATER
}

/* AuthorizationPolicies compiled as istiod builds Envoy's RBAC filters: DENY
 * and ALLOW rules by name, each source and operation a list of conditions
 * with the rule's when keys; for TCP ports an HTTP attribute left out of a
 * DENY rule and the whole rule out of an ALLOW filter; dry-run and AUDIT
 * policies decide nothing. */
/* A JWKS of one P-256 key (RFC 7515 A.3's). */
#define EC_JWKS                                                                                    \
	"'{\"keys\": [{\"kty\": \"EC\", \"crv\": \"P-256\", \"kid\": \"k1\", \"x\": "              \
	"\"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU\", \"y\": "                                 \
	"\"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0\"}]}'"

/* RequestAuthentication: each jwtRule a provider, by issuer; Envoy's default
 * locations; scope and permission always split; requestPrincipals and
 * request.auth.* as istiod's matchers. */
/* The provider's fields from line 12; the ServiceEntry and the policy after. */
#define XA_PROV(fields)                                                                            \
	"  extensionProviders:\n  - name: az\n    envoyExtAuthzHttp:\n      service: az.x\n"       \
	"      port: 80\n" fields
#define XA_SE                                                                                      \
	"---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: az}\n"      \
	"spec:\n  hosts: [az.x]\n  ports: [{number: 80, name: http}]\n  resolution: STATIC\n"      \
	"  endpoints: [{address: 127.0.0.5}]\n"
#define XA_AP(name, spec)                                                                          \
	"---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"                       \
	"metadata: {name: " name ", namespace: istio-system}\nspec:\n" spec
#define XA_CUSTOM(prov) "  action: CUSTOM\n  provider: {name: " prov "}\n  rules: [{}]\n"

/* The CUSTOM policies' provider as the worker gets it: its cluster, its
 * settings, its patterns by kind; a dry-run CUSTOM policy's rules count (as
 * istiod has them call the authorizer), a CUSTOM policy adds no DENY or ALLOW
 * rule, and nothing of it reaches a TCP port. */
static void test_extauthz_compiled(void **state)
{
	static const char yaml[] = APP XA_PROV(
	    "      timeout: 250ms\n      pathPrefix: /check\n      failOpen: true\n"
	    "      statusOnError: \"503\"\n"
	    "      includeRequestHeadersInCheck: [Cookie, \"x-*\", \"*-id\"]\n"
	    "      headersToUpstreamOnAllow: [x-user]\n"
	    "      includeAdditionalHeadersInCheck: {X-From: isthmus}\n"
	    "      includeRequestBodyInCheck: {maxRequestBytes: 4096, allowPartialMessage: true}\n")
	    XA_SE XA_AP(
		"p", XA_CUSTOM(
			 "az")) "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
				"metadata: {name: q, namespace: istio-system, annotations: "
				"{istio.io/dry-run: \"true\"}}\nspec:\n  action: CUSTOM\n"
				"  provider: {name: az}\n  rules: [{to: [{operation: {paths: "
				"[/a]}}]}]\n";
	struct fx *f = *state;
	const struct ism_extauthz *xa;

	load_compile(f, yaml);
	assert_int_equal(f->t->authz.custom.n, 2);
	assert_int_equal(f->t->authz.deny.n, 0);
	assert_false(f->t->authz.allow.on);
	assert_int_equal(f->t->authz.tcp_deny.n, 0);
	xa = f->t->authz.xa;
	assert_non_null(xa);
	assert_string_equal(f->t->clusters[xa->cluster].host.p, "az.x");
	assert_int_equal(xa->timeout_ms, 250);
	assert_string_equal(xa->path_prefix.p, "/check");
	assert_true(xa->fail_open);
	assert_int_equal(xa->status_on_error, 503);
	assert_int_equal(xa->body_max, 4096);
	assert_true(xa->body_partial);
	assert_false(xa->body_bytes);
	assert_true(xa->deny_all);
	assert_int_equal(xa->req.n, 3);
	assert_int_equal(xa->req.m[0].kind, ISM_SM_EXACT);
	assert_string_equal(xa->req.m[0].s.p, "cookie");
	assert_int_equal(xa->req.m[1].kind, ISM_SM_PREFIX);
	assert_string_equal(xa->req.m[1].s.p, "x-");
	assert_int_equal(xa->req.m[2].kind, ISM_SM_SUFFIX);
	assert_string_equal(xa->req.m[2].s.p, "-id");
	for (uint32_t i = 0; i < xa->req.n; i++)
		assert_true(xa->req.m[i].ignore_case);
	assert_int_equal(xa->up.n, 1);
	assert_int_equal(xa->down_allow.n, 0);
	assert_int_equal(xa->n_add, 1);
	assert_string_equal(xa->add[0].name.p, "x-from");
	assert_string_equal(xa->add[0].value.p, "isthmus");
}

static void test_authn_compiled(void **state)
{
	static const char yaml[] =
	    APP "---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"
		"metadata: {name: jwt, namespace: istio-system}\nspec:\n  jwtRules:\n"
		"  - issuer: https://z.example\n    jwks: " EC_JWKS "\n"
		"    audiences: [api]\n    forwardOriginalToken: true\n"
		"    fromHeaders: [{name: X-Token, prefix: \"T \"}]\n    fromCookies: [tok]\n"
		"    outputClaimToHeaders: [{header: X-Sub, claim: sub}]\n"
		"    outputPayloadToHeader: X-Payload\n    spaceDelimitedClaims: [roles, scope]\n"
		"  - issuer: https://a.example\n    jwks: " EC_JWKS "\n"
		"---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
		"metadata: {name: p, namespace: istio-system}\nspec:\n  rules:\n"
		"  - from: [{source: {requestPrincipals: [\"https://a.example/*\", \"*\"]}}]\n"
		"    when: [{key: \"request.auth.claims[groups][x.y]\", values: [admin]},\n"
		"           {key: request.auth.audiences, values: [\"api*\"]}]\n";
	struct fx *f = *state;
	const struct ism_jwt_authn *a;
	const struct ism_az_cond *c;

	load_compile(f, yaml);
	a = &f->t->jwt;
	assert_int_equal(a->n, 2);
	/* By issuer: a before z. */
	assert_string_equal(a->p[0].issuer.p, "https://a.example");
	assert_int_equal(a->p[0].n_loc, 2);
	assert_int_equal(a->p[0].loc[0].where, ISM_JWT_HEADER);
	assert_string_equal(a->p[0].loc[0].name.p, "authorization");
	assert_string_equal(a->p[0].loc[0].prefix.p, "Bearer ");
	assert_int_equal(a->p[0].loc[1].where, ISM_JWT_PARAM);
	assert_string_equal(a->p[0].loc[1].name.p, "access_token");
	assert_false(a->p[0].forward);
	assert_int_equal(a->p[0].n_spaced, 2);
	assert_true(strstr(a->p[0].jwks.p, "P-256") != NULL);
	assert_string_equal(a->p[1].issuer.p, "https://z.example");
	assert_int_equal(a->p[1].n_aud, 1);
	assert_string_equal(a->p[1].aud[0].p, "api");
	assert_true(a->p[1].forward);
	assert_int_equal(a->p[1].n_loc, 2);
	assert_string_equal(a->p[1].loc[0].name.p, "x-token");
	assert_string_equal(a->p[1].loc[0].prefix.p, "T ");
	assert_int_equal(a->p[1].loc[1].where, ISM_JWT_COOKIE);
	assert_string_equal(a->p[1].payload_header.p, "x-payload");
	assert_int_equal(a->p[1].n_claim_hdrs, 1);
	assert_string_equal(a->p[1].claim_hdrs[0].header.p, "x-sub");
	assert_string_equal(a->p[1].claim_hdrs[0].claim.p, "sub");
	/* permission, scope, roles: scope once */
	assert_int_equal(a->p[1].n_spaced, 3);
	assert_string_equal(a->p[1].spaced[2].p, "roles");
	/* requestPrincipals: "<iss>/<any>" an exact issuer and any subject; "*"
	 * any of both */
	assert_int_equal(f->t->authz.allow.n, 1);
	assert_int_equal(f->t->authz.allow.p[0].prin[0].n, 3);
	c = &f->t->authz.allow.p[0].prin[0].c[0];
	assert_int_equal(c->attr, ISM_AZ_REQ_PRINCIPAL);
	assert_int_equal(c->n, 2);
	assert_int_equal(c->v[0].m.kind, ISM_SM_EXACT);
	assert_string_equal(c->v[0].m.s.p, "https://a.example");
	assert_int_equal(c->v[0].sub.kind, ISM_SM_REGEX);
	assert_string_equal(c->v[0].sub.s.p, ".+");
	assert_int_equal(c->v[1].m.kind, ISM_SM_REGEX);
	assert_int_equal(c->v[1].sub.kind, ISM_SM_REGEX);
	/* the claim's path, names joined with ']'; audiences: aud */
	c = &f->t->authz.allow.p[0].prin[0].c[1];
	assert_int_equal(c->attr, ISM_AZ_CLAIM);
	assert_string_equal(c->name.p, "groups]x.y");
	assert_int_equal(c->v[0].m.kind, ISM_SM_EXACT);
	c = &f->t->authz.allow.p[0].prin[0].c[2];
	assert_string_equal(c->name.p, "aud");
	assert_int_equal(c->v[0].m.kind, ISM_SM_PREFIX);
	assert_string_equal(c->v[0].m.s.p, "api");
	/* On TCP ports an ALLOW rule with requestPrincipals never matches. */
	assert_int_equal(f->t->authz.tcp_allow.n, 0);
	assert_true(f->t->authz.tcp_allow.on);
}

/* Without a key set source (isthmus -c), a rule whose keys are fetched loads
 * with a warning at jwksUri (or issuer) and no keys. */
static void test_authn_unfetched(void **state)
{
	static const char yaml[] =
	    APP "---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"
		"metadata: {name: jwt, namespace: istio-system}\nspec:\n  jwtRules:\n"
		"  - issuer: a\n    jwksUri: https://keys.example/k\n    timeout: 2s\n"
		"  - issuer: https://b.example\n";
	struct fx *f = *state;

	load_compile(f, yaml);
	assert_int_equal(f->t->jwt.n, 2);
	assert_int_equal(f->t->jwt.p[0].jwks.len, 0);
	assert_int_equal(f->t->jwt.p[1].jwks.len, 0);
	assert_true(
	    has_warning(&f->d, "RequestAuthentication istio-system/jwt: spec.jwtRules[0]",
			"https://keys.example/k: the key set is fetched when isthmus runs"));
	assert_true(has_warning(&f->d, "RequestAuthentication istio-system/jwt: spec.jwtRules[1]",
				"the issuer's OpenID discovery: the key set is fetched"));
}

static void test_authz_compiled(void **state)
{
#define AZ(name, ns, spec)                                                                         \
	"---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: " name \
	", namespace: " ns "}\nspec:\n" spec
	static const char yaml[] = APP AZ("deny-x", "istio-system",
					  "  action: DENY\n  rules:\n"
					  "  - from: [{source: {ipBlocks: [127.0.0.2]}}]\n    to: "
					  "[{operation: {methods: [GET]}}]\n"
					  "  - to: [{operation: {hosts: [\"*.Example.com\"]}}]\n")
	    AZ("allow-a", "default",
	       "  rules:\n  - to: [{operation: {paths: [\"/api/{*}/x\"]}}]\n"
	       "    when:\n    - {key: \"request.headers[X-A]\", values: [\"*\"]}\n"
	       "    - {key: destination.port, notValues: [\"81\"]}\n"
	       "  - from: [{source: {namespaces: [foo*]}}]\n") "---\napiVersion: "
							       "security.istio.io/v1\nkind: "
							       "AuthorizationPolicy\n"
							       "metadata: {name: shadow, "
							       "annotations: {istio.io/dry-run: "
							       "\"true\"}}\n"
							       "spec:\n  rules: [{}]\n" AZ(
								   "audit", "default",
								   "  action: AUDIT\n  rules: "
								   "[{}]\n");
	struct fx *f = *state;
	const struct ism_authz *az;
	const struct ism_az_cond *c;

	load_compile(f, yaml);
	az = &f->t->authz;
	/* DENY: the two rules, by name. */
	assert_int_equal(az->deny.n, 2);
	assert_string_equal(
	    az->deny.p[0].details.p,
	    "rbac_access_denied_matched_policy[ns[istio-system]-policy[deny-x]-rule[0]]");
	assert_string_equal(
	    az->deny.p[1].details.p,
	    "rbac_access_denied_matched_policy[ns[istio-system]-policy[deny-x]-rule[1]]");
	assert_int_equal(az->deny.p[0].n_perm, 1);
	assert_int_equal(az->deny.p[0].perm[0].n, 1);
	c = &az->deny.p[0].perm[0].c[0];
	assert_int_equal(c->attr, ISM_AZ_METHOD);
	assert_int_equal(c->v[0].m.kind, ISM_SM_EXACT);
	assert_string_equal(c->v[0].m.s.p, "GET");
	assert_int_equal(az->deny.p[0].prin[0].n, 1);
	c = &az->deny.p[0].prin[0].c[0];
	assert_int_equal(c->attr, ISM_AZ_SRC_IP);
	assert_int_equal(c->v[0].net.prefix, 32);
	c = &az->deny.p[1].perm[0].c[0];
	assert_int_equal(c->attr, ISM_AZ_HOST);
	assert_int_equal(c->v[0].m.kind, ISM_SM_SUFFIX);
	assert_string_equal(c->v[0].m.s.p, ".Example.com");
	assert_true(c->v[0].m.ignore_case);
	assert_int_equal(az->deny.p[1].prin[0].n, 0); /* any source */
	/* For TCP: the HTTP attributes left out of both DENY rules. */
	assert_int_equal(az->tcp_deny.n, 2);
	assert_int_equal(az->tcp_deny.p[0].perm[0].n, 0);
	assert_int_equal(az->tcp_deny.p[0].prin[0].n, 1);
	assert_int_equal(az->tcp_deny.p[1].perm[0].n, 0);
	/* ALLOW: the template with the destination's when key; the header's
	 * presence with the sources; the namespace's pattern. */
	assert_true(az->allow.on);
	assert_int_equal(az->allow.n, 2);
	assert_int_equal(az->allow.p[0].perm[0].n, 2);
	c = &az->allow.p[0].perm[0].c[0];
	assert_int_equal(c->attr, ISM_AZ_PATH);
	assert_int_equal(c->v[0].m.kind, ISM_SM_TEMPLATE);
	assert_string_equal(c->v[0].m.s.p, "/api/{*}/x");
	c = &az->allow.p[0].perm[0].c[1];
	assert_int_equal(c->attr, ISM_AZ_DEST_PORT);
	assert_true(c->negate);
	assert_int_equal(c->v[0].port, 81);
	c = &az->allow.p[0].prin[0].c[0];
	assert_int_equal(c->attr, ISM_AZ_HEADER);
	assert_string_equal(c->name.p, "x-a");
	assert_int_equal(c->v[0].m.kind, ISM_SM_PRESENT);
	c = &az->allow.p[1].prin[0].c[0];
	assert_int_equal(c->attr, ISM_AZ_PEER_ID);
	assert_string_equal(c->v[0].m.s.p, ".*/ns/foo.*/.*");
	/* For TCP, the rule with HTTP attributes is left out, the filter on. */
	assert_true(az->tcp_allow.on);
	assert_int_equal(az->tcp_allow.n, 1);
	assert_int_equal(az->tcp_allow.p[0].prin[0].c[0].attr, ISM_AZ_PEER_ID);
#undef AZ
}

/* istio.io/dry-run read as istiod reads it (strconv.ParseBool): 1, t, T,
 * TRUE, true, True are a dry run; 0, f, F, FALSE, false, False are not; any
 * other value is a warning at the annotation, and the policy is enforced. */
static void test_authz_dry_run_values(void **state)
{
#define DRY(name, value)                                                                           \
	"---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  "          \
	"name: " name "\n  annotations: {istio.io/dry-run: \"" value                               \
	"\"}\nspec:\n  action: DENY\n  rules: [{}]\n"
	static const char yaml[] = APP DRY("one", "1") DRY("t", "t") DRY("upper", "TRUE")
	    DRY("title", "True") DRY("zero", "0") DRY("title-false", "False") DRY("mixed", "tRuE")
		DRY("word", "yes");
	struct fx *f = *state;
	const struct ism_authz *az;

	load_compile(f, yaml);
	az = &f->t->authz;
	/* Enforced: zero, title-false, and the two that are no booleans to
	 * istiod (in the order of their names). */
	assert_int_equal(az->deny.n, 4);
	assert_non_null(strstr(az->deny.p[0].details.p, "policy[mixed]"));
	assert_non_null(strstr(az->deny.p[1].details.p, "policy[title-false]"));
	assert_non_null(strstr(az->deny.p[2].details.p, "policy[word]"));
	assert_non_null(strstr(az->deny.p[3].details.p, "policy[zero]"));
	assert_int_equal(f->d.n_errors, 0);
	assert_true(has_warning(
	    &f->d, "AuthorizationPolicy default/mixed: metadata.annotations.istio.io/dry-run",
	    "\"tRuE\" is not a boolean as istiod reads it"));
	assert_true(has_warning(
	    &f->d, "AuthorizationPolicy default/word: metadata.annotations.istio.io/dry-run",
	    "the policy is enforced, not a dry run"));
	assert_int_equal(warning_line(&f->d, "\"tRuE\" is not a boolean"), 66);
#undef DRY
}

static void test_hc_fields(void **state)
{
	static const char yaml[] =
	    "apiVersion: isthmus.io/v1\nkind: Appliance\nmetadata: {name: t}\n"
	    "spec:\n  locality: region1/zone1\n"
	    "  healthChecks:\n"
	    "  - {host: s, port: 80, interval: 3s}\n"
	    "  - {host: s, port: 81, type: tcp, interval: 4s, unhealthyInterval: 1s,\n"
	    "     unhealthyEdgeInterval: 500ms, healthyEdgeInterval: 2s, initialJitter: 1s,\n"
	    "     intervalJitter: 100ms, intervalJitterPercent: 10}\n"
	    "  - {host: s, port: 82, unhealthyInterval: 7s, type: grpc, serviceName: pkg.Svc,\n"
	    "     hostHeader: up.example}\n"
	    "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\n"
	    "spec:\n  servers: [{port: {number: 80, name: http-80-13, protocol: HTTP}, hosts: "
	    "[\"*\"]}]\n"
	    "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\n"
	    "spec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n"
	    "  - route:\n"
	    "    - {destination: {host: s, port: {number: 80}}, weight: 1}\n"
	    "    - {destination: {host: s, port: {number: 81}}, weight: 1}\n"
	    "    - {destination: {host: s, port: {number: 82}}, weight: 1}\n"
	    "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: s}\n"
	    "spec:\n  hosts: [s]\n"
	    "  ports: [{number: 80, name: a}, {number: 81, name: b}, {number: 82, name: c}]\n"
	    "  resolution: STATIC\n  endpoints: [{address: 10.0.0.1}]\n";
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_hc *h80 =
	    loaded_cluster(t, "outbound|80||s.default.svc.cluster.local")->hc;
	const struct ism_hc *h81 =
	    loaded_cluster(t, "outbound|81||s.default.svc.cluster.local")->hc;
	const struct ism_hc *h82 =
	    loaded_cluster(t, "outbound|82||s.default.svc.cluster.local")->hc;

	/* Envoy's defaults. */
	assert_int_equal(h80->type, ISM_HC_HTTP);
	assert_int_equal(h80->interval_ms, 3000);
	assert_int_equal(h80->unhealthy_interval_ms, 3000);
	assert_int_equal(h80->unhealthy_edge_interval_ms, 3000);
	assert_int_equal(h80->healthy_edge_interval_ms, 3000);
	assert_int_equal(h80->initial_jitter_ms, 0);
	assert_int_equal(h80->interval_jitter_ms, 0);
	assert_int_equal(h80->interval_jitter_percent, 0);
	assert_int_equal(h81->type, ISM_HC_TCP);
	assert_int_equal(h81->interval_ms, 4000);
	assert_int_equal(h81->unhealthy_interval_ms, 1000);
	assert_int_equal(h81->unhealthy_edge_interval_ms, 500);
	assert_int_equal(h81->healthy_edge_interval_ms, 2000);
	assert_int_equal(h81->initial_jitter_ms, 1000);
	assert_int_equal(h81->interval_jitter_ms, 100);
	assert_int_equal(h81->interval_jitter_percent, 10);
	assert_int_equal(h80->service.len, 0);
	/* gRPC: the service asked about, the :authority */
	assert_int_equal(h82->type, ISM_HC_GRPC);
	assert_string_equal(h82->service.p, "pkg.Svc");
	assert_string_equal(h82->host.p, "up.example");
	/* The unhealthy edge follows the unhealthy interval. */
	assert_int_equal(h82->interval_ms, 5000);
	assert_int_equal(h82->unhealthy_interval_ms, 7000);
	assert_int_equal(h82->unhealthy_edge_interval_ms, 7000);
	assert_int_equal(h82->healthy_edge_interval_ms, 5000);
}

/* Service ports s:80..83 of one endpoint, 80, 81 and 82 reaching its port
 * 9000, 83 its 9001, routed to, with the checks of hcs. */
#define HC_PORTS_YAML(hcs)                                                                         \
	APP hcs "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\n"   \
		"spec:\n  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: "      \
		"[\"*\"]}]\n"                                                                      \
		"---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: " \
		"vs}\n"                                                                            \
		"spec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n  - route:\n"                 \
		"    - {destination: {host: s, port: {number: 80}}, weight: 1}\n"                  \
		"    - {destination: {host: s, port: {number: 81}}, weight: 1}\n"                  \
		"    - {destination: {host: s, port: {number: 82}}, weight: 1}\n"                  \
		"    - {destination: {host: s, port: {number: 83}}, weight: 1}\n"                  \
		"---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: "   \
		"s}\n"                                                                             \
		"spec:\n  hosts: [s]\n"                                                            \
		"  ports: [{number: 80, name: a, targetPort: 9000}, {number: 81, name: b, "        \
		"targetPort: 9000},\n"                                                             \
		"          {number: 82, name: c, targetPort: 9000}, {number: 83, name: d, "        \
		"targetPort: 9001}]\n"                                                             \
		"  resolution: STATIC\n  endpoints: [{address: 10.0.0.1}]\n"

/* The endpoint key of service port port's cluster, and whether it is checked. */
static const char *port_key(struct fx *f, const struct ism_table *t, unsigned port, bool *hc)
{
	char name[96];
	const struct ism_cluster *cl;

	snprintf(name, sizeof(name), "outbound|%u||s.default.svc.cluster.local", port);
	cl = loaded_cluster(t, name);
	assert_non_null(cl);
	assert_int_equal(cl->n_endpoints, 1);
	*hc = f->eps.hc[cl->endpoints[0].id - 100];
	return f->eps.keys[cl->endpoints[0].id - 100];
}

/* Ports that reach one endpoint port with other checks (one checked, the
 * other not, or each its own) have an endpoint each, keyed with the service
 * port, as Envoy has hosts per cluster: a check of one port decided the
 * other's health, and of two checks one ran. A port whose endpoint port is
 * its own, and ports of one check, keep the plain key. */
static void test_hc_port_keys(void **state)
{
	static const char apart[] = HC_PORTS_YAML("  healthChecks:\n"
						  "  - {host: s, port: 81, path: /b}\n"
						  "  - {host: s, port: 82, path: /c}\n");
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, apart);
	bool hc;

	assert_string_equal(port_key(f, t, 80, &hc),
			    "s.default.svc.cluster.local:80|10.0.0.1:9000");
	assert_false(hc);
	assert_string_equal(port_key(f, t, 81, &hc),
			    "s.default.svc.cluster.local:81|10.0.0.1:9000");
	assert_true(hc);
	assert_string_equal(port_key(f, t, 82, &hc),
			    "s.default.svc.cluster.local:82|10.0.0.1:9000");
	assert_true(hc);
	assert_string_equal(port_key(f, t, 83, &hc), "s.default.svc.cluster.local|10.0.0.1:9001");
	assert_false(hc);
	assert_int_equal(f->eps.n, 4);
}

static void test_hc_port_keys_shared(void **state)
{
	static const char one[] = HC_PORTS_YAML("  healthChecks: [{host: s, path: /all}]\n");
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, one);
	bool hc;

	for (unsigned port = 80; port <= 82; port++) {
		assert_string_equal(port_key(f, t, port, &hc),
				    "s.default.svc.cluster.local|10.0.0.1:9000");
		assert_true(hc);
	}
	assert_string_equal(port_key(f, t, 83, &hc), "s.default.svc.cluster.local|10.0.0.1:9001");
	assert_int_equal(f->eps.n, 2);
	/* Without expectedStatuses: 200 alone (docs/configuration.md; Envoy's
	 * default expected_statuses), as the half-open range [200, 201). */
	assert_non_null(s_cluster(t, 80, "")->hc);
	assert_int_equal(s_cluster(t, 80, "")->hc->n_statuses, 1);
	assert_int_equal(s_cluster(t, 80, "")->hc->statuses[0][0], 200);
	assert_int_equal(s_cluster(t, 80, "")->hc->statuses[0][1], 201);
}

/* spec.accessLog: the destination, and the text template parsed at load into
 * operators in the table; the defaults. */
static void test_access_log(void **state)
{
	static const char udp[] = APP
	    "  accessLog:\n    syslog: {address: \"127.0.0.1:514\", facility: local3, tag: edge}\n"
	    "    format: text\n    textFormat: \"%REQ(:METHOD)% %% %DURATION%\\n\"\n";
	static const char local[] = APP "  accessLog:\n    syslog: {}\n";
	static const char out[] = APP "  accessLog: {path: \"-\", format: text}\n";
	struct fx *f = *state;
	const struct ism_alog_conf *l = &load_compile(f, udp)->access_log;
	const struct sockaddr_in *sin = (const struct sockaddr_in *)&l->addr;

	assert_int_equal(l->dest, ISM_ALOG_SYSLOG);
	assert_int_equal(sin->sin_family, AF_INET);
	assert_int_equal(ntohs(sin->sin_port), 514);
	assert_int_equal(l->addrlen, sizeof(*sin));
	assert_string_equal(l->address.p, "127.0.0.1:514");
	assert_int_equal(l->facility, 19);
	assert_string_equal(l->tag.p, "edge");
	assert_int_equal(l->format, ISM_ALOG_TEXT);
	assert_int_equal(l->n_ops, 4);
	assert_int_equal(l->ops[0].field, ISM_ALOG_F_REQ);
	assert_int_equal(l->ops[0].hdr, ISM_ALOG_H_METHOD);
	assert_int_equal(l->ops[1].field, ISM_ALOG_F_LITERAL);
	assert_string_equal(l->ops[1].lit.p, " %"); /* copied into the arena, NUL-terminated */
	assert_string_equal(l->ops[2].lit.p, " ");
	assert_int_equal(l->ops[3].field, ISM_ALOG_F_DURATION);

	l = &reload_compile(f, local)->access_log;
	assert_int_equal(l->dest, ISM_ALOG_SYSLOG);
	assert_int_equal(l->addr.ss_family, AF_UNIX);
	assert_string_equal(l->address.p, "/dev/log");
	assert_int_equal(l->facility, 16);
	assert_string_equal(l->tag.p, "isthmus");
	assert_int_equal(l->format, ISM_ALOG_JSON);
	assert_int_equal(l->n_ops, 0);

	l = &reload_compile(f, out)->access_log;
	assert_int_equal(l->dest, ISM_ALOG_STDOUT);
	assert_int_equal(l->format, ISM_ALOG_TEXT);
	assert_true(l->n_ops > 20); /* Istio's default template */
	assert_int_equal(l->ops[0].field, ISM_ALOG_F_LITERAL);
	assert_string_equal(l->ops[0].lit.p, "[");
	assert_int_equal(l->ops[1].field, ISM_ALOG_F_START_TIME);
}

/* A port with a GRPC-WEB server translates gRPC-Web, whatever its other
 * servers' protocols; others do not. */
static void test_grpc_web_listener(void **state)
{
	static const char yaml[] = APP
	    "---\napiVersion: networking.istio.io/v1\nkind: Gateway\n"
	    "metadata: {name: gw}\nspec:\n  servers:\n"
	    "  - port: {number: 80, name: http-80-14, protocol: HTTP}\n    hosts: [a.test]\n"
	    "  - port: {number: 81, name: grpc-web-81, protocol: grpc-web}\n    hosts: [a.test]\n"
	    "  - port: {number: 81, name: http2-81, protocol: HTTP2}\n    hosts: [b.test]\n";
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	int seen = 0;

	for (uint32_t i = 0; i < t->n_listeners; i++) {
		assert_int_equal(t->listeners[i].grpc_web, t->listeners[i].port == 81);
		seen |= 1 << (t->listeners[i].port - 80);
	}
	assert_int_equal(seen, 3);
}

/* Listener names are the metrics' `listener` label and the key of the kept
 * counters: two Gateways that both call their port `http` (two listeners,
 * two series of one name before) name those listeners by address and port,
 * as Envoy does; a name no other listener has stays, and a server sharing a
 * listener does not make its name shared. */
static void test_listener_names_unique(void **state)
{
	static const char yaml[] =
	    APP "  listenAddress: 127.0.0.1\n"
		"---\napiVersion: networking.istio.io/v1\nkind: Gateway\n"
		"metadata: {name: gw}\nspec:\n  servers:\n"
		"  - port: {number: 8080, name: http, protocol: HTTP}\n    hosts: [a.test]\n"
		"  - port: {number: 8082, name: web, protocol: HTTP}\n    hosts: [a.test]\n"
		"  - port: {number: 8083, name: other, protocol: HTTP}\n    bind: \"::1\"\n"
		"    hosts: [a.test]\n"
		"---\napiVersion: networking.istio.io/v1\nkind: Gateway\n"
		"metadata: {name: gw2}\nspec:\n  servers:\n"
		"  - port: {number: 8081, name: http, protocol: HTTP}\n    hosts: [b.test]\n"
		"  - port: {number: 8082, name: web, protocol: HTTP}\n    hosts: [b.test]\n"
		"  - port: {number: 8084, name: other, protocol: HTTP}\n    hosts: [b.test]\n";
	static const struct {
		uint16_t port;
		const char *name;
	} want[] = {{8080, "127.0.0.1_8080"},
		    {8081, "127.0.0.1_8081"},
		    {8082, "web"},
		    {8083, "::1_8083"},
		    {8084, "127.0.0.1_8084"}};
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);

	assert_int_equal(t->n_listeners, 5);
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		for (uint32_t l = 0; l < t->n_listeners; l++)
			if (t->listeners[l].port == want[i].port)
				assert_string_equal(t->listeners[l].name.p, want[i].name);
}

/* format: istio-json: Istio's JSON default, or jsonFormat's members in file
 * order, each a key op and its template's ops. */
static void test_access_log_dict(void **state)
{
	static const char def[] = APP "  accessLog: {path: \"-\", format: istio-json}\n";
	static const char own[] = APP "  accessLog:\n    path: \"-\"\n    format: istio-json\n"
				      "    jsonFormat:\n      when: \"%START_TIME%\"\n"
				      "      took: \"%DURATION% ms\"\n";
	struct fx *f = *state;
	const struct ism_alog_conf *l = &load_compile(f, def)->access_log;

	assert_int_equal(l->format, ISM_ALOG_DICT);
	assert_int_equal(l->n_ops, 48); /* 24 keys, one operator each */
	assert_int_equal(l->ops[0].field, ISM_ALOG_F_KEY);
	assert_string_equal(l->ops[0].lit.p, "authority");
	assert_int_equal(l->ops[1].field, ISM_ALOG_F_REQ);
	assert_int_equal(l->ops[1].hdr, ISM_ALOG_H_AUTHORITY);
	assert_string_equal(l->ops[46].lit.p, "x_forwarded_for");

	l = &reload_compile(f, own)->access_log;
	assert_int_equal(l->format, ISM_ALOG_DICT);
	assert_int_equal(l->n_ops, 5);
	assert_string_equal(l->ops[0].lit.p, "when");
	assert_int_equal(l->ops[1].field, ISM_ALOG_F_START_TIME);
	assert_string_equal(l->ops[2].lit.p, "took");
	assert_int_equal(l->ops[3].field, ISM_ALOG_F_DURATION);
	assert_string_equal(l->ops[4].lit.p, " ms");
}

/* jsonFormat's nested objects and lists, and its plain YAML values that are
 * JSON's own: numbers (as Envoy writes them), booleans, null; a quoted
 * number is a template. */
static void test_access_log_dict_nested(void **state)
{
	static const char own[] =
	    APP "  accessLog:\n    path: \"-\"\n    format: istio-json\n"
		"    jsonFormat:\n      code: \"%RESPONSE_CODE%\"\n"
		"      upstream:\n        host: \"%UPSTREAM_HOST%\"\n"
		"        tries: [\"%UPSTREAM_REQUEST_ATTEMPT_COUNT%\", 2, true]\n"
		"        none: {}\n"
		"      version: 1.50\n      nothing: ~\n      quoted: \"200\"\n";
	static const struct {
		uint8_t field;
		const char *lit;
	} want[] = {
	    {ISM_ALOG_F_KEY, "code"},	  {ISM_ALOG_F_RESPONSE_CODE, NULL},
	    {ISM_ALOG_F_KEY, "upstream"}, {ISM_ALOG_F_OPEN, "{"},
	    {ISM_ALOG_F_KEY, "host"},	  {ISM_ALOG_F_UPSTREAM_HOST, NULL},
	    {ISM_ALOG_F_KEY, "tries"},	  {ISM_ALOG_F_OPEN, "["},
	    {ISM_ALOG_F_ITEM, NULL},	  {ISM_ALOG_F_ATTEMPTS, NULL},
	    {ISM_ALOG_F_ITEM, NULL},	  {ISM_ALOG_F_JSON, "2"},
	    {ISM_ALOG_F_ITEM, NULL},	  {ISM_ALOG_F_JSON, "true"},
	    {ISM_ALOG_F_CLOSE, "]"},	  {ISM_ALOG_F_KEY, "none"},
	    {ISM_ALOG_F_OPEN, "{"},	  {ISM_ALOG_F_CLOSE, "}"},
	    {ISM_ALOG_F_CLOSE, "}"},	  {ISM_ALOG_F_KEY, "version"},
	    {ISM_ALOG_F_JSON, "1.5"},	  {ISM_ALOG_F_KEY, "nothing"},
	    {ISM_ALOG_F_JSON, "null"},	  {ISM_ALOG_F_KEY, "quoted"},
	    {ISM_ALOG_F_LITERAL, "200"},
	};
	struct fx *f = *state;
	const struct ism_alog_conf *l = &load_compile(f, own)->access_log;

	assert_int_equal(l->n_ops, sizeof(want) / sizeof(want[0]));
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
		assert_int_equal(l->ops[i].field, want[i].field);
		if (want[i].lit != NULL) {
			assert_int_equal(l->ops[i].lit.len, strlen(want[i].lit));
			assert_memory_equal(l->ops[i].lit.p, want[i].lit, strlen(want[i].lit));
		}
	}
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
	"  servers: [{port: {number: 80, name: http-80-15, protocol: HTTP}, hosts: [\"*\"]}]\n"

#define X64 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"

/* APP is lines 1-6, GW_DOC lines 7-12, the VirtualService lines 13-21; its first
 * route entry is line 22. */
#define VS_HTTP                                                                                    \
	APP GW_DOC "---\n"                                                                         \
		   "apiVersion: networking.istio.io/v1\n"                                          \
		   "kind: VirtualService\n"                                                        \
		   "metadata: {name: vs, namespace: shop}\n"                                       \
		   "spec:\n"                                                                       \
		   "  hosts: [\"*\"]\n"                                                            \
		   "  gateways: [default/gw]\n"                                                    \
		   "  http:\n"
#define VS_HEAD VS_HTTP "  - route:\n"

#define VS_FIELD "VirtualService shop/vs: "

#define DELEGATE_VS(extra)                                                                         \
	"---\n"                                                                                    \
	"apiVersion: networking.istio.io/v1\n"                                                     \
	"kind: VirtualService\n"                                                                   \
	"metadata: {name: shop-routes, namespace: shop}\n"                                         \
	"spec:\n" extra "  http:\n"                                                                \
	"  - name: cart\n"                                                                         \
	"    match: [{uri: {prefix: /shop/cart}, headers: {x-b: {exact: \"1\"}}}]\n"               \
	"    route: [{destination: {host: cart, port: {number: 80}}}]\n"                           \
	"  - name: elsewhere\n"                                                                    \
	"    match: [{uri: {prefix: /other}}]\n"                                                   \
	"    route: [{destination: {host: cart, port: {number: 80}}}]\n"                           \
	"  - name: rest\n"                                                                         \
	"    retries: {attempts: 5}\n"                                                             \
	"    route: [{destination: {host: catalog, port: {number: 80}}}]\n"

/* delegate: the routes of a VirtualService without hosts take the delegating
 * route's place, merged as Istio merges them (virtualservice.go
 * mergeHTTPRoute): conditions combined, a conflicting route left out with a
 * warning, names joined, timeout and retries inherited where unset. */
static void test_delegate(void **state)
{
	static const char yaml[] = APP GW_DOC
	    "---\n"
	    "apiVersion: networking.istio.io/v1\n"
	    "kind: VirtualService\n"
	    "metadata: {name: root}\n"
	    "spec:\n"
	    "  hosts: [\"*\"]\n"
	    "  gateways: [gw]\n"
	    "  http:\n"
	    "  - name: shop\n"
	    "    match: [{uri: {prefix: /shop}, headers: {x-a: {exact: \"1\"}}}]\n"
	    "    timeout: 3s\n"
	    "    delegate: {name: shop-routes, namespace: shop}\n"
	    "  - route: [{destination: {host: front, port: {number: 80}}}]\n" DELEGATE_VS("");
#define DELEGATE_ROOT                                                                              \
	APP GW_DOC "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n"               \
		   "metadata: {name: root}\nspec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n"  \
		   "  - delegate: {name: shop-routes, namespace: shop}\n"                          \
		   "  - route: [{destination: {host: front, port: {number: 80}}}]\n"
	static const char hidden[] = DELEGATE_ROOT DELEGATE_VS("  exportTo: [.]\n");
	static const char to_root[] = DELEGATE_ROOT DELEGATE_VS("  exportTo: [shop, default]\n");
#undef DELEGATE_ROOT
	static const char empty_prefix[] = APP GW_DOC
	    "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n"
	    "metadata: {name: root}\nspec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n"
	    "  - match: [{uri: {prefix: \"\"}}]\n"
	    "    delegate: {name: shop-routes, namespace: shop}\n" DELEGATE_VS("");
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_vhost *vh = &t->listeners[0].vhosts[0];
	const struct ism_match *m;

	assert_int_equal(vh->n_routes, 3);
	assert_string_equal(vh->routes[0].name.p, "shop-cart");
	assert_int_equal(vh->routes[0].n_match, 1);
	m = &vh->routes[0].match[0];
	assert_int_equal(m->uri.kind, ISM_SM_PREFIX);
	assert_string_equal(m->uri.s.p, "/shop/cart");
	assert_int_equal(m->n_headers, 2); /* the root's x-a and the delegate's x-b */
	assert_int_equal(vh->routes[0].timeout_ms, 3000);
	assert_int_equal(vh->routes[0].retry.attempts, 2); /* Istio's default, as the root */
	/* /other conflicts with /shop: left out, with a warning. */
	assert_true(
	    has_warning(&f->d, "VirtualService default/root: spec.http[0].delegate",
			"route http[1] of delegate shop/shop-routes conflicts with the match"));
	assert_string_equal(vh->routes[1].name.p, "shop-rest");
	assert_int_equal(vh->routes[1].n_match, 1); /* the root's */
	assert_string_equal(vh->routes[1].match[0].uri.s.p, "/shop");
	assert_int_equal(vh->routes[1].retry.attempts, 5);
	assert_int_equal(vh->routes[1].timeout_ms, 3000);
	assert_int_equal(vh->routes[2].n_match, 0);
	/* The delegate itself binds nowhere and is not "mesh only". */
	assert_int_equal(t->listeners[0].n_vhosts, 1);
	assert_false(has_warning(&f->d, "shop-routes", "mesh only"));

	/* A delegate not exported to the root's namespace: the route delegating
	 * is left out, as istiod leaves it out; exported to it, it is merged. */
	t = reload_compile(f, hidden);
	vh = &t->listeners[0].vhosts[0];
	assert_int_equal(vh->n_routes, 1);
	assert_int_equal(vh->routes[0].n_match, 0);
	assert_true(has_warning(&f->d, "VirtualService default/root: spec.http[0].delegate",
				"delegate shop/shop-routes is not exported to namespace default"));
	t = reload_compile(f, to_root);
	assert_int_equal(t->listeners[0].vhosts[0].n_routes, 4); /* the delegate's three, front */

	/* A root prefix "" is no prefix to Istio's stringMatchConflict (its
	 * GetPrefix() != ""): a delegate route with a uri match conflicts,
	 * the one without takes the root's match. */
	t = reload_compile(f, empty_prefix);
	vh = &t->listeners[0].vhosts[0];
	assert_int_equal(vh->n_routes, 1);
	assert_string_equal(vh->routes[0].name.p, "rest");
	assert_true(
	    has_warning(&f->d, "VirtualService default/root: spec.http[0].delegate",
			"route http[0] of delegate shop/shop-routes conflicts with the match"));
}

/* Istio's mergeHTTPRoute and hasConflict, condition by condition
 * (pilot/pkg/model/virtualservice.go): a header the leaf names too takes the
 * leaf's value (maps.MergeCopy(root, delegate)); an exact value under a root
 * prefix is a subset of it; ignoreUriCase must agree or the leaf route is
 * left out; a leaf without retries takes the root's. */
static void test_delegate_merge_rules(void **state)
{
	static const char yaml[] = APP GW_DOC
	    "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n"
	    "metadata: {name: root}\nspec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n"
	    "  - name: shop\n"
	    "    match: [{uri: {prefix: /shop}, headers: {x-a: {prefix: ab}}}]\n"
	    "    retries: {attempts: 7}\n"
	    "    delegate: {name: leaf, namespace: shop}\n"
	    "  - route: [{destination: {host: front, port: {number: 80}}}]\n"
	    "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n"
	    "metadata: {name: leaf, namespace: shop}\nspec:\n  http:\n"
	    "  - name: exact\n"
	    "    match: [{uri: {exact: /shop/cart}, headers: {x-a: {exact: abc}}}]\n"
	    "    route: [{destination: {host: cart, port: {number: 80}}}]\n"
	    "  - name: nocase\n"
	    "    match: [{uri: {prefix: /shop/x}, ignoreUriCase: true}]\n"
	    "    route: [{destination: {host: cart, port: {number: 80}}}]\n";
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_vhost *vh = &t->listeners[0].vhosts[0];
	const struct ism_match *m;

	/* shop-exact and the root's last route; shop-nocase conflicts. */
	assert_int_equal(vh->n_routes, 2);
	assert_string_equal(vh->routes[0].name.p, "shop-exact");
	assert_int_equal(vh->routes[0].n_match, 1);
	m = &vh->routes[0].match[0];
	assert_int_equal(m->uri.kind, ISM_SM_EXACT);
	assert_string_equal(m->uri.s.p, "/shop/cart");
	assert_int_equal(m->n_headers, 1);
	assert_int_equal(m->headers[0].m.kind, ISM_SM_EXACT); /* the leaf's x-a */
	assert_string_equal(m->headers[0].m.s.p, "abc");
	assert_int_equal(vh->routes[0].retry.attempts, 7); /* the root's retries */
	assert_true(has_warning(&f->d, "VirtualService default/root: spec.http[0].delegate",
				"route http[1] of delegate shop/leaf conflicts with the match"));
	assert_false(has_warning(&f->d, "VirtualService default/root: spec.http[0].delegate",
				 "route http[0] of delegate shop/leaf conflicts with the match"));
	assert_int_equal(vh->routes[1].n_match, 0);
}

/* What Istio's validation lets pass and istiod translates: an empty uri match
 * is its default (any path), an empty method, scheme or authority one a
 * presence match; weights past 100000 (int32 in the API). */
static void test_empty_string_matches(void **state)
{
	static const char yaml[] = APP GW_DOC
	    "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n"
	    "metadata: {name: root}\nspec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n"
	    "  - match: [{uri: {}, method: {}, scheme: {}, authority: {}}]\n"
	    "    route:\n"
	    "    - {destination: {host: front, port: {number: 80}}, weight: 200000}\n"
	    "    - {destination: {host: back, port: {number: 80}}, weight: 100000}\n";
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_route *r = &t->listeners[0].vhosts[0].routes[0];

	assert_int_equal(r->n_match, 1);
	assert_int_equal(r->match[0].uri.kind, ISM_SM_ANY);
	assert_int_equal(r->match[0].method.kind, ISM_SM_PRESENT);
	assert_int_equal(r->match[0].scheme.kind, ISM_SM_PRESENT);
	assert_int_equal(r->match[0].authority.kind, ISM_SM_PRESENT);
	assert_int_equal(r->dest[0].weight, 200000);
	assert_int_equal(r->total_weight, 300000);
}

/* Mistakes in delegation, each named where it is: those of one document
 * first, then those between documents (the loader's second pass). */
static void test_delegate_errors(void **state)
{
	static const char syntax[] = APP GW_DOC
	    "---\n"
	    "apiVersion: networking.istio.io/v1\n"
	    "kind: VirtualService\n"
	    "metadata: {name: root}\n"
	    "spec:\n"
	    "  hosts: [\"*\"]\n"
	    "  gateways: [gw]\n"
	    "  http:\n"
	    "  - delegate: {name: shop-routes, namespace: shop}\n"
	    "    route: [{destination: {host: front, port: {number: 80}}}]\n"
	    "  - delegate: {namespace: shop}\n" DELEGATE_VS("  gateways: [default/gw]\n");
	static const char refs[] = APP GW_DOC "---\n"
					      "apiVersion: networking.istio.io/v1\n"
					      "kind: VirtualService\n"
					      "metadata: {name: root}\n"
					      "spec:\n"
					      "  hosts: [\"*\"]\n"
					      "  gateways: [gw]\n"
					      "  http:\n"
					      "  - delegate: {name: missing}\n"
					      "  - delegate: {name: root}\n"
					      "---\n"
					      "apiVersion: networking.istio.io/v1\n"
					      "kind: VirtualService\n"
					      "metadata: {name: nested}\n"
					      "spec:\n"
					      "  http:\n"
					      "  - delegate: {name: root}\n";
	struct fx *f = *state;
	struct ism_conf *c = NULL;

	assert_int_equal(ism_conf_load_buf("t.yaml", syntax, strlen(syntax), &c, &f->d), -EINVAL);
	assert_null(c);
	assert_true(has_diag(&f->d, ISM_DIAG_ERROR, "default/root: spec.http[0].route",
			     "a route that delegates must not have route"));
	assert_true(has_diag(&f->d, ISM_DIAG_ERROR, "default/root: spec.http[1].delegate.name",
			     "required"));
	assert_true(has_diag(&f->d, ISM_DIAG_ERROR, "shop/shop-routes: spec.gateways",
			     "must have no gateways"));
	ism_diags_init(&f->d);
	assert_int_equal(ism_conf_load_buf("t.yaml", refs, strlen(refs), &c, &f->d), -EINVAL);
	assert_null(c);
	assert_true(has_diag(&f->d, ISM_DIAG_ERROR, "default/root: spec.http[0].delegate",
			     "no VirtualService default/missing in this file"));
	assert_true(has_diag(&f->d, ISM_DIAG_ERROR, "default/root: spec.http[1].delegate",
			     "has hosts: only one without hosts can be a delegate"));
	assert_true(has_diag(&f->d, ISM_DIAG_ERROR, "default/nested: spec.http[0].delegate",
			     "cannot delegate again"));
}

#define MIRROR_VS(http)                                                                            \
	APP GW_DOC "---\n"                                                                         \
		   "apiVersion: networking.istio.io/v1\n"                                          \
		   "kind: VirtualService\n"                                                        \
		   "metadata: {name: root}\n"                                                      \
		   "spec:\n"                                                                       \
		   "  hosts: [\"*\"]\n"                                                            \
		   "  gateways: [gw]\n"                                                            \
		   "  http:\n" http

#define FRONT	   "    route: [{destination: {host: front, port: {number: 80}}}]\n"
#define FRONT_LAST "  - route: [{destination: {host: front, port: {number: 80}}}]\n"

/* The cluster index of service host (namespace default) on port 80. */
static uint32_t mirror_cluster(const struct ism_table *t, const char *host)
{
	char name[128];

	snprintf(name, sizeof(name), "outbound|80||%s.default.svc.cluster.local", host);
	return (uint32_t)(loaded_cluster(t, name) - t->clusters);
}

/* mirror, mirrorPercentage, mirrorPercent, mirrors[]: compiled as Istio
 * translates them (MirrorPercent, MirrorPercentByPolicy): 100 % by default,
 * millionths of a percentage, an explicit 0 left out; clusters named only by
 * a mirror exist; a delegate route takes the root's mirror. */
static void test_mirror(void **state)
{
	static const char yaml[] = MIRROR_VS(
	    "  - match: [{uri: {prefix: /a}}]\n" FRONT
	    "    mirror: {host: m1, port: {number: 80}}\n"
	    "    mirrorPercentage: {value: 12.5}\n"
	    "  - match: [{uri: {prefix: /b}}]\n" FRONT
	    "    mirror: {host: m1, port: {number: 80}}\n"
	    "    mirrorPercent: 30\n"
	    "  - match: [{uri: {prefix: /c}}]\n" FRONT "    mirrors:\n"
	    "    - destination: {host: m2, port: {number: 80}}\n"
	    "      percentage: {value: 0}\n"
	    "    - destination: {host: m3, port: {number: 80}}\n"
	    "  - match: [{uri: {prefix: /d}}]\n" FRONT
	    "    mirror: {host: m1, port: {number: 80}}\n"
	    "    mirrorPercentage: {value: 0}\n"
	    "    mirror_percent: 50\n"
	    "  - match: [{uri: {prefix: /shop}}]\n"
	    "    mirror: {host: m1, port: {number: 80}}\n"
	    "    delegate: {name: shop-routes, namespace: shop}\n" FRONT_LAST) DELEGATE_VS("");
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_vhost *vh = &t->listeners[0].vhosts[0];
	uint32_t m1 = mirror_cluster(t, "m1");

	assert_int_equal(vh->routes[0].n_mirrors, 1);
	assert_int_equal(vh->routes[0].mirrors[0].cluster, m1);
	assert_int_equal(vh->routes[0].mirrors[0].per_million, 125000);
	assert_int_equal(vh->routes[1].n_mirrors, 1);
	assert_int_equal(vh->routes[1].mirrors[0].per_million, 300000);
	assert_int_equal(vh->routes[2].n_mirrors, 1); /* m2's 0 % left out */
	assert_int_equal(vh->routes[2].mirrors[0].cluster, mirror_cluster(t, "m3"));
	assert_int_equal(vh->routes[2].mirrors[0].per_million, 1000000);
	assert_int_equal(vh->routes[3].n_mirrors, 0); /* mirrorPercentage 0 wins */
	assert_null(vh->routes[3].mirrors);
	/* The delegate's routes: the root's mirror, at 100 %. */
	assert_string_equal(vh->routes[4].name.p, "cart");
	assert_int_equal(vh->routes[4].n_mirrors, 1);
	assert_int_equal(vh->routes[4].mirrors[0].cluster, m1);
	assert_int_equal(vh->routes[4].mirrors[0].per_million, 1000000);
	assert_int_equal(vh->routes[5].n_mirrors, 1);
	/* A route without any: nothing. */
	assert_int_equal(vh->routes[6].n_mirrors, 0);
	assert_int_equal(t->limits.mirror_max_in_flight, 256);
	assert_int_equal(t->limits.mirror_max_body_bytes, 65536);
}

/* Mistakes in mirroring, each named where it is (Istio's validation). */
static void test_mirror_errors(void **state)
{
	static const char yaml[] =
	    MIRROR_VS("  - match: [{uri: {prefix: /a}}]\n" FRONT
		      "    mirror: {host: m1, port: {number: 80}}\n"
		      "    mirrors: [{destination: {host: m2}}]\n"
		      "  - match: [{uri: {prefix: /b}}]\n" FRONT
		      "    mirror: {host: m1, port: {number: 80}}\n"
		      "    mirrorPercentage: {value: 100.5}\n"
		      "    mirrorPercent: 101\n"
		      "  - match: [{uri: {prefix: /c}}]\n" FRONT "    mirrors:\n"
		      "    - percentage: {value: -1}\n"
		      "  - match: [{uri: {prefix: /d}}]\n"
		      "    redirect: {uri: /x}\n"
		      "    mirror: {host: m1}\n"
		      "  - match: [{uri: {prefix: /e}}]\n" FRONT "    mirror: {host: m1}\n"
		      "    mirrorPercent: 5\n"
		      "    mirror_percent: 5\n");
	struct fx *f = *state;
	struct ism_conf *c = NULL;

	assert_int_equal(ism_conf_load_buf("t.yaml", yaml, strlen(yaml), &c, &f->d), -EINVAL);
	assert_null(c);
	assert_true(has_diag(&f->d, ISM_DIAG_ERROR, "spec.http[0].mirrors",
			     "cannot have both mirror and mirrors"));
	assert_true(has_diag(&f->d, ISM_DIAG_ERROR, "spec.http[1].mirrorPercentage.value",
			     "between 0 and 100"));
	assert_true(
	    has_diag(&f->d, ISM_DIAG_ERROR, "spec.http[1].mirrorPercent", "between 0 and 100"));
	assert_true(
	    has_diag(&f->d, ISM_DIAG_ERROR, "spec.http[2].mirrors[0].destination", "required"));
	assert_true(has_diag(&f->d, ISM_DIAG_ERROR, "spec.http[2].mirrors[0].percentage.value",
			     "between 0 and 100"));
	assert_true(has_diag(&f->d, ISM_DIAG_ERROR, "spec.http[3].mirror",
			     "cannot be combined with redirect"));
	assert_true(has_diag(&f->d, ISM_DIAG_ERROR, "spec.http[4].mirror_percent", "same field"));
}

/* APP is lines 1-6, the DestinationRule lines 7-13; its policy starts at line 14. */
#define DR_HEAD                                                                                    \
	APP "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n"                     \
	    "metadata: {name: d}\nspec:\n  host: a.b\n  trafficPolicy:\n"

#define DR_FIELD "DestinationRule default/d: spec.trafficPolicy."

/* APP is lines 1-6, the Gateway lines 7-12; its first server is line 13. */
#define GW_SERVERS                                                                                 \
	APP "---\napiVersion: networking.istio.io/v1\nkind: Gateway\n"                             \
	    "metadata: {name: gw}\nspec:\n  servers:\n"

#define GW_FIELD "Gateway default/gw: spec.servers[0]."

/* A Gateway (lines 8-14 after a 7-line Appliance) with one server on port
 * 8080 of the listenAddress. */
#define GW_PORT_8080                                                                               \
	"---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\n"           \
	"spec:\n  servers:\n  - port: {number: 8080, name: http-8080, protocol: HTTP}\n    "       \
	"hosts: [a.test]\n"

/* APP is lines 1-6, a ServiceEntry of host h (line 12, column 11) from line 7. */
#define SE_HOST(h)                                                                                 \
	APP "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"                        \
	    "metadata: {name: se}\nspec:\n  hosts: [" h "]\n  resolution: STATIC\n"                \
	    "  ports: [{number: 80, name: http}]\n"

/* APP is lines 1-6, a DestinationRule of host a.b from line 7; rest from line 13. */
#define DR_SPEC(rest)                                                                              \
	APP "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n"                     \
	    "metadata: {name: d}\nspec:\n  host: a.b\n" rest

/* APP is lines 1-6, a DestinationRule of host h (line 12, column 9) from line 7. */
#define DR_HOST(h)                                                                                 \
	APP "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n"                     \
	    "metadata: {name: d}\nspec:\n  host: " h "\n  trafficPolicy: {tls: {mode: DISABLE}}\n"

/* APP is lines 1-6, the ServiceEntry lines 7-13; its ports are line 14. */
#define SE_HEAD                                                                                    \
	APP "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"                        \
	    "metadata: {name: se}\nspec:\n  hosts: [a.b]\n  resolution: STATIC\n"

static const struct bad bads[] = {
    {"syntax error", APP "  workers: [1, 2\n  user: x\n", 8, 7, "",
     "YAML syntax error: did not find expected ',' or ']'"},
    {"tab indentation", APP "\tuser: x\n", 7, 1, "",
     "YAML syntax error: a tab character; YAML indents with spaces only"},
    {"misspelt field", APP "  workerz: 2\n", 7, 3, "Appliance t: spec.workerz",
     "unknown field; did you mean 'workers'?"},
    {"misspelt field, transposed", APP "  lmiits: {}\n", 7, 3, "Appliance t: spec.lmiits",
     "unknown field; did you mean 'limits'?"},
    {"duplicate key", APP "  workers: 2\n  locality: a/b\n", 8, 3, "",
     "duplicate key \"locality\" (first at line 6, column 3)"},
    {"missing Appliance", GW_DOC, 0, 0, "", "no Appliance document"},
    {"two Appliances", APP "---\n" APP, 8, 1, "",
     "a second Appliance document (the first is at line 1)"},
    {"bad locality",
     "apiVersion: isthmus.io/v1\nkind: Appliance\nmetadata: {name: t}\n"
     "spec:\n  locality: eu-west\n",
     5, 13, "Appliance t: spec.locality", "must be \"region/zone\""},
    {"endpoint locality with an empty part",
     SE_HOST("a.b") "  endpoints: [{address: 10.0.0.3, locality: region2/}]\n", 15, 45,
     "ServiceEntry default/se: spec.endpoints[0].locality",
     "must be \"region\", \"region/zone\" or \"region/zone/subzone\""},
    /* A quoted number is a string, as a port's "80" (only "auto" is one). */
    {"workers quoted", APP "  workers: \"2\"\n", 7, 12, "Appliance t: spec.workers",
     "must be an integer, not a quoted string"},
    {"workers out of range", APP "  workers: 65\n", 7, 12, "Appliance t: spec.workers",
     "between 1 and 64"},
    {"bad appliance duration", APP "  timeouts:\n    idle: 10\n", 8, 11,
     "Appliance t: spec.timeouts.idle", "must be a duration"},
    {"not UTF-8", APP "  workers: 2\n  user: \"\xc3\xa9\xff\"\n", 8, 11, "",
     "YAML syntax error: not UTF-8 text: invalid leading UTF-8 octet (byte 0xFF)"},
    {"not UTF-8, line 5",
     "apiVersion: isthmus.io/v1\nkind: Appliance\nmetadata:\n  name: t\n"
     "spec: {user: \xfe}\n",
     5, 14, "", "invalid leading UTF-8 octet (byte 0xFE)"},
    {"negative duration", APP "  timeouts:\n    drain: -5s\n", 8, 12,
     "Appliance t: spec.timeouts.drain", "must be a duration"},
    {"duration too large", APP "  timeouts:\n    idle: 1194h\n", 8, 11,
     "Appliance t: spec.timeouts.idle", "too large: at most 1193h2m47.295s (4294967295 ms)"},
    /* Integers as Kubernetes' YAML 1.1 reads them: refused where that is
     * not the decimal they look like. */
    {"weight with a leading 0",
     VS_HEAD "    - {destination: {host: a.b}, weight: 075}\n"
	     "    - {destination: {host: c.d}, weight: 25}\n",
     22, 42, VS_FIELD "spec.http[0].route[0].weight",
     "075 is octal 61 to Kubernetes; write 61, or 75 without the 0"},
    {"hexadecimal integer", DR_HEAD "    connectionPool: {tcp: {maxConnections: 0x40}}\n", 14, 44,
     DR_FIELD "connectionPool.tcp.maxConnections",
     "0x40 is hexadecimal 64 to Kubernetes; write 64"},
    {"integer with _", APP "  workers: 1_6\n", 7, 12, "Appliance t: spec.workers",
     "1_6 is 16 to Kubernetes; write 16"},
    {"0o integer", APP "  proxyProtocol: {ports: [0o17]}\n", 7, 27,
     "Appliance t: spec.proxyProtocol.ports[0]", "0o17 is octal 15 to Kubernetes; write 15"},
    {"leading 0 before 8", SE_HEAD "  ports: [{number: 08080, name: http}]\n", 14, 20,
     "ServiceEntry default/se: spec.ports[0].number", "08080 is 8080 to Kubernetes; write 8080"},
    {"status code with a leading 0",
     DR_HEAD "    outlierDetection: {outlierDetectionHttpErrorCodes: [0503]}\n", 14, 57,
     DR_FIELD "outlierDetection.outlierDetectionHttpErrorCodes[0]",
     "0503 is octal 323 to Kubernetes; write 323, or 503 without the 0"},
    /* Tags: the core types' as go-yaml reads them, any other refused. */
    {"!!str in an integer field", SE_HEAD "  ports: [{number: !!str 80, name: http}]\n", 14, 20,
     "ServiceEntry default/se: spec.ports[0].number",
     "must be an integer, not a string (it is tagged !!str)"},
    {"!!binary", SE_HEAD "  subjectAltNames: [!!binary dXAuaW50ZXJuYWw=]\n", 14, 21,
     "spec.subjectAltNames[0]", "YAML tag !!binary is not implemented yet"},
    {"local tag", APP "  user: !who x\n", 7, 9, "spec.user",
     "YAML tag !who is not implemented yet"},
    {"!!int of a word", APP "  workers: !!int four\n", 7, 12, "spec.workers",
     "!!int \"four\" is not an integer, as YAML reads it"},
    {"!!set", APP "  labels: !!set {a: b}\n", 7, 11, "spec.labels",
     "YAML tag !!set is not implemented yet"},
    {"boolean word", APP "  preserveExternalRequestId: tRuE\n", 7, 30,
     "Appliance t: spec.preserveExternalRequestId", "must be true or false"},
    /* Host names as Istio validates them (ValidateWildcardDomain,
     * ValidateFQDN): no '_', no label starting or ending with '-', none over
     * 63 bytes, a top-level label not all digits. */
    {"ServiceEntry host with _", SE_HOST("a_b.example.com"), 12, 11,
     "ServiceEntry default/se: spec.hosts[0]", "invalid host \"a_b.example.com\": invalid label"},
    {"ServiceEntry host -x", SE_HOST("-x.example.com"), 12, 11,
     "ServiceEntry default/se: spec.hosts[0]", "invalid host \"-x.example.com\": invalid label"},
    {"ServiceEntry host numeric TLD", SE_HOST("example.123"), 12, 11,
     "ServiceEntry default/se: spec.hosts[0]",
     "invalid host \"example.123\": the top level domain cannot be all-numeric"},
    {"ServiceEntry host 64-byte label",
     SE_HOST("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example.com"), 12,
     11, "ServiceEntry default/se: spec.hosts[0]", "invalid label"},
    {"ServiceEntry wildcard host", SE_HOST("\"*.example.com\""), 12, 11,
     "ServiceEntry default/se: spec.hosts[0]",
     "a wildcard host (\"*.example.com\") is not implemented yet in a ServiceEntry"},
    {"DNS endpoint not an FQDN",
     APP "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
	 "metadata: {name: se}\nspec:\n  hosts: [a.b]\n"
	 "  ports: [{number: 80, name: http}]\n  resolution: DNS\n"
	 "  endpoints:\n  - address: bad_name.-example.com\n",
     16, 14, "ServiceEntry default/se: spec.endpoints[0].address",
     "\"bad_name.-example.com\" is not an IPv4 or IPv6 address, nor a valid host name (FQDN)"},
    /* A partial wildcard passes Istio's ValidateWildcardDomain (a
     * ServiceEntry's is not implemented, as no wildcard is); "*-" needs a
     * label after it. */
    {"DestinationRule host *-", DR_HOST("\"*-.example.com\""), 12, 9,
     "DestinationRule default/d: spec.host", "invalid host name \"*-.example.com\": invalid label"},
    {"DestinationRule host *--", DR_HOST("\"*--a.example.com\""), 12, 9,
     "DestinationRule default/d: spec.host",
     "invalid host name \"*--a.example.com\": invalid label"},
    {"ServiceEntry partial wildcard host", SE_HOST("\"*x\""), 12, 11,
     "ServiceEntry default/se: spec.hosts[0]",
     "a wildcard host (\"*x\") is not implemented yet in a ServiceEntry"},
    {"DestinationRule host with _", DR_HOST("a_b.example.com"), 12, 9,
     "DestinationRule default/d: spec.host",
     "invalid host name \"a_b.example.com\": invalid label"},
    {"destination host with _", VS_HEAD "    - {destination: {host: a_b.example.com}}\n", 22, 28,
     VS_FIELD "spec.http[0].route[0].destination.host",
     "invalid host name \"a_b.example.com\": invalid label"},
    {"tunnel host with _", DR_HEAD "    tunnel: {targetHost: a_b.example.com, targetPort: 1}\n", 14,
     26, DR_FIELD "tunnel.targetHost", "must be a host name (FQDN) or an IP address"},
    /* Port names as Istio's ValidatePortName: DNS-1123 labels. */
    {"ServiceEntry port name with _", SE_HEAD "  ports: [{number: 80, name: Http_1}]\n", 14, 30,
     "ServiceEntry default/se: spec.ports[0].name", "invalid port name \"Http_1\""},
    {"ServiceEntry port name @", SE_HEAD "  ports: [{number: 80, name: \"@\"}]\n", 14, 30,
     "ServiceEntry default/se: spec.ports[0].name", "invalid port name \"@\""},
    {"WorkloadEntry port name with a space",
     APP "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n"
	 "metadata: {name: we}\nspec:\n  address: 10.0.0.1\n  ports: {\"a b\": 80}\n",
     13, 11, "WorkloadEntry default/we: spec.ports.a b", "invalid port name \"a b\" (as Istio"},
    /* Istio's validateTrafficPolicy, validateConnectionPool,
     * validateOutlierDetection and validateLoadBalancer. */
    {"empty trafficPolicy", DR_SPEC("  trafficPolicy: {}\n"), 13, 18,
     "DestinationRule default/d: spec.trafficPolicy",
     "traffic policy must have at least one field (as Istio)"},
    {"empty subset trafficPolicy", DR_SPEC("  subsets:\n  - name: a\n    trafficPolicy: {}\n"), 15,
     20, "DestinationRule default/d: spec.subsets[0].trafficPolicy",
     "traffic policy must have at least one field (as Istio)"},
    {"tunnel with proxyProtocol",
     DR_HEAD "    proxyProtocol: {version: V1}\n    tunnel: {targetHost: p.x, targetPort: 1}\n", 15,
     13, DR_FIELD "tunnel", "tunnel and proxyProtocol must not be set together (as Istio)"},
    {"local origin failures without the split",
     DR_HEAD "    outlierDetection: {consecutiveLocalOriginFailures: 3}\n", 14, 56,
     DR_FIELD "outlierDetection.consecutiveLocalOriginFailures",
     "split external local origin errors is set to false"},
    {"empty connectionPool", DR_HEAD "    connectionPool: {}\n", 14, 21, DR_FIELD "connectionPool",
     "connection pool must have at least one field (as Istio)"},
    {"duplicate cookie attribute",
     DR_HEAD "    loadBalancer:\n      consistentHash:\n"
	     "        httpCookie: {name: c, attributes: [{name: Secure}, {name: Secure}]}\n",
     16, 67, DR_FIELD "loadBalancer.consistentHash.httpCookie.attributes[1].name",
     "duplicate cookie attribute name: Secure"},
    {"minimumRingSize with ringHash",
     DR_HEAD "    loadBalancer:\n      consistentHash:\n        useSourceIp: true\n"
	     "        ringHash: {minimumRingSize: 64}\n        minimumRingSize: 64\n",
     18, 26, DR_FIELD "loadBalancer.consistentHash.minimumRingSize",
     "only one of MinimumRingSize or Maglev/Ringhash can be specified (as Istio)"},
    {"maglev without tableSize",
     DR_HEAD "    loadBalancer:\n      consistentHash:\n        useSourceIp: true\n"
	     "        maglev: {}\n",
     17, 17, DR_FIELD "loadBalancer.consistentHash.maglev", "tableSize must be set for maglev"},
    {"maglev tableSize 0",
     DR_HEAD "    loadBalancer:\n      consistentHash:\n        useSourceIp: true\n"
	     "        maglev: {tableSize: 0}\n",
     17, 29, DR_FIELD "loadBalancer.consistentHash.maglev.tableSize",
     "must be set for maglev (as Istio)"},
    /* ValidateServiceEntry: hosts a non-HTTP, non-TLS port cannot tell
     * apart; CIDR addresses with a DNS resolution. */
    {"two hosts, a port without protocol", SE_HOST("a.b, c.d"), 12, 10,
     "ServiceEntry default/se: spec.hosts",
     "multiple hosts provided with non-HTTP, non-TLS ports (as Istio): port 80 has no protocol"},
    {"two hosts, a TCP port",
     APP "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
	 "metadata: {name: se}\nspec:\n  hosts: [a.b, c.d]\n  resolution: STATIC\n"
	 "  ports: [{number: 443, name: https, protocol: HTTPS}, {number: 5432, name: pg, "
	 "protocol: tcp}]\n",
     12, 10, "ServiceEntry default/se: spec.hosts", "port 5432 is tcp"},
    {"CIDR with DNS",
     APP "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
	 "metadata: {name: se}\nspec:\n  hosts: [a.b]\n  resolution: DNS\n"
	 "  ports: [{number: 80, name: http, protocol: HTTP}]\n"
	 "  addresses: [10.0.0.1, 10.0.0.0/24]\n",
     15, 25, "ServiceEntry default/se: spec.addresses[1]",
     "CIDR addresses are allowed only for NONE/STATIC resolution types (as Istio)"},
    {"gateway name with a dot",
     APP "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: edge.v1}\n"
	 "spec:\n  servers:\n  - port: {number: 8080, name: http, protocol: HTTP}\n"
	 "    hosts: ['*']\n",
     10, 18, "Gateway default/edge.v1: metadata.name",
     "invalid gateway name \"edge.v1\" (as Istio: a DNS-1123 label"},
    /* Where a string goes, a plain number, boolean or null is refused, as
     * the Kubernetes API server refuses (or drops) it there. */
    {"StringMatch of a number",
     VS_HTTP "  - match: [{uri: {exact: 5}}]\n"
	     "    route: [{destination: {host: a.b}}]\n",
     21, 27, VS_FIELD "spec.http[0].match[0].uri.exact", "must be a string, not an integer"},
    {"header value of a boolean",
     VS_HTTP "  - route: [{destination: {host: a.b}}]\n"
	     "    headers: {request: {set: {x-a: yes}}}\n",
     22, 36, VS_FIELD "spec.http[0].headers.request.set.x-a", "must be a string, not a boolean"},
    {"label value of null",
     SE_HEAD "  ports: [{number: 80, name: http}]\n  endpoints:\n"
	     "  - {address: 10.0.0.1, labels: {version: ~}}\n",
     16, 43, "ServiceEntry default/se: spec.endpoints[0].labels.version",
     "must be a string, not null"},
    {"duration of a plain 0", DR_HEAD "    connectionPool: {tcp: {idleTimeout: 0}}\n", 14, 41,
     DR_FIELD "connectionPool.tcp.idleTimeout", "(0 is an integer to Kubernetes)"},
    {"null in a list of strings",
     GW_SERVERS "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [~]\n", 14, 13,
     GW_FIELD "hosts[0]", "must be a string, not null"},
    {"percentage a millionth over 100",
     VS_HTTP "  - route: [{destination: {host: a.b}}]\n"
	     "    fault: {abort: {httpStatus: 503, percentage: {value: 100.000001}}}\n",
     22, 58, VS_FIELD "spec.http[0].fault.abort.percentage.value", "between 0 and 100"},
    {"percentage of a quoted number",
     VS_HTTP "  - route: [{destination: {host: a.b}}]\n"
	     "    fault: {abort: {httpStatus: 503, percentage: {value: \"5\"}}}\n",
     22, 58, VS_FIELD "spec.http[0].fault.abort.percentage.value",
     "must be a number, not a quoted string"},
    {"locality label with an empty part",
     SE_HEAD "  ports: [{number: 80, name: http}]\n  endpoints:\n"
	     "  - {address: 10.0.0.1, labels: {topology.istio.io/locality: eu-west..a}}\n",
     16, 62, "ServiceEntry default/se: spec.endpoints[0].labels.topology.istio.io/locality",
     "the endpoint's locality, \"eu-west//a\""},
    {"total weight 0",
     VS_HEAD "    - {destination: {host: a.b}, weight: 0}\n    - {destination: {host: c.d}}\n", 22,
     5, VS_FIELD "spec.http[0].route", "total destination weight = 0"},
    {"route timeout too large", VS_HEAD "    - destination: {host: a.b}\n    timeout: 2000h\n", 23,
     14, VS_FIELD "spec.http[0].timeout", "too large: at most 1193h2m47.295s"},
    {"access log format", APP "  accessLog: {path: /tmp/a.log, format: xml}\n", 7, 41,
     "Appliance t: spec.accessLog.format", "unknown value \"xml\""},
    {"unknown log operator",
     APP "  accessLog:\n    path: /tmp/a.log\n    format: text\n"
	 "    textFormat: \"%START_TIME% %UPSTREAM_PEER%\"\n",
     10, 17, "Appliance t: spec.accessLog.textFormat",
     "unknown command operator: \"%UPSTREAM_PEER%\" at offset 13"},
    {"log pseudo-header unknown",
     APP "  accessLog: {path: /tmp/a.log, format: text, textFormat: \"%REQ(:SCHEME)%\"}\n", 7, 59,
     "Appliance t: spec.accessLog.textFormat", "unknown pseudo-header"},
    {"unterminated log operator",
     APP "  accessLog: {path: /tmp/a.log, format: text, textFormat: \"[%DURATION\"}\n", 7, 59,
     "Appliance t: spec.accessLog.textFormat",
     "unterminated command operator (no closing '%'): \"%DURATION\" at offset 1"},
    {"jsonFormat with json",
     APP "  accessLog: {path: /tmp/a.log, jsonFormat: {a: \"%DURATION%\"}}\n", 7, 45,
     "Appliance t: spec.accessLog.jsonFormat", "needs format: istio-json"},
    {"jsonFormat operator",
     APP "  accessLog:\n    path: /tmp/a.log\n    format: istio-json\n    jsonFormat:\n"
	 "      a: \"%DURATION%\"\n      b: \"x %UPSTREAM_PEER%\"\n",
     12, 10, "Appliance t: spec.accessLog.jsonFormat.b",
     "unknown command operator: \"%UPSTREAM_PEER%\" at offset 2"},
    {"jsonFormat nested operator",
     APP "  accessLog:\n    path: /tmp/a.log\n    format: istio-json\n    jsonFormat:\n"
	 "      a: \"%DURATION%\"\n      upstream:\n        port: 8080\n"
	 "        host: \"%UPSTREAM_PEER%\"\n",
     14, 15, "Appliance t: spec.accessLog.jsonFormat.upstream.host",
     "unknown command operator: \"%UPSTREAM_PEER%\" at offset 0"},
    {"jsonFormat list item operator",
     APP "  accessLog:\n    path: /tmp/a.log\n    format: istio-json\n    jsonFormat:\n"
	 "      a: {l: [\"%DURATION%\", \"%NOPE%\"]}\n",
     11, 29, "Appliance t: spec.accessLog.jsonFormat.a.l[1]",
     "unknown command operator: \"%NOPE%\" at offset 0"},
    {"jsonFormat infinite number",
     APP "  accessLog:\n    path: /tmp/a.log\n    format: istio-json\n    jsonFormat:\n"
	 "      a: {b: -.inf}\n",
     11, 14, "Appliance t: spec.accessLog.jsonFormat.a.b", "-.inf: a number JSON cannot write"},
    {"jsonFormat number beyond a double",
     APP "  accessLog:\n    path: /tmp/a.log\n    format: istio-json\n    jsonFormat:\n"
	 "      a: [1e999]\n",
     11, 11, "Appliance t: spec.accessLog.jsonFormat.a[0]", "1e999: a number JSON cannot write"},
    {"jsonFormat too deep",
     APP "  accessLog:\n    path: /tmp/a.log\n    format: istio-json\n    jsonFormat:\n"
	 "      a: {a: {a: {a: {a: {a: {a: {a: {a: {a: {a: {a: {a: {a: {a: {a: {a: {a: "
	 "x}}}}}}}}}}}}}}}}}\n",
     11, 74, "Appliance t: spec.accessLog.jsonFormat.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a.a",
     "objects and lists nested deeper than 16"},
    {"nesting too deep",
     APP "  a: "
	 "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[x]]]]]]]]]]]]]]]]]]"
	 "]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]\n",
     7, 68,
     "spec.a[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]"
     "[0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0][0]"
     "[0][0]",
     "nesting too deep: more than 64 levels of mappings and lists"},
    {"jsonFormat empty",
     APP "  accessLog: {path: /tmp/a.log, format: istio-json, jsonFormat: {}}\n", 7, 65,
     "Appliance t: spec.accessLog.jsonFormat", "an empty dictionary"},
    {"textFormat with json", APP "  accessLog: {path: /tmp/a.log, textFormat: \"%DURATION%\"}\n", 7,
     45, "Appliance t: spec.accessLog.textFormat", "needs format: text"},
    {"path and syslog", APP "  accessLog: {path: /tmp/a.log, syslog: {address: /dev/log}}\n", 7, 33,
     "Appliance t: spec.accessLog.syslog", "exclude each other"},
    {"syslog address", APP "  accessLog:\n    syslog: {address: \"loghost:514\"}\n", 8, 23,
     "Appliance t: spec.accessLog.syslog.address", "must be a unix socket path"},
    {"syslog facility", APP "  accessLog:\n    syslog: {facility: local9}\n", 8, 24,
     "Appliance t: spec.accessLog.syslog.facility", "must be a syslog facility"},
    {"syslog tag", APP "  accessLog:\n    syslog: {tag: \"is thmus\"}\n", 8, 19,
     "Appliance t: spec.accessLog.syslog.tag", "must be 1 to 32 letters"},
    {"access log without path", APP "  accessLog: {format: json}\n", 7, 14,
     "Appliance t: spec.accessLog.path", "required field missing"},
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
	 "metadata: {name: gw}\nspec:\n  servers:\n  - port: {number: 70000, name: http-70000, "
	 "protocol: HTTP}\n"
	 "    hosts: [\"*\"]\n",
     13, 20, "Gateway default/gw: spec.servers[0].port.number", "between 1 and 65535"},
    {"tls block",
     APP "---\napiVersion: networking.istio.io/v1\nkind: Gateway\n"
	 "metadata: {name: gw}\nspec:\n  servers:\n  - port: {number: 443, name: http-443, "
	 "protocol: HTTP}\n"
	 "    hosts: [\"*\"]\n    tls:\n      mode: SIMPLE\n",
     16, 7, "Gateway default/gw: spec.servers[0].tls", "applies to HTTPS servers only"},
    {"HTTPS protocol",
     APP "---\napiVersion: networking.istio.io/v1\nkind: Gateway\n"
	 "metadata: {name: gw}\nspec:\n  servers:\n"
	 "  - port: {number: 443, name: https-443, protocol: HTTPS}\n    hosts: [\"*\"]\n",
     13, 5, "Gateway default/gw: spec.servers[0]", "an HTTPS server needs tls"},
    {"unknown field", VS_HEAD "    - destination: {host: a.b}\n    foo: 1\n", 23, 5,
     VS_FIELD "spec.http[0].foo", "unknown field"},

    {"bad retryOn entry",
     VS_HEAD "    - destination: {host: a.b}\n    retries:\n"
	     "      attempts: 3\n      retryOn: 5xx,bogus\n",
     25, 16, VS_FIELD "spec.http[0].retries.retryOn", "unknown retry condition \"bogus\""},
    {"retryOn status out of range",
     VS_HEAD "    - destination: {host: a.b}\n    retries:\n"
	     "      attempts: 3\n      retryOn: 5xx,600\n",
     25, 16, VS_FIELD "spec.http[0].retries.retryOn",
     "\"600\" is not a registered HTTP status code"},
    {"retryOn status Go does not name",
     VS_HEAD "    - destination: {host: a.b}\n    retries:\n"
	     "      attempts: 3\n      retryOn: 5xx,499\n",
     25, 16, VS_FIELD "spec.http[0].retries.retryOn",
     "\"499\" is not a registered HTTP status code"},
    {"retries backoff",
     VS_HEAD "    - destination: {host: a.b}\n    retries:\n"
	     "      attempts: 3\n      backoff: 0s\n",
     25, 16, VS_FIELD "spec.http[0].retries.backoff", "must be at least 1ms"},
    {"rewrite uri and regex",
     VS_HEAD "    - destination: {host: a.b}\n"
	     "    rewrite: {uri: /a, uriRegexRewrite: {match: a, rewrite: b}}\n",
     23, 24, VS_FIELD "spec.http[0].rewrite.uriRegexRewrite",
     "only one of uri, uriRegexRewrite may be set"},
    {"empty rewrite", VS_HEAD "    - destination: {host: a.b}\n    rewrite: {}\n", 23, 14,
     VS_FIELD "spec.http[0].rewrite", "must set uri, uriRegexRewrite or authority"},
    {"rewrite uri not a path", VS_HEAD "    - destination: {host: a.b}\n    rewrite: {uri: v2}\n",
     23, 20, VS_FIELD "spec.http[0].rewrite.uri", "must be a path: starting with \"/\""},
    {"rewrite uri with a fragment",
     VS_HEAD "    - destination: {host: a.b}\n    rewrite: {uri: \"/a#b\"}\n", 23, 20,
     VS_FIELD "spec.http[0].rewrite.uri", "must be a path: starting with \"/\""},
    {"rewrite uri with a space",
     VS_HEAD "    - destination: {host: a.b}\n    rewrite: {uri: \"/a b\"}\n", 23, 20,
     VS_FIELD "spec.http[0].rewrite.uri", "must be a path: starting with \"/\""},
    {"rewrite authority",
     VS_HEAD "    - destination: {host: a.b}\n    rewrite: {authority: \"a b\"}\n", 23, 26,
     VS_FIELD "spec.http[0].rewrite.authority", "must be a host name or address"},
    {"regex rewrite without rewrite",
     VS_HEAD "    - destination: {host: a.b}\n    rewrite:\n"
	     "      uriRegexRewrite: {match: \"^/(a)\"}\n",
     24, 24, VS_FIELD "spec.http[0].rewrite.uriRegexRewrite.rewrite", "required field missing"},
    {"regex rewrite group",
     VS_HEAD "    - destination: {host: a.b}\n    rewrite:\n"
	     "      uriRegexRewrite: {match: \"^/(a)\", rewrite: \"/\\\\2\"}\n",
     24, 50, VS_FIELD "spec.http[0].rewrite.uriRegexRewrite.rewrite",
     "\\2 at offset 1 names a group the pattern does not have (it has 1)"},
    {"regex rewrite escape",
     VS_HEAD "    - destination: {host: a.b}\n    rewrite:\n"
	     "      uriRegexRewrite: {match: \"^/(a)\", rewrite: \"/\\\\d\"}\n",
     24, 50, VS_FIELD "spec.http[0].rewrite.uriRegexRewrite.rewrite", "invalid escape at offset 1"},
    {"regex rewrite look-ahead",
     VS_HEAD "    - destination: {host: a.b}\n    rewrite:\n"
	     "      uriRegexRewrite: {match: \"a(?=b)\", rewrite: /}\n",
     24, 32, VS_FIELD "spec.http[0].rewrite.uriRegexRewrite.match",
     "refused at offset 1: look-ahead"},
    {"remove content-length",
     VS_HEAD "    - destination: {host: a.b}\n"
	     "    headers: {request: {remove: [x-a, Content-Length]}}\n",
     23, 39, VS_FIELD "spec.http[0].headers.request.remove[1]",
     "invalid header \"Content-Length\": a hop-by-hop or framing field"},
    {"set transfer-encoding",
     VS_HEAD "    - destination: {host: a.b}\n"
	     "      headers: {response: {set: {transfer-encoding: identity}}}\n",
     23, 34, VS_FIELD "spec.http[0].route[0].headers.response.set.transfer-encoding",
     "a hop-by-hop or framing field"},
    {"add connection",
     VS_HEAD "    - destination: {host: a.b}\n    headers: {request: {add: {connection: close}}}\n",
     23, 31, VS_FIELD "spec.http[0].headers.request.add.connection",
     "a hop-by-hop or framing field"},
    {"set pseudo-header",
     VS_HEAD "    - destination: {host: a.b}\n    headers: {request: {set: {\":path\": /x}}}\n", 23,
     31, VS_FIELD "spec.http[0].headers.request.set.:path", "header cannot have \":\" prefix"},
    {"remove host",
     VS_HEAD "    - destination: {host: a.b}\n    headers: {request: {remove: [host]}}\n", 23, 34,
     VS_FIELD "spec.http[0].headers.request.remove[0]", "cannot set or remove Host"},
    {"response host",
     VS_HEAD "    - destination: {host: a.b}\n    headers: {response: {set: {host: x}}}\n", 23, 32,
     VS_FIELD "spec.http[0].headers.response.set.host", "cannot set or remove Host"},
    {"two authorities",
     VS_HEAD "    - destination: {host: a.b}\n    rewrite: {authority: a.example}\n"
	     "    headers: {request: {set: {host: b.example}}}\n",
     24, 37, VS_FIELD "spec.http[0].headers.request.set.host",
     "authority header cannot be set multiple times: have \"a.example\""},
    {"header value operator",
     VS_HEAD "    - destination: {host: a.b}\n"
	     "    headers: {request: {set: {x-ip: \"%BYTES_SENT%\"}}}\n",
     23, 37, VS_FIELD "spec.http[0].headers.request.set.x-ip",
     "\"%BYTES_SENT%\" at offset 0 (write %% for a literal %)"},
    {"header value operator with an empty alternative",
     VS_HEAD "    - destination: {host: a.b}\n"
	     "    headers: {request: {set: {x-ip: \"%REQ(x-a?)%\"}}}\n",
     23, 37, VS_FIELD "spec.http[0].headers.request.set.x-ip", "an empty header name"},
    {"header value control",
     VS_HEAD "    - destination: {host: a.b}\n"
	     "    headers: {request: {set: {x-a: \"a\\r\\nb: c\"}}}\n",
     23, 36, VS_FIELD "spec.http[0].headers.request.set.x-a", "must not hold control characters"},
    {"header name",
     VS_HEAD "    - destination: {host: a.b}\n    headers: {response: {add: {\"x a\": b}}}\n", 23,
     32, VS_FIELD "spec.http[0].headers.response.add.x a", "not a field name"},
    {"route and redirect", VS_HEAD "    - destination: {host: a.b}\n    redirect: {uri: /x}\n", 23,
     5, VS_FIELD "spec.http[0].redirect", "only one of route, redirect, directResponse may be set"},
    {"delegate and redirect", VS_HTTP "  - delegate: {name: d}\n    redirect: {uri: /x}\n", 22, 5,
     VS_FIELD "spec.http[0].redirect", "a route that delegates must not redirect"},
    {"rewrite and redirect", VS_HTTP "  - redirect: {uri: /x}\n    rewrite: {uri: /y}\n", 22, 5,
     VS_FIELD "spec.http[0].rewrite", "cannot be combined with redirect or directResponse"},
    {"empty redirect", VS_HTTP "  - redirect: {}\n", 21, 15, VS_FIELD "spec.http[0].redirect",
     "must set uri, prefixRewrite, authority, scheme, port or derivePort"},
    {"redirect code 300", VS_HTTP "  - redirect: {uri: /x, redirectCode: 300}\n", 21, 39,
     VS_FIELD "spec.http[0].redirect.redirectCode", "must be 301, 302, 303, 307 or 308"},
    {"redirect code 200", VS_HTTP "  - redirect: {uri: /x, redirectCode: 200}\n", 21, 39,
     VS_FIELD "spec.http[0].redirect.redirectCode", "between 300 and 399"},
    {"redirect scheme", VS_HTTP "  - redirect: {scheme: ftp}\n", 21, 24,
     VS_FIELD "spec.http[0].redirect.scheme", "unknown value \"ftp\"; expected http or https"},
    {"redirect port and derivePort",
     VS_HTTP "  - redirect: {port: 81, derivePort: FROM_REQUEST_PORT}\n", 21, 26,
     VS_FIELD "spec.http[0].redirect.derivePort", "only one of port, derivePort may be set"},
    {"redirect uri and prefixRewrite", VS_HTTP "  - redirect: {uri: /a, prefixRewrite: /b}\n", 21,
     25, VS_FIELD "spec.http[0].redirect.prefixRewrite", "only one of uri, prefixRewrite"},
    {"prefixRewrite after exact",
     VS_HTTP "  - match: [{uri: {prefix: /a}}, {uri: {exact: /b}}]\n"
	     "    redirect: {prefixRewrite: /c}\n",
     22, 16, VS_FIELD "spec.http[0].redirect.prefixRewrite",
     "needs every uri match to be a prefix match (match[1].uri is not)"},
    {"direct status", VS_HTTP "  - directResponse: {status: 600}\n", 21, 30,
     VS_FIELD "spec.http[0].directResponse.status", "between 200 and 599"},
    {"direct without status", VS_HTTP "  - directResponse: {body: {string: x}}\n", 21, 21,
     VS_FIELD "spec.http[0].directResponse.status", "required field missing"},
    {"direct string and bytes",
     VS_HTTP "  - directResponse: {status: 200, body: {string: a, bytes: YQ==}}\n", 21, 53,
     VS_FIELD "spec.http[0].directResponse.body.bytes", "only one of string, bytes"},
    {"direct bytes", VS_HTTP "  - directResponse: {status: 200, body: {bytes: \"a*b=\"}}\n", 21, 49,
     VS_FIELD "spec.http[0].directResponse.body.bytes", "must be base64"},
    {"route and directResponse",
     VS_HEAD "    - destination: {host: a.b}\n    directResponse: {status: 200}\n", 23, 5,
     VS_FIELD "spec.http[0].directResponse", "only one of route, redirect, directResponse"},
    {"bad route timeout", VS_HEAD "    - destination: {host: a.b}\n    timeout: 1x\n", 23, 14,
     VS_FIELD "spec.http[0].timeout", "must be a duration"},
    {"weight out of range",
     VS_HEAD "    - destination: {host: a.b}\n    - destination: {host: c.d}\n"
	     "      weight: 2147483648\n",
     24, 15, VS_FIELD "spec.http[0].route[1].weight", "between 0 and 2147483647"},
    {"weights past uint32",
     VS_HEAD "    - destination: {host: a.b}\n      weight: 2147483647\n"
	     "    - destination: {host: c.d}\n      weight: 2147483647\n"
	     "    - destination: {host: e.f}\n      weight: 2\n",
     22, 5, VS_FIELD "spec.http[0].route",
     "the sum of the weights, 4294967296, exceeds 4294967295"},
    {"bad regex",
     VS_HEAD "    - destination: {host: a.b}\n    match:\n    - uri:\n"
	     "        regex: \"a(b\"\n",
     25, 16, VS_FIELD "spec.http[0].match[0].uri.regex",
     "regular expression refused at offset 1: "},
    {"regex back-reference",
     VS_HEAD "    - destination: {host: a.b}\n    match:\n    - uri:\n"
	     "        regex: \"/(a)\\\\1\"\n",
     25, 16, VS_FIELD "spec.http[0].match[0].uri.regex", "refused at offset 4: back-reference"},
    {"regex look-ahead",
     VS_HEAD "    - destination: {host: a.b}\n    match:\n    - uri:\n"
	     "        regex: \"/a(?=b)\"\n",
     25, 16, VS_FIELD "spec.http[0].match[0].uri.regex", "refused at offset 2: look-ahead"},
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
    {"NONE resolution",
     APP "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
	 "metadata: {name: se}\nspec:\n  hosts: [a.b]\n"
	 "  ports: [{number: 80, name: http}]\n  resolution: NONE\n",
     14, 15, "ServiceEntry default/se: spec.resolution",
     "set STATIC with endpoint addresses, or DNS"},
    {"DNS_ROUND_ROBIN with two endpoints",
     APP "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
	 "metadata: {name: se}\nspec:\n  hosts: [a.b]\n"
	 "  ports: [{number: 80, name: http}]\n  resolution: DNS_ROUND_ROBIN\n"
	 "  endpoints: [{address: x.y}, {address: z.y}]\n",
     15, 14, "ServiceEntry default/se: spec.endpoints", "at most one endpoint"},
    {"EnvoyFilter",
     APP "---\napiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\n"
	 "metadata: {name: ef}\nspec: {}\n",
     9, 7, "EnvoyFilter default/ef: kind",
     "EnvoyFilter is not implemented yet, and this one applies to the appliance (a policy of the "
     "appliance's namespace without a selector"},
    {"CUSTOM with an unknown provider", APP XA_PROV("") XA_SE XA_AP("p", XA_CUSTOM("other")), 27,
     20, "AuthorizationPolicy istio-system/p: spec.provider.name",
     "no extension provider \"other\""},
    {"CUSTOM policies with two providers",
     APP XA_PROV("  - name: b\n    envoyExtAuthzHttp: {service: az.x, port: 80}\n")
	 XA_SE XA_AP("p", XA_CUSTOM("az")) XA_AP("q", XA_CUSTOM("b")),
     37, 20, "AuthorizationPolicy istio-system/q: spec.provider.name", "one provider"},
    {"CUSTOM without a provider",
     APP XA_PROV("") XA_SE XA_AP("p", "  action: CUSTOM\n  rules: [{}]\n"), 26, 11,
     "AuthorizationPolicy istio-system/p: spec.action", "needs provider.name"},
    {"CUSTOM without rules",
     APP XA_PROV("") XA_SE XA_AP("p", "  action: CUSTOM\n  provider: {name: az}\n"), 26, 11,
     "AuthorizationPolicy istio-system/p: spec.action", "without rules never applies"},
    {"provider beside ALLOW",
     APP XA_PROV("") XA_SE XA_AP("p", "  provider: {name: az}\n  rules: [{}]\n"), 26, 13,
     "AuthorizationPolicy istio-system/p: spec.provider", "must not be set with a non-CUSTOM"},
    {"CUSTOM with requestPrincipals",
     APP XA_PROV("")
	 XA_SE XA_AP("p", "  action: CUSTOM\n  provider: {name: az}\n"
			  "  rules: [{from: [{source: {requestPrincipals: [\"*\"]}}]}]\n"),
     28, 48, "AuthorizationPolicy istio-system/p: spec.rules[0].from[0].source.requestPrincipals",
     "not supported with CUSTOM action"},
    {"provider name in upper case",
     APP "  extensionProviders:\n  - name: Az\n    envoyExtAuthzHttp: {service: az.x, port: "
	 "80}\n" XA_SE,
     8, 11, "Appliance t: spec.extensionProviders[0].name", "upper-case"},
    {"provider names twice",
     APP XA_PROV("  - name: az\n    envoyExtAuthzHttp: {service: az.x, port: 80}\n") XA_SE, 12, 11,
     "Appliance t: spec.extensionProviders[1].name", "must be unique"},
    {"provider statusOnError", APP XA_PROV("      statusOnError: abc\n") XA_SE, 12, 22,
     "Appliance t: spec.extensionProviders[0].envoyExtAuthzHttp.statusOnError",
     "not a status code"},
    {"provider statusOnError unknown", APP XA_PROV("      statusOnError: \"299\"\n") XA_SE, 12, 22,
     "Appliance t: spec.extensionProviders[0].envoyExtAuthzHttp.statusOnError",
     "unsupported status 299"},
    {"provider pathPrefix", APP XA_PROV("      pathPrefix: check\n") XA_SE, 12, 19,
     "Appliance t: spec.extensionProviders[0].envoyExtAuthzHttp.pathPrefix", "must begin with '/'"},
    {"provider lone wildcard", APP XA_PROV("      headersToUpstreamOnAllow: [a, \"*\"]\n") XA_SE,
     12, 37,
     "Appliance t: spec.extensionProviders[0].envoyExtAuthzHttp.headersToUpstreamOnAllow[1]",
     "a single wildcard"},
    {"provider additional field with an operator",
     APP XA_PROV("      includeAdditionalHeadersInCheck: {x-a: \"%START_TIME%\"}\n") XA_SE, 12, 46,
     "Appliance t: "
     "spec.extensionProviders[0].envoyExtAuthzHttp.includeAdditionalHeadersInCheck.x-a",
     "not implemented yet"},
    {"provider body without its bound", APP XA_PROV("      includeRequestBodyInCheck: {}\n") XA_SE,
     12, 34,
     "Appliance t: "
     "spec.extensionProviders[0].envoyExtAuthzHttp.includeRequestBodyInCheck.maxRequestBytes",
     "required field missing"},
    {"provider body with an unknown field",
     APP XA_PROV("      includeRequestBodyInCheck: {maxRequestBytes: 5, packAsByte: true}\n") XA_SE,
     12, 55,
     "Appliance t: "
     "spec.extensionProviders[0].envoyExtAuthzHttp.includeRequestBodyInCheck.packAsByte",
     "did you mean 'packAsBytes'"},
    {"gRPC provider on an HTTP port",
     APP
     "  extensionProviders:\n  - name: g\n    envoyExtAuthzGrpc: {service: az.x, port: 80}\n" XA_SE,
     9, 46, "Appliance t: spec.extensionProviders[0].envoyExtAuthzGrpc.port",
     "not of protocol GRPC or HTTP2"},
    {"gRPC provider with a body bound of 0",
     APP "  extensionProviders:\n  - name: g\n    envoyExtAuthzGrpc: {service: az.x, port: 80, "
	 "includeRequestBodyInCheck: {maxRequestBytes: 0}}\n" XA_SE,
     9, 95,
     "Appliance t: "
     "spec.extensionProviders[0].envoyExtAuthzGrpc.includeRequestBodyInCheck.maxRequestBytes",
     "must be an integer between 1 and 4294967295"},
    {"provider of two kinds",
     APP "  extensionProviders:\n  - name: g\n    envoyExtAuthzGrpc: {service: az.x, port: 80}\n"
	 "    envoyExtAuthzHttp: {service: az.x, port: 80}\n" XA_SE,
     9, 24, "Appliance t: spec.extensionProviders[0].envoyExtAuthzGrpc", "not both"},
    {"provider without a service entry",
     APP
     "  extensionProviders:\n  - name: g\n    envoyExtAuthzHttp: {service: ns/no.x, port: 80}\n",
     9, 34, "Appliance t: spec.extensionProviders[0].envoyExtAuthzHttp.service",
     "no ServiceEntry for host no.x"},
    {"provider port",
     APP
     "  extensionProviders:\n  - name: g\n    envoyExtAuthzHttp: {service: az.x, port: 81}\n" XA_SE,
     9, 46, "Appliance t: spec.extensionProviders[0].envoyExtAuthzHttp.port",
     "port 81 is not a port of"},
    {"AuthorizationPolicy requestPrincipals",
     APP "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
	 "metadata: {name: p, namespace: istio-system}\nspec:\n"
	 "  rules:\n  - from: [{source: {requestPrincipals: [\"x/y\", \"\"]}}]\n",
     13, 49,
     "AuthorizationPolicy istio-system/p: spec.rules[0].from[0].source.requestPrincipals[1]",
     "must not be empty"},
    {"AuthorizationPolicy CIDR",
     APP "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
	 "metadata: {name: p, namespace: istio-system}\nspec:\n"
	 "  action: DENY\n  rules:\n  - from: [{source: {ipBlocks: [10.0.0.0/8, 10.0.0.0/33]}}]\n",
     14, 45, "AuthorizationPolicy istio-system/p: spec.rules[0].from[0].source.ipBlocks[1]",
     "not an IP address or a CIDR block"},
    {"AuthorizationPolicy unknown attribute",
     APP "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
	 "metadata: {name: p, namespace: istio-system}\nspec:\n"
	 "  rules:\n  - when: [{key: source.ipp, values: [a]}]\n",
     13, 18, "AuthorizationPolicy istio-system/p: spec.rules[0].when[0].key",
     "unknown attribute \"source.ipp\""},
    {"AuthorizationPolicy JWT claim without a name",
     APP "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
	 "metadata: {name: p, namespace: istio-system}\nspec:\n"
	 "  rules:\n  - when: [{key: \"request.auth.claims[]\", values: [a]}]\n",
     13, 18, "AuthorizationPolicy istio-system/p: spec.rules[0].when[0].key",
     "expected request.auth.claims[<name>]"},
    {"AuthorizationPolicy DENY without rules",
     APP "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
	 "metadata: {name: p, namespace: istio-system}\nspec:\n"
	 "  action: DENY\n",
     12, 11, "AuthorizationPolicy istio-system/p: spec.action", "a DENY policy without rules"},
    {"AuthorizationPolicy path template",
     APP "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
	 "metadata: {name: p, namespace: istio-system}\nspec:\n"
	 "  rules:\n  - to: [{operation: {paths: [\"/a/{**}/{*}\"]}}]\n",
     13, 31, "AuthorizationPolicy istio-system/p: spec.rules[0].to[0].operation.paths[0]",
     "{**} must be the template's last operator"},
    {"AuthorizationPolicy serviceAccounts beside namespaces",
     APP "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
	 "metadata: {name: p, namespace: istio-system}\nspec:\n"
	 "  rules:\n  - from: [{source: {namespaces: [a], serviceAccounts: [b]}}]\n",
     13, 21, "AuthorizationPolicy istio-system/p: spec.rules[0].from[0].source",
     "serviceAccounts cannot be set with namespaces or principals"},
    {"AuthorizationPolicy empty to",
     APP "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
	 "metadata: {name: p, namespace: istio-system}\nspec:\n"
	 "  rules:\n  - to: []\n",
     13, 9, "AuthorizationPolicy istio-system/p: spec.rules[0].to", "must not be empty"},
    {"AuthorizationPolicy port",
     APP "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
	 "metadata: {name: p, namespace: istio-system}\nspec:\n"
	 "  rules:\n  - to: [{operation: {ports: [\"70000\"]}}]\n",
     13, 31, "AuthorizationPolicy istio-system/p: spec.rules[0].to[0].operation.ports[0]",
     "not a port"},
    {"WasmPlugin that selects the appliance",
     APP "  labels: {istio: ingressgateway}\n---\napiVersion: extensions.istio.io/v1alpha1\n"
	 "kind: WasmPlugin\nmetadata: {name: w, namespace: istio-system}\n"
	 "spec:\n  selector: {matchLabels: {istio: ingressgateway}}\n",
     10, 7, "WasmPlugin istio-system/w: kind", "its selector selects"},
#define RA(rule)                                                                                   \
	APP "---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"                 \
	    "metadata: {name: jwt, namespace: istio-system}\nspec:\n  jwtRules:\n" rule
    {"RequestAuthentication jwksUri scheme", RA("  - jwksUri: ftp://x/k\n    jwks: " EC_JWKS "\n"),
     13, 14, "RequestAuthentication istio-system/jwt: spec.jwtRules[0].jwksUri",
     "URI scheme is not supported"},
    {"RequestAuthentication neither issuer nor jwksUri", RA("  - jwks: " EC_JWKS "\n"), 13, 5,
     "RequestAuthentication istio-system/jwt: spec.jwtRules[0]",
     "issuer or jwksUri must be non-empty string"},
    {"RequestAuthentication bad jwks", RA("  - issuer: a\n    jwks: '{\"keys\": 3}'\n"), 14, 11,
     "RequestAuthentication istio-system/jwt: spec.jwtRules[0].jwks", "jwks parse error"},
    {"RequestAuthentication empty audience",
     RA("  - issuer: a\n    jwks: " EC_JWKS "\n    audiences: [\"\"]\n"), 15, 17,
     "RequestAuthentication istio-system/jwt: spec.jwtRules[0].audiences[0]", "empty"},
    {"RequestAuthentication header without a name",
     RA("  - issuer: a\n    jwks: " EC_JWKS "\n    fromHeaders: [{prefix: x}]\n"), 15, 19,
     "RequestAuthentication istio-system/jwt: spec.jwtRules[0].fromHeaders[0].name",
     "required field"},
    {"RequestAuthentication claim header name",
     RA("  - issuer: a\n    jwks: " EC_JWKS
	"\n    outputClaimToHeaders: [{header: \"x y\", claim: sub}]\n"),
     15, 37,
     "RequestAuthentication istio-system/jwt: spec.jwtRules[0].outputClaimToHeaders[0].header",
     "not a field name"},
    {"RequestAuthentication unknown field",
     RA("  - issuer: a\n    jwks: " EC_JWKS "\n    iss: b\n"), 15, 5,
     "RequestAuthentication istio-system/jwt: spec.jwtRules[0].iss", "unknown field"},
#undef RA
#define VSM(match)                                                                                 \
	APP "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\n" \
	    "spec:\n  hosts: [\"*\"]\n  http:\n  - match: [" match "]\n"                           \
	    "    route: [{destination: {host: a}}]\n"
    {"VirtualService header name", VSM("{headers: {\"x y\": {exact: a}}}"), 14, 24,
     "VirtualService default/v: spec.http[0].match[0].headers.x y", "is not a header name"},
    {"VirtualService empty claim name",
     VSM("{withoutHeaders: {\"@request.auth.claims[a][]\": {exact: a}}}"), 14, 31,
     "VirtualService default/v: spec.http[0].match[0].withoutHeaders.@request.auth.claims[a][]",
     "must not be empty"},
#undef VSM
    {"unknown kind",
     APP "---\napiVersion: networking.istio.io/v1\nkind: Sidekick\n"
	 "metadata: {name: sk}\nspec: {}\n",
     9, 7, "kind", "unknown kind \"Sidekick\""},
    {"dns server", APP "  dns:\n    servers: [\"127.0.0.1:5353\", nope]\n", 8, 33,
     "Appliance t: spec.dns.servers[1]", "must be ADDRESS or ADDRESS:PORT"},
    /* An IPv6 address with a port is bracketed: unbracketed, the port is no
     * port (::1:63161 is no address; ::1:6316 would be one). */
    {"dns server unbracketed", APP "  dns:\n    servers: [\"::1:63161\"]\n", 8, 15,
     "Appliance t: spec.dns.servers[0]", "(\"[IPv6]:PORT\" with a port)"},
    {"admin unbracketed", APP "  admin: {address: \"::1:63171\"}\n", 7, 20,
     "Appliance t: spec.admin.address", "or \"[IPv6]:port\""},
    /* 8 servers at most (docs/configuration.md): the ninth is refused. */
    {"dns nine servers",
     APP "  dns:\n    servers: [127.0.0.1, 127.0.0.2, 127.0.0.3, 127.0.0.4, 127.0.0.5, "
	 "127.0.0.6, 127.0.0.7, 127.0.0.8, 127.0.0.9]\n",
     8, 5, "Appliance t: spec.dns.servers", "at most 8 servers"},
    /* Thresholds are 1..1000 (docs/configuration.md): 0 is refused, not
     * taken as 1. */
    {"health check unhealthyThreshold 0",
     APP "  healthChecks:\n  - host: a.b\n    unhealthyThreshold: 0\n", 9, 25,
     "Appliance t: spec.healthChecks[0].unhealthyThreshold", "between 1 and 1000"},
    {"health check healthyThreshold 0",
     APP "  healthChecks:\n  - host: a.b\n    healthyThreshold: 0\n", 9, 23,
     "Appliance t: spec.healthChecks[0].healthyThreshold", "between 1 and 1000"},
    {"dns refresh bounds", APP "  dns:\n    minRefresh: 10s\n    maxRefresh: 5s\n", 9, 5,
     "Appliance t: spec.dns.maxRefresh", "must not be less than minRefresh"},
    /* The default maxRefresh is below it: the field written is named, with
     * its position. */
    {"dns refresh over the default", APP "  dns:\n    minRefresh: 400s\n", 8, 5,
     "Appliance t: spec.dns.minRefresh", "300s unless set: set maxRefresh too"},
    {"dns timeout", APP "  dns:\n    timeout: 2m\n", 8, 5, "Appliance t: spec.dns.timeout",
     "at most 60s"},
    {"dns unknown key", APP "  dns:\n    ttl: 2s\n", 8, 5, "Appliance t: spec.dns.ttl", ""},
    {"DNS endpoint wildcard",
     APP "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
	 "metadata: {name: se}\nspec:\n  hosts: [a.b]\n"
	 "  ports: [{number: 80, name: http}]\n  resolution: DNS\n"
	 "  endpoints:\n  - address: \"*.y\"\n",
     16, 14, "ServiceEntry default/se: spec.endpoints[0].address",
     "\"*.y\" is not an IPv4 or IPv6 address, nor a valid host name (FQDN): invalid label"},
    {"DYNAMIC_DNS resolution",
     APP "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
	 "metadata: {name: se}\nspec:\n  hosts: [a.b]\n"
	 "  ports: [{number: 80, name: http}]\n  resolution: DYNAMIC_DNS\n",
     14, 15, "ServiceEntry default/se: spec.resolution", "DYNAMIC_DNS is not implemented yet"},
    {"gateway insecureSkipVerify on SIMPLE",
     GW_SERVERS "  - port: {number: 443, name: https-443-2, protocol: HTTPS}\n    hosts: [a.test]\n"
		"    tls: {mode: SIMPLE, insecureSkipVerify: true}\n",
     15, 45, GW_FIELD "tls.insecureSkipVerify", "needs mode MUTUAL or OPTIONAL_MUTUAL"},
    {"passthrough lb",
     APP "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
	 "metadata: {name: d}\nspec:\n  host: a.b\n  trafficPolicy:\n"
	 "    loadBalancer: {simple: PASSTHROUGH}\n",
     14, 28, "DestinationRule default/d: spec.trafficPolicy.loadBalancer.simple",
     "PASSTHROUGH is not implemented yet"},
    {"DestinationRule tls", DR_HEAD "    tls: {mode: MUTUAL}\n", 14, 10, DR_FIELD "tls",
     "MUTUAL needs clientCertificate"},
    {"distribute with failover",
     DR_HEAD "    loadBalancer:\n      localityLbSetting:\n"
	     "        distribute: [{from: \"a/*\", to: {\"a/b\": 100}}]\n"
	     "        failover: [{from: a, to: b}]\n",
     17, 9, DR_FIELD "loadBalancer.localityLbSetting.failover",
     "distribute cannot be combined with failover"},
    {"distribute with failoverPriority",
     DR_HEAD "    loadBalancer:\n      localityLbSetting:\n"
	     "        failoverPriority: [x]\n"
	     "        distribute: [{from: \"a/*\", to: {\"a/b\": 100}}]\n",
     16, 9, DR_FIELD "loadBalancer.localityLbSetting.failoverPriority",
     "distribute cannot be combined"},
    {"distribute weights",
     DR_HEAD "    loadBalancer:\n      localityLbSetting:\n        distribute:\n"
	     "        - from: a/b\n          to: {\"a/b\": 60, \"c/*\": 30}\n",
     18, 15, DR_FIELD "loadBalancer.localityLbSetting.distribute[0].to",
     "the weights must sum to 100 (they sum to 90)"},
    {"distribute pattern",
     DR_HEAD "    loadBalancer:\n      localityLbSetting:\n"
	     "        distribute: [{from: \"x*\", to: {\"a/b\": 100}}]\n",
     16, 29, DR_FIELD "loadBalancer.localityLbSetting.distribute[0].from",
     "\"x*\" is not a locality pattern"},
    {"failover to itself",
     DR_HEAD "    loadBalancer:\n      localityLbSetting:\n"
	     "        failover: [{from: a, to: a}]\n",
     16, 30, DR_FIELD "loadBalancer.localityLbSetting.failover[0].to",
     "must be a region other than from"},
    {"failover zone",
     DR_HEAD "    loadBalancer:\n      localityLbSetting:\n"
	     "        failover: [{from: a/b, to: c}]\n",
     16, 21, DR_FIELD "loadBalancer.localityLbSetting.failover[0].from", "must be a region"},
    {"topology label with failover",
     DR_HEAD "    loadBalancer:\n      localityLbSetting:\n"
	     "        failover: [{from: a, to: b}]\n"
	     "        failoverPriority: [topology.kubernetes.io/zone]\n",
     17, 28, DR_FIELD "loadBalancer.localityLbSetting.failoverPriority[0]",
     "cannot be combined with failover"},
    {"simple with consistentHash",
     DR_HEAD "    loadBalancer:\n      simple: RANDOM\n"
	     "      consistentHash: {useSourceIp: true}\n",
     16, 7, DR_FIELD "loadBalancer.consistentHash", "only one of simple, consistentHash"},
    {"two hash keys",
     DR_HEAD "    loadBalancer:\n      consistentHash:\n        httpHeaderName: x\n"
	     "        useSourceIp: true\n",
     17, 9, DR_FIELD "loadBalancer.consistentHash.useSourceIp", "only one of httpHeaderName"},
    {"no hash key",
     DR_HEAD "    loadBalancer:\n      consistentHash: {ringHash: {minimumRingSize: 10}}\n", 15, 23,
     DR_FIELD "loadBalancer.consistentHash", "one of httpHeaderName"},
    {"maglev size not prime",
     DR_HEAD "    loadBalancer:\n      consistentHash:\n        useSourceIp: true\n"
	     "        maglev: {tableSize: 1000}\n",
     17, 29, DR_FIELD "loadBalancer.consistentHash.maglev.tableSize",
     "must be a prime number below 1048577"},
    {"maglev size too large",
     DR_HEAD "    loadBalancer:\n      consistentHash:\n        useSourceIp: true\n"
	     "        maglev: {tableSize: 1048583}\n",
     17, 29, DR_FIELD "loadBalancer.consistentHash.maglev.tableSize", "below 1048577"},
    {"ring too large",
     DR_HEAD "    loadBalancer:\n      consistentHash:\n        useSourceIp: true\n"
	     "        ringHash: {minimumRingSize: 2097152}\n",
     17, 37, DR_FIELD "loadBalancer.consistentHash.ringHash.minimumRingSize",
     "must be an integer between 0 and 1048576"},
    {"warmup minimumPercent",
     DR_HEAD "    loadBalancer: {warmup: {duration: 10s, minimumPercent: 150}}\n", 14, 60,
     DR_FIELD "loadBalancer.warmup.minimumPercent", "must be a number of at least 0"},
    {"zone-aware and locality",
     DR_HEAD "    loadBalancer:\n      localityLbSetting: {enabled: true}\n"
	     "      zoneAwareLbSetting: {enabled: true}\n",
     16, 27, DR_FIELD "loadBalancer.zoneAwareLbSetting",
     "only one of localityLbSetting and zoneAwareLbSetting can be set"},
    {"zone-aware topology label",
     DR_HEAD "    loadBalancer:\n      zoneAwareLbSetting:\n"
	     "        failoverPriority: [topology.kubernetes.io/zone]\n",
     16, 28, DR_FIELD "loadBalancer.zoneAwareLbSetting.failoverPriority[0]",
     "not allowed in zoneAwareLbSetting"},
    {"zone-aware failover zone",
     DR_HEAD "    loadBalancer:\n      zoneAwareLbSetting:\n"
	     "        failover: [{from: r1/z1, to: r2}]\n",
     16, 21, DR_FIELD "loadBalancer.zoneAwareLbSetting.failover[0].from", "must be a region"},
    {"tunnel protocol", DR_HEAD "    tunnel: {protocol: SOCKS, targetHost: p.x, targetPort: 1}\n",
     14, 24, DR_FIELD "tunnel.protocol", "CONNECT"},
    {"tunnel host", DR_HEAD "    tunnel: {targetHost: \"*.x\", targetPort: 1}\n", 14, 26,
     DR_FIELD "tunnel.targetHost", "must be a host name (FQDN) or an IP address, not \"*.x\""},
    {"tunnel port", DR_HEAD "    tunnel: {targetHost: p.x, targetPort: 0}\n", 14, 43,
     DR_FIELD "tunnel.targetPort", "between 1 and 65535"},
    {"tunnel no port", DR_HEAD "    tunnel: {targetHost: p.x}\n", 14, 13,
     DR_FIELD "tunnel.targetPort", "required"},
    {"retryBudget interval", DR_HEAD "    retryBudget: {percent: 25, budgetInterval: 10s}\n", 14,
     48, DR_FIELD "retryBudget.budgetInterval", "not implemented yet"},
    {"outlier error code",
     DR_HEAD "    outlierDetection: {outlierDetectionHttpErrorCodes: [429, 99]}\n", 14, 62,
     DR_FIELD "outlierDetection.outlierDetectionHttpErrorCodes[1]",
     "must be an HTTP status between 100 and 599"},
    {"cookie attribute name",
     DR_HEAD "    loadBalancer:\n      consistentHash:\n"
	     "        httpCookie: {name: s, ttl: 1s, attributes: [{name: \"a b\"}]}\n",
     16, 60, DR_FIELD "loadBalancer.consistentHash.httpCookie.attributes[0].name",
     "\"a b\" is not a cookie attribute name"},
    {"cookie attribute value",
     DR_HEAD
     "    loadBalancer:\n      consistentHash:\n"
     "        httpCookie: {name: s, ttl: 1s, attributes: [{name: a, value: \"x; Domain=evil\"}]}\n",
     16, 70, DR_FIELD "loadBalancer.consistentHash.httpCookie.attributes[0].value",
     "cannot hold ';'"},
    {"cookie name",
     DR_HEAD "    loadBalancer: {consistentHash: {httpCookie: {name: \"a=b\", ttl: 1s}}}\n", 14, 56,
     DR_FIELD "loadBalancer.consistentHash.httpCookie.name", "is not a cookie name"},
    {"retryBudget percent", DR_HEAD "    retryBudget: {percent: 101}\n", 14, 28,
     DR_FIELD "retryBudget.percent", "at most 100"},
    {"warmup without duration", DR_HEAD "    loadBalancer: {warmup: {aggression: 2}}\n", 14, 28,
     DR_FIELD "loadBalancer.warmup", "duration is required"},
    {"tcpKeepalive time", DR_HEAD "    connectionPool: {tcp: {tcpKeepalive: {time: 500ms}}}\n", 14,
     49, DR_FIELD "connectionPool.tcp.tcpKeepalive.time", "must be between 1s and 32767s"},
    {"tcpKeepalive probes", DR_HEAD "    connectionPool: {tcp: {tcpKeepalive: {probes: 128}}}\n",
     14, 51, DR_FIELD "connectionPool.tcp.tcpKeepalive.probes", "between 0 and 127"},
    {"maxConnectionDuration",
     DR_HEAD "    connectionPool:\n      tcp: {maxConnectionDuration: 0s}\n", 15, 36,
     DR_FIELD "connectionPool.tcp.maxConnectionDuration", "must be at least 1ms"},
    {"tcp idleTimeout", DR_HEAD "    connectionPool:\n      tcp: {idleTimeout: 1}\n", 15, 26,
     DR_FIELD "connectionPool.tcp.idleTimeout", "must be a duration"},
    {"minHealthPercent over 100", DR_HEAD "    outlierDetection:\n      minHealthPercent: 101\n",
     15, 25, DR_FIELD "outlierDetection.minHealthPercent", "between 0 and 100"},
    {"port-level tls",
     DR_HEAD "    portLevelSettings:\n    - port: {number: 80}\n      tls: {mode: PASSTHROUGH}\n",
     16, 19, DR_FIELD "portLevelSettings[0].tls.mode", "unknown value"},
    {"port-level without port", DR_HEAD "    portLevelSettings:\n    - loadBalancer: {}\n", 15, 7,
     DR_FIELD "portLevelSettings[0].port", "required field missing"},
    {"control socket too long",
     APP "  controlSocket: "
	 "/run/"
	 "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"
	 "xxxxxxxxxxxxxxxxxxxxx.sock\n",
     7, 18, "Appliance t: spec.controlSocket",
     "a unix socket path holds at most 107 bytes; this one has 120"},
    {"admin on a server's address", APP "  admin: {address: \"0.0.0.0:8080\"}\n" GW_PORT_8080, 7,
     20, "Appliance t: spec.admin.address",
     "0.0.0.0:8080 cannot be bound beside 0.0.0.0:8080 (the Appliance's listenAddress) of "
     "Gateway default/gw spec.servers[0]: the same address and port"},
    {"admin under a server's wildcard", APP "  admin: {address: \"127.0.0.1:8080\"}\n" GW_PORT_8080,
     7, 20, "Appliance t: spec.admin.address",
     "127.0.0.1:8080 cannot be bound beside 0.0.0.0:8080 (the Appliance's listenAddress) of "
     "Gateway default/gw spec.servers[0]: a wildcard address takes the port"},
    {"wildcard bind beside a specific one",
     GW_SERVERS "  - port: {number: 8080, name: http-8080-2, protocol: HTTP}\n    bind: "
		"127.0.0.1\n    hosts: [a.test]\n"
		"  - port: {number: 8080, name: http-8080-3, protocol: HTTP}\n    bind: 0.0.0.0\n  "
		"  hosts: [b.test]\n",
     17, 11, "Gateway default/gw: spec.servers[1].bind",
     "0.0.0.0:8080 cannot be bound beside 127.0.0.1:8080 of Gateway default/gw spec.servers[0]: "
     "a wildcard address takes the port on every address of its family"},
    {"IPv4-mapped bind beside its IPv4 address",
     GW_SERVERS
     "  - port: {number: 8080, name: http-8080-4, protocol: HTTP}\n    bind: 127.0.0.1\n    hosts: "
     "[a.test]\n"
     "  - port: {number: 8080, name: http-8080-5, protocol: HTTP}\n    bind: \"::ffff:127.0.0.1\"\n"
     "    hosts: [b.test]\n",
     17, 11, "Gateway default/gw: spec.servers[1].bind",
     "[::ffff:127.0.0.1]:8080 cannot be bound beside 127.0.0.1:8080 of Gateway default/gw "
     "spec.servers[0]: an IPv4-mapped IPv6 address takes the port of its IPv4 address"},
    {"specific bind beside the listenAddress",
     GW_SERVERS "  - port: {number: 8080, name: http-8080-6, protocol: HTTP}\n    hosts: [a.test]\n"
		"  - port: {number: 8080, name: http-8080-7, protocol: HTTP}\n    bind: "
		"127.0.0.1\n    hosts: [b.test]\n",
     16, 11, "Gateway default/gw: spec.servers[1].bind",
     "127.0.0.1:8080 cannot be bound beside 0.0.0.0:8080 (the Appliance's listenAddress) of "
     "Gateway default/gw spec.servers[0]"},
    {"specific bind under an IPv6 wildcard",
     GW_SERVERS "  - port: {number: 8080, name: http-8080-8, protocol: HTTP}\n    bind: \"::\"\n   "
		" hosts: [a.test]\n"
		"  - port: {number: 8080, name: http-8080-9, protocol: HTTP}\n    bind: \"::1\"\n  "
		"  hosts: [b.test]\n",
     17, 11, "Gateway default/gw: spec.servers[1].bind",
     "[::1]:8080 cannot be bound beside [::]:8080 of Gateway default/gw spec.servers[0]"},
    {"gateway protocol UDP",
     GW_SERVERS "  - port: {number: 80, name: udp-80, protocol: UDP}\n    hosts: [a.test]\n", 13,
     48, GW_FIELD "port.protocol", "UDP is not implemented yet"},
    {"gateway protocol tls",
     GW_SERVERS "  - port: {number: 80, name: tls-80, protocol: tls}\n    hosts: [a.test]\n", 13, 5,
     "Gateway default/gw: spec.servers[0]", "a TLS server needs tls"},
    {"GRPC-WEB server with tls",
     GW_SERVERS
     "  - port: {number: 80, name: grpc-web-80, protocol: GRPC-WEB}\n    hosts: [a.test]\n"
     "    tls: {mode: SIMPLE}\n",
     15, 11, GW_FIELD "tls", "mode: applies to HTTPS servers only (this one is GRPC-WEB)"},
    {"gateway protocol unknown",
     GW_SERVERS "  - port: {number: 80, name: bogus-80, protocol: BOGUS}\n    hosts: [a.test]\n",
     13, 50, GW_FIELD "port.protocol",
     "unknown value \"BOGUS\"; expected HTTP, HTTPS, HTTP2, GRPC, GRPC-WEB, TCP, TLS, MONGO, REDIS "
     "or MYSQL"},
    {"GRPC server with tls",
     GW_SERVERS
     "  - port: {number: 80, name: grpc-80, protocol: GRPC}\n    hosts: [a.test]\n    tls: "
     "{mode: SIMPLE}\n",
     15, 11, GW_FIELD "tls", "mode: applies to HTTPS servers only (this one is GRPC)"},
    {"serviceAccount",
     SE_HEAD "  ports: [{number: 80, name: http}]\n"
	     "  endpoints: [{address: 127.0.0.1, serviceAccount: Bad_Name}]\n",
     15, 52, "ServiceEntry default/se: spec.endpoints[0].serviceAccount",
     "\"Bad_Name\" is not a service account name"},
    {"trustDomain", APP "  trustDomain: \"spiffe://x\"\n", 7, 16, "Appliance t: spec.trustDomain",
     "\"spiffe://x\" is not a trust domain"},
    {"proxyHeaders server value", APP "  proxyHeaders: {server: {value: \" x\"}}\n", 7, 34,
     "Appliance t: spec.proxyHeaders.server.value", "must be a field value"},
    {"proxyHeaders attemptCount", APP "  proxyHeaders: {attemptCount: {disabled: 3}}\n", 7, 43,
     "Appliance t: spec.proxyHeaders.attemptCount.disabled", "must be true or false"},
    {"proxyHeaders attemptCount key", APP "  proxyHeaders: {attemptCount: {enabled: true}}\n", 7,
     33, "Appliance t: spec.proxyHeaders.attemptCount.enabled", "unknown field"},
    {"logging level", APP "  logging: {level: verbose}\n", 7, 20, "Appliance t: spec.logging.level",
     "unknown value \"verbose\""},
    {"proxyHeaders metadataExchangeHeaders",
     APP "  proxyHeaders: {metadataExchangeHeaders: {mode: ALWAYS}}\n", 7, 50,
     "Appliance t: spec.proxyHeaders.metadataExchangeHeaders.mode", "IN_MESH"},
    {"proxyHeaders forwardedClientCert", APP "  proxyHeaders: {forwardedClientCert: ALL}\n", 7, 39,
     "Appliance t: spec.proxyHeaders.forwardedClientCert", "SANITIZE_SET"},
    {"trustDomainAliases", APP "  trustDomainAliases: [ok.example, \"a b\"]\n", 7, 36,
     "Appliance t: spec.trustDomainAliases[1]", "\"a b\" is not a trust domain"},
    {"service port UDP", SE_HEAD "  ports: [{number: 80, name: http, protocol: UDP}]\n", 14, 46,
     "ServiceEntry default/se: spec.ports[0].protocol", "UDP is not implemented yet"},
    {"service port HTTP_PROXY",
     SE_HEAD "  ports: [{number: 80, name: http, protocol: HTTP_PROXY}]\n", 14, 46,
     "ServiceEntry default/se: spec.ports[0].protocol", "HTTP_PROXY is not implemented yet"},
    {"service port http_proxy",
     SE_HEAD "  ports: [{number: 80, name: http, protocol: http_proxy}]\n", 14, 46,
     "ServiceEntry default/se: spec.ports[0].protocol", "http_proxy is not implemented yet"},
    {"service port unknown", SE_HEAD "  ports: [{number: 80, name: http, protocol: BOGUS}]\n", 14,
     46, "ServiceEntry default/se: spec.ports[0].protocol",
     "unknown value \"BOGUS\"; expected HTTP, HTTPS, HTTP2, GRPC, GRPC-WEB, TCP, TLS, MONGO, "
     "REDIS or MYSQL"},
    {"h2UpgradePolicy", DR_HEAD "    connectionPool:\n      http: {h2UpgradePolicy: SOMETIMES}\n",
     15, 31, DR_FIELD "connectionPool.http.h2UpgradePolicy",
     "unknown value \"SOMETIMES\"; expected DEFAULT, DO_NOT_UPGRADE or UPGRADE"},
    {"UPGRADE with useClientProtocol",
     DR_HEAD "    connectionPool:\n      http:\n        h2UpgradePolicy: UPGRADE\n"
	     "        useClientProtocol: true\n",
     17, 28, DR_FIELD "connectionPool.http.useClientProtocol",
     "must not be true when h2UpgradePolicy is UPGRADE"},
    {"http2KeepAlive without timeout",
     DR_HEAD "    connectionPool:\n      http:\n        http2KeepAlive: {interval: 10s}\n", 16, 25,
     DR_FIELD "connectionPool.http.http2KeepAlive.timeout", "required field missing"},
    {"http2KeepAlive interval 0",
     DR_HEAD "    connectionPool:\n      http:\n"
	     "        http2KeepAlive: {interval: 0s, timeout: 1s}\n",
     16, 36, DR_FIELD "connectionPool.http.http2KeepAlive.interval", "must be at least 1ms"},
    {"maxConcurrentStreams negative",
     DR_HEAD "    connectionPool:\n      http: {maxConcurrentStreams: -1}\n", 15, 36,
     DR_FIELD "connectionPool.http.maxConcurrentStreams", "between 0 and 2147483647"},
    {"http2MaxConcurrentStreams", APP "  limits: {http2MaxConcurrentStreams: 1001}\n", 7, 39,
     "Appliance t: spec.limits.http2MaxConcurrentStreams", "between 1 and 1000"},
    {"http2InitialStreamWindowSize", APP "  limits: {http2InitialStreamWindowSize: 65534}\n", 7, 42,
     "Appliance t: spec.limits.http2InitialStreamWindowSize", "between 65535 and 2147483647"},
    {"http2InitialConnectionWindowSize",
     APP "  limits: {http2InitialConnectionWindowSize: 2147483648}\n", 7, 46,
     "Appliance t: spec.limits.http2InitialConnectionWindowSize", "between 65535 and 2147483647"},
    {"http2MaxHeaderListSize", APP "  limits: {http2MaxHeaderListSize: 100}\n", 7, 36,
     "Appliance t: spec.limits.http2MaxHeaderListSize", "between 1024 and 1048576"},
    {"selector wildcard",
     APP "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\n"
	 "spec:\n  host: a.b\n  workloadSelector: {matchLabels: {app: \"x*\"}}\n",
     13, 35, "DestinationRule default/d: spec.workloadSelector.matchLabels", "wildcards"},
    {"selector exportTo",
     APP "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\n"
	 "spec:\n  host: a.b\n  exportTo: [\"*\"]\n  workloadSelector: {matchLabels: {app: x}}\n",
     13, 14, "DestinationRule default/d: spec.exportTo[0]", "beyond its own namespace"},
#define EXP_DR(list)                                                                               \
	APP "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: "    \
	    "d}\n"                                                                                 \
	    "spec:\n  host: a.b\n  exportTo: " list "\n"
    {"exportTo none", EXP_DR("[\"~\"]"), 13, 14, "DestinationRule default/d: spec.exportTo[0]",
     "exportTo ~ (none) is not allowed"},
    {"exportTo public and more", EXP_DR("[\"*\", x]"), 13, 14,
     "DestinationRule default/d: spec.exportTo[0]", "both public (*) and non-public"},
    {"exportTo twice", EXP_DR("[., default]"), 13, 17,
     "DestinationRule default/d: spec.exportTo[1]",
     "duplicate entries in exportTo: . and current namespace default"},
    {"exportTo not a namespace", EXP_DR("[Bad_NS]"), 13, 14,
     "DestinationRule default/d: spec.exportTo[0]", "a valid DNS 1123 label"},
    {"VirtualService exportTo none",
     APP "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: v}\n"
	 "spec:\n  hosts: [a.b]\n  exportTo: [\"~\"]\n",
     13, 14, "VirtualService default/v: spec.exportTo[0]", "exportTo ~ (none) is not allowed"},
    {"ServiceEntry exportTo none and some",
     APP "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: s}\n"
	 "spec:\n  hosts: [a.b]\n  exportTo: [\"~\", x]\n  ports: [{number: 80, name: http}]\n",
     13, 14, "ServiceEntry default/s: spec.exportTo[0]", "to no one (~) and someone"},
    {"ProxyConfig concurrency below 0",
     APP "---\napiVersion: networking.istio.io/v1beta1\nkind: ProxyConfig\nmetadata: {name: p}\n"
	 "spec:\n  concurrency: -1\n",
     12, 16, "ProxyConfig default/p: spec.concurrency", ""},
    {"Telemetry filter with an unknown attribute",
     APP
     "---\napiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: t}\n"
     "spec:\n  accessLogging:\n  - filter: {expression: \"response.code >= 400 && respnse.x\"}\n",
     13, 26, "Telemetry default/t: spec.accessLogging[0].filter.expression",
     "byte 24: unknown attribute 'respnse.x'"},
#undef EXP_DR
    {"tcp check with path", APP "  healthChecks:\n  - {host: a.b, type: tcp, path: /x}\n", 8, 28,
     "Appliance t: spec.healthChecks[0].path", "not allowed in a tcp check"},
    {"check type", APP "  healthChecks:\n  - {host: a.b, type: grpc2}\n", 8, 23,
     "Appliance t: spec.healthChecks[0].type", "unknown value \"grpc2\""},
    {"grpc check with path", APP "  healthChecks:\n  - {host: a.b, type: grpc, path: /x}\n", 8, 29,
     "Appliance t: spec.healthChecks[0].path", "not allowed in a grpc check"},
    {"grpc check with statuses",
     APP "  healthChecks:\n  - {host: a.b, type: grpc, expectedStatuses: [200]}\n", 8, 29,
     "Appliance t: spec.healthChecks[0].expectedStatuses", "not allowed in a grpc check"},
    {"serviceName in an http check", APP "  healthChecks:\n  - {host: a.b, serviceName: s}\n", 8,
     17, "Appliance t: spec.healthChecks[0].serviceName", "only a grpc check has it"},
    {"tcp check with hostHeader",
     APP "  healthChecks:\n  - {host: a.b, type: tcp, hostHeader: x}\n", 8, 28,
     "Appliance t: spec.healthChecks[0].hostHeader", "not allowed in a tcp check"},
    {"check path splitting the request",
     APP "  healthChecks:\n  - {host: a.b, path: \"/x\\r\\nHost: y\"}\n", 8, 23,
     "Appliance t: spec.healthChecks[0].path", "visible characters only"},
    {"check path with a space", APP "  healthChecks:\n  - {host: a.b, path: \"/a b\"}\n", 8, 23,
     "Appliance t: spec.healthChecks[0].path", "visible characters only"},
    {"check hostHeader with a line feed",
     APP "  healthChecks:\n  - {host: a.b, hostHeader: \"x\\nAuthorization: y\"}\n", 8, 29,
     "Appliance t: spec.healthChecks[0].hostHeader", "must be a field value"},
    {"jitter percent", APP "  healthChecks:\n  - {host: a.b, intervalJitterPercent: 101}\n", 8, 40,
     "Appliance t: spec.healthChecks[0].intervalJitterPercent", "between 0 and 100"},
    {"alias", APP "  user: &u x\n  group: *u\n", 8, 10, "", "aliases"},
    {"unknown kind", APP "---\napiVersion: v1\nkind: ConfigMap\n", 9, 7, "kind",
     "unknown kind \"ConfigMap\""},
    {"wrong apiVersion", APP "---\napiVersion: networking.istio.io/v2\nkind: Gateway\n", 8, 13,
     "apiVersion",
     "is not an apiVersion of Gateway (use networking.istio.io/v1alpha3, "
     "networking.istio.io/v1beta1 or networking.istio.io/v1)"},
    {"missing metadata.name",
     APP "---\napiVersion: networking.istio.io/v1\nkind: Gateway\n"
	 "metadata: {namespace: x}\nspec: {}\n",
     10, 11, "Gateway x/?: metadata.name", "required field missing"},
    {"duplicate resource", APP GW_DOC GW_DOC, 14, 1, "Gateway default/gw: metadata.name",
     "defined twice (first at line 8)"},
    {"metadata.name of 254 bytes",
     APP "---\napiVersion: networking.istio.io/v1\nkind: Gateway\n"
	 "metadata: {name: " X64 X64 X64 X64 "}\nspec: {}\n",
     10, 18, "Gateway default/" X64 "...: metadata.name", "at most 253 lower case letters"},
    {"metadata.name ending in '-'",
     APP "---\napiVersion: networking.istio.io/v1\nkind: Gateway\n"
	 "metadata: {name: gw-}\nspec: {}\n",
     10, 18, "Gateway default/gw-: metadata.name", "ending with a letter or digit"},
    {"metadata.namespace with a dot",
     APP "---\napiVersion: networking.istio.io/v1\nkind: Gateway\n"
	 "metadata: {name: gw, namespace: a.b}\nspec: {}\n",
     10, 33, "Gateway a.b/gw: metadata.namespace", "at most 63 lower case letters, digits and '-'"},
    {"spec.namespace with a capital", APP "  namespace: Shop\n", 7, 14,
     "Appliance t: spec.namespace", "at most 63 lower case letters"},
    {"metadata.namespace of 64 bytes",
     APP "---\napiVersion: networking.istio.io/v1\nkind: Gateway\n"
	 "metadata: {name: gw, namespace: " X64 "}\nspec: {}\n",
     10, 33, "Gateway " X64 "/gw: metadata.namespace", "at most 63"},
/* F2: a policy's selector and targets, checked as any field; a policy
 * that does not apply is checked all the same. */
#define POLICY(kind, meta, spec)                                                                   \
	APP "---\napiVersion: security.istio.io/v1\nkind: " kind "\nmetadata: {" meta              \
	    "}\nspec:\n" spec
    {"policy selector matchLabel",
     POLICY("AuthorizationPolicy", "name: p, namespace: istio-system",
	    "  selector: {matchLabel: {app: foo}}\n  action: DENY\n  rules: [{}]\n"),
     12, 14, "AuthorizationPolicy istio-system/p: spec.selector.matchLabel",
     "unknown field; did you mean 'matchLabels'?"},
    {"policy selector unknown key",
     POLICY("RequestAuthentication", "name: r", "  selector: {matchLabels: {a: b}, x: 1}\n"), 12,
     35, "RequestAuthentication default/r: spec.selector.x", "unknown field"},
    {"policy of another namespace checked",
     POLICY("RequestAuthentication", "name: r, namespace: other",
	    "  jwtRules: [{issuer: x, bogus: 1}]\n"),
     12, 26, "RequestAuthentication other/r: spec.jwtRules[0].bogus", "unknown field"},
    {"policy with targets checked",
     POLICY("AuthorizationPolicy", "name: p",
	    "  targetRefs: [{kind: Service, name: a}]\n  action: DENY\n"),
     13, 11, "AuthorizationPolicy default/p: spec.action", "without rules never applies"},
    {"targetRef beside selector",
     POLICY("RequestAuthentication", "name: r",
	    "  selector: {matchLabels: {a: b}}\n  targetRef: {kind: Service, name: foo}\n"),
     13, 3, "RequestAuthentication default/r: spec.targetRef", "only one of"},
    {"targetRef without name",
     POLICY("RequestAuthentication", "name: r", "  targetRef: {group: \"\", kind: Service}\n"), 12,
     14, "RequestAuthentication default/r: spec.targetRef.name", "required field missing"},
    {"targetRef namespace",
     POLICY("RequestAuthentication", "name: r",
	    "  targetRef: {kind: Service, name: a, namespace: bar}\n"),
     12, 50, "RequestAuthentication default/r: spec.targetRef.namespace",
     "cross namespace referencing is not supported"},
    {"targetRef group",
     POLICY("AuthorizationPolicy", "name: p",
	    "  targetRefs: [{kind: Service, name: a}, {group: __, kind: Service, name: a}]\n"),
     12, 50, "AuthorizationPolicy default/p: spec.targetRefs[1].group",
     "targetRef must be to one of core/Service"},
    {"targetRef kind",
     POLICY("RequestAuthentication", "name: r", "  targetRef: {kind: Serv_ice, name: a}\n"), 12, 21,
     "RequestAuthentication default/r: spec.targetRef.kind", "but was /Serv_ice"},
    {"Telemetry targetRef",
     APP "---\napiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: t}\n"
	 "spec:\n  targetRef: {kind: Service, name: a, x: 1}\n",
     12, 39, "Telemetry default/t: spec.targetRef.x", "unknown field"},
    /* F1: Istio fields, never "unknown field". */
    {"jwks_uri as jwksUri",
     POLICY("RequestAuthentication", "name: r",
	    "  jwtRules: [{issuer: x, jwks_uri: \"ftp://a/b\"}]\n"),
     12, 36, "RequestAuthentication default/r: spec.jwtRules[0].jwks_uri",
     "URI scheme is not supported"},
    {"jwks_uri and jwksUri",
     POLICY("RequestAuthentication", "name: r",
	    "  jwtRules: [{issuer: x, jwksUri: \"https://a/b\", jwks_uri: \"https://a/b\"}]\n"),
     12, 50, "RequestAuthentication default/r: spec.jwtRules[0].jwks_uri",
     "only one of jwks or jwksUri"},
    {"jwtRules presence",
     POLICY("RequestAuthentication", "name: r", "  jwtRules: [{issuer: x, presence: REQUIRED}]\n"),
     12, 26, "RequestAuthentication default/r: spec.jwtRules[0].presence", "not implemented yet"},
    {"loadBalancer backendUtilization",
     APP "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\n"
	 "spec:\n  host: a.b\n  subsets:\n  - name: v1\n"
	 "    trafficPolicy: {loadBalancer: {backendUtilization: {}}}\n",
     15, 36,
     "DestinationRule default/d: spec.subsets[0].trafficPolicy.loadBalancer.backendUtilization",
     "not implemented yet"},
    /* F4: Istio's ValidateDuration where Istio applies it. */
    {"route timeout 0s", VS_HEAD "    - destination: {host: a.b}\n    timeout: 0s\n", 23, 14,
     VS_FIELD "spec.http[0].timeout", "must be at least 1ms (Istio: duration must be greater"},
    {"route timeout 500us", VS_HEAD "    - destination: {host: a.b}\n    timeout: 500us\n", 23, 14,
     VS_FIELD "spec.http[0].timeout", "must be at least 1ms"},
    {"perTryTimeout beyond ms",
     VS_HEAD "    - destination: {host: a.b}\n    retries: {attempts: 2, perTryTimeout: 1.0005s}\n",
     23, 43, VS_FIELD "spec.http[0].retries.perTryTimeout",
     "only durations to ms precision are supported"},
    {"outlier interval 100us",
     APP "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\n"
	 "spec:\n  host: a.b\n  trafficPolicy: {outlierDetection: {interval: 100us}}\n",
     13, 48, "DestinationRule default/d: spec.trafficPolicy.outlierDetection.interval",
     "must be at least 1ms"},
    {"tcp idleTimeout beyond ms",
     APP "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\n"
	 "spec:\n  host: a.b\n  trafficPolicy: {connectionPool: {tcp: {idleTimeout: 1.5ms}}}\n",
     13, 55, "DestinationRule default/d: spec.trafficPolicy.connectionPool.tcp.idleTimeout",
     "only durations to ms precision"},
    /* F3: Gateway as Istio's ValidateGateway, validateServer and
     * validateServerPort. */
    {"gateway port without name",
     GW_SERVERS "  - port: {number: 80, protocol: HTTP}\n    hosts: [a.test]\n", 13, 11,
     GW_FIELD "port.name", "required field missing"},
    {"gateway port without protocol",
     GW_SERVERS "  - port: {number: 80, name: http}\n    hosts: [a.test]\n", 13, 11,
     GW_FIELD "port.protocol", "required field missing (Istio: invalid protocol \"\")"},
    {"gateway port names twice",
     GW_SERVERS "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [a.test]\n"
		"  - port: {number: 81, name: http, protocol: HTTP}\n    hosts: [a.test]\n",
     15, 30, "Gateway default/gw: spec.servers[1].port.name",
     "port names in servers must be unique: duplicate name http"},
    {"gateway without servers",
     APP "---\napiVersion: networking.istio.io/v1\nkind: Gateway\n"
	 "metadata: {name: gw}\nspec:\n  servers: []\n",
     12, 12, "Gateway default/gw: spec.servers", "gateway must have at least one server"},
    {"gateway targetPort",
     GW_SERVERS "  - port: {number: 80, name: http, protocol: HTTP, targetPort: 8080}\n"
		"    hosts: [a.test]\n",
     13, 64, GW_FIELD "port.targetPort", "targetPort has no impact on Gateways"},
    {"gateway short host",
     GW_SERVERS "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [shop]\n", 14, 13,
     GW_FIELD "hosts[0]", "short names (non FQDN) are not allowed"},
    {"gateway short host with namespace",
     GW_SERVERS "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [default/shop]\n",
     14, 13, GW_FIELD "hosts[0]", "short names (non FQDN) are not allowed"},
    {"gateway host namespace ~",
     GW_SERVERS "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"~/a.test\"]\n",
     14, 13, GW_FIELD "hosts[0]", "invalid namespace value in gateway"},
    {"gateway host label",
     GW_SERVERS
     "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [a_b.example.com]\n",
     14, 13, GW_FIELD "hosts[0]", "invalid label"},
    {"gateway host partial wildcard",
     GW_SERVERS "  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: [\"*a.test\"]\n",
     14, 13, GW_FIELD "hosts[0]", "partial wildcard not allowed"},
/* F5: VirtualService rules of Istio's ValidateVirtualService,
 * validateHTTPRouteMatchRequest, ValidateHTTPRetry. */
#define VS_DOC(gws, rest)                                                                          \
	APP GW_DOC "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n"               \
		   "metadata: {name: vs, namespace: shop}\nspec:\n" gws rest
    {"vs partial wildcard covers a host",
     VS_DOC("  gateways: [default/gw]\n", "  hosts: [a-api.example.com, \"*-api.example.com\"]\n"
					  "  http: [{route: [{destination: {host: a.b}}]}]\n"),
     19, 11, VS_FIELD "spec.hosts[0]",
     "duplicate hosts in virtual service: *-api.example.com & a-api.example.com"},
    {"vs partial wildcard covers its suffix",
     VS_DOC("  gateways: [default/gw]\n", "  hosts: [api.example.com, \"*api.example.com\"]\n"
					  "  http: [{route: [{destination: {host: a.b}}]}]\n"),
     19, 11, VS_FIELD "spec.hosts[0]",
     "duplicate hosts in virtual service: *api.example.com & api.example.com"},
    {"vs duplicate hosts",
     VS_DOC("  gateways: [default/gw]\n", "  hosts: [a.example.com, \"*.example.com\"]\n"
					  "  http: [{route: [{destination: {host: a.b}}]}]\n"),
     19, 11, VS_FIELD "spec.hosts[0]",
     "duplicate hosts in virtual service: *.example.com & a.example.com"},
    {"vs * covers the others",
     VS_DOC("  gateways: [default/gw]\n", "  hosts: [a.b, \"*\"]\n"
					  "  http: [{route: [{destination: {host: a.b}}]}]\n"),
     19, 11, VS_FIELD "spec.hosts[0]", "duplicate hosts in virtual service: * & a.b"},
    {"vs wildcard covers a wildcard",
     VS_DOC("  gateways: [default/gw]\n", "  hosts: [c.d, \"*.com\", \"*.example.com\"]\n"
					  "  http: [{route: [{destination: {host: a.b}}]}]\n"),
     19, 25, VS_FIELD "spec.hosts[2]", "duplicate hosts in virtual service: *.com & *.example.com"},
    {"vs same host twice",
     VS_DOC("  gateways: [default/gw]\n",
	    "  hosts: [a.b, a.b]\n  http: [{route: [{destination: {host: a.b}}]}]\n"),
     19, 16, VS_FIELD "spec.hosts[1]", "duplicate hosts in virtual service: a.b & a.b"},
    {"vs * bound to the mesh",
     VS_DOC("", "  hosts: [\"*\"]\n  http: [{route: [{destination: {host: a.b}}]}]\n"), 18, 11,
     VS_FIELD "spec.hosts[0]",
     "wildcard host * is not allowed for virtual services bound to the "
     "mesh gateway"},
    {"vs host label",
     VS_DOC("  gateways: [default/gw]\n",
	    "  hosts: [\"-a.com\"]\n  http: [{route: [{destination: {host: a.b}}]}]\n"),
     19, 11, VS_FIELD "spec.hosts[0]", "invalid host \"-a.com\": invalid label"},
    {"vs claim route in the mesh",
     VS_DOC("", "  hosts: [a.b]\n  http:\n  - match: [{headers: {\"@request.auth.claims.sub\": "
		"{exact: x}}}]\n    route: [{destination: {host: a.b}}]\n"),
     20, 24, VS_FIELD "spec.http[0].match[0].headers.@request.auth.claims.sub",
     "JWT claim based routing (key: @request.auth.claims.sub) is only supported for gateway"},
    {"retries attempts 0 with retryOn",
     VS_HEAD "    - destination: {host: a.b}\n    retries: {attempts: 0, retryOn: 5xx}\n", 23, 37,
     VS_FIELD "spec.http[0].retries.retryOn",
     "http retry policy configured when attempts are set to 0 (disabled)"},
    {"retries perTryTimeout without attempts",
     VS_HEAD "    - destination: {host: a.b}\n    retries: {perTryTimeout: 2s}\n", 23, 30,
     VS_FIELD "spec.http[0].retries.perTryTimeout", "attempts are set to 0"},
    {"retryOn with a space",
     VS_HEAD
     "    - destination: {host: a.b}\n    retries: {attempts: 2, retryOn: \"5xx, reset\"}\n",
     23, 37, VS_FIELD "spec.http[0].retries.retryOn", "unknown retry condition \" reset\""},
    {"empty prefix of a header",
     VS_HEAD "    - destination: {host: a.b}\n    match: [{headers: {x-b: {prefix: \"\"}}}]\n", 23,
     38, VS_FIELD "spec.http[0].match[0].headers.x-b.prefix",
     "prefix string match should not be empty"},
    {"empty prefix of a method",
     VS_HEAD "    - destination: {host: a.b}\n    match: [{method: {prefix: \"\"}}]\n", 23, 31,
     VS_FIELD "spec.http[0].match[0].method.prefix", "prefix string match should not be empty"},
    {"http empty", VS_DOC("  gateways: [default/gw]\n", "  hosts: [a.b]\n  http: []\n"), 20, 9,
     VS_FIELD "spec.http", "http, tcp or tls must be provided in virtual service"},
    {"sourceNamespace",
     VS_HEAD "    - destination: {host: a.b}\n    match: [{sourceNamespace: Bad_NS}]\n", 23, 31,
     VS_FIELD "spec.http[0].match[0].sourceNamespace", "sourceNamespace match Bad_NS is invalid"},
    {"gateway named in other case",
     VS_DOC("  gateways: [default/GW]\n",
	    "  hosts: [a.b]\n  http: [{route: [{destination: {host: a.b}}]}]\n"),
     18, 14, VS_FIELD "spec.gateways[0]", "no Gateway default/GW"},
#undef VS_DOC
/* F5: DestinationRule and ServiceEntry rules (validateSubset,
 * labels.Instance.Validate, validatePortTrafficPolicies,
 * ValidateIPSubnet). */
#define DR_DOC(rest)                                                                               \
	APP "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: "    \
	    "d}\n"                                                                                 \
	    "spec:\n  host: a.b\n" rest
    {"subset name", DR_DOC("  subsets: [{name: \"v1/x\"}]\n"), 13, 20,
     "DestinationRule default/d: spec.subsets[0].name", "subset name is invalid: v1/x"},
    {"subset label key", DR_DOC("  subsets: [{name: v1, labels: {\"bad key!\": v1}}]\n"), 13, 33,
     "DestinationRule default/d: spec.subsets[0].labels.bad key!", "invalid tag key"},
    {"subset label value", DR_DOC("  subsets: [{name: v1, labels: {app: \"v 1\"}}]\n"), 13, 33,
     "DestinationRule default/d: spec.subsets[0].labels.app", "invalid tag value"},
    {"portLevelSettings with only port",
     DR_DOC("  trafficPolicy: {portLevelSettings: [{port: {number: 80}}]}\n"), 13, 39,
     "DestinationRule default/d: spec.trafficPolicy.portLevelSettings[0]",
     "port traffic policy must have at least one field"},
    {"ServiceEntry addresses",
     APP "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: s}\n"
	 "spec:\n  hosts: [a.b]\n  addresses: [10.0.0.0/33]\n  ports: [{number: 80, name: http}]\n"
	 "  resolution: STATIC\n  endpoints: [{address: 10.0.0.1}]\n",
     13, 15, "ServiceEntry default/s: spec.addresses[0]", "10.0.0.0/33 is not a valid CIDR block"},
    {"sourceLabels",
     VS_HEAD "    - destination: {host: a.b}\n    match: [{sourceLabels: {app: \"v 1\"}}]\n", 23,
     29, VS_FIELD "spec.http[0].match[0].sourceLabels.app", "invalid tag value"},
#undef DR_DOC
    /* F7: top-level errors of a document name its kind and name. */
    {"unknown top-level key, named",
     APP "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\n_err: x\n"
	 "spec: {servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: [\"*\"]}]}\n",
     11, 1, "Gateway default/g: _err", "unknown field"},
    {"missing spec, named",
     APP "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\n", 8, 1,
     "Gateway default/g: spec", "required field missing"},
#undef POLICY
};

/* rewrite: compiled into the route (the path) and into each destination (the
 * authority); a route without actions has none. */
static void test_rewrite(void **state)
{
	static const char yaml[] =
	    VS_HEAD "    - {destination: {host: a.b}, weight: 50}\n"
		    "    - {destination: {host: c.d}, weight: 50}\n"
		    "    match: [{uri: {prefix: /api/}}]\n"
		    "    rewrite: {uri: /, authority: \"backend.internal:8080\"}\n"
		    "  - route: [{destination: {host: a.b}}]\n"
		    "    match: [{uri: {regex: \"/old/.*\"}}]\n"
		    "    rewrite:\n"
		    "      uriRegexRewrite: {match: \"^/old/(.*)\", rewrite: \"/new/\\\\1\"}\n"
		    "  - route: [{destination: {host: a.b}}]\n";
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_vhost *vh = &t->listeners[0].vhosts[0];
	const struct ism_route *r = vh->routes;

	assert_int_equal(vh->n_routes, 3);
	assert_non_null(r[0].act);
	assert_int_equal(r[0].act->path.kind, ISM_PATH_PREFIX);
	assert_string_equal(r[0].act->path.value.p, "/");
	/* The route's authority goes with each of its destinations. */
	assert_non_null(r[0].dest[0].act);
	assert_string_equal(r[0].dest[0].act->authority.p, "backend.internal:8080");
	assert_ptr_equal(r[0].dest[1].act, r[0].dest[0].act);

	assert_int_equal(r[1].act->path.kind, ISM_PATH_REGEX);
	assert_string_equal(r[1].act->path.value.p, "/new/\\1");
	assert_int_equal(r[1].act->path.re.kind, ISM_SM_REGEX);
	assert_int_equal(r[1].act->path.re.search, 1);
	assert_non_null(r[1].act->path.re.re);
	/* Numbered after the match's regex, for the workers' JIT copies. */
	assert_int_equal(r[1].match[0].uri.re_idx, 0);
	assert_int_equal(r[1].act->path.re.re_idx, 1);
	assert_int_equal(t->n_regexes, 2);
	assert_null(r[1].dest[0].act);

	assert_null(r[2].act);
	assert_null(r[2].dest[0].act);
}

/* The edit of name in e, checked: drop, and its values joined by "|". */
static void check_edit(const struct ism_hdr_edits *e, const char *name, bool drop,
		       const char *values)
{
	char got[256] = "";

	for (uint32_t i = 0; i < e->n; i++) {
		if (strcmp(e->e[i].name.p, name) != 0)
			continue;
		for (uint32_t j = 0; j < e->e[i].n_values; j++)
			snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s", j ? "|" : "",
				 e->e[i].values[j].p);
		if (e->e[i].drop != drop || strcmp(got, values) != 0)
			fail_msg("%s: drop %d values \"%s\", want drop %d \"%s\"", name,
				 e->e[i].drop, got, drop, values);
		return;
	}
	fail_msg("no edit of %s", name);
}

/* headers on a route and on its destinations, composed as Istio has Envoy
 * apply them: one parser when the route has a single destination (the
 * destination's operations after the route's: removes, then sets, then adds),
 * else the weighted cluster's before the route's. */
static void test_headers(void **state)
{
	static const char yaml[] =
	    VS_HEAD "    - destination: {host: a.b}\n"
		    "      headers:\n"
		    "        request:\n"
		    "          set: {x-b: \"2\", host: dest.internal}\n"
		    "          add: {x-c: \"2\"}\n"
		    "        response: {set: {x-a: dest}}\n"
		    "    headers:\n"
		    "      request:\n"
		    "        set: {x-b: \"1\", X-Up: \"1\", x-up: \"2\", x-pct: \"100%%\"}\n"
		    "        add: {x-c: \"1\"}\n"
		    "        remove: [X-Gone]\n"
		    "      response:\n"
		    "        remove: [server, x-a]\n"
		    "        add: {x-d: \"\"}\n"
		    "  - route:\n"
		    "    - destination: {host: a.b}\n"
		    "      weight: 50\n"
		    "      headers:\n"
		    "        request: {set: {x-b: \"2\", host: dest.internal}, add: {x-c: \"2\"}}\n"
		    "        response: {set: {x-a: dest}}\n"
		    "    - destination: {host: c.d}\n"
		    "      weight: 50\n"
		    "    match: [{uri: {prefix: /two}}]\n"
		    "    headers:\n"
		    "      request:\n"
		    "        set: {x-b: \"1\", host: route.internal}\n"
		    "        add: {x-c: \"1\"}\n"
		    "      response:\n"
		    "        remove: [x-a]\n"
		    "  - route: [{destination: {host: a.b}}]\n"
		    "    match: [{uri: {prefix: /three}}]\n";
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_vhost *vh = &t->listeners[0].vhosts[0];
	const struct ism_route *r = vh->routes;
	const struct ism_dest_actions *a;

	/* A single destination: one parser, the destination's after the route's. */
	a = r[0].dest[0].act;
	assert_non_null(a);
	assert_string_equal(a->authority.p, "dest.internal");
	check_edit(&a->req, "x-b", true, "2");	  /* the last set wins */
	check_edit(&a->req, "x-c", false, "1|2"); /* adds, in order */
	check_edit(&a->req, "x-up", true, "2");	  /* "X-Up" sorts before "x-up" */
	check_edit(&a->req, "x-pct", true, "100%");
	check_edit(&a->req, "x-gone", true, "");
	assert_int_equal(a->req.n, 5);
	check_edit(&a->resp, "server", true, "");
	check_edit(&a->resp, "x-a", true, "dest"); /* removed, then set */
	assert_int_equal(a->resp.n, 2);		   /* the empty value is not sent */
	assert_true(has_warning(&f->d, "x-d", "not sent"));

	/* Weighted: the destination's parser, then the route's. */
	a = r[1].dest[0].act;
	assert_non_null(a);
	assert_string_equal(a->authority.p, "route.internal"); /* the route's wins */
	check_edit(&a->req, "x-b", true, "1");
	check_edit(&a->req, "x-c", false, "2|1");
	check_edit(&a->resp, "x-a", true, ""); /* set, then removed */
	/* A destination without headers gets the route's alone. */
	a = r[1].dest[1].act;
	assert_non_null(a);
	assert_ptr_not_equal(a, r[1].dest[0].act);
	check_edit(&a->req, "x-b", true, "1");
	check_edit(&a->req, "x-c", false, "1");
	assert_int_equal(a->req.n, 2);
	check_edit(&a->resp, "x-a", true, "");

	assert_null(r[2].dest[0].act);
	assert_null(r[2].act);
}

/* redirect: an answer made here, compiled into the route (no destination). */
static void test_redirect(void **state)
{
	static const char yaml[] =
	    VS_HTTP "  - match: [{uri: {prefix: /old/}}]\n"
		    "    redirect: {uri: /new, redirectCode: 308}\n"
		    "    headers: {response: {set: {x-r: \"1\"}}, request: {set: {x-q: \"1\"}}}\n"
		    "  - match: [{uri: {prefix: /pre/}}]\n"
		    "    redirect:\n"
		    "      prefixRewrite: /post/\n"
		    "      scheme: https\n"
		    "      port: 8443\n"
		    "  - redirect: {authority: b.example, derivePort: FROM_REQUEST_PORT}\n";
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_route *r = t->listeners[0].vhosts[0].routes;
	const struct ism_route_actions *a;

	a = r[0].act;
	assert_non_null(a);
	assert_int_equal(r[0].n_dest, 0);
	assert_int_equal(a->kind, ISM_ROUTE_REDIRECT);
	assert_int_equal(a->redirect.code, 308);
	assert_int_equal(a->path.kind, ISM_PATH_REPLACE);
	assert_string_equal(a->path.value.p, "/new");
	assert_int_equal(a->resp.n, 1);
	assert_string_equal(a->resp.e[0].name.p, "x-r");
	a = r[1].act;
	assert_int_equal(a->redirect.code, 301);
	assert_int_equal(a->path.kind, ISM_PATH_PREFIX);
	assert_string_equal(a->redirect.scheme.p, "https");
	assert_int_equal(a->redirect.port, 8443);
	assert_int_equal(a->redirect.port_from_request, 0);
	assert_int_equal(a->resp.n, 0);
	a = r[2].act;
	assert_int_equal(a->path.kind, ISM_PATH_KEEP);
	assert_string_equal(a->redirect.authority.p, "b.example");
	assert_int_equal(a->redirect.scheme.len, 0);
	assert_int_equal(a->redirect.port_from_request, 1);
}

/* directResponse: status and body (string as written, bytes decoded from
 * base64, binary included), the route's response headers. */
static void test_direct_response(void **state)
{
	static const char yaml[] =
	    VS_HTTP "  - match: [{uri: {exact: /v1/getProductRatings}}]\n"
		    "    directResponse: {status: 503, body: {string: \"unknown error\"}}\n"
		    "    headers: {response: {set: {content-type: application/json}}}\n"
		    "  - match: [{uri: {exact: /b}}]\n"
		    "    directResponse: {status: 200, body: {bytes: \"dW5rbm93bgBlcnJvcg==\"}}\n"
		    "  - match: [{uri: {exact: /u}}]\n"
		    "    directResponse: {status: 200, body: {bytes: \"_-8\"}}\n"
		    "  - directResponse: {status: 204}\n";
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_route *r = t->listeners[0].vhosts[0].routes;

	assert_int_equal(r[0].act->kind, ISM_ROUTE_DIRECT);
	assert_int_equal(r[0].n_dest, 0);
	assert_int_equal(r[0].act->direct.status, 503);
	assert_int_equal(r[0].act->direct.body.len, 13);
	assert_string_equal(r[0].act->direct.body.p, "unknown error");
	assert_int_equal(r[0].act->resp.n, 1);
	assert_string_equal(r[0].act->resp.e[0].values[0].p, "application/json");
	assert_int_equal(r[1].act->direct.body.len, 13);
	assert_memory_equal(r[1].act->direct.body.p, "unknown\0error", 13);
	/* URL-safe digits, no padding. */
	assert_int_equal(r[2].act->direct.body.len, 2);
	assert_memory_equal(r[2].act->direct.body.p, "\xff\xef", 2);
	assert_int_equal(r[3].act->direct.status, 204);
	assert_int_equal(r[3].act->direct.body.len, 0);
}

/* A body over 100 KiB is a warning, over 1 MiB an error, as Istio has them. */
static void test_direct_response_size(void **state)
{
	static const char head[] = VS_HTTP "  - directResponse: {status: 200, body: {string: \"";
	size_t n = sizeof(head) - 1, big = (1u << 20) + 1;
	struct fx *f = *state;
	char *yaml = malloc(n + big + 8);

	assert_non_null(yaml);
	memcpy(yaml, head, n);
	memset(yaml + n, 'a', big);
	strcpy(yaml + n + big, "\"}}\n");
	assert_int_equal(ism_conf_load_buf("t.yaml", yaml, strlen(yaml), &f->conf, &f->d), -EINVAL);
	assert_non_null(strstr(f->d.items[0].msg, "must be at most 1 MiB"));
	assert_string_equal(f->d.items[0].field, VS_FIELD "spec.http[0].directResponse.body");
	yaml[n + (200u << 10)] = '\0';
	strcat(yaml, "\"}}\n");
	ism_diags_init(&f->d);
	load_compile(f, yaml);
	assert_true(has_warning(&f->d, "directResponse.body", "over 100 KiB"));
	free(yaml);
}

/* A delegate route takes the delegating route's rewrite, headers and
 * directResponse when it has none of its own (Istio's mergeHTTPRoute); a
 * redirect of its own wins over a directResponse taken so. */
static void test_delegate_actions(void **state)
{
	static const char yaml[] = APP GW_DOC "---\n"
					      "apiVersion: networking.istio.io/v1\n"
					      "kind: VirtualService\n"
					      "metadata: {name: root}\n"
					      "spec:\n"
					      "  hosts: [\"*\"]\n"
					      "  gateways: [gw]\n"
					      "  http:\n"
					      "  - match: [{uri: {prefix: /shop/}}]\n"
					      "    rewrite: {uri: /}\n"
					      "    headers: {request: {set: {x-root: \"1\"}}}\n"
					      "    delegate: {name: d, namespace: shop}\n"
					      "  - match: [{uri: {prefix: /gone/}}]\n"
					      "    directResponse: {status: 410}\n"
					      "    delegate: {name: e, namespace: shop}\n"
					      "---\n"
					      "apiVersion: networking.istio.io/v1\n"
					      "kind: VirtualService\n"
					      "metadata: {name: d, namespace: shop}\n"
					      "spec:\n"
					      "  http:\n"
					      "  - match: [{uri: {prefix: /shop/cart}}]\n"
					      "    route: [{destination: {host: a.b}}]\n"
					      "  - match: [{uri: {prefix: /shop/own/}}]\n"
					      "    rewrite: {uri: /own/}\n"
					      "    headers: {request: {set: {x-leaf: \"1\"}}}\n"
					      "    route: [{destination: {host: a.b}}]\n"
					      "---\n"
					      "apiVersion: networking.istio.io/v1\n"
					      "kind: VirtualService\n"
					      "metadata: {name: e, namespace: shop}\n"
					      "spec:\n"
					      "  http:\n"
					      "  - match: [{uri: {prefix: /gone/x}}]\n"
					      "    route: [{destination: {host: a.b}}]\n"
					      "  - match: [{uri: {prefix: /gone/y}}]\n"
					      "    redirect: {uri: /y}\n";
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_route *r = t->listeners[0].vhosts[0].routes;

	assert_int_equal(t->listeners[0].vhosts[0].n_routes, 4);
	assert_int_equal(r[0].act->path.kind, ISM_PATH_PREFIX);
	assert_string_equal(r[0].act->path.value.p, "/");
	check_edit(&r[0].dest[0].act->req, "x-root", true, "1");
	assert_string_equal(r[1].act->path.value.p, "/own/");
	assert_int_equal(r[1].dest[0].act->req.n, 1);
	check_edit(&r[1].dest[0].act->req, "x-leaf", true, "1");
	assert_int_equal(r[2].act->kind, ISM_ROUTE_DIRECT);
	assert_int_equal(r[2].act->direct.status, 410);
	assert_int_equal(r[3].act->kind, ISM_ROUTE_REDIRECT);
}

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

/* A route that redirects (or answers directly) needs no route: its one
 * mistake (a field not implemented yet) gets one error, without a follow-on
 * "route: required field missing"; so does one that delegates to nothing. */
static void test_one_error_per_mistake(void **state)
{
	static const char *const yaml[] = {
	    VS_HTTP "  - redirect: {uri: /x}\n    appendHeaders: {a: b}\n",
	    VS_HTTP "  - directResponse: {status: 200}\n    appendHeaders: {a: b}\n",
	    VS_HTTP "  - delegate: {name: other}\n",
	};
	static const char *const want[][2] = {
	    {VS_FIELD "spec.http[0].appendHeaders", "not implemented yet"},
	    {VS_FIELD "spec.http[0].appendHeaders", "not implemented yet"},
	    {VS_FIELD "spec.http[0].delegate", "no VirtualService shop/other"},
	};
	struct fx *f = *state;

	for (size_t i = 0; i < sizeof(yaml) / sizeof(yaml[0]); i++) {
		struct ism_conf *c = NULL;

		ism_diags_init(&f->d);
		assert_int_equal(ism_conf_load_buf("t.yaml", yaml[i], strlen(yaml[i]), &c, &f->d),
				 -EINVAL);
		if (f->d.n_errors != 1)
			dump(&f->d);
		assert_int_equal(f->d.n_errors, 1);
		assert_string_equal(f->d.items[0].field, want[i][0]);
		assert_non_null(strstr(f->d.items[0].msg, want[i][1]));
	}
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

/* A field name far from every known one gets no suggestion. */
static void test_unknown_field_no_guess(void **state)
{
	static const char yaml[] = APP "  zzz: 1\n";
	struct fx *f = *state;
	char buf[2048];

	assert_int_equal(ism_conf_load_buf("conf/x.yaml", yaml, strlen(yaml), &f->conf, &f->d),
			 -EINVAL);
	ism_diags_format(buf, sizeof(buf), &f->d);
	assert_string_equal(buf, "conf/x.yaml:7:3: error: Appliance t: spec.zzz: unknown field\n");
}

/* Listening addresses the master binds together load: one address shared
 * (one listener), specific addresses apart on a port, an IPv6 address beside
 * the IPv4 wildcard, the admin listener on a port of its own. [::] beside an
 * IPv4 address is refused only where [::] takes IPv4 too (bindv6only 0). */
static void test_listen_addresses(void **state)
{
	static const char ok[] = GW_SERVERS
	    "  - port: {number: 8080, name: http-8080-10, protocol: HTTP}\n    bind: 127.0.0.1\n   "
	    " hosts: [a.test]\n"
	    "  - port: {number: 8080, name: http-8080-11, protocol: HTTP}\n    bind: 127.0.0.1\n   "
	    " hosts: [b.test]\n"
	    "  - port: {number: 8080, name: http-8080-12, protocol: HTTP}\n    bind: 127.0.0.2\n   "
	    " hosts: [a.test]\n"
	    "  - port: {number: 8080, name: http-8080-13, protocol: HTTP}\n    bind: \"::1\"\n    "
	    "hosts: [a.test]\n"
	    "  - port: {number: 8081, name: http-8081, protocol: HTTP}\n    hosts: [a.test]\n"
	    "  - port: {number: 8081, name: http-8081-2, protocol: HTTP}\n    hosts: [b.test]\n"
	    "  - port: {number: 8081, name: http-8081-3, protocol: HTTP}\n    bind: \"::1\"\n    "
	    "hosts: [a.test]\n";
	static const char admin_ok[] = APP "  admin: {address: \"0.0.0.0:9901\"}\n" GW_PORT_8080;
	static const char dual[] = GW_SERVERS
	    "  - port: {number: 8080, name: http-8080-14, protocol: HTTP}\n    hosts: [a.test]\n"
	    "  - port: {number: 8080, name: http-8080-15, protocol: HTTP}\n    bind: \"::\"\n    "
	    "hosts: [b.test]\n";
	struct fx *f = *state;
	struct ism_conf *c = NULL;
	FILE *v6only = fopen("/proc/sys/net/ipv6/bindv6only", "r");
	bool dual_stack = true;

	if (v6only != NULL) {
		dual_stack = fgetc(v6only) != '1';
		fclose(v6only);
	}
	assert_int_equal(ism_conf_load_buf("t.yaml", ok, strlen(ok), &c, &f->d), 0);
	ism_conf_free(c);
	assert_int_equal(ism_conf_load_buf("t.yaml", admin_ok, strlen(admin_ok), &c, &f->d), 0);
	ism_conf_free(c);
	c = NULL;
	assert_int_equal(ism_conf_load_buf("t.yaml", dual, strlen(dual), &c, &f->d),
			 dual_stack ? -EINVAL : 0);
	if (dual_stack)
		assert_true(has_diag(&f->d, ISM_DIAG_ERROR, "spec.servers[1].bind",
				     "[::] takes the port on the IPv4 addresses too"));
	ism_conf_free(c);
}

/* A byte that is not UTF-8, a NUL or another control character is reported
 * where it is (libyaml's reader tells its offset alone), its column counted
 * in characters. */
static void test_bad_bytes(void **state)
{
	static const char nul3[] = "apiVersion: isthmus.io/v1\nkind: Appliance\nmeta\0data:\n";
	static const char nul8[] = APP "  workers: 2\n  user: x\0y\n";
	static const char ctl8[] = APP "  workers: 2\n  user: \"\xc3\xa9\x01\"\n";
	static const char bad5[] = "apiVersion: isthmus.io/v1\nkind: Appliance\nmetadata:\n"
				   "  name: t\nspec: {user: \"\xc3\xa9\xc3\"}\n";
	/* UTF-16 (little-endian, with its byte order mark): refused whole. */
	static const char u16[] = "\xff\xfe"
				  "a\0p\0i\0:\0 \0x\0\n\0";
	static const struct {
		const char *yaml;
		size_t len;
		int line, col;
		const char *msg;
	} cases[] = {
	    {nul3, sizeof(nul3) - 1, 3, 5, "control characters are not allowed (U+0000)"},
	    {nul8, sizeof(nul8) - 1, 8, 10, "control characters are not allowed (U+0000)"},
	    {ctl8, sizeof(ctl8) - 1, 8, 11, "control characters are not allowed (U+0001)"},
	    /* the trailing byte the leading 0xC3 wants is the quote */
	    {bad5, sizeof(bad5) - 1, 5, 17,
	     "not UTF-8 text: invalid trailing UTF-8 octet (byte 0x22)"},
	    {u16, sizeof(u16) - 1, 1, 1, "the file is UTF-16 text"},
	};
	struct fx *f = *state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct ism_conf *c = (struct ism_conf *)1;

		ism_diags_init(&f->d);
		assert_int_equal(
		    ism_conf_load_buf("t.yaml", cases[i].yaml, cases[i].len, &c, &f->d), -EINVAL);
		assert_null(c);
		if (f->d.n != 1 || f->d.items[0].line != cases[i].line ||
		    f->d.items[0].col != cases[i].col ||
		    strstr(f->d.items[0].msg, cases[i].msg) == NULL) {
			fprintf(stderr, "case %zu: wanted %d:%d \"%s\"; got:\n", i, cases[i].line,
				cases[i].col, cases[i].msg);
			dump(&f->d);
			fail();
		}
	}
}

/* A UTF-8 byte order mark at the start of the file is skipped, as kubectl and
 * PyYAML skip it: the file loads, and a column of its first line is counted
 * without it. */
static void test_utf8_bom(void **state)
{
	static const char ok[] = "\xef\xbb\xbf" APP;
	static const char bad[] =
	    "\xef\xbb\xbf"
	    "apiVersion: isthmus.io/v2\nkind: Appliance\nmetadata: {name: t}\n"
	    "spec: {locality: a/b}\n";
	struct fx *f = *state;
	struct ism_conf *c = NULL;

	if (ism_conf_load_buf("t.yaml", ok, sizeof(ok) - 1, &f->conf, &f->d) != 0)
		dump(&f->d);
	assert_int_equal(f->d.n, 0);
	assert_non_null(f->conf);
	ism_diags_init(&f->d);
	assert_int_equal(ism_conf_load_buf("t.yaml", bad, sizeof(bad) - 1, &c, &f->d), -EINVAL);
	assert_int_equal(f->d.n_errors, 1);
	assert_int_equal(f->d.items[0].line, 1);
	assert_int_equal(f->d.items[0].col, 13);
	assert_non_null(strstr(f->d.items[0].msg, "is not an apiVersion of Appliance"));
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

/* An admin listener on an address other than loopback is a warning: its
 * pages name every service and endpoint; on 127.0.0.1 or ::1, none. */
static void test_admin_public_warns(void **state)
{
	static const char pub[] = APP "  admin: {address: \"0.0.0.0:9901\"}\n" GW_PORT_8080;
	static const char lo4[] = APP "  admin: {address: \"127.0.0.9:9901\"}\n" GW_PORT_8080;
	static const char lo6[] = APP "  admin: {address: \"[::1]:9901\"}\n" GW_PORT_8080;
	struct fx *f = *state;
	struct ism_conf *c = NULL;
	bool warned = false;

	assert_int_equal(ism_conf_load_buf("t.yaml", pub, strlen(pub), &c, &f->d), 0);
	ism_conf_free(c);
	for (size_t i = 0; i < f->d.n; i++)
		warned |= strcmp(f->d.items[i].field, "Appliance t: spec.admin.address") == 0 &&
			  strstr(f->d.items[i].msg, "not a loopback address") != NULL;
	assert_true(warned);
	for (int k = 0; k < 2; k++) {
		const char *y = k ? lo6 : lo4;

		ism_diags_init(&f->d);
		assert_int_equal(ism_conf_load_buf("t.yaml", y, strlen(y), &c, &f->d), 0);
		ism_conf_free(c);
		for (size_t i = 0; i < f->d.n; i++)
			assert_string_not_equal(f->d.items[i].field,
						"Appliance t: spec.admin.address");
	}
}

/* A diagnostic's message holds no control byte but TAB: text from elsewhere
 * (an OpenID discovery document's jwks_uri) cannot forge a line of the
 * operator's output nor drive the terminal; ism_log writes the same way. */
static void test_diag_escapes(void **state)
{
	struct ism_diags d;
	char out[64];

	(void)state;
	ism_diags_init(&d);
	ism_diag_add(&d, ISM_DIAG_WARNING, "t.yaml", 1, 1, "f", "fetched %s",
		     "gopher://x\n2026 master[1] notice: forged\x1b[2K\tend\x7f");
	assert_string_equal(
	    d.items[0].msg,
	    "fetched gopher://x\\x0a2026 master[1] notice: forged\\x1b[2K\tend\\x7f");
	assert_int_equal(ism_log_escape(out, 8, "ab\rcd"), 7);
	assert_string_equal(out, "ab\\x0dc");
	assert_int_equal(ism_log_escape(out, 5, "ab\rcd"), 2);
	assert_string_equal(out, "ab");
}

/* Past the kept 64, an error takes the place of the last warning kept: 70
 * warnings (routes to hosts without a ServiceEntry), then the route table does
 * not fit a small arena, and that error is shown. */
static void test_error_after_many_warnings(void **state)
{
	struct fx *f = *state;
	size_t cap = 70 * 96 + 1024;
	char *yaml = malloc(cap);
	unsigned char small[4096];
	struct ism_arena arena;
	const struct ism_diag *last;
	size_t len;

	assert_non_null(yaml);
	len = (size_t)snprintf(yaml, cap,
			       "%s---\napiVersion: networking.istio.io/v1\nkind: Gateway\n"
			       "metadata: {name: gw}\nspec:\n  servers:\n"
			       "  - port: {number: 8080, name: http, protocol: HTTP}\n"
			       "    hosts: ['*']\n---\napiVersion: networking.istio.io/v1\n"
			       "kind: VirtualService\nmetadata: {name: v}\nspec:\n"
			       "  hosts: [a.example.com]\n  gateways: [gw]\n  http:\n",
			       APP);
	for (int i = 0; i < 70; i++)
		len += (size_t)snprintf(yaml + len, cap - len,
					"  - match: [{uri: {prefix: /s%d/}}]\n"
					"    route: [{destination: {host: s%d.example.com}}]\n",
					i, i);
	assert_int_equal(ism_conf_load_buf("t.yaml", yaml, len, &f->conf, &f->d), 0);
	assert_int_equal(f->d.n, 70);
	ism_arena_init(&arena, small, sizeof(small));
	assert_int_equal(ism_conf_compile(f->conf, &arena, test_ep_id, &f->eps, &f->t, &f->d),
			 -ENOMEM);
	assert_int_equal(f->d.n, 71);
	assert_int_equal(f->d.n_errors, 1);
	last = &f->d.items[63];
	assert_int_equal(last->severity, ISM_DIAG_ERROR);
	assert_string_equal(last->msg, "the route table does not fit in its arena (4096 bytes)");
	/* The warnings before it stay, in order. */
	assert_int_equal(f->d.items[62].severity, ISM_DIAG_WARNING);
	assert_non_null(strstr(f->d.items[62].msg, "s62.example.com"));
	free(yaml);
}

/* Types as the Kubernetes API server reads the YAML: a quoted number where
 * an integer, number or boolean goes, and a plain scalar that YAML 1.1 makes
 * a number or boolean where a string goes, are errors naming the field (they
 * loaded, a string field taking the digits). */
static void test_yaml_types(void **state)
{
	static const struct {
		const char *doc, *field, *msg;
	} cases[] = {
	    {"spec:\n  hosts: [12345]\n  http:\n  - route: [{destination: {host: a.b}}]\n",
	     "spec.hosts[0]", "must be a string, not an integer: quote it (\"12345\")"},
	    {"spec:\n  hosts: [a.example.com]\n  http:\n"
	     "  - route: [{destination: {host: a.b}, weight: '50'}, {destination: {host: c.d}, "
	     "weight: 50}]\n",
	     "spec.http[0].route[0].weight", "must be an integer, not a quoted string"},
	    {"spec:\n  hosts: [a.example.com]\n  http:\n  - name: yes\n"
	     "    route: [{destination: {host: a.b}}]\n",
	     "spec.http[0].name", "must be a string, not a boolean"},
	    {"spec:\n  hosts: [a.example.com]\n  http:\n  - name: r\n    timeout: 1s\n"
	     "    retries: {attempts: \"3\"}\n    route: [{destination: {host: a.b}}]\n",
	     "spec.http[0].retries.attempts", "must be an integer, not a quoted string"},
	    {"spec:\n  hosts: [a.example.com]\n  http:\n  - name: 1.5\n"
	     "    route: [{destination: {host: a.b}}]\n",
	     "spec.http[0].name", "must be a string, not a number"},
	    {"spec:\n  hosts: [a.example.com]\n  http:\n  - name: 0x1f\n"
	     "    route: [{destination: {host: a.b}}]\n",
	     "spec.http[0].name", "must be a string, not an integer"},
	    {"spec:\n  hosts: [a.example.com]\n  http:\n  - name: 0b1_0\n"
	     "    route: [{destination: {host: a.b}}]\n",
	     "spec.http[0].name", "must be a string, not an integer"},
	};
	struct fx *f = *state;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char yaml[1024], field[128];
		int len = snprintf(yaml, sizeof(yaml),
				   APP "---\napiVersion: networking.istio.io/v1\nkind: "
				       "VirtualService\nmetadata: {name: v}\n%s",
				   cases[i].doc);
		bool found = false;

		assert_true(len > 0 && (size_t)len < sizeof(yaml));
		ism_conf_free(f->conf);
		f->conf = NULL;
		memset(&f->d, 0, sizeof(f->d));
		assert_int_equal(ism_conf_load_buf("t.yaml", yaml, (size_t)len, &f->conf, &f->d),
				 -EINVAL);
		snprintf(field, sizeof(field), "VirtualService default/v: %s", cases[i].field);
		for (size_t k = 0; k < f->d.n && !found; k++)
			found = f->d.items[k].severity == ISM_DIAG_ERROR &&
				strcmp(f->d.items[k].field, field) == 0 &&
				strstr(f->d.items[k].msg, cases[i].msg) != NULL;
		if (!found)
			print_message("case %zu: no error \"%s\" at %s\n", i, cases[i].msg, field);
		assert_true(found);
	}
}

/* Scalar tags as go-yaml reads them for Kubernetes: !!int, !!float, !!bool and
 * !!null give the value of their type whether quoted or not (!!float an
 * integer too: 100 is 100.0), !!str a string whatever its text. */
static void test_yaml_tags(void **state)
{
	static const char yaml[] =
	    APP "---\napiVersion: networking.istio.io/v1\nkind: Gateway\n"
		"metadata: {name: gw}\nspec:\n  servers:\n"
		"  - port: {number: !!int \"8080\", name: !!str http, protocol: HTTP}\n"
		"    hosts: ['*']\n"
		"---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n"
		"metadata: {name: v}\nspec:\n  hosts: ['*']\n  gateways: [gw]\n  http:\n"
		"  - name: !!str 123\n"
		"    route: [{destination: {host: s.example.com}, weight: !!float 100}]\n"
		"---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
		"metadata: {name: s}\nspec:\n  hosts: [s.example.com]\n  resolution: STATIC\n"
		"  ports: [{number: 80, name: http}]\n"
		"  endpoints: [{address: 10.0.0.1, weight: !!int '5'}]\n";
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_route *r;

	assert_int_equal(t->n_listeners, 1);
	assert_int_equal(t->listeners[0].port, 8080);
	r = &t->listeners[0].vhosts[0].routes[0];
	assert_string_equal(r->name.p, "123");
	assert_int_equal(r->dest[0].weight, 100);
	assert_int_equal(loaded_cluster(t, "outbound|80||s.example.com")->endpoints[0].weight, 5);
}

/* Boolean fields take YAML 1.1's booleans, as Kubernetes reads them: y, yes,
 * on, True, TRUE... and n, no, off, False, FALSE...; anything else is an error. */
static void test_yaml_booleans(void **state)
{
	static const char *const trues[] = {"y",    "Y",    "yes", "Yes", "YES", "true",
					    "True", "TRUE", "on",  "On",  "ON"};
	static const char *const falses[] = {"n",     "N",     "no",  "No",  "NO", "false",
					     "False", "FALSE", "off", "Off", "OFF"};
	struct fx *f = *state;

	for (size_t i = 0; i < 2 * 11; i++) {
		const char *word = i < 11 ? trues[i] : falses[i - 11];
		char yaml[512];
		struct ism_conf *c = NULL;

		snprintf(yaml, sizeof(yaml), APP "  preserveExternalRequestId: %s\n", word);
		ism_diags_init(&f->d);
		if (ism_conf_load_buf("t.yaml", yaml, strlen(yaml), &c, &f->d) != 0)
			dump(&f->d);
		assert_non_null(c);
		if (c->app.preserve_rid != (i < 11)) {
			print_message("%s read as %d\n", word, c->app.preserve_rid);
			fail();
		}
		ism_conf_free(c);
	}
}

/* Endpoint weights as Istio and Envoy take them: 0 is 1 (Istio's
 * GetLoadBalancingWeight), any uint32 above is the weight (Envoy takes any
 * weight >= 1), a WorkloadEntry's as an endpoint's; a locality's weights sum
 * to at most 2^32 - 1, Envoy's bound, another locality's apart. */
static void test_endpoint_weights(void **state)
{
	static const char yaml[] =
	    APP "---\napiVersion: networking.istio.io/v1\nkind: Gateway\n"
		"metadata: {name: gw}\nspec:\n  servers:\n"
		"  - port: {number: 8080, name: http, protocol: HTTP}\n    hosts: ['*']\n"
		"---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n"
		"metadata: {name: v}\nspec:\n  hosts: ['*']\n  gateways: [gw]\n  http:\n"
		"  - match: [{uri: {prefix: /w}}]\n"
		"    route: [{destination: {host: w.example.com}}]\n"
		"  - route: [{destination: {host: s.example.com}}]\n"
		"---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
		"metadata: {name: s}\nspec:\n  hosts: [s.example.com]\n  resolution: STATIC\n"
		"  ports: [{number: 80, name: http, protocol: HTTP}]\n  endpoints:\n"
		"  - {address: 10.0.0.1, weight: 0, locality: r/a}\n"
		"  - {address: 10.0.0.2, weight: 2000000, locality: r/a}\n"
		"  - {address: 10.0.0.3, weight: 4294967295, locality: r/b}\n"
		"---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
		"metadata: {name: w}\nspec:\n  hosts: [w.example.com]\n  resolution: STATIC\n"
		"  ports: [{number: 80, name: http, protocol: HTTP}]\n"
		"  workloadSelector: {labels: {app: w}}\n"
		"---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n"
		"metadata: {name: w1}\nspec: {address: 10.0.1.1, weight: 0, labels: {app: w}}\n";
	static const char over[] =
	    APP "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
		"metadata: {name: s}\nspec:\n  hosts: [s.example.com]\n  resolution: STATIC\n"
		"  ports: [{number: 80, name: http, protocol: HTTP}]\n  endpoints:\n"
		"  - {address: 10.0.0.1, weight: 4294967295, locality: r/a}\n"
		"  - {address: 10.0.0.2, weight: 4294967295, locality: r/b}\n"
		"  - {address: 10.0.0.3, weight: 1, locality: r/a}\n";
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_cluster *c = loaded_cluster(t, "outbound|80||s.example.com");
	struct ism_conf *bad = NULL;

	assert_int_equal(c->n_endpoints, 3);
	for (uint32_t i = 0; i < 3; i++) {
		const char *a = c->endpoints[i].addr_text.p;
		uint32_t want = strcmp(a, "10.0.0.1:80") == 0	? 1
				: strcmp(a, "10.0.0.2:80") == 0 ? 2000000
								: UINT32_MAX;

		assert_int_equal(c->endpoints[i].weight, want);
	}
	c = loaded_cluster(t, "outbound|80||w.example.com");
	assert_int_equal(c->n_endpoints, 1);
	assert_int_equal(c->endpoints[0].weight, 1);
	ism_diags_init(&f->d);
	assert_int_equal(ism_conf_load_buf("t.yaml", over, strlen(over), &bad, &f->d), -EINVAL);
	assert_int_equal(f->d.n_errors, 1);
	assert_int_equal(f->d.items[0].line, 18);
	assert_int_equal(f->d.items[0].col, 33);
	assert_string_equal(f->d.items[0].field,
			    "ServiceEntry default/s: spec.endpoints[2].weight");
	assert_non_null(strstr(f->d.items[0].msg, "locality \"r/a\" sum to more than 4294967295"));
}

/* The Appliance, a Gateway on 8080 for every host and the head of a
 * VirtualService bound to it, up to its http list's items. */
#define GW_ANY_HTTP                                                                                \
	APP "---\napiVersion: networking.istio.io/v1\nkind: Gateway\n"                             \
	    "metadata: {name: gw}\nspec:\n  servers:\n"                                            \
	    "  - port: {number: 8080, name: http, protocol: HTTP}\n    hosts: ['*']\n"             \
	    "---\napiVersion: networking.istio.io/v1\nkind: VirtualService\n"                      \
	    "metadata: {name: v}\nspec:\n  hosts: ['*']\n  gateways: [gw]\n  http:\n"

/* workloadSelector over WorkloadEntries, selectors of different first labels
 * (indexed by each in turn): every label of a selector must match, in the
 * ServiceEntry's namespace only; entries in the order of their names. */
static void test_workload_selectors(void **state)
{
#define WE(name, ns, addr, labels)                                                                 \
	"---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: " name     \
	", namespace: " ns "}\nspec: {address: " addr ", labels: " labels "}\n"
#define SEL(name, labels)                                                                          \
	"---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: " name      \
	"}\n"                                                                                      \
	"spec:\n  hosts: [" name ".example.com]\n  resolution: STATIC\n"                           \
	"  ports: [{number: 80, name: http, protocol: HTTP}]\n  workloadSelector: "                \
	"{labels: " labels "}\n"
	static const char yaml[] = GW_ANY_HTTP
	    "  - match: [{uri: {prefix: /a}}]\n    route: [{destination: {host: a.example.com}}]\n"
	    "  - match: [{uri: {prefix: /b}}]\n    route: [{destination: {host: b.example.com}}]\n"
	    "  - route: [{destination: {host: c.example.com}}]\n" SEL("a", "{app: x}")
		SEL("b", "{tier: web, app: yy}") SEL("c", "{tier: web}")
		    WE("w3", "default", "10.0.0.3", "{app: x, tier: web}")
			WE("w1", "default", "10.0.0.1", "{app: x}")
			    WE("w2", "default", "10.0.0.2", "{app: yy, tier: web}")
				WE("w4", "default", "10.0.0.4", "{app: yy}")
				    WE("w5", "other", "10.0.0.5", "{app: x, tier: web}");
	static const char *const want[][3] = {
	    {"outbound|80||a.example.com", "10.0.0.1:80", "10.0.0.3:80"},
	    {"outbound|80||b.example.com", "10.0.0.2:80", NULL},
	    {"outbound|80||c.example.com", "10.0.0.2:80", "10.0.0.3:80"},
	};
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);

	for (size_t i = 0; i < 3; i++) {
		const struct ism_cluster *c = loaded_cluster(t, want[i][0]);
		uint32_t n = want[i][2] != NULL ? 2 : 1;

		assert_int_equal(c->n_endpoints, n);
		assert_string_equal(c->endpoints[0].addr_text.p, want[i][1]);
		if (n == 2)
			assert_string_equal(c->endpoints[1].addr_text.p, want[i][2]);
	}
	assert_true(has_warning(&f->d, "WorkloadEntry default/w4: spec.labels",
				"no ServiceEntry of namespace default selects it"));
#undef WE
#undef SEL
}

/* httpsRedirect on a server that is not HTTP is a warning, as Istio's
 * ValidateGateway has it (its connections are TLS already), not an error. */
static void test_https_redirect_elsewhere(void **state)
{
	static const char yaml[] = GW_SERVERS
	    "  - port: {number: 8443, name: tls, protocol: TLS}\n    hosts: [a.example.com]\n"
	    "    tls: {mode: PASSTHROUGH, httpsRedirect: true}\n";
	struct fx *f = *state;

	if (ism_conf_load_buf("t.yaml", yaml, strlen(yaml), &f->conf, &f->d) != 0)
		dump(&f->d);
	assert_non_null(f->conf);
	assert_true(has_warning(&f->d, "Gateway default/gw: spec.servers[0].tls.httpsRedirect",
				"should only be used with http servers (Istio warns the same)"));
	assert_int_equal(warning_line(&f->d, "should only be used with http servers"), 15);
}

/* Endpoints get Istio's topology labels (AugmentLabels): region, zone and
 * subzone from their locality, in place of any they write, and
 * topology.istio.io/network from network where they write none; without
 * `locality`, the label topology.istio.io/locality (or istio-locality), '.'
 * for '/', is the locality. Subsets and workloadSelectors match them. */
static void test_topology_labels(void **state)
{
#define SUB(name, k, val) "  - {name: " name ", labels: {" k ": " val "}}\n"
	static const char yaml[] = GW_ANY_HTTP
	    "  - match: [{uri: {prefix: /z}}]\n"
	    "    route: [{destination: {host: s.example.com, subset: zone-a}}]\n"
	    "  - match: [{uri: {prefix: /r}}]\n"
	    "    route: [{destination: {host: s.example.com, subset: region}}]\n"
	    "  - match: [{uri: {prefix: /s}}]\n"
	    "    route: [{destination: {host: s.example.com, subset: sub}}]\n"
	    "  - match: [{uri: {prefix: /n1}}]\n"
	    "    route: [{destination: {host: s.example.com, subset: n1}}]\n"
	    "  - match: [{uri: {prefix: /n2}}]\n"
	    "    route: [{destination: {host: s.example.com, subset: n2}}]\n"
	    "  - route: [{destination: {host: w.example.com}}]\n"
	    "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
	    "metadata: {name: d}\nspec:\n  host: s.example.com\n  subsets:\n" SUB(
		"zone-a", "topology.kubernetes.io/zone",
		"eu-west-1a") SUB("region", "topology.kubernetes.io/region",
				  "eu-west") SUB("sub", "topology.istio.io/subzone",
						 "s1") SUB("n1", "topology.istio.io/network", "n1")
		SUB("n2", "topology.istio.io/network",
		    "n2") "---\napiVersion: "
			  "networking.istio.io/"
			  "v1\nkind: "
			  "ServiceEntry\n"
			  "metadata: {name: s}\nspec:\n  hosts: [s.example.com]\n  resolution: "
			  "STATIC\n"
			  "  ports: [{number: 80, name: http, protocol: HTTP}]\n  endpoints:\n"
			  /* 1: written; 2: its label's; 3: the older label's, its zone label
			   * replaced; 4: no locality, its zone label as written; 5: the
			   * network label written wins; 6: network's label; 7: a subzone */
			  "  - {address: 10.0.0.1, locality: eu-west/eu-west-1a}\n"
			  "  - {address: 10.0.0.2, labels: {topology.istio.io/locality: "
			  "eu-west.eu-west-1a}}\n"
			  "  - {address: 10.0.0.3, labels: {istio-locality: eu-west.eu-west-1b, "
			  "topology.kubernetes.io/zone: eu-west-1a}}\n"
			  "  - {address: 10.0.0.4, labels: {topology.kubernetes.io/zone: "
			  "eu-west-1a}}\n"
			  "  - {address: 10.0.0.5, network: n1, labels: "
			  "{topology.istio.io/network: n2}}\n"
			  "  - {address: 10.0.0.6, network: n1}\n"
			  "  - {address: 10.0.0.7, locality: us-east/us-east-1a/s1}\n"
			  "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
			  "metadata: {name: w}\nspec:\n  hosts: [w.example.com]\n  resolution: "
			  "STATIC\n"
			  "  ports: [{number: 80, name: http, protocol: HTTP}]\n"
			  "  workloadSelector: {labels: {topology.kubernetes.io/zone: "
			  "eu-west-1b}}\n"
			  "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n"
			  "metadata: {name: w1}\nspec: {address: 10.0.1.1, locality: "
			  "eu-west/eu-west-1b}\n"
			  "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n"
			  "metadata: {name: w2}\nspec: {address: 10.0.1.2, labels: "
			  "{istio-locality: "
			  "eu-west.eu-west-1c}}\n";
	static const struct {
		const char *subset, *want;
	} cases[] = {
	    {"zone-a", "10.0.0.1:80 10.0.0.2:80 10.0.0.4:80 "},
	    {"region", "10.0.0.1:80 10.0.0.2:80 10.0.0.3:80 "},
	    {"sub", "10.0.0.7:80 "},
	    {"n1", "10.0.0.6:80 "},
	    {"n2", "10.0.0.5:80 "},
	};
	struct fx *f = *state;
	const struct ism_table *t = load_compile(f, yaml);
	const struct ism_cluster *c;
	char name[128], got[256];

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = 0;

		snprintf(name, sizeof(name), "outbound|80|%s|s.example.com", cases[i].subset);
		c = loaded_cluster(t, name);
		got[0] = '\0';
		/* in address order: the endpoints are sorted by priority first */
		for (int a = 1; a <= 7; a++)
			for (uint32_t j = 0; j < c->n_endpoints; j++) {
				char want[32];

				snprintf(want, sizeof(want), "10.0.0.%d:80", a);
				if (strcmp(c->endpoints[j].addr_text.p, want) == 0)
					n +=
					    (size_t)snprintf(got + n, sizeof(got) - n, "%s ", want);
			}
		if (strcmp(got, cases[i].want) != 0)
			fail_msg("subset %s holds %s, want %s", cases[i].subset, got,
				 cases[i].want);
	}
	/* The localities the labels gave. */
	c = loaded_cluster(t, "outbound|80|region|s.example.com");
	for (uint32_t j = 0; j < c->n_endpoints; j++)
		if (strcmp(c->endpoints[j].addr_text.p, "10.0.0.2:80") == 0)
			assert_string_equal(c->endpoints[j].locality.p, "eu-west/eu-west-1a");
		else if (strcmp(c->endpoints[j].addr_text.p, "10.0.0.3:80") == 0)
			assert_string_equal(c->endpoints[j].locality.p, "eu-west/eu-west-1b");
	c = loaded_cluster(t, "outbound|80||w.example.com");
	assert_int_equal(c->n_endpoints, 1);
	assert_string_equal(c->endpoints[0].addr_text.p, "10.0.1.1:80");
#undef SUB
}

/* A route table that does not fit because of its consistent-hash tables
 * says so (the error named no field): two subsets' Maglev tables of 65537
 * entries (256 KiB each) in a 256 KiB arena. */
static void test_arena_full_of_hash_tables(void **state)
{
	struct fx *f = *state;
	static const char yaml[] = GW_ANY_HTTP
	    "  - route: [{destination: {host: s.example.com, subset: a}}]\n"
	    "  - route: [{destination: {host: s.example.com, subset: b}}]\n"
	    "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
	    "metadata: {name: d}\nspec:\n  host: s.example.com\n  trafficPolicy:\n"
	    "    loadBalancer:\n      consistentHash: {useSourceIp: true, maglev: {tableSize: "
	    "65537}}\n  subsets:\n  - {name: a, labels: {v: a}}\n  - {name: b, labels: {v: b}}\n"
	    "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
	    "metadata: {name: s}\nspec:\n  hosts: [s.example.com]\n  location: MESH_EXTERNAL\n"
	    "  resolution: STATIC\n  ports: [{number: 80, name: http, protocol: HTTP}]\n"
	    "  endpoints:\n  - {address: 10.0.0.1, labels: {v: a}}\n"
	    "  - {address: 10.0.0.2, labels: {v: b}}\n";
	static unsigned char mem[256 << 10];
	struct ism_arena arena;

	assert_int_equal(ism_conf_load_buf("t.yaml", yaml, sizeof(yaml) - 1, &f->conf, &f->d), 0);
	ism_arena_init(&arena, mem, sizeof(mem));
	assert_int_equal(ism_conf_compile(f->conf, &arena, test_ep_id, &f->eps, &f->t, &f->d),
			 -ENOMEM);
	assert_int_equal(f->d.n_errors, 1);
	assert_non_null(strstr(f->d.items[f->d.n - 1].msg,
			       "consistentHash rings and Maglev tables fill most of it"));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_example_file, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_matches_and_defaults, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_ep_id_full, fx_setup, fx_teardown),
	    cmocka_unit_test(test_parse_time),
	    cmocka_unit_test_setup_teardown(test_gateway_creation_order, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_binding, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_listener_port, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_durations, fx_setup, fx_teardown),
	    cmocka_unit_test(test_duration_syntax),
	    cmocka_unit_test_setup_teardown(test_path_normalization_names, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_sample_bookinfo, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_sample_helloworld, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_sample_drs, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_sample_peer_authn, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_sample_weighted, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_sample_reviews, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_sample_jason, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_mesh_only_unknown_subset, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_failover_task, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_region_only_locality, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_kubernetes_forms, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_unreachable_rules, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_ineffective_matches, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_failover_without_outlier, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_failover_disabled, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_failover_priority, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_distribute, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_locality_first_entry_wins, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_warmup_only_rr_lr, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_retries, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_retry_names, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_consistent_hash, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_pool_outlier_ports, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_auto_mtls_without_mesh, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_proxy_headers, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_gateway_no_effect, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_kinds_no_effect, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_upstream_proxy_protocol, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_subset_port_level_replaces, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_unix_endpoints, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_tunnel, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_zone_aware, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_h2_protocols, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_h2_pool, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_h2_limits, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_authz_compiled, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_authz_dry_run_values, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_extauthz_compiled, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_authn_compiled, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_authn_unfetched, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_hc_fields, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_hc_port_keys, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_hc_port_keys_shared, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_dr_workload_selector, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_dr_scopes, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_proxy_config, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_telemetry, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_telemetry_filter, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_later_kinds_elsewhere, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_access_log, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_access_log_dict, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_access_log_dict_nested, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_grpc_web_listener, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_listener_names_unique, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_rewrite, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_headers, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_redirect, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_delegate_actions, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_direct_response, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_direct_response_size, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_invalid, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_one_error_per_mistake, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_several_errors_and_format, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_bad_bytes, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_utf8_bom, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_listen_addresses, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_unreadable_file, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_unknown_field_no_guess, fx_setup, fx_teardown),
	    cmocka_unit_test(test_diag_escapes),
	    cmocka_unit_test_setup_teardown(test_admin_public_warns, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_many_errors, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_error_after_many_warnings, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_arena_full_of_hash_tables, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_yaml_types, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_yaml_tags, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_topology_labels, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_https_redirect_elsewhere, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_workload_selectors, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_endpoint_weights, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_yaml_booleans, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_gateway_hosts_lowercased, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_match_gateways, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_delegate, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_delegate_merge_rules, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_empty_string_matches, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_delegate_errors, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_mirror, fx_setup, fx_teardown),
	    cmocka_unit_test_setup_teardown(test_mirror_errors, fx_setup, fx_teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
