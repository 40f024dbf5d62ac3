/* SPDX-License-Identifier: Apache-2.0 */
/* JWT and JWKS as Envoy's jwt_verify_lib reads them. The checks, their order
 * and their statuses are Envoy's; where Envoy leaves a check to BoringSSL
 * (RSA_check_key, the curve point, the signature's length) the same check is
 * made here, so that OpenSSL accepts what BoringSSL accepts and no more. */
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include "lib/base64.h"
#include "lib/jose.h"

static const char *const status_text[ISM_JWT_N_STATUS] = {
    [ISM_JWT_OK] = "OK",
    [ISM_JWT_MISSED] = "Jwt is missing",
    [ISM_JWT_NOT_YET_VALID] = "Jwt not yet valid",
    [ISM_JWT_EXPIRED] = "Jwt is expired",
    [ISM_JWT_BAD_FORMAT] =
	"Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections",
    [ISM_JWT_HDR_BAD_BASE64] = "Jwt header is an invalid Base64url encoded",
    [ISM_JWT_HDR_BAD_JSON] = "Jwt header is an invalid JSON",
    [ISM_JWT_HDR_BAD_ALG] = "Jwt header [alg] field is required and must be a string",
    [ISM_JWT_HDR_ALG_NOT_IMPL] = "Jwt header [alg] is not supported",
    [ISM_JWT_HDR_BAD_KID] = "Jwt header [kid] field is not a string",
    [ISM_JWT_PL_BAD_BASE64] = "Jwt payload is an invalid Base64url encoded",
    [ISM_JWT_PL_BAD_JSON] = "Jwt payload is an invalid JSON",
    [ISM_JWT_ISS_NOT_STRING] = "Jwt payload [iss] field is not a string",
    [ISM_JWT_SUB_NOT_STRING] = "Jwt payload [sub] field is not a string",
    [ISM_JWT_IAT_NOT_INTEGER] = "Jwt payload [iat] field is not an integer",
    [ISM_JWT_IAT_OUT_OF_RANGE] = "Jwt payload [iat] field is not a positive 64 bit integer",
    [ISM_JWT_NBF_NOT_INTEGER] = "Jwt payload [nbf] field is not an integer",
    [ISM_JWT_NBF_OUT_OF_RANGE] = "Jwt payload [nbf] field is not a positive 64 bit integer",
    [ISM_JWT_EXP_NOT_INTEGER] = "Jwt payload [exp] field is not an integer",
    [ISM_JWT_EXP_OUT_OF_RANGE] = "Jwt payload [exp] field is not a positive 64 bit integer",
    [ISM_JWT_JTI_NOT_STRING] = "Jwt payload [jti] field is not a string",
    [ISM_JWT_AUD_NOT_STRING] = "Jwt payload [aud] field is not a string or string list",
    [ISM_JWT_SIG_BAD_BASE64] = "Jwt signature is an invalid Base64url encoded",
    [ISM_JWT_ED25519_SIG_LEN] = "Jwt ED25519 signature is wrong length",
    [ISM_JWT_UNKNOWN_ISSUER] = "Jwt issuer is not configured",
    [ISM_JWT_AUDIENCE_DENIED] = "Audiences in Jwt are not allowed",
    [ISM_JWT_VERIFICATION_FAIL] = "Jwt verification fails",
    [ISM_JWT_JWKS_PARSE] = "Jwks is an invalid JSON",
    [ISM_JWT_JWKS_NO_KEYS] = "Jwks does not have [keys] field",
    [ISM_JWT_JWKS_BAD_KEYS] = "[keys] in Jwks is not an array",
    [ISM_JWT_JWKS_NO_VALID_KEYS] = "Jwks doesn't have any valid public key",
    [ISM_JWT_JWKS_KID_ALG_MISMATCH] = "Jwks doesn't have key to match kid or alg from Jwt",
    [ISM_JWT_MULTIPLE_TOKENS] = "Found multiple Jwt tokens",
};

const char *ism_jwt_status_text(enum ism_jwt_status s)
{
	return (unsigned)s < ISM_JWT_N_STATUS ? status_text[s] : "";
}

/* --- base64url --- */

static int b64_space(char c)
{
	return c == ' ' || (c >= '\t' && c <= '\r');
}

ssize_t ism_jwt_b64url_decode(const char *s, size_t len, unsigned char *out)
{
	size_t i, n = 0, digits = 0, pads = 0, want = 0;
	uint32_t acc = 0;

	for (i = 0; i < len && s[i] != '=' && s[i] != '.'; i++) {
		int d = s[i] == '+' || s[i] == '/' ? -1 : ism_b64_digit(s[i]);

		if (d < 0 && b64_space(s[i]))
			continue;
		if (d < 0)
			return -1;
		acc = acc << 6 | (uint32_t)d;
		if (++digits % 4 == 0) {
			out[n++] = (unsigned char)(acc >> 16);
			out[n++] = (unsigned char)(acc >> 8);
			out[n++] = (unsigned char)acc;
		}
	}
	for (; i < len; i++) {
		if (s[i] == '=' || s[i] == '.')
			pads++;
		else if (!b64_space(s[i]))
			return -1;
	}
	/* absl does not check that the last digit's unused bits are zero. */
	switch (digits % 4) {
	case 1:
		return -1;
	case 2:
		out[n++] = (unsigned char)(acc >> 4);
		want = 2;
		break;
	case 3:
		out[n++] = (unsigned char)(acc >> 10);
		out[n++] = (unsigned char)(acc >> 2);
		want = 1;
		break;
	}
	return pads == 0 || pads == want ? (ssize_t)n : -1;
}

