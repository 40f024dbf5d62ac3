# SPDX-License-Identifier: Apache-2.0
"""Integration tests of HTTP/2 and gRPC (issue 11): HTTP/2 from clients (prior
knowledge h2c, ALPN h2 over TLS), streams routed, balanced, retried, timed out
and logged one by one, flow control both ways, the connection limits, GOAWAY at
reload and stop; HTTP/2 to upstreams (ServiceEntry protocol HTTP2 / GRPC,
h2UpgradePolicy, ALPN h2 over TLS), multiplexed within maxConcurrentStreams;
gRPC end to end with a real grpcio client and server, the gRPC errors isthmus
answers itself, http2MaxRequests and gRPC retryOn.

The clients and upstreams that need the `h2` and `grpc` packages run under
Debian's python (harness.DEBIAN_PYTHON): tests/upstream/h2_upstream.py,
h2_client.py, grpc_upstream.py, grpc_client.py. The *_selftest tests check
those tools alone, without isthmus.

Registered into run.py's list by register(test)."""

import hashlib
import json
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time

from harness import (DEBIAN_PYTHON, Conn, Env, Registry, Skip, TestFailure, appliance, check, ctl_cmd, curl,
                     debian_python_has, docs, file_lines, free_port, gateway, have, http_get, poll, read_head, read_to_end,
                     service_entry,
                     service_entry_protocol, spawn_listening, virtual_service, wait_master_exit)
from test_locality import endpoints_view
from test_tls import Pki, gateway_of, server, tls_simple

_test = Registry()
register = _test.register

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.join(os.path.dirname(HERE), "upstream")
SVC = "h2.test.internal"
GSVC = "grpc.test.internal"
PATTERN = bytes(ord("a") + i % 26 for i in range(26))
MIB8 = 8 * 1024 * 1024

# gRPC status codes.
OK, CANCELLED, DEADLINE_EXCEEDED, NOT_FOUND, RESOURCE_EXHAUSTED = 0, 1, 4, 5, 8
UNIMPLEMENTED, INTERNAL, UNAVAILABLE = 12, 13, 14
# What isthmus answers a gRPC request with when it answers itself, as Envoy does:
# HTTP 200, content-type application/grpc, and grpc-status from the HTTP status
# it would have sent, mapped by Envoy's Grpc::Utility::httpToGrpcStatus
# (source/common/grpc/status.cc, after grpc's doc/http-grpc-status-mapping.md):
# 400 → 13, 401 → 16, 403 → 7, 404 → 12, 429/502/503/504 → 14, else 2. So an
# upstream timeout (504 UT) is UNAVAILABLE, not DEADLINE_EXCEEDED: Envoy's router
# passes no gRPC status of its own for it (onUpstreamTimeoutAbort). A client
# whose own deadline passes reports DEADLINE_EXCEEDED itself.
GRPC_FOR_HTTP = {400: INTERNAL, 401: 16, 403: 7, 404: UNIMPLEMENTED, 429: UNAVAILABLE, 502: UNAVAILABLE,
                 503: UNAVAILABLE, 504: UNAVAILABLE}
RETRY_ON = {"cancelled": CANCELLED, "deadline-exceeded": DEADLINE_EXCEEDED,
            "resource-exhausted": RESOURCE_EXHAUSTED, "unavailable": UNAVAILABLE, "internal": INTERNAL}


# --------------------------------------------------------------------------- tools


def need_tools(*what):
    """Skips unless Debian's python has the packages and the CLI tools exist."""
    mods = {"h2": ("h2",), "grpc": ("grpc",)}
    for w in what:
        if w in mods and not debian_python_has(*mods[w]):
            raise Skip(f"{DEBIAN_PYTHON} lacks {w} (Debian package python3-{'grpcio' if w == 'grpc' else w})")
        if w in ("curl", "h2load", "nghttp") and not have(w):
            raise Skip(f"{w} is not installed (Debian package {'nghttp2-client' if w != 'curl' else 'curl'})")


def run_tool(script, args, timeout):
    """Runs tests/upstream/SCRIPT under Debian's python; its JSON output."""
    argv = [DEBIAN_PYTHON, os.path.join(TOOLS, script)] + [str(a) for a in args]
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise TestFailure(f"{script} still running after {timeout}s: {argv[2:]}")
    return parse_tool(script, p.returncode, p.stdout, p.stderr)


def parse_tool(script, rc, out, err):
    try:
        return json.loads(out.decode())
    except ValueError:
        raise TestFailure(f"{script} exited {rc} without JSON: {out[-500:]!r} {err[-1500:]!r}")


def peer_args(ca, sni, authority):
    """The options h2_client.py and grpc_client.py share: TLS trusting ca, with sni; authority."""
    return [x for opt, v in (("--ca", ca), ("--sni", sni), ("--authority", authority)) if v for x in (opt, v)]


def h2_args(port, requests, after=(), burst=False, ca=None, sni=None, authority=None, timeout=30,
            addr="127.0.0.1"):
    a = ["--connect", f"{addr}:{port}", "--timeout", timeout] + peer_args(ca, sni, authority)
    if burst:
        a.append("--burst")
    return a + [json.dumps(list(requests)), json.dumps(list(after))]


def h2_client(port, requests, after=(), burst=False, ca=None, sni=None, authority=None, timeout=30,
              addr="127.0.0.1"):
    """One HTTP/2 connection carrying requests (then after); h2_client.py's report."""
    rep = run_tool("h2_client.py", h2_args(port, requests, after, burst, ca, sni, authority, timeout, addr),
                   timeout + 15)
    check(not (rep["error"] or "").startswith(("connect:", "TLS:")), f"HTTP/2 client to {addr}:{port}: {rep['error']}")
    return rep


class Background:
    """h2_client.py or grpc_client.py running while the test does something else."""

    def __init__(self, script, args, timeout):
        self.script = script
        self.timeout = timeout
        self.p = subprocess.Popen([DEBIAN_PYTHON, os.path.join(TOOLS, script)] + [str(a) for a in args],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)

    def result(self):
        try:
            out, err = self.p.communicate(timeout=self.timeout + 15)
        except subprocess.TimeoutExpired:
            self.kill()
            raise TestFailure(f"{self.script} still running after {self.timeout + 15}s")
        return parse_tool(self.script, self.p.returncode, out, err)

    def kill(self):
        if self.p.poll() is None:
            os.killpg(self.p.pid, signal.SIGKILL)
            self.p.communicate()


def background(env, script, args, timeout):
    b = Background(script, args, timeout)
    env.cleanups.append(b.kill)
    return b


def grpc_args(port, calls, ca=None, sni=None, authority=None, parallel=False):
    a = ["--target", f"127.0.0.1:{port}"] + peer_args(ca, sni, authority)
    if parallel:
        a.append("--parallel")
    return a + [json.dumps(calls)]


def grpc(port, calls, ca=None, sni=None, authority=None, parallel=False, timeout=60):
    """gRPC calls over one channel; grpc_client.py's results, one per call."""
    return run_tool("grpc_client.py", grpc_args(port, calls, ca, sni, authority, parallel), timeout)


def start_h2_upstream(env, addr, name, cert=None, max_streams=None, zone=None, window=None):
    """h2_upstream.py on addr (a port of its own); returns the port."""
    port = free_port(addr)
    argv = [DEBIAN_PYTHON, os.path.join(TOOLS, "h2_upstream.py"), "--listen", f"{addr}:{port}", "--name", name]
    if cert:
        argv += ["--cert", cert[0], "--key", cert[1]]
    if max_streams:
        argv += ["--max-streams", str(max_streams)]
    if zone:
        argv += ["--zone", zone]
    if window:
        argv += ["--window", str(window)]
    spawn_listening(env, f"h2up-{name}", argv, addr, port)
    return port


def start_grpc_upstream(env, addr, name, cert=None, fail=None, port=None):
    port = port or free_port(addr)
    argv = [DEBIAN_PYTHON, os.path.join(TOOLS, "grpc_upstream.py"), "--listen", f"{addr}:{port}", "--name", name]
    if cert:
        argv += ["--cert", cert[0], "--key", cert[1]]
    if fail:
        argv += ["--fail", str(fail)]
    spawn_listening(env, f"grpcup-{name}", argv, addr, port)
    return port


def h2up_stats(addr, port):
    """h2_upstream.py's counters (asked over HTTP/1.1)."""
    r = http_get(port, "/__ctl/stats", addr=addr)
    check(r.status == 200, f"h2 upstream stats on {addr}:{port}: {r}")
    return json.loads(r.body)


def grpcup_stats(port, **kw):
    """grpc_upstream.py's counters (the upstream on 127.0.0.1:port, asked
    directly; kw: grpc()'s TLS options)."""
    res = grpc(port, [{"method": "Stats"}], timeout=30, **kw)
    check(res[0]["code"] == "OK", f"grpc upstream stats on port {port}: {res[0]}")
    return json.loads(res[0]["responses"][0])


def pattern_sha(n):
    h = hashlib.sha256()
    block = PATTERN * 4096
    left = n
    while left:
        piece = min(left, len(block))
        h.update(block[:piece])
        left -= piece
    return h.hexdigest()


def hdr(stream, name):
    for k, v in stream["headers"]:
        if k == name:
            return v
    return None


def info(stream):
    """The JSON request report of h2_upstream.py in a response body."""
    try:
        return json.loads(stream["body"] if isinstance(stream, dict) else stream)
    except ValueError:
        raise TestFailure(f"not an h2_upstream report: {stream!r:.300}")


def statuses(streams):
    return [s["status"] if s["status"] is not None else f"reset {s['reset']}" if s["reset"] is not None
            else f"not sent: {s['not_sent']}" for s in streams]


def curl_h2(args, timeout=60):
    """curl with -sS; (rc, stdout, stderr)."""
    return curl(args + ["--max-time", str(timeout - 5)], timeout=timeout)


# --------------------------------------------------------------------------- configuration


def alog(env, fmt="json"):
    """The Appliance extra for an access log in env's dir, and its path."""
    path = env.path("access.log")
    if fmt == "json":
        return f"  accessLog: {{path: {path}, format: json}}\n", path
    return (f"  accessLog: {{path: {path}, format: text, "
            f"textFormat: \"%PROTOCOL% %RESPONSE_CODE% %RESPONSE_FLAGS% %REQ(:PATH)%\"}}\n"), path


# Envoy's byte meters, by the keys meter_log gives them.
METERS = {"in": "BYTES_RECEIVED", "out": "BYTES_SENT",
          "dhi": "DOWNSTREAM_HEADER_BYTES_RECEIVED", "dho": "DOWNSTREAM_HEADER_BYTES_SENT",
          "dwi": "DOWNSTREAM_WIRE_BYTES_RECEIVED", "dwo": "DOWNSTREAM_WIRE_BYTES_SENT",
          "uhi": "UPSTREAM_HEADER_BYTES_RECEIVED", "uho": "UPSTREAM_HEADER_BYTES_SENT",
          "uwi": "UPSTREAM_WIRE_BYTES_RECEIVED", "uwo": "UPSTREAM_WIRE_BYTES_SENT"}


def meter_log(path):
    """The Appliance extra for an access log at path, one JSON object a line:
    every byte meter (METERS) and the request's path."""
    fields = ", ".join(f"{k}: '%{op}%'" for k, op in METERS.items())
    return f"  accessLog: {{path: {path}, format: istio-json, jsonFormat: {{{fields}, path: '%REQ(:PATH)%'}}}}\n"


def log_records(path):
    return [json.loads(l) for l in file_lines(path)]


def wait_log(path, pred, what, timeout=5.0):
    """Polls the access log until pred(lines or records) holds; returns it."""
    def get():
        try:
            recs = log_records(path)
        except ValueError:
            recs = file_lines(path)
        return recs if pred(recs) else None
    try:
        return poll(get, timeout, what=what)
    except TestFailure as e:
        raise TestFailure(f"{e}; the access log has: {file_lines(path)[-10:]}")


def limits(**kv):
    return "  limits: {" + ", ".join(f"{k}: {v}" for k, v in kv.items()) + "}\n"


def dest_rule(name, host, http=None, tls=None, subsets=()):
    """A DestinationRule with connectionPool.http {http}, tls {tls} and subsets by version."""
    s = (f"apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}}}\n"
         f"spec:\n  host: {host}\n")
    if http or tls:
        s += "  trafficPolicy:\n"
    if http:
        s += f"    connectionPool:\n      http: {{{http}}}\n"
    if tls:
        s += f"    tls: {{{tls}}}\n"
    if subsets:
        s += "  subsets:\n" + "".join(f"  - {{name: {v}, labels: {{version: {v}}}}}\n" for v in subsets)
    return s


def route(host, extra=""):
    return f"  - route: [{{destination: {{host: {host}}}}}]\n{extra}"


def one_service(env, upstream_port, protocol="HTTP", addr="127.0.0.2", host=SVC, app_extra="", workers=2,
                timeouts=None, routes=None, extra_docs=(), start=True):
    """The gateway (plaintext HTTP) routing everything to host, whose one endpoint is
    addr:upstream_port spoken to with protocol. Returns the gateway port."""
    gw_port = free_port()
    conf = env.write("isthmus.yaml", docs(
        appliance(env, workers=workers, timeouts=timeouts, extra=app_extra), gateway(gw_port),
        virtual_service("vs", ["*"], routes or route(host)),
        service_entry_protocol("svc", host, [{"address": addr, "port": upstream_port}], protocol),
        *extra_docs))
    if start:
        env.start_gateway(conf, gw_port)
    return gw_port


def h1_upstream(env, addr="127.0.0.2", name="a"):
    return env.upstream([f"{addr}:0={name}"], name=name)[name]


# --------------------------------------------------------------------------- the tools alone


@_test
def h2_upstream_selftest(env):
    """h2_upstream.py and h2_client.py, without isthmus: prior knowledge and ALPN,
    HTTP/1.1 on the same port, flow-controlled bodies, refused streams over its
    limit, RST_STREAM, GOAWAY with the open streams finishing, trailers."""
    need_tools("h2", "curl", "h2load")
    pki = Pki(env)
    port = start_h2_upstream(env, "127.0.0.2", "u1", max_streams=4)
    url = f"http://127.0.0.2:{port}"
    rc, out, err = curl_h2(["--http2-prior-knowledge", "-w", "\n%{http_version}", f"{url}/x?y=1"])
    body, _, ver = out.rpartition("\n")
    check(rc == 0 and ver == "2", f"prior knowledge: rc {rc} version {ver!r} {err}")
    i = info(body)
    check(i["protocol"] == "HTTP/2" and i["path"] == "/x?y=1" and i["upstream"] == "u1", f"report {i}")
    r = http_get(port, "/x", addr="127.0.0.2")
    check(r.status == 200 and info(r.body)["protocol"] == "HTTP/1.1" and r.header("x-upstream") == "u1",
          f"HTTP/1.1 on the same port: {r}")
    # Bodies both ways, bigger than every window.
    src = env.path("up.bin")
    with open(src, "wb") as f:
        f.write(os.urandom(MIB8))
    want = hashlib.sha256(open(src, "rb").read()).hexdigest()
    rc, out, err = curl_h2(["--http2-prior-knowledge", "--data-binary", f"@{src}", f"{url}/sha256"])
    check(rc == 0 and json.loads(out) == {"bytes": MIB8, "sha256": want}, f"8 MiB upload: {rc} {out} {err}")
    rc, out, err = curl_h2(["--http2-prior-knowledge", "-o", env.path("down.bin"), "-w", "%{http_code}",
                            f"{url}/big/{MIB8}"])
    got = hashlib.sha256(open(env.path("down.bin"), "rb").read()).hexdigest()
    check(rc == 0 and out == "200" and got == pattern_sha(MIB8), f"8 MiB download: {rc} {out} {err}")
    # Six streams at once against a limit of 4 sent before the SETTINGS: two refused.
    rep = h2_client(port, [{"path": "/delay/400"}] * 6, after=[{"path": "/after"}], burst=True, addr="127.0.0.2")
    st = statuses(rep["streams"])
    check(st.count(200) == 4 and st.count("reset 7") == 2, f"burst of 6 over a limit of 4: {st}")
    check(rep["settings"]["MAX_CONCURRENT_STREAMS"] == 4, f"settings {rep['settings']}")
    check(statuses(rep["after"]) == [200] and not rep["closed"] and rep["goaway"] is None,
          f"connection after refusals: {rep}")
    rep = h2_client(port, [{"path": "/delay/300"}] * 6, addr="127.0.0.2")
    check(statuses(rep["streams"]) == [200] * 6, f"6 streams within the limit: {statuses(rep['streams'])}")
    rep = h2_client(port, [{"path": "/reset/7"}, {"path": "/status/418"},
                           {"path": "/echo", "body": "ping", "trailers": [["x-t", "1"]],
                            "headers": [["x-send-trailer-grpc-status", "0"]]}], addr="127.0.0.2")
    a, b, c = rep["streams"]
    check(a["reset"] == 7 and a["status"] is None, f"/reset/7: {a}")
    check(b["status"] == 418, f"/status/418: {b}")
    check(c["status"] == 200 and c["body"] == "ping" and ["x-t", "1"] in c["trailers"]
          and ["grpc-status", "0"] in c["trailers"], f"/echo with trailers: {c}")
    rep = h2_client(port, [{"path": "/delay/600"}, {"path": "/goaway"}], after=[{"path": "/late"}],
                    addr="127.0.0.2")
    check(rep["goaway"] and rep["goaway"]["error_code"] == 0, f"no GOAWAY: {rep}")
    slow = rep["streams"][0]
    check(slow["status"] == 200 and slow["done_at"] > rep["goaway"]["at"],
          f"the open stream did not finish after the GOAWAY: {rep}")
    check(rep["after"][0]["not_sent"] == "goaway", f"a stream opened after GOAWAY: {rep['after']}")
    p = subprocess.run(["h2load", "-n", "500", "-c", "2", "-m", "4", url + "/"], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=60)
    check("500 succeeded" in p.stdout.decode() and "500 2xx" in p.stdout.decode(), f"h2load: {p.stdout[-600:]}")
    stats = h2up_stats("127.0.0.2", port)
    check(stats["max_streams_per_conn"] == 4 and stats["refused"] == 2 and stats["protocol_errors"] == 0,
          f"stats {stats}")
    # TLS: ALPN h2 and http/1.1.
    cert = pki.leaf("h2up", ["DNS:h2up.test.internal"])
    tport = start_h2_upstream(env, "127.0.0.3", "t1", cert=cert)
    base = ["--cacert", pki.ca(), "--resolve", f"h2up.test.internal:{tport}:127.0.0.3"]
    for flag, ver, alpn in (("--http2", "2", "h2"), ("--http1.1", "1.1", "http/1.1")):
        rc, out, err = curl_h2(base + [flag, "-w", "\n%{http_version}", f"https://h2up.test.internal:{tport}/t"])
        body, _, got = out.rpartition("\n")
        check(rc == 0 and got == ver and info(body)["alpn"] == alpn and info(body)["tls"],
              f"TLS {flag}: rc {rc} {out!r} {err}")


