/* SPDX-License-Identifier: Apache-2.0 */
/* TLS in a worker (see worker/tls.h).
 *
 * Contexts are built from the PEM text of the table and kept by fingerprint,
 * so a reload that does not touch a certificate reuses its context, and a
 * connection keeps the context it started with (OpenSSL counts references)
 * after a rotation replaced it. Session tickets are sealed with the keys of the
 * shared region, so a session resumes on any worker. */
#include "worker/tls.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "conf/tlsctx.h"
#include "lib/log.h"
#include "worker/ring.h"
#include "worker/sock.h"
#include "worker/router.h"

struct ism_tls {
	struct ism_tlsctx_cache ctxs;
	SSL_SESSION **sess;  /* per endpoint: the last upstream session */
	SSL_CTX **sess_ctx;  /* the context it belongs to */
	uint64_t *sess_key;  /* and the pool key (settings and server name) it was made for */
	BIO_METHOD *tx_meth; /* sessions' write side: straight into the socket's tx */
	BIO_METHOD *rx_meth; /* and their read side, from the socket's rx */
};

static int ep_idx = -1;	       /* SSL ex data: upstream endpoint id + 1 */
static int key_idx = -1;       /* SSL ex data: the upstream connection's pool key */
static struct ism_wctx *tls_w; /* the worker of this process */

/* ---------- session tickets ---------- */

static int ticket_cb(SSL *s, unsigned char name[16], unsigned char *iv, EVP_CIPHER_CTX *cctx,
		     EVP_MAC_CTX *hctx, int enc)
{
	struct ism_ticket_keys *tk = &tls_w->shm->hdr->tickets;
	struct ism_ticket_key k;
	OSSL_PARAM params[3];
	uint32_t seq, tries = 0;
	int found;

	(void)s;
	do {
		seq = atomic_load_explicit(&tk->seq, memory_order_acquire);
		found = -1;
		for (int i = 0; i < ISM_TICKET_KEYS && found < 0; i++) {
			if (enc || memcmp(tk->keys[i].name, name, 16) == 0) {
				memcpy(&k, &tk->keys[i], sizeof(k));
				found = i;
			}
		}
		atomic_thread_fence(memory_order_acquire);
		/* A counter that never settles (a worker wrote it): no ticket,
		 * a full handshake, rather than a wait for ever. */
		if (++tries == ISM_SEQ_TRIES)
			return 0;
	} while ((seq & 1) || seq != atomic_load_explicit(&tk->seq, memory_order_relaxed));
	if (found < 0)
		return 0; /* unknown key: a full handshake */
	params[0] = OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, k.hmac, sizeof(k.hmac));
	params[1] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)"SHA256", 0);
	params[2] = OSSL_PARAM_construct_end();
	if (enc) {
		memcpy(name, k.name, 16);
		if (RAND_bytes(iv, EVP_CIPHER_get_iv_length(EVP_aes_256_cbc())) != 1 ||
		    EVP_EncryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1 ||
		    EVP_MAC_CTX_set_params(hctx, params) != 1)
			return -1;
		return 1;
	}
	if (EVP_DecryptInit_ex(cctx, EVP_aes_256_cbc(), NULL, k.aes, iv) != 1 ||
	    EVP_MAC_CTX_set_params(hctx, params) != 1)
		return -1;
	/* 2: a new ticket is issued. TLS 1.3 clients use a ticket once (RFC 8446
	 * §C.4), so a resumed session must get a fresh one to resume again. */
	return 2;
}

/* ALPN: h2 when the server has it (tls.alpn) and the client offers it, else
 * HTTP/1.1, as Istio's gateway servers offer them (the session tells the
 * protocols apart by the HTTP/2 preface, whatever ALPN said). */
static int alpn_cb(SSL *s, const unsigned char **out, unsigned char *outlen,
		   const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char both[] = "\x02h2\x08http/1.1";
	bool h2 = (uintptr_t)arg & ISM_ALPN_H2;
	const unsigned char *ours = h2 ? both : both + 3;
	unsigned int n = h2 ? sizeof(both) - 1 : sizeof(both) - 4;

	(void)s;
	if (SSL_select_next_proto((unsigned char **)out, outlen, ours, n, in, inlen) ==
	    OPENSSL_NPN_NEGOTIATED)
		return SSL_TLSEXT_ERR_OK;
	return SSL_TLSEXT_ERR_NOACK;
}

static int new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	uintptr_t ep = (uintptr_t)SSL_get_ex_data(ssl, ep_idx);
	struct ism_tls *t = tls_w->tls;

	if (ep == 0 || ep > ISM_MAX_ENDPOINTS || t->sess == NULL || t->sess_ctx == NULL ||
	    t->sess_key == NULL)
		return 0;
	ep--;
	if (t->sess[ep] != NULL)
		SSL_SESSION_free(t->sess[ep]);
	t->sess[ep] = sess;
	t->sess_ctx[ep] = SSL_get_SSL_CTX(ssl);
	t->sess_key[ep] = (uint64_t)(uintptr_t)SSL_get_ex_data(ssl, key_idx);
	return 1; /* we keep the reference */
}

/* ---------- contexts ---------- */

static SSL_CTX *build_ctx(const struct ism_tls_conf *c, int server)
{
	SSL_CTX *ctx = ism_tlsctx_new(c, server);

	if (ctx == NULL)
		return NULL;
	if (server) {
		SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_cb);
		SSL_CTX_set_alpn_select_cb(ctx, alpn_cb, (void *)(uintptr_t)c->alpn);
	} else {
		SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT |
							SSL_SESS_CACHE_NO_INTERNAL_STORE);
		SSL_CTX_sess_set_new_cb(ctx, new_session_cb);
	}
	return ctx;
}

