/* SPDX-License-Identifier: Apache-2.0 */
/* `explain`: what the appliance would do with a request, and why: the listener,
 * virtual host, route, weighted destinations, and for the cluster the
 * priority loads, the eligible endpoints and the endpoint a pick gives now.
 * The same for a connection to a TCP listener or a TLS ClientHello's server
 * name: the server, tcp or tls route, destinations and endpoints. It runs the
 * workers' own parser, router and balancer over the published table and the
 * live endpoint states. Master only. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "health/outlier.h"
#include "lib/addr.h"
#include "lib/ascii.h"
#include "lib/log.h"
#include "master/commands.h"
#include "master/master-t.h"
#include "shm/table.h"
#include "worker/actions.h"
#include "worker/authz.h"
#include "worker/balancer.h"
#include "worker/cors.h"
#include "worker/http1.h"
#include "worker/policy.h"
#include "worker/router.h"
#include "worker/sniff.h"
#include "worker/sock.h"
#include "worker/stream.h"

#define EXPLAIN_HDRS 64

static const char *usage =
    "error: usage: explain METHOD URL [NAME=VALUE]... [from=CLIENT_IP]\n"
    "       explain tcp [PORT] [to=ADDRESS] [from=CLIENT_IP]\n"
    "       explain tls SNI|- [PORT] [to=ADDRESS] [from=CLIENT_IP]\n"
    "  URL: http://host[:port]/path?query (port picks the listener; default the first)\n"
    "  tcp: a connection to PORT (default: the first TCP listener); tls: a ClientHello\n"
    "  naming SNI (-: none) to PORT (default: the first listener passing TLS through);\n"
    "  to=: the address the client connected to, for destinationSubnets\n";

/* Builds the request as a client would send it, so that the workers' parser
 * reads it exactly as it would read the real one. */
static int build(char *out, size_t cap, const char *method, const char *url, char **hdrs,
		 int n_hdrs, uint16_t *port)
{
	char host[256] = "";
	const char *path = "/";
	size_t n;
	int w;

	if (strncmp(url, "http://", 7) == 0) {
		const char *h = url + 7;
		const char *slash = strchr(h, '/');
		size_t hl = slash ? (size_t)(slash - h) : strlen(h);
		/* The port's colon is past an IPv6 literal's brackets. */
		size_t name = ism_host_len(h, hl);
		const char *colon = name < hl && h[name] == ':' ? h + name : NULL;

		if (hl == 0 || hl >= sizeof(host) || (name < hl && colon == NULL))
			return -EINVAL;
		memcpy(host, h, hl);
		host[hl] = '\0';
		if (colon) {
			char *end;
			unsigned long p = strtoul(colon + 1, &end, 10);

			if (end != h + hl || p == 0 || p > 65535)
				return -EINVAL;
			*port = (uint16_t)p;
		}
		path = slash ? slash : "/";
	} else if (url[0] == '/') {
		path = url;
	} else {
		return -EINVAL;
	}
	w = snprintf(out, cap, "%s %s HTTP/1.1\r\n", method, path);
	if (w < 0 || (size_t)w >= cap)
		return -E2BIG;
	n = (size_t)w;
	/* A path alone: the Host comes from a host=... argument, else "localhost". */
	for (int i = 0; i < n_hdrs && !host[0]; i++)
		if (strncasecmp(hdrs[i], "host=", 5) == 0)
			snprintf(host, sizeof(host), "%s", "-");
	if (host[0] != '-') {
		w = snprintf(out + n, cap - n, "Host: %s\r\n", host[0] ? host : "localhost");
		n += w > 0 ? (size_t)w : 0;
	}
	for (int i = 0; i < n_hdrs && n < cap; i++) {
		char *eq = strchr(hdrs[i], '=');

		if (eq == NULL)
			return -EINVAL;
		w = snprintf(out + n, cap - n, "%.*s: %s\r\n", (int)(eq - hdrs[i]), hdrs[i],
			     eq + 1);
		n += w > 0 ? (size_t)w : 0;
	}
	/* A field cut short (n is what snprintf would have written) is too
	 * long a request; out + n is past the end. */
	if (n >= cap)
		return -E2BIG;
	w = snprintf(out + n, cap - n, "\r\n");
	if (w < 0 || (size_t)w >= cap - n)
		return -E2BIG;
	return (int)(n + (size_t)w);
}