@_test
def grpc_upstream_selftest(env):
    """grpc_upstream.py and grpc_client.py, without isthmus: every method, in
    plaintext and over TLS; errors are trailers-only; a deadline cancels."""
    need_tools("grpc", "h2")
    pki = Pki(env)
    port = start_grpc_upstream(env, "127.0.0.1", "g1")
    res = grpc(port, [
        {"method": "Unary", "request": "x", "repeat": 1 << 20},
        {"method": "ServerStream", "request": json.dumps({"n": 50, "code": NOT_FOUND, "message": "end"})},
        {"method": "ClientStream", "requests": [str(i) for i in range(100)]},
        {"method": "Bidi", "requests": ["a", "b", "c"]},
        {"method": "Status", "request": json.dumps({"code": NOT_FOUND, "message": "no such thing"})},
        {"method": "Sleep", "request": json.dumps({"ms": 5000}), "timeout": 0.4},
    ])
    u, ss, cs, bi, stt, sl = res
    check(u["code"] == "OK" and u["bytes"] == 1 << 20 and u["sha256"] == hashlib.sha256(b"x" * (1 << 20)).hexdigest()
          and ["x-upstream", "g1"] in u["initial_metadata"], f"Unary: {u}")
    check(ss["code_value"] == NOT_FOUND and ss["details"] == "end" and ss["count"] == 50, f"ServerStream {ss}")
    check(cs["code"] == "OK" and json.loads(cs["responses"][0]) == {"count": 100, "sum": 4950}, f"ClientStream {cs}")
    check(bi["code"] == "OK" and bi["responses"] == ["a", "b", "c"], f"Bidi {bi}")
    check(stt["code_value"] == NOT_FOUND and stt["details"] == "no such thing"
          and ["x-upstream", "g1"] in stt["trailing_metadata"], f"Status {stt}")
    check(sl["code_value"] == DEADLINE_EXCEEDED and sl["elapsed"] < 2, f"Sleep past the deadline: {sl}")
    poll(lambda: grpcup_stats(port)["cancelled"] >= 1, 5, what="the server to see the cancel")
    # The wire form of an error: one HEADERS frame with END_STREAM (trailers-only).
    rep = h2_client(port, [{"path": "/isthmus.test.Echo/Status", "grpc": json.dumps({"code": 5, "message": "m"})},
                           {"path": "/isthmus.test.Echo/Unary", "grpc": "hi"}])
    e, ok = rep["streams"]
    check(e["status"] == 200 and e["trailers_only"] and hdr(e, "grpc-status") == "5", f"trailers-only error: {e}")
    check(ok["grpc_messages"] == ["hi"] and ["grpc-status", "0"] in ok["trailers"], f"unary on the wire: {ok}")
    cert = pki.leaf("grpcup", ["DNS:grpc.test.internal"])
    tport = start_grpc_upstream(env, "127.0.0.1", "g2", cert=cert)
    res = grpc(tport, [{"method": "Unary", "request": "tls"}], ca=pki.ca(), sni="grpc.test.internal")
    check(res[0]["code"] == "OK" and res[0]["responses"] == ["tls"], f"gRPC over TLS: {res[0]}")


# --------------------------------------------------------------------------- HTTP/2 from clients


@_test
def h2c_prior_knowledge(env):
    """curl --http2-prior-knowledge through a plaintext server to an HTTP/1.1
    upstream; %PROTOCOL% logs HTTP/2 for it and HTTP/1.1 for an HTTP/1.1 request,
    %REQ(HOST)% the authority of both (Envoy's header map finds :authority
    under host; it was "-" over HTTP/2)."""
    need_tools("curl")
    extra, log = alog(env, "text")
    extra = extra.replace("%REQ(:PATH)%", "%REQ(:PATH)% %REQ(HOST)%")
    gw = one_service(env, h1_upstream(env), app_extra=extra)
    rc, out, err = curl_h2(["--http2-prior-knowledge", "-D", "-", "-w", "%{http_version} %{http_code}",
                            f"http://127.0.0.1:{gw}/hello/h2"], timeout=20)
    check(rc == 0, f"curl --http2-prior-knowledge: rc {rc} {err}")
    check(out.endswith("a /hello/h2\n2 200"), f"want the upstream's answer over HTTP/2, got {out!r}")
    check(re.search(r"(?mi)^x-upstream: a\r?$", out), f"no x-upstream header: {out!r}")
    rc, out, err = curl_h2(["--http1.1", "-w", "%{http_version}", f"http://127.0.0.1:{gw}/hello/h1"], timeout=20)
    check(rc == 0 and out.endswith("1.1"), f"HTTP/1.1 beside it: rc {rc} {out!r} {err}")
    lines = wait_log(log, lambda ls: len(ls) >= 2, "two access-log lines")
    check(f"HTTP/2 200 - /hello/h2 127.0.0.1:{gw}" in lines, f"no 'HTTP/2 200 - /hello/h2' line: {lines}")
    check(f"HTTP/1.1 200 - /hello/h1 127.0.0.1:{gw}" in lines, f"no 'HTTP/1.1 200 - /hello/h1' line: {lines}")


@_test
def h2_alpn_tls(env):
    """An HTTPS server offers h2 and http/1.1 by ALPN: curl --http2 gets HTTP/2,
    curl --http1.1 HTTP/1.1, a client offering only http/1.1 gets it."""
    need_tools("curl")
    pki = Pki(env)
    up = h1_upstream(env)
    port = free_port()
    crt = pki.leaf("gw", ["DNS:h2.example.com"])
    conf = env.write("isthmus.yaml", docs(
        appliance(env), gateway_of(server(port, ["h2.example.com"], tls_simple(crt))),
        virtual_service("vs", ["h2.example.com"], route(SVC)),
        service_entry("svc", SVC, [{"address": "127.0.0.2", "port": up}])))
    env.start_gateway(conf, port)
    base = ["--cacert", pki.ca(), "--resolve", f"h2.example.com:{port}:127.0.0.1"]
    for flag, want in (("--http2", "2"), ("--http1.1", "1.1")):
        rc, out, err = curl_h2(base + [flag, "-w", " %{http_version}", f"https://h2.example.com:{port}/tls"],
                               timeout=20)
        check(rc == 0 and out == f"a /tls\n {want}", f"curl {flag}: rc {rc} {out!r} {err}")
    p = subprocess.run(["openssl", "s_client", "-connect", f"127.0.0.1:{port}", "-servername", "h2.example.com",
                        "-alpn", "h2,http/1.1"], input=b"", stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=20)
    check("ALPN protocol: h2" in p.stdout.decode(errors="replace"),
          f"s_client offering h2,http/1.1: {p.stdout[-800:]!r}")


@_test
def h2c_upgrade_stays_http1(env):
    """An HTTP/1.1 request with Upgrade: h2c is answered as HTTP/1.1 (no 101),
    and the connection stays HTTP/1.1."""
    up = h1_upstream(env)
    gw = one_service(env, up)
    with Conn("127.0.0.1", gw) as c:
        r = c.request("GET", "/up1", headers=[("Connection", "Upgrade, HTTP2-Settings"), ("Upgrade", "h2c"),
                                              ("HTTP2-Settings", "AAMAAABkAAQAAP__")])
        check(r.status == 200 and r.body == b"a /up1\n", f"Upgrade: h2c answered {r}")
        check(b" 101 " not in r.raw_head, f"101 for h2c: {r.raw_head!r}")
        r = c.request("GET", "/up2")
        check(r.status == 200 and r.body == b"a /up2\n", f"the next request on the connection: {r}")


@_test
def h2_many_streams(env):
    """h2load: 2000 requests over 4 connections, 32 streams each at once, all 2xx."""
    need_tools("h2load")
    gw = one_service(env, h1_upstream(env))
    t0 = time.monotonic()
    p = subprocess.run(["h2load", "-n", "2000", "-c", "4", "-m", "32", f"http://127.0.0.1:{gw}/many"],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=90)
    out = p.stdout.decode(errors="replace")
    check(re.search(r"requests: 2000 total, 2000 started, 2000 done, 2000 succeeded, 0 failed", out)
          and "status codes: 2000 2xx" in out, f"h2load through isthmus: {out[-1200:]}")
    check("Application protocol: h2c" in out, f"h2load did not speak h2c: {out[-1200:]}")
    check(time.monotonic() - t0 < 60, f"2000 requests took {time.monotonic() - t0:.0f}s")


