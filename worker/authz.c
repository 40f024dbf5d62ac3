/* SPDX-License-Identifier: Apache-2.0 */
/* AuthorizationPolicy at a request or a connection (worker/authz.h): the
 * compiled rules (conf/authz.c, conf/compile.c) against what the caller gives
 * of the request and its connection. The addresses are read once per check,
 * when a condition first asks. */
#include <string.h>

#include "lib/addr.h"
#include "worker/authn.h"
#include "worker/authz.h"
#include "worker/router.h"
#include "worker/tls.h"

enum { A_SRC, A_REMOTE, A_DEST, A_COUNT };

struct az_ctx {
	const struct ism_az_in *in;
	uint8_t known[A_COUNT]; /* 0 not read yet, 1 read, 2 unknown */
	struct sockaddr_storage addr[A_COUNT];
	uint16_t dest_port;
	const struct ism_az_cond *cond; /* the identity condition being matched */
};

/* Address k of the check, read at its first use; NULL when unknown. */
static const struct sockaddr_storage *address(struct az_ctx *c, int k)
{
	const struct ism_az_in *in = c->in;
	const struct sockaddr_storage *a;
	bool ok = false;

	if (c->known[k] == 0) {
		switch (k) {
		case A_SRC:
			ok = ism_addr_parse(in->peer, &c->addr[k], NULL);
			break;
		case A_REMOTE:
			/* The peer itself: read once for both. */
			if (in->client != in->peer)
				ok = ism_addr_parse(in->client, &c->addr[k], NULL);
			else if ((ok = (a = address(c, A_SRC)) != NULL))
				c->addr[k] = *a;
			break;
		default:
			ok = in->dest != NULL && in->dest(in->ctx, &c->addr[k]) &&
			     (c->addr[k].ss_family == AF_INET || c->addr[k].ss_family == AF_INET6);
			if (ok)
				c->dest_port = ntohs(
				    c->addr[k].ss_family == AF_INET
					? ((const struct sockaddr_in *)&c->addr[k])->sin_port
					: ((const struct sockaddr_in6 *)&c->addr[k])->sin6_port);
			break;
		}
		c->known[k] = ok ? 1 : 2;
	}
	return c->known[k] == 1 ? &c->addr[k] : NULL;
}

/* One of the condition's string values holds for v[0..len). */
static bool str_holds(struct az_ctx *c, const struct ism_az_cond *cond, const char *v, size_t len)
{
	for (uint32_t i = 0; i < cond->n; i++)
		if (ism_router_strmatch(&cond->v[i].m, v, len, c->in->rs))
			return true;
	return false;
}

static bool id_holds(void *ctx, const char *id, size_t len)
{
	struct az_ctx *c = ctx;

	return str_holds(c, c->cond, id, len);
}

/* One of the values of a request principal condition holds for the token's
 * iss and sub (both strings). */
static bool principal_holds(struct az_ctx *c, const struct ism_az_cond *cond)
{
	const struct ism_json *iss = ism_json_get(c->in->jwt, "iss");
	const struct ism_json *sub = ism_json_get(c->in->jwt, "sub");

	if (iss == NULL || sub == NULL || iss->type != ISM_JSON_STRING ||
	    sub->type != ISM_JSON_STRING)
		return false;
	for (uint32_t i = 0; i < cond->n; i++)
		if (ism_router_strmatch(&cond->v[i].m, iss->str, iss->n, c->in->rs) &&
		    ism_router_strmatch(&cond->v[i].sub, sub->str, sub->n, c->in->rs))
			return true;
	return false;
}

static bool claim_value_holds(void *ctx, const char *v, size_t len)
{
	struct az_ctx *c = ctx;

	return str_holds(c, c->cond, v, len);
}

