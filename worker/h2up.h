/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP/2 upstream connections (ServiceEntry HTTP2/GRPC ports, DestinationRule
 * h2UpgradePolicy UPGRADE, useClientProtocol with an HTTP/2 client): libnghttp2
 * as the client-side frame codec over the connection's socket; streams of many
 * exchanges share a connection within the stream limit. worker/upstream.c
 * hands HTTP/2 connections and their streams here. Private to worker/. */
#ifndef ISM_WORKER_H2UP_H
#define ISM_WORKER_H2UP_H

#include <stdbool.h>
#include <stdint.h>

#include "worker/policy.h"
#include "worker/sock.h"
#include "worker/upstream.h"

/* Whether stream st goes to cluster cl over HTTP/2. */
bool ism_h2up_wanted(const struct ism_stream *st, const struct ism_cluster *cl);
/* As ism_up_start, over HTTP/2: a connection to ep with room for a stream, or
 * a new one (NULL with *full when maxConnections is reached). */
struct ism_upconn *ism_h2up_start(struct ism_wctx *w, struct ism_stream *st,
				  const struct ism_cluster *cl, const struct ism_endpoint *ep,
				  struct ism_buf *head, bool *full);
int ism_h2up_req_data(struct ism_wctx *w, struct ism_stream *st, const char *p, uint32_t len,
		      int bid, bool done);
void ism_h2up_resume(struct ism_wctx *w, struct ism_stream *st);
bool ism_h2up_replayable(const struct ism_stream *st);
/* Stream st lets go of connection u (st->up is NULL already); replay: where
 * the kept request goes, or NULL; reset: the upstream's stream is reset. */
void ism_h2up_detach(struct ism_wctx *w, struct ism_upconn *u, struct ism_stream *st,
		     struct ism_buf *replay);
/* HTTP/2 connection u is up (and its TLS handshake done): its queued streams go. */
void ism_h2up_ready(struct ism_wctx *w, struct ism_upconn *u);
/* res bytes from the upstream in ring buffer bid (0 or -errno: it went). */
void ism_h2up_recv(struct ism_wctx *w, struct ism_upconn *u, int res, int bid);
/* u's send completed (res: its length, or -errno). */
void ism_h2up_sent(struct ism_wctx *w, struct ism_upconn *u, int res);
/* u closes: its streams fail (f). */
void ism_h2up_closing(struct ism_wctx *w, struct ism_upconn *u, enum ism_failure f);
/* Of a ready connection (ISM_UP_MUX; one still connecting is ism_up_tick's):
 * idle time, PINGs (http2KeepAlive); drain: no new streams, close when idle. */
void ism_h2up_tick(struct ism_wctx *w, struct ism_upconn *u);
void ism_h2up_drain(struct ism_wctx *w, struct ism_upconn *u);
/* Whether u carries no stream. */
bool ism_h2up_idle(const struct ism_upconn *u);
/* Whether u's HTTP/2 state is calling out to its streams: u, closed
 * meanwhile, ends once that is over (not under its feet). */
bool ism_h2up_busy(const struct ism_upconn *u);
/* Frees u's HTTP/2 state (its streams are gone). */
void ism_h2up_free(struct ism_upconn *u);
/* After the batch: the connection of ud (its socket's user_data), which its
 * streams gave frames during the batch, frames and sends them (worker.c). */
void ism_h2up_kicked(struct ism_wctx *w, uint64_t ud);

#endif
