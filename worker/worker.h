/* SPDX-License-Identifier: Apache-2.0 */
/* A worker process: one io_uring loop that accepts, parses, routes and proxies.
 *
 * Called in the child right after fork(). Single-threaded; shares nothing with
 * other workers but the shared region. Stops accepting and drains on SIGTERM or
 * when its master goes away (EOF on master_fd), then returns. */
#ifndef ISM_WORKER_WORKER_H
#define ISM_WORKER_WORKER_H

#include <stdbool.h>
#include <stdint.h>

#include "shm/shm.h"

struct ism_worker_args {
	struct ism_shm *shm;
	int index;	       /* worker slot in the shared region */
	const int *listen_fds; /* one per table listener, same order */
	int n_listen;
	int master_fd;	/* our end of the socketpair with the master */
	int notify_fd;	/* eventfd: written to wake the master after an ejection */
	int recv_mshot; /* the master's ism_worker_ring_probe: 0, or -errno (single receives) */
};

/* Runs the worker loop. Returns the process exit status (0 after a clean drain). */
int ism_worker_main(const struct ism_worker_args *args);

/* What the kernel offers a worker's ring, tried on a small ring made for the
 * purpose (isthmus -vv; the master, once, for its workers). Any process. */
struct ism_ring_probe {
	int ring;	   /* 0, or -errno: no io_uring at all */
	bool flags;	   /* the flags a worker asks for first are taken: SUBMIT_ALL,
			      COOP_TASKRUN, SINGLE_ISSUER, DEFER_TASKRUN (else a plain ring) */
	int buf_ring;	   /* 0, or -errno: no provided buffer ring, which workers need */
	int recv_mshot;	   /* 0, or -errno: no multishot receive (single ones instead) */
	uint32_t features; /* the IORING_FEAT_* the kernel reports */
};

void ism_worker_ring_probe(struct ism_ring_probe *p);

#endif
