/* SPDX-License-Identifier: Apache-2.0 */
/* The worker's event loop: ring and buffer setup, accept, signals, the tick that
 * drives timeouts, moving to new table generations, and the drain on stop. */
#include "worker/mirror.h"
#include "worker/worker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "conf/defaults.h"
#include "lib/log.h"
#include "worker/authn.h"
#include "worker/balancer.h"
#include "worker/extauthz.h"
#include "worker/h2.h"
#include "worker/h2io.h"
#include "worker/h2up.h"
#include "worker/ring.h"
#include "worker/router.h"
#include "worker/session.h"
#include "worker/sock.h"
#include "worker/stream.h"
#include "worker/upstream.h"
#include "worker/tls.h"

#define RING_ENTRIES 4096
#define TICK_MS	     100

/* An entry of the submission queue to fill. A full queue goes to the kernel
 * first; where the kernel takes none of it (no memory for a request, a
 * completion queue it cannot flush), the entry is one of the backlog's, which
 * the loop moves to the queue before it submits again (ism_w_sqb_move). Once
 * the backlog holds one, later entries go behind it: they keep their order. A
 * backlog full too is a bug (ISM_SQ_BACKLOG entries: more than a turn makes). */
struct io_uring_sqe *ism_w_sqe(struct ism_wctx *w)
{
	struct io_uring_sqe *sqe = NULL;

	if (w->n_sqb == 0) {
		sqe = io_uring_get_sqe(&w->ring);
		if (sqe == NULL && io_uring_submit(&w->ring) > 0)
			sqe = io_uring_get_sqe(&w->ring);
	}
	if (sqe == NULL) {
		ISM_BUG_ON(w->n_sqb == ISM_SQ_BACKLOG);
		if (w->n_sqb == 0 && ism_w_warn_due(&w->sqb_warn_ms, w->now))
			ism_warn("io_uring: the kernel takes no submission: entries wait");
		sqe = &w->sqb[w->n_sqb++];
		memset(sqe, 0, sizeof(*sqe));
	}
	return sqe;
}

void ism_w_sqb_move(struct ism_wctx *w)
{
	uint32_t i = 0;

	while (i < w->n_sqb) {
		struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);

		if (sqe == NULL) {
			if (io_uring_submit(&w->ring) <= 0)
				break;
			continue;
		}
		*sqe = w->sqb[i++];
	}
	memmove(w->sqb, w->sqb + i, (w->n_sqb - i) * sizeof(*w->sqb));
	w->n_sqb -= i;
}

void ism_w_recv(struct ism_wctx *w, const struct ism_sock *s, uint64_t ud, bool multishot)
{
	struct io_uring_sqe *sqe = ism_w_sqe(w);
	int fd = s->fd;

	/* A multishot takes the length of each ring buffer (kernels before 6.10
	 * refuse one of its own), and ends after ISM_RECV_MSHOT_LIMIT bytes: the
	 * total-length cap (Linux 6.17) is the SQE's optlen, file_index in this
	 * liburing's names. */
	if (multishot) {
		io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
		sqe->file_index = ISM_RECV_MSHOT_LIMIT;
	} else
		io_uring_prep_recv(sqe, fd, NULL, ISM_BUF_SIZE, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = ISM_BGID;
	ism_w_sqe_sock(sqe, s);
	io_uring_sqe_set_data64(sqe, ud);
}

char *ism_w_buf_addr(struct ism_wctx *w, int bid)
{
	if ((uint32_t)bid >= ISM_BUF_COUNT_MAX)
		return w->xbufs[(uint32_t)bid - ISM_BUF_COUNT_MAX];
	return (char *)w->bufs + (size_t)bid * ISM_BUF_SIZE;
}

/* A private buffer (decrypted TLS data), id >= ISM_BUF_COUNT_MAX; -1 when out of memory. */
int ism_w_xbuf_get(struct ism_wctx *w)
{
	uint32_t i;

	if (w->n_xfree > 0) {
		i = w->xfree[w->n_xfree - 1];
		if (w->xbufs[i] != NULL)
			w->x_kept--;
		else if ((w->xbufs[i] = malloc(ISM_BUF_SIZE)) == NULL)
			return -1;
		w->n_xfree--;
		return (int)(i + ISM_BUF_COUNT_MAX);
	}
	if (w->n_xbufs == w->cap_xbufs) {
		uint32_t cap = w->cap_xbufs ? w->cap_xbufs * 2 : 64;
		char **b = realloc(w->xbufs, cap * sizeof(*b));
		uint32_t *f = realloc(w->xfree, cap * sizeof(*f));

		if (b != NULL)
			w->xbufs = b;
		if (f != NULL)
			w->xfree = f;
		if (b == NULL || f == NULL)
			return -1;
		w->cap_xbufs = cap;
	}
	i = w->n_xbufs;
	w->xbufs[i] = malloc(ISM_BUF_SIZE);
	if (w->xbufs[i] == NULL)
		return -1;
	w->n_xbufs++;
	return (int)(i + ISM_BUF_COUNT_MAX);
}

void ism_w_buf_recycle(struct ism_wctx *w, int bid)
{
	if ((uint32_t)bid >= ISM_BUF_COUNT_MAX) {
		uint32_t i = (uint32_t)bid - ISM_BUF_COUNT_MAX;

		ISM_BUG_ON(i >= w->n_xbufs);
		if (w->x_kept < ISM_XBUF_KEEP) {
			w->x_kept++;
		} else {
			free(w->xbufs[i]);
			w->xbufs[i] = NULL;
		}
		w->xfree[w->n_xfree++] = i;
		return;
	}
	ISM_BUG_ON(bid < 0 || (uint32_t)bid >= w->n_bufs);
	io_uring_buf_ring_add(w->br, ism_w_buf_addr(w, bid), ISM_BUF_SIZE, (unsigned short)bid,
			      io_uring_buf_ring_mask(w->n_bufs), (int)w->br_pending);
	w->br_pending++;
	w->buf_avail++;
}

static void buf_publish(struct ism_wctx *w)
{
	if (w->br_pending) {
		io_uring_buf_ring_advance(w->br, (int)w->br_pending);
		w->br_pending = 0;
	}
}

uint32_t ism_w_rand(struct ism_wctx *w)
{
	/* xorshift64*: fast, per process, seeded from getrandom. */
	w->rng ^= w->rng >> 12;
	w->rng ^= w->rng << 25;
	w->rng ^= w->rng >> 27;
	return (uint32_t)((w->rng * 0x2545F4914F6CDD1DULL) >> 32);
}

const char *ism_w_date(struct ism_wctx *w)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME_COARSE, &ts);
	if (ts.tv_sec != w->date_sec) {
		w->date_sec = ts.tv_sec;
		ism_time_http(ts.tv_sec, w->date);
	}
	return w->date;
}

