/* SPDX-License-Identifier: Apache-2.0 */
/* TLS in the appliance file: Gateway server tls (ServerTLSSettings),
 * DestinationRule tls (ClientTLSSettings), the Appliance's credentials (what
 * credentialName names) and its mesh identity (ISTIO_MUTUAL, PeerAuthentication).
 *
 * The master reads every certificate and key file named here and checks it with
 * OpenSSL, so that a bad file is a configuration error with its position, and
 * the PEM text travels to the workers in the compiled table: they cannot read
 * key files once they dropped privileges. Relative paths are taken from the
 * directory of the appliance file. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "conf/model.h"
#include "conf/tlsctx.h"
#include "lib/ascii.h"
#include "lib/base64.h"

#define PEM_MAX (1u << 20)

enum pem_kind {
	PEM_CHAIN, /* one or more certificates, leaf first */
	PEM_KEY,
	PEM_CA,
	PEM_CRL,
};

/* The master loads the file on a thread of its own (master/reload.h) while its
 * loop may fork a worker. A lock OpenSSL held on that thread at the fork would
 * stay held in the worker, which would then hang in its own TLS setup: fork()
 * waits until no OpenSSL call made between ism_conf_ssl_enter and _leave is
 * under way (pthread_atfork, set up before main, while the process has one
 * thread). */
static pthread_mutex_t ssl_gate = PTHREAD_MUTEX_INITIALIZER;

void ism_conf_ssl_enter(void)
{
	pthread_mutex_lock(&ssl_gate);
}

void ism_conf_ssl_leave(void)
{
	pthread_mutex_unlock(&ssl_gate);
}

__attribute__((constructor)) static void ssl_gate_init(void)
{
	pthread_atfork(ism_conf_ssl_enter, ism_conf_ssl_leave, ism_conf_ssl_leave);
}

static const char *ssl_reason(void)
{
	unsigned long e = ERR_peek_last_error();
	const char *r = e ? ERR_reason_error_string(e) : NULL;

	ERR_clear_error();
	return r ? r : "not valid PEM";
}

static void check_usable(struct ism_vctx *v, struct ism_tlsctx_certcheck *k,
			 const struct ism_node *at, const struct ism_tls_conf *c);

/* Refuses encrypted keys instead of prompting on the terminal. */
static int no_passphrase(char *buf, int size, int rw, void *u)
{
	(void)buf;
	(void)size;
	(void)rw;
	(void)u;
	return -1;
}

/* Checks the PEM text; returns NULL or the reason it is refused. */
/* Why certificate x is not valid now, in warn (empty when it is): expired,
 * or not valid yet. */
static void cert_time(X509 *x, char warn[96])
{
	const ASN1_TIME *after = X509_get0_notAfter(x), *before = X509_get0_notBefore(x);
	const ASN1_TIME *t = X509_cmp_current_time(after) < 0	 ? after
			     : X509_cmp_current_time(before) > 0 ? before
								 : NULL;
	struct tm tm;
	char when[32] = "?";

	warn[0] = '\0';
	if (t == NULL)
		return;
	if (ASN1_TIME_to_tm(t, &tm) == 1)
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S UTC", &tm);
	snprintf(warn, 96,
		 t == after ? "the certificate expired on %s"
			    : "the certificate is not valid before %s",
		 when);
}

/* Whether text is what k wants; NULL, or why not. warn: what a loaded one is
 * worth knowing (a chain whose certificate is expired or not valid yet). */
static const char *pem_check(const char *text, size_t len, enum pem_kind k, char warn[96])
{
	BIO *bio;
	const char *why = NULL;
	int n = 0;

	ism_conf_ssl_enter();
	bio = BIO_new_mem_buf(text, (int)len);
	if (bio == NULL) {
		ism_conf_ssl_leave();
		return "out of memory";
	}
	switch (k) {
	case PEM_CHAIN:
	case PEM_CA: {
		X509 *x;

		while ((x = PEM_read_bio_X509(bio, NULL, no_passphrase, NULL)) != NULL) {
			if (n == 0 && k == PEM_CHAIN)
				cert_time(x, warn);
			X509_free(x);
			n++;
		}
		if (n == 0)
			why = ssl_reason();
		ERR_clear_error(); /* the end of the file */
		break;
	}
	case PEM_KEY: {
		EVP_PKEY *pk = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);

		if (pk == NULL)
			why = ssl_reason();
		EVP_PKEY_free(pk);
		break;
	}
	case PEM_CRL: {
		X509_CRL *crl;

		while ((crl = PEM_read_bio_X509_CRL(bio, NULL, no_passphrase, NULL)) != NULL) {
			X509_CRL_free(crl);
			n++;
		}
		if (n == 0)
			why = ssl_reason();
		ERR_clear_error();
		break;
	}
	}
	BIO_free(bio);
	ism_conf_ssl_leave();
	return why;
}

static int note_file(struct ism_vctx *v, const char *path)
{
	struct ism_conf *c = v->conf;

	if (ism_strmap_get(&c->files_ix, path, strlen(path), NULL))
		return 0;
	if (c->n_files == c->cap_files) {
		size_t cap = c->cap_files ? c->cap_files * 2 : 8;
		const char **f = realloc(c->files, cap * sizeof(*f));

		if (f == NULL)
			return -ENOMEM;
		c->files = f;
		c->cap_files = cap;
	}
	if (ism_strmap_add(&c->files_ix, path, strlen(path), (uint32_t)c->n_files, NULL) < 0)
		return -ENOMEM;
	c->files[c->n_files++] = path;
	return 0;
}

/* The file named by map[key]: read, checked, kept in the pool. 1 when read, 0
 * when absent, -1 when refused (reported). */
static int pem_field(struct ism_vctx *v, const struct ism_node *map, const char *key,
		     enum pem_kind k, struct ism_pem *out)
{
	const struct ism_node *n = ism_node_get(map, key, NULL);
	const char *name, *why;
	char path[PATH_MAX], *buf = NULL, warn[96] = "";
	size_t len = 0, old;
	int rc = ism_v_str(v, map, key, false, &name);

	if (rc <= 0)
		return rc;
	old = ism_v_push(v, ".%s", key);
	if (name[0] == '/' || strrchr(v->file, '/') == NULL) {
		snprintf(path, sizeof(path), "%s", name);
	} else {
		int dir = (int)(strrchr(v->file, '/') - v->file);

		snprintf(path, sizeof(path), "%.*s/%s", dir, v->file, name);
	}
	rc = ism_conf_read_file(path, PEM_MAX, &buf, &len);
	if (rc < 0) {
		char text[64];

		ism_v_err(v, n, "%s: %s", path, ism_conf_read_why(rc, PEM_MAX, text));
		goto out;
	}
	why = pem_check(buf, len, k, warn);
	if (why != NULL) {
		ism_v_err(v, n, "%s: %s", path, why);
		rc = -1;
		goto out;
	}
	/* Served all the same, as Envoy serves it: the operator hears of it. */
	if (warn[0] != '\0')
		ism_v_warn(v, n, "%s: %s", path, warn);
	out->path.p = ism_v_strdup(v, path);
	out->text.p = ism_v_strdup(v, buf);
	out->path.len = (uint32_t)strlen(path);
	out->text.len = (uint32_t)len;
	if (out->path.p == NULL || out->text.p == NULL || note_file(v, out->path.p) < 0)
		v->nomem = 1;
	rc = 1;
out:
	free(buf);
	ism_v_pop(v, old);
	return rc;
}

/* The private key must belong to the certificate. */
static void check_pair(struct ism_vctx *v, const struct ism_node *map, const char *key_field,
		       const struct ism_tls_cert *c)
{
	BIO *cb, *kb;
	X509 *x;
	EVP_PKEY *pk;

	ism_conf_ssl_enter();
	cb = BIO_new_mem_buf(c->cert.text.p, (int)c->cert.text.len);
	kb = BIO_new_mem_buf(c->key.text.p, (int)c->key.text.len);
	x = cb ? PEM_read_bio_X509(cb, NULL, no_passphrase, NULL) : NULL;
	pk = kb ? PEM_read_bio_PrivateKey(kb, NULL, no_passphrase, NULL) : NULL;
	if (x != NULL && pk != NULL && X509_check_private_key(x, pk) != 1) {
		size_t old = ism_v_push(v, ".%s", key_field);

		ism_v_err(v, ism_node_get(map, key_field, NULL),
			  "%s: the key does not belong to the certificate %s", c->key.path.p,
			  c->cert.path.p);
		ism_v_pop(v, old);
	}
	ERR_clear_error();
	X509_free(x);
	EVP_PKEY_free(pk);
	BIO_free(cb);
	BIO_free(kb);
	ism_conf_ssl_leave();
}

