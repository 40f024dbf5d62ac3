/* SPDX-License-Identifier: Apache-2.0 */
/* The binary upgrade (master/upgrade.h): what the old master hands over in
 * the environment of the binary it executes, and what the new one does with
 * it. */
#include "master/upgrade.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "lib/log.h"
#include "master/commands.h"
#include "master/ctl.h"
#include "master/jwks.h"
#include "master/master-t.h"
#include "master/reload.h"
#include "master/reply.h"
#include "master/resolve.h"
#include "master/runfile.h"
#include "shm/shm.h"

#define ENV_LISTEN "ISTHMUS_UPGRADE_LISTEN" /* "fd,fd,..." */
/* those of them that are the control socket and the admin listener */
#define ENV_CTL	  "ISTHMUS_UPGRADE_CTL"	  /* "fd,fd" */
#define ENV_HEIRS "ISTHMUS_UPGRADE_HEIRS" /* "pid:fd,pid:fd,..." */
#define ENV_DRAIN "ISTHMUS_UPGRADE_DRAIN" /* the old workers' drain time, ms */
/* a memfd holding the session-ticket keys and when they were rotated */
#define ENV_TICKETS "ISTHMUS_UPGRADE_TICKETS"
/* a memfd holding the state (state_memfd) */
#define ENV_STATE "ISTHMUS_UPGRADE_STATE"
#define STATE_MAX ((size_t)64 << 20)
/* The first round of health checks is not waited for longer: the old
 * workers serve meanwhile. */
#define SETTLE_MAX_MS 10000
#define KILL_GRACE_MS 5000
#define SERVE_POLL_MS 20
/* The control and admin clients being answered at an upgrade's request are
 * waited for no longer (what connects meanwhile waits for the new master). */
#define QUIESCE_MS   1000
#define CHECK_MAX_MS 60000

extern char **environ;

/* Whether fd (handed over) is open; it is marked close-on-exec again. */
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
	u->taken = calloc(n, sizeof(*u->taken));
	u->is_ctl = calloc(n, sizeof(*u->is_ctl));
	if (u->listen == NULL || u->taken == NULL || u->is_ctl == NULL)
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

