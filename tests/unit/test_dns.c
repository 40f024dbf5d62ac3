/* SPDX-License-Identifier: Apache-2.0 */
/* DNS ServiceEntries without a DNS server: the file (resolution, host-name
 * endpoints, spec.dns), the compilation of the names' answers into endpoints
 * (one per address with the endpoint's locality, labels, weight and port; one
 * per name for DNS_ROUND_ROBIN; none while unresolved), endpoint ids that
 * stay with their key when an answer changes, and the refresh clamp. */
#include <arpa/inet.h>
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "conf/conf.h"
#include "conf/defaults.h"
#include "lib/log.h"
#include "loaded.h"
#include "master/resolve.h"

#include <ares.h>

#define HEAD                                                                                       \
	"apiVersion: isthmus.io/v1\nkind: Appliance\nmetadata: {name: t}\nspec:\n"                 \
	"  locality: r/z\n"
#define ROUTES                                                                                     \
	"---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\n"           \
	"spec:\n  servers:\n  - port: {number: 8080, name: http, protocol: HTTP}\n"                \
	"    hosts: [\"*\"]\n"                                                                     \
	"---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\n"    \
	"spec:\n  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n"                                     \
	"  - match: [{uri: {prefix: /rr}}]\n"                                                      \
	"    route: [{destination: {host: rr.x, port: {number: 80}}}]\n"                           \
	"  - match: [{uri: {prefix: /self}}]\n"                                                    \
	"    route: [{destination: {host: self.x, port: {number: 80}}}]\n"                         \
	"  - match: [{uri: {prefix: /v1}}]\n"                                                      \
	"    route: [{destination: {host: svc.x, port: {number: 80}, subset: v1}}]\n"              \
	"  - route: [{destination: {host: svc.x, port: {number: 80}}}]\n"                          \
	"---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: dr}\n"   \
	"spec:\n  host: svc.x\n  subsets: [{name: v1, labels: {v: \"1\"}}]\n"
#define SES                                                                                        \
	"---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: svc}\n"     \
	"spec:\n  hosts: [svc.x]\n  ports: [{number: 80, name: http}]\n  resolution: DNS\n"        \
	"  endpoints:\n"                                                                           \
	"  - address: A.test\n    locality: r/z\n    labels: {v: \"1\"}\n    weight: 3\n"          \
	"    ports: {http: 9000}\n"                                                                \
	"  - address: 10.0.0.9\n    locality: r/y\n"                                               \
	"---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: rr}\n"      \
	"spec:\n  hosts: [rr.x]\n  ports: [{number: 80, name: http, targetPort: 81}]\n"            \
	"  resolution: DNS_ROUND_ROBIN\n  endpoints: [{address: a.test}]\n"                        \
	"---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: self}\n"    \
	"spec:\n  hosts: [self.x]\n  ports: [{number: 80, name: http}]\n  resolution: DNS\n"       \
	"---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: st}\n"      \
	"spec:\n  hosts: [st.x]\n  ports: [{number: 80, name: http}]\n  resolution: STATIC\n"      \
	"  endpoints: [{address: 10.0.0.7}]\n"
#define FILE_TEXT HEAD ROUTES SES

/* The answers the test gives, and ids kept by endpoint key as the master's
 * endpoint-state table keeps them. */
struct fake {
	const char *name[4];
	struct ism_dns_addr addrs[4][4];
	size_t n[4];
	size_t pick[4]; /* 1 + the address a DNS_ROUND_ROBIN endpoint takes; 0: the first */
	struct loaded_slots slots;
};

static void answer(struct fake *f, size_t i, const char *name, const char *a, const char *b)
{
	const char *in[2] = {a, b};

	f->name[i] = name;
	f->n[i] = 0;
	for (size_t j = 0; j < 2 && in[j] != NULL; j++) {
		struct ism_dns_addr *d = &f->addrs[i][f->n[i]++];
		struct sockaddr_in *s = (struct sockaddr_in *)&d->addr;

		memset(d, 0, sizeof(*d));
		s->sin_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, in[j], &s->sin_addr), 1);
		d->len = sizeof(*s);
		snprintf(d->text, sizeof(d->text), "%s", in[j]);
	}
}

