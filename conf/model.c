/* SPDX-License-Identifier: Apache-2.0 */
/* Phase 2: per-resource validation of the YAML tree into the model.
 *
 * Each mapping is checked against the fields Istio's API (or the Appliance
 * kind) defines: a field isthmus implements is validated and stored; a field
 * Istio defines that isthmus does not implement yet is an error naming it, so
 * nothing a user wrote is silently ignored; anything else is "unknown field". */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <sys/un.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "conf/alog.h"
#include "conf/hfmt.h"
#include "conf/mirror.h"
#include "conf/model.h"
#include "conf/re2syntax.h"
#include "lib/addr.h"
#include "lib/ascii.h"
#include "lib/base64.h"
#include "lib/log.h"

#define NOT_IMPL "not implemented yet"

/* --- small shared pieces --- */

static char *lower_dup(struct ism_vctx *v, const char *s)
{
	char *p = ism_v_strdup(v, s);

	if (p != NULL)
		for (char *q = p; *q; q++)
			*q = (char)tolower((unsigned char)*q);
	return p;
}

const char *ism_model_host(struct ism_vctx *v, const char *host, const char *ns)
{
	char buf[512];

	if (strchr(host, '.') != NULL || strcmp(host, "*") == 0)
		return lower_dup(v, host);
	snprintf(buf, sizeof(buf), "%s.%s.svc.cluster.local", host, ns);
	return lower_dup(v, buf);
}

/* A gateway reference as Istio resolves one (resolveGatewayName), lowercased:
 * "ns/name" as it is, "./name" and a short name in namespace ns, the legacy
 * "name.ns.svc.cluster.local" as "ns/name". */
static const char *gateway_ref(struct ism_vctx *v, const char *name, const char *ns)
{
	const char *slash = strchr(name, '/'), *dot = strchr(name, '.');
	char buf[512];

	if (slash != NULL && !(slash == name + 1 && name[0] == '.'))
		return lower_dup(v, name);
	if (slash != NULL) {
		snprintf(buf, sizeof(buf), "%s/%s", ns, slash + 1);
	} else if (dot == NULL) {
		snprintf(buf, sizeof(buf), "%s/%s", ns, name);
	} else {
		const char *end = strchr(dot + 1, '.');
		size_t nl = end ? (size_t)(end - dot - 1) : strlen(dot + 1);

		snprintf(buf, sizeof(buf), "%.*s/%.*s", (int)nl, dot + 1, (int)(dot - name), name);
	}
	return lower_dup(v, buf);
}

bool ism_model_match_source(const struct ism_cm_match *m)
{
	return m->n_gateways > 0 || m->n_source_labels > 0 || m->source_ns != NULL;
}

bool ism_model_match_names_gateway(const struct ism_cm_match *m, const char *gw)
{
	for (size_t i = 0; i < m->n_gateways; i++)
		if (strcmp(m->gateways[i], gw) == 0)
			return true;
	return false;
}

/* DNS name, optionally with a leftmost "*" label, or "*" alone. */
static bool host_syntax_ok(const char *s)
{
	size_t label = 0;

	if (strcmp(s, "*") == 0)
		return true;
	if (s[0] == '*') {
		if (s[1] != '.')
			return false;
		s += 2;
	}
	if (*s == '\0' || strlen(s) > 253)
		return false;
	for (; *s; s++) {
		if (*s == '.') {
			if (label == 0)
				return false;
			label = 0;
		} else if (isalnum((unsigned char)*s) || *s == '-' || *s == '_') {
			label++;
		} else {
			return false;
		}
	}
	return label > 0;
}

static bool parse_ip(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, s, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		*len = sizeof(*a4);
		return true;
	}
	if (inet_pton(AF_INET6, s, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		*len = sizeof(*a6);
		return true;
	}
	return false;
}

/* "host:port" or "[v6]:port" with an IP literal host. */
static bool parse_hostport(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	char host[64];
	const char *colon, *hs = s;
	size_t hl;
	uint64_t port;

	if (s[0] == '[') {
		const char *end = strchr(s, ']');

		if (end == NULL || end[1] != ':')
			return false;
		hs = s + 1;
		hl = (size_t)(end - hs);
		colon = end + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL)
			return false;
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= sizeof(host))
		return false;
	memcpy(host, hs, hl);
	host[hl] = '\0';
	if (ism_parse_u64(colon + 1, &port) < 0 || port == 0 || port > 65535)
		return false;
	if (!parse_ip(host, ss, len))
		return false;
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
	else
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
	return true;
}

/* A DNS server's address as c-ares takes it: "v4[:port]" or "[v6]:port" ("v6"
 * alone without one). */
static const char *server_text(struct ism_vctx *v, const struct sockaddr_storage *ss)
{
	char ip[INET6_ADDRSTRLEN] = "", out[INET6_ADDRSTRLEN + 10];
	bool v4 = ss->ss_family == AF_INET;
	uint16_t port = 0;

	ism_addr_text((const struct sockaddr *)ss, ip, &port);
	if (port == 0)
		snprintf(out, sizeof(out), "%s", ip);
	else
		snprintf(out, sizeof(out), v4 ? "%s:%u" : "[%s]:%u", ip, port);
	return ism_v_strdup(v, out);
}

/* A mapping of strings to strings (labels). */
static size_t parse_labels(struct ism_vctx *v, const struct ism_node *map,
			   struct ism_cm_label **out)
{
	struct ism_cm_label *l = ism_v_alloc(v, map->n, sizeof(*l));
	size_t n = 0;

	*out = l;
	if (l == NULL)
		return 0;
	for (size_t i = 0; i < map->n; i++) {
		const struct ism_node *val = map->pairs[i].value;
		size_t old = ism_v_push(v, ".%s", map->pairs[i].key->str);

		if (ism_v_expect(v, val, ISM_NODE_SCALAR)) {
			l[n].key = map->pairs[i].key->str;
			l[n].value = val->str;
			n++;
		}
		ism_v_pop(v, old);
	}
	return n;
}

static const struct ism_node *labels_field(struct ism_vctx *v, const struct ism_node *map,
					   const char *key, struct ism_cm_label **out, size_t *n)
{
	const struct ism_node *l = ism_v_node(v, map, key, false, ISM_NODE_MAP);
	size_t old;

	*n = 0;
	*out = NULL;
	if (l == NULL)
		return NULL;
	old = ism_v_push(v, ".%s", key);
	*n = parse_labels(v, l, out);
	ism_v_pop(v, old);
	return l;
}

/* An error at map.key (the key node), with the path pushed. */
static void key_err(struct ism_vctx *v, const struct ism_node *map, const char *key,
		    const char *msg)
{
	const struct ism_node *k = NULL;
	size_t old = ism_v_push(v, ".%s", key);

	ism_node_get(map, key, &k);
	ism_v_err(v, k, "%s", msg);
	ism_v_pop(v, old);
}

/* Reports the second (and later) of the keys in set[] present in map: only one
 * of them may be set. Returns how many are present. */
static size_t one_of(struct ism_vctx *v, const struct ism_node *map, const char *const *set,
		     const char *what)
{
	size_t found = 0;

	for (size_t i = 0; i < map->n; i++) {
		const struct ism_node *k = map->pairs[i].key;
		bool in = false;

		for (const char *const *p = set; *p && !in; p++)
			in = strcmp(*p, k->str) == 0;
		if (!in)
			continue;
		if (found++ > 0) {
			size_t old = ism_v_push(v, ".%s", k->str);

			ism_v_err(v, k, "only one of %s may be set", what);
			ism_v_pop(v, old);
		}
	}
	return found;
}

/* --- Appliance --- */

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

		if (!ism_v_expect(v, it, ISM_NODE_SCALAR))
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
			key_err(v, n, *k,
				type == ISM_HC_TCP ? "not allowed in a tcp check (it only connects)"
						   : "not allowed in a grpc check (it asks "
						     "grpc.health.v1.Health/Check)");
	if (type == ISM_HC_TCP && ism_node_get(n, "hostHeader", NULL) != NULL)
		key_err(v, n, "hostHeader", "not allowed in a tcp check (it only connects)");
	if (type != ISM_HC_GRPC && ism_node_get(n, "serviceName", NULL) != NULL)
		key_err(v, n, "serviceName", "only a grpc check has it");
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
		if (!host_syntax_ok(host) || host[0] == '*')
			ism_v_err_key(v, n, "host", "invalid host name \"%s\"", host);
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
	if (ism_v_str(v, n, "path", false, &h->path) > 0 && h->path[0] != '/')
		ism_v_err_key(v, n, "path", "must start with \"/\"");
	ism_v_str(v, n, "hostHeader", false, &h->host_header);
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
	static const char *const keys[] = {"requestHeader",    "idle",	"upstreamConnect",
					   "upstreamResponse", "drain", NULL};
	const struct ism_node *n = ism_v_node(v, spec, "timeouts", false, ISM_NODE_MAP);
	size_t old;

	t->request_header_ms = 10000;
	t->idle_ms = 60000;
	t->upstream_connect_ms = 10000;
	t->upstream_response_ms = 60000;
	t->drain_ms = ISM_DEFAULT_DRAIN_MS;
	if (n == NULL)
		return;
	old = ism_v_push(v, ".timeouts");
	ism_v_keys(v, n, keys, NULL);
	ism_v_dur(v, n, "requestHeader", 1, &t->request_header_ms);
	ism_v_dur(v, n, "idle", 1, &t->idle_ms);
	ism_v_dur(v, n, "upstreamConnect", 1, &t->upstream_connect_ms);
	ism_v_dur(v, n, "upstreamResponse", 1, &t->upstream_response_ms);
	ism_v_dur(v, n, "drain", 1, &t->drain_ms);
	ism_v_pop(v, old);
}

static void parse_locality(struct ism_vctx *v, const struct ism_node *spec,
			   struct ism_cm_appliance *a)
{
	const char *loc = NULL;
	char *copy, *slash;

	a->region = a->zone = a->subzone = "";
	if (ism_v_str(v, spec, "locality", true, &loc) <= 0)
		return;
	if (!ism_locality_valid(loc)) {
		size_t old = ism_v_push(v, ".locality");

		ism_v_err(v, ism_node_get(spec, "locality", NULL),
			  "must be \"region/zone\" or \"region/zone/subzone\" with non-empty parts "
			  "(at most 63 bytes each)");
		ism_v_pop(v, old);
		return;
	}
	copy = ism_v_strdup(v, loc);
	if (copy == NULL)
		return;
	a->region = copy;
	slash = strchr(copy, '/');
	*slash = '\0';
	a->zone = slash + 1;
	slash = strchr(slash + 1, '/');
	if (slash != NULL) {
		*slash = '\0';
		a->subzone = slash + 1;
	}
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
	if (n->kind == ISM_NODE_SCALAR && ism_parse_u64(n->str, &x) == 0 && x >= 1 && x <= 64) {
		a->workers = (uint32_t)x;
		return;
	}
	old = ism_v_push(v, ".workers");
	ism_v_err(v, n, "must be an integer between 1 and 64, or \"auto\" (one per CPU)");
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

		if (!ism_v_expect(v, l->items[i], ISM_NODE_SCALAR) ||
		    ism_parse_u64(l->items[i]->str, &port) < 0 || port == 0 || port > 65535)
			ism_v_err(v, l->items[i], "must be a port number (1..65535)");
		else
			a->pp_ports[a->n_pp_ports++] = (uint32_t)port;
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

/* An error at the value of map.key, with the path pushed. */
static void value_err(struct ism_vctx *v, const struct ism_node *map, const char *key,
		      const char *msg)
{
	size_t old = ism_v_push(v, ".%s", key);

	ism_v_err(v, ism_node_get(map, key, NULL), "%s", msg);
	ism_v_pop(v, old);
}

/* A string of the model as an ism_str (the compiler copies it into the arena). */
static struct ism_str model_str(const char *s)
{
	return (struct ism_str){.p = s, .len = (uint32_t)strlen(s)};
}

/* spec.accessLog.syslog: where (a unix datagram socket or UDP), facility, tag. */
static void parse_syslog(struct ism_vctx *v, const struct ism_node *n, struct ism_alog_conf *l)
{
	static const char *const keys[] = {"address", "facility", "tag", NULL};
	static const char *const facilities[24] = {
	    "kern",   "user",	"mail",	    "daemon", "auth",	"syslog", "lpr",    "news",
	    "uucp",   "cron",	"authpriv", "ftp",    NULL,	NULL,	  NULL,	    NULL,
	    "local0", "local1", "local2",   "local3", "local4", "local5", "local6", "local7"};
	const char *addr = "/dev/log", *fac = "local0", *tag = "isthmus";
	struct sockaddr_un *un = (struct sockaddr_un *)&l->addr;
	size_t old = ism_v_push(v, ".syslog");
	int f;

	ism_v_keys(v, n, keys, NULL);
	ism_v_str(v, n, "address", false, &addr);
	if (addr[0] == '/' && strlen(addr) < sizeof(un->sun_path)) {
		un->sun_family = AF_UNIX;
		memcpy(un->sun_path, addr, strlen(addr) + 1);
		l->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + strlen(addr) + 1);
	} else if (!parse_hostport(addr, &l->addr, &l->addrlen)) {
		value_err(v, n, "address",
			  "must be a unix socket path (absolute, below 108 bytes), \"IP:port\" or "
			  "\"[IPv6]:port\" (UDP)");
	}
	l->address = model_str(addr);
	ism_v_str(v, n, "facility", false, &fac);
	for (f = 0; f < 24 && (facilities[f] == NULL || strcmp(facilities[f], fac) != 0); f++)
		;
	if (f == 24) {
		value_err(v, n, "facility",
			  "must be a syslog facility: kern, user, mail, daemon, auth, syslog, lpr, "
			  "news, uucp, cron, authpriv, ftp, local0 ... local7");
		f = 16;
	}
	l->facility = (uint8_t)f;
	if (ism_v_str(v, n, "tag", false, &tag) > 0 &&
	    (strlen(tag) > 32 || strspn(tag, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
					     "0123456789._-") != strlen(tag)))
		value_err(v, n, "tag", "must be 1 to 32 letters, digits, '.', '_' or '-'");
	l->tag = model_str(tag);
	ism_v_pop(v, old);
}

/* spec.accessLog.jsonFormat flattened into the members of Envoy's format
 * dictionary, in document order (an object's or a list's followed by theirs
 * and an END), each with its value's node and its field path below
 * jsonFormat, for the errors the parser finds in the whole. */
struct json_flat {
	struct ism_alog_member *m;
	const struct ism_node **at;
	const char **path;
	size_t n;
	size_t base; /* v->plen at jsonFormat */
};

/* The members value n takes: one; an object's or a list's, theirs and an END. */
static size_t json_count(const struct ism_node *n)
{
	size_t c = n->kind == ISM_NODE_SCALAR ? 1 : 2;

	for (size_t i = 0; n->kind == ISM_NODE_MAP && i < n->n; i++)
		c += json_count(n->pairs[i].value);
	for (size_t i = 0; n->kind == ISM_NODE_SEQ && i < n->n; i++)
		c += json_count(n->items[i]);
	return c;
}

/* Whether s is one of the plain YAML spellings in list (NULL-terminated). */
static bool yaml_word(const char *s, const char *const *list)
{
	for (; *list != NULL; list++)
		if (strcmp(s, *list) == 0)
			return true;
	return false;
}

/* A scalar's member, as Envoy's json_format takes YAML's values: a quoted
 * string, or a plain one that is no other, is a template; a plain null,
 * boolean or number (YAML's core schema) is written as JSON. False on an
 * error (reported). */
static bool json_scalar(struct ism_vctx *v, const struct ism_node *n, struct ism_alog_member *m)
{
	static const char *const trues[] = {"true", "True", "TRUE", NULL};
	static const char *const falses[] = {"false", "False", "FALSE", NULL};
	static const char *const nans[] = {".inf",  ".Inf",  ".INF",  "+.inf", "+.Inf",
					   "+.INF", "-.inf", "-.Inf", "-.INF", ".nan",
					   ".NaN",  ".NAN",  NULL};
	const char *json = NULL;
	char num[64];
	int rc;

	m->kind = ISM_ALOG_M_TEMPLATE;
	m->tmpl = n->str ? n->str : "";
	m->len = n->str ? n->len : 0;
	if (!n->plain)
		return true;
	if (ism_node_is_null(n))
		json = "null";
	else if (yaml_word(n->str, trues))
		json = "true";
	else if (yaml_word(n->str, falses))
		json = "false";
	else if (yaml_word(n->str, nans) ||
		 (rc = ism_alog_json_number(n->str, n->len, num, sizeof(num))) == -ERANGE) {
		ism_v_err(v, n,
			  "%s: a number JSON cannot write (infinite, not a number, or beyond a "
			  "double); quote it for a string",
			  n->str);
		return false;
	} else if (rc > 0 && (json = ism_v_strdup(v, num)) == NULL) {
		return false;
	}
	if (json != NULL) {
		m->kind = ISM_ALOG_M_JSON;
		m->tmpl = json;
		m->len = strlen(json);
	}
	return true;
}

/* Member k of f: key (NULL: a list's item) and its value val, depth objects
 * and lists deep, its own members after it; false on an error (reported). */
static bool json_member(struct ism_vctx *v, struct json_flat *f, const struct ism_node *key,
			const struct ism_node *val, int depth)
{
	struct ism_alog_member *m = &f->m[f->n];
	size_t self = f->n;
	bool ok = true;

	f->at[f->n] = val;
	f->path[f->n] = ism_v_strdup(v, v->path + f->base);
	f->n++;
	*m = (struct ism_alog_member){.key = key ? key->str : NULL, .key_len = key ? key->len : 0};
	if (val->kind == ISM_NODE_SCALAR)
		return json_scalar(v, val, m);
	if (depth >= ISM_ALOG_DICT_DEPTH) {
		ism_v_err(v, val, "objects and lists nested deeper than %d", ISM_ALOG_DICT_DEPTH);
		return false;
	}
	m->kind = val->kind == ISM_NODE_MAP ? ISM_ALOG_M_OBJECT : ISM_ALOG_M_LIST;
	for (size_t i = 0; i < val->n; i++) {
		size_t old = val->kind == ISM_NODE_MAP
				 ? ism_v_push(v, ".%s", val->pairs[i].key->str)
				 : ism_v_push(v, "[%zu]", i);

		ok = json_member(v, f, val->kind == ISM_NODE_MAP ? val->pairs[i].key : NULL,
				 val->kind == ISM_NODE_MAP ? val->pairs[i].value : val->items[i],
				 depth + 1) &&
		     ok;
		ism_v_pop(v, old);
	}
	f->at[f->n] = val;
	f->path[f->n] = f->path[self];
	f->m[f->n++] = (struct ism_alog_member){.kind = ISM_ALOG_M_END};
	return ok;
}

/* spec.accessLog.jsonFormat (jn, the path pushed): the members of Envoy's
 * format dictionary (Istio's accessLogFormat with accessLogEncoding: JSON),
 * nested objects and lists with theirs, into f; false when one is wrong
 * (reported). */
