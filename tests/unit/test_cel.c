/* SPDX-License-Identifier: Apache-2.0 */
/* CEL subset unit tests, through conf/cel.h: every operator and function,
 * precedence, && and || absorbing errors, missing attributes and keys, type
 * errors, overflow, the filters Istio users write against a fake request,
 * compile errors with their offsets, the limits, position independence, and
 * every prefix of every case compiled from a buffer of exactly its size (and
 * evaluated when it compiles), so that a read past the end shows under
 * ASan. */
#include <errno.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "conf/cel.h"
#include "tests/unit/check.h"

enum {
	A_URL_PATH = 1,
	A_PATH,
	A_METHOD,
	A_HEADERS,
	A_DURATION,
	A_CODE,
	A_GRPC,
	A_CLUSTER,
	A_MTLS,
	A_PORT,
	A_FLAGS,
	A_UINT,
	A_DOUBLE,
	A_NULL,
	A_NESTED,
	A_N
};

static const struct ism_cel_attr attrs[] = {
    {"request.url_path", ISM_CEL_STRING, A_URL_PATH},
    {"request.path", ISM_CEL_STRING, A_PATH},
    {"request.method", ISM_CEL_STRING, A_METHOD},
    {"request.headers", ISM_CEL_MAP, A_HEADERS},
    {"request.duration", ISM_CEL_DURATION, A_DURATION},
    {"response.code", ISM_CEL_INT, A_CODE},
    {"response.grpc_status", ISM_CEL_INT, A_GRPC},
    {"xds.cluster_name", ISM_CEL_STRING, A_CLUSTER},
    {"connection.mtls", ISM_CEL_BOOL, A_MTLS},
    {"destination.port", ISM_CEL_INT, A_PORT},
    {"response.flags", ISM_CEL_STRING, A_FLAGS}, /* never has a value */
    {"test.u", ISM_CEL_UINT, A_UINT},
    {"test.d", ISM_CEL_DOUBLE, A_DOUBLE},
    {"test.null", ISM_CEL_NULL, A_NULL},
    {"test.a.b", ISM_CEL_INT, A_NESTED},
};
#define N_ATTRS (sizeof(attrs) / sizeof(attrs[0]))

/* The fake exchange the lookups answer from. */
struct fake {
	struct ism_cel_val val[A_N];
	bool has[A_N];
	const char *hdr[8][2];
	void *prog; /* eval_with's last */
};

static struct ism_cel_val str(const char *s)
{
	struct ism_cel_val v = {.type = ISM_CEL_STRING};

	v.v.s.p = s;
	v.v.s.len = strlen(s);
	return v;
}

static bool fake_attr(void *ctx, uint16_t id, struct ism_cel_val *out)
{
	struct fake *f = ctx;

	assert_true(id < A_N && id != A_HEADERS);
	if (!f->has[id])
		return false;
	*out = f->val[id];
	return true;
}

static bool fake_map(void *ctx, uint16_t id, const char *key, size_t len, struct ism_cel_val *out)
{
	struct fake *f = ctx;

	assert_int_equal(id, A_HEADERS);
	for (int k = 0; k < 8 && f->hdr[k][0]; k++)
		if (strlen(f->hdr[k][0]) == len && memcmp(f->hdr[k][0], key, len) == 0) {
			*out = str(f->hdr[k][1]);
			return true;
		}
	return false;
}

/* A GET of /api/login?x=1, answered 503 after 1.5 s, with two headers. */
static void fake_init(struct fake *f)
{
	memset(f, 0, sizeof(*f));
	for (int k = 1; k < A_N; k++)
		f->has[k] = k != A_FLAGS;
	f->val[A_URL_PATH] = str("/api/login");
	f->val[A_PATH] = str("/api/login?x=1");
	f->val[A_METHOD] = str("GET");
	f->val[A_DURATION] = (struct ism_cel_val){.type = ISM_CEL_DURATION, .v.ns = 1500000000};
	f->val[A_CODE] = (struct ism_cel_val){.type = ISM_CEL_INT, .v.i = 503};
	f->val[A_GRPC] = (struct ism_cel_val){.type = ISM_CEL_INT, .v.i = 0};
	f->val[A_CLUSTER] = str("outbound|80||backend");
	f->val[A_MTLS] = (struct ism_cel_val){.type = ISM_CEL_BOOL, .v.b = true};
	f->val[A_PORT] = (struct ism_cel_val){.type = ISM_CEL_INT, .v.i = 443};
	f->val[A_UINT] = (struct ism_cel_val){.type = ISM_CEL_UINT, .v.u = 7};
	f->val[A_DOUBLE] = (struct ism_cel_val){.type = ISM_CEL_DOUBLE, .v.d = 2.5};
	f->val[A_NULL] = (struct ism_cel_val){.type = ISM_CEL_NULL};
	f->val[A_NESTED] = (struct ism_cel_val){.type = ISM_CEL_INT, .v.i = 9};
	f->hdr[0][0] = "x-user-type";
	f->hdr[0][1] = "dev";
	f->hdr[1][0] = "user-agent";
	f->hdr[1][1] = "crawlerbot";
	f->hdr[2][0] = "x-debug";
	f->hdr[2][1] = "";
}

/* Compiles e or fails the test. */
static void *compile_ok(const char *e)
{
	char err[160] = "";
	size_t size = 0, at = 0;
	void *prog = NULL;
	int rc = ism_cel_compile(e, strlen(e), attrs, N_ATTRS, &prog, &size, err, sizeof(err), &at);

	CHECK(e, rc == 0, "refused at %zu: %s", at, err);
	CHECK(e, prog != NULL && size > 0, "no program");
	return prog;
}

/* e's raw result against f. A string in it may point into the program,
 * which stays in f->prog until the next call. */
