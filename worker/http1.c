/* SPDX-License-Identifier: Apache-2.0 */
/* HTTP/1.1 head parser and chunked-body scanner (RFC 9112, RFC 9110).
 *
 * The head parsers are stateless: every call re-parses from the start of the
 * buffer, as picohttpparser does. A head is a few hundred bytes and arrives in
 * one read nearly always, so re-parsing costs less than carrying state, and it
 * keeps the parser a pure function that is easy to test at every split point.
 *
 * Strictness: anything a proxy and an upstream could read differently (framing,
 * line endings, field syntax) is refused rather than repaired. The only leniency
 * is the bare LF line ending, which nginx and most servers accept too, and which
 * cannot be read two ways since a bare CR is always an error. */
#include "worker/http1.h"

#include <string.h>

#include "lib/ascii.h"

#ifdef __SSE2__
#include <emmintrin.h>
#endif

enum {
	C_TCHAR = 1,  /* token (RFC 9110 5.6.2) */
	C_TARGET = 2, /* request-target: visible ASCII except '#' (no fragment on the wire) */
	C_VALUE = 4,  /* field value and reason phrase: HTAB, SP, VCHAR, obs-text */
	C_HOST = 8,   /* Host: reg-name / IP-literal characters, ':' for the port */
	C_HEX = 16,
	C_REGNAME = 32, /* C_HOST but ':', '[' and ']': a host name or IPv4 address */
};

/* Generated once from the RFC sets above; a table keeps the inner loops to one
 * load and one test per byte. */
/* clang-format off */
static const uint8_t ism_ctab[256] = {
	  0,   0,   0,   0,   0,   0,   0,   0,   0,   4,   0,   0,   0,   0,   0,   0, /* 0x00 */
	  0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0,   0, /* 0x10 */
	  4,  47,   6,   5,  47,  47,  47,  47,  46,  46,  47,  47,  46,  47,  47,   6, /* 0x20 */
	 63,  63,  63,  63,  63,  63,  63,  63,  63,  63,  14,  46,   6,  46,   6,   6, /* 0x30 */
	  6,  63,  63,  63,  63,  63,  63,  47,  47,  47,  47,  47,  47,  47,  47,  47, /* 0x40 */
	 47,  47,  47,  47,  47,  47,  47,  47,  47,  47,  47,  14,   6,  14,   7,  47, /* 0x50 */
	  7,  63,  63,  63,  63,  63,  63,  47,  47,  47,  47,  47,  47,  47,  47,  47, /* 0x60 */
	 47,  47,  47,  47,  47,  47,  47,  47,  47,  47,  47,   6,   7,   6,  47,   0, /* 0x70 */
	  4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4, /* 0x80 */
	  4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4, /* 0x90 */
	  4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4, /* 0xa0 */
	  4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4, /* 0xb0 */
	  4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4, /* 0xc0 */
	  4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4, /* 0xd0 */
	  4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4, /* 0xe0 */
	  4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4,   4, /* 0xf0 */
};
/* clang-format on */

#define ISM_HTTP_LEN_MAX      ((uint64_t)1 << 62) /* Content-Length and chunk-size bound */
#define ISM_CHUNK_LINE_MAX    1024u  /* a size line with its extensions, CRLF excluded */
#define ISM_CHUNK_TRAILER_MAX 16384u /* the trailer section */

static inline int has(unsigned char c, int cls)
{
	return ism_ctab[c] & cls;
}

/* Case-insensitive comparison with a literal. */
static inline int eq_lower(const char *s, size_t n, const char *lit, size_t lit_len)
{
	return n == lit_len && ism_eq_nocase(s, lit, n);
}

#define EQ_LIT(s, n, lit) eq_lower((s), (n), (lit), sizeof(lit) - 1)

/* First byte in [p, end) that cannot appear in a field value; end when none.
 * Field values (cookies, user agents) are the bulk of a head, hence SSE2. */
static const char *skip_value(const char *p, const char *end)
{
#ifdef __SSE2__
	const __m128i sp = _mm_set1_epi8(0x20), del = _mm_set1_epi8(0x7f);
	const __m128i tab = _mm_set1_epi8(0x09);

	while (end - p >= 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
		__m128i ok = _mm_cmpeq_epi8(_mm_max_epu8(v, sp), v); /* v >= 0x20 */
		ok = _mm_or_si128(ok, _mm_cmpeq_epi8(v, tab));
		ok = _mm_andnot_si128(_mm_cmpeq_epi8(v, del), ok);
		unsigned m = ~(unsigned)_mm_movemask_epi8(ok) & 0xffffu;
		if (m)
			return p + __builtin_ctz(m);
		p += 16;
	}
#endif
	while (p < end && has((unsigned char)*p, C_VALUE))
		p++;
	return p;
}

/* First byte in [p, end) that cannot appear in a field name (a token); end
 * when none. Letters, digits and '-' (nearly every name) are passed sixteen
 * at a time, the rest byte by byte. */
static const char *skip_name(const char *p, const char *end)
{
#ifdef __SSE2__
	const __m128i a = _mm_set1_epi8('a' - 1), z = _mm_set1_epi8('z' + 1);
	const __m128i d0 = _mm_set1_epi8('0' - 1), d9 = _mm_set1_epi8('9' + 1);
	const __m128i dash = _mm_set1_epi8('-'), bit5 = _mm_set1_epi8(0x20);

	while (end - p >= 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
		/* Bytes from 0x80 are negative: in no range. A letter of either
		 * case with bit 5 set is a lower-case one; nothing else lands
		 * there. */
		__m128i lc = _mm_or_si128(v, bit5);
		__m128i ok = _mm_and_si128(_mm_cmpgt_epi8(lc, a), _mm_cmpgt_epi8(z, lc));
		ok = _mm_or_si128(ok, _mm_and_si128(_mm_cmpgt_epi8(v, d0), _mm_cmpgt_epi8(d9, v)));
		ok = _mm_or_si128(ok, _mm_cmpeq_epi8(v, dash));
		unsigned m = ~(unsigned)_mm_movemask_epi8(ok) & 0xffffu;
		if (m) {
			p += __builtin_ctz(m);
			break;
		}
		p += 16;
	}
#endif
	while (p < end && has((unsigned char)*p, C_TCHAR))
		p++;
	return p;
}

