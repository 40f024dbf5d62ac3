/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer harness for Envoy's format strings: arbitrary bytes go to the
 * access log's parser (ism_alog_parse), to its dictionaries' (ism_alog_parse_dict:
 * the input's lines as members, "key=template", nested objects and lists:
 * member()) and to the header values' one
 * (ism_hval_parse), each twice (count, then fill), and what they return must
 * hold: the same count, literals and names inside the input, operators and
 * headers in range, one key op per member, an error message on failure. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "conf/alog.h"
#include "conf/hfmt.h"

#define MAX_OPS 256

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The header values' parser over the same bytes. */
static void header_value(const char *s, size_t size)
{
	static struct ism_hval_part parts[MAX_OPS];
	char err[256] = "";
	int n = ism_hval_parse(s, size, NULL, 0, err, sizeof(err));

	if (n < 0) {
		if (n != -1 || err[0] == '\0')
			abort();
		return;
	}
	if (ism_hval_parse(s, size, parts, MAX_OPS, err, sizeof(err)) != n)
		abort();
	for (int i = 0; i < n && i < MAX_OPS; i++) {
		const struct ism_hval_part *p = &parts[i];

		if (p->kind > ISM_HV_RESP)
			abort();
		/* Text of the input, or the host name or environment read. */
		if ((p->kind == ISM_HV_REQ || p->kind == ISM_HV_RESP) &&
		    (p->a.p < s || p->a.len == 0 || p->a.p + p->a.len > s + size ||
		     (p->b.len > 0 && (p->b.p < s || p->b.p + p->b.len > s + size))))
			abort();
	}
}

/* Line p..e as a member of a dictionary: "}" an end; "-TEMPLATE" a list's
 * item; "KEY={" and "KEY=[" an object and a list; "KEY=#TEXT" JSON text;
 * "KEY=TEMPLATE"; a line without '=' a template with an empty key. */
static struct ism_alog_member member(const char *p, const char *e)
{
	const char *eq = memchr(p, '=', (size_t)(e - p));
	struct ism_alog_member m = {.key = p, .tmpl = p, .len = (size_t)(e - p)};

	if (e - p == 1 && p[0] == '}')
		return (struct ism_alog_member){.kind = ISM_ALOG_M_END};
	if (p < e && p[0] == '-')
		return (struct ism_alog_member){.tmpl = p + 1, .len = (size_t)(e - p - 1)};
	if (eq == NULL)
		return m;
	m.key_len = (size_t)(eq - p);
	m.tmpl = eq + 1;
	m.len = (size_t)(e - eq - 1);
	if (m.len == 1 && (eq[1] == '{' || eq[1] == '['))
		m.kind = eq[1] == '{' ? ISM_ALOG_M_OBJECT : ISM_ALOG_M_LIST;
	else if (m.len > 0 && eq[1] == '#')
		m.kind = ISM_ALOG_M_JSON;
	return m;
}

/* The input's lines as the members of a dictionary. */
static void dictionary(const char *s, size_t size)
{
	static struct ism_alog_member m[64];
	static struct ism_alog_op ops[MAX_OPS];
	char err[256] = "";
	size_t n_m = 0, bad = 0, keys = 0, keyed = 0, kops = 0;
	const char *p = s, *end = s + size;
	int n, depth = 0;

	while (p < end && n_m < sizeof(m) / sizeof(m[0])) {
		const char *nl = memchr(p, '\n', (size_t)(end - p)), *e = nl ? nl : end;

		m[n_m] = member(p, e);
		keyed += m[n_m++].key != NULL;
		p = nl ? nl + 1 : end;
	}
	n = ism_alog_parse_dict(m, n_m, NULL, 0, &bad, err, sizeof(err));
	if (n < 0) {
		if (n != -1 || err[0] == '\0' || bad >= n_m)
			abort();
		return;
	}
	if (ism_alog_parse_dict(m, n_m, ops, MAX_OPS, &bad, err, sizeof(err)) != n)
		abort();
	for (int i = 0; i < n && i < MAX_OPS; i++) {
		const struct ism_alog_op *op = &ops[i];

		/* A dictionary starts with a key; its objects and lists nest
		 * within the bound; its keys are the members', in order. */
		if (i == 0 && op->field != ISM_ALOG_F_KEY)
			abort();
		depth += op->field == ISM_ALOG_F_OPEN;
		depth -= op->field == ISM_ALOG_F_CLOSE;
		if (depth < 0 || depth > ISM_ALOG_DICT_DEPTH)
			abort();
		if (op->field != ISM_ALOG_F_KEY)
			continue;
		while (keys < n_m && m[keys].key == NULL)
			keys++;
		if (keys == n_m || op->lit.p != m[keys].key || op->lit.len != m[keys].key_len)
			abort();
		keys++;
		kops++;
	}
	/* all written: balanced, one key op per member with a key */
	if (n <= MAX_OPS && (depth != 0 || kops != keyed))
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ism_alog_op ops[MAX_OPS];
	const char *s = (const char *)data;
	char err[256] = "";
	int n = ism_alog_parse(s, size, NULL, 0, err, sizeof(err));

	header_value(s, size);
	dictionary(s, size);
	if (n < 0) {
		if (n != -1 || err[0] == '\0')
			abort();
		return 0;
	}
	if (ism_alog_parse(s, size, ops, MAX_OPS, err, sizeof(err)) != n)
		abort();
	for (int i = 0; i < n && i < MAX_OPS; i++) {
		const struct ism_alog_op *op = &ops[i];

		if (op->field == ISM_ALOG_F_LITERAL &&
		    (op->lit.p < s || op->lit.len == 0 || op->lit.p + op->lit.len > s + size))
			abort();
		if (op->field >= ISM_ALOG_F_COUNT || op->field == ISM_ALOG_F_UPSTREAM_ENDPOINT ||
		    op->field == ISM_ALOG_F_KEY)
			abort();
		if (op->field == ISM_ALOG_F_REQ &&
		    ((op->hdr >= ISM_ALOG_H_ALL && op->hdr != ISM_ALOG_H_NONE) ||
		     (op->alt >= ISM_ALOG_H_ALL && op->alt != ISM_ALOG_H_NONE)))
			abort();
		/* A named field carries its name, within the template. */
		if (op->field == ISM_ALOG_F_REQ && op->hdr >= ISM_ALOG_H_COUNT &&
		    op->hdr < ISM_ALOG_H_ALL &&
		    (op->lit.len == 0 || op->lit.p < s || op->lit.p + op->lit.len > s + size))
			abort();
		if (op->field == ISM_ALOG_F_HVAL && op->hdr >= ISM_HV_KINDS)
			abort();
		if ((op->field == ISM_ALOG_F_RESP || op->field == ISM_ALOG_F_TRAILER) &&
		    (op->hdr >= ISM_ALOG_RESP_MAX || op->lit.len == 0 || op->lit.p < s ||
		     op->lit.p + op->lit.len > s + size))
			abort();
	}
	return 0;
}
