/* SPDX-License-Identifier: Apache-2.0 */
/* Key sets fetched for RequestAuthentications: see master/jwks.h. */
#include "master/jwks.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "conf/conf.h"
#include "lib/jose.h"
#include "lib/json.h"
#include "lib/log.h"
#include "worker/http1.h"

#define FETCH_MAX     (1u << 20) /* bytes of an answer, head and body */
#define REDIRECTS_MAX 5
#define HEAD_FIELDS   64

/* One key set, by (issuer, jwksUri) as istiod keys its cache; uri NULL: by
 * the issuer's discovery. */
struct entry {
	char *issuer;
	char *uri;
	uint32_t timeout_ms;
	uint32_t load; /* the last load that named it (ism_jwks_cache_begin_load) */
	char *text;    /* NULL: never fetched */
};

struct ism_jwks_cache {
	struct entry *e;
	size_t n, cap;
	uint32_t refresh_ms, failed_ms;
	uint32_t load; /* the load running or last run */
	struct ism_jwks_source src;
};

/* ---------- one GET ---------- */

/* A URL's parts (within the caller's buffer). */
struct url {
	bool tls;
	char host[256];
	char port[8];
	const char *path; /* "/..." with the query */
};

static bool parse_url(const char *s, struct url *u, char *why, size_t cap)
{
	const char *h, *end, *colon;
	size_t hl;

	if (strncasecmp(s, "https://", 8) == 0)
		h = s + 8, u->tls = true;
	else if (strncasecmp(s, "http://", 7) == 0)
		h = s + 7, u->tls = false;
	else {
		snprintf(why, cap, "%s: not an http or https URL", s);
		return false;
	}
	end = h + strcspn(h, "/?#");
	if (*h == '[') { /* an IPv6 literal */
		const char *rb = memchr(h, ']', (size_t)(end - h));

		colon = rb != NULL && rb + 1 < end && rb[1] == ':' ? rb + 1 : NULL;
		hl = rb != NULL ? (size_t)(rb - h - 1) : 0;
		h++;
	} else {
		colon = memchr(h, ':', (size_t)(end - h));
		hl = (size_t)((colon != NULL ? colon : end) - h);
	}
	if (hl == 0 || hl >= sizeof(u->host) ||
	    (colon != NULL && ((size_t)(end - colon - 1) >= sizeof(u->port) || end == colon + 1))) {
		snprintf(why, cap, "%s: no usable host or port", s);
		return false;
	}
	memcpy(u->host, h, hl);
	u->host[hl] = '\0';
	if (colon != NULL)
		snprintf(u->port, sizeof(u->port), "%.*s", (int)(end - colon - 1), colon + 1);
	else
		snprintf(u->port, sizeof(u->port), "%s", u->tls ? "443" : "80");
	u->path = *end == '/' || *end == '?' ? end : "/";
	return true;
}

/* What is left until deadline, as poll(2) takes it: a timeout of 596 h or
 * more was a negative int, a wait for ever. */
static int left_ms(uint64_t deadline)
{
	uint64_t now = ism_now_ms();

	return now >= deadline ? 0 : deadline - now > INT_MAX ? INT_MAX : (int)(deadline - now);
}