@_test
def h2_big_bodies(env):
    """8 MiB up and down over HTTP/2, windows far smaller than the bodies: curl
    (echo and download checked by sha256), then both at once on one connection."""
    need_tools("curl", "h2")
    gw = one_service(env, h1_upstream(env), app_extra=limits(
        http2InitialStreamWindowSize=65535, http2InitialConnectionWindowSize=1048576))
    src = env.path("up.bin")
    with open(src, "wb") as f:
        f.write(os.urandom(MIB8))
    want = hashlib.sha256(open(src, "rb").read()).hexdigest()
    rc, out, err = curl_h2(["--http2-prior-knowledge", "--data-binary", f"@{src}", "-o", env.path("echo.bin"),
                            "-w", "%{http_code} %{http_version}", f"http://127.0.0.1:{gw}/echo"], timeout=120)
    got = hashlib.sha256(open(env.path("echo.bin"), "rb").read()).hexdigest() if rc == 0 else None
    check(rc == 0 and out == "200 2" and got == want, f"8 MiB echo: rc {rc} {out!r} sha ok {got == want} {err}")
    rc, out, err = curl_h2(["--http2-prior-knowledge", "-o", env.path("down.bin"),
                            "-w", "%{http_code} %{size_download}", f"http://127.0.0.1:{gw}/bytes/{MIB8}"], timeout=120)
    got = hashlib.sha256(open(env.path("down.bin"), "rb").read()).hexdigest() if rc == 0 else None
    check(rc == 0 and out == f"200 {MIB8}" and got == pattern_sha(MIB8), f"8 MiB download: rc {rc} {out!r} {err}")
    rep = h2_client(gw, [{"method": "POST", "path": "/echo", "body_size": MIB8},
                         {"path": f"/bytes/{MIB8}"}, {"path": f"/chunked/{MIB8 // 2}"}], timeout=120)
    e, d, c = rep["streams"]
    check(e["status"] == 200 and e["body_len"] == MIB8 and e["sha256"] == e["sent_sha256"],
          f"echo on a shared connection: {e['status']} {e['body_len']} {rep['error']}")
    check(d["status"] == 200 and d["sha256"] == pattern_sha(MIB8), f"download beside it: {d['status']} {d['body_len']}")
    check(c["status"] == 200 and c["sha256"] == pattern_sha(MIB8 // 2), f"chunked beside it: {c['status']}")


@_test
def h2_streams_routed_and_weighted(env):
    """Each stream is routed and balanced on its own: on one HTTP/2 connection,
    a header match picks its destination, and the rest splits 75/25."""
    need_tools("h2")
    p1 = h1_upstream(env, "127.0.0.2", "v1")
    p2 = h1_upstream(env, "127.0.0.3", "v2")
    routes = (f"  - match: [{{headers: {{x-pick: {{exact: v2}}}}}}]\n"
              f"    route: [{{destination: {{host: {SVC}, subset: v2}}}}]\n"
              f"  - route:\n    - {{destination: {{host: {SVC}, subset: v1}}, weight: 75}}\n"
              f"    - {{destination: {{host: {SVC}, subset: v2}}, weight: 25}}\n")
    gw_port = free_port()
    conf = env.write("isthmus.yaml", docs(
        appliance(env), gateway(gw_port), virtual_service("vs", ["*"], routes),
        dest_rule("dr", SVC, subsets=("v1", "v2")),
        service_entry("svc", SVC, [{"address": "127.0.0.2", "port": p1, "labels": {"version": "v1"}},
                                   {"address": "127.0.0.3", "port": p2, "labels": {"version": "v2"}}])))
    env.start_gateway(conf, gw_port)
    reqs = [{"path": f"/w{i}"} for i in range(400)] + [{"path": "/pick", "headers": [["x-pick", "v2"]]}] * 20
    rep = h2_client(gw_port, reqs, timeout=60)
    st = rep["streams"]
    bad = [s for s in st if s["status"] != 200]
    check(not bad, f"{len(bad)} of {len(st)} streams not 200: {statuses(bad)[:5]} {rep['error']}")
    picked = {hdr(s, "x-upstream") for s in st[400:]}
    check(picked == {"v2"}, f"header-matched streams went to {picked}")
    v1 = sum(1 for s in st[:400] if hdr(s, "x-upstream") == "v1")
    check(65 <= 100 * v1 / 400 <= 85, f"v1 got {v1} of 400 weighted streams (want ≈75 %)")


@_test
def h2_byte_meters(env):
    """Envoy's byte meters of HTTP/2 streams in the access log. The client's
    side is exact to the frame: h2_client.py meters what it sent and got for
    each stream (9 bytes a frame with its payload; the heads, their HEADERS
    frames). %BYTES_RECEIVED% and %BYTES_SENT% are the bodies alone. The
    upstream's side, HTTP/1.1 and HTTP/2, holds the heads and the bodies."""
    need_tools("h2")
    log = env.path("access.log")
    h1 = h1_upstream(env, "127.0.0.2", "a")
    h2p = start_h2_upstream(env, "127.0.0.3", "u1")
    gw_port = free_port()
    routes = (f"  - match: [{{uri: {{prefix: /one}}}}]\n    route: [{{destination: {{host: {SVC}}}}}]\n"
              f"  - route: [{{destination: {{host: meters.test.internal}}}}]\n")
    env.start_gateway(env.write("isthmus.yaml", docs(
        appliance(env, extra=meter_log(log)), gateway(gw_port), virtual_service("vs", ["*"], routes),
        service_entry_protocol("one", SVC, [{"address": "127.0.0.2", "port": h1}], "HTTP"),
        service_entry_protocol("two", "meters.test.internal", [{"address": "127.0.0.3", "port": h2p}], "HTTP2"))),
        gw_port)
    rep = h2_client(gw_port, [{"method": "POST", "path": "/one/x", "body_size": 1000},
                              {"method": "POST", "path": "/two/x", "body_size": 1000}])
    check(statuses(rep["streams"]) == [200, 200], f"statuses {statuses(rep['streams'])}: {rep['error']}")
    recs = {r["path"]: r for r in wait_log(log, lambda rs: len(rs) >= 2, "two access-log lines")}
    for s, path in zip(rep["streams"], ("/one/x", "/two/x")):
        r, m = recs[path], s["meter"]
        check((r["in"], r["out"]) == (1000, s["body_len"]) and s["body_len"] > 0, f"bodies: {r} {s['body_len']}")
        check((r["dhi"], r["dwi"], r["dho"], r["dwo"]) ==
              (m["head_sent"], m["wire_sent"], m["head_received"], m["wire_received"]),
              f"the client's side: {r}, the client metered {m}")
        check(r["dhi"] > 9 and r["dwi"] >= r["dhi"] + 9 + 1000 and r["dho"] > 9 and
              r["dwo"] >= r["dho"] + 9 + r["out"], f"the client's side: {r}")
        framing = 9 if path == "/two/x" else 0  # an HTTP/2 upstream: a frame header at least
        check(r["uho"] > framing and r["uwo"] >= r["uho"] + framing + 1000 and
              r["uhi"] > framing and r["uwi"] >= r["uhi"] + framing + r["out"], f"the upstream's side: {r}")


@_test
def h2_upstream_refused_stream_retried(env):
    """An HTTP/2 upstream's RST_STREAM REFUSED_STREAM before a head is retried
    under retryOn refused-stream (Envoy's RetryPolicy::RETRY_ON_REFUSED_STREAM;
    in Istio's default retryOn), which a plain reset is not: the upstream sees
    every attempt."""
    need_tools("h2")
    port = start_h2_upstream(env, "127.0.0.2", "u1")
    gw = one_service(env, port, "HTTP2", timeouts={"upstreamResponse": "10s"},
                     routes=route(SVC, "    retries: {attempts: 2, retryOn: refused-stream}\n"))
    before = int(http_get(port, "/__ctl/count", addr="127.0.0.2").body)
    r = env.get("/reset/7", timeout=15)
    check(r.status == 503, f"a stream refused on every attempt: {r}")
    n = int(http_get(port, "/__ctl/count", addr="127.0.0.2").body) - before
    check(n == 3, f"the upstream saw {n} attempts of a refused stream, want 3 (attempts: 2, retryOn refused-stream)")


@_test
def h2_upstream_settings_refuse_push(env):
    """The gateway's first SETTINGS to an HTTP/2 upstream says ENABLE_PUSH 0
    (as Envoy's client codec: it takes no server push), with its stream window:
    read off the wire by a listener that only records the preface."""
    lsock = socket.socket()
    lsock.bind(("127.0.0.2", free_port("127.0.0.2")))
    lsock.listen(4)
    lsock.settimeout(10)
    port = lsock.getsockname()[1]
    got = {}

    def accept():
        try:
            c, _ = lsock.accept()
            c.settimeout(5)
            buf = b""
            while len(buf) < 24 + 9 or len(buf) < 24 + 9 + int.from_bytes(buf[24:27], "big"):
                d = c.recv(4096)
                if not d:
                    break
                buf += d
            got["buf"] = buf
            c.close()
        except OSError as e:
            got["error"] = repr(e)

    t = threading.Thread(target=accept)
    t.start()
    one_service(env, port, "HTTP2", workers=1)
    try:
        env.get("/x", timeout=5)
    except Exception:
        pass  # the listener answers nothing
    t.join(12)
    lsock.close()
    buf = got.get("buf", b"")
    check(buf[:24] == b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" and len(buf) >= 33 and buf[27] == 4,
          f"no preface and SETTINGS from the gateway: {got!r}")
    n = int.from_bytes(buf[24:27], "big")
    body = buf[33:33 + n]
    settings = {int.from_bytes(body[i:i + 2], "big"): int.from_bytes(body[i + 2:i + 6], "big")
                for i in range(0, len(body) - 5, 6)}
    check(settings.get(2) == 0, f"SETTINGS_ENABLE_PUSH in the gateway's SETTINGS: {settings} (want 0)")


@_test
def h2_upstream_status_below_100(env):
    """A :status below 100 from an HTTP/2 upstream (nghttp2 lets "099" through)
    is no interim head but a malformed response: 502 at once, as an HTTP/1.1
    upstream's, not a wait for a final head the ended stream cannot bring."""
    need_tools("h2")
    port = free_port("127.0.0.2")
    spawn_listening(env, "h2raw", [DEBIAN_PYTHON, os.path.join(TOOLS, "h2_raw_answer.py"), "--listen",
                                   f"127.0.0.2:{port}", "--status", "099",
                                   "--field", "x-a=1"], "127.0.0.2", port)
    one_service(env, port, "HTTP2", workers=1, timeouts={"upstreamResponse": "8s"})
    t0 = time.monotonic()
    r = env.get("/x", timeout=15)
    took = time.monotonic() - t0
    check(r.status == 502 and took < 4, f"status 099 from the upstream: {r} after {took:.1f} s (want 502 at once)")


@_test
def h2_stream_timeout_and_retry(env):
    """Timeouts and retries are per stream: on one connection, a stream past the
    route timeout gets 504 while its neighbours get 200; a stream whose first
    endpoint answers 503 is retried on the other (retryOn 503); the connection
    lives on."""
    need_tools("h2")
    pa = h1_upstream(env, "127.0.0.2", "a")
    pb = h1_upstream(env, "127.0.0.3", "b")
    extra, log = alog(env)
    gw_port = free_port()
    conf = env.write("isthmus.yaml", docs(
        appliance(env, extra=extra), gateway(gw_port),
        virtual_service("vs", ["*"], route(SVC, "    timeout: 1s\n    retries: {attempts: 2, retryOn: \"503\"}\n")),
        service_entry("svc", SVC, [{"address": "127.0.0.2", "port": pa}, {"address": "127.0.0.3", "port": pb}])))
    env.start_gateway(conf, gw_port)
    Env.ctl("127.0.0.2", pa, "fail/503")
    reqs = [{"path": "/delay/3000"}] + [{"path": f"/delay/{50 + 10 * i}"} for i in range(10)]
    t0 = time.monotonic()
    rep = h2_client(gw_port, reqs, after=[{"path": "/after"}], timeout=20)
    st = statuses(rep["streams"])
    check(st[0] == 504, f"the stream past the 1 s route timeout: {st[0]} (want 504)")
    check(rep["streams"][0]["done_at"] < 2.5, f"504 after {rep['streams'][0]['done_at']}s")
    check(st[1:] == [200] * 10, f"its neighbours: {st[1:]}")
    check(all(hdr(s, "x-upstream") == "b" for s in rep["streams"][1:]),
          f"503 from a not retried on b: {[hdr(s, 'x-upstream') for s in rep['streams'][1:]]}")
    check(statuses(rep["after"]) == [200] and not rep["closed"], f"the connection after: {rep['after']} {rep['error']}")
    check(time.monotonic() - t0 < 15, "took too long")
    recs = wait_log(log, lambda rs: len(rs) >= 12, "12 access-log lines")
    slow = [r for r in recs if r["path"] == "/delay/3000"]
    check(slow and slow[0]["status"] == 504 and slow[0]["flags"] == "UT" and slow[0]["protocol"] == "HTTP/2",
          f"log of the timed-out stream: {slow}")
    retried = [r for r in recs if r["path"] != "/delay/3000" and r["attempts"] > 1]
    check(retried, f"no stream logged more than one attempt: {recs}")


@_test
def h2_max_concurrent_streams(env):
    """limits.http2MaxConcurrentStreams: 8 is announced in SETTINGS; a client that
    opens 12 before reading it gets 4 refused (RST_STREAM REFUSED_STREAM) and 8
    answered, and the connection goes on."""
    need_tools("h2")
    up = h1_upstream(env)
    gw = one_service(env, up, app_extra=limits(http2MaxConcurrentStreams=8))
    rep = h2_client(gw, [{"path": "/delay/800"}] * 12, after=[{"path": "/after"}] * 3, burst=True, timeout=20)
    check((rep["settings"] or {}).get("MAX_CONCURRENT_STREAMS") == 8, f"server SETTINGS: {rep['settings']}")
    st = statuses(rep["streams"])
    check(st.count(200) == 8 and st.count("reset 7") == 4, f"12 streams over a limit of 8: {st}")
    check(rep["goaway"] is None and not rep["closed"], f"the connection ended: {rep['goaway']} {rep['error']}")
    check(statuses(rep["after"]) == [200] * 3, f"streams after the refusals: {statuses(rep['after'])}")
    # A client that reads the SETTINGS first stays within it and is served whole.
    rep = h2_client(gw, [{"path": "/delay/200"}] * 20, timeout=20)
    check(statuses(rep["streams"]) == [200] * 20, f"20 streams within the limit: {statuses(rep['streams'])}")


def slow_streams_in_flight(env, gw, upstream_port, n, delay_ms):
    """Starts an HTTP/2 client with n streams of /delay/delay_ms and returns once
    the upstream got all of them."""
    before = int(Env.ctl("127.0.0.2", upstream_port, "count"))
    b = background(env, "h2_client.py", h2_args(gw, [{"path": f"/delay/{delay_ms}"}] * n, timeout=20), 20)
    poll(lambda: int(Env.ctl("127.0.0.2", upstream_port, "count")) >= before + n, 5,
         what=f"{n} slow streams to reach the upstream")
    return b


def check_goaway_drain(rep, n, what):
    check(rep["goaway"] is not None, f"{what}: no GOAWAY: {rep}")
    st = statuses(rep["streams"])
    check(st == [200] * n, f"{what}: in-flight streams answered {st}")
    first_done = min(s["done_at"] for s in rep["streams"])
    check(rep["goaway"]["at"] <= first_done, f"{what}: GOAWAY at {rep['goaway']['at']}s came after the streams "
                                             f"ended ({first_done}s): not a graceful drain")
    check(rep["goaway"]["last_stream_id"] >= max(s["id"] for s in rep["streams"]),
          f"{what}: GOAWAY last_stream_id {rep['goaway']['last_stream_id']} drops open streams")


def h2_frame(kind, flags, stream, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


@_test
def h2_lingering_close_after_goaway(env):
    """A client that sends a frame (a PING; WINDOW_UPDATEs as it reads) after
    the connection's last stream and GOAWAY: the gateway lingers (its FIN sent,
    the client's bytes read and dropped) instead of closing, so the client
    gets every byte of the response and then the end. The frame used to meet a
    closed socket, whose reset dropped what the kernel had not sent yet: the
    client got part of the body, then a reset. The lingering lasts while the
    kernel holds unsent bytes of the response, past its quiet second."""
    size = 1500000
    gw = one_service(env, h1_upstream(env))
    poll(lambda: env.get("/ready").status == 200, 10, what="the upstream through the gateway")
    path = f"/bytes/{size}".encode()
    block = b"\x82\x86\x04" + bytes([len(path)]) + path + b"\x01\x04test"  # GET http :path :authority
    with socket.create_connection(("127.0.0.1", gw), timeout=10) as c:
        c.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" +
                  h2_frame(0x4, 0, 0, struct.pack(">HI", 0x4, 0x7fffffff)) +  # INITIAL_WINDOW_SIZE
                  h2_frame(0x8, 0, 0, struct.pack(">I", 0x7fffffff - 65535)) +  # the connection's window
                  h2_frame(0x1, 0x5, 1, block) +  # HEADERS, END_STREAM | END_HEADERS
                  h2_frame(0x7, 0, 0, struct.pack(">II", 0, 0)))  # GOAWAY: the client is done
        # Not reading for longer than the lingering's quiet second: the response
        # waits in the kernel's buffers (the gateway lingers on while they hold some).
        # Lingering, the connection holds no HTTP/2 state any more.
        t0 = time.monotonic()
        info_now = poll(lambda: (lambda i: i if i["http2_connections"] == 0 else None)(
            json.loads(ctl_cmd(env.path("ctl.sock"), "show info json"))), 1, what="the HTTP/2 state freed")
        check(info_now["connections_active"] == 1 and info_now["http2_connection_heap_bytes"] == 0,
              f"lingering: {info_now}")
        time.sleep(max(0.0, 1.5 - (time.monotonic() - t0)))
        c.sendall(h2_frame(0x6, 0, 0, b"8 bytes!"))  # PING
        buf, end = read_to_end(c)
        got = 0
        while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
            n = int.from_bytes(buf[:3], "big")
            if buf[3] == 0x0 and int.from_bytes(buf[5:9], "big") & 0x7fffffff == 1:
                got += n - (buf[9] + 1 if buf[4] & 0x8 else 0)
            buf = buf[9 + n:]
    check(got == size and end == "the end", f"{got} of {size} body bytes, then {end}: want all, then the end")


def h2_big_download(gw, size, goaway=True):
    """A prior-knowledge connection to gw asking /bytes/size with windows that
    take all of it (and the client's GOAWAY: the gateway closes after it);
    nothing read yet."""
    path = f"/bytes/{size}".encode()
    block = b"\x82\x86\x04" + bytes([len(path)]) + path + b"\x01\x04test"
    c = socket.create_connection(("127.0.0.1", gw), timeout=10)
    c.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(0x4, 0, 0, struct.pack(">HI", 0x4, 0x7fffffff)) +
              h2_frame(0x8, 0, 0, struct.pack(">I", 0x7fffffff - 65535)) + h2_frame(0x1, 0x5, 1, block) +
              (h2_frame(0x7, 0, 0, struct.pack(">II", 0, 0)) if goaway else b""))
    return c


@_test
def h2_lingering_skipped_on_stop_and_errors(env):
    """A graceful stop does not wait for a client slow to read what the kernel
    holds of its response (it waited the whole drain time, 10 s here); a
    connection nghttp2 ended with an error GOAWAY (its rapid-reset limit) is
    closed at once, not lingered on while the client sends."""
    gw = one_service(env, h1_upstream(env), timeouts={"drain": "10s"}, workers=1)
    poll(lambda: env.get("/ready").status == 200, 10, what="the upstream through the gateway")
    # Rapid reset past nghttp2's limit: its GOAWAY (INTERNAL_ERROR), then a PING every 0.2 s.
    block = b"\x82\x86\x84\x01\x04test"  # GET http / test
    frames = b"".join(h2_frame(0x1, 0x5, i, block) + h2_frame(0x3, 0, i, struct.pack(">I", 8))
                      for i in range(1, 6001, 2))
    with socket.create_connection(("127.0.0.1", gw), timeout=10) as c:
        c.sendall(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + h2_frame(0x4, 0, 0) + frames)
        t0, closed = time.monotonic(), None
        c.settimeout(0.2)
        while closed is None and time.monotonic() - t0 < 8:
            try:
                if c.recv(1 << 20) == b"":
                    c.sendall(h2_frame(0x6, 0, 0, b"8 bytes!"))
            except socket.timeout:
                c.sendall(h2_frame(0x6, 0, 0, b"8 bytes!"))
            except (BrokenPipeError, ConnectionResetError):
                closed = time.monotonic() - t0
            time.sleep(0.2)
    check(closed is not None and closed < 5, f"after nghttp2's GOAWAY the connection lived on {closed} s")
    c = h2_big_download(env.gw_port, 3000000)
    try:
        poll(lambda: json.loads(ctl_cmd(env.path("ctl.sock"), "show info json"))["streams"] == 0, 10,
             what="the response handed to the kernel")
        t0 = time.monotonic()
        os.kill(env.gateway.pid, signal.SIGTERM)
        wait_master_exit(env, 8)
        check(time.monotonic() - t0 < 8, "the stop waited for the slow reader")
    finally:
        c.close()


@_test
def h2_graceful_stop_goaway(env):
    """SIGTERM with streams in flight: the client gets GOAWAY first, the streams
    finish, the master exits 0."""
    need_tools("h2")
    up = h1_upstream(env)
    gw = one_service(env, up)
    b = slow_streams_in_flight(env, gw, up, 3, 1500)
    os.kill(env.gateway.pid, signal.SIGTERM)
    check_goaway_drain(b.result(), 3, "graceful stop")
    wait_master_exit(env)


@_test
def h2_graceful_reload_goaway(env):
    """A reload that replaces the workers (2 → 1): their HTTP/2 connections get
    GOAWAY, their streams finish, and new connections are served."""
    need_tools("h2", "curl")
    up = h1_upstream(env)
    gw = one_service(env, up)
    conf = env.path("isthmus.yaml")
    b = slow_streams_in_flight(env, gw, up, 3, 1500)
    text = open(conf).read()
    check("workers: 2" in text, "config without 'workers: 2'")
    with open(conf + ".tmp", "w") as f:
        f.write(text.replace("workers: 2", "workers: 1"))
    os.replace(conf + ".tmp", conf)
    base = env.log_count("old workers draining")
    os.kill(env.gateway.pid, signal.SIGHUP)
    poll(lambda: env.log_count("old workers draining") > base, 5, what="the reload to replace the workers")
    check_goaway_drain(b.result(), 3, "reload")
    rc, out, err = curl_h2(["--http2-prior-knowledge", "-w", " %{http_code}", f"http://127.0.0.1:{gw}/new"],
                           timeout=20)
    check(rc == 0 and out == "a /new\n 200", f"a new connection after the reload: rc {rc} {out!r} {err}")
    check(env.gateway.alive(), "master died")


@_test
def expect_continue_answered_here(env):
    """Expect: 100-continue is answered 100 by isthmus at once and the field
    goes no further, as Envoy's connection manager does by default (Istio
    sets no proxy_100_continue); an upstream's 1xx heads are not relayed. So
    a client that waits for the 100 before its body gets it whatever the
    protocols (an HTTP/2 client, or an HTTP/1.1 one to an HTTP/2 upstream,
    got none: each upload waited out the client's expect timeout, 20 s
    here); an HTTP/1.0 client gets no 1xx (RFC 9110 15.2: it got the
    upstream's 100 and 103); an upstream's 103 Early Hints reach no client.
    No route matches the field, which Envoy removes first; the 100 counts
    as a 1xx."""
    h1 = h1_upstream(env)
    h2p = start_h2_upstream(env, "127.0.0.3", "b")
    h2host = "h2b.test.internal"
    gw = one_service(env, h1, routes=("  - match: [{headers: {expect: {exact: 100-continue}}}]\n"
                                      "    directResponse: {status: 299, body: {string: expect seen}}\n"
                                      f"  - match: [{{headers: {{x-to: {{exact: h2}}}}}}]\n"
                                      f"    route: [{{destination: {{host: {h2host}}}}}]\n"
                                      "  - match: [{uri: {prefix: /direct}}]\n"
                                      "    directResponse: {status: 418, body: {string: teapot}}\n"
                                      f"{route(SVC)}"),
                     extra_docs=(service_entry_protocol("h2b", h2host, [{"address": "127.0.0.3", "port": h2p}],
                                                        "HTTP2"),))
    body = env.write("body.bin", "x" * 2048)
    info = json.loads(ctl_cmd(env.path("ctl.sock"), "show info json"))
    for client in ("--http1.1", "--http2-prior-knowledge"):
        for to, path in (("h1", "/headers"), ("h2", "/x")):
            rc, out, err = curl([client, "-s", "-m", "40", "--expect100-timeout", "20", "-H", "Expect: 100-continue",
                                 "-H", f"x-to: {to}", "--data-binary", f"@{body}", "-w", "\n%{http_code} %{time_total}",
                                 f"http://127.0.0.1:{gw}{path}"])
            what = f"curl {client} to the {to} upstream"
            seen, _, tail = out.rpartition("\n")
            code, took = (tail.split() + ["", ""])[:2]
            check(rc == 0 and code == "200", f"{what}: {rc} {out[-300:]!r} {err}")
            check(float(took) < 10, f"{what} took {took} s: no 100 Continue came, the client waited for it")
            check("expect" not in seen.lower(), f"{what}: the upstream got the Expect field: {seen[:400]!r}")
    # Counted as Envoy's connection manager charges its 100 (the route that
    # matches the field never saw it: the answers above were 200).
    info2 = json.loads(ctl_cmd(env.path("ctl.sock"), "show info json"))
    check(info2["responses_1xx"] - info["responses_1xx"] == 4, f"1xx counted: {info['responses_1xx']} then "
                                                               f"{info2['responses_1xx']}, want 4 more")
    # HTTP/1.0 with Expect: no 100 (its body comes at once), nor the upstream's 103.
    hint = ("HTTP/1.1 103 Early Hints\r\nlink: </s.css>; rel=preload\r\n\r\n"
            "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").encode().hex()
    for version in ("1.0", "1.1"):
        with Conn("127.0.0.1", gw, timeout=10) as c:
            c.send(f"POST /raw HTTP/{version}\r\nHost: a\r\nx-respond: {hint}\r\nExpect: 100-continue\r\n"
                   "Content-Length: 2\r\n\r\nhi".encode())
            r = c.read_response("POST", allow_interim=True)
            if version == "1.1" and r.status == 100:
                r = c.read_response("POST", allow_interim=True)
            check(r.status == 200 and r.body == b"ok", f"HTTP/{version}: {r.status} {r.body!r}, want 200 with no 1xx "
                                                       "of the upstream's")
        with Conn("127.0.0.1", gw, timeout=10) as c:
            c.send(f"POST /echo HTTP/{version}\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"
                   "hi".encode())
            r = c.read_response("POST", allow_interim=True)
            want = 200 if version == "1.0" else 100
            check(r.status == want, f"HTTP/{version} with Expect: {r.status} first, want {want}")
    # Answered here at once: the 100, then the answer that was made meanwhile
    # (it waited for the 100's send), on every protocol.
    with Conn("127.0.0.1", gw, timeout=10) as c:
        c.send(b"POST /direct HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
        r = c.read_response("POST", allow_interim=True)
        r2 = c.read_response("POST", allow_interim=True)
        check(r.status == 100 and r2.status == 418 and r2.body == b"teapot", f"a direct response: {r} then {r2}")
    # (curl 7.88, waiting for the 100, sometimes takes the RST_STREAM NO_ERROR
    # that follows a response made before the body for an empty reply.)
    rep = h2_client(gw, [{"method": "POST", "path": "/direct", "headers": [["expect", "100-continue"]],
                          "body": "hi"}])
    (s,) = rep["streams"]
    check(s["status"] == 418 and s["body"] == "teapot", f"HTTP/2, a direct response: {s}")


@_test
def h2_head_refusals_have_no_body(env):
    """The answers isthmus makes to an HTTP/2 HEAD it refuses (a bad path,
    a :path over maxUriBytes, more fields than maxRequestHeaders) have no
    DATA: the client took their body for a protocol error (nghttp reset the
    stream, python-h2 raised InvalidBodyLengthError)."""
    gw = one_service(env, h1_upstream(env))
    many = [[f"x-{i}", "a"] for i in range(120)]
    rep = h2_client(gw, [{"method": "HEAD", "path": "/a%00"}, {"method": "HEAD", "path": "/" + "a" * 9000},
                         {"method": "HEAD", "path": "/", "headers": many}])
    got = [(s["status"], s["body_len"], s["reset"]) for s in rep["streams"]]
    check(rep["error"] is None and got == [(400, 0, None), (414, 0, None), (431, 0, None)],
          f"HEAD refusals over HTTP/2: {got}, {rep['error']}")


@_test
def bodiless_request_says_length(env):
    """A request without a body whose method gives one a meaning (POST, PUT,
    PATCH, OPTIONS) reaches an HTTP/1.1 upstream with content-length: 0, as
    Envoy's codec writes it (RFC 9110 8.6: an origin may refuse one without,
    411); GET, HEAD and DELETE get none; from HTTP/1.1 and HTTP/2 clients."""
    gw = one_service(env, h1_upstream(env))
    for method, want in (("POST", True), ("PUT", True), ("OPTIONS", True), ("GET", False), ("DELETE", False)):
        with Conn("127.0.0.1", gw, timeout=10) as c:
            c.send(f"{method} /headers HTTP/1.1\r\nHost: a\r\n\r\n".encode())
            r = c.read_response(method)
        got = b"\r\ncontent-length: 0\r\n" in r.body.lower()
        check(r.status == 200 and got == want, f"HTTP/1.1 {method}: the upstream got {r.body!r}")
    rep = h2_client(gw, [{"method": "POST", "path": "/headers"}, {"method": "GET", "path": "/headers"}])
    post, get = rep["streams"]
    check(post["status"] == 200 and "\r\ncontent-length: 0\r\n" in post["body"].lower(),
          f"HTTP/2 POST: the upstream got {post['body']!r}")
    check(get["status"] == 200 and "content-length" not in get["body"].lower(),
          f"HTTP/2 GET: the upstream got {get['body']!r}")


# --------------------------------------------------------------------------- HTTP/2 to upstreams


@_test
def h2_upstream_protocols(env):
    """Which protocol the upstream is spoken to: ServiceEntry protocol HTTP2 and
    GRPC, and HTTP with h2UpgradePolicy UPGRADE, give HTTP/2; HTTP gives
    HTTP/1.1; useClientProtocol follows the client. The access log's
    %UPSTREAM_PROTOCOL% says which."""
    need_tools("h2", "curl")
    port = start_h2_upstream(env, "127.0.0.2", "u")
    ep = [{"address": "127.0.0.2", "port": port}]
    gw_port = free_port()
    hosts = {"h2.svc": ("HTTP2", None), "grpc.svc": ("GRPC", None), "plain.svc": ("HTTP", None),
             "upgrade.svc": ("HTTP", "h2UpgradePolicy: UPGRADE"), "client.svc": ("HTTP", "useClientProtocol: true")}
    log = env.path("access.log")
    parts = [appliance(env, extra=f"  accessLog: {{path: {log}, format: text, "
                                  f"textFormat: '%REQ(:AUTHORITY)% %REQ(:PATH)% %PROTOCOL% %UPSTREAM_PROTOCOL%'}}\n"),
             gateway(gw_port)]
    for i, (h, (proto, http)) in enumerate(hosts.items()):
        cluster = h.replace(".svc", ".internal")
        parts.append(virtual_service(f"vs{i}", [h], route(cluster)))
        parts.append(service_entry_protocol(f"se{i}", cluster, ep, proto))
        if http:
            parts.append(dest_rule(f"dr{i}", cluster, http=http))
    env.start_gateway(env.write("isthmus.yaml", docs(*parts)), gw_port)
    for h, want in (("h2.svc", "HTTP/2"), ("grpc.svc", "HTTP/2"), ("plain.svc", "HTTP/1.1"),
                    ("upgrade.svc", "HTTP/2"), ("client.svc", "HTTP/1.1")):
        r = env.get("/which", host=h)
        check(r.status == 200, f"{h}: {r}")
        got = info(r.body)["protocol"]
        check(got == want, f"{h}: the upstream saw {got}, want {want}")
    rc, out, err = curl_h2(["--http2-prior-knowledge", "-H", "Host: client.svc", f"http://127.0.0.1:{gw_port}/c"],
                           timeout=20)
    check(rc == 0 and info(out)["protocol"] == "HTTP/2", f"useClientProtocol with an HTTP/2 client: {rc} {out!r} {err}")
    want = {"h2.svc /which HTTP/1.1 HTTP/2", "grpc.svc /which HTTP/1.1 HTTP/2", "plain.svc /which HTTP/1.1 HTTP/1.1",
            "upgrade.svc /which HTTP/1.1 HTTP/2", "client.svc /which HTTP/1.1 HTTP/1.1", "client.svc /c HTTP/2 HTTP/2"}
    poll(lambda: set(file_lines(log)) == want, 5, what=f"the access log lines {sorted(want)}")


def parallel_get(env, n, path, host="test.local", timeout=15):
    """n HTTP/1.1 requests at once, each on its own connection; their statuses."""
    out = [None] * n

    def one(i):
        try:
            out[i] = env.get(path, host=host, timeout=timeout).status
        except Exception as e:  # reported by the callers' checks
            out[i] = repr(e)

    ts = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(timeout + 5)
    return out


@_test
def h2_upstream_multiplexed(env):
    """16 requests at once to an HTTP/2 upstream with maxConcurrentStreams: 4 (one
    worker): they share connections, never more than 4 streams on one."""
    need_tools("h2")
    port = start_h2_upstream(env, "127.0.0.2", "u")
    one_service(env, port, protocol="HTTP2", workers=1,
                extra_docs=[dest_rule("dr", SVC, http="maxConcurrentStreams: 4")])
    st = parallel_get(env, 16, "/delay/500")
    check(st == [200] * 16, f"statuses {st}")
    s = h2up_stats("127.0.0.2", port)
    check(s["by_protocol"].get("HTTP/1.1", 0) == 0, f"the upstream got HTTP/1.1: {s}")
    check(2 <= s["max_streams_per_conn"] <= 4, f"streams on one connection at once: {s['max_streams_per_conn']} "
                                               f"(want 2..4): {s}")
    check(s["h2_connections"] < 16, f"{s['h2_connections']} connections for 16 requests: not multiplexed: {s}")
    check(s["refused"] == 0 and s["protocol_errors"] == 0, f"refused or protocol errors: {s}")


@_test
def h2_upstream_pool_settings_reload(env):
    """A reload's maxConcurrentStreams and http2KeepAlive reach the HTTP/2
    connections already pooled (one worker, maxConnections 1, so one
    connection all along): raised from 1 to 8, six requests at once share it
    (they went one at a time: the connection kept the cap it was made with);
    PINGs begin on it; lowered to 1 again, requests take it one at a time."""
    need_tools("h2")
    port = start_h2_upstream(env, "127.0.0.2", "u")
    ctl = env.path("ctl.sock")

    def conf(http):
        return env.write("isthmus.yaml", docs(
            appliance(env, workers=1), gateway(gw), virtual_service("vs", ["*"], route(SVC)),
            service_entry_protocol("svc", SVC, [{"address": "127.0.0.2", "port": port}], "HTTP2"),
            dest_rule("dr", SVC, http=http).replace(
                "    connectionPool:\n", "    connectionPool:\n      tcp: {maxConnections: 1}\n")))

    gw = free_port()
    env.start_gateway(conf("maxConcurrentStreams: 1"), gw)
    r = env.get("/warm")
    check(r.status == 200, f"through the HTTP/2 upstream: {r}")
    conf("maxConcurrentStreams: 8, http2KeepAlive: {interval: 200ms, timeout: 5s}")
    ans = ctl_cmd(ctl, "reload")
    check("published" in ans, f"reload: {ans!r}")
    st = parallel_get(env, 6, "/delay/700")
    check(st == [200] * 6, f"six requests after the raise: {st}")
    s = h2up_stats("127.0.0.2", port)
    check(s["h2_connections"] == 1 and s["max_streams_per_conn"] >= 2,
          f"the pooled connection after the raise to 8 (streams at once on it): {s}")
    pings = s["pings"]
    poll(lambda: h2up_stats("127.0.0.2", port)["pings"] >= pings + 2, 10,
         what="PINGs on the pooled connection after the reload's http2KeepAlive")
    conf("maxConcurrentStreams: 1")
    ans = ctl_cmd(ctl, "reload")
    check("published" in ans, f"reload: {ans!r}")
    t0 = time.monotonic()
    st = parallel_get(env, 3, "/delay/300")
    took = time.monotonic() - t0
    check(st == [200] * 3 and took >= 0.85, f"three requests after the cut to 1 took {took:.2f} s, want one at "
          f"a time (0.9 s at least): {st}")
    s = h2up_stats("127.0.0.2", port)
    check(s["h2_connections"] == 1, f"a new connection after the cut: {s}")


@_test
def h2_upstream_max_connection_duration(env):
    """connectionPool.tcp.maxConnectionDuration on an HTTP/2 cluster (Istio
    sets Envoy's max_connection_duration on HTTP clusters from it): a pooled
    connection takes no stream once it is that old, the one it carries
    finishes on it, and the next request opens a new connection (it was
    reused for ever)."""
    need_tools("h2")
    port = start_h2_upstream(env, "127.0.0.2", "u")
    gw = free_port()
    conf = env.write("isthmus.yaml", docs(
        appliance(env, workers=1), gateway(gw), virtual_service("vs", ["*"], route(SVC)),
        service_entry_protocol("svc", SVC, [{"address": "127.0.0.2", "port": port}], "HTTP2"),
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: dr}\n"
        f"spec:\n  host: {SVC}\n  trafficPolicy:\n    connectionPool:\n      tcp: {{maxConnectionDuration: 1s}}\n"))
    env.start_gateway(conf, gw)
    t0 = time.monotonic()
    r = env.get("/delay/1500")
    check(r.status == 200, f"a request that outlives the connection's duration: {r}")
    check(h2up_stats("127.0.0.2", port)["h2_connections"] == 1, "one connection for the first request")
    check(time.monotonic() - t0 >= 1.0, "the first request took less than the duration")
    r = env.get("/after")
    check(r.status == 200, f"after the duration: {r}")
    s = h2up_stats("127.0.0.2", port)
    check(s["h2_connections"] == 2, f"the request after the duration took the old connection: {s}")


@_test
def te_trailers_passed_on(env):
    """A client's TE naming "trailers" goes on as "te: trailers" alone, as
    Envoy's sanitizeTEHeader keeps it, to an HTTP/2 upstream (it went only
    with gRPC requests) and to an HTTP/1.1 one (TE is hop-by-hop otherwise:
    it was always dropped); another TE goes nowhere."""
    need_tools("h2")
    h2port = start_h2_upstream(env, "127.0.0.3", "u")
    h1port = env.upstream(["127.0.0.2:0=a"], name="a")["a"]
    routes = (f"  - match: [{{uri: {{prefix: /h2}}}}]\n    route: [{{destination: {{host: {SVC}}}}}]\n"
              f"  - route: [{{destination: {{host: h1.internal}}}}]\n")
    gw = one_service(env, h2port, protocol="HTTP2", addr="127.0.0.3", routes=routes, workers=1,
                     extra_docs=[service_entry("h1", "h1.internal", [{"address": "127.0.0.2", "port": h1port}])])

    def h2_te(te):
        r = http_get(gw, "/h2/x", headers={"TE": te})
        check(r.status == 200, f"to the HTTP/2 upstream: {r}")
        return [v for k, v in info(r.body)["headers"] if k.lower() == "te"]

    def h1_te(te):
        r = http_get(gw, "/headers", headers={"TE": te})
        check(r.status == 200, f"to the HTTP/1.1 upstream: {r}")
        return [l.split(":", 1)[1].strip() for l in r.body.decode().split("\r\n") if l.lower().startswith("te:")]

    for te, want in (("trailers", ["trailers"]), ("deflate, trailers;q=1", ["trailers"]), ("deflate", [])):
        check(h2_te(te) == want, f"TE {te!r} at the HTTP/2 upstream: {h2_te(te)}, want {want}")
        check(h1_te(te) == want, f"TE {te!r} at the HTTP/1.1 upstream: {h1_te(te)}, want {want}")
    rc, out, err = curl(["--http2-prior-knowledge", "-H", "te: trailers", f"http://127.0.0.1:{gw}/h2/y"])
    check(rc == 0 and [v for k, v in json.loads(out)["headers"] if k == "te"] == ["trailers"],
          f"an HTTP/2 client's te: trailers at the HTTP/2 upstream: {out[:300]} {err}")


@_test
def h2_upstream_peer_settings(env):
    """An upstream announcing SETTINGS_MAX_CONCURRENT_STREAMS 3: 12 requests at
    once are all served (streams refused before the SETTINGS arrive are retried),
    and its GOAWAY sends later requests to a new connection."""
    need_tools("h2")
    port = start_h2_upstream(env, "127.0.0.2", "u", max_streams=3)
    one_service(env, port, protocol="HTTP2", workers=1)
    r = env.get("/first")
    check(r.status == 200 and info(r.body)["protocol"] == "HTTP/2", f"not HTTP/2 to the upstream: {r}")
    # An HTTP/2 answer has no reason phrase: the HTTP/1.1 client gets the
    # status's own, as Envoy writes it (it got "HTTP/1.1 200 ").
    check(r.reason == "OK", f"the reason phrase of an HTTP/2 upstream's 200: {r.reason!r}")
    st = parallel_get(env, 12, "/delay/300")
    check(st == [200] * 12, f"12 requests to an upstream taking 3 streams at once: {st}")
    # The 12 took several connections (3 streams each): each /goaway closes one
    # of them, the one a new stream goes to; once all went, a new one is made.
    before = h2up_stats("127.0.0.2", port)["h2_connections"]
    for i in range(12):
        r = env.get("/goaway")
        check(r.status == 200, f"/goaway {i}: {r}")
        r = env.get(f"/after{i}")
        check(r.status == 200 and info(r.body)["protocol"] == "HTTP/2", f"request {i} after GOAWAY: {r}")
        s = h2up_stats("127.0.0.2", port)
        if s["h2_connections"] > before:
            break
    check(s["h2_connections"] > before, f"no new HTTP/2 connection after the upstream's GOAWAYs: {s}")


@_test
def h2_upstream_alpn_tls(env):
    """SIMPLE TLS to an HTTP/2 ServiceEntry negotiates h2 by ALPN."""
    need_tools("h2")
    pki = Pki(env)
    host = "h2up.test.internal"
    port = start_h2_upstream(env, "127.0.0.2", "t", cert=pki.leaf("h2up", [f"DNS:{host}"]))
    one_service(env, port, protocol="HTTP2", host=host,
                extra_docs=[dest_rule("dr", host, tls=f"mode: SIMPLE, caCertificates: {pki.ca()}, sni: {host}")])
    r = env.get("/tls")
    check(r.status == 200, f"through TLS: {r}")
    i = info(r.body)
    check(i["tls"] and i["alpn"] == "h2" and i["protocol"] == "HTTP/2", f"the upstream saw {i}")


@_test
def h2_trailers_end_to_end(env):
    """HTTP/2 on both sides: request trailers reach the upstream, response
    trailers reach the client."""
    need_tools("h2")
    port = start_h2_upstream(env, "127.0.0.2", "u")
    gw = one_service(env, port, protocol="HTTP2")
    rep = h2_client(gw, [{"method": "POST", "path": "/echo", "body": "data", "trailers": [["x-req-trailer", "1"]],
                          "headers": [["te", "trailers"], ["x-send-trailer-x-resp-trailer", "2"]]}])
    s = rep["streams"][0]
    check(s["status"] == 200 and s["body"] == "data", f"/echo: {s} {rep['error']}")
    check(["x-req-trailer", "1"] in s["trailers"], f"request trailer not echoed back: {s['trailers']}")
    check(["x-resp-trailer", "2"] in s["trailers"], f"response trailer lost: {s['trailers']}")


# --------------------------------------------------------------------------- gRPC


def grpc_world(env, n=1, tls_up=None, app_extra="", routes=None, extra_docs=(), workers=2, timeouts=None,
               gateway_doc=None):
    """n grpc_upstream.py on 127.0.0.1 (g0..), ServiceEntry protocol GRPC, the gateway
    routing everything there. Returns (gateway port, upstream ports)."""
    ports = [start_grpc_upstream(env, "127.0.0.1", f"g{i}", cert=tls_up) for i in range(n)]
    gw_port = free_port()
    conf = env.write("isthmus.yaml", docs(
        appliance(env, workers=workers, timeouts=timeouts, extra=app_extra), gateway_doc or gateway(gw_port),
        virtual_service("vs", ["*"], routes or route(GSVC)),
        service_entry_protocol("grpc", GSVC, [{"address": "127.0.0.1", "port": p} for p in ports], "GRPC"),
        *extra_docs))
    port = int(re.search(r"number: (\d+)", gateway_doc).group(1)) if gateway_doc else gw_port
    env.start_gateway(conf, port)
    return port, ports


def grpc_calls_e2e():
    return [
        {"method": "Unary", "request": "u", "repeat": 1 << 20},
        {"method": "ServerStream", "request": json.dumps({"n": 100, "size": 1000})},
        {"method": "ServerStream", "request": json.dumps({"n": 3, "code": NOT_FOUND, "message": "after three"})},
        {"method": "ClientStream", "requests": [str(i) for i in range(1, 201)]},
        {"method": "Bidi", "requests": [f"m{i}" for i in range(50)]},
        {"method": "Status", "request": json.dumps({"code": NOT_FOUND, "message": "no such thing"})},
    ]


def check_grpc_e2e(res, what):
    u, ss, se, cs, bi, stt = res
    check(u["code"] == "OK" and u["bytes"] == 1 << 20 and u["sha256"] == hashlib.sha256(b"u" * (1 << 20)).hexdigest(),
          f"{what} Unary of 1 MiB: {u['code']} {u['details']} {u['bytes']}")
    check(["x-upstream", "g0"] in u["initial_metadata"], f"{what}: initial metadata lost: {u['initial_metadata']}")
    check(ss["code"] == "OK" and ss["count"] == 100 and ss["bytes"] == 100 * 1000, f"{what} ServerStream: {ss}")
    check(se["code_value"] == NOT_FOUND and se["details"] == "after three" and se["count"] == 3,
          f"{what} ServerStream ending NOT_FOUND: {se}")
    check(cs["code"] == "OK" and json.loads(cs["responses"][0]) == {"count": 200, "sum": 20100},
          f"{what} ClientStream: {cs}")
    check(bi["code"] == "OK" and bi["responses"] == [f"m{i}" for i in range(50)], f"{what} Bidi: {bi}")
    check(stt["code_value"] == NOT_FOUND and stt["details"] == "no such thing", f"{what} Status: {stt}")
    check(["x-upstream", "g0"] in stt["trailing_metadata"], f"{what}: trailing metadata lost: {stt}")


@_test
def grpc_end_to_end(env):
    """A grpcio client through isthmus (h2c) to a grpcio server (ServiceEntry
    protocol GRPC): unary, server and client streaming, bidi, statuses and
    metadata as the server sent them."""
    need_tools("grpc")
    gw, _ = grpc_world(env)
    check_grpc_e2e(grpc(gw, grpc_calls_e2e()), "h2c")


@_test
def grpc_access_log_trailers(env):
    """%TRAILER()% logs the response's trailer fields: a gRPC call's status and
    message as its upstream ended it, an alternative when the first is absent;
    a trailers-only answer has its status in the head (%RESP()%) and no
    trailers, as in Envoy. %GRPC_STATUS% (was an unknown operator) says the
    status as Envoy's formatter: the trailers', else the head's, in its
    CAMEL_STRING, SNAKE_STRING and NUMBER forms; "-" for a request that is
    not gRPC."""
    need_tools("grpc")
    log = env.path("access.log")
    fmt = ("%REQ(:PATH)% %RESP(GRPC-STATUS)% %TRAILER(GRPC-STATUS)% %TRAILER(X-NONE?GRPC-STATUS)% "
           "%TRAILER(GRPC-MESSAGE)% %GRPC_STATUS% %GRPC_STATUS(SNAKE_STRING)% %GRPC_STATUS_NUMBER%")
    gw, _ = grpc_world(env, app_extra=f"  accessLog: {{path: {log}, format: text, textFormat: \"{fmt}\"}}\n")
    res = grpc(gw, [{"method": "Unary", "request": "u"},
                    {"method": "ServerStream", "request": json.dumps({"n": 3, "code": NOT_FOUND,
                                                                      "message": "after three"})},
                    {"method": "Status", "request": json.dumps({"code": NOT_FOUND, "message": "no such thing"})}])
    check([r["code"] for r in res] == ["OK", "NOT_FOUND", "NOT_FOUND"], f"calls: {res}")
    rc, _, err = curl(["-o", "/dev/null", "--http2-prior-knowledge", f"http://127.0.0.1:{gw}/plain"])
    check(rc == 0, f"a request that is not gRPC: {err}")
    lines = poll(lambda: file_lines(log) if len(file_lines(log)) >= 4 else None, 5, what="four access-log lines")
    by = {l.split(" ", 1)[0].rsplit("/", 1)[-1]: l.split(" ", 1)[1] for l in lines}
    check(by == {"Unary": "- 0 0 - OK OK 0", "ServerStream": "- 5 5 after three NotFound NOT_FOUND 5",
                 "Status": "5 - - - NotFound NOT_FOUND 5", "plain": "2 - - - - - -"},
          f"access log: {lines}")


def gw_frames(body):
    """The frames of a gRPC-Web body: [(flag, payload)]."""
    out = []
    while body:
        check(len(body) >= 5, f"a gRPC-Web frame cut short: {body!r:.80}")
        n = int.from_bytes(body[1:5], "big")
        check(len(body) >= 5 + n, f"a gRPC-Web frame cut short: {body!r:.80}")
        out.append((body[0], body[5:5 + n]))
        body = body[5 + n:]
    return out


def gw_trailers(payload):
    """A gRPC-Web trailers frame's fields, as a dict."""
    return dict(line.split(":", 1) for line in payload.decode().split("\r\n") if line)


def gw_msg(data):
    return b"\x00" + len(data).to_bytes(4, "big") + data


@_test
def grpc_web(env):
    """A Gateway server of protocol GRPC-WEB translates gRPC-Web to gRPC for a
    grpcio server, as Envoy's grpc_web filter: binary and text (base64, both
    ways; the text response asked for by Accept) over HTTP/1.1 and HTTP/2, a
    server stream, the trailers as the body's last frame, a trailers-only
    status in the head, errors isthmus makes as gRPC-Web ones (no route,
    bad base64), and a request that is not gRPC-Web left alone."""
    import base64
    need_tools("grpc")
    gw_port = free_port()
    web = gateway(gw_port).replace("protocol: HTTP}", "protocol: GRPC-WEB}")
    routes = (f"  - match: [{{uri: {{prefix: /isthmus.test.Echo/}}}}]\n"
              f"    route: [{{destination: {{host: {GSVC}}}}}]\n")
    gw, _ = grpc_world(env, gateway_doc=web, routes=routes)
    bin_ct, text_ct = "application/grpc-web+proto", "application/grpc-web-text+proto"

    # Unary, binary, HTTP/1.1: the message, then the trailers frame.
    with Conn("127.0.0.1", gw) as c:
        r = c.request("POST", "/isthmus.test.Echo/Unary", "g.test",
                      [("Content-Type", "application/grpc-web+proto"), ("X-Grpc-Web", "1")], gw_msg(b"hello"))
    frames = gw_frames(r.body)
    check(r.status == 200 and r.header("content-type") == bin_ct and r.header("x-upstream") == "g0" and
          r.header("content-length") is None, f"unary over HTTP/1.1: {r.status} {r.headers}")
    check(len(frames) == 2 and frames[0] == (0, b"hello") and frames[1][0] == 0x80 and
          gw_trailers(frames[1][1]).get("grpc-status") == "0", f"unary frames {frames}")

    # Text both ways (Accept asks for text), HTTP/1.1: a body in two pieces
    # encoded apart (its padding mid-body), decoded as one.
    b64 = base64.b64encode(gw_msg(b"ab")[:4]) + base64.b64encode(gw_msg(b"ab")[4:])
    with Conn("127.0.0.1", gw) as c:
        r = c.request("POST", "/isthmus.test.Echo/Unary", "g.test",
                      [("Content-Type", "application/grpc-web-text"), ("Accept", "application/grpc-web-text")],
                      b64)
    check(r.status == 200 and r.header("content-type") == text_ct, f"text unary: {r.status} {r.headers} {r.body!r}")
    frames = gw_frames(base64.b64decode(r.body))
    check(frames[0] == (0, b"ab") and gw_trailers(frames[-1][1]).get("grpc-status") == "0",
          f"text unary frames {frames}")

    # A server stream over HTTP/2, ending with a status and a message.
    req = env.write("ss.bin", "")
    with open(req, "wb") as f:
        f.write(gw_msg(json.dumps({"n": 3, "size": 10, "code": 5, "message": "after three"}).encode()))
    rc, out, err = curl(["-sS", "--http2-prior-knowledge", "-o", env.path("ss.out"), "-D", "-",
                         "-H", "content-type: application/grpc-web", "--data-binary", f"@{req}",
                         f"http://127.0.0.1:{gw}/isthmus.test.Echo/ServerStream"])
    frames = gw_frames(open(env.path("ss.out"), "rb").read())
    trl = gw_trailers(frames[-1][1])
    check(rc == 0 and "content-type: " + bin_ct in out.lower(), f"server stream over HTTP/2: rc {rc} {out} {err}")
    check([f for f, _ in frames] == [0, 0, 0, 0x80] and frames[2][1] == b"2:xxxxxxxx" and
          trl.get("grpc-status") == "5" and trl.get("grpc-message") == "after three",
          f"server stream frames {frames}")

    # Trailers-only: the status in the head, no body.
    with Conn("127.0.0.1", gw) as c:
        r = c.request("POST", "/isthmus.test.Echo/Status", "g.test", [("Content-Type", "application/grpc-web")],
                      gw_msg(json.dumps({"code": 7, "message": "nope"}).encode()))
    # (An HTTP/1.1 client is told the body is empty: content-length 0.)
    check(r.status == 200 and r.header("grpc-status") == "7" and r.header("grpc-message") == "nope" and
          r.header("content-type") == bin_ct and r.header("content-length") == "0" and gw_frames(r.body) == [],
          f"trailers-only: {r.headers} {r.body!r}")

    # Answers made here are gRPC-Web errors: no route (404: UNIMPLEMENTED),
    # a text body that is not base64 (400: INTERNAL, Envoy's message).
    for path, ct, body, code, msg in (("/other.Svc/M", "application/grpc-web", gw_msg(b"x"), "12", "no route"),
                                      ("/isthmus.test.Echo/Unary", "application/grpc-web-text", b"!!!!", "13",
                                       "Bad gRPC-web request, invalid base64 data.")):
        with Conn("127.0.0.1", gw) as c:
            r = c.request("POST", path, "g.test", [("Content-Type", ct)], body)
        check(r.status == 200 and r.header("grpc-status") == code and r.header("grpc-message") == msg and
              r.header("content-type") == bin_ct, f"{path} {ct}: {r.status} {r.headers}")

    # Not gRPC-Web: left as it is (the upstream, gRPC only, refuses it).
    with Conn("127.0.0.1", gw) as c:
        r = c.request("POST", "/isthmus.test.Echo/Unary", "g.test", [("Content-Type", "text/plain")], b"x")
    check(r.header("content-type") == "application/grpc" and r.header("content-length") == "0",
          f"plain request translated: {r.status} {r.headers}")


@_test
def grpc_web_after_policies(env):
    """A gRPC-Web request is translated after the route is found and the
    AuthorizationPolicies judged it, as istiod orders Envoy's grpc_web filter
    after RBAC: a route matching content-type application/grpc-web takes it; a
    DENY rule on content-type application/grpc-web-text refuses it, answered
    as RBAC answers (403, plain text, not a gRPC-Web error). The route was
    skipped and the DENY never held: both saw application/grpc."""
    from test_authz import policy
    need_tools("grpc")
    gw_port = free_port()
    web = gateway(gw_port).replace("protocol: HTTP}", "protocol: GRPC-WEB}")
    routes = (f"  - match: [{{uri: {{prefix: /isthmus.test.Echo/}}, headers: {{content-type: "
              f"{{prefix: application/grpc-web}}}}}}]\n"
              f"    headers: {{response: {{set: {{x-route: by-content-type}}}}}}\n"
              f"    route: [{{destination: {{host: {GSVC}}}}}]\n" + route(GSVC))
    deny = policy("deny-text", "  action: DENY\n  rules: [{when: [{key: \"request.headers[content-type]\", "
                               "values: [application/grpc-web-text]}]}]\n")
    gw, _ = grpc_world(env, gateway_doc=web, routes=routes, extra_docs=[deny])
    with Conn("127.0.0.1", gw) as c:
        r = c.request("POST", "/isthmus.test.Echo/Unary", "g.test", [("Content-Type", "application/grpc-web")],
                      gw_msg(b"hello"))
    check(r.status == 200 and r.header("x-route") == "by-content-type" and gw_frames(r.body)[0] == (0, b"hello"),
          f"the route on gRPC-Web's content type: {r.status} {r.headers}")
    import base64
    with Conn("127.0.0.1", gw) as c:
        r = c.request("POST", "/isthmus.test.Echo/Unary", "g.test", [("Content-Type", "application/grpc-web-text")],
                      base64.b64encode(gw_msg(b"hello")))
    check(r.status == 403 and r.body == b"RBAC: access denied\n" and r.header("grpc-status") is None and
          (r.header("content-type") or "").startswith("text/plain"),
          f"DENY on gRPC-Web-text's content type: {r.status} {r.headers} {r.body!r}")


@_test
def grpc_web_http10_client(env):
    """A gRPC-Web request from an HTTP/1.0 client (its body has a length, which
    the translation drops) is served: upstream it goes as HTTP/1.1 (HTTP/1.0
    has no chunked coding), and the client gets the answer's frames, then the
    close. It went upstream as HTTP/1.0 with transfer-encoding: chunked: a
    gRPC upstream's request failed as a connect failure (503 UF, charged to a
    healthy endpoint)."""
    need_tools("grpc")
    gw_port = free_port()
    web = gateway(gw_port).replace("protocol: HTTP}", "protocol: GRPC-WEB}")
    gw, _ = grpc_world(env, gateway_doc=web)
    msg = gw_msg(b"abc")
    with Conn("127.0.0.1", gw) as c:
        c.send(b"POST /isthmus.test.Echo/Unary HTTP/1.0\r\nHost: g.test\r\n"
               b"Content-Type: application/grpc-web\r\nContent-Length: %d\r\n\r\n" % len(msg) + msg)
        closed = c.closed_by_peer(10)
        head, _, body = c.buf.partition(b"\r\n\r\n")
    frames = gw_frames(body) if closed else []
    check(closed and head.startswith(b"HTTP/1.1 200") and frames[:1] == [(0, b"abc")] and
          gw_trailers(frames[-1][1]).get("grpc-status") == "0",
          f"gRPC-Web over HTTP/1.0: closed {closed}, {c.buf[:400]!r}")


@_test
def grpc_web_non_grpc_answer(env):
    """An answer to a gRPC-Web request that is neither gRPC nor gRPC-Web (an
    upstream's error page, a plain 200) becomes a gRPC error, as Envoy's
    grpc_web filter makes it: the upstream's status, gRPC-Web's content type,
    grpc-status from the HTTP status (503: UNAVAILABLE, 404: UNIMPLEMENTED,
    others: UNKNOWN), the body's first 16 KiB as grpc-message (percent-encoded)
    and no body; over HTTP/1.1 and HTTP/2. An answer whose head ends it keeps
    its head (and gets the content type)."""
    need_tools("grpc")
    gw_port = free_port()
    web = gateway(gw_port).replace("protocol: HTTP}", "protocol: GRPC-WEB}")
    up = h1_upstream(env, "127.0.0.2", "p0")
    routes = (f"  - match: [{{authority: {{exact: plain.test}}}}]\n    route: [{{destination: {{host: {SVC}}}}}]\n"
              f"  - route: [{{destination: {{host: {GSVC}}}}}]\n")
    gw, _ = grpc_world(env, gateway_doc=web, routes=routes,
                       extra_docs=(service_entry("plain", SVC, [{"address": "127.0.0.2", "port": up}]),))
    bin_ct, web_ct = "application/grpc-web+proto", [("Content-Type", "application/grpc-web")]
    for path, status, code, msg in (("/status/503", 503, "14", "p0 status 503%0A"),
                                    ("/status/404", 404, "12", "p0 status 404%0A"),
                                    ("/chunked/20000", 200, "2", pattern_text(16384)),
                                    ("/x~y", 200, "2", "p0 /x%7Ey%0A")):
        with Conn("127.0.0.1", gw) as c:
            r = c.request("POST", path, "plain.test", web_ct, gw_msg(b"m"))
        check((r.status, r.header("content-type"), r.header("grpc-status"), r.header("grpc-message"),
               r.header("content-length"), r.body) == (status, bin_ct, code, msg, "0", b""),
              f"HTTP/1.1 {path}: {r.status} {r.headers} {r.body[:80]!r}")
    rc, out, err = curl(["-sS", "--http2-prior-knowledge", "-D", "-", "-o", env.path("h2.out"),
                         "-H", "content-type: application/grpc-web", "-H", "host: plain.test", "--data-binary", "m",
                         f"http://127.0.0.1:{gw}/status/503"])
    head = out.lower()
    check(rc == 0 and head.startswith("http/2 503") and "grpc-status: 14" in head and
          "grpc-message: p0 status 503%0a" in head and "content-type: " + bin_ct in head and
          open(env.path("h2.out"), "rb").read() == b"", f"HTTP/2: rc {rc} {out} {err}")
    # A head that ends the answer: kept as it came, with gRPC-Web's content type.
    with Conn("127.0.0.1", gw) as c:
        r = c.request("POST", "/status/204", "plain.test", web_ct, gw_msg(b"m"))
    check(r.status == 204 and r.header("content-type") == bin_ct and r.header("grpc-status") is None,
          f"204: {r.status} {r.headers}")
    # A gRPC answer is not touched (the other route): its message and trailers frame.
    with Conn("127.0.0.1", gw) as c:
        r = c.request("POST", "/isthmus.test.Echo/Unary", "g.test", web_ct, gw_msg(b"hi"))
    check(r.status == 200 and gw_frames(r.body)[0] == (0, b"hi"), f"gRPC answer: {r.status} {r.headers}")


def pattern_text(n):
    """The first n bytes of the C test upstream's body pattern (its /bytes/ and /chunked/)."""
    return "".join(chr(ord("a") + i % 26) for i in range(n))


@_test
def grpc_tls(env):
    """gRPC over TLS on both sides: an HTTPS server (ALPN h2) and SIMPLE TLS with
    ALPN h2 to a TLS grpcio server."""
    need_tools("grpc")
    pki = Pki(env)
    port = free_port()
    gw_doc = gateway_of(server(port, ["grpc.example.com"], tls_simple(pki.leaf("gw", ["DNS:grpc.example.com"]))))
    up_cert = pki.leaf("grpcup", [f"DNS:{GSVC}"])
    gw, _ = grpc_world(env, tls_up=up_cert, gateway_doc=gw_doc, extra_docs=[
        dest_rule("dr", GSVC, tls=f"mode: SIMPLE, caCertificates: {pki.ca()}, sni: {GSVC}")])
    res = grpc(gw, grpc_calls_e2e(), ca=pki.ca(), sni="grpc.example.com", authority="grpc.example.com")
    check_grpc_e2e(res, "TLS")


def grpc_hc(service="isthmus.test.Echo"):
    """Appliance healthChecks: a gRPC check of GSVC every 100 ms. A network
    failure would need 1000 in a row: what marks an endpoint unhealthy in these
    tests is an answer (an active failure, unhealthy at once, as in Envoy)."""
    svc = f", serviceName: {service}" if service is not None else ""
    return (f"  healthChecks:\n  - {{host: {GSVC}, type: grpc{svc}, interval: 100ms, timeout: 2s,"
            " healthyThreshold: 1, unhealthyThreshold: 1000}\n")


def set_health(port, status, service="isthmus.test.Echo", **kw):
    """What the upstream on 127.0.0.1:port answers a health check for service
    from now on (kw: grpc()'s TLS options)."""
    res = grpc(port, [{"method": "SetHealth", "request": json.dumps({"service": service, "status": status})}],
               **kw)
    check(res[0]["code"] == "OK", f"SetHealth on the upstream on port {port}: {res[0]}")


def wait_health(env, port, want, what):
    key = f"{GSVC}|127.0.0.1:{port}"
    poll(lambda: endpoints_view(env).get(key, {}).get("health") == want, 10, what=f"{key} to be {want} ({what})")


def upstreams_of(gw, n, **kw):
    """The x-upstream of n Unary calls through the gateway."""
    res = grpc(gw, [{"method": "Unary", "request": f"c{i}"} for i in range(n)], **kw)
    check(all(r["code"] == "OK" for r in res), f"Unary calls through the gateway: {[r['code'] for r in res]}")
    return {dict(r["initial_metadata"]).get("x-upstream") for r in res}


@_test
def grpc_health_check(env):
    """healthChecks type grpc: grpc.health.v1.Health/Check over h2c, as Envoy's
    gRPC health checker asks it (POST /grpc.health.v1.Health/Check with the
    serviceName, user-agent isthmus-health, a grpc-timeout). SERVING passes;
    NOT_SERVING and an unknown service (NOT_FOUND) mark the endpoint unhealthy
    at once (unhealthyThreshold 1000 would take minutes for network failures),
    and its traffic goes to the other; SERVING again brings it back."""
    need_tools("grpc")
    gw, ports = grpc_world(env, n=2, app_extra=grpc_hc())
    for p in ports:
        wait_health(env, p, "healthy", "SERVING")
    poll(lambda: grpcup_stats(ports[1])["health_checks"] >= 2, 10, what="two health checks at g1")
    st = grpcup_stats(ports[1])
    md = dict(st["health_metadata"])
    check(st["health_service"] == "isthmus.test.Echo" and md.get("user-agent", "").startswith("isthmus-health"),
          f"the check's service and metadata: {st['health_service']!r} {md}")
    check(upstreams_of(gw, 20) == {"g0", "g1"}, "with both SERVING, both take calls")

    set_health(ports[1], 2)
    wait_health(env, ports[1], "unhealthy", "NOT_SERVING")
    poll(lambda: env.log_count("serving status NOT_SERVING") > 0, 5,
         what="the log to say why g1 is unhealthy (serving status NOT_SERVING)")
    check(upstreams_of(gw, 20) == {"g0"}, "with g1 NOT_SERVING, every call goes to g0")

    set_health(ports[1], 1)
    wait_health(env, ports[1], "healthy", "SERVING again")
    set_health(ports[1], None)
    wait_health(env, ports[1], "unhealthy", "its service unknown: NOT_FOUND")
    poll(lambda: env.log_count("grpc-status 5 (unknown service)") > 0, 5,
         what="the log to say g1 answered NOT_FOUND (grpc-status 5 (unknown service))")
    set_health(ports[1], 1)
    wait_health(env, ports[1], "healthy", "SERVING again")
    check(upstreams_of(gw, 20) == {"g0", "g1"}, "g1 SERVING again takes calls again")


@_test
def grpc_health_check_tls(env):
    """A gRPC check of a service whose DestinationRule originates TLS goes over
    TLS with ALPN h2 (a grpcio server refuses a session without it), with the
    rule's sni; no serviceName asks about the server as a whole ("")."""
    need_tools("grpc")
    pki = Pki(env)
    up_cert = pki.leaf("grpcup", [f"DNS:{GSVC}"])
    gw, ports = grpc_world(env, tls_up=up_cert, app_extra=grpc_hc(service=None), extra_docs=[
        dest_rule("dr", GSVC, tls=f"mode: SIMPLE, caCertificates: {pki.ca()}, sni: {GSVC}")])
    wait_health(env, ports[0], "healthy", "SERVING over TLS")
    set_health(ports[0], 2, service="", ca=pki.ca(), sni=GSVC)
    wait_health(env, ports[0], "unhealthy", "the server NOT_SERVING")
    check(grpcup_stats(ports[0], ca=pki.ca(), sni=GSVC)["health_service"] == "",
          "the check asked for another service than \"\"")


# grpcio answers a call's time remaining from the wall clock against a
# deadline it took from the grpc-timeout on the monotonic one: a clock slewed
# meanwhile (NTP) shows a few ms more than the header said, one stepped up to
# about a hundred (20,098 ms of a 20 s grpc-timeout seen once).
CLOCK_SLACK_MS = 250


def upstream_grpc_timeout(res):
    """The deadline the upstream's call had (grpcio reads it from the
    grpc-timeout it got; Headers answers its time remaining), in ms; None when
    none."""
    check(res["code"] == "OK", f"Headers through the gateway: {res}")
    left = json.loads(res["responses"][0])["time_remaining"]
    return None if left is None else left * 1000


@_test
def grpc_timeout_header(env):
    """Istio gives a gateway's routes Envoy's max_grpc_timeout (the route's
    timeout, none without one): a gRPC request's timeout is its client's
    grpc-timeout, capped by the route's; the upstream gets the time the
    attempt has as its grpc-timeout (in place of the client's; grpcio
    upstreams read it as their call's deadline)."""
    need_tools("grpc")
    routes = ("  - match: [{uri: {prefix: /isthmus.test.Echo/Headers}, headers: {x-cap: {exact: \"1\"}}}]\n"
              f"    timeout: 2s\n    route: [{{destination: {{host: {GSVC}}}}}]\n"
              "  - match: [{uri: {prefix: /isthmus.test.Echo/Headers}, headers: {x-set: {exact: \"1\"}}}]\n"
              "    timeout: 2s\n    headers: {request: {set: {grpc-timeout: 9S}}}\n"
              f"    route: [{{destination: {{host: {GSVC}}}}}]\n"
              + route(GSVC))
    gw, _ = grpc_world(env, routes=routes, timeouts={"upstreamResponse": "30s"})
    # no route timeout: the client's 20 s, rewritten in milliseconds
    res = grpc(gw, [{"method": "Headers", "timeout": 20.0}])
    ms = upstream_grpc_timeout(res[0])
    check(ms is not None and 15000 < ms <= 20000 + CLOCK_SLACK_MS,
          f"the client's 20 s deadline as the upstream saw it: {ms} ms")
    # the route's 2 s caps the client's 20 s
    res = grpc(gw, [{"method": "Headers", "timeout": 20.0, "metadata": [["x-cap", "1"]]}])
    ms = upstream_grpc_timeout(res[0])
    check(ms is not None and 1000 < ms <= 2000 + CLOCK_SLACK_MS, f"the route's 2 s cap as the upstream saw it: {ms} ms")
    # the route's 2 s without a client deadline
    res = grpc(gw, [{"method": "Headers", "metadata": [["x-cap", "1"]]}])
    ms = upstream_grpc_timeout(res[0])
    check(ms is not None and 1000 < ms <= 2000 + CLOCK_SLACK_MS, f"the route's 2 s, no client deadline: {ms} ms")
    # the route's own grpc-timeout field wins, as its edits apply after the router's
    res = grpc(gw, [{"method": "Headers", "timeout": 20.0, "metadata": [["x-set", "1"]]}])
    ms = upstream_grpc_timeout(res[0])
    check(ms is not None and 8000 < ms <= 9000 + CLOCK_SLACK_MS,
          f"the route's headers.request.set grpc-timeout 9S: {ms} ms")
    # neither (grpcio always sends a deadline; h2_client.py sends none): no grpc-timeout at all
    s = grpc_raw(gw, "/isthmus.test.Echo/Headers", "")
    check(s["status"] == 200 and ["grpc-status", "0"] in s["trailers"] and s["grpc_messages"],
          f"Headers without a deadline: {s}")
    left = json.loads(s["grpc_messages"][0])["time_remaining"]
    check(left is None or left > 1e9, f"no deadline anywhere, yet the upstream's call had one: {left} s left")
    # no grpc-timeout from the client at all, the route's 2 s: that is the call's timeout
    s = grpc_raw(gw, "/isthmus.test.Echo/Headers", "", headers=[("x-cap", "1")])
    check(s["status"] == 200 and ["grpc-status", "0"] in s["trailers"] and s["grpc_messages"],
          f"Headers without a client deadline, route timeout 2s: {s}")
    left = json.loads(s["grpc_messages"][0])["time_remaining"]
    check(left is not None and 1.0 < left <= 2.0 + CLOCK_SLACK_MS / 1000,
          f"no client deadline, the route's 2 s: the upstream's call had {left} s left")


@_test
def grpc_timeout_enforced(env):
    """The grpc-timeout as the route's timeout, kept by isthmus itself: a client
    that sends grpc-timeout 700m and does not keep it, to an upstream that
    ignores it (h2_upstream.py's /delay), gets the route's answer after 700 ms,
    504 UT as gRPC's UNAVAILABLE, as Envoy answers it; a request that is not
    gRPC keeps no such timeout."""
    up = start_h2_upstream(env, "127.0.0.2", "h2")
    gw = one_service(env, up, protocol="GRPC", timeouts={"upstreamResponse": "30s"},
                     app_extra="  accessLog: {path: " + env.path("access.log") + ", format: text}\n")
    t0 = time.monotonic()
    s = grpc_raw(gw, "/delay/3000", "x", headers=[("grpc-timeout", "700m")])
    took = time.monotonic() - t0
    check_grpc_local_error(s, UNAVAILABLE, "a grpc-timeout of 700m, the upstream answering after 3 s")
    check(0.6 < took < 2.5, f"the call ended after {took:.2f}s, want about 0.7 s (the grpc-timeout)")
    poll(lambda: any(" UT " in ln for ln in file_lines(env.path("access.log"))), 5,
         what="the access log to flag the timeout UT")
    rep = h2_client(gw, [{"path": "/delay/1500", "headers": [["grpc-timeout", "700m"]]}])
    check(rep["streams"][0]["status"] == 200, f"a request that is not gRPC ignores grpc-timeout: {rep['streams'][0]}")


@_test
def grpc_deadline(env):
    """A client deadline: the client gets DEADLINE_EXCEEDED on time, and isthmus
    cancels the upstream stream (the server sees its call end early). isthmus
    bounds the call by its grpc-timeout too, as Envoy does, from the moment
    the request came: a client too busy to notice its own deadline first (a
    loaded machine) gets isthmus's answer at that moment instead, UNAVAILABLE
    "upstream request timeout" (Envoy's 504 mapping), on time all the same."""
    need_tools("grpc")
    gw, ports = grpc_world(env, timeouts={"upstreamResponse": "30s"})
    res = grpc(gw, [{"method": "Sleep", "request": json.dumps({"ms": 10000}), "timeout": 0.5},
                    {"method": "Unary", "request": "after"}])
    ended = res[0]["code_value"] == DEADLINE_EXCEEDED or (res[0]["code_value"] == UNAVAILABLE and
                                                          res[0]["details"] == "upstream request timeout")
    check(ended and res[0]["elapsed"] < 2.5, f"deadline: {res[0]}")
    check(res[1]["code"] == "OK" and res[1]["responses"] == ["after"], f"the next call: {res[1]}")
    poll(lambda: grpcup_stats(ports[0])["cancelled"] >= 1, 5,
         what="the upstream to see the call cancelled (isthmus resetting the upstream stream)")


def grpc_raw(port, path, message, authority=None, timeout=20, headers=()):
    """One raw gRPC request over HTTP/2 (h2_client.py) with these extra
    headers; its stream report."""
    rq = {"path": path, "grpc": message}
    if headers:
        rq["headers"] = [list(h) for h in headers]
    rep = h2_client(port, [rq], authority=authority, timeout=timeout)
    return rep["streams"][0]


def check_grpc_local_error(s, want, what):
    """s is an error isthmus answered itself, as Envoy answers a gRPC request:
    :status 200, content-type application/grpc, grpc-status want, trailers-only."""
    check(s["status"] == 200, f"{what}: HTTP status {s['status']} (want 200): {s}")
    check((hdr(s, "content-type") or "").startswith("application/grpc"), f"{what}: content-type: {s['headers']}")
    check(s["trailers_only"] and hdr(s, "grpc-status") == str(want),
          f"{what}: want a trailers-only grpc-status {want}: headers {s['headers']} trailers {s['trailers']} "
          f"trailers_only {s['trailers_only']}")


@_test
def grpc_local_errors(env):
    """gRPC errors isthmus answers itself (Envoy's mapping): no route → 12
    UNIMPLEMENTED (gRPC-Web is not gRPC: a plain 404), no healthy upstream → 14, upstream timeout → 14 (504 maps to
    UNAVAILABLE), overflow (http2MaxRequests) → 14; the grpcio client agrees. The timeout is
    met at an upstream that ignores the grpc-timeout isthmus sends it (h2_upstream.py's
    /delay): a grpcio server would answer DEADLINE_EXCEEDED itself at that moment. As
    Envoy's local reply, the answer keeps the fields it was made with (a route's response
    edits, a redirect's location, the overflow's x-envoy-overloaded) and its body is the
    grpc-message, percent-encoded (none without a body); they were dropped, and the
    message was isthmus's reason (a direct response's body was lost)."""
    need_tools("grpc", "h2")
    dead = free_port("127.0.0.3")
    slow = start_h2_upstream(env, "127.0.0.4", "slow")
    extra, log = alog(env)
    routes = (f"  - match: [{{authority: {{exact: grpc.test}}}}]\n"
              f"    route: [{{destination: {{host: {GSVC}}}}}]\n"
              f"  - match: [{{authority: {{exact: slow.test}}}}]\n"
              f"    rewrite: {{uriRegexRewrite: {{match: \"^.*$\", rewrite: /delay/5000}}}}\n"
              f"    route: [{{destination: {{host: slow.internal}}}}]\n    timeout: 1s\n"
              f"  - match: [{{authority: {{exact: dead.test}}}}]\n"
              f"    route: [{{destination: {{host: dead.internal}}}}]\n"
              f"  - match: [{{authority: {{exact: dr.test}}}}]\n"
              f"    headers: {{response: {{set: {{x-route: edited}}}}}}\n"
              f"    directResponse: {{status: 503, body: {{string: \"down 100% \\u00e9\"}}}}\n"
              f"  - match: [{{authority: {{exact: redir.test}}}}]\n"
              f"    redirect: {{uri: /elsewhere}}\n"
              f"  - match: [{{authority: {{exact: own.test}}}}]\n"
              f"    headers: {{response: {{set: {{grpc-status: \"5\", grpc-message: gone}}}}}}\n"
              f"    directResponse: {{status: 404}}\n"
              f"  - match: [{{authority: {{exact: nl.test}}}}]\n"
              f"    directResponse: {{status: 503, body: {{string: \"two\\nlines\\n\"}}}}\n")
    gw, ports = grpc_world(env, routes=routes, app_extra=extra, extra_docs=[
        service_entry_protocol("dead", "dead.internal", [{"address": "127.0.0.3", "port": dead}], "GRPC"),
        service_entry_protocol("slow", "slow.internal", [{"address": "127.0.0.4", "port": slow}], "GRPC"),
        dest_rule("dr", GSVC, http="http2MaxRequests: 1")])
    unary, sleep = "/isthmus.test.Echo/Unary", "/isthmus.test.Echo/Sleep"
    s = grpc_raw(gw, unary, "x", authority="grpc.test")
    check(s["status"] == 200 and s["grpc_messages"] == ["x"], f"the routed call: {s}")
    check_grpc_local_error(grpc_raw(gw, unary, "x", authority="nowhere.test"), UNIMPLEMENTED, "no route")
    # application/grpc+proto is gRPC; application/grpc-web is not (Envoy's
    # hasGrpcContentType): it gets the plain 404.
    for ctype, grpc_reply in (("application/grpc+proto", True), ("application/grpc-web+proto", False)):
        rep = h2_client(gw, [{"method": "POST", "path": unary, "body": "x",
                              "headers": [["content-type", ctype], ["te", "trailers"]]}], authority="nowhere.test")
        s = rep["streams"][0]
        if grpc_reply:
            check_grpc_local_error(s, UNIMPLEMENTED, f"no route, {ctype}")
        else:
            check(s["status"] == 404 and hdr(s, "grpc-status") is None, f"no route, {ctype}: want a plain 404: {s}")
    check_grpc_local_error(grpc_raw(gw, unary, "x", authority="dead.test"), UNAVAILABLE, "dead upstream")
    t0 = time.monotonic()
    s = grpc_raw(gw, sleep, json.dumps({"ms": 5000}), authority="slow.test")
    check_grpc_local_error(s, UNAVAILABLE, "upstream timeout (route timeout 1s)")
    check(hdr(s, "grpc-message") == "upstream request timeout", f"the timeout's message, Envoy's: {s['headers']}")
    check(time.monotonic() - t0 < 4, f"the timeout answer took {time.monotonic() - t0:.1f}s")
    # Two calls at once with http2MaxRequests 1: one overflows.
    rep = h2_client(gw, [{"path": sleep, "grpc": json.dumps({"ms": 600})}] * 2, authority="grpc.test")
    a, b = sorted(rep["streams"], key=lambda s: hdr(s, "grpc-status") or "0")
    check(a["grpc_messages"] == ["slept"], f"the call within http2MaxRequests: {a}")
    check_grpc_local_error(b, UNAVAILABLE, "overflow of http2MaxRequests 1")
    check(hdr(b, "x-envoy-overloaded") == "true", f"the overflow's x-envoy-overloaded: {b}")
    s = grpc_raw(gw, unary, "x", authority="dr.test")
    check_grpc_local_error(s, UNAVAILABLE, "a direct response 503")
    check(hdr(s, "grpc-message") == "down 100%25 %C3%A9" and hdr(s, "x-route") == "edited",
          f"a direct response: want its body as grpc-message and the route's field: {s['headers']}")
    s = grpc_raw(gw, unary, "x", authority="redir.test")
    check_grpc_local_error(s, 2, "a redirect (301: UNKNOWN)")
    check(hdr(s, "location") == "http://redir.test/elsewhere" and hdr(s, "grpc-message") is None,
          f"a redirect: want its location and no grpc-message (no body): {s['headers']}")
    s = grpc_raw(gw, unary, "x", authority="dead.test")
    check(hdr(s, "grpc-message") == "upstream connect error", f"a connect failure's message: {s['headers']}")
    # A grpc-status the route's edits set stays, and so does its grpc-message
    # when the answer has no body; a body's newlines are encoded.
    s = grpc_raw(gw, unary, "x", authority="own.test")
    check(hdr(s, "grpc-status") == "5" and hdr(s, "grpc-message") == "gone",
          f"the route's own grpc-status and grpc-message: {s['headers']}")
    s = grpc_raw(gw, unary, "x", authority="nl.test")
    check(hdr(s, "grpc-message") == "two%0Alines%0A", f"a body's newlines: {s['headers']}")
    res = grpc(gw, [{"method": "Unary", "request": "x"}], authority="nowhere.test")
    check(res[0]["code_value"] == UNIMPLEMENTED, f"grpcio client, no route: {res[0]}")
    res = grpc(gw, [{"method": "Unary", "request": "x"}], authority="dead.test")
    check(res[0]["code_value"] == UNAVAILABLE, f"grpcio client, dead upstream: {res[0]}")
    res = grpc(gw, [{"method": "Sleep", "request": json.dumps({"ms": 5000})}], authority="slow.test")
    check(res[0]["code_value"] == UNAVAILABLE, f"grpcio client, route timeout: {res[0]}")
    recs = wait_log(log, lambda rs: any(r["flags"] == "UO" for r in rs), "a UO line")
    check(any(r["flags"] == "NR" and r["protocol"] == "HTTP/2" for r in recs), f"no NR line: {recs}")
    check(any(r["flags"] == "UT" for r in recs), f"no UT line: {recs}")


@_test
def max_requests_overflow(env):
    """http2MaxRequests: 1 (Envoy's max_requests, for HTTP/1.1 too): of two slow
    requests at once one is answered 503 with flag UO, from HTTP/1.1 and from
    HTTP/2 clients alike."""
    need_tools("h2")
    up = h1_upstream(env)
    extra, log = alog(env)
    gw = one_service(env, up, app_extra=extra, extra_docs=[dest_rule("dr", SVC, http="http2MaxRequests: 1")])
    st = sorted(parallel_get(env, 2, "/delay/1000"), key=str)
    check(st == [200, 503], f"HTTP/1.1, two at once: {st} (want one 200, one 503)")
    rep = h2_client(gw, [{"path": "/delay/1000"}] * 2, timeout=20)
    st = sorted(statuses(rep["streams"]), key=str)
    check(st == [200, 503], f"HTTP/2, two streams at once: {st}")
    recs = wait_log(log, lambda rs: len(rs) >= 4, "4 access-log lines")
    uo = sorted(r["protocol"] for r in recs if r["status"] == 503 and r["flags"] == "UO")
    check(uo == ["HTTP/1.1", "HTTP/2"], f"503 UO lines by protocol: {uo}: {recs}")
    check(env.get("/after").status == 200, "a request once the others are done")


@_test
def max_requests_not_held_by_fault_delay(env):
    """A request a route's fault delays takes its http2MaxRequests slot when the
    delay ends, as Envoy's router (after the fault filter) takes it: with
    http2MaxRequests 2, two requests held in a 3 s delay leave the service to
    the others (a request on another route was 503 UO while they waited)."""
    up = h1_upstream(env)
    routes = (f"  - match: [{{uri: {{prefix: /slow}}}}]\n"
              f"    fault: {{delay: {{fixedDelay: 3s, percentage: {{value: 100}}}}}}\n"
              f"    route: [{{destination: {{host: {SVC}}}}}]\n" + route(SVC))
    gw = one_service(env, up, routes=routes, workers=1,
                     extra_docs=[dest_rule("dr", SVC, http="http2MaxRequests: 2")])
    got = []
    threads = [threading.Thread(target=lambda: got.append(http_get(gw, "/slow", timeout=20).status))
               for _ in range(2)]
    for t in threads:
        t.start()
    try:
        def held():
            m = re.search(r"^connections_active: (\d+)$", ctl_cmd(env.path("ctl.sock"), "show info"), re.M)
            return m is not None and int(m.group(1)) >= 2
        poll(held, 5, what="the two delayed requests' connections at the gateway")
        st = [http_get(gw, f"/fast/{i}").status for i in range(3)]
        check(st == [200, 200, 200], f"requests on another route while two wait in a fault delay: {st}")
    finally:
        for t in threads:
            t.join(20)
    check(sorted(got) == [200, 200], f"the delayed requests: {got}")


@_test
def grpc_retry_on(env):
    """retryOn with gRPC names retries on the grpc-status of the answer: each of
    cancelled, deadline-exceeded, resource-exhausted, unavailable, internal;
    another status is not retried; without retries, Istio's default retries
    unavailable and cancelled."""
    need_tools("grpc")
    routes = ""
    for name in RETRY_ON:
        routes += (f"  - match: [{{headers: {{x-case: {{exact: {name}}}}}}}]\n"
                   f"    route: [{{destination: {{host: {GSVC}}}}}]\n"
                   f"    retries: {{attempts: 2, retryOn: {name}, retryIgnorePreviousHosts: false}}\n")
    routes += route(GSVC)
    gw, ports = grpc_world(env, routes=routes)
    calls, want = [], []
    for name, code in RETRY_ON.items():
        calls.append({"method": "Flaky", "request": json.dumps({"key": f"r-{name}", "fail": 1, "code": code}),
                      "metadata": [["x-case", name]]})
        want.append(("OK", 2))
    other = {"cancelled": INTERNAL, "deadline-exceeded": UNAVAILABLE, "resource-exhausted": INTERNAL,
             "unavailable": INTERNAL, "internal": UNAVAILABLE}
    for name, code in other.items():
        calls.append({"method": "Flaky", "request": json.dumps({"key": f"n-{name}", "fail": 1, "code": code}),
                      "metadata": [["x-case", name]]})
        want.append((code, 1))
    for code, retried in ((UNAVAILABLE, True), (CANCELLED, True), (DEADLINE_EXCEEDED, False)):
        calls.append({"method": "Flaky", "request": json.dumps({"key": f"d-{code}", "fail": 1, "code": code})})
        want.append(("OK", 2) if retried else (code, 1))
    res = grpc(gw, calls)
    flaky = grpcup_stats(ports[0])["flaky"]
    for c, r, (w, attempts) in zip(calls, res, want):
        key = json.loads(c["request"])["key"]
        case = dict(c.get("metadata", [])).get("x-case", "default policy")
        if w == "OK":
            check(r["code"] == "OK" and json.loads(r["responses"][0]) == {"attempt": 2},
                  f"{case}, first answer grpc-status {json.loads(c['request'])['code']}: want a retry, got {r}")
        else:
            check(r["code_value"] == w, f"{case}, grpc-status {w} not in retryOn: got {r['code']} {r['details']}")
        check(flaky.get(key) == attempts,
              f"{case} ({key}): {flaky.get(key)} attempts reached the server, want {attempts}")


@_test
def grpc_dead_endpoint(env):
    """One of two gRPC endpoints dies: every call is still answered, by the other
    (connect failures are retried, as for HTTP/1.1 endpoints)."""
    need_tools("grpc")
    gw, ports = grpc_world(env, n=2)
    res = grpc(gw, [{"method": "Unary", "request": f"{i}"} for i in range(10)])
    check(all(r["code"] == "OK" for r in res), f"before: {[r['code'] for r in res]}")
    victim = next(p for p in env.procs if p.name == "grpcup-g0")
    os.killpg(victim.pid, signal.SIGKILL)
    victim.p.wait(5)
    res = grpc(gw, [{"method": "Unary", "request": f"{i}"} for i in range(20)])
    check(all(r["code"] == "OK" and ["x-upstream", "g1"] in r["initial_metadata"] for r in res),
          f"after g0 died: {[(r['code'], r['details']) for r in res if r['code'] != 'OK'][:5]}")


def served_by(res):
    """The x-upstream of each call (initial metadata, else trailing)."""
    out = []
    for r in res:
        md = dict(map(tuple, r["initial_metadata"] + r["trailing_metadata"]))
        out.append(md.get("x-upstream"))
    return out


def zoned_grpc_world(env, near_fail=None):
    """Two gRPC upstreams, "near" in the appliance's zone and "far" in another
    of its region, with outlier detection (which Istio's locality balancing
    needs). Returns (gateway port, near's port)."""
    local = start_grpc_upstream(env, "127.0.0.1", "near", fail=near_fail)
    far = start_grpc_upstream(env, "127.0.0.2", "far")
    gw = free_port()
    conf = env.write("isthmus.yaml", docs(
        appliance(env, workers=1), gateway(gw),
        virtual_service("vs", ["*"], route(GSVC)),
        service_entry_protocol("grpc", GSVC, [
            {"address": "127.0.0.1", "port": local, "locality": "eu-west/eu-west-1a"},
            {"address": "127.0.0.2", "port": far, "locality": "eu-west/eu-west-1b"}], "GRPC"),
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: od}\n"
        f"spec:\n  host: {GSVC}\n  trafficPolicy:\n    outlierDetection: {{consecutive5xxErrors: 2, "
        "interval: 1s, baseEjectionTime: 60s, maxEjectionPercent: 100}\n"))
    env.start_gateway(conf, gw)
    return gw, local


