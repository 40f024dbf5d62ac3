/* SPDX-License-Identifier: Apache-2.0 */
/* AuthorizationPolicy (security.istio.io): its spec checked as Istio's
 * validation checks it (ValidateAuthorizationPolicy, ValidateAttribute), and
 * kept as istiod's authz model keeps a rule: each key of a source, an
 * operation or a when entry with its values and notValues, each value already
 * the matcher istiod's generators make of it (pilot/pkg/security/authz):
 *
 * - hosts, methods, request.headers[..]: Envoy's header matcher, "*" is
 *   presence, a leading "*" a suffix, a trailing one a prefix (hosts without
 *   regard to case);
 * - paths, connection.sni: a string matcher, "*" any non-empty value; paths
 *   with "{*}" or "{**}" a URI template (one segment; the rest);
 * - principals: the string matcher under "spiffe://"; namespaces,
 *   serviceAccounts and trustDomains: istiod's patterns on the identity;
 * - addresses: an IP or a CIDR block; ports: 0..65535.
 *
 * - requestPrincipals, request.auth.principal: "<iss>/<sub>" (split at the
 *   last '/'), each side matched as istiod's requestPrincipalGenerator makes
 *   it; request.auth.audiences, .presenter and .claims[..]: a string matcher
 *   on the claim (aud, azp, the names in brackets) of the request's JWT
 *   (conf/authn.c).
 *
 * conf/compile.c makes Envoy's RBAC filters of them, for HTTP and apart for
 * TCP; a CUSTOM policy's rules, for HTTP only, decide which requests its
 * provider (conf/extauthz.c) checks. What needs Envoy's dynamic metadata
 * (experimental.*) is "not implemented yet". */
#include <ctype.h>
#include <stdio.h>
#include <string.h>

#include "conf/model.h"

/* What a value is. */
enum vkind {
	V_IP,
	V_PORT,
	V_HEADER,    /* Envoy's header matcher */
	V_HOST,	     /* the same, without regard to case */
	V_STRING,    /* Envoy's string matcher: "*" any non-empty */
	V_PATH,	     /* the same, or a URI template */
	V_PRINCIPAL, /* the string matcher under "spiffe://" */
	V_NAMESPACE,
	V_SERVICE_ACCOUNT,
	V_TRUST_DOMAIN,
	V_REQ_PRINCIPAL, /* "<iss>/<sub>": two matchers */
	V_CLAIM,	 /* Envoy's string matcher on a JWT claim */
};

struct key {
	const char *key;
	enum ism_az_attr attr;
	enum vkind kind;
	bool http_only;
	bool perm;	   /* a when key of the destination: joins the permissions */
	const char *claim; /* V_CLAIM: the claim it reads; NULL: in brackets */
};

/* The when keys isthmus gives; request.headers[..] is found by its prefix. */
static const struct key when_keys[] = {
    {"source.ip", ISM_AZ_SRC_IP, V_IP, false, false, NULL},
    {"remote.ip", ISM_AZ_REMOTE_IP, V_IP, false, false, NULL},
    {"source.namespace", ISM_AZ_PEER_ID, V_NAMESPACE, false, false, NULL},
    {"source.serviceAccount", ISM_AZ_PEER_ID, V_SERVICE_ACCOUNT, false, false, NULL},
    {"source.trustDomain", ISM_AZ_PEER_ID, V_TRUST_DOMAIN, false, false, NULL},
    {"source.principal", ISM_AZ_PEER_ID, V_PRINCIPAL, false, false, NULL},
    {"destination.ip", ISM_AZ_DEST_IP, V_IP, false, true, NULL},
    {"destination.port", ISM_AZ_DEST_PORT, V_PORT, false, true, NULL},
    {"connection.sni", ISM_AZ_SNI, V_STRING, false, true, NULL},
    {"request.auth.principal", ISM_AZ_REQ_PRINCIPAL, V_REQ_PRINCIPAL, true, false, NULL},
    {"request.auth.audiences", ISM_AZ_CLAIM, V_CLAIM, true, false, "aud"},
    {"request.auth.presenter", ISM_AZ_CLAIM, V_CLAIM, true, false, "azp"},
};
static const struct key header_key = {
    "request.headers", ISM_AZ_HEADER, V_HEADER, true, false, NULL};
static const struct key claims_key = {
    "request.auth.claims", ISM_AZ_CLAIM, V_CLAIM, true, false, NULL};

