/* SPDX-License-Identifier: Apache-2.0 */
/* Typed, per-field validation helpers: path bookkeeping, diagnostics with the
 * field path, scalar conversions (integers, durations, booleans). */
#include <ctype.h>
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "conf/duration.h"
#include "conf/model.h"
#include "health/priority.h"

size_t ism_v_push(struct ism_vctx *v, const char *fmt, ...)
{
	size_t old = v->plen;
	va_list ap;
	int w;

	va_start(ap, fmt);
	w = vsnprintf(v->path + v->plen, sizeof(v->path) - v->plen, fmt, ap);
	va_end(ap);
	if (w > 0)
		v->plen += (size_t)w < sizeof(v->path) - v->plen ? (size_t)w
								 : sizeof(v->path) - v->plen - 1;
	return old;
}

void ism_v_pop(struct ism_vctx *v, size_t old)
{
	v->plen = old;
	v->path[old] = '\0';
}

static void v_report(struct ism_vctx *v, enum ism_diag_severity sev, const struct ism_node *at,
		     const char *fmt, va_list ap)
{
	char field[600];
	const char *p = v->path[0] == '.' ? v->path + 1 : v->path;

	if (v->res[0] && p[0])
		snprintf(field, sizeof(field), "%s: %s", v->res, p);
	else
		snprintf(field, sizeof(field), "%s%s", v->res, p);
	ism_diag_addv(v->d, sev, v->file, at ? at->line : 0, at ? at->col : 0, field, fmt, ap);
}

void ism_v_err(struct ism_vctx *v, const struct ism_node *at, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	v_report(v, ISM_DIAG_ERROR, at, fmt, ap);
	va_end(ap);
}

void ism_v_err_key(struct ism_vctx *v, const struct ism_node *map, const char *key, const char *fmt,
		   ...)
{
	size_t old = ism_v_push(v, ".%s", key);
	va_list ap;

	va_start(ap, fmt);
	v_report(v, ISM_DIAG_ERROR, ism_node_get(map, key, NULL), fmt, ap);
	va_end(ap);
	ism_v_pop(v, old);
}

void ism_v_warn(struct ism_vctx *v, const struct ism_node *at, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	v_report(v, ISM_DIAG_WARNING, at, fmt, ap);
	va_end(ap);
}

void *ism_v_alloc(struct ism_vctx *v, size_t n, size_t size)
{
	void *p;

	if (n == 0)
		n = 1;
	if (size != 0 && n > SIZE_MAX / size) {
		v->nomem = 1;
		return NULL;
	}
	p = ism_pool_alloc(&v->conf->pool, n * size);
	if (p == NULL)
		v->nomem = 1;
	return p;
}

char *ism_v_strdup(struct ism_vctx *v, const char *s)
{
	char *p = ism_pool_strndup(&v->conf->pool, s, strlen(s));

	if (p == NULL)
		v->nomem = 1;
	return p;
}

struct ism_strmap *ism_v_map(struct ism_vctx *v, size_t n)
{
	size_t cap = ism_strmap_fixed_cap(n);
	struct ism_strmap *m = ism_v_alloc(v, 1, sizeof(*m));
	struct ism_strmap_slot *slots = cap ? ism_v_alloc(v, cap, sizeof(*slots)) : NULL;

	if (m == NULL || slots == NULL) {
		v->nomem = 1;
		return NULL;
	}
	ism_strmap_init_fixed(m, v->conf->seed, slots, cap);
	return m;
}

int ism_v_map_add(struct ism_vctx *v, struct ism_strmap *m, const char *key, size_t len,
		  uint32_t value, uint32_t *found)
{
	/* Sized for every key it gets, so it never fills up; were it to, the
	 * load fails (as out of memory) rather than losing a key. */
	int rc = ism_strmap_add(m, key, len, value, found);

	if (rc < 0)
		v->nomem = 1;
	return rc;
}

bool ism_v_expect(struct ism_vctx *v, const struct ism_node *n, enum ism_node_kind k)
{
	if (n->kind == k)
		return true;
	if (ism_node_is_null(n))
		ism_v_err(v, n, "expected %s, got nothing", ism_node_kind_name(k));
	else
		ism_v_err(v, n, "expected %s, got %s", ism_node_kind_name(k),
			  ism_node_kind_name(n->kind));
	return false;
}