UNARY_CALLS = [{"method": "Unary", "request": f"{i}"} for i in range(10)]


@_test
def grpc_locality_failover(env):
    """gRPC endpoints get locality priorities as HTTP/1.1 ones do: the local
    zone's endpoint serves while it is up; when it dies the other zone of the
    region takes every call (connect failures retried)."""
    need_tools("grpc")
    gw, _ = zoned_grpc_world(env)
    res = grpc(gw, UNARY_CALLS)
    check(all(r["code"] == "OK" for r in res) and set(served_by(res)) == {"near"},
          f"the local zone first: {[(r['code'], u) for r, u in zip(res, served_by(res))]}")
    victim = next(p for p in env.procs if p.name == "grpcup-near")
    os.killpg(victim.pid, signal.SIGKILL)
    victim.p.wait(5)
    res = grpc(gw, UNARY_CALLS)
    check(all(r["code"] == "OK" for r in res), f"failover: {[(r['code'], r['details']) for r in res]}")
    check(served_by(res)[-5:] == ["far"] * 5, f"not failed over to the other zone: {served_by(res)}")


@_test
def grpc_outlier_ejection(env):
    """A broken local gRPC endpoint (every call UNAVAILABLE: HTTP 200,
    trailers-only) is ejected after two such answers, which outlier detection
    reads as 503 as Envoy does; the calls it failed are retried (Istio's
    default retries unavailable) and every later call is served by the other
    zone."""
    need_tools("grpc")
    gw, local = zoned_grpc_world(env, near_fail=14)

    def far_only():
        r = grpc(gw, UNARY_CALLS)
        return all(x["code"] == "OK" for x in r) and set(served_by(r)) == {"far"} and r
    poll(far_only, 15, what="every call served by the other zone once the broken one is ejected")
    s = grpcup_stats(local)
    check(s["calls"].get("Unary", 0) >= 2, f"the broken endpoint was not tried: {s}")
    res = grpc(gw, UNARY_CALLS)
    check(set(served_by(res)) == {"far"} and grpcup_stats(local)["calls"].get("Unary", 0) <= 4,
          f"the ejected endpoint still gets calls: {grpcup_stats(local)}")


