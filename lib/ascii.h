/* SPDX-License-Identifier: Apache-2.0 */
/* Small ASCII helpers shared by the parsers. Header-only, pure. */
#ifndef ISM_LIB_ASCII_H
#define ISM_LIB_ASCII_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

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

#endif
