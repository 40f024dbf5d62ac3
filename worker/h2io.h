/* SPDX-License-Identifier: Apache-2.0 */
/* What the two HTTP/2 sides (client sessions, worker/h2.c; upstream
 * connections, worker/h2up.c) share around libnghttp2: the frames it writes
 * gathered while a send is in flight and sent in batches (a stream hears that
 * its bytes are out once the batch that carried them is sent), the bodies it
 * reads from our buffers, and header fields lowercased for it. Private to
 * worker/. */
#ifndef ISM_WORKER_H2IO_H
#define ISM_WORKER_H2IO_H

#include <nghttp2/nghttp2.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "worker/http1.h"
#include "worker/worker-t.h"

/* Output gathered while a send is in flight, at most (then nghttp2 waits). */
#define ISM_H2_GATHER_MAX (64u * 1024u)
/* What the output buffer grows to past its first block: a burst of frames,
 * such as ten small responses of concurrent streams. */
#define ISM_H2_GATHER_BURST (16u * 1024u)

/* libnghttp2's blocks of a page up to ISM_H2PAGES_RUN_MAX pages are runs
 * of whole pages of a worker's struct ism_h2pages, apart from glibc's heap,
 * and the session follows up to ISM_H2IO_BIG_MAX of them, so that an idle
 * session can give their pages back (ism_h2io_rest) without holes in the
 * heap. Others come from glibc. */
#define ISM_H2IO_PAGE	     4096u
#define ISM_H2IO_BIG_MAX     4
#define ISM_H2PAGES_RUN_MAX  8u
#define ISM_H2PAGES_MAP_SIZE (1024u * 1024u)

/* Page runs, one free list per length; carved from private anonymous
 * mappings of ISM_H2PAGES_MAP_SIZE, never unmapped before the worker's exit
 * (a freed run's pages go back to the kernel at once). One per worker. */
struct ism_h2pages;
struct ism_h2pages *ism_h2pages_new(void);
/* After every session of the worker was freed. */
void ism_h2pages_free(struct ism_h2pages *pp);

struct ism_h2io_big {
	char *p;	 /* NULL: a free entry */
	size_t len;	 /* whole pages */
	uint8_t scratch; /* nghttp2 frames its output in it: nothing in it lives between sends */
	uint8_t rested;	 /* its whole pages were given back */
};

struct ism_h2io {
	nghttp2_session *ng;
	uint8_t sending; /* a socket send is in flight */
	uint16_t busy;	 /* inside nghttp2 or a walk of the streams: flush afterwards */
	uint8_t kicked;	 /* on the worker's list, to flush after the batch (ism_h2io_kick) */
	/* the connection's window is given back as DATA arrives, up to
	 * early_max bytes its streams' consumers have not taken (unread; of
	 * those, min(unread, early_max) are credited so), streams' as their
	 * consumers take it (an upstream connection: see worker/h2up.c); 0: as
	 * consumers take it */
	uint32_t early_max;
	uint64_t unread;
	uint64_t batch;	     /* the output batch being gathered (from 1) */
	uint64_t fly_batch;  /* the batch being sent */
	uint64_t sent_batch; /* the latest batch whose send completed */
	struct ism_buf gather;
	struct ism_buf wire;
	/* Heap bytes the connection holds (usable sizes): nghttp2's blocks (its
	 * allocator counts them), gather and wire, what the owner adds; less the
	 * pages given back while idle (rested), until the session stirs. */
	uint64_t held;
	uint64_t rested;
	uint32_t out_cap;	   /* gather.cap + wire.cap, as counted in held */
	uint8_t stirred;	   /* it read or sent since its pages were last given back */
	_Atomic uint64_t *gauge;   /* the worker's sum of held over such connections, or NULL */
	struct ism_h2pages *pages; /* the worker's page runs, or NULL: none */
	struct ism_h2io_big big[ISM_H2IO_BIG_MAX];
};

/* nghttp2's allocator for io's session (nghttp2_session_*_new3): glibc's,
 * each block counted in io->held (and *io->gauge) by its usable size; big
 * ones page runs from io->pages. io must stay where it is, and io->gauge and
 * io->pages be set before the session is made. */
nghttp2_mem ism_h2io_mem(struct ism_h2io *io);
/* The owner's own bytes (its structs) held for the connection: n more, or
 * less (negative); ism_h2io_free takes back whatever io->held still counts. */
