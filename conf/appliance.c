/* SPDX-License-Identifier: Apache-2.0 */
/* The Appliance document's spec: the process (namespace, workers, user and
 * group, paths, listen and admin addresses), locality and labels, limits,
 * timeouts, logging, PROXY protocol, gatewayTopology, proxyHeaders, path
 * normalization, DNS settings, trust domain and health checks. Its access
 * log is conf/accesslog.c's, its credentials and mesh identity conf/tls.c's. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/un.h>

#include "conf/model.h"
#include "health/priority.h"
#include "lib/addr.h"
#include "lib/log.h"

/* A DNS server's address as c-ares takes it: "v4[:port]" or "[v6]:port" ("v6"
 * alone without one). */
static const char *server_text(struct ism_vctx *v, const struct sockaddr_storage *ss)
{
	char ip[INET6_ADDRSTRLEN] = "", out[INET6_ADDRSTRLEN + 10];
	uint16_t port = 0;

	ism_addr_text((const struct sockaddr *)ss, ip, &port);
	if (port == 0)
		snprintf(out, sizeof(out), "%s", ip);
	else
		ism_addr_port_text(out, sizeof(out), ip, port);
	return ism_v_strdup(v, out);
}

static void parse_statuses(struct ism_vctx *v, const struct ism_node *hc, struct ism_cm_hc *h)
{
	const struct ism_node *l = ism_v_node(v, hc, "expectedStatuses", false, ISM_NODE_SEQ);
	size_t old;

	h->ranges = ism_v_alloc(v, l ? l->n : 1, sizeof(*h->ranges));
	if (h->ranges == NULL)
		return;
	if (l == NULL || l->n == 0) {
		h->ranges[0][0] = 200;
		h->ranges[0][1] = 201;
		h->n_ranges = 1;
		return;
	}
	old = ism_v_push(v, ".expectedStatuses");
	for (size_t i = 0; i < l->n; i++) {
		const struct ism_node *it = l->items[i];
		size_t o2 = ism_v_push(v, "[%zu]", i);
		uint64_t lo, hi;
		char buf[32];
		char *dash;

		if (!ism_v_expect(v, it, ISM_NODE_SCALAR) || !ism_v_yaml_int(v, it))
			goto next;
		snprintf(buf, sizeof(buf), "%s", it->str);
		dash = strchr(buf, '-');
		if (dash != NULL)
			*dash = '\0';
		if (strlen(it->str) >= sizeof(buf) || ism_parse_u64(buf, &lo) < 0 ||
		    (dash != NULL && ism_parse_u64(dash + 1, &hi) < 0)) {
			ism_v_err(v, it, "must be a status code (100..599) or a range \"200-299\"");
			goto next;
		}
		if (dash == NULL)
			hi = lo;
		if (lo < 100 || hi > 599 || lo > hi) {
			ism_v_err(v, it, "must be a status code (100..599) or a range \"200-299\"");
			goto next;
		}
		h->ranges[h->n_ranges][0] = (uint16_t)lo;
		h->ranges[h->n_ranges][1] = (uint16_t)(hi + 1);
		h->n_ranges++;
	next:
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

/* Fields an HTTP check has and a TCP (connect-only) check must not. */
/* The fields a check of another type has are errors in a check of type. */
static void check_type_fields(struct ism_vctx *v, const struct ism_node *n, uint8_t type)
{
	static const char *const http_only[] = {"path", "expectedStatuses", NULL};

	for (const char *const *k = http_only; *k && type != ISM_HC_HTTP; k++)
		if (ism_node_get(n, *k, NULL) != NULL)
			ism_model_key_err(v, n, *k,
					  type == ISM_HC_TCP
					      ? "not allowed in a tcp check (it only connects)"
					      : "not allowed in a grpc check (it asks "
						"grpc.health.v1.Health/Check)");
	if (type == ISM_HC_TCP && ism_node_get(n, "hostHeader", NULL) != NULL)
		ism_model_key_err(v, n, "hostHeader",
				  "not allowed in a tcp check (it only connects)");
	if (type != ISM_HC_GRPC && ism_node_get(n, "serviceName", NULL) != NULL)
		ism_model_key_err(v, n, "serviceName", "only a grpc check has it");
}

static void parse_hc_intervals(struct ism_vctx *v, const struct ism_node *n, struct ism_cm_hc *h)
{
	/* Envoy's defaults: unhealthy = interval, unhealthy edge = unhealthy,
	 * healthy edge = interval, no jitter. */
	bool has_unhealthy = ism_v_dur(v, n, "unhealthyInterval", 1, &h->unhealthy_interval_ms) > 0;

	if (!has_unhealthy)
		h->unhealthy_interval_ms = h->interval_ms;
	if (ism_v_dur(v, n, "unhealthyEdgeInterval", 1, &h->unhealthy_edge_interval_ms) <= 0)
		h->unhealthy_edge_interval_ms = h->unhealthy_interval_ms;
	if (ism_v_dur(v, n, "healthyEdgeInterval", 1, &h->healthy_edge_interval_ms) <= 0)
		h->healthy_edge_interval_ms = h->interval_ms;
	ism_v_dur(v, n, "initialJitter", 0, &h->initial_jitter_ms);
	ism_v_dur(v, n, "intervalJitter", 0, &h->interval_jitter_ms);
	ism_v_u32(v, n, "intervalJitterPercent", false, 0, 100, &h->interval_jitter_percent);
}

/* Whether s may be a header field's value: not empty, printable (a tab
 * inside), no leading or trailing blank. */
static bool field_value_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || s[0] == ' ' || s[0] == '\t' || s[n - 1] == ' ' || s[n - 1] == '\t')
		return false;
	for (size_t i = 0; i < n; i++)
		if (((unsigned char)s[i] < 0x20 && s[i] != '\t') || s[i] == 0x7f)
			return false;
	return true;
}

