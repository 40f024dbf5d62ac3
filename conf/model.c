/* SPDX-License-Identifier: Apache-2.0 */
/* Phase 2: per-resource validation of the YAML tree into the model.
 *
 * Each mapping is checked against the fields Istio's API (or the Appliance
 * kind) defines: a field isthmus implements is validated and stored; a field
 * Istio defines that isthmus does not implement yet is an error naming it, so
 * nothing a user wrote is silently ignored; anything else is "unknown field".
 *
 * This file reads a document's kind, apiVersion and metadata and hands its
 * spec to the kind's parser (appliance.c, gateway.c, vs.c, dr.c, se.c,
 * telemetry.c); it holds what those share (host names, addresses, labels,
 * exportTo, workload selectors) and the two small kinds, PeerAuthentication
 * and ProxyConfig. */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>

#include "conf/model.h"
#include "lib/addr.h"

/* --- small shared pieces --- */

char *ism_model_lower_dup(struct ism_vctx *v, const char *s)
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
		return ism_model_lower_dup(v, host);
	snprintf(buf, sizeof(buf), "%s.%s.svc.cluster.local", host, ns);
	return ism_model_lower_dup(v, buf);
}

#define DNS_LABEL   "abcdefghijklmnopqrstuvwxyz0123456789-"
#define DNS_LOWER   DNS_LABEL "."
#define DNS_ANYCASE "ABCDEFGHIJKLMNOPQRSTUVWXYZ" DNS_LABEL /* letters of either case, digits, - */

/* Whether s (len bytes, 1..max) is a name of charset's characters that starts
 * and ends with a letter or digit: the shape of every Kubernetes and Istio
 * name rule below. */
static bool name_ok(const char *s, size_t len, size_t max, const char *charset)
{
	size_t n = strlen(charset);

	if (len == 0 || len > max || !isalnum((unsigned char)s[0]) ||
	    !isalnum((unsigned char)s[len - 1]))
		return false;
	for (size_t i = 0; i < len; i++)
		if (memchr(charset, s[i], n) == NULL)
			return false;
	return true;
}

/* Whether label (len bytes) is one of Istio's DNS-1123 labels
 * (pkg/config/labels: [a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?, at most 63). */
static bool istio_label(const char *label, size_t len)
{
	return name_ok(label, len, 63, DNS_ANYCASE);
}

bool ism_model_istio_label(const char *s)
{
	return istio_label(s, strlen(s));
}

#define LABEL_ERR                                                                                  \
	"invalid label (letters, digits and '-', starting and ending with a letter or digit, at "  \
	"most 63)"

/* What Istio's CheckDNS1123Preconditions says of s (n bytes); NULL: fine. */
static const char *dns_length_err(size_t n)
{
	if (n == 0)
		return "empty domain name not allowed";
	if (n > 255)
		return "domain name too long (max 255)";
	return NULL;
}

/* What Istio's ValidateDNS1123Labels says of s: DNS-1123 labels (either
 * case) joined by '.', a last empty one allowed ("istio.io."), the top level
 * one not all digits; NULL when valid. */
static const char *dns1123_labels_err(const char *s)
{
	const char *tld = strrchr(s, '.') != NULL ? strrchr(s, '.') + 1 : s;

	if (*tld != '\0' && tld[strspn(tld, "0123456789")] == '\0')
		return "the top level domain cannot be all-numeric";
	for (const char *p = s; *p != '\0';) {
		size_t len = strcspn(p, ".");

		if (!istio_label(p, len))
			return LABEL_ERR;
		p += len;
		if (*p == '.')
			p++; /* a last empty label: "istio.io." */
	}
	return NULL;
}

bool ism_model_partial_wild(const char *s)
{
	return strchr(s, '*') != NULL && strcmp(s, "*") != 0 && strncmp(s, "*.", 2) != 0;
}

