/* SPDX-License-Identifier: Apache-2.0 */
/* TLS contexts from a table's settings (see conf/tlsctx.h). */
#include "conf/tlsctx.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "lib/log.h"

/* What a context checks of the peer's certificate beyond its chain, hung off
 * the context (ex data, freed with it). */
struct peer_rules {
	uint8_t accept_untrusted; /* a server's insecureSkipVerify */
	uint8_t name_check;	  /* a client's: a DNS SAN must cover the SNI sent */
	uint32_t n_pins;
	struct ism_pin *pins;
	uint32_t n; /* subjectAltNames: s[0..n) */
	char *s[];
};

static int rules_idx = -1; /* SSL_CTX ex data: struct peer_rules * */

static void rules_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	(void)parent;
	(void)ad;
	(void)idx;
	(void)argl;
	(void)argp;
	if (ptr != NULL) {
		struct peer_rules *r = ptr;

		for (uint32_t i = 0; i < r->n; i++)
			free(r->s[i]);
		free(r->pins);
		free(r);
	}
}

/* The reason the last context that could not be made gave (ism_tlsctx_error). */
static __thread char ctx_error[256];

void ism_tls_log_errors(const char *what)
{
	unsigned long e;
	char buf[256];

	while ((e = ERR_get_error()) != 0) {
		ERR_error_string_n(e, buf, sizeof(buf));
		ism_debug("%s: %s", what, buf);
	}
}

bool ism_tlsctx_dns_name_covers(const char *pattern, size_t plen, const char *name)
{
	size_t nlen = strlen(name);
	const char *pdot = memchr(pattern, '.', plen), *ndot = memchr(name, '.', nlen);
	const char *star;
	size_t pl, nl, pre, suf;

	if (plen == nlen && strncasecmp(pattern, name, nlen) == 0)
		return true;
	if (pdot == NULL || ndot == NULL)
		return false;
	pl = (size_t)(pdot - pattern); /* the first labels' lengths */
	nl = (size_t)(ndot - name);
	star = memchr(pattern, '*', pl);
	if (star == NULL || memchr(pdot, '*', plen - pl) != NULL ||
	    (pl >= 4 && strncasecmp(pattern, "xn--", 4) == 0))
		return false;
	if (plen - pl != nlen - nl || strncasecmp(pdot, ndot, plen - pl) != 0)
		return false;
	pre = (size_t)(star - pattern);
	suf = pl - pre - 1;
	if (memchr(star + 1, '*', suf) != NULL)
		return false;
	return pl == 1 || (pl <= nl + 1 && strncasecmp(pattern, name, pre) == 0 &&
			   strncasecmp(star + 1, ndot - suf, suf) == 0);
}

/* Whether one of x's subjectAltNames matches one of the names l lists: a DNS
 * SAN by ism_tlsctx_dns_name_covers, the other kinds (URI, email, IP address) exactly,
 * as Envoy's SAN matchers for Istio's exact subjectAltNames. With sni, only
 * the DNS SANs, against that name (Envoy's automatic SAN validation). */
static bool san_matches(X509 *x, const struct peer_rules *l, const char *sni)
{
	GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	bool ok = false;

	for (int i = 0; names != NULL && i < sk_GENERAL_NAME_num(names) && !ok; i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
		char text[512];
		int len = -1;

		if (g->type == GEN_DNS || g->type == GEN_URI || g->type == GEN_EMAIL) {
			const ASN1_IA5STRING *s = g->d.ia5;

			len = s->length < (int)sizeof(text) - 1 ? s->length : -1;
			if (len >= 0)
				memcpy(text, s->data, (size_t)len);
		} else if (g->type == GEN_IPADD) {
			const ASN1_OCTET_STRING *ip = g->d.ip;

			if (inet_ntop(ip->length == 4 ? AF_INET : AF_INET6, ip->data, text,
				      sizeof(text)) != NULL &&
			    (ip->length == 4 || ip->length == 16))
				len = (int)strlen(text);
		}
		if (len < 0 || (sni != NULL && g->type != GEN_DNS))
			continue;
		text[len] = '\0';
		if (sni != NULL)
			ok = ism_tlsctx_dns_name_covers(text, (size_t)len, sni);
		for (uint32_t j = 0; sni == NULL && j < l->n && !ok; j++)
			ok = g->type == GEN_DNS
				 ? ism_tlsctx_dns_name_covers(text, (size_t)len, l->s[j])
				 : strcmp(l->s[j], text) == 0;
	}
	GENERAL_NAMES_free(names);
	return ok;
}

