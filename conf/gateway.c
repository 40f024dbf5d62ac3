/* SPDX-License-Identifier: Apache-2.0 */
/* The Gateway kind: its servers, their ports (the protocols isthmus serves
 * on them), hosts and bind addresses; their tls is conf/tls.c's. */
#include <string.h>

#include "conf/model.h"

uint8_t ism_model_server_kind(const char *protocol, bool passthrough)
{
	if (passthrough)
		return ISM_SRV_PASSTHROUGH;
	if (strcmp(protocol, "HTTPS") == 0 || strcmp(protocol, "TLS") == 0)
		return ISM_SRV_HTTPS;
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
		if ((sh->ns != NULL && sh->ns[0] == '\0') || !ism_model_host_syntax_ok(h)) {
			ism_v_err(v, hl->items[i], "invalid host \"%s\"", hosts[i]);
		} else {
			sh->dns = ism_model_lower_dup(v, h);
			s->n_hosts++;
		}
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

void ism_model_parse_gateway(struct ism_vctx *v, const struct ism_node *spec, struct ism_cm_gw *g)
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