/* First byte in [p, end) that cannot appear in a request-target. */
static const char *skip_target(const char *p, const char *end)
{
#ifdef __SSE2__
	const __m128i lo = _mm_set1_epi8(0x21), hi = _mm_set1_epi8(0x7e);
	const __m128i hash = _mm_set1_epi8('#');

	while (end - p >= 16) {
		__m128i v = _mm_loadu_si128((const __m128i *)(const void *)p);
		__m128i ok = _mm_and_si128(_mm_cmpeq_epi8(_mm_max_epu8(v, lo), v),
					   _mm_cmpeq_epi8(_mm_min_epu8(v, hi), v));
		ok = _mm_andnot_si128(_mm_cmpeq_epi8(v, hash), ok);
		unsigned m = ~(unsigned)_mm_movemask_epi8(ok) & 0xffffu;
		if (m)
			return p + __builtin_ctz(m);
		p += 16;
	}
#endif
	while (p < end && has((unsigned char)*p, C_TARGET))
		p++;
	return p;
}

/* *pp points at a CR or LF before end: consumes CRLF or a bare LF. A CR not
 * followed by LF is an error, whatever follows. */
static int eat_eol(const char **pp, const char *end)
{
	const char *p = *pp;

	if (*p == '\n') {
		*pp = p + 1;
		return 1;
	}
	if (*p != '\r')
		return ISM_HTTP_EBAD;
	if (p + 1 == end)
		return ISM_HTTP_INCOMPLETE;
	if (p[1] != '\n')
		return ISM_HTTP_EBAD;
	*pp = p + 2;
	return 1;
}

/* "HTTP/d.d" at p. Checks what is there already, so that garbage is refused
 * before the line is complete. */
static int parse_version(const char *p, const char *end, int *minor)
{
	static const char pfx[] = "HTTP/";
	size_t avail = (size_t)(end - p);

	for (size_t i = 0; i < 5 && i < avail; i++)
		if (p[i] != pfx[i])
			return ISM_HTTP_EBAD;
	if ((avail > 5 && (p[5] < '0' || p[5] > '9')) || (avail > 6 && p[6] != '.') ||
	    (avail > 7 && (p[7] < '0' || p[7] > '9')))
		return ISM_HTTP_EBAD;
	if (avail < 8)
		return ISM_HTTP_INCOMPLETE;
	if (p[5] != '1' || (p[7] != '0' && p[7] != '1'))
		return ISM_HTTP_EVERSION;
	*minor = p[7] - '0';
	return 1;
}

/* Header lines up to and including the empty line that ends the head. */
static int parse_headers(const char **pp, const char *end, struct ism_http_header *hdrs, size_t max,
			 size_t *n)
{
	const char *p = *pp;

	for (;;) {
		if (p == end)
			return ISM_HTTP_INCOMPLETE;
		if (*p == '\r' || *p == '\n') {
			int r = eat_eol(&p, end);
			if (r <= 0)
				return r;
			*pp = p;
			return 1;
		}
		if (*n == max)
			return ISM_HTTP_ETOO_MANY;

		/* A line starting with SP or HTAB (obs-fold) has an empty name and
		 * fails here like any other non-token byte before the colon. */
		const char *name = p;
		p = skip_name(p, end);
		if (p == end)
			return ISM_HTTP_INCOMPLETE;
		if (*p != ':' || p == name)
			return ISM_HTTP_EBAD;
		const char *name_end = p++;

		while (p < end && (*p == ' ' || *p == '\t'))
			p++;
		const char *value = p;
		p = skip_value(p, end);
		if (p == end)
			return ISM_HTTP_INCOMPLETE;
		if (*p != '\r' && *p != '\n')
			return ISM_HTTP_EBAD;
		const char *vend = p;
		while (vend > value && (vend[-1] == ' ' || vend[-1] == '\t'))
			vend--;
		int r = eat_eol(&p, end);
		if (r <= 0)
			return r;

		struct ism_http_header *h = &hdrs[(*n)++];
		h->name = name;
		h->name_len = (size_t)(name_end - name);
		h->value = value;
		h->value_len = (size_t)(vend - value);
	}
}

/* Iterates over the elements of a comma-separated list (RFC 9110 5.6.1), each
 * trimmed of OWS. *pp starts at the value. Returns 0 when the list is
 * exhausted, 1 with an element (possibly empty) otherwise. */
static int next_elem(const char **pp, const char *end, const char **e, size_t *elen)
{
	const char *p = *pp;

	if (!p)
		return 0;
	while (p < end && (*p == ' ' || *p == '\t'))
		p++;
	const char *s = p;
	while (p < end && *p != ',')
		p++;
	const char *t = p;
	while (t > s && (t[-1] == ' ' || t[-1] == '\t'))
		t--;
	*e = s;
	*elen = (size_t)(t - s);
	/* NULL once the last element was given. */
	*pp = p < end ? p + 1 : NULL;
	return 1;
}

