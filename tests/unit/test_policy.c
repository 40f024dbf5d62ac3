/* SPDX-License-Identifier: Apache-2.0 */
/* Per-request policy: retry decisions in Envoy's vocabulary, back-off bounds,
 * outlier outcomes, consistent-hash keys. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "lib/grpc.h"
#include "worker/hash.h"
#include "worker/policy.h"
#include "worker/router.h"

static struct ism_retry_state state_for(uint32_t on, const uint16_t *codes, uint32_t n)
{
	struct ism_retry r = {
	    .attempts = 2,
	    .retry_on = on,
	    .n_codes = n,
	    .codes = codes,
	    .ignore_previous_hosts = 1,
	};
	struct ism_retry_state rs;

	ism_retry_state_init(&rs, &r);
	return rs;
}

static void test_istio_default_policy(void **state)
{
	static const uint16_t c503[] = {503};
	/* Istio's default: connect-failure, refused-stream, unavailable, cancelled,
	 * retriable-status-codes with 503. */
	struct ism_retry_state rs = state_for(
	    ISM_RETRY_CONNECT_FAILURE | ISM_RETRY_REFUSED_STREAM | ISM_RETRY_GRPC_UNAVAILABLE |
		ISM_RETRY_GRPC_CANCELLED | ISM_RETRY_RETRIABLE_STATUS_CODES,
	    c503, 1);

	(void)state;
	assert_int_equal(rs.retries_left, 2);
	assert_int_equal(rs.backoff_base_ms, 25);
	assert_true(ism_retry_wanted(&rs, ISM_FAIL_CONNECT, 0));
	assert_true(ism_retry_wanted(&rs, ISM_FAIL_NONE, 503));
	assert_false(ism_retry_wanted(&rs, ISM_FAIL_NONE, 502));
	assert_false(ism_retry_wanted(&rs, ISM_FAIL_NONE, 500));
	assert_false(ism_retry_wanted(&rs, ISM_FAIL_NONE, 200));
	/* A reset after the request went out is not a connect failure. */
	assert_false(ism_retry_wanted(&rs, ISM_FAIL_RESET, 0));
	assert_false(ism_retry_wanted(&rs, ISM_FAIL_TIMEOUT, 0));
	/* Istio's default: refused streams, gRPC unavailable and cancelled. */
	assert_true(ism_retry_wanted(&rs, ISM_FAIL_REFUSED, 0));
	assert_true(ism_retry_wanted_grpc(&rs, 14));
	assert_true(ism_retry_wanted_grpc(&rs, 1));
	assert_false(ism_retry_wanted_grpc(&rs, 4));
	assert_false(ism_retry_wanted_grpc(&rs, 13));
	assert_false(ism_retry_wanted_grpc(&rs, 0));
	/* Outlier detection reads gRPC statuses as Envoy does. */
	assert_int_equal(ism_grpc_to_http(14), 503);
	assert_int_equal(ism_grpc_to_http(4), 504);
	assert_int_equal(ism_grpc_to_http(0), 200);
	assert_int_equal(ism_grpc_to_http(12), 501);
	assert_int_equal(ism_grpc_to_http(99), 500);
}

