/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer harness for lib/json.c's reader and lib/jose.c. The input is read
 * as a JSON document, as a token, as a key set, and, split at its first
 * newline, as a token and the key set to verify it with. Besides memory
 * safety (ASan, UBSan) it checks the contracts: a refused document leaves
 * nothing behind; what the writer writes reads back and writes the same; a
 * token's claims look up and write as text; a key set that parses has keys;
 * verification ends in one of the statuses it may give. */
#include <stdlib.h>
#include <string.h>

#include "lib/jose.h"
#include "lib/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void json(const char *s, size_t size)
{
	struct ism_json_doc doc, again;
	size_t len, len2;
	char *out, *out2;

	if (ism_json_parse(s, size, &doc) < 0) {
		if (doc.mem != NULL || doc.root.type != ISM_JSON_NULL)
			abort();
		return;
	}
	len = ism_json_write(&doc.root, NULL, 0);
	out = malloc(len + 1);
	out2 = malloc(len + 1);
	if (out == NULL || out2 == NULL)
		abort();
	if (ism_json_write(&doc.root, out, len + 1) != len || strlen(out) > len)
		abort();
	if (ism_json_parse(out, len, &again) < 0)
		abort();
	len2 = ism_json_write(&again.root, out2, len + 1);
	if (len2 != len || memcmp(out, out2, len) != 0)
		abort();
	ism_json_free(&again);
	ism_json_free(&doc);
	free(out);
	free(out2);
}

static void claims(const struct ism_jwt *jwt)
{
	static const char *const want[] = {"https://api.example.com/", "x", ""};
	const struct ism_json *root = &jwt->payload.root;
	char text[512];

	if (root->type != ISM_JSON_OBJECT)
		abort();
	for (uint32_t i = 0; i < root->n; i++) {
		const struct ism_json *v = ism_jwt_claim(jwt, root->items[2 * i].str);
		size_t n = ism_jwt_claim_text(&root->items[2 * i + 1], text, sizeof(text));

		if (n >= sizeof(text) || strlen(text) > n)
			abort();
		if (v != NULL && v->type == ISM_JSON_OBJECT)
			ism_jwt_claim_text(ism_jwt_claim(jwt, "a.b"), text, sizeof(text));
	}
	ism_jwt_check_time(jwt, 1700000000, ISM_JWT_CLOCK_SKEW);
	ism_jwt_audience_ok(jwt, want, 3);
}

static void token(const char *s, size_t size)
{
	struct ism_jwt jwt;
	enum ism_jwt_status st = ism_jwt_parse(s, size, &jwt);

	if (ism_jwt_status_text(st)[0] == '\0')
		abort();
	if (st != ISM_JWT_OK) {
		if (jwt.header.mem != NULL || jwt.payload.mem != NULL || jwt.sig != NULL)
			abort();
		return;
	}
	if (jwt.alg == NULL || jwt.signed_len > size)
		abort();
	claims(&jwt);
	ism_jwt_free(&jwt);
}

static void key_set(const char *s, size_t size)
{
	struct ism_jwks set;
	char why[160];
	enum ism_jwt_status st = ism_jwks_parse(s, size, &set, why, sizeof(why));

	if ((st == ISM_JWT_OK) != (set.n > 0) || (st != ISM_JWT_OK && !why[0]))
		abort();
	ism_jwks_free(&set);
}

static void verify(const char *s, size_t size)
{
	const char *nl = memchr(s, '\n', size);
	struct ism_jwks set;
	struct ism_jwt jwt;
	enum ism_jwt_status st;

	if (nl == NULL)
		return;
	if (ism_jwks_parse(nl + 1, size - (size_t)(nl + 1 - s), &set, NULL, 0) != ISM_JWT_OK)
		return;
	if (ism_jwt_parse(s, (size_t)(nl - s), &jwt) == ISM_JWT_OK) {
		st = ism_jwt_verify(&jwt, &set);
		if (st != ISM_JWT_OK && st != ISM_JWT_VERIFICATION_FAIL &&
		    st != ISM_JWT_JWKS_KID_ALG_MISMATCH && st != ISM_JWT_ED25519_SIG_LEN)
			abort();
		ism_jwt_free(&jwt);
	}
	ism_jwks_free(&set);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A copy of exactly the input's size, so that a read past it shows. */
	char *s = malloc(size ? size : 1);

	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	json(s, size);
	token(s, size);
	key_set(s, size);
	verify(s, size);
	free(s);
	return 0;
}
