# SPDX-License-Identifier: Apache-2.0
"""Integration tests of multishot receives (issue 11): HTTP/1.1 client sessions
and upstream connections keep one receive armed across requests, in plaintext
and under TLS. What it brings while the session or connection has not asked for
more (a pipelined request while a response is in progress, a flood from a
client whose first response is slow, the client's end) is held, bounded (as
bytes, or as ciphertext in the TLS session): the client is stopped, not
buffered without limit, and nothing is lost, reordered or counted twice. Each
client-side test runs over plaintext and over TLS (an HTTPS server beside the
plaintext one).

Also the worker's registered descriptors: every client and upstream socket is
in its ring's table at the index of its descriptor number while it is open,
and out of it once closed (the kernel lists the table in the ring's fdinfo).

One worker, so that the worker's memory and the upstream pool are the ones the
test looks at. Registered into run.py's list by register(test)."""

import json
import os
import re
import select
import socket
import ssl
import subprocess
import threading
import time

from harness import (Conn, Registry, Skip, build_request, check, ctl_cmd, docs, free_port, gateway, have, metric,
                     poll, read_head, service_entry, virtual_service, vmrss_kib, appliance)
from test_tls import Pki, gateway_of, server, tls_simple

_test = Registry()
register = _test.register

HOST = "ms.test.internal"


TLS_NAME = "ms.example.com"


def start(env, addr, port, admin=None, extra=""):
    """The gateway (one worker) routing everything to addr:port: plaintext HTTP
    on env.gw_port and HTTPS (certificate for TLS_NAME, its CA as env.ms_ca)
    on env.tls_port; extra: more lines of the Appliance's spec. Returns the
    worker's pid."""
    gw, tls = free_port(), free_port()
    pki = Pki(env)
    crt = pki.leaf("gw", [f"DNS:{TLS_NAME}"])
    env.ms_ca, env.tls_port = pki.ca(), tls
    extra += f"  admin:\n    address: 127.0.0.1:{admin}\n" if admin else ""
    conf = docs(appliance(env, workers=1, timeouts={"upstreamResponse": "10s", "idle": "10s"}, extra=extra),
                gateway_of(server(gw, ["*"], None, protocol="HTTP"), server(tls, ["*"], tls_simple(crt))),
                virtual_service("ms", ["*"], f"  - route: [{{destination: {{host: {HOST}, port: {{number: 80}}}}}}]\n"),
                service_entry("ms", HOST, [{"address": addr, "port": port}]))
    env.start_gateway(env.write("isthmus.yaml", conf), gw)
    poll(lambda: env.get("/ready").status == 200, 10, interval=0.1, what="the gateway to serve")
    check(len(env.workers()) == 1, f"want one worker, have {env.workers()}")
    return env.workers()[0]


def tls_context(env):
    ctx = ssl.create_default_context(cafile=env.ms_ca)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


class TlsConn(Conn):
    """Conn over TLS to the HTTPS server of start()."""

    def __init__(self, env, timeout=10.0):
        super().__init__("127.0.0.1", env.tls_port, timeout)
        self.sock = tls_context(env).wrap_socket(self.sock, server_hostname=TLS_NAME)


def client(env, tls, timeout=10.0):
    """A raw HTTP/1.1 connection to the gateway, over TLS or not."""
    return TlsConn(env, timeout) if tls else Conn("127.0.0.1", env.gw_port, timeout)


def both(fn):
    """Registers fn(env, tls) twice: NAME (plaintext) and NAME_tls."""
    def plain(env):
        return fn(env, False)

    def over_tls(env):
        return fn(env, True)

    plain.__name__, plain.__doc__ = fn.__name__, fn.__doc__
    over_tls.__name__, over_tls.__doc__ = fn.__name__ + "_tls", (fn.__doc__ or "") + " (over TLS)"
    _test(plain)
    _test(over_tls)
    return fn


def test_upstream(env):
    port = env.upstream(["127.0.0.2:0=ms"], name="ms")["ms"]
    return "127.0.0.2", port


def served(r, path):
    return r.status == 200 and r.body == f"ms {path}\n".encode()


