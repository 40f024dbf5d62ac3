/* SPDX-License-Identifier: Apache-2.0 */
/* The /metrics page (master/metrics.h). Every family goes through
 * ism_prom_family and ism_prom_u64/f64; the families that read one field per
 * worker, per endpoint or per cluster are tables of (metric, field). */
#include "master/metrics.h"

#include "master/counters.h"
#include "master/resolve.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>

#include "health/outlier.h"
#include "lib/strmap.h"
#include "master/buildinfo.h"
#include "master/commands.h"
#include "master/master-t.h"
#include "master/procstat.h"
#include "shm/table.h"

void ism_prom_family(struct ism_reply *r, const struct ism_metric *m)
{
	ism_say(r, "# HELP %s %s\n# TYPE %s %s\n", m->name, m->help, m->name, m->type);
}

/* A sample line gathered on the stack and appended to the reply in one go
 * (a page holds tens of thousands); a longer one is appended in pieces. */
struct line {
	struct ism_reply *r;
	size_t n;
	char buf[512];
};

static void line_flush(struct line *l)
{
	if (l->n)
		ism_say(l->r, "%.*s", (int)l->n, l->buf);
	l->n = 0;
}

static void line_put(struct line *l, const char *s, size_t len)
{
	if (l->n + len > sizeof(l->buf))
		line_flush(l);
	if (len > sizeof(l->buf)) {
		ism_say(l->r, "%.*s", (int)len, s);
		return;
	}
	memcpy(l->buf + l->n, s, len);
	l->n += len;
}

static void line_str(struct line *l, const char *s)
{
	line_put(l, s, strlen(s));
}

/* name{k="v",...} for the pairs of ap (nothing without pairs); backslash,
 * quote and newline escaped in the values. */
static void line_head(struct line *l, const char *name, va_list ap)
{
	const char *key;
	int n = 0;

	line_str(l, name);
	while ((key = va_arg(ap, const char *)) != NULL) {
		const char *v = va_arg(ap, const char *);

		line_str(l, n++ ? "," : "{");
		line_str(l, key);
		line_str(l, "=\"");
		for (size_t run; *v; v += run) {
			run = strcspn(v, "\\\"\n");
			if (run) {
				line_put(l, v, run);
				continue;
			}
			line_put(l, *v == '\n' ? "\\n" : *v == '"' ? "\\\"" : "\\\\", 2);
			run = 1;
		}
		line_str(l, "\"");
	}
	if (n)
		line_str(l, "}");
}

void ism_prom_u64(struct ism_reply *r, const char *name, unsigned long long v, ...)
{
	struct line l = {.r = r};
	char num[32];
	va_list ap;

	va_start(ap, v);
	line_head(&l, name, ap);
	va_end(ap);
	line_put(&l, num, (size_t)snprintf(num, sizeof(num), " %llu\n", v));
	line_flush(&l);
}

void ism_prom_f64(struct ism_reply *r, const char *name, double v, ...)
{
	struct line l = {.r = r};
	char num[48];
	va_list ap;

	va_start(ap, v);
	line_head(&l, name, ap);
	va_end(ap);
	line_put(&l, num, (size_t)snprintf(num, sizeof(num), " %.15g\n", v));
	line_flush(&l);
}

/* A family of one sample without labels. */
static void scalar(struct ism_reply *r, const struct ism_metric *m, unsigned long long v)
{
	ism_prom_family(r, m);
	ism_prom_u64(r, m->name, v, NULL);
}

static const char *const classes[] = {"", "1xx", "2xx", "3xx", "4xx", "5xx"};

/* ---------- per worker, summed ---------- */

/* The counters the workers keep in their shared slots, summed over workers. */
struct worker_metric {
	struct ism_metric m;
	size_t off; /* in struct ism_worker_stats */
};

#define WM(field, name, type, help)                                                                \
	{                                                                                          \
		{name, type, help}, offsetof(struct ism_worker_stats, field)                       \
	}