static SSL_CTX *get_ctx(struct ism_wctx *w, const struct ism_tls_conf *c, int server)
{
	return ism_tlsctx_get(&w->tls->ctxs, c, server, build_ctx);
}

/* A session's two sides, on the socket's own buffers. What it writes is
 * appended to the ciphertext to send (x->tx) as the records are made; what it
 * reads comes from the ciphertext received (x->rx, fed by ism_xp_feed). Memory
 * BIOs would hold both in buffers of their own, zeroed as they grow, and the
 * records would be copied out again. */
static int tx_write(BIO *b, const char *p, size_t len, size_t *written)
{
	struct ism_xport *x = BIO_get_data(b);

	BIO_clear_retry_flags(b);
	/* After our close_notify, the last record we send, OpenSSL may still
	 * answer a peer's KeyUpdate: dropped (BoringSSL writes nothing once its
	 * write side is shut), or it would follow the FIN and fail the
	 * connection the peer still sends on (a half close). */
	if (x->notified) {
		*written = len;
		return 1;
	}
	if (len > UINT32_MAX || ism_buf_append(&x->tx, p, (uint32_t)len, UINT32_MAX) < 0)
		return 0;
	*written = len;
	return 1;
}

/* Nothing received yet is "more later" (a retry), not the end of the stream:
 * the end comes from the socket (x->end). */
/* KeyUpdates a peer may send in a row without application data (BoringSSL's
 * kMaxKeyUpdates, so Envoy's): each costs a key derivation, and one that asks
 * for an update of ours a record back. */
#define XP_MAX_KEY_UPDATES 32

static int rx_read(BIO *b, char *p, size_t len, size_t *readbytes)
{
	struct ism_xport *x = BIO_get_data(b);
	size_t n = x->rx.len - x->rx_off;

	BIO_clear_retry_flags(b);
	/* Past the KeyUpdate limit nothing more is read: the caller closes. */
	if (n == 0 || x->key_updates > XP_MAX_KEY_UPDATES) {
		BIO_set_retry_read(b);
		return 0;
	}
	if (n > len)
		n = len;
	memcpy(p, x->rx.p + x->rx_off, n);
	x->rx_off += (uint32_t)n; /* ism_xp_feed drops what was read */
	*readbytes = n;
	return 1;
}

static long tx_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	(void)b;
	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_FLUSH: /* the bytes are in x->tx already */
		return 1;
	default: /* nothing pending inside the BIO, no kTLS, no datagrams */
		return 0;
	}
}

static long rx_ctrl(BIO *b, int cmd, long num, void *ptr)
{
	const struct ism_xport *x = BIO_get_data(b);

	(void)num;
	(void)ptr;
	switch (cmd) {
	case BIO_CTRL_PENDING: /* received, not read yet */
		return (long)(x->rx.len - x->rx_off);
	default: /* no kTLS, no datagrams */
		return 0;
	}
}

static int xp_create(BIO *b)
{
	BIO_set_init(b, 1);
	return 1;
}

int ism_tls_init(struct ism_wctx *w)
{
	struct ism_tls *t;

	tls_w = w;
	if (ep_idx < 0)
		ep_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	if (key_idx < 0)
		key_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
	w->tls = calloc(1, sizeof(*w->tls));
	if (w->tls == NULL)
		return -ENOMEM;
	t = w->tls;
	t->tx_meth = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "isthmus tx");
	t->rx_meth = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "isthmus rx");
	if (t->tx_meth == NULL || !BIO_meth_set_write_ex(t->tx_meth, tx_write) ||
	    !BIO_meth_set_ctrl(t->tx_meth, tx_ctrl) ||
	    !BIO_meth_set_create(t->tx_meth, xp_create) || t->rx_meth == NULL ||
	    !BIO_meth_set_read_ex(t->rx_meth, rx_read) || !BIO_meth_set_ctrl(t->rx_meth, rx_ctrl) ||
	    !BIO_meth_set_create(t->rx_meth, xp_create)) {
		ism_tls_free(w);
		return -ENOMEM;
	}
	return 0;
}

void ism_tls_free(struct ism_wctx *w)
{
	struct ism_tls *t = w->tls;

	if (t == NULL)
		return;
	ism_tlsctx_cache_free(&t->ctxs);
	for (uint32_t i = 0; t->sess != NULL && i < ISM_MAX_ENDPOINTS; i++)
		if (t->sess[i] != NULL)
			SSL_SESSION_free(t->sess[i]);
	free(t->sess);
	free(t->sess_ctx);
	free(t->sess_key);
	BIO_meth_free(t->tx_meth);
	BIO_meth_free(t->rx_meth);
	free(t);
	w->tls = NULL;
}

/* Sessions kept for an upstream that were made with a context going away go
 * too (connections using it hold their own reference). */
static void drop_sessions(SSL_CTX *ctx, void *arg)
{
	struct ism_tls *t = arg;

	for (uint32_t s = 0; t->sess != NULL && s < ISM_MAX_ENDPOINTS; s++) {
		if (t->sess_ctx[s] == ctx) {
			SSL_SESSION_free(t->sess[s]);
			t->sess[s] = NULL;
			t->sess_ctx[s] = NULL;
		}
	}
}

