/* SPDX-License-Identifier: Apache-2.0 */
/* A test origin server: real HTTP/1.1, misbehaving on command.
 *
 * One detached thread per connection (bounded), blocking I/O, bodies streamed
 * through a fixed per-connection buffer so a 1 GiB body passes in bounded memory.
 * The request parser and chunked scanner are the gateway's own (worker/http1.h).
 * The behaviour by path is described in usage() below. */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "lib/ascii.h"
#include "worker/http1.h"

#define UP_MAX_LISTENERS 16
#define UP_MAX_CONNS	 4096
#define UP_BUF		 (64 * 1024)
#define UP_MAX_HEADERS	 128
#define UP_MAX_URI	 (16 * 1024)
#define UP_DELAY_CAP_MS	 60000
#define UP_CHUNK	 (16 * 1024)
#define UP_PAT_LEN	 (26 * 4096)
#define UP_IDLE_S	 120

struct up_listener {
	int fd;
	char addr[160];
	char name[64];
};

/* The one per-process context. Request-path state is atomics: many threads. */
struct up_ctx {
	char zone[64];
	size_t n_listeners;
	struct up_listener listeners[UP_MAX_LISTENERS];
	atomic_int conns;
	atomic_bool health_failing;
	atomic_int fail_status; /* 0: normal */
	atomic_bool reset;
	atomic_uint_fast64_t count;
	atomic_uint_fast64_t delaying; /* requests in a /delay/ wait now */
	char pattern[UP_PAT_LEN + 26];
};

static struct up_ctx ctx;

struct up_conn {
	int fd;
	const struct up_listener *l;
	size_t start, end; /* unread bytes are buf[start, end) */
	char buf[UP_BUF];
	/* Copied out of the request head before buf is reused for the body. */
	char head[UP_BUF];
	size_t head_len;
	char method[16];
	char target[UP_MAX_URI + 1];
	char path[UP_MAX_URI + 1];
	bool is_head;
	bool close;	  /* close after this response */
	bool keepalive10; /* HTTP/1.0 with Connection: keep-alive */
	int minor;
	/* /raw: the response to send verbatim, hex-decoded from x-respond. */
	char respond[8192];
	ssize_t respond_len; /* -1: no (valid) x-respond header */
};

enum up_body_kind {
	UP_BODY_NONE = 0,
	UP_BODY_LENGTH,
	UP_BODY_CHUNKED,
};

struct up_body {
	enum up_body_kind kind;
	uint64_t left; /* UP_BODY_LENGTH */
	struct ism_chunked ck;
	bool done;
	uint64_t data_bytes; /* decoded body bytes seen so far */
};

