#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""Raw HTTP/2 frames a well-behaved client library would never send, for the
HTTP/2 safety tests (tests/integration/test_h2safety.py): floods, HPACK
bombs, stalled windows and malformed requests. Frames are built with
hyperframe and header blocks with hpack (python3-h2's dependencies), with no
validation, over prior-knowledge h2c.

Run it with Debian's python (/usr/bin/python3).

usage: h2_attack.py --connect ADDR:PORT [--timeout S] [--no-ack] ATTACK N [JSON]

--no-ack: the server's SETTINGS are never acknowledged (so its stream limit
is only pending: streams past it are refused rather than a connection error).

ATTACK:
  rapid-reset N     N times HEADERS (GET) then RST_STREAM (CANCEL)
  continuation N    HEADERS without END_HEADERS, then N CONTINUATIONs
  hpack-bomb N      one header block: a 4000-byte field indexed, then N
                    one-byte references to it
  ping N, settings N, window-update N, priority N, empty-data N (on one open
                    POST stream), empty-headers N (a new stream each)
                    N frames of that kind
  streams N         N GET streams (JSON: the path) without reading in between
  polite N          N GETs of JSON's path (default /) one at a time, each with
                    a PRIORITY frame on its stream and a connection-level
                    WINDOW_UPDATE of 1, as browsers send them; stops at the
                    first stream that does not end within 10 s
  ping-per-request N N GETs of JSON's path (default /) one at a time, each
                    with a PING, the next once the stream ended and the PING
                    was acknowledged (as grpc-go's window probe pings with what
                    it receives); stops at the first that does not within 10 s
  early-answer N    N POSTs of JSON's path one at a time, each a HEADERS
                    (content-length 100000) and one DATA of 1000 bytes, the
                    next once the stream ended (an upstream that answers
                    before the body: the server resets the stream NO_ERROR);
                    stops at the first that does not end within 10 s
  zero-window N     SETTINGS_INITIAL_WINDOW_SIZE 0, GET JSON's path, never a
                    WINDOW_UPDATE; waits up to N seconds for the stream's end
  zero-window-streams N
                    SETTINGS_INITIAL_WINDOW_SIZE 0, then JSON {"path": P,
                    "streams": K}: K GETs of P, never a WINDOW_UPDATE; prints
                    "READY" once the server acknowledged the SETTINGS and all
                    K streams' heads came, then holds the connection N seconds
  idle N            one GET (JSON: the path, default /), then nothing: waits up
                    to N seconds for the server to close (goaway_at says when
                    its GOAWAY came)
  idle-ping N       one GET of /, then a PING every 0.25 s: waits up to N
                    seconds for the server to close
  conn-error N      GET JSON's path, then (once a PING sent with it is
                    acknowledged) a SETTINGS frame on stream 1, a connection
                    error nghttp2 finds itself: waits up to N seconds for the
                    server to close
  partial-headers N GET JSON's path on stream 1, then on stream 3 a HEADERS
                    without END_HEADERS and no CONTINUATION: waits up to N
                    seconds for the server to close
  partial-bad-headers N
                    the same, the HEADERS on stream 3 with an uppercase field
                    name (the stream reset while its block is read)
  partial-trailers N
                    POST JSON's path on stream 1, HEADERS and a DATA frame,
                    then its trailers: a HEADERS with END_STREAM without
                    END_HEADERS, and no CONTINUATION: waits up to N seconds
                    for the server to close
  late-preface N    the first 10 bytes of the preface, then "READY" on stdout;
                    at a line on stdin, the rest with SETTINGS and a GET of /:
                    waits up to N seconds for the server to close
  request N         JSON {"headers": [[name, value], ...], "data": [text, ...],
                    "end": true, "trailers": [[name, value], ...],
                    "trailers_end": true}: one stream exactly so (N ignored);
                    with trailers, END_STREAM is on their HEADERS (when
                    trailers_end) and not on the DATA
  upload-credit N   JSON {"path": P, "size": BYTES, "wait": S, "opening_wu": B,
                    "credit_want": BYTES}:
                    once the SETTINGS are acknowledged both ways (and, with
                    opening_wu, the server's first connection-level
                    WINDOW_UPDATE came: it raises its window), N POSTs of P in one
                    write, each a HEADERS and its whole body of BYTES in DATA
                    frames (END_STREAM on the last), so that the server reads
                    every body whole before it sends any upstream; waits up to
                    S seconds (default 10) for every stream's end (and for
                    credit_want bytes of connection credit, when given). "credit"
                    lists the connection-level WINDOW_UPDATEs that came after
                    the write ([at, increment]), "credit_before_answer" sums
                    those before the first response HEADERS; "bodies_at" and
                    "answer_at" say when the write ended and when that HEADERS
                    came (null: none came)