/* A certificate and its key, both or neither; 1 when both were read. */
static int cert_pair(struct ism_vctx *v, const struct ism_node *map, const char *cert_field,
		     const char *key_field, struct ism_tls_cert *out)
{
	int c = pem_field(v, map, cert_field, PEM_CHAIN, &out->cert);
	int k = pem_field(v, map, key_field, PEM_KEY, &out->key);

	if (c == 0 && k > 0)
		ism_v_err(v, map, "%s without %s", key_field, cert_field);
	if (c > 0 && k == 0)
		ism_v_err(v, map, "%s without %s", cert_field, key_field);
	if (c > 0 && k > 0) {
		check_pair(v, map, key_field, out);
		return 1;
	}
	return 0;
}

static const char *const versions[] = {"TLS_AUTO", "TLSV1_0", "TLSV1_1",
				       "TLSV1_2",  "TLSV1_3", NULL};

static uint16_t version_of(const char *s)
{
	static const uint16_t v[] = {0, TLS1_VERSION, TLS1_1_VERSION, TLS1_2_VERSION,
				     TLS1_3_VERSION};

	for (size_t i = 0; versions[i]; i++)
		if (strcmp(versions[i], s) == 0)
			return v[i];
	return 0;
}

static void parse_versions(struct ism_vctx *v, const struct ism_node *n, struct ism_tls_conf *c)
{
	const char *s;

	if (ism_v_enum(v, n, "minProtocolVersion", versions, NULL, &s) > 0)
		c->min_ver = version_of(s);
	if (ism_v_enum(v, n, "maxProtocolVersion", versions, NULL, &s) > 0)
		c->max_ver = version_of(s);
	if (c->min_ver && c->max_ver && c->min_ver > c->max_ver)
		ism_v_err(v, ism_node_get(n, "maxProtocolVersion", NULL),
			  "maxProtocolVersion is below minProtocolVersion");
	else if (!c->min_ver && c->max_ver && c->max_ver < TLS1_2_VERSION)
		ism_v_err(v, ism_node_get(n, "maxProtocolVersion", NULL),
			  "maxProtocolVersion is below the minimum, TLS 1.2 when "
			  "minProtocolVersion is not set: no version would be left");
}

static bool in_names(const char *const *names, const char *s)
{
	for (; *names; names++)
		if (strcmp(*names, s) == 0)
			return true;
	return false;
}

/* Istio's ValidCipherSuites (pkg/config/security): its validation warns of
 * any other name and istiod leaves it out (FilterCipherSuites), so Envoy
 * never sees it; a name that starts with neither a letter nor a digit (an
 * OpenSSL operator: "-", "+", "!", "@") passes, as IsValidCipherSuite lets
 * it. */
static const char *const istio_ciphers[] = {"ECDHE-ECDSA-AES128-GCM-SHA256",
					    "ECDHE-RSA-AES128-GCM-SHA256",
					    "ECDHE-ECDSA-AES256-GCM-SHA384",
					    "ECDHE-RSA-AES256-GCM-SHA384",
					    "ECDHE-ECDSA-CHACHA20-POLY1305",
					    "ECDHE-RSA-CHACHA20-POLY1305",
					    "ECDHE-ECDSA-AES128-SHA",
					    "ECDHE-RSA-AES128-SHA",
					    "ECDHE-ECDSA-AES256-SHA",
					    "ECDHE-RSA-AES256-SHA",
					    "AES128-GCM-SHA256",
					    "AES256-GCM-SHA384",
					    "AES128-SHA",
					    "AES256-SHA",
					    "DES-CBC3-SHA",
					    "ALL",
					    NULL};

static const char *cipher_unsupported(const char *name)
{
	if (!isalnum((unsigned char)name[0]) || in_names(istio_ciphers, name))
		return NULL;
	return "not a cipher suite Istio supports: left out, as istiod leaves it out (Envoy's "
	       "defaults apply when none is left)";
}

/* Whether OpenSSL takes cipher suite name (a suite for TLS 1.2 and below);
 * NULL when it does, else what the error adds. */
static const char *cipher_refused(SSL_CTX *ctx, const char *name)
{
	if (SSL_CTX_set_cipher_list(ctx, name) == 1)
		return NULL;
	return strncmp(name, "TLS_", 4) == 0
		   ? "unknown cipher suite (TLS 1.3 suites are not configurable, as in Envoy)"
		   : "unknown cipher suite";
}

/* The names Envoy (BoringSSL) takes in ecdh_curves, with their aliases. */
static const char *const envoy_curves[] = {
    "P-224",	      "secp224r1", "P-256",	"prime256v1", "P-384",
    "secp384r1",      "P-521",	   "secp521r1", "X25519",     "X25519Kyber768Draft00",
    "X25519MLKEM768", NULL};

/* The same for an ECDH curve (a TLS group): one Envoy knows, that this
 * OpenSSL has. */
static const char *curve_refused(SSL_CTX *ctx, const char *name)
{
	if (!in_names(envoy_curves, name))
		return "unknown ECDH curve (Envoy's names: P-224, P-256, P-384, P-521, X25519, "
		       "X25519Kyber768Draft00, X25519MLKEM768)";
	if (SSL_CTX_set1_groups_list(ctx, name) != 1)
		return "ECDH curve this build's OpenSSL does not have";
	return NULL;
}

/* A list of names at n.key that OpenSSL takes one by one (refused: what
 * refused(ctx, name) says, at the name), joined by ':' into *out; those that
 * unsupported (if given) has a reason for are left out with a warning saying
 * it. */
static void parse_ossl_list(struct ism_vctx *v, const struct ism_node *n, const char *key,
			    const char *(*refused)(SSL_CTX *ctx, const char *name),
			    const char *(*unsupported)(const char *name), struct ism_str *out)
{
	const struct ism_node *l;
	size_t nc, total = 1, old;
	const char **cs = ism_v_strlist(v, n, key, false, &nc, &l);
	SSL_CTX *ctx;
	char *joined;

	if (cs == NULL || nc == 0)
		return;
	ism_conf_ssl_enter();
	ctx = SSL_CTX_new(TLS_method());
	if (ctx == NULL) {
		ism_conf_ssl_leave();
		v->nomem = 1;
		return;
	}
	old = ism_v_push(v, ".%s", key);
	for (size_t i = 0; i < nc; i++) {
		const char *left = unsupported != NULL ? unsupported(cs[i]) : NULL;
		const char *why = strchr(cs[i], ':') != NULL ? "one name per entry, without ':'"
				  : left != NULL	     ? NULL
							     : refused(ctx, cs[i]);
		size_t o2 = ism_v_push(v, "[%zu]", i);

		total += strlen(cs[i]) + 1;
		if (why != NULL)
			ism_v_err(v, l->items[i], "\"%s\": %s", cs[i], why);
		else if (left != NULL)
			ism_v_warn(v, l->items[i], "\"%s\": %s", cs[i], left);
		ism_v_pop(v, o2);
	}
	ERR_clear_error();
	SSL_CTX_free(ctx);
	ism_conf_ssl_leave();
	ism_v_pop(v, old);
	joined = ism_v_alloc(v, 1, total);
	if (joined == NULL)
		return;
	total = 0;
	for (size_t i = 0; i < nc; i++) {
		size_t len = strlen(cs[i]);

		if (unsupported != NULL && unsupported(cs[i]) != NULL)
			continue;
		if (total)
			joined[total++] = ':';
		memcpy(joined + total, cs[i], len);
		total += len;
	}
	joined[total] = '\0';
	if (total == 0)
		return;
	*out = (struct ism_str){.p = joined, .len = (uint32_t)total};
}

void ism_tls_parse_sans(struct ism_vctx *v, const struct ism_node *n, const struct ism_str **sans,
			uint32_t *n_sans)
{
	size_t ns;
	const char **s = ism_v_strlist(v, n, "subjectAltNames", false, &ns, NULL);
	struct ism_str *out = ns ? ism_v_alloc(v, ns, sizeof(*out)) : NULL;

	for (size_t i = 0; out != NULL && i < ns; i++)
		out[i] = (struct ism_str){.p = s[i], .len = (uint32_t)strlen(s[i])};
	*sans = out;
	*n_sans = out ? (uint32_t)ns : 0;
}