@_test
def grpc_status_not_a_number(env):
    """A trailers-only gRPC answer whose grpc-status is no number is a failure
    to outlier detection (500, as Envoy's InvalidCode maps): under
    consecutive5xxErrors 1 its endpoint is ejected; it read as 0 (OK) and
    the endpoint stayed in. A grpc-status of 0 keeps it in."""
    need_tools("h2")
    dr = (f"apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: od}}\nspec:\n"
          f"  host: {SVC}\n  trafficPolicy:\n    outlierDetection: {{consecutive5xxErrors: 1, interval: 1s, "
          f"baseEjectionTime: 60s, maxEjectionPercent: 100}}\n")
    gw = one_service(env, h1_upstream(env), extra_docs=(dr,))

    def call(status):
        raw = (f"HTTP/1.1 200 OK\r\ncontent-type: application/grpc\r\ngrpc-status: {status}\r\n"
               "content-length: 0\r\n\r\n").encode().hex()
        rep = h2_client(gw, [{"method": "POST", "path": "/raw", "body": "",
                              "headers": [["content-type", "application/grpc"], ["te", "trailers"],
                                          ["x-respond", raw]]}])
        return rep["streams"][0]

    def ejected():
        return any(e["ejected"] for e in json.loads(ctl_cmd(env.path("ctl.sock"), "show endpoints json")))

    for _ in range(3):
        s = call("0")
        check(s["status"] == 200, f"grpc-status 0: {s}")
    check(not ejected(), "an endpoint answering grpc-status 0 was ejected")
    s = call("ab")
    check(s["status"] == 200, f"grpc-status ab: {s}")
    poll(ejected, 5, what="the endpoint that answered grpc-status ab to be ejected")


