#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""An HTTP/2 test client (the `h2` package) that shows what curl and nghttp hide:
which stream got what, RST_STREAM codes, GOAWAY and when it came, trailers-only
answers. For tests that run under a python without `h2`.

Run it with Debian's python (/usr/bin/python3: python3-h2).

usage: h2_client.py --connect ADDR:PORT [--ca CRT [--sni NAME]] [--authority A]
                    [--burst] [--timeout S] REQUESTS [AFTER]

REQUESTS and AFTER are JSON lists of requests, all on one connection (prior
knowledge in plaintext; ALPN h2 with --ca):
  {"method": "GET", "path": "/", "headers": [["name", "value"]], "body": "text",
   "body_size": N, "trailers": [["name", "value"]], "grpc": "message", "cancel_after": S}
body_size sends N bytes of the a..z pattern; cancel_after resets the stream
(RST_STREAM CANCEL) S seconds from the start unless it ended before (its result
then says "cancelled": true); grpc sends one gRPC message (POST,
content-type application/grpc, te: trailers unless given). REQUESTS are opened
together: with --burst all at once right after the preface, before the
server's SETTINGS is read (so a server limit is not known yet); otherwise
within the server's SETTINGS_MAX_CONCURRENT_STREAMS. AFTER is opened once
every REQUESTS stream has ended, on the same connection.

