/* SPDX-License-Identifier: Apache-2.0 */
/* Private to master/: the master's one per-process context. */
#ifndef ISM_MASTER_MASTER_T_H
#define ISM_MASTER_MASTER_T_H

#include <pthread.h>
#include <signal.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "conf/conf.h"
#include "lib/version.h"
#include "master/events.h"
#include "master/reply.h"
#include "master/upgrade.h"
#include "shm/shm.h"

struct ism_jwks_cache;

struct ism_health;
struct ism_ctl;
struct ism_resolver;

struct ism_wslot {
	pid_t pid; /* 0: not running */
	int fd;	   /* master's end of the socketpair */
	uint64_t started_ms;
	uint64_t respawn_at;	  /* monotonic ms; 0: none scheduled */
	uint32_t restarts;	  /* consecutive early deaths */
	uint8_t active;		  /* in the current set: restarted when it dies */
	uint8_t retiring;	  /* of a set replaced by a reload: draining, not restarted */
	uint8_t replaced;	  /* ... and still serving: told to drain once the new set serves */
	uint8_t hung;		  /* killed for a stale heartbeat, not reaped yet */
	uint64_t retire_deadline; /* monotonic: killed if still draining then */
	uint64_t requests_base;	  /* the slot's request count when it started: the
				   * count stays whole for the metrics */
};

enum ism_loader_state {
	ISM_LOADER_IDLE = 0,
	ISM_LOADER_RUNNING, /* its thread reads, parses and validates */
	ISM_LOADER_WARMING, /* loaded; its new DNS names are asked before it is published */
	/* compiled (ism_loader.built); its new endpoints with an active
	 * health check have their first checks before it is published */
	ISM_LOADER_CHECKING,
};

/* A generation compiled and not published yet (ism_master_build). */
struct ism_build {
	int slot;		   /* its generation slot; -1: none */
	const struct ism_table *t; /* in the slot's arena */
	struct ism_conf *conf;	   /* the model it was compiled from (owned) */
	uid_t uid;		   /* the workers' user and group it names; -1: as is */
	gid_t gid;
};

/* Loads off the loop (master/reload.c). The thread owns what it fills until
 * it signals efd; the loop reads it after joining the thread. */
struct ism_loader {
	enum ism_loader_state state;
	int efd; /* eventfd: the thread is done */
	pthread_t thread;
	uint8_t source;	      /* enum ism_load_source of the running load */
	uint64_t ticket;      /* of the running load */
	uint64_t queued;      /* ticket of the file reload to run next; 0: none */
	uint64_t last_ticket; /* tickets handed out */
	uint64_t started_ms;
	uint64_t warm_until;	/* monotonic: WARMING or CHECKING ends then at the latest */
	uint32_t warm_ms;	/* the wait that deadline allows, for the log */
	struct ism_build built; /* CHECKING: what is published then */
	/* in (ISM_LOAD_TEXT: the master's conf_text, unchanged while a load runs) */
	const char *path;
	const char *text;
	size_t len;
	/* out */
	char *file_text; /* ISM_LOAD_FILE: the file as read, then the running text */
	size_t file_len;
	struct ism_conf *conf;
	struct ism_diags *d;
	int ret;
	/* ISM_LOAD_JWKS: the master's key sets (master/jwks.h); the refresh
	 * found no change (nothing loaded), one failed */
	struct ism_jwks_cache *jwks;
	bool jwks_same, jwks_failed;
};

/* A certificate or key file of the running configuration, as last seen. */
struct ism_watch {
	char *path;
	dev_t dev;
	ino_t ino;
	off_t size;
	int64_t mtime_ns;
	int missing;
};

/* How often a refused heal publish (ism_master.heal_pending) is tried again. */
#define ISM_HEAL_RETRY_MS 1000u

