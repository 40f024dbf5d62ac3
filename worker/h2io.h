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
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "worker/http1.h"
#include "worker/worker-t.h"

/* Output gathered while a send is in flight, at most (then nghttp2 waits). */
#define ISM_H2_GATHER_MAX (64u * 1024u)

struct ism_h2io {
	nghttp2_session *ng;
	uint8_t sending;     /* a socket send is in flight */
	uint16_t busy;	     /* inside nghttp2 or a walk of the streams: flush afterwards */
	uint64_t batch;	     /* the output batch being gathered (from 1) */
	uint64_t fly_batch;  /* the batch being sent */
	uint64_t sent_batch; /* the latest batch whose send completed */
	struct ism_buf gather;
	struct ism_buf wire;
};

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

/* For nghttp2's data source read callback. */
ssize_t ism_h2body_read(struct ism_h2body *bd, uint8_t *buf, size_t len, uint32_t *flags);
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

/* Header fields for nghttp2, names lowercased into a scratch buffer. */
struct ism_h2nv {
	nghttp2_nv *nv;
	size_t n, cap;
	struct ism_buf scratch;
};

/* Room for n fields whose names take name_bytes; 0 or -ENOMEM. */
int ism_h2nv_init(struct ism_h2nv *h, size_t n, uint32_t name_bytes);
/* Adds a field (within the room asked for); the value is not copied. */
void ism_h2nv_add(struct ism_h2nv *h, const char *name, size_t nl, const char *value, size_t vl);
void ism_h2nv_free(struct ism_h2nv *h);

#endif
