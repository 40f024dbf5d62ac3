/* SPDX-License-Identifier: Apache-2.0 */
/* What an HTTP/2 session holds (worker/h2io.h): nghttp2's allocator counts
 * every block, big ones are page runs, and an idle session gives back the
 * pages of its output frame buffer and of its empty stream table — and
 * still serves the next exchange byte for byte once they come back zeroed.
 * A server session made with the client sessions' option (ism_h2_option)
 * talks to an nghttp2 client session in memory. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "tests/unit/check.h"
#include "worker/h2.h"
#include "worker/h2io.h"
#include "worker/sock.h"

/* What an idle client session may hold, counted: nghttp2 1.52's session
 * struct (2.9 KiB), its two HPACK index rings (1 KiB each), the rest of its
 * blocks and the client's indexed fields. The bound a regression breaks. */
#define IDLE_HELD_MAX (5u * 1024u + 512u)
/* A response body of more than one full DATA frame: the whole frame buffer
 * is written. */
#define BODY_LEN 40000u

struct peer {
	struct ism_h2io io;	 /* the server side, as a worker's session */
	nghttp2_session *client; /* the other end */
	_Atomic uint64_t gauge;	 /* the worker's sum */
	uint32_t body_off;	 /* of the response being sent */
	struct ism_buf got;	 /* the response body the client received */
	int closed;		 /* streams the client saw closed */
};

static uint8_t body_byte(uint32_t i)
{
	return (uint8_t)('a' + i % 26);
}

static ssize_t srv_send(nghttp2_session *ng, const uint8_t *data, size_t len, int flags, void *ud)
{
	(void)ng;
	(void)flags;
	return ism_h2io_gather(&((struct peer *)ud)->io, data, len);
}

static ssize_t srv_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len, uint32_t *flags,
			nghttp2_data_source *src, void *ud)
{
	struct peer *pe = ud;
	size_t n = BODY_LEN - pe->body_off < len ? BODY_LEN - pe->body_off : len;

	(void)ng;
	(void)id;
	(void)src;
	for (size_t i = 0; i < n; i++)
		buf[i] = body_byte(pe->body_off + (uint32_t)i);
	pe->body_off += (uint32_t)n;
	if (pe->body_off == BODY_LEN)
		*flags |= NGHTTP2_DATA_FLAG_EOF;
	return (ssize_t)n;
}

/* A request's END_STREAM: the response, 200 and BODY_LEN bytes. */
static int srv_frame(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
	static const nghttp2_nv nv[] = {{(uint8_t *)":status", (uint8_t *)"200", 7, 3, 0},
					{(uint8_t *)"server", (uint8_t *)"unit", 6, 4, 0}};
	nghttp2_data_provider dp = {.read_callback = srv_read};
	struct peer *pe = ud;

	if (f->hd.type != NGHTTP2_HEADERS || !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	pe->body_off = 0;
	return nghttp2_submit_response(ng, f->hd.stream_id, nv, 2, &dp);
}

static int cli_data(nghttp2_session *ng, uint8_t flags, int32_t id, const uint8_t *data, size_t len,
		    void *ud)
{
	(void)ng;
	(void)flags;
	(void)id;
	return ism_buf_append(&((struct peer *)ud)->got, data, (uint32_t)len, UINT32_MAX) < 0
		   ? NGHTTP2_ERR_CALLBACK_FAILURE
		   : 0;
}

static int cli_close(nghttp2_session *ng, int32_t id, uint32_t err, void *ud)
{
	(void)ng;
	(void)id;
	(void)err;
	((struct peer *)ud)->closed++;
	return 0;
}

static void peer_init(struct peer *pe, struct ism_h2pages *pages)
{
	nghttp2_session_callbacks *cb;
	nghttp2_mem mem;

	memset(pe, 0, sizeof(*pe));
	pe->io.batch = 1;
	pe->io.gauge = &pe->gauge;
	pe->io.pages = pages;
	mem = ism_h2io_mem(&pe->io);
	assert_int_equal(nghttp2_session_callbacks_new(&cb), 0);
	nghttp2_session_callbacks_set_send_callback(cb, srv_send);
	nghttp2_session_callbacks_set_on_frame_recv_callback(cb, srv_frame);
	assert_int_equal(nghttp2_session_server_new3(&pe->io.ng, cb, pe, ism_h2_option(), &mem), 0);
	nghttp2_session_callbacks_del(cb);
	assert_int_equal(nghttp2_submit_settings(pe->io.ng, NGHTTP2_FLAG_NONE, NULL, 0), 0);

	assert_int_equal(nghttp2_session_callbacks_new(&cb), 0);
	nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cb, cli_data);
	nghttp2_session_callbacks_set_on_stream_close_callback(cb, cli_close);
	assert_int_equal(nghttp2_session_client_new(&pe->client, cb, pe), 0);
	nghttp2_session_callbacks_del(cb);
	assert_int_equal(nghttp2_submit_settings(pe->client, NGHTTP2_FLAG_NONE, NULL, 0), 0);
}

static void peer_free(struct peer *pe)
{
	nghttp2_session_del(pe->client);
	ism_h2io_free(&pe->io);
	ism_buf_free(&pe->got);
}

/* Bytes go both ways until neither side has any (the server's as a worker
 * sends them: gathered, framed, sent). */
