# SPDX-License-Identifier: Apache-2.0
"""Integration tests of the request body in an external authorizer's check:
the extension provider field includeRequestBodyInCheck (Envoy's ext_authz
with_request_body: maxRequestBytes, allowPartialMessage, packAsBytes) of
envoyExtAuthzHttp and of envoyExtAuthzGrpc. A request a CUSTOM rule matches
that has a body is read first (to its end, or with allowPartialMessage to
maxRequestBytes) and the check carries those bytes: the HTTP check request
as its body with content-length N (none with packAsBytes), the gRPC
CheckRequest in attributes.request.http.body (raw_body with packAsBytes);
x-envoy-auth-partial-body says whether the check carries all of it (the
HTTP service passes it only when includeRequestHeadersInCheck names it; a
client's own never reaches the authorizer); a longer body without
allowPartialMessage is answered 413 without a check; the whole body reaches
the upstream once allowed. HTTP/1.1 clients with a content-length and
chunked, all at once and slowly, in pieces, pipelined, with Expect:
100-continue; HTTP/2 clients (h2_client.py, h2_attack.py, curl uploading
from a pipe); clients that stop half-way (408 after timeouts.streamIdle) or
leave; reloads while a body comes; bodies of 1 MiB; WebSocket upgrades;
configuration errors.

The authorizers are tests/upstream/extauthz.py (HTTP; it records the check
request's body length, sha256 and first bytes) and extauthz_grpc.py (gRPC;
it records body and raw_body with their length and sha256), each behind a
ServiceEntry as in test_extauthz.py and test_extauthz_grpc.py, whose worlds,
request helpers and log and counter checks these tests use. The upstream
"a" (upstream.c on 127.0.0.4) echoes a body sent to /echo/... Each test
runs for one kind of authorizer, named in the test's name (_http_ or
_grpc_); the checks themselves are shared. Registered into run.py's list by
register(test)."""

import hashlib
import json
import os
import re
import signal
import subprocess
import time

from harness import (Conn, Registry, TestFailure, build_request, check, free_port, http_get, poll,
                     service_entry)
from test_authz import ROUTE_ALL
from test_extauthz import INCLUDE, World, check_config_errors, check_error_answer, check_upstream_served
from test_extauthz import ask as http_ask
from test_extauthz import config, custom, got, provider, providers
from test_extauthz_grpc import GWorld, gconfig, gprovider, hmap
from test_extauthz_grpc import ask as grpc_ask
from test_h2 import background, h2_client, need_tools
from test_tunnels import WS_ACCEPT, ws_backend, ws_frame, ws_read_frame, ws_upgrade_headers

_test = Registry()
register = _test.register

PARTIAL = "x-envoy-auth-partial-body"
# The HTTP service's check carries the x-authz* fields extauthz.py decides by
# and the partial-body field (the gRPC CheckRequest has every field).
BINCLUDE = INCLUDE + [PARTIAL]
ALPHABET = b"abcdefghijklmnopqrstuvwxyz"
# The response flag of a 413 isthmus answers (docs/operations.md: DPE, "too
# large request", as for limits.maxRequestBodyBytes).
TOO_LARGE_FLAG = "DPE"


# --------------------------------------------------------------------------- bodies