/* v's text decoded into a new buffer of *len bytes; NULL when it is not
 * base64url (or memory ran out). */
static unsigned char *b64_dup(const struct ism_json *v, size_t *len)
{
	unsigned char *b = malloc(v->n / 4 * 3 + 3);
	ssize_t n;

	if (b == NULL)
		return NULL;
	n = ism_jwt_b64url_decode(v->str, v->n, b);
	if (n < 0) {
		free(b);
		return NULL;
	}
	*len = (size_t)n;
	return b;
}

/* --- what Envoy's StructUtils finds --- */

enum { FOUND, MISSING, WRONG_TYPE, OUT_OF_RANGE };

static int find_string(const struct ism_json *o, const char *name, const struct ism_json **v)
{
	*v = ism_json_get(o, name);
	if (*v == NULL)
		return MISSING;
	return (*v)->type == ISM_JSON_STRING ? FOUND : WRONG_TYPE;
}

/* A string field a key must have: NULL, or Envoy's text for its absence or
 * its type (FIELD gives the usual pair). */
static const char *need(const struct ism_json *o, const struct ism_json **v, const char *name,
			const char *missing, const char *wrong)
{
	switch (find_string(o, name, v)) {
	case MISSING:
		return missing;
	case WRONG_TYPE:
		return wrong;
	}
	return NULL;
}

#define FIELD(f, key) f, "[" f "] field is missing for " key, "[" f "] field is not string for " key

/* Whether v is a string of exactly s's bytes. */
static bool is(const struct ism_json *v, const char *s)
{
	return v && v->type == ISM_JSON_STRING && v->n == strlen(s) && memcmp(v->str, s, v->n) == 0;
}

/* StructUtils::GetUInt64: a number, truncated, in [0, 2^64). */
static int find_u64(const struct ism_json *o, const char *name, uint64_t *out)
{
	const struct ism_json *v = ism_json_get(o, name);

	if (v == NULL)
		return MISSING;
	if (v->type != ISM_JSON_NUMBER)
		return WRONG_TYPE;
	if (v->num < 0 || v->num >= 18446744073709551616.0)
		return OUT_OF_RANGE;
	*out = (uint64_t)v->num;
	return FOUND;
}

/* --- JWT --- */

/* The token's parts as absl::StrSplit(jwt, '.', absl::SkipEmpty()) gives
 * them: exactly three, or -1. */
static int split(const char *t, size_t len, const char *part[3], size_t plen[3])
{
	size_t i = 0, n = 0;

	while (i < len) {
		const char *dot = memchr(t + i, '.', len - i);
		size_t e = dot ? (size_t)(dot - t) : len;

		if (e > i) {
			if (n == 3)
				return -1;
			part[n] = t + i;
			plen[n++] = e - i;
		}
		i = e + 1;
	}
	return n == 3 ? 0 : -1;
}

static enum ism_jwt_status parse_header(struct ism_jwt *jwt, const char *s, size_t len,
					unsigned char *buf)
{
	static const char *const algs[] = {"ES256", "ES384", "ES512", "HS256", "HS384",
					   "HS512", "RS256", "RS384", "RS512", "PS256",
					   "PS384", "PS512", "EdDSA"};
	const struct ism_json *root = &jwt->header.root, *alg, *kid;
	ssize_t n = ism_jwt_b64url_decode(s, len, buf);
	bool known = false;

	if (n < 0)
		return ISM_JWT_HDR_BAD_BASE64;
	if (ism_json_parse((const char *)buf, (size_t)n, &jwt->header) < 0 ||
	    root->type != ISM_JSON_OBJECT)
		return ISM_JWT_HDR_BAD_JSON;
	if (find_string(root, "alg", &alg) != FOUND)
		return ISM_JWT_HDR_BAD_ALG;
	for (size_t i = 0; i < sizeof(algs) / sizeof(algs[0]); i++)
		known |= is(alg, algs[i]);
	if (!known)
		return ISM_JWT_HDR_ALG_NOT_IMPL;
	if (find_string(root, "kid", &kid) == WRONG_TYPE)
		return ISM_JWT_HDR_BAD_KID;
	jwt->alg = alg->str;
	jwt->kid = kid && kid->n > 0 ? kid->str : NULL;
	return ISM_JWT_OK;
}

/* The payload's registered claims, in the order Envoy checks them. */
static enum ism_jwt_status parse_claims(struct ism_jwt *jwt)
{
	const struct ism_json *root = &jwt->payload.root, *v;
	int rc;