/* What the second pass learns from the fields. */
struct hdr_scan {
	int64_t cl; /* -1 when none */
	unsigned hosts;
	const char *host;
	size_t host_len;
	uint8_t te;	       /* a Transfer-Encoding field is present */
	uint8_t te_bad;	       /* syntax error in a coding list */
	uint8_t te_other;      /* a coding other than plain chunked */
	uint8_t te_chunked;    /* count of "chunked" codings */
	uint8_t te_last_chunk; /* the final coding is plain chunked */
	uint8_t conn_close, conn_keep, conn_other, expect, upgrade;
};

/* Content-Length: 1*DIGIT, or a list of identical such values. */
static int scan_content_length(struct hdr_scan *s, const char *v, size_t n)
{
	const char *p = v, *end = v + n, *e;
	size_t elen;

	while (next_elem(&p, end, &e, &elen)) {
		uint64_t x = 0;
		if (elen == 0)
			return ISM_HTTP_EBAD;
		for (size_t i = 0; i < elen; i++) {
			unsigned d = (unsigned char)e[i] - '0';
			if (d > 9 || x > (ISM_HTTP_LEN_MAX - d) / 10)
				return ISM_HTTP_EBAD;
			x = x * 10 + d;
		}
		if (s->cl >= 0 && (uint64_t)s->cl != x)
			return ISM_HTTP_EBAD;
		s->cl = (int64_t)x;
	}
	return 0;
}

/* Transfer-Encoding: records what the codings are; the verdict depends on the
 * message kind and is given by the caller. Several fields form one list. */
static void scan_transfer_encoding(struct hdr_scan *s, const char *v, size_t n)
{
	const char *p = v, *end = v + n, *e;
	size_t elen;

	s->te = 1;
	while (next_elem(&p, end, &e, &elen)) {
		size_t tok = 0;
		while (tok < elen && has((unsigned char)e[tok], C_TCHAR))
			tok++;
		if (tok == 0) {
			s->te_bad = 1;
			return;
		}
		int params = 0;
		if (tok < elen) {
			size_t i = tok;
			while (i < elen && (e[i] == ' ' || e[i] == '\t'))
				i++;
			if (i == elen || e[i] != ';') {
				s->te_bad = 1;
				return;
			}
			params = 1;
		}
		/* "chunked;x" is an unknown variant of chunked, not chunked. */
		int chunked = EQ_LIT(e, tok, "chunked") && !params;
		s->te_chunked += chunked && s->te_chunked < 255;
		s->te_last_chunk = (uint8_t)chunked;
		if (!chunked)
			s->te_other = 1;
	}
}

static void scan_connection(struct hdr_scan *s, const char *v, size_t n)
{
	const char *p = v, *end = v + n, *e;
	size_t elen;

	while (next_elem(&p, end, &e, &elen)) {
		if (EQ_LIT(e, elen, "close"))
			s->conn_close = 1;
		else if (EQ_LIT(e, elen, "keep-alive"))
			s->conn_keep = 1;
		else if (elen)
			s->conn_other = 1;
	}
}

/* An optional ":port" after a host: digits only (RFC 3986's *DIGIT: leading
 * zeros too, "000080" is 80), at most 65535; an empty port means the default. */
static int valid_port(const char *p, size_t n)
{
	uint32_t v = 0;

	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return 0;
		v = v * 10 + (uint32_t)(p[i] - '0');
		if (v > 65535)
			return 0;
	}
	return 1;
}

/* uri-host [":" port] (RFC 9110 7.2, RFC 3986 3.2.2): a reg-name or IPv4
 * address, or an IP-literal in brackets, then an optional port. Anything else
 * ("a:80x", "a:80:90", "[::1") is refused rather than forwarded: an upstream
 * could read it another way than the router did. */
static int valid_host(const char *h, size_t n)
{
	size_t i = 0;

	if (n == 0)
		return 0;
	if (h[0] == '[') {
		int colons = 0;

		for (i = 1; i < n && h[i] != ']'; i++) {
			if (h[i] == ':')
				colons++;
			else if (!has((unsigned char)h[i], C_HEX) && h[i] != '.')
				return 0;
		}
		if (i == n || colons < 2)
			return 0;
		i++;
	} else {
		while (i < n && has((unsigned char)h[i], C_REGNAME))
			i++;
		if (i == 0)
			return 0;
	}
	if (i == n)
		return 1;
	return h[i] == ':' && valid_port(h + i + 1, n - i - 1);
}

/* Second pass over the fields of a complete head: framing and the fields the
 * proxy acts on. Dispatch on the name's length first: most fields are none of
 * these and cost one switch. */
static int scan_fields(const struct ism_http_header *h, size_t n, struct hdr_scan *s)
{
	memset(s, 0, sizeof(*s));
	s->cl = -1;
	for (size_t i = 0; i < n; i++, h++) {
		int r;
		switch (h->name_len) {
		case 4:
			if (EQ_LIT(h->name, 4, "host")) {
				s->hosts++;
				s->host = h->value;
				s->host_len = h->value_len;
			}
			break;
		case 6:
			if (EQ_LIT(h->name, 6, "expect") &&
			    EQ_LIT(h->value, h->value_len, "100-continue"))
				s->expect = 1;
			break;
		case 7:
			if (EQ_LIT(h->name, 7, "upgrade"))
				s->upgrade = 1;
			break;
		case 10:
			if (EQ_LIT(h->name, 10, "connection"))
				scan_connection(s, h->value, h->value_len);
			break;
		case 14:
			if (EQ_LIT(h->name, 14, "content-length")) {
				r = scan_content_length(s, h->value, h->value_len);
				if (r < 0)
					return r;
			}
			break;
		case 17:
			if (EQ_LIT(h->name, 17, "transfer-encoding"))
				scan_transfer_encoding(s, h->value, h->value_len);
			break;
		default:
			break;
		}
	}
	return 0;
}

