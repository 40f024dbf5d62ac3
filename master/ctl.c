/* Control socket server (master). Each connection carries one command line;
 * the master answers and closes. A client gets at most 1 s to send its line. */
#include "master/ctl.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "lib/log.h"
#include "master/master-t.h"

#define CTL_LINE_MAX  512
#define CTL_REPLY_MAX 65536
#define CTL_CLIENT_MS 1000

struct ism_ctl_client {
	int fd;
	uint32_t len;
	uint64_t deadline;
	char line[CTL_LINE_MAX];
};

struct ism_ctl {
	struct ism_master *m;
	int fd;
	char path[sizeof(((struct sockaddr_un *)0)->sun_path)];
	struct ism_ctl_client clients[ISM_CTL_MAX_CLIENTS];
};

static int make_parent(const char *path)
{
	char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
	char *slash;

	snprintf(dir, sizeof(dir), "%s", path);
	slash = strrchr(dir, '/');
	if (slash == NULL || slash == dir)
		return 0;
	*slash = '\0';
	if (mkdir(dir, 0755) < 0 && errno != EEXIST)
		return -errno;
	return 0;
}

int ism_ctl_create(struct ism_master *m, const char *path, struct ism_ctl **out)
{
	struct sockaddr_un sa = {.sun_family = AF_UNIX};
	struct ism_ctl *c;
	int ret;

	if (strlen(path) >= sizeof(sa.sun_path)) {
		ism_err("control socket path too long: %s", path);
		return -ENAMETOOLONG;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return -ENOMEM;
	c->m = m;
	for (int i = 0; i < ISM_CTL_MAX_CLIENTS; i++)
		c->clients[i].fd = -1;
	snprintf(c->path, sizeof(c->path), "%s", path);
	snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
	ret = make_parent(path);
	if (ret < 0)
		goto fail;
	c->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd < 0) {
		ret = -errno;
		goto fail;
	}
	unlink(path); /* a stale socket of an earlier run */
	if (bind(c->fd, (struct sockaddr *)&sa, sizeof(sa)) < 0 || chmod(path, 0660) < 0 ||
	    listen(c->fd, 16) < 0) {
		ret = -errno;
		close(c->fd);
		goto fail;
	}
	*out = c;
	return 0;
fail:
	ism_err("control socket %s: %s", path, strerror(-ret));
	free(c);
	return ret;
}

void ism_ctl_destroy(struct ism_ctl *c)
{
	if (c == NULL)
		return;
	for (int i = 0; i < ISM_CTL_MAX_CLIENTS; i++)
		if (c->clients[i].fd >= 0)
			close(c->clients[i].fd);
	close(c->fd);
	unlink(c->path);
	free(c);
}

size_t ism_ctl_pollfds(const struct ism_ctl *c, struct pollfd *pfd, size_t max)
{
	size_t n = 0;

	if (c == NULL || max == 0)
		return 0;
	pfd[n++] = (struct pollfd){.fd = c->fd, .events = POLLIN};
	for (int i = 0; i < ISM_CTL_MAX_CLIENTS && n < max; i++)
		pfd[n++] = (struct pollfd){.fd = c->clients[i].fd, .events = POLLIN};
	return n;
}

static size_t show_info(struct ism_master *m, char *out, size_t len)
{
	struct ism_worker_stats st;
	const struct ism_shm_hdr *h = m->shm.hdr;

	ism_shm_stats_sum(&m->shm, &st);
	return (size_t)snprintf(
	    out, len,
	    "generation: %llu\nconfig: %s\nworkers: %d\nreloads: %llu\nreload_failures: %llu\n"
	    "uptime_s: %llu\nconnections_active: %llu\nconnections_accepted: %llu\n"
	    "requests: %llu\nresponses_2xx: %llu\nresponses_4xx: %llu\nresponses_5xx: %llu\n",
	    (unsigned long long)m->gen, m->conf_path, m->n_workers,
	    (unsigned long long)atomic_load(&h->reloads),
	    (unsigned long long)atomic_load(&h->reload_failures),
	    (unsigned long long)((ism_wall_ms() - atomic_load(&h->started_ms)) / 1000),
	    (unsigned long long)st.conn_active, (unsigned long long)st.conn_accepted,
	    (unsigned long long)st.requests, (unsigned long long)st.resp_class[2],
	    (unsigned long long)st.resp_class[4], (unsigned long long)st.resp_class[5]);
}

