/* SPDX-License-Identifier: Apache-2.0 */
/* Control-socket commands (master): show info, workers, config, clusters,
 * endpoints; set endpoint state and weight; reload. Each in text and JSON. */
#include "master/commands.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "conf/model.h"
#include "health/health.h"
#include "health/outlier.h"
#include "health/warmup.h"
#include "lib/addr.h"
#include "lib/json.h"
#include "lib/log.h"
#include "master/cmdlist.h"
#include "master/master-t.h"
#include "master/reload.h"
#include "master/resolve.h"
#include "shm/table.h"

int ism_master_ready(const struct ism_master *m)
{
	/* Upgraded: the old workers serve until the new ones start. */
	if (!m->stopping && ism_upgrade_settling(&m->up))
		return 1;
	if (m->stopping || atomic_load(&m->shm.hdr->stopping))
		return 0;
	/* A set a reload replaced counts while it serves: until the new one does. */
	return ism_master_workers_serve(m);
}

bool ism_master_slot_serves(const struct ism_master *m, int i)
{
	const struct ism_worker_slot *ws = &m->shm.hdr->workers[i];

	return atomic_load(&ws->pid) != 0 && atomic_load(&ws->gen) != 0 &&
	       !atomic_load(&ws->draining);
}

bool ism_master_workers_serve(const struct ism_master *m)
{
	/* Serving: a worker, of the current set or of the one a reload is
	 * replacing, takes connections on a published configuration. One in
	 * its restart delay (a crash loop) does not take a gateway whose other
	 * workers serve out of its balancer's pool. */
	for (int i = 0; i < m->n_slots; i++)
		if (ism_master_slot_serves(m, i))
			return true;
	return false;
}

/* The same fields in three shapes: "key: value" lines, one JSON object, or
 * "key=value" pairs on one line (the text form of the listing commands). */
enum kv_shape {
	KV_LINES = 0,
	KV_JSON,
	KV_INLINE,
};

struct kv {
	struct ism_reply *r;
	enum kv_shape shape;
	int n;
};

static void kv_begin(struct kv *k, struct ism_reply *r, enum kv_shape shape)
{
	k->r = r;
	k->shape = shape;
	k->n = 0;
	if (shape == KV_JSON)
		ism_say(r, "{");
}

static void kv_num(struct kv *k, const char *key, unsigned long long v)
{
	if (k->shape == KV_JSON)
		ism_say(k->r, "%s\"%s\":%llu", k->n ? "," : "", key, v);
	else if (k->shape == KV_INLINE)
		ism_say(k->r, "%s%s=%llu", k->n ? " " : "", key, v);
	else
		ism_say(k->r, "%s: %llu\n", key, v);
	k->n++;
}

/* s as a JSON string, quotes included, escaped whatever its length: in pieces
 * of 128 bytes, a short one in one append. */
static void say_json_str(struct ism_reply *r, const char *s)
{
	size_t len = strlen(s), off = 0;

	do {
		char esc[128 * 6 + 8]; /* \u00XX per byte at most, and the room the escaper keeps */
		size_t n = len - off < 128 ? len - off : 128;

		ism_json_escape(esc, sizeof(esc), s + off, n);
		ism_say(r, "%s%s%s", off == 0 ? "\"" : "", esc, off + n == len ? "\"" : "");
		off += n;
	} while (off < len);
}

static void kv_str(struct kv *k, const char *key, const char *v)
{
	if (k->shape == KV_JSON) {
		ism_say(k->r, "%s\"%s\":", k->n ? "," : "", key);
		say_json_str(k->r, v);
	} else if (k->shape == KV_INLINE) {
		ism_say(k->r, "%s%s=%s", k->n ? " " : "", key, v);
	} else {
		ism_say(k->r, "%s: %s\n", key, v);
	}
	k->n++;
}

/* A yes/no flag: a JSON boolean, "yes"/"no" in text. */
static void kv_bool(struct kv *k, const char *key, int v)
{
	if (k->shape == KV_JSON) {
		ism_say(k->r, "%s\"%s\":%s", k->n ? "," : "", key, v ? "true" : "false");
		k->n++;
	} else {
		kv_str(k, key, v ? "yes" : "no");
	}
}

/* Closes an object (JSON) or a line (inline); "key: value" lines need nothing. */
static void kv_end(struct kv *k)
{
	if (k->shape == KV_JSON)
		ism_say(k->r, "}");
	else if (k->shape == KV_INLINE)
		ism_say(k->r, "\n");
}

/* One item of a listing: an object of a JSON array, or one text line. */
static void list_item(struct kv *k, struct ism_reply *r, int json, int not_first)
{
	if (json && not_first)
		ism_say(r, ",");
	kv_begin(k, r, json ? KV_JSON : KV_INLINE);
}

