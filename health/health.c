/* SPDX-License-Identifier: Apache-2.0 */

#include "health/health.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/random.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509v3.h>

#include "conf/tlsctx.h"
#include "health/grpccheck.h"
#include "health/outlier.h"
#include "lib/ascii.h"
#include "lib/log.h"
#include "shm/table.h"
#include "worker/http1.h"
#include "worker/proxyproto.h"

/* Times are ism_now_ms() milliseconds, the clock the master passes to
 * ism_health_run; set_table reads it itself to schedule new endpoints. */

/* An HTTP check's response head: its buffer grows from HC_HEAD_MIN up to
 * HC_HEAD_MAX bytes (Envoy's default limit on a response's headers is 60 KiB),
 * and holds no more than HC_HEADERS fields. The body is read and dropped. */
#define HC_HEAD_MIN 2048
#define HC_HEAD_MAX 65536
#define HC_HEADERS  100
/* What one read of a gRPC check's exchange takes. */
#define HC_READ_MAX 4096
#define HC_EVENTS   64

enum hc_state {
	HC_IDLE = 0,   /* waiting for next_ms */
	HC_CONNECTING, /* non-blocking connect in progress */
	HC_PROXY,      /* PROXY header being sent (a cluster with proxyProtocol) */
	HC_HANDSHAKE,  /* TLS handshake in progress (a cluster that originates TLS) */
	HC_SENDING,    /* request partly written */
	HC_READING,    /* reading the response to its end (gRPC: the verdict) */
};

/* What one check came to (Envoy's HealthCheckFailureType). */
enum hc_verdict {
	HC_PASS = 0,
	HC_FAIL_NETWORK, /* connect failure, timeout, no or bad response: counted */
	HC_FAIL_STATUS,	 /* a status outside the expected ranges: unhealthy at once */
};

/* One checked endpoint, by shared endpoint id. Everything it needs is copied
 * from the table, so a check in progress never reads a generation that the
 * master may reclaim after the next set_table. */
struct hc_ep {
	uint32_t id;
	uint32_t seq; /* bumped per check: tags epoll events, so a stale one is dropped */
	uint8_t state;
	uint8_t type;	 /* enum ism_hc_type */
	bool seen;	 /* set_table bookkeeping */
	bool checked;	 /* a result was recorded (Envoy's first_check_, inverted) */
	bool spread_due; /* checked at once when added: its next wait takes its offset */
	bool suspended;	 /* in maintenance (admin maint): not checked */
	int fd;
	uint32_t armed; /* epoll events fd waits for */
	uint32_t want;	/* events the last I/O that would block waits for */
	SSL_CTX *ctx;	/* the cluster's TLS client context (a reference); NULL: plaintext */
	SSL *ssl;	/* the check's session, while connected */
	bool mesh;	/* ctx is ISTIO_MUTUAL's (a gRPC check's ALPN) */
	char sni[256];	/* server name sent: the DestinationRule's sni, else the Host */
	uint8_t pp;	/* the PROXY header the check starts with (enum ism_upstream_pp) */
	uint8_t pp_len, pp_sent;
	uint8_t pp_hdr[ISM_PP_WRITE_MAX];
	uint64_t next_ms;
	uint64_t deadline_ms;
	uint32_t succ, fail; /* consecutive results */

	struct sockaddr_storage addr;
	socklen_t addrlen;
	uint32_t interval_ms, timeout_ms, healthy_thr, unhealthy_thr;
	uint32_t unhealthy_interval_ms, unhealthy_edge_ms, healthy_edge_ms;
	uint32_t initial_jitter_ms, jitter_ms, jitter_pct;
	uint32_t n_statuses;
	uint16_t (*statuses)[2];
	/* HTTP: the request; gRPC: the :authority and the service asked about,
	 * each NUL-terminated, one after the other */
	char *req;
	size_t req_len, sent;	     /* sent: of what ep_output gives */
	struct ism_grpc_check *grpc; /* the gRPC exchange, while connected */
	char label[ISM_EP_KEY_MAX];  /* the endpoint's key, for logs */

	/* An HTTP check's response, read to its end (as Envoy decides a check
	 * on the complete response): the head in rbuf (rcap bytes, got of them
	 * read; allocated while connected), then the final head's status and its
	 * body, read and dropped. */
	char *rbuf;
	size_t rcap, got;
	int status; /* 0: the final head is not read yet */
	struct ism_body body;
};

struct ism_health {
	struct ism_shm *shm;
	int epfd;
	struct ism_tlsctx_cache ctxs; /* the clusters' client contexts, by settings */
	uint64_t short_log_at;	      /* monotonic: the checker's own shortage is said again */
	uint64_t rng;		      /* xorshift64* state, seeded from getrandom */
	struct hc_ep **by_id;	      /* ISM_MAX_ENDPOINTS entries */
	struct hc_ep **list;	      /* the checked endpoints, dense */
	uint32_t n, cap;
	/* the table of the last ism_health_set_table (the published one): the
	 * clusters where a passing check ends an ejection */
	const struct ism_table *table;
	/* The checks' open descriptors, and at most how many (half the open-file
	 * limit): a first round of thousands of checks waits for descriptors
	 * rather than failing for want of them. */
	uint32_t open, max_open;
	/* No check is due, and none times out, before next_due (a scan of every
	 * checked endpoint finds them); maintenance states are looked at from
	 * next_poll, once a second. A turn of the master's loop before both
	 * handles the checks' events only: the scan of thousands of endpoints
	 * ran at every turn, several for each check. */
	uint64_t next_due, next_poll;
};

/* At most half the open-file limit in checks at once, 16 at least. */
static void max_open_set(struct ism_health *h)
{
	struct rlimit rl;

	h->max_open = getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur / 2 < UINT32_MAX
			  ? (uint32_t)(rl.rlim_cur / 2)
			  : UINT32_MAX;
	if (h->max_open < 16)
		h->max_open = 16;
}

/* Whether e waits for the first result that decides it: an endpoint not
 * healthy (a new one, one back from maintenance) without a result yet. One
 * already healthy when its service got a check serves meanwhile, and is
 * checked at its offset into the interval. */
static bool ep_first_due(const struct ism_health *h, const struct hc_ep *e)
{
	return !e->checked && !e->suspended &&
	       atomic_load(&h->shm->hdr->eps[e->id].health) != ISM_EP_HEALTHY;
}

