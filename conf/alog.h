/* SPDX-License-Identifier: Apache-2.0 */
/* The access log's text format: Envoy's format strings (Istio's
 * meshConfig.accessLogFormat), parsed once at load into the ism_alog_op list
 * that shm/table-t.h describes and the workers render. Pure: the parser
 * allocates nothing and never reads past the length it is given. Any process. */
#ifndef ISM_CONF_ALOG_H
#define ISM_CONF_ALOG_H

#include <stddef.h>
#include <stdint.h>

#include "shm/table-t.h"

/* spec.accessLog.textFormat when absent: Istio's default proxy format, less
 * the operators isthmus has no value for. */
extern const char ism_alog_default_text[];

/* Parses the format string s (len bytes; one final newline is dropped, as the
 * one Istio's formats end with). Writes at most cap operators into ops (ops may
 * be NULL when cap is 0; literals point into s) and returns how many the
 * string has: more than cap means call again with room. On an error returns
 * -1 and err (errlen bytes) names the operator and its byte offset. */
int ism_alog_parse(const char *s, size_t len, struct ism_alog_op *ops, size_t cap, char *err,
		   size_t errlen);

/* What one member of a format dictionary is (struct ism_alog_member.kind). */
enum ism_alog_member_kind {
	ISM_ALOG_M_TEMPLATE = 0, /* tmpl: a template, its value typed as Envoy's */
	ISM_ALOG_M_JSON,	 /* tmpl: JSON text written as it is (a number, true, null) */
	ISM_ALOG_M_OBJECT,	 /* a nested object: its members follow, then an END */
	ISM_ALOG_M_LIST,	 /* a list: its items (members without a key), then an END */
	ISM_ALOG_M_END,		 /* the end of the innermost object or list (no key) */
};

/* The objects and lists a dictionary may nest, itself not counted. */
#define ISM_ALOG_DICT_DEPTH 16

/* One member of a format dictionary (Envoy's json_format, Istio's JSON
 * accessLogFormat), in document order: its key (NULL: an item of a list, or
 * an END) and its value, neither NUL-terminated. */
struct ism_alog_member {
	const char *key;
	size_t key_len;
	const char *tmpl;
	size_t len;
	uint8_t kind; /* enum ism_alog_member_kind */
};

/* spec.accessLog.jsonFormat when absent: Istio's JSON default. */
extern const struct ism_alog_member ism_alog_default_json[];
extern const size_t ism_alog_default_json_len;

/* Parses the n members of a dictionary into one list, as ism_alog_parse does
 * a template: each member's ISM_ALOG_F_KEY op (its key in lit; an item of a
 * list: ISM_ALOG_F_ITEM), then its value: its template's ops, an
 * ISM_ALOG_F_JSON op, or an ISM_ALOG_F_OPEN op, the members within and an
 * ISM_ALOG_F_CLOSE op; the %RESP()% and named %REQ()% slots count across the
 * members. On an error returns -1, *bad is the member's index and err names
 * the operator and its byte offset in that member's template (or an END
 * without an object or list, a list item with a key, nesting deeper than
 * ISM_ALOG_DICT_DEPTH, an object or list not ended). */
int ism_alog_parse_dict(const struct ism_alog_member *m, size_t n, struct ism_alog_op *ops,
			size_t cap, size_t *bad, char *err, size_t errlen);

/* A plain YAML scalar that is a decimal number (YAML's core schema: an
 * integer or a float, not .inf or .nan), s (len bytes), as the JSON number
 * Envoy's json_format writes for it: the double's shortest form (200, 1.5,
 * 1e+16, 1e-05), NUL-terminated into out (cap bytes). Its length, -EINVAL when
 * s is not such a number, -ERANGE when it does not fit a double (1e999),
 * -ENOSPC. */
int ism_alog_json_number(const char *s, size_t len, char *out, size_t cap);

#endif
