/* SPDX-License-Identifier: Apache-2.0 */
/* JSON reader and JWT/JWKS unit tests, through lib/json.h and lib/jose.h: the
 * reader on valid and invalid documents (every prefix from a buffer of exactly
 * its size, so that a read past the end shows under ASan), its limits and its
 * writer; base64url as absl decodes it; every status of ism_jwt_parse, the
 * time and audience checks; JWKS of each key type and each reason Envoy has
 * to skip a key; signatures of every alg made here with keys OpenSSL makes,
 * and tokens made by Python's cryptography as PyJWT makes them. */
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "lib/base64.h"
#include "lib/jose.h"
#include "lib/json.h"
#include "master/jwks.h"
#include "tests/unit/check.h"
#include "tests/unit/selfsigned.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* snprintf that fails the test rather than cut. */
#define PRINT(out, cap, ...)                                                                       \
	assert_true((size_t)snprintf((out), (cap), __VA_ARGS__) < (size_t)(cap))

/* --- the JSON reader --- */

/* Parses s from a heap copy of exactly its size. */
static int parse_exact(const char *s, size_t len, struct ism_json_doc *doc)
{
	char *copy = malloc(len ? len : 1);
	int rc;

	assert_non_null(copy);
	memcpy(copy, s, len);
	rc = ism_json_parse(copy, len, doc);
	free(copy);
	return rc;
}

/* Valid documents and their compact forms. */
static const struct {
	const char *in, *out;
} json_ok[] = {
    {"null", "null"},
    {" true ", "true"},
    {"false", "false"},
    {"0", "0"},
    {"-0", "-0"},
    {"-12.5e2", "-1250"},
    {"1E+2", "100"},
    {"0.1", "0.1"},
    {"1e-7", "1e-07"},
    {"4102444800", "4102444800"},
    {"12345678901234567890", "1.2345678901234567e+19"},
    {"1e-400", "0"},
    {"\"\"", "\"\""},
    {"\"a\\\"b\\\\c\\/d\"", "\"a\\\"b\\\\c/d\""},
    {"\"\\b\\f\\n\\r\\t\"", "\"\\b\\f\\n\\r\\t\""},
    {"\"\\u0041\\u00e9\\u20AC\"", "\"A\xc3\xa9\xe2\x82\xac\""},
    {"\"\\ud83d\\ude00\"", "\"\xf0\x9f\x98\x80\""},
    {"\"\\uDBFF\\uDFFF\"", "\"\xf4\x8f\xbf\xbf\""},
    {"\"\\u0000\\u001f\x7f\"", "\"\\u0000\\u001f\x7f\""},
    {"\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\"",
     "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xf4\x8f\xbf\xbf\""},
    {"[]", "[]"},
    {"{}", "{}"},
    {" [ 1 , [ ] , { } ] ", "[1,[],{}]"},
    {"{\"a\":{\"b\":[true,null,\"x\"]}}", "{\"a\":{\"b\":[true,null,\"x\"]}}"},
    {"\t\r\n{ \"a\" : 1 , \"b\" : [ 2 ] }\n", "{\"a\":1,\"b\":[2]}"},
    {"{\"a\":1,\"a\":2}", "{\"a\":1,\"a\":2}"},
    {"[\"]\",\"[\",\"\\\"]\",{\"}\":\"{\"}]", "[\"]\",\"[\",\"\\\"]\",{\"}\":\"{\"}]"},
};

static const char *const json_bad[] = {
    "",
    " ",
    "nul",
    "nulls",
    "True",
    "01",
    "-01",
    "00",
    "1.",
    ".5",
    "-",
    "+1",
    "1e",
    "1e+",
    "0x10",
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    "-1e400",
    "[",
    "[1",
    "[1,",
    "[1,]",
    "[,1]",
    "[1 2]",
    "{",
    "{\"a\"",
    "{\"a\":",
    "{\"a\":1,}",
    "{a:1}",
    "{\"a\" 1}",
    "{1:2}",
    "{\"a\":1 \"b\":2}",
    "{}{}",
    "[] x",
    "1 2",
    "\"abc",
    "\"\\x\"",
    "\"\\u12\"",
    "\"\\u12g4\"",
    "\"\\ud800\"",
    "\"\\udc00\"",
    "\"\\ude00\\ud83d\"",
    "\"\\ud800\\u0041\"",
    "\"\\ud800\\ud800\"",
    "\"\\ud800x\"",
    "\"\\",
    "\"\x01\"",
    "\"\t\"",
    "\"\n\"",
    "\"\xc0\x80\"",
    "\"\xc1\xbf\"",
    "\"\xe0\x80\x80\"",
    "\"\xed\xa0\x80\"",
    "\"\xf0\x80\x80\x80\"",
    "\"\xf4\x90\x80\x80\"",
    "\"\xf5\x80\x80\x80\"",
    "\"\xff\"",
    "\"\x80\"",
    "\"\xc3\"",
    "\"\xc3x\"",
    "\"\xe2\x82\"",
    "// c\n1",
    "/* c */1",
    "'a'",
    "[1]\x0b",
    "\xef\xbb\xbf{}",
};

static void test_json_valid(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(json_ok); i++) {
		struct ism_json_doc doc, again;
		char out[256], out2[256];
		size_t len;

		CHECK(json_ok[i].in, parse_exact(json_ok[i].in, strlen(json_ok[i].in), &doc) == 0,
		      "refused");
		len = ism_json_write(&doc.root, out, sizeof(out));
		CHECK(json_ok[i].in, strcmp(out, json_ok[i].out) == 0, "wrote %s", out);
		CHECK(json_ok[i].in, len == strlen(out), "length %zu", len);
		/* What it writes reads back as the same document. */
		CHECK(json_ok[i].in, ism_json_parse(out, len, &again) == 0, "rereading %s", out);
		ism_json_write(&again.root, out2, sizeof(out2));
		CHECK(json_ok[i].in, strcmp(out, out2) == 0, "rewrote %s", out2);
		ism_json_free(&again);
		ism_json_free(&doc);
		assert_null(doc.mem);
	}
}

static void test_json_invalid(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(json_bad); i++) {
		struct ism_json_doc doc;

		CHECK(json_bad[i], parse_exact(json_bad[i], strlen(json_bad[i]), &doc) == -1,
		      "accepted");
		CHECK(json_bad[i], doc.mem == NULL && doc.root.type == ISM_JSON_NULL, "not empty");
	}
	/* A NUL byte is a control character in a string, and garbage after a
	 * value. */
	struct ism_json_doc doc;

	assert_int_equal(ism_json_parse("\"a\0b\"", 5, &doc), -1);
	assert_int_equal(ism_json_parse("{}\0", 3, &doc), -1);
	assert_int_equal(ism_json_parse("1\0", 2, &doc), -1);
}

/* Every prefix of every valid document, from a buffer of its size: refused
 * or read, never read past. */
static void test_json_prefixes(void **state)
{
	(void)state;
	for (size_t i = 0; i < N(json_ok); i++) {
		size_t len = strlen(json_ok[i].in);

		for (size_t k = 0; k <= len; k++) {
			struct ism_json_doc doc;

			if (parse_exact(json_ok[i].in, k, &doc) == 0)
				ism_json_free(&doc);
		}
	}
}

static void test_json_decoded(void **state)
{
	struct ism_json_doc doc;
	const struct ism_json *v;

	(void)state;
	assert_int_equal(ism_json_parse("\"a\\u0000b\\n\"", 12, &doc), 0);
	assert_int_equal(doc.root.type, ISM_JSON_STRING);
	assert_int_equal(doc.root.n, 4);
	assert_memory_equal(doc.root.str, "a\0b\n", 5);
	ism_json_free(&doc);

	assert_int_equal(ism_json_parse("[1, -2.5, \"x\", [true], {\"k\": false}]", 36, &doc), 0);
	assert_int_equal(doc.root.type, ISM_JSON_ARRAY);
	assert_int_equal(doc.root.n, 5);
	assert_int_equal(doc.root.items[0].type, ISM_JSON_NUMBER);
	assert_true(doc.root.items[1].num == -2.5);
	assert_string_equal(doc.root.items[2].str, "x");
	assert_int_equal(doc.root.items[3].n, 1);
	assert_int_equal(doc.root.items[3].items[0].type, ISM_JSON_TRUE);
	v = &doc.root.items[4];
	assert_int_equal(v->type, ISM_JSON_OBJECT);
	assert_int_equal(v->n, 1);
	assert_string_equal(v->items[0].str, "k");
	assert_int_equal(v->items[1].type, ISM_JSON_FALSE);
	ism_json_free(&doc);
}

/* The last member of a name wins; names are compared with their length. */
static void test_json_get(void **state)
{
	static const char text[] = "{\"a\":1,\"b\":{\"c\":2},\"a\":3,\"n\\u0000m\":4,\"\":5}";
	struct ism_json_doc doc;
	const struct ism_json *v;

	(void)state;
	assert_int_equal(ism_json_parse(text, sizeof(text) - 1, &doc), 0);
	assert_int_equal(doc.root.n, 5);
	v = ism_json_get(&doc.root, "a");
	assert_non_null(v);
	assert_true(v->num == 3);
	assert_true(ism_json_get(ism_json_get(&doc.root, "b"), "c")->num == 2);
	assert_null(ism_json_get(&doc.root, "c"));
	assert_null(ism_json_get(&doc.root, "n"));
	assert_true(ism_json_get_n(&doc.root, "n\0m", 3)->num == 4);
	assert_true(ism_json_get(&doc.root, "")->num == 5);
	assert_null(ism_json_get(ism_json_get(&doc.root, "a"), "a"));
	assert_null(ism_json_get(NULL, "a"));
	ism_json_free(&doc);
}

/* Depth ISM_JSON_MAX_DEPTH is read, one more is not, and a flood of opening
 * brackets stops there. */