@both
def mshot_pipeline_while_delayed(env, tls):
    """Far more pipelined requests than the hold's bound, sent while the first
    response is delayed: every one answered, in order, on the one connection."""
    start(env, *test_upstream(env))
    n = 3000
    reqs = b"".join(build_request("GET", f"/p{i}") for i in range(n))
    check(len(reqs) > 4 * 16384, f"only {len(reqs)} bytes of pipelined requests")
    with client(env, tls, timeout=20) as c:
        c.send(build_request("GET", "/delay/500") + reqs)
        r = c.read_response()
        check(served(r, "/delay/500"), f"the delayed response: {r}")
        for i in range(n):
            r = c.read_response()
            check(served(r, f"/p{i}"), f"pipelined response {i}: {r}")
        check(not c.closed_by_peer(0.3), "the connection closed after the pipeline")
        r = c.request("GET", "/after")
        check(served(r, "/after"), f"a request after the pipeline: {r}")


@both
def mshot_flood_bounded(env, tls):
    """A client that sends far more than the hold's bound while its first
    response is delayed is stopped (TCP pushes back once the receive is
    cancelled): the worker's memory does not grow with what it sends, the
    delayed response still comes, and other connections are served
    meanwhile."""
    wpid = start(env, *test_upstream(env))
    for i in range(20):
        check(env.get(f"/warm{i}").status == 200, "warm-up request failed")
    rss0 = vmrss_kib(wpid)
    total = 256 << 20
    sent = [0]
    peak = [rss0]
    s = client(env, tls).sock
    s.sendall(build_request("GET", "/delay/2000"))
    s.setblocking(False)

    def flood():
        chunk = b"X" * 16384
        deadline = time.monotonic() + 2.5
        while sent[0] < total and time.monotonic() < deadline:
            try:
                sent[0] += s.send(chunk)
            except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                time.sleep(0.005)
            except OSError:  # the 400 for the garbage, once the delayed response is out
                break

    t = threading.Thread(target=flood, daemon=True)
    t.start()
    others = 0
    while t.is_alive():
        r = env.get(f"/other{others}", timeout=5)
        check(served(r, f"/other{others}"), f"another connection during the flood: {r}")
        others += 1
        peak[0] = max(peak[0], vmrss_kib(wpid))
        time.sleep(0.05)
    t.join()
    peak[0] = max(peak[0], vmrss_kib(wpid))
    check(others >= 5, f"only {others} requests served on other connections during the flood")
    # What the kernel buffers on both sides of loopback (tens of MiB at most)
    # plus what the worker held before it stopped reading: not 256 MiB.
    check(sent[0] < 96 << 20, f"the client sent {sent[0] >> 20} MiB unread: it was not stopped")
    grew = peak[0] - rss0
    check(grew < 48 * 1024, f"the worker grew by {grew} KiB while the client sent {sent[0] >> 20} MiB")
    s.settimeout(10)
    got = b""
    while b"ms /delay/2000\n" not in got:
        d = s.recv(65536)
        check(d, f"the connection closed before the delayed response: {got[:200]!r}")
        got += d
    check(got.startswith(b"HTTP/1.1 200"), f"the delayed response: {got[:200]!r}")
    s.close()
    r = env.get("/last")
    check(served(r, "/last"), f"after the flood: {r}")


@both
def mshot_metrics_count(env, tls):
    """Bytes and requests are counted once each, whether a request was read at
    once or held first (pipelined behind a delayed one)."""
    aport = free_port()
    start(env, *test_upstream(env), admin=aport)
    # Accepted (and the TLS handshake done, whose ClientHello counts as
    # received before TLS is known) before the counters are read.
    acc0, hs0 = metric(aport, "isthmus_connections_accepted_total"), metric(aport, "isthmus_tls_handshakes_total")
    c = client(env, tls)
    poll(lambda: metric(aport, "isthmus_connections_accepted_total") > acc0 and
         (not tls or metric(aport, "isthmus_tls_handshakes_total") > hs0), 5,
         what="the gateway to accept the connection (and end its handshake)")
    req0 = metric(aport, "isthmus_requests_total")
    in0 = metric(aport, "isthmus_received_bytes_total")
    sent = 0
    with c:
        for i in range(10):
            req = build_request("GET", f"/k{i}")
            c.send(req)
            sent += len(req)
            check(served(c.read_response(), f"/k{i}"), f"keep-alive request {i}")
        pipe = build_request("GET", "/delay/300") + b"".join(build_request("GET", f"/q{i}") for i in range(600))
        c.send(pipe)
        sent += len(pipe)
        check(served(c.read_response(), "/delay/300"), "the delayed request")
        for i in range(600):
            check(served(c.read_response(), f"/q{i}"), f"pipelined request {i}")
    poll(lambda: metric(aport, "isthmus_requests_total") - req0 >= 611, 5, what="611 requests counted")
    time.sleep(0.2)  # an observation window: a request counted twice would show by now
    check(metric(aport, "isthmus_requests_total") - req0 == 611,
          f"{metric(aport, 'isthmus_requests_total') - req0} requests counted, want 611")
    got = metric(aport, "isthmus_received_bytes_total") - in0
    check(got == sent, f"{got} bytes counted as received, the client sent {sent}")


