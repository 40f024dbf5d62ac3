/* SPDX-License-Identifier: Apache-2.0 */
/* The values of a route's header edits whose text holds Envoy's command
 * operators (%DOWNSTREAM_REMOTE_ADDRESS%, %REQ(x)%, %UPSTREAM_HOST% ...),
 * made for one stream (worker/hvalue.h); the access log's values of the same
 * operators. */
#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/addr.h"
#include "lib/log.h"
#include "worker/h2up.h"
#include "worker/hvalue.h"
#include "worker/session.h"
#include "worker/sock.h"
#include "worker/stream-int.h"
#include "worker/stream.h"
#include "worker/tls.h"
#include "worker/upstream.h"

static size_t hval_str(char *out, size_t cap, const char *s, size_t len)
{
	if (s == NULL)
		return 0;
	len = len < cap ? len : cap;
	memcpy(out, s, len);
	return len;
}

/* What snprintf (cap bytes) wrote, less its NUL. */
static size_t hval_printed(size_t cap, int n)
{
	return n < 0 || cap == 0 ? 0 : (size_t)n < cap ? (size_t)n : cap - 1;
}

/* An address and port as Envoy prints them: [v6]:port, v4:port; the
 * address alone (no_port), or the port alone (port_only). */
static size_t hval_addr(char *out, size_t cap, const char *ip, uint16_t port, bool no_port,
			bool port_only)
{
	char buf[INET6_ADDRSTRLEN + 8];
	int n;

	if (ip == NULL || ip[0] == '\0')
		return 0;
	if (no_port)
		return hval_str(out, cap, ip, strlen(ip));
	n = port_only ? snprintf(buf, sizeof(buf), "%u", port)
		      : ism_addr_port_text(buf, sizeof(buf), ip, port);
	return hval_str(out, cap, buf, hval_printed(sizeof(buf), n));
}

/* Socket address sa (NULL: none), printed as hval_addr prints one. */
static size_t hval_sockaddr(const struct sockaddr *sa, char *out, size_t cap, bool no_port,
			    bool port_only)
{
	char ip[INET6_ADDRSTRLEN];
	uint16_t port;

	if (sa == NULL || !ism_addr_text(sa, ip, &port))
		return 0;
	return hval_addr(out, cap, ip, port, no_port, port_only);
}

/* DOWNSTREAM_LOCAL_ADDRESS: the address the client connected to, a PROXY
 * header's destination when the listener takes one (the session's, as the
 * PROXY headers to upstreams name it); DOWNSTREAM_DIRECT_REMOTE_ADDRESS: the
 * socket's peer, whatever a PROXY header said. */
static size_t hval_sock(struct ism_sess *s, bool local, char *out, size_t cap, bool no_port,
			bool port_only)
{
	const struct ism_sess_pp *pp;
	const char *ip;
	uint16_t port;

	if (local)
		return (pp = ism_sess_pp(s)) != NULL
			   ? hval_sockaddr(&pp->dst.sa, out, cap, no_port, port_only)
			   : 0;
	ip = ism_sess_direct_peer(s, &port);
	return hval_addr(out, cap, ip, port, no_port, port_only);
}

/* The first of the n fields h named name (any case). */
static size_t hval_field(const struct ism_http_header *h, size_t n, struct ism_str name, char *out,
			 size_t cap)
{
	const struct ism_http_header *f = ism_http_field(h, n, name.p, name.len);

	return f != NULL ? hval_str(out, cap, f->value, f->value_len) : 0;
}

/* %REQ(NAME)%: the request's first field of that name, the pseudo-headers
 * :authority, :path (with its query), :method and :scheme as HTTP/2 has them. */
static size_t hval_req(const struct ism_hval_ctx *c, struct ism_str name, char *out, size_t cap)
{
	const struct ism_http_req *req = c->req;
	size_t n = 0;

	if (req == NULL)
		return 0;
	if (name.len > 0 && name.p[0] == ':') {
		if (strcmp(name.p, ":authority") == 0)
			return hval_str(out, cap, req->host, req->host ? req->host_len : 0);
		if (strcmp(name.p, ":method") == 0)
			return hval_str(out, cap, req->method, req->method_len);
		if (strcmp(name.p, ":scheme") == 0)
			return hval_str(out, cap, ism_sess_tls(c->st->sess) ? "https" : "http",
					ism_sess_tls(c->st->sess) ? 5 : 4);
		if (strcmp(name.p, ":path") != 0)
			return 0;
		n = hval_str(out, cap, req->path, req->path_len);
		if (req->query != NULL && n < cap) {
			out[n++] = '?';
			n += hval_str(out + n, cap - n, req->query, req->query_len);
		}
		return n;
	}
	return hval_field(req->headers, req->n_headers, name, out, cap);
}