/* ", from NAME resolved TIME" for an endpoint of a DNS ServiceEntry; the
 * line's end. */
static void explain_dns_origin(const struct ism_endpoint *ep, struct ism_reply *r)
{
	char when[40];

	if (ep->dns_name.len == 0) {
		ism_say(r, "\n");
		return;
	}
	ism_time_iso(ep->resolved_ms, when, sizeof(when));
	ism_say(r, ", from %s resolved %s\n", ep->dns_name.p, when);
}

static void explain_cluster(struct ism_master *m, const struct ism_table *t, uint32_t ci,
			    const struct ism_http_req *req, const char *peer,
			    struct ism_router_scratch *rs, struct ism_reply *r)
{
	const struct ism_cluster *cl = &t->clusters[ci];
	const struct ism_ep_state *eps = m->shm.hdr->eps;
	const struct ism_cluster_dyn *d = cl->dyn;
	struct ism_lb_req rq = {.rnd = 0x5bd1e995u, .rnd2 = 0x9e3779b9u};
	struct ism_lb *lb;
	int e;

	ism_say(r, "cluster %s: %u endpoints, %u priorities%s\n", cl->name.p, cl->n_endpoints,
		cl->n_priorities,
		cl->zone_aware ? " (zoneAwareLbSetting: by region, the region's zones as one set)"
		: cl->od       ? ""
			       : " (no outlierDetection: no locality failover, as in Istio)");
	if (cl->missing) {
		ism_say(r,
			"  no ServiceEntry has host %s and port %u: no such cluster (NC): the "
			"answer is 503, a TCP connection is closed\n",
			cl->host.p, cl->port);
		return;
	}
	if (cl->unresolved.len > 0)
		ism_say(r, "  dns: %s has no answer yet: its endpoints are missing\n",
			cl->unresolved.p);
	for (uint32_t p = 0; d && p < ism_dyn_priorities(d); p++) {
		uint32_t hosts = 0, eligible = 0;

		for (uint32_t i = 0; i < cl->n_endpoints; i++) {
			if (cl->endpoints[i].priority != p)
				continue;
			hosts++;
			eligible += ism_ep_eligible(m->shm.hdr, &cl->endpoints[i]);
		}
		ism_say(r, "  priority %u: load %u%%%s, %u of %u endpoints eligible\n", p,
			d->healthy_load[p], d->panic[p] || d->total_panic ? " (panic)" : "",
			eligible, hosts);
		for (uint32_t i = 0; i < cl->n_endpoints; i++) {
			const struct ism_endpoint *ep = &cl->endpoints[i];
			const struct ism_ep_state *st = &eps[ep->id];
			uint32_t admin = atomic_load(&st->admin);

			if (ep->priority != p)
				continue;
			ism_say(r, "    %s locality=%s %s%s%s%s%s", ep->addr_text.p,
				ep->locality.len ? ep->locality.p : "-",
				atomic_load(&st->health) == ISM_EP_HEALTHY ? "healthy"
									   : "unhealthy",
				ism_ep_ejected(m->shm.hdr, ep) ? ", ejected" : "",
				admin != ISM_EP_ADMIN_READY ? ", admin " : "",
				admin != ISM_EP_ADMIN_READY ? ism_events_admin_name(admin) : "",
				atomic_load(&st->weight) == ISM_EP_WEIGHT_SET ? ", weight 0" : "");
			explain_dns_origin(ep, r);
		}
	}
	if (cl->lb == ISM_LB_RING_HASH || cl->lb == ISM_LB_MAGLEV) {
		rq.has_hash = (uint8_t)ism_hash_key(&cl->hash, req, peer, rs, &rq.hash);
		ism_say(r, "  hash key: %s\n",
			rq.has_hash ? "present (the pick below is stable)"
				    : "absent (a random endpoint)");
	}
	lb = ism_lb_new(t);
	if (lb == NULL) {
		ism_say(r, "error: out of memory\n");
		return;
	}
	e = ism_lb_pick(lb, ci, m->shm.hdr, &rq);
	if (e < 0)
		ism_say(r, "endpoint: none eligible: the answer is 503 (no healthy upstream)\n");
	else
		ism_say(r, "endpoint: %s (priority %u)\n", cl->endpoints[e].addr_text.p,
			cl->endpoints[e].priority);
	ism_lb_free(lb);
}

