/* SPDX-License-Identifier: Apache-2.0 */
/* What a newer table calls the objects of an older one (worker/regen.h): the
 * clusters, endpoints, route and TCP route counters that requests in flight
 * across a reload move to, found by name (and endpoint slot), not by their
 * place in the table. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conf/conf.h"
#include "loaded.h"
#include "worker/regen.h"

#define HEAD                                                                                       \
	"apiVersion: isthmus.io/v1\nkind: Appliance\nmetadata: {name: t}\nspec:\n"                 \
	"  locality: r/z\n"                                                                        \
	"---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n"    \
	"  servers:\n"                                                                             \
	"  - port: {number: 8080, name: http, protocol: HTTP}\n    hosts: [\"*\"]\n"               \
	"  - port: {number: 9000, name: tcp, protocol: TCP}\n    hosts: [\"*\"]\n"                 \
	"---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: tcp}\n"     \
	"spec:\n  hosts: [tcp.test]\n  ports: [{number: 9000, name: tcp, protocol: TCP}]\n"        \
	"  resolution: STATIC\n  endpoints: [{address: 127.0.0.4}]\n"

#define SE(name, host, eps)                                                                        \
	"---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: " name      \
	"}\nspec:\n  hosts: [" host "]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n"     \
	"  resolution: STATIC\n  endpoints: [" eps "]\n"

#define VS(http)                                                                                   \
	"---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\n"    \
	"spec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n" http                                \
	"  tcp:\n  - match: [{port: 9000}]\n    route: [{destination: {host: tcp.test}}]\n"

/* The file before the reload: svc.test and zzz.test, routes "main" and "gone". */
static const char *const FILE_A =
    HEAD SE("svc", "svc.test", "{address: 127.0.0.2}, {address: 127.0.0.3}")
	SE("zzz", "zzz.test", "{address: 127.0.0.6}")
	    VS("  - name: main\n    match: [{uri: {prefix: /m}}]\n"
	       "    route: [{destination: {host: svc.test}}]\n"
	       "  - name: gone\n    route: [{destination: {host: zzz.test}}]\n");

/* After: aaa.test in front (svc's cluster moves), zzz.test gone, svc with
 * .3 kept and .5 new, route "main" after a new "first". */
static const char *const FILE_B = HEAD SE("aaa", "aaa.test", "{address: 127.0.0.9}")
    SE("svc", "svc.test", "{address: 127.0.0.5}, {address: 127.0.0.3}")
	VS("  - name: first\n    match: [{uri: {prefix: /a}}]\n"
	   "    route: [{destination: {host: aaa.test}}]\n"
	   "  - name: main\n    route: [{destination: {host: svc.test}}]\n");

static uint32_t cluster_index(const struct ism_table *t, const char *name)
{
	return (uint32_t)(loaded_cluster(t, name) - t->clusters);
}

static const struct ism_endpoint *endpoint(const struct ism_cluster *cl, const char *addr)
{
	for (uint32_t e = 0; e < cl->n_endpoints; e++)
		if (strncmp(cl->endpoints[e].addr_text.p, addr, strlen(addr)) == 0)
			return &cl->endpoints[e];
	fail_msg("no endpoint %s in %s", addr, cl->name.p);
	return NULL;
}

static const struct ism_route *route(const struct ism_table *t, const char *name)
{
	const struct ism_listener *l = &t->listeners[0];

	for (uint32_t v = 0; v < l->n_vhosts; v++)
		for (uint32_t i = 0; i < l->vhosts[v].n_routes; i++)
			if (strcmp(l->vhosts[v].routes[i].name.p, name) == 0)
				return &l->vhosts[v].routes[i];
	fail_msg("no route %s", name);
	return NULL;
}

static const struct ism_l4route *tcp_route(const struct ism_table *t)
{
	for (uint32_t l = 0; l < t->n_listeners; l++)
		if (t->listeners[l].n_tcp == 1)
			return &t->listeners[l].tcp_routes[0];
	fail_msg("no TCP route");
	return NULL;
}