class HalfClosing:
    """An HTTP/1.1 client that sends its request and then ends its side of the
    TCP connection (shutdown SHUT_WR), still reading; under TLS over memory
    BIOs, so that the TLS session outlives the end of what it sends (the TCP end
    comes without a close_notify, as from a client whose process went)."""

    def __init__(self, env, tls):
        self.sock = socket.create_connection(("127.0.0.1", env.gw_port if not tls else env.tls_port), timeout=10)
        self.tls = None
        if tls:
            self.inb, self.outb = ssl.MemoryBIO(), ssl.MemoryBIO()
            self.tls = tls_context(env).wrap_bio(self.inb, self.outb, server_hostname=TLS_NAME)
            self._step(self.tls.do_handshake)

    def _flush(self):
        data = self.outb.read()
        if data:
            self.sock.sendall(data)

    def _step(self, op, *a):
        """op, pumping the socket until the TLS session can do it."""
        while True:
            try:
                r = op(*a)
                self._flush()
                return r
            except ssl.SSLWantReadError:
                self._flush()
                d = self.sock.recv(65536)
                check(d, "the gateway closed during the handshake")
                self.inb.write(d)

    def send_and_end(self, data):
        if self.tls:
            self._step(self.tls.write, data)
        else:
            self.sock.sendall(data)
        self.sock.shutdown(socket.SHUT_WR)

    def read_all(self, timeout):
        """What comes until the gateway closes, and whether it did within timeout."""
        got, deadline = b"", time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))[0]:
                break
            try:
                d = self.sock.recv(65536)
            except ConnectionResetError:
                return got, True
            if not d:
                return got, True
            if not self.tls:
                got += d
                continue
            self.inb.write(d)
            while True:
                try:
                    d = self.tls.read(65536)
                except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                    break
                if not d:  # close_notify
                    break
                got += d
        return got, False

    def close(self):
        self.sock.close()


@both
def mshot_end_after_request(env, tls):
    """A client that ends its side of the connection (a FIN) right after a
    request whose response is delayed ends the exchange, as Envoy's connection
    manager takes a FIN (no half close on HTTP connections): the gateway closes
    at once, with no response, where it held the connection (and the upstream
    request) for the response; then it serves the next client."""
    start(env, *test_upstream(env))
    c = HalfClosing(env, tls)
    env.cleanups.append(c.close)
    c.send_and_end(build_request("GET", "/delay/3000"))
    got, closed = c.read_all(10)
    check(closed and b"HTTP/1.1" not in got, f"after the client's end: closed {closed}, {got[:300]!r}")
    r = env.get("/after")
    check(served(r, "/after"), f"the next request: {r}")


