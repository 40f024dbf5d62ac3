/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench/tunnel_load.c — the load client of bench/tunnel.sh, one thread, epoll.
 *
 *   --mode ws   CONNS WebSocket connections (GET with Upgrade, the 101 and its
 *               Sec-WebSocket-Accept checked), each keeping DEPTH binary messages of SIZE bytes
 *               in flight: a message is sent (masked, RFC 6455) each time an echo comes back
 *               whole and equal to what was sent. Counts echoed messages and their round trips.
 *   --mode tcp  CONNS TCP connections, each writing a byte stream (a pattern, CHUNK bytes per
 *               write) while at most WINDOW bytes are unanswered, and reading the echo, checked
 *               byte for byte. Counts bytes echoed (each one crossed the proxy both ways).
 *               With --tls SNI, over TLS (the server name SNI, the certificate not checked):
 *               a TLS server of the proxy that terminates for a tcp route.
 *
 * The connections are opened first (not timed); then the load runs for DURATION seconds and
 * one line is printed:
 *   ws:  mode=ws conns=N seconds=S messages=M rate=R bytes=B p50_us=A p99_us=B errors=E alive=L
 *        cpu_pct=C
 *   tcp: mode=tcp conns=N seconds=S bytes=B mib_per_s=R errors=E alive=L cpu_pct=C
 * errors: connections that failed (closed, reset, a wrong echo) during the run; alive: those
 * still open at the end; cpu_pct: this client's own CPU use during the run (user + system, 100 =
 * one CPU), so that a run can tell whether the client was the bottleneck. Exit status 0
 * when something was echoed and nothing failed, 1 otherwise.
 *
 * Build: `make` builds BUILD/bench/tunnel_load (libcrypto for the Sec-WebSocket-Accept
 * check, libssl for --tls); or cc -O2 -o tunnel_load bench/tunnel_load.c
 * $(pkg-config --cflags --libs libssl libcrypto)
 * Usage: tunnel_load --mode ws|tcp --connect ADDR:PORT [--conns N] [--duration S] [--size B]
 *                    [--depth D] [--chunk B] [--window B] [--host HOST] [--tls SNI]
 * Defaults: conns 64 (ws) / 4 (tcp), duration 10, size 64, depth 1, chunk 65536, window
 * 1048576, host bench.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LOAD_MAX_CONNS	20000
#define LOAD_MAX_DEPTH	64
#define LOAD_MAX_SIZE	65536
#define LOAD_PATTERN	251 /* the TCP stream's byte at offset o is o % 251 */
#define LOAD_HIST_US	(1 << 20)
#define LOAD_SETUP_S	10
#define LOAD_MAX_EVENTS 256
#define LOAD_RBUF	(256 * 1024)
#define LOAD_IO_BUDGET	16

struct load_opts {
	bool ws;
	struct sockaddr_in addr;
	const char *host;
	int conns;
	double duration;
	size_t size, chunk, window;
	int depth;
	const char *tls; /* tcp: the server name to send over TLS; NULL: plaintext */
};

struct load_conn {
	int fd;
	bool dead;
	uint32_t armed;
	/* ws: pending bytes of the frames being sent; tcp: nothing (written from the pattern) */
	uint8_t *out;
	size_t out_off, out_len;
	uint8_t *rbuf; /* ws: received, not yet parsed */
	size_t rlen;
	/* ws: send times of the messages in flight (a ring) */
	uint64_t sent_ns[LOAD_MAX_DEPTH];
	int head, inflight;
	/* tcp: stream offsets */
	uint64_t sent, rcvd;
	SSL *ssl;    /* --tls */
	size_t wlen; /* --tls: the length of a write to try again (SSL_write's rule), 0: none */
};

struct load_run {
	struct load_opts o;
	int epfd;
	uint8_t *frame; /* ws: one masked client frame, sent as is */
	size_t frame_len;
	uint8_t *payload; /* ws: what the echo must carry */
	uint8_t *pattern; /* tcp: LOAD_PATTERN-periodic bytes, chunk + LOAD_PATTERN long */
	bool counting;
	SSL_CTX *ctx; /* --tls */
	uint64_t messages, bytes, errors;
	uint32_t *hist; /* ws: round trips in microseconds */
};

