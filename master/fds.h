/* SPDX-License-Identifier: Apache-2.0 */
/* Private to master/: open files. A worker needs two descriptors per client
 * connection (the client's and its upstream's, as HAProxy counts its maxsock)
 * and ISM_FDS_RESERVE plus one per listener besides (stdio, the ring, the
 * signalfd, the eventfd, the master's socketpair, the access log). Workers
 * inherit the master's RLIMIT_NOFILE when they are forked: the master raises
 * it at start, and a reload must fit the limit the workers already have.
 * Master only. */
#ifndef ISM_MASTER_FDS_H
#define ISM_MASTER_FDS_H

#include <stdint.h>

#define ISM_FDS_PER_CONN    2
#define ISM_FDS_RESERVE	    64
#define ISM_FDS_DEFAULT_MAX 16384 /* maxConnectionsPerWorker when the file sets none */

enum ism_fds_raise {
	ISM_FDS_KEEP = 0, /* a reload: the limit stays (the workers keep theirs) */
	ISM_FDS_RAISE,	  /* the start: soft up to hard, and hard too for an explicit value */
};

struct ism_fds_plan {
	uint32_t max_conn; /* maxConnectionsPerWorker to use */
	uint64_t need;	   /* descriptors a worker needs for it (or for the value refused) */
	uint64_t soft;	   /* RLIMIT_NOFILE to have: the current one when nothing changes */
	uint64_t hard;
};

/* Descriptors a worker needs for max_conn connections and n_listeners listeners. */
uint64_t ism_fds_need(uint32_t max_conn, uint32_t n_listeners);

/* Plans the limit from the current one (soft, hard). explicit_max is the file's
 * maxConnectionsPerWorker (0: none). Without one, the default is
 * ISM_FDS_DEFAULT_MAX, or what the hard limit allows when it is lower (the
 * hard limit is the administrator's: it is not raised for a default). With
 * one, the soft limit (and, at the start, the hard one: a privileged master
 * may) is raised to what it needs. Returns 0 and *p, or -EMFILE when the value
 * cannot be honoured (or the limit leaves no room for one connection), with
 * p->need and the limit in p. Pure. */
int ism_fds_plan(uint32_t explicit_max, uint32_t n_listeners, uint64_t soft, uint64_t hard,
		 enum ism_fds_raise raise, struct ism_fds_plan *p);

#endif