static uint64_t cmd_show_info(struct ism_master *m, char *args, struct ism_reply *r, int json)
{
	const struct ism_table *t = ism_shm_current(&m->shm);
	struct ism_worker_stats st;
	struct rlimit rl;
	const struct ism_shm_hdr *h = m->shm.hdr;
	struct kv k;

	(void)args;
	ism_shm_stats_sum(&m->shm, &st);
	kv_begin(&k, r, json ? KV_JSON : KV_LINES);
	kv_str(&k, "version", ISM_VERSION);
	kv_num(&k, "generation", m->gen);
	kv_str(&k, "config", m->conf_path);
	kv_num(&k, "workers", (unsigned long long)m->n_workers);
	kv_num(&k, "workers_owed", (unsigned long long)m->owed);
	kv_num(&k, "worker_hangs", m->worker_hangs);
	kv_num(&k, "max_connections_per_worker", t ? t->limits.max_connections : 0);
	kv_num(&k, "open_files_limit", getrlimit(RLIMIT_NOFILE, &rl) == 0 ? rl.rlim_cur : 0);
	kv_num(&k, "receive_buffers_per_worker", t ? t->limits.receive_buffers : 0);
	kv_bool(&k, "ready", ism_master_ready(m));
	kv_bool(&k, "reloading", ism_reload_busy(m));
	kv_bool(&k, "reload_queued", ism_reload_queued(m));
	kv_num(&k, "reloads", atomic_load(&h->reloads));
	kv_num(&k, "reload_failures", atomic_load(&h->reload_failures));
	kv_num(&k, "uptime_s", (ism_now_ms() - m->shm.started_mono_ms) / 1000);
	kv_num(&k, "health_epoch", atomic_load(&h->health_epoch));
	kv_num(&k, "loads_epoch", m->epoch);
	kv_num(&k, "route_table_bytes", t ? t->arena_used : 0);
	kv_num(&k, "route_table_arena_bytes", t ? t->arena_size : 0);
	kv_num(&k, "connections_active", st.conn_active);
	kv_num(&k, "connections_accepted", st.conn_accepted);
	kv_num(&k, "requests", st.requests);
	for (int c = 1; c <= 5; c++) {
		char name[16];

		snprintf(name, sizeof(name), "responses_%dxx", c);
		kv_num(&k, name, st.resp_class[c]);
	}
	kv_num(&k, "tunnels_active", st.tunnels_active);
	kv_num(&k, "tunnels_total", st.tunnels_total);
	kv_num(&k, "tunnel_bytes_in", st.tunnel_bytes_in);
	kv_num(&k, "tunnel_bytes_out", st.tunnel_bytes_out);
	kv_num(&k, "http2_connections", st.h2_sessions);
	kv_num(&k, "streams", st.streams);
	kv_num(&k, "http2_connection_heap_bytes", st.h2_heap_bytes);
	kv_end(&k);
	ism_say(r, json ? "\n" : "");
	return 0;
}

static uint64_t cmd_show_config(struct ism_master *m, char *args, struct ism_reply *r, int json)
{
	char when[40];
	time_t sec = (time_t)(m->loaded_ms / 1000);
	struct tm tm;
	struct kv k;

	(void)args;
	gmtime_r(&sec, &tm);
	strftime(when, sizeof(when), "%Y-%m-%dT%H:%M:%SZ", &tm);
	kv_begin(&k, r, json ? KV_JSON : KV_LINES);
	kv_str(&k, "file", m->conf_path);
	kv_str(&k, "checksum", m->conf_sum);
	kv_num(&k, "generation", m->gen);
	kv_str(&k, "loaded", when);
	kv_end(&k);
	ism_say(r, json ? "\n" : "");
	return 0;
}

static uint64_t cmd_show_workers(struct ism_master *m, char *args, struct ism_reply *r, int json)
{
	uint64_t now = ism_now_ms();
	struct kv k;
	int n = 0;

	(void)args;
	ism_say(r, json ? "[" : "");
	/* The running workers: a slot whose worker exited (replaced by a
	 * reload, or waiting for its restart) is not listed. */
	for (int i = 0; i < m->n_slots; i++) {
		const struct ism_worker_slot *ws = &m->shm.hdr->workers[i];
		uint64_t hb = atomic_load(&ws->heartbeat_ms);

		if (m->workers[i].pid == 0)
			continue;
		list_item(&k, r, json, n++);
		kv_num(&k, "index", (unsigned long long)i);
		kv_num(&k, "pid", (unsigned long long)atomic_load(&ws->pid));
		kv_num(&k, "generation", atomic_load(&ws->gen));
		kv_bool(&k, "draining", atomic_load(&ws->draining) != 0);
		kv_bool(&k, "retiring", m->workers[i].retiring);
		kv_num(&k, "heartbeat_age_ms", hb && now > hb ? now - hb : 0);
		kv_num(&k, "connections", atomic_load(&ws->stats.conn_active));
		kv_num(&k, "requests",
		       atomic_load(&ws->stats.requests) - m->workers[i].requests_base);
		kv_end(&k);
	}
	ism_say(r, json ? "]\n" : "");
	return 0;
}

static const char *lb_name(uint8_t lb)
{
	static const char *const names[] = {"ROUND_ROBIN", "LEAST_REQUEST", "RANDOM", "RING_HASH",
					    "MAGLEV"};

	return lb < sizeof(names) / sizeof(names[0]) ? names[lb] : "?";
}