static struct ism_cel_val eval_with(const char *e, struct fake *f, char *scratch, size_t cap)
{
	struct ism_cel_env env = {fake_attr, fake_map, f};
	struct ism_cel_val v;

	free(f->prog);
	f->prog = compile_ok(e);
	ism_cel_eval(f->prog, &env, scratch, cap, &v);
	return v;
}

enum want { T, F, E };

struct bcase {
	const char *e;
	enum want want;
};

/* Boolean results and errors, against the fake exchange. */
static const struct bcase bools[] = {
    /* literals and logic */
    {"true", T},
    {"false", F},
    {"!false", T},
    {"!!true", T},
    {"true && true", T},
    {"true && false", F},
    {"false || true", T},
    {"false || false", F},
    {"true ? true : false", T},
    {"false ? true : false", F},
    {"1 < 2 ? 'a' == 'a' : false", T},
    {"false ? false : 2 == 2", T}, /* ?: binds loosest: false ? false : (2 == 2) */
    /* error absorption */
    {"false && response.flags == 'x'", F},
    {"response.flags == 'x' && false", F},
    {"true || response.flags == 'x'", T},
    {"response.flags == 'x' || true", T},
    {"response.flags == 'x' && true", E},
    {"true && response.flags == 'x'", E},
    {"response.flags == 'x' || false", E},
    {"false || response.flags == 'x'", E},
    {"1 / 0 == 1 || true", T},
    {"false && 1 / 0 == 1", F},
    {"'a' && false", F}, /* a value that is not a bool acts as an error */
    {"'a' && true", E},
    {"'a' || true", T},
    {"1 || false", E},
    {"!response.flags.startsWith('x')", E},
    {"response.flags.startsWith('x') ? true : true", E},
    {"1 ? true : false", E},
    /* equality: heterogeneous */
    {"1 == 1", T},
    {"1 == 1u", T},
    {"1 == 1.0", T},
    {"1u == 1.0", T},
    {"-1 == 18446744073709551615u", F},
    {"1 != 2", T},
    {"1 == '1'", F},
    {"1 != '1'", T},
    {"'a' == 'a'", T},
    {"'a' != 'b'", T},
    {"null == null", T},
    {"null != 0", T},
    {"test.null == null", T},
    {"true == true", T},
    {"true == 1", F},
    {"duration('1s') == duration('1000ms')", T},
    {"duration('1s') == 1", F},
    {"0.0 / 0.0 == 0.0 / 0.0", F},
    {"0.0 / 0.0 != 0.0 / 0.0", T},
    {"9007199254740993 == 9007199254740992.0", F}, /* exact, not through double */
    {"9223372036854775807 == 9223372036854775808.0", F},
    {"18446744073709551615u == 18446744073709551616.0", F},
    {"9007199254740992 == 9007199254740992.0", T},
    /* ordering */
    {"1 < 2", T},
    {"2 <= 2", T},
    {"3 > 2", T},
    {"2 >= 3", F},
    {"-1 < 0u", T},
    {"0u > -1", T},
    {"1 < 1.5", T},
    {"2u > 1.5", T},
    {"1.5 < 2", T},
    {"-0.5 < 0", T},
    {"-0.5 < 0u", T},
    {"9223372036854775807 < 9223372036854775808.0", T},
    {"-9223372036854775808 > -9223372036854775809.0", F},
    {"-9223372036854775808 >= -9223372036854775808.0", T},
    {"1.0 / 0.0 > 18446744073709551615u", T},
    {"0.0 / 0.0 < 1", F},
    {"0.0 / 0.0 >= 1", F},
    {"'a' < 'b'", T},
    {"'ab' > 'a'", T},
    {"'' < 'a'", T},
    {"'\\xff' > 'a'", T},
    {"false < true", T},
    {"duration('1s') < duration('2s')", T},
    {"1 < '2'", E},
    {"null < null", E},
    {"duration('1s') < 2", E},
    {"true < 1", E},
    /* CEL puts all relations at one level, left to right */
    {"1 < 2 == true", T},
    {"1 == 1 == true", T},
    {"2 in [2] == true", T},
    /* arithmetic */
    {"1 + 2 * 3 == 7", T},
    {"(1 + 2) * 3 == 9", T},
    {"7 / 2 == 3", T},
    {"-7 / 2 == -3", T},
    {"7 % 3 == 1", T},
    {"-7 % 3 == -1", T},
    {"10 - 2 - 3 == 5", T},
    {"100 / 10 / 5 == 2", T},
    {"2u * 3u == 6u", T},
    {"7u / 2u == 3u", T},
    {"7u % 2u == 1u", T},
    {"1.5 + 1.5 == 3.0", T},
    {"1.0 / 4.0 == 0.25", T},
    {"3.0 - 0.5 * 2.0 == 2.0", T},
    {"1.0 / 0.0 > 1e308", T},
    {"-(1) == -1", T},
    {"--1 == 1", T},
    {"-1.5 < 0.0", T},
    {"-test.d == -2.5", T},
    {"-response.code == -503", T},
    {"'a' + 'b' == 'ab'", T},
    {"'' + '' == ''", T},
    {"duration('1s') + duration('500ms') == duration('1.5s')", T},
    {"duration('1s') - duration('2s') == duration('-1s')", T},
    {"1 + 1u == 2", E},
    {"1 + 1.0 == 2.0", E},
    {"1.0 % 2.0 == 1.0", E},
    {"'a' - 'b' == ''", E},
    {"'a' * 2 == 'aa'", E},
    {"true + true", E},
    {"-'a' == 'a'", E},
    {"-1u == 1u", E},
    {"!1", E},
    {"duration('1s') * duration('1s') == duration('1s')", E},
    /* overflow and division by zero */
    {"9223372036854775807 + 1 > 0", E},
    {"-9223372036854775808 - 1 < 0", E},
    {"-9223372036854775808 == -9223372036854775807 - 1", T},
    {"4611686018427387904 * 2 > 0", E},
    {"-(-9223372036854775808) > 0", E},
    {"-9223372036854775808 / -1 > 0", E},
    {"-9223372036854775808 % -1 == 0", E},
    {"1 / 0 == 0", E},
    {"1 % 0 == 0", E},
    {"1u / 0u == 0u", E},
    {"1u % 0u == 0u", E},
    {"0u - 1u > 0u", E},
    {"18446744073709551615u + 1u > 0u", E},
    {"9223372036854775807 * -1 == -9223372036854775807", T},
    {"duration('2562047h') + duration('2562047h') > duration('1s')", E},
    /* in */
    {"'POST' in ['POST', 'PUT']", T},
    {"'GET' in ['POST', 'PUT']", F},
    {"1 in [1u]", T},
    {"2 in [1, 'a', 2.0]", T},
    {"'a' in []", F},
    {"1 in [1 / 0]", E},
    {"1 / 0 in [1]", E},
    {"'x-debug' in request.headers", T},
    {"'x-nope' in request.headers", F},
    {"1 in request.headers", F},
    {"response.flags in request.headers", E},
    {"'a' in 'abc'", E},
    /* strings */
    {"size('') == 0", T},
    {"size('abc') == 3", T},
    {"size('日本') == 2", T},
    {"'héllo'.size() == 5", T},
    {"size(1) == 1", E},
    {"'abc'.startsWith('ab')", T},
    {"'abc'.startsWith('')", T},
    {"'abc'.startsWith('abcd')", F},
    {"'abc'.startsWith('b')", F},
    {"'abc'.endsWith('bc')", T},
    {"'abc'.endsWith('ab')", F},
    {"'abc'.contains('b')", T},
    {"'abc'.contains('')", T},
    {"'abc'.contains('d')", F},
    {"''.contains('')", T},
    {"'abc'.contains(1)", E},
    {"1.startsWith('1')", E},
    /* conversions */
    {"int('42') == 42", T},
    {"int('-42') == -42", T},
    {"int('+42') == 42", T},
    {"int('-9223372036854775808') < 0", T},
    {"int('9223372036854775808') > 0", E},
    {"int('') == 0", E},
    {"int('1.5') == 1", E},
    {"int(' 1') == 1", E},
    {"int(2.9) == 2", T},
    {"int(-2.9) == -2", T},
    {"int(1e19) > 0", E},
    {"int(0.0 / 0.0) == 0", E},
    {"int(7u) == 7", T},
    {"int(18446744073709551615u) > 0", E},
    {"int(true) == 1", E},
    {"uint(7) == 7u", T},
    {"uint(-1) == 0u", E},
    {"uint(2.5) == 2u", T},
    {"uint(-0.5) == 0u", E},
    {"uint(1e20) > 0u", E},
    {"uint('18446744073709551615') == 18446744073709551615u", T},
    {"uint('18446744073709551616') > 0u", E},
    {"uint('-1') == 0u", E},
    {"double(1) == 1.0", T},
    {"double(2u) == 2.0", T},
    {"double('2.5') == 2.5", T},
    {"double('1e3') == 1000.0", T},
    {"double('x') == 1.0", E},
    {"double('') == 1.0", E},
    {"double(' 1') == 1.0", E},
    {"string(42) == '42'", T},
    {"string(-42) == '-42'", T},
    {"string(42u) == '42'", T},
    {"string(1.5) == '1.5'", T},
    {"string(true) == 'true'", T},
    {"string('a') == 'a'", T},
    {"string(duration('1h2m3.5s')) == '3723.5s'", T},
    {"string(duration('-1ms')) == '-0.001s'", T},
    {"string(null) == 'null'", E},
    {"string(response.code) + ' ' + request.method == '503 GET'", T},
    {"duration('1m') == duration('60s')", T},
    {"duration('1' + 's') == duration('1s')", T},
    {"duration('x' + 's') == duration('1s')", E},
    {"duration(1) == duration('1s')", E},
    {"duration(request.duration) == request.duration", T},
    /* attributes */
    {"response.code >= 400", T},
    {"response.code == 503", T},
    {"response.code >= 500 || response.code == 0", T},
    {"request.url_path.contains('login') && request.headers['x-user-type'] == 'dev'", T},
    {"!request.url_path.startsWith('/healthz')", T},
    {"'x-debug' in request.headers", T},
    {"request.method in ['POST', 'PUT']", F},
    {"request.duration > duration('1s')", T},
    {"request.duration > duration('2s')", F},
    {"response.code >= 400 || xds.cluster_name == 'BlackHoleCluster'", T},
    {"size(request.path) > 100", F},
    {"size(request.path) == 14", T},
    {"request.headers['user-agent'].endsWith('bot')", T},
    {"response.grpc_status != 0", F},
    {"connection.mtls == true", T},
    {"connection.mtls", T},
    {"destination.port == 443", T},
    {"destination.port == 443u", T},
    {"test.u == 7u", T},
    {"test.u == 7", T},
    {"test.d > 2", T},
    {"test.a.b == 9", T},
    {"request.headers.x_missing == 'a'", E},
    {"request.headers['x-missing'] == 'a'", E},
    {"request.headers['x-' + 'debug'] == ''", T},
    {"request.headers[request.method] == ''", E},
    {"request.headers[1] == ''", E},
    {"request.headers[1 / 0] == ''", E},
    {"response.flags == 'x'", E},
    {"response.flags != 'x'", E},
    {"has(request.headers.x_missing)", F},
    {"has(response.flags)", F},
    {"has(response.code)", T},
    {".response.code == 503", T},
    {"request . url_path == '/api/login'", T},
    {"request.url_path // a comment\n == '/api/login'", T},
    /* literals */
    {"0x1F == 31", T},
    {"0XfFu == 255u", T},
    {"1e3 == 1000.0", T},
    {"1.5e-3 == 0.0015", T},
    {".5 == 0.5", T},
    {"2E+2 == 200.0", T},
    {"007 == 7", T},
    {"9223372036854775807 > 0", T},
    {"18446744073709551615u > 0u", T},
    {"'a\\tb' == \"a\\u0009b\"", T},
    {"'\\x41\\101\\u0041\\U00000041' == 'AAAA'", T},
    {"'\\xe9' == 'é'", T},
    {"'\\\\\\'\\\"\\`\\?' == r'\\'+ \"'\" + '\"`?'", T},
    {"'\\a\\b\\f\\n\\r\\v' == '\\007\\010\\014\\012\\015\\013'", T},
    {"r'\\n' == '\\\\n'", T},
    {"R\"a\\\" == 'a\\\\'", T},
    {"'''a'b''' == \"a'b\"", T},
    {"\"\"\"x\ny\"\"\" == 'x\\ny'", T},
    {"'' == \"\"", T},
};

