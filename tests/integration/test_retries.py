# SPDX-License-Identifier: Apache-2.0
"""Integration tests of what a retry or a replay sends again: the request body
that arrives during a retry's back-off or while its connection is made, the
per-try timeout while the body streams or the response head trickles, HTTP/2
upstream streams timed by their own frames, the route's timeout during a wait
for a connection (504 UT), maxRequestsPerConnection on HTTP/2 connections, and the replay of a
request whose pooled connection closed (idempotent methods only).

The upstreams here are scripted per connection (ScriptedUpstream): the first
connection misbehaves as the test needs, the next ones read the whole request
and say what they got.

Registered into run.py's list by register(test)."""

import json
import socket
import threading
import time

from harness import (Conn, Registry, TestFailure, appliance, check, ctl_cmd, curl, docs, file_lines, free_port, gateway, http_get,
                     poll, read_head, service_entry, service_entry_protocol, virtual_service)
from test_h2 import h2up_stats, meter_log, one_service, route, start_h2_upstream
from test_security import read_raw

SVC = "retry.test.internal"
UP_ADDR = "127.0.0.2"
_test = Registry()
register = _test.register


def read_body(c, head, rest):
    """The request body after head: by content-length, or chunked (decoded)."""
    fields = {ln.split(":", 1)[0].strip().lower(): ln.split(":", 1)[1].strip()
              for ln in head.split("\r\n")[1:] if ":" in ln}
    buf = bytearray(rest)

    def more():
        d = c.recv(65536)
        if not d:
            raise EOFError("upstream: the request body ended early")
        buf.extend(d)

    if "content-length" in fields:
        n = int(fields["content-length"])
        while len(buf) < n:
            more()
        return bytes(buf[:n])
    body = bytearray()
    if fields.get("transfer-encoding", "").lower() != "chunked":
        return b""
    while True:
        while b"\r\n" not in buf:
            more()
        line, _, tail = bytes(buf).partition(b"\r\n")
        size = int(line.split(b";")[0], 16)
        while len(tail) < size + 2:
            more()
            line, _, tail = bytes(buf).partition(b"\r\n")
        body += tail[:size]
        buf = bytearray(tail[size + 2:])
        if size == 0:
            return bytes(body)


def listener(addr, backlog):
    """A listening socket on addr at a free port; (socket, port)."""
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    port = free_port(addr)
    ls.bind((addr, port))
    ls.listen(backlog)
    return ls, port


def shut_listener(t, fillers, ls):
    """The end of a listener: its accept thread t (None: none; told to stop
    already) joined, the queue's fillers and the socket closed."""
    if t is not None:
        t.join(5)
    for s in fillers:
        s.close()
    ls.close()


def fill_accept_queue(addr, port):
    """Two connections a listener of backlog 0 on addr:port never accepts: the
    first fills its queue, the second's SYNs are dropped, and so are those of
    every connection after them. The two sockets, to close when done."""
    fillers = []
    for _ in range(2):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect((addr, port))
        except BlockingIOError:
            pass
        fillers.append(s)
    return fillers


class ScriptedUpstream:
    """A loopback HTTP/1.1 upstream on UP_ADDR: the connections numbered in
    fail_on (from 1) go to first(conn, head, rest); the others read the whole
    request and answer 200 "got N" (N the body's bytes), recording each body in
    self.bodies. slow_accept: after the first connection, the accept queue is
    kept full for `slow_accept` seconds, so that the next connection takes that
    long to be made (its SYNs dropped)."""

    def __init__(self, first, fail_on=(1,), slow_accept=0.0):
        self.first = first
        self.fail_on = fail_on
        self.slow_accept = slow_accept
        self.bodies = []
        self.heads = []
        self.peers = []  # (address, port) of each connection that sent a request
        self.lines = []
        self.errors = []
        self.conns = 0
        self.ls, self.port = listener(UP_ADDR, 0 if slow_accept else 16)
        self.ls.settimeout(0.5)
        self.stop = False
        self.fillers = []
        self.t = threading.Thread(target=self.accept_loop, daemon=True)
        self.t.start()

    def close(self):
        self.stop = True
        shut_listener(self.t, self.fillers, self.ls)

    def fill_queue(self):
        self.fillers += fill_accept_queue(UP_ADDR, self.port)

    def accept_loop(self):
        deadline = 0.0
        while not self.stop:
            if deadline and time.monotonic() < deadline:
                time.sleep(0.05)
                continue
            try:
                c, _ = self.ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            self.conns += 1
            n = self.conns
            if n == 1 and self.slow_accept:
                self.fill_queue()
                deadline = time.monotonic() + self.slow_accept
            threading.Thread(target=self.serve, args=(c, n), daemon=True).start()

    def serve(self, c, n):
        c.settimeout(10)
        try:
            head, rest = read_head(c)
            if head is None:  # a filler, or a probe
                return
            self.lines.append(head.split("\r\n", 1)[0])
            self.heads.append(head)
            self.peers.append(c.getpeername()[:2])
            if n in self.fail_on:
                self.first(c, head, rest)
                return
            body = read_body(c, head, rest)
            self.bodies.append(body)
            msg = b"got %d" % len(body)
            c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(msg) + msg)
        except (OSError, EOFError, ValueError) as e:
            self.errors.append(f"connection {n}: {e!r}")
        finally:
            c.close()


def answer_503(c, head, rest):
    """An early 503, the body not read: the gateway's retry policy retries it."""
    c.sendall(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
    time.sleep(0.3)


def gateway_conf(env, gw, up_port, vs_extra="", timeouts=None, app_extra=""):
    """Writes the configuration of gateway_to; its path."""
    return env.write("isthmus.yaml", docs(
        appliance(env, workers=1, timeouts=timeouts, extra=app_extra), gateway(gw),
        virtual_service("vs", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n{vs_extra}"),
        service_entry("svc", SVC, [{"address": UP_ADDR, "port": up_port}])))


def gateway_to(env, up_port, vs_extra="", timeouts=None):
    gw = free_port()
    env.start_gateway(gateway_conf(env, gw, up_port, vs_extra, timeouts), gw)
    return gw


def worker_crashes(env):
    return env.gateway.log().count("killed by signal")


def streamed_post(gw, chunked, pieces, size, gap):
    """A POST whose body goes in `pieces` writes of `size` bytes, `gap` s apart;
    returns (status, body) of the answer."""
    c = Conn("127.0.0.1", gw, timeout=30)
    try:
        total = pieces * size
        if chunked:
            c.send(b"POST /upload HTTP/1.1\r\nhost: retry.test\r\ntransfer-encoding: chunked\r\n\r\n")
        else:
            c.send(b"POST /upload HTTP/1.1\r\nhost: retry.test\r\ncontent-length: %d\r\n\r\n" % total)
        for i in range(pieces):
            piece = bytes([ord("a") + i % 26]) * size
            c.send(b"%x\r\n%s\r\n" % (size, piece) if chunked else piece)
            time.sleep(gap)
        if chunked:
            c.send(b"0\r\n\r\n")
        r = c.read_response("POST")
        return r.status, r.body
    finally:
        c.close()


def want_body(pieces, size):
    return b"".join(bytes([ord("a") + i % 26]) * size for i in range(pieces))


@_test
def retry_body_during_backoff(env):
    """Body bytes the client sends while a retry waits out its back-off go to the
    next attempt, in order: the upstream gets the whole body, with a length and
    chunked. (They were dropped: the retry sent a body with a hole.)"""
    up = ScriptedUpstream(answer_503, fail_on=(1, 3))
    try:
        gw = gateway_to(env, up.port, "    retries: {attempts: 2, retryOn: 5xx, backoff: 100ms}\n",
                        timeouts={"upstreamResponse": "10s"})
        for chunked in (False, True):
            status, body = streamed_post(gw, chunked, 150, 10, 0.004)
            check(status == 200 and body == b"got 1500",
                  f"chunked={chunked}: {status} {body!r}, want 200 'got 1500' (upstream: {up.errors})")
            check(up.bodies[-1:] == [want_body(150, 10)], f"chunked={chunked}: the retried body differs from "
                  f"what was sent ({[len(b) for b in up.bodies]} bytes)")
    finally:
        up.close()
    check(worker_crashes(env) == 0, "a worker crashed")


@_test
def default_policy_leaves_503(env):
    """A route without retries has Istio's default policy, which since Istio
    1.24 retries no HTTP status: an upstream's 503 to a POST goes to the client
    after one try (it was tried three times, the request acted on each time).
    A retryOn that names 503 still retries it."""
    up = ScriptedUpstream(answer_503, fail_on=(1, 2, 3, 4, 5, 6))
    try:
        gw = gateway_to(env, up.port, timeouts={"upstreamResponse": "10s"})
        with Conn("127.0.0.1", gw, timeout=30) as c:
            r = c.request("POST", "/order", "retry.test", {"content-length": "2"}, body=b"hi")
        check(r.status == 503 and len(up.heads) == 1,
              f"the default policy: {r.status}, {len(up.heads)} tries (want 503 after one)")
        gateway_conf(env, gw, up.port, "    retries: {attempts: 2, retryOn: \"connect-failure,503\"}\n",
                     {"upstreamResponse": "10s"})
        check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), "reload refused")
        with Conn("127.0.0.1", gw, timeout=30) as c:
            r = c.request("POST", "/order", "retry.test", {"content-length": "2"}, body=b"hi")
        check(r.status == 503 and len(up.heads) == 4,
              f"retryOn 503: {r.status}, {len(up.heads) - 1} tries (want 503 after three)")
    finally:
        up.close()


