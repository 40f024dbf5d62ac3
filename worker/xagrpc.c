/* SPDX-License-Identifier: Apache-2.0 */
/* A gRPC external authorizer's messages (worker/xagrpc.h). Field numbers
 * are those of envoy/service/auth/v3 and the messages it uses:
 *
 *   CheckRequest { AttributeContext attributes = 1 }
 *   AttributeContext { Peer source = 1, destination = 2; Request request = 4;
 *                      TLSSession tls_session = 12 { string sni = 1 } }
 *   Peer { Address address = 1 { SocketAddress socket_address = 1
 *          { string address = 2; uint32 port_value = 3 } }; string principal = 4 }
 *   Request { Timestamp time = 1 { int64 seconds = 1; int32 nanos = 2 };
 *             HttpRequest http = 2 }
 *   HttpRequest { string id = 1, method = 2; map<string, string> headers = 3;
 *                 string path = 4, host = 5, scheme = 6; int64 size = 9;
 *                 string protocol = 10, body = 11; bytes raw_body = 12 }
 *
 *   CheckResponse { google.rpc.Status status = 1 { int32 code = 1 };
 *                   DeniedHttpResponse denied_response = 2
 *                   { HttpStatus status = 1 { code = 1 };
 *                     repeated HeaderValueOption headers = 2; string body = 3 };
 *                   OkHttpResponse ok_response = 3
 *                   { repeated HeaderValueOption headers = 2;
 *                     repeated string headers_to_remove = 5;
 *                     repeated HeaderValueOption response_headers_to_add = 6;
 *                     repeated QueryParameter query_parameters_to_set = 7
 *                     { string key = 1, value = 2 };
 *                     repeated string query_parameters_to_remove = 8 } }
 *   HeaderValueOption { HeaderValue header = 1 { string key = 1, value = 2 };
 *                       BoolValue append = 2 { bool value = 1 } } */
#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/ascii.h"
#include "worker/xagrpc.h"

/* ---------- the request ---------- */

static void put_cstr(struct ism_pbw *w, uint32_t field, const char *s)
{
	if (s != NULL)
		ism_pbw_str(w, field, s, strlen(s));
}

static void put_peer(struct ism_pbw *w, uint32_t field, const char *ip, uint16_t port,
		     const char *principal)
{
	size_t peer = ism_pbw_begin(w, field);
	size_t addr = ism_pbw_begin(w, 1);
	size_t sock = ism_pbw_begin(w, 1);

	put_cstr(w, 2, ip);
	if (port != 0)
		ism_pbw_varint(w, 3, port);
	ism_pbw_end(w, sock);
	ism_pbw_end(w, addr);
	put_cstr(w, 4, principal);
	ism_pbw_end(w, peer);
}

/* A field name, lowercased, as the key (1) of a map entry begun. */
static void put_key(struct ism_pbw *w, const char *name, size_t nl)
{
	size_t k = ism_pbw_begin(w, 1);

	ism_pbw_raw(w, name, nl);
	for (size_t i = 0; !w->err && i < nl; i++)
		w->p[w->len - nl + i] = (uint8_t)tolower(w->p[w->len - nl + i]);
	ism_pbw_end(w, k);
}

/* One entry of the headers map: name and value. */
static void put_entry(struct ism_pbw *w, const char *name, size_t nl, const char *value, size_t vl)
{
	size_t e = ism_pbw_begin(w, 3);

	put_key(w, name, nl);
	ism_pbw_bytes(w, 2, value, vl);
	ism_pbw_end(w, e);
}

static bool same_name(const struct ism_http_header *a, const struct ism_http_header *b)
{
	return a->name_len == b->name_len && ism_eq_nocase(a->name, b->name, a->name_len);
}

bool ism_xa_field_first(const struct ism_http_req *req, size_t i)
{
	const struct ism_http_header *h = &req->headers[i];

	if (h->name_len == sizeof(ISM_XA_PARTIAL_BODY) - 1 &&
	    ism_eq_nocase(h->name, ISM_XA_PARTIAL_BODY, h->name_len))
		return false;
	for (size_t j = 0; j < i; j++)
		if (same_name(&req->headers[j], h))
			return false;
	return true;
}