void ism_tls_table_changed(struct ism_wctx *w)
{
	struct ism_tls *t = w->tls;
	const struct ism_table *tb = w->table;

	ism_tlsctx_unmark_all(&t->ctxs);
	ism_tlsctx_mark(&t->ctxs, &tb->mesh, 1);
	for (uint32_t l = 0; l < tb->n_listeners; l++)
		for (uint32_t s = 0; s < tb->listeners[l].n_tls; s++)
			ism_tlsctx_mark(&t->ctxs, &tb->listeners[l].tls[s].tls, 1);
	for (uint32_t c = 0; c < tb->n_clusters; c++)
		ism_tlsctx_mark(&t->ctxs, &tb->clusters[c].tls, 0);
	ism_tlsctx_sweep(&t->ctxs, drop_sessions, t);
}

static void on_msg(int write_p, int version, int content_type, const void *buf, size_t len,
		   SSL *ssl, void *arg)
{
	struct ism_xport *x = arg;

	(void)version;
	(void)ssl;
	if (!write_p && content_type == SSL3_RT_HANDSHAKE && len > 0 &&
	    *(const unsigned char *)buf == SSL3_MT_KEY_UPDATE &&
	    x->key_updates <= XP_MAX_KEY_UPDATES)
		x->key_updates++;
}

static SSL *new_ssl(struct ism_tls *t, SSL_CTX *ctx, struct ism_xport *x)
{
	SSL *ssl = ctx ? SSL_new(ctx) : NULL;
	BIO *r, *wb;

	if (ssl == NULL)
		return NULL;
	r = BIO_new(t->rx_meth);
	wb = BIO_new(t->tx_meth);
	if (r == NULL || wb == NULL) {
		BIO_free(r);
		BIO_free(wb);
		SSL_free(ssl);
		return NULL;
	}
	BIO_set_data(r, x);
	BIO_set_data(wb, x);
	SSL_set_bio(ssl, r, wb);
	SSL_set_msg_callback(ssl, on_msg);
	SSL_set_msg_callback_arg(ssl, x);
	return ssl;
}

SSL *ism_tls_server_ssl(struct ism_wctx *w, const struct ism_tls_conf *c, struct ism_xport *x)
{
	SSL *ssl = new_ssl(w->tls, get_ctx(w, c, 1), x);

	if (ssl != NULL)
		SSL_set_accept_state(ssl);
	return ssl;
}

SSL *ism_tls_client_ssl(struct ism_wctx *w, const struct ism_tls_conf *c, struct ism_xport *x,
			uint32_t ep_id, const char *sni, uint64_t key, bool h2)
{
	struct ism_tls *t = w->tls;
	SSL_CTX *ctx = get_ctx(w, c, 0);
	SSL *ssl = new_ssl(t, ctx, x);

	if (ssl == NULL)
		return NULL;
	SSL_set_connect_state(ssl);
	if (h2)
		ism_tlsctx_h2_alpn(ssl, c->mode == ISM_TLS_ISTIO_MUTUAL);
	SSL_set_ex_data(ssl, ep_idx, (void *)(uintptr_t)(ep_id + 1));
	SSL_set_ex_data(ssl, key_idx, (void *)(uintptr_t)key);
	ism_tlsctx_server_name(ssl, sni);
	if (t->sess == NULL) {
		t->sess = calloc(ISM_MAX_ENDPOINTS, sizeof(*t->sess));
		t->sess_ctx = calloc(ISM_MAX_ENDPOINTS, sizeof(*t->sess_ctx));
		t->sess_key = calloc(ISM_MAX_ENDPOINTS, sizeof(*t->sess_key));
	}
	/* A session is resumed only for the server name it was verified for:
	 * resumption skips the certificate check. */
	if (t->sess != NULL && t->sess_ctx != NULL && t->sess_key != NULL &&
	    ep_id < ISM_MAX_ENDPOINTS && t->sess[ep_id] != NULL && t->sess_ctx[ep_id] == ctx &&
	    t->sess_key[ep_id] == key)
		SSL_set_session(ssl, t->sess[ep_id]);
	return ssl;
}

void ism_tls_client_done(SSL *ssl)
{
	/* TLS 1.2 sessions are complete now; TLS 1.3 tickets arrive later and go
	 * through new_session_cb. */
	if (!SSL_session_reused(ssl) && SSL_version(ssl) < TLS1_3_VERSION) {
		SSL_SESSION *s = SSL_get1_session(ssl);

		if (s != NULL && new_session_cb(ssl, s) == 0)
			SSL_SESSION_free(s);
	}
}

/* ---------- the transport ---------- */

/* What a session may hold unsent of the records it writes by itself (the
 * answers to a peer's KeyUpdate requests, no_renegotiation alerts): past it,
 * it reads no more of what the peer sends until they went out, or a peer
 * that sends such requests and never reads would have them pile up here
 * without end. Four full records: far more than an honest peer causes. */
#define XP_OWN_UNSENT_MAX (4u * 16384u)

static enum ism_op op_recv(struct ism_sock *io)
{
	return io->up ? ISM_OP_URECV : ISM_OP_CRECV;
}

void ism_xp_sock_recv(struct ism_wctx *w, struct ism_sock *io, bool multishot)
{
	ism_w_recv(w, io, ism_ud(op_recv(io), io->idx, io->gen), multishot);
	io->inflight++;
}

void ism_xp_sock_send(struct ism_wctx *w, struct ism_sock *io, const char *p, uint32_t len,
		      int flags)
{
	struct io_uring_sqe *sqe = ism_w_sqe(w);

	io_uring_prep_send(sqe, io->fd, p, len, MSG_NOSIGNAL | flags);
	ism_w_sqe_sock(sqe, io);
	io_uring_sqe_set_data64(sqe,
				ism_ud(io->up ? ISM_OP_USEND : ISM_OP_CSEND, io->idx, io->gen));
	io->inflight++;
}