static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static int usage(void)
{
	fprintf(stderr,
		"usage: tunnel_load --mode ws|tcp --connect ADDR:PORT [--conns N] [--duration S] "
		"[--size B] [--depth D] [--chunk B] [--window B] [--host HOST] [--tls SNI]\n");
	return 2;
}

static int parse_opts(int argc, char **argv, struct load_opts *o)
{
	const char *mode = NULL, *connect_to = NULL;

	*o = (struct load_opts){.host = "bench",
				.conns = -1,
				.duration = 10,
				.size = 64,
				.chunk = 65536,
				.window = 1 << 20,
				.depth = 1};
	for (int i = 1; i + 1 < argc; i += 2) {
		const char *k = argv[i], *v = argv[i + 1];

		if (strcmp(k, "--mode") == 0)
			mode = v;
		else if (strcmp(k, "--connect") == 0)
			connect_to = v;
		else if (strcmp(k, "--conns") == 0)
			o->conns = atoi(v);
		else if (strcmp(k, "--duration") == 0)
			o->duration = atof(v);
		else if (strcmp(k, "--size") == 0)
			o->size = strtoul(v, NULL, 10);
		else if (strcmp(k, "--depth") == 0)
			o->depth = atoi(v);
		else if (strcmp(k, "--chunk") == 0)
			o->chunk = strtoul(v, NULL, 10);
		else if (strcmp(k, "--window") == 0)
			o->window = strtoul(v, NULL, 10);
		else if (strcmp(k, "--host") == 0)
			o->host = v;
		else if (strcmp(k, "--tls") == 0)
			o->tls = v;
		else
			return -1;
	}
	if (mode == NULL || connect_to == NULL || (argc - 1) % 2 != 0)
		return -1;
	o->ws = strcmp(mode, "ws") == 0;
	if (!o->ws && strcmp(mode, "tcp") != 0)
		return -1;
	if (o->conns < 0)
		o->conns = o->ws ? 64 : 4;
	{
		char a[64];
		const char *colon = strrchr(connect_to, ':');

		if (colon == NULL || (size_t)(colon - connect_to) >= sizeof(a))
			return -1;
		memcpy(a, connect_to, (size_t)(colon - connect_to));
		a[colon - connect_to] = '\0';
		o->addr.sin_family = AF_INET;
		o->addr.sin_port = htons((uint16_t)atoi(colon + 1));
		if (inet_pton(AF_INET, a, &o->addr.sin_addr) != 1)
			return -1;
	}
	if ((o->ws && o->tls != NULL) || o->conns < 1 || o->conns > LOAD_MAX_CONNS ||
	    o->duration <= 0 || o->size < 1 || o->size > LOAD_MAX_SIZE || o->depth < 1 ||
	    o->depth > LOAD_MAX_DEPTH || o->chunk < 1 || o->chunk > (1 << 22) ||
	    o->window < o->chunk)
		return -1;
	return 0;
}

/* ---- setup: connect, and for ws the handshake, blocking with a deadline ----------------- */

static int wait_fd(int fd, short ev, uint64_t deadline)
{
	struct pollfd p = {.fd = fd, .events = ev};
	uint64_t now = now_ns();

	if (now >= deadline)
		return -ETIMEDOUT;
	return poll(&p, 1, (int)((deadline - now) / 1000000) + 1) == 1 ? 0 : -ETIMEDOUT;
}