/* What the route's fault and corsPolicy do to the request (the fault's shares,
 * drawn per request, as shares), which Envoy's filters do before its router;
 * false when isthmus answers it itself. */
static bool explain_fault_cors(const struct ism_route *rt, const struct ism_http_req *req,
			       struct ism_router_scratch *rs, struct ism_reply *r)
{
	const struct ism_fault *f = rt->fault;
	struct ism_cors_out *o = NULL;
	int v;

	if (f != NULL && f->delay_ms)
		ism_say(r, "fault: a %u ms delay for %.4g %% of requests (DI)\n", f->delay_ms,
			f->delay_ppm / 10000.0);
	if (f != NULL && f->abort_status && f->abort_grpc >= 0)
		ism_say(r, "fault: an abort with gRPC status %d for %.4g %% of requests (FI)\n",
			f->abort_grpc, f->abort_ppm / 10000.0);
	else if (f != NULL && f->abort_status)
		ism_say(r, "fault: an abort with status %u for %.4g %% of requests (FI)\n",
			f->abort_status, f->abort_ppm / 10000.0);
	/* None on a redirect or a direct response (as the worker's). */
	if (rt->cors == NULL || !ism_route_forwards(rt))
		return true;
	v = ism_cors_check(rt->cors, req, rs, &o);
	if (v == ISM_CORS_PREFLIGHT)
		ism_say(r, "corsPolicy: a preflight from %s origin: the answer is 200, here\n",
			o->edits.n ? "an allowed" : "a refused (unmatchedPreflights IGNORE)");
	else if (v == ISM_CORS_ACTUAL)
		ism_say(r,
			"corsPolicy: an allowed origin: its answer gets Access-Control-* fields\n");
	else if (v == ISM_CORS_PASS)
		ism_say(r, "corsPolicy: no origin, or a refused one: no Access-Control-* field\n");
	free(o);
	return v != ISM_CORS_PREFLIGHT;
}

/* What route rt's actions do with req on listener l, with the workers' own
 * functions: the answer a redirect or a direct response makes, or the path a
 * rewrite gives the upstream. false when the route answers itself. */
static bool explain_actions(const struct ism_table *t, const struct ism_listener *l,
			    const struct ism_route *rt, const struct ism_http_req *req,
			    struct ism_router_scratch *rs, struct ism_reply *r)
{
	const struct ism_route_actions *a = rt->act;
	const uint32_t limit = t->limits.max_request_header_bytes;
	struct ism_buf path = {0}, loc = {0};
	bool forward = true;
	int n;

	if (a == NULL)
		return true;
	n = ism_act_rewrite_path(rs, &a->path, ism_router_matched(rs), req->path, req->path_len,
				 req->query, req->query_len, limit, &path);
	switch ((enum ism_route_kind)a->kind) {
	case ISM_ROUTE_REDIRECT:
		forward = false;
		if (req->host == NULL && a->redirect.authority.len == 0)
			ism_say(r, "redirect: no Host to redirect to: the answer is 400\n");
		else if (n < 0 ||
			 ism_act_location(&a->redirect, l->port, l->n_tls > 0, req->host,
					  req->host_len, path.p, path.len, limit, &loc) < 0)
			ism_say(r, "redirect: the location is too long: the answer is 500\n");
		else
			ism_say(r, "redirect: the answer is %u to %.*s\n", a->redirect.code,
				(int)loc.len, loc.p);
		break;
	case ISM_ROUTE_DIRECT:
		forward = false;
		ism_say(r, "directResponse: the answer is %u with %u bytes of body\n",
			a->direct.status, a->direct.body.len);
		break;
	case ISM_ROUTE_FORWARD:
		if (a->path.kind == ISM_PATH_KEEP)
			break;
		if (n == -ENODATA)
			ism_say(r, "rewrite: the regex leaves nothing: the path stays\n");
		else if (n < 0)
			ism_say(r, "rewrite: %s: the answer is 500\n",
				n == -EAGAIN ? "the regex reached its match limit"
					     : "the path is too long");
		else
			ism_say(r, "rewrite: the upstream gets %.*s\n", (int)path.len, path.p);
		forward = n >= 0;
		break;
	}
	ism_buf_free(&path);
	ism_buf_free(&loc);
	return forward;
}

