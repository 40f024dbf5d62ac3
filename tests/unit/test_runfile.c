/* SPDX-License-Identifier: Apache-2.0 */
/* The master's run-time files (master/runfile.c): the pid file is written
 * whole (mode 0644 whatever the umask, its directory made, never through a
 * link), removed only while it names this process, and a file naming another
 * live isthmus is told from a stale one (a dead pid, a pid reused by another
 * program, garbage); a directory another user may change is refused. */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "master/runfile.h"
#include "tests/unit/check.h"

static char dir[64];
static char bad[256]; /* the directory a check refused */

static int setup(void **state)
{
	(void)state;
	snprintf(dir, sizeof(dir), "/tmp/ism-runfile-XXXXXX");
	return mkdtemp(dir) == NULL ? -1 : 0;
}

static int teardown(void **state)
{
	char cmd[128];

	(void)state;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	return system(cmd) == 0 ? 0 : -1;
}

static void put(const char *path, const char *text)
{
	FILE *f = fopen(path, "w");

	assert_non_null(f);
	fputs(text, f);
	fclose(f);
}

static void test_write_and_remove(void **state)
{
	char path[128], want[32], got[32] = "";
	struct stat st;
	mode_t old = umask(077);
	FILE *f;

	(void)state;
	snprintf(path, sizeof(path), "%s/run/isthmus.pid", dir);
	CHECK("write", ism_runfile_pid_write(path, bad, sizeof(bad)) == 0, "cannot write %s", path);
	umask(old);
	f = fopen(path, "r");
	assert_non_null(f);
	assert_non_null(fgets(got, sizeof(got), f));
	fclose(f);
	snprintf(want, sizeof(want), "%d\n", (int)getpid());
	CHECK("content", strcmp(got, want) == 0, "holds %s", got);
	CHECK("mode", stat(path, &st) == 0 && (st.st_mode & 0777) == 0644, "mode %o",
	      st.st_mode & 0777);
	ism_runfile_pid_remove(path);
	CHECK("removed", access(path, F_OK) < 0, "still there");
	put(path, "1\n");
	ism_runfile_pid_remove(path);
	CHECK("kept", access(path, F_OK) == 0, "another's pid file was removed");
	/* A FIFO at the path is not opened for reading (the open waited for a
	 * writer: an upgrade's hand-over named such a path), nor removed. */
	unlink(path);
	assert_int_equal(mkfifo(path, 0600), 0);
	ism_runfile_pid_remove(path);
	CHECK("fifo", access(path, F_OK) == 0, "a FIFO was removed");
	unlink(path);
}

/* Every missing level above the file is made, 0755 whatever the umask, as
 * mkdir -p (one level was: a deeper path refused the start). */
static void test_parents(void **state)
{
	char path[128], sub[128];
	struct stat st;
	mode_t old = umask(077);

	(void)state;
	snprintf(path, sizeof(path), "%s/a/b/c/isthmus.sock", dir);
	CHECK("made", ism_runfile_make_parent(path, bad, sizeof(bad)) == 0,
	      "cannot make the parents of %s", path);
	umask(old);
	snprintf(sub, sizeof(sub), "%s/a/b/c", dir);
	CHECK("deepest", stat(sub, &st) == 0 && S_ISDIR(st.st_mode) && (st.st_mode & 0777) == 0755,
	      "%s mode %o", sub, st.st_mode & 0777);
	snprintf(sub, sizeof(sub), "%s/a", dir);
	CHECK("first", stat(sub, &st) == 0 && (st.st_mode & 0777) == 0755, "%s mode %o", sub,
	      st.st_mode & 0777);
	CHECK("again", ism_runfile_make_parent(path, bad, sizeof(bad)) == 0,
	      "the parents existing: an error");
	/* a file where a directory should be: its error */
	snprintf(sub, sizeof(sub), "%s/f", dir);
	put(sub, "x");
	snprintf(path, sizeof(path), "%s/f/d/isthmus.sock", dir);
	CHECK("in the way", ism_runfile_make_parent(path, bad, sizeof(bad)) == -ENOTDIR,
	      "a file in the way");
}

static void test_check(void **state)
{
	char path[128], text[32];
	pid_t other = 0, dead, child;
	int status;

	(void)state;
	snprintf(path, sizeof(path), "%s/isthmus.pid", dir);
	CHECK("missing", ism_runfile_pid_check(path, &other) == 0, "a missing file refused");
	put(path, "garbage\n");
	CHECK("garbage", ism_runfile_pid_check(path, &other) == 0, "garbage refused");
	snprintf(text, sizeof(text), "%d\n", (int)getpid());
	put(path, text);
	CHECK("self", ism_runfile_pid_check(path, &other) == 0, "its own pid refused");
	snprintf(text, sizeof(text), "%d\n", (int)getppid());
	put(path, text);
	CHECK("not isthmus", ism_runfile_pid_check(path, &other) == 0, "another program refused");
	dead = fork();
	assert_true(dead >= 0);
	if (dead == 0)
		_exit(0);
	waitpid(dead, &status, 0);
	snprintf(text, sizeof(text), "%d\n", (int)dead);
	put(path, text);
	CHECK("dead", ism_runfile_pid_check(path, &other) == 0, "a dead pid refused");
	/* A live process named isthmus. */
	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		prctl(PR_SET_NAME, "isthmus");
		pause();
		_exit(0);
	}
	snprintf(text, sizeof(text), "%d\n", (int)child);
	put(path, text);
	for (int i = 0; i < 200 && ism_runfile_pid_check(path, &other) == 0; i++)
		usleep(10000); /* until the child has named itself */
	CHECK("live isthmus", ism_runfile_pid_check(path, &other) == -EEXIST && other == child,
	      "a live isthmus not seen (other %d)", (int)other);
	kill(child, SIGKILL);
	/* Killed and not reaped yet (a zombie, its name kept): gone. */
	for (int i = 0; i < 200 && ism_runfile_pid_check(path, &other) != 0; i++)
		usleep(10000);
	CHECK("zombie", ism_runfile_pid_check(path, &other) == 0,
	      "a killed isthmus not yet reaped taken for a live one");
	waitpid(child, &status, 0);
}