Prints one JSON object: {"sent": frames written before the connection
failed, "acks": SETTINGS and PING acknowledgements the server sent, "goaway": error code of the first GOAWAY or null, "goaway_last": the
last stream id it names, "goaway_data": its debug data, "goaway_at",
"closed": whether the server closed, "closed_at", "rst": {stream: code}, "status":
{stream: status}, "body": {stream: text (first 64 KiB)}, "end_at": when the
watched stream ended (zero-window), "error": text or null}; times in seconds
from the start. Exits 0 when it could say what happened, 2 on bad usage.
"""

import argparse
import json
import socket
import sys
import threading
import time

import hpack
from hyperframe.frame import (ContinuationFrame, DataFrame, Frame, GoAwayFrame, HeadersFrame, PingFrame,
                              PriorityFrame, RstStreamFrame, SettingsFrame, WindowUpdateFrame)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
# A SETTINGS frame on stream 1 (RFC 9113 6.5: a connection error), which
# hyperframe refuses to build.
SETTINGS_ON_STREAM_1 = b"\x00\x00\x00\x04\x00\x00\x00\x00\x01"
CANCEL = 8
KEEP = 64 * 1024


class Raw:
    """Bytes sent as they are among frames."""

    def __init__(self, data):
        self.data = data

    def serialize(self):
        return self.data


class Peer:
    """The connection; a thread reads the server's frames into the report."""

    def __init__(self, addr, timeout, ack=True, opening=PREFACE + SettingsFrame(0).serialize()):
        self.ack = ack
        host, port = addr.rsplit(":", 1)
        self.t0 = time.monotonic()
        self.sock = socket.create_connection((host, int(port)), timeout=timeout)
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.dec.max_allowed_table_size = 1 << 16
        self.rep = {"sent": 0, "acks": 0, "goaway": None, "goaway_at": None, "closed": False,
                    "closed_at": None, "rst": {},
                    "status": {}, "fields": {}, "body": {}, "end_at": None, "error": None}
        self.ended = {}
        self.ping_acks = 0
        self.conn_wu = []  # [at, increment] of each connection-level WINDOW_UPDATE
        self.answer = None  # [at, len(conn_wu)] when the first response HEADERS came
        self.acked = False  # our ACK of the server's SETTINGS went out
        self.lock = threading.Lock()
        self.wlock = threading.Lock()  # the reader's SETTINGS ACK and the floods interleave whole
        self.cond = threading.Condition(self.lock)
        self.reader = threading.Thread(target=self.read_loop, daemon=True)
        # The preface and its SETTINGS in one write, before the reader can ACK.
        self.sock.sendall(opening)
        self.reader.start()

    def now(self):
        return round(time.monotonic() - self.t0, 3)

    def send(self, *frames):
        """Writes frames; False once the server is gone."""
        try:
            with self.wlock:
                self.sock.sendall(b"".join(f.serialize() for f in frames))
        except OSError as e:
            with self.lock:
                self.rep["error"] = self.rep["error"] or f"send: {e}"
            return False
        self.rep["sent"] += len(frames)
        return True

    def read_loop(self):
        buf = b""
        while True:
            try:
                d = self.sock.recv(65536)
            except socket.timeout:
                continue
            except OSError:
                d = b""
            if not d:
                with self.cond:
                    self.rep["closed"] = True
                    self.rep["closed_at"] = self.now()
                    self.cond.notify_all()
                return
            buf += d
            while len(buf) >= 9:
                f, length = Frame.parse_frame_header(memoryview(buf[:9]))
                if len(buf) < 9 + length:
                    break
                f.parse_body(memoryview(buf[9:9 + length]))
                buf = buf[9 + length:]
                with self.cond:
                    self.on_frame(f)
                    self.cond.notify_all()

    def on_frame(self, f):
        sid = str(f.stream_id)
        if isinstance(f, (SettingsFrame, PingFrame)) and "ACK" in f.flags:
            self.rep["acks"] += 1
            self.ping_acks += isinstance(f, PingFrame)
        elif isinstance(f, SettingsFrame) and self.ack:
            threading.Thread(target=self.ack_settings, daemon=True).start()
        elif isinstance(f, GoAwayFrame):
            if self.rep["goaway"] is None:
                self.rep["goaway"] = f.error_code
                self.rep["goaway_last"] = f.last_stream_id
                self.rep["goaway_data"] = f.additional_data.decode("latin-1")
                self.rep["goaway_at"] = self.now()
        elif isinstance(f, WindowUpdateFrame):
            if f.stream_id == 0:
                self.conn_wu.append([self.now(), f.window_increment])
        elif isinstance(f, RstStreamFrame):
            self.rep["rst"][sid] = f.error_code
            self.ended[sid] = self.now()
        elif isinstance(f, HeadersFrame):
            # A block in one frame: isthmus's answers are small.
            for k, v in self.dec.decode(f.data):
                # Head and trailers together, in order.
                self.rep["fields"].setdefault(sid, []).append([str(k), str(v)])
                if k == ":status":
                    self.rep["status"][sid] = int(v)
                    if self.answer is None:
                        self.answer = [self.now(), len(self.conn_wu)]
        elif isinstance(f, DataFrame):
            b = self.rep["body"].get(sid, "")
            if len(b) < KEEP:
                self.rep["body"][sid] = b + f.data.decode("latin-1")[:KEEP - len(b)]
        if isinstance(f, (HeadersFrame, DataFrame)) and "END_STREAM" in f.flags:
            self.ended[sid] = self.now()

    def ack_settings(self):
        self.send(SettingsFrame(0, flags=["ACK"]))
        with self.cond:
            self.acked = True
            self.cond.notify_all()

    def wait(self, pred, timeout):
        """Waits (bounded) until pred() holds or the server closed."""
        end = time.monotonic() + timeout
        with self.cond:
            while not pred() and not self.rep["closed"]:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
            return pred()

    def block(self, headers):
        return self.enc.encode([(k.encode(), v.encode()) for k, v in headers])

    def settings(self, **kv):
        if kv:
            self.send(SettingsFrame(0, settings={getattr(SettingsFrame, k): v for k, v in kv.items()}))


