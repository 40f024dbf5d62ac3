/* SPDX-License-Identifier: Apache-2.0 */
/* The DestinationRule kind: its trafficPolicy (connection pool, outlier
 * detection, port-level settings, retry budget, PROXY protocol, tunnel; its
 * loadBalancer is conf/lb.c's, its tls conf/tls.c's), subsets,
 * workloadSelector and exportTo. */
#include <string.h>

#include "conf/model.h"

/* Istio's int32 circuit-breaker fields: 0 (or absent) means its default. */
static void pool_max(struct ism_vctx *v, const struct ism_node *map, const char *key, uint32_t *out)
{
	uint32_t x = 0;

	if (ism_v_u32(v, map, key, false, 0, INT32_MAX, &x) > 0 && x > 0)
		*out = x;
}

/* connectionPool.http.http2KeepAlive: HTTP/2 PINGs towards the upstream; both
 * durations are required, as Istio validates them. */
static void parse_h2_keepalive(struct ism_vctx *v, const struct ism_node *h, struct ism_cm_pool *p)
{
	static const char *const keys[] = {"interval", "timeout", NULL};
	const struct ism_node *n = ism_v_node(v, h, "http2KeepAlive", false, ISM_NODE_MAP);
	uint32_t interval = 0, timeout = 0;
	int ri = 0, rt = 0;
	size_t old;

	if (n == NULL)
		return;
	old = ism_v_push(v, ".http2KeepAlive");
	ism_v_keys(v, n, keys, NULL);
	if (ism_v_node(v, n, "interval", true, ISM_NODE_SCALAR) != NULL)
		ri = ism_v_istio_dur(v, n, "interval", &interval);
	if (ism_v_node(v, n, "timeout", true, ISM_NODE_SCALAR) != NULL)
		rt = ism_v_istio_dur(v, n, "timeout", &timeout);
	if (ri > 0 && rt > 0) {
		p->ping_interval_ms = interval;
		p->ping_timeout_ms = timeout;
	}
	ism_v_pop(v, old);
}

static void parse_pool_http(struct ism_vctx *v, const struct ism_node *h, struct ism_cm_pool *p)
{
	static const char *const keys[] = {"idleTimeout",	"http1MaxPendingRequests",
					   "http2MaxRequests",	"maxRequestsPerConnection",
					   "maxRetries",	"h2UpgradePolicy",
					   "useClientProtocol", "maxConcurrentStreams",
					   "http2KeepAlive",	NULL};
	static const char *const policies[] = {"DEFAULT", "DO_NOT_UPGRADE", "UPGRADE", NULL};
	const char *policy = NULL;
	size_t old = ism_v_push(v, ".http");

	ism_v_keys(v, h, keys, NULL);
	p->has_idle = ism_v_istio_dur(v, h, "idleTimeout", &p->idle_ms) > 0;
	pool_max(v, h, "http1MaxPendingRequests", &p->limits.max_pending);
	pool_max(v, h, "http2MaxRequests", &p->limits.max_requests);
	ism_v_u32(v, h, "maxRequestsPerConnection", false, 0, INT32_MAX,
		  &p->limits.max_requests_per_conn);
	pool_max(v, h, "maxRetries", &p->limits.max_retries);
	if (ism_v_enum(v, h, "h2UpgradePolicy", policies, NULL, &policy) > 0)
		for (uint8_t i = ISM_H2UP_DEFAULT; i <= ISM_H2UP_UPGRADE; i++)
			if (strcmp(policy, policies[i]) == 0)
				p->h2_upgrade = i;
	ism_v_bool(v, h, "useClientProtocol", &p->use_client);
	if (p->use_client && p->h2_upgrade == ISM_H2UP_UPGRADE) {
		size_t o2 = ism_v_push(v, ".useClientProtocol");

		ism_v_err(v, ism_node_get(h, "useClientProtocol", NULL),
			  "must not be true when h2UpgradePolicy is UPGRADE");
		ism_v_pop(v, o2);
	}
	ism_v_u32(v, h, "maxConcurrentStreams", false, 0, INT32_MAX, &p->max_streams);
	parse_h2_keepalive(v, h, p);
	ism_v_pop(v, old);
}

/* A tcpKeepalive duration (time, interval) at map.key in whole seconds, as
 * Istio hands them to Envoy (the fraction dropped); the kernel counts them in
 * seconds, from 1 to 32767. */
