/* SPDX-License-Identifier: Apache-2.0 */
/* The access log's text format: Envoy's format strings (Istio's
 * meshConfig.accessLogFormat), parsed once at load into the ism_alog_op list
 * that shm/table-t.h describes and the workers render. Pure: the parser
 * allocates nothing and never reads past the length it is given. Any process. */
#ifndef ISM_CONF_ALOG_H
#define ISM_CONF_ALOG_H

#include <stddef.h>

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

/* One member of a format dictionary (Envoy's json_format, Istio's JSON
 * accessLogFormat): its key and its template, neither NUL-terminated. */
struct ism_alog_member {
	const char *key;
	size_t key_len;
	const char *tmpl;
	size_t len;
};

/* spec.accessLog.jsonFormat when absent: Istio's JSON default. */
extern const struct ism_alog_member ism_alog_default_json[];
extern const size_t ism_alog_default_json_len;

/* Parses the n members of a dictionary into one list, as ism_alog_parse does
 * a template: each member's ISM_ALOG_F_KEY op (its key in lit), then its
 * template's ops; the %RESP()% and named %REQ()% slots count across the
 * members. On an error returns -1, *bad is the member's index and err names
 * the operator and its byte offset in that member's template. */
int ism_alog_parse_dict(const struct ism_alog_member *m, size_t n, struct ism_alog_op *ops,
			size_t cap, size_t *bad, char *err, size_t errlen);

#endif
