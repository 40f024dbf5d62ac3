/* SPDX-License-Identifier: Apache-2.0 */
/* JSON: string escaping, for the access log and the control socket's JSON
 * forms; a strict reader, for JWTs and JWKS (lib/jose.h). */
#ifndef ISM_LIB_JSON_H
#define ISM_LIB_JSON_H

#include <stddef.h>
#include <stdint.h>

/* Writes s (len bytes) into out (capacity cap, NUL-terminated) as the inside of
 * a JSON string: quotes, backslashes, control characters, DEL and bytes that
 * are not UTF-8 escaped (\u00XX, the byte's value), valid UTF-8 as it is.
 * Returns the bytes written (cut short when out is too small). */
size_t ism_json_escape(char *out, size_t cap, const char *s, size_t len);

/* Decodes the UTF-8 character at p[0..n) (n > 0) into *cp: its length, or 0
 * when it is not one RFC 3629 allows (overlong forms, surrogates, values past
 * U+10FFFF, a sequence cut short). */
size_t ism_utf8_decode(const unsigned char *p, size_t n, uint32_t *cp);

/* --- reading: RFC 8259 JSON into a tree (a JWT's header and claims, a JWKS) --- */

enum ism_json_type {
	ISM_JSON_NULL = 0,
	ISM_JSON_FALSE,
	ISM_JSON_TRUE,
	ISM_JSON_NUMBER,
	ISM_JSON_STRING,
	ISM_JSON_ARRAY,
	ISM_JSON_OBJECT,
};

/* One value. A string is decoded (escapes, UTF-16 surrogates as UTF-8) and
 * NUL-terminated; an object's members are items[2i] (its name, a STRING) and
 * items[2i + 1] (its value), in document order. */
struct ism_json {
	uint8_t type; /* enum ism_json_type */
	uint32_t n;   /* STRING: bytes; ARRAY: items; OBJECT: members */
	double num;   /* NUMBER */
	const char *str;
	struct ism_json *items;
};

/* A parsed document: root, and the memory it lives in. */
struct ism_json_doc {
	struct ism_json root;
	void *mem;
};

/* The limits of ism_json_parse: what a client's token may hold. */
#define ISM_JSON_MAX_DEPTH 64

/* Parses len bytes (one value, whitespace around it) strictly: no trailing
 * commas, comments, bare control characters, invalid UTF-8 or lone
 * surrogates; nesting at most ISM_JSON_MAX_DEPTH. 0, or -1 with *doc empty. */
int ism_json_parse(const char *s, size_t len, struct ism_json_doc *doc);
void ism_json_free(struct ism_json_doc *doc);

/* The value of member name of object o (the last one of that name); NULL when
 * o is not an object or has none. */
const struct ism_json *ism_json_get(const struct ism_json *o, const char *name);
/* The same for a name of len bytes (not NUL-terminated, or holding a NUL). */
const struct ism_json *ism_json_get_n(const struct ism_json *o, const char *name, size_t len);

/* Writes v as compact JSON into out (cap bytes, NUL-terminated); returns the
 * length it has, which may be cap or more (then out is cut). */
size_t ism_json_write(const struct ism_json *v, char *out, size_t cap);

#endif