/* Whether s holds visible ASCII only (no space, no control character). */
static bool visible(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= ' ' || (unsigned char)*s >= 0x7f)
			return false;
	return true;
}

static void parse_hc(struct ism_vctx *v, const struct ism_node *n, struct ism_cm_hc *h,
		     const char *ns)
{
	static const char *const keys[] = {"host",
					   "port",
					   "type",
					   "path",
					   "hostHeader",
					   "interval",
					   "timeout",
					   "healthyThreshold",
					   "unhealthyThreshold",
					   "expectedStatuses",
					   "unhealthyInterval",
					   "unhealthyEdgeInterval",
					   "healthyEdgeInterval",
					   "initialJitter",
					   "intervalJitter",
					   "intervalJitterPercent",
					   "serviceName",
					   NULL};
	static const char *const types[] = {"http", "tcp", "grpc", NULL};
	const char *host = NULL, *type = "http";

	h->at = n;
	h->path = "/";
	h->interval_ms = 5000;
	h->timeout_ms = 1000;
	h->healthy = 2;
	h->unhealthy = 3;
	if (!ism_v_expect(v, n, ISM_NODE_MAP))
		return;
	ism_v_keys(v, n, keys, NULL);
	if (ism_v_str(v, n, "host", true, &host) > 0) {
		if (ism_model_domain_err(host) != NULL || host[0] == '*')
			ism_v_err_key(v, n, "host", "invalid host name \"%s\"%s%s", host,
				      host[0] == '*' ? " (a service host, no wildcard)" : ": ",
				      host[0] == '*' ? "" : ism_model_domain_err(host));
		h->host = ism_model_host(v, host, ns);
	}
	ism_v_u32(v, n, "port", false, 1, 65535, &h->port);
	ism_v_enum(v, n, "type", types, NULL, &type);
	h->type = strcmp(type, "tcp") == 0    ? ISM_HC_TCP
		  : strcmp(type, "grpc") == 0 ? ISM_HC_GRPC
					      : ISM_HC_HTTP;
	check_type_fields(v, n, h->type);
	if (ism_v_str(v, n, "serviceName", false, &h->service) > 0 &&
	    strlen(h->service) > ISM_HC_SERVICE_MAX)
		ism_v_err_key(v, n, "serviceName", "longer than %d bytes", ISM_HC_SERVICE_MAX);
	/* Envoy refuses what is not a header value in both; a path is a
	 * request line's target too: visible characters only. */
	if (ism_v_str(v, n, "path", false, &h->path) > 0 &&
	    (h->path[0] != '/' || !visible(h->path)))
		ism_v_err_key(v, n, "path",
			      "must start with \"/\" and hold visible characters only (no space, "
			      "no control character)");
	if (ism_v_str(v, n, "hostHeader", false, &h->host_header) > 0 &&
	    !field_value_ok(h->host_header))
		ism_v_err_key(v, n, "hostHeader",
			      "must be a field value: not empty, no control characters");
	ism_v_dur(v, n, "interval", 1, &h->interval_ms);
	ism_v_dur(v, n, "timeout", 1, &h->timeout_ms);
	ism_v_u32(v, n, "healthyThreshold", false, 1, 1000, &h->healthy);
	ism_v_u32(v, n, "unhealthyThreshold", false, 1, 1000, &h->unhealthy);
	parse_hc_intervals(v, n, h);
	parse_statuses(v, n, h);
}

/* Field `field` of the map at spec.key (which holds only it), one of
 * names[]: its index; -1 when the map or the field is absent, or wrong
 * (reported). */
static int map_enum(struct ism_vctx *v, const struct ism_node *spec, const char *key,
		    const char *field, const char *const *names)
{
	const char *const keys[] = {field, NULL};
	const struct ism_node *n = ism_v_node(v, spec, key, false, ISM_NODE_MAP);
	const char *s = NULL;
	int at = -1;
	size_t old;

	if (n == NULL)
		return -1;
	old = ism_v_push(v, ".%s", key);
	ism_v_keys(v, n, keys, NULL);
	if (ism_v_enum(v, n, field, names, NULL, &s) > 0)
		for (int i = 0; names[i] != NULL; i++)
			if (strcmp(s, names[i]) == 0)
				at = i;
	ism_v_pop(v, old);
	return at;
}

/* spec.pathNormalization, as Istio's meshConfig.pathNormalization:
 * {normalization: NONE | BASE | MERGE_SLASHES | DECODE_AND_MERGE_SLASHES | DEFAULT}; DEFAULT and
 * absence mean BASE, Istio's default. */
