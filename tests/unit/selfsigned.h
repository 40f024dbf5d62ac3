/* SPDX-License-Identifier: Apache-2.0 */
/* What the cmocka unit tests that speak TLS share: a self-signed P-256
 * certificate made in memory. Include it after <cmocka.h>. */
#ifndef ISM_TESTS_UNIT_SELFSIGNED_H
#define ISM_TESTS_UNIT_SELFSIGNED_H

#include <openssl/evp.h>
#include <openssl/x509.h>

/* A key and a certificate with CN=name, valid for an hour, into *pk, *x. */
static inline void self_signed(const char *name, EVP_PKEY **pk, X509 **x)
{
	*pk = EVP_EC_gen("P-256");
	*x = X509_new();
	assert_non_null(*pk);
	assert_non_null(*x);
	ASN1_INTEGER_set(X509_get_serialNumber(*x), 1);
	X509_gmtime_adj(X509_getm_notBefore(*x), 0);
	X509_gmtime_adj(X509_getm_notAfter(*x), 3600);
	X509_set_pubkey(*x, *pk);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(*x), "CN", MBSTRING_ASC,
				   (const unsigned char *)name, -1, -1, 0);
	X509_set_issuer_name(*x, X509_get_subject_name(*x));
	assert_true(X509_sign(*x, *pk, EVP_sha256()) > 0);
}

#endif