/* A source's fields, each with its not* twin. */
static const struct key source_keys[] = {
    {"ipBlocks", ISM_AZ_SRC_IP, V_IP, false, false, NULL},
    {"remoteIpBlocks", ISM_AZ_REMOTE_IP, V_IP, false, false, NULL},
    {"namespaces", ISM_AZ_PEER_ID, V_NAMESPACE, false, false, NULL},
    {"trustDomains", ISM_AZ_PEER_ID, V_TRUST_DOMAIN, false, false, NULL},
    {"serviceAccounts", ISM_AZ_PEER_ID, V_SERVICE_ACCOUNT, false, false, NULL},
    {"principals", ISM_AZ_PEER_ID, V_PRINCIPAL, false, false, NULL},
    {"requestPrincipals", ISM_AZ_REQ_PRINCIPAL, V_REQ_PRINCIPAL, true, false, NULL},
};

static const struct key operation_keys[] = {
    {"ports", ISM_AZ_DEST_PORT, V_PORT, false, true, NULL},
    {"paths", ISM_AZ_PATH, V_PATH, true, true, NULL},
    {"methods", ISM_AZ_METHOD, V_HEADER, true, true, NULL},
    {"hosts", ISM_AZ_HOST, V_HOST, true, true, NULL},
};

/* s with RE2's metacharacters escaped (Go's regexp.QuoteMeta), appended at
 * out[*n], within cap bytes (the caller's buffer is large enough). */
static void quote_meta(char *out, size_t *n, size_t cap, const char *s, size_t len)
{
	for (size_t i = 0; i < len && *n + 2 < cap; i++) {
		if (strchr("\\.+*?()|[]{}^$", s[i]) != NULL)
			out[(*n)++] = '\\';
		out[(*n)++] = s[i];
	}
	out[*n] = '\0';
}

/* Whether path value s is a URI template. */
static bool template(const char *s)
{
	return strstr(s, "{*}") != NULL || strstr(s, "{**}") != NULL;
}

/* A regex value: the pattern printed by the caller into the model's pool. */
static void regex_val(struct ism_vctx *v, struct ism_az_val *out, char *buf)
{
	out->m.kind = ISM_SM_REGEX;
	out->m.s.p = ism_v_strdup(v, buf);
}

/* Envoy's string matcher of s (istiod's StringMatcherWithPrefix under
 * prefix); header: its header matcher instead ("*" presence, no regex). */
static void string_val(struct ism_vctx *v, const char *s, const char *prefix, bool header,
		       bool icase, struct ism_az_val *out)
{
	size_t len = strlen(s);
	char buf[1024];
	size_t n = 0;

	out->m.ignore_case = icase;
	if (strcmp(s, "*") == 0) {
		if (header) {
			out->m.kind = ISM_SM_PRESENT;
			return;
		}
		regex_val(v, out, strcpy(buf, ".+"));
	} else if (s[0] == '*' && prefix[0] != '\0') {
		n = (size_t)snprintf(buf, sizeof(buf), "%s.*", prefix);
		quote_meta(buf, &n, sizeof(buf), s + 1, len - 1);
		regex_val(v, out, buf);
	} else if (s[0] == '*') {
		out->m.kind = ISM_SM_SUFFIX;
		out->m.s.p = s + 1;
	} else if (s[len - 1] == '*') {
		out->m.kind = ISM_SM_PREFIX;
		snprintf(buf, sizeof(buf), "%s%.*s", prefix, (int)(len - 1), s);
		out->m.s.p = ism_v_strdup(v, buf);
	} else {
		out->m.kind = ISM_SM_EXACT;
		snprintf(buf, sizeof(buf), "%s%s", prefix, s);
		out->m.s.p = ism_v_strdup(v, buf);
	}
}

/* One side of a request principal: kind over s[0..len) (kind ISM_SM_REGEX:
 * any non-empty value). */
static void principal_side(struct ism_vctx *v, struct ism_strmatch *m, enum ism_sm_kind kind,
			   const char *s, size_t len)
{
	char *d = kind == ISM_SM_REGEX ? ism_v_strdup(v, ".+") : ism_v_strdup(v, s);

	if (d != NULL && kind != ISM_SM_REGEX)
		d[len] = '\0';
	m->kind = kind;
	m->s.p = d;
	m->s.len = d != NULL ? (uint32_t)strlen(d) : 0;
}

/* istiod's requestPrincipalGenerator: "<iss>/<sub>" split at the last '/',
 * "*" at either end of the whole a suffix or prefix of one side, "*" alone
 * any issuer and any subject (both present). */
