/* SPDX-License-Identifier: Apache-2.0 */
/* The messages of a gRPC external authorizer (Envoy's
 * envoy.service.auth.v3.Authorization/Check, as its ext_authz filter speaks
 * it): the CheckRequest made of a request, as Envoy's CheckRequestUtils fills
 * it, and the CheckResponse read, as its gRPC client reads it (an invalid
 * field name or value makes the whole answer invalid). Pure functions over
 * lib/pb.h; worker/extauthz.c sends and applies them. Private to worker/. */
#ifndef ISM_WORKER_XAGRPC_H
#define ISM_WORKER_XAGRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include "lib/pb.h"
#include "worker/http1.h"

/* The gRPC method a check calls. */
#define ISM_XA_GRPC_PATH "/envoy.service.auth.v3.Authorization/Check"

/* What a CheckRequest says (every string borrowed; NULL or "": left out). */
struct ism_xa_grpc_req {
	const struct ism_http_req *req; /* method, path, query, host, fields */
	const char *scheme;		/* "http" or "https" */
	const char *protocol;		/* "HTTP/1.0", "HTTP/1.1", "HTTP/2" */
	uint64_t id;
	int64_t size; /* the body's length; -1: unknown */
	struct timespec time;
	const char *src_ip, *src_principal;
	uint16_t src_port;
	const char *dst_ip, *dst_principal;
	uint16_t dst_port;
	const char *sni;
	/* includeRequestBodyInCheck: the body's bytes the check carries (NULL:
	 * none, and no x-envoy-auth-partial-body), as raw_body rather than
	 * body; partial: the request's body has more */
	const char *body;
	uint32_t body_len;
	bool raw_body, partial;
};

/* The field Envoy's check carries to say whether the body in it is the
 * request's whole body ("false") or its start ("true"); a client's own
 * field of that name is never passed on. */
#define ISM_XA_PARTIAL_BODY "x-envoy-auth-partial-body"

/* Whether field i of req is in the check: the first of its name (without
 * regard to case), and not a client's ISM_XA_PARTIAL_BODY. */
bool ism_xa_field_first(const struct ism_http_req *req, size_t i);
/* The index of the next field after j named as field i; req->n_headers:
 * none. With ism_xa_field_first, the values of each name joined once. */
size_t ism_xa_field_next(const struct ism_http_req *req, size_t i, size_t j);

/* in as a gRPC message (the 5-byte prefix, then the CheckRequest) into out;
 * out->err when memory ran out. */
void ism_xa_grpc_request(const struct ism_xa_grpc_req *in, struct ism_pbw *out);

/* A field of an answer (HeaderValueOption; a query parameter: name is its
 * key). */
struct ism_xa_field_opt {
	const char *name, *value;
	uint32_t name_len, value_len;
	bool append; /* HeaderValueOption.append.value */
};

/* A list of an answer (malloc'd as it grows; the answer's size bounds it). */
struct ism_xa_list {
	uint32_t n, cap;
	struct ism_xa_field_opt *f;
};

/* A CheckResponse read; its strings point into the message. */
struct ism_xa_grpc_resp {
	bool ok;	 /* status.code is 0 (OK) */
	uint16_t status; /* denied: denied_response.status.code, 403 when 0 or unset */
	const char *body;
	uint32_t body_len;
	struct ism_xa_list hdrs;   /* ok: the request's fields; denied: the answer's */
	struct ism_xa_list resp;   /* ok: response_headers_to_add */
	struct ism_xa_list remove; /* ok: headers_to_remove (names) */
	struct ism_xa_list qset;   /* ok: query_parameters_to_set */
	struct ism_xa_list qrm;	   /* ok: query_parameters_to_remove (keys) */
};

/* The body of a Check answer (its gRPC frames, len bytes) read into out: 0,
 * or -EINVAL when it is not one uncompressed CheckResponse with valid fields
 * (Envoy's error, or its rejected answer), -ENOMEM. Field names may be
 * pseudo-headers (":path"), which Envoy reads and does not apply. out's
 * lists go with ism_xa_grpc_resp_free, whatever the result. */
int ism_xa_grpc_response(const uint8_t *p, size_t len, struct ism_xa_grpc_resp *out);
void ism_xa_grpc_resp_free(struct ism_xa_grpc_resp *r);

#endif