/* verifyCertificateHash: a SHA-256 in hex, 64 digits, or the 95 characters of
 * its colon-separated form (what `openssl x509 -fingerprint -sha256` prints),
 * as Envoy reads it. */
static bool pin_hex(const char *s, uint8_t out[32])
{
	size_t len = strlen(s), n = 0;

	if (len != 64 && len != 95)
		return false;
	for (size_t i = 0; i < len; i++) {
		int d;

		if (len == 95 && i % 3 == 2) {
			if (s[i] != ':')
				return false;
			continue;
		}
		d = ism_hexval((unsigned char)s[i]);
		if (d < 0)
			return false;
		out[n / 2] = (uint8_t)(n % 2 ? out[n / 2] | d : d << 4);
		n++;
	}
	return n == 64;
}

/* verifyCertificateSpki: a SHA-256 in base64. */
static bool pin_b64(const char *s, uint8_t out[32])
{
	size_t len = strlen(s);
	unsigned char buf[48];

	if (len > 44 || ism_b64_decode(s, len, buf) != 32)
		return false;
	memcpy(out, buf, 32);
	return true;
}

/* A Gateway server's pinned client certificates: verifyCertificateHash, then
 * verifyCertificateSpki. */
static void parse_pins(struct ism_vctx *v, const struct ism_node *n, struct ism_tls_conf *c)
{
	static const struct {
		const char *key, *form;
		uint8_t kind;
		bool (*decode)(const char *s, uint8_t out[32]);
	} kinds[] = {
	    {"verifyCertificateHash", "hex-encoded", ISM_PIN_CERT, pin_hex},
	    {"verifyCertificateSpki", "base64-encoded", ISM_PIN_SPKI, pin_b64},
	};
	const struct ism_node *lists[2];
	const char **vals[2];
	size_t nv[2], total = 0;
	struct ism_pin *out;

	for (size_t k = 0; k < 2; k++) {
		vals[k] = ism_v_strlist(v, n, kinds[k].key, false, &nv[k], &lists[k]);
		/* An item that is no string was reported: the rest is not read. */
		if (vals[k] != NULL && nv[k] != lists[k]->n)
			vals[k] = NULL;
		total += vals[k] != NULL ? nv[k] : 0;
	}
	out = total ? ism_v_alloc(v, total, sizeof(*out)) : NULL;
	if (out == NULL)
		return;
	for (size_t k = 0; k < 2; k++) {
		for (size_t i = 0; vals[k] != NULL && i < nv[k]; i++) {
			struct ism_pin *p = &out[c->n_pins];
			size_t old;

			p->kind = kinds[k].kind;
			if (kinds[k].decode(vals[k][i], p->sha256)) {
				c->n_pins++;
				continue;
			}
			old = ism_v_push(v, ".%s[%zu]", kinds[k].key, i);
			ism_v_err(v, lists[k]->items[i],
				  "invalid %s SHA-256 \"%s\" (Envoy: 32 bytes, %s)", kinds[k].form,
				  vals[k][i],
				  k == 0 ? "64 hex digits, or 95 characters with colons"
					 : "44 characters of base64");
			ism_v_pop(v, old);
		}
	}
	c->pins = out;
}

static void remember_path(struct ism_vctx *v, struct ism_cm_tls *t, const struct ism_node *n)
{
	t->set = true;
	t->path = ism_v_strdup(v, v->path);
	t->creds_at = n;
}

static void parse_creds(struct ism_vctx *v, const struct ism_node *n, struct ism_cm_tls *t)
{
	const char *one;
	const char **many;
	size_t nm;
	const struct ism_node *l;

	if (ism_v_str(v, n, "credentialName", false, &one) > 0) {
		t->creds[t->n_creds++] = one;
		t->creds_at = ism_node_get(n, "credentialName", NULL);
	}
	many = ism_v_strlist(v, n, "credentialNames", false, &nm, &l);
	if (many != NULL && t->n_creds) {
		ism_v_err(v, l, "credentialName and credentialNames are exclusive");
		return;
	}
	if (nm > ISM_TLS_MAX_CERTS) {
		ism_v_err(v, l, "at most %d credentials (one RSA, one ECDSA)", ISM_TLS_MAX_CERTS);
		return;
	}
	for (size_t i = 0; many != NULL && i < nm; i++)
		t->creds[t->n_creds++] = many[i];
	if (many != NULL)
		t->creds_at = l;
}

/* tlsCertificates[]: up to two {serverCertificate, privateKey, caCertificates}. */
static void parse_tls_certs(struct ism_vctx *v, const struct ism_node *n, struct ism_tls_conf *c)
{
	static const char *const keys[] = {"serverCertificate", "privateKey", "caCertificates",
					   NULL};
	const struct ism_node *l = ism_v_node(v, n, "tlsCertificates", false, ISM_NODE_SEQ);
	size_t old;

	if (l == NULL)
		return;
	old = ism_v_push(v, ".tlsCertificates");
	if (l->n > ISM_TLS_MAX_CERTS)
		ism_v_err(v, l, "at most %d certificates (one RSA, one ECDSA)", ISM_TLS_MAX_CERTS);
	for (size_t i = 0; i < l->n && i < ISM_TLS_MAX_CERTS; i++) {
		size_t o2 = ism_v_push(v, "[%zu]", i);

		if (ism_v_expect(v, l->items[i], ISM_NODE_MAP) &&
		    ism_v_keys(v, l->items[i], keys, NULL)) {
			if (cert_pair(v, l->items[i], "serverCertificate", "privateKey",
				      &c->certs[c->n_certs]) > 0)
				c->n_certs++;
			else
				ism_v_err(v, l->items[i],
					  "serverCertificate and privateKey are "
					  "required");
			if (c->ca.text.len == 0)
				pem_field(v, l->items[i], "caCertificates", PEM_CA, &c->ca);
		}
		ism_v_pop(v, o2);
	}
	ism_v_pop(v, old);
}

/* Istio's names of enum ism_tls_mode. */
static const char *const mode_names[] = {"DISABLE",	    "SIMPLE",	    "MUTUAL",
					 "OPTIONAL_MUTUAL", "ISTIO_MUTUAL", NULL};

static uint8_t mode_of(const char *s)
{
	for (uint8_t i = 0; mode_names[i]; i++)
		if (strcmp(mode_names[i], s) == 0)
			return i;
	return ISM_TLS_NONE;
}

/* tls of a server that is neither HTTPS nor TLS (n: the tls mapping, keys
 * its known fields). HTTP, HTTP2 and GRPC servers take httpsRedirect alone;
 * the others no tls at all. */
static void plaintext_tls(struct ism_vctx *v, const struct ism_node *n, const char *protocol,
			  const char *const *keys, const char *const *unimpl, struct ism_cm_tls *t)
{
	bool redirect = false;

	if (ism_model_server_kind(protocol, false) == ISM_SRV_TCP) {
		ism_v_err(v, n,
			  "a %s server has no tls (Istio: server cannot have TLS settings for "
			  "non HTTPS/TLS ports)",
			  protocol);
		return;
	}
	ism_v_keys(v, n, keys, unimpl);
	ism_v_bool(v, n, "httpsRedirect", &redirect);
	t->https_redirect = redirect;
	for (size_t i = 0; i < n->n; i++) {
		const char *k = n->pairs[i].key->str;
		bool known = false;

		for (const char *const *p = keys; *p && !known; p++)
			known = strcmp(*p, k) == 0;
		if (known && strcmp(k, "httpsRedirect") != 0)
			ism_v_err(v, n->pairs[i].key,
				  "%s: applies to HTTPS servers only (this one is %s)", k,
				  protocol);
	}
}

/* A server's tls fields: those of its certificates, and those of the
 * handshake that use them. */
#define SERVER_CERT_KEYS                                                                           \
	"serverCertificate", "privateKey", "caCertificates", "caCrl", "credentialName",            \
	    "credentialNames", "tlsCertificates"
#define SERVER_HANDSHAKE_KEYS                                                                      \
	"subjectAltNames", "verifyCertificateHash", "verifyCertificateSpki",                       \
	    "caCertCredentialName", "insecureSkipVerify", "minProtocolVersion",                    \
	    "maxProtocolVersion", "cipherSuites", "ecdhCurves"

/* tls of a server that passes TLS through (mode_set: mode PASSTHROUGH is
 * written, else it is Istio's default): nothing but the mode means anything.
 * Istio warns that certificates are ignored; the settings of a handshake that
 * does not happen here are as ignored. */