static int write_all(int fd, const void *p, size_t len)
{
	const char *c = p;

	while (len > 0) {
		ssize_t n = send(fd, c, len, MSG_NOSIGNAL);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		c += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Reads more bytes into the connection buffer. Returns bytes read, 0 on EOF, -errno. */
static ssize_t conn_fill(struct up_conn *c)
{
	ssize_t n;

	if (c->start == c->end) {
		c->start = 0;
		c->end = 0;
	} else if (c->end == sizeof(c->buf) && c->start > 0) {
		memmove(c->buf, c->buf + c->start, c->end - c->start);
		c->end -= c->start;
		c->start = 0;
	}
	if (c->end == sizeof(c->buf))
		return -ENOBUFS;
	do {
		n = recv(c->fd, c->buf + c->end, sizeof(c->buf) - c->end, 0);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	c->end += (size_t)n;
	return n;
}

/* The next piece of the raw request body, consumed from the connection buffer.
 * Returns its length with *out pointing at it, 0 at the end of the body, or -errno
 * (-EBADMSG for bad chunked framing, -EPIPE when the peer closed mid-body). */
static ssize_t body_next(struct up_conn *c, struct up_body *b, const char **out)
{
	size_t avail, n;

	if (b->done || b->kind == UP_BODY_NONE)
		return 0;
	if (c->start == c->end) {
		ssize_t r = conn_fill(c);

		if (r == 0)
			return -EPIPE;
		if (r < 0)
			return r;
	}
	avail = c->end - c->start;
	*out = c->buf + c->start;
	if (b->kind == UP_BODY_LENGTH) {
		n = avail < b->left ? avail : (size_t)b->left;
		b->left -= n;
		b->data_bytes += n;
		if (b->left == 0)
			b->done = true;
	} else {
		size_t used, dlen;
		const char *data;
		int r;

		n = 0;
		do {
			r = ism_chunked_next(&b->ck, c->buf + c->start + n, avail - n, &used, &data,
					     &dlen);
			if (r < 0)
				return -EBADMSG;
			n += used;
			b->data_bytes += dlen;
		} while (r == ISM_CHUNK_MORE && n < avail);
		if (r == ISM_CHUNK_END)
			b->done = true;
	}
	c->start += n;
	if (n == 0 && b->done)
		return 0;
	return (ssize_t)n;
}

static int body_drain(struct up_conn *c, struct up_body *b)
{
	const char *p;
	ssize_t n;

	while ((n = body_next(c, b, &p)) > 0)
		;
	return (int)n;
}

static bool status_has_body(int status)
{
	return !(status < 200 || status == 204 || status == 304);
}

/* Writes a response head. length < 0: chunked (HTTP/1.1) or close-delimited (1.0). */
static int send_head(struct up_conn *c, int status, int64_t length, const char *ctype)
{
	char h[1024];
	int n;
	const char *conn_hdr = "";

	if (length < 0 && c->minor == 0)
		c->close = true;
	if (c->close)
		conn_hdr = "connection: close\r\n";
	else if (c->keepalive10)
		conn_hdr = "connection: keep-alive\r\n";
	n = snprintf(h, sizeof(h), "HTTP/1.1 %d %s\r\nx-upstream: %s\r\n%s%s%s%s%s", status,
		     ism_http_reason(status), c->l->name, ctx.zone[0] ? "x-upstream-zone: " : "",
		     ctx.zone, ctx.zone[0] ? "\r\n" : "", conn_hdr, ctype ? "content-type: " : "");
	if (n < 0 || (size_t)n >= sizeof(h))
		return -EOVERFLOW;
	if (ctype) {
		int m = snprintf(h + n, sizeof(h) - (size_t)n, "%s\r\n", ctype);

		if (m < 0 || (size_t)m >= sizeof(h) - (size_t)n)
			return -EOVERFLOW;
		n += m;
	}
	if (status_has_body(status)) {
		int m;

		if (length >= 0)
			m = snprintf(h + n, sizeof(h) - (size_t)n,
				     "content-length: %" PRId64 "\r\n", length);
		else if (c->minor > 0)
			m = snprintf(h + n, sizeof(h) - (size_t)n,
				     "transfer-encoding: chunked\r\n");
		else
			m = 0;
		if (m < 0 || (size_t)m >= sizeof(h) - (size_t)n)
			return -EOVERFLOW;
		n += m;
	}
	if ((size_t)n + 2 >= sizeof(h))
		return -EOVERFLOW;
	memcpy(h + n, "\r\n", 2);
	return write_all(c->fd, h, (size_t)n + 2);
}

static int send_simple(struct up_conn *c, int status, const char *body, size_t len)
{
	int r;

	if (!status_has_body(status))
		len = 0;
	r = send_head(c, status, (int64_t)len, status_has_body(status) ? "text/plain" : NULL);
	if (r < 0 || c->is_head || len == 0)
		return r;
	return write_all(c->fd, body, len);
}

static int send_default(struct up_conn *c)
{
	char body[UP_MAX_URI + 128];
	int n = snprintf(body, sizeof(body), "%s %s\n", c->l->name, c->target);

	if (n < 0 || (size_t)n >= sizeof(body))
		return -EOVERFLOW;
	return send_simple(c, 200, body, (size_t)n);
}

/* Parses a decimal number that must make up the whole of s[0, len). */
static int parse_u64(const char *s, size_t len, uint64_t max, uint64_t *out)
{
	uint64_t v = 0;

	if (len == 0 || len > 20)
		return -EINVAL;
	for (size_t i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -EINVAL;
		if (v > (UINT64_MAX - 9) / 10)
			return -ERANGE;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v > max)
		return -ERANGE;
	*out = v;
	return 0;
}

/* Whether path starts with prefix; *rest is what follows. */
static bool path_arg(const char *path, const char *prefix, const char **rest)
{
	size_t n = strlen(prefix);

	if (strncmp(path, prefix, n) != 0)
		return false;
	*rest = path + n;
	return true;
}

static int send_pattern(struct up_conn *c, uint64_t n, bool chunked)
{
	uint64_t sent = 0;
	int r = send_head(c, 200, chunked ? -1 : (int64_t)n, "application/octet-stream");

	if (r < 0 || c->is_head)
		return r;
	chunked = chunked && c->minor > 0;
	while (sent < n) {
		size_t piece = chunked ? UP_CHUNK : UP_PAT_LEN - 26;
		const char *p = ctx.pattern + sent % 26;

		if (piece > n - sent)
			piece = (size_t)(n - sent);
		if (chunked) {
			char line[32];
			int m = snprintf(line, sizeof(line), "%zx\r\n", piece);

			r = write_all(c->fd, line, (size_t)m);
			if (r == 0)
				r = write_all(c->fd, p, piece);
			if (r == 0)
				r = write_all(c->fd, "\r\n", 2);
		} else {
			r = write_all(c->fd, p, piece);
		}
		if (r < 0)
			return r;
		sent += piece;
	}
	return chunked ? write_all(c->fd, "0\r\n\r\n", 5) : 0;
}

static int handle_echo(struct up_conn *c, struct up_body *b, int64_t content_length)
{
	const char *p;
	ssize_t n;
	int r;

	if (b->kind == UP_BODY_CHUNKED && c->minor > 0) {
		/* The raw chunked stream is a valid chunked response body as it is. */
		r = send_head(c, 200, -1, "application/octet-stream");
	} else if (b->kind == UP_BODY_CHUNKED) {
		c->close = true;
		return send_simple(c, 400, "chunked in HTTP/1.0\n", 20);
	} else {
		r = send_head(c, 200, content_length < 0 ? 0 : content_length,
			      "application/octet-stream");
	}
	if (r < 0)
		return r;
	while ((n = body_next(c, b, &p)) > 0) {
		if (c->is_head)
			continue;
		r = write_all(c->fd, p, (size_t)n);
		if (r < 0)
			return r;
	}
	return (int)n;
}

/* /rawecho: the request as it came on the wire, head and body with its
 * framing, as the body of a 200 (at most 64 KiB of body). */
static int handle_rawecho(struct up_conn *c, struct up_body *b)
{
	static char out[2 * UP_BUF];
	size_t len = c->head_len;
	const char *p;
	ssize_t n;

	memcpy(out, c->head, c->head_len);
	while ((n = body_next(c, b, &p)) > 0) {
		if (len + (size_t)n > sizeof(out)) {
			c->close = true;
			return send_simple(c, 413, "too large\n", 10);
		}
		memcpy(out + len, p, (size_t)n);
		len += (size_t)n;
	}
	if (n < 0)
		return (int)n;
	return send_simple(c, 200, out, len);
}

/* The x-respond header's value, hex-decoded into c->respond. */
static void take_respond(struct up_conn *c, const struct ism_http_req *req)
{
	c->respond_len = -1;
	for (size_t i = 0; i < req->n_headers; i++) {
		const struct ism_http_header *h = &req->headers[i];
		size_t n = h->value_len / 2;

		if (h->name_len != 9 || strncasecmp(h->name, "x-respond", 9) != 0)
			continue;
		if (h->value_len % 2 || n > sizeof(c->respond))
			return;
		for (size_t j = 0; j < n; j++) {
			int hi = ism_hexval((unsigned char)h->value[2 * j]);
			int lo = ism_hexval((unsigned char)h->value[2 * j + 1]);

			if (hi < 0 || lo < 0)
				return;
			c->respond[j] = (char)(hi << 4 | lo);
		}
		c->respond_len = (ssize_t)n;
		return;
	}
}

static int handle_ctl(struct up_conn *c, const char *cmd)
{
	const char *arg;
	uint64_t v;
	char body[64];
	int n;

	if (strcmp(cmd, "health/fail") == 0) {
		atomic_store(&ctx.health_failing, true);
	} else if (strcmp(cmd, "health/ok") == 0) {
		atomic_store(&ctx.health_failing, false);
	} else if (path_arg(cmd, "fail/", &arg)) {
		if (parse_u64(arg, strlen(arg), 599, &v) < 0 || v < 200)
			return send_simple(c, 400, "bad status\n", 11);
		atomic_store(&ctx.fail_status, (int)v);
	} else if (strcmp(cmd, "ok") == 0) {
		atomic_store(&ctx.fail_status, 0);
		atomic_store(&ctx.reset, false);
	} else if (strcmp(cmd, "reset") == 0) {
		atomic_store(&ctx.reset, true);
	} else if (strcmp(cmd, "count") == 0 || strcmp(cmd, "delaying") == 0) {
		n = snprintf(body, sizeof(body), "%" PRIuFAST64 "\n",
			     atomic_load(cmd[0] == 'c' ? &ctx.count : &ctx.delaying));
		return send_simple(c, 200, body, (size_t)n);
	} else {
		return send_simple(c, 404, "unknown control\n", 16);
	}
	return send_simple(c, 200, "ok\n", 3);
}

/* Answers one request whose head is parsed; the body is still unread. */
static int handle(struct up_conn *c, struct up_body *b, int64_t content_length, bool expect)
{
	const char *path = c->path, *arg = "";
	bool ctl = path_arg(path, "/__ctl/", &arg);
	uint64_t v;
	int r, fail;
	char body[128];
	int n;

	if (!ctl)
		atomic_fetch_add(&ctx.count, 1);
	if (!ctl && strcmp(path, "/healthz") != 0 && atomic_load(&ctx.reset)) {
		c->close = true;
		return -ECONNRESET;
	}
	if (expect && b->kind != UP_BODY_NONE && c->minor > 0) {
		static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";

		r = write_all(c->fd, cont, sizeof(cont) - 1);
		if (r < 0)
			return r;
	}
	if (path_arg(path, "/echo", &arg) && (arg[0] == 0 || arg[0] == '/')) {
		if (strcmp(arg, "/count") != 0 && atomic_load(&ctx.fail_status) == 0)
			return handle_echo(c, b, content_length);
	}
	if (strcmp(path, "/rawecho") == 0)
		return handle_rawecho(c, b);
	if (path_arg(path, "/stall/", &arg)) {
		/* An upstream that never reads the body: holds the connection, then
		 * closes it. */
		struct timespec ts;

		if (parse_u64(arg, strlen(arg), UP_DELAY_CAP_MS, &v) < 0)
			return send_simple(c, 400, "bad stall\n", 10);
		ts.tv_sec = (time_t)(v / 1000);
		ts.tv_nsec = (long)(v % 1000) * 1000000L;
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
		c->close = true;
		return 0;
	}
	r = body_drain(c, b);
	if (r < 0)
		return r;
	if (ctl)
		return handle_ctl(c, arg);
	if (strcmp(path, "/raw") == 0) {
		/* Whatever the test wants sent, then the connection closes. */
		c->close = true;
		if (c->respond_len < 0)
			return send_simple(c, 400, "bad x-respond\n", 14);
		return write_all(c->fd, c->respond, (size_t)c->respond_len);
	}
	if (strcmp(path, "/healthz") == 0) {
		if (atomic_load(&ctx.health_failing))
			return send_simple(c, 503, "failing\n", 8);
		return send_simple(c, 200, "ok\n", 3);
	}
	fail = atomic_load(&ctx.fail_status);
	if (fail) {
		n = snprintf(body, sizeof(body), "%s fail %d\n", c->l->name, fail);
		return send_simple(c, fail, body, (size_t)n);
	}
	if (strcmp(path, "/echo/count") == 0) {
		n = snprintf(body, sizeof(body), "%" PRIu64 "\n", b->data_bytes);
		return send_simple(c, 200, body, (size_t)n);
	}
	if (path_arg(path, "/status/", &arg)) {
		if (parse_u64(arg, strlen(arg), 599, &v) < 0 || v < 200)
			return send_simple(c, 400, "bad status\n", 11);
		n = snprintf(body, sizeof(body), "%s status %d\n", c->l->name, (int)v);
		return send_simple(c, (int)v, body, (size_t)n);
	}
	if (path_arg(path, "/delay/", &arg)) {
		struct timespec ts;

		if (parse_u64(arg, strlen(arg), UINT32_MAX, &v) < 0)
			return send_simple(c, 400, "bad delay\n", 10);
		if (v > UP_DELAY_CAP_MS)
			v = UP_DELAY_CAP_MS;
		ts.tv_sec = (time_t)(v / 1000);
		ts.tv_nsec = (long)(v % 1000) * 1000000L;
		atomic_fetch_add(&ctx.delaying, 1);
		while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
			;
		atomic_fetch_sub(&ctx.delaying, 1);
		return send_default(c);
	}
	if (path_arg(path, "/bytes/", &arg) || path_arg(path, "/chunked/", &arg)) {
		if (parse_u64(arg, strlen(arg), UINT64_MAX / 2, &v) < 0)
			return send_simple(c, 400, "bad size\n", 9);
		return send_pattern(c, v, path[1] == 'c');
	}
	if (strcmp(path, "/headers") == 0)
		return send_simple(c, 200, c->head, c->head_len);
	if (strcmp(path, "/close") == 0) {
		c->close = true;
		return send_default(c);
	}
	return send_default(c);
}

static void copy_str(char *dst, size_t cap, const char *src, size_t len)
{
	if (len >= cap)
		len = cap - 1;
	memcpy(dst, src, len);
	dst[len] = 0;
}

/* Reads and parses the next request head. Returns its length (> 0) with req filled,
 * 0 when the peer closed between requests, or -errno; on a parse error, answers
 * 400 itself and returns -EBADMSG. */
static ssize_t read_head(struct up_conn *c, struct ism_http_req *req, struct ism_http_header *hdrs)
{
	static const struct ism_http_limits lim = {
	    .max_head_bytes = UP_BUF,
	    .max_headers = UP_MAX_HEADERS,
	    .max_uri_bytes = UP_MAX_URI,
	};

	for (;;) {
		if (c->end > c->start) {
			ssize_t r;

			memset(req, 0, sizeof(*req));
			req->headers = hdrs;
			r = ism_http_parse_request(c->buf + c->start, c->end - c->start, &lim, req);
			if (r > 0)
				return r;
			if (r < 0 || (c->start == 0 && c->end == sizeof(c->buf))) {
				c->close = true;
				c->is_head = false;
				c->minor = 1;
				send_simple(c, 400, "bad request\n", 12);
				return -EBADMSG;
			}
		}
		ssize_t n = conn_fill(c);

		if (n == 0)
			return c->end > c->start ? -EPIPE : 0;
		if (n < 0)
			return n;
	}
}

static void serve(struct up_conn *c)
{
	struct ism_http_header hdrs[UP_MAX_HEADERS];
	struct ism_http_req req;

	for (;;) {
		struct up_body b;
		ssize_t hl = read_head(c, &req, hdrs);
		int64_t cl;
		bool expect;

		if (hl <= 0)
			return;
		copy_str(c->head, sizeof(c->head), c->buf + c->start, (size_t)hl);
		c->head_len = (size_t)hl;
		copy_str(c->method, sizeof(c->method), req.method, req.method_len);
		copy_str(c->target, sizeof(c->target), req.target, req.target_len);
		copy_str(c->path, sizeof(c->path), req.path, req.path_len);
		take_respond(c, &req);
		c->is_head = strcmp(c->method, "HEAD") == 0;
		c->minor = req.minor_version;
		c->keepalive10 =
		    req.minor_version == 0 && req.framing.conn == ISM_HTTP_CONN_KEEPALIVE;
		c->close = req.framing.conn == ISM_HTTP_CONN_CLOSE ||
			   (req.minor_version == 0 && !c->keepalive10);
		cl = req.framing.content_length;
		expect = req.framing.expect_continue;
		memset(&b, 0, sizeof(b));
		if (req.framing.chunked) {
			b.kind = UP_BODY_CHUNKED;
			ism_chunked_init(&b.ck);
		} else if (cl > 0) {
			b.kind = UP_BODY_LENGTH;
			b.left = (uint64_t)cl;
		}
		c->start += (size_t)hl;
		if (handle(c, &b, cl, expect) < 0 || c->close)
			return;
	}
}

static void *conn_main(void *arg)
{
	struct up_conn *c = arg;

	serve(c);
	close(c->fd);
	free(c);
	atomic_fetch_sub(&ctx.conns, 1);
	return NULL;
}

static void start_conn(int fd, const struct up_listener *l)
{
	struct up_conn *c;
	pthread_attr_t attr;
	pthread_t t;
	struct timeval tv = {.tv_sec = UP_IDLE_S};
	int one = 1;

	if (atomic_fetch_add(&ctx.conns, 1) >= UP_MAX_CONNS)
		goto err_count;
	c = malloc(sizeof(*c));
	if (!c)
		goto err_count;
	c->fd = fd;
	c->l = l;
	c->start = 0;
	c->end = 0;
	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv));
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (pthread_attr_init(&attr) != 0)
		goto err_free;
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, 256 * 1024);
	if (pthread_create(&t, &attr, conn_main, c) != 0) {
		pthread_attr_destroy(&attr);
		goto err_free;
	}
	pthread_attr_destroy(&attr);
	return;
err_free:
	free(c);
err_count:
	atomic_fetch_sub(&ctx.conns, 1);
	close(fd);
}

