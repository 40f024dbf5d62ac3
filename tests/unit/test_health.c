/* SPDX-License-Identifier: Apache-2.0 */
/* Health checker unit tests against real loopback servers run by a thread of this
 * test: one answers 200, one 503 (switchable to 200), one accepts and never
 * answers, one accepts and closes (for TCP checks), and a port where nothing
 * listens. The loop waits on the checker's descriptor exactly as the master does
 * and is bounded in time; it records when each check ended, so the tests assert
 * exact transitions and the waits between checks. */

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>

#include "health/health.h"
#include "lib/log.h"

#define S(lit)                                                                                     \
	{                                                                                          \
		(lit), sizeof(lit) - 1                                                             \
	}

enum { SRV_OK, SRV_FLIP, SRV_HUNG, SRV_TCP, N_SRV };

struct servers {
	int lfd[N_SRV];
	uint16_t port[N_SRV];
	uint16_t closed_port;
	int stop[2];
	_Atomic int flip_status;    /* what SRV_FLIP answers */
	_Atomic unsigned good_reqs; /* well-formed check requests seen */
	_Atomic unsigned bad_reqs;
	_Atomic unsigned hung_accepted;
	_Atomic unsigned tcp_accepted;
	int held[64];
	unsigned n_held;
	pthread_t thr;
};

static int listen_lo(uint16_t *port, int backlog)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, backlog), 0);
	assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &len), 0);
	*port = ntohs(a.sin_port);
	return fd;
}

/* Reads one request head (bounded), checks its form, answers status, closes. */
static void answer(struct servers *s, int fd, int status)
{
	struct timeval tv = {.tv_sec = 2};
	char buf[2048], resp[128];
	size_t got = 0;
	ssize_t r;
	int n;

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	while (got < sizeof(buf) - 1) {
		r = recv(fd, buf + got, sizeof(buf) - 1 - got, 0);
		if (r <= 0)
			break;
		got += (size_t)r;
		buf[got] = 0;
		if (strstr(buf, "\r\n\r\n"))
			break;
	}
	buf[got] = 0;
	if (strncmp(buf, "GET /healthz HTTP/1.1\r\n", 23) == 0 &&
	    strstr(buf, "\r\nHost: svc.test\r\n") &&
	    strstr(buf, "\r\nUser-Agent: isthmus-health\r\n") &&
	    strstr(buf, "\r\nConnection: close\r\n\r\n"))
		atomic_fetch_add(&s->good_reqs, 1);
	else
		atomic_fetch_add(&s->bad_reqs, 1);
	n = snprintf(resp, sizeof(resp),
		     "HTTP/1.1 %d X\r\nContent-Length: 0\r\nConnection: close\r\n\r\n", status);
	(void)!send(fd, resp, (size_t)n, MSG_NOSIGNAL);
	close(fd);
}

static void *serve(void *arg)
{
	struct servers *s = arg;
	struct pollfd p[N_SRV + 1];
	int i, fd;

	for (i = 0; i < N_SRV; i++)
		p[i] = (struct pollfd){.fd = s->lfd[i], .events = POLLIN};
	p[N_SRV] = (struct pollfd){.fd = s->stop[0], .events = POLLIN};
	for (;;) {
		if (poll(p, N_SRV + 1, -1) < 0)
			continue;
		if (p[N_SRV].revents)
			break;
		for (i = 0; i < N_SRV; i++) {
			if (!(p[i].revents & POLLIN))
				continue;
			fd = accept4(s->lfd[i], NULL, NULL, SOCK_CLOEXEC);
			if (fd < 0)
				continue;
			if (i == SRV_OK) {
				answer(s, fd, 200);
			} else if (i == SRV_FLIP) {
				answer(s, fd, atomic_load(&s->flip_status));
			} else if (i == SRV_TCP) {
				atomic_fetch_add(&s->tcp_accepted, 1);
				close(fd);
			} else {
				/* hold it open, say nothing */
				atomic_fetch_add(&s->hung_accepted, 1);
				if (s->n_held == 64) {
					close(s->held[0]);
					memmove(s->held, s->held + 1, 63 * sizeof(int));
					s->n_held--;
				}
				s->held[s->n_held++] = fd;
			}
		}
	}
	return NULL;
}

static void servers_start(struct servers *s)
{
	int i, fd;

	memset(s, 0, sizeof(*s));
	atomic_store(&s->flip_status, 503);
	/* room for 200 checks connecting at once (test_spread) */
	for (i = 0; i < N_SRV; i++)
		s->lfd[i] = listen_lo(&s->port[i], i == SRV_TCP ? 1024 : 64);
	/* a port that was just bound and released: nothing listens there */
	fd = listen_lo(&s->closed_port, 1);
	close(fd);
	assert_int_equal(pipe2(s->stop, O_CLOEXEC), 0);
	assert_int_equal(pthread_create(&s->thr, NULL, serve, s), 0);
}

