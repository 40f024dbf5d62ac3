#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A test origin server speaking HTTP/2, the counterpart of upstream.c.

Run it with Debian's python (/usr/bin/python3: the `h2` package, python3-h2).
Plaintext listeners take prior-knowledge h2c; with --cert/--key they take TLS
with ALPN h2 and http/1.1. On either, a connection that does not start with the
HTTP/2 preface is served as HTTP/1.1 (so that control requests and a gateway
that does not speak HTTP/2 upstream get answers that say so).

usage: h2_upstream.py --listen ADDR:PORT[=NAME] [--listen ...] [--name NAME] [--zone Z]
                      [--cert CRT --key KEY] [--max-streams N] [--window N] [--no-http1]

Prints "listening on ADDR:PORT" per listener once it listens. Paths (query ignored):
  /delay/MS        the default answer after MS milliseconds (at most 60000)
  /status/CODE     that status (200..599)
  /echo            the request body streamed back as it comes (request trailers
                   come back as response trailers)
  /sha256          {"bytes": N, "sha256": HEX} of the request body
  /big/N           N bytes of the a..z pattern, as flow control allows
  /reset[/CODE]    RST_STREAM with CODE (default 2, INTERNAL_ERROR) and no response
                   (HTTP/1.1: the connection is closed)
  /early[/CODE]    "early\n" at once, whole (END_STREAM) whatever of the request body is
                   still to come, then RST_STREAM with CODE (default 8, CANCEL)
  /interim/N       N interim heads ("103", a `link` field each), then the default
                   answer (HTTP/2 only: 400 over HTTP/1.1)
  /goaway          the default answer, with GOAWAY sent first: no new streams on
                   this connection, which closes once its open streams end
  /healthz         200, or 503 after /__ctl/health/fail
  /__ctl/{health/fail,health/ok,fail/N,ok,reset,count,stats}
                   as upstream.c; stats: JSON counters (connections, HTTP/2 ones, protocols,
                   streams in flight at once, resets received, ...)
  anything else    200, JSON: upstream, zone, protocol, tls, alpn, method, path,
                   authority, scheme, headers, trailers, body_bytes, conn, stream
