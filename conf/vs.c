/* SPDX-License-Identifier: Apache-2.0 */
/* The VirtualService kind: hosts, gateways and exportTo; http routes with
 * their matches, destinations, retries, rewrites, redirects, direct
 * responses and delegation (their headers are conf/headers.c's, corsPolicy
 * conf/cors.c's, fault conf/fault.c's, mirrors conf/mirror.c's); tcp and tls
 * routes. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "conf/mirror.h"
#include "conf/model.h"
#include "lib/status.h"
#include "conf/re2syntax.h"
#include "lib/ascii.h"
#include "lib/base64.h"

/* A gateway reference as Istio resolves one (resolveGatewayName):
 * "ns/name" as it is, "./name" and a short name in namespace ns, the legacy
 * "name.ns.svc.cluster.local" as "ns/name". */
static const char *gateway_ref(struct ism_vctx *v, const char *name, const char *ns)
{
	const char *slash = strchr(name, '/'), *dot = strchr(name, '.');
	char buf[512];

	if (slash != NULL && !(slash == name + 1 && name[0] == '.'))
		return ism_v_strdup(v, name);
	if (slash != NULL) {
		snprintf(buf, sizeof(buf), "%s/%s", ns, slash + 1);
	} else if (dot == NULL) {
		snprintf(buf, sizeof(buf), "%s/%s", ns, name);
	} else {
		const char *end = strchr(dot + 1, '.');
		size_t nl = end ? (size_t)(end - dot - 1) : strlen(dot + 1);

		snprintf(buf, sizeof(buf), "%.*s/%.*s", (int)nl, dot + 1, (int)(dot - name), name);
	}
	return ism_v_strdup(v, buf);
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
 * where allow_present (headers, query parameters). An empty prefix only where
 * empty_prefix (a uri's: Istio's validateStringMatch refuses it elsewhere, as
 * Envoy's StringMatcher does). */
static void parse_sm(struct ism_vctx *v, const struct ism_node *n, bool allow_present,
		     bool empty_prefix, struct ism_cm_sm *m)
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

		if (ism_v_string_scalar(v, val)) {
			m->s = val->str;
			if (strcmp(k->str, "exact") == 0) {
				m->kind = ISM_SM_EXACT;
			} else if (strcmp(k->str, "prefix") == 0) {
				m->kind = ISM_SM_PREFIX;
				if (val->len == 0 && !empty_prefix)
					ism_v_err(v, val,
						  "prefix string match should not be empty (as "
						  "Istio; only a uri's may be)");
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
	parse_sm(v, n, allow_present, true, m);
}

#define ROUTING_CLAIM "@request.auth.claims"

/* Istio's ToRoutingClaim: a header name "@request.auth.claims.<a>.<b>" or
 * "@request.auth.claims[<a>][<b>]" (the prefix without regard to case) is
 * the verified JWT's claim; its names joined with ']' into *path (the
 * model's pool), or an error at k when a name is empty or holds ']'. false:
 * not a claim. */
static bool routing_claim(struct ism_vctx *v, const struct ism_node *k, const char **path)
{
	size_t pl = sizeof(ROUTING_CLAIM) - 1, len = k->len - pl, n = 0;
	const char *rest = k->str + pl;
	bool square, bad = false;
	char *d;

	*path = NULL;
	if (k->len <= pl + 1 || strncasecmp(k->str, ROUTING_CLAIM, pl) != 0)
		return false;
	square = rest[0] == '[';
	if (rest[0] != '.' && !(square && len > 2 && rest[len - 1] == ']'))
		return false;
	if ((d = ism_v_strdup(v, rest + 1)) == NULL)
		return true;
	if (square)
		d[len - 2] = '\0'; /* "a][b" */
	/* The names, in place, joined with ']' (never longer than the text). */
	for (const char *p = d;;) {
		const char *sep = square ? strstr(p, "][") : strchr(p, '.');
		size_t sl = sep != NULL ? (size_t)(sep - p) : strlen(p);

		bad |= sl == 0 || memchr(p, ']', sl) != NULL;
		memmove(d + n, p, sl);
		n += sl;
		if (sep == NULL)
			break;
		d[n++] = ']';
		p = sep + (square ? 2 : 1);
	}
	d[n] = '\0';
	if (bad)
		ism_v_err(v, k, "\"%s\": a claim's names must not be empty or hold ']'", k->str);
	else
		*path = d;
	return true;
}

/* Istio's pseudo-headers a header match may name. */
static bool pseudo_header(const char *s)
{
	static const char *const names[] = {":method", ":scheme", ":authority", ":path", ":status"};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(s, names[i]) == 0)
			return true;
	return false;
}

/* Whether StringMatch n is {regex: "*"}: not an RE2 regex, which istiod
 * makes a presence match (canBeConvertedToPresentMatch); only a
 * withoutHeaders' passes Istio's validation. */
static bool star_regex(const struct ism_node *n)
{
	const struct ism_node *re =
	    n->kind == ISM_NODE_MAP && n->n == 1 ? ism_node_get(n, "regex", NULL) : NULL;

	return re != NULL && re->kind == ISM_NODE_SCALAR && strcmp(re->str, "*") == 0;
}

/* A match's map at key (headers, withoutHeaders, queryParams): name ->
 * StringMatch, names lowercased when lower; with claims (headers,
 * withoutHeaders), "@request.auth.claims..." names go there instead. */
static size_t parse_kv(struct ism_vctx *v, const struct ism_node *match, const char *key,
		       bool lower, struct ism_cm_kv **out, struct ism_cm_kv **claims,
		       size_t *n_claims)
{
	const struct ism_node *n = ism_v_node(v, match, key, false, ISM_NODE_MAP);
	size_t count = 0, old;

	*out = NULL;
	if (n == NULL)
		return 0;
	*out = ism_v_alloc(v, n->n, sizeof(**out));
	if (claims != NULL)
		*claims = ism_v_alloc(v, n->n, sizeof(**claims));
	if (*out == NULL || (claims != NULL && *claims == NULL))
		return 0;
	old = ism_v_push(v, ".%s", key);
	for (size_t i = 0; i < n->n; i++) {
		const struct ism_node *k = n->pairs[i].key;
		size_t o2 = ism_v_push(v, ".%s", k->str);
		const char *claim = NULL;
		struct ism_cm_kv *kv;

		if (claims != NULL && routing_claim(v, k, &claim)) {
			if (v->claims_refused)
				ism_v_err(v, k,
					  "JWT claim based routing (key: %s) is only supported for "
					  "gateway, found no gateways (as Istio)",
					  k->str);
			kv = &(*claims)[(*n_claims)++];
			kv->name = claim != NULL ? claim : "";
			parse_sm(v, n->pairs[i].value, false, false, &kv->m);
			if (kv->m.kind == ISM_SM_ANY)
				ism_v_err(v, n->pairs[i].value,
					  "a claim's match needs exact, prefix or regex");
			ism_v_pop(v, o2);
			continue;
		}
		kv = &(*out)[count++];
		if (k->len == 0)
			ism_v_err(v, k, "name must not be empty");
		else if (claims != NULL && !ism_is_token(k->str) && !pseudo_header(k->str))
			ism_v_err(
			    v, k,
			    "\"%s\" is not a header name (RFC 9110 token, a pseudo-header, or "
			    "@request.auth.claims.<name>)",
			    k->str);
		kv->name = lower ? ism_model_lower_dup(v, k->str) : k->str;
		if (claims != NULL && strcmp(k->str, ":status") == 0)
			ism_v_warn(
			    v, k,
			    "\":status\" is never a request's header in Envoy: the condition "
			    "always finds it absent");
		if (strcmp(key, "withoutHeaders") == 0 && star_regex(n->pairs[i].value))
			kv->m.kind = ISM_SM_PRESENT; /* istiod's present match: the header absent */
		else
			parse_sm(v, n->pairs[i].value, true, false, &kv->m);
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

	ism_model_istio_labels(v, n, "sourceLabels", &m->source_labels, &m->n_source_labels);
	if (ism_v_str(v, n, "sourceNamespace", false, &m->source_ns) > 0 &&
	    !ism_model_istio_label(m->source_ns)) {
		size_t old = ism_v_push(v, ".sourceNamespace");

		ism_v_err(v, ism_node_get(n, "sourceNamespace", NULL),
			  "sourceNamespace match %s is invalid (as Istio: a DNS-1123 label)",
			  m->source_ns);
		ism_v_pop(v, old);
	}
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
		/* `{}`, which Istio's validation lets pass: an empty uri match
		 * is its default (prefix "/": any path), an empty method, scheme
		 * or authority one a presence match (TranslateRouteMatch,
		 * canBeConvertedToPresentMatch). */
		if (i > 0 || s->kind != ISM_NODE_MAP || s->n != 0)
			parse_sm(v, s, i > 0, i == 0, dst[i]);
		ism_v_pop(v, old);
	}
	m->n_headers = parse_kv(v, n, "headers", true, &m->headers, &m->claims, &m->n_claims);
	m->n_without = parse_kv(v, n, "withoutHeaders", true, &m->without, &m->without_claims,
				&m->n_without_claims);
	m->n_query = parse_kv(v, n, "queryParams", false, &m->query, NULL, NULL);
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
		const char *why = ism_model_domain_err(host);

		d->host_at = ism_node_get(n, "host", NULL);
		/* Istio's validateDestination: ValidateWildcardDomain, and not
		 * "*"; a wildcard that passes is Istio's, not isthmus's yet. */
		if (why != NULL || host[0] == '*') {
			size_t old = ism_v_push(v, ".host");

			if (why != NULL)
				ism_v_err(v, d->host_at, "invalid host name \"%s\": %s", host, why);
			else if (strcmp(host, "*") == 0)
				ism_v_err(v, d->host_at, "invalid destination host * (as Istio)");
			else
				ism_v_err(v, d->host_at,
					  "a wildcard destination host (\"%s\") is " ISM_NOT_IMPL,
					  host);
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

/* One retryOn entry, as it stands between the commas (Istio trims nothing): a
 * condition name or a status code. */
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
		/* Istio's validation takes the codes Go's http.StatusText names
		 * (and istiod makes retriable status codes of those only). */
		if (ism_parse_u64(buf, &code) < 0 || code < 100 || code > 599 ||
		    !ism_http_status_known((int)code)) {
			ism_v_err(v, at, "\"%s\" is not a registered HTTP status code", buf);
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

		/* Split on ',' alone, as Istio's ValidateHTTPRetry: " reset" is
		 * no policy. */
		retry_entry(v, n, p, len, r, codes);
		if (p[len] == '\0')
			break;
		p += len + 1;
	}
	ism_v_pop(v, old);
}

/* Istio's default policy, for routes without `retries`
 * (pilot/pkg/networking/core/route/retry: retriable-status-codes without a
 * code since Istio 1.24, which stopped retrying an upstream's 503: a request
 * that reached its upstream may have been acted on). */
static void default_retry(struct ism_retry *r)
{
	*r = (struct ism_retry){.attempts = 2,
				.retry_on = ISM_RETRY_CONNECT_FAILURE | ISM_RETRY_REFUSED_STREAM |
					    ISM_RETRY_GRPC_UNAVAILABLE | ISM_RETRY_GRPC_CANCELLED |
					    ISM_RETRY_RETRIABLE_STATUS_CODES,
				.ignore_previous_hosts = 1,
				.backoff_base_ms = 25};
}

/* retries n with attempts 0 (or absent): Istio's ValidateHTTPRetry refuses
 * perTryTimeout, retryOn and retryRemoteLocalities beside it ("http retry
 * policy configured when attempts are set to 0 (disabled)"); without them,
 * a warning. */
static void disabled_retries(struct ism_vctx *v, const struct ism_node *n)
{
	static const char *const set[] = {"perTryTimeout", "retryOn", "retryRemoteLocalities"};

	for (size_t i = 0; i < 3; i++)
		if (ism_node_get(n, set[i], NULL) != NULL) {
			ism_v_err_key(v, n, set[i],
				      "http retry policy configured when attempts are set to 0 "
				      "(disabled), as Istio refuses it");
			return;
		}
	if (ism_node_get(n, "attempts", NULL) == NULL)
		ism_v_warn(v, n, "attempts is not set: no retries (Istio's default is 0 here)");
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
	if (ism_v_u32(v, n, "attempts", false, 0, 10000, &rt->attempts) >= 0 && rt->attempts == 0)
		disabled_retries(v, n);
	ism_v_istio_dur(v, n, "perTryTimeout", &rt->per_try_timeout_ms);
	/* Envoy's base interval: retry N waits below (2^N - 1) x backoff, at most
	 * ten times it. */
	ism_v_istio_dur(v, n, "backoff", &rt->backoff_base_ms);
	parse_retry_on(v, n, rt);
	if (ism_v_bool(v, n, "retryIgnorePreviousHosts", &b) > 0) {
		rt->ignore_previous_hosts = b;
		r->retry_prev_set = true;
	}
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

/* A value checked by ok, reported with what it must be. */
static void check_value(struct ism_vctx *v, const struct ism_node *map, const char *key,
			bool (*ok)(const char *), const char *what)
{
	const struct ism_node *n = ism_node_get(map, key, NULL);

	if (n == NULL || n->kind != ISM_NODE_SCALAR || ok(n->str))
		return;
	ism_v_err_key(v, map, key, "must be %s", what);
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
	ism_model_one_of(v, n, paths, "uri, uriRegexRewrite");
	if (ism_v_str(v, n, "uri", false, &r->uri) > 0)
		check_value(
		    v, n, "uri", path_ok,
		    "a path: starting with \"/\", without spaces, control characters or '#'");
	parse_regex_rewrite(v, n, r);
	if (ism_v_str(v, n, "authority", false, &r->authority) > 0)
		check_value(v, n, "authority", ism_model_authority_ok,
			    "a host name or address, with an optional port");
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
		ism_model_key_err(v, rd, "prefixRewrite", msg);
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
	ism_v_err_key(
	    v, rd, "redirectCode",
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
	ism_model_one_of(v, n, paths, "uri, prefixRewrite");
	ism_model_one_of(v, n, ports, "port, derivePort");
	if (ism_v_str(v, n, "uri", false, &rd->uri) > 0)
		check_value(v, n, "uri", path_ok, path_what);
	if (ism_v_str(v, n, "prefixRewrite", false, &rd->prefix_rewrite) > 0) {
		check_value(v, n, "prefixRewrite", path_ok, path_what);
		check_prefix_matches(v, n, r);
	}
	if (ism_v_str(v, n, "authority", false, &rd->authority) > 0)
		check_value(v, n, "authority", ism_model_authority_ok,
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
	ism_model_one_of(v, n, keys, "string, bytes");
	s = ism_v_node(v, n, "string", false, ISM_NODE_SCALAR);
	b = ism_v_node(v, n, "bytes", false, ISM_NODE_SCALAR);
	if (s != NULL) {
		d->body = s->str;
		d->body_len = s->len;
	} else if (b != NULL) {
		unsigned char *out = ism_v_alloc(v, b->len / 4 * 3 + 3, 1);
		ssize_t len = out != NULL ? ism_b64_decode(b->str, b->len, out) : 0;

		if (len < 0) {
			ism_v_err_key(v, n, "bytes", "must be base64 (RFC 4648, padding optional)");
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
			ism_model_key_err(
			    v, n, "redirect",
			    "a route that delegates must not redirect (Istio: root HTTP route "
			    "must not specify redirect)");
		return;
	}
	ism_model_one_of(v, n, ways, "route, redirect, directResponse");
	/* Istio refuses a rewrite or a fault beside a redirect or a directResponse. */
	for (const char *const *k = (const char *const[]){"rewrite", "fault", NULL}; *k; k++)
		if (ism_node_get(n, *k, NULL) != NULL &&
		    (ism_node_get(n, "redirect", NULL) != NULL ||
		     ism_node_get(n, "directResponse", NULL) != NULL))
			ism_model_key_err(
			    v, n, *k,
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
	r->delegate = ism_model_lower_dup(v, buf);
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
		/* int32 in Istio's API, whose validation refuses only a
		 * negative one; the sum must fit Envoy's uint32 (below). */
		ism_v_u32(v, it, "weight", false, 0, INT32_MAX, &d->weight);
		if (http)
			ism_model_headers(v, it, &d->headers, NULL);
	next:
		ism_v_pop(v, o2);
	}
	/* Istio: a single destination takes all traffic whatever its weight;
	 * several must not all weigh 0 (its validation's "total destination
	 * weight = 0"; every request would be 503). */
	if (*n == 1) {
		dest[0].weight = 100;
	} else if (dest != NULL) {
		uint64_t total = 0;

		for (size_t i = 0; i < *n; i++)
			total += dest[i].weight;
		if (total == 0)
			ism_v_err(v, l,
				  "total destination weight = 0: give one destination a weight");
		else if (total > UINT32_MAX)
			ism_v_err(v, l,
				  "the sum of the weights, %llu, exceeds 4294967295 (Envoy refuses "
				  "such a route)",
				  (unsigned long long)total);
	}
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
	ism_v_istio_dur(v, n, "timeout", &r->timeout_ms);
	parse_retries(v, n, r);
	parse_rewrite(v, n, &r->rewrite);
	ism_model_headers(v, n, &r->headers, r->rewrite.authority);
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

/* One destinationSubnets entry s, as Istio's ValidateIPSubnet takes them (an
 * AuthorizationPolicy's ipBlocks too). */
bool ism_model_subnet(const char *s, struct ism_subnet *out)
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
		if (ism_model_subnet(it->str, &m->subnets[m->n_subnets])) {
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
		h = ism_model_lower_dup(v, it->str);
		if (h == NULL ||
		    (ism_model_domain_err(h) != NULL && !ism_model_parse_ip(h, &ss, &len))) {
			ism_v_err(v, it, "invalid SNI host \"%s\"", it->str);
			goto next;
		}
		if (ism_model_parse_ip(h, &ss, &len))
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
		ism_model_key_err(v, spec, key, msg);
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
			ism_model_key_err(v, it, "match",
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

/* Whether spec.gateways names a gateway other than the mesh (Istio's
 * isGateway: the VirtualService applies to gateways, not to the mesh). */
static bool binds_gateway(const struct ism_node *spec)
{
	const struct ism_node *g = ism_node_get(spec, "gateways", NULL);

	for (size_t i = 0; g != NULL && g->kind == ISM_NODE_SEQ && i < g->n; i++)
		if (g->items[i]->kind == ISM_NODE_SCALAR && strcmp(g->items[i]->str, "mesh") != 0)
			return true;
	return false;
}

/* Istio's duplicate hosts of a VirtualService (host.Name.Matches of any
 * two): the same name twice, or one that a wildcard of the list covers
 * ("*.example.com" and "a.example.com", "*.com" and "*.example.com"). h: the
 * n hosts as written (lowercased), l the list node. Looked up by suffix, so a
 * long list stays linear: covering(m, h[i], i, star) is the index of another
 * host of map m that covers h[i] ("*" at star, or "*" and a suffix of h[i]
 * from one of its dots), or UINT32_MAX. */
static uint32_t covering(const struct ism_strmap *m, const char *h, uint32_t i, uint32_t star)
{
	char buf[300];
	uint32_t j;

	if (star != UINT32_MAX && star != i)
		return star;
	for (const char *d = strchr(h + 1, '.'); d != NULL; d = strchr(d + 1, '.')) {
		snprintf(buf, sizeof(buf), "*%s", d);
		if (ism_strmap_get(m, buf, strlen(buf), &j) && j != i)
			return j;
	}
	return UINT32_MAX;
}

static void dup_hosts(struct ism_vctx *v, const struct ism_node *l, const char *const *h, size_t n)
{
	struct ism_strmap *m = ism_v_map(v, n);
	uint32_t star = UINT32_MAX, j = UINT32_MAX;
	size_t i, old;

	if (m == NULL)
		return;
	/* The same name twice: i the second, j the first. */
	for (i = 0; i < n; i++) {
		if (ism_v_map_add(v, m, h[i], strlen(h[i]), (uint32_t)i, &j) == 0)
			break;
		if (strcmp(h[i], "*") == 0)
			star = (uint32_t)i;
	}
	/* Else the first name that another's wildcard covers; a partial
	 * wildcard ("*-api.example.com") by a comparison with each name. */
	for (size_t k = 0; i == n && k < n; k++)
		if ((j = covering(m, h[k], (uint32_t)k, star)) != UINT32_MAX)
			i = k;
	for (size_t p = 0; i == n && p < n; p++) {
		if (!ism_model_partial_wild(h[p]))
			continue;
		for (size_t k = 0; i == n && k < n; k++)
			if (k != p && ism_model_host_covers(h[p], h[k])) {
				i = k;
				j = (uint32_t)p;
			}
	}
	if (i == n)
		return;
	old = ism_v_push(v, ".hosts[%zu]", i);
	ism_v_err(v, l->items[i], "duplicate hosts in virtual service: %s & %s (as Istio)", h[j],
		  h[i]);
	ism_v_pop(v, old);
}

/* --- Istio's analyzeUnreachable*Rules (pkg/config/validation) --- */

/* A growing text, malloc'd; len -1 once memory ran out. */
struct canon {
	char *p;
	size_t len, cap;
	bool nomem;
};

static void canon_put(struct canon *c, const char *s, size_t n)
{
	if (c->nomem)
		return;
	if (c->len + n + 1 > c->cap) {
		size_t cap = (c->len + n + 1) * 2;
		char *p = realloc(c->p, cap);

		if (p == NULL) {
			c->nomem = true;
			return;
		}
		c->p = p;
		c->cap = cap;
	}
	memcpy(c->p + c->len, s, n);
	c->len += n;
	c->p[c->len] = '\0';
}

static int pair_cmp(const void *a, const void *b)
{
	const struct ism_node *x = (*(const struct ism_pair *const *)a)->key;
	const struct ism_node *y = (*(const struct ism_pair *const *)b)->key;
	int r = memcmp(x->str, y->str, x->len < y->len ? x->len : y->len);

	return r != 0 ? r : x->len < y->len ? -1 : x->len > y->len;
}

/* n as one text whatever the order of its maps' keys (Istio compares matches
 * by their JSON, whose fields have one order), a map's "name" left out at the
 * top (skip_name), as Istio's asJSON leaves a match's name out. */
static void canon_node(struct canon *c, const struct ism_node *n, bool skip_name)
{
	char head[32];

	switch (n->kind) {
	case ISM_NODE_SCALAR:
		snprintf(head, sizeof(head), "s%zu:", n->len);
		canon_put(c, head, strlen(head));
		canon_put(c, n->str, n->len);
		return;
	case ISM_NODE_SEQ:
		snprintf(head, sizeof(head), "l%zu:", n->n);
		canon_put(c, head, strlen(head));
		for (size_t i = 0; i < n->n; i++)
			canon_node(c, n->items[i], false);
		return;
	case ISM_NODE_MAP: {
		const struct ism_pair **ps = n->n ? malloc(n->n * sizeof(*ps)) : NULL;

		if (n->n && ps == NULL) {
			c->nomem = true;
			return;
		}
		for (size_t i = 0; i < n->n; i++)
			ps[i] = &n->pairs[i];
		if (n->n > 1) /* qsort takes no NULL, even for no item */
			qsort(ps, n->n, sizeof(*ps), pair_cmp);
		canon_put(c, "m", 1);
		for (size_t i = 0; i < n->n; i++) {
			if (skip_name && ps[i]->key->len == 4 &&
			    memcmp(ps[i]->key->str, "name", 4) == 0)
				continue;
			canon_node(c, ps[i]->key, false);
			canon_node(c, ps[i]->value, false);
		}
		canon_put(c, "e", 1);
		free(ps);
		return;
	}
	}
	canon_put(c, "?", 1);
}

/* Istio's routeName or requestName: "name" when the item (a map) has one
 * (http routes and matches only), else "#i". */
static const char *item_name(const struct ism_node *it, size_t i, bool named, char out[80])
{
	const struct ism_node *name =
	    named && it->kind == ISM_NODE_MAP ? ism_node_get(it, "name", NULL) : NULL;

	if (name != NULL && name->kind == ISM_NODE_SCALAR && name->len > 0)
		snprintf(out, 80, "\"%.64s\"", name->str);
	else
		snprintf(out, 80, "#%zu", i);
	return out;
}

/* An http match with a uri prefix, as Istio's genMatchHTTPRoutes keeps it for
 * the overlap check: its other conditions as "exact:V" / "prefix:V" texts (a
 * method defaulting to exact:GET, as Istio's does). */
struct pmatch {
	size_t rule, match;
	const struct ism_node *at;
	const char *prefix, *method, *authority;
	const struct ism_node *port, *maps[3]; /* headers, queryParams, withoutHeaders */
	uint32_t next; /* the next match of the same prefix (overlaps), or UINT32_MAX */
};

static const char *exact_or_prefix(struct ism_vctx *v, const struct ism_node *sm)
{
	const struct ism_node *e = sm != NULL ? ism_node_get(sm, "exact", NULL) : NULL;
	const struct ism_node *p = sm != NULL ? ism_node_get(sm, "prefix", NULL) : NULL;
	char *out;
	size_t n;

	if (e != NULL && e->kind == ISM_NODE_SCALAR && e->len > 0)
		p = NULL;
	else if (p == NULL || p->kind != ISM_NODE_SCALAR || p->len == 0)
		return "";
	else
		e = NULL;
	n = (e != NULL ? e->len : p->len) + 8;
	out = ism_v_alloc(v, n, 1);
	if (out != NULL)
		snprintf(out, n, "%s:%s", e != NULL ? "exact" : "prefix",
			 e != NULL ? e->str : p->str);
	return out != NULL ? out : "";
}

/* Istio's check of one condition of the overlap: equal, or the earlier
 * one's text begins with the later one's (its strings.HasPrefix, as written). */
static bool covers_text(const char *a, const char *b)
{
	return strcmp(a, b) == 0 || strncmp(a, b, strlen(b)) == 0;
}

/* Istio's coveredValidation of a map condition (headers, query parameters,
 * withoutHeaders): the same keys, each value covered. */
static bool covers_map(struct ism_vctx *v, const struct ism_node *a, const struct ism_node *b)
{
	size_t na = a != NULL && a->kind == ISM_NODE_MAP ? a->n : 0;
	size_t nb = b != NULL && b->kind == ISM_NODE_MAP ? b->n : 0;

	if (na != nb)
		return false;
	for (size_t i = 0; i < na; i++) {
		const struct ism_node *k = a->pairs[i].key;
		const struct ism_node *bv = ism_node_get(b, k->str, NULL);

		if (bv == NULL ||
		    !covers_text(exact_or_prefix(v, a->pairs[i].value), exact_or_prefix(v, bv)))
			return false;
	}
	return true;
}

/* Istio's coveredValidation: the earlier match a takes whatever b would. */
static bool covers(struct ism_vctx *v, const struct pmatch *a, const struct pmatch *b)
{
	bool same_port = (a->port == NULL && b->port == NULL) ||
			 (a->port != NULL && b->port != NULL && a->port->len == b->port->len &&
			  memcmp(a->port->str, b->port->str, a->port->len) == 0);

	if (strncmp(b->prefix, a->prefix, strlen(a->prefix)) != 0 || !same_port ||
	    !covers_text(a->method, b->method) || !covers_text(a->authority, b->authority))
		return false;
	for (int k = 0; k < 3; k++)
		if (!covers_map(v, a->maps[k], b->maps[k]))
			return false;
	return true;
}

static void warn_match(struct ism_vctx *v, const char *key, size_t i, size_t j,
		       const struct ism_node *at, const char *rule, const char *what,
		       const char *dup)
{
	size_t old = ism_v_push(v, ".%s[%zu].match[%zu]", key, i, j);

	ism_v_warn(
	    v, at,
	    "virtualService rule %s match %s is not used (duplicate/overlapping match in rule "
	    "%s)",
	    rule, what, dup);
	ism_v_pop(v, old);
}

/* Each prefix match that a former one with a shorter prefix covers, found
 * through the former ones' prefixes (a map of prefix to its matches, in
 * order): linear in the matches and their prefixes' lengths, where Istio
 * compares every pair. */
static void overlaps(struct ism_vctx *v, const struct ism_node *l, struct pmatch *pm, size_t n)
{
	struct ism_strmap *by_prefix = ism_v_map(v, n);
	char rule[80], other[80], what[200], dup[400], name[80];

	if (by_prefix == NULL)
		return;
	for (size_t b = 0; b < n; b++) {
		size_t len = strlen(pm[b].prefix);
		uint32_t first;
		int rc;

		for (size_t k = 1; k < len; k++) {
			uint32_t a;

			if (!ism_strmap_get(by_prefix, pm[b].prefix, k, &a))
				continue;
			for (; a != UINT32_MAX; a = pm[a].next) {
				if (!covers(v, &pm[a], &pm[b]))
					continue;
				item_name(l->items[pm[b].rule], pm[b].rule, true, rule);
				item_name(pm[b].at, pm[b].match, true, name);
				snprintf(what, sizeof(what), "%s of prefix %.100s", name,
					 pm[b].prefix);
				item_name(pm[a].at, pm[a].match, true, name);
				item_name(l->items[pm[a].rule], pm[a].rule, true, other);
				snprintf(dup, sizeof(dup), "%s of prefix %.100s on %s", name,
					 pm[a].prefix, other);
				warn_match(v, "http", pm[b].rule, pm[b].match, pm[b].at, rule, what,
					   dup);
			}
		}
		/* b joins the matches of its prefix, after those before it */
		pm[b].next = UINT32_MAX;
		rc = ism_v_map_add(v, by_prefix, pm[b].prefix, len, (uint32_t)b, &first);
		if (rc < 0)
			return;
		if (rc == 0) {
			while (pm[first].next != UINT32_MAX)
				first = pm[first].next;
			pm[first].next = (uint32_t)b;
		}
	}
}

/* Istio's analyzeUnreachable*Rules, as its validation warns
 * (VirtualServiceUnreachableRule, VirtualServiceIneffectiveMatch): a rule
 * after one without matches, which takes every request; a match a former
 * rule has already (the same conditions, its name aside); a rule all of whose
 * matches are such; and for http, a prefix match a former one with a shorter
 * prefix covers, the other conditions the same or covered. key: "http",
 * "tcp" or "tls". */
static void unreachable_rules(struct ism_vctx *v, const struct ism_node *spec, const char *key)
{
	const struct ism_node *l = ism_node_get(spec, key, NULL);
	bool http = strcmp(key, "http") == 0;
	size_t empty = SIZE_MAX, n_pm = 0, n_matches = 0;
	struct ism_strmap *seen;
	struct pmatch *pm;

	if (l == NULL || l->kind != ISM_NODE_SEQ || l->n == 0)
		return;
	for (size_t i = 0; i < l->n; i++) {
		const struct ism_node *m = l->items[i]->kind == ISM_NODE_MAP
					       ? ism_node_get(l->items[i], "match", NULL)
					       : NULL;

		n_matches += m != NULL && m->kind == ISM_NODE_SEQ ? m->n : 0;
	}
	seen = ism_v_map(v, n_matches ? n_matches : 1);
	pm = http ? ism_v_alloc(v, 1, sizeof(*pm)) : NULL;
	for (size_t i = 0, cap_pm = 1; seen != NULL && i < l->n; i++) {
		const struct ism_node *it = l->items[i], *m;
		size_t old, dups = 0;
		char rule[80], what[80], dup[80];

		if (it->kind != ISM_NODE_MAP)
			continue;
		m = ism_node_get(it, "match", NULL);
		item_name(it, i, http, rule);
		if (m == NULL || (m->kind == ISM_NODE_SEQ && m->n == 0) || empty != SIZE_MAX) {
			old = ism_v_push(v, ".%s[%zu]", key, i);
			if (empty != SIZE_MAX)
				ism_v_warn(v, it, "virtualService rule %s not used (%s)", rule,
					   m == NULL || (m->kind == ISM_NODE_SEQ && m->n == 0)
					       ? "only the last rule can have no matches"
					       : "route without matches defined before");
			ism_v_pop(v, old);
			if (empty == SIZE_MAX)
				empty = i;
			continue;
		}
		if (m->kind != ISM_NODE_SEQ)
			continue;
		for (size_t j = 0; j < m->n; j++) {
			const struct ism_node *mt = m->items[j];
			struct canon c = {0};
			uint32_t found;
			int rc;

			canon_node(&c, mt, http);
			rc = c.nomem ? -1
				     : ism_v_map_add(v, seen, ism_v_strdup(v, c.p), c.len,
						     (uint32_t)i, &found);
			free(c.p);
			if (rc < 0) {
				v->nomem = true;
				return;
			}
			if (rc == 0) {
				item_name(mt, j, http, what);
				item_name(l->items[found], found, http, dup);
				warn_match(v, key, i, j, mt, rule, what, dup);
				dups++;
				continue;
			}
			if (!http || mt->kind != ISM_NODE_MAP)
				continue;
			const struct ism_node *uri = ism_node_get(mt, "uri", NULL);
			const struct ism_node *pre =
			    uri != NULL ? ism_node_get(uri, "prefix", NULL) : NULL;
			const char *method = exact_or_prefix(v, ism_node_get(mt, "method", NULL));

			if (pre == NULL || pre->kind != ISM_NODE_SCALAR || pre->len == 0)
				continue;
			if (n_pm == cap_pm) {
				struct pmatch *g = ism_v_alloc(v, cap_pm * 2, sizeof(*g));

				if (g == NULL)
					return;
				memcpy(g, pm, n_pm * sizeof(*g));
				pm = g;
				cap_pm *= 2;
			}
			pm[n_pm++] = (struct pmatch){
			    .rule = i,
			    .match = j,
			    .at = mt,
			    .prefix = pre->str,
			    .method = method[0] ? method : "exact:GET",
			    .authority = exact_or_prefix(v, ism_node_get(mt, "authority", NULL)),
			    .port = ism_node_get(mt, "port", NULL),
			    .maps = {ism_node_get(mt, "headers", NULL),
				     ism_node_get(mt, "queryParams", NULL),
				     ism_node_get(mt, "withoutHeaders", NULL)},
			};
		}
		if (dups > 0 && dups == m->n) {
			old = ism_v_push(v, ".%s[%zu]", key, i);
			ism_v_warn(
			    v, it,
			    "virtualService rule %s not used (all matches used by prior rules)",
			    rule);
			ism_v_pop(v, old);
		}
	}
	if (pm != NULL && n_pm > 1)
		overlaps(v, l, pm, n_pm);
}

/* Istio: http, tcp or tls must be provided (a list with a route). */
static void some_routes(struct ism_vctx *v, const struct ism_node *spec)
{
	static const char *const kinds[] = {"http", "tcp", "tls"};
	const struct ism_node *first = NULL;
	size_t old;

	for (size_t i = 0; i < 3; i++) {
		const struct ism_node *l = ism_node_get(spec, kinds[i], NULL);

		if (l != NULL && (l->kind != ISM_NODE_SEQ || l->n > 0))
			return;
		if (first == NULL && l != NULL)
			first = l;
	}
	old = ism_v_push(v, ".http");
	ism_v_err(v, first != NULL ? first : spec,
		  "%s: a VirtualService has http, tcp or tls routes (Istio: http, tcp or tls must "
		  "be provided in virtual service)",
		  first != NULL ? "no route" : "required field missing");
	ism_v_pop(v, old);
}

void ism_model_parse_vs(struct ism_vctx *v, const struct ism_node *spec, struct ism_cm_vs *vs)
{
	static const char *const keys[] = {"hosts", "gateways", "http", "tcp",
					   "tls",   "exportTo", NULL};
	const struct ism_node *gl, *l;
	const char **hosts, **gws, **raw, *why;
	size_t nh, ng, old, n_raw = 0;
	bool gateway = binds_gateway(spec);

	ism_v_keys(v, spec, keys, NULL);
	ism_model_parse_export(v, spec, vs->r.ns, ISM_EXPORT_ANY, &vs->export_to, &vs->n_export_to);
	/* Without hosts: a delegate, whose routes serve only through another
	 * VirtualService's delegate (Istio). */
	hosts = ism_v_strlist(v, spec, "hosts", false, &nh, &l);
	vs->delegate_only = nh == 0;
	vs->hosts = ism_v_alloc(v, nh, sizeof(*vs->hosts));
	raw = ism_v_alloc(v, nh, sizeof(*raw));
	for (size_t i = 0; hosts != NULL && vs->hosts != NULL && raw != NULL && i < nh; i++) {
		struct sockaddr_storage ss;
		socklen_t len;

		/* Istio's ValidateWildcardDomain; an IP address passes. */
		why = ism_model_domain_err(hosts[i]);
		if (why != NULL &&
		    (strchr(hosts[i], '*') != NULL || !ism_model_parse_ip(hosts[i], &ss, &len))) {
			old = ism_v_push(v, ".hosts[%zu]", i);
			ism_v_err(v, l->items[i], "invalid host \"%s\": %s", hosts[i], why);
			ism_v_pop(v, old);
			continue;
		}
		if (!gateway && strcmp(hosts[i], "*") == 0) {
			old = ism_v_push(v, ".hosts[%zu]", i);
			ism_v_err(
			    v, l->items[i],
			    "wildcard host * is not allowed for virtual services bound to the "
			    "mesh gateway (as Istio)");
			ism_v_pop(v, old);
			continue;
		}
		raw[n_raw++] = ism_model_lower_dup(v, hosts[i]);
		vs->hosts[vs->n_hosts++] = ism_model_host(v, hosts[i], vs->r.ns);
	}
	if (raw != NULL && n_raw == nh && nh > 1)
		dup_hosts(v, l, raw, n_raw);
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
	some_routes(v, spec);
	v->claims_refused = !gateway;
	parse_http_routes(v, spec, vs);
	v->claims_refused = false;
	vs->tcp = parse_l4routes(v, spec, "tcp", vs, NULL, 0, &vs->n_tcp);
	vs->tls = parse_l4routes(v, spec, "tls", vs, raw, n_raw, &vs->n_tls);
	unreachable_rules(v, spec, "http");
	unreachable_rules(v, spec, "tcp");
	unreachable_rules(v, spec, "tls");
}
