/* SPDX-License-Identifier: Apache-2.0 */
/* A route's actions on one request (worker/actions.h). */
#include "worker/actions.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "worker/router.h"
#include "worker/sock.h"

/* Appends n bytes of p to out, which must stay within limit bytes (its
 * capacity may be larger: a scratch buffer keeps what it grew to). */
static int put(struct ism_buf *out, const char *p, size_t n, uint32_t limit)
{
	if (n > limit || out->len > limit - n)
		return -E2BIG;
	return ism_buf_append(out, p, (uint32_t)n, limit);
}

/* ---------- the path ---------- */

/* How much of path the route's match matched, which Envoy's prefix_rewrite
 * replaces: a prefix's length, the whole path after an exact or regex match,
 * and "/" when the match has no uri condition (Istio's default match). */
static size_t matched_len(const struct ism_match *m, const char *path, size_t path_len)
{
	switch (m != NULL ? m->uri.kind : ISM_SM_ANY) {
	case ISM_SM_PREFIX:
		return m->uri.s.len <= path_len ? m->uri.s.len : path_len;
	case ISM_SM_EXACT:
	case ISM_SM_REGEX:
		return path_len;
	default:
		return path_len > 0 && path[0] == '/' ? 1 : 0;
	}
}

/* The bytes of the UTF-8 sequence that starts at p (at most n, at least 1). */
static size_t rune_len(const char *p, size_t n)
{
	unsigned char c = (unsigned char)p[0];
	size_t k = c < 0xc0 ? 1 : c < 0xe0 ? 2 : c < 0xf0 ? 3 : c < 0xf8 ? 4 : 1;

	return k < n ? k : n;
}

/* Appends RE2's rewrite string sub for the match whose ovector is ov (n
 * pairs) in s: \0..\9 the groups (an unset one is empty), \\ a backslash. */
static int expand(struct ism_buf *out, const struct ism_str *sub, const char *s, const size_t *ov,
		  int n, uint32_t limit)
{
	int ret = 0;

	for (uint32_t i = 0; i < sub->len && ret == 0; i++) {
		char c = sub->p[i], next = i + 1 < sub->len ? sub->p[i + 1] : '\0';

		if (c == '\\' && next >= '0' && next <= '9') {
			int g = next - '0';

			i++;
			if (g < n && ov[2 * g] != (size_t)-1)
				ret = put(out, s + ov[2 * g], ov[2 * g + 1] - ov[2 * g], limit);
			continue;
		}
		if (c == '\\' && next == '\\')
			i++;
		ret = put(out, &c, 1, limit);
	}
	return ret;
}

/* RE2's GlobalReplace, which Envoy's regex_rewrite is: every match of the
 * pattern, left to right, replaced; an empty match right where the last one
 * ended is skipped by one character. */
static int replace_all(struct ism_router_scratch *rs, const struct ism_path_rewrite *pr,
		       const char *s, size_t len, uint32_t limit, struct ism_buf *out)
{
	size_t p = 0, lastend = (size_t)-1;
	int ret = 0;

	while (p <= len && ret == 0) {
		const size_t *ov;
		int n = ism_router_find(rs, &pr->re, s, len, p, &ov);

		if (n < 0)
			return -EAGAIN;
		if (n == 0)
			break;
		if (ov[0] > p)
			ret = put(out, s + p, ov[0] - p, limit);
		if (ov[0] == ov[1] && ov[0] == lastend) {
			size_t k = p < len ? rune_len(s + p, len - p) : 1;

			if (p < len && ret == 0)
				ret = put(out, s + p, k, limit);
			p += k;
			continue;
		}
		if (ret == 0)
			ret = expand(out, &pr->value, s, ov, n, limit);
		p = lastend = ov[1];
	}
	if (ret == 0 && p < len)
		ret = put(out, s + p, len - p, limit);
	return ret;
}