size_t ism_xa_field_next(const struct ism_http_req *req, size_t i, size_t j)
{
	while (++j < req->n_headers && !same_name(&req->headers[j], &req->headers[i]))
		;
	return j;
}

/* The request's fields, each name once with its values joined by ',', as
 * Envoy's check request has them (Host is :authority there); partial: the
 * body's x-envoy-auth-partial-body, NULL: none. */
static void put_fields(struct ism_pbw *w, const struct ism_http_req *req, const char *partial)
{
	for (size_t i = 0; i < req->n_headers; i++) {
		const struct ism_http_header *h = &req->headers[i];
		size_t e, v;

		if (ism_http_header_is(h, "host") || !ism_xa_field_first(req, i))
			continue;
		e = ism_pbw_begin(w, 3);
		put_key(w, h->name, h->name_len);
		v = ism_pbw_begin(w, 2);
		ism_pbw_raw(w, h->value, h->value_len);
		for (size_t j = ism_xa_field_next(req, i, i); j < req->n_headers;
		     j = ism_xa_field_next(req, i, j)) {
			ism_pbw_raw(w, ",", 1);
			ism_pbw_raw(w, req->headers[j].value, req->headers[j].value_len);
		}
		ism_pbw_end(w, v);
		ism_pbw_end(w, e);
	}
	if (partial != NULL)
		put_entry(w, ISM_XA_PARTIAL_BODY, sizeof(ISM_XA_PARTIAL_BODY) - 1, partial,
			  strlen(partial));
}

/* The request's path with its query, as string field. */
static void put_path(struct ism_pbw *w, uint32_t field, const struct ism_http_req *req)
{
	size_t v = ism_pbw_begin(w, field);

	ism_pbw_raw(w, req->path, req->path_len);
	if (req->query != NULL) {
		ism_pbw_raw(w, "?", 1);
		ism_pbw_raw(w, req->query, req->query_len);
	}
	ism_pbw_end(w, v);
}

void ism_xa_grpc_request(const struct ism_xa_grpc_req *in, struct ism_pbw *out)
{
	const struct ism_http_req *req = in->req;
	size_t attrs, request, t, http, path, tls;
	char id[21], *d = id + sizeof(id);
	uint64_t v = in->id;
	uint32_t len;

	/* The gRPC prefix: not compressed, the length once known. */
	ism_pbw_raw(out, "\0\0\0\0\0", 5);
	attrs = ism_pbw_begin(out, 1);
	put_peer(out, 1, in->src_ip, in->src_port, in->src_principal);
	put_peer(out, 2, in->dst_ip, in->dst_port, in->dst_principal);
	request = ism_pbw_begin(out, 4);
	t = ism_pbw_begin(out, 1);
	ism_pbw_varint(out, 1, (uint64_t)in->time.tv_sec);
	if (in->time.tv_nsec != 0)
		ism_pbw_varint(out, 2, (uint64_t)in->time.tv_nsec);
	ism_pbw_end(out, t);
	http = ism_pbw_begin(out, 2);
	do {
		*--d = (char)('0' + v % 10);
		v /= 10;
	} while (v != 0);
	ism_pbw_str(out, 1, d, (size_t)(id + sizeof(id) - d));
	ism_pbw_str(out, 2, req->method, req->method_len);
	if (req->host != NULL)
		put_entry(out, ":authority", 10, req->host, req->host_len);
	put_entry(out, ":method", 7, req->method, req->method_len);
	path = ism_pbw_begin(out, 3);
	put_key(out, ":path", 5);
	put_path(out, 2, req);
	ism_pbw_end(out, path);
	put_entry(out, ":scheme", 7, in->scheme, strlen(in->scheme));
	put_fields(out, req, in->body != NULL ? (in->partial ? "true" : "false") : NULL);
	put_path(out, 4, req);
	if (req->host != NULL)
		ism_pbw_str(out, 5, req->host, req->host_len);
	put_cstr(out, 6, in->scheme);
	ism_pbw_varint(out, 9, (uint64_t)in->size);
	put_cstr(out, 10, in->protocol);
	if (in->body != NULL)
		ism_pbw_str(out, in->raw_body ? 12 : 11, in->body, in->body_len);
	ism_pbw_end(out, http);
	ism_pbw_end(out, request);
	if (in->sni != NULL) {
		tls = ism_pbw_begin(out, 12);
		put_cstr(out, 1, in->sni);
		ism_pbw_end(out, tls);
	}
	ism_pbw_end(out, attrs);
	if (out->err)
		return;
	len = (uint32_t)(out->len - 5);
	out->p[1] = (uint8_t)(len >> 24);
	out->p[2] = (uint8_t)(len >> 16);
	out->p[3] = (uint8_t)(len >> 8);
	out->p[4] = (uint8_t)len;
}

