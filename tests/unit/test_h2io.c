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
	uint32_t close_code;	 /* the last one's error code */
	/* Responses framed from body (ism_h2body: DATA frames without
	 * nghttp2's copy), which the test fills; id: the stream answered. */
	bool nocopy;
	struct ism_h2body body;
	int32_t id;
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

static ssize_t srv_body_read(nghttp2_session *ng, int32_t id, uint8_t *buf, size_t len,
			     uint32_t *flags, nghttp2_data_source *src, void *ud)
{
	(void)ng;
	(void)id;
	(void)buf;
	(void)ud;
	return ism_h2body_read(src->ptr, len, flags);
}

static int srv_send_data(nghttp2_session *ng, nghttp2_frame *f, const uint8_t *framehd, size_t len,
			 nghttp2_data_source *src, void *ud)
{
	(void)ng;
	return ism_h2body_send(&((struct peer *)ud)->io, src->ptr, f, framehd, len);
}

/* A request's END_STREAM: the response, 200 and BODY_LEN bytes (or, nocopy,
 * what the test puts in body). */
static int srv_frame(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
	static const nghttp2_nv nv[] = {{(uint8_t *)":status", (uint8_t *)"200", 7, 3, 0},
					{(uint8_t *)"server", (uint8_t *)"unit", 6, 4, 0}};
	nghttp2_data_provider dp = {.read_callback = srv_read};
	struct peer *pe = ud;

	if (f->hd.type != NGHTTP2_HEADERS || !(f->hd.flags & NGHTTP2_FLAG_END_STREAM))
		return 0;
	pe->body_off = 0;
	if (pe->nocopy) {
		ism_buf_free(&pe->body.b);
		pe->body = (struct ism_h2body){0};
		pe->id = f->hd.stream_id;
		dp = (nghttp2_data_provider){.source.ptr = &pe->body,
					     .read_callback = srv_body_read};
	}
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
	((struct peer *)ud)->closed++;
	((struct peer *)ud)->close_code = err;
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
	nghttp2_session_callbacks_set_send_data_callback(cb, srv_send_data);
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
	ism_buf_free(&pe->body.b);
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

/* One GET from the client, and what the server has to send. */
static void request(struct peer *pe)
{
	static const nghttp2_nv nv[] = {
	    {(uint8_t *)":method", (uint8_t *)"GET", 7, 3, 0},
	    {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0},
	    {(uint8_t *)":path", (uint8_t *)"/", 5, 1, 0},
	    {(uint8_t *)":authority", (uint8_t *)"unit.test", 10, 9, 0},
	};

	pe->got.len = 0;
	assert_true(nghttp2_submit_request(pe->client, NULL, nv, 4, NULL, NULL) > 0);
	pump(pe);
}

/* The client got BODY_LEN bytes of body_byte, byte for byte. */
static void check_body(const struct peer *pe)
{
	CHECK("exchange", pe->got.len == BODY_LEN, "%u body bytes, want %u", pe->got.len, BODY_LEN);
	for (uint32_t i = 0; i < pe->got.len; i++)
		if ((uint8_t)pe->got.p[i] != body_byte(i))
			fail_msg("body byte %u is %#x, want %#x", i, (uint8_t)pe->got.p[i],
				 body_byte(i));
}

/* One GET on the client, answered in full. */
static void exchange(struct peer *pe)
{
	int closed = pe->closed;

	request(pe);
	CHECK("exchange", pe->closed == closed + 1, "the stream did not end");
	check_body(pe);
}

static bool idle(const struct peer *pe)
{
	return !pe->io.sending && pe->io.gather.len == 0 &&
	       !nghttp2_session_want_write(pe->io.ng) &&
	       nghttp2_session_find_stream(
		   pe->io.ng, nghttp2_session_get_last_proc_stream_id(pe->io.ng)) == NULL;
}

/* ism_fmt_num in both its bases, from 0 to the widest 64-bit values, against
 * printf's. */
static void test_fmt_num(void **state)
{
	static const uint64_t ns[] = {0,
				      1,
				      9,
				      10,
				      15,
				      16,
				      99,
				      255,
				      256,
				      1000,
				      4096,
				      65535,
				      1000000007ull,
				      UINT32_MAX,
				      0x123456789abcdefull,
				      10000000000000000000ull,
				      UINT64_MAX};
	char got[21], want[21];

	(void)state;
	for (size_t i = 0; i < sizeof(ns) / sizeof(ns[0]); i++) {
		snprintf(want, sizeof(want), "%llu", (unsigned long long)ns[i]);
		assert_int_equal(ism_fmt_num(got, ns[i], 10), strlen(want));
		assert_string_equal(got, want);
		snprintf(want, sizeof(want), "%llx", (unsigned long long)ns[i]);
		assert_int_equal(ism_fmt_num(got, ns[i], 16), strlen(want));
		assert_string_equal(got, want);
	}
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

/* DATA frames framed from a body buffer go into the output in one copy
 * (ism_h2body_read, ism_h2body_send): the client gets the body byte for byte.
 * When a frame waits for room (a full batch behind the send in flight) and
 * the body is let go meanwhile (the stream aborted, as the tick does on a
 * window kept shut), the stream is reset rather than framed from bytes that
 * are gone, and the session goes on. */
static void test_body_without_copy(void **state)
{
	nghttp2_settings_entry iv = {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, 1u << 20};
	static char chunk[BODY_LEN];
	struct peer pe;
	const char *p, *p2;
	uint32_t len, len2;
	int closed;

	(void)state;
	for (uint32_t i = 0; i < BODY_LEN; i++)
		chunk[i] = (char)body_byte(i);
	peer_init(&pe, NULL);
	pe.nocopy = true;
	assert_int_equal(nghttp2_submit_settings(pe.client, NGHTTP2_FLAG_NONE, &iv, 1), 0);
	assert_int_equal(nghttp2_submit_window_update(pe.client, NGHTTP2_FLAG_NONE, 0, 1 << 20), 0);

	/* A body that comes in two parts, the second with its end. */
	closed = pe.closed;
	request(&pe);
	assert_int_equal(ism_h2body_add(&pe.io, pe.id, &pe.body, chunk, 1000, false), 0);
	pump(&pe);
	assert_int_equal(
	    ism_h2body_add(&pe.io, pe.id, &pe.body, chunk + 1000, BODY_LEN - 1000, true), 0);
	pump(&pe);
	CHECK("no copy", pe.closed == closed + 1 && pe.close_code == NGHTTP2_NO_ERROR,
	      "the stream did not end well (code %u)", pe.close_code);
	check_body(&pe);

	/* A frame that waits for room, whose body is then let go. */
	closed = pe.closed;
	request(&pe);
	assert_int_equal(ism_h2body_add(&pe.io, pe.id, &pe.body, chunk, 1000, false), 0);
	assert_int_equal(ism_h2io_frame(&pe.io, &p, &len), 1);
	for (int i = 0; i < 3; i++)
		assert_int_equal(ism_h2body_add(&pe.io, pe.id, &pe.body, chunk, BODY_LEN, false),
				 0);
	assert_int_equal(ism_h2io_frame(&pe.io, &p2, &len2), 0);
	CHECK("wait", pe.io.gather.len >= ISM_H2_GATHER_MAX && !ism_h2body_drained(&pe.body),
	      "%u bytes gathered, body drained: no frame waits", pe.io.gather.len);
	ism_buf_free(&pe.body.b);
	pe.body.off = 0;
	assert_int_equal(nghttp2_session_mem_recv(pe.client, (const uint8_t *)p, len),
			 (ssize_t)len);
	ism_h2io_sent(&pe.io);
	pump(&pe);
	CHECK("wait", pe.closed == closed + 1 && pe.close_code == NGHTTP2_INTERNAL_ERROR,
	      "the stream was not reset (%d closed, code %u)", pe.closed - closed, pe.close_code);

	/* The session serves the next request. */
	pe.nocopy = false;
	exchange(&pe);
	peer_free(&pe);
	CHECK("free", pe.gauge == 0, "gauge %llu after the free", (unsigned long long)pe.gauge);
}

/* A client session's stream identifiers run out at 2^31 - 1: the last one is
 * still given, ism_h2io_ids_left says none is left after it (what makes an
 * upstream connection take no new stream), and nghttp2 refuses the next. */
static void test_stream_ids_run_out(void **state)
{
	static const nghttp2_nv nv[] = {
	    {(uint8_t *)":method", (uint8_t *)"GET", 7, 3, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)":authority", (uint8_t *)"a", 10, 1, NGHTTP2_NV_FLAG_NONE},
	    {(uint8_t *)":path", (uint8_t *)"/", 5, 1, NGHTTP2_NV_FLAG_NONE},
	};
	nghttp2_session_callbacks *cb;
	nghttp2_session *ng;

	(void)state;
	assert_int_equal(nghttp2_session_callbacks_new(&cb), 0);
	assert_int_equal(nghttp2_session_client_new(&ng, cb, NULL), 0);
	nghttp2_session_callbacks_del(cb);
	assert_true(ism_h2io_ids_left(ng));
	assert_int_equal(nghttp2_submit_request(ng, NULL, nv, 4, NULL, NULL), 1);
	assert_int_equal(nghttp2_session_set_next_stream_id(ng, INT32_MAX - 2), 0);
	assert_int_equal(nghttp2_submit_request(ng, NULL, nv, 4, NULL, NULL), INT32_MAX - 2);
	assert_true(ism_h2io_ids_left(ng));
	assert_int_equal(nghttp2_submit_request(ng, NULL, nv, 4, NULL, NULL), INT32_MAX);
	assert_false(ism_h2io_ids_left(ng));
	assert_int_equal(nghttp2_submit_request(ng, NULL, nv, 4, NULL, NULL),
			 NGHTTP2_ERR_STREAM_ID_NOT_AVAILABLE);
	nghttp2_session_del(ng);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
	    cmocka_unit_test(test_fmt_num),
	    cmocka_unit_test(test_idle_session_gives_pages_back),
	    cmocka_unit_test(test_runs_reused),
	    cmocka_unit_test(test_without_runs),
	    cmocka_unit_test(test_body_without_copy),
	    cmocka_unit_test(test_stream_ids_run_out),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