/* "ADDR:PORT[=NAME]" or "[IPV6]:PORT[=NAME]" → a bound, listening socket. */
static int listen_on(const char *spec, const char *default_name, struct up_listener *l)
{
	char buf[128];
	char *colon, *eq, *host;
	struct sockaddr_storage ss = {0};
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;
	socklen_t salen = sizeof(ss);
	uint64_t port;
	int one = 1;
	bool v6;

	copy_str(buf, sizeof(buf), spec, strlen(spec));
	eq = strchr(buf, '=');
	if (eq)
		*eq++ = 0;
	copy_str(l->name, sizeof(l->name), eq ? eq : default_name, strlen(eq ? eq : default_name));
	colon = strrchr(buf, ':');
	if (!colon)
		return -EINVAL;
	*colon = 0;
	host = buf;
	v6 = buf[0] == '[';
	if (v6) {
		if (colon == buf || colon[-1] != ']')
			return -EINVAL;
		colon[-1] = 0;
		host = buf + 1;
	}
	if (parse_u64(colon + 1, strlen(colon + 1), 65535, &port) < 0)
		return -EINVAL;
	if (v6) {
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons((uint16_t)port);
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return -EINVAL;
	} else {
		sin->sin_family = AF_INET;
		sin->sin_port = htons((uint16_t)port);
		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return -EINVAL;
	}
	l->fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (l->fd < 0)
		return -errno;
	setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (v6)
		setsockopt(l->fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
	if (bind(l->fd, (struct sockaddr *)&ss, v6 ? sizeof(*sin6) : sizeof(*sin)) < 0 ||
	    listen(l->fd, 1024) < 0 || getsockname(l->fd, (struct sockaddr *)&ss, &salen) < 0) {
		int e = -errno;

		close(l->fd);
		return e;
	}
	snprintf(l->addr, sizeof(l->addr), v6 ? "[%s]:%u" : "%s:%u", host,
		 ntohs(v6 ? sin6->sin6_port : sin->sin_port));
	return 0;
}

static void usage(void)
{
	fputs("usage: upstream --listen ADDR:PORT[=NAME] (ADDR: IPv4, or [IPv6]) [--listen ...] "
	      "--name NAME [--zone ZONE]\n"
	      "paths: /status/N /delay/MS /echo /echo/count /bytes/N /chunked/N /headers /close\n"
	      "       /rawecho (the request as received) /raw (sends the hex of header x-respond,\n"
	      "       then closes) /stall/MS (reads no body, closes after MS)\n"
	      "       /healthz /__ctl/{health/fail,health/ok,fail/N,ok,reset,count,delaying}\n",
	      stderr);
}

int main(int argc, char **argv)
{
	const char *specs[UP_MAX_LISTENERS];
	const char *name = "upstream";
	size_t n_specs = 0;
	struct pollfd pfd[UP_MAX_LISTENERS + 1];
	sigset_t mask;
	int sfd;

	for (int i = 1; i < argc; i++) {
		if (i + 1 >= argc) {
			usage();
			return 2;
		}
		if (strcmp(argv[i], "--listen") == 0 && n_specs < UP_MAX_LISTENERS)
			specs[n_specs++] = argv[++i];
		else if (strcmp(argv[i], "--name") == 0)
			name = argv[++i];
		else if (strcmp(argv[i], "--zone") == 0)
			copy_str(ctx.zone, sizeof(ctx.zone), argv[i + 1], strlen(argv[i + 1])), i++;
		else {
			usage();
			return 2;
		}
	}
	if (n_specs == 0) {
		usage();
		return 2;
	}
	for (size_t i = 0; i < sizeof(ctx.pattern); i++)
		ctx.pattern[i] = (char)('a' + i % 26);

	/* Signals are taken synchronously by the main thread only. */
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	pthread_sigmask(SIG_BLOCK, &mask, NULL);
	signal(SIGPIPE, SIG_IGN);
	sfd = signalfd(-1, &mask, SFD_CLOEXEC);
	if (sfd < 0) {
		perror("signalfd");
		return 1;
	}
	for (size_t i = 0; i < n_specs; i++) {
		int r = listen_on(specs[i], name, &ctx.listeners[i]);

		if (r < 0) {
			fprintf(stderr, "upstream: listen %s: %s\n", specs[i], strerror(-r));
			return 1;
		}
		ctx.n_listeners++;
		printf("listening on %s\n", ctx.listeners[i].addr);
		pfd[i].fd = ctx.listeners[i].fd;
		pfd[i].events = POLLIN;
	}
	fflush(stdout);
	pfd[n_specs].fd = sfd;
	pfd[n_specs].events = POLLIN;
	for (;;) {
		if (poll(pfd, n_specs + 1, -1) < 0) {
			if (errno == EINTR)
				continue;
			perror("poll");
			return 1;
		}
		if (pfd[n_specs].revents)
			break;
		for (size_t i = 0; i < n_specs; i++) {
			if (!(pfd[i].revents & POLLIN))
				continue;
			for (int k = 0; k < 64; k++) {
				int fd = accept4(pfd[i].fd, NULL, NULL, SOCK_CLOEXEC);

				if (fd < 0)
					break;
				start_conn(fd, &ctx.listeners[i]);
			}
		}
	}
	for (size_t i = 0; i < ctx.n_listeners; i++)
		close(ctx.listeners[i].fd);
	close(sfd);
	return 0;
}