static void servers_stop(struct servers *s)
{
	unsigned i;
	int k;

	assert_int_equal(write(s->stop[1], "x", 1), 1);
	pthread_join(s->thr, NULL);
	for (i = 0; i < s->n_held; i++)
		close(s->held[i]);
	for (k = 0; k < N_SRV; k++)
		close(s->lfd[k]);
	close(s->stop[0]);
	close(s->stop[1]);
}

/* Endpoint ids: 1 = 200 (new, starts unhealthy), 2 = 503 then 200, 3 = hung,
 * 4 = closed port, 5 = 200 (already healthy), 6 = TCP listener (already healthy). */
#define N_EP	  6
#define MAX_TIMES 64

struct fixture {
	struct servers srv;
	struct ism_shm_hdr *hdr;
	struct ism_shm shm;
	struct ism_health *h;
	char text[N_EP][32];
	struct ism_endpoint eps[N_EP];
	uint16_t statuses[1][2];
	struct ism_hc hc;
	struct ism_cluster cl[2];
	struct ism_table t;
	/* per endpoint, counters seen at the run where health last changed */
	uint64_t flip_checks[N_EP + 1], flip_failures[N_EP + 1];
	uint32_t last_health[N_EP + 1];
	unsigned flips[N_EP + 1];
	unsigned total_flips;
	bool epoch_is_flips; /* no ejections in play: health_epoch == total_flips */
	/* per endpoint, the clock passed to the run that recorded each check */
	uint64_t seen_checks[N_EP + 1];
	uint64_t times[N_EP + 1][MAX_TIMES];
	unsigned n_times[N_EP + 1];
};

static void set_ep(struct fixture *f, int i, uint32_t id, uint16_t port)
{
	struct sockaddr_in *a = (struct sockaddr_in *)&f->eps[i].addr;

	a->sin_family = AF_INET;
	a->sin_port = htons(port);
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->eps[i].addrlen = sizeof(*a);
	f->eps[i].id = id;
	f->eps[i].od = id; /* its outlier slot: the same number */
	f->eps[i].weight = 1;
	snprintf(f->text[i], sizeof(f->text[i]), "127.0.0.1:%u", port);
	f->eps[i].addr_text = (struct ism_str){f->text[i], (uint32_t)strlen(f->text[i])};
}

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));
	uint32_t id;

	if (!f)
		return -1;
	servers_start(&f->srv);
	f->hdr = aligned_alloc(ISM_CACHELINE, sizeof(*f->hdr));
	if (!f->hdr)
		return -1;
	memset(f->hdr, 0, sizeof(*f->hdr));
	f->shm.hdr = f->hdr;
	f->shm.size = sizeof(*f->hdr);
	f->shm.pub = calloc(1, sizeof(*f->shm.pub)); /* the endpoints' keys */
	if (!f->shm.pub)
		return -1;

	set_ep(f, 0, 1, f->srv.port[SRV_OK]);
	set_ep(f, 1, 2, f->srv.port[SRV_FLIP]);
	set_ep(f, 2, 3, f->srv.port[SRV_HUNG]);
	set_ep(f, 3, 4, f->srv.closed_port);
	set_ep(f, 4, 5, f->srv.port[SRV_OK]);
	set_ep(f, 5, 6, f->srv.port[SRV_TCP]);
	/* id 1 was just interned by a configuration with a check: unhealthy;
	 * the others were healthy before */
	atomic_store(&f->hdr->eps[1].health, ISM_EP_UNHEALTHY);
	for (id = 1; id <= N_EP; id++)
		f->last_health[id] = atomic_load(&f->hdr->eps[id].health);

	f->statuses[0][0] = 200;
	f->statuses[0][1] = 300;
	f->hc = (struct ism_hc){.path = S("/healthz"),
				.host = S("svc.test"),
				.interval_ms = 50,
				.timeout_ms = 150,
				.healthy_threshold = 2,
				.unhealthy_threshold = 3,
				.n_statuses = 1,
				.statuses = (const uint16_t(*)[2])f->statuses};
	f->cl[0] = (struct ism_cluster){.name = S("outbound|80||svc.test"),
					.host = S("svc.test"),
					.port = 80,
					.n_endpoints = 5, /* the HTTP ones */
					.endpoints = f->eps,
					.hc = &f->hc};
	f->t = (struct ism_table){.magic = ISM_TABLE_MAGIC, .n_clusters = 1, .clusters = f->cl};
	f->epoch_is_flips = true;
	if (ism_health_create(&f->shm, &f->h) != 0)
		return -1;
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fixture *f = *state;

	ism_health_destroy(f->h);
	servers_stop(&f->srv);
	free(f->hdr);
	free(f->shm.pub);
	free(f);
	return 0;
}

static uint32_t health_of(struct fixture *f, uint32_t id)
{
	return atomic_load(&f->hdr->eps[id].health);
}