void ism_h2io_count(struct ism_h2io *io, int64_t n);
/* The session reads (or sends, which ism_h2io_gather says itself): pages
 * given back count as held again, since nghttp2 may use them. */
void ism_h2io_stir(struct ism_h2io *io);
/* Nothing gathered, to send or in flight: nghttp2's output frame buffer holds
 * nothing (what ism_h2io_rest needs). */
bool ism_h2io_quiet(const struct ism_h2io *io);
/* How long a connection is idle before the tick calls ism_h2io_rest: at most
 * once per quiet spell, so that a busy connection pays no system call per
 * exchange. */
#define ISM_H2IO_REST_MS 1000u
/* The session is idle — no stream, nothing gathered, to send or in flight —
 * and has stirred since it was last called: the whole pages of nghttp2's
 * output frame buffer (nothing in it lives between frames) and of its big
 * blocks that hold only zeros (the stream table of a session without
 * streams) are given back to the kernel (they come back, zeroed, when
 * touched). The bytes given back. */
uint64_t ism_h2io_rest(struct ism_h2io *io);

/* After a call from a stream: whether the owner (a client session or an
 * upstream connection) goes on the worker's list to flush after the batch
 * (ism_w_kick), so that what its streams gave it in one batch goes out framed
 * by one pass of nghttp2 and in one send. Not while nghttp2 or a walk runs
 * (they flush as they end), nor twice. */
bool ism_h2io_kick(struct ism_h2io *io);
/* The list reached the owner: whether it is still to flush (then no longer
 * kicked). */
bool ism_h2io_kicked(struct ism_h2io *io);

/* For nghttp2's send callback: gathers len bytes (or says WOULDBLOCK). */
ssize_t ism_h2io_gather(struct ism_h2io *io, const uint8_t *data, size_t len);
/* Lets nghttp2 frame what it has; 1 and the bytes to send (*p, *len) when a
 * send may start now, 0 when there is none, < 0 on a session error. */
int ism_h2io_frame(struct ism_h2io *io, const char **p, uint32_t *len);
/* The send started by ism_h2io_frame completed. */
void ism_h2io_sent(struct ism_h2io *io);
/* Whether the batch a stream's last bytes went in (0: none yet) was sent. */
static inline bool ism_h2io_out(const struct ism_h2io *io, uint64_t batch)
{
	return batch != 0 && batch <= io->sent_batch;
}
/* Whether client session ng may still open a stream: stream identifiers end
 * at 2^31 - 1 (RFC 9113 5.1.1); a connection that used them all takes no new
 * stream. */
static inline bool ism_h2io_ids_left(nghttp2_session *ng)
{
	return nghttp2_session_get_next_stream_id(ng) <= INT32_MAX;
}
/* Gives back the output buffers when nothing is gathered or in flight. */
void ism_h2io_trim(struct ism_h2io *io);
void ism_h2io_free(struct ism_h2io *io);

/* A body nghttp2 reads (DATA frames) from a buffer that fills as data comes. */
struct ism_h2body {
	struct ism_buf b;
	uint32_t off;
	uint8_t end;	  /* the body ends with what b holds */
	uint8_t deferred; /* the read said DEFERRED: resume the stream when data comes */
	uint8_t trailers; /* the end is not END_STREAM: trailers follow */
};

/* For nghttp2's data source read callback: up to len bytes of the body for
 * a DATA frame, which ism_h2body_send then copies into the output (the frame
 * is not copied through nghttp2's own buffer). */
ssize_t ism_h2body_read(struct ism_h2body *bd, size_t len, uint32_t *flags);
/* For nghttp2's send data callback: the DATA frame f, its header framehd and
 * len bytes of the body, into the output. 0, or nghttp2's WOULDBLOCK (it
 * calls again later), TEMPORAL_CALLBACK_FAILURE (the body no longer holds the
 * bytes: it resets the stream) or CALLBACK_FAILURE. */
int ism_h2body_send(struct ism_h2io *io, struct ism_h2body *bd, const nghttp2_frame *f,
		    const uint8_t *framehd, size_t len);
/* Whether all the body holds was framed. */
static inline bool ism_h2body_drained(const struct ism_h2body *bd)
{
	return bd->off >= bd->b.len;
}
/* Adds len bytes (and the end); stream id's data goes on if it waited. */
int ism_h2body_add(struct ism_h2io *io, int32_t id, struct ism_h2body *bd, const char *p,
		   uint32_t len, bool end);