static void keepalive_secs(struct ism_vctx *v, const struct ism_node *map, const char *key,
			   uint32_t *out)
{
	uint32_t ms;

	if (ism_v_istio_dur(v, map, key, &ms) <= 0)
		return;
	if (ms < 1000 || ms / 1000 > 32767)
		ism_v_err_key(v, map, key,
			      "must be between 1s and 32767s (the kernel counts keepalive in whole "
			      "seconds)");
	else
		*out = ms / 1000;
}

/* connectionPool.tcp.tcpKeepalive: SO_KEEPALIVE on the upstream sockets, with
 * what it sets of probes, time and interval (the system's for the others). */
static void parse_tcp_keepalive(struct ism_vctx *v, const struct ism_node *t, struct ism_cm_pool *p)
{
	static const char *const keys[] = {"probes", "time", "interval", NULL};
	const struct ism_node *n = ism_v_node(v, t, "tcpKeepalive", false, ISM_NODE_MAP);
	size_t old;

	if (n == NULL)
		return;
	p->keepalive = true;
	old = ism_v_push(v, ".tcpKeepalive");
	ism_v_keys(v, n, keys, NULL);
	ism_v_u32(v, n, "probes", false, 0, 127, &p->ka_probes);
	keepalive_secs(v, n, "time", &p->ka_time_s);
	keepalive_secs(v, n, "interval", &p->ka_interval_s);
	ism_v_pop(v, old);
}

static void parse_pool_tcp(struct ism_vctx *v, const struct ism_node *t, struct ism_cm_pool *p)
{
	static const char *const keys[] = {"connectTimeout", "maxConnections",
					   "tcpKeepalive",   "maxConnectionDuration",
					   "idleTimeout",    NULL};
	const struct ism_node *idle;
	size_t old = ism_v_push(v, ".tcp");
	uint32_t ms;
	uint64_t ns;

	ism_v_keys(v, t, keys, NULL);
	p->has_connect = ism_v_istio_dur(v, t, "connectTimeout", &p->connect_ms) > 0;
	pool_max(v, t, "maxConnections", &p->limits.max_connections);
	parse_tcp_keepalive(v, t, p);
	ism_v_istio_dur(v, t, "maxConnectionDuration", &p->tcp_max_ms);
	/* Istio: 0s turns the tunnels' idle timeout off; its validation skips
	 * a value under 1 ms (Milliseconds() == 0), checks the others, and
	 * Envoy takes such a value's milliseconds: 0, off too. */
	idle = ism_node_get(t, "idleTimeout", NULL);
	p->has_tcp_idle = (idle != NULL && idle->kind == ISM_NODE_SCALAR &&
				   ism_parse_duration_ms(idle->str, &ms) == 0 && ms <= 1
			       ? ism_v_dur(v, t, "idleTimeout", 0, &p->tcp_idle_ms)
			       : ism_v_istio_dur(v, t, "idleTimeout", &p->tcp_idle_ms)) > 0;
	if (p->has_tcp_idle && ism_parse_duration_ns(idle->str, &ns) == 0 && ns < 1000000)
		p->tcp_idle_ms = 0;
	ism_v_pop(v, old);
}

static void parse_pool(struct ism_vctx *v, const struct ism_node *tp, struct ism_cm_pool *p)
{
	static const char *const keys[] = {"tcp", "http", NULL};
	const struct ism_node *n = ism_v_node(v, tp, "connectionPool", false, ISM_NODE_MAP);
	const struct ism_node *t, *h;
	size_t old;

	if (n == NULL)
		return;
	p->set = true;
	ism_model_pool_defaults(&p->limits);
	p->tcp_idle_ms = ISM_DEFAULT_TCP_IDLE_MS;
	old = ism_v_push(v, ".connectionPool");
	ism_v_keys(v, n, keys, NULL);
	/* Istio's validateConnectionPool. */
	if (n->n == 0)
		ism_v_err(v, n, "connection pool must have at least one field (as Istio)");
	t = ism_v_node(v, n, "tcp", false, ISM_NODE_MAP);
	if (t != NULL)
		parse_pool_tcp(v, t, p);
	h = ism_v_node(v, n, "http", false, ISM_NODE_MAP);
	if (h != NULL)
		parse_pool_http(v, h, p);
	ism_v_pop(v, old);
}

