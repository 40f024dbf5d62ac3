/* SPDX-License-Identifier: Apache-2.0 */
/* /proc readings: see master/procstat.h. */
#include "master/procstat.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Fields of /proc/PID/stat counted from the state (field 3), the first after
 * the command name: utime is field 14, stime 15, vsize 23, rss 24 (proc(5)). */
#define F_UTIME 11
#define F_STIME 12
#define F_VSIZE 20
#define F_RSS	21

int ism_procstat_parse(const char *text, size_t len, long ticks_per_s, long page_size,
		       struct ism_procstat *out)
{
	unsigned long long v[F_RSS + 1];
	const char *p = NULL, *end = text + len;
	int n = 0;

	/* The command name ends at the last ')': it may hold one itself. */
	for (const char *q = text; q < end; q++)
		if (*q == ')')
			p = q + 1;
	if (p == NULL || ticks_per_s <= 0 || page_size <= 0)
		return -EINVAL;
	while (n <= F_RSS) {
		char *e;

		while (p < end && *p == ' ')
			p++;
		if (p >= end)
			return -EINVAL;
		if (n == 0) { /* the state: one letter */
			v[n++] = 0;
			p++;
			continue;
		}
		if (*p < '0' || *p > '9') {
			/* Signed fields (priority, nice, ...) are not read: skip one. */
			if (*p != '-')
				return -EINVAL;
			while (p < end && *p != ' ')
				p++;
			v[n++] = 0;
			continue;
		}
		errno = 0;
		v[n++] = strtoull(p, &e, 10);
		if (errno != 0 || e > end || (e < end && *e != ' ' && *e != '\n'))
			return -EINVAL;
		p = e;
	}
	out->cpu_s = (double)(v[F_UTIME] + v[F_STIME]) / (double)ticks_per_s;
	out->vsize_bytes = v[F_VSIZE];
	out->rss_bytes = v[F_RSS] * (unsigned long long)page_size;
	return 0;
}

int ism_procstat_read(pid_t pid, struct ism_procstat *out)
{
	char path[64], buf[1024];
	ssize_t n;
	int fd, err;

	if (pid == 0)
		snprintf(path, sizeof(path), "/proc/self/stat");
	else
		snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	err = errno;
	close(fd);
	if (n <= 0)
		return n < 0 ? -err : -EINVAL;
	buf[n] = '\0';
	return ism_procstat_parse(buf, (size_t)n, sysconf(_SC_CLK_TCK), sysconf(_SC_PAGESIZE), out);
}

int ism_procstat_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *de;
	int n = 0;

	if (d == NULL)
		return -errno;
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n - 1; /* the directory's own descriptor */
}