/* Bytes received on a stream for its consumer, handed over a batch at a
 * time: the consumer gets what gathered once it is done with the previous
 * batch, whose bytes then go back to the peer's flow-control windows (so a
 * stream holds at most its window). */
struct ism_h2in {
	struct ism_buf gather;
	struct ism_buf fly; /* handed over, until the consumer is done with it */
	uint64_t unconsumed;
	uint8_t want;	   /* the consumer waits for bytes */
	uint8_t end;	   /* the peer's END_STREAM came */
	uint8_t end_given; /* the consumer was told */
};

int ism_h2in_add(struct ism_h2in *in, const uint8_t *p, size_t len);
/* n bytes of DATA arrived for a stream that keeps them (io->early_max set):
 * the connection's window opens for them while io holds at most early_max
 * unread bytes. */
void ism_h2io_received(struct ism_h2io *io, size_t n);
/* The consumer is done with what it was given and wants more. */
void ism_h2in_want(struct ism_h2io *io, int32_t id, struct ism_h2in *in);
/* What goes to a waiting consumer now: true with the bytes and the end. */
bool ism_h2in_take(struct ism_h2in *in, const char **p, uint32_t *len, bool *done);
/* Nothing more is taken: every byte goes back to the windows. */
void ism_h2in_drop(struct ism_h2io *io, int32_t id, struct ism_h2in *in);
void ism_h2in_free(struct ism_h2in *in);

/* Submits the pairs in trl (ism_buf_put_pairs) as stream id's trailers (RST when they cannot be).
 */
void ism_h2_submit_trailers(struct ism_h2io *io, int32_t id, const struct ism_buf *trl);

/* Header fields for nghttp2's submit calls, which copy every name and value
 * and lower each name's capitals as they copy it (nghttp2_nv_array_copy): an
 * HTTP/1.1 upstream's "Content-Type" goes out as "content-type" with nothing
 * done here. Up to ISM_H2NV_LOCAL fields live in the struct itself (not to
 * be copied while in use), more on the heap. */
#define ISM_H2NV_LOCAL 24
struct ism_h2nv {
	nghttp2_nv *nv;
	size_t n, cap;
	nghttp2_nv local[ISM_H2NV_LOCAL];
};

/* Room for n fields; 0 or -ENOMEM. */
int ism_h2nv_init(struct ism_h2nv *h, size_t n);
/* Adds a field (within the room asked for) with nghttp2's flags; nothing is
 * copied. */
static inline void ism_h2nv_add_flags(struct ism_h2nv *h, const char *name, size_t nl,
				      const char *value, size_t vl, uint8_t flags)
{
	if (h->n < h->cap)
		h->nv[h->n++] = (nghttp2_nv){(uint8_t *)(uintptr_t)name,
					     (uint8_t *)(uintptr_t)value, nl, vl, flags};
}
static inline void ism_h2nv_add(struct ism_h2nv *h, const char *name, size_t nl, const char *value,
				size_t vl)
{
	ism_h2nv_add_flags(h, name, nl, value, vl, NGHTTP2_NV_FLAG_NONE);
}
/* A field whose name is lit, a string literal in lower case: nghttp2 keeps a
 * pointer to it (NGHTTP2_NV_FLAG_NO_COPY_NAME) instead of a lowered copy. */
#define ISM_H2NV_ADD_LIT(h, lit, value, vl)                                                        \
	ism_h2nv_add_flags((h), "" lit, sizeof(lit) - 1, (value), (vl),                            \
			   NGHTTP2_NV_FLAG_NO_COPY_NAME)
void ism_h2nv_free(struct ism_h2nv *h);

/* A stream's frame (header hd) on its byte meters (enum ism_meter: head and
 * wire of one side and way), as Envoy counts frames: 9 bytes of frame header
 * with the payload; a header block's CONTINUATIONs are in its length. */
static inline void ism_h2_meter(uint64_t *meter, enum ism_meter head, enum ism_meter wire,
				const nghttp2_frame_hd *hd)
{
	meter[wire] += hd->length + 9;
	if (hd->type == NGHTTP2_HEADERS)
		meter[head] += hd->length + 9;
}

#endif
