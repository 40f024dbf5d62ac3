# SPDX-License-Identifier: Apache-2.0
"""Integration tests of HTTP/2 message strictness: what RFC 9113 section 8
calls malformed, and what an HTTP/1.1 or HTTP/2 upstream may send that must
not reach an HTTP/2 client as it came.

- Client side (nghttp2's HTTP messaging checks and isthmus's own): a
  content-length the DATA contradict, pseudo-headers missing, repeated, empty
  or misplaced, characters RFC 9113 8.2.1 forbids in a field: the stream is
  reset (PROTOCOL_ERROR) or answered 400, nothing of it reaches the upstream,
  and the next stream of the same connection is served. A stream the client
  resets half-way through its body never leaves its upstream connection
  holding half a request for the next one.
- Upstream side: an HTTP/1.1 response's connection-specific fields
  (RFC 9113 8.2.2) never reach an HTTP/2 client; an HTTP/2 upstream whose
  DATA contradict its content-length gives the client its head, then a cut.
- gRPC requests answered by isthmus itself get Envoy's httpToGrpcStatus.

The upstreams are in this file: an HTTP/1.1 one (threads of the runner's
python) that records every byte it got and how it parsed it, and an h2c one
made of raw frames. The HTTP/2 client and the h2c upstream need `hpack`
(Debian's python3-h2): they are this file run under DEBIAN_PYTHON
(`test_h2strict.py client ...`, `test_h2strict.py h2up ...`).

Registered into run.py's list by register(test)."""

import json
import os
import select
import socket
import struct
import sys
import threading
import time

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, RST_STREAM, SETTINGS, PING, GOAWAY, WINDOW_UPDATE, CONTINUATION = 0, 1, 3, 4, 6, 7, 8, 9
F_END_STREAM, F_ACK, F_END_HEADERS, F_PADDED, F_PRIORITY = 0x1, 0x1, 0x4, 0x8, 0x20
NO_ERROR, PROTOCOL_ERROR, CANCEL = 0, 1, 8
WINDOW = 1 << 20


def frame(ftype, flags, sid, payload=b""):
    return (len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + (sid & 0x7fffffff).to_bytes(4, "big")
            + payload)


def frames_of(buf):
    """Takes the whole frames off the front of buf (a bytearray): [(type, flags, sid, payload)]."""
    out = []
    while len(buf) >= 9:
        n = int.from_bytes(buf[0:3], "big")
        if len(buf) < 9 + n:
            break
        out.append((buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7fffffff, bytes(buf[9:9 + n])))
        del buf[:9 + n]
    return out


def header_payload(flags, payload):
    """A HEADERS frame's header block fragment (padding and priority taken off)."""
    pad = 0
    if flags & F_PADDED:
        pad, payload = payload[0], payload[1:]
    if flags & F_PRIORITY:
        payload = payload[5:]
    return payload[:len(payload) - pad] if pad else payload


def data_payload(flags, payload):
    if flags & F_PADDED:
        pad = payload[0]
        return payload[1:len(payload) - pad]
    return payload


# --------------------------------------------------------------------------- the client (DEBIAN_PYTHON)