static void test_vocabulary(void **state)
{
	static const uint16_t codes[] = {418, 429};
	struct ism_retry_state rs;

	(void)state;
	rs = state_for(ISM_RETRY_5XX, NULL, 0);
	assert_true(ism_retry_wanted(&rs, ISM_FAIL_NONE, 500));
	assert_true(ism_retry_wanted(&rs, ISM_FAIL_NONE, 503));
	assert_true(ism_retry_wanted(&rs, ISM_FAIL_CONNECT, 0));
	assert_true(ism_retry_wanted(&rs, ISM_FAIL_RESET, 0));
	assert_true(ism_retry_wanted(&rs, ISM_FAIL_TIMEOUT, 0));
	assert_false(ism_retry_wanted(&rs, ISM_FAIL_NONE, 409));
	assert_true(ism_retry_wanted(&rs, ISM_FAIL_REFUSED, 0));
	rs = state_for(ISM_RETRY_GRPC_DEADLINE_EXCEEDED | ISM_RETRY_GRPC_INTERNAL |
			   ISM_RETRY_GRPC_RESOURCE_EXHAUSTED,
		       NULL, 0);
	assert_true(ism_retry_wanted_grpc(&rs, 4));
	assert_true(ism_retry_wanted_grpc(&rs, 13));
	assert_true(ism_retry_wanted_grpc(&rs, 8));
	assert_false(ism_retry_wanted_grpc(&rs, 14));
	assert_false(ism_retry_wanted(&rs, ISM_FAIL_REFUSED, 0));
	rs = state_for(ISM_RETRY_GATEWAY_ERROR, NULL, 0);
	assert_true(ism_retry_wanted(&rs, ISM_FAIL_NONE, 502));
	assert_true(ism_retry_wanted(&rs, ISM_FAIL_NONE, 504));
	assert_false(ism_retry_wanted(&rs, ISM_FAIL_NONE, 500));
	assert_true(ism_retry_wanted(&rs, ISM_FAIL_RESET, 0));
	assert_true(ism_retry_wanted(&rs, ISM_FAIL_REFUSED, 0));
	rs = state_for(ISM_RETRY_RETRIABLE_4XX, NULL, 0);
	assert_true(ism_retry_wanted(&rs, ISM_FAIL_NONE, 409));
	assert_false(ism_retry_wanted(&rs, ISM_FAIL_NONE, 404));
	rs = state_for(ISM_RETRY_RETRIABLE_STATUS_CODES, codes, 2);
	assert_true(ism_retry_wanted(&rs, ISM_FAIL_NONE, 429));
	assert_true(ism_retry_wanted(&rs, ISM_FAIL_NONE, 418));
	assert_false(ism_retry_wanted(&rs, ISM_FAIL_NONE, 503));
	rs = state_for(ISM_RETRY_RESET, NULL, 0);
	assert_true(ism_retry_wanted(&rs, ISM_FAIL_RESET, 0));
	assert_false(ism_retry_wanted(&rs, ISM_FAIL_NONE, 503));
	rs = state_for(0, NULL, 0);
	assert_false(ism_retry_wanted(&rs, ISM_FAIL_CONNECT, 0));
}

/* The edges of the vocabulary: gateway-error is 502, 503 and 504 only (Envoy's
 * RetryStateImpl: not 501, not 505); a per-try timeout is retried under reset
 * alone (Envoy's onPerTryTimeout goes through wouldRetryFromReset). */
static void test_vocabulary_edges(void **state)
{
	struct ism_retry_state rs;

	(void)state;
	rs = state_for(ISM_RETRY_GATEWAY_ERROR, NULL, 0);
	assert_false(ism_retry_wanted(&rs, ISM_FAIL_NONE, 501));
	assert_true(ism_retry_wanted(&rs, ISM_FAIL_NONE, 503));
	assert_false(ism_retry_wanted(&rs, ISM_FAIL_NONE, 505));
	assert_true(ism_retry_wanted(&rs, ISM_FAIL_TIMEOUT, 0));
	rs = state_for(ISM_RETRY_RESET, NULL, 0);
	assert_true(ism_retry_wanted(&rs, ISM_FAIL_TIMEOUT, 0));
	assert_true(ism_retry_wanted(&rs, ISM_FAIL_PROTOCOL, 0));
	rs = state_for(ISM_RETRY_CONNECT_FAILURE, NULL, 0);
	assert_false(ism_retry_wanted(&rs, ISM_FAIL_TIMEOUT, 0));
	assert_false(ism_retry_wanted(&rs, ISM_FAIL_RESET, 0));
}

static void test_backoff(void **state)
{
	(void)state;
	/* Envoy's JitteredExponentialBackOffStrategy: retry 1 [0, 25), retry 2
	 * [0, 50), retry 3 [0, 100), retry 4 [0, 200), later capped at 250. */
	assert_int_equal(ism_retry_backoff_ms(25, 1, 0), 0);
	assert_int_equal(ism_retry_backoff_ms(25, 1, UINT32_MAX), 24);
	assert_int_equal(ism_retry_backoff_ms(25, 2, UINT32_MAX), 49);
	assert_int_equal(ism_retry_backoff_ms(25, 3, UINT32_MAX), 99);
	assert_int_equal(ism_retry_backoff_ms(25, 4, UINT32_MAX), 199);
	assert_int_equal(ism_retry_backoff_ms(25, 5, UINT32_MAX), 249);
	assert_int_equal(ism_retry_backoff_ms(25, 30, UINT32_MAX), 249);
	assert_int_equal(ism_retry_backoff_ms(25, 0, UINT32_MAX), 0);
	/* retries.backoff: 100 ms; a base so long that ten times it would not fit
	 * 32 bits waits the longest that does. */
	assert_int_equal(ism_retry_backoff_ms(100, 2, UINT32_MAX), 199);
	assert_int_equal(ism_retry_backoff_ms(UINT32_MAX, 5, UINT32_MAX), UINT32_MAX - 1);
}