/* A receive of ciphertext, unless one is in flight: multishot where the owner
 * takes them (worker/sock.c bounds what it reads ahead). */
static void submit_recv(struct ism_wctx *w, struct ism_sock *io)
{
	bool multi = io->mshot && w->mshot;

	if (io->x.raw_recv)
		return;
	ism_xp_sock_recv(w, io, multi);
	io->rx = multi ? ISM_RX_MULTI : ISM_RX_SINGLE;
	io->x.raw_recv = 1;
}

/* Sends what remains of the buffer in flight (txs). */
static void submit_send(struct ism_wctx *w, struct ism_sock *io)
{
	struct ism_xport *x = &io->x;

	ism_xp_sock_send(w, io, x->txs.p + x->txs_off, x->txs.len - x->txs_off, 0);
	x->raw_send = 1;
}

/* Sends what the session wrote (tx_write gathered it in tx). */
static void flush(struct ism_wctx *w, struct ism_sock *io)
{
	struct ism_xport *x = &io->x;

	if (x->tx.len && !x->raw_send) {
		/* The buffer being sent is never grown under the kernel's feet:
		 * new bytes gather in tx while txs goes out. */
		struct ism_buf t = x->txs;

		x->txs = x->tx;
		x->tx = t;
		x->tx.len = 0;
		x->txs_off = 0;
		submit_send(w, io);
	}
}

/* The session's own records not sent yet: all that is unsent, less the
 * caller's send (its records may be partly out already, so up to that many
 * more of the session's own may wait: the caller bounds its sends). */
static uint32_t own_unsent(const struct ism_xport *x)
{
	uint32_t unsent = x->tx.len + (x->txs.len - x->txs_off);
	uint32_t caller = x->plain_pending ? x->plain_ct : 0;

	return unsent > caller ? unsent - caller : 0;
}

/* What the session holds (plaintext, ciphertext, the end) reaches the caller
 * after the batch (ism_xp_on_delivery), never from inside its own call. */
static void deliver_later(struct ism_wctx *w, struct ism_sock *io)
{
	ism_sock_deliver_later(w, io);
	io->x.queued = 1;
}

static uint64_t clock_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* What the session wrote last before the caller closes the socket (an alert,
 * close_notify): sent at once with a non-blocking send(), since a ring send
 * would complete after the close. A few bytes, alone in tx unless a ring send
 * is still in flight (what was written before them went with it). Then they
 * stay behind it: sent after it if the socket lives that long, else the close
 * goes without them. */
