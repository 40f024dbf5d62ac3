/* SPDX-License-Identifier: Apache-2.0 */
/* The byte pump of tunnels (worker/tunnel.h). */
#include <errno.h>
#include <stdlib.h>
#include <sys/socket.h>

#include "lib/log.h"
#include "worker/ring.h"
#include "worker/session.h"
#include "worker/sock.h"
#include "worker/stream.h"
#include "worker/tunnel.h"
#include "worker/upstream.h"

/* n bytes read from side from; early: counted already as the session's. */
static void count_bytes(struct ism_wctx *w, struct ism_tunnel *t, int from, uint64_t n, bool early)
{
	struct ism_stream *st = t->st;

	if (from == ISM_TUN_CLIENT) {
		st->bytes_in += n;
		st->meter[ISM_M_DOWN_WIRE_IN] += n;
		st->meter[ISM_M_UP_WIRE_OUT] += n;
		if (!early)
			ism_wstat_add(&w->st->bytes_in, n);
		ism_wstat_add(&w->st->tunnel_bytes_in, n);
		if (t->stats != NULL)
			atomic_fetch_add_explicit(&t->stats->bytes_in, n, memory_order_relaxed);
	} else {
		st->bytes_out += n;
		st->meter[ISM_M_UP_WIRE_IN] += n;
		st->meter[ISM_M_DOWN_WIRE_OUT] += n;
		ism_wstat_add(&w->st->bytes_out, n);
		ism_wstat_add(&w->st->tunnel_bytes_out, n);
		if (t->stats != NULL)
			atomic_fetch_add_explicit(&t->stats->bytes_out, n, memory_order_relaxed);
	}
}

/* What the client sent before the tunnel (a ClientHello, bytes after an
 * upgrade request) goes to the upstream first; the client is read once it is
 * out. A PROXY header still to go (ism_sock_preface) goes at once, alone if
 * the client has sent nothing: a server that speaks first waits for it. */
static void client_first(struct ism_wctx *w, struct ism_tunnel *t)
{
	struct ism_buf *in = &t->st->sess->in;

	if (in->len == 0 && !ism_sock_preface_pending(t->sk[ISM_TUN_UPSTREAM])) {
		ism_sock_recv(w, t->sk[ISM_TUN_CLIENT]);
		return;
	}
	t->send[ISM_TUN_UPSTREAM] = ISM_TUN_EARLY;
	ism_sock_send(w, t->sk[ISM_TUN_UPSTREAM], in->p, in->len, -1);
}

int ism_tunnel_open(struct ism_wctx *w, struct ism_stream *st, uint32_t idle_ms, uint32_t max_ms,
		    struct ism_l4counters *stats)
{
	struct ism_tunnel *t = calloc(1, sizeof(*t));
	struct ism_sess *s = st->sess;

	if (t == NULL)
		return -ENOMEM;
	t->state = ISM_TUN_OPEN;
	t->st = st;
	t->sk[ISM_TUN_CLIENT] = &s->s;
	t->sk[ISM_TUN_UPSTREAM] = &st->up->s;
	t->opened_ms = w->now;
	t->idle_ms = idle_ms;
	t->idle_deadline = idle_ms ? w->now + idle_ms : 0;
	t->end_deadline = max_ms ? w->now + max_ms : 0;
	t->stats = stats;
	t->pend_bid[0] = t->pend_bid[1] = -1;
	st->tun = t;
	s->state = ISM_SESS_TUNNEL;
	st->up->state = ISM_UP_TUNNEL;
	/* A tunnel reads a side only once the other took its bytes. */
	ism_sock_single(w, &s->s);
	ism_sock_single(w, &st->up->s);
	ism_sess_set_deadline(w, s, ISM_DL_NONE, 0);
	ism_wstat_add(&w->st->tunnels_active, 1);
	ism_wstat_add(&w->st->tunnels_total, 1);
	if (stats != NULL)
		atomic_fetch_add_explicit(&stats->connections, 1, memory_order_relaxed);
	if (s->in.len)
		count_bytes(w, t, ISM_TUN_CLIENT, s->in.len, true);
	/* An upstream that answered the upgrade before it read the whole
	 * request: the rest of the request's head is still going out, and
	 * the client's bytes follow it (on_sent). */
	if (t->sk[ISM_TUN_UPSTREAM]->send_armed)
		t->send[ISM_TUN_UPSTREAM] = ISM_TUN_HEAD;
	else
		client_first(w, t);
	/* What the upstream sent with its answer to a TCP or TLS route's
	 * CONNECT (a server that speaks first) goes to the client first. */
	if (st->l4 && st->up->in.len) {
		count_bytes(w, t, ISM_TUN_UPSTREAM, st->up->in.len, false);
		t->send[ISM_TUN_CLIENT] = ISM_TUN_EARLY;
		ism_sock_send(w, t->sk[ISM_TUN_CLIENT], st->up->in.p, st->up->in.len, -1);
	}
	ism_sock_recv(w, t->sk[ISM_TUN_UPSTREAM]);
	return 0;
}

