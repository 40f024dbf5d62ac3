/* SPDX-License-Identifier: Apache-2.0 */
/* The master: configuration generations, listeners, worker supervision, reload,
 * graceful stop. One poll loop over a signalfd, the health checker's epoll
 * descriptor and the control socket. */
#include "master/master.h"

#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "conf/defaults.h"
#include "conf/conf.h"
#include "conf/tlsctx.h"
#include "health/health.h"
#include "health/lbstate.h"
#include "lib/addr.h"
#include "lib/log.h"
#include "lib/strmap.h"
#include "master/buildinfo.h"
#include "master/commands.h"
#include "master/counters.h"
#include "master/ctl.h"
#include "master/fds.h"
#include "master/jwks.h"
#include "master/master-t.h"
#include "master/reload.h"
#include "master/resolve.h"
#include "master/runfile.h"
#include "shm/shm.h"
#include "worker/worker.h"

#define GEN_ARENA_SIZE (16u << 20)
#define RESPAWN_MIN_MS 100
#define RESPAWN_MAX_MS 10000
#define STOP_GRACE_MS  5000
/* How often the master looks whether a new worker set serves while the set
 * it replaces still does. */
#define REPLACED_POLL_MS 20
/* A worker writes its heartbeat at each 100 ms tick of its loop. One that has
 * not for HANG_MS is hung (stopped, spinning, blocked): it is killed and
 * restarted. Before its first heartbeat a worker has HANG_START_MS (its TLS
 * contexts and buffers are set up then). A loop turn of the master's later
 * than MASTER_STALL_MS after the previous one means the master itself was held
 * up: the workers then get a whole HANG_MS before they are judged. */
#define HANG_MS		5000
#define HANG_START_MS	30000
#define MASTER_STALL_MS 2000
/* Publishes for changed DNS answers begin this far apart at least. */
#define DNS_PUBLISH_MS 200
/* A first round of health checks is waited for (the start's workers, a
 * reload's publish) until its checks' timeouts have passed, and this long
 * more for the loop to take their results. */
#define FIRST_ROUND_MARGIN_MS 1000
/* A worker that exits within this long of its start died young: its restart
 * waits, RESPAWN_MIN_MS doubling to RESPAWN_MAX_MS. */
#define YOUNG_DEATH_MS 1000
/* The loop's housekeeping (generations reclaimed, watched files looked at,
 * a failed health-check update tried again) comes about this often; a
 * stopping master's loop turns every STOP_POLL_MS. */
#define HOUSEKEEP_MS 1000
#define STOP_POLL_MS 100
/* A port still held by the workers a reload retires is tried this many
 * times, this far apart (bind_one); listen()'s backlog, which the kernel
 * caps at net.core.somaxconn. */
#define BIND_TRIES     40
#define BIND_RETRY_US  50000
#define LISTEN_BACKLOG 4096

static int *listen_sockets(const struct ism_table *t, const struct ism_table *cur,
			   const int *cur_fds, struct ism_upgrade *up, bool wait, int *err,
			   const struct ism_listener **failed);
static void replace_workers(struct ism_master *m, const struct ism_table *old,
			    const struct ism_table *t, int *fds);
static bool retiring_workers(const struct ism_master *m);
static int resolve_ids(const char *file, const struct ism_conf *conf, const struct ism_table *t,
		       uid_t *uid, gid_t *gid, enum ism_diag_severity sev, struct ism_diags *d);
static int check_log_dest(const char *file, const struct ism_conf *conf, const struct ism_table *t,
			  uid_t uid, gid_t gid, enum ism_diag_severity sev, struct ism_diags *d);
static int check_run_dirs(const char *file, const struct ism_conf *conf, const struct ism_table *t,
			  enum ism_diag_severity sev, struct ism_diags *d);
static int check_addresses(const char *file, const struct ism_conf *conf, const struct ism_table *t,
			   enum ism_diag_severity sev, struct ism_diags *d);

static int ep_id_cb(void *ctx, enum ism_conf_slot kind, const char *key, bool has_hc, uint32_t *id)
{
	struct ism_master *m = ctx;
	const char *ep = strrchr(key, '|');

	switch (kind) {
	case ISM_CONF_SLOT_ENDPOINT:
		return ism_shm_ep_intern(&m->shm, key, has_hc ? ISM_EP_UNHEALTHY : ISM_EP_HEALTHY,
					 id);
	case ISM_CONF_SLOT_OUTLIER:
		return ism_shm_od_intern(&m->shm, key,
					 (uint32_t)strtoul(ep != NULL ? ep + 1 : "", NULL, 10), id);
	}
	return -EINVAL;
}

/* `isthmus -c`'s ids, per kind (enum ism_conf_slot): a key keeps the id it
 * got first, as a master hands them out (ism_shm_ep_intern and
 * ism_shm_od_intern find a key's slot by it): an endpoint of several
 * clusters (a service's, its subsets', its ports') is one id. */
struct check_ids {
	uint32_t next[2];
	struct ism_strmap seen[2]; /* key -> id; the keys are copies in keys[] */
	char **keys;
	size_t n_keys, cap_keys;
};

static int check_id_cb(void *ctx, enum ism_conf_slot kind, const char *key, bool has_hc,
		       uint32_t *id)
{
	struct check_ids *c = ctx;
	uint32_t max = kind == ISM_CONF_SLOT_ENDPOINT ? ISM_MAX_ENDPOINTS : ISM_MAX_OD_SLOTS;
	char *copy;
	int rc;

	(void)has_hc;
	if (ism_strmap_get(&c->seen[kind], key, strlen(key), id))
		return 0;
	if (c->next[kind] >= max)
		return -ENOSPC;
	if (c->n_keys == c->cap_keys) {
		size_t cap = c->cap_keys ? 2 * c->cap_keys : 1024;
		char **keys = realloc(c->keys, cap * sizeof(*keys));

		if (keys == NULL)
			return -ENOMEM;
		c->keys = keys;
		c->cap_keys = cap;
	}
	copy = strdup(key);
	if (copy == NULL)
		return -ENOMEM;
	rc = ism_strmap_add(&c->seen[kind], copy, strlen(copy), c->next[kind], NULL);
	if (rc < 0) {
		free(copy);
		return rc;
	}
	c->keys[c->n_keys++] = copy;
	*id = c->next[kind]++;
	return 0;
}

static void check_ids_free(struct check_ids *c)
{
	for (size_t i = 0; i < c->n_keys; i++)
		free(c->keys[i]);
	free(c->keys);
	ism_strmap_free(&c->seen[ISM_CONF_SLOT_ENDPOINT]);
	ism_strmap_free(&c->seen[ISM_CONF_SLOT_OUTLIER]);
}

/* The open-file limit for t: maxConnectionsPerWorker as the file sets it, or
 * the default derived from the limit (written into t, not yet published), and
 * RLIMIT_NOFILE raised when raise allows. 0, or -EMFILE with the reason in d
 * (at the field's position when the file sets it). */
static int fds_apply(const char *file, const struct ism_conf *conf, struct ism_table *t,
		     enum ism_fds_raise raise, struct ism_diags *d)
{
	struct ism_fds_plan p;
	struct rlimit rl;
	const char *res = "";
	int line = 0, col = 0, ret;
	uint32_t want = ism_conf_max_connections(conf, &line, &col, &res);
	char field[256];

