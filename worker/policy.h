/* SPDX-License-Identifier: Apache-2.0 */
/* Per-request policy decisions of a worker, as pure functions: the hash key of
 * a consistent-hash policy, which failures a retry policy retries, the retry
 * back-off, and what an exchange's result means to outlier detection. */
#ifndef ISM_WORKER_POLICY_H
#define ISM_WORKER_POLICY_H

#include <stddef.h>
#include <stdint.h>

#include "health/outlier.h"
#include "shm/table-t.h"
#include "worker/http1.h"

struct ism_router_scratch;

/* How an attempt failed, before or instead of a usable response. */
enum ism_failure {
	ISM_FAIL_NONE = 0, /* a response arrived: judge its status */
	ISM_FAIL_CONNECT,  /* connect refused, failed or timed out */
	ISM_FAIL_RESET,	   /* the connection closed or reset before a complete response head */
	ISM_FAIL_TIMEOUT,  /* no response within the (per-try) timeout */
	ISM_FAIL_REFUSED,  /* HTTP/2 REFUSED_STREAM (or past a GOAWAY): not processed at all */
	ISM_FAIL_PROTOCOL, /* a malformed response head: Envoy's protocol-error reset (502 UPE) */
};

/* The retry policy of one request, copied from its route when it is routed. */
/* How many of the endpoints a request tried a retry remembers to avoid. */
#define ISM_RETRY_TRIED 4
/* prio_tried and prio_skip hold a bit per priority. */
_Static_assert(ISM_MAX_PRIORITIES <= 16, "a priority mask is 16 bits");

struct ism_retry_state {
	uint32_t retry_on; /* enum ism_retry_on bits */
	uint16_t codes[8]; /* retriable status codes (the first 8) */
	uint8_t n_codes;
	uint8_t retries_left;
	uint8_t tries; /* attempts made, the first included */
	uint8_t ignore_previous;
	uint8_t remote_localities;	 /* retryRemoteLocalities */
	uint16_t prio_tried;		 /* priorities of the endpoints tried (bit p) */
	uint16_t prio_skip;		 /* those a retry leaves out, as last updated */
	uint32_t tried[ISM_RETRY_TRIED]; /* endpoint ids tried (the last ISM_RETRY_TRIED) */
	uint32_t per_try_ms;
	uint32_t backoff_base_ms;
};

void ism_retry_state_init(struct ism_retry_state *rs, const struct ism_retry *r);

/* Whether an attempt that ended in failure f (or, for ISM_FAIL_NONE, in a
 * response with this status) is retried under rs's retry_on, as Envoy's router
 * reads its vocabulary. Attempts left and replayability are the caller's to check. */
int ism_retry_wanted(const struct ism_retry_state *rs, enum ism_failure f, int status);

/* Whether a response whose grpc-status is grpc (trailers-only: in its head)
 * is retried under rs's gRPC conditions (cancelled, deadline-exceeded,
 * internal, resource-exhausted, unavailable). */
int ism_retry_wanted_grpc(const struct ism_retry_state *rs, int grpc);

/* The HTTP status Envoy reads a gRPC status as (Grpc::Utility::grpcToHttpStatus),
 * for outlier detection. */
int ism_grpc_to_http(int grpc);

/* The gRPC status of an answer isthmus makes with HTTP status status, for a
 * gRPC client (Envoy's Grpc::Utility::httpToGrpcStatus). */
int ism_http_to_grpc(int status);

/* Istio's update_frequency of previous_priorities. */
#define ISM_RETRY_PRIO_EVERY 2

/* An attempt is made on endpoint id of priority prio: counted, the endpoint
 * remembered for retryIgnorePreviousHosts, its priority for
 * retryRemoteLocalities. Inline: every request's first attempt comes here. */
static inline void ism_retry_tried(struct ism_retry_state *rs, uint32_t id, uint32_t prio)
{
	rs->tried[rs->tries % ISM_RETRY_TRIED] = id;
	if (rs->tries < UINT8_MAX)
		rs->tries++;
	if (rs->remote_localities && prio < ISM_MAX_PRIORITIES)
		rs->prio_tried = (uint16_t)(rs->prio_tried | 1u << prio);
}

/* The endpoints a retry avoids (retryIgnorePreviousHosts: Envoy's
 * previous_hosts predicate): *ids, and their number (0 when none). */
static inline uint32_t ism_retry_avoid(const struct ism_retry_state *rs, const uint32_t **ids)
{
	*ids = rs->tried;
	if (!rs->ignore_previous)
		return 0;
	return rs->tries < ISM_RETRY_TRIED ? rs->tries : ISM_RETRY_TRIED;
}

/* The priorities the next pick leaves out (bit p) under retryRemoteLocalities:
 * Envoy's previous_priorities as Istio configures it (update_frequency 2).
 * None before two attempts; then those of every endpoint tried, brought up to
 * date at every second attempt and kept in between. 0 without the setting. */
static inline uint32_t ism_retry_prio_skip(struct ism_retry_state *rs)
{
	if (!rs->remote_localities || rs->tries < ISM_RETRY_PRIO_EVERY)
		return 0;
	if (rs->tries % ISM_RETRY_PRIO_EVERY == 0)
		rs->prio_skip = rs->prio_tried;
	return rs->prio_skip;
}

/* Envoy's fully jittered exponential back-off before retry n (1-based), as
 * its JitteredExponentialBackOffStrategy: rand[0, 2^(n-1) * base), the
 * interval capped at 10 * base. rnd is uniform 32-bit. */
uint32_t ism_retry_backoff_ms(uint32_t base_ms, uint32_t n, uint32_t rnd);

/* What the attempt means to outlier detection (od: the cluster's, for its
 * outlierDetectionHttpErrorCodes; NULL: 5xx are the errors). */
enum ism_outcome ism_outcome_of(const struct ism_outlier *od, enum ism_failure f, int status);

/* The consistent-hash key of a request under hp: a header's values, a cookie,
 * the client address or a query parameter (rs: the router's scratch, for
 * pseudo-headers). Returns 1 and *hash when the request has the key, 0 when
 * it has none (the caller may then issue a cookie). */
int ism_hash_key(const struct ism_hash_policy *hp, const struct ism_http_req *req, const char *peer,
		 struct ism_router_scratch *rs, uint64_t *hash);

#endif
