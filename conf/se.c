/* SPDX-License-Identifier: Apache-2.0 */
/* The ServiceEntry kind (hosts, ports, resolution, endpoints,
 * workloadSelector, exportTo), the endpoint a WorkloadEntry is, and the names
 * the master resolves for the DNS resolutions. */
#include <errno.h>
#include <stddef.h>
#include <string.h>
#include <sys/un.h>

#include "conf/defaults.h"
#include "conf/model.h"
#include "health/priority.h"

/* Whether proto (a protocol as the ports' list writes it) is one of list. */
static bool proto_in(const char *const *list, const char *proto)
{
	for (size_t i = 0; list[i] != NULL; i++)
		if (strcmp(list[i], proto) == 0)
			return true;
	return false;
}

/* What a ServiceEntry port's protocol asks the upstream connections to speak:
 * HTTP/2 for HTTP2, GRPC and GRPC-WEB (Istio's IsHTTP2: the gRPC-Web
 * translation happens at the gateway, the upstream gets HTTP/2); HTTP/1.1 for
 * the others (HTTPS too: TLS towards it is the DestinationRule's), when an HTTP
 * route names them: a tcp or tls route's tunnel carries bytes whatever the port
 * says. */
static uint8_t se_port_proto(const char *proto)
{
	static const char *const h2[] = {"HTTP2", "GRPC", "GRPC-WEB", NULL};

	return proto_in(h2, proto) ? ISM_UP_HTTP2 : ISM_UP_HTTP1;
}

/* Istio's ValidatePortName, of a service's ports and an endpoint's. */
#define PORT_NAME_RULE                                                                             \
	"as Istio: a DNS-1123 label, letters, digits and '-', starting and ending with a letter "  \
	"or digit, at most 63"

/* The ports of spec into se; the first one that is neither HTTP nor TLS to
 * Istio (protocol.Parse's IsHTTP, IsTLS: an unset protocol is neither), or
 * NULL. */
static const struct ism_node *parse_se_ports(struct ism_vctx *v, const struct ism_node *spec,
					     struct ism_cm_se *se)
{
	static const char *const keys[] = {"number", "name", "protocol", "targetPort", NULL};
	static const char *const protos[] = {"HTTP",	 "HTTPS",	 "HTTP2", "GRPC",
					     "GRPC-WEB", ISM_PROTOS_TCP, NULL};
	static const char *const later[] = {ISM_PROTOS_LATER, NULL};
	static const char *const http_tls[] = {"HTTP",	   "HTTPS", "HTTP2",	  "GRPC",
					       "GRPC-WEB", "TLS",   "HTTP_PROXY", NULL};
	const struct ism_node *opaque = NULL;
	const struct ism_node *l = ism_v_node(v, spec, "ports", true, ISM_NODE_SEQ);
	size_t old;

	if (l == NULL)
		return NULL;
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
		if (!ism_model_istio_label(p->name))
			ism_v_err_key(v, it, "name", "invalid port name \"%s\" (%s)", p->name,
				      PORT_NAME_RULE);
		/* Empty, as Istio takes it: sniffed, which a gateway's upstream
		 * speaks as HTTP/1.1, as when unset. */
		pn = ism_node_get(it, "protocol", NULL);
		proto = "";
		if ((pn == NULL || pn->kind != ISM_NODE_SCALAR || pn->len != 0) &&
		    ism_v_enum_nocase(v, it, "protocol", protos, later, &proto) > 0)
			p->proto = se_port_proto(proto);
		if (opaque == NULL && !proto_in(http_tls, proto))
			opaque = it;
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
	return opaque;
}

/* An endpoint's address unix://<path>: a Unix domain socket, as Istio
 * validates it (an absolute path to a file, or an abstract name after '@'),
 * for resolution STATIC (a WorkloadEntry's: selected by STATIC ones only). */
