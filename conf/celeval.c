/* SPDX-License-Identifier: Apache-2.0 */
/* The CEL evaluator: a recursive walk of the compiled tree, as deep as the
 * tree is high (the compiler bounds it; a guard here refuses deeper). Values
 * are errors rather than failures, as CEL's are: each operator checks its
 * operands' types (cel-spec's overloads; "no matching overload" otherwise)
 * and passes the first error on. Nothing is allocated: strings point into
 * the caller's values, the program's pool or the scratch space. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf/cel-int.h"
#include "conf/cel.h"
#include "conf/duration.h"

struct cel_run {
	const struct cel_node *node;
	uint16_t n_nodes;
	const char *pool;
	const struct ism_cel_env *env;
	char *scratch;
	size_t cap, used;
};

static void eval(struct cel_run *r, uint16_t x, int depth, struct ism_cel_val *out);

static void set_err(struct ism_cel_val *o, const char *why)
{
	o->type = ISM_CEL_ERROR;
	o->v.s.p = why;
	o->v.s.len = strlen(why);
}

static void set_bool(struct ism_cel_val *o, bool b)
{
	o->type = ISM_CEL_BOOL;
	o->v.b = b;
}

static const char no_overload[] = "no matching overload";

static bool is_num(uint8_t t)
{
	return t == ISM_CEL_INT || t == ISM_CEL_UINT || t == ISM_CEL_DOUBLE;
}

/* Reserves n bytes of scratch space, or NULL. */
static char *scratch(struct cel_run *r, size_t n)
{
	char *p;

	if (r->cap - r->used < n)
		return NULL;
	p = r->scratch + r->used;
	r->used += n;
	return p;
}

/* i against d, exactly: -1, 0, 1, or 2 when d is NaN. A double holds every
 * integer in [-2^63, 2^63) that it can compare equal to, so comparing the
 * integer part as an int64 and then the fraction loses nothing. */
static int cmp_int_double(int64_t i, double d)
{
	double t;

	if (isnan(d))
		return 2;
	if (d >= 9223372036854775808.0)
		return -1;
	if (d < -9223372036854775808.0)
		return 1;
	t = trunc(d);
	if (i != (int64_t)t)
		return i < (int64_t)t ? -1 : 1;
	return d > t ? -1 : d < t ? 1 : 0;
}

static int cmp_uint_double(uint64_t u, double d)
{
	double t;

	if (isnan(d))
		return 2;
	if (d < 0)
		return 1;
	if (d >= 18446744073709551616.0)
		return -1;
	t = trunc(d);
	if (u != (uint64_t)t)
		return u < (uint64_t)t ? -1 : 1;
	return d > t ? -1 : d < t ? 1 : 0;
}

#define CMP(a, b) ((a) < (b) ? -1 : (a) > (b) ? 1 : 0)

/* Two numbers of any of the three types by value, as cel-spec's
 * heterogeneous comparisons do: -1, 0, 1, or 2 when unordered (NaN). */
static int cmp_num(const struct ism_cel_val *a, const struct ism_cel_val *b)
{
	int c;

	if (a->type == ISM_CEL_DOUBLE && b->type == ISM_CEL_DOUBLE)
		return isnan(a->v.d) || isnan(b->v.d) ? 2 : CMP(a->v.d, b->v.d);
	if (a->type == ISM_CEL_DOUBLE) {
		c = cmp_num(b, a);
		return c == 2 ? 2 : -c;
	}
	if (a->type == ISM_CEL_INT && b->type == ISM_CEL_INT)
		return CMP(a->v.i, b->v.i);
	if (a->type == ISM_CEL_UINT && b->type == ISM_CEL_UINT)
		return CMP(a->v.u, b->v.u);
	if (a->type == ISM_CEL_INT && b->type == ISM_CEL_UINT)
		return a->v.i < 0 ? -1 : CMP((uint64_t)a->v.i, b->v.u);
	if (a->type == ISM_CEL_UINT && b->type == ISM_CEL_INT)
		return b->v.i < 0 ? 1 : CMP(a->v.u, (uint64_t)b->v.i);
	if (a->type == ISM_CEL_INT)
		return cmp_int_double(a->v.i, b->v.d);
	return cmp_uint_double(a->v.u, b->v.d);
}

