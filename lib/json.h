/* SPDX-License-Identifier: Apache-2.0 */
/* JSON string escaping, for the access log and the control socket's JSON forms. */
#ifndef ISM_LIB_JSON_H
#define ISM_LIB_JSON_H

#include <stddef.h>

/* Writes s (len bytes) into out (capacity cap, NUL-terminated) as the inside of
 * a JSON string: quotes, backslashes and control or non-ASCII bytes escaped.
 * Returns the bytes written (cut short when out is too small). */
size_t ism_json_escape(char *out, size_t cap, const char *s, size_t len);

#endif
