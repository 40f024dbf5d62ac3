/* SPDX-License-Identifier: Apache-2.0 */
/* OpenSSL's record buffers from the worker's block cache (worker/tls.h,
 * ism_tls_mem_cache): a TLS 1.3 client and server in memory, both with
 * SSL_MODE_RELEASE_BUFFERS, exchange records byte for byte while their
 * buffers come from the cache; the cache keeps a bounded number of blocks;
 * allocations of other sizes do not touch it. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "tests/unit/selfsigned.h"
#include "worker/sock.h"
#include "worker/tls.h"

/* Record blocks the cache keeps (worker/sock.c: 256 KiB a class). */
#define KEPT (256u * 1024u / ISM_BLK_RECORD)

/* A server with a self-signed certificate. */
static SSL_CTX *server_ctx(void)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	EVP_PKEY *key;
	X509 *crt;

	assert_non_null(ctx);
	self_signed("tlsmem.test", &key, &crt);
	assert_int_equal(SSL_CTX_use_certificate(ctx, crt), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(ctx, key), 1);
	X509_free(crt);
	EVP_PKEY_free(key);
	return ctx;
}

/* The handshake, each side stepped in turn (the BIO pair carries the bytes). */
static void pump(SSL *a, SSL *b)
{
	for (int i = 0; i < 64; i++) {
		int ra = SSL_do_handshake(a), rb = SSL_do_handshake(b);

		if (ra == 1 && rb == 1)
			return;
	}
	fail_msg("the handshake did not finish");
}

static void test_records_through_the_cache(void **state)
{
	SSL_CTX *sctx = server_ctx(), *cctx = SSL_CTX_new(TLS_client_method());
	SSL *srv, *cli;
	BIO *bs, *bc;
	uint64_t hits0, misses0, hits, misses;
	char out[3000], in[sizeof(out)];

	(void)state;
	assert_non_null(cctx);
	SSL_CTX_set_mode(sctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_mode(cctx, SSL_MODE_RELEASE_BUFFERS);
	srv = SSL_new(sctx);
	cli = SSL_new(cctx);
	assert_int_equal(BIO_new_bio_pair(&bs, 1u << 16, &bc, 1u << 16), 1);
	SSL_set_bio(srv, bs, bs);
	SSL_set_bio(cli, bc, bc);
	SSL_set_accept_state(srv);
	SSL_set_connect_state(cli);
	pump(cli, srv);
	ism_tls_mem_stats(&hits0, &misses0);
	for (int i = 0; i < 100; i++) {
		SSL *from = i % 2 ? srv : cli, *to = i % 2 ? cli : srv;

		memset(out, 'a' + i % 26, sizeof(out));
		out[0] = (char)i;
		assert_int_equal(SSL_write(from, out, sizeof(out)), (int)sizeof(out));
		memset(in, 0, sizeof(in));
		assert_int_equal(SSL_read(to, in, sizeof(in)), (int)sizeof(in));
		assert_memory_equal(in, out, sizeof(out));
	}
	ism_tls_mem_stats(&hits, &misses);
	/* Each exchange takes a write and a read buffer and gives them back. */
	assert_true(hits - hits0 >= 2 * 100);
	assert_true(misses - misses0 <= 2);
	SSL_free(srv);
	SSL_free(cli);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
}

static void test_blocks_kept_bounded(void **state)
{
	uint64_t hits0, misses0, hits, misses;
	void *small, *big[KEPT + 2];

	(void)state;
	ism_tls_mem_stats(&hits0, &misses0);
	small = OPENSSL_malloc(100);
	assert_non_null(small);
	OPENSSL_free(small);
	ism_tls_mem_stats(&hits, &misses);
	assert_true(hits == hits0 && misses == misses0);
	/* More record-sized blocks than the cache keeps, in use at once: it
	 * empties, then keeps KEPT of them given back; the others go to glibc. */
	for (int round = 0; round < 2; round++) {
		ism_tls_mem_stats(&hits0, &misses0);
		for (size_t i = 0; i < KEPT + 2; i++) {
			big[i] = OPENSSL_malloc(16712);
			assert_non_null(big[i]);
			memset(big[i], 0x5a, 16712);
		}
		ism_tls_mem_stats(&hits, &misses);
		assert_int_equal(hits + misses - hits0 - misses0, KEPT + 2);
		if (round == 1) {
			assert_int_equal(hits - hits0, KEPT);
			assert_int_equal(misses - misses0, 2);
		}
		for (size_t i = 0; i < KEPT + 2; i++)
			OPENSSL_free(big[i]);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_records_through_the_cache),
	    cmocka_unit_test(test_blocks_kept_bounded),
	};

	/* First, as isthmus's main does: before OpenSSL allocates; then as a
	 * worker turns the cache on. */
	if (!ism_tls_mem_init())
		return 1;
	ism_tls_mem_cache();
	return cmocka_run_group_tests(tests, NULL, NULL);
}
