/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench/tunnel_echo.c — the upstream of bench/tunnel.sh: an echo server for tunnels, one
 * thread, epoll, as cheap per byte as we can make it so that the proxy in front of it is what
 * the rounds measure.
 *
 *   WS_PORT  (127.0.0.1) HTTP/1.1: a GET with `Upgrade: websocket` and Sec-WebSocket-Key is
 *            answered 101 (RFC 6455), then every frame comes back unmasked with the same
 *            opcode and FIN bit (a ping as a pong, a close as a close, after which the
 *            connection ends); any other request is answered 200 "ok" (keep-alive), which is
 *            what the bench's readiness checks ask for. Frames up to 64 KiB.
 *   TCP_PORT (127.0.0.1) every byte comes back, moved with splice(2) through a pipe (no copy
 *            into this process); the peer's FIN is echoed once the bytes before it are.
 *
 * Build: `make` builds BUILD/bench/tunnel_echo (libcrypto for SHA-1 and base64); or
 *   cc -O2 -o tunnel_echo bench/tunnel_echo.c $(pkg-config --cflags --libs libcrypto)
 * Usage: tunnel_echo WS_PORT TCP_PORT    Runs until SIGTERM or SIGINT.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define ECHO_MAX_EVENTS 256
#define ECHO_IN_CAP	(64 * 1024 + 16)  /* one frame of 64 KiB and its header */
#define ECHO_OUT_CAP	(128 * 1024 + 32) /* two */
#define ECHO_HEAD_MAX	8192
#define ECHO_PIPE_SIZE	(1024 * 1024)

enum echo_kind {
	ECHO_LISTEN_WS,
	ECHO_LISTEN_TCP,
	ECHO_WS,
	ECHO_TCP,
};

enum echo_state {
	ECHO_HTTP,    /* WebSocket port: reading request heads */
	ECHO_FRAMES,  /* WebSocket port: after the 101 */
	ECHO_PUMP,    /* TCP port */
	ECHO_DRAINED, /* the peer's FIN seen: write what is left, then end */
};

struct echo_conn {
	enum echo_kind kind;
	enum echo_state state;
	int fd;
	uint32_t armed; /* epoll events registered */
	int pipe[2];	/* TCP: socket -> pipe -> socket */
	size_t in_pipe; /* bytes in the pipe */
	uint8_t *in;	/* WS: bytes read, not yet parsed: in[0, in_len) */
	size_t in_len;
	uint8_t *out; /* WS: bytes to send: out[out_off, out_len) */
	size_t out_off, out_len;
	bool close_after; /* WS: a close frame was echoed */
};

static volatile sig_atomic_t stopping;
static int epfd = -1;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

static int arm(struct echo_conn *c, uint32_t ev)
{
	struct epoll_event e = {.events = ev, .data.ptr = c};

	if (ev == c->armed)
		return 0;
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &e) < 0)
		return -errno;
	c->armed = ev;
	return 0;
}

static void conn_free(struct echo_conn *c)
{
	epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	if (c->kind == ECHO_TCP) {
		close(c->pipe[0]);
		close(c->pipe[1]);
	}
	free(c->in);
	free(c->out);
	free(c);
}

/* ---- TCP: splice both ways through a pipe ---------------------------------------------- */