struct ism_master {
	const char *conf_path;
	int debug; /* -d: every process logs at debug level, whatever the file says */
	struct ism_shm shm;
	struct ism_health *health;
	struct ism_ctl *ctl;
	int sfd;
	int *listen_fds;
	int n_listen;
	struct ism_wslot workers[ISM_WORKER_SLOTS];
	int n_workers;		/* workers in the current set */
	int owed;		/* of the current set, not started yet: no slot was free */
	uint64_t owed_retry_at; /* monotonic: after a fork failure, not before */
	uint32_t owed_backoff;	/* ms: the wait after the last failure of a set with no worker */
	uint32_t replaced_drain_ms; /* the drain time of the set a reload replaced */
	int n_slots;		    /* slots ever used: loops over workers go to here */
	uint64_t gen;
	bool reload_refused; /* the last reload of the file was refused (STATUS= says so) */
	uint64_t loaded_ms;  /* wall time of the last successful load */
	char conf_sum[17];   /* FNV-1a 64 of the file loaded, hex */
	int stopping;
	uint64_t stop_deadline;
	uint64_t last_turn;    /* monotonic: the loop's previous turn */
	uint64_t awake_since;  /* monotonic: the loop has turned without a stall since */
	uint64_t worker_hangs; /* workers killed for a stale heartbeat */
	int notify_fd;	       /* eventfd: workers write when they eject an endpoint */
	uid_t run_uid; /* what workers run as, resolved as the table is published; -1: as is */
	gid_t run_gid;
	int recv_mshot;	      /* the kernel's capped multishot receives, probed once: 0 or -errno */
	bool probed;	      /* recv_mshot is known */
	uint64_t epoch;	      /* health epoch the loads were last computed for */
	uint64_t loads_due;   /* monotonic: the loads are recomputed, and the workers'
			       * eventfd is listened to, from then on (LOADS_PACE_MS) */
	uint64_t *next_sweep; /* per cluster of the current table: next outlier sweep */
	uint64_t next_sweep_due; /* earliest of next_sweep */
	/* monotonic: when the health checker tries again to take the current
	 * table's checks, which it could not (memory); 0: it has them */
	uint64_t health_retry_at;
	struct ism_events events;
	char *conf_text; /* the file of the running generation, for certificate reloads */
	size_t conf_len;
	struct ism_watch *watch;
	size_t n_watch;
	uint64_t next_watch;
	struct ism_loader loader;
	struct ism_resolver *dns;  /* the names of DNS ServiceEntries (master/resolve.h) */
	uint64_t dns_next_publish; /* monotonic: a changed answer is not published before */
	/* A worker died holding requests: the running text is published again
	 * (ISM_LOAD_HEAL) once the loader is free, and until a publish
	 * succeeds, every ISM_HEAL_RETRY_MS (heal_after, monotonic) */
	bool heal_pending;
	bool heal_failing; /* the last heal was refused (said once) */
	uint64_t heal_after;
	/* RequestAuthentication key sets fetched (master/jwks.h), and when
	 * they are fetched again (monotonic; 0: none to fetch) */
	struct ism_jwks_cache *jwks;
	uint64_t jwks_next;
	bool dns_publish_failing; /* the last publish for changed answers was refused */
	char *pid_file; /* spec.pidFile at the start (a reload does not move it); NULL: none */
	/* spec.controlSocket and spec.admin.address at the start, which a
	 * reload does not move either (NULL, 0 before the start) */
	char *start_ctl;
	struct sockaddr_storage start_admin;
	socklen_t start_admin_len;
	struct ism_upgrade up; /* a binary upgrade (master/upgrade.h) */
	/* The workers wait for the upgrade's settling, or at the start for a
	 * first round of health checks, until first_round_until at most
	 * (monotonic; 0: the upgrade's own bound) */
	bool deferred;
	uint64_t first_round_until;
};

/* Reads the appliance file (at most ISM_CONF_MAX_FILE bytes, NUL-terminated)
 * into *text; 0, or -errno with the reason in d. Any thread. */
int ism_master_read_file(const char *path, char **text, size_t *len, struct ism_diags *d);
/* Reads, loads, compiles and publishes the file as a new generation, on the
 * loop (the start: nothing to serve yet). 0, or -errno with the reasons in d. */
int ism_master_load(struct ism_master *m, struct ism_diags *d);
/* Compiles a loaded model (freed here) and publishes it as a new generation:
 * new workers where listeners, worker count or log destination change, health
 * checks, the certificate watch. 0, or -errno with the reasons in d; the
 * running generation is untouched on failure. On the loop only. */
int ism_master_publish(struct ism_master *m, struct ism_conf *conf, struct ism_diags *d);
/* ism_master_publish in two steps, for a reload that warms what it compiled
 * before it serves. Build compiles conf (taken) into a generation slot and
 * checks what the start or the reload would refuse of it (the workers' user,
 * their access log, the open-file limit): 0 and *b, or -errno with the
 * reasons in d (conf freed, nothing kept). Commit publishes b (new sockets
 * bound first: a port that cannot be bound refuses it), or drops it: 0, or
 * -errno with the reasons in d. Drop gives up b unpublished: its slot, the
 * endpoint slots only it took and the checks that warmed them. On the loop
 * only. */
int ism_master_build(struct ism_master *m, struct ism_conf *conf, struct ism_build *b,
		     struct ism_diags *d);
int ism_master_commit(struct ism_master *m, struct ism_build *b, struct ism_diags *d);
void ism_master_build_drop(struct ism_master *m, struct ism_build *b);
/* When a first round of health checks (the endpoints waiting for their first
 * result) is waited for at most: their timeouts and a margin (monotonic ms;
 * 0: none waits). */
uint64_t ism_master_first_round_until(const struct ism_master *m);
/* A reload's model, before it is published: the resolver asks its new names.
 * The milliseconds to wait for their first answers at most (its
 * spec.dns.timeout), or 0 when no name is waiting for one. */
uint32_t ism_master_dns_warm(struct ism_master *m, const struct ism_conf *conf);
/* The file's text a load published (the master takes it): `show config`'s
 * checksum and time are of it. */
void ism_master_text_loaded(struct ism_master *m, char *text, size_t len);
/* systemd: RELOADING=1 when a reload begins, READY=1 (with the generation)
 * when it is over and at the start. */
void ism_master_notify_reloading(void);
/* The signals the master handles (blocked, then read from its signalfd). */
void ism_master_signal_set(sigset_t *set);
void ism_master_notify_ready(const struct ism_master *m);

#endif