	if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
		return -errno;
	ret = ism_fds_plan(want, t->n_listeners, rl.rlim_cur, rl.rlim_max, raise, &p);
	if (ret == 0 && (p.soft != rl.rlim_cur || p.hard != rl.rlim_max)) {
		struct rlimit to = {.rlim_cur = p.soft, .rlim_max = p.hard};

		ret = setrlimit(RLIMIT_NOFILE, &to) < 0 ? -EMFILE : 0;
	}
	if (ret == 0) {
		t->limits.max_connections = p.max_conn;
		return 0;
	}
	snprintf(field, sizeof(field), "%s%sspec.limits.maxConnectionsPerWorker", res,
		 res[0] ? ": " : "");
	if (want == 0)
		ism_diag_add(
		    d, ISM_DIAG_ERROR, file, 0, 0, field,
		    "the open-file limit (%llu, hard %llu) leaves no room for a connection "
		    "(each takes %d, and a worker %llu besides): raise it (LimitNOFILE=)",
		    (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
		    ISM_FDS_PER_CONN, (unsigned long long)ism_fds_need(0, t->n_listeners));
	else
		ism_diag_add(
		    d, ISM_DIAG_ERROR, file, line, col, field,
		    "%u connections need %llu open files per worker (%d each, %llu "
		    "besides); the open-file limit is %llu (hard %llu)%s: lower the value, "
		    "or raise the limit (LimitNOFILE=)%s",
		    want, (unsigned long long)p.need, ISM_FDS_PER_CONN,
		    (unsigned long long)ism_fds_need(0, t->n_listeners),
		    (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
		    raise == ISM_FDS_RAISE ? " and cannot be raised to it" : "",
		    raise == ISM_FDS_RAISE ? "" : " and restart: running workers keep theirs");
	return -EMFILE;
}

int ism_master_check(const char *conf_path, bool portable)
{
	struct ism_diags *d = calloc(1, sizeof(*d));
	struct ism_conf *conf = NULL;
	const struct ism_table *t = NULL;
	struct ism_arena arena;
	void *block = NULL;
	struct check_ids ids = {0};
	enum ism_diag_severity sev;
	bool bad;
	uid_t uid;
	gid_t gid;
	int status = 1;

	if (d == NULL)
		return 1;
	ism_diags_init(d);
	if (ism_conf_load(conf_path, &conf, d) < 0)
		goto out;
	block = malloc(GEN_ARENA_SIZE);
	if (block == NULL)
		goto out;
	ism_arena_init(&arena, block, GEN_ARENA_SIZE);
	ism_strmap_init(&ids.seen[ISM_CONF_SLOT_ENDPOINT], ism_strmap_seed());
	ism_strmap_init(&ids.seen[ISM_CONF_SLOT_OUTLIER], ism_strmap_seed());
	if (ism_conf_compile(conf, &arena, check_id_cb, &ids, &t, d) < 0)
		goto out;
	/* What a start would refuse of the workers' user and their access log,
	 * on this machine, as nginx -t and haproxy -c refuse it: errors, but for
	 * a file meant for another machine (--portable); the log only as root,
	 * which alone can try it as the workers' user. */
	if (resolve_ids(conf_path, conf, t, &uid, &gid,
			portable ? ISM_DIAG_WARNING : ISM_DIAG_ERROR, d) < 0 &&
	    !portable)
		goto out;
	if (check_log_dest(conf_path, conf, t, uid, gid,
			   portable || geteuid() != 0 ? ISM_DIAG_WARNING : ISM_DIAG_ERROR, d) < 0 &&
	    !portable && geteuid() == 0)
		goto out;
	/* What the start does first: make the run directories, bind (both
	 * looked at, whatever the first says). */
	sev = portable ? ISM_DIAG_WARNING : ISM_DIAG_ERROR;
	bad = check_run_dirs(conf_path, conf, t, sev, d) < 0;
	bad |= check_addresses(conf_path, conf, t, sev, d) < 0;
	if (bad && !portable)
		goto out;
	/* What the master would do at its start: this process's limit is the
	 * one a master started the same way gets. */
	if (fds_apply(conf_path, conf, (struct ism_table *)t, ISM_FDS_RAISE, d) < 0)
		goto out;
	status = 0;
out:
	ism_diags_print(stderr, d);
	if (status == 0)
		fprintf(stderr,
			"%s: configuration is valid (%u listeners, %u clusters, %u connections "
			"per worker; route table %llu KiB of %llu)\n",
			conf_path, t->n_listeners, t->n_clusters, t->limits.max_connections,
			(unsigned long long)(t->arena_used + 1023) / 1024,
			(unsigned long long)t->arena_size / 1024);
	check_ids_free(&ids);
	free(block);
	ism_conf_free(conf);
	free(d);
	return status;
}

/* "<label>: spec.<name>" and its position, for a diagnostic on field f. */
static void app_field(const struct ism_conf *conf, enum ism_app_field f, const char *name,
		      char *field, size_t size, int *line, int *col)
{
	snprintf(field, size, "%s: spec.%s", ism_conf_app_field_at(conf, f, line, col), name);
}

/* The directories above the control socket and the pid file, as a start
 * would make them (ism_runfile_make_parent), looked at without making any:
 * one that is a file, or one that another user could change, refuses the
 * start. -1 with the reason in d at the field, else 0. */
static int check_run_dirs(const char *file, const struct ism_conf *conf, const struct ism_table *t,
			  enum ism_diag_severity sev, struct ism_diags *d)
{
	const struct {
		enum ism_app_field f;
		const char *name, *path;
	} run[] = {
	    {ISM_APP_CONTROL_SOCKET, "controlSocket", t->control_socket.p},
	    {ISM_APP_PID_FILE, "pidFile", t->pid_file.p},
	};
	int ret = 0;

	for (size_t i = 0; i < sizeof(run) / sizeof(run[0]); i++) {
		char bad[PATH_MAX], why[PATH_MAX + 128], field[256];
		int line, col, r;

		if (run[i].path[0] == '\0')
			continue;
		r = ism_runfile_parent_check(run[i].path, bad, sizeof(bad));
		if (r == 0)
			continue;
		if (r == -ENOTDIR)
			snprintf(why, sizeof(why), "%s is not a directory", bad);
		app_field(conf, run[i].f, run[i].name, field, sizeof(field), &line, &col);
		ism_diag_add(d, sev, file, line, col, field, "%s: %s", run[i].path,
			     r == -ENOTDIR ? why : ism_runfile_why(r, bad, why, sizeof(why)));
		ret = -1;
	}
	return ret;
}

/* Whether addr (its port aside) is one a socket of this machine can bind: an
 * address no interface has fails the start (EADDRNOTAVAIL), where a port in
 * use, the running appliance's own, is no fault of the file. */
static int address_here(const struct sockaddr_storage *addr, socklen_t len)
{
	struct sockaddr_storage a = *addr;
	int fd = socket(a.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0), ret = 0;

	if (a.ss_family == AF_INET)
		((struct sockaddr_in *)&a)->sin_port = 0;
	else
		((struct sockaddr_in6 *)&a)->sin6_port = 0;
	if (fd < 0 || bind(fd, (struct sockaddr *)&a, len) < 0)
		ret = -errno;
	if (fd >= 0)
		close(fd);
	return ret == -EADDRINUSE ? 0 : ret;
}

/* The listeners' and the admin listener's addresses are this machine's, as
 * binding them at the start needs (isthmus -c): -1 with each that is not in
 * d, else 0. */
static int check_addresses(const char *file, const struct ism_conf *conf, const struct ism_table *t,
			   enum ism_diag_severity sev, struct ism_diags *d)
{
	int ret = 0, r;

	for (uint32_t i = 0; i <= t->n_listeners; i++) {
		char ip[INET6_ADDRSTRLEN] = "?", field[256] = "";
		uint16_t port = 0;
		int line = 0, col = 0;
		bool admin = i == t->n_listeners;
		const struct sockaddr_storage *a = admin ? &t->admin_addr : &t->listeners[i].addr;
		socklen_t len = admin ? t->admin_addrlen : t->listeners[i].addrlen;

		if (len == 0 || (r = address_here(a, len)) == 0)
			continue;
		ism_addr_text((const struct sockaddr *)a, ip, &port);
		if (admin)
			app_field(conf, ISM_APP_ADMIN_ADDRESS, "admin.address", field,
				  sizeof(field), &line, &col);
		else if (ism_conf_listen_is(conf, a))
			app_field(conf, ISM_APP_LISTEN_ADDRESS, "listenAddress", field,
				  sizeof(field), &line, &col);
		ism_diag_add(d, sev, file, line, col, field,
			     "%s%s (%s port %u) cannot be bound here: %s",
			     admin ? "the admin listener" : "listener ",
			     admin ? "" : t->listeners[i].name.p, ip, port, strerror(-r));
		ret = -1;
	}
	return ret;
}

/* The workers (uid, gid: -1 for the master's own) can open the access-log
 * file t names, as they will: the file for appending, or its directory for
 * creating it. Tried in a child that drops to them, so that a path the
 * workers cannot write refuses the start or the reload here, with its place
 * in the file, rather than letting every worker fail at its start. The
 * child calls async-signal-safe functions only. */
static int check_log_dest(const char *file, const struct ism_conf *conf, const struct ism_table *t,
			  uid_t uid, gid_t gid, enum ism_diag_severity sev, struct ism_diags *d)
{
	const bool drop = geteuid() == 0;
	char path[4096], dir[4096], field[256], who[96] = "";
	const char *slash;
	int status = 0, line, col;
	pid_t pid;

	if (t->access_log.dest != ISM_ALOG_FILE || t->access_log.path.len >= sizeof(path))
		return 0;
	/* The child has no mapping of the tables (MADV_DONTFORK): a copy. */
	memcpy(path, t->access_log.path.p, t->access_log.path.len + 1);
	slash = strrchr(path, '/');
	snprintf(dir, sizeof(dir), "%.*s",
		 slash == NULL	 ? 1
		 : slash == path ? 1
				 : (int)(slash - path),
		 slash == NULL ? "." : path);
	pid = fork();
	if (pid < 0)
		return 0; /* nothing known: the workers will say */
	if (pid == 0) {
		int fd;

		/* Nothing of the master's (its tables' memfd, its sockets) in a
		 * process of the workers' user: stdio alone. */
		close_range(3, ~0u, 0);
		if (drop && ((gid != (gid_t)-1 && (setgroups(0, NULL) < 0 || setgid(gid) < 0)) ||
			     (uid != (uid_t)-1 && setuid(uid) < 0)))
			_exit(EPERM);
		fd = open(path, O_WRONLY | O_APPEND | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
		if (fd >= 0)
			_exit(0);
		if (errno != ENOENT)
			_exit(errno & 0xff);
		_exit(access(dir, W_OK | X_OK) == 0 ? 0 : errno & 0xff);
	}
	while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
		;
	if (!WIFEXITED(status) || WEXITSTATUS(status) == 0)
		return 0;
	app_field(conf, ISM_APP_ACCESS_LOG_PATH, "accessLog.path", field, sizeof(field), &line,
		  &col);
	if (t->user.len && drop)
		snprintf(who, sizeof(who), " (user %s)", t->user.p);
	ism_diag_add(d, sev, file, line, col, field, "%s cannot be written by the workers%s: %s",
		     path, who, strerror(WEXITSTATUS(status)));
	return -EACCES;
}

/* Whether two tables send the access log to the same place. A worker opens it
 * when it starts, so a new destination takes a new set of workers. */
static bool same_log_dest(const struct ism_table *a, const struct ism_table *b)
{
	const struct ism_alog_conf *x = &a->access_log, *y = &b->access_log;

	return x->dest == y->dest && strcmp(x->path.p, y->path.p) == 0 &&
	       x->addrlen == y->addrlen && memcmp(&x->addr, &y->addr, x->addrlen) == 0 &&
	       x->facility == y->facility && strcmp(x->tag.p, y->tag.p) == 0;
}

static int worker_count(const struct ism_table *t)
{
	long n = t->workers ? (long)t->workers : sysconf(_SC_NPROCESSORS_ONLN);

	if (n < 1)
		n = 1;
	if (n > ISM_MAX_WORKERS)
		n = ISM_MAX_WORKERS;
	return (int)n;
}

void ism_master_text_loaded(struct ism_master *m, char *text, size_t len)
{
	uint64_t h = 0xcbf29ce484222325ULL;

	free(m->conf_text);
	m->conf_text = text;
	m->conf_len = len;
	m->loaded_ms = ism_wall_ms();
	/* FNV-1a 64 of what was loaded, for `show config`: what a DNS answer
	 * or a certificate rotation publishes again is the same text. */
	for (size_t i = 0; i < len; i++)
		h = (h ^ (unsigned char)text[i]) * 0x100000001b3ULL;
	snprintf(m->conf_sum, sizeof(m->conf_sum), "%016llx", (unsigned long long)h);
}

/* A new table: every cluster's outlier sweep is due at once (sweeps: its
 * clusters' slots, zeroed, made before anything was published). */
static void reset_sweeps(struct ism_master *m, uint64_t *sweeps)
{
	free(m->next_sweep);
	m->next_sweep = sweeps;
	m->next_sweep_due = 0;
}

/* At most one recomputation of the priority loads, and one wake-up by the
 * workers' eventfd, in this many ms: a worker (a compromised one) that bumps
 * the health epoch and writes the eventfd in a loop costs the master at most
 * that many turns, where it took a CPU's quarter or more from the control
 * socket and the health checks. Envoy batches host updates alike. */
#define LOADS_PACE_MS 10

/* Outlier sweeps that are due, and new priority loads whenever an endpoint's
 * health, ejection or admin state changed (the health epoch moved), paced. */
static void update_lbstate(struct ism_master *m, uint64_t now)
{
	const struct ism_table *t = ism_shm_current(&m->shm);
	struct ism_shm_hdr *h = m->shm.hdr;
	uint64_t epoch;

	if (t == NULL)
		return;
	if (now >= m->next_sweep_due &&
	    ism_lbstate_sweep(t, h, m->shm.pub, m->next_sweep, now, &m->next_sweep_due) > 0)
		atomic_fetch_add(&h->health_epoch, 1);
	epoch = atomic_load(&h->health_epoch);
	if (epoch != m->epoch && now >= m->loads_due) {
		m->epoch = epoch;
		m->loads_due = now + LOADS_PACE_MS;
		/* Every generation still held: a worker whose listeners a reload
		 * moved drains on its own, and balanced with the loads it had at
		 * the reload, where Envoy's clusters, which no listener owns,
		 * follow health for a draining listener's requests too. */
		for (int i = 0; i < ISM_GEN_SLOTS; i++)
			if (ism_shm_gen_table(&m->shm, i) != NULL)
				ism_lbstate_compute(ism_shm_gen_table(&m->shm, i), h);
		ism_events_observe(&m->events, t, &m->shm);
	}
}

static void watch_list_free(struct ism_watch *w, size_t n)
{
	for (size_t i = 0; i < n; i++)
		free(w[i].path);
	free(w);
}

static void watch_free(struct ism_master *m)
{
	watch_list_free(m->watch, m->n_watch);
	m->watch = NULL;
	m->n_watch = 0;
}

static void watch_stat(struct ism_watch *wt)
{
	struct stat st;

	if (stat(wt->path, &st) < 0) {
		wt->missing = 1;
		return;
	}
	wt->missing = 0;
	wt->dev = st.st_dev;
	wt->ino = st.st_ino;
	wt->size = st.st_size;
	wt->mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
}

/* The certificate files of a configuration about to be published, into *out
 * (every one, or -ENOMEM and nothing: a list short of a file would stop its
 * rotation unseen). A file watched already keeps the stamp it had when the
 * load began (no look at the files is taken while a load runs): a change
 * while the load ran, which the load may have read or not, is then seen by
 * the next look and loaded again, never missed. A new file is stamped now. */
static int watch_build(const struct ism_master *m, const struct ism_conf *conf,
		       struct ism_watch **out, size_t *n_out)
{
	const char *const *files;
	size_t n = ism_conf_files(conf, &files), i;
	struct ism_watch *w = calloc(n ? n : 1, sizeof(*w));

	for (i = 0; w != NULL && i < n; i++) {
		size_t j = 0;

		while (j < m->n_watch && strcmp(m->watch[j].path, files[i]) != 0)
			j++;
		if (j < m->n_watch)
			w[i] = m->watch[j];
		if ((w[i].path = strdup(files[i])) == NULL)
			break;
		if (j == m->n_watch)
			watch_stat(&w[i]);
	}
	if (w == NULL || i < n) {
		watch_list_free(w, i);
		return -ENOMEM;
	}
	*out = w;
	*n_out = n;
	return 0;
}

int ism_master_read_file(const char *path, char **text, size_t *len, struct ism_diags *d)
{
	int ret = ism_conf_read_file(path, ISM_CONF_MAX_FILE, text, len);
	char why[64];

	if (ret < 0)
		ism_diag_add(d, ISM_DIAG_ERROR, path, 0, 0, "", "cannot read: %s",
			     ism_conf_read_why(ret, ISM_CONF_MAX_FILE, why));
	return ret;
}

/* The resolver as conf says (spec.dns and the names it resolves). 0 or -errno
 * with the reason in d. */
static int dns_apply(struct ism_master *m, const struct ism_conf *conf, bool retain,
		     struct ism_diags *d)
{
	struct ism_conf_dns dns;
	int ret;

	ism_conf_dns_settings(conf, &dns);
	ret = ism_resolver_configure(m->dns, &dns);
	if (ret == 0)
		ret = ism_resolver_names(m->dns, conf, retain);
	if (ret < 0)
		ism_diag_add(d, ISM_DIAG_ERROR, m->conf_path, 0, 0, "spec.dns",
			     "cannot resolve the ServiceEntries' names: %s", strerror(-ret));
	return ret;
}

/* The start: the first answers, waited for spec.dns.timeout at most, so that
 * the first generation has the endpoints that answered. */
static int dns_first(struct ism_master *m, const struct ism_conf *conf, struct ism_diags *d)
{
	struct ism_conf_dns dns;
	int ret;

	if (ism_shm_current(&m->shm) != NULL)
		return 0;
	ret = dns_apply(m, conf, false, d);
	if (ret < 0)
		return ret;
	ism_conf_dns_settings(conf, &dns);
	ism_resolver_settle(m->dns, dns.timeout_ms);
	return 0;
}

/* As Envoy warms a cluster before it replaces the one serving: a route moved
 * to a name nobody asked yet would answer 503 until its first answer. The
 * names are asked with the running spec.dns (the new one applies with the
 * publish, so that a reload refused then leaves the resolver as it was but for
 * names asked in vain, forgotten at the next publish). An error here is the
 * publish's to report (dns_apply meets it again). */
uint32_t ism_master_dns_warm(struct ism_master *m, const struct ism_conf *conf)
{
	struct ism_conf_dns dns;

	if (ism_resolver_names(m->dns, conf, false) < 0 || ism_resolver_settled(m->dns))
		return 0;
	ism_conf_dns_settings(conf, &dns);
	return dns.timeout_ms;
}

int ism_master_load(struct ism_master *m, struct ism_diags *d)
{
	struct ism_conf *conf = NULL;
	char *text = NULL;
	size_t len = 0;
	int ret = ism_master_read_file(m->conf_path, &text, &len, d);

	if (ret < 0)
		return ret;
	ret = ism_conf_load_buf(m->conf_path, text, len, &conf, d);
	if (ret == 0)
		ret = dns_first(m, conf, d);
	if (ret == 0)
		ret = ism_master_publish(m, conf, d);
	else
		ism_conf_free(conf);
	if (ret < 0) {
		free(text);
		return ret;
	}
	ism_master_text_loaded(m, text, len);
	return 0;
}

/* Certificate rotation: a watched file changed (cert-manager renames new files
 * into place). The running configuration is loaded again from its own text with
 * the new files, off the loop like a reload; a broken file is refused and the
 * old certificates serve on. While a load runs the files are not looked at: a
 * change is seen when it is over. */
static void watch_check(struct ism_master *m, uint64_t now)
{
	int changed = 0;

	if (now < m->next_watch || m->conf_text == NULL || m->stopping || ism_reload_busy(m))
		return;
	m->next_watch = now + HOUSEKEEP_MS;
	for (size_t i = 0; i < m->n_watch; i++) {
		struct ism_watch old = m->watch[i];

		watch_stat(&m->watch[i]);
		if (old.missing != m->watch[i].missing || old.dev != m->watch[i].dev ||
		    old.ino != m->watch[i].ino || old.size != m->watch[i].size ||
		    old.mtime_ns != m->watch[i].mtime_ns) {
			ism_notice("certificate file %s changed", m->watch[i].path);
			changed = 1;
		}
	}
	if (changed)
		ism_reload_request(m, ISM_LOAD_TEXT, NULL);
}

/* TLS session-ticket keys: three, rotated hourly, the newest encrypting. */
#define TICKET_ROTATE_MS (3600u * 1000u)

static void tickets_rotate(struct ism_master *m, uint64_t now)
{
	const struct ism_ticket_keys *tk = &m->shm.tickets; /* the master's own */
	struct ism_ticket_key keys[ISM_TICKET_KEYS];
	int fresh = tk->rotated_ms == 0;

	if (!fresh && now - tk->rotated_ms < TICKET_ROTATE_MS)
		return;
	for (int i = fresh ? 0 : ISM_TICKET_KEYS - 1; i >= 0; i--) {
		if (i > 0 && !fresh)
			keys[i] = tk->keys[i - 1];
		else if (RAND_bytes((unsigned char *)&keys[i], sizeof(keys[i])) != 1)
			ism_warn("session-ticket keys: no randomness");
	}
	ism_shm_tickets_set(&m->shm, keys, now ? now : 1);
	explicit_bzero(keys, sizeof(keys));
}

/* Clusters left without endpoints for want of an answer, in the log: their
 * requests get 503 (UH). */
static void log_unresolved(const struct ism_table *t)
{
	for (uint32_t c = 0; c < t->n_clusters; c++) {
		const struct ism_cluster *cl = &t->clusters[c];

		if (cl->unresolved.len > 0 && cl->n_endpoints == 0)
			ism_warn("cluster %s: no endpoint: %s is not resolved (yet)", cl->name.p,
				 cl->unresolved.p);
	}
}

/* A generation no worker counts in any more leaves its listener, route and
 * cluster counts to the current one's namesakes (master/counters.h). */
static void counts_to_current(const struct ism_table *gone, void *ctx)
{
	struct ism_master *m = ctx;

	ism_counters_carry(gone, ism_shm_current(&m->shm));
}

/* What only a start takes (running.md): a reload whose file differs from
 * what the start took publishes, with a warning, so that nobody takes the
 * file for what runs (compared with the start's, not the last reload's: a
 * second reload of the changed file warned no more). */
static void start_only_fields(const struct ism_master *m, const struct ism_table *t,
			      struct ism_diags *d)
{
	static const char why[] = "changed: takes effect at the next start (a reload keeps the "
				  "running one)";
	const char *file = m->conf_path;

	if (m->start_ctl == NULL)
		return;
	if (strcmp(m->start_ctl, t->control_socket.p) != 0)
		ism_diag_add(d, ISM_DIAG_WARNING, file, 0, 0, "", "spec.controlSocket %s", why);
	if (strcmp(m->pid_file != NULL ? m->pid_file : "", t->pid_file.p) != 0)
		ism_diag_add(d, ISM_DIAG_WARNING, file, 0, 0, "", "spec.pidFile %s", why);
	if (m->start_admin_len != t->admin_addrlen ||
	    memcmp(&m->start_admin, &t->admin_addr, t->admin_addrlen) != 0)
		ism_diag_add(d, ISM_DIAG_WARNING, file, 0, 0, "", "spec.admin.address %s", why);
}

int ism_master_build(struct ism_master *m, struct ism_conf *conf, struct ism_build *b,
		     struct ism_diags *d)
{
	const struct ism_table *cur = ism_shm_current(&m->shm);
	struct ism_arena arena;
	int ret;

	*b = (struct ism_build){.slot = -1, .conf = conf, .uid = (uid_t)-1, .gid = (gid_t)-1};
	b->slot = ism_shm_gen_begin(&m->shm, &arena);
	if (b->slot == -ENOSPC) {
		ism_shm_gen_reclaim_with(&m->shm, counts_to_current, m);
		b->slot = ism_shm_gen_begin(&m->shm, &arena);
	}
	if (b->slot < 0) {
		ret = b->slot;
		b->slot = -1;
		ism_diag_add(d, ISM_DIAG_ERROR, m->conf_path, 0, 0, "",
			     "every generation slot is still in use by a worker; try again later");
		goto fail;
	}
	ret =
	    ism_conf_compile_dns(conf, &arena, ep_id_cb, m, ism_resolver_lookup, m->dns, &b->t, d);
	if (ret == 0)
		ret = resolve_ids(m->conf_path, conf, b->t, &b->uid, &b->gid, ISM_DIAG_ERROR, d);
	/* A destination the running workers opened already is not tried again
	 * (a publish for a DNS answer compiles the same file). */
	if (ret == 0 && (cur == NULL || !same_log_dest(cur, b->t) || b->uid != m->run_uid ||
			 b->gid != m->run_gid))
		ret = check_log_dest(m->conf_path, conf, b->t, b->uid, b->gid, ISM_DIAG_ERROR, d);
	if (ret == 0)
		ret = fds_apply(m->conf_path, conf, (struct ism_table *)b->t,
				cur == NULL ? ISM_FDS_RAISE : ISM_FDS_KEEP, d);
	if (ret < 0)
		goto fail;
	ism_shm_gen_built(&m->shm, b->slot, b->t);
	return 0;

fail:
	if (b->slot >= 0)
		ism_shm_gen_abort(&m->shm, b->slot);
	ism_conf_free(conf);
	*b = (struct ism_build){.slot = -1};
	return ret;
}

/* The health checker takes table t's checks (the current table). One it
 * could not take (memory) is tried again each second from the loop: an
 * endpoint left out would stay unchecked, and so unhealthy, for good. */
static void health_take(struct ism_master *m, const struct ism_table *t)
{
	int ret = ism_health_set_table(m->health, t);

	if (ret < 0 && m->health_retry_at == 0)
		ism_err("health checks not updated: %s; tried again each second", strerror(-ret));
	else if (ret == 0 && m->health_retry_at != 0)
		ism_notice("health checks updated");
	m->health_retry_at = ret < 0 ? ism_now_ms() + HOUSEKEEP_MS : 0;
}

void ism_master_build_drop(struct ism_master *m, struct ism_build *b)
{
	if (b->slot >= 0) {
		ism_shm_gen_abort(&m->shm, b->slot);
		/* The checks that warmed its new endpoints go with them. */
		health_take(m, ism_shm_current(&m->shm));
	}
	ism_conf_free(b->conf);
	*b = (struct ism_build){.slot = -1};
}

/* Listener l could not be bound (err): said at the Gateway server of conf that
 * asks for it, file, line, column and field. */
static void unbound_diag(const struct ism_master *m, const struct ism_conf *conf,
			 const struct ism_listener *l, int err, struct ism_diags *d)
{
	char ip[INET6_ADDRSTRLEN] = "?", field[400] = "";
	uint16_t port = 0;
	int line = 0, col = 0;

	if (l != NULL) {
		ism_addr_text((const struct sockaddr *)&l->addr, ip, &port);
		if (conf != NULL)
			ism_conf_server_port_at(conf, port, &line, &col, field, sizeof(field));
	}
	ism_diag_add(d, ISM_DIAG_ERROR, m->conf_path, line, col, field,
		     "a new listener cannot be bound: %s (%s port %u): %s",
		     l != NULL ? l->name.p : "?", ip, port, strerror(-err));
}

/* The start could not bind listener l (err): said as a reload says it, at its
 * server, the file's text read again for the position. */
static void start_unbound(struct ism_master *m, const struct ism_listener *l, int err,
			  struct ism_diags *d)
{
	struct ism_conf *conf = NULL;

	ism_diags_init(d);
	if (m->conf_text == NULL ||
	    ism_conf_load_buf(m->conf_path, m->conf_text, m->conf_len, &conf, d) < 0)
		conf = NULL;
	ism_diags_init(d); /* its warnings were said at the load */
	unbound_diag(m, conf, l, err, d);
	ism_diags_print(stderr, d);
	ism_err("%s: not started", m->conf_path);
	ism_conf_free(conf);
}

int ism_master_commit(struct ism_master *m, struct ism_build *b, struct ism_diags *d)
{
	const struct ism_table *t = b->t;
	const struct ism_table *cur = ism_shm_current(&m->shm);
	int *new_fds = NULL;
	uid_t uid = b->uid;
	gid_t gid = b->gid;
	/* What can fail is made before the first thing is bound or published:
	 * a commit refused past that would leave a bound socket no worker
	 * serves, or a published table half taken up. */
	uint64_t *sweeps = calloc(t->n_clusters ? t->n_clusters : 1, sizeof(*sweeps));
	struct ism_watch *watch = NULL;
	size_t n_watch = 0;
	int ret;

	if (sweeps == NULL || watch_build(m, b->conf, &watch, &n_watch) < 0) {
		ret = -ENOMEM;
		ism_diag_add(d, ISM_DIAG_ERROR, m->conf_path, 0, 0, "", "out of memory");
		goto fail;
	}
	if (cur != NULL &&
	    (!ism_table_same_listeners(cur, t) || worker_count(cur) != worker_count(t) ||
	     !same_log_dest(cur, t) || cur->limits.receive_buffers != t->limits.receive_buffers ||
	     uid != m->run_uid || gid != m->run_gid)) {
		/* Listener, worker-count, access-log destination, receive
		 * buffer (a worker sizes its ring as it starts) or user and
		 * group change (a worker drops to them as it starts): a new
		 * set of workers. New sockets are bound before anything is
		 * published, so a port that cannot be bound refuses the reload and
		 * the running set keeps serving. */
		const struct ism_listener *failed;

		new_fds =
		    listen_sockets(t, cur, m->listen_fds, NULL, retiring_workers(m), &ret, &failed);
		if (new_fds == NULL) {
			/* Said before the drop: the listener is in the slot. */
			unbound_diag(m, b->conf, failed, ret, d);
			goto fail;
		}
	}
	start_only_fields(m, t, d);
	/* Workers read loads from their first request on: compute them first. */
	ism_lbstate_compute(t, m->shm.hdr);
	reset_sweeps(m, sweeps);
	m->gen++;
	m->run_uid = uid;
	m->run_gid = gid;
	/* The level every process logs at (spec.logging.level; -d: debug). */
	if (m->debug)
		((struct ism_table *)t)->log_level = ISM_LOG_DEBUG;
	ism_log_set_level((enum ism_log_level)t->log_level);
	ism_shm_gen_publish(&m->shm, b->slot, (struct ism_table *)t, m->gen);
	if (new_fds != NULL)
		replace_workers(m, cur, t, new_fds);
	/* The baseline later changes are reported against. */
	ism_events_observe(&m->events, t, &m->shm);
	health_take(m, t);
	watch_free(m);
	m->watch = watch;
	m->n_watch = n_watch;
	log_unresolved(t);
	ism_resolver_compiled(m->dns);
	if (dns_apply(m, b->conf, true, d) < 0)
		ism_warn("dns: the resolver keeps its previous settings and names");
	ism_conf_free(b->conf);
	*b = (struct ism_build){.slot = -1};
	return 0;

fail:
	free(sweeps);
	watch_list_free(watch, n_watch);
	ism_master_build_drop(m, b);
	return ret;
}

uint64_t ism_master_first_round_until(const struct ism_master *m)
{
	uint64_t by = ism_health_settle_by(m->health);

	return by != 0 ? by + FIRST_ROUND_MARGIN_MS : 0;
}

int ism_master_publish(struct ism_master *m, struct ism_conf *conf, struct ism_diags *d)
{
	struct ism_build b;
	int ret = ism_master_build(m, conf, &b, d);

	return ret < 0 ? ret : ism_master_commit(m, &b, d);
}

/* Lets fd bind beside the running listeners of port (cur's, whose fds are
 * cur_fds) whose address covers its own or is covered by it, as a reload
 * that moves a port between an address and the wildcard must: both sockets
 * with SO_REUSEPORT, which Linux allows for one user's sockets. The old ones
 * close as the reload retires them. Whether fd may now bind. */
static bool share_port(const struct ism_table *cur, const int *cur_fds, uint16_t port, int fd)
{
	int one = 1;
	bool any = false;

	for (uint32_t j = 0; cur != NULL && j < cur->n_listeners; j++)
		if (cur->listeners[j].port == port &&
		    setsockopt(cur_fds[j], SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == 0)
			any = true;
	return any && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof(one)) == 0;
}

/* A listening socket for l, beside cur's (share_port). wait: a port may be
 * held a moment longer by workers this master retires (a reload dropped it,
 * and they have not seen their stop signal yet): wait a little for it. */
static int bind_one(const struct ism_listener *l, const struct ism_table *cur, const int *cur_fds,
		    bool wait)
{
	int one = 1, zero = 0, err;
	bool shared = false;
	int fd = socket(l->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);

	if (fd < 0)
		return -errno;
	setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	for (int tries = 0; bind(fd, (const struct sockaddr *)&l->addr, l->addrlen) < 0; tries++) {
		err = errno;
		if (err == EADDRINUSE && !shared &&
		    (shared = share_port(cur, cur_fds, l->port, fd)))
			continue;
		if (err != EADDRINUSE || !wait || tries >= BIND_TRIES)
			goto fail;
		usleep(BIND_RETRY_US);
	}
	if (listen(fd, LISTEN_BACKLOG) < 0) {
		err = errno;
		goto fail;
	}
	/* Listening now: no other process's socket may join this one. */
	if (shared)
		setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &zero, sizeof(zero));
	ism_notice("listening on port %u (%s)", l->port, l->name.p);
	return fd;
fail:
	ism_err("listener %s (port %u): %s", l->name.p, l->port, strerror(err));
	close(fd);
	return -err;
}

/* The sockets for t's listeners: those of cur (whose fds are cur_fds) that t
 * keeps are reused as they are, so their queued connections are not lost, and
 * so are those an upgrading master handed over (up, at the start); the others
 * are bound (bind_one; wait as there). Returns a new array, or NULL with *err
 * set and *failed the listener that could not be bound (nothing bound stays
 * open). */
static int *listen_sockets(const struct ism_table *t, const struct ism_table *cur,
			   const int *cur_fds, struct ism_upgrade *up, bool wait, int *err,
			   const struct ism_listener **failed)
{
	int *fds = calloc(t->n_listeners ? t->n_listeners : 1, sizeof(int));

	*err = -ENOMEM;
	*failed = NULL;
	if (fds == NULL)
		return NULL;
	for (uint32_t i = 0; i < t->n_listeners; i++) {
		const struct ism_listener *l = &t->listeners[i];

		fds[i] = -1;
		for (uint32_t j = 0; cur && j < cur->n_listeners && fds[i] < 0; j++)
			if (cur->listeners[j].addrlen == l->addrlen &&
			    memcmp(&cur->listeners[j].addr, &l->addr, l->addrlen) == 0)
				fds[i] = cur_fds[j];
		if (fds[i] < 0 && up != NULL)
			fds[i] = ism_upgrade_adopt(up, l);
		if (fds[i] >= 0)
			continue;
		fds[i] = bind_one(l, cur, cur_fds, wait);
		if (fds[i] < 0) {
			*err = fds[i];
			*failed = l;
			for (uint32_t k = 0; k < i; k++) {
				int reused = 0;

				for (uint32_t j = 0; cur && j < cur->n_listeners; j++)
					reused |= cur_fds[j] == fds[k];
				if (!reused)
					close(fds[k]);
			}
			free(fds);
			return NULL;
		}
	}
	return fds;
}

/* In the child: keep stdio, the listeners and our socketpair end. */
static void close_inherited(const struct ism_master *m, int keep_fd)
{
	int max = keep_fd > m->notify_fd ? keep_fd : m->notify_fd;

	for (int i = 0; i < m->n_listen; i++)
		if (m->listen_fds[i] > max)
			max = m->listen_fds[i];
	for (int fd = 3; fd <= max; fd++) {
		int keep = fd == keep_fd || fd == m->notify_fd;

		for (int i = 0; i < m->n_listen && !keep; i++)
			keep = fd == m->listen_fds[i];
		if (!keep)
			close(fd);
	}
	close_range((unsigned int)max + 1, ~0u, 0);
}

/* The user and group the workers run as; -1 where the file names none. A name
 * that does not resolve refuses the load (a reload keeps the running set). */
static int resolve_ids(const char *file, const struct ism_conf *conf, const struct ism_table *t,
		       uid_t *uid, gid_t *gid, enum ism_diag_severity sev, struct ism_diags *d)
{
	char field[256];
	int line, col, ret = 0;

	*uid = (uid_t)-1;
	*gid = (gid_t)-1;
	/* Both are said when both are missing, in the file's order. */
	if (t->user.len) {
		struct passwd *pw = getpwnam(t->user.p);

		if (pw == NULL) {
			app_field(conf, ISM_APP_USER, "user", field, sizeof(field), &line, &col);
			ism_diag_add(d, sev, file, line, col, field, "user %s: not found",
				     t->user.p);
			ret = -ENOENT;
		} else {
			*uid = pw->pw_uid;
			*gid = pw->pw_gid; /* unless a group is named */
		}
	}
	if (t->group.len) {
		struct group *gr = getgrnam(t->group.p);

		if (gr == NULL) {
			app_field(conf, ISM_APP_GROUP, "group", field, sizeof(field), &line, &col);
			ism_diag_add(d, sev, file, line, col, field, "group %s: not found",
				     t->group.p);
			ret = -ENOENT;
		} else {
			*gid = gr->gr_gid;
		}
	}
	return ret;
}

/* Workers give up root after the listeners are bound (the master keeps it for
 * reloads and the control socket), as the master resolved them: a child reads
 * no table, which the master may reclaim as it publishes another. */
/* LeakSanitizer's check, linked in the sanitizer builds only. */
extern int __lsan_do_recoverable_leak_check(void) __attribute__((weak));

/* A worker's end. A forked child ends with _exit (the master's atexit
 * handlers are not its own), which skips LeakSanitizer's check: a sanitizer
 * build runs it first, so that the workers are checked for leaks too (made
 * dumpable again for it, as its tracer must attach to the process). Not in
 * a worker forked while a reload's loader thread ran (check false): it
 * inherits what that thread held, which no thread of the worker reaches. */
static void worker_exit(int rc, bool check)
{
	if (check && __lsan_do_recoverable_leak_check != NULL) {
		(void)prctl(PR_SET_DUMPABLE, 1);
		__lsan_do_recoverable_leak_check();
	}
	_exit(rc);
}

static int drop_privileges(uid_t uid, gid_t gid)
{
	if (gid != (gid_t)-1 && (setgroups(0, NULL) < 0 || setgid(gid) < 0)) {
		ism_err("setgid(%u): %s", (unsigned)gid, strerror(errno));
		return -errno;
	}
	if (uid != (uid_t)-1 && setuid(uid) < 0) {
		ism_err("setuid(%u): %s", (unsigned)uid, strerror(errno));
		return -errno;
	}
	return 0;
}

static int spawn_worker(struct ism_master *m, int i)
{
	struct ism_wslot *ws = &m->workers[i];
	struct ism_worker_slot *ss = ism_shm_worker(&m->shm, i);
	bool leak_check;
	int sv[2];
	pid_t pid;

	if (!m->probed) {
		/* Once for every worker (and respawn) the master starts. */
		struct ism_ring_probe pr;

		ism_worker_ring_probe(&pr);
		m->recv_mshot = pr.recv_mshot;
		m->probed = true;
	}
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		int err = errno;

		/* the caller says "fork": this is before it */
		ism_err("worker %d: socketpair: %s", i, strerror(err));
		return -err;
	}
	atomic_store(&ss->gen, 0);
	atomic_store(&ss->draining, 0);
	atomic_store(&ss->stats.conn_active, 0);
	atomic_store(&ss->stats.tunnels_active, 0);
	atomic_store(&ss->stats.h2_sessions, 0);
	atomic_store(&ss->stats.h2_heap_bytes, 0);
	atomic_store(&ss->stats.streams, 0);
	atomic_store(&ss->heartbeat_ms, 0); /* none yet from this worker */
	ws->requests_base = atomic_load(&ss->stats.requests);
	/* The loader thread runs from the reload's start until its join. */
	leak_check = !ism_reload_busy(m);
	pid = fork();
	if (pid < 0) {
		int err = errno;

		close(sv[0]);
		close(sv[1]);
		return -err;
	}
	if (pid == 0) {
		struct ism_worker_args args = {
		    .shm = &m->shm,
		    .index = i,
		    .listen_fds = m->listen_fds,
		    .n_listen = m->n_listen,
		    .master_fd = sv[1],
		    .notify_fd = m->notify_fd,
		    .recv_mshot = m->recv_mshot,
		};

		/* First: the published part's range is free in a child
		 * (MADV_DONTFORK), and its read-only view, mapped there with
		 * MAP_FIXED, would replace whatever came to it later. */
		if (ism_shm_worker_map(&m->shm) < 0) {
			ism_err("worker %d: the shared memory cannot be mapped", i);
			_exit(1);
		}
		close_inherited(m, sv[1]);
		if (drop_privileges(m->run_uid, m->run_gid) < 0)
			_exit(1);
		worker_exit(ism_worker_main(&args), leak_check);
	}
	close(sv[1]);
	atomic_store(&ss->index, (uint32_t)i);
	ism_shm_worker_live(&m->shm, i, pid);
	ws->pid = pid;
	ws->fd = sv[0];
	ws->started_ms = ism_now_ms();
	ws->respawn_at = 0;
	ws->hung = 0;
	return 0;
}

/* How long worker i has gone without a heartbeat, when that is longer than it
 * may; 0 while it is alive enough. */
static uint64_t hang_age(const struct ism_master *m, int i, uint64_t now)
{
	const struct ism_wslot *ws = &m->workers[i];
	uint64_t hb = atomic_load(&m->shm.hdr->workers[i].heartbeat_ms);

	if (ws->pid == 0 || ws->hung)
		return 0;
	/* now may be older than a start made later in the same turn. */
	if (hb == 0)
		return now > ws->started_ms && now - ws->started_ms > HANG_START_MS
			   ? now - ws->started_ms
			   : 0;
	return now > hb && now - hb > HANG_MS ? now - hb : 0;
}

/* A hung worker is killed; reap() restarts it as any worker that died. */
static void kill_hung(struct ism_master *m, uint64_t now)
{
	if (now - m->last_turn > MASTER_STALL_MS)
		m->awake_since = now;
	m->last_turn = now;
	if (now - m->awake_since < HANG_MS)
		return;
	for (int i = 0; i < m->n_slots; i++) {
		struct ism_wslot *ws = &m->workers[i];
		uint64_t age = hang_age(m, i, now);
		char why[64];

		if (age == 0)
			continue;
		snprintf(why, sizeof(why),
			 atomic_load(&m->shm.hdr->workers[i].heartbeat_ms)
			     ? "heartbeat %llu ms old"
			     : "no heartbeat %llu ms after its start",
			 (unsigned long long)age);
		ism_err("worker %d (pid %d) hung: %s; killing it", i, (int)ws->pid, why);
		ism_event_add(&m->events, "worker", "%d (pid %d) hung: %s, killed", i, (int)ws->pid,
			      why);
		kill(ws->pid, SIGKILL);
		ws->hung = 1;
		m->worker_hangs++;
	}
}

static void reap(struct ism_master *m)
{
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (ism_upgrade_reaped(&m->up, pid, status))
			continue;
		for (int i = 0; i < m->n_slots; i++) {
			struct ism_wslot *ws = &m->workers[i];
			struct ism_worker_slot *ss = ism_shm_worker(&m->shm, i);
			uint64_t lived, delay = 0;

			if (ws->pid != pid)
				continue;
			/* What it held of the shared counts goes back: of the
			 * endpoints here; of the generation's clusters, when it
			 * held requests, by a new generation, which the living
			 * workers' streams move to with their own share only
			 * (worker/regen.c). */
			if (ism_shm_worker_give_back(&m->shm, i) && !m->stopping)
				m->heal_pending = true;
			ism_shm_worker_live(&m->shm, i, 0);
			atomic_store(&ss->gen, 0);
			atomic_store(&ss->stats.conn_active, 0);
			atomic_store(&ss->stats.tunnels_active, 0);
			atomic_store(&ss->stats.h2_sessions, 0);
			atomic_store(&ss->stats.h2_heap_bytes, 0);
			atomic_store(&ss->stats.streams, 0);
			close(ws->fd);
			ws->fd = -1;
			ws->pid = 0;
			if (m->stopping || ws->retiring || !ws->active) {
				ism_info("worker %d (pid %d) exited%s", i, (int)pid,
					 ws->replaced	? " while its set was replaced"
					 : ws->retiring ? " after draining"
							: "");
				/* The slot may take a worker of the new set next. */
				ws->retiring = ws->replaced = 0;
				break;
			}
			/* A worker that dies young is restarted with a growing delay, so a
			 * crash loop does not spin the machine. */
			lived = ism_now_ms() - ws->started_ms;
			if (lived < YOUNG_DEATH_MS) {
				ws->restarts++;
				delay = RESPAWN_MIN_MS << (ws->restarts < 8 ? ws->restarts - 1 : 7);
				if (delay > RESPAWN_MAX_MS)
					delay = RESPAWN_MAX_MS;
			} else {
				ws->restarts = 0;
			}
			if (WIFSIGNALED(status))
				ism_warn(
				    "worker %d (pid %d) killed by signal %d; restarting in %llu ms",
				    i, (int)pid, WTERMSIG(status), (unsigned long long)delay);
			else
				ism_warn("worker %d (pid %d) exited with status %d; restarting in "
					 "%llu ms",
					 i, (int)pid, WEXITSTATUS(status),
					 (unsigned long long)delay);
			ws->respawn_at = ism_now_ms() + delay;
			/* The kind is the subject: "worker 0 (pid ...) ..." in show events. */
			ism_event_add(&m->events, "worker", "%d (pid %d) %s %d; restart in %llu ms",
				      i, (int)pid,
				      WIFSIGNALED(status) ? "killed by signal" : "exited with",
				      WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status),
				      (unsigned long long)delay);
			break;
		}
	}
}

