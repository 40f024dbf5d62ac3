/* SPDX-License-Identifier: Apache-2.0 */
#include "worker/policy.h"

#include <string.h>
#include <strings.h>

#include "worker/hash.h"
#include "worker/router.h"

void ism_retry_state_init(struct ism_retry_state *rs, const struct ism_retry *r)
{
	memset(rs, 0, sizeof(*rs));
	rs->retry_on = r->retry_on;
	rs->n_codes = (uint8_t)(r->n_codes < 8 ? r->n_codes : 8);
	for (uint32_t i = 0; i < rs->n_codes; i++)
		rs->codes[i] = r->codes[i];
	rs->retries_left = (uint8_t)(r->attempts < 255 ? r->attempts : 255);
	rs->ignore_previous = r->ignore_previous_hosts;
	rs->remote_localities = r->remote_localities;
	rs->per_try_ms = r->per_try_timeout_ms;
	rs->backoff_base_ms = r->backoff_base_ms ? r->backoff_base_ms : 25;
}

static int code_listed(const struct ism_retry_state *rs, int status)
{
	for (uint32_t i = 0; i < rs->n_codes; i++)
		if (rs->codes[i] == status)
			return 1;
	return 0;
}

int ism_retry_wanted(const struct ism_retry_state *rs, enum ism_failure f, int status)
{
	uint32_t on = rs->retry_on;

	switch (f) {
	case ISM_FAIL_CONNECT:
		/* 5xx and gateway-error include connect failures in Envoy; a connect
		 * failure is also a reset before the request was sent. */
		return (on & (ISM_RETRY_CONNECT_FAILURE | ISM_RETRY_5XX | ISM_RETRY_GATEWAY_ERROR |
			      ISM_RETRY_RESET_BEFORE_REQUEST | ISM_RETRY_RESET)) != 0;
	case ISM_FAIL_RESET:
	case ISM_FAIL_PROTOCOL:
		/* Envoy counts a reset as a 5xx, and as a gateway error (its
		 * RetryPolicy's wouldRetryFromReset); a malformed response is its
		 * codec's protocol-error reset. */
		return (on & (ISM_RETRY_RESET | ISM_RETRY_5XX | ISM_RETRY_GATEWAY_ERROR)) != 0;
	case ISM_FAIL_REFUSED:
		/* Envoy: refused-stream, and the resets of reset, 5xx and
		 * gateway-error. */
		return (on & (ISM_RETRY_REFUSED_STREAM | ISM_RETRY_RESET | ISM_RETRY_5XX |
			      ISM_RETRY_GATEWAY_ERROR)) != 0;
	case ISM_FAIL_TIMEOUT:
		/* Envoy retries a per-try timeout under 5xx, gateway-error and reset. */
		return (on & (ISM_RETRY_5XX | ISM_RETRY_GATEWAY_ERROR | ISM_RETRY_RESET)) != 0;
	case ISM_FAIL_NONE:
		break;
	}
	if ((on & ISM_RETRY_5XX) && status >= 500)
		return 1;
	if ((on & ISM_RETRY_GATEWAY_ERROR) && status >= 502 && status <= 504)
		return 1;
	if ((on & ISM_RETRY_RETRIABLE_4XX) && status == 409)
		return 1;
	if ((on & ISM_RETRY_RETRIABLE_STATUS_CODES) && code_listed(rs, status))
		return 1;
	return 0;
}

int ism_retry_wanted_grpc(const struct ism_retry_state *rs, int grpc)
{
	switch (grpc) {
	case 1:
		return (rs->retry_on & ISM_RETRY_GRPC_CANCELLED) != 0;
	case 4:
		return (rs->retry_on & ISM_RETRY_GRPC_DEADLINE_EXCEEDED) != 0;
	case 8:
		return (rs->retry_on & ISM_RETRY_GRPC_RESOURCE_EXHAUSTED) != 0;
	case 13:
		return (rs->retry_on & ISM_RETRY_GRPC_INTERNAL) != 0;
	case 14:
		return (rs->retry_on & ISM_RETRY_GRPC_UNAVAILABLE) != 0;
	default:
		return 0;
	}
}

int ism_grpc_to_http(int grpc)
{
	static const int map[17] = {
	    200, /* OK */
	    499, /* CANCELLED */
	    500, /* UNKNOWN */
	    400, /* INVALID_ARGUMENT */
	    504, /* DEADLINE_EXCEEDED */
	    404, /* NOT_FOUND */
	    409, /* ALREADY_EXISTS */
	    403, /* PERMISSION_DENIED */
	    429, /* RESOURCE_EXHAUSTED */
	    400, /* FAILED_PRECONDITION */
	    409, /* ABORTED */
	    400, /* OUT_OF_RANGE */
	    501, /* UNIMPLEMENTED */
	    500, /* INTERNAL */
	    503, /* UNAVAILABLE */
	    500, /* DATA_LOSS */
	    401, /* UNAUTHENTICATED */
	};

	return grpc >= 0 && grpc < 17 ? map[grpc] : 500;
}