static const struct worker_metric worker_metrics[] = {
    WM(conn_active, "isthmus_connections_active", "gauge", "Client connections open."),
    WM(conn_accepted, "isthmus_connections_accepted_total", "counter",
       "Client connections accepted."),
    WM(conn_rejected, "isthmus_connections_rejected_total", "counter",
       "Client connections closed at once: maxConnectionsPerWorker reached."),
    WM(bytes_in, "isthmus_received_bytes_total", "counter", "Bytes received from clients."),
    WM(bytes_out, "isthmus_sent_bytes_total", "counter", "Bytes sent to clients."),
    WM(upstream_connects, "isthmus_upstream_connects_total", "counter",
       "Upstream connections opened."),
    WM(upstream_connect_fail, "isthmus_upstream_connect_failures_total", "counter",
       "Upstream connections that failed or timed out."),
    WM(upstream_reused, "isthmus_upstream_reused_total", "counter",
       "Requests sent on a pooled upstream connection."),
    WM(tls_handshakes, "isthmus_tls_handshakes_total", "counter",
       "TLS handshakes completed with clients (resumed ones included)."),
    WM(tls_resumed, "isthmus_tls_resumed_total", "counter",
       "Client TLS handshakes that resumed a session (tickets shared by the workers)."),
    WM(tls_handshake_fail, "isthmus_tls_handshake_failures_total", "counter",
       "TLS handshakes failed, with clients or upstreams (no SNI match, no or bad "
       "certificate, protocol)."),
    WM(proxy_protocol_errors, "isthmus_proxy_protocol_errors_total", "counter",
       "Connections closed for a missing or malformed PROXY protocol header."),
    WM(access_log_dropped, "isthmus_access_log_dropped_total", "counter",
       "Access-log lines dropped: buffers full, a write or a syslog send failed."),
    WM(accept_errors, "isthmus_accept_errors_total", "counter",
       "Accepts that failed for lack of descriptors or memory (accepting pauses, then retries)."),
    WM(accept_kicks, "isthmus_accept_kicks_total", "counter",
       "Accepts a worker added at its tick for a connection waiting in a listen queue that no "
       "accept was woken for (a wake lost with a draining worker's accept)."),
    WM(send_parked, "isthmus_send_parked_total", "counter",
       "Sends a peer could not take at once, moved from the receive buffers to the "
       "connection's own memory."),
    WM(recv_buffer_waits, "isthmus_receive_buffer_waits_total", "counter",
       "Receives that found no free shared receive buffer and waited for one."),
    WM(regex_limit, "isthmus_route_regex_limit_total", "counter",
       "Requests answered 500 because a route regex reached its match limit."),
    WM(tunnels_active, "isthmus_tunnels_active", "gauge",
       "Tunnels open: WebSocket and other upgrades, TCP and TLS (passthrough or terminated) "
       "connections."),
    WM(tunnels_total, "isthmus_tunnels_total", "counter", "Tunnels opened (both sides connected)."),
    WM(tunnel_bytes_in, "isthmus_tunnel_received_bytes_total", "counter",
       "Bytes tunnels carried from clients to upstreams."),
    WM(tunnel_bytes_out, "isthmus_tunnel_sent_bytes_total", "counter",
       "Bytes tunnels carried from upstreams to clients."),
    WM(tunnel_ms, "isthmus_tunnel_duration_milliseconds_total", "counter",
       "How long the closed tunnels lasted, summed (divide by isthmus_tunnels_total less "
       "isthmus_tunnels_active for a mean)."),
    WM(tunnels_refused, "isthmus_tunnels_refused_total", "counter",
       "TCP and TLS (passthrough or terminated) connections closed without a tunnel: no server "
       "name, no route, no healthy upstream, connect failures, maxConnections."),
    WM(authz_denied, "isthmus_authz_denied_total", "counter",
       "Requests (answered 403) and TCP or TLS (passthrough or terminated) connections (closed) an "
       "AuthorizationPolicy denied."),
    WM(jwt_denied, "isthmus_jwt_denied_total", "counter",
       "Requests answered 401 or 403 because a JWT a RequestAuthentication checks was not "
       "valid."),
    WM(h2_sessions, "isthmus_http2_connections", "gauge", "HTTP/2 client connections open."),
    WM(streams, "isthmus_streams_active", "gauge",
       "Streams in flight (requests), and streams given up until their timer is removed."),
    WM(h2_heap_bytes, "isthmus_http2_connection_heap_bytes", "gauge",
       "Heap the HTTP/2 client connections hold: libnghttp2's sessions, output buffers and "
       "isthmus's connection and stream structs, less the pages idle ones gave back; not "
       "their streams' body buffers."),
};