bool ism_health_settled(const struct ism_health *h)
{
	for (uint32_t i = 0; i < h->n; i++)
		if (ep_first_due(h, h->list[i]))
			return false;
	return true;
}

uint64_t ism_health_settle_by(const struct ism_health *h)
{
	uint64_t by = 0;

	for (uint32_t i = 0; i < h->n; i++) {
		const struct hc_ep *e = h->list[i];
		uint64_t end = e->state == HC_IDLE ? e->next_ms + e->timeout_ms : e->deadline_ms;

		if (ep_first_due(h, e) && end > by)
			by = end;
	}
	return by;
}

int ism_health_create(struct ism_shm *shm, struct ism_health **out)
{
	struct ism_health *h;
	int ret;

	h = calloc(1, sizeof(*h));
	if (!h) {
		ret = -ENOMEM;
		goto fail;
	}
	h->shm = shm;
	h->by_id = calloc(ISM_MAX_ENDPOINTS, sizeof(*h->by_id));
	if (!h->by_id) {
		ret = -ENOMEM;
		goto fail_h;
	}
	h->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (h->epfd < 0) {
		ret = -errno;
		goto fail_by_id;
	}
	max_open_set(h);
	/* Jitter only needs to differ between appliances and restarts. */
	if (getrandom(&h->rng, sizeof(h->rng), GRND_NONBLOCK) != sizeof(h->rng) || h->rng == 0)
		h->rng = 0x9E3779B97F4A7C15ULL ^ (uint64_t)getpid() ^ ism_now_ms();
	*out = h;
	return 0;

fail_by_id:
	free(h->by_id);
fail_h:
	free(h);
fail:
	return ret;
}

static void ep_close(struct ism_health *h, struct hc_ep *e)
{
	SSL_free(e->ssl);
	e->ssl = NULL;
	ism_grpc_check_free(e->grpc);
	e->grpc = NULL;
	free(e->rbuf);
	e->rbuf = NULL;
	e->rcap = 0;
	if (e->fd >= 0) {
		/* close() also drops the descriptor from the epoll set */
		close(e->fd);
		e->fd = -1;
		h->open--;
	}
	e->armed = 0;
	e->state = HC_IDLE;
	e->seq++;
}

static void ep_free(struct ism_health *h, struct hc_ep *e)
{
	ep_close(h, e);
	SSL_CTX_free(e->ctx);
	free(e->statuses);
	free(e->req);
	free(e);
}

void ism_health_destroy(struct ism_health *h)
{
	uint32_t i;

	if (!h)
		return;
	for (i = 0; i < h->n; i++)
		ep_free(h, h->list[i]);
	ism_tlsctx_cache_free(&h->ctxs);
	free(h->list);
	free(h->by_id);
	close(h->epfd);
	free(h);
}

int ism_health_fd(const struct ism_health *h)
{
	return h->epfd;
}

void ism_health_admin_changed(struct ism_health *h)
{
	h->next_poll = 0;
}

/* --- scheduling --- */

/* Something is due at t: the next turn's scan must not come later. */
static void due_at(struct ism_health *h, uint64_t t)
{
	if (t < h->next_due)
		h->next_due = t;
}

/* e's next check at t, which the scan must not pass over. */
static void ep_next(struct ism_health *h, struct hc_ep *e, uint64_t t)
{
	e->next_ms = t;
	due_at(h, t);
}

static uint32_t hc_rand(struct ism_health *h)
{
	h->rng ^= h->rng >> 12;
	h->rng ^= h->rng << 25;
	h->rng ^= h->rng >> 27;
	return (uint32_t)((h->rng * 0x2545F4914F6CDD1DULL) >> 32);
}

/* A fixed per-endpoint offset in [0, span): consecutive ids land far apart
 * (Knuth's multiplicative hash), so a service's endpoints are spread evenly. */
static uint32_t ep_offset(const struct hc_ep *e, uint32_t span)
{
	return span ? (uint32_t)(e->id * 2654435761u) % span : 0;
}

/* Envoy's intervalWithJitter: both jitters add to the base wait; the percent is
 * of the wait chosen (which is `interval` for a steady healthy host). Never 0,
 * so a host cannot be checked in a busy loop. */
static uint64_t ep_wait(struct ism_health *h, const struct hc_ep *e, uint32_t base)
{
	uint64_t wait = base;
	uint64_t pct_mod = (uint64_t)base * e->jitter_pct / 100;

	if (pct_mod)
		wait += hc_rand(h) % pct_mod;
	if (e->jitter_ms)
		wait += hc_rand(h) % e->jitter_ms;
	return wait ? wait : 1;
}

/* The checker's own shortage (descriptors, memory) says nothing about the
 * endpoint: the check ends without a result and is tried again at the next
 * interval; said at most once a second, whatever the endpoints. */
static void ep_no_result(struct ism_health *h, struct hc_ep *e, const char *what, uint64_t now)
{
	if (now >= h->short_log_at) {
		ism_err("health check of %s: %s; no result, tried again next interval", e->label,
			what);
		h->short_log_at = now + 1000;
	}
	ep_close(h, e);
	ep_next(h, e, now + ep_wait(h, e, e->interval_ms));
}

/* Sets the next check after one ended, with the wait of Envoy's interval()
 * (base chosen by the caller). An endpoint checked at once when it was added
 * takes its spreading offset here, once: without it every endpoint of a
 * master that just started would stay in one burst forever. */
static void ep_schedule(struct ism_health *h, struct hc_ep *e, uint32_t base, uint64_t now)
{
	uint64_t wait = ep_wait(h, e, base);

	if (e->spread_due) {
		wait += ep_offset(e, base);
		e->spread_due = false;
	}
	ep_next(h, e, now + wait);
}

/* --- results --- */

static struct ism_ep_state *ep_state(struct ism_health *h, uint32_t id)
{
	return &h->shm->hdr->eps[id];
}

/* Every change of health moves the epoch, so the master recomputes the
 * priority loads of the clusters. */
static void set_health(struct ism_health *h, uint32_t id, uint32_t health)
{
	struct ism_ep_state *st = ep_state(h, id);

	atomic_store(&st->health, health);
	atomic_store(&st->health_changed_ms, ism_wall_ms());
	/* Healthy again: a cluster with a warmup scales its weight up from now. */
	if (health == ISM_EP_HEALTHY)
		atomic_store(&st->warm_since_ms, ism_now_ms());
	atomic_fetch_add(&h->shm->hdr->health_epoch, 1);
}