static void respawn_due(struct ism_master *m, uint64_t now)
{
	for (int i = 0; i < m->n_slots; i++) {
		struct ism_wslot *ws = &m->workers[i];

		if (ws->active && ws->pid == 0 && ws->respawn_at && ws->respawn_at <= now) {
			int ret = spawn_worker(m, i);

			if (ret < 0) {
				ism_err("worker %d: fork: %s", i, strerror(-ret));
				ws->respawn_at = now + RESPAWN_MAX_MS;
			} else {
				ism_notice("worker %d restarted (pid %d)", i, (int)ws->pid);
			}
		}
	}
}

/* Starts the workers the current set is owed in free slots: all of them at
 * once unless reloads in quick succession left old workers draining in every
 * slot, then one as each old worker exits. Returns 0, or -errno when a fork
 * failed (tried again RESPAWN_MAX_MS later). */
static int start_owed(struct ism_master *m)
{
	int ret = 0;

	for (int i = 0; i < ISM_WORKER_SLOTS && m->owed > 0; i++) {
		struct ism_wslot *ws = &m->workers[i];

		if (ws->pid != 0 || ws->active || ws->retiring)
			continue;
		ws->restarts = 0;
		ret = spawn_worker(m, i);
		if (ret < 0) {
			ism_err("worker %d: fork: %s", i, strerror(-ret));
			/* A set with no worker serves nobody (its old set stopped
			 * accepting): soon again, 100 ms doubling to the bound. */
			m->owed_backoff = m->n_workers > 0 ? RESPAWN_MAX_MS
							   : (m->owed_backoff ? m->owed_backoff * 2
									      : RESPAWN_MIN_MS);
			if (m->owed_backoff > RESPAWN_MAX_MS)
				m->owed_backoff = RESPAWN_MAX_MS;
			m->owed_retry_at = ism_now_ms() + m->owed_backoff;
			break;
		}
		m->owed_backoff = 0;
		ws->active = 1;
		m->owed--;
		m->n_workers++;
		if (i + 1 > m->n_slots)
			m->n_slots = i + 1;
	}
	atomic_store(&m->shm.hdr->n_workers, (uint32_t)m->n_workers);
	return ret;
}

