/* SPDX-License-Identifier: Apache-2.0 */
/* Answers a stream makes itself (worker/stream-int.h): errors with their
 * reason as the body, a fault's abort, a CORS preflight, the https redirect,
 * a route's redirect and direct response; an answer made during a fault
 * delay, kept for the delay's end. ism_stream_answer (stream.c) sends them. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"
#include "worker/actions.h"
#include "worker/cors.h"
#include "worker/fault.h"
#include "worker/hvalue.h"
#include "worker/router.h"
#include "worker/session.h"
#include "worker/stream-int.h"
#include "worker/stream.h"

/* An answer made while a fault delay runs, kept whole (its fields, strings
 * and body in the same allocation) until the delay is over: Envoy's router,
 * whose answer it would be, runs only then. */
struct ism_deferred {
	struct ism_local lr;
	const char *flags; /* a literal (ism_stream_flag_for), or NULL */
};

/* Copies n bytes of p to *d (NUL-terminated); the copy. */
static char *copy_to(char **d, const char *p, size_t n)
{
	char *r = *d;

	if (n)
		memcpy(r, p, n);
	r[n] = '\0';
	*d += n + 1;
	return r;
}

struct ism_deferred *ism_stream_defer(const struct ism_local *lr, const char *flags)
{
	size_t bytes = sizeof(struct ism_deferred) + lr->n_hdrs * sizeof(struct ism_http_header) +
		       strlen(lr->why) + 1 + lr->body_len + 1 +
		       (lr->grpc_status ? strlen(lr->grpc_status) + 1 : 0);
	struct ism_http_header *h;
	struct ism_deferred *a;
	char *d;

	for (size_t i = 0; i < lr->n_hdrs; i++)
		bytes += lr->hdrs[i].name_len + 1 + lr->hdrs[i].value_len + 1;
	a = malloc(bytes);
	if (a == NULL)
		return NULL;
	h = (struct ism_http_header *)(a + 1);
	d = (char *)(h + lr->n_hdrs);
	a->flags = flags;
	a->lr = *lr;
	a->lr.hdrs = h;
	for (size_t i = 0; i < lr->n_hdrs; i++)
		h[i] = (struct ism_http_header){
		    copy_to(&d, lr->hdrs[i].name, lr->hdrs[i].name_len), lr->hdrs[i].name_len,
		    copy_to(&d, lr->hdrs[i].value, lr->hdrs[i].value_len), lr->hdrs[i].value_len};
	a->lr.why = copy_to(&d, lr->why, strlen(lr->why));
	a->lr.body = lr->body ? copy_to(&d, lr->body, lr->body_len) : NULL;
	if (lr->grpc_status)
		a->lr.grpc_status = copy_to(&d, lr->grpc_status, strlen(lr->grpc_status));
	return a;
}

static const struct ism_http_header text_plain = {"content-type", 12, "text/plain", 10};

void ism_stream_error(struct ism_wctx *w, struct ism_stream *st, int status, const char *why,
		      bool close, const struct ism_http_header *hdrs, size_t n)
{
	struct ism_http_header h[4] = {text_plain};
	const struct ism_cluster *cl;
	const char *flag;
	char body[256];
	int len = snprintf(body, sizeof(body), "%s\n", why);

	ISM_BUG_ON(n > 2);
	for (size_t i = 0; i < n; i++)
		h[1 + i] = hdrs[i];
	flag = ism_stream_flag_for(status, why);
	/* A cluster empty for want of a DNS answer: Envoy's DNS-failure flag too. */
	cl = ism_stream_cluster(w, st);
	if (flag != NULL && strcmp(flag, "UH") == 0 && cl != NULL && cl->n_endpoints == 0 &&
	    cl->unresolved.len > 0)
		flag = "UH,DF";
	/* A circuit breaker's drop: Envoy's router says so to the client
	 * (unless Istio's envoyDebugHeaders are off). */
	if (flag != NULL && strcmp(flag, "UO") == 0 && w->table->debug_headers)
		h[1 + n++] = (struct ism_http_header){"x-envoy-overloaded", 18, "true", 4};
	ism_stream_answer(w, st,
			  &(struct ism_local){.status = status,
					      .why = why,
					      .body = body,
					      .body_len = len < (int)sizeof(body)
							      ? (uint32_t)len
							      : sizeof(body) - 1,
					      .hdrs = h,
					      .n_hdrs = n + 1,
					      .close = close},
			  flag);
}

void ism_stream_local(struct ism_wctx *w, struct ism_stream *st, int status, const char *why,
		      bool close)
{
	ism_stream_error(w, st, status, why, close, NULL, 0);
}

void ism_stream_fault_abort(struct ism_wctx *w, struct ism_stream *st, int status, int code)
{
	static const char why[] = ISM_FAULT_ABORT_WHY;
	char grpc[8];

	snprintf(grpc, sizeof(grpc), "%d", code);
	st->log_flags |= ISM_ALOG_FI;
	ism_stream_answer(w, st,
			  &(struct ism_local){.status = status,
					      .why = why,
					      .body = ISM_FAULT_ABORT_WHY "\n",
					      .body_len = sizeof(ISM_FAULT_ABORT_WHY "\n") - 1,
					      .hdrs = &text_plain,
					      .n_hdrs = 1,
					      .grpc_status = code >= 0 ? grpc : NULL},
			  NULL);
}