/* A pass. Envoy's handleSuccess: an unhealthy host becomes healthy at its very
 * first check, else after healthy_threshold consecutive passes; in between it
 * is checked at healthy_edge_interval. A host healthy after the pass is
 * returned from outlier ejection (successful_active_health_check_uneject_host). */
static void ep_pass(struct ism_health *h, struct hc_ep *e, uint64_t now)
{
	struct ism_ep_state *st = ep_state(h, e->id);
	uint32_t base = e->interval_ms;

	e->fail = 0;
	e->succ++;
	if (atomic_load(&st->health) != ISM_EP_HEALTHY) {
		if (!e->checked || e->succ >= e->healthy_thr) {
			set_health(h, e->id, ISM_EP_HEALTHY);
			ism_notice("endpoint %s is now healthy", e->label);
		} else {
			base = e->healthy_edge_ms;
		}
	}
	if (atomic_load(&st->health) == ISM_EP_HEALTHY &&
	    ism_outlier_uneject(h->table, h->shm->hdr, e->id, now) > 0) {
		atomic_fetch_add(&h->shm->hdr->health_epoch, 1);
		ism_notice("endpoint %s returned from ejection by a passing health check",
			   e->label);
	}
	ep_schedule(h, e, base, now);
}

/* A failure. Envoy's setUnhealthy: a status outside the expected ranges marks a
 * healthy host unhealthy at once; network failures and timeouts need
 * unhealthy_threshold in a row, checked at unhealthy_edge_interval meanwhile. */
static void ep_fail(struct ism_health *h, struct hc_ep *e, enum hc_verdict v, const char *reason,
		    uint64_t now)
{
	struct ism_ep_state *st = ep_state(h, e->id);
	uint32_t base = e->unhealthy_interval_ms;

	atomic_fetch_add_explicit(&st->hc_failures, 1, memory_order_relaxed);
	e->succ = 0;
	ism_debug("health check of %s failed: %s", e->label, reason);
	if (atomic_load(&st->health) == ISM_EP_HEALTHY) {
		if (v == HC_FAIL_STATUS || ++e->fail >= e->unhealthy_thr) {
			set_health(h, e->id, ISM_EP_UNHEALTHY);
			ism_warn("endpoint %s is now unhealthy: %s", e->label, reason);
		} else {
			base = e->unhealthy_edge_ms;
		}
	}
	ep_schedule(h, e, base, now);
}

/* Ends the check in progress (or the one that could not start) and applies its
 * result. */
static void ep_result(struct ism_health *h, struct hc_ep *e, enum hc_verdict v, const char *reason,
		      uint64_t now)
{
	ep_close(h, e);
	atomic_fetch_add_explicit(&ep_state(h, e->id)->hc_checks, 1, memory_order_relaxed);
	if (v == HC_PASS)
		ep_pass(h, e, now);
	else
		ep_fail(h, e, v, reason, now);
	e->checked = true;
}

static void ep_fail_errno(struct ism_health *h, struct hc_ep *e, const char *what, int err,
			  uint64_t now)
{
	char reason[96];

	snprintf(reason, sizeof(reason), "%s: %s", what, strerror(err));
	ep_result(h, e, HC_FAIL_NETWORK, reason, now);
}

/* --- the check --- */

static uint64_t ep_tag(const struct hc_ep *e)
{
	return ((uint64_t)e->seq << 32) | e->id;
}

static int ep_watch(struct ism_health *h, struct hc_ep *e, uint32_t events, int op)
{
	struct epoll_event ev = {.events = events, .data.u64 = ep_tag(e)};

	if (op == EPOLL_CTL_MOD && e->armed == events)
		return 0;
	if (epoll_ctl(h->epfd, op, e->fd, &ev) < 0)
		return -errno;
	e->armed = events;
	return 0;
}

static void ep_start(struct ism_health *h, struct hc_ep *e, uint64_t now)
{
	int fd, err;

	if (h->open >= h->max_open) {
		/* A descriptor when one is free: soon, without a result. */
		ep_next(h, e, now + 1 + hc_rand(h) % 10);
		return;
	}
	fd = socket(e->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		char why[96];

		snprintf(why, sizeof(why), "socket: %s", strerror(errno));
		ep_no_result(h, e, why, now);
		return;
	}
	e->seq++;
	e->fd = fd;
	h->open++;
	e->got = 0;
	e->status = 0;
	e->sent = 0;
	e->deadline_ms = now + e->timeout_ms;
	due_at(h, e->deadline_ms);
	e->state = HC_CONNECTING;
	if (connect(fd, (const struct sockaddr *)&e->addr, e->addrlen) < 0 &&
	    errno != EINPROGRESS) {
		ep_fail_errno(h, e, "connect", errno, now);
		return;
	}
	err = ep_watch(h, e, EPOLLOUT, EPOLL_CTL_ADD);
	if (err < 0) {
		ism_err("health check of %s: epoll: %s", e->label, strerror(-err));
		ep_close(h, e);
		ep_next(h, e, now + ep_wait(h, e, e->interval_ms));
	}
}

static bool status_expected(const struct hc_ep *e, int status)
{
	uint32_t i;

	for (i = 0; i < e->n_statuses; i++)
		if (status >= e->statuses[i][0] && status < e->statuses[i][1])
			return true;
	return false;
}

/* A failure of the TLS session: the certificate check's verdict when it
 * failed, else the library's reason, else the connection's end. */
static void ep_tls_fail(struct ism_health *h, struct hc_ep *e, const char *what, int err,
			uint64_t now)
{
	long v = e->ssl ? SSL_get_verify_result(e->ssl) : X509_V_OK;
	unsigned long lib = ERR_peek_last_error();
	char reason[192];

	if (v != X509_V_OK)
		snprintf(reason, sizeof(reason), "%s: certificate: %s", what,
			 X509_verify_cert_error_string(v));
	else if (lib != 0)
		snprintf(reason, sizeof(reason), "%s: %s", what, ERR_reason_error_string(lib));
	else
		snprintf(reason, sizeof(reason), "%s: %s", what,
			 err ? strerror(err) : "connection closed");
	ERR_clear_error();
	ep_result(h, e, HC_FAIL_NETWORK, reason, now);
}

/* Before an SSL call: SSL_get_error reads the thread's error queue and errno
 * after it, so neither may hold anything older. */
static void ssl_call_begin(void)
{
	ERR_clear_error();
	errno = 0;
}

/* What an SSL call that did not complete comes to: -EAGAIN with e->want set,
 * 0 at the peer's end, else -EPROTO (or the socket's -errno). */