static int cmp_str(const struct ism_cel_val *a, const struct ism_cel_val *b)
{
	size_t n = a->v.s.len < b->v.s.len ? a->v.s.len : b->v.s.len;
	int c = n ? memcmp(a->v.s.p, b->v.s.p, n) : 0;

	return c != 0 ? (c < 0 ? -1 : 1) : CMP(a->v.s.len, b->v.s.len);
}

/* a against b where CEL orders them: -1, 0, 1, 2 (unordered), or -2 when
 * their types have no ordering. */
static int cmp(const struct ism_cel_val *a, const struct ism_cel_val *b)
{
	if (is_num(a->type) && is_num(b->type))
		return cmp_num(a, b);
	if (a->type != b->type)
		return -2;
	switch (a->type) {
	case ISM_CEL_STRING:
		return cmp_str(a, b);
	case ISM_CEL_BOOL:
		return CMP(a->v.b, b->v.b);
	case ISM_CEL_DURATION:
		return CMP(a->v.ns, b->v.ns);
	default:
		return -2;
	}
}

/* Heterogeneous equality (cel-cpp's default, and cel-spec's since 2022):
 * values of types that do not compare are unequal, never an error. */
static bool equal(const struct ism_cel_val *a, const struct ism_cel_val *b)
{
	if (a->type == ISM_CEL_NULL || b->type == ISM_CEL_NULL)
		return a->type == b->type;
	return cmp(a, b) == 0;
}

/* Evaluates the operands of binary node n into a and b; false (with *out
 * the first error) when either is an error. */
static bool operands(struct cel_run *r, const struct cel_node *n, int depth, struct ism_cel_val *a,
		     struct ism_cel_val *b, struct ism_cel_val *out)
{
	eval(r, n->kid[0], depth, a);
	if (a->type == ISM_CEL_ERROR) {
		*out = *a;
		return false;
	}
	eval(r, n->kid[1], depth, b);
	if (b->type == ISM_CEL_ERROR) {
		*out = *b;
		return false;
	}
	return true;
}

static void eval_relation(struct cel_run *r, const struct cel_node *n, int depth,
			  struct ism_cel_val *out)
{
	struct ism_cel_val a, b;
	int c;

	if (!operands(r, n, depth, &a, &b, out))
		return;
	if (n->op == CEL_EQ || n->op == CEL_NE) {
		set_bool(out, equal(&a, &b) == (n->op == CEL_EQ));
		return;
	}
	c = cmp(&a, &b);
	if (c == -2) {
		set_err(out, no_overload);
		return;
	}
	/* NaN is unordered (2): every ordering is false. */
	if (n->op == CEL_LT)
		set_bool(out, c == -1);
	else if (n->op == CEL_LE)
		set_bool(out, c == -1 || c == 0);
	else if (n->op == CEL_GT)
		set_bool(out, c == 1);
	else
		set_bool(out, c == 1 || c == 0);
}

/* && and ||: CEL's commutative logic. A decisive operand (false for &&,
 * true for ||) wins over an error on the other side, in either order;
 * otherwise an error (or a value that is not a bool) is the result. */
static void eval_logic(struct cel_run *r, const struct cel_node *n, int depth,
		       struct ism_cel_val *out)
{
	bool decisive = n->op == CEL_OR;
	struct ism_cel_val a, b;

	eval(r, n->kid[0], depth, &a);
	if (a.type == ISM_CEL_BOOL && a.v.b == decisive) {
		set_bool(out, decisive);
		return;
	}
	eval(r, n->kid[1], depth, &b);
	if (b.type == ISM_CEL_BOOL && b.v.b == decisive) {
		set_bool(out, decisive);
		return;
	}
	if (a.type == ISM_CEL_ERROR)
		*out = a;
	else if (b.type == ISM_CEL_ERROR)
		*out = b;
	else if (a.type != ISM_CEL_BOOL || b.type != ISM_CEL_BOOL)
		set_err(out, no_overload);
	else
		set_bool(out, !decisive);
}