static bool avoids(const struct ism_retry_state *rs, uint32_t id)
{
	const uint32_t *ids;
	uint32_t n = ism_retry_avoid(rs, &ids);

	for (uint32_t i = 0; i < n; i++)
		if (ids[i] == id)
			return true;
	return false;
}

/* Retries avoid the endpoints tried (the last four) and, under
 * retryRemoteLocalities, the priorities tried, updated every second attempt
 * as Istio's previous_priorities (update_frequency 2). */
static void test_tried(void **state)
{
	struct ism_retry r = {.attempts = 9, .ignore_previous_hosts = 1, .remote_localities = 1};
	struct ism_retry_state rs;
	const uint32_t *ids;

	(void)state;
	ism_retry_state_init(&rs, &r);
	assert_int_equal(ism_retry_avoid(&rs, &ids), 0);
	assert_int_equal(ism_retry_prio_skip(&rs), 0);
	ism_retry_tried(&rs, 5, 0);
	assert_int_equal(rs.tries, 1);
	assert_int_equal(ism_retry_prio_skip(&rs), 0);
	assert_true(avoids(&rs, 5));
	ism_retry_tried(&rs, 6, 0);
	assert_int_equal(ism_retry_prio_skip(&rs), 1);
	ism_retry_tried(&rs, 7, 1);
	assert_int_equal(ism_retry_prio_skip(&rs), 1); /* kept between updates */
	ism_retry_tried(&rs, 7, 1);
	assert_int_equal(ism_retry_prio_skip(&rs), 3);
	ism_retry_tried(&rs, 8, 2);
	ism_retry_tried(&rs, 9, 2);
	assert_int_equal(ism_retry_prio_skip(&rs), 7);
	assert_int_equal(ism_retry_avoid(&rs, &ids), ISM_RETRY_TRIED);
	assert_true(avoids(&rs, 7) && avoids(&rs, 8) && avoids(&rs, 9));
	assert_false(avoids(&rs, 5) || avoids(&rs, 6));

	r.remote_localities = 0;
	r.ignore_previous_hosts = 0;
	ism_retry_state_init(&rs, &r);
	ism_retry_tried(&rs, 5, 0);
	ism_retry_tried(&rs, 6, 1);
	assert_int_equal(ism_retry_prio_skip(&rs), 0);
	assert_int_equal(ism_retry_avoid(&rs, &ids), 0);
}

static int64_t parse(const char *v)
{
	return ism_grpc_timeout_parse(v, strlen(v));
}

static const char *fmt(uint64_t ms)
{
	static char out[ISM_GRPC_TIMEOUT_MAX];
	size_t n = ism_grpc_timeout_fmt(out, ms);

	assert_int_equal(n, strlen(out));
	return out;
}

/* grpc-timeout as Envoy's Grpc::Common reads and writes it. */
static void test_grpc_timeout(void **state)
{
	(void)state;
	assert_int_equal(parse("2H"), 7200000);
	assert_int_equal(parse("3M"), 180000);
	assert_int_equal(parse("5S"), 5000);
	assert_int_equal(parse("700m"), 700);
	assert_int_equal(parse("1500u"), 2); /* rounded up */
	assert_int_equal(parse("1000u"), 1);
	assert_int_equal(parse("1n"), 1);
	assert_int_equal(parse("0S"), 0);
	assert_int_equal(parse("99999999m"), 99999999);
	assert_int_equal(parse("100000000m"), -1); /* 9 digits */
	assert_int_equal(parse("5"), -1);
	assert_int_equal(parse("S"), -1);
	assert_int_equal(parse("5s"), -1);
	assert_int_equal(parse("-5S"), -1);
	assert_int_equal(parse("5 S"), -1);
	assert_string_equal(fmt(700), "700m");
	assert_string_equal(fmt(0), "0m");
	assert_string_equal(fmt(99999999), "99999999m");
	assert_string_equal(fmt(100000000), "100000S");
	assert_string_equal(fmt(UINT64_MAX), "99999999H");
}

