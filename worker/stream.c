/* SPDX-License-Identifier: Apache-2.0 */
/* Streams (worker/stream.h): one request and its response. The request is
 * routed here, its cluster and endpoint picked, its attempts made, retried and
 * timed; the response goes from the upstream connection to the session; the
 * exchange ends in the counters and the access log (worker/exchange.c).
 * Answers made here are built in worker/answer.c, header values with
 * operators made in worker/hvalue.c. A stream never outlives its
 * session except as ABANDONED, while its retry timer is still on the ring. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "conf/defaults.h"
#include "health/outlier.h"
#include "lib/addr.h"
#include "lib/ascii.h"
#include "lib/grpc.h"
#include "lib/log.h"
#include "shm/table.h"
#include "worker/accesslog.h"
#include "worker/actions.h"
#include "worker/authn.h"
#include "worker/authz.h"
#include "worker/balancer.h"
#include "worker/cors.h"
#include "worker/extauthz.h"
#include "worker/fault.h"
#include "worker/grpcweb.h"
#include "worker/h2up.h"
#include "worker/hash.h"
#include "worker/hvalue.h"
#include "worker/logfilter.h"
#include "worker/mirror.h"
#include "worker/regen.h"
#include "worker/ring.h"
#include "worker/router.h"
#include "worker/session.h"
#include "worker/sock.h"
#include "worker/stream-int.h"
#include "worker/stream.h"
#include "worker/tls.h"
#include "worker/tunnel.h"
#include "worker/upstream.h"

static void do_retry(struct ism_wctx *w, struct ism_stream *st);
static void delay_over(struct ism_wctx *w, struct ism_stream *st);
static void l4_refused(struct ism_wctx *w, struct ism_stream *st, const char *why);
static void stream_cut(struct ism_wctx *w, struct ism_stream *st);

/* ---------- lifecycle ---------- */

struct ism_stream *ism_stream_new(struct ism_wctx *w, struct ism_sess *s)
{
	uint32_t idx, gen;
	struct ism_stream *st = ism_slab_get(&w->streams, sizeof(*st), &idx, &gen);

	if (st == NULL)
		return NULL;
	ism_wstat_add(&w->st->streams, 1);
	st->idx = idx;
	st->gen = gen;
	st->state = ISM_ST_NEW;
	st->sess = s;
	st->cluster = UINT32_MAX;
	st->ep_id = UINT32_MAX;
	st->prev_ep = UINT32_MAX;
	st->t0_ms = w->now;
	st->read_idle_ms = w->table->timeouts.stream_idle_ms;
	return st;
}

/* The stream's slot goes back, or (its timer still on the ring) waits for it. */
static void stream_free(struct ism_wctx *w, struct ism_stream *st)
{
	if (st->copies != NULL && !st->mirror)
		ism_mirror_orphaned(w, st);
	ism_alog_req_free(st->log_req);
	st->log_req = NULL;
	/* What only some requests have (a plain route's has none of them). */
	if (st->set_cookie != NULL || st->resp_edits != NULL || st->cors != NULL ||
	    st->deferred != NULL || st->gw != NULL || st->denied != NULL || st->authn != NULL ||
	    st->xa != NULL) {
		ism_authn_free(st->authn);
		st->authn = NULL;
		if (st->xa != NULL)
			ism_extauthz_gone(w, st);
		ism_gw_free(st->gw);
		free(st->denied);
		st->denied = NULL;
		st->gw = NULL;
		free(st->set_cookie);
		st->set_cookie = NULL;
		free(st->resp_edits);
		st->resp_edits = NULL;
		free(st->cors);
		st->cors = NULL;
		free(st->deferred);
		st->deferred = NULL;
	}
	ism_buf_free(&st->replay);
	ism_buf_free(&st->req_trl);
	ism_buf_free(&st->filter_hdrs);
	ism_buf_free(&st->filter_resp);
	ism_buf_free(&st->filter_trl);
	ism_buf_free(&st->xff);
	st->sess = NULL;
	st->up = NULL;
	st->usp = NULL;
	st->sp = NULL;
	st->deadline = 0;
	if (st->inflight) {
		/* Its timer (a fault's delay, a retry's back-off) is removed,
		 * as Envoy's filters drop theirs with the stream: the slot
		 * comes back at the removal's completion, not at the end of a
		 * delay of up to an hour (each reset request held its slot
		 * that long: 180,000 of them, 183 MiB). */
		struct io_uring_sqe *sqe = ism_w_sqe(w);

		io_uring_prep_timeout_remove(sqe, ism_ud(ISM_OP_RETRY, st->idx, st->gen), 0);
		io_uring_sqe_set_data64(sqe, ism_ud(ISM_OP_CANCEL, 0, 0));
		st->state = ISM_ST_ABANDONED;
		return;
	}
	st->state = ISM_ST_FREE;
	ism_slab_put(&w->streams, st->idx);
	ism_wstat_add(&w->st->streams, (uint64_t)-1);
}

const char *ism_stream_client(const struct ism_stream *st)
{
	return st->xff_client[0] || st->sess == NULL ? st->xff_client : st->sess->peer;
}

/* Every stream deadline set is told here: the loop wakes for the earliest
 * (ism_stream_expire_due). */
static inline void wake_at(struct ism_wctx *w, uint64_t at)
{
	if (at && at < w->stream_wake)
		w->stream_wake = at;
}

void ism_stream_set_deadline(struct ism_wctx *w, struct ism_stream *st,
			     enum ism_stream_deadline kind, uint32_t ms)
{
	/* While the client's body still comes, no upstream timer runs: Envoy's
	 * router starts them at the request's end, whether the response began
	 * or not. Bytes either way keep the stream's idle timeout off; a client
	 * that stalls meets it (408 SI), never the upstream's (a 504 that
	 * outlier detection would count against the endpoint). */
	if (kind == ISM_SDL_RESPONSE && !st->req_done && !st->l4 && !st->upgrade) {
		kind = ISM_SDL_BODY;
		ms = st->read_idle_ms;
	}
	st->deadline_kind = (uint8_t)kind;
	st->deadline = kind != ISM_SDL_NONE && ms ? w->now + ms : 0;
	/* The route's timeout bounds the whole exchange, whatever the per-read
	 * timeout says. */
	if (kind != ISM_SDL_NONE && st->route_deadline &&
	    (st->deadline == 0 || st->route_deadline < st->deadline)) {
		st->deadline_kind = ISM_SDL_RESPONSE;
		st->deadline = st->route_deadline;
	}
	wake_at(w, st->deadline);
}

/* The attempt in progress ends: the endpoint's in-flight count goes back. */
static void ep_done(struct ism_wctx *w, struct ism_stream *st, bool failed)
{
	struct ism_ep_state *es;

	if (st->ep_id == UINT32_MAX)
		return;
	es = &w->shm->hdr->eps[st->ep_id];
	/* Unless a reload gave the slot to another endpoint meanwhile. */
	if (st->ep_inc == ism_up_ep_incarnation(w, st->ep_id)) {
		struct ism_ep_held *h = ism_up_held(w, st->ep_id, st->ep_inc);

		atomic_fetch_sub_explicit(&es->inflight, 1, memory_order_relaxed);
		if (h->inflight > 0)
			h->inflight--;
		if (failed)
			atomic_fetch_add_explicit(&es->failures, 1, memory_order_relaxed);
	}
	st->ep_id = UINT32_MAX;
}

/* ---------- the queue for a connection (maxConnections) ---------- */

/* A stream takes (and gives back) a place in a cluster's counted capacity:
 * its flag, and the worker's count of them in its slot, which the master
 * reads when the worker dies (the places are then healed by a new
 * generation, ism_shm_worker_give_back). */
static void hold_set(struct ism_wctx *w, uint8_t *flag)
{
	if (!*flag)
		w->slot->cluster_holds++;
	*flag = 1;
}

static void hold_clear(struct ism_wctx *w, uint8_t *flag)
{
	if (*flag)
		w->slot->cluster_holds--;
	*flag = 0;
}

static void wait_remove(struct ism_wctx *w, struct ism_stream *st)
{
	const struct ism_cluster *cl;

	if (!st->waiting)
		return;
	if (st->wait_prev)
		st->wait_prev->wait_next = st->wait_next;
	else
		w->wait_head = st->wait_next;
	if (st->wait_next)
		st->wait_next->wait_prev = st->wait_prev;
	else
		w->wait_tail = st->wait_prev;
	st->wait_next = st->wait_prev = NULL;
	hold_clear(w, &st->waiting);
	cl = ism_stream_cluster(w, st);
	if (cl != NULL)
		atomic_fetch_sub_explicit(&cl->dyn->pending, 1, memory_order_relaxed);
}

/* maxConnections reached: the request waits for a connection of the cluster to
 * be released, if http1MaxPendingRequests allows; else 503 (overflow). A
 * tunnel does not wait (Envoy's TCP proxy closes the connection). */
static void wait_for_connection(struct ism_wctx *w, struct ism_stream *st,
				const struct ism_cluster *cl, struct ism_buf *head)
{
	uint32_t n = atomic_load_explicit(&cl->dyn->pending, memory_order_relaxed);

	/* A place in the queue is taken in one step: workers racing for the last
	 * one never both get it. */
	do {
		if (st->l4 || n >= cl->pool.max_pending) {
			atomic_fetch_add_explicit(&cl->dyn->overflow, 1, memory_order_relaxed);
			ism_stream_local(w, st, 503, "upstream overflow (maxConnections)", false);
			return;
		}
	} while (!atomic_compare_exchange_weak_explicit(
	    &cl->dyn->pending, &n, n + 1, memory_order_relaxed, memory_order_relaxed));
	ism_buf_free(&st->replay);
	st->replay = *head;
	*head = (struct ism_buf){0};
	hold_set(w, &st->waiting);
	st->wait_next = NULL;
	st->wait_prev = w->wait_tail;
	if (w->wait_tail)
		w->wait_tail->wait_next = st;
	else
		w->wait_head = st;
	w->wait_tail = st;
	st->state = ISM_ST_WAITING;
	/* A wait is bounded like a connect, from the first time it queued: going
	 * back to the queue after a wake-up does not extend it. */
	if (st->wait_deadline == 0)
		st->wait_deadline = w->now + st->connect_timeout_ms;
	st->deadline_kind = ISM_SDL_CONNECT;
	st->deadline = st->route_deadline && st->route_deadline < st->wait_deadline
			   ? st->route_deadline
			   : st->wait_deadline;
	wake_at(w, st->deadline);
}

void ism_stream_after_batch(struct ism_wctx *w)
{
	uint32_t n = 0;

	if (!w->wake_waiters)
		return;
	w->wake_waiters = 0;
	for (struct ism_stream *st = w->wait_head; st != NULL; st = st->wait_next)
		n++;
	/* Each waiter gets one try per release; one that still finds the pool
	 * full goes back to the end of the queue. */
	while (n-- > 0 && w->wait_head != NULL) {
		struct ism_stream *st = w->wait_head;

		wait_remove(w, st);
		do_retry(w, st);
	}
}

/* ---------- outcomes, retries ---------- */

/* Tells outlier detection how the attempt on st->prev_ep went; an ejection is
 * announced to every process (health epoch) and the master woken to recompute
 * the priority loads. */
static void record_outcome(struct ism_wctx *w, struct ism_stream *st, enum ism_failure f,
			   int status)
{
	const struct ism_cluster *cl = ism_stream_cluster(w, st);
	uint64_t one = 1;
	char why[16];

	if (cl == NULL || cl->od == NULL || st->prev_ep == UINT32_MAX || st->ep == NULL)
		return;
	if (!ism_outlier_record(cl, w->shm->hdr, st->ep, ism_outcome_of(cl->od, f, status), w->now))
		return;
	atomic_fetch_add(&w->shm->hdr->health_epoch, 1);
	if (write(w->notify_fd, &one, sizeof(one)) < 0)
		ism_debug("notify master: %s", strerror(errno));
	if (f == ISM_FAIL_NONE)
		snprintf(why, sizeof(why), "status %d", status);
	ism_warn("endpoint %s ejected by outlier detection (cluster %s, %s)",
		 w->shm->pub->ep_keys[st->prev_ep], cl->name.p,
		 f == ISM_FAIL_CONNECT	  ? "connect failure"
		 : f == ISM_FAIL_RESET	  ? "reset"
		 : f == ISM_FAIL_REFUSED  ? "refused stream"
		 : f == ISM_FAIL_PROTOCOL ? "malformed response"
		 : f == ISM_FAIL_TIMEOUT  ? "timeout"
					  : why);
}

/* The outcome of a response that streamed (od_pending), told to outlier
 * detection once it is known: success when it ended as framed, else f. */
static void od_settle(struct ism_wctx *w, struct ism_stream *st, enum ism_failure f)
{
	if (!st->od_pending)
		return;
	st->od_pending = 0;
	record_outcome(w, st, f, f == ISM_FAIL_NONE ? st->status : 0);
}

/* The stream holds none of its cluster's counted capacity any more (a retry
 * in flight, a request in flight); those of an older generation stay there. */
static void retry_done(struct ism_wctx *w, struct ism_stream *st)
{
	const struct ism_cluster *cl = ism_stream_cluster(w, st);

	if (st->retry_counted && cl != NULL)
		atomic_fetch_sub_explicit(&cl->dyn->retries_active, 1, memory_order_relaxed);
	if (st->rq_counted && cl != NULL)
		atomic_fetch_sub_explicit(&cl->dyn->in_flight, 1, memory_order_relaxed);
	hold_clear(w, &st->retry_counted);
	hold_clear(w, &st->rq_counted);
}

/* http2MaxRequests (Envoy's max_requests): requests in flight to the cluster,
 * from every worker and either protocol; false when the cap is reached. The
 * count is also what a retry budget is a share of. */
static bool request_admitted(struct ism_wctx *w, struct ism_stream *st,
			     const struct ism_cluster *cl)
{
	uint32_t n;

	/* Unlimited (the default) and no budget: nothing to count, and no cache
	 * line that every worker's every request would write. */
	if (cl->pool.max_requests == UINT32_MAX && cl->pool.retry_budget_min == 0)
		return true;
	n = atomic_fetch_add_explicit(&cl->dyn->in_flight, 1, memory_order_relaxed);
	if (n >= cl->pool.max_requests) {
		atomic_fetch_sub_explicit(&cl->dyn->in_flight, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&cl->dyn->overflow, 1, memory_order_relaxed);
		return false;
	}
	hold_set(w, &st->rq_counted);
	return true;
}

/* The retries the cluster allows in flight now: maxRetries, or under a retry
 * budget (Envoy's, which then replaces it) that share of the requests in
 * flight and pending, but never fewer than its minimum. */
