/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tests/upstream/keyupdate_flood.c — a TLS 1.3 client that sends KeyUpdate(update_requested)
 * records in a loop, for test_tls.py's KeyUpdate tests. MODE says what goes between them:
 *
 *   bare      nothing: the server is to close the connection after 32 KeyUpdates in a row
 *             without application data (BoringSSL's limit, so Envoy's);
 *   trickle   a request head, one byte of a header value after each KeyUpdate, never
 *             finished and the answers never read (its receive buffer is small): each
 *             KeyUpdate makes the server write one of its own, which only a server that
 *             stops reading such a peer keeps from piling up;
 *   requests  a whole request after each KeyUpdate, its response read;
 *   after     one byte of a request head, then COUNT KeyUpdates, all in one TCP write (corked):
 *             those after the data count as in a row, however the server reads the records.
 *
 * It connects to 127.0.0.1:PORT with SNI, completes the handshake (no certificate check),
 * prints "connected", then sends up to COUNT KeyUpdates for at most SECONDS (a send that
 * blocks is retried until then, or until it has blocked for FLOOD_STALL_MS: the server no
 * longer reads), and prints one of
 * "closed after N" (the connection failed after N KeyUpdates; "after": the server closed it
 * within SECONDS of the write), "open after N" ("after": it did not), "served N" (requests), or
 * "sent N unsent B" (B: bytes still in its socket once the server read all it would); it
 * then keeps the connection open, not reading, until its standard input ends.
 *
 * Build: `make` builds BUILD/tests/keyupdate_flood (libssl).
 * Usage: keyupdate_flood PORT SNI COUNT SECONDS MODE
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <linux/sockios.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#define FLOOD_RCVBUF	    4096  /* the answers stay in the server's socket and ring */
#define FLOOD_SEND_WAIT_MS  200	  /* a blocked send returns this often to look at the clock */
#define FLOOD_STALL_MS	    3000  /* sends blocked this long: the flood is over */
#define FLOOD_DRAIN_STEP_MS 100	  /* the send queue looked at this often, */
#define FLOOD_STILL_MS	    1000  /* until it is empty or the same this long, */
#define FLOOD_DRAIN_MAX_MS  10000 /* this long at most */

static long arg(const char *s, long lo, long hi)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno || end == s || *end != '\0' || v < lo || v > hi) {
		fprintf(stderr, "keyupdate_flood: bad argument %s\n", s);
		exit(2);
	}
	return v;
}

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int dial(int port, int small_rcvbuf)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
	struct timeval wait = {.tv_usec = FLOOD_SEND_WAIT_MS * 1000};
	int rcv = FLOOD_RCVBUF;
	int fd = socket(AF_INET, SOCK_STREAM, 0);

	if (fd < 0)
		return -1;
	a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	/* Before connect(), so that the window offered is small from the start. */
	if ((small_rcvbuf && setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv)) < 0) ||
	    setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &wait, sizeof(wait)) < 0 ||
	    connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

enum flood_mode { FLOOD_BARE, FLOOD_TRICKLE, FLOOD_REQUESTS, FLOOD_AFTER };

/* When the sends began to block (0: the last one did not). */
static double blocked_since;

/* After a send that blocked: whether to stop, the deadline passed or the
 * sends blocked for FLOOD_STALL_MS. */
static int give_up(double deadline)
{
	double t = now();

	if (blocked_since == 0)
		blocked_since = t;
	return t >= deadline || t - blocked_since >= FLOOD_STALL_MS / 1000.0;
}

/* Writes all of p, retrying a send that blocked until give_up(): 0, 1
 * (gave up first) or -1 (the connection failed). */
static int write_all(SSL *s, const char *p, int len, double deadline)
{
	while (len > 0) {
		int r = SSL_write(s, p, len);

		if (r > 0) {
			p += r;
			len -= r;
			blocked_since = 0;
		} else if (SSL_get_error(s, r) != SSL_ERROR_WANT_WRITE) {
			return -1;
		} else if (give_up(deadline)) {
			return 1;
		}
	}
	return 0;
}

/* One response: its head, then content-length bytes of body; 0 or -1. */
static int read_response(SSL *s)
{
	char buf[16384];
	int got = 0, r;
	char *end, *cl;
	long want;

	buf[0] = '\0';
	while ((end = strstr(buf, "\r\n\r\n")) == NULL) {
		if (got >= (int)sizeof(buf) - 1 ||
		    (r = SSL_read(s, buf + got, (int)sizeof(buf) - 1 - got)) <= 0)
			return -1;
		got += r;
		buf[got] = '\0';
	}
	if (strncmp(buf, "HTTP/1.1 200", 12) != 0)
		return -1;
	cl = strcasestr(buf, "\r\ncontent-length:");
	want = cl != NULL && cl < end ? strtol(cl + 17, NULL, 10) : 0;
	want -= got - (long)(end + 4 - buf);
	while (want > 0) {
		if ((r = SSL_read(s, buf, (int)sizeof(buf))) <= 0)
			return -1;
		want -= r;
	}
	return 0;
}

/* KeyUpdates sent (with what goes between them) before count or the
 * deadline; -(1 + N) when the connection failed after N. */
