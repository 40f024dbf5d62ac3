/* SPDX-License-Identifier: Apache-2.0 */
/* TLS in a worker: OpenSSL over memory BIOs between the io_uring socket
 * operations and HTTP, for client connections (termination) and upstream
 * connections (origination). Private to worker/. */
#ifndef ISM_WORKER_TLS_H
#define ISM_WORKER_TLS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>

#include "shm/table-t.h"

#include "worker/worker-t.h"

/* What ism_xp_on_recv, ism_xp_on_delivery and ism_xp_advance return besides a byte count (> 0),
 * 0 (nothing for the caller yet) and -errno (the connection failed). */
#define ISM_XP_EOF	 (-100000) /* the peer closed (close_notify or end of stream) */
#define ISM_XP_HANDSHAKE (-100001) /* the handshake has just completed */

/* The X-Forwarded-Client-Cert element of a server-side session whose client
 * presented a certificate (that passed the checks), as Envoy builds it for
 * Istio's gateways (SANITIZE_SET with Subject, Cert, URI and DNS):
 * By=<each URI SAN of our certificate>;Hash=<SHA-256 of the client's,
 * hex>;Cert="<its PEM, URL-encoded>";Subject="<its subject, RFC 2253>";
 * URI=<each of its URI SANs>;DNS=<each DNS SAN>. By is left out when our
 * certificate has no URI SAN, URI is empty when the client's has none. A
 * SAN with anything but printable ASCII other than ",;\"" is left out (Envoy
 * writes any). Into out (empty): 1, 0 when the client presented no
 * certificate (nothing written), or -ENOMEM. */
int ism_tls_xfcc(SSL *ssl, struct ism_buf *out);

/* What Envoy's command operator kind (enum ism_hval_kind: DOWNSTREAM_TLS_VERSION,
 * DOWNSTREAM_PEER_URI_SAN, _DNS_SAN, _SUBJECT, _FINGERPRINT_256) gives for
 * the client connection ssl (NULL: plaintext, nothing), appended to out: the
 * SANs comma-separated (those that ism_tls_xfcc leaves out left out here
 * too), the subject in RFC 2253. 0, or -ENOMEM. */
int ism_tls_peer_field(SSL *ssl, int kind, struct ism_buf *out);
/* Whether match holds for one of the client certificate's identities, as
 * Envoy's RBAC matches an authenticated principal: each URI SAN, then each
 * DNS SAN, then the subject (RFC 2253); false without a certificate. */
bool ism_tls_peer_ids(SSL *ssl, bool (*match)(void *ctx, const char *id, size_t len), void *ctx);

/* OpenSSL's record buffers from the worker's block cache (ism_blk_take).
 *
 * Every TLS connection runs with SSL_MODE_RELEASE_BUFFERS, as HAProxy's and
 * nginx's do, so that an idle one holds no 17 KiB read or write buffer: each
 * record read and each write gives its buffer back, and the next takes one
 * again. From glibc that is a malloc and a free of a block too large for its
 * per-thread cache, about 300 instructions each, four a request on an HTTP/2
 * connection with one stream. What idle connections hold is unchanged, and a
 * worker keeps at most a few such blocks more than it uses. The small blocks
 * OpenSSL takes and gives back for each record it writes come from a short
 * list of the worker's likewise.
 *
 * ism_tls_mem_init routes OpenSSL's allocations through here; it must run
 * before OpenSSL allocates anything (first in main): false when too late.
 * Until ism_tls_mem_cache, in a worker (one thread), they go straight to
 * glibc, as in the master, whose loader thread uses OpenSSL too. */
bool ism_tls_mem_init(void);
void ism_tls_mem_cache(void);
/* Record-sized allocations served from the cache, and from glibc, since the
 * cache was turned on (tests). */
void ism_tls_mem_stats(uint64_t *hits, uint64_t *misses);