/* A new set of n workers. Returns 0 or -errno. */
static int start_workers(struct ism_master *m, int n)
{
	m->n_workers = 0;
	m->owed = n;
	m->owed_retry_at = 0;
	m->owed_backoff = 0;
	return start_owed(m);
}

/* Workers the set is owed, started as slots free (an old worker exited). */
static void start_owed_due(struct ism_master *m, uint64_t now)
{
	int before = m->n_workers;

	if (m->owed == 0 || m->stopping || now < m->owed_retry_at)
		return;
	start_owed(m);
	if (m->n_workers == before)
		return;
	ism_notice("reload: %d owed workers started in slots old workers left; %d still owed",
		   m->n_workers - before, m->owed);
	/* The reload is the subject: "worker 3 ..." would name worker 3. */
	ism_event_add(&m->events, "reload",
		      "%d owed workers started as old workers exited, %d still owed",
		      m->n_workers - before, m->owed);
}

/* Whether workers of an earlier set are still draining (or serving, replaced). */
static bool retiring_workers(const struct ism_master *m)
{
	for (int i = 0; i < m->n_slots; i++)
		if (m->workers[i].retiring && m->workers[i].pid)
			return true;
	return false;
}

/* Whether a worker of the current set takes connections on the published
 * configuration. */
static bool current_set_serves(const struct ism_master *m)
{
	for (int i = 0; i < m->n_slots; i++)
		if (m->workers[i].active && ism_master_slot_serves(m, i))
			return true;
	return false;
}