/* No server of the port for sni ("": none given), and what then happens. */
static void no_server(struct ism_reply *r, const char *what, const char *sni, const char *then)
{
	if (sni[0] == '\0')
		ism_say(r, "%s: none without SNI (no \"*\" server on the port): %s\n", what, then);
	else
		ism_say(r, "%s: none for SNI \"%s\": %s\n", what, sni, then);
}

/* The virtual host that serves req on listener l, through the HTTPS server
 * its SNI picks; NULL when none does, or the listener does not serve HTTP
 * (said why). */
static const struct ism_vhost *explain_vhost(const struct ism_listener *l,
					     const struct ism_http_req *req, struct ism_reply *r)
{
	const struct ism_vhost *vh;

	if (l->tcp) {
		ism_say(r, "listener: TCP, its connections are not HTTP (explain tcp %u)\n",
			l->port);
		return NULL;
	}
	if (l->n_tls) {
		/* HTTPS: the server the SNI picks, taken to be the Host. */
		char sni[256];
		size_t n = req->host ? ism_host_len(req->host, req->host_len) : 0;
		int s;

		snprintf(sni, sizeof(sni), "%.*s", (int)n, req->host ? req->host : "");
		s = ism_router_pick_server(l, sni);
		if (s < 0) {
			no_server(r, "HTTPS server", sni, "the handshake is refused");
			return NULL;
		}
		if (l->tls[s].passthrough) {
			ism_say(r,
				"TLS passthrough server: %s: TLS is not terminated here, its "
				"connections are not HTTP (explain tls %s %u)\n",
				l->tls[s].name.p, sni[0] ? sni : "-", l->port);
			return NULL;
		}
		ism_say(r, "HTTPS server: %s (mode %s)\n", l->tls[s].name.p,
			ism_tls_mode_name(l->tls[s].tls.mode));
		vh = ism_router_vhost(l->tls[s].vhosts, l->tls[s].n_vhosts, &l->tls[s].vhost_index,
				      req->host ? req->host : "", req->host ? req->host_len : 0);
	} else {
		vh = ism_router_vhost(l->vhosts, l->n_vhosts, &l->vhost_index,
				      req->host ? req->host : "", req->host ? req->host_len : 0);
	}
	if (vh == NULL) {
		ism_say(r, "virtual host: none serves this Host: the answer is 404 (NR)\n");
		return NULL;
	}
	ism_say(r, "virtual host: %s\n", vh->name.p);
	return vh;
}

/* Route rt's destinations, then the clusters of those with a weight. */
static void explain_dests(struct ism_master *m, const struct ism_table *t,
			  const struct ism_route *rt, struct ism_http_req *req, const char *peer,
			  struct ism_router_scratch *rs, struct ism_reply *r)
{
	for (uint32_t i = 0; i < rt->n_dest; i++) {
		const struct ism_dest_actions *da = rt->dest[i].act;

		ism_say(r, "destination: %s weight %u of %u%s%s%s\n",
			t->clusters[rt->dest[i].cluster].name.p, rt->dest[i].weight,
			rt->total_weight, da && da->authority.len ? " (Host rewritten to " : "",
			da && da->authority.len ? da->authority.p : "",
			da && da->authority.len ? ")" : "");
	}
	for (uint32_t i = 0; i < rt->n_dest; i++)
		if (rt->dest[i].weight > 0)
			explain_cluster(m, t, rt->dest[i].cluster, req, peer, rs, r);
}

/* --- AuthorizationPolicy --- */

/* The address a connection was made to: to (an IP address), else the
 * listener's own when it is bound to one; false when not known. */
static bool local_address(const struct ism_listener *l, const char *to, struct sockaddr_storage *ss)
{
	if (to != NULL)
		return ism_addr_parse(to, ss, NULL);
	*ss = l->addr;
	if (ss->ss_family == AF_INET)
		return ((struct sockaddr_in *)ss)->sin_addr.s_addr != htonl(INADDR_ANY);
	return !IN6_IS_ADDR_UNSPECIFIED(&((struct sockaddr_in6 *)ss)->sin6_addr);
}

/* from=CLIENT_IP: an address, as a connection's peer is; false (and the
 * error said) otherwise. */