def answer_grpc_unavailable(c, head, rest):
    """A trailers-only UNAVAILABLE in an HTTP/1.1 head (HTTP 200)."""
    c.sendall(b"HTTP/1.1 200 OK\r\ngrpc-status: 14\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
    time.sleep(0.3)


@_test
def grpc_retry_on_any_request(env):
    """retryOn with a gRPC name retries an answer whose head carries that
    grpc-status whatever the request was, as Envoy's retry state reads it
    (not only requests with a gRPC content-type); a name the policy does not
    list leaves it."""
    up = ScriptedUpstream(answer_grpc_unavailable, fail_on=(1, 3))
    try:
        gw = gateway_to(env, up.port, "    retries: {attempts: 2, retryOn: unavailable}\n")
        r = http_get(gw, "/plain", host="retry.test")
        check(r.status == 200 and r.body == b"got 0" and len(up.heads) == 2,
              f"retryOn unavailable, grpc-status 14 to a plain GET: {r.status} {r.body!r}, "
              f"{len(up.heads)} tries (want a retry)")
        gateway_conf(env, gw, up.port, "    retries: {attempts: 2, retryOn: internal}\n")
        check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), "reload refused")
        r = http_get(gw, "/plain", host="retry.test")
        check(r.status == 200 and r.header("grpc-status") == "14" and len(up.heads) == 3,
              f"retryOn internal, grpc-status 14: {r.status} {r.headers}, {len(up.heads) - 2} tries (want one)")
    finally:
        up.close()


def fields(head, name):
    """The values of field name in a request head."""
    return [ln.split(":", 1)[1].strip() for ln in head.split("\r\n")[1:]
            if ln.split(":", 1)[0].strip().lower() == name]


@_test
def attempt_fields(env):
    """Each attempt's request says which it is (x-envoy-attempt-count, in place
    of the client's) and, when the route bounds it, how long it has
    (x-envoy-expected-rq-timeout-ms: the per-try timeout within what is left of
    the route's), as Envoy's router writes them at an Istio gateway; the body
    goes on whole after the fields grew. A route's edit of the expected time
    decides it, not one of the count. spec.proxyHeaders.attemptCount and
    envoyDebugHeaders disabled: neither field, and the client's count passes."""
    up = ScriptedUpstream(answer_503, fail_on=(1,))
    client = {"x-envoy-attempt-count": "9", "x-envoy-expected-rq-timeout-ms": "1"}

    def post():
        c = Conn("127.0.0.1", gw, timeout=30)
        try:
            c.send(b"POST /a HTTP/1.1\r\nhost: retry.test\r\n" +
                   b"".join(b"%s: %s\r\n" % (k.encode(), v.encode()) for k, v in client.items()) +
                   b"content-length: 5\r\n\r\nhello")
            return c.read_response("POST")
        finally:
            c.close()

    def reload(vs_extra, app_extra=""):
        gateway_conf(env, gw, up.port, vs_extra, {"upstreamResponse": "10s"}, app_extra)
        check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), f"reload refused: {vs_extra} {app_extra}")

    try:
        gw = gateway_to(env, up.port, "    timeout: 5s\n    retries: {attempts: 2, retryOn: 5xx, perTryTimeout: 2s}\n",
                        timeouts={"upstreamResponse": "10s"})
        r = post()
        check(r.status == 200 and r.body == b"got 5" and up.bodies == [b"hello"],
              f"{r.status} {r.body!r}, bodies {up.bodies!r} {up.errors}")
        check(len(up.heads) == 2, f"{len(up.heads)} attempts, want 2: {up.heads}")
        check([fields(h, "x-envoy-attempt-count") for h in up.heads] == [["1"], ["2"]],
              f"attempt counts: {up.heads}")
        expected = [fields(h, "x-envoy-expected-rq-timeout-ms") for h in up.heads]
        check(expected[0] == ["2000"] and len(expected[1]) == 1 and 0 < int(expected[1][0]) <= 2000,
              f"expected times (per try 2s, route 5s): {expected}")
        reload("    timeout: 3s\n    headers: {request: {set: {x-envoy-attempt-count: \"5\", "
               "x-envoy-expected-rq-timeout-ms: \"77\"}}}\n")
        r = post()
        check(r.status == 200, f"after the reload: {r.status} {r.body!r}")
        head = up.heads[-1]
        check(fields(head, "x-envoy-attempt-count") == ["1"] and
              fields(head, "x-envoy-expected-rq-timeout-ms") == ["77"], f"route edits: {head}")
        reload("    timeout: 3s\n")
        post()
        got = fields(up.heads[-1], "x-envoy-expected-rq-timeout-ms")
        check(len(got) == 1 and 0 < int(got[0]) <= 3000, f"route timeout 3s: {up.heads[-1]}")
        reload("", "  proxyHeaders: {attemptCount: {disabled: true}}\n")
        post()
        check(fields(up.heads[-1], "x-envoy-attempt-count") == ["9"] and
              fields(up.heads[-1], "x-envoy-expected-rq-timeout-ms") == [], f"no route timeout: {up.heads[-1]}")
        reload("    timeout: 3s\n", "  proxyHeaders: {envoyDebugHeaders: {disabled: true}}\n")
        post()
        check(fields(up.heads[-1], "x-envoy-attempt-count") == ["1"] and
              fields(up.heads[-1], "x-envoy-expected-rq-timeout-ms") == [], f"debug headers off: {up.heads[-1]}")
    finally:
        up.close()