/* A pinned certificate (verifyCertificateHash, verifyCertificateSpki) that x
 * matches, as Envoy's: one of either list will do. */
static bool pin_matches(X509 *x, const struct peer_rules *r)
{
	uint8_t md[2][EVP_MAX_MD_SIZE];
	bool made[2] = {false, false}, ok[2] = {false, false};

	for (uint32_t i = 0; i < r->n_pins; i++) {
		const struct ism_pin *p = &r->pins[i];
		unsigned int k = p->kind == ISM_PIN_SPKI, len = 0;

		if (!made[k]) {
			made[k] = true;
			if (k == 0) {
				ok[k] = X509_digest(x, EVP_sha256(), md[k], &len) == 1 && len == 32;
			} else {
				unsigned char *der = NULL;
				int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der);

				ok[k] = n > 0 &&
					EVP_Digest(der, (size_t)n, md[k], &len, EVP_sha256(),
						   NULL) == 1 &&
					len == 32;
				OPENSSL_free(der);
			}
		}
		if (ok[k] && memcmp(md[k], p->sha256, 32) == 0)
			return true;
	}
	return false;
}

/* The checks beyond the chain, on the peer's own certificate: one of the
 * subjectAltNames, or a DNS SAN covering the server name asked for (the
 * automatic check), then one of the pins. A server's insecureSkipVerify takes
 * every certificate (Envoy's ACCEPT_UNTRUSTED). */
static int verify_cb(int ok, X509_STORE_CTX *st)
{
	SSL *ssl = X509_STORE_CTX_get_ex_data(st, SSL_get_ex_data_X509_STORE_CTX_idx());
	const struct peer_rules *r = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), rules_idx);
	const char *sni;
	X509 *x;

	if (r == NULL)
		return ok;
	if (r->accept_untrusted)
		return 1;
	if (!ok || X509_STORE_CTX_get_error_depth(st) != 0)
		return ok;
	x = X509_STORE_CTX_get_current_cert(st);
	sni = r->name_check ? SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name) : NULL;
	if (sni != NULL && sni[0] != '\0' && !san_matches(x, r, sni)) {
		X509_STORE_CTX_set_error(st, X509_V_ERR_HOSTNAME_MISMATCH);
		ism_debug("peer certificate: no DNS subjectAltName covers %s", sni);
		return 0;
	}
	if (r->n && !san_matches(x, r, NULL)) {
		X509_STORE_CTX_set_error(st, X509_V_ERR_SUBJECT_ISSUER_MISMATCH);
		ism_debug("peer certificate: no subjectAltName matches");
		return 0;
	}
	if (r->n_pins && !pin_matches(x, r)) {
		X509_STORE_CTX_set_error(st, X509_V_ERR_CERT_REJECTED);
		ism_debug("peer certificate: matches no verifyCertificateHash or "
			  "verifyCertificateSpki");
		return 0;
	}
	return 1;
}