static void latency_histogram(struct ism_reply *r, const struct ism_worker_stats *st)
{
	static const uint32_t bounds[ISM_LAT_BUCKETS] = ISM_LAT_BOUNDS_MS;
	static const struct ism_metric m = {
	    "isthmus_request_duration_seconds", "histogram",
	    "Time from a complete request head to the end of its response."};
	uint64_t cum = 0;

	ism_prom_family(r, &m);
	for (int b = 0; b < ISM_LAT_BUCKETS; b++) {
		char le[32];

		cum += st->latency_bucket[b];
		if (bounds[b] == UINT32_MAX)
			snprintf(le, sizeof(le), "+Inf");
		else
			snprintf(le, sizeof(le), "%g", bounds[b] / 1000.0);
		ism_prom_u64(r, "isthmus_request_duration_seconds_bucket", cum, "le", le, NULL);
	}
	ism_prom_f64(r, "isthmus_request_duration_seconds_sum", st->latency_sum_ms / 1000.0, NULL);
	ism_prom_u64(r, "isthmus_request_duration_seconds_count", cum, NULL);
}

static void worker_families(struct ism_reply *r, const struct ism_worker_stats *st)
{
	static const struct ism_metric requests = {"isthmus_requests_total", "counter",
						   "Requests parsed by the workers."};
	static const struct ism_metric responses = {"isthmus_responses_total", "counter",
						    "Responses sent, by status class."};

	scalar(r, &requests, st->requests);
	ism_prom_family(r, &responses);
	for (int k = 1; k <= 5; k++)
		ism_prom_u64(r, responses.name, st->resp_class[k], "code_class", classes[k], NULL);
	latency_histogram(r, st);
}

/* Request mirroring (worker/mirror.c): copies sent, their responses, and
 * the copies dropped by reason (enum ism_mirror_drop). */
static void mirror_families(struct ism_reply *r, const struct ism_worker_stats *st)
{
	static const struct ism_metric sent = {
	    "isthmus_mirror_requests_total", "counter",
	    "Mirrored copies of requests sent to a mirror's endpoint."};
	static const struct ism_metric responses = {
	    "isthmus_mirror_responses_total", "counter",
	    "Responses of mirrored copies (discarded), by status class."};
	static const struct ism_metric dropped = {
	    "isthmus_mirror_dropped_total", "counter",
	    "Mirrored copies not sent or failed, by reason: in_flight_limit "
	    "(limits.mirrorMaxInFlight), body_too_large (limits.mirrorMaxBodyBytes), "
	    "no_healthy_upstream, failed (connect, reset, timeout, request not complete)."};
	static const char *const reasons[ISM_MIRROR_DROP_N] = {"in_flight_limit", "body_too_large",
							       "no_healthy_upstream", "failed"};

	scalar(r, &sent, st->mirror_sent);
	ism_prom_family(r, &responses);
	for (int k = 1; k <= 5; k++)
		ism_prom_u64(r, responses.name, st->mirror_resp_class[k], "code_class", classes[k],
			     NULL);
	ism_prom_family(r, &dropped);
	for (int k = 0; k < ISM_MIRROR_DROP_N; k++)
		ism_prom_u64(r, dropped.name, st->mirror_dropped[k], "reason", reasons[k], NULL);
}

/* The checks of CUSTOM policies' provider (worker/extauthz.c), by result
 * (enum ism_xa_result; Envoy's ext_authz stats ok, denied, error,
 * failure_mode_allowed). */
static void extauthz_family(struct ism_reply *r, const struct ism_worker_stats *st)
{
	static const struct ism_metric m = {
	    "isthmus_ext_authz_total", "counter",
	    "Checks of the external authorizer of CUSTOM AuthorizationPolicies, by result: ok "
	    "(allowed), denied (its answer sent), error (statusOnError sent), "
	    "failure_mode_allowed (an error, and failOpen let the request go on)."};
	static const char *const results[ISM_XA_R_N] = {"ok", "denied", "error",
							"failure_mode_allowed"};

	ism_prom_family(r, &m);
	for (int k = 0; k < ISM_XA_R_N; k++)
		ism_prom_u64(r, m.name, st->ext_authz[k], "result", results[k], NULL);
}

