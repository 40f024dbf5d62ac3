/* SPDX-License-Identifier: Apache-2.0 */
/*
 * bench/grpc_responder.c — a gRPC unary upstream for bench/h2.sh's gRPC round: HTTP/2 with
 * prior knowledge (h2c) on 127.0.0.1:PORT, PROCS processes of one thread each (default 1), each
 * with its own listener on the port (SO_REUSEPORT), epoll, libnghttp2 as the codec. Every
 * request stream, whatever its path and body, is answered once it has ended with
 *   :status 200, content-type: application/grpc
 *   DATA: one length-prefixed gRPC message (flag 0, 4-byte big-endian length, BYTES bytes)
 *   trailers: grpc-status: 0
 * It parses no protobuf and checks nothing about the request: it only has to cost the upstream
 * as little as possible, so that the proxies in front of it are what the round measures. What a
 * pass of the session frames goes out in one send (as a gRPC server's buffered writer does), not
 * one send per frame.
 *
 * Build (h2.sh does it into its temporary directory):
 *   cc -O2 -o grpc_responder bench/grpc_responder.c $(pkg-config --cflags --libs libnghttp2)
 * Usage: grpc_responder PORT [BYTES [PROCS]]   (BYTES: message payload, default 32, at most
 * 16000; PROCS: processes, default 1, at most 64). Runs until SIGTERM or SIGINT; the first
 * process stops the others as it ends.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <nghttp2/nghttp2.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#define MAX_EVENTS  64
#define MAX_PAYLOAD 16000
#define OUT_CAP	    (256 * 1024)

/* One client connection. */
enum resp_conn_state {
	RESP_CONN_OPEN,	   /* reading and answering */
	RESP_CONN_CLOSING, /* peer gone, error, or session done: to be freed */
};

struct resp_conn {
	enum resp_conn_state state;
	int fd;
	int want_out; /* EPOLLOUT armed */
	nghttp2_session *session;
	size_t out_len; /* framed, not yet sent */
	uint8_t out[OUT_CAP];
};

static uint8_t message[5 + MAX_PAYLOAD];
static size_t message_len;
static volatile sig_atomic_t stopping;
static int epfd = -1;

static void on_signal(int sig)
{
	(void)sig;
	stopping = 1;
}

/* nghttp2 frames into the connection's output, sent after the pass (out_flush). */
static ssize_t send_cb(nghttp2_session *s, const uint8_t *data, size_t len, int flags, void *arg)
{
	struct resp_conn *c = arg;

	(void)s;
	(void)flags;
	if (c->out_len == OUT_CAP)
		return NGHTTP2_ERR_WOULDBLOCK;
	if (len > OUT_CAP - c->out_len)
		len = OUT_CAP - c->out_len;
	memcpy(c->out + c->out_len, data, len);
	c->out_len += len;
	return (ssize_t)len;
}

/* Sends what was framed, as much as the socket takes; -1 when the connection failed. */
static int out_flush(struct resp_conn *c)
{
	while (c->out_len) {
		ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
		memmove(c->out, c->out + n, c->out_len - (size_t)n);
		c->out_len -= (size_t)n;
	}
	return 0;
}

static ssize_t body_cb(nghttp2_session *s, int32_t stream_id, uint8_t *buf, size_t len,
		       uint32_t *flags, nghttp2_data_source *src, void *arg)
{
	static const nghttp2_nv trailers[] = {
	    {(uint8_t *)"grpc-status", (uint8_t *)"0", 11, 1, NGHTTP2_NV_FLAG_NONE},
	};

	(void)src;
	(void)arg;
	if (len < message_len)
		return NGHTTP2_ERR_DEFERRED; /* never: the frame payload is >= 16384 */
	memcpy(buf, message, message_len);
	*flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
	if (nghttp2_submit_trailer(s, stream_id, trailers, 1) != 0)
		return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
	return (ssize_t)message_len;
}