static int ws_handshake(struct load_run *r, int fd, uint64_t deadline)
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	char req[512], resp[4096], key[25], want[64], cat[64];
	unsigned char nonce[16], digest[EVP_MAX_MD_SIZE];
	unsigned int dlen = 0;
	size_t got = 0;
	int n;

	for (int i = 0; i < 16; i++)
		nonce[i] = (unsigned char)rand();
	EVP_EncodeBlock((unsigned char *)key, nonce, 16);
	n = snprintf(
	    req, sizeof(req),
	    "GET /bench HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n",
	    r->o.host, key);
	if (send(fd, req, (size_t)n, MSG_NOSIGNAL) != n)
		return -EIO;
	while (got < sizeof(resp) - 1) {
		ssize_t m;

		if (wait_fd(fd, POLLIN, deadline) < 0)
			return -ETIMEDOUT;
		m = recv(fd, resp + got, sizeof(resp) - 1 - got, 0);
		if (m <= 0)
			return -EIO;
		got += (size_t)m;
		resp[got] = '\0';
		if (strstr(resp, "\r\n\r\n"))
			break;
	}
	if (strncmp(resp, "HTTP/1.1 101", 12) != 0) {
		fprintf(stderr, "tunnel_load: the upgrade was answered %.40s\n", resp);
		return -EPROTO;
	}
	if (strlen(strstr(resp, "\r\n\r\n") + 4) != 0)
		return -EPROTO; /* nothing may follow the 101 before we send */
	snprintf(cat, sizeof(cat), "%s%s", key, guid);
	if (!EVP_Digest(cat, strlen(cat), digest, &dlen, EVP_sha1(), NULL))
		return -EIO;
	EVP_EncodeBlock((unsigned char *)want, digest, (int)dlen);
	for (char *p = resp; (p = strstr(p, "\r\n")) != NULL; p += 2)
		if (strncasecmp(p + 2, "sec-websocket-accept:", 21) == 0) {
			const char *v = p + 23;

			while (*v == ' ')
				v++;
			if (strncmp(v, want, strlen(want)) == 0)
				return 0;
		}
	fprintf(stderr, "tunnel_load: no valid Sec-WebSocket-Accept in the 101\n");
	return -EPROTO;
}

/* --tls: the handshake on blocking fd, bounded by the setup's deadline. */
static int tls_handshake(struct load_run *r, struct load_conn *c, int fd, uint64_t deadline)
{
	uint64_t now = now_ns();
	struct timeval tv = {.tv_sec =
				 now < deadline ? (time_t)((deadline - now) / 1000000000u) + 1 : 1};

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	c->ssl = SSL_new(r->ctx);
	if (c->ssl == NULL || !SSL_set_fd(c->ssl, fd) ||
	    !SSL_set_tlsext_host_name(c->ssl, r->o.tls) || SSL_connect(c->ssl) != 1) {
		fprintf(stderr, "tunnel_load: the TLS handshake failed\n");
		return -EPROTO;
	}
	return 0;
}

static int open_conn(struct load_run *r, struct load_conn *c, uint64_t deadline)
{
	int one = 1, fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	struct epoll_event e = {.events = EPOLLIN, .data.ptr = c};

	if (fd < 0)
		return -errno;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (struct sockaddr *)&r->o.addr, sizeof(r->o.addr)) < 0 ||
	    (r->o.ws && ws_handshake(r, fd, deadline) < 0) ||
	    (r->o.tls != NULL && tls_handshake(r, c, fd, deadline) < 0) ||
	    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK) < 0 ||
	    epoll_ctl(r->epfd, EPOLL_CTL_ADD, fd, &e) < 0) {
		close(fd);
		return -EIO;
	}
	c->fd = fd;
	c->armed = e.events;
	c->rbuf = malloc(LOAD_RBUF);
	if (r->o.ws)
		c->out = malloc(r->frame_len * (size_t)r->o.depth);
	if (c->rbuf == NULL || (r->o.ws && c->out == NULL))
		return -ENOMEM;
	return 0;
}

/* ---- the run --------------------------------------------------------------------------- */