static void worker_counters(struct ism_reply *r, const struct ism_worker_stats *st)
{
	for (size_t i = 0; i < sizeof(worker_metrics) / sizeof(worker_metrics[0]); i++) {
		const struct worker_metric *wm = &worker_metrics[i];

		scalar(r, &wm->m,
		       atomic_load((const _Atomic uint64_t *)((const char *)st + wm->off)));
	}
}

/* ---------- per listener, route and cluster ---------- */

/* The byte offset of responses[k] in a struct of counters. */
#define RESPONSES(type, k) (offsetof(type, responses) + (size_t)(k) * sizeof(uint64_t))

static void route_responses(struct ism_reply *r, const struct ism_table *t,
			    const struct ism_older *o)
{
	static const struct ism_metric m = {"isthmus_route_responses_total", "counter",
					    "Responses by route and status class."};

	ism_prom_family(r, &m);
	for (uint32_t l = 0; t && l < t->n_listeners; l++) {
		/* A route's counters are one object for every vhost (and gateway)
		 * its VirtualService makes: listed once per listener. The keys
		 * are the counters' addresses, read in place. */
		struct ism_strmap seen;

		ism_strmap_init(&seen, 0x6973746875730001ull);
		for (uint32_t set = 0; set < ism_listener_sets(&t->listeners[l]); set++) {
			uint32_t nv;
			const struct ism_vhost *vh = ism_listener_set(&t->listeners[l], set, &nv);

			for (uint32_t v = 0; v < nv; v++)
				for (uint32_t i = 0; i < vh[v].n_routes; i++) {
					const struct ism_route *rt = &vh[v].routes[i];

					if (rt->stats == NULL ||
					    ism_strmap_add(&seen, (const char *)&rt->stats,
							   sizeof(rt->stats), 0, NULL) <= 0)
						continue;
					for (int k = 1; k <= 5; k++)
						ism_prom_u64(
						    r, m.name,
						    ism_counters_sum(
							o, ISM_COUNTED_ROUTE, &t->listeners[l].name,
							&rt->name, rt->stats,
							RESPONSES(struct ism_counters, k)),
						    "listener", t->listeners[l].name.p, "route",
						    rt->name.p, "code_class", classes[k], NULL);
				}
		}
		ism_strmap_free(&seen);
	}
}

/* One counter of the TCP and TLS routes' (struct ism_l4counters at off) of
 * listener l's routes r[0..n), each route once (its matches share them). */
static void l4_counter(struct ism_reply *r, const char *name, size_t off,
		       const struct ism_listener *l, const struct ism_l4route *rt, uint32_t n,
		       struct ism_strmap *seen, const struct ism_older *o)
{
	for (uint32_t i = 0; i < n; i++) {
		if (rt[i].stats == NULL || ism_strmap_add(seen, (const char *)&rt[i].stats,
							  sizeof(rt[i].stats), 0, NULL) <= 0)
			continue;
		ism_prom_u64(
		    r, name,
		    ism_counters_sum(o, ISM_COUNTED_L4, &l->name, &rt[i].name, rt[i].stats, off),
		    "listener", l->name.p, "route", rt[i].name.p, NULL);
	}
}