static void test_json_depth(void **state)
{
	size_t big = 100000;
	char *s = malloc(big * 6 + 2);
	struct ism_json_doc doc;
	size_t n;

	(void)state;
	assert_non_null(s);
	for (int d = ISM_JSON_MAX_DEPTH - 1; d <= ISM_JSON_MAX_DEPTH + 1; d++) {
		n = 0;
		for (int i = 0; i < d; i++)
			s[n++] = '[';
		for (int i = 0; i < d; i++)
			s[n++] = ']';
		assert_int_equal(ism_json_parse(s, n, &doc), d <= ISM_JSON_MAX_DEPTH ? 0 : -1);
		ism_json_free(&doc);
		n = 0;
		for (int i = 0; i < d; i++)
			n += (size_t)sprintf(s + n, "{\"a\":");
		s[n++] = '1';
		for (int i = 0; i < d; i++)
			s[n++] = '}';
		assert_int_equal(ism_json_parse(s, n, &doc), d <= ISM_JSON_MAX_DEPTH ? 0 : -1);
		ism_json_free(&doc);
	}
	memset(s, '[', big);
	assert_int_equal(ism_json_parse(s, big, &doc), -1);
	free(s);
}

/* The writer's length is the whole text's, whatever it could hold. */
static void test_json_write_cut(void **state)
{
	static const char text[] = "{\"a\":[1,\"\\u0001\"]}";
	struct ism_json_doc doc;
	char out[8];

	(void)state;
	assert_int_equal(ism_json_parse(text, sizeof(text) - 1, &doc), 0);
	assert_int_equal(ism_json_write(&doc.root, NULL, 0), 18);
	assert_int_equal(ism_json_write(&doc.root, out, sizeof(out)), 18);
	assert_string_equal(out, "{\"a\":[1");
	assert_int_equal(ism_json_write(&doc.root, out, 1), 18);
	assert_string_equal(out, "");
	ism_json_free(&doc);
}

/* --- base64url --- */

static void test_b64url(void **state)
{
	static const struct {
		const char *in;
		size_t len;
		const char *out; /* NULL: refused */
		size_t out_len;
	} cases[] = {
	    {"", 0, "", 0},
	    {"QQ", 2, "A", 1},
	    {"QQ==", 4, "A", 1},
	    {"QQ=", 3, NULL, 0},
	    {"QQ===", 5, NULL, 0},
	    {"QUI", 3, "AB", 2},
	    {"QUI=", 4, "AB", 2},
	    {"QUI==", 5, NULL, 0},
	    {"QUJD", 4, "ABC", 3},
	    {"QUJD=", 5, NULL, 0},
	    {"Q", 1, NULL, 0},
	    {"QUJDR", 5, NULL, 0},
	    {"-_8", 3, "\xfb\xff", 2},
	    {"+/8", 3, NULL, 0},
	    {"Q Q", 3, "A", 1},
	    {"\tQ\nQ\r", 5, "A", 1},
	    {" Q Q = = ", 9, "A", 1},
	    {"QQ..", 4, "A", 1},
	    {"QQ=.", 4, "A", 1},
	    {"QQ=x", 4, NULL, 0},
	    {"QQ=Q", 4, NULL, 0},
	    {"QR", 2, "A", 1}, /* the unused bits are not checked */
	    {"Q\0Q", 3, NULL, 0},
	    {"QQ\xff", 3, NULL, 0},
	    {"QUJDREVG", 8, "ABCDEF", 6},
	};
	unsigned char out[16];

	(void)state;
	for (size_t i = 0; i < N(cases); i++) {
		ssize_t n = ism_jwt_b64url_decode(cases[i].in, cases[i].len, out);

		if (cases[i].out == NULL) {
			CHECK(cases[i].in, n == -1, "decoded %zd bytes", n);
			continue;
		}
		CHECK(cases[i].in, n == (ssize_t)cases[i].out_len, "decoded %zd bytes", n);
		CHECK(cases[i].in, memcmp(out, cases[i].out, cases[i].out_len) == 0, "wrong bytes");
	}
}

/* --- tokens --- */

/* in as base64url without padding, NUL-terminated. */
static void b64url(const void *in, size_t n, char *out)
{
	size_t len = ism_b64_encode(in, n, out);

	while (len > 0 && out[len - 1] == '=')
		len--;
	out[len] = '\0';
	for (char *c = out; *c; c++)
		*c = *c == '+' ? '-' : *c == '/' ? '_' : *c;
}

/* "header.payload.sig" of the two JSON texts, into a static buffer. */
static const char *tok(const char *hdr, const char *pl, const char *sig)
{
	static char buf[4096];
	size_t n;

	b64url(hdr, strlen(hdr), buf);
	n = strlen(buf);
	buf[n++] = '.';
	b64url(pl, strlen(pl), buf + n);
	n = strlen(buf);
	PRINT(buf + n, sizeof(buf) - n, ".%s", sig);
	return buf;
}

#define HS "{\"alg\":\"HS256\"}"

static void test_jwt_statuses(void **state)
{
	static const struct {
		const char *name, *hdr, *pl, *sig; /* hdr NULL: pl is the whole token */
		enum ism_jwt_status st;
	} cases[] = {
	    {"empty", NULL, "", NULL, ISM_JWT_BAD_FORMAT},
	    {"two parts", NULL, "eyJ9.e30", NULL, ISM_JWT_BAD_FORMAT},
	    {"empty signature", NULL, "eyJ9.e30.", NULL, ISM_JWT_BAD_FORMAT},
	    {"four parts", NULL, "a.b.c.d", NULL, ISM_JWT_BAD_FORMAT},
	    {"dots only", NULL, "...", NULL, ISM_JWT_BAD_FORMAT},
	    {"header base64", NULL, "e$.e30.c2ln", NULL, ISM_JWT_HDR_BAD_BASE64},
	    {"header base64 length", NULL, "e.e30.c2ln", NULL, ISM_JWT_HDR_BAD_BASE64},
	    {"header standard alphabet", NULL, "e+.e30.c2ln", NULL, ISM_JWT_HDR_BAD_BASE64},
	    {"header json", "{", "{}", "c2ln", ISM_JWT_HDR_BAD_JSON},
	    {"header list", "[]", "{}", "c2ln", ISM_JWT_HDR_BAD_JSON},
	    {"header string", "\"alg\"", "{}", "c2ln", ISM_JWT_HDR_BAD_JSON},
	    {"no alg", "{}", "{}", "c2ln", ISM_JWT_HDR_BAD_ALG},
	    {"alg number", "{\"alg\":256}", "{}", "c2ln", ISM_JWT_HDR_BAD_ALG},
	    {"alg null", "{\"alg\":null}", "{}", "c2ln", ISM_JWT_HDR_BAD_ALG},
	    {"alg none", "{\"alg\":\"none\"}", "{}", "c2ln", ISM_JWT_HDR_ALG_NOT_IMPL},
	    {"alg case", "{\"alg\":\"hs256\"}", "{}", "c2ln", ISM_JWT_HDR_ALG_NOT_IMPL},
	    {"alg NUL", "{\"alg\":\"HS256\\u0000\"}", "{}", "c2ln", ISM_JWT_HDR_ALG_NOT_IMPL},
	    {"alg ES256K", "{\"alg\":\"ES256K\"}", "{}", "c2ln", ISM_JWT_HDR_ALG_NOT_IMPL},
	    {"kid number", "{\"alg\":\"HS256\",\"kid\":1}", "{}", "c2ln", ISM_JWT_HDR_BAD_KID},
	    {"kid null", "{\"alg\":\"HS256\",\"kid\":null}", "{}", "c2ln", ISM_JWT_HDR_BAD_KID},
	    {"payload base64", NULL, "eyJhbGciOiJIUzI1NiJ9.e$.c2ln", NULL, ISM_JWT_PL_BAD_BASE64},
	    {"payload json", HS, "{\"a\"}", "c2ln", ISM_JWT_PL_BAD_JSON},
	    {"payload number", HS, "1", "c2ln", ISM_JWT_PL_BAD_JSON},
	    {"payload list", HS, "[{}]", "c2ln", ISM_JWT_PL_BAD_JSON},
	    {"iss", HS, "{\"iss\":1}", "c2ln", ISM_JWT_ISS_NOT_STRING},
	    {"sub", HS, "{\"sub\":[]}", "c2ln", ISM_JWT_SUB_NOT_STRING},
	    {"iat string", HS, "{\"iat\":\"1\"}", "c2ln", ISM_JWT_IAT_NOT_INTEGER},
	    {"iat negative", HS, "{\"iat\":-1}", "c2ln", ISM_JWT_IAT_OUT_OF_RANGE},
	    {"iat 2^64", HS, "{\"iat\":18446744073709551616}", "c2ln", ISM_JWT_IAT_OUT_OF_RANGE},
	    {"nbf bool", HS, "{\"nbf\":true}", "c2ln", ISM_JWT_NBF_NOT_INTEGER},
	    {"nbf negative", HS, "{\"nbf\":-0.5}", "c2ln", ISM_JWT_NBF_OUT_OF_RANGE},
	    {"exp null", HS, "{\"exp\":null}", "c2ln", ISM_JWT_EXP_NOT_INTEGER},
	    {"exp 1e20", HS, "{\"exp\":1e20}", "c2ln", ISM_JWT_EXP_OUT_OF_RANGE},
	    {"jti", HS, "{\"jti\":{}}", "c2ln", ISM_JWT_JTI_NOT_STRING},
	    {"aud number", HS, "{\"aud\":1}", "c2ln", ISM_JWT_AUD_NOT_STRING},
	    {"aud mixed list", HS, "{\"aud\":[\"a\",1]}", "c2ln", ISM_JWT_AUD_NOT_STRING},
	    {"aud object", HS, "{\"aud\":{}}", "c2ln", ISM_JWT_AUD_NOT_STRING},
	    {"claims in order", HS, "{\"aud\":1,\"iss\":2}", "c2ln", ISM_JWT_ISS_NOT_STRING},
	    {"signature base64", HS, "{}", "c2l$", ISM_JWT_SIG_BAD_BASE64},
	    {"signature length", HS, "{}", "c2lnA", ISM_JWT_SIG_BAD_BASE64},
	    {"header first", "{}", "1", "$", ISM_JWT_HDR_BAD_ALG},
	    {"minimal", HS, "{}", "c2ln", ISM_JWT_OK},
	    {"other types", "{\"alg\":\"EdDSA\",\"kid\":\"\",\"typ\":1}",
	     "{\"iat\":1.9,\"nbf\":-0,\"exp\":18446744073709549568,\"aud\":[],\"x\":null}", "c2ln",
	     ISM_JWT_OK},
	};

	(void)state;
	for (size_t i = 0; i < N(cases); i++) {
		const char *t =
		    cases[i].hdr ? tok(cases[i].hdr, cases[i].pl, cases[i].sig) : cases[i].pl;
		struct ism_jwt jwt;
		enum ism_jwt_status st = ism_jwt_parse(t, strlen(t), &jwt);

		CHECK(cases[i].name, st == cases[i].st, "status %d (%s)", st,
		      ism_jwt_status_text(st));
		if (st != ISM_JWT_OK)
			CHECK(cases[i].name, jwt.sig == NULL && jwt.header.mem == NULL,
			      "not freed");
		ism_jwt_free(&jwt);
	}
}

