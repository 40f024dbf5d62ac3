/* SPDX-License-Identifier: Apache-2.0 */
/* Loading scales: each shape a big deployment (or a hostile file) can take is
 * generated in memory at size n and 8n, loaded and compiled through the conf
 * interface, and the CPU time of the big one must stay well below 64 times the
 * small one (what quadratic work gives): under 24 times, the best of a few
 * tries. Plus one absolute bound, the case: a 1 MB file with 100,000
 * keys in one mapping loads in under 3 s (it took 25 s). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "conf/conf.h"
#include "master/master.h"
#include "tests/unit/check.h"

#if defined(__SANITIZE_ADDRESS__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

/* Sanitizers slow everything down: smaller shapes keep the test short. */
#define SCALE(n) (SANITIZED ? (n) / 4 : (n))

#define FACTOR	  8  /* the big shape is FACTOR times the small one */
#define MAX_RATIO 24 /* linear gives about 8, n log n a little more, quadratic 64 */
#define TRIES	  3
#define ARENA	  (256u << 20)

/* --- a growing text buffer --- */

struct text {
	char *p;
	size_t len, cap;
};

static void put(struct text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(struct text *t, const char *fmt, ...)
{
	va_list ap;
	int w;

	for (;;) {
		va_start(ap, fmt);
		w = vsnprintf(t->p + t->len, t->cap - t->len, fmt, ap);
		va_end(ap);
		assert_true(w >= 0);
		if ((size_t)w < t->cap - t->len)
			break;
		t->cap = t->cap * 2 + (size_t)w + 1;
		t->p = realloc(t->p, t->cap);
		assert_non_null(t->p);
	}
	t->len += (size_t)w;
}

/* --- documents the shapes are made of --- */

static void app(struct text *t)
{
	put(t, "apiVersion: isthmus.io/v1\nkind: Appliance\nmetadata:\n  name: t\n"
	       "spec:\n  locality: r1/z1\n  namespace: default\n");
}

static void doc(struct text *t, const char *kind, const char *name)
{
	put(t,
	    "---\napiVersion: networking.istio.io/v1\nkind: %s\nmetadata:\n  name: %s\n"
	    "spec:\n",
	    kind, name);
}

/* A Gateway on port with n hosts, line i made of the format host (or "*"
 * when n is 0); gateway: h<i>.example.com. */
static void gateway_with(struct text *t, const char *name, unsigned port, const char *host,
			 size_t n)
{
	doc(t, "Gateway", name);
	put(t, "  servers:\n  - port: {number: %u, name: http, protocol: HTTP}\n    hosts:\n",
	    port);
	if (n == 0)
		put(t, "    - '*'\n");
	for (size_t i = 0; i < n; i++)
		put(t, host, i);
}

static void gateway(struct text *t, const char *name, unsigned port, size_t n)
{
	gateway_with(t, name, port, "    - h%zu.example.com\n", n);
}

/* A ServiceEntry for host <name>.svc, up to its endpoints' list items. */
static void service_head(struct text *t, const char *name)
{
	doc(t, "ServiceEntry", name);
	put(t, "  hosts: [%s.svc]\n  ports: [{number: 80, name: http}]\n", name);
	put(t, "  resolution: STATIC\n  endpoints:\n");
}

/* A ServiceEntry for host <name>.svc with one endpoint per address given. */
static void service(struct text *t, const char *name, size_t first_ip, size_t n_eps)
{
	service_head(t, name);
	for (size_t i = 0; i < n_eps; i++)
		put(t, "  - {address: 10.%zu.%zu.%zu}\n", (first_ip + i) >> 16 & 255,
		    (first_ip + i) >> 8 & 255, (first_ip + i) & 255);
}

/* ServiceEntry s and VirtualService v with n hosts (line i made of the format
 * host), bound to gw, one route to s.svc. */
static void vservice_with(struct text *t, const char *host, size_t n)
{
	service(t, "s", 1, 1);
	doc(t, "VirtualService", "v");
	put(t, "  hosts:\n");
	for (size_t i = 0; i < n; i++)
		put(t, host, i);
	put(t, "  gateways: [gw]\n  http:\n  - route:\n    - destination: {host: s.svc}\n");
}

/* A VirtualService bound to gw with one host and one route to host dest. */
static void vservice(struct text *t, const char *name, const char *host, const char *dest)
{
	doc(t, "VirtualService", name);
	put(t,
	    "  hosts: ['%s']\n  gateways: [gw]\n  http:\n  - route:\n    - destination: {host: "
	    "%s}\n",
	    host, dest);
}

/* --- the shapes --- */

/* An Appliance whose field holds n lines of item (a format of the line's
 * number). */
static void app_with(struct text *t, const char *field, const char *item, size_t n)
{
	app(t);
	put(t, "  %s:\n", field);
	for (size_t i = 0; i < n; i++)
		put(t, item, i);
}

/* The first case: one mapping with n keys. */
static void shape_keys(struct text *t, size_t n)
{
	app_with(t, "labels", "    k%zu: v\n", n);
}

/* The second case: one VirtualService with n hosts. */
static void shape_vs_hosts(struct text *t, size_t n)
{
	app(t);
	gateway(t, "gw", 8080, 0);
	vservice_with(t, "  - h%zu.example.com\n", n);
}

/* A Gateway with n hosts and n VirtualServices of one host each. */
static void shape_gw_hosts(struct text *t, size_t n)
{
	char name[32], host[64];

	app(t);
	gateway(t, "gw", 8080, n);
	service(t, "s", 1, 1);
	for (size_t i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "v%zu", i);
		snprintf(host, sizeof(host), "h%zu.example.com", i);
		vservice(t, name, host, "s.svc");
	}
}

