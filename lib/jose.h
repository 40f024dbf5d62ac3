/* SPDX-License-Identifier: Apache-2.0 */
/* JSON Web Tokens and Key Sets as Envoy's jwt_authn filter reads them (its
 * jwt_verify_lib: source/common/jwt/{jwt,jwks,verify,status}.cc): a token
 * parsed, its time checked, its signature verified against a JWKS; the
 * statuses and their texts are Envoy's, as they reach the client in a 401.
 * JSON is parsed by lib/json.h's reader. Used by the master (a
 * RequestAuthentication's jwks checked at load) and the workers (tokens of
 * requests, untrusted: every length and depth is bounded). */
#ifndef ISM_LIB_JOSE_H
#define ISM_LIB_JOSE_H

#include <openssl/evp.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "lib/json.h"

/* Envoy's jwt_verify_lib Status, the ones a token or a JWKS can come to. */
enum ism_jwt_status {
	ISM_JWT_OK = 0,
	ISM_JWT_MISSED,		    /* "Jwt is missing" */
	ISM_JWT_NOT_YET_VALID,	    /* "Jwt not yet valid" */
	ISM_JWT_EXPIRED,	    /* "Jwt is expired" */
	ISM_JWT_BAD_FORMAT,	    /* "Jwt is not in the form of Header.Payload.Signature with two
				       dots and 3 sections" */
	ISM_JWT_HDR_BAD_BASE64,	    /* "Jwt header is an invalid Base64url encoded" */
	ISM_JWT_HDR_BAD_JSON,	    /* "Jwt header is an invalid JSON" */
	ISM_JWT_HDR_BAD_ALG,	    /* "Jwt header [alg] field is required and must be a string" */
	ISM_JWT_HDR_ALG_NOT_IMPL,   /* "Jwt header [alg] is not supported" */
	ISM_JWT_HDR_BAD_KID,	    /* "Jwt header [kid] field is not a string" */
	ISM_JWT_PL_BAD_BASE64,	    /* "Jwt payload is an invalid Base64url encoded" */
	ISM_JWT_PL_BAD_JSON,	    /* "Jwt payload is an invalid JSON" */
	ISM_JWT_ISS_NOT_STRING,	    /* "Jwt payload [iss] field is not a string" */
	ISM_JWT_SUB_NOT_STRING,	    /* "Jwt payload [sub] field is not a string" */
	ISM_JWT_IAT_NOT_INTEGER,    /* "Jwt payload [iat] field is not an integer" */
	ISM_JWT_IAT_OUT_OF_RANGE,   /* "Jwt payload [iat] field is not a positive 64 bit integer" */
	ISM_JWT_NBF_NOT_INTEGER,    /* likewise [nbf] */
	ISM_JWT_NBF_OUT_OF_RANGE,   /* */
	ISM_JWT_EXP_NOT_INTEGER,    /* likewise [exp] */
	ISM_JWT_EXP_OUT_OF_RANGE,   /* */
	ISM_JWT_JTI_NOT_STRING,	    /* "Jwt payload [jti] field is not a string" */
	ISM_JWT_AUD_NOT_STRING,	    /* "Jwt payload [aud] field is not a string or string list" */
	ISM_JWT_SIG_BAD_BASE64,	    /* "Jwt signature is an invalid Base64url encoded" */
	ISM_JWT_ED25519_SIG_LEN,    /* "Jwt ED25519 signature is wrong length" */
	ISM_JWT_UNKNOWN_ISSUER,	    /* "Jwt issuer is not configured" */
	ISM_JWT_AUDIENCE_DENIED,    /* "Audiences in Jwt are not allowed" */
	ISM_JWT_VERIFICATION_FAIL,  /* "Jwt verification fails" */
	ISM_JWT_JWKS_PARSE,	    /* "Jwks is an invalid JSON" */
	ISM_JWT_JWKS_NO_KEYS,	    /* "Jwks does not have [keys] field" */
	ISM_JWT_JWKS_BAD_KEYS,	    /* "[keys] in Jwks is not an array" */
	ISM_JWT_JWKS_NO_VALID_KEYS, /* "Jwks doesn't have any valid public key" */
	ISM_JWT_JWKS_KID_ALG_MISMATCH, /* "Jwks doesn't have key to match kid or alg from Jwt" */
	ISM_JWT_MULTIPLE_TOKENS,       /* "Found multiple Jwt tokens" (more than a check reads) */
	ISM_JWT_N_STATUS
};

/* Envoy's text of a status ("Jwt verification fails"). */
const char *ism_jwt_status_text(enum ism_jwt_status s);

/* Decodes s (len bytes) as absl::WebSafeBase64Unescape, which Envoy reads
 * every base64url field with: the URL-safe alphabet, ASCII whitespace
 * anywhere, padding ('=' or '.') absent or complete. Into out (room for
 * len / 4 * 3 + 3 bytes); the decoded length, or -1. */
ssize_t ism_jwt_b64url_decode(const char *s, size_t len, unsigned char *out);

/* Envoy's default clock skew for exp and nbf, in seconds. */
#define ISM_JWT_CLOCK_SKEW 60

/* --- JWKS --- */

enum ism_jwk_kty { ISM_JWK_RSA, ISM_JWK_EC, ISM_JWK_OCT, ISM_JWK_OKP };

