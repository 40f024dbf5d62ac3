/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP/1.1 message heads and chunked bodies: pure, incremental parsers.
 *
 * Contract (picohttpparser's): given the bytes received so far, a parser returns
 * the number of bytes of the complete head (> 0), ISM_HTTP_INCOMPLETE when more
 * bytes are needed (the caller calls again with the same start and more bytes),
 * or a negative ISM_HTTP_E* error. They allocate nothing, never read past len,
 * and keep pointers into the caller's buffer. Safe in any process. */
#ifndef ISM_WORKER_HTTP1_H
#define ISM_WORKER_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>
#include <sys/types.h>

#include "lib/ascii.h"
#include "lib/status.h"

#define ISM_HTTP_INCOMPLETE 0

/* Errors, each mapping to the status the client gets (ism_http_error_status). */
enum ism_http_err {
	ISM_HTTP_EBAD = -1,	       /* malformed or ambiguous: 400 */
	ISM_HTTP_EURI_TOO_LONG = -2,   /* 414 */
	ISM_HTTP_EHEAD_TOO_BIG = -3,   /* head over the byte limit: 431 */
	ISM_HTTP_ETE_UNSUPPORTED = -4, /* transfer coding other than chunked: 501 */
	ISM_HTTP_EVERSION = -5,	       /* not HTTP/1.0 or 1.1: 505 */
	ISM_HTTP_ENOHOST = -6,	       /* HTTP/1.1 without Host: 400 */
	ISM_HTTP_ETOO_MANY = -7,       /* more fields than the count limit: 431 */
};

/* What the answer to each error says (ism_http_error_why): its body, and the
 * reason the access log gives Envoy's detail of (worker/exchange.c). */
#define ISM_WHY_BAD_REQUEST  "bad request"
#define ISM_WHY_URI_TOO_LONG "URI too long"
#define ISM_WHY_HEAD_TOO_BIG "request header fields too large"
#define ISM_WHY_TOO_MANY     "too many request header fields"
#define ISM_WHY_TE	     "transfer coding not implemented"
#define ISM_WHY_VERSION	     "HTTP version not supported"
#define ISM_WHY_NO_HOST	     "missing Host header"
#define ISM_WHY_BAD_CHUNK    "malformed chunked body" /* the body's framing, after the head */

struct ism_http_header {
	const char *name;
	size_t name_len;
	const char *value; /* leading and trailing whitespace trimmed */
	size_t value_len;
};

/* Whether h is the field name (a lowercase literal), case aside. */
static inline bool ism_http_header_is(const struct ism_http_header *h, const char *name)
{
	size_t n = strlen(name);

	return h->name_len == n && strncasecmp(h->name, name, n) == 0;
}

/* Whether h is Date, as every response head asks: each of its bytes is a
 * letter, so OR 0x20 lowers it and makes no other byte one of them. */
static inline bool ism_http_header_is_date(const struct ism_http_header *h)
{
	const unsigned char *p = (const unsigned char *)h->name;

	return h->name_len == 4 && (p[0] | 0x20) == 'd' && (p[1] | 0x20) == 'a' &&
	       (p[2] | 0x20) == 't' && (p[3] | 0x20) == 'e';
}

/* The first of fields h[0, n) named name (len bytes, any case), or NULL. */
static inline const struct ism_http_header *ism_http_field(const struct ism_http_header *h,
							   size_t n, const char *name, size_t len)
{
	for (size_t i = 0; i < n; i++)
		if (h[i].name_len == len && strncasecmp(h[i].name, name, len) == 0)
			return &h[i];
	return NULL;
}

/* Whether one of fields h[0, n) is the field name (a literal). */
/* A value isthmus makes from what others gave it (an authorizer's answer, a
 * token's claim) holds no NUL, CR or LF, which would end the field or the
 * head on the wire (a request smuggled inside), as Envoy's
 * headerValueIsValid; nor any other control character but HTAB, which the
 * request parser refuses from a client (an HTTP/2 upstream's request is
 * read back with it). */
static inline bool ism_http_value_ok(const void *p, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = ((const unsigned char *)p)[i];

		if ((c < 0x20 && c != '\t') || c == 0x7f)
			return false;
	}
	return true;
}

static inline bool ism_http_has_field(const struct ism_http_header *h, size_t n, const char *name)
{
	return ism_http_field(h, n, name, strlen(name)) != NULL;
}

/* A gRPC content type, as Envoy's hasGrpcContentType: application/grpc, alone
 * or with +proto, +json...; application/grpc-web is not (its own protocol). */
static inline bool ism_http_grpc_type(const char *v, size_t len)
{
	return len >= 16 && strncasecmp(v, "application/grpc", 16) == 0 &&
	       (len == 16 || v[16] == '+');
}

enum ism_http_conn {
	ISM_HTTP_CONN_DEFAULT = 0, /* no Connection token: keep-alive in 1.1, close in 1.0 */
	ISM_HTTP_CONN_CLOSE,
	ISM_HTTP_CONN_KEEPALIVE,
};