static void req_principal_val(struct ism_vctx *v, const char *s, struct ism_az_val *out)
{
	const char *slash = strrchr(s, '/');
	size_t len = strlen(s), il = slash != NULL ? (size_t)(slash - s) : len;
	const char *sub = slash != NULL ? slash + 1 : "";
	size_t sl = strlen(sub);

	if (strcmp(s, "*") == 0) {
		principal_side(v, &out->m, ISM_SM_REGEX, NULL, 0);
		principal_side(v, &out->sub, ISM_SM_REGEX, NULL, 0);
	} else if (s[0] == '*' && slash != NULL) {
		if (il == 1)
			principal_side(v, &out->m, ISM_SM_REGEX, NULL, 0);
		else
			principal_side(v, &out->m, ISM_SM_SUFFIX, s + 1, il - 1);
		principal_side(v, &out->sub, ISM_SM_EXACT, sub, sl);
	} else if (s[0] == '*') {
		principal_side(v, &out->m, ISM_SM_REGEX, NULL, 0);
		principal_side(v, &out->sub, ISM_SM_SUFFIX, s + 1, len - 1);
	} else if (s[len - 1] == '*' && slash != NULL) {
		principal_side(v, &out->m, ISM_SM_EXACT, s, il);
		if (strcmp(sub, "*") == 0)
			principal_side(v, &out->sub, ISM_SM_REGEX, NULL, 0);
		else
			principal_side(v, &out->sub, ISM_SM_PREFIX, sub, sl - 1);
	} else if (s[len - 1] == '*') {
		principal_side(v, &out->m, ISM_SM_PREFIX, s, len - 1);
		principal_side(v, &out->sub, ISM_SM_REGEX, NULL, 0);
	} else {
		principal_side(v, &out->m, ISM_SM_EXACT, s, il);
		principal_side(v, &out->sub, ISM_SM_EXACT, sub, sl);
	}
}

/* istiod's patterns on the peer's identity spiffe://<td>/ns/<ns>/sa/<sa>. */
static void identity_val(struct ism_vctx *v, enum vkind k, const char *s, const char *policy_ns,
			 struct ism_az_val *out)
{
	const char *slash = strchr(s, '/'), *star = strchr(s, '*');
	char buf[1024];
	size_t n = 0;

	switch (k) {
	case V_NAMESPACE:
		/* ".*\/ns/<s, each * any text>/.*" */
		n = (size_t)snprintf(buf, sizeof(buf), ".*/ns/");
		for (const char *p = s; *p != '\0';) {
			const char *e = strchr(p, '*');
			size_t len = e != NULL ? (size_t)(e - p) : strlen(p);

			quote_meta(buf, &n, sizeof(buf) - 8, p, len);
			p += len;
			if (*p == '*') {
				n += (size_t)snprintf(buf + n, sizeof(buf) - n, ".*");
				p++;
			}
		}
		snprintf(buf + n, sizeof(buf) - n, "/.*");
		break;
	case V_SERVICE_ACCOUNT:
		/* "<ns>/<sa>", or "<sa>" of the policy's namespace */
		n = (size_t)snprintf(buf, sizeof(buf), "spiffe://.+/ns/");
		if (slash != NULL)
			quote_meta(buf, &n, sizeof(buf) - 64, s, (size_t)(slash - s));
		else
			quote_meta(buf, &n, sizeof(buf) - 64, policy_ns, strlen(policy_ns));
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "/(.+/|)sa/");
		quote_meta(buf, &n, sizeof(buf) - 8, slash ? slash + 1 : s,
			   strlen(slash ? slash + 1 : s));
		snprintf(buf + n, sizeof(buf) - n, "(/.+)?");
		break;
	case V_TRUST_DOMAIN:
		if (star == NULL || strcmp(s, "*") == 0) {
			/* any domain, or this one exactly */
			out->m.kind = ISM_SM_PREFIX;
			if (star != NULL)
				snprintf(buf, sizeof(buf), "spiffe://");
			else
				snprintf(buf, sizeof(buf), "spiffe://%s/", s);
			out->m.s.p = ism_v_strdup(v, buf);
			return;
		}
		n = (size_t)snprintf(buf, sizeof(buf), "spiffe://");
		quote_meta(buf, &n, sizeof(buf) - 64, s, (size_t)(star - s));
		n += (size_t)snprintf(buf + n, sizeof(buf) - n, "[^/]*");
		quote_meta(buf, &n, sizeof(buf) - 8, star + 1, strlen(star + 1));
		snprintf(buf + n, sizeof(buf) - n, "/.*");
		break;
	default:
		return;
	}
	regex_val(v, out, buf);
}

/* Istio's CheckWildcardValues (trustDomains, and no '/'), CheckServiceAccount,
 * CheckValidPathTemplate: why value s of kind k is refused, or NULL. */