	if ((rc = find_string(root, "iss", &v)) == WRONG_TYPE)
		return ISM_JWT_ISS_NOT_STRING;
	jwt->iss = rc == FOUND ? v->str : NULL;
	jwt->iss_len = rc == FOUND ? v->n : 0;
	if ((rc = find_string(root, "sub", &v)) == WRONG_TYPE)
		return ISM_JWT_SUB_NOT_STRING;
	jwt->sub = rc == FOUND ? v->str : NULL;
	if ((rc = find_u64(root, "iat", &jwt->iat)) == WRONG_TYPE || rc == OUT_OF_RANGE)
		return rc == WRONG_TYPE ? ISM_JWT_IAT_NOT_INTEGER : ISM_JWT_IAT_OUT_OF_RANGE;
	if ((rc = find_u64(root, "nbf", &jwt->nbf)) == WRONG_TYPE || rc == OUT_OF_RANGE)
		return rc == WRONG_TYPE ? ISM_JWT_NBF_NOT_INTEGER : ISM_JWT_NBF_OUT_OF_RANGE;
	if ((rc = find_u64(root, "exp", &jwt->exp)) == WRONG_TYPE || rc == OUT_OF_RANGE)
		return rc == WRONG_TYPE ? ISM_JWT_EXP_NOT_INTEGER : ISM_JWT_EXP_OUT_OF_RANGE;
	if (find_string(root, "jti", &v) == WRONG_TYPE)
		return ISM_JWT_JTI_NOT_STRING;

	/* aud: a string, or a list of nothing but strings. */
	v = ism_json_get(root, "aud");
	if (v == NULL)
		return ISM_JWT_OK;
	if (v->type == ISM_JSON_STRING) {
		jwt->n_aud = 1;
	} else if (v->type == ISM_JSON_ARRAY) {
		for (uint32_t i = 0; i < v->n; i++)
			if (v->items[i].type != ISM_JSON_STRING)
				return ISM_JWT_AUD_NOT_STRING;
		jwt->n_aud = v->n;
	} else {
		return ISM_JWT_AUD_NOT_STRING;
	}
	if (jwt->n_aud == 0)
		return ISM_JWT_OK;
	jwt->aud = malloc(jwt->n_aud * (sizeof(*jwt->aud) + sizeof(*jwt->aud_len)));
	if (jwt->aud == NULL)
		return ISM_JWT_AUD_NOT_STRING;
	jwt->aud_len = (size_t *)(jwt->aud + jwt->n_aud);
	for (size_t i = 0; i < jwt->n_aud; i++) {
		const struct ism_json *a = v->type == ISM_JSON_STRING ? v : &v->items[i];

		jwt->aud[i] = a->str;
		jwt->aud_len[i] = a->n;
	}
	return ISM_JWT_OK;
}

static enum ism_jwt_status parse_payload(struct ism_jwt *jwt, const char *s, size_t len,
					 unsigned char *buf)
{
	ssize_t n = ism_jwt_b64url_decode(s, len, buf);

	if (n < 0)
		return ISM_JWT_PL_BAD_BASE64;
	if (ism_json_parse((const char *)buf, (size_t)n, &jwt->payload) < 0 ||
	    jwt->payload.root.type != ISM_JSON_OBJECT)
		return ISM_JWT_PL_BAD_JSON;
	jwt->payload_b64 = s;
	jwt->payload_b64_len = len;
	return parse_claims(jwt);
}

/* What the signature covers: Envoy joins the two parts with a dot, which is
 * the token's own text unless empty parts lay between them. */
static int set_signed(struct ism_jwt *jwt, const char *part[3], const size_t plen[3])
{
	jwt->signed_part = part[0];
	jwt->signed_len = plen[0] + 1 + plen[1];
	if (part[1] == part[0] + plen[0] + 1)
		return 0;
	jwt->signed_buf = malloc(jwt->signed_len);
	if (jwt->signed_buf == NULL)
		return -1;
	memcpy(jwt->signed_buf, part[0], plen[0]);
	jwt->signed_buf[plen[0]] = '.';
	memcpy(jwt->signed_buf + plen[0] + 1, part[1], plen[1]);
	jwt->signed_part = jwt->signed_buf;
	return 0;
}

enum ism_jwt_status ism_jwt_parse(const char *token, size_t len, struct ism_jwt *out)
{
	const char *part[3];
	size_t plen[3], most;
	unsigned char *buf;
	enum ism_jwt_status st;
	ssize_t n;

	memset(out, 0, sizeof(*out));
	if (split(token, len, part, plen) < 0)
		return ISM_JWT_BAD_FORMAT;
	/* One buffer decodes the header, then the payload, then keeps the
	 * signature: the JSON documents copy what they hold. */
	most = plen[0] > plen[1] ? plen[0] : plen[1];
	most = most > plen[2] ? most : plen[2];
	buf = malloc(most / 4 * 3 + 3);
	if (buf == NULL)
		return ISM_JWT_HDR_BAD_BASE64;
	st = parse_header(out, part[0], plen[0], buf);
	if (st == ISM_JWT_OK)
		st = parse_payload(out, part[1], plen[1], buf);
	if (st == ISM_JWT_OK) {
		n = ism_jwt_b64url_decode(part[2], plen[2], buf);
		if (n < 0) {
			st = ISM_JWT_SIG_BAD_BASE64;
		} else {
			out->sig = buf;
			out->sig_len = (size_t)n;
			buf = NULL;
		}
	}
	if (st == ISM_JWT_OK && set_signed(out, part, plen) < 0)
		st = ISM_JWT_BAD_FORMAT;
	free(buf);
	if (st != ISM_JWT_OK)
		ism_jwt_free(out);
	return st;
}