static uint64_t cmd_show_clusters(struct ism_master *m, char *args, struct ism_reply *r, int json)
{
	const struct ism_table *t = ism_shm_current(&m->shm);

	struct kv k;

	(void)args;
	ism_say(r, json ? "[" : "");
	for (uint32_t c = 0; t && c < t->n_clusters; c++) {
		const struct ism_cluster *cl = &t->clusters[c];
		const struct ism_cluster_dyn *d = cl->dyn;
		uint32_t n_prio = d != NULL ? ism_dyn_priorities(d) : 0;
		uint32_t healthy = 0, ejected = 0;

		for (uint32_t e = 0; e < cl->n_endpoints; e++) {
			healthy += ism_ep_eligible(m->shm.hdr, &cl->endpoints[e]);
			ejected += ism_ep_ejected(m->shm.hdr, &cl->endpoints[e]);
		}
		list_item(&k, r, json, c > 0);
		if (json)
			kv_str(&k, "name", cl->name.p);
		else
			ism_say(r, "%s ", cl->name.p);
		kv_str(&k, "lb", lb_name(cl->lb));
		kv_num(&k, "endpoints", cl->n_endpoints);
		kv_num(&k, "eligible", healthy);
		kv_num(&k, "ejected", ejected);
		kv_num(&k, "priorities", cl->n_priorities);
		/* The loads per priority: a list of numbers and one of panic flags in
		 * JSON, "100,0p" in text (p: in panic). */
		ism_say(r, json ? ",\"loads\":[" : " loads=");
		for (uint32_t p = 0; p < n_prio; p++)
			ism_say(r, "%s%u%s", p ? "," : "", d->healthy_load[p],
				!json && d->panic[p] ? "p" : "");
		if (json) {
			ism_say(r, "],\"panic\":[");
			for (uint32_t p = 0; p < n_prio; p++)
				ism_say(r, "%s%s", p ? "," : "", d->panic[p] ? "true" : "false");
			ism_say(r, "]");
		}
		kv_bool(&k, "outlier_detection", cl->od != NULL);
		kv_bool(&k, "zone_aware", cl->zone_aware);
		kv_str(&k, "tunnel", cl->tunnel.len ? cl->tunnel.p : "-");
		kv_str(&k, "tunnel_protocol",
		       !cl->tunnel.len	 ? "-"
		       : cl->tunnel_post ? "POST"
					 : "CONNECT");
		kv_num(&k, "overflow", d ? atomic_load(&d->overflow) : 0);
		kv_num(&k, "retries", d ? atomic_load(&d->retries) : 0);
		kv_num(&k, "in_flight", d ? atomic_load(&d->in_flight) : 0);
		kv_num(&k, "waiting", d ? atomic_load(&d->pending) : 0);
		kv_num(&k, "retries_active", d ? atomic_load(&d->retries_active) : 0);
		kv_end(&k);
	}
	ism_say(r, json ? "]\n" : "");
	return 0;
}

/* The clusters of t whose outlier detection has endpoint id ejected, their
 * names joined by ',' in out ("" when none; cut at cap). */
static void ejected_by(const struct ism_table *t, const struct ism_shm_hdr *h, uint32_t id,
		       char *out, size_t cap)
{
	size_t len = 0;

	out[0] = '\0';
	if (atomic_load(&h->eps[id].ejected_in) == 0)
		return;
	for (uint32_t c = 0; t && c < t->n_clusters; c++) {
		const struct ism_cluster *cl = &t->clusters[c];

		for (uint32_t e = 0; e < cl->n_endpoints; e++) {
			if (cl->endpoints[e].id != id || !ism_ep_ejected(h, &cl->endpoints[e]))
				continue;
			int n = snprintf(out + len, cap - len, "%s%s", len ? "," : "", cl->name.p);

			len = n < 0 || (size_t)n >= cap - len ? cap - 1 : len + (size_t)n;
		}
	}
}

/* An endpoint of t by id (its first appearance; NULL where t has none). NULL
 * when there is no memory. */
static const struct ism_endpoint **endpoints_by_id(const struct ism_table *t)
{
	const struct ism_endpoint **by = calloc(ISM_MAX_ENDPOINTS, sizeof(*by));

	for (uint32_t c = 0; by != NULL && t && c < t->n_clusters; c++)
		for (uint32_t e = 0; e < t->clusters[c].n_endpoints; e++) {
			const struct ism_endpoint *ep = &t->clusters[c].endpoints[e];

			if (ep->id < ISM_MAX_ENDPOINTS && by[ep->id] == NULL)
				by[ep->id] = ep;
		}
	return by;
}

/* Where a DNS endpoint's address came from: the name, and when it last
 * answered (the resolver's time, later than the generation's when the answer
 * has not changed since). */
static void dns_origin(struct ism_master *m, struct kv *k, const struct ism_endpoint *ep)
{
	const struct ism_dns_addr *a;
	uint64_t when = ep->resolved_ms;
	char buf[40];

	if (ep->dns_name.len == 0)
		return;
	kv_str(k, "dns_name", ep->dns_name.p);
	if (ism_resolver_lookup(m->dns, ep->dns_name.p, true, &a, &when) == 0)
		when = ep->resolved_ms;
	ism_time_iso(when, buf, sizeof(buf));
	kv_str(k, "resolved", when ? buf : "-");
}