@_test
def access_log_byte_meters(env):
    """Envoy's byte meters of HTTP/1.1 exchanges, exact to the byte on both
    sides: the heads the client and the upstream sent and got, all their bytes
    (a chunked body with its framing), the upstream's over both attempts of a
    retried request; %BYTES_RECEIVED% and %BYTES_SENT% are the bodies alone
    (a chunked one decoded)."""
    up = ScriptedUpstream(answer_503, fail_on=(1,))
    log = env.path("access.log")

    def exchange(data, method):
        with Conn("127.0.0.1", gw, timeout=30) as c:
            c.send(data)
            r = c.read_response(method)
        check(r.status == 200, f"{method}: {r}")
        return len(r.raw_head) + 4, r.body

    def answer_head(n):  # ScriptedUpstream's 200 for a body of n bytes
        return len(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(b"got %d" % n))

    try:
        gw = free_port()
        env.start_gateway(gateway_conf(env, gw, up.port, "    retries: {attempts: 2, retryOn: 5xx}\n",
                                       app_extra=meter_log(log) + "  limits: {maxRequestBodyBytes: 2000}\n"), gw)
        get = b"GET /a HTTP/1.1\r\nhost: retry.test\r\n\r\n"
        post_head = b"POST /b HTTP/1.1\r\nhost: retry.test\r\ncontent-length: 1000\r\n\r\n"
        chunked_head = b"POST /c HTTP/1.1\r\nhost: retry.test\r\ntransfer-encoding: chunked\r\n\r\n"
        chunked = b"12c\r\n" + b"x" * 300 + b"\r\nc8;ext=1\r\n" + b"y" * 200 + b"\r\n0\r\n\r\n"
        got = {"/a": exchange(get, "GET"), "/b": exchange(post_head + b"z" * 1000, "POST"),
               "/c": exchange(chunked_head + chunked, "POST")}
        check(up.bodies == [b"", b"z" * 1000, b"x" * 300 + b"y" * 200] and len(up.heads) == 4,
              f"the upstream got {len(up.heads)} heads, bodies {[len(b) for b in up.bodies]} {up.errors}")
        recs = {r["path"]: r for r in (json.loads(l) for l in poll(
            lambda: file_lines(log) if len(file_lines(log)) >= 3 else None, 5, what="three access-log lines"))}
        heads = [len(h) + 4 for h in up.heads]
        r503 = len(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        want = {
            "/a": {"in": 0, "dhi": len(get), "dwi": len(get), "uho": heads[0] + heads[1],
                   "uwo": heads[0] + heads[1], "uhi": r503 + answer_head(0), "uwi": r503 + answer_head(0) + 5},
            "/b": {"in": 1000, "dhi": len(post_head), "dwi": len(post_head) + 1000, "uho": heads[2],
                   "uwo": heads[2] + 1000, "uhi": answer_head(1000), "uwi": answer_head(1000) + 8},
            "/c": {"in": 500, "dhi": len(chunked_head), "dwi": len(chunked_head) + len(chunked),
                   "uho": heads[3], "uhi": answer_head(500), "uwi": answer_head(500) + 7},
        }
        for path, w in want.items():
            r, (head, body) = recs[path], got[path]
            w.update({"out": len(body), "dho": head, "dwo": head + len(body)})
            check({k: r[k] for k in w} == w, f"{path}: {r}, want {w}")
        # The chunked body goes on chunked: its framing with it.
        check(recs["/c"]["uwo"] > heads[3] + 500, f"/c upstream wire bytes: {recs['/c']}")
        # Requests refused at their head count what was read of it.
        big = b"POST /d HTTP/1.1\r\nhost: retry.test\r\ncontent-length: 5000\r\n\r\n"
        bad = b"GET /e HTTP/1.1\r\nhost: retry.test\r\nno colon here\r\n\r\n"
        for data, status in ((big, 413), (bad, 400)):
            with Conn("127.0.0.1", gw, timeout=30) as c:
                c.send(data)
                r = c.read_response("POST")
            check(r.status == status, f"{data!r}: {r.status}, want {status}")
        lines = poll(lambda: file_lines(log) if len(file_lines(log)) >= 5 else None, 5, what="five access-log lines")
        refused = [json.loads(l) for l in lines[3:]]
        for r, data in zip(refused, (big, bad)):
            check((r["in"], r["dhi"], r["dwi"]) == (0, len(data), len(data)),
                  f"a refused head of {len(data)} bytes logged {r}")
    finally:
        up.close()


def hold_answer(c, head, rest):
    """Never answers within the test's timeouts (the connection is held)."""
    time.sleep(3)


@_test
def timeouts_fire_on_time(env):
    """A route timeout and a per-try timeout fire at their millisecond, as
    Envoy's timers do: they were checked at a 100 ms tick, 20-100 ms late (a
    50 ms timeout took up to 150). The median lateness of 9 tries, measured
    by the client, is well under the tick's. The 504s keep the client's
    connection (the request was whole), as Envoy's do: the 9 tries share one."""
    up = ScriptedUpstream(hold_answer, fail_on=range(1, 100))
    try:
        gw = free_port()
        routes = (f"  - match: [{{uri: {{prefix: /route}}}}]\n    timeout: 60ms\n"
                  f"    route: [{{destination: {{host: {SVC}}}}}]\n"
                  f"  - match: [{{uri: {{prefix: /try}}}}]\n    retries: {{attempts: 1, perTryTimeout: 40ms, retryOn: gateway-error}}\n"
                  f"    route: [{{destination: {{host: {SVC}}}}}]\n")
        env.start_gateway(env.write("isthmus.yaml", docs(
            appliance(env, workers=1), gateway(gw), virtual_service("vs", ["*"], routes),
            service_entry("svc", SVC, [{"address": UP_ADDR, "port": up.port}]))), gw)
        # /try: two tries of 40 ms and a back-off below 25 ms between them.
        for path, least, most_median in (("/route", 0.060, 0.085), ("/try", 0.080, 0.130)):
            late = []
            with Conn("127.0.0.1", gw, timeout=10) as c:
                for i in range(9):
                    t0 = time.monotonic()
                    r = c.request("GET", f"{path}/{i}", "retry.test")
                    el = time.monotonic() - t0
                    check(r.status == 504 and el >= least - 0.002 and r.header("connection") != "close",
                          f"{path}: {r.status} after {el * 1000:.0f} ms, connection {r.header('connection')}")
                    late.append(el)
            median = sorted(late)[4]
            check(median <= most_median, f"{path}: median {median * 1000:.0f} ms, want at most "
                  f"{most_median * 1000:.0f} ms ({[round(x * 1000) for x in late]})")
    finally:
        up.close()


@_test
def route_timeout_from_request_end(env):
    """A route's timeout runs from the end of the request, as Envoy's router
    starts its timer once the request is complete: a POST whose body takes
    longer than the timeout to arrive (30 bytes, 10 every 300 ms, against
    500 ms) is served (it was 504 once 500 ms had passed since routing),
    while one whose answer takes longer than the timeout after the body's
    end still gets 504 UT."""
    up = env.upstream([f"{UP_ADDR}:0=up"], name="up")["up"]
    gw = free_port()
    routes = f"  - timeout: 500ms\n    route: [{{destination: {{host: {SVC}}}}}]\n"
    env.start_gateway(env.write("isthmus.yaml", docs(
        appliance(env, workers=1), gateway(gw), virtual_service("vs", ["*"], routes),
        service_entry("svc", SVC, [{"address": UP_ADDR, "port": up}]))), gw)
    with Conn("127.0.0.1", gw, timeout=10) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: retry.test\r\nContent-Length: 30\r\n\r\n")
        for i in range(3):
            time.sleep(0.3)
            c.send(bytes([ord("a") + i]) * 10)
        r = c.read_response()
        check(r.status == 200 and r.body == b"a" * 10 + b"b" * 10 + b"c" * 10,
              f"a body slower than the route's timeout: {r}")
    with Conn("127.0.0.1", gw, timeout=10) as c:
        t0 = time.monotonic()
        r = c.request("POST", "/delay/900", "retry.test", body=b"x" * 10)
        took = time.monotonic() - t0
        check(r.status == 504 and 0.45 <= took < 0.85, f"an answer slower than the timeout: {r.status} "
              f"after {took:.2f} s")


@_test
def client_stall_mid_upload(env):
    """No upstream timer runs while the client's body comes (Envoy's router
    starts them at the request's end): a client that pauses mid-upload for
    longer than timeouts.upstreamResponse is served, the upstream's echo
    begun meanwhile (it got 504 UT, charged to the endpoint: three such
    clients ejected a healthy one); one that
    stalls for good meets the stream's idle timeout, 408, and the endpoint,
    under outlier detection that ejects at the first gateway error, keeps
    serving."""
    up = env.upstream([f"{UP_ADDR}:0=up"], name="up")["up"]
    gw = free_port()
    dr = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: dr}\n"
          f"spec:\n  host: {SVC}\n  trafficPolicy:\n    outlierDetection: {{consecutiveGatewayErrors: 1, "
          "consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 100}\n")
    env.start_gateway(env.write("isthmus.yaml", docs(
        appliance(env, workers=1, timeouts={"upstreamResponse": "1s", "streamIdle": "2500ms"}), gateway(gw),
        virtual_service("vs", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n"), dr,
        service_entry("svc", SVC, [{"address": UP_ADDR, "port": up}]))), gw)
    with Conn("127.0.0.1", gw, timeout=10) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: retry.test\r\nContent-Length: 20\r\n\r\n" + b"a" * 10)
        time.sleep(1.6)  # the client's pause, longer than upstreamResponse
        c.send(b"b" * 10)
        r = c.read_response()
        check(r.status == 200 and r.body == b"a" * 10 + b"b" * 10, f"a client's pause mid-upload: {r}")
    with Conn("127.0.0.1", gw, timeout=10) as c:
        t0 = time.monotonic()  # /status answers once the whole body came
        c.send(b"POST /status/200 HTTP/1.1\r\nHost: retry.test\r\nContent-Length: 20\r\n\r\n" + b"a" * 10)
        r = c.read_response()
        took = time.monotonic() - t0
        check(r.status == 408 and took >= 2.3, f"a client that stalls mid-upload: {r.status} after {took:.2f} s, "
              "want 408 at timeouts.streamIdle")
    r = env.get("/echo", host="retry.test")
    check(r.status == 200, f"the endpoint after the client's stall (not ejected): {r}")


# Response heads Envoy's HTTP/1.1 codec refuses, by the path that gets them.
BAD_HEADS = {
    "/clte": b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ntransfer-encoding: chunked\r\n\r\nok",
    "/two-lengths": b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\ncontent-length: 3\r\n\r\nok",
    "/status": b"HTTP/1.1 1000 Odd\r\ncontent-length: 0\r\n\r\n",
    "/nul": b"HTTP/1.1 200 OK\r\nx-a: a\x00b\r\ncontent-length: 0\r\n\r\n",
    "/fold": b"HTTP/1.1 200 OK\r\nx-a: a\r\n b\r\ncontent-length: 0\r\n\r\n",
    "/garbage": b"garbage\r\n\r\n",
    # A coding other than chunked (Envoy's codec refuses it): an HTTP/1.0 or
    # HTTP/2 client got the body still gzip-coded, the coding named nowhere.
    "/te-gzip": b"HTTP/1.1 200 OK\r\ntransfer-encoding: gzip, chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
    "/unasked-101": b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n",
    "/too-large": b"HTTP/1.1 200 OK\r\nx-big: " + b"b" * 5000 + b"\r\ncontent-length: 0\r\n\r\n",
    # A 204 (or 1xx) announcing a body (Envoy's codec refuses it): the bytes
    # that followed a moment later were the next client's answer on the
    # pooled connection.
    "/204-length": b"HTTP/1.1 204 No Content\r\ncontent-length: 8\r\n\r\n",
    "/204-chunked": b"HTTP/1.1 204 No Content\r\ntransfer-encoding: chunked\r\n\r\n",
}


def bad_head(c, head, rest):
    """Sends the bad head the request's path names, then keeps the connection
    open: the answer must not wait for its close."""
    path = head.split(" ", 2)[1]
    c.sendall(BAD_HEADS.get(path, BAD_HEADS["/garbage"]))
    time.sleep(3)


@_test
def upstream_malformed_head_502(env):
    """A response head the HTTP/1.1 parser refuses (conflicting lengths, a bad
    status, NUL or folded fields, garbage, a transfer coding other than
    chunked, a 101 no upgrade asked for, a head
    over maxResponseHeaderBytes) is Envoy's protocol-error reset: 502 UPE,
    upstream_reset_before_response_started{protocol_error}, at once, while
    the upstream keeps its connection open (it was 503 UC, "closed before the
    response head", once the upstream closed); retried under retryOn reset
    (URX,UPE once they are spent, in Envoy's order)."""
    up = ScriptedUpstream(bad_head, fail_on=range(1, 100))
    log = env.path("access.log")
    fmt = "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %UPSTREAM_REQUEST_ATTEMPT_COUNT%"
    extra = (f"  accessLog: {{path: {log}, format: text, textFormat: \"{fmt}\"}}\n"
             "  limits: {maxResponseHeaderBytes: 4096}\n")
    try:
        gw = free_port()
        env.start_gateway(gateway_conf(env, gw, up.port, app_extra=extra), gw)
        for path in BAD_HEADS:
            t0 = time.monotonic()
            r = http_get(gw, path, host="retry.test", timeout=10)
            el = time.monotonic() - t0
            check(r.status == 502 and el < 2, f"{path}: {r.status} after {el:.1f} s, want 502 at once")
        want = [f"{p} 502 UPE upstream_reset_before_response_started{{protocol_error}} 1" for p in BAD_HEADS]
        poll(lambda: len(file_lines(log)) >= len(want), 5, what=f"{len(want)} access-log lines")
        check(file_lines(log) == want, f"access log {file_lines(log)}, want {want}")
        conns = up.conns
        env.write("isthmus.yaml", open(gateway_conf(env, gw, up.port, "    retries: {attempts: 2, retryOn: reset}\n",
                                                    app_extra=extra)).read())
        check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), "the reload was refused")
        r = http_get(gw, "/garbage", host="retry.test", timeout=10)
        check(r.status == 502 and up.conns - conns == 3, f"retried: {r.status}, {up.conns - conns} tries, want 3")
        line = poll(lambda: file_lines(log)[len(want):] or None, 5, what="the retried request's line")[0]
        check(line == "/garbage 502 URX,UPE upstream_reset_before_response_started{protocol_error} 3",
              f"the retried request's line: {line!r}")
    finally:
        up.close()