void ism_tunnel_free(struct ism_wctx *w, struct ism_tunnel *t)
{
	for (int i = 0; i < 2; i++)
		if (t->pend_bid[i] >= 0)
			ism_w_buf_recycle(w, t->pend_bid[i]);
	ism_wstat_add(&w->st->tunnels_active, (uint64_t)-1);
	ism_wstat_add(&w->st->tunnel_ms, w->now - t->opened_ms);
	t->st->tun = NULL;
	free(t);
}

void ism_tunnel_close(struct ism_wctx *w, struct ism_tunnel *t, const char *flags)
{
	if (t->state == ISM_TUN_CLOSED)
		return;
	t->state = ISM_TUN_CLOSED;
	/* The stream logs the tunnel and closes both sides (t goes with it). */
	ism_stream_tunnel_end(w, t->st, flags);
}

/* Side i's sending half ends, its receiving half going on: a FIN, after a
 * close_notify over TLS (a half close, as Envoy's TLS socket makes one). Once
 * per side: its peer ended, and nothing goes to it after its last send. */
static void shut(struct ism_tunnel *t, int i)
{
	ism_sock_shut_write(t->sk[i]);
}

/* The state of a tunnel whose side i alone ended. */
static enum ism_tun_state ended_alone(int i)
{
	return i == ISM_TUN_CLIENT ? ISM_TUN_CLIENT_ENDED : ISM_TUN_UPSTREAM_ENDED;
}

/* The end (EOF) came from side i (which is not read again): passed on to the
 * other, once what goes to it is out. Both ended: the tunnel is done once
 * nothing is in flight. */
static void ended(struct ism_wctx *w, struct ism_tunnel *t, int i)
{
	switch ((enum ism_tun_state)t->state) {
	case ISM_TUN_OPEN:
		t->state = ended_alone(i);
		break;
	case ISM_TUN_CLIENT_ENDED:
	case ISM_TUN_UPSTREAM_ENDED:
		ISM_BUG_ON(t->state == ended_alone(i));
		if (t->send[0] == ISM_TUN_IDLE && t->send[1] == ISM_TUN_IDLE) {
			ism_tunnel_close(w, t, NULL);
			return;
		}
		t->state = ISM_TUN_DRAINING;
		break;
	case ISM_TUN_DRAINING:
	case ISM_TUN_CLOSED:
		ISM_BUG_ON(1);
		return;
	}
	if (t->send[!i] == ISM_TUN_IDLE)
		shut(t, !i);
}

static void on_recv(struct ism_wctx *w, struct ism_tunnel *t, int i, int res, int bid)
{
	if (res <= 0) {
		if (bid >= 0)
			ism_w_buf_recycle(w, bid);
		if (res == 0) {
			ended(w, t, i);
			return;
		}
		/* A reset: from the upstream "UC"-like, else the client went. */
		ism_tunnel_close(w, t, i == ISM_TUN_UPSTREAM ? "UC" : "DC");
		return;
	}
	if (t->idle_ms)
		t->idle_deadline = w->now + t->idle_ms;
	count_bytes(w, t, i, (uint64_t)res, false);
	if (t->send[!i] != ISM_TUN_IDLE) {
		t->pend_bid[i] = bid;
		t->pend_len[i] = (uint32_t)res;
		return;
	}
	t->send[!i] = ISM_TUN_RELAY;
	ism_sock_send(w, t->sk[!i], ism_w_buf_addr(w, bid), (uint32_t)res, bid);
}

