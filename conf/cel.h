/* SPDX-License-Identifier: Apache-2.0 */
/* A subset of CEL (the Common Expression Language), as Envoy's CEL access-log
 * filter evaluates an Istio Telemetry's accessLogging[].filter.expression: the
 * master compiles the text once against the attributes the workers offer, and
 * a worker evaluates the compiled program for each exchange. Pure: no globals,
 * no I/O, libc only; compiling allocates, evaluating never does.
 *
 * The subset:
 *   literals     int (decimal, 0x hex), uint (123u), double (1.5, 1e3, .5),
 *                strings ('..', "..", '''..''', """..""", r'..' raw) with
 *                CEL's escapes (\\ \' \" \` \? \a \b \f \n \r \t \v \xHH
 *                \uHHHH \UHHHHHHHH \ooo), true, false, null, and list
 *                literals [a, b] as the right side of `in`
 *   operators    ?: || && == != < <= > >= in + - * / % ! and unary -, with
 *                CEL's precedence (all relations, in included, at one level)
 *   selection    attributes by dotted name; on a map attribute m['k'], m.k,
 *                'k' in m, has(m.k); has(a.b) on an attribute
 *   functions    size(s) s.size() (code points), s.startsWith(t),
 *                s.endsWith(t), s.contains(t), int(x), uint(x), double(x),
 *                string(x), duration('1h2m3.5s') (Go's syntax; folded when
 *                its argument is a literal)
 * Refused when compiled, "... is not implemented yet": the rest of CEL that
 * parses (macros all/exists/exists_one/map/filter, matches, timestamps,
 * bytes, type(), dyn(), map literals, message construction, a list other
 * than the right side of `in`, a map attribute used as a value, as in
 * size(m) or m == m). Refused as errors: unknown attributes and functions,
 * syntax errors, out-of-range literals, and beyond the limits below.
 *
 * Semantics (CEL's, as cel-cpp evaluates it for Envoy): errors (a missing
 * attribute or map key, no matching overload, integer overflow, division or
 * modulo by zero) propagate, except that && and || absorb them as CEL says
 * (false && error is false, true || error is true, in either order).
 * Equality is heterogeneous (cel-cpp's default): numbers of different types
 * compare by value (1 == 1u == 1.0), other values of different types are
 * unequal, never an error. Ordering compares numbers by value across types,
 * strings bytewise, bools and durations; other pairs are an error.
 * Departures, each where Envoy's result is hard to reach without allocating:
 *   a string made while evaluating (+ on strings, string(x)) must fit the
 *   evaluation's scratch space (ISM_CEL_SCRATCH bytes in ism_cel_filter),
 *   else it is an error; durations are int64 nanoseconds (Go's range, about
 *   +-292 years, where CEL's is +-10000 years). */
#ifndef ISM_CONF_CEL_H
#define ISM_CONF_CEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The longest expression compiled (Istio sets no limit; this is ours). */
#define ISM_CEL_MAX_LEN 4096
/* Deepest nesting of brackets: parentheses, lists, calls' arguments,
 * indexes, and a conditional's else branch. */
#define ISM_CEL_MAX_NEST 32
/* Most nodes in a compiled program: about one per operator, operand and
 * call. */
#define ISM_CEL_MAX_NODES 512
/* Most levels of operators from the root to a leaf (a chain a || b || c
 * adds one per operator); the evaluator recurses no deeper. */
#define ISM_CEL_MAX_HEIGHT 96
/* Scratch space ism_cel_filter keeps on its stack for strings it makes. */
#define ISM_CEL_SCRATCH 1024

enum ism_cel_type {
	ISM_CEL_ERROR = 0,
	ISM_CEL_NULL,
	ISM_CEL_BOOL,
	ISM_CEL_INT,
	ISM_CEL_UINT,
	ISM_CEL_DOUBLE,
	ISM_CEL_STRING,
	ISM_CEL_DURATION,
	ISM_CEL_MAP, /* an attribute's type only: map from string to value */
};

/* A value. A STRING's bytes belong to whoever made it (the caller's
 * lookups, the program, or the scratch space) and need no NUL; an ERROR's
 * s is a short static reason, NUL-terminated, for diagnostics. */
struct ism_cel_val {
	uint8_t type; /* enum ism_cel_type */
	union {
		bool b;
		int64_t i;
		uint64_t u;
		double d;
		int64_t ns; /* DURATION: nanoseconds */
		struct {
			const char *p;
			size_t len;
		} s;
	} v;
};

/* An attribute the caller offers: its dotted name ("request.url_path",
 * "request.headers"), the type of its value (ISM_CEL_MAP: a map from string
 * to value, looked up by key), and the id the evaluator passes back to the
 * caller's lookups. Names are unique; none is a keyword. */
struct ism_cel_attr {
	const char *name;
	uint8_t type; /* enum ism_cel_type */
	uint16_t id;
};

/* Lookups at evaluation time, called in the evaluating process only.
 * attr: the value of attribute id (never a MAP one); false when it has none
 * now (CEL: an error). map_get: the value at key (len bytes, no NUL) of map
 * attribute id; false when absent. Strings they give must stay valid until
 * the evaluation returns. A NULL function finds nothing. */
struct ism_cel_env {
	bool (*attr)(void *ctx, uint16_t id, struct ism_cel_val *out);
	bool (*map_get)(void *ctx, uint16_t id, const char *key, size_t len,
			struct ism_cel_val *out);
	void *ctx;
};

/* Compiles expression text (len bytes, no NUL needed) against the n_attrs
 * attributes offered. Returns 0 and *prog, one malloc'd block of *size bytes
 * that the caller owns (free()), position-independent: it holds offsets,
 * never pointers, so it may be copied anywhere (shared memory) suitably
 * aligned (8 bytes) and the original freed; or -EINVAL with a message in err
 * (errcap bytes, truncated, NUL-terminated when errcap > 0) and the byte
 * offset of the fault in *at (<= len; len for an early end), *prog NULL; or
 * -ENOMEM. Names not among attrs: "unknown attribute 'x.y'". CEL that is
 * valid but not in the subset: "... is not implemented yet". err and at may
 * be NULL. Any process. */
int ism_cel_compile(const char *text, size_t len, const struct ism_cel_attr *attrs, size_t n_attrs,
		    void **prog, size_t *size, char *err, size_t errcap, size_t *at);

/* Evaluates a compiled program against env into *out, the raw result (an
 * error included). Strings it makes go to scratch (cap bytes; NULL and 0
 * make every such string an error), where *out's string may point. Bounded:
 * no allocation, recursion no deeper than ISM_CEL_MAX_HEIGHT. */
void ism_cel_eval(const void *prog, const struct ism_cel_env *env, char *scratch, size_t cap,
		  struct ism_cel_val *out);

/* Whether compiled program prog may read attribute id (its value, a key of
 * it, whether it has one): what its caller must make ready. */
bool ism_cel_reads(const void *prog, uint16_t id);

/* Whether the exchange is logged, as Envoy's CEL access-log filter decides:
 * true only when the result is bool true (an error or any other value is
 * not logged). As ism_cel_eval, with ISM_CEL_SCRATCH bytes of stack. */
bool ism_cel_filter(const void *prog, const struct ism_cel_env *env);

#endif