static uint64_t checks_of(struct fixture *f, uint32_t id)
{
	return atomic_load(&f->hdr->eps[id].hc_checks);
}

static uint64_t epoch_of(struct fixture *f)
{
	return atomic_load(&f->hdr->health_epoch);
}

/* Records, after each run (clock now), when checks ended and the counters at
 * which an endpoint's health changed. One run ends at most one check of an
 * endpoint, so every change is seen. */
static void observe(struct fixture *f, uint64_t now)
{
	uint32_t id;

	for (id = 1; id <= N_EP; id++) {
		uint64_t c = checks_of(f, id);
		uint32_t hl = health_of(f, id);

		assert_true(c <= f->seen_checks[id] + 1);
		if (c != f->seen_checks[id] && f->n_times[id] < MAX_TIMES)
			f->times[id][f->n_times[id]++] = now;
		f->seen_checks[id] = c;
		if (hl == f->last_health[id])
			continue;
		f->last_health[id] = hl;
		f->flips[id]++;
		f->total_flips++;
		f->flip_checks[id] = c;
		f->flip_failures[id] = atomic_load(&f->hdr->eps[id].hc_failures);
		assert_true(atomic_load(&f->hdr->eps[id].health_changed_ms) > 0);
	}
	/* every change of health moved the epoch, once */
	if (f->epoch_is_flips)
		assert_int_equal(epoch_of(f), f->total_flips);
}

/* Runs the checker as the master would until done(f) or limit_ms passed. */
static bool drive(struct fixture *f, bool (*done)(struct fixture *), uint64_t limit_ms)
{
	uint64_t end = ism_now_ms() + limit_ms;
	struct pollfd p = {.fd = ism_health_fd(f->h), .events = POLLIN};

	while (!done(f)) {
		uint64_t now = ism_now_ms();
		int t;

		if (now >= end)
			return false;
		t = ism_health_timeout_ms(f->h, now);
		assert_true(t >= -1);
		if (t < 0 || (uint64_t)t > end - now)
			t = (int)(end - now);
		(void)poll(&p, 1, t);
		now = ism_now_ms();
		ism_health_run(f->h, now);
		observe(f, now);
	}
	return true;
}

static bool phase1_done(struct fixture *f)
{
	return health_of(f, 1) == ISM_EP_HEALTHY && health_of(f, 2) == ISM_EP_UNHEALTHY &&
	       health_of(f, 3) == ISM_EP_UNHEALTHY && health_of(f, 4) == ISM_EP_UNHEALTHY &&
	       atomic_load(&f->hdr->eps[5].hc_checks) >= 3;
}

static bool flip_back_done(struct fixture *f)
{
	return health_of(f, 2) == ISM_EP_HEALTHY;
}

static void test_transitions(void **state)
{
	struct fixture *f = *state;
	uint64_t ok_before;
	uint32_t id;

	ism_log_set_role("test_health");
	assert_int_equal(ism_health_timeout_ms(f->h, ism_now_ms()), -1);
	assert_int_equal(ism_health_set_table(f->h, &f->t), 0);
	/* the new, unhealthy endpoint is due at once */
	assert_int_equal(ism_health_timeout_ms(f->h, ism_now_ms()), 0);

	assert_true(drive(f, phase1_done, 5000));
	/* 200: healthy at its very first success, whatever healthy_threshold says */
	assert_int_equal(f->flips[1], 1);
	assert_int_equal(f->flip_checks[1], 1);
	assert_int_equal(f->flip_failures[1], 0);
	/* 503: an unexpected status fails the host at once (Envoy's immediate
	 * failure), although unhealthy_threshold is 3 */
	assert_int_equal(f->flips[2], 1);
	assert_int_equal(f->flip_failures[2], 1);
	assert_int_equal(f->flip_checks[2], 1);
	/* hung (timeouts) and refused (network failures): exactly 3 failures */
	for (id = 3; id <= 4; id++) {
		assert_int_equal(f->flips[id], 1);
		assert_int_equal(f->flip_failures[id], 3);
		assert_int_equal(f->flip_checks[id], 3);
	}
	/* the hung server did accept, so its failures were timeouts */
	assert_true(atomic_load(&f->srv.hung_accepted) >= 3);
	/* a healthy endpoint that passes stays healthy */
	assert_int_equal(f->flips[5], 0);
	assert_int_equal(atomic_load(&f->hdr->eps[5].hc_failures), 0);
	assert_true(atomic_load(&f->srv.good_reqs) >= 4);
	assert_int_equal(atomic_load(&f->srv.bad_reqs), 0);

	/* the 503 server recovers: healthy again after exactly healthy_threshold passes */
	atomic_store(&f->srv.flip_status, 200);
	ok_before =
	    atomic_load(&f->hdr->eps[2].hc_checks) - atomic_load(&f->hdr->eps[2].hc_failures);
	assert_true(drive(f, flip_back_done, 5000));
	assert_int_equal(f->flips[2], 2);
	assert_int_equal(f->flip_checks[2] - f->flip_failures[2] - ok_before, 2);
	/* the others did not move */
	assert_int_equal(health_of(f, 3), ISM_EP_UNHEALTHY);
	assert_int_equal(health_of(f, 4), ISM_EP_UNHEALTHY);
	assert_int_equal(health_of(f, 1), ISM_EP_HEALTHY);
}