void ism_jwt_free(struct ism_jwt *jwt)
{
	ism_json_free(&jwt->header);
	ism_json_free(&jwt->payload);
	free(jwt->aud);
	free(jwt->sig);
	free(jwt->signed_buf);
	memset(jwt, 0, sizeof(*jwt));
}

static uint64_t add_sat(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

enum ism_jwt_status ism_jwt_check_time(const struct ism_jwt *jwt, uint64_t now, uint64_t skew)
{
	if (add_sat(now, skew) < jwt->nbf)
		return ISM_JWT_NOT_YET_VALID;
	if (jwt->exp && now > add_sat(jwt->exp, skew))
		return ISM_JWT_EXPIRED;
	return ISM_JWT_OK;
}

/* CheckAudience's sanitizeAudience: s (n bytes) without an http:// or
 * https:// prefix and without one trailing slash, as [*off, *off + *len). */
static void sanitize(const char *s, size_t n, size_t *off, size_t *len)
{
	size_t beg = 0;

	if (n == 0) {
		*off = *len = 0;
		return;
	}
	if (n >= 7 && strncmp(s, "http://", 7) == 0)
		beg = 7;
	else if (n >= 8 && strncmp(s, "https://", 8) == 0)
		beg = 8;
	if (s[n - 1] == '/')
		n--;
	*off = beg;
	*len = n > beg ? n - beg : 0;
}

bool ism_jwt_audience_ok(const struct ism_jwt *jwt, const char *const *want, size_t n)
{
	if (n == 0)
		return true;
	for (size_t i = 0; i < jwt->n_aud; i++) {
		size_t ao, al, wo, wl;

		sanitize(jwt->aud[i], jwt->aud_len[i], &ao, &al);
		for (size_t j = 0; j < n; j++) {
			sanitize(want[j], strlen(want[j]), &wo, &wl);
			if (al == wl && memcmp(jwt->aud[i] + ao, want[j] + wo, al) == 0)
				return true;
		}
	}
	return false;
}

/* --- JWKS --- */

/* An EVP_PKEY of type from the public parameters in bld (freed here). */
static EVP_PKEY *from_params(const char *type, OSSL_PARAM_BLD *bld)
{
	OSSL_PARAM *params = bld ? OSSL_PARAM_BLD_to_param(bld) : NULL;
	EVP_PKEY_CTX *ctx = EVP_PKEY_CTX_new_from_name(NULL, type, NULL);
	EVP_PKEY *pkey = NULL;

	if (params == NULL || ctx == NULL || EVP_PKEY_fromdata_init(ctx) <= 0 ||
	    EVP_PKEY_fromdata(ctx, &pkey, EVP_PKEY_PUBLIC_KEY, params) <= 0)
		pkey = NULL;
	EVP_PKEY_CTX_free(ctx);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	return pkey;
}

static BIGNUM *b64_bn(const struct ism_json *v)
{
	size_t len;
	unsigned char *b = b64_dup(v, &len);
	BIGNUM *bn = b ? BN_bin2bn(b, (int)len, NULL) : NULL;

	free(b);
	return bn;
}

/* KeyGetter::createRsaFromJwk: e 3 or 65537, and what BoringSSL's
 * RSA_check_key asks of a public key: n odd, of more than 33 and at most
 * 16384 bits. */
static EVP_PKEY *rsa_key(const struct ism_json *n, const struct ism_json *e)
{
	BIGNUM *bn_n = b64_bn(n), *bn_e = b64_bn(e);
	OSSL_PARAM_BLD *bld = NULL;
	EVP_PKEY *pkey = NULL;

	if (bn_n == NULL || bn_e == NULL || (!BN_is_word(bn_e, 3) && !BN_is_word(bn_e, 65537)) ||
	    !BN_is_odd(bn_n) || BN_num_bits(bn_n) <= 33 || BN_num_bits(bn_n) > 16384)
		goto out;
	bld = OSSL_PARAM_BLD_new();
	if (bld && OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, bn_n) &&
	    OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, bn_e))
		pkey = from_params("RSA", bld);
	else
		OSSL_PARAM_BLD_free(bld);
out:
	BN_free(bn_n);
	BN_free(bn_e);
	return pkey;
}

static const char *jwk_rsa(const struct ism_json *o, struct ism_jwk *k)
{
	const struct ism_json *n, *e;
	const char *bad;

	if (k->alg && strncmp(k->alg, "RS", 2) != 0 && strncmp(k->alg, "PS", 2) != 0)
		return "[alg] is not started with [RS] or [PS] for an RSA key";
	if ((bad = need(o, &n, FIELD("n", "a RSA key"))) != NULL)
		return bad;
	if ((bad = need(o, &e, FIELD("e", "a RSA key"))) != NULL)
		return bad;
	k->pkey = rsa_key(n, e);
	return k->pkey ? NULL : "Jwks RSA [n] or [e] field is missing or has a parse error";
}