/* Body framing, derived from the headers after the smuggling checks. */
struct ism_http_framing {
	int64_t content_length;	 /* -1: no Content-Length */
	uint8_t chunked;	 /* Transfer-Encoding: chunked (the only coding accepted) */
	uint8_t conn;		 /* enum ism_http_conn */
	uint8_t expect_continue; /* Expect: 100-continue (requests) */
	uint8_t upgrade;	 /* Upgrade header present */
	uint8_t conn_names;	 /* a Connection field names a field (besides close, keep-alive) */
};

struct ism_http_req {
	const char *method;
	size_t method_len;
	const char *target; /* request-target as sent (origin-form or absolute-form) */
	size_t target_len;
	const char *path; /* origin-form path, query excluded */
	size_t path_len;
	const char *query; /* after '?', excluded; NULL when none */
	size_t query_len;
	const char *host; /* Host header value (or the absolute-form authority); NULL if none */
	size_t host_len;
	int minor_version; /* 0 or 1 */
	uint8_t h2;	   /* an HTTP/2 request (worker/h2.c), minor_version 1 */
	size_t n_headers;
	struct ism_http_header *headers; /* caller's array, capacity given to the parser */
	struct ism_http_framing framing;
	/* What the gateway makes of two fields before it routes, as Envoy's
	 * connection manager sets them before its route lookup, so that routes,
	 * policies and hash keys read them as the upstream gets them
	 * (ism_router_header): X-Forwarded-Proto (the connection's scheme, in
	 * place of the client's unless xfp_trusted and it sent one), the
	 * address appended to X-Forwarded-For, and the X-Request-Id made (in
	 * place of the client's unless rid_kept and it sent one). NULL (the
	 * parser's): as sent. */
	const char *edge_xfp;
	const char *edge_peer;
	const char *edge_rid;
	uint8_t xfp_trusted;
	uint8_t rid_kept;
};

struct ism_http_limits {
	size_t max_head_bytes; /* request line + headers + final CRLF */
	size_t max_headers;    /* must not exceed the headers array's capacity */
	size_t max_uri_bytes;
};

/* Parses a request head. Smuggling defences: Content-Length together with
 * Transfer-Encoding, differing or malformed Content-Length values, a transfer
 * coding list not ending in chunked or naming anything else, obsolete line
 * folding, whitespace between a field name and the colon, invalid characters in
 * names, values, method or target, bare CR, a missing Host in HTTP/1.1 or
 * several Host headers: all ISM_HTTP_EBAD. */
ssize_t ism_http_parse_request(const char *buf, size_t len, const struct ism_http_limits *lim,
			       struct ism_http_req *req);

struct ism_http_resp {
	int status;
	int minor_version;
	const char *reason;
	size_t reason_len;
	size_t n_headers;
	struct ism_http_header *headers;
	struct ism_http_framing framing;
};

/* Parses a response head with the same rules (max_uri_bytes unused). */
ssize_t ism_http_parse_response(const char *buf, size_t len, const struct ism_http_limits *lim,
				struct ism_http_resp *resp);

/* Whether a response to this request method with this status carries a body
 * (not for HEAD, 1xx, 204, 304). */
int ism_http_resp_has_body(int status, const char *method, size_t method_len);
/* Whether req (what was read of it) is a HEAD, whose answers have no body. */
static inline bool ism_http_is_head(const struct ism_http_req *req)
{
	return req->method_len == 4 && memcmp(req->method, "HEAD", 4) == 0;
}

/* Whether a request method is idempotent (RFC 9110 9.2.2: GET, HEAD, OPTIONS,
 * TRACE, PUT, DELETE): sending the request twice has the effect of once. */
bool ism_http_method_idempotent(const char *method, size_t method_len);
/* Whether a request of method has no body to speak of (Envoy's
 * requestShouldHaveNoBody: GET, HEAD, DELETE, TRACE, CONNECT). */
bool ism_http_method_bodiless(const char *method, size_t method_len);

/* One parameter of a query ("a=1&b"), as sent (not decoded): its name, its
 * value (what follows its first '='; "" when it has none) and all of it. */
struct ism_query_param {
	const char *name, *value;
	size_t name_len, value_len, len;
};

/* The parameter at *q of a query that ends at end, *q moved past it and the
 * '&' after it: true and *p, or false at the end (*q NULL or at end). */
static inline bool ism_query_next(const char **q, const char *end, struct ism_query_param *p)
{
	const char *s = *q, *amp, *pe, *eq;

	if (s == NULL || s >= end)
		return false;
	amp = memchr(s, '&', (size_t)(end - s));
	pe = amp != NULL ? amp : end;
	eq = memchr(s, '=', (size_t)(pe - s));
	p->name = s;
	p->name_len = (size_t)((eq != NULL ? eq : pe) - s);
	p->value = eq != NULL ? eq + 1 : pe;
	p->value_len = (size_t)(pe - p->value);
	p->len = (size_t)(pe - s);
	*q = pe + 1;
	return true;
}