class RawClient:
    """Prior-knowledge h2c, frames written as a script says, names and values
    unchecked (hpack encodes whatever it is given)."""

    def __init__(self, addr, timeout):
        import hpack
        host, port = addr.rsplit(":", 1)
        self.deadline = time.monotonic() + timeout
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.enc = hpack.Encoder()
        self.dec = hpack.Decoder()
        self.lock = threading.Condition()
        self.wlock = threading.Lock()
        self.streams = {}
        self.goaway = None  # the latest
        self.goaways = []
        self.closed = False
        self.error = None
        self.pending = bytearray(PREFACE + frame(SETTINGS, 0, 0, (4).to_bytes(2, "big") + WINDOW.to_bytes(4, "big"))
                                 + frame(WINDOW_UPDATE, 0, 0, (WINDOW - 65535).to_bytes(4, "big")))
        self.block = None  # (sid, flags, bytes) of a header block awaiting CONTINUATION
        threading.Thread(target=self.read_loop, daemon=True).start()

    def stream(self, sid):
        return self.streams.setdefault(sid, {"status": None, "headers": [], "trailers": [], "body": "",
                                             "ended": False, "reset": None, "interim": []})

    def write(self, data):
        try:
            with self.wlock:
                self.sock.sendall(data)
        except OSError as e:
            with self.lock:
                self.error = self.error or f"send: {e}"

    def flush(self):
        if self.pending:
            data, self.pending = bytes(self.pending), bytearray()
            self.write(data)

    def read_loop(self):
        buf = bytearray()
        while True:
            try:
                d = self.sock.recv(65536)
            except OSError as e:
                d = b""
                with self.lock:
                    self.error = self.error or f"recv: {e}"
            if not d:
                with self.lock:
                    self.closed = True
                    self.lock.notify_all()
                return
            buf += d
            with self.lock:
                for f in frames_of(buf):
                    self.on_frame(*f)
                self.lock.notify_all()

    def on_frame(self, ftype, flags, sid, payload):
        if ftype == SETTINGS and not flags & F_ACK:
            self.write(frame(SETTINGS, F_ACK, 0))
        elif ftype == PING and not flags & F_ACK:
            self.write(frame(PING, F_ACK, 0, payload))
        elif ftype == GOAWAY:
            self.goaway = {"last": int.from_bytes(payload[0:4], "big") & 0x7fffffff,
                           "code": int.from_bytes(payload[4:8], "big"), "data": payload[8:].decode("latin-1")}
            self.goaways.append(self.goaway)
        elif ftype == RST_STREAM:
            self.stream(sid)["reset"] = int.from_bytes(payload[0:4], "big")
        elif ftype == DATA:
            s = self.stream(sid)
            s["body"] += data_payload(flags, payload).decode("latin-1")
            if payload:
                self.write(frame(WINDOW_UPDATE, 0, 0, len(payload).to_bytes(4, "big")) +
                           frame(WINDOW_UPDATE, 0, sid, len(payload).to_bytes(4, "big")))
            if flags & F_END_STREAM:
                s["ended"] = True
        elif ftype == HEADERS:
            self.block = (sid, flags, header_payload(flags, payload))
            if flags & F_END_HEADERS:
                self.on_block()
        elif ftype == CONTINUATION and self.block is not None:
            self.block = (self.block[0], self.block[1], self.block[2] + payload)
            if flags & F_END_HEADERS:
                self.on_block()

    def on_block(self):
        sid, flags, blk = self.block
        self.block = None
        fields = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in self.dec.decode(blk, raw=True)]
        s = self.stream(sid)
        status = next((v for k, v in fields if k == ":status"), None)
        if s["status"] is None and status is not None and status.startswith("1"):
            s["interim"].append(fields)
        elif s["status"] is None and status is not None:
            s["status"] = int(status)
            s["headers"] = fields
            s["trailers_only"] = bool(flags & F_END_STREAM)
        else:
            s["trailers"] = fields
        if flags & F_END_STREAM:
            s["ended"] = True

    def finished(self, sid):
        s = self.streams.get(sid)
        return self.closed or (s is not None and (s["ended"] or s["reset"] is not None or s.get("reset_sent")))

    def wait_for(self, pred):
        with self.lock:
            while not pred():
                left = self.deadline - time.monotonic()
                if left <= 0:
                    self.error = self.error or "timeout"
                    return False
                self.lock.wait(min(left, 0.2))
            return True

    def run(self, steps):
        opened = []
        for st in steps:
            op = st["op"]
            sid = st.get("sid", 1)
            if op == "headers":
                blk = self.enc.encode([(k.encode("latin-1"), v.encode("latin-1")) for k, v in st["headers"]])
                self.pending += frame(HEADERS, F_END_HEADERS | (F_END_STREAM if st.get("end") else 0), sid, blk)
                if sid not in opened:
                    opened.append(sid)
                    with self.lock:
                        self.stream(sid)
            elif op == "headers_split":  # the block in st["pieces"] frames: HEADERS, then CONTINUATIONs
                blk = self.enc.encode([(k.encode("latin-1"), v.encode("latin-1")) for k, v in st["headers"]])
                n = st["pieces"]
                cuts = [len(blk) * i // n for i in range(n + 1)]
                for i in range(n):
                    last = F_END_HEADERS if i == n - 1 else 0
                    if i == 0:
                        self.pending += frame(HEADERS, last | (F_END_STREAM if st.get("end") else 0), sid,
                                              blk[cuts[0]:cuts[1]])
                    else:
                        self.pending += frame(CONTINUATION, last, sid, blk[cuts[i]:cuts[i + 1]])
                if sid not in opened:
                    opened.append(sid)
                    with self.lock:
                        self.stream(sid)
            elif op == "data":
                self.pending += frame(DATA, F_END_STREAM if st.get("end") else 0, sid, st["data"].encode("latin-1"))
            elif op == "rst":
                self.pending += frame(RST_STREAM, 0, sid, st.get("code", CANCEL).to_bytes(4, "big"))
                with self.lock:
                    self.stream(sid)["reset_sent"] = True
            elif op == "flush":
                self.flush()
            elif op == "wait":
                self.flush()
                self.wait_for(lambda: self.finished(sid))
            elif op == "wait_goaway":
                self.flush()
                self.wait_for(lambda: self.goaway is not None or self.closed)
            elif op == "wait_closed":
                self.flush()
                self.wait_for(lambda: self.closed)
            elif op == "wait_body":  # until the stream's body holds st["data"]
                self.flush()
                self.wait_for(lambda: st["data"] in self.stream(sid)["body"] or self.finished(sid))
            elif op == "close":  # the client goes: its connection closes now
                self.flush()
                self.sock.close()
                with self.lock:
                    self.closed = True
                break
            elif op == "sync":
                # The test looks at the upstream meanwhile; a line on stdin goes on.
                self.flush()
                print(json.dumps({"sync": st.get("name", "")}), flush=True)
                r, _, _ = select.select([sys.stdin], [], [], max(0.0, self.deadline - time.monotonic()))
                if not r or not sys.stdin.readline():
                    self.error = self.error or "no go-ahead after sync"
                    break
        self.flush()
        self.wait_for(lambda: all(self.finished(s) for s in opened))

    def report(self):
        with self.lock:
            return {"streams": {str(k): v for k, v in self.streams.items()}, "goaway": self.goaway,
                    "goaways": self.goaways, "closed": self.closed, "error": self.error}


def client_main(addr, timeout, steps):
    try:
        c = RawClient(addr, float(timeout))
    except OSError as e:
        print(json.dumps({"streams": {}, "goaway": None, "closed": True, "error": f"connect: {e}"}), flush=True)
        return 0
    c.run(json.loads(steps))
    print(json.dumps(c.report()), flush=True)
    return 0


# --------------------------------------------------------------------------- the h2c upstream (DEBIAN_PYTHON)

# In a case's DATA frames: a PING first, whose ACK the upstream awaits before it
# sends on, so that isthmus has read (and acted on) the head before the DATA come.
APART = None
# Last of a case's DATA frames: instead of END_STREAM, the connection closes.
CLOSE = "close"
# What the h2c upstream answers, by :path: (content-length it declares, DATA frames,
# the last with END_STREAM). Without APART, the head and the DATA go in one write.
H2UP_CASES = {
    "/cl-short": ("10", ["hello"]),           # fewer bytes than declared, then END_STREAM
    "/cl-short-apart": ("10", [APART, "hello"]),
    "/cl-long": ("3", ["0123456789"]),        # more bytes than declared, in one DATA frame
    "/cl-long-apart": ("3", [APART, "0123456789"]),
    "/cl-long-split": ("3", ["012", "3456789"]),  # the declared bytes, then more
    "/close-mid-body": ("10", ["hello", CLOSE]),
}


# What the h2c upstream answers instead of a head, by :path: RST_STREAM with
# a code, a head nghttp2 refuses (a connection-specific field), or the
# connection closed.
H2UP_EARLY = {"/rst-before-head": ("rst", 2), "/refused-before-head": ("rst", 7),
              "/bad-head": ("head", [(":status", "200"), ("connection", "close"), ("content-length", "2")]),
              "/many-fields-head": ("head", [(":status", "200")] + [(f"x-f{i}", "v") for i in range(1001)]),
              "/close-before-head": ("close", None)}


def h2up_serve(conn, n, log, log_lock):
    import hpack
    enc, dec = hpack.Encoder(), hpack.Decoder()
    buf = bytearray()
    heads, blocks = {}, {}

    def respond(sid):
        path = dict(heads[sid]).get(":path", "")
        with log_lock:
            log.write(json.dumps({"conn": n, "sid": sid, "headers": heads[sid]}) + "\n")
            log.flush()
        early, arg = H2UP_EARLY.get(path, (None, None))
        if early == "rst":
            conn.sendall(frame(RST_STREAM, 0, sid, arg.to_bytes(4, "big")))
            return
        if early == "head":
            conn.sendall(frame(HEADERS, F_END_HEADERS, sid, enc.encode(arg)) + frame(DATA, F_END_STREAM, sid, b"ok"))
            return
        if early == "close":
            raise OSError("closed before a head")
        cl, parts = H2UP_CASES.get(path, (None, [f"ok {path}\n"]))
        if cl is None:
            cl = str(len(parts[0]))
        out = frame(HEADERS, F_END_HEADERS, sid, enc.encode([(":status", "200"), ("content-length", cl),
                                                             ("x-h2up", "1")]))
        for i, p in enumerate(parts):
            if p is APART:
                opaque = sid.to_bytes(8, "big")
                conn.sendall(out + frame(PING, 0, 0, opaque))
                out = b""
                ping_ack(opaque)
                continue
            if p is CLOSE:
                conn.sendall(out)
                raise OSError("closed mid-body")
            out += frame(DATA, F_END_STREAM if i == len(parts) - 1 else 0, sid, p.encode())
        conn.sendall(out)

    def ping_ack(opaque):
        """Reads until the ACK of our PING comes (taken out of buf, the frames
        around it left for the loop)."""
        while True:
            off = 0
            while off + 9 <= len(buf):
                n = int.from_bytes(buf[off:off + 3], "big")
                if off + 9 + n > len(buf):
                    break
                if buf[off + 3] == PING and buf[off + 4] & F_ACK and bytes(buf[off + 9:off + 9 + n]) == opaque:
                    del buf[off:off + 9 + n]
                    return
                off += 9 + n
            d = conn.recv(65536)
            if not d:
                raise OSError("closed before the PING ACK")
            buf.extend(d)

    try:
        while len(buf) < len(PREFACE):
            d = conn.recv(65536)
            if not d:
                return
            buf += d
        if bytes(buf[:len(PREFACE)]) != PREFACE:
            return
        del buf[:len(PREFACE)]
        conn.sendall(frame(SETTINGS, 0, 0))
        while True:
            for ftype, flags, sid, payload in frames_of(buf):
                if ftype == SETTINGS and not flags & F_ACK:
                    conn.sendall(frame(SETTINGS, F_ACK, 0))
                elif ftype == PING and not flags & F_ACK:
                    conn.sendall(frame(PING, F_ACK, 0, payload))
                elif ftype == GOAWAY:
                    return
                elif ftype in (HEADERS, CONTINUATION):
                    prev = blocks.get(sid, (0, b""))
                    fl = flags if ftype == HEADERS else prev[0]
                    blk = prev[1] + (header_payload(flags, payload) if ftype == HEADERS else payload)
                    if not flags & F_END_HEADERS:
                        blocks[sid] = (fl, blk)
                        continue
                    blocks.pop(sid, None)
                    fields = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in dec.decode(blk, raw=True)]
                    if sid not in heads:
                        heads[sid] = fields
                    if fl & F_END_STREAM:
                        respond(sid)
                elif ftype == DATA:
                    if payload:
                        conn.sendall(frame(WINDOW_UPDATE, 0, 0, len(payload).to_bytes(4, "big")) +
                                     frame(WINDOW_UPDATE, 0, sid, len(payload).to_bytes(4, "big")))
                    if flags & F_END_STREAM and sid in heads:
                        respond(sid)
            d = conn.recv(65536)
            if not d:
                return
            buf += d
    except OSError:
        return
    finally:
        conn.close()


def h2up_main(addr, port, log_path):
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, int(port)))
    srv.listen(64)
    log = open(log_path, "a")
    log_lock = threading.Lock()
    n = 0
    while True:
        conn, _ = srv.accept()
        n += 1
        threading.Thread(target=h2up_serve, args=(conn, n, log, log_lock), daemon=True).start()


if __name__ == "__main__":
    if len(sys.argv) == 5 and sys.argv[1] == "client":
        sys.exit(client_main(*sys.argv[2:]))
    if len(sys.argv) == 5 and sys.argv[1] == "h2up":
        sys.exit(h2up_main(*sys.argv[2:]))
    print("usage: test_h2strict.py client ADDR:PORT TIMEOUT STEPS_JSON | h2up ADDR PORT LOG", file=sys.stderr)
    sys.exit(2)


# --------------------------------------------------------------------------- the tests (run.py's python)

import re  # noqa: E402
import signal  # noqa: E402
import subprocess  # noqa: E402

from harness import (DEBIAN_PYTHON, Conn, Env, Registry, TestFailure, appliance, check, ctl_cmd, docs,  # noqa: E402
                     file_lines, free_port, gateway, no_panic_rule, poll, service_entry,
                     service_entry_protocol, spawn_listening, virtual_service)
from test_h2 import (GRPC_FOR_HTTP, SVC, UNAVAILABLE, alog, check_grpc_local_error, h1_upstream, limits,  # noqa: E402
                     need_tools, one_service, wait_log)

