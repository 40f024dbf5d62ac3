/* SPDX-License-Identifier: Apache-2.0 */
/*
 * tests/upstream/keyupdate_upstream.c — a TLS 1.3 HTTP/1.1 upstream that stops reading its
 * client, for test_tls.py: for each connection (one at a time) it reads a request head,
 * sends a response head announcing a long body, then a KeyUpdate(update_requested) and one
 * byte of the body in a loop for SECONDS (a write blocked that long gives up), never
 * reading (a small receive buffer): the gateway's answers to the KeyUpdates pile up unread.
 * Then it resets the connection (RST).
 *
 * Prints "listening on ADDR:PORT" once it listens (PORT 0: the kernel's choice).
 * Build: `make` builds BUILD/tests/keyupdate_upstream (libssl).
 * Usage: keyupdate_upstream ADDR PORT CERT KEY SECONDS
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Reads until the end of a request head; 0, or -1. */
static int read_head(SSL *ssl)
{
	char b[8192];
	int n = 0;

	for (;;) {
		int r = SSL_read(ssl, b + n, (int)sizeof(b) - 1 - n);

		if (r <= 0)
			return -1;
		n += r;
		b[n] = '\0';
		if (strstr(b, "\r\n\r\n") != NULL)
			return 0;
		if (n >= (int)sizeof(b) - 1)
			return -1;
	}
}

static void serve(SSL_CTX *ctx, int fd, double seconds)
{
	static const char head[] = "HTTP/1.1 200 OK\r\ncontent-length: 100000000\r\n\r\n";
	struct linger reset = {.l_onoff = 1, .l_linger = 0};
	/* A write blocked by a gateway that stopped reading gives up in time. */
	struct timeval bound = {.tv_sec = (time_t)seconds, .tv_usec = 0};
	SSL *ssl = SSL_new(ctx);
	double end;

	setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &bound, sizeof(bound));
	if (ssl == NULL || !SSL_set_fd(ssl, fd) || SSL_accept(ssl) != 1 || read_head(ssl) < 0 ||
	    SSL_write(ssl, head, (int)sizeof(head) - 1) <= 0)
		goto out;
	for (end = now_s() + seconds; now_s() < end;) {
		if (!SSL_key_update(ssl, SSL_KEY_UPDATE_REQUESTED) || SSL_write(ssl, "x", 1) <= 0)
			break;
	}
out:
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &reset, sizeof(reset));
	SSL_free(ssl);
	close(fd);
}

int main(int argc, char **argv)
{
	struct sockaddr_in a = {.sin_family = AF_INET};
	socklen_t al = sizeof(a);
	int l, one = 1, rcv = 4096;
	SSL_CTX *ctx;

	if (argc != 6) {
		fprintf(stderr, "usage: keyupdate_upstream ADDR PORT CERT KEY SECONDS\n");
		return 2;
	}
	signal(SIGPIPE, SIG_IGN);
	ctx = SSL_CTX_new(TLS_server_method());
	if (ctx == NULL || !SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION) ||
	    SSL_CTX_use_certificate_chain_file(ctx, argv[3]) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, argv[4], SSL_FILETYPE_PEM) != 1) {
		ERR_print_errors_fp(stderr);
		return 1;
	}
	a.sin_port = htons((uint16_t)atoi(argv[2]));
	l = socket(AF_INET, SOCK_STREAM, 0);
	setsockopt(l, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	/* Inherited by the accepted sockets: the gateway's records pile up. */
	setsockopt(l, SOL_SOCKET, SO_RCVBUF, &rcv, sizeof(rcv));
	if (inet_pton(AF_INET, argv[1], &a.sin_addr) != 1 || bind(l, (void *)&a, sizeof(a)) < 0 ||
	    listen(l, 16) < 0 || getsockname(l, (void *)&a, &al) < 0) {
		perror("keyupdate_upstream");
		return 1;
	}
	printf("listening on %s:%u\n", argv[1], ntohs(a.sin_port));
	fflush(stdout);
	for (;;) {
		int fd = accept(l, NULL, NULL);

		if (fd >= 0)
			serve(ctx, fd, atof(argv[5]));
	}
}