int ism_act_rewrite_path(struct ism_router_scratch *rs, const struct ism_path_rewrite *pr,
			 const struct ism_match *m, const char *path, size_t path_len,
			 const char *query, size_t query_len, uint32_t limit, struct ism_buf *out)
{
	size_t k;
	int ret = 0;

	out->len = 0;
	switch ((enum ism_path_rw)pr->kind) {
	case ISM_PATH_REGEX:
		ret = replace_all(rs, pr, path, path_len, limit, out);
		/* Envoy's rewritePathByPrefixOrRegex makes no rewrite of an
		 * empty result: the path stays. */
		if (ret == 0 && out->len == 0)
			return -ENODATA;
		break;
	case ISM_PATH_PREFIX:
		k = matched_len(m, path, path_len);
		ret = put(out, pr->value.p, pr->value.len, limit);
		if (ret == 0)
			ret = put(out, path + k, path_len - k, limit);
		break;
	case ISM_PATH_REPLACE:
		/* Envoy: a path_redirect with a query takes the place of the request's. */
		ret = put(out, pr->value.p, pr->value.len, limit);
		if (memchr(pr->value.p, '?', pr->value.len) != NULL)
			query = NULL;
		break;
	case ISM_PATH_KEEP:
		ret = put(out, path, path_len, limit);
		break;
	}
	if (ret == 0 && (out->len == 0 || out->p[0] != '/')) {
		ret = put(out, "/", 1, limit);
		if (ret == 0) {
			memmove(out->p + 1, out->p, out->len - 1);
			out->p[0] = '/';
		}
	}
	k = out->len;
	if (ret == 0 && memchr(out->p, '?', out->len) != NULL)
		k = (size_t)((const char *)memchr(out->p, '?', out->len) - out->p);
	if (ret == 0 && query != NULL) {
		ret = put(out, "?", 1, limit);
		if (ret == 0)
			ret = put(out, query, query_len, limit);
	}
	return ret < 0 ? ret : (int)k;
}

/* ---------- redirects ---------- */

/* Envoy's processRequestHost: the request's host, its port dropped when the
 * redirect gives a port, or when the scheme changes and the port is the
 * default one of the request's scheme. The length kept. */
static size_t redirect_host(const char *host, size_t len, const char *scheme,
			    const char *req_scheme, bool new_port)
{
	const char *colon = NULL;
	size_t plen;
	bool drop = new_port;

	if (len > 0 && host[0] == '[') {
		for (size_t i = len; i > 1 && colon == NULL; i--)
			if (host[i - 2] == ']' && host[i - 1] == ':')
				colon = host + i - 1;
	} else {
		colon = memrchr(host, ':', len);
	}
	if (colon == NULL)
		return len;
	plen = len - (size_t)(colon - host);
	if (strcmp(scheme, req_scheme) != 0)
		drop =
		    drop ||
		    (strcmp(req_scheme, "https") == 0 && plen == 4 &&
		     memcmp(colon, ":443", 4) == 0) ||
		    (strcmp(req_scheme, "http") == 0 && plen == 3 && memcmp(colon, ":80", 3) == 0);
	return drop ? (size_t)(colon - host) : len;
}

int ism_act_location(const struct ism_redirect *rd, uint16_t listener_port, bool tls,
		     const char *host, size_t host_len, const char *path, size_t path_len,
		     uint32_t limit, struct ism_buf *out)
{
	const char *req_scheme = tls ? "https" : "http";
	const char *scheme = rd != NULL && rd->scheme.len ? rd->scheme.p : req_scheme;
	unsigned port = rd == NULL ? 0 : rd->port_from_request ? listener_port : rd->port;
	char ps[8] = "";
	int ret;

	/* Istio writes no :80 over http nor :443 over https. */
	if ((port == 80 && strcmp(scheme, "http") == 0) ||
	    (port == 443 && strcmp(scheme, "https") == 0))
		port = 0;
	if (port != 0)
		snprintf(ps, sizeof(ps), ":%u", port);
	out->len = 0;
	ret = put(out, scheme, strlen(scheme), limit);
	if (ret == 0)
		ret = put(out, "://", 3, limit);
	if (ret == 0 && rd != NULL && rd->authority.len > 0)
		ret = put(out, rd->authority.p, rd->authority.len, limit);
	else if (ret == 0)
		ret = put(out, host, redirect_host(host, host_len, scheme, req_scheme, port != 0),
			  limit);
	if (ret == 0)
		ret = put(out, ps, strlen(ps), limit);
	if (ret == 0)
		ret = put(out, path, path_len, limit);
	return ret;
}

/* ---------- header fields ---------- */

const struct ism_hdr_edit *ism_act_edit(const struct ism_hdr_edits *e, const char *name, size_t len)
{
	for (uint32_t i = 0; i < e->n; i++)
		if (e->e[i].name.len == len && strncasecmp(e->e[i].name.p, name, len) == 0)
			return &e->e[i];
	return NULL;
}

