/* SPDX-License-Identifier: Apache-2.0 */
/* spec.extensionProviders of the Appliance (Istio's
 * meshConfig.extensionProviders): the external authorizers of CUSTOM
 * AuthorizationPolicies. An envoyExtAuthzHttp or envoyExtAuthzGrpc entry is
 * checked as istiod's validation and buildExtAuthzHTTP/GRPC check it (name,
 * port, service, pathPrefix, statusOnError, no lone "*" pattern); its service
 * is a ServiceEntry host of the file, whose cluster carries the checks (over
 * HTTP/2 for gRPC: its port's protocol GRPC or HTTP2). The other kinds of
 * provider are "not implemented yet". */
#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "conf/model.h"
#include "lib/ascii.h"

/* The status codes of Envoy's StatusCode enum (envoy.type.v3), which istiod
 * takes statusOnError from, less Empty and Continue (not an answer). */
static const uint16_t envoy_codes[] = {
    200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 307, 308, 400,
    401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421, 422,
    423, 424, 426, 428, 429, 431, 500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511};

/* istiod's validateProviderName; NULL when name is one. */
static const char *name_problem(const char *name)
{
	size_t n = strlen(name);

	if (n > 63)
		return "too long (63 characters at most)";
	for (size_t i = 0; i < n; i++) {
		if (isupper((unsigned char)name[i]))
			return "upper-case letters are not allowed (use lower case)";
		if (!islower((unsigned char)name[i]) && !isdigit((unsigned char)name[i]) &&
		    name[i] != '-')
			return "only lower-case letters, digits and '-' are allowed";
	}
	if (name[0] == '-' || name[n - 1] == '-')
		return "it must not start or end with '-'";
	return NULL;
}

/* A list of field-name patterns at m.key, lowercased. */
static void parse_pats(struct ism_vctx *v, const struct ism_node *m, const char *key,
		       struct ism_cm_xa_pats *out)
{
	const struct ism_node *list;
	const char **p = ism_v_strlist(v, m, key, false, &out->n, &list);
	size_t old = ism_v_push(v, ".%s", key);