static void l4_routes(struct ism_reply *r, const struct ism_table *t, const struct ism_older *o)
{
	static const struct {
		struct ism_metric m;
		size_t off;
	} ms[] = {
	    {{"isthmus_l4_route_connections_total", "counter",
	      "Tunnels opened by TCP and TLS routes, by listener and route."},
	     offsetof(struct ism_l4counters, connections)},
	    {{"isthmus_l4_route_received_bytes_total", "counter",
	      "Bytes TCP and TLS routes carried from clients."},
	     offsetof(struct ism_l4counters, bytes_in)},
	    {{"isthmus_l4_route_sent_bytes_total", "counter",
	      "Bytes TCP and TLS routes carried to clients."},
	     offsetof(struct ism_l4counters, bytes_out)},
	};

	for (size_t k = 0; k < sizeof(ms) / sizeof(ms[0]); k++) {
		ism_prom_family(r, &ms[k].m);
		for (uint32_t li = 0; t && li < t->n_listeners; li++) {
			const struct ism_listener *l = &t->listeners[li];
			struct ism_strmap seen;

			ism_strmap_init(&seen, 0x6973746875730002ull);
			l4_counter(r, ms[k].m.name, ms[k].off, l, l->tcp_routes, l->n_tcp, &seen,
				   o);
			for (uint32_t i = 0; i < l->n_tls; i++)
				l4_counter(r, ms[k].m.name, ms[k].off, l, l->tls[i].l4,
					   l->tls[i].n_l4, &seen, o);
			ism_strmap_free(&seen);
		}
	}
}

/* The counters of struct ism_cluster_dyn, per cluster. */
struct cluster_metric {
	struct ism_metric m;
	size_t off; /* in struct ism_cluster_dyn */
};

static const struct cluster_metric cluster_metrics[] = {
    {{"isthmus_cluster_retries_total", "counter", "Retries made, by cluster."},
     offsetof(struct ism_cluster_dyn, retries)},
    {{"isthmus_cluster_overflow_total", "counter",
      "Requests refused by a connection-pool limit, by cluster."},
     offsetof(struct ism_cluster_dyn, overflow)},
};

/* Per listener, route and cluster of the published generation, kept by name
 * across generations (master/counters.h). */
static void table_families(struct ism_reply *r, const struct ism_table *t,
			   const struct ism_shm *shm)
{
	static const struct ism_metric cl_resp = {"isthmus_cluster_responses_total", "counter",
						  "Responses by cluster and status class."};
	static const struct ism_metric li_resp = {"isthmus_listener_responses_total", "counter",
						  "Responses by listener and status class."};
	struct ism_older o;

	ism_older_tables(shm, t, &o);
	ism_prom_family(r, &cl_resp);
	for (uint32_t c = 0; t && c < t->n_clusters; c++)
		for (int k = 1; k <= 5; k++)
			ism_prom_u64(r, cl_resp.name,
				     ism_counters_sum(&o, ISM_COUNTED_CLUSTER, NULL,
						      &t->clusters[c].name, t->clusters[c].dyn,
						      RESPONSES(struct ism_cluster_dyn, k)),
				     "cluster", t->clusters[c].name.p, "code_class", classes[k],
				     NULL);
	ism_prom_family(r, &li_resp);
	for (uint32_t l = 0; t && l < t->n_listeners; l++)
		for (int k = 1; k <= 5; k++)
			ism_prom_u64(r, li_resp.name,
				     ism_counters_sum(&o, ISM_COUNTED_LISTENER, NULL,
						      &t->listeners[l].name, t->listeners[l].stats,
						      RESPONSES(struct ism_counters, k)),
				     "listener", t->listeners[l].name.p, "code_class", classes[k],
				     NULL);
	route_responses(r, t, &o);
	l4_routes(r, t, &o);
	for (size_t i = 0; i < sizeof(cluster_metrics) / sizeof(cluster_metrics[0]); i++) {
		const struct cluster_metric *cm = &cluster_metrics[i];

		ism_prom_family(r, &cm->m);
		for (uint32_t c = 0; t && c < t->n_clusters; c++)
			ism_prom_u64(r, cm->m.name,
				     ism_counters_sum(&o, ISM_COUNTED_CLUSTER, NULL,
						      &t->clusters[c].name, t->clusters[c].dyn,
						      cm->off),
				     "cluster", t->clusters[c].name.p, NULL);
	}
	ism_older_free(&o);
}

/* Outlier detection per cluster (Envoy's outlier_detection.ejections_active
 * and ejections_enforced_total): each cluster's own, from its outlier slots,
 * which outlive reloads that keep the cluster. */