static void eval_cond(struct cel_run *r, const struct cel_node *n, int depth,
		      struct ism_cel_val *out)
{
	eval(r, n->kid[0], depth, out);
	if (out->type == ISM_CEL_ERROR)
		return;
	if (out->type != ISM_CEL_BOOL) {
		set_err(out, no_overload);
		return;
	}
	eval(r, n->kid[out->v.b ? 1 : 2], depth, out);
}

static void eval_unary(struct cel_run *r, const struct cel_node *n, int depth,
		       struct ism_cel_val *out)
{
	eval(r, n->kid[0], depth, out);
	if (out->type == ISM_CEL_ERROR)
		return;
	if (n->op == CEL_NOT) {
		if (out->type != ISM_CEL_BOOL) {
			set_err(out, no_overload);
			return;
		}
		out->v.b = !out->v.b;
	} else if (out->type == ISM_CEL_INT) {
		if (out->v.i == INT64_MIN) {
			set_err(out, "integer overflow");
			return;
		}
		out->v.i = -out->v.i;
	} else if (out->type == ISM_CEL_DOUBLE) {
		out->v.d = -out->v.d;
	} else {
		set_err(out, no_overload);
	}
}

/* a op b into *v for + - and *, true on overflow: the builtins take any
 * integer type, so int and uint share this. */
#define CHECKED(op, a, b, v)                                                                       \
	((op) == CEL_ADD   ? __builtin_add_overflow(a, b, v)                                       \
	 : (op) == CEL_SUB ? __builtin_sub_overflow(a, b, v)                                       \
			   : __builtin_mul_overflow(a, b, v))

/* Whether op divides by zero (then *out is the error). */
static bool by_zero(uint8_t op, bool zero, struct ism_cel_val *out)
{
	if ((op != CEL_DIV && op != CEL_MOD) || !zero)
		return false;
	set_err(out, op == CEL_DIV ? "division by zero" : "modulus by zero");
	return true;
}

static void arith_int(uint8_t op, int64_t a, int64_t b, struct ism_cel_val *out)
{
	bool over = false;
	int64_t v = 0;

	if (by_zero(op, b == 0, out))
		return;
	if (op != CEL_DIV && op != CEL_MOD)
		over = CHECKED(op, a, b, &v);
	else if (a == INT64_MIN && b == -1) /* the one quotient out of range */
		over = true;
	else
		v = op == CEL_DIV ? a / b : a % b;
	if (over) {
		set_err(out, "integer overflow");
		return;
	}
	out->type = ISM_CEL_INT;
	out->v.i = v;
}

static void arith_uint(uint8_t op, uint64_t a, uint64_t b, struct ism_cel_val *out)
{
	bool over = false;
	uint64_t v = 0;

	if (by_zero(op, b == 0, out))
		return;
	if (op != CEL_DIV && op != CEL_MOD)
		over = CHECKED(op, a, b, &v);
	else
		v = op == CEL_DIV ? a / b : a % b;
	if (over) {
		set_err(out, "unsigned integer overflow");
		return;
	}
	out->type = ISM_CEL_UINT;
	out->v.u = v;
}

static void arith_double(uint8_t op, double a, double b, struct ism_cel_val *out)
{
	out->type = ISM_CEL_DOUBLE;
	if (op == CEL_ADD)
		out->v.d = a + b;
	else if (op == CEL_SUB)
		out->v.d = a - b;
	else if (op == CEL_MUL)
		out->v.d = a * b;
	else if (op == CEL_DIV)
		out->v.d = a / b;
	else
		set_err(out, no_overload);
}