static size_t fake_lookup(void *ctx, const char *name, bool logical,
			  const struct ism_dns_addr **addrs, uint64_t *resolved_ms)
{
	struct fake *f = ctx;

	for (size_t i = 0; i < 4; i++)
		if (f->name[i] != NULL && strcmp(f->name[i], name) == 0 && f->n[i] > 0) {
			if (logical && f->pick[i] > 0) {
				*addrs = &f->addrs[i][f->pick[i] - 1];
				*resolved_ms = 1000 + i;
				return 1;
			}
			*addrs = f->addrs[i];
			*resolved_ms = 1000 + i;
			return f->n[i];
		}
	*addrs = NULL;
	*resolved_ms = 0;
	return 0;
}

struct compiled {
	struct ism_diags d;
	struct ism_conf *conf;
	void *mem;
	struct ism_arena arena;
	const struct ism_table *t;
};

static void compile(struct compiled *c, const char *text, struct fake *f)
{
	memset(c, 0, sizeof(*c));
	ism_diags_init(&c->d);
	assert_int_equal(ism_conf_load_buf("dns.yaml", text, strlen(text), &c->conf, &c->d), 0);
	c->mem = malloc(LOADED_ARENA_SIZE);
	assert_non_null(c->mem);
	ism_arena_init(&c->arena, c->mem, LOADED_ARENA_SIZE);
	if (f != NULL)
		assert_int_equal(ism_conf_compile_dns(c->conf, &c->arena, loaded_slot_id, &f->slots,
						      fake_lookup, f, &c->t, &c->d),
				 0);
	else
		assert_int_equal(ism_conf_compile(c->conf, &c->arena, loaded_slot_id,
						  &(struct loaded_slots){0}, &c->t, &c->d),
				 0);
}

static void compiled_free(struct compiled *c)
{
	ism_conf_free(c->conf);
	free(c->mem);
}

/* The endpoint of cl whose text is addr (NULL: none). */
static const struct ism_endpoint *ep(const struct ism_cluster *cl, const char *addr)
{
	for (uint32_t i = 0; i < cl->n_endpoints; i++)
		if (strcmp(cl->endpoints[i].addr_text.p, addr) == 0)
			return &cl->endpoints[i];
	return NULL;
}

static void test_expand(void **state)
{
	struct fake f = {0};
	struct compiled c;
	const struct ism_cluster *cl, *v1;
	const struct ism_endpoint *e;

	(void)state;
	answer(&f, 0, "a.test", "10.0.0.2", "10.0.0.1");
	compile(&c, FILE_TEXT, &f);
	cl = loaded_cluster(c.t, "outbound|80||svc.x");
	assert_int_equal(cl->n_endpoints, 3);
	assert_int_equal(cl->unresolved.len, 0);
	e = ep(cl, "10.0.0.1:9000");
	assert_non_null(e);
	assert_string_equal(e->dns_name.p, "a.test"); /* lowercased */
	assert_int_equal(e->resolved_ms, 1000);
	assert_int_equal(e->weight, 3);
	assert_string_equal(e->locality.p, "r/z");
	assert_int_equal(ntohs(((const struct sockaddr_in *)&e->addr)->sin_port), 9000);
	assert_non_null(ep(cl, "10.0.0.2:9000"));
	e = ep(cl, "10.0.0.9:80");
	assert_non_null(e);
	assert_int_equal(e->dns_name.len, 0);
	/* Both addresses carry the endpoint's labels. */
	v1 = loaded_cluster(c.t, "outbound|80|v1|svc.x");
	assert_int_equal(v1->n_endpoints, 2);
	assert_non_null(ep(v1, "10.0.0.1:9000"));
	assert_non_null(ep(v1, "10.0.0.2:9000"));
	compiled_free(&c);
}

static void test_ids_follow_keys(void **state)
{
	struct fake f = {0};
	struct compiled a, b;
	const struct ism_endpoint *ea, *eb;
	uint32_t id2;

	(void)state;
	answer(&f, 0, "a.test", "10.0.0.1", "10.0.0.2");
	compile(&a, FILE_TEXT, &f);
	ea = ep(loaded_cluster(a.t, "outbound|80||svc.x"), "10.0.0.2:9000");
	assert_non_null(ea);
	id2 = ea->id;
	answer(&f, 0, "a.test", "10.0.0.3", "10.0.0.2");
	compile(&b, FILE_TEXT, &f);
	eb = ep(loaded_cluster(b.t, "outbound|80||svc.x"), "10.0.0.2:9000");
	assert_non_null(eb);
	assert_int_equal(eb->id, id2); /* the address that stayed keeps its id */
	assert_null(ep(loaded_cluster(b.t, "outbound|80||svc.x"), "10.0.0.1:9000"));
	assert_non_null(ep(loaded_cluster(b.t, "outbound|80||svc.x"), "10.0.0.3:9000"));
	assert_string_equal(f.slots.keys[id2], "svc.x|10.0.0.2:9000");
	compiled_free(&a);
	compiled_free(&b);
}