static void conn_fail(struct load_run *r, struct load_conn *c, const char *why)
{
	if (c->dead)
		return;
	c->dead = true;
	if (r->counting) {
		r->errors++;
		if (r->errors <= 5)
			fprintf(stderr, "tunnel_load: a connection failed: %s\n", why);
	}
	epoll_ctl(r->epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
}

static void arm(struct load_run *r, struct load_conn *c, bool want_out)
{
	uint32_t ev = EPOLLIN | (want_out ? EPOLLOUT : 0);
	struct epoll_event e = {.events = ev, .data.ptr = c};

	if (ev != c->armed && epoll_ctl(r->epfd, EPOLL_CTL_MOD, c->fd, &e) == 0)
		c->armed = ev;
}

static void ws_queue(struct load_run *r, struct load_conn *c, uint64_t now)
{
	memcpy(c->out + c->out_len, r->frame, r->frame_len);
	c->out_len += r->frame_len;
	c->sent_ns[(c->head + c->inflight) % r->o.depth] = now;
	c->inflight++;
}

/* One echoed frame at rbuf[0, len): checked, counted, and another message queued. */
static int ws_echoed(struct load_run *r, struct load_conn *c, const uint8_t *f, size_t hl,
		     size_t plen)
{
	uint64_t now = now_ns(), us;

	if (f[0] != 0x82 || plen != r->o.size || memcmp(f + hl, r->payload, plen) != 0)
		return -1;
	if (c->inflight == 0)
		return -1;
	us = (now - c->sent_ns[c->head]) / 1000;
	c->head = (c->head + 1) % r->o.depth;
	c->inflight--;
	if (r->counting) {
		r->messages++;
		r->bytes += plen;
		r->hist[us < LOAD_HIST_US ? us : LOAD_HIST_US - 1]++;
	}
	ws_queue(r, c, now);
	return 0;
}

static void ws_io(struct load_run *r, struct load_conn *c)
{
	bool drained = false;

	/* A bounded number of reads per call, so that the clock is looked at; no read
	 * after a short one (the socket was empty: epoll says when it is not). */
	for (int budget = LOAD_IO_BUDGET; budget > 0; budget--) {
		size_t off = 0, room;
		ssize_t n;

		while (c->out_off < c->out_len) {
			n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
			if (n < 0 && errno == EAGAIN)
				break;
			if (n <= 0) {
				conn_fail(r, c, "send failed");
				return;
			}
			c->out_off += (size_t)n;
		}
		if (c->out_off == c->out_len)
			c->out_off = c->out_len = 0;
		if (drained)
			break;
		room = LOAD_RBUF - c->rlen;
		n = recv(c->fd, c->rbuf + c->rlen, room, 0);
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0) {
			conn_fail(r, c, n == 0 ? "closed by the peer" : "recv failed");
			return;
		}
		c->rlen += (size_t)n;
		drained = (size_t)n < room;
		while (c->rlen - off >= 2) {
			const uint8_t *f = c->rbuf + off;
			size_t avail = c->rlen - off, hl = 2, plen = f[1] & 0x7f;

			if (f[1] & 0x80) {
				conn_fail(r, c, "a masked server frame");
				return;
			}
			if (plen == 126) {
				hl = 4;
				if (avail < hl)
					break;
				plen = (size_t)f[2] << 8 | f[3];
			} else if (plen == 127) {
				hl = 10;
				if (avail < hl)
					break;
				plen = 0;
				for (int i = 2; i < 10; i++)
					plen = plen << 8 | f[i];
			}
			if (plen > LOAD_MAX_SIZE) {
				conn_fail(r, c, "a frame over 64 KiB");
				return;
			}
			if (avail < hl + plen)
				break;
			if (ws_echoed(r, c, f, hl, plen) < 0) {
				conn_fail(r, c, "an echo that differs from the message");
				return;
			}
			off += hl + plen;
		}
		memmove(c->rbuf, c->rbuf + off, c->rlen - off);
		c->rlen -= off;
	}
	arm(r, c, c->out_off < c->out_len);
}

/* send(), or SSL_write over --tls: bytes written, or -1 with errno (EAGAIN: try again
 * when the socket allows, with the same length over TLS). */
static ssize_t tcp_send(struct load_conn *c, const uint8_t *p, size_t len)
{
	int n;

	if (c->ssl == NULL)
		return send(c->fd, p, len, MSG_NOSIGNAL);
	if (c->wlen)
		len = c->wlen;
	n = SSL_write(c->ssl, p, (int)len);
	if (n > 0) {
		c->wlen = 0;
		return n;
	}
	switch (SSL_get_error(c->ssl, n)) {
	case SSL_ERROR_WANT_WRITE:
	case SSL_ERROR_WANT_READ:
		c->wlen = len;
		errno = EAGAIN;
		return -1;
	default:
		errno = EIO;
		return -1;
	}
}