static void parse_path_normalization(struct ism_vctx *v, const struct ism_node *spec,
				     struct ism_cm_appliance *a)
{
	/* In the order of enum ism_pathnorm_mode, then Istio's DEFAULT (BASE). */
	static const char *const names[] = {
	    "NONE", "BASE", "MERGE_SLASHES", "DECODE_AND_MERGE_SLASHES", "DEFAULT", NULL};
	int at = map_enum(v, spec, "pathNormalization", "normalization", names);

	a->path_norm = at >= ISM_PATHNORM_NONE && at <= ISM_PATHNORM_DECODE_AND_MERGE_SLASHES
			   ? (uint8_t)at
			   : ISM_PATHNORM_BASE;
}

/* spec.logging: the level the processes log at (stderr, the journal under
 * systemd); -d makes it debug. */
static void parse_logging(struct ism_vctx *v, const struct ism_node *spec,
			  struct ism_cm_appliance *a)
{
	/* In the order of enum ism_log_level from ISM_LOG_ERR. */
	static const char *const levels[] = {"error", "warning", "notice", "info", "debug", NULL};
	int at = map_enum(v, spec, "logging", "level", levels);

	a->log_level = (uint8_t)(at >= 0 ? ISM_LOG_ERR + at : ISM_LOG_INFO);
}

static void parse_limits(struct ism_vctx *v, const struct ism_node *spec, struct ism_limits *l)
{
	static const char *const keys[] = {"maxRequestHeaderBytes",
					   "maxRequestHeaders",
					   "maxUriBytes",
					   "maxRequestBodyBytes",
					   "maxConnectionsPerWorker",
					   "maxResponseHeaderBytes",
					   "http2MaxConcurrentStreams",
					   "http2InitialStreamWindowSize",
					   "http2InitialConnectionWindowSize",
					   "http2MaxHeaderListSize",
					   "mirrorMaxInFlight",
					   "mirrorMaxBodyBytes",
					   "receiveBuffersPerWorker",
					   NULL};
	const struct ism_node *n = ism_v_node(v, spec, "limits", false, ISM_NODE_MAP);
	size_t old;

	l->max_request_header_bytes = 32768;
	l->max_request_headers = 100;
	l->max_uri_bytes = 8192;
	l->max_request_body_bytes = 0;
	l->max_connections = 16384;
	l->max_response_header_bytes = 65536;
	l->h2_max_concurrent_streams = 100;
	l->h2_initial_stream_window = 65536;
	l->h2_initial_conn_window = 1048576;
	l->h2_max_header_list = 0; /* below: maxRequestHeaderBytes unless set */
	l->mirror_max_in_flight = 256;
	l->mirror_max_body_bytes = 65536; /* what a request keeps for a retry */
	l->receive_buffers = ISM_RECV_BUFFERS_DEFAULT;
	if (n == NULL)
		goto out;
	old = ism_v_push(v, ".limits");
	ism_v_keys(v, n, keys, NULL);
	ism_v_u32(v, n, "maxRequestHeaderBytes", false, 1024, 1048576,
		  &l->max_request_header_bytes);
	ism_v_u32(v, n, "maxRequestHeaders", false, 1, 1000, &l->max_request_headers);
	ism_v_u32(v, n, "maxUriBytes", false, 16, 1048576, &l->max_uri_bytes);
	ism_v_u64(v, n, "maxRequestBodyBytes", 0, (uint64_t)1 << 62, &l->max_request_body_bytes);
	ism_v_u32(v, n, "maxConnectionsPerWorker", false, 1, 1048576, &l->max_connections);
	ism_v_u32(v, n, "maxResponseHeaderBytes", false, 1024, 1048576,
		  &l->max_response_header_bytes);
	ism_v_u32(v, n, "http2MaxConcurrentStreams", false, 1, ISM_H2_MAX_STREAMS,
		  &l->h2_max_concurrent_streams);
	/* RFC 9113 §6.5.2: a window is at most 2^31-1; below 65535, the initial
	 * value, a client could not send a default-sized frame at once. */
	ism_v_u32(v, n, "http2InitialStreamWindowSize", false, 65535, INT32_MAX,
		  &l->h2_initial_stream_window);
	ism_v_u32(v, n, "http2InitialConnectionWindowSize", false, 65535, INT32_MAX,
		  &l->h2_initial_conn_window);
	ism_v_u32(v, n, "http2MaxHeaderListSize", false, 1024, 1048576, &l->h2_max_header_list);
	ism_v_u32(v, n, "mirrorMaxInFlight", false, 1, 65536, &l->mirror_max_in_flight);
	ism_v_u32(v, n, "mirrorMaxBodyBytes", false, 0, 16777216, &l->mirror_max_body_bytes);
	if (ism_v_u32(v, n, "receiveBuffersPerWorker", false, 16, ISM_RECV_BUFFERS_MAX,
		      &l->receive_buffers) > 0 &&
	    (l->receive_buffers & (l->receive_buffers - 1)) != 0) {
		const struct ism_node *at =
		    ism_v_node(v, n, "receiveBuffersPerWorker", false, ISM_NODE_SCALAR);
		size_t in = ism_v_push(v, ".receiveBuffersPerWorker");

		ism_v_err(v, at, "must be a power of two (16, 32, ... %u)", ISM_RECV_BUFFERS_MAX);
		ism_v_pop(v, in);
		l->receive_buffers = ISM_RECV_BUFFERS_DEFAULT;
	}
	ism_v_pop(v, old);
out:
	/* One budget for a request head whatever the protocol, unless set apart. */
	if (l->h2_max_header_list == 0)
		l->h2_max_header_list = l->max_request_header_bytes;
}