static void cluster_ejections(struct ism_reply *r, const struct ism_table *t,
			      const struct ism_shm_hdr *h)
{
	static const struct ism_metric active = {
	    "isthmus_cluster_ejections_active", "gauge",
	    "Endpoints the cluster's outlier detection has ejected now, by cluster."};
	static const struct ism_metric total = {
	    "isthmus_cluster_ejections_total", "counter",
	    "Ejections by the cluster's outlier detection, of its current endpoints, by cluster."};

	for (int pass = 0; pass < 2; pass++) {
		ism_prom_family(r, pass == 0 ? &active : &total);
		for (uint32_t c = 0; t && c < t->n_clusters; c++) {
			const struct ism_cluster *cl = &t->clusters[c];
			uint64_t n = 0;

			for (uint32_t i = 0; i < cl->n_endpoints; i++)
				n += pass == 0 ? (uint64_t)ism_ep_ejected(h, &cl->endpoints[i])
					       : ism_ep_ejections(h, &cl->endpoints[i]);
			ism_prom_u64(r, pass == 0 ? active.name : total.name, n, "cluster",
				     cl->name.p, NULL);
		}
	}
}

/* ---------- per endpoint ---------- */

static unsigned long long ep_healthy(const struct ism_ep_state *e)
{
	return atomic_load(&e->health) == ISM_EP_HEALTHY;
}

static unsigned long long ep_ejected(const struct ism_ep_state *e)
{
	return atomic_load(&e->ejected_in) != 0;
}

static unsigned long long ep_eligible(const struct ism_ep_state *e)
{
	return (unsigned long long)ism_ep_state_eligible(e);
}

static unsigned long long ep_ready(const struct ism_ep_state *e)
{
	return atomic_load(&e->admin) == ISM_EP_ADMIN_READY;
}

static unsigned long long ep_drain(const struct ism_ep_state *e)
{
	return atomic_load(&e->admin) == ISM_EP_ADMIN_DRAIN;
}

static unsigned long long ep_maint(const struct ism_ep_state *e)
{
	return atomic_load(&e->admin) == ISM_EP_ADMIN_MAINT;
}

/* The counters read as they are. */
#define EP_FIELD(field)                                                                            \
	static unsigned long long ep_##field(const struct ism_ep_state *e)                         \
	{                                                                                          \
		return atomic_load(&e->field);                                                     \
	}
EP_FIELD(requests)
EP_FIELD(failures)
EP_FIELD(inflight)
EP_FIELD(hc_checks)
EP_FIELD(hc_failures)
EP_FIELD(ejections)
#undef EP_FIELD

/* A family of one sample per endpoint; one with a state label (an enum as
 * labels, one sample per value) takes one entry per value, in a row. */
struct endpoint_metric {
	struct ism_metric m;
	unsigned long long (*value)(const struct ism_ep_state *e);
	const char *state; /* the label state's value, or NULL */
};

#define ADMIN_STATE                                                                                \
	{                                                                                          \
		"isthmus_endpoint_admin_state", "gauge",                                           \
		    "1 for the admin state the control socket set (state=\"ready\", \"drain\" or " \
		    "\"maint\"), 0 for the others."                                                \
	}
static const struct endpoint_metric endpoint_metrics[] = {
    {{"isthmus_endpoint_healthy", "gauge",
      "1 when the endpoint's active health check passes, or it has none (0 in maint, whose "
      "checks stop)."},
     ep_healthy,
     NULL},
    {{"isthmus_endpoint_eligible", "gauge",
      "1 when the endpoint may take a new request: healthy, ejected by none of its clusters, "
      "admin state ready and weight not 0."},
     ep_eligible,
     NULL},
    {ADMIN_STATE, ep_ready, "ready"},
    {ADMIN_STATE, ep_drain, "drain"},
    {ADMIN_STATE, ep_maint, "maint"},
    {{"isthmus_endpoint_requests_total", "counter", "Requests sent to the endpoint."},
     ep_requests,
     NULL},
    {{"isthmus_endpoint_failures_total", "counter",
      "Connect failures, resets and 5xx responses from the endpoint."},
     ep_failures,
     NULL},
    {{"isthmus_endpoint_requests_in_flight", "gauge",
      "Requests in flight to the endpoint, all workers."},
     ep_inflight,
     NULL},
    {{"isthmus_health_checks_total", "counter", "Active health checks run against the endpoint."},
     ep_hc_checks,
     NULL},
    {{"isthmus_health_check_failures_total", "counter", "Active health checks that failed."},
     ep_hc_failures,
     NULL},
    {{"isthmus_endpoint_ejections_total", "counter",
      "Outlier-detection ejections of the endpoint, in all its clusters."},
     ep_ejections,
     NULL},
    {{"isthmus_endpoint_ejected", "gauge",
      "1 while the outlier detection of one of the endpoint's clusters has it ejected."},
     ep_ejected,
     NULL},
};