/* Istio's IsWildcardDNS1123Label: "*", a label, or "*" or "*-" and a label. */
static bool wild_label(const char *s, size_t len)
{
	if (len > 0 && s[0] == '*') {
		s++, len--;
		if (len > 0 && s[0] == '-')
			s++, len--;
		if (len == 0)
			return s[-1] == '*';
	}
	return istio_label(s, len);
}

const char *ism_model_domain_err(const char *s)
{
	size_t n = strlen(s), first = strcspn(s, ".");

	if (dns_length_err(n) != NULL)
		return dns_length_err(n);
	if (!wild_label(s, first))
		return LABEL_ERR;
	return s[first] == '\0' ? NULL : dns1123_labels_err(s + first + 1);
}

const char *ism_model_fqdn_err(const char *s)
{
	const char *why = dns_length_err(strlen(s));

	return why != NULL ? why : dns1123_labels_err(s);
}

bool ism_model_parse_ip(const char *s, struct sockaddr_storage *ss, socklen_t *len)
{
	return ism_addr_parse(s, ss, len);
}

bool ism_model_parse_hostport(const char *s, struct sockaddr_storage *ss, socklen_t *len)
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
		/* An IPv6 address with a port is bracketed: "::1:6316" would be
		 * the address ::0.1.99.22 to the one who reads an address. */
		colon = strchr(s, ':');
		if (colon == NULL || strchr(colon + 1, ':') != NULL)
			return false;
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= sizeof(host))
		return false;
	memcpy(host, hs, hl);
	host[hl] = '\0';
	if (ism_parse_u64(colon + 1, &port) < 0 || port == 0 || port > 65535)
		return false;
	if (!ism_model_parse_ip(host, ss, len))
		return false;
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons((uint16_t)port);
	else
		((struct sockaddr_in6 *)ss)->sin6_port = htons((uint16_t)port);
	return true;
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

		if (ism_v_string_scalar(v, val)) {
			l[n].key = map->pairs[i].key->str;
			l[n].value = val->str;
			n++;
		}
		ism_v_pop(v, old);
	}
	return n;
}

