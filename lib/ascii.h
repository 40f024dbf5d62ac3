/* SPDX-License-Identifier: Apache-2.0 */
/* Small ASCII helpers shared by the parsers. Header-only, pure. */
#ifndef ISM_LIB_ASCII_H
#define ISM_LIB_ASCII_H

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

#endif
