/* SPDX-License-Identifier: Apache-2.0 */
/* gRPC's timeout header (grpc-timeout: "TimeoutValue TimeoutUnit", at most 8
 * digits, then H, M, S, m, u or n), read and written as Envoy's
 * Grpc::Common reads and writes it; the status codes' names. */
#ifndef ISM_LIB_GRPC_H
#define ISM_LIB_GRPC_H

#include <stddef.h>
#include <stdint.h>

/* The longest value ism_grpc_timeout_fmt writes, with its NUL. */
#define ISM_GRPC_TIMEOUT_MAX 10

/* The timeout v (len bytes) says, in milliseconds (microseconds and
 * nanoseconds rounded up); -1 when it is not a gRPC timeout. */
int64_t ism_grpc_timeout_parse(const char *v, size_t len);

/* Writes ms as a grpc-timeout value into out (ISM_GRPC_TIMEOUT_MAX bytes):
 * milliseconds while they fit 8 digits, else seconds, minutes, hours (8 digit
 * hours at most). Returns its length. */
size_t ism_grpc_timeout_fmt(char *out, uint64_t ms);

/* The codes' names, indexed by code (0..16), then NULL: as gRPC's
 * (UPPER_SNAKE: "DEADLINE_EXCEEDED", Istio's grpcStatus and absl's), or as
 * Envoy's Grpc::Utility::grpcStatusToString ("DeadlineExceeded"). */
extern const char *const ism_grpc_names[18];
extern const char *const ism_grpc_camel_names[18];

#endif
