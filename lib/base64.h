/* SPDX-License-Identifier: Apache-2.0 */
/* Base64 (RFC 4648): the directResponse's bytes at load, the Sec-WebSocket-Key
 * of an HTTP/2 WebSocket, gRPC-Web's text form. Pure; any process. */
#ifndef ISM_LIB_BASE64_H
#define ISM_LIB_BASE64_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* The value of base64 digit c (standard or URL-safe alphabet), or -1. */
static inline int ism_b64_digit(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+' || c == '-')
		return 62;
	if (c == '/' || c == '_')
		return 63;
	return -1;
}

/* Decodes s (len bytes; standard or URL-safe alphabet, padding optional, as
 * protobuf's JSON reads bytes) into out (room for len / 4 * 3 + 3 bytes). The
 * decoded length, or -1 when s is not base64. */
static inline ssize_t ism_b64_decode(const char *s, size_t len, unsigned char *out)
{
	size_t n = 0, pad = 0;
	uint32_t acc = 0;

	while (len > 0 && s[len - 1] == '=' && pad < 2) {
		len--;
		pad++;
	}
	if (len % 4 == 1 || (pad > 0 && (len + pad) % 4 != 0))
		return -1;
	for (size_t i = 0; i < len; i++) {
		int d = ism_b64_digit(s[i]);

		if (d < 0)
			return -1;
		acc = acc << 6 | (uint32_t)d;
		if (i % 4 == 3) {
			out[n++] = (unsigned char)(acc >> 16);
			out[n++] = (unsigned char)(acc >> 8);
			out[n++] = (unsigned char)acc;
			acc = 0;
		}
	}
	if (len % 4 == 2) {
		out[n++] = (unsigned char)(acc >> 4);
	} else if (len % 4 == 3) {
		out[n++] = (unsigned char)(acc >> 10);
		out[n++] = (unsigned char)(acc >> 2);
	}
	return (ssize_t)n;
}

/* Encodes in (n bytes) into out (room for (n + 2) / 3 * 4 bytes) in the
 * standard alphabet, padded with '='. The encoded length. */
static inline size_t ism_b64_encode(const unsigned char *in, size_t n, char *out)
{
	static const char digits[] =
	    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	size_t o = 0;

	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < n ? (uint32_t)in[i + 1] << 8 : 0) |
			     (i + 2 < n ? in[i + 2] : 0);

		out[o++] = digits[v >> 18 & 63];
		out[o++] = digits[v >> 12 & 63];
		out[o++] = i + 1 < n ? digits[v >> 6 & 63] : '=';
		out[o++] = i + 2 < n ? digits[v & 63] : '=';
	}
	return o;
}

#endif