struct curve {
	const char *alg, *crv, *group;
	size_t len; /* of a coordinate */
};

static const struct curve curves[] = {
    {"ES256", "P-256", "prime256v1", 32},
    {"ES384", "P-384", "secp384r1", 48},
    {"ES512", "P-521", "secp521r1", 66},
};
#define N_CURVES (sizeof(curves) / sizeof(curves[0]))

/* Copies the big-endian number in b (len bytes) into out, right-aligned in
 * width bytes; -1 when it does not fit, as BoringSSL refuses a coordinate
 * wider than the field. */
static int put_coord(unsigned char *out, size_t width, const unsigned char *b, size_t len)
{
	while (len > 0 && b[0] == 0)
		b++, len--;
	if (len > width)
		return -1;
	memset(out, 0, width - len);
	memcpy(out + width - len, b, len);
	return 0;
}

/* KeyGetter::createEcKeyFromJwkEC: x and y a point of the curve. */
static const char *ec_key(const struct curve *c, const struct ism_json *x, const struct ism_json *y,
			  EVP_PKEY **pkey)
{
	unsigned char pt[1 + 2 * 66], *bx, *by;
	size_t lx = 0, ly = 0;
	const char *why = NULL;
	OSSL_PARAM_BLD *bld;

	bx = b64_dup(x, &lx);
	by = b64_dup(y, &ly);
	if (bx == NULL || by == NULL) {
		why = "Jwks EC [x] or [y] field is an invalid Base64.";
		goto out;
	}
	why = "Jwks EC [x] and [y] fields have a parse error.";
	pt[0] = 4; /* uncompressed */
	if (put_coord(pt + 1, c->len, bx, lx) < 0 || put_coord(pt + 1 + c->len, c->len, by, ly) < 0)
		goto out;
	bld = OSSL_PARAM_BLD_new();
	if (bld == NULL ||
	    !OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, c->group, 0) ||
	    !OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, pt, 1 + 2 * c->len)) {
		OSSL_PARAM_BLD_free(bld);
		goto out;
	}
	/* OpenSSL refuses a point off the curve here, as BoringSSL's
	 * EC_KEY_set_public_key_affine_coordinates does. */
	*pkey = from_params("EC", bld);
	if (*pkey)
		why = NULL;
out:
	free(bx);
	free(by);
	return why;
}

static const char *jwk_ec(const struct ism_json *o, struct ism_jwk *k)
{
	const char *alg = k->alg ? k->alg : "";
	const struct ism_json *crv, *x, *y;
	const struct curve *c = NULL;
	const char *bad;
	bool no_crv;
	size_t i;

	if (alg[0] && strncmp(alg, "ES", 2) != 0)
		return "[alg] is not started with [ES] for an EC key";
	if (find_string(o, "crv", &crv) == WRONG_TYPE)
		return "[crv] field is not string for an EC key";
	no_crv = crv == NULL || crv->n == 0;
	if (alg[0] && !no_crv) {
		bool pair = false;

		for (i = 0; i < N_CURVES; i++)
			pair |= strcmp(alg, curves[i].alg) == 0 && is(crv, curves[i].crv);
		if (!pair)
			return "[crv] field specified is not compatible with [alg] for an EC key";
	}
	/* Neither: P-256. Else the first curve that the alg or crv names. */
	for (i = 0; i < N_CURVES && c == NULL; i++)
		if (strcmp(alg, curves[i].alg) == 0 || is(crv, curves[i].crv) ||
		    (!alg[0] && no_crv && i == 0))
			c = &curves[i];
	if (c == NULL)
		return "[crv] or [alg] field is not supported for an EC key";
	if ((bad = need(o, &x, FIELD("x", "an EC key"))) != NULL)
		return bad;
	if ((bad = need(o, &y, FIELD("y", "an EC key"))) != NULL)
		return bad;
	return ec_key(c, x, y, &k->pkey);
}

static const char *jwk_oct(const struct ism_json *o, struct ism_jwk *k)
{
	const struct ism_json *v;
	const char *bad;

	if (k->alg && strcmp(k->alg, "HS256") != 0 && strcmp(k->alg, "HS384") != 0 &&
	    strcmp(k->alg, "HS512") != 0)
		return "[alg] does not start with [HS] for an HMAC key";
	if ((bad = need(o, &v, FIELD("k", "an HMAC key"))) != NULL)
		return bad;
	k->k = b64_dup(v, &k->k_len);
	if (k->k == NULL || k->k_len == 0)
		return "Jwks Oct key is an invalid Base64";
	return NULL;
}