static bool in_list(const char *const *list, const char *s)
{
	for (; list != NULL && *list != NULL; list++)
		if (strcmp(*list, s) == 0)
			return true;
	return false;
}

/* The edit distance between a and b (insertions, deletions, substitutions and
 * swaps of neighbours, case-insensitive), or max + 1 once it is over max. */
static size_t distance(const char *a, const char *b, size_t max)
{
	size_t la = strlen(a), lb = strlen(b);
	size_t d[3][65];

	if (la > 64 || lb > 64 || (la > lb ? la - lb : lb - la) > max)
		return max + 1;
	for (size_t j = 0; j <= lb; j++)
		d[0][j] = j;
	for (size_t i = 1; i <= la; i++) {
		size_t *row = d[i % 3], *up = d[(i + 2) % 3], *up2 = d[(i + 1) % 3];

		row[0] = i;
		for (size_t j = 1; j <= lb; j++) {
			size_t cost =
			    tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
			size_t best = up[j - 1] + cost;

			if (up[j] + 1 < best)
				best = up[j] + 1;
			if (row[j - 1] + 1 < best)
				best = row[j - 1] + 1;
			if (i > 1 && j > 1 &&
			    tolower((unsigned char)a[i - 1]) == tolower((unsigned char)b[j - 2]) &&
			    tolower((unsigned char)a[i - 2]) == tolower((unsigned char)b[j - 1]) &&
			    up2[j - 2] + 1 < best)
				best = up2[j - 2] + 1;
			row[j] = best;
		}
	}
	return d[la % 3][lb] > max ? max + 1 : d[la % 3][lb];
}

/* The known field nearest to s, when one is near enough to be a typo (a third
 * of its length, at least one edit); NULL otherwise. */
static const char *nearest(const char *const *known, const char *s)
{
	size_t max = strlen(s) / 3 ? strlen(s) / 3 : 1, best_d = max + 1;
	const char *best = NULL;

	for (; known != NULL && *known != NULL; known++) {
		size_t dd = distance(s, *known, max);

		if (dd < best_d) {
			best_d = dd;
			best = *known;
		}
	}
	return best;
}

bool ism_v_keys(struct ism_vctx *v, const struct ism_node *map, const char *const *known,
		const char *const *unimpl)
{
	bool ok = true;

	for (size_t i = 0; i < map->n; i++) {
		const struct ism_node *k = map->pairs[i].key;
		size_t old;

		if (in_list(known, k->str))
			continue;
		old = ism_v_push(v, ".%s", k->str);
		if (in_list(unimpl, k->str))
			ism_v_err(v, k, "not implemented yet");
		else if (nearest(known, k->str) != NULL)
			ism_v_err(v, k, "unknown field; did you mean '%s'?",
				  nearest(known, k->str));
		else
			ism_v_err(v, k, "unknown field");
		ism_v_pop(v, old);
		ok = false;
	}
	return ok;
}

/* Looks key up; reports a missing required one. Pushes the path on success. */
static const struct ism_node *lookup(struct ism_vctx *v, const struct ism_node *map,
				     const char *key, bool required, size_t *old)
{
	const struct ism_node *n = ism_node_get(map, key, NULL);

	*old = ism_v_push(v, ".%s", key);
	if (n == NULL && required)
		ism_v_err(v, map, "required field missing");
	if (n == NULL)
		ism_v_pop(v, *old);
	return n;
}

/* What a plain scalar is to YAML 1.1, as Kubernetes reads a file (its YAML
 * library resolves these before the schema's types are checked): NULL for a
 * string (and for null, which the fields check apart). */
static const char *yaml_kind(const struct ism_node *n)
{
	if (!n->plain || n->kind != ISM_NODE_SCALAR)
		return NULL;
	switch (ism_yaml_resolve(n->str)) {
	case ISM_YAML_BOOL:
		return "a boolean";
	case ISM_YAML_INT:
		return "an integer";
	case ISM_YAML_FLOAT:
		return "a number";
	case ISM_YAML_STR:
	case ISM_YAML_NULL:
		break;
	}
	return NULL;
}

