/* SPDX-License-Identifier: Apache-2.0 */
/* The master process: compiles the configuration into shared memory, binds the
 * listeners, forks and supervises the workers, runs the health checks, reloads
 * on SIGHUP and stops gracefully on SIGTERM. It never proxies a request. */
#ifndef ISM_MASTER_MASTER_H
#define ISM_MASTER_MASTER_H

#include <stdbool.h>

struct ism_master_opts {
	const char *conf_path;
	int debug;	   /* -d: debug logging, whatever spec.logging.level says */
	char *const *argv; /* the command line, executed again by an upgrade */
};

/* Runs the master until it stops. Returns the process exit status. */
int ism_master_run(const struct ism_master_opts *opts);

/* `isthmus -c`: 0 when the file would start here, else 1 with the errors
 * printed. portable: for another machine (or root) than this one: a missing
 * spec.user or spec.group, and an access log the workers cannot write, are
 * warnings. */
int ism_master_check(const char *conf_path, bool portable);

#endif