static void arith_duration(uint8_t op, int64_t a, int64_t b, struct ism_cel_val *out)
{
	int64_t v;

	if (op != CEL_ADD && op != CEL_SUB) {
		set_err(out, no_overload);
		return;
	}
	if (op == CEL_ADD ? __builtin_add_overflow(a, b, &v) : __builtin_sub_overflow(a, b, &v)) {
		set_err(out, "duration overflow");
		return;
	}
	out->type = ISM_CEL_DURATION;
	out->v.ns = v;
}

static void concat(struct cel_run *r, const struct ism_cel_val *a, const struct ism_cel_val *b,
		   struct ism_cel_val *out)
{
	char *p = scratch(r, a->v.s.len + b->v.s.len);

	if (p == NULL) {
		set_err(out, "string longer than the scratch space");
		return;
	}
	if (a->v.s.len)
		memcpy(p, a->v.s.p, a->v.s.len);
	if (b->v.s.len)
		memcpy(p + a->v.s.len, b->v.s.p, b->v.s.len);
	out->type = ISM_CEL_STRING;
	out->v.s.p = p;
	out->v.s.len = a->v.s.len + b->v.s.len;
}

/* + - * / %: CEL has no arithmetic across types (1 + 1u is an error). */
static void eval_arith(struct cel_run *r, const struct cel_node *n, int depth,
		       struct ism_cel_val *out)
{
	struct ism_cel_val a, b;

	if (!operands(r, n, depth, &a, &b, out))
		return;
	if (a.type != b.type)
		set_err(out, no_overload);
	else if (a.type == ISM_CEL_INT)
		arith_int(n->op, a.v.i, b.v.i, out);
	else if (a.type == ISM_CEL_UINT)
		arith_uint(n->op, a.v.u, b.v.u, out);
	else if (a.type == ISM_CEL_DOUBLE)
		arith_double(n->op, a.v.d, b.v.d, out);
	else if (a.type == ISM_CEL_DURATION)
		arith_duration(n->op, a.v.ns, b.v.ns, out);
	else if (a.type == ISM_CEL_STRING && n->op == CEL_ADD)
		concat(r, &a, &b, out);
	else
		set_err(out, no_overload);
}

/* size(s): CEL counts a string's code points; here the bytes that do not
 * continue a UTF-8 sequence, which is that for valid UTF-8. */
static int64_t code_points(const char *p, size_t len)
{
	int64_t n = 0;

	for (size_t k = 0; k < len; k++)
		n += ((unsigned char)p[k] & 0xc0) != 0x80;
	return n;
}

/* size, startsWith, endsWith, contains: on strings only, compared bytewise
 * (UTF-8 makes that the code points' comparison). */
static void eval_string_fn(struct cel_run *r, const struct cel_node *n, int depth,
			   struct ism_cel_val *out)
{
	struct ism_cel_val a, b;
	const char *s;
	size_t k;

	if (n->op == CEL_SIZE) {
		eval(r, n->kid[0], depth, out);
		if (out->type == ISM_CEL_STRING) {
			out->type = ISM_CEL_INT;
			out->v.i = code_points(out->v.s.p, out->v.s.len);
		} else if (out->type != ISM_CEL_ERROR) {
			set_err(out, no_overload);
		}
		return;
	}
	if (!operands(r, n, depth, &a, &b, out))
		return;
	if (a.type != ISM_CEL_STRING || b.type != ISM_CEL_STRING) {
		set_err(out, no_overload);
		return;
	}
	s = a.v.s.p;
	k = b.v.s.len;
	if (k > a.v.s.len)
		set_bool(out, false);
	else if (k == 0)
		set_bool(out, true);
	else if (n->op == CEL_STARTS)
		set_bool(out, memcmp(s, b.v.s.p, k) == 0);
	else if (n->op == CEL_ENDS)
		set_bool(out, memcmp(s + a.v.s.len - k, b.v.s.p, k) == 0);
	else
		set_bool(out, memmem(s, a.v.s.len, b.v.s.p, k) != NULL);
}

/* s as a decimal integer, as Go's strconv.ParseInt(s, 10, 64) (cel-go)
 * reads it: an optional sign when sign, then digits only. */