static void test_bools(void **state)
{
	struct fake f;
	char scratch[256];

	(void)state;
	fake_init(&f);
	for (size_t k = 0; k < sizeof(bools) / sizeof(bools[0]); k++) {
		const struct bcase *c = &bools[k];
		struct ism_cel_val v;
		struct ism_cel_env env = {fake_attr, fake_map, &f};
		void *prog;

		v = eval_with(c->e, &f, scratch, sizeof(scratch));
		if (c->want == E) {
			CHECK(c->e, v.type == ISM_CEL_ERROR, "type %d, want an error", v.type);
			CHECK(c->e, v.v.s.p != NULL && v.v.s.p[0] != '\0',
			      "error without a reason");
		} else {
			CHECK(c->e, v.type == ISM_CEL_BOOL, "type %d (%s), want a bool", v.type,
			      v.type == ISM_CEL_ERROR ? v.v.s.p : "");
			CHECK(c->e, v.v.b == (c->want == T), "%d, want %d", v.v.b, c->want == T);
		}
		prog = compile_ok(c->e);
		CHECK(c->e, ism_cel_filter(prog, &env) == (c->want == T), "filter disagrees");
		free(prog);
	}
	free(f.prog);
}

struct vcase {
	const char *e;
	uint8_t type;
	int64_t i;
	double d;
	const char *s;
};