static void test_jwt_fields(void **state)
{
	struct ism_jwt jwt;
	const char *t;
	char copy[4096];

	(void)state;
	t = tok("{\"alg\":\"RS256\",\"kid\":\"k1\"}",
		"{\"iss\":\"https://issuer\",\"sub\":\"alice\",\"iat\":1.9,\"nbf\":100,"
		"\"exp\":200,\"jti\":\"j\",\"aud\":[\"a\",\"b\"]}",
		"c2ln");
	assert_int_equal(ism_jwt_parse(t, strlen(t), &jwt), ISM_JWT_OK);
	assert_string_equal(jwt.alg, "RS256");
	assert_string_equal(jwt.kid, "k1");
	assert_string_equal(jwt.iss, "https://issuer");
	assert_string_equal(jwt.sub, "alice");
	assert_int_equal(jwt.iat, 1);
	assert_int_equal(jwt.nbf, 100);
	assert_int_equal(jwt.exp, 200);
	assert_int_equal(jwt.n_aud, 2);
	assert_string_equal(jwt.aud[0], "a");
	assert_string_equal(jwt.aud[1], "b");
	assert_int_equal(jwt.sig_len, 3);
	assert_memory_equal(jwt.sig, "sig", 3);
	assert_ptr_equal(jwt.signed_part, t);
	assert_int_equal(jwt.signed_len, strrchr(t, '.') - t);
	assert_ptr_equal(jwt.payload_b64, strchr(t, '.') + 1);
	assert_int_equal(jwt.payload_b64_len, strrchr(t, '.') - strchr(t, '.') - 1);
	ism_jwt_free(&jwt);

	/* One audience; no kid, iss or sub; an empty kid is none. */
	t = tok("{\"alg\":\"HS256\",\"kid\":\"\"}", "{\"aud\":\"x\"}", "c2ln");
	assert_int_equal(ism_jwt_parse(t, strlen(t), &jwt), ISM_JWT_OK);
	assert_null(jwt.kid);
	assert_null(jwt.iss);
	assert_null(jwt.sub);
	assert_int_equal(jwt.n_aud, 1);
	assert_string_equal(jwt.aud[0], "x");
	assert_int_equal(jwt.iat + jwt.nbf + jwt.exp, 0);
	ism_jwt_free(&jwt);

	/* Empty parts are skipped, as absl::SkipEmpty does: what the signature
	 * covers is still "header.payload". */
	t = tok(HS, "{}", "c2ln");
	PRINT(copy, sizeof(copy), ".%.*s..%s.", (int)(strchr(t, '.') - t), t, strchr(t, '.') + 1);
	assert_int_equal(ism_jwt_parse(copy, strlen(copy), &jwt), ISM_JWT_OK);
	assert_int_equal(jwt.signed_len, strrchr(t, '.') - t);
	assert_memory_equal(jwt.signed_part, t, jwt.signed_len);
	assert_ptr_not_equal(jwt.signed_part, copy + 1);
	ism_jwt_free(&jwt);
	PRINT(copy, sizeof(copy), "..%s..", t);
	assert_int_equal(ism_jwt_parse(copy, strlen(copy), &jwt), ISM_JWT_OK);
	assert_ptr_equal(jwt.signed_part, copy + 2);
	ism_jwt_free(&jwt);
	ism_jwt_free(&jwt);
}

/* Every prefix of a token, from a buffer of its size. */
static void test_jwt_prefixes(void **state)
{
	const char *t =
	    tok("{\"alg\":\"ES256\",\"kid\":\"k\"}",
		"{\"iss\":\"i\",\"aud\":[\"a\"],\"exp\":1,\"o\":{\"p\":[1,2]}}", "c2lnbmF0dXJl");
	size_t len = strlen(t);

	(void)state;
	for (size_t k = 0; k <= len; k++) {
		char *copy = malloc(k ? k : 1);
		struct ism_jwt jwt;

		assert_non_null(copy);
		memcpy(copy, t, k);
		if (ism_jwt_parse(copy, k, &jwt) == ISM_JWT_OK)
			assert_non_null(ism_jwt_claim(&jwt, "iss"));
		ism_jwt_free(&jwt);
		free(copy);
	}
}

static void test_status_text(void **state)
{
	(void)state;
	for (int s = 0; s < ISM_JWT_N_STATUS; s++)
		CHECK("status", ism_jwt_status_text(s)[0] != '\0', "status %d has no text", s);
	assert_string_equal(ism_jwt_status_text(ISM_JWT_VERIFICATION_FAIL),
			    "Jwt verification fails");
	assert_string_equal(ism_jwt_status_text(ISM_JWT_JWKS_KID_ALG_MISMATCH),
			    "Jwks doesn't have key to match kid or alg from Jwt");
	assert_string_equal(ism_jwt_status_text(ISM_JWT_N_STATUS), "");
}

/* nbf and exp with the skew either way, saturating at the ends. */
static void test_time(void **state)
{
	const char *t = tok(HS, "{\"nbf\":1000,\"exp\":2000}", "c2ln");
	struct ism_jwt jwt;

	(void)state;
	assert_int_equal(ism_jwt_parse(t, strlen(t), &jwt), ISM_JWT_OK);
	assert_int_equal(ism_jwt_check_time(&jwt, 939, 60), ISM_JWT_NOT_YET_VALID);
	assert_int_equal(ism_jwt_check_time(&jwt, 940, 60), ISM_JWT_OK);
	assert_int_equal(ism_jwt_check_time(&jwt, 2060, 60), ISM_JWT_OK);
	assert_int_equal(ism_jwt_check_time(&jwt, 2061, 60), ISM_JWT_EXPIRED);
	assert_int_equal(ism_jwt_check_time(&jwt, 999, 0), ISM_JWT_NOT_YET_VALID);
	assert_int_equal(ism_jwt_check_time(&jwt, 1000, 0), ISM_JWT_OK);
	assert_int_equal(ism_jwt_check_time(&jwt, 2000, 0), ISM_JWT_OK);
	assert_int_equal(ism_jwt_check_time(&jwt, 2001, 0), ISM_JWT_EXPIRED);
	assert_int_equal(ism_jwt_check_time(&jwt, 0, UINT64_MAX), ISM_JWT_OK);
	assert_int_equal(ism_jwt_check_time(&jwt, UINT64_MAX, UINT64_MAX), ISM_JWT_OK);
	assert_int_equal(ism_jwt_check_time(&jwt, UINT64_MAX, ISM_JWT_CLOCK_SKEW), ISM_JWT_EXPIRED);
	ism_jwt_free(&jwt);

	/* No exp: never expired; no nbf: valid from 0. */
	t = tok(HS, "{}", "c2ln");
	assert_int_equal(ism_jwt_parse(t, strlen(t), &jwt), ISM_JWT_OK);
	assert_int_equal(ism_jwt_check_time(&jwt, 0, 0), ISM_JWT_OK);
	assert_int_equal(ism_jwt_check_time(&jwt, UINT64_MAX, 0), ISM_JWT_OK);
	ism_jwt_free(&jwt);
}

static void test_audience(void **state)
{
	static const char *const api[] = {"https://api.example.com/"};
	static const char *const two[] = {"other", "http://b"};
	static const char *const scheme_only[] = {"https://"};
	static const char *const upper[] = {"API.example.com"};
	static const struct {
		const char *payload;
		const char *const *want;
		size_t n;
		bool ok;
	} cases[] = {
	    {"{}", NULL, 0, true},
	    {"{}", api, 1, false},
	    {"{\"aud\":[]}", api, 1, false},
	    {"{\"aud\":\"api.example.com\"}", api, 1, true},
	    {"{\"aud\":\"http://api.example.com\"}", api, 1, true},
	    {"{\"aud\":\"https://api.example.com/\"}", api, 1, true},
	    {"{\"aud\":\"api.example.com//\"}", api, 1, false},
	    {"{\"aud\":\"ftp://api.example.com\"}", api, 1, false},
	    {"{\"aud\":\"api.example.com\"}", upper, 1, false},
	    {"{\"aud\":[\"a\",\"b/\"]}", two, 2, true},
	    {"{\"aud\":[\"a\",\"c\"]}", two, 2, false},
	    /* "https://" and "" both come to nothing. */
	    {"{\"aud\":\"\"}", scheme_only, 1, true},
	    {"{\"aud\":\"http:///\"}", scheme_only, 1, true},
	    /* An audience is all its bytes: a NUL is no end (it was). */
	    {"{\"aud\":\"api.example.com\\u0000.evil\"}", api, 1, false},
	    {"{\"aud\":[\"x\\u0000\",\"api.example.com\"]}", api, 1, true},
	};

	(void)state;
	for (size_t i = 0; i < N(cases); i++) {
		const char *t = tok(HS, cases[i].payload, "c2ln");
		struct ism_jwt jwt;

		assert_int_equal(ism_jwt_parse(t, strlen(t), &jwt), ISM_JWT_OK);
		CHECK(cases[i].payload,
		      ism_jwt_audience_ok(&jwt, cases[i].want, cases[i].n) == cases[i].ok,
		      "case %zu", i);
		ism_jwt_free(&jwt);
	}
}

/* --- keys and signatures made here --- */

static EVP_PKEY *rsa, *rsa2, *p256, *p256b, *p384, *p521, *ed, *ed2;
static const unsigned char secret[] = "a secret of thirty-two bytes...";
static const unsigned char secret2[] = "another secret";

static int make_keys(void **state)
{
	(void)state;
	rsa = EVP_RSA_gen(2048);
	rsa2 = EVP_RSA_gen(1024);
	p256 = EVP_EC_gen("P-256");
	p256b = EVP_EC_gen("P-256");
	p384 = EVP_EC_gen("P-384");
	p521 = EVP_EC_gen("P-521");
	ed = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	ed2 = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	return rsa && rsa2 && p256 && p256b && p384 && p521 && ed && ed2 ? 0 : -1;
}

