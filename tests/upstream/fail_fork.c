// SPDX-License-Identifier: Apache-2.0
/* fail_fork.so: an LD_PRELOAD library for the integration tests. While the
 * file ISM_FAIL_FORK names exists, fork() fails with EAGAIN, as a process
 * limit (RLIMIT_NPROC, a cgroup's pids.max) makes it fail, so a test can refuse
 * the master's worker forks at a moment it chooses; root ignores the limits
 * that would do it for real. Nothing else changes. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stdlib.h>
#include <sys/types.h>
#include <unistd.h>

pid_t fork(void)
{
	static pid_t (*real_fork)(void);
	const char *flag = getenv("ISM_FAIL_FORK");

	if (flag != NULL && access(flag, F_OK) == 0) {
		errno = EAGAIN;
		return -1;
	}
	if (real_fork == NULL)
		*(void **)&real_fork = dlsym(RTLD_NEXT, "fork");
	if (real_fork == NULL) {
		errno = ENOSYS;
		return -1;
	}
	return real_fork();
}