static void fill_framing(const struct hdr_scan *s, struct ism_http_framing *f)
{
	f->content_length = s->cl;
	f->conn = s->conn_close	 ? ISM_HTTP_CONN_CLOSE
		  : s->conn_keep ? ISM_HTTP_CONN_KEEPALIVE
				 : ISM_HTTP_CONN_DEFAULT;
	f->expect_continue = s->expect;
	f->upgrade = s->upgrade;
	f->conn_names = s->conn_other;
}

/* The framing rules common to requests and responses (RFC 9112 6.1, 6.3): a
 * 1.0 message with Transfer-Encoding has faulty framing, and a message with both
 * Transfer-Encoding and Content-Length is the classic smuggling vector, so both
 * are refused instead of letting Transfer-Encoding win. A message must end in
 * chunked and name nothing else, as Envoy's codec requires: any other coding
 * would have to be decoded to find the end (a request), or would reach a
 * client that is not sent chunked (HTTP/1.0, HTTP/2) still coded, and named
 * nowhere. */
static int te_common(const struct hdr_scan *s, int minor)
{
	if (!s->te)
		return 0;
	if (s->te_bad || minor == 0 || s->cl >= 0 || s->te_chunked > 1)
		return ISM_HTTP_EBAD;
	if (s->te_chunked && !s->te_last_chunk)
		return ISM_HTTP_EBAD; /* chunked, then something: cannot find the end */
	return s->te_other ? ISM_HTTP_ETE_UNSUPPORTED : 0;
}

static int method_is(const struct ism_http_req *req, const char *m, size_t n)
{
	return req->method_len == n && memcmp(req->method, m, n) == 0;
}

static void split_query(struct ism_http_req *req, const char *p, size_t n)
{
	const char *q = memchr(p, '?', n);

	req->path = p;
	req->path_len = q ? (size_t)(q - p) : n;
	if (q) {
		req->query = q + 1;
		req->query_len = n - req->path_len - 1;
	}
}

bool ism_http_host_ok(const char *h, size_t n)
{
	return valid_host(h, n);
}

bool ism_http_origin_target_ok(const char *t, size_t n)
{
	return n > 0 && t[0] == '/' && skip_target(t, t + n) == t + n;
}

/* Classifies the request-target (RFC 9112 3.2). Its bytes are already known to
 * be visible ASCII. */
static int parse_target(struct ism_http_req *req)
{
	static const char root[] = "/";
	const char *t = req->target;
	size_t n = req->target_len;

	if (method_is(req, "CONNECT", 7)) {
		/* authority-form, and only for CONNECT; the router refuses it. */
		if (!valid_host(t, n))
			return ISM_HTTP_EBAD;
		req->host = t;
		req->host_len = n;
		req->path = t;
		req->path_len = n;
		return 0;
	}
	if (t[0] == '/') {
		split_query(req, t, n);
		return 0;
	}
	if (n == 1 && t[0] == '*') {
		if (!method_is(req, "OPTIONS", 7))
			return ISM_HTTP_EBAD;
		req->path = t;
		req->path_len = 1;
		return 0;
	}

	size_t skip;
	if (n >= 7 && EQ_LIT(t, 7, "http://"))
		skip = 7;
	else if (n >= 8 && EQ_LIT(t, 8, "https://"))
		skip = 8;
	else
		return ISM_HTTP_EBAD;

	const char *a = t + skip, *end = t + n, *r = a;
	while (r < end && *r != '/' && *r != '?')
		r++;
	/* No userinfo: '@' is not a host character, so "http://u@h/" fails here. */
	if (!valid_host(a, (size_t)(r - a)))
		return ISM_HTTP_EBAD;
	req->host = a;
	req->host_len = (size_t)(r - a);
	if (r < end && *r == '/') {
		split_query(req, r, (size_t)(end - r));
	} else {
		/* "http://h" or "http://h?q": the path is "/" (RFC 9110 4.2.3). */
		req->path = root;
		req->path_len = 1;
		if (r < end) {
			req->query = r + 1;
			req->query_len = (size_t)(end - r - 1);
		}
	}
	return 0;
}

static int parse_request_line(const char **pp, const char *end, size_t max_uri,
			      struct ism_http_req *req)
{
	const char *p = *pp;
	int r;

	/* RFC 9112 2.2: empty lines before the request line may be ignored. */
	for (;;) {
		if (p == end)
			return ISM_HTTP_INCOMPLETE;
		if (*p != '\r' && *p != '\n')
			break;
		r = eat_eol(&p, end);
		if (r <= 0)
			return r;
	}

	const char *m = p;
	while (p < end && has((unsigned char)*p, C_TCHAR))
		p++;
	if (p == end)
		return ISM_HTTP_INCOMPLETE;
	if (*p != ' ' || p == m)
		return ISM_HTTP_EBAD;
	req->method = m;
	req->method_len = (size_t)(p - m);

	/* Scan at most max_uri + 1 bytes so a long target is refused at once,
	 * whether or not its end has arrived. */
	const char *t = ++p;
	const char *cap = (size_t)(end - t) > max_uri ? t + max_uri + 1 : end;
	p = skip_target(t, cap);
	if ((size_t)(p - t) > max_uri)
		return ISM_HTTP_EURI_TOO_LONG;
	if (p == end)
		return ISM_HTTP_INCOMPLETE;
	if (*p != ' ' || p == t)
		return ISM_HTTP_EBAD;
	req->target = t;
	req->target_len = (size_t)(p - t);