_test = Registry()
register = _test.register

THIS = os.path.abspath(__file__)
TOKEN = re.compile(r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")


def h2_raw(port, steps, timeout=15):
    """One HTTP/2 connection driven by steps (see RawClient.run); its report."""
    try:
        p = subprocess.run([DEBIAN_PYTHON, THIS, "client", f"127.0.0.1:{port}", str(timeout), json.dumps(steps)],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout + 15)
    except subprocess.TimeoutExpired:
        raise TestFailure(f"the raw HTTP/2 client still running after {timeout + 15}s")
    try:
        rep = json.loads(p.stdout.decode().strip().split("\n")[-1])
    except (ValueError, IndexError):
        raise TestFailure(f"raw HTTP/2 client exited {p.returncode}: {p.stdout[-500:]!r} {p.stderr[-1500:]!r}")
    check(not (rep["error"] or "").startswith("connect:"), f"raw HTTP/2 client: {rep['error']}")
    return rep


def H(method="GET", path="/", authority="a.test", scheme="http", extra=()):
    return [[":method", method], [":scheme", scheme], [":path", path], [":authority", authority]] + list(extra)


def hdrs(sid, fields, end=True):
    return {"op": "headers", "sid": sid, "headers": fields, "end": end}


def sget(rep, sid):
    return rep["streams"].get(str(sid)) or {}


def fnames(s):
    return [k for k, _ in s.get("headers", [])]


def refused(s):
    """The stream was reset with PROTOCOL_ERROR, or answered 400 (and ended)."""
    return s.get("reset") == PROTOCOL_ERROR or (s.get("status") == 400 and s.get("ended"))


def served(s, path):
    return (s.get("status") == 200 and s.get("ended") and s.get("reset") is None
            and s.get("body") == f"ok {path}\n")


# --------------------------------------------------------------------------- the recording HTTP/1.1 upstream


class RecUp:
    """An HTTP/1.1 upstream in threads of the test's own process. Every request
    it reads is recorded as it comes (head first, body as it arrives): method,
    target, version, fields, whether its head is well-formed, the body, whether
    it was complete before the connection closed. respond(req) gives the bytes
    to answer (default: 200, "ok TARGET\\n")."""

    def __init__(self, env, addr="127.0.0.2", respond=None):
        self.srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.srv.bind((addr, 0))
        self.srv.listen(128)
        self.port = self.srv.getsockname()[1]
        self.respond = respond or self.ok
        self.lock = threading.Lock()
        self.reqs = []
        self.conns = []  # {"id", "closed", "raw"}
        self.socks = []
        self.stopped = False
        threading.Thread(target=self.accept_loop, daemon=True).start()
        env.cleanups.append(self.close)

    @staticmethod
    def ok(req):
        body = f"ok {req['target']}\n".encode()
        return b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body)

    def close(self):
        self.stopped = True
        for s in [self.srv] + self.socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def snapshot(self):
        with self.lock:
            return [dict(r, body=bytes(r["body"])) for r in self.reqs]

    def accept_loop(self):
        while not self.stopped:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            with self.lock:
                rec = {"id": len(self.conns) + 1, "closed": False, "raw": bytearray()}
                self.conns.append(rec)
                self.socks.append(c)
            threading.Thread(target=self.serve, args=(c, rec), daemon=True).start()

    def serve(self, c, rec):
        buf = bytearray()

        def more():
            d = c.recv(65536)
            if not d:
                raise EOFError
            with self.lock:
                rec["raw"] += d
            buf.extend(d)

        def line():
            while b"\r\n" not in buf:
                if len(buf) > 65536:
                    raise EOFError
                more()
            i = buf.index(b"\r\n")
            out = bytes(buf[:i])
            del buf[:i + 2]
            return out

        def take(n, req):
            while n > 0:
                if not buf:
                    more()
                piece = bytes(buf[:n])
                del buf[:len(piece)]
                with self.lock:
                    req["body"] += piece
                n -= len(piece)

        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    if buf and len(buf) > 1 << 20:
                        raise EOFError
                    try:
                        more()
                    except EOFError:
                        if buf:  # a partial head: recorded as such
                            with self.lock:
                                self.reqs.append({"conn": rec["id"], "head": bytes(buf).decode("latin-1"),
                                                  "method": None, "target": None, "headers": [],
                                                  "malformed": "partial head", "body": bytearray(),
                                                  "complete": False})
                        raise
                i = buf.index(b"\r\n\r\n")
                head = bytes(buf[:i]).decode("latin-1")
                del buf[:i + 4]
                req = self.parse_head(rec["id"], head)
                with self.lock:
                    self.reqs.append(req)
                te = ",".join(v for k, v in req["headers"] if k == "transfer-encoding").lower()
                cl = [v for k, v in req["headers"] if k == "content-length"]
                if te and cl:
                    req["malformed"] = req["malformed"] or "both transfer-encoding and content-length"
                if te:
                    if te.replace(" ", "") != "chunked":
                        req["malformed"] = req["malformed"] or f"transfer-encoding {te}"
                        raise EOFError
                    while True:
                        size = line().split(b";")[0].strip()
                        if not re.fullmatch(rb"[0-9a-fA-F]{1,8}", size):
                            req["malformed"] = req["malformed"] or f"bad chunk size {size!r}"
                            raise EOFError
                        n = int(size, 16)
                        if n == 0:
                            while line() != b"":
                                pass
                            break
                        take(n, req)
                        if line() != b"":
                            req["malformed"] = req["malformed"] or "bad chunk end"
                            raise EOFError
                elif cl:
                    if len(cl) != 1 or not cl[0].isdigit():
                        req["malformed"] = req["malformed"] or f"content-length {cl}"
                        raise EOFError
                    take(int(cl[0]), req)
                with self.lock:
                    req["complete"] = True
                if req["malformed"]:
                    raise EOFError
                c.sendall(self.respond(req))
        except (EOFError, OSError):
            pass
        finally:
            with self.lock:
                rec["closed"] = True
            try:
                c.close()
            except OSError:
                pass

    @staticmethod
    def parse_head(conn_id, head):
        lines = head.split("\r\n")
        req = {"conn": conn_id, "head": head, "method": None, "target": None, "headers": [], "malformed": None,
               "body": bytearray(), "complete": False}
        m = re.fullmatch(r"([A-Z]+) (\S+) HTTP/1\.1", lines[0])
        if not m:
            req["malformed"] = f"request line {lines[0]!r}"
        else:
            req["method"], req["target"] = m.group(1), m.group(2)
        for ln in lines[1:]:
            k, sep, v = ln.partition(":")
            if not sep or not TOKEN.match(k) or any(ch in v for ch in "\r\n\0"):
                req["malformed"] = req["malformed"] or f"field line {ln!r}"
                continue
            req["headers"].append((k.lower(), v.strip(" \t")))
        return req


def strict_world(env, respond=None, workers=2, app_extra="", timeouts=None):
    """The gateway (h2c and HTTP/1.1 on one port) routing everything to one RecUp."""
    need_tools("h2")
    up = RecUp(env, respond=respond)
    gw = one_service(env, up.port, workers=workers, app_extra=app_extra, timeouts=timeouts)
    rep = h2_raw(gw, [hdrs(1, H(path="/warm"))])
    check(served(sget(rep, 1), "/warm"), f"a plain HTTP/2 GET: {rep}")
    return gw, up


def refused_cases(env, gw, up, cases):
    """Each case on a connection of its own: its steps make stream 1, which must
    be reset PROTOCOL_ERROR (or answered 400), then a GET on stream 3 of the
    same connection must be served. At the end the upstream must have got
    nothing but those GETs (and the warm-up), each well-formed."""
    nexts = {"/warm"}
    fails = []
    for i, (what, steps) in enumerate(cases):
        nxt = f"/next-{i}"
        nexts.add(nxt)
        rep = h2_raw(gw, steps + [{"op": "wait", "sid": 1}, hdrs(3, H(path=nxt)), {"op": "wait", "sid": 3}])
        s1, s3 = sget(rep, 1), sget(rep, 3)
        if not refused(s1):
            fails.append(f"{what}: stream 1 not reset PROTOCOL_ERROR nor answered 400: status {s1.get('status')} "
                         f"reset {s1.get('reset')} body {s1.get('body', '')[:80]!r} (goaway {rep['goaway']}, "
                         f"error {rep['error']})")
        elif rep["goaway"] is not None:
            fails.append(f"{what}: GOAWAY {rep['goaway']} (a stream error, not a connection error)")
        elif not served(s3, nxt):
            fails.append(f"{what}: the next stream on the same connection: {s3} ({rep['error']})")
    got = up.snapshot()
    strays = [r["head"][:60] for r in got if r["target"] not in nexts or r["malformed"] or not r["complete"]]
    if strays or sorted(r["target"] for r in got) != sorted(nexts):
        fails.append(f"the upstream got {[r['head'][:40] for r in got]}, want only GETs of {sorted(nexts)} "
                     f"(strays: {strays})")
    check(not fails, f"{len(fails)} failures over {len(cases)} cases:\n  " + "\n  ".join(fails))