/* n ServiceEntries and n VirtualServices routing to them: n clusters. */
static void shape_services(struct text *t, size_t n)
{
	char name[32], host[64], dest[64];

	app(t);
	gateway(t, "gw", 8080, 0);
	for (size_t i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "s%zu", i);
		service(t, name, i + 1, 1);
		snprintf(name, sizeof(name), "v%zu", i);
		snprintf(host, sizeof(host), "h%zu.example.com", i);
		snprintf(dest, sizeof(dest), "s%zu.svc", i);
		vservice(t, name, host, dest);
	}
}

/* One VirtualService with n routes, each to its own host: n clusters. */
static void shape_routes(struct text *t, size_t n)
{
	app(t);
	gateway(t, "gw", 8080, 0);
	doc(t, "VirtualService", "v");
	put(t, "  hosts: [a.example.com]\n  gateways: [gw]\n  http:\n");
	for (size_t i = 0; i < n; i++)
		put(t, "  - route:\n    - destination: {host: s%zu.svc}\n", i);
}

/* n DestinationRules, and routes to their hosts. */
static void shape_drs(struct text *t, size_t n)
{
	char name[32];

	app(t);
	gateway(t, "gw", 8080, 0);
	for (size_t i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "d%zu", i);
		doc(t, "DestinationRule", name);
		put(t, "  host: s%zu.svc\n  trafficPolicy: {loadBalancer: {simple: RANDOM}}\n", i);
	}
	doc(t, "VirtualService", "v");
	put(t, "  hosts: [a.example.com]\n  gateways: [gw]\n  http:\n");
	for (size_t i = 0; i < n; i++)
		put(t, "  - route:\n    - destination: {host: s%zu.svc}\n", i);
}

/* A ServiceEntry of n endpoints (each in its own locality, labelled with its
 * subset), a DestinationRule of n subsets, a route to each subset. */