static bool parse_dec(const char *p, size_t len, bool sign, bool *neg, uint64_t *mag)
{
	size_t k = 0;

	*neg = false;
	*mag = 0;
	if (sign && len > 0 && (p[0] == '+' || p[0] == '-'))
		*neg = p[k++] == '-';
	if (k == len)
		return false;
	for (; k < len; k++) {
		if (p[k] < '0' || p[k] > '9' || __builtin_mul_overflow(*mag, 10, mag) ||
		    __builtin_add_overflow(*mag, (unsigned)(p[k] - '0'), mag))
			return false;
	}
	return true;
}

static void to_int(struct ism_cel_val *v)
{
	uint64_t mag;
	bool neg;

	if (v->type == ISM_CEL_UINT && v->v.u <= INT64_MAX) {
		v->v.i = (int64_t)v->v.u;
	} else if (v->type == ISM_CEL_DOUBLE && v->v.d > -9223372036854775808.0 &&
		   v->v.d < 9223372036854775808.0) {
		v->v.i = (int64_t)v->v.d; /* truncated toward zero, as cel-go */
	} else if (v->type == ISM_CEL_STRING && parse_dec(v->v.s.p, v->v.s.len, true, &neg, &mag) &&
		   mag <= (uint64_t)INT64_MAX + neg) {
		v->v.i = neg ? (int64_t)(0 - mag) : (int64_t)mag;
	} else if (v->type != ISM_CEL_INT) {
		set_err(v, v->type == ISM_CEL_STRING || is_num(v->type)
			       ? "int range or syntax error"
			       : no_overload);
		return;
	}
	v->type = ISM_CEL_INT;
}

static void to_uint(struct ism_cel_val *v)
{
	uint64_t mag;
	bool neg;

	if (v->type == ISM_CEL_INT && v->v.i >= 0) {
		v->v.u = (uint64_t)v->v.i;
	} else if (v->type == ISM_CEL_DOUBLE && v->v.d >= 0.0 && v->v.d < 18446744073709551616.0) {
		v->v.u = (uint64_t)v->v.d;
	} else if (v->type == ISM_CEL_STRING &&
		   parse_dec(v->v.s.p, v->v.s.len, false, &neg, &mag)) {
		v->v.u = mag;
	} else if (v->type != ISM_CEL_UINT) {
		set_err(v, v->type == ISM_CEL_STRING || is_num(v->type)
			       ? "uint range or syntax error"
			       : no_overload);
		return;
	}
	v->type = ISM_CEL_UINT;
}

/* s as a double: what strtod reads, whole, without leading space, up to 63
 * bytes (a longer number is an error here). */
static bool parse_double(const char *p, size_t len, double *d)
{
	char buf[64], *end;

	if (len == 0 || len >= sizeof(buf) || p[0] == ' ' || (p[0] >= '\t' && p[0] <= '\r'))
		return false;
	memcpy(buf, p, len);
	buf[len] = '\0';
	*d = strtod(buf, &end);
	return end == buf + len;
}

static void to_double(struct ism_cel_val *v)
{
	double d = v->v.d;

	if (v->type == ISM_CEL_INT) {
		d = (double)v->v.i;
	} else if (v->type == ISM_CEL_UINT) {
		d = (double)v->v.u;
	} else if (v->type == ISM_CEL_STRING) {
		if (!parse_double(v->v.s.p, v->v.s.len, &d)) {
			set_err(v, "double syntax error");
			return;
		}
	} else if (v->type != ISM_CEL_DOUBLE) {
		set_err(v, no_overload);
		return;
	}
	v->type = ISM_CEL_DOUBLE;
	v->v.d = d;
}

/* A duration as protobuf's JSON writes it, which cel-go's string() gives:
 * seconds, a fraction without trailing zeros, "s". */
