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

/* 0 when dir (its symbolic links followed) is a directory only this user and
 * root can change: owned by either, and writable by no one else unless sticky
 * (/tmp: others cannot take or rename what is in it); else -ENOENT (missing),
 * -ENOTDIR, -EPERM or stat's -errno. */
static int dir_safe(const char *dir)
{
	struct stat st;

	if (stat(dir, &st) < 0)
		return -errno;
	if (!S_ISDIR(st.st_mode))
		return -ENOTDIR;
	if (st.st_uid != 0 && st.st_uid != geteuid())
		return -EPERM;
	return (st.st_mode & (S_IWGRP | S_IWOTH)) == 0 || (st.st_mode & S_ISVTX) ? 0 : -EPERM;
}

/* Every directory above path, from the root down, is dir_safe: a local user
 * who can change one could swap what the master creates there for a link to
 * a file of root's (OpenSSH's safe_path). 0, or -EPERM with *bad the first
 * that is not (a prefix of path, in bad). With dry, the levels from the first
 * missing one down are taken as made (0), and one that is no directory is
 * -ENOTDIR. */
static int path_safe(const char *path, bool dry, char *bad, size_t cap)
{
	const char *slash = strrchr(path, '/');

	if (slash == NULL)
		return 0; /* beside the working directory, as it was given */
	for (const char *p = path;; p++) {
		if (*p != '/' && p != slash)
			continue;
		size_t n = p == path ? 1 : (size_t)(p - path);
		int ret;

		if (n >= cap)
			return -ENAMETOOLONG;
		memcpy(bad, path, n);
		bad[n] = '\0';
		ret = dir_safe(bad);
		if (ret == -ENOENT && dry)
			return 0;
		if (ret < 0)
			return ret == -ENOTDIR && dry ? ret : -EPERM;
		if (p == slash)
			return 0;
	}
}

int ism_runfile_make_parent(const char *path, char *bad, size_t cap)
{
	char dir[PATH_MAX];
	char *slash;
	int ret;

	if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir))
		return -ENAMETOOLONG;
	slash = strrchr(dir, '/');
	if (slash == NULL)
		return 0;
	if (slash == dir)
		return path_safe(path, false, bad, cap);
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
			return (ret = path_safe(path, false, bad, cap)) < 0 ? ret : 0;
		*p = '/';
	}
}

int ism_runfile_parent_check(const char *path, char *bad, size_t cap)
{
	return path_safe(path, true, bad, cap);
}

/* The pid the file holds; 0 when it holds none (or it is not a regular
 * file: a FIFO put there would block the open, a device be read). */
static pid_t read_pid(const char *path)
{
	char buf[32], *end;
	struct stat st;
	long pid;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW | O_NOCTTY);

	if (fd < 0)
		return 0;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return 0;
	}
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

/* A live process whose command is isthmus (its name as the kernel keeps
 * it): not a zombie, whose parent has not reaped it yet (a master killed by
 * SIGKILL under a supervisor that reaps late is gone all the same). */
static int is_isthmus(pid_t pid)
{
	char path[64], line[128] = "";
	const char *lpar, *rpar;
	FILE *f;

	if (kill(pid, 0) < 0 && errno != EPERM)
		return 0;
	/* "pid (comm) S ...": the command, then the state after it. */
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	f = fopen(path, "r");
	if (f == NULL)
		return 0;
	if (fgets(line, sizeof(line), f) == NULL)
		line[0] = '\0';
	fclose(f);
	lpar = strchr(line, '(');
	rpar = strrchr(line, ')');
	if (lpar == NULL || rpar == NULL || rpar[1] != ' ' || rpar[2] == 'Z' || rpar[2] == 'X')
		return 0;
	return rpar - lpar == 8 && strncmp(lpar + 1, "isthmus", 7) == 0;
}

int ism_runfile_pid_check(const char *path, pid_t *other)
{
	pid_t pid = read_pid(path);

	if (pid == 0 || pid == getpid() || !is_isthmus(pid))
		return 0;
	*other = pid;
	return -EEXIST;
}

int ism_runfile_pid_write(const char *path, char *bad, size_t cap)
{
	char tmp[PATH_MAX], line[32];
	int fd, len, ret = ism_runfile_make_parent(path, bad, cap);

	if (ret < 0)
		return ret;
	if (snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid()) >= (int)sizeof(tmp))
		return -ENAMETOOLONG;
	len = snprintf(line, sizeof(line), "%d\n", (int)getpid());
	/* A new file of its own, never through a link: one a crash left is
	 * removed first (unlink takes a link, not what it names). */
	unlink(tmp);
	fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
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

const char *ism_runfile_why(int ret, const char *bad, char *buf, size_t cap)
{
	if (ret != -EPERM)
		return strerror(-ret);
	snprintf(buf, cap,
		 "directory %s may be changed by another user: it must be owned by root or this "
		 "user, and writable by no one else unless sticky",
		 bad);
	return buf;
}

void ism_runfile_pid_remove(const char *path)
{
	if (read_pid(path) == getpid())
		unlink(path);
}