static void shape_subsets(struct text *t, size_t n)
{
	app(t);
	gateway(t, "gw", 8080, 0);
	service_head(t, "s");
	for (size_t i = 0; i < n; i++)
		put(t, "  - {address: 10.1.%zu.%zu, locality: r1/z%zu, labels: {v: s%zu}}\n",
		    (i >> 8) & 255, i & 255, i, i);
	doc(t, "DestinationRule", "d");
	put(t, "  host: s.svc\n  subsets:\n");
	for (size_t i = 0; i < n; i++)
		put(t, "  - {name: s%zu, labels: {v: s%zu}}\n", i, i);
	doc(t, "VirtualService", "v");
	put(t, "  hosts: [a.example.com]\n  gateways: [gw]\n  http:\n");
	for (size_t i = 0; i < n; i++)
		put(t, "  - route:\n    - destination: {host: s.svc, subset: s%zu}\n", i);
}

/* n health checks (of n services). */
static void shape_healthchecks(struct text *t, size_t n)
{
	app_with(t, "healthChecks", "  - {host: h%zu.example.com, port: 80}\n", n);
}

/* A ServiceEntry with n ports, and an endpoint naming each. */
static void shape_ports(struct text *t, size_t n)
{
	app(t);
	doc(t, "ServiceEntry", "s");
	put(t, "  hosts: [s.svc]\n  resolution: STATIC\n  ports:\n");
	for (size_t i = 0; i < n; i++)
		put(t, "  - {number: %zu, name: p%zu}\n", i + 1, i);
	put(t, "  endpoints:\n  - address: 10.0.0.1\n    ports:\n");
	for (size_t i = 0; i < n; i++)
		put(t, "      p%zu: %zu\n", i, i + 1);
}

/* A Gateway with n servers on n ports (n listeners), all PROXY protocol. */
static void shape_servers(struct text *t, size_t n)
{
	app(t);
	put(t, "  proxyProtocol:\n    ports:\n");
	for (size_t i = 0; i < n; i++)
		put(t, "    - %zu\n", 1024 + i);
	doc(t, "Gateway", "gw");
	put(t, "  servers:\n");
	for (size_t i = 0; i < n; i++)
		put(t, "  - port: {number: %zu, name: p%zu, protocol: HTTP}\n    hosts: ['*']\n",
		    1024 + i, i);
	service(t, "s", 1, 1);
	vservice(t, "v", "a.example.com", "s.svc");
}

/* n Gateways, one VirtualService bound to every one. */
static void shape_gateways(struct text *t, size_t n)
{
	char name[32];

	app(t);
	for (size_t i = 0; i < n; i++) {
		snprintf(name, sizeof(name), "g%zu", i);
		gateway(t, name, (unsigned)(1024 + i), 0);
	}
	service(t, "s", 1, 1);
	doc(t, "VirtualService", "v");
	put(t, "  hosts: [a.example.com]\n  gateways:\n");
	for (size_t i = 0; i < n; i++)
		put(t, "  - g%zu\n", i);
	put(t, "  http:\n  - route:\n    - destination: {host: s.svc}\n");
}

/* A Gateway with n hosts, one VirtualService with n wildcard hosts, each
 * covering one of them. */
static void shape_wildcards(struct text *t, size_t n)
{
	app(t);
	gateway_with(t, "gw", 8080, "    - h.d%zu.example.com\n", n);
	vservice_with(t, "  - '*.d%zu.example.com'\n", n);
}

/* Endpoints with n labels each, a subset selecting on all of them. */
static void shape_labels(struct text *t, size_t n)
{
	app(t);
	gateway(t, "gw", 8080, 0);
	service_head(t, "s");
	for (int e = 0; e < 4; e++) {
		put(t, "  - address: 10.0.0.%d\n    labels:\n", e + 1);
		for (size_t i = 0; i < n; i++)
			put(t, "      k%zu: v\n", i);
	}
	doc(t, "DestinationRule", "d");
	put(t, "  host: s.svc\n  subsets:\n  - name: a\n    labels:\n");
	for (size_t i = 0; i < n; i++)
		put(t, "      k%zu: v\n", i);
	doc(t, "VirtualService", "v");
	put(t, "  hosts: [a.example.com]\n  gateways: [gw]\n  http:\n  - route:\n"
	       "    - destination: {host: s.svc, subset: a}\n");
}