/* Results that are not bools. */
static const struct vcase values[] = {
    {"42", ISM_CEL_INT, 42, 0, NULL},
    {"-9223372036854775808", ISM_CEL_INT, INT64_MIN, 0, NULL},
    {"- 9223372036854775808", ISM_CEL_INT, INT64_MIN, 0, NULL},
    {"18446744073709551615u", ISM_CEL_UINT, -1, 0, NULL},
    {"0xFFFFFFFFFFFFFFFFu", ISM_CEL_UINT, -1, 0, NULL},
    {"1.5", ISM_CEL_DOUBLE, 0, 1.5, NULL},
    {"-1e-3", ISM_CEL_DOUBLE, 0, -0.001, NULL},
    {"1e-400", ISM_CEL_DOUBLE, 0, 0, NULL},
    {"null", ISM_CEL_NULL, 0, 0, NULL},
    {"'abc'", ISM_CEL_STRING, 0, 0, "abc"},
    {"'日本'", ISM_CEL_STRING, 0, 0, "日本"},
    {"'\\u65e5'", ISM_CEL_STRING, 0, 0, "日"},
    {"'\\U0001F600'", ISM_CEL_STRING, 0, 0, "\xf0\x9f\x98\x80"},
    {"'\\377'", ISM_CEL_STRING, 0, 0, "\xc3\xbf"},
    {"request.url_path + '?' + request.method", ISM_CEL_STRING, 0, 0, "/api/login?GET"},
    {"request.headers.x_missing", ISM_CEL_ERROR, 0, 0, "no such key"},
    {"response.flags", ISM_CEL_ERROR, 0, 0, "no such attribute"},
    {"1 / 0", ISM_CEL_ERROR, 0, 0, "division by zero"},
    {"1 + 'a'", ISM_CEL_ERROR, 0, 0, "no matching overload"},
    {"9223372036854775807 + 1", ISM_CEL_ERROR, 0, 0, "integer overflow"},
    {"request.headers['user-agent']", ISM_CEL_STRING, 0, 0, "crawlerbot"},
    {"request.headers.x_missing == 'a' ? 1 : 2", ISM_CEL_ERROR, 0, 0, "no such key"},
    {"response.code == 503 ? 'yes' : 1 / 0", ISM_CEL_STRING, 0, 0, "yes"},
    {"response.code != 503 ? 1 / 0 : 'no'", ISM_CEL_STRING, 0, 0, "no"},
    {"true ? 1 : 2 == 1", ISM_CEL_INT, 1, 0, NULL},
    {"size('ab') + 1", ISM_CEL_INT, 3, 0, NULL},
    {"request.duration + duration('500ms')", ISM_CEL_DURATION, 2000000000, 0, NULL},
    {"duration('1h')", ISM_CEL_DURATION, 3600000000000, 0, NULL},
    {"duration('-1.5h')", ISM_CEL_DURATION, -5400000000000, 0, NULL},
    {"duration('+1m30s')", ISM_CEL_DURATION, 90000000000, 0, NULL},
    {"duration('1ms1us1ns')", ISM_CEL_DURATION, 1001001, 0, NULL},
    {"duration('1µs')", ISM_CEL_DURATION, 1000, 0, NULL},
    {"duration('1μs')", ISM_CEL_DURATION, 1000, 0, NULL},
    {"duration('.5s')", ISM_CEL_DURATION, 500000000, 0, NULL},
    {"duration('1.s')", ISM_CEL_DURATION, 1000000000, 0, NULL},
    {"duration('0')", ISM_CEL_DURATION, 0, 0, NULL},
    {"duration('-0')", ISM_CEL_DURATION, 0, 0, NULL},
    {"duration('2562047h47m16.854775807s')", ISM_CEL_DURATION, INT64_MAX, 0, NULL},
    {"duration('-2562047h47m16.854775808s')", ISM_CEL_DURATION, INT64_MIN, 0, NULL},
    {"duration('1.0000000001s')", ISM_CEL_DURATION, 1000000000, 0, NULL},
    {"string(1e21)", ISM_CEL_STRING, 0, 0, "1e+21"},
    {"string(100.0)", ISM_CEL_STRING, 0, 0, "100"},
    {"string(0.1)", ISM_CEL_STRING, 0, 0, "0.1"},
    {"string(-0.0)", ISM_CEL_STRING, 0, 0, "-0"},
    {"string(0.0 / 0.0)", ISM_CEL_STRING, 0, 0, "nan"},
    {"string(1.0 / 0.0)", ISM_CEL_STRING, 0, 0, "inf"},
    {"string(18446744073709551615u)", ISM_CEL_STRING, 0, 0, "18446744073709551615"},
    {"string(-9223372036854775808)", ISM_CEL_STRING, 0, 0, "-9223372036854775808"},
    {"string(duration('0'))", ISM_CEL_STRING, 0, 0, "0s"},
    {"string(duration('1ns'))", ISM_CEL_STRING, 0, 0, "0.000000001s"},
    {"string(request.duration)", ISM_CEL_STRING, 0, 0, "1.5s"},
};