static int load_certs(SSL_CTX *ctx, const struct ism_tls_cert *c)
{
	BIO *b = BIO_new_mem_buf(c->cert.text.p, (int)c->cert.text.len);
	BIO *kb = BIO_new_mem_buf(c->key.text.p, (int)c->key.text.len);
	X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	EVP_PKEY *pk = kb ? PEM_read_bio_PrivateKey(kb, NULL, NULL, NULL) : NULL;
	int ret = -1;

	if (x == NULL || pk == NULL || SSL_CTX_use_certificate(ctx, x) != 1 ||
	    SSL_CTX_use_PrivateKey(ctx, pk) != 1)
		goto out;
	for (;;) {
		X509 *chain = PEM_read_bio_X509(b, NULL, NULL, NULL);

		if (chain == NULL)
			break;
		if (SSL_CTX_add0_chain_cert(ctx, chain) != 1) {
			X509_free(chain);
			goto out;
		}
	}
	ERR_clear_error();
	ret = 0;
out:
	X509_free(x);
	EVP_PKEY_free(pk);
	BIO_free(b);
	BIO_free(kb);
	return ret;
}

static int load_ca(SSL_CTX *ctx, const struct ism_tls_conf *c, int server)
{
	X509_STORE *st = SSL_CTX_get_cert_store(ctx);
	STACK_OF(X509_NAME) * names;
	BIO *b;
	X509 *x;

	if (c->ca.text.len == 0)
		return server ? 0 : (SSL_CTX_set_default_verify_paths(ctx) == 1 ? 0 : -1);
	/* Made only where a CA is: a SIMPLE server's context leaked it. */
	names = server ? sk_X509_NAME_new_null() : NULL;
	b = BIO_new_mem_buf(c->ca.text.p, (int)c->ca.text.len);
	while (b != NULL && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
		X509_STORE_add_cert(st, x);
		if (names != NULL)
			sk_X509_NAME_push(names, X509_NAME_dup(X509_get_subject_name(x)));
		X509_free(x);
	}
	BIO_free(b);
	ERR_clear_error();
	if (names != NULL)
		SSL_CTX_set_client_CA_list(ctx, names);
	if (c->crl.text.len) {
		X509_CRL *crl;

		b = BIO_new_mem_buf(c->crl.text.p, (int)c->crl.text.len);
		while (b != NULL && (crl = PEM_read_bio_X509_CRL(b, NULL, NULL, NULL)) != NULL) {
			X509_STORE_add_crl(st, crl);
			X509_CRL_free(crl);
		}
		BIO_free(b);
		ERR_clear_error();
		/* Every certificate of the chain, not the leaf alone, as Envoy
		 * checks it unless only_verify_leaf_cert_crl (Istio sets none):
		 * a certificate an intermediate CA on a CRL issued is refused. */
		X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK | X509_V_FLAG_CRL_CHECK_ALL);
	}
	/* A CA of the list need not be a root: Envoy's validator allows a
	 * partial chain (X509_V_FLAG_PARTIAL_CHAIN), so an intermediate given
	 * as the trust anchor verifies what it issued. */
	X509_STORE_set_flags(st, X509_V_FLAG_PARTIAL_CHAIN);
	return 0;
}

static int attach_rules(SSL_CTX *ctx, const struct ism_tls_conf *c, int server)
{
	bool untrusted = server && c->skip_verify, name_check = !server && c->name_check;
	struct peer_rules *r;

	if (c->n_sans == 0 && c->n_pins == 0 && !untrusted && !name_check)
		return 0;
	r = calloc(1, sizeof(*r) + c->n_sans * sizeof(char *));
	if (r == NULL)
		return -1;
	r->accept_untrusted = untrusted;
	r->name_check = name_check;
	for (uint32_t i = 0; i < c->n_sans; i++) {
		r->s[i] = strdup(c->sans[i].p);
		if (r->s[i] == NULL)
			goto fail;
		r->n++;
	}
	if (c->n_pins) {
		r->pins = malloc(c->n_pins * sizeof(*r->pins));
		if (r->pins == NULL)
			goto fail;
		memcpy(r->pins, c->pins, c->n_pins * sizeof(*r->pins));
		r->n_pins = c->n_pins;
	}
	SSL_CTX_set_ex_data(ctx, rules_idx, r);
	return 0;
fail:
	rules_free(NULL, r, NULL, 0, 0, NULL);
	return -1;
}

