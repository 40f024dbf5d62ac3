/* SPDX-License-Identifier: Apache-2.0 */
/* Header values with Envoy's command operators, made for one stream: what
 * ism_act_edits_dup (worker/actions.h) calls for each operator of a route's
 * header edits, and what the access log shows of the same operators.
 * Private to worker/. */
#ifndef ISM_WORKER_HVALUE_H
#define ISM_WORKER_HVALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "shm/table.h"
#include "worker/actions.h"
#include "worker/worker-t.h"

struct ism_http_req;
struct ism_http_resp;
struct ism_route;
struct ism_stream;

/* What the operators of a route's header values see: the stream, its
 * request and its route (conf/hfmt.h). */
struct ism_hval_ctx {
	struct ism_wctx *w;
	struct ism_stream *st;
	const struct ism_http_req *req; /* NULL: gone (a response's values) */
	const struct ism_route *r;
	/* What the upstream answered (the operators ism_hval_late): a
	 * response's values are made with it; later: made once it comes
	 * (ISM_HVAL_LATE); neither: they have no value yet. */
	const struct ism_http_resp *resp;
	bool later;
	int status; /* a status the stream answers with itself; 0: none */
};

/* The value of operator p for the request of arg (struct ism_hval_ctx), as
 * Envoy's formatter gives it to a header (a value it lacks is empty). */
size_t ism_hval(void *arg, const struct ism_hval_part *p, char *out, size_t cap);
/* Operator kind as the access log shows it when the exchange ends: the last
 * attempt's endpoint (whether it answered or not), the others as a request's
 * header value has them. */
size_t ism_hval_log(struct ism_wctx *w, struct ism_stream *st, uint8_t kind, char *out, size_t cap);
/* Edits e, made for this request when their values hold command operators
 * (free() the copy *made then); e itself when they do not. NULL without
 * memory. */
const struct ism_hdr_edits *ism_hval_edits(struct ism_wctx *w, struct ism_stream *st,
					   const struct ism_http_req *req,
					   const struct ism_route *r, const struct ism_hdr_edits *e,
					   int status, struct ism_hdr_edits **made);

#endif