	out->p = p;
	out->set = out->n > 0;
	for (size_t i = 0; p != NULL && i < out->n; i++) {
		size_t o2 = ism_v_push(v, "[%zu]", i), len = strlen(p[i]);
		char *low = ism_v_strdup(v, p[i]), name[256];
		const char *core = p[i] + (p[i][0] == '*');

		if (low == NULL)
			break;
		for (char *c = low; *c; c++)
			*c = (char)tolower((unsigned char)*c);
		p[i] = low;
		/* What is between the wildcards must be a field name. */
		snprintf(name, sizeof(name), "%.*s",
			 (int)(len - (p[i][0] == '*') - (len > 1 && p[i][len - 1] == '*')), core);
		if (strcmp(low, "*") == 0)
			ism_v_err(
			    v, list->items[i],
			    "a single wildcard (\"*\") is not supported: change it to a prefix "
			    "(\"x-*\") or a suffix (\"*-id\") match");
		else if (!ism_is_token(name) || len > 255)
			ism_v_err(v, list->items[i],
				  "\"%s\" is not a field name (an RFC 9110 token), with a '*' "
				  "before or after it at most",
				  p[i]);
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

/* Whether field name frames a message or its connection (the body's length,
 * a hop-by-hop field): never an additional field of a check. */
static bool framing_field(const char *name)
{
	return strcasecmp(name, "content-length") == 0 || strcasecmp(name, "trailer") == 0 ||
	       ism_http_is_hop_by_hop(name, strlen(name));
}

/* includeAdditionalHeadersInCheck: a map of field name to value. */
static void parse_add(struct ism_vctx *v, const struct ism_node *m, struct ism_cm_xa *x)
{
	const struct ism_node *map =
	    ism_v_node(v, m, "includeAdditionalHeadersInCheck", false, ISM_NODE_MAP);
	size_t old;

	if (map == NULL || map->n == 0)
		return;
	x->add_name = ism_v_alloc(v, map->n, sizeof(*x->add_name));
	x->add_value = ism_v_alloc(v, map->n, sizeof(*x->add_value));
	if (x->add_name == NULL || x->add_value == NULL)
		return;
	old = ism_v_push(v, ".includeAdditionalHeadersInCheck");
	for (size_t i = 0; i < map->n; i++) {
		const struct ism_node *k = map->pairs[i].key, *val = map->pairs[i].value;
		size_t o2 = ism_v_push(v, ".%s", k->str);
		char *low;

		if (!ism_is_token(k->str) || k->len > 255) {
			ism_v_err(v, k, "\"%s\" is not a field name (an RFC 9110 token)", k->str);
		} else if (framing_field(k->str)) {
			ism_v_err(v, k,
				  "\"%s\" frames the check request, which isthmus writes itself; "
				  "it cannot be added",
				  k->str);
		} else if (val->kind != ISM_NODE_SCALAR) {
			ism_v_err(v, val, "expected a string");
		} else if (strchr(val->str, '%') != NULL) {
			ism_v_err(v, val,
				  "a value with '%%' (Envoy's command operators) is " ISM_NOT_IMPL);
		} else if (strpbrk(val->str, "\r\n") != NULL || val->str[0] == '\0') {
			ism_v_err(v, val, "a field value is not empty and holds no CR or LF");
		} else if ((low = ism_v_strdup(v, k->str)) != NULL) {
			for (char *c = low; *c; c++)
				*c = (char)tolower((unsigned char)*c);
			x->add_name[x->n_add] = low;
			x->add_value[x->n_add++] = val->str;
		}
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

static void parse_status(struct ism_vctx *v, const struct ism_node *m, struct ism_cm_xa *x)
{
	const char *s;
	uint64_t code;

	x->status_on_error = 403;
	if (ism_v_str(v, m, "statusOnError", false, &s) <= 0)
		return;
	if (ism_parse_u64(s, &code) < 0 || code > 999) {
		ism_v_err_key(v, m, "statusOnError",
			      "\"%s\" is not a status code (a number in a string, as \"503\")", s);
		return;
	}
	for (size_t i = 0; i < sizeof(envoy_codes) / sizeof(envoy_codes[0]); i++)
		if (envoy_codes[i] == code) {
			x->status_on_error = (uint16_t)code;
			return;
		}
	ism_v_err_key(v, m, "statusOnError",
		      "unsupported status %s: one of Envoy's StatusCode values (200..511, "
		      "as 403, 500, 503)",
		      s);
}

/* includeRequestBodyInCheck (Envoy's BufferSettings, whose max_request_bytes
 * must be above 0). */
static void parse_body(struct ism_vctx *v, const struct ism_node *m, struct ism_cm_xa *x)
{
	static const char *const known[] = {"maxRequestBytes", "allowPartialMessage", "packAsBytes",
					    NULL};
	const struct ism_node *b =
	    ism_v_node(v, m, "includeRequestBodyInCheck", false, ISM_NODE_MAP);
	size_t old;

	if (b == NULL)
		return;
	old = ism_v_push(v, ".includeRequestBodyInCheck");
	if (ism_v_keys(v, b, known, NULL)) {
		ism_v_u32(v, b, "maxRequestBytes", true, 1, UINT32_MAX, &x->body_max);
		ism_v_bool(v, b, "allowPartialMessage", &x->body_partial);
		ism_v_bool(v, b, "packAsBytes", &x->body_bytes);
	}
	ism_v_pop(v, old);
}

/* What both kinds have: the service, its port, the timeout, what an error
 * does. */
static void parse_common(struct ism_vctx *v, const struct ism_node *m, struct ism_cm_xa *x)
{
	const char *service, *slash;
	char *host;
	uint32_t port;

	if (ism_v_str(v, m, "service", true, &service) > 0) {
		/* "<namespace>/<host>" names the host of that namespace. */
		slash = strchr(service, '/');
		host = ism_v_strdup(v, slash != NULL ? slash + 1 : service);
		for (char *c = host; c != NULL && *c; c++)
			*c = (char)tolower((unsigned char)*c);
		x->dest.host = host;
		x->service_at = ism_node_get(m, "service", NULL);
		if (host != NULL && host[0] == '\0')
			ism_v_err_key(v, m, "service", "no host after the namespace");
	}
	if (ism_v_u32(v, m, "port", true, 1, 65535, &port) > 0) {
		x->dest.port = port;
		x->dest.port_at = ism_node_get(m, "port", NULL);
	}
	x->timeout_ms = 600000;
	ism_v_dur(v, m, "timeout", 1, &x->timeout_ms);
	ism_v_bool(v, m, "failOpen", &x->fail_open);
	parse_status(v, m, x);
	x->path_prefix = "";
	parse_body(v, m, x);
}

static void parse_http(struct ism_vctx *v, const struct ism_node *m, struct ism_cm_xa *x)
{
	static const char *const known[] = {"service",
					    "port",
					    "timeout",
					    "pathPrefix",
					    "failOpen",
					    "statusOnError",
					    "includeRequestHeadersInCheck",
					    "includeHeadersInCheck",
					    "includeAdditionalHeadersInCheck",
					    "headersToUpstreamOnAllow",
					    "headersToDownstreamOnDeny",
					    "headersToDownstreamOnAllow",
					    "includeRequestBodyInCheck",
					    NULL};

	ism_v_keys(v, m, known, NULL);
	parse_common(v, m, x);
	if (ism_v_str(v, m, "pathPrefix", false, &x->path_prefix) > 0) {
		if (x->path_prefix[0] != '/')
			ism_v_err_key(v, m, "pathPrefix", "must begin with '/', found \"%s\"",
				      x->path_prefix);
		else if (strpbrk(x->path_prefix, " \t\r\n?#") != NULL)
			ism_v_err_key(v, m, "pathPrefix",
				      "\"%s\" is not a path (no blanks, '?' or '#')",
				      x->path_prefix);
	}
	parse_pats(v, m, "includeRequestHeadersInCheck", &x->req);
	if (!x->req.set)
		parse_pats(v, m, "includeHeadersInCheck", &x->req);
	parse_pats(v, m, "headersToUpstreamOnAllow", &x->up);
	parse_pats(v, m, "headersToDownstreamOnAllow", &x->down_allow);
	parse_pats(v, m, "headersToDownstreamOnDeny", &x->down_deny);
	parse_add(v, m, x);
}

static void parse_grpc(struct ism_vctx *v, const struct ism_node *m, struct ism_cm_xa *x)
{
	static const char *const known[] = {
	    "service", "port", "timeout", "failOpen", "statusOnError", "includeRequestBodyInCheck",
	    NULL};

	ism_v_keys(v, m, known, NULL);
	x->grpc = true;
	parse_common(v, m, x);
}

void ism_model_parse_extauthz(struct ism_vctx *v, const struct ism_node *spec,
			      struct ism_cm_appliance *a)
{
	static const char *const known[] = {"name", "envoyExtAuthzHttp", "envoyExtAuthzGrpc", NULL};
	static const char *const unimpl[] = {"zipkin",	      "lightstep",   "datadog",
					     "stackdriver",   "opencensus",  "skywalking",
					     "opentelemetry", "prometheus",  "envoyFileAccessLog",
					     "envoyHttpAls",  "envoyTcpAls", "envoyOtelAls",
					     "sds",	      NULL};
	const struct ism_node *l = ism_v_node(v, spec, "extensionProviders", false, ISM_NODE_SEQ);
	size_t old;

	if (l == NULL || l->n == 0)
		return;
	a->xas = ism_v_alloc(v, l->n, sizeof(*a->xas));
	if (a->xas == NULL)
		return;
	old = ism_v_push(v, ".extensionProviders");
	for (size_t i = 0; i < l->n; i++) {
		const struct ism_node *e = l->items[i], *http, *grpc;
		struct ism_cm_xa *x = &a->xas[a->n_xas];
		size_t o2 = ism_v_push(v, "[%zu]", i);
		const char *why;

		if (!ism_v_expect(v, e, ISM_NODE_MAP) || !ism_v_keys(v, e, known, unimpl) ||
		    ism_v_str(v, e, "name", true, &x->name) <= 0) {
			ism_v_pop(v, o2);
			continue;
		}
		x->at = e;
		if ((why = name_problem(x->name)) != NULL)
			ism_v_err_key(v, e, "name", "invalid provider name \"%s\": %s", x->name,
				      why);
		for (size_t j = 0; j < a->n_xas; j++)
			if (strcmp(a->xas[j].name, x->name) == 0)
				ism_v_err_key(
				    v, e, "name",
				    "provider names must be unique: \"%s\" is also the name of "
				    "entry %zu (line %d)",
				    x->name, j, a->xas[j].at->line);
		http = ism_v_node(v, e, "envoyExtAuthzHttp", false, ISM_NODE_MAP);
		grpc = ism_v_node(v, e, "envoyExtAuthzGrpc", false, ISM_NODE_MAP);
		if (http != NULL && grpc != NULL) {
			ism_v_err_key(v, e, "envoyExtAuthzGrpc",
				      "a provider has one kind: envoyExtAuthzHttp or "
				      "envoyExtAuthzGrpc, not both");
		} else if (http == NULL && grpc == NULL) {
			if (ism_node_get(e, "envoyExtAuthzHttp", NULL) == NULL &&
			    ism_node_get(e, "envoyExtAuthzGrpc", NULL) == NULL)
				ism_v_err(v, e,
					  "provider \"%s\" has no kind: envoyExtAuthzHttp and "
					  "envoyExtAuthzGrpc are those isthmus implements",
					  x->name);
		} else {
			ism_v_push(v, http != NULL ? ".envoyExtAuthzHttp" : ".envoyExtAuthzGrpc");
			if (http != NULL)
				parse_http(v, http, x);
			else
				parse_grpc(v, grpc, x);
			a->n_xas++;
		}
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

/* The provider of that name; NULL when none. */
static const struct ism_cm_xa *find(const struct ism_cm_appliance *a, const char *name)
{
	for (size_t i = 0; i < a->n_xas; i++)
		if (strcmp(a->xas[i].name, name) == 0)
			return &a->xas[i];
	return NULL;
}

/* Provider x's service: a ServiceEntry host with that port (istiod's
 * LookupCluster). */
static void xref_service(struct ism_vctx *v, struct ism_cm_xa *x, size_t i)
{
	const char *kind = x->grpc ? "envoyExtAuthzGrpc" : "envoyExtAuthzHttp";
	const struct ism_cm_se *se;

	if (x->dest.host == NULL || x->dest.port == 0)
		return;
	v->res = v->conf->app.r.label;
	ism_v_pop(v, 0);
	ism_v_push(v, "spec.extensionProviders[%zu].%s.service", i, kind);
	se = ism_model_find_se(v->conf, x->dest.host);
	if (se == NULL) {
		ism_v_err(v, x->service_at,
			  "no ServiceEntry for host %s: the authorizer must be a service of the "
			  "file",
			  x->dest.host);
		return;
	}
	x->dest.se = se;
	x->dest.svc_port = (uint16_t)x->dest.port;
	x->dest.at = x->service_at;
	x->dest.host_at = x->service_at;
	if (se->port_by_number == NULL ||
	    !ism_strmap_get(se->port_by_number, (const char *)&x->dest.port, sizeof(x->dest.port),
			    NULL)) {
		ism_v_pop(v, 0);
		ism_v_push(v, "spec.extensionProviders[%zu].%s.port", i, kind);
		ism_v_err(v, x->dest.port_at, "port %u is not a port of %s", x->dest.port,
			  se->r.label);
		return;
	}
	for (size_t k = 0; x->grpc && k < se->n_ports; k++)
		if (se->ports[k].number == x->dest.port && se->ports[k].proto != ISM_UP_HTTP2) {
			ism_v_pop(v, 0);
			ism_v_push(v, "spec.extensionProviders[%zu].%s.port", i, kind);
			ism_v_err(v, x->dest.port_at,
				  "port %u of %s is not of protocol GRPC or HTTP2: a gRPC "
				  "authorizer is spoken to over HTTP/2",
				  x->dest.port, se->r.label);
		}
}

void ism_model_xref_extauthz(struct ism_vctx *v)
{
	struct ism_cm_appliance *a = &v->conf->app;
	const struct ism_cm_later *first = NULL;

	for (size_t i = 0; i < a->n_xas; i++)
		xref_service(v, &a->xas[i], i);
	for (size_t i = 0; i < v->conf->n_laters; i++) {
		const struct ism_cm_later *l = v->conf->laters[i];
		const struct ism_cm_az *az = l->az;

		if (az == NULL || az->action != ISM_AZ_CUSTOM || az->provider == NULL)
			continue;
		v->res = l->r.label;
		ism_v_pop(v, 0);
		ism_v_push(v, "spec.provider.name");
		if (find(a, az->provider) == NULL)
			ism_v_err(v, az->provider_at,
				  "no extension provider \"%s\" (the Appliance's "
				  "spec.extensionProviders has %zu envoyExtAuthzHttp entr%s)",
				  az->provider, a->n_xas, a->n_xas == 1 ? "y" : "ies");
		else if (first != NULL && strcmp(first->az->provider, az->provider) != 0)
			ism_v_err(
			    v, az->provider_at,
			    "provider \"%s\": %s, which applies too, names \"%s\"; the CUSTOM "
			    "policies of one appliance name one provider (istiod needs "
			    "PILOT_ENABLE_MULTIPLE_CUSTOM_AUTHZ_PROVIDERS for more)",
			    az->provider, first->r.label, first->az->provider);
		else if (first == NULL)
			first = l;
	}
	v->res = "";
	ism_v_pop(v, 0);
}
