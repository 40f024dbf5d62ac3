/* SPDX-License-Identifier: Apache-2.0 */
/* Private to master/: the files the master keeps at run time beside its
 * control socket: their directory, and the pid file (Appliance spec.pidFile)
 * that logrotate and scripts signal the master through. Master only. */
#ifndef ISM_MASTER_RUNFILE_H
#define ISM_MASTER_RUNFILE_H

#include <sys/types.h>

/* Makes the directory above path (one level) when it is missing, mode 0755
 * whatever the umask. 0 or -errno. */
int ism_runfile_make_parent(const char *path);

/* Whether path names another live isthmus: -EEXIST and *other when it does;
 * 0 when the file is missing, unreadable as a pid, or stale (its process gone,
 * or not an isthmus: its pid reused). */
int ism_runfile_pid_check(const char *path, pid_t *other);
/* Writes this process's pid ("<pid>\n", mode 0644) into path: into a new file
 * beside it, renamed over path, so a reader never sees half of it; the
 * directory above is made when missing. 0 or -errno. */
int ism_runfile_pid_write(const char *path);
/* Removes path when it still names this process. */
void ism_runfile_pid_remove(const char *path);

#endif