static bool take_peer(const char *arg, const char **peer, struct ism_reply *r)
{
	struct sockaddr_storage ss;

	if (!ism_addr_parse(arg + 5, &ss, NULL)) {
		ism_say(r, "error: %s is not an IP address\n%s", arg, usage);
		return false;
	}
	*peer = arg + 5;
	return true;
}

/* What explain's connection reached: local (NULL: unknown), on the
 * listener's port. */
struct explain_dest {
	const struct ism_listener *l;
	const struct sockaddr_storage *local;
};

static bool explain_dest(void *ctx, struct sockaddr_storage *out)
{
	const struct explain_dest *d = ctx;

	if (d->local == NULL)
		return false;
	*out = *d->local;
	if (out->ss_family == AF_INET)
		((struct sockaddr_in *)out)->sin_port = htons(d->l->port);
	else
		((struct sockaddr_in6 *)out)->sin6_port = htons(d->l->port);
	return true;
}

/* The policies' verdict on the request (req; NULL: a connection with server
 * name sni) from peer to listener l (address local; NULL: unknown), as a
 * worker decides it before routing; false when they deny it (said so).
 * Nothing is said when no policy applies. explain has no client
 * certificate: the identities' conditions (principals, namespaces, ...) hold
 * for none. */
static bool explain_authz(const struct ism_table *t, const struct ism_listener *l,
			  const struct ism_http_req *req, const char *peer,
			  const struct sockaddr_storage *local, const char *sni,
			  struct ism_router_scratch *rs, struct ism_reply *r)
{
	struct explain_dest d = {l, local};
	char client[INET6_ADDRSTRLEN] = "";
	struct ism_az_in in = {.req = req,
			       .peer = peer,
			       .client = peer,
			       .sni = sni != NULL && sni[0] ? sni : NULL,
			       .dest = explain_dest,
			       .ctx = &d,
			       .rs = rs};
	const struct ism_az_policy *rule;
	const char *denied;
	int pre = (int)sizeof(ISM_AZ_DETAILS) - 1;

	if (!ism_authz_any(&t->authz, req != NULL) && (req == NULL || t->authz.custom.n == 0))
		return true;
	if (req != NULL) {
		ism_stream_xff_client(t->trusted_proxies, req, client);
		if (client[0] != '\0')
			in.client = client;
	}
	if (req != NULL && ism_authz_custom(&t->authz, &in))
		ism_say(r,
			"authorization: a CUSTOM rule matches: the provider %s decides (explain "
			"does not ask it); if it allows:\n",
			t->authz.xa->name.p);
	if (!ism_authz_any(&t->authz, req != NULL))
		return true;
	denied = ism_authz_check(&t->authz, &in, &rule);
	if (denied != NULL) {
		ism_say(r, "authorization: %s: %s\n",
			rule != NULL ? "a DENY rule matches" : "no ALLOW rule matches", denied);
		ism_say(r, req != NULL ? "the answer is 403 (RBAC: access denied)\n"
				       : "the connection is closed\n");
		return false;
	}
	if (rule != NULL)
		ism_say(r, "authorization: allowed by the ALLOW rule %.*s\n",
			(int)rule->details.len - pre - 1, rule->details.p + pre);
	else
		ism_say(r, "authorization: no DENY rule matches\n");
	return true;
}

/* From the listener on: path normalisation, the policies' verdict, HTTPS
 * server, virtual host, route, destinations. */
static void explain_route(struct ism_master *m, const struct ism_table *t,
			  const struct ism_listener *l, struct ism_http_req *req, const char *peer,
			  struct ism_router_scratch *rs, struct ism_reply *r)
{
	const struct ism_vhost *vh;
	const struct ism_route *rt;
	const char *raw = req->path;
	size_t raw_len = req->path_len;
	struct sockaddr_storage ss;
	bool known;
	int ret = ism_router_normalize(rs, t->path_norm, req);