@_test
def malformed_body_with_head_not_retried(env):
    """A malformed chunked body that comes in the same read as its head is a
    cut after the head, as when it comes later (Envoy streams the head): the
    client gets the 200 and then the end of the connection, logged UPE, and
    the POST is not sent again under retryOn gateway-error. It was answered
    502 before the head and retried: a POST the upstream had answered 200
    ran three times."""
    def head_and_bad_chunk(c, head, rest):
        c.sendall(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzzzzzzzzzzzzzzzzzzzz\r\n")
        time.sleep(3)  # the connection stays open: the cut is isthmus's

    up = ScriptedUpstream(head_and_bad_chunk, fail_on=range(1, 10))
    log = env.path("access.log")
    fmt = "%RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_REQUEST_ATTEMPT_COUNT%"
    extra = f"  accessLog: {{path: {log}, format: text, textFormat: \"{fmt}\"}}\n"
    try:
        gw = free_port()
        env.start_gateway(gateway_conf(env, gw, up.port, "    retries: {attempts: 2, retryOn: gateway-error}\n",
                                       app_extra=extra), gw)
        with Conn("127.0.0.1", gw, timeout=10) as c:
            c.send(b"POST /order HTTP/1.1\r\nhost: retry.test\r\ncontent-length: 2\r\n\r\nok")
            raw = read_raw(c, timeout=10)
        check(raw.startswith(b"HTTP/1.1 200 OK\r\n") and not raw.endswith(b"0\r\n\r\n"),
              f"the client got {raw[:200]!r}, want the 200's head and then a cut")
        line = poll(lambda: file_lines(log) or None, 5, what="the access-log line")[0]
        check(line == "200 UPE 1", f"access log {line!r}, want '200 UPE 1'")
        check(up.lines == ["POST /order HTTP/1.1"], f"the upstream got {up.lines}, want the POST once")
    finally:
        up.close()


@_test
def grpc_web_held_answer_cut(env):
    """A gRPC-Web request's answer that is not gRPC waits whole for its body,
    which becomes its grpc-message: when its upstream stalls mid-body, the
    route's timeout cuts the stream, as Envoy resets a stream whose response
    had started (nothing of it reached the client: its connection closes
    without an answer), and it is not tried again (retryOn 5xx would retry
    the timeout before the head)."""
    def stall(c, head, rest):
        c.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: 100\r\n\r\npartial")
        time.sleep(4)

    up = ScriptedUpstream(stall, fail_on=(1, 2, 3))
    try:
        gw = free_port()
        conf = gateway_conf(env, gw, up.port, "    timeout: 1s\n    retries: {attempts: 2, retryOn: 5xx}\n")
        with open(conf) as f:
            text = f.read().replace("protocol: HTTP}", "protocol: GRPC-WEB}", 1)
        check("GRPC-WEB" in text, "the gateway's server protocol")
        env.start_gateway(env.write("isthmus.yaml", text), gw)
        with Conn("127.0.0.1", gw, timeout=10) as c:
            t0 = time.monotonic()
            c.send(b"POST /svc/M HTTP/1.1\r\nhost: retry.test\r\ncontent-type: application/grpc-web\r\n"
                   b"content-length: 6\r\n\r\n\0\0\0\0\1m")
            closed = c.closed_by_peer(8)
            took = time.monotonic() - t0
            check(closed and c.buf == b"" and 0.8 <= took < 6,
                  f"closed {closed} after {took:.1f} s with {c.buf[:80]!r}: want a close at the 1 s timeout, "
                  "no answer")
        check(len(up.heads) == 1, f"{len(up.heads)} tries, want 1")
    finally:
        up.close()


@_test
def service_time_from_request_end(env):
    """x-envoy-upstream-service-time counts from the end of the request, as
    Envoy's router does: a body sent 2.5 s after its head, to an upstream that
    answers once it has the whole request, does not count that wait (it
    counted from the head before)."""
    up = ScriptedUpstream(answer_503, fail_on=())
    try:
        gw = gateway_to(env, up.port, timeouts={"upstreamResponse": "10s"})
        with Conn("127.0.0.1", gw, timeout=30) as c:
            c.send(b"POST /a HTTP/1.1\r\nhost: retry.test\r\ncontent-length: 5\r\n\r\n")
            time.sleep(2.5)  # the client's slow body: the behaviour under test
            c.send(b"hello")
            r = c.read_response("POST")
    finally:
        up.close()
    svc = r.header_all("x-envoy-upstream-service-time")
    check(r.status == 200 and r.body == b"got 5", f"POST /a: {r.status} {r.body!r} {up.errors}")
    check(len(svc) == 1 and int(svc[0]) < 2000, f"service time {svc}: the body's wait counted")


@_test
def service_time_replaced(env):
    """An upstream's own x-envoy-upstream-service-time gives way to isthmus's,
    as Envoy's router sets the field: the client got both, the upstream's
    first (which clients and log pipelines read), over HTTP/1.1 and HTTP/2;
    a route's response edit that sets or removes it decides it."""
    def own_field(c, head, rest):
        c.sendall(b"HTTP/1.1 200 OK\r\nx-envoy-upstream-service-time: 987654\r\ncontent-length: 2\r\n\r\nok")
        time.sleep(0.3)

    def both(gw):
        """The field's values an HTTP/1.1 and an HTTP/2 client get."""
        r = http_get(gw, "/a", host="retry.test")
        rc, out, err = curl(["-s", "-D", "-", "-o", "/dev/null", "--http2-prior-knowledge", "-H", "host: retry.test",
                             f"http://127.0.0.1:{gw}/b"])
        check(r.status == 200 and rc == 0 and out.startswith("HTTP/2 200"), f"{r.status}; {rc} {out!r} {err}")
        return (r.header_all("x-envoy-upstream-service-time"),
                [ln.split(":", 1)[1].strip() for ln in out.splitlines()
                 if ln.lower().startswith("x-envoy-upstream-service-time:")])

    up = ScriptedUpstream(own_field, fail_on=range(1, 20))
    try:
        gw = gateway_to(env, up.port)
        for svc, proto in zip(both(gw), ("HTTP/1.1", "HTTP/2")):
            check(len(svc) == 1 and svc[0] != "987654", f"{proto}: service time {svc}")
        # The route's response edits apply after the router set it, as
        # Envoy's: one that sets it, or removes it, decides.
        for edit, want in (("set: {x-envoy-upstream-service-time: '42'}", ["42"]),
                           ("remove: [x-envoy-upstream-service-time]", [])):
            env.write("isthmus.yaml", open(gateway_conf(env, gw, up.port,
                                                        f"    headers: {{response: {{{edit}}}}}\n")).read())
            check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), "the reload was refused")
            check(both(gw) == (want, want), f"a route's {edit}: {both(gw)}, want {want} for both")
    finally:
        up.close()