static void parse_unix(struct ism_vctx *v, const struct ism_node *n, const struct ism_cm_se *se,
		       struct ism_cm_se_ep *e)
{
	const char *path = e->address + sizeof(ISM_UNIX_PREFIX) - 1;
	struct sockaddr_un *un = (struct sockaddr_un *)&e->addr;
	const size_t len = strlen(path);
	size_t old = ism_v_push(v, ".address");
	const struct ism_node *at = ism_node_get(n, "address", NULL);

	if (se != NULL && se->resolution != ISM_RES_STATIC)
		ism_v_err(v, at, "a unix:// address needs resolution STATIC");
	else if (len == 0)
		ism_v_err(v, at, "unix address must not be empty");
	else if (path[0] != '@' && (path[0] != '/' || path[len - 1] == '/'))
		ism_v_err(v, at, "%s is not an absolute path to a file", path);
	else if (len >= sizeof(un->sun_path))
		ism_v_err(v, at, "the socket path is %zu bytes, over the %zu a Unix socket takes",
			  len, sizeof(un->sun_path) - 1);
	else {
		/* An abstract name has a NUL first, and no NUL after it. */
		memset(un, 0, sizeof(*un));
		un->sun_family = AF_UNIX;
		memcpy(un->sun_path, path, len);
		if (path[0] == '@')
			un->sun_path[0] = '\0';
		e->addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len +
					 (path[0] == '@' ? 0 : 1));
		e->is_unix = true;
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
	const char *why;
	size_t old;

	if (ism_v_str(v, n, "address", true, &e->address) <= 0 ||
	    ism_model_parse_ip(e->address, &e->addr, &e->addrlen))
		return;
	if (strncmp(e->address, ISM_UNIX_PREFIX, sizeof(ISM_UNIX_PREFIX) - 1) == 0) {
		parse_unix(v, n, se, e);
		return;
	}
	/* Istio: a name is an FQDN (ValidateFQDN). */
	why = ism_model_fqdn_err(e->address);
	if (names && why == NULL) {
		e->name = ism_model_lower_dup(v, e->address);
		return;
	}
	old = ism_v_push(v, ".address");
	if (names)
		ism_v_err(v, ism_node_get(n, "address", NULL),
			  "\"%s\" is not an IPv4 or IPv6 address, nor a valid host name (FQDN): %s",
			  e->address, why);
	else
		ism_v_err(v, ism_node_get(n, "address", NULL),
			  "must be an IPv4 or IPv6 address (or unix://<path>) unless resolution is "
			  "DNS or DNS_ROUND_ROBIN");
	ism_v_pop(v, old);
}

/* Istio's topology labels (pilot/pkg/serviceregistry/util/label, and
 * pkg/model's locality labels). */
#define LABEL_REGION	   "topology.kubernetes.io/region"
#define LABEL_ZONE	   "topology.kubernetes.io/zone"
#define LABEL_SUBZONE	   "topology.istio.io/subzone"
#define LABEL_NETWORK	   "topology.istio.io/network"
#define LABEL_LOCALITY	   "topology.istio.io/locality"
#define LABEL_LOCALITY_OLD "istio-locality"

/* An endpoint without `locality`: the one its labels give, as
 * Istio reads it (GetLocalityLabel: topology.istio.io/locality, else the
 * older istio-locality; SanitizeLocalityLabel: '.' separates the parts,
 * Kubernetes labels having no '/'). */
static void locality_from_labels(struct ism_vctx *v, struct ism_cm_se_ep *e)
{
	const char *key = LABEL_LOCALITY;
	const struct ism_node *l = ism_node_get(e->labels_at, key, NULL);
	char *loc;
	size_t old;

	if (l == NULL)
		l = ism_node_get(e->labels_at, key = LABEL_LOCALITY_OLD, NULL);
	if (l == NULL || l->kind != ISM_NODE_SCALAR || l->len == 0 ||
	    (loc = ism_v_strdup(v, l->str)) == NULL)
		return;
	if (strchr(loc, '/') == NULL)
		for (char *p = loc; *p != '\0'; p++)
			if (*p == '.')
				*p = '/';
	if (ism_locality_valid(loc, 1)) {
		e->locality = loc;
		return;
	}
	old = ism_v_push(v, ".labels.%s", key);
	ism_v_err(v, l,
		  "the endpoint's locality, \"%s\" (as Istio reads this label without a "
		  "locality field), must be \"region\", \"region.zone\" or "
		  "\"region.zone.subzone\" with non-empty parts (at most %zu bytes each)",
		  loc, ISM_LOCALITY_PART_MAX);
	ism_v_pop(v, old);
}