static const char *refused(enum vkind k, const char *s)
{
	const char *star = strchr(s, '*'), *slash = strchr(s, '/');

	switch (k) {
	case V_TRUST_DOMAIN:
		if (star != NULL && strchr(star + 1, '*') != NULL)
			return "at most one wildcard is allowed";
		if (star != NULL && star != s && star[1] != '\0')
			return "a wildcard is only allowed at the start or the end";
		if (slash != NULL)
			return "a trust domain must not contain '/'";
		return NULL;
	case V_SERVICE_ACCOUNT:
		if (star != NULL)
			return "a wildcard is not allowed";
		if (strlen(s) > 320)
			return "longer than 320 characters";
		if (slash != NULL &&
		    (strchr(slash + 1, '/') != NULL || slash == s || slash[1] == '\0'))
			return "expected 'serviceAccount' or 'namespace/serviceAccount'";
		return NULL;
	case V_PATH:
		for (const char *p = s, *any = NULL; *p != '\0';) {
			const char *e = strchr(p, '/');
			size_t len = e != NULL ? (size_t)(e - p) : strlen(p);

			if ((len == 3 && strncmp(p, "{*}", 3) == 0) ||
			    (len == 4 && strncmp(p, "{**}", 4) == 0)) {
				if (any != NULL)
					return "{**} must be the template's last operator";
				if (len == 4)
					any = p;
			} else if (memchr(p, '{', len) != NULL || memchr(p, '}', len) != NULL) {
				return "'{' or '}' beyond the templates {*} and {**}";
			} else if (template(s)) {
				for (size_t i = 0; i < len; i++)
					if (!isalnum((unsigned char)p[i]) &&
					    strchr(ISM_PCHARS, p[i]) == NULL)
						return "a segment beside {*} and {**} holds a "
						       "character a path template does not allow";
			}
			p += len + (e != NULL);
		}
		return NULL;
	default:
		return NULL;
	}
}

/* The longest value: its matcher, quoted for a regex and prefixed, fits the
 * 1 KiB buffers above. */
#define VALUE_MAX 480

/* Value s of key k, into out; false when refused (reported at it). */
static bool parse_val(struct ism_vctx *v, const struct key *k, const struct ism_node *it,
		      const char *policy_ns, struct ism_az_val *out)
{
	const char *s = it->str, *why = it->len > VALUE_MAX ? "longer than 480 bytes" : NULL;
	uint64_t port;

	memset(out, 0, sizeof(*out));
	if (why == NULL)
		why = refused(k->kind, s);
	if (why != NULL) {
		ism_v_err(v, it, "\"%s\": %s", s, why);
		return false;
	}
	switch (k->kind) {
	case V_IP:
		if (!ism_model_subnet(s, &out->net))
			why =
			    "not an IP address or a CIDR block (\"10.0.0.0/8\", \"2001:db8::/32\")";
		break;
	case V_PORT:
		if (ism_parse_u64(s, &port) < 0 || port > 65535)
			why = "not a port (0 to 65535)";
		out->port = (uint32_t)port;
		break;
	case V_HEADER:
	case V_HOST:
		string_val(v, s, "", true, k->kind == V_HOST, out);
		break;
	case V_STRING:
		string_val(v, s, "", false, false, out);
		break;
	case V_PATH:
		if (template(s)) {
			out->m.kind = ISM_SM_TEMPLATE;
			out->m.s.p = s;
		} else {
			string_val(v, s, "", false, false, out);
		}
		break;
	case V_PRINCIPAL:
		string_val(v, s, "spiffe://", false, false, out);
		break;
	case V_REQ_PRINCIPAL:
		req_principal_val(v, s, out);
		return true;
	case V_CLAIM:
		string_val(v, s, "", false, false, out);
		break;
	case V_NAMESPACE:
	case V_SERVICE_ACCOUNT:
	case V_TRUST_DOMAIN:
		identity_val(v, k->kind, s, policy_ns, out);
		break;
	}
	if (why != NULL) {
		ism_v_err(v, it, "\"%s\": %s", s, why);
		return false;
	}
	if (out->m.s.p != NULL)
		out->m.s.len = (uint32_t)strlen(out->m.s.p);
	return true;
}