static void test_outcomes(void **state)
{
	(void)state;
	assert_int_equal(ism_outcome_of(NULL, ISM_FAIL_NONE, 200), ISM_OUTCOME_SUCCESS);
	assert_int_equal(ism_outcome_of(NULL, ISM_FAIL_NONE, 404), ISM_OUTCOME_SUCCESS);
	assert_int_equal(ism_outcome_of(NULL, ISM_FAIL_NONE, 500), ISM_OUTCOME_5XX);
	assert_int_equal(ism_outcome_of(NULL, ISM_FAIL_NONE, 502), ISM_OUTCOME_GATEWAY);
	assert_int_equal(ism_outcome_of(NULL, ISM_FAIL_NONE, 503), ISM_OUTCOME_GATEWAY);
	assert_int_equal(ism_outcome_of(NULL, ISM_FAIL_NONE, 504), ISM_OUTCOME_GATEWAY);
	assert_int_equal(ism_outcome_of(NULL, ISM_FAIL_NONE, 505), ISM_OUTCOME_5XX);
	assert_int_equal(ism_outcome_of(NULL, ISM_FAIL_CONNECT, 0), ISM_OUTCOME_LOCAL);
	assert_int_equal(ism_outcome_of(NULL, ISM_FAIL_RESET, 0), ISM_OUTCOME_LOCAL);
	assert_int_equal(ism_outcome_of(NULL, ISM_FAIL_TIMEOUT, 0), ISM_OUTCOME_LOCAL);
}

/* outlierDetectionHttpErrorCodes: only the listed statuses are errors, a 4xx
 * one as 500, a 5xx one as itself (Envoy's router under an error matcher). */
static void test_outcomes_error_codes(void **state)
{
	struct ism_outlier od = {.has_error_codes = 1};

	(void)state;
	od.error_codes[429 / 64] |= UINT64_C(1) << (429 % 64);
	od.error_codes[503 / 64] |= UINT64_C(1) << (503 % 64);
	assert_int_equal(ism_outcome_of(&od, ISM_FAIL_NONE, 429), ISM_OUTCOME_5XX);
	assert_int_equal(ism_outcome_of(&od, ISM_FAIL_NONE, 503), ISM_OUTCOME_GATEWAY);
	assert_int_equal(ism_outcome_of(&od, ISM_FAIL_NONE, 500), ISM_OUTCOME_SUCCESS);
	assert_int_equal(ism_outcome_of(&od, ISM_FAIL_NONE, 502), ISM_OUTCOME_SUCCESS);
	assert_int_equal(ism_outcome_of(&od, ISM_FAIL_NONE, 200), ISM_OUTCOME_SUCCESS);
	assert_int_equal(ism_outcome_of(&od, ISM_FAIL_NONE, 999), ISM_OUTCOME_SUCCESS);
	/* Local failures are not statuses: the list does not change them. */
	assert_int_equal(ism_outcome_of(&od, ISM_FAIL_CONNECT, 0), ISM_OUTCOME_LOCAL);
	od.has_error_codes = 0;
	assert_int_equal(ism_outcome_of(&od, ISM_FAIL_NONE, 429), ISM_OUTCOME_SUCCESS);
	assert_int_equal(ism_outcome_of(&od, ISM_FAIL_NONE, 500), ISM_OUTCOME_5XX);
}