/* A link planted at the pid file's temporary name (a local user who could
 * write the directory) is not followed: the file it names keeps its text and
 * mode, and the pid file is written. */
static void test_pid_link(void **state)
{
	char path[128], tmp[160], victim[128], got[64] = "";
	struct stat st;
	FILE *f;

	(void)state;
	snprintf(path, sizeof(path), "%s/l/isthmus.pid", dir);
	snprintf(victim, sizeof(victim), "%s/victim", dir);
	put(victim, "root's secret\n");
	assert_int_equal(chmod(victim, 0600), 0);
	CHECK("parent", ism_runfile_make_parent(path, bad, sizeof(bad)) == 0, "no parent");
	snprintf(tmp, sizeof(tmp), "%s.%d.tmp", path, (int)getpid());
	assert_int_equal(symlink(victim, tmp), 0);
	CHECK("write", ism_runfile_pid_write(path, bad, sizeof(bad)) == 0, "cannot write %s", path);
	f = fopen(victim, "r");
	assert_non_null(f);
	assert_non_null(fgets(got, sizeof(got), f));
	fclose(f);
	CHECK("victim text", strcmp(got, "root's secret\n") == 0, "the link's file now holds %s",
	      got);
	CHECK("victim mode", stat(victim, &st) == 0 && (st.st_mode & 0777) == 0600, "mode %o",
	      st.st_mode & 0777);
	CHECK("pid file", stat(path, &st) == 0 && S_ISREG(st.st_mode), "no pid file");
	CHECK("no tmp", lstat(tmp, &st) < 0, "the temporary name is left");
}

/* A directory above the file that others may change is refused, named; a
 * sticky one (/tmp) is not. */
static void test_unsafe_dirs(void **state)
{
	char path[160], open_dir[128], want[128];

	(void)state;
	snprintf(open_dir, sizeof(open_dir), "%s/open", dir);
	assert_int_equal(mkdir(open_dir, 0755), 0);
	assert_int_equal(chmod(open_dir, 0777), 0);
	snprintf(path, sizeof(path), "%s/sub/isthmus.sock", open_dir);
	CHECK("open", ism_runfile_make_parent(path, bad, sizeof(bad)) == -EPERM,
	      "a world-writable directory taken");
	CHECK("named", strcmp(bad, open_dir) == 0, "named %s, not %s", bad, open_dir);
	CHECK("dry",
	      ism_runfile_parent_check(path, bad, sizeof(bad)) == -EPERM &&
		  strcmp(bad, open_dir) == 0,
	      "a world-writable directory taken by the check (%s)", bad);
	snprintf(path, sizeof(path), "%s/isthmus.pid", open_dir);
	CHECK("pid", ism_runfile_pid_write(path, bad, sizeof(bad)) == -EPERM,
	      "a pid file in a world-writable directory written");
	assert_int_equal(chmod(open_dir, 01777), 0);
	CHECK("sticky", ism_runfile_pid_write(path, bad, sizeof(bad)) == 0,
	      "a sticky directory refused (%s)", bad);
	if (geteuid() == 0) {
		snprintf(want, sizeof(want), "%s/theirs", dir);
		assert_int_equal(mkdir(want, 0755), 0);
		assert_int_equal(chown(want, 65534, 65534), 0);
		snprintf(path, sizeof(path), "%s/isthmus.sock", want);
		CHECK("theirs",
		      ism_runfile_make_parent(path, bad, sizeof(bad)) == -EPERM &&
			  strcmp(bad, want) == 0,
		      "a directory another user owns taken (%s)", bad);
	}
}

/* What a start would refuse, looked at without making anything: levels
 * missing are fine, one that is a file is named (one that others may change:
 * test_unsafe_dirs). */
static void test_parent_check(void **state)
{
	char path[160], sub[128];
	struct stat st;

	(void)state;
	snprintf(path, sizeof(path), "%s/new/deeper/isthmus.pid", dir);
	CHECK("missing", ism_runfile_parent_check(path, bad, sizeof(bad)) == 0,
	      "missing levels refused");
	snprintf(sub, sizeof(sub), "%s/new", dir);
	CHECK("nothing made", stat(sub, &st) < 0 && errno == ENOENT, "%s was made", sub);
	snprintf(sub, sizeof(sub), "%s/file", dir);
	put(sub, "x");
	snprintf(path, sizeof(path), "%s/file/d/isthmus.sock", dir);
	CHECK("file", ism_runfile_parent_check(path, bad, sizeof(bad)) == -ENOTDIR,
	      "a file in the way taken");
	CHECK("file named", strcmp(bad, sub) == 0, "named %s, not %s", bad, sub);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_write_and_remove), cmocka_unit_test(test_check),
	    cmocka_unit_test(test_parents),	     cmocka_unit_test(test_pid_link),
	    cmocka_unit_test(test_unsafe_dirs),	     cmocka_unit_test(test_parent_check),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
