# SPDX-License-Identifier: Apache-2.0
"""Integration tests of HTTP/2 safety (issue 11, deliverable 4): what a hostile
HTTP/2 client gets. Rapid reset, CONTINUATION floods, HPACK bombs, SETTINGS /
PING / empty-frame / WINDOW_UPDATE / PRIORITY floods, zero-window stalls,
stream floods, and the smuggling-safe translation to HTTP/1.1 upstreams,
checked at the upstream. The frames come from tests/upstream/h2_attack.py
(hyperframe and hpack, under Debian's python); the worker's CPU and memory
are read from /proc.

Registered into run.py's list by register(test)."""

import json
import os
import signal
import subprocess
import sys
import time

from harness import (DEBIAN_PYTHON, Registry, TestFailure, check, ctl_cmd, file_lines, free_port, http_get,
                     poll, wait_master_exit)
from test_h2 import TOOLS, h1_upstream, limits, need_tools, one_service, parse_tool, run_tool, start_h2_upstream
from test_security import cpu_seconds

_test = Registry()
register = _test.register

IDLE_CONNS = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                          "bench", "idle_conns.py")
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, REFUSED_STREAM, CANCEL, ENHANCE_YOUR_CALM = 0, 1, 2, 7, 8, 11


def attack(port, what, n, arg="", timeout=60, ack=True):
    opts = [] if ack else ["--no-ack"]
    rep = run_tool("h2_attack.py", ["--connect", f"127.0.0.1:{port}"] + opts + [what, n, arg], timeout)
    check(not (rep.get("error") or "").startswith("connect:"), f"h2_attack {what}: {rep['error']}")
    return rep


def rss_kib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise TestFailure(f"no VmRSS for {pid}")


def served(port):
    """A well-behaved HTTP/2 request on a connection of its own: its status
    (the report when there is none)."""
    rep = attack(port, "request", 0, json.dumps({"headers": [
        [":method", "GET"], [":scheme", "http"], [":path", "/ok"], [":authority", "ok.test"]]}))
    return rep["status"].get("1", rep)


def gateway_1w(env, app_extra="", timeouts=None):
    """One worker (so its CPU and memory are the ones measured) before an HTTP/1.1 upstream."""
    need_tools("h2")
    up = h1_upstream(env)
    gw = one_service(env, up, workers=1, app_extra=app_extra, timeouts=timeouts)
    st = served(gw)
    check(st == 200, f"a plain HTTP/2 request is answered {st}")
    return gw, up, env.workers()[0]


