/* SPDX-License-Identifier: Apache-2.0 */
/* gRPC-Web (grpc/grpc doc/PROTOCOL-WEB.md) on a Gateway server of protocol
 * GRPC-WEB, as Envoy's grpc_web filter that Istio adds to such a port: a
 * request of content-type application/grpc-web (+proto), or its base64 text
 * form application/grpc-web-text (+proto), goes upstream as gRPC
 * (application/grpc, te: trailers, grpc-accept-encoding, no content-length;
 * a text body decoded); its response comes back as gRPC-Web: content-type
 * application/grpc-web+proto (application/grpc-web-text+proto when the
 * request's Accept asks for text, the body then base64-encoded), and the
 * trailers as the body's last frame (a 0x80 flag byte, a 32-bit length,
 * "name:value\r\n" for each), so that HTTP/1.1 clients and browsers, which
 * see no trailers, get them. Pure: the stream (worker/stream.c) calls these
 * on its request and response. Private to worker/. */
#ifndef ISM_WORKER_GRPCWEB_H
#define ISM_WORKER_GRPCWEB_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "worker/http1.h"
#include "worker/sock.h"

/* What a stream does for gRPC-Web (bits of ism_gw.flags). */
enum ism_gw_flags {
	ISM_GW_ON = 1,	     /* a gRPC-Web request: translated both ways */
	ISM_GW_TEXT_IN = 2,  /* its body is base64 (grpc-web-text) */
	ISM_GW_TEXT_OUT = 4, /* the response's body is to be base64 (Accept) */
};

/* Base64 across the pieces of a body: the bytes of an unfinished group. */
struct ism_gw_b64 {
	char carry[4];
	uint8_t n;
};

/* The most of a body that is not gRPC kept for its grpc-message (Envoy's
 * MAX_BUFFERED_PLAINTEXT_LENGTH); the rest is dropped. */
#define ISM_GW_MSG_MAX 16384u

/* A gRPC-Web stream's state (ism_stream.gw). */
struct ism_gw {
	uint8_t flags;		   /* enum ism_gw_flags */
	struct ism_gw_b64 in, out; /* the request's decoding, the response's encoding */
	struct ism_buf buf;	   /* what the latest piece of a body became */
	struct ism_buf trl;	   /* the trailers frame, until the body's end */
	/* A response that is neither gRPC nor gRPC-Web (an upstream's error
	 * page; ism_gw_transform): its head waits for its body, whose first
	 * ISM_GW_MSG_MAX bytes become its grpc-message. */
	uint8_t held;
	uint16_t status;     /* the held head's */
	struct ism_buf head; /* its fields: name NUL value NUL ... */
	struct ism_buf msg;  /* its body so far */
};

void ism_gw_free(struct ism_gw *g);

/* The flags of a request with fields h[0..n) (0: not gRPC-Web, left alone),
 * as Envoy's filter tells them: the content-type one of gRPC-Web's four (any
 * case, parameters ignored), the text response from Accept. */
uint8_t ism_gw_request(const struct ism_http_header *h, size_t n);

/* The request's fields as the upstream gets them, in place: content-type
 * application/grpc, no content-length, grpc-accept-encoding (Envoy's
 * "identity,deflate,gzip") added when the client sent none and *n < cap.
 * te: trailers goes with every gRPC request to an HTTP/2 upstream already. */
void ism_gw_request_fields(struct ism_http_header *h, size_t *n, size_t cap);

/* The response's content-type for flags. */
const char *ism_gw_content_type(uint8_t flags);

/* Decodes len bytes of base64 text (after what c carried) onto out: every
 * whole group of 4 (padding ends a group, so that separately encoded pieces
 * follow each other), the rest carried; at the end (final) nothing may be
 * left. 0, -EINVAL on what is not base64, -ENOMEM. */
int ism_gw_decode(struct ism_gw_b64 *c, const char *in, size_t len, bool final,
		  struct ism_buf *out);

/* Encodes len bytes (after what c carried) onto out as base64: whole groups
 * of 3 bytes, the rest carried, or at the end (final) all, padded. 0 or
 * -ENOMEM. */
int ism_gw_encode(struct ism_gw_b64 *c, const char *in, size_t len, bool final,
		  struct ism_buf *out);

/* Whether a response (status, fields h[0..n); done: its head ends it) is
 * turned into a gRPC error, as Envoy's filter does: unless it is gRPC (200
 * with a gRPC content type; with done, a grpc-status) or gRPC-Web's proto
 * (200 with application/grpc-web or +proto), and unless its head ends it. */
bool ism_gw_transform(int status, const struct ism_http_header *h, size_t n, bool done);

/* The fields of a gRPC error onto out (name NUL value NUL ...): content-type
 * ct, grpc-status gs and, with with_msg, grpc-message: msg, then those of
 * h[0..n) but its framing, content type and gRPC status (and with with_msg
 * its message): a head cut at ISM_MAX_HDRS keeps these. msg is percent-encoded as
 * gRPC's spec says (bytes below 0x20, from 0x7e up and '%' as %XX, as Envoy's
 * encoder). 0 or -ENOMEM. */
int ism_grpc_error_fields(const char *ct, const char *gs, const struct ism_http_header *h, size_t n,
			  const char *msg, size_t len, bool with_msg, struct ism_buf *out);

/* The fields of the turned response's head onto out: ism_grpc_error_fields
 * with ism_gw_content_type, the grpc-status ism_http_to_grpc gives status and
 * body as grpc-message. 0 or -ENOMEM. */
int ism_gw_error_fields(uint8_t flags, int status, const struct ism_http_header *h, size_t n,
			const char *body, size_t len, struct ism_buf *out);

/* The trailers frame of h[0..n) onto out: 0x80, the length (big-endian),
 * then "name:value\r\n" for each field, names lowercase. 0 or -ENOMEM. */
int ism_gw_trailers(const struct ism_http_header *h, size_t n, struct ism_buf *out);

#endif