static uint32_t retry_cap(const struct ism_cluster *cl)
{
	uint64_t active, cap;

	if (cl->pool.retry_budget_min == 0)
		return cl->pool.max_retries;
	active = (uint64_t)atomic_load_explicit(&cl->dyn->in_flight, memory_order_relaxed) +
		 atomic_load_explicit(&cl->dyn->pending, memory_order_relaxed);
	cap = active * cl->pool.retry_budget_ppm / 1000000;
	return cap > cl->pool.retry_budget_min ? (uint32_t)cap : cl->pool.retry_budget_min;
}

/* Whether this failed attempt may be retried: attempts left, what went out of
 * the request kept (within ISM_REPLAY_MAX), time left, the retry policy
 * wants it, and the cluster's maxRetries (or retry budget) allows one more
 * retry in flight. */
static bool retry_possible(struct ism_wctx *w, struct ism_stream *st, enum ism_failure f,
			   int status, int grpc)
{
	const struct ism_cluster *cl = ism_stream_cluster(w, st);

	/* What went out is kept (the rest of the body, if any, is still with
	 * the client session and follows the replay). A cluster a reload
	 * removed is looked for at the retry, as Envoy's router does (UH). */
	if (st->req_streamed || st->resp_started)
		return false;
	/* A TCP or TLS connection sends nothing before it is connected. */
	if (!st->l4 && st->replay.len == 0 && !ism_up_replayable(st))
		return false;
	if (st->route_deadline && w->now >= st->route_deadline)
		return false;
	if (!ism_retry_wanted(&st->rs, f, status) &&
	    (grpc < 0 || !ism_retry_wanted_grpc(&st->rs, grpc)))
		return false;
	if (st->rs.retries_left == 0) {
		/* Envoy's URX: retried as often as its policy allows. */
		if (st->rs.tries > 1)
			st->log_flags |= ISM_ALOG_URX;
		return false;
	}
	/* A draining worker retries as Envoy's router does while its listener
	 * drains: the drain time bounds the exchange, as it bounds a slow
	 * response. But a back-off that could still be running when that time
	 * is over would end in the connection cut at the drain's end, where
	 * the client can have the upstream's answer now. */
	if (w->draining &&
	    w->now + ism_retry_backoff_ms(st->rs.backoff_base_ms, st->rs.tries, UINT32_MAX) >=
		w->drain_deadline)
		return false;
	if (cl != NULL && !st->retry_counted &&
	    atomic_load_explicit(&cl->dyn->retries_active, memory_order_relaxed) >= retry_cap(cl)) {
		/* Envoy's retry circuit breaker: UO. */
		atomic_fetch_add_explicit(&cl->dyn->overflow, 1, memory_order_relaxed);
		st->log_flags |= ISM_ALOG_UO;
		return false;
	}
	return true;
}

/* A grpc-status that is no number: a code no retry policy names, which
 * outlier detection takes as 500 (Envoy's InvalidCode). */
#define GRPC_INVALID 999

/* The grpc-status of a response's head (a trailers-only response), or -1:
 * none, or the status comes in the trailers. Any response's, as Envoy's retry
 * state reads it whatever the request was. */
static int grpc_status(const struct ism_http_resp *resp)
{
	for (size_t i = 0; i < resp->n_headers; i++) {
		const struct ism_http_header *f = &resp->headers[i];
		int v = 0;

		if (!ism_http_header_is(f, "grpc-status"))
			continue;
		for (size_t k = 0; k < f->value_len && v <= GRPC_INVALID; k++)
			v = f->value[k] >= '0' && f->value[k] <= '9' ? v * 10 + (f->value[k] - '0')
								     : GRPC_INVALID + 1;
		return f->value_len > 0 && v <= GRPC_INVALID ? v : GRPC_INVALID;
	}
	return -1;
}

/* Ends the attempt in progress: its connection closes, the request kept in
 * st->replay when it can be replayed. */
static void end_attempt(struct ism_wctx *w, struct ism_stream *st)
{
	if (st->up == NULL)
		return;
	ism_up_detach(w, st, !st->req_streamed ? &st->replay : NULL);
	ep_done(w, st, true);
}

/* The stream's timer (ism_stream_timer when it completes) in ms. */
static void start_timer(struct ism_wctx *w, struct ism_stream *st, uint32_t ms)
{
	struct io_uring_sqe *sqe;

	st->retry_ts.tv_sec = ms / 1000;
	st->retry_ts.tv_nsec = (long long)(ms % 1000) * 1000000;
	sqe = ism_w_sqe(w);
	io_uring_prep_timeout(sqe, &st->retry_ts, 0, 0);
	io_uring_sqe_set_data64(sqe, ism_ud(ISM_OP_RETRY, st->idx, st->gen));
	st->inflight++;
}

/* The next attempt, after Envoy's jittered back-off. */
static void schedule_retry(struct ism_wctx *w, struct ism_stream *st)
{
	const struct ism_cluster *cl = ism_stream_cluster(w, st);
	uint32_t ms = ism_retry_backoff_ms(st->rs.backoff_base_ms, st->rs.tries, ism_w_rand(w));

	st->rs.retries_left--;
	if (cl != NULL) {
		atomic_fetch_add_explicit(&cl->dyn->retries, 1, memory_order_relaxed);
		if (!st->retry_counted) {
			atomic_fetch_add_explicit(&cl->dyn->retries_active, 1,
						  memory_order_relaxed);
			hold_set(w, &st->retry_counted);
		}
	}
	start_timer(w, st, ms);
	st->state = ISM_ST_BACKOFF;
	/* Only the route's timeout bounds the wait. */
	ism_stream_set_deadline(w, st, ISM_SDL_RESPONSE, 0);
}

/* The answer when no endpoint could be picked from cl: Envoy's router finds
 * no cluster that istiod would not have made (a ServiceEntry without the
 * port, a newer table without it: NC), else none healthy (UH). */
static void no_endpoint(struct ism_wctx *w, struct ism_stream *st, const struct ism_cluster *cl)
{
	ism_stream_local(
	    w, st, 503, cl == NULL || cl->missing ? ISM_WHY_NO_CLUSTER : ISM_WHY_NO_HEALTHY, false);
}

/* An endpoint for the stream's next attempt: avoiding those tried and their
 * priorities as the retry policy says. */
static int pick_endpoint(struct ism_wctx *w, struct ism_stream *st)
{
	struct ism_lb_req rq = {
	    .skip_prio = ism_retry_prio_skip(&st->rs),
	    .rnd = ism_w_rand(w),
	    .rnd2 = ism_w_rand(w),
	    .hash = st->hash,
	    .has_hash = st->has_hash,
	    .now_ms = w->now,
	};

	rq.n_exclude = ism_retry_avoid(&st->rs, &rq.exclude);
	return ism_lb_pick(w->lb, st->cluster, w->shm->hdr, &rq);
}

/* The wait for the response head: timeouts.upstreamResponse for a route
 * without a timeout of its own; under a route's timeout (or a gRPC deadline),
 * which bounds the whole exchange as Envoy's, only the stream idle timeout. */
static uint32_t head_timeout(const struct ism_stream *st)
{
	return st->route_timeout_ms ? st->read_idle_ms : st->response_timeout_ms;
}

/* The response timeout of an attempt: until the response head came, the retry
 * policy's per-try timeout when shorter; whatever re-arms the deadline before
 * then (body bytes either way, an interim head) keeps it. */
static bool per_try_bounded(const struct ism_stream *st)
{
	uint32_t head = head_timeout(st);

	return !st->resp_head_done && st->rs.per_try_ms && (head == 0 || st->rs.per_try_ms < head);
}

/* The attempt's timer, armed again as bytes move: before the response head,
 * its wait (a timeout: 504, retried); after it, and under a route's timeout,
 * the stream idle timeout, as Envoy's (408, or the response cut: SI), the
 * route's timeout bounding it all. */
static void arm_attempt(struct ism_wctx *w, struct ism_stream *st)
{
	if (per_try_bounded(st))
		ism_stream_set_deadline(w, st, ISM_SDL_RESPONSE, st->rs.per_try_ms);
	else if (st->resp_head_done || st->route_timeout_ms)
		ism_stream_set_deadline(w, st, ISM_SDL_BODY, st->read_idle_ms);
	else
		ism_stream_set_deadline(w, st, ISM_SDL_RESPONSE, st->response_timeout_ms);
}

/* The time the attempt about to start has, as Envoy's router tells the
 * upstream: the per-try timeout when it is shorter than the route's, else the
 * route's, within what is left of the route's (at least 1 ms); 0: unbounded. */
static uint64_t expected_ms(const struct ism_wctx *w, const struct ism_stream *st)
{
	uint64_t route = st->route_timeout_ms, per = st->rs.per_try_ms;
	uint64_t ms = per && (route == 0 || per < route) ? per : route, left;

	if (route == 0 || ms == 0)
		return ms;
	if (st->route_deadline == 0) /* the request is not whole yet */
		return ms;
	left = st->route_deadline > w->now ? st->route_deadline - w->now : 1;
	return ms < left ? ms : left;
}

/* Writes the fields of the request in head that differ per attempt
 * (st->stamp) for the attempt about to start, in place of the last one's. */
static int stamp_attempt(struct ism_wctx *w, struct ism_stream *st, struct ism_buf *head)
{
	const uint32_t at = st->stamp_at, old = st->stamp_len;
	uint64_t ms = st->stamp & (ISM_STAMP_EXPECTED | ISM_STAMP_GRPC) ? expected_ms(w, st) : 0;
	char f[128];
	uint32_t n = 0;

	if (st->stamp & ISM_STAMP_COUNT) {
		memcpy(f, "x-envoy-attempt-count: 1\r\n", 26);
		n = 26;
		if (st->rs.tries > 0) {
			n = 23 + ism_fmt_num(f + 23, st->rs.tries + 1u, 10);
			f[n++] = '\r';
			f[n++] = '\n';
		}
	}
	if (ms && (st->stamp & ISM_STAMP_EXPECTED)) {
		memcpy(f + n, "x-envoy-expected-rq-timeout-ms: ", 32);
		n += 32;
		n += ism_fmt_num(f + n, ms, 10);
		f[n++] = '\r';
		f[n++] = '\n';
	}
	if (ms && (st->stamp & ISM_STAMP_GRPC)) {
		memcpy(f + n, "grpc-timeout: ", 14);
		n += 14;
		n += (uint32_t)ism_grpc_timeout_fmt(f + n, ms);
		f[n++] = '\r';
		f[n++] = '\n';
	}
	ISM_BUG_ON(head->len < at + old);
	if (n > old && ism_buf_reserve(head, n - old, UINT32_MAX) < 0)
		return -ENOMEM;
	memmove(head->p + at + n, head->p + at + old, head->len - at - old);
	memcpy(head->p + at, f, n);
	head->len = head->len - old + n;
	if (st->up_head_len != 0) /* a retry's: the head it sends */
		st->up_head_len = st->up_head_len - old + n;
	st->stamp_len = (uint16_t)n;
	return 0;
}

/* Which fields of the request differ per attempt: the attempt's number, and
 * the time it has when the route bounds it, unless the route's edits ed decide
 * that field (Envoy's router writes it before they apply). They go before the
 * blank line that ends head, written for the first attempt (and so in the
 * mirrors' copies); a retry writes them again (dispatch). */
static int stamp_setup(struct ism_wctx *w, struct ism_stream *st, const struct ism_req_edits *ed,
		       struct ism_buf *head)
{
	const struct ism_table *t = w->table;

	if (t->attempt_count)
		st->stamp |= ISM_STAMP_COUNT;
	if (t->debug_headers && (st->route_timeout_ms || st->rs.per_try_ms) &&
	    (ed->hdrs == NULL || !ism_act_drops(ed->hdrs, "x-envoy-expected-rq-timeout-ms", 30)))
		st->stamp |= ISM_STAMP_EXPECTED;
	if (st->stamp == 0)
		return 0;
	st->stamp_at = head->len - 2;
	return stamp_attempt(w, st, head);
}

/* The route's timeout for this request. Istio gives a gateway's routes
 * Envoy's max_grpc_timeout (their timeout, 0 for none): a gRPC request's is
 * the client's grpc-timeout, capped by the route's; without one (or with a
 * malformed one), the route's. 0: none. */
static uint32_t route_timeout(const struct ism_stream *st, const struct ism_route *r,
			      const struct ism_http_req *req)
{
	int64_t g = 0;

	if (!st->grpc)
		return r->timeout_ms;
	for (size_t i = 0; i < req->n_headers; i++)
		if (ism_http_header_is(&req->headers[i], "grpc-timeout"))
			g = ism_grpc_timeout_parse(req->headers[i].value,
						   req->headers[i].value_len);
	if (g < 0)
		g = 0;
	if (r->timeout_ms != 0 && (g == 0 || g > r->timeout_ms))
		g = r->timeout_ms;
	return g > UINT32_MAX ? UINT32_MAX : (uint32_t)g;
}

/* Starts an attempt: the request in head goes to endpoint ep of cluster cl,
 * over a pooled connection or a new one. head is taken. */
static void dispatch(struct ism_wctx *w, struct ism_stream *st, const struct ism_cluster *cl,
		     const struct ism_endpoint *ep, struct ism_buf *head)
{
	bool full = false;
	struct ism_upconn *u;

	if (st->stamp_at != 0 && st->rs.tries > 0 && stamp_attempt(w, st, head) < 0) {
		ism_stream_local(w, st, 503, "out of memory", false);
		return;
	}
	u = ism_up_start(w, st, cl, ep, head, st->l4, &full);

	if (u == NULL && full) {
		wait_for_connection(w, st, cl, head);
		return;
	}
	st->wait_deadline = 0;
	st->ep_id = ep->id;
	st->ep_inc = ism_up_ep_incarnation(w, ep->id);
	st->prev_ep = ep->id;
	st->ep = ep;
	st->up_errno = 0;
	st->up_tls_err = 0;
	ism_retry_tried(&st->rs, ep->id, ep->priority);
	atomic_fetch_add_explicit(&w->shm->hdr->eps[ep->id].inflight, 1, memory_order_relaxed);
	ism_up_held(w, ep->id, st->ep_inc)->inflight++;
	atomic_fetch_add_explicit(&w->shm->hdr->eps[ep->id].requests, 1, memory_order_relaxed);
	if (u == NULL) {
		ism_stream_local(w, st, 503, "upstream connect error", false);
		return;
	}
	st->up = u;
	st->state = ISM_ST_ATTEMPT;
	if (u->state == ISM_UP_CONNECTING)
		ism_stream_set_deadline(w, st, ISM_SDL_CONNECT, st->connect_timeout_ms);
	else
		arm_attempt(w, st);
}

/* Whether the stream waits for its next attempt: a retry's back-off, a wait
 * for a connection, a fault delay (the first attempt). */
static bool awaits_attempt(const struct ism_stream *st)
{
	switch ((enum ism_stream_state)st->state) {
	case ISM_ST_BACKOFF:
	case ISM_ST_WAITING:
	case ISM_ST_DELAY:
		return true;
	case ISM_ST_FREE:
	case ISM_ST_NEW:
	case ISM_ST_ATTEMPT:
	case ISM_ST_RESPONSE:
	case ISM_ST_LOCAL:
	case ISM_ST_ABANDONED:
	case ISM_ST_UPGRADE:
	case ISM_ST_TUNNEL:
	case ISM_ST_AUTHZ:
		return false;
	}
	ISM_BUG_ON(1);
	return false;
}