# --------------------------------------------------------------------------- (b1) content-length


@_test
def h2strict_content_length(env):
    """RFC 9113 8.1.1: a content-length the DATA contradict makes the request
    malformed even before END_STREAM: DATA beyond it (no END_STREAM yet), in
    one frame or after a first frame within it; HEADERS ending the stream with
    a content-length above 0; fewer bytes than declared then END_STREAM. The
    stream is reset, no byte of it reaches the upstream, the next stream on
    the connection is served."""
    gw, up = strict_world(env)
    P = lambda p, cl: H("POST", p, extra=[["content-length", cl]])  # noqa: E731
    cases = [
        ("DATA over content-length, no END_STREAM",
         [hdrs(1, P("/b1-over", "5"), end=False), {"op": "data", "data": "0123456789"}]),
        ("second DATA over content-length, no END_STREAM",
         [hdrs(1, P("/b1-over2", "5"), end=False), {"op": "data", "data": "012"}, {"op": "data", "data": "345"}]),
        ("HEADERS with END_STREAM and content-length 10", [hdrs(1, P("/b1-end", "10"), end=True)]),
        ("GET with END_STREAM and content-length 1", [hdrs(1, H("GET", "/b1-get", extra=[["content-length", "1"]]))]),
        ("DATA under content-length, then END_STREAM",
         [hdrs(1, P("/b1-under", "10"), end=False), {"op": "data", "data": "01234", "end": True}]),
    ]
    refused_cases(env, gw, up, cases)


@_test
def h2strict_body_limit_answer_whole(env):
    """A request refused at its head (413: a declared length over
    maxRequestBodyBytes) whose body arrives in the same read gets that answer
    whole: the body counted past the limit does not make a second answer that
    cut the first (a reset and no :status before); so does one refused as its
    body streams past the limit. Both are logged with their request."""
    log = env.path("access.log")
    fmt = "%PROTOCOL% %REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_CODE_DETAILS%"
    gw, up = strict_world(env, app_extra="  limits: {maxRequestBodyBytes: 100}\n"
                          f"  accessLog: {{path: {log}, format: text, textFormat: \"{fmt}\"}}\n")
    body = "x" * 200
    for what, fields in (("declared 200 over a limit of 100", H("POST", "/big", extra=[["content-length", "200"]])),
                         ("200 bytes streamed over a limit of 100", H("POST", "/big2"))):
        rep = h2_raw(gw, [hdrs(1, fields, end=False), {"op": "data", "data": body, "end": True}, {"op": "wait"}])
        s = sget(rep, 1)
        check(s.get("status") == 413 and s.get("ended"), f"{what}: want a whole 413: {s} ({rep['error']})")
    check(all(r["target"] != "/big" for r in up.snapshot()), f"the upstream got the refused /big: {up.snapshot()}")
    want = ["HTTP/2 GET /warm 200 via_upstream", "HTTP/2 POST /big 413 request_payload_too_large",
            "HTTP/2 POST /big2 413 request_payload_too_large"]
    poll(lambda: len(file_lines(log)) >= len(want), 5, what=f"{len(want)} access-log lines")
    check(sorted(file_lines(log)) == want, f"lines {sorted(file_lines(log))}, want {want}")


@_test
def h2strict_body_limit_exact(env):
    """maxRequestBodyBytes is the most a body may have: a body of exactly the
    limit is served, streamed without a content-length or declared by one;
    one byte more is 413 (Envoy's buffer limit is exceeded only past it)."""
    gw, up = strict_world(env, app_extra="  limits: {maxRequestBodyBytes: 100}\n")
    for what, path, extra in (("100 bytes streamed", "/exact1", []),
                              ("100 bytes declared", "/exact2", [["content-length", "100"]])):
        rep = h2_raw(gw, [hdrs(1, H("POST", path, extra=extra), end=False),
                          {"op": "data", "data": "x" * 60}, {"op": "data", "data": "y" * 40, "end": True},
                          {"op": "wait"}])
        s = sget(rep, 1)
        check(served(s, path), f"{what} under a limit of 100: {s} ({rep['error']})")
    rep = h2_raw(gw, [hdrs(1, H("POST", "/over"), end=False), {"op": "data", "data": "x" * 101, "end": True},
                      {"op": "wait"}])
    check(sget(rep, 1).get("status") == 413, f"101 bytes over a limit of 100: {sget(rep, 1)}")


@_test
def h2strict_continuation_cap(env):
    """A header block may come in a HEADERS and up to 8 CONTINUATIONs (nghttp2's
    max_continuations, CVE-2024-28182); one in more frames, however small,
    ends the connection with GOAWAY ENHANCE_YOUR_CALM before it is a request."""
    gw, up = strict_world(env)
    fields = H(path="/split9", extra=[["x-pad", "p" * 64]])
    rep = h2_raw(gw, [{"op": "headers_split", "sid": 1, "headers": fields, "pieces": 9, "end": True},
                      {"op": "wait"}])
    check(served(sget(rep, 1), "/split9") and rep["goaway"] is None,
          f"a block in 9 frames (8 CONTINUATIONs): {sget(rep, 1)} goaway {rep['goaway']}")
    fields = H(path="/split12", extra=[["x-pad", "p" * 64]])
    rep = h2_raw(gw, [{"op": "headers_split", "sid": 1, "headers": fields, "pieces": 12, "end": True},
                      {"op": "wait_goaway"}])
    check(rep["goaway"] is not None and rep["goaway"]["code"] == 11,
          f"a block in 12 frames (11 CONTINUATIONs): GOAWAY {rep['goaway']}, stream {sget(rep, 1)}")
    check(all(r["target"] != "/split12" for r in up.snapshot()), "the upstream got /split12")


# --------------------------------------------------------------------------- (b2) a reset half-way through a body


class Session:
    """The raw client run in the background, for steps with a "sync": the test
    looks at the upstream at each sync, then lets the client go on."""

    def __init__(self, env, port, steps, timeout=20):
        self.timeout = timeout
        self.p = subprocess.Popen([DEBIAN_PYTHON, THIS, "client", f"127.0.0.1:{port}", str(timeout),
                                   json.dumps(steps)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, start_new_session=True)
        env.cleanups.append(self.kill)

    def kill(self):
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGKILL)
            self.p.wait()

    def at_sync(self):
        r, _, _ = select.select([self.p.stdout], [], [], self.timeout)
        check(r, "the raw client did not reach its sync step")
        line = self.p.stdout.readline().decode()
        check(line.startswith('{"sync"'), f"the raw client said {line!r} before its sync: "
              f"{self.p.stderr.read().decode()[-1500:] if self.p.poll() is not None else ''}")

    def go(self):
        self.p.stdin.write(b"go\n")
        self.p.stdin.flush()

    def result(self):
        try:
            out, err = self.p.communicate(timeout=self.timeout + 15)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TestFailure("the raw client still running")
        try:
            return json.loads(out.decode().strip().split("\n")[-1])
        except (ValueError, IndexError):
            raise TestFailure(f"raw HTTP/2 client exited {self.p.returncode}: {out[-500:]!r} {err[-1500:]!r}")


@_test
def h2strict_drain_notice(env):
    """A graceful stop sends two GOAWAYs, as RFC 9113 6.8 advises and Envoy
    does: first one of stream 2^31-1, then, a second later, one naming the
    last stream taken. A stream the client sends after the first (it had not
    read it, say) is served, not refused (a single GOAWAY refused it: the
    client saw its request fail); the connection then closes."""
    gw, up = strict_world(env, workers=1)
    s = Session(env, gw, [hdrs(1, H(path="/n-warm")), {"op": "wait", "sid": 1}, {"op": "sync"},
                          {"op": "wait_goaway"}, hdrs(3, H(path="/n-after-notice")), {"op": "wait", "sid": 3},
                          {"op": "wait_closed"}])
    s.at_sync()
    os.kill(env.gateway.pid, signal.SIGTERM)
    s.go()
    rep = s.result()
    check(served(sget(rep, 3), "/n-after-notice"), f"the stream sent after the notice: {sget(rep, 3)} ({rep})")
    g = rep["goaways"]
    check(len(g) == 2 and g[0]["last"] == 0x7fffffff and g[1]["last"] == 3 and
          all(x["code"] == NO_ERROR for x in g), f"the GOAWAYs: {g}")
    check(rep["closed"], f"the connection after the last GOAWAY: {rep}")


def slow_answer(req):
    """RecUp's answer, 2.5 s late for /slow..."""
    if req["target"].startswith("/slow"):
        time.sleep(2.5)
    return RecUp.ok(req)