@_test
def h2_upstream_chunked_body(env):
    """An HTTP/1.1 client's chunked body (its first chunk in the same packet as
    the head) reaches an HTTP/2 upstream as plain DATA: no chunk framing, no
    transfer-encoding, the bytes exactly as sent."""
    need_tools("h2")
    port = start_h2_upstream(env, "127.0.0.2", "u")
    gw = one_service(env, port, protocol="HTTP2")
    body = [b"hello, ", b"chunked ", b"world" * 1000]
    raw = (b"POST /echo HTTP/1.1\r\nHost: test.local\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
           + b"".join(b"%x\r\n%s\r\n" % (len(c), c) for c in body[:2]))
    with socket.create_connection(("127.0.0.1", gw), 10) as s:
        s.sendall(raw)
        time.sleep(0.05)  # the rest as a later packet (no synchronisation depends on it)
        s.sendall(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body[2]), body[2]))
        s.settimeout(10)
        got = b""
        while True:
            d = s.recv(65536)
            if not d:
                break
            got += d
    head, _, rest = got.partition(b"\r\n\r\n")
    check(head.startswith(b"HTTP/1.1 200"), f"status: {head[:80]!r}")
    if b"transfer-encoding: chunked" in head.lower():
        data, pos = b"", 0
        while True:
            line_end = rest.index(b"\r\n", pos)
            n = int(rest[pos:line_end], 16)
            if n == 0:
                break
            data += rest[line_end + 2:line_end + 2 + n]
            pos = line_end + 2 + n + 2
        rest = data
    check(rest == b"".join(body), f"the upstream echoed {len(rest)} bytes, want {len(b''.join(body))}: "
          f"{rest[:60]!r}")