/* RFC 8037's OKP; Envoy takes Ed25519 only. */
static const char *jwk_okp(const struct ism_json *o, struct ism_jwk *k)
{
	const struct ism_json *v;
	const char *bad;
	unsigned char *x;
	size_t len = 0;

	if (k->alg && strcmp(k->alg, "EdDSA") != 0)
		return "[alg] is not [EdDSA] for an OKP key";
	if ((bad = need(o, &v, FIELD("crv", "an OKP key"))) != NULL)
		return bad;
	if (!is(v, "Ed25519"))
		return "[crv] field is not supported for an OKP key";
	if ((bad = need(o, &v, FIELD("x", "an OKP key"))) != NULL)
		return bad;
	x = b64_dup(v, &len);
	if (x == NULL)
		return "Jwks OKP [x] field is an invalid Base64.";
	if (len == 32)
		k->pkey = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, x, len);
	free(x);
	if (len != 32)
		return "Jwks OKP [x] field is wrong length.";
	return k->pkey ? NULL : "out of memory";
}

static void jwk_free(struct ism_jwk *k)
{
	free(k->kid);
	free(k->alg);
	EVP_PKEY_free(k->pkey);
	free(k->k);
	memset(k, 0, sizeof(*k));
}

/* extractJwk: NULL, or Envoy's text of why the key is skipped. */
static const char *jwk_extract(const struct ism_json *o, struct ism_jwk *k)
{
	const struct ism_json *kty, *v;
	const char *bad =
	    need(o, &kty, "kty", "[kty] is missing in [keys]", "[kty] is bad in [keys]");

	if (bad)
		return bad;
	/* kid and alg of another type are as good as absent. */
	if (find_string(o, "kid", &v) == FOUND && v->n > 0 && (k->kid = strdup(v->str)) == NULL)
		return "out of memory";
	if (find_string(o, "alg", &v) == FOUND && v->n > 0 && (k->alg = strdup(v->str)) == NULL)
		return "out of memory";
	if (is(kty, "EC"))
		return k->kty = ISM_JWK_EC, jwk_ec(o, k);
	if (is(kty, "RSA"))
		return k->kty = ISM_JWK_RSA, jwk_rsa(o, k);
	if (is(kty, "oct"))
		return k->kty = ISM_JWK_OCT, jwk_oct(o, k);
	if (is(kty, "OKP"))
		return k->kty = ISM_JWK_OKP, jwk_okp(o, k);
	return "[kty] is not supported in [keys]";
}

static const char x509_head[] = "-----BEGIN CERTIFICATE-----\n";
static const char x509_tail[] = "\n-----END CERTIFICATE-----\n";

/* shouldCheckX509: every member a non-empty kid naming a PEM certificate. */
static bool is_x509_set(const struct ism_json *root)
{
	const size_t hl = sizeof(x509_head) - 1, tl = sizeof(x509_tail) - 1;

	if (root->n == 0)
		return false;
	for (uint32_t i = 0; i < root->n; i++) {
		const struct ism_json *kid = &root->items[2 * i], *pem = kid + 1;

		if (kid->n == 0 || pem->type != ISM_JSON_STRING || pem->n < hl || pem->n < tl ||
		    memcmp(pem->str, x509_head, hl) != 0 ||
		    memcmp(pem->str + pem->n - tl, x509_tail, tl) != 0)
			return false;
	}
	return true;
}

/* createFromX509: the RSA key of each certificate; NULL, or Envoy's text. */
static const char *x509_key(const struct ism_json *kid, const struct ism_json *pem,
			    struct ism_jwk *k)
{
	BIO *bio = BIO_new_mem_buf(pem->str, (int)pem->n);
	X509 *cert = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	const char *why = NULL;

	k->kty = ISM_JWK_RSA;
	if (bio == NULL)
		why = "X509 parse pubkey internal fails: memory allocation";
	else if (cert == NULL)
		why = "X509 parse pubkey fails";
	else if ((k->pkey = X509_get_pubkey(cert)) == NULL ||
		 EVP_PKEY_get_base_id(k->pkey) != EVP_PKEY_RSA)
		why = "X509 parse pubkey internal fails: get pubkey";
	else if ((k->kid = strdup(kid->str)) == NULL)
		why = "out of memory";
	X509_free(cert);
	BIO_free(bio);
	return why;
}