/* A scalar a string field takes: not one YAML 1.1 makes a number, boolean or
 * null (the Kubernetes API server refuses those there). */
static bool string_scalar(struct ism_vctx *v, const struct ism_node *n)
{
	const char *kind = yaml_kind(n);

	if (kind == NULL)
		return true;
	ism_v_err(v, n, "must be a string, not %s: quote it (\"%s\"), as Kubernetes reads YAML",
		  kind, n->str);
	return false;
}

bool ism_v_string_scalar(struct ism_vctx *v, const struct ism_node *n)
{
	if (!ism_v_expect(v, n, ISM_NODE_SCALAR))
		return false;
	if (ism_node_is_null(n)) {
		ism_v_err(v, n,
			  "must be a string, not null (\"%s\"): quote it, or leave the field out, "
			  "as Kubernetes drops a null",
			  n->str);
		return false;
	}
	return string_scalar(v, n);
}

/* A scalar a number or boolean field takes: not a quoted string, nor one
 * tagged !!str. */
static bool typed_scalar(struct ism_vctx *v, const struct ism_node *n, const char *what)
{
	if (n->kind != ISM_NODE_SCALAR || n->plain)
		return true;
	if (n->tag == ISM_TAG_STR)
		ism_v_err(v, n, "must be %s, not a string (it is tagged !!str)", what);
	else
		ism_v_err(v, n,
			  "must be %s, not a quoted string: write it without quotes, as "
			  "Kubernetes reads YAML",
			  what);
	return false;
}

int ism_v_str(struct ism_vctx *v, const struct ism_node *map, const char *key, bool required,
	      const char **out)
{
	const struct ism_node *n;
	size_t old;
	int rc = 1;

	n = lookup(v, map, key, required, &old);
	if (n == NULL)
		return 0;
	if (!ism_v_expect(v, n, ISM_NODE_SCALAR)) {
		rc = -1;
	} else if (n->len == 0 || ism_node_is_null(n)) {
		ism_v_err(v, n, "must not be empty");
		rc = -1;
	} else if (!string_scalar(v, n)) {
		rc = -1;
	} else {
		*out = n->str;
	}
	ism_v_pop(v, old);
	return rc;
}

int ism_parse_u64(const char *s, uint64_t *out)
{
	uint64_t r = 0;

	if (*s == '\0')
		return -EINVAL;
	for (; *s; s++) {
		if (*s < '0' || *s > '9')
			return -EINVAL;
		if (r > (UINT64_MAX - (uint64_t)(*s - '0')) / 10)
			return -ERANGE;
		r = r * 10 + (uint64_t)(*s - '0');
	}
	*out = r;
	return 0;
}

/* How go-yaml v2 (YAML 1.1, the library Kubernetes reads a file with)
 * reads integer text s that is not plain decimal: each '_' dropped, then
 * strconv.ParseInt's base 0 (a leading 0 octal, 0x hexadecimal, 0o octal, 0b
 * binary), and a leading 0 before an 8 or 9 the decimal it is as a float.
 * True with the value in *out and the base's name in *how ("" for decimal);
 * false for plain decimal text, and for text that is no such integer (the
 * field's own check says what it is). */
static bool yaml11_int(const char *s, uint64_t *out, const char **how)
{
	char t[80];
	const char *p, *digits = t;
	unsigned base = 10;
	uint64_t x = 0;
	size_t n = 0;

	if (strchr(s, '_') == NULL && (s[0] != '0' || s[1] == '\0'))
		return false;
	for (p = s; *p != '\0' && n < sizeof(t) - 1; p++)
		if (*p != '_')
			t[n++] = *p;
	if (*p != '\0')
		return false;
	t[n] = '\0';
	*how = "";
	if (t[0] == '0' && (t[1] == 'x' || t[1] == 'X'))
		base = 16, digits = t + 2, *how = "hexadecimal ";
	else if (t[0] == '0' && (t[1] == 'o' || t[1] == 'O'))
		base = 8, digits = t + 2, *how = "octal ";
	else if (t[0] == '0' && (t[1] == 'b' || t[1] == 'B'))
		base = 2, digits = t + 2, *how = "binary ";
	else if (t[0] == '0' && t[1] != '\0' && t[strspn(t, "01234567")] == '\0')
		base = 8, *how = "octal ";
	if (*digits == '\0')
		return false;
	for (p = digits; *p != '\0'; p++) {
		unsigned d = *p >= '0' && *p <= '9'   ? (unsigned)(*p - '0')
			     : *p >= 'a' && *p <= 'f' ? (unsigned)(*p - 'a' + 10)
			     : *p >= 'A' && *p <= 'F' ? (unsigned)(*p - 'A' + 10)
						      : 16;

		if (d >= base || x > (UINT64_MAX - d) / base)
			return false;
		x = x * base + d;
	}
	*out = x;
	return true;
}