def text_body(n, tag="b"):
    """n bytes of ASCII that do not repeat (a counter every 9 bytes), so that
    a piece from the wrong place or in the wrong order cannot pass for the
    right one."""
    out = b"".join(b"%s%07d|" % (tag.encode()[:1], i) for i in range(n // 9 + 1))
    return out[:n]


def binary_body(n):
    """n bytes of every value (NUL, 0xff, and sequences that are not UTF-8)."""
    return bytes((i * 7 + i // 256) % 256 for i in range(n))


def h2_pattern(n):
    """The body h2_client.py sends for body_size n (h2util.pattern)."""
    return (ALPHABET * (n // 26 + 1))[:n]


def sha(data):
    return hashlib.sha256(data).hexdigest()


def chunked(body, size, trailers=b""):
    """body in chunked coding, in chunks of size bytes, then the last chunk
    (with the trailer section trailers, raw lines)."""
    out = b"".join(b"%x\r\n%s\r\n" % (len(body[i:i + size]), body[i:i + size]) for i in range(0, len(body), size))
    return out + b"0\r\n" + trailers + b"\r\n"


def desc(data):
    return f"{len(data)} bytes {data[:24]!r}..."


def check_echo(r, body, what):
    """r is the upstream's /echo answer with body whole."""
    check(r.status == 200 and r.header("x-upstream") == "a" and r.body == body,
          f"{what}: want the upstream's echo of {desc(body)}, got {r.status} {r.headers} with "
          f"{len(r.body)} bytes (equal: {r.body == body}, same start: {r.body[:len(body)] == body[:len(r.body)]})")


# --------------------------------------------------------------------------- the two kinds of authorizer


def body_setting(max_bytes, partial=None, pack=None):
    out = {"maxRequestBytes": max_bytes}
    if partial is not None:
        out["allowPartialMessage"] = partial
    if pack is not None:
        out["packAsBytes"] = pack
    return out


class HttpKind:
    """envoyExtAuthzHttp and extauthz.py: the check request's body and fields."""

    grpc = False
    name = "the HTTP authorizer"
    ask = staticmethod(http_ask)

    @staticmethod
    def error():
        return http_ask("error")

    @staticmethod
    def prov(body=None, include=BINCLUDE, timeout="5s", **more):
        fields = {"timeout": timeout, "includeRequestHeadersInCheck": include}
        if body is not None:
            fields["includeRequestBodyInCheck"] = body
        fields.update(more)
        return providers(provider(**fields))

    @staticmethod
    def world(env, prov, *extra, **kw):
        return World(env, prov, custom(), *extra, **kw)

    @staticmethod
    def path(rec):
        return rec["path"]

    @staticmethod
    def new_checks(w, before, n, what):
        new = w.authz.checks()[before:]
        check(len(new) == n, f"{what}: want {n} check request(s), the authorizer got {len(new)}: {str(new)[:3000]}")
        return new

    @staticmethod
    def carried(rec, body, partial, what, pack=False, listed=True, size=None):
        """The check request rec: body (bytes) as its body with content-length
        its length, or (body None, or packAsBytes) no body and content-length
        0; never chunked; the partial-body field partial ("true", "false"; None:
        absent) when the provider lists it, else none. size: the gRPC size,
        not in an HTTP check."""
        bad = []
        if body is None or pack:
            if rec["content_length"] != "0" or rec["body_len"] != 0:
                bad.append(f"want no body and content-length 0, got content-length {rec['content_length']} and "
                           f"{rec['body_len']} bytes")
        elif rec["content_length"] != str(len(body)) or rec["body_len"] != len(body) \
                or rec["body_sha256"] != sha(body):
            same = "equal" if rec["body_sha256"] == sha(body) else "differs"
            bad.append(f"want the body {desc(body)} with content-length {len(body)}, got content-length "
                       f"{rec['content_length']} and {rec['body_len']} bytes starting "
                       f"{rec['body_b64'][:40]} (base64), sha256 {same}")
        if rec["chunked"] or got(rec, "transfer-encoding"):
            bad.append(f"the check is chunked: {got(rec, 'transfer-encoding')}")
        want = [partial] if partial is not None and listed else []
        if got(rec, PARTIAL) != want:
            bad.append(f"{PARTIAL}: want {want}, got {got(rec, PARTIAL)}")
        check(not bad, f"{what}: the check request: " + "; ".join(bad) + f" ({rec['method']} {rec['path']}, "
              f"fields {str(rec['headers'])[:800]})")


class GrpcKind:
    """envoyExtAuthzGrpc and extauthz_grpc.py: the CheckRequest's body, raw_body and headers map."""

    grpc = True
    name = "the gRPC authorizer"
    ask = staticmethod(grpc_ask)

    @staticmethod
    def error():
        return grpc_ask("grpc-error")

    @staticmethod
    def prov(body=None, include=None, timeout="5s", **more):
        fields = {"timeout": timeout}
        if body is not None:
            fields["includeRequestBodyInCheck"] = body
        fields.update(more)
        return providers(gprovider(**fields))

    @staticmethod
    def world(env, prov, *extra, **kw):
        return GWorld(env, prov, custom(), *extra, **kw)

    @staticmethod
    def path(rec):
        return (rec["http"] or {}).get("path")

    @staticmethod
    def new_checks(w, before, n, what):
        return w.authz.since(before, n, what)

    @staticmethod
    def carried(rec, body, partial, what, pack=False, listed=True, size=None):
        """The CheckRequest rec: body (bytes) in http.body, or with pack in
        http.raw_body, the other absent (both absent when body is None); the
        headers map's partial-body field partial ("true", "false"; None:
        absent), once; http.size size when given."""
        h = rec["http"] or {}
        bad = []
        have, other = ("raw_body", "body") if pack else ("body", "raw_body")
        if body is None:
            for f in ("body", "raw_body"):
                if h.get(f) is not None:
                    bad.append(f"want no {f}, got {h.get(f + '_len')} bytes {h[f][:40]!r}")
        else:
            if h.get(have + "_len") != len(body) or h.get(have + "_sha256") != sha(body):
                bad.append(f"want {have} {desc(body)}, got {h.get(have + '_len')} bytes "
                           f"{(h.get(have) or '')[:40]!r}, sha256 "
                           f"{'equal' if h.get(have + '_sha256') == sha(body) else 'differs'}")
            if h.get(other) is not None:
                bad.append(f"want no {other}, got {h.get(other + '_len')} bytes {h[other][:40]!r}")
        names = [k for k, _ in h.get("header_pairs") or []]
        if names.count(PARTIAL) > 1 or hmap(rec).get(PARTIAL) != partial:
            values = [v for k, v in h.get("header_pairs") or [] if k == PARTIAL]
            bad.append(f"headers map {PARTIAL}: want {partial!r}, got {values}")
        if size is not None and h.get("size") != size:
            bad.append(f"size: want {size}, got {h.get('size')}")
        check(not bad, f"{what}: the CheckRequest: " + "; ".join(bad) + f" ({h.get('method')} {h.get('path')}, "
              f"headers {str(hmap(rec))[:800]})")


HTTP, GRPC = HttpKind(), GrpcKind()


def no_crash(w, workers):
    """The gateway alive with the same workers, none killed by a signal."""
    log = w.env.gateway.log()
    check(w.env.gateway.alive() and w.env.workers() == workers and "killed by signal" not in log,
          f"workers {workers} before, {w.env.workers()} after; the log: "
          f"{[l for l in log.splitlines() if 'killed by signal' in l][:3]}")


# --------------------------------------------------------------------------- clients


def post_pieces(w, path, headers, pieces, gap=0.0, chunk=False, length=None, before_piece=None):
    """A POST to path on a fresh connection whose body goes in pieces (each a
    write, or a chunk with chunk), gap s apart; with a content-length (length,
    default the pieces' sum) unless chunk. before_piece(i) runs just before
    piece i is sent (after the gap). The answer."""
    hdrs = list(headers)
    if chunk:
        hdrs.append(("Transfer-Encoding", "chunked"))
    else:
        hdrs.append(("Content-Length", str(length if length is not None else sum(len(p) for p in pieces))))
    with Conn("127.0.0.1", w.gw, timeout=20) as c:
        c.send(build_request("POST", path, "test.local", hdrs))
        for i, p in enumerate(pieces):
            if i and gap:
                time.sleep(gap)  # a slow client, not a wait for the gateway
            if before_piece:
                before_piece(i)
            c.send(b"%x\r\n%s\r\n" % (len(p), p) if chunk else p)
        if chunk:
            c.send(b"0\r\n\r\n")
        return c.read_response("POST")


def received_bytes(w):
    """isthmus_received_bytes_total (all its samples) on the admin /metrics."""
    text = http_get(w.admin, "/metrics").body.decode()
    return sum(float(v) for v in re.findall(r"^isthmus_received_bytes_total(?:\{[^}]*\})? (\S+)$", text, re.M))


def wait_check(w, before, what):
    """Polls (bounded) until the authorizer recorded a check after before."""
    poll(lambda: w.authz.count() > before, 5, what=f"the check of {what} to reach the authorizer")


class CurlUpload:
    """curl over h2c (prior knowledge) POSTing what it reads from a pipe (-T -:
    no content-length, DATA frames as the pipe gives them) to path; the test
    writes the pipe."""

    def __init__(self, w, path, headers):
        need_tools("curl")
        self.out = w.env.path(f"curl-upload-{path.strip('/').replace('/', '-')}.out")
        argv = ["curl", "-sS", "--http2-prior-knowledge", "-X", "POST", "-T", "-", "-H", "Expect:",
                "-H", "Host: test.local", "-o", self.out, "-w", "%{http_version} %{http_code}", "--max-time", "20"]
        for k, v in headers:
            argv += ["-H", f"{k}: {v}"]
        self.p = subprocess.Popen(argv + [f"http://127.0.0.1:{w.gw}{path}"], stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        w.env.cleanups.append(self.kill)

    def write(self, data):
        try:
            self.p.stdin.write(data)
            self.p.stdin.flush()
        except OSError as e:
            raise TestFailure(f"curl stopped reading its input: {e}: {self.kill()[:500]!r}")

    def finish(self):
        """Ends the body; (HTTP version, status, the answer's body)."""
        try:
            out, err = self.p.communicate(timeout=30)  # closes the pipe: the body's end
        except subprocess.TimeoutExpired:
            raise TestFailure(f"curl still running 30 s after its body ended: {self.kill()[:500]!r}")
        check(self.p.returncode == 0, f"curl -T - over h2c: rc {self.p.returncode} {err.decode()[:500]}")
        version, _, status = out.decode().partition(" ")
        with open(self.out, "rb") as f:
            return version, int(status), f.read()

    def kill(self):
        """Kills curl (its connection closes); what it wrote on stderr."""
        if self.p.returncode is None:
            try:
                os.killpg(self.p.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            try:
                return self.p.communicate(timeout=10)[1] or b""
            except (ValueError, subprocess.TimeoutExpired):
                pass
        return b""


def h2_post(path, body=None, size=None, headers=(), cl=True, trailers=None):
    """An h2_client.py request: POST path with body (text) or size bytes of its pattern."""
    spec = {"method": "POST", "path": path, "headers": [[k, v] for k, v in headers]}
    n = len(body) if body is not None else size
    if body is not None:
        spec["body"] = body.decode("latin-1")
    else:
        spec["body_size"] = size
    if cl:
        spec["headers"].append(["content-length", str(n)])
    if trailers:
        spec["trailers"] = trailers
    return spec


def stream_echoed(st, body, what):
    """An h2_client.py stream answered by the upstream's echo of body."""
    check(st["status"] == 200 and st["body_len"] == len(body) and st["sha256"] == sha(body),
          f"{what}: want the upstream's echo of {desc(body)}, got status {st['status']} with {st['body_len']} "
          f"bytes (reset {st['reset']}, {st['not_sent']}) {st['body'][:80]!r}")


# --------------------------------------------------------------------------- the checks, for either kind


def under_limit(env, kind):
    w = kind.world(env, kind.prov(body_setting(4000)))
    workers = w.env.workers()
    ask = kind.ask
    up0, c0 = w.upstream_count(), w.counters()
    cases = 0

    def one(path, send, body, size, what):
        nonlocal cases
        n = w.authz.count()
        r = send()
        check_echo(r, body, what)
        rec = kind.new_checks(w, n, 1, what)[0]
        kind.carried(rec, body, "false", what, size=size)
        check(kind.path(rec) == path, f"{what}: the check's path {kind.path(rec)}, want {path}")
        cases += 1

    b = text_body(3000, "c")
    one("/echo/cl", lambda: w.req("/echo/cl", ask("allow"), method="POST", body=b), b, 3000,
        "a 3000-byte body with a content-length")
    b = text_body(4000, "x")
    one("/echo/exact", lambda: w.req("/echo/exact", ask("allow"), method="POST", body=b), b, 4000,
        "a body of exactly maxRequestBytes (4000)")
    b = text_body(3500, "k")
    one("/echo/chunked", lambda: w.req("/echo/chunked", ask("allow") + [("Transfer-Encoding", "chunked")],
                                       method="POST", body=chunked(b, 700)), b, -1, "a 3500-byte chunked body")
    b = text_body(2000, "t")
    one("/echo/trailers", lambda: w.req("/echo/trailers", ask("allow") + [("Transfer-Encoding", "chunked")],
                                        method="POST", body=chunked(b, 512, b"x-trailer: 1\r\n")), b, -1,
        "a 2000-byte chunked body with a trailer section")

    # Slowly: the check waits for the body's end (it carries all of it).
    for chunk in (False, True):
        b = text_body(3600, "s")
        pieces = [b[i:i + 900] for i in range(0, 3600, 900)]
        n = w.authz.count()
        early = []

        def before_last(i):
            if i == len(pieces) - 1:
                early.append(w.authz.count() - n)
        path = f"/echo/slow-{'chunked' if chunk else 'cl'}"
        what = f"a 3600-byte body sent {'chunked ' if chunk else ''}in 4 pieces 150 ms apart"
        r = post_pieces(w, path, ask("allow"), pieces, 0.15, chunk=chunk, before_piece=before_last)
        check_echo(r, b, what)
        check(early == [0], f"{what}: a check was sent before the body's last piece came")
        rec = kind.new_checks(w, n, 1, what)[0]
        kind.carried(rec, b, "false", what, size=-1 if chunk else 3600)
        cases += 1

    # Two requests on one connection: each check carries its own body.
    b1, b2 = text_body(1500, "1"), text_body(2500, "2")
    n = w.authz.count()
    with Conn("127.0.0.1", w.gw) as c:
        r1 = c.request("POST", "/echo/ka1", "test.local", ask("allow"), b1)
        r2 = c.request("POST", "/echo/ka2", "test.local", ask("allow") + [("Transfer-Encoding", "chunked")],
                       chunked(b2, 1000))
    check_echo(r1, b1, "the first POST of a connection")
    check_echo(r2, b2, "the second POST of the connection (chunked)")
    rec1, rec2 = kind.new_checks(w, n, 2, "two POSTs on one connection")
    kind.carried(rec1, b1, "false", "the first POST of a connection")
    kind.carried(rec2, b2, "false", "the second POST of the connection")
    cases += 2

    # Pipelined: two POSTs in one write; the second is not taken for body.
    b1, b2 = text_body(1200, "3"), text_body(800, "4")
    n = w.authz.count()
    with Conn("127.0.0.1", w.gw) as c:
        c.send(build_request("POST", "/echo/pipe1", "test.local", ask("allow"), b1)
               + build_request("POST", "/echo/pipe2", "test.local", ask("allow") + [("Transfer-Encoding", "chunked")],
                               chunked(b2, 300)))
        r1, r2 = c.read_response("POST"), c.read_response("POST")
    check_echo(r1, b1, "the first of two pipelined POSTs")
    check_echo(r2, b2, "the second of two pipelined POSTs (chunked)")
    rec1, rec2 = kind.new_checks(w, n, 2, "two pipelined POSTs")
    kind.carried(rec1, b1, "false", "the first of two pipelined POSTs")
    kind.carried(rec2, b2, "false", "the second of two pipelined POSTs")
    cases += 2

    check(w.upstream_count() == up0 + cases, f"the upstream saw {w.upstream_count() - up0} requests, want {cases}")
    w.check_log("POST", "/echo/cl", 200, "-", "via_upstream")
    w.wait_counters(c0, ok=cases)
    no_crash(w, workers)
    return w


def over_limit(env, kind):
    w = kind.world(env, kind.prov(body_setting(1000)))
    workers = w.env.workers()
    ask = kind.ask
    up0, c0, n = w.upstream_count(), w.counters(), w.authz.count()
    cases = [("/echo/over-by-1", lambda: w.req("/echo/over-by-1", ask("allow"), method="POST",
                                                body=text_body(1001))),
             ("/echo/over-cl", lambda: w.req("/echo/over-cl", ask("allow"), method="POST", body=text_body(5000))),
             ("/echo/over-big", lambda: w.req("/echo/over-big", ask("allow"), method="POST",
                                              body=text_body(300_000))),
             ("/echo/over-chunked", lambda: w.req("/echo/over-chunked",
                                                  ask("allow") + [("Transfer-Encoding", "chunked")],
                                                  method="POST", body=chunked(text_body(5000), 400)))]
    for path, send in cases:
        r = send()
        check(r.status == 413 and r.header("x-upstream") is None,
              f"POST {path}, a body over maxRequestBytes (1000) without allowPartialMessage: want 413, got {r}")
    # A chunked body sent slowly: the 413 comes once more than 1000 bytes came.
    with Conn("127.0.0.1", w.gw, timeout=10) as c:
        c.send(build_request("POST", "/echo/over-slow", "test.local",
                             ask("allow") + [("Transfer-Encoding", "chunked")]))
        b = text_body(1200)
        for i in range(3):
            if i:
                time.sleep(0.15)  # a slow client
            c.send(b"%x\r\n%s\r\n" % (400, b[i * 400:(i + 1) * 400]))
        r = c.read_response("POST")
    check(r.status == 413 and r.header("x-upstream") is None,
          f"a chunked body sent slowly that grows over maxRequestBytes: want 413, got {r}")
    paths = [p for p, _ in cases] + ["/echo/over-slow"]
    for p in paths:
        w.check_log("POST", p, 413, TOO_LARGE_FLAG, "request_payload_too_large")
    check(w.upstream_count() == up0, f"the upstream saw {w.upstream_count() - up0} of the refused requests")
    # The body of exactly maxRequestBytes passes. The check counted since n
    # is this one only: no check was sent for a refused body.
    b = text_body(1000, "e")
    check_echo(w.req("/echo/at-limit", ask("allow"), method="POST", body=b), b, "a body of exactly 1000 bytes")
    recs = kind.new_checks(w, n, 1, "the refused bodies (none) and the one at the limit")
    check(kind.path(recs[0]) == "/echo/at-limit", f"a check for a refused body: {kind.path(recs[0])}")
    kind.carried(recs[0], b, "false", "the body of exactly maxRequestBytes")
    w.wait_counters(c0, ok=1)
    check_upstream_served(w.req("/after", ask("allow")), "/after", "a GET after the refused bodies")
    no_crash(w, workers)


def partial(env, kind):
    w = kind.world(env, kind.prov(body_setting(1000, partial=True)))
    workers = w.env.workers()
    ask = kind.ask
    up0, c0 = w.upstream_count(), w.counters()
    done = 0
    for path, body, send_body, headers, want, p in (
            ("/echo/p-cl", text_body(5000, "p"), None, [], 1000, "true"),
            ("/echo/p-chunked", text_body(5000, "q"), "chunked", [("Transfer-Encoding", "chunked")], 1000, "true"),
            ("/echo/p-small", text_body(600, "r"), None, [], 600, "false"),
            ("/echo/p-exact", text_body(1000, "s"), None, [], 1000, "false")):
        what = f"POST {path}, {len(body)} bytes{' chunked' if send_body else ''} (maxRequestBytes 1000, partial)"
        n = w.authz.count()
        r = w.req(path, ask("allow") + headers, method="POST", body=chunked(body, 700) if send_body else body)
        check_echo(r, body, what)
        rec = kind.new_checks(w, n, 1, what)[0]
        kind.carried(rec, body[:want], p, what)
        done += 1

    # Slowly: the check goes once 1000 bytes came, before the rest of the body.
    for chunk in (False, True):
        body = text_body(3000, "w")
        pieces = [body[:1500], body[1500:2200], body[2200:]] if not chunk else \
            [body[:600], body[600:1200], body[1200:2000], body[2000:]]
        path = f"/echo/p-slow-{'chunked' if chunk else 'cl'}"
        what = f"a 3000-byte body{' chunked' if chunk else ''} held back after {1500 if not chunk else 1200} bytes"
        n = w.authz.count()

        def held_back(i):
            if i == (1 if not chunk else 2):
                wait_check(w, n, what)
        r = post_pieces(w, path, ask("allow"), pieces, 0.1, chunk=chunk, before_piece=held_back)
        check_echo(r, body, what)
        rec = kind.new_checks(w, n, 1, what)[0]
        kind.carried(rec, body[:1000], "true", what, size=-1 if chunk else 3000)
        done += 1
    check(w.upstream_count() == up0 + done, f"the upstream saw {w.upstream_count() - up0} requests, want {done}")
    w.check_log("POST", "/echo/p-cl", 200, "-", "via_upstream")
    w.wait_counters(c0, ok=done)
    no_crash(w, workers)


def without_body(env, kind):
    need_tools("h2")
    w = kind.world(env, kind.prov(body_setting(1000)))
    workers = w.env.workers()
    ask = kind.ask
    n = w.authz.count()
    check_upstream_served(w.req("/nobody/get", ask("allow")), "/nobody/get", "a GET")
    check_upstream_served(w.req("/nobody/get-field", ask("allow") + [(PARTIAL, "true")]), "/nobody/get-field",
                          "a GET with the client's own x-envoy-auth-partial-body")
    check_upstream_served(w.req("/nobody/post0", ask("allow"), method="POST", body=b""), "/nobody/post0",
                          "a POST with content-length 0")
    rep = h2_client(w.gw, [{"path": "/nobody/h2", "headers": [[k, v] for k, v in ask("allow") + [(PARTIAL, "false")]]}])
    check(rep["streams"][0]["status"] == 200, f"an h2c GET: {rep['streams'][0]}")
    recs = {kind.path(r): r for r in kind.new_checks(w, n, 4, "the requests without a body")}
    for path, size in (("/nobody/get", -1), ("/nobody/get-field", -1), ("/nobody/post0", 0), ("/nobody/h2", -1)):
        check(path in recs, f"no check for {path}: {list(recs)}")
        kind.carried(recs[path], None, None, f"{path}, without a body", size=size if kind.grpc else None)

    # The client's own field: never passed on; the gateway's says what the check carries.
    body = text_body(500, "f")
    n = w.authz.count()
    check_echo(w.req("/echo/field-cl", ask("allow") + [(PARTIAL, "true")], method="POST", body=body), body,
               "a POST with the client's x-envoy-auth-partial-body: true")
    st = h2_client(w.gw, [h2_post("/echo/field-h2", body, headers=ask("allow") + [(PARTIAL, "true")])])["streams"][0]
    stream_echoed(st, body, "an h2c POST with the client's x-envoy-auth-partial-body: true")
    recs = {kind.path(r): r for r in kind.new_checks(w, n, 2, "the POSTs with the client's field")}
    for path in ("/echo/field-cl", "/echo/field-h2"):
        kind.carried(recs[path], body, "false", f"{path}, the client's field true, the whole body carried")

    # Without includeRequestBodyInCheck, the client's field never reaches the authorizer either.
    w.reload(kind.prov(None), custom())
    n = w.authz.count()
    check_upstream_served(w.req("/plain/get", ask("allow") + [(PARTIAL, "true")]), "/plain/get",
                          "a GET with the client's field, no includeRequestBodyInCheck")
    check_echo(w.req("/echo/plain", ask("allow") + [(PARTIAL, "false")], method="POST", body=body), body,
               "a POST with the client's field, no includeRequestBodyInCheck")
    st = h2_client(w.gw, [h2_post("/echo/plain-h2", body, headers=ask("allow") + [(PARTIAL, "true")])])["streams"][0]
    stream_echoed(st, body, "an h2c POST with the client's field, no includeRequestBodyInCheck")
    recs = {kind.path(r): r for r in kind.new_checks(w, n, 3, "the requests without includeRequestBodyInCheck")}
    for path in ("/plain/get", "/echo/plain", "/echo/plain-h2"):
        kind.carried(recs[path], None, None, f"{path}, without includeRequestBodyInCheck")
    no_crash(w, workers)


def denied_and_errors(env, kind):
    w = kind.world(env, kind.prov(body_setting(4000)))
    workers = w.env.workers()
    ask = kind.ask
    up0, c0 = w.upstream_count(), w.counters()
    body = text_body(2000, "d")
    n = w.authz.count()
    with Conn("127.0.0.1", w.gw) as c:
        r = c.request("POST", "/echo/deny", "test.local",
                      ask("deny", status=401, body="no body gets in", set="www-authenticate=Basic"), body)
        check(r.status == 401 and r.body == b"no body gets in" and r.header("www-authenticate") == "Basic"
              and r.header("x-upstream") is None, f"a POST with a body denied 401: {r}")
        # Its body was read whole for the check: the connection goes on.
        r = c.request("GET", "/after-deny", "test.local", ask("allow"))
        check_upstream_served(r, "/after-deny", "the next request on the connection of a denied POST")
    rec = kind.new_checks(w, n, 2, "the denied POST and the GET after it")[0]
    kind.carried(rec, body, "false", "the denied POST")
    r = w.req("/echo/deny-chunked", ask("deny", status=403, body="chunked no") + [("Transfer-Encoding", "chunked")],
              method="POST", body=chunked(body, 300))
    check(r.status == 403 and r.body == b"chunked no", f"a chunked POST denied 403: {r}")
    check_error_answer(w.req("/echo/error", kind.error(), method="POST", body=body), 403,
                       "a POST with a body, the authorizer failing")
    check(w.upstream_count() == up0 + 1, f"the upstream saw {w.upstream_count() - up0} requests, want 1 (the GET)")
    w.check_log("POST", "/echo/deny", 401, "UAEX", "ext_authz_denied")
    w.check_log("POST", "/echo/deny-chunked", 403, "UAEX", "ext_authz_denied")
    w.check_log("POST", "/echo/error", 403, "UAEX", "ext_authz_error")
    w.wait_counters(c0, ok=1, denied=2, error=1)

    # A partial body denied: the answer comes although the body was not all read.
    w.reload(kind.prov(body_setting(1000, partial=True)), custom())
    big = text_body(6000, "g")
    n = w.authz.count()
    r = w.req("/echo/deny-partial", ask("deny", status=401, body="partial no"), method="POST", body=big)
    check(r.status == 401 and r.body == b"partial no", f"a POST checked on its first 1000 bytes, denied: {r}")
    kind.carried(kind.new_checks(w, n, 1, "the partial POST denied")[0], big[:1000], "true", "the partial POST denied")

    # failOpen: an error lets the request through with its whole body.
    w.reload(kind.prov(body_setting(4000), failOpen=True), custom())
    c1 = w.counters()
    n = w.authz.count()
    check_echo(w.req("/echo/fail-open", kind.error(), method="POST", body=body), body,
               "failOpen, the authorizer failing on a POST with a body")
    kind.carried(kind.new_checks(w, n, 1, "failOpen")[0], body, "false", "failOpen")
    w.check_log("POST", "/echo/fail-open", 200, "-", "via_upstream")
    w.wait_counters(c1, failure_mode_allowed=1)
    check(w.upstream_count() == up0 + 2, f"the upstream saw {w.upstream_count() - up0} requests, want 2")
    no_crash(w, workers)


def pack_as_bytes(env, kind):
    w = kind.world(env, kind.prov(body_setting(1000, pack=True)))
    workers = w.env.workers()
    ask = kind.ask
    body = binary_body(800)
    n = w.authz.count()
    check_echo(w.req("/echo/pack", ask("allow"), method="POST", body=body), body,
               "a binary body of 800 bytes, packAsBytes")
    kind.carried(kind.new_checks(w, n, 1, "packAsBytes")[0], body, "false", "packAsBytes, 800 bytes", pack=True)
    n, up0 = w.authz.count(), w.upstream_count()
    r = w.req("/echo/pack-over", ask("allow"), method="POST", body=binary_body(3000))
    check(r.status == 413, f"packAsBytes, a body over maxRequestBytes without allowPartialMessage: want 413, got {r}")
    w.check_log("POST", "/echo/pack-over", 413, TOO_LARGE_FLAG, "request_payload_too_large")
    check(w.upstream_count() == up0, "the upstream saw the refused body")
    w.reload(kind.prov(body_setting(1000, partial=True, pack=True)), custom())
    big = binary_body(3000)
    check_echo(w.req("/echo/pack-partial", ask("allow") + [("Transfer-Encoding", "chunked")], method="POST",
                     body=chunked(big, 256)), big, "a chunked binary body of 3000 bytes, packAsBytes, partial")
    kind.carried(kind.new_checks(w, n, 1, "packAsBytes, partial")[0], big[:1000], "true",
                 "packAsBytes with allowPartialMessage, 3000 bytes", pack=True)
    no_crash(w, workers)


def over_h2(env, kind):
    need_tools("h2")
    w = kind.world(env, kind.prov(body_setting(1000)))
    workers = w.env.workers()
    al = kind.ask("allow")
    up0, n = w.upstream_count(), w.authz.count()
    b600 = text_body(600, "h")
    rep = h2_client(w.gw, [
        h2_post("/echo/h2-cl", b600, headers=al),
        h2_post("/echo/h2-nocl", b600, headers=al, cl=False),
        h2_post("/echo/h2-trailers", b600, headers=al, cl=False, trailers=[["x-trailer", "1"]]),
        h2_post("/echo/h2-exact", size=1000, headers=al),
        h2_post("/echo/h2-over", size=5000, headers=al),
        h2_post("/echo/h2-over-nocl", size=5000, headers=al, cl=False),
        {"path": "/h2-get", "headers": [[k, v] for k, v in al]},
        h2_post("/echo/h2-over-big", size=300_000, headers=al, cl=False)])
    st = rep["streams"]
    for i, what in ((0, "an h2c POST of 600 bytes with a content-length"), (1, "an h2c POST of 600 bytes without one"),
                    (2, "an h2c POST of 600 bytes ended by trailers")):
        stream_echoed(st[i], b600, what)
    stream_echoed(st[3], h2_pattern(1000), "an h2c POST of exactly maxRequestBytes")
    for i in (4, 5, 7):
        check(st[i]["status"] == 413, f"an h2c POST of {5000 if i < 7 else 300_000} bytes over maxRequestBytes 1000: "
              f"want 413, got {st[i]}")
    check(st[6]["status"] == 200, f"an h2c GET: {st[6]}")
    recs = {kind.path(r): r for r in kind.new_checks(w, n, 5, "the h2c requests (none for those over the limit)")}
    check(set(recs) == {"/echo/h2-cl", "/echo/h2-nocl", "/echo/h2-trailers", "/echo/h2-exact", "/h2-get"},
          f"the checks' paths: {sorted(recs)}")
    for path, body, size in (("/echo/h2-cl", b600, 600), ("/echo/h2-nocl", b600, -1), ("/echo/h2-trailers", b600, -1),
                             ("/echo/h2-exact", h2_pattern(1000), 1000)):
        kind.carried(recs[path], body, "false", f"h2c {path}", size=size if kind.grpc else None)
    kind.carried(recs["/h2-get"], None, None, "an h2c GET")
    for path in ("/echo/h2-over", "/echo/h2-over-nocl", "/echo/h2-over-big"):
        w.check_log("POST", path, 413, TOO_LARGE_FLAG, "request_payload_too_large", proto="HTTP/2")
    check(w.upstream_count() == up0 + 5, f"the upstream saw {w.upstream_count() - up0} requests, want 5")

    w.reload(kind.prov(body_setting(1000, partial=True)), custom())
    n = w.authz.count()
    rep = h2_client(w.gw, [h2_post("/echo/h2-partial", size=5000, headers=al),
                           h2_post("/echo/h2-partial-nocl", size=5000, headers=al, cl=False),
                           h2_post("/echo/h2-partial-small", size=999, headers=al, cl=False)])
    for st_, size in zip(rep["streams"], (5000, 5000, 999)):
        stream_echoed(st_, h2_pattern(size), f"an h2c POST of {size} bytes, partial")
    recs = {kind.path(r): r for r in kind.new_checks(w, n, 3, "the partial h2c POSTs")}
    for path, carried, p in (("/echo/h2-partial", 1000, "true"), ("/echo/h2-partial-nocl", 1000, "true"),
                             ("/echo/h2-partial-small", 999, "false")):
        kind.carried(recs[path], h2_pattern(carried), p, f"h2c {path} (partial)")
    no_crash(w, workers)


def slow_h2(env, kind):
    need_tools("curl")
    w = kind.world(env, kind.prov(body_setting(2000)))
    workers = w.env.workers()
    al = kind.ask("allow")
    body = text_body(1600, "u")
    n = w.authz.count()
    up = CurlUpload(w, "/echo/h2-slow", al)
    early = []
    for i in range(4):
        if i:
            time.sleep(0.15)  # a slow client
        if i == 3:
            early.append(w.authz.count() - n)
        up.write(body[i * 400:(i + 1) * 400])
    version, status, got_ = up.finish()
    check(version == "2" and status == 200 and got_ == body,
          f"an h2c body sent in 4 pieces 150 ms apart: want the echo over HTTP/2, got {version} {status} "
          f"{len(got_)} bytes (equal: {got_ == body})")
    check(early == [0], "a check was sent before the h2c body's last piece came")
    kind.carried(kind.new_checks(w, n, 1, "the slow h2c body")[0], body, "false", "the slow h2c body",
                 size=-1 if kind.grpc else None)

    w.reload(kind.prov(body_setting(1000, partial=True)), custom())
    body = text_body(3500, "v")
    n = w.authz.count()
    up = CurlUpload(w, "/echo/h2-slow-partial", al)
    up.write(body[:1500])
    wait_check(w, n, "an h2c body held back after 1500 bytes (partial, maxRequestBytes 1000)")
    up.write(body[1500:2500])
    time.sleep(0.1)  # a slow client
    up.write(body[2500:])
    version, status, got_ = up.finish()
    check(status == 200 and got_ == body, f"the h2c body checked before its end: want its echo, got {status} "
          f"{len(got_)} bytes (equal: {got_ == body})")
    kind.carried(kind.new_checks(w, n, 1, "the slow partial h2c body")[0], body[:1000], "true",
                 "the h2c body checked on its first 1000 bytes")
    no_crash(w, workers)


def client_gone(env, kind):
    need_tools("h2")
    w = kind.world(env, kind.prov(body_setting(100_000)))
    workers = w.env.workers()
    ask = kind.ask
    up0, n = w.upstream_count(), w.authz.count()
    # Clients that stop sending and wait, their connection open: 408 once
    # timeouts.streamIdle (5 s) passes without the body's next bytes. HTTP/2:
    # HEADERS and 3000 of 10000 bytes, then nothing (h2_attack.py waits up to
    # 10 s for the stream's end); HTTP/1.1 likewise, meanwhile.
    hdrs = [[":method", "POST"], [":scheme", "http"], [":path", "/gone/h2-stall"], [":authority", "test.local"],
            ["content-length", "10000"]] + [[k, v] for k, v in ask("allow")]
    t0 = time.monotonic()
    h2 = background(env, "h2_attack.py", ["--connect", f"127.0.0.1:{w.gw}", "request", "1",
                                          json.dumps({"headers": hdrs, "data": ["z" * 3000], "end": False})], 30)
    with Conn("127.0.0.1", w.gw, timeout=15) as c:
        t1 = time.monotonic()
        c.send(build_request("POST", "/gone/stall", "test.local", ask("allow") + [("Content-Length", "10000")])
               + b"y" * 3000)
        r = c.read_response("POST")
        took = time.monotonic() - t1
    check(r.status == 408 and r.header("x-upstream") is None and 4.5 <= took < 9,
          f"an HTTP/1.1 body stalled after 3000 of 10000 bytes: want 408 after timeouts.streamIdle (5 s), got {r} "
          f"after {took:.2f} s")
    rep = h2.result()
    took = time.monotonic() - t0
    check(rep["status"].get("1") == 408 and 4.5 <= took,
          f"an h2c body stalled after 3000 of 10000 bytes: want 408 after timeouts.streamIdle (5 s), got "
          f"{rep['status']} after {took:.2f} s: {rep}")
    w.check_log("POST", "/gone/stall", 408, "SI", "stream_idle_timeout")
    w.check_log("POST", "/gone/h2-stall", 408, "SI", "stream_idle_timeout", proto="HTTP/2")
    # Clients that close before their body's end: HTTP/1.1 with a
    # content-length and chunked, h2c (curl killed once the gateway has read
    # the 3000 bytes it wrote).
    with Conn("127.0.0.1", w.gw) as c:
        c.send(build_request("POST", "/gone/cl", "test.local", ask("allow") + [("Content-Length", "10000")])
               + b"y" * 3000)
    with Conn("127.0.0.1", w.gw) as c:
        c.send(build_request("POST", "/gone/chunked", "test.local", ask("allow") + [("Transfer-Encoding", "chunked")])
               + b"400\r\n" + b"y" * 1024 + b"\r\n400\r\n" + b"y" * 100)
    # Their lines first: then the gateway has read all their bytes, and the
    # count below is the h2c client's alone (else their late bytes could make
    # it, and curl was killed before its request went).
    for path in ("/gone/cl", "/gone/chunked"):
        line = w.log_line("POST", path)
        check(line[:2] == ["0", "DC"], f"POST {path}, its client gone before the body's end: want 0 DC, got {line}")
    rx = received_bytes(w)
    up = CurlUpload(w, "/gone/h2", ask("allow"))
    up.write(b"x" * 3000)
    poll(lambda: received_bytes(w) >= rx + 3000, 5, what="the gateway to read the h2c client's 3000 bytes")
    up.kill()
    line = w.log_line("POST", "/gone/h2", proto="HTTP/2")
    check(line[:2] == ["0", "DC"], f"POST /gone/h2 (HTTP/2), its client gone before the body's end: want 0 DC, "
          f"got {line}")
    check(w.authz.count() == n, f"a check was sent for a body that never ended: {str(w.authz.checks()[n:])[:1000]}")
    check(w.upstream_count() == up0, f"the upstream saw {w.upstream_count() - up0} of the unfinished requests")

    # Clients that leave while the check of their whole body runs: an
    # HTTP/1.1 one whose check denies (isthmus need not read the client
    # while it waits: the denial may be written to a closed connection, or
    # the request logged 0 DC), an h2c one whose check allows (its stream
    # reset: never forwarded, 0 DC).
    body = text_body(2000, "o")
    n = w.authz.count()
    c = Conn("127.0.0.1", w.gw)
    c.send(build_request("POST", "/gone/checking", "test.local", ask("deny", status=401, delay=1000), body))
    wait_check(w, n, "/gone/checking")
    c.close()
    rep = h2_client(w.gw, [h2_post("/gone/h2-checking", body, headers=ask("slow", delay=1000))], timeout=0.5)
    check(rep["streams"][0]["status"] is None, f"the h2c client was answered before it gave up: {rep}")
    # With allowPartialMessage: the client leaves after its check went with
    # 1000 of the 1500 bytes it sent of 5000; the check allows.
    w.reload(kind.prov(body_setting(1000, partial=True)), custom())
    n2 = w.authz.count()
    c = Conn("127.0.0.1", w.gw)
    c.send(build_request("POST", "/echo/gone-partial", "test.local",
                         ask("slow", delay=1000) + [("Content-Length", "5000")]) + body[:1500])
    wait_check(w, n2, "/echo/gone-partial")
    c.close()
    # Answered after every abandoned check was answered (each took 1 s and began before).
    b = text_body(3000, "n")
    n3 = w.authz.count()
    check_echo(w.req("/echo/after", ask("slow", delay=1200), method="POST", body=b), b, "a POST after the clients left")
    kind.carried(kind.new_checks(w, n3, 1, "the POST after")[0], b[:1000], "true", "the POST after")
    line = w.log_line("POST", "/gone/h2-checking", proto="HTTP/2")
    check(line[:2] == ["0", "DC"], f"the h2c POST whose client gave up during its check: want 0 DC, got {line}")
    line = w.log_line("POST", "/gone/checking")
    check(line[:2] in (["0", "DC"], ["401", "UAEX"]),
          f"the HTTP/1.1 POST whose client left during a denying check: want 0 DC or 401, got {line}")
    line = w.log_line("POST", "/echo/gone-partial")
    # That one may have gone to the upstream (with the bytes that came) before
    # its client's close was seen: the upstream saw 1 or 2 requests.
    check(w.upstream_count() - up0 in (1, 2),
          f"the upstream saw {w.upstream_count() - up0} requests, want /echo/after and perhaps /echo/gone-partial "
          f"(logged {line})")
    check_upstream_served(w.req("/last", ask("allow")), "/last", "a GET at the end")
    no_crash(w, workers)


def large(env, kind):
    need_tools("h2")
    mib = 1 << 20
    w = kind.world(env, kind.prov(body_setting(2 * mib), timeout="10s"))
    workers = w.env.workers()
    al = kind.ask("allow")
    body = text_body(mib, "L")
    n = w.authz.count()
    check_echo(w.req("/echo/large-cl", al, method="POST", body=body), body, "a 1 MiB body (maxRequestBytes 2 MiB)")
    check_echo(w.req("/echo/large-chunked", al + [("Transfer-Encoding", "chunked")], method="POST",
                     body=chunked(body, 65536)), body, "a chunked 1 MiB body")
    st = h2_client(w.gw, [h2_post("/echo/large-h2", size=mib, headers=al)], timeout=30)["streams"][0]
    stream_echoed(st, h2_pattern(mib), "an h2c body of 1 MiB")
    recs = {kind.path(r): r for r in kind.new_checks(w, n, 3, "the 1 MiB bodies")}
    for path, b in (("/echo/large-cl", body), ("/echo/large-chunked", body), ("/echo/large-h2", h2_pattern(mib))):
        kind.carried(recs[path], b, "false", f"{path}, 1 MiB under maxRequestBytes 2 MiB")
    w.reload(kind.prov(body_setting(65536, partial=True), timeout="10s"), custom())
    n = w.authz.count()
    check_echo(w.req("/echo/large-partial", al, method="POST", body=body), body,
               "a 1 MiB body checked on its first 64 KiB")
    kind.carried(kind.new_checks(w, n, 1, "the 1 MiB body, partial")[0], body[:65536], "true",
                 "a 1 MiB body, maxRequestBytes 64 KiB, partial")
    no_crash(w, workers)


def expect_continue(env, kind):
    w = kind.world(env, kind.prov(body_setting(4000)))
    workers = w.env.workers()
    ask = kind.ask
    # Expect: 100-continue: the gateway answers 100 itself (no check can go
    # yet), then reads the body and checks it; with a content-length and
    # chunked.
    for chunk in (False, True):
        b = text_body(2500, "e")
        path = f"/echo/expect-{'chunked' if chunk else 'cl'}"
        what = f"a POST with Expect: 100-continue{' (chunked)' if chunk else ''}"
        framing = ("Transfer-Encoding", "chunked") if chunk else ("Content-Length", str(len(b)))
        n = w.authz.count()
        with Conn("127.0.0.1", w.gw, timeout=5) as c:
            c.send(build_request("POST", path, "test.local", ask("allow") + [("Expect", "100-continue"), framing]))
            try:
                r = c.read_response("POST", allow_interim=True)
            except OSError as e:
                raise TestFailure(f"{what}: no answer before its body: {e!r}")
            check(r.status == 100, f"{what}: want 100 Continue before its body, got {r}")
            check(w.authz.count() == n, f"{what}: a check was sent before its body")
            c.send(chunked(b, 1000) if chunk else b)
            try:
                r = c.read_response("POST")
            except OSError as e:
                raise TestFailure(f"{what}: no answer once its body was sent: {e!r}")
        check_echo(r, b, f"{what}, its body sent after 100 Continue")
        kind.carried(kind.new_checks(w, n, 1, what)[0], b, "false", what, size=-1 if chunk else len(b))
    no_crash(w, workers)


def reload_midway(env, kind):
    w = kind.world(env, kind.prov(body_setting(4000)))
    workers = w.env.workers()
    ask = kind.ask
    # A body half sent when a reload comes (the provider's settings the same
    # before and after): the rest then comes, the check carries all of it.
    body = text_body(3000, "R")
    n = w.authz.count()

    def reload_before(i):
        if i == 1:
            w.reload(kind.prov(body_setting(4000), timeout="4s"), custom())
    r = post_pieces(w, "/echo/reload-body", ask("allow"), [body[:1500], body[1500:]], before_piece=reload_before)
    check_echo(r, body, "a body half sent over a reload")
    kind.carried(kind.new_checks(w, n, 1, "the body over a reload")[0], body, "false", "the body over a reload")
    # allowPartialMessage: the check went with 1000 of the 1500 bytes sent;
    # a reload, then the rest of the body, which reaches the upstream.
    w.reload(kind.prov(body_setting(1000, partial=True)), custom())
    n = w.authz.count()

    def check_then_reload(i):
        if i == 1:
            wait_check(w, n, "a partial body before a reload")
            w.reload(kind.prov(body_setting(1000, partial=True), timeout="4s"), custom())
    r = post_pieces(w, "/echo/reload-partial", ask("slow", delay=300), [body[:1500], body[1500:]],
                    before_piece=check_then_reload)
    check_echo(r, body, "a body checked on its first 1000 bytes, the rest sent after a reload")
    kind.carried(kind.new_checks(w, n, 1, "the partial body over a reload")[0], body[:1000], "true",
                 "the partial body over a reload")
    check_upstream_served(w.req("/after", ask("allow")), "/after", "a GET after the reloads")
    no_crash(w, workers)


def policy_gone_midway(env, kind):
    # One worker, so that a request served unchecked shows the reload has
    # reached the worker that reads the half-sent body.
    w = kind.world(env, kind.prov(body_setting(4000)), workers=1)
    workers = w.env.workers()
    ask = kind.ask
    body = text_body(3000, "G")
    n = w.authz.count()
    before = received_bytes(w)

    def reload_before(i):
        if i == 1:
            poll(lambda: received_bytes(w) >= before + 1500, 5, what="the first half of the body to reach the gateway")
            w.reload(kind.prov(body_setting(4000)))
            poll(lambda: w.req("/probe", ask("deny")).status == 200, 5,
                 what="a request served unchecked after the reload")
    r = post_pieces(w, "/echo/policy-gone", ask("deny"), [body[:1500], body[1500:]], before_piece=reload_before)
    check_echo(r, body, "a body half read for its check when a reload took the CUSTOM policy away")
    check(w.authz.count() == n, f"{kind.name} was asked after the policy went: {w.authz.count() - n} checks")
    no_crash(w, workers)


WS_HOST = "ws.test.internal"
WS_ADDR = "127.0.0.2"


def websocket(env, kind):
    ws = ws_backend(env, "ws", WS_ADDR)
    routes = (f"  - match: [{{uri: {{prefix: /ws}}}}]\n    route: [{{destination: {{host: {WS_HOST}}}}}]\n"
              + ROUTE_ALL)
    w = kind.world(env, kind.prov(body_setting(1000)), service_entry("ws", WS_HOST, [{"address": WS_ADDR,
                                                                                      "port": ws.port}]),
                   routes=routes)
    workers = w.env.workers()
    n = w.authz.count()
    with Conn("127.0.0.1", w.gw) as c:
        c.send(build_request("GET", "/ws/echo", "ws.test", ws_upgrade_headers() + kind.ask("allow")))
        status, _, headers, _ = c.read_head()
        check(status == 101 and dict(headers).get("sec-websocket-accept") == WS_ACCEPT,
              f"a WebSocket upgrade under CUSTOM with includeRequestBodyInCheck: {status} {headers}")
        c.send(ws_frame(b"through the tunnel"))
        op, payload = ws_read_frame(c)
        check(op == 1 and payload == b"through the tunnel", f"echo over the tunnel: {op} {payload!r}")
    rec = kind.new_checks(w, n, 1, "the WebSocket upgrade")[0]
    kind.carried(rec, None, None, "the WebSocket upgrade (no body is read for it)")
    no_crash(w, workers)


def config_cases(kind):
    """isthmus -c on includeRequestBodyInCheck: the accepted settings, and the
    refused ones (what, setting, the error's field after the provider's kind,
    what the message says, a line marker)."""
    field_ = r"Appliance test: spec\.extensionProviders\[0\]\." + ("envoyExtAuthzGrpc" if kind.grpc
                                                                     else "envoyExtAuthzHttp")
    field_ += r"\.includeRequestBodyInCheck"
    marker = ("includeRequestBodyInCheck", 1)
    good = [body_setting(1), body_setting(4294967295, partial=True, pack=True),
            body_setting(1024, partial=False, pack=False)]
    bad = [("without maxRequestBytes", {"allowPartialMessage": True}, field_ + r"\.maxRequestBytes",
            "required field missing", marker),
           ("an empty map", {}, field_ + r"\.maxRequestBytes", "required field missing", marker),
           ("maxRequestBytes 0", body_setting(0), field_ + r"\.maxRequestBytes",
            "must be an integer between 1 and 4294967295", marker),
           ("maxRequestBytes 4294967296", body_setting(4294967296), field_ + r"\.maxRequestBytes",
            "must be an integer between 1 and 4294967295", marker),
           ("an unknown key", {"maxRequestBytes": 10, "bufferBody": True}, field_ + r"\.bufferBody",
            "unknown field", marker)]
    return good, bad


def config_errors(env, kind):
    ports = dict(gw=free_port(), admin=free_port(), log=env.path("access.log"), up=1, authz_port=2)

    def text(body):
        prov = kind.prov(body)
        return gconfig(env, prov, custom(), **ports) if kind.grpc else config(env, prov, custom(), **ports)
    good, bad = config_cases(kind)
    for setting in good:
        rc, out = env.check_config(env.write("good.yaml", text(setting)))
        check(rc == 0, f"isthmus -c refuses includeRequestBodyInCheck {setting}: rc {rc}, {out}")
    check_config_errors(env, ((what, text(setting), where, want, marker) for what, setting, where, want, marker in bad),
                        lambda out, m, want: want in out[m.end():].split("\n")[0])


# --------------------------------------------------------------------------- tests


@_test
def extauthz_body_http_under_limit(env):
    """The HTTP authorizer, maxRequestBytes 4000: a body under the limit (or
    exactly at it), with a content-length, chunked, chunked with a trailer
    section, sent slowly in 4 pieces 150 ms apart (no check goes before the
    last piece), two POSTs on one connection, two pipelined in one write:
    the check request carries the whole body with content-length its length
    (not chunked) and x-envoy-auth-partial-body: false; the upstream gets
    the whole body. Counted ok, logged via_upstream. A provider whose
    includeRequestHeadersInCheck does not name x-envoy-auth-partial-body
    sends the body without it."""
    w = under_limit(env, HTTP)
    w.reload(HTTP.prov(body_setting(4000), include=INCLUDE), custom())
    body = text_body(1000, "n")
    n = w.authz.count()
    check_echo(w.req("/echo/unlisted", http_ask("allow"), method="POST", body=body), body,
               "the partial-body field not listed")
    HTTP.carried(w.authz.one_since(n, "the partial-body field not listed"), body, "false",
                 "includeRequestHeadersInCheck without x-envoy-auth-partial-body", listed=False)


@_test
def extauthz_body_grpc_under_limit(env):
    """The gRPC authorizer, maxRequestBytes 4000: a body under the limit (or
    exactly at it), with a content-length, chunked, chunked with a trailer
    section, sent slowly in 4 pieces 150 ms apart (no Check goes before the
    last piece), two POSTs on one connection and two pipelined: the
    CheckRequest's http.body holds the whole body (no raw_body), its headers
    map x-envoy-auth-partial-body: false, size the content-length (-1 when
    chunked); the upstream gets the whole body. Counted ok."""
    under_limit(env, GRPC)


@_test
def extauthz_body_http_over_limit(env):
    """The HTTP authorizer, maxRequestBytes 1000 without allowPartialMessage: a
    body of 1001 bytes, of 5000 and 300,000 with a content-length, of 5000
    chunked, and a chunked one sent slowly that grows past 1000, are
    answered 413 (logged 413 DPE request_payload_too_large) without a check
    and without reaching the upstream; a body of exactly 1000 bytes is
    checked and served. Only the check made is counted."""
    over_limit(env, HTTP)


@_test
def extauthz_body_grpc_over_limit(env):
    """The gRPC authorizer, maxRequestBytes 1000 without allowPartialMessage:
    bodies over the limit (1001, 5000 and 300,000 bytes with a
    content-length, 5000 chunked, chunked slowly) are answered 413
    request_payload_too_large without a Check and without reaching the
    upstream; a body of exactly 1000 bytes is checked and served."""
    over_limit(env, GRPC)


@_test
def extauthz_body_http_partial(env):
    """The HTTP authorizer, maxRequestBytes 1000 with allowPartialMessage: a
    5000-byte body (content-length, chunked) is checked on its first 1000
    bytes exactly with x-envoy-auth-partial-body: true, and reaches the
    upstream whole; a body of 600 or of 1000 bytes is carried whole with
    false. A body whose client holds back the rest after 1500 bytes (1200
    chunked) is checked before the rest comes (the check reaches the
    authorizer while the client waits), and the upstream gets all 3000
    bytes."""
    partial(env, HTTP)


@_test
def extauthz_body_grpc_partial(env):
    """The gRPC authorizer, maxRequestBytes 1000 with allowPartialMessage: a
    5000-byte body's CheckRequest holds its first 1000 bytes with
    x-envoy-auth-partial-body: true, the upstream gets all of it; 600 and
    1000 bytes are carried whole with false; a body held back after 1500
    bytes (1200 chunked) is checked before the rest comes, and reaches the
    upstream whole."""
    partial(env, GRPC)


@_test
def extauthz_body_http_without_body(env):
    """The HTTP authorizer with includeRequestBodyInCheck: a GET, a GET with
    the client's own x-envoy-auth-partial-body, a POST with content-length 0
    and an h2c GET are checked at once with no body (content-length 0) and no
    partial-body field; the client's x-envoy-auth-partial-body: true on a
    POST (HTTP/1.1 and h2c) carried whole is replaced by the gateway's false.
    Without includeRequestBodyInCheck, a client's field never reaches the
    check (GET, POST, h2c POST) although the provider names it."""
    without_body(env, HTTP)


@_test
def extauthz_body_grpc_without_body(env):
    """The gRPC authorizer with includeRequestBodyInCheck: a GET (with and
    without the client's own x-envoy-auth-partial-body), a POST with
    content-length 0 and an h2c GET have neither body nor raw_body nor the
    partial-body field in their CheckRequest; the client's field on a POST
    carried whole is replaced by the gateway's false (once in the headers
    map). Without includeRequestBodyInCheck the client's field is not in the
    headers map."""
    without_body(env, GRPC)


@_test
def extauthz_body_http_denied_and_errors(env):
    """The HTTP authorizer with includeRequestBodyInCheck: a POST with a body
    denied 401 gets the authorizer's status, body and field (logged UAEX
    ext_authz_denied) and its connection serves the next request; a chunked
    one denied 403 too; an authorizer error answers 403 with an empty body
    (ext_authz_error); none reaches the upstream. A body checked on its first
    1000 bytes (partial) is denied all the same. With failOpen an error lets
    the POST through with its whole body (failure_mode_allowed)."""
    denied_and_errors(env, HTTP)


@_test
def extauthz_body_grpc_denied_and_errors(env):
    """The gRPC authorizer with includeRequestBodyInCheck: denials of POSTs
    with a body (401 with its field, chunked 403), a gRPC error (403, empty
    body), a partial body denied, and failOpen letting a POST through whole
    on an error, as without the setting."""
    denied_and_errors(env, GRPC)


@_test
def extauthz_body_http_pack_as_bytes(env):
    """The HTTP authorizer with packAsBytes: the check request has no body
    (content-length 0, as Envoy's HTTP client sends only the text form) but
    x-envoy-auth-partial-body (false for 800 bytes of every byte value; true
    for 3000 chunked with allowPartialMessage), and the upstream gets the
    binary body intact; a body over the limit without allowPartialMessage is
    still 413."""
    pack_as_bytes(env, HTTP)


@_test
def extauthz_body_grpc_pack_as_bytes(env):
    """The gRPC authorizer with packAsBytes: the CheckRequest's raw_body holds
    the body's bytes as they are (800 bytes of every byte value, NUL and
    sequences that are not UTF-8 too) and body is absent; a body over the
    limit without allowPartialMessage is 413; with it, raw_body holds the
    first 1000 of 3000 bytes (chunked) and the partial-body field says true;
    the upstream gets the bodies intact."""
    pack_as_bytes(env, GRPC)


@_test
def extauthz_body_http_h2(env):
    """The HTTP authorizer, h2c clients (h2_client.py), maxRequestBytes 1000:
    bodies of 600 bytes with a content-length, without, and ended by
    trailers, and one of exactly 1000, are checked whole (partial false) and
    echoed whole; bodies of 5000 (with and without a content-length) and of
    300,000 (over the stream's flow-control window) get 413
    (logged HTTP/2 413 DPE request_payload_too_large) without a check; a GET has
    no body in its check. With allowPartialMessage, 5000 bytes are checked on
    their first 1000 (true) and reach the upstream whole; 999 bytes are
    carried whole (false)."""
    over_h2(env, HTTP)


@_test
def extauthz_body_grpc_h2(env):
    """The gRPC authorizer, h2c clients: the same bodies as for the HTTP
    authorizer (600 bytes with and without a content-length, with trailers,
    1000, 5000 refused 413, a GET; then partial 5000 and 999), the
    CheckRequest's size the content-length or -1."""
    over_h2(env, GRPC)


@_test
def extauthz_body_http_h2_slow(env):
    """The HTTP authorizer, an h2c client (curl) sending its body from a pipe
    in 4 pieces 150 ms apart (no content-length): the check waits for the
    body's end and carries all of it; with allowPartialMessage
    (maxRequestBytes 1000), the check goes while the client holds back the
    rest after 1500 bytes, carries the first 1000 (true), and the upstream
    then gets all 3500."""
    slow_h2(env, HTTP)


@_test
def extauthz_body_grpc_h2_slow(env):
    """The gRPC authorizer, an h2c client (curl) sending its body slowly: the
    Check waits for the end and carries it all; with allowPartialMessage it
    goes once 1000 bytes came, while the client holds back the rest, which
    then reaches the upstream."""
    slow_h2(env, GRPC)


@_test
def extauthz_body_http_client_gone(env):
    """The HTTP authorizer with includeRequestBodyInCheck: clients that stop
    sending after 3000 of 10000 bytes and wait (HTTP/1.1, h2c) are answered
    408 once timeouts.streamIdle (5 s) passes (logged 408 SI stream_idle_timeout);
    clients that close before their body's end (HTTP/1.1 with a
    content-length and chunked, h2c) are logged 0 DC; no check is sent for
    any of them and the upstream sees none. Clients that leave while the check of their whole body runs
    (HTTP/1.1, denied; h2c, allowed: 0 DC, not forwarded), or after a
    partial check went with their body half sent (allowed), leave nothing
    stuck: a later POST is checked and served, the upstream saw at most the
    partial one of them, no worker died."""
    client_gone(env, HTTP)


@_test
def extauthz_body_grpc_client_gone(env):
    """The gRPC authorizer with includeRequestBodyInCheck: clients that stop
    before their body's end get no Check, those that wait 408 after
    timeouts.streamIdle (SI stream_idle_timeout), those that close 0 DC (HTTP/1.1
    content-length and chunked, h2c); clients that leave while their Check
    runs leave nothing stuck; a later POST is checked and served; no worker
    died."""
    client_gone(env, GRPC)


@_test
def extauthz_body_http_large(env):
    """The HTTP authorizer, maxRequestBytes 2 MiB: a 1 MiB body (content-length,
    chunked in 64 KiB chunks, h2c) is carried whole in the check and reaches
    the upstream intact; with maxRequestBytes 64 KiB and allowPartialMessage,
    the check carries the first 65536 bytes and the upstream gets the whole
    1 MiB."""
    large(env, HTTP)


@_test
def extauthz_body_grpc_large(env):
    """The gRPC authorizer, maxRequestBytes 2 MiB: a 1 MiB body (content-length,
    chunked, h2c) is in the CheckRequest whole and reaches the upstream
    intact; with maxRequestBytes 64 KiB and allowPartialMessage the
    CheckRequest holds its first 65536 bytes and the upstream gets all of
    it."""
    large(env, GRPC)


@_test
def extauthz_body_http_expect_continue(env):
    """The HTTP authorizer with includeRequestBodyInCheck: an HTTP/1.1 POST
    with Expect: 100-continue (a content-length, then chunked) gets 100
    Continue from the gateway before it sends its body, no check going yet;
    then its body is read, the check carries all of it and the upstream
    echoes it."""
    expect_continue(env, HTTP)


@_test
def extauthz_body_grpc_expect_continue(env):
    """The gRPC authorizer with includeRequestBodyInCheck: Expect:
    100-continue is answered 100 by the gateway before the body, the
    CheckRequest then carries the whole body, which reaches the upstream."""
    expect_continue(env, GRPC)


@_test
def extauthz_body_http_reload_midway(env):
    """The HTTP authorizer: a reload (the same body settings) while a body is
    half sent: the rest comes after it, the check carries the whole body and
    the upstream gets it; with allowPartialMessage, a reload after the check
    of the first 1000 bytes went and before the rest of the body: the
    upstream gets all of it."""
    reload_midway(env, HTTP)


@_test
def extauthz_body_grpc_reload_midway(env):
    """The gRPC authorizer: a body half sent over a reload is checked whole
    and reaches the upstream; a partial body whose check went before a
    reload reaches the upstream whole after it."""
    reload_midway(env, GRPC)


@_test
def extauthz_body_http_policy_gone_midway(env):
    """The HTTP authorizer: a reload that takes the CUSTOM policy away while a
    body is read for its check lets the request on unchecked, as one whose
    check was in flight (it was answered 503)."""
    policy_gone_midway(env, HTTP)


@_test
def extauthz_body_grpc_policy_gone_midway(env):
    """The gRPC authorizer: a reload that takes the CUSTOM policy away while a
    body is read for its check lets the request on unchecked."""
    policy_gone_midway(env, GRPC)


@_test
def extauthz_body_http_websocket(env):
    """The HTTP authorizer with includeRequestBodyInCheck: a WebSocket upgrade
    is checked at once, without a body or the partial-body field, and its
    tunnel then carries frames both ways."""
    websocket(env, HTTP)


@_test
def extauthz_body_grpc_websocket(env):
    """The gRPC authorizer with includeRequestBodyInCheck: a WebSocket upgrade's
    CheckRequest has no body and no partial-body field; the tunnel works."""
    websocket(env, GRPC)


@_test
def extauthz_body_config(env):
    """isthmus -c accepts includeRequestBodyInCheck on either kind with
    maxRequestBytes 1 or 4294967295, allowPartialMessage and packAsBytes; it
    refuses, naming the file, line and column and the field, a setting
    without maxRequestBytes (an empty map too: required field missing),
    maxRequestBytes 0 and 4294967296 (must be an integer between 1 and
    4294967295), and an unknown key (unknown field)."""
    config_errors(env, HTTP)
    config_errors(env, GRPC)