static int free_keys(void **state)
{
	(void)state;
	EVP_PKEY_free(rsa);
	EVP_PKEY_free(rsa2);
	EVP_PKEY_free(p256);
	EVP_PKEY_free(p256b);
	EVP_PKEY_free(p384);
	EVP_PKEY_free(p521);
	EVP_PKEY_free(ed);
	EVP_PKEY_free(ed2);
	return 0;
}

/* k's public JWK, with extra ("\"kid\":\"a\",", or "") after its brace. For
 * HMAC keys pass k NULL and the secret. */
static void jwk(char *out, size_t cap, EVP_PKEY *k, const unsigned char *key, size_t key_len,
		const char *extra)
{
	unsigned char pub[1 + 2 * 66];
	char a[1100], b[1100], group[32];
	size_t len = 0;

	if (k == NULL) {
		b64url(key, key_len, a);
		PRINT(out, cap, "{%s\"kty\":\"oct\",\"k\":\"%s\"}", extra, a);
	} else if (EVP_PKEY_get_base_id(k) == EVP_PKEY_RSA) {
		BIGNUM *n = NULL, *e = NULL;
		unsigned char bin[1024];

		assert_true(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &n));
		assert_true(EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_E, &e));
		b64url(bin, (size_t)BN_bn2bin(n, bin), a);
		b64url(bin, (size_t)BN_bn2bin(e, bin), b);
		PRINT(out, cap, "{%s\"kty\":\"RSA\",\"n\":\"%s\",\"e\":\"%s\"}", extra, a, b);
		BN_free(n);
		BN_free(e);
	} else if (EVP_PKEY_get_base_id(k) == EVP_PKEY_EC) {
		const char *crv;

		assert_true(EVP_PKEY_get_utf8_string_param(k, OSSL_PKEY_PARAM_GROUP_NAME, group,
							   sizeof(group), NULL));
		assert_true(EVP_PKEY_get_octet_string_param(k, OSSL_PKEY_PARAM_PUB_KEY, pub,
							    sizeof(pub), &len));
		crv = strcmp(group, "prime256v1") == 0	? "P-256"
		      : strcmp(group, "secp384r1") == 0 ? "P-384"
							: "P-521";
		b64url(pub + 1, (len - 1) / 2, a);
		b64url(pub + 1 + (len - 1) / 2, (len - 1) / 2, b);
		PRINT(out, cap, "{%s\"kty\":\"EC\",\"crv\":\"%s\",\"x\":\"%s\",\"y\":\"%s\"}",
		      extra, crv, a, b);
	} else {
		len = 32;
		assert_true(EVP_PKEY_get_raw_public_key(k, pub, &len));
		b64url(pub, len, a);
		PRINT(out, cap, "{%s\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"%s\"}", extra, a);
	}
}

static const EVP_MD *md_of(const char *alg)
{
	return strstr(alg, "384") ? EVP_sha384() : strstr(alg, "512") ? EVP_sha512() : EVP_sha256();
}

static int pss_salt = RSA_PSS_SALTLEN_DIGEST;

/* data signed for alg with k (or the HMAC key), as JWS has it: raw. */
static size_t sign(const char *alg, EVP_PKEY *k, const unsigned char *key, size_t key_len,
		   const char *data, unsigned char *sig)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	unsigned char der[256];
	size_t len = 1024;
	unsigned int mac_len = 0;

	assert_non_null(ctx);
	if (alg[0] == 'H') {
		assert_non_null(HMAC(md_of(alg), key, (int)key_len, (const unsigned char *)data,
				     strlen(data), sig, &mac_len));
		EVP_MD_CTX_free(ctx);
		return mac_len;
	}
	assert_int_equal(EVP_DigestSignInit(ctx, &pctx,
					    alg[0] == 'E' && alg[1] == 'd' ? NULL : md_of(alg),
					    NULL, k),
			 1);
	if (alg[0] == 'P') {
		assert_int_equal(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING), 1);
		assert_int_equal(EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, pss_salt), 1);
	}
	if (alg[0] == 'E' && alg[1] == 'S') {
		const unsigned char *p = der;
		size_t width = EVP_PKEY_get_bits(k) == 521 ? 66 : (size_t)EVP_PKEY_get_bits(k) / 8;
		ECDSA_SIG *es;

		len = sizeof(der);
		assert_int_equal(
		    EVP_DigestSign(ctx, der, &len, (const unsigned char *)data, strlen(data)), 1);
		es = d2i_ECDSA_SIG(NULL, &p, (long)len);
		assert_non_null(es);
		BN_bn2binpad(ECDSA_SIG_get0_r(es), sig, (int)width);
		BN_bn2binpad(ECDSA_SIG_get0_s(es), sig + width, (int)width);
		ECDSA_SIG_free(es);
		len = 2 * width;
	} else {
		assert_int_equal(
		    EVP_DigestSign(ctx, sig, &len, (const unsigned char *)data, strlen(data)), 1);
	}
	EVP_MD_CTX_free(ctx);
	return len;
}

/* A token for alg (and kid, when not NULL) carrying payload, signed with k or
 * the HMAC key; *sig_at where its signature starts. Static buffer. */
static char *jws(const char *alg, const char *kid, const char *payload, EVP_PKEY *k,
		 const unsigned char *key, size_t key_len)
{
	static char t[4096];
	unsigned char sig[1024];
	char hdr[128];
	size_t n, sig_len;

	if (kid)
		PRINT(hdr, sizeof(hdr), "{\"alg\":\"%s\",\"kid\":\"%s\"}", alg, kid);
	else
		PRINT(hdr, sizeof(hdr), "{\"alg\":\"%s\"}", alg);
	b64url(hdr, strlen(hdr), t);
	n = strlen(t);
	t[n++] = '.';
	b64url(payload, strlen(payload), t + n);
	sig_len = sign(alg, k, key, key_len, t, sig);
	n = strlen(t);
	t[n++] = '.';
	b64url(sig, sig_len, t + n);
	return t;
}

/* ism_jwt_verify of token against the key set jwks (JSON). */
static enum ism_jwt_status verify(const char *token, const char *jwks)
{
	struct ism_jwt jwt;
	struct ism_jwks set;
	enum ism_jwt_status st;
	char why[256];

	st = ism_jwks_parse(jwks, strlen(jwks), &set, why, sizeof(why));
	if (st != ISM_JWT_OK)
		fail_msg("jwks %s: %s", jwks, why);
	st = ism_jwt_parse(token, strlen(token), &jwt);
	if (st != ISM_JWT_OK)
		fail_msg("token %s: %s", token, ism_jwt_status_text(st));
	st = ism_jwt_verify(&jwt, &set);
	ism_jwt_free(&jwt);
	ism_jwks_free(&set);
	return st;
}

/* A key set of the JWKs a and b (b may be NULL), into a static buffer. */
static const char *set_of(const char *a, const char *b)
{
	static char s[4500];

	PRINT(s, sizeof(s), "{\"keys\":[%s%s%s]}", a, b ? "," : "", b ? b : "");
	return s;
}

/* A key set of one key: k's (or the secret's) with extra. */
static const char *set1(EVP_PKEY *k, const unsigned char *key, size_t key_len, const char *extra)
{
	char j[2100];

	jwk(j, sizeof(j), k, key, key_len, extra);
	return set_of(j, NULL);
}

/* t's header and signature around u's payload, into out. */
static void splice(char *out, size_t cap, const char *t, const char *u)
{
	const char *u1 = strchr(u, '.') + 1;

	PRINT(out, cap, "%.*s.%.*s%s", (int)(strchr(t, '.') - t), t, (int)(strchr(u1, '.') - u1),
	      u1, strrchr(t, '.'));
}

static void test_verify_algs(void **state)
{
	static const struct {
		const char *alg;
		EVP_PKEY **k, **other;
	} cases[] = {
	    {"RS256", &rsa, &rsa2},   {"RS384", &rsa, &rsa2},  {"RS512", &rsa, &rsa2},
	    {"PS256", &rsa, &rsa2},   {"PS384", &rsa, &rsa2},  {"PS512", &rsa, &rsa2},
	    {"ES256", &p256, &p256b}, {"ES384", &p384, &p256}, {"ES512", &p521, &p384},
	    {"HS256", NULL, NULL},    {"HS384", NULL, NULL},   {"HS512", NULL, NULL},
	    {"EdDSA", &ed, &ed2},
	};

	(void)state;
	for (size_t i = 0; i < N(cases); i++) {
		EVP_PKEY *k = cases[i].k ? *cases[i].k : NULL;
		EVP_PKEY *other = cases[i].other ? *cases[i].other : NULL;
		char t[4096], t2[4096], good[2100], bad[2100], alg[64];

		PRINT(t, sizeof(t), "%s",
		      jws(cases[i].alg, NULL, "{\"sub\":\"alice\"}", k, secret, 31));
		jwk(good, sizeof(good), k, secret, 31, "");
		jwk(bad, sizeof(bad), other, secret2, 14, "");
		CHECK(cases[i].alg, verify(t, set_of(good, NULL)) == ISM_JWT_OK, "not verified");
		CHECK(cases[i].alg, verify(t, set_of(bad, NULL)) == ISM_JWT_VERIFICATION_FAIL,
		      "verified by another key");
		CHECK(cases[i].alg, verify(t, set_of(bad, good)) == ISM_JWT_OK, "second key");
		/* With the key's alg given, and with another alg given. */
		PRINT(alg, sizeof(alg), "\"alg\":\"%s\",", cases[i].alg);
		CHECK(cases[i].alg, verify(t, set1(k, secret, 31, alg)) == ISM_JWT_OK, "with alg");
		/* Another alg of the family (an EC or OKP key's alg is tied to
		 * its curve: test_kid_alg). */
		PRINT(alg, sizeof(alg), "\"alg\":\"%.2s%s\",", cases[i].alg,
		      strstr(cases[i].alg, "384") ? "512" : "384");
		if (strchr("RPH", cases[i].alg[0]))
			CHECK(cases[i].alg,
			      verify(t, set1(k, secret, 31, alg)) == ISM_JWT_JWKS_KID_ALG_MISMATCH,
			      "alg differs");
		/* Another payload under the same signature. */
		splice(t2, sizeof(t2), t,
		       jws(cases[i].alg, NULL, "{\"sub\":\"mallory\"}", k, secret, 31));
		CHECK(cases[i].alg, verify(t2, set_of(good, NULL)) == ISM_JWT_VERIFICATION_FAIL,
		      "tampered payload verified");
	}
}