static void passthrough_tls(struct ism_vctx *v, const struct ism_node *n, bool mode_set)
{
	static const char *const certs[] = {SERVER_CERT_KEYS, NULL};
	static const char *const handshake[] = {SERVER_HANDSHAKE_KEYS, NULL};

	for (size_t i = 0; i < n->n; i++) {
		const struct ism_node *k = n->pairs[i].key;
		size_t old = ism_v_push(v, ".%s", k->str);

		if (in_names(certs, k->str) && mode_set)
			ism_v_warn(
			    v, k,
			    "PASSTHROUGH mode does not use certificates, they will be ignored "
			    "(as Istio warns): TLS is not terminated here");
		else if (in_names(certs, k->str))
			ism_v_warn(
			    v, k,
			    "ignored: mode is not set, and Istio's default mode, PASSTHROUGH, "
			    "does not terminate TLS (mode: SIMPLE does)");
		else if (in_names(handshake, k->str))
			ism_v_warn(v, k, "has no effect: TLS is not terminated here (PASSTHROUGH)");
		ism_v_pop(v, old);
	}
}

/* tls.mode of an HTTPS or TLS server: its mode (enum ism_tls_mode), or -1
 * when TLS is passed through (t->passthrough) or the mode is refused. */
static int server_mode(struct ism_vctx *v, const struct ism_node *n, struct ism_cm_tls *t)
{
	static const char *const modes[] = {
	    "SIMPLE",		"MUTUAL", "OPTIONAL_MUTUAL", "ISTIO_MUTUAL", "PASSTHROUGH",
	    "AUTO_PASSTHROUGH", NULL};
	const char *mode = "PASSTHROUGH"; /* Istio's default */
	int rc = ism_v_enum(v, n, "mode", modes, NULL, &mode);
	size_t old;

	if (rc < 0)
		return -1;
	if (strcmp(mode, "PASSTHROUGH") == 0) {
		t->passthrough = true;
		passthrough_tls(v, n, rc > 0);
		return -1;
	}
	if (strcmp(mode, "AUTO_PASSTHROUGH") != 0)
		return mode_of(mode);
	old = ism_v_push(v, ".mode");
	ism_v_err(v, ism_node_get(n, "mode", NULL),
		  "AUTO_PASSTHROUGH is the mode of an east-west gateway between the networks "
		  "of a multi-network mesh (the SNI names an Istio cluster, "
		  "outbound_.PORT_.SUBSET_.HOST, and mTLS goes through to a sidecar); it has "
		  "no meaning on this appliance: PASSTHROUGH with tls routes passes TLS "
		  "through by SNI");
	ism_v_pop(v, old);
	return -1;
}

/* The fields of tls n of an HTTPS server that terminates TLS, into t. */
static void server_fields(struct ism_vctx *v, const struct ism_node *n, struct ism_cm_tls *t)
{
	struct ism_tls_conf *c = &t->c;
	bool skip = false;

	if (cert_pair(v, n, "serverCertificate", "privateKey", &c->certs[0]) > 0)
		c->n_certs = 1;
	pem_field(v, n, "caCertificates", PEM_CA, &c->ca);
	pem_field(v, n, "caCrl", PEM_CRL, &c->crl);
	parse_creds(v, n, t);
	parse_tls_certs(v, n, c);
	ism_tls_parse_sans(v, n, &c->sans, &c->n_sans);
	parse_pins(v, n, c);
	ism_v_str(v, n, "caCertCredentialName", false, &t->ca_cred);
	t->ca_cred_at = ism_node_get(n, "caCertCredentialName", NULL);
	ism_v_bool(v, n, "insecureSkipVerify", &skip);
	c->skip_verify = skip;
	parse_versions(v, n, c);
	parse_ossl_list(v, n, "cipherSuites", cipher_refused, cipher_unsupported, &c->ciphers);
	parse_ossl_list(v, n, "ecdhCurves", curve_refused, NULL, &c->curves);
}

/* Each of the fields keys that tls n sets, said at it: "<key> <what>", an
 * error or (warn) a warning. */
static void fields_said(struct ism_vctx *v, const struct ism_node *n, const char *const *keys,
			bool warn, const char *what)
{
	for (size_t i = 0; keys[i]; i++) {
		const struct ism_node *at = ism_node_get(n, keys[i], NULL);
		size_t o2;

		if (at == NULL)
			continue;
		o2 = ism_v_push(v, ".%s", keys[i]);
		if (warn)
			ism_v_warn(v, at, "%s %s", keys[i], what);
		else
			ism_v_err(v, at, "%s %s", keys[i], what);
		ism_v_pop(v, o2);
	}
}

/* Mode SIMPLE asks for no client certificate: the fields that check one
 * are errors. */
static void refuse_client_checks(struct ism_vctx *v, const struct ism_node *n)
{
	/* What checks client certificates: MUTUAL and OPTIONAL_MUTUAL only. */
	static const char *const client_checks[] = {
	    "subjectAltNames",	    "verifyCertificateHash", "verifyCertificateSpki",
	    "caCertCredentialName", "insecureSkipVerify",    NULL};

	fields_said(v, n, client_checks, false,
		    "needs mode MUTUAL or OPTIONAL_MUTUAL (SIMPLE asks for no client "
		    "certificate)");
}

/* What the fields of tls n (parsed into t) must say together for its
 * mode: where the certificate and the CA come from, and the versions. */
static void server_check(struct ism_vctx *v, const struct ism_node *n, const struct ism_cm_tls *t)
{
	const struct ism_tls_conf *c = &t->c;
	size_t sources = (ism_node_get(n, "serverCertificate", NULL) != NULL) + (t->n_creds > 0) +
			 (ism_node_get(n, "tlsCertificates", NULL) != NULL);

	if (t->ca_cred != NULL && c->ca.text.len) {
		size_t o2 = ism_v_push(v, ".caCertCredentialName");

		ism_v_err(v, t->ca_cred_at, "use one of caCertificates, caCertCredentialName");
		ism_v_pop(v, o2);
	}
	if (c->mode == ISM_TLS_ISTIO_MUTUAL) {
		static const char *const unapplied[] = {"minProtocolVersion", "maxProtocolVersion",
							"cipherSuites", "ecdhCurves", NULL};

		if (sources || c->ca.text.len || c->n_pins || t->ca_cred != NULL)
			ism_v_err(v, n,
				  "ISTIO_MUTUAL uses the appliance's meshIdentity: "
				  "certificates, credentials, caCertificates, "
				  "caCertCredentialName and pins (verifyCertificateHash, "
				  "verifyCertificateSpki) must be empty");
		fields_said(v, n, unapplied, true,
			    "has no effect with ISTIO_MUTUAL: Istio applies it to SIMPLE, "
			    "MUTUAL and OPTIONAL_MUTUAL only");
	} else {
		if (sources == 0)
			ism_v_err(v, n,
				  "a certificate is required: serverCertificate and "
				  "privateKey, credentialName(s) or tlsCertificates");
		else if (sources > 1)
			ism_v_err(v, n,
				  "use one of serverCertificate, credentialName(s), "
				  "tlsCertificates");
		if (c->mode == ISM_TLS_SIMPLE)
			refuse_client_checks(v, n);
		/* caCertificates for MUTUAL may come from a credential: xref. One
		 * given but refused has its own error already. */
		if (c->mode != ISM_TLS_SIMPLE && c->ca.text.len == 0 && t->n_creds == 0 &&
		    t->ca_cred == NULL && ism_node_get(n, "caCertificates", NULL) == NULL)
			ism_v_err(v, n, "caCertificates is required with mode %s",
				  mode_names[c->mode]);
	}
	if (c->min_ver && c->min_ver < TLS1_2_VERSION && c->ciphers.len == 0) {
		size_t o = ism_v_push(v, ".minProtocolVersion");

		ism_v_warn(v, ism_node_get(n, "minProtocolVersion", NULL),
			   "versions below TLS 1.2 need cipherSuites that suit them: the "
			   "default suites are TLS 1.2's (Istio warns the same)");
		ism_v_pop(v, o);
	}
}