static bool always_false(struct fixture *f)
{
	(void)f;
	return false;
}

static void test_set_table(void **state)
{
	struct fixture *f = *state;
	struct ism_endpoint kept[3];
	uint64_t checks4;

	assert_int_equal(ism_health_set_table(f->h, &f->t), 0);
	assert_true(drive(f, phase1_done, 5000));

	/* the same endpoints in a new generation keep their state: no reset, no log */
	memcpy(kept, f->eps, sizeof(kept));
	kept[2] = f->eps[3]; /* 1, 2 and 4; the hung one (3) and 5 are gone */
	f->cl[0].endpoints = kept;
	f->cl[0].n_endpoints = 3;
	assert_int_equal(ism_health_set_table(f->h, &f->t), 0);
	assert_int_equal(health_of(f, 1), ISM_EP_HEALTHY);
	assert_int_equal(health_of(f, 2), ISM_EP_UNHEALTHY);
	assert_int_equal(health_of(f, 4), ISM_EP_UNHEALTHY);
	checks4 = atomic_load(&f->hdr->eps[4].hc_checks);
	memset(f->flips, 0, sizeof(f->flips));
	/* 300 ms: several intervals; removed endpoints are no longer checked */
	{
		uint64_t c3 = atomic_load(&f->hdr->eps[3].hc_checks);
		uint64_t c5 = atomic_load(&f->hdr->eps[5].hc_checks);
		assert_false(drive(f, always_false, 300));
		assert_int_equal(atomic_load(&f->hdr->eps[3].hc_checks), c3);
		assert_int_equal(atomic_load(&f->hdr->eps[5].hc_checks), c5);
	}
	assert_true(atomic_load(&f->hdr->eps[4].hc_checks) > checks4);
	assert_int_equal(f->flips[1] + f->flips[2] + f->flips[4], 0);

	/* the service loses its check: every endpoint is healthy, nothing is due;
	 * the two that were unhealthy moved the epoch */
	f->cl[0].hc = NULL;
	{
		uint64_t epoch = epoch_of(f);

		assert_int_equal(ism_health_set_table(f->h, &f->t), 0);
		assert_int_equal(epoch_of(f), epoch + 2);
	}
	assert_int_equal(health_of(f, 1), ISM_EP_HEALTHY);
	assert_int_equal(health_of(f, 2), ISM_EP_HEALTHY);
	assert_int_equal(health_of(f, 4), ISM_EP_HEALTHY);
	assert_int_equal(ism_health_timeout_ms(f->h, ism_now_ms()), -1);
}

/* Uses one cluster of the fixture's endpoints given by index. */
static void use_eps(struct fixture *f, struct ism_endpoint *sel, const int *idx, unsigned n)
{
	unsigned i;

	for (i = 0; i < n; i++)
		sel[i] = f->eps[idx[i]];
	f->cl[0].endpoints = sel;
	f->cl[0].n_endpoints = n;
}

static bool tcp_done(struct fixture *f)
{
	return health_of(f, 1) == ISM_EP_HEALTHY && health_of(f, 4) == ISM_EP_UNHEALTHY &&
	       checks_of(f, 6) >= 3;
}

/* TCP checks: the connect is the check. A listening port passes, a closed one
 * fails with the threshold. */
static void test_tcp(void **state)
{
	struct fixture *f = *state;
	static const int idx[] = {0, 3, 5}; /* ids 1, 4, 6 */
	struct ism_endpoint sel[3];
	uint64_t want, end;

	use_eps(f, sel, idx, 3);
	sel[0].addr = f->eps[5].addr; /* id 1, new and unhealthy: the TCP listener */
	f->hc.type = ISM_HC_TCP;
	assert_int_equal(ism_health_set_table(f->h, &f->t), 0);
	assert_true(drive(f, tcp_done, 5000));

	assert_int_equal(f->flips[1], 1);
	assert_int_equal(f->flip_checks[1], 1);
	assert_int_equal(f->flip_failures[1], 0);
	assert_int_equal(f->flips[4], 1);
	assert_int_equal(f->flip_checks[4], 3);
	assert_int_equal(f->flip_failures[4], 3);
	assert_int_equal(f->flips[6], 0);
	assert_int_equal(atomic_load(&f->hdr->eps[6].hc_failures), 0);
	/* every pass was a connection to the listener, and no HTTP request went out */
	want = checks_of(f, 1) + checks_of(f, 6);
	end = ism_now_ms() + 2000;
	while (atomic_load(&f->srv.tcp_accepted) < want && ism_now_ms() < end)
		usleep(1000);
	assert_true(atomic_load(&f->srv.tcp_accepted) >= want);
	assert_int_equal(atomic_load(&f->srv.good_reqs) + atomic_load(&f->srv.bad_reqs), 0);
}