	p++;
	r = parse_version(p, end, &req->minor_version);
	if (r <= 0)
		return r;
	p += 8;
	if (p == end)
		return ISM_HTTP_INCOMPLETE;
	if (*p != '\r' && *p != '\n')
		return ISM_HTTP_EBAD;
	r = eat_eol(&p, end);
	if (r <= 0)
		return r;
	r = parse_target(req);
	if (r < 0)
		return r;
	*pp = p;
	return 1;
}

static int request_semantics(struct ism_http_req *req)
{
	struct hdr_scan s;
	int r = scan_fields(req->headers, req->n_headers, &s);

	if (r < 0)
		return r;
	if (s.hosts == 0 && req->minor_version == 1)
		return ISM_HTTP_ENOHOST;
	if (s.hosts > 1)
		return ISM_HTTP_EBAD;
	if (s.hosts && !valid_host(s.host, s.host_len))
		return ISM_HTTP_EBAD;
	/* With an absolute-form target the authority wins over Host (RFC 9112 3.2.2). */
	if (!req->host && s.hosts) {
		req->host = s.host;
		req->host_len = s.host_len;
	}
	r = te_common(&s, req->minor_version);
	if (r < 0)
		return r;
	fill_framing(&s, &req->framing);
	req->framing.chunked = s.te;
	return 0;
}

ssize_t ism_http_parse_request(const char *buf, size_t len, const struct ism_http_limits *lim,
			       struct ism_http_req *req)
{
	/* Never look past the head limit: a head that does not end within it is
	 * refused, so the work per call is bounded by the limit, not by len. */
	size_t cap = len < lim->max_head_bytes ? len : lim->max_head_bytes;
	const char *p = buf, *end = buf + cap;
	struct ism_http_header *hdrs = req->headers;
	int r;

	memset(req, 0, sizeof(*req));
	req->headers = hdrs;
	req->minor_version = -1;
	req->framing.content_length = -1;

	r = parse_request_line(&p, end, lim->max_uri_bytes, req);
	if (r > 0)
		r = parse_headers(&p, end, hdrs, lim->max_headers, &req->n_headers);
	if (r == ISM_HTTP_INCOMPLETE)
		return len > lim->max_head_bytes ? ISM_HTTP_EHEAD_TOO_BIG : ISM_HTTP_INCOMPLETE;
	if (r < 0)
		return r;
	r = request_semantics(req);
	if (r < 0)
		return r;
	return p - buf;
}

static int parse_status_line(const char **pp, const char *end, struct ism_http_resp *resp)
{
	const char *p = *pp;
	int r = parse_version(p, end, &resp->minor_version);

	if (r <= 0)
		return r;
	p += 8;
	if (p == end)
		return ISM_HTTP_INCOMPLETE;
	if (*p++ != ' ')
		return ISM_HTTP_EBAD;

	int status = 0;
	for (int i = 0; i < 3; i++, p++) {
		if (p == end)
			return ISM_HTTP_INCOMPLETE;
		if (*p < '0' || *p > '9' || (i == 0 && *p == '0'))
			return ISM_HTTP_EBAD;
		status = status * 10 + (*p - '0');
	}
	if (p == end)
		return ISM_HTTP_INCOMPLETE;
	resp->status = status;
	if (*p == ' ') {
		const char *reason = ++p;
		p = skip_value(p, end);
		if (p == end)
			return ISM_HTTP_INCOMPLETE;
		resp->reason = reason;
		resp->reason_len = (size_t)(p - reason);
	} else {
		resp->reason = p;
		resp->reason_len = 0;
	}
	if (*p != '\r' && *p != '\n')
		return ISM_HTTP_EBAD;
	r = eat_eol(&p, end);
	if (r <= 0)
		return r;
	*pp = p;
	return 1;
}

static int response_semantics(struct ism_http_resp *resp)
{
	struct hdr_scan s;
	int r = scan_fields(resp->headers, resp->n_headers, &s);

	if (r < 0)
		return r;
	r = te_common(&s, resp->minor_version);
	if (r < 0)
		return r;
	fill_framing(&s, &resp->framing);
	resp->framing.chunked = s.te;
	/* Envoy's HTTP/1 client codec: a 1xx or 204 whose framing announces a
	 * body (Transfer-Encoding, a Content-Length other than 0) is a
	 * protocol error. The status says there is none, so bytes that follow
	 * would be read as the next response on the connection. */
	if ((resp->status < 200 || resp->status == 204) &&
	    (s.te || resp->framing.content_length > 0))
		return ISM_HTTP_EBAD;
	return 0;
}

ssize_t ism_http_parse_response(const char *buf, size_t len, const struct ism_http_limits *lim,
				struct ism_http_resp *resp)
{
	size_t cap = len < lim->max_head_bytes ? len : lim->max_head_bytes;
	const char *p = buf, *end = buf + cap;
	struct ism_http_header *hdrs = resp->headers;
	int r;

	memset(resp, 0, sizeof(*resp));
	resp->headers = hdrs;
	resp->minor_version = -1;
	resp->framing.content_length = -1;

	r = parse_status_line(&p, end, resp);
	if (r > 0)
		r = parse_headers(&p, end, hdrs, lim->max_headers, &resp->n_headers);
	if (r == ISM_HTTP_INCOMPLETE)
		return len > lim->max_head_bytes ? ISM_HTTP_EHEAD_TOO_BIG : ISM_HTTP_INCOMPLETE;
	if (r < 0)
		return r;
	r = response_semantics(resp);
	if (r < 0)
		return r;
	return p - buf;
}

