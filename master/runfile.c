/* SPDX-License-Identifier: Apache-2.0 */
/* Run-time files: see master/runfile.h. */
#include "master/runfile.h"

#include <errno.h>
#include <stdbool.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int ism_runfile_make_parent(const char *path)
{
	char dir[PATH_MAX];
	char *slash;

	if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir))
		return -ENAMETOOLONG;
	slash = strrchr(dir, '/');
	if (slash == NULL || slash == dir)
		return 0;
	*slash = '\0';
	/* Every missing level, as mkdir -p: 0755 whatever the umask (the unit's
	 * is 0027): the control socket's own mode (0660, root:<group>) keeps
	 * others out, and its group must reach it. */
	for (char *p = dir + 1;; p++) {
		bool last = *p == '\0';

		if (*p != '/' && !last)
			continue;
		*p = '\0';
		if (mkdir(dir, 0755) == 0) {
			if (chmod(dir, 0755) < 0)
				return -errno;
		} else if (errno != EEXIST) {
			return -errno;
		}
		if (last)
			return 0;
		*p = '/';
	}
}

/* The pid the file holds; 0 when it holds none. */
static pid_t read_pid(const char *path)
{
	char buf[32], *end;
	long pid;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return 0;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	buf[n] = '\0';
	errno = 0;
	pid = strtol(buf, &end, 10);
	if (errno != 0 || end == buf || (*end != '\n' && *end != '\0') || pid <= 0 || pid > INT_MAX)
		return 0;
	return (pid_t)pid;
}

/* A live process whose command is isthmus (its name as the kernel keeps it). */
static int is_isthmus(pid_t pid)
{
	char path[64], comm[32] = "";
	FILE *f;

	if (kill(pid, 0) < 0 && errno != EPERM)
		return 0;
	snprintf(path, sizeof(path), "/proc/%d/comm", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	if (fgets(comm, sizeof(comm), f) == NULL)
		comm[0] = '\0';
	fclose(f);
	comm[strcspn(comm, "\n")] = '\0';
	return strcmp(comm, "isthmus") == 0;
}

int ism_runfile_pid_check(const char *path, pid_t *other)
{
	pid_t pid = read_pid(path);

	if (pid == 0 || pid == getpid() || !is_isthmus(pid))
		return 0;
	*other = pid;
	return -EEXIST;
}

int ism_runfile_pid_write(const char *path)
{
	char tmp[PATH_MAX], line[32];
	int fd, len, ret = ism_runfile_make_parent(path);

	if (ret < 0)
		return ret;
	if (snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid()) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	len = snprintf(line, sizeof(line), "%d\n", (int)getpid());
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0)
		return -errno;
	/* 0644 whatever the umask: logrotate and scripts read it. */
	if (fchmod(fd, 0644) < 0)
		ret = -errno;
	else if (write(fd, line, (size_t)len) != len)
		ret = errno ? -errno : -EIO;
	if (close(fd) < 0 && ret == 0)
		ret = -errno;
	if (ret == 0 && rename(tmp, path) < 0)
		ret = -errno;
	if (ret < 0)
		unlink(tmp);
	return ret;
}

void ism_runfile_pid_remove(const char *path)
{
	if (read_pid(path) == getpid())
		unlink(path);
}