static void send_now(struct ism_sock *io)
{
	struct ism_xport *x = &io->x;
	ssize_t sent;

	if (x->raw_send || x->txs.len || x->tx.len == 0)
		return;
	sent = send(io->fd, x->tx.p, x->tx.len, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (sent != (ssize_t)x->tx.len)
		ism_debug("TLS alert or close_notify: %s",
			  sent < 0 ? strerror(errno) : "not all sent");
	x->tx.len = 0;
}

void ism_xp_want_read(struct ism_wctx *w, struct ism_sock *io)
{
	struct ism_xport *x = &io->x;

	x->want = 1;
	if (x->queued)
		return;
	if (x->established && ism_xp_unread(io)) {
		deliver_later(w, io); /* plaintext (or the end) may be here already */
		return;
	}
	submit_recv(w, io);
}

/* The thread's error queue emptied before a call whose SSL_get_error reads it.
 * ERR_clear_error walks all 16 of the queue's slots each time (about 800
 * instructions in OpenSSL 3.0, twice a request); nearly always nothing is
 * queued, which a peek tells for a fraction of that. */
static void clear_errors(void)
{
	if (ERR_peek_error() != 0)
		ERR_clear_error();
}

int ism_xp_write(struct ism_wctx *w, struct ism_sock *io, const char *p, uint32_t len)
{
	struct ism_xport *x = &io->x;
	uint32_t before = x->tx.len;

	clear_errors();
	if (SSL_write(x->ssl, p, (int)len) != (int)len) {
		ism_tls_log_errors("TLS write");
		return -EPROTO;
	}
	x->plain_ct = x->tx.len - before;
	x->plain_len = len;
	x->plain_pending = 1;
	flush(w, io);
	return 0;
}

int ism_xp_feed(struct ism_sock *io, const char *p, uint32_t len)
{
	struct ism_xport *x = &io->x;

	/* What was read goes first: rx holds what is unread, a partial record
	 * at most unless the owner lags (worker/sock.c bounds that). */
	if (x->rx_off) {
		ism_buf_consume(&x->rx, x->rx_off);
		x->rx_off = 0;
	}
	return ism_buf_append(&x->rx, p, len, UINT32_MAX) < 0 ? -ENOMEM : 0;
}

/* The records after the first that have come, read into the rest of its
 * buffer, n bytes filled: OpenSSL's read gives one record's plaintext at a
 * time, and a peer's small records go to the owner in one delivery, not one
 * each (HAProxy reads until its buffer is full too). What stops the reading
 * other than a record not all here (the peer's close_notify, a failure) is
 * the end, which comes after these bytes (x->end; it precedes an end the
 * socket brought). The bytes read. */
static int read_more(struct ism_xport *x, char *p, int n)
{
	size_t got;

	while ((uint32_t)n < ISM_BUF_SIZE && (x->rx.len > x->rx_off || SSL_pending(x->ssl) > 0)) {
		if (SSL_read_ex(x->ssl, p + n, ISM_BUF_SIZE - (uint32_t)n, &got) == 1) {
			x->key_updates = 0; /* those before it were followed by data */
			n += (int)got;
			continue;
		}
		switch (SSL_get_error(x->ssl, 0)) {
		case SSL_ERROR_WANT_READ:
			break;
		case SSL_ERROR_ZERO_RETURN:
			x->end = ISM_XP_EOF;
			break;
		default:
			ism_tls_log_errors("TLS read");
			x->end = -EPROTO;
			break;
		}
		break;
	}
	return n;
}

int ism_xp_advance(struct ism_wctx *w, struct ism_sock *io, int *pbid)
{
	struct ism_xport *x = &io->x;
	int n, err, xb;

	if (!x->established) {
		uint64_t t0;

		/* A client's step may wait for a later turn; an upstream's is
		 * the worker's own request, taken at once. */
		if (!io->up && !ism_sock_hs_turn(w, io))
			return 0;
		t0 = clock_ns();
		clear_errors();
		n = SSL_do_handshake(x->ssl);
		err = n == 1 ? SSL_ERROR_NONE : SSL_get_error(x->ssl, n);
		if (!io->up)
			w->hs_ns += clock_ns() - t0;
		if (err != SSL_ERROR_NONE && err != SSL_ERROR_WANT_READ) {
			x->fail_err = ERR_peek_error();
			ism_tls_log_errors(io->up ? "TLS handshake with upstream"
						  : "TLS handshake");
			/* The alert says why (certificate required, protocol
			 * version, unknown CA); the caller closes next. */
			send_now(io);
			return -EPROTO;
		}
		flush(w, io);
		if (n == 1) {
			x->established = 1;
			return ISM_XP_HANDSHAKE;
		}
		submit_recv(w, io);
		return 0;
	}
	if (!x->want)
		return 0;
	clear_errors();
	if (own_unsent(x) > XP_OWN_UNSENT_MAX) {
		/* The peer does not read what the session answers: what it
		 * sends stays unread (in rx, then in the socket, the receive
		 * cancelled past HOLD_SOFT) until ism_xp_on_send resumes. */
		x->stalled = 1;
		return 0;
	}
	xb = ism_w_xbuf_get(w);
	if (xb < 0)
		return -ENOMEM;
	n = SSL_read(x->ssl, ism_w_buf_addr(w, xb), ISM_BUF_SIZE);
	err = n > 0 ? SSL_ERROR_NONE : SSL_get_error(x->ssl, n);
	if (n > 0) {
		/* KeyUpdates after the last data read stay counted */
		x->key_updates = 0;
		n = read_more(x, ism_w_buf_addr(w, xb), n);
	}
	flush(w, io);
	if (n > 0) {
		x->want = 0;
		*pbid = xb;
		return n;
	}
	ism_w_buf_recycle(w, xb);
	if (err == SSL_ERROR_WANT_READ && x->end == 0 && x->key_updates <= XP_MAX_KEY_UPDATES) {
		submit_recv(w, io);
		return 0;
	}
	/* The end, or a failure: the owner hears it once for its ask, as it
	 * hears bytes (a delivery queued for the same ask, or a receive's
	 * completion in the same batch, would tell it again after it
	 * answered the first: the end of a body twice). */
	x->want = 0;
	if (x->key_updates > XP_MAX_KEY_UPDATES) {
		ism_debug("TLS: more than %d KeyUpdates without data", XP_MAX_KEY_UPDATES);
		return -EPROTO;
	}
	if (err == SSL_ERROR_WANT_READ) {
		/* All that came before the end was read: now the end. */
		n = x->end;
		x->end = 0;
		return n;
	}
	if (err == SSL_ERROR_ZERO_RETURN)
		return ISM_XP_EOF;
	ism_tls_log_errors("TLS read");
	return -EPROTO;
}

int ism_xp_on_recv(struct ism_wctx *w, struct ism_sock *io, int res, int bid, int *pbid)
{
	struct ism_xport *x = &io->x;

	if (res <= 0 || x->end != 0) { /* nothing counts after an end */
		int end = res == 0 ? ISM_XP_EOF : res;

		if (bid >= 0)
			ism_w_buf_recycle(w, bid);
		if (x->end != 0)
			return 0;
		if (!x->established)
			return end;
		/* A multishot's end may come while the caller is busy, or
		 * before it read all that came first: it gets the end once it
		 * has read the rest (now, when it waits and nothing is left). */
		x->end = end;
		return ism_xp_advance(w, io, pbid);
	}
	if (ism_xp_feed(io, ism_w_buf_addr(w, bid), (uint32_t)res) < 0) {
		ism_w_buf_recycle(w, bid);
		return -ENOMEM;
	}
	ism_w_buf_recycle(w, bid);
	return ism_xp_advance(w, io, pbid);
}

int ism_xp_on_delivery(struct ism_wctx *w, struct ism_sock *io, int *pbid)
{
	io->x.queued = 0;
	return ism_xp_advance(w, io, pbid);
}

size_t ism_xp_read_ahead(const struct ism_sock *io)
{
	return io->x.rx.len - io->x.rx_off;
}

bool ism_xp_unread(const struct ism_sock *io)
{
	return SSL_pending(io->x.ssl) > 0 || ism_xp_read_ahead(io) > 0 || io->x.end != 0;
}

int ism_xp_on_send(struct ism_wctx *w, struct ism_sock *io, int res, uint32_t *len)
{
	struct ism_xport *x = &io->x;

	x->raw_send = 0;
	if (res < 0) {
		/* The connection is gone for sending: a reader stalled behind the
		 * session's own records (KeyUpdate answers a peer never read)
		 * would never hear of it: it gets the failure as its end. */
		if (x->end == 0)
			x->end = res;
		x->tx.len = x->txs.len = x->txs_off = 0; /* nothing more goes */
		x->plain_pending = 0;
		x->fin_pending = 0;
		if (x->stalled) {
			x->stalled = 0;
			if (x->want && !x->queued)
				deliver_later(w, io);
		}
		return res;
	}
	x->txs_off += (uint32_t)res;
	if (x->txs_off < x->txs.len) {
		submit_send(w, io); /* short send: the rest */
		return 0;
	}
	x->txs.len = x->txs_off = 0;
	flush(w, io);
	if (x->fin_pending && !x->raw_send) {
		x->fin_pending = 0;
		shutdown(io->fd, SHUT_WR);
	}
	if (x->stalled && own_unsent(x) <= XP_OWN_UNSENT_MAX) {
		x->stalled = 0;
		if (x->want && !x->queued)
			deliver_later(w, io);
	}
	if (x->raw_send || !x->plain_pending)
		return 0;
	x->plain_pending = 0;
	*len = x->plain_len;
	return 1;
}

bool ism_xp_fin_after_send(struct ism_sock *io)
{
	struct ism_xport *x = &io->x;

	x->fin_pending = x->raw_send || x->tx.len || x->txs.len;
	return x->fin_pending;
}

void ism_xp_close_notify(struct ism_sock *io)
{
	struct ism_xport *x = &io->x;

	/* Once: a lingering close sent it already. */
	if (x->ssl == NULL || !x->established || (SSL_get_shutdown(x->ssl) & SSL_SENT_SHUTDOWN))
		return;
	ERR_clear_error();
	SSL_shutdown(x->ssl);
	x->notified = 1;
	send_now(io);
	ERR_clear_error();
}

void ism_xp_free(struct ism_xport *x)
{
	SSL_free(x->ssl);
	x->ssl = NULL;
	ism_buf_free(&x->tx);
	ism_buf_free(&x->txs);
	ism_buf_free(&x->rx);
	memset(x, 0, sizeof(*x));
}

/* ---------- X-Forwarded-Client-Cert ---------- */

/* The room an element may take: a certificate of 16 KiB, URL-encoded. */
#define XFCC_MAX (64u * 1024u)

/* Envoy's PercentEncoding::urlEncode: RFC 3986's unreserved characters as
 * they are, any other byte as %XX. */
static int put_url_encoded(struct ism_buf *out, const char *p, size_t n)
{
	static const char hex[] = "0123456789ABCDEF";
	int ret = 0;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)p[i];
		char esc[3] = {'%', hex[c >> 4], hex[c & 15]};

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
		    c == '-' || c == '.' || c == '_' || c == '~')
			ret |= ism_buf_append(out, p + i, 1, XFCC_MAX);
		else
			ret |= ism_buf_append(out, esc, 3, XFCC_MAX);
	}
	return ret;
}