/* Marks the sockets handed over that ctl ("fd,fd") names. */
static void take_ctl(struct ism_upgrade *u, const char *s)
{
	for (char *end; s != NULL && *s;) {
		long fd = strtol(s, &end, 10);

		if (end == s)
			break;
		for (int i = 0; i < u->n_listen; i++)
			u->is_ctl[i] |= u->listen[i] == fd;
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

/* The path the binary was started by, as execvp finds argv[0]: absolute,
 * its links kept (a version directory switched by a link is followed at the
 * upgrade), else the file /proc/self/exe names. */
static void exe_path(struct ism_upgrade *u, const char *arg0)
{
	char cwd[PATH_MAX];
	const char *path = getenv("PATH");
	ssize_t n;
	int w = -1;

	if (arg0 != NULL && arg0[0] == '/')
		w = snprintf(u->exe, sizeof(u->exe), "%s", arg0);
	else if (arg0 != NULL && strchr(arg0, '/') != NULL && getcwd(cwd, sizeof(cwd)) != NULL)
		w = snprintf(u->exe, sizeof(u->exe), "%s/%s", cwd, arg0);
	for (const char *p = path; arg0 != NULL && arg0[0] != '\0' && strchr(arg0, '/') == NULL &&
				   p != NULL && *p != '\0' && w < 0;) {
		size_t len = strcspn(p, ":");

		w = snprintf(u->exe, sizeof(u->exe), "%.*s/%s", (int)len, p, arg0);
		if (w >= (int)sizeof(u->exe) || access(u->exe, X_OK) < 0)
			w = -1;
		p += len + (p[len] == ':');
	}
	if (w > 0 && w < (int)sizeof(u->exe))
		return;
	n = readlink("/proc/self/exe", u->exe, sizeof(u->exe) - 1);
	u->exe[n > 0 ? n : 0] = '\0';
}

/* The memfd handed over as s, or -1. */
static int take_memfd(const char *s)
{
	long fd = s != NULL ? strtol(s, NULL, 10) : -1;

	return fd > 2 && fd < INT_MAX && own_fd((int)fd) ? (int)fd : -1;
}

/* A memfd holding the len bytes at p, or -1. */
static int handover_memfd(const char *name, const void *p, size_t len)
{
	int fd = memfd_create(name, MFD_CLOEXEC);

	if (fd >= 0 && write(fd, p, len) != (ssize_t)len) {
		close(fd);
		fd = -1;
	}
	return fd;
}

bool ism_upgrade_tickets(const struct ism_upgrade *u, struct ism_shm *shm)
{
	struct ism_ticket_key keys[ISM_TICKET_KEYS];
	uint64_t rotated_ms = 0;
	bool ok = u->tickets_fd >= 0 &&
		  pread(u->tickets_fd, keys, sizeof(keys), 0) == (ssize_t)sizeof(keys) &&
		  pread(u->tickets_fd, &rotated_ms, sizeof(rotated_ms), sizeof(keys)) ==
		      (ssize_t)sizeof(rotated_ms);

	if (ok)
		ism_shm_tickets_set(shm, keys, rotated_ms ? rotated_ms : 1);
	explicit_bzero(keys, sizeof(keys));
	return ok;
}

/* The ticket keys and when they were rotated, in a memfd (never in the
 * environment, which /proc shows), or -1. */
static int tickets_memfd(const struct ism_ticket_keys *tk)
{
	unsigned char buf[sizeof(tk->keys) + sizeof(tk->rotated_ms)];
	int fd;

	memcpy(buf, tk->keys, sizeof(tk->keys));
	memcpy(buf + sizeof(tk->keys), &tk->rotated_ms, sizeof(tk->rotated_ms));
	fd = handover_memfd("isthmus-tickets", buf, sizeof(buf));
	explicit_bzero(buf, sizeof(buf));
	return fd;
}

/* The state an upgrade hands over, text records of one line each:
 *
 *   endpoint ADMIN WEIGHT KEY		what isthmusctl set of an endpoint
 *   dns STATE TTL RESOLVED_MS NAME ADDR...	a DNS ServiceEntry name's answer
 *   dnspick NAME ADDR			its DNS_ROUND_ROBIN endpoint's address
 *   jwks ISSUER_LEN URI_LEN TEXT_LEN	a key set, its ISSUER URI TEXT bytes
 *					following the line (URI_LEN -1: by
 *					discovery), then a newline
 *   pidfile PATH				the pid file the old master wrote
 */

/* m's state in a memfd; -1 when there is none (or no memfd could be made:
 * logged). */
static int state_memfd(const struct ism_master *m)
{
	const struct ism_shm_hdr *h = m->shm.hdr;
	struct ism_dns_view dv;
	const char *iss, *uri, *text;
	struct ism_reply r;
	int fd = -1;

	ism_reply_init(&r, STATE_MAX);
	for (int i = 0; i < ISM_MAX_ENDPOINTS; i++) {
		uint32_t admin = atomic_load(&h->eps[i].admin), w = atomic_load(&h->eps[i].weight);

		if (ism_shm_ep_listed(&m->shm, (uint32_t)i) &&
		    (admin != ISM_EP_ADMIN_READY || w != 0))
			ism_say(&r, "endpoint %u %u %s\n", admin, w, m->shm.pub->ep_keys[i]);
	}
	for (size_t i = 0; m->dns != NULL && ism_resolver_view(m->dns, i, ism_now_ms(), &dv); i++) {
		if (dv.n_addrs == 0)
			continue;
		ism_say(&r, "dns %d %u %llu %s", (int)dv.state, dv.ttl_s,
			(unsigned long long)dv.resolved_ms, dv.name);
		for (size_t k = 0; k < dv.n_addrs; k++)
			ism_say(&r, " %s", dv.addrs[k].text);
		ism_say(&r, "\n");
		/* a record of its own, which an older binary passes over */
		if (dv.pick != NULL)
			ism_say(&r, "dnspick %s %s\n", dv.name, dv.pick->text);
	}
	for (size_t i = 0; m->jwks != NULL && ism_jwks_cache_entry(m->jwks, i, &iss, &uri, &text);
	     i++)
		if (text != NULL)
			ism_say(&r, "jwks %zu %ld %zu\n%s%s%s\n", strlen(iss),
				uri != NULL ? (long)strlen(uri) : -1L, strlen(text), iss,
				uri != NULL ? uri : "", text);
	if (m->pid_file != NULL && strchr(m->pid_file, '\n') == NULL)
		ism_say(&r, "pidfile %s\n", m->pid_file);
	if (r.len > 0 && !r.incomplete)
		fd = handover_memfd("isthmus-state", r.p, r.len);
	if (r.len > 0 && fd < 0)
		ism_warn(
		    "upgrade: the endpoints' states, the DNS answers and the key sets cannot be "
		    "handed over: the new master starts from the file and asks again");
	ism_reply_free(&r);
	return fd;
}

/* One record of the handed-over state: its line (NUL-terminated, the kind's
 * word first), and what follows it (a jwks record's bytes). */
struct record {
	char *line;
	const char *data;
	long lens[3]; /* a jwks record's: its issuer's, URI's (-1: none), text's */
	size_t data_len;
};

/* Calls each(ctx, rec) for every record of u's state. */
static void each_record(const struct ism_upgrade *u, void (*each)(void *, struct record *),
			void *ctx)
{
	struct stat st;
	char *text = NULL, *p, *end;

	if (u->state_fd < 0 || fstat(u->state_fd, &st) < 0 || st.st_size <= 0 ||
	    (size_t)st.st_size > STATE_MAX || (text = malloc((size_t)st.st_size + 1)) == NULL ||
	    pread(u->state_fd, text, (size_t)st.st_size, 0) != st.st_size) {
		free(text);
		return;
	}
	text[st.st_size] = '\0';
	end = text + st.st_size;
	for (p = text; p < end;) {
		struct record rec = {.line = p};
		char *nl = memchr(p, '\n', (size_t)(end - p));

		if (nl == NULL)
			break;
		*nl = '\0';
		p = nl + 1;
		if (strncmp(rec.line, "jwks ", 5) == 0) {
			if (sscanf(rec.line, "jwks %ld %ld %ld", &rec.lens[0], &rec.lens[1],
				   &rec.lens[2]) != 3 ||
			    rec.lens[0] < 0 || rec.lens[1] < -1 || rec.lens[2] < 0)
				break;
			rec.data_len = (size_t)(rec.lens[0] + (rec.lens[1] > 0 ? rec.lens[1] : 0) +
						rec.lens[2]);
			if (rec.data_len >= (size_t)(end - p))
				break;
			rec.data = p;
			p += rec.data_len + 1;
		}
		each(ctx, &rec);
	}
	free(text);
}

struct endpoints_kept {
	struct ism_shm *shm;
	int kept, gone;
};

static void endpoint_record(void *ctx, struct record *rec)
{
	struct endpoints_kept *k = ctx;
	unsigned admin, w;
	uint32_t id;
	int key = 0;

	if (sscanf(rec->line, "endpoint %u %u %n", &admin, &w, &key) != 2 || key == 0 ||
	    admin > ISM_EP_ADMIN_MAINT ||
	    (w != 0 && (!(w & ISM_EP_WEIGHT_SET) || (w & ~ISM_EP_WEIGHT_SET) > ISM_EP_WEIGHT_MAX)))
		return;
	if (!ism_master_ep_find(k->shm, rec->line + key, &id)) {
		k->gone++;
		return;
	}
	atomic_store(&k->shm->hdr->eps[id].admin, admin);
	atomic_store(&k->shm->hdr->eps[id].weight, w);
	k->kept++;
}

void ism_upgrade_endpoints(const struct ism_upgrade *u, struct ism_shm *shm)
{
	struct endpoints_kept k = {.shm = shm};

	each_record(u, endpoint_record, &k);
	if (k.kept > 0)
		atomic_fetch_add(&shm->hdr->health_epoch, 1);
	if (k.kept + k.gone > 0)
		ism_notice("upgrade: the control socket's states and weights of %d endpoints kept "
			   "(%d no longer in the file)",
			   k.kept, k.gone);
}

struct answers_kept {
	struct ism_resolver *dns;
	struct ism_jwks_cache *jwks;
	int names, key_sets;
};

static void answer_record(void *ctx, struct record *rec)
{
	struct answers_kept *k = ctx;
	const char *addrs[ISM_RESOLVER_MAX_ADDRS];
	unsigned long long resolved;
	char *save = NULL, *tok;
	unsigned ttl;
	size_t n = 0;
	int state, at = 0;

	if (rec->data != NULL) {
		long il = rec->lens[0], ul = rec->lens[1], tl = rec->lens[2];
		char *iss = strndup(rec->data, (size_t)il);
		char *uri = ul >= 0 ? strndup(rec->data + il, (size_t)ul) : NULL;
		char *text = strndup(rec->data + rec->data_len - (size_t)tl, (size_t)tl);

		if (iss != NULL && text != NULL && (ul < 0 || uri != NULL) &&
		    ism_jwks_cache_seed(k->jwks, iss, uri, text) == 0)
			k->key_sets++;
		free(iss);
		free(uri);
		free(text);
		return;
	}
	if (strncmp(rec->line, "dnspick ", 8) == 0) {
		char *name = strtok_r(rec->line + 8, " ", &save),
		     *addr = strtok_r(NULL, " ", &save);

		if (name != NULL && addr != NULL)
			ism_resolver_seed_pick(k->dns, name, addr);
		return;
	}
	if (sscanf(rec->line, "dns %d %u %llu %n", &state, &ttl, &resolved, &at) != 3 || at == 0)
		return;
	tok = strtok_r(rec->line + at, " ", &save);
	if (tok == NULL)
		return;
	for (char *a; n < ISM_RESOLVER_MAX_ADDRS && (a = strtok_r(NULL, " ", &save)) != NULL;)
		addrs[n++] = a;
	if (state >= 0 && state < ISM_DNS_N_STATES &&
	    ism_resolver_seed(k->dns, tok, (enum ism_dns_state)state, addrs, n, resolved, ttl) == 0)
		k->names++;
}

void ism_upgrade_answers(const struct ism_upgrade *u, struct ism_resolver *dns,
			 struct ism_jwks_cache *jwks)
{
	struct answers_kept k = {.dns = dns, .jwks = jwks};

	each_record(u, answer_record, &k);
	if (k.names + k.key_sets > 0)
		ism_notice("upgrade: %d DNS answers and %d JWT key sets kept (asked again as at "
			   "a reload)",
			   k.names, k.key_sets);
}

void ism_upgrade_init(struct ism_upgrade *u, char *const *argv)
{
	const char *listen = getenv(ENV_LISTEN), *heirs = getenv(ENV_HEIRS);
	const char *drain = getenv(ENV_DRAIN);

	u->argv = argv;
	exe_path(u, argv != NULL ? argv[0] : NULL);
	if (listen != NULL) {
		take_listen(u, listen);
		if (u->is_ctl != NULL)
			take_ctl(u, getenv(ENV_CTL));
	}
	if (heirs != NULL)
		take_heirs(u, heirs);
	u->tickets_fd = take_memfd(getenv(ENV_TICKETS));
	u->state_fd = take_memfd(getenv(ENV_STATE));
	u->drain_ms = drain != NULL ? (uint32_t)strtoul(drain, NULL, 10) : 0;
	unsetenv(ENV_LISTEN);
	unsetenv(ENV_CTL);
	unsetenv(ENV_HEIRS);
	unsetenv(ENV_DRAIN);
	unsetenv(ENV_TICKETS);
	unsetenv(ENV_STATE);
	if (u->n_listen > 0 || u->n_heirs > 0) {
		u->state = ISM_UPGRADE_SETTLING;
		u->settle_until = UINT64_MAX; /* ism_upgrade_settle: once the checks run */
		ism_notice("upgrade: %s started with %d listening sockets and %d old workers "
			   "handed over",
			   u->exe, u->n_listen, u->n_heirs);
	}
}

/* Whether the address a (of length alen, as getsockname gave it) is b: a
 * unix socket's by its path (getsockname's length counts the path only). */
static bool same_addr(const struct sockaddr_storage *a, socklen_t alen, const struct sockaddr *b,
		      socklen_t blen)
{
	if (a->ss_family == AF_UNIX && b->sa_family == AF_UNIX)
		return strncmp(((const struct sockaddr_un *)a)->sun_path,
			       ((const struct sockaddr_un *)b)->sun_path,
			       sizeof(((struct sockaddr_un *)0)->sun_path)) == 0;
	return alen == blen && memcmp(a, b, alen) == 0;
}

int ism_upgrade_adopt_addr(struct ism_upgrade *u, const struct sockaddr *sa, socklen_t len)
{
	for (int i = 0; i < u->n_listen; i++) {
		struct sockaddr_storage ss;
		socklen_t sslen = sizeof(ss);
		int fd = u->listen[i];

		memset(&ss, 0, sizeof(ss));
		if (fd < 0 || getsockname(fd, (struct sockaddr *)&ss, &sslen) < 0 ||
		    !same_addr(&ss, sslen, sa, len))
			continue;
		/* A copy: the one handed over stays for another try, should this
		 * start fail (ism_upgrade_wait). */
		u->taken[i] = true;
		return fcntl(fd, F_DUPFD_CLOEXEC, 3);
	}
	return -1;
}

int ism_upgrade_adopt(struct ism_upgrade *u, const struct ism_listener *l)
{
	int fd = ism_upgrade_adopt_addr(u, (const struct sockaddr *)&l->addr, l->addrlen);

	if (fd >= 0)
		ism_notice("listening on port %u (%s): the socket handed over", l->port, l->name.p);
	return fd;
}

struct pid_file_left {
	const char *now; /* the pid file the file names (NULL: none) */
	bool stop;	 /* the master stops: removed, not replaced */
};

static void pid_file_record(void *ctx, struct record *rec)
{
	const struct pid_file_left *k = ctx;
	const char *path;

	if (strncmp(rec->line, "pidfile ", 8) != 0)
		return;
	path = rec->line + 8;
	if (k->now != NULL && strcmp(path, k->now) == 0)
		return;
	ism_runfile_pid_remove(path);
	if (!k->stop)
		ism_notice("upgrade: the old pid file %s removed: the file names %s", path,
			   k->now != NULL ? k->now : "none");
}

/* Whether fd is a unix socket bound at a path, there still a socket file
 * (*st); its address into *sa. */
static bool unix_socket_at(int fd, struct sockaddr_un *sa, struct stat *st)
{
	socklen_t len = sizeof(*sa);

	memset(sa, 0, sizeof(*sa));
	return getsockname(fd, (struct sockaddr *)sa, &len) == 0 && sa->sun_family == AF_UNIX &&
	       sa->sun_path[0] != '\0' && sa->sun_path[sizeof(sa->sun_path) - 1] == '\0' &&
	       stat(sa->sun_path, st) == 0 && S_ISSOCK(st->st_mode);
}

/* The control socket and the pid file handed over that the master no longer
 * uses: those the file does not name (control_socket, pid_file: what it
 * names, NULL for none), or at a stop (stop) all of them. */
static void leftovers(const struct ism_upgrade *u, const char *control_socket, const char *pid_file,
		      bool stop)
{
	struct pid_file_left k = {.now = pid_file, .stop = stop};
	struct stat now, st;
	bool have_now = control_socket != NULL && stat(control_socket, &now) == 0;

	for (int i = 0; i < u->n_listen; i++) {
		struct sockaddr_un sa;

		if ((u->taken[i] && !stop) || !unix_socket_at(u->listen[i], &sa, &st) ||
		    (have_now && st.st_dev == now.st_dev && st.st_ino == now.st_ino))
			continue;
		unlink(sa.sun_path);
		if (!stop)
			ism_notice("upgrade: the old control socket %s removed: the file names %s",
				   sa.sun_path, control_socket != NULL ? control_socket : "none");
	}
	each_record(u, pid_file_record, &k);
}

void ism_upgrade_leftovers(const struct ism_upgrade *u, const char *control_socket,
			   const char *pid_file)
{
	leftovers(u, control_socket, pid_file, false);
}

void ism_upgrade_adopted(struct ism_upgrade *u)
{
	for (int i = 0; i < u->n_listen; i++)
		close(u->listen[i]);
	free(u->listen);
	free(u->taken);
	free(u->is_ctl);
	u->listen = NULL;
	u->taken = NULL;
	u->is_ctl = NULL;
	u->n_listen = 0;
	if (u->tickets_fd >= 0)
		close(u->tickets_fd);
	if (u->state_fd >= 0)
		close(u->state_fd);
	u->tickets_fd = u->state_fd = -1;
}

bool ism_upgrade_settling(const struct ism_upgrade *u)
{
	return u->state == ISM_UPGRADE_SETTLING;
}

void ism_upgrade_settle(struct ism_upgrade *u, uint64_t now)
{
	if (ism_upgrade_settling(u))
		u->settle_until = now + SETTLE_MAX_MS;
}

bool ism_upgrade_may_start(const struct ism_upgrade *u, bool health_settled, uint64_t now)
{
	/* No old worker left (they died meanwhile): nothing serves, no wait. */
	return !ism_upgrade_settling(u) || health_settled || now >= u->settle_until ||
	       u->n_heirs == 0;
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
		ism_upgrade_signal_heirs(u, SIGKILL);
		u->drain_deadline = now + KILL_GRACE_MS;
		return;
	}
	ISM_BUG_ON(1);
}

void ism_upgrade_signal_heirs(const struct ism_upgrade *u, int sig)
{
	for (int i = 0; i < u->n_heirs; i++)
		kill(u->heirs[i].pid, sig);
}

bool ism_upgrade_reaped(struct ism_upgrade *u, pid_t pid, int status)
{
	for (int i = 0; i < u->n_heirs; i++) {
		if (u->heirs[i].pid != pid)
			continue;
		if (WIFSIGNALED(status))
			ism_warn("old worker (pid %d) killed by signal %d during the upgrade",
				 (int)pid, WTERMSIG(status));
		else if (WEXITSTATUS(status) != 0)
			ism_warn("old worker (pid %d) exited with status %d during the upgrade",
				 (int)pid, WEXITSTATUS(status));
		else
			ism_info("old worker (pid %d) exited after the upgrade", (int)pid);
		if (u->heirs[i].fd >= 0)
			close(u->heirs[i].fd);
		u->heirs[i] = u->heirs[--u->n_heirs];
		return true;
	}
	return false;
}

/* Milliseconds until the deadline at, 1000 at most. */
static int deadline_ms(uint64_t at, uint64_t now)
{
	return at <= now ? 0 : at - now > 1000 ? 1000 : (int)(at - now);
}

int ism_upgrade_timeout_ms(const struct ism_upgrade *u, bool started, uint64_t now)
{
	if (u->exec_at != 0)
		return u->exec_at <= now ? 0 : (int)(u->exec_at - now);
	switch ((enum ism_upgrade_state)u->state) {
	case ISM_UPGRADE_NONE:
		return -1;
	case ISM_UPGRADE_SETTLING:
		/* Started: polled until a new worker serves. */
		return started ? SERVE_POLL_MS : deadline_ms(u->settle_until, now);
	case ISM_UPGRADE_DRAINING:
		return deadline_ms(u->drain_deadline, now);
	}
	ISM_BUG_ON(1);
	return -1;
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

/* What an upgrade hands over: listening sockets, old workers, their drain
 * time, the memfds of the ticket keys and of the endpoints' states (-1:
 * none). */
struct handover {
	const int *listen;
	const bool *is_ctl; /* which of listen are the control socket and admin listener */
	int n_listen;
	struct ism_heir heirs[ISM_WORKER_SLOTS];
	int n_heirs;
	uint32_t drain_ms;
	int tickets_fd;
	int state_fd;
};

/* Checks conf with the binary at u->exe, then executes it with h in its
 * environment. Returns only when it did not happen (logged). */
static void handover_exec(struct ism_upgrade *u, const char *conf, const struct handover *h)
{
	char listen[4096] = "", heirs[4096] = "", drain[32], tickets[16] = "", state[16] = "";
	char ctl[32] = "", e_ctl[64];
	char e_listen[4200], e_heirs[4200], e_drain[64], e_tickets[64], e_state[64];
	int fds[ISM_WORKER_SLOTS + 2], n_fds = 0;
	size_t n_env = 0, k = 0;
	char **env;

	if (u->exe[0] == '\0' || u->argv == NULL || access(u->exe, X_OK) < 0) {
		ism_err("upgrade refused: the binary %s cannot be executed: %s",
			u->exe[0] ? u->exe : "(unknown)", strerror(errno));
		return;
	}
	ism_notice("upgrading to %s: checking %s with it", u->exe, conf);
	if (check_with(u->exe, conf) < 0)
		return;
	for (int i = 0, len = 0, clen = 0; i < h->n_listen; i++) {
		if (h->listen[i] < 0)
			continue;
		len += snprintf(listen + len, sizeof(listen) - (size_t)len, "%s%d", len ? "," : "",
				h->listen[i]);
		if (h->is_ctl != NULL && h->is_ctl[i])
			clen += snprintf(ctl + clen, sizeof(ctl) - (size_t)clen, "%s%d",
					 clen ? "," : "", h->listen[i]);
	}
	for (int i = 0, len = 0; i < h->n_heirs; i++) {
		len += snprintf(heirs + len, sizeof(heirs) - (size_t)len, "%s%d:%d", len ? "," : "",
				(int)h->heirs[i].pid, h->heirs[i].fd);
		fds[n_fds++] = h->heirs[i].fd;
	}
	snprintf(drain, sizeof(drain), "%u", h->drain_ms);
	if (h->tickets_fd >= 0) {
		snprintf(tickets, sizeof(tickets), "%d", h->tickets_fd);
		fds[n_fds++] = h->tickets_fd;
	}
	if (h->state_fd >= 0) {
		snprintf(state, sizeof(state), "%d", h->state_fd);
		fds[n_fds++] = h->state_fd;
	}
	while (environ[n_env] != NULL)
		n_env++;
	env = calloc(n_env + 7, sizeof(*env));
	if (env == NULL || put_env(e_listen, sizeof(e_listen), ENV_LISTEN, listen) < 0 ||
	    put_env(e_ctl, sizeof(e_ctl), ENV_CTL, ctl) < 0 ||
	    put_env(e_heirs, sizeof(e_heirs), ENV_HEIRS, heirs) < 0 ||
	    put_env(e_drain, sizeof(e_drain), ENV_DRAIN, drain) < 0 ||
	    put_env(e_tickets, sizeof(e_tickets), ENV_TICKETS, tickets) < 0 ||
	    put_env(e_state, sizeof(e_state), ENV_STATE, state) < 0) {
		ism_err("upgrade refused: out of memory");
		free(env);
		return;
	}
	for (size_t i = 0; i < n_env; i++)
		if (strncmp(environ[i], "ISTHMUS_UPGRADE_", 16) != 0)
			env[k++] = environ[i];
	env[k++] = e_listen;
	if (ctl[0] != '\0')
		env[k++] = e_ctl;
	env[k++] = e_heirs;
	env[k++] = e_drain;
	if (tickets[0] != '\0')
		env[k++] = e_tickets;
	if (state[0] != '\0')
		env[k++] = e_state;
	env[k] = NULL;
	set_cloexec(h->listen, h->n_listen, false);
	set_cloexec(fds, n_fds, false);
	ism_master_notify_reloading();
	ism_notice("upgrade: executing %s (pid %d stays; %d listening sockets and %d workers "
		   "handed over)",
		   u->exe, (int)getpid(), h->n_listen, h->n_heirs);
	fflush(NULL);
	execve(u->exe, u->argv, env);
	ism_err("upgrade refused: execve %s: %s", u->exe, strerror(errno));
	set_cloexec(h->listen, h->n_listen, true);
	set_cloexec(fds, n_fds, true);
	free(env);
}

void ism_upgrade_request(struct ism_master *m, uint64_t now)
{
	if (m->up.exec_at == 0)
		m->up.exec_at = now + QUIESCE_MS;
	if (ism_reload_busy(m) && !m->stopping)
		ism_notice("SIGUSR2: the upgrade waits for the reload under way");
	ism_upgrade_due(m, now);
}

void ism_upgrade_due(struct ism_master *m, uint64_t now)
{
	if (m->up.exec_at == 0)
		return;
	/* A reload under way is let finish (a package upgrade's reload and
	 * SIGUSR2 meet): the control socket serves meanwhile, and the clients'
	 * bound counts from its end. */
	if (ism_reload_busy(m) && !m->stopping) {
		ism_ctl_pause(m->ctl, false);
		m->up.exec_at = now + QUIESCE_MS;
		return;
	}
	if (ism_ctl_pause(m->ctl, true) && now < m->up.exec_at)
		return;
	m->up.exec_at = 0;
	ism_upgrade_exec(m);
	ism_ctl_pause(m->ctl, false);
}

void ism_upgrade_exec(struct ism_master *m)
{
	struct ism_upgrade *u = &m->up;
	const struct ism_table *t = ism_shm_current(&m->shm);
	/* The control socket and the admin listener too: what is sent to them
	 * while the new binary loads its file waits in their backlogs. */
	int *listen = calloc((size_t)m->n_listen + ISM_CTL_LISTENERS, sizeof(*listen));
	bool *is_ctl = calloc((size_t)m->n_listen + ISM_CTL_LISTENERS, sizeof(*is_ctl));
	struct handover h = {.listen = listen, .is_ctl = is_ctl};

	if (listen == NULL || is_ctl == NULL) {
		ism_err("upgrade refused: out of memory");
		free(listen);
		free(is_ctl);
		return;
	}
	memcpy(listen, m->listen_fds, (size_t)m->n_listen * sizeof(*listen));
	h.n_listen = m->n_listen + ism_ctl_listeners(m->ctl, listen + m->n_listen);
	for (int i = m->n_listen; i < h.n_listen; i++)
		is_ctl[i] = true;
	if (m->stopping || ism_reload_busy(m) || u->state != ISM_UPGRADE_NONE || t == NULL) {
		ism_warn("SIGUSR2: no upgrade now (%s)",
			 m->stopping			? "stopping"
			 : ism_reload_busy(m)		? "a reload is running"
			 : u->state != ISM_UPGRADE_NONE ? "the last upgrade is not over"
							: "nothing published");
		free(listen);
		free(is_ctl);
		return;
	}
	for (int i = 0; i < m->n_slots; i++)
		if (m->workers[i].pid != 0 && m->workers[i].fd >= 0)
			h.heirs[h.n_heirs++] =
			    (struct ism_heir){m->workers[i].pid, m->workers[i].fd};
	h.drain_ms = t->timeouts.drain_ms;
	/* So that sessions resume across the upgrade, and what the operator
	 * drained stays drained. */
	h.tickets_fd = tickets_memfd(&m->shm.tickets);
	h.state_fd = state_memfd(m);
	handover_exec(u, m->conf_path, &h);
	if (h.tickets_fd >= 0)
		close(h.tickets_fd);
	if (h.state_fd >= 0)
		close(h.state_fd);
	free(listen);
	free(is_ctl);
	ism_master_notify_ready(m);
}

/* ---------- the new master that could not start ---------- */

/* The old workers that exited, reaped (the wait has no other children). */
static void reap_heirs(struct ism_upgrade *u)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0)
		ism_upgrade_reaped(u, pid, status);
}

