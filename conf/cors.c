/* SPDX-License-Identifier: Apache-2.0 */
/* corsPolicy of an HTTP route (Istio CorsPolicy), validated as Istio's webhook
 * validates it and kept as Istio hands it to Envoy's CORS filter: origins as
 * string matches, the lists joined with ",", maxAge in whole seconds. */
#include <stdio.h>
#include <string.h>

#include "conf/model.h"
#include "lib/ascii.h"

/* The methods Istio accepts in allowMethods (its supportedCORSMethods). */
static const char *const cors_methods[] = {"GET",     "HEAD",	 "POST",  "PUT", "PATCH", "DELETE",
					   "CONNECT", "OPTIONS", "TRACE", "*",	 NULL};

static bool method_ok(const char *s)
{
	for (const char *const *m = cors_methods; *m != NULL; m++)
		if (strcmp(*m, s) == 0)
			return true;
	return false;
}

/* The list at n.key, each entry checked, joined with "," as Istio joins it;
 * NULL when absent or empty. */
static const char *joined(struct ism_vctx *v, const struct ism_node *n, const char *key,
			  bool methods)
{
	const struct ism_node *l;
	size_t cnt, len = 0, old;
	const char **items = ism_v_strlist(v, n, key, false, &cnt, &l);
	char *out, *p;

	if (items == NULL || cnt == 0)
		return NULL;
	old = ism_v_push(v, ".%s", key);
	for (size_t i = 0; i < l->n; i++) {
		const struct ism_node *it = l->items[i];
		size_t o2;

		/* Entries that are not strings were reported by ism_v_strlist. */
		if (it->kind != ISM_NODE_SCALAR || it->len == 0)
			continue;
		o2 = ism_v_push(v, "[%zu]", i);
		if (methods && !method_ok(it->str))
			ism_v_err(v, it, "\"%s\" is not a supported HTTP method", it->str);
		else if (!methods && !ism_is_token(it->str))
			ism_v_err(v, it, "\"%s\" is not a valid header name", it->str);
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
	for (size_t i = 0; i < cnt; i++)
		len += strlen(items[i]) + 1;
	out = ism_v_alloc(v, len, 1);
	if (out == NULL)
		return NULL;
	p = out;
	for (size_t i = 0; i < cnt; i++)
		p += sprintf(p, "%s%s", i ? "," : "", items[i]);
	return out;
}

/* allowOrigins: string matches; an empty one allows nothing and is refused,
 * as Istio refuses it. */
static void parse_origins(struct ism_vctx *v, const struct ism_node *l, struct ism_cm_cors *c)
{
	size_t old = ism_v_push(v, ".allowOrigins");

	c->origins = ism_v_alloc(v, l->n, sizeof(*c->origins));
	for (size_t i = 0; c->origins != NULL && i < l->n; i++) {
		struct ism_cm_sm *m = &c->origins[c->n_origins++];
		size_t o2 = ism_v_push(v, "[%zu]", i);
		size_t errors = v->d->n_errors;

		ism_model_sm(v, l->items[i], false, m);
		if (v->d->n_errors == errors && m->s != NULL && m->s[0] == '\0')
			ism_v_err(v, l->items[i], "an empty origin match allows no origin");
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

/* The deprecated allowOrigin: exact origins, as Istio reads them when
 * allowOrigins is not set. */
static void parse_allow_origin(struct ism_vctx *v, const struct ism_node *n, struct ism_cm_cors *c)
{
	const struct ism_node *l;
	size_t cnt;
	const char **items = ism_v_strlist(v, n, "allowOrigin", false, &cnt, &l);

	if (items == NULL)
		return;
	if (c->n_origins > 0) {
		size_t old = ism_v_push(v, ".allowOrigin");

		ism_v_warn(v, l, "ignored: allowOrigins is set (as Istio reads them)");
		ism_v_pop(v, old);
		return;
	}
	c->origins = ism_v_alloc(v, cnt, sizeof(*c->origins));
	for (size_t i = 0; c->origins != NULL && i < cnt; i++)
		c->origins[c->n_origins++] =
		    (struct ism_cm_sm){.kind = ISM_SM_EXACT, .s = items[i]};
}

static void parse_max_age(struct ism_vctx *v, const struct ism_node *n, struct ism_cm_cors *c)
{
	uint32_t ms;
	char buf[16];

	if (ism_v_istio_dur(v, n, "maxAge", &ms) <= 0)
		return;
	if (ms % 1000 != 0) {
		size_t old = ism_v_push(v, ".maxAge");

		ism_v_err(v, ism_node_get(n, "maxAge", NULL),
			  "must be whole seconds (Access-Control-Max-Age counts seconds)");
		ism_v_pop(v, old);
		return;
	}
	snprintf(buf, sizeof(buf), "%u", ms / 1000);
	c->max_age = ism_v_strdup(v, buf);
}

struct ism_cm_cors *ism_model_cors(struct ism_vctx *v, const struct ism_node *route)
{
	static const char *const keys[] = {
	    "allowOrigins",	"allowOrigin",	       "allowMethods",
	    "allowHeaders",	"exposeHeaders",       "maxAge",
	    "allowCredentials", "unmatchedPreflights", NULL};
	static const char *const unmatched[] = {"UNSPECIFIED", "FORWARD", "IGNORE", NULL};
	const struct ism_node *n = ism_v_node(v, route, "corsPolicy", false, ISM_NODE_MAP), *l;
	struct ism_cm_cors *c;
	const char *um = NULL;
	size_t old;

	if (n == NULL)
		return NULL;
	c = ism_v_alloc(v, 1, sizeof(*c));
	if (c == NULL)
		return NULL;
	old = ism_v_push(v, ".corsPolicy");
	ism_v_keys(v, n, keys, NULL);
	l = ism_v_node(v, n, "allowOrigins", false, ISM_NODE_SEQ);
	if (l != NULL)
		parse_origins(v, l, c);
	parse_allow_origin(v, n, c);
	c->methods = joined(v, n, "allowMethods", true);
	c->headers = joined(v, n, "allowHeaders", false);
	c->expose = joined(v, n, "exposeHeaders", false);
	parse_max_age(v, n, c);
	ism_v_bool(v, n, "allowCredentials", &c->credentials);
	if (ism_v_enum(v, n, "unmatchedPreflights", unmatched, NULL, &um) > 0)
		c->ignore_unmatched = strcmp(um, "IGNORE") == 0;
	if (c->n_origins == 0)
		ism_v_warn(v, n,
			   "no allowOrigins: no origin is allowed, and no request gets "
			   "Access-Control-* fields");
	ism_v_pop(v, old);
	return c;
}