/* Whether workers owed to the current set can never find a slot: every slot
 * held, none by a draining worker whose exit frees it (sets replaced by
 * reloads in quick succession serve on until told to drain). */
static bool slots_stuck(const struct ism_master *m)
{
	for (int i = 0; i < ISM_WORKER_SLOTS; i++) {
		const struct ism_wslot *ws = &m->workers[i];

		if (ws->pid == 0 && !ws->active && !ws->retiring)
			return false; /* free */
		if (ws->pid != 0 && ws->retiring && !ws->replaced)
			return false; /* draining */
	}
	return true;
}

/* The workers a reload replaced keep serving (their generation, their
 * copies of the sockets) until a worker of the new set does; then they stop
 * accepting and drain their connections (a kept-alive one gets "connection:
 * close" on its next response), bounded by their drain timeout. So a new set
 * that cannot start (fork refused: a process limit, memory) leaves the old one
 * serving, not nobody, while its workers are tried again. Unless the new set's
 * workers could never find a slot (slots_stuck): then the replaced sets drain
 * at once, as the new set's workers start in the slots they free. */
static void retire_replaced(struct ism_master *m, uint64_t now)
{
	int n = 0;

	if (!current_set_serves(m) && !(m->owed > 0 && slots_stuck(m)))
		return;
	for (int i = 0; i < m->n_slots; i++) {
		struct ism_wslot *ws = &m->workers[i];

		if (!ws->replaced || ws->active)
			continue;
		ws->replaced = 0;
		if (ws->pid == 0)
			continue;
		ws->retire_deadline = now + m->replaced_drain_ms + STOP_GRACE_MS;
		kill(ws->pid, SIGTERM);
		n++;
	}
	if (n == 0)
		return;
	ism_notice("reload: the new worker set serves; %d old workers draining", n);
	ism_event_add(&m->events, "reload", "the new worker set serves, %d old workers draining",
		      n);
}