static void test_kid_alg(void **state)
{
	char t[4096], a[2100], b[2100];

	(void)state;
	/* kid: compared when both have one. */
	PRINT(t, sizeof(t), "%s", jws("ES256", "k2", "{}", p256, NULL, 0));
	jwk(a, sizeof(a), p256b, NULL, 0, "\"kid\":\"k1\",");
	jwk(b, sizeof(b), p256, NULL, 0, "\"kid\":\"k2\",");
	assert_int_equal(verify(t, set_of(a, b)), ISM_JWT_OK);
	assert_int_equal(verify(t, set_of(a, NULL)), ISM_JWT_JWKS_KID_ALG_MISMATCH);
	jwk(a, sizeof(a), p256b, NULL, 0, "\"kid\":\"k2\",");
	assert_int_equal(verify(t, set_of(a, NULL)), ISM_JWT_VERIFICATION_FAIL);
	jwk(a, sizeof(a), p256, NULL, 0, "");
	assert_int_equal(verify(t, set_of(a, NULL)), ISM_JWT_OK);
	PRINT(t, sizeof(t), "%s", jws("ES256", NULL, "{}", p256, NULL, 0));
	assert_int_equal(verify(t, set_of(b, NULL)), ISM_JWT_OK);
	PRINT(t, sizeof(t), "%s", jws("ES256", "", "{}", p256, NULL, 0));
	assert_int_equal(verify(t, set_of(b, NULL)), ISM_JWT_OK);

	/* alg: compared when the key has one. */
	jwk(a, sizeof(a), p384, NULL, 0, "\"alg\":\"ES384\",");
	assert_int_equal(verify(t, set_of(a, NULL)), ISM_JWT_JWKS_KID_ALG_MISMATCH);
	jwk(b, sizeof(b), p256, NULL, 0, "\"alg\":\"ES256\",\"kid\":\"x\",");
	assert_int_equal(verify(t, set_of(a, b)), ISM_JWT_OK);
	{
		struct ism_jwks none = {0, NULL};
		struct ism_jwt jwt;

		assert_int_equal(ism_jwt_parse(t, strlen(t), &jwt), ISM_JWT_OK);
		assert_int_equal(ism_jwt_verify(&jwt, &none), ISM_JWT_JWKS_KID_ALG_MISMATCH);
		ism_jwt_free(&jwt);
	}

	/* Envoy picks the verifier by the key's type, whatever the token's
	 * alg: an HS256 token tried on an EC key fails as a signature. */
	PRINT(t, sizeof(t), "%s", jws("HS256", NULL, "{}", NULL, secret, 31));
	jwk(a, sizeof(a), p256, NULL, 0, "");
	assert_int_equal(verify(t, set_of(a, NULL)), ISM_JWT_VERIFICATION_FAIL);
	jwk(a, sizeof(a), rsa, NULL, 0, "");
	assert_int_equal(verify(t, set_of(a, NULL)), ISM_JWT_VERIFICATION_FAIL);
	jwk(b, sizeof(b), NULL, secret, 31, "");
	assert_int_equal(verify(t, set_of(a, b)), ISM_JWT_OK);
	/* ... and an Ed25519 key ends the search on a signature of another
	 * length, before the HMAC key after it is tried. */
	jwk(a, sizeof(a), ed, NULL, 0, "");
	assert_int_equal(verify(t, set_of(a, b)), ISM_JWT_ED25519_SIG_LEN);
	assert_int_equal(verify(t, set_of(b, a)), ISM_JWT_OK);
}

/* Signatures of the wrong length, as Envoy takes or refuses them. */
static void test_sig_lengths(void **state)
{
	char t[4096], key[2100], *sig;
	unsigned char raw[600], pad[600];
	ssize_t n;

	(void)state;
	/* ES256: Envoy splits the signature in halves, whatever its length:
	 * r and s padded to 33 bytes each still verify, an odd last byte is
	 * not read, one byte short fails. */
	PRINT(t, sizeof(t), "%s", jws("ES256", NULL, "{}", p256, NULL, 0));
	jwk(key, sizeof(key), p256, NULL, 0, "");
	sig = strrchr(t, '.') + 1;
	n = ism_jwt_b64url_decode(sig, strlen(sig), raw);
	assert_int_equal(n, 64);
	pad[0] = 0;
	memcpy(pad + 1, raw, 32);
	pad[33] = 0;
	memcpy(pad + 34, raw + 32, 32);
	b64url(pad, 66, sig);
	assert_int_equal(verify(t, set_of(key, NULL)), ISM_JWT_OK);
	memcpy(pad, raw, 64);
	pad[64] = 0x5a;
	b64url(pad, 65, sig);
	assert_int_equal(verify(t, set_of(key, NULL)), ISM_JWT_OK);
	b64url(raw, 63, sig);
	assert_int_equal(verify(t, set_of(key, NULL)), ISM_JWT_VERIFICATION_FAIL);
	strcpy(sig, " "); /* decodes to nothing */
	assert_int_equal(verify(t, set_of(key, NULL)), ISM_JWT_VERIFICATION_FAIL);

	/* RS256: BoringSSL takes the modulus' length only. */
	PRINT(t, sizeof(t), "%s", jws("RS256", NULL, "{}", rsa, NULL, 0));
	jwk(key, sizeof(key), rsa, NULL, 0, "");
	sig = strrchr(t, '.') + 1;
	n = ism_jwt_b64url_decode(sig, strlen(sig), raw + 1);
	assert_int_equal(n, 256);
	raw[0] = 0;
	b64url(raw, 257, sig);
	assert_int_equal(verify(t, set_of(key, NULL)), ISM_JWT_VERIFICATION_FAIL);
	b64url(raw + 1, 256, sig);
	assert_int_equal(verify(t, set_of(key, NULL)), ISM_JWT_OK);

	/* EdDSA: not 64 bytes is its own status. */
	PRINT(t, sizeof(t), "%s", jws("EdDSA", NULL, "{}", ed, NULL, 0));
	jwk(key, sizeof(key), ed, NULL, 0, "");
	sig = strrchr(t, '.') + 1;
	n = ism_jwt_b64url_decode(sig, strlen(sig), raw);
	assert_int_equal(n, 64);
	b64url(raw, 63, sig);
	assert_int_equal(verify(t, set_of(key, NULL)), ISM_JWT_ED25519_SIG_LEN);
	raw[64] = 0;
	b64url(raw, 65, sig);
	assert_int_equal(verify(t, set_of(key, NULL)), ISM_JWT_ED25519_SIG_LEN);

	/* HS256: a MAC cut short fails. */
	PRINT(t, sizeof(t), "%s", jws("HS256", NULL, "{}", NULL, secret, 31));
	jwk(key, sizeof(key), NULL, secret, 31, "");
	sig = strrchr(t, '.') + 1;
	n = ism_jwt_b64url_decode(sig, strlen(sig), raw);
	b64url(raw, (size_t)n - 1, sig);
	assert_int_equal(verify(t, set_of(key, NULL)), ISM_JWT_VERIFICATION_FAIL);
}

/* PSS with the salt of the digest's length (PyJWT's), of the most that fits
 * (OpenSSL's default), and of none. */
static void test_pss_salts(void **state)
{
	static const int salts[] = {RSA_PSS_SALTLEN_DIGEST, RSA_PSS_SALTLEN_MAX, 0};
	char key[2100];

	(void)state;
	jwk(key, sizeof(key), rsa, NULL, 0, "");
	for (size_t i = 0; i < N(salts); i++) {
		pss_salt = salts[i];
		assert_int_equal(verify(jws("PS256", NULL, "{}", rsa, NULL, 0), set_of(key, NULL)),
				 ISM_JWT_OK);
		assert_int_equal(verify(jws("PS512", NULL, "{}", rsa, NULL, 0), set_of(key, NULL)),
				 ISM_JWT_OK);
	}
	pss_salt = RSA_PSS_SALTLEN_DIGEST;
}

/* "h..p.s": Envoy skips the empty part and verifies "h.p". */
static void test_verify_split(void **state)
{
	char t[4096], u[4096], key[256];
	const char *dot;

	(void)state;
	PRINT(t, sizeof(t), "%s", jws("HS256", NULL, "{}", NULL, secret, 31));
	jwk(key, sizeof(key), NULL, secret, 31, "");
	dot = strchr(t, '.');
	PRINT(u, sizeof(u), "%.*s..%s", (int)(dot - t), t, dot + 1);
	assert_int_equal(verify(u, set_of(key, NULL)), ISM_JWT_OK);
}

/* --- key sets --- */

static enum ism_jwt_status jwks_status(const char *text, size_t *n, char *why, size_t cap)
{
	struct ism_jwks set;
	enum ism_jwt_status st = ism_jwks_parse(text, strlen(text), &set, why, cap);

	*n = set.n;
	if (st != ISM_JWT_OK)
		assert_true(set.n == 0 && set.keys == NULL);
	ism_jwks_free(&set);
	return st;
}

