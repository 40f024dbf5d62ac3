/* SPDX-License-Identifier: Apache-2.0 */
/* Private to master/: the files the master keeps at run time beside its
 * control socket: their directory, and the pid file (Appliance spec.pidFile)
 * that logrotate and scripts signal the master through. Master only. */
#ifndef ISM_MASTER_RUNFILE_H
#define ISM_MASTER_RUNFILE_H

#include <stddef.h>
#include <sys/types.h>

/* Makes the directories above path when they are missing, mode 0755
 * whatever the umask, then checks that each directory above path is owned by
 * root or this user and writable by no one else (unless sticky, as /tmp): 0,
 * -EPERM with the first that is not in bad (cap bytes), or -errno. */
int ism_runfile_make_parent(const char *path, char *bad, size_t cap);
/* What ism_runfile_make_parent would refuse, changing nothing: 0 when the
 * directories above path that exist are safe (those missing it would make),
 * -EPERM as it says, or -ENOTDIR with the first level that is no directory
 * in bad (isthmus -c). */
int ism_runfile_parent_check(const char *path, char *bad, size_t cap);

/* Whether path names another live isthmus: -EEXIST and *other when it does;
 * 0 when the file is missing, unreadable as a pid, or stale (its process gone,
 * or not an isthmus: its pid reused). */
int ism_runfile_pid_check(const char *path, pid_t *other);
/* Writes this process's pid ("<pid>\n", mode 0644) into path: into a new file
 * beside it (created, never opened through a link), renamed over path, so a
 * reader never sees half of it; the directories above are made when missing
 * and checked as ism_runfile_make_parent says. 0 or -errno. */
int ism_runfile_pid_write(const char *path, char *bad, size_t cap);
/* What the error ret of the two above says: for -EPERM, which directory and
 * why (into buf), else strerror. */
const char *ism_runfile_why(int ret, const char *bad, char *buf, size_t cap);
/* Removes path when it still names this process. */
void ism_runfile_pid_remove(const char *path);

#endif