void ism_tls_parse_server(struct ism_vctx *v, const struct ism_node *srv, const char *protocol,
			  struct ism_cm_tls *t)
{
	static const char *const keys[] = {"mode", "httpsRedirect", SERVER_CERT_KEYS,
					   SERVER_HANDSHAKE_KEYS, NULL};
	const struct ism_node *n = ism_v_node(v, srv, "tls", false, ISM_NODE_MAP);
	struct ism_tls_conf *c = &t->c;
	bool tls = ism_srv_class(ism_model_server_kind(protocol, false)) == ISM_SRV_HTTPS;
	bool redirect = false;
	size_t old;
	int mode;

	if (n == NULL) {
		if (tls)
			ism_v_err(
			    v, srv,
			    "%s %s server needs tls (Istio: server must have TLS settings for "
			    "HTTPS/TLS protocols): mode SIMPLE, MUTUAL, OPTIONAL_MUTUAL or "
			    "ISTIO_MUTUAL terminates TLS, PASSTHROUGH passes it through",
			    strcmp(protocol, "HTTPS") == 0 ? "an" : "a", protocol);
		return;
	}
	old = ism_v_push(v, ".tls");
	remember_path(v, t, n);
	if (!tls) {
		plaintext_tls(v, n, protocol, keys, NULL, t);
		ism_v_pop(v, old);
		return;
	}
	ism_v_keys(v, n, keys, NULL);
	/* Istio's ValidateGateway warns; its connections are TLS already. */
	if (ism_v_bool(v, n, "httpsRedirect", &redirect) > 0 && redirect) {
		size_t o2 = ism_v_push(v, ".httpsRedirect");

		ism_v_warn(
		    v, ism_node_get(n, "httpsRedirect", NULL),
		    "tls.httpsRedirect should only be used with http servers (Istio warns the "
		    "same): ignored on this %s server",
		    protocol);
		ism_v_pop(v, o2);
	}
	mode = server_mode(v, n, t);
	if (mode < 0) {
		ism_v_pop(v, old);
		return;
	}
	c->mode = (uint8_t)mode;
	server_fields(v, n, t);
	server_check(v, n, t);
	ism_v_pop(v, old);
}

void ism_tls_parse_client(struct ism_vctx *v, const struct ism_node *tp, struct ism_cm_tls *t)
{
	static const char *const keys[] = {"mode",
					   "clientCertificate",
					   "privateKey",
					   "caCertificates",
					   "caCrl",
					   "credentialName",
					   "subjectAltNames",
					   "insecureSkipVerify",
					   "sni",
					   NULL};
	static const char *const modes[] = {"DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL", NULL};
	const struct ism_node *n = ism_v_node(v, tp, "tls", false, ISM_NODE_MAP);
	struct ism_tls_conf *c = &t->c;
	const char *mode = "DISABLE", *sni;
	bool skip = false;
	size_t old;

	if (n == NULL)
		return;
	old = ism_v_push(v, ".tls");
	remember_path(v, t, n);
	ism_v_keys(v, n, keys, NULL);
	ism_v_enum(v, n, "mode", modes, NULL, &mode);
	c->mode = mode_of(mode);
	if (cert_pair(v, n, "clientCertificate", "privateKey", &c->certs[0]) > 0)
		c->n_certs = 1;
	pem_field(v, n, "caCertificates", PEM_CA, &c->ca);
	pem_field(v, n, "caCrl", PEM_CRL, &c->crl);
	parse_creds(v, n, t);
	ism_tls_parse_sans(v, n, &c->sans, &c->n_sans);
	if (ism_v_str(v, n, "sni", false, &sni) > 0)
		c->sni = (struct ism_str){.p = sni, .len = (uint32_t)strlen(sni)};
	ism_v_bool(v, n, "insecureSkipVerify", &skip);
	c->skip_verify = skip;
	if (c->mode == ISM_TLS_MUTUAL && c->n_certs == 0 && t->n_creds == 0)
		ism_v_err(v, n, "MUTUAL needs clientCertificate and privateKey, or credentialName");
	if (c->mode == ISM_TLS_ISTIO_MUTUAL && (c->n_certs || t->n_creds || c->ca.text.len))
		ism_v_err(v, n,
			  "ISTIO_MUTUAL uses the appliance's meshIdentity: certificates and "
			  "credentials must be empty");
	if (c->mode == ISM_TLS_NONE && n->n > (ism_node_get(n, "mode", NULL) != NULL))
		ism_v_err(v, n, "settings without a TLS mode (DISABLE is plaintext)");
	ism_v_pop(v, old);
}

static void parse_cred(struct ism_vctx *v, const struct ism_node *n, struct ism_cm_cred *cr)
{
	static const char *const keys[] = {"name",	     "certificate", "privateKey",
					   "caCertificates", "caCrl",	    NULL};

	if (!ism_v_expect(v, n, ISM_NODE_MAP) || !ism_v_keys(v, n, keys, NULL))
		return;
	cr->at = n;
	ism_v_str(v, n, "name", true, &cr->name);
	cert_pair(v, n, "certificate", "privateKey", &cr->cert);
	pem_field(v, n, "caCertificates", PEM_CA, &cr->ca);
	pem_field(v, n, "caCrl", PEM_CRL, &cr->crl);
	if (cr->cert.cert.text.len == 0 && cr->ca.text.len == 0)
		ism_v_err(v, n,
			  "a credential needs certificate and privateKey, or "
			  "caCertificates");
}

void ism_tls_parse_appliance(struct ism_vctx *v, const struct ism_node *spec,
			     struct ism_cm_appliance *a)
{
	static const char *const mkeys[] = {"certificate", "privateKey", "caCertificates", "caCrl",
					    NULL};
	const struct ism_node *l = ism_v_node(v, spec, "credentials", false, ISM_NODE_SEQ);
	const struct ism_node *m;
	size_t old;

	if (l != NULL) {
		/* Per credential: how many credentials before it have its name. */
		uint32_t *seen = ism_v_alloc(v, l->n, sizeof(*seen));

		old = ism_v_push(v, ".credentials");
		a->creds = ism_v_alloc(v, l->n, sizeof(*a->creds));
		a->cred_ix = ism_v_map(v, l->n);
		for (size_t i = 0;
		     a->creds != NULL && a->cred_ix != NULL && seen != NULL && i < l->n; i++) {
			size_t o2 = ism_v_push(v, "[%zu]", i);
			struct ism_cm_cred *cr = &a->creds[a->n_creds];
			uint32_t first;

			parse_cred(v, l->items[i], cr);
			/* Reported once for each earlier credential of that name. */
			if (cr->name != NULL &&
			    ism_v_map_add(v, a->cred_ix, cr->name, strlen(cr->name),
					  (uint32_t)a->n_creds, &first) == 0) {
				for (uint32_t j = 0; j < seen[first]; j++)
					ism_v_err(v, l->items[i],
						  "credential \"%s\" is defined twice", cr->name);
				seen[first]++;
			} else if (cr->name != NULL) {
				seen[a->n_creds] = 1;
			}
			if (cr->name != NULL)
				a->n_creds++;
			ism_v_pop(v, o2);
		}
		ism_v_pop(v, old);
	}
	m = ism_v_node(v, spec, "meshIdentity", false, ISM_NODE_MAP);
	if (m == NULL)
		return;
	old = ism_v_push(v, ".meshIdentity");
	if (ism_v_keys(v, m, mkeys, NULL)) {
		if (cert_pair(v, m, "certificate", "privateKey", &a->mesh.certs[0]) > 0)
			a->mesh.n_certs = 1;
		else
			ism_v_err(v, m, "certificate and privateKey are required");
		if (pem_field(v, m, "caCertificates", PEM_CA, &a->mesh.ca) == 0)
			ism_v_err(v, m, "caCertificates (the mesh CA) is required");
		pem_field(v, m, "caCrl", PEM_CRL, &a->mesh.crl);
		a->mesh.mode = ISM_TLS_MUTUAL;
		a->has_mesh = true;
		if (a->mesh.n_certs) {
			struct ism_tlsctx_certcheck k = {0};

			check_usable(v, &k, m, &a->mesh);
			ism_tlsctx_certcheck_free(&k);
		}
	}
	ism_v_pop(v, old);
}

/* Whether a worker's context would take the certificates of c
 * (conf/tlsctx.c): one OpenSSL refuses at its security level (a key too
 * small, a SHA-1 signature) would fail every handshake with nothing said; an
 * error at at, with OpenSSL's reason. */