/* Each reason Envoy has to skip a key, the key alone in its set. */
static void test_jwks_skipped(void **state)
{
	static const struct {
		const char *key, *why;
	} cases[] = {
	    {"{}", "[kty] is missing in [keys]"},
	    {"{\"kty\":1}", "[kty] is bad in [keys]"},
	    {"{\"kty\":\"rsa\"}", "[kty] is not supported in [keys]"},
	    {"{\"kty\":\"RSA\",\"alg\":\"ES256\",\"n\":\"AQAB\",\"e\":\"AQAB\"}",
	     "[alg] is not started with [RS] or [PS] for an RSA key"},
	    {"{\"kty\":\"RSA\",\"alg\":\"R\"}",
	     "[alg] is not started with [RS] or [PS] for an RSA key"},
	    {"{\"kty\":\"RSA\",\"e\":\"AQAB\"}", "[n] field is missing for a RSA key"},
	    {"{\"kty\":\"RSA\",\"n\":1,\"e\":\"AQAB\"}", "[n] field is not string for a RSA key"},
	    {"{\"kty\":\"RSA\",\"n\":\"AQAB\"}", "[e] field is missing for a RSA key"},
	    {"{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":[]}", "[e] field is not string for a RSA key"},
	    {"{\"kty\":\"RSA\",\"n\":\"!\",\"e\":\"AQAB\"}",
	     "Jwks RSA [n] or [e] field is missing or has a parse error"},
	    {"{\"kty\":\"RSA\",\"n\":\"AQAB\",\"e\":\"AQAB\"}",
	     "Jwks RSA [n] or [e] field is missing or has a parse error"},
	    {"{\"kty\":\"EC\",\"alg\":\"RS256\"}", "[alg] is not started with [ES] for an EC key"},
	    {"{\"kty\":\"EC\",\"crv\":256}", "[crv] field is not string for an EC key"},
	    {"{\"kty\":\"EC\",\"alg\":\"ES256\",\"crv\":\"P-384\"}",
	     "[crv] field specified is not compatible with [alg] for an EC key"},
	    {"{\"kty\":\"EC\",\"alg\":\"ES512\",\"crv\":\"P-512\"}",
	     "[crv] field specified is not compatible with [alg] for an EC key"},
	    {"{\"kty\":\"EC\",\"crv\":\"secp256k1\"}",
	     "[crv] or [alg] field is not supported for an EC key"},
	    {"{\"kty\":\"EC\",\"alg\":\"ES256K\"}",
	     "[crv] or [alg] field is not supported for an EC key"},
	    {"{\"kty\":\"EC\",\"y\":\"AA\"}", "[x] field is missing for an EC key"},
	    {"{\"kty\":\"EC\",\"x\":1}", "[x] field is not string for an EC key"},
	    {"{\"kty\":\"EC\",\"x\":\"AA\"}", "[y] field is missing for an EC key"},
	    {"{\"kty\":\"EC\",\"x\":\"AA\",\"y\":false}", "[y] field is not string for an EC key"},
	    {"{\"kty\":\"EC\",\"x\":\"A\",\"y\":\"AA\"}",
	     "Jwks EC [x] or [y] field is an invalid Base64."},
	    {"{\"kty\":\"EC\",\"x\":\"AA\",\"y\":\"A+\"}",
	     "Jwks EC [x] or [y] field is an invalid Base64."},
	    {"{\"kty\":\"EC\",\"x\":\"AA\",\"y\":\"AA\"}",
	     "Jwks EC [x] and [y] fields have a parse error."},
	    {"{\"kty\":\"EC\",\"x\":\"\",\"y\":\"\"}",
	     "Jwks EC [x] and [y] fields have a parse error."},
	    {"{\"kty\":\"oct\",\"alg\":\"HS\",\"k\":\"AA\"}",
	     "[alg] does not start with [HS] for an HMAC key"},
	    {"{\"kty\":\"oct\",\"alg\":\"HS257\",\"k\":\"AA\"}",
	     "[alg] does not start with [HS] for an HMAC key"},
	    {"{\"kty\":\"oct\"}", "[k] field is missing for an HMAC key"},
	    {"{\"kty\":\"oct\",\"k\":{}}", "[k] field is not string for an HMAC key"},
	    {"{\"kty\":\"oct\",\"k\":\"\"}", "Jwks Oct key is an invalid Base64"},
	    {"{\"kty\":\"oct\",\"k\":\"  \"}", "Jwks Oct key is an invalid Base64"},
	    {"{\"kty\":\"oct\",\"k\":\"A/\"}", "Jwks Oct key is an invalid Base64"},
	    {"{\"kty\":\"OKP\",\"alg\":\"Ed25519\"}", "[alg] is not [EdDSA] for an OKP key"},
	    {"{\"kty\":\"OKP\"}", "[crv] field is missing for an OKP key"},
	    {"{\"kty\":\"OKP\",\"crv\":null}", "[crv] field is not string for an OKP key"},
	    {"{\"kty\":\"OKP\",\"crv\":\"X25519\"}", "[crv] field is not supported for an OKP key"},
	    {"{\"kty\":\"OKP\",\"crv\":\"Ed25519\"}", "[x] field is missing for an OKP key"},
	    {"{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":0}",
	     "[x] field is not string for an OKP key"},
	    {"{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"!\"}",
	     "Jwks OKP [x] field is an invalid Base64."},
	    {"{\"kty\":\"OKP\",\"crv\":\"Ed25519\",\"x\":\"AAAA\"}",
	     "Jwks OKP [x] field is wrong length."},
	};

	(void)state;
	for (size_t i = 0; i < N(cases); i++) {
		char want[200], why[200];
		size_t n;

		PRINT(want, sizeof(want), "keys[0]: %s", cases[i].why);
		CHECK(cases[i].key,
		      jwks_status(set_of(cases[i].key, NULL), &n, why, sizeof(why)) ==
			  ISM_JWT_JWKS_NO_VALID_KEYS,
		      "not refused");
		CHECK(cases[i].key, strcmp(why, want) == 0, "why: %s", why);
	}
}

/* Coordinates and moduli as BoringSSL reads them. */
static void test_jwks_numbers(void **state)
{
	char key[2100], *x, *e, odd[2100];
	unsigned char bin[600];
	ssize_t n;
	size_t count;

	(void)state;
	/* Leading zero bytes on x are fine; a coordinate past the field is
	 * not, nor a point off the curve. */
	jwk(key, sizeof(key), p256, NULL, 0, "");
	x = strstr(key, "\"x\":\"") + 5;
	n = ism_jwt_b64url_decode(x, (size_t)(strchr(x, '"') - x), bin + 2);
	assert_int_equal(n, 32);
	bin[0] = bin[1] = 0;
	b64url(bin, 34, odd);
	PRINT(odd + strlen(odd), sizeof(odd) - strlen(odd), "%s", strchr(x, '"'));
	memcpy(x, odd, strlen(odd) + 1);
	assert_int_equal(jwks_status(set_of(key, NULL), &count, NULL, 0), ISM_JWT_OK);
	x = strstr(key, "\"x\":\"") + 5;
	memcpy(x, "AQ", 2); /* 0x01 0x00 ...: 33 bytes that do not fit */
	assert_int_equal(jwks_status(set_of(key, NULL), &count, NULL, 0),
			 ISM_JWT_JWKS_NO_VALID_KEYS);
	jwk(key, sizeof(key), p256, NULL, 0, "");
	x = strstr(key, "\"y\":\"") + 5;
	*x = *x == 'A' ? 'B' : 'A';
	assert_int_equal(jwks_status(set_of(key, NULL), &count, NULL, 0),
			 ISM_JWT_JWKS_NO_VALID_KEYS);

	/* e: 65537 (with a leading zero byte too) and 3 only. */
	jwk(key, sizeof(key), rsa, NULL, 0, "");
	e = strstr(key, "\"e\":\"") + 5;
	assert_int_equal(jwks_status(set_of(key, NULL), &count, NULL, 0), ISM_JWT_OK);
	memcpy(e, "AAEAAQ\"}", 9);
	assert_int_equal(jwks_status(set_of(key, NULL), &count, NULL, 0), ISM_JWT_OK);
	memcpy(e, "Aw\"}", 5);
	assert_int_equal(jwks_status(set_of(key, NULL), &count, NULL, 0), ISM_JWT_OK);
	memcpy(e, "BQ\"}", 5);
	assert_int_equal(jwks_status(set_of(key, NULL), &count, NULL, 0),
			 ISM_JWT_JWKS_NO_VALID_KEYS);
	/* n: odd, and more than 33 bits (0x010000000001, 0x010000000000,
	 * 0x0100000001). */
	assert_int_equal(
	    jwks_status(set_of("{\"kty\":\"RSA\",\"n\":\"AQAAAAAB\",\"e\":\"Aw\"}", NULL), &count,
			NULL, 0),
	    ISM_JWT_OK);
	assert_int_equal(
	    jwks_status(set_of("{\"kty\":\"RSA\",\"n\":\"AQAAAAAA\",\"e\":\"Aw\"}", NULL), &count,
			NULL, 0),
	    ISM_JWT_JWKS_NO_VALID_KEYS);
	assert_int_equal(
	    jwks_status(set_of("{\"kty\":\"RSA\",\"n\":\"AQAAAAE\",\"e\":\"Aw\"}", NULL), &count,
			NULL, 0),
	    ISM_JWT_JWKS_NO_VALID_KEYS);
}