/* The endpoints of one cluster (with their priority there), or every endpoint. */
static uint64_t cmd_show_endpoints(struct ism_master *m, char *cluster, struct ism_reply *r,
				   int json)
{
	const struct ism_shm_hdr *h = m->shm.hdr;
	const struct ism_table *t = ism_shm_current(&m->shm);
	const struct ism_cluster *cl = NULL;
	const struct ism_endpoint **by_id;
	struct kv k;
	int first = 1;

	for (uint32_t c = 0; cluster && t && c < t->n_clusters; c++)
		if (strcmp(t->clusters[c].name.p, cluster) == 0)
			cl = &t->clusters[c];
	if (cluster && cl == NULL) {
		ism_say(r, "error: no cluster '%.200s' (see: show clusters)\n", cluster);
		return 0;
	}
	by_id = endpoints_by_id(t);
	if (by_id == NULL) {
		ism_say(r, "error: out of memory\n");
		return 0;
	}
	ism_say(r, json ? "[" : "");
	for (uint32_t i = 0; i < (cl ? cl->n_endpoints : ISM_MAX_ENDPOINTS); i++) {
		uint32_t id = cl ? cl->endpoints[i].id : i;
		const struct ism_ep_state *e = &h->eps[id];
		int prio = cl ? cl->endpoints[i].priority : -1;
		const char *loc = cl ? cl->endpoints[i].locality.p : "";
		uint32_t w = atomic_load(&e->weight);

		if (!ism_shm_ep_listed(&m->shm, id))
			continue;
		list_item(&k, r, json, !first);
		if (!json)
			ism_say(r, "%u %s ", id, m->shm.pub->ep_keys[id]);
		if (json) {
			kv_num(&k, "id", id);
			kv_str(&k, "key", m->shm.pub->ep_keys[id]);
		}
		kv_str(&k, "health",
		       atomic_load(&e->health) == ISM_EP_HEALTHY ? "healthy" : "unhealthy");
		/* With a cluster, its own outlier detection's view (each cluster
		 * has its own); else every cluster's. */
		if (cl) {
			const struct ism_endpoint *ep = &cl->endpoints[i];

			kv_bool(&k, "ejected", ism_ep_ejected(h, ep));
			kv_num(&k, "ejections", ism_ep_ejections(h, ep));
		} else {
			char by[512];

			kv_bool(&k, "ejected", atomic_load(&e->ejected_in) != 0);
			kv_num(&k, "ejections", atomic_load(&e->ejections));
			ejected_by(t, h, id, by, sizeof(by));
			kv_str(&k, "ejected_by", by[0] ? by : "-");
		}
		kv_str(&k, "admin", ism_events_admin_name(atomic_load(&e->admin)));
		kv_num(&k, "weight",
		       w & ISM_EP_WEIGHT_SET ? w & ~ISM_EP_WEIGHT_SET
					     : (by_id[id] != NULL ? by_id[id]->weight : 1));
		kv_bool(&k, "weight_set", (w & ISM_EP_WEIGHT_SET) != 0);
		kv_num(&k, "inflight", atomic_load(&e->inflight));
		kv_num(&k, "requests", atomic_load(&e->requests));
		kv_num(&k, "failures", atomic_load(&e->failures));
		kv_num(&k, "checks", atomic_load(&e->hc_checks));
		kv_num(&k, "check_failures", atomic_load(&e->hc_failures));
		if (cl) {
			kv_str(&k, "locality", loc[0] ? loc : "-");
			kv_num(&k, "priority", (unsigned long long)prio);
			/* What its connections speak (automatic mutual TLS: per endpoint). */
			kv_str(&k, "tls",
			       ism_tls_mode_name(ism_ep_tls(cl, &cl->endpoints[i])->mode));
		}
		/* loadBalancer.warmup: the share of its weight it has now. */
		if (cl && cl->warmup_ms)
			kv_num(&k, "warmup_percent",
			       (unsigned long long)(ism_warmup_factor(cl, e, ism_now_ms()) * 100));
		if (by_id[id] != NULL)
			dns_origin(m, &k, cl ? &cl->endpoints[i] : by_id[id]);
		kv_end(&k);
		first = 0;
	}
	ism_say(r, json ? "]\n" : "");
	free(by_id);
	return 0;
}

/* A route's destinations, with their weights, ending its line or object. */
static void dest_list(struct ism_reply *r, const struct ism_table *t, const struct ism_dest *dest,
		      uint32_t n, int json)
{
	for (uint32_t d = 0; d < n; d++) {
		const char *cluster = t->clusters[dest[d].cluster].name.p;

		if (json) {
			ism_say(r, "%s{\"cluster\":", d ? "," : "");
			say_json_str(r, cluster);
			ism_say(r, ",\"weight\":%u}", dest[d].weight);
		} else {
			ism_say(r, " %s weight=%u", cluster, dest[d].weight);
		}
	}
	ism_say(r, json ? "]}" : "\n");
}

