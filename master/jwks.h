/* SPDX-License-Identifier: Apache-2.0 */
/* Private to master/: the key sets RequestAuthentications name by jwksUri (or
 * by their issuer's OpenID discovery), fetched and kept as istiod's
 * JwksResolver keeps them (pilot/pkg/model/jwks_resolver.go):
 *
 * - a load asks for a rule's key set (conf/authn.c's source): one fetched
 *   before is given as it is; a new one is fetched then, within the rule's
 *   timeout, without retries (istiod's main flow);
 * - every 20 minutes (istiod's PILOT_JWT_PUB_KEY_REFRESH_INTERVAL), or a
 *   minute after a refresh that failed, each is fetched again; a failed
 *   fetch keeps what was fetched before, and a change publishes a new
 *   generation;
 * - a key set that the last load published did not name (its
 *   RequestAuthentication was removed or changed) is dropped: it is neither
 *   kept nor fetched again (istiod evicts one unused for a day);
 * - a key set that cannot be had (the fetch failed, or what came is not a
 *   JWKS) leaves its provider without keys, so its tokens are refused (Jwt
 *   verification fails), as istiod's fail-closed public-only key set does.
 *
 * HTTP/1.1 GET over TCP or TLS (the system's trusted roots, as Go's
 * SystemCertPool; SSL_CERT_FILE and SSL_CERT_DIR as OpenSSL reads them), 2xx
 * wanted, redirects followed (at most 5), at most 1 MiB. Called by the
 * loader's thread (and at start), never by the loop. */
#ifndef ISM_MASTER_JWKS_H
#define ISM_MASTER_JWKS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The refresh intervals (istiod's): the first can be set as istiod's is, by
 * the environment variable PILOT_JWT_PUB_KEY_REFRESH_INTERVAL (a duration,
 * "20m"); the one after a failure is never longer. */
#define ISM_JWKS_REFRESH_MS	   (20u * 60 * 1000)
#define ISM_JWKS_REFRESH_FAILED_MS (60u * 1000)
#define ISM_JWKS_REFRESH_ENV	   "PILOT_JWT_PUB_KEY_REFRESH_INTERVAL"

struct ism_jwks_cache;

/* A cache refreshed every refresh_ms. */
struct ism_jwks_cache *ism_jwks_cache_new(uint32_t refresh_ms);
void ism_jwks_cache_free(struct ism_jwks_cache *c);
/* The i-th key set (0..): true with its issuer, its jwksUri (NULL: by
 * discovery) and its text (NULL: never fetched); false past the last. */
bool ism_jwks_cache_entry(const struct ism_jwks_cache *c, size_t i, const char **issuer,
			  const char **uri, const char **text);
/* A binary upgrade: the key set of (issuer, uri) as the old master had it,
 * given to the first load as fetched (refreshed as any). 0 or -ENOMEM. */
int ism_jwks_cache_seed(struct ism_jwks_cache *c, const char *issuer, const char *uri,
			const char *text);
/* A load begins (the master's thread, the loader idle): the key sets it
 * asks for are marked as its own. */
void ism_jwks_cache_begin_load(struct ism_jwks_cache *c);
/* The load that began last was published: the key sets it did not ask for
 * are dropped. */
void ism_jwks_cache_keep_loaded(struct ism_jwks_cache *c);
/* c becomes the key sets' source of the loads that follow (conf/authn.c). */
void ism_jwks_cache_use(struct ism_jwks_cache *c);
/* Whether the cache holds a key set to refresh; one never fetched. */
bool ism_jwks_cache_any(const struct ism_jwks_cache *c);
bool ism_jwks_cache_missing(const struct ism_jwks_cache *c);
/* When the key sets are fetched again (monotonic; 0: never, none is kept),
 * after a load at now (cur: the time set before; refreshed: the load was a
 * refresh, failed: one of its fetches failed): the refresh interval after a
 * refresh that worked, a minute (at most) after one that failed or a load
 * that left one unfetched, as istiod's refresher. */
uint64_t ism_jwks_next(const struct ism_jwks_cache *c, uint64_t now, uint64_t cur, bool refreshed,
		       bool failed);
/* Fetches every key set again; a failed fetch keeps the old one. true when
 * one changed (a load then publishes it). *failed: one could not be had. */
bool ism_jwks_cache_refresh(struct ism_jwks_cache *c, bool *failed);

/* GET uri (http or https) within timeout_ms: 0 and the body (*body, *len;
 * free it), or -1 with why. */
int ism_jwks_fetch(const char *uri, uint32_t timeout_ms, char **body, size_t *len, char *why,
		   size_t cap);

#endif