static void test_jwks_sets(void **state)
{
	struct ism_jwks set;
	char a[2100], b[2100], c[2100], text[7000], why[200];
	size_t n;

	(void)state;
	assert_int_equal(jwks_status("x", &n, why, sizeof(why)), ISM_JWT_JWKS_PARSE);
	assert_string_equal(why, "Jwks is an invalid JSON");
	assert_int_equal(jwks_status("[]", &n, why, sizeof(why)), ISM_JWT_JWKS_PARSE);
	assert_int_equal(jwks_status("{}", &n, why, sizeof(why)), ISM_JWT_JWKS_NO_KEYS);
	assert_string_equal(why, "Jwks does not have [keys] field");
	assert_int_equal(jwks_status("{\"key\":[]}", &n, why, sizeof(why)), ISM_JWT_JWKS_NO_KEYS);
	assert_int_equal(jwks_status("{\"keys\":{}}", &n, why, sizeof(why)), ISM_JWT_JWKS_BAD_KEYS);
	assert_string_equal(why, "[keys] in Jwks is not an array");
	assert_int_equal(jwks_status("{\"keys\":[]}", &n, why, sizeof(why)),
			 ISM_JWT_JWKS_NO_VALID_KEYS);
	assert_string_equal(why, "Jwks doesn't have any valid public key");
	assert_int_equal(jwks_status("{\"keys\":[1,\"x\",[]]}", &n, why, 8),
			 ISM_JWT_JWKS_NO_VALID_KEYS);
	assert_string_equal(why, "Jwks do");
	assert_int_equal(jwks_status("{\"keys\":[]}", &n, NULL, 0), ISM_JWT_JWKS_NO_VALID_KEYS);

	/* Every type; entries that are not objects passed over silently, bad
	 * keys skipped, the first named. */
	jwk(a, sizeof(a), rsa, NULL, 0, "\"kid\":\"r\",\"alg\":\"PS256\",");
	jwk(b, sizeof(b), p384, NULL, 0, "\"kid\":7,\"alg\":\"\",");
	jwk(c, sizeof(c), ed, NULL, 0, "");
	PRINT(text, sizeof(text),
	      "{\"keys\":[null,%s,{\"kty\":\"EC\"},%s,{\"kty\":\"x\"},%s,"
	      "{\"kty\":\"oct\",\"k\":\"c2VjcmV0\",\"alg\":\"HS512\"},"
	      "{\"kty\":\"EC\",\"alg\":\"ES512\",\"x\":\"\",\"y\":\"\"}],\"other\":1}",
	      a, b, c);
	assert_int_equal(ism_jwks_parse(text, strlen(text), &set, why, sizeof(why)), ISM_JWT_OK);
	assert_string_equal(why, "keys[2]: [x] field is missing for an EC key");
	assert_int_equal(set.n, 4);
	assert_int_equal(set.keys[0].kty, ISM_JWK_RSA);
	assert_string_equal(set.keys[0].kid, "r");
	assert_string_equal(set.keys[0].alg, "PS256");
	assert_int_equal(EVP_PKEY_get_bits(set.keys[0].pkey), 2048);
	assert_int_equal(set.keys[1].kty, ISM_JWK_EC);
	assert_null(set.keys[1].kid);
	assert_null(set.keys[1].alg);
	assert_int_equal(EVP_PKEY_get_bits(set.keys[1].pkey), 384);
	assert_int_equal(set.keys[2].kty, ISM_JWK_OKP);
	assert_int_equal(EVP_PKEY_get_base_id(set.keys[2].pkey), EVP_PKEY_ED25519);
	assert_int_equal(set.keys[3].kty, ISM_JWK_OCT);
	assert_int_equal(set.keys[3].k_len, 6);
	assert_memory_equal(set.keys[3].k, "secret", 6);
	assert_null(set.keys[3].pkey);
	ism_jwks_free(&set);
	assert_null(set.keys);

	/* The curve from crv alone, from alg alone, or P-256 from neither. */
	jwk(a, sizeof(a), p521, NULL, 0, "\"alg\":\"ES512\",");
	memcpy(strstr(a, "\"crv\""), "\"cr_\"", 5);
	assert_int_equal(
	    ism_jwks_parse(set_of(a, NULL), strlen(set_of(a, NULL)), &set, why, sizeof(why)),
	    ISM_JWT_OK);
	assert_int_equal(EVP_PKEY_get_bits(set.keys[0].pkey), 521);
	ism_jwks_free(&set);
	jwk(a, sizeof(a), p256, NULL, 0, "");
	memcpy(strstr(a, "\"crv\""), "\"cr_\"", 5);
	assert_int_equal(jwks_status(set_of(a, NULL), &n, why, sizeof(why)), ISM_JWT_OK);
	jwk(a, sizeof(a), p384, NULL, 0, "");
	memcpy(strstr(a, "\"crv\""), "\"cr_\"", 5);
	assert_int_equal(jwks_status(set_of(a, NULL), &n, why, sizeof(why)),
			 ISM_JWT_JWKS_NO_VALID_KEYS);
	assert_string_equal(why, "keys[0]: Jwks EC [x] and [y] fields have a parse error.");
}

/* Envoy's other form: {"kid": "PEM certificate", ...}, RSA keys only. */
static void test_jwks_x509(void **state)
{
	X509 *cert = X509_new();
	X509 *ec_cert;
	EVP_PKEY *ec_key;
	BIO *bio = BIO_new(BIO_s_mem());
	char *pem, esc[4000], text[8200], why[200];
	struct ism_jwks set;
	long len;

	(void)state;
	assert_non_null(cert);
	assert_non_null(bio);
	ASN1_INTEGER_set(X509_get_serialNumber(cert), 1);
	X509_gmtime_adj(X509_getm_notBefore(cert), 0);
	X509_gmtime_adj(X509_getm_notAfter(cert), 3600);
	X509_set_pubkey(cert, rsa);
	X509_set_issuer_name(cert, X509_get_subject_name(cert));
	assert_true(X509_sign(cert, rsa, EVP_sha256()) > 0);
	assert_true(PEM_write_bio_X509(bio, cert));
	len = BIO_get_mem_data(bio, &pem);
	ism_json_escape(esc, sizeof(esc), pem, (size_t)len);
	PRINT(text, sizeof(text), "{\"cert1\":\"%s\"}", esc);
	assert_int_equal(ism_jwks_parse(text, strlen(text), &set, why, sizeof(why)), ISM_JWT_OK);
	assert_int_equal(set.n, 1);
	assert_int_equal(set.keys[0].kty, ISM_JWK_RSA);
	assert_string_equal(set.keys[0].kid, "cert1");
	ism_jwks_free(&set);
	assert_int_equal(verify(jws("RS256", "cert1", "{}", rsa, NULL, 0), text), ISM_JWT_OK);

	/* Not all certificates: not this form. */
	PRINT(text, sizeof(text), "{\"cert1\":\"%s\",\"x\":1}", esc);
	assert_int_equal(ism_jwks_parse(text, strlen(text), &set, why, sizeof(why)),
			 ISM_JWT_JWKS_NO_KEYS);
	PRINT(text, sizeof(text), "{\"\":\"%s\"}", esc);
	assert_int_equal(ism_jwks_parse(text, strlen(text), &set, why, sizeof(why)),
			 ISM_JWT_JWKS_NO_KEYS);
	/* A certificate it cannot read, or of an EC key, fails the set. */
	PRINT(text, sizeof(text),
	      "{\"a\":\"%s\",\"b\":\"-----BEGIN CERTIFICATE-----\\nAAAA\\n"
	      "-----END CERTIFICATE-----\\n\"}",
	      esc);
	assert_int_equal(ism_jwks_parse(text, strlen(text), &set, why, sizeof(why)),
			 ISM_JWT_JWKS_NO_VALID_KEYS);
	assert_string_equal(why, "b: X509 parse pubkey fails");
	self_signed("ec", &ec_key, &ec_cert);
	(void)BIO_reset(bio);
	assert_true(PEM_write_bio_X509(bio, ec_cert));
	len = BIO_get_mem_data(bio, &pem);
	ism_json_escape(esc, sizeof(esc), pem, (size_t)len);
	PRINT(text, sizeof(text), "{\"ec\":\"%s\"}", esc);
	assert_int_equal(ism_jwks_parse(text, strlen(text), &set, why, sizeof(why)),
			 ISM_JWT_JWKS_NO_VALID_KEYS);
	assert_string_equal(why, "ec: X509 parse pubkey internal fails: get pubkey");
	X509_free(ec_cert);
	EVP_PKEY_free(ec_key);
	X509_free(cert);
	BIO_free(bio);
}

/* --- claims --- */

/* ism_json_escape: UTF-8 as it is, bytes that are not UTF-8 (a lone
 * continuation, an overlong form, a surrogate, past U+10FFFF, a sequence cut
 * short) and control characters escaped; a character never split at the cut. */
static void test_json_escape_utf8(void **state)
{
	static const struct {
		const char *in, *out;
	} cases[] = {
	    {"caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e",
	     "caf\xc3\xa9 \xe2\x82\xac \xf0\x9d\x84\x9e"},
	    {"\xe2\x80\xa8", "\xe2\x80\xa8"},
	    {"caf\xe9", "caf\\u00e9"},
	    {"\x80x", "\\u0080x"},
	    {"\xc0\xaf", "\\u00c0\\u00af"},
	    {"\xed\xa0\x80", "\\u00ed\\u00a0\\u0080"},
	    {"\xf4\x90\x80\x80", "\\u00f4\\u0090\\u0080\\u0080"},
	    {"a\xe2\x82", "a\\u00e2\\u0082"},
	    {"\"\\\n\x7f\x01", "\\\"\\\\\\u000a\\u007f\\u0001"},
	};
	char out[64];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		size_t n = ism_json_escape(out, sizeof(out), cases[i].in, strlen(cases[i].in));

		assert_string_equal(out, cases[i].out);
		assert_int_equal(n, strlen(cases[i].out));
	}
	/* Room for "ab" and a part of the euro sign only: it is left out whole. */
	assert_int_equal(ism_json_escape(out, 11, "ab\xe2\x82\xac", 5), 2);
	assert_string_equal(out, "ab");
}

static void test_claims(void **state)
{
	static const struct {
		const char *path, *text; /* text NULL: no claim */
	} cases[] = {
	    {"s", "str"},
	    {"a.b.c", "deep"},
	    {"a.b", "eyJjIjoiZGVlcCJ9"},
	    {"a.x", NULL},
	    {"a.b.c.d", NULL},
	    {"s.x", NULL},
	    {"a.", NULL},
	    {"", "empty name"},
	    {"n", "42"},
	    {"zero", "0"},
	    {"f", "1.500000"},
	    {"neg", "-3.000000"},
	    {"big", "100000000000000000000.000000"},
	    {"max", "18446744073709549568"},
	    {"tiny", "0.000000"},
	    {"t", "true"},
	    {"no", "false"},
	    {"z", ""},
	    {"e", ""},
	    {"l", "WzEsIngiLHt9XQ=="},
	    {"o", "eyJrIjoidiIsIm4iOm51bGx9"},
	    {"missing", NULL},
	};
	static const char payload[] =
	    "{\"a\":{\"b\":{\"c\":\"deep\"}},\"a.b\":\"literal\",\"s\":\"str\",\"\":\"empty name\","
	    "\"n\":42,\"zero\":-0,\"f\":1.5,\"neg\":-3,\"big\":1e20,\"max\":18446744073709549568,"
	    "\"tiny\":1e-9,\"t\":true,\"no\":false,\"z\":null,\"e\":\"\",\"l\":[1,\"x\",{}],"
	    "\"o\":{\"k\":\"v\",\"n\":null}}";
	const char *t = tok(HS, payload, "c2ln");
	struct ism_jwt jwt;
	char out[64];

	(void)state;
	assert_int_equal(ism_jwt_parse(t, strlen(t), &jwt), ISM_JWT_OK);
	for (size_t i = 0; i < N(cases); i++) {
		const struct ism_json *v = ism_jwt_claim(&jwt, cases[i].path);
		size_t n;

		if (cases[i].text == NULL) {
			CHECK(cases[i].path, v == NULL, "found");
			continue;
		}
		CHECK(cases[i].path, v != NULL, "not found");
		n = ism_jwt_claim_text(v, out, sizeof(out));
		CHECK(cases[i].path, strcmp(out, cases[i].text) == 0, "text %s", out);
		CHECK(cases[i].path, n == strlen(cases[i].text), "length %zu", n);
		/* Too long for out: nothing. */
		if (n > 0) {
			CHECK(cases[i].path, ism_jwt_claim_text(v, out, n) == 0 && out[0] == '\0',
			      "cut");
			CHECK(cases[i].path, ism_jwt_claim_text(v, out, n + 1) == n, "just fits");
		}
	}
	assert_int_equal(ism_jwt_claim_text(NULL, out, sizeof(out)), 0);
	assert_int_equal(ism_jwt_claim_text(ism_jwt_claim(&jwt, "s"), NULL, 0), 0);
	ism_jwt_free(&jwt);
}

