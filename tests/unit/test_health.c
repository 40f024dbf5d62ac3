/* Health checker unit tests against real loopback servers run by a thread of this
 * test: one answers 200, one 503 (switchable to 200), one accepts and never
 * answers, and a port where nothing listens. The loop waits on the checker's
 * descriptor exactly as the master does and is bounded in time. */

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

enum { SRV_OK, SRV_FLIP, SRV_HUNG, N_SRV };

struct servers {
	int lfd[N_SRV];
	uint16_t port[N_SRV];
	uint16_t closed_port;
	int stop[2];
	_Atomic int flip_status;    /* what SRV_FLIP answers */
	_Atomic unsigned good_reqs; /* well-formed check requests seen */
	_Atomic unsigned bad_reqs;
	_Atomic unsigned hung_accepted;
	int held[64];
	unsigned n_held;
	pthread_t thr;
};

static int listen_lo(uint16_t *port)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(fd >= 0);
	assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	assert_int_equal(listen(fd, 64), 0);
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
	for (i = 0; i < N_SRV; i++)
		s->lfd[i] = listen_lo(&s->port[i]);
	/* a port that was just bound and released: nothing listens there */
	fd = listen_lo(&s->closed_port);
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
 * 4 = closed port, 5 = 200 (already healthy). */
#define N_EP 5

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
};

static void set_ep(struct fixture *f, int i, uint32_t id, uint16_t port)
{
	struct sockaddr_in *a = (struct sockaddr_in *)&f->eps[i].addr;

	a->sin_family = AF_INET;
	a->sin_port = htons(port);
	a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	f->eps[i].addrlen = sizeof(*a);
	f->eps[i].id = id;
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

	set_ep(f, 0, 1, f->srv.port[SRV_OK]);
	set_ep(f, 1, 2, f->srv.port[SRV_FLIP]);
	set_ep(f, 2, 3, f->srv.port[SRV_HUNG]);
	set_ep(f, 3, 4, f->srv.closed_port);
	set_ep(f, 4, 5, f->srv.port[SRV_OK]);
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
					.n_endpoints = N_EP,
					.endpoints = f->eps,
					.hc = &f->hc};
	f->t = (struct ism_table){.magic = ISM_TABLE_MAGIC, .n_clusters = 1, .clusters = f->cl};
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
	free(f);
	return 0;
}

static uint32_t health_of(struct fixture *f, uint32_t id)
{
	return atomic_load(&f->hdr->eps[id].health);
}

/* Records, after each run, the counters at which an endpoint's health changed. */
static void observe(struct fixture *f)
{
	uint32_t id;

	for (id = 1; id <= N_EP; id++) {
		uint32_t hl = health_of(f, id);

		if (hl == f->last_health[id])
			continue;
		f->last_health[id] = hl;
		f->flips[id]++;
		f->flip_checks[id] = atomic_load(&f->hdr->eps[id].hc_checks);
		f->flip_failures[id] = atomic_load(&f->hdr->eps[id].hc_failures);
		assert_true(atomic_load(&f->hdr->eps[id].health_changed_ms) > 0);
	}
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
		ism_health_run(f->h, ism_now_ms());
		observe(f);
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
	/* 503, hung (timeout) and refused: unhealthy after exactly 3 failures */
	for (id = 2; id <= 4; id++) {
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

	/* the service loses its check: every endpoint is healthy, nothing is due */
	f->cl[0].hc = NULL;
	assert_int_equal(ism_health_set_table(f->h, &f->t), 0);
	assert_int_equal(health_of(f, 1), ISM_EP_HEALTHY);
	assert_int_equal(health_of(f, 2), ISM_EP_HEALTHY);
	assert_int_equal(health_of(f, 4), ISM_EP_HEALTHY);
	assert_int_equal(ism_health_timeout_ms(f->h, ism_now_ms()), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test_setup_teardown(test_transitions, setup, teardown),
	    cmocka_unit_test_setup_teardown(test_set_table, setup, teardown),
	};

	ism_log_set_level(ISM_LOG_NOTICE);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