static long flood(SSL *s, const char *sni, enum flood_mode mode, long count, double deadline)
{
	char req[512];
	long n = 0;
	int pending = 0;

	snprintf(req, sizeof(req), "GET /ku HTTP/1.1\r\nhost: %s\r\n\r\n", sni);
	if (mode == FLOOD_TRICKLE) {
		snprintf(req, sizeof(req), "GET /ku HTTP/1.1\r\nhost: %s\r\nx-pad: ", sni);
		if (write_all(s, req, (int)strlen(req), deadline) != 0)
			return -1;
	}
	while (n < count && now() < deadline) {
		int r;

		/* A KeyUpdate whose send blocked is finished before the next. */
		if (!pending && SSL_key_update(s, SSL_KEY_UPDATE_REQUESTED) != 1)
			return -(1 + n);
		pending = 1;
		r = SSL_do_handshake(s);
		if (r != 1) {
			if (SSL_get_error(s, r) != SSL_ERROR_WANT_WRITE)
				return -(1 + n);
			if (give_up(deadline))
				break;
			continue;
		}
		blocked_since = 0;
		pending = 0;
		n++;
		if (mode == FLOOD_TRICKLE)
			r = write_all(s, "a", 1, deadline);
		else if (mode == FLOOD_REQUESTS)
			r = write_all(s, req, (int)strlen(req), deadline) != 0 ||
				    read_response(s) < 0
				? -1
				: 0;
		else
			r = 0;
		if (r < 0)
			return -(1 + n);
		if (r > 0)
			break;
	}
	return n;
}

/* "after": a byte of data and count KeyUpdates in one corked write, then
 * whether the server closes the connection before the deadline: N (open after
 * N) or -(1 + N) (closed after N). */
static long after_data(SSL *s, int fd, long count, double deadline)
{
	int on = 1, off = 0;
	char buf[4096];
	long n;

	if (setsockopt(fd, IPPROTO_TCP, TCP_CORK, &on, sizeof(on)) < 0 ||
	    write_all(s, "G", 1, deadline) != 0)
		return -1;
	for (n = 0; n < count; n++)
		if (SSL_key_update(s, SSL_KEY_UPDATE_NOT_REQUESTED) != 1 ||
		    SSL_do_handshake(s) != 1)
			return -(1 + n);
	if (setsockopt(fd, IPPROTO_TCP, TCP_CORK, &off, sizeof(off)) < 0)
		return -(1 + n);
	while (now() < deadline) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int r = poll(&p, 1, FLOOD_SEND_WAIT_MS);

		if (r < 0 && errno != EINTR)
			return -(1 + n);
		if (r > 0) { /* an alert, a close: read to the end */
			ssize_t got = recv(fd, buf, sizeof(buf), 0);

			if (got <= 0)
				return -(1 + n);
		}
	}
	return n;
}

/* What the socket still holds of what was sent, once the server read all it
 * will: the send queue is watched until it is empty, or the same for
 * FLOOD_STILL_MS (a busy server may pause for less). */
static int unsent(int fd)
{
	int prev = -1, cur = 0, still = 0;

	for (int ms = 0; ms < FLOOD_DRAIN_MAX_MS; ms += FLOOD_DRAIN_STEP_MS) {
		if (ioctl(fd, SIOCOUTQ, &cur) < 0)
			return -1;
		still = cur == prev ? still + FLOOD_DRAIN_STEP_MS : 0;
		if (cur == 0 || still >= FLOOD_STILL_MS)
			break;
		prev = cur;
		usleep(FLOOD_DRAIN_STEP_MS * 1000);
	}
	return cur;
}

int main(int argc, char **argv)
{
	SSL_CTX *ctx;
	SSL *s;
	enum flood_mode mode;
	long n;
	int fd, port;
	char c;

	if (argc != 6) {
		fprintf(
		    stderr,
		    "usage: keyupdate_flood PORT SNI COUNT SECONDS bare|trickle|requests|after\n");
		return 2;
	}
	port = (int)arg(argv[1], 1, 65535);
	if (strcmp(argv[5], "bare") == 0)
		mode = FLOOD_BARE;
	else if (strcmp(argv[5], "trickle") == 0)
		mode = FLOOD_TRICKLE;
	else if (strcmp(argv[5], "requests") == 0)
		mode = FLOOD_REQUESTS;
	else if (strcmp(argv[5], "after") == 0)
		mode = FLOOD_AFTER;
	else {
		fprintf(stderr, "keyupdate_flood: bad mode %s\n", argv[5]);
		return 2;
	}
	signal(SIGPIPE, SIG_IGN); /* a closed connection is an error to report */
	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL || !SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION))
		return 1;
	fd = dial(port, mode != FLOOD_REQUESTS);
	if (fd < 0) {
		perror("keyupdate_flood: connect");
		return 1;
	}
	s = SSL_new(ctx);
	if (s == NULL || !SSL_set_fd(s, fd) || !SSL_set_tlsext_host_name(s, argv[2]) ||
	    SSL_connect(s) != 1) {
		ERR_print_errors_fp(stderr);
		return 1;
	}
	printf("connected\n");
	fflush(stdout);
	if (mode == FLOOD_AFTER)
		n = after_data(s, fd, arg(argv[3], 1, 1000), now() + (double)arg(argv[4], 1, 3600));
	else
		n = flood(s, argv[2], mode, arg(argv[3], 1, 100000000),
			  now() + (double)arg(argv[4], 1, 3600));
	if (n < 0)
		printf("closed after %ld\n", -n - 1);
	else if (mode == FLOOD_AFTER)
		printf("open after %ld\n", n);
	else if (mode == FLOOD_REQUESTS)
		printf("served %ld\n", n);
	else
		printf("sent %ld unsent %d\n", n, unsent(fd));
	fflush(stdout);
	while (read(0, &c, 1) > 0)
		;
	close(fd);
	SSL_free(s);
	SSL_CTX_free(ctx);
	return 0;
}