	/* As a worker's request (ism_stream_request), over plaintext. */
	req->edge_xfp = "http";
	req->edge_peer = peer;
	req->xfp_trusted = t->trusted_proxies > 0;
	if (ret < 0) {
		ism_say(r, "path: refused by pathNormalization: the answer is %s\n",
			ret == -ENOMEM ? "503 (out of memory)" : "400");
		return;
	}
	if (req->path != raw)
		ism_say(r, "path: %.*s normalised to %.*s\n", (int)raw_len, raw, (int)req->path_len,
			req->path);
	known = local_address(l, NULL, &ss);
	if (!explain_authz(t, l, req, peer, known ? &ss : NULL, NULL, rs, r))
		return;
	vh = explain_vhost(l, req, r);
	if (vh == NULL)
		return;
	if (vh->https_redirect && l->n_tls == 0) {
		ism_say(r, "tls.httpsRedirect: the answer is 301 to https://\n");
		return;
	}
	rt = ism_router_route(vh, req, "http", l->port, rs);
	if (rt == NULL && ism_router_limit_hit(rs)) {
		ism_say(r, "route: a regex reached its match limit: the answer is 500\n");
		return;
	}
	if (rt == NULL) {
		ism_say(
		    r,
		    "route: none matches (first match wins, in order): the answer is 404 (NR)\n");
		return;
	}
	ism_say(r, "route: %s (%u match blocks; timeout %u ms; %u retries%s)\n", rt->name.p,
		rt->n_match, rt->timeout_ms, rt->retry.attempts,
		rt->retry.remote_localities && rt->retry.attempts > 1
		    ? ", from the third try to localities not tried (retryRemoteLocalities)"
		    : "");
	if ((rt->fault != NULL || rt->cors != NULL) && !explain_fault_cors(rt, req, rs, r))
		return;
	if (explain_actions(t, l, rt, req, rs, r))
		explain_dests(m, t, rt, req, peer, rs, r);
}

/* --- TCP and TLS passthrough connections --- */

/* What of a tunnel the cluster's connectionPool.tcp bounds. */
static void explain_tunnel(const struct ism_cluster *cl, struct ism_reply *r)
{
	char idle[32] = "none", max[32] = "none", ka[96] = "off";

	if (cl->tcp_idle_ms)
		snprintf(idle, sizeof(idle), "%u ms", cl->tcp_idle_ms);
	if (cl->tcp_max_duration_ms)
		snprintf(max, sizeof(max), "%u ms", cl->tcp_max_duration_ms);
	if (cl->keepalive)
		snprintf(ka, sizeof(ka), "probes %u, time %u s, interval %u s (0: the system's)",
			 cl->keepalive_probes, cl->keepalive_time_s, cl->keepalive_interval_s);
	ism_say(r, "tunnel to %s: idle timeout %s, max duration %s, tcp keepalive %s\n", cl->name.p,
		idle, max, ka);
}

/* The route of routes[0..n) that takes a connection with server name sni
 * (NULL: a TCP one) made to address local (NULL: not known), the workers'
 * choice, and where it goes. */
static void explain_l4_route(struct ism_master *m, const struct ism_table *t,
			     const struct ism_l4route *routes, uint32_t n, const char *sni,
			     const struct sockaddr_storage *local, const char *peer,
			     struct ism_router_scratch *rs, struct ism_reply *r)
{
	const char *kind = sni != NULL ? "tls" : "tcp";
	const struct ism_l4route *rt = ism_router_l4(routes, n, sni, local);
	struct ism_http_req none = {0};
	bool subnets = false;

	for (uint32_t i = 0; i < n && local == NULL; i++)
		subnets |= routes[i].n_subnets > 0;
	if (rt == NULL) {
		ism_say(
		    r,
		    "%s route: none holds (of %u; the first that holds wins): the connection is "
		    "closed (NR)%s\n",
		    kind, n,
		    subnets ? "; one with destinationSubnets needs the address connected to: give "
			      "to=ADDRESS"
			    : "");
		return;
	}
	ism_say(r, "%s route: %s (entry %u of %u%s%s%s)\n", kind, rt->name.p,
		(unsigned)(rt - routes) + 1, n, rt->n_sni ? ", sniHost " : "",
		rt->n_sni ? rt->sni[0].p : "", rt->n_subnets ? ", destinationSubnets hold" : "");
	for (uint32_t i = 0; i < rt->n_dest; i++)
		ism_say(r, "destination: %s weight %u of %u\n",
			t->clusters[rt->dest[i].cluster].name.p, rt->dest[i].weight,
			rt->total_weight);
	for (uint32_t i = 0; i < rt->n_dest; i++) {
		uint32_t j = 0;

		/* Each cluster once, however many destinations name it. */
		while (j < i && rt->dest[j].cluster != rt->dest[i].cluster)
			j++;
		if (rt->dest[i].weight == 0 || j < i)
			continue;
		explain_tunnel(&t->clusters[rt->dest[i].cluster], r);
		explain_cluster(m, t, rt->dest[i].cluster, &none, peer, rs, r);
	}
}