static int fmt_duration(char *buf, size_t cap, int64_t ns)
{
	uint64_t a = ns < 0 ? 0 - (uint64_t)ns : (uint64_t)ns;
	unsigned frac = (unsigned)(a % 1000000000u);
	int n =
	    snprintf(buf, cap, "%s%llu", ns < 0 ? "-" : "", (unsigned long long)(a / 1000000000u));
	int digits = 9;

	if (frac != 0) {
		while (frac % 10 == 0)
			frac /= 10, digits--;
		n += snprintf(buf + n, cap - (size_t)n, ".%0*u", digits, frac);
	}
	return n + snprintf(buf + n, cap - (size_t)n, "s");
}

/* string(x): integers in decimal; doubles as cel-cpp's absl::StrCat writes
 * them, which is printf's %g (six significant digits); bools as true and
 * false. */
static void to_string(struct cel_run *r, struct ism_cel_val *v)
{
	char buf[48], *p;
	int n;

	if (v->type == ISM_CEL_STRING)
		return;
	if (v->type == ISM_CEL_INT)
		n = snprintf(buf, sizeof(buf), "%lld", (long long)v->v.i);
	else if (v->type == ISM_CEL_UINT)
		n = snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v->v.u);
	else if (v->type == ISM_CEL_DOUBLE)
		n = isnan(v->v.d) ? snprintf(buf, sizeof(buf), "nan")
				  : snprintf(buf, sizeof(buf), "%g", v->v.d);
	else if (v->type == ISM_CEL_BOOL)
		n = snprintf(buf, sizeof(buf), "%s", v->v.b ? "true" : "false");
	else if (v->type == ISM_CEL_DURATION)
		n = fmt_duration(buf, sizeof(buf), v->v.ns);
	else {
		set_err(v, no_overload);
		return;
	}
	p = scratch(r, (size_t)n);
	if (p == NULL) {
		set_err(v, "string longer than the scratch space");
		return;
	}
	memcpy(p, buf, (size_t)n);
	v->type = ISM_CEL_STRING;
	v->v.s.p = p;
	v->v.s.len = (size_t)n;
}

static void eval_convert(struct cel_run *r, const struct cel_node *n, int depth,
			 struct ism_cel_val *out)
{
	int64_t ns;

	eval(r, n->kid[0], depth, out);
	if (out->type == ISM_CEL_ERROR)
		return;
	switch (n->op) {
	case CEL_TO_INT:
		to_int(out);
		break;
	case CEL_TO_UINT:
		to_uint(out);
		break;
	case CEL_TO_DOUBLE:
		to_double(out);
		break;
	case CEL_TO_STRING:
		to_string(r, out);
		break;
	default:
		if (out->type == ISM_CEL_STRING &&
		    cel_duration_parse(out->v.s.p, out->v.s.len, &ns) < 0) {
			set_err(out, "invalid duration");
		} else if (out->type == ISM_CEL_STRING) {
			out->type = ISM_CEL_DURATION;
			out->v.ns = ns;
		} else if (out->type != ISM_CEL_DURATION) {
			set_err(out, no_overload);
		}
	}
}

static bool lookup_attr(struct cel_run *r, uint16_t id, struct ism_cel_val *out)
{
	return r->env->attr != NULL && r->env->attr(r->env->ctx, id, out);
}

static bool lookup_key(struct cel_run *r, uint16_t id, const char *key, size_t len,
		       struct ism_cel_val *out)
{
	return r->env->map_get != NULL && r->env->map_get(r->env->ctx, id, key, len, out);
}

/* m[key], m.key, has(m.key), has(a.b). */
static void eval_lookup(struct cel_run *r, const struct cel_node *n, int depth,
			struct ism_cel_val *out)
{
	struct ism_cel_val key;

	switch (n->op) {
	case CEL_ATTR:
		if (!lookup_attr(r, n->id, out))
			set_err(out, "no such attribute");
		return;
	case CEL_HAS_ATTR:
		set_bool(out, lookup_attr(r, n->id, &key));
		return;
	case CEL_HAS_KEY:
		set_bool(out, lookup_key(r, n->id, r->pool + n->v.s.off, n->v.s.len, &key));
		return;
	case CEL_MAPKEY:
		if (!lookup_key(r, n->id, r->pool + n->v.s.off, n->v.s.len, out))
			set_err(out, "no such key");
		return;
	default: /* CEL_MAPIDX: only string keys are in a map of strings */
		eval(r, n->kid[0], depth, &key);
		if (key.type == ISM_CEL_ERROR)
			*out = key;
		else if (key.type != ISM_CEL_STRING ||
			 !lookup_key(r, n->id, key.v.s.p, key.v.s.len, out))
			set_err(out, "no such key");
	}
}

