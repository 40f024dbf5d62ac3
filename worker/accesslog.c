#include "worker/accesslog.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/log.h"
#include "worker/proxy.h"

int ism_alog_open(struct ism_alog *l, const char *path)
{
	memset(l, 0, sizeof(*l));
	l->fd = -1;
	if (path == NULL || path[0] == '\0')
		return 0;
	snprintf(l->path, sizeof(l->path), "%s", path);
	l->buf[0] = malloc(ISM_ALOG_BUF);
	l->buf[1] = malloc(ISM_ALOG_BUF);
	if (l->buf[0] == NULL || l->buf[1] == NULL) {
		ism_alog_close(l);
		return -ENOMEM;
	}
	if (strcmp(path, "-") == 0)
		l->fd = dup(STDOUT_FILENO);
	else
		l->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (l->fd < 0) {
		int err = errno;

		ism_err("access log %s: %s", path, strerror(err));
		ism_alog_close(l);
		return -err;
	}
	return 0;
}

void ism_alog_reopen(struct ism_alog *l)
{
	int fd;

	if (l->fd < 0 || strcmp(l->path, "-") == 0)
		return;
	fd = open(l->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0640);
	if (fd < 0) {
		ism_err("access log %s: reopen: %s (keeping the old file)", l->path,
			strerror(errno));
		return;
	}
	/* A write in flight keeps its own reference to the old file. */
	close(l->fd);
	l->fd = fd;
}

void ism_alog_close(struct ism_alog *l)
{
	if (l->fd >= 0)
		close(l->fd);
	free(l->buf[0]);
	free(l->buf[1]);
	l->buf[0] = l->buf[1] = NULL;
	l->fd = -1;
}

static void submit(struct ism_wctx *w)
{
	struct ism_alog *l = &w->alog;
	int b = !l->filling;
	struct io_uring_sqe *sqe = ism_w_sqe(w);

	io_uring_prep_write(sqe, l->fd, l->buf[b] + l->off, l->len[b] - l->off, (uint64_t)-1);
	io_uring_sqe_set_data64(sqe, ism_ud(ISM_OP_LOGW, 0, 0));
	l->in_flight = 1;
}

void ism_alog_flush(struct ism_wctx *w)
{
	struct ism_alog *l = &w->alog;

	if (l->fd < 0 || l->in_flight || l->len[l->filling] == 0)
		return;
	l->filling = !l->filling;
	l->len[l->filling] = 0;
	l->off = 0;
	submit(w);
}

void ism_alog_written(struct ism_wctx *w, int res)
{
	struct ism_alog *l = &w->alog;
	int b = !l->filling;

	l->in_flight = 0;
	if (res > 0 && l->off + (uint32_t)res < l->len[b]) {
		l->off += (uint32_t)res; /* short write: the rest */
		submit(w);
		return;
	}
	if (res < 0)
		l->dropped += 1;
	l->len[b] = 0;
	if (l->len[l->filling] >= ISM_ALOG_BUF / 2)
		ism_alog_flush(w);
}

void ism_alog_append(struct ism_wctx *w, const char *line, size_t len)
{
	struct ism_alog *l = &w->alog;
	uint32_t *fill;

	if (l->fd < 0)
		return;
	fill = &l->len[l->filling];
	if (*fill + len + 1 > ISM_ALOG_BUF) {
		ism_alog_flush(w);
		fill = &l->len[l->filling];
		if (*fill + len + 1 > ISM_ALOG_BUF) {
			l->dropped++; /* both buffers full: the disk is behind */
			return;
		}
	}
	memcpy(l->buf[l->filling] + *fill, line, len);
	*fill += (uint32_t)len;
	l->buf[l->filling][(*fill)++] = '\n';
	if (*fill >= ISM_ALOG_BUF / 2)
		ism_alog_flush(w);
}