Every answer has `x-upstream: NAME`. A request header `x-send-trailer-NAME: V`
adds the response trailer `NAME: V`.
"""

import argparse
import asyncio
import hashlib
import json
import signal
import socket
import ssl
import sys

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
import hyperframe.frame

from h2util import GoawayFilter, PATTERN

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
MAX_CONNS = 1024
DELAY_CAP_MS = 60000
BIG_CAP = 1 << 31
IDLE_S = 120
STALL_S = 60  # longest wait for the peer's flow-control window
H1_MAX_HEAD = 64 * 1024
H1_MAX_BODY_BUFFER = 64 * 1024 * 1024
CHUNK = 16 * 1024
CONN_WINDOW = 1 << 24


class Gone(Exception):
    """The stream or connection went away while a handler was using it."""


class Stats:
    def __init__(self):
        self.connections = 0
        self.h2_connections = 0
        self.open_connections = 0
        self.requests = 0
        self.by_protocol = {"HTTP/2": 0, "HTTP/1.1": 0}
        self.in_flight = 0
        self.max_in_flight = 0
        self.max_streams_per_conn = 0
        self.resets_received = {}
        self.protocol_errors = 0
        self.goaways_received = 0
        self.refused = 0
        self.pings = 0
        self.fail_status = 0
        self.reset_mode = False
        self.health_failing = False

    def as_json(self):
        return {
            "connections": self.connections, "h2_connections": self.h2_connections,
            "open_connections": self.open_connections,
            "requests": self.requests, "by_protocol": self.by_protocol,
            "in_flight": self.in_flight, "max_in_flight": self.max_in_flight,
            "max_streams_per_conn": self.max_streams_per_conn,
            "resets_received": self.resets_received, "protocol_errors": self.protocol_errors,
            "refused": self.refused, "goaways_received": self.goaways_received, "pings": self.pings,
        }


class Server:
    def __init__(self, args):
        self.args = args
        self.stats = Stats()
        self.conn_seq = 0
        self.tasks = set()


# --------------------------------------------------------------------------- exchanges
# One request/response, whichever protocol carries it. The handlers below see
# only this interface.


class Exchange:
    protocol = "?"

    def __init__(self, srv, conn, method, path, authority, scheme, headers):
        self.srv = srv
        self.conn = conn
        self.method = method
        self.path = path
        self.authority = authority
        self.scheme = scheme
        self.headers = headers  # [(lowercased name, value)] without pseudo-headers
        self.trailers = []
        self.body_bytes = 0

    def header(self, name):
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def response_trailers(self):
        return [(k[len("x-send-trailer-"):], v) for k, v in self.headers if k.startswith("x-send-trailer-")]

    def info(self, stream):
        return {
            "upstream": self.conn.name, "zone": self.srv.args.zone, "protocol": self.protocol,
            "tls": self.conn.tls, "alpn": self.conn.alpn, "method": self.method, "path": self.path,
            "authority": self.authority, "scheme": self.scheme, "headers": self.headers,
            "trailers": self.trailers, "body_bytes": self.body_bytes, "conn": self.conn.seq,
            "stream": stream,
        }


# --------------------------------------------------------------------------- handlers


def path_arg(path, prefix):
    return path[len(prefix):] if path.startswith(prefix) else None


def parse_int(s, lo, hi):
    try:
        v = int(s, 10)
    except (TypeError, ValueError):
        return None
    return v if lo <= v <= hi and s.isdigit() else None


async def simple(ex, status, body, ctype="text/plain"):
    body = body.encode() if isinstance(body, str) else body
    await ex.respond(status, [("content-type", ctype), ("content-length", str(len(body)))], body,
                     ex.response_trailers())


async def default_answer(ex):
    await ex.drain_body()
    info = ex.info(getattr(ex, "stream_id", None))
    await simple(ex, 200, json.dumps(info) + "\n", "application/json")


async def handle_ctl(ex, cmd):
    st = ex.srv.stats
    await ex.drain_body()
    if cmd == "health/fail":
        st.health_failing = True
    elif cmd == "health/ok":
        st.health_failing = False
    elif cmd.startswith("fail/"):
        v = parse_int(cmd[5:], 200, 599)
        if v is None:
            return await simple(ex, 400, "bad status\n")
        st.fail_status = v
    elif cmd == "ok":
        st.fail_status = 0
        st.reset_mode = False
    elif cmd == "reset":
        st.reset_mode = True
    elif cmd == "count":
        return await simple(ex, 200, f"{st.requests}\n")
    elif cmd == "stats":
        return await simple(ex, 200, json.dumps(st.as_json()) + "\n", "application/json")
    else:
        return await simple(ex, 404, "unknown control\n")
    await simple(ex, 200, "ok\n")


async def handle(ex):
    st = ex.srv.stats
    path = ex.path.split("?", 1)[0]
    ctl = path_arg(path, "/__ctl/")
    if ctl is not None:
        return await handle_ctl(ex, ctl)
    st.requests += 1
    st.by_protocol[ex.protocol] = st.by_protocol.get(ex.protocol, 0) + 1
    if path == "/healthz":
        await ex.drain_body()
        return await simple(ex, 503 if st.health_failing else 200, "failing\n" if st.health_failing else "ok\n")
    if st.reset_mode:
        return await ex.reset(h2.errors.ErrorCodes.INTERNAL_ERROR)
    if path == "/reset" or path.startswith("/reset/"):
        code = parse_int(path[7:], 0, 0xffffffff) if path.startswith("/reset/") else 2
        return await ex.reset(2 if code is None else code)
    arg = path_arg(path, "/early/")
    if arg is not None:
        code = parse_int(arg, 0, 0xffffffff)
        await simple(ex, 200, "early\n")
        return await ex.reset(8 if code is None else code)
    if st.fail_status:
        await ex.drain_body()
        return await simple(ex, st.fail_status, f"{ex.conn.name} fail {st.fail_status}\n")
    if path == "/echo":
        return await ex.echo()
    if path == "/sha256":
        h = hashlib.sha256()
        async for piece in ex.body():
            h.update(piece)
        return await simple(ex, 200, json.dumps({"bytes": ex.body_bytes, "sha256": h.hexdigest()}) + "\n",
                            "application/json")
    arg = path_arg(path, "/status/")
    if arg is not None:
        v = parse_int(arg, 200, 599)
        await ex.drain_body()
        if v is None:
            return await simple(ex, 400, "bad status\n")
        return await simple(ex, v, f"{ex.conn.name} status {v}\n")
    arg = path_arg(path, "/interim/")
    if arg is not None:
        n = parse_int(arg, 0, 100000)
        if n is None or ex.protocol != "HTTP/2":
            await ex.drain_body()
            return await simple(ex, 400, "bad interim count, or not HTTP/2\n")
        for i in range(n):
            await ex.interim([("link", f"</style{i}.css>; rel=preload")])
        return await default_answer(ex)
    arg = path_arg(path, "/delay/")
    if arg is not None:
        v = parse_int(arg, 0, 1 << 32)
        if v is None:
            await ex.drain_body()
            return await simple(ex, 400, "bad delay\n")
        await asyncio.sleep(min(v, DELAY_CAP_MS) / 1000.0)
        return await default_answer(ex)
    arg = path_arg(path, "/big/")
    if arg is not None:
        n = parse_int(arg, 0, BIG_CAP)
        await ex.drain_body()
        if n is None:
            return await simple(ex, 400, "bad size\n")
        await ex.start(200, [("content-type", "application/octet-stream"), ("content-length", str(n))],
                       end=(n == 0))
        sent = 0
        while sent < n:
            piece = min(n - sent, len(PATTERN) - 26)
            off = sent % 26
            await ex.data(PATTERN[off:off + piece], end=False)
            sent += piece
        if n:
            await ex.finish(ex.response_trailers())
        return
    if path == "/goaway":
        await ex.goaway()
        return await default_answer(ex)
    return await default_answer(ex)


# --------------------------------------------------------------------------- HTTP/2


class H2Exchange(Exchange):
    protocol = "HTTP/2"

    def __init__(self, srv, conn, stream_id, hdrs):
        pseudo = {k: v for k, v in hdrs if k.startswith(":")}
        super().__init__(srv, conn, pseudo.get(":method"), pseudo.get(":path"), pseudo.get(":authority"),
                         pseudo.get(":scheme"), [(k, v) for k, v in hdrs if not k.startswith(":")])
        self.stream_id = stream_id
        self.queue = asyncio.Queue()
        self.ended = False  # request END_STREAM seen
        self.gone = False
        self.sent_end = False
        self.task = None

    async def body(self):
        while True:
            item = await self.queue.get()
            if item is None:
                return
            if isinstance(item, Gone):
                raise item
            data, flow_len = item
            self.body_bytes += len(data)
            self.conn.ack(self.stream_id, flow_len)
            await self.conn.flush()  # the WINDOW_UPDATE, if h2 made one
            yield data

    async def drain_body(self):
        async for _ in self.body():
            pass

    async def interim(self, headers):
        """A 103 head before the answer."""
        if self.gone:
            raise Gone()
        self.conn.h2.send_headers(self.stream_id, [(":status", "103")] + list(headers))
        await self.conn.flush()

    async def start(self, status, headers, end=False):
        if self.gone:
            raise Gone()
        hdrs = [(":status", str(status)), ("x-upstream", self.conn.name)]
        if self.srv.args.zone:
            hdrs.append(("x-upstream-zone", self.srv.args.zone))
        self.conn.h2.send_headers(self.stream_id, hdrs + list(headers), end_stream=end)
        self.sent_end = end
        await self.conn.flush()

    async def data(self, data, end=False):
        await self.conn.send_data(self, data, end)
        self.sent_end = end

    async def finish(self, trailers):
        if self.gone:
            raise Gone()
        if trailers:
            self.conn.h2.send_headers(self.stream_id, trailers, end_stream=True)
        else:
            self.conn.h2.end_stream(self.stream_id)
        self.sent_end = True
        await self.conn.flush()

    async def respond(self, status, headers, body, trailers):
        has_body = bool(body) and self.method != "HEAD"
        await self.start(status, headers, end=not has_body and not trailers)
        if has_body:
            await self.data(body, end=not trailers)
        if trailers:
            await self.finish(trailers)

    async def echo(self):
        await self.start(200, [("content-type", "application/octet-stream")])
        async for piece in self.body():
            await self.data(piece)
        await self.finish(self.trailers + self.response_trailers())

    async def reset(self, code):
        if not self.gone:
            self.conn.h2.reset_stream(self.stream_id, code)
            self.gone = True
            await self.conn.flush()

    async def goaway(self):
        # h2's state machine allows nothing after a GOAWAY it sends itself, so the
        # frame goes out raw: the open streams still finish, new ones are refused.
        f = hyperframe.frame.GoAwayFrame(0)
        f.last_stream_id = self.conn.h2.highest_inbound_stream_id
        f.error_code = 0
        self.conn.going_away = True
        await self.conn.flush(f.serialize())


class Peer:
    """One client connection: what both protocols' connections know of it."""

    def __init__(self, srv, reader, writer, name, tls, alpn, seq):
        self.srv, self.reader, self.writer = srv, reader, writer
        self.name, self.tls, self.alpn, self.seq = name, tls, alpn, seq