/* %RESP(NAME)%: the response's first field of that name. */
static size_t hval_resp(const struct ism_http_resp *resp, struct ism_str name, char *out,
			size_t cap)
{
	return hval_field(resp->headers, resp->n_headers, name, out, cap);
}

/* %UPSTREAM_HOST% and the upstream's address: the endpoint of the attempt
 * that answered, from its key ("service|address:port"). */
static size_t hval_upstream(const struct ism_hval_ctx *c, char *out, size_t cap, bool no_port,
			    bool port_only)
{
	const struct ism_stream *st = c->st;
	const char *key, *colon;
	char ip[INET6_ADDRSTRLEN + 2];
	size_t n;

	if (st->prev_ep == UINT32_MAX)
		return 0;
	key = strrchr(c->w->shm->pub->ep_keys[st->prev_ep], '|');
	key = key != NULL ? key + 1 : c->w->shm->pub->ep_keys[st->prev_ep];
	colon = strrchr(key, ':');
	if (colon == NULL)
		return 0;
	if (key[0] == '[' && colon > key + 1 && colon[-1] == ']')
		n = (size_t)snprintf(ip, sizeof(ip), "%.*s", (int)(colon - key - 2), key + 1);
	else
		n = (size_t)snprintf(ip, sizeof(ip), "%.*s", (int)(colon - key), key);
	if (n >= sizeof(ip))
		return 0;
	return hval_addr(out, cap, ip, (uint16_t)atoi(colon + 1), no_port, port_only);
}

/* A field of the session's TLS connection (kind: its version, cipher, a
 * certificate's field): empty on a plain connection. */
static size_t hval_tls(struct ism_sess *s, uint8_t kind, char *out, size_t cap)
{
	struct ism_buf b = {0};
	size_t n = 0;

	if (ism_sess_tls(s) && ism_tls_peer_field(s->s.x.ssl, kind, &b) >= 0)
		n = hval_str(out, cap, b.p, b.len);
	ism_buf_free(&b);
	return n;
}