/* n ServiceEntries selecting by workloadSelector each its one of n
 * WorkloadEntries: by two labels (app: w<i>, tier: web), every selector
 * compared with every entry before the index; or, keyed, by a label of a key
 * of its own (k<i>: v), which an index by one key at a time left quadratic. */
static void selector_shape(struct text *t, size_t n, bool keyed)
{
	app(t);
	gateway(t, "gw", 8080, 0);
	for (size_t i = 0; i < n; i++) {
		char name[32], labels[64];

		snprintf(labels, sizeof(labels), keyed ? "{k%zu: v}" : "{app: w%zu, tier: web}", i);
		snprintf(name, sizeof(name), "w%zu", i);
		doc(t, "WorkloadEntry", name);
		put(t, "  address: 10.%zu.%zu.%zu\n  labels: %s\n", i >> 16 & 255, i >> 8 & 255,
		    i & 255, labels);
		snprintf(name, sizeof(name), "s%zu", i);
		doc(t, "ServiceEntry", name);
		put(t,
		    "  hosts: [s%zu.svc]\n  ports: [{number: 80, name: http}]\n  resolution: "
		    "STATIC\n"
		    "  workloadSelector: {labels: %s}\n",
		    i, labels);
	}
	doc(t, "VirtualService", "v");
	put(t, "  hosts: [a.example.com]\n  gateways: [gw]\n  http:\n  - route:\n"
	       "    - destination: {host: s0.svc}\n");
}

static void shape_selectors(struct text *t, size_t n)
{
	selector_shape(t, n, false);
}

static void shape_selector_keys(struct text *t, size_t n)
{
	selector_shape(t, n, true);
}

/* failoverPriority with n entries over n / 4 endpoints. */
static void shape_failover(struct text *t, size_t n)
{
	app(t);
	gateway(t, "gw", 8080, 0);
	service_head(t, "s");
	for (size_t i = 0; i < n / 4; i++)
		put(t, "  - {address: 10.1.%zu.%zu, locality: r1/z%zu}\n", (i >> 8) & 255, i & 255,
		    i % 3);
	doc(t, "DestinationRule", "d");
	put(t, "  host: s.svc\n  trafficPolicy:\n    outlierDetection: {consecutive5xxErrors: 1}\n"
	       "    loadBalancer:\n      localityLbSetting:\n        failoverPriority:\n");
	for (size_t i = 0; i < n; i++)
		put(t, "        - 'k%zu='\n", i);
	vservice(t, "v", "a.example.com", "s.svc");
}

/* A DestinationRule with n port-level settings and n subsets, failover without
 * outlier detection (warned about, for every subset and port). */
static void shape_policy_ports(struct text *t, size_t n)
{
	static const char lb[] =
	    "loadBalancer: {simple: RANDOM, localityLbSetting: {failover: [{from: r1, to: r2}]}}";

	app(t);
	doc(t, "DestinationRule", "d");
	put(t, "  host: s.svc\n  trafficPolicy:\n    portLevelSettings:\n");
	for (size_t i = 0; i < n; i++)
		put(t, "    - {port: {number: %zu}, %s}\n", i + 1, lb);
	put(t, "  subsets:\n");
	for (size_t i = 0; i < n; i++)
		put(t, "  - {name: v%zu, trafficPolicy: {%s}}\n", i, lb);
}

/* --- measuring --- */

static int next_id(void *ctx, enum ism_conf_slot kind, const char *key, bool has_hc, uint32_t *id)
{
	uint32_t *next = ctx;

	(void)key;
	(void)has_hc;
	if (kind == ISM_CONF_SLOT_OUTLIER) {
		*id = ISM_NO_OD_SLOT;
		return 0;
	}
	*id = (*next)++;
	return 0;
}