static void test_values(void **state)
{
	struct fake f;
	char scratch[256];

	(void)state;
	fake_init(&f);
	for (size_t k = 0; k < sizeof(values) / sizeof(values[0]); k++) {
		const struct vcase *c = &values[k];
		struct ism_cel_val v = eval_with(c->e, &f, scratch, sizeof(scratch));

		CHECK(c->e, v.type == c->type, "type %d (%s), want %d", v.type,
		      v.type == ISM_CEL_ERROR ? v.v.s.p : "", c->type);
		if (c->type == ISM_CEL_INT || c->type == ISM_CEL_UINT ||
		    c->type == ISM_CEL_DURATION)
			CHECK(c->e, v.v.i == c->i, "%lld, want %lld", (long long)v.v.i,
			      (long long)c->i);
		if (c->type == ISM_CEL_DOUBLE)
			CHECK(c->e, v.v.d == c->d && signbit(v.v.d) == signbit(c->d), "%g, want %g",
			      v.v.d, c->d);
		if (c->type == ISM_CEL_STRING)
			CHECK(c->e,
			      v.v.s.len == strlen(c->s) && memcmp(v.v.s.p, c->s, v.v.s.len) == 0,
			      "\"%.*s\", want \"%s\"", (int)v.v.s.len, v.v.s.p, c->s);
		if (c->type == ISM_CEL_ERROR)
			CHECK(c->e, strcmp(v.v.s.p, c->s) == 0, "error \"%s\", want \"%s\"",
			      v.v.s.p, c->s);
	}
	free(f.prog);
}

struct refusal {
	const char *e;
	size_t at;
	const char *why; /* a substring of the message */
};