size_t ism_hval(void *arg, const struct ism_hval_part *p, char *out, size_t cap)
{
	const struct ism_hval_ctx *c = arg;
	struct ism_stream *st = c->st;
	struct ism_sess *s = st->sess;
	const struct ism_cluster *cl;
	size_t n;

	switch ((enum ism_hval_kind)p->kind) {
	case ISM_HV_CLIENT:
	case ISM_HV_CLIENT_IP:
	case ISM_HV_CLIENT_PORT:
		return hval_addr(out, cap, ism_stream_client(st),
				 st->xff_client[0] ? 0 : s->peer_port, p->kind == ISM_HV_CLIENT_IP,
				 p->kind == ISM_HV_CLIENT_PORT);
	case ISM_HV_PEER:
	case ISM_HV_PEER_IP:
	case ISM_HV_PEER_PORT:
		return hval_sock(s, false, out, cap, p->kind == ISM_HV_PEER_IP,
				 p->kind == ISM_HV_PEER_PORT);
	case ISM_HV_LOCAL:
	case ISM_HV_LOCAL_IP:
	case ISM_HV_LOCAL_PORT:
		return hval_sock(s, true, out, cap, p->kind == ISM_HV_LOCAL_IP,
				 p->kind == ISM_HV_LOCAL_PORT);
	case ISM_HV_SNI:
		return hval_str(out, cap, s->sni, s->sni ? strlen(s->sni) : 0);
	case ISM_HV_PROTOCOL: {
		const char *proto = s->h2 ? "HTTP/2" : st->http10 ? "HTTP/1.0" : "HTTP/1.1";

		return hval_str(out, cap, proto, strlen(proto));
	}
	case ISM_HV_START_TIME: {
		char t[40];

		n = ism_time_iso(ism_wall_ms() - (c->w->now - st->t0_ms), t, sizeof(t));
		return hval_str(out, cap, t, n);
	}
	case ISM_HV_REQ:
		n = hval_req(c, p->a, out, cap);
		return n > 0 || p->b.len == 0 ? n : hval_req(c, p->b, out, cap);
	case ISM_HV_ROUTE_NAME:
		return c->r != NULL ? hval_str(out, cap, c->r->name.p, c->r->name.len) : 0;
	case ISM_HV_UPSTREAM_CLUSTER:
		cl = ism_stream_cluster(c->w, st);
		return cl != NULL && !cl->missing ? hval_str(out, cap, cl->name.p, cl->name.len)
						  : 0;
	case ISM_HV_TLS_VERSION:
	case ISM_HV_PEER_URI_SAN:
	case ISM_HV_PEER_DNS_SAN:
	case ISM_HV_PEER_SUBJECT:
	case ISM_HV_PEER_FINGERPRINT:
	case ISM_HV_PEER_FINGERPRINT_1:
	case ISM_HV_PEER_ISSUER:
	case ISM_HV_PEER_SERIAL:
	case ISM_HV_PEER_CERT:
	case ISM_HV_PEER_V_START:
	case ISM_HV_PEER_V_END:
	case ISM_HV_TLS_CIPHER:
	case ISM_HV_TLS_SESSION_ID:
	case ISM_HV_LOCAL_URI_SAN:
	case ISM_HV_LOCAL_DNS_SAN:
	case ISM_HV_LOCAL_SUBJECT:
		return hval_tls(s, p->kind, out, cap);
	case ISM_HV_UPSTREAM_HOST:
	case ISM_HV_UPSTREAM_IP:
	case ISM_HV_UPSTREAM_PORT:
		if (c->later)
			return ISM_HVAL_LATE;
		return c->resp != NULL ? hval_upstream(c, out, cap, p->kind == ISM_HV_UPSTREAM_IP,
						       p->kind == ISM_HV_UPSTREAM_PORT)
				       : 0;
	case ISM_HV_UPSTREAM_LOCAL:
	case ISM_HV_UPSTREAM_LOCAL_IP:
	case ISM_HV_UPSTREAM_LOCAL_PORT:
		if (c->later)
			return ISM_HVAL_LATE;
		return c->resp != NULL && st->up != NULL
			   ? hval_sockaddr(ism_up_local(st->up), out, cap,
					   p->kind == ISM_HV_UPSTREAM_LOCAL_IP,
					   p->kind == ISM_HV_UPSTREAM_LOCAL_PORT)
			   : 0;
	case ISM_HV_RESPONSE_CODE: {
		int status = c->resp != NULL ? c->resp->status : c->status;

		if (c->later)
			return ISM_HVAL_LATE;
		return status > 0 ? hval_printed(cap, snprintf(out, cap, "%d", status)) : 0;
	}
	case ISM_HV_RESP:
		if (c->later)
			return ISM_HVAL_LATE;
		if (c->resp == NULL)
			return 0;
		n = hval_resp(c->resp, p->a, out, cap);
		return n > 0 || p->b.len == 0 ? n : hval_resp(c->resp, p->b, out, cap);
	case ISM_HV_LITERAL:
		break;
	}
	return 0;
}

size_t ism_hval_log(struct ism_wctx *w, struct ism_stream *st, uint8_t kind, char *out, size_t cap)
{
	struct ism_hval_ctx c = {.w = w, .st = st};
	struct ism_hval_part p = {.kind = kind};

	if (kind == ISM_HV_UPSTREAM_HOST || kind == ISM_HV_UPSTREAM_IP ||
	    kind == ISM_HV_UPSTREAM_PORT)
		return hval_upstream(&c, out, cap, kind == ISM_HV_UPSTREAM_IP,
				     kind == ISM_HV_UPSTREAM_PORT);
	return ism_hval(&c, &p, out, cap);
}

const struct ism_hdr_edits *ism_hval_edits(struct ism_wctx *w, struct ism_stream *st,
					   const struct ism_http_req *req,
					   const struct ism_route *r, const struct ism_hdr_edits *e,
					   int status, struct ism_hdr_edits **made)
{
	struct ism_hval_ctx c = {.w = w, .st = st, .req = req, .r = r, .status = status};

	*made = NULL;
	if (!e->dynamic)
		return e;
	*made = ism_act_edits_dup(e, ism_hval, &c);
	return *made;
}
