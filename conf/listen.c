/* SPDX-License-Identifier: Apache-2.0 */
/* The listening addresses of the Gateway servers and the admin listener, as
 * the master will bind them: servers on the same address and port share one
 * listener (conf/compile.c merges them), but two different addresses on one
 * port cannot both be bound where one of them covers the other (a wildcard),
 * nor can the admin listener take a server's. Each such pair is an error of
 * the file, at its position, rather than "Address already in use" at the
 * start or reload. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/model.h"
#include "lib/addr.h"

/* One listening address: a server's, or the admin listener's (gw NULL). */
struct laddr {
	uint16_t port;
	uint8_t v6;
	uint8_t wild;
	uint8_t mapped; /* written ::ffff:a.b.c.d: addr holds a.b.c.d */
	uint8_t addr[16];
	const struct ism_cm_gw *gw;
	size_t srv; /* index in gw->servers */
	size_t k;   /* file order; SIZE_MAX for the admin listener */
};

static int laddr_cmp(const void *pa, const void *pb)
{
	const struct laddr *a = pa, *b = pb;
	int r;

	if (a->port != b->port)
		return a->port < b->port ? -1 : 1;
	if (a->v6 != b->v6)
		return a->v6 < b->v6 ? -1 : 1;
	r = memcmp(a->addr, b->addr, sizeof(a->addr));
	if (r != 0)
		return r;
	return a->k < b->k ? -1 : a->k > b->k;
}

static bool same_addr(const struct laddr *a, const struct laddr *b)
{
	return a->port == b->port && a->v6 == b->v6 && memcmp(a->addr, b->addr, 16) == 0;
}

static bool laddr_set(struct laddr *l, const struct sockaddr_storage *ss, uint16_t port)
{
	static const uint8_t zero[16];

	memset(l, 0, sizeof(*l));
	l->port = port;
	if (ss->ss_family == AF_INET) {
		memcpy(l->addr, &((const struct sockaddr_in *)ss)->sin_addr, 4);
	} else if (ss->ss_family == AF_INET6 &&
		   IN6_IS_ADDR_V4MAPPED(&((const struct sockaddr_in6 *)ss)->sin6_addr)) {
		/* ::ffff:a.b.c.d takes the port of a.b.c.d: compared as it. */
		memcpy(l->addr, ((const struct sockaddr_in6 *)ss)->sin6_addr.s6_addr + 12, 4);
		l->mapped = 1;
	} else if (ss->ss_family == AF_INET6) {
		l->v6 = 1;
		memcpy(l->addr, &((const struct sockaddr_in6 *)ss)->sin6_addr, 16);
	} else {
		return false;
	}
	l->wild = memcmp(l->addr, zero, 16) == 0;
	return true;
}

/* The master binds an IPv6 listener without IPV6_V6ONLY, so the system's
 * default decides whether [::] takes the port on the IPv4 addresses too:
 * net.ipv6.bindv6only, 0 (dual stack) unless an operator changed it. */
static bool v6_dual_stack(void)
{
	FILE *f = fopen("/proc/sys/net/ipv6/bindv6only", "re");
	int c = '0';

	if (f != NULL) {
		c = fgetc(f);
		fclose(f);
	}
	return c != '1';
}

static const char *laddr_text(const struct laddr *l, char *buf, size_t len)
{
	char ip[sizeof("::ffff:") - 1 + INET6_ADDRSTRLEN] = "::ffff:";
	/* One written ::ffff:a.b.c.d is shown so, its a.b.c.d after the prefix. */
	char *at = l->mapped ? ip + sizeof("::ffff:") - 1 : ip;

	inet_ntop(l->v6 ? AF_INET6 : AF_INET, l->addr, at, INET6_ADDRSTRLEN);
	ism_addr_port_text(buf, len, ip, l->port);
	return buf;
}

/* Sets the position and field path of l (the resource's label included)
 * and returns its node. */
static const struct ism_node *laddr_at(struct ism_vctx *v, const struct laddr *l)
{
	const struct ism_cm_appliance *a = &v->conf->app;
	const struct ism_node *n;

	ism_v_pop(v, 0);
	if (l->gw == NULL) {
		v->res = a->r.label;
		ism_v_push(v, "spec.admin.address");
		n = ism_node_get(ism_node_get(ism_node_get(a->r.at, "spec", NULL), "admin", NULL),
				 "address", NULL);
		return n != NULL ? n : a->r.at;
	}
	v->res = l->gw->r.label;
	n = l->gw->servers[l->srv].at;
	if (ism_node_get(n, "bind", NULL) != NULL) {
		ism_v_push(v, "spec.servers[%zu].bind", l->srv);
		return ism_node_get(n, "bind", NULL);
	}
	ism_v_push(v, "spec.servers[%zu].port.number", l->srv);
	n = ism_node_get(ism_node_get(n, "port", NULL), "number", NULL);
	return n != NULL ? n : l->gw->servers[l->srv].at;
}