__attribute__((format(printf, 3, 4))) static void say(char *why, size_t cap, const char *fmt, ...)
{
	va_list ap;

	if (why == NULL || cap == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(why, cap, fmt, ap);
	va_end(ap);
}

static enum ism_jwt_status from_x509(const struct ism_json *root, struct ism_jwks *out, char *why,
				     size_t cap)
{
	out->keys = calloc(root->n, sizeof(*out->keys));
	if (out->keys == NULL)
		return ISM_JWT_JWKS_NO_VALID_KEYS;
	for (uint32_t i = 0; i < root->n; i++) {
		const char *bad =
		    x509_key(&root->items[2 * i], &root->items[2 * i + 1], &out->keys[out->n]);

		if (bad) {
			say(why, cap, "%s: %s", root->items[2 * i].str, bad);
			jwk_free(&out->keys[out->n]);
			return ISM_JWT_JWKS_NO_VALID_KEYS;
		}
		out->n++;
	}
	return ISM_JWT_OK;
}

static enum ism_jwt_status from_keys(const struct ism_json *keys, struct ism_jwks *out, char *why,
				     size_t cap)
{
	bool skipped = false;

	out->keys = keys->n ? calloc(keys->n, sizeof(*out->keys)) : NULL;
	if (keys->n && out->keys == NULL)
		return ISM_JWT_JWKS_NO_VALID_KEYS;
	for (uint32_t i = 0; i < keys->n; i++) {
		const char *bad;

		/* Envoy passes over an entry that is not an object silently. */
		if (keys->items[i].type != ISM_JSON_OBJECT)
			continue;
		bad = jwk_extract(&keys->items[i], &out->keys[out->n]);
		if (bad == NULL) {
			out->n++;
			continue;
		}
		if (!skipped)
			say(why, cap, "keys[%u]: %s", i, bad);
		skipped = true;
		jwk_free(&out->keys[out->n]);
	}
	return out->n > 0 ? ISM_JWT_OK : ISM_JWT_JWKS_NO_VALID_KEYS;
}

enum ism_jwt_status ism_jwks_parse(const char *json, size_t len, struct ism_jwks *out, char *why,
				   size_t cap)
{
	struct ism_json_doc doc;
	const struct ism_json *keys;
	enum ism_jwt_status st;

	memset(out, 0, sizeof(*out));
	if (why && cap)
		why[0] = '\0';
	if (ism_json_parse(json, len, &doc) < 0 || doc.root.type != ISM_JSON_OBJECT)
		st = ISM_JWT_JWKS_PARSE;
	else if ((keys = ism_json_get(&doc.root, "keys")) == NULL)
		st = is_x509_set(&doc.root) ? from_x509(&doc.root, out, why, cap)
					    : ISM_JWT_JWKS_NO_KEYS;
	else if (keys->type != ISM_JSON_ARRAY)
		st = ISM_JWT_JWKS_BAD_KEYS;
	else
		st = from_keys(keys, out, why, cap);
	if (st != ISM_JWT_OK && why && cap && !why[0])
		say(why, cap, "%s", status_text[st]);
	if (st != ISM_JWT_OK)
		ism_jwks_free(out);
	ism_json_free(&doc);
	/* A refused key leaves OpenSSL's error queue filled, which the TLS
	 * code of the same thread would read as its own. */
	ERR_clear_error();
	return st;
}

void ism_jwks_free(struct ism_jwks *jwks)
{
	for (size_t i = 0; i < jwks->n; i++)
		jwk_free(&jwks->keys[i]);
	free(jwks->keys);
	memset(jwks, 0, sizeof(*jwks));
}

/* --- verification --- */

/* The digest Envoy picks for alg on a key of the family whose algs start with
 * one of the prefixes: SHA-384 or SHA-512 for the family's 384 and 512, else
 * SHA-256 (whatever the alg). */
static const EVP_MD *digest(const char *alg, const char *pfx1, const char *pfx2)
{
	bool ours = strncmp(alg, pfx1, 2) == 0 || (pfx2 && strncmp(alg, pfx2, 2) == 0);

	if (ours && strcmp(alg + 2, "384") == 0)
		return EVP_sha384();
	if (ours && strcmp(alg + 2, "512") == 0)
		return EVP_sha512();
	return EVP_sha256();
}

static bool verify_sig(EVP_PKEY *pkey, const EVP_MD *md, bool pss, const unsigned char *sig,
		       size_t sig_len, const struct ism_jwt *jwt)
{
	EVP_MD_CTX *ctx = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pctx = NULL;
	bool ok;

	/* PSS: MGF1 with the same hash, the salt length read from the
	 * signature, as BoringSSL verifies by default (PyJWT's salt is the
	 * digest's length, OpenSSL's own signers' the most that fits). */
	ok = ctx && EVP_DigestVerifyInit(ctx, &pctx, md, NULL, pkey) == 1 &&
	     (!pss || (EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
		       EVP_PKEY_CTX_set_rsa_mgf1_md(pctx, md) == 1 &&
		       EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_AUTO) == 1)) &&
	     EVP_DigestVerify(ctx, sig, sig_len, (const unsigned char *)jwt->signed_part,
			      jwt->signed_len) == 1;
	EVP_MD_CTX_free(ctx);
	return ok;
}

/* verifySignatureEC: the signature's first half r, its second s (Envoy
 * checks no length: an odd last byte is not read), as DER for OpenSSL. */
static bool verify_ec(EVP_PKEY *pkey, const EVP_MD *md, const struct ism_jwt *jwt)
{
	size_t half = jwt->sig_len / 2;
	ECDSA_SIG *es = ECDSA_SIG_new();
	BIGNUM *r = BN_bin2bn(jwt->sig, (int)half, NULL);
	BIGNUM *s = BN_bin2bn(jwt->sig + half, (int)half, NULL);
	unsigned char *der = NULL;
	bool ok = false;
	int len;

	if (half <= INT_MAX && es && r && s && ECDSA_SIG_set0(es, r, s) == 1) {
		r = s = NULL;
		len = i2d_ECDSA_SIG(es, &der);
		ok = len > 0 && verify_sig(pkey, md, false, der, (size_t)len, jwt);
	}
	OPENSSL_free(der);
	ECDSA_SIG_free(es);
	BN_free(r);
	BN_free(s);
	return ok;
}