/* A connected TCP socket to u, within the deadline; -1 with why. */
static int dial(const struct url *u, uint64_t deadline, char *why, size_t cap)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res, *ai;
	int fd = -1, rc = getaddrinfo(u->host, u->port, &hints, &res);

	if (rc != 0) {
		snprintf(why, cap, "%s: %s", u->host, gai_strerror(rc));
		return -1;
	}
	snprintf(why, cap, "%s:%s: no address", u->host, u->port);
	for (ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
		struct pollfd p;
		int err = 0;
		socklen_t el = sizeof(err);

		fd = socket(ai->ai_family, ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0)
			continue;
		p = (struct pollfd){.fd = fd, .events = POLLOUT};
		if ((connect(fd, ai->ai_addr, ai->ai_addrlen) < 0 && errno != EINPROGRESS) ||
		    poll(&p, 1, left_ms(deadline)) != 1 ||
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err != 0) {
			snprintf(why, cap, "%s:%s: %s", u->host, u->port,
				 err != 0 ? strerror(err) : "connect timed out");
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	return fd;
}

/* The transport of one GET. */
struct conn {
	int fd;
	SSL *ssl; /* NULL: plain */
	uint64_t deadline;
};

/* Waits until fd is ready for events; false at the deadline. A TLS
 * connection's OpenSSL calls hold off fork() (ism_conf_ssl_enter), its waits
 * do not. */
static bool wait_fd(const struct conn *c, short events)
{
	struct pollfd p = {.fd = c->fd, .events = events};
	int ms = left_ms(c->deadline);
	bool ready;

	if (ms <= 0)
		return false;
	if (c->ssl != NULL)
		ism_conf_ssl_leave();
	ready = poll(&p, 1, ms) == 1;
	if (c->ssl != NULL)
		ism_conf_ssl_enter();
	return ready;
}

/* SSL's want: wait for it; false when it is an error or the deadline passed. */
static bool ssl_wait(const struct conn *c, int ret)
{
	switch (SSL_get_error(c->ssl, ret)) {
	case SSL_ERROR_WANT_READ:
		return wait_fd(c, POLLIN);
	case SSL_ERROR_WANT_WRITE:
		return wait_fd(c, POLLOUT);
	default:
		return false;
	}
}

static bool tls_start(struct conn *c, SSL_CTX *ctx, const char *host, char *why, size_t cap)
{
	struct in6_addr a6;
	int ret;

	if ((c->ssl = SSL_new(ctx)) == NULL || !SSL_set_fd(c->ssl, c->fd))
		goto fail;
	/* The name (or address) the certificate must be for, and SNI. */
	if (strchr(host, ':') != NULL || inet_pton(AF_INET, host, &a6) == 1) {
		if (!X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl), host))
			goto fail;
	} else if (!SSL_set1_host(c->ssl, host) || !SSL_set_tlsext_host_name(c->ssl, host)) {
		goto fail;
	}
	while ((ret = SSL_connect(c->ssl)) != 1)
		if (!ssl_wait(c, ret))
			goto fail;
	return true;
fail:
	if (c->ssl != NULL && SSL_get_verify_result(c->ssl) != X509_V_OK)
		snprintf(why, cap, "%s: TLS: certificate: %s", host,
			 X509_verify_cert_error_string(SSL_get_verify_result(c->ssl)));
	else
		snprintf(why, cap, "%s: TLS handshake failed: %s", host,
			 ERR_error_string(ERR_peek_last_error(), NULL));
	ERR_clear_error();
	return false;
}

/* Sends all of buf; false on an error or at the deadline. */
static bool send_all(const struct conn *c, const char *buf, size_t len)
{
	while (len > 0) {
		ssize_t n = c->ssl != NULL ? SSL_write(c->ssl, buf, (int)len)
					   : send(c->fd, buf, len, MSG_NOSIGNAL);

		if (n > 0) {
			buf += n;
			len -= (size_t)n;
		} else if (c->ssl != NULL ? !ssl_wait(c, (int)n)
					  : (errno != EAGAIN || !wait_fd(c, POLLOUT))) {
			return false;
		}
	}
	return true;
}

/* Reads until the peer closes, into out (at most FETCH_MAX); -1 on an error,
 * at the deadline or past the bound. */
static ssize_t read_all(const struct conn *c, char *out)
{
	size_t len = 0;

	for (;;) {
		ssize_t n = c->ssl != NULL ? SSL_read(c->ssl, out + len, (int)(FETCH_MAX - len))
					   : recv(c->fd, out + len, FETCH_MAX - len, 0);

		if (n > 0) {
			len += (size_t)n;
			if (len == FETCH_MAX)
				return -1;
		} else if (n == 0 || (c->ssl != NULL &&
				      SSL_get_error(c->ssl, (int)n) == SSL_ERROR_ZERO_RETURN)) {
			return (ssize_t)len;
		} else if (c->ssl != NULL ? !ssl_wait(c, (int)n)
					  : (errno != EAGAIN || !wait_fd(c, POLLIN))) {
			return -1;
		}
	}
}

/* The body of answer buf[0, len) by its framing, moved to the front of buf;
 * -1 when malformed. */