bool ism_v_yaml_int(struct ism_vctx *v, const struct ism_node *n)
{
	const char *how, *bare;
	uint64_t x;
	char val[24];

	if (n->kind != ISM_NODE_SCALAR || !n->plain || !yaml11_int(n->str, &x, &how))
		return true;
	snprintf(val, sizeof(val), "%llu", (unsigned long long)x);
	bare = n->str + strspn(n->str, "0");
	/* A leading 0 the writer may have meant as padding: say both. */
	if (strcmp(how, "octal ") == 0 && n->str[1] != 'o' && n->str[1] != 'O' &&
	    bare[strspn(bare, "0123456789")] == '\0' && *bare != '\0' && strcmp(bare, val) != 0)
		ism_v_err(v, n, "%s is octal %s to Kubernetes; write %s, or %s without the 0",
			  n->str, val, val, bare);
	else
		ism_v_err(v, n, "%s is %s%s to Kubernetes; write %s", n->str, how, val, val);
	return false;
}

bool ism_v_plain_int(struct ism_vctx *v, const struct ism_node *n)
{
	return typed_scalar(v, n, "an integer") && ism_v_yaml_int(v, n);
}

/* ism_v_u64, and required besides (ism_v_u32's). */
static int v_u64(struct ism_vctx *v, const struct ism_node *map, const char *key, bool required,
		 uint64_t lo, uint64_t hi, uint64_t *out)
{
	const struct ism_node *n;
	uint64_t x;
	size_t old;
	int rc = 1;

	n = lookup(v, map, key, required, &old);
	if (n == NULL)
		return 0;
	if (!ism_v_plain_int(v, n)) {
		rc = -1;
	} else if (n->kind != ISM_NODE_SCALAR || ism_parse_u64(n->str, &x) < 0 || x < lo ||
		   x > hi) {
		ism_v_err(v, n, "must be an integer between %llu and %llu", (unsigned long long)lo,
			  (unsigned long long)hi);
		rc = -1;
	} else {
		*out = x;
	}
	ism_v_pop(v, old);
	return rc;
}

int ism_v_u64(struct ism_vctx *v, const struct ism_node *map, const char *key, uint64_t lo,
	      uint64_t hi, uint64_t *out)
{
	return v_u64(v, map, key, false, lo, hi, out);
}

int ism_v_u32(struct ism_vctx *v, const struct ism_node *map, const char *key, bool required,
	      uint32_t lo, uint32_t hi, uint32_t *out)
{
	uint64_t x;
	int rc = v_u64(v, map, key, required, lo, hi, &x);

	if (rc > 0)
		*out = (uint32_t)x;
	return rc;
}

int ism_v_bool(struct ism_vctx *v, const struct ism_node *map, const char *key, bool *out)
{
	const struct ism_node *n;
	size_t old;
	int rc = 1;

	n = lookup(v, map, key, false, &old);
	if (n == NULL)
		return 0;
	/* YAML 1.1's booleans, as Kubernetes reads them (True, yes, on...). */
	if (!typed_scalar(v, n, "true or false")) {
		rc = -1;
	} else if (n->kind != ISM_NODE_SCALAR || !ism_yaml_bool(n->str, out)) {
		ism_v_err(v, n, "must be true or false");
		rc = -1;
	}
	ism_v_pop(v, old);
	return rc;
}