/* Returns 0 to keep the connection, -1 to end it. */
static int tcp_progress(struct echo_conn *c)
{
	bool drained = false;

	for (;;) {
		ssize_t n;

		while (c->in_pipe > 0) {
			n = splice(c->pipe[0], NULL, c->fd, NULL, c->in_pipe,
				   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
			if (n < 0 && errno == EAGAIN)
				return arm(c, EPOLLOUT) < 0 ? -1 : 0;
			if (n <= 0)
				return -1;
			c->in_pipe -= (size_t)n;
		}
		if (c->state == ECHO_DRAINED) {
			shutdown(c->fd, SHUT_WR);
			return -1;
		}
		if (drained)
			return arm(c, EPOLLIN) < 0 ? -1 : 0;
		n = splice(c->fd, NULL, c->pipe[1], NULL, ECHO_PIPE_SIZE,
			   SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
		if (n < 0 && errno == EAGAIN)
			return arm(c, EPOLLIN) < 0 ? -1 : 0;
		if (n < 0)
			return -1;
		if (n == 0)
			c->state = ECHO_DRAINED;
		c->in_pipe += (size_t)n;
		/* splice moves at most what is queued: less than asked means the socket is empty
		 * (or the pipe full, which its EPOLLIN says again). */
		drained = (size_t)n < ECHO_PIPE_SIZE;
	}
}

/* ---- WebSocket ------------------------------------------------------------------------- */

/* The value of header name (lower-case, with its colon) in head, trimmed; NULL if absent. */
static const char *header_value(const char *head, const char *name, size_t *len)
{
	size_t nl = strlen(name);

	for (const char *p = strstr(head, "\r\n"); p != NULL; p = strstr(p, "\r\n")) {
		const char *v, *e;

		p += 2;
		if (strncasecmp(p, name, nl) != 0)
			continue;
		v = p + nl;
		while (*v == ' ' || *v == '\t')
			v++;
		e = strstr(v, "\r\n");
		if (e == NULL)
			return NULL;
		while (e > v && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		*len = (size_t)(e - v);
		return v;
	}
	return NULL;
}

static bool out_append(struct echo_conn *c, const void *p, size_t n)
{
	if (c->out_len + n > ECHO_OUT_CAP)
		return false;
	memcpy(c->out + c->out_len, p, n);
	c->out_len += n;
	return true;
}

/* Answers the request head in[0, head_len) (NUL put at head_len - 2). */
static int ws_answer_head(struct echo_conn *c, size_t head_len)
{
	static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
	static const char ok[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Type: "
				 "text/plain\r\n\r\nok\n";
	char *head = (char *)c->in, key[128], resp[256];
	unsigned char digest[EVP_MAX_MD_SIZE], accept[64];
	unsigned int dlen = 0;
	size_t kl = 0, ul = 0;
	const char *k, *u;
	int n;

	head[head_len - 2] = '\0';
	u = header_value(head, "upgrade:", &ul);
	k = header_value(head, "sec-websocket-key:", &kl);
	if (u == NULL || ul != 9 || strncasecmp(u, "websocket", 9) != 0 || k == NULL ||
	    kl + sizeof(guid) > sizeof(key))
		return out_append(c, ok, sizeof(ok) - 1) ? 0 : -1;
	memcpy(key, k, kl);
	memcpy(key + kl, guid, sizeof(guid) - 1);
	if (!EVP_Digest(key, kl + sizeof(guid) - 1, digest, &dlen, EVP_sha1(), NULL))
		return -1;
	EVP_EncodeBlock(accept, digest, (int)dlen);
	n = snprintf(resp, sizeof(resp),
		     "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
		     "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
		     (const char *)accept);
	if (n < 0 || (size_t)n >= sizeof(resp) || !out_append(c, resp, (size_t)n))
		return -1;
	c->state = ECHO_FRAMES;
	return 0;
}

/* Unmasks len bytes of src into dst with the 4-byte key (8 bytes at a time). */
static void unmask(uint8_t *dst, const uint8_t *src, size_t len, const uint8_t key[4])
{
	uint64_t k8;
	size_t i = 0;

	memcpy(&k8, key, 4);
	memcpy((uint8_t *)&k8 + 4, key, 4);
	for (; i + 8 <= len; i += 8) {
		uint64_t v;

		memcpy(&v, src + i, 8);
		v ^= k8;
		memcpy(dst + i, &v, 8);
	}
	for (; i < len; i++)
		dst[i] = src[i] ^ key[i & 3];
}

/* The header of a server frame (FIN and opcode byte b0, payload plen) into hdr; its length. */
static size_t frame_header(uint8_t hdr[10], uint8_t b0, size_t plen)
{
	hdr[0] = b0;
	if (plen < 126) {
		hdr[1] = (uint8_t)plen;
		return 2;
	}
	if (plen < 65536) {
		hdr[1] = 126;
		hdr[2] = (uint8_t)(plen >> 8);
		hdr[3] = (uint8_t)plen;
		return 4;
	}
	hdr[1] = 127;
	for (int i = 0; i < 8; i++)
		hdr[2 + i] = (uint8_t)(plen >> (56 - 8 * i));
	return 10;
}

/* Parses what it can of in[]: heads, or frames echoed into out[] while out has room.
 * Returns the bytes consumed, or -1 to end the connection. */
static ssize_t ws_parse(struct echo_conn *c)
{
	size_t off = 0;

	while (off < c->in_len && !c->close_after) {
		const uint8_t *p = c->in + off;
		size_t avail = c->in_len - off, in_hl = 2, plen, hl;
		uint8_t hdr[10];
		int op;

		if (c->state == ECHO_HTTP) {
			const uint8_t *e = memmem(p, avail, "\r\n\r\n", 4);

			if (e == NULL)
				return avail >= ECHO_HEAD_MAX ? -1 : (ssize_t)off;
			/* ws_answer_head reads from in[0]: move the head there first. */
			if (off > 0) {
				memmove(c->in, p, avail);
				c->in_len = avail;
				off = 0;
				p = c->in;
				e = memmem(p, avail, "\r\n\r\n", 4);
			}
			if (ws_answer_head(c, (size_t)(e - p) + 4) < 0)
				return -1;
			off += (size_t)(e - p) + 4;
			continue;
		}
		if (avail < 2)
			break;
		if (!(p[1] & 0x80))
			return -1; /* a client frame must be masked */
		plen = p[1] & 0x7f;
		if (plen == 126)
			in_hl = 4;
		else if (plen == 127)
			in_hl = 10;
		if (avail < in_hl)
			break;
		if (plen == 126) {
			plen = (size_t)p[2] << 8 | p[3];
		} else if (plen == 127) {
			plen = 0;
			for (int i = 2; i < 10; i++)
				plen = plen << 8 | p[i];
		}
		if (plen > ECHO_IN_CAP - 14)
			return -1;
		if (avail < in_hl + 4 + plen)
			break;
		op = p[0] & 0x0f;
		if (op == 10) { /* a pong: nothing to answer */
			off += in_hl + 4 + plen;
			continue;
		}
		hl = frame_header(hdr, (uint8_t)((p[0] & 0x80) | (op == 9 ? 10 : op)), plen);
		if (c->out_len + hl + plen > ECHO_OUT_CAP)
			break; /* out is full: parse on once it drains */
		out_append(c, hdr, hl);
		unmask(c->out + c->out_len, p + in_hl + 4, plen, p + in_hl);
		c->out_len += plen;
		off += in_hl + 4 + plen;
		if (op == 8)
			c->close_after = true;
	}
	return (ssize_t)off;
}

static int ws_progress(struct echo_conn *c)
{
	bool drained = false;

	/* No read after a short one: the socket was empty, epoll says when it is not. */
	for (;;) {
		ssize_t n, used;
		size_t room;

		/* Send what is pending. */
		while (c->out_off < c->out_len) {
			n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
			if (n < 0 && errno == EAGAIN)
				return arm(c, EPOLLOUT) < 0 ? -1 : 0;
			if (n <= 0)
				return -1;
			c->out_off += (size_t)n;
		}
		c->out_off = c->out_len = 0;
		if (c->close_after || c->state == ECHO_DRAINED)
			return -1;
		/* Parse what was read; then read more. */
		used = ws_parse(c);
		if (used < 0)
			return -1;
		if (used > 0) {
			memmove(c->in, c->in + used, c->in_len - (size_t)used);
			c->in_len -= (size_t)used;
		}
		if (c->out_len > 0)
			continue;
		if (drained)
			return arm(c, EPOLLIN) < 0 ? -1 : 0;
		if (c->in_len == ECHO_IN_CAP)
			return -1; /* cannot happen: a frame fits */
		room = ECHO_IN_CAP - c->in_len;
		n = recv(c->fd, c->in + c->in_len, room, 0);
		if (n < 0 && errno == EAGAIN)
			return arm(c, EPOLLIN) < 0 ? -1 : 0;
		if (n <= 0)
			return -1;
		c->in_len += (size_t)n;
		drained = (size_t)n < room;
	}
}

/* ---- listeners ------------------------------------------------------------------------- */

static int listen_on(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0), one = 1;

	if (fd < 0)
		return -1;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (bind(fd, (struct sockaddr *)&a, sizeof(a)) < 0 || listen(fd, 4096) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static void accept_all(struct echo_conn *l)
{
	for (;;) {
		int fd = accept4(l->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC), one = 1;
		struct echo_conn *c;
		struct epoll_event e;

		if (fd < 0)
			return;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c = calloc(1, sizeof(*c));
		if (c == NULL) {
			close(fd);
			continue;
		}
		c->fd = fd;
		if (l->kind == ECHO_LISTEN_TCP) {
			c->kind = ECHO_TCP;
			c->state = ECHO_PUMP;
			if (pipe2(c->pipe, O_NONBLOCK | O_CLOEXEC) < 0) {
				close(fd);
				free(c);
				continue;
			}
			fcntl(c->pipe[1], F_SETPIPE_SZ, ECHO_PIPE_SIZE);
		} else {
			c->kind = ECHO_WS;
			c->state = ECHO_HTTP;
			c->in = malloc(ECHO_IN_CAP);
			c->out = malloc(ECHO_OUT_CAP);
			if (c->in == NULL || c->out == NULL) {
				free(c->in);
				free(c->out);
				free(c);
				close(fd);
				continue;
			}
		}
		c->armed = EPOLLIN;
		e.events = EPOLLIN;
		e.data.ptr = c;
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &e) < 0)
			conn_free(c);
	}
}

int main(int argc, char **argv)
{
	static struct echo_conn lws = {.kind = ECHO_LISTEN_WS}, ltcp = {.kind = ECHO_LISTEN_TCP};
	struct epoll_event ev[ECHO_MAX_EVENTS];
	struct sigaction sa = {.sa_handler = on_signal};

	if (argc != 3) {
		fprintf(stderr, "usage: tunnel_echo WS_PORT TCP_PORT\n");
		return 2;
	}
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	epfd = epoll_create1(EPOLL_CLOEXEC);
	lws.fd = listen_on(atoi(argv[1]));
	ltcp.fd = listen_on(atoi(argv[2]));
	if (epfd < 0 || lws.fd < 0 || ltcp.fd < 0) {
		perror("tunnel_echo: listen");
		return 1;
	}
	for (struct echo_conn *l = &lws; l != NULL; l = l == &lws ? &ltcp : NULL) {
		struct epoll_event e = {.events = EPOLLIN, .data.ptr = l};

		epoll_ctl(epfd, EPOLL_CTL_ADD, l->fd, &e);
	}
	fprintf(stderr, "tunnel_echo: WebSocket on 127.0.0.1:%s, TCP on 127.0.0.1:%s\n", argv[1],
		argv[2]);
	while (!stopping) {
		int n = epoll_wait(epfd, ev, ECHO_MAX_EVENTS, 500);

		for (int i = 0; i < n; i++) {
			struct echo_conn *c = ev[i].data.ptr;
			int r;

			if (c->kind == ECHO_LISTEN_WS || c->kind == ECHO_LISTEN_TCP) {
				accept_all(c);
				continue;
			}
			r = c->kind == ECHO_TCP ? tcp_progress(c) : ws_progress(c);
			if (r < 0)
				conn_free(c);
		}
	}
	return 0;
}