static void test_round_robin(void **state)
{
	struct fake f = {0};
	struct compiled c;
	const struct ism_cluster *cl;
	char text[64];
	uint32_t id;

	(void)state;
	answer(&f, 0, "a.test", "10.0.0.1", "10.0.0.2");
	compile(&c, FILE_TEXT, &f);
	cl = loaded_cluster(c.t, "outbound|80||rr.x");
	assert_int_equal(cl->n_endpoints, 1);
	assert_string_equal(cl->endpoints[0].addr_text.p, "a.test:81");
	inet_ntop(AF_INET, &((const struct sockaddr_in *)&cl->endpoints[0].addr)->sin_addr, text,
		  sizeof(text));
	assert_string_equal(text, "10.0.0.1");
	id = cl->endpoints[0].id;
	assert_string_equal(f.slots.keys[id], "rr.x|a.test:81");
	compiled_free(&c);
	/* Another answer: the same logical endpoint, another address. */
	answer(&f, 0, "a.test", "10.0.0.5", NULL);
	compile(&c, FILE_TEXT, &f);
	cl = loaded_cluster(c.t, "outbound|80||rr.x");
	assert_int_equal(cl->endpoints[0].id, id);
	inet_ntop(AF_INET, &((const struct sockaddr_in *)&cl->endpoints[0].addr)->sin_addr, text,
		  sizeof(text));
	assert_string_equal(text, "10.0.0.5");
	assert_int_equal(loaded_cluster(c.t, "outbound|80||svc.x")->n_endpoints, 2);
	compiled_free(&c);
	/* The resolver's pick for a DNS_ROUND_ROBIN endpoint (the answer's
	 * first in the server's order) is what it connects to; a DNS
	 * ServiceEntry of the same name has every address. */
	answer(&f, 0, "a.test", "10.0.0.1", "10.0.0.2");
	f.pick[0] = 2;
	compile(&c, FILE_TEXT, &f);
	cl = loaded_cluster(c.t, "outbound|80||rr.x");
	assert_int_equal(cl->n_endpoints, 1);
	assert_int_equal(cl->endpoints[0].id, id);
	inet_ntop(AF_INET, &((const struct sockaddr_in *)&cl->endpoints[0].addr)->sin_addr, text,
		  sizeof(text));
	assert_string_equal(text, "10.0.0.2");
	cl = loaded_cluster(c.t, "outbound|80||svc.x");
	assert_int_equal(cl->n_endpoints, 3);
	compiled_free(&c);
}

static void test_unresolved_and_self(void **state)
{
	struct fake f = {0};
	struct compiled c;
	const struct ism_cluster *cl;

	(void)state;
	answer(&f, 1, "self.x", "10.0.0.4", NULL);
	compile(&c, FILE_TEXT, &f);
	cl = loaded_cluster(c.t, "outbound|80||svc.x");
	assert_int_equal(cl->n_endpoints, 1); /* 10.0.0.9 only */
	assert_string_equal(cl->unresolved.p, "a.test");
	cl = loaded_cluster(c.t, "outbound|80||rr.x");
	assert_int_equal(cl->n_endpoints, 0);
	assert_string_equal(cl->unresolved.p, "a.test");
	cl = loaded_cluster(c.t, "outbound|80||self.x");
	assert_int_equal(cl->n_endpoints, 1);
	assert_string_equal(cl->endpoints[0].addr_text.p, "10.0.0.4:80");
	assert_string_equal(cl->endpoints[0].dns_name.p, "self.x");
	compiled_free(&c);
	/* isthmus -c compiles without resolving: no endpoint from a name. */
	compile(&c, FILE_TEXT, NULL);
	assert_int_equal(loaded_cluster(c.t, "outbound|80||self.x")->n_endpoints, 0);
	assert_int_equal(loaded_cluster(c.t, "outbound|80||svc.x")->n_endpoints, 1);
	compiled_free(&c);
}

static int collect_name(void *ctx, const char *name)
{
	char *all = ctx;

	strcat(all, name);
	strcat(all, ",");
	return 0;
}

