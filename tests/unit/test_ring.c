/* SPDX-License-Identifier: Apache-2.0 */
/* The worker's private buffers (worker/ring.h): past a burst, at most
 * ISM_XBUF_KEEP free ones keep their memory; the others' slots stay, and
 * get memory again when taken.
 *
 * The worker's submission entries when the kernel takes none:
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

#define BURST 200u

static void test_private_buffers_kept_bounded(void **state)
{
	struct ism_wctx *w = calloc(1, sizeof(*w));
	int bid[BURST];
	uint32_t held = 0;

	(void)state;
	assert_non_null(w);
	for (int round = 0; round < 2; round++) {
		for (uint32_t i = 0; i < BURST; i++) {
			bid[i] = ism_w_xbuf_get(w);
			assert_true(bid[i] >= (int)ISM_BUF_COUNT_MAX);
			memset(ism_w_buf_addr(w, bid[i]), 'x', ISM_BUF_SIZE); /* its whole memory */
			for (uint32_t j = 0; j < i; j++)
				assert_int_not_equal(bid[i], bid[j]);
		}
		assert_int_equal(w->n_xbufs, BURST); /* the slots of the first burst, again */
		for (uint32_t i = 0; i < BURST; i++)
			ism_w_buf_recycle(w, bid[i]);
		held = 0;
		for (uint32_t i = 0; i < w->n_xbufs; i++)
			held += w->xbufs[i] != NULL;
		assert_int_equal(held, ISM_XBUF_KEEP);
		assert_int_equal(w->n_xfree, BURST);
	}
	for (uint32_t i = 0; i < w->n_xbufs; i++)
		free(w->xbufs[i]);
	free(w->xbufs);
	free(w->xfree);
	free(w);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_private_buffers_kept_bounded),
	    cmocka_unit_test(test_backlog_waits_and_keeps_order),
	    cmocka_unit_test(test_later_entry_behind_backlog),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
