/* SPDX-License-Identifier: Apache-2.0 */
/* Request mirroring (Istio's mirror, mirrors[], mirrorPercentage; Envoy's
 * request_mirror_policies): a copy of a request whose route mirrors goes to
 * the mirror's cluster, its Host (:authority) with "-shadow" appended, once
 * the original request is whole; its response is discarded. A copy is a
 * stream (worker/stream.h) whose session is a sink that drops what it is
 * given, so it reuses the upstream pool, the balancing and the timeouts of
 * every stream. Bounded: limits.mirrorMaxInFlight copies per worker,
 * limits.mirrorMaxBodyBytes of body per copy; what does not fit is dropped
 * and counted, never queued, and nothing of a copy reaches the original's
 * client, counters or access log. Private to worker/. */
#ifndef ISM_WORKER_MIRROR_H
#define ISM_WORKER_MIRROR_H

#include <stdbool.h>
#include <stdint.h>

#include "shm/table-t.h"
#include "worker/http1.h"
#include "worker/worker-t.h"

/* Stream st was routed by r (r->n_mirrors > 0): its copies, by the mirrors'
 * percentages. head is the request head the upstream gets (no body yet),
 * body (len bytes) the body bytes that came with it, req_done whether the
 * body ended within them. A copy whose request is whole starts at once; the
 * others wait for ism_mirror_body. */
void ism_mirror_request(struct ism_wctx *w, struct ism_stream *st, const struct ism_route *r,
			const struct ism_http_req *req, const struct ism_buf *head,
			const char *body, uint32_t len, bool req_done);
/* More of the body of st (which has copies waiting), decoded; done: its end. */
void ism_mirror_body(struct ism_wctx *w, struct ism_stream *st, const char *p, uint32_t len,
		     bool done);
/* st goes away with copies still waiting for its body: they are dropped. */
void ism_mirror_orphaned(struct ism_wctx *w, struct ism_stream *st);
/* Internal stream st (a copy, or an authorization check, worker/extauthz.h:
 * st->mirror set) is told after the batch that what its sink session took
 * "went out" (a session never answers in the call). */
void ism_mirror_later(struct ism_wctx *w, struct ism_stream *st);
/* After each batch of completions: the internal streams are told. */
void ism_mirror_after_batch(struct ism_wctx *w);
void ism_mirror_free(struct ism_wctx *w);

/* The authority a copy sends, as Envoy forms it: "-shadow" after the host,
 * before any port ("a.b:8080" becomes "a.b-shadow:8080"). Writes it into out
 * (cap bytes); its length, or -E2BIG. */
int ism_mirror_shadow_host(const char *host, size_t len, char *out, size_t cap);

#endif
