/* SPDX-License-Identifier: Apache-2.0 */
/* The worker's submission entries (worker/ring.h) when the kernel takes none:
 * a ring made disabled refuses every submission (EBADFD) as a kernel without
 * room for a request does, so entries past its queue wait in the backlog —
 * and once it is enabled, they all reach the kernel, each once, in the order
 * they were prepared. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cmocka.h>

#include "tests/unit/check.h"
#include "worker/ring.h"

#define QUEUE	4u  /* the test ring's submission queue */
#define ENTRIES 11u /* prepared while it takes none: more than two queues */

static struct ism_wctx *wctx_disabled(void)
{
	struct ism_wctx *w = calloc(1, sizeof(*w));
	struct io_uring_params p = {.flags = IORING_SETUP_R_DISABLED};

	assert_non_null(w);
	w->sqb = malloc(ISM_SQ_BACKLOG * sizeof(*w->sqb));
	assert_non_null(w->sqb);
	assert_int_equal(io_uring_queue_init_params(QUEUE, &w->ring, &p), 0);
	w->now = 1000;
	return w;
}

static void wctx_free(struct ism_wctx *w)
{
	io_uring_queue_exit(&w->ring);
	free(w->sqb);
	free(w);
}

/* liburing 2.3 declares io_uring_enable_rings but does not export it. */
static void enable(struct ism_wctx *w)
{
	assert_int_equal(
	    syscall(__NR_io_uring_register, w->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL, 0),
	    0);
}

static void nop(struct ism_wctx *w, uint64_t ud)
{
	struct io_uring_sqe *sqe = ism_w_sqe(w);

	io_uring_prep_nop(sqe);
	io_uring_sqe_set_data64(sqe, ud);
}

/* Every completion of the ENTRIES nops, in order, reaped as they come. */
static void reap_in_order(struct ism_wctx *w)
{
	for (uint64_t want = 0; want < ENTRIES; want++) {
		struct io_uring_cqe *cqe;

		assert_int_equal(io_uring_wait_cqe(&w->ring, &cqe), 0);
		assert_int_equal(cqe->res, 0);
		assert_int_equal(io_uring_cqe_get_data64(cqe), want);
		io_uring_cqe_seen(&w->ring, cqe);
	}
	assert_int_equal(io_uring_cq_ready(&w->ring), 0);
}

static void test_backlog_waits_and_keeps_order(void **state)
{
	struct ism_wctx *w = wctx_disabled();

	(void)state;
	for (uint64_t i = 0; i < ENTRIES; i++)
		nop(w, i);
	/* The queue holds the first QUEUE, the backlog the rest. */
	assert_int_equal(w->n_sqb, ENTRIES - QUEUE);
	assert_int_equal(io_uring_sq_ready(&w->ring), QUEUE);
	assert_int_equal(w->sqb[0].user_data, QUEUE);
	/* Still refused: the backlog keeps what it holds. */
	ism_w_sqb_move(w);
	assert_int_equal(w->n_sqb, ENTRIES - QUEUE);
	enable(w);
	ism_w_sqb_move(w);
	assert_int_equal(w->n_sqb, 0);
	assert_true(io_uring_submit(&w->ring) >= 0);
	reap_in_order(w);
	wctx_free(w);
}

/* With entries waiting, a later one goes behind them, though the queue has
 * room again: the order holds. */
static void test_later_entry_behind_backlog(void **state)
{
	struct ism_wctx *w = wctx_disabled();

	(void)state;
	for (uint64_t i = 0; i < QUEUE + 1; i++)
		nop(w, i);
	assert_int_equal(w->n_sqb, 1);
	enable(w);
	assert_int_equal(io_uring_submit(&w->ring), QUEUE);
	for (uint64_t i = QUEUE + 1; i < ENTRIES; i++)
		nop(w, i);
	assert_int_equal(io_uring_sq_ready(&w->ring), 0);
	assert_int_equal(w->n_sqb, ENTRIES - QUEUE);
	ism_w_sqb_move(w);
	assert_int_equal(w->n_sqb, 0);
	assert_true(io_uring_submit(&w->ring) >= 0);
	reap_in_order(w);
	wctx_free(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_backlog_waits_and_keeps_order),
	    cmocka_unit_test(test_later_entry_behind_backlog),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