static size_t show_endpoints(struct ism_master *m, char *out, size_t len)
{
	const struct ism_shm_hdr *h = m->shm.hdr;
	size_t n = 0;

	for (int i = 0; i < ISM_MAX_ENDPOINTS && n < len; i++) {
		const struct ism_ep_state *e = &h->eps[i];

		if (!atomic_load(&e->in_use))
			continue;
		n += (size_t)snprintf(
		    out + n, len - n,
		    "%d %s health=%s inflight=%u requests=%llu failures=%llu "
		    "checks=%llu check_failures=%llu\n",
		    i, h->ep_keys[i],
		    atomic_load(&e->health) == ISM_EP_HEALTHY ? "healthy" : "unhealthy",
		    atomic_load(&e->inflight), (unsigned long long)atomic_load(&e->requests),
		    (unsigned long long)atomic_load(&e->failures),
		    (unsigned long long)atomic_load(&e->hc_checks),
		    (unsigned long long)atomic_load(&e->hc_failures));
	}
	return n < len ? n : len - 1;
}

static void execute(struct ism_ctl *c, const char *cmd, int fd)
{
	char *out = malloc(CTL_REPLY_MAX);
	size_t n;

	if (out == NULL)
		return;
	if (strcmp(cmd, "reload") == 0) {
		ism_master_reload(c->m, out, CTL_REPLY_MAX);
		n = strlen(out);
	} else if (strcmp(cmd, "show info") == 0) {
		n = show_info(c->m, out, CTL_REPLY_MAX);
	} else if (strcmp(cmd, "show endpoints") == 0) {
		n = show_endpoints(c->m, out, CTL_REPLY_MAX);
	} else if (strcmp(cmd, "help") == 0 || cmd[0] == '\0') {
		n = (size_t)snprintf(out, CTL_REPLY_MAX,
				     "commands: reload, show info, show endpoints, help\n");
	} else {
		n = (size_t)snprintf(out, CTL_REPLY_MAX, "error: unknown command '%s'\n", cmd);
	}
	if (n >= CTL_REPLY_MAX)
		n = CTL_REPLY_MAX - 1;
	/* The reply is small; a client that does not read it loses it. */
	if (send(fd, out, n, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		ism_debug("control client: %s", strerror(errno));
	free(out);
}

static void client_drop(struct ism_ctl_client *cl)
{
	close(cl->fd);
	cl->fd = -1;
	cl->len = 0;
}

static void client_read(struct ism_ctl *c, struct ism_ctl_client *cl)
{
	ssize_t r = recv(cl->fd, cl->line + cl->len, sizeof(cl->line) - 1 - cl->len, MSG_DONTWAIT);
	char *nl;

	if (r < 0 && (errno == EAGAIN || errno == EINTR))
		return;
	if (r > 0)
		cl->len += (uint32_t)r;
	cl->line[cl->len] = '\0';
	nl = strchr(cl->line, '\n');
	if (nl == NULL && r > 0 && cl->len < sizeof(cl->line) - 1)
		return;
	if (nl)
		*nl = '\0';
	if (nl && nl > cl->line && nl[-1] == '\r')
		nl[-1] = '\0';
	if (r >= 0)
		execute(c, cl->line, cl->fd);
	client_drop(cl);
}

void ism_ctl_run(struct ism_ctl *c, const struct pollfd *pfd, size_t n)
{
	uint64_t now = ism_now_ms();

	if (c == NULL || n == 0)
		return;
	for (size_t i = 1; i < n; i++) {
		struct ism_ctl_client *cl = &c->clients[i - 1];

		if (cl->fd >= 0 && pfd[i].fd == cl->fd && pfd[i].revents)
			client_read(c, cl);
		else if (cl->fd >= 0 && cl->deadline <= now)
			client_drop(cl);
	}
	if (pfd[0].revents & POLLIN) {
		for (;;) {
			int fd = accept4(c->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
			int slot = -1;

			if (fd < 0)
				break;
			for (int i = 0; i < ISM_CTL_MAX_CLIENTS && slot < 0; i++)
				if (c->clients[i].fd < 0)
					slot = i;
			if (slot < 0) {
				close(fd);
				continue;
			}
			c->clients[slot].fd = fd;
			c->clients[slot].len = 0;
			c->clients[slot].deadline = now + CTL_CLIENT_MS;
		}
	}
}