/* The file's durations: no sign but '+'; an integer part past 10^13 + 9 is
 * too large whatever its unit (past the largest of any unit but ns, of which
 * it also refuses 10^14ns, 27.8 h, that would fit); a fraction's digits past
 * the ninth are dropped. */
static const struct ism_dur_syntax conf_dur = {
    .ip_max = 10000000000009ull,
    .frac_max = UINT64_MAX,
    .frac_digits = 9,
};

/* A duration in nanoseconds, at most UINT32_MAX ms: 0, -EINVAL or -ERANGE. */
int ism_parse_duration_ns(const char *s, uint64_t *out)
{
	/* Go/Istio form: one or more <decimal><unit>, e.g. "1m30s", "1.5s". The sum
	 * is kept in nanoseconds with overflow checks. A sum past the largest is
	 * noted and the text read to its end, so that -ERANGE is only said of a
	 * well-formed duration. */
	const uint64_t max_ns = (uint64_t)UINT32_MAX * 1000000ull;
	struct ism_dur_scan sc;
	struct ism_dur_part d;
	uint64_t total = 0, part, scale;
	bool over = false, neg;
	int rc;

	if (ism_dur_begin(&sc, &conf_dur, s, strlen(s), &neg) < 0)
		return -EINVAL;
	while ((rc = ism_dur_next(&sc, &d)) > 0) {
		if (over || d.ip_over || d.ip > max_ns / d.unit_ns) {
			over = true;
			continue;
		}
		for (scale = 1; d.frac_n > 0; d.frac_n--)
			scale *= 10;
		/* 128 bits: a fraction of 9 digits times an hour's
		 * nanoseconds is past 64 ("0.500000000m" was 11.55 s). */
		part =
		    d.ip * d.unit_ns + (uint64_t)(((unsigned __int128)d.frac * d.unit_ns) / scale);
		if (part > max_ns - total)
			over = true;
		else
			total += part;
	}
	if (rc < 0)
		return rc;
	if (over)
		return -ERANGE;
	*out = total;
	return 0;
}

int ism_parse_duration_ms(const char *s, uint32_t *out)
{
	uint64_t ns;
	int rc = ism_parse_duration_ns(s, &ns);

	if (rc == 0)
		*out = (uint32_t)((ns + 999999) / 1000000);
	return rc;
}

/* ism_v_dur, and with istio Istio's rule (ValidateDuration) besides. */
static int dur_field(struct ism_vctx *v, const struct ism_node *map, const char *key,
		     uint32_t min_ms, bool istio, uint32_t *out)
{
	const struct ism_node *n;
	const char *kind;
	uint64_t ns = 0;
	uint32_t ms = 0;
	size_t old;
	int rc = 1, prc = -EINVAL;

	n = lookup(v, map, key, false, &old);
	if (n == NULL)
		return 0;
	/* A duration is a string to Kubernetes: a plain 0 is an integer */
	kind = yaml_kind(n);
	if (kind != NULL) {
		ism_v_err(v, n,
			  "must be a duration such as \"10s\", \"250ms\", \"1.5s\" or \"2m\" "
			  "(%s is %s to Kubernetes)",
			  n->str, kind);
		ism_v_pop(v, old);
		return -1;
	}
	if (n->kind == ISM_NODE_SCALAR && (prc = ism_parse_duration_ns(n->str, &ns)) == 0)
		ms = (uint32_t)((ns + 999999) / 1000000);
	if (prc == 0 && istio && ns < 1000000) {
		ism_v_err(v, n, "must be at least 1ms (Istio: duration must be greater than 1ms)");
		rc = -1;
	} else if (prc == 0 && istio && ns % 1000000 != 0) {
		ism_v_err(v, n, "only durations to ms precision are supported (as in Istio)");
		rc = -1;
	} else if (prc == -ERANGE) {
		/* Durations are kept in 32-bit milliseconds. */
		ism_v_err(v, n, "too large: at most 1193h2m47.295s (%u ms)", UINT32_MAX);
		rc = -1;
	} else if (prc < 0) {
		ism_v_err(v, n,
			  "must be a duration such as \"10s\", \"250ms\", \"1.5s\" or \"2m\"");
		rc = -1;
	} else if (ms < min_ms) {
		ism_v_err(v, n, "must be at least %ums", min_ms);
		rc = -1;
	} else {
		*out = ms;
	}
	ism_v_pop(v, old);
	return rc;
}