/* A SAN that can go into the field as it is: printable ASCII, none of the
 * field's own separators and quotes. */
static bool san_plain(const ASN1_IA5STRING *s)
{
	const unsigned char *p = ASN1_STRING_get0_data(s);
	int n = ASN1_STRING_length(s);

	for (int i = 0; i < n; i++)
		if (p[i] <= 0x20 || p[i] >= 0x7f || p[i] == ',' || p[i] == ';' || p[i] == '"')
			return false;
	return n > 0;
}

/* Each SAN of type of cert after sep (none at the start of out) and key. */
static int put_sans(struct ism_buf *out, X509 *cert, int type, const char *sep, const char *key)
{
	GENERAL_NAMES *names =
	    cert ? X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL) : NULL;
	int ret = 0;

	for (int i = 0; names != NULL && i < sk_GENERAL_NAME_num(names); i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
		const ASN1_IA5STRING *s = g->type == type ? g->d.ia5 : NULL;

		if (s == NULL || !san_plain(s))
			continue;
		ret |= ism_buf_put_str(out, out->len ? sep : "", XFCC_MAX);
		ret |= ism_buf_put_str(out, key, XFCC_MAX);
		ret |= ism_buf_append(out, ASN1_STRING_get0_data(s),
				      (uint32_t)ASN1_STRING_length(s), XFCC_MAX);
	}
	GENERAL_NAMES_free(names);
	return ret;
}

/* prefix, what the memory BIO b holds (printed: it was written whole),
 * URL-encoded or not, and suffix; -ENOMEM when it was not. */
static int put_printed(struct ism_buf *out, BIO *b, bool printed, const char *prefix, bool url,
		       const char *suffix)
{
	char *p;
	long n = printed ? BIO_get_mem_data(b, &p) : -1;
	int ret;

	if (n < 0)
		return -ENOMEM;
	ret = ism_buf_put_str(out, prefix, XFCC_MAX);
	ret |= url ? put_url_encoded(out, p, (size_t)n)
		   : ism_buf_append(out, p, (uint32_t)n, XFCC_MAX);
	return ret | ism_buf_put_str(out, suffix, XFCC_MAX);
}

/* n bytes in lowercase hex. */
static int put_hex(struct ism_buf *out, const unsigned char *p, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	int ret = 0;

	for (size_t i = 0; i < n; i++) {
		char h[2] = {hex[p[i] >> 4], hex[p[i] & 15]};

		ret |= ism_buf_append(out, h, 2, XFCC_MAX);
	}
	return ret;
}