@_test
def h2_upstream_interim_heads_bounded(env):
    """An HTTP/2 upstream's interim (1xx) heads count together in
    maxResponseHeaderBytes, as an HTTP/1.1 upstream's: 5 "103" heads (about
    500 bytes of fields) pass under 1024 and the answer comes, 20 are a
    protocol error, 502 UPE. Each head's count started again, so an upstream
    sending them without end held the exchange (every frame re-arms its
    timer)."""
    need_tools("h2")
    log = env.path("access.log")
    port = start_h2_upstream(env, "127.0.0.2", "u")
    gw = one_service(env, port, protocol="HTTP2", app_extra=(
        f"  limits: {{maxResponseHeaderBytes: 1024}}\n  accessLog: {{path: {log}, format: text, "
        f"textFormat: \"%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS%\"}}\n"))
    for n, want in ((5, 200), (20, 502)):
        r = env.get(f"/interim/{n}")
        check(r.status == want, f"{n} interim heads: {r}, want {want}")
    line = poll(lambda: next((l for l in file_lines(log) if l.startswith("/interim/20 ")), None), 5,
                what="the access-log line of /interim/20")
    check(line == "/interim/20 502 UPE", f"the access log says {line!r}")


@_test
def h2_upstream_window_given_back(env):
    """6,000 requests one after another (10 at a time) over one HTTP/2 upstream
    connection, answers of about 600 bytes: several times the connection's
    1 MiB window in all. Every byte the upstream sent goes back to its window
    when the exchange ends, whether or not the client took it before, so none
    stalls."""
    need_tools("h2", "h2load")
    port = start_h2_upstream(env, "127.0.0.2", "u")
    gw = one_service(env, port, protocol="HTTP2", workers=1)
    p = subprocess.run(["h2load", "-n", "6000", "-c", "1", "-m", "10", "-T", "5",
                        f"http://127.0.0.1:{gw}/window"], capture_output=True, text=True, timeout=120)
    m = re.search(r"requests: (\d+) total, \d+ started, (\d+) done, (\d+) succeeded", p.stdout)
    check(m is not None and m.group(3) == "6000" and "6000 2xx" in p.stdout,
          f"h2load: {p.stdout[-400:]} {p.stderr[-200:]}")
    s = h2up_stats("127.0.0.2", port)
    check(s["h2_connections"] == 1, f"not one upstream connection: {s}")


@_test
def h2_upstream_keepalive_pings(env):
    """http2KeepAlive: an idle HTTP/2 upstream connection gets PINGs every
    interval (the upstream counts them) and stays in use; without the field,
    none."""
    need_tools("h2")
    port = start_h2_upstream(env, "127.0.0.2", "u")
    gw = one_service(env, port, protocol="HTTP2", workers=1, extra_docs=[
        dest_rule("dr", SVC, http="http2KeepAlive: {interval: 200ms, timeout: 2s}")])
    check(env.get("/one").status == 200, "first request")
    poll(lambda: h2up_stats("127.0.0.2", port)["pings"] >= 3, 10, what="3 PINGs on the idle connection")
    r = env.get("/two")
    check(r.status == 200 and info(r.body)["conn"] == info(env.get("/three").body)["conn"],
          f"the pinged connection is not the one in use: {r.body[:200]!r}")
    s = h2up_stats("127.0.0.2", port)
    check(s["h2_connections"] == 1, f"PINGs cost a connection: {s}")


def h2_frame(ftype, flags, stream, payload=b""):
    return len(payload).to_bytes(3, "big") + bytes([ftype, flags]) + stream.to_bytes(4, "big") + payload