@_test
def upstream_local_address(env):
    """%UPSTREAM_LOCAL_ADDRESS% (and its parts) in a response header value and
    in the access log: the address of isthmus's own end of the connection the
    answer came on, as the upstream saw it."""
    up = ScriptedUpstream(answer_503, fail_on=())
    log = env.path("access.log")
    fmt = "%REQ(:PATH)% %UPSTREAM_LOCAL_ADDRESS% %UPSTREAM_LOCAL_ADDRESS_WITHOUT_PORT% %UPSTREAM_LOCAL_PORT%"
    try:
        gw = free_port()
        env.start_gateway(gateway_conf(
            env, gw, up.port,
            '    headers: {response: {set: {x-up: "%UPSTREAM_LOCAL_ADDRESS%", x-up-port: "%UPSTREAM_LOCAL_PORT%"}}}\n',
            {"upstreamResponse": "10s"}, f'  accessLog: {{path: {log}, format: text, textFormat: "{fmt}"}}\n'), gw)
        r = http_get(gw, "/a", host="retry.test")
    finally:
        up.close()
    check(r.status == 200 and len(up.peers) == 1, f"GET /a: {r.status}, peers {up.peers} {up.errors}")
    ip, port = up.peers[0]
    check(r.header_all("x-up") == [f"{ip}:{port}"] and r.header_all("x-up-port") == [str(port)],
          f"header values {r.headers}, want {ip}:{port}")
    poll(lambda: file_lines(log), 5, what="the access-log line")
    check(file_lines(log) == [f"/a {ip}:{port} {ip} {port}"], f"access log {file_lines(log)}, want {ip}:{port}")


@_test
def attempt_count_h2_upstream(env):
    """Over HTTP/2 to the upstream too, a retry's request says it is the second
    attempt, its body whole after the rewritten field: of two endpoints one
    answers 503 to everything, and every request the other answers says 1 (it
    came first) or 2 (after the failing one), both seen."""
    bad = start_h2_upstream(env, "127.0.0.3", "bad")
    good = start_h2_upstream(env, UP_ADDR, "good")
    check(http_get(bad, "/__ctl/fail/503", addr="127.0.0.3").status == 200, "the failing endpoint's switch")
    gw = free_port()
    env.start_gateway(env.write("isthmus.yaml", docs(
        appliance(env, workers=1, timeouts={"upstreamResponse": "10s"}), gateway(gw),
        virtual_service("vs", ["*"], route(SVC, "    retries: {attempts: 1, retryOn: 5xx}\n")),
        service_entry_protocol("svc", SVC, [{"address": UP_ADDR, "port": good},
                                            {"address": "127.0.0.3", "port": bad}], "HTTP2"))), gw)
    counts = []
    for _ in range(20):  # the balancer picks either first: both orders come (2 ** -19 they do not)
        with Conn("127.0.0.1", gw, timeout=20) as c:
            c.send(b"POST /x HTTP/1.1\r\nhost: retry.test\r\ncontent-length: 5\r\n\r\nhello")
            r = c.read_response("POST")
        check(r.status == 200, f"POST /x: {r.status} {r.body[:200]!r}")
        rep = json.loads(r.body)
        check(rep["body_bytes"] == 5, f"the body after the field: {rep}")
        counts.append([v for k, v in rep["headers"] if k == "x-envoy-attempt-count"])
    check(all(c in (["1"], ["2"]) for c in counts) and ["1"] in counts and ["2"] in counts,
          f"attempt counts the good endpoint saw: {counts}")


@_test
def retry_body_while_connecting(env):
    """Body bytes that come while the retry's connection is still being made
    wait for it and follow the head (a worker aborted on them before: a send on
    a socket not yet connected)."""
    up = ScriptedUpstream(answer_503, slow_accept=1.5)
    try:
        gw = gateway_to(env, up.port, "    retries: {attempts: 2, retryOn: 5xx}\n",
                        timeouts={"upstreamResponse": "10s", "upstreamConnect": "10s"})
        status, body = streamed_post(gw, True, 15, 5, 0.1)
        check(worker_crashes(env) == 0, f"a worker crashed: {env.gateway.log()[-600:]}")
        check(status == 200 and body == b"got 75", f"{status} {body!r}, want 200 'got 75' ({up.errors})")
        check(up.bodies == [want_body(15, 5)], f"the retried body differs: {up.bodies!r}")
    finally:
        up.close()