int ism_http_resp_has_body(int status, const char *method, size_t method_len)
{
	if (method_len == 4 && memcmp(method, "HEAD", 4) == 0)
		return 0;
	/* A 2xx to CONNECT turns the connection into a tunnel (RFC 9110 9.3.6). */
	if (method_len == 7 && memcmp(method, "CONNECT", 7) == 0 && status >= 200 && status < 300)
		return 0;
	return !(status < 200 || status == 204 || status == 304);
}

/* What a request's method is, by length first: a request pays a compare or
 * two, not a walk of a list (a memcmp of a constant length is a load and a
 * compare). */
enum {
	METHOD_IDEMPOTENT = 1, /* RFC 9110 9.2.2 */
	METHOD_BODILESS = 2,   /* Envoy's requestShouldHaveNoBody */
};

static unsigned method_traits(const char *m, size_t n)
{
	switch (n) {
	case 3:
		return memcmp(m, "GET", 3) == 0	  ? METHOD_IDEMPOTENT | METHOD_BODILESS
		       : memcmp(m, "PUT", 3) == 0 ? METHOD_IDEMPOTENT
						  : 0;
	case 4:
		return memcmp(m, "HEAD", 4) == 0 ? METHOD_IDEMPOTENT | METHOD_BODILESS : 0;
	case 5:
		return memcmp(m, "TRACE", 5) == 0 ? METHOD_IDEMPOTENT | METHOD_BODILESS : 0;
	case 6:
		return memcmp(m, "DELETE", 6) == 0 ? METHOD_IDEMPOTENT | METHOD_BODILESS : 0;
	case 7:
		return memcmp(m, "OPTIONS", 7) == 0   ? METHOD_IDEMPOTENT
		       : memcmp(m, "CONNECT", 7) == 0 ? METHOD_BODILESS
						      : 0;
	default:
		return 0;
	}
}

bool ism_http_method_idempotent(const char *method, size_t method_len)
{
	return method_traits(method, method_len) & METHOD_IDEMPOTENT;
}

bool ism_http_method_bodiless(const char *method, size_t method_len)
{
	return method_traits(method, method_len) & METHOD_BODILESS;
}

int ism_http_error_status(ssize_t err)
{
	switch (err) {
	case ISM_HTTP_EURI_TOO_LONG:
		return 414;
	case ISM_HTTP_EHEAD_TOO_BIG:
	case ISM_HTTP_ETOO_MANY:
		return 431;
	case ISM_HTTP_ETE_UNSUPPORTED:
		return 501;
	case ISM_HTTP_EVERSION:
		return 505;
	default:
		return 400;
	}
}

const char *ism_http_error_why(ssize_t err)
{
	switch (err) {
	case ISM_HTTP_EURI_TOO_LONG:
		return ISM_WHY_URI_TOO_LONG;
	case ISM_HTTP_EHEAD_TOO_BIG:
		return ISM_WHY_HEAD_TOO_BIG;
	case ISM_HTTP_ETOO_MANY:
		return ISM_WHY_TOO_MANY;
	case ISM_HTTP_ETE_UNSUPPORTED:
		return ISM_WHY_TE;
	case ISM_HTTP_EVERSION:
		return ISM_WHY_VERSION;
	case ISM_HTTP_ENOHOST:
		return ISM_WHY_NO_HOST;
	default:
		return ISM_WHY_BAD_REQUEST;
	}
}

bool ism_http_te_trailers(const struct ism_http_header *h)
{
	const char *p = h->value, *end = h->value + h->value_len, *e;
	size_t elen;

	if (!EQ_LIT(h->name, h->name_len, "te"))
		return false;
	while (next_elem(&p, end, &e, &elen)) {
		const char *semi = memchr(e, ';', elen);
		size_t n = semi != NULL ? (size_t)(semi - e) : elen;

		while (n > 0 && (e[n - 1] == ' ' || e[n - 1] == '\t'))
			n--;
		if (EQ_LIT(e, n, "trailers"))
			return true;
	}
	return false;
}

int ism_http_end_to_end(const struct ism_http_framing *f, const struct ism_http_header *hdrs,
			size_t n, const struct ism_http_header *h)
{
	if (EQ_LIT(h->name, h->name_len, "content-length") ||
	    ism_http_is_hop_by_hop(h->name, h->name_len))
		return 0;
	return !f->conn_names || !ism_http_named_in_connection(hdrs, n, h->name, h->name_len);
}

int ism_http_named_in_connection(const struct ism_http_header *hdrs, size_t n, const char *name,
				 size_t len)
{
	for (size_t i = 0; i < n; i++) {
		const char *p, *end, *e;
		size_t elen;

		if (!EQ_LIT(hdrs[i].name, hdrs[i].name_len, "connection"))
			continue;
		p = hdrs[i].value;
		end = p + hdrs[i].value_len;
		while (next_elem(&p, end, &e, &elen)) {
			if (elen == len && len != 0 && ism_eq_nocase(e, name, len))
				return 1;
		}
	}
	return 0;
}

/* Chunked decoder states (RFC 9112 7.1). Every line ends in CRLF: a bare LF is
 * where a lenient upstream and this gateway could split a body differently. */