static bool verify_rsa(EVP_PKEY *pkey, const struct ism_jwt *jwt)
{
	const EVP_MD *md = digest(jwt->alg, "RS", "PS");
	bool pss = strncmp(jwt->alg, "PS", 2) == 0;

	if (!pss && strncmp(jwt->alg, "RS", 2) != 0)
		return false;
	/* BoringSSL takes a signature of the modulus' length only; OpenSSL
	 * would take one with its leading zeros left out. */
	if (jwt->sig_len != (size_t)EVP_PKEY_get_size(pkey))
		return false;
	return verify_sig(pkey, md, pss, jwt->sig, jwt->sig_len, jwt);
}

static bool verify_hmac(const struct ism_jwk *k, const struct ism_jwt *jwt)
{
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int len = 0;

	if (HMAC(digest(jwt->alg, "HS", NULL), k->k, (int)k->k_len,
		 (const unsigned char *)jwt->signed_part, jwt->signed_len, mac, &len) == NULL)
		return false;
	return len == jwt->sig_len && CRYPTO_memcmp(mac, jwt->sig, len) == 0;
}

enum ism_jwt_status ism_jwt_verify(const struct ism_jwt *jwt, const struct ism_jwks *jwks)
{
	enum ism_jwt_status st = ISM_JWT_JWKS_KID_ALG_MISMATCH;

	for (size_t i = 0; i < jwks->n; i++) {
		const struct ism_jwk *k = &jwks->keys[i];
		bool ok = false;

		if (jwt->kid && k->kid && strcmp(k->kid, jwt->kid) != 0)
			continue;
		if (k->alg && strcmp(k->alg, jwt->alg) != 0)
			continue;
		st = ISM_JWT_VERIFICATION_FAIL;
		switch (k->kty) {
		case ISM_JWK_EC:
			ok = verify_ec(k->pkey, digest(jwt->alg, "ES", NULL), jwt);
			break;
		case ISM_JWK_RSA:
			ok = verify_rsa(k->pkey, jwt);
			break;
		case ISM_JWK_OCT:
			ok = verify_hmac(k, jwt);
			break;
		case ISM_JWK_OKP:
			/* A wrong length ends the search; a wrong signature
			 * lets the next key try. */
			if (jwt->sig_len != 64) {
				st = ISM_JWT_ED25519_SIG_LEN;
				goto out;
			}
			ok = verify_sig(k->pkey, NULL, false, jwt->sig, jwt->sig_len, jwt);
			break;
		}
		if (ok) {
			st = ISM_JWT_OK;
			goto out;
		}
	}
out:
	ERR_clear_error();
	return st;
}

/* --- claims --- */

const struct ism_json *ism_jwt_claim(const struct ism_jwt *jwt, const char *path)
{
	const struct ism_json *v = &jwt->payload.root;

	for (;;) {
		const char *dot = strchr(path, '.');
		size_t len = dot ? (size_t)(dot - path) : strlen(path);

		v = ism_json_get_n(v, path, len);
		if (v == NULL || dot == NULL)
			return v;
		path = dot + 1;
	}
}

/* An object or a list: the standard base64 of its compact JSON. */
static size_t claim_b64(const struct ism_json *v, char *out, size_t cap)
{
	size_t len = ism_json_write(v, NULL, 0), b64 = (len + 2) / 3 * 4;
	char *json;

	if (b64 >= cap || (json = malloc(len + 1)) == NULL)
		return 0;
	ism_json_write(v, json, len + 1);
	ism_b64_encode((const unsigned char *)json, len, out);
	out[b64] = '\0';
	free(json);
	return b64;
}

size_t ism_jwt_claim_text(const struct ism_json *v, char *out, size_t cap)
{
	double whole;
	int n;

	if (cap == 0 || v == NULL)
		return 0;
	out[0] = '\0';
	switch (v->type) {
	case ISM_JSON_STRING:
		if (v->n >= cap)
			return 0;
		memcpy(out, v->str, v->n + 1);
		return v->n;
	case ISM_JSON_NUMBER:
		/* convertClaimDoubleToString: std::to_string, which is %f for
		 * a double, unless it is a whole uint64_t. */
		if (v->num < 0 || v->num >= 18446744073709551616.0 || modf(v->num, &whole) != 0)
			n = snprintf(out, cap, "%f", v->num);
		else
			n = snprintf(out, cap, "%" PRIu64, (uint64_t)v->num);
		break;
	case ISM_JSON_TRUE:
	case ISM_JSON_FALSE:
		n = snprintf(out, cap, "%s", v->type == ISM_JSON_TRUE ? "true" : "false");
		break;
	case ISM_JSON_ARRAY:
	case ISM_JSON_OBJECT:
		return claim_b64(v, out, cap);
	default:
		return 0;
	}
	if (n < 0 || (size_t)n >= cap) {
		out[0] = '\0';
		return 0;
	}
	return (size_t)n;
}