@both
def recv_buffers_run_out(env, tls):
    """With 16 receive buffers (limits.receiveBuffersPerWorker), h2load posting
    256 KiB bodies on 64 HTTP/2 connections makes receives find the ring empty
    and wait for buffers (isthmus_receive_buffer_waits_total): every request
    still succeeds, and HTTP/1.1 clients posting at the same time get their
    bodies back whole, byte for byte; nothing stalls."""
    if not have("h2load"):
        raise Skip("h2load is not installed (Debian package nghttp2-client)")
    aport = free_port()
    start(env, *test_upstream(env), admin=aport, extra="  limits: {receiveBuffersPerWorker: 16}\n")
    waits0 = metric(aport, "isthmus_receive_buffer_waits_total")
    body_file = env.path("body.bin")
    with open(body_file, "wb") as f:
        f.write(os.urandom(256 << 10))
    url = f"https://127.0.0.1:{env.tls_port}/echo" if tls else f"http://127.0.0.1:{env.gw_port}/echo"
    load = subprocess.Popen(["h2load", "-c", "64", "-n", "1500", "-d", body_file, url],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    env.cleanups.append(lambda: load.poll() is None and load.kill())
    errors = []

    def one(i):
        # A connection each: a response that starts before its request's
        # body is all read ends its connection (docs/http.md).
        for j in range(4):
            body = os.urandom(256 << 10)
            try:
                with client(env, tls, timeout=30) as c:
                    r = c.request("POST", "/echo", body=body)
            except (OSError, EOFError) as e:
                errors.append(f"client {i} request {j}: {e!r}")
                continue
            if r.status != 200 or r.body != body:
                errors.append(f"client {i} request {j}: {r.status}, {len(r.body)} bytes back")

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(90)
    try:
        out = load.communicate(timeout=90)[0].decode(errors="replace")
    except subprocess.TimeoutExpired:
        load.kill()
        check(False, "h2load still running after 90 s: a stall")
    check(not any(t.is_alive() for t in threads), "HTTP/1.1 clients still running after 90 s: a stall")
    check(not errors, f"{len(errors)} HTTP/1.1 failures, first: {errors[:3]}")
    check("1500 succeeded, 0 failed, 0 errored, 0 timeout" in out and "1500 2xx" in out,
          f"h2load: {out[-600:]}")
    waits = metric(aport, "isthmus_receive_buffer_waits_total") - waits0
    check(waits > 0, "no receive waited for a buffer: the ring never ran out")
    r = env.get("/after")
    check(served(r, "/after"), f"after the burst: {r}")


@_test
def recv_buffers_config(env):
    """limits.receiveBuffersPerWorker: a power of two 16..32768; another value
    is refused with its position; show info says what the workers use, and a
    reload that changes it replaces the worker."""
    for bad, want in (("100", "must be a power of two"), ("8", "between 16 and 32768"),
                      ("65536", "between 16 and 32768")):
        conf = docs(appliance(env, workers=1, extra=f"  limits:\n    receiveBuffersPerWorker: {bad}\n"),
                    gateway(free_port()))
        path = env.write("bad.yaml", conf)
        rc, out = env.check_config(path)
        check(rc != 0 and want in out and "spec.limits.receiveBuffersPerWorker" in out
              and f"{path}:" in out, f"receiveBuffersPerWorker {bad}: rc {rc}, {out!r}")
    old = start(env, *test_upstream(env), extra="  limits: {receiveBuffersPerWorker: 64}\n")
    sock = env.path("ctl.sock")
    info = json.loads(ctl_cmd(sock, "show info json"))
    check(info.get("receive_buffers_per_worker") == 64, f"show info: {info}")
    # A reload that changes it starts a new worker, sized by the new value.
    conf = env.path("isthmus.yaml")
    with open(conf) as f:
        text = f.read()
    with open(conf, "w") as f:
        f.write(text.replace("receiveBuffersPerWorker: 64}", "receiveBuffersPerWorker: 128}"))
    ans = ctl_cmd(sock, "reload")
    check("published" in ans, f"reload: {ans!r}")
    poll(lambda: env.workers() and old not in env.workers(), 15, what="a new worker in place of the old")
    info = json.loads(ctl_cmd(sock, "show info json"))
    check(info.get("receive_buffers_per_worker") == 128, f"show info after the reload: {info}")
    poll(lambda: served(env.get("/new"), "/new"), 10, what="the new worker to serve")


def stray_upstream(conns, stop, answers, strays):
    """An HTTP/1.1 upstream that answers each request, then sends one stray
    byte 200 ms later on the connection, which it keeps open (appending the
    connection to answers, then to strays)."""
    ls = socket.socket()
    ls.bind(("127.0.0.5", 0))
    ls.listen(16)
    ls.settimeout(0.2)

    def serve(c):
        buf = b""
        try:
            while not stop.is_set():
                head, buf = read_head(c, buf)
                if head is None:
                    return
                answers.append(c)  # before the answer, which ends the client's wait
                c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\nok\n")
                time.sleep(0.2)  # the answer's connection is idle in the pool by then
                c.sendall(b"X")
                strays.append(c)
        except OSError:
            pass
        finally:
            c.close()

    def accept():
        while not stop.is_set():
            try:
                c, _ = ls.accept()
            except socket.timeout:
                continue
            conns.append(c)
            threading.Thread(target=serve, args=(c,), daemon=True).start()
        ls.close()

    threading.Thread(target=accept, daemon=True).start()
    return ls.getsockname()[1]


@_test
def mshot_pool_drops_stray_bytes(env):
    """A byte from the upstream on an idle pooled connection (its receive stays
    armed in the pool) makes the pool drop it: the next request goes on a new
    connection and gets a clean answer, never the stray byte."""
    conns, stop, answers, strays = [], threading.Event(), [], []
    env.cleanups.append(stop.set)
    port = stray_upstream(conns, stop, answers, strays)
    start(env, "127.0.0.5", port)
    poll(lambda: len(strays) == len(answers), 5, what="the stray bytes after the readiness probes' answers")
    before, sent = len(conns), len(strays)
    for i in range(3):
        # On loopback the byte is in the pooled connection's socket when
        # sendall returns: the worker's receive completes before the request.
        poll(lambda: len(strays) >= sent + i, 5, what=f"the stray byte after answer {i - 1}")
        r = env.get(f"/s{i}")
        check(r.status == 200 and r.body == b"ok\n", f"request {i} after a stray byte: {r}")
    check(len(conns) - before == 3, f"{len(conns) - before} upstream connections for 3 requests, want a new one each")


def ring_files(pid):
    """The worker's registered descriptors, {index: "socket:[inode]"}, as the
    fdinfo of its io_uring lists them."""
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") != "anon_inode:[io_uring]":
                continue
            with open(f"/proc/{pid}/fdinfo/{fd}") as f:
                text = f.read()
        except OSError:
            continue
        check("UserFiles:" in text, f"the ring's fdinfo lists no registered files:\n{text}")
        table = text.split("UserFiles:", 1)[1].split("UserBufs:", 1)[0]
        return {int(m.group(1)): m.group(2).strip()
                for m in re.finditer(r"^\s+(\d+): (.*)$", table, re.M)}
    check(False, f"worker {pid} has no io_uring")


def open_sockets(pid):
    """The worker's socket descriptors, {fd: "socket:[inode]"}."""
    out = {}
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:"):
            out[int(fd)] = link
    return out


def stale_entries(pid):
    """Registered entries that are not the worker's open socket of that
    number: a closed socket still held by the ring, or an old file at a
    reused number."""
    files, socks = ring_files(pid), open_sockets(pid)
    return {i: f for i, f in files.items() if socks.get(i) != f}


@_test
def fixed_files_follow_sockets(env):
    """Sockets are registered at their descriptor number while open and taken
    out as they close: with 40 keep-alive clients each client socket and at
    least one upstream socket is in the table; once the clients close, their
    entries go and no entry names a socket the worker closed."""
    wpid = start(env, *test_upstream(env))
    conns = [Conn("127.0.0.1", env.gw_port, timeout=10) for _ in range(40)]
    try:
        for i, c in enumerate(conns):
            r = c.request("GET", f"/c{i}")
            check(served(r, f"/c{i}"), f"request {i}: {r}")
        files = ring_files(wpid)
        socks = open_sockets(wpid)
        registered = {i for i, f in files.items() if socks.get(i) == f}
        check(len(registered) >= 41,
              f"{len(registered)} of the worker's {len(socks)} sockets registered with 40 clients open")
        check(not stale_entries(wpid), f"stale entries: {stale_entries(wpid)}")
    finally:
        for c in conns:
            c.close()
    poll(lambda: len(ring_files(wpid)) < 40 and not stale_entries(wpid), 10, interval=0.1,
         what="the closed clients' entries to leave the table")
    # The table follows descriptor numbers as they are reused.
    for round_ in range(3):
        cs = [Conn("127.0.0.1", env.gw_port, timeout=10) for _ in range(20)]
        for i, c in enumerate(cs):
            r = c.request("GET", f"/r{round_}-{i}")
            check(served(r, f"/r{round_}-{i}"), f"round {round_} request {i}: {r}")
        check(not stale_entries(wpid), f"round {round_}: stale entries {stale_entries(wpid)}")
        for c in cs:
            c.close()
    poll(lambda: not stale_entries(wpid), 10, interval=0.1, what="no stale entries after the rounds")
