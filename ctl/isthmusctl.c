/* SPDX-License-Identifier: Apache-2.0 */
/* isthmusctl: the control-socket client. Sends its arguments as one command line
 * to the master's control socket and prints the answer. The commands it lists
 * (--help, help) are the master's own list, master/cmdlist.h.
 *
 * Exit status: 0 success; 1 the master answered with an error (or a refused
 * reload); 2 usage error; 3 the socket could not be reached, the answer timed out,
 * or the master closed the connection. */
#include <errno.h>
#include <getopt.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/version.h"
#include "master/cmdlist.h"

#define DEFAULT_SOCKET	  "/run/isthmus/isthmus.sock"
#define TIMEOUT_MS	  30000	 /* an answer (silence allowed between its parts) */
#define RELOAD_TIMEOUT_MS 300000 /* a reload may wait behind another, each of a large file */

static void synopsis(FILE *out)
{
	fprintf(out, "usage: isthmusctl [-s SOCKET] COMMAND... [json]\n"
		     "       isthmusctl -h | --help | help       the commands\n"
		     "       isthmusctl -v | --version           the version\n");
}

static void usage(FILE *out)
{
	synopsis(out);
	fprintf(out, "  -s, --socket SOCKET  the master's control socket (default " DEFAULT_SOCKET
		     ", or $ISTHMUS_SOCKET)\n"
		     "commands (append \"json\" to any command for JSON):\n");
#define CMD_USAGE(name, words, args, form, syntax, help)                                           \
	fprintf(out, "  %s%s%s\n      %s\n", words, syntax[0] ? " " : "", syntax, help);
	ISM_CMD_LIST(CMD_USAGE)
#undef CMD_USAGE
	fprintf(out, "exit status: 0 ok, 1 error reported by isthmus, 2 usage, 3 cannot reach "
		     "isthmus\n");
}

/* Whether the answer begins with prefix: how the master reports a failure. */
static int starts(const char *answer, size_t len, const char *prefix)
{
	size_t n = strlen(prefix);

	return len >= n && strncmp(answer, prefix, n) == 0;
}

/* Sends the command line. MSG_NOSIGNAL: a master that dropped the connection
 * is reported (exit 3), not a death by SIGPIPE. */
static int send_all(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		p += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Reads the whole answer (the master closes after it), bounded in time. */
static int read_answer(int fd, int timeout_ms, char **out, size_t *len)
{
	size_t cap = 65536, n = 0;
	char *buf = malloc(cap);

	if (buf == NULL)
		return -ENOMEM;
	for (;;) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		ssize_t r;

		if (poll(&p, 1, timeout_ms) <= 0) {
			free(buf);
			return -ETIMEDOUT;
		}
		if (n == cap) {
			char *nb = realloc(buf, cap * 2);

			if (nb == NULL) {
				free(buf);
				return -ENOMEM;
			}
			buf = nb;
			cap *= 2;
		}
		r = read(fd, buf + n, cap - n);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			free(buf);
			return -errno;
		}
		if (r == 0)
			break;
		n += (size_t)r;
	}
	*out = buf;
	*len = n;
	return 0;
}

static const struct option options[] = {
    {"socket", required_argument, NULL, 's'},
    {"help", no_argument, NULL, 'h'},
    {"version", no_argument, NULL, 'v'},
    {NULL, 0, NULL, 0},
};

int main(int argc, char **argv)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	const char *path = getenv("ISTHMUS_SOCKET");
	char line[512];
	size_t n = 0, alen = 0;
	char *answer = NULL;
	int opt, fd, ret;

	if (path == NULL)
		path = DEFAULT_SOCKET;
	while ((opt = getopt_long(argc, argv, "+s:hv", options, NULL)) != -1) {
		switch (opt) {
		case 's':
			path = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		case 'v':
			printf("isthmusctl " ISM_VERSION "\n");
			return 0;
		default:
			synopsis(stderr);
			return 2;
		}
	}
	if (optind >= argc) {
		synopsis(stderr);
		return 2;
	}
	/* The list is this program's own: no master is needed to read it. */
	if (optind + 1 == argc && strcmp(argv[optind], "help") == 0) {
		usage(stdout);
		return 0;
	}
	for (int i = optind; i < argc; i++) {
		int w =
		    snprintf(line + n, sizeof(line) - n, "%s%s", i > optind ? " " : "", argv[i]);

		if (w < 0 || (size_t)w >= sizeof(line) - n) {
			fprintf(stderr, "isthmusctl: command too long\n");
			return 2;
		}
		n += (size_t)w;
	}
	if (strlen(path) >= sizeof(sa.sun_path)) {
		fprintf(stderr, "isthmusctl: socket path too long: %s\n", path);
		return 2;
	}
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		fprintf(stderr, "isthmusctl: %s: %s (is isthmus running?)\n", path,
			strerror(errno));
		return 3;
	}
	line[n++] = '\n';
	ret = send_all(fd, line, n);
	if (ret < 0) {
		fprintf(stderr, "isthmusctl: %s: %s (the master closed the connection)\n", path,
			strerror(-ret));
		close(fd);
		return 3;
	}
	ret = read_answer(fd, strcmp(argv[optind], "reload") == 0 ? RELOAD_TIMEOUT_MS : TIMEOUT_MS,
			  &answer, &alen);
	close(fd);
	if (ret < 0) {
		fprintf(stderr, "isthmusctl: %s: %s\n", path, strerror(-ret));
		return 3;
	}
	fwrite(answer, 1, alen, stdout);
	ret = starts(answer, alen, "error:") || starts(answer, alen, "reload refused") ||
	      starts(answer, alen, "{\"result\":\"error\"") ||
	      starts(answer, alen, "{\"result\":\"refused\"");
	free(answer);
	return ret ? 1 : 0;
}