Prints one JSON object: {"settings": {server SETTINGS}, "goaway": {"last_stream_id",
"error_code" (of the last), "at" (when the first came), "count"} or null, "closed": bool, "error": text or null,
"streams": [...], "after": [...]}, a stream being {"id", "status", "headers",
"trailers", "trailers_only" (END_STREAM on the response HEADERS), "body_len",
"body" (first 64 KiB as latin-1), "sha256", "sent_sha256", "grpc_messages",
"reset" (RST_STREAM code) or null, "not_sent" (reason) or null, "done_at",
"meter": the bytes of its frames as Envoy meters them, {"head_sent", "wire_sent",
"head_received", "wire_received"}}, times in seconds from the start. Exits 0 when it could say what happened, 2 on bad usage.
"""

import argparse
import hashlib
import json
import select
import socket
import ssl
import sys
import time

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings

from h2util import GoawayFilter, pattern

KEEP_BODY = 64 * 1024
WINDOW = 1 << 24
MAX_TIMEOUT = 300.0


class Stream:
    def __init__(self, spec, index):
        self.spec = spec
        self.index = index
        self.id = None
        self.status = None
        self.headers = []
        self.trailers = []
        self.trailers_only = False
        self.body = bytearray()
        self.body_len = 0
        self.sha = hashlib.sha256()
        self.reset = None
        self.not_sent = None
        self.ended = False
        self.done_at = None
        self.pending = b""
        self.pending_trailers = []
        self.pending_end = False
        self.sent_sha = None
        self.cancelled = False

    @property
    def finished(self):
        return self.ended or self.reset is not None or self.not_sent is not None or self.cancelled

    def grpc_messages(self):
        if not any(k == "content-type" and v.startswith("application/grpc") for k, v in self.headers):
            return []
        out, b = [], bytes(self.body)
        while len(b) >= 5:
            n = int.from_bytes(b[1:5], "big")
            out.append(b[5:5 + n].decode("latin-1"))
            b = b[5 + n:]
        return out

    def result(self, sent, received):
        meter = {"head_sent": sent.head.get(self.id, 0), "wire_sent": sent.wire.get(self.id, 0),
                 "head_received": received.head.get(self.id, 0),
                 "wire_received": received.wire.get(self.id, 0)}
        return {"meter": meter, "id": self.id, "finished": self.finished, "status": self.status, "headers": self.headers,
                "trailers": self.trailers, "trailers_only": self.trailers_only, "body_len": self.body_len,
                "body": bytes(self.body[:KEEP_BODY]).decode("latin-1"), "sha256": self.sha.hexdigest(),
                "sent_sha256": self.sent_sha, "grpc_messages": self.grpc_messages(), "reset": self.reset,
                "not_sent": self.not_sent, "done_at": self.done_at, "cancelled": self.cancelled}


class Client:
    def __init__(self, sock, authority, scheme, deadline):
        self.sock = sock
        self.authority = authority
        self.scheme = scheme
        self.deadline = deadline
        self.t0 = time.monotonic()
        cfg = h2.config.H2Configuration(client_side=True, header_encoding="utf-8")
        self.h2 = h2.connection.H2Connection(cfg)
        self.h2.local_settings = h2.settings.Settings(client=True, initial_values={
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 1 << 20,
            h2.settings.SettingCodes.ENABLE_PUSH: 0,
        })
        self.by_id = {}
        self.frames = GoawayFilter()
        self.sent = GoawayFilter(skip=24)  # what we send, metered: the preface first
        self.settings = None
        self.goaway = None
        self.closed = False
        self.error = None

    def now(self):
        return round(time.monotonic() - self.t0, 3)

    def flush(self):
        data = self.h2.data_to_send()
        if data and not self.closed:
            self.sent.feed(data)
            try:
                self.sock.sendall(data)
            except OSError as e:
                self.closed = True
                self.error = self.error or f"send: {e}"

    def start(self):
        self.h2.initiate_connection()
        self.h2.increment_flow_control_window(WINDOW)
        self.flush()

    def open(self, s):
        spec = s.spec
        body = b""
        headers = [(k.lower(), v) for k, v in spec.get("headers", [])]
        method = spec.get("method", "GET")
        if "grpc" in spec:
            msg = spec["grpc"].encode("latin-1")
            body = b"\0" + len(msg).to_bytes(4, "big") + msg
            method = spec.get("method", "POST")
            if not any(k == "content-type" for k, _ in headers):
                headers.append(("content-type", "application/grpc"))
            if not any(k == "te" for k, _ in headers):
                headers.append(("te", "trailers"))
        elif "body_size" in spec:
            body = pattern(int(spec["body_size"]))
        elif "body" in spec:
            body = spec["body"].encode("latin-1")
        trailers = [(k.lower(), v) for k, v in spec.get("trailers", [])]
        s.sent_sha = hashlib.sha256(body).hexdigest()
        if self.goaway is not None:
            s.not_sent = "goaway"
            return
        try:
            sid = self.h2.get_next_available_stream_id()
            hdrs = [(":method", method), (":scheme", self.scheme),
                    (":authority", spec.get("authority", self.authority)), (":path", spec.get("path", "/"))] + headers
            self.h2.send_headers(sid, hdrs, end_stream=not body and not trailers)
        except h2.exceptions.ProtocolError as e:
            s.not_sent = repr(e)
            return
        s.id = sid
        self.by_id[sid] = s
        s.pending = body
        s.pending_trailers = trailers
        s.pending_end = bool(body) or bool(trailers)

    def pump(self, streams):
        """Sends what flow control lets through of the request bodies (and the
        resets cancel_after asks for)."""
        for s in streams:
            if s.id is not None and not s.finished and self.now() >= s.spec.get("cancel_after", float("inf")):
                try:
                    self.h2.reset_stream(s.id, h2.errors.ErrorCodes.CANCEL)
                except h2.exceptions.ProtocolError:
                    pass
                s.cancelled = True
                s.done_at = self.now()
            if s.id is None or not s.pending_end or s.finished:
                continue
            while s.pending:
                try:
                    room = min(self.h2.local_flow_control_window(s.id), self.h2.max_outbound_frame_size)
                except h2.exceptions.ProtocolError:
                    s.pending_end = False
                    break
                if room <= 0:
                    break
                piece, s.pending = s.pending[:room], s.pending[room:]
                self.h2.send_data(s.id, piece, end_stream=not s.pending and not s.pending_trailers)
            if not s.pending and s.pending_end:
                # The last DATA frame carried END_STREAM unless trailers follow.
                if s.pending_trailers:
                    self.h2.send_headers(s.id, s.pending_trailers, end_stream=True)
                s.pending_end = False
        self.flush()

    def on_event(self, ev):
        s = self.by_id.get(getattr(ev, "stream_id", None))
        if isinstance(ev, h2.events.ResponseReceived) and s:
            s.headers = [(k, v) for k, v in ev.headers]
            s.status = int(dict(ev.headers).get(":status", 0))
            s.trailers_only = ev.stream_ended is not None
        elif isinstance(ev, h2.events.DataReceived) and s:
            s.body_len += len(ev.data)
            s.sha.update(ev.data)
            if len(s.body) < KEEP_BODY:
                s.body += ev.data[:KEEP_BODY - len(s.body)]
            if ev.flow_controlled_length:
                self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, h2.events.TrailersReceived) and s:
            s.trailers = [(k, v) for k, v in ev.headers]
        elif isinstance(ev, h2.events.StreamEnded) and s:
            s.ended = True
            s.done_at = self.now()
        elif isinstance(ev, h2.events.StreamReset) and s:
            s.reset = int(ev.error_code)
            s.done_at = self.now()
        elif isinstance(ev, h2.events.RemoteSettingsChanged):
            if self.settings is None:
                self.settings = {}
            for k, v in ev.changed_settings.items():
                try:
                    name = h2.settings.SettingCodes(k).name
                except ValueError:
                    name = str(k)
                self.settings[name] = v.new_value

    def on_goaway(self, last_stream_id, error_code):
        # A graceful shutdown may send two (the first with 2^31-1): "at" is
        # when the first came, the rest is the last one's.
        first = self.goaway["at"] if self.goaway else self.now()
        count = self.goaway["count"] + 1 if self.goaway else 1
        self.goaway = {"last_stream_id": last_stream_id, "error_code": error_code, "at": first, "count": count}
        for sid, st in self.by_id.items():
            if sid > last_stream_id and not st.finished:
                st.not_sent = "above GOAWAY last_stream_id"

    def read_some(self, wait):
        if self.closed:
            return
        pending = self.sock.pending() if isinstance(self.sock, ssl.SSLSocket) else 0
        if not pending:
            r, _, _ = select.select([self.sock], [], [], wait)
            if not r:
                return
        try:
            data = self.sock.recv(65536)
        except (ssl.SSLWantReadError, BlockingIOError):
            return
        except OSError as e:
            self.closed = True
            self.error = self.error or f"recv: {e}"
            return
        if not data:
            self.closed = True
            return
        data, goaways = self.frames.feed(data)
        for last, code in goaways:
            self.on_goaway(last, code)
        try:
            events = self.h2.receive_data(data)
        except h2.exceptions.ProtocolError as e:
            self.error = f"protocol error from the server: {e!r}"
            self.closed = True
            return
        for ev in events:
            self.on_event(ev)
        self.flush()

    def run(self, streams, burst):
        """Opens the streams (all at once with burst, else within the server's
        limit) and drives them until each ended, the connection closed or the deadline."""
        waiting = list(streams)
        if burst:
            for s in waiting:
                self.open(s)
            waiting = []
            self.flush()
        while time.monotonic() < self.deadline:
            if waiting and not self.closed:
                if self.settings is None:
                    self.read_some(0.05)
                    continue
                limit = self.h2.remote_settings.max_concurrent_streams
                while waiting and self.h2.open_outbound_streams < limit:
                    self.open(waiting.pop(0))
            self.pump(streams)
            if all(s.finished for s in streams) and not waiting:
                return
            if self.closed:
                break
            self.read_some(0.05)
        for s in waiting:
            s.not_sent = s.not_sent or ("connection closed" if self.closed else "timeout")
        if not self.closed and time.monotonic() >= self.deadline:
            self.error = self.error or "timeout"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--connect", required=True)
    ap.add_argument("--ca")
    ap.add_argument("--sni")
    ap.add_argument("--authority")
    ap.add_argument("--burst", action="store_true")
    ap.add_argument("--timeout", type=float, default=30.0)
    ap.add_argument("requests")
    ap.add_argument("after", nargs="?", default="[]")
    args = ap.parse_args()
    try:
        reqs = json.loads(args.requests)
        after = json.loads(args.after)
        assert isinstance(reqs, list) and isinstance(after, list)
    except (ValueError, AssertionError):
        ap.error("REQUESTS and AFTER must be JSON lists")
    host, _, port = args.connect.rpartition(":")
    deadline = time.monotonic() + min(args.timeout, MAX_TIMEOUT)
    out = {"settings": None, "goaway": None, "closed": False, "error": None, "streams": [], "after": []}
    try:
        sock = socket.create_connection((host, int(port)), timeout=min(args.timeout, 10.0))
    except OSError as e:
        out["error"] = f"connect: {e}"
        json.dump(out, sys.stdout)
        print()
        return 0
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    scheme = "http"
    if args.ca:
        ctx = ssl.create_default_context(cafile=args.ca)
        ctx.check_hostname = False
        ctx.set_alpn_protocols(["h2"])
        try:
            sock = ctx.wrap_socket(sock, server_hostname=args.sni or host)
        except (ssl.SSLError, OSError) as e:
            out["error"] = f"TLS: {e}"
            json.dump(out, sys.stdout)
            print()
            return 0
        scheme = "https"
        if sock.selected_alpn_protocol() != "h2":
            out["error"] = f"ALPN selected {sock.selected_alpn_protocol()!r}, not h2"
    c = Client(sock, args.authority or f"{args.sni or host}:{port}", scheme, deadline)
    c.start()
    first = [Stream(r, i) for i, r in enumerate(reqs)]
    c.run(first, args.burst)
    second = [Stream(r, i) for i, r in enumerate(after)]
    if second:
        c.run(second, False)
    try:
        sock.close()
    except OSError:
        pass
    out.update({"settings": c.settings, "goaway": c.goaway, "closed": c.closed,
                "error": out["error"] or c.error,
                "streams": [s.result(c.sent, c.frames) for s in first],
                "after": [s.result(c.sent, c.frames) for s in second]})
    json.dump(out, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