static ssize_t ssl_outcome(struct hc_ep *e, int ret)
{
	switch (SSL_get_error(e->ssl, ret)) {
	case SSL_ERROR_WANT_READ:
		e->want = EPOLLIN;
		return -EAGAIN;
	case SSL_ERROR_WANT_WRITE:
		e->want = EPOLLOUT;
		return -EAGAIN;
	case SSL_ERROR_ZERO_RETURN:
		return 0;
	case SSL_ERROR_SYSCALL:
		return errno ? -errno : -EPROTO;
	default:
		return -EPROTO;
	}
}

/* One read (wr false) or write of the check's bytes, in plaintext or through
 * the TLS session. Returns the count, 0 at the end of the stream, -EAGAIN with
 * e->want the events to wait for, or another -errno (-EPROTO: TLS). */
static ssize_t ep_io(struct hc_ep *e, bool wr, void *p, size_t n)
{
	size_t done = 0;
	ssize_t r;

	if (e->ssl != NULL) {
		int ok;

		ssl_call_begin();
		ok = wr ? SSL_write_ex(e->ssl, p, n, &done) : SSL_read_ex(e->ssl, p, n, &done);
		return ok ? (ssize_t)done : ssl_outcome(e, 0);
	}
	do
		r = wr ? send(e->fd, p, n, MSG_NOSIGNAL) : recv(e->fd, p, n, 0);
	while (r < 0 && errno == EINTR);
	if (r >= 0)
		return r;
	if (errno != EAGAIN && errno != EWOULDBLOCK)
		return -errno;
	e->want = wr ? EPOLLOUT : EPOLLIN;
	return -EAGAIN;
}

/* I/O that would block: the descriptor waits for what it needs. */
static void ep_wait_io(struct ism_health *h, struct hc_ep *e, uint64_t now)
{
	int err = ep_watch(h, e, e->want, EPOLL_CTL_MOD);

	if (err < 0)
		ep_fail_errno(h, e, "epoll", -err, now);
}

/* An I/O error: a TLS one with the session's reason. */
static void ep_io_fail(struct ism_health *h, struct hc_ep *e, const char *what, ssize_t r,
		       uint64_t now)
{
	if (e->ssl != NULL)
		ep_tls_fail(h, e, what, r == -EPROTO ? 0 : (int)-r, now);
	else
		ep_fail_errno(h, e, what, (int)-r, now);
}

/* Reads what the check's connection has into p: the bytes read (0 at its
 * end), or -1 when there is nothing to do now (the read waits for the socket,
 * or it failed and the check ended). */
static ssize_t ep_recv(struct ism_health *h, struct hc_ep *e, void *p, size_t n, uint64_t now)
{
	ssize_t r = ep_io(e, false, p, n);

	if (r == -EAGAIN) {
		ep_wait_io(h, e, now);
		return -1;
	}
	if (r < 0) {
		ep_io_fail(h, e, "recv", r, now);
		return -1;
	}
	return r;
}

static bool ep_write_out(struct ism_health *h, struct hc_ep *e, uint64_t now);

static void ep_grpc_read(struct ism_health *h, struct hc_ep *e, uint64_t now)
{
	char why[128], buf[HC_READ_MAX];
	ssize_t r;

	for (;;) {
		r = ep_recv(h, e, buf, sizeof(buf), now);
		if (r < 0)
			return;
		switch (
		    ism_grpc_check_in(e->grpc, (const uint8_t *)buf, (size_t)r, why, sizeof(why))) {
		case ISM_GRPC_MORE:
			/* what the session answers (acknowledgements) goes out
			 * before the next read; a write that waits for the
			 * socket resumes from HC_SENDING */
			if (!ep_write_out(h, e, now))
				return;
			continue;
		case ISM_GRPC_SERVING:
			ep_result(h, e, HC_PASS, NULL, now);
			return;
		case ISM_GRPC_FAILED:
			ep_result(h, e, HC_FAIL_STATUS, why, now);
			return;
		case ISM_GRPC_BROKEN:
			ep_result(h, e, HC_FAIL_NETWORK, why, now);
			return;
		}
	}
}

/* The verdict on a complete response: its status. */
static void ep_verdict(struct ism_health *h, struct hc_ep *e, uint64_t now)
{
	char reason[64];

	if (status_expected(e, e->status)) {
		ep_result(h, e, HC_PASS, NULL, now);
		return;
	}
	snprintf(reason, sizeof(reason), "unexpected status %d", e->status);
	ep_result(h, e, HC_FAIL_STATUS, reason, now);
}

/* Takes the got bytes read of an HTTP check's response: its heads (an interim
 * 1xx one is skipped, as Envoy's codec skips it, 101 excepted), then the final
 * head's body, whose bytes are dropped. true: more is to be read; false: the
 * check ended, its result given. */
static bool ep_take(struct ism_health *h, struct hc_ep *e, uint64_t now)
{
	static const struct ism_http_limits lim = {.max_head_bytes = HC_HEAD_MAX,
						   .max_headers = HC_HEADERS};
	size_t data_len;
	ssize_t n;
	bool done;

	while (e->status == 0) {
		struct ism_http_header hdrs[HC_HEADERS];
		struct ism_http_resp resp = {.headers = hdrs};

		n = ism_http_parse_response(e->rbuf, e->got, &lim, &resp);
		if (n == ISM_HTTP_INCOMPLETE)
			return true;
		if (n < 0) {
			ep_result(h, e, HC_FAIL_NETWORK, "bad response", now);
			return false;
		}
		e->got -= (size_t)n;
		memmove(e->rbuf, e->rbuf + n, e->got);
		if (resp.status >= 100 && resp.status < 200 && resp.status != 101)
			continue;
		e->status = resp.status;
		e->body = (struct ism_body){.mode = ISM_BODY_NONE};
		if (!ism_http_resp_has_body(resp.status, "GET", 3))
			break;
		if (resp.framing.chunked) {
			e->body.mode = ISM_BODY_CHUNKED;
			ism_chunked_init(&e->body.ch);
		} else if (resp.framing.content_length > 0) {
			e->body.mode = ISM_BODY_CL;
			e->body.remaining = (uint64_t)resp.framing.content_length;
		} else if (resp.framing.content_length < 0) {
			e->body.mode = ISM_BODY_CLOSE;
		}
	}
	n = ism_body_take(&e->body, e->rbuf, e->got, &data_len, &done);
	e->got = 0;
	if (n < 0) {
		ep_result(h, e, HC_FAIL_NETWORK, "bad response body", now);
		return false;
	}
	if (done)
		ep_verdict(h, e, now);
	return !done;
}

