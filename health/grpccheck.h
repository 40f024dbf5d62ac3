/* SPDX-License-Identifier: Apache-2.0 */
/* A gRPC health check's exchange (grpc.health.v1.Health/Check), as Envoy's gRPC
 * health checker makes it: one HTTP/2 stream on a connection of its own,
 * libnghttp2 as the frame codec over memory buffers. No sockets here: the
 * caller writes the request bytes and feeds in what it reads, until a verdict.
 * Envoy's verdicts: a response with grpc-status 0 and the status SERVING
 * passes; any other answer (another HTTP status, not gRPC, another serving
 * status, a non-zero grpc-status, a malformed payload) is an active failure,
 * which marks the endpoint unhealthy at once; a reset stream, a GOAWAY with an
 * error, a protocol error or a closed connection is a network failure. */
#ifndef ISM_HEALTH_GRPCCHECK_H
#define ISM_HEALTH_GRPCCHECK_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum ism_grpc_verdict {
	ISM_GRPC_MORE = 0, /* no verdict yet: feed more */
	ISM_GRPC_SERVING,  /* passed */
	ISM_GRPC_FAILED,   /* an answer that is not SERVING: active failure */
	ISM_GRPC_BROKEN,   /* no answer: network failure */
};

struct ism_grpc_check;

/* A check asking authority (the :authority) for service ("" the server as a
 * whole), over TLS or not (the :scheme), with the check's timeout as its
 * grpc-timeout. NULL when out of memory. */
struct ism_grpc_check *ism_grpc_check_new(const char *authority, const char *service, bool tls,
					  uint32_t timeout_ms);

/* The bytes to write, all of them so far: the connection preface, SETTINGS,
 * the request's HEADERS and its one DATA frame, then what the session answers
 * to what ism_grpc_check_in was given (SETTINGS and PING acknowledgements, as
 * RFC 9113 requires; WINDOW_UPDATEs); the caller writes on from where it
 * stopped. They stay valid until the next ism_grpc_check_in. */
void ism_grpc_check_request(const struct ism_grpc_check *g, const uint8_t **p, size_t *n);

/* Feeds n bytes read (n 0: the connection ended). Returns the verdict once
 * there is one (then why says what the answer was, for the log), else
 * ISM_GRPC_MORE, with what the session answers added to the bytes to write
 * (more than 64 KiB of them in all ends the check as broken: a flood of
 * control frames). */
enum ism_grpc_verdict ism_grpc_check_in(struct ism_grpc_check *g, const uint8_t *p, size_t n,
					char *why, size_t why_len);

void ism_grpc_check_free(struct ism_grpc_check *g);

#endif