/* Whether the wait before check k+1 (ms between the runs that ended checks k
 * and k+1) is `ms` within scheduling slack. Shorter fails the test: the state
 * machine's fault, whatever the load. Longer is logged and false: a busy
 * machine (or a wrong, longer interval), and timed() tries again. */
#define SLACK_MS 40
static bool gap_is(struct fixture *f, uint32_t id, unsigned k, uint64_t ms)
{
	uint64_t gap;

	assert_true(f->n_times[id] > k + 1);
	gap = f->times[id][k + 1] - f->times[id][k];
	if (gap < ms)
		fail_msg("endpoint %u: wait after check %u is %llu ms, want %llu", id, k + 1,
			 (unsigned long long)gap, (unsigned long long)ms);
	if (gap < ms + SLACK_MS)
		return true;
	print_message("endpoint %u: wait after check %u is %llu ms, want %llu: again\n", id, k + 1,
		      (unsigned long long)gap, (unsigned long long)ms);
	return false;
}

/* Runs attempt on a fresh fixture until it says its waits were within their
 * slack, TIMED_ATTEMPTS times at most: a wrong interval fails every time, a
 * stall of a loaded machine not five times running. */
#define TIMED_ATTEMPTS 5
static void timed(void **state, bool (*attempt)(struct fixture *))
{
	for (int i = 0; i < TIMED_ATTEMPTS; i++) {
		if (attempt(*state))
			return;
		assert_int_equal(teardown(state), 0);
		assert_int_equal(setup(state), 0);
	}
	fail_msg("the waits overran their slack %d times running", TIMED_ATTEMPTS);
}

static bool intervals_done(struct fixture *f)
{
	/* the 503 server recovers once it has failed its first check */
	if (checks_of(f, 2) >= 1)
		atomic_store(&f->srv.flip_status, 200);
	return f->n_times[2] >= 5 && f->n_times[4] >= 5;
}

/* Envoy's interval state machine, observed as the waits between checks. */
static bool intervals_attempt(struct fixture *f)
{
	static const int idx[] = {1, 3}; /* ids 2 (503 then 200) and 4 (refused) */
	struct ism_endpoint sel[2];

	use_eps(f, sel, idx, 2);
	f->hc.interval_ms = 300;
	f->hc.unhealthy_interval_ms = 200;
	f->hc.unhealthy_edge_interval_ms = 50;
	f->hc.healthy_edge_interval_ms = 60;
	f->hc.healthy_threshold = 3;
	f->hc.unhealthy_threshold = 3;
	assert_int_equal(ism_health_set_table(f->h, &f->t), 0);
	assert_true(drive(f, intervals_done, 5000));

	/* refused, healthy host going down: unhealthy_edge while below the
	 * threshold, unhealthy_interval once unhealthy */
	assert_int_equal(f->flip_checks[4], 3);
	/* 503 then 200: unhealthy at once (unhealthy_interval next), then
	 * healthy_edge while passes < healthy_threshold (this was not the host's
	 * first check), interval once healthy */
	assert_int_equal(f->flips[2], 2);
	assert_int_equal(f->flip_checks[2], 4);
	/* three changes of health, three epochs (observe checked each one) */
	assert_int_equal(epoch_of(f), 3);
	return gap_is(f, 4, 0, 50) && gap_is(f, 4, 1, 50) && gap_is(f, 4, 2, 200) &&
	       gap_is(f, 4, 3, 200) && gap_is(f, 2, 0, 200) && gap_is(f, 2, 1, 60) &&
	       gap_is(f, 2, 2, 60) && gap_is(f, 2, 3, 300);
}

static void test_intervals(void **state)
{
	timed(state, intervals_attempt);
}

static bool jitter_done(struct fixture *f)
{
	return f->n_times[6] >= 9 && health_of(f, 1) == ISM_EP_HEALTHY;
}

/* interval_jitter and interval_jitter_percent add to every wait; a new
 * unhealthy host's first check waits below initial_jitter (Envoy's, at the
 * start too), and a healthy one's its offset and that. */