static bool json_members(struct ism_vctx *v, const struct ism_node *jn, struct json_flat *f)
{
	size_t total = 0;
	bool ok = true;

	if (jn->n == 0) {
		ism_v_err(v, jn, "an empty dictionary: name at least one key");
		return false;
	}
	for (size_t i = 0; i < jn->n; i++)
		total += json_count(jn->pairs[i].value);
	f->m = ism_v_alloc(v, total, sizeof(*f->m));
	f->at = ism_v_alloc(v, total, sizeof(*f->at));
	f->path = ism_v_alloc(v, total, sizeof(*f->path));
	f->base = v->plen;
	if (f->m == NULL || f->at == NULL || f->path == NULL)
		return false;
	for (size_t i = 0; i < jn->n; i++) {
		size_t old = ism_v_push(v, ".%s", jn->pairs[i].key->str);

		/* a member deeper than the bound is not walked: f has room */
		ok = json_member(v, f, jn->pairs[i].key, jn->pairs[i].value, 0) && ok;
		ism_v_pop(v, old);
	}
	return ok;
}

/* A format of the access log: its ops written into ops (cap of them; those
 * past it counted); the count, or -1 with *bad and err set. */
typedef int (*alog_parse_fn)(const void *src, struct ism_alog_op *ops, size_t cap, size_t *bad,
			     char *err, size_t errlen);

struct alog_dict {
	const struct ism_alog_member *m;
	size_t n;
};

static int parse_text_src(const void *src, struct ism_alog_op *ops, size_t cap, size_t *bad,
			  char *err, size_t errlen)
{
	const char *text = src;

	*bad = 0;
	return ism_alog_parse(text, strlen(text), ops, cap, err, errlen);
}

static int parse_dict_src(const void *src, struct ism_alog_op *ops, size_t cap, size_t *bad,
			  char *err, size_t errlen)
{
	const struct alog_dict *d = src;

	return ism_alog_parse_dict(d->m, d->n, ops, cap, bad, err, errlen);
}

/* l's ops from src, parsed twice (count, then fill): false on an error in src
 * (*bad and err tell it), or without memory (reported). */
static bool alog_ops(struct ism_vctx *v, struct ism_alog_conf *l, alog_parse_fn parse,
		     const void *src, size_t *bad, char *err, size_t errlen)
{
	int count = parse(src, NULL, 0, bad, err, errlen);
	struct ism_alog_op *ops;

	if (count < 0)
		return false;
	ops = ism_v_alloc(v, (size_t)count, sizeof(*ops));
	if (ops == NULL)
		return true;
	l->n_ops = (uint32_t)parse(src, ops, (size_t)count, bad, err, errlen);
	l->ops = ops;
	return true;
}

/* The parsed dictionary of format: istio-json: jsonFormat's, or Istio's default. */
static void parse_log_dict(struct ism_vctx *v, const struct ism_node *n, struct ism_alog_conf *l)
{
	const struct ism_node *jn = ism_v_node(v, n, "jsonFormat", false, ISM_NODE_MAP);
	struct alog_dict d = {ism_alog_default_json, ism_alog_default_json_len};
	struct json_flat f = {0};
	size_t bad = 0, old;
	char err[256];
	bool ok;

	if (jn != NULL) {
		old = ism_v_push(v, ".jsonFormat");
		ok = json_members(v, jn, &f);
		ism_v_pop(v, old);
		if (!ok)
			return;
		d = (struct alog_dict){f.m, f.n};
	}
	if (alog_ops(v, l, parse_dict_src, &d, &bad, err, sizeof(err)))
		return;
	if (jn == NULL) {
		old = ism_v_push(v, ".jsonFormat.%s", d.m[bad].key);
		ism_v_err(v, n, "%s", err);
	} else {
		old = ism_v_push(v, ".jsonFormat%s", f.path[bad] ? f.path[bad] : "");
		ism_v_err(v, f.at[bad], "%s", err);
	}
	ism_v_pop(v, old);
}

/* spec.accessLog.format, textFormat and jsonFormat: the template is parsed
 * here, once. */
static void parse_log_format(struct ism_vctx *v, const struct ism_node *n, struct ism_alog_conf *l)
{
	static const char *const formats[] = {"json", "text", "istio-json", NULL};
	const struct ism_node *tn = ism_node_get(n, "textFormat", NULL);
	const char *fmt = "json", *text = ism_alog_default_text;
	size_t bad;
	char err[256];

	if (ism_v_enum(v, n, "format", formats, NULL, &fmt) < 0)
		return;
	l->format = strcmp(fmt, "text") == 0	     ? ISM_ALOG_TEXT
		    : strcmp(fmt, "istio-json") == 0 ? ISM_ALOG_DICT
						     : ISM_ALOG_JSON;
	if (tn != NULL && ism_v_str(v, n, "textFormat", false, &text) <= 0)
		return;
	if (tn != NULL && l->format != ISM_ALOG_TEXT) {
		value_err(v, n, "textFormat", "needs format: text");
		return;
	}
	if (ism_node_get(n, "jsonFormat", NULL) != NULL && l->format != ISM_ALOG_DICT) {
		value_err(v, n, "jsonFormat", "needs format: istio-json");
		return;
	}
	if (l->format == ISM_ALOG_DICT)
		parse_log_dict(v, n, l);
	if (l->format == ISM_ALOG_TEXT &&
	    !alog_ops(v, l, parse_text_src, text, &bad, err, sizeof(err))) {
		size_t old = ism_v_push(v, ".textFormat");

		ism_v_err(v, tn, "%s", err);
		ism_v_pop(v, old);
	}
}

/* spec.accessLog: a file (path, "-" for standard output) or syslog, and the format. */
static void parse_access_log(struct ism_vctx *v, const struct ism_node *n, struct ism_alog_conf *l)
{
	static const char *const keys[] = {"path",	 "syslog",     "format",
					   "textFormat", "jsonFormat", NULL};
	const struct ism_node *sl;
	const char *path = NULL;

	ism_v_keys(v, n, keys, NULL);
	if (ism_node_get(n, "syslog", NULL) == NULL) {
		if (ism_v_str(v, n, "path", true, &path) > 0) {
			l->dest = strcmp(path, "-") == 0 ? ISM_ALOG_STDOUT : ISM_ALOG_FILE;
			l->path = model_str(path);
		}
	} else if (ism_node_get(n, "path", NULL) != NULL) {
		key_err(v, n, "syslog", "path and syslog exclude each other: one destination");
	} else if ((sl = ism_v_node(v, n, "syslog", false, ISM_NODE_MAP)) != NULL) {
		l->dest = ISM_ALOG_SYSLOG;
		parse_syslog(v, sl, l);
	}
	parse_log_format(v, n, l);
}