/* The labels Istio adds to an endpoint's own (AugmentLabels): region, zone
 * and subzone from its locality, in place of any it writes, and
 * topology.istio.io/network from its network where it writes none (or an
 * empty one). They go last in e->labels (e->n_topo of them), the labels
 * they replace left out. */
static void topology_labels(struct ism_vctx *v, struct ism_cm_se_ep *e, const char *network)
{
	static const char *const parts[] = {LABEL_REGION, LABEL_ZONE, LABEL_SUBZONE};
	const struct ism_node *wn = ism_node_get(e->labels_at, LABEL_NETWORK, NULL);
	struct ism_cm_label topo[4], *all;
	const char *p = e->locality;
	size_t nt = 0, n = 0;

	for (size_t i = 0; i < 3 && *p != '\0'; i++) {
		size_t len = strcspn(p, "/");
		char *val = len > 0 ? ism_pool_strndup(&v->conf->pool, p, len) : NULL;

		if (len > 0 && val == NULL) {
			v->nomem = 1;
			return;
		}
		if (len > 0)
			topo[nt++] = (struct ism_cm_label){parts[i], val};
		p += len + (p[len] == '/');
	}
	if (network != NULL && network[0] != '\0' &&
	    (wn == NULL || (wn->kind == ISM_NODE_SCALAR && wn->len == 0)))
		topo[nt++] = (struct ism_cm_label){LABEL_NETWORK, network};
	if (nt == 0)
		return;
	all = ism_v_alloc(v, e->n_labels + nt, sizeof(*all));
	if (all == NULL)
		return;
	for (size_t i = 0; i < e->n_labels; i++) {
		bool replaced = false;

		for (size_t j = 0; j < nt && !replaced; j++)
			replaced = strcmp(e->labels[i].key, topo[j].key) == 0;
		if (!replaced)
			all[n++] = e->labels[i];
	}
	memcpy(all + n, topo, nt * sizeof(*topo));
	e->labels = all;
	e->n_labels = n + nt;
	e->n_topo = nt;
}

void ism_model_parse_endpoint(struct ism_vctx *v, const struct ism_node *n, struct ism_cm_se *se,
			      struct ism_cm_se_ep *e)
{
	static const char *const keys[] = {"address", "ports",	 "labels",	   "locality",
					   "weight",  "network", "serviceAccount", NULL};
	const struct ism_node *pm;
	const char *network = NULL;
	size_t old;

	e->weight = 1;
	e->locality = "";
	e->at = n;
	if (!ism_v_expect(v, n, ISM_NODE_MAP))
		return;
	ism_v_keys(v, n, keys, NULL);
	if (ism_v_str(v, n, "serviceAccount", false, &e->service_account) > 0 &&
	    !ism_model_dns1123_subdomain(e->service_account))
		ism_v_err_key(v, n, "serviceAccount",
			      "\"%s\" is not a service account name (lowercase letters, digits, "
			      "'-' and '.')",
			      e->service_account);
	parse_ep_address(v, n, se, e);
	e->labels_at = ism_model_istio_labels(v, n, "labels", &e->labels, &e->n_labels);
	if (ism_v_str(v, n, "locality", false, &e->locality) > 0 &&
	    !ism_locality_valid(e->locality, 1)) {
		old = ism_v_push(v, ".locality");
		ism_v_err(v, ism_node_get(n, "locality", NULL),
			  "must be \"region\", \"region/zone\" or \"region/zone/subzone\" with "
			  "non-empty parts (at most %zu bytes each)",
			  ISM_LOCALITY_PART_MAX);
		ism_v_pop(v, old);
	}
	if (ism_node_get(n, "locality", NULL) == NULL)
		locality_from_labels(v, e);
	/* Any uint32, as Envoy takes it; 0 is 1, as Istio's
	 * GetLoadBalancingWeight reads it. A locality's sum is bounded
	 * (xref_weights). */
	if (ism_v_u32(v, n, "weight", false, 0, UINT32_MAX, &e->weight) > 0 && e->weight == 0)
		e->weight = 1;
	ism_v_str(v, n, "network", false, &network);
	topology_labels(v, e, network);
	pm = ism_v_node(v, n, "ports", false, ISM_NODE_MAP);
	if (pm == NULL)
		return;
	if (e->is_unix) {
		ism_v_err_key(v, n, "ports", "unix endpoint %s must not include ports", e->address);
		return;
	}
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