/* One route of show routes: its matches, timeout, retries and destinations. */
static void route_line(struct ism_reply *r, const struct ism_table *t, const struct ism_route *rt,
		       int json, int not_first)
{
	if (json) {
		ism_say(r, "%s{\"name\":", not_first ? "," : "");
		say_json_str(r, rt->name.p);
		ism_say(r, ",\"matches\":%u,\"timeout_ms\":%u,\"retries\":%u,\"destinations\":[",
			rt->n_match, rt->timeout_ms, rt->retry.attempts);
	} else {
		ism_say(r, "    route %s matches=%u timeout_ms=%u retries=%u ->", rt->name.p,
			rt->n_match, rt->timeout_ms, rt->retry.attempts);
	}
	dest_list(r, t, rt->dest, rt->n_dest, json);
}

/* One tcp route entry (of a TCP listener, or of TLS server srv that
 * terminates for tcp routes), or a tls one of passthrough server srv, of show
 * routes: its SNI host, how many destinationSubnets, and destinations. */
static void l4_line(struct ism_reply *r, const struct ism_table *t, const struct ism_l4route *e,
		    const char *srv, int json, int not_first)
{
	const char *sni = e->n_sni ? e->sni[0].p : "";
	const char *kind = sni[0] ? "tls" : "tcp"; /* a tls entry has its SNI host */

	if (json) {
		ism_say(r, "%s{\"name\":", not_first ? "," : "");
		say_json_str(r, e->name.p);
		ism_say(r, ",\"kind\":\"%s\",\"server\":", kind);
		say_json_str(r, srv);
		ism_say(r, ",\"sni\":");
		say_json_str(r, sni);
		ism_say(r, ",\"subnets\":%u,\"destinations\":[", e->n_subnets);
	} else {
		ism_say(r, "  %s route %s%s%s%s%s subnets=%u ->", kind, e->name.p,
			srv[0] ? " server=" : "", srv, sni[0] ? " sni=" : "", sni, e->n_subnets);
	}
	dest_list(r, t, e->dest, e->n_dest, json);
}

/* The tcp routes of a TCP listener, and of a TLS listener's servers the tls
 * routes (passthrough) or tcp routes (TLS terminated), in the order they are
 * tried. */
static void l4_lines(struct ism_reply *r, const struct ism_table *t, const struct ism_listener *li,
		     int json)
{
	uint32_t nth = 0;

	ism_say(r, json ? ",\"l4_routes\":[" : "");
	for (uint32_t i = 0; i < li->n_tcp; i++)
		l4_line(r, t, &li->tcp_routes[i], "", json, nth++ > 0);
	for (uint32_t s = 0; s < li->n_tls; s++)
		for (uint32_t i = 0; i < li->tls[s].n_l4; i++)
			l4_line(r, t, &li->tls[s].l4[i], li->tls[s].name.p, json, nth++ > 0);
	ism_say(r, json ? "]" : "");
}

/* One virtual host of show routes (srv: its HTTPS server's name, or ""). */
static void vhost_lines(struct ism_reply *r, const struct ism_table *t, const struct ism_vhost *vh,
			const char *srv, int json, int not_first)
{
	if (json) {
		ism_say(r, "%s{\"name\":", not_first ? "," : "");
		say_json_str(r, vh->name.p);
		ism_say(r, ",\"https_server\":");
		say_json_str(r, srv);
		ism_say(r, ",\"https_redirect\":%s,\"domains\":[",
			vh->https_redirect ? "true" : "false");
	} else {
		ism_say(r, "  vhost %s%s%s%s domains=", vh->name.p, srv[0] ? " https_server=" : "",
			srv, vh->https_redirect ? " https_redirect" : "");
	}
	for (uint32_t d = 0; d < vh->n_domains; d++) {
		ism_say(r, "%s", d ? "," : "");
		if (json)
			say_json_str(r, vh->domains[d].p);
		else
			ism_say(r, "%s", vh->domains[d].p);
	}
	ism_say(r, json ? "],\"routes\":[" : "\n");
	for (uint32_t i = 0; i < vh->n_routes; i++)
		route_line(r, t, &vh->routes[i], json, i > 0);
	ism_say(r, json ? "]}" : "");
}

/* Listeners, their virtual hosts and routes in order, with destinations. */
static uint64_t cmd_show_routes(struct ism_master *m, char *args, struct ism_reply *r, int json)
{
	const struct ism_table *t = ism_shm_current(&m->shm);

	(void)args;
	ism_say(r, json ? "[" : "");
	for (uint32_t l = 0; t && l < t->n_listeners; l++) {
		const struct ism_listener *li = &t->listeners[l];

		if (json) {
			ism_say(r, "%s{\"listener\":", l ? "," : "");
			say_json_str(r, li->name.p);
			ism_say(r, ",\"port\":%u,\"vhosts\":[", li->port);
		} else {
			ism_say(r, "listener %s port %u\n", li->name.p, li->port);
		}
		for (uint32_t set = 0, nth = 0; set < ism_listener_sets(li); set++) {
			uint32_t nv;
			const struct ism_vhost *vhs = ism_listener_set(li, set, &nv);
			const char *srv = set ? li->tls[set - 1].name.p : "";

			for (uint32_t v = 0; v < nv; v++, nth++)
				vhost_lines(r, t, &vhs[v], srv, json, nth > 0);
		}
		ism_say(r, json ? "]" : "");
		l4_lines(r, t, li, json);
		ism_say(r, json ? "}" : "");
	}
	ism_say(r, json ? "]\n" : "");
	return 0;
}