/* After a fetch that failed: whether an allocation failed (the queue emptied). */
static bool fetch_out_of_memory(void)
{
	unsigned long e;
	bool oom = false;

	while ((e = ERR_get_error()) != 0)
		oom = oom || ERR_GET_REASON(e) == ERR_R_MALLOC_FAILURE;
	return oom;
}

int ism_tls_warm(const char **what)
{
	static const char *const kdfs[] = {"TLS13-KDF", "HKDF", "TLS1-PRF"};
	static const char *const ciphers[] = {"AES-128-GCM", "AES-256-GCM", "ChaCha20-Poly1305"};
	static const char *const mds[] = {"SHA256", "SHA384"};
	static const char *const keys[] = {"X25519", "EC", "RSA"};
	static const char *const exchanges[] = {"X25519", "ECDH"};
	static const char *const sigs[] = {"RSA", "ECDSA"};
	EVP_MAC *mac;

#define WARM(list, fetch, release)                                                                 \
	for (size_t i = 0; i < sizeof(list) / sizeof(list[0]); i++) {                              \
		void *x = fetch(NULL, list[i], NULL);                                              \
		if (x == NULL && fetch_out_of_memory()) {                                          \
			*what = list[i];                                                           \
			return -ENOMEM;                                                            \
		}                                                                                  \
		release(x); /* one the providers lack is no handshake's */                         \
	}
	WARM(kdfs, EVP_KDF_fetch, EVP_KDF_free)
	WARM(ciphers, EVP_CIPHER_fetch, EVP_CIPHER_free)
	WARM(mds, EVP_MD_fetch, EVP_MD_free)
	WARM(keys, EVP_KEYMGMT_fetch, EVP_KEYMGMT_free)
	WARM(exchanges, EVP_KEYEXCH_fetch, EVP_KEYEXCH_free)
	WARM(sigs, EVP_SIGNATURE_fetch, EVP_SIGNATURE_free)
#undef WARM
	mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
	if (mac == NULL && fetch_out_of_memory()) {
		*what = "HMAC";
		return -ENOMEM;
	}
	EVP_MAC_free(mac);
	return 0;
}

/* Keeps the reason of the library's last error for ism_tlsctx_error. */
static void keep_error(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *reason = e != 0 ? ERR_reason_error_string(e) : NULL;

	if (reason != NULL)
		snprintf(ctx_error, sizeof(ctx_error), "%s", reason);
	else if (e != 0)
		ERR_error_string_n(e, ctx_error, sizeof(ctx_error));
	else
		ctx_error[0] = '\0';
}

/* Adds the file the refused PEM came from (a credential's, or the TLS
 * block's own) to the reason. */
static void name_file(const struct ism_str *path)
{
	size_t n = strlen(ctx_error);

	if (path->len && n < sizeof(ctx_error))
		snprintf(ctx_error + n, sizeof(ctx_error) - n, " in %s", path->p);
}

/* TLS 1.0 and 1.1 sign with SHA-1 (and MD5), which OpenSSL's security levels
 * above 0 refuse along with the versions themselves (Debian's default is
 * level 2): a server that allows them gets level 0, as BoringSSL, which has
 * no levels, serves them for Envoy. */
static bool level_zero(const struct ism_tls_conf *c)
{
	return c->min_ver && c->min_ver < TLS1_2_VERSION;
}

/* Whether ctx takes the certificate chain of c (the leaf as its certificate,
 * the rest as its chain): what its security level refuses in the leaf (its
 * key size, its signature) or a chain certificate (its signature). The key
 * is not read again: the loader matched it to the certificate. */