/* A DNS ServiceEntry with a workloadSelector: its endpoints are the selected
 * WorkloadEntries, a host name among them resolved; with none selected it has
 * none (its host is not resolved in their place, as without a selector). */
#define WE_TEXT                                                                                    \
	HEAD ROUTES                                                                                \
	    "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: svc}\n" \
	    "spec:\n  hosts: [svc.x]\n  ports: [{number: 80, name: http}]\n  resolution: DNS\n"    \
	    "  workloadSelector: {labels: {app: vm}}\n"                                            \
	    "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: rr}\n"  \
	    "spec:\n  hosts: [rr.x]\n  ports: [{number: 80, name: http}]\n  resolution: DNS\n"     \
	    "  workloadSelector: {labels: {app: none}}\n"                                          \
	    "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: "       \
	    "self}\n"                                                                              \
	    "spec:\n  hosts: [self.x]\n  ports: [{number: 80, name: http}]\n  resolution: DNS\n"   \
	    "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: "      \
	    "vm1}\n"                                                                               \
	    "spec:\n  address: VM.test\n  labels: {app: vm, v: \"1\"}\n  ports: {http: 9000}\n"    \
	    "---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata: {name: "      \
	    "vm0}\n"                                                                               \
	    "spec:\n  address: 10.0.0.8\n  labels: {app: vm}\n"

static void test_workload_entries(void **state)
{
	struct fake f = {0};
	struct compiled c;
	const struct ism_cluster *cl;
	char all[256] = "";

	(void)state;
	answer(&f, 0, "vm.test", "10.0.0.1", NULL);
	compile(&c, WE_TEXT, &f);
	assert_int_equal(ism_conf_dns_names(c.conf, collect_name, all), 0);
	assert_string_equal(all, "vm.test,self.x,");
	cl = loaded_cluster(c.t, "outbound|80||svc.x");
	assert_int_equal(cl->n_endpoints, 2); /* in the entries' name order: vm0, vm1 */
	assert_string_equal(cl->endpoints[0].addr_text.p, "10.0.0.8:80");
	assert_string_equal(cl->endpoints[1].addr_text.p, "10.0.0.1:9000");
	assert_string_equal(cl->endpoints[1].dns_name.p, "vm.test");
	assert_int_equal(loaded_cluster(c.t, "outbound|80|v1|svc.x")->n_endpoints, 1);
	assert_int_equal(loaded_cluster(c.t, "outbound|80||rr.x")->n_endpoints, 0);
	compiled_free(&c);
}

static void test_names_and_settings(void **state)
{
	struct compiled c;
	struct ism_conf_dns dns;
	char all[256] = "";

	(void)state;
	compile(&c, FILE_TEXT, NULL);
	assert_int_equal(ism_conf_dns_names(c.conf, collect_name, all), 0);
	assert_string_equal(all, "a.test,self.x,"); /* once each; STATIC and IPs not */
	ism_conf_dns_settings(c.conf, &dns);
	assert_int_equal(dns.n_servers, 0);
	assert_int_equal(dns.min_refresh_ms, 5000);
	assert_int_equal(dns.max_refresh_ms, 300000);
	assert_int_equal(dns.timeout_ms, 5000);
	compiled_free(&c);
	compile(&c,
		HEAD "  dns:\n    servers: [\"127.0.0.1:5353\", \"::1\", \"[::1]:53\", "
		     "\"[127.0.0.1]:54\", \"[::ffff:127.0.0.1]:55\"]\n"
		     "    minRefresh: 1s\n    maxRefresh: 30s\n    timeout: 500ms\n" ROUTES SES,
		NULL);
	ism_conf_dns_settings(c.conf, &dns);
	assert_int_equal(dns.n_servers, 5);
	assert_string_equal(dns.servers[0], "127.0.0.1:5353");
	assert_string_equal(dns.servers[1], "::1");
	assert_string_equal(dns.servers[2], "[::1]:53");
	/* a form c-ares refuses, given to it as it reads it (an unbracketed
	 * IPv6 address with a port is refused: test_conf) */
	assert_string_equal(dns.servers[3], "127.0.0.1:54");
	assert_string_equal(dns.servers[4], "[::ffff:127.0.0.1]:55");
	assert_int_equal(dns.min_refresh_ms, 1000);
	assert_int_equal(dns.max_refresh_ms, 30000);
	assert_int_equal(dns.timeout_ms, 500);
	compiled_free(&c);
}