def flood_bounded(env, port, worker, what, n, arg="", cpu=2.0, want=(ENHANCE_YOUR_CALM,), ack=True,
                  last_below=None):
    """The flood ends in GOAWAY (one of want) and the close, at a bounded CPU
    cost, before the server took it all — judged by what the server said, never
    by how many frames the client managed to write (the kernel may take every
    one of them before the server reads the first): for floods that open
    streams, the GOAWAY names a last stream below last_below; for PING and
    SETTINGS floods, the server acknowledged fewer than were sent; for the
    others, ENHANCE_YOUR_CALM is the frame budget's own word."""
    c0 = cpu_seconds(worker)
    rep = attack(port, what, n, arg, ack=ack)
    used = cpu_seconds(worker) - c0
    check(rep["goaway"] in want and rep["closed"],
          f"{what} x{n}: GOAWAY {rep['goaway']} (want {want}), closed {rep['closed']}, {rep['sent']} frames sent")
    if last_below is not None:
        check(rep.get("goaway_last") is not None and rep["goaway_last"] < last_below,
              f"{what}: the GOAWAY names stream {rep.get('goaway_last')} as the last taken, want < {last_below}")
    if what in ("ping", "settings"):
        # One SETTINGS ACK answers the client's opening SETTINGS.
        check(rep["acks"] < n // 2, f"{what}: the server answered {rep['acks']} of {n} before the close")
    check(used < cpu, f"{what} x{n} cost the worker {used:.2f} s of CPU")
    st = served(port)
    check(st == 200, f"after the {what} flood another connection is answered {st}")
    return rep


@_test
def h2_rapid_reset(env):
    """CVE-2023-44487: 10,000 HEADERS + RST_STREAM pairs end in GOAWAY
    (nghttp2's reset rate limit, 1000 then 33 a second), at a bounded CPU cost,
    and other connections are served meanwhile and after."""
    gw, _, worker = gateway_1w(env)
    flood_bounded(env, gw, worker, "rapid-reset", 10000, cpu=3.0, want=(INTERNAL_ERROR, ENHANCE_YOUR_CALM),
                  last_below=10000)


@_test
def h2_continuation_flood(env):
    """CVE-2024-27316 / 2024-28182: endless CONTINUATION frames without
    END_HEADERS end in GOAWAY, and the worker's memory does not grow."""
    gw, _, worker = gateway_1w(env)
    r0 = rss_kib(worker)
    rep = attack(gw, "continuation", 100000)
    grown = rss_kib(worker) - r0
    check(rep["goaway"] is not None and rep["goaway"] != NO_ERROR and rep["closed"],
          f"CONTINUATION flood: GOAWAY {rep['goaway']}, closed {rep['closed']}, {rep['sent']} frames sent")
    check(grown < 8 * 1024, f"the worker grew by {grown} KiB")
    check(served(gw) == 200, "after the flood another connection is not served")


@_test
def h2_hpack_bomb(env):
    """A header block of a few KiB decoding to ~64 MB (one 4000-byte field
    indexed, then 16,000 one-byte references) is answered 431 without the
    worker's memory growing; so is a plain header list over the limit, and
    too many fields. A gRPC request gets these (and 413) as gRPC errors."""
    gw, _, worker = gateway_1w(env, app_extra=limits(maxRequestHeaderBytes=8192, maxRequestHeaders=100,
                                                     maxRequestBodyBytes=1 << 20))
    r0 = rss_kib(worker)
    rep = attack(gw, "hpack-bomb", 16000)
    grown = rss_kib(worker) - r0
    check(rep["status"].get("1") == 431 or rep["rst"].get("1") is not None,
          f"HPACK bomb answered {rep['status']} {rep['rst']} goaway {rep['goaway']}")
    check(grown < 8 * 1024, f"the worker grew by {grown} KiB decoding the bomb")
    base = [[":method", "GET"], [":scheme", "http"], [":path", "/"], [":authority", "a.test"]]
    for what, extra in (("header list", [["x-big", "v" * 12000]]),
                        ("field count", [[f"x-{i}", "v"] for i in range(150)])):
        rep = attack(gw, "request", 0, json.dumps({"headers": base + extra}))
        check(rep["status"].get("1") == 431, f"{what} over the limit answered {rep}")
    # A gRPC request refused before it is routed gets a gRPC error, its
    # content type seen even in a block over the limit.
    grpc = [[":method", "POST"], [":scheme", "http"], [":path", "/pkg.Svc/Call"], [":authority", "a.test"],
            ["content-type", "application/grpc"], ["te", "trailers"]]
    for what, extra, end in (("header list", [["x-big", "v" * 12000]], True),
                             ("body too large", [["content-length", "99999999"]], False)):
        rep = attack(gw, "request", 0, json.dumps({"headers": grpc + extra, "end": end}))
        fields = dict(rep["fields"].get("1", []))
        check(rep["status"].get("1") == 200 and fields.get("content-type") == "application/grpc" and
              fields.get("grpc-status") == "2", f"gRPC {what} answered {rep['fields']} {rep['rst']}")
    check(served(gw) == 200, "after the bombs another connection is not served")


@_test
def h2_frame_floods(env):
    """SETTINGS, PING, WINDOW_UPDATE, PRIORITY floods, empty DATA frames on an
    open stream and zero-length HEADERS: each ends in GOAWAY
    ENHANCE_YOUR_CALM (isthmus's frame budget) at a bounded CPU cost."""
    gw, _, worker = gateway_1w(env)
    for what, arg in (("settings", ""), ("ping", ""), ("window-update", ""), ("priority", ""),
                      ("empty-data", "/delay/3000"), ("empty-headers", "")):
        flood_bounded(env, gw, worker, what, 20000, arg)


@_test
def h2_polite_client_not_cut(env):
    """A client that sends a PRIORITY frame and a connection WINDOW_UPDATE with
    each of 1,200 requests, one at a time, is served them all: the PRIORITY and
    WINDOW_UPDATE allowances grow with the streams it opens, as Envoy's
    protocol constraints do (it got GOAWAY ENHANCE_YOUR_CALM after 500 or
    1,000 of them)."""
    gw, _, _ = gateway_1w(env)
    n = 1200
    rep = attack(gw, "polite", n, "/ok", timeout=120)
    ok = sum(1 for s in rep["status"].values() if s == 200)
    check(ok == n and rep["goaway"] is None and not rep["closed"],
          f"{ok} of {n} requests served; GOAWAY {rep['goaway']} {rep.get('goaway_data')!r}, closed {rep['closed']}")


@_test
def h2_pings_with_requests_not_cut(env):
    """A client that sends a PING with each of 1,200 requests, one at a time,
    each acknowledged (as grpc-go's window probe pings with the data it
    receives), is served them all: a PING that comes after isthmus sent a
    response's frames costs nothing, as gRPC servers forgive pings while
    they send data. Every PING counted against the frame budget, so busy
    gRPC connections got GOAWAY ENHANCE_YOUR_CALM after about 500."""
    gw, _, _ = gateway_1w(env)
    n = 1200
    rep = attack(gw, "ping-per-request", n, "/ok", timeout=120)
    ok = sum(1 for s in rep["status"].values() if s == 200)
    check(ok == n and rep["goaway"] is None and not rep["closed"] and rep["acks"] >= n,
          f"{ok} of {n} requests served, {rep['acks']} acks; GOAWAY {rep['goaway']} {rep.get('goaway_data')!r}, "
          f"closed {rep['closed']}")


@_test
def h2_early_answers_not_cut(env):
    """600 uploads one at a time on one connection to an HTTP/2 upstream that
    answers each whole before reading its body: each ends in isthmus's
    RST_STREAM NO_ERROR (RFC 9113 8.1) and the client is served them all. Those
    resets counted against the client's frame budget as if the client had
    made them, so the connection got GOAWAY ENHANCE_YOUR_CALM after about 500;
    only the resets for a client's fault count."""
    need_tools("h2")
    up = start_h2_upstream(env, "127.0.0.2", "early")
    gw = one_service(env, up, protocol="HTTP2", workers=1)
    n = 600
    rep = attack(gw, "early-answer", n, "/early/0", timeout=120)
    ok = sum(1 for s in rep["status"].values() if s == 200)
    check(ok == n and rep["goaway"] is None and not rep["closed"],
          f"{ok} of {n} early answers; resets {sorted(set(rep['rst'].values()))}; GOAWAY {rep['goaway']} "
          f"{rep.get('goaway_data')!r}, closed {rep['closed']}")
    check(set(rep["rst"].values()) == {NO_ERROR}, f"the streams' resets: {sorted(set(rep['rst'].values()))}")


@_test
def h2_upstream_window_not_held_by_unread_streams(env):
    """A client that reads none of 24 responses (its HTTP/2 window kept at 0)
    holds its own streams' windows on the shared HTTP/2 upstream connection,
    not the connection's: another client's request on that connection is
    answered at once. The connection window opened only as clients took the
    bytes, so 16 unread responses of 64 KiB held its 1 MiB and every other
    client's stream to the endpoint waited (504) while the first stayed."""
    need_tools("h2")
    up = start_h2_upstream(env, "127.0.0.2", "win")
    gw = one_service(env, up, protocol="HTTP2", workers=1)
    p = subprocess.Popen([DEBIAN_PYTHON, os.path.join(TOOLS, "h2_attack.py"), "--connect", f"127.0.0.1:{gw}",
                          "zero-window-streams", "20", json.dumps({"path": "/big/1000000", "streams": 24})],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    env.cleanups.append(lambda: p.poll() is None and os.killpg(p.pid, signal.SIGKILL))
    check(p.stdout.readline() == "READY\n", "h2_attack.py zero-window-streams: the 24 heads did not come")
    for i in range(3):
        t0 = time.monotonic()
        try:
            got = http_get(gw, f"/status/200?{i}", addr="127.0.0.1", timeout=20).status
        except (EOFError, OSError) as e:  # its head came, its body never did
            got = f"cut ({e})"
        took = time.monotonic() - t0
        check(got == 200 and took < 2.5, f"another client beside 24 unread responses: {got} after {took:.1f} s")
    check(p.poll() is None, "the client that reads nothing went first")
    os.killpg(p.pid, signal.SIGKILL)


@_test
def h2_upstream_unread_bounded(env):
    """A client that reads nothing of 100 responses from an HTTP/2 upstream,
    with a stream window of 4 MiB, makes the worker hold at most about two
    connection windows per upstream connection (the connection's window
    opens early for one window of unread bytes, no more): the worker grew by
    hundreds of MiB when the connection's window opened for every byte that
    arrived. Another client is still served."""
    need_tools("h2")
    up = start_h2_upstream(env, "127.0.0.2", "unread")
    gw = one_service(env, up, protocol="HTTP2", workers=1,
                     app_extra=limits(http2InitialStreamWindowSize=4 << 20))
    worker = env.workers()[0]
    r0 = rss_kib(worker)
    p = subprocess.Popen([DEBIAN_PYTHON, os.path.join(TOOLS, "h2_attack.py"), "--connect", f"127.0.0.1:{gw}",
                          "zero-window-streams", "20", json.dumps({"path": "/big/4000000", "streams": 100})],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    env.cleanups.append(lambda: p.poll() is None and os.killpg(p.pid, signal.SIGKILL))
    check(p.stdout.readline() == "READY\n", "h2_attack.py zero-window-streams: the 100 heads did not come")
    grown = 0
    end = time.monotonic() + 3  # a window to measure over, not a wait for a condition
    while time.monotonic() < end:
        grown = max(grown, rss_kib(worker) - r0)
        time.sleep(0.1)
    check(grown < 48 * 1024, f"the worker grew by {grown} KiB holding unread responses")
    check(http_get(gw, "/status/200", addr="127.0.0.1", timeout=20).status == 200, "another client beside it")
    os.killpg(p.pid, signal.SIGKILL)


@_test
def h2_stream_flood(env):
    """Thousands of streams past http2MaxConcurrentStreams. Once the client
    acknowledged the limit: GOAWAY PROTOCOL_ERROR (nghttp2, RFC 9113 5.1.2)
    and the close, its open streams ending with it. From a client that never
    acknowledges it: REFUSED_STREAM, then, as our resets pile up, GOAWAY
    ENHANCE_YOUR_CALM (isthmus's frame budget counts the resets it sends)."""
    gw, _, worker = gateway_1w(env, app_extra=limits(http2MaxConcurrentStreams=10))
    # 5,000 streams are ids 1 to 9,999: the server must stop before the last.
    flood_bounded(env, gw, worker, "streams", 5000, "/delay/2000", want=(PROTOCOL_ERROR,), last_below=9999)
    rep = flood_bounded(env, gw, worker, "streams", 5000, "/delay/2000", ack=False, last_below=9999)
    check(list(rep["rst"].values()).count(REFUSED_STREAM) > 400,
          f"REFUSED_STREAM {list(rep['rst'].values()).count(REFUSED_STREAM)} times")


@_test
def h2_zero_window_stall(env):
    """A client that shuts its window (SETTINGS_INITIAL_WINDOW_SIZE 0) on a
    large response: after timeouts.idle without progress its stream is reset
    (CANCEL) and the upstream exchange let go; the connection is not held
    for ever and the worker serves on."""
    gw, up, worker = gateway_1w(env, timeouts={"idle": "1s"})
    rep = attack(gw, "zero-window", 10, "/bytes/50000000")
    check(rep["rst"].get("1") == CANCEL, f"stalled stream: reset {rep['rst']} status {rep['status']} "
          f"closed {rep['closed']}")
    check(0.8 <= rep["end_at"] <= 2.5, f"reset after {rep['end_at']} s, idle is 1 s")
    # Let go: nothing stays in flight to the endpoint (not a leak).
    def inflight():
        return sum(e["inflight"] for e in json.loads(ctl_cmd(env.path("ctl.sock"), "show endpoints json")))

    poll(lambda: inflight() == 0, 5, what="the endpoint's in-flight count back to 0 after the reset")
    check(served(gw) == 200, "after the stall another connection is not served")


def upstream_count(up):
    r = http_get(up, "/__ctl/count", addr="127.0.0.2")
    check(r.status == 200, f"upstream count: {r}")
    return int(r.body)


@_test
def h2_smuggling(env):
    """The h2 → HTTP/1.1 translation, checked at the upstream (/rawecho shows
    the request as it got it): a content-length the DATA do not match, the
    connection-specific fields, bad pseudo-headers, CR/LF/NUL and uppercase
    names each reset the stream (PROTOCOL_ERROR) and reach no upstream;
    :authority wins over host, and the upstream gets one Host."""
    gw, up, _ = gateway_1w(env)
    P = [[":method", "POST"], [":scheme", "http"], [":path", "/rawecho"], [":authority", "a.test"]]
    G = [[":method", "GET"], [":scheme", "http"], [":path", "/rawecho"], [":authority", "a.test"]]
    smuggled = "GET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n"
    cases = [
        ("content-length below the DATA", P + [["content-length", "0"]], [smuggled]),
        ("content-length above the DATA", P + [["content-length", "100"]], ["short"]),
        ("connection", G + [["connection", "close"]], []),
        ("transfer-encoding", P + [["transfer-encoding", "chunked"]], ["0\r\n\r\n" + smuggled]),
        ("keep-alive", G + [["keep-alive", "timeout=5"]], []),
        ("upgrade", G + [["upgrade", "websocket"]], []),
        ("proxy-connection", G + [["proxy-connection", "keep-alive"]], []),
        ("te other than trailers", G + [["te", "gzip"]], []),
        ("missing :path", [x for x in G if x[0] != ":path"], []),
        ("unknown pseudo-header", G + [[":foo", "bar"]], []),
        ("pseudo-header after a field", G[:2] + [["x-a", "1"]] + G[2:], []),
        ("CR LF in a value", G + [["x-a", "1\r\nx-injected: 1"]], []),
        ("LF in a name", G + [["x-a\nx-b", "1"]], []),
        ("NUL in a value", G + [["x-a", "1\x002"]], []),
        ("uppercase name", G + [["X-Upper", "1"]], []),
    ]
    n0 = upstream_count(up)
    for what, headers, data in cases:
        rep = attack(gw, "request", 0, json.dumps({"headers": headers, "data": data}))
        check(rep["rst"].get("1") == PROTOCOL_ERROR or rep["goaway"] == PROTOCOL_ERROR,
              f"{what}: not reset (PROTOCOL_ERROR): status {rep['status']} rst {rep['rst']} "
              f"goaway {rep['goaway']} body {rep['body'].get('1', '')[:200]!r}")
        check(rep["status"].get("1") is None, f"{what}: answered {rep['status']}")
    check(upstream_count(up) == n0, f"{upstream_count(up) - n0} refused requests reached the upstream")

    rep = attack(gw, "request", 0, json.dumps({"headers": G + [["te", "trailers"]]}))
    check(rep["status"].get("1") == 200, f"te: trailers refused: {rep['status']} {rep['rst']}")
    rep = attack(gw, "request", 0, json.dumps({"headers": G + [["host", "b.test"]]}))
    head = rep["body"].get("1", "").lower()
    hosts = [l for l in head.split("\r\n") if l.startswith("host:")]
    check(rep["status"].get("1") == 200 and hosts == ["host: a.test"],
          f":authority a.test with host b.test: the upstream got {hosts} ({rep['status']})")
    rep = attack(gw, "request", 0, json.dumps({"headers": [x for x in G if x[0] != ":authority"] +
                                                          [["host", "b.test"], ["host", "c.test"]]}))
    check(rep["rst"].get("1") == PROTOCOL_ERROR or rep["status"].get("1") == 400,
          f"two hosts without :authority answered {rep}")
    # A well-framed body goes through as it came.
    rep = attack(gw, "request", 0, json.dumps({"headers": P + [["content-length", "5"]], "data": ["hello"]}))
    body = rep["body"].get("1", "")
    check(rep["status"].get("1") == 200 and body.endswith("\r\n\r\nhello") and "content-length: 5" in body.lower(),
          f"a framed POST: {rep}")


@_test
def h2_refusal_details(env):
    """The access log's %RESPONSE_CODE_DETAILS% of the HTTP/2 requests
    refused and logged, as Envoy's HTTP/2 codec names them: a header list
    over maxRequestHeaderBytes or maxRequestHeaders (431
    http2.too_many_headers), and the streams nghttp2 resets after their head
    was taken: trailers with an uppercase field name (DPE
    http2.invalid.header.field), trailers without END_STREAM (DPE
    http2.violation.of.messaging.rule); and those nghttp2 resets within
    their header block (an uppercase or a connection-specific field name), never
    requests, logged without request fields as Envoy logs the streams its
    codec resets (they were not logged)."""
    log = env.path("access.log")
    fmt = "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS%"
    gw, _, _ = gateway_1w(env, app_extra=limits(maxRequestHeaderBytes=8192, maxRequestHeaders=100) +
                          f"  accessLog: {{path: {log}, format: text, textFormat: \"{fmt}\"}}\n")
    G = [[":method", "GET"], [":scheme", "http"], [":authority", "a.test"]]
    for path, extra in (("/big", [["x-big", "v" * 12000]]), ("/many", [[f"x-{i}", "v"] for i in range(150)])):
        rep = attack(gw, "request", 0, json.dumps({"headers": G + [[":path", path]] + extra}))
        check(rep["status"].get("1") == 431, f"{path}: answered {rep}")
    P = [[":method", "POST"], [":scheme", "http"], [":authority", "a.test"]]
    for path, spec in (("/bad-trailer", {"trailers": [["X-Upper", "1"]]}),
                       ("/open-trailer", {"trailers": [["x-t", "1"]], "trailers_end": False})):
        rep = attack(gw, "request", 0, json.dumps({"headers": P + [[":path", path]], "data": ["body"], **spec}))
        check(rep["rst"].get("1") == PROTOCOL_ERROR, f"{path}: {rep}")
    for path, field in (("/upper", ["X-Upper", "1"]), ("/conn", ["connection", "close"])):
        rep = attack(gw, "request", 0, json.dumps({"headers": G + [[":path", path], field]}))
        check(rep["rst"].get("1") == PROTOCOL_ERROR and "1" not in rep["status"], f"{path}: {rep}")
    # A header block over the limits is not kept: its path is not known;
    # nor is one nghttp2 refused.
    want = ["- 0 DPE http2.invalid.header.field", "- 0 DPE http2.invalid.header.field",
            "- 431 DPE http2.too_many_headers", "- 431 DPE http2.too_many_headers",
            "/bad-trailer 0 DPE http2.invalid.header.field", "/ok 200 - via_upstream",
            "/open-trailer 0 DPE http2.violation.of.messaging.rule"]
    poll(lambda: len(file_lines(log)) >= len(want), 5, what=f"{len(want)} access-log lines")
    check(sorted(file_lines(log)) == want, f"lines {sorted(file_lines(log))}, want {want}")


@_test
def h2_uri_limit(env):
    """maxUriBytes holds for HTTP/2's :path as for HTTP/1.1's request target:
    one byte over is answered 414 and reaches no upstream, logged alike
    (http1.headers_too_large, as the HTTP/1.1 414 is); a target of exactly
    maxUriBytes is served, by both protocols."""
    log = env.path("access.log")
    fmt = "%PROTOCOL% %RESPONSE_CODE% %RESPONSE_CODE_DETAILS%"
    gw, up, _ = gateway_1w(env, app_extra=limits(maxUriBytes=64) +
                           f"  accessLog: {{path: {log}, format: text, textFormat: \"{fmt}\"}}\n")
    at = "/ok?" + "q" * (64 - 4)
    over = at + "q"
    G = [[":method", "GET"], [":scheme", "http"], [":authority", "a.test"]]
    n0 = upstream_count(up)
    rep = attack(gw, "request", 0, json.dumps({"headers": G + [[":path", over]]}))
    check(rep["status"].get("1") == 414, f"HTTP/2 :path of 65 bytes, maxUriBytes 64: {rep}")
    r = http_get(gw, over, host="a.test")
    check(r.status == 414, f"HTTP/1.1 target of 65 bytes, maxUriBytes 64: {r.status}")
    check(upstream_count(up) == n0, f"{upstream_count(up) - n0} requests over maxUriBytes reached the upstream")
    rep = attack(gw, "request", 0, json.dumps({"headers": G + [[":path", at]]}))
    check(rep["status"].get("1") == 200, f"HTTP/2 :path of 64 bytes, maxUriBytes 64: {rep}")
    r = http_get(gw, at, host="a.test")
    check(r.status == 200, f"HTTP/1.1 target of 64 bytes, maxUriBytes 64: {r.status}")
    # gateway_1w's own request first; a refused head is logged without
    # request fields, whatever its protocol.
    want = ["HTTP/2 200 via_upstream", "- 414 http1.headers_too_large", "- 414 http1.headers_too_large",
            "HTTP/2 200 via_upstream", "HTTP/1.1 200 via_upstream"]
    poll(lambda: len(file_lines(log)) >= len(want), 5, what=f"{len(want)} access-log lines")
    check(file_lines(log) == want, f"lines {file_lines(log)}, want {want}")


@_test
def h2_idle_goaway(env):
    """A client connection without streams for timeouts.idle gets GOAWAY
    (NO_ERROR, naming its last stream) and is closed: the worker's timer tick
    does not count as activity."""
    gw, _, _ = gateway_1w(env, timeouts={"idle": "1s"})
    rep = attack(gw, "idle", 6)
    check(rep["status"].get("1") == 200, f"the request before the idle time: {rep}")
    check(rep["goaway"] == NO_ERROR and rep.get("goaway_last") == 1 and rep["closed"],
          f"idle connection: GOAWAY {rep['goaway']} (last {rep.get('goaway_last')}), closed {rep['closed']}")
    check(0.8 <= rep["goaway_at"] <= 4, f"GOAWAY after {rep['goaway_at']} s, idle is 1 s")


@_test
def h2_idle_despite_pings(env):
    """The idle time counts from the end of the last stream: a client that
    sends a PING every 0.25 s (each answered) on a connection without streams
    still gets GOAWAY (NO_ERROR) after timeouts.idle, as with Envoy's
    idle_timeout."""
    gw, _, _ = gateway_1w(env, timeouts={"idle": "1s"})
    rep = attack(gw, "idle-ping", 8)
    check(rep["status"].get("1") == 200, f"the request before the idle time: {rep}")
    check(rep["goaway"] == NO_ERROR and rep["closed"],
          f"idle connection with PINGs: GOAWAY {rep['goaway']}, closed {rep['closed']}, {rep['acks']} acks")
    check(0.8 <= rep["goaway_at"] <= 4, f"GOAWAY after {rep['goaway_at']} s, idle is 1 s")


@_test
def h2_connection_error_ends_streams(env):
    """A connection error nghttp2 finds itself (a SETTINGS frame on stream 1)
    while a stream waits on its upstream: GOAWAY PROTOCOL_ERROR, then the close
    at once, the stream ending with the connection, rather than a connection
    held for ever by a stream that nghttp2 will no longer answer."""
    gw, _, _ = gateway_1w(env, timeouts={"idle": "30s", "upstreamResponse": "10s"})
    rep = attack(gw, "conn-error", 8, "/delay/5000")
    check(rep["goaway"] == PROTOCOL_ERROR and rep["closed"],
          f"connection error: GOAWAY {rep['goaway']}, closed {rep['closed']} within 8 s ({rep})")
    check(rep["closed_at"] < 4, f"closed after {rep['closed_at']} s, not before the stream's answer (5 s)")
    check(served(gw) == 200, "after the connection error another connection is not served")


def block_timeout_closes(env, mode, what, timeouts):
    """h2_attack's mode leaves a header block unfinished: the connection is
    closed at timeouts.requestHeader (1 s), without GOAWAY, and the gateway
    serves another connection after."""
    gw, _, _ = gateway_1w(env, timeouts={"requestHeader": "1s", "idle": "30s", **timeouts})
    rep = attack(gw, mode, 8, "/delay/5000")
    check(rep["closed"] and rep["goaway"] is None,
          f"{what}: closed {rep['closed']} (within 8 s), GOAWAY {rep['goaway']} ({rep})")
    check(0.8 <= rep["closed_at"] <= 4, f"{what}: closed after {rep['closed_at']} s, requestHeader is 1 s")
    check(served(gw) == 200, f"after the {what} another connection is not served")


@_test
def h2_header_block_timeout(env):
    """A HEADERS without END_HEADERS and no CONTINUATION (a slowloris of one
    frame, holding the whole connection) is bounded by timeouts.requestHeader,
    as an HTTP/1.1 request head is, even while another stream of the
    connection waits on its upstream: the connection is closed."""
    block_timeout_closes(env, "partial-headers", "unfinished header block", {})


@_test
def h2_reset_block_timeout(env):
    """The same when the unfinished block's stream is reset as it is read (an
    uppercase field name): nghttp2 reads the rest of the block without its
    stream, and the connection is still closed at timeouts.requestHeader, not
    kept to timeouts.idle."""
    block_timeout_closes(env, "partial-bad-headers", "unfinished header block of a reset stream", {})


@_test
def h2_trailer_block_timeout(env):
    """The same of a request's trailers: a HEADERS with END_STREAM after the
    body, without END_HEADERS, and no CONTINUATION, while the stream waits on
    its upstream for the rest of the body, is bounded by
    timeouts.requestHeader too: the connection is closed."""
    block_timeout_closes(env, "partial-trailers", "unfinished trailers", {"upstreamResponse": "10s"})


@_test
def h2_body_credit_before_answer(env):
    """16 uploads of 64 KiB on one connection, every frame of them in one
    write, so that each body is read whole, END_STREAM with it, before any of
    it goes upstream (its last batch is its only one), to an upstream that
    answers 2 s after it read the body: the connection-level credit of every
    body comes back (WINDOW_UPDATE) once the bodies went upstream, before any
    answer, not as each answer ends (which shuts the connection's window to
    other streams for as long). The connection window is twice the bodies, so
    that nghttp2 sends its WINDOW_UPDATE (at half the window) when, and only
    when, the last body's credit is given back, however the bodies were cut
    into batches."""
    n, size, delay = 16, 64 * 1024, 2.0
    gw, _, _ = gateway_1w(env, app_extra=limits(http2InitialConnectionWindowSize=2 * n * size),
                          timeouts={"upstreamResponse": "10s"})
    rep = attack(gw, "upload-credit", n, json.dumps({"path": f"/delay/{int(delay * 1000)}", "size": size,
                                                     "wait": 15, "opening_wu": True}))
    check(rep["credit_before_answer"] == n * size,
          f"connection credit before the first answer (at {rep['answer_at']} s, bodies at {rep['bodies_at']} s): "
          f"{rep['credit_before_answer']} of the bodies' {n * size} bytes; WINDOW_UPDATEs [at, increment]: "
          f"{rep['credit']}; answers {rep['status']}")
    check(sorted(rep["status"].values()) == [200] * n,
          f"uploads answered {rep['status']} (rst {rep['rst']}, goaway {rep['goaway']}, error {rep['error']})")
    check(rep["answer_at"] - rep["bodies_at"] >= delay - 0.5,
          f"first answer {rep['answer_at'] - rep['bodies_at']:.2f} s after the bodies, the upstream waits {delay} s")


@_test
def h2_refused_body_credit_given_back(env):
    """16 uploads of 64 KiB on one connection, every frame in one write, each
    over maxRequestBodyBytes (1000): each is answered 413 at its first DATA
    frame, and every byte of every body, the frame that crossed the limit and
    those after the answer, is given back to the connection's window
    (WINDOW_UPDATE), as Envoy's codec consumes what it drops. Bytes kept
    would shut the connection's window for good: its other streams stall."""
    n, size = 16, 64 * 1024
    gw, _, _ = gateway_1w(env, app_extra=limits(http2InitialConnectionWindowSize=2 * n * size,
                                                maxRequestBodyBytes=1000))
    rep = attack(gw, "upload-credit", n, json.dumps({"path": "/big", "size": size, "wait": 10,
                                                     "opening_wu": True, "credit_want": n * size}))
    check(sorted(rep["status"].values()) == [413] * n,
          f"uploads over the limit answered {rep['status']} (rst {rep['rst']}, error {rep['error']})")
    credit = sum(inc for _, inc in rep["credit"])
    check(credit >= n * size, f"connection credit given back for {n} refused bodies of {size} bytes: {credit} "
          f"(WINDOW_UPDATEs [at, increment]: {rep['credit']})")


@_test
def h2_drain_after_late_preface(env):
    """A connection whose preface is cut in two around a graceful stop (it
    becomes HTTP/2 after the worker began to drain) gets its GOAWAY too, and
    the worker exits without waiting for timeouts.drain."""
    need_tools("h2")
    up = h1_upstream(env)
    gw = one_service(env, up, workers=1, timeouts={"idle": "30s", "drain": "20s"})

    def active():
        return json.loads(ctl_cmd(env.path("ctl.sock"), "show info json"))["connections_active"]

    poll(lambda: active() == 0, 10, what="no client connection")
    p = subprocess.Popen([DEBIAN_PYTHON, os.path.join(TOOLS, "h2_attack.py"), "--connect", f"127.0.0.1:{gw}",
                          "late-preface", "5"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True, start_new_session=True)
    env.cleanups.append(lambda: p.poll() is None and os.killpg(p.pid, signal.SIGKILL))
    check(p.stdout.readline() == "READY\n", "h2_attack.py late-preface did not start")
    poll(lambda: active() == 1, 10, what="the worker to take the connection")
    os.kill(env.gateway.pid, signal.SIGTERM)
    poll(lambda: env.log_count("draining (signal)") > 0, 10, what="the worker to drain")
    try:
        out, err = p.communicate("go\n", timeout=20)
    except subprocess.TimeoutExpired:
        raise TestFailure("h2_attack.py late-preface still running after 20 s")
    rep = parse_tool("h2_attack.py", p.returncode, out.encode(), err.encode())
    check(rep["goaway"] == NO_ERROR and rep["closed"],
          f"HTTP/2 from after the drain began: GOAWAY {rep['goaway']}, closed {rep['closed']} ({rep})")
    wait_master_exit(env, 10)


# What an idle HTTP/2 client connection may hold, by the worker's own count
# (show info http2_connection_heap_bytes): libnghttp2 1.52's session (2.9 KiB
# struct, 2 KiB of HPACK index rings, the client's indexed fields) and
# isthmus's connection struct, its 16 KiB output frame buffer and empty stream
# table given back. 18.8 KiB RSS (26 KiB counted) before 2026-12-03.
IDLE_H2_HELD_MAX = 6 * 1024


@_test
def h2_idle_connection_memory(env):
    """Many idle HTTP/2 connections (bench/idle_conns.py --h2: one GET each,
    then nothing): once quiet, each holds at most IDLE_H2_HELD_MAX bytes of
    heap by the worker's count, and the count goes back to zero as they
    close."""
    gw, _, _ = gateway_1w(env, timeouts={"idle": "60s"})
    sock = env.path("ctl.sock")
    n = 200

    def info():
        return json.loads(ctl_cmd(sock, "show info json"))

    client = subprocess.Popen([sys.executable, IDLE_CONNS, "--port", str(gw), "--conns", str(n), "--h2",
                               "--sources", "1", "--window", "32", "--timeout", "20", "--hold-max", "30"],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        ready = client.stdout.readline()
        check(ready.startswith(f"READY opened={n} ok={n} failed=0"), f"idle client: {ready!r}")
        # Quiet for a second, each gives its pages back at the worker's next tick.
        last = {}

        def rested():
            last.update(info())
            return (last["http2_connections"] == n and
                    last["http2_connection_heap_bytes"] <= n * IDLE_H2_HELD_MAX)
        try:
            poll(rested, 10, interval=0.2, what="idle connections to give their pages back")
        except TestFailure:
            raise TestFailure(f"{last.get('http2_connections')} HTTP/2 connections hold "
                              f"{last.get('http2_connection_heap_bytes')} bytes, at most "
                              f"{n} x {IDLE_H2_HELD_MAX} allowed")
    finally:
        client.terminate()
        client.wait(10)
    poll(lambda: info()["http2_connections"] == 0, 10, what="the connections to close")
    check(info()["http2_connection_heap_bytes"] == 0, f"closed connections still counted: {info()}")