/* recv(), or SSL_read over --tls: as recv() (0: the end). */
static ssize_t tcp_recv(struct load_conn *c, uint8_t *p, size_t len)
{
	int n;

	if (c->ssl == NULL)
		return recv(c->fd, p, len, 0);
	n = SSL_read(c->ssl, p, (int)len);
	if (n > 0)
		return n;
	switch (SSL_get_error(c->ssl, n)) {
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_WANT_READ:
	case SSL_ERROR_WANT_WRITE:
		errno = EAGAIN;
		return -1;
	default:
		errno = EIO;
		return -1;
	}
}

static void tcp_io(struct load_run *r, struct load_conn *c)
{
	bool blocked = false, drained = false;

	for (int budget = LOAD_IO_BUDGET; budget > 0; budget--) {
		ssize_t n;

		while (!blocked && c->sent - c->rcvd < r->o.window) {
			size_t room = (size_t)(r->o.window - (c->sent - c->rcvd));

			n = tcp_send(c, r->pattern + c->sent % LOAD_PATTERN,
				     room < r->o.chunk ? room : r->o.chunk);
			if (n < 0 && errno == EAGAIN) {
				blocked = true;
				break;
			}
			if (n <= 0) {
				conn_fail(r, c, "send failed");
				return;
			}
			c->sent += (uint64_t)n;
		}
		if (drained)
			break;
		n = tcp_recv(c, c->rbuf, LOAD_RBUF);
		if (n < 0 && errno == EAGAIN)
			break;
		if (n <= 0) {
			conn_fail(r, c, n == 0 ? "closed by the peer" : "recv failed");
			return;
		}
		if (memcmp(c->rbuf, r->pattern + c->rcvd % LOAD_PATTERN, (size_t)n) != 0) {
			conn_fail(r, c, "the echo differs from the stream sent");
			return;
		}
		c->rcvd += (uint64_t)n;
		if (r->counting)
			r->bytes += (uint64_t)n;
		blocked = false;
		/* A TLS read gives one record: the socket may hold more. */
		drained = c->ssl == NULL && (size_t)n < LOAD_RBUF;
	}
	arm(r, c, blocked);
}

static int prepare(struct load_run *r)
{
	size_t plen = r->o.size, hl = plen < 126 ? 2 : plen < 65536 ? 4 : 10, pat;
	static const uint8_t mask[4] = {0x5a, 0xa5, 0x3c, 0xc3};

	r->payload = malloc(plen);
	r->frame = malloc(hl + 4 + plen);
	pat = (r->o.chunk > LOAD_RBUF ? r->o.chunk : LOAD_RBUF) + LOAD_PATTERN;
	r->pattern = malloc(pat);
	r->hist = calloc(LOAD_HIST_US, sizeof(*r->hist));
	if (!r->payload || !r->frame || !r->pattern || !r->hist)
		return -ENOMEM;
	for (size_t i = 0; i < pat; i++)
		r->pattern[i] = (uint8_t)(i % LOAD_PATTERN);
	for (size_t i = 0; i < plen; i++)
		r->payload[i] = (uint8_t)('a' + i % 26);
	r->frame[0] = 0x82; /* FIN, binary */
	if (hl == 2) {
		r->frame[1] = (uint8_t)(0x80 | plen);
	} else if (hl == 4) {
		r->frame[1] = 0x80 | 126;
		r->frame[2] = (uint8_t)(plen >> 8);
		r->frame[3] = (uint8_t)plen;
	} else {
		r->frame[1] = 0x80 | 127;
		for (int i = 0; i < 8; i++)
			r->frame[2 + i] = (uint8_t)((uint64_t)plen >> (56 - 8 * i));
	}
	memcpy(r->frame + hl, mask, 4);
	for (size_t i = 0; i < plen; i++)
		r->frame[hl + 4 + i] = r->payload[i] ^ mask[i & 3];
	r->frame_len = hl + 4 + plen;
	return 0;
}

/* This process's CPU time (user + system), in nanoseconds. */
static uint64_t cpu_ns(void)
{
	struct rusage u;

	getrusage(RUSAGE_SELF, &u);
	return (uint64_t)(u.ru_utime.tv_sec + u.ru_stime.tv_sec) * 1000000000u +
	       (uint64_t)(u.ru_utime.tv_usec + u.ru_stime.tv_usec) * 1000u;
}