/* The "<service>|<addr>:<port>" keys become the labels service and endpoint. */
static void endpoint_families(struct ism_reply *r, const struct ism_shm *shm)
{
	const struct ism_shm_hdr *h = shm->hdr;

	for (size_t k = 0; k < sizeof(endpoint_metrics) / sizeof(endpoint_metrics[0]); k++) {
		const struct endpoint_metric *em = &endpoint_metrics[k];

		if (k == 0 || strcmp(em->m.name, endpoint_metrics[k - 1].m.name) != 0)
			ism_prom_family(r, &em->m);
		for (int i = 0; i < ISM_MAX_ENDPOINTS; i++) {
			const char *key = shm->pub->ep_keys[i];
			const char *bar = strchr(key, '|');
			char svc[ISM_EP_KEY_MAX];

			if (!ism_shm_ep_listed(shm, (uint32_t)i) || bar == NULL)
				continue;
			snprintf(svc, sizeof(svc), "%.*s", (int)(bar - key), key);
			ism_prom_u64(r, em->m.name, em->value(&h->eps[i]), "service", svc,
				     "endpoint", bar + 1, em->state ? "state" : NULL, em->state,
				     NULL);
		}
	}
}

/* ---------- the master's own ---------- */

static void master_families(struct ism_master *m, struct ism_reply *r)
{
	static const struct ism_metric gen = {"isthmus_config_generation", "gauge",
					      "Generation of the configuration in use."};
	static const struct ism_metric reloads = {"isthmus_reloads_total", "counter",
						  "Successful reloads."};
	static const struct ism_metric refused = {"isthmus_reload_failures_total", "counter",
						  "Refused reloads."};
	static const struct ism_metric workers = {"isthmus_workers", "gauge",
						  "Worker processes configured."};
	static const struct ism_metric max_conn = {
	    "isthmus_max_connections_per_worker", "gauge",
	    "Client connections a worker takes (spec.limits.maxConnectionsPerWorker, or the "
	    "default derived from the open-file limit)."};
	static const struct ism_metric nofile = {
	    "isthmus_open_files_limit", "gauge",
	    "The open-file limit (RLIMIT_NOFILE) the workers run with."};
	static const struct ism_metric hangs = {
	    "isthmus_worker_hangs_total", "counter",
	    "Workers killed (and restarted) for a heartbeat older than 5 s."};
	static const struct ism_metric ready = {
	    "isthmus_ready", "gauge", "1 while serving (the readiness check answers 200)."};
	const struct ism_table *t = ism_shm_current(&m->shm);
	const struct ism_shm_hdr *h = m->shm.hdr;
	struct rlimit rl;

	scalar(r, &gen, m->gen);
	scalar(r, &reloads, atomic_load(&h->reloads));
	scalar(r, &refused, atomic_load(&h->reload_failures));
	scalar(r, &workers, (unsigned long long)m->n_workers);
	scalar(r, &max_conn, t ? t->limits.max_connections : 0);
	scalar(r, &nofile, getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 0);
	scalar(r, &hangs, m->worker_hangs);
	scalar(r, &ready, (unsigned long long)ism_master_ready(m));
}

/* ---------- the processes ---------- */

static void build_info(struct ism_reply *r)
{
	static const struct ism_metric m = {
	    "isthmus_build_info", "gauge",
	    "Always 1: the release and the libraries' versions it runs with (isthmus -vv)."};
	struct ism_build_versions v;

	ism_build_versions(&v);
	ism_prom_family(r, &m);
	ism_prom_u64(r, m.name, 1, "version", ISM_VERSION, "openssl", v.openssl, "pcre2", v.pcre2,
		     "libyaml", v.libyaml, "liburing", v.liburing, "nghttp2", v.nghttp2, NULL);
}