class H2Conn(Peer):
    def __init__(self, *args):
        super().__init__(*args)
        srv = self.srv
        cfg = h2.config.H2Configuration(client_side=False, header_encoding="utf-8")
        self.h2 = h2.connection.H2Connection(cfg)
        self.h2.local_settings = self.settings(srv.args.max_streams)
        self.streams = {}
        self.write_lock = asyncio.Lock()
        self.window = asyncio.Event()
        self.going_away = False
        self.closed = False

    def settings(self, max_streams):
        return h2.settings.Settings(client=False, initial_values={
            h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: max_streams,
            h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 65536,
            h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: self.srv.args.window,
        })

    def ack(self, stream_id, n):
        if n and not self.closed:
            try:
                self.h2.acknowledge_received_data(n, stream_id)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                pass

    async def flush(self, raw=b""):
        async with self.write_lock:
            data = self.h2.data_to_send() + raw
            if data and not self.closed:
                self.writer.write(data)
                try:
                    await self.writer.drain()
                except (ConnectionError, OSError):
                    self.closed = True
            if self.closed:
                raise Gone()

    def window_changed(self):
        self.window.set()
        self.window = asyncio.Event()

    async def send_data(self, ex, data, end):
        view = memoryview(data)
        while True:
            if ex.gone or self.closed:
                raise Gone()
            if not view:
                if end:
                    self.h2.end_stream(ex.stream_id)
                    await self.flush()
                return
            room = min(self.h2.local_flow_control_window(ex.stream_id), self.h2.max_outbound_frame_size)
            if room <= 0:
                ev = self.window
                try:
                    await asyncio.wait_for(ev.wait(), STALL_S)
                except asyncio.TimeoutError:
                    raise Gone()
                continue
            piece = view[:room]
            view = view[room:]
            self.h2.send_data(ex.stream_id, bytes(piece), end_stream=end and not view)
            await self.flush()

    async def run_stream(self, ex):
        st = self.srv.stats
        st.in_flight += 1
        st.max_in_flight = max(st.max_in_flight, st.in_flight)
        st.max_streams_per_conn = max(st.max_streams_per_conn, len(self.streams))
        try:
            await handle(ex)
        except Gone:
            pass
        except h2.exceptions.StreamClosedError:
            pass
        except Exception as e:  # a bug in this server: say so, reset the stream
            print(f"h2_upstream: stream {ex.stream_id}: {e!r}", file=sys.stderr, flush=True)
            await ex.reset(2)
        finally:
            st.in_flight -= 1
            ex.gone = True
            self.streams.pop(ex.stream_id, None)
            # Whatever the client sends still counts against the connection window.
            while not ex.queue.empty():
                item = ex.queue.get_nowait()
                if isinstance(item, tuple):
                    self.ack(ex.stream_id, item[1])
            if self.going_away and not self.streams:
                self.close()
            else:
                try:
                    await self.flush()
                except Gone:
                    pass

    def on_event(self, ev):
        st = self.srv.stats
        if isinstance(ev, h2.events.RequestReceived):
            if self.going_away or len(self.streams) >= self.srv.args.max_streams:
                st.refused += 1
                self.h2.reset_stream(ev.stream_id, h2.errors.ErrorCodes.REFUSED_STREAM)
                return
            ex = H2Exchange(self.srv, self, ev.stream_id, ev.headers)
            self.streams[ev.stream_id] = ex
            if ev.stream_ended is not None:
                ex.ended = True
                ex.queue.put_nowait(None)
            ex.task = asyncio.get_running_loop().create_task(self.run_stream(ex))
        elif isinstance(ev, h2.events.DataReceived):
            ex = self.streams.get(ev.stream_id)
            if ex is None:
                self.ack(ev.stream_id, ev.flow_controlled_length)
            else:
                ex.queue.put_nowait((ev.data, ev.flow_controlled_length))
        elif isinstance(ev, h2.events.TrailersReceived):
            ex = self.streams.get(ev.stream_id)
            if ex is not None:
                ex.trailers = [(k, v) for k, v in ev.headers]
        elif isinstance(ev, h2.events.StreamEnded):
            ex = self.streams.get(ev.stream_id)
            if ex is not None and not ex.ended:
                ex.ended = True
                ex.queue.put_nowait(None)
        elif isinstance(ev, h2.events.StreamReset):
            if ev.remote_reset:
                key = str(int(ev.error_code))
                st.resets_received[key] = st.resets_received.get(key, 0) + 1
            ex = self.streams.get(ev.stream_id)
            if ex is not None:
                ex.gone = True
                if ex.task:
                    ex.task.cancel()
                self.window_changed()
        elif isinstance(ev, (h2.events.WindowUpdated, h2.events.RemoteSettingsChanged)):
            self.window_changed()
        elif isinstance(ev, h2.events.PingReceived):
            st.pings += 1
        elif isinstance(ev, h2.events.ConnectionTerminated):
            self.going_away = True
            if not self.streams:
                self.close()

    def close(self):
        if not self.closed:
            self.closed = True
            try:
                self.writer.close()
            except OSError:
                pass
        for ex in list(self.streams.values()):
            ex.gone = True
            ex.queue.put_nowait(Gone())
        self.window_changed()

    async def serve(self, first):
        self.srv.stats.h2_connections += 1
        self.h2.initiate_connection()
        # h2 would make a stream over our SETTINGS_MAX_CONCURRENT_STREAMS a
        # connection error; as nghttp2 does, this server refuses the stream
        # instead (RST_STREAM REFUSED_STREAM, counted), as a client may send
        # streams before it has our SETTINGS. So h2's own limit is lifted once
        # the SETTINGS frame carrying the real one is queued.
        self.h2.local_settings = self.settings(1 << 31)
        self.h2.increment_flow_control_window(CONN_WINDOW)
        await self.flush()
        frames = GoawayFilter(skip=len(PREFACE))
        data = first
        try:
            while not self.closed:
                if data:
                    # A GOAWAY from the client: it opens no more streams; the
                    # open ones are still answered.
                    data, goaways = frames.feed(data)
                    self.srv.stats.goaways_received += len(goaways)
                    try:
                        events = self.h2.receive_data(data)
                    except h2.exceptions.ProtocolError as e:
                        self.srv.stats.protocol_errors += 1
                        print(f"h2_upstream: connection {self.seq}: {e!r}", file=sys.stderr, flush=True)
                        await self.flush()
                        break
                    for ev in events:
                        self.on_event(ev)
                    await self.flush()
                if self.closed:
                    break
                data = await asyncio.wait_for(self.reader.read(65536), IDLE_S)
                if not data:
                    break
        except (asyncio.TimeoutError, ConnectionError, OSError, Gone):
            pass
        finally:
            self.close()
            for ex in list(self.streams.values()):
                if ex.task:
                    ex.task.cancel()