static double cpu_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds to load and compile text (which must be valid). */
static double load_time(const char *name, const struct text *t, void *mem)
{
	struct ism_diags *d = calloc(1, sizeof(*d));
	struct ism_conf *conf = NULL;
	const struct ism_table *table = NULL;
	struct ism_arena arena;
	uint32_t next = 0;
	double t0, t1;
	int rc;

	assert_non_null(d);
	ism_diags_init(d);
	ism_arena_init(&arena, mem, ARENA);
	t0 = cpu_now();
	rc = ism_conf_load_buf("scale.yaml", t->p, t->len, &conf, d);
	if (rc == 0)
		rc = ism_conf_compile(conf, &arena, next_id, &next, &table, d);
	ism_conf_free(conf);
	t1 = cpu_now();
	if (rc != 0 || d->n_errors != 0)
		ism_diags_print(stderr, d);
	CHECK(name, rc == 0 && d->n_errors == 0, "the shape does not load: %d", rc);
	free(d);
	return t1 - t0;
}

struct shape {
	const char *name;
	void (*gen)(struct text *t, size_t n);
	size_t n; /* small size, before SCALE */
};

static void check_shape(const struct shape *s)
{
	struct text small = {0}, big = {0};
	void *mem = malloc(ARENA);
	double best_small = 1e9, best_big = 1e9, ratio = 0;
	size_t n = SCALE(s->n);

	assert_non_null(mem);
	s->gen(&small, n);
	s->gen(&big, FACTOR * n);
	for (int i = 0; i < TRIES; i++) {
		double ts = load_time(s->name, &small, mem);
		double tb = load_time(s->name, &big, mem);

		best_small = ts < best_small ? ts : best_small;
		best_big = tb < best_big ? tb : best_big;
		ratio = best_big / (best_small > 1e-6 ? best_small : 1e-6);
		/* Enough: below the bound, or far above (quadratic, not noise). */
		if (ratio < MAX_RATIO || ratio > 2 * MAX_RATIO)
			break;
	}
	print_message("%-14s n=%-6zu %8zu bytes: %.4f s, %zux: %.4f s, ratio %.1f\n", s->name, n,
		      small.len, best_small, (size_t)FACTOR, best_big, ratio);
	CHECK(s->name, ratio < MAX_RATIO,
	      "%zux the size took %.1fx the time (%.4f s for n=%zu, %.4f s for %zu): "
	      "superlinear",
	      (size_t)FACTOR, ratio, best_small, n, best_big, FACTOR * n);
	free(small.p);
	free(big.p);
	free(mem);
}

static const struct shape shapes[] = {
    {"keys", shape_keys, 16000},
    {"vs_hosts", shape_vs_hosts, 12000},
    {"gw_hosts", shape_gw_hosts, 1500},
    {"services", shape_services, 2000},
    {"routes", shape_routes, 5000},
    {"drs", shape_drs, 1500},
    {"subsets", shape_subsets, 800},
    {"healthchecks", shape_healthchecks, 6000},
    {"ports", shape_ports, 5000},
    {"servers", shape_servers, 1500},
    {"gateways", shape_gateways, 1000},
    {"wildcards", shape_wildcards, 4000},
    {"labels", shape_labels, 3000},
    {"failover", shape_failover, 8000},
    {"selectors", shape_selectors, 1000},
    {"selector_keys", shape_selector_keys, 1000},
    {"policy_ports", shape_policy_ports, 500},
};

static void test_shape(void **state)
{
	check_shape(*state);
}

/* The case, absolute: 100,000 keys in one mapping (about 1 MB) load in
 * under 3 s of CPU (25 s before). */