@_test
def per_try_timeout_streamed_body(env):
    """perTryTimeout bounds a try whose request body comes after its head: the
    body bytes do not replace it with the (longer) response timeout."""
    ports = env.upstream([f"{UP_ADDR}:0=slow"], name="slow")
    gw = gateway_to(env, ports["slow"], "    retries: {attempts: 1, perTryTimeout: 400ms, retryOn: 5xx}\n",
                    timeouts={"upstreamResponse": "20s"})
    c = Conn("127.0.0.1", gw, timeout=30)
    try:
        t0 = time.monotonic()
        c.send(b"POST /delay/6000 HTTP/1.1\r\nhost: retry.test\r\ncontent-length: 10\r\n\r\n")
        time.sleep(0.1)
        c.send(b"0123456789")
        r = c.read_response("POST")
        took = time.monotonic() - t0
    finally:
        c.close()
    check(r.status == 504, f"got {r.status} after {took:.1f} s: want 504 from two tries of 400 ms, "
          "not the upstream's answer after 6 s")


@_test
def h2_upstream_per_try_timeout(env):
    """An HTTP/2 upstream stream is timed by its own frames: the connection's
    SETTINGS, PINGs and other streams' answers do not keep a silent stream
    alive past its per-try timeout, on a new connection or a reused one."""
    port = start_h2_upstream(env, UP_ADDR, "u")
    gw = one_service(env, port, protocol="HTTP2", workers=1, timeouts={"upstreamResponse": "20s"},
                     routes=route(SVC, "    retries: {attempts: 1, perTryTimeout: 400ms, retryOn: 5xx}\n"),
                     host=SVC)
    busy = {"stop": False, "n": 0}

    def chatter():  # other streams on the same connection, answered all the time
        while not busy["stop"]:
            http_get(gw, "/delay/50", timeout=10)
            busy["n"] += 1

    for case in ("new connection", "busy connection"):
        t = None
        if case == "busy connection":
            t = threading.Thread(target=chatter, daemon=True)
            t.start()
        try:
            r = http_get(gw, "/delay/6000", timeout=30)
        finally:
            busy["stop"] = True
            if t:
                t.join(15)
        check(r.status == 504, f"{case}: got {r.status}, want 504 from two tries of 400 ms")
        busy["stop"] = False


@_test
def h2_upstream_max_requests_per_connection(env):
    """maxRequestsPerConnection applies to HTTP/2 upstream connections too: a
    connection that carried that many streams takes no more, and a new one opens."""
    port = start_h2_upstream(env, UP_ADDR, "u")
    dr = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: dr}\n"
          f"spec:\n  host: {SVC}\n  trafficPolicy:\n    connectionPool:\n"
          "      http: {maxRequestsPerConnection: 2}\n")
    gw = one_service(env, port, protocol="HTTP2", workers=1, host=SVC, extra_docs=(dr,))
    for i in range(6):
        r = http_get(gw, "/", timeout=10)
        check(r.status == 200, f"request {i}: {r.status}")
    stats = h2up_stats(UP_ADDR, port)
    check(stats["h2_connections"] >= 3, f"6 requests at 2 a connection came over {stats['h2_connections']} "
          f"HTTP/2 connections, want 3 or more: {json.dumps(stats)}")


@_test
def stale_connection_replay_idempotent_only(env):
    """A pooled connection that closes without answering is replayed on a new
    one only for an idempotent method: a POST the upstream may have acted on
    before it died is not sent twice, even with retries off."""
    seen = []

    def serve(c):
        c.settimeout(10)
        buf = b""
        try:
            while True:
                head, buf = read_head(c, buf)
                if head is None:
                    return
                line = head.split("\r\n", 1)[0]
                body = read_body(c, head, buf)
                buf = buf[len(body):] if "content-length" in head.lower() else b""
                seen.append(line)
                if line.startswith(("POST /act", "GET /act")) and seen.count(line) == 1:
                    time.sleep(0.2)  # acts on it, then dies without a word
                    return
                c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
        except (OSError, EOFError, ValueError):
            return
        finally:
            c.close()

    ls, port = listener(UP_ADDR, 16)
    ls.settimeout(0.5)
    stop = []

    def accept_loop():
        while not stop:
            try:
                c, _ = ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(c,), daemon=True).start()

    t = threading.Thread(target=accept_loop, daemon=True)
    t.start()
    try:
        gw = gateway_to(env, port, "    retries: {attempts: 0}\n")
        with Conn("127.0.0.1", gw, timeout=15) as c:
            c.send(b"GET /warm HTTP/1.1\r\nhost: retry.test\r\n\r\n")
            check(c.read_response().status == 200, "warm-up GET failed")
            c.send(b"POST /act HTTP/1.1\r\nhost: retry.test\r\ncontent-length: 3\r\n\r\nabc")
            post = c.read_response("POST").status
        check(seen.count("POST /act HTTP/1.1") == 1,
              f"the POST reached the upstream {seen.count('POST /act HTTP/1.1')} times: {seen}")
        check(post in (502, 503), f"the POST got {post}, want a gateway error")
        with Conn("127.0.0.1", gw, timeout=15) as c:
            c.send(b"GET /warm HTTP/1.1\r\nhost: retry.test\r\n\r\n")
            check(c.read_response().status == 200, "second warm-up GET failed")
            c.send(b"GET /act HTTP/1.1\r\nhost: retry.test\r\n\r\n")
            got = c.read_response().status
        check(got == 200 and seen.count("GET /act HTTP/1.1") == 2,
              f"the GET got {got}, seen {seen}: want it replayed once on a new connection")
    finally:
        stop.append(1)
        t.join(5)
        ls.close()


def trickle_head(c, head, rest):
    """A response head that comes one header line every 200 ms for 5 s."""
    try:
        c.sendall(b"HTTP/1.1 200 OK\r\n")
        for i in range(25):
            time.sleep(0.2)
            c.sendall(b"x-slow-%d: 1\r\n" % i)
        c.sendall(b"content-length: 2\r\nconnection: close\r\n\r\nok")
    except OSError:
        pass


@_test
def per_try_timeout_trickled_head(env):
    """perTryTimeout is absolute until the response head, as Envoy's: an
    upstream that trickles its head a line at a time does not stretch the try
    (each byte re-armed it before, and the 5 s head was served)."""
    up = ScriptedUpstream(trickle_head, fail_on=(1, 2, 3))
    try:
        gw = gateway_to(env, up.port, "    retries: {attempts: 1, perTryTimeout: 600ms, retryOn: 5xx}\n",
                        timeouts={"upstreamResponse": "20s"})
        t0 = time.monotonic()
        r = http_get(gw, "/slow-head", timeout=30)
        took = time.monotonic() - t0
        check(r.status == 504, f"got {r.status} after {took:.1f} s: want 504 from two tries of 600 ms")
        check(took < 4.5, f"the 504 took {took:.1f} s: the tries were stretched by the trickled head")
    finally:
        up.close()


def slow_body(c, head, rest):
    """The response head at once, its body 1.5 s later."""
    try:
        c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\nconnection: close\r\n\r\nfirst")
        time.sleep(1.5)
        c.sendall(b"-last")
    except OSError:
        pass


@_test
def per_try_timeout_ends_with_the_head(env):
    """perTryTimeout bounds a try until its response head, as Envoy's (its
    UpstreamRequest ignores the per-try timer once the response began): a
    body that takes 1.5 s after the head, with a per-try timeout of 500 ms
    and no other timeout that short, comes whole."""
    up = ScriptedUpstream(slow_body, fail_on=(1, 2, 3))
    try:
        gw = gateway_to(env, up.port, "    retries: {attempts: 1, perTryTimeout: 500ms, retryOn: 5xx}\n",
                        timeouts={"upstreamResponse": "20s"})
        try:
            r = http_get(gw, "/slow-body", timeout=30)
        except EOFError:
            raise TestFailure("a body slower than the per-try timeout after its head was cut (connection closed)")
        check(r.status == 200 and r.body == b"first-last",
              f"a body slower than the per-try timeout after its head: {r.status} {r.body!r}")
    finally:
        up.close()


