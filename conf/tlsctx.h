/* SPDX-License-Identifier: Apache-2.0 */
/* OpenSSL contexts made from a table's TLS settings (struct ism_tls_conf):
 * certificates and keys from their PEM text, the CA and CRL that verify the
 * peer, subjectAltName matching, versions, ciphers, the client's ALPN offer.
 * The workers build theirs here (adding session tickets, the server's ALPN
 * choice and the client's session cache, worker/tls.c), and so does the
 * master's health checker, which speaks TLS to TLS upstreams as Envoy's
 * checker does through the cluster's transport socket. */
#ifndef ISM_CONF_TLSCTX_H
#define ISM_CONF_TLSCTX_H

#include <stdbool.h>

#include <openssl/ssl.h>

#include "lib/strmap.h"
#include "shm/table-t.h"

/* Envoy's defaults for a context that names no cipher suites (TLS 1.2; TLS 1.3
 * suites are not configurable) and no ECDH curves: ECDHE with AES-GCM or
 * ChaCha20-Poly1305, and X25519 and P-256. */
#define ISM_TLS_DEFAULT_CIPHERS                                                                    \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-CHACHA20-POLY1305:"                             \
	"ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305:"                                 \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384"
#define ISM_TLS_DEFAULT_CURVES "X25519:P-256"

/* Fetches once, in the master before any worker is forked, an algorithm of
 * every kind a handshake uses (the TLS 1.3 and 1.2 key derivations, HMAC,
 * the AEAD ciphers, the digests, the key exchanges and signatures): OpenSSL
 * 3.0 builds a provider's algorithms of a kind at their first fetch, and one
 * allocation failing then leaves the kind unusable in that process for good
 * (a worker would refuse every TLS 1.3 handshake, silently). Built here, every
 * worker inherits them. One the providers lack (ChaCha20 under FIPS) is
 * skipped. 0, or -ENOMEM naming what could not be built in *what. */
int ism_tls_warm(const char **what);
/* A server or client context for c; NULL (the reason logged at debug, and
 * kept for ism_tlsctx_error) when the library refuses a part of it: a
 * certificate its security level refuses (a key too small, a SHA-1
 * signature), a suite or curve list it does not take. */
SSL_CTX *ism_tlsctx_new(const struct ism_tls_conf *c, int server);
/* Why the last ism_tlsctx_new or ism_tlsctx_check_certs of this thread that
 * failed did: OpenSSL's reason ("" when it gave none). */
const char *ism_tlsctx_error(void);
/* Whether the certificates of c would go into a context made of it, at the
 * security level it would have: checked in a context made once per checker
 * (a context costs about a millisecond to make in OpenSSL 3), reused for
 * every c, each certificate (its PEM text, which must live as long as the
 * checker) once per level. 0, or -1 (the reason for ism_tlsctx_error). */
struct ism_tlsctx_certcheck {
	SSL_CTX *ctx[2];	   /* at the system's security level, at level 0 */
	struct ism_strmap seen[2]; /* certificates it took, by their text */
	bool init;
};
int ism_tlsctx_check_certs(struct ism_tlsctx_certcheck *k, const struct ism_tls_conf *c);
void ism_tlsctx_certcheck_free(struct ism_tlsctx_certcheck *k);
/* Contexts by the fingerprint of their settings and their side, so a reload
 * that keeps the settings keeps the context (a session holds a reference of
 * its own to the one it started with). A table change unmarks every context,
 * marks the ones the new table uses (ism_tlsctx_get or _mark) and sweeps. */
struct ism_tlsctx_entry {
	uint64_t fp;
	uint8_t server;
	uint8_t used;
	SSL_CTX *ctx;
};

struct ism_tlsctx_cache {
	struct ism_tlsctx_entry *e;
	uint32_t n, cap;
};

/* c's context for that side, made with make the first time; marked used.
 * NULL when it cannot be made. */
SSL_CTX *ism_tlsctx_get(struct ism_tlsctx_cache *k, const struct ism_tls_conf *c, int server,
			SSL_CTX *(*make)(const struct ism_tls_conf *c, int server));
void ism_tlsctx_mark(struct ism_tlsctx_cache *k, const struct ism_tls_conf *c, int server);
void ism_tlsctx_unmark_all(struct ism_tlsctx_cache *k);
/* Frees the contexts left unmarked, each after gone(ctx, arg) if given. */
void ism_tlsctx_sweep(struct ism_tlsctx_cache *k, void (*gone)(SSL_CTX *ctx, void *arg), void *arg);
void ism_tlsctx_cache_free(struct ism_tlsctx_cache *k);

/* Whether a certificate's DNS name pattern (plen bytes) covers name, as
 * Envoy's dnsNameMatch: equal ignoring case, or a wildcard in the pattern's
 * first label only (not an A-label: "xn--"), "*" or one "*" within the label
 * ("f*.example.com"), standing for a part of name's first label; the rest
 * must be equal and both must have two labels at least. "*.internal" covers
 * "a.internal" (OpenSSL's host check refuses it), never "a.b.internal". */
bool ism_tlsctx_dns_name_covers(const char *pattern, size_t plen, const char *name);
/* The server name a client session sends (none when sni is ""). Where its
 * context's configuration has name_check (the DestinationRule names no
 * subjectAltNames: Istio's automatic SAN check), a DNS subjectAltName of the
 * server's certificate must cover it, as Envoy matches names: never its
 * subject's CN. An IP address (bracketed or not) is not sent: one of the
 * certificate's IP subjectAltNames must be it instead. */
void ism_tlsctx_server_name(SSL *ssl, const char *sni);
/* Offers HTTP/2 by ALPN on a client session, as Istio's gateway does:
 * istio-h2, istio, h2 towards the mesh (mesh: ISTIO_MUTUAL, its istio.alpn
 * filter), h2 otherwise. */
void ism_tlsctx_h2_alpn(SSL *ssl, bool mesh);
/* Logs (debug) and clears the library's error queue, each line after what. */
void ism_tls_log_errors(const char *what);

#endif