static uint64_t cmd_show_events(struct ism_master *m, char *args, struct ism_reply *r, int json)
{
	const struct ism_events *ev = &m->events;
	uint64_t first = ev->n > ISM_EVENTS_MAX ? ev->n - ISM_EVENTS_MAX : 0;
	struct kv k;

	(void)args;
	ism_say(r, json ? "[" : "");
	for (uint64_t i = first; i < ev->n; i++) {
		const struct ism_event *e = &ev->ring[i % ISM_EVENTS_MAX];
		char when[40];

		ism_time_iso(e->wall_ms, when, sizeof(when));
		if (json) {
			list_item(&k, r, json, i > first);
			kv_str(&k, "time", when);
			kv_str(&k, "kind", e->kind);
			kv_str(&k, "event", e->text);
			kv_end(&k);
		} else {
			ism_say(r, "%s %s %s\n", when, e->kind, e->text);
		}
	}
	ism_say(r, json ? "]\n" : "");
	return 0;
}

static void usage_of(struct ism_reply *r, const char *words);

/* An endpoint by id or by key "<service>|<address>:<port>". */
static int find_endpoint(struct ism_master *m, const char *what)
{
	char *end;
	unsigned long id = strtoul(what, &end, 10);
	uint32_t by_key;

	/* An id is digits only, as a weight is: strtoul would take "-0", "+0"
	 * and leading blanks too. */
	if (*what >= '0' && *what <= '9' && *end == '\0' && id < ISM_MAX_ENDPOINTS &&
	    ism_shm_ep_in_use(&m->shm, (uint32_t)id))
		return (int)id;
	return ism_master_ep_find(&m->shm, what, &by_key) ? (int)by_key : -1;
}

/* The endpoint of key "<service>|<ip>:<port>" with ip written as text; false
 * when none has it. */
static bool ep_find_ip(const struct ism_shm *shm, const char *key, size_t svc_len, const char *ip,
		       uint16_t port, uint32_t *id)
{
	char canon[ISM_EP_KEY_MAX];
	int n = snprintf(canon, sizeof(canon), "%.*s", (int)svc_len, key);

	if (n < 0 || (size_t)n >= sizeof(canon) ||
	    (size_t)ism_addr_port_text(canon + n, sizeof(canon) - (size_t)n, ip, port) >=
		sizeof(canon) - (size_t)n)
		return false;
	return ism_shm_ep_find(shm, canon, id);
}

bool ism_master_ep_find(const struct ism_shm *shm, const char *key, uint32_t *id)
{
	const char *bar = strrchr(key, '|'), *pct, *close;
	struct sockaddr_storage ss;
	char ip[INET6_ADDRSTRLEN], hp[80];
	const struct in6_addr *a6 = &((const struct sockaddr_in6 *)&ss)->sin6_addr;
	uint16_t port;
	int n;

	if (ism_shm_ep_find(shm, key, id))
		return true;
	if (bar == NULL)
		return false;
	/* An IPv6 zone ("[fe80::1%eth0]:80") names no endpoint of its own: an
	 * endpoint's address has none. */
	pct = strchr(bar + 1, '%');
	close = pct != NULL ? strchr(pct, ']') : NULL;
	n = close != NULL ? snprintf(hp, sizeof(hp), "%.*s%s", (int)(pct - bar - 1), bar + 1, close)
			  : snprintf(hp, sizeof(hp), "%s", bar + 1);
	if (n < 0 || (size_t)n >= sizeof(hp) || !ism_model_parse_hostport(hp, &ss, NULL) ||
	    !ism_addr_text((const struct sockaddr *)&ss, ip, &port))
		return false;
	if (ep_find_ip(shm, key, (size_t)(bar + 1 - key), ip, port, id))
		return true;
	/* "[::ffff:a.b.c.d]" for an endpoint written a.b.c.d: the same host. */
	if (ss.ss_family != AF_INET6 || !IN6_IS_ADDR_V4MAPPED(a6) ||
	    inet_ntop(AF_INET, &a6->s6_addr[12], ip, sizeof(ip)) == NULL)
		return false;
	return ep_find_ip(shm, key, (size_t)(bar + 1 - key), ip, port, id);
}

/* set endpoint <id|key> state ready|drain|maint, set endpoint <id|key> weight
 * N|configured (0: no new requests, as in HAProxy). Workers see it on their
 * next pick. */