static ssize_t body_of(char *buf, size_t len, const struct ism_http_resp *r, size_t head)
{
	struct ism_chunked ch;
	size_t at = head, n = 0;

	if (r->framing.chunked) {
		ism_chunked_init(&ch);
		for (;;) {
			const char *data;
			size_t used, dl;
			int ret = ism_chunked_next(&ch, buf + at, len - at, &used, &data, &dl);

			if (ret < 0)
				return -1;
			memmove(buf + n, data, dl);
			n += dl;
			at += used;
			if (ret == ISM_CHUNK_END)
				return (ssize_t)n;
			if (used == 0 || at == len)
				return -1; /* the peer closed within the body */
		}
	}
	if (r->framing.content_length >= 0) {
		if ((uint64_t)r->framing.content_length > len - head)
			return -1;
		len = head + (size_t)r->framing.content_length;
	}
	memmove(buf, buf + head, len - head);
	return (ssize_t)(len - head);
}

int ism_jwks_fetch(const char *uri, uint32_t timeout_ms, char **body, size_t *blen, char *why,
		   size_t cap)
{
	uint64_t deadline = ism_now_ms() + timeout_ms;
	char *buf = malloc(FETCH_MAX + 1), location[2048];
	SSL_CTX *ctx = NULL;
	int ret = -1;

	if (buf == NULL) {
		snprintf(why, cap, "out of memory");
		return -1;
	}
	snprintf(location, sizeof(location), "%s", uri);
	for (int hop = 0; hop <= REDIRECTS_MAX; hop++) {
		struct ism_http_header hdrs[HEAD_FIELDS];
		struct ism_http_resp r = {.headers = hdrs};
		const struct ism_http_limits lim = {.max_head_bytes = 65536,
						    .max_headers = HEAD_FIELDS};
		struct conn c = {.fd = -1, .deadline = deadline};
		struct url u;
		char req[2600];
		ssize_t n, head = 0;
		bool v6;
		int rl;

		if (!parse_url(location, &u, why, cap))
			break;
		if (u.tls && ctx == NULL) {
			bool made;

			ism_conf_ssl_enter();
			ctx = SSL_CTX_new(TLS_client_method());
			made = ctx != NULL && SSL_CTX_set_default_verify_paths(ctx) &&
			       SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
			if (made)
				SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
			ism_conf_ssl_leave();
			if (!made) {
				snprintf(why, cap, "TLS: cannot set up the client");
				break;
			}
		}
		/* Host: an IPv6 literal in brackets, the port when not the
		 * scheme's. */
		v6 = strchr(u.host, ':') != NULL;
		rl = snprintf(req, sizeof(req),
			      "GET %s HTTP/1.1\r\nhost: %s%s%s%s%s\r\naccept: application/json\r\n"
			      "user-agent: isthmus\r\nconnection: close\r\n\r\n",
			      u.path, v6 ? "[" : "", u.host, v6 ? "]" : "",
			      strcmp(u.port, u.tls ? "443" : "80") != 0 ? ":" : "",
			      strcmp(u.port, u.tls ? "443" : "80") != 0 ? u.port : "");
		if (rl < 0 || (size_t)rl >= sizeof(req)) {
			snprintf(why, cap, "%s: URL too long", location);
			break;
		}
		c.fd = dial(&u, deadline, why, cap);
		n = -1;
		if (u.tls)
			ism_conf_ssl_enter();
		if (c.fd >= 0 && (!u.tls || tls_start(&c, ctx, u.host, why, cap))) {
			if (!send_all(&c, req, (size_t)rl) || (n = read_all(&c, buf)) < 0)
				snprintf(why, cap, "%s: %s", location,
					 ism_now_ms() >= deadline
					     ? "timed out"
					     : "no complete answer (1 MiB at most)");
		}
		SSL_free(c.ssl);
		if (u.tls)
			ism_conf_ssl_leave();
		if (c.fd >= 0)
			close(c.fd);
		if (n < 0)
			break;
		head = ism_http_parse_response(buf, (size_t)n, &lim, &r);
		if (head <= 0 || (n = body_of(buf, (size_t)n, &r, (size_t)head)) < 0) {
			snprintf(why, cap, "%s: a malformed HTTP answer", location);
			break;
		}
		if (r.status >= 200 && r.status < 300) {
			buf[n] = '\0';
			*body = buf;
			*blen = (size_t)n;
			buf = NULL;
			ret = 0;
			break;
		}
		if (r.status == 301 || r.status == 302 || r.status == 303 || r.status == 307 ||
		    r.status == 308) {
			const struct ism_http_header *loc = NULL;

			for (size_t i = 0; i < r.n_headers; i++)
				if (ism_http_header_is(&r.headers[i], "location"))
					loc = &r.headers[i];
			if (loc != NULL && loc->value_len > 0 &&
			    loc->value_len < sizeof(location) - 300) {
				char next[sizeof(location)];

				if (loc->value[0] == '/') /* a path of the same origin */
					snprintf(next, sizeof(next), "%s://%s%s%s%s%.*s",
						 u.tls ? "https" : "http",
						 strchr(u.host, ':') != NULL ? "[" : "", u.host,
						 strchr(u.host, ':') != NULL ? "]:" : ":", u.port,
						 (int)loc->value_len, loc->value);
				else
					snprintf(next, sizeof(next), "%.*s", (int)loc->value_len,
						 loc->value);
				memcpy(location, next, sizeof(location));
				snprintf(why, cap, "%s: too many redirects", uri);
				continue;
			}
		}
		snprintf(why, cap, "%s: status %d", location, r.status);
		break;
	}
	ism_conf_ssl_enter();
	SSL_CTX_free(ctx);
	ism_conf_ssl_leave();
	free(buf);
	ERR_clear_error();
	return ret;
}