static void parse_timeouts(struct ism_vctx *v, const struct ism_node *spec, struct ism_timeouts *t)
{
	static const char *const keys[] = {
	    "requestHeader", "idle", "upstreamConnect", "upstreamResponse", "streamIdle",
	    "drain",	     NULL};
	const struct ism_node *n = ism_v_node(v, spec, "timeouts", false, ISM_NODE_MAP);
	size_t old;

	t->request_header_ms = 10000;
	t->idle_ms = 60000;
	t->upstream_connect_ms = 10000;
	t->upstream_response_ms = 60000;
	t->stream_idle_ms = ISM_DEFAULT_STREAM_IDLE_MS;
	t->drain_ms = ISM_DEFAULT_DRAIN_MS;
	if (n == NULL)
		return;
	old = ism_v_push(v, ".timeouts");
	ism_v_keys(v, n, keys, NULL);
	ism_v_dur(v, n, "requestHeader", 1, &t->request_header_ms);
	ism_v_dur(v, n, "idle", 1, &t->idle_ms);
	ism_v_dur(v, n, "upstreamConnect", 1, &t->upstream_connect_ms);
	ism_v_dur(v, n, "upstreamResponse", 1, &t->upstream_response_ms);
	ism_v_dur(v, n, "streamIdle", 0, &t->stream_idle_ms);
	ism_v_dur(v, n, "drain", 1, &t->drain_ms);
	ism_v_pop(v, old);
}

static void parse_locality(struct ism_vctx *v, const struct ism_node *spec,
			   struct ism_cm_appliance *a)
{
	const char *loc = NULL, *region, *zone, *subzone;
	struct ism_locality l;

	a->region = a->zone = a->subzone = "";
	if (ism_v_str(v, spec, "locality", true, &loc) <= 0)
		return;
	if (ism_locality_parse(loc, false, &l) < 2) {
		size_t old = ism_v_push(v, ".locality");

		ism_v_err(v, ism_node_get(spec, "locality", NULL),
			  "must be \"region/zone\" or \"region/zone/subzone\" with non-empty parts "
			  "(at most %zu bytes each)",
			  ISM_LOCALITY_PART_MAX);
		ism_v_pop(v, old);
		return;
	}
	region = ism_v_strdup(v, l.region);
	zone = ism_v_strdup(v, l.zone);
	subzone = ism_v_strdup(v, l.subzone);
	if (region == NULL || zone == NULL || subzone == NULL)
		return;
	a->region = region;
	a->zone = zone;
	a->subzone = subzone;
}

static void parse_workers(struct ism_vctx *v, const struct ism_node *spec,
			  struct ism_cm_appliance *a)
{
	const struct ism_node *n = ism_node_get(spec, "workers", NULL);
	uint64_t x;
	size_t old;

	a->workers = 0;
	a->workers_at = n;
	if (n == NULL || (n->kind == ISM_NODE_SCALAR && strcmp(n->str, "auto") == 0))
		return;
	old = ism_v_push(v, ".workers");
	/* An integer written as one: "2" is an error, as a port's "80". */
	if (ism_v_plain_int(v, n)) {
		if (n->kind == ISM_NODE_SCALAR && ism_parse_u64(n->str, &x) == 0 && x >= 1 &&
		    x <= 64)
			a->workers = (uint32_t)x;
		else
			ism_v_err(v, n,
				  "must be an integer between 1 and 64, or \"auto\" (one per CPU)");
	}
	ism_v_pop(v, old);
}

/* spec.proxyProtocol: {ports: [N, ...]}: listeners whose connections start
 * with a PROXY protocol (v1 or v2) header, as an L4 balancer sends it. */
static void parse_proxy_protocol(struct ism_vctx *v, const struct ism_node *spec,
				 struct ism_cm_appliance *a)
{
	static const char *const keys[] = {"ports", NULL};
	const struct ism_node *n = ism_v_node(v, spec, "proxyProtocol", false, ISM_NODE_MAP);
	const struct ism_node *l;
	size_t old;