def answer_or_cut(gw, path):
    """GET path: "STATUS BODY", or "cut: why" when the response was cut."""
    with Conn("127.0.0.1", gw, timeout=20) as c:
        c.send(b"GET %s HTTP/1.1\r\nHost: retry.test\r\n\r\n" % path.encode())
        try:
            r = c.read_response()
            return f"{r.status} {r.body!r}"
        except (TestFailure, OSError, EOFError) as e:
            return f"cut: {e}"


@_test
def timeouts_route_over_upstream_response(env):
    """timeouts.upstreamResponse bounds the wait for a response head only on
    routes without a timeout of their own: a route's timeout longer than it
    is the bound (Istio's route timeout, Envoy's router), where the appliance's
    60 s cut every long report at 60 s. Between a response's reads only the
    stream idle timeout (timeouts.streamIdle, Envoy's) applies: a pause longer
    than upstreamResponse is served whole (it was cut, UT); a pause past
    streamIdle cuts the response, logged SI."""
    log = env.path("access.log")

    def answer(c, head, rest):
        path = head.split(" ")[1]
        if path.startswith("/wait/"):
            time.sleep(2)
            c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nlate")
        elif path.startswith("/gap/"):
            c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\na")
            time.sleep(float(path.split("/")[2]))
            c.sendall(b"b")
        time.sleep(0.5)

    up = ScriptedUpstream(answer, fail_on=range(1, 100))
    try:
        gw = free_port()
        routes = (f"  - match: [{{uri: {{prefix: /wait/long}}}}]\n    timeout: 6s\n"
                  f"    route: [{{destination: {{host: {SVC}}}}}]\n"
                  f"  - route: [{{destination: {{host: {SVC}}}}}]\n")
        fmt = "%RESPONSE_CODE% %RESPONSE_FLAGS% %REQ(:PATH)%"
        env.start_gateway(env.write("isthmus.yaml", docs(
            appliance(env, workers=1, timeouts={"upstreamResponse": "1s", "streamIdle": "3s"},
                      extra=f"  accessLog: {{path: {log}, format: text, textFormat: \"{fmt}\"}}\n"),
            gateway(gw), virtual_service("vs", ["*"], routes),
            service_entry("svc", SVC, [{"address": UP_ADDR, "port": up.port}]))), gw)
        t0 = time.monotonic()
        r = http_get(gw, "/wait/long", timeout=20)
        check(r.status == 200 and r.body == b"late", f"a 2 s answer under a 6 s route timeout: {r.status} "
              f"{r.body!r} after {time.monotonic() - t0:.1f} s")
        t0 = time.monotonic()
        r = http_get(gw, "/wait/plain", timeout=20)
        took = time.monotonic() - t0
        check(r.status == 504 and took < 1.9, f"a 2 s answer on a route without timeout: {r.status} after "
              f"{took:.1f} s, want 504 at upstreamResponse (1 s)")
        r = http_get(gw, "/gap/1.6", timeout=20)
        check(r.status == 200 and r.body == b"ab", f"a 1.6 s pause between reads: {r.status} {r.body!r}")
        t0 = time.monotonic()
        got = answer_or_cut(gw, "/gap/5")
        took = time.monotonic() - t0
        check(not got.endswith("b'ab'") and 2.5 <= took < 4.8,
              f"a 5 s pause between reads: {got} after {took:.1f} s, want the response cut at streamIdle (3 s)")
        lines = poll(lambda: (lambda ls: ls if len(ls) >= 4 else None)(file_lines(log)), 5, what="four log lines")
        check(lines == ["200 - /wait/long", "504 UT /wait/plain", "200 - /gap/1.6", "200 SI /gap/5"],
              f"access log: {lines}")
    finally:
        up.close()


@_test
def route_timeout_mid_body_not_charged(env):
    """A route's timeout that ends a response after its head (the upstream
    stalls mid-body) cuts it (UT) without charging the endpoint, as Envoy's
    router charges only a timeout before the head: under outlier detection
    that ejects at the first error, the only endpoint kept serving (it was
    ejected, and every client got 503)."""
    log = env.path("access.log")

    def answer(c, head, rest):
        if head.split(" ")[1].startswith("/stall"):
            c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nfive!")
            time.sleep(4)
        else:
            c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            time.sleep(0.3)

    up = ScriptedUpstream(answer, fail_on=range(1, 100))
    try:
        gw = free_port()
        dr = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: dr}\n"
              f"spec:\n  host: {SVC}\n  trafficPolicy:\n    outlierDetection: {{consecutiveGatewayErrors: 1, "
              "consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 100}\n")
        routes = f"  - timeout: 1s\n    route: [{{destination: {{host: {SVC}}}}}]\n"
        fmt = "%RESPONSE_CODE% %RESPONSE_FLAGS% %REQ(:PATH)%"
        env.start_gateway(env.write("isthmus.yaml", docs(
            appliance(env, workers=1, timeouts={"streamIdle": "0s"},
                      extra=f"  accessLog: {{path: {log}, format: text, textFormat: \"{fmt}\"}}\n"),
            gateway(gw), virtual_service("vs", ["*"], routes), dr,
            service_entry("svc", SVC, [{"address": UP_ADDR, "port": up.port}]))), gw)
        got = answer_or_cut(gw, "/stall")
        check(got.startswith("cut"), f"a response stalled past the route's timeout: {got}")
        poll(lambda: "200 UT /stall" in file_lines(log), 5, what="the stalled response's line")
        r = http_get(gw, "/after", timeout=20)
        check(r.status == 200 and r.body == b"ok", f"the endpoint after the mid-body timeout: {r}")
    finally:
        up.close()


@_test
def route_timeout_bounds_slow_reader(env):
    """A route's timeout bounds the exchange whatever the client's pace, as
    Envoy's router keeps it until the upstream's end: a client that reads the
    head of a large response and then nothing has its response cut at the
    route's timeout (UT), not kept until the connection's idle timeout."""
    log = env.path("access.log")
    up = env.upstream([f"{UP_ADDR}:0=up"], name="up")["up"]
    gw = free_port()
    fmt = "%RESPONSE_CODE% %RESPONSE_FLAGS% %REQ(:PATH)%"
    routes = f"  - timeout: 1s\n    route: [{{destination: {{host: {SVC}}}}}]\n"
    env.start_gateway(env.write("isthmus.yaml", docs(
        appliance(env, workers=1, timeouts={"idle": "30s", "streamIdle": "30s"},
                  extra=f"  accessLog: {{path: {log}, format: text, textFormat: \"{fmt}\"}}\n"),
        gateway(gw), virtual_service("vs", ["*"], routes),
        service_entry("svc", SVC, [{"address": UP_ADDR, "port": up}]))), gw)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(20)
    try:
        s.connect(("127.0.0.1", gw))
        t0 = time.monotonic()
        s.sendall(b"GET /bytes/200000000 HTTP/1.1\r\nHost: retry.test\r\n\r\n")
        check(s.recv(64).startswith(b"HTTP/1.1 200"), "the response's head")
        poll(lambda: "200 UT /bytes/200000000" in file_lines(log), 10,
             what="the slow reader's response cut at the route's timeout")
        took = time.monotonic() - t0
        check(took < 8, f"cut after {took:.1f} s, want about the route's 1 s")
    finally:
        s.close()