int ism_v_dur(struct ism_vctx *v, const struct ism_node *map, const char *key, uint32_t min_ms,
	      uint32_t *out)
{
	return dur_field(v, map, key, min_ms, false, out);
}

int ism_v_istio_dur(struct ism_vctx *v, const struct ism_node *map, const char *key, uint32_t *out)
{
	return dur_field(v, map, key, 1, true, out);
}

int ism_v_double(struct ism_vctx *v, const struct ism_node *map, const char *key, double lo,
		 double hi, bool lo_open, double *out)
{
	const struct ism_node *n;
	char *end = NULL;
	double x = 0;
	size_t old;
	int rc = 1;

	n = lookup(v, map, key, false, &old);
	if (n == NULL)
		return 0;
	if (!typed_scalar(v, n, "a number") || !ism_v_yaml_int(v, n)) {
		ism_v_pop(v, old);
		return -1;
	}
	if (n->kind == ISM_NODE_SCALAR && n->len > 0) {
		errno = 0;
		x = strtod(n->str, &end);
	}
	if (n->kind != ISM_NODE_SCALAR || n->len == 0 || end == NULL || *end != '\0' ||
	    errno != 0 || !(x >= lo && x <= hi) || (lo_open && x == lo)) {
		ism_v_err(v, n, "must be a number %s %g and at most %g",
			  lo_open ? "greater than" : "of at least", lo, hi);
		rc = -1;
	} else {
		*out = x;
	}
	ism_v_pop(v, old);
	return rc;
}

const struct ism_node *ism_v_node(struct ism_vctx *v, const struct ism_node *map, const char *key,
				  bool required, enum ism_node_kind k)
{
	const struct ism_node *n;
	size_t old;

	n = lookup(v, map, key, required, &old);
	if (n == NULL)
		return NULL;
	if (!ism_v_expect(v, n, k))
		n = NULL;
	ism_v_pop(v, old);
	return n;
}

bool ism_locality_valid(const char *s, int min_parts)
{
	struct ism_locality l;

	return ism_locality_parse(s, false, &l) >= min_parts;
}

