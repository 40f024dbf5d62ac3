/* SPDX-License-Identifier: Apache-2.0 */
/* CORS (worker/cors.h), after Envoy's CORS filter with the policy Istio gives
 * it: a request with an Origin is a CORS request; an OPTIONS one with
 * Access-Control-Request-Method is a preflight. An allowed origin's preflight
 * is answered here; its other requests go on and their responses get
 * Access-Control-Allow-Origin (the origin as sent), -Allow-Credentials and
 * -Expose-Headers. A refused origin gets no Access-Control-* field at all. */
#include "worker/cors.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "worker/router.h"

/* The value of the first field called name, or NULL when absent or empty. */
static const struct ism_http_header *field(const struct ism_http_req *req, const char *name)
{
	for (size_t i = 0; i < req->n_headers; i++)
		if (ism_http_header_is(&req->headers[i], name))
			return req->headers[i].value_len ? &req->headers[i] : NULL;
	return NULL;
}

/* Envoy: an origin is allowed when one of the matches holds for it, or for "*". */
static bool origin_allowed(const struct ism_cors *c, const struct ism_http_header *origin,
			   struct ism_router_scratch *rs)
{
	for (uint32_t i = 0; i < c->n_origins; i++)
		if (ism_router_strmatch(&c->origins[i], "*", 1, rs) ||
		    ism_router_strmatch(&c->origins[i], origin->value, origin->value_len, rs))
			return true;
	return false;
}

struct field_spec {
	const char *name;
	const char *value;
	size_t len;
};

/* The block for the n fields of f. */
static struct ism_cors_out *build(const struct field_spec *f, size_t n, bool preflight)
{
	struct ism_cors_out *o;
	size_t total = 0;
	char *p;

	for (size_t i = 0; i < n; i++)
		total += strlen(f[i].name) + 1 + f[i].len + 1;
	o = malloc(sizeof(*o) + total);
	if (o == NULL)
		return NULL;
	o->preflight = preflight;
	o->edits = (struct ism_hdr_edits){.n = (uint32_t)n, .e = o->e};
	p = o->text;
	for (size_t i = 0; i < n; i++) {
		size_t nl = strlen(f[i].name);

		o->e[i] = (struct ism_hdr_edit){
		    .name = {p, (uint32_t)nl}, .drop = 1, .n_values = 1, .values = &o->v[i]};
		memcpy(p, f[i].name, nl + 1);
		p += nl + 1;
		o->v[i] = (struct ism_str){p, (uint32_t)f[i].len};
		memcpy(p, f[i].value, f[i].len);
		p[f[i].len] = '\0';
		p += f[i].len + 1;
	}
	return o;
}

/* Appends field name with value v (len bytes) to f when there is a value. */
static void want(struct field_spec *f, size_t *n, const char *name, const char *v, size_t len)
{
	if (len > 0)
		f[(*n)++] = (struct field_spec){name, v, len};
}

/* A configured value, or (when it is "*") the request's field asked. */
static void want_or_asked(struct field_spec *f, size_t *n, const char *name,
			  const struct ism_str *conf, const struct ism_http_header *asked)
{
	if (conf->len == 1 && conf->p[0] == '*')
		want(f, n, name, asked ? asked->value : "", asked ? asked->value_len : 0);
	else
		want(f, n, name, conf->p, conf->len);
}

int ism_cors_check(const struct ism_cors *c, const struct ism_http_req *req,
		   struct ism_router_scratch *rs, struct ism_cors_out **out)
{
	const struct ism_http_header *origin = field(req, "origin"), *method;
	struct field_spec f[ISM_CORS_MAX_FIELDS];
	bool allowed, preflight;
	size_t n = 0;

	*out = NULL;
	if (origin == NULL)
		return ISM_CORS_PASS;
	allowed = origin_allowed(c, origin, rs);
	method = field(req, "access-control-request-method");
	preflight = req->method_len == 7 && memcmp(req->method, "OPTIONS", 7) == 0 && method;
	if (!allowed && (!preflight || c->forward_unmatched))
		return ISM_CORS_PASS;
	if (allowed) {
		want(f, &n, "access-control-allow-origin", origin->value, origin->value_len);
		if (c->credentials)
			want(f, &n, "access-control-allow-credentials", "true", 4);
	}
	if (allowed && preflight) {
		want_or_asked(f, &n, "access-control-allow-methods", &c->methods, method);
		want_or_asked(f, &n, "access-control-allow-headers", &c->headers,
			      field(req, "access-control-request-headers"));
		want(f, &n, "access-control-max-age", c->max_age.p, c->max_age.len);
	} else if (allowed) {
		want(f, &n, "access-control-expose-headers", c->expose.p, c->expose.len);
	}
	*out = build(f, n, preflight);
	if (*out == NULL)
		return -ENOMEM;
	return preflight ? ISM_CORS_PREFLIGHT : ISM_CORS_ACTUAL;
}