/* The master's own, named as the Prometheus client libraries name them, so
 * that their dashboards and alerts work; the workers' come per worker below. */
static void process_families(struct ism_master *m, struct ism_reply *r)
{
	static const struct ism_metric start = {
	    "process_start_time_seconds", "gauge",
	    "Start time of the master process since the epoch, in seconds."};
	static const struct ism_metric cpu = {
	    "process_cpu_seconds_total", "counter",
	    "User and system CPU time of the master process (the workers': "
	    "isthmus_worker_cpu_seconds_total), in seconds."};
	static const struct ism_metric rss = {
	    "process_resident_memory_bytes", "gauge",
	    "Resident memory of the master process (the workers': "
	    "isthmus_worker_resident_memory_bytes), in bytes."};
	static const struct ism_metric vsize = {"process_virtual_memory_bytes", "gauge",
						"Virtual memory of the master process, in bytes."};
	static const struct ism_metric fds = {"process_open_fds", "gauge",
					      "Open descriptors of the master process."};
	static const struct ism_metric max_fds = {
	    "process_max_fds", "gauge",
	    "The open-file limit of the master process (the workers inherit it)."};
	struct ism_procstat ps;
	struct rlimit rl;
	int n;

	ism_prom_family(r, &start);
	ism_prom_f64(r, start.name, (double)atomic_load(&m->shm.hdr->started_ms) / 1000.0, NULL);
	if (ism_procstat_read(0, &ps) == 0) {
		ism_prom_family(r, &cpu);
		ism_prom_f64(r, cpu.name, ps.cpu_s, NULL);
		scalar(r, &rss, ps.rss_bytes);
		scalar(r, &vsize, ps.vsize_bytes);
	}
	n = ism_procstat_open_fds();
	if (n >= 0)
		scalar(r, &fds, (unsigned long long)n);
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
		scalar(r, &max_fds, rl.rlim_cur);
}

/* Per running worker (label worker, its slot), from /proc/PID/stat. */
static void worker_processes(struct ism_master *m, struct ism_reply *r)
{
	static const struct ism_metric cpu = {
	    "isthmus_worker_cpu_seconds_total", "counter",
	    "User and system CPU time of each running worker process, in seconds."};
	static const struct ism_metric rss = {
	    "isthmus_worker_resident_memory_bytes", "gauge",
	    "Resident memory of each running worker process, in bytes (the shared region "
	    "counted in each)."};
	struct ism_procstat ps[ISM_WORKER_SLOTS];
	bool got[ISM_WORKER_SLOTS] = {false};
	char idx[ISM_WORKER_SLOTS][12];

	for (int i = 0; i < m->n_slots; i++) {
		got[i] =
		    m->workers[i].pid != 0 && ism_procstat_read(m->workers[i].pid, &ps[i]) == 0;
		snprintf(idx[i], sizeof(idx[i]), "%d", i);
	}
	ism_prom_family(r, &cpu);
	for (int i = 0; i < m->n_slots; i++)
		if (got[i])
			ism_prom_f64(r, cpu.name, ps[i].cpu_s, "worker", idx[i], NULL);
	ism_prom_family(r, &rss);
	for (int i = 0; i < m->n_slots; i++)
		if (got[i])
			ism_prom_u64(r, rss.name, ps[i].rss_bytes, "worker", idx[i], NULL);
}

void ism_metrics_write(struct ism_master *m, struct ism_reply *r)
{
	struct ism_worker_stats st;

	ism_shm_stats_sum(&m->shm, &st);
	worker_families(r, &st);
	table_families(r, ism_shm_current(&m->shm), &m->shm);
	cluster_ejections(r, ism_shm_current(&m->shm), m->shm.hdr);
	worker_counters(r, &st);
	mirror_families(r, &st);
	extauthz_family(r, &st);
	master_families(m, r);
	ism_resolver_metrics(m->dns, r);
	build_info(r);
	process_families(m, r);
	worker_processes(m, r);
	endpoint_families(r, &m->shm);
}