enum {
	CH_SIZE = 0,	/* chunk-size hex digits */
	CH_EXT_SEMI,	/* after ';': BWS, then an extension name */
	CH_EXT_NAME,	/* chunk-ext-name (token) */
	CH_EXT_NAME_WS, /* BWS after the name: '=' or ';' must follow */
	CH_EXT_EQ,	/* after '=': BWS, then a token or a quoted-string */
	CH_EXT_VAL,	/* token value */
	CH_EXT_VAL_WS,	/* BWS after a value: ';' must follow */
	CH_EXT_QS,	/* inside a quoted-string */
	CH_EXT_QP,	/* after a backslash in a quoted-string */
	CH_EXT_QEND,	/* after the closing quote */
	CH_SIZE_LF,	/* CR seen at the end of the size line */
	CH_DATA,	/* chunk data */
	CH_DATA_CR,	/* CRLF after the data */
	CH_DATA_LF,
	CH_TRAILER_START, /* at the start of a trailer field or of the final CRLF */
	CH_TRAILER_NAME,
	CH_TRAILER_VALUE,
	CH_TRAILER_LF,
	CH_END_LF,
	CH_DONE,
	CH_ERROR,
};

void ism_chunked_init(struct ism_chunked *c)
{
	memset(c, 0, sizeof(*c));
	c->state = CH_SIZE;
}

static inline int is_ws(unsigned char ch)
{
	return ch == ' ' || ch == '\t';
}

/* One byte of the size line after the digits: the extension grammar
 * chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ).
 * Returns the next state, or CH_ERROR. */
static uint8_t ext_step(uint8_t st, unsigned char ch)
{
	switch (st) {
	case CH_EXT_SEMI:
		return is_ws(ch) ? CH_EXT_SEMI : has(ch, C_TCHAR) ? CH_EXT_NAME : CH_ERROR;
	case CH_EXT_NAME:
		if (has(ch, C_TCHAR))
			return CH_EXT_NAME;
		/* fall through */
	case CH_EXT_NAME_WS:
		return is_ws(ch)			 ? CH_EXT_NAME_WS
		       : ch == '='			 ? CH_EXT_EQ
		       : ch == ';'			 ? CH_EXT_SEMI
		       : ch == '\r' && st == CH_EXT_NAME ? CH_SIZE_LF
							 : CH_ERROR;
	case CH_EXT_EQ:
		return is_ws(ch)	  ? CH_EXT_EQ
		       : ch == '"'	  ? CH_EXT_QS
		       : has(ch, C_TCHAR) ? CH_EXT_VAL
					  : CH_ERROR;
	case CH_EXT_VAL:
		if (has(ch, C_TCHAR))
			return CH_EXT_VAL;
		/* fall through */
	case CH_EXT_QEND:
	case CH_EXT_VAL_WS:
		return is_ws(ch)			   ? CH_EXT_VAL_WS
		       : ch == ';'			   ? CH_EXT_SEMI
		       : ch == '\r' && st != CH_EXT_VAL_WS ? CH_SIZE_LF
							   : CH_ERROR;
	case CH_EXT_QS:
		/* qdtext: HTAB, SP, VCHAR except '"' and '\', obs-text. */
		if (ch == '"')
			return CH_EXT_QEND;
		if (ch == '\\')
			return CH_EXT_QP;
		return has(ch, C_VALUE) && ch != 0x7f ? CH_EXT_QS : CH_ERROR;
	case CH_EXT_QP:
		return has(ch, C_VALUE) && ch != 0x7f ? CH_EXT_QS : CH_ERROR;
	default:
		return CH_ERROR;
	}
}

static void size_line_done(struct ism_chunked *c)
{
	c->state = c->remaining ? CH_DATA : CH_TRAILER_START;
	c->digits = 0;
	c->line_len = 0;
}