/* ---------- the answer ---------- */

/* A field name as Envoy's headerValidation takes it: a token, after the
 * ':' of a pseudo-header. */
static bool token(const uint8_t *p, size_t n)
{
	static const char tchar[] = "!#$%&'*+-.^_`|~0123456789"
				    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

	if (n > 1 && p[0] == ':') {
		p++;
		n--;
	}
	if (n == 0)
		return false;
	for (size_t i = 0; i < n; i++)
		if (p[i] == 0 || strchr(tchar, p[i]) == NULL)
			return false;
	return true;
}

/* A query key or value as Envoy's queryParameterIsUrlEncoded wants it:
 * unreserved characters, sub-delimiters but '&' and '=', ':', '@', '/',
 * '?' and percent-encodings. */
static bool query_ok(const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		if (isalnum(p[i]) || (p[i] != 0 && strchr("-._~!$'()*+,;:@/?", p[i]) != NULL))
			continue;
		if (p[i] == '%' && i + 2 < n && isxdigit(p[i + 1]) && isxdigit(p[i + 2])) {
			i += 2;
			continue;
		}
		return false;
	}
	return true;
}

/* o appended to l; false without memory. */
static bool add(struct ism_xa_list *l, const struct ism_xa_field_opt *o)
{
	if (l->n == l->cap) {
		uint32_t cap = l->cap ? l->cap * 2 : 8;
		struct ism_xa_field_opt *f = realloc(l->f, cap * sizeof(*f));

		if (f == NULL)
			return false;
		l->f = f;
		l->cap = cap;
	}
	l->f[l->n++] = *o;
	return true;
}

/* Field g of a HeaderValue or a QueryParameter: key (1) or value (2). */
static void take_kv(const struct ism_pb_field *g, struct ism_xa_field_opt *o)
{
	if (g->wire != ISM_PB_LEN || (g->num != 1 && g->num != 2))
		return;
	*(g->num == 1 ? &o->name : &o->value) = (const char *)g->p;
	*(g->num == 1 ? &o->name_len : &o->value_len) = (uint32_t)g->len;
}

/* A HeaderValueOption (or, query, a QueryParameter) into list l. */
static bool read_opt(const struct ism_pb_field *m, struct ism_xa_list *l, bool query)
{
	const uint8_t *at = m->p, *end = m->p + m->len;
	struct ism_xa_field_opt o = {0};
	struct ism_pb_field f;
	int r;

	if (m->wire != ISM_PB_LEN)
		return false;
	if (query) {
		while ((r = ism_pb_next(&at, end, &f)) > 0)
			take_kv(&f, &o);
		return r == 0 && query_ok((const uint8_t *)o.name, o.name_len) &&
		       query_ok((const uint8_t *)o.value, o.value_len) && o.name_len > 0 &&
		       add(l, &o);
	}
	while ((r = ism_pb_next(&at, end, &f)) > 0) {
		const uint8_t *in = f.p, *ie = f.p + f.len;
		struct ism_pb_field g;
		int r2;

		if (f.wire != ISM_PB_LEN || (f.num != 1 && f.num != 2))
			continue;
		while ((r2 = ism_pb_next(&in, ie, &g)) > 0)
			if (f.num == 1)
				take_kv(&g, &o);
			else if (g.num == 1 && g.wire == ISM_PB_VARINT)
				o.append = g.v != 0;
		if (r2 < 0)
			return false;
	}
	return r == 0 && token((const uint8_t *)o.name, o.name_len) &&
	       ism_http_value_ok(o.value, o.value_len) && add(l, &o);
}