/* x in [list]: heterogeneous equality with each element, whose errors are
 * the result's (CEL builds the list before looking in it); x in m: whether
 * map m holds key x (no key of another type is in a map of strings). */
static void eval_in(struct cel_run *r, const struct cel_node *n, int depth, struct ism_cel_val *out)
{
	const struct cel_node *h = &r->node[n->kid[1]];
	struct ism_cel_val x, e;
	bool found = false;

	eval(r, n->kid[0], depth, &x);
	if (x.type == ISM_CEL_ERROR) {
		*out = x;
		return;
	}
	if (h->op == CEL_MAPREF) {
		set_bool(out,
			 x.type == ISM_CEL_STRING && lookup_key(r, h->id, x.v.s.p, x.v.s.len, &e));
		return;
	}
	if (h->op != CEL_LIST) {
		set_err(out, no_overload);
		return;
	}
	for (uint16_t k = h->kid[0]; k != CEL_NONE; k = r->node[k].next) {
		eval(r, k, depth + 1, &e);
		if (e.type == ISM_CEL_ERROR) {
			*out = e;
			return;
		}
		found = found || equal(&x, &e);
	}
	set_bool(out, found);
}

static void eval_literal(struct cel_run *r, const struct cel_node *n, int depth,
			 struct ism_cel_val *out)
{
	(void)depth;
	out->type = n->type;
	switch (n->type) {
	case ISM_CEL_STRING:
		out->v.s.p = r->pool + n->v.s.off;
		out->v.s.len = n->v.s.len;
		break;
	case ISM_CEL_BOOL:
		out->v.b = n->v.i != 0;
		break;
	default: /* the same eight bytes, whichever number */
		memcpy(&out->v, &n->v, sizeof(n->v));
	}
}

/* Each operator's evaluation, by enum cel_op. MAPREF and LIST have none:
 * they stand only on the right of IN, which reads them itself. */
static void (*const evaluators[])(struct cel_run *r, const struct cel_node *n, int depth,
				  struct ism_cel_val *out) = {
    [CEL_LIT] = eval_literal,
    [CEL_ATTR] = eval_lookup,
    [CEL_MAPKEY] = eval_lookup,
    [CEL_MAPIDX] = eval_lookup,
    [CEL_HAS_ATTR] = eval_lookup,
    [CEL_HAS_KEY] = eval_lookup,
    [CEL_IN] = eval_in,
    [CEL_NOT] = eval_unary,
    [CEL_NEG] = eval_unary,
    [CEL_AND] = eval_logic,
    [CEL_OR] = eval_logic,
    [CEL_COND] = eval_cond,
    [CEL_EQ] = eval_relation,
    [CEL_NE] = eval_relation,
    [CEL_LT] = eval_relation,
    [CEL_LE] = eval_relation,
    [CEL_GT] = eval_relation,
    [CEL_GE] = eval_relation,
    [CEL_ADD] = eval_arith,
    [CEL_SUB] = eval_arith,
    [CEL_MUL] = eval_arith,
    [CEL_DIV] = eval_arith,
    [CEL_MOD] = eval_arith,
    [CEL_SIZE] = eval_string_fn,
    [CEL_STARTS] = eval_string_fn,
    [CEL_ENDS] = eval_string_fn,
    [CEL_CONTAINS] = eval_string_fn,
    [CEL_TO_INT] = eval_convert,
    [CEL_TO_UINT] = eval_convert,
    [CEL_TO_DOUBLE] = eval_convert,
    [CEL_TO_STRING] = eval_convert,
    [CEL_TO_DURATION] = eval_convert,
};