/* A ClientHello naming sni ("": none) on listener l: the server it picks,
 * then, passed through, the tls route. */
static void explain_tls(struct ism_master *m, const struct ism_table *t,
			const struct ism_listener *l, const char *sni,
			const struct sockaddr_storage *local, const char *peer,
			struct ism_router_scratch *rs, struct ism_reply *r)
{
	size_t n = strlen(sni);
	bool name = n <= ISM_SNI_MAX;
	int s = ism_router_pick_server(l, sni);

	/* What the worker's reading of the ClientHello refuses (worker/sniff.h). */
	for (size_t i = 0; i < n; i++)
		name = name && ism_sni_byte_ok((uint8_t)sni[i]);
	if (!name) {
		ism_say(r,
			"server: none: \"%s\" is no server name (%u bytes of printable ASCII at "
			"most): the connection is closed before any handshake\n",
			sni, ISM_SNI_MAX);
		return;
	}
	if (s < 0) {
		no_server(r, "server", sni, "the connection is closed");
		return;
	}
	if (l->tls[s].tcp) {
		ism_say(r, "TLS server: %s (mode %s): TLS is terminated here, then tcp routes\n",
			l->tls[s].name.p, ism_tls_mode_name(l->tls[s].tls.mode));
		if (explain_authz(t, l, NULL, peer, local, sni, rs, r))
			explain_l4_route(m, t, l->tls[s].l4, l->tls[s].n_l4, NULL, local, peer, rs,
					 r);
		return;
	}
	if (!l->tls[s].passthrough) {
		ism_say(r,
			"HTTPS server: %s (mode %s): TLS is terminated here and its requests are "
			"routed by HTTP (explain METHOD http://%s:%u/PATH)\n",
			l->tls[s].name.p, ism_tls_mode_name(l->tls[s].tls.mode),
			sni[0] ? sni : "HOST", l->port);
		return;
	}
	ism_say(r, "TLS passthrough server: %s\n", l->tls[s].name.p);
	if (!explain_authz(t, l, NULL, peer, local, sni, rs, r))
		return;
	if (sni[0] == '\0') {
		ism_say(r, "tls route: none without SNI: the connection is closed (NR)\n");
		return;
	}
	explain_l4_route(m, t, l->tls[s].l4, l->tls[s].n_l4, sni, local, peer, rs, r);
}

static bool passes_through(const struct ism_listener *l)
{
	for (uint32_t i = 0; i < l->n_tls; i++)
		if (l->tls[i].passthrough || l->tls[i].tcp)
			return true;
	return false;
}

/* explain tcp [PORT] ... / explain tls SNI|- [PORT] ... (tok[0] is tcp or tls). */
static void explain_l4(struct ism_master *m, const struct ism_table *t, char **tok, int n_tok,
		       struct ism_reply *r)
{
	bool tls = strcmp(tok[0], "tls") == 0;
	const char *peer = "127.0.0.1", *to = NULL;
	struct ism_router_scratch *rs;
	const struct ism_listener *l = NULL;
	struct sockaddr_storage local;
	unsigned long port = 0;
	char sni[256] = "";
	bool known;