/* A required or optional list of non-empty strings. */
const char **ism_v_strlist(struct ism_vctx *v, const struct ism_node *map, const char *key,
			   bool required, size_t *n, const struct ism_node **listp)
{
	const struct ism_node *l = ism_v_node(v, map, key, required, ISM_NODE_SEQ);
	const char **out;
	size_t old;

	*n = 0;
	if (listp)
		*listp = l;
	if (l == NULL)
		return NULL;
	old = ism_v_push(v, ".%s", key);
	if (l->n == 0 && required)
		ism_v_err(v, l, "must not be empty");
	out = ism_v_alloc(v, l->n, sizeof(*out));
	for (size_t i = 0; out != NULL && i < l->n; i++) {
		const struct ism_node *it = l->items[i];
		size_t o2 = ism_v_push(v, "[%zu]", i);

		if (ism_v_expect(v, it, ISM_NODE_SCALAR)) {
			if (it->len == 0)
				ism_v_err(v, it, "must not be empty");
			else if (ism_v_string_scalar(v, it))
				out[(*n)++] = it->str;
		}
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
	return out;
}

/* "A, B or C": the values of list, for a message (truncated to len). */
static const char *list_text(const char *const *list, char *buf, size_t len)
{
	size_t n = 0, used = 0;

	while (list[n] != NULL)
		n++;
	buf[0] = '\0';
	for (size_t i = 0; i < n && used < len; i++) {
		int w = snprintf(buf + used, len - used, "%s%s",
				 i == 0	     ? ""
				 : i + 1 < n ? ", "
					     : " or ",
				 list[i]);

		if (w < 0)
			break;
		used += (size_t)w;
	}
	return buf;
}

/* The entry of list equal to s (ignoring case when icase), or NULL. */
static const char *find_value(const char *const *list, const char *s, bool icase)
{
	for (; list != NULL && *list != NULL; list++)
		if ((icase ? strcasecmp(*list, s) : strcmp(*list, s)) == 0)
			return *list;
	return NULL;
}

/* Reports an enum value that is not one of ok[] (nor of unimpl[]). */
static int v_enum(struct ism_vctx *v, const struct ism_node *map, const char *key,
		  const char *const *ok, const char *const *unimpl, bool icase, const char **out)
{
	const char *s = NULL, *hit;
	const struct ism_node *n = ism_node_get(map, key, NULL);
	int rc = ism_v_str(v, map, key, false, &s);
	char values[256];
	size_t old;

	if (rc <= 0)
		return rc;
	old = ism_v_push(v, ".%s", key);
	hit = find_value(ok, s, icase);
	if (hit != NULL)
		*out = hit;
	else if (find_value(unimpl, s, icase) != NULL)
		ism_v_err(v, n, "%s is not implemented yet", s);
	else
		ism_v_err(v, n, "unknown value \"%s\"; expected %s", s,
			  list_text(ok, values, sizeof(values)));
	ism_v_pop(v, old);
	return hit != NULL ? 1 : -1;
}

int ism_v_enum(struct ism_vctx *v, const struct ism_node *map, const char *key,
	       const char *const *ok, const char *const *unimpl, const char **out)
{
	return v_enum(v, map, key, ok, unimpl, false, out);
}

int ism_v_enum_nocase(struct ism_vctx *v, const struct ism_node *map, const char *key,
		      const char *const *ok, const char *const *unimpl, const char **out)
{
	return v_enum(v, map, key, ok, unimpl, true, out);
}

/* An Istio Percent's value (a double 0..100, written in decimal) in
 * millionths, truncated as Istio's uint32(value * 10000) truncates; false
 * when not such a number. */
static bool percent_millionths(const char *s, uint32_t *out)
{
	uint64_t whole = 0, frac = 0, scale = 10000;
	const char *p = s;

	bool over = false; /* a nonzero digit past 100's */

	if (*p == '+')
		p++;
	if ((*p < '0' || *p > '9') && !(*p == '.' && p[1] >= '0' && p[1] <= '9'))
		return false;
	while (*p >= '0' && *p <= '9') {
		whole = whole * 10 + (uint64_t)(*p++ - '0');
		if (whole > 100)
			return false;
	}
	if (*p == '.') {
		p++;
		while (*p >= '0' && *p <= '9') {
			if (scale > 1) {
				frac = frac * 10 + (uint64_t)(*p - '0');
				scale /= 10;
			} else if (*p != '0') {
				over = true; /* finer than a millionth: read past it */
			}
			p++;
		}
		frac *= scale;
	}
	/* 100.000001 is over 100 (Istio's bound), not 100 */
	if (*p != '\0' || whole * 10000 + frac > 1000000 ||
	    (over && whole * 10000 + frac == 1000000))
		return false;
	*out = (uint32_t)(whole * 10000 + frac);
	return true;
}

int ism_v_percent(struct ism_vctx *v, const struct ism_node *map, const char *key, uint32_t *ppm)
{
	static const char *const keys[] = {"value", NULL};
	const struct ism_node *n = ism_node_get(map, key, NULL), *val;
	size_t old;
	int rc = 1;

	if (n == NULL)
		return 0;
	old = ism_v_push(v, ".%s", key);
	if (!ism_v_expect(v, n, ISM_NODE_MAP) || !ism_v_keys(v, n, keys, NULL)) {
		ism_v_pop(v, old);
		return -1;
	}
	val = ism_node_get(n, "value", NULL);
	if (val == NULL) {
		*ppm = 0; /* Istio: an unset value is 0 */
	} else {
		size_t o2 = ism_v_push(v, ".value");

		if (!typed_scalar(v, val, "a number") || !ism_v_yaml_int(v, val)) {
			rc = -1;
		} else if (val->kind != ISM_NODE_SCALAR || !percent_millionths(val->str, ppm)) {
			ism_v_err(v, val, "must be a number between 0 and 100");
			rc = -1;
		}
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
	return rc;
}
