/* SPDX-License-Identifier: Apache-2.0 */
/* A binary upgrade without a refused connection, as HAProxy's master-worker
 * reload: on SIGUSR2 the master checks the file with the binary now at its
 * path (a package upgrade replaced it), then executes that binary in its own
 * process, handing it the listening sockets and its workers. The new master
 * (the same pid: systemd, the pid file and the workers' parent stay) loads
 * the file, adopts the sockets, starts its workers once its health checks
 * have had a first round, and only then lets the old workers drain: they
 * served all along, and a connection never met a closed port. */
#ifndef ISM_MASTER_UPGRADE_H
#define ISM_MASTER_UPGRADE_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "shm/shm.h"

struct ism_master;
struct ism_listener;
struct ism_resolver;
struct ism_jwks_cache;

enum ism_upgrade_state {
	ISM_UPGRADE_NONE = 0, /* no upgrade under way */
	ISM_UPGRADE_SETTLING, /* executed: the old workers serve while the health checks
				 have their first round */
	ISM_UPGRADE_DRAINING, /* the new workers serve; the old ones drain */
};

/* An old worker handed over: its pid and the master's end of its socketpair
 * (closing it tells the worker to drain). */
struct ism_heir {
	pid_t pid;
	int fd;
};

struct ism_upgrade {
	uint8_t state;	    /* enum ism_upgrade_state; other modules ask ism_upgrade_settling */
	char exe[PATH_MAX]; /* the binary's path, as argv[0] named it at the start */
	char *const *argv;  /* the command line, executed again as it was */
	int *listen;	    /* listening sockets handed over: the listeners', the control
			       socket's, the admin listener's */
	bool *taken;	    /* which of them the new master took a copy of */
	bool *is_ctl;	    /* which of them are the control socket and admin listener */
	int n_listen;
	struct ism_heir heirs[ISM_WORKER_SLOTS];
	int n_heirs;
	uint32_t drain_ms; /* the old workers' drain time */
	/* memfds handed over (-1: none), kept for a retry from the wait mode:
	 * the session-ticket keys, so that sessions resume across the upgrade;
	 * the state: what the control socket set of the endpoints, the DNS
	 * answers, the JWT key sets (text records, master/upgrade.c) */
	int tickets_fd;
	int state_fd;
	uint64_t exec_at;	 /* monotonic: requested, executed at the latest then (0: not) */
	uint64_t settle_until;	 /* monotonic: the first round is not waited for longer */
	uint64_t drain_deadline; /* monotonic: old workers still there are killed */
};

/* At the start: the path and command line, and what an upgrading master
 * handed over (its environment, then cleared). */
void ism_upgrade_init(struct ism_upgrade *u, char *const *argv);
/* The ticket keys handed over become shm's; false when none were. */
bool ism_upgrade_tickets(const struct ism_upgrade *u, struct ism_shm *shm);
/* Before the file is loaded: the DNS answers and the JWT key sets the old
 * master had, so that the first load has them as a reload would (with the
 * servers or an issuer unreachable at the upgrade, the routes went on
 * without), asked again as at a reload. */
void ism_upgrade_answers(const struct ism_upgrade *u, struct ism_resolver *dns,
			 struct ism_jwks_cache *jwks);
/* Once the file is loaded: the endpoints' states and weights that the old
 * master's control socket had set, set again on the endpoints of the same
 * key (an endpoint the file no longer has is passed over). */
void ism_upgrade_endpoints(const struct ism_upgrade *u, struct ism_shm *shm);
/* A copy of the handed-over socket listening at sa (a unix socket: at its
 * path); -1 when none. */
int ism_upgrade_adopt_addr(struct ism_upgrade *u, const struct sockaddr *sa, socklen_t len);
/* ism_upgrade_adopt_addr for the address l listens at, logged. */
int ism_upgrade_adopt(struct ism_upgrade *u, const struct ism_listener *l);
/* Once bound: the control socket and the pid file the old master had where
 * the file names others now (control_socket, pid_file: NULL for none) are
 * removed, as a stop would have removed them. */
void ism_upgrade_leftovers(const struct ism_upgrade *u, const char *control_socket,
			   const char *pid_file);
/* The start succeeded (the listeners hold their copies), or the master ends:
 * what was handed over is closed. */
void ism_upgrade_adopted(struct ism_upgrade *u);
/* The file is loaded and the health checks run: the settling's bound counts
 * from now. */
void ism_upgrade_settle(struct ism_upgrade *u, uint64_t now);
/* Whether the new master is settling: executed, its workers not yet serving,
 * the old ones serving meanwhile. */
bool ism_upgrade_settling(const struct ism_upgrade *u);
/* Whether the workers may start now (no upgrade, or its settling is over);
 * once they have, ism_upgrade_step lets the old ones go. */
bool ism_upgrade_may_start(const struct ism_upgrade *u, bool health_settled, uint64_t now);
/* Advances the upgrade: the old workers drain once the new ones serve
 * (started), and are killed past their drain time. */
void ism_upgrade_step(struct ism_upgrade *u, bool started, uint64_t now);
/* sig to the old workers (SIGKILL past the stop's drain time, SIGUSR1 to
 * reopen the access log). */
void ism_upgrade_signal_heirs(const struct ism_upgrade *u, int sig);
/* Whether pid was an old worker (reaped now, with its wait status). */
bool ism_upgrade_reaped(struct ism_upgrade *u, pid_t pid, int status);
/* Milliseconds until the upgrade needs a turn (-1: none); started: the new
 * workers have been started (ism_upgrade_step waits for one to serve). */
int ism_upgrade_timeout_ms(const struct ism_upgrade *u, bool started, uint64_t now);
/* SIGUSR2: once a reload under way is over, the control socket and the
 * admin listener stop accepting; once the clients being answered are
 * (QUIESCE_MS at most), ism_upgrade_due executes the binary. */
void ism_upgrade_request(struct ism_master *m, uint64_t now);
/* Every turn of the master's loop: the requested upgrade, when it is due. */
void ism_upgrade_due(struct ism_master *m, uint64_t now);
/* Checks the file with the binary at the path, then executes it. Returns
 * only when the upgrade did not happen (logged). */
void ism_upgrade_exec(struct ism_master *m);
/* The new master could not start (u SETTLING): HAProxy's wait mode. The old
 * workers serve on, supervised; SIGUSR2 (or SIGHUP) tries the upgrade again
 * with what was handed over, SIGTERM drains them and ends. The exit status. */
int ism_upgrade_wait(struct ism_upgrade *u, const char *conf);

#endif