/* A reload that changes listeners or the worker count: a new set of workers
 * starts on the new sockets, and the old set drains once the new one serves
 * (retire_replaced). Sockets no listener uses any more are closed here; the
 * old workers hold their own copies until they exit. */
static void replace_workers(struct ism_master *m, const struct ism_table *old,
			    const struct ism_table *t, int *fds)
{
	int replaced = 0;

	for (int i = 0; i < m->n_slots; i++) {
		struct ism_wslot *ws = &m->workers[i];

		if (!ws->active)
			continue;
		ws->active = 0;
		ws->respawn_at = 0;
		if (ws->pid) {
			ws->retiring = 1;
			ws->replaced = 1;
			ws->retire_deadline = 0; /* none until told to drain */
			replaced++;
		}
	}
	/* (an older set still serving, replaced before its successor served,
	 * drains with this time too) */
	m->replaced_drain_ms = old->timeouts.drain_ms;
	for (int j = 0; j < m->n_listen; j++) {
		int kept = 0;

		for (uint32_t i = 0; i < t->n_listeners; i++)
			kept |= fds[i] == m->listen_fds[j];
		if (!kept)
			close(m->listen_fds[j]);
	}
	free(m->listen_fds);
	m->listen_fds = fds;
	m->n_listen = (int)t->n_listeners;
	if (start_workers(m, worker_count(t)) < 0)
		ism_err("reload: not every new worker started; tried again in %u ms",
			m->owed_backoff);
	ism_notice("reload: %d new workers on %u listeners; %d old workers serve until one of "
		   "them does; %d more start as slots free",
		   m->n_workers, t->n_listeners, replaced, m->owed);
	ism_event_add(&m->events, "reload",
		      "new worker set (%d) on %u listeners, %d old serving until it does, %d owed",
		      m->n_workers, t->n_listeners, replaced, m->owed);
}

/* Old workers past their drain time are killed. */
static void retire_overdue(struct ism_master *m, uint64_t now)
{
	for (int i = 0; i < m->n_slots; i++) {
		struct ism_wslot *ws = &m->workers[i];

		if (ws->retiring && ws->pid && ws->retire_deadline && now >= ws->retire_deadline) {
			ism_warn(
			    "old worker %d (pid %d) still draining after its drain time: killed", i,
			    (int)ws->pid);
			kill(ws->pid, SIGKILL);
			ws->retire_deadline = 0;
		}
	}
}

/* systemd (Type=notify): without $NOTIFY_SOCKET these calls do nothing. */
void ism_master_notify_reloading(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu",
		   (unsigned long long)ts.tv_sec * 1000000ULL +
		       (unsigned long long)ts.tv_nsec / 1000);
}

void ism_master_notify_ready(const struct ism_master *m)
{
	/* As HAProxy's "Reload failed!": a reload refused after the unit's
	 * check passed (a port another process holds) shows in systemctl status. */
	sd_notifyf(0, "READY=1\nSTATUS=serving generation %llu with %d workers%s",
		   (unsigned long long)m->gen, m->n_workers,
		   m->reload_refused ? "; the last reload was refused (see the log)" : "");
}

static void start_stop(struct ism_master *m, const char *why)
{
	uint32_t drain = ISM_DEFAULT_DRAIN_MS;
	const struct ism_table *t = ism_shm_current(&m->shm);

	if (m->stopping)
		return;
	if (t)
		drain = t->timeouts.drain_ms;
	m->stopping = 1;
	m->stop_deadline = ism_now_ms() + drain + STOP_GRACE_MS;
	atomic_store(&m->shm.hdr->stopping, 1);
	ism_notice("stopping (%s): draining workers for up to %u ms", why, drain);
	sd_notifyf(0, "STOPPING=1\nSTATUS=draining (%s)", why);
	for (int i = 0; i < m->n_slots; i++)
		if (m->workers[i].pid)
			kill(m->workers[i].pid, SIGTERM);
	/* The ports are given up at once, as HAProxy's soft stop unbinds them:
	 * the workers close their copies as they begin to drain, so a client
	 * that connects now is refused (and tries elsewhere) instead of
	 * waiting in a listen queue nobody accepts from until the drain ends. */
	for (int i = 0; i < m->n_listen; i++)
		if (m->listen_fds[i] >= 0) {
			close(m->listen_fds[i]);
			m->listen_fds[i] = -1;
		}
}

/* sig to every worker alive: the master's own, and an upgrade's old ones. */
static void signal_workers(const struct ism_master *m, int sig)
{
	for (int i = 0; i < m->n_slots; i++)
		if (m->workers[i].pid)
			kill(m->workers[i].pid, sig);
	ism_upgrade_signal_heirs(&m->up, sig);
}

/* The workers alive: the master's own, and an upgrade's old ones (a stop
 * waits for them too). */
static int live_workers(const struct ism_master *m)
{
	int n = m->up.n_heirs;

	for (int i = 0; i < m->n_slots; i++)
		n += m->workers[i].pid != 0;
	return n;
}

static void handle_signals(struct ism_master *m)
{
	struct signalfd_siginfo si;

	while (read(m->sfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGHUP:
			ism_notice("SIGHUP: reloading %s", m->conf_path);
			ism_reload_request(m, ISM_LOAD_FILE, NULL);
			break;
		case SIGUSR2:
			/* HAProxy's master-worker reload: the binary at the path
			 * (a package upgrade's) executed, the file loaded by it. */
			ism_upgrade_request(m, ism_now_ms());
			break;
		case SIGTERM:
		case SIGINT:
			if (m->stopping) {
				/* A second one during the drain (Ctrl-C twice, an
				 * operator who will not wait): stop now, as the
				 * drain time's end would. */
				ism_warn("%s during the drain: killing %d workers now",
					 si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT",
					 live_workers(m));
				m->stop_deadline = 0;
				break;
			}
			start_stop(m, si.ssi_signo == SIGTERM ? "SIGTERM" : "SIGINT");
			break;
		case SIGCHLD:
			reap(m);
			break;
		case SIGUSR1:
			/* logrotate moved the access log: every worker reopens it. */
			signal_workers(m, SIGUSR1);
			break;
		default:
			break;
		}
	}
}

