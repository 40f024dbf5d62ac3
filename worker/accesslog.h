/* Private to worker/: the access log. One JSON line per exchange, appended to a
 * per-worker buffer and written by io_uring, so logging never blocks the loop:
 * two 64 KiB buffers, one being written while the other fills; when both are
 * full, lines are dropped and counted. Reopened on SIGUSR1 (logrotate). */
#ifndef ISM_WORKER_ACCESSLOG_H
#define ISM_WORKER_ACCESSLOG_H

#include <stddef.h>
#include <stdint.h>

#include "lib/json.h"

#define ISM_ALOG_BUF (64u * 1024u)

struct ism_alog {
	int fd; /* -1: no access log */
	char path[256];
	char *buf[2];
	uint32_t len[2];
	uint32_t off;  /* bytes of the buffer in flight already written */
	int filling;   /* buffer lines go into */
	int in_flight; /* a write of buf[!filling] is in progress */
	uint64_t dropped;
};

struct ism_wctx;

/* Opens path ("-" is standard output). Returns 0 or -errno; an empty path leaves
 * the log off. */
int ism_alog_open(struct ism_alog *l, const char *path);
/* Reopens the file (after logrotate moved it); standard output is kept. */
void ism_alog_reopen(struct ism_alog *l);
void ism_alog_close(struct ism_alog *l);

/* Appends one line (without its newline; one is added). */
void ism_alog_append(struct ism_wctx *w, const char *line, size_t len);
/* Starts writing what has accumulated, if no write is in flight. */
void ism_alog_flush(struct ism_wctx *w);
/* The completion of an access-log write. */
void ism_alog_written(struct ism_wctx *w, int res);

#endif