/* The connection's end while an HTTP check reads: the end of a body the close
 * delimits, else a response cut short. */
static void ep_eof(struct ism_health *h, struct hc_ep *e, uint64_t now)
{
	if (e->status != 0 && e->body.mode == ISM_BODY_CLOSE)
		ep_verdict(h, e, now);
	else
		ep_result(h, e, HC_FAIL_NETWORK,
			  e->status	? "connection closed within the response body"
			  : e->got == 0 ? "connection closed without a response"
					: "connection closed within the response head",
			  now);
}

static void ep_read(struct ism_health *h, struct hc_ep *e, uint64_t now)
{
	ssize_t r;

	if (e->type == ISM_HC_GRPC) {
		ep_grpc_read(h, e, now);
		return;
	}
	for (;;) {
		if (e->got == e->rcap) {
			/* A head too large for the limit is refused by the parser
			 * before it fills HC_HEAD_MAX bytes. */
			size_t cap = e->rcap ? e->rcap * 2 : HC_HEAD_MIN;
			char *p;

			if (cap > HC_HEAD_MAX) {
				ep_result(h, e, HC_FAIL_NETWORK, "response head too large", now);
				return;
			}
			if ((p = realloc(e->rbuf, cap)) == NULL) {
				ep_no_result(h, e, "out of memory", now);
				return;
			}
			e->rbuf = p;
			e->rcap = cap;
		}
		r = ep_recv(h, e, e->rbuf + e->got, e->rcap - e->got, now);
		if (r < 0)
			return;
		if (r == 0) {
			ep_eof(h, e, now);
			return;
		}
		e->got += (size_t)r;
		if (!ep_take(h, e, now))
			return;
	}
}

/* What the check writes: an HTTP check's request, a gRPC check's exchange's
 * (asked each time: a reload may replace req while it is being sent). */
static void ep_output(const struct hc_ep *e, const uint8_t **p, size_t *n)
{
	if (e->grpc != NULL) {
		ism_grpc_check_request(e->grpc, p, n);
	} else {
		*p = (const uint8_t *)e->req;
		*n = e->req_len;
	}
}

/* Writes what the check has not sent yet: true once all of it is out; false
 * when the write waits for the socket (in HC_SENDING) or failed (the check
 * ended). */
static bool ep_write_out(struct ism_health *h, struct hc_ep *e, uint64_t now)
{
	const uint8_t *out;
	size_t len;
	ssize_t r;

	for (ep_output(e, &out, &len); e->sent < len; ep_output(e, &out, &len)) {
		r = ep_io(e, true, (void *)(out + e->sent), len - e->sent);
		if (r == -EAGAIN) {
			e->state = HC_SENDING;
			ep_wait_io(h, e, now);
			return false;
		}
		if (r <= 0) {
			ep_io_fail(h, e, "send", r ? r : -EPIPE, now);
			return false;
		}
		e->sent += (size_t)r;
	}
	return true;
}

static void ep_send(struct ism_health *h, struct hc_ep *e, uint64_t now)
{
	if (!ep_write_out(h, e, now))
		return;
	e->state = HC_READING;
	ep_read(h, e, now);
}

/* Connected, and through TLS where the cluster has it. Envoy's TCP check with
 * no payload passes here (an SSL socket is connected once its handshake
 * completed); an HTTP check sends its request. */
static void ep_connected(struct ism_health *h, struct hc_ep *e, uint64_t now)
{
	switch (e->type) {
	case ISM_HC_TCP:
		ep_result(h, e, HC_PASS, NULL, now);
		return;
	case ISM_HC_GRPC:
		e->grpc = ism_grpc_check_new(e->req, e->req + strlen(e->req) + 1, e->ctx != NULL,
					     e->timeout_ms);
		if (e->grpc == NULL) {
			ep_no_result(h, e, "out of memory", now);
			return;
		}
		break;
	default:
		break;
	}
	e->state = HC_SENDING;
	ep_send(h, e, now);
}

static void ep_handshake(struct ism_health *h, struct hc_ep *e, uint64_t now)
{
	ssize_t r;
	int ret;

	ssl_call_begin();
	ret = SSL_connect(e->ssl);
	if (ret == 1) {
		ep_connected(h, e, now);
		return;
	}
	r = ssl_outcome(e, ret);
	if (r == -EAGAIN)
		ep_wait_io(h, e, now);
	else
		ep_tls_fail(h, e, "TLS handshake", r == -EPROTO || r == 0 ? 0 : (int)-r, now);
}

/* The session over the connected socket, with the cluster's server name. */
static void ep_start_tls(struct ism_health *h, struct hc_ep *e, uint64_t now)
{
	e->ssl = SSL_new(e->ctx);
	if (e->ssl == NULL || SSL_set_fd(e->ssl, e->fd) != 1) {
		ep_tls_fail(h, e, "TLS session", ENOMEM, now);
		return;
	}
	/* A server that closes after its answer without close_notify has
	 * still answered: its end reads as the end of the stream. */
	SSL_set_options(e->ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_set_connect_state(e->ssl);
	/* gRPC is HTTP/2 only: servers refuse a TLS session without h2 */
	if (e->type == ISM_HC_GRPC)
		ism_tlsctx_h2_alpn(e->ssl, e->mesh);
	ism_tlsctx_server_name(e->ssl, e->sni);
	e->state = HC_HANDSHAKE;
	ep_handshake(h, e, now);
}

/* Connected, and the PROXY header sent where the cluster has one: TLS, or the
 * check itself. */
static void ep_transport(struct ism_health *h, struct hc_ep *e, uint64_t now)
{
	if (e->ctx != NULL)
		ep_start_tls(h, e, now);
	else
		ep_connected(h, e, now);
}

static void ep_send_pp(struct ism_health *h, struct hc_ep *e, uint64_t now)
{
	ssize_t r;

	while (e->pp_sent < e->pp_len) {
		r = send(e->fd, e->pp_hdr + e->pp_sent, e->pp_len - e->pp_sent,
			 MSG_NOSIGNAL | MSG_DONTWAIT);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			e->want = EPOLLOUT;
			ep_wait_io(h, e, now);
			return;
		}
		if (r < 0) {
			ep_fail_errno(h, e, "send", errno, now);
			return;
		}
		e->pp_sent += (uint8_t)r;
	}
	ep_transport(h, e, now);
}