	if (tls && (n_tok < 2 || strlen(tok[1]) >= sizeof(sni))) {
		ism_say(r, "%s", usage);
		return;
	}
	for (size_t i = 0; tls && strcmp(tok[1], "-") != 0 && tok[1][i]; i++)
		sni[i] = (char)tolower((unsigned char)tok[1][i]);
	for (int i = tls ? 2 : 1; i < n_tok; i++) {
		char *end;

		if (strncmp(tok[i], "from=", 5) == 0) {
			if (!take_peer(tok[i], &peer, r))
				return;
		} else if (strncmp(tok[i], "to=", 3) == 0) {
			to = tok[i] + 3;
		} else if (port == 0 && (port = strtoul(tok[i], &end, 10)) > 0 && port <= 65535 &&
			   *end == '\0') {
			continue;
		} else {
			ism_say(r, "error: not an argument of explain %s: %s\n%s", tok[0], tok[i],
				usage);
			return;
		}
	}
	for (uint32_t i = 0; i < t->n_listeners && l == NULL; i++)
		if (port != 0 ? t->listeners[i].port == port
		    : tls     ? passes_through(&t->listeners[i])
			      : t->listeners[i].tcp)
			l = &t->listeners[i];
	if (l == NULL && port != 0) {
		ism_say(r, "error: no listener on port %lu\n", port);
		return;
	}
	if (l == NULL) {
		ism_say(r, "error: no %s listener\n", tls ? "TLS passthrough" : "TCP");
		return;
	}
	if (tls ? l->n_tls == 0 : !l->tcp) {
		ism_say(r, "error: the listener on port %u is not %s\n", l->port,
			tls ? "TLS" : "TCP");
		return;
	}
	known = local_address(l, to, &local);
	if (to != NULL && !known) {
		ism_say(r, "error: to=%s is not an IP address\n%s", to, usage);
		return;
	}
	ism_say(r, "generation %llu, listener %s (port %u, %s)\n", (unsigned long long)t->gen,
		l->name.p, l->port, tls ? "TLS" : "TCP");
	rs = ism_router_scratch_new();
	if (rs == NULL) {
		ism_say(r, "error: out of memory\n");
		return;
	}
	if (tls)
		explain_tls(m, t, l, sni, known ? &local : NULL, peer, rs, r);
	else if (explain_authz(t, l, NULL, peer, known ? &local : NULL, NULL, rs, r))
		explain_l4_route(m, t, l->tcp_routes, l->n_tcp, NULL, known ? &local : NULL, peer,
				 rs, r);
	ism_router_scratch_free(rs);
}

void ism_explain(struct ism_master *m, char *args, struct ism_reply *r)
{
	const struct ism_table *t = ism_shm_current(&m->shm);
	struct ism_http_header hdrs[EXPLAIN_HDRS];
	struct ism_http_req req = {.headers = hdrs};
	struct ism_http_limits lim = {
	    .max_head_bytes = 65536, .max_headers = EXPLAIN_HDRS, .max_uri_bytes = 16384};
	char *tok[EXPLAIN_HDRS + 3], *save = NULL, buf[8192];
	const char *peer = "127.0.0.1";
	char *hv[EXPLAIN_HDRS];
	int n_tok = 0, n_h = 0, len;
	uint16_t port = 0;
	const struct ism_listener *l = NULL;
	struct ism_router_scratch *rs;

	for (char *p = strtok_r(args, " ", &save); p && n_tok < EXPLAIN_HDRS + 2;
	     p = strtok_r(NULL, " ", &save))
		tok[n_tok++] = p;
	if (t != NULL && n_tok >= 1 && (strcmp(tok[0], "tcp") == 0 || strcmp(tok[0], "tls") == 0)) {
		explain_l4(m, t, tok, n_tok, r);
		return;
	}
	if (n_tok < 2 || t == NULL) {
		ism_say(r, "%s", usage);
		return;
	}
	for (int i = 2; i < n_tok; i++) {
		if (strncmp(tok[i], "from=", 5) != 0)
			hv[n_h++] = tok[i];
		else if (!take_peer(tok[i], &peer, r))
			return;
	}
	len = build(buf, sizeof(buf), tok[0], tok[1], hv, n_h, &port);
	if (len < 0 || ism_http_parse_request(buf, (size_t)len, &lim, &req) <= 0) {
		ism_say(r, "error: not a valid request: %s %s\n%s", tok[0], tok[1], usage);
		return;
	}
	for (uint32_t i = 0; i < t->n_listeners && l == NULL; i++)
		if (port == 0 || t->listeners[i].port == port)
			l = &t->listeners[i];
	if (l == NULL) {
		ism_say(r, "error: no listener on port %u\n", port);
		return;
	}
	ism_say(r, "generation %llu, listener %s (port %u)\n", (unsigned long long)t->gen,
		l->name.p, l->port);
	rs = ism_router_scratch_new();
	if (rs == NULL) {
		ism_say(r, "error: out of memory\n");
		return;
	}
	explain_route(m, t, l, &req, peer, rs, r);
	ism_router_scratch_free(rs);
}