/* The clients of the wait: accepted, each waits for its request without
 * holding the loop (a probe is answered at once behind idle connections). */
#define WAIT_CLIENTS 64

struct wait_client {
	int fd; /* -1: free */
	bool admin;
	uint64_t deadline; /* to send the request: then answered without it */
};

/* A client of the control socket (admin: of the admin listener) while the
 * upgrade waits, whose request came (or its deadline, or its slot, went):
 * an answer that says so, at once (it waited in the backlog until the next
 * try, or the stop). */
static void answer_waiting(int fd, bool admin)
{
	static const char ctl[] = "error: the upgrade failed and isthmus waits: the old workers "
				  "serve on; fix the cause and send SIGUSR2 again, or SIGTERM to "
				  "stop (see the log)\n";
	char req[256], out[512];
	ssize_t n = recv(fd, req, sizeof(req) - 1, MSG_DONTWAIT);
	bool probe;
	const char *body;
	int len;

	req[n > 0 ? n : 0] = '\0';
	probe = strncmp(req, "GET /healthz/", 13) == 0 || strncmp(req, "HEAD /healthz/", 14) == 0;
	/* The old workers serve: ready and live; nothing else is answered. */
	body = probe ? "ready: the old workers serve (the upgrade failed)\n"
		     : "the upgrade failed: isthmus waits (see the log)\n";
	len = admin ? snprintf(out, sizeof(out),
			       "HTTP/1.1 %s\r\ncontent-type: text/plain\r\ncontent-length: "
			       "%zu\r\nconnection: close\r\n\r\n%s",
			       probe ? "200 OK" : "503 Service Unavailable", strlen(body), body)
		    : snprintf(out, sizeof(out), "%s", ctl);
	if (send(fd, out, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT) < 0)
		ism_debug("upgrade wait: answer: %s", strerror(errno));
	shutdown(fd, SHUT_WR);
	close(fd);
}

