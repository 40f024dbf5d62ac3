/* SPDX-License-Identifier: Apache-2.0 */
/* Private to master/: a process's CPU time and memory as Linux's /proc tells
 * them, for the process_* metrics (the master) and the per-worker ones. */
#ifndef ISM_MASTER_PROCSTAT_H
#define ISM_MASTER_PROCSTAT_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct ism_procstat {
	double cpu_s;	      /* user + system time */
	uint64_t rss_bytes;   /* resident memory */
	uint64_t vsize_bytes; /* virtual memory */
};

/* Parses the text of /proc/PID/stat (len bytes; the command name in
 * parentheses may hold anything, parentheses and spaces too), with the
 * clock's ticks per second and the page size. Pure. 0, or -EINVAL when the
 * text is not such a line. */
int ism_procstat_parse(const char *text, size_t len, long ticks_per_s, long page_size,
		       struct ism_procstat *out);
/* Reads /proc/PID/stat of pid (0: this process). 0 or -errno. */
int ism_procstat_read(pid_t pid, struct ism_procstat *out);
/* The descriptors this process has open (the entries of /proc/self/fd, the
 * one reading them left out), or -errno. */
int ism_procstat_open_fds(void);

#endif