int ism_chunked_next(struct ism_chunked *c, const char *buf, size_t len, size_t *consumed,
		     const char **data, size_t *data_len)
{
	const char *p = buf, *end = buf + len;

	*data = NULL;
	*data_len = 0;
	while (p < end) {
		unsigned char ch = (unsigned char)*p;

		switch (c->state) {
		case CH_SIZE:
			if (has(ch, C_HEX)) {
				unsigned d = (unsigned)ism_hexval(ch);
				/* any number of digits (leading zeros: RFC 9112
				 * sets no count), the value bounded, and the
				 * line's length as an extension's */
				if (c->remaining > (ISM_HTTP_LEN_MAX >> 4) ||
				    c->line_len >= ISM_CHUNK_LINE_MAX)
					goto bad;
				c->remaining = c->remaining << 4 | d;
				if (c->remaining > ISM_HTTP_LEN_MAX)
					goto bad;
				c->digits = 1;
				c->line_len++;
				p++;
				break;
			}
			/* No whitespace between the size and what follows: BWS
			 * there is where implementations disagree. */
			if (c->digits == 0 || (ch != ';' && ch != '\r'))
				goto bad;
			c->state = ch == ';' ? CH_EXT_SEMI : CH_SIZE_LF;
			c->line_len++;
			p++;
			break;
		case CH_EXT_SEMI:
		case CH_EXT_NAME:
		case CH_EXT_NAME_WS:
		case CH_EXT_EQ:
		case CH_EXT_VAL:
		case CH_EXT_VAL_WS:
		case CH_EXT_QS:
		case CH_EXT_QP:
		case CH_EXT_QEND:
			c->state = ext_step(c->state, ch);
			if (c->state == CH_ERROR ||
			    (c->state != CH_SIZE_LF && ++c->line_len > ISM_CHUNK_LINE_MAX))
				goto bad;
			p++;
			break;
		case CH_SIZE_LF:
			if (ch != '\n')
				goto bad;
			p++;
			size_line_done(c);
			break;
		case CH_DATA: {
			size_t avail = (size_t)(end - p);
			size_t n = c->remaining < avail ? (size_t)c->remaining : avail;

			*data = p;
			*data_len = n;
			p += n;
			c->remaining -= n;
			if (c->remaining == 0)
				c->state = CH_DATA_CR;
			*consumed = (size_t)(p - buf);
			return ISM_CHUNK_MORE;
		}
		case CH_DATA_CR:
		case CH_DATA_LF:
			if (ch != (c->state == CH_DATA_CR ? '\r' : '\n'))
				goto bad;
			c->state = c->state == CH_DATA_CR ? CH_DATA_LF : CH_SIZE;
			p++;
			break;
		case CH_TRAILER_START:
			if (ch == '\r') {
				c->state = CH_END_LF;
			} else if (has(ch, C_TCHAR)) {
				c->state = CH_TRAILER_NAME;
			} else {
				goto bad;
			}
			if (++c->trailer_len > ISM_CHUNK_TRAILER_MAX)
				goto bad;
			p++;
			break;
		case CH_TRAILER_NAME:
		case CH_TRAILER_VALUE: {
			const char *q = p;

			if (c->state == CH_TRAILER_NAME) {
				while (q < end && has((unsigned char)*q, C_TCHAR))
					q++;
				if (q < end && *q != ':')
					goto bad;
				if (q < end) {
					c->state = CH_TRAILER_VALUE;
					q++;
				}
			} else {
				q = skip_value(q, end);
				if (q < end && *q != '\r')
					goto bad;
				if (q < end) {
					c->state = CH_TRAILER_LF;
					q++;
				}
			}
			c->trailer_len += (uint32_t)(q - p);
			if (c->trailer_len > ISM_CHUNK_TRAILER_MAX)
				goto bad;
			p = q;
			break;
		}
		case CH_TRAILER_LF:
		case CH_END_LF:
			if (ch != '\n' || ++c->trailer_len > ISM_CHUNK_TRAILER_MAX)
				goto bad;
			p++;
			if (c->state == CH_END_LF) {
				c->state = CH_DONE;
				*consumed = (size_t)(p - buf);
				return ISM_CHUNK_END;
			}
			c->state = CH_TRAILER_START;
			break;
		case CH_DONE:
			*consumed = 0;
			return ISM_CHUNK_END;
		default:
			goto bad;
		}
	}
	*consumed = len;
	if (c->state == CH_DONE) {
		*consumed = 0;
		return ISM_CHUNK_END;
	}
	if (c->state == CH_ERROR)
		return ISM_HTTP_EBAD;
	return ISM_CHUNK_MORE;
bad:
	c->state = CH_ERROR;
	*consumed = (size_t)(p - buf);
	return ISM_HTTP_EBAD;
}

int ism_chunked_scan(struct ism_chunked *c, const char *buf, size_t len, size_t *consumed)
{
	size_t off = 0, used, dlen;
	const char *data;
	int r;

	do {
		r = ism_chunked_next(c, buf + off, len - off, &used, &data, &dlen);
		off += used;
	} while (r == ISM_CHUNK_MORE && off < len);
	*consumed = off;
	return r;
}

ssize_t ism_body_take(struct ism_body *b, char *p, size_t len, size_t *data_len, bool *done)
{
	size_t used, off = 0, dlen, n, out = 0;
	const char *data;
	int r = ISM_CHUNK_MORE;

	*done = false;
	*data_len = 0;
	switch (b->mode) {
	case ISM_BODY_NONE:
		*done = true;
		return 0;
	case ISM_BODY_CL:
		n = b->remaining < len ? (size_t)b->remaining : len;
		b->remaining -= n;
		*done = b->remaining == 0;
		*data_len = n;
		return (ssize_t)n;
	case ISM_BODY_CLOSE:
		*data_len = len;
		return (ssize_t)len;
	case ISM_BODY_CHUNKED:
		while (r == ISM_CHUNK_MORE && off < len) {
			r = ism_chunked_next(&b->ch, p + off, len - off, &used, &data, &dlen);
			if (r < 0)
				return r;
			off += used;
			/* The data moves down over framing already read: never
			 * past what was consumed. */
			if (dlen)
				memmove(p + out, data, dlen);
			out += dlen;
		}
		*done = r == ISM_CHUNK_END;
		*data_len = out;
		return (ssize_t)off;
	}
	return ISM_HTTP_EBAD;
}

/* The value of cookie name in a Cookie header ("a=1; b=2"; a quoted value
 * without its quotes). */
int ism_http_cookie_value(const char *v, size_t len, const char *name, size_t nlen,
			  const char **out, size_t *out_len)
{
	size_t i = 0;

	while (i < len) {
		size_t start, eq, end;

		while (i < len && (v[i] == ' ' || v[i] == ';'))
			i++;
		start = i;
		while (i < len && v[i] != ';')
			i++;
		end = i;
		for (eq = start; eq < end && v[eq] != '='; eq++)
			;
		if (eq < end && eq - start == nlen && memcmp(v + start, name, nlen) == 0) {
			*out = v + eq + 1;
			*out_len = end - eq - 1;
			/* A quoted value is the text inside its quotes (RFC
			 * 6265, as Envoy's parseCookies reads it). */
			if (*out_len >= 2 && (*out)[0] == '"' && (*out)[*out_len - 1] == '"') {
				(*out)++;
				*out_len -= 2;
			}
			return 1;
		}
	}
	return 0;
}

/* The value of query parameter name in "a=1&b=2". */
int ism_http_query_value(const char *q, size_t len, const char *name, size_t nlen, const char **out,
			 size_t *out_len)
{
	const char *end = q != NULL ? q + len : NULL;
	struct ism_query_param p;

	while (ism_query_next(&q, end, &p))
		if (p.name_len == nlen && memcmp(p.name, name, nlen) == 0) {
			*out = p.value;
			*out_len = p.value_len;
			return 1;
		}
	return 0;
}