static const struct refusal refused[] = {
    {"", 0, "unexpected end"},
    {"   ", 3, "unexpected end"},
    {"1 +", 3, "unexpected end"},
    {"(1", 2, "expected ')'"},
    {"(1 2", 3, "expected ')'"},
    {"1 2", 2, "unexpected '2'"},
    {"a", 0, "unknown attribute 'a'"},
    {"request", 0, "unknown attribute 'request'"},
    {"request.nope == 1", 0, "unknown attribute 'request.nope'"},
    {"1 == request.url_pat", 5, "unknown attribute 'request.url_pat'"},
    {"test.a == 1", 0, "unknown attribute 'test.a'"},
    {"xds.cluster_name.x == 1", 17, "no field 'x'"},
    {"request.url_path.x()", 17, "unknown function 'x'"},
    {"request.url_path.matches('a')", 17, "'matches' is not implemented yet"},
    {"[1].all(x, x > 0)", 4, "'all' is not implemented yet"},
    {"request.headers.exists(k, k == 'a')", 16, "'exists' is not implemented yet"},
    {"timestamp('2020-01-01T00:00:00Z') < timestamp('2021-01-01T00:00:00Z')", 0,
     "'timestamp' is not implemented yet"},
    {"type(1) == int", 0, "'type' is not implemented yet"},
    {"foo(1)", 0, "unknown function 'foo'"},
    {"startsWith('a', 'b')", 0, "'startsWith' is a method"},
    {"'a'.int()", 4, "'int' is not a method"},
    {"size('a', 'b')", 0, "'size' takes 1 argument, not 2"},
    {"'a'.size(1)", 4, "'size' takes 0 arguments, not 1"},
    {"'a'.startsWith()", 4, "'startsWith' takes 1 argument, not 0"},
    {"{'a': 1}['a'] == 1", 0, "map literals are not implemented yet"},
    {"b'abc' == b'abc'", 0, "bytes literals are not implemented yet"},
    {"size(request.headers) > 0", 5, "a map attribute used as a value"},
    {"request.headers == request.headers", 0, "a map attribute used as a value"},
    {"[1, 2] == [1, 2]", 0, "a list other than the right side of 'in'"},
    {"size([1])", 5, "a list other than"},
    {"[1] in [[1]]", 0, "a list other than"},
    {"1 in [[1]]", 6, "a list other than"},
    {"request.url_path[0] == '/'", 16, "an index on a value other than a map attribute"},
    {"has(request.headers['a'])", 4, "has() needs a field selection"},
    {"has(1)", 4, "has() needs a field selection"},
    {"has(request.headers)", 4, "has() of a map attribute is not implemented yet"},
    {"9223372036854775808", 0, "integer literal out of range"},
    {"-9223372036854775809", 1, "integer literal out of range"},
    {"18446744073709551616u", 0, "integer literal out of range"},
    {"0x10000000000000000", 0, "integer literal out of range"},
    {"1e309", 0, "double literal out of range"},
    {"0x", 0, "hex literal without digits"},
    {"'abc", 0, "unterminated string"},
    {"'''abc''", 0, "unterminated string"},
    {"'a\nb'", 2, "newline in a string"},
    {"'\\q'", 1, "invalid escape"},
    {"'\\x4'", 1, "invalid escape"},
    {"'\\ud800'", 1, "invalid escape"},
    {"'\\U00110000'", 1, "invalid escape"},
    {"'\\400'", 1, "invalid escape"},
    {"'a\\", 0, "unterminated string"},
    {"1 # 2", 2, "unexpected character"},
    {"1 = 2", 2, "unexpected character"},
    {"1 & 2", 2, "unexpected character"},
    {"1 == 1 ? 2", 10, "expected ':' before the end"},
    {"!-1", 1, "unexpected '-'"},
    {"if == 1", 0, "reserved word 'if'"},
    {"in [1]", 0, "reserved word 'in'"},
    {"duration('1x')", 9, "invalid duration '1x'"},
    {"duration('')", 9, "invalid duration"},
    {"duration('1')", 9, "invalid duration"},
    {"duration('.s')", 9, "invalid duration"},
    {"duration('1h-1m')", 9, "invalid duration"},
    {"duration('3000000h')", 9, "invalid duration"},
    {"duration('2562047h47m16.854775808s')", 9, "invalid duration"},
    {"request.headers.", 16, "expected a name after '.'"},
    {"request.headers[", 16, "unexpected end"},
    {"request.headers['a'", 19, "expected ']'"},
    {"[1, 2", 5, "expected ',' or ']'"},
    {"size(1", 6, "expected ',' or ')'"},
    {"1 in [1,,]", 8, "unexpected ','"},
    {"'é' == 1 ?", 11, "unexpected end"},
    {"1 .2", 2, "unexpected '.2'"},
    {"1 . 2", 4, "expected a name after '.'"},
};

static void test_refused(void **state)
{
	(void)state;
	for (size_t k = 0; k < sizeof(refused) / sizeof(refused[0]); k++) {
		const struct refusal *c = &refused[k];
		char err[160] = "";
		size_t size = 9, at = 999;
		void *prog = (void *)1;
		int rc = ism_cel_compile(c->e, strlen(c->e), attrs, N_ATTRS, &prog, &size, err,
					 sizeof(err), &at);

		CHECK(c->e, rc == -EINVAL, "accepted (rc %d)", rc);
		CHECK(c->e, prog == NULL && size == 0, "outputs left set");
		CHECK(c->e, at == c->at, "offset %zu, want %zu (%s)", at, c->at, err);
		CHECK(c->e, strstr(err, c->why) != NULL, "message \"%s\" lacks \"%s\"", err,
		      c->why);
	}
}

/* The filters of the brief, each against exchanges that should and should
 * not be logged. */
static void test_examples(void **state)
{
	struct ism_cel_env env;
	struct fake f;
	void *p;

	(void)state;
	fake_init(&f);
	env = (struct ism_cel_env){fake_attr, fake_map, &f};

	p = compile_ok("response.code >= 400");
	assert_true(ism_cel_filter(p, &env));
	f.val[A_CODE].v.i = 200;
	assert_false(ism_cel_filter(p, &env));
	f.has[A_CODE] = false; /* no response: an error, not logged */
	assert_false(ism_cel_filter(p, &env));
	free(p);

	p = compile_ok("response.code >= 500 || response.code == 0");
	assert_false(ism_cel_filter(p, &env));
	f.has[A_CODE] = true;
	f.val[A_CODE].v.i = 0;
	assert_true(ism_cel_filter(p, &env));
	f.val[A_CODE].v.i = 404;
	assert_false(ism_cel_filter(p, &env));
	free(p);

	p = compile_ok(
	    "request.url_path.contains('login') && request.headers['x-user-type'] == 'dev'");
	assert_true(ism_cel_filter(p, &env));
	f.hdr[0][1] = "prod";
	assert_false(ism_cel_filter(p, &env));
	f.hdr[0][0] = "x-other"; /* the header missing: an error */
	assert_false(ism_cel_filter(p, &env));
	f.val[A_URL_PATH] = str("/"); /* false && error: false */
	assert_false(ism_cel_filter(p, &env));
	free(p);

	fake_init(&f);
	p = compile_ok("!request.url_path.startsWith('/healthz')");
	assert_true(ism_cel_filter(p, &env));
	f.val[A_URL_PATH] = str("/healthz/ready");
	assert_false(ism_cel_filter(p, &env));
	free(p);

	p = compile_ok("response.code >= 400 || xds.cluster_name == 'BlackHoleCluster'");
	f.val[A_CODE].v.i = 200;
	assert_false(ism_cel_filter(p, &env));
	f.val[A_CLUSTER] = str("BlackHoleCluster");
	assert_true(ism_cel_filter(p, &env));
	f.has[A_CODE] = false; /* error || true: true */
	assert_true(ism_cel_filter(p, &env));
	free(p);

	fake_init(&f);
	p = compile_ok("request.method in ['POST', 'PUT']");
	assert_false(ism_cel_filter(p, &env));
	f.val[A_METHOD] = str("PUT");
	assert_true(ism_cel_filter(p, &env));
	free(p);

	p = compile_ok("request.duration > duration('1s')");
	assert_true(ism_cel_filter(p, &env));
	f.val[A_DURATION].v.ns = 1000000000;
	assert_false(ism_cel_filter(p, &env));
	free(p);

	p = compile_ok("'x-debug' in request.headers");
	assert_true(ism_cel_filter(p, &env));
	f.hdr[2][0] = "x-nodebug";
	assert_false(ism_cel_filter(p, &env));
	free(p);

	p = compile_ok("request.headers['user-agent'].endsWith('bot')");
	assert_true(ism_cel_filter(p, &env));
	f.hdr[1][0] = "accept"; /* no user-agent: not logged */
	assert_false(ism_cel_filter(p, &env));
	free(p);

	p = compile_ok("response.code"); /* not a bool: not logged */
	assert_false(ism_cel_filter(p, &env));
	free(p);
}

