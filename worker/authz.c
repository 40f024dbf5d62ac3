/* SPDX-License-Identifier: Apache-2.0 */
/* AuthorizationPolicy at a request or a connection (worker/authz.h): the
 * compiled rules (conf/authz.c, conf/compile.c) against the attributes of the
 * stream, its session and its request. The addresses are read once per
 * check, when a condition first asks. */
#include <string.h>

#include "lib/addr.h"
#include "worker/authz.h"
#include "worker/router.h"
#include "worker/session.h"
#include "worker/stream.h"
#include "worker/tls.h"
#include "worker/worker.h"

enum { A_SRC, A_REMOTE, A_DEST, A_COUNT };

struct az_ctx {
	struct ism_wctx *w;
	struct ism_stream *st;
	const struct ism_http_req *req;
	uint8_t known[A_COUNT]; /* 0 not read yet, 1 read, 2 unknown */
	struct sockaddr_storage addr[A_COUNT];
	uint16_t dest_port;
	const struct ism_az_cond *cond; /* the identity condition being matched */
};

/* Address k of the check, read at its first use; NULL when unknown. */
static const struct sockaddr_storage *address(struct az_ctx *c, int k)
{
	struct ism_sess *s = c->st->sess;
	struct ism_sess_pp *pp;
	const char *text;
	bool ok = false;

	if (c->known[k] == 0) {
		switch (k) {
		case A_SRC:
			ok = ism_addr_parse(s->peer, &c->addr[k], NULL);
			break;
		case A_REMOTE:
			text = c->req != NULL ? ism_stream_client(c->st) : s->peer;
			if (text == s->peer) {
				/* The peer itself: read once for both. */
				const struct sockaddr_storage *a = address(c, A_SRC);

				if ((ok = a != NULL))
					c->addr[k] = *a;
			} else {
				ok = ism_addr_parse(text, &c->addr[k], NULL);
			}
			break;
		default:
			pp = ism_sess_pp(s);
			if (pp != NULL &&
			    (pp->dst.sa.sa_family == AF_INET || pp->dst.sa.sa_family == AF_INET6)) {
				memcpy(&c->addr[k], &pp->dst,
				       pp->dst.sa.sa_family == AF_INET ? sizeof(pp->dst.in)
								       : sizeof(pp->dst.in6));
				c->dest_port =
				    ntohs(pp->dst.sa.sa_family == AF_INET ? pp->dst.in.sin_port
									  : pp->dst.in6.sin6_port);
				ok = true;
			}
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
		if (ism_router_strmatch(&cond->v[i].m, v, len, c->w->rs))
			return true;
	return false;
}

static bool id_holds(void *ctx, const char *id, size_t len)
{
	struct az_ctx *c = ctx;

	return str_holds(c, c->cond, id, len);
}

/* One of the condition's values holds (before its negation). */
static bool values_hold(struct az_ctx *c, const struct ism_az_cond *cond)
{
	const struct ism_http_req *req = c->req;
	struct ism_sess *s = c->st->sess;
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
		return ism_sess_tls(s) && ism_tls_peer_ids(s->s.x.ssl, id_holds, c);
	case ISM_AZ_SNI:
		v = s->sni != NULL ? s->sni : "";
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
		return req != NULL && ism_router_header(req, &cond->name, c->w->rs, &v, &len) &&
		       str_holds(c, cond, v, len);
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

const char *ism_authz_check(struct ism_wctx *w, struct ism_stream *st,
			    const struct ism_http_req *req, const struct ism_az_rbac *deny,
			    const struct ism_az_rbac *allow)
{
	struct az_ctx c;
	const struct ism_az_policy *p;

	/* Not the addresses (384 bytes): each is written when first asked. */
	c.w = w;
	c.st = st;
	c.req = req;
	memset(c.known, 0, sizeof(c.known));
	p = matched(&c, deny);

	if (p != NULL)
		return p->details.p;
	if (allow->on && matched(&c, allow) == NULL)
		return ISM_AZ_NONE;
	return NULL;
}