# --------------------------------------------------------------------------- HTTP/1.1


class H1Exchange(Exchange):
    protocol = "HTTP/1.1"

    def __init__(self, srv, conn, method, target, headers, framing):
        host = next((v for k, v in headers if k == "host"), None)
        super().__init__(srv, conn, method, target, host, "https" if conn.tls else "http", headers)
        self.framing = framing  # ("length", n) | ("chunked", None) | ("none", None)
        self.left = framing[1] if framing[0] == "length" else 0
        self.done_reading = framing[0] == "none"
        self.chunked_out = False
        self.close_after = False

    async def body(self):
        c = self.conn
        if self.done_reading:
            return
        if self.framing[0] == "length":
            while self.left > 0:
                d = await c.read_upto(self.left)
                self.left -= len(d)
                self.body_bytes += len(d)
                yield d
        else:
            while True:
                line = await c.read_line()
                size = int(line.split(b";")[0].strip() or b"x", 16)
                if size == 0:
                    while True:
                        t = await c.read_line()
                        if not t:
                            break
                        k, _, v = t.decode("latin-1").partition(":")
                        self.trailers.append((k.strip().lower(), v.strip()))
                    break
                while size > 0:
                    d = await c.read_upto(size)
                    size -= len(d)
                    self.body_bytes += len(d)
                    yield d
                if await c.read_line() != b"":
                    raise Gone()
        self.done_reading = True

    async def drain_body(self):
        async for _ in self.body():
            pass

    async def start(self, status, headers, end=False):
        lines = [f"HTTP/1.1 {status} X", f"x-upstream: {self.conn.name}"]
        if self.srv.args.zone:
            lines.append(f"x-upstream-zone: {self.srv.args.zone}")
        has_length = any(k == "content-length" for k, _ in headers)
        self.chunked_out = not has_length and not end and status not in (204, 304)
        lines += [f"{k}: {v}" for k, v in headers]
        if self.chunked_out:
            lines.append("transfer-encoding: chunked")
        if not has_length and not self.chunked_out and status not in (204, 304):
            lines.append("content-length: 0")
        if self.close_after:
            lines.append("connection: close")
        self.conn.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        await self.conn.writer.drain()

    async def data(self, data, end=False):
        w = self.conn.writer
        if self.chunked_out and data:
            w.write(b"%x\r\n" % len(data) + bytes(data) + b"\r\n")
        elif data:
            w.write(bytes(data))
        if end and self.chunked_out:
            w.write(b"0\r\n\r\n")
        await w.drain()

    async def finish(self, trailers):
        if self.chunked_out:
            t = "".join(f"{k}: {v}\r\n" for k, v in trailers)
            self.conn.writer.write(b"0\r\n" + t.encode("latin-1") + b"\r\n")
            await self.conn.writer.drain()

    async def respond(self, status, headers, body, trailers):
        if trailers:
            headers = [(k, v) for k, v in headers if k != "content-length"]
        await self.start(status, headers, end=not body and not trailers)
        if body and self.method != "HEAD":
            await self.data(body)
        if trailers:
            await self.finish(trailers)

    async def echo(self):
        # The whole body first: a simple HTTP/1.1 client may not read while it writes.
        parts, n = [], 0
        async for piece in self.body():
            n += len(piece)
            if n > H1_MAX_BODY_BUFFER:
                self.close_after = True
                return await simple(self, 413, "too large\n")
            parts.append(piece)
        await self.respond(200, [("content-type", "application/octet-stream")], b"".join(parts),
                           self.trailers + self.response_trailers())

    async def reset(self, code):
        self.close_after = True
        raise Gone()

    async def goaway(self):
        self.close_after = True