/* --- tokens from elsewhere --- */

/* Made with Python's cryptography as PyJWT makes them (PSS's salt the
 * digest's length, ECDSA's r || s of 32 bytes each); exp 2100-01-01. */
static const char py_jwks[] =
    "{\"keys\":[{\"kty\":\"RSA\",\"kid\":\"r\",\"n\":\"tMa6PQMNAaDGK8Tx0hC_jL5wUPvT2uT8WK"
    "UMjrPYxtSL8BFMMUA1IkSicIaI3UUlZ48IHwTSTHRE8yfTshiD5JFe5PbqCNYSzRqNfNEKX6PxNbqZe0cnb4"
    "Cnri8RX4c8eEGBklUSu12IbXkt3rImJUmee3SgcZM54rifByAEZe2a_LtTl1jsvawV6_YmTJtedDcpoquj9K"
    "vL_Qm_ovj1eJh5EwcBT9XGEfetTKKlhatP1k47VP1OmFZ9FHkrtf7blWK11ZGpgkSIuaAEiDUo119K4_TXwq"
    "YR-BSbaNU8UqqaUpKMYxE2TBwtpARj9oQ-r93HVDPXmRlxnQrvwcA7tQ\",\"e\":\"AQAB\"},{\"kty\":"
    "\"EC\",\"kid\":\"e\",\"crv\":\"P-256\",\"x\":\"Gegctm37pdGvJ9ZC2Xx1PMNk_Y7qTQ976iUJL"
    "RO-Qfk\",\"y\":\"_b7YGmfsWNc9V_eSXbGRMuKVAswqvRY00weg-iBv6eI\"},{\"kty\":\"OKP\",\"k"
    "id\":\"d\",\"crv\":\"Ed25519\",\"x\":\"gqCxboUO-KyiXekvNfJJL8bRw3PL_dk6FzGNVf0e1RM\""
    "}]}";

static const char py_ps256[] =
    "eyJhbGciOiJQUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6InIifQ.eyJpc3MiOiJodHRwczovL2lzc3Vlci5le"
    "GFtcGxlIiwic3ViIjoiYWxpY2UiLCJhdWQiOiJhcGkiLCJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MTcwMDAwM"
    "DAwMH0.POlqCAXpYf5GXxvugCPtbKJDe2QiTCKhqV6ugob39txeVrSPhvkELew94QO3GoK4MO63wPGurdLqo"
    "QQ74Dip9soMXRb1PlR1BzqDtB04j2tZyXuZRxLRiEWYbKxDgnQrHTmuKnB7KWIEcg08g-YRKQkg1eDP0djsp"
    "cz8u9PJ-82gEgZLY3QrjUKcUt1ThGuxMIIuwUmK9yILB4_Wgvn79aqn7hZqOtbi7Wndmr5FoL4n3SCRfn-qA"
    "8nEVMqBl2sO02QgEVbMrRlltXnvARr0xyVMIPojewv0CZSQ4Nq6fLTQBpkIvZojtJQAQlHrUL_7izq9iOeZY"
    "ehsMegSbZaFtA";

static const char py_rs256[] =
    "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6InIifQ.eyJpc3MiOiJodHRwczovL2lzc3Vlci5le"
    "GFtcGxlIiwic3ViIjoiYWxpY2UiLCJhdWQiOiJhcGkiLCJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MTcwMDAwM"
    "DAwMH0.AhdFSfq-DQGK0fjrRw25xhJXigGqtXtKQrPaWzp0dYGrpnIqI699GJDBjkeCQfQbR2TFO5YLD_xEF"
    "SOGP_M4ulz_qq5CKLBfY4jWBr09fRo3DDAFMkUygMqLp5UQEPiXewUy3LNnnE4k6-WP56IEMxj0tU_YdHRl3"
    "bwKM1xbwCjZXzjcnKwoFsm_6mjT5kG9VeqsgVeaXXhG5dizpAxFDzEQEtt2ER83wGlHHnXOO_zCK3UQh3x2c"
    "d3syYZ1VohKe_ih105_oncp9-G1q8GeqGTgwS5d_V3Eji8OlAk-3ka6R9TD97v9DyUEmbAaNBrL60XZDFeQZ"
    "aDJBp057Sh6Qg";

static const char py_es256[] =
    "eyJhbGciOiJFUzI1NiIsInR5cCI6IkpXVCIsImtpZCI6ImUifQ.eyJpc3MiOiJodHRwczovL2lzc3Vlci5le"
    "GFtcGxlIiwic3ViIjoiYWxpY2UiLCJhdWQiOiJhcGkiLCJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MTcwMDAwM"
    "DAwMH0.J89uBVBhYGFS3fvDi6zsdwvGZLhlfsID1gnprQRv-oPAx5NgNuIjnp20rK0O87cFsBk_YLmV0t7Hq"
    "mqmyPAlgw";

static const char py_eddsa[] =
    "eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCIsImtpZCI6ImQifQ.eyJpc3MiOiJodHRwczovL2lzc3Vlci5le"
    "GFtcGxlIiwic3ViIjoiYWxpY2UiLCJhdWQiOiJhcGkiLCJleHAiOjQxMDI0NDQ4MDAsImlhdCI6MTcwMDAwM"
    "DAwMH0.xQLvcpNcTXVws-1UdoX7uTMwEjFqZbzx2Bxy5YrQa_KW9_ERCQJHaHxDmX-t23V2hjLxFVcJAsKjn"
    "F7Soy4zBg";

static void test_python_tokens(void **state)
{
	static const char *const tokens[] = {py_ps256, py_rs256, py_es256, py_eddsa};

	(void)state;
	for (size_t i = 0; i < N(tokens); i++) {
		struct ism_jwt jwt;
		struct ism_jwks set;
		static const char *const aud[] = {"api"};

		assert_int_equal(ism_jwks_parse(py_jwks, strlen(py_jwks), &set, NULL, 0),
				 ISM_JWT_OK);
		assert_int_equal(set.n, 3);
		assert_int_equal(ism_jwt_parse(tokens[i], strlen(tokens[i]), &jwt), ISM_JWT_OK);
		assert_int_equal(ism_jwt_verify(&jwt, &set), ISM_JWT_OK);
		assert_int_equal(ism_jwt_check_time(&jwt, 1700000000, ISM_JWT_CLOCK_SKEW),
				 ISM_JWT_OK);
		assert_int_equal(ism_jwt_check_time(&jwt, 4102444861, ISM_JWT_CLOCK_SKEW),
				 ISM_JWT_EXPIRED);
		assert_true(ism_jwt_audience_ok(&jwt, aud, 1));
		assert_string_equal(jwt.iss, "https://issuer.example");
		ism_jwt_free(&jwt);
		ism_jwks_free(&set);
	}
}

/* master/jwks.c's refresh schedule, istiod's: the refresh interval after a
 * refresh that went through, a minute after one that failed (never longer
 * than the interval), a reload keeping the time already due, and nothing
 * while the cache holds no key set. */
static void test_jwks_refresh_schedule(void **state)
{
	struct ism_jwks_cache *c = ism_jwks_cache_new(ISM_JWKS_REFRESH_MS);
	struct ism_jwks_cache *s = ism_jwks_cache_new(1000);

	(void)state;
	assert_non_null(c);
	assert_non_null(s);
	assert_int_equal(ism_jwks_next(c, 5000, 0, true, false), 0);
	assert_int_equal(ism_jwks_cache_seed(c, "https://issuer.example",
					     "https://issuer.example/jwks", "{\"keys\":[]}"),
			 0);
	assert_int_equal(ism_jwks_next(c, 5000, 0, true, false), 5000 + ISM_JWKS_REFRESH_MS);
	assert_int_equal(ism_jwks_next(c, 5000, 0, true, true), 5000 + ISM_JWKS_REFRESH_FAILED_MS);
	assert_int_equal(ism_jwks_next(c, 5000, 7000, false, false), 7000);
	assert_int_equal(ism_jwks_next(c, 5000, 0, false, false), 5000 + ISM_JWKS_REFRESH_MS);
	assert_int_equal(ism_jwks_cache_seed(s, "https://issuer.example", NULL, "{\"keys\":[]}"),
			 0);
	assert_int_equal(ism_jwks_next(s, 5000, 0, true, true), 6000);
	assert_int_equal(ism_jwks_next(s, 5000, 0, true, false), 6000);
	ism_jwks_cache_free(c);
	ism_jwks_cache_free(s);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_json_valid),
	    cmocka_unit_test(test_json_invalid),
	    cmocka_unit_test(test_json_prefixes),
	    cmocka_unit_test(test_json_decoded),
	    cmocka_unit_test(test_json_get),
	    cmocka_unit_test(test_json_depth),
	    cmocka_unit_test(test_json_write_cut),
	    cmocka_unit_test(test_b64url),
	    cmocka_unit_test(test_jwt_statuses),
	    cmocka_unit_test(test_jwt_fields),
	    cmocka_unit_test(test_jwt_prefixes),
	    cmocka_unit_test(test_status_text),
	    cmocka_unit_test(test_time),
	    cmocka_unit_test(test_audience),
	    cmocka_unit_test(test_verify_algs),
	    cmocka_unit_test(test_kid_alg),
	    cmocka_unit_test(test_sig_lengths),
	    cmocka_unit_test(test_pss_salts),
	    cmocka_unit_test(test_verify_split),
	    cmocka_unit_test(test_jwks_skipped),
	    cmocka_unit_test(test_jwks_numbers),
	    cmocka_unit_test(test_jwks_sets),
	    cmocka_unit_test(test_jwks_x509),
	    cmocka_unit_test(test_claims),
	    cmocka_unit_test(test_python_tokens),
	    cmocka_unit_test(test_json_escape_utf8),
	    cmocka_unit_test(test_jwks_refresh_schedule),
	};

	return cmocka_run_group_tests(tests, make_keys, free_keys);
}