static void test_refresh_clamp(void **state)
{
	(void)state;
	assert_int_equal(ism_resolver_refresh_ms(0, 5000, 300000), 5000);
	assert_int_equal(ism_resolver_refresh_ms(2, 5000, 300000), 5000);
	assert_int_equal(ism_resolver_refresh_ms(60, 5000, 300000), 60000);
	assert_int_equal(ism_resolver_refresh_ms(86400, 5000, 300000), 300000);
	assert_int_equal(ism_resolver_refresh_ms(UINT32_MAX, 1000, 2000), 2000);
	assert_string_equal(ism_dns_state_name(ISM_DNS_STALE), "stale");
}

/* The resolver's states without a DNS server: a closed port refuses every
 * query, so each name fails (failed: never answered), is counted, and asks
 * again when forced; settle waits no longer than its timeout. */
static void test_resolver_failing_server(void **state)
{
	static const char *const servers[] = {"127.0.0.1:1"};
	struct ism_conf_dns dns = {.n_servers = 1,
				   .servers = servers,
				   .min_refresh_ms = 60000,
				   .max_refresh_ms = 60000,
				   .timeout_ms = 300};
	struct ism_resolver *r;
	struct ism_dns_view v;
	struct compiled c;
	struct ism_reply out;
	const struct ism_dns_addr *a;
	uint64_t t0, when;

	(void)state;
	compile(&c, FILE_TEXT, NULL);
	assert_int_equal(ism_resolver_create(NULL, &r), 0);
	assert_int_equal(ism_resolver_configure(r, &dns), 0);
	assert_int_equal(ism_resolver_names(r, c.conf, true), 0);
	t0 = ism_now_ms();
	ism_resolver_settle(r, dns.timeout_ms);
	assert_true(ism_now_ms() - t0 < dns.timeout_ms + 200);
	for (size_t i = 0; i < 2; i++) {
		assert_true(ism_resolver_view(r, i, ism_now_ms(), &v));
		assert_true(v.used);
		assert_int_equal(v.state, ISM_DNS_FAILED);
		assert_int_equal(v.n_addrs, 0);
		assert_true(v.failures >= 1);
		assert_true(v.error[0] != '\0');
		assert_true(v.next_in_ms > 1000); /* retried after minRefresh */
	}
	assert_false(ism_resolver_view(r, 2, ism_now_ms(), &v));
	assert_int_equal(ism_resolver_lookup(r, "a.test", false, &a, &when), 0);
	assert_false(ism_resolver_changed(r));
	assert_int_equal(ism_resolver_force(r, "a.test"), 0);
	assert_int_equal(ism_resolver_force(r, "*"), 0);
	assert_int_equal(ism_resolver_force(r, "nope.test"), -ENOENT);
	assert_true(ism_resolver_view(r, 0, ism_now_ms(), &v));
	assert_int_equal(v.next_in_ms, 0); /* due now */
	ism_reply_init(&out, 1u << 16);
	ism_resolver_metrics(r, &out);
	assert_non_null(strstr(out.p, "isthmus_dns_names{state=\"failed\"} 2"));
	assert_non_null(strstr(out.p, "isthmus_dns_resolutions_total{result=\"ok\"} 0"));
	ism_reply_free(&out);
	ism_resolver_destroy(r);
	compiled_free(&c);
}

/* A file with n DNS names n<from>.test .., one ServiceEntry each. */
static char *many_names(size_t n, size_t from)
{
	size_t cap = 4096 + n * 256, len;
	char *text = malloc(cap);

	assert_non_null(text);
	len = (size_t)snprintf(text, cap, "%s%s", HEAD, ROUTES);
	for (size_t i = 0; i < n; i++)
		len +=
		    (size_t)snprintf(text + len, cap - len,
				     "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
				     "metadata: {name: s%zu}\nspec:\n  hosts: [h%zu.x]\n"
				     "  ports: [{number: 80, name: http}]\n  resolution: DNS\n"
				     "  endpoints: [{address: n%zu.test}]\n",
				     i, i, from + i);
	return text;
}

/* More names than queries may run at once, towards a server that never
 * answers: with the queries at their cap the loop is not woken at once for the
 * names waiting (it spun), and every name is asked in turn, however soon the
 * first ones come due again (the list's head took the slots back). A servers
 * setting c-ares refuses leaves the running channel in place. */