size_t ism_act_n_values(const struct ism_hdr_edits *e)
{
	size_t n = 0;

	for (uint32_t i = 0; i < e->n; i++)
		n += e->e[i].n_values;
	return n;
}

size_t ism_act_apply(const struct ism_hdr_edits *e, const struct ism_http_header *in, size_t n,
		     struct ism_http_header *out, size_t cap)
{
	size_t k = 0;

	for (size_t i = 0; i < n && k < cap; i++)
		if (!ism_act_drops(e, in[i].name, in[i].name_len))
			out[k++] = in[i];
	for (uint32_t i = 0; i < e->n; i++) {
		const struct ism_hdr_edit *x = &e->e[i];

		for (uint32_t j = 0; j < x->n_values && k < cap; j++)
			out[k++] = (struct ism_http_header){x->name.p, x->name.len, x->values[j].p,
							    x->values[j].len};
	}
	return k;
}

/* Copies s into the bytes at *d, NUL-terminated. */
static struct ism_str str_to(char **d, struct ism_str s)
{
	struct ism_str r = {.p = *d, .len = s.len};

	if (s.len > 0)
		memcpy(*d, s.p, s.len);
	(*d)[s.len] = '\0';
	*d += s.len + 1;
	return r;
}

/* The n bytes at p less those a field value must not hold (control
 * characters other than a tab, DEL): an operator's value (a server name, a
 * certificate's name) never splits the field. Returns the length left. */
static size_t field_safe(char *p, size_t n)
{
	size_t k = 0;

	for (size_t i = 0; i < n; i++)
		if (((unsigned char)p[i] >= 0x20 || p[i] == '\t') && p[i] != 0x7f)
			p[k++] = p[i];
	return k;
}

/* Value f made into out (ISM_HVAL_MAX bytes): its text and its operators'
 * values, each cut at its max_len. When cb answers ISM_HVAL_LATE for a part,
 * *late is set and tpl[] (f->n parts) says what the value is so far: each
 * part made, as text in out, or kept as it is. Returns the length. */
static size_t render(const struct ism_hval *f, ism_hval_cb cb, void *arg, char *out,
		     struct ism_hval_part *tpl, bool *late)
{
	size_t len = 0;

	for (uint32_t k = 0; k < f->n; k++) {
		const struct ism_hval_part *p = &f->parts[k];
		size_t room = ISM_HVAL_MAX - len, n;

		if (p->max_len && p->max_len < room)
			room = p->max_len;
		if (p->kind == ISM_HV_LITERAL) {
			n = p->a.len < room ? p->a.len : room;
			memcpy(out + len, p->a.p, n);
		} else if ((n = cb(arg, p, out + len, room)) == ISM_HVAL_LATE) {
			tpl[k] = *p;
			*late = true;
			continue;
		} else {
			n = field_safe(out + len, n < room ? n : room);
		}
		n = n < room ? n : room;
		tpl[k] = (struct ism_hval_part){.kind = ISM_HV_LITERAL,
						.a = {.p = out + len, .len = (uint32_t)n}};
		len += n;
	}
	return len;
}

/* One value of a copy being made: its text, or (n_parts > 0) what is made
 * of it so far, the rest to be made later. */
struct made_val {
	struct ism_str text;
	uint32_t n_parts;
	struct ism_hval_part *parts;
};

/* The values of e into vals[], those with operators made (when cb) into
 * *out, which vals[] then points into (free() it; NULL when nothing was
 * made). false without memory. */
static bool render_all(const struct ism_hdr_edits *e, ism_hval_cb cb, void *arg,
		       struct made_val *vals, char **out)
{
	size_t nv = 0, n_made = 0, n_parts = 0;
	struct ism_hval_part *tpl;
	char *buf;