/* The clients whose request came (pfd[i].revents, pfd given) or whose
 * deadline is past now answered: all of them with UINT64_MAX. */
static void wait_answer(struct wait_client *wc, const struct pollfd *pfd, uint64_t now)
{
	for (int i = 0; i < WAIT_CLIENTS; i++)
		if (wc[i].fd >= 0 && ((pfd != NULL && pfd[i].revents) || wc[i].deadline <= now)) {
			answer_waiting(wc[i].fd, wc[i].admin);
			wc[i].fd = -1;
		}
}

/* Up to WAIT_CLIENTS new clients of lfd: each in a free slot, else in that
 * of the oldest client, answered now without its request. */
static void wait_accept(int lfd, bool admin, struct wait_client *wc, uint64_t now)
{
	for (int k = 0; k < WAIT_CLIENTS; k++) {
		int fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		struct wait_client *slot = NULL;

		if (fd < 0)
			return;
		for (int i = 0; i < WAIT_CLIENTS && (slot == NULL || slot->fd >= 0); i++)
			if (slot == NULL || wc[i].fd < 0 || wc[i].deadline < slot->deadline)
				slot = &wc[i];
		if (slot->fd >= 0)
			answer_waiting(slot->fd, slot->admin);
		*slot = (struct wait_client){
		    .fd = fd, .admin = admin, .deadline = now + ISM_CTL_REQUEST_MS};
	}
}