static void test_resolver_cap_and_fairness(void **state)
{
	enum { N = 600 };
	int mute = socket(AF_INET, SOCK_DGRAM, 0);
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t sl = sizeof(sa);
	char server[32], *text = many_names(N, 0);
	const char *servers[1] = {server}, *bad[1] = {"[127.0.0.1]:53"};
	struct ism_conf_dns dns = {.n_servers = 1,
				   .servers = servers,
				   .min_refresh_ms = 100,
				   .max_refresh_ms = 60000,
				   .timeout_ms = 300};
	struct ism_conf_dns refused = dns;
	struct ism_resolver *r;
	struct ism_dns_view v;
	struct compiled c;
	uint64_t deadline;
	size_t asked = 0;

	(void)state;
	assert_true(mute >= 0);
	assert_int_equal(bind(mute, (struct sockaddr *)&sa, sizeof(sa)), 0);
	assert_int_equal(getsockname(mute, (struct sockaddr *)&sa, &sl), 0);
	snprintf(server, sizeof(server), "127.0.0.1:%u", ntohs(sa.sin_port));
	ism_log_set_level(ISM_LOG_ERR); /* not 600 warnings of failed names */
	compile(&c, text, NULL);
	assert_int_equal(ism_resolver_create(NULL, &r), 0);
	assert_int_equal(ism_resolver_configure(r, &dns), 0);
	assert_int_equal(ism_resolver_names(r, c.conf, true), 0);
	refused.servers = bad;
	assert_true(ism_resolver_configure(r, &refused) < 0);
	ism_resolver_run(r, NULL, 0, ism_now_ms());
	/* the cap reached, names still due: only c-ares' timeout wakes the loop */
	assert_true(ism_resolver_timeout_ms(r, ism_now_ms(), 1000) > 0);
	deadline = ism_now_ms() + 20000;
	while (asked < N && ism_now_ms() < deadline) {
		struct pollfd pfd[ISM_RESOLVER_POLLFDS];
		int n = ism_resolver_pollfds(r, pfd, ISM_RESOLVER_POLLFDS);

		poll(pfd, (nfds_t)n, ism_resolver_timeout_ms(r, ism_now_ms(), 100));
		ism_resolver_run(r, pfd, n, ism_now_ms());
		asked = 0;
		for (size_t i = 0; ism_resolver_view(r, i, ism_now_ms(), &v); i++)
			asked += v.failures > 0;
	}
	assert_int_equal(asked, N);
	ism_log_set_level(ISM_LOG_INFO);
	ism_resolver_destroy(r);
	compiled_free(&c);
	free(text);
	close(mute);
}

/* A reload that swaps more than half the most names for others: the old ones
 * go before the new ones count (the swap failed with ENOSPC, and the names
 * after the failing one were never resolved). */
static void test_resolver_swap_many_names(void **state)
{
	enum { N = ISM_RESOLVER_MAX_NAMES / 2 + 100 };
	char *one = many_names(N, 0), *two = many_names(N, N);
	struct ism_resolver *r;
	struct ism_dns_view v;
	struct compiled a, b;
	size_t used = 0, i;

	(void)state;
	ism_log_set_level(ISM_LOG_ERR); /* not a line per name forgotten */
	compile(&a, one, NULL);
	compile(&b, two, NULL);
	assert_int_equal(ism_resolver_create(NULL, &r), 0);
	assert_int_equal(ism_resolver_names(r, a.conf, true), 0);
	assert_int_equal(ism_resolver_names(r, b.conf, true), 0);
	for (i = 0; ism_resolver_view(r, i, ism_now_ms(), &v); i++)
		used += v.used;
	assert_int_equal(i, N);
	assert_int_equal(used, N);
	ism_log_set_level(ISM_LOG_INFO);
	ism_resolver_destroy(r);
	compiled_free(&a);
	compiled_free(&b);
	free(one);
	free(two);
}

/* An answer of n IPv4 addresses 10.1.0.0 + (first + i) % n, TTL 30 but 7 for
 * the last, as a round-robin server rotates them. */
