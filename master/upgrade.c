/* SPDX-License-Identifier: Apache-2.0 */
/* The binary upgrade (master/upgrade.h): what the old master hands over in
 * the environment of the binary it executes, and what the new one does with
 * it. */
#include "master/upgrade.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "master/master-t.h"
#include "master/reload.h"
#include "shm/shm.h"

#define ENV_LISTEN "ISTHMUS_UPGRADE_LISTEN" /* "fd,fd,..." */
#define ENV_HEIRS  "ISTHMUS_UPGRADE_HEIRS"  /* "pid:fd,pid:fd,..." */
#define ENV_DRAIN  "ISTHMUS_UPGRADE_DRAIN"  /* the old workers' drain time, ms */
/* The first round of health checks is not waited for longer: the old
 * workers serve meanwhile. */
#define SETTLE_MAX_MS 10000
#define KILL_GRACE_MS 5000
#define CHECK_MAX_MS  60000

extern char **environ;

/* fd is one of this process's sockets: closed on exec again. */
static bool own_fd(int fd)
{
	int flags = fcntl(fd, F_GETFD);

	return flags >= 0 && fcntl(fd, F_SETFD, flags | FD_CLOEXEC) == 0;
}

static void take_listen(struct ism_upgrade *u, const char *s)
{
	size_t n = 1;

	for (const char *p = s; *p; p++)
		n += *p == ',';
	u->listen = calloc(n, sizeof(*u->listen));
	if (u->listen == NULL)
		return;
	for (char *end; *s;) {
		long fd = strtol(s, &end, 10);
		int listening = 0;
		socklen_t len = sizeof(listening);

		if (end == s)
			break;
		if (fd > 2 && fd < INT_MAX && own_fd((int)fd) &&
		    getsockopt((int)fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 &&
		    listening)
			u->listen[u->n_listen++] = (int)fd;
		s = *end == ',' ? end + 1 : end;
	}
}

static void take_heirs(struct ism_upgrade *u, const char *s)
{
	for (char *end; *s && u->n_heirs < ISM_WORKER_SLOTS;) {
		long pid = strtol(s, &end, 10), fd;

		if (end == s || *end != ':')
			break;
		s = end + 1;
		fd = strtol(s, &end, 10);
		if (end == s)
			break;
		if (pid > 1 && pid < INT_MAX && fd > 2 && fd < INT_MAX && own_fd((int)fd) &&
		    kill((pid_t)pid, 0) == 0)
			u->heirs[u->n_heirs++] = (struct ism_heir){(pid_t)pid, (int)fd};
		s = *end == ',' ? end + 1 : end;
	}
}

void ism_upgrade_init(struct ism_upgrade *u, char *const *argv)
{
	const char *listen = getenv(ENV_LISTEN), *heirs = getenv(ENV_HEIRS);
	const char *drain = getenv(ENV_DRAIN);
	ssize_t n = readlink("/proc/self/exe", u->exe, sizeof(u->exe) - 1);
	char *deleted;

	u->argv = argv;
	u->exe[n > 0 ? n : 0] = '\0';
	/* Replaced since it started (a package upgrade before an earlier one). */
	if ((deleted = strstr(u->exe, " (deleted)")) != NULL && deleted[10] == '\0')
		*deleted = '\0';
	if (listen != NULL)
		take_listen(u, listen);
	if (heirs != NULL)
		take_heirs(u, heirs);
	u->drain_ms = drain != NULL ? (uint32_t)strtoul(drain, NULL, 10) : 0;
	unsetenv(ENV_LISTEN);
	unsetenv(ENV_HEIRS);
	unsetenv(ENV_DRAIN);
	if (u->n_listen > 0 || u->n_heirs > 0) {
		u->state = ISM_UPGRADE_SETTLING;
		u->settle_until = ism_now_ms() + SETTLE_MAX_MS;
		ism_notice("upgrade: %s started with %d listening sockets and %d old workers "
			   "handed over",
			   u->exe, u->n_listen, u->n_heirs);
	}
}

int ism_upgrade_adopt(struct ism_upgrade *u, const struct ism_listener *l)
{
	for (int i = 0; i < u->n_listen; i++) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);
		int fd = u->listen[i];

		memset(&ss, 0, sizeof(ss));
		if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &len) < 0 ||
		    len != l->addrlen || memcmp(&ss, &l->addr, len) != 0)
			continue;
		u->listen[i] = -1;
		ism_notice("listening on port %u (%s): the socket handed over", l->port, l->name.p);
		return fd;
	}
	return -1;
}

void ism_upgrade_adopted(struct ism_upgrade *u)
{
	for (int i = 0; i < u->n_listen; i++)
		if (u->listen[i] >= 0)
			close(u->listen[i]);
	free(u->listen);
	u->listen = NULL;
	u->n_listen = 0;
}