/* The values of list key (absent: none) of map, into *vals. */
static void parse_vals(struct ism_vctx *v, const struct ism_node *map, const char *key,
		       const struct key *k, const char *policy_ns, struct ism_az_val **vals,
		       size_t *n)
{
	const struct ism_node *l;
	size_t m, old;

	*vals = NULL;
	*n = 0;
	if (ism_v_strlist(v, map, key, false, &m, &l) == NULL || m == 0)
		return;
	*vals = ism_v_alloc(v, l->n, sizeof(**vals));
	old = ism_v_push(v, ".%s", key);
	for (size_t i = 0; *vals != NULL && i < l->n; i++) {
		size_t o2 = ism_v_push(v, "[%zu]", i);

		if (l->items[i]->kind == ISM_NODE_SCALAR && l->items[i]->len > 0 &&
		    parse_val(v, k, l->items[i], policy_ns, &(*vals)[*n]))
			(*n)++;
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

/* One condition appended to list: key k with the values of map's keys
 * vkey and nkey; none when both are absent. */
static void add_cond(struct ism_vctx *v, struct ism_cm_az_and *list, const struct ism_node *map,
		     const struct key *k, const char *vkey, const char *nkey, const char *name,
		     const char *policy_ns, size_t cap)
{
	struct ism_cm_az_cond c = {.attr = k->attr, .http_only = k->http_only, .name = name};

	parse_vals(v, map, vkey, k, policy_ns, &c.values, &c.n_values);
	parse_vals(v, map, nkey, k, policy_ns, &c.nots, &c.n_nots);
	if (c.n_values + c.n_nots == 0)
		return;
	if (list->c == NULL)
		list->c = ism_v_alloc(v, cap, sizeof(*list->c));
	if (list->c != NULL && list->n < cap)
		list->c[list->n++] = c;
}

/* "notIpBlocks" of "ipBlocks". */
static const char *not_key(const char *key, char *buf, size_t cap)
{
	snprintf(buf, cap, "not%c%s", toupper((unsigned char)key[0]), key + 1);
	return buf;
}

/* A list of maps at key (each of which holds one map at inner): the inner
 * maps, through parse(); Istio refuses an empty list and an entry without its
 * inner map. ns: the policy's namespace. */
static struct ism_cm_az_and *parse_entries(struct ism_vctx *v, const struct ism_node *rule,
					   const char *key, const char *inner, const char *ns,
					   size_t *n,
					   void (*parse)(struct ism_vctx *, const struct ism_node *,
							 const char *, struct ism_cm_az_and *))
{
	const struct ism_node *l = ism_v_node(v, rule, key, false, ISM_NODE_SEQ);
	struct ism_cm_az_and *out;
	size_t old;

	*n = 0;
	if (l == NULL)
		return NULL;
	old = ism_v_push(v, ".%s", key);
	if (l->n == 0)
		ism_v_err(v, l, "must not be empty (a rule without %s holds for every request)",
			  key);
	out = ism_v_alloc(v, l->n ? l->n : 1, sizeof(*out));
	for (size_t i = 0; out != NULL && i < l->n; i++) {
		size_t o2 = ism_v_push(v, "[%zu]", i);
		const char *const keys[] = {inner, NULL};
		const struct ism_node *m;

		if (ism_v_expect(v, l->items[i], ISM_NODE_MAP) &&
		    ism_v_keys(v, l->items[i], keys, NULL) &&
		    (m = ism_v_node(v, l->items[i], inner, true, ISM_NODE_MAP)) != NULL) {
			size_t o3 = ism_v_push(v, ".%s", inner);

			parse(v, m, ns, &out[(*n)++]);
			ism_v_pop(v, o3);
		}
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
	return out;
}

/* Fields of one list (a source's or an operation's) into and; ns: the
 * policy's namespace (serviceAccounts without one are of it). */
static void parse_fields(struct ism_vctx *v, const struct ism_node *m, const char *ns,
			 const struct key *keys, size_t n_keys, struct ism_cm_az_and *and)
{
	char nk[64];

	for (size_t i = 0; i < n_keys; i++)
		add_cond(v, and, m, &keys[i], keys[i].key, not_key(keys[i].key, nk, sizeof(nk)),
			 NULL, ns, n_keys);
}

/* Whether one of keys[] of m is a list with an entry (a value refused is
 * reported as such, not as an empty source or operation). */
static bool listed(const struct ism_node *m, const char *const *keys)
{
	for (; *keys != NULL; keys++) {
		const struct ism_node *l = ism_node_get(m, *keys, NULL);

		if (l != NULL && (l->kind != ISM_NODE_SEQ || l->n > 0))
			return true;
	}
	return false;
}

static void parse_source(struct ism_vctx *v, const struct ism_node *m, const char *ns,
			 struct ism_cm_az_and *and)
{
	static const char *const known[] = {
	    "ipBlocks",		  "notIpBlocks",	  "remoteIpBlocks",
	    "notRemoteIpBlocks",  "namespaces",		  "notNamespaces",
	    "trustDomains",	  "notTrustDomains",	  "serviceAccounts",
	    "notServiceAccounts", "principals",		  "notPrincipals",
	    "requestPrincipals",  "notRequestPrincipals", NULL};
	bool ids = ism_node_get(m, "principals", NULL) || ism_node_get(m, "notPrincipals", NULL) ||
		   ism_node_get(m, "namespaces", NULL) || ism_node_get(m, "notNamespaces", NULL);

	if (!ism_v_keys(v, m, known, NULL))
		return;
	if (ids && (ism_node_get(m, "serviceAccounts", NULL) ||
		    ism_node_get(m, "notServiceAccounts", NULL)))
		ism_v_err(v, m, "serviceAccounts cannot be set with namespaces or principals");
	parse_fields(v, m, ns, source_keys, sizeof(source_keys) / sizeof(source_keys[0]), and);
	if (!listed(m, known))
		ism_v_err(v, m, "must not be empty (a rule without from holds for every source)");
}

static void parse_operation(struct ism_vctx *v, const struct ism_node *m, const char *ns,
			    struct ism_cm_az_and *and)
{
	static const char *const known[] = {"ports",	"notPorts", "paths",
					    "notPaths", "methods",  "notMethods",
					    "hosts",	"notHosts", NULL};

	if (!ism_v_keys(v, m, known, NULL))
		return;
	parse_fields(v, m, ns, operation_keys, sizeof(operation_keys) / sizeof(operation_keys[0]),
		     and);
	if (!listed(m, known))
		ism_v_err(v, m, "must not be empty (a rule without to holds for every operation)");
}

/* The claim names of "[a][b]..." (istiod's extractNameInNestedBrackets), joined
 * with ']' in the model's pool; NULL when s is not of that form or a name is
 * empty or holds a bracket. */
static const char *claim_path(struct ism_vctx *v, const char *s)
{
	char buf[ISM_AZ_CLAIM_NAME_MAX + 1];
	size_t n = 0;

	if (*s == '\0')
		return NULL;
	while (*s != '\0') {
		size_t len = strcspn(s + 1, "[]");

		if (s[0] != '[' || s[1 + len] != ']' || len == 0 ||
		    n + len + 1 > ISM_AZ_CLAIM_NAME_MAX)
			return NULL;
		if (n > 0)
			buf[n++] = ']';
		memcpy(buf + n, s + 1, len);
		n += len;
		s += len + 2;
	}
	buf[n] = '\0';
	return ism_v_strdup(v, buf);
}

/* The key of when entry e (its text key), or NULL when refused (reported at
 * the key); *name: a header's name, lowercased, or a claim's path. */
static const struct key *when_key(struct ism_vctx *v, const struct ism_node *at, const char *key,
				  const char **name)
{
	size_t hl = strlen(header_key.key), kl = strlen(key);

	for (size_t i = 0; i < sizeof(when_keys) / sizeof(when_keys[0]); i++)
		if (strcmp(key, when_keys[i].key) == 0) {
			*name = when_keys[i].claim;
			return &when_keys[i];
		}
	if (strncmp(key, header_key.key, hl) == 0 && key[hl] == '[' && kl > hl + 2 &&
	    key[kl - 1] == ']' && memchr(key + hl + 1, ']', kl - hl - 2) == NULL) {
		char *n = ism_v_strdup(v, key + hl + 1);

		if (n != NULL) {
			n[kl - hl - 2] = '\0';
			for (char *p = n; *p; p++)
				*p = (char)tolower((unsigned char)*p);
		}
		*name = n;
		return &header_key;
	}
	if (strncmp(key, claims_key.key, strlen(claims_key.key)) == 0) {
		if ((*name = claim_path(v, key + strlen(claims_key.key))) != NULL)
			return &claims_key;
		ism_v_err(v, at,
			  "\"%s\": expected request.auth.claims[<name>] or "
			  "request.auth.claims[<name>][<nested name>]..., names without '[' "
			  "or ']'",
			  key);
	} else if (strncmp(key, "experimental.envoy.filters.", 27) == 0)
		ism_v_err(v, at, "\"%s\": " ISM_NOT_IMPL " (Envoy's dynamic metadata)", key);
	else if (strcmp(key, "destination.namespace") == 0)
		ism_v_err(v, at, "\"%s\" is replaced by the policy's metadata.namespace", key);
	else if (strncmp(key, "destination.labels", 18) == 0)
		ism_v_err(v, at, "\"%s\" is replaced by the workload selector", key);
	else if (strcmp(key, "destination.name") == 0 || strcmp(key, "destination.user") == 0)
		ism_v_err(v, at, "\"%s\" is deprecated: only Istio's v1alpha1 had it", key);
	else if (strncmp(key, header_key.key, hl) == 0)
		ism_v_err(v, at, "\"%s\": expected request.headers[<name>]", key);
	else
		ism_v_err(v, at,
			  "unknown attribute \"%s\" (request.headers[<name>], source.ip, "
			  "remote.ip, source.namespace, source.serviceAccount, "
			  "source.trustDomain, source.principal, destination.ip, "
			  "destination.port, connection.sni, request.auth.principal, "
			  "request.auth.audiences, request.auth.presenter, "
			  "request.auth.claims[<name>])",
			  key);
	return NULL;
}

static void parse_when(struct ism_vctx *v, const struct ism_node *rule, const char *ns,
		       struct ism_cm_az_rule *r)
{
	static const char *const known[] = {"key", "values", "notValues", NULL};
	const struct ism_node *l = ism_v_node(v, rule, "when", false, ISM_NODE_SEQ);
	size_t old;

	if (l == NULL)
		return;
	old = ism_v_push(v, ".when");
	for (size_t i = 0; i < l->n; i++) {
		const struct ism_node *e = l->items[i];
		size_t o2 = ism_v_push(v, "[%zu]", i);
		const char *key = NULL, *name = NULL;
		const struct key *k;

		if (ism_v_expect(v, e, ISM_NODE_MAP) && ism_v_keys(v, e, known, NULL) &&
		    ism_v_str(v, e, "key", true, &key) > 0) {
			size_t o3 = ism_v_push(v, ".key");

			k = when_key(v, ism_node_get(e, "key", NULL), key, &name);
			ism_v_pop(v, o3);
			if (!listed(e, known + 1))
				ism_v_err(v, e, "at least one of values and notValues must be set");
			else if (k != NULL)
				add_cond(v, k->perm ? &r->when_perm : &r->when_prin, e, k, "values",
					 "notValues", name, ns, l->n);
		}
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

static void parse_rules(struct ism_vctx *v, const struct ism_node *spec, const char *ns,
			struct ism_cm_az *az)
{
	static const char *const known[] = {"from", "to", "when", NULL};
	const struct ism_node *l = ism_v_node(v, spec, "rules", false, ISM_NODE_SEQ);
	size_t old;

	if (l == NULL)
		return;
	az->has_rules = l->n > 0;
	az->rules = ism_v_alloc(v, l->n ? l->n : 1, sizeof(*az->rules));
	old = ism_v_push(v, ".rules");
	for (size_t i = 0; az->rules != NULL && i < l->n; i++) {
		struct ism_cm_az_rule *r = &az->rules[az->n_rules];
		const struct ism_node *e = l->items[i];
		size_t o2 = ism_v_push(v, "[%zu]", i);

		if (ism_v_expect(v, e, ISM_NODE_MAP) && ism_v_keys(v, e, known, NULL)) {
			r->from =
			    parse_entries(v, e, "from", "source", ns, &r->n_from, parse_source);
			r->to =
			    parse_entries(v, e, "to", "operation", ns, &r->n_to, parse_operation);
			parse_when(v, e, ns, r);
			az->n_rules++;
		}
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

/* The fields and when keys istiod's validation refuses in a CUSTOM policy's
 * rules ("not supported with CUSTOM action"): those of identities. */
static void custom_rules(struct ism_vctx *v, const struct ism_node *spec)
{
	static const char *const src[] = {"namespaces",
					  "notNamespaces",
					  "serviceAccounts",
					  "notServiceAccounts",
					  "trustDomains",
					  "notTrustDomains",
					  "principals",
					  "notPrincipals",
					  "requestPrincipals",
					  "notRequestPrincipals",
					  NULL};
	static const char *const keys[] = {"source.namespace", "source.serviceAccount",
					   "source.trustDomain", "source.principal", NULL};
	const struct ism_node *rules = ism_node_get(spec, "rules", NULL);

	for (size_t i = 0; rules != NULL && rules->kind == ISM_NODE_SEQ && i < rules->n; i++) {
		const struct ism_node *r = rules->items[i];
		const struct ism_node *from =
		    r->kind == ISM_NODE_MAP ? ism_node_get(r, "from", NULL) : NULL;
		const struct ism_node *when =
		    r->kind == ISM_NODE_MAP ? ism_node_get(r, "when", NULL) : NULL;

		for (size_t j = 0; from != NULL && from->kind == ISM_NODE_SEQ && j < from->n; j++) {
			const struct ism_node *s =
			    from->items[j]->kind == ISM_NODE_MAP
				? ism_node_get(from->items[j], "source", NULL)
				: NULL;

			for (size_t k = 0; s != NULL && s->kind == ISM_NODE_MAP && src[k]; k++)
				if (ism_node_get(s, src[k], NULL) != NULL) {
					size_t old =
					    ism_v_push(v, ".rules[%zu].from[%zu].source", i, j);

					ism_v_err_key(v, s, src[k],
						      "%s is not supported with CUSTOM action (as "
						      "Istio refuses it)",
						      src[k]);
					ism_v_pop(v, old);
				}
		}
		for (size_t j = 0; when != NULL && when->kind == ISM_NODE_SEQ && j < when->n; j++) {
			const struct ism_node *k = when->items[j]->kind == ISM_NODE_MAP
						       ? ism_node_get(when->items[j], "key", NULL)
						       : NULL;
			bool bad = k != NULL && k->kind == ISM_NODE_SCALAR &&
				   strncmp(k->str, "request.auth.", 13) == 0;

			for (size_t m = 0; k != NULL && k->kind == ISM_NODE_SCALAR && keys[m]; m++)
				bad = bad || strcmp(k->str, keys[m]) == 0;
			if (bad) {
				size_t old = ism_v_push(v, ".rules[%zu].when[%zu].key", i, j);

				ism_v_err(
				    v, k,
				    "%s is not supported with CUSTOM action (as Istio refuses "
				    "it)",
				    k->str);
				ism_v_pop(v, old);
			}
		}
	}
}

/* spec.provider: a CUSTOM policy's, and only a CUSTOM policy's. */
static void parse_provider(struct ism_vctx *v, const struct ism_node *spec, struct ism_cm_az *az)
{
	static const char *const known[] = {"name", NULL};
	const struct ism_node *p = ism_v_node(v, spec, "provider", false, ISM_NODE_MAP);
	size_t old;

	if (az->action != ISM_AZ_CUSTOM) {
		if (ism_node_get(spec, "provider", NULL) != NULL)
			ism_v_err_key(v, spec, "provider",
				      "provider must not be set with a non-CUSTOM action");
		return;
	}
	custom_rules(v, spec);
	if (p == NULL) {
		if (ism_node_get(spec, "provider", NULL) == NULL && az->has_rules)
			ism_v_err_key(v, spec, "action",
				      "a CUSTOM policy needs provider.name: an entry of the "
				      "Appliance's spec.extensionProviders");
		return;
	}
	old = ism_v_push(v, ".provider");
	if (ism_v_keys(v, p, known, NULL) && ism_v_str(v, p, "name", true, &az->provider) > 0) {
		az->provider_at = ism_node_get(p, "name", NULL);
		if (az->provider[0] == '\0') {
			ism_v_err_key(v, p, "name", "must not be empty");
			az->provider = NULL;
		}
	}
	ism_v_pop(v, old);
}

/* Whether the document's annotation istio.io/dry-run says so, read as istiod
 * reads it (isDryRun: Go's strconv.ParseBool): 1, t, T, TRUE, true, True are
 * dry-run; 0, f, F, FALSE, false, False not; anything else is an error
 * istiod logs, and the policy is enforced: a warning at the annotation here
 * (the path at spec, kept). */
static bool dry_run(struct ism_vctx *v, const struct ism_node *doc)
{
	static const char *const trues[] = {"1", "t", "T", "TRUE", "true", "True", NULL};
	static const char *const falses[] = {"0", "f", "F", "FALSE", "false", "False", NULL};
	const struct ism_node *md = ism_node_get(doc, "metadata", NULL);
	const struct ism_node *an =
	    md != NULL && md->kind == ISM_NODE_MAP ? ism_node_get(md, "annotations", NULL) : NULL;
	const struct ism_node *d = an != NULL && an->kind == ISM_NODE_MAP
				       ? ism_node_get(an, "istio.io/dry-run", NULL)
				       : NULL;
	const char *s = d != NULL && d->kind == ISM_NODE_SCALAR ? d->str : NULL;
	size_t i;

	if (d == NULL)
		return false;
	for (i = 0; s != NULL && trues[i] != NULL; i++)
		if (strcmp(s, trues[i]) == 0)
			return true;
	for (i = 0; s != NULL && falses[i] != NULL; i++)
		if (strcmp(s, falses[i]) == 0)
			return false;
	ism_v_pop(v, 0);
	ism_v_push(v, "metadata.annotations.istio.io/dry-run");
	ism_v_warn(v, d,
		   "\"%.64s\" is not a boolean as istiod reads it (1, t, T, TRUE, true, True, 0, "
		   "f, F, FALSE, false or False): the policy is enforced, not a dry run",
		   s != NULL ? s : "");
	ism_v_pop(v, 0);
	ism_v_push(v, "spec");
	return false;
}

void ism_model_parse_authz(struct ism_vctx *v, const struct ism_node *spec, struct ism_cm_later *l)
{
	static const char *const known[] = {"selector", "targetRef", "targetRefs", "action",
					    "rules",	"provider",  NULL};
	static const char *const actions[] = {"ALLOW", "DENY", "AUDIT", "CUSTOM", NULL};
	struct ism_cm_az *az = ism_v_alloc(v, 1, sizeof(*az));
	const char *action = "ALLOW";

	if (az == NULL)
		return;
	l->az = az;
	ism_v_keys(v, spec, known, NULL);
	ism_v_enum(v, spec, "action", actions, NULL, &action);
	az->action = strcmp(action, "DENY") == 0     ? ISM_AZ_DENY
		     : strcmp(action, "AUDIT") == 0  ? ISM_AZ_AUDIT
		     : strcmp(action, "CUSTOM") == 0 ? ISM_AZ_CUSTOM
						     : ISM_AZ_ALLOW;
	az->dry_run = dry_run(v, l->r.at);
	parse_rules(v, spec, l->r.ns, az);
	parse_provider(v, spec, az);
	if ((az->action == ISM_AZ_DENY || az->action == ISM_AZ_CUSTOM) && !az->has_rules)
		ism_v_err_key(v, spec, ism_node_get(spec, "rules", NULL) ? "rules" : "action",
			      "a %s policy without rules never applies: add the empty rule {} "
			      "to %s every request",
			      action, az->action == ISM_AZ_DENY ? "deny" : "check");
}