/* One turn of the wait (100 ms at most): the clients of the control socket
 * and the admin listener handed over whose request came are answered, new
 * ones accepted, then a pending signal taken: its number, or -1. */
static int wait_turn(const struct ism_upgrade *u, const sigset_t *set, struct wait_client *wc)
{
	struct timespec none = {0, 0}, second = {1, 0};
	struct pollfd pfd[ISM_CTL_LISTENERS + WAIT_CLIENTS];
	bool admin[ISM_CTL_LISTENERS];
	int n = 0, nl;
	uint64_t now;

	for (int i = 0; u->is_ctl != NULL && i < u->n_listen && n < ISM_CTL_LISTENERS; i++)
		if (u->is_ctl[i]) {
			struct sockaddr_storage ss;
			socklen_t len = sizeof(ss);

			admin[n] = getsockname(u->listen[i], (struct sockaddr *)&ss, &len) == 0 &&
				   ss.ss_family != AF_UNIX;
			pfd[n++] = (struct pollfd){.fd = u->listen[i], .events = POLLIN};
		}
	if (n == 0)
		return sigtimedwait(set, NULL, &second);
	nl = n;
	for (int i = 0; i < WAIT_CLIENTS; i++)
		pfd[n++] = (struct pollfd){.fd = wc[i].fd, .events = POLLIN}; /* -1: skipped */
	poll(pfd, (nfds_t)n, 100);
	now = ism_now_ms();
	wait_answer(wc, pfd + nl, now);
	for (int i = 0; i < nl; i++)
		if (pfd[i].revents & POLLIN)
			wait_accept(pfd[i].fd, admin[i], wc, now);
	return sigtimedwait(set, NULL, &none);
}