struct two {
	struct loaded_slots slots;
	struct loaded a, b;
	struct ism_regen g;
};

static int setup(void **state)
{
	struct two *x = calloc(1, sizeof(*x));

	assert_non_null(x);
	if (loaded_load_ids(&x->a, "a.yaml", FILE_A, loaded_slot_id, &x->slots) != 0 ||
	    loaded_load_ids(&x->b, "b.yaml", FILE_B, loaded_slot_id, &x->slots) != 0) {
		ism_diags_print(stderr, &x->a.d);
		ism_diags_print(stderr, &x->b.d);
		fail_msg("a file did not load");
	}
	assert_int_equal(ism_regen_init(&x->g, x->a.t, x->b.t), 0);
	*state = x;
	return 0;
}

static int teardown(void **state)
{
	struct two *x = *state;

	ism_regen_free(&x->g);
	loaded_free(&x->a);
	loaded_free(&x->b);
	free(x);
	return 0;
}

static void test_cluster_by_name(void **state)
{
	struct two *x = *state;
	const uint32_t a = cluster_index(x->a.t, "outbound|80||svc.test");
	const uint32_t b = cluster_index(x->b.t, "outbound|80||svc.test");

	/* Its place changed (aaa.test came in front): found by its name. */
	assert_int_not_equal(a, b);
	assert_int_equal(ism_regen_cluster(&x->g, a), b);
	assert_int_equal(ism_regen_cluster(&x->g, cluster_index(x->a.t, "outbound|9000||tcp.test")),
			 cluster_index(x->b.t, "outbound|9000||tcp.test"));
	/* Gone from the newer file; none chosen; out of range. */
	assert_int_equal(ism_regen_cluster(&x->g, cluster_index(x->a.t, "outbound|80||zzz.test")),
			 UINT32_MAX);
	assert_int_equal(ism_regen_cluster(&x->g, UINT32_MAX), UINT32_MAX);
	assert_int_equal(ism_regen_cluster(&x->g, x->a.t->n_clusters), UINT32_MAX);
}

static void test_endpoint_by_slot(void **state)
{
	struct two *x = *state;
	const struct ism_cluster *ca = loaded_cluster(x->a.t, "outbound|80||svc.test");
	const struct ism_cluster *cb = loaded_cluster(x->b.t, "outbound|80||svc.test");
	const uint32_t b = (uint32_t)(cb - x->b.t->clusters);

	assert_ptr_equal(ism_regen_endpoint(&x->g, b, endpoint(ca, "127.0.0.3")),
			 endpoint(cb, "127.0.0.3"));
	/* .2 is not one of the cluster's any more. */
	assert_null(ism_regen_endpoint(&x->g, b, endpoint(ca, "127.0.0.2")));
	assert_null(ism_regen_endpoint(&x->g, b, NULL));
	assert_null(ism_regen_endpoint(&x->g, UINT32_MAX, endpoint(ca, "127.0.0.3")));
	/* Not another cluster's endpoint of the same slot. */
	assert_null(ism_regen_endpoint(&x->g, cluster_index(x->b.t, "outbound|80||aaa.test"),
				       endpoint(ca, "127.0.0.3")));
}

static void test_counters_by_name(void **state)
{
	struct two *x = *state;

	assert_non_null(route(x->b.t, "main")->stats);
	assert_ptr_equal(ism_regen_route(&x->g, route(x->a.t, "main")->stats),
			 route(x->b.t, "main")->stats);
	assert_null(ism_regen_route(&x->g, route(x->a.t, "gone")->stats));
	assert_null(ism_regen_route(&x->g, NULL));
	/* A counters address the old table does not have. */
	assert_null(ism_regen_route(&x->g, route(x->b.t, "first")->stats));
	assert_non_null(tcp_route(x->b.t)->stats);
	assert_ptr_equal(ism_regen_l4(&x->g, tcp_route(x->a.t)->stats), tcp_route(x->b.t)->stats);
	assert_null(ism_regen_l4(&x->g, NULL));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_cluster_by_name, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_endpoint_by_slot, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_counters_by_name, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