bool ism_upgrade_may_start(const struct ism_upgrade *u, bool health_settled, uint64_t now)
{
	return u->state != ISM_UPGRADE_SETTLING || health_settled || now >= u->settle_until;
}

/* The old workers drain: the end of their socketpair closed (as when their
 * master goes) and SIGTERM. */
static void release_heirs(struct ism_upgrade *u, uint64_t now)
{
	for (int i = 0; i < u->n_heirs; i++) {
		if (u->heirs[i].fd >= 0)
			close(u->heirs[i].fd);
		u->heirs[i].fd = -1;
		kill(u->heirs[i].pid, SIGTERM);
	}
	u->drain_deadline = now + u->drain_ms + KILL_GRACE_MS;
	if (u->n_heirs > 0)
		ism_notice("upgrade: %d old workers draining (up to %u ms)", u->n_heirs,
			   u->drain_ms);
}

void ism_upgrade_step(struct ism_upgrade *u, bool started, uint64_t now)
{
	switch ((enum ism_upgrade_state)u->state) {
	case ISM_UPGRADE_NONE:
		return;
	case ISM_UPGRADE_SETTLING:
		if (!started)
			return;
		release_heirs(u, now);
		u->state = ISM_UPGRADE_DRAINING;
		__attribute__((fallthrough)); /* none may be left */
	case ISM_UPGRADE_DRAINING:
		if (u->n_heirs == 0) {
			ism_notice("upgrade: done");
			u->state = ISM_UPGRADE_NONE;
			return;
		}
		if (now < u->drain_deadline)
			return;
		ism_warn("upgrade: %d old workers still draining after their drain time: killed",
			 u->n_heirs);
		for (int i = 0; i < u->n_heirs; i++)
			kill(u->heirs[i].pid, SIGKILL);
		u->drain_deadline = now + KILL_GRACE_MS;
		return;
	}
}

bool ism_upgrade_reaped(struct ism_upgrade *u, pid_t pid)
{
	for (int i = 0; i < u->n_heirs; i++) {
		if (u->heirs[i].pid != pid)
			continue;
		ism_info("old worker (pid %d) exited after the upgrade", (int)pid);
		if (u->heirs[i].fd >= 0)
			close(u->heirs[i].fd);
		u->heirs[i] = u->heirs[--u->n_heirs];
		return true;
	}
	return false;
}

int ism_upgrade_timeout_ms(const struct ism_upgrade *u, uint64_t now)
{
	uint64_t at;

	switch ((enum ism_upgrade_state)u->state) {
	case ISM_UPGRADE_NONE:
		return -1;
	case ISM_UPGRADE_SETTLING:
		at = u->settle_until;
		break;
	case ISM_UPGRADE_DRAINING:
		at = u->drain_deadline;
		break;
	default:
		return -1;
	}
	return at <= now ? 0 : at - now > 1000 ? 1000 : (int)(at - now);
}

/* ---------- the old master ---------- */

/* `exe -c -f file`, as the unit checks a file: 0 when the binary at the path
 * would start on it; else -1, its output logged. Waits CHECK_MAX_MS at most. */
static int check_with(const char *exe, const char *conf)
{
	char out[4096];
	size_t len = 0;
	int pipefd[2], status = 0;
	uint64_t until = ism_now_ms() + CHECK_MAX_MS;
	pid_t pid, got;

	if (pipe2(pipefd, O_CLOEXEC) < 0)
		return -1;
	pid = fork();
	if (pid < 0) {
		close(pipefd[0]);
		close(pipefd[1]);
		return -1;
	}
	if (pid == 0) {
		char *const args[] = {(char *)exe, (char *)"-c", (char *)"-f", (char *)conf, NULL};

		dup2(pipefd[1], STDOUT_FILENO);
		dup2(pipefd[1], STDERR_FILENO);
		execv(exe, args);
		_exit(127);
	}
	close(pipefd[1]);
	for (;;) {
		struct pollfd p = {.fd = pipefd[0], .events = POLLIN};
		uint64_t now = ism_now_ms();
		ssize_t r;

		if (now >= until || poll(&p, 1, (int)(until - now)) <= 0)
			break;
		r = read(pipefd[0], out + len, sizeof(out) - 1 - len);
		if (r <= 0)
			break;
		len += (size_t)r;
		if (len == sizeof(out) - 1)
			len = 0; /* its last lines are the ones that say */
	}
	close(pipefd[0]);
	out[len] = '\0';
	/* Its output ended: its exit follows (within the same bound). */
	while ((got = waitpid(pid, &status, WNOHANG)) == 0) {
		struct timespec ms10 = {0, 10 * 1000 * 1000};

		if (ism_now_ms() < until) {
			nanosleep(&ms10, NULL);
			continue;
		}
		kill(pid, SIGKILL);
		waitpid(pid, &status, 0);
		ism_err("upgrade refused: %s -c took longer than %d s", exe, CHECK_MAX_MS / 1000);
		return -1;
	}
	if (got < 0) {
		ism_err("upgrade refused: waiting for %s -c: %s", exe, strerror(errno));
		return -1;
	}
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
		return 0;
	ism_err("upgrade refused: %s -c -f %s failed; isthmus goes on as it runs:", exe, conf);
	ism_log_lines(ISM_LOG_ERR, out);
	return -1;
}