/* The next attempt: after a retry's back-off, a wait for a connection, or a
 * fault delay (the first attempt). */
static void do_retry(struct ism_wctx *w, struct ism_stream *st)
{
	const struct ism_cluster *cl = ism_stream_cluster(w, st);
	struct ism_buf head;
	int ei;

	if (!awaits_attempt(st) || st->waiting)
		return;
	/* Out of a fault delay: an answer made now goes at once (it would wait
	 * for the delay's end otherwise, which has come); the request counts
	 * in http2MaxRequests from now, as Envoy's router, after the fault
	 * filter, takes its slot. */
	bool first = st->state == ISM_ST_DELAY;

	if (first) {
		st->state = ISM_ST_NEW;
		if (cl != NULL && !st->rq_counted && !request_admitted(w, st, cl)) {
			ism_stream_local(w, st, 503, ISM_WHY_MAX_REQUESTS, false);
			return;
		}
	}
	/* A newer table without the cluster: Envoy's router, which sees the
	 * request after the delay, finds no cluster (NC); at a retry it
	 * answers that no upstream is healthy, where its TCP proxy's retry
	 * finds no cluster (NC). */
	ei = cl != NULL ? pick_endpoint(w, st) : -1;
	if (ei < 0 && cl == NULL && !first && !st->l4) {
		ism_stream_local(w, st, 503, ISM_WHY_NO_HEALTHY, false);
		return;
	}
	if (ei < 0) {
		no_endpoint(w, st, cl);
		return;
	}
	/* A request that could not be kept whole (no memory) is not sent in part. */
	if (st->replay.len == 0 && !st->l4) {
		ism_stream_local(w, st, 503, "request not kept for a retry", false);
		return;
	}
	head = st->replay;
	st->replay = (struct ism_buf){0};
	dispatch(w, st, cl, &cl->endpoints[ei], &head);
	ism_buf_free(&head);
}

/* An attempt failed before a usable response: tell outlier detection, then
 * retry if the policy allows, else answer as Envoy's router does: 503 for a
 * failed connect (UF), a closed connection (UC, why) or a reset stream (UR,
 * why), 504 for a timeout. */
static void attempt_failed(struct ism_wctx *w, struct ism_stream *st, enum ism_failure f,
			   const char *why)
{
	bool retry;

	if (f == ISM_FAIL_CONNECT && st->up != NULL) {
		st->up_errno = st->up->connect_err;
		st->up_tls_err = st->up->s.x.fail_err;
	}
	if (st->up != NULL)
		record_outcome(w, st, f, 0);
	retry = retry_possible(w, st, f, 0, -1);
	end_attempt(w, st);
	if (retry)
		schedule_retry(w, st);
	else if (f == ISM_FAIL_CONNECT)
		ism_stream_local(w, st, 503, "upstream connect error", false);
	else if (f == ISM_FAIL_TIMEOUT)
		ism_stream_local(w, st, 504, why != NULL ? why : ISM_WHY_ROUTE_TIMEOUT, false);
	else
		ism_stream_local(w, st, f == ISM_FAIL_PROTOCOL ? 502 : 503, why, false);
}

/* ---------- the end of an exchange ---------- */

/* Requests of the stream's cluster wait for a connection (in any worker): an
 * idle pooled connection would hold capacity they cannot use. */
static bool others_wait(struct ism_wctx *w, const struct ism_stream *st)
{
	const struct ism_cluster *cl = ism_stream_cluster(w, st);

	return cl != NULL && atomic_load_explicit(&cl->dyn->pending, memory_order_relaxed) > 0;
}

/* The response is all sent: the exchange ends whole, the session goes on. */
static void stream_finish(struct ism_wctx *w, struct ism_stream *st)
{
	struct ism_upconn *u = st->up;
	struct ism_sess *s = st->sess;
	void *sp = st->sp;

	od_settle(w, st, ISM_FAIL_NONE);
	ism_stream_count(w, st);
	ism_stream_log(w, st);
	retry_done(w, st);
	wait_remove(w, st);
	if (u != NULL) {
		ep_done(w, st, st->status >= 500);
		ism_up_release(w, st, st->req_done && !others_wait(w, st), st->pool_idle_ms);
	}
	stream_free(w, st);
	s->ops->stream_done(w, s, sp);
}

/* The upstream connection the response (or tunnel) came on, for the access
 * log: %UPSTREAM_CONNECTION_ID% and %UPSTREAM_LOCAL_ADDRESS%. */
static void log_upstream_conn(struct ism_wctx *w, struct ism_stream *st)
{
	const struct sockaddr *local;

	if (st->log_req == NULL || st->up == NULL)
		return;
	st->log_req->up_conn_id = st->up->conn_id;
	if (w->alog.wants_up_local &&
	    ((local = ism_up_local(st->up)) == NULL ||
	     !ism_addr_text(local, st->log_req->up_local, &st->log_req->up_local_port)))
		st->log_req->up_local[0] = '\0';
}

/* ---------- tunnels ---------- */

/* The stream's tunnel ends: its line is logged (a WebSocket's 101 was
 * counted when it went), its upstream connection closes. */
static void tunnel_finish(struct ism_wctx *w, struct ism_stream *st)
{
	retry_done(w, st);
	ism_stream_log(w, st);
	ism_tunnel_free(w, st->tun);
	if (st->up != NULL) {
		ep_done(w, st, false);
		ism_up_release(w, st, false, 0);
	}
	stream_free(w, st);
}

void ism_stream_tunnel_end(struct ism_wctx *w, struct ism_stream *st, const char *flags)
{
	struct ism_sess *s = st->sess;

	if (flags != NULL)
		st->flags = flags;
	s->st = NULL;
	tunnel_finish(w, st);
	ism_sess_close(w, s);
}

/* The exchange becomes a tunnel, bounded by idle_ms of silence and max_ms in
 * all (0: none); the route's timeout does not cut it (Istio). */
static void tunnel_start(struct ism_wctx *w, struct ism_stream *st, uint32_t idle_ms,
			 uint32_t max_ms, struct ism_l4counters *stats)
{
	st->route_deadline = st->route_timeout_ms = 0;
	ism_stream_set_deadline(w, st, ISM_SDL_NONE, 0);
	if (ism_tunnel_open(w, st, idle_ms, max_ms, stats) < 0) {
		stream_cut(w, st);
		return;
	}
	st->state = ISM_ST_TUNNEL;
}

/* The address the session's client connected to (ism_az_in.dest). */
static bool sess_dest(void *ctx, struct sockaddr_storage *out)
{
	const struct ism_sess_pp *pp = ism_sess_pp(ctx);

	if (pp == NULL)
		return false;
	memcpy(out, &pp->dst, sizeof(pp->dst));
	return true;
}

/* Whether the AuthorizationPolicies let the request (or with req NULL the
 * TCP connection) through; when they do not, st keeps Envoy's details of
 * the denial, and the caller answers (Envoy's RBAC filter comes before the
 * fault and CORS filters and the router). */
static struct ism_az_in az_in(struct ism_wctx *w, struct ism_stream *st,
			      const struct ism_http_req *req)
{
	struct ism_sess *s = st->sess;
	uint16_t port;

	/* ipBlocks: the socket's peer, whatever a PROXY header says (Envoy's
	 * direct_remote_ip, as Istio writes them); remoteIpBlocks: the client. */
	return (struct ism_az_in){.req = req,
				  .peer = ism_sess_direct_peer(s, &port),
				  .client = req != NULL ? ism_stream_client(st) : s->peer,
				  .sni = s->sni,
				  .ssl = ism_sess_tls(s) ? s->s.x.ssl : NULL,
				  .dest = sess_dest,
				  .ctx = s,
				  .rs = w->rs,
				  .jwt = ism_authn_claims(st->authn),
				  .jwt_by = st->authn != NULL ? st->authn->by : NULL};
}

static bool authorized(struct ism_wctx *w, struct ism_stream *st, const struct ism_http_req *req)
{
	const struct ism_az_policy *rule;
	struct ism_az_in in;
	const char *denied;

	if (!ism_authz_any(&w->table->authz, req != NULL))
		return true;
	in = az_in(w, st, req);
	denied = ism_authz_check(&w->table->authz, &in, &rule);
	if (denied == NULL)
		return true;
	ism_wstat_add(&w->st->authz_denied, 1);
	st->denied = strdup(denied);
	/* A connection's is its termination details (the log's
	 * %CONNECTION_TERMINATION_DETAILS%), a request's its response code
	 * details. */
	if (req != NULL)
		st->codec_details = st->denied;
	return false;
}

/* A TCP or TLS connection that gets no tunnel: it closes, and its stream's
 * line (st->flags says why) is logged as the session's close aborts it. */
static void l4_refused(struct ism_wctx *w, struct ism_stream *st, const char *why)
{
	ism_wstat_add(&w->st->tunnels_refused, 1);
	ism_debug("%s: connection closed: %s", st->sess->peer, why);
	ism_sess_close(w, st->sess);
}

/* Envoy's TCP proxy makes max_connect_attempts (1 unless set; Istio leaves it);
 * isthmus tries two more endpoints after a connect failure, as an HTTP route's
 * default retry policy does, the previous endpoint avoided. */
static const struct ism_retry l4_retry = {
    .attempts = 2,
    .retry_on = ISM_RETRY_CONNECT_FAILURE,
    .ignore_previous_hosts = 1,
    .backoff_base_ms = 25,
};

void ism_stream_l4(struct ism_wctx *w, struct ism_stream *st, const struct ism_l4route *r,
		   const char *why)
{
	const struct ism_table *t = w->table;
	const struct ism_dest *d;
	const struct ism_cluster *cl;
	struct ism_buf head = {0};
	int ei;

	st->l4 = 1;
	st->l4_stats = r != NULL ? r->stats : NULL;
	ism_stream_log_begin(w, st, NULL);
	if (!authorized(w, st, NULL)) {
		st->flags = ""; /* Envoy's RBAC filter closes without a flag */
		l4_refused(w, st, ISM_WHY_RBAC);
		return;
	}
	if (r == NULL) {
		st->flags = "NR";
		l4_refused(w, st, why != NULL ? why : "no route");
		return;
	}
	if (st->log_req != NULL)
		snprintf(st->log_req->route, sizeof(st->log_req->route), "%s", r->name.p);
	d = ism_router_pick_weighted(r->dest, r->n_dest, r->total_weight, ism_w_rand(w));
	if (d == NULL || d->cluster >= t->n_clusters) {
		ism_stream_local(w, st, 503, "no destination", false);
		return;
	}
	cl = &t->clusters[d->cluster];
	st->cluster = d->cluster;
	ism_retry_state_init(&st->rs, &l4_retry);
	ei = pick_endpoint(w, st);
	if (ei < 0) {
		no_endpoint(w, st, cl);
		return;
	}
	st->connect_timeout_ms = cl->connect_timeout_ms;
	dispatch(w, st, cl, &cl->endpoints[ei], &head);
	ism_buf_free(&head);
}

void ism_stream_abort(struct ism_wctx *w, struct ism_stream *st)
{
	if (st->state == ISM_ST_FREE || st->state == ISM_ST_ABANDONED)
		return;
	if (st->tun != NULL) {
		tunnel_finish(w, st);
		return;
	}
	st->od_pending = 0; /* cut short by the client, or told already */
	wait_remove(w, st);
	retry_done(w, st);
	/* A response whose head went is counted where it is cut (its status
	 * and its time to the cut), as one that ends whole is at its end. */
	if (st->resp_started)
		ism_stream_count(w, st);
	if (st->log_req != NULL) {
		/* An exchange cut short: by the client (its connection, its
		 * reset) unless a flag says who else (upstream_cut's). */
		if (st->flags == NULL)
			st->flags = "DC";
		ism_stream_log(w, st);
	}
	if (st->up != NULL) {
		/* The endpoint failed only where it cut the exchange. */
		ep_done(w, st, st->up_cut);
		ism_up_abort(w, st);
	}
	stream_free(w, st);
}

/* Part of the response is out and the exchange cannot end well: the stream
 * ends, and its session with it (only a close tells the client). */
static void stream_cut(struct ism_wctx *w, struct ism_stream *st)
{
	struct ism_sess *s = st->sess;
	void *sp = st->sp;

	ism_stream_abort(w, st);
	s->ops->abort(w, s, sp);
}

/* The upstream cut the response short once it began (as Envoy: a reset
 * after the head): its outlier outcome f, the endpoint's failure, the line's
 * flags unless set (UC: its connection closed); part of the response is out:
 * only a close tells the client. */
static void upstream_cut(struct ism_wctx *w, struct ism_stream *st, enum ism_failure f,
			 const char *flags)
{
	od_settle(w, st, f);
	if (st->flags == NULL)
		st->flags = flags;
	st->up_cut = 1;
	stream_cut(w, st);
}

/* ---------- answers made here (worker/answer.c makes them) ---------- */

struct ism_http_header *ism_stream_edit_fields(struct ism_wctx *w, const struct ism_hdr_edits *e,
					       const struct ism_http_header *in, size_t n,
					       size_t *n_out)
{
	size_t need = n + ism_act_n_values(e);
	bool there = in == w->act_hdrs;

	/* An answer without a field has its scratch too: NULL means no memory. */
	if (need == 0)
		need = 1;
	if (need > w->act_cap) {
		struct ism_http_header *h = realloc(w->act_hdrs, need * sizeof(*h));

		if (h == NULL)
			return NULL;
		w->act_hdrs = h;
		w->act_cap = need;
	}
	*n_out = ism_act_apply(e, there ? w->act_hdrs : in, n, w->act_hdrs, need);
	return w->act_hdrs;
}

void ism_stream_answer(struct ism_wctx *w, struct ism_stream *st, const struct ism_local *lr,
		       const char *flags)
{
	struct ism_local with_cors;

	if (st->state == ISM_ST_DELAY &&
	    (st->deferred != NULL || (st->deferred = ism_stream_defer(lr, flags)) != NULL))
		return;

	wait_remove(w, st);
	retry_done(w, st);
	ism_buf_free(&st->replay);
	if (lr->status >= 500)
		od_settle(w, st, ISM_FAIL_RESET);
	st->od_pending = 0;
	st->flags = flags;
	st->local_details = ism_stream_local_details(lr->status, lr->why);
	ep_done(w, st, lr->status >= 500);
	if (st->up != NULL)
		ism_up_abort(w, st);
	if (st->l4) {
		l4_refused(w, st, lr->why);
		return;
	}
	if (st->sending || st->resp_started) {
		/* Part of a response is already on the wire: all we can do is close. */
		stream_cut(w, st);
		return;
	}
	if (!st->mirror)
		ism_stream_count_status(w, lr->status);
	st->status = (uint16_t)lr->status;
	st->state = ISM_ST_LOCAL;
	st->resp_started = 1;
	st->resp_done = 1;
	ism_stream_set_deadline(w, st, ISM_SDL_NONE, 0);
	/* An allowed origin's request gets the CORS fields on every answer
	 * (Envoy's local replies pass its CORS filter too); without memory, it
	 * goes without them. */
	if (st->cors != NULL && !st->cors->preflight) {
		with_cors = *lr;
		with_cors.hdrs = ism_stream_edit_fields(w, &st->cors->edits, lr->hdrs, lr->n_hdrs,
							&with_cors.n_hdrs);
		if (with_cors.hdrs != NULL)
			lr = &with_cors;
	}
	if (w->alog.wants_resp && st->log_req != NULL)
		ism_stream_log_resp(w, st, lr->hdrs, lr->n_hdrs, false);
	if (st->sess->ops->local(w, st, lr) < 0) {
		stream_cut(w, st);
		return;
	}
	ism_stream_count(w, st);
	st->sending = 1;
}