@_test
def h2strict_drain_notice_then_last_stream(env):
    """The second GOAWAY of a graceful stop comes a second after the notice
    even while a stream is still running (RFC 9113 6.8, Envoy's drain): it
    names the last stream taken, and a stream the client opens after it is
    not served. Without it the connection took new streams until its last
    stream ended, for as long as the drain allowed."""
    gw, up = strict_world(env, respond=slow_answer, workers=1)
    s = Session(env, gw, [hdrs(1, H(path="/slow-held")), {"op": "sync", "name": "held"},
                          {"op": "wait_goaway"}, {"op": "sync", "name": "noticed"},
                          hdrs(3, H(path="/n-late")), {"op": "wait_closed"}])
    s.at_sync()
    poll(lambda: any(r["target"] == "/slow-held" for r in up.snapshot()), 5, what="the held stream upstream")
    os.kill(env.gateway.pid, signal.SIGTERM)
    s.go()
    s.at_sync()
    time.sleep(1.5)  # past the notice's second: the last stream is named by now
    s.go()
    rep = s.result()
    check(served(sget(rep, 1), "/slow-held"), f"the stream held across the drain: {sget(rep, 1)} ({rep})")
    check(not served(sget(rep, 3), "/n-late") and all(r["target"] != "/n-late" for r in up.snapshot()),
          f"a stream opened 1.5 s after the notice was served: {sget(rep, 3)}")
    g = rep["goaways"]
    check(len(g) == 2 and g[0]["last"] == 0x7fffffff and g[1]["last"] == 1 and
          all(x["code"] == NO_ERROR for x in g), f"the GOAWAYs: {g}")


def mid_body(req):
    """RecUp's answer: for /gone..., a head announcing 10^6 bytes and 5 of
    them, the rest never sent; else its default."""
    if req["target"].startswith("/gone"):
        return b"HTTP/1.1 200 OK\r\ncontent-length: 1000000\r\n\r\nhello"
    return RecUp.ok(req)


@_test
def client_gone_mid_response(env):
    """A client that goes while its response streams is who cut the
    exchange, as Envoy logs it: DC when its connection closes (HTTP/2) or is
    reset (HTTP/1.1: noticed at once, the upstream silent), DR when an HTTP/2
    client resets the stream; the endpoint did
    not fail (show endpoints counts no failure). Both were logged UC, the
    upstream's connection closing, and counted as the endpoint's failures."""
    log = env.path("access.log")
    fmt = "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS%"
    gw, up = strict_world(env, respond=mid_body,
                          app_extra=f"  accessLog: {{path: {log}, format: text, textFormat: \"{fmt}\"}}\n")
    with Conn("127.0.0.1", gw) as c:
        c.send(b"GET /gone-h1 HTTP/1.1\r\nHost: a.test\r\n\r\n")
        got = b""
        while b"hello" not in got:
            d = c.sock.recv(65536)
            check(d, f"the gateway closed before the body's first bytes: {got!r}")
            got += d
        # A reset, as a client that aborts sends one (an end alone is a
        # half close: the response would still go).
        c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    rep = h2_raw(gw, [hdrs(1, H(path="/gone-rst")), {"op": "wait_body", "sid": 1, "data": "hello"},
                      {"op": "rst", "sid": 1, "code": CANCEL}, hdrs(3, H(path="/after")), {"op": "wait", "sid": 3}])
    check(sget(rep, 1)["status"] == 200 and served(sget(rep, 3), "/after"), f"the reset stream, the next: {rep}")
    rep = h2_raw(gw, [hdrs(1, H(path="/gone-close")), {"op": "wait_body", "sid": 1, "data": "hello"},
                      {"op": "close"}])
    check(sget(rep, 1)["status"] == 200, f"the stream whose client closed: {rep}")
    want = {"/gone-h1": "/gone-h1 200 DC", "/gone-rst": "/gone-rst 200 DR", "/gone-close": "/gone-close 200 DC"}
    lines = poll(lambda: (lambda ls: ls if all(any(l.startswith(p + " ") for l in ls) for p in want) else None)(
        file_lines(log)), 10, what="the three lines of the clients that went")
    for p, w in want.items():
        check(w in lines, f"{p}: want {w!r}, the log has {[l for l in lines if l.startswith(p)]}")
    doc = json.loads(ctl_cmd(env.path("ctl.sock"), "show endpoints json"))
    check(all(e.get("failures") == 0 for e in doc), f"endpoint failures counted for the clients that went: {doc}")


@_test
def h2strict_reset_mid_body(env):
    """A POST whose body stops short (content-length 100, 10 bytes sent; or no
    content-length, so chunked upstream) is reset by the client (CANCEL) once
    its head and first bytes reached the upstream: that upstream connection is
    closed with the request unfinished, never reused, and the next stream on
    the same client connection reaches the upstream as a well-formed request
    of its own (not as the rest of the first one's body)."""
    gw, up = strict_world(env, workers=1)
    for i, (what, extra) in enumerate((("content-length 100", [["content-length", "100"]]),
                                       ("no content-length (chunked upstream)", []))):
        path, nxt = f"/b2-post-{i}", f"/b2-next-{i}"
        # A kept-alive upstream connection first, for the next request to be tempted by.
        s = Session(env, gw, [hdrs(1, H(path=f"/b2-warm-{i}")), {"op": "wait", "sid": 1},
                              hdrs(3, H("POST", path, extra=extra), end=False),
                              {"op": "data", "sid": 3, "data": "A" * 10}, {"op": "sync"},
                              {"op": "rst", "sid": 3, "code": CANCEL},
                              hdrs(5, H(path=nxt)), {"op": "wait", "sid": 5}])
        s.at_sync()

        def half():
            return next((r for r in up.snapshot() if r["target"] == path and r["body"] == b"A" * 10), None)
        try:
            first = poll(half, 5, what=f"{what}: the POST's head and 10 body bytes at the upstream")
        finally:
            s.go()
        rep = s.result()
        check(sget(rep, 1).get("status") == 200, f"{what}: the warm-up GET: {sget(rep, 1)}")
        check(served(sget(rep, 5), nxt), f"{what}: the next stream after the reset: {sget(rep, 5)} ({rep['error']})")
        poll(lambda: next(c for c in up.conns if c["id"] == first["conn"])["closed"], 5,
             what=f"{what}: the upstream connection of the reset POST to be closed")
        got = {r["target"]: r for r in up.snapshot()}
        check(not got[path]["complete"], f"{what}: the reset POST reached the upstream complete: {got[path]}")
        n = got.get(nxt)
        check(n is not None and n["method"] == "GET" and n["complete"] and not n["malformed"] and n["body"] == b"",
              f"{what}: the next request at the upstream: {n}")
        check(n["conn"] != first["conn"], f"{what}: the next request went on the reset POST's upstream connection")
        conn = next(c for c in up.conns if c["id"] == first["conn"])
        check(nxt.encode() not in conn["raw"], f"{what}: the next request's bytes went after the half POST: "
              f"{bytes(conn['raw'])!r}")
    bad = [r for r in up.snapshot() if r["malformed"]]
    check(not bad, f"malformed requests at the upstream: {bad}")


# --------------------------------------------------------------------------- (b3) pseudo-headers


@_test
def h2strict_pseudo_headers(env):
    """RFC 9113 8.3.1 / 8.5 and RFC 8441 4: missing :method, missing :scheme,
    :path twice, :path empty, :path not starting with '/', GET with :path '*',
    a :path with '#' (a fragment, refused as Envoy refuses it), CONNECT with
    :path, CONNECT without :authority, :protocol on a GET, an
    extended CONNECT with END_STREAM, a pseudo-header in trailers: each stream reset PROTOCOL_ERROR (or 400),
    nothing of it at the upstream, the next stream served."""
    gw, up = strict_world(env)
    G = H(path="/b3")

    def without(name):
        return [f for f in G if f[0] != name]

    cases = [
        ("missing :method", [hdrs(1, without(":method"))]),
        ("missing :scheme", [hdrs(1, without(":scheme"))]),
        ("duplicate :path", [hdrs(1, G + [[":path", "/b3-dup"]])]),
        ("empty :path", [hdrs(1, H(path=""))]),
        (":path without leading slash", [hdrs(1, H(path="x"))]),
        ("GET with :path *", [hdrs(1, H(path="*"))]),
        # A fragment is never sent: Envoy answers 400 (it went on as
        # /b3%23x, past a policy on /b3; raw into the upstream's query).
        (":path with a fragment", [hdrs(1, H(path="/b3#x"))]),
        (":path with a fragment in its query", [hdrs(1, H(path="/b3?a#b"))]),
        ("CONNECT with :path", [hdrs(1, [[":method", "CONNECT"], [":authority", "a.test:443"], [":path", "/b3"]],
                                     end=False)]),
        ("CONNECT with :scheme", [hdrs(1, [[":method", "CONNECT"], [":authority", "a.test:443"],
                                           [":scheme", "http"]], end=False)]),
        ("CONNECT without :authority", [hdrs(1, [[":method", "CONNECT"]], end=False)]),
        (":protocol on a GET", [hdrs(1, G + [[":protocol", "websocket"]])]),
        # RFC 8441 5: a 2xx opens the tunnel; as a GET it was answered 200.
        ("extended CONNECT that ends its stream",
         [hdrs(1, [[":method", "CONNECT"], [":protocol", "websocket"], [":scheme", "http"], [":path", "/b3-ws"],
                   [":authority", "a.test"]], end=True)]),
        ("pseudo-header in trailers",
         [hdrs(1, H("POST", "/b3-trailers"), end=False), {"op": "data", "data": "abc"},
          hdrs(1, [[":path", "/b3-smuggled"], ["x-t", "1"]], end=True)]),
        ("pseudo-header in trailers, content-length",
         [hdrs(1, H("POST", "/b3-trailers-cl", extra=[["content-length", "3"]]), end=False),
          {"op": "data", "data": "abc"}, hdrs(1, [[":method", "GET"]], end=True)]),
    ]
    refused_cases(env, gw, up, cases)