static void check_usable(struct ism_vctx *v, struct ism_tlsctx_certcheck *k,
			 const struct ism_node *at, const struct ism_tls_conf *c)
{
	ism_conf_ssl_enter();
	ERR_clear_error();
	if (ism_tlsctx_check_certs(k, c) < 0)
		ism_v_err(
		    v, at,
		    "OpenSSL refuses these TLS settings: %s (a certificate whose key is too "
		    "small, RSA under 2048 bits, or whose signature uses SHA-1 is refused at "
		    "the system's OpenSSL security level, 2 on Debian; servers that allow TLS "
		    "1.0 or 1.1 run at level 0)",
		    *ism_tlsctx_error() ? ism_tlsctx_error() : "no reason given");
	ERR_clear_error();
	ism_conf_ssl_leave();
}

static const struct ism_cm_cred *find_cred(const struct ism_cm_appliance *a, const char *name)
{
	uint32_t i;

	if (a->cred_ix == NULL || !ism_strmap_get(a->cred_ix, name, strlen(name), &i))
		return NULL;
	return &a->creds[i];
}

/* credentialName(s) → certificates (and the CA, from the credential itself or
 * from "<name>-cacert", as Istio looks them up). */
static void xref_tls(struct ism_vctx *v, struct ism_tlsctx_certcheck *k, const struct ism_cm_res *r,
		     struct ism_cm_tls *t, bool server)
{
	const struct ism_cm_appliance *a = &v->conf->app;
	struct ism_tls_conf *c = &t->c;
	size_t old;

	if (!t->set)
		return;
	v->res = r->label;
	ism_v_pop(v, 0);
	old = ism_v_push(v, "%s", t->path ? t->path : "");
	if (c->mode == ISM_TLS_ISTIO_MUTUAL && !a->has_mesh)
		ism_v_err(v, t->creds_at,
			  "ISTIO_MUTUAL needs the Appliance's spec.meshIdentity (certificate, "
			  "privateKey, caCertificates)");
	if (t->ca_cred != NULL) {
		const struct ism_cm_cred *ca = find_cred(a, t->ca_cred);

		/* It takes precedence over the CA of credentialName's credential. */
		if (ca == NULL || ca->ca.text.len == 0) {
			size_t o2 = ism_v_push(v, ".caCertCredentialName");

			ism_v_err(v, t->ca_cred_at,
				  "credential \"%s\" is not among the Appliance's "
				  "spec.credentials (with caCertificates)",
				  t->ca_cred);
			ism_v_pop(v, o2);
		} else {
			c->ca = ca->ca;
			if (c->crl.text.len == 0)
				c->crl = ca->crl;
		}
	}
	for (size_t i = 0; i < t->n_creds; i++) {
		const struct ism_cm_cred *cr = find_cred(a, t->creds[i]);
		const struct ism_cm_cred *ca;
		char caname[300];

		if (cr == NULL || cr->cert.cert.text.len == 0) {
			ism_v_err(v, t->creds_at,
				  "credential \"%s\" is not among the Appliance's spec.credentials "
				  "(with certificate and privateKey)",
				  t->creds[i]);
			continue;
		}
		c->certs[c->n_certs++] = cr->cert;
		snprintf(caname, sizeof(caname), "%s-cacert", t->creds[i]);
		ca = cr->ca.text.len ? cr : find_cred(a, caname);
		if (c->ca.text.len == 0 && ca != NULL && ca->ca.text.len) {
			c->ca = ca->ca;
			if (c->crl.text.len == 0)
				c->crl = ca->crl;
		}
	}
	if (server && t->n_creds && c->mode != ISM_TLS_SIMPLE && c->ca.text.len == 0)
		ism_v_err(v, t->creds_at,
			  "mode needs client CA certificates: none in the credential, nor in a "
			  "\"<name>-cacert\" credential");
	if (c->mode != ISM_TLS_ISTIO_MUTUAL)
		check_usable(v, k, t->creds_at, c);
	ism_v_pop(v, old);
}

static void xref_policy(struct ism_vctx *v, struct ism_tlsctx_certcheck *k,
			const struct ism_cm_res *r, struct ism_cm_policy *p)
{
	xref_tls(v, k, r, &p->tp.tls, false);
	for (size_t i = 0; i < p->n_ports; i++)
		xref_tls(v, k, r, &p->ports[i].tp.tls, false);
}

static void xref_pas(struct ism_vctx *v, const struct ism_cm_server *const *on_port);
static void xref_ports(struct ism_vctx *v, const struct ism_cm_server *const *on_port);

bool ism_model_ep_mesh_tls(const struct ism_cm_se_ep *e)
{
	for (size_t i = 0; i < e->n_labels; i++)
		if (strcmp(e->labels[i].key, "security.istio.io/tlsMode") == 0)
			return strcmp(e->labels[i].value, "istio") == 0;
	return e->service_account != NULL;
}

bool ism_model_se_auto_mtls(const struct ism_conf *c, const struct ism_cm_se *se, size_t *first)
{
	size_t k = 0;

	if (!se->mesh_internal || !c->app.auto_mtls ||
	    ism_tls_ns_mtls(c, se->r.ns) == ISM_PA_DISABLE)
		return false;
	while (k < se->n_eps && !ism_model_ep_mesh_tls(&se->eps[k]))
		k++;
	if (first != NULL)
		*first = k;
	return k < se->n_eps;
}

/* A ServiceEntry automatic mutual TLS applies to, on an appliance without a
 * mesh identity: its endpoints in the mesh get plaintext (Istio's gateway
 * always has one). */
static void xref_auto_mtls(struct ism_vctx *v)
{
	const struct ism_conf *c = v->conf;

	if (c->app.has_mesh)
		return;
	for (size_t i = 0; i < c->n_ses; i++) {
		const struct ism_cm_se *se = c->ses[i];
		const struct ism_cm_dr *dr =
		    se->n_hosts ? ism_model_find_dr(c, se->hosts[0]) : NULL;
		size_t k;

		/* A DestinationRule's tls replaces it (its subsets' and ports'
		 * too, which this does not look at). */
		if (!ism_model_se_auto_mtls(c, se, &k) || (dr != NULL && dr->policy.tp.tls.set))
			continue;
		v->res = se->r.label;
		ism_v_pop(v, 0);
		ism_v_push(v, ".spec.location");
		ism_v_warn(v, se->location_at,
			   "endpoints[%zu] takes Istio's automatic mutual TLS (serviceAccount or "
			   "security.istio.io/tlsMode: istio), which needs the Appliance's "
			   "spec.meshIdentity: without it, it is spoken to in plaintext",
			   k);
		ism_v_pop(v, 0);
	}
}

void ism_tls_xref(struct ism_vctx *v)
{
	struct ism_tlsctx_certcheck k = {0};
	struct ism_conf *c = v->conf;
	/* Per port, the first server of the file on it. */
	const struct ism_cm_server **on_port = calloc(65536, sizeof(*on_port));

	if (on_port == NULL) {
		v->nomem = 1;
		return;
	}
	for (size_t g = c->n_gws; g-- > 0;)
		for (size_t s = c->gws[g]->n_servers; s-- > 0;)
			on_port[c->gws[g]->servers[s].port] = &c->gws[g]->servers[s];
	xref_pas(v, on_port);
	xref_ports(v, on_port);
	xref_auto_mtls(v);
	free(on_port);
	for (size_t g = 0; g < c->n_gws; g++)
		for (size_t s = 0; s < c->gws[g]->n_servers; s++)
			xref_tls(v, &k, &c->gws[g]->r, &c->gws[g]->servers[s].tls, true);
	ism_tlsctx_certcheck_free(&k);
}

void ism_tls_xref_drs(struct ism_vctx *v)
{
	struct ism_tlsctx_certcheck k = {0};
	struct ism_conf *c = v->conf;

	for (size_t d = 0; d < c->n_drs; d++) {
		struct ism_cm_dr *dr = c->drs[d];

		if (!ism_model_dr_visible(c, dr))
			continue;
		xref_policy(v, &k, &dr->r, &dr->policy);
		for (size_t s = 0; s < dr->n_subsets; s++)
			xref_policy(v, &k, &dr->r, &dr->subsets[s].policy);
	}
	ism_tlsctx_certcheck_free(&k);
}

/* --- PeerAuthentication, as it applies to the appliance's plaintext listeners --- */

enum pa_level { PA_WORKLOAD, PA_NAMESPACE, PA_MESH, PA_LEVELS };

/* Why a policy does not apply to the appliance (pa_level's negative answers). */
enum { PA_OTHER_NS = -1, PA_ROOT_SELECTOR = -2, PA_NOT_SELECTED = -3 };