/* ---------- fault delays ---------- */

/* The route's fault, drawn for this request (the delay and the abort each
 * with its own roll): a delay starts the stream's timer, the request waiting
 * in ISM_ST_DELAY, and whatever answers it meanwhile (the abort, drawn now
 * rather than after the delay, which is the same) waits for the delay's end.
 * True when the request is aborted. */
static bool stream_fault(struct ism_wctx *w, struct ism_stream *st, const struct ism_fault *f)
{
	uint32_t ms = ism_fault_delay_ms(f, ism_w_rand(w));
	bool aborts = ism_fault_aborts(f, ism_w_rand(w));

	if (ms != 0) {
		st->log_flags |= ISM_ALOG_DI;
		st->delay_end_ms = w->now + ms; /* delay_over says when it was */
		start_timer(w, st, ms);
		st->state = ISM_ST_DELAY;
	}
	if (aborts)
		ism_stream_fault_abort(w, st, f->abort_status, f->abort_grpc);
	return aborts;
}

/* A fault delay is over: the answer made meanwhile goes, or the request goes
 * out (as after a retry's back-off, its route timeout counted from now). */
static void delay_over(struct ism_wctx *w, struct ism_stream *st)
{
	st->delay_end_ms = w->now;
	if (!ism_stream_answer_deferred(w, st))
		do_retry(w, st);
}

/* ---------- the request ---------- */

void ism_stream_xff_client(uint32_t trusted, const struct ism_http_req *req,
			   char out[INET6_ADDRSTRLEN])
{
	const struct ism_http_header *xff = NULL;
	const char *p, *e, *s;
	uint32_t k = 0;

	out[0] = '\0';
	if (trusted == 0)
		return;
	for (size_t i = 0; i < req->n_headers; i++)
		if (req->headers[i].name_len == 15 &&
		    strncasecmp(req->headers[i].name, "x-forwarded-for", 15) == 0)
			xff = &req->headers[i];
	if (xff == NULL)
		return;
	for (e = xff->value + xff->value_len;; e = s - 1) {
		/* [s, e) is an element, right to left. */
		for (s = e; s > xff->value && s[-1] != ','; s--)
			;
		if (++k < trusted) {
			if (s == xff->value)
				return; /* fewer addresses than trusted hops */
			continue;
		}
		for (p = s; p < e && (*p == ' ' || *p == '\t'); p++)
			;
		while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if ((size_t)(e - p) < INET6_ADDRSTRLEN) {
			struct sockaddr_storage addr;
			uint16_t port;

			/* As Envoy writes it: inet_ntop's text (FD00:0:0::5 is
			 * fd00::5), in the headers, the log and the hash. */
			memcpy(out, p, (size_t)(e - p));
			out[e - p] = '\0';
			if (!ism_addr_parse(out, &addr, NULL) ||
			    !ism_addr_text((const struct sockaddr *)&addr, out, &port))
				out[0] = '\0';
		}
		return;
	}
}

static uint64_t addr_hash(const union ism_pp_addr *a, uint64_t seed)
{
	if (a->sa.sa_family == AF_INET6)
		return ism_hash64(&a->in6.sin6_port, 2, ism_hash64(&a->in6.sin6_addr, 16, seed));
	return ism_hash64(&a->in.sin_port, 2, ism_hash64(&a->in.sin_addr, 4, seed));
}

/* The value of a cookie issued on st's connection: the same for each of its
 * requests, as Envoy's (a hash of the client's address and the one it
 * connected to), so that parallel first requests share one endpoint. */
static uint64_t cookie_value(struct ism_wctx *w, struct ism_stream *st)
{
	struct ism_sess_pp *pp = st->sess != NULL ? ism_sess_pp(st->sess) : NULL;

	if (pp == NULL || pp->src.sa.sa_family == AF_UNSPEC)
		return (uint64_t)ism_w_rand(w) << 32 | ism_w_rand(w);
	return addr_hash(&pp->dst, addr_hash(&pp->src, 0));
}

/* httpCookie with a ttl: a request without the cookie gets one, so that its
 * next requests hash to the same endpoint (Istio's consistentHash.httpCookie),
 * written as Envoy writes it: the value quoted, Max-Age in whole seconds
 * unless the ttl is under 1 s (a session cookie), Path when one is given, the
 * attributes, HttpOnly. */
static void issue_cookie(struct ism_wctx *w, struct ism_stream *st, const struct ism_cluster *cl)
{
	const struct ism_hash_policy *hp = &cl->hash;
	char value[17], age[24] = "";
	int n;

	if (hp->on != ISM_HASH_COOKIE || !hp->issue_cookie)
		return;
	snprintf(value, sizeof(value), "%016" PRIx64, cookie_value(w, st));
	/* Whole seconds, as Envoy takes the ttl: under 1 s, a session cookie. */
	if (hp->cookie_ttl_ms >= 1000)
		snprintf(age, sizeof(age), "; Max-Age=%u", hp->cookie_ttl_ms / 1000);
	free(st->set_cookie);
	n = asprintf(&st->set_cookie, "%s=\"%s\"%s%s%s%s; HttpOnly", hp->name.p, value, age,
		     hp->cookie_path.len ? "; Path=" : "", hp->cookie_path.p, hp->cookie_attrs.p);
	if (n < 0) {
		st->set_cookie = NULL;
		return;
	}
	st->hash = ism_hash64(value, strlen(value), 0);
	st->has_hash = 1;
}

/* What the request's head and the session say about it, for the stream and
 * its log line. */
/* Several X-Forwarded-For fields are one list, as Envoy's header map joins
 * an inline header's repeats (with ","): the first field takes the joined
 * value (in st->xff), the others leave req. Else the last one alone (a proxy
 * that adds a field per hop) named the client to numTrustedProxies, and the
 * upstream got that one only. Without memory, the first alone stays. */
static void join_xff(struct ism_stream *st, struct ism_http_req *req)
{
	struct ism_http_header *first = NULL;
	bool joined = true;
	size_t k = 0;

	for (size_t i = 0; i < req->n_headers; i++) {
		struct ism_http_header *h = &req->headers[i];

		if (!ism_http_header_is(h, "x-forwarded-for")) {
			req->headers[k++] = *h;
			continue;
		}
		if (first == NULL) {
			req->headers[k++] = *h;
			first = &req->headers[k - 1];
			continue;
		}
		if (joined &&
		    ((st->xff.len == 0 &&
		      ism_buf_append(&st->xff, first->value, (uint32_t)first->value_len,
				     UINT32_MAX) < 0) ||
		     ism_buf_append(&st->xff, ",", 1, UINT32_MAX) < 0 ||
		     ism_buf_append(&st->xff, h->value, (uint32_t)h->value_len, UINT32_MAX) < 0)) {
			ism_buf_free(&st->xff);
			joined = false;
		}
	}
	req->n_headers = k;
	if (joined && st->xff.len > 0) {
		first->value = st->xff.p;
		first->value_len = st->xff.len;
	}
}

static void request_begin(struct ism_wctx *w, struct ism_stream *st, struct ism_http_req *req)
{
	const struct ism_table *t = w->table;
	uint16_t l = st->sess->listener;

	st->lis_stats = l < t->n_listeners ? t->listeners[l].stats : NULL;
	if (req != NULL) {
		ism_wstat_add(&w->st->requests, 1);
		join_xff(st, req);
		ism_stream_xff_client(t->trusted_proxies, req, st->xff_client);
	}
	ism_stream_log_begin(w, st, req);
}

void ism_stream_refused_head(struct ism_wctx *w, struct ism_sess *s, uint64_t wire,
			     const char *details)
{
	struct ism_stream *st = ism_stream_new(w, s);

	if (st == NULL)
		return;
	ism_stream_log_begin(w, st, NULL);
	st->meter[ISM_M_DOWN_HEAD_IN] = st->meter[ISM_M_DOWN_WIRE_IN] = wire;
	st->codec_details = details;
	st->flags = "DPE";
	ism_stream_abort(w, st);
}

void ism_stream_refuse(struct ism_wctx *w, struct ism_stream *st, struct ism_http_req *req,
		       int status, const char *why)
{
	/* Answered here already (a 404, a 413 on the declared length): what
	 * the client sends after does not make a second answer, which would
	 * cut the first short. */
	if (st->state == ISM_ST_LOCAL)
		return;
	if (st->state == ISM_ST_NEW)
		request_begin(w, st, req);
	ism_stream_local(w, st, status, why, true);
}

/* Whether session s (TLS to an HTTPS server) would be taken as its server
 * takes a client now: a reload that changed what it asks of clients (SIMPLE
 * became MUTUAL, another CA), left no server for its SNI or made it one of
 * tcp routes leaves its earlier connections unserved (421: a client tries
 * again on a new connection, as RFC 9110 says), as the peers' connections of
 * an old configuration never get a new one's routes. */
/* The HTTPS server of session s's SNI in table t (found again for each
 * request: a reload may have reordered them); -1: none, or not HTTPS. */
static int32_t tls_server_of(const struct ism_table *t, const struct ism_sess *s)
{
	const struct ism_listener *l = &t->listeners[s->listener];

	return l->n_tls ? ism_router_pick_server(l, s->sni ? s->sni : "") : -1;
}

static bool taken_as_now(const struct ism_table *t, struct ism_stream *st)
{
	const struct ism_sess *s = st->sess;
	const struct ism_listener *l = &t->listeners[s->listener];
	int32_t i = st->tls_server = tls_server_of(t, s);

	if (l->n_tls == 0)
		return true;
	return s->s.x.ssl == NULL || (i >= 0 && !l->tls[i].passthrough && !l->tls[i].tcp &&
				      l->tls[i].tls.peer_auth == s->peer_auth);
}

/* The virtual host of the request: on an HTTPS port, among those of the server
 * the SNI chose (taken_as_now). */
static const struct ism_vhost *request_vhost(const struct ism_listener *l,
					     const struct ism_stream *st,
					     const struct ism_http_req *req)
{
	const char *host = req->host ? req->host : "";
	size_t host_len = req->host ? req->host_len : 0;
	const struct ism_tls_server *ts =
	    l->n_tls && st->tls_server >= 0 ? &l->tls[st->tls_server] : NULL;

	if (l->n_tls)
		return ts != NULL ? ism_router_vhost(ts->vhosts, ts->n_vhosts, &ts->vhost_index,
						     host, host_len)
				  : NULL;
	return ism_router_vhost(l->vhosts, l->n_vhosts, &l->vhost_index, host, host_len);
}

/* ---------- a route's actions ---------- */

/* The path rewrite of route action a: req's path becomes the one the upstream
 * gets, ed the original. false when the stream was answered instead. */
static bool rewrite_path(struct ism_wctx *w, struct ism_stream *st,
			 const struct ism_route_actions *a, struct ism_http_req *req,
			 struct ism_req_edits *ed)
{
	const uint32_t limit = w->table->limits.max_request_header_bytes;
	struct ism_buf *orig = &w->act_orig, *np = &w->act_path;
	int n;

	orig->len = 0;
	if (ism_buf_append(orig, req->path, (uint32_t)req->path_len, limit) < 0 ||
	    (req->query != NULL &&
	     (ism_buf_append(orig, "?", 1, limit) < 0 ||
	      ism_buf_append(orig, req->query, (uint32_t)req->query_len, limit) < 0))) {
		ism_stream_local(w, st, 500, "path too long to rewrite", false);
		return false;
	}
	n = ism_act_rewrite_path(w->rs, &a->path, st->route_match, req->path, req->path_len,
				 req->query, req->query_len, limit, np);
	if (n == -ENODATA)
		return true;
	if (n == -EAGAIN)
		ism_wstat_add(&w->st->regex_limit, 1);
	if (n < 0) {
		ism_stream_local(w, st, 500,
				 n == -EAGAIN ? "rewrite regex reached its match limit"
					      : "rewritten path too long",
				 false);
		return false;
	}
	ed->orig_path = orig->p;
	ed->orig_len = orig->len;
	req->path = req->target = np->p;
	req->path_len = (size_t)n;
	req->target_len = np->len;
	return true;
}

/* What route r and its destination d change in the request (req changed in
 * place, ed what the head adds), as Envoy's router does before the request
 * goes; the access log shows the request so changed. false when the stream
 * was answered instead. */
static bool request_actions(struct ism_wctx *w, struct ism_stream *st, const struct ism_route *r,
			    const struct ism_dest *d, struct ism_http_req *req,
			    struct ism_req_edits *ed)
{
	const struct ism_dest_actions *da = d->act;

	/* The request's edits first, as Envoy's finalizeRequestHeaders makes
	 * them before it rewrites the host and the path: their %REQ(:PATH)%
	 * and %REQ(:AUTHORITY)% are the request's own. */
	if (da != NULL && da->req.n > 0 &&
	    (ed->hdrs = ism_hval_edits(w, st, req, r, &da->req, 0, &ed->made)) == NULL) {
		ism_stream_local(w, st, 503, "out of memory", false);
		return false;
	}
	if (r->act != NULL && r->act->path.kind != ISM_PATH_KEEP &&
	    !rewrite_path(w, st, r->act, req, ed))
		return false;
	if (da != NULL && da->authority.len > 0) {
		if (w->table->xf_host && req->host != NULL && req->host_len > 0) {
			ed->xfh = req->host;
			ed->xfh_len = req->host_len;
		}
		req->host = da->authority.p;
		req->host_len = da->authority.len;
	}
	if (da != NULL && da->resp.n > 0) {
		struct ism_hval_ctx c = {.w = w, .st = st, .req = req, .r = r, .later = true};

		/* Its values are made now: the operators' values are the
		 * request's, and a reload may release the table meanwhile;
		 * those of the response's operators once it comes (resp_edited). */
		st->resp_edits =
		    ism_act_edits_dup(&da->resp, da->resp.dynamic ? ism_hval : NULL, &c);
		if (st->resp_edits == NULL) {
			ism_stream_local(w, st, 503, "out of memory", false);
			return false;
		}
		st->route_server = ism_act_edit(st->resp_edits, "server", 6) != NULL;
		st->route_svc_time = ism_act_edit(st->resp_edits, ISM_SVC_TIME_NAME,
						  sizeof(ISM_SVC_TIME_NAME) - 1) != NULL;
	}
	/* Without memory, the line shows the request as it came. */
	if (st->log_req != NULL)
		ism_alog_rewritten(&st->log_req, w->alog.headers, w->alog.named, req, ed->hdrs,
				   ed->orig_path, ed->orig_len);
	return true;
}

