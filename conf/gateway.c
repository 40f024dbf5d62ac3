/* SPDX-License-Identifier: Apache-2.0 */
/* The Gateway kind: its servers, their ports (the protocols isthmus serves
 * on them), hosts and bind addresses; their tls is conf/tls.c's. */
#include <string.h>

#include "conf/model.h"

uint8_t ism_model_server_kind(const char *protocol, bool passthrough)
{
	if (passthrough)
		return ISM_SRV_PASSTHROUGH;
	if (strcmp(protocol, "HTTPS") == 0)
		return ISM_SRV_HTTPS;
	if (strcmp(protocol, "TLS") == 0)
		return ISM_SRV_TLS_TCP;
	for (const char *const *p = (const char *const[]){ISM_PROTOS_TCP, NULL}; *p; p++)
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

/* Port, as Istio's validateServerPort: number, name and protocol required
 * (an absent protocol is Istio's invalid protocol ""), targetPort an error. */
static void parse_server_port(struct ism_vctx *v, const struct ism_node *srv,
			      struct ism_cm_server *s)
{
	static const char *const keys[] = {"number", "name", "protocol", "targetPort", NULL};
	/* HTTP2, GRPC and GRPC-WEB servers are plaintext HTTP servers, as in
	 * Istio (its validation refuses TLS on them); every plaintext listener
	 * takes HTTP/2 with prior knowledge, and HTTPS ones offer h2 by ALPN. A
	 * GRPC-WEB server's port translates gRPC-Web requests to gRPC, as
	 * Envoy's grpc_web filter that Istio adds to that port only. */
	static const char *const ok[] = {"HTTP",     "HTTPS",	     "HTTP2", "GRPC",
					 "GRPC-WEB", ISM_PROTOS_TCP, NULL};
	static const char *const later[] = {ISM_PROTOS_LATER, NULL};
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
		ism_v_err_key(v, p, "targetPort",
			      "targetPort has no impact on Gateways (as Istio)");
	ism_v_str(v, p, "name", true, &s->port_name);
	if (ism_node_get(p, "protocol", NULL) == NULL) {
		size_t o2 = ism_v_push(v, ".protocol");

		ism_v_err(v, p, "required field missing (Istio: invalid protocol \"\")");
		ism_v_pop(v, o2);
	}
	ism_v_enum_nocase(v, p, "protocol", ok, later, &s->protocol);
	ism_v_pop(v, old);
}

/* What Istio's ValidateNamespaceSlashWildcardHostname (gateway, not from the
 * Gateway API) says of server host h, after namespace ns/ (NULL: none). */
static const char *host_err(const char *ns, const char *h)
{
	struct sockaddr_storage ss;
	socklen_t len;
	const char *why;

	if (ns != NULL && (ns[0] == '\0' || h[0] == '\0'))
		return "config namespace and dnsName in host entry cannot be empty";
	if (ns != NULL && strcmp(ns, "*") != 0 && strcmp(ns, ".") != 0 &&
	    !ism_model_dns1123_label(ns))
		return "invalid namespace value in gateway (*, . or a namespace name)";
	if (strcmp(h, "*") != 0 && strchr(h, '.') == NULL)
		return "short names (non FQDN) are not allowed";
	/* A gateway takes an IP address as a host too. */
	if ((why = ism_model_domain_err(h)) != NULL && ism_model_parse_ip(h, &ss, &len) &&
	    strchr(h, '*') == NULL)
		return NULL;
	if (why == NULL && ism_model_partial_wild(h))
		return "partial wildcard not allowed"; /* Istio's ValidatePartialWildCard */
	return why;
}

static void parse_server(struct ism_vctx *v, const struct ism_node *n, struct ism_cm_server *s)
{
	static const char *const keys[] = {"port", "hosts",	      "bind", "name",
					   "tls",  "defaultEndpoint", NULL};
	const struct ism_node *hl;
	const char **hosts, *dflt, *why;
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

		if (!ism_model_parse_ip(s->bind, &ss, &len)) {
			old = ism_v_push(v, ".bind");
			ism_v_err(v, ism_node_get(n, "bind", NULL),
				  "must be an IPv4 or IPv6 address (unix:// is " ISM_NOT_IMPL ")");
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
		if ((why = host_err(sh->ns, h)) != NULL) {
			ism_v_err(v, hl->items[i], "invalid host \"%s\": %s", hosts[i], why);
		} else {
			sh->dns = ism_model_lower_dup(v, h);
			s->n_hosts++;
		}
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

/* Istio's ValidateGateway: port names unique among the servers of one
 * Gateway; the last parsed (index i) against those before it, in names. */
static void unique_port_name(struct ism_vctx *v, const struct ism_cm_server *s, size_t i,
			     struct ism_strmap *names)
{
	const struct ism_node *p = s->at != NULL ? ism_node_get(s->at, "port", NULL) : NULL;
	uint32_t first;
	size_t old;

	if (s->port_name == NULL || p == NULL || names == NULL ||
	    ism_v_map_add(v, names, s->port_name, strlen(s->port_name), (uint32_t)i, &first) != 0)
		return;
	old = ism_v_push(v, ".port");
	ism_v_err_key(v, p, "name",
		      "port names in servers must be unique: duplicate name %s (servers[%u] has it "
		      "too)",
		      s->port_name, first);
	ism_v_pop(v, old);
}

void ism_model_parse_gateway(struct ism_vctx *v, const struct ism_node *spec, struct ism_cm_gw *g)
{
	static const char *const keys[] = {"selector", "servers", NULL};
	const struct ism_node *l;
	struct ism_strmap *names;
	size_t old;

	ism_v_keys(v, spec, keys, NULL);
	g->selector_at = ism_model_labels_field(v, spec, "selector", &g->selector, &g->n_selector);
	l = ism_v_node(v, spec, "servers", true, ISM_NODE_SEQ);
	if (l == NULL)
		return;
	if (l->n == 0)
		ism_v_err_key(v, spec, "servers",
			      "gateway must have at least one server (as Istio)");
	g->servers = ism_v_alloc(v, l->n, sizeof(*g->servers));
	if (g->servers == NULL)
		return;
	names = ism_v_map(v, l->n);
	old = ism_v_push(v, ".servers");
	for (size_t i = 0; i < l->n; i++) {
		size_t o2 = ism_v_push(v, "[%zu]", i);

		parse_server(v, l->items[i], &g->servers[g->n_servers++]);
		unique_port_name(v, &g->servers[g->n_servers - 1], i, names);
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}