/* The level at which pa applies to the appliance, or why it does not. */
static int pa_level(const struct ism_conf *c, const struct ism_cm_pa *pa)
{
	const struct ism_cm_appliance *a = &c->app;
	bool own = strcmp(pa->r.ns, a->ns) == 0, root = strcmp(pa->r.ns, a->root_ns) == 0;

	if (root && !pa->has_selector)
		return PA_MESH;
	if (own && !pa->has_selector)
		return PA_NAMESPACE;
	if (!own && !root)
		return PA_OTHER_NS;
	if (root)
		return PA_ROOT_SELECTOR;
	return ism_model_labels_include(a->labels_at, pa->sel, pa->n_sel) ? PA_WORKLOAD
									  : PA_NOT_SELECTED;
}

/* The policies that apply, by level: the first of each level wins, as
 * Istio keeps the oldest (the file's order, or its creation times: load.c
 * order_by_creation). */
static void pa_levels(const struct ism_conf *c, const struct ism_cm_pa *out[PA_LEVELS])
{
	memset(out, 0, sizeof(*out) * PA_LEVELS);
	for (size_t i = 0; i < c->n_pas; i++) {
		int level = pa_level(c, c->pas[i]);

		if (level >= 0 && out[level] == NULL)
			out[level] = c->pas[i];
	}
}

/* The level whose mode applies: the narrowest that sets one (UNSET inherits
 * from the next); PA_LEVELS: none sets one. */
static int pa_applies(const struct ism_cm_pa *const lv[PA_LEVELS])
{
	int i = 0;

	while (i < PA_LEVELS && (lv[i] == NULL || lv[i]->mode == ISM_PA_UNSET))
		i++;
	return i;
}

uint8_t ism_tls_ns_mtls(const struct ism_conf *c, const char *ns)
{
	const struct ism_cm_pa *nsp = NULL, *mesh = NULL;

	for (size_t i = 0; i < c->n_pas; i++) {
		const struct ism_cm_pa *pa = c->pas[i];

		if (pa->has_selector)
			continue;
		if (nsp == NULL && strcmp(pa->r.ns, ns) == 0)
			nsp = pa;
		if (mesh == NULL && strcmp(pa->r.ns, c->app.root_ns) == 0)
			mesh = pa;
	}
	if (nsp != NULL && nsp->mode != ISM_PA_UNSET)
		return nsp->mode;
	return mesh != NULL ? mesh->mode : ISM_PA_UNSET;
}

void ism_tls_peer_mtls(const struct ism_conf *c, uint8_t *modes)
{
	const struct ism_cm_pa *lv[PA_LEVELS];
	const struct ism_cm_pa *w;
	uint8_t mode;
	int applies;

	/* The first level (workload, namespace, mesh) with a mode set... */
	pa_levels(c, lv);
	w = lv[PA_WORKLOAD];
	applies = pa_applies(lv);
	mode = applies < PA_LEVELS ? lv[applies]->mode : ISM_PA_UNSET;
	memset(modes, mode, 65536);
	/* ...unless the workload policy's first setting for the port is not
	 * UNSET: walked backwards, the first one is written last. */
	for (size_t i = w != NULL ? w->n_ports : 0; i-- > 0;)
		if (w->ports[i].mode != ISM_PA_UNSET)
			modes[w->ports[i].port] = w->ports[i].mode;
	for (uint32_t port = 0; port < 65536; port++) {
		if (!c->app.has_mesh || modes[port] == ISM_PA_DISABLE)
			modes[port] = ISM_TLS_NONE;
		else if (modes[port] == ISM_PA_STRICT)
			modes[port] = ISM_TLS_MUTUAL;
		else
			modes[port] = ISM_TLS_OPTIONAL_MUTUAL;
	}
}

/* What a server of kind k is called in errors. */
static const char *kind_name(uint8_t k)
{
	static const char *const names[] = {
	    [ISM_SRV_HTTP] = "HTTP",
	    [ISM_SRV_HTTPS] = "HTTPS",
	    [ISM_SRV_PASSTHROUGH] = "TLS passthrough",
	    [ISM_SRV_TCP] = "TCP",
	    [ISM_SRV_TLS_TCP] = "TLS",
	};

	return k < sizeof(names) / sizeof(names[0]) ? names[k] : "?";
}

/* The policies that do not apply, each with a warning saying why. */
static void unused_pas(struct ism_vctx *v, const struct ism_cm_pa *const lv[PA_LEVELS])
{
	const struct ism_conf *c = v->conf;

	for (size_t i = 0; i < c->n_pas; i++) {
		const struct ism_cm_pa *pa = c->pas[i];
		const struct ism_node *md = ism_node_get(pa->r.at, "metadata", NULL);
		const struct ism_node *ns = md != NULL ? ism_node_get(md, "namespace", NULL) : NULL;
		int level = pa_level(c, pa);

		/* Another namespace's own policy tells automatic mutual TLS what
		 * that namespace's services accept (ism_tls_ns_mtls). */
		if ((level >= 0 && lv[level] == pa) || (level == PA_OTHER_NS && !pa->has_selector))
			continue;
		v->res = pa->r.label;
		ism_v_pop(v, 0);
		switch (level) {
		case PA_OTHER_NS:
			ism_v_push(v, ns != NULL ? "metadata.namespace" : "metadata");
			ism_v_warn(v, ns != NULL ? ns : pa->r.at,
				   "it selects workloads of namespace %s, not this appliance "
				   "(namespace %s): it does not apply here",
				   pa->r.ns, c->app.ns);
			break;
		case PA_ROOT_SELECTOR:
			ism_v_push(v, "spec.selector");
			ism_v_warn(
			    v, pa->selector_at,
			    "a policy with a selector in the root namespace %s applies to no "
			    "workload, as Istio ignores it",
			    pa->r.ns);
			break;
		case PA_NOT_SELECTED:
			ism_v_push(v, "spec.selector");
			ism_v_warn(
			    v, pa->selector_at,
			    "it does not select this appliance (its spec.labels): it does not "
			    "apply here");
			break;
		default:
			ism_v_push(v, "metadata.name");
			ism_v_warn(v,
				   md != NULL && ism_node_get(md, "name", NULL) != NULL
				       ? ism_node_get(md, "name", NULL)
				       : pa->r.at,
				   "%s, of the same level, is %s and applies (Istio keeps the "
				   "oldest): this one does not",
				   lv[level]->r.label,
				   lv[level]->r.has_created ? "older" : "first in the file");
			break;
		}
	}
}

/* What overrides the mesh-wide policy for the appliance: a namespace policy
 * of mode modes, in its namespace unless that is the root namespace. */
static const char *pa_override(const struct ism_conf *c, const char *modes, char *buf, size_t cap)
{
	if (strcmp(c->app.ns, c->app.root_ns) == 0)
		snprintf(buf, cap,
			 "give the Appliance a spec.namespace other than the root namespace %s, "
			 "then a policy of mode %s in it",
			 c->app.root_ns, modes);
	else
		snprintf(buf, cap, "give namespace %s a policy of mode %s", c->app.ns, modes);
	return buf;
}

static void mesh_strict(struct ism_vctx *v, const struct ism_cm_pa *const lv[PA_LEVELS],
			const struct ism_cm_server *const *on_port)
{
	const struct ism_cm_pa *m = lv[PA_MESH];
	char hint[256];

	if (pa_applies(lv) != PA_MESH || m->mode != ISM_PA_STRICT || !v->conf->app.has_mesh)
		return;
	for (uint32_t port = 1; port < 65536; port++) {
		if (on_port[port] == NULL || on_port[port]->kind != ISM_SRV_HTTP)
			continue;
		v->res = m->r.label;
		ism_v_pop(v, 0);
		ism_v_push(v, "spec.mtls.mode");
		ism_v_warn(
		    v, m->mode_at != NULL ? m->mode_at : m->r.at,
		    "the mesh-wide STRICT makes the plaintext HTTP port %u (and any other) "
		    "mutual TLS only: clients without a mesh certificate are refused. An "
		    "Istio ingress gateway applies no PeerAuthentication; to serve them here, "
		    "%s",
		    port, pa_override(v->conf, "PERMISSIVE or DISABLE", hint, sizeof(hint)));
		return;
	}
}