int ism_upgrade_wait(struct ism_upgrade *u, const char *conf)
{
	struct handover h = {.listen = u->listen,
			     .is_ctl = u->is_ctl,
			     .n_listen = u->n_listen,
			     .tickets_fd = u->tickets_fd,
			     .state_fd = u->state_fd};
	struct wait_client wc[WAIT_CLIENTS];
	sigset_t set;

	for (int i = 0; i < WAIT_CLIENTS; i++)
		wc[i].fd = -1;
	ism_err("upgrade failed: %s did not start on %s; the %d old workers serve on. Fix the "
		"cause and send SIGUSR2 again, or SIGTERM to stop",
		u->exe, conf, u->n_heirs);
	sd_notifyf(0, "READY=1\nSTATUS=upgrade failed: the old workers serve on (see the log)");
	ism_master_signal_set(&set);
	sigprocmask(SIG_BLOCK, &set, NULL);
	for (;;) {
		struct timespec second = {1, 0};
		int sig = wait_turn(u, &set, wc);

		reap_heirs(u);
		if (u->n_heirs == 0) {
			ism_err(
			    "upgrade failed and the old workers are gone: nothing serves; exiting");
			return 1;
		}
		switch (sig) {
		case SIGUSR1: /* logrotate: the old workers reopen the log */
			ism_upgrade_signal_heirs(u, SIGUSR1);
			break;
		case SIGUSR2:
		case SIGHUP:
			h.n_heirs = u->n_heirs;
			memcpy(h.heirs, u->heirs, sizeof(h.heirs[0]) * (size_t)u->n_heirs);
			h.drain_ms = u->drain_ms;
			/* The new master inherits the listeners, not these. */
			wait_answer(wc, NULL, UINT64_MAX);
			handover_exec(u, conf, &h);
			break;
		case SIGTERM:
		case SIGINT:
			/* The old workers drain as at a stop, then the master ends. */
			wait_answer(wc, NULL, UINT64_MAX);
			release_heirs(u, ism_now_ms());
			while (u->n_heirs > 0 && ism_now_ms() < u->drain_deadline) {
				sigtimedwait(&set, NULL, &second);
				reap_heirs(u);
			}
			ism_upgrade_signal_heirs(u, SIGKILL);
			/* As a stop removes its own. */
			leftovers(u, NULL, NULL, true);
			ism_notice("stopped");
			return 0;
		default:
			break;
		}
	}
}