/* outlierDetectionHttpErrorCodes: the statuses outlier detection counts as
 * errors, in place of 5xx (Envoy's error matcher, as Istio sets it). */
static void parse_od_codes(struct ism_vctx *v, const struct ism_node *n, struct ism_outlier *o)
{
	const struct ism_node *seq =
	    ism_v_node(v, n, "outlierDetectionHttpErrorCodes", false, ISM_NODE_SEQ);
	size_t old;

	if (seq == NULL)
		return;
	old = ism_v_push(v, ".outlierDetectionHttpErrorCodes");
	for (size_t i = 0; i < seq->n; i++) {
		const struct ism_node *it = seq->items[i];
		size_t o2 = ism_v_push(v, "[%zu]", i);
		uint64_t code;

		if (!ism_v_yaml_int(v, it)) {
			/* reported */
		} else if (it->kind != ISM_NODE_SCALAR || ism_parse_u64(it->str, &code) < 0 ||
			   code < 100 || code > ISM_STATUS_MAX) {
			ism_v_err(v, it, "must be an HTTP status between 100 and %d",
				  ISM_STATUS_MAX);
		} else {
			o->error_codes[code / 64] |= UINT64_C(1) << (code % 64);
			o->has_error_codes = 1;
		}
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

static void parse_od(struct ism_vctx *v, const struct ism_node *tp, struct ism_cm_od *p)
{
	static const char *const keys[] = {"consecutive5xxErrors",
					   "consecutiveGatewayErrors",
					   "consecutiveErrors",
					   "interval",
					   "baseEjectionTime",
					   "maxEjectionPercent",
					   "minHealthPercent",
					   "splitExternalLocalOriginErrors",
					   "consecutiveLocalOriginFailures",
					   "outlierDetectionHttpErrorCodes",
					   NULL};
	const struct ism_node *n = ism_v_node(v, tp, "outlierDetection", false, ISM_NODE_MAP);
	struct ism_outlier *o = &p->od;
	uint32_t legacy = 0;
	bool split = false;
	size_t old;

	if (n == NULL)
		return;
	p->set = true;
	*o = (struct ism_outlier){.consecutive_5xx = 5,
				  .consecutive_gateway = 0,
				  .split_local = 0,
				  .consecutive_local = 5,
				  .interval_ms = 10000,
				  .base_ejection_ms = 30000,
				  .max_ejection_percent = 10};
	old = ism_v_push(v, ".outlierDetection");
	ism_v_keys(v, n, keys, NULL);
	/* Old Istio: consecutiveErrors ejected on gateway errors only (502, 503,
	 * 504), with 5xx ejection off; the newer fields, when set, win. */
	if (ism_v_u32(v, n, "consecutiveErrors", false, 0, INT32_MAX, &legacy) > 0 && legacy > 0) {
		o->consecutive_gateway = legacy;
		o->consecutive_5xx = 0;
	}
	ism_v_u32(v, n, "consecutive5xxErrors", false, 0, UINT32_MAX, &o->consecutive_5xx);
	ism_v_u32(v, n, "consecutiveGatewayErrors", false, 0, UINT32_MAX, &o->consecutive_gateway);
	ism_v_istio_dur(v, n, "interval", &o->interval_ms);
	ism_v_istio_dur(v, n, "baseEjectionTime", &o->base_ejection_ms);
	/* Istio passes maxEjectionPercent on only when > 0: 0 keeps Envoy's 10. */
	if (ism_v_u32(v, n, "maxEjectionPercent", false, 0, 100, &o->max_ejection_percent) > 0 &&
	    o->max_ejection_percent == 0)
		o->max_ejection_percent = 10;
	ism_v_u32(v, n, "minHealthPercent", false, 0, 100, &p->min_health);
	if (ism_v_bool(v, n, "splitExternalLocalOriginErrors", &split) > 0)
		o->split_local = split;
	/* The same for consecutiveLocalOriginFailures: 0 keeps Envoy's 5. It
	 * counts only with the split (Istio's validateOutlierDetection). */
	if (ism_v_u32(v, n, "consecutiveLocalOriginFailures", false, 0, UINT32_MAX,
		      &o->consecutive_local) > 0) {
		if (o->consecutive_local > 0 && !split)
			ism_v_err_key(v, n, "consecutiveLocalOriginFailures",
				      "outlier detection consecutive local origin failures is "
				      "specified, but split external local origin errors is set to "
				      "false (as Istio): set splitExternalLocalOriginErrors: true");
		if (o->consecutive_local == 0)
			o->consecutive_local = 5;
	}
	parse_od_codes(v, n, o);
	o->max_ejection_ms = o->base_ejection_ms > ISM_DEFAULT_MAX_EJECTION_MS
				 ? o->base_ejection_ms
				 : ISM_DEFAULT_MAX_EJECTION_MS;
	ism_v_pop(v, old);
}

static void parse_tp(struct ism_vctx *v, const struct ism_node *map, struct ism_cm_tp *tp)
{
	ism_model_parse_lb(v, map, &tp->lb);
	parse_pool(v, map, &tp->pool);
	parse_od(v, map, &tp->od);
	ism_tls_parse_client(v, map, &tp->tls);
}

static void parse_port_settings(struct ism_vctx *v, const struct ism_node *tp,
				struct ism_cm_policy *p)
{
	static const char *const keys[] = {
	    "port", "loadBalancer", "connectionPool", "outlierDetection", "tls", NULL};
	static const char *const pkeys[] = {"number", NULL};
	const struct ism_node *seq = ism_v_node(v, tp, "portLevelSettings", false, ISM_NODE_SEQ);
	size_t old;

	if (seq == NULL)
		return;
	p->ports = ism_v_alloc(v, seq->n, sizeof(*p->ports));
	p->port_ix = ism_v_map(v, seq->n);
	old = ism_v_push(v, ".portLevelSettings");
	for (size_t i = 0; p->ports != NULL && p->port_ix != NULL && i < seq->n; i++) {
		const struct ism_node *it = seq->items[i], *pn;
		struct ism_cm_port_tp *pt = &p->ports[p->n_ports];
		size_t o2 = ism_v_push(v, "[%zu]", i);
		uint32_t first;

		if (!ism_v_expect(v, it, ISM_NODE_MAP))
			goto next;
		ism_v_keys(v, it, keys, NULL);
		pn = ism_v_node(v, it, "port", true, ISM_NODE_MAP);
		if (pn != NULL) {
			size_t o3 = ism_v_push(v, ".port");

			ism_v_keys(v, pn, pkeys, NULL);
			ism_v_u32(v, pn, "number", true, 1, 65535, &pt->port);
			ism_v_pop(v, o3);
		}
		if (pt->port != 0 &&
		    ism_strmap_get(p->port_ix, (const char *)&pt->port, sizeof(pt->port), &first)) {
			ism_v_err(v, it, "port %u already has settings (entry %u)", pt->port,
				  first);
			pt->port = 0;
		}
		/* Istio's validatePortTrafficPolicies. */
		if (it->n == 1 && pn != NULL)
			ism_v_err(v, it,
				  "port traffic policy must have at least one field (as Istio)");
		parse_tp(v, it, &pt->tp);
		if (pt->port != 0) {
			ism_v_map_add(v, p->port_ix, (const char *)&pt->port, sizeof(pt->port),
				      (uint32_t)p->n_ports, NULL);
			p->n_ports++;
		}
	next:
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

/* trafficPolicy.retryBudget {percent (a double, default 20), minRetryConcurrency
 * (default 3; 0 is the default too, as Istio reads it), budgetInterval}. */
static void parse_retry_budget(struct ism_vctx *v, const struct ism_node *tp,
			       struct ism_cm_rbudget *rb)
{
	static const char *const keys[] = {"percent", "minRetryConcurrency", "budgetInterval",
					   NULL};
	const struct ism_node *n = ism_v_node(v, tp, "retryBudget", false, ISM_NODE_MAP);
	double pct = 20;
	uint32_t ms = 0;
	size_t old;

	if (n == NULL)
		return;
	old = ism_v_push(v, ".retryBudget");
	ism_v_keys(v, n, keys, NULL);
	rb->set = true;
	rb->min_retries = 3;
	ism_v_double(v, n, "percent", 0, 100, false, &pct);
	rb->ppm = (uint32_t)(pct * 10000);
	if (ism_v_u32(v, n, "minRetryConcurrency", false, 0, UINT32_MAX, &rb->min_retries) > 0 &&
	    rb->min_retries == 0)
		rb->min_retries = 3;
	/* Istio's newest field (a rate over an interval); 0 is the classic budget. */
	if (ism_v_dur(v, n, "budgetInterval", 0, &ms) > 0 && ms > 0) {
		size_t o2 = ism_v_push(v, ".budgetInterval");

		ism_v_err(v, ism_node_get(n, "budgetInterval", NULL),
			  "a budgetInterval other than 0s is not implemented yet");
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

/* trafficPolicy.proxyProtocol: {version: V1 | V2}, V1 when absent (Istio's
 * enum, whose zero value is V1). */
static void parse_upstream_pp(struct ism_vctx *v, const struct ism_node *tp, uint8_t *out)
{
	static const char *const keys[] = {"version", NULL};
	static const char *const versions[] = {"V1", "V2", NULL};
	const struct ism_node *n = ism_v_node(v, tp, "proxyProtocol", false, ISM_NODE_MAP);
	const char *ver = "V1";
	size_t old;

	if (n == NULL)
		return;
	old = ism_v_push(v, ".proxyProtocol");
	ism_v_keys(v, n, keys, NULL);
	ism_v_enum(v, n, "version", versions, NULL, &ver);
	*out = strcmp(ver, "V2") == 0 ? ISM_UPP_V2 : ISM_UPP_V1;
	ism_v_pop(v, old);
}

/* trafficPolicy.tunnel: {protocol: CONNECT (default) | POST, targetHost (a
 * host name or an IP address), targetPort}, as Istio validates it. */
static void parse_tunnel(struct ism_vctx *v, const struct ism_node *tp, struct ism_cm_tp *out)
{
	static const char *const keys[] = {"protocol", "targetHost", "targetPort", NULL};
	static const char *const protocols[] = {"CONNECT", "POST", "", NULL};
	const struct ism_node *n = ism_v_node(v, tp, "tunnel", false, ISM_NODE_MAP);
	struct sockaddr_storage ss;
	socklen_t len;
	const char *proto = "CONNECT", *host = NULL;
	uint32_t port = 0;
	size_t old;

	if (n == NULL)
		return;
	old = ism_v_push(v, ".tunnel");
	ism_v_keys(v, n, keys, NULL);
	ism_v_enum(v, n, "protocol", protocols, NULL, &proto);
	/* Istio's validateTunnelSettings: an FQDN or an IP address. */
	if (ism_v_str(v, n, "targetHost", true, &host) > 0 && ism_model_fqdn_err(host) != NULL &&
	    !ism_model_parse_ip(host, &ss, &len)) {
		size_t o2 = ism_v_push(v, ".targetHost");

		ism_v_err(v, ism_node_get(n, "targetHost", NULL),
			  "must be a host name (FQDN) or an IP address, not \"%s\": %s", host,
			  ism_model_fqdn_err(host));
		ism_v_pop(v, o2);
		host = NULL;
	}
	if (ism_v_u32(v, n, "targetPort", true, 1, 65535, &port) > 0 && host != NULL) {
		out->tunnel_host = host;
		out->tunnel_port = port;
		out->tunnel_post = strcmp(proto, "POST") == 0;
	}
	ism_v_pop(v, old);
}

static void parse_policy(struct ism_vctx *v, const struct ism_node *map, struct ism_cm_policy *p)
{
	static const char *const keys[] = {"loadBalancer",
					   "connectionPool",
					   "outlierDetection",
					   "portLevelSettings",
					   "tls",
					   "retryBudget",
					   "proxyProtocol",
					   "tunnel",
					   NULL};
	const struct ism_node *tp = ism_v_node(v, map, "trafficPolicy", false, ISM_NODE_MAP);
	size_t old;

	if (tp == NULL)
		return;
	old = ism_v_push(v, ".trafficPolicy");
	ism_v_keys(v, tp, keys, NULL);
	/* Istio's validateTrafficPolicy. */
	if (tp->n == 0)
		ism_v_err(v, tp, "traffic policy must have at least one field (as Istio)");
	if (ism_node_get(tp, "tunnel", NULL) != NULL &&
	    ism_node_get(tp, "proxyProtocol", NULL) != NULL)
		ism_v_err_key(v, tp, "tunnel",
			      "tunnel and proxyProtocol must not be set together (as Istio)");
	parse_tp(v, tp, &p->tp);
	parse_retry_budget(v, tp, &p->tp.rb);
	parse_upstream_pp(v, tp, &p->tp.pp);
	parse_tunnel(v, tp, &p->tp);
	parse_port_settings(v, tp, p);
	ism_v_pop(v, old);
}

/* spec.workloadSelector {matchLabels}, validated as Istio does: no empty key,
 * no wildcard, a warning without labels. */
static void parse_dr_selector(struct ism_vctx *v, const struct ism_node *spec, struct ism_cm_dr *dr)
{
	static const char *const keys[] = {"matchLabels", NULL};
	const struct ism_node *n = ism_v_node(v, spec, "workloadSelector", false, ISM_NODE_MAP);
	size_t old;

	if (n == NULL)
		return;
	dr->selector_at = n;
	old = ism_v_push(v, ".workloadSelector");
	ism_v_keys(v, n, keys, NULL);
	ism_model_selector_labels(v, n, &dr->selector, &dr->n_selector);
	ism_v_pop(v, old);
}

void ism_model_parse_dr(struct ism_vctx *v, const struct ism_node *spec, struct ism_cm_dr *dr)
{
	static const char *const keys[] = {"host",     "trafficPolicy",	   "subsets",
					   "exportTo", "workloadSelector", NULL};
	static const char *const skeys[] = {"name", "labels", "trafficPolicy", NULL};
	const struct ism_node *l;
	const char *host;
	uint32_t *seen;
	size_t old;

	ism_v_keys(v, spec, keys, NULL);
	if (ism_v_str(v, spec, "host", true, &host) > 0) {
		dr->host_at = ism_node_get(spec, "host", NULL);
		/* Istio's ValidateWildcardDomain. */
		if (ism_model_domain_err(host) != NULL) {
			old = ism_v_push(v, ".host");
			ism_v_err(v, dr->host_at, "invalid host name \"%s\": %s", host,
				  ism_model_domain_err(host));
			ism_v_pop(v, old);
		}
		dr->host = ism_model_host(v, host, dr->r.ns);
	}
	dr->tp_at = ism_node_get(spec, "trafficPolicy", NULL);
	parse_policy(v, spec, &dr->policy);
	parse_dr_selector(v, spec, dr);
	ism_model_parse_export(v, spec, dr->r.ns,
			       dr->selector_at ? ISM_EXPORT_SELECTOR : ISM_EXPORT_ANY,
			       &dr->export_to, &dr->n_export_to);
	l = ism_v_node(v, spec, "subsets", false, ISM_NODE_SEQ);
	if (l == NULL)
		return;
	dr->subsets = ism_v_alloc(v, l->n, sizeof(*dr->subsets));
	dr->subset_ix = ism_v_map(v, l->n);
	/* Per subset: how many subsets before it have its name. */
	seen = ism_v_alloc(v, l->n, sizeof(*seen));
	old = ism_v_push(v, ".subsets");
	for (size_t i = 0; dr->subsets != NULL && dr->subset_ix != NULL && seen != NULL && i < l->n;
	     i++) {
		const struct ism_node *it = l->items[i];
		struct ism_cm_subset *s = &dr->subsets[dr->n_subsets];
		size_t o2 = ism_v_push(v, "[%zu]", i);
		uint32_t first;

		if (!ism_v_expect(v, it, ISM_NODE_MAP))
			goto next;
		ism_v_keys(v, it, skeys, NULL);
		if (ism_v_str(v, it, "name", true, &s->name) <= 0)
			goto next;
		if (!ism_model_istio_label(s->name))
			ism_v_err_key(v, it, "name",
				      "subset name is invalid: %s (as Istio: a DNS-1123 label)",
				      s->name);
		/* Reported once for each earlier subset of that name. */
		if (ism_v_map_add(v, dr->subset_ix, s->name, strlen(s->name),
				  (uint32_t)dr->n_subsets, &first) == 0) {
			for (uint32_t j = 0; j < seen[first]; j++) {
				size_t o3 = ism_v_push(v, ".name");

				ism_v_err(v, ism_node_get(it, "name", NULL),
					  "duplicate subset name \"%s\"", s->name);
				ism_v_pop(v, o3);
			}
			seen[first]++;
		} else {
			seen[dr->n_subsets] = 1;
		}
		ism_model_istio_labels(v, it, "labels", &s->labels, &s->n_labels);
		parse_policy(v, it, &s->policy);
		dr->n_subsets++;
	next:
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}