/* The provided-buffer ring of n receive buffers (a power of two). */
static int setup_buffers(struct ism_wctx *w, uint32_t n)
{
	struct io_uring_buf_reg reg;
	size_t ring_size = n * sizeof(struct io_uring_buf);
	int ret;

	ISM_BUG_ON(n == 0 || n > ISM_BUF_COUNT_MAX || (n & (n - 1)) != 0);
	w->n_bufs = n; /* before the maps: what is unmapped at the end */
	w->br = mmap(NULL, ring_size, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (w->br == MAP_FAILED) {
		w->br = NULL;
		return -errno;
	}
	w->bufs = mmap(NULL, (size_t)n * ISM_BUF_SIZE, PROT_READ | PROT_WRITE,
		       MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (w->bufs == MAP_FAILED) {
		w->bufs = NULL;
		return -errno;
	}
	memset(&reg, 0, sizeof(reg));
	reg.ring_addr = (unsigned long)w->br;
	reg.ring_entries = n;
	reg.bgid = ISM_BGID;
	ret = io_uring_register_buf_ring(&w->ring, &reg, 0);
	if (ret < 0)
		return ret;
	io_uring_buf_ring_init(w->br);
	for (uint32_t i = 0; i < n; i++)
		ism_w_buf_recycle(w, (int)i);
	buf_publish(w);
	return 0;
}

/* One accept at a time, re-armed when it completes: the re-armed request joins
 * the end of the socket's queue of waiters, so the workers sharing a listener
 * take turns. A multishot accept stays first in that queue: one worker took
 * every connection, and a stopped worker held them all. */
static void arm_accept(struct ism_wctx *w, int l)
{
	struct io_uring_sqe *sqe = ism_w_sqe(w);

	io_uring_prep_accept(sqe, w->listen_fds[l], NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	io_uring_sqe_set_data64(sqe, ism_ud(ISM_OP_ACCEPT, (uint32_t)l, 0));
	w->accepts[l].armed++;
}

/* The kernel wakes one waiting accept per connection (io_uring waits for a
 * listener exclusively): a wake given to an accept being cancelled (a
 * draining worker's, an exiting one's) is lost with it, and the connection
 * waits in the listen queue until the next one comes (seconds on a quiet
 * gateway, after every reload that replaces the workers). At each tick a
 * listener with a connection queued gets a second accept, which takes it at
 * once: a queued connection waits one tick at most. */
static void accept_kick(struct ism_wctx *w)
{
	int n = 0;

	if (w->draining)
		return;
	for (int l = 0; l < w->n_listen; l++)
		w->accept_pfd[l] = (struct pollfd){.fd = w->listen_fds[l], .events = POLLIN};
	if (poll(w->accept_pfd, (nfds_t)w->n_listen, 0) <= 0)
		return;
	for (int l = 0; l < w->n_listen; l++)
		if ((w->accept_pfd[l].revents & POLLIN) && !w->accepts[l].paused &&
		    w->accepts[l].armed < 2) {
			arm_accept(w, l);
			n++;
		}
	if (n > 0)
		ism_wstat_add(&w->st->accept_kicks, (uint64_t)n);
}

/* EMFILE, ENFILE and their kin leave the connection in the listen queue: an
 * accept re-armed at once would fail again at once, a loop at full CPU. The
 * listener pauses instead and the tick tries it again (TICK_MS later). An
 * episode (failures less than a second apart) is logged when it begins and
 * when it is over. */
#define ACCEPT_EPISODE_MS 1000

static bool accept_resource_error(int res)
{
	return res == -EMFILE || res == -ENFILE || res == -ENOBUFS || res == -ENOMEM;
}

static void accept_failed(struct ism_wctx *w, int l, int res)
{
	ism_wstat_add(&w->st->accept_errors, 1);
	/* Descriptors idle pooled upstream connections hold go to clients. */
	if (res == -EMFILE || res == -ENFILE)
		ism_up_reclaim_idle(w);
	if (w->accept_pause_ms == 0) {
		w->accept_pause_ms = w->now ? w->now : 1;
		w->accept_refused = 0;
		ism_warn("accept: %s: pausing new connections (retried every %d ms)",
			 strerror(-res), TICK_MS);
	}
	w->accept_refused++;
	w->accept_fail_ms = w->now;
	w->accepts[l].paused = 1;
}

/* At the tick: paused listeners accept again; an episode without a failure
 * for a while is over. */
static void accept_resume(struct ism_wctx *w)
{
	for (int l = 0; l < w->n_listen; l++) {
		if (!w->accepts[l].paused)
			continue;
		w->accepts[l].paused = 0;
		if (!w->draining && w->accepts[l].armed == 0)
			arm_accept(w, l);
	}
	if (w->accept_pause_ms && w->now - w->accept_fail_ms >= ACCEPT_EPISODE_MS) {
		ism_notice("accept: accepting again; %llu accepts failed over %llu ms",
			   (unsigned long long)w->accept_refused,
			   (unsigned long long)(w->accept_fail_ms - w->accept_pause_ms));
		w->accept_pause_ms = 0;
	}
}

static void arm_tick(struct ism_wctx *w)
{
	struct io_uring_sqe *sqe = ism_w_sqe(w);

	w->tick_ts.tv_sec = 0;
	w->tick_ts.tv_nsec = TICK_MS * 1000000L;
	io_uring_prep_timeout(sqe, &w->tick_ts, 0, 0);
	io_uring_sqe_set_data64(sqe, ism_ud(ISM_OP_TICK, 0, 0));
}

static void arm_signal(struct ism_wctx *w)
{
	struct io_uring_sqe *sqe = ism_w_sqe(w);

	io_uring_prep_read(sqe, w->signal_fd, w->sigbuf, sizeof(struct signalfd_siginfo), 0);
	io_uring_sqe_set_data64(sqe, ism_ud(ISM_OP_SIGNAL, 0, 0));
}

static void arm_master(struct ism_wctx *w)
{
	struct io_uring_sqe *sqe = ism_w_sqe(w);

	io_uring_prep_recv(sqe, w->master_fd, w->masterbuf, sizeof(w->masterbuf), 0);
	io_uring_sqe_set_data64(sqe, ism_ud(ISM_OP_MASTER, 0, 0));
}

static void start_drain(struct ism_wctx *w, const char *why)
{
	if (w->draining)
		return;
	w->draining = 1;
	w->drain_deadline =
	    w->now + (w->table ? w->table->timeouts.drain_ms : ISM_DEFAULT_DRAIN_MS);
	atomic_store(&w->slot->draining, 1);
	ism_info("draining (%s): %u connections open", why, w->n_active);
	for (int l = 0; l < w->n_listen; l++) {
		struct io_uring_sqe *sqe = ism_w_sqe(w);

		io_uring_prep_cancel64(sqe, ism_ud(ISM_OP_ACCEPT, (uint32_t)l, 0),
				       IORING_ASYNC_CANCEL_ALL);
		io_uring_sqe_set_data64(sqe, ism_ud(ISM_OP_CANCEL, 0, 0));
	}
	/* Our copies of the listening sockets go too (the pending accepts hold
	 * their own references until cancelled): a reload that dropped a port
	 * must be able to bind it again soon after. */
	io_uring_submit(&w->ring);
	for (int l = 0; l < w->n_listen; l++)
		close(w->listen_fds[l]);
	ism_sess_drain(w);
	ism_up_drain(w);
}

/* Moves to the newest published generation. Requests in flight copied their
 * route's policy when they were routed; what else they had of the old table
 * is moved to its namesakes in the new one, so nothing refers to the old one
 * once the new one is acquired. */
static void switch_table(struct ism_wctx *w)
{
	const struct ism_table *t = ism_shm_peek(w->shm, w->index), *old;
	struct ism_jwks *jwks = NULL;
	struct ism_lb *lb;

	if (t == NULL || t == w->table) {
		ism_shm_commit(w->shm, w->index, t != NULL);
		return;
	}
	if (w->table != NULL && !ism_table_same_listeners(w->table, t)) {
		/* A reload that moved the listeners replaces this worker (it is
		 * told to drain): its connections keep the generation their
		 * listeners belong to. */
		ism_shm_commit(w->shm, w->index, 0);
		w->stale = 1;
		return;
	}
	lb = ism_lb_new(t);
	if (lb == NULL || ism_authn_sets(t, &jwks) < 0) {
		ism_lb_free(lb);
		ism_shm_commit(w->shm, w->index, 0);
		ism_err("out of memory building balancer state; staying on generation %llu",
			(unsigned long long)(w->table ? w->table->gen : 0));
		return;
	}
	/* Before the old table is released: the router drops what it compiled
	 * from it. */
	if (ism_router_use_table(w->rs, t) < 0) {
		ism_lb_free(lb);
		ism_authn_install(NULL, jwks, t->jwt.n);
		ism_shm_commit(w->shm, w->index, 0);
		ism_err("out of memory for the route regexes; staying on generation %llu",
			(unsigned long long)(w->table ? w->table->gen : 0));
		return;
	}
	old = w->table;
	ism_authn_install(w, jwks, t->jwt.n);
	ism_lb_free(w->lb);
	w->lb = lb;
	w->table = t;
	/* Before the old table is released: the requests in flight find what
	 * they had of it in the new one. */
	if (old != NULL)
		ism_streams_regen(w, old);
	ism_shm_commit(w->shm, w->index, 1);
	ism_log_set_level((enum ism_log_level)t->log_level);
	ism_alog_use(&w->alog, &t->access_log);
	ism_debug("using generation %llu", (unsigned long long)t->gen);
	ism_tls_table_changed(w);
	ism_up_table_changed(w);
}

void ism_w_dispatch(struct ism_wctx *w, enum ism_op op, uint32_t idx, uint32_t gen, int res,
		    uint32_t flags)
{
	int bid = (flags & IORING_CQE_F_BUFFER) ? (int)(flags >> IORING_CQE_BUFFER_SHIFT) : -1;

	if (res == -ENOBUFS && (op == ISM_OP_CRECV || op == ISM_OP_URECV)) {
		ism_sock_bufwait(w, ism_ud(op, idx, gen));
		return;
	}
	switch (op) {
	case ISM_OP_CRECV:
	case ISM_OP_CSEND:
	case ISM_OP_CTLS:
		ism_sess_complete(w, op, idx, gen, res, bid, flags);
		return;
	case ISM_OP_UCONNECT:
	case ISM_OP_URECV:
	case ISM_OP_USEND:
	case ISM_OP_UTLS:
		ism_up_complete(w, op, idx, gen, res, bid, flags);
		return;
	case ISM_OP_RETRY:
		ism_stream_timer(w, idx, gen);
		return;
	case ISM_OP_ACCEPT:
	case ISM_OP_TICK:
	case ISM_OP_SIGNAL:
	case ISM_OP_MASTER:
	case ISM_OP_CANCEL:
	case ISM_OP_LOGW:
	case ISM_OP_FILES:
		break;
	}
	ISM_BUG_ON(1);
}

static void handle_cqe(struct ism_wctx *w, struct io_uring_cqe *cqe)
{
	uint64_t ud = io_uring_cqe_get_data64(cqe);
	enum ism_op op = (enum ism_op)(ud >> 56);
	uint32_t idx = (uint32_t)(ud >> 32) & 0xffffff;

	if (cqe->flags & IORING_CQE_F_BUFFER)
		w->buf_avail--;
	switch (op) {
	case ISM_OP_ACCEPT:
		if (!(cqe->flags & IORING_CQE_F_MORE) && w->accepts[idx].armed > 0)
			w->accepts[idx].armed--;
		if (cqe->res >= 0) {
			/* Accepted before the accept was cancelled: served all the
			 * same (its response says "connection: close"); closing it
			 * would fail a request the client already sent. */
			ism_sess_accepted(w, cqe->res, (int)idx);
		} else if (accept_resource_error(cqe->res)) {
			accept_failed(w, (int)idx, cqe->res);
			break;
		} else if (cqe->res != -ECANCELED) {
			ism_debug("accept: %s", strerror(-cqe->res));
		}
		if (w->accepts[idx].armed == 0 && !w->draining)
			arm_accept(w, (int)idx);
		break;
	case ISM_OP_TICK:
		w->now = ism_now_ms();
		atomic_store_explicit(&w->slot->heartbeat_ms, w->now, memory_order_relaxed);
		accept_resume(w);
		accept_kick(w);
		ism_up_tick(w);
		ism_sess_tick(w);
		ism_stream_tick(w);
		ism_sock_resume_recvs(w);
		ism_alog_flush(w);
		arm_tick(w);
		break;
	case ISM_OP_SIGNAL:
		if (cqe->res == (int)sizeof(struct signalfd_siginfo)) {
			struct signalfd_siginfo si;

			memcpy(&si, w->sigbuf, sizeof(si));
			if (si.ssi_signo == SIGTERM || si.ssi_signo == SIGINT)
				start_drain(w, "signal");
			else if (si.ssi_signo == SIGUSR1)
				ism_alog_reopen(&w->alog);
		}
		arm_signal(w);
		break;
	case ISM_OP_MASTER:
		if (cqe->res <= 0)
			start_drain(w, "master gone");
		else
			arm_master(w);
		break;
	case ISM_OP_CANCEL:
		break;
	case ISM_OP_FILES:
		/* Only a failure completes: the socket's operations then fail on
		 * their index too, and the socket closes as on any error. */
		ism_debug("registered descriptor update: %s", strerror(-cqe->res));
		break;
	case ISM_OP_LOGW:
		ism_alog_written(w, cqe->res);
		break;
	default:
		ism_w_dispatch(w, op, idx, (uint32_t)ud, cqe->res, cqe->flags);
		break;
	}
}

static int setup_signals(struct ism_wctx *w)
{
	sigset_t set;

	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGHUP);
	sigaddset(&set, SIGCHLD);
	sigaddset(&set, SIGUSR1);
	sigprocmask(SIG_BLOCK, &set, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	sigaddset(&set, SIGUSR1);
	w->signal_fd = signalfd(-1, &set, SFD_CLOEXEC);
	return w->signal_fd < 0 ? -errno : 0;
}

/* At exit: whatever the access log still holds is written, blocking (the loop
 * is over). A write still in flight is waited for first, for a second at
 * most: it may still be among the requests the loop's last turn prepared,
 * which go to the kernel now (waiting without submitting them waited for
 * ever, and the master killed the worker as hung). */
static void final_log_flush(struct ism_wctx *w)
{
	struct ism_alog *l = &w->alog;
	struct __kernel_timespec ts = {.tv_nsec = 100 * 1000000L};
	const uint64_t until = ism_now_ms() + 1000;

	if (l->fd < 0)
		return;
	while (l->in_flight && ism_now_ms() < until) {
		struct io_uring_cqe *cqe;
		int ret;

		ism_w_sqb_move(w);
		ret = io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);

		if (ret == -ETIME || ret == -EINTR)
			continue;
		if (ret < 0)
			break;
		handle_cqe(w, cqe);
		io_uring_cqe_seen(&w->ring, cqe);
	}
	for (int b = 0; b < 2; b++) {
		int i = b ? l->filling : !l->filling;

		if (l->len[i] && write(l->fd, l->buf[i], l->len[i]) < 0)
			ism_alog_drop_text(l, l->buf[i], l->len[i]);
		l->len[i] = 0;
	}
	ism_alog_close(l);
}

void ism_w_kick(struct ism_wctx *w, uint64_t ud)
{
	ism_ud_push(&w->h2_kicked, &w->n_h2_kicked, &w->cap_h2_kicked, ud);
}

/* The HTTP/2 sessions and upstream connections that streams gave frames
 * during the batch flush once each. A flush may kick others (a stream that
 * ends, a connection that closes): run to empty. */
static void kicked_run(struct ism_wctx *w)
{
	for (uint32_t i = 0; i < w->n_h2_kicked; i++) {
		uint64_t ud = w->h2_kicked[i];

		switch ((enum ism_op)(ud >> 56)) {
		case ISM_OP_CRECV:
			ism_h2_kicked(w, ud);
			break;
		case ISM_OP_URECV:
			ism_h2up_kicked(w, ud);
			break;
		default:
			ISM_BUG_ON(1);
		}
	}
	w->n_h2_kicked = 0;
}

/* How long the loop may wait: a second, or until the earliest stream
 * deadline (the wait's own timeout: no request for it). From the time the
 * loop last woke: what it did since makes the wait that much late, well
 * under a millisecond, and spares a clock read a turn. */
static struct __kernel_timespec wait_time(const struct ism_wctx *w)
{
	uint64_t ms = 1000;

	if (w->stream_wake <= w->now || w->n_hsq) /* handshakes wait for a turn */
		ms = 0;
	else if (w->stream_wake - w->now < 1000)
		ms = w->stream_wake - w->now;
	if (w->n_sqb && ms > 10) /* entries wait for the kernel's room */
		ms = 10;
	return (struct __kernel_timespec){.tv_sec = (long long)(ms / 1000),
					  .tv_nsec = (long long)(ms % 1000) * 1000000};
}

static int loop(struct ism_wctx *w)
{
	for (;;) {
		struct __kernel_timespec ts;
		struct io_uring_cqe *cqe;
		unsigned head, n = 0;
		int ret;

		buf_publish(w);
		if (w->draining && (w->n_active == 0 || w->now >= w->drain_deadline))
			break;
		if (w->n_sqb)
			ism_w_sqb_move(w);
		ts = wait_time(w);
		ret = io_uring_submit_and_wait_timeout(&w->ring, &cqe, 1, &ts, NULL);
		/* EBUSY (completions the kernel could not post yet) and EAGAIN (no
		 * memory for a request): reap what came and try again, as
		 * io_uring_enter(2) says; a ring that stays so is given up, and
		 * the master starts another worker. */
		if (ret == -EBUSY || ret == -EAGAIN)
			w->ring_busy++;
		else
			w->ring_busy = 0;
		if ((ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EBUSY &&
		     ret != -EAGAIN) ||
		    w->ring_busy > 1000) {
			ism_err("io_uring wait: %s", strerror(-ret));
			return 1;
		}
		w->now = ism_now_ms();
		if (!w->stale && ism_shm_gen_changed(w->shm, w->index))
			switch_table(w);
		/* Handshake steps that waited go first, then the completions
		 * (whose own steps wait if these took the turn's time). */
		w->hs_ns = 0;
		if (w->n_hsq)
			ism_sock_hs_run(w);
		io_uring_for_each_cqe(&w->ring, head, cqe)
		{
			handle_cqe(w, cqe);
			n++;
		}
		io_uring_cq_advance(&w->ring, n);
		if (w->now >= w->stream_wake)
			ism_stream_expire_due(w);
		/* Held bytes and flushes go before the loop waits again: nothing
		 * else would wake it for them. Receives that waited for a ring
		 * buffer resume last (the pass gave buffers back); one may deliver
		 * at once (a TLS session's cancelled multishot reads what the
		 * session holds), and what that queues runs in another turn. */
		do {
			ism_sock_held_run(w);
			ism_stream_after_batch(w);
			if (w->mirror != NULL) /* made by the first mirrored request */
				ism_mirror_after_batch(w);
			kicked_run(w);
			if (w->n_bufwait)
				ism_sock_resume_recvs(w);
		} while (w->n_held || w->n_h2_kicked);
	}
	if (w->n_active)
		ism_warn("drain time over: closing %u connections", w->n_active);
	ism_sess_drain_over(w);
	return 0;
}

/* The ring's table of registered descriptors, sparse, one index per descriptor
 * number a socket of this worker may get: its client and upstream
 * connections (two per connection), and what else it holds. Sockets whose
 * number is past it, or every socket where the kernel refuses the table, are
 * named by descriptor as before. */
static void setup_fixed_files(struct ism_wctx *w)
{
	struct rlimit rl;
	uint64_t n = 2 * (uint64_t)w->table->limits.max_connections + 1024;
	int ret;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < n)
		n = rl.rlim_cur;
	if (n > (1u << 20))
		n = 1u << 20;
	w->fdnum = malloc(n * sizeof(*w->fdnum));
	if (w->fdnum == NULL)
		return;
	ret = io_uring_register_files_sparse(&w->ring, (unsigned)n);
	if (ret < 0) {
		ism_info("io_uring: no registered descriptors (%s)", strerror(-ret));
		free(w->fdnum);
		w->fdnum = NULL;
		return;
	}
	for (uint32_t i = 0; i < n; i++)
		w->fdnum[i] = (int)i;
	w->n_fixed = (uint32_t)n;
}

/* The flags a worker asks for first: one issuer, completions run when it
 * waits. */
#define RING_FLAGS                                                                                 \
	(IORING_SETUP_SUBMIT_ALL | IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER |        \
	 IORING_SETUP_DEFER_TASKRUN)

/* A ring with RING_FLAGS, or on older kernels a plain one (*flags says which).
 * 0 or -errno. */
static int ring_init(unsigned entries, struct io_uring *ring, struct io_uring_params *p,
		     bool *flags)
{
	int ret;

	memset(p, 0, sizeof(*p));
	p->flags = RING_FLAGS;
	ret = io_uring_queue_init_params(entries, ring, p);
	*flags = ret == 0;
	if (ret < 0) {
		memset(p, 0, sizeof(*p));
		ret = io_uring_queue_init_params(entries, ring, p);
	}
	return ret;
}

/* Whether a multishot receive with a total-length cap (Linux 6.17) works on
 * ring, whose buffer ring br (registered, of group ISM_BGID) gets one buffer at
 * mem: two bytes sent on a socket pair to a multishot capped at one must end
 * it (no F_MORE: the cap stops it once reached, the last read taking what one
 * buffer holds). An older kernel refuses the cap (-EINVAL) or ignores it
 * (-EOPNOTSUPP here): its multishot would read ahead without bound. 0 or
 * -errno. */
static int probe_recv_mshot(struct io_uring *ring, struct io_uring_buf_ring *br, char *mem)
{
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	int sv[2], ret;

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		return -errno;
	io_uring_buf_ring_init(br);
	io_uring_buf_ring_add(br, mem, 64, 0, io_uring_buf_ring_mask(8), 0);
	io_uring_buf_ring_advance(br, 1);
	ret = write(sv[1], "xy", 2) == 2 ? 0 : -EIO;
	sqe = io_uring_get_sqe(ring);
	if (ret == 0 && sqe != NULL) {
		io_uring_prep_recv_multishot(sqe, sv[0], NULL, 0, 0);
		sqe->file_index = 1; /* the cap (optlen) */
		sqe->flags |= IOSQE_BUFFER_SELECT;
		sqe->buf_group = ISM_BGID;
		ret = io_uring_submit_and_wait(ring, 1);
	}
	if (ret >= 0 && io_uring_peek_cqe(ring, &cqe) == 0)
		ret = cqe->res < 0 ? cqe->res : !(cqe->flags & IORING_CQE_F_MORE) ? 0 : -EOPNOTSUPP;
	else if (ret >= 0)
		ret = -EIO;
	close(sv[0]);
	close(sv[1]);
	return ret;
}

void ism_worker_ring_probe(struct ism_ring_probe *pr)
{
	struct io_uring ring;
	struct io_uring_params p;
	struct io_uring_buf_reg reg = {.ring_entries = 8, .bgid = ISM_BGID};
	long page = sysconf(_SC_PAGESIZE);
	char *br;

	*pr = (struct ism_ring_probe){.buf_ring = -ENOSYS, .recv_mshot = -ENOSYS};
	pr->ring = ring_init(8, &ring, &p, &pr->flags);
	if (pr->ring < 0)
		return;
	pr->features = p.features;
	br = mmap(NULL, (size_t)page, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	if (br == MAP_FAILED) {
		pr->buf_ring = -errno;
	} else {
		reg.ring_addr = (unsigned long)br;
		pr->buf_ring = io_uring_register_buf_ring(&ring, &reg, 0);
		/* The ring's 8 entries take 128 bytes: its buffer lies behind. */
		if (pr->buf_ring == 0)
			pr->recv_mshot =
			    probe_recv_mshot(&ring, (struct io_uring_buf_ring *)br, br + 1024);
	}
	/* The multishot still armed goes with the ring, before its buffer. */
	io_uring_queue_exit(&ring);
	if (br != MAP_FAILED)
		munmap(br, (size_t)page);
}

/* Plaintext HTTP/1.1 connections keep one receive armed where the kernel
 * caps what it reads ahead (6.17): a request then costs two submissions, not
 * four. The master probed the kernel (recv_mshot) before it started us. */
static void use_recv_mshot(struct ism_wctx *w, int recv_mshot)
{
	w->mshot = recv_mshot == 0;
	if (w->mshot)
		ism_debug("io_uring: multishot receives on plaintext HTTP/1.1 connections");
	else
		ism_info("io_uring: no multishot receives (%s): one receive per read",
			 strerror(-recv_mshot));
}

/* Fills the context w (zeroed) as args give it, its ring not yet made.
 * 0 or -ENOMEM. */
static int wctx_init(struct ism_wctx *w, const struct ism_worker_args *args)
{
	w->alog.fd = -1;
	w->shm = args->shm;
	w->index = args->index;
	w->slot = ism_shm_worker(args->shm, args->index);
	w->st = &w->slot->stats;
	w->listen_fds = args->listen_fds;
	w->n_listen = args->n_listen;
	w->master_fd = args->master_fd;
	w->notify_fd = args->notify_fd;
	w->now = ism_now_ms();
	w->stream_wake = UINT64_MAX;
	w->conn_seq = (uint64_t)getpid() << 40;
	w->accepts = calloc((size_t)w->n_listen + 1, sizeof(*w->accepts));
	w->accept_pfd = calloc((size_t)w->n_listen + 1, sizeof(*w->accept_pfd));
	w->sqb = malloc(ISM_SQ_BACKLOG * sizeof(*w->sqb));
	if (w->accepts == NULL || w->accept_pfd == NULL || w->sqb == NULL)
		return -ENOMEM;
	if (getrandom(&w->rng, sizeof(w->rng), 0) != sizeof(w->rng) || w->rng == 0)
		w->rng = 0x9E3779B97F4A7C15ULL ^ (uint64_t)getpid();
	return 0;
}

/* w's ring, with SINGLE_ISSUER and DEFER_TASKRUN where the kernel takes
 * them. 0 or -errno (logged). */
static int ring_open(struct ism_wctx *w)
{
	struct io_uring_params p;
	bool flags;
	int ret = ring_init(RING_ENTRIES, &w->ring, &p, &flags);

	if (ret == 0 && !flags)
		ism_info(
		    "io_uring: the kernel refuses SINGLE_ISSUER and DEFER_TASKRUN: a plain ring");
	if (ret < 0) {
		ism_err("io_uring_queue_init: %s", strerror(-ret));
		return ret;
	}
	/* The ring's own descriptor registered: io_uring_enter skips its lookup. */
	if (io_uring_register_ring_fd(&w->ring) < 0)
		ism_info("io_uring: the ring's descriptor is not registered");
	return 0;
}

/* Frees what the worker grew (extra buffers, waiting lists, the fixed files'
 * numbers), then closes the ring before unmapping the buffers it reads into. */
static void ring_close(struct ism_wctx *w)
{
	for (uint32_t i = 0; i < w->n_xbufs; i++)
		free(w->xbufs[i]);
	free(w->xbufs);
	free(w->xfree);
	free(w->bufwait);
	free(w->held);
	free(w->h2_kicked);
	free(w->hsq);
	free(w->fdnum);
	io_uring_queue_exit(&w->ring);
	if (w->bufs)
		munmap(w->bufs, (size_t)w->n_bufs * ISM_BUF_SIZE);
	if (w->br)
		munmap(w->br, w->n_bufs * sizeof(struct io_uring_buf));
}

/* Arms the accepts, the tick, the signals and the master's socket, runs the
 * loop until the worker ends, then frees the connections and streams: the
 * worker's exit status. */
static int worker_run(struct ism_wctx *w)
{
	int status;

	w->h2pages = ism_h2pages_new(); /* NULL: HTTP/2's big blocks from glibc */
	for (int l = 0; l < w->n_listen; l++)
		arm_accept(w, l);
	arm_tick(w);
	arm_signal(w);
	arm_master(w);
	status = loop(w);
	final_log_flush(w);
	ism_sess_free_all(w);
	ism_stream_free_all(w);
	ism_mirror_free(w);
	ism_extauthz_free(w);
	ism_up_free_all(w);
	ism_h2pages_free(w->h2pages);
	w->h2pages = NULL;
	return status;
}

int ism_worker_main(const struct ism_worker_args *args)
{
	struct ism_wctx *w;
	char role[32];
	int ret, status = 1;

	snprintf(role, sizeof(role), "worker %d", args->index);
	ism_log_set_role(role);
	ism_tls_mem_cache();
	w = calloc(1, sizeof(*w));
	if (w == NULL)
		return 1;
	if (wctx_init(w, args) < 0)
		goto out_free;
	if (setup_signals(w) < 0) {
		ism_err("signalfd: %s", strerror(errno));
		goto out_free;
	}
	if (ring_open(w) < 0)
		goto out_signal;
	w->rs = ism_router_scratch_new();
	if (w->rs == NULL || ism_tls_init(w) < 0)
		goto out_ring;
	switch_table(w);
	if (w->table == NULL) {
		ism_err("no published configuration");
		goto out_router;
	}
	/* Sized by the configuration the worker starts with: a reload that
	 * changes it starts a new set of workers (master/master.c). */
	ret = setup_buffers(w, w->table->limits.receive_buffers);
	if (ret < 0) {
		ism_err("provided buffer ring: %s", strerror(-ret));
		goto out_router;
	}
	use_recv_mshot(w, args->recv_mshot);
	if (ism_alog_open(&w->alog, &w->table->access_log, &w->st->access_log_dropped) < 0)
		goto out_router;
	setup_fixed_files(w);
	status = worker_run(w);
out_router:
	ism_shm_release(w->shm, w->index);
	ism_lb_free(w->lb);
	ism_authn_install(w, NULL, 0);
	ism_router_scratch_free(w->rs);
out_ring:
	ism_tls_free(w);
	ring_close(w);
out_signal:
	close(w->signal_fd);
out_free:
	free(w->accepts);
	free(w->accept_pfd);
	free(w->sqb);
	free(w);
	return status;
}