static bool jitter_attempt(struct fixture *f)
{
	static const int idx[] = {0, 5}; /* ids 1 (new) and 6 (TCP listener) */
	struct ism_endpoint sel[2];
	uint64_t start, gap, longest = 0;
	bool in_time;
	unsigned k;

	use_eps(f, sel, idx, 2);
	sel[0].addr = f->eps[5].addr;
	f->hc.type = ISM_HC_TCP;
	f->hc.interval_ms = 100;
	f->hc.interval_jitter_ms = 40;
	f->hc.interval_jitter_percent = 20; /* + rand % 20 */
	f->hc.initial_jitter_ms = 60;
	start = ism_now_ms();
	assert_int_equal(ism_health_set_table(f->h, &f->t), 0);
	assert_true(ism_health_timeout_ms(f->h, ism_now_ms()) < 60);
	assert_true(drive(f, jitter_done, 5000));

	assert_int_equal(f->flip_checks[1], 1);
	/* id 1: checked within initial_jitter, healthy at its first pass; id 6:
	 * first check within offset (< interval) + initial_jitter */
	in_time =
	    f->times[1][0] - start < 60 + SLACK_MS && f->times[6][0] - start < 100 + 60 + SLACK_MS;
	for (k = 0; k + 1 < f->n_times[6]; k++) {
		gap = f->times[6][k + 1] - f->times[6][k];
		assert_true(gap >= 100);
		in_time = in_time && gap < 100 + 20 + 40 + SLACK_MS;
		if (gap > longest)
			longest = gap;
	}
	/* 8 waits that all drew less than 10 ms of jitter: p < 1e-9 */
	assert_true(longest >= 110);
	if (!in_time)
		print_message("a check came later than its jitter allows: again\n");
	return in_time;
}

static void test_jitter(void **state)
{
	timed(state, jitter_attempt);
}

static bool uneject_first_done(struct fixture *f)
{
	return checks_of(f, 2) >= 1 && checks_of(f, 5) >= 1;
}

static uint64_t want_checks;

static bool uneject_step_done(struct fixture *f)
{
	return checks_of(f, 2) >= want_checks;
}

/* Endpoint id ejected for good in its cluster (outlier slot id). */
static void eject(struct fixture *f, uint32_t id)
{
	atomic_store(&f->hdr->ods[id].ep, id);
	atomic_store(&f->hdr->ods[id].ejected, 1);
	atomic_store(&f->hdr->ods[id].ejected_until_ms, UINT64_MAX);
	atomic_store(&f->hdr->eps[id].ejected_in, 1);
}

/* A passing check returns an ejected endpoint once the endpoint is healthy
 * (Envoy: an unhealthy one needs healthy_threshold passes first), and the
 * return moves the epoch. */
static void test_uneject(void **state)
{
	struct fixture *f = *state;
	static const int idx[] = {1, 4}; /* ids 2 (503 then 200) and 5 (200) */
	struct ism_endpoint sel[2];
	struct ism_ep_state *e2 = &f->hdr->eps[2], *e5 = &f->hdr->eps[5];
	struct ism_od_state *o2 = &f->hdr->ods[2], *o5 = &f->hdr->ods[5];

	use_eps(f, sel, idx, 2);
	f->hc.healthy_threshold = 2;
	f->hc.timeout_ms = 5000; /* every check must pass or fail, not time out */
	f->epoch_is_flips = false;
	eject(f, 5);
	atomic_store(&o5->cons_5xx, 4);
	assert_int_equal(ism_health_set_table(f->h, &f->t), 0);
	assert_true(drive(f, uneject_first_done, 5000));
	/* id 5 passed while healthy: returned, counters reset; id 2 failed (503) */
	assert_int_equal(atomic_load(&o5->ejected), 0);
	assert_int_equal(atomic_load(&e5->ejected_in), 0);
	assert_int_equal(atomic_load(&o5->cons_5xx), 0);
	assert_int_equal(health_of(f, 5), ISM_EP_HEALTHY);
	assert_int_equal(health_of(f, 2), ISM_EP_UNHEALTHY);
	assert_int_equal(f->total_flips, 1);
	assert_int_equal(epoch_of(f), 2); /* one return, one change of health */

	/* id 2, unhealthy and ejected, recovers: its first pass leaves it
	 * unhealthy and ejected, the second makes it healthy and returns it */
	eject(f, 2);
	atomic_store(&f->srv.flip_status, 200);
	want_checks = checks_of(f, 2) + 1;
	assert_true(drive(f, uneject_step_done, 5000));
	assert_int_equal(health_of(f, 2), ISM_EP_UNHEALTHY);
	assert_int_equal(atomic_load(&o2->ejected), 1);
	assert_int_equal(epoch_of(f), 2);
	want_checks++;
	assert_true(drive(f, uneject_step_done, 5000));
	assert_int_equal(health_of(f, 2), ISM_EP_HEALTHY);
	assert_int_equal(atomic_load(&o2->ejected), 0);
	assert_int_equal(atomic_load(&e2->ejected_in), 0);
	assert_int_equal(epoch_of(f), 4);
}

static bool settled_done(struct fixture *f)
{
	return ism_health_settled(f->h);
}

/* The first round: the endpoints not healthy without a result (new ones,
 * unhealthy as interned) are waited for until each has one (a pass, a
 * timeout), within the bound settle_by gives; one healthy before its service
 * got a check holds no round. */