/* gRPC's status for an HTTP status isthmus answers with (Envoy's
 * Grpc::Utility::httpToGrpcStatus). */
int ism_http_to_grpc(int status)
{
	switch (status) {
	case 400:
		return 13; /* INTERNAL */
	case 401:
		return 16; /* UNAUTHENTICATED */
	case 403:
		return 7; /* PERMISSION_DENIED */
	case 404:
		return 12; /* UNIMPLEMENTED */
	case 429:
	case 502:
	case 503:
	case 504:
		return 14; /* UNAVAILABLE */
	default:
		return 2; /* UNKNOWN */
	}
}

uint32_t ism_retry_backoff_ms(uint32_t base_ms, uint32_t n, uint32_t rnd)
{
	uint64_t span = n == 0 ? 0 : (uint64_t)base_ms << (n < 20 ? n - 1 : 19);

	if (span > 10ull * base_ms)
		span = 10ull * base_ms;
	if (span > UINT32_MAX)
		span = UINT32_MAX;
	return (uint32_t)(((uint64_t)rnd * span) >> 32);
}

enum ism_outcome ism_outcome_of(const struct ism_outlier *od, enum ism_failure f, int status)
{
	if (f != ISM_FAIL_NONE)
		return ISM_OUTCOME_LOCAL;
	/* Envoy's error matcher: a listed status is an error, counted as itself
	 * when it is a 5xx and as 500 otherwise; any other is a success. */
	if (od != NULL && od->has_error_codes) {
		bool listed = status >= 0 && status <= ISM_STATUS_MAX &&
			      (od->error_codes[status / 64] >> (status % 64) & 1);

		status = !listed ? 200 : status >= 500 ? status : 500;
	}
	if (status >= 502 && status <= 504)
		return ISM_OUTCOME_GATEWAY;
	if (status >= 500)
		return ISM_OUTCOME_5XX;
	return ISM_OUTCOME_SUCCESS;
}

/* A field's hash as Envoy's header hash takes it: every value of the field,
 * in any order (Envoy sorts them before hashing them in turn; a sum of their
 * hashes does not depend on the order either). A pseudo-header, and host
 * (Envoy's name for :authority), as the router sees them. */
static int header_hash(const struct ism_str *name, const struct ism_http_req *req,
		       struct ism_router_scratch *rs, uint64_t *hash)
{
	uint64_t sum = 0;
	const char *v;
	size_t len, n = 0;

	if (name->p[0] == ':' || strcmp(name->p, "host") == 0) {
		if (!ism_router_header(req, name, rs, &v, &len))
			return 0;
		*hash = ism_hash64(v, len, 0);
		return 1;
	}
	for (size_t i = 0; i < req->n_headers; i++) {
		const struct ism_http_header *h = &req->headers[i];

		if (h->name_len != name->len || strncasecmp(h->name, name->p, name->len) != 0)
			continue;
		*hash = ism_hash64(h->value, h->value_len, 0);
		sum += *hash;
		n++;
	}
	if (n > 1)
		*hash = ism_hash64(&sum, sizeof(sum), n);
	return n > 0;
}

int ism_hash_key(const struct ism_hash_policy *hp, const struct ism_http_req *req, const char *peer,
		 struct ism_router_scratch *rs, uint64_t *hash)
{
	const char *v = NULL;
	size_t vlen = 0;
	int found = 0;

	switch (hp->on) {
	case ISM_HASH_HEADER:
		return header_hash(&hp->name, req, rs, hash);
	case ISM_HASH_COOKIE:
		/* An empty value is no value (Envoy's cookie hash): with a ttl,
		 * a cookie is issued. */
		for (size_t i = 0; i < req->n_headers && !found; i++) {
			const struct ism_http_header *h = &req->headers[i];

			if (h->name_len == 6 && strncasecmp(h->name, "cookie", 6) == 0)
				found = ism_http_cookie_value(h->value, h->value_len, hp->name.p,
							      hp->name.len, &v, &vlen) &&
					vlen > 0;
		}
		break;
	case ISM_HASH_SOURCE_IP:
		v = peer;
		vlen = strlen(peer);
		found = vlen > 0;
		break;
	case ISM_HASH_QUERY_PARAM:
		found = ism_http_query_value(req->query, req->query_len, hp->name.p, hp->name.len,
					     &v, &vlen);
		break;
	default:
		break;
	}
	if (found)
		*hash = ism_hash64(v, vlen, 0);
	return found;
}