const struct ism_node *ism_model_labels_field(struct ism_vctx *v, const struct ism_node *map,
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

/* Kubernetes' qualified name, as Istio's qualifiedNameFmt:
 * (?:[A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9], len bytes. */
static bool qualified_name(const char *s, size_t len)
{
	return name_ok(s, len, SIZE_MAX, DNS_ANYCASE "_.");
}

/* What Istio's labels.Instance.Validate says of key k and value val: the
 * key an optional DNS prefix (labels joined by '.', at most 253) and '/',
 * then a qualified name of at most 63; the value empty or a qualified name;
 * NULL when both pass. */
static const char *label_err(const char *k, const char *val)
{
	const char *slash = strchr(k, '/'), *name = slash != NULL ? slash + 1 : k;

	if (slash != NULL) {
		size_t plen = (size_t)(slash - k);

		if (plen > 253)
			return "invalid tag key (DNS prefix is too long)";
		for (const char *p = k; p < slash;) {
			size_t len = strcspn(p, "./");

			if (!istio_label(p, len))
				return "invalid tag key";
			p += len + (p[len] == '.');
		}
	}
	if (!qualified_name(name, strlen(name)))
		return "invalid tag key";
	if (strlen(name) > 63)
		return "invalid tag key (name is too long)";
	if (val[0] != '\0' && !qualified_name(val, strlen(val)))
		return "invalid tag value";
	return NULL;
}

const struct ism_node *ism_model_istio_labels(struct ism_vctx *v, const struct ism_node *map,
					      const char *key, struct ism_cm_label **out, size_t *n)
{
	const struct ism_node *l = ism_model_labels_field(v, map, key, out, n);
	const char *why;

	for (size_t i = 0; i < *n; i++)
		if ((why = label_err((*out)[i].key, (*out)[i].value)) != NULL) {
			size_t old = ism_v_push(v, ".%s.%s", key, (*out)[i].key);
			const struct ism_node *k = NULL;

			ism_node_get(l, (*out)[i].key, &k);
			ism_v_err(v, k, "%s: \"%s\": \"%s\" (as Istio's label validation)", why,
				  (*out)[i].key, (*out)[i].value);
			ism_v_pop(v, old);
		}
	return l;
}

void ism_model_key_err(struct ism_vctx *v, const struct ism_node *map, const char *key,
		       const char *msg)
{
	const struct ism_node *k = NULL;
	size_t old = ism_v_push(v, ".%s", key);

	ism_node_get(map, key, &k);
	ism_v_err(v, k, "%s", msg);
	ism_v_pop(v, old);
}

size_t ism_model_one_of(struct ism_vctx *v, const struct ism_node *map, const char *const *set,
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

/* --- names, exportTo, workload selectors --- */

/* Whether s is a name of the DNS's shape: 1..max bytes of charset, starting
 * and ending with a letter or digit. */
static bool dns_name_ok(const char *s, size_t max, const char *charset)
{
	return name_ok(s, strlen(s), max, charset);
}

bool ism_model_dns1123_subdomain(const char *s)
{
	return dns_name_ok(s, 253, DNS_LOWER);
}

bool ism_model_dns1123_label(const char *s)
{
	return dns_name_ok(s, 63, DNS_LABEL);
}

bool ism_model_trust_domain_ok(const char *s)
{
	return dns_name_ok(s, 255, DNS_LOWER "ABCDEFGHIJKLMNOPQRSTUVWXYZ");
}

/* exportTo entry e of a rule of namespace ns as Istio's validation compares
 * them: "." is the namespace itself. */
static const char *export_key(const char *e, const char *ns)
{
	return strcmp(e, ".") == 0 ? ns : e;
}

/* What Istio's validateExportTo says of entry e of a list of n (of a
 * resource of kind); NULL: nothing. */
static const char *export_entry_err(const char *e, size_t n, enum ism_export_kind kind)
{
	if (strcmp(e, "~") == 0 && kind != ISM_EXPORT_SE)
		return "exportTo ~ (none) is not allowed for Istio configuration objects";
	if (strcmp(e, "~") == 0)
		return n > 1 ? "cannot export service entry to no one (~) and someone" : NULL;
	if (strcmp(e, ".") != 0 && strcmp(e, "*") != 0 && !dns_name_ok(e, 63, DNS_LABEL))
		return "only ., *, or a valid DNS 1123 label is allowed as exportTo entry";
	if (strcmp(e, "*") == 0 && n > 1)
		return "cannot have both public (*) and non-public exportTo values for a resource";
	return NULL;
}

void ism_model_parse_export(struct ism_vctx *v, const struct ism_node *spec, const char *ns,
			    enum ism_export_kind kind, const char ***list, size_t *n)
{
	bool selector = kind == ISM_EXPORT_SELECTOR;
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

/* A workload selector's matchLabels (of selector n), validated as Istio's
 * validateWorkloadSelector: no empty key, no wildcard, a warning without
 * labels. */
void ism_model_selector_labels(struct ism_vctx *v, const struct ism_node *n,
			       struct ism_cm_label **labels, size_t *n_labels)
{
	ism_model_labels_field(v, n, "matchLabels", labels, n_labels);
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

/* One PolicyTargetReference at n (spec.targetRef, or an entry of
 * spec.targetRefs), as Istio's CRD schema (kind and name required) and
 * validatePolicyTargetReference: no namespace (cross-namespace references are
 * not supported), and a Service, ServiceEntry, Gateway or GatewayClass of its
 * group (a Service's group "" or "core"). */
static void target_ref(struct ism_vctx *v, const struct ism_node *n)
{
	static const char *const keys[] = {"group", "kind", "name", "namespace", NULL};
	static const char *const allowed[][2] = {{"", "Service"},
						 {"core", "Service"},
						 {"networking.istio.io", "ServiceEntry"},
						 {"gateway.networking.k8s.io", "Gateway"},
						 {"gateway.networking.k8s.io", "GatewayClass"}};
	const char *group = "", *kind = NULL, *name = NULL, *ns = "";
	const struct ism_node *g, *s;
	bool ok = false;

	if (!ism_v_expect(v, n, ISM_NODE_MAP) || !ism_v_keys(v, n, keys, NULL))
		return;
	/* group and namespace may be empty ("" is the core group, and the
	 * policy's own namespace). */
	if ((g = ism_v_node(v, n, "group", false, ISM_NODE_SCALAR)) != NULL && !ism_node_is_null(g))
		group = g->str;
	if ((s = ism_v_node(v, n, "namespace", false, ISM_NODE_SCALAR)) != NULL &&
	    !ism_node_is_null(s))
		ns = s->str;
	ism_v_str(v, n, "name", true, &name);
	if (ns[0] != '\0')
		ism_v_err_key(v, n, "namespace",
			      "targetRef namespace must not be set; cross namespace referencing "
			      "is not supported");
	if (ism_v_str(v, n, "kind", true, &kind) <= 0)
		return;
	for (size_t i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
		ok = ok || (strcmp(allowed[i][0], group) == 0 && strcmp(allowed[i][1], kind) == 0);
	if (!ok)
		ism_v_err_key(
		    v, n, ism_node_get(n, "group", NULL) != NULL ? "group" : "kind",
		    "targetRef must be to one of core/Service, "
		    "networking.istio.io/ServiceEntry, gateway.networking.k8s.io/Gateway, "
		    "gateway.networking.k8s.io/GatewayClass but was %s/%s",
		    group, kind);
}

const struct ism_node *ism_model_policy_selector(struct ism_vctx *v, const struct ism_node *spec,
						 struct ism_cm_label **sel, size_t *n_sel)
{
	static const char *const one[] = {"selector", "targetRef", "targetRefs", NULL};
	static const char *const skeys[] = {"matchLabels", NULL};
	const struct ism_node *n = ism_v_node(v, spec, "selector", false, ISM_NODE_MAP), *l;
	size_t old;

	ism_model_one_of(v, spec, one, "targetRefs, targetRef or selector");
	if (n != NULL) {
		old = ism_v_push(v, ".selector");
		if (ism_v_keys(v, n, skeys, NULL))
			ism_model_selector_labels(v, n, sel, n_sel);
		ism_v_pop(v, old);
	}
	if (ism_node_get(spec, "targetRef", NULL) != NULL) {
		old = ism_v_push(v, ".targetRef");
		target_ref(v, ism_node_get(spec, "targetRef", NULL));
		ism_v_pop(v, old);
	}
	if ((l = ism_v_node(v, spec, "targetRefs", false, ISM_NODE_SEQ)) == NULL)
		return n;
	if (l->n > 16)
		ism_v_err_key(v, spec, "targetRefs", "at most 16 targetRefs (Istio's schema)");
	for (size_t i = 0; i < l->n; i++) {
		old = ism_v_push(v, ".targetRefs[%zu]", i);
		target_ref(v, l->items[i]);
		ism_v_pop(v, old);
	}
	return n;
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
	pa->selector_at = n;
	if (n != NULL) {
		old = ism_v_push(v, ".selector");
		ism_v_keys(v, n, skeys, NULL);
		ism_model_labels_field(v, n, "matchLabels", &pa->sel, &pa->n_sel);
		/* Istio: without labels, a namespace or mesh policy. */
		pa->has_selector = pa->n_sel > 0;
		ism_v_pop(v, old);
	}
	n = ism_v_node(v, spec, "mtls", false, ISM_NODE_MAP);
	if (n != NULL) {
		old = ism_v_push(v, ".mtls");
		pa->mode = pa_mode(v, n);
		pa->mode_at = ism_node_get(n, "mode", NULL);
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
		if (!ism_v_yaml_int(v, k)) {
			/* reported */
		} else if (ism_parse_u64(k->str, &port) < 0 || port == 0 || port > 65535) {
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

/* --- documents --- */

struct kind_info {
	const char *kind;
	const char *group; /* apiVersion before the '/' */
	const char *const *versions;
	/* a kind Istio has no gateway use: why; its document loads with that
	 * warning and nothing of it is read. NULL: a kind isthmus reads. */
	const char *no_effect;
	/* a kind isthmus does not implement yet: an error where a document of it
	 * applies to the appliance (conf/later.c) */
	bool later;
};

static const char *const net_versions[] = {"v1alpha3", "v1beta1", "v1", NULL};
static const char *const sec_versions[] = {"v1beta1", "v1", NULL};
static const char *const app_versions[] = {"v1", NULL};
static const char *const pc_versions[] = {"v1beta1", NULL};
static const char *const tel_versions[] = {"v1alpha1", "v1", NULL};
static const char *const ef_versions[] = {"v1alpha3", NULL};
static const char *const wasm_versions[] = {"v1alpha1", NULL};

static const struct kind_info kinds[] = {
    {"Appliance", "isthmus.io", app_versions, NULL, false},
    {"Gateway", "networking.istio.io", net_versions, NULL, false},
    {"VirtualService", "networking.istio.io", net_versions, NULL, false},
    {"DestinationRule", "networking.istio.io", net_versions, NULL, false},
    {"ServiceEntry", "networking.istio.io", net_versions, NULL, false},
    {"PeerAuthentication", "security.istio.io", sec_versions, NULL, false},
    {"ProxyConfig", "networking.istio.io", pc_versions, NULL, false},
    {"Telemetry", "telemetry.istio.io", tel_versions, NULL, false},
    {"WorkloadEntry", "networking.istio.io", net_versions, NULL, false},
    {"Sidecar", "networking.istio.io", net_versions,
     "a Sidecar has no effect on a gateway: Istio's gateways always use the default sidecar "
     "scope",
     false},
    {"WorkloadGroup", "networking.istio.io", net_versions,
     "a WorkloadGroup has no effect here: Istio makes WorkloadEntries from it as virtual "
     "machines register with istiod, which none does with isthmus (write the WorkloadEntries)",
     false},
    {"EnvoyFilter", "networking.istio.io", ef_versions, NULL, true},
    {"AuthorizationPolicy", "security.istio.io", sec_versions, NULL, true},
    {"RequestAuthentication", "security.istio.io", sec_versions, NULL, true},
    {"WasmPlugin", "extensions.istio.io", wasm_versions, NULL, true},
};

/* Every apiVersion of kind k, "group/v1, group/v1beta1 or group/v1alpha3",
 * into buf. */
static const char *versions_of(const struct kind_info *k, char *buf, size_t cap)
{
	size_t n = 0;

	buf[0] = '\0';
	for (const char *const *ver = k->versions; *ver && n < cap; ver++)
		n += (size_t)snprintf(buf + n, cap - n, "%s%s/%s",
				      ver == k->versions ? ""
				      : ver[1] == NULL	 ? " or "
							 : ", ",
				      k->group, *ver);
	return buf;
}

static const struct kind_info *check_kind(struct ism_vctx *v, const struct ism_node *doc)
{
	const char *kind = NULL, *api = NULL;
	char vbuf[256];
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
		ism_v_err(v, an, "\"%s\" is not an apiVersion of %s (use %s)", api, kind,
			  versions_of(k, vbuf, sizeof(vbuf)));
		ism_v_pop(v, 0);
		return NULL;
	}
	ism_v_push(v, "kind");
	ism_v_err(v, kn, "unknown kind \"%s\"", kind);
	ism_v_pop(v, 0);
	return NULL;
}

/* Days from 1970-01-01 to y-m-d of the proleptic Gregorian calendar. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
	int64_t era;
	unsigned yoe, doy, doe;

	y -= m <= 2;
	era = (y >= 0 ? y : y - 399) / 400;
	yoe = (unsigned)(y - era * 400);
	doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
	doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
	return era * 146097 + (int64_t)doe - 719468;
}

/* n digits of s as a number, or -1. */
static int digits(const char *s, int n)
{
	int v = 0;

	for (int i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	return v;
}

bool ism_model_parse_time(const char *s, int64_t *out)
{
	static const unsigned char mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
	int y = digits(s, 4), mo, d, h, mi, sec, off = 0;
	const char *p;

	if (y < 0 || s[4] != '-' || (mo = digits(s + 5, 2)) < 1 || mo > 12 || s[7] != '-' ||
	    (d = digits(s + 8, 2)) < 1 || d > mdays[mo - 1] ||
	    (mo == 2 && d == 29 && (y % 4 != 0 || (y % 100 == 0 && y % 400 != 0))) ||
	    (s[10] != 'T' && s[10] != 't') || (h = digits(s + 11, 2)) < 0 || h > 23 ||
	    s[13] != ':' || (mi = digits(s + 14, 2)) < 0 || mi > 59 || s[16] != ':' ||
	    (sec = digits(s + 17, 2)) < 0 || sec > 60)
		return false;
	p = s + 19;
	if (*p == '.') {
		if (p[1] < '0' || p[1] > '9')
			return false;
		for (p++; *p >= '0' && *p <= '9'; p++)
			;
	}
	if ((*p == '+' || *p == '-') && digits(p + 1, 2) >= 0 && digits(p + 1, 2) <= 23 &&
	    p[3] == ':' && digits(p + 4, 2) >= 0 && digits(p + 4, 2) <= 59 && p[6] == '\0') {
		off = (digits(p + 1, 2) * 60 + digits(p + 4, 2)) * 60 * (*p == '-' ? -1 : 1);
	} else if (!((*p == 'Z' || *p == 'z') && p[1] == '\0')) {
		return false;
	}
	*out =
	    days_from_civil(y, (unsigned)mo, (unsigned)d) * 86400 + h * 3600 + mi * 60 + sec - off;
	return true;
}

int ism_model_by_creation(const struct ism_cm_res *a, const struct ism_cm_res *b)
{
	int r;

	if (a->has_created != b->has_created)
		return a->has_created ? 1 : -1;
	if (a->created != b->created)
		return a->created < b->created ? -1 : 1;
	r = strcmp(a->name, b->name);
	return r != 0 ? r : strcmp(a->ns, b->ns);
}

/* An error at metadata field key of md; false. */
static bool md_fail(struct ism_vctx *v, const struct ism_node *md, const char *key, const char *msg)
{
	size_t old = ism_v_push(v, ".%s", key);

	ism_v_err(v, ism_node_get(md, key, NULL), "%s", msg);
	ism_v_pop(v, old);
	return false;
}

static bool parse_metadata(struct ism_vctx *v, const struct ism_node *doc, struct ism_cm_res *r)
{
	static const char *const keys[] = {"name",
					   "namespace",
					   "labels",
					   "annotations",
					   "uid",
					   "generation",
					   "resourceVersion",
					   "creationTimestamp",
					   "managedFields",
					   "finalizers",
					   "ownerReferences",
					   "generateName",
					   "deletionTimestamp",
					   "deletionGracePeriodSeconds",
					   "selfLink",
					   NULL};
	const struct ism_node *md = ism_v_node(v, doc, "metadata", true, ISM_NODE_MAP);
	const char *ts;
	bool ok = true;
	size_t old;

	if (md == NULL)
		return false;
	old = ism_v_push(v, "metadata");
	ism_v_keys(v, md, keys, NULL);
	ism_v_node(v, md, "labels", false, ISM_NODE_MAP);
	ism_v_node(v, md, "annotations", false, ISM_NODE_MAP);
	/* Kubernetes' names: a name is a DNS-1123 subdomain, a namespace a
	 * DNS-1123 label. */
	if (ism_v_str(v, md, "name", true, &r->name) <= 0) {
		ok = false;
	} else if (!ism_model_dns1123_subdomain(r->name)) {
		ok = md_fail(v, md, "name",
			     "must be at most 253 lower case letters, digits, '-' and '.', "
			     "starting and ending with a letter or digit");
	}
	if (ism_v_str(v, md, "creationTimestamp", false, &ts) > 0 &&
	    !(r->has_created = ism_model_parse_time(ts, &r->created)))
		ok =
		    md_fail(v, md, "creationTimestamp",
			    "not an RFC 3339 time (as Kubernetes writes it: 2024-05-01T12:00:00Z)");
	if (ism_v_str(v, md, "namespace", false, &r->ns) > 0 && !ism_model_dns1123_label(r->ns))
		ok = md_fail(v, md, "namespace", ISM_DNS1123_LABEL_RULE);
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

/* parse_spec's work for the policies: Telemetry, ProxyConfig, PeerAuthentication. */
static void parse_policy_spec(struct ism_vctx *v, const struct kind_info *k,
			      const struct ism_node *doc, const struct ism_cm_res *hdr,
			      const struct ism_node *spec)
{
	struct ism_conf *c = v->conf;

	if (strcmp(k->kind, "Telemetry") == 0) {
		struct ism_cm_tel *t = new_res(v, sizeof(*t), k->kind, doc, hdr);

		if (t != NULL) {
			c->tels[c->n_tels++] = t;
			ism_model_parse_telemetry(v, spec, t);
		}
	} else if (strcmp(k->kind, "ProxyConfig") == 0) {
		struct ism_cm_pc *pc = new_res(v, sizeof(*pc), k->kind, doc, hdr);

		if (pc != NULL) {
			c->pcs[c->n_pcs++] = pc;
			parse_pc(v, spec, pc);
		}
	} else {
		struct ism_cm_pa *pa = new_res(v, sizeof(*pa), k->kind, doc, hdr);

		if (pa != NULL) {
			c->pas[c->n_pas++] = pa;
			parse_pa(v, spec, pa);
		}
	}
}

/* The spec of a document of kind k (doc, its metadata in hdr), into a new
 * resource of the kind (the path at "spec"). */
static void parse_spec(struct ism_vctx *v, const struct kind_info *k, const struct ism_node *doc,
		       const struct ism_cm_res *hdr, const struct ism_node *spec)
{
	struct ism_conf *c = v->conf;

	if (strcmp(k->kind, "Appliance") == 0) {
		ism_model_parse_appliance(v, spec);
	} else if (strcmp(k->kind, "Gateway") == 0) {
		struct ism_cm_gw *g = new_res(v, sizeof(*g), k->kind, doc, hdr);

		if (g != NULL) {
			c->gws[c->n_gws++] = g;
			ism_model_parse_gateway(v, spec, g);
		}
	} else if (strcmp(k->kind, "VirtualService") == 0) {
		struct ism_cm_vs *vs = new_res(v, sizeof(*vs), k->kind, doc, hdr);

		if (vs != NULL) {
			c->vss[c->n_vss++] = vs;
			ism_model_parse_vs(v, spec, vs);
		}
	} else if (strcmp(k->kind, "DestinationRule") == 0) {
		struct ism_cm_dr *dr = new_res(v, sizeof(*dr), k->kind, doc, hdr);

		if (dr != NULL) {
			c->drs[c->n_drs++] = dr;
			ism_model_parse_dr(v, spec, dr);
		}
	} else if (strcmp(k->kind, "ServiceEntry") == 0) {
		struct ism_cm_se *se = new_res(v, sizeof(*se), k->kind, doc, hdr);

		if (se != NULL) {
			se->idx = c->n_ses;
			c->ses[c->n_ses++] = se;
			ism_model_parse_se(v, spec, se);
		}
	} else if (strcmp(k->kind, "WorkloadEntry") == 0) {
		struct ism_cm_we *we = new_res(v, sizeof(*we), k->kind, doc, hdr);

		/* The fields of a ServiceEntry's endpoint, checked without it. */
		if (we != NULL) {
			c->wes[c->n_wes++] = we;
			ism_model_parse_endpoint(v, spec, NULL, &we->ep);
		}
	} else if (k->later) {
		struct ism_cm_later *l = new_res(v, sizeof(*l), k->kind, doc, hdr);

		if (l != NULL) {
			l->kind_at = ism_node_get(doc, "kind", NULL);
			c->laters[c->n_laters++] = l;
			ism_model_parse_later(v, spec, l);
		}
	} else {
		parse_policy_spec(v, k, doc, hdr, spec);
	}
}

/* "KIND ns/name" ("Appliance name") as the document's metadata writes them,
 * before they are checked; the name "?" when it has none. */
static void provisional_label(const struct ism_node *doc, const char *kind, const char *app_ns,
			      char *out, size_t len)
{
	const struct ism_node *md = ism_node_get(doc, "metadata", NULL);
	const struct ism_node *name = md != NULL ? ism_node_get(md, "name", NULL) : NULL;
	const struct ism_node *ns = md != NULL ? ism_node_get(md, "namespace", NULL) : NULL;
	const char *n = name != NULL && name->kind == ISM_NODE_SCALAR ? name->str : "?";
	const char *in = ns != NULL && ns->kind == ISM_NODE_SCALAR ? ns->str
			 : app_ns != NULL			   ? app_ns
								   : "default";

	/* A name too long to be one is shown in part: the field must fit too. */
	if (strcmp(kind, "Appliance") == 0)
		snprintf(out, len, "Appliance %.64s%s", n, strlen(n) > 64 ? "..." : "");
	else
		snprintf(out, len, "%s %.64s%s/%.64s%s", kind, in, strlen(in) > 64 ? "..." : "", n,
			 strlen(n) > 64 ? "..." : "");
}

void ism_model_doc(struct ism_vctx *v, const struct ism_node *doc)
{
	static const char *const top[] = {"apiVersion", "kind", "metadata", "spec", "status", NULL};
	struct ism_conf *c = v->conf;
	const struct kind_info *k;
	const struct ism_node *spec;
	struct ism_cm_res hdr = {0};
	char label[sizeof(hdr.label)];
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
	provisional_label(doc, k->kind, c->app.ns, label, sizeof(label));
	v->res = label; /* the metadata's own errors name the resource too */
	if (!parse_metadata(v, doc, &hdr))
		return;
	/* Istio's ValidateGateway: a Gateway's name is a DNS-1123 label, no
	 * dots (a VirtualService's "edge.v1" would read as Gateway v1/edge). */
	if (strcmp(k->kind, "Gateway") == 0 && !ism_model_istio_label(hdr.name)) {
		ism_v_push(v, "metadata.name");
		ism_v_err(
		    v, ism_node_get(ism_node_get(doc, "metadata", NULL), "name", NULL),
		    "invalid gateway name \"%s\" (as Istio: a DNS-1123 label, letters, digits "
		    "and '-', no dots)",
		    hdr.name);
		ism_v_pop(v, 0);
	}
	if (strcmp(k->kind, "Appliance") == 0) {
		c->app.r = hdr;
		c->app.r.kind = k->kind;
		c->app.r.at = doc;
		snprintf(c->app.r.label, sizeof(c->app.r.label), "Appliance %s", hdr.name);
		v->res = c->app.r.label;
	} else {
		if (hdr.ns == NULL)
			hdr.ns = c->app.ns;
		/* Named from here on (an unknown top-level key, a missing spec),
		 * until the resource's own label takes over. */
		snprintf(label, sizeof(label), "%s %s/%s", k->kind, hdr.ns, hdr.name);
		v->res = label;
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
	if (spec != NULL) {
		old = ism_v_push(v, "spec");
		parse_spec(v, k, doc, &hdr, spec);
		ism_v_pop(v, old);
	}
	if (v->res == label)
		v->res = "";
}