static void eval(struct cel_run *r, uint16_t x, int depth, struct ism_cel_val *out)
{
	const struct cel_node *n = x < r->n_nodes ? &r->node[x] : NULL;

	/* The compiler bounds the height and checks every index; this guards
	 * a damaged program. */
	if (n == NULL || depth >= ISM_CEL_MAX_HEIGHT ||
	    n->op >= sizeof(evaluators) / sizeof(evaluators[0]) || evaluators[n->op] == NULL) {
		set_err(out, "damaged program");
		return;
	}
	evaluators[n->op](r, n, depth + 1, out);
}

void ism_cel_eval(const void *prog, const struct ism_cel_env *env, char *scratch, size_t cap,
		  struct ism_cel_val *out)
{
	const struct cel_prog *h = prog;
	struct cel_run r = {
	    .node = (const struct cel_node *)(h + 1),
	    .n_nodes = h->n_nodes,
	    .pool = (const char *)prog + h->pool_off,
	    .env = env,
	    .scratch = scratch,
	    .cap = scratch != NULL ? cap : 0,
	};

	if (h->magic != CEL_MAGIC || h->version != CEL_VERSION) {
		set_err(out, "damaged program");
		return;
	}
	eval(&r, h->root, 0, out);
}

bool ism_cel_reads(const void *prog, uint16_t id)
{
	const struct cel_prog *p = prog;
	const struct cel_node *n = (const struct cel_node *)(p + 1);

	for (uint16_t i = 0; i < p->n_nodes; i++)
		switch ((enum cel_op)n[i].op) {
		case CEL_ATTR:
		case CEL_MAPREF:
		case CEL_MAPKEY:
		case CEL_MAPIDX:
		case CEL_HAS_ATTR:
		case CEL_HAS_KEY:
			if (n[i].id == id)
				return true;
			break;
		default:
			break;
		}
	return false;
}

bool ism_cel_filter(const void *prog, const struct ism_cel_env *env)
{
	char scratch[ISM_CEL_SCRATCH];
	struct ism_cel_val v;

	ism_cel_eval(prog, env, scratch, sizeof(scratch), &v);
	return v.type == ISM_CEL_BOOL && v.v.b;
}

#define TWO63 (1ull << 63)

/* Go's time.ParseDuration (cel-spec's duration() takes Go's syntax): a
 * sign, its fraction's digits kept while they fit 2^63. */
static const struct ism_dur_syntax cel_dur = {
    .minus = true,
    .ip_max = TWO63,
    .frac_max = TWO63,
    .frac_digits = SIZE_MAX,
};

/* One component added to *d as Go does, step for step: its overflow checks
 * against 2^63 and its float for fractions. */
static int component(const struct ism_dur_part *c, uint64_t *d)
{
	uint64_t v;
	double scale = 1;

	if (c->ip_over || c->ip > TWO63 / c->unit_ns)
		return -ERANGE;
	v = c->ip * c->unit_ns;
	if (c->frac > 0) {
		for (size_t i = 0; i < c->frac_n; i++)
			scale *= 10;
		v += (uint64_t)((double)c->frac * ((double)c->unit_ns / scale));
		if (v > TWO63)
			return -ERANGE;
	}
	*d += v;
	return *d > TWO63 ? -ERANGE : 0;
}

int cel_duration_parse(const char *p, size_t len, int64_t *ns)
{
	struct ism_dur_scan sc;
	struct ism_dur_part c;
	uint64_t d = 0;
	bool neg;
	int rc;

	if (ism_dur_begin(&sc, &cel_dur, p, len, &neg) < 0)
		return -EINVAL;
	while ((rc = ism_dur_next(&sc, &c)) > 0)
		if ((rc = component(&c, &d)) < 0)
			return rc;
	if (rc < 0)
		return rc;
	if (!neg && d > TWO63 - 1)
		return -ERANGE;
	*ns = neg ? (int64_t)(0 - d) : (int64_t)d;
	return 0;
}