@_test
def h2strict_options_connect(env):
    """OPTIONS with :path '*' (RFC 9113 8.3.1), and HTTP/1.1's 'OPTIONS *', are
    answered 404 and reach no upstream, as Envoy's connection manager takes
    relative paths only (absolute_path_rejected; they were routed by a
    catch-all route and forwarded); a plain CONNECT (no :protocol) is answered
    501 and reaches no upstream; the connection serves on."""
    gw, up = strict_world(env)
    rep = h2_raw(gw, [hdrs(1, H("OPTIONS", "*")), {"op": "wait", "sid": 1},
                      hdrs(3, [[":method", "CONNECT"], [":authority", "b.test:443"]], end=False),
                      {"op": "wait", "sid": 3}, hdrs(5, H(path="/after")), {"op": "wait", "sid": 5}])
    s1, s3 = sget(rep, 1), sget(rep, 3)
    check(s1.get("status") == 404, f"OPTIONS *: {s1}")
    check(s3.get("status") == 501, f"plain CONNECT: {s3}")
    check(served(sget(rep, 5), "/after"), f"the stream after the CONNECT: {sget(rep, 5)}")
    with socket.create_connection(("127.0.0.1", gw), timeout=5) as c:
        c.sendall(b"OPTIONS * HTTP/1.1\r\nHost: a.test\r\n\r\n")
        head = c.recv(4096)
    check(head.startswith(b"HTTP/1.1 404 "), f"HTTP/1.1 OPTIONS *: {head[:200]!r}")
    got = up.snapshot()
    check(sorted(r["target"] for r in got) == ["/after", "/warm"] and not any(r["malformed"] for r in got),
          f"the upstream got {[r['head'][:60] for r in got]}")


@_test
def h2strict_authority_and_path_as_http1(env):
    """An HTTP/2 :authority and :path are held to what HTTP/1.1's parser takes
    as Host and request target: "a.test:80x", "a.test:80:90", "u@a.test" and
    raw bytes from 0x80 in the path or the query are answered 400 and reach no
    upstream (they were routed by what came before the ':' and sent on as
    they came; to an HTTP/2 upstream, they failed isthmus's own encoding and
    were charged to the upstream as its reset, ejecting a healthy endpoint)."""
    gw, up = strict_world(env)
    cases = [(f":authority {a}", [hdrs(1, H(path="/b5-auth", authority=a))])
             for a in ("a.test:80x", "a.test:80:90", "u@a.test")]
    cases += [(f":path {p!r}", [hdrs(1, H(path=p))]) for p in ("/caf\u00e9", "/b5?q=\u00e9")]
    refused_cases(env, gw, up, cases)


# --------------------------------------------------------------------------- (b4) field characters


@_test
def h2strict_field_chars(env):
    """RFC 9113 8.2.1: a NUL in a field name, a lone CR in a value, and a value
    with leading or trailing space or tab are malformed: nghttp2 (1.52, its
    RFC 9113 whitespace check on) resets the stream; nothing of it reaches
    the upstream, the next stream is served."""
    gw, up = strict_world(env)
    cases = [
        ("NUL in a field name", [hdrs(1, H(path="/b4-nul", extra=[["x-a\x00b", "1"]]))]),
        ("lone CR in a value", [hdrs(1, H(path="/b4-cr", extra=[["x-a", "1\r2"]]))]),
        ("lone LF in a value", [hdrs(1, H(path="/b4-lf", extra=[["x-a", "1\n2"]]))]),
        ("leading space in a value", [hdrs(1, H(path="/b4-lsp", extra=[["x-a", " 1"]]))]),
        ("trailing space in a value", [hdrs(1, H(path="/b4-tsp", extra=[["x-a", "1 "]]))]),
        ("leading tab in a value", [hdrs(1, H(path="/b4-ltab", extra=[["x-a", "\t1"]]))]),
        ("trailing tab in a value", [hdrs(1, H(path="/b4-ttab", extra=[["x-a", "1\t"]]))]),
        ("space-only content-length", [hdrs(1, H("POST", "/b4-cl", extra=[["content-length", " 3"]]), end=False),
                                       {"op": "data", "data": "abc", "end": True}]),
        ("space in a field name", [hdrs(1, H(path="/b4-namesp", extra=[["x-a b", "1"]]))]),
        ("colon in a field name", [hdrs(1, H(path="/b4-colon", extra=[["x-a:b", "1"]]))]),
    ]
    refused_cases(env, gw, up, cases)


# --------------------------------------------------------------------------- (c1) connection-specific response fields

HOP_FIELDS = ("connection", "x-hop", "keep-alive", "proxy-connection", "upgrade", "te", "transfer-encoding")


def hop_response(req):
    if req["target"] != "/c1":
        return RecUp.ok(req)
    return (b"HTTP/1.1 200 OK\r\n"
            b"Connection: x-hop, keep-alive\r\n"
            b"X-Hop: 1\r\n"
            b"Keep-Alive: timeout=5, max=100\r\n"
            b"Proxy-Connection: keep-alive\r\n"
            b"Upgrade: h2c\r\n"
            b"TE: trailers\r\n"
            b"Trailer: x-trl\r\n"
            b"X-End: kept\r\n"
            b"Transfer-Encoding: chunked\r\n"
            b"\r\n"
            b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nx-trl: t\r\n\r\n")


@_test
def h2strict_hop_response_fields(env):
    """An HTTP/1.1 upstream's response with Connection, a field Connection
    names, Keep-Alive, Proxy-Connection, Upgrade, TE and a chunked
    Transfer-Encoding: the HTTP/2 client gets none of them (RFC 9113 8.2.2),
    the end-to-end fields kept (Trailer too, RFC 9110 6.6.2), and the body
    de-chunked, whole, with a clean END_STREAM; the
    next stream on the connection (and on the kept upstream connection) is
    served."""
    gw, up = strict_world(env, respond=hop_response, workers=1)
    rep = h2_raw(gw, [hdrs(1, H(path="/c1")), {"op": "wait", "sid": 1},
                      hdrs(3, H(path="/c1-next")), {"op": "wait", "sid": 3}])
    s1 = sget(rep, 1)
    check(s1.get("status") == 200 and s1.get("ended") and s1.get("reset") is None,
          f"the response with hop-by-hop fields: {s1} ({rep['error']}, goaway {rep['goaway']})")
    names = fnames(s1) + [k for k, _ in s1.get("trailers", [])]
    leaked = [n for n in names if n in HOP_FIELDS]
    check(not leaked, f"connection-specific fields reached the HTTP/2 client: {leaked} in {s1['headers']}")
    check(["x-end", "kept"] in s1["headers"] and ["trailer", "x-trl"] in s1["headers"],
          f"the end-to-end fields x-end and trailer were lost: {s1['headers']}")
    check(s1["body"] == "hello world", f"body {s1['body']!r}, want 'hello world'")
    cl = [v for k, v in s1["headers"] if k == "content-length"]
    check(cl in ([], ["11"]), f"content-length {cl} for an 11-byte body")
    check(served(sget(rep, 3), "/c1-next"), f"the next stream: {sget(rep, 3)}")


# --------------------------------------------------------------------------- (c2) an HTTP/2 upstream's content-length


def start_h2up(env, addr="127.0.0.2"):
    port = free_port(addr)
    log = env.path("h2up.log")
    spawn_listening(env, "h2up-raw", [DEBIAN_PYTHON, THIS, "h2up", addr, str(port), log], addr, port)
    return port, log


# What a client gets of each H2UP_CASES answer before the cut, and the access
# log's flag: the bytes that came before the DATA contradicted the
# content-length (nghttp2 drops a chunk that goes past it, and resets at an
# END_STREAM that comes short of it), UR; or before the connection closed, UC.
CUTS = {"/cl-short": ("hello", "UR"), "/cl-short-apart": ("hello", "UR"), "/cl-long": ("", "UR"),
        "/cl-long-apart": ("", "UR"), "/cl-long-split": ("012", "UR"), "/close-mid-body": ("hello", "UC")}


def h1_until_close(port, path, timeout=5.0):
    """A GET on an HTTP/1.1 connection of its own: (head, body, closed): what
    came before the gateway closed the connection (closed False: still open
    after timeout)."""
    data, closed = b"", False
    with Conn("127.0.0.1", port, timeout=timeout) as c:
        c.send(b"GET %s HTTP/1.1\r\nHost: a.test\r\n\r\n" % path.encode())
        try:
            while True:
                d = c.sock.recv(65536)
                if not d:
                    closed = True
                    break
                data += d
        except ConnectionResetError:
            closed = True
        except socket.timeout:
            pass
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), body.decode("latin-1"), closed