static void xref_pas(struct ism_vctx *v, const struct ism_cm_server *const *on_port)
{
	const struct ism_conf *c = v->conf;
	const struct ism_cm_pa *lv[PA_LEVELS];
	char hint[256];

	int applies;

	pa_levels(c, lv);
	applies = pa_applies(lv);
	unused_pas(v, lv);
	mesh_strict(v, lv, on_port);
	for (int i = 0; i < PA_LEVELS; i++) {
		const struct ism_cm_pa *pa = lv[i];

		if (pa == NULL)
			continue;
		v->res = pa->r.label;
		ism_v_pop(v, 0);
		ism_v_push(v, "spec.mtls.mode");
		/* A STRICT that a narrower level overrides asks for nothing. */
		if (!c->app.has_mesh && pa->mode == ISM_PA_STRICT && i == applies)
			ism_v_err(v, pa->mode_at != NULL ? pa->mode_at : pa->r.at,
				  "STRICT needs the Appliance's spec.meshIdentity%s%s%s",
				  i == PA_MESH ? " (an Istio ingress gateway applies no "
						 "PeerAuthentication: to leave this appliance's "
						 "ports plaintext, "
					       : "",
				  i == PA_MESH ? pa_override(c, "DISABLE", hint, sizeof(hint)) : "",
				  i == PA_MESH ? ")" : "");
		ism_v_pop(v, 0);
		for (size_t p = 0; i == PA_WORKLOAD && p < pa->n_ports; p++) {
			const struct ism_cm_server *srv = on_port[pa->ports[p].port];
			size_t old = ism_v_push(v, "spec.portLevelMtls.%u", pa->ports[p].port);

			if (!c->app.has_mesh && pa->ports[p].mode == ISM_PA_STRICT)
				ism_v_err(v, pa->ports[p].at,
					  "STRICT needs the Appliance's spec.meshIdentity");
			if (srv == NULL)
				ism_v_warn(v, pa->ports[p].at, "no Gateway server has port %u",
					   pa->ports[p].port);
			else if (srv->kind != ISM_SRV_HTTP)
				ism_v_warn(
				    v, pa->ports[p].at,
				    "port %u is %s: PeerAuthentication applies to plaintext "
				    "HTTP listeners (%s)",
				    pa->ports[p].port, kind_name(srv->kind),
				    srv->kind == ISM_SRV_HTTPS || srv->kind == ISM_SRV_TLS_TCP
					? "the Gateway's tls settings govern this one"
					: "this one carries the client's bytes as they come");
			ism_v_pop(v, old);
		}
	}
}

/* The listener a server is on, as a key: its port and bind address (the
 * Appliance's listenAddress without bind), as conf/compile.c groups them. */
#define LISTENER_KEY 20

static void listener_key(const struct ism_conf *c, const struct ism_cm_server *srv,
			 unsigned char *key)
{
	const char *bind = srv->bind ? srv->bind : c->app.listen;

	memset(key, 0, LISTENER_KEY);
	key[0] = (unsigned char)(srv->port >> 8);
	key[1] = (unsigned char)srv->port;
	/* Validated already: an address of either family, in its bytes. */
	key[2] = inet_pton(AF_INET6, bind, key + 4) == 1 ? 6 : 4;
	if (key[2] == 4)
		inet_pton(AF_INET, bind, key + 4);
}

/* Servers sharing a listener must be of one class (ism_srv_class), and a TCP
 * listener has one server, as Istio merges them (mergeGateways keeps the first
 * of two that cannot share a port, and refuses a second opaque TCP server). */
/* The TLS servers of one listener name each host once, as Istio's
 * MergeGateways wants (it skips a later server that names a host again:
 * "duplicate host names"; Envoy would have two filter chains of one server
 * name). An error at the host named again. */
static void tls_hosts_once(struct ism_vctx *v, const struct ism_cm_gw *gw, size_t s,
			   const unsigned char *key, struct ism_strmap *names,
			   const struct ism_cm_server **owner)
{
	const struct ism_cm_server *srv = &gw->servers[s];
	const struct ism_node *hosts = ism_node_get(srv->at, "hosts", NULL);

	if (ism_srv_class(srv->kind) != ISM_SRV_HTTPS)
		return;
	for (size_t h = 0; h < srv->n_hosts; h++) {
		size_t len = strlen(srv->hosts[h].dns);
		char *name = ism_v_alloc(v, 1, LISTENER_KEY + len);
		uint32_t i = (uint32_t)names->n;
		const struct ism_cm_server *f;

		if (name == NULL)
			return;
		memcpy(name, key, LISTENER_KEY);
		memcpy(name + LISTENER_KEY, srv->hosts[h].dns, len);
		if (ism_v_map_add(v, names, name, LISTENER_KEY + len, i, &i) != 0) {
			owner[i] = srv;
			continue;
		}
		if ((f = owner[i]) == srv)
			continue;
		v->res = gw->r.label;
		ism_v_pop(v, 0);
		ism_v_push(v, "spec.servers[%zu].hosts[%zu]", s, h);
		ism_v_err(v,
			  hosts != NULL && hosts->kind == ISM_NODE_SEQ && h < hosts->n
			      ? hosts->items[h]
			      : srv->at,
			  "port %u: host %s is named by the server at line %d already: a port's "
			  "TLS servers name each host once (Istio skips this server: duplicate "
			  "host names)",
			  srv->port, srv->hosts[h].dns, f->at ? f->at->line : 0);
	}
}

static void xref_listeners(struct ism_vctx *v)
{
	const struct ism_conf *c = v->conf;
	const struct ism_cm_server **first, **owner;
	struct ism_strmap *by_key, *names;
	size_t n = 0, k = 0, n_hosts = 0;

	for (size_t g = 0; g < c->n_gws; g++)
		for (size_t s = 0; s < c->gws[g]->n_servers; s++)
			n_hosts += c->gws[g]->servers[s].n_hosts;
	for (size_t g = 0; g < c->n_gws; g++)
		n += c->gws[g]->n_servers;
	first = ism_v_alloc(v, n, sizeof(*first));
	by_key = ism_v_map(v, n);
	owner = ism_v_alloc(v, n_hosts, sizeof(*owner));
	names = ism_v_map(v, n_hosts);
	for (size_t g = 0;
	     first != NULL && by_key != NULL && owner != NULL && names != NULL && g < c->n_gws;
	     g++) {
		for (size_t s = 0; s < c->gws[g]->n_servers; s++) {
			const struct ism_cm_server *srv = &c->gws[g]->servers[s], *f;
			const struct ism_node *at;
			unsigned char *key = ism_v_alloc(v, 1, LISTENER_KEY);
			uint32_t j;

			if (key == NULL)
				return;
			listener_key(c, srv, key);
			tls_hosts_once(v, c->gws[g], s, key, names, owner);
			if (ism_v_map_add(v, by_key, (const char *)key, LISTENER_KEY, (uint32_t)k,
					  &j) != 0) {
				first[k++] = srv;
				continue;
			}
			f = first[j];
			if (ism_srv_class(f->kind) == ism_srv_class(srv->kind) &&
			    srv->kind != ISM_SRV_TCP)
				continue;
			v->res = c->gws[g]->r.label;
			ism_v_pop(v, 0);
			ism_v_push(v, "spec.servers[%zu].port.protocol", s);
			at = ism_node_get(ism_node_get(srv->at, "port", NULL), "protocol", NULL);
			if (at == NULL)
				at = srv->at;
			ism_v_err(v, at,
				  "port %u: this %s server cannot share it with the %s server at "
				  "line %d: %s",
				  srv->port, kind_name(srv->kind), kind_name(f->kind),
				  f->at ? f->at->line : 0,
				  srv->kind == ISM_SRV_TCP && f->kind == ISM_SRV_TCP
				      ? "a TCP port has one server, whose tcp routes take every "
					"connection"
				      : "a port serves plaintext HTTP, TLS (HTTPS, TLS "
					"passthrough and TLS servers, told apart by SNI) or TCP");
		}
	}
}

/* PROXY protocol ports must be listeners. */
static void xref_ports(struct ism_vctx *v, const struct ism_cm_server *const *on_port)
{
	const struct ism_conf *c = v->conf;

	xref_listeners(v);
	for (size_t i = 0; i < c->app.n_pp_ports; i++) {
		if (on_port[c->app.pp_ports[i]] != NULL)
			continue;
		v->res = c->app.r.label;
		ism_v_pop(v, 0);
		ism_v_push(v, "spec.proxyProtocol.ports[%zu]", i);
		ism_v_err(v, c->app.pp_at, "no Gateway server has port %u", c->app.pp_ports[i]);
	}
}