/* What l is, for the message about the other of a pair. */
static const char *laddr_name(const struct laddr *l, char *buf, size_t len)
{
	if (l->gw == NULL)
		snprintf(buf, len, "the admin listener (spec.admin.address)");
	else
		snprintf(buf, len, "%s spec.servers[%zu]", l->gw->r.label, l->srv);
	return buf;
}

/* a and b cannot both be bound: the error goes to the admin listener when
 * one of them is it (the master binds it first), else to the later in the
 * file (bound after the other). */
static void clash(struct ism_vctx *v, const struct laddr *a, const struct laddr *b, const char *why)
{
	const struct laddr *at = b->k > a->k ? b : a, *other = at == a ? b : a;
	bool from_listen = other->gw != NULL && other->gw->servers[other->srv].bind == NULL;
	char mine[64], theirs[64], name[400];

	ism_v_err(v, laddr_at(v, at), "%s cannot be bound beside %s%s of %s: %s; %s",
		  laddr_text(at, mine, sizeof(mine)), laddr_text(other, theirs, sizeof(theirs)),
		  from_listen ? " (the Appliance's listenAddress)" : "",
		  laddr_name(other, name, sizeof(name)), why,
		  at->gw == NULL ? "give the admin listener another port"
				 : "give both the same bind, or different ports");
}

#define WHY_WILD   "a wildcard address takes the port on every address of its family"
#define WHY_MAPPED "an IPv4-mapped IPv6 address takes the port of its IPv4 address"
#define WHY_DUAL   "[::] takes the port on the IPv4 addresses too (net.ipv6.bindv6only is 0)"

/* The addresses of one port, l[0..n), sorted: each distinct one against the
 * wildcards, and the admin listener against a server of its address. */
static void check_port(struct ism_vctx *v, const struct laddr *l, size_t n, bool dual)
{
	const struct laddr *w4 = NULL, *w6 = NULL;

	for (size_t i = 0; i < n; i++) {
		if (l[i].wild && !l[i].v6 && w4 == NULL)
			w4 = &l[i];
		if (l[i].wild && l[i].v6 && w6 == NULL)
			w6 = &l[i];
	}
	for (size_t i = 0; i < n;) {
		size_t j = i + 1;

		while (j < n && same_addr(&l[i], &l[j]))
			j++;
		/* The admin listener sorts last of its address. */
		if (l[j - 1].gw == NULL && j - 1 > i)
			clash(v, &l[i], &l[j - 1], "the same address and port");
		/* One address written both ways is two sockets on one port. */
		for (size_t m = i + 1; m < j; m++)
			if (l[m].mapped != l[i].mapped && l[m].gw != NULL) {
				clash(v, &l[i], &l[m], WHY_MAPPED);
				break;
			}
		if (!l[i].wild && !l[i].v6 && w4 != NULL)
			clash(v, &l[i], w4, WHY_WILD);
		if (!l[i].wild && l[i].v6 && w6 != NULL)
			clash(v, &l[i], w6, WHY_WILD);
		if (!l[i].v6 && w6 != NULL && dual)
			clash(v, &l[i], w6, WHY_DUAL);
		i = j;
	}
}

void ism_model_xref_listeners(struct ism_vctx *v)
{
	const struct ism_conf *c = v->conf;
	struct sockaddr_storage ss;
	struct laddr *l;
	socklen_t len;
	size_t n = 1, k = 0;
	int dual = -1; /* read once, where a port has two addresses */

	for (size_t g = 0; g < c->n_gws; g++)
		n += c->gws[g]->n_servers;
	l = calloc(n, sizeof(*l));
	if (l == NULL) {
		v->nomem = 1;
		return;
	}
	for (size_t g = 0; g < c->n_gws; g++) {
		for (size_t s = 0; s < c->gws[g]->n_servers; s++) {
			const struct ism_cm_server *srv = &c->gws[g]->servers[s];

			/* An invalid bind or port has its error already. */
			if (srv->port == 0 ||
			    !ism_model_parse_ip(srv->bind ? srv->bind : c->app.listen, &ss, &len) ||
			    !laddr_set(&l[k], &ss, srv->port))
				continue;
			l[k].gw = c->gws[g];
			l[k].srv = s;
			l[k].k = k;
			k++;
		}
	}
	if (c->app.admin.ss_family != 0 &&
	    laddr_set(&l[k], &c->app.admin,
		      ntohs(c->app.admin.ss_family == AF_INET
				? ((const struct sockaddr_in *)&c->app.admin)->sin_port
				: ((const struct sockaddr_in6 *)&c->app.admin)->sin6_port))) {
		l[k].k = SIZE_MAX;
		k++;
	}
	qsort(l, k, sizeof(*l), laddr_cmp);
	for (size_t i = 0, j; i < k; i = j) {
		for (j = i + 1; j < k && l[j].port == l[i].port; j++)
			;
		if (j - i > 1 && dual < 0)
			dual = v6_dual_stack();
		if (j - i > 1)
			check_port(v, l + i, j - i, dual > 0);
	}
	free(l);
	v->res = "";
	ism_v_pop(v, 0);
}