/* The route's timeout runs from the end of the request (after a fault
 * delay, from the delay's end), as Envoy's router starts its global timer
 * once the request is complete (onRequestComplete): until then an upload or
 * a client's stream is bounded by the body's idle timeout. Where an attempt
 * runs or waits, its deadline comes no later. */
static void route_clock(struct ism_wctx *w, struct ism_stream *st)
{
	uint64_t from = w->now;

	if (st->route_timeout_ms == 0 || st->route_deadline != 0 || !st->req_done)
		return;
	if (st->state == ISM_ST_DELAY && st->delay_end_ms > from)
		from = st->delay_end_ms;
	st->route_deadline = from + st->route_timeout_ms;
	if ((st->state != ISM_ST_ATTEMPT && st->state != ISM_ST_RESPONSE &&
	     st->state != ISM_ST_WAITING) ||
	    (st->deadline != 0 && st->deadline <= st->route_deadline))
		return;
	if (!st->waiting) /* the wait's expiry tells the two apart itself */
		st->deadline_kind = ISM_SDL_RESPONSE;
	st->deadline = st->route_deadline;
	wake_at(w, st->deadline);
}

/* Whether an upgrade request asks for WebSocket (its Upgrade, any case). */
static bool websocket_upgrade(const struct ism_http_req *req)
{
	for (size_t i = 0; i < req->n_headers; i++)
		if (ism_http_header_is(&req->headers[i], "upgrade"))
			return req->headers[i].value_len == 9 &&
			       strncasecmp(req->headers[i].value, "websocket", 9) == 0;
	return false;
}

/* Whether the request's body is all read (done), and when it was: where
 * x-envoy-upstream-service-time counts from, as Envoy's router does, and the
 * route's timeout (route_clock). */
static void req_ends(struct ism_wctx *w, struct ism_stream *st, bool done)
{
	bool ends = done && !st->req_done;

	st->req_done = done;
	if (ends) {
		st->req_end_ms = w->now;
		route_clock(w, st);
	}
}

/* Whether the request's scheme is https, as Envoy's connection manager
 * decides it for an Istio gateway: the connection's, unless
 * gatewayTopology.numTrustedProxies trusts the proxies in front, whose
 * X-Forwarded-Proto then says it (a proxy that terminated TLS sends plain
 * HTTP). Envoy keeps that field, and its require_tls (httpsRedirect), scheme
 * matches and redirects read the scheme from it. */
static bool request_https(const struct ism_table *t, struct ism_sess *s,
			  const struct ism_http_req *req)
{
	for (size_t i = 0; t->trusted_proxies > 0 && i < req->n_headers; i++)
		if (ism_http_header_is(&req->headers[i], "x-forwarded-proto"))
			return req->headers[i].value_len == 5 &&
			       memcmp(req->headers[i].value, "https", 5) == 0;
	return ism_sess_tls(s);
}

/* ---------- gRPC-Web ---------- */

int ism_stream_grpc_answer(const struct ism_stream *st, const struct ism_local *lr,
			   struct ism_buf *b, struct ism_http_header **out)
{
	const char *ct = st->gw != NULL ? ism_gw_content_type(st->gw->flags) : "application/grpc";
	const struct ism_http_header *own = ism_http_field(lr->hdrs, lr->n_hdrs, "grpc-status", 11);
	uint32_t len = lr->body != NULL ? lr->body_len : 0;
	char gs[24];
	size_t cap;

	/* A grpc-status the answer was made with (a route's response edit)
	 * stays, as in Envoy's local reply; else lr's, else Envoy's mapping. */
	if (own != NULL)
		snprintf(gs, sizeof(gs), "%.*s", (int)own->value_len, own->value);
	else if (lr->grpc_status != NULL)
		snprintf(gs, sizeof(gs), "%s", lr->grpc_status);
	else
		snprintf(gs, sizeof(gs), "%d", ism_http_to_grpc(lr->status));
	/* The body's text is the message (none for an empty body, nor for a
	 * HEAD request: then one the answer was made with stays); the line
	 * isthmus writes for its own reason goes without its newline, as
	 * Envoy's reasons have none. */
	if (len == strlen(lr->why) + 1 && lr->body[len - 1] == '\n' &&
	    memcmp(lr->body, lr->why, len - 1) == 0)
		len--;
	if (ism_grpc_error_fields(ct, gs, lr->hdrs, lr->n_hdrs, lr->body, len,
				  len > 0 && !st->is_head, b) < 0)
		return -ENOMEM;
	cap = lr->n_hdrs + 3;
	*out = malloc(cap * sizeof(**out));
	if (*out == NULL)
		return -ENOMEM;
	return (int)ism_buf_get_pairs(b, *out, cap);
}

/* Body bytes of a gRPC-Web text request decoded (*p, *len: the base64 that
 * came, from ring buffer *bid, given back; req: the head's fields, or NULL
 * after it): in the stream's buffer. false when the stream answered instead
 * (what came is not base64). */
static bool gw_decode(struct ism_wctx *w, struct ism_stream *st, struct ism_http_req *req,
		      const char **p, uint32_t *len, int *bid, bool done)
{
	struct ism_gw *g = st->gw;
	int ret;

	g->buf.len = 0;
	ret = ism_gw_decode(&g->in, *p, *len, done, &g->buf);
	if (*bid >= 0)
		ism_w_buf_recycle(w, *bid);
	*bid = -1;
	*p = g->buf.p;
	*len = g->buf.len;
	if (ret == 0)
		return true;
	/* Envoy's answer (its body, as grpc-message here: a gRPC error). */
	ism_stream_refuse(w, st, req, ret == -ENOMEM ? 503 : 400,
			  ret == -ENOMEM ? "out of memory" : ISM_WHY_GW_BASE64);
	return false;
}

/* The request with fields req is gRPC-Web's: it becomes gRPC (its fields in
 * place, its body, len bytes of which came with the head, decoded), the
 * stream keeps what the response needs. false when the stream answered. */
static bool gw_request(struct ism_wctx *w, struct ism_stream *st, struct ism_http_req *req,
		       const char **body, uint32_t *len, bool done)
{
	uint8_t flags = ism_gw_request(req->headers, req->n_headers);
	int bid = -1;

	if (flags == 0)
		return true;
	st->gw = calloc(1, sizeof(*st->gw));
	if (st->gw == NULL) {
		ism_stream_refuse(w, st, req, 503, "out of memory");
		return false;
	}
	st->gw->flags = flags;
	st->grpc = 1;
	ism_gw_request_fields(req->headers, &req->n_headers, ISM_MAX_HDRS);
	/* No length: the decoded body's differs (Envoy removes it for every
	 * gRPC-Web request); an HTTP/1.1 upstream gets the body chunked. */
	if (req->framing.content_length > 0)
		req->framing.chunked = 1;
	req->framing.content_length = -1;
	if (!(flags & ISM_GW_TEXT_IN))
		return true;
	return gw_decode(w, st, req, body, len, &bid, done);
}

/* A piece of a gRPC-Web response's body as the client gets it (*p, *len, from
 * ring buffer *bid): base64 for a text response, the trailers frame after the
 * last piece. 0 or -ENOMEM. */
static int gw_response_data(struct ism_wctx *w, struct ism_stream *st, const char **p,
			    uint32_t *len, int *bid, bool done)
{
	struct ism_gw *g = st->gw;
	int ret;

	if (!(g->flags & ISM_GW_TEXT_OUT) && !(done && g->trl.len > 0))
		return 0; /* as it is */
	g->buf.len = 0;
	if (g->flags & ISM_GW_TEXT_OUT) {
		ret = ism_gw_encode(&g->out, *p, *len, false, &g->buf);
		if (done)
			ret |= ism_gw_encode(&g->out, g->trl.p, g->trl.len, true, &g->buf);
	} else {
		ret = ism_buf_append(&g->buf, *p, *len, UINT32_MAX);
		ret |= ism_buf_append(&g->buf, g->trl.p, g->trl.len, UINT32_MAX);
	}
	if (*bid >= 0)
		ism_w_buf_recycle(w, *bid);
	*bid = -1;
	*p = g->buf.p;
	*len = g->buf.len;
	return ret < 0 ? -ENOMEM : 0;
}

/* req without its Expect fields. */
static void drop_expect(struct ism_http_req *req)
{
	size_t n = 0;

	for (size_t i = 0; i < req->n_headers; i++)
		if (!ism_http_header_is(&req->headers[i], "expect"))
			req->headers[n++] = req->headers[i];
	req->n_headers = n;
}

/* The request's first steps, whatever its route: a gRPC one is known as
 * such, its path is normalised, its log line begun, an Expect: 100-continue
 * answered. false when the stream answered. */
static bool request_start(struct ism_wctx *w, struct ism_stream *st, struct ism_http_req *req,
			  bool req_done)
{
	const struct ism_table *t = w->table;
	int ret;

	/* Known first: a refused request gets a gRPC error too, and a refused
	 * HEAD no body. */
	st->is_head = ism_http_is_head(req);
	/* Answered here (below), as Envoy's connection manager answers it and
	 * removes the field before anything sees the request: routes, policies,
	 * checks and the access log do not, the upstream does not. */
	if (req->framing.expect_continue)
		drop_expect(req);
	for (size_t i = 0; i < req->n_headers; i++)
		if (ism_http_header_is(&req->headers[i], "content-type") &&
		    ism_http_grpc_type(req->headers[i].value, req->headers[i].value_len))
			st->grpc = 1;
	ret = ism_router_normalize(w->rs, t->path_norm, req);
	if (ret < 0) {
		ism_stream_refuse(w, st, req, ret == -ENOMEM ? 503 : 400,
				  ret == -ENOMEM ? "out of memory" : ISM_WHY_BAD_PATH);
		return false;
	}
	request_begin(w, st, req);
	/* Envoy's connection manager answers Expect: 100-continue itself,
	 * before its filters, and counts the 100 as its and the listener's
	 * 1xx. */
	if (req->framing.expect_continue && st->sess->ops->cont(w, st)) {
		ism_stream_count_status(w, 100);
		if (st->lis_stats != NULL)
			atomic_fetch_add_explicit(&st->lis_stats->responses[1], 1,
						  memory_order_relaxed);
	}
	st->http10 = req->minor_version == 0;
	st->route_server = st->route_svc_time = 0;
	st->idempotent = ism_http_method_idempotent(req->method, req->method_len);
	req_ends(w, st, req_done);
	st->req_chunked = req->framing.chunked;
	return true;
}

/* The request's virtual host (*vh) and route (https: its scheme; NULL: none,
 * and *undecided when a regex could not decide within its bound), found as
 * Envoy's connection manager finds them before its filters run (the log names
 * the route of a request they answer). Inline: with the JWT check's second
 * call, GCC kept it out of line, 23 instructions a request more (callgrind),
 * and with the route's match kept, always. */
static inline __attribute__((always_inline)) const struct ism_route *
request_lookup(struct ism_wctx *w, struct ism_stream *st, const struct ism_http_req *req,
	       bool https, const struct ism_vhost **vh, bool *undecided)
{
	const struct ism_listener *l = &w->table->listeners[st->sess->listener];
	const struct ism_route *r;

	*vh = request_vhost(l, st, req);
	r = *vh ? ism_router_route(*vh, req, https ? "https" : "http", l->port, w->rs) : NULL;
	st->route_stats = r ? r->stats : NULL;
	st->route_match = ism_router_matched(w->rs);
	if (r != NULL && st->log_req != NULL)
		snprintf(st->log_req->route, sizeof(st->log_req->route), "%s", r->name.p);
	*undecided = r == NULL && ism_router_limit_hit(w->rs);
	return r;
}

/* Route r of virtual host vh (request_lookup's, with undecided), unless the
 * request is answered before the router would forward it: the https
 * redirect; no route; the route's fault, CORS preflight, redirect or direct
 * response. NULL when the stream answered. */
static const struct ism_route *request_route(struct ism_wctx *w, struct ism_stream *st,
					     const struct ism_http_req *req, bool https,
					     const struct ism_vhost *vh, const struct ism_route *r,
					     bool undecided)
{
	const struct ism_listener *l = &w->table->listeners[st->sess->listener];

	if (vh != NULL && vh->https_redirect && !https) {
		ism_stream_https_redirect(w, st, req);
		return NULL;
	}
	if (undecided) {
		/* Not "no route": a regex could not decide within its bound. */
		ism_wstat_add(&w->st->regex_limit, 1);
		ism_stream_local(w, st, 500, "route regex reached its match limit", false);
		return NULL;
	}
	if (r == NULL) {
		ism_stream_local(w, st, 404, "no route", false);
		return NULL;
	}
	/* Envoy's order: the fault filter, the CORS filter, then the router
	 * (whose are the redirects and direct responses). The CORS filter does
	 * nothing on a redirect or a direct response (no route entry there). */
	if (r->fault != NULL && stream_fault(w, st, r->fault))
		return NULL;
	if (r->cors != NULL && ism_route_forwards(r) && ism_stream_cors(w, st, r->cors, req))
		return NULL;
	switch ((enum ism_route_kind)(r->act != NULL ? r->act->kind : ISM_ROUTE_FORWARD)) {
	case ISM_ROUTE_REDIRECT:
		ism_stream_redirect(w, st, r, req, l->port, https);
		return NULL;
	case ISM_ROUTE_DIRECT:
		ism_stream_direct_response(w, st, r, req, l->port, https);
		return NULL;
	case ISM_ROUTE_FORWARD:
		break;
	}
	return r;
}

/* Route r's destination for the request, and an endpoint of its cluster
 * (*ei), with what the attempts need: the retry policy, the hash key, the
 * upstream's SNI, the timeouts. NULL when the stream answered (no
 * destination, an overflow, no healthy endpoint). */