/* One of the condition's values holds (before its negation). */
static bool values_hold(struct az_ctx *c, const struct ism_az_cond *cond)
{
	const struct ism_http_req *req = c->in->req;
	const struct sockaddr_storage *a;
	const char *v;
	size_t len;

	switch ((enum ism_az_attr)cond->attr) {
	case ISM_AZ_SRC_IP:
	case ISM_AZ_REMOTE_IP:
	case ISM_AZ_DEST_IP:
		a = address(c, cond->attr == ISM_AZ_SRC_IP	? A_SRC
			       : cond->attr == ISM_AZ_REMOTE_IP ? A_REMOTE
								: A_DEST);
		for (uint32_t i = 0; a != NULL && i < cond->n; i++)
			if (ism_router_in_subnet(&cond->v[i].net, a))
				return true;
		return false;
	case ISM_AZ_DEST_PORT:
		if (address(c, A_DEST) == NULL)
			return false;
		for (uint32_t i = 0; i < cond->n; i++)
			if (cond->v[i].port == c->dest_port)
				return true;
		return false;
	case ISM_AZ_PEER_ID:
		c->cond = cond;
		return c->in->ssl != NULL && ism_tls_peer_ids(c->in->ssl, id_holds, c);
	case ISM_AZ_SNI:
		v = c->in->sni != NULL ? c->in->sni : "";
		return str_holds(c, cond, v, strlen(v));
	case ISM_AZ_HOST:
		return req != NULL && req->host != NULL &&
		       str_holds(c, cond, req->host, req->host_len);
	case ISM_AZ_METHOD:
		return req != NULL && str_holds(c, cond, req->method, req->method_len);
	case ISM_AZ_PATH:
		return req != NULL && req->path != NULL &&
		       str_holds(c, cond, req->path, req->path_len);
	case ISM_AZ_HEADER:
		return req != NULL && ism_router_header(req, &cond->name, c->in->rs, &v, &len) &&
		       str_holds(c, cond, v, len);
	case ISM_AZ_REQ_PRINCIPAL:
		return c->in->jwt != NULL && principal_holds(c, cond);
	case ISM_AZ_CLAIM:
		c->cond = cond;
		return c->in->jwt != NULL &&
		       ism_authn_claim_holds(c->in->jwt, c->in->jwt_by, cond->name.p,
					     cond->name.len, claim_value_holds, c);
	}
	return false;
}

/* Every condition of a holds. */
static bool and_holds(struct az_ctx *c, const struct ism_az_and *a)
{
	for (uint32_t i = 0; i < a->n; i++)
		if (values_hold(c, &a->c[i]) == (bool)a->c[i].negate)
			return false;
	return true;
}

/* One of the n lists a[] holds. */
static bool any_holds(struct az_ctx *c, const struct ism_az_and *a, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		if (and_holds(c, &a[i]))
			return true;
	return false;
}

/* The first policy of f that matches; NULL when none does. */
static const struct ism_az_policy *matched(struct az_ctx *c, const struct ism_az_rbac *f)
{
	for (uint32_t i = 0; i < f->n; i++)
		if (any_holds(c, f->p[i].perm, f->p[i].n_perm) &&
		    any_holds(c, f->p[i].prin, f->p[i].n_prin))
			return &f->p[i];
	return NULL;
}

bool ism_authz_custom(const struct ism_authz *az, const struct ism_az_in *in)
{
	struct az_ctx c;

	if (az->custom.n == 0 || in->req == NULL)
		return false;
	c.in = in;
	memset(c.known, 0, sizeof(c.known));
	return matched(&c, &az->custom) != NULL;
}

const char *ism_authz_check(const struct ism_authz *az, const struct ism_az_in *in,
			    const struct ism_az_policy **rule)
{
	const struct ism_az_rbac *allow = ism_authz_allow(az, in->req != NULL);
	struct az_ctx c;

	/* Not the addresses (384 bytes): each is written when first asked. */
	c.in = in;
	memset(c.known, 0, sizeof(c.known));
	*rule = matched(&c, ism_authz_deny(az, in->req != NULL));
	if (*rule != NULL)
		return (*rule)->details.p;
	if (!allow->on)
		return NULL;
	*rule = matched(&c, allow);
	return *rule != NULL ? NULL : ISM_AZ_NONE;
}