/* The send to side j ended (res < 0: it failed): early bytes' memory goes.
 * false: the request's head went and the client's early bytes follow it in its
 * place, nothing more to do. */
static bool send_done(struct ism_wctx *w, struct ism_tunnel *t, int j, int res)
{
	enum ism_tun_send what = (enum ism_tun_send)t->send[j];

	t->send[j] = ISM_TUN_IDLE;
	switch (what) {
	case ISM_TUN_RELAY:
		return true;
	case ISM_TUN_EARLY:
		ism_buf_free(j == ISM_TUN_UPSTREAM ? &t->st->sess->in : &t->st->up->in);
		return true;
	case ISM_TUN_HEAD:
		/* The request's head is out: the client's bytes from now, what
		 * the session holds first; else as after any send (what a
		 * receive armed before the tunnel brought meanwhile, or a read). */
		if (res >= 0 && t->st->sess->in.len != 0) {
			client_first(w, t);
			return false;
		}
		return true;
	case ISM_TUN_IDLE:
		break;
	}
	ISM_BUG_ON(1);
	return false;
}

/* The send to side j ended: what was read from the other side meanwhile goes,
 * else that side's end, else it is read again. */
static void on_sent(struct ism_wctx *w, struct ism_tunnel *t, int j, int res)
{
	int from = !j;

	if (!send_done(w, t, j, res))
		return;
	if (res < 0) {
		ism_tunnel_close(w, t, j == ISM_TUN_UPSTREAM ? "UC" : "DC");
		return;
	}
	if (t->pend_bid[from] >= 0) {
		int bid = t->pend_bid[from];

		t->pend_bid[from] = -1;
		t->send[j] = ISM_TUN_RELAY;
		ism_sock_send(w, t->sk[j], ism_w_buf_addr(w, bid), t->pend_len[from], bid);
		return;
	}
	switch ((enum ism_tun_state)t->state) {
	case ISM_TUN_OPEN:
		ism_sock_recv(w, t->sk[from]);
		return;
	case ISM_TUN_CLIENT_ENDED:
	case ISM_TUN_UPSTREAM_ENDED:
		if (t->state == ended_alone(from))
			shut(t, j);
		else
			ism_sock_recv(w, t->sk[from]);
		return;
	case ISM_TUN_DRAINING: /* done once the send the other way is out too */
		if (t->send[from] == ISM_TUN_IDLE)
			ism_tunnel_close(w, t, NULL);
		else
			shut(t, j);
		return;
	case ISM_TUN_CLOSED:
		break;
	}
	ISM_BUG_ON(1);
}

void ism_tunnel_event(struct ism_wctx *w, struct ism_tunnel *t, int side, struct ism_sock_ev ev)
{
	switch ((enum ism_sock_evkind)ev.kind) {
	case ISM_SEV_NONE:
		return;
	case ISM_SEV_RECV:
		on_recv(w, t, side, ev.res, ev.bid);
		return;
	case ISM_SEV_SENT:
		/* A send the tunnel did not make: the TLS session's own records
		 * (KeyUpdate answers, alerts). One that failed ends the tunnel;
		 * one that went is nothing to it. */
		if (t->send[side] == ISM_TUN_IDLE) {
			if (ev.res < 0)
				ism_tunnel_close(w, t, side == ISM_TUN_UPSTREAM ? "UC" : "DC");
			return;
		}
		on_sent(w, t, side, ev.res);
		return;
	case ISM_SEV_TLS_FAIL:
		ism_tunnel_close(w, t, side == ISM_TUN_UPSTREAM ? "UC" : "DC");
		return;
	case ISM_SEV_HANDSHAKE: /* a renegotiation's: nothing to do */
		return;
	case ISM_SEV_FREE:
	case ISM_SEV_CONNECTED:
		break;
	}
	ISM_BUG_ON(1);
}

void ism_tunnel_tick(struct ism_wctx *w, struct ism_tunnel *t)
{
	if (t->end_deadline && w->now >= t->end_deadline) {
		ism_debug("tunnel: maxConnectionDuration reached");
		ism_tunnel_close(w, t, "DT");
		return;
	}
	if (t->idle_deadline && w->now >= t->idle_deadline) {
		ism_debug("tunnel: idle timeout");
		ism_tunnel_close(w, t, "SI");
	}
}