static void test_100k_keys(void **state)
{
	struct text t = {0};
	struct ism_diags *d = calloc(1, sizeof(*d));
	struct ism_conf *conf = NULL;
	double t0, t1;

	(void)state;
	assert_non_null(d);
	ism_diags_init(d);
	app(&t);
	put(&t, "  labels:\n");
	for (size_t i = 0; i < 100000; i++)
		put(&t, "    %05zx: v\n", i);
	assert_true(t.len > 1000000 && t.len < 1500000);
	t0 = cpu_now();
	assert_int_equal(ism_conf_load_buf("keys.yaml", t.p, t.len, &conf, d), 0);
	t1 = cpu_now();
	print_message("100,000 keys, %zu bytes: %.3f s\n", t.len, t1 - t0);
	assert_true(t1 - t0 < 3.0);
	ism_conf_free(conf);
	free(d);
	free(t.p);
}

/* A duplicate key among many is still found, at its first occurrence. */
static void test_duplicate_among_many(void **state)
{
	struct text t = {0};
	struct ism_diags *d = calloc(1, sizeof(*d));
	struct ism_conf *conf = NULL;

	(void)state;
	assert_non_null(d);
	ism_diags_init(d);
	app(&t);
	put(&t, "  labels:\n");
	for (size_t i = 0; i < 20000; i++)
		put(&t, "    k%zu: v\n", i);
	put(&t, "    k12345: again\n");
	assert_int_equal(ism_conf_load_buf("dup.yaml", t.p, t.len, &conf, d), -EINVAL);
	assert_int_equal(d->n_errors, 1);
	assert_int_equal(d->items[0].line, 8 + 20000 + 1);
	assert_int_equal(d->items[0].col, 5);
	assert_string_equal(d->items[0].msg,
			    "duplicate key \"k12345\" (first at line 12354, column 5)");
	free(d);
	free(t.p);
}

/* isthmus -c counts an endpoint once, however many clusters hold it, as the
 * master's slots do (ism_shm_ep_intern): 5000 endpoints, each in the
 * service's cluster and in a subset's, take 5000 of the 8192 ids, not 10,000
 * (-c refused the file the master serves). */
static void test_check_counts_endpoints_once(void **state)
{
	char path[] = "/tmp/isthmus-check-ids-XXXXXX";
	struct text t = {0};
	int fd, rc;

	(void)state;
	app(&t);
	gateway(&t, "gw", 8080, 0);
	doc(&t, "VirtualService", "v");
	put(&t, "  hosts: ['*']\n  gateways: [gw]\n  http:\n"
		"  - match: [{uri: {prefix: /a}}]\n"
		"    route: [{destination: {host: s.svc, subset: a}}]\n"
		"  - route: [{destination: {host: s.svc}}]\n");
	doc(&t, "DestinationRule", "d");
	put(&t, "  host: s.svc\n  subsets: [{name: a, labels: {app: s}}]\n");
	service_head(&t, "s");
	for (size_t i = 0; i < 5000; i++)
		put(&t, "  - {address: 10.1.%zu.%zu, labels: {app: s}}\n", i >> 8, i & 255);
	fd = mkstemp(path);
	assert_true(fd >= 0);
	assert_int_equal(write(fd, t.p, t.len), (ssize_t)t.len);
	close(fd);
	rc = ism_master_check(path, true);
	unlink(path);
	free(t.p);
	assert_int_equal(rc, 0);
}

int main(void)
{
	struct CMUnitTest tests[sizeof(shapes) / sizeof(shapes[0]) + 3];
	size_t n = 0;

	for (size_t i = 0; i < sizeof(shapes) / sizeof(shapes[0]); i++)
		tests[n++] = (struct CMUnitTest){.name = shapes[i].name,
						 .test_func = test_shape,
						 .initial_state = (void *)&shapes[i]};
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_100k_keys);
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_duplicate_among_many);
	tests[n++] = (struct CMUnitTest)cmocka_unit_test(test_check_counts_endpoints_once);
	return _cmocka_run_group_tests("conf_scale", tests, n, NULL, NULL);
}