/* spec.dns (defaults in conf/defaults.h). */
static void parse_dns(struct ism_vctx *v, const struct ism_node *spec, struct ism_cm_dns *dns)
{
	static const char *const keys[] = {"servers", "minRefresh", "maxRefresh", "timeout", NULL};
	const struct ism_node *n, *l;
	const char **servers;
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

		if (parse_ip(servers[i], &ss, &len) || parse_hostport(servers[i], &ss, &len)) {
			/* As c-ares reads a server ("[v4]:53" and "v6:53" it
			 * refuses), as Envoy builds its resolvers' list. */
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
		key_err(v, n, "servers", "at most 8 servers");
	dns->servers = servers;
	dns->n_servers = servers != NULL ? ns : 0;
	ism_v_dur(v, n, "minRefresh", 100, &dns->min_refresh_ms);
	ism_v_dur(v, n, "maxRefresh", 100, &dns->max_refresh_ms);
	ism_v_dur(v, n, "timeout", 100, &dns->timeout_ms);
	if (dns->max_refresh_ms < dns->min_refresh_ms)
		key_err(v, n, "maxRefresh", "must not be less than minRefresh");
	if (dns->timeout_ms > 60000)
		key_err(v, n, "timeout", "must be at most 60s");
	ism_v_pop(v, old);
}

/* Whether s is a name of the DNS's shape: 1..max bytes of charset, starting
 * and ending with a letter or digit. */
static bool dns_name_ok(const char *s, size_t max, const char *charset)
{
	size_t n = strlen(s);

	return n > 0 && n <= max && isalnum((unsigned char)s[0]) &&
	       isalnum((unsigned char)s[n - 1]) && s[strspn(s, charset)] == '\0';
}

#define DNS_LOWER "abcdefghijklmnopqrstuvwxyz0123456789-."

/* A DNS-1123 subdomain (Kubernetes' rule for the names of service accounts). */
static bool dns1123_subdomain(const char *s)
{
	return dns_name_ok(s, 253, DNS_LOWER);
}

/* A trust domain: a DNS name, letters of either case. */
static bool trust_domain_ok(const char *s)
{
	return dns_name_ok(s, 255, DNS_LOWER "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
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
		if (copy != NULL && trust_domain_ok(copy))
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
		if (it->kind != ISM_NODE_SCALAR || it->len == 0 || trust_domain_ok(it->str))
			continue;
		o2 = ism_v_push(v, "[%zu]", i);
		ism_v_err(v, it, "\"%s\" is not a trust domain (a DNS name)", it->str);
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
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

static void parse_appliance(struct ism_vctx *v, const struct ism_node *spec)
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
					   NULL};
	struct ism_cm_appliance *a = &v->conf->app;
	const struct ism_node *n;
	size_t old;

	a->ns = "default";
	a->control_socket = "/run/isthmus/isthmus.sock";
	a->pid_file = "";
	a->listen = "0.0.0.0";
	a->user = a->group = "";
	a->root_ns = "istio-system";
	a->trust_domain = "cluster.local";
	a->auto_mtls = true;
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
	a->labels_at = labels_field(v, spec, "labels", &a->labels, &a->n_labels);
	ism_v_str(v, spec, "namespace", false, &a->ns);
	parse_workers(v, spec, a);
	ism_v_str(v, spec, "user", false, &a->user);
	ism_v_str(v, spec, "group", false, &a->group);
	ism_v_str(v, spec, "controlSocket", false, &a->control_socket);
	if (ism_v_str(v, spec, "pidFile", false, &a->pid_file) > 0 && a->pid_file[0] != '/') {
		old = ism_v_push(v, ".pidFile");
		ism_v_err(v, ism_node_get(spec, "pidFile", NULL), "must be an absolute path");
		ism_v_pop(v, old);
	}
	if (ism_v_str(v, spec, "listenAddress", false, &a->listen) > 0) {
		struct sockaddr_storage ss;
		socklen_t len;

		if (!parse_ip(a->listen, &ss, &len)) {
			old = ism_v_push(v, ".listenAddress");
			ism_v_err(v, ism_node_get(spec, "listenAddress", NULL),
				  "must be an IPv4 or IPv6 address");
			ism_v_pop(v, old);
		}
	}
	n = ism_v_node(v, spec, "accessLog", false, ISM_NODE_MAP);
	if (n != NULL) {
		old = ism_v_push(v, ".accessLog");
		parse_access_log(v, n, &a->access_log);
		ism_v_pop(v, old);
	}
	n = ism_v_node(v, spec, "admin", false, ISM_NODE_MAP);
	if (n != NULL) {
		static const char *const akeys[] = {"address", NULL};
		const char *addr = NULL;

		old = ism_v_push(v, ".admin");
		ism_v_keys(v, n, akeys, NULL);
		if (ism_v_str(v, n, "address", false, &addr) > 0 &&
		    !parse_hostport(addr, &a->admin, &a->admin_len)) {
			size_t o2 = ism_v_push(v, ".address");

			ism_v_err(v, ism_node_get(n, "address", NULL),
				  "must be \"IP:port\" or \"[IPv6]:port\"");
			ism_v_pop(v, o2);
		}
		ism_v_pop(v, old);
	}
	parse_limits(v, spec, &a->limits);
	parse_timeouts(v, spec, &a->timeouts);
	parse_path_normalization(v, spec, a);
	parse_gateway_topology(v, spec, a);
	parse_dns(v, spec, &a->dns);
	n = ism_v_node(v, spec, "healthChecks", false, ISM_NODE_SEQ);
	if (n != NULL) {
		old = ism_v_push(v, ".healthChecks");
		a->hcs = ism_v_alloc(v, n->n, sizeof(*a->hcs));
		for (size_t i = 0; a->hcs != NULL && i < n->n; i++) {
			size_t o2 = ism_v_push(v, "[%zu]", i);

			parse_hc(v, n->items[i], &a->hcs[a->n_hcs++], a->ns);
			ism_v_pop(v, o2);
		}
		ism_v_pop(v, old);
	}
}

/* --- Gateway --- */

/* Port protocols as Istio names them (protocol.Parse, any case), by what isthmus
 * does with them. A Gateway server of one of PROTOS_TCP carries bytes (tcp
 * routes, or tls routes for TLS): Istio's gateway proxies MONGO, REDIS and
 * MYSQL servers with Envoy's TCP proxy as it does TCP ones (its Redis and
 * MySQL filters are off by default; the Mongo one only decodes for
 * statistics). */
#define PROTOS_TCP   "TCP", "TLS", "MONGO", "REDIS", "MYSQL"
#define PROTOS_LATER "UDP", "HTTP_PROXY"

uint8_t ism_model_server_kind(const char *protocol, bool passthrough)
{
	if (passthrough)
		return ISM_SRV_PASSTHROUGH;
	if (strcmp(protocol, "HTTPS") == 0 || strcmp(protocol, "TLS") == 0)
		return ISM_SRV_HTTPS;
	for (const char *const *p = (const char *const[]){PROTOS_TCP, NULL}; *p; p++)
		if (strcmp(protocol, *p) == 0)
			return ISM_SRV_TCP;
	return ISM_SRV_HTTP;
}

/* A field of Istio's API that has no effect there either (hidden from its
 * documentation): accepted once checked, with a warning at it saying why. */
static void no_effect(struct ism_vctx *v, const struct ism_node *map, const char *key,
		      const char *why)
{
	size_t old = ism_v_push(v, ".%s", key);

	ism_v_warn(v, ism_node_get(map, key, NULL), "no effect: %s", why);
	ism_v_pop(v, old);
}

static void parse_server_port(struct ism_vctx *v, const struct ism_node *srv,
			      struct ism_cm_server *s)
{
	static const char *const keys[] = {"number", "name", "protocol", "targetPort", NULL};
	/* HTTP2, GRPC and GRPC-WEB servers are plaintext HTTP servers, as in
	 * Istio (its validation refuses TLS on them); every plaintext listener
	 * takes HTTP/2 with prior knowledge, and HTTPS ones offer h2 by ALPN. A
	 * GRPC-WEB server's port translates gRPC-Web requests to gRPC, as
	 * Envoy's grpc_web filter that Istio adds to that port only. */
	static const char *const ok[] = {"HTTP",     "HTTPS",	 "HTTP2", "GRPC",
					 "GRPC-WEB", PROTOS_TCP, NULL};
	static const char *const later[] = {PROTOS_LATER, NULL};
	const struct ism_node *p = ism_v_node(v, srv, "port", true, ISM_NODE_MAP);
	uint32_t num = 0;
	size_t old;

	s->protocol = "HTTP";
	if (p == NULL)
		return;
	old = ism_v_push(v, ".port");
	ism_v_keys(v, p, keys, NULL);
	if (ism_v_u32(v, p, "number", true, 1, 65535, &num) > 0)
		s->port = (uint16_t)num;
	if (ism_v_u32(v, p, "targetPort", false, 1, 65535, &num) > 0)
		no_effect(v, p, "targetPort",
			  "deprecated in Istio's API, where a Gateway ignores it");
	ism_v_str(v, p, "name", false, &s->port_name);
	ism_v_enum_nocase(v, p, "protocol", ok, later, &s->protocol);
	ism_v_pop(v, old);
}

static void parse_server(struct ism_vctx *v, const struct ism_node *n, struct ism_cm_server *s)
{
	static const char *const keys[] = {"port", "hosts",	      "bind", "name",
					   "tls",  "defaultEndpoint", NULL};
	const struct ism_node *hl;
	const char **hosts, *dflt;
	size_t nh, old;

	if (!ism_v_expect(v, n, ISM_NODE_MAP))
		return;
	ism_v_keys(v, n, keys, NULL);
	if (ism_v_str(v, n, "defaultEndpoint", false, &dflt) > 0)
		no_effect(v, n, "defaultEndpoint", "Istio does not implement it (its API says so)");
	s->at = n;
	parse_server_port(v, n, s);
	ism_v_str(v, n, "name", false, &s->name);
	ism_tls_parse_server(v, n, s->protocol, &s->tls);
	s->kind = ism_model_server_kind(s->protocol, s->tls.passthrough);
	if (ism_v_str(v, n, "bind", false, &s->bind) > 0) {
		struct sockaddr_storage ss;
		socklen_t len;

		if (!parse_ip(s->bind, &ss, &len)) {
			old = ism_v_push(v, ".bind");
			ism_v_err(v, ism_node_get(n, "bind", NULL),
				  "must be an IPv4 or IPv6 address (unix:// is " NOT_IMPL ")");
			ism_v_pop(v, old);
		}
	}
	hosts = ism_v_strlist(v, n, "hosts", true, &nh, &hl);
	s->hosts = ism_v_alloc(v, nh, sizeof(*s->hosts));
	if (hosts == NULL || s->hosts == NULL)
		return;
	old = ism_v_push(v, ".hosts");
	for (size_t i = 0; i < nh; i++) {
		const char *h = hosts[i];
		const char *slash = strchr(h, '/');
		struct ism_cm_srvhost *sh = &s->hosts[s->n_hosts];
		size_t o2 = ism_v_push(v, "[%zu]", i);

		if (slash != NULL) {
			char *ns = ism_v_strdup(v, h);

			if (ns == NULL)
				break;
			ns[slash - h] = '\0';
			sh->ns = ns;
			h = slash + 1;
		}
		if ((sh->ns != NULL && sh->ns[0] == '\0') || !host_syntax_ok(h)) {
			ism_v_err(v, hl->items[i], "invalid host \"%s\"", hosts[i]);
		} else {
			sh->dns = lower_dup(v, h);
			s->n_hosts++;
		}
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

static void parse_gateway(struct ism_vctx *v, const struct ism_node *spec, struct ism_cm_gw *g)
{
	static const char *const keys[] = {"selector", "servers", NULL};
	const struct ism_node *l;
	size_t old;

	ism_v_keys(v, spec, keys, NULL);
	ism_v_node(v, spec, "selector", false, ISM_NODE_MAP);
	l = ism_v_node(v, spec, "servers", true, ISM_NODE_SEQ);
	if (l == NULL)
		return;
	g->servers = ism_v_alloc(v, l->n, sizeof(*g->servers));
	if (g->servers == NULL)
		return;
	old = ism_v_push(v, ".servers");
	for (size_t i = 0; i < l->n; i++) {
		size_t o2 = ism_v_push(v, "[%zu]", i);

		parse_server(v, l->items[i], &g->servers[g->n_servers++]);
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

/* --- VirtualService --- */

/* A route regex is what Istio and Envoy accept (RE2: linear time, no
 * back-references or look-arounds), read by PCRE2 as RE2 reads it: anchored
 * (a condition) or searched for (a rewrite's). Its number of groups, or -1
 * when it is refused (reported). */
static int check_regex(struct ism_vctx *v, const struct ism_node *n, bool anchored)
{
	pcre2_compile_context *cctx;
	const char *why;
	size_t off;
	pcre2_code *re;
	uint32_t groups = 0;
	int err;

	if (ism_re2_check(n->str, n->len, &off, &why) < 0) {
		ism_v_err(v, n, "regular expression refused at offset %zu: %s", off, why);
		return -1;
	}
	cctx = pcre2_compile_context_create(NULL);
	if (cctx == NULL) {
		v->nomem = 1;
		return -1;
	}
	re = ism_re2_compile(n->str, n->len, anchored, cctx, &err, &off);
	pcre2_compile_context_free(cctx);
	if (re == NULL) {
		PCRE2_UCHAR msg[256];

		if (err == PCRE2_ERROR_NOMEMORY) {
			v->nomem = 1;
			return -1;
		}
		pcre2_get_error_message(err, msg, sizeof(msg));
		ism_v_err(v, n, "invalid regular expression at offset %zu: %s", (size_t)off,
			  (const char *)msg);
		return -1;
	}
	pcre2_pattern_info(re, PCRE2_INFO_CAPTURECOUNT, &groups);
	pcre2_code_free(re);
	return (int)groups;
}

/* Istio StringMatch: exactly one of exact, prefix, regex. `{}` means "present"
 * where allow_present (headers, query parameters). */
static void parse_sm(struct ism_vctx *v, const struct ism_node *n, bool allow_present,
		     struct ism_cm_sm *m)
{
	static const char *const keys[] = {"exact", "prefix", "regex", NULL};

	if (!ism_v_expect(v, n, ISM_NODE_MAP))
		return;
	if (!ism_v_keys(v, n, keys, NULL))
		return;
	if (n->n == 0) {
		if (allow_present)
			m->kind = ISM_SM_PRESENT;
		else
			ism_v_err(v, n, "must set one of exact, prefix, regex");
		return;
	}
	if (n->n > 1) {
		size_t old = ism_v_push(v, ".%s", n->pairs[1].key->str);

		ism_v_err(v, n->pairs[1].key, "only one of exact, prefix, regex may be set");
		ism_v_pop(v, old);
		return;
	}
	{
		const struct ism_node *k = n->pairs[0].key, *val = n->pairs[0].value;
		size_t old = ism_v_push(v, ".%s", k->str);

		if (ism_v_expect(v, val, ISM_NODE_SCALAR)) {
			m->s = val->str;
			if (strcmp(k->str, "exact") == 0) {
				m->kind = ISM_SM_EXACT;
			} else if (strcmp(k->str, "prefix") == 0) {
				m->kind = ISM_SM_PREFIX;
			} else {
				m->kind = ISM_SM_REGEX;
				check_regex(v, val, true);
			}
		}
		ism_v_pop(v, old);
	}
}

void ism_model_sm(struct ism_vctx *v, const struct ism_node *n, bool allow_present,
		  struct ism_cm_sm *m)
{
	parse_sm(v, n, allow_present, m);
}

static size_t parse_kv(struct ism_vctx *v, const struct ism_node *match, const char *key,
		       bool lower, struct ism_cm_kv **out)
{
	const struct ism_node *n = ism_v_node(v, match, key, false, ISM_NODE_MAP);
	size_t count = 0, old;

	*out = NULL;
	if (n == NULL)
		return 0;
	*out = ism_v_alloc(v, n->n, sizeof(**out));
	if (*out == NULL)
		return 0;
	old = ism_v_push(v, ".%s", key);
	for (size_t i = 0; i < n->n; i++) {
		const struct ism_node *k = n->pairs[i].key;
		size_t o2 = ism_v_push(v, ".%s", k->str);
		struct ism_cm_kv *kv = &(*out)[count++];

		if (k->len == 0)
			ism_v_err(v, k, "name must not be empty");
		kv->name = lower ? lower_dup(v, k->str) : k->str;
		parse_sm(v, n->pairs[i].value, true, &kv->m);
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
	return count;
}

/* What a match of any route kind may say of where the request or connection
 * comes from (gateways, sourceLabels, sourceNamespace), and port. */
static void parse_match_source(struct ism_vctx *v, const struct ism_node *n, const char *ns,
			       struct ism_cm_match *m)
{
	const char **gws;
	size_t ng;

	labels_field(v, n, "sourceLabels", &m->source_labels, &m->n_source_labels);
	ism_v_str(v, n, "sourceNamespace", false, &m->source_ns);
	gws = ism_v_strlist(v, n, "gateways", false, &ng, &m->gateways_at);
	m->gateways = ism_v_alloc(v, ng, sizeof(*m->gateways));
	for (size_t i = 0; gws != NULL && m->gateways != NULL && i < ng; i++)
		m->gateways[m->n_gateways++] =
		    strcmp(gws[i], "mesh") == 0 ? "mesh" : gateway_ref(v, gws[i], ns);
	ism_v_u32(v, n, "port", false, 1, 65535, &m->port);
}

static void parse_match(struct ism_vctx *v, const struct ism_node *n, const char *ns,
			struct ism_cm_match *m)
{
	static const char *const keys[] = {
	    "name",	"uri",	       "scheme",	 "method",	    "authority",
	    "headers",	"queryParams", "withoutHeaders", "ignoreUriCase",   "port",
	    "gateways", "statPrefix",  "sourceLabels",	 "sourceNamespace", NULL};
	static const char *const sms[] = {"uri", "scheme", "method", "authority"};
	struct ism_cm_sm *dst[] = {&m->uri, &m->scheme, &m->method, &m->authority};
	const char *name;

	if (!ism_v_expect(v, n, ISM_NODE_MAP))
		return;
	ism_v_keys(v, n, keys, NULL);
	ism_v_str(v, n, "name", false, &name);
	parse_match_source(v, n, ns, m);
	if (ism_v_str(v, n, "statPrefix", false, &name) > 0) {
		size_t old = ism_v_push(v, ".statPrefix");

		ism_v_warn(v, ism_node_get(n, "statPrefix", NULL),
			   "accepted, has no effect: every route is counted under its name "
			   "(isthmus_route_responses_total)");
		ism_v_pop(v, old);
	}
	for (size_t i = 0; i < 4; i++) {
		const struct ism_node *s = ism_node_get(n, sms[i], NULL);
		size_t old;

		if (s == NULL)
			continue;
		old = ism_v_push(v, ".%s", sms[i]);
		parse_sm(v, s, false, dst[i]);
		ism_v_pop(v, old);
	}
	m->n_headers = parse_kv(v, n, "headers", true, &m->headers);
	m->n_without = parse_kv(v, n, "withoutHeaders", true, &m->without);
	m->n_query = parse_kv(v, n, "queryParams", false, &m->query);
	ism_v_bool(v, n, "ignoreUriCase", &m->ignore_uri_case);
}

static void parse_destination(struct ism_vctx *v, const struct ism_node *n, const char *ns,
			      struct ism_cm_dest *d)
{
	static const char *const keys[] = {"host", "subset", "port", NULL};
	static const char *const pkeys[] = {"number", NULL};
	const struct ism_node *p;
	const char *host;

	if (!ism_v_expect(v, n, ISM_NODE_MAP))
		return;
	ism_v_keys(v, n, keys, NULL);
	if (ism_v_str(v, n, "host", true, &host) > 0) {
		d->host_at = ism_node_get(n, "host", NULL);
		if (!host_syntax_ok(host) || host[0] == '*') {
			size_t old = ism_v_push(v, ".host");

			ism_v_err(v, d->host_at, "invalid host name \"%s\"", host);
			ism_v_pop(v, old);
		}
		d->host = ism_model_host(v, host, ns);
	}
	if (ism_v_str(v, n, "subset", false, &d->subset) > 0)
		d->subset_at = ism_node_get(n, "subset", NULL);
	p = ism_v_node(v, n, "port", false, ISM_NODE_MAP);
	if (p != NULL) {
		size_t old = ism_v_push(v, ".port");

		d->port_at = p;
		ism_v_keys(v, p, pkeys, NULL);
		ism_v_u32(v, p, "number", true, 1, 65535, &d->port);
		ism_v_pop(v, old);
	}
}

void ism_model_destination(struct ism_vctx *v, const struct ism_node *n, const char *ns,
			   struct ism_cm_dest *d)
{
	parse_destination(v, n, ns, d);
}

/* Envoy's retry_on vocabulary (Istio retries.retryOn). */
static const struct {
	const char *name;
	uint32_t bit;
} retry_names[] = {
    {"5xx", ISM_RETRY_5XX},
    {"gateway-error", ISM_RETRY_GATEWAY_ERROR},
    {"reset", ISM_RETRY_RESET},
    {"reset-before-request", ISM_RETRY_RESET_BEFORE_REQUEST},
    {"connect-failure", ISM_RETRY_CONNECT_FAILURE},
    {"envoy-ratelimited", ISM_RETRY_ENVOY_RATELIMITED},
    {"retriable-4xx", ISM_RETRY_RETRIABLE_4XX},
    {"refused-stream", ISM_RETRY_REFUSED_STREAM},
    {"retriable-status-codes", ISM_RETRY_RETRIABLE_STATUS_CODES},
    {"cancelled", ISM_RETRY_GRPC_CANCELLED},
    {"deadline-exceeded", ISM_RETRY_GRPC_DEADLINE_EXCEEDED},
    {"internal", ISM_RETRY_GRPC_INTERNAL},
    {"resource-exhausted", ISM_RETRY_GRPC_RESOURCE_EXHAUSTED},
    {"unavailable", ISM_RETRY_GRPC_UNAVAILABLE},
};

/* One retryOn entry (spaces around it trimmed): a condition name or a status code. */
static void retry_entry(struct ism_vctx *v, const struct ism_node *at, const char *s, size_t len,
			struct ism_retry *r, uint16_t *codes)
{
	char buf[64];
	uint64_t code;

	if (len == 0) {
		ism_v_err(v, at, "empty entry in the list");
		return;
	}
	if (len >= sizeof(buf)) {
		ism_v_err(v, at, "unknown retry condition \"%.*s\"", (int)len, s);
		return;
	}
	memcpy(buf, s, len);
	buf[len] = '\0';
	if (strspn(buf, "0123456789") == len) {
		if (ism_parse_u64(buf, &code) < 0 || code < 100 || code > 599) {
			ism_v_err(v, at, "\"%s\" is not an HTTP status code (100..599)", buf);
			return;
		}
		codes[r->n_codes++] = (uint16_t)code;
		r->retry_on |= ISM_RETRY_RETRIABLE_STATUS_CODES;
		return;
	}
	for (size_t i = 0; i < sizeof(retry_names) / sizeof(retry_names[0]); i++) {
		if (strcmp(retry_names[i].name, buf) == 0) {
			r->retry_on |= retry_names[i].bit;
			return;
		}
	}
	/* Envoy's conditions that never hold at an Istio gateway: accepted, as
	 * Envoy accepts them, with a warning. */
	if (strcmp(buf, "retriable-headers") == 0)
		ism_v_warn(v, at,
			   "retry condition \"retriable-headers\" has no effect: Istio sets no "
			   "retriable headers, and a client's x-envoy-retriable-header-names is "
			   "removed at the edge");
	else if (strcmp(buf, "http3-post-connect-failure") == 0)
		ism_v_warn(v, at,
			   "retry condition \"http3-post-connect-failure\" has no effect: no "
			   "upstream speaks HTTP/3");
	else
		ism_v_err(v, at, "unknown retry condition \"%s\"", buf);
}

static void parse_retry_on(struct ism_vctx *v, const struct ism_node *rt, struct ism_retry *r)
{
	const struct ism_node *n = ism_node_get(rt, "retryOn", NULL);
	const char *s = NULL, *p;
	uint16_t *codes;
	size_t old, max = 1;

	if (ism_v_str(v, rt, "retryOn", false, &s) <= 0)
		return;
	for (p = s; *p; p++)
		max += *p == ',';
	codes = ism_v_alloc(v, max, sizeof(*codes));
	if (codes == NULL)
		return;
	r->retry_on = 0;
	r->n_codes = 0;
	r->codes = codes;
	old = ism_v_push(v, ".retryOn");
	for (p = s;;) {
		size_t len = strcspn(p, ",");
		const char *b = p, *e = p + len;

		while (b < e && (*b == ' ' || *b == '\t'))
			b++;
		while (e > b && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		retry_entry(v, n, b, (size_t)(e - b), r, codes);
		if (p[len] == '\0')
			break;
		p += len + 1;
	}
	ism_v_pop(v, old);
}

/* Istio's default policy, for routes without `retries`. */
static const uint16_t default_retry_codes[] = {503};

static void default_retry(struct ism_retry *r)
{
	*r = (struct ism_retry){.attempts = 2,
				.retry_on = ISM_RETRY_CONNECT_FAILURE | ISM_RETRY_REFUSED_STREAM |
					    ISM_RETRY_GRPC_UNAVAILABLE | ISM_RETRY_GRPC_CANCELLED |
					    ISM_RETRY_RETRIABLE_STATUS_CODES,
				.n_codes = 1,
				.codes = default_retry_codes,
				.ignore_previous_hosts = 1,
				.backoff_base_ms = 25};
}

static void parse_retries(struct ism_vctx *v, const struct ism_node *route, struct ism_cm_route *r)
{
	static const char *const keys[] = {"attempts",
					   "perTryTimeout",
					   "retryOn",
					   "retryRemoteLocalities",
					   "retryIgnorePreviousHosts",
					   "backoff",
					   NULL};
	const struct ism_node *n = ism_v_node(v, route, "retries", false, ISM_NODE_MAP);
	struct ism_retry *rt = &r->retry;
	bool b;
	size_t old;

	default_retry(rt);
	if (n == NULL)
		return;
	r->has_retry = true;
	/* Istio starts from its default policy and overrides what is set; attempts
	 * 0 (also when absent) disables retries. */
	rt->attempts = 0;
	old = ism_v_push(v, ".retries");
	ism_v_keys(v, n, keys, NULL);
	if (ism_v_u32(v, n, "attempts", false, 0, 10000, &rt->attempts) == 0)
		ism_v_warn(v, n, "attempts is not set: no retries (Istio's default is 0 here)");
	ism_v_dur(v, n, "perTryTimeout", 1, &rt->per_try_timeout_ms);
	/* Envoy's base interval: retry N waits below (2^N - 1) x backoff, at most
	 * ten times it. */
	ism_v_dur(v, n, "backoff", 1, &rt->backoff_base_ms);
	parse_retry_on(v, n, rt);
	if (ism_v_bool(v, n, "retryIgnorePreviousHosts", &b) > 0)
		rt->ignore_previous_hosts = b;
	if (ism_v_bool(v, n, "retryRemoteLocalities", &b) > 0)
		rt->remote_localities = b;
	if (rt->attempts == 0) {
		rt->retry_on = 0;
		rt->n_codes = 0;
		rt->codes = NULL;
	}
	ism_v_pop(v, old);
}

/* What may go into a request line as a path: no space, control character or
 * '#' (a fragment is the client's own), starting with "/". */
static bool path_ok(const char *s)
{
	if (s[0] != '/')
		return false;
	for (; *s; s++)
		if ((unsigned char)*s <= ' ' || *s == 0x7f || *s == '#')
			return false;
	return true;
}

/* An authority as a Host header carries it: a host name or an IP address
 * (IPv6 in brackets), and an optional port (RFC 3986 reg-name, IP-literal). */
static bool authority_ok(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && strchr("-._~%!$&'()*+,;=:[]", *s) == NULL)
			return false;
	return true;
}

/* A value checked by ok, reported with what it must be. */
static void check_value(struct ism_vctx *v, const struct ism_node *map, const char *key,
			bool (*ok)(const char *), const char *what)
{
	const struct ism_node *n = ism_node_get(map, key, NULL);
	char msg[160];

	if (n == NULL || n->kind != ISM_NODE_SCALAR || ok(n->str))
		return;
	snprintf(msg, sizeof(msg), "must be %s", what);
	value_err(v, map, key, msg);
}

/* RE2's rewrite string: \0..\9 name a group of the pattern (which has
 * groups of them), \\ is a backslash, any other backslash is an error. */
static void check_substitution(struct ism_vctx *v, const struct ism_node *n, int groups)
{
	for (size_t i = 0; i < n->len; i++) {
		char c = i + 1 < n->len ? n->str[i + 1] : '\0';

		if ((unsigned char)n->str[i] < ' ' || n->str[i] == 0x7f || n->str[i] == ' ' ||
		    n->str[i] == '#') {
			ism_v_err(v, n,
				  "must not hold a space, a control character or '#' (offset %zu)",
				  i);
			return;
		}
		if (n->str[i] != '\\')
			continue;
		if (c == '\\') {
			i++;
		} else if (c >= '0' && c <= '9') {
			if (groups >= 0 && c - '0' > groups) {
				ism_v_err(
				    v, n,
				    "\\%c at offset %zu names a group the pattern does not have "
				    "(it has %d)",
				    c, i, groups);
				return;
			}
			i++;
		} else {
			ism_v_err(
			    v, n,
			    "invalid escape at offset %zu: a backslash is followed by a digit "
			    "(a group) or another backslash",
			    i);
			return;
		}
	}
}

static void parse_regex_rewrite(struct ism_vctx *v, const struct ism_node *rw,
				struct ism_cm_rewrite *r)
{
	static const char *const keys[] = {"match", "rewrite", NULL};
	const struct ism_node *n = ism_v_node(v, rw, "uriRegexRewrite", false, ISM_NODE_MAP);
	const struct ism_node *mn, *sn;
	int groups = -1;
	size_t old, o2;

	if (n == NULL)
		return;
	old = ism_v_push(v, ".uriRegexRewrite");
	ism_v_keys(v, n, keys, NULL);
	/* Istio: both are required and not empty. */
	if (ism_v_str(v, n, "match", true, &r->re) > 0) {
		mn = ism_node_get(n, "match", NULL);
		o2 = ism_v_push(v, ".match");
		groups = check_regex(v, mn, false);
		ism_v_pop(v, o2);
	}
	if (ism_v_str(v, n, "rewrite", true, &r->sub) > 0) {
		sn = ism_node_get(n, "rewrite", NULL);
		o2 = ism_v_push(v, ".rewrite");
		check_substitution(v, sn, groups);
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

/* The mapping map.key of a route action, NULL when absent; else its path is
 * pushed (*old to pop), its fields checked against keys, and an empty one
 * reported: it must set one of what. */
static const struct ism_node *action_map(struct ism_vctx *v, const struct ism_node *map,
					 const char *key, const char *const *keys, const char *what,
					 size_t *old)
{
	const struct ism_node *n = ism_v_node(v, map, key, false, ISM_NODE_MAP);

	if (n == NULL)
		return NULL;
	*old = ism_v_push(v, ".%s", key);
	if (ism_v_keys(v, n, keys, NULL) && n->n == 0)
		ism_v_err(v, n, "must set %s", what);
	return n;
}

/* HTTPRewrite: uri or uriRegexRewrite, and authority. */
static void parse_rewrite(struct ism_vctx *v, const struct ism_node *route,
			  struct ism_cm_rewrite *r)
{
	static const char *const keys[] = {"uri", "authority", "uriRegexRewrite", NULL};
	static const char *const paths[] = {"uri", "uriRegexRewrite", NULL};
	size_t old;
	const struct ism_node *n =
	    action_map(v, route, "rewrite", keys, "uri, uriRegexRewrite or authority", &old);

	if (n == NULL)
		return;
	one_of(v, n, paths, "uri, uriRegexRewrite");
	if (ism_v_str(v, n, "uri", false, &r->uri) > 0)
		check_value(
		    v, n, "uri", path_ok,
		    "a path: starting with \"/\", without spaces, control characters or '#'");
	parse_regex_rewrite(v, n, r);
	if (ism_v_str(v, n, "authority", false, &r->authority) > 0)
		check_value(v, n, "authority", authority_ok,
			    "a host name or address, with an optional port");
	ism_v_pop(v, old);
}

/* --- Headers (of a route or of a destination) --- */

/* What a route may not set or remove: the fields of one hop and of the
 * message's framing, which isthmus writes itself (a route could otherwise
 * break the framing the next hop reads). */
static const char *const framing_fields[] = {
    "connection",	 "keep-alive",	   "proxy-connection",
    "transfer-encoding", "content-length", "te",
    "trailer",		 "upgrade",	   NULL};

static bool is_authority_field(const char *s)
{
	return strcasecmp(s, "host") == 0 || strcasecmp(s, ":authority") == 0;
}

/* The name of a header operation, at k (its path pushed). request_set: a
 * request set or add, where Host and :authority write the authority. 1: an
 * ordinary field, 2: the authority, 0: refused (reported). */
static int hdr_name(struct ism_vctx *v, const struct ism_node *k, bool request_set)
{
	const char *s = k->str;

	if (is_authority_field(s)) {
		if (request_set)
			return 2;
		ism_v_err(v, k,
			  "invalid header \"%s\": cannot set or remove Host (rewrite.authority "
			  "or request.set host rewrites it)",
			  s);
		return 0;
	}
	if (s[0] == ':') {
		ism_v_err(v, k, "invalid header \"%s\": header cannot have \":\" prefix", s);
		return 0;
	}
	if (*s == '\0') {
		ism_v_err(v, k, "header name cannot be empty");
		return 0;
	}
	if (!ism_is_token(s)) {
		ism_v_err(v, k, "invalid header \"%s\": not a field name (RFC 9110 token)", s);
		return 0;
	}
	for (const char *const *f = framing_fields; *f; f++) {
		if (strcasecmp(*f, s) == 0) {
			ism_v_err(
			    v, k,
			    "invalid header \"%s\": a hop-by-hop or framing field, which isthmus "
			    "writes itself; a route may not set or remove it",
			    s);
			return 0;
		}
	}
	return 1;
}

/* A header value at n: Envoy's format string, plain text ("%%" being a '%')
 * unless it holds command operators (*fmt set: then as written, checked by
 * the parser the compiler uses). NULL when refused (reported). */
static const char *hdr_value(struct ism_vctx *v, const struct ism_node *n, bool *fmt)
{
	char *out, *o, err[256];

	*fmt = false;
	if (!ism_v_expect(v, n, ISM_NODE_SCALAR))
		return NULL;
	for (size_t i = 0; i < n->len; i++) {
		unsigned char c = (unsigned char)n->str[i];

		if ((c < ' ' && c != '\t') || c == 0x7f) {
			ism_v_err(v, n,
				  "header value must not hold control characters (offset %zu)", i);
			return NULL;
		}
	}
	if (ism_hval_dynamic(n->str, n->len)) {
		if (ism_hval_parse(n->str, n->len, NULL, 0, err, sizeof(err)) < 0) {
			ism_v_err(v, n, "%s (write %%%% for a literal %%)", err);
			return NULL;
		}
		*fmt = true;
		return n->str;
	}
	o = out = ism_v_alloc(v, n->len + 1, 1);
	for (size_t i = 0; out != NULL && i < n->len; i++) {
		*o++ = n->str[i];
		i += n->str[i] == '%';
	}
	if (out != NULL && out[0] == '\0')
		ism_v_warn(v, n, "an empty value is not sent (Envoy drops it)");
	return out;
}

/* A second authority (rewrite.authority, request.set or request.add host) is
 * an error, as Istio's validation makes it. */
static void hdr_authority(struct ism_vctx *v, const struct ism_node *at, const char *value,
			  const char **authority)
{
	if (*authority != NULL) {
		ism_v_err(
		    v, at,
		    "authority header cannot be set multiple times: have \"%s\", attempting to "
		    "set \"%s\"",
		    *authority, value);
		return;
	}
	if (!authority_ok(value))
		ism_v_err(v, at, "must be a host name or address, with an optional port");
	*authority = value;
}

static int kvs_cmp(const void *pa, const void *pb)
{
	return strcmp(((const struct ism_cm_kvs *)pa)->name, ((const struct ism_cm_kvs *)pb)->name);
}

/* set or add (key) of one direction: name -> value, sorted by the name as
 * written, then lowercased. request: host and :authority write *authority. */
static void parse_hdr_map(struct ism_vctx *v, const struct ism_node *ops, const char *key,
			  bool request, struct ism_cm_kvs **out, size_t *n, const char **authority)
{
	const struct ism_node *m = ism_v_node(v, ops, key, false, ISM_NODE_MAP);
	size_t old;

	if (m == NULL)
		return;
	*out = ism_v_alloc(v, m->n, sizeof(**out));
	if (*out == NULL)
		return;
	old = ism_v_push(v, ".%s", key);
	for (size_t i = 0; i < m->n; i++) {
		const struct ism_node *k = m->pairs[i].key;
		size_t o2 = ism_v_push(v, ".%s", k->str);
		int kind = hdr_name(v, k, request);
		bool fmt = false;
		const char *val = kind ? hdr_value(v, m->pairs[i].value, &fmt) : NULL;

		if (kind == 2 && val != NULL && fmt)
			ism_v_err(v, m->pairs[i].value,
				  "the authority (a rewrite of the host) cannot hold command "
				  "operators");
		else if (kind == 2 && val != NULL)
			hdr_authority(v, m->pairs[i].value, val, authority);
		else if (kind == 1 && val != NULL)
			(*out)[(*n)++] =
			    (struct ism_cm_kvs){.name = k->str, .value = val, .fmt = fmt};
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
	qsort(*out, *n, sizeof(**out), kvs_cmp);
	for (size_t i = 0; i < *n; i++)
		(*out)[i].name = lower_dup(v, (*out)[i].name);
}

/* request or response (key): HeaderOperations. */
static void parse_hdr_ops(struct ism_vctx *v, const struct ism_node *h, const char *key,
			  struct ism_cm_hdrops *o, const char **authority)
{
	static const char *const keys[] = {"set", "add", "remove", NULL};
	const struct ism_node *n = ism_v_node(v, h, key, false, ISM_NODE_MAP);
	bool request = strcmp(key, "request") == 0;
	const struct ism_node *l;
	const char **names;
	size_t old;

	if (n == NULL)
		return;
	old = ism_v_push(v, ".%s", key);
	ism_v_keys(v, n, keys, NULL);
	/* Istio's translation: set before add, whatever the order written. */
	parse_hdr_map(v, n, "set", request, &o->set, &o->n_set, authority);
	parse_hdr_map(v, n, "add", request, &o->add, &o->n_add, authority);
	names = ism_v_strlist(v, n, "remove", false, &o->n_remove, &l);
	o->remove = names != NULL ? ism_v_alloc(v, o->n_remove, sizeof(*o->remove)) : NULL;
	o->n_remove = 0;
	for (size_t i = 0; names != NULL && o->remove != NULL && i < l->n; i++) {
		const struct ism_node *it = l->items[i];
		size_t o2;

		if (it->kind != ISM_NODE_SCALAR || it->len == 0)
			continue; /* reported by ism_v_strlist */
		o2 = ism_v_push(v, ".remove[%zu]", i);
		if (hdr_name(v, it, false) == 1)
			o->remove[o->n_remove++] = lower_dup(v, it->str);
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

/* headers of a route or a destination (map); authority: what the route's
 * rewrite.authority set already (NULL: nothing). */
static void parse_headers(struct ism_vctx *v, const struct ism_node *map, struct ism_cm_headers *h,
			  const char *authority)
{
	static const char *const keys[] = {"request", "response", NULL};
	const struct ism_node *n = ism_v_node(v, map, "headers", false, ISM_NODE_MAP);
	size_t old;

	if (n == NULL)
		return;
	old = ism_v_push(v, ".headers");
	ism_v_keys(v, n, keys, NULL);
	h->authority = authority;
	parse_hdr_ops(v, n, "request", &h->req, &h->authority);
	parse_hdr_ops(v, n, "response", &h->resp, &h->authority);
	if (h->authority == authority)
		h->authority = NULL; /* none of its own */
	ism_v_pop(v, old);
}

/* --- redirect --- */

/* redirect.prefixRewrite replaces the prefix the route's match matched: Istio
 * refuses it when a match has a uri that is not a prefix. */
static void check_prefix_matches(struct ism_vctx *v, const struct ism_node *rd,
				 const struct ism_cm_route *r)
{
	char msg[128];

	for (size_t i = 0; i < r->n_match; i++) {
		uint8_t k = (uint8_t)r->match[i].uri.kind;

		if (k == ISM_SM_ANY || k == ISM_SM_PREFIX)
			continue;
		snprintf(msg, sizeof(msg),
			 "needs every uri match to be a prefix match (match[%zu].uri is not)", i);
		key_err(v, rd, "prefixRewrite", msg);
		return;
	}
}

/* redirectCode: a 3xx (Istio's validation), and one of the five Envoy sends
 * (Istio drops the route with another). */
static void parse_redirect_code(struct ism_vctx *v, const struct ism_node *rd,
				struct ism_cm_redirect *r)
{
	static const uint32_t codes[] = {301, 302, 303, 307, 308};

	r->code = 301;
	if (ism_v_u32(v, rd, "redirectCode", false, 300, 399, &r->code) <= 0)
		return;
	for (size_t i = 0; i < sizeof(codes) / sizeof(codes[0]); i++)
		if (codes[i] == r->code)
			return;
	value_err(v, rd, "redirectCode",
		  "must be 301, 302, 303, 307 or 308: the codes Envoy redirects with (Istio drops "
		  "a route with another)");
}

/* HTTPRedirect of route r (its matches parsed). */
static void parse_redirect(struct ism_vctx *v, const struct ism_node *route, struct ism_cm_route *r)
{
	static const char *const keys[] = {"uri",    "authority",    "port",	      "derivePort",
					   "scheme", "redirectCode", "prefixRewrite", NULL};
	static const char *const paths[] = {"uri", "prefixRewrite", NULL};
	static const char *const ports[] = {"port", "derivePort", NULL};
	static const char *const schemes[] = {"http", "https", NULL};
	static const char *const derive[] = {"FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT", NULL};
	static const char *const path_what =
	    "a path: starting with \"/\", without spaces, control characters or '#'";
	struct ism_cm_redirect *rd = &r->redirect;
	const char *s = NULL;
	size_t old;
	const struct ism_node *n =
	    action_map(v, route, "redirect", keys,
		       "uri, prefixRewrite, authority, scheme, port or derivePort", &old);

	if (n == NULL)
		return;
	rd->set = true;
	one_of(v, n, paths, "uri, prefixRewrite");
	one_of(v, n, ports, "port, derivePort");
	if (ism_v_str(v, n, "uri", false, &rd->uri) > 0)
		check_value(v, n, "uri", path_ok, path_what);
	if (ism_v_str(v, n, "prefixRewrite", false, &rd->prefix_rewrite) > 0) {
		check_value(v, n, "prefixRewrite", path_ok, path_what);
		check_prefix_matches(v, n, r);
	}
	if (ism_v_str(v, n, "authority", false, &rd->authority) > 0)
		check_value(v, n, "authority", authority_ok,
			    "a host name or address, with an optional port");
	ism_v_enum(v, n, "scheme", schemes, NULL, &rd->scheme);
	ism_v_u32(v, n, "port", false, 1, 65535, &rd->port);
	if (ism_v_enum(v, n, "derivePort", derive, NULL, &s) > 0)
		rd->port_from_request = strcmp(s, "FROM_REQUEST_PORT") == 0;
	parse_redirect_code(v, n, rd);
	ism_v_pop(v, old);
}

/* --- directResponse --- */

/* Istio's limits on a direct response's body (pkg/config/validation). */
#define DIRECT_BODY_MAX	 (1u << 20)
#define DIRECT_BODY_WARN (100u << 10)

/* body: string (as written) or bytes (base64). */
static void parse_direct_body(struct ism_vctx *v, const struct ism_node *dr,
			      struct ism_cm_direct *d)
{
	static const char *const keys[] = {"string", "bytes", NULL};
	const struct ism_node *s, *b;
	size_t old;
	const struct ism_node *n = action_map(v, dr, "body", keys, "string or bytes", &old);

	if (n == NULL)
		return;
	one_of(v, n, keys, "string, bytes");
	s = ism_v_node(v, n, "string", false, ISM_NODE_SCALAR);
	b = ism_v_node(v, n, "bytes", false, ISM_NODE_SCALAR);
	if (s != NULL) {
		d->body = s->str;
		d->body_len = s->len;
	} else if (b != NULL) {
		unsigned char *out = ism_v_alloc(v, b->len / 4 * 3 + 3, 1);
		ssize_t len = out != NULL ? ism_b64_decode(b->str, b->len, out) : 0;

		if (len < 0) {
			value_err(v, n, "bytes", "must be base64 (RFC 4648, padding optional)");
			len = 0;
		}
		d->body = (const char *)out;
		d->body_len = (size_t)len;
	}
	if (d->body_len > DIRECT_BODY_MAX)
		ism_v_err(v, n, "must be at most 1 MiB (it has %zu bytes), as Istio validates it",
			  d->body_len);
	else if (d->body_len > DIRECT_BODY_WARN)
		ism_v_warn(v, n, "a body over 100 KiB (%zu bytes): Istio warns the same",
			   d->body_len);
	ism_v_pop(v, old);
}

static void parse_direct(struct ism_vctx *v, const struct ism_node *route, struct ism_cm_direct *d)
{
	static const char *const keys[] = {"status", "body", NULL};
	const struct ism_node *n = ism_v_node(v, route, "directResponse", false, ISM_NODE_MAP);
	size_t old;

	if (n == NULL)
		return;
	d->set = true;
	old = ism_v_push(v, ".directResponse");
	ism_v_keys(v, n, keys, NULL);
	ism_v_u32(v, n, "status", true, 200, 599, &d->status);
	parse_direct_body(v, n, d);
	ism_v_pop(v, old);
}

/* Istio's rules between a route's ways of answering (validateHTTPRouteConflict):
 * a route that delegates (a root route) may not redirect (nor have route:
 * parse_route says it); another has one of route, redirect and
 * directResponse, and no rewrite with an answer made here. */
static void route_conflicts(struct ism_vctx *v, const struct ism_node *n)
{
	static const char *const ways[] = {"route", "redirect", "directResponse", NULL};

	if (ism_node_get(n, "delegate", NULL) != NULL) {
		if (ism_node_get(n, "redirect", NULL) != NULL)
			key_err(v, n, "redirect",
				"a route that delegates must not redirect (Istio: root HTTP route "
				"must not specify redirect)");
		return;
	}
	one_of(v, n, ways, "route, redirect, directResponse");
	/* Istio refuses a rewrite or a fault beside a redirect or a directResponse. */
	for (const char *const *k = (const char *const[]){"rewrite", "fault", NULL}; *k; k++)
		if (ism_node_get(n, *k, NULL) != NULL &&
		    (ism_node_get(n, "redirect", NULL) != NULL ||
		     ism_node_get(n, "directResponse", NULL) != NULL))
			key_err(v, n, *k,
				"cannot be combined with redirect or directResponse (nothing is "
				"forwarded)");
}

/* Whether HTTP route n answers without destinations: it redirects, answers
 * directly or delegates. */
static bool answers_itself(const struct ism_node *n)
{
	return ism_node_get(n, "redirect", NULL) != NULL ||
	       ism_node_get(n, "directResponse", NULL) != NULL ||
	       ism_node_get(n, "delegate", NULL) != NULL;
}

/* delegate: {name, namespace (default: the VirtualService's)}. */
static void parse_delegate(struct ism_vctx *v, const struct ism_node *route, const char *ns,
			   struct ism_cm_route *r)
{
	static const char *const keys[] = {"name", "namespace", NULL};
	const struct ism_node *n = ism_v_node(v, route, "delegate", false, ISM_NODE_MAP);
	const char *name = NULL, *dns = NULL;
	char buf[512];
	size_t old;

	if (n == NULL)
		return;
	r->delegate_at = n;
	old = ism_v_push(v, ".delegate");
	ism_v_keys(v, n, keys, NULL);
	ism_v_str(v, n, "name", true, &name);
	ism_v_str(v, n, "namespace", false, &dns);
	ism_v_pop(v, old);
	if (name == NULL)
		return;
	snprintf(buf, sizeof(buf), "%s/%s", dns ? dns : ns, name);
	r->delegate = lower_dup(v, buf);
}

/* A route's route[] (list l): Istio's HTTPRouteDestination (http: with
 * headers) or RouteDestination. Their count in *n. */
static struct ism_cm_dest *parse_dests(struct ism_vctx *v, const struct ism_node *l, const char *ns,
				       bool http, size_t *n)
{
	static const char *const hkeys[] = {"destination", "weight", "headers", NULL};
	static const char *const keys[] = {"destination", "weight", NULL};
	struct ism_cm_dest *dest;
	size_t old = ism_v_push(v, ".route");

	*n = 0;
	if (l->n == 0)
		ism_v_err(v, l, "must not be empty");
	dest = ism_v_alloc(v, l->n, sizeof(*dest));
	for (size_t i = 0; dest != NULL && i < l->n; i++) {
		const struct ism_node *it = l->items[i];
		struct ism_cm_dest *d = &dest[(*n)++];
		const struct ism_node *dn;
		size_t o2 = ism_v_push(v, "[%zu]", i);

		d->at = it;
		if (!ism_v_expect(v, it, ISM_NODE_MAP))
			goto next;
		ism_v_keys(v, it, http ? hkeys : keys, NULL);
		dn = ism_v_node(v, it, "destination", true, ISM_NODE_MAP);
		if (dn != NULL) {
			size_t o3 = ism_v_push(v, ".destination");

			parse_destination(v, dn, ns, d);
			ism_v_pop(v, o3);
		}
		ism_v_u32(v, it, "weight", false, 0, 100000, &d->weight);
		if (http)
			parse_headers(v, it, &d->headers, NULL);
	next:
		ism_v_pop(v, o2);
	}
	/* Istio: a single destination takes all traffic whatever its weight. */
	if (*n == 1)
		dest[0].weight = 100;
	ism_v_pop(v, old);
	return dest;
}

static void parse_route(struct ism_vctx *v, const struct ism_node *n, const char *ns,
			struct ism_cm_route *r)
{
	static const char *const keys[] = {"name",	    "match",	      "route",
					   "timeout",	    "retries",	      "rewrite",
					   "headers",	    "redirect",	      "directResponse",
					   "delegate",	    "mirror",	      "mirrorPercentage",
					   "mirrorPercent", "mirror_percent", "mirrors",
					   "corsPolicy",    "fault",	      NULL};
	static const char *const unimpl[] = {"appendHeaders",	      "removeResponseHeaders",
					     "appendResponseHeaders", "removeRequestHeaders",
					     "appendRequestHeaders",  NULL};
	const struct ism_node *l;
	size_t old;

	if (!ism_v_expect(v, n, ISM_NODE_MAP))
		return;
	ism_v_keys(v, n, keys, unimpl);
	ism_v_str(v, n, "name", false, &r->name);
	ism_v_dur(v, n, "timeout", 0, &r->timeout_ms);
	parse_retries(v, n, r);
	parse_rewrite(v, n, &r->rewrite);
	parse_headers(v, n, &r->headers, r->rewrite.authority);
	r->fault = ism_model_fault(v, n);
	r->cors = ism_model_cors(v, n);
	l = ism_v_node(v, n, "match", false, ISM_NODE_SEQ);
	if (l != NULL) {
		r->match = ism_v_alloc(v, l->n, sizeof(*r->match));
		old = ism_v_push(v, ".match");
		for (size_t i = 0; r->match != NULL && i < l->n; i++) {
			size_t o2 = ism_v_push(v, "[%zu]", i);

			parse_match(v, l->items[i], ns, &r->match[r->n_match++]);
			ism_v_pop(v, o2);
		}
		ism_v_pop(v, old);
	}
	parse_redirect(v, n, r);
	parse_direct(v, n, &r->direct);
	parse_delegate(v, n, ns, r);
	ism_model_mirrors(v, n, ns, r);
	route_conflicts(v, n);
	/* Istio: a route forwards (route), redirects, answers (directResponse)
	 * or delegates; only the first needs destinations. */
	l = ism_v_node(v, n, "route", !answers_itself(n), ISM_NODE_SEQ);
	if (l != NULL && r->delegate_at != NULL) {
		old = ism_v_push(v, ".route");
		ism_v_err(v, l,
			  "a route that delegates must not have route (Istio: root HTTP "
			  "route must not specify route)");
		ism_v_pop(v, old);
		return;
	}
	if (l == NULL)
		return;
	r->dest = parse_dests(v, l, ns, true, &r->n_dest);
}

/* --- tcp and tls routes --- */

/* One destinationSubnets entry s: "a.b.c.d/n", "a::b/n" or an address alone
 * (all its bits), as Istio's ValidateIPSubnet takes them; the address is kept
 * masked to its prefix. false when s is none of these. */
static bool parse_subnet(const char *s, struct ism_subnet *out)
{
	const char *slash = strchr(s, '/');
	size_t al = slash ? (size_t)(slash - s) : strlen(s);
	unsigned max = 32;
	uint64_t bits;
	char addr[64];

	memset(out, 0, sizeof(*out));
	if (al == 0 || al >= sizeof(addr))
		return false;
	memcpy(addr, s, al);
	addr[al] = '\0';
	out->family = AF_INET;
	if (inet_pton(AF_INET, addr, out->addr) != 1) {
		out->family = AF_INET6;
		max = 128;
		if (inet_pton(AF_INET6, addr, out->addr) != 1)
			return false;
	}
	bits = max;
	if (slash != NULL && (ism_parse_u64(slash + 1, &bits) < 0 || bits > max ||
			      (slash[1] == '0' && slash[2] != '\0')))
		return false;
	out->prefix = (uint8_t)bits;
	for (unsigned i = (unsigned)bits; i < max; i++)
		out->addr[i / 8] &= (uint8_t) ~(0x80u >> (i % 8));
	return true;
}

static void parse_subnets(struct ism_vctx *v, const struct ism_node *n, struct ism_cm_l4match *m)
{
	const struct ism_node *l;
	const char **list = ism_v_strlist(v, n, "destinationSubnets", false, &m->n_subnets, &l);

	m->subnets = list != NULL ? ism_v_alloc(v, m->n_subnets, sizeof(*m->subnets)) : NULL;
	m->n_subnets = 0;
	for (size_t i = 0; m->subnets != NULL && i < l->n; i++) {
		const struct ism_node *it = l->items[i];
		size_t old;

		if (it->kind != ISM_NODE_SCALAR || it->len == 0)
			continue; /* reported by ism_v_strlist */
		if (parse_subnet(it->str, &m->subnets[m->n_subnets])) {
			m->n_subnets++;
			continue;
		}
		old = ism_v_push(v, ".destinationSubnets[%zu]", i);
		ism_v_err(v, it,
			  "\"%s\" is not an IP address or a CIDR block (\"10.0.0.0/8\", "
			  "\"2001:db8::/32\")",
			  it->str);
		ism_v_pop(v, old);
	}
}

/* sniHosts of a tls match: at least one, each a host name, "*" or
 * "*.suffix", within one of the VirtualService's hosts as written (raw,
 * lowercased), as Istio validates them. */
static void parse_sni(struct ism_vctx *v, const struct ism_node *n, const char *const *raw,
		      size_t n_raw, struct ism_cm_l4match *m)
{
	const char **list = ism_v_strlist(v, n, "sniHosts", true, &m->n_sni, &m->sni_at);
	size_t old;

	m->sni = list != NULL ? ism_v_alloc(v, m->n_sni, sizeof(*m->sni)) : NULL;
	m->n_sni = 0;
	for (size_t i = 0; m->sni != NULL && i < m->sni_at->n; i++) {
		const struct ism_node *it = m->sni_at->items[i];
		struct sockaddr_storage ss;
		socklen_t len;
		const char *h;
		bool within = false;

		if (it->kind != ISM_NODE_SCALAR || it->len == 0)
			continue; /* reported by ism_v_strlist */
		old = ism_v_push(v, ".sniHosts[%zu]", i);
		h = lower_dup(v, it->str);
		if (h == NULL || (!host_syntax_ok(h) && !parse_ip(h, &ss, &len))) {
			ism_v_err(v, it, "invalid SNI host \"%s\"", it->str);
			goto next;
		}
		if (parse_ip(h, &ss, &len))
			ism_v_warn(
			    v, it,
			    "using an IP address (\"%s\") goes against the SNI specification, "
			    "and most clients do not send one (as Istio warns)",
			    it->str);
		for (size_t j = 0; j < n_raw && !within; j++)
			within = ism_model_host_covers(raw[j], h);
		if (!within) {
			ism_v_err(v, it,
				  "SNI host \"%s\" is not within any of the VirtualService's hosts "
				  "(Istio: not a compatible subset)",
				  it->str);
			goto next;
		}
		m->sni[m->n_sni++] = h;
	next:
		ism_v_pop(v, old);
	}
}

/* An Istio L4MatchAttributes (tcp) or TLSMatchAttributes (tls). */
static void parse_l4match(struct ism_vctx *v, const struct ism_node *n, const char *ns, bool tls,
			  const char *const *raw, size_t n_raw, struct ism_cm_l4match *m)
{
	static const char *const tcp_keys[] = {
	    "destinationSubnets", "port", "sourceSubnet", "sourceLabels", "gateways",
	    "sourceNamespace",	  NULL};
	static const char *const tls_keys[] = {
	    "sniHosts", "destinationSubnets", "port", "sourceLabels",
	    "gateways", "sourceNamespace",    NULL};
	const char *s;

	if (!ism_v_expect(v, n, ISM_NODE_MAP))
		return;
	ism_v_keys(v, n, tls ? tls_keys : tcp_keys, NULL);
	if (tls)
		parse_sni(v, n, raw, n_raw, m);
	parse_subnets(v, n, m);
	parse_match_source(v, n, ns, &m->m);
	if (!tls && ism_v_str(v, n, "sourceSubnet", false, &s) > 0) {
		size_t old = ism_v_push(v, ".sourceSubnet");

		ism_v_warn(v, ism_node_get(n, "sourceSubnet", NULL),
			   "accepted, has no effect: Istio does not use it either");
		ism_v_pop(v, old);
	}
}

/* spec.tcp or spec.tls (key): Istio's TCPRoute or TLSRoute list, *n of them.
 * raw: the VirtualService's hosts as written (lowercased), which a tls
 * match's sniHosts fall within. */
static struct ism_cm_l4route *parse_l4routes(struct ism_vctx *v, const struct ism_node *spec,
					     const char *key, const struct ism_cm_vs *vs,
					     const char *const *raw, size_t n_raw, size_t *n)
{
	static const char *const keys[] = {"match", "route", NULL};
	const struct ism_node *l = ism_v_node(v, spec, key, false, ISM_NODE_SEQ);
	bool tls = strcmp(key, "tls") == 0;
	struct ism_cm_l4route *rs;
	size_t old;

	*n = 0;
	if (l == NULL)
		return NULL;
	if (vs->delegate_only) {
		char msg[200];

		snprintf(
		    msg, sizeof(msg),
		    "a VirtualService without hosts is a delegate and has no %s routes (Istio: "
		    "delegate virtual service must have no %s route specified)",
		    key, key);
		key_err(v, spec, key, msg);
		return NULL;
	}
	rs = ism_v_alloc(v, l->n, sizeof(*rs));
	old = ism_v_push(v, ".%s", key);
	for (size_t i = 0; rs != NULL && i < l->n; i++) {
		const struct ism_node *it = l->items[i], *ml, *rl;
		struct ism_cm_l4route *r = &rs[(*n)++];
		size_t o2 = ism_v_push(v, "[%zu]", i);

		if (!ism_v_expect(v, it, ISM_NODE_MAP))
			goto next;
		ism_v_keys(v, it, keys, NULL);
		/* Istio: a TLS route must have at least one match condition. */
		ml = ism_v_node(v, it, "match", tls, ISM_NODE_SEQ);
		if (ml != NULL && ml->n == 0 && tls)
			key_err(v, it, "match",
				"must not be empty (a tls route has at least one match)");
		r->match = ml != NULL ? ism_v_alloc(v, ml->n, sizeof(*r->match)) : NULL;
		for (size_t j = 0; r->match != NULL && j < ml->n; j++) {
			size_t o3 = ism_v_push(v, ".match[%zu]", j);

			parse_l4match(v, ml->items[j], vs->r.ns, tls, raw, n_raw,
				      &r->match[r->n_match++]);
			ism_v_pop(v, o3);
		}
		rl = ism_v_node(v, it, "route", true, ISM_NODE_SEQ);
		if (rl != NULL)
			r->dest = parse_dests(v, rl, vs->r.ns, false, &r->n_dest);
	next:
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
	return rs;
}

/* --- VirtualService spec --- */

static void parse_http_routes(struct ism_vctx *v, const struct ism_node *spec, struct ism_cm_vs *vs)
{
	const struct ism_node *l = ism_v_node(v, spec, "http", false, ISM_NODE_SEQ);
	size_t old;

	if (l == NULL)
		return;
	vs->routes = ism_v_alloc(v, l->n, sizeof(*vs->routes));
	old = ism_v_push(v, ".http");
	for (size_t i = 0; vs->routes != NULL && i < l->n; i++) {
		size_t o2 = ism_v_push(v, "[%zu]", i);

		parse_route(v, l->items[i], vs->r.ns, &vs->routes[vs->n_routes]);
		for (size_t j = 0; j < vs->routes[vs->n_routes].n_match; j++)
			vs->match_source |=
			    ism_model_match_source(&vs->routes[vs->n_routes].match[j]);
		vs->n_routes++;
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

/* exportTo entry e of a rule of namespace ns as Istio's validation compares
 * them: "." is the namespace itself. */
static const char *export_key(const char *e, const char *ns)
{
	return strcmp(e, ".") == 0 ? ns : e;
}

/* What kind of resource's exportTo parse_export reads. */
enum export_kind {
	EXPORT_ANY,
	EXPORT_SELECTOR, /* a DestinationRule with a workloadSelector: its own namespace only */
	EXPORT_SE,	 /* a ServiceEntry: "~" (no one) allowed, alone */
};

/* What Istio's validateExportTo says of entry e of a list of n (of a
 * resource of kind); NULL: nothing. */
static const char *export_entry_err(const char *e, size_t n, enum export_kind kind)
{
	if (strcmp(e, "~") == 0 && kind != EXPORT_SE)
		return "exportTo ~ (none) is not allowed for Istio configuration objects";
	if (strcmp(e, "~") == 0)
		return n > 1 ? "cannot export service entry to no one (~) and someone" : NULL;
	if (strcmp(e, ".") != 0 && strcmp(e, "*") != 0 &&
	    !dns_name_ok(e, 63, "abcdefghijklmnopqrstuvwxyz0123456789-"))
		return "only ., *, or a valid DNS 1123 label is allowed as exportTo entry";
	if (strcmp(e, "*") == 0 && n > 1)
		return "cannot have both public (*) and non-public exportTo values for a resource";
	return NULL;
}

/* spec.exportTo of a resource of namespace ns, validated as Istio's
 * validateExportTo: ".", "*" or a namespace name, each once ("." counts as
 * the namespace itself), "*" alone; what kind allows beside. The list as
 * written into *list, its length into *n. */
static void parse_export(struct ism_vctx *v, const struct ism_node *spec, const char *ns,
			 enum export_kind kind, const char ***list, size_t *n)
{
	bool selector = kind == EXPORT_SELECTOR;
	const struct ism_node *l;
	const char **ex, *err;
	size_t old;

	*list = ex = ism_v_strlist(v, spec, "exportTo", false, n, &l);
	if (l == NULL || ex == NULL)
		return;
	old = ism_v_push(v, ".exportTo");
	for (size_t i = 0; i < *n; i++) {
		const char *e = ex[i], *key = export_key(e, ns);
		const struct ism_node *at = l->items[i];
		size_t o2 = ism_v_push(v, "[%zu]", i);

		for (size_t j = 0; j < i; j++)
			if (strcmp(export_key(ex[j], ns), key) == 0)
				ism_v_err(v, at, "duplicate entries in exportTo%s %s",
					  strcmp(ex[j], e) != 0 ? ": . and current namespace"
								: " for entry",
					  key);
		if ((err = export_entry_err(e, *n, kind)) != NULL)
			ism_v_err(v, at, "%s", err);
		if (selector && strcmp(key, ns) != 0)
			ism_v_err(v, at,
				  "a DestinationRule with a workloadSelector cannot be exported "
				  "beyond its own namespace");
		else if (selector && *n > 1)
			ism_v_err(v, at,
				  "a DestinationRule with a workloadSelector cannot have multiple "
				  "entries in exportTo");
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

static void parse_vs(struct ism_vctx *v, const struct ism_node *spec, struct ism_cm_vs *vs)
{
	static const char *const keys[] = {"hosts", "gateways", "http", "tcp",
					   "tls",   "exportTo", NULL};
	const struct ism_node *gl, *l;
	const char **hosts, **gws, **raw;
	size_t nh, ng, old, n_raw = 0;

	ism_v_keys(v, spec, keys, NULL);
	parse_export(v, spec, vs->r.ns, EXPORT_ANY, &vs->export_to, &vs->n_export_to);
	/* Without hosts: a delegate, whose routes serve only through another
	 * VirtualService's delegate (Istio). */
	hosts = ism_v_strlist(v, spec, "hosts", false, &nh, &l);
	vs->delegate_only = nh == 0;
	vs->hosts = ism_v_alloc(v, nh, sizeof(*vs->hosts));
	raw = ism_v_alloc(v, nh, sizeof(*raw));
	for (size_t i = 0; hosts != NULL && vs->hosts != NULL && raw != NULL && i < nh; i++) {
		if (!host_syntax_ok(hosts[i])) {
			old = ism_v_push(v, ".hosts[%zu]", i);
			ism_v_err(v, l->items[i], "invalid host \"%s\"", hosts[i]);
			ism_v_pop(v, old);
			continue;
		}
		raw[n_raw++] = lower_dup(v, hosts[i]);
		vs->hosts[vs->n_hosts++] = ism_model_host(v, hosts[i], vs->r.ns);
	}
	gws = ism_v_strlist(v, spec, "gateways", false, &ng, &gl);
	if (vs->delegate_only && gl != NULL) {
		old = ism_v_push(v, ".gateways");
		ism_v_err(v, gl,
			  "a VirtualService without hosts is a delegate (its routes serve through "
			  "another's http[].delegate) and must have no gateways");
		ism_v_pop(v, old);
		gws = NULL;
	}
	vs->mesh = gl == NULL;
	vs->gateways = ism_v_alloc(v, ng, sizeof(*vs->gateways));
	vs->gateway_at = ism_v_alloc(v, ng, sizeof(*vs->gateway_at));
	for (size_t i = 0; gws != NULL && vs->gateways && vs->gateway_at && i < ng; i++) {
		if (strcmp(gws[i], "mesh") == 0) {
			vs->mesh = true;
			continue;
		}
		vs->gateway_at[vs->n_gateways] = gl->items[i];
		vs->gateways[vs->n_gateways++] = gateway_ref(v, gws[i], vs->r.ns);
	}
	if (ism_node_get(spec, "http", NULL) == NULL && ism_node_get(spec, "tcp", NULL) == NULL &&
	    ism_node_get(spec, "tls", NULL) == NULL) {
		old = ism_v_push(v, ".http");
		ism_v_err(v, spec,
			  "required field missing: a VirtualService has http, tcp or tls routes");
		ism_v_pop(v, old);
	}
	parse_http_routes(v, spec, vs);
	vs->tcp = parse_l4routes(v, spec, "tcp", vs, NULL, 0, &vs->n_tcp);
	vs->tls = parse_l4routes(v, spec, "tls", vs, raw, n_raw, &vs->n_tls);
}

/* --- DestinationRule --- */

static bool is_prime(uint32_t n)
{
	if (n < 2)
		return false;
	for (uint32_t d = 2; (uint64_t)d * d <= n; d++)
		if (n % d == 0)
			return false;
	return true;
}

/* Whether s may stand in a Set-Cookie attribute: no control character, no ';'
 * (which would start another attribute). */
static bool cookie_text_ok(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f || *s == ';')
			return false;
	return true;
}

/* httpCookie.attributes: "; name=value" (or "; name" when the value is
 * empty) each, in order, as Envoy appends them to the cookie it issues. */
static const char *parse_cookie_attrs(struct ism_vctx *v, const struct ism_node *c)
{
	static const char *const keys[] = {"name", "value", NULL};
	const struct ism_node *seq = ism_v_node(v, c, "attributes", false, ISM_NODE_SEQ);
	char *out = ism_v_strdup(v, "");
	size_t old;

	if (seq == NULL || out == NULL)
		return "";
	old = ism_v_push(v, ".attributes");
	for (size_t i = 0; i < seq->n; i++) {
		const struct ism_node *it = seq->items[i];
		const char *name = NULL, *value = "";
		size_t o2 = ism_v_push(v, "[%zu]", i);
		char *next;

		if (!ism_v_expect(v, it, ISM_NODE_MAP))
			goto next;
		ism_v_keys(v, it, keys, NULL);
		if (ism_v_str(v, it, "name", true, &name) > 0 && !ism_is_token(name))
			ism_v_err_key(v, it, "name",
				      "\"%s\" is not a cookie attribute name (RFC 9110 token)",
				      name);
		if (ism_v_str(v, it, "value", false, &value) > 0 && !cookie_text_ok(value))
			ism_v_err_key(
			    v, it, "value",
			    "a cookie attribute value cannot hold ';' or a control character");
		if (name == NULL)
			goto next;
		next = ism_v_alloc(v, strlen(out) + strlen(name) + strlen(value) + 4, 1);
		if (next == NULL)
			goto next;
		sprintf(next, "%s; %s%s%s", out, name, *value ? "=" : "", value);
		out = next;
	next:
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
	return out;
}

static void parse_cookie(struct ism_vctx *v, const struct ism_node *ch, struct ism_cm_hash *h)
{
	static const char *const keys[] = {"name", "path", "ttl", "attributes", NULL};
	const struct ism_node *c = ism_v_node(v, ch, "httpCookie", false, ISM_NODE_MAP);
	size_t old;

	if (c == NULL)
		return;
	old = ism_v_push(v, ".httpCookie");
	ism_v_keys(v, c, keys, NULL);
	h->on = ISM_HASH_COOKIE;
	ism_v_str(v, c, "name", true, &h->name);
	if (h->name != NULL && !ism_is_token(h->name))
		ism_v_err_key(v, c, "name", "\"%s\" is not a cookie name (RFC 9110 token)",
			      h->name);
	if (ism_v_str(v, c, "path", false, &h->cookie_path) > 0 && !cookie_text_ok(h->cookie_path))
		ism_v_err_key(v, c, "path", "a cookie path cannot hold ';' or a control character");
	/* Envoy issues the cookie only when a ttl is given; 0s makes it a
	 * session cookie. */
	h->cookie_issue = ism_v_dur(v, c, "ttl", 0, &h->cookie_ttl_ms) > 0;
	h->cookie_attrs = parse_cookie_attrs(v, c);
	ism_v_pop(v, old);
}

/* ringHash / maglev / minimumRingSize: the table the worker looks keys up in. */
static void parse_hash_algo(struct ism_vctx *v, const struct ism_node *ch, struct ism_cm_hash *h)
{
	static const char *const algos[] = {"ringHash", "maglev", NULL};
	static const char *const rkeys[] = {"minimumRingSize", NULL};
	static const char *const mkeys[] = {"tableSize", NULL};
	const struct ism_node *r, *m;
	uint64_t legacy;
	size_t old;

	one_of(v, ch, algos, "ringHash, maglev");
	r = ism_v_node(v, ch, "ringHash", false, ISM_NODE_MAP);
	m = ism_v_node(v, ch, "maglev", false, ISM_NODE_MAP);
	if (r != NULL) {
		old = ism_v_push(v, ".ringHash");
		ism_v_keys(v, r, rkeys, NULL);
		ism_v_u32(v, r, "minimumRingSize", false, 0, 8388608, &h->ring_size);
		ism_v_pop(v, old);
	} else if (m != NULL) {
		const struct ism_node *ts = ism_node_get(m, "tableSize", NULL);

		h->lb = ISM_LB_MAGLEV;
		old = ism_v_push(v, ".maglev");
		ism_v_keys(v, m, mkeys, NULL);
		if (ism_v_u32(v, m, "tableSize", false, 0, UINT32_MAX, &h->table_size) > 0 &&
		    h->table_size != 0 && (h->table_size >= 5000011 || !is_prime(h->table_size))) {
			size_t o2 = ism_v_push(v, ".tableSize");

			ism_v_err(v, ts, "must be a prime number below 5000011 (e.g. 65537)");
			ism_v_pop(v, o2);
		}
		if (h->table_size == 0)
			h->table_size = 65537;
		ism_v_pop(v, old);
	}
	if (ism_v_u64(v, ch, "minimumRingSize", 0, 8388608, &legacy) > 0) {
		if (r != NULL || m != NULL) {
			old = ism_v_push(v, ".minimumRingSize");
			ism_v_warn(v, ism_node_get(ch, "minimumRingSize", NULL),
				   "deprecated, and ignored: %s is set", r ? "ringHash" : "maglev");
			ism_v_pop(v, old);
		} else {
			h->ring_size = (uint32_t)legacy;
		}
	}
	if (h->ring_size == 0)
		h->ring_size = 1024;
}

static void parse_hash(struct ism_vctx *v, const struct ism_node *lb, struct ism_cm_lb *p)
{
	static const char *const keys[] = {"httpHeaderName",	     "httpCookie", "useSourceIp",
					   "httpQueryParameterName", "ringHash",   "maglev",
					   "minimumRingSize",	     NULL};
	static const char *const hkeys[] = {"httpHeaderName", "httpCookie", "useSourceIp",
					    "httpQueryParameterName", NULL};
	const struct ism_node *ch = ism_v_node(v, lb, "consistentHash", false, ISM_NODE_MAP);
	struct ism_cm_hash *h = &p->hash;
	bool src = false;
	const char *s;
	size_t old;

	if (ch == NULL)
		return;
	p->has_hash = true;
	h->lb = ISM_LB_RING_HASH;
	h->ring_size = 1024;
	h->table_size = 65537;
	h->cookie_path = "";
	h->cookie_attrs = "";
	old = ism_v_push(v, ".consistentHash");
	ism_v_keys(v, ch, keys, NULL);
	one_of(v, ch, hkeys, "httpHeaderName, httpCookie, useSourceIp, httpQueryParameterName");
	if (ism_v_str(v, ch, "httpHeaderName", false, &s) > 0) {
		h->on = ISM_HASH_HEADER;
		h->name = lower_dup(v, s);
	}
	parse_cookie(v, ch, h);
	if (ism_v_bool(v, ch, "useSourceIp", &src) > 0 && src)
		h->on = ISM_HASH_SOURCE_IP;
	if (ism_v_str(v, ch, "httpQueryParameterName", false, &s) > 0) {
		h->on = ISM_HASH_QUERY_PARAM;
		h->name = s;
	}
	if (h->on == ISM_HASH_NONE && ism_node_get(ch, "httpCookie", NULL) == NULL)
		ism_v_err(v, ch,
			  "one of httpHeaderName, httpCookie, useSourceIp: true, "
			  "httpQueryParameterName is required");
	parse_hash_algo(v, ch, h);
	ism_v_pop(v, old);
}

/* A locality pattern of distribute: "region[/zone[/subzone]]" with non-empty
 * parts of at most 63 bytes, where "*" may stand for the last part. */
static bool locality_pattern_ok(const char *s)
{
	int parts = 0;

	for (;;) {
		const char *slash = strchr(s, '/');
		size_t len = slash ? (size_t)(slash - s) : strlen(s);

		parts++;
		if (len == 0 || len > 63 || parts > 3)
			return false;
		if (memchr(s, '*', len) != NULL && !(len == 1 && slash == NULL))
			return false;
		if (slash == NULL)
			return true;
		s = slash + 1;
	}
}

static void bad_pattern(struct ism_vctx *v, const struct ism_node *at, const char *s)
{
	ism_v_err(v, at,
		  "\"%s\" is not a locality pattern: region[/zone[/subzone]] with non-empty "
		  "parts, \"*\" only as the last part",
		  s);
}

static void parse_distribute_entry(struct ism_vctx *v, const struct ism_node *it,
				   struct ism_cm_distribute *d)
{
	static const char *const keys[] = {"from", "to", NULL};
	const struct ism_node *to;
	uint64_t sum = 0;
	size_t old;

	if (!ism_v_expect(v, it, ISM_NODE_MAP))
		return;
	ism_v_keys(v, it, keys, NULL);
	if (ism_v_str(v, it, "from", true, &d->from) > 0 && !locality_pattern_ok(d->from)) {
		old = ism_v_push(v, ".from");
		bad_pattern(v, ism_node_get(it, "from", NULL), d->from);
		ism_v_pop(v, old);
	}
	to = ism_v_node(v, it, "to", true, ISM_NODE_MAP);
	if (to == NULL)
		return;
	d->to = ism_v_alloc(v, to->n, sizeof(*d->to));
	d->weight = ism_v_alloc(v, to->n, sizeof(*d->weight));
	if (d->to == NULL || d->weight == NULL)
		return;
	old = ism_v_push(v, ".to");
	for (size_t i = 0; i < to->n; i++) {
		const char *pat = to->pairs[i].key->str;
		uint32_t w = 0;

		if (!locality_pattern_ok(pat)) {
			size_t o2 = ism_v_push(v, ".%s", pat);

			bad_pattern(v, to->pairs[i].key, pat);
			ism_v_pop(v, o2);
			continue;
		}
		if (ism_v_u32(v, to, pat, true, 1, 100, &w) <= 0)
			continue;
		d->to[d->n_to] = pat;
		d->weight[d->n_to++] = w;
		sum += w;
	}
	if (d->n_to == to->n && sum != 100)
		ism_v_err(v, to, "the weights must sum to 100 (they sum to %llu)",
			  (unsigned long long)sum);
	ism_v_pop(v, old);
}

static bool region_ok(const char *s)
{
	return strchr(s, '/') == NULL && strchr(s, '*') == NULL && strlen(s) <= 63;
}

static void parse_failover(struct ism_vctx *v, const struct ism_node *n, struct ism_cm_llb *l)
{
	static const char *const keys[] = {"from", "to", NULL};
	const struct ism_node *seq = ism_v_node(v, n, "failover", false, ISM_NODE_SEQ);
	size_t old;

	if (seq == NULL)
		return;
	l->failover = ism_v_alloc(v, seq->n, sizeof(*l->failover));
	old = ism_v_push(v, ".failover");
	for (size_t i = 0; l->failover != NULL && i < seq->n; i++) {
		const struct ism_node *it = seq->items[i];
		struct ism_cm_region_pair *p = &l->failover[l->n_failover];
		size_t o2 = ism_v_push(v, "[%zu]", i);
		int a, b;

		if (!ism_v_expect(v, it, ISM_NODE_MAP))
			goto next;
		ism_v_keys(v, it, keys, NULL);
		a = ism_v_str(v, it, "from", true, &p->from);
		b = ism_v_str(v, it, "to", true, &p->to);
		if (a > 0 && !region_ok(p->from))
			key_err(v, it, "from", "must be a region (no '/', no '*')");
		else if (b > 0 && !region_ok(p->to))
			key_err(v, it, "to", "must be a region (no '/', no '*')");
		else if (a > 0 && b > 0 && strcmp(p->from, p->to) == 0)
			key_err(v, it, "to", "must be a region other than from");
		else if (a > 0 && b > 0)
			l->n_failover++;
	next:
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

/* The locality part (enum ism_fprio_topo) a label name (up to any '=') stands for. */
static uint8_t topology_label(const char *s)
{
	static const char *const labels[] = {"topology.kubernetes.io/region",
					     "topology.kubernetes.io/zone",
					     "topology.istio.io/subzone"};
	size_t n = strcspn(s, "=");

	for (uint8_t i = 0; i < 3; i++)
		if (strlen(labels[i]) == n && strncmp(s, labels[i], n) == 0)
			return (uint8_t)(ISM_FPRIO_REGION + i);
	return ISM_FPRIO_LABEL;
}

static int fkey_cmp(const void *pa, const void *pb, void *ctx)
{
	const struct ism_cm_fkey *k = ctx;
	size_t a = k[*(const size_t *)pa].absent_fail, b = k[*(const size_t *)pb].absent_fail;

	return a < b ? -1 : a > b;
}

/* failoverPriority by label name (struct ism_cm_fkey), so that ranking an
 * endpoint looks at its own labels, not at every entry. */
static void plan_fprio(struct ism_vctx *v, struct ism_cm_llb *l)
{
	const struct ism_cm_appliance *a = &v->conf->app;
	const char *parts[] = {"", a->region, a->zone, a->subzone};

	for (int t = 0; t < 4; t++)
		l->topo_fkey[t] = SIZE_MAX;
	l->fkeys = ism_v_alloc(v, l->n_fprio, sizeof(*l->fkeys));
	l->fkey_ix = ism_v_map(v, l->n_fprio);
	l->absent_order = ism_v_alloc(v, l->n_fprio, sizeof(*l->absent_order));
	if (v->nomem)
		return;
	for (size_t j = 0; j < l->n_fprio; j++) {
		const char *key = l->fprio_key[j], *eq = strchr(l->fprio[j], '=');
		uint8_t topo = topology_label(key);
		const char *want;
		struct ism_cm_fkey *k;
		uint32_t at;

		/* What the endpoint must have: the value written, else the
		 * appliance's locality part or label ("" when it has none). */
		if (eq != NULL)
			want = eq + 1;
		else if (topo != ISM_FPRIO_LABEL)
			want = parts[topo];
		else
			want = ism_model_label(a->labels_at, key);
		if (ism_v_map_add(v, l->fkey_ix, key, strlen(key), (uint32_t)l->n_fkeys, &at) !=
		    0) {
			if (topo != ISM_FPRIO_LABEL)
				l->topo_fkey[topo] = l->n_fkeys;
			l->fkeys[l->n_fkeys++] = (struct ism_cm_fkey){.key = key,
								      .topo = topo,
								      .first = j,
								      .want = want,
								      .next_diff = SIZE_MAX};
			continue;
		}
		k = &l->fkeys[at];
		if (k->next_diff == SIZE_MAX && strcmp(want, k->want) != 0)
			k->next_diff = j;
	}
	for (size_t i = 0; i < l->n_fkeys; i++) {
		struct ism_cm_fkey *k = &l->fkeys[i];

		k->absent_fail = k->want[0] != '\0' ? k->first : k->next_diff;
		if (k->topo == ISM_FPRIO_LABEL)
			l->absent_order[l->n_absent++] = i;
	}
	qsort_r(l->absent_order, l->n_absent, sizeof(*l->absent_order), fkey_cmp, l->fkeys);
}

static void parse_fprio(struct ism_vctx *v, const struct ism_node *n, struct ism_cm_llb *l)
{
	const struct ism_node *seq;

	l->fprio = ism_v_strlist(v, n, "failoverPriority", false, &l->n_fprio, &seq);
	l->fprio_key = l->fprio ? ism_v_alloc(v, l->n_fprio, sizeof(*l->fprio_key)) : NULL;
	for (size_t i = 0; l->fprio_key != NULL && i < l->n_fprio; i++) {
		const char *s = l->fprio[i], *eq = strchr(s, '=');
		size_t old = ism_v_push(v, ".failoverPriority[%zu]", i);
		char *key = ism_v_strdup(v, s);

		if (key != NULL && eq != NULL)
			key[eq - s] = '\0';
		l->fprio_key[i] = key != NULL ? key : "";

		if (eq == s || (eq != NULL && strchr(eq + 1, '=') != NULL))
			ism_v_err(v, seq->items[i], "must be a label name or \"key=value\"");
		else if (l->zone_aware && topology_label(s) != ISM_FPRIO_LABEL)
			ism_v_err(
			    v, seq->items[i],
			    "a region, zone or subzone label is not allowed in zoneAwareLbSetting "
			    "(it orders regions and zones itself)");
		else if (l->n_failover > 0 && topology_label(s) != ISM_FPRIO_LABEL)
			ism_v_err(
			    v, seq->items[i],
			    "a region, zone or subzone label cannot be combined with failover");
		ism_v_pop(v, old);
	}
	if (l->fprio_key != NULL)
		plan_fprio(v, l);
}

/* loadBalancer.localityLbSetting, or (key) zoneAwareLbSetting: its
 * failover and failoverPriority as the locality setting's, minClusterSize in
 * place of distribute. Istio allows one of them. */
static void parse_llb(struct ism_vctx *v, const struct ism_node *lb, const char *key,
		      struct ism_cm_llb *l)
{
	static const char *const keys[] = {"enabled", "distribute", "failover", "failoverPriority",
					   NULL};
	static const char *const zkeys[] = {"enabled", "failover", "failoverPriority",
					    "minClusterSize", NULL};
	const struct ism_node *n = ism_v_node(v, lb, key, false, ISM_NODE_MAP);
	const struct ism_node *seq, *k = NULL;
	const char *fo_key;
	uint32_t min_cluster_size;
	size_t old;

	if (n == NULL)
		return;
	old = ism_v_push(v, ".%s", key);
	if (l->set) {
		ism_v_err(v, n, "only one of localityLbSetting and zoneAwareLbSetting can be set");
		ism_v_pop(v, old);
		return;
	}
	l->set = true;
	l->enabled = true;
	l->zone_aware = strcmp(key, "zoneAwareLbSetting") == 0;
	ism_v_keys(v, n, l->zone_aware ? zkeys : keys, NULL);
	ism_v_bool(v, n, "enabled", &l->enabled);
	if (l->zone_aware)
		ism_v_u32(v, n, "minClusterSize", false, 0, UINT32_MAX, &min_cluster_size);
	if (l->zone_aware && l->enabled)
		ism_v_warn(
		    v, n,
		    "zone-aware routing between the region's zones needs the proxy's own "
		    "cluster (Istio's self-discovery), which an appliance does not have: the "
		    "region's endpoints share its traffic by their weights, as Envoy's do "
		    "without one; the regions' order applies");
	seq = l->zone_aware ? NULL : ism_v_node(v, n, "distribute", false, ISM_NODE_SEQ);
	if (seq != NULL) {
		l->distribute = ism_v_alloc(v, seq->n, sizeof(*l->distribute));
		for (size_t i = 0; l->distribute != NULL && i < seq->n; i++) {
			size_t o2 = ism_v_push(v, ".distribute[%zu]", i);

			parse_distribute_entry(v, seq->items[i], &l->distribute[l->n_distribute++]);
			ism_v_pop(v, o2);
		}
	}
	parse_failover(v, n, l);
	parse_fprio(v, n, l);
	fo_key = ism_node_get(n, "failover", NULL) != NULL ? "failover" : "failoverPriority";
	if (ism_node_get(n, fo_key, &k) != NULL) {
		if (seq != NULL)
			key_err(v, n, fo_key,
				"distribute cannot be combined with failover or failoverPriority "
				"(only one of them may be set)");
		l->fo_at = k;
		ism_v_push(v, ".%s", fo_key);
		l->fo_path = ism_v_strdup(v, v->path);
	}
	ism_v_pop(v, old);
}

/* loadBalancer.warmup {duration, minimumPercent, aggression}, or the older
 * warmupDurationSecs (Istio takes warmup when both are set), with Envoy's
 * defaults as Istio fills them in: aggression 1, minimum 10 %. */
static void parse_warmup(struct ism_vctx *v, const struct ism_node *n, struct ism_cm_lb *p)
{
	static const char *const keys[] = {"duration", "minimumPercent", "aggression", NULL};
	const struct ism_node *w = ism_v_node(v, n, "warmup", false, ISM_NODE_MAP);
	double pct = 10;
	size_t old;

	p->warmup_aggression = 1;
	p->warmup_minimum = 0.1;
	if (w == NULL) {
		if (ism_v_dur(v, n, "warmupDurationSecs", 1, &p->warmup_ms) > 0)
			p->warmup_at = ism_node_get(n, "warmupDurationSecs", NULL);
		return;
	}
	p->warmup_at = ism_node_get(n, "warmup", NULL);
	old = ism_v_push(v, ".warmup");
	ism_v_keys(v, w, keys, NULL);
	if (ism_node_get(w, "duration", NULL) == NULL)
		ism_v_err(v, w, "duration is required (as Istio validates it)");
	ism_v_dur(v, w, "duration", 1, &p->warmup_ms);
	if (ism_v_double(v, w, "minimumPercent", 0, 100, false, &pct) > 0)
		p->warmup_minimum = pct / 100;
	ism_v_double(v, w, "aggression", 0, 1e6, true, &p->warmup_aggression);
	ism_v_pop(v, old);
}

static void parse_lb(struct ism_vctx *v, const struct ism_node *tp, struct ism_cm_lb *p)
{
	static const char *const keys[] = {"simple",
					   "consistentHash",
					   "localityLbSetting",
					   "zoneAwareLbSetting",
					   "warmup",
					   "warmupDurationSecs",
					   NULL};
	static const char *const kinds[] = {"simple", "consistentHash", NULL};
	static const char *const ok[] = {"ROUND_ROBIN", "LEAST_REQUEST", "LEAST_CONN",
					 "RANDOM",	"UNSPECIFIED",	 NULL};
	static const char *const later[] = {"PASSTHROUGH", NULL};
	const struct ism_node *n = ism_v_node(v, tp, "loadBalancer", false, ISM_NODE_MAP);
	const char *s = NULL;
	size_t old;

	if (n == NULL)
		return;
	p->set = true;
	old = ism_v_push(v, ".loadBalancer");
	ism_v_keys(v, n, keys, NULL);
	one_of(v, n, kinds, "simple, consistentHash");
	if (ism_v_enum(v, n, "simple", ok, later, &s) > 0) {
		p->has_simple = true;
		if (strcmp(s, "ROUND_ROBIN") == 0)
			p->simple = ISM_LB_ROUND_ROBIN;
		else if (strcmp(s, "RANDOM") == 0)
			p->simple = ISM_LB_RANDOM;
		else
			p->simple = ISM_LB_LEAST_REQUEST; /* Istio's default for UNSPECIFIED */
	}
	parse_hash(v, n, p);
	parse_llb(v, n, "localityLbSetting", &p->llb);
	parse_llb(v, n, "zoneAwareLbSetting", &p->llb);
	parse_warmup(v, n, p);
	if (p->warmup_ms && (p->has_hash || p->simple == ISM_LB_RANDOM)) {
		size_t o2 = ism_v_push(
		    v, ".%s", ism_node_get(n, "warmup", NULL) ? "warmup" : "warmupDurationSecs");

		ism_v_warn(v, p->warmup_at,
			   "has no effect with %s: Envoy warms endpoints up under ROUND_ROBIN "
			   "and LEAST_REQUEST only",
			   p->has_hash ? "consistentHash" : "RANDOM");
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

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
		ri = ism_v_dur(v, n, "interval", 1, &interval);
	if (ism_v_node(v, n, "timeout", true, ISM_NODE_SCALAR) != NULL)
		rt = ism_v_dur(v, n, "timeout", 1, &timeout);
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
	p->has_idle = ism_v_dur(v, h, "idleTimeout", 1, &p->idle_ms) > 0;
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

	if (ism_v_dur(v, map, key, 1, &ms) <= 0)
		return;
	if (ms < 1000 || ms / 1000 > 32767)
		value_err(v, map, key,
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
	size_t old = ism_v_push(v, ".tcp");

	ism_v_keys(v, t, keys, NULL);
	p->has_connect = ism_v_dur(v, t, "connectTimeout", 1, &p->connect_ms) > 0;
	pool_max(v, t, "maxConnections", &p->limits.max_connections);
	parse_tcp_keepalive(v, t, p);
	ism_v_dur(v, t, "maxConnectionDuration", 1, &p->tcp_max_ms);
	/* Istio: 0s turns the tunnels' idle timeout off. */
	p->has_tcp_idle = ism_v_dur(v, t, "idleTimeout", 0, &p->tcp_idle_ms) > 0;
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
		uint64_t code;

		if (it->kind != ISM_NODE_SCALAR || ism_parse_u64(it->str, &code) < 0 ||
		    code < 100 || code > ISM_STATUS_MAX) {
			size_t o2 = ism_v_push(v, "[%zu]", i);

			ism_v_err(v, it, "must be an HTTP status between 100 and %d",
				  ISM_STATUS_MAX);
			ism_v_pop(v, o2);
			continue;
		}
		o->error_codes[code / 64] |= UINT64_C(1) << (code % 64);
		o->has_error_codes = 1;
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
	ism_v_dur(v, n, "interval", 1, &o->interval_ms);
	ism_v_dur(v, n, "baseEjectionTime", 1, &o->base_ejection_ms);
	/* Istio passes maxEjectionPercent on only when > 0: 0 keeps Envoy's 10. */
	if (ism_v_u32(v, n, "maxEjectionPercent", false, 0, 100, &o->max_ejection_percent) > 0 &&
	    o->max_ejection_percent == 0)
		o->max_ejection_percent = 10;
	ism_v_u32(v, n, "minHealthPercent", false, 0, 100, &p->min_health);
	if (ism_v_bool(v, n, "splitExternalLocalOriginErrors", &split) > 0)
		o->split_local = split;
	ism_v_u32(v, n, "consecutiveLocalOriginFailures", false, 0, UINT32_MAX,
		  &o->consecutive_local);
	parse_od_codes(v, n, o);
	o->max_ejection_ms = o->base_ejection_ms > ISM_DEFAULT_MAX_EJECTION_MS
				 ? o->base_ejection_ms
				 : ISM_DEFAULT_MAX_EJECTION_MS;
	ism_v_pop(v, old);
}

static void parse_tp(struct ism_vctx *v, const struct ism_node *map, struct ism_cm_tp *tp)
{
	parse_lb(v, map, &tp->lb);
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
	if (ism_v_str(v, n, "targetHost", true, &host) > 0 &&
	    (host[0] == '*' || (!host_syntax_ok(host) && !parse_ip(host, &ss, &len)))) {
		size_t o2 = ism_v_push(v, ".targetHost");

		ism_v_err(v, ism_node_get(n, "targetHost", NULL),
			  "must be a host name or an IP address, not \"%s\"", host);
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
	parse_tp(v, tp, &p->tp);
	parse_retry_budget(v, tp, &p->tp.rb);
	parse_upstream_pp(v, tp, &p->tp.pp);
	parse_tunnel(v, tp, &p->tp);
	parse_port_settings(v, tp, p);
	ism_v_pop(v, old);
}

/* A workload selector's matchLabels (of selector n), validated as Istio's
 * validateWorkloadSelector: no empty key, no wildcard, a warning without
 * labels. */
void ism_model_selector_labels(struct ism_vctx *v, const struct ism_node *n,
			       struct ism_cm_label **labels, size_t *n_labels)
{
	labels_field(v, n, "matchLabels", labels, n_labels);
	for (size_t i = 0; i < *n_labels; i++)
		if ((*labels)[i].key[0] == '\0' || strchr((*labels)[i].key, '*') ||
		    strchr((*labels)[i].value, '*'))
			ism_v_err_key(v, n, "matchLabels",
				      "empty keys and wildcards are not supported in a selector "
				      "(\"%s=%s\")",
				      (*labels)[i].key, (*labels)[i].value);
	if (*n_labels == 0)
		ism_v_warn(v, n,
			   "workload selector specified without labels (Istio warns the same)");
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

static void parse_dr(struct ism_vctx *v, const struct ism_node *spec, struct ism_cm_dr *dr)
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
		if (!host_syntax_ok(host)) {
			old = ism_v_push(v, ".host");
			ism_v_err(v, dr->host_at, "invalid host name \"%s\"", host);
			ism_v_pop(v, old);
		}
		dr->host = ism_model_host(v, host, dr->r.ns);
	}
	dr->tp_at = ism_node_get(spec, "trafficPolicy", NULL);
	parse_policy(v, spec, &dr->policy);
	parse_dr_selector(v, spec, dr);
	parse_export(v, spec, dr->r.ns, dr->selector_at ? EXPORT_SELECTOR : EXPORT_ANY,
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
		labels_field(v, it, "labels", &s->labels, &s->n_labels);
		parse_policy(v, it, &s->policy);
		dr->n_subsets++;
	next:
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

/* --- ServiceEntry --- */

/* What a ServiceEntry port's protocol asks the upstream connections to speak:
 * HTTP/2 for HTTP2, GRPC and GRPC-WEB (Istio's IsHTTP2: the gRPC-Web
 * translation happens at the gateway, the upstream gets HTTP/2); HTTP/1.1 for
 * the others (HTTPS too: TLS towards it is the DestinationRule's), when an HTTP
 * route names them: a tcp or tls route's tunnel carries bytes whatever the port
 * says. */
static uint8_t se_port_proto(const char *proto)
{
	static const char *const h2[] = {"HTTP2", "GRPC", "GRPC-WEB", NULL};

	for (size_t i = 0; h2[i] != NULL; i++)
		if (strcmp(h2[i], proto) == 0)
			return ISM_UP_HTTP2;
	return ISM_UP_HTTP1;
}

static void parse_se_ports(struct ism_vctx *v, const struct ism_node *spec, struct ism_cm_se *se)
{
	static const char *const keys[] = {"number", "name", "protocol", "targetPort", NULL};
	static const char *const protos[] = {"HTTP",	 "HTTPS",    "HTTP2", "GRPC",
					     "GRPC-WEB", PROTOS_TCP, NULL};
	static const char *const later[] = {PROTOS_LATER, NULL};
	const struct ism_node *l = ism_v_node(v, spec, "ports", true, ISM_NODE_SEQ);
	size_t old;

	if (l == NULL)
		return;
	old = ism_v_push(v, ".ports");
	if (l->n == 0)
		ism_v_err(v, l, "must not be empty");
	se->ports = ism_v_alloc(v, l->n, sizeof(*se->ports));
	se->port_by_number = ism_v_map(v, l->n);
	se->port_by_name = ism_v_map(v, l->n);
	for (size_t i = 0; se->ports != NULL && se->port_by_number != NULL &&
			   se->port_by_name != NULL && i < l->n;
	     i++) {
		const struct ism_node *it = l->items[i];
		struct ism_cm_se_port *p = &se->ports[se->n_ports];
		const struct ism_node *pn;
		const char *proto;
		size_t o2 = ism_v_push(v, "[%zu]", i);

		if (!ism_v_expect(v, it, ISM_NODE_MAP))
			goto next;
		ism_v_keys(v, it, keys, NULL);
		if (ism_v_u32(v, it, "number", true, 1, 65535, &p->number) <= 0)
			goto next;
		if (ism_v_str(v, it, "name", true, &p->name) <= 0)
			goto next;
		/* Empty, as Istio takes it: sniffed, which a gateway's upstream
		 * speaks as HTTP/1.1, as when unset. */
		pn = ism_node_get(it, "protocol", NULL);
		if ((pn == NULL || pn->kind != ISM_NODE_SCALAR || pn->len != 0) &&
		    ism_v_enum_nocase(v, it, "protocol", protos, later, &proto) > 0)
			p->proto = se_port_proto(proto);
		ism_v_u32(v, it, "targetPort", false, 1, 65535, &p->target);
		if (ism_strmap_get(se->port_by_number, (const char *)&p->number, sizeof(p->number),
				   NULL) ||
		    ism_strmap_get(se->port_by_name, p->name, strlen(p->name), NULL)) {
			ism_v_err(v, it, "duplicate port (number %u or name \"%s\")", p->number,
				  p->name);
			goto next;
		}
		ism_v_map_add(v, se->port_by_number, (const char *)&p->number, sizeof(p->number),
			      (uint32_t)se->n_ports, NULL);
		ism_v_map_add(v, se->port_by_name, p->name, strlen(p->name), (uint32_t)se->n_ports,
			      NULL);
		se->n_ports++;
	next:
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

/* An endpoint's address: an IP address, or for the DNS resolutions a host name
 * the master resolves (Istio: a DNS name or an IP address for DNS, an IP
 * address for STATIC). A WorkloadEntry's (se NULL) may be either: which
 * ServiceEntries select it decides (xref_selectors). */
static void parse_ep_address(struct ism_vctx *v, const struct ism_node *n,
			     const struct ism_cm_se *se, struct ism_cm_se_ep *e)
{
	bool names = se == NULL || se->resolution != ISM_RES_STATIC;
	size_t old;

	if (ism_v_str(v, n, "address", true, &e->address) <= 0 ||
	    parse_ip(e->address, &e->addr, &e->addrlen))
		return;
	if (names && host_syntax_ok(e->address) && e->address[0] != '*') {
		e->name = lower_dup(v, e->address);
		return;
	}
	old = ism_v_push(v, ".address");
	if (names)
		ism_v_err(v, ism_node_get(n, "address", NULL),
			  "must be an IPv4 or IPv6 address or a host name (unix:// is " NOT_IMPL
			  ")");
	else
		ism_v_err(v, ism_node_get(n, "address", NULL),
			  "must be an IPv4 or IPv6 address unless resolution is DNS or "
			  "DNS_ROUND_ROBIN (unix:// is " NOT_IMPL ")");
	ism_v_pop(v, old);
}

static void parse_endpoint(struct ism_vctx *v, const struct ism_node *n, struct ism_cm_se *se,
			   struct ism_cm_se_ep *e)
{
	static const char *const keys[] = {"address", "ports",	 "labels",	   "locality",
					   "weight",  "network", "serviceAccount", NULL};
	const struct ism_node *pm;
	size_t old;

	e->weight = 1;
	e->locality = "";
	if (!ism_v_expect(v, n, ISM_NODE_MAP))
		return;
	ism_v_keys(v, n, keys, NULL);
	if (ism_v_str(v, n, "serviceAccount", false, &e->service_account) > 0 &&
	    !dns1123_subdomain(e->service_account))
		ism_v_err_key(v, n, "serviceAccount",
			      "\"%s\" is not a service account name (lowercase letters, digits, "
			      "'-' and '.')",
			      e->service_account);
	parse_ep_address(v, n, se, e);
	e->labels_at = labels_field(v, n, "labels", &e->labels, &e->n_labels);
	if (ism_v_str(v, n, "locality", false, &e->locality) > 0 &&
	    !ism_locality_valid(e->locality)) {
		old = ism_v_push(v, ".locality");
		ism_v_err(v, ism_node_get(n, "locality", NULL),
			  "must be \"region/zone\" or \"region/zone/subzone\" with non-empty parts "
			  "(at most 63 bytes each)");
		ism_v_pop(v, old);
	}
	ism_v_u32(v, n, "weight", false, 1, 1000000, &e->weight);
	ism_v_str(v, n, "network", false, &(const char *){NULL});
	pm = ism_v_node(v, n, "ports", false, ISM_NODE_MAP);
	if (pm == NULL)
		return;
	e->ports_at = pm;
	e->ports = ism_v_alloc(v, pm->n, sizeof(*e->ports));
	old = ism_v_push(v, ".ports");
	for (size_t i = 0; e->ports != NULL && i < pm->n; i++) {
		const char *name = pm->pairs[i].key->str;
		struct ism_cm_named_port *np = &e->ports[e->n_ports];
		/* A WorkloadEntry's names the ports of services not known yet:
		 * those of a ServiceEntry that selects it count, the others not. */
		bool known =
		    se == NULL || (se->port_by_name != NULL &&
				   ism_strmap_get(se->port_by_name, name, strlen(name), NULL));

		if (!known) {
			size_t o2 = ism_v_push(v, ".%s", name);

			ism_v_err(v, pm->pairs[i].key, "no port named \"%s\" in spec.ports", name);
			ism_v_pop(v, o2);
			continue;
		}
		if (ism_v_u32(v, pm, name, true, 1, 65535, &np->number) > 0) {
			np->name = name;
			e->n_ports++;
		}
	}
	ism_v_pop(v, old);
}

/* spec.resolution. NONE (Istio's default) forwards to the address the client
 * connected to, which an ingress does not have: refused, saying what to write. */
static void se_resolution(struct ism_vctx *v, const struct ism_node *spec, struct ism_cm_se *se)
{
	static const char *const ok[] = {"STATIC", "DNS", "DNS_ROUND_ROBIN", NULL};
	static const char *const later[] = {"DYNAMIC_DNS", NULL};
	const struct ism_node *n = ism_node_get(spec, "resolution", NULL);
	const char *s = "STATIC";
	size_t old;

	if (n == NULL || (n->kind == ISM_NODE_SCALAR && strcmp(n->str, "NONE") == 0)) {
		old = ism_v_push(v, ".resolution");
		ism_v_err(v, n != NULL ? n : spec,
			  "NONE%s forwards to the client's original destination, which an ingress "
			  "gateway does not have: set STATIC with endpoint addresses, or DNS "
			  "(or DNS_ROUND_ROBIN) to resolve the endpoints' or the hosts' names",
			  n == NULL ? " (the default)" : "");
		ism_v_pop(v, old);
		return;
	}
	if (ism_v_enum(v, spec, "resolution", ok, later, &s) <= 0)
		return;
	se->resolution = strcmp(s, "DNS") == 0		     ? ISM_RES_DNS
			 : strcmp(s, "DNS_ROUND_ROBIN") == 0 ? ISM_RES_DNS_RR
							     : ISM_RES_STATIC;
}

/* spec.workloadSelector: the labels a WorkloadEntry of the namespace carries
 * to be an endpoint (Istio: not with endpoints; without labels, every one,
 * with a warning). */
static void parse_selector(struct ism_vctx *v, const struct ism_node *spec, struct ism_cm_se *se)
{
	static const char *const keys[] = {"labels", NULL};
	static const char *const both[] = {"endpoints", "workloadSelector", NULL};
	const struct ism_node *n = ism_v_node(v, spec, "workloadSelector", false, ISM_NODE_MAP);
	size_t old;

	if (n == NULL)
		return;
	se->selector_at = n;
	one_of(v, spec, both, "endpoints and workloadSelector");
	old = ism_v_push(v, ".workloadSelector");
	ism_v_keys(v, n, keys, NULL);
	labels_field(v, n, "labels", &se->selector, &se->n_selector);
	if (se->n_selector == 0)
		ism_v_warn(v, n,
			   "no labels: every WorkloadEntry of namespace %s is an endpoint (Istio "
			   "warns the same)",
			   se->r.ns);
	ism_v_pop(v, old);
}

static void parse_se(struct ism_vctx *v, const struct ism_node *spec, struct ism_cm_se *se)
{
	static const char *const keys[] = {
	    "hosts",	"ports",     "resolution",	"location",	    "endpoints",
	    "exportTo", "addresses", "subjectAltNames", "workloadSelector", NULL};
	static const char *const locs[] = {"MESH_EXTERNAL", "MESH_INTERNAL", NULL};
	const struct ism_node *l;
	const char **hosts, *s = "STATIC";
	size_t nh, old;

	ism_v_keys(v, spec, keys, NULL);
	hosts = ism_v_strlist(v, spec, "hosts", true, &nh, &l);
	se->hosts = ism_v_alloc(v, nh, sizeof(*se->hosts));
	for (size_t i = 0; hosts != NULL && se->hosts != NULL && i < nh; i++) {
		if (!host_syntax_ok(hosts[i]) || hosts[i][0] == '*') {
			old = ism_v_push(v, ".hosts[%zu]", i);
			ism_v_err(v, l->items[i],
				  "invalid host \"%s\" (wildcards are " NOT_IMPL ")", hosts[i]);
			ism_v_pop(v, old);
			continue;
		}
		se->hosts[se->n_hosts++] = ism_model_host(v, hosts[i], se->r.ns);
	}
	parse_se_ports(v, spec, se);
	se_resolution(v, spec, se);
	if (ism_v_enum(v, spec, "location", locs, NULL, &s) > 0) {
		se->mesh_internal = strcmp(s, "MESH_INTERNAL") == 0;
		se->location_at = ism_node_get(spec, "location", NULL);
	}
	parse_export(v, spec, se->r.ns, EXPORT_SE, &se->export_to, &se->n_export_to);
	ism_v_node(v, spec, "addresses", false, ISM_NODE_SEQ);
	ism_tls_parse_sans(v, spec, &se->sans, &se->n_sans);
	parse_selector(v, spec, se);
	l = ism_v_node(v, spec, "endpoints", false, ISM_NODE_SEQ);
	if (l == NULL)
		return;
	if (se->resolution == ISM_RES_DNS_RR && l->n > 1) {
		old = ism_v_push(v, ".endpoints");
		ism_v_err(v, l,
			  "resolution DNS_ROUND_ROBIN takes at most one endpoint (as Istio "
			  "validates it); use DNS for several");
		ism_v_pop(v, old);
	}
	se->eps = ism_v_alloc(v, l->n, sizeof(*se->eps));
	old = ism_v_push(v, ".endpoints");
	for (size_t i = 0; se->eps != NULL && i < l->n; i++) {
		size_t o2 = ism_v_push(v, "[%zu]", i);

		parse_endpoint(v, l->items[i], se, &se->eps[se->n_eps++]);
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

int ism_conf_dns_names(const struct ism_conf *conf, ism_conf_name_cb cb, void *ctx)
{
	struct ism_strmap seen;
	int rc = 0;

	ism_strmap_init(&seen, conf->seed);
	for (size_t i = 0; i < conf->n_ses && rc == 0; i++) {
		const struct ism_cm_se *se = conf->ses[i];
		bool self = ism_model_se_self(se);
		size_t n = self ? se->n_hosts : se->n_eps;

		if (se->resolution == ISM_RES_STATIC)
			continue;
		for (size_t j = 0; j < n && rc == 0; j++) {
			const char *name = self ? se->hosts[j] : se->eps[j].name;

			if (name == NULL)
				continue;
			rc = ism_strmap_add(&seen, name, strlen(name), 0, NULL);
			if (rc > 0)
				rc = cb(ctx, name);
		}
	}
	ism_strmap_free(&seen);
	return rc;
}

void ism_conf_dns_settings(const struct ism_conf *conf, struct ism_conf_dns *out)
{
	const struct ism_cm_dns *d = &conf->app.dns;

	*out = (struct ism_conf_dns){.n_servers = d->n_servers,
				     .servers = d->servers,
				     .min_refresh_ms = d->min_refresh_ms,
				     .max_refresh_ms = d->max_refresh_ms,
				     .timeout_ms = d->timeout_ms};
}

/* --- PeerAuthentication --- */

static uint8_t pa_mode(struct ism_vctx *v, const struct ism_node *map)
{
	static const char *const mkeys[] = {"mode", NULL};
	static const char *const modes[] = {"UNSET", "DISABLE", "PERMISSIVE", "STRICT", NULL};
	const char *s = "UNSET";

	ism_v_keys(v, map, mkeys, NULL);
	ism_v_enum(v, map, "mode", modes, NULL, &s);
	for (uint8_t i = 0; modes[i]; i++)
		if (strcmp(modes[i], s) == 0)
			return i;
	return ISM_PA_UNSET;
}

static void parse_pa(struct ism_vctx *v, const struct ism_node *spec, struct ism_cm_pa *pa)
{
	static const char *const keys[] = {"selector", "mtls", "portLevelMtls", NULL};
	static const char *const skeys[] = {"matchLabels", NULL};
	const struct ism_node *n;
	size_t old;

	ism_v_keys(v, spec, keys, NULL);
	n = ism_v_node(v, spec, "selector", false, ISM_NODE_MAP);
	if (n != NULL) {
		old = ism_v_push(v, ".selector");
		ism_v_keys(v, n, skeys, NULL);
		labels_field(v, n, "matchLabels", &pa->sel, &pa->n_sel);
		/* Istio: without labels, a namespace or mesh policy. */
		pa->has_selector = pa->n_sel > 0;
		ism_v_pop(v, old);
	}
	n = ism_v_node(v, spec, "mtls", false, ISM_NODE_MAP);
	if (n != NULL) {
		old = ism_v_push(v, ".mtls");
		pa->mode = pa_mode(v, n);
		ism_v_pop(v, old);
	}
	n = ism_v_node(v, spec, "portLevelMtls", false, ISM_NODE_MAP);
	if (n == NULL)
		return;
	/* Istio's validation: port-level modes belong to a workload policy, and
	 * an empty map is refused rather than taken for none. */
	old = ism_v_push(v, ".portLevelMtls");
	if (!pa->has_selector)
		ism_v_err(v, n,
			  "a mesh or namespace policy (no selector.matchLabels) cannot have "
			  "port-level mTLS (as Istio validates it)");
	if (n->n == 0)
		ism_v_err(v, n,
			  "port-level mTLS, if defined, must have at least one port (as Istio "
			  "validates it)");
	ism_v_pop(v, old);
	pa->ports = ism_v_alloc(v, n->n, sizeof(*pa->ports));
	for (size_t i = 0; pa->ports != NULL && i < n->n; i++) {
		const struct ism_node *k = n->pairs[i].key, *val = n->pairs[i].value;
		struct ism_cm_pa_port *pp = &pa->ports[pa->n_ports];
		uint64_t port;

		old = ism_v_push(v, ".portLevelMtls.%s", k->str);
		if (ism_parse_u64(k->str, &port) < 0 || port == 0 || port > 65535) {
			ism_v_err(v, k, "must be a port number (1..65535)");
		} else if (ism_v_expect(v, val, ISM_NODE_MAP)) {
			pp->port = (uint32_t)port;
			pp->mode = pa_mode(v, val);
			pp->at = k;
			pa->n_ports++;
		}
		ism_v_pop(v, old);
	}
}

/* --- ProxyConfig --- */

/* spec: selector (the workloads of its namespace it applies to; none: all of
 * them, or the mesh's in the root namespace), concurrency (≥ 0), and what has
 * no meaning without Envoy (environmentVariables, image: warned). */
static void parse_pc(struct ism_vctx *v, const struct ism_node *spec, struct ism_cm_pc *pc)
{
	static const char *const keys[] = {"selector", "concurrency", "environmentVariables",
					   "image", NULL};
	static const char *const skeys[] = {"matchLabels", NULL};
	const char *const unused[] = {"environmentVariables", "image"};
	const struct ism_node *n;
	uint32_t x;
	size_t old;

	ism_v_keys(v, spec, keys, NULL);
	pc->concurrency = -1;
	n = ism_v_node(v, spec, "selector", false, ISM_NODE_MAP);
	if (n != NULL) {
		pc->selector_at = n;
		old = ism_v_push(v, ".selector");
		ism_v_keys(v, n, skeys, NULL);
		ism_model_selector_labels(v, n, &pc->sel, &pc->n_sel);
		ism_v_pop(v, old);
	}
	if (ism_v_u32(v, spec, "concurrency", false, 0, INT32_MAX, &x) > 0) {
		pc->concurrency = x;
		pc->concurrency_at = ism_node_get(spec, "concurrency", NULL);
	}
	for (size_t i = 0; i < 2; i++) {
		if ((n = ism_v_node(v, spec, unused[i], false, ISM_NODE_MAP)) == NULL)
			continue;
		old = ism_v_push(v, ".%s", unused[i]);
		ism_v_warn(v, n,
			   "what it sets is Envoy's (its environment, its image): it has no "
			   "meaning here, ignored");
		ism_v_pop(v, old);
	}
}

void ism_model_alog_stdout(struct ism_vctx *v, struct ism_alog_conf *l)
{
	size_t bad;
	char err[256];

	memset(l, 0, sizeof(*l));
	l->dest = ISM_ALOG_STDOUT;
	l->format = ISM_ALOG_TEXT;
	alog_ops(v, l, parse_text_src, ism_alog_default_text, &bad, err, sizeof(err));
}

/* --- documents --- */

struct kind_info {
	const char *kind;
	const char *group; /* apiVersion before the '/' */
	const char *const *versions;
	/* a kind Istio has no gateway use: why; its document loads with that
	 * warning and nothing of it is read. NULL: a kind isthmus reads. */
	const char *no_effect;
};

static const char *const net_versions[] = {"v1alpha3", "v1beta1", "v1", NULL};
static const char *const sec_versions[] = {"v1beta1", "v1", NULL};
static const char *const app_versions[] = {"v1", NULL};
static const char *const pc_versions[] = {"v1beta1", NULL};
static const char *const tel_versions[] = {"v1alpha1", "v1", NULL};

static const struct kind_info kinds[] = {
    {"Appliance", "isthmus.io", app_versions, NULL},
    {"Gateway", "networking.istio.io", net_versions, NULL},
    {"VirtualService", "networking.istio.io", net_versions, NULL},
    {"DestinationRule", "networking.istio.io", net_versions, NULL},
    {"ServiceEntry", "networking.istio.io", net_versions, NULL},
    {"PeerAuthentication", "security.istio.io", sec_versions, NULL},
    {"ProxyConfig", "networking.istio.io", pc_versions, NULL},
    {"Telemetry", "telemetry.istio.io", tel_versions, NULL},
    {"WorkloadEntry", "networking.istio.io", net_versions, NULL},
    {"Sidecar", "networking.istio.io", net_versions,
     "a Sidecar has no effect on a gateway: Istio's gateways always use the default sidecar "
     "scope"},
    {"WorkloadGroup", "networking.istio.io", net_versions,
     "a WorkloadGroup has no effect here: Istio makes WorkloadEntries from it as virtual "
     "machines register with istiod, which none does with isthmus (write the WorkloadEntries)"},
};

static const char *const later_kinds[] = {"EnvoyFilter", "AuthorizationPolicy",
					  "RequestAuthentication", "WasmPlugin", NULL};

static const struct kind_info *check_kind(struct ism_vctx *v, const struct ism_node *doc)
{
	const char *kind = NULL, *api = NULL;
	const struct ism_node *kn = ism_node_get(doc, "kind", NULL);
	const struct ism_node *an = ism_node_get(doc, "apiVersion", NULL);

	if (ism_v_str(v, doc, "kind", true, &kind) <= 0)
		return NULL;
	ism_v_str(v, doc, "apiVersion", true, &api);
	for (size_t i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++) {
		const struct kind_info *k = &kinds[i];
		size_t gl = strlen(k->group);

		if (strcmp(k->kind, kind) != 0)
			continue;
		if (api == NULL)
			return NULL;
		if (strncmp(api, k->group, gl) == 0 && api[gl] == '/')
			for (const char *const *ver = k->versions; *ver; ver++)
				if (strcmp(api + gl + 1, *ver) == 0)
					return k;
		v->path[0] = '\0';
		ism_v_push(v, "apiVersion");
		ism_v_err(v, an, "\"%s\" is not an apiVersion of %s (use %s/%s)", api, kind,
			  k->group, k->versions[0]);
		ism_v_pop(v, 0);
		return NULL;
	}
	ism_v_push(v, "kind");
	for (const char *const *p = later_kinds; *p; p++) {
		if (strcmp(*p, kind) == 0) {
			ism_v_err(v, kn, "%s is " NOT_IMPL, kind);
			ism_v_pop(v, 0);
			return NULL;
		}
	}
	ism_v_err(v, kn, "unknown kind \"%s\"", kind);
	ism_v_pop(v, 0);
	return NULL;
}

static bool name_ok(const char *s)
{
	for (; *s; s++)
		if (!(islower((unsigned char)*s) || isdigit((unsigned char)*s) || *s == '-' ||
		      *s == '.'))
			return false;
	return true;
}

static bool parse_metadata(struct ism_vctx *v, const struct ism_node *doc, struct ism_cm_res *r)
{
	static const char *const keys[] = {
	    "name",	     "namespace",  "labels",	      "annotations",
	    "uid",	     "generation", "resourceVersion", "creationTimestamp",
	    "managedFields", "finalizers", "ownerReferences", NULL};
	const struct ism_node *md = ism_v_node(v, doc, "metadata", true, ISM_NODE_MAP);
	bool ok = true;
	size_t old;

	if (md == NULL)
		return false;
	old = ism_v_push(v, "metadata");
	ism_v_keys(v, md, keys, NULL);
	ism_v_node(v, md, "labels", false, ISM_NODE_MAP);
	ism_v_node(v, md, "annotations", false, ISM_NODE_MAP);
	if (ism_v_str(v, md, "name", true, &r->name) <= 0) {
		ok = false;
	} else if (!name_ok(r->name)) {
		size_t o2 = ism_v_push(v, ".name");

		ism_v_err(v, ism_node_get(md, "name", NULL),
			  "must consist of lower case letters, digits, '-' and '.'");
		ism_v_pop(v, o2);
		ok = false;
	}
	if (ism_v_str(v, md, "namespace", false, &r->ns) > 0 && !name_ok(r->ns)) {
		size_t o2 = ism_v_push(v, ".namespace");

		ism_v_err(v, ism_node_get(md, "namespace", NULL),
			  "must consist of lower case letters, digits, '-' and '.'");
		ism_v_pop(v, o2);
		ok = false;
	}
	ism_v_pop(v, old);
	return ok;
}

static void *new_res(struct ism_vctx *v, size_t size, const char *kind, const struct ism_node *doc,
		     const struct ism_cm_res *hdr)
{
	struct ism_cm_res *r = ism_v_alloc(v, 1, size);

	if (r == NULL)
		return NULL;
	*r = *hdr;
	r->kind = kind;
	r->at = doc;
	snprintf(r->label, sizeof(r->label), "%s %s/%s", kind, r->ns, r->name);
	v->res = r->label;
	return r;
}

void ism_model_doc(struct ism_vctx *v, const struct ism_node *doc)
{
	static const char *const top[] = {"apiVersion", "kind", "metadata", "spec", "status", NULL};
	struct ism_conf *c = v->conf;
	const struct kind_info *k;
	const struct ism_node *spec;
	struct ism_cm_res hdr = {0};
	size_t old;

	v->res = "";
	ism_v_pop(v, 0);
	if (doc == NULL || ism_node_is_null(doc))
		return;
	if (!ism_v_expect(v, doc, ISM_NODE_MAP))
		return;
	k = check_kind(v, doc);
	if (k == NULL)
		return;
	if (!parse_metadata(v, doc, &hdr))
		return;
	if (strcmp(k->kind, "Appliance") == 0) {
		c->app.r = hdr;
		c->app.r.kind = k->kind;
		c->app.r.at = doc;
		snprintf(c->app.r.label, sizeof(c->app.r.label), "Appliance %s", hdr.name);
		v->res = c->app.r.label;
	} else {
		if (hdr.ns == NULL)
			hdr.ns = c->app.ns;
	}
	ism_v_keys(v, doc, top, NULL);
	if (k->no_effect != NULL) {
		new_res(v, sizeof(struct ism_cm_res), k->kind, doc, &hdr); /* its label */
		ism_v_push(v, "kind");
		ism_v_warn(v, ism_node_get(doc, "kind", NULL), "%s; ignored", k->no_effect);
		ism_v_pop(v, 0);
		return;
	}
	spec = ism_v_node(v, doc, "spec", true, ISM_NODE_MAP);
	if (spec == NULL)
		return;
	old = ism_v_push(v, "spec");
	if (strcmp(k->kind, "Appliance") == 0) {
		parse_appliance(v, spec);
	} else if (strcmp(k->kind, "Gateway") == 0) {
		struct ism_cm_gw *g = new_res(v, sizeof(*g), k->kind, doc, &hdr);

		if (g != NULL) {
			c->gws[c->n_gws++] = g;
			parse_gateway(v, spec, g);
		}
	} else if (strcmp(k->kind, "VirtualService") == 0) {
		struct ism_cm_vs *vs = new_res(v, sizeof(*vs), k->kind, doc, &hdr);

		if (vs != NULL) {
			c->vss[c->n_vss++] = vs;
			parse_vs(v, spec, vs);
		}
	} else if (strcmp(k->kind, "DestinationRule") == 0) {
		struct ism_cm_dr *dr = new_res(v, sizeof(*dr), k->kind, doc, &hdr);

		if (dr != NULL) {
			c->drs[c->n_drs++] = dr;
			parse_dr(v, spec, dr);
		}
	} else if (strcmp(k->kind, "ServiceEntry") == 0) {
		struct ism_cm_se *se = new_res(v, sizeof(*se), k->kind, doc, &hdr);

		if (se != NULL) {
			se->idx = c->n_ses;
			c->ses[c->n_ses++] = se;
			parse_se(v, spec, se);
		}
	} else if (strcmp(k->kind, "WorkloadEntry") == 0) {
		struct ism_cm_we *we = new_res(v, sizeof(*we), k->kind, doc, &hdr);

		/* The fields of a ServiceEntry's endpoint, checked without it. */
		if (we != NULL) {
			c->wes[c->n_wes++] = we;
			parse_endpoint(v, spec, NULL, &we->ep);
		}
	} else if (strcmp(k->kind, "Telemetry") == 0) {
		struct ism_cm_tel *t = new_res(v, sizeof(*t), k->kind, doc, &hdr);

		if (t != NULL) {
			c->tels[c->n_tels++] = t;
			ism_model_parse_telemetry(v, spec, t);
		}
	} else if (strcmp(k->kind, "ProxyConfig") == 0) {
		struct ism_cm_pc *pc = new_res(v, sizeof(*pc), k->kind, doc, &hdr);

		if (pc != NULL) {
			c->pcs[c->n_pcs++] = pc;
			parse_pc(v, spec, pc);
		}
	} else {
		struct ism_cm_pa *pa = new_res(v, sizeof(*pa), k->kind, doc, &hdr);

		if (pa != NULL) {
			c->pas[c->n_pas++] = pa;
			parse_pa(v, spec, pa);
		}
	}
	ism_v_pop(v, old);
}