/* The value of the first query parameter called name in q ("a=1&b=2"; q NULL:
 * none; "b" and "b=" give ""), as sent (not decoded): 1 and *out, or 0. */
int ism_http_query_value(const char *q, size_t len, const char *name, size_t nlen, const char **out,
			 size_t *out_len);
/* The value of cookie name in a Cookie field's value v ("a=1; b=2"; a
 * quoted value without its quotes, as Envoy's parseCookies): 1 and *out, or
 * 0. */
int ism_http_cookie_value(const char *v, size_t len, const char *name, size_t nlen,
			  const char **out, size_t *out_len);

/* The HTTP status a parse error is answered with. */
int ism_http_error_status(ssize_t err);
/* The text of the answer to err (an ISM_WHY_* above). */
const char *ism_http_error_why(ssize_t err);

/* Whether h is a TE field naming "trailers" (the one TE Envoy passes on, as
 * "te: trailers": its sanitizeTEHeader; the rest of TE is hop-by-hop). */
bool ism_http_te_trailers(const struct ism_http_header *h);
/* What the request parser takes as a Host (a uri-host and an optional port,
 * RFC 9110 7.2) and as an origin-form target (a '/' then visible ASCII but
 * '#'): an HTTP/2 request's :authority and :path are held to the same. */
bool ism_http_host_ok(const char *h, size_t n);
bool ism_http_origin_target_ok(const char *t, size_t n);
int ism_http_named_in_connection(const struct ism_http_header *hdrs, size_t n, const char *name,
				 size_t len);
/* Whether a proxy forwards field h of a message (hdrs, n; f its framing) as it is: not
 * hop-by-hop, not named in a Connection field, and not Content-Length: the
 * framing a proxy sends is the one it parsed, never the sender's fields (a
 * Connection field naming Content-Length must not unframe the body). */
int ism_http_end_to_end(const struct ism_http_framing *f, const struct ism_http_header *hdrs,
			size_t n, const struct ism_http_header *h);

/* Chunked-body decoder (RFC 9112 7.1), strict: every line ends in CRLF, chunk
 * extensions must follow the grammar (they are validated and dropped), a size
 * line with its extensions is at most 1 KiB, the trailer section at most 16 KiB
 * (trailer fields are validated and dropped, as Envoy does by default). The
 * proxy re-frames what it forwards from the data this yields, so a peer never
 * sees the sender's framing. */
struct ism_chunked {
	uint8_t state;
	uint8_t digits;	      /* 1 once the size has a digit */
	uint32_t line_len;    /* bytes of the current size line (bounded) */
	uint32_t trailer_len; /* bytes of the trailer section so far (bounded) */
	uint64_t remaining;   /* bytes left in the current chunk's data */
};

enum {
	ISM_CHUNK_MORE = 0, /* the body goes on */
	ISM_CHUNK_END = 1,  /* the last chunk and the trailer section were read */
};

void ism_chunked_init(struct ism_chunked *c);
/* Consumes buf[0, len) up to and including the next run of chunk data, and stops
 * there: *data and *data_len give that run (inside the consumed bytes; *data_len 0
 * when the call found none). Returns ISM_CHUNK_MORE with *consumed the bytes used
 * (all len when no data run stopped it), ISM_CHUNK_END when the body ended within
 * them (*consumed the bytes that belong to it; later calls consume nothing), or
 * ISM_HTTP_EBAD on malformed framing (sticky). */
int ism_chunked_next(struct ism_chunked *c, const char *buf, size_t len, size_t *consumed,
		     const char **data, size_t *data_len);
/* The same without the data: consumes up to len bytes; 1 when the body ended
 * (*consumed the bytes that belong to it), 0 when all len bytes were consumed and
 * more are needed, ISM_HTTP_EBAD on malformed framing. */
int ism_chunked_scan(struct ism_chunked *c, const char *buf, size_t len, size_t *consumed);

/* A message body being read, by how it is delimited on the wire. */
enum ism_body_mode {
	ISM_BODY_NONE = 0,
	ISM_BODY_CL,
	ISM_BODY_CHUNKED,
	ISM_BODY_CLOSE, /* a response delimited by the sender closing */
};

struct ism_body {
	uint8_t mode;	       /* enum ism_body_mode */
	uint64_t remaining;    /* ISM_BODY_CL: bytes still expected */
	struct ism_chunked ch; /* ISM_BODY_CHUNKED */
};

/* Takes the body bytes among the len bytes at p (the rest belongs to the next
 * message) and decodes them in place: the body's data is moved to the start of
 * p (for a chunked body; a length- or close-delimited body is its own data),
 * *data_len its length. Returns the bytes taken, or ISM_HTTP_EBAD on malformed
 * chunking; *done when the body ended within them. */
ssize_t ism_body_take(struct ism_body *b, char *p, size_t len, size_t *data_len, bool *done);

#endif