/* A repeated string (a name, a query key) into list l. */
static bool read_name(const struct ism_pb_field *f, struct ism_xa_list *l, bool query)
{
	const struct ism_xa_field_opt o = {.name = (const char *)f->p,
					   .name_len = (uint32_t)f->len};

	return f->wire == ISM_PB_LEN &&
	       (query ? query_ok(f->p, f->len) && f->len > 0 : token(f->p, f->len)) && add(l, &o);
}

static bool read_ok(const struct ism_pb_field *m, struct ism_xa_grpc_resp *out)
{
	const uint8_t *at = m->p, *end = m->p + m->len;
	struct ism_pb_field f;
	bool good = true;
	int r;

	while ((r = ism_pb_next(&at, end, &f)) > 0)
		switch (f.num) {
		case 2:
			good = good && read_opt(&f, &out->hdrs, false);
			break;
		case 5:
			good = good && read_name(&f, &out->remove, false);
			break;
		case 6:
			good = good && read_opt(&f, &out->resp, false);
			break;
		case 7:
			good = good && read_opt(&f, &out->qset, true);
			break;
		case 8:
			good = good && read_name(&f, &out->qrm, true);
			break;
		default:
			break;
		}
	return good && r == 0;
}

static bool read_denied(const struct ism_pb_field *m, struct ism_xa_grpc_resp *out)
{
	const uint8_t *at = m->p, *end = m->p + m->len;
	struct ism_pb_field f, g;
	bool good = true;
	int r, r2;

	while ((r = ism_pb_next(&at, end, &f)) > 0) {
		const uint8_t *in = f.p, *ie = f.p + f.len;

		if (f.num == 1 && f.wire == ISM_PB_LEN) {
			while ((r2 = ism_pb_next(&in, ie, &g)) > 0)
				if (g.num == 1 && g.wire == ISM_PB_VARINT && g.v > 0) {
					/* an interim status is no answer: the
					 * check failed (statusOnError), as
					 * an HTTP authorizer's 1xx */
					good = good && g.v >= 200 && g.v <= 599;
					out->status = (uint16_t)g.v;
				}
			good = good && r2 == 0;
		} else if (f.num == 2) {
			good = good && read_opt(&f, &out->hdrs, false);
		} else if (f.num == 3 && f.wire == ISM_PB_LEN) {
			out->body = (const char *)f.p;
			out->body_len = (uint32_t)f.len;
		}
	}
	return good && r == 0;
}

int ism_xa_grpc_response(const uint8_t *p, size_t len, struct ism_xa_grpc_resp *out)
{
	const uint8_t *at, *end;
	struct ism_pb_field f, g, ok = {0}, denied = {0};
	uint64_t code = 0;
	size_t n;
	int r, r2;

	memset(out, 0, sizeof(*out));
	/* One message, not compressed, and nothing after it. */
	if (len < 5 || p[0] != 0)
		return -EINVAL;
	n = (size_t)p[1] << 24 | (size_t)p[2] << 16 | (size_t)p[3] << 8 | p[4];
	if (n != len - 5)
		return -EINVAL;
	at = p + 5;
	end = p + len;
	while ((r = ism_pb_next(&at, end, &f)) > 0) {
		const uint8_t *in = f.p, *ie = f.p + f.len;

		if (f.wire != ISM_PB_LEN)
			continue;
		if (f.num == 1) {
			while ((r2 = ism_pb_next(&in, ie, &g)) > 0)
				if (g.num == 1 && g.wire == ISM_PB_VARINT)
					code = g.v;
			if (r2 < 0)
				return -EINVAL;
		} else if (f.num == 2) {
			denied = f;
		} else if (f.num == 3) {
			ok = f;
		}
	}
	if (r < 0)
		return -EINVAL;
	out->ok = code == 0;
	out->status = 0;
	if (out->ok)
		return ok.p == NULL || read_ok(&ok, out) ? 0 : -EINVAL;
	if (denied.p != NULL && !read_denied(&denied, out))
		return -EINVAL;
	if (out->status == 0)
		out->status = 403;
	return 0;
}

void ism_xa_grpc_resp_free(struct ism_xa_grpc_resp *r)
{
	free(r->hdrs.f);
	free(r->resp.f);
	free(r->remove.f);
	free(r->qset.f);
	free(r->qrm.f);
	memset(r, 0, sizeof(*r));
}