/* ---------- the cache ---------- */

/* The issuer's OpenID discovery document's jwks_uri (istiod's
 * resolveJwksURIUsingOpenID), malloc'd; NULL with why. */
static char *discover(const char *issuer, uint32_t timeout_ms, char *why, size_t cap)
{
	size_t il = strlen(issuer);
	char url[2048], *body = NULL, *uri = NULL;
	struct ism_json_doc doc;
	const struct ism_json *j;
	size_t len;

	while (il > 0 && issuer[il - 1] == '/')
		il--;
	snprintf(url, sizeof(url), "%.*s/.well-known/openid-configuration", (int)il, issuer);
	if (ism_jwks_fetch(url, timeout_ms, &body, &len, why, cap) < 0)
		return NULL;
	if (ism_json_parse(body, len, &doc) < 0) {
		snprintf(why, cap, "%s: not JSON", url);
	} else {
		j = ism_json_get(&doc.root, "jwks_uri");
		if (j == NULL || j->type != ISM_JSON_STRING)
			snprintf(why, cap, "%s: no jwks_uri string", url);
		else
			uri = strdup(j->str);
		ism_json_free(&doc);
	}
	free(body);
	return uri;
}

/* Fetches entry e's key set; 0 with e->text replaced when it is one, -1 with
 * why (e->text kept). changed: it differs from the one before. */
static int fetch_entry(struct entry *e, bool *changed, char *why, size_t cap)
{
	char *uri = e->uri != NULL ? e->uri : discover(e->issuer, e->timeout_ms, why, cap);
	char *body = NULL;
	size_t len;
	int ret = -1;

	if (uri != NULL && ism_jwks_fetch(uri, e->timeout_ms, &body, &len, why, cap) == 0) {
		*changed = e->text == NULL || strcmp(e->text, body) != 0;
		free(e->text);
		e->text = body;
		ret = 0;
	}
	if (uri != e->uri)
		free(uri);
	return ret;
}

static bool same(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a != NULL && b != NULL && strcmp(a, b) == 0);
}

/* The entry of (issuer, uri), made (never fetched) the first time; NULL
 * without memory. */
static struct entry *entry_of(struct ism_jwks_cache *c, const char *issuer, const char *uri)
{
	struct entry *e;

	for (size_t i = 0; i < c->n; i++)
		if (strcmp(c->e[i].issuer, issuer) == 0 && same(c->e[i].uri, uri))
			return &c->e[i];
	if (c->n == c->cap) {
		size_t ncap = c->cap ? 2 * c->cap : 8;
		struct entry *ne = realloc(c->e, ncap * sizeof(*ne));

		if (ne == NULL)
			return NULL;
		c->e = ne;
		c->cap = ncap;
	}
	e = &c->e[c->n];
	*e = (struct entry){.issuer = strdup(issuer), .uri = uri ? strdup(uri) : NULL};
	if (e->issuer == NULL || (uri != NULL && e->uri == NULL)) {
		free(e->issuer);
		free(e->uri);
		return NULL;
	}
	c->n++;
	return e;
}