static uint64_t cmd_set_endpoint(struct ism_master *m, char *args, struct ism_reply *r, int json)
{
	char *key = strtok(args, " ");
	char *what = strtok(NULL, " ");
	char *val = strtok(NULL, " ");
	struct ism_ep_state *e;
	int id;

	(void)json;
	if (key == NULL || what == NULL || val == NULL || strtok(NULL, " ") != NULL) {
		usage_of(r, "set endpoint");
		return 0;
	}
	id = find_endpoint(m, key);
	if (id < 0) {
		ism_say(r, "error: no endpoint '%.200s' (see: show endpoints)\n", key);
		return 0;
	}
	e = &m->shm.hdr->eps[id];
	if (strcmp(what, "state") == 0) {
		uint32_t a = strcmp(val, "ready") == 0	 ? ISM_EP_ADMIN_READY
			     : strcmp(val, "drain") == 0 ? ISM_EP_ADMIN_DRAIN
			     : strcmp(val, "maint") == 0 ? ISM_EP_ADMIN_MAINT
							 : UINT32_MAX;

		if (a == UINT32_MAX) {
			ism_say(r, "error: state must be ready, drain or maint\n");
			return 0;
		}
		atomic_store(&e->admin, a);
		ism_health_admin_changed(m->health);
	} else if (strcmp(what, "weight") == 0 && strcmp(val, "configured") == 0) {
		atomic_store(&e->weight, 0);
	} else if (strcmp(what, "weight") == 0) {
		char *end;
		unsigned long w = strtoul(val, &end, 10);

		if (*val < '0' || *val > '9' || *end != '\0' || w > ISM_EP_WEIGHT_MAX) {
			ism_say(r,
				"error: weight must be an integer from 0 (no new requests) to %u, "
				"or configured\n",
				ISM_EP_WEIGHT_MAX);
			return 0;
		}
		atomic_store(&e->weight, ISM_EP_WEIGHT_SET | (uint32_t)w);
	} else {
		ism_say(r, "error: unknown setting '%.32s': state or weight\n", what);
		return 0;
	}
	atomic_fetch_add(&m->shm.hdr->health_epoch, 1);
	ism_notice("control socket: endpoint %s %s %s", m->shm.pub->ep_keys[id], what, val);
	ism_say(r, "ok: endpoint %s %s %s\n", m->shm.pub->ep_keys[id], what, val);
	return 0;
}

static int strip_json(char *line)
{
	size_t n = strlen(line);

	if (n >= 5 && strcmp(line + n - 5, " json") == 0) {
		line[n - 5] = '\0';
		return 1;
	}
	return strcmp(line, "json") == 0;
}

/* The JSON form of a command whose answer is a report (reload, set, explain):
 * {"result": "ok"|"error"|"refused", "lines": [...], "errors": [...]}, where
 * errors are the report's "file:line:col: error: ..." lines. */
static void report_as_json(struct ism_reply *r)
{
	const char *text = r->p ? r->p : "";
	const char *result = strncmp(text, "error:", 6) == 0		? "error"
			     : strncmp(text, "reload refused", 14) == 0 ? "refused"
									: "ok";
	struct ism_reply out;
	int pass;

	ism_reply_init(&out, r->max);
	ism_say(&out, "{\"result\":\"%s\"", result);
	for (pass = 0; pass < 2; pass++) {
		const char *p = text;
		int n = 0;

		ism_say(&out, pass ? ",\"errors\":[" : ",\"lines\":[");
		while (*p) {
			size_t len = strcspn(p, "\n");
			char esc[1200];

			if (len && (!pass || memmem(p, len, ": error: ", 9) != NULL)) {
				ism_json_escape(esc, sizeof(esc), p, len < 1000 ? len : 1000);
				ism_say(&out, "%s\"%s\"", n++ ? "," : "", esc);
			}
			p += len + (p[len] == '\n');
		}
		ism_say(&out, "]");
	}
	ism_say(&out, "}\n");
	out.incomplete |= r->incomplete;
	ism_reply_free(r);
	*r = out;
}

void ism_cmd_reload_answer(const char *report, int json, struct ism_reply *r)
{
	ism_say(r, "%s", report);
	if (json)
		report_as_json(r);
}

static uint64_t cmd_explain(struct ism_master *m, char *args, struct ism_reply *r, int json)
{
	(void)json;
	ism_explain(m, args, r);
	return 0;
}

static uint64_t cmd_reload(struct ism_master *m, char *args, struct ism_reply *r, int json)
{
	(void)args;
	(void)json;
	return ism_reload_request(m, ISM_LOAD_FILE, r);
}

/* Every name the ServiceEntries resolve: its state, answer and timing. */
static uint64_t cmd_show_dns(struct ism_master *m, char *args, struct ism_reply *r, int json)
{
	uint64_t now = ism_now_ms();
	struct ism_dns_view v;
	struct kv k;

	(void)args;
	ism_say(r, json ? "[" : "");
	for (size_t i = 0, shown = 0; ism_resolver_view(m->dns, i, now, &v); i++) {
		char when[40], addrs[1024] = "";
		size_t len = 0;

		if (!v.used)
			continue;

		for (size_t a = 0; a < v.n_addrs && len < sizeof(addrs); a++)
			len += (size_t)snprintf(addrs + len, sizeof(addrs) - len, "%s%s",
						a ? "," : "", v.addrs[a].text);
		ism_time_iso(v.resolved_ms, when, sizeof(when));
		list_item(&k, r, json, shown++ > 0);
		kv_str(&k, "name", v.name);
		kv_str(&k, "state", ism_dns_state_name(v.state));
		kv_str(&k, "addresses", v.n_addrs ? addrs : "-");
		kv_str(&k, "pick", v.pick != NULL ? v.pick->text : "-");
		kv_str(&k, "resolved", v.resolved_ms ? when : "-");
		kv_num(&k, "ttl_s", v.ttl_s);
		kv_num(&k, "next_in_ms", v.next_in_ms);
		kv_num(&k, "failures", v.failures);
		kv_str(&k, "error", v.error[0] ? v.error : "-");
		kv_end(&k);
	}
	ism_say(r, json ? "]\n" : "");
	return 0;
}