static const struct ism_dest *request_upstream(struct ism_wctx *w, struct ism_stream *st,
					       const struct ism_route *r,
					       const struct ism_http_req *req, int *ei)
{
	const struct ism_table *t = w->table;
	const struct ism_dest *d = ism_router_pick(r, ism_w_rand(w));
	const struct ism_cluster *cl;

	if (d == NULL || d->cluster >= t->n_clusters) {
		ism_stream_local(w, st, 503, "no destination", false);
		return NULL;
	}
	cl = &t->clusters[d->cluster];
	st->cluster = d->cluster;
	/* A request a fault delays is admitted when the delay ends (do_retry). */
	if (st->state != ISM_ST_DELAY && !request_admitted(w, st, cl)) {
		ism_stream_local(w, st, 503, ISM_WHY_MAX_REQUESTS, false);
		return NULL;
	}
	/* HTTP/2 frames the body itself: it goes as it came, never chunked. */
	if (ism_h2up_wanted(st, cl))
		st->req_chunked = 0;
	ism_retry_state_init(&st->rs, &r->retry);
	if (cl->lb == ISM_LB_RING_HASH || cl->lb == ISM_LB_MAGLEV) {
		st->has_hash =
		    (uint8_t)ism_hash_key(&cl->hash, req, ism_stream_client(st), w->rs, &st->hash);
		if (!st->has_hash)
			issue_cookie(w, st, cl);
	}
	*ei = pick_endpoint(w, st);
	if (*ei < 0) {
		no_endpoint(w, st, cl);
		return NULL;
	}
	if (cl->tls.mode != ISM_TLS_NONE) {
		/* Upstream SNI by default: the request's host, without its port. */
		if (req->host != NULL)
			snprintf(st->up_sni, sizeof(st->up_sni), "%.*s",
				 (int)ism_host_len(req->host, req->host_len), req->host);
		else
			snprintf(st->up_sni, sizeof(st->up_sni), "%s", cl->host.p);
	}
	st->connect_timeout_ms = cl->connect_timeout_ms;
	st->pool_idle_ms = cl->idle_timeout_ms;
	st->response_timeout_ms = t->timeouts.upstream_response_ms;
	st->route_timeout_ms = route_timeout(st, r, req);
	st->route_deadline = 0;
	route_clock(w, st); /* a request whole already: from now */
	return d;
}

/* A request whose JWT a provider refused: Envoy's jwt_authn answer, the
 * status's text and WWW-Authenticate with the request's URL (its path cut at
 * 256 bytes), no flag, details "jwt_authn_access_denied{<text, spaces as
 * _>}". */
static void jwt_refused(struct ism_wctx *w, struct ism_stream *st, const struct ism_http_req *req,
			bool https, enum ism_jwt_status s)
{
	const char *text = ism_jwt_status_text(s);
	char path[257], realm[640], details[160];
	struct ism_http_header h = {.name = "www-authenticate", .name_len = 16, .value = realm};
	int n;

	snprintf(path, sizeof(path), "%.*s%s%.*s", (int)req->path_len, req->path,
		 req->query != NULL ? "?" : "", (int)req->query_len,
		 req->query != NULL ? req->query : "");
	n = snprintf(realm, sizeof(realm), "Bearer realm=\"%s://%.*s%s\"%s",
		     https ? "https" : "http",
		     req->host != NULL ? (int)(req->host_len < 256 ? req->host_len : 256) : 0,
		     req->host != NULL ? req->host : "", path,
		     s != ISM_JWT_MISSED ? ", error=\"invalid_token\"" : "");
	h.value_len = n < (int)sizeof(realm) ? (size_t)n : sizeof(realm) - 1;
	snprintf(details, sizeof(details), "jwt_authn_access_denied{%s}", text);
	for (char *p = details; *p != '\0'; p++)
		if (*p == ' ')
			*p = '_';
	ism_wstat_add(&w->st->jwt_denied, 1);
	st->denied = strdup(details);
	st->codec_details = st->denied;
	ism_stream_error(w, st, ism_authn_http_status(s), text, false, &h, 1);
}

/* The request's JWTs checked (a RequestAuthentication applies): Envoy's
 * jwt_authn filter comes before its RBAC filters. false when refused (the
 * stream answered). With fields added, or a verified token whose claims a
 * route may match, the route is found again (*vh, *r, *undecided), as
 * istiod has a gateway's jwt_authn filter clear the route cache. */
static bool authenticated(struct ism_wctx *w, struct ism_stream *st, struct ism_http_req *req,
			  bool https, const struct ism_vhost **vh, const struct ism_route **r,
			  bool *undecided)
{
	st->authn = ism_authn_check(w, req);
	if (st->authn == NULL) {
		ism_stream_local(w, st, 503, "out of memory", false);
		return false;
	}
	if (st->authn->status != ISM_JWT_OK) {
		jwt_refused(w, st, req, https, st->authn->status);
		return false;
	}
	if (st->authn->added || (st->authn->by != NULL && w->table->jwt.routes)) {
		ism_router_set_claims(w->rs, ism_authn_claims(st->authn), st->authn->by);
		*r = request_lookup(w, st, req, https, vh, undecided);
		ism_router_set_claims(w->rs, NULL, NULL);
	}
	return true;
}

/* Whether a CUSTOM policy's provider checks the request: it is kept, and
 * goes on (ism_stream_authz_allow) or is answered when the check ends;
 * istiod puts Envoy's ext_authz filter first, before jwt_authn and the RBAC
 * filters, so a CUSTOM rule sees no verified token. */
static bool authz_checks(struct ism_wctx *w, struct ism_stream *st, struct ism_http_req *req,
			 bool https, const struct ism_vhost *vh, const struct ism_route *r,
			 bool undecided, const char *body, uint32_t len, bool req_done)
{
	struct ism_az_in in = az_in(w, st, req);
	struct ism_xa_wait *x;

	if (!ism_authz_custom(&w->table->authz, &in))
		return false;
	x = ism_extauthz_keep(w, st, req, body, len, req_done);
	if (x != NULL) {
		x->https = https;
		x->vh = vh;
		x->r = r;
		x->undecided = undecided;
	}
	if (x == NULL || ism_extauthz_send(w, st) < 0)
		ism_stream_local(w, st, 503, "out of memory", false);
	return true;
}

void ism_stream_request(struct ism_wctx *w, struct ism_stream *st, struct ism_http_req *req,
			const char *body, uint32_t len, bool req_done)
{
	bool https, undecided;
	const struct ism_vhost *vh;
	const struct ism_route *r;
	const struct ism_dest *d;
	const struct ism_cluster *cl;
	struct ism_req_edits ed = {0};
	struct ism_buf head = {0};
	int ei = -1, ret;

	if (st->xa != NULL) {
		/* Its CUSTOM check let it through (ism_stream_authz_allow): it
		 * goes on from Envoy's jwt_authn filter, as it was routed. */
		https = st->xa->https;
		vh = st->xa->vh;
		r = st->xa->r;
		undecided = st->xa->undecided;
	} else {
		https = request_https(w->table, st->sess, req);
		/* Without a trusted proxy the scheme is the connection's. */
		req->edge_xfp = (w->table->trusted_proxies == 0 ? https : ism_sess_tls(st->sess))
				    ? "https"
				    : "http";
		req->edge_peer = st->sess->peer;
		req->xfp_trusted = w->table->trusted_proxies > 0;
		/* Made now, the upstream's and the log's (a client's kept one
		 * wins where preserveExternalRequestId says so). */
		st->rid[0] = '\0';
		if (w->table->request_id)
			ism_up_request_id(w, st->rid);
		req->edge_rid = st->rid[0] != '\0' ? st->rid : NULL;
		req->rid_kept = w->table->preserve_rid;
		if (!request_start(w, st, req, req_done))
			return;
		if (!taken_as_now(w->table, st)) {
			ism_stream_local(w, st, 421, ISM_WHY_MISDIRECTED, true);
			return;
		}
		/* Envoy's connection manager takes relative paths only: another
		 * ("*" of "OPTIONS *", an HTTP/2 :path "a") is 404. */
		if ((req->path_len == 0 || req->path[0] != '/') &&
		    !(req->method_len == 7 && memcmp(req->method, "CONNECT", 7) == 0)) {
			ism_stream_local(w, st, 404, ISM_WHY_ABSOLUTE_PATH, false);
			return;
		}
		r = request_lookup(w, st, req, https, &vh, &undecided);
		/* Envoy's connection manager: on a route, an upgrade other than
		 * WebSocket (Istio's only upgrade_configs entry) is 403, and the
		 * connection closes (no upgrade payload is read as requests). */
		if (r != NULL && st->upgrade && !websocket_upgrade(req)) {
			ism_stream_local(w, st, 403, ISM_WHY_UPGRADE, true);
			return;
		}
		if (w->table->authz.custom.n > 0 &&
		    authz_checks(w, st, req, https, vh, r, undecided, body, len, req_done))
			return;
	}
	/* Istio puts Envoy's jwt_authn after its CUSTOM ext_authz: the check
	 * sees the client's token, and the fields its answer adds are what
	 * the JWT check reads. */
	if (w->table->jwt.n > 0 && !authenticated(w, st, req, https, &vh, &r, &undecided))
		return;
	if (!authorized(w, st, req)) {
		ism_stream_local(w, st, 403, ISM_WHY_RBAC, false);
		return;
	}
	/* A gRPC-Web request goes on as gRPC (its body decoded) from here:
	 * istiod puts Envoy's grpc_web filter after ext_authz, jwt_authn and
	 * RBAC, whose checks (and the route, found before the filters) see it
	 * as the client sent it, and whose answers are not gRPC-Web's. */
	if (w->table->listeners[st->sess->listener].grpc_web && st->gw == NULL) {
		if (!gw_request(w, st, req, &body, &len, req_done))
			return;
		st->req_chunked = req->framing.chunked;
	}
	if ((r = request_route(w, st, req, https, vh, r, undecided)) == NULL ||
	    (d = request_upstream(w, st, r, req, &ei)) == NULL)
		return;
	cl = &w->table->clusters[d->cluster];
	if ((r->act != NULL || d->act != NULL) && !request_actions(w, st, r, d, req, &ed)) {
		if (ed.made != NULL)
			free(ed.made);
		return;
	}
	/* Envoy's router writes the time a gRPC request has as its
	 * grpc-timeout, before the route's header edits apply. */
	if (st->grpc && (st->route_timeout_ms || st->rs.per_try_ms) &&
	    (ed.hdrs == NULL || !ism_act_drops(ed.hdrs, "grpc-timeout", 12)))
		st->stamp |= ISM_STAMP_GRPC;
	ret = ism_up_request(w, st, req, cl, r->act != NULL || d->act != NULL ? &ed : NULL, &head);
	if (ret == 0)
		ret = stamp_setup(w, st, &ed, &head);
	st->up_head_len = head.len;
	if (ed.made != NULL)
		free(ed.made);
	/* Body bytes that arrived with the head travel with it. */
	if (ret < 0 || ism_up_body_into(st, &head, body, len, req_done) < 0) {
		ism_buf_free(&head);
		ism_stream_local(w, st, 431, "request head too large", true);
		return;
	}
	if (r->n_mirrors > 0)
		ism_mirror_request(w, st, r, req, &head, body, len, req_done);
	if (st->state == ISM_ST_DELAY) {
		/* It goes out when the fault delay ends; the route's timeout starts
		 * then (route_clock), as Envoy's router runs after the fault filter
		 * (its mirror copies went already: only their timing differs from
		 * Envoy's). */
		st->replay = head;
		return;
	}
	dispatch(w, st, cl, &cl->endpoints[ei], &head);
	ism_buf_free(&head);
}

void ism_stream_authz_allow(struct ism_wctx *w, struct ism_stream *st)
{
	struct ism_xa_wait *x = st->xa;
	struct ism_buf body = x->body;

	/* The body goes with the head built of the request (whose strings
	 * are in it); st, and x with it, may be gone when the call returns. */
	x->body = (struct ism_buf){0};
	st->state = ISM_ST_NEW;
	ism_stream_request(w, st, &x->req, body.p, body.len, x->req_done);
	ism_buf_free(&body);
}

/* ---------- a newer table ---------- */

/* One unit of a cluster's counted capacity goes from the old table's
 * namesake to the new one's (to NULL: none has the name). */
static void move_count(_Atomic uint32_t *from, _Atomic uint32_t *to)
{
	atomic_fetch_sub_explicit(from, 1, memory_order_relaxed);
	if (to != NULL)
		atomic_fetch_add_explicit(to, 1, memory_order_relaxed);
}

/* A request waiting for its check is routed again: the route its check's
 * answer lets it on to, its counters and the name its line logs. */
static void authz_route_again(struct ism_wctx *w, struct ism_stream *st)
{
	struct ism_xa_wait *x = st->xa;
	bool undecided;

	if (st->authn != NULL && st->authn->by != NULL && w->table->jwt.routes)
		ism_router_set_claims(w->rs, ism_authn_claims(st->authn), st->authn->by);
	st->tls_server = tls_server_of(w->table, st->sess);
	x->r = request_lookup(w, st, &x->req, x->https, &x->vh, &undecided);
	ism_router_set_claims(w->rs, NULL, NULL);
	x->undecided = undecided;
}

/* Stream st, of table g->old, goes on with g->cur (w->table). */
static void regen(struct ism_wctx *w, struct ism_stream *st, const struct ism_regen *g)
{
	const struct ism_table *t = g->cur;
	const struct ism_cluster *oc =
	    st->cluster < g->old->n_clusters ? &g->old->clusters[st->cluster] : NULL;
	const uint32_t ci = ism_regen_cluster(g, st->cluster);
	struct ism_cluster_dyn *nd = ci != UINT32_MAX ? t->clusters[ci].dyn : NULL;
	const uint16_t l = st->sess->listener;

	/* The capacity it holds goes with it: workers still on the old table
	 * read the old counts, those on the new one the new counts. */
	if (oc != NULL && st->waiting)
		move_count(&oc->dyn->pending, nd != NULL ? &nd->pending : NULL);
	if (oc != NULL && st->retry_counted)
		move_count(&oc->dyn->retries_active, nd != NULL ? &nd->retries_active : NULL);
	if (oc != NULL && st->rq_counted)
		move_count(&oc->dyn->in_flight, nd != NULL ? &nd->in_flight : NULL);
	if (nd == NULL) {
		hold_clear(w, &st->retry_counted);
		hold_clear(w, &st->rq_counted);
	}
	st->cluster = ci;
	st->ep = ism_regen_endpoint(g, ci, st->ep);
	st->lis_stats = st->lis_stats != NULL && l < t->n_listeners ? t->listeners[l].stats : NULL;
	st->route_stats = ism_regen_route(g, st->route_stats);
	st->l4_stats = ism_regen_l4(g, st->l4_stats);
	if (st->tun != NULL)
		st->tun->stats = ism_regen_l4(g, st->tun->stats);
	if (st->authn != NULL && st->authn->by != NULL) {
		/* Its token's provider, by issuer (they are unique). */
		const char *iss = st->authn->by->issuer.p;

		st->authn->by = NULL;
		for (uint32_t i = 0; i < t->jwt.n && st->authn->by == NULL; i++)
			if (strcmp(t->jwt.p[i].issuer.p, iss) == 0)
				st->authn->by = &t->jwt.p[i];
	}
	if (st->state == ISM_ST_AUTHZ)
		authz_route_again(w, st);
}