/* conf/authn.c's source: a key set fetched before, or fetched now. */
static const char *get(void *ctx, const char *issuer, const char *uri, uint32_t timeout_ms,
		       char *why, size_t cap)
{
	struct ism_jwks_cache *c = ctx;
	struct entry *e = entry_of(c, issuer, uri);
	bool changed;

	if (e == NULL) {
		snprintf(why, cap, "out of memory");
		return NULL;
	}
	e->timeout_ms = timeout_ms;
	e->load = c->load;
	if (e->text != NULL)
		return e->text;
	if (fetch_entry(e, &changed, why, cap) < 0) {
		ism_warn("JWT key set of %s (%s): %s", issuer, uri ? uri : "OpenID discovery", why);
		return NULL;
	}
	ism_info("JWT key set of %s fetched (%s)", issuer, uri ? uri : "OpenID discovery");
	return e->text;
}

struct ism_jwks_cache *ism_jwks_cache_new(uint32_t refresh_ms)
{
	struct ism_jwks_cache *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	c->src = (struct ism_jwks_source){.get = get, .ctx = c};
	c->refresh_ms = refresh_ms;
	c->failed_ms =
	    refresh_ms < ISM_JWKS_REFRESH_FAILED_MS ? refresh_ms : ISM_JWKS_REFRESH_FAILED_MS;
	return c;
}

void ism_jwks_cache_free(struct ism_jwks_cache *c)
{
	for (size_t i = 0; c != NULL && i < c->n; i++) {
		free(c->e[i].issuer);
		free(c->e[i].uri);
		free(c->e[i].text);
	}
	if (c != NULL)
		free(c->e);
	free(c);
}

bool ism_jwks_cache_entry(const struct ism_jwks_cache *c, size_t i, const char **issuer,
			  const char **uri, const char **text)
{
	if (i >= c->n)
		return false;
	*issuer = c->e[i].issuer;
	*uri = c->e[i].uri;
	*text = c->e[i].text;
	return true;
}

int ism_jwks_cache_seed(struct ism_jwks_cache *c, const char *issuer, const char *uri,
			const char *text)
{
	struct entry *e = entry_of(c, issuer, uri);

	if (e == NULL)
		return -ENOMEM;
	if (e->text == NULL && (e->text = strdup(text)) == NULL)
		return -ENOMEM;
	return 0;
}

void ism_jwks_cache_begin_load(struct ism_jwks_cache *c)
{
	c->load++;
}

void ism_jwks_cache_keep_loaded(struct ism_jwks_cache *c)
{
	size_t n = 0;

	for (size_t i = 0; i < c->n; i++) {
		struct entry *e = &c->e[i];

		if (e->load == c->load) {
			c->e[n++] = *e;
			continue;
		}
		ism_info("JWT key set of %s (%s) dropped: no RequestAuthentication names it",
			 e->issuer, e->uri ? e->uri : "OpenID discovery");
		free(e->issuer);
		free(e->uri);
		free(e->text);
	}
	c->n = n;
}

void ism_jwks_cache_use(struct ism_jwks_cache *c)
{
	ism_conf_jwks_source(c != NULL ? &c->src : NULL);
}

bool ism_jwks_cache_any(const struct ism_jwks_cache *c)
{
	return c != NULL && c->n > 0;
}

bool ism_jwks_cache_missing(const struct ism_jwks_cache *c)
{
	for (size_t i = 0; c != NULL && i < c->n; i++)
		if (c->e[i].text == NULL)
			return true;
	return false;
}

uint64_t ism_jwks_next(const struct ism_jwks_cache *c, uint64_t now, uint64_t cur, bool refreshed,
		       bool failed)
{
	if (!ism_jwks_cache_any(c))
		return 0;
	if (refreshed)
		return now + (failed ? c->failed_ms : c->refresh_ms);
	if (ism_jwks_cache_missing(c))
		return now + c->failed_ms;
	return cur != 0 ? cur : now + c->refresh_ms;
}

bool ism_jwks_cache_refresh(struct ism_jwks_cache *c, bool *failed)
{
	bool any = false;

	*failed = false;
	for (size_t i = 0; i < c->n; i++) {
		struct entry *e = &c->e[i];
		bool changed = false;
		char why[512];

		if (fetch_entry(e, &changed, why, sizeof(why)) < 0) {
			*failed = true;
			ism_warn("JWT key set of %s (%s): refresh failed, %s: %s", e->issuer,
				 e->uri ? e->uri : "OpenID discovery",
				 e->text != NULL ? "the one fetched before stays" : "none yet",
				 why);
		} else if (changed) {
			ism_notice("JWT key set of %s (%s) changed", e->issuer,
				   e->uri ? e->uri : "OpenID discovery");
		}
		any |= changed;
	}
	return any;
}