@_test
def route_timeout_while_waiting_for_connection(env):
    """The route's timeout ending a wait for a connection (maxConnections
    reached) is a timeout, 504 with flag UT as Envoy gives it, not an overflow."""
    log = env.path("access.log")
    held = threading.Event()

    def hold(c, head, rest):  # keeps the one connection busy
        held.set()
        time.sleep(4)
        c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")

    up = ScriptedUpstream(hold)
    try:
        gw = free_port()
        dr = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: dr}\n"
              f"spec:\n  host: {SVC}\n  trafficPolicy:\n    connectionPool:\n"
              "      tcp: {maxConnections: 1, connectTimeout: 10s}\n      http: {http1MaxPendingRequests: 10}\n")
        routes = (f"  - match: [{{uri: {{prefix: /timed}}}}]\n    timeout: 700ms\n"
                  f"    route: [{{destination: {{host: {SVC}}}}}]\n"
                  f"  - route: [{{destination: {{host: {SVC}}}}}]\n")
        fmt = "%RESPONSE_CODE% %RESPONSE_FLAGS% %REQ(:PATH)%"
        conf = env.write("isthmus.yaml", docs(
            appliance(env, workers=1, timeouts={"upstreamResponse": "10s", "upstreamConnect": "10s"},
                      extra=f"  accessLog: {{path: {log}, format: text, textFormat: \"{fmt}\"}}\n"),
            gateway(gw), virtual_service("vs", ["*"], routes),
            service_entry("svc", SVC, [{"address": UP_ADDR, "port": up.port}]), dr))
        env.start_gateway(conf, gw)
        first = {}
        t = threading.Thread(target=lambda: first.update(r=http_get(gw, "/hold", timeout=20)), daemon=True)
        t.start()
        check(held.wait(10), "the first request never reached the upstream")
        t0 = time.monotonic()
        r = http_get(gw, "/timed", timeout=20)
        took = time.monotonic() - t0
        check(r.status == 504, f"got {r.status} after {took:.1f} s, want 504 (route timeout while waiting)")
        check(took < 3.5, f"the 504 came after {took:.1f} s, not at the route's 700 ms")
        got = poll(lambda: [ln for ln in file_lines(log) if ln.endswith("/timed")] or None, 5,
                   what="the access log line of /timed")
        check(got == ["504 UT /timed"], f"access log: {got}, want '504 UT /timed'")
        t.join(20)
        check(first.get("r") is not None and first["r"].status == 200, f"the held request: {first}")
    finally:
        up.close()


@_test
def retry_limits_flagged(env):
    """Retries that run out are flagged in the access log as Envoy flags them:
    URX when the policy wanted one more try than its attempts, UO when the
    cluster's maxRetries (the retry circuit breaker) refused one. Two requests
    to an upstream slower than the per-try timeout, at once, maxRetries 1:
    one takes the only retry slot and tries three times (504 UT,URX), the
    other is refused its retry (504 UT,UO, one try)."""
    log = env.path("access.log")
    up = env.upstream([f"{UP_ADDR}:0=a"], name="a")["a"]
    gw = free_port()
    dr = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: dr}\n"
          f"spec:\n  host: {SVC}\n  trafficPolicy:\n    connectionPool:\n      http: {{maxRetries: 1}}\n")
    routes = (f"  - route: [{{destination: {{host: {SVC}}}}}]\n"
              "    retries: {attempts: 2, perTryTimeout: 400ms, retryOn: 5xx}\n")
    conf = env.write("isthmus.yaml", docs(
        appliance(env, workers=1, extra=f"  accessLog: {{path: {log}, format: json}}\n"),
        gateway(gw), virtual_service("vs", ["*"], routes),
        service_entry("svc", SVC, [{"address": UP_ADDR, "port": up}]), dr))
    env.start_gateway(conf, gw)
    got = {}

    def one(path):
        got[path] = http_get(gw, path, timeout=20)

    ts = [threading.Thread(target=one, args=(p,), daemon=True) for p in ("/delay/5000?a", "/delay/5000?b")]
    for t in ts:
        t.start()
    for t in ts:
        t.join(20)
    check(all(r is not None and r.status == 504 for r in got.values()) and len(got) == 2,
          f"want two 504s (per-try timeouts), got {got}")
    recs = poll(lambda: [json.loads(ln) for ln in file_lines(log)] if len(file_lines(log)) >= 2 else None, 5,
                what="the two access log lines")
    seen = sorted((r["flags"], r["attempts"]) for r in recs)
    check(seen == [("UT,UO", 1), ("UT,URX", 3)], f"access log flags and attempts {seen}, want "
          "[('UT,UO', 1), ('UT,URX', 3)]")


@_test
def retry_exhausted_after_one_retry_flagged(env):
    """attempts: 1 (one retry) that runs out is URX too, as Envoy flags any
    policy's last try that still wanted a retry: a 503 endpoint tried twice
    logs 503 URX with 2 attempts; a request answered at its first try has no
    flag."""
    log = env.path("access.log")
    up = env.upstream([f"{UP_ADDR}:0=a"], name="a")["a"]
    gw = free_port()
    routes = (f"  - route: [{{destination: {{host: {SVC}}}}}]\n"
              "    retries: {attempts: 1, retryOn: 5xx}\n")
    env.start_gateway(env.write("isthmus.yaml", docs(
        appliance(env, workers=1, extra=f"  accessLog: {{path: {log}, format: json}}\n"),
        gateway(gw), virtual_service("vs", ["*"], routes),
        service_entry("svc", SVC, [{"address": UP_ADDR, "port": up}]))), gw)
    check(http_get(gw, "/status/503").status == 503, "the 503 endpoint")
    check(http_get(gw, "/ok").status == 200, "a plain request")
    recs = poll(lambda: [json.loads(ln) for ln in file_lines(log)] if len(file_lines(log)) >= 2 else None, 5,
                what="the two access log lines")
    seen = [(r["status"], r["flags"], r["attempts"]) for r in recs]
    check(seen == [(503, "URX", 2), (200, "-", 1)], f"access log status, flags and attempts {seen}")


@_test
def retry_budget_flagged(env):
    """trafficPolicy.retryBudget (Envoy's retry budget, which replaces
    maxRetries): retries in flight at most max(percent of the requests in
    flight and pending, minRetryConcurrency). Two requests to an upstream
    slower than the per-try timeout, at once: with percent 0 and a minimum
    of 1 (and maxRetries 100, which the budget overrides) one is refused its
    retry (504 UT,UO); with percent 100, two requests in flight allow two
    retries, and both try three times (504 UT,URX)."""
    log = env.path("access.log")
    up = env.upstream([f"{UP_ADDR}:0=a"], name="a")["a"]
    gw = free_port()
    routes = (f"  - route: [{{destination: {{host: {SVC}}}}}]\n"
              "    retries: {attempts: 2, perTryTimeout: 400ms, retryOn: 5xx}\n")

    def write(percent):
        dr = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: dr}\n"
              f"spec:\n  host: {SVC}\n  trafficPolicy:\n    connectionPool:\n      http: {{maxRetries: 100}}\n"
              f"    retryBudget: {{percent: {percent}, minRetryConcurrency: 1}}\n")
        return env.write("isthmus.yaml", docs(
            appliance(env, workers=1, extra=f"  accessLog: {{path: {log}, format: json}}\n"),
            gateway(gw), virtual_service("vs", ["*"], routes),
            service_entry("svc", SVC, [{"address": UP_ADDR, "port": up}]), dr))

    env.start_gateway(write(0), gw)
    for percent, want in ((0, [("UT,UO", 1), ("UT,URX", 3)]), (100, [("UT,URX", 3), ("UT,URX", 3)])):
        if percent:
            write(percent)
            check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), "reload refused")
        before = len(file_lines(log))
        got = {}

        def one(path):
            got[path] = http_get(gw, path, timeout=20)

        ts = [threading.Thread(target=one, args=(p,), daemon=True)
              for p in (f"/delay/5000?a{percent}", f"/delay/5000?b{percent}")]
        for t in ts:
            t.start()
        for t in ts:
            t.join(20)
        check(len(got) == 2 and all(r is not None and r.status == 504 for r in got.values()),
              f"percent {percent}: want two 504s (per-try timeouts), got {got}")
        recs = poll(lambda: [json.loads(ln) for ln in file_lines(log)[before:]]
                    if len(file_lines(log)) >= before + 2 else None, 5, what="the two access log lines")
        seen = sorted((r["flags"], r["attempts"]) for r in recs)
        check(seen == want, f"percent {percent}: access log flags and attempts {seen}, want {want}")