static int next_timeout(struct ism_master *m, uint64_t now)
{
	int t = ism_ctl_timeout_ms(m->ctl, now, HOUSEKEEP_MS);
	int h = ism_health_timeout_ms(m->health, now);

	if (h >= 0 && h < t)
		t = h;
	t = ism_resolver_timeout_ms(m->dns, now, t);
	t = ism_reload_timeout_ms(m, now, t);
	h = ism_upgrade_timeout_ms(&m->up, !m->deferred, now);
	if (h >= 0 && h < t)
		t = h;
	if (m->deferred && m->first_round_until != 0) {
		uint64_t due = m->first_round_until > now ? m->first_round_until - now : 0;

		if (due < (uint64_t)t)
			t = (int)due;
	}
	if (m->jwks_next != 0) {
		uint64_t due = m->jwks_next > now ? m->jwks_next - now : 0;

		if (due < (uint64_t)t)
			t = (int)due;
	}
	if (m->next_sweep_due != UINT64_MAX) {
		uint64_t due = m->next_sweep_due > now ? m->next_sweep_due - now : 0;

		if (due < (uint64_t)t)
			t = (int)due;
	}
	/* A change seen while paced, or the eventfd listened to again. */
	if (m->loads_due > now && m->loads_due - now < (uint64_t)t)
		t = (int)(m->loads_due - now);
	/* Owed workers tried again after a failed fork. */
	if (m->owed > 0 && m->owed_retry_at != 0) {
		uint64_t due = m->owed_retry_at > now ? m->owed_retry_at - now : 0;

		if (due < (uint64_t)t)
			t = (int)due;
	}
	for (int i = 0; i < m->n_slots; i++) {
		const struct ism_wslot *ws = &m->workers[i];

		if (ws->pid == 0 && ws->respawn_at) {
			uint64_t due = ws->respawn_at > now ? ws->respawn_at - now : 0;

			if (due < (uint64_t)t)
				t = (int)due;
		}
		/* A replaced set drains once the new one serves, which no
		 * event tells: polled (retire_replaced). */
		if (ws->replaced && ws->pid && t > REPLACED_POLL_MS)
			t = REPLACED_POLL_MS;
	}
	return t;
}

/* A changed answer: the running text compiled again with it, off the loop as
 * a certificate rotation (tried again each turn while another load runs). */
static void dns_publish(struct ism_master *m, uint64_t now)
{
	if (!ism_resolver_changed(m->dns) || m->stopping || m->conf_text == NULL ||
	    ism_reload_busy(m) || now < m->dns_next_publish)
		return;
	/* Five a second at most: answers that flap, or a publish that fails,
	 * do not keep the loader busy. */
	m->dns_next_publish = now + DNS_PUBLISH_MS;
	ism_reload_request(m, ISM_LOAD_DNS, NULL);
}

/* The running text published again after a worker died holding requests,
 * once the loader is free (ISM_LOAD_HEAL). */
static void heal_publish(struct ism_master *m)
{
	if (!m->heal_pending || m->stopping || m->conf_text == NULL || ism_reload_busy(m) ||
	    ism_now_ms() < m->heal_after)
		return;
	m->heal_pending = false;
	ism_reload_request(m, ISM_LOAD_HEAL, NULL);
}

/* The key sets' refresh interval: PILOT_JWT_PUB_KEY_REFRESH_INTERVAL, as
 * istiod reads it, or its default. */
static uint32_t jwks_refresh_ms(void)
{
	const char *s = getenv(ISM_JWKS_REFRESH_ENV);
	uint32_t ms;

	if (s == NULL || *s == '\0')
		return ISM_JWKS_REFRESH_MS;
	if (ism_parse_duration_ms(s, &ms) < 0 || ms == 0) {
		ism_warn("%s=%s: not a duration (\"20m\"); 20m it is", ISM_JWKS_REFRESH_ENV, s);
		return ISM_JWKS_REFRESH_MS;
	}
	return ms;
}

/* The key sets fetched again when due, off the loop (tried again each turn
 * while another load runs). */
static void jwks_refresh(struct ism_master *m, uint64_t now)
{
	if (m->jwks_next == 0 || now < m->jwks_next || m->stopping || m->conf_text == NULL ||
	    ism_reload_busy(m))
		return;
	if (ism_reload_request(m, ISM_LOAD_JWKS, NULL) == 0)
		m->jwks_next = now + ISM_JWKS_REFRESH_FAILED_MS;
}

#define MASTER_POLLFDS (4 + ISM_CTL_POLLFDS + ISM_RESOLVER_POLLFDS)

/* poll(2) over the entries of pfd that hold a descriptor, their results
 * put back in place: the slots without one (fd -1) would count toward
 * nfds, which the kernel refuses above the open-files limit (EINVAL), and
 * the control socket's and admin listener's slots alone are 290. */
static int poll_open(struct pollfd *pfd, nfds_t n, int timeout)
{
	struct pollfd open[MASTER_POLLFDS];
	nfds_t at[MASTER_POLLFDS], k = 0;
	int ret;

	for (nfds_t i = 0; i < n; i++) {
		pfd[i].revents = 0;
		if (pfd[i].fd >= 0) {
			open[k] = pfd[i];
			at[k++] = i;
		}
	}
	ret = poll(open, k, timeout);
	for (nfds_t i = 0; ret > 0 && i < k; i++)
		pfd[at[i]].revents = open[i].revents;
	return ret;
}

/* Whether the workers master_serve deferred may start: an upgrade's once its
 * settling is over (master/upgrade.h); at a start, once the health checks
 * have had a first round, or its checks' timeouts have passed
 * (first_round_until), as Envoy starts its listeners once its clusters have
 * initialised, their first active health checks included. */
static bool workers_may_start(const struct ism_master *m, uint64_t now)
{
	bool settled = ism_health_settled(m->health);

	return ism_upgrade_may_start(&m->up, settled, now) &&
	       (settled || now >= m->first_round_until);
}

/* The deferred workers start, unless a reload that replaced the set
 * started it meanwhile. */
static void start_deferred(struct ism_master *m)
{
	m->deferred = false;
	if (m->first_round_until != 0 && !ism_health_settled(m->health))
		ism_warn("health checks: not every endpoint had a first result by its timeout; "
			 "the workers start");
	else if (m->first_round_until != 0)
		ism_notice("health checks: first round over; the workers start");
	if (m->n_workers + m->owed == 0 &&
	    start_workers(m, worker_count(ism_shm_current(&m->shm))) < 0)
		start_stop(m, "fork failed");
	ism_master_notify_ready(m);
}

static void master_unbind(struct ism_master *m);