/* Lookups that are NULL find nothing; a scratch space too small or absent
 * makes a made string an error. */
static void test_env_and_scratch(void **state)
{
	struct ism_cel_env none = {NULL, NULL, NULL};
	char big[2000], small[4];
	struct ism_cel_val v;
	struct fake f;
	void *p;

	(void)state;
	p = compile_ok("response.code == 1 || 'a' in request.headers || has(response.code)");
	ism_cel_eval(p, &none, NULL, 0, &v);
	assert_int_equal(v.type, ISM_CEL_ERROR);
	free(p);
	p = compile_ok("has(request.headers.a) || has(response.code)");
	ism_cel_eval(p, &none, NULL, 0, &v);
	assert_int_equal(v.type, ISM_CEL_BOOL);
	assert_false(v.v.b);
	free(p);

	fake_init(&f);
	v = eval_with("'ab' + 'cd'", &f, NULL, 0);
	assert_int_equal(v.type, ISM_CEL_ERROR);
	v = eval_with("'ab' + 'cd'", &f, small, sizeof(small));
	assert_int_equal(v.type, ISM_CEL_STRING);
	assert_memory_equal(v.v.s.p, "abcd", 4);
	v = eval_with("'ab' + 'cd' + 'e'", &f, small, sizeof(small));
	assert_int_equal(v.type, ISM_CEL_ERROR);
	v = eval_with("string(123456)", &f, small, sizeof(small));
	assert_int_equal(v.type, ISM_CEL_ERROR);

	/* ism_cel_filter's own scratch space: ISM_CEL_SCRATCH bytes */
	memset(big, 'a', sizeof(big) - 1);
	big[ISM_CEL_SCRATCH / 2] = '\0';
	f.val[A_URL_PATH] = str(big);
	{
		struct ism_cel_env env = {fake_attr, fake_map, &f};

		p = compile_ok("size(request.url_path + request.url_path) > 0");
		assert_true(ism_cel_filter(p, &env));
		big[ISM_CEL_SCRATCH / 2] = 'a';
		big[ISM_CEL_SCRATCH / 2 + 1] = '\0';
		f.val[A_URL_PATH] = str(big);
		assert_false(ism_cel_filter(p, &env));
		free(p);
	}
	free(f.prog);
}

/* The program holds no pointer: a copy evaluates alike after the original
 * is freed (and overwritten). */
static void test_position_independent(void **state)
{
	const char *e = "request.headers['x-user-type'] + request.headers.x_debug == 'dev' && "
			"request.method in ['GET', 'HEAD'] && 'x-debug' in request.headers && "
			"has(request.headers.x_debug)";
	struct fake f;
	struct ism_cel_env env = {fake_attr, fake_map, &f};
	size_t size, at;
	void *prog, *copy;
	char err[160];

	(void)state;
	fake_init(&f);
	assert_int_equal(
	    ism_cel_compile(e, strlen(e), attrs, N_ATTRS, &prog, &size, err, sizeof(err), &at), 0);
	copy = aligned_alloc(8, (size + 7) / 8 * 8);
	assert_non_null(copy);
	memcpy(copy, prog, size);
	memset(prog, 0x5a, size);
	free(prog);
	f.hdr[3][0] = "x_debug";
	f.hdr[3][1] = "";
	assert_true(ism_cel_filter(copy, &env));
	free(copy);
}

static int compile_rc(const char *e, size_t len, size_t *at, char *err)
{
	size_t size;
	void *prog = NULL;
	int rc = ism_cel_compile(e, len, attrs, N_ATTRS, &prog, &size, err, 160, at);

	free(prog);
	return rc;
}

/* e evaluates to int want, at its full height. */
static void check_int(const char *e, int64_t want)
{
	struct fake f;
	struct ism_cel_val v;

	fake_init(&f);
	v = eval_with(e, &f, NULL, 0);
	free(f.prog);
	assert_int_equal(v.type, ISM_CEL_INT);
	assert_int_equal(v.v.i, want);
}

/* n nested parentheses around 1. */
static char *nested(int n)
{
	char *b = malloc((size_t)n * 2 + 2);

	assert_non_null(b);
	memset(b, '(', (size_t)n);
	b[n] = '1';
	memset(b + n + 1, ')', (size_t)n);
	b[2 * n + 1] = '\0';
	return b;
}

/* "1 + 1 + ... + 1", n terms: a tree n high. */
static char *chain(int n)
{
	char *b = malloc((size_t)n * 4 + 1);

	assert_non_null(b);
	b[0] = '\0';
	for (int k = 0; k < n; k++)
		strcat(b, k ? " + 1" : "1");
	return b;
}