static void pump(struct peer *pe)
{
	for (int round = 0; round < 1000; round++) {
		const uint8_t *out;
		ssize_t n = nghttp2_session_mem_send(pe->client, &out);
		const char *p;
		uint32_t len;
		int ret;
		bool moved = n > 0;

		assert_true(n >= 0);
		if (n > 0) {
			ism_h2io_stir(&pe->io);
			assert_int_equal(nghttp2_session_mem_recv(pe->io.ng, out, (size_t)n), n);
		}
		ret = ism_h2io_frame(&pe->io, &p, &len);
		assert_true(ret >= 0);
		if (ret > 0) {
			assert_int_equal(
			    nghttp2_session_mem_recv(pe->client, (const uint8_t *)p, len),
			    (ssize_t)len);
			ism_h2io_sent(&pe->io);
			moved = true;
		}
		if (!moved)
			return;
	}
	fail_msg("the sessions still talk after 1000 rounds");
}

/* One GET on the client, answered in full. */
static void exchange(struct peer *pe)
{
	static const nghttp2_nv nv[] = {
	    {(uint8_t *)":method", (uint8_t *)"GET", 7, 3, 0},
	    {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0},
	    {(uint8_t *)":path", (uint8_t *)"/", 5, 1, 0},
	    {(uint8_t *)":authority", (uint8_t *)"unit.test", 10, 9, 0},
	};
	int closed = pe->closed;

	pe->got.len = 0;
	assert_true(nghttp2_submit_request(pe->client, NULL, nv, 4, NULL, NULL) > 0);
	pump(pe);
	CHECK("exchange", pe->closed == closed + 1, "the stream did not end");
	CHECK("exchange", pe->got.len == BODY_LEN, "%u body bytes, want %u", pe->got.len, BODY_LEN);
	for (uint32_t i = 0; i < pe->got.len; i++)
		if ((uint8_t)pe->got.p[i] != body_byte(i))
			fail_msg("body byte %u is %#x, want %#x", i, (uint8_t)pe->got.p[i],
				 body_byte(i));
}

static bool idle(const struct peer *pe)
{
	return !pe->io.sending && pe->io.gather.len == 0 &&
	       !nghttp2_session_want_write(pe->io.ng) &&
	       nghttp2_session_find_stream(
		   pe->io.ng, nghttp2_session_get_last_proc_stream_id(pe->io.ng)) == NULL;
}

static void test_idle_session_gives_pages_back(void **state)
{
	struct ism_h2pages *pages = ism_h2pages_new();
	struct peer pe;
	uint64_t before, given;

	(void)state;
	assert_non_null(pages);
	peer_init(&pe, pages);
	for (int i = 0; i < 3; i++) {
		exchange(&pe);
		ism_h2io_trim(&pe.io);
		assert_true(idle(&pe));
		before = pe.io.held;
		given = ism_h2io_rest(&pe.io);
		/* The 16 KiB frame buffer (5 pages) and the empty stream table. */
		CHECK("rest", given >= 5 * ISM_H2IO_PAGE, "round %d: %llu bytes given back", i,
		      (unsigned long long)given);
		CHECK("rest", pe.io.held == before - given, "held %llu, %llu before, %llu given",
		      (unsigned long long)pe.io.held, (unsigned long long)before,
		      (unsigned long long)given);
		CHECK("rest", pe.io.held <= IDLE_HELD_MAX,
		      "round %d: an idle session holds %llu bytes", i,
		      (unsigned long long)pe.io.held);
		CHECK("rest", pe.gauge == pe.io.held, "gauge %llu, held %llu",
		      (unsigned long long)pe.gauge, (unsigned long long)pe.io.held);
		/* Nothing stirred: nothing more to give. */
		CHECK("rest", ism_h2io_rest(&pe.io) == 0, "a second rest gave more");
	}
	/* The pages come back when the session stirs, counted again. */
	ism_h2io_stir(&pe.io);
	CHECK("stir", pe.io.held == before, "held %llu after stirring, %llu before the rest",
	      (unsigned long long)pe.io.held, (unsigned long long)before);
	peer_free(&pe);
	CHECK("free", pe.gauge == 0 && pe.io.held == 0, "after the free: gauge %llu, held %llu",
	      (unsigned long long)pe.gauge, (unsigned long long)pe.io.held);
	ism_h2pages_free(pages);
}

/* Sessions freed while idle (pages given back) or busy hand their runs back;
 * the next sessions take them again, zeroed, and work. */
static void test_runs_reused(void **state)
{
	struct ism_h2pages *pages = ism_h2pages_new();
	struct peer pe[3];

	(void)state;
	for (int round = 0; round < 3; round++) {
		for (int i = 0; i < 3; i++) {
			peer_init(&pe[i], pages);
			exchange(&pe[i]);
		}
		ism_h2io_trim(&pe[0].io);
		assert_true(ism_h2io_rest(&pe[0].io) > 0);
		for (int i = 0; i < 3; i++) {
			peer_free(&pe[i]);
			CHECK("free", pe[i].gauge == 0, "round %d session %d: gauge %llu", round, i,
			      (unsigned long long)pe[i].gauge);
		}
	}
	ism_h2pages_free(pages);
}

/* Without page runs (none could be made) big blocks are glibc's: counted,
 * never given back. */
static void test_without_runs(void **state)
{
	struct peer pe;

	(void)state;
	peer_init(&pe, NULL);
	exchange(&pe);
	ism_h2io_trim(&pe.io);
	CHECK("no runs", ism_h2io_rest(&pe.io) == 0, "pages given back without runs");
	CHECK("no runs", pe.io.held > 4 * ISM_H2IO_PAGE, "held %llu",
	      (unsigned long long)pe.io.held);
	exchange(&pe);
	peer_free(&pe);
	CHECK("no runs", pe.gauge == 0, "gauge %llu after the free", (unsigned long long)pe.gauge);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_idle_session_gives_pages_back),
	    cmocka_unit_test(test_runs_reused),
	    cmocka_unit_test(test_without_runs),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