		if (!known || !ism_model_istio_label(name)) {
			size_t o2 = ism_v_push(v, ".%s", name);

			if (!ism_model_istio_label(name))
				ism_v_err(v, pm->pairs[i].key, "invalid port name \"%s\" (%s)",
					  name, PORT_NAME_RULE);
			else
				ism_v_err(v, pm->pairs[i].key, "no port named \"%s\" in spec.ports",
					  name);
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
	ism_model_one_of(v, spec, both, "endpoints and workloadSelector");
	old = ism_v_push(v, ".workloadSelector");
	ism_v_keys(v, n, keys, NULL);
	ism_model_labels_field(v, n, "labels", &se->selector, &se->n_selector);
	if (se->n_selector == 0)
		ism_v_warn(v, n,
			   "no labels: every WorkloadEntry of namespace %s is an endpoint (Istio "
			   "warns the same)",
			   se->r.ns);
	ism_v_pop(v, old);
}

/* spec.addresses: not used here (the VIPs of sidecars' interception), but
 * checked as Istio's ValidateIPSubnet: an IP address, or a CIDR block. */
static void parse_addresses(struct ism_vctx *v, const struct ism_node *spec,
			    const struct ism_cm_se *se)
{
	const struct ism_node *l;
	size_t n;
	const char **a = ism_v_strlist(v, spec, "addresses", false, &n, &l);
	struct ism_subnet sn;
	bool cidr = false;

	for (size_t i = 0; a != NULL && i < n; i++) {
		size_t old = ism_v_push(v, ".addresses[%zu]", i);

		if (!ism_model_subnet(a[i], &sn))
			ism_v_err(v, l->items[i], "%s is not a valid %s (as Istio)", a[i],
				  strchr(a[i], '/') != NULL ? "CIDR block" : "IP");
		else if (strchr(a[i], '/') != NULL && !cidr && se->resolution != ISM_RES_STATIC)
			ism_v_err(
			    v, l->items[i],
			    "CIDR addresses are allowed only for NONE/STATIC resolution types "
			    "(as Istio)");
		cidr = cidr || strchr(a[i], '/') != NULL;
		ism_v_pop(v, old);
	}
}

void ism_model_parse_se(struct ism_vctx *v, const struct ism_node *spec, struct ism_cm_se *se)
{
	static const char *const keys[] = {
	    "hosts",	"ports",     "resolution",	"location",	    "endpoints",
	    "exportTo", "addresses", "subjectAltNames", "workloadSelector", NULL};
	static const char *const locs[] = {"MESH_EXTERNAL", "MESH_INTERNAL", NULL};
	const struct ism_node *l, *opaque;
	const char **hosts, *s = "STATIC";
	size_t nh, old;

	ism_v_keys(v, spec, keys, NULL);
	hosts = ism_v_strlist(v, spec, "hosts", true, &nh, &l);
	se->hosts = ism_v_alloc(v, nh, sizeof(*se->hosts));
	for (size_t i = 0; hosts != NULL && se->hosts != NULL && i < nh; i++) {
		/* Istio's ValidateWildcardDomain, and no "*"; a wildcard that
		 * passes is Istio's, not isthmus's yet. */
		const char *why = ism_model_domain_err(hosts[i]);

		if (why != NULL || hosts[i][0] == '*') {
			old = ism_v_push(v, ".hosts[%zu]", i);
			if (why != NULL)
				ism_v_err(v, l->items[i], "invalid host \"%s\": %s", hosts[i], why);
			else if (strcmp(hosts[i], "*") == 0)
				ism_v_err(
				    v, l->items[i],
				    "invalid host * (as Istio: a ServiceEntry cannot take every "
				    "host)");
			else
				ism_v_err(v, l->items[i],
					  "a wildcard host (\"%s\") is " ISM_NOT_IMPL
					  " in a ServiceEntry",
					  hosts[i]);
			ism_v_pop(v, old);
			continue;
		}
		se->hosts[se->n_hosts++] = ism_model_host(v, hosts[i], se->r.ns);
	}
	opaque = parse_se_ports(v, spec, se);
	se_resolution(v, spec, se);
	/* Istio: the hosts of a port that is neither HTTP nor TLS cannot be
	 * told apart (no Host, no SNI). */
	if (nh > 1 && opaque != NULL) {
		const struct ism_node *num = ism_node_get(opaque, "number", NULL);
		const struct ism_node *pr = ism_node_get(opaque, "protocol", NULL);
		const char *ps =
		    pr != NULL && pr->kind == ISM_NODE_SCALAR && pr->len ? pr->str : NULL;

		ism_v_err_key(
		    v, spec, "hosts",
		    "multiple hosts provided with non-HTTP, non-TLS ports (as Istio): port "
		    "%s %s%s",
		    num != NULL && num->kind == ISM_NODE_SCALAR ? num->str : "?",
		    ps != NULL ? "is " : "has no protocol", ps != NULL ? ps : "");
	}
	if (ism_v_enum(v, spec, "location", locs, NULL, &s) > 0) {
		se->mesh_internal = strcmp(s, "MESH_INTERNAL") == 0;
		se->location_at = ism_node_get(spec, "location", NULL);
	}
	ism_model_parse_export(v, spec, se->r.ns, ISM_EXPORT_SE, &se->export_to, &se->n_export_to);
	parse_addresses(v, spec, se);
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

		ism_model_parse_endpoint(v, l->items[i], se, &se->eps[se->n_eps++]);
		if (se->eps[se->n_eps - 1].is_unix && se->n_ports != 1)
			ism_v_err(v, l->items[i],
				  "exactly 1 service port required for unix endpoints (%zu in "
				  "spec.ports)",
				  se->n_ports);
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

/* Calls cb once for each distinct name the DNS ServiceEntries resolve, with
 * the entry that first names it, until cb returns other than 0 (returned). */
static int walk_names(const struct ism_conf *conf,
		      int (*cb)(void *ctx, const struct ism_cm_se *se, const char *name), void *ctx)
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
				rc = cb(ctx, se, name);
		}
	}
	ism_strmap_free(&seen);
	return rc;
}

