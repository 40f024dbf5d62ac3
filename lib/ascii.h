/* SPDX-License-Identifier: Apache-2.0 */
/* Small ASCII helpers shared by the parsers. Header-only, pure. */
#ifndef ISM_LIB_ASCII_H
#define ISM_LIB_ASCII_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <strings.h>

/* The length of host (a Host header value) without its port: "[v6]:port"
 * keeps the brackets, "name:port" is cut at the first colon. */
static inline size_t ism_host_len(const char *host, size_t len)
{
	const char *end;

	if (len > 0 && host[0] == '[') {
		end = memchr(host, ']', len);
		return end ? (size_t)(end - host) + 1 : len;
	}
	end = memchr(host, ':', len);
	return end ? (size_t)(end - host) : len;
}

/* Whether field name (len bytes, any case) is hop-by-hop, one a proxy never
 * forwards as it is: Connection and RFC 9110 7.6.1's Proxy-Connection,
 * Keep-Alive, TE, Transfer-Encoding, Upgrade (a field that a Connection field
 * names is one too: see worker/http1.h). Trailer is end to end (RFC 9110
 * 6.6.2), as Envoy forwards it: a server may keep only the trailers it
 * declares (Go's). */
static inline int ism_http_is_hop_by_hop(const char *name, size_t len)
{
	switch (len) {
	case 2:
		return strncasecmp(name, "te", 2) == 0;
	case 7:
		return strncasecmp(name, "upgrade", 7) == 0;
	case 10:
		return strncasecmp(name, "connection", 10) == 0 ||
		       strncasecmp(name, "keep-alive", 10) == 0;
	case 16:
		return strncasecmp(name, "proxy-connection", 16) == 0;
	case 17:
		return strncasecmp(name, "transfer-encoding", 17) == 0;
	default:
		return 0;
	}
}

/* The value of hex digit c (either case), or -1. */
static inline int ism_hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c |= 0x20;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* c in lower case, when it is an ASCII capital; else c (no locale). */
static inline char ism_lower(char c)
{
	return c >= 'A' && c <= 'Z' ? (char)(c | 0x20) : c;
}

/* The eight bytes of x with their ASCII capitals in lower case (no locale),
 * all at once: a byte's low seven bits plus 0x3f reach bit 7 from 'A' on, plus
 * 0x25 from past 'Z' on, without a carry into the next byte. */
static inline uint64_t ism_lower8(uint64_t x)
{
	const uint64_t ones = 0x0101010101010101ull;
	uint64_t low7 = x & (0x7f * ones);
	uint64_t cap = (low7 + 0x3f * ones) & ~(low7 + 0x25 * ones) & ~x & (0x80 * ones);

	return x | (cap >> 2);
}

/* The n bytes at s (n at most 8) as one word, zeros after them. */
static inline uint64_t ism_load8(const char *s, size_t n)
{
	uint64_t x = 0;

	memcpy(&x, s, n);
	return x;
}

/* Whether the n bytes at a and at b are the same but for ASCII case, eight
 * at a time. */
static inline int ism_eq_nocase(const char *a, const char *b, size_t n)
{
	for (; n >= 8; a += 8, b += 8, n -= 8)
		if (ism_lower8(ism_load8(a, 8)) != ism_lower8(ism_load8(b, 8)))
			return 0;
	return n == 0 || ism_lower8(ism_load8(a, n)) == ism_lower8(ism_load8(b, n));
}

/* Whether s is a non-empty RFC 9110 token (a field name, a cookie name). */
static inline int ism_is_token(const char *s)
{
	static const char tchar[] = "!#$%&'*+-.^_`|~0123456789"
				    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";

	return s[0] != '\0' && s[strspn(s, tchar)] == '\0';
}

/* The eight nibbles of v as eight lowercase hex digits, all at once (the
 * low nibble first): each nibble spread to its byte, then '0' added, and the
 * distance from '9' + 1 to 'a' where the nibble is above 9 (adding 6 to such
 * a nibble carries into its bit 4, and into nothing beyond its byte). */
static inline uint64_t ism_hex8(uint32_t v)
{
	const uint64_t ones = 0x0101010101010101ull;
	uint64_t x = v;
	uint64_t above9;

	x = (x | x << 16) & 0x0000ffff0000ffffull;
	x = (x | x << 8) & 0x00ff00ff00ff00ffull;
	x = (x | x << 4) & 0x0f0f0f0f0f0f0f0full;
	above9 = ((x + 6 * ones) >> 4) & ones;
	return x + '0' * ones + above9 * ('a' - '9' - 1);
}

/* A version 4 UUID (RFC 9562) made of the 128 random bits r, as 36
 * characters and a NUL: the version digit and the variant's two bits replace
 * bits of the digits they stand in, so no other digit depends on them. */
static inline void ism_uuid4(const uint32_t r[4], char out[37])
{
	char h[32];
	int n;

	for (int i = 0; i < 4; i++) {
		uint64_t x = ism_hex8(r[i]);

		memcpy(h + 8 * i, &x, 8);
	}
	memcpy(out, h, 8);
	memcpy(out + 9, h + 8, 4);
	memcpy(out + 14, h + 12, 4);
	memcpy(out + 19, h + 16, 4);
	memcpy(out + 24, h + 20, 12);
	out[8] = out[13] = out[18] = out[23] = '-';
	out[36] = '\0';
	out[14] = '4';
	n = ism_hexval((unsigned char)out[19]);
	out[19] = "89ab"[n & 3];
}

#endif