class H1Conn(Peer):
    """HTTP/1.1 over one connection, requests one after the other; reads through
    its own bounded buffer."""

    def __init__(self, *args):
        super().__init__(*args)
        self.buf = bytearray()

    async def fill(self):
        d = await asyncio.wait_for(self.reader.read(65536), IDLE_S)
        if not d:
            raise Gone()
        self.buf += d

    async def read_line(self):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = bytes(self.buf[:i])
                del self.buf[:i + 2]
                return line
            if len(self.buf) > H1_MAX_HEAD:
                raise Gone()
            await self.fill()

    async def read_upto(self, n):
        if not self.buf:
            await self.fill()
        d = bytes(self.buf[:n])
        del self.buf[:len(d)]
        return d

    async def read_head(self):
        while b"\r\n\r\n" not in self.buf:
            if len(self.buf) > H1_MAX_HEAD:
                raise Gone()
            await self.fill()
        i = self.buf.index(b"\r\n\r\n")
        head = bytes(self.buf[:i])
        del self.buf[:i + 4]
        return head

    async def serve(self, first):
        st = self.srv.stats
        self.buf += first
        try:
            while True:
                lines = (await self.read_head()).decode("latin-1").split("\r\n")
                parts = lines[0].split(" ")
                if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
                    self.writer.write(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    return
                headers = []
                for line in lines[1:]:
                    k, _, v = line.partition(":")
                    headers.append((k.strip().lower(), v.strip()))
                te = ",".join(v for k, v in headers if k == "transfer-encoding").lower()
                cl = [v for k, v in headers if k == "content-length"]
                if "chunked" in te:
                    framing = ("chunked", None)
                elif cl and cl[0].isdigit() and int(cl[0]) > 0:
                    framing = ("length", int(cl[0]))
                else:
                    framing = ("none", None)
                ex = H1Exchange(self.srv, self, parts[0], parts[1], headers, framing)
                conn_hdr = ",".join(v for k, v in headers if k == "connection").lower()
                ex.close_after = "close" in conn_hdr or parts[2] == "HTTP/1.0"
                st.in_flight += 1
                st.max_in_flight = max(st.max_in_flight, st.in_flight)
                st.max_streams_per_conn = max(st.max_streams_per_conn, 1)
                try:
                    await handle(ex)
                    await ex.drain_body()
                finally:
                    st.in_flight -= 1
                if ex.close_after:
                    return
        except (asyncio.TimeoutError, ValueError, ConnectionError, OSError, Gone):
            return
        finally:
            try:
                self.writer.close()
            except OSError:
                pass


# --------------------------------------------------------------------------- listeners


async def on_connection(srv, name, reader, writer):
    st = srv.stats
    if st.open_connections >= MAX_CONNS:
        writer.close()
        return
    st.connections += 1
    st.open_connections += 1
    srv.conn_seq += 1
    seq = srv.conn_seq
    sslobj = writer.get_extra_info("ssl_object")
    alpn = sslobj.selected_alpn_protocol() if sslobj else None
    try:
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        first = b""
        while len(first) < len(PREFACE) and PREFACE.startswith(first):
            d = await asyncio.wait_for(reader.read(len(PREFACE) - len(first)), IDLE_S)
            if not d:
                return
            first += d
        if first == PREFACE or alpn == "h2":
            await H2Conn(srv, reader, writer, name, sslobj is not None, alpn, seq).serve(first)
        elif not srv.args.no_http1:
            await H1Conn(srv, reader, writer, name, sslobj is not None, alpn, seq).serve(first)
    except (asyncio.TimeoutError, ConnectionError, OSError):
        pass
    finally:
        st.open_connections -= 1
        try:
            writer.close()
        except OSError:
            pass


async def main_async(args):
    srv = Server(args)
    ctx = None
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        ctx.set_alpn_protocols(["h2", "http/1.1"])
    servers = []
    for spec in args.listen:
        addr, _, lname = spec.partition("=")
        host, _, port = addr.rpartition(":")

        async def cb(r, w, lname=lname or args.name):
            task = asyncio.current_task()
            srv.tasks.add(task)
            try:
                await on_connection(srv, lname, r, w)
            finally:
                srv.tasks.discard(task)

        s = await asyncio.start_server(cb, host, int(port), ssl=ctx, backlog=1024, reuse_address=True)
        servers.append(s)
        for sock in s.sockets:
            h, p = sock.getsockname()[:2]
            print(f"listening on {h}:{p}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for s in servers:
        s.close()
    for t in list(srv.tasks):
        t.cancel()
    await asyncio.sleep(0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", action="append", required=True, help="ADDR:PORT[=NAME]")
    ap.add_argument("--name", default="h2up")
    ap.add_argument("--zone", default="")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--max-streams", type=int, default=128, help="SETTINGS_MAX_CONCURRENT_STREAMS")
    ap.add_argument("--window", type=int, default=65535, help="SETTINGS_INITIAL_WINDOW_SIZE")
    ap.add_argument("--no-http1", action="store_true", help="close connections that are not HTTP/2")
    args = ap.parse_args()
    if bool(args.cert) != bool(args.key):
        ap.error("--cert and --key go together")
    if not 1 <= args.max_streams <= 1 << 20 or not 1 <= args.window < 1 << 31:
        ap.error("--max-streams or --window out of range")
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