static int takes_chain(SSL_CTX *ctx, const struct ism_tls_cert *c)
{
	BIO *b = BIO_new_mem_buf(c->cert.text.p, (int)c->cert.text.len);
	X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	int ret = -1;

	SSL_CTX_clear_chain_certs(ctx);
	if (x == NULL || SSL_CTX_use_certificate(ctx, x) != 1)
		goto out;
	for (X509 *chain; (chain = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL;) {
		if (SSL_CTX_add0_chain_cert(ctx, chain) != 1) {
			X509_free(chain);
			goto out;
		}
	}
	ret = 0;
out:
	X509_free(x);
	BIO_free(b);
	return ret;
}

/* Whether the keys of the CA certificates of c are as strong as ctx's
 * security level wants of the certificates it verifies a peer's chain with
 * (OpenSSL's auth level: 80, 112, 128, 192, 256 bits for levels 1..5; a
 * weaker CA fails every peer's handshake, "CA certificate key too weak"). */
static int ca_keys_strong(SSL_CTX *ctx, const struct ism_tls_conf *c)
{
	static const int bits[] = {0, 80, 112, 128, 192, 256};
	int level = SSL_CTX_get_security_level(ctx);
	int want = bits[level < 0 ? 0 : level > 5 ? 5 : level];
	BIO *b;
	X509 *x;
	int ret = 0;

	if (c->ca.text.len == 0 || want == 0)
		return 0;
	b = BIO_new_mem_buf(c->ca.text.p, (int)c->ca.text.len);
	while (ret == 0 && b != NULL && (x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
		EVP_PKEY *pk = X509_get0_pubkey(x);

		if (pk != NULL && EVP_PKEY_get_security_bits(pk) < want) {
			snprintf(
			    ctx_error, sizeof(ctx_error),
			    "CA certificate key too weak (%d bits of security, the level wants %d)",
			    EVP_PKEY_get_security_bits(pk), want);
			ret = -1;
		}
		X509_free(x);
	}
	BIO_free(b);
	return ret;
}

int ism_tlsctx_check_certs(struct ism_tlsctx_certcheck *k, const struct ism_tls_conf *c)
{
	int z = level_zero(c);

	if (!k->init) {
		uint64_t seed = ism_strmap_seed();

		ism_strmap_init(&k->seen[0], seed);
		ism_strmap_init(&k->seen[1], seed);
		k->init = true;
	}
	if (k->ctx[z] == NULL) {
		k->ctx[z] = SSL_CTX_new(TLS_method());
		if (k->ctx[z] == NULL) {
			keep_error();
			return -1;
		}
		if (z)
			SSL_CTX_set_security_level(k->ctx[z], 0);
	}
	for (uint32_t i = 0; i < c->n_certs; i++) {
		const struct ism_str *t = &c->certs[i].cert.text;

		if (ism_strmap_get(&k->seen[z], t->p, t->len, NULL))
			continue;
		if (takes_chain(k->ctx[z], &c->certs[i]) < 0) {
			keep_error();
			name_file(&c->certs[i].cert.path);
			ERR_clear_error();
			return -1;
		}
		ism_strmap_add(&k->seen[z], t->p, t->len, 0, NULL); /* no room: checked again */
	}
	ERR_clear_error(); /* the end of the chain's PEM */
	if (c->ca.text.len == 0 || ism_strmap_get(&k->seen[z], c->ca.text.p, c->ca.text.len, NULL))
		return 0;
	if (ca_keys_strong(k->ctx[z], c) < 0) {
		name_file(&c->ca.path);
		ERR_clear_error();
		return -1;
	}
	ERR_clear_error();
	ism_strmap_add(&k->seen[z], c->ca.text.p, c->ca.text.len, 0, NULL);
	return 0;
}

void ism_tlsctx_certcheck_free(struct ism_tlsctx_certcheck *k)
{
	SSL_CTX_free(k->ctx[0]);
	SSL_CTX_free(k->ctx[1]);
	if (k->init) {
		ism_strmap_free(&k->seen[0]);
		ism_strmap_free(&k->seen[1]);
	}
	memset(k, 0, sizeof(*k));
}

SSL_CTX *ism_tlsctx_new(const struct ism_tls_conf *c, int server)
{
	SSL_CTX *ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
	int verify = SSL_VERIFY_NONE;

	if (rules_idx < 0)
		rules_idx = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, rules_free);
	if (ctx == NULL)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, c->min_ver ? c->min_ver : TLS1_2_VERSION);
	if (level_zero(c))
		SSL_CTX_set_security_level(ctx, 0);
	if (c->max_ver)
		SSL_CTX_set_max_proto_version(ctx, c->max_ver);
	/* Unset: Envoy's defaults (its context configs' DEFAULT_CIPHER_SUITES
	 * and DEFAULT_CURVES), not OpenSSL's, which take static RSA and CBC
	 * suites and more groups. BoringSSL's equally preferred pairs
	 * ([a|b]) are in Envoy's order here. */
	if (SSL_CTX_set_cipher_list(ctx, c->ciphers.len ? c->ciphers.p : ISM_TLS_DEFAULT_CIPHERS) !=
	    1)
		goto fail;
	if (SSL_CTX_set1_groups_list(ctx, c->curves.len ? c->curves.p : ISM_TLS_DEFAULT_CURVES) !=
	    1)
		goto fail;
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	/* Refused both ways, as Envoy does: a peer's HelloRequest or ClientHello
	 * on an open session gets a no_renegotiation alert. */
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION);
	for (uint32_t i = 0; i < c->n_certs; i++)
		if (load_certs(ctx, &c->certs[i]) < 0)
			goto fail;
	if (load_ca(ctx, c, server) < 0 || attach_rules(ctx, c, server) < 0)
		goto fail;
	if (server) {
		unsigned char sid[8];

		/* OPTIONAL_MUTUAL with subjectAltNames or pins requires a
		 * certificate all the same, as Envoy's validator does once it
		 * has names or hashes to check (a client without one has none
		 * that matches). */
		if (c->mode == ISM_TLS_MUTUAL || c->mode == ISM_TLS_ISTIO_MUTUAL ||
		    (c->mode == ISM_TLS_OPTIONAL_MUTUAL && (c->n_sans > 0 || c->n_pins > 0)))
			verify = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
		else if (c->mode == ISM_TLS_OPTIONAL_MUTUAL)
			verify = SSL_VERIFY_PEER;
		/* Tickets only: they work across workers; a server-side cache
		 * would not. The session context tells servers apart, so a session
		 * of one never resumes on another with other client checks. */
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
		memcpy(sid, &c->fingerprint, sizeof(sid));
		SSL_CTX_set_session_id_context(ctx, sid, sizeof(sid));
		SSL_CTX_set_num_tickets(ctx, 1);
		SSL_CTX_set_options(ctx, SSL_OP_CIPHER_SERVER_PREFERENCE);
	} else {
		static const unsigned char alpn[] = "\x08http/1.1";
		/* What Istio's gateway offers a mesh upstream for HTTP/1.1 (its
		 * istio.alpn filter): a sidecar takes the connection for mesh mTLS
		 * only with an istio-* value, else for plain application TLS. */
		static const unsigned char mesh_alpn[] = "\x0eistio-http/1.1\x05istio\x08http/1.1";
		bool mesh = c->mode == ISM_TLS_ISTIO_MUTUAL;

		if (!c->skip_verify)
			verify = SSL_VERIFY_PEER;
		SSL_CTX_set_alpn_protos(ctx, mesh ? mesh_alpn : alpn,
					mesh ? sizeof(mesh_alpn) - 1 : sizeof(alpn) - 1);
	}
	SSL_CTX_set_verify(ctx, verify, verify != SSL_VERIFY_NONE ? verify_cb : NULL);
	return ctx;