/* The PROXY header first, before TLS, as Envoy's upstream transport socket
 * writes it for a health check, which has no downstream connection: v1 names
 * the check's own connection (its local address as the source, the endpoint
 * as the destination), v2 is a LOCAL header. */
static void ep_start_pp(struct ism_health *h, struct hc_ep *e, uint64_t now)
{
	union ism_pp_addr local;
	socklen_t len = sizeof(local);
	bool own = e->pp == ISM_UPP_V1 && getsockname(e->fd, &local.sa, &len) == 0;

	e->pp_len = (uint8_t)ism_pp_write(e->pp_hdr, e->pp, own ? &local.sa : NULL,
					  own ? (const struct sockaddr *)&e->addr : NULL);
	e->pp_sent = 0;
	e->state = HC_PROXY;
	ep_send_pp(h, e, now);
}

static void ep_event(struct ism_health *h, struct hc_ep *e, uint64_t now)
{
	int err = 0;
	socklen_t len = sizeof(err);

	switch (e->state) {
	case HC_CONNECTING:
		if (getsockopt(e->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
			err = errno;
		if (err) {
			ep_fail_errno(h, e, "connect", err, now);
			return;
		}
		if (e->pp != ISM_UPP_NONE)
			ep_start_pp(h, e, now);
		else
			ep_transport(h, e, now);
		return;
	case HC_PROXY:
		ep_send_pp(h, e, now);
		return;
	case HC_HANDSHAKE:
		ep_handshake(h, e, now);
		return;
	case HC_SENDING:
		ep_send(h, e, now);
		return;
	case HC_READING:
		ep_read(h, e, now);
		return;
	case HC_IDLE:
	default:
		/* An idle endpoint has no descriptor in the set; the seq tag should
		 * have dropped this event. */
		ISM_BUG_ON(1);
	}
}

static void run_events(struct ism_health *h, uint64_t now)
{
	struct epoll_event ev[HC_EVENTS];
	uint32_t rounds = h->n / HC_EVENTS + 1;
	int n, i;

	/* Each endpoint has at most one descriptor, so n/HC_EVENTS+1 full batches
	 * see every ready one; the bound keeps a busy set from starving timers. */
	while (rounds--) {
		n = epoll_wait(h->epfd, ev, HC_EVENTS, 0);
		if (n <= 0)
			return;
		for (i = 0; i < n; i++) {
			uint32_t id = (uint32_t)ev[i].data.u64;
			uint32_t seq = (uint32_t)(ev[i].data.u64 >> 32);
			struct hc_ep *e = id < ISM_MAX_ENDPOINTS ? h->by_id[id] : NULL;

			if (!e || e->seq != seq || e->state == HC_IDLE)
				continue;
			ep_event(h, e, now);
		}
		if (n < HC_EVENTS)
			return;
	}
}

/* An endpoint in maintenance is not checked: nothing is known of it, so it
 * counts as unhealthy. Back from maintenance it is checked at once, and that
 * first check decides, as a new endpoint's does. A check in progress when
 * maintenance begins ends first. */
static void ep_suspend(struct ism_health *h, struct hc_ep *e)
{
	e->suspended = true;
	e->succ = e->fail = 0;
	if (atomic_load(&ep_state(h, e->id)->health) == ISM_EP_HEALTHY)
		set_health(h, e->id, ISM_EP_UNHEALTHY);
	ism_notice("endpoint %s in maintenance: health checks suspended", e->label);
}

static void ep_resume(struct hc_ep *e, uint64_t now)
{
	e->suspended = false;
	e->checked = false;
	e->next_ms = now;
	ism_notice("endpoint %s out of maintenance: health checks resumed", e->label);
}

void ism_health_run(struct ism_health *h, uint64_t now_ms)
{
	uint64_t due = UINT64_MAX;
	char reason[48];
	uint32_t i;

	run_events(h, now_ms);
	if (now_ms < h->next_due && now_ms < h->next_poll)
		return;
	for (i = 0; i < h->n; i++) {
		struct hc_ep *e = h->list[i];
		bool maint;

		if (e->state != HC_IDLE && e->deadline_ms <= now_ms) {
			snprintf(reason, sizeof(reason), "timeout after %u ms", e->timeout_ms);
			ep_result(h, e, HC_FAIL_NETWORK, reason, now_ms);
		}
		if (e->state == HC_IDLE) {
			maint = atomic_load(&ep_state(h, e->id)->admin) == ISM_EP_ADMIN_MAINT;
			if (maint && !e->suspended)
				ep_suspend(h, e);
			else if (!maint && e->suspended)
				ep_resume(e, now_ms);
			if (!e->suspended && e->next_ms <= now_ms)
				ep_start(h, e, now_ms);
		}
		/* What it waits for now (a suspended one: the next poll). */
		if (e->state != HC_IDLE && e->deadline_ms < due)
			due = e->deadline_ms;
		else if (e->state == HC_IDLE && !e->suspended && e->next_ms < due)
			due = e->next_ms;
	}
	/* The scan's own: what ep_start and the results lowered meanwhile is
	 * in due too. */
	h->next_due = due;
	h->next_poll = now_ms + 1000;
}

int ism_health_timeout_ms(const struct ism_health *h, uint64_t now_ms)
{
	uint64_t due = h->next_due < h->next_poll ? h->next_due : h->next_poll;

	if (h->n == 0)
		return -1;
	if (due <= now_ms)
		return 0;
	return due - now_ms > INT_MAX ? INT_MAX : (int)(due - now_ms);
}

/* --- configuration --- */

static int list_add(struct ism_health *h, struct hc_ep *e)
{
	if (h->n == h->cap) {
		uint32_t cap = h->cap ? h->cap * 2 : 16;
		struct hc_ep **l = realloc(h->list, cap * sizeof(*l));

		if (!l)
			return -ENOMEM;
		h->list = l;
		h->cap = cap;
	}
	h->list[h->n++] = e;
	return 0;
}

/* The request of check hc, to host (NULL: none), into *req: an HTTP/1.1 GET,
 * or for gRPC the authority and the service's name, each ended by a NUL. Its
 * length, or -1 (out of memory) with *req NULL. */
static int check_request(const struct ism_hc *hc, const char *host, char **req)
{
	const char *path = hc->path.len ? hc->path.p : "/";
	int len;

	if (hc->type == ISM_HC_GRPC) {
		len = asprintf(req, "%s%c%.*s", host ? host : "", 0, (int)hc->service.len,
			       hc->service.p ? hc->service.p : "");
		len += len >= 0; /* the service's NUL too */
	} else
		len = asprintf(req,
			       "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: isthmus-health\r\n"
			       "Connection: close\r\n\r\n",
			       path, host ? host : "");
	if (len < 0)
		*req = NULL;
	return len;
}

/* The statuses check hc expects, [lo, hi) pairs, into a new array *st:
 * Envoy's default [200, 201) when it names none. 0 or -ENOMEM. */
static int expected_statuses(const struct ism_hc *hc, uint16_t (**st)[2])
{
	*st = calloc(hc->n_statuses ? hc->n_statuses : 1, sizeof(**st));
	if (!*st)
		return -ENOMEM;
	if (hc->n_statuses) {
		memcpy(*st, hc->statuses, hc->n_statuses * sizeof(**st));
	} else {
		(*st)[0][0] = 200;
		(*st)[0][1] = 201;
	}
	return 0;
}

/* The TLS context a check of cluster cl with settings tls (NULL: none)
 * originates TLS with, into *ctx (NULL: plaintext), and the server name it
 * sends into sni, as a request's Host gives its upstream server name: tls's
 * sni, else host (NULL: none) without its port. 0, or -ENOMEM (logged). */
static int check_tls(struct ism_health *h, const struct ism_cluster *cl,
		     const struct ism_tls_conf *tls, const char *host, char *sni, size_t cap,
		     SSL_CTX **ctx)
{
	*ctx = NULL;
	if (tls == NULL || tls->mode == ISM_TLS_NONE)
		return 0;
	*ctx = ism_tlsctx_get(&h->ctxs, tls, 0, ism_tlsctx_new);
	if (*ctx == NULL) {
		ism_warn("health checks of %.*s: no TLS context can be made of its "
			 "DestinationRule's tls settings",
			 (int)cl->host.len, cl->host.p ? cl->host.p : "");
		return -ENOMEM;
	}
	if (tls->sni.len)
		snprintf(sni, cap, "%s", tls->sni.p);
	else if (host)
		snprintf(sni, cap, "%.*s", (int)ism_host_len(host, strlen(host)), host);
	return 0;
}

/* The intervals, timeout and thresholds of check hc into e. */
static void ep_timing(struct hc_ep *e, const struct ism_hc *hc)
{
	e->interval_ms = hc->interval_ms ? hc->interval_ms : 1;
	e->unhealthy_interval_ms =
	    hc->unhealthy_interval_ms ? hc->unhealthy_interval_ms : e->interval_ms;
	e->unhealthy_edge_ms = hc->unhealthy_edge_interval_ms ? hc->unhealthy_edge_interval_ms
							      : e->unhealthy_interval_ms;
	e->healthy_edge_ms =
	    hc->healthy_edge_interval_ms ? hc->healthy_edge_interval_ms : e->interval_ms;
	e->initial_jitter_ms = hc->initial_jitter_ms;
	e->jitter_ms = hc->interval_jitter_ms;
	e->jitter_pct = hc->interval_jitter_percent;
	e->timeout_ms = hc->timeout_ms ? hc->timeout_ms : 1;
	e->healthy_thr = hc->healthy_threshold ? hc->healthy_threshold : 1;
	e->unhealthy_thr = hc->unhealthy_threshold ? hc->unhealthy_threshold : 1;
}

/* The timing of check hc into e (ep_timing). A waiting endpoint whose waits
 * change (a reload) has its next check within the new wait, at its offset
 * into it, when that comes sooner: a check that went from 1 h to 1 s is not
 * left an hour. One whose waits stay keeps its time, so that reloads do not
 * bunch the checks. */
static void ep_retime(struct ism_health *h, struct hc_ep *e, const struct ism_hc *hc, uint64_t now)
{
	uint32_t was[] = {e->interval_ms,	e->unhealthy_interval_ms,
			  e->unhealthy_edge_ms, e->healthy_edge_ms,
			  e->jitter_ms,		e->jitter_pct};
	uint32_t base;
	uint64_t at;

	ep_timing(e, hc);
	if (e->state != HC_IDLE || e->next_ms <= now ||
	    (was[0] == e->interval_ms && was[1] == e->unhealthy_interval_ms &&
	     was[2] == e->unhealthy_edge_ms && was[3] == e->healthy_edge_ms &&
	     was[4] == e->jitter_ms && was[5] == e->jitter_pct))
		return;
	base = atomic_load(&ep_state(h, e->id)->health) == ISM_EP_HEALTHY
		   ? e->interval_ms
		   : e->unhealthy_interval_ms;
	at = now + ep_offset(e, base);
	if (at < e->next_ms)
		e->next_ms = at;
}

/* Copies the check of cluster cl for endpoint ep into e, with its TLS settings
 * (ism_ep_hc_tls) where they originate TLS (their sni, else the check's Host, as
 * the server name) and its PROXY header (cl->hc_pp). A check in progress with
 * another type, address, request, TLS or PROXY header is abandoned and
 * restarted at once. Interval fields left 0 default as Envoy's do. */
static int ep_configure(struct ism_health *h, struct hc_ep *e, const struct ism_cluster *cl,
			const struct ism_endpoint *ep, uint64_t now)
{
	const struct ism_hc *hc = cl->hc;
	const struct ism_tls_conf *tls = ism_ep_hc_tls(cl, ep);
	const char *host = hc->host.len ? hc->host.p : cl->host.p;
	uint8_t type = hc->type;
	uint16_t(*st)[2] = NULL;
	SSL_CTX *ctx = NULL;
	char *req = NULL, sni[sizeof(e->sni)] = "";
	int len, ret = 0;
	bool changed;

	len = check_request(hc, host, &req);
	if (len < 0) {
		ret = -ENOMEM;
		goto out;
	}
	ret = expected_statuses(hc, &st);
	if (ret < 0)
		goto out_req;
	ret = check_tls(h, cl, tls, host, sni, sizeof(sni), &ctx);
	if (ret < 0)
		goto out_st;
	changed = !e->req || e->req_len != (size_t)len || memcmp(e->req, req, (size_t)len) != 0 ||
		  e->type != type || e->addrlen != ep->addrlen ||
		  memcmp(&e->addr, &ep->addr, ep->addrlen) != 0 || e->ctx != ctx ||
		  strcmp(e->sni, sni) != 0 || e->pp != cl->hc_pp;
	if (changed && e->state != HC_IDLE) {
		ep_close(h, e);
		e->next_ms = now;
	}
	if (ctx != NULL)
		SSL_CTX_up_ref(ctx);
	SSL_CTX_free(e->ctx);
	e->ctx = ctx;
	memcpy(e->sni, sni, sizeof(sni));
	e->mesh = ctx != NULL && tls->mode == ISM_TLS_ISTIO_MUTUAL;
	e->pp = cl->hc_pp;
	free(e->req);
	free(e->statuses);
	e->req = req;
	e->req_len = (size_t)len;
	e->statuses = st;
	e->n_statuses = hc->n_statuses ? hc->n_statuses : 1;
	memcpy(&e->addr, &ep->addr, sizeof(e->addr));
	e->addrlen = ep->addrlen;
	e->type = type;
	ep_retime(h, e, hc, now);
	snprintf(e->label, sizeof(e->label), "%s", h->shm->pub->ep_keys[ep->id]);
	return 0;

out_st:
	free(st);
out_req:
	free(req);
out:
	return ret;
}

/* A new checked endpoint. One that starts unhealthy (the master interns new
 * endpoints of a checked service so, as Envoy does) is checked at once and
 * takes its offset after that check; one already healthy (its service just got
 * a check) starts at its fixed offset into the interval. Either way its first
 * check waits a random time below Envoy's initial_jitter more (at the start
 * too, as Envoy's first checks), and the checks end up spread over the
 * interval. */
static int ep_add(struct ism_health *h, const struct ism_cluster *cl, const struct ism_endpoint *ep,
		  uint64_t now)
{
	struct hc_ep *e;
	int ret;

	e = calloc(1, sizeof(*e));
	if (!e) {
		ret = -ENOMEM;
		goto fail;
	}
	e->id = ep->id;
	e->fd = -1;
	ret = ep_configure(h, e, cl, ep, now);
	if (ret < 0)
		goto fail_e;
	ret = list_add(h, e);
	if (ret < 0)
		goto fail_e;
	h->by_id[e->id] = e;
	e->seen = true;
	if (atomic_load(&ep_state(h, e->id)->health) == ISM_EP_HEALTHY) {
		e->next_ms = now + ep_offset(e, e->interval_ms);
	} else {
		e->next_ms = now;
		e->spread_due = true;
	}
	if (e->initial_jitter_ms)
		e->next_ms += hc_rand(h) % e->initial_jitter_ms;
	return 0;

fail_e:
	SSL_CTX_free(e->ctx);
	free(e->statuses);
	free(e->req);
	free(e);
fail:
	return ret;
}

/* The checks of t's checked endpoints: of every one (set_table: one checked
 * already is configured as t says), or, to warm t before it is published,
 * of the ones without a check that are not healthy (new endpoints of a
 * checked service), added and due at once. How many were added, or -errno. */
static int take_checked(struct ism_health *h, const struct ism_table *t, bool warm, uint64_t now)
{
	uint32_t c, i;
	int ret, added = 0;

	for (c = 0; c < t->n_clusters; c++) {
		const struct ism_cluster *cl = &t->clusters[c];

		if (!cl->hc)
			continue;
		for (i = 0; i < cl->n_endpoints; i++) {
			const struct ism_endpoint *ep = &cl->endpoints[i];
			struct hc_ep *e = ep->id < ISM_MAX_ENDPOINTS ? h->by_id[ep->id] : NULL;

			if (ep->id >= ISM_MAX_ENDPOINTS)
				continue;
			/* clusters that share an endpoint id share its check:
			 * the subsets of one service port, with its TLS
			 * settings (hc_tls), and ports of one check
			 * (conf/compile.c keys the endpoints of ports with
			 * other checks apart) */
			if (e && (warm || e->seen))
				continue;
			if (!e && warm &&
			    atomic_load(&ep_state(h, ep->id)->health) == ISM_EP_HEALTHY)
				continue;
			if (e) {
				ret = ep_configure(h, e, cl, ep, now);
				e->seen = true;
			} else {
				ret = ep_add(h, cl, ep, now);
				added++;
			}
			if (ret < 0)
				return ret;
		}
	}
	return added;
}

int ism_health_warm(struct ism_health *h, const struct ism_table *t)
{
	h->next_due = 0; /* the checks it adds or changes: looked at next turn */
	return take_checked(h, t, true, ism_now_ms());
}

/* "No check configured" reads as healthy: every endpoint of the table that is not
 * checked any more (or never was) is set healthy. */
static void release_unchecked(struct ism_health *h, const struct ism_table *t)
{
	uint32_t c, i;

	for (c = 0; t && c < t->n_clusters; c++) {
		const struct ism_cluster *cl = &t->clusters[c];

		for (i = 0; i < cl->n_endpoints; i++) {
			uint32_t id = cl->endpoints[i].id;

			if (id >= ISM_MAX_ENDPOINTS || h->by_id[id])
				continue;
			if (atomic_load(&ep_state(h, id)->health) == ISM_EP_HEALTHY)
				continue;
			set_health(h, id, ISM_EP_HEALTHY);
			ism_notice("endpoint %s is now healthy: no health check",
				   h->shm->pub->ep_keys[id]);
		}
	}
}

int ism_health_set_table(struct ism_health *h, const struct ism_table *t)
{
	uint64_t now = ism_now_ms();
	uint32_t i;
	int ret = 0;

	h->table = t;
	h->next_due = 0; /* the checks it adds or changes: looked at next turn */
	max_open_set(h); /* the limit as the start or the reload just set it */
	for (i = 0; i < h->n; i++)
		h->list[i]->seen = false;
	ism_tlsctx_unmark_all(&h->ctxs);
	if (t)
		ret = take_checked(h, t, false, now);
	/* a check holds its own reference until it is reconfigured */
	ism_tlsctx_sweep(&h->ctxs, NULL, NULL);
	if (ret < 0) {
		/* Every endpoint keeps a consistent (old or new) configuration; the
		 * ones not reached yet keep being checked as before. */
		return ret;
	}
	/* Endpoints no longer checked: abort what is in flight and forget them. */
	for (i = 0; i < h->n;) {
		struct hc_ep *e = h->list[i];

		if (e->seen) {
			i++;
			continue;
		}
		h->by_id[e->id] = NULL;
		h->list[i] = h->list[--h->n];
		ep_free(h, e);
	}
	release_unchecked(h, t);
	return 0;
}