static void test_first_round(void **state)
{
	struct fixture *f = *state;
	static const int idx[] = {4, 0, 2}; /* ids 5 (healthy), 1 (200, new), 3 (hung) */
	struct ism_endpoint sel[3];
	uint64_t before, by;

	use_eps(f, sel, idx, 1);
	assert_int_equal(ism_health_set_table(f->h, &f->t), 0);
	assert_true(ism_health_settled(f->h));
	assert_int_equal(ism_health_settle_by(f->h), 0);

	use_eps(f, sel, idx, 3);
	atomic_store(&f->hdr->eps[3].health, ISM_EP_UNHEALTHY);
	f->last_health[3] = ISM_EP_UNHEALTHY;
	before = ism_now_ms();
	assert_int_equal(ism_health_set_table(f->h, &f->t), 0);
	by = ism_health_settle_by(f->h);
	assert_true(by >= before + f->hc.timeout_ms && by <= ism_now_ms() + f->hc.timeout_ms);
	assert_false(ism_health_settled(f->h));
	assert_true(drive(f, settled_done, 5000));
	assert_int_equal(health_of(f, 1), ISM_EP_HEALTHY);
	assert_int_equal(health_of(f, 3), ISM_EP_UNHEALTHY);
	assert_int_equal(checks_of(f, 3), 1); /* its timeout ended the round */
	assert_int_equal(ism_health_settle_by(f->h), 0);
}

/* A table built and not published yet is warmed: its new checked endpoints
 * (not healthy, without a check) are checked besides the running ones, and
 * the first round ends with a result of each (a pass, a timeout), within
 * the bound settle_by gave. Published, the table keeps the warmed checks and
 * their state; dropped (the running table set again), they stop. */
static void test_warm(void **state)
{
	struct fixture *f = *state;
	static const int running_idx[] = {4}; /* id 5, healthy */
	struct ism_endpoint running[1], built[3];
	struct ism_cluster cl_built;
	struct ism_table t_built;
	uint64_t before, by, c1;

	use_eps(f, running, running_idx, 1);
	assert_int_equal(ism_health_set_table(f->h, &f->t), 0);

	/* 5 kept; 1 (answers 200) and 3 (hung) new, unhealthy as interned */
	built[0] = f->eps[4];
	built[1] = f->eps[0];
	built[2] = f->eps[2];
	cl_built = f->cl[0];
	cl_built.endpoints = built;
	cl_built.n_endpoints = 3;
	t_built = f->t;
	t_built.clusters = &cl_built;
	atomic_store(&f->hdr->eps[3].health, ISM_EP_UNHEALTHY);
	f->last_health[3] = ISM_EP_UNHEALTHY;
	before = ism_now_ms();
	assert_int_equal(ism_health_warm(f->h, &t_built), 2);
	by = ism_health_settle_by(f->h);
	assert_true(by >= before + f->hc.timeout_ms && by <= ism_now_ms() + f->hc.timeout_ms);
	assert_false(ism_health_settled(f->h));
	/* a second look at the same table adds nothing */
	assert_int_equal(ism_health_warm(f->h, &t_built), 0);
	assert_true(drive(f, settled_done, 5000));
	assert_int_equal(health_of(f, 1), ISM_EP_HEALTHY);
	assert_int_equal(health_of(f, 3), ISM_EP_UNHEALTHY);
	assert_int_equal(checks_of(f, 3), 1); /* its timeout ended the round */
	assert_int_equal(ism_health_settle_by(f->h), 0);

	/* published: the warmed checks go on, their state kept */
	assert_int_equal(ism_health_set_table(f->h, &t_built), 0);
	assert_int_equal(health_of(f, 1), ISM_EP_HEALTHY);
	c1 = checks_of(f, 1);
	assert_false(drive(f, always_false, 300));
	assert_true(checks_of(f, 1) > c1);

	/* a later build warmed with a new endpoint (4, refused), then dropped:
	 * its check stops, the running ones go on */
	built[2] = f->eps[3];
	atomic_store(&f->hdr->eps[4].health, ISM_EP_UNHEALTHY);
	f->last_health[4] = ISM_EP_UNHEALTHY;
	assert_int_equal(ism_health_warm(f->h, &t_built), 1);
	assert_true(drive(f, settled_done, 5000));
	assert_int_equal(ism_health_set_table(f->h, &f->t), 0);
	c1 = checks_of(f, 4);
	before = checks_of(f, 5);
	assert_false(drive(f, always_false, 300));
	assert_int_equal(checks_of(f, 4), c1);
	assert_true(checks_of(f, 5) > before);
}

/* --- spreading: 200 endpoints, interval 1 s --- */

#define N_SPREAD 200
#define WINDOW	 50

struct spread {
	struct ism_endpoint eps[N_SPREAD];
	uint64_t seen[N_SPREAD];
	uint64_t times[4 * N_SPREAD]; /* when each check ended, in order */
	unsigned n;
};