@_test
def h2_upstream_whole_response_then_connection_error(env):
    """An HTTP/2 upstream answers stream 1 (its head first, then, in one write, the
    last DATA with END_STREAM) and in that same write breaks the connection:
    with a frame that is a connection error (DATA on stream 0), or with 1,100
    SETTINGS frames, a flood nghttp2 gives up on. The response that came whole
    before the error reaches the client at once, not after the response timeout."""
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    env.cleanups.append(ls.close)
    ls.bind(("127.0.0.2", 0))
    ls.listen(8)
    one_service(env, ls.getsockname()[1], protocol="HTTP2", workers=1, timeouts={"upstreamResponse": "8s"})
    breakers = {"a connection error": h2_frame(0, 0, 0, b"abc"),
                "a SETTINGS flood": h2_frame(4, 0, 0) * 1100}

    def serve(breaker):
        c, _ = ls.accept()
        with c:
            c.settimeout(10)
            buf, headers = b"", False
            try:
                while not headers:  # the preface, then frames until the request's HEADERS
                    d = c.recv(65536)
                    if not d:
                        return
                    buf += d
                    pos = 24
                    while len(buf) >= pos + 9:
                        n = int.from_bytes(buf[pos:pos + 3], "big")
                        headers = headers or buf[pos + 3] == 1
                        pos += 9 + n
                c.sendall(h2_frame(4, 0, 0) + h2_frame(4, 1, 0) + h2_frame(1, 4, 1, b"\x88"))  # :status 200
                time.sleep(0.3)  # the head reaches the client, which waits for the body
                c.sendall(h2_frame(0, 1, 1, b"whole") + breaker)
                while c.recv(65536):
                    pass
            except OSError:
                pass

    for what, breaker in breakers.items():
        t = threading.Thread(target=serve, args=(breaker,), daemon=True)
        t.start()
        t0 = time.monotonic()
        try:
            r = env.get(f"/{what.split()[-1]}", timeout=15)
        except (EOFError, OSError) as e:
            raise TestFailure(f"{what}: the response was lost ({e!r}) after {time.monotonic() - t0:.1f}s")
        took = time.monotonic() - t0
        check(r.status == 200 and r.body == b"whole", f"{what}: {r}")
        check(took < 3, f"{what}: the whole response took {took:.1f}s (the response timeout is 8 s)")
        t.join(10)


@_test
def grpc_access_log_filter(env):
    """The access-log filter's response.grpc_status, response.headers and
    response.trailers, as Envoy's CEL gives them: a call's grpc-status from
    its trailers (5 after a message), a trailers-only answer's from its head
    (7), the HTTP status's gRPC equivalent for an answer without one (404:
    12); a filter on them logs exactly the calls it names."""
    need_tools("grpc")
    up = start_grpc_upstream(env, "127.0.0.2", "g1")
    log = env.path("access.log")
    expr = ("(response.grpc_status == 5 && response.trailers['grpc-message'] == 'gone' && "
            "response.headers['content-type'].startsWith('application/grpc')) || "
            "(response.grpc_status == 7 && response.headers['grpc-message'] == 'denied' && "
            "!('grpc-status' in response.trailers)) || (response.grpc_status == 12 && response.code == 404)")
    tel = ("apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: mesh-default, "
           "namespace: istio-system}\nspec:\n  accessLogging:\n  - providers: [{name: envoy}]\n"
           f"    filter: {{expression: \"{expr}\"}}\n")
    gw = one_service(env, up, protocol="GRPC", host=GSVC, workers=1, extra_docs=[tel],
                     routes=f"  - match: [{{uri: {{prefix: /isthmus.test.Echo/}}}}]\n"
                            f"    route: [{{destination: {{host: {GSVC}}}}}]\n",
                     app_extra=f"  accessLog: {{path: {log}, format: text, textFormat: \"%REQ(:PATH)%\"}}\n")
    res = grpc(gw, [{"method": "Unary", "request": "fine"},
                    {"method": "ServerStream", "request": json.dumps({"n": 1, "code": 5, "message": "gone"})},
                    {"method": "Status", "request": json.dumps({"code": 7, "message": "denied"})}])
    check([r["code_value"] for r in res] == [0, 5, 7], f"the calls: {res}")
    check(http_get(gw, "/nope").status == 404, "a request without a route")
    # A trailers-only answer reaches an HTTP/2 client as it left the upstream:
    # one HEADERS frame, no content-length added (the filter logs no code 9).
    rep = h2_client(gw, [{"path": "/isthmus.test.Echo/Status", "grpc": json.dumps({"code": 9, "message": "m"})}])
    s = rep["streams"][0]
    check(s["trailers_only"] and hdr(s, "grpc-status") == "9" and hdr(s, "content-length") is None,
          f"a trailers-only answer through isthmus: {s}")
    want = ["/isthmus.test.Echo/ServerStream", "/isthmus.test.Echo/Status", "/nope"]
    poll(lambda: len(file_lines(log)) >= 3, 10, what="three access-log lines")
    check(sorted(file_lines(log)) == want, f"lines: {file_lines(log)}, want {want}")


@_test
def h2_upstream_stream_ended_with_data_queued(env):
    """Streams to an HTTP/2 upstream that end while nghttp2 still holds a DATA
    frame of their request body (the connection's output full: the upstream
    stopped reading): a stream's memory stays until nghttp2 closes it. It was
    freed at once, and the next flush framed the held DATA from it: a
    use-after-free (the sanitizer build's worker died; the release build could
    send one client's body inside another's stream). 32 HTTP/2 uploads to an
    upstream that stops reading once they came (h2_stall_upstream.py, on the
    connection a first request opened), reset
    by their client meanwhile, which keeps the connection for one more
    request; the upstream reads again and the gateway serves on, its worker
    never restarted."""
    up = free_port("127.0.0.2")
    spawn_listening(env, "h2stall", [DEBIAN_PYTHON, os.path.join(TOOLS, "h2_stall_upstream.py"),
                                     f"127.0.0.2:{up}", "33", "6"], "127.0.0.2", up)
    gw = free_port()
    env.start_gateway(env.write("isthmus.yaml", docs(
        appliance(env, workers=1, timeouts={"upstreamResponse": "30s"},
                  extra="  limits: {http2InitialStreamWindowSize: 1048576, "
                        "http2InitialConnectionWindowSize: 16777216}\n"),
        gateway(gw), virtual_service("vs", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n"),
        service_entry_protocol("up", SVC, [{"address": "127.0.0.2", "port": up}], "HTTP2"))), gw)
    check(http_get(gw, "/warm").status == 200, "the first request, which opens the upstream connection")
    rep = h2_client(gw, [{"method": "POST", "path": f"/upload/{i}", "body_size": 16 << 20, "cancel_after": 3.0}
                         for i in range(32)], after=[{"path": "/after-resets"}], burst=True, timeout=30)
    check(all(s["cancelled"] for s in rep["streams"]),
          f"the uploads the client reset: {[(s['status'], s['cancelled']) for s in rep['streams']]}")
    check(rep["after"][0]["status"] == 200, f"the request after the resets, on their connection: {rep['after']}")
    check(http_get(gw, "/after").status == 200, "the gateway after the upstream read again")
    check("exited" not in env.gateway.log(), f"a worker exited: {env.gateway.log()[-1500:]}")


@_test
def h2_upstream_whole_response_then_reset(env):
    """An HTTP/2 upstream that answers whole (END_STREAM) while the request
    body is still coming, then resets the stream (CANCEL, INTERNAL_ERROR): the
    client gets the whole response, as Envoy's router completes it; only a
    reset with NO_ERROR did, the others cut it after its DATA (logged 200 UR)."""
    up = start_h2_upstream(env, "127.0.0.2", "early")
    gw = one_service(env, up, protocol="HTTP2")
    for code in (8, 2):
        rep = h2_client(gw, [{"method": "POST", "path": f"/early/{code}", "body_size": 4 << 20}], timeout=20)
        s = rep["streams"][0]
        check(s["status"] == 200 and s["body"] == "early\n" and s["reset"] in (None, 0),
              f"a whole response, then the upstream's reset {code}: {s['status']} {s['body']!r} reset {s['reset']}")


@_test
def h2_upstream_retry_keeps_trailers(env):
    """A request without a body but with trailers, retried to an HTTP/2
    upstream (the first endpoint answers 503, retryOn 503): the retry carries
    the trailers too (its HEADERS ended the stream, so they never went)."""
    bad = start_h2_upstream(env, "127.0.0.2", "bad")
    good = start_h2_upstream(env, "127.0.0.3", "good")
    check(http_get(bad, "/__ctl/fail/503", addr="127.0.0.2").status == 200, "the failing endpoint")
    gw = free_port()
    env.start_gateway(env.write("isthmus.yaml", docs(
        appliance(env), gateway(gw),
        virtual_service("vs", ["*"], route(SVC, "    retries: {attempts: 2, retryOn: \"503\"}\n")),
        service_entry_protocol("svc", SVC, [{"address": "127.0.0.2", "port": bad},
                                            {"address": "127.0.0.3", "port": good}], "HTTP2"))), gw)
    rep = h2_client(gw, [{"method": "POST", "path": f"/t/{i}", "trailers": [["x-req-trailer", "yes"]]}
                         for i in range(8)], timeout=20)
    answers = [info(s) for s in rep["streams"] if s["status"] == 200]
    check(len(answers) == 8, f"8 answers from the good endpoint: {[s['status'] for s in rep['streams']]}")
    retried = [a for a in answers if ["x-envoy-attempt-count", "2"] in a["headers"]]
    check(retried, f"no request was retried (none went to the failing endpoint first): {answers}")
    check(all(["x-req-trailer", "yes"] in a["trailers"] for a in answers),
          f"a retry lost the request's trailers: {[(a['path'], a['trailers']) for a in answers]}")


@_test
def h2_trailer_field_end_to_end(env):
    """A request's Trailer field, which declares the trailers that follow
    (RFC 9110 6.6.2: end to end), reaches an HTTP/2 upstream with them, as
    Envoy passes it: a server that keeps only the trailers a request declares
    (Go's) lost them all, isthmus having dropped the field as hop-by-hop."""
    up = start_h2_upstream(env, "127.0.0.2", "tr")
    gw = one_service(env, up, protocol="HTTP2")
    rep = h2_client(gw, [{"method": "POST", "path": "/t", "body": "b",
                          "headers": [["trailer", "x-req-trailer"]], "trailers": [["x-req-trailer", "yes"]]}],
                    timeout=20)
    s = rep["streams"][0]
    check(s["status"] == 200, f"answered {statuses(rep['streams'])} {rep.get('error')}")
    a = info(s)
    check(["trailer", "x-req-trailer"] in a["headers"] and ["x-req-trailer", "yes"] in a["trailers"],
          f"the upstream saw fields {a['headers']} and trailers {a['trailers']}")


@_test
def h2_client_empty_last_data(env):
    """A response to an HTTP/2 client whose body is only its end, arriving on
    its own (an HTTP/1.1 upstream's chunked head, then its last chunk a moment
    later): the empty END_STREAM DATA frame is sent without a body buffer. It
    passed NULL to memcpy, undefined behaviour that killed the sanitizer
    build's worker (with every connection on it)."""
    ls = socket.socket()
    ls.bind(("127.0.0.2", 0))
    ls.listen(4)
    ls.settimeout(20)
    env.cleanups.append(ls.close)

    def serve():
        try:
            c, _ = ls.accept()
        except OSError:
            return
        with c:
            c.settimeout(10)
            if read_head(c)[0] is None:
                return
            c.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
            time.sleep(0.3)  # the last chunk in a read of its own
            c.sendall(b"0\r\n\r\n")
            c.recv(1)

    threading.Thread(target=serve, daemon=True).start()
    gw = one_service(env, ls.getsockname()[1], workers=1)
    rep = h2_client(gw, [{"path": "/empty"}], timeout=20)
    s = rep["streams"][0]
    check(s["status"] == 200 and s["body_len"] == 0 and s["finished"] and s["reset"] is None,
          f"the empty chunked response over HTTP/2: {s}")
    check("exited" not in env.gateway.log(), f"a worker exited: {env.gateway.log()[-1500:]}")


def _h2_frame(ftype, flags, sid, payload=b""):
    return struct.pack(">I", len(payload))[1:] + bytes([ftype, flags]) + struct.pack(">I", sid) + payload


@_test
def h2_answer_cut_with_its_head_is_reset(env):
    """An HTTP/2 upstream whose response HEADERS and RST_STREAM come in one
    write: the answer is cut while its head is still queued for the HTTP/2
    client (not framed yet). The head goes out, then the client's stream is
    reset at once, as Envoy's codec frames the head and resets; without the
    reset the client waits for a body that never comes."""
    ls = socket.socket()
    ls.bind(("127.0.0.2", free_port("127.0.0.2")))
    ls.listen(8)
    ls.settimeout(30)
    env.cleanups.append(ls.close)

    def serve_conn(c):
        c.settimeout(15)
        buf = b""
        c.sendall(_h2_frame(4, 0, 0))  # our SETTINGS
        while len(buf) < 24:
            d = c.recv(65536)
            if not d:
                return
            buf += d
        buf = buf[24:]  # the client's preface
        while True:
            while len(buf) >= 9 and len(buf) >= 9 + int.from_bytes(buf[:3], "big"):
                n = int.from_bytes(buf[:3], "big")
                ftype, flags, sid = buf[3], buf[4], int.from_bytes(buf[5:9], "big") & 0x7FFFFFFF
                buf = buf[9 + n:]
                if ftype == 4 and not flags & 1:
                    c.sendall(_h2_frame(4, 1, 0))  # SETTINGS ACK
                elif ftype == 1:
                    # :status 200 (HPACK static index 8), END_HEADERS; then INTERNAL_ERROR
                    c.sendall(_h2_frame(1, 4, sid, b"\x88") + _h2_frame(3, 0, sid, struct.pack(">I", 2)))
            d = c.recv(65536)
            if not d:
                return
            buf += d

    def serve():
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            threading.Thread(target=lambda: (serve_conn(c), c.close()), daemon=True).start()

    threading.Thread(target=serve, daemon=True).start()
    gw = one_service(env, ls.getsockname()[1], protocol="HTTP2", workers=1)
    for i in range(3):
        t0 = time.monotonic()
        rep = h2_client(gw, [{"path": f"/cut{i}"}], timeout=8)
        took = time.monotonic() - t0
        s = rep["streams"][0]
        check(s["reset"] is not None and took < 4,
              f"an answer cut with its head still queued: {s} after {took:.1f} s ({rep['error']})")


@_test
def h2_upstream_trailers_over_head_limit(env):
    """An HTTP/2 upstream's trailer block is held to maxResponseHeaderBytes as
    its head is (Envoy's codec checks headers and trailers against
    max_response_headers_kb): one of 6000 bytes over a limit of 4096 resets
    the stream and is not relayed; a small one is."""
    need_tools("h2")
    port = start_h2_upstream(env, "127.0.0.2", "u")
    gw = one_service(env, port, protocol="HTTP2", app_extra="  limits: {maxResponseHeaderBytes: 4096}\n")
    rep = h2_client(gw, [{"method": "POST", "path": "/echo", "body": "data",
                          "headers": [["te", "trailers"], ["x-send-trailer-x-small", "1"]]}])
    s = rep["streams"][0]
    check(s["status"] == 200 and ["x-small", "1"] in (s["trailers"] or []), f"a small trailer: {s} {rep['error']}")
    rep = h2_client(gw, [{"method": "POST", "path": "/echo", "body": "data",
                          "headers": [["te", "trailers"], ["x-send-trailer-x-big", "b" * 6000]]}])
    s = rep["streams"][0]
    check(not any(k == "x-big" for k, _ in (s["trailers"] or [])) and s["reset"] is not None,
          f"a trailer block of 6000 bytes over maxResponseHeaderBytes 4096 was relayed: "
          f"status {s['status']} reset {s['reset']} trailers {[(k, len(v)) for k, v in s['trailers'] or []]}")


@_test
def h2_upstream_goaway_no_new_stream(env):
    """An HTTP/2 upstream's GOAWAY takes its connection out of the pool at
    once (Envoy's codec client drains it), although a stream still runs on
    it: the next request opens a new connection as its first attempt, not a
    stream on the draining connection, refused, then a second attempt."""
    need_tools("h2")
    port = start_h2_upstream(env, "127.0.0.2", "u")
    one_service(env, port, protocol="HTTP2", workers=1)
    r = env.get("/warm")
    check(r.status == 200, f"/warm: {r}")
    slow = {}

    def held():
        slow["r"] = env.get("/delay/1500", timeout=10)

    # The held request counted at the upstream: its in-flight count alone
    # can still hold /warm's stream, whose end the upstream counts a moment
    # after its answer went (then /goaway could go out first, and the held
    # request on the connection after the GOAWAY).
    base = h2up_stats("127.0.0.2", port)["requests"]
    t = threading.Thread(target=held, daemon=True)
    t.start()

    def arrived():
        s = h2up_stats("127.0.0.2", port)
        return s["requests"] > base and s["in_flight"] >= 1

    poll(arrived, 5, what="the held stream at the upstream")
    r = env.get("/goaway")
    check(r.status == 200, f"/goaway: {r}")
    first = info(r.body)
    r = env.get("/after")
    check(r.status == 200, f"the request after GOAWAY: {r}")
    after = info(r.body)
    hdrs = {k.lower(): v for k, v in after["headers"]}
    check(after["conn"] != first["conn"] and hdrs.get("x-envoy-attempt-count", "1") == "1",
          f"after the upstream's GOAWAY (connection {first['conn']}, a stream still open on it): "
          f"connection {after['conn']}, attempt {hdrs.get('x-envoy-attempt-count')}")
    t.join(10)
    check(slow.get("r") is not None and slow["r"].status == 200 and info(slow["r"].body)["conn"] == first["conn"],
          f"the stream in flight on the draining connection: {slow.get('r')}")


@_test
def h2_upstream_peer_stream_cap_spreads(env):
    """The upstream's SETTINGS_MAX_CONCURRENT_STREAMS (3) caps the streams a
    connection takes, as Envoy's pool takes the lower of its own and the
    peer's: 12 requests at once (one worker) go over at least 4 connections,
    never more than 3 on one, instead of queueing in one connection's
    nghttp2 session behind the streams it may have."""
    need_tools("h2")
    port = start_h2_upstream(env, "127.0.0.2", "u", max_streams=3)
    one_service(env, port, protocol="HTTP2", workers=1)
    check(env.get("/first").status == 200, "the first request")
    st = parallel_get(env, 12, "/delay/300")
    check(st == [200] * 12, f"12 requests: {st}")
    s = h2up_stats("127.0.0.2", port)
    check(s["max_streams_per_conn"] <= 3 and s["h2_connections"] >= 4,
          f"12 requests to an upstream taking 3 streams a connection: {s['h2_connections']} connections, "
          f"at most {s['max_streams_per_conn']} streams on one: {s}")