static struct ares_addrinfo *rotated(struct sockaddr_in *sa, struct ares_addrinfo_node *nodes,
				     struct ares_addrinfo *ai, size_t n, size_t first)
{
	for (size_t i = 0; i < n; i++) {
		sa[i] = (struct sockaddr_in){.sin_family = AF_INET,
					     .sin_addr.s_addr =
						 htonl(0x0a010000u + (uint32_t)((first + i) % n))};
		nodes[i] = (struct ares_addrinfo_node){.ai_ttl = i + 1 == n ? 7 : 30,
						       .ai_family = AF_INET,
						       .ai_addrlen = sizeof(sa[i]),
						       .ai_addr = (struct sockaddr *)&sa[i],
						       .ai_next = i + 1 < n ? &nodes[i + 1] : NULL};
	}
	*ai = (struct ares_addrinfo){.nodes = nodes};
	return ai;
}

/* An answer longer than the addresses kept gives the same lowest ones however
 * the server orders it (a rotating order changed the set every refresh);
 * repeats count once. */
static void test_long_answer_stable(void **state)
{
	enum { N = 100 };
	static struct sockaddr_in sa[N];
	static struct ares_addrinfo_node nodes[N];
	struct ism_dns_addr a[ISM_RESOLVER_MAX_ADDRS], b[ISM_RESOLVER_MAX_ADDRS], first;
	struct ares_addrinfo ai;
	uint32_t ttl;
	size_t na, nb;

	(void)state;
	na = ism_resolver_answer_addrs(rotated(sa, nodes, &ai, N, 0), ISM_DNS_ALL, a, &ttl, NULL);
	assert_int_equal(ttl, 7);
	nb =
	    ism_resolver_answer_addrs(rotated(sa, nodes, &ai, N, 37), ISM_DNS_ALL, b, &ttl, &first);
	assert_string_equal(first.text, "10.1.0.37"); /* the server's first */
	/* the server's first is not kept: the first of those kept */
	ism_resolver_answer_addrs(rotated(sa, nodes, &ai, N, 80), ISM_DNS_ALL, b, &ttl, &first);
	assert_string_equal(first.text, "10.1.0.0");
	nb = ism_resolver_answer_addrs(rotated(sa, nodes, &ai, N, 37), ISM_DNS_ALL, b, &ttl, NULL);
	assert_int_equal(na, ISM_RESOLVER_MAX_ADDRS);
	assert_int_equal(nb, ISM_RESOLVER_MAX_ADDRS);
	for (size_t i = 0; i < na; i++) {
		char want[32];

		snprintf(want, sizeof(want), "10.1.0.%zu", i);
		assert_string_equal(a[i].text, want);
		assert_string_equal(b[i].text, want);
	}
	/* three addresses, one twice */
	rotated(sa, nodes, &ai, 3, 1);
	sa[2].sin_addr.s_addr = sa[0].sin_addr.s_addr;
	na = ism_resolver_answer_addrs(&ai, ISM_DNS_ALL, a, &ttl, NULL);
	assert_int_equal(na, 2);
	assert_string_equal(a[0].text, "10.1.0.1");
	assert_string_equal(a[1].text, "10.1.0.2");
}

/* lookupFamily: which addresses of an answer of both families are taken,
 * as Envoy's DnsLookupFamily; AUTO and V4_PREFERRED fall back to the other
 * family only where the answer has none of the first. */