@_test
def h2strict_upstream_content_length(env):
    """An HTTP/2 upstream whose DATA contradict its content-length (fewer
    bytes, then END_STREAM; more, in one frame or past a first one within
    it), with the head and the DATA in one read or apart: nghttp2 resets the
    upstream stream (PROTOCOL_ERROR), and the client gets what Envoy forwards
    as it streams: the head (status and content-length as declared), the
    bytes before the violation, then the cut: an HTTP/1.1 client sees the
    connection closed before content-length bytes, an HTTP/2 client
    RST_STREAM after HEADERS (not a head dropped with the reset). The next
    request is served (the next stream of the HTTP/2 client's connection, on
    the same upstream connection: a stream error, not a connection error);
    the access log says the upstream's 200 and UR (Envoy's upstream remote
    reset); nothing stays in flight to the endpoint; and three such answers
    in a row eject it (consecutive5xxErrors: 3), as any response cut short.
    So too an upstream whose connection closes after a head and part of the
    body, in one write: the head and that part, then the cut (UC)."""
    need_tools("h2")
    port, log = start_h2up(env)
    extra, access = alog(env, "text")
    dr = (f"apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: od}}\n"
          f"spec:\n  host: {SVC}\n  trafficPolicy:\n    outlierDetection: {{consecutive5xxErrors: 3, "
          f"interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 100}}\n")
    gw = one_service(env, port, protocol="HTTP2", workers=1, app_extra=extra, extra_docs=(dr,))
    rep = h2_raw(gw, [hdrs(1, H(path="/warm"))])
    check(served(sget(rep, 1), "/warm"), f"through the h2c upstream: {sget(rep, 1)}")
    fails = []
    for path, (declared, _) in H2UP_CASES.items():
        before = CUTS[path][0]
        rep = h2_raw(gw, [hdrs(1, H(path=path)), {"op": "wait", "sid": 1},
                          hdrs(3, H(path=path + "-next")), {"op": "wait", "sid": 3}])
        s1, s3 = sget(rep, 1), sget(rep, 3)
        if not (s1.get("status") == 200 and dict(s1.get("headers", [])).get("content-length") == declared
                and s1.get("body") == before and s1.get("reset") is not None and not s1.get("ended")):
            fails.append(f"HTTP/2 client, {path}: want the head (200, content-length {declared}), "
                         f"{before!r}, then RST_STREAM; got {s1}")
        if rep["goaway"] is not None or not served(s3, path + "-next"):
            fails.append(f"HTTP/2 client, the stream after {path}: {s3} (goaway {rep['goaway']})")

        head, body, closed = h1_until_close(gw, path)
        lines = head.split("\r\n")
        cls = [l.split(":", 1)[1].strip() for l in lines[1:] if l.lower().startswith("content-length:")]
        if not (lines[0].startswith("HTTP/1.1 200") and cls == [declared] and body == before and closed):
            fails.append(f"HTTP/1.1 client, {path}: want the head (200, content-length {declared}), "
                         f"{before!r}, then the close; got {head!r} {body!r} (closed: {closed})")
        with Conn("127.0.0.1", gw, timeout=5) as c:
            r = c.request("GET", path + "-h1next", "a.test")
            if r.status != 200 or r.body != f"ok {path}-h1next\n".encode():
                fails.append(f"HTTP/1.1 client, after {path}: {r}")
    check(not fails, f"{len(fails)} failures:\n  " + "\n  ".join(fails))

    # One upstream connection (one worker) carried each bad stream and the next one.
    conns = {}
    for rec in map(json.loads, file_lines(log)):
        conns.setdefault(dict(rec["headers"]).get(":path"), rec["conn"])
    for path in (p for p, (_, flag) in CUTS.items() if flag == "UR"):
        check(conns.get(path + "-next") == conns.get(path),
              f"the stream after {path} went on another upstream connection: {conns}")
    want = {f"{proto} 200 {flag} {path}" for path, (_, flag) in CUTS.items() for proto in ("HTTP/1.1", "HTTP/2")}
    wait_log(access, lambda ls: want <= set(ls), f"the access log lines {sorted(want)}")

    def inflight():
        return sum(e["inflight"] for e in json.loads(ctl_cmd(env.path("ctl.sock"), "show endpoints json")))

    poll(lambda: inflight() == 0, 5, what="the endpoint's in-flight count back to 0")
    for _ in range(3):
        h1_until_close(gw, "/cl-long")
    poll(lambda: any(e["ejected"] for e in json.loads(ctl_cmd(env.path("ctl.sock"), "show endpoints json"))), 5,
         what="the endpoint that cut 3 responses short in a row to be ejected")


# Each H2UP_EARLY answer's status and access-log flag, as Envoy's router gives
# them: an upstream's reset before a head 503 UR (a refused stream after its
# retries, URX too), a head it breaks HTTP/2's rules with 502 UPE, a connection
# closed before a head 503 UC.
EARLY = {"/rst-before-head": (503, "UR"), "/refused-before-head": (503, "UR,URX"), "/bad-head": (502, "UPE"),
         "/many-fields-head": (502, "UPE"), "/close-before-head": (503, "UC")}


@_test
def h2strict_upstream_fails_before_head(env):
    """An HTTP/2 upstream that resets a stream (INTERNAL_ERROR, or
    REFUSED_STREAM: retried as Istio's default retryOn says, then the same),
    answers a head with a connection-specific field (which nghttp2 refuses and
    resets) or with over 1000 fields (isthmus's limit: its protocol error,
    as an HTTP/1.1 upstream's too large head; it was 503 UR, as if the
    upstream had reset the stream), or closes its connection, each before
    any head: the client gets
    Envoy's answer (503 UR, 502 UPE, 503 UC; an HTTP/1.1 upstream closing
    before a head is 503 UC too, upstream_closed_503), over HTTP/1.1 and
    HTTP/2 alike, the access log says the flag, the next request is served,
    and nothing stays in flight to the endpoint."""
    need_tools("h2")
    port, log = start_h2up(env)
    extra, access = alog(env, "text")
    extra = extra.replace("%REQ(:PATH)%", "%REQ(:PATH)% %RESPONSE_CODE_DETAILS%")
    gw = one_service(env, port, protocol="HTTP2", workers=1, app_extra=extra)
    rep = h2_raw(gw, [hdrs(1, H(path="/warm"))])
    check(served(sget(rep, 1), "/warm"), f"through the h2c upstream: {sget(rep, 1)}")
    fails = []
    for path, (status, _) in EARLY.items():
        rep = h2_raw(gw, [hdrs(1, H(path=path)), {"op": "wait", "sid": 1},
                          hdrs(3, H(path=path + "-next")), {"op": "wait", "sid": 3}])
        s1, s3 = sget(rep, 1), sget(rep, 3)
        if s1.get("status") != status or not s1.get("ended"):
            fails.append(f"HTTP/2 client, {path}: want {status}, whole; got {s1}")
        if not served(s3, path + "-next"):
            fails.append(f"HTTP/2 client, the stream after {path}: {s3} (goaway {rep['goaway']})")
        with Conn("127.0.0.1", gw, timeout=5) as c:
            r = c.request("GET", path, "a.test")
            if r.status != status:
                fails.append(f"HTTP/1.1 client, {path}: want {status}, got {r}")
        with Conn("127.0.0.1", gw, timeout=5) as c:
            r = c.request("GET", path + "-h1next", "a.test")
            if r.status != 200 or r.body != f"ok {path}-h1next\n".encode():
                fails.append(f"HTTP/1.1 client, after {path}: {r}")
    check(not fails, f"{len(fails)} failures:\n  " + "\n  ".join(fails))
    want = {f"{proto} {status} {flag} {path}" for path, (status, flag) in EARLY.items()
            for proto in ("HTTP/1.1", "HTTP/2")}
    lines = wait_log(access, lambda ls: want <= {l.rsplit(" ", 1)[0] for l in ls},
                     f"the access log lines {sorted(want)}")
    # Envoy's details for a refused stream (its remote reset's otherwise).
    details = {l.split()[3]: l.split()[4] for l in lines if l.split()[2] in ("UR", "UR,URX")}
    check(details.get("/refused-before-head") ==
          "upstream_reset_before_response_started{remote_refused_stream_reset}" and
          details.get("/rst-before-head") == "upstream_reset_before_response_started{remote_reset}",
          f"the reset lines' details: {details}")
    # REFUSED_STREAM is retried (Istio's default retryOn has refused-stream): 3 tries.
    tries = sum(1 for rec in map(json.loads, file_lines(log))
                if dict(rec["headers"]).get(":path") == "/refused-before-head")
    check(tries == 6, f"the refused stream was tried {tries} times for 2 requests, want 6 (2 retries each)")

    def inflight():
        return sum(e["inflight"] for e in json.loads(ctl_cmd(env.path("ctl.sock"), "show endpoints json")))

    poll(lambda: inflight() == 0, 5, what="the endpoint's in-flight count back to 0")