/* "name=s" into buf: 0, or -1 when it does not fit. */
static int put_env(char *buf, size_t cap, const char *name, const char *s)
{
	int w = snprintf(buf, cap, "%s=%s", name, s);

	return w < 0 || (size_t)w >= cap ? -1 : 0;
}

/* The fds' close-on-exec flag set (on) or cleared. */
static void set_cloexec(const int *fds, int n, bool on)
{
	for (int i = 0; i < n; i++) {
		int flags = fds[i] >= 0 ? fcntl(fds[i], F_GETFD) : -1;

		if (flags >= 0)
			fcntl(fds[i], F_SETFD, on ? flags | FD_CLOEXEC : flags & ~FD_CLOEXEC);
	}
}

void ism_upgrade_exec(struct ism_master *m)
{
	struct ism_upgrade *u = &m->up;
	const struct ism_table *t = ism_shm_current(&m->shm);
	char listen[4096] = "", heirs[4096] = "", drain[32];
	char e_listen[4200], e_heirs[4200], e_drain[64];
	int fds[ISM_WORKER_SLOTS], n_fds = 0;
	size_t n_env = 0, k = 0;
	char **env;

	if (m->stopping || ism_reload_busy(m) || u->state != ISM_UPGRADE_NONE || t == NULL) {
		ism_warn("SIGUSR2: no upgrade now (%s)",
			 m->stopping			? "stopping"
			 : ism_reload_busy(m)		? "a reload is running"
			 : u->state != ISM_UPGRADE_NONE ? "the last upgrade is not over"
							: "nothing published");
		return;
	}
	if (u->exe[0] == '\0' || u->argv == NULL || access(u->exe, X_OK) < 0) {
		ism_err("upgrade refused: the binary %s cannot be executed: %s",
			u->exe[0] ? u->exe : "(unknown)", strerror(errno));
		return;
	}
	ism_notice("SIGUSR2: upgrading to %s: checking %s with it", u->exe, m->conf_path);
	if (check_with(u->exe, m->conf_path) < 0)
		return;
	for (int i = 0, len = 0; i < m->n_listen; i++)
		if (m->listen_fds[i] >= 0)
			len += snprintf(listen + len, sizeof(listen) - (size_t)len, "%s%d",
					len ? "," : "", m->listen_fds[i]);
	for (int i = 0, len = 0; i < m->n_slots; i++) {
		const struct ism_wslot *ws = &m->workers[i];

		if (ws->pid == 0 || ws->fd < 0)
			continue;
		len += snprintf(heirs + len, sizeof(heirs) - (size_t)len, "%s%d:%d", len ? "," : "",
				(int)ws->pid, ws->fd);
		fds[n_fds++] = ws->fd;
	}
	snprintf(drain, sizeof(drain), "%u", t->timeouts.drain_ms);
	while (environ[n_env] != NULL)
		n_env++;
	env = calloc(n_env + 4, sizeof(*env));
	if (env == NULL || put_env(e_listen, sizeof(e_listen), ENV_LISTEN, listen) < 0 ||
	    put_env(e_heirs, sizeof(e_heirs), ENV_HEIRS, heirs) < 0 ||
	    put_env(e_drain, sizeof(e_drain), ENV_DRAIN, drain) < 0) {
		ism_err("upgrade refused: out of memory");
		free(env);
		return;
	}
	for (size_t i = 0; i < n_env; i++)
		if (strncmp(environ[i], "ISTHMUS_UPGRADE_", 16) != 0)
			env[k++] = environ[i];
	env[k++] = e_listen;
	env[k++] = e_heirs;
	env[k++] = e_drain;
	env[k] = NULL;
	set_cloexec(m->listen_fds, m->n_listen, false);
	set_cloexec(fds, n_fds, false);
	ism_master_notify_reloading();
	ism_notice("upgrade: executing %s (pid %d stays; %d listening sockets and %d workers "
		   "handed over)",
		   u->exe, (int)getpid(), m->n_listen, n_fds);
	fflush(NULL);
	execve(u->exe, u->argv, env);
	ism_err("upgrade refused: execve %s: %s; isthmus goes on as it runs", u->exe,
		strerror(errno));
	set_cloexec(m->listen_fds, m->n_listen, true);
	set_cloexec(fds, n_fds, true);
	free(env);
	ism_master_notify_ready(m);
}