static void test_hash_keys(void **state)
{
	struct ism_http_header h[] = {
	    {"X-User", 6, "alice", 5},
	    {"Cookie", 6, "a=1; session=xyz; b=2; empty=; quoted=\"\"", 40},
	    {"x-two", 5, "a", 1},
	    {"X-Two", 5, "b", 1},
	};
	struct ism_http_req req = {.headers = h,
				   .n_headers = 4,
				   .host = "shop.example:8080",
				   .host_len = 17,
				   .query = "k=v&id=42&e",
				   .query_len = 11};
	struct ism_router_scratch *rs = ism_router_scratch_new();
	struct ism_hash_policy hp = {0};
	uint64_t hash = 0, ab;

	(void)state;
	assert_non_null(rs);
	hp.on = ISM_HASH_HEADER;
	hp.name = (struct ism_str){"x-user", 6};
	assert_int_equal(ism_hash_key(&hp, &req, "10.0.0.1", rs, &hash), 1);
	assert_true(hash == ism_hash64("alice", 5, 0));
	hp.name = (struct ism_str){"x-none", 6};
	assert_int_equal(ism_hash_key(&hp, &req, "10.0.0.1", rs, &hash), 0);
	/* every value of a repeated field, in any order (Envoy sorts them) */
	hp.name = (struct ism_str){"x-two", 5};
	assert_int_equal(ism_hash_key(&hp, &req, "", rs, &ab), 1);
	assert_true(ab != ism_hash64("a", 1, 0) && ab != ism_hash64("b", 1, 0));
	h[2].value = "b";
	h[3].value = "a";
	assert_int_equal(ism_hash_key(&hp, &req, "", rs, &hash), 1);
	assert_true(hash == ab);
	h[3].value = "c";
	assert_int_equal(ism_hash_key(&hp, &req, "", rs, &hash), 1);
	assert_true(hash != ab);
	/* host and :authority: the request's authority, over HTTP/2 too (no
	 * Host field here); :method */
	hp.name = (struct ism_str){"host", 4};
	assert_int_equal(ism_hash_key(&hp, &req, "", rs, &hash), 1);
	assert_true(hash == ism_hash64("shop.example:8080", 17, 0));
	hp.name = (struct ism_str){":authority", 10};
	assert_int_equal(ism_hash_key(&hp, &req, "", rs, &hash), 1);
	assert_true(hash == ism_hash64("shop.example:8080", 17, 0));
	hp.name = (struct ism_str){":status", 7};
	assert_int_equal(ism_hash_key(&hp, &req, "", rs, &hash), 0);

	hp.on = ISM_HASH_COOKIE;
	hp.name = (struct ism_str){"session", 7};
	assert_int_equal(ism_hash_key(&hp, &req, "", rs, &hash), 1);
	assert_true(hash == ism_hash64("xyz", 3, 0));
	hp.name = (struct ism_str){"sess", 4};
	assert_int_equal(ism_hash_key(&hp, &req, "", rs, &hash), 0);
	/* an empty value is none (Envoy): a cookie is issued instead */
	hp.name = (struct ism_str){"empty", 5};
	assert_int_equal(ism_hash_key(&hp, &req, "", rs, &hash), 0);
	hp.name = (struct ism_str){"quoted", 6};
	assert_int_equal(ism_hash_key(&hp, &req, "", rs, &hash), 0);

	hp.on = ISM_HASH_SOURCE_IP;
	assert_int_equal(ism_hash_key(&hp, &req, "127.0.0.9", rs, &hash), 1);
	assert_true(hash == ism_hash64("127.0.0.9", 9, 0));

	hp.on = ISM_HASH_QUERY_PARAM;
	hp.name = (struct ism_str){"id", 2};
	assert_int_equal(ism_hash_key(&hp, &req, "", rs, &hash), 1);
	assert_true(hash == ism_hash64("42", 2, 0));
	hp.name = (struct ism_str){"e", 1};
	assert_int_equal(ism_hash_key(&hp, &req, "", rs, &hash), 1);
	assert_true(hash == ism_hash64("", 0, 0));
	hp.name = (struct ism_str){"i", 1};
	assert_int_equal(ism_hash_key(&hp, &req, "", rs, &hash), 0);
	ism_router_scratch_free(rs);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_istio_default_policy),
	    cmocka_unit_test(test_vocabulary),
	    cmocka_unit_test(test_vocabulary_edges),
	    cmocka_unit_test(test_backoff),
	    cmocka_unit_test(test_tried),
	    cmocka_unit_test(test_grpc_timeout),
	    cmocka_unit_test(test_outcomes),
	    cmocka_unit_test(test_outcomes_error_codes),
	    cmocka_unit_test(test_hash_keys),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