static void test_lookup_family(void **state)
{
	static struct sockaddr_in v4;
	static struct sockaddr_in6 v6;
	struct ares_addrinfo_node n6 = {.ai_ttl = 9,
					.ai_family = AF_INET6,
					.ai_addrlen = sizeof(v6),
					.ai_addr = (struct sockaddr *)&v6};
	struct ares_addrinfo_node n4 = {.ai_ttl = 3,
					.ai_family = AF_INET,
					.ai_addrlen = sizeof(v4),
					.ai_addr = (struct sockaddr *)&v4,
					.ai_next = &n6};
	struct ares_addrinfo both = {.nodes = &n4}, only4 = {.nodes = &n4}, only6 = {.nodes = &n6};
	struct ism_dns_addr a[ISM_RESOLVER_MAX_ADDRS];
	uint32_t ttl;

	(void)state;
	v4.sin_family = AF_INET;
	inet_pton(AF_INET, "10.2.0.1", &v4.sin_addr);
	v6.sin6_family = AF_INET6;
	inet_pton(AF_INET6, "fd00::1", &v6.sin6_addr);
	assert_int_equal(ism_resolver_answer_addrs(&both, ISM_DNS_V4_ONLY, a, &ttl, NULL), 1);
	assert_string_equal(a[0].text, "10.2.0.1");
	assert_int_equal(ttl, 3);
	assert_int_equal(ism_resolver_answer_addrs(&both, ISM_DNS_V6_ONLY, a, &ttl, NULL), 1);
	assert_string_equal(a[0].text, "fd00::1");
	assert_int_equal(ttl, 9);
	assert_int_equal(ism_resolver_answer_addrs(&both, ISM_DNS_ALL, a, &ttl, NULL), 2);
	assert_int_equal(ttl, 3);
	assert_int_equal(ism_resolver_answer_addrs(&both, ISM_DNS_AUTO, a, &ttl, NULL), 1);
	assert_string_equal(a[0].text, "fd00::1");
	assert_int_equal(ism_resolver_answer_addrs(&both, ISM_DNS_V4_PREFERRED, a, &ttl, NULL), 1);
	assert_string_equal(a[0].text, "10.2.0.1");
	n4.ai_next = NULL;
	assert_int_equal(ism_resolver_answer_addrs(&only4, ISM_DNS_AUTO, a, &ttl, NULL), 1);
	assert_string_equal(a[0].text, "10.2.0.1");
	assert_int_equal(ism_resolver_answer_addrs(&only4, ISM_DNS_V6_ONLY, a, &ttl, NULL), 0);
	assert_int_equal(ism_resolver_answer_addrs(&only6, ISM_DNS_V4_PREFERRED, a, &ttl, NULL), 1);
	assert_string_equal(a[0].text, "fd00::1");
	assert_int_equal(ism_resolver_answer_addrs(&only6, ISM_DNS_V4_ONLY, a, &ttl, NULL), 0);
}

/* More distinct names than the master resolves are an error of the file, at
 * the entry that names the one too many (isthmus -c passed them; the start
 * refused with no position, a reload left the last ones unresolved). */
static void test_names_bounded(void **state)
{
	size_t cap = 64 + (ISM_DNS_MAX_NAMES + 1) * 160, len;
	char *text = malloc(cap);
	struct ism_diags d;
	struct ism_conf *conf = NULL;

	(void)state;
	assert_non_null(text);
	len = (size_t)snprintf(text, cap, "%s", HEAD ROUTES);
	/* 41 entries of 100 names, the last one's 97th the 4097th */
	for (size_t e = 0; e * 100 <= ISM_DNS_MAX_NAMES; e++) {
		len +=
		    (size_t)snprintf(text + len, cap - len,
				     "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\n"
				     "metadata: {name: e%zu}\nspec:\n  hosts: [e%zu.x]\n"
				     "  ports: [{number: 80, name: http}]\n  resolution: DNS\n"
				     "  endpoints:\n",
				     e, e);
		for (size_t i = 0; i < 100 && e * 100 + i <= ISM_DNS_MAX_NAMES; i++)
			len += (size_t)snprintf(text + len, cap - len, "  - address: n%zu.test\n",
						e * 100 + i);
	}
	assert_true(len < cap);
	ism_diags_init(&d);
	assert_int_not_equal(ism_conf_load_buf("dns.yaml", text, len, &conf, &d), 0);
	assert_int_equal(d.n_errors, 1);
	for (size_t i = 0; i < d.n && i < 64; i++) {
		if (d.items[i].severity != ISM_DIAG_ERROR)
			continue;
		assert_non_null(
		    strstr(d.items[i].msg, "n4096.test is one name more than the 4096"));
		assert_string_equal(d.items[i].field, "ServiceEntry default/e40: spec");
		assert_true(d.items[i].line > 0);
	}
	/* one fewer: loaded */
	text[len - strlen("  - address: n4096.test\n")] = '\0';
	ism_diags_init(&d);
	assert_int_equal(ism_conf_load_buf("dns.yaml", text, strlen(text), &conf, &d), 0);
	ism_conf_free(conf);
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_expand),
	    cmocka_unit_test(test_ids_follow_keys),
	    cmocka_unit_test(test_round_robin),
	    cmocka_unit_test(test_unresolved_and_self),
	    cmocka_unit_test(test_names_and_settings),
	    cmocka_unit_test(test_workload_entries),
	    cmocka_unit_test(test_refresh_clamp),
	    cmocka_unit_test(test_resolver_failing_server),
	    cmocka_unit_test(test_long_answer_stable),
	    cmocka_unit_test(test_lookup_family),
	    cmocka_unit_test(test_names_bounded),
	    cmocka_unit_test(test_resolver_cap_and_fairness),
	    cmocka_unit_test(test_resolver_swap_many_names),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