def get_headers(path="/", method="GET"):
    return [(":method", method), (":scheme", "http"), (":path", path), (":authority", "attack.test")]


def flood(p, frames, n, batch=200):
    """Sends n frames of frames(i) in batches until the server goes."""
    i = 0
    while i < n and not p.rep["closed"] and p.rep["goaway"] is None:
        k = min(batch, n - i)
        if not p.send(*(frames(i + j) for j in range(k))):
            break
        i += k


def run(p, attack, n, arg):
    if attack == "rapid-reset":
        def pair(i):
            sid = 1 + 2 * (i // 2)
            if i % 2 == 0:
                return HeadersFrame(sid, p.block(get_headers("/")), flags=["END_HEADERS", "END_STREAM"])
            return RstStreamFrame(sid, error_code=CANCEL)
        p.settings()
        flood(p, pair, 2 * n)
    elif attack == "continuation":
        p.settings()
        first = p.block(get_headers("/"))
        p.send(HeadersFrame(1, first, flags=["END_STREAM"]))
        flood(p, lambda i: ContinuationFrame(1, p.block([(f"x-c{i}", "v" * 64)])), n, batch=50)
    elif attack == "hpack-bomb":
        p.settings()
        big = hpack.Encoder()
        blk = big.encode(get_headers("/")) + big.encode([("x-bomb", "a" * 4000)])
        # Index 62: the newest entry of the dynamic table, x-bomb.
        blk += bytes([0x80 | 62]) * n
        frames, size = [], 16384
        chunks = [blk[i:i + size] for i in range(0, len(blk), size)]
        for i, c in enumerate(chunks):
            flags = ["END_HEADERS"] if i == len(chunks) - 1 else []
            frames.append(HeadersFrame(1, c, flags=flags + ["END_STREAM"]) if i == 0
                          else ContinuationFrame(1, c, flags=flags))
        p.send(*frames)
        p.wait(lambda: "1" in p.ended, 10)
    elif attack in ("ping", "settings", "window-update", "priority", "empty-headers"):
        p.settings()
        make = {
            "ping": lambda i: PingFrame(0, opaque_data=i.to_bytes(8, "big")),
            "settings": lambda i: SettingsFrame(0, settings={SettingsFrame.ENABLE_PUSH: 0}),
            "window-update": lambda i: WindowUpdateFrame(0, window_increment=1),
            "priority": lambda i: PriorityFrame(1 + 2 * i, depends_on=0, stream_weight=16),
            "empty-headers": lambda i: HeadersFrame(1 + 2 * i, b"", flags=["END_HEADERS", "END_STREAM"]),
        }[attack]
        if attack == "empty-headers" and p.ack:
            # With the server's stream limit acknowledged, a batch read whole
            # would go past it (PROTOCOL_ERROR) unless malformed requests cost
            # the budget enough to stop the flood first.
            p.wait(lambda: p.acked, 5)
        flood(p, make, n)
    elif attack == "empty-data":
        p.settings()
        p.send(HeadersFrame(1, p.block(get_headers(arg or "/", "POST")), flags=["END_HEADERS"]))
        flood(p, lambda i: DataFrame(1, b""), n)
    elif attack == "streams":
        p.settings()
        # Acknowledging the server's limit first makes going past it a
        # connection error (RFC 9113 5.1.2); without --no-ack the flood waits.
        if p.ack:
            p.wait(lambda: p.acked, 5)
        flood(p, lambda i: HeadersFrame(1 + 2 * i, p.block(get_headers(arg or "/")),
                                        flags=["END_HEADERS", "END_STREAM"]), n)
    elif attack == "polite":
        p.settings()
        for i in range(n):
            sid = 1 + 2 * i
            if not p.send(HeadersFrame(sid, p.block(get_headers(arg or "/")), flags=["END_HEADERS", "END_STREAM"]),
                          PriorityFrame(sid, depends_on=0, stream_weight=16),
                          WindowUpdateFrame(0, window_increment=1)):
                break
            if not p.wait(lambda: str(sid) in p.ended, 10):
                break
        return
    elif attack == "ping-per-request":
        p.settings()
        for i in range(n):
            sid = 1 + 2 * i
            if not p.send(HeadersFrame(sid, p.block(get_headers(arg or "/")), flags=["END_HEADERS", "END_STREAM"]),
                          PingFrame(0, opaque_data=i.to_bytes(8, "big"))):
                break
            if not p.wait(lambda: str(sid) in p.ended and p.ping_acks > i, 10):
                break
        return
    elif attack == "early-answer":
        p.settings()
        for i in range(n):
            sid = 1 + 2 * i
            hdr = get_headers(arg, "POST") + [("content-length", "100000")]
            if not p.send(HeadersFrame(sid, p.block(hdr), flags=["END_HEADERS"]), DataFrame(sid, b"e" * 1000)):
                break
            if not p.wait(lambda: str(sid) in p.ended, 10):
                break
        return
    elif attack == "zero-window":
        p.settings(INITIAL_WINDOW_SIZE=0)
        p.send(HeadersFrame(1, p.block(get_headers(arg)), flags=["END_HEADERS", "END_STREAM"]))
        p.wait(lambda: "1" in p.ended, n)
        p.rep["end_at"] = p.ended.get("1")
        return
    elif attack == "zero-window-streams":
        spec = json.loads(arg)
        p.settings(INITIAL_WINDOW_SIZE=0)
        k = spec["streams"]
        p.send(*(HeadersFrame(1 + 2 * i, p.block(get_headers(spec["path"])), flags=["END_HEADERS", "END_STREAM"])
                 for i in range(k)))
        if p.wait(lambda: len(p.rep["status"]) >= k, 10):
            print("READY", flush=True)
        p.wait(lambda: False, n)
        return
    elif attack == "idle":
        p.settings()
        p.send(HeadersFrame(1, p.block(get_headers(arg or "/")), flags=["END_HEADERS", "END_STREAM"]))
        p.wait(lambda: False, n)
        return
    elif attack == "idle-ping":
        p.settings()
        p.send(HeadersFrame(1, p.block(get_headers("/")), flags=["END_HEADERS", "END_STREAM"]))
        end = time.monotonic() + n
        i = 0
        while time.monotonic() < end and not p.rep["closed"]:
            p.wait(lambda: False, 0.25)
            if p.rep["closed"] or not p.send(PingFrame(0, opaque_data=i.to_bytes(8, "big"))):
                break
            i += 1
        return
    elif attack == "conn-error":
        p.settings()
        # Nothing of ours follows the error (our ACK of the server's SETTINGS
        # goes first); the PING's ACK says the server took the stream before.
        p.wait(lambda: p.acked, 5)
        p.send(HeadersFrame(1, p.block(get_headers(arg)), flags=["END_HEADERS", "END_STREAM"]),
               PingFrame(0, opaque_data=b"streamup"))
        p.wait(lambda: p.ping_acks > 0, 5)
        p.send(Raw(SETTINGS_ON_STREAM_1))
        p.wait(lambda: False, n)
        return
    elif attack == "partial-headers":
        p.settings()
        # Our ACK of the server's SETTINGS first: no frame may come between
        # a HEADERS and its CONTINUATION.
        p.wait(lambda: p.acked, 5)
        p.send(HeadersFrame(1, p.block(get_headers(arg)), flags=["END_HEADERS", "END_STREAM"]),
               HeadersFrame(3, p.block(get_headers("/")), flags=["END_STREAM"]))
        p.wait(lambda: False, n)
        return
    elif attack == "partial-bad-headers":
        p.settings()
        p.wait(lambda: p.acked, 5)
        p.send(HeadersFrame(1, p.block(get_headers(arg)), flags=["END_HEADERS", "END_STREAM"]),
               HeadersFrame(3, p.block(get_headers("/") + [("X-Upper", "1")]), flags=["END_STREAM"]))
        p.wait(lambda: False, n)
        return
    elif attack == "partial-trailers":
        p.settings()
        p.wait(lambda: p.acked, 5)
        p.send(HeadersFrame(1, p.block(get_headers(arg, "POST")), flags=["END_HEADERS"]),
               DataFrame(1, b"body"),
               HeadersFrame(1, p.block([("x-trailer", "1")]), flags=["END_STREAM"]))
        p.wait(lambda: False, n)
        return
    elif attack == "late-preface":
        print("READY", flush=True)
        sys.stdin.readline()
        p.send(Raw(PREFACE[10:]), SettingsFrame(0),
               HeadersFrame(1, p.block(get_headers("/")), flags=["END_HEADERS", "END_STREAM"]))
        p.wait(lambda: False, n)
        return
    elif attack == "request":
        spec = json.loads(arg)
        p.settings()
        # Raw: hpack encodes what it is given, names and values unchecked.
        blk = p.enc.encode([(k.encode("latin-1"), v.encode("latin-1")) for k, v in spec["headers"]])
        data = spec.get("data", [])
        trailers = spec.get("trailers")
        end = spec.get("end", True) and trailers is None
        frames = [HeadersFrame(1, blk, flags=["END_HEADERS"] + (["END_STREAM"] if end and not data else []))]
        frames += [DataFrame(1, d.encode("latin-1"), flags=["END_STREAM"] if end and i == len(data) - 1 else [])
                   for i, d in enumerate(data)]
        if trailers is not None:
            tblk = p.enc.encode([(k.encode("latin-1"), v.encode("latin-1")) for k, v in trailers])
            frames.append(HeadersFrame(1, tblk, flags=["END_HEADERS"] +
                                       (["END_STREAM"] if spec.get("trailers_end", True) else [])))
        # One write: the server reads the stream's frames together.
        p.send(*frames)
        p.wait(lambda: "1" in p.ended, 10)
        return
    elif attack == "upload-credit":
        spec = json.loads(arg)
        size, body = spec["size"], b"u" * spec["size"]
        p.settings()
        # Both ends' SETTINGS in force (the server's stream window applies
        # once it read our ACK), and the server's opening WINDOW_UPDATE in
        # when the spec says the server raises its connection window (it
        # may come after the ACK of ours): the connection credit seen from
        # here on is what the bodies earned.
        p.wait(lambda: p.acked and p.rep["acks"] > 0 and
               (not spec.get("opening_wu") or len(p.conn_wu) > 0), 5)
        frames = []
        for i in range(n):
            sid = 1 + 2 * i
            hdr = get_headers(spec["path"], "POST") + [("content-length", str(size))]
            frames.append(HeadersFrame(sid, p.block(hdr), flags=["END_HEADERS"]))
            frames += [DataFrame(sid, body[o:o + 16384], flags=["END_STREAM"] if o + 16384 >= size else [])
                       for o in range(0, size, 16384)]
        with p.lock:
            first = len(p.conn_wu)
        p.send(*frames)
        p.rep["bodies_at"] = p.now()
        want = spec.get("credit_want", 0)

        # (the predicate runs under the lock wait() holds)
        p.wait(lambda: len(p.ended) >= n and sum(inc for _, inc in p.conn_wu[first:]) >= want,
               spec.get("wait", 10))
        with p.lock:
            upto = len(p.conn_wu) if p.answer is None else p.answer[1]
            p.rep["credit"] = p.conn_wu[first:]
            p.rep["answer_at"] = p.answer and p.answer[0]
            p.rep["credit_before_answer"] = sum(inc for _, inc in p.conn_wu[first:upto])
        return
    else:
        raise ValueError(attack)
    # Whatever the server answers to the flood, until it closes (bounded).
    p.wait(lambda: False, 3 if p.rep["goaway"] is not None else 2)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--connect", required=True)
    ap.add_argument("--timeout", type=float, default=30)
    ap.add_argument("--no-ack", action="store_true", help="never acknowledge the server's SETTINGS")
    ap.add_argument("attack")
    ap.add_argument("n", type=int)
    ap.add_argument("arg", nargs="?", default="")
    a = ap.parse_args()
    try:
        if a.attack == "late-preface":
            p = Peer(a.connect, a.timeout, ack=not a.no_ack, opening=PREFACE[:10])
        else:
            p = Peer(a.connect, a.timeout, ack=not a.no_ack)
    except OSError as e:
        print(json.dumps({"error": f"connect: {e}"}))
        return 0
    try:
        run(p, a.attack, a.n, a.arg)
    except ValueError as e:
        print(f"h2_attack.py: {e}", file=sys.stderr)
        return 2
    with p.lock:
        print(json.dumps(p.rep))
    p.sock.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