/* The digest md (SHA-256, SHA-1) of cert, in hex. */
static int put_fingerprint(struct ism_buf *out, X509 *cert, const EVP_MD *md)
{
	unsigned char d[EVP_MAX_MD_SIZE];
	unsigned int n = 0;

	if (X509_digest(cert, md, d, &n) != 1)
		return -ENOMEM;
	return put_hex(out, d, n);
}

/* prefix, name (RFC 2253: control characters escaped), suffix. */
static int put_name(struct ism_buf *out, const X509_NAME *name, const char *prefix,
		    const char *suffix)
{
	BIO *b = BIO_new(BIO_s_mem());
	int ret =
	    put_printed(out, b, b != NULL && X509_NAME_print_ex(b, name, 0, XN_FLAG_RFC2253) >= 0,
			prefix, false, suffix);

	BIO_free(b);
	return ret;
}

/* prefix, cert's subject, suffix. */
static int put_subject(struct ism_buf *out, X509 *cert, const char *prefix, const char *suffix)
{
	return put_name(out, X509_get_subject_name(cert), prefix, suffix);
}

/* prefix, cert in PEM and URL-encoded (Envoy's form), suffix. */
static int put_pem(struct ism_buf *out, X509 *cert, const char *prefix, const char *suffix)
{
	BIO *pem = BIO_new(BIO_s_mem());
	int ret = put_printed(out, pem, pem != NULL && PEM_write_bio_X509(pem, cert) == 1, prefix,
			      true, suffix);

	BIO_free(pem);
	return ret;
}

/* cert's serial number in lowercase hex, as Envoy prints it. */
static int put_serial(struct ism_buf *out, X509 *cert)
{
	BIGNUM *bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), NULL);
	char *h = bn != NULL ? BN_bn2hex(bn) : NULL;
	int ret = h != NULL ? 0 : -ENOMEM;

	for (char *c = h; c != NULL && *c; c++)
		*c = (char)tolower((unsigned char)*c);
	if (h != NULL)
		ret = ism_buf_put_str(out, h, XFCC_MAX);
	OPENSSL_free(h);
	BN_free(bn);
	return ret;
}

/* Time t as START_TIME shows one: 2018-12-18T01:50:34.000Z. */
static int put_asn1_time(struct ism_buf *out, const ASN1_TIME *t)
{
	struct tm tm;
	char s[32];

	if (t == NULL || ASN1_TIME_to_tm(t, &tm) != 1)
		return 0;
	return ism_buf_append(
	    out, s, (uint32_t)ism_time_iso((uint64_t)timegm(&tm) * 1000, s, sizeof(s)), XFCC_MAX);
}

/* The TLS session's identifier, in hex. */
static int put_session_id(struct ism_buf *out, SSL *ssl)
{
	const SSL_SESSION *sess = SSL_get_session(ssl);
	unsigned int n = 0;
	const unsigned char *id = sess != NULL ? SSL_SESSION_get_id(sess, &n) : NULL;

	return id != NULL ? put_hex(out, id, n) : 0;
}

int ism_tls_xfcc(SSL *ssl, struct ism_buf *out)
{
	X509 *peer = SSL_get0_peer_certificate(ssl);
	uint32_t uri_at;
	int ret;

	if (peer == NULL)
		return 0;
	ret = put_sans(out, SSL_get_certificate(ssl), GEN_URI, ";", "By=");
	ret |= ism_buf_put_str(out, out->len ? ";Hash=" : "Hash=", XFCC_MAX);
	ret |= put_fingerprint(out, peer, EVP_sha256());
	ret |= put_pem(out, peer, ";Cert=\"", "\"");
	/* Printed empty, the subject is still a key of its own (Envoy's). */
	ret |= put_subject(out, peer, ";Subject=\"", "\"");
	/* So is URI, when the certificate has none. */
	uri_at = out->len;
	ret |= put_sans(out, peer, GEN_URI, ";", "URI=");
	if (out->len == uri_at)
		ret |= ism_buf_put_str(out, ";URI=", XFCC_MAX);
	ret |= put_sans(out, peer, GEN_DNS, ";", "DNS=");
	return ret ? -ENOMEM : 1;
}

bool ism_tls_peer_ids(SSL *ssl, bool (*match)(void *ctx, const char *id, size_t len), void *ctx)
{
	static const int types[] = {GEN_URI, GEN_DNS};
	X509 *peer = ssl != NULL ? SSL_get0_peer_certificate(ssl) : NULL;
	GENERAL_NAMES *names;
	struct ism_buf subject = {0};
	bool hit = false;

	if (peer == NULL)
		return false;
	names = X509_get_ext_d2i(peer, NID_subject_alt_name, NULL, NULL);
	for (size_t t = 0; t < sizeof(types) / sizeof(types[0]) && !hit; t++)
		for (int i = 0; names != NULL && i < sk_GENERAL_NAME_num(names) && !hit; i++) {
			const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);

			if (g->type == types[t])
				hit = match(ctx, (const char *)ASN1_STRING_get0_data(g->d.ia5),
					    (size_t)ASN1_STRING_length(g->d.ia5));
		}
	GENERAL_NAMES_free(names);
	if (!hit && put_subject(&subject, peer, "", "") == 0)
		hit = match(ctx, subject.p != NULL ? subject.p : "", subject.len);
	ism_buf_free(&subject);
	return hit;
}