# --------------------------------------------------------------------------- (d1) gRPC local replies

ABORTS = (400, 401, 403, 429, 500, 502, 503, 504, 418)
GRPC_MSG = "\x00\x00\x00\x00\x03abc"  # one uncompressed gRPC message, "abc"


def grpc_call(port, authority, path="/isthmus.test.Echo/Unary", message=GRPC_MSG):
    """A gRPC request (POST, application/grpc, te: trailers, one message) on
    a connection of its own; its stream's report."""
    rep = h2_raw(port, [hdrs(1, H("POST", path, authority, extra=[["content-type", "application/grpc"],
                                                                    ["te", "trailers"]]), end=False),
                        {"op": "data", "data": message, "end": True}, {"op": "wait", "sid": 1}])
    return sget(rep, 1)


@_test
def h2strict_grpc_local_replies(env):
    """What isthmus answers itself to a gRPC request is a gRPC error as Envoy
    gives it (HTTP 200, application/grpc, trailers-only) with grpc-status
    from httpToGrpcStatus: every status of test_h2.GRPC_FOR_HTTP (400, 401,
    403, 429, 502, 503, 504) and two others (500, 418 -> 2 UNKNOWN) through
    fault aborts, and the ones isthmus makes on its own: no route (404 -> 12),
    route timeout (504 -> 14), connect failure (503 -> 14), a path refused
    before routing (400 -> 13), a streamed body
    over maxRequestBodyBytes (413 -> 2), and no healthy upstream (every
    endpoint failing its active health check, no panic threshold: 503 -> 14)."""
    need_tools("h2")
    up = h1_upstream(env)
    dead = free_port("127.0.0.3")
    gw_port = free_port()
    routes = ""
    for n in ABORTS:
        routes += (f"  - match: [{{authority: {{exact: abort-{n}.test}}}}]\n"
                   f"    route: [{{destination: {{host: {SVC}}}}}]\n"
                   f"    fault: {{abort: {{httpStatus: {n}, percentage: {{value: 100}}}}}}\n")
    routes += (f"  - match: [{{authority: {{exact: slow.test}}}}]\n"
               f"    route: [{{destination: {{host: {SVC}}}}}]\n    timeout: 500ms\n"
               f"  - match: [{{authority: {{exact: dead.test}}}}]\n"
               f"    route: [{{destination: {{host: dead.internal}}}}]\n"
               f"  - match: [{{authority: {{exact: a.test}}}}]\n"
               f"    route: [{{destination: {{host: {SVC}}}}}]\n")
    conf = env.write("isthmus.yaml", docs(
        appliance(env, health_checks=[SVC], extra=limits(maxRequestBodyBytes=1000)), gateway(gw_port),
        virtual_service("vs", ["*"], routes),
        service_entry("svc", SVC, [{"address": "127.0.0.2", "port": up}]),
        service_entry("dead", "dead.internal", [{"address": "127.0.0.3", "port": dead}]),
        no_panic_rule("svc", SVC)))
    env.start_gateway(conf, gw_port)
    poll(lambda: grpc_call(gw_port, "a.test").get("body", "").startswith("a "), 10,
         what="a gRPC request served by the (healthy) upstream")
    for n in ABORTS:
        want = GRPC_FOR_HTTP.get(n, 2)
        s = grpc_call(gw_port, f"abort-{n}.test")
        check_grpc_local_error(s, want, f"fault abort httpStatus {n}")
        check(s["body"] == "", f"abort {n}: a trailers-only answer with a body {s['body']!r}")
    check_grpc_local_error(grpc_call(gw_port, "nowhere.test"), GRPC_FOR_HTTP[404], "no route (404)")
    # Refused before routing (a bad percent-escape in the path) is a gRPC error too.
    check_grpc_local_error(grpc_call(gw_port, "a.test", "/a%zz"), GRPC_FOR_HTTP[400], "bad request path (400)")
    check_grpc_local_error(grpc_call(gw_port, "slow.test", "/delay/3000"), GRPC_FOR_HTTP[504],
                           "route timeout (504)")
    check_grpc_local_error(grpc_call(gw_port, "dead.test"), GRPC_FOR_HTTP[503], "connect failure (503)")
    s = grpc_call(gw_port, "a.test", message="\x00\x00\x00\x07\xd0" + "x" * 2000)
    check_grpc_local_error(s, 2, "a streamed body over maxRequestBodyBytes (413)")

    Env.ctl("127.0.0.2", up, "health/fail")
    poll(lambda: env.get("/plain", host="a.test").status == 503, 10,
         what="HTTP/1.1 requests answered 503 once the endpoint fails its health checks")
    s = grpc_call(gw_port, "a.test")
    check_grpc_local_error(s, UNAVAILABLE, "no healthy upstream (503)")
    check("healthy" in (dict(s["headers"]).get("grpc-message") or ""),
          f"no healthy upstream: grpc-message {dict(s['headers']).get('grpc-message')!r}")
    Env.ctl("127.0.0.2", up, "health/ok")
    poll(lambda: grpc_call(gw_port, "a.test").get("body", "").startswith("a "), 10,
         what="the gRPC request served again once the endpoint passes its checks")


# --------------------------------------------------------------------------- (e1) ServiceEntry port protocols


@_test
def h2strict_se_port_protocols(env):
    """ServiceEntry ports[].protocol HTTP_PROXY: `isthmus -c` refuses it, "not
    implemented yet", at FILE:LINE:COL of the protocol; MONGO, REDIS and MYSQL
    are taken, and an http route to such a port reaches its endpoint over
    HTTP/1.1 (docs/configuration.md: the protocols other than HTTP2, GRPC and
    GRPC-WEB speak HTTP/1.1), for HTTP/1.1 and HTTP/2 clients alike."""
    need_tools("h2")
    up = h1_upstream(env)
    gw_port = free_port()
    ep = [{"address": "127.0.0.2", "port": up}]
    bad = env.write("proxy.yaml", docs(appliance(env), gateway(gw_port),
                                       virtual_service("vs", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n"),
                                       service_entry_protocol("se", SVC, ep, "HTTP_PROXY")))
    rc, out = env.check_config(bad)
    m = re.search(re.escape(bad) + r":(\d+):(\d+): error: ServiceEntry default/se: spec\.ports\[0\]\.protocol: "
                  r"HTTP_PROXY is not implemented yet", out)
    check(rc == 1 and m, f"HTTP_PROXY: isthmus -c exited {rc}: {out!r}")
    line, col = int(m.group(1)), int(m.group(2))
    text = open(bad).read().split("\n")[line - 1]
    check(text[col - 1:].startswith("HTTP_PROXY"), f"the error points at {line}:{col} ({text!r}), not at HTTP_PROXY")

    protos = {"mongo.test": "MONGO", "redis.test": "REDIS", "mysql.test": "mysql"}
    parts = [appliance(env), gateway(gw_port)]
    for i, (host, proto) in enumerate(protos.items()):
        cluster = host.replace(".test", ".internal")
        parts.append(virtual_service(f"vs{i}", [host], f"  - route: [{{destination: {{host: {cluster}}}}}]\n"))
        parts.append(service_entry_protocol(f"se{i}", cluster, ep, proto))
    conf = env.write("isthmus.yaml", docs(*parts))
    rc, out = env.check_config(conf)
    check(rc == 0, f"MONGO/REDIS/MYSQL ServiceEntries refused: {out!r}")
    env.start_gateway(conf, gw_port)
    for host, proto in protos.items():
        r = poll(lambda: (lambda r: r if r.status == 200 else None)(env.get("/headers", host=host)), 5,
                 what=f"{proto}: a 200 through the gateway")
        check(r.body.startswith(b"GET /headers HTTP/1.1\r\n"), f"{proto}: the endpoint got {r.body[:200]!r}")
        rep = h2_raw(gw_port, [hdrs(1, H(path="/p", authority=host))])
        check(sget(rep, 1).get("status") == 200 and sget(rep, 1).get("body") == "a /p\n",
              f"{proto}, HTTP/2 client: {sget(rep, 1)}")