void ism_streams_regen(struct ism_wctx *w, const struct ism_table *old)
{
	struct ism_regen g;

	if (ism_regen_init(&g, old, w->table) < 0) {
		/* Empty maps: the requests keep nothing of the old table, and
		 * one that would try again answers 503. */
		ism_err(
		    "out of memory finding the clusters of requests in flight in generation %llu",
		    (unsigned long long)w->table->gen);
		g = (struct ism_regen){.old = old, .cur = w->table};
	}
	for (uint32_t i = 0; i < w->streams.n; i++) {
		struct ism_stream *st = w->streams.obj[i];

		if (st->state != ISM_ST_FREE && st->state != ISM_ST_ABANDONED)
			regen(w, st, &g);
	}
	ism_regen_free(&g);
	/* Waiters look again: the new limits may let them on. */
	if (w->wait_head != NULL)
		w->wake_waiters = 1;
}

void ism_stream_req_trailers(struct ism_wctx *w, struct ism_stream *st,
			     const struct ism_http_header *h, size_t n)
{
	(void)w;
	if (ism_buf_put_pairs(&st->req_trl, h, n) < 0)
		ism_buf_free(&st->req_trl); /* dropped, as HTTP/1.1 drops them */
}

/* Body bytes that came while no attempt can take them: the session was asked
 * for them before the attempt failed, and they came during the retry's
 * back-off, the wait for a connection or a fault delay. They join the request
 * kept for the next attempt, which sends them after what went before; the
 * rest of the body is asked for once that attempt sent it all. */
static void hold_body(struct ism_wctx *w, struct ism_stream *st, const char *p, uint32_t len,
		      int bid, bool done)
{
	int ret = ism_up_body_into(st, &st->replay, p, len, done);

	if (bid >= 0)
		ism_w_buf_recycle(w, bid);
	req_ends(w, st, done);
	/* Past what a retry keeps, the request cannot be made whole again:
	 * Envoy's answer. */
	if (ret < 0 || st->replay.len > ISM_REPLAY_MAX)
		ism_stream_local(w, st, 507, ISM_WHY_RETRY_BUFFER, true);
}

void ism_stream_req_data(struct ism_wctx *w, struct ism_stream *st, const char *p, uint32_t len,
			 int bid, bool done)
{
	int ret;

	/* A gRPC-Web text body is decoded first; once answered, nothing of it
	 * goes anywhere. */
	if (st->gw != NULL && (st->gw->flags & ISM_GW_TEXT_IN) &&
	    (st->state == ISM_ST_LOCAL || !gw_decode(w, st, NULL, &p, &len, &bid, done))) {
		if (bid >= 0)
			ism_w_buf_recycle(w, bid);
		return;
	}

	if (st->state == ISM_ST_AUTHZ) {
		struct ism_xa_wait *x = st->xa;
		int kept = ism_buf_append(&x->body, p, len, UINT32_MAX);

		/* Taken with the head's bytes once the check lets it through;
		 * read for the check first when its provider wants the body. */
		if (bid >= 0)
			ism_w_buf_recycle(w, bid);
		if (kept < 0 || (!x->reading && x->body.len > x->cap)) {
			ism_stream_local(w, st, 507, ISM_WHY_RETRY_BUFFER, true);
			return;
		}
		x->req_done = done;
		req_ends(w, st, done);
		if (x->reading && ism_extauthz_send(w, st) < 0)
			ism_stream_local(w, st, 503, "out of memory", false);
		return;
	}
	if (st->copies != NULL)
		ism_mirror_body(w, st, p, len, done);
	if (st->up == NULL && awaits_attempt(st)) {
		hold_body(w, st, p, len, bid, done);
		return;
	}
	if (st->up == NULL || (st->state != ISM_ST_ATTEMPT && st->state != ISM_ST_RESPONSE)) {
		/* Answered already (the session closes after the response). */
		if (bid >= 0)
			ism_w_buf_recycle(w, bid);
		return;
	}
	req_ends(w, st, done);
	if (st->deadline_kind == ISM_SDL_BODY ||
	    (!st->resp_started && st->deadline_kind == ISM_SDL_RESPONSE))
		arm_attempt(w, st);
	ret = ism_up_req_data(w, st, p, len, bid, done);
	st->req_streamed = !ism_up_replayable(st);
	if (ret < 0) {
		ism_stream_local(w, st, 503, "out of memory", true);
		return;
	}
	if (ret == 0 && !done)
		st->sess->ops->want_body(w, st);
}

int ism_stream_mirror_start(struct ism_wctx *w, struct ism_stream *st)
{
	const struct ism_cluster *cl = ism_stream_cluster(w, st);
	struct ism_buf head;
	int ei;

	if (cl == NULL)
		return -ESTALE;
	ei = pick_endpoint(w, st);
	if (ei < 0)
		return -ENOENT;
	if (!request_admitted(w, st, cl))
		return -EBUSY;
	st->connect_timeout_ms = cl->connect_timeout_ms;
	st->pool_idle_ms = cl->idle_timeout_ms;
	st->response_timeout_ms = w->table->timeouts.upstream_response_ms;
	head = st->replay;
	st->replay = (struct ism_buf){0};
	dispatch(w, st, cl, &cl->endpoints[ei], &head);
	ism_buf_free(&head);
	return 0;
}

/* ---------- the response ---------- */

void ism_stream_up_ready(struct ism_wctx *w, struct ism_stream *st)
{
	const struct ism_cluster *cl;

	if (!st->l4) {
		arm_attempt(w, st);
		return;
	}
	/* Through an HTTP proxy (the DestinationRule's tunnel): its answer to
	 * the CONNECT first, within the connect timeout. */
	cl = ism_stream_cluster(w, st);
	if (cl != NULL && cl->tunnel.len > 0) {
		ism_stream_set_deadline(w, st, ISM_SDL_CONNECT, st->connect_timeout_ms);
		ism_up_tunnel_ask(w, st->up, &cl->tunnel, cl->tunnel_post);
		return;
	}
	ism_stream_up_tunnel(w, st);
}

void ism_stream_up_tunnel(struct ism_wctx *w, struct ism_stream *st)
{
	const struct ism_cluster *cl = ism_stream_cluster(w, st);

	/* Connected: a success to outlier detection (Envoy's local-origin
	 * connect success), and the tunnel opens. */
	record_outcome(w, st, ISM_FAIL_NONE, 200);
	log_upstream_conn(w, st);
	tunnel_start(w, st, cl != NULL ? cl->tcp_idle_ms : ISM_DEFAULT_TCP_IDLE_MS,
		     cl != NULL ? cl->tcp_max_duration_ms : 0, st->l4_stats);
}

void ism_stream_up_bytes(struct ism_wctx *w, struct ism_stream *st)
{
	/* The per-try bound is absolute until the response head, as Envoy's
	 * per_try_timeout: an upstream that trickles its head does not stretch
	 * the try. Past the head, bytes keep the response timeout going. */
	if (!st->sending && !per_try_bounded(st))
		arm_attempt(w, st);
}

void ism_stream_up_sent(struct ism_wctx *w, struct ism_stream *st)
{
	/* The last of the body too: an HTTP/2 client's windows open again for
	 * other streams while this one's answer takes its time. */
	st->sess->ops->want_body(w, st);
	if (!st->req_done)
		return;
	st->req_sent_ms = w->now;
	if (st->state == ISM_ST_RESPONSE && st->resp_done && !st->sending)
		stream_finish(w, st);
}

/* Response head resp with the route's header edits e applied, in *copy (its
 * fields in the worker's scratch); NULL without memory. */
static const struct ism_http_resp *edited(struct ism_wctx *w, const struct ism_hdr_edits *e,
					  const struct ism_http_resp *resp,
					  struct ism_http_resp *copy)
{
	*copy = *resp;
	copy->headers =
	    ism_stream_edit_fields(w, e, resp->headers, resp->n_headers, &copy->n_headers);
	return copy->headers != NULL ? copy : NULL;
}

/* resp with the route's response edits (st->resp_edits), their values with
 * the response's operators made now, into *made (free() it after the head
 * went; NULL: none). NULL without memory. */
static const struct ism_http_resp *resp_edited(struct ism_wctx *w, struct ism_stream *st,
					       const struct ism_http_resp *resp,
					       struct ism_http_resp *copy,
					       struct ism_hdr_edits **made)
{
	const struct ism_hdr_edits *e = st->resp_edits;

	*made = NULL;
	if (e->dynamic) {
		struct ism_hval_ctx c = {.w = w, .st = st, .resp = resp};

		if ((*made = ism_act_edits_dup(e, ism_hval, &c)) == NULL)
			return NULL;
		e = *made;
	}
	return edited(w, e, resp, copy);
}

/* A gRPC-Web response's head (in *copy): its content-type gRPC-Web's, no
 * length (the trailers frame follows the body; an HTTP/1.1 client gets it
 * chunked); the body bytes that came with it as the client gets them. NULL
 * without memory. */
static const struct ism_http_resp *gw_head(struct ism_wctx *w, struct ism_stream *st,
					   const struct ism_http_resp *resp,
					   struct ism_http_resp *copy, uint8_t *mode,
					   const char **body, uint32_t *len, bool done)
{
	const char *ct = ism_gw_content_type(st->gw->flags);
	const struct ism_str ct_value = {ct, (uint32_t)strlen(ct)}, te = {"chunked", 7};
	const struct ism_hdr_edit e[] = {
	    {.name = {"content-length", 14}, .drop = 1},
	    {.name = {"content-type", 12}, .drop = 1, .n_values = 1, .values = &ct_value},
	    {.name = {"transfer-encoding", 17}, .n_values = 1, .values = &te},
	};
	/* The chunked field only where the length was. */
	const struct ism_hdr_edits edits = {.n = *mode == ISM_BODY_CL ? 3 : 2, .e = e};
	int bid = -1;

	if (*mode == ISM_BODY_CL)
		*mode = ISM_BODY_CHUNKED;
	if ((*len > 0 || done) && gw_response_data(w, st, body, len, &bid, done) < 0)
		return NULL;
	return edited(w, &edits, resp, copy);
}

/* A response send in flight: the route's timeout still bounds a response the
 * upstream has not ended, whatever the client's pace (Envoy's router keeps it
 * until the upstream's end); no other stream timer runs meanwhile. */
static void sending_deadline(struct ism_wctx *w, struct ism_stream *st)
{
	ism_stream_set_deadline(w, st, ISM_SDL_NONE, 0);
	if (st->route_deadline && !st->resp_done) {
		st->deadline_kind = ISM_SDL_RESPONSE;
		st->deadline = st->route_deadline;
		wake_at(w, st->deadline);
	}
}

/* The final response head resp goes to the client (edited already), with the
 * body bytes that came with it. */
static inline void head_out(struct ism_wctx *w, struct ism_stream *st,
			    const struct ism_http_resp *resp, uint8_t mode, const char *body,
			    uint32_t len, bool done)
{
	int ret;

	if (w->alog.wants_resp && st->log_req != NULL)
		ism_stream_log_resp(w, st, resp->headers, resp->n_headers, true);
	ret = st->sess->ops->head(w, st, resp, mode, body, len, done);
	if (ret < 0) {
		st->od_pending = 0;
		ism_stream_local(w, st, 502, "upstream response head too large", false);
		return;
	}
	if (!st->mirror)
		ism_stream_count_status(w, resp->status);
	st->state = ISM_ST_RESPONSE;
	st->resp_head_done = 1;
	st->resp_started = 1;
	st->resp_done = done;
	if (done)
		ism_stream_count(w, st);
	st->sending = 1;
	sending_deadline(w, st);
	if (ret == 0) /* taken at once: as if it went out */
		ism_stream_resp_sent(w, st);
}

/* A held gRPC-Web response (ism_gw.held) keeps its body's first bytes. */
static void gw_keep(struct ism_gw *g, const char *p, uint32_t len)
{
	uint32_t room = g->msg.len < ISM_GW_MSG_MAX ? ISM_GW_MSG_MAX - g->msg.len : 0;

	if (len > room)
		len = room;
	if (len > 0 && ism_buf_append(&g->msg, p, len, UINT32_MAX) < 0)
		g->msg.len = 0; /* without memory, no message */
}

/* The held response's body ended: its head goes, a gRPC error with the body
 * as its grpc-message, and no body. 0 or -ENOMEM. */
static int gw_release(struct ism_wctx *w, struct ism_stream *st)
{
	struct ism_gw *g = st->gw;
	struct ism_http_resp resp = {.status = g->status, .minor_version = 1, .headers = w->hdrs};
	struct ism_buf fields = {0};
	size_t n = ism_buf_get_pairs(&g->head, w->hdrs, ISM_MAX_HDRS);

	g->held = 0;
	if (ism_gw_error_fields(g->flags, g->status, w->hdrs, n, g->msg.p, g->msg.len, &fields) <
	    0) {
		ism_buf_free(&fields);
		return -ENOMEM;
	}
	resp.n_headers = ism_buf_get_pairs(&fields, w->hdrs, ISM_MAX_HDRS);
	resp.reason = ism_http_reason(g->status);
	resp.reason_len = strlen(resp.reason);
	resp.framing.content_length = 0;
	head_out(w, st, &resp, ISM_BODY_CL, NULL, 0, true);
	ism_buf_free(&fields);
	return 0;
}

/* A gRPC-Web request's response that is not gRPC (ism_gw_transform) waits
 * for its body, as Envoy's filter buffers it. 0 or -ENOMEM. */
static int gw_hold(struct ism_wctx *w, struct ism_stream *st, const struct ism_http_resp *resp,
		   const char *body, uint32_t len, bool done)
{
	struct ism_gw *g = st->gw;

	g->held = 1;
	g->status = (uint16_t)resp->status;
	if (ism_buf_put_pairs(&g->head, resp->headers, resp->n_headers) < 0)
		return -ENOMEM;
	gw_keep(g, body, len);
	/* Started, as Envoy's router counts it (the head went to the filters):
	 * a timeout or a reset from now on cuts the stream, no retry. */
	st->state = ISM_ST_RESPONSE;
	st->resp_head_done = 1;
	st->resp_started = 1;
	if (done)
		return gw_release(w, st);
	arm_attempt(w, st);
	ism_up_resume(w, st);
	return 0;
}