static uint64_t spread_checks(struct fixture *f, const struct spread *sp)
{
	uint64_t sum = 0;
	unsigned i;

	for (i = 0; i < N_SPREAD; i++)
		sum += checks_of(f, sp->eps[i].id);
	return sum;
}

/* Runs the checker until every endpoint ended `rounds` checks or limit_ms. */
static bool spread_drive(struct fixture *f, struct spread *sp, uint64_t rounds, uint64_t limit_ms)
{
	struct pollfd p = {.fd = ism_health_fd(f->h), .events = POLLIN};
	uint64_t end = ism_now_ms() + limit_ms;
	unsigned i;

	for (;;) {
		uint64_t now = ism_now_ms(), least = UINT64_MAX;
		int t;

		for (i = 0; i < N_SPREAD; i++) {
			uint64_t c = checks_of(f, sp->eps[i].id);

			for (; sp->seen[i] < c; sp->seen[i]++)
				if (sp->n < 4 * N_SPREAD)
					sp->times[sp->n++] = now;
			if (c < least)
				least = c;
		}
		if (least >= rounds)
			return true;
		if (now >= end)
			return false;
		t = ism_health_timeout_ms(f->h, now);
		if (t < 0 || (uint64_t)t > end - now)
			t = (int)(end - now);
		(void)poll(&p, 1, t);
		ism_health_run(f->h, ism_now_ms());
	}
}

/* The most checks that ended within WINDOW ms of each other, among times[from, to). */
static unsigned busiest_window(const struct spread *sp, unsigned from, unsigned to)
{
	unsigned i, j = from, best = 0;

	for (i = from; i < to; i++) {
		while (j < to && sp->times[j] < sp->times[i] + WINDOW)
			j++;
		if (j - i > best)
			best = j - i;
	}
	return best;
}

static void spread_table(struct fixture *f, struct spread *sp, uint32_t first_id, uint32_t health)
{
	unsigned i;

	memset(sp, 0, sizeof(*sp));
	for (i = 0; i < N_SPREAD; i++) {
		sp->eps[i] = f->eps[5]; /* the TCP listener */
		sp->eps[i].id = first_id + i;
		atomic_store(&f->hdr->eps[first_id + i].health, health);
	}
	f->cl[0].endpoints = sp->eps;
	f->cl[0].n_endpoints = N_SPREAD;
	f->hc.type = ISM_HC_TCP;
	f->hc.interval_ms = 1000;
	f->hc.timeout_ms = 1000;
}

/* Whether the checks of sp from index `from` on were spread: no window of
 * WINDOW ms held more than a quarter of them (a stall of a loaded machine
 * bunches them up: false, and timed() tries again). */
static bool spread_out(struct spread *sp, unsigned from, const char *what)
{
	unsigned busiest = busiest_window(sp, from, sp->n);

	print_message("%s: at most %u of %u checks in %u ms\n", what, busiest, sp->n - from,
		      WINDOW);
	return busiest <= N_SPREAD / 4;
}

static bool spread_attempt(struct fixture *f)
{
	struct spread *sp = calloc(1, sizeof(*sp));
	unsigned first_round;
	bool spread;

	assert_non_null(sp);
	/* endpoints already healthy (their service just got a check): the first
	 * round is spread over the interval */
	spread_table(f, sp, 100, ISM_EP_HEALTHY);
	assert_int_equal(ism_health_set_table(f->h, &f->t), 0);
	ism_log_set_level(ISM_LOG_WARN); /* 200 endpoints becoming healthy */
	assert_true(spread_drive(f, sp, 1, 10000));
	/* (an endpoint with a small offset may already have had its second) */
	assert_true(sp->n >= N_SPREAD);
	spread = spread_out(sp, 0, "healthy start");

	/* brand-new endpoints (unhealthy): all checked at once, then spread */
	spread_table(f, sp, 1000, ISM_EP_UNHEALTHY);
	assert_int_equal(ism_health_set_table(f->h, &f->t), 0);
	assert_true(spread_drive(f, sp, 1, 500));
	first_round = sp->n;
	assert_int_equal(first_round, N_SPREAD);
	assert_int_equal(spread_checks(f, sp), N_SPREAD);
	assert_true(spread_drive(f, sp, 2, 10000));
	assert_true(sp->n >= 2 * N_SPREAD);
	spread = spread_out(sp, first_round, "new endpoints, second round") && spread;
	assert_true(atomic_load(&f->hdr->eps[1000].health) == ISM_EP_HEALTHY);
	ism_log_set_level(ISM_LOG_NOTICE);
	free(sp);
	return spread;
}

static void test_spread(void **state)
{
	timed(state, spread_attempt);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_transitions, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_set_table, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_tcp, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_intervals, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_jitter, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_uneject, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_first_round, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_warm, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_spread, setup, teardown),
	};

	ism_log_set_level(ISM_LOG_NOTICE);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