static int frame_recv_cb(nghttp2_session *s, const nghttp2_frame *f, void *arg)
{
	static const nghttp2_nv head[] = {
	    {(uint8_t *)":status", (uint8_t *)"200", 7, 3, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16,
	     NGHTTP2_NV_FLAG_NONE},
	};
	nghttp2_data_provider prd = {.read_callback = body_cb};

	(void)arg;
	if (f->hd.type != NGHTTP2_HEADERS && f->hd.type != NGHTTP2_DATA)
		return 0;
	if (!(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	if (nghttp2_submit_response(s, f->hd.stream_id, head, 2, &prd) != 0)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	return 0;
}

static nghttp2_session_callbacks *callbacks;

static void conn_arm(struct resp_conn *c)
{
	int want = nghttp2_session_want_write(c->session) != 0 || c->out_len > 0;
	struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};

	if (want == c->want_out)
		return;
	c->want_out = want;
	epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Reads what is there, feeds it to the session, sends what the session has in one send. */
static void conn_io(struct resp_conn *c)
{
	uint8_t buf[65536];
	ssize_t n;
	int i;

	for (i = 0; i < 16; i++) {
		n = recv(c->fd, buf, sizeof(buf), 0);
		if (n == 0 ||
		    (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)) {
			c->state = RESP_CONN_CLOSING;
			return;
		}
		if (n < 0)
			break;
		if (nghttp2_session_mem_recv(c->session, buf, (size_t)n) < 0) {
			c->state = RESP_CONN_CLOSING;
			return;
		}
		if ((size_t)n < sizeof(buf))
			break;
	}
	if (out_flush(c) < 0 || nghttp2_session_send(c->session) != 0 || out_flush(c) < 0 ||
	    (!nghttp2_session_want_read(c->session) && !nghttp2_session_want_write(c->session) &&
	     c->out_len == 0)) {
		c->state = RESP_CONN_CLOSING;
		return;
	}
	conn_arm(c);
}

static void conn_free(struct resp_conn *c)
{
	epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	nghttp2_session_del(c->session);
	free(c);
}

/* The one place a connection's state is acted on. */
static void conn_event(struct resp_conn *c)
{
	switch (c->state) {
	case RESP_CONN_OPEN:
		conn_io(c);
		if (c->state == RESP_CONN_CLOSING)
			conn_free(c);
		break;
	case RESP_CONN_CLOSING:
		conn_free(c);
		break;
	}
}

static void accept_all(int lfd)
{
	nghttp2_settings_entry iv[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 1000}};
	int i, fd, one = 1;

	for (i = 0; i < 256; i++) {
		struct resp_conn *c;
		struct epoll_event ev = {.events = EPOLLIN};

		fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;
		setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
		c = calloc(1, sizeof(*c));
		if (!c || nghttp2_session_server_new(&c->session, callbacks, c) != 0) {
			free(c);
			close(fd);
			continue;
		}
		c->fd = fd;
		c->state = RESP_CONN_OPEN;
		ev.data.ptr = c;
		nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, 1);
		if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
			close(fd);
			nghttp2_session_del(c->session);
			free(c);
			continue;
		}
		conn_event(c); /* sends the SETTINGS */
	}
}

int main(int argc, char **argv)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	struct epoll_event evs[MAX_EVENTS], ev = {.events = EPOLLIN};
	struct sigaction sig = {.sa_handler = on_signal};
	long port, bytes = 32, procs = 1;
	pid_t kids[64];
	int lfd, one = 1, n, i, nkids = 0, first = 1;

	if (argc < 2 || argc > 4) {
		fprintf(stderr, "usage: %s PORT [BYTES [PROCS]]\n", argv[0]);
		return 2;
	}
	port = strtol(argv[1], NULL, 10);
	if (argc >= 3)
		bytes = strtol(argv[2], NULL, 10);
	if (argc == 4)
		procs = strtol(argv[3], NULL, 10);
	if (port < 1 || port > 65535 || bytes < 0 || bytes > MAX_PAYLOAD || procs < 1 ||
	    procs > 64) {
		fprintf(stderr, "%s: bad PORT, BYTES or PROCS\n", argv[0]);
		return 2;
	}
	message[1] = (uint8_t)(bytes >> 24);
	message[2] = (uint8_t)(bytes >> 16);
	message[3] = (uint8_t)(bytes >> 8);
	message[4] = (uint8_t)bytes;
	memset(message + 5, 'g', (size_t)bytes);
	message_len = 5 + (size_t)bytes;

	sigaction(SIGTERM, &sig, NULL);
	sigaction(SIGINT, &sig, NULL);
	signal(SIGPIPE, SIG_IGN);

	nghttp2_session_callbacks_new(&callbacks);
	nghttp2_session_callbacks_set_send_callback(callbacks, send_cb);
	nghttp2_session_callbacks_set_on_frame_recv_callback(callbacks, frame_recv_cb);

	/* Each process its own listener on the port (SO_REUSEPORT: the kernel spreads the
	 * connections), its own epoll and connections. */
	for (i = 1; i < procs; i++) {
		pid_t pid = fork();

		if (pid < 0) {
			perror("grpc_responder: fork");
			break;
		}
		if (pid == 0) {
			nkids = 0;
			first = 0;
			break;
		}
		kids[nkids++] = pid;
	}
	sa.sin_port = htons((uint16_t)port);
	lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (lfd < 0 || setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) != 0 ||
	    setsockopt(lfd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) != 0 ||
	    bind(lfd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || listen(lfd, 4096) != 0) {
		perror("grpc_responder: listen");
		return 1;
	}
	epfd = epoll_create1(EPOLL_CLOEXEC);
	ev.data.ptr = NULL; /* the listener */
	if (epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, lfd, &ev) != 0) {
		perror("grpc_responder: epoll");
		return 1;
	}
	if (first)
		fprintf(stderr,
			"grpc_responder: listening on 127.0.0.1:%ld, %ld-byte messages, %ld "
			"processes\n",
			port, bytes, procs);
	while (!stopping) {
		n = epoll_wait(epfd, evs, MAX_EVENTS, 500);
		for (i = 0; i < n; i++) {
			if (evs[i].data.ptr == NULL)
				accept_all(lfd);
			else
				conn_event(evs[i].data.ptr);
		}
	}
	for (i = 0; i < nkids; i++)
		kill(kids[i], SIGTERM);
	nghttp2_session_callbacks_del(callbacks);
	return 0;
}