bool ism_stream_cors(struct ism_wctx *w, struct ism_stream *st, const struct ism_cors *c,
		     const struct ism_http_req *req)
{
	struct ism_local lr = {.status = 200, .why = "cors preflight"};
	int v = ism_cors_check(c, req, w->rs, &st->cors);

	if (v < 0) {
		ism_stream_local(w, st, 503, "out of memory", false);
		return true;
	}
	if (v != ISM_CORS_PREFLIGHT)
		return false;
	lr.hdrs = ism_stream_edit_fields(w, &st->cors->edits, NULL, 0, &lr.n_hdrs);
	if (lr.hdrs == NULL)
		ism_stream_local(w, st, 503, "out of memory", false);
	else
		ism_stream_answer(w, st, &lr, NULL);
	return true;
}

void ism_stream_https_redirect(struct ism_wctx *w, struct ism_stream *st,
			       const struct ism_http_req *req)
{
	char *loc = NULL;

	if (req->host == NULL) {
		ism_stream_local(w, st, 400, "no Host to redirect to", true);
		return;
	}
	/* Envoy's createSslRedirectPath: the Host as it came (its port too)
	 * and the :path (normalised, with its query; an absolute-form
	 * target's path). */
	if (asprintf(&loc, "https://%.*s%.*s%s%.*s", (int)req->host_len, req->host,
		     (int)req->path_len, req->path, req->query != NULL ? "?" : "",
		     req->query != NULL ? (int)req->query_len : 0,
		     req->query != NULL ? req->query : "") < 0) {
		ism_stream_local(w, st, 503, "out of memory", true);
		return;
	}
	ism_stream_error(w, st, 301, "use https", false,
			 &(struct ism_http_header){"location", 8, loc, strlen(loc)}, 1);
	free(loc);
}

/* A route's own answer: status, body (len bytes; NULL: none), the fields it
 * makes (hdrs, n), then the route's response edits; no reason code. */
static void route_answer(struct ism_wctx *w, struct ism_stream *st, const struct ism_route *r,
			 const struct ism_http_req *req, int status, const char *why,
			 const char *body, uint32_t len, const struct ism_http_header *hdrs,
			 size_t n)
{
	struct ism_local lr = {.status = status, .why = why, .body = body, .body_len = len};
	struct ism_hdr_edits *made;
	const struct ism_hdr_edits *e = ism_hval_edits(w, st, req, r, &r->act->resp, status, &made);

	st->route_server = ism_act_edit(&r->act->resp, "server", 6) != NULL;
	lr.hdrs = e != NULL ? ism_stream_edit_fields(w, e, hdrs, n, &lr.n_hdrs) : NULL;
	if (lr.hdrs == NULL) {
		free(made);
		ism_stream_local(w, st, 503, "out of memory", false);
		return;
	}
	ism_stream_answer(w, st, &lr, NULL);
	free(made);
}

void ism_stream_redirect(struct ism_wctx *w, struct ism_stream *st, const struct ism_route *r,
			 const struct ism_http_req *req, uint16_t port, bool tls)
{
	const struct ism_route_actions *a = r->act;
	const uint32_t limit = w->table->limits.max_request_header_bytes;
	struct ism_buf *path = &w->act_path, *loc = &w->act_orig;
	int n;

	if (req->host == NULL && a->redirect.authority.len == 0) {
		ism_stream_local(w, st, 400, "no Host to redirect to", true);
		return;
	}
	n = ism_act_rewrite_path(w->rs, &a->path, st->route_match, req->path, req->path_len,
				 req->query, req->query_len, limit, path);
	if (n < 0 || ism_act_location(&a->redirect, port, tls, req->host, req->host_len, path->p,
				      path->len, limit, loc) < 0) {
		ism_stream_local(w, st, 500, "redirect location too long", false);
		return;
	}
	route_answer(w, st, r, req, a->redirect.code, "redirect", NULL, 0,
		     &(struct ism_http_header){"location", 8, loc->p, loc->len}, 1);
}

void ism_stream_direct_response(struct ism_wctx *w, struct ism_stream *st,
				const struct ism_route *r, const struct ism_http_req *req,
				uint16_t port, bool tls)
{
	static const struct ism_path_rewrite keep = {.kind = ISM_PATH_KEEP};
	const struct ism_route_actions *a = r->act;
	const uint32_t limit = w->table->limits.max_request_header_bytes;
	const struct ism_direct *dr = &a->direct;
	struct ism_buf *path = &w->act_path, *loc = &w->act_orig;
	struct ism_http_header h[2];
	size_t n = 0;

	if (dr->body.len > 0)
		h[n++] = text_plain;
	if ((dr->status == 201 || dr->status / 100 == 3) && req->host != NULL &&
	    ism_act_rewrite_path(w->rs, &keep, NULL, req->path, req->path_len, req->query,
				 req->query_len, limit, path) >= 0 &&
	    ism_act_location(NULL, port, tls, req->host, req->host_len, path->p, path->len, limit,
			     loc) == 0)
		h[n++] = (struct ism_http_header){"location", 8, loc->p, loc->len};
	route_answer(w, st, r, req, dr->status, "direct response", dr->body.p, dr->body.len, h, n);
}

bool ism_stream_answer_deferred(struct ism_wctx *w, struct ism_stream *st)
{
	struct ism_deferred *a = st->deferred;

	if (a == NULL)
		return false;
	st->deferred = NULL;
	st->state = ISM_ST_NEW; /* out of the delay: the answer goes now */
	ism_stream_answer(w, st, &a->lr, a->flags);
	free(a);
	return true;
}