fail:
	keep_error();
	ism_tls_log_errors("TLS context");
	SSL_CTX_free(ctx);
	return NULL;
}

const char *ism_tlsctx_error(void)
{
	return ctx_error;
}

void ism_tlsctx_h2_alpn(SSL *ssl, bool mesh)
{
	static const unsigned char h2[] = "\x02h2";
	static const unsigned char mesh_h2[] = "\x08istio-h2\x05istio\x02h2";

	if (mesh)
		SSL_set_alpn_protos(ssl, mesh_h2, sizeof(mesh_h2) - 1);
	else
		SSL_set_alpn_protos(ssl, h2, sizeof(h2) - 1);
}

void ism_tlsctx_server_name(SSL *ssl, const char *sni)
{
	const struct peer_rules *r = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), rules_idx);
	size_t n = strlen(sni);
	unsigned char bin[16];
	char ip[INET6_ADDRSTRLEN];

	/* An IP address is no server name (RFC 6066 3): none is sent, as
	 * Envoy's auto_sni sends none for an IP authority, and the automatic
	 * check (auto_san_validation) looks for it among the certificate's IP
	 * subjectAltNames instead. */
	if (n >= 2 && sni[0] == '[' && sni[n - 1] == ']')
		snprintf(ip, sizeof(ip), "%.*s", (int)(n - 2), sni + 1);
	else
		snprintf(ip, sizeof(ip), "%s", sni);
	if (inet_pton(AF_INET, ip, bin) == 1 || inet_pton(AF_INET6, ip, bin) == 1) {
		if (r != NULL && r->name_check &&
		    X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), ip) != 1)
			ism_tls_log_errors("IP address check");
		return;
	}
	if (sni[0] != '\0' && SSL_set_tlsext_host_name(ssl, sni) != 1)
		ism_tls_log_errors("SNI");
}