struct name_cb {
	ism_conf_name_cb cb;
	void *ctx;
	struct ism_vctx *v;
	size_t n;
};

static int pass_name(void *ctx, const struct ism_cm_se *se, const char *name)
{
	struct name_cb *c = ctx;

	(void)se;
	return c->cb(c->ctx, name);
}

int ism_conf_dns_names(const struct ism_conf *conf, ism_conf_name_cb cb, void *ctx)
{
	struct name_cb c = {.cb = cb, .ctx = ctx};

	return walk_names(conf, pass_name, &c);
}

static int count_name(void *ctx, const struct ism_cm_se *se, const char *name)
{
	struct name_cb *c = ctx;

	if (++c->n <= ISM_DNS_MAX_NAMES)
		return 0;
	c->v->res = se->r.label;
	ism_v_pop(c->v, 0);
	ism_v_push(c->v, "spec");
	ism_v_err(c->v, se->r.at,
		  "%s is one name more than the %u the master resolves (the distinct names of "
		  "the DNS ServiceEntries)",
		  name, ISM_DNS_MAX_NAMES);
	return -E2BIG;
}

void ism_model_xref_dns_names(struct ism_vctx *v)
{
	struct name_cb c = {.v = v};

	walk_names(v->conf, count_name, &c);
}