int ism_tls_peer_field(SSL *ssl, int kind, struct ism_buf *out)
{
	X509 *peer = ssl != NULL ? SSL_get0_peer_certificate(ssl) : NULL;
	X509 *local = ssl != NULL ? SSL_get_certificate(ssl) : NULL;
	const SSL_CIPHER *cipher;

	if (ssl == NULL)
		return 0;
	switch ((enum ism_hval_kind)kind) {
	case ISM_HV_TLS_VERSION:
		return ism_buf_put_str(out, SSL_get_version(ssl), XFCC_MAX);
	case ISM_HV_TLS_CIPHER:
		cipher = SSL_get_current_cipher(ssl);
		return cipher != NULL ? ism_buf_put_str(out, SSL_CIPHER_get_name(cipher), XFCC_MAX)
				      : 0;
	case ISM_HV_TLS_SESSION_ID:
		return put_session_id(out, ssl);
	case ISM_HV_LOCAL_URI_SAN:
		return put_sans(out, local, GEN_URI, ",", "");
	case ISM_HV_LOCAL_DNS_SAN:
		return put_sans(out, local, GEN_DNS, ",", "");
	case ISM_HV_LOCAL_SUBJECT:
		return local != NULL ? put_subject(out, local, "", "") : 0;
	default:
		break;
	}
	if (peer == NULL)
		return 0;
	switch ((enum ism_hval_kind)kind) {
	case ISM_HV_PEER_URI_SAN:
		return put_sans(out, peer, GEN_URI, ",", "");
	case ISM_HV_PEER_DNS_SAN:
		return put_sans(out, peer, GEN_DNS, ",", "");
	case ISM_HV_PEER_SUBJECT:
		return put_subject(out, peer, "", "");
	case ISM_HV_PEER_ISSUER:
		return put_name(out, X509_get_issuer_name(peer), "", "");
	case ISM_HV_PEER_FINGERPRINT:
		return put_fingerprint(out, peer, EVP_sha256());
	case ISM_HV_PEER_FINGERPRINT_1:
		return put_fingerprint(out, peer, EVP_sha1());
	case ISM_HV_PEER_SERIAL:
		return put_serial(out, peer);
	case ISM_HV_PEER_CERT:
		return put_pem(out, peer, "", "");
	case ISM_HV_PEER_V_START:
		return put_asn1_time(out, X509_get0_notBefore(peer));
	case ISM_HV_PEER_V_END:
		return put_asn1_time(out, X509_get0_notAfter(peer));
	default:
		return 0;
	}
}

/* ---------- record buffers ---------- */

/* OpenSSL 3.0's read buffer is 16,712 bytes (the largest record, its
 * overhead and alignment), its write buffers a little smaller: every
 * allocation of [MEM_MIN, ISM_BLK_RECORD] bytes is an ISM_BLK_RECORD block. */
#define MEM_MIN 16384u
/* It also takes and gives back a few small blocks for each record it writes
 * (WPACKET's sub-packets, 40 bytes, three a record in 3.0): allocations of 1
 * to MEM_SMALL bytes are MEM_SMALL-byte blocks, of which up to MEM_SMALL_KEEP
 * wait on a list for the next (glibc's malloc and free cost about 100
 * instructions a pair, the list a tenth of that). */
#define MEM_SMALL      48u
#define MEM_SMALL_KEEP 16u

static struct {
	bool on;
	size_t usable;	     /* malloc_usable_size of an ISM_BLK_RECORD block */
	size_t small_usable; /* and of a MEM_SMALL block */
	uint32_t n_small;
	void *small[MEM_SMALL_KEEP];
	uint64_t hits, misses;
} mem;

static void *mem_malloc(size_t n, const char *file, int line)
{
	void *p;

	(void)file;
	(void)line;
	if (!mem.on)
		return malloc(n);
	if (n - 1 < MEM_SMALL) /* 1 to MEM_SMALL */
		return mem.n_small > 0 ? mem.small[--mem.n_small] : malloc(MEM_SMALL);
	if (n < MEM_MIN || n > ISM_BLK_RECORD)
		return malloc(n);
	p = ism_blk_take(ISM_BLK_RECORD);
	if (p != NULL) {
		mem.hits++;
		return p;
	}
	mem.misses++;
	return malloc(ISM_BLK_RECORD);
}

static void *mem_realloc(void *p, size_t n, const char *file, int line)
{
	(void)file;
	(void)line;
	return realloc(p, n);
}

/* A block of the usable size of ours is one of ours, or as good: it holds
 * any allocation of [MEM_MIN, ISM_BLK_RECORD] bytes (of 1 to MEM_SMALL). */
static void mem_free(void *p, const char *file, int line)
{
	size_t usable;

	(void)file;
	(void)line;
	if (p == NULL || !mem.on) {
		free(p);
		return;
	}
	usable = malloc_usable_size(p);
	if (usable == mem.small_usable && mem.n_small < MEM_SMALL_KEEP)
		mem.small[mem.n_small++] = p;
	else if (usable == mem.usable)
		ism_blk_give(p, ISM_BLK_RECORD);
	else
		free(p);
}

bool ism_tls_mem_init(void)
{
	return CRYPTO_set_mem_functions(mem_malloc, mem_realloc, mem_free) == 1;
}

void ism_tls_mem_cache(void)
{
	void *probe = malloc(ISM_BLK_RECORD), *small = malloc(MEM_SMALL);

	if (probe == NULL || small == NULL) {
		free(probe);
		free(small);
		return;
	}
	mem.usable = malloc_usable_size(probe);
	mem.small_usable = malloc_usable_size(small);
	ism_blk_give(probe, ISM_BLK_RECORD);
	mem.small[mem.n_small++] = small;
	mem.on = true;
}

void ism_tls_mem_stats(uint64_t *hits, uint64_t *misses)
{
	*hits = mem.hits;
	*misses = mem.misses;
}