static uint64_t percentile(const uint32_t *hist, uint64_t total, double q)
{
	uint64_t want = (uint64_t)(q * (double)total + 0.999999), seen = 0;

	if (total == 0)
		return 0;
	if (want < 1)
		want = 1;
	for (uint64_t i = 0; i < LOAD_HIST_US; i++) {
		seen += hist[i];
		if (seen >= want)
			return i;
	}
	return LOAD_HIST_US - 1;
}

int main(int argc, char **argv)
{
	static struct load_run r;
	struct load_conn *conns;
	struct epoll_event ev[LOAD_MAX_EVENTS];
	uint64_t t0, end, setup_deadline, cpu0;
	double secs, cpu_pct;
	int alive = 0;

	if (parse_opts(argc, argv, &r.o) < 0)
		return usage();
	srand((unsigned)now_ns());
	signal(SIGPIPE, SIG_IGN);
	r.epfd = epoll_create1(EPOLL_CLOEXEC);
	conns = calloc((size_t)r.o.conns, sizeof(*conns));
	if (r.o.tls != NULL) {
		r.ctx = SSL_CTX_new(TLS_client_method());
		if (r.ctx != NULL)
			SSL_CTX_set_mode(r.ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
						    SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
	}
	if (r.epfd < 0 || conns == NULL || (r.o.tls != NULL && r.ctx == NULL) || prepare(&r) < 0) {
		perror("tunnel_load");
		return 1;
	}
	setup_deadline = now_ns() + (uint64_t)LOAD_SETUP_S * 1000000000u;
	for (int i = 0; i < r.o.conns; i++) {
		if (open_conn(&r, &conns[i], setup_deadline) < 0) {
			fprintf(stderr, "tunnel_load: connection %d of %d could not be opened\n",
				i + 1, r.o.conns);
			return 1;
		}
	}
	r.counting = true;
	cpu0 = cpu_ns();
	t0 = now_ns();
	end = t0 + (uint64_t)(r.o.duration * 1e9);
	for (int i = 0; i < r.o.conns; i++) {
		if (r.o.ws) {
			for (int d = 0; d < r.o.depth; d++)
				ws_queue(&r, &conns[i], t0);
			ws_io(&r, &conns[i]);
		} else {
			tcp_io(&r, &conns[i]);
		}
	}
	for (uint64_t now = now_ns(); now < end; now = now_ns()) {
		uint64_t left_ms = (end - now) / 1000000;
		int n =
		    epoll_wait(r.epfd, ev, LOAD_MAX_EVENTS, left_ms < 100 ? (int)left_ms + 1 : 100);

		for (int i = 0; i < n; i++) {
			struct load_conn *c = ev[i].data.ptr;

			if (c->dead)
				continue;
			if (r.o.ws)
				ws_io(&r, c);
			else
				tcp_io(&r, c);
		}
	}
	r.counting = false;
	secs = (double)(now_ns() - t0) / 1e9;
	cpu_pct = (double)(cpu_ns() - cpu0) / 1e9 / secs * 100;
	for (int i = 0; i < r.o.conns; i++)
		if (!conns[i].dead) {
			alive++;
			close(conns[i].fd);
		}
	if (r.o.ws)
		printf(
		    "mode=ws conns=%d seconds=%.3f messages=%llu rate=%.1f bytes=%llu p50_us=%llu "
		    "p99_us=%llu errors=%llu alive=%d cpu_pct=%.0f\n",
		    r.o.conns, secs, (unsigned long long)r.messages, (double)r.messages / secs,
		    (unsigned long long)r.bytes,
		    (unsigned long long)percentile(r.hist, r.messages, 0.50),
		    (unsigned long long)percentile(r.hist, r.messages, 0.99),
		    (unsigned long long)r.errors, alive, cpu_pct);
	else
		printf("mode=tcp conns=%d seconds=%.3f bytes=%llu mib_per_s=%.1f errors=%llu "
		       "alive=%d cpu_pct=%.0f\n",
		       r.o.conns, secs, (unsigned long long)r.bytes,
		       (double)r.bytes / secs / (1024.0 * 1024.0), (unsigned long long)r.errors,
		       alive, cpu_pct);
	return (r.errors == 0 && (r.messages > 0 || r.bytes > 0)) ? 0 : 1;
}
