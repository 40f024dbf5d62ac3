# SPDX-License-Identifier: Apache-2.0
"""Integration tests of request mirroring (issue 12, deliverable 7): Istio's
mirror, mirrorPercentage, mirrors[]. A copy of each request goes to the mirror
cluster with "-shadow" after the host of its Host (:authority); its response is
discarded; a mirror that is down, failing or slow never changes the original's
status or latency; copies that do not fit the bounds (limits.mirrorMaxInFlight,
limits.mirrorMaxBodyBytes) are dropped and counted in /metrics.

The primary is the C test upstream; a mirror is either another C upstream
(counting its requests on /__ctl/count) or a recorder in this process that
keeps what it got (method, path, Host, body).

Registered into run.py's list by register(test)."""

import http.server
import re
import socketserver
import threading
import time
import urllib.request

from harness import (Conn, Registry, TestFailure, appliance, check, curl, docs, free_port, gateway, have,
                     poll, service_entry, virtual_service)
from test_h2 import need_tools

_test = Registry()
register = _test.register

SVC = "main.test.internal"
MIR = "mirror.test.internal"
MIR2 = "mirror2.test.internal"


class Recorder:
    """A mirror upstream in this process: records each request; answers
    status after delay seconds."""

    def __init__(self, addr, status=200, delay=0.0):
        self.got = []
        self.lock = threading.Lock()
        rec = self

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def handle_one(self):
                n = int(self.headers.get("content-length") or 0)
                body = self.rfile.read(n) if n else b""
                if self.headers.get("transfer-encoding", "").lower() == "chunked":
                    body = b""
                    while True:
                        size = int(self.rfile.readline().split(b";")[0], 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b""):
                                pass
                            break
                        body += self.rfile.read(size)
                        self.rfile.readline()
                with rec.lock:
                    rec.got.append((self.command, self.path, self.headers.get("host"), body))
                if rec.delay:
                    time.sleep(rec.delay)
                out = b"mirror answer\n"
                try:
                    self.send_response(rec.status)
                    self.send_header("content-length", str(len(out)))
                    self.end_headers()
                    self.wfile.write(out)
                except OSError:
                    pass  # isthmus gave up on a slow copy

            do_GET = do_POST = do_PUT = handle_one

        class S(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True
            allow_reuse_address = True
            request_queue_size = 128  # socketserver's 5 drops connects on a busy machine

            def handle_error(self, request, client_address):
                pass  # a copy the gateway gave up on (a reset): nothing to report

        self.status, self.delay = status, delay
        self.srv = S((addr, 0), H)
        self.port = self.srv.server_address[1]
        threading.Thread(target=self.srv.serve_forever, daemon=True).start()

    def count(self):
        with self.lock:
            return len(self.got)

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()


def recorder(env, addr, **kw):
    r = Recorder(addr, **kw)
    env.cleanups.append(r.close)
    return r


def metrics(port):
    """/metrics as {"name{labels}": value}."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            k, _, v = line.rpartition(" ")
            out[k] = float(v)
    return out


def dropped(port, reason):
    return metrics(port).get(f'isthmus_mirror_dropped_total{{reason="{reason}"}}', 0)


def setup(env, http_yaml, mirrors, limits="", workers=1):
    """The C upstream "up" behind SVC (127.0.0.2); mirrors: {host: (addr, port)};
    the gateway with routes http_yaml and an admin listener. Returns
    (gateway port, admin port)."""
    up = env.up_port = env.upstream(["127.0.0.2:0=up"], name="up")["up"]
    gw, admin = free_port(), free_port()
    extra = f"  admin: {{address: 127.0.0.1:{admin}}}\n"
    if limits:
        extra += f"  limits: {{{limits}}}\n"
    parts = [appliance(env, workers=workers, extra=extra), gateway(gw),
             virtual_service("vs", ["*"], http_yaml),
             service_entry("svc", SVC, [{"address": "127.0.0.2", "port": up}])]
    for i, (host, (addr, port)) in enumerate(mirrors.items()):
        parts.append(service_entry(f"mir{i}", host, [{"address": addr, "port": port}]))
    env.start_gateway(env.write("isthmus.yaml", docs(*parts)), gw)
    return gw, admin


def poll_quietly(cond, timeout):
    """Whether cond() came true within timeout seconds (the caller says what
    it saw when it did not)."""
    try:
        return poll(cond, timeout)
    except TestFailure:
        return False


def up_count(port, addr="127.0.0.2"):
    with Conn(addr, port) as c:
        return int(c.request("GET", "/__ctl/count").body)


def route(mirror_yaml, extra=""):
    return (f"  - route: [{{destination: {{host: {SVC}}}}}]\n{mirror_yaml}{extra}")


@_test
def mirror_slow_upload_copied(env):
    """A copy's bound (the route's timeout) runs from the end of the request,
    as the original's does: an upload slower than the route's timeout is
    answered and copied. The copy's bound ran from the request head, so the
    copy, started once the body was whole, had timed out already (dropped,
    "failed")."""
    rec = recorder(env, "127.0.0.5")
    gw, admin = setup(env, route(f"    mirror: {{host: {MIR}}}\n", "    timeout: 1s\n"),
                      {MIR: ("127.0.0.5", rec.port)})
    with Conn("127.0.0.1", gw, timeout=10) as c:
        c.send(b"POST /echo HTTP/1.1\r\nHost: x\r\ncontent-length: 6\r\n\r\n")
        for b in b"abcdef":  # a slow client: 1.8 s for its body
            time.sleep(0.3)
            c.send(bytes([b]))
        r = c.read_response()
        check(r.status == 200, f"the original: {r}")
    poll(lambda: rec.count() == 1, 10, what="the slow upload's copy at the mirror")
    check(rec.got[0][0] == "POST" and rec.got[0][3] == b"abcdef", f"the copy: {rec.got}")
    check(dropped(admin, "failed") == 0, f"copies dropped as failed: {dropped(admin, 'failed')}")


@_test
def mirror_bounded_by_route_timeout(env):
    """A copy is bounded by its route's timeout (Envoy's shadow request takes
    the route's global timeout, router.cc: shadow_options.timeout), not by
    timeouts.upstreamResponse (3 s here): with a route timeout of 1 s, a
    mirror that answers after 2.5 s sees its copy dropped as failed at 1 s,
    and no mirror response is counted; the original is answered at once.
    (A copy that outlives its route's timeout holds its place under
    limits.mirrorMaxInFlight and a connection to the mirror that much longer.)"""
    rec = recorder(env, "127.0.0.5", delay=2.5)
    gw, admin = setup(env, route(f"    mirror: {{host: {MIR}}}\n", "    timeout: 1s\n"),
                      {MIR: ("127.0.0.5", rec.port)})
    t = time.monotonic()
    with Conn("127.0.0.1", gw, timeout=10) as c:
        r = c.request("GET", "/bounded", "shop.example.com")
    check(r.status == 200 and r.body.startswith(b"up "), f"the original: {r.status} {r.body!r}")
    check(time.monotonic() - t < 0.8, f"the original took {time.monotonic() - t:.2f}s")
    poll(lambda: rec.count() == 1, 5, what="the copy at the mirror")
    def ended():
        m = metrics(admin)
        return (m.get('isthmus_mirror_dropped_total{reason="failed"}', 0) +
                m.get('isthmus_mirror_responses_total{code_class="2xx"}', 0)) >= 1
    poll(ended, 6, what="the copy's end (dropped or answered)")
    m = metrics(admin)
    failed = m.get('isthmus_mirror_dropped_total{reason="failed"}', 0)
    ok = m.get('isthmus_mirror_responses_total{code_class="2xx"}', 0)
    check(failed == 1 and ok == 0,
          f"a copy whose mirror answers after 2.5 s under a route timeout of 1 s: failed {failed}, "
          f"answered {ok}: the copy was not bounded by the route's timeout")
    check(time.monotonic() - t < 2.3, f"the copy ended {time.monotonic() - t:.2f}s after the request "
                                       f"(route timeout 1 s)")


@_test
def mirror_skips_upgrades(env):
    """An Upgrade request (WebSocket) is not mirrored (worker/mirror.c: a copy
    would take the mirror's connection with it): the mirror gets nothing and
    no copy is counted, while a plain request on the same route is copied."""
    rec = recorder(env, "127.0.0.5")
    gw, admin = setup(env, route(f"    mirror: {{host: {MIR}}}\n"), {MIR: ("127.0.0.5", rec.port)})
    with Conn("127.0.0.1", gw, timeout=5) as c:
        c.send(b"GET /ws HTTP/1.1\r\nHost: shop.example.com\r\nConnection: Upgrade\r\n"
               b"Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
               b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
        try:
            c.read_response()
        except Exception:
            pass
    with Conn("127.0.0.1", gw, timeout=5) as c:
        r = c.request("GET", "/plain", "shop.example.com")
        check(r.status == 200, f"the plain request: {r.status}")
    poll(lambda: rec.count() >= 1, 5, what="the plain request's copy")
    time.sleep(0.5)  # a window for a copy that must not come (no condition to poll)
    paths = [g[1] for g in rec.got]
    check(paths == ["/plain"], f"the mirror got {paths}: an Upgrade request was mirrored")
    sent = metrics(admin).get("isthmus_mirror_requests_total", 0)
    check(sent == 1, f"isthmus_mirror_requests_total {sent}, want 1 (the plain request's copy only)")


@_test
def mirror_copies_every_request(env):
    """Every request, GET and POST, reaches the mirror with the same method,
    path and body and the Host "<host>-shadow[:port]"; the client's answers
    are the primary's."""
    rec = recorder(env, "127.0.0.5")
    gw, admin = setup(env, route(f"    mirror: {{host: {MIR}}}\n"), {MIR: ("127.0.0.5", rec.port)})
    n = 20
    with Conn("127.0.0.1", gw) as c:
        for i in range(n):
            host = "shop.example.com:8080" if i % 2 else "shop.example.com"
            if i % 4 < 2:
                r = c.request("GET", f"/get/{i}?q={i}", host)
            else:
                c.send(f"POST /post/{i} HTTP/1.1\r\nHost: {host}\r\ncontent-length: 7\r\n\r\nbody-{i:02d}"
                       .encode())
                r = c.read_response()
            check(r.status == 200, f"request {i}: status {r.status}")
            check(r.body.startswith(b"up "), f"request {i}: answer not from the primary: {r.body!r}")
    # Every copy sent answered: none is on its way to the mirror still.
    poll(lambda: metrics(admin).get('isthmus_mirror_responses_total{code_class="2xx"}') == n, 10,
         what=f"{n} copies answered by the mirror")
    got = sorted(rec.got, key=lambda g: int(re.search(r"/(\d+)", g[1]).group(1)))
    check(len(got) == n, f"the mirror got {len(got)} requests, expected {n}")
    for i, (method, path, host, body) in enumerate(got):
        want_host = "shop.example.com-shadow:8080" if i % 2 else "shop.example.com-shadow"
        check(host == want_host, f"copy {i}: Host {host!r}, expected {want_host!r}")
        if i % 4 < 2:
            check((method, path, body) == ("GET", f"/get/{i}?q={i}", b""), f"copy {i}: {method} {path} {body!r}")
        else:
            check((method, path, body) == ("POST", f"/post/{i}", f"body-{i:02d}".encode()),
                  f"copy {i}: {method} {path} {body!r}")
    check(up_count(env.up_port) == n, "the primary did not get each request once")
    m = metrics(admin)
    check(m.get("isthmus_mirror_requests_total") == n, f"isthmus_mirror_requests_total {m.get('isthmus_mirror_requests_total')}")
    # The route's and the worker's response counters count the originals only.
    ok2xx = m.get('isthmus_responses_total{code_class="2xx"}')
    check(ok2xx == n, f"isthmus_responses_total 2xx {ok2xx}")


def latencies(gw, path, n, pause=0.0):
    out = []
    with Conn("127.0.0.1", gw) as c:
        for _ in range(n):
            time.sleep(pause)
            t = time.monotonic()
            r = c.request("GET", path, "shop.example.com")
            out.append(time.monotonic() - t)
            check(r.status == 200 and r.body.startswith(b"up "), f"{path}: {r.status} {r.body!r}")
    return sorted(out)


@_test
def mirror_failures_never_reach_the_client(env):
    """A mirror that is down, answers 500, or is slow: the original's status
    and latency are unchanged (compared with an unmirrored route); the slow
    mirror's copies over limits.mirrorMaxInFlight (8) are dropped and counted, the
    down mirror's counted as failed."""
    slow = recorder(env, "127.0.0.5", delay=2.0)
    bad = recorder(env, "127.0.0.6", status=500)
    down = free_port("127.0.0.7")
    def on(prefix, host):
        return (f"  - match: [{{uri: {{prefix: {prefix}}}}}]\n"
                f"    route: [{{destination: {{host: {SVC}}}}}]\n    mirror: {{host: {host}}}\n")

    yaml = on("/slow", MIR) + on("/bad", MIR2) + on("/down", "down.test.internal") + route("")
    gw, admin = setup(env, yaml, {MIR: ("127.0.0.5", slow.port), MIR2: ("127.0.0.6", bad.port),
                                  "down.test.internal": ("127.0.0.7", down)},
                      limits="mirrorMaxInFlight: 8")
    base = latencies(gw, "/plain", 30)
    # The cap is per worker, for every mirror: the slow mirror comes last.
    for path in ("/bad", "/down", "/slow"):
        # Paced, so that the fast mirrors' copies end before the next one.
        lat = latencies(gw, path, 30, pause=0.02)
        med, bmed = lat[len(lat) // 2], base[len(base) // 2]
        check(lat[-1] < 1.0, f"{path}: slowest request took {lat[-1]:.3f}s (the slow mirror takes 2s)")
        check(med < bmed + 0.05, f"{path}: median {med * 1000:.1f}ms vs {bmed * 1000:.1f}ms unmirrored")
    poll(lambda: bad.count() == 30, 5, what="30 copies at the failing mirror")
    check(slow.count() <= 8, f"the slow mirror got {slow.count()} copies at once, the cap is 8")
    m = metrics(admin)
    capped = m.get('isthmus_mirror_dropped_total{reason="in_flight_limit"}', 0)
    check(capped >= 22 and capped + slow.count() == 30, f"in_flight_limit drops {capped}, slow mirror {slow.count()}")
    poll(lambda: dropped(admin, "failed") >= 30, 5, what="the down mirror's copies counted as failed")
    poll(lambda: metrics(admin).get('isthmus_mirror_responses_total{code_class="5xx"}') == 30, 5,
         what="the failing mirror's 500s counted")
    check(metrics(admin).get('isthmus_responses_total{code_class="5xx"}', 0) == 0,
          "a mirror's 5xx reached the worker's response counters")


@_test
def mirror_percentage(env):
    """mirrorPercentage: 50 over a few thousand requests: within ±3 points.
    The in-flight bound is raised out of the way: a mirror upstream that
    stalls for a moment on a busy machine must not drop copies here (the
    bound has its own test)."""
    mup = env.upstream(["127.0.0.5:0=mirror"], name="mirror")["mirror"]
    gw, admin = setup(env, route(f"    mirror: {{host: {MIR}}}\n    mirrorPercentage: {{value: 50}}\n"),
                      {MIR: ("127.0.0.5", mup)}, limits="mirrorMaxInFlight: 65536", workers=2)
    n = 4000
    if have("wrk"):
        import subprocess
        subprocess.run(["wrk", "-t2", "-c8", "-d3s", f"http://127.0.0.1:{gw}/"], stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL, timeout=30)
    else:
        with Conn("127.0.0.1", gw) as c:
            for _ in range(n):
                c.request("GET", "/", "a")
    def settled():
        m = metrics(admin)
        done = sum(v for k, v in m.items() if k.startswith("isthmus_mirror_responses_total") or
                   k == 'isthmus_mirror_dropped_total{reason="failed"}')
        return m.get("isthmus_mirror_requests_total", 0) == done
    try:
        poll(settled, 10, what="every copy sent answered or failed")
    except TestFailure as e:
        raise TestFailure(f"{e}: {[(k, v) for k, v in metrics(admin).items() if 'mirror' in k]}")
    prim = up_count(env.up_port)
    mir = up_count(mup, "127.0.0.5")
    m = metrics(admin)
    check(prim >= 2000, f"only {prim} requests were sent")
    # A copy that failed on a busy machine (a connect past its timeout) was
    # still drawn and sent: the share is of the copies sent; none may be
    # left unsent, and the mirror got every copy sent that did not fail.
    unsent = {k: v for k, v in m.items() if k.startswith("isthmus_mirror_dropped_total") and v and
              k != 'isthmus_mirror_dropped_total{reason="failed"}'}
    check(not unsent, f"copies were not sent: {unsent}")
    sent, failed = m.get("isthmus_mirror_requests_total", 0), m.get('isthmus_mirror_dropped_total{reason="failed"}', 0)
    check(mir >= sent - failed, f"the mirror got {mir} of the {sent} copies sent, {failed} of them failed")
    share = 100.0 * sent / prim
    check(47 <= share <= 53, f"mirrored {sent} of {prim}: {share:.1f}%")


@_test
def mirror_two_destinations(env):
    """mirrors[] with two destinations (100 % and the default): each gets every request."""
    a = recorder(env, "127.0.0.5")
    b = recorder(env, "127.0.0.6")
    yaml = route("    mirrors:\n"
                 f"    - destination: {{host: {MIR}}}\n      percentage: {{value: 100}}\n"
                 f"    - destination: {{host: {MIR2}}}\n")
    gw, admin = setup(env, yaml, {MIR: ("127.0.0.5", a.port), MIR2: ("127.0.0.6", b.port)})
    with Conn("127.0.0.1", gw) as c:
        for i in range(10):
            r = c.request("GET", f"/x/{i}", "two.example")
            check(r.status == 200 and r.body.startswith(b"up "), f"{r.status} {r.body!r}")
    if not poll_quietly(lambda: a.count() == 10 and b.count() == 10, 10):
        m = metrics(admin)
        check(False, f"copies at the mirrors: {a.count()} and {b.count()}, want 10 each; "
                     f"{ {k: v for k, v in m.items() if k.startswith('isthmus_mirror')} }")
    check({g[2] for g in a.got + b.got} == {"two.example-shadow"}, f"hosts {set(g[2] for g in a.got)}")
    check(sorted(g[1] for g in a.got) == sorted(f"/x/{i}" for i in range(10)), "paths differ")


@_test
def mirror_body_bound(env):
    """limits.mirrorMaxBodyBytes: a body within it is mirrored; one over it,
    with a length or chunked, is not, and is counted; the original goes on."""
    rec = recorder(env, "127.0.0.5")
    gw, admin = setup(env, route(f"    mirror: {{host: {MIR}}}\n"), {MIR: ("127.0.0.5", rec.port)},
                      limits="mirrorMaxBodyBytes: 1000")
    small, big = b"s" * 1000, b"b" * 5000
    with Conn("127.0.0.1", gw) as c:
        for body in (small, big):
            c.send(f"POST /echo HTTP/1.1\r\nHost: b.example\r\ncontent-length: {len(body)}\r\n\r\n".encode() + body)
            r = c.read_response()
            check(r.status == 200 and r.body == body, f"POST of {len(body)}: {r.status}, {len(r.body)} bytes")
        chunks = b"".join(b"%x\r\n" % 1000 + b"c" * 1000 + b"\r\n" for _ in range(3)) + b"0\r\n\r\n"
        c.send(b"POST /echo HTTP/1.1\r\nHost: b.example\r\ntransfer-encoding: chunked\r\n\r\n" + chunks)
        r = c.read_response()
        check(r.status == 200 and r.body == b"c" * 3000, f"chunked POST: {r.status}, {len(r.body)} bytes")
    poll(lambda: dropped(admin, "body_too_large") == 2, 5, what="two copies dropped as too large")
    poll(lambda: metrics(admin).get('isthmus_mirror_responses_total{code_class="2xx"}') ==
         metrics(admin).get("isthmus_mirror_requests_total"), 5, what="every copy sent answered by the mirror")
    check([len(g[3]) for g in rec.got] == [1000], f"the mirror got bodies of {[len(g[3]) for g in rec.got]}")


@_test
def mirror_h2_client(env):
    """Requests of HTTP/2 clients are mirrored too, :authority with -shadow."""
    need_tools("curl")
    rec = recorder(env, "127.0.0.5")
    gw, admin = setup(env, route(f"    mirror: {{host: {MIR}}}\n"), {MIR: ("127.0.0.5", rec.port)})
    # One curl per request: curl 7.88 fails a second POST on a reused h2c
    # connection before sending it ("Error in the HTTP2 framing layer").
    for i in range(5):
        rc, out, err = curl(["--http2-prior-knowledge", "--resolve", f"h2.example:{gw}:127.0.0.1",
                             "-d", "h2body", "-w", "\n%{http_version} %{http_code}",
                             f"http://h2.example:{gw}/h2/{i}"])
        check(rc == 0, f"curl: {err}")
        check(out.startswith("up ") and out.endswith("\n2 200"), f"curl: {out!r}")
    poll(lambda: rec.count() == 5, 10, what="5 copies at the mirror")
    for method, path, host, body in rec.got:
        check(host == f"h2.example-shadow:{gw}", f"Host {host!r}")
        check(method == "POST" and path.startswith("/h2/") and body == b"h2body", f"{method} {path} {body!r}")
