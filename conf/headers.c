/* SPDX-License-Identifier: Apache-2.0 */
/* The headers of a route or of one of its destinations (Istio's Headers):
 * what is set, added and removed of the request's and the response's fields,
 * and the authority a request's set or add of Host writes. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/hfmt.h"
#include "conf/model.h"
#include "lib/ascii.h"

bool ism_model_authority_ok(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!isalnum((unsigned char)*s) && strchr("-._~%!$&'()*+,;=:[]", *s) == NULL)
			return false;
	return true;
}

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
	if (!ism_v_string_scalar(v, n))
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
	if (!ism_model_authority_ok(value))
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
		(*out)[i].name = ism_model_lower_dup(v, (*out)[i].name);
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
			o->remove[o->n_remove++] = ism_model_lower_dup(v, it->str);
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

void ism_model_headers(struct ism_vctx *v, const struct ism_node *map, struct ism_cm_headers *h,
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