/* One usable key of a set. */
struct ism_jwk {
	uint8_t kty;	  /* enum ism_jwk_kty */
	char *kid;	  /* NULL: none or empty (Envoy tests emptiness) */
	char *alg;	  /* NULL: none or empty: any alg of its type */
	EVP_PKEY *pkey;	  /* RSA, EC (P-256/384/521), OKP (Ed25519) */
	unsigned char *k; /* oct: the HMAC key */
	size_t k_len;
};

struct ism_jwks {
	size_t n;
	struct ism_jwk *keys;
};

/* Parses a JSON Web Key Set as Envoy's Jwks::createFrom(JWKS) does: keys that
 * are not usable are skipped (Envoy's per-key statuses), and a set left with
 * none is ISM_JWT_JWKS_NO_VALID_KEYS. On an error, why (cap bytes, may be
 * NULL) says what was wrong and where ("keys[1]: [n] field is missing for a
 * RSA key": the first key skipped), *out is empty; on success why names the
 * first key skipped, or is empty. Envoy's other form, an object of kid to
 * PEM certificate, gives RSA keys; a certificate it cannot read fails the
 * set (ISM_JWT_JWKS_NO_VALID_KEYS, Envoy's X509 status in why). A kid or
 * alg holding a NUL byte is cut there. Leaves OpenSSL's error queue empty. */
enum ism_jwt_status ism_jwks_parse(const char *json, size_t len, struct ism_jwks *out, char *why,
				   size_t cap);
void ism_jwks_free(struct ism_jwks *jwks);

/* --- JWT --- */

/* A parsed token. Pointers are into the token given to ism_jwt_parse (the
 * base64url parts) or into the decoded JSON documents the struct owns. */
struct ism_jwt {
	struct ism_json_doc header, payload;
	const char *alg, *kid;	/* kid NULL: none or empty */
	const char *iss, *sub;	/* NULL: none; NUL-terminated */
	size_t iss_len;		/* iss's bytes, a NUL it holds among them */
	uint64_t iat, nbf, exp; /* 0: absent */
	size_t n_aud;
	const char **aud; /* the audiences (a string is a list of one) */
	size_t *aud_len;  /* their bytes, a NUL one holds among them */
	/* "header.payload": what the signature covers; in the token, or in
	 * signed_buf when empty parts lay between them ("h..p.s", which
	 * Envoy reads as "h.p.s") */
	const char *signed_part;
	size_t signed_len;
	char *signed_buf;
	const char *payload_b64; /* the payload part, base64url as sent */
	size_t payload_b64_len;
	unsigned char *sig;
	size_t sig_len;
};

/* Parses token (len bytes) as Envoy's Jwt::parseFromString: three non-empty
 * dot-separated parts (empty ones skipped, as absl::SkipEmpty does),
 * base64url header and payload that are JSON objects, alg one Envoy
 * implements (ES256/384/512, HS256/384/512, RS256/384/512, PS256/384/512,
 * EdDSA), the registered claims' types. On an error *out is freed (running
 * out of memory reads as the failure of the step that needed it). The token
 * must outlive *out. A kid holding a NUL byte is cut there; an audience and the
 * issuer are all their bytes (aud_len, iss_len), as Envoy compares strings. */
enum ism_jwt_status ism_jwt_parse(const char *token, size_t len, struct ism_jwt *out);
void ism_jwt_free(struct ism_jwt *jwt);

/* exp and nbf at now (Unix seconds) with skew seconds either way. */
enum ism_jwt_status ism_jwt_check_time(const struct ism_jwt *jwt, uint64_t now, uint64_t skew);

/* Whether one of the token's audiences is among want (n of them); n 0: any
 * token is (Envoy's CheckAudience: a configured audience "https://x/" and a
 * token's "x" match, the scheme and a trailing slash aside). */
bool ism_jwt_audience_ok(const struct ism_jwt *jwt, const char *const *want, size_t n);

/* Verifies the signature with the keys of jwks as Envoy's
 * verifyJwtWithoutTimeChecking: a key whose kid (when both have one) or alg
 * (when the key has one) differs is skipped; ISM_JWT_JWKS_KID_ALG_MISMATCH
 * when none was tried, ISM_JWT_VERIFICATION_FAIL when none verified, and
 * ISM_JWT_ED25519_SIG_LEN as soon as an Ed25519 key meets a signature that
 * is not 64 bytes long. Leaves OpenSSL's error queue empty. */
enum ism_jwt_status ism_jwt_verify(const struct ism_jwt *jwt, const struct ism_jwks *jwks);

/* The payload's claim at path: a name, or names joined with '.' for nested
 * objects (Envoy's StructUtils::GetValue); NULL: none. */
const struct ism_json *ism_jwt_claim(const struct ism_jwt *jwt, const char *path);

/* A claim's value as Envoy's claim_to_headers writes it into out (NUL-
 * terminated, cap bytes): a string as it is, a number as an integer when it
 * is a non-negative whole one below 2^64 else as C's "%f", a boolean as
 * "true"/"false", an object or a list as the standard base64 of its compact
 * JSON. Returns the length, 0 when nothing is written (null, or too long). */
size_t ism_jwt_claim_text(const struct ism_json *v, char *out, size_t cap);

#endif
