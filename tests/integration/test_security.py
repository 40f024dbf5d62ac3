# SPDX-License-Identifier: Apache-2.0
"""Integration tests of the HTTP/1.1 defences: framing that a Connection field
cannot undo, chunked bodies checked strictly and re-chunked, one Content-Length,
Host syntax, outlier detection told of responses cut short, clients that do not
read, and the descriptor limit.

Registered into run.py's list by register(test)."""

import ctypes
import json
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time

from harness import (Conn, Registry, Skip, appliance, check, ctl_cmd, docs, free_port, gateway, in_netns,
                     make_netns, metric, poll, read_to_end, service_entry, virtual_service)
from test_locality import endpoints_view

SVC = "sec.test.internal"
_test = Registry()
register = _test.register


def one_upstream(env, workers=1, extra="", dr="", timeouts=None):
    """The gateway with every path routed to one test upstream (127.0.0.2)."""
    ports = env.upstream(["127.0.0.2:0=a"], name="a")
    gw_port = free_port()
    parts = [appliance(env, workers=workers, extra=extra, timeouts=timeouts), gateway(gw_port),
             virtual_service("sec", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n"),
             service_entry("sec", SVC, [{"address": "127.0.0.2", "port": ports["a"]}])]
    if dr:
        parts.append(dr)
    env.start_gateway(env.write("isthmus.yaml", docs(*parts)), gw_port)
    poll(lambda: env.get("/ready").status == 200, 10, what="the upstream to answer through the gateway")
    return ports["a"]


def raw_response(text):
    """The x-respond header that makes the test upstream's /raw send text verbatim."""
    return {"x-respond": text.encode("latin-1").hex()}


def read_raw(c, timeout=5.0):
    """Every byte the peer sends until it closes or resets (or timeout)."""
    c.sock.settimeout(timeout)
    data = c.buf
    c.buf = b""
    try:
        while True:
            d = c.sock.recv(65536)
            if not d:
                break
            data += d
    except (socket.timeout, ConnectionResetError):
        pass
    return data


def upstream_view(r):
    """The /rawecho body: (head, body) of the request as the upstream received it."""
    head, _, body = r.body.partition(b"\r\n\r\n")
    return head.decode("latin-1").lower(), body


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_over(pid, seconds):
    """CPU seconds the process used during the next `seconds` of wall time."""
    c0 = cpu_seconds(pid)
    time.sleep(seconds)  # a measurement window, not a synchronisation
    return cpu_seconds(pid) - c0


@_test
def smuggling_connection_content_length(env):
    """A Connection field naming Content-Length does not unframe the body: the
    upstream gets the length, so the body is not read as a second request, and
    the next request on the pooled connection gets its own answer."""
    one_upstream(env)
    smuggled = b"GET /delay/400 HTTP/1.1\r\nHost: x\r\n\r\n"
    with Conn("127.0.0.1", env.gw_port, timeout=5) as c:
        r = c.request("POST", "/a", headers={"Connection": "Content-Length",
                                             "Content-Length": str(len(smuggled))}, body=smuggled)
        check(r.status == 200 and r.body == b"a /a\n", f"POST /a answered {r}")
    # One worker: this request goes out on the pooled connection /a used.
    r = env.get("/b", timeout=5)
    check(r.status == 200 and r.body == b"a /b\n", f"the next client got {r.body!r}: the body of /a "
          "was read by the upstream as a request of its own")

    with Conn("127.0.0.1", env.gw_port, timeout=5) as c:
        r = c.request("POST", "/rawecho", headers={"Connection": "content-length, x-drop",
                                                   "X-Drop": "1", "Content-Length": "5"}, body=b"hello")
        head, body = upstream_view(r)
        check(r.status == 200 and "\r\ncontent-length: 5" in head and body == b"hello",
              f"the upstream received {r.body!r}")
        check("x-drop" not in head, "a field named in Connection was forwarded")


@_test
def smuggling_response_connection_content_length(env):
    """The same on the response side: the client gets the length it needs to
    frame the body, and the connection stays usable."""
    one_upstream(env)
    with Conn("127.0.0.1", env.gw_port, timeout=5) as c:
        r = c.request("GET", "/raw", headers=raw_response(
            "HTTP/1.1 200 OK\r\nConnection: Content-Length\r\nContent-Length: 5\r\n\r\nhello"))
        check(r.status == 200 and r.header("content-length") == "5" and r.body == b"hello",
              f"response with 'Connection: Content-Length' relayed as {r}")
        r = c.request("GET", "/after")
        check(r.status == 200 and r.body == b"a /after\n", f"kept-alive connection then gave {r}")


@_test
def framing_one_content_length(env):
    """A list or a repetition of one Content-Length reaches the upstream as one
    value; a 204 carries no Content-Length."""
    one_upstream(env)
    for name, hdrs in (("list", [("Content-Length", "5, 5")]),
                       ("twice", [("Content-Length", "5"), ("Content-Length", "5")])):
        with Conn("127.0.0.1", env.gw_port, timeout=5) as c:
            r = c.request("POST", "/rawecho", headers=hdrs, body=b"hello")
            head, body = upstream_view(r)
            check(r.status == 200 and head.count("content-length") == 1 and
                  "\r\ncontent-length: 5\r" in head + "\r" and body == b"hello",
                  f"Content-Length {name} reached the upstream as {head!r}")
    with Conn("127.0.0.1", env.gw_port, timeout=5) as c:
        r = c.request("GET", "/raw", headers=raw_response(
            "HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nX-A: 1\r\n\r\n"))
        check(r.status == 204 and r.header("content-length") is None and r.header("x-a") == "1",
              f"204 relayed as {r.raw_head!r}")
        r = c.request("HEAD", "/raw", headers=raw_response(
            "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"))
        check(r.status == 200 and r.header("content-length") == "1234",
              f"a HEAD response lost its Content-Length: {r.raw_head!r}")


class UncleanUpstream:
    """An HTTP/1.1 upstream over raw sockets whose connections are numbered:
    every answer says its connection's number in x-conn. What it does after
    an answer depends on the path; the socket stays open in every case, so
    that only the gateway's reading of the answer decides whether the
    connection carries another request:
      /close-kept  "Connection: close", the socket left open
      /http10      an HTTP/1.0 answer without keep-alive, left open
      /junk-same   the answer and a stray response in one write
      /junk-later  the head, then (later) the body with a stray response
      /delay       a keep-alive answer after a second
      /slowbody    the head at once, the body a second later
      anything else: a plain keep-alive answer."""

    STRAY = b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nevil"

    def __init__(self, addr="127.0.0.3"):
        self.lsock = socket.socket()
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind((addr, free_port(addr)))
        self.lsock.listen(64)
        self.port = self.lsock.getsockname()[1]
        self.conns, self.lock, self.n, self.paths = [], threading.Lock(), 0, []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                s, _ = self.lsock.accept()
            except OSError:
                return
            with self.lock:
                self.n += 1
                self.conns.append(s)
                k = self.n
            threading.Thread(target=self._serve, args=(s, k), daemon=True).start()

    def _serve(self, s, k):
        buf = b""
        try:
            while True:
                while b"\r\n\r\n" not in buf:
                    d = s.recv(65536)
                    if not d:
                        return
                    buf += d
                head, buf = buf.split(b"\r\n\r\n", 1)
                path = head.split(b" ")[1].decode("latin-1")
                with self.lock:
                    self.paths.append(path)
                ok = f"HTTP/1.1 200 OK\r\nx-conn: {k}\r\n".encode()
                if path == "/close-kept":
                    s.sendall(ok + b"Connection: close\r\nContent-Length: 2\r\n\r\nok")
                elif path == "/http10":
                    s.sendall(f"HTTP/1.0 200 OK\r\nx-conn: {k}\r\nContent-Length: 2\r\n\r\nok".encode())
                elif path == "/junk-same":
                    s.sendall(ok + b"Content-Length: 2\r\n\r\nok" + self.STRAY)
                elif path == "/delay":
                    time.sleep(1.0)
                    s.sendall(ok + b"Content-Length: 2\r\n\r\nok")
                elif path == "/slowbody":
                    s.sendall(ok + b"Content-Length: 2\r\n\r\n")
                    time.sleep(1.0)
                    s.sendall(b"ok")
                elif path == "/junk-later":
                    s.sendall(ok + b"Content-Length: 2\r\n\r\n")
                    time.sleep(0.2)
                    s.sendall(b"ok" + self.STRAY)
                else:
                    body = f"conn {k}\n".encode()
                    s.sendall(ok + b"Content-Length: %d\r\n\r\n" % len(body) + body)
        except OSError:
            return

    def close(self):
        self.lsock.close()
        with self.lock:
            for s in self.conns:
                try:
                    s.close()
                except OSError:
                    pass


@_test
def upstream_connection_reuse_needs_a_clean_end(env):
    """An upstream connection goes back to the pool only when its answer ended
    cleanly: not after "Connection: close", nor after an HTTP/1.0 answer
    without keep-alive, nor when bytes came after the answer (with the head or
    with the body), as Envoy's codec closes it then (a stray response would
    be read as the answer to the next request). The next request goes on a
    new connection, and never gets the stray bytes."""
    up = UncleanUpstream()
    try:
        gw_port = free_port()
        parts = [appliance(env, workers=1), gateway(gw_port),
                 virtual_service("sec", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n"),
                 service_entry("sec", SVC, [{"address": "127.0.0.3", "port": up.port}])]
        env.start_gateway(env.write("isthmus.yaml", docs(*parts)), gw_port)
        poll(lambda: env.get("/ready").status == 200, 10, what="the upstream to answer through the gateway")
        with Conn("127.0.0.1", gw_port, timeout=5) as c:
            r = c.request("GET", "/a")
            r2 = c.request("GET", "/b")
            check(r.status == 200 and r2.header("x-conn") == r.header("x-conn"),
                  f"a clean keep-alive answer: the connection is not reused ({r.header('x-conn')}, "
                  f"then {r2.header('x-conn')})")
            for path in ("/close-kept", "/http10", "/junk-same", "/junk-later"):
                r = c.request("GET", path)
                check(r.status == 200 and r.body == b"ok", f"{path} answered {r.status} {r.body!r}")
                nxt = c.request("GET", "/next" + path)
                check(nxt.status == 200 and nxt.body != b"evil" and
                      nxt.header("x-conn") != r.header("x-conn"),
                      f"after {path} (upstream connection {r.header('x-conn')}) the next request went "
                      f"on connection {nxt.header('x-conn')} and got {nxt.body!r}: the connection was reused")
    finally:
        up.close()


@_test
def drain_closes_http1_connections(env):
    """A draining gateway (SIGTERM) ends each HTTP/1.1 connection after its
    response, as Envoy's connection manager, once draining, sends
    "connection: close" on HTTP/1: a request in flight whose answer has not
    started gets it; so does one that arrives on an idle keep-alive
    connection; a response whose head was out before the drain is followed by
    the connection's close at once, not after the idle timeout (30 s here)."""
    up = UncleanUpstream()
    try:
        gw_port = free_port()
        parts = [appliance(env, workers=1, timeouts={"idle": "30s", "drain": "20s"}), gateway(gw_port),
                 virtual_service("sec", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n"),
                 service_entry("sec", SVC, [{"address": "127.0.0.3", "port": up.port}])]
        env.start_gateway(env.write("isthmus.yaml", docs(*parts)), gw_port)
        poll(lambda: env.get("/ready").status == 200, 10, what="the upstream to answer through the gateway")
        idle = Conn("127.0.0.1", gw_port, timeout=5)
        busy = Conn("127.0.0.1", gw_port, timeout=5)
        late = Conn("127.0.0.1", gw_port, timeout=5)
        try:
            r = idle.request("GET", "/first")
            check(r.status == 200 and r.header("connection") is None, f"before the drain: {r.headers}")
            late.send(b"GET /slowbody HTTP/1.1\r\nHost: a\r\n\r\n")
            status, _, lh, _ = late.read_head()
            check(status == 200 and ("connection", "close") not in lh, f"/slowbody head before the drain: {lh}")
            busy.send(b"GET /delay HTTP/1.1\r\nHost: a\r\n\r\n")
            poll(lambda: "/delay" in up.paths, 5, what="/delay at the upstream")
            os.kill(env.gateway.pid, signal.SIGTERM)

            def unbound():
                try:
                    socket.create_connection(("127.0.0.1", gw_port), timeout=0.2).close()
                    return False
                except OSError:
                    return True
            poll(unbound, 2, what="the listener to close on SIGTERM")
            r = idle.request("GET", "/while-draining")
            check(r.status == 200 and r.header("connection") == "close",
                  f"a request on an idle keep-alive connection while draining: {r.status} {r.headers}")
            check(idle.closed_by_peer(2.0), "the idle connection stayed open after its answer while draining")
            r = busy.read_response("GET")
            check(r.status == 200 and r.header("connection") == "close",
                  f"a request in flight when the drain began: {r.status} {r.headers}")
            t0 = time.monotonic()
            body = late._read_exact(2)
            check(body == b"ok", f"/slowbody's body {body!r}")
            check(late.closed_by_peer(3.0),
                  f"a response whose head was out before the drain: its connection still open "
                  f"{time.monotonic() - t0:.1f} s after it ended (the idle timeout is 30 s)")
        finally:
            for c in (idle, busy, late):
                c.close()
    finally:
        up.close()


@_test
def http10_keep_alive_and_connect(env):
    """An HTTP/1.0 client that asks for keep-alive is told "connection:
    keep-alive" with its answer (it would close otherwise), as Envoy's
    connection manager writes it for HTTP/1.0, and the connection serves on;
    one that does not ask gets the close. An HTTP/1.1 CONNECT is refused
    501 (CONNECT is not supported) and never reaches the upstream."""
    one_upstream(env)
    with Conn("127.0.0.1", env.gw_port, timeout=5) as c:
        c.send(b"GET /one HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\n\r\n")
        r = c.read_response("GET")
        check(r.status == 200 and r.header("connection") == "keep-alive" and r.header("content-length"),
              f"HTTP/1.0 keep-alive answered {r.status} {r.headers}")
        c.send(b"GET /two HTTP/1.0\r\nHost: a\r\n\r\n")
        r = c.read_response("GET")
        check(r.status == 200 and r.body == b"a /two\n" and r.header("connection") != "keep-alive",
              f"the second HTTP/1.0 request on the kept connection: {r.status} {r.headers} {r.body!r}")
        check(c.closed_by_peer(2.0), "an HTTP/1.0 request without keep-alive left the connection open")
    # RFC 9110 7.8: a server MUST ignore an Upgrade in an HTTP/1.0 request;
    # the upstream gets a plain request (the field is hop-by-hop).
    with Conn("127.0.0.1", env.gw_port, timeout=5) as c:
        c.send(b"GET /rawecho HTTP/1.0\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
        r = c.read_response("GET")
        head, _ = upstream_view(r)
        check(r.status == 200 and "\r\nupgrade:" not in head,
              f"an HTTP/1.0 Upgrade reached the upstream as one: {r.status} {head!r}")
    with Conn("127.0.0.1", env.gw_port, timeout=5) as c:
        c.send(b"CONNECT 127.0.0.2:443 HTTP/1.1\r\nHost: 127.0.0.2:443\r\n\r\n")
        r = c.read_response("GET")
        check(r.status == 501, f"HTTP/1.1 CONNECT answered {r.status} {r.headers} {r.body!r}")


def plain_chunks(raw):
    """The data of a chunked body made of bare size lines (hex, no extension)
    and an empty trailer section; None when it is anything else."""
    data, pos = b"", 0
    while True:
        end = raw.find(b"\r\n", pos)
        size = raw[pos:end]
        if end < 0 or not size or any(ch not in b"0123456789abcdef" for ch in size):
            return None
        n = int(size, 16)
        if n == 0:
            return data if raw[end:] == b"\r\n\r\n" else None
        chunk = raw[end + 2:end + 2 + n]
        if len(chunk) != n or raw[end + 2 + n:end + 4 + n] != b"\r\n":
            return None
        data += chunk
        pos = end + 4 + n


@_test
def chunked_strict_and_rechunked(env):
    """Chunked request bodies: CRLF everywhere, extensions by the grammar and
    bounded, all else 400; what the upstream gets is re-chunked, without the
    extensions and trailers."""
    one_upstream(env)
    body = b'3;ext=1\r\nabc\r\n2; a = "q \\" s" ;b\r\nde\r\n0;last\r\nX-Trailer: t\r\n\r\n'
    with Conn("127.0.0.1", env.gw_port, timeout=5) as c:
        r = c.request("POST", "/rawecho", headers={"Transfer-Encoding": "chunked"}, body=body)
        head, got = upstream_view(r)
        check(r.status == 200 and plain_chunks(got) == b"abcde",
              f"the upstream received the chunked body as {got!r} ({r.status})")
        check(head.count("transfer-encoding: chunked") == 1 and "content-length" not in head,
              f"upstream head {head!r}")
        r = c.request("GET", "/after")
        check(r.status == 200, f"after a chunked body: {r}")
    bad = {
        "bare LF after the size": b"3\nabc\r\n0\r\n\r\n",
        "bare LF after the data": b"3\r\nabc\n0\r\n\r\n",
        "bare LF at the end": b"0\r\n\n",
        "empty extension": b"2;\r\nab\r\n0\r\n\r\n",
        "unterminated quote": b'2;a="b\r\nab\r\n0\r\n\r\n',
        "non-token extension": b"2;a@b\r\nab\r\n0\r\n\r\n",
        "4 KiB extension": b"2;" + b"e" * 4096 + b"\r\nab\r\n0\r\n\r\n",
        "smuggled after a bare LF": b"5\nhello\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
    }
    for name, b in bad.items():
        with Conn("127.0.0.1", env.gw_port, timeout=5) as c:
            c.send(b"POST /echo/count HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" + b)
            try:
                r = c.read_response()
            except (EOFError, ConnectionResetError):
                r = None
            check(r is not None and r.status == 400, f"{name}: answered {r}, want 400")


@_test
def chunked_body_limit_counts_data(env):
    """limits.maxRequestBodyBytes counts a chunked body's data, not its
    framing (RFC 9112 7.1): 1000 bytes in 2-byte chunks (3,500 bytes on the
    wire) pass a 1000-byte limit, sent with the head or after it, as the same
    body with a Content-Length does (they were 413); 1001 bytes are 413."""
    one_upstream(env, extra="  limits: {maxRequestBodyBytes: 1000}\n")

    def chunked(n):
        return b"2\r\nab\r\n" * (n // 2) + (b"1\r\na\r\n" if n % 2 else b"") + b"0\r\n\r\n"

    head = b"POST /echo/count HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    for n, want in ((1000, 200), (1001, 413)):
        for later in (False, True):
            with Conn("127.0.0.1", env.gw_port, timeout=5) as c:
                if later:
                    c.send(head)
                    time.sleep(0.05)  # the body in reads of its own, after the head's
                    c.send(chunked(n))
                else:
                    c.send(head + chunked(n))
                try:
                    r = c.read_response()
                except (EOFError, ConnectionResetError):
                    r = None
                check(r is not None and r.status == want,
                      f"{n} bytes chunked ({'after' if later else 'with'} the head): {r}, want {want}")


def check_lingering_close(connect):
    """An answer that ends the connection while the client still sends (413
    on a declared length over maxRequestBodyBytes 1000, the body coming) is
    followed by the connection's end, not a reset, the client's bytes read and
    dropped meanwhile; a client that sends on is cut off (after 1 MiB, or
    the lingering's 30 s). connect(): a new Conn to the gateway."""
    head = b"POST /echo/count HTTP/1.1\r\nHost: a\r\nContent-Length: 100000000\r\n\r\n"
    chunk = b"x" * 65536
    # The declared length refused with the head; a chunked body refused as
    # its data passes the limit, after the head.
    chunked = b"POST /echo/count HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
    for first, then in ((head + chunk, None), (chunked, b"1000\r\n" + b"x" * 4096 + b"\r\n")):
        with connect() as c:
            c.send(first)
            if then:
                time.sleep(0.05)  # the body in reads of its own, after the head's
                c.send(then)
            r = c.read_response()
            try:
                c.sock.sendall(then or chunk)  # more of the body after the answer: dropped
                end = c.buf or c.sock.recv(65536)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError) as e:
                end = f"a reset ({e})"
            what = "chunked" if then else "Content-Length"
            check(r.status == 413 and end == b"", f"{what}: answered {r.status}, then {end!r}: want 413, then the end")
    with connect() as c:
        c.send(head + chunk)
        r = c.read_response()
        t0, cut = time.monotonic(), None
        for _ in range(1000):  # about 10 s at most
            try:
                c.sock.sendall(chunk)
            except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
                cut = time.monotonic() - t0
                break
            time.sleep(0.01)
        check(r.status == 413 and cut is not None,
              f"a client sending on after its {r.status}: not cut off within {time.monotonic() - t0:.1f} s")


@_test
def lingering_close_after_early_answer(env):
    """check_lingering_close on plaintext, as nginx's lingering close and
    Envoy's delayed close: closing at once with unread bytes made the kernel
    reset the connection (the client saw a reset, not the end), and a reset
    can overtake the answer; no connection is left open after."""
    one_upstream(env, extra="  limits: {maxRequestBodyBytes: 1000}\n")
    check_lingering_close(lambda: Conn("127.0.0.1", env.gw_port, timeout=5))
    poll(lambda: json.loads(ctl_cmd(env.path("ctl.sock"), "show info json"))["connections_active"] == 0, 5,
         what="no connection left open")


@_test
def lingering_close_pipelined_after_close(env):
    """A client pipelining after a request that ends the connection
    (Connection: close) with a large answer: the gateway lingers (its FIN sent
    after the answer, the client's bytes read and dropped) rather than
    closing, so the client gets every byte of the answer, then the end. The
    pipelined bytes it had read, and those that came after, used to meet a
    closed socket, whose reset dropped what the kernel had not sent yet of the
    answer: the client got part of the body, then a reset."""
    size = 1500000
    one_upstream(env)
    info = lambda: json.loads(ctl_cmd(env.path("ctl.sock"), "show info json"))
    before = info()["requests"]
    next_req = b"GET /status/200 HTTP/1.1\r\nHost: a\r\n\r\n"
    with socket.create_connection(("127.0.0.1", env.gw_port), timeout=10) as c:
        c.sendall(f"GET /bytes/{size} HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".encode() + next_req)
        # Not reading for longer than the lingering's quiet second: the answer
        # waits in the kernel's buffers (the gateway lingers on while they hold
        # some), its exchange over.
        t0 = time.monotonic()
        poll(lambda: info()["requests"] > before, 5, what="the exchange over")
        time.sleep(max(0.0, 1.5 - (time.monotonic() - t0)))
        c.sendall(next_req)
        raw, end = read_to_end(c)
    head, _, body = raw.partition(b"\r\n\r\n")
    check(head.startswith(b"HTTP/1.1 200") and len(body) == size and end == "the end",
          f"{head[:12]!r}, {len(body)} of {size} body bytes, then {end}: want 200, all, then the end")
    poll(lambda: info()["connections_active"] == 0, 5, what="no connection left open")


@_test
def chunked_response_rechunked(env):
    """Chunked responses reach the client re-chunked (extensions and trailers
    dropped), bare for an HTTP/1.0 client; a malformed one is cut after its
    head."""
    one_upstream(env)
    resp = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;e=\"v\"\r\nabc\r\n0\r\nX-T: 1\r\n\r\n"
    with Conn("127.0.0.1", env.gw_port, timeout=5) as c:
        c.send(b"GET /raw HTTP/1.1\r\nHost: a\r\nConnection: close\r\nx-respond: " +
               resp.encode().hex().encode() + b"\r\n\r\n")
        raw = read_raw(c)
    head, _, body = raw.partition(b"\r\n\r\n")
    check(b"200 OK" in head and b"transfer-encoding: chunked" in head.lower(), f"head {head!r}")
    check(body == b"3\r\nabc\r\n0\r\n\r\n", f"the client got the chunked body as {body!r}")
    with Conn("127.0.0.1", env.gw_port, timeout=5) as c:
        c.send(b"GET /raw HTTP/1.0\r\nHost: a\r\nx-respond: " + resp.encode().hex().encode() + b"\r\n\r\n")
        raw = read_raw(c)
    head, _, body = raw.partition(b"\r\n\r\n")
    check(b"transfer-encoding" not in head.lower() and body == b"abc",
          f"an HTTP/1.0 client got {raw!r}")
    # A malformed chunked body is a cut after the head (it came in the head's
    # read here: the head goes first all the same, as Envoy streams it).
    with Conn("127.0.0.1", env.gw_port, timeout=5) as c:
        bad = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\r\n0\r\n\r\n"
        c.send(b"GET /raw HTTP/1.1\r\nHost: a\r\nx-respond: " + bad.encode().hex().encode() + b"\r\n\r\n")
        raw = read_raw(c)
    check(raw.startswith(b"HTTP/1.1 200 OK\r\n") and not raw.endswith(b"0\r\n\r\n"),
          f"a malformed chunked response was relayed as {raw!r}, want its head and a cut")


@_test
def host_with_bad_port(env):
    one_upstream(env)
    for host in ("a:80x", "a:80:90", "[::1", "[::1]x", ":80", "a:99999"):
        with Conn("127.0.0.1", env.gw_port, timeout=5) as c:
            c.send(f"GET / HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
            r = c.read_response()
            check(r.status == 400 and r.header("x-upstream") is None,
                  f"Host {host!r} answered {r.status} ({r.header('x-upstream') or 'isthmus'}), "
                  "want 400 from the gateway")
    check(env.get("/ok", host="a:8080").status == 200, "a good Host with a port was refused")


@_test
def truncated_response_ejects(env):
    """An upstream that closes in the middle of bodies is ejected by outlier
    detection (a reset after the head is a failure, as in Envoy)."""
    dr = (f"apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: od}}\n"
          f"spec:\n  host: {SVC}\n  trafficPolicy:\n    outlierDetection: {{consecutive5xxErrors: 3, "
          f"interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 100}}\n")
    port = one_upstream(env, dr=dr)
    key = f"{SVC}|127.0.0.2:{port}"
    cut = raw_response("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nabc")
    for i in range(3):
        with Conn("127.0.0.1", env.gw_port, timeout=5) as c:
            try:
                r = c.request("GET", "/raw", headers=cut)
                check(False, f"a truncated response came through whole: {r}")
            except (EOFError, ConnectionResetError):
                pass
    poll(lambda: endpoints_view(env)[key].get("ejected", "no") not in ("0", "no", "false"), 5,
         what="the endpoint that cut 3 responses short to be ejected")


def listen_queue(port):
    """Connections waiting in the accept queue of the listening socket on port."""
    out = subprocess.run(["ss", "-Hltn", f"sport = :{port}"], stdout=subprocess.PIPE, text=True,
                         timeout=10).stdout
    return sum(int(line.split()[1]) for line in out.splitlines() if line.strip())


def raise_nofile(n):
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < n:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(n, hard), hard))
    check(resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= n,
          f"this test needs {n} descriptors; the hard limit is {hard}")


def stalled_peers(env, stall):
    """1,100 connections whose peer stops reading (more than the 1,024 shared
    receive buffers of a worker): stall(sock) makes one. They must hold private
    memory only: the worker does not spin, and other clients are served. In a
    network namespace with small TCP buffers, so that the kernel cannot absorb
    what is sent and the test stays small in memory."""
    n = 1100
    raise_nofile(4 * n + 256)
    ns = make_netns(env, {"net.ipv4.tcp_wmem": "4096 16384 16384",
                          "net.ipv4.tcp_rmem": "4096 16384 16384"})
    with in_netns(env, ns):
        aport = free_port()
        one_upstream(env, extra=f"  admin:\n    address: 127.0.0.1:{aport}\n",
                     timeouts={"idle": "60s", "upstreamResponse": "60s"})
        worker = env.workers()[0]
        socks = []
        try:
            for i in range(n):
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.settimeout(5)
                s.connect(("127.0.0.1", env.gw_port))
                stall(s)
                socks.append(s)
            poll(lambda: metric(aport, "isthmus_connections_active") >= n, 30,
                 what=f"{n} stalled connections open")
            r = env.get("/fresh", timeout=10)
            check(r.status == 200 and r.body == b"a /fresh\n",
                  f"a new client beside the stalled ones got {r}")
            poll(lambda: metric(aport, "isthmus_send_parked_total") >= n // 2, 30,
                 what="the stalled sends to move to private memory")
            used = cpu_over(worker, 2.0)
            check(used < 1.0, f"the worker used {used:.2f} s of CPU in 2 s with only stalled peers")
            r = env.get("/fresh2", timeout=10)
            check(r.status == 200, f"a second new client got {r}")
        finally:
            for s in socks:
                s.close()


@_test
def slow_readers_hold_no_shared_buffer(env):
    """Clients that stop reading a large response."""
    stalled_peers(env, lambda s: s.sendall(b"GET /bytes/1000000 HTTP/1.1\r\nHost: a\r\n\r\n"))


def upload_until_full(s):
    """A large upload to an upstream that never reads it: 256 KiB of it, or
    as much as the socket takes without blocking."""
    # The client's own send buffer holds far more than the namespace's small
    # TCP buffers on the way (16 KiB each): the gateway always has more to
    # read. (1 MiB a connection cost 15 s of the kernel's time, for nothing.)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    s.sendall(b"POST /stall/60000 HTTP/1.1\r\nHost: a\r\nContent-Length: 1000000\r\n\r\n")
    s.setblocking(False)
    chunk = b"u" * 65536
    try:
        for _ in range(4):
            s.send(chunk)
    except BlockingIOError:
        pass
    s.setblocking(True)


@_test
def stalled_upstreams_hold_no_shared_buffer(env):
    """Uploads to an upstream that does not read them."""
    stalled_peers(env, upload_until_full)


@_test
def accept_backs_off_at_descriptor_limit(env):
    """A worker out of descriptors pauses accepting (no busy loop, one log line
    per episode) and accepts the waiting connections once descriptors free up."""
    aport = free_port()
    one_upstream(env, extra=f"  admin:\n    address: 127.0.0.1:{aport}\n")
    worker = env.workers()[0]
    soft, hard = resource.prlimit(worker, resource.RLIMIT_NOFILE)
    # Below the descriptors it holds: no new one can be made (an accept armed
    # before this may still take one connection, which then gets a 503).
    resource.prlimit(worker, resource.RLIMIT_NOFILE, (3, hard))
    conns = []
    try:
        for i in range(20):
            c = Conn("127.0.0.1", env.gw_port, timeout=15)
            c.send(b"GET /late HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            conns.append(c)
        poll(lambda: listen_queue(env.gw_port) >= 15, 10,
             what="the connections to wait in the listen queue")
        used = cpu_over(worker, 1.5)
        check(used < 0.5, f"the worker used {used:.2f} s of CPU in 1.5 s while out of descriptors")
        check(metric(aport, "isthmus_accept_errors_total") > 0, "no accept failure counted")
        check(env.log_count("pausing new connections") == 1,
              "the pause was not logged exactly once: " + str(env.log_count("pausing new connections")))
        resource.prlimit(worker, resource.RLIMIT_NOFILE, (soft, hard))
        ok = 0
        for i, c in enumerate(conns):
            r = c.read_response()
            check(r.status in (200, 503), f"waiting connection {i} got {r}")
            ok += r.status == 200
        check(ok >= 15, f"only {ok} of the 20 waiting connections were served once descriptors came back")
        poll(lambda: env.log_count("accepting again") == 1, 10, what="the end of the pause to be logged")
        r = env.get("/after")
        check(r.status == 200, f"after the descriptors came back: {r}")
    finally:
        for c in conns:
            c.close()


@_test
def accept_out_of_descriptors_frees_idle_upstreams(env):
    """A worker whose accept fails for want of descriptors closes its idle
    pooled upstream connections (ism_up_reclaim_idle), as an upstream
    connect that runs out does: their descriptors go to the clients waiting,
    who are served at once, where they waited in the listen queue until the
    pool's idle timeout (an hour) closed the connections, or, here, until
    the clients served first went idle for timeouts.idle (60 s)."""
    one_upstream(env, timeouts={"idle": "60s"})
    worker = env.workers()[0]

    def fds():
        return sorted(int(fd) for fd in os.listdir(f"/proc/{worker}/fd"))

    base = len(fds())
    # Ten upstream connections, left idle in the pool once their clients go.
    conns = [Conn("127.0.0.1", env.gw_port, timeout=15) for _ in range(10)]
    for c in conns:
        c.send(b"GET /delay/300 HTTP/1.1\r\nHost: a\r\n\r\n")
    for i, c in enumerate(conns):
        r = c.read_response()
        check(r.status == 200, f"request {i} to fill the pool: {r}")
    for c in conns:
        c.close()
    poll(lambda: len(fds()) <= base + 10, 10, what="the clients' descriptors closed, the pool's kept")
    soft, hard = resource.prlimit(worker, resource.RLIMIT_NOFILE)
    held = fds()
    # No descriptor above the highest it holds: the free ones below it
    # (holes) take as many clients, the next ones need the pool's.
    limit = held[-1] + 1
    holes = limit - len(held)
    resource.prlimit(worker, resource.RLIMIT_NOFILE, (limit, hard))
    clients = []
    try:
        for i in range(holes + 4):
            c = Conn("127.0.0.1", env.gw_port, timeout=20)
            c.send(b"GET /late HTTP/1.1\r\nHost: a\r\n\r\n")  # kept open
            clients.append(c)
        for i, c in enumerate(clients):
            try:
                r = c.read_response()
            except (OSError, EOFError) as e:
                r = repr(e)
            check(getattr(r, "status", None) == 200,
                  f"client {i} of {len(clients)} ({holes} free descriptors, 10 idle upstream "
                  f"connections): {r}")
    finally:
        resource.prlimit(worker, resource.RLIMIT_NOFILE, (soft, hard))
        for c in clients:
            c.close()


@_test
def upstream_descriptors_run_out(env):
    """A worker that runs out of descriptors for upstream connections (one
    HTTP/2 client's 60 streams at once, each needing its own HTTP/1.1
    upstream connection, room for about 30): the streams wait for a
    connection and are all served, none is charged to the endpoint (they were
    503 UF, failures of a healthy endpoint, with nothing logged); the warning
    says why; and the connections the burst left idle in the pool give their
    descriptors back to the clients that come next (they waited in the listen
    queue until the upstream closed its side)."""
    if not shutil.which("h2load"):
        raise Skip("h2load is not installed (Debian package nghttp2-client)")
    one_upstream(env, dr="apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: d}\n"
                    f"spec:\n  host: {SVC}\n  trafficPolicy:\n    connectionPool: {{tcp: {{connectTimeout: 10s}}}}\n")
    worker = env.workers()[0]
    soft, hard = resource.prlimit(worker, resource.RLIMIT_NOFILE)
    top = max(int(fd) for fd in os.listdir(f"/proc/{worker}/fd"))
    resource.prlimit(worker, resource.RLIMIT_NOFILE, (top + 30, hard))
    p = subprocess.run(["h2load", "-c", "1", "-m", "60", "-n", "60", f"http://127.0.0.1:{env.gw_port}/delay/300"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60, text=True)
    check("status codes: 60 2xx" in p.stdout, f"60 streams through a worker short of descriptors: {p.stdout[-600:]}")
    view = endpoints_view(env)
    check(all(v.get("failures", "0") == "0" for v in view.values()), f"the endpoint was charged: {view}")
    check(env.log_count("idle pooled connections closed") >= 1, "no warning of the shortage")
    out = []

    def one():
        try:
            out.append(env.get("/after", timeout=10).status)
        except Exception as e:  # reported by the check below
            out.append(repr(e))

    ts = [threading.Thread(target=one) for _ in range(20)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(15)
    check(out == [200] * 20, f"20 new clients after the burst: {out}")
    resource.prlimit(worker, resource.RLIMIT_NOFILE, (soft, hard))


def two_routes(env, mode=None):
    """/static (prefix) → upstream s, /hello (exact) → upstream h; pathNormalization mode."""
    ports = env.upstream(["127.0.0.2:0=s", "127.0.0.3:0=h"], name="sh")
    gw_port = free_port()
    extra = f"  pathNormalization: {{normalization: {mode}}}\n" if mode else ""
    routes = ("  - match: [{uri: {prefix: /static}}]\n"
              "    route: [{destination: {host: s.internal}}]\n"
              "  - match: [{uri: {exact: /hello}}]\n"
              "    route: [{destination: {host: h.internal}}]\n")
    conf = env.write("isthmus.yaml", docs(
        appliance(env, extra=extra), gateway(gw_port), virtual_service("sh", ["*"], routes),
        service_entry("s", "s.internal", [{"address": "127.0.0.2", "port": ports["s"]}]),
        service_entry("h", "h.internal", [{"address": "127.0.0.3", "port": ports["h"]}])))
    env.start_gateway(conf, gw_port)
    poll(lambda: env.get("/hello").status == 200, 10, what="/hello through the gateway")


def path_answer(env, path):
    """(status, the upstream that answered and the path it saw) for a raw request target."""
    with Conn("127.0.0.1", env.gw_port, timeout=5) as c:
        c.send(f"GET {path} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
        r = c.read_response()
    return r.status, r.body.decode("latin-1").strip() if r.header("x-upstream") else None


@_test
def path_normalized_before_routing(env):
    """Istio's default pathNormalization (BASE): dot segments, unreserved escapes
    and backslashes are normalised before routing, and the upstream gets the
    normalised path; %00 and broken escapes are 400."""
    two_routes(env)
    cases = {
        "/static/../admin": (404, None),  # CVE-2021-31920: not the /static route
        "/static/%2e%2e/admin": (404, None),
        "/x/../hello": (200, "h /hello"),
        "/./hello": (200, "h /hello"),
        "/%68ello": (200, "h /hello"),
        "/%68ello?q=%2e%2e": (200, "h /hello?q=%2e%2e"),  # the query is left alone
        "/static/./a/../b": (200, "s /static/b"),
        "\\static\\x": (400, None),  # not origin-form on the wire: the parser refuses it
        "/static\\x": (200, "s /static/x"),
        "//hello": (404, None),  # BASE does not merge slashes
        "/%00": (400, None),
        "/a%zz": (400, None),
        "/a%4": (400, None),
    }
    for path, want in cases.items():
        got = path_answer(env, path)
        check(got == want, f"{path!r}: got {got}, want {want}")
    out = ctl_cmd(env.path("ctl.sock"), "explain GET /x/../hello")
    check("path: /x/../hello normalised to /hello" in out and "destination: outbound|80||h.internal" in out,
          f"explain does not normalise: {out}")
    out = ctl_cmd(env.path("ctl.sock"), "explain GET /a%00")
    check("answer is 400" in out, f"explain of a refused path: {out}")


@_test
def path_normalization_modes(env):
    two_routes(env, "MERGE_SLASHES")
    check(path_answer(env, "//hello") == (200, "h /hello"), "MERGE_SLASHES: //hello")
    check(path_answer(env, "/static%2F..%2Fhello") == (200, "s /static%2F..%2Fhello"),
          "MERGE_SLASHES decoded %2F")
    env.close()
    env.procs = []
    two_routes(env, "DECODE_AND_MERGE_SLASHES")
    check(path_answer(env, "/static%2F..%2Fhello") == (200, "h /hello"),
          f"DECODE_AND_MERGE_SLASHES: {path_answer(env, '/static%2F..%2Fhello')}")
    env.close()
    env.procs = []
    two_routes(env, "NONE")
    check(path_answer(env, "/x/../hello") == (404, None), "NONE normalised /x/../hello")
    check(path_answer(env, "/static/../hello") == (200, "s /static/../hello"),
          "NONE did not forward the path as received")
    bad = env.write("bad.yaml", docs(appliance(env, extra="  pathNormalization: {normalization: BOGUS}\n"),
                                     gateway(free_port())))
    rc, out = env.check_config(bad)
    check(rc != 0 and re.search(r"bad\.yaml:\d+:\d+: .*spec\.pathNormalization\.normalization: "
                                r"unknown value \"BOGUS\"", out), f"isthmus -c said: {out}")


@_test
def regex_bounded(env):
    """A route regex that PCRE2 would backtrack on for ages (RE2 runs it in linear
    time) costs the worker a bounded time: the request is answered 500, visibly,
    instead of stalling the worker or skipping to the next route; a regex RE2
    refuses is refused at load."""
    ports = env.upstream(["127.0.0.2:0=a"], name="a")
    gw_port, aport = free_port(), free_port()
    routes = ("  - match: [{uri: {regex: \"/(a|aa)+\"}}]\n"
              f"    route: [{{destination: {{host: {SVC}}}}}]\n"
              "  - match: [{headers: {x-id: {regex: \"(x|xx)+\"}}}]\n"
              f"    route: [{{destination: {{host: {SVC}}}}}]\n"
              "  - route: [{destination: {host: " + SVC + "}}]\n")
    conf = env.write("isthmus.yaml", docs(
        appliance(env, workers=1, extra=f"  admin:\n    address: 127.0.0.1:{aport}\n"),
        gateway(gw_port), virtual_service("re", ["*"], routes),
        service_entry("sec", SVC, [{"address": "127.0.0.2", "port": ports["a"]}])))
    env.start_gateway(conf, gw_port)
    check(env.get("/aaaa").status == 200, "the regex route does not match /aaaa")
    worker = env.workers()[0]
    c0 = cpu_seconds(worker)
    n = 100
    with Conn("127.0.0.1", env.gw_port, timeout=30) as c:
        for i in range(n):
            r = c.request("GET", "/" + "a" * 30 + "b")
            check(r.status == 500 and r.header("x-upstream") is None,
                  f"the pathological path was answered {r.status} ({r.body!r}), not 500")
            r = c.request("GET", "/x", headers={"x-id": "x" * 4000 + "y"})
            check(r.status == 500, f"the pathological header was answered {r.status}")
    used = cpu_seconds(worker) - c0
    check(used < 2.0, f"{2 * n} pathological requests cost the worker {used:.2f} s of CPU")
    check(metric(aport, "isthmus_route_regex_limit_total") == 2 * n, "limit hits not counted")
    check(env.get("/x").status == 200, "a plain request after them failed")
    out = ctl_cmd(env.path("ctl.sock"), "explain GET /" + "a" * 30 + "b")
    check("match limit: the answer is 500" in out, f"explain of the pathological path: {out}")

    bad = env.write("bad.yaml", docs(appliance(env), gateway(free_port()), virtual_service(
        "re", ["*"], "  - match: [{uri: {regex: \"/(a)\\\\1\"}}]\n"
                     f"    route: [{{destination: {{host: {SVC}}}}}]\n"),
        service_entry("sec", SVC, [{"address": "127.0.0.2", "port": ports["a"]}])))
    rc, out = env.check_config(bad)
    check(rc != 0 and re.search(r"bad\.yaml:\d+:\d+: .*uri\.regex: regular expression refused at "
                                r"offset 4: back-reference", out), f"isthmus -c said: {out}")


@_test
def trickled_head_parsed_once(env):
    """A head is parsed again only when a line end came (it was parsed from
    its start at every receive, a cost that grew with the square of its
    size): one that comes a few bytes at a time, lines split anywhere, its
    last CRLF in two sends, is still taken whole (every field reaches the
    upstream), and a trickled line that grows past maxRequestHeaderBytes
    without a line end is still refused (431)."""
    one_upstream(env, extra="  limits: {maxRequestHeaderBytes: 65536}\n")
    fields = "".join(f"x-f{i}: {'v' * 30}{i}\r\n" for i in range(60))
    head = f"GET /headers HTTP/1.1\r\nHost: t\r\n{fields}".encode()
    with socket.create_connection(("127.0.0.1", env.gw_port), timeout=10) as c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(0, len(head), 7):
            c.sendall(head[i:i + 7])
        c.sendall(b"\r")
        c.sendall(b"\n")
        got = b""
        while b"x-f59" not in got:
            d = c.recv(65536)
            if not d:
                break
            got += d
    check(got.startswith(b"HTTP/1.1 200 ") and all(f"x-f{i}: ".encode() in got for i in range(60)),
          f"the trickled head: {got[:300]!r}")
    with socket.create_connection(("127.0.0.1", env.gw_port), timeout=10) as c:
        c.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        c.sendall(b"GET / HTTP/1.1\r\nHost: t\r\nx-long: ")
        long_line = b"a" * 70000
        try:
            for i in range(0, len(long_line), 4096):
                c.sendall(long_line[i:i + 4096])
        except OSError:
            pass  # refused and closed while sending
        got = c.recv(4096)
    check(got.startswith(b"HTTP/1.1 431 "), f"a trickled line past the head's bound: {got[:200]!r}")



def _voluntary_switches(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("voluntary_ctxt_switches:"):
                return int(line.split()[1])
    raise OSError(f"no voluntary_ctxt_switches for {pid}")


@_test
def worker_eventfd_storm_paced(env):
    """A worker (a compromised one, stood in for here by the test taking its
    descriptor with pidfd_getfd) that writes the master's eventfd in a loop
    wakes the master at most once each 10 ms: it woke for every write,
    costing the root master a CPU's quarter or more and the control socket
    its latency. Counted by the master's voluntary context switches during
    1.5 s of writes (each turn of its loop sleeps in poll once); a busy
    machine only makes fewer. The control socket answers meanwhile."""
    one_upstream(env, workers=1)
    w = poll(lambda: env.workers() or None, 10, what="the worker")[0]
    fds = [int(n) for n in os.listdir(f"/proc/{w}/fd")
           if os.readlink(f"/proc/{w}/fd/{n}") == "anon_inode:[eventfd]"]
    check(len(fds) == 1, f"the worker's eventfds: {fds}")
    libc = ctypes.CDLL(None, use_errno=True)
    pidfd = os.pidfd_open(w)
    try:
        efd = libc.syscall(438, pidfd, fds[0], 0)  # pidfd_getfd
        if efd < 0:
            raise Skip(f"pidfd_getfd: {os.strerror(ctypes.get_errno())}")
    finally:
        os.close(pidfd)
    master = env.gateway.pid
    one = (1).to_bytes(8, "little")
    stop = threading.Event()
    writes = [0]

    def storm():
        end = time.monotonic() + 1.5
        while not stop.is_set() and time.monotonic() < end:
            for _ in range(200):
                os.write(efd, one)
            writes[0] += 200

    try:
        s0 = _voluntary_switches(master)
        t0 = time.monotonic()
        th = threading.Thread(target=storm)
        th.start()
        info = ctl_cmd(env.path("ctl.sock"), "show info")
        th.join(timeout=30)
        wall = time.monotonic() - t0
        woke = _voluntary_switches(master) - s0
    finally:
        stop.set()
        os.close(efd)
    check("generation" in info, f"show info during the storm: {info[:200]!r}")
    # 100 turns a second for the eventfd, and a margin for the control
    # socket, the health checks and the housekeeping.
    check(writes[0] > 1000 and woke <= 100 * wall + 150,
          f"the master turned {woke} times in {wall:.2f} s of {writes[0]} eventfd writes")