int ism_tls_init(struct ism_wctx *w);
void ism_tls_free(struct ism_wctx *w);
/* Drops the contexts no server or cluster of the new table uses. */
void ism_tls_table_changed(struct ism_wctx *w);

/* A server-side session for a Gateway server (or the mesh identity), or a
 * client-side one towards endpoint ep_id with server name sni (may be ""), for
 * the socket whose transport is x (what the session writes goes to x->tx); key
 * names settings and server name: a kept session resumes for the same key only;
 * h2: the connection speaks HTTP/2 (its ALPN offer). */
SSL *ism_tls_server_ssl(struct ism_wctx *w, const struct ism_tls_conf *c, struct ism_xport *x);
SSL *ism_tls_client_ssl(struct ism_wctx *w, const struct ism_tls_conf *c, struct ism_xport *x,
			uint32_t ep_id, const char *sni, uint64_t key, bool h2);
/* After a client handshake: keeps the session for the next connection to its
 * endpoint (TLS 1.2; TLS 1.3 tickets come later, kept as they arrive). */
void ism_tls_client_done(SSL *ssl);

/* The transport. */

/* The socket operations themselves (io: the socket; its x is the TLS layer): a receive into a ring
 * buffer (multishot or single), a send (flags added to MSG_NOSIGNAL); what they carry is
 * plaintext or, under TLS, ciphertext. */
void ism_xp_sock_recv(struct ism_wctx *w, struct ism_sock *io, bool multishot);
void ism_xp_sock_send(struct ism_wctx *w, struct ism_sock *io, const char *p, uint32_t len,
		      int flags);
/* The caller waits for plaintext: a receive is armed (multishot where io->mshot
 * says so), or what the session holds is delivered after the batch
 * (ism_sock_deliver_later, then ism_xp_on_delivery). */
void ism_xp_want_read(struct ism_wctx *w, struct ism_sock *io);
int ism_xp_write(struct ism_wctx *w, struct ism_sock *io, const char *p, uint32_t len);
/* A socket receive brought res bytes in ring buffer bid (or the end, or
 * -errno): fed to the session, and plaintext read when the caller waits for
 * it; *pbid gets the private buffer holding plaintext when > 0 is returned. An
 * end that comes while the caller is not reading is kept for it (io->x.end). */
int ism_xp_on_recv(struct ism_wctx *w, struct ism_sock *io, int res, int bid, int *pbid);
/* A delivery queued by ism_xp_want_read: as ism_xp_advance. */
int ism_xp_on_delivery(struct ism_wctx *w, struct ism_sock *io, int *pbid);
/* Ciphertext received and not yet decrypted. */
size_t ism_xp_read_ahead(const struct ism_sock *io);
/* Whether the session holds anything the caller has not read: plaintext,
 * ciphertext, or an end. */
bool ism_xp_unread(const struct ism_sock *io);
/* Feeds bytes already received (a preamble kept while sniffing) to the session. */
int ism_xp_feed(struct ism_sock *io, const char *p, uint32_t len);
/* Runs the handshake or reads plaintext with what the session holds. A failed
 * handshake returns -EPROTO once its alert is sent (unless a send is still in
 * flight): the caller only closes. */
int ism_xp_advance(struct ism_wctx *w, struct ism_sock *io, int *pbid);
/* A socket send completed: 1 when the caller's plaintext send is now complete
 * (*len: its length), 0 when not yet, -errno on failure. */
int ism_xp_on_send(struct ism_wctx *w, struct ism_sock *io, int res, uint32_t *len);
/* Sends close_notify when nothing else is being sent (best effort; else it
 * follows what is). */
void ism_xp_close_notify(struct ism_sock *io);
/* true when ciphertext is still to go out (a send in flight, records
 * gathered): the write side's end (shutdown SHUT_WR) is then left to
 * ism_xp_on_send, once they went. */
bool ism_xp_fin_after_send(struct ism_sock *io);
void ism_xp_free(struct ism_xport *x);

#endif