/* resolve NAME|*: asked again now; the answer comes later (show dns, events). */
static uint64_t cmd_resolve(struct ism_master *m, char *args, struct ism_reply *r, int json)
{
	(void)json;
	if (strchr(args, ' ') != NULL) {
		usage_of(r, "resolve");
		return 0;
	}
	if (ism_resolver_force(m->dns, args) < 0) {
		ism_say(r, "error: no ServiceEntry resolves '%.200s' (see: show dns)\n", args);
		return 0;
	}
	ism_notice("control socket: resolve %s", args);
	ism_say(r, "ok: %s asked again (see: show dns)\n", args);
	return 0;
}

static uint64_t cmd_help(struct ism_master *m, char *args, struct ism_reply *r, int json);

struct cmd {
	const char *words;
	enum ism_cmd_args args;
	enum ism_cmd_form form;
	const char *syntax;
	const char *help;
	/* Writes the answer into r; returns 0, or a reload's ticket (the answer
	 * comes when it is over). args is NULL when none were given. */
	uint64_t (*run)(struct ism_master *m, char *args, struct ism_reply *r, int json);
};

#define CMD_ENTRY(name, words, args, form, syntax, help)                                           \
	{words, args, form, syntax, help, cmd_##name},
static const struct cmd cmds[] = {ISM_CMD_LIST(CMD_ENTRY)};
#undef CMD_ENTRY

static void say_usage(struct ism_reply *r, const struct cmd *c)
{
	ism_say(r, "error: usage: %s%s%s\n", c->words, c->syntax[0] ? " " : "", c->syntax);
}

/* The command line starts with: its words, then the end or a space. */
static const struct cmd *cmd_find(const char *line, char **args)
{
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		size_t n = strlen(cmds[i].words);

		if (strncmp(line, cmds[i].words, n) != 0 || (line[n] != '\0' && line[n] != ' '))
			continue;
		*args = (char *)line + n + strspn(line + n, " ");
		if (**args == '\0')
			*args = NULL;
		return &cmds[i];
	}
	return NULL;
}

static void usage_of(struct ism_reply *r, const char *words)
{
	char *args;
	const struct cmd *c = cmd_find(words, &args);

	ISM_BUG_ON(c == NULL);
	say_usage(r, c);
}

static uint64_t cmd_help(struct ism_master *m, char *args, struct ism_reply *r, int json)
{
	struct kv k;

	(void)m;
	(void)args;
	ism_say(r, json ? "[" : "commands (append \"json\" to any command for JSON):\n");
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++) {
		if (!json) {
			ism_say(r, "  %s%s%s\n      %s\n", cmds[i].words,
				cmds[i].syntax[0] ? " " : "", cmds[i].syntax, cmds[i].help);
			continue;
		}
		list_item(&k, r, json, i > 0);
		kv_str(&k, "command", cmds[i].words);
		kv_str(&k, "syntax", cmds[i].syntax);
		kv_str(&k, "help", cmds[i].help);
		kv_end(&k);
	}
	ism_say(r, json ? "]\n" : "");
	return 0;
}

uint64_t ism_cmd_run(struct ism_master *m, const char *cmdline, struct ism_reply *r, int *json_out)
{
	char line[4096]; /* the control socket's line limit */
	const struct cmd *c;
	char *args = NULL;
	uint64_t ticket;
	int json;

	if (strlen(cmdline) >= sizeof(line)) {
		ism_say(r, "error: the command line is too long: refused\n");
		return 0;
	}
	snprintf(line, sizeof(line), "%s", cmdline);
	json = strip_json(line);
	*json_out = json;
	c = cmd_find(line[0] ? line : "help", &args);
	if (c == NULL) {
		ism_say(r, "error: unknown command '%.64s' (try: help)\n", line);
	} else if ((c->args == ISM_CMD_ARGS_NONE && args != NULL) ||
		   (c->args == ISM_CMD_ARGS_REQUIRED && args == NULL)) {
		say_usage(r, c);
	} else {
		ticket = c->run(m, args, r, json);
		if (ticket != 0)
			return ticket;
	}
	/* In JSON, a failure is a report whatever the command. */
	if (json && (c == NULL || c->form == ISM_CMD_REPORT ||
		     (r->p != NULL && strncmp(r->p, "error:", 6) == 0)))
		report_as_json(r);
	return 0;
}