	if (n == NULL)
		return;
	old = ism_v_push(v, ".proxyProtocol");
	ism_v_keys(v, n, keys, NULL);
	l = ism_v_node(v, n, "ports", true, ISM_NODE_SEQ);
	a->pp_at = n;
	a->pp_ports = l ? ism_v_alloc(v, l->n, sizeof(*a->pp_ports)) : NULL;
	for (size_t i = 0; a->pp_ports != NULL && i < l->n; i++) {
		uint64_t port;
		size_t o2 = ism_v_push(v, ".ports[%zu]", i);

		if (ism_v_expect(v, l->items[i], ISM_NODE_SCALAR) &&
		    ism_v_yaml_int(v, l->items[i])) {
			if (ism_parse_u64(l->items[i]->str, &port) < 0 || port == 0 || port > 65535)
				ism_v_err(v, l->items[i], "must be a port number (1..65535)");
			else
				a->pp_ports[a->n_pp_ports++] = (uint32_t)port;
		}
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

/* Istio's ForwardClientCertDetails, in the order of enum ism_fcc, then UNDEFINED. */
static const char *const fccs[] = {
    "SANITIZE_SET", "SANITIZE", "FORWARD_ONLY", "APPEND_FORWARD", "ALWAYS_FORWARD_ONLY",
    "UNDEFINED",    NULL};

/* spec.gatewayTopology, as Istio's (meshConfig.defaultConfig.gatewayTopology):
 * numTrustedProxies, the proxies in front of the appliance whose
 * X-Forwarded-For entries are trusted; forwardClientCertDetails, what becomes
 * of X-Forwarded-Client-Cert (UNDEFINED is Istio's gateway default,
 * SANITIZE_SET). */
static void parse_gateway_topology(struct ism_vctx *v, const struct ism_node *spec,
				   struct ism_cm_appliance *a)
{
	static const char *const keys[] = {"numTrustedProxies", "forwardClientCertDetails",
					   "proxyProtocol", NULL};
	const struct ism_node *n = ism_v_node(v, spec, "gatewayTopology", false, ISM_NODE_MAP);
	const struct ism_node *pp;
	const char *s = "UNDEFINED";
	size_t old;

	a->fcc = ISM_FCC_SANITIZE_SET;
	if (n == NULL)
		return;
	old = ism_v_push(v, ".gatewayTopology");
	ism_v_keys(v, n, keys, NULL);
	/* Istio's ProxyProtocolConfiguration has no field: present, every
	 * listener takes the PROXY header (spec.proxyProtocol names ports). */
	pp = ism_v_node(v, n, "proxyProtocol", false, ISM_NODE_MAP);
	if (pp != NULL) {
		size_t o2 = ism_v_push(v, ".proxyProtocol");

		ism_v_keys(v, pp, NULL, NULL);
		a->pp_all = true;
		ism_v_pop(v, o2);
	}
	ism_v_u32(v, n, "numTrustedProxies", false, 0, 64, &a->trusted_proxies);
	if (ism_v_enum(v, n, "forwardClientCertDetails", fccs, NULL, &s) > 0)
		for (uint8_t i = ISM_FCC_SANITIZE_SET; i <= ISM_FCC_ALWAYS_FORWARD_ONLY; i++)
			if (strcmp(s, fccs[i]) == 0)
				a->fcc = i;
	ism_v_pop(v, old);
}

/* spec.dns (defaults in conf/defaults.h). */
static void parse_dns(struct ism_vctx *v, const struct ism_node *spec, struct ism_cm_dns *dns)
{
	static const char *const keys[] = {"servers", "minRefresh",   "maxRefresh",
					   "timeout", "lookupFamily", NULL};
	/* In enum ism_dns_family's order. */
	static const char *const families[] = {"V4_ONLY", "V6_ONLY",	  "ALL",
					       "AUTO",	  "V4_PREFERRED", NULL};
	const struct ism_node *n, *l;
	const char **servers, *family;
	size_t ns, old;

	dns->min_refresh_ms = ISM_DEFAULT_DNS_MIN_REFRESH_MS;
	dns->max_refresh_ms = ISM_DEFAULT_DNS_MAX_REFRESH_MS;
	dns->timeout_ms = ISM_DEFAULT_DNS_TIMEOUT_MS;
	n = ism_v_node(v, spec, "dns", false, ISM_NODE_MAP);
	if (n == NULL)
		return;
	old = ism_v_push(v, ".dns");
	ism_v_keys(v, n, keys, NULL);
	servers = ism_v_strlist(v, n, "servers", false, &ns, &l);
	for (size_t i = 0; servers != NULL && i < ns; i++) {
		struct sockaddr_storage ss;
		socklen_t len;

		if (ism_model_parse_ip(servers[i], &ss, &len) ||
		    ism_model_parse_hostport(servers[i], &ss, &len)) {
			/* As c-ares reads a server ("[v4]:53" it refuses), as
			 * Envoy builds its resolvers' list. */
			const char *text = server_text(v, &ss);

			if (text != NULL)
				servers[i] = text;
			continue;
		}
		size_t o2 = ism_v_push(v, ".servers[%zu]", i);
		ism_v_err(
		    v, l->items[i],
		    "\"%s\" must be ADDRESS or ADDRESS:PORT with an IP address (\"[IPv6]:PORT\" "
		    "with a port)",
		    servers[i]);
		ism_v_pop(v, o2);
	}
	if (servers != NULL && ns > ISM_DNS_MAX_SERVERS)
		ism_model_key_err(v, n, "servers", "at most 8 servers");
	dns->servers = servers;
	dns->n_servers = servers != NULL ? ns : 0;
	ism_v_dur(v, n, "minRefresh", 100, &dns->min_refresh_ms);
	ism_v_dur(v, n, "maxRefresh", 100, &dns->max_refresh_ms);
	ism_v_dur(v, n, "timeout", 100, &dns->timeout_ms);
	if (dns->max_refresh_ms < dns->min_refresh_ms && ism_node_get(n, "maxRefresh", NULL))
		ism_model_key_err(v, n, "maxRefresh", "must not be less than minRefresh");
	else if (dns->max_refresh_ms < dns->min_refresh_ms) {
		char why[96];

		snprintf(why, sizeof(why),
			 "must not be more than maxRefresh, %us unless set: set maxRefresh too",
			 ISM_DEFAULT_DNS_MAX_REFRESH_MS / 1000);
		ism_model_key_err(v, n, "minRefresh", why);
	}
	if (dns->timeout_ms > 60000)
		ism_model_key_err(v, n, "timeout", "must be at most 60s");
	if (ism_v_enum(v, n, "lookupFamily", families, NULL, &family) == 1)
		for (uint8_t i = 0; families[i] != NULL; i++)
			if (strcmp(family, families[i]) == 0)
				dns->family = i;
	ism_v_pop(v, old);
}

/* spec.trustDomain: Istio's meshConfig.trustDomain, what the service accounts
 * of ServiceEntry endpoints are named under (Istio reads '@' as '.'); and
 * spec.trustDomainAliases: the other trust domains the same accounts may be
 * named under (Istio's ExpandWithTrustDomains). */
static void parse_trust_domain(struct ism_vctx *v, const struct ism_node *spec,
			       struct ism_cm_appliance *a)
{
	const struct ism_node *list;
	const char *td;
	char *copy;
	size_t old;

	if (ism_v_str(v, spec, "trustDomain", false, &td) > 0) {
		copy = ism_v_strdup(v, td);
		for (char *p = copy; p != NULL && *p; p++)
			*p = *p == '@' ? '.' : *p;
		if (copy != NULL && ism_model_trust_domain_ok(copy))
			a->trust_domain = copy;
		else
			ism_v_err_key(v, spec, "trustDomain",
				      "\"%s\" is not a trust domain (a DNS name, as cluster.local)",
				      td);
	}
	a->td_aliases =
	    ism_v_strlist(v, spec, "trustDomainAliases", false, &a->n_td_aliases, &list);
	old = ism_v_push(v, ".trustDomainAliases");
	for (size_t i = 0; list != NULL && i < list->n; i++) {
		const struct ism_node *it = list->items[i];
		size_t o2;

		/* What is not a string was reported by ism_v_strlist. */
		if (it->kind != ISM_NODE_SCALAR || it->len == 0 ||
		    ism_model_trust_domain_ok(it->str))
			continue;
		o2 = ism_v_push(v, "[%zu]", i);
		ism_v_err(v, it, "\"%s\" is not a trust domain (a DNS name)", it->str);
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

/* The value of bool field flag ("disabled", "enabled") of proxyHeaders field
 * key, a map of that one field; false when absent. */
static bool ph_flag(struct ism_vctx *v, const struct ism_node *n, const char *key, const char *flag)
{
	const char *const keys[] = {flag, NULL};
	const struct ism_node *m = ism_v_node(v, n, key, false, ISM_NODE_MAP);
	bool on = false;
	size_t old;

	if (m == NULL)
		return false;
	old = ism_v_push(v, ".%s", key);
	ism_v_keys(v, m, keys, NULL);
	ism_v_bool(v, m, flag, &on);
	ism_v_pop(v, old);
	return on;
}

/* proxyHeaders' fields of X-Forwarded-Client-Cert, checked and then left:
 * Istio's gateway takes what becomes of that field from gatewayTopology (it
 * uses these at sidecars only), and sets the client certificate's subject,
 * certificate, DNS and URI names in it, as isthmus does. */
static void ph_xfcc(struct ism_vctx *v, const struct ism_node *n)
{
	static const char *const dkeys[] = {"subject", "cert", "chain", "dns", "uri", NULL};
	const struct ism_node *m;
	const char *fcc;
	bool b;
	size_t old;

	if (ism_v_enum(v, n, "forwardedClientCert", fccs, NULL, &fcc) > 0) {
		old = ism_v_push(v, ".forwardedClientCert");
		ism_v_warn(v, ism_node_get(n, "forwardedClientCert", NULL),
			   "not used at a gateway, as Istio does: "
			   "spec.gatewayTopology.forwardClientCertDetails decides "
			   "X-Forwarded-Client-Cert");
		ism_v_pop(v, old);
	}
	if ((m = ism_v_node(v, n, "setCurrentClientCertDetails", false, ISM_NODE_MAP)) != NULL) {
		old = ism_v_push(v, ".setCurrentClientCertDetails");
		ism_v_keys(v, m, dkeys, NULL);
		for (size_t i = 0; dkeys[i] != NULL; i++)
			ism_v_bool(v, m, dkeys[i], &b);
		ism_v_warn(v, m,
			   "not used at a gateway, as Istio does: X-Forwarded-Client-Cert gets the "
			   "client certificate's subject, certificate, DNS and URI names");
		ism_v_pop(v, old);
	}
}

/* spec.proxyHeaders: Istio's ProxyConfig.proxyHeaders, the fields isthmus
 * itself adds to what it forwards. */
static void parse_proxy_headers(struct ism_vctx *v, const struct ism_node *spec,
				struct ism_cm_appliance *a)
{
	static const char *const keys[] = {"server",
					   "envoyDebugHeaders",
					   "attemptCount",
					   "requestId",
					   "xForwardedPort",
					   "xForwardedHost",
					   "forwardedClientCert",
					   "setCurrentClientCertDetails",
					   "metadataExchangeHeaders",
					   NULL};
	static const char *const skeys[] = {"disabled", "value", NULL};
	static const char *const modes[] = {"UNDEFINED", "IN_MESH", NULL};
	const struct ism_node *n = ism_v_node(v, spec, "proxyHeaders", false, ISM_NODE_MAP), *m;
	bool off = false;
	size_t old, o2;

	a->server = "isthmus";
	a->debug_headers = a->attempt_count = a->request_id = true;
	if (n == NULL)
		return;
	old = ism_v_push(v, ".proxyHeaders");
	ism_v_keys(v, n, keys, NULL);
	if ((m = ism_v_node(v, n, "server", false, ISM_NODE_MAP)) != NULL) {
		o2 = ism_v_push(v, ".server");
		ism_v_keys(v, m, skeys, NULL);
		if (ism_v_str(v, m, "value", false, &a->server) > 0 &&
		    (!field_value_ok(a->server) || strlen(a->server) > ISM_SERVER_MAX))
			ism_v_err_key(v, m, "value",
				      "must be a field value: not empty, no control characters, "
				      "at most %d bytes",
				      ISM_SERVER_MAX);
		if (ism_v_bool(v, m, "disabled", &off) > 0 && off)
			a->server = "";
		ism_v_pop(v, o2);
	}
	a->debug_headers = !ph_flag(v, n, "envoyDebugHeaders", "disabled");
	a->attempt_count = !ph_flag(v, n, "attemptCount", "disabled");
	a->request_id = !ph_flag(v, n, "requestId", "disabled");
	a->xf_port = ph_flag(v, n, "xForwardedPort", "enabled");
	a->xf_host = ph_flag(v, n, "xForwardedHost", "enabled");
	ph_xfcc(v, n);
	/* isthmus sends no metadata-exchange fields at all: IN_MESH holds. */
	map_enum(v, n, "metadataExchangeHeaders", "mode", modes);
	ism_v_pop(v, old);
}

/* The Appliance's defaults that no step below sets itself. */
static void appliance_defaults(struct ism_cm_appliance *a)
{
	a->ns = "default";
	a->control_socket = "/run/isthmus/isthmus.sock";
	a->pid_file = "";
	a->listen = "0.0.0.0";
	a->user = a->group = "";
	a->root_ns = "istio-system";
	a->trust_domain = "cluster.local";
	a->auto_mtls = true;
}

/* How the appliance's processes run: its namespace, workers, user and group,
 * control socket, pid file and listen address. */
static void parse_process(struct ism_vctx *v, const struct ism_node *spec,
			  struct ism_cm_appliance *a)
{
	size_t old;

	if (ism_v_str(v, spec, "namespace", false, &a->ns) > 0 && !ism_model_dns1123_label(a->ns)) {
		old = ism_v_push(v, ".namespace");
		ism_v_err(v, ism_node_get(spec, "namespace", NULL), ISM_DNS1123_LABEL_RULE);
		ism_v_pop(v, old);
	}
	parse_workers(v, spec, a);
	ism_v_str(v, spec, "user", false, &a->user);
	ism_v_str(v, spec, "group", false, &a->group);
	if (ism_v_str(v, spec, "controlSocket", false, &a->control_socket) > 0 &&
	    strlen(a->control_socket) >= sizeof(((struct sockaddr_un *)0)->sun_path)) {
		/* The start would fail to bind it (ENAMETOOLONG), naming no place. */
		old = ism_v_push(v, ".controlSocket");
		ism_v_err(v, ism_node_get(spec, "controlSocket", NULL),
			  "a unix socket path holds at most %zu bytes; this one has %zu",
			  sizeof(((struct sockaddr_un *)0)->sun_path) - 1,
			  strlen(a->control_socket));
		ism_v_pop(v, old);
	}
	if (ism_v_str(v, spec, "pidFile", false, &a->pid_file) > 0 && a->pid_file[0] != '/') {
		old = ism_v_push(v, ".pidFile");
		ism_v_err(v, ism_node_get(spec, "pidFile", NULL), "must be an absolute path");
		ism_v_pop(v, old);
	}
	if (ism_v_str(v, spec, "listenAddress", false, &a->listen) > 0) {
		struct sockaddr_storage ss;
		socklen_t len;

		if (!ism_model_parse_ip(a->listen, &ss, &len)) {
			old = ism_v_push(v, ".listenAddress");
			ism_v_err(v, ism_node_get(spec, "listenAddress", NULL),
				  "must be an IPv4 or IPv6 address");
			ism_v_pop(v, old);
		}
	}
}

bool ism_conf_listen_is(const struct ism_conf *conf, const struct sockaddr_storage *a)
{
	struct sockaddr_storage ss;
	socklen_t len;

	if (conf->app.listen_at == NULL || !ism_model_parse_ip(conf->app.listen, &ss, &len) ||
	    ss.ss_family != a->ss_family)
		return false;
	if (a->ss_family == AF_INET)
		return ((const struct sockaddr_in *)a)->sin_addr.s_addr ==
		       ((const struct sockaddr_in *)&ss)->sin_addr.s_addr;
	return memcmp(&((const struct sockaddr_in6 *)a)->sin6_addr,
		      &((const struct sockaddr_in6 *)&ss)->sin6_addr, sizeof(struct in6_addr)) == 0;
}

/* Whether a is a loopback address (127.0.0.0/8, ::1, or IPv4's in IPv6). */
static bool loopback(const struct sockaddr_storage *a)
{
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)a;

	if (a->ss_family == AF_INET)
		return (ntohl(((const struct sockaddr_in *)a)->sin_addr.s_addr) >> 24) == 127;
	if (a->ss_family != AF_INET6)
		return false;
	if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr))
		return in6->sin6_addr.s6_addr[12] == 127;
	return IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
}

/* spec.admin: {address}, where the admin listener listens. */
static void parse_admin(struct ism_vctx *v, const struct ism_node *spec, struct ism_cm_appliance *a)
{
	static const char *const keys[] = {"address", NULL};
	const struct ism_node *n = ism_v_node(v, spec, "admin", false, ISM_NODE_MAP);
	const char *addr = NULL;
	size_t old;

	if (n == NULL)
		return;
	old = ism_v_push(v, ".admin");
	ism_v_keys(v, n, keys, NULL);
	a->admin_at = ism_node_get(n, "address", NULL);
	if (ism_v_str(v, n, "address", false, &addr) > 0 &&
	    !ism_model_parse_hostport(addr, &a->admin, &a->admin_len)) {
		size_t o2 = ism_v_push(v, ".address");

		ism_v_err(v, ism_node_get(n, "address", NULL),
			  "must be \"IP:port\" or \"[IPv6]:port\"");
		ism_v_pop(v, o2);
	} else if (addr != NULL && !loopback(&a->admin)) {
		size_t o2 = ism_v_push(v, ".address");

		/* Its pages name every service and endpoint and the libraries'
		 * versions: Istio keeps Envoy's admin on 127.0.0.1. */
		ism_v_warn(v, ism_node_get(n, "address", NULL),
			   "%s is not a loopback address: the admin pages (every service and "
			   "endpoint, the libraries' versions) are open to whoever reaches it",
			   addr);
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

/* spec.healthChecks: the active checks of services' endpoints. */
static void parse_health_checks(struct ism_vctx *v, const struct ism_node *spec,
				struct ism_cm_appliance *a)
{
	const struct ism_node *n = ism_v_node(v, spec, "healthChecks", false, ISM_NODE_SEQ);
	size_t old;

	if (n == NULL)
		return;
	old = ism_v_push(v, ".healthChecks");
	a->hcs = ism_v_alloc(v, n->n, sizeof(*a->hcs));
	for (size_t i = 0; a->hcs != NULL && i < n->n; i++) {
		size_t o2 = ism_v_push(v, "[%zu]", i);

		parse_hc(v, n->items[i], &a->hcs[a->n_hcs++], a->ns);
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

void ism_model_parse_appliance(struct ism_vctx *v, const struct ism_node *spec)
{
	static const char *const keys[] = {"locality",
					   "namespace",
					   "workers",
					   "user",
					   "group",
					   "controlSocket",
					   "pidFile",
					   "admin",
					   "listenAddress",
					   "limits",
					   "timeouts",
					   "healthChecks",
					   "labels",
					   "accessLog",
					   "credentials",
					   "meshIdentity",
					   "meshRootNamespace",
					   "proxyProtocol",
					   "pathNormalization",
					   "gatewayTopology",
					   "dns",
					   "preserveExternalRequestId",
					   "trustDomain",
					   "trustDomainAliases",
					   "proxyHeaders",
					   "enableAutoMtls",
					   "logging",
					   "extensionProviders",
					   NULL};
	struct ism_cm_appliance *a = &v->conf->app;

	appliance_defaults(a);
	ism_v_keys(v, spec, keys, NULL);
	parse_logging(v, spec, a);
	ism_v_bool(v, spec, "enableAutoMtls", &a->auto_mtls);
	ism_v_str(v, spec, "meshRootNamespace", false, &a->root_ns);
	parse_trust_domain(v, spec, a);
	ism_v_bool(v, spec, "preserveExternalRequestId", &a->preserve_rid);
	parse_proxy_headers(v, spec, a);
	ism_tls_parse_appliance(v, spec, a);
	parse_proxy_protocol(v, spec, a);
	parse_locality(v, spec, a);
	a->labels_at = ism_model_labels_field(v, spec, "labels", &a->labels, &a->n_labels);
	parse_process(v, spec, a);
	ism_model_parse_access_log(v, spec, &a->access_log);
	a->access_log_spec_at = ism_node_get(spec, "accessLog", NULL);
	a->access_log_at = ism_node_get(a->access_log_spec_at, "path", NULL);
	a->user_at = ism_node_get(spec, "user", NULL);
	a->group_at = ism_node_get(spec, "group", NULL);
	a->control_socket_at = ism_node_get(spec, "controlSocket", NULL);
	a->pid_file_at = ism_node_get(spec, "pidFile", NULL);
	a->listen_at = ism_node_get(spec, "listenAddress", NULL);
	parse_admin(v, spec, a);
	parse_limits(v, spec, &a->limits);
	parse_timeouts(v, spec, &a->timeouts);
	parse_path_normalization(v, spec, a);
	parse_gateway_topology(v, spec, a);
	parse_dns(v, spec, &a->dns);
	parse_health_checks(v, spec, a);
	ism_model_parse_extauthz(v, spec, a);
}

void ism_conf_dns_settings(const struct ism_conf *conf, struct ism_conf_dns *out)
{
	const struct ism_cm_dns *d = &conf->app.dns;

	*out = (struct ism_conf_dns){.n_servers = d->n_servers,
				     .servers = d->servers,
				     .min_refresh_ms = d->min_refresh_ms,
				     .max_refresh_ms = d->max_refresh_ms,
				     .timeout_ms = d->timeout_ms,
				     .family = (enum ism_dns_family)d->family};
}
