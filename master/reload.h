/* SPDX-License-Identifier: Apache-2.0 */
/* Private to master/: reloads off the loop.
 *
 * A reload (SIGHUP, `isthmusctl reload`) or a certificate rotation reads,
 * parses and validates the file (ism_conf_load_buf: YAML tree and model, no
 * state shared with the loop) on a thread of its own, while the loop goes on
 * answering readiness probes, scrapes and the control socket, running health
 * checks and restarting workers. When the thread is done the loop compiles and
 * publishes the result (ism_master_publish) as at the start, once the DNS
 * names it adds have had their first answers (or spec.dns.timeout passed),
 * and, compiled, once the endpoints it adds to services with an active health
 * check have had their first checks (or the checks' timeouts passed), as
 * Envoy warms a cluster, its first health checks included, before it serves.
 *
 * A thread, not a child process: the model it builds is a graph of pointers
 * that a child could not hand back without serialising it, and a parse in the
 * child to validate, then again on the loop to publish, would block the loop
 * as long as before. What the thread calls touches no global state (conf/
 * keeps none; libyaml and PCRE2 keep their state in the objects they are
 * given; OpenSSL is thread-safe, and fork() waits for its calls made here
 * (the certificate checks, the key sets' parse and https fetch: between
 * ism_conf_ssl_enter and _leave, conf/conf.h), so that a worker forked
 * meanwhile cannot inherit a held lock; the log writes each line with one
 * write(2)).
 *
 * One load runs at a time. A reload of the file asked while one runs is queued
 * to run next, because the file may have changed since the running one read
 * it; one is queued at most: later asks join it and get its report. Master
 * only, on the loop. */
#ifndef ISM_MASTER_RELOAD_H
#define ISM_MASTER_RELOAD_H

#include <stdbool.h>
#include <stdint.h>

#include "master/reply.h"

struct ism_master;

enum ism_load_source {
	ISM_LOAD_FILE = 0, /* the file, read again: SIGHUP, `isthmusctl reload` */
	ISM_LOAD_TEXT,	   /* the running text again, because certificate files changed */
	ISM_LOAD_DNS,	   /* the running text again, because a name's answer changed */
	ISM_LOAD_JWKS,	   /* the key sets fetched again; the running text when one changed */
	/* the running text again, because a worker died holding part of the
	 * clusters' counts of the generation (a new one starts from what the
	 * living workers hold) */
	ISM_LOAD_HEAL,
};

/* 0 or -errno (the eventfd). */
int ism_reload_init(struct ism_master *m);
/* Waits for a running load and frees what it made. */
void ism_reload_fini(struct ism_master *m);
/* Asks for a load. Returns the ticket the report of the load that serves it
 * will carry (ism_ctl_reload_done), or 0 when it is refused at once (the
 * master is stopping, or a rotation or a DNS change while a load runs: looked at again after
 * it): the reason is logged and, for a reload, appended to why (may be NULL). */
uint64_t ism_reload_request(struct ism_master *m, enum ism_load_source src, struct ism_reply *why);
/* The descriptor the loop polls for POLLIN; then it calls ism_reload_run, which
 * publishes the load that finished, reports it and starts the queued one. */
int ism_reload_fd(const struct ism_master *m);
void ism_reload_run(struct ism_master *m);
/* A reload's model whose new DNS names have no first answer yet waits for
 * them, the running generation serving meanwhile, at most spec.dns.timeout;
 * then its generation, compiled, waits for the first health checks of its
 * new checked endpoints, at most their timeouts and a margin: the loop calls
 * this each turn after the resolver and the health checks ran, and bounds
 * its wait with ism_reload_timeout_ms (at most cap). */
void ism_reload_warm(struct ism_master *m, uint64_t now);
int ism_reload_timeout_ms(const struct ism_master *m, uint64_t now, int cap);
/* A load is running or warming. */
bool ism_reload_busy(const struct ism_master *m);
/* Whether another reload waits for the one under way. */
bool ism_reload_queued(const struct ism_master *m);

#endif