static void test_limits(void **state)
{
	char err[160], *b;
	size_t at;

	(void)state;
	b = nested(ISM_CEL_MAX_NEST);
	assert_int_equal(compile_rc(b, strlen(b), &at, err), 0);
	check_int(b, 1);
	free(b);
	b = nested(ISM_CEL_MAX_NEST + 1);
	assert_int_equal(compile_rc(b, strlen(b), &at, err), -EINVAL);
	assert_int_equal(at, ISM_CEL_MAX_NEST);
	assert_non_null(strstr(err, "nested deeper than 32"));
	free(b);

	/* an operator chain nests in the tree, not in brackets */
	b = chain(ISM_CEL_MAX_HEIGHT);
	assert_int_equal(compile_rc(b, strlen(b), &at, err), 0);
	check_int(b, ISM_CEL_MAX_HEIGHT);
	free(b);
	b = chain(ISM_CEL_MAX_HEIGHT + 1);
	assert_int_equal(compile_rc(b, strlen(b), &at, err), -EINVAL);
	assert_int_equal(at, (size_t)ISM_CEL_MAX_HEIGHT * 4 - 2);
	assert_non_null(strstr(err, "too deep"));
	free(b);

	/* a long list: too many nodes */
	b = malloc(ISM_CEL_MAX_LEN + 2);
	assert_non_null(b);
	strcpy(b, "1 in [");
	for (int k = 0; k < ISM_CEL_MAX_NODES; k++)
		strcat(b, "1,");
	strcat(b, "1]");
	assert_int_equal(compile_rc(b, strlen(b), &at, err), -EINVAL);
	assert_non_null(strstr(err, "too large"));

	/* the length */
	memset(b, ' ', ISM_CEL_MAX_LEN + 1);
	b[0] = '1';
	assert_int_equal(compile_rc(b, ISM_CEL_MAX_LEN, &at, err), 0);
	assert_int_equal(compile_rc(b, ISM_CEL_MAX_LEN + 1, &at, err), -EINVAL);
	assert_int_equal(at, ISM_CEL_MAX_LEN);
	assert_non_null(strstr(err, "longer than 4096"));
	free(b);

	/* a NULL err and at, and a short err */
	assert_int_equal(ism_cel_compile("(", 1, attrs, N_ATTRS, (void **)&b, &at, NULL, 0, NULL),
			 -EINVAL);
	assert_int_equal(ism_cel_compile("(", 1, attrs, N_ATTRS, (void **)&b, &at, err, 4, NULL),
			 -EINVAL);
	assert_string_equal(err, "une");
}

/* Every prefix of e compiled from a buffer of exactly its size; an
 * acceptance is evaluated, a refusal carries a message and an offset
 * inside. */
static void check_prefixes(const char *e)
{
	struct fake f;
	struct ism_cel_env env = {fake_attr, fake_map, &f};
	size_t len = strlen(e);

	fake_init(&f);
	for (size_t n = 0; n <= len; n++) {
		char *p = malloc(n ? n : 1), err[160] = "";
		size_t size = 0, at = 999;
		void *prog = NULL;
		int rc;

		assert_non_null(p);
		memcpy(p, e, n);
		rc = ism_cel_compile(p, n, attrs, N_ATTRS, &prog, &size, err, sizeof(err), &at);
		CHECK(e, rc == 0 || rc == -EINVAL, "rc %d at prefix %zu", rc, n);
		if (rc == 0)
			(void)ism_cel_filter(prog, &env);
		else
			CHECK(e, err[0] != '\0' && at <= n, "at %zu, prefix %zu: %s", at, n, err);
		free(prog);
		free(p);
	}
}

/* What a program reads: the header map whether it takes a key's value, a
 * key's presence or the map after `in`; not when only other attributes are
 * read (the worker then keeps no copy of the fields). */
static void test_reads(void **state)
{
	static const struct {
		const char *text;
		bool headers, code;
	} cases[] = {
	    {"request.headers['x-a'] == 'b'", true, false},
	    {"request.headers.host.startsWith('a')", true, false},
	    {"has(request.headers.x)", true, false},
	    {"'x' in request.headers || response.code == 500", true, true},
	    {"response.code >= 400 && request.method == 'GET'", false, true},
	    {"request.url_path.size() > 3", false, false},
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		void *prog = NULL;
		size_t size;

		assert_int_equal(ism_cel_compile(cases[i].text, strlen(cases[i].text), attrs,
						 sizeof(attrs) / sizeof(attrs[0]), &prog, &size,
						 NULL, 0, NULL),
				 0);
		if (ism_cel_reads(prog, A_HEADERS) != cases[i].headers ||
		    ism_cel_reads(prog, A_CODE) != cases[i].code)
			fail_msg("%s: reads headers %d code %d", cases[i].text,
				 ism_cel_reads(prog, A_HEADERS), ism_cel_reads(prog, A_CODE));
		free(prog);
	}
}

static void test_prefixes(void **state)
{
	(void)state;
	for (size_t k = 0; k < sizeof(bools) / sizeof(bools[0]); k++)
		check_prefixes(bools[k].e);
	for (size_t k = 0; k < sizeof(values) / sizeof(values[0]); k++)
		check_prefixes(values[k].e);
	for (size_t k = 0; k < sizeof(refused) / sizeof(refused[0]); k++)
		check_prefixes(refused[k].e);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_bools),	    cmocka_unit_test(test_values),
	    cmocka_unit_test(test_refused),	    cmocka_unit_test(test_examples),
	    cmocka_unit_test(test_env_and_scratch), cmocka_unit_test(test_position_independent),
	    cmocka_unit_test(test_limits),	    cmocka_unit_test(test_prefixes),
	    cmocka_unit_test(test_reads),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