static struct ism_tlsctx_entry *cache_find(struct ism_tlsctx_cache *k, const struct ism_tls_conf *c,
					   int server)
{
	for (uint32_t i = 0; i < k->n; i++)
		if (k->e[i].fp == c->fingerprint && k->e[i].server == server)
			return &k->e[i];
	return NULL;
}

SSL_CTX *ism_tlsctx_get(struct ism_tlsctx_cache *k, const struct ism_tls_conf *c, int server,
			SSL_CTX *(*make)(const struct ism_tls_conf *c, int server))
{
	struct ism_tlsctx_entry *e = cache_find(k, c, server);
	SSL_CTX *ctx;

	if (e != NULL) {
		e->used = 1;
		return e->ctx;
	}
	if (k->n == k->cap) {
		uint32_t cap = k->cap ? k->cap * 2 : 8;

		e = realloc(k->e, cap * sizeof(*e));
		if (e == NULL)
			return NULL;
		k->e = e;
		k->cap = cap;
	}
	ctx = make(c, server);
	if (ctx == NULL)
		return NULL;
	k->e[k->n++] = (struct ism_tlsctx_entry){
	    .fp = c->fingerprint, .server = (uint8_t)server, .used = 1, .ctx = ctx};
	return ctx;
}

void ism_tlsctx_mark(struct ism_tlsctx_cache *k, const struct ism_tls_conf *c, int server)
{
	struct ism_tlsctx_entry *e = cache_find(k, c, server);

	if (e != NULL)
		e->used = 1;
}

void ism_tlsctx_unmark_all(struct ism_tlsctx_cache *k)
{
	for (uint32_t i = 0; i < k->n; i++)
		k->e[i].used = 0;
}

void ism_tlsctx_sweep(struct ism_tlsctx_cache *k, void (*gone)(SSL_CTX *ctx, void *arg), void *arg)
{
	uint32_t keep = 0;

	for (uint32_t i = 0; i < k->n; i++) {
		if (k->e[i].used) {
			k->e[keep++] = k->e[i];
			continue;
		}
		if (gone != NULL)
			gone(k->e[i].ctx, arg);
		SSL_CTX_free(k->e[i].ctx);
	}
	k->n = keep;
}

void ism_tlsctx_cache_free(struct ism_tlsctx_cache *k)
{
	for (uint32_t i = 0; i < k->n; i++)
		SSL_CTX_free(k->e[i].ctx);
	free(k->e);
	*k = (struct ism_tlsctx_cache){0};
}