static int master_loop(struct ism_master *m)
{
	uint64_t last_reclaim = 0;

	for (;;) {
		struct pollfd pfd[MASTER_POLLFDS];
		nfds_t n = 0, nctl, ndns;
		uint64_t now = ism_now_ms();
		int ret;

		if (m->stopping && live_workers(m) == 0) {
			if (!ism_reload_busy(m))
				return 0;
			/* Nothing serves any more: a load still running (a slow
			 * key set or DNS answer) could only be refused now, and
			 * the stop does not wait for it. Its thread uses what a
			 * normal exit frees, so the process ends here, having
			 * given up its pid file, control socket and ports. */
			ism_notice("stopped (the reload in progress abandoned)");
			master_unbind(m);
			fflush(NULL);
			_exit(0);
		}
		if (m->stopping) {
			if (now >= m->stop_deadline) {
				if (m->stop_deadline > 0)
					ism_warn("drain time over: killing %d workers",
						 live_workers(m));
				signal_workers(m, SIGKILL);
				m->stop_deadline = now + STOP_GRACE_MS;
			}
		}
		pfd[n++] = (struct pollfd){.fd = m->sfd, .events = POLLIN};
		pfd[n++] = (struct pollfd){.fd = ism_health_fd(m->health), .events = POLLIN};
		pfd[n++] = (struct pollfd){.fd = now >= m->loads_due ? m->notify_fd : -1,
					   .events = POLLIN};
		pfd[n++] = (struct pollfd){.fd = ism_reload_fd(m), .events = POLLIN};
		nctl = (nfds_t)ism_ctl_pollfds(m->ctl, pfd + n, ISM_CTL_POLLFDS);
		n += nctl;
		ndns = (nfds_t)ism_resolver_pollfds(m->dns, pfd + n, ISM_RESOLVER_POLLFDS);
		n += ndns;
		ret = poll_open(pfd, n, m->stopping ? STOP_POLL_MS : next_timeout(m, now));
		if (ret < 0 && errno != EINTR) {
			ism_err("poll: %s", strerror(errno));
			return 1;
		}
		now = ism_now_ms();
		if (pfd[0].revents)
			handle_signals(m);
		if (pfd[3].revents)
			ism_reload_run(m);
		/* Not while a reload warms its new endpoints' checks: its
		 * commit takes the table then. */
		if (m->health_retry_at != 0 && now >= m->health_retry_at && !ism_reload_busy(m))
			health_take(m, ism_shm_current(&m->shm));
		ism_health_run(m->health, now);
		if (pfd[2].revents) {
			uint64_t v;

			if (read(m->notify_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
				ism_warn("notify: %s", strerror(errno));
		}
		update_lbstate(m, now);
		/* Woken by the eventfd: not again before the pace allows. */
		if (pfd[2].revents && m->loads_due < now + LOADS_PACE_MS)
			m->loads_due = now + LOADS_PACE_MS;
		kill_hung(m, now);
		ism_ctl_run(m->ctl, pfd + 4, (int)nctl);
		ism_upgrade_due(m, ism_now_ms());
		ism_resolver_run(m->dns, pfd + 4 + nctl, (int)ndns, now);
		ism_reload_warm(m, ism_now_ms());
		dns_publish(m, now);
		heal_publish(m);
		jwks_refresh(m, now);
		if (m->deferred && !m->stopping && workers_may_start(m, now))
			start_deferred(m);
		/* The old workers drain once a new one serves (not once forked:
		 * readiness, and the connections meanwhile, stay theirs). */
		ism_upgrade_step(&m->up,
				 (!m->deferred && ism_master_workers_serve(m)) || m->stopping, now);
		if (!m->stopping)
			respawn_due(m, now);
		start_owed_due(m, now);
		retire_replaced(m, now);
		retire_overdue(m, now);
		watch_check(m, now);
		tickets_rotate(m, now);
		if (now - last_reclaim >= HOUSEKEEP_MS) {
			if (ism_shm_gen_reclaim_with(&m->shm, counts_to_current, m))
				ism_shm_ep_sweep(&m->shm);
			last_reclaim = now;
		}
	}
}

void ism_master_signal_set(sigset_t *set)
{
	sigemptyset(set);
	sigaddset(set, SIGHUP);
	sigaddset(set, SIGTERM);
	sigaddset(set, SIGINT);
	sigaddset(set, SIGCHLD);
	sigaddset(set, SIGUSR1);
	sigaddset(set, SIGUSR2);
}

static int setup_signals(struct ism_master *m)
{
	sigset_t set;

	ism_master_signal_set(&set);
	if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
		return -errno;
	signal(SIGPIPE, SIG_IGN);
	m->sfd = signalfd(-1, &set, SFD_NONBLOCK | SFD_CLOEXEC);
	return m->sfd < 0 ? -errno : 0;
}

/* TLS runs in user space. Says whether the kernel would offer kTLS (the "tls"
 * upper-layer protocol), which this release does not use yet. */
static void log_ktls(const struct ism_table *t)
{
	int tls = t->mesh.n_certs > 0;

	for (uint32_t l = 0; l < t->n_listeners; l++)
		tls |= t->listeners[l].n_tls > 0;
	for (uint32_t c = 0; c < t->n_clusters; c++)
		tls |= t->clusters[c].tls.mode != ISM_TLS_NONE;
	if (!tls)
		return;
	ism_notice("TLS: OpenSSL %s in user space (kernel kTLS: %s)",
		   OpenSSL_version(OPENSSL_VERSION_STRING),
		   ism_build_ktls_offered() ? "offered, not used by this release" : "not offered");
}

/* spec.pidFile, when set, is kept for the master's life; another live isthmus
 * naming itself in it refuses the start. 0 or -errno (logged). */
static int pid_file_claim(struct ism_master *m, const struct ism_table *t)
{
	pid_t other;

	if (t->pid_file.len == 0)
		return 0;
	if (ism_runfile_pid_check(t->pid_file.p, &other) < 0) {
		ism_err("pid file %s: isthmus already runs as pid %d; not started", t->pid_file.p,
			(int)other);
		return -EEXIST;
	}
	m->pid_file = strdup(t->pid_file.p);
	if (m->pid_file == NULL) {
		ism_err("out of memory");
		return -ENOMEM;
	}
	return 0;
}

/* What the start takes of t for good (start_only_fields). */
static int start_fields_keep(struct ism_master *m, const struct ism_table *t)
{
	m->start_ctl = strdup(t->control_socket.p);
	if (m->start_ctl == NULL) {
		ism_err("out of memory");
		return -ENOMEM;
	}
	memcpy(&m->start_admin, &t->admin_addr, sizeof(m->start_admin));
	m->start_admin_len = t->admin_addrlen;
	return 0;
}

/* What the master keeps from start to stop, whatever the configuration: the
 * shared memory, the health checker and the DNS resolver. 0, or -errno
 * (logged) with nothing left to undo. */
static int master_open(struct ism_master *m)
{
	const char *what = NULL;
	int ret = ism_tls_warm(&what);

	if (ret < 0) {
		ism_err("OpenSSL: %s: out of memory", what);
		return ret;
	}
	ret = ism_shm_create(&m->shm, GEN_ARENA_SIZE);
	if (ret < 0) {
		ism_err("shared memory: %s", strerror(-ret));
		goto out;
	}
	ret = ism_health_create(&m->shm, &m->health);
	if (ret < 0) {
		ism_err("health checker: %s", strerror(-ret));
		goto out_shm;
	}
	ret = ism_resolver_create(&m->events, &m->dns);
	if (ret < 0) {
		ism_err("dns resolver: %s", strerror(-ret));
		goto out_health;
	}
	return 0;

out_health:
	ism_health_destroy(m->health);
out_shm:
	ism_shm_destroy(&m->shm);
out:
	return ret;
}

static void master_close(struct ism_master *m)
{
	ism_resolver_destroy(m->dns);
	ism_health_destroy(m->health);
	ism_shm_destroy(&m->shm);
}

/* The control socket, the admin listener and t's listeners bound, then the
 * pid file written. 0, or < 0 (logged where the callee does not) with what was
 * done left to master_unbind; *failed: a listener that could not be bound. */
static int master_bind(struct ism_master *m, const struct ism_table *t,
		       const struct ism_listener **failed)
{
	int ret;

	/* The control socket and the admin listener first: once traffic is
	 * accepted, readiness and metrics answer too. */
	*failed = NULL;
	ret = ism_ctl_create(m, t, &m->ctl);
	if (ret < 0)
		return ret;
	m->listen_fds = listen_sockets(t, NULL, NULL, &m->up, true, &ret, failed);
	if (m->listen_fds == NULL)
		return ret;
	m->n_listen = (int)t->n_listeners;
	/* Written once everything is bound: the file names a master that serves. */
	if (m->pid_file != NULL) {
		char bad[PATH_MAX], why[PATH_MAX + 128];

		ret = ism_runfile_pid_write(m->pid_file, bad, sizeof(bad));
		if (ret < 0) {
			ism_err("pid file %s: %s; not started", m->pid_file,
				ism_runfile_why(ret, bad, why, sizeof(why)));
			return ret;
		}
	}
	ism_upgrade_leftovers(&m->up, t->control_socket.p, m->pid_file);
	ism_upgrade_adopted(&m->up);
	return 0;
}

static void master_unbind(struct ism_master *m)
{
	/* An upgrade's new master that could not start leaves it to the wait
	 * mode: the same process supervises the old workers on. */
	if (m->pid_file != NULL && m->up.n_listen == 0)
		ism_runfile_pid_remove(m->pid_file);
	ism_ctl_destroy(m->ctl);
	for (int i = 0; i < m->n_listen; i++)
		if (m->listen_fds[i] >= 0)
			close(m->listen_fds[i]);
	free(m->listen_fds);
}

/* Starts the workers and runs the master's loop until isthmus stops: the exit
 * status. */
static int master_serve(struct ism_master *m, const struct ism_table *t)
{
	bool upgrade = ism_upgrade_settling(&m->up);
	uint64_t now = ism_now_ms();
	int status;

	/* Upgraded: the old workers serve until the health checks have had a
	 * first round (master_loop starts these then), counted from now. At a
	 * start the workers, and readiness, wait for that round too, bounded
	 * by its checks' timeouts; at once without checks. */
	ism_upgrade_settle(&m->up, now);
	m->first_round_until = upgrade ? 0 : ism_master_first_round_until(m);
	m->deferred = !workers_may_start(m, now);
	if (!m->deferred && start_workers(m, worker_count(t)) < 0)
		start_stop(m, "fork failed");
	log_ktls(ism_shm_current(&m->shm));
	if (m->deferred && upgrade)
		ism_notice("isthmus started: generation %llu; its workers start after a first "
			   "round of health checks, the old ones serving meanwhile",
			   (unsigned long long)m->gen);
	else if (m->deferred)
		ism_notice("isthmus started: generation %llu; its workers start after a first "
			   "round of health checks (%llu ms at most)",
			   (unsigned long long)m->gen,
			   (unsigned long long)(m->first_round_until - now));
	else
		ism_notice("isthmus started: generation %llu, %d workers",
			   (unsigned long long)m->gen, m->n_workers);
	if (!m->deferred || upgrade)
		ism_master_notify_ready(m);
	status = master_loop(m);
	ism_notice("stopped");
	return status;
}

/* Frees m, with what it still holds once master_close has run. */
static void master_free(struct ism_master *m)
{
	if (m->notify_fd >= 0)
		close(m->notify_fd);
	ism_reload_fini(m);
	ism_upgrade_adopted(&m->up);
	ism_jwks_cache_use(NULL);
	ism_jwks_cache_free(m->jwks);
	free(m->next_sweep);
	ism_events_free(&m->events);
	watch_free(m);
	free(m->conf_text);
	free(m->pid_file);
	free(m->start_ctl);
	free(m);
}

int ism_master_run(const struct ism_master_opts *opts)
{
	struct ism_master *m = calloc(1, sizeof(*m));
	struct ism_diags *d = calloc(1, sizeof(*d));
	const struct ism_table *t;
	const struct ism_listener *unbound = NULL;
	int ret, status = 1;
	bool served = false;

	/* Nothing to undo yet: the descriptors below are not set (0 would be
	 * closed on the way out). */
	if (m == NULL || d == NULL) {
		ism_err("out of memory");
		free(d);
		free(m);
		return 1;
	}
	ism_log_set_role("master");
	ism_upgrade_init(&m->up, opts->argv);
	m->conf_path = opts->conf_path;
	m->debug = opts->debug;
	m->sfd = -1;
	m->notify_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	ret = ism_reload_init(m);
	if (m->notify_fd < 0 || ret < 0) {
		ism_err("eventfd: %s", strerror(m->notify_fd < 0 ? errno : -ret));
		goto out_free;
	}
	ism_diags_init(d);
	/* Key sets are fetched from the first load on (conf/authn.c's source). */
	m->jwks = ism_jwks_cache_new(jwks_refresh_ms());
	if (m->jwks == NULL) {
		ism_err("out of memory");
		goto out_free;
	}
	ism_jwks_cache_use(m->jwks);
	if (master_open(m) < 0)
		goto out_free;
	/* Upgraded: the keys the old master made, so that sessions resume, and
	 * its answers, so that the load need not ask again before it serves. */
	ism_upgrade_tickets(&m->up, &m->shm);
	ism_upgrade_answers(&m->up, m->dns, m->jwks);
	tickets_rotate(m, ism_now_ms());
	ret = ism_master_load(m, d);
	m->jwks_next = ism_jwks_next(m->jwks, ism_now_ms(), 0, false, false);
	ism_diags_print(stderr, d);
	if (ret < 0) {
		ism_err("%s: not started", m->conf_path);
		goto out_close;
	}
	t = ism_shm_current(&m->shm);
	/* Upgraded: what the old master's control socket set of the endpoints. */
	ism_upgrade_endpoints(&m->up, &m->shm);
	/* Before anything is bound: a second isthmus on the same file must not
	 * take the control socket of the first away. */
	if (pid_file_claim(m, t) < 0 || start_fields_keep(m, t) < 0)
		goto out_close;
	if (setup_signals(m) < 0) {
		ism_err("signals: %s", strerror(errno));
		goto out_close;
	}
	ret = master_bind(m, t, &unbound);
	if (ret < 0) {
		/* each cause is said, even one the callee did not log */
		if (unbound != NULL)
			start_unbound(m, unbound, ret, d);
		else
			ism_err("%s: not started: %s", m->conf_path, strerror(-ret));
		goto out_unbind;
	}
	status = master_serve(m, t);
	served = true;
out_unbind:
	master_unbind(m);
	if (m->sfd >= 0)
		close(m->sfd);
out_close:
	master_close(m);
out_free:
	/* An upgrade's new binary that could not start: the old workers serve
	 * on, and the pid file names their master still. */
	if (!served && ism_upgrade_settling(&m->up)) {
		char bad[PATH_MAX];

		if (m->pid_file != NULL)
			ism_runfile_pid_write(m->pid_file, bad, sizeof(bad));
		status = ism_upgrade_wait(&m->up, m->conf_path);
		if (m->pid_file != NULL)
			ism_runfile_pid_remove(m->pid_file);
	}
	master_free(m);
	free(d);
	return status;
}