void ism_stream_up_head(struct ism_wctx *w, struct ism_stream *st, const struct ism_http_resp *resp,
			uint8_t mode, const char *body, uint32_t len, bool done)
{
	struct ism_http_resp copy;
	int grpc = grpc_status(resp);
	bool retry = retry_possible(w, st, ISM_FAIL_NONE, resp->status, grpc);
	/* Outlier detection sees a trailers-only answer to a gRPC request as
	 * the HTTP status Envoy's router maps its status to (UNAVAILABLE: 503). */
	int od_status = grpc >= 0 && st->grpc ? ism_grpc_to_http(grpc) : resp->status;
	const struct ism_cluster *cl = ism_stream_cluster(w, st);
	struct ism_hdr_edits *made = NULL;

	/* A response that streams tells outlier detection how it ended
	 * (od_settle): one cut short by the upstream is a failure. */
	if (retry || ism_outcome_of(cl != NULL ? cl->od : NULL, ISM_FAIL_NONE, od_status) !=
			 ISM_OUTCOME_SUCCESS)
		record_outcome(w, st, ISM_FAIL_NONE, od_status);
	else
		st->od_pending = 1;
	if (retry) {
		/* A retriable status: this response is dropped, its connection
		 * too (its body was not read). */
		end_attempt(w, st);
		schedule_retry(w, st);
		return;
	}
	st->resp_head_ms = w->now;
	st->status = (uint16_t)resp->status;
	log_upstream_conn(w, st);
	/* The route's edits, then the CORS fields (Envoy's CORS filter sets them
	 * on what the router gives it), then gRPC-Web's (its filter is first:
	 * it sees the response last). */
	if ((st->resp_edits != NULL && (resp = resp_edited(w, st, resp, &copy, &made)) == NULL) ||
	    (st->cors != NULL && (resp = edited(w, &st->cors->edits, resp, &copy)) == NULL) ||
	    (st->xa != NULL && st->xa->down.n > 0 &&
	     (resp = edited(w, &st->xa->down, resp, &copy)) == NULL))
		goto oom;
	if (st->gw != NULL &&
	    ism_gw_transform(resp->status, resp->headers, resp->n_headers, done && len == 0)) {
		if (gw_hold(w, st, resp, body, len, done) < 0)
			goto oom;
		free(made);
		return;
	}
	if (st->gw != NULL &&
	    (resp = gw_head(w, st, resp, &copy, &mode, &body, &len, done)) == NULL)
		goto oom;
	head_out(w, st, resp, mode, body, len, done);
	free(made);
	return;
oom:
	free(made);
	ism_stream_local(w, st, 503, "out of memory", true);
}

void ism_stream_up_upgrade(struct ism_wctx *w, struct ism_stream *st,
			   const struct ism_http_resp *resp, const char *p, uint32_t len)
{
	struct ism_http_resp copy;
	struct ism_hdr_edits *made = NULL;
	bool ok;

	/* Neither the route's timeout nor the response timeout cut a WebSocket:
	 * timeouts.idle of silence does. */
	st->route_deadline = st->route_timeout_ms = 0;
	if (st->sess->ops->upgrade == NULL) {
		/* An HTTP/2 client's extended CONNECT (RFC 8441): a 200, then
		 * the bytes both ways as the stream's request and response
		 * bodies, until either side ends. */
		copy = *resp;
		copy.status = 200;
		st->response_timeout_ms = st->read_idle_ms = w->table->timeouts.idle_ms;
		ism_stream_up_head(w, st, &copy, ISM_BODY_CLOSE, p, len, false);
		return;
	}
	record_outcome(w, st, ISM_FAIL_NONE, resp->status);
	st->resp_head_ms = w->now;
	st->status = (uint16_t)resp->status;
	log_upstream_conn(w, st);
	ok = (st->resp_edits == NULL || (resp = resp_edited(w, st, resp, &copy, &made)) != NULL) &&
	     (st->cors == NULL || (resp = edited(w, &st->cors->edits, resp, &copy)) != NULL);
	/* The 101 the client gets is the line's response, as head_out's. */
	if (ok && w->alog.wants_resp && st->log_req != NULL)
		ism_stream_log_resp(w, st, resp->headers, resp->n_headers, true);
	ok = ok && st->sess->ops->upgrade(w, st, resp, p, len) >= 0;
	free(made);
	if (!ok) {
		stream_cut(w, st);
		return;
	}
	ism_stream_count_status(w, resp->status);
	/* Counted as Envoy's connection manager charges the 101 (its
	 * listener's, route's and cluster's 1xx), the latency to it. */
	ism_stream_count(w, st);
	st->state = ISM_ST_UPGRADE;
	st->resp_head_done = 1;
	st->resp_started = 1;
	st->sending = 1;
	ism_stream_set_deadline(w, st, ISM_SDL_NONE, 0);
}

bool ism_stream_up_trailers(struct ism_wctx *w, struct ism_stream *st,
			    const struct ism_http_header *h, size_t n)
{
	if (st->log_req != NULL) {
		ism_alog_capture_fields(&w->alog, st->log_req, ISM_ALOG_F_TRAILER, h, n, NULL, 0);
		ism_logfilter_capture_resp(w, st, true, h, n, NULL, 0);
	}
	/* gRPC-Web: the trailers end the body, as its last frame; those of a
	 * held response are dropped (its grpc-status is made of its status). */
	if (st->gw != NULL && st->gw->held)
		return true;
	if (st->gw != NULL) {
		if (ism_gw_trailers(h, n, &st->gw->trl) == 0)
			return true;
		stream_cut(w, st);
		return false;
	}
	if (st->sess->ops->trailers(w, st, h, n) < 0) {
		stream_cut(w, st);
		return false;
	}
	return true;
}

void ism_stream_up_data(struct ism_wctx *w, struct ism_stream *st, const char *p, uint32_t len,
			int bid, bool done)
{
	int ret;

	if (st->gw != NULL && st->gw->held) {
		gw_keep(st->gw, p, len);
		if (bid >= 0)
			ism_w_buf_recycle(w, bid);
		if (!done)
			ism_up_resume(w, st);
		else if (gw_release(w, st) < 0)
			ism_stream_local(w, st, 503, "out of memory", true);
		return;
	}
	if (st->gw != NULL && gw_response_data(w, st, &p, &len, &bid, done) < 0) {
		stream_cut(w, st);
		return;
	}
	ret = st->sess->ops->data(w, st, p, len, bid, done);

	st->resp_done = done;
	if (ret < 0) {
		stream_cut(w, st);
		return;
	}
	if (done)
		ism_stream_count(w, st);
	if (ret > 0) {
		st->sending = 1;
		sending_deadline(w, st);
		return;
	}
	if (done)
		stream_finish(w, st);
	else
		ism_up_resume(w, st);
}

void ism_stream_resp_sent(struct ism_wctx *w, struct ism_stream *st)
{
	st->sending = 0;
	switch ((enum ism_stream_state)st->state) {
	case ISM_ST_LOCAL:
		stream_finish(w, st);
		return;
	case ISM_ST_RESPONSE:
	case ISM_ST_ATTEMPT: /* (nothing goes out before the final head) */
		if (st->resp_done) {
			stream_finish(w, st);
			return;
		}
		if (st->up == NULL) { /* the upstream went meanwhile */
			upstream_cut(w, st, ISM_FAIL_RESET, "UC");
			return;
		}
		arm_attempt(w, st);
		ism_up_resume(w, st);
		return;
	case ISM_ST_UPGRADE: /* the 101 went out: WebSocket bytes from now */
		tunnel_start(w, st, w->table->timeouts.idle_ms, 0, NULL);
		return;
	case ISM_ST_AUTHZ: /* (nothing goes out while a check runs) */
		return;
	case ISM_ST_NEW:
	case ISM_ST_WAITING:
	case ISM_ST_BACKOFF:
	case ISM_ST_DELAY:
	case ISM_ST_TUNNEL:
	case ISM_ST_ABANDONED:
	case ISM_ST_FREE:
		break;
	}
	ISM_BUG_ON(1);
}

/* A pooled connection that closed without a byte of answer: most likely the
 * upstream had closed it, idle, before this request reached it. The request
 * is replayed once on a fresh connection (not a retry: no policy, no count),
 * but only where sending it twice is harmless (an idempotent method, as nginx
 * does): the upstream may have acted on it before it closed. true when it
 * was replayed. */
static bool replay_stale(struct ism_wctx *w, struct ism_stream *st)
{
	const struct ism_cluster *cl = ism_stream_cluster(w, st);
	struct ism_upconn *u = st->up, *nu;
	struct ism_buf head = {0};

	if (cl == NULL || st->ep == NULL || st->usp != NULL || !u->reused || u->got_bytes ||
	    !st->idempotent || st->req_streamed || u->out.len == 0)
		return false;
	ism_up_detach(w, st, &head);
	nu = ism_up_start(w, st, cl, st->ep, &head, true, NULL);
	ism_buf_free(&head);
	if (nu == NULL) {
		ism_stream_local(w, st, 503, "upstream connect error", false);
		return true;
	}
	st->up = nu;
	ism_stream_set_deadline(w, st, ISM_SDL_CONNECT, st->connect_timeout_ms);
	return true;
}

static void up_failed(struct ism_wctx *w, struct ism_stream *st, enum ism_failure f,
		      const char *why)
{
	if (st->state == ISM_ST_RESPONSE) {
		upstream_cut(w, st, f == ISM_FAIL_NONE ? ISM_FAIL_RESET : f, "UC");
		return;
	}
	if (f == ISM_FAIL_RESET && replay_stale(w, st))
		return;
	attempt_failed(w, st, f, why);
}

void ism_stream_up_failed(struct ism_wctx *w, struct ism_stream *st, enum ism_failure f)
{
	/* An HTTP/2 upstream's REFUSED_STREAM (or a stream past its GOAWAY) is
	 * Envoy's remote refused-stream reset: UR. */
	up_failed(w, st, f, f == ISM_FAIL_REFUSED ? ISM_WHY_REFUSED : ISM_WHY_CLOSED);
}

void ism_stream_up_reset(struct ism_wctx *w, struct ism_stream *st)
{
	/* Envoy's upstream remote reset, where a closed connection is UC. */
	if (st->state == ISM_ST_RESPONSE)
		st->flags = "UR";
	up_failed(w, st, ISM_FAIL_RESET, ISM_WHY_RESET);
}

void ism_stream_up_bad(struct ism_wctx *w, struct ism_stream *st, const char *why)
{
	if (st->state == ISM_ST_RESPONSE) {
		upstream_cut(w, st, ISM_FAIL_RESET, "UPE");
		return;
	}
	/* Envoy's router takes a protocol error as a reset: retried as one,
	 * else 502 (UPE). */
	attempt_failed(w, st, ISM_FAIL_PROTOCOL, why);
}

/* ---------- timers ---------- */

void ism_stream_timer(struct ism_wctx *w, uint32_t idx, uint32_t gen)
{
	struct ism_stream *st;

	st = ism_slab_at(&w->streams, idx, gen);
	ISM_BUG_ON(st->inflight == 0);
	st->inflight--;
	switch ((enum ism_stream_state)st->state) {
	case ISM_ST_ABANDONED:
		if (st->inflight == 0)
			stream_free(w, st);
		return;
	case ISM_ST_BACKOFF:
		do_retry(w, st);
		return;
	case ISM_ST_DELAY:
		delay_over(w, st);
		return;
	/* The wait ended otherwise (an answer made here meanwhile): nothing to do. */
	case ISM_ST_NEW:
	case ISM_ST_WAITING:
	case ISM_ST_ATTEMPT:
	case ISM_ST_RESPONSE:
	case ISM_ST_LOCAL:
	case ISM_ST_UPGRADE:
	case ISM_ST_TUNNEL:
	case ISM_ST_AUTHZ:
		return;
	case ISM_ST_FREE: /* (a stream with a timer in flight is ABANDONED when it ends) */
		break;
	}
	ISM_BUG_ON(1);
}

static void expire(struct ism_wctx *w, struct ism_stream *st)
{
	switch ((enum ism_stream_deadline)st->deadline_kind) {
	case ISM_SDL_CONNECT:
		if (st->waiting) {
			/* The route's timeout ended the wait: a timeout, as Envoy's
			 * (504 UT); the connect timeout ended it: an overflow. */
			if (st->route_deadline && w->now >= st->route_deadline)
				ism_stream_local(w, st, 504, ISM_WHY_ROUTE_TIMEOUT, false);
			else
				ism_stream_local(
				    w, st, 503, "upstream overflow (no connection in time)", false);
			return;
		}
		ism_wstat_add(&w->st->upstream_connect_fail, 1);
		attempt_failed(w, st, ISM_FAIL_CONNECT, NULL);
		return;
	case ISM_SDL_RESPONSE:
		if (!st->resp_started) {
			/* Envoy's router tells its per-try timeout from the
			 * route's in the details. */
			attempt_failed(w, st, ISM_FAIL_TIMEOUT,
				       per_try_bounded(st) && (st->route_deadline == 0 ||
							       w->now < st->route_deadline)
					   ? ISM_WHY_PER_TRY_TIMEOUT
					   : NULL);
			return;
		}
		/* The route's, mid-body: no failure of the endpoint's, as
		 * Envoy's router charges only a timeout before the head (the
		 * head's status counted). */
		upstream_cut(w, st, ISM_FAIL_NONE, "UT");
		return;
	case ISM_SDL_BODY:
		ism_stream_local(w, st, 408, ISM_WHY_STREAM_IDLE, true);
		return;
	case ISM_SDL_NONE:
		break;
	}
	ISM_BUG_ON(1);
}

void ism_stream_expire_due(struct ism_wctx *w)
{
	w->stream_wake = UINT64_MAX;
	for (uint32_t i = 0; i < w->streams.n; i++) {
		struct ism_stream *st = w->streams.obj[i];

		if (st->state == ISM_ST_FREE || st->state == ISM_ST_ABANDONED || st->deadline == 0)
			continue;
		if (st->deadline > w->now) {
			if (st->deadline < w->stream_wake)
				w->stream_wake = st->deadline;
			continue;
		}
		st->deadline = 0;
		expire(w, st); /* a deadline it sets lowers stream_wake */
	}
}

void ism_stream_tick(struct ism_wctx *w)
{
	/* Connections released by other workers are not announced: look again. */
	if (w->wait_head)
		w->wake_waiters = 1;
	/* Every second the whole list is looked at, whatever stream_wake says:
	 * a deadline set without telling it would otherwise wait for another
	 * stream's. */
	if (w->now >= w->stream_wake || w->now - w->stream_scan_ms >= 1000) {
		w->stream_scan_ms = w->now;
		ism_stream_expire_due(w);
	}
}

void ism_stream_free_all(struct ism_wctx *w)
{
	for (uint32_t i = 0; i < w->streams.n; i++) {
		struct ism_stream *st = w->streams.obj[i];

		/* The worker ends: what a live stream holds of the shared counts
		 * goes back (nothing else would take it off). */
		if (st->state != ISM_ST_FREE && st->state != ISM_ST_ABANDONED) {
			wait_remove(w, st);
			retry_done(w, st);
			ep_done(w, st, false);
		}
		ism_alog_req_free(st->log_req);
		free(st->set_cookie);
		free(st->resp_edits);
		free(st->cors);
		free(st->deferred);
		ism_extauthz_wait_free(st->xa);
		ism_buf_free(&st->replay);
		ism_buf_free(&st->req_trl);
		ism_buf_free(&st->filter_hdrs);
		ism_buf_free(&st->filter_resp);
		ism_buf_free(&st->filter_trl);
	}
	ism_slab_free(&w->streams);
	ism_buf_free(&w->act_path);
	ism_buf_free(&w->act_orig);
	free(w->act_hdrs);
	w->act_hdrs = NULL;
}
