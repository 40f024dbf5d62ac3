/* SPDX-License-Identifier: Apache-2.0 */
/* libFuzzer harness for the HTTP/2 server side of worker/h2.c: the input is
 * what a client sends after its preface, read by an nghttp2 server session
 * with the option and SETTINGS every client session gets (ism_h2_option,
 * ism_h2_settings); every request header block goes through the same
 * collection and translation (ism_h2_head_add, ism_h2_parse_head). Besides
 * memory safety (ASan, UBSan) it checks the contract of the translation: a
 * request that is not refused has a method and a path; no method, path, host,
 * name or value holds CR, LF or NUL; names are lowercase and no pseudo-header
 * is passed on as a field; content-length framing is a number the block
 * carried; the fields stay within ISM_MAX_HDRS; and a block past the limits
 * is refused 431. */
#include <nghttp2/nghttp2.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shm/table-t.h"
#include "worker/h2.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ism_limits lim = {
    .max_request_header_bytes = 4096,
    .max_request_headers = 64,
    .max_request_body_bytes = 1 << 20,
    .h2_max_concurrent_streams = 8,
    .h2_initial_stream_window = 65535,
    .h2_initial_conn_window = 1 << 20,
    .h2_max_header_list = 4096,
    .max_uri_bytes = 2048, /* the 414 of a :path over it */
};
static struct ism_http_header hdrs[ISM_MAX_HDRS];

/* A stream's header block, on a list so that open streams are freed. */
struct head {
	struct ism_h2head hd;
	struct head *next, *prev;
};
static struct head *heads;
static nghttp2_session_callbacks *cbs;

static void check(int cond, const char *what)
{
	if (!cond) {
		fprintf(stderr, "fuzz_h2: invariant violated: %s\n", what);
		abort();
	}
}

static void clean(const char *p, size_t n, const char *what)
{
	if (p == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		check(p[i] != '\r' && p[i] != '\n' && p[i] != '\0', what);
}

static void check_request(const struct ism_h2head *hd, bool end)
{
	struct ism_http_req req = {.headers = hdrs, .minor_version = 1, .h2 = 1};
	struct ism_buf cookie = {0};
	const char *why = NULL;
	int status = ism_h2_parse_head(&lim, hd, &req, &cookie, end, &why);

	check(why != NULL, "no reason");
	if (hd->over)
		check(status == 431, "a block past the limits is not refused 431");
	check(hd->bytes <= lim.h2_max_header_list || hd->over, "the list limit did not hold");
	if (status == 0) {
		check(req.method != NULL && req.path != NULL, "a request without method or path");
		check(req.n_headers <= ISM_MAX_HDRS, "too many fields");
		clean(req.method, req.method_len, "CR/LF/NUL in the method");
		clean(req.target, req.target_len, "CR/LF/NUL in the path");
		clean(req.host, req.host_len, "CR/LF/NUL in the host");
		check(req.framing.content_length >= -1, "negative content-length");
		for (size_t i = 0; i < req.n_headers; i++) {
			const struct ism_http_header *h = &req.headers[i];

			check(h->name_len > 0 && h->name[0] != ':', "a pseudo-header passed on");
			clean(h->name, h->name_len, "CR/LF/NUL in a name");
			clean(h->value, h->value_len, "CR/LF/NUL in a value");
			for (size_t j = 0; j < h->name_len; j++)
				check(h->name[j] < 'A' || h->name[j] > 'Z', "an uppercase name");
		}
	} else {
		check(status >= 400 && status < 600, "a refusal that is no error status");
	}
	free(cookie.p);
}

static ssize_t on_send(nghttp2_session *ng, const uint8_t *d, size_t len, int flags, void *ud)
{
	(void)ng;
	(void)d;
	(void)flags;
	(void)ud;
	return (ssize_t)len;
}

static int on_begin_headers(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
	struct head *hd;

	(void)ud;
	if (f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	hd = calloc(1, sizeof(*hd));
	if (hd == NULL)
		return NGHTTP2_ERR_CALLBACK_FAILURE;
	hd->next = heads;
	if (heads)
		heads->prev = hd;
	heads = hd;
	nghttp2_session_set_stream_user_data(ng, f->hd.stream_id, hd);
	return 0;
}

static int on_header(nghttp2_session *ng, const nghttp2_frame *f, const uint8_t *name, size_t nl,
		     const uint8_t *value, size_t vl, uint8_t flags, void *ud)
{
	struct ism_h2head *hd = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);

	(void)flags;
	(void)ud;
	if (hd == NULL)
		return 0;
	return ism_h2_head_add(&lim, hd, name, nl, value, vl) < 0 ? NGHTTP2_ERR_CALLBACK_FAILURE
								  : 0;
}

static int on_frame_recv(nghttp2_session *ng, const nghttp2_frame *f, void *ud)
{
	struct ism_h2head *hd = nghttp2_session_get_stream_user_data(ng, f->hd.stream_id);

	(void)ud;
	if (hd == NULL || f->hd.type != NGHTTP2_HEADERS || f->headers.cat != NGHTTP2_HCAT_REQUEST)
		return 0;
	check_request(hd, f->hd.flags & NGHTTP2_FLAG_END_STREAM);
	return 0;
}

static void head_free(struct head *hd)
{
	if (hd->prev)
		hd->prev->next = hd->next;
	else
		heads = hd->next;
	if (hd->next)
		hd->next->prev = hd->prev;
	free(hd->hd.b.p);
	free(hd);
}

static int on_stream_close(nghttp2_session *ng, int32_t id, uint32_t code, void *ud)
{
	struct head *hd = nghttp2_session_get_stream_user_data(ng, id);

	(void)code;
	(void)ud;
	if (hd != NULL) {
		head_free(hd);
		nghttp2_session_set_stream_user_data(ng, id, NULL);
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	nghttp2_settings_entry iv[ISM_H2_N_SETTINGS + 1];
	nghttp2_session *ng;
	size_t off = 0, n_iv;

	if (cbs == NULL) {
		check(nghttp2_session_callbacks_new(&cbs) == 0, "callbacks");
		nghttp2_session_callbacks_set_send_callback(cbs, on_send);
		nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
		nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
		nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
		nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
	}
	check(nghttp2_session_server_new2(&ng, cbs, NULL, ism_h2_option()) == 0, "session");
	/* As ism_h2_start: RFC 8441's extended CONNECT too. */
	n_iv = ism_h2_settings(&lim, iv);
	iv[n_iv++] = (nghttp2_settings_entry){NGHTTP2_SETTINGS_ENABLE_CONNECT_PROTOCOL, 1};
	nghttp2_submit_settings(ng, NGHTTP2_FLAG_NONE, iv, n_iv);
	nghttp2_session_mem_recv(ng, (const uint8_t *)ISM_H2_PREFACE, ISM_H2_PREFACE_LEN);
	/* In pieces whose sizes the input's first byte picks: a frame split
	 * across reads must read as one. */
	while (off < size) {
		size_t step = size > 0 ? 1 + data[0] % 64 * 64 : 1;
		ssize_t n;

		if (step > size - off)
			step = size - off;
		n = nghttp2_session_mem_recv(ng, data + off, step);
		if (n < 0 || nghttp2_session_send(ng) < 0)
			break;
		off += step;
	}
	nghttp2_session_del(ng);
	while (heads != NULL)
		head_free(heads);
	return 0;
}
