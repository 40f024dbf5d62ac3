/* A worker process: one io_uring loop that accepts, parses, routes and proxies.
 *
 * Called in the child right after fork(). Single-threaded; shares nothing with
 * other workers but the shared region. Stops accepting and drains on SIGTERM or
 * when its master goes away (EOF on master_fd), then returns. */
#ifndef ISM_WORKER_WORKER_H
#define ISM_WORKER_WORKER_H

#include "shm/shm.h"

struct ism_worker_args {
	struct ism_shm *shm;
	int index;	       /* worker slot in the shared region */
	const int *listen_fds; /* one per table listener, same order */
	int n_listen;
	int master_fd; /* our end of the socketpair with the master */
	int notify_fd; /* eventfd: written to wake the master after an ejection */
};

/* Runs the worker loop. Returns the process exit status (0 after a clean drain). */
int ism_worker_main(const struct ism_worker_args *args);

#endif