	*out = NULL;
	for (uint32_t i = 0; cb != NULL && i < e->n; i++)
		for (uint32_t j = 0; e->e[i].fmts != NULL && j < e->e[i].n_values; j++) {
			n_made += e->e[i].fmts[j].n > 0;
			n_parts += e->e[i].fmts[j].n;
		}
	buf = n_made ? malloc(n_made * ISM_HVAL_MAX + n_parts * sizeof(*tpl)) : NULL;
	if (n_made && buf == NULL)
		return false;
	*out = buf;
	tpl = (struct ism_hval_part *)(buf + n_made * ISM_HVAL_MAX);
	for (uint32_t i = 0; i < e->n; i++) {
		const struct ism_hdr_edit *x = &e->e[i];

		for (uint32_t j = 0; j < x->n_values; j++, nv++) {
			bool late = false;

			vals[nv] = (struct made_val){.text = x->values[j]};
			if (cb == NULL || x->fmts == NULL || x->fmts[j].n == 0)
				continue;
			vals[nv].text.p = buf;
			vals[nv].text.len = (uint32_t)render(&x->fmts[j], cb, arg, buf, tpl, &late);
			if (late)
				vals[nv] = (struct made_val){
				    .text = x->values[j], .n_parts = x->fmts[j].n, .parts = tpl};
			buf += ISM_HVAL_MAX;
			tpl += x->fmts[j].n;
		}
	}
	return true;
}

/* The bytes a copy of the value takes after its structures. */
static size_t made_bytes(const struct made_val *m)
{
	size_t n = m->text.len + 1;

	for (uint32_t k = 0; k < m->n_parts; k++)
		n += m->parts[k].a.len + 1 + m->parts[k].b.len + 1;
	return n;
}

struct ism_hdr_edits *ism_act_edits_dup(const struct ism_hdr_edits *e, ism_hval_cb cb, void *arg)
{
	size_t nv = ism_act_n_values(e), bytes = 0, n_parts = 0;
	struct ism_hdr_edits *c;
	struct ism_hdr_edit *x;
	struct ism_str *v;
	struct ism_hval *f;
	struct ism_hval_part *pt;
	struct made_val *vals = nv ? malloc(nv * sizeof(*vals)) : NULL;
	char *d, *made = NULL;
	size_t k = 0;

	if ((nv && vals == NULL) || !render_all(e, cb, arg, vals, &made)) {
		free(vals);
		return NULL;
	}
	for (uint32_t i = 0; i < e->n; i++)
		bytes += e->e[i].name.len + 1;
	for (size_t j = 0; j < nv; j++) {
		bytes += made_bytes(&vals[j]);
		n_parts += vals[j].n_parts;
	}
	/* Structures first, then the bytes: each array stays aligned. */
	c = malloc(sizeof(*c) + e->n * sizeof(*x) + nv * (sizeof(*v) + (n_parts ? sizeof(*f) : 0)) +
		   n_parts * sizeof(*pt) + bytes);
	if (c == NULL) {
		free(vals);
		free(made);
		return NULL;
	}
	x = (struct ism_hdr_edit *)(c + 1);
	v = (struct ism_str *)(x + e->n);
	f = n_parts ? (struct ism_hval *)(v + nv) : NULL;
	pt = (struct ism_hval_part *)(f != NULL ? (void *)(f + nv) : (void *)(v + nv));
	d = (char *)(pt + n_parts);
	*c = (struct ism_hdr_edits){.n = e->n, .dynamic = n_parts > 0, .e = x};
	for (uint32_t i = 0; i < e->n; i++) {
		const struct ism_hdr_edit *in = &e->e[i];

		x[i] = (struct ism_hdr_edit){.name = str_to(&d, in->name),
					     .drop = in->drop,
					     .removed = in->removed,
					     .values = v,
					     .fmts = f};
		for (uint32_t j = 0; j < in->n_values; j++, k++) {
			const struct made_val *m = &vals[k];
			bool made_here = cb != NULL && in->fmts != NULL && in->fmts[j].n > 0;

			/* Envoy adds no empty value, and skips a set that has none
			 * (known only once a value is made whole). */
			if (made_here && m->n_parts == 0 && m->text.len == 0) {
				if (j == 0 && in->drop && !in->removed)
					x[i].drop = 0;
				continue;
			}
			if (f != NULL)
				f[x[i].n_values] = (struct ism_hval){.n = m->n_parts, .parts = pt};
			for (uint32_t q = 0; q < m->n_parts; q++, pt++) {
				*pt = m->parts[q];
				pt->a = str_to(&d, m->parts[q].a);
				pt->b = str_to(&d, m->parts[q].b);
			}
			v[x[i].n_values++] = str_to(&d, m->text);
		}
		v += x[i].n_values;
		if (f != NULL)
			f += x[i].n_values;
	}
	free(vals);
	free(made);
	return c;
}
