# SPDX-License-Identifier: Apache-2.0
"""Integration tests of two HTTP route actions (issue 12): corsPolicy (a
preflight from an allowed origin answered by isthmus without an upstream hit,
the Access-Control-* fields of the actual response, nothing for a refused
origin, unmatchedPreflights) and fault (abort and delay, their shares over
10,000 requests, gRPC aborts in trailers-only form, the access log's DI and FI
flags), over HTTP/1.1 and HTTP/2 clients alike; and Istio's own samples that
use them.

Registered into run.py's list by register(test)."""

import json
import os
import re
import subprocess
import time

from harness import (Conn, Registry, appliance, check, ctl_cmd, curl, docs, file_lines, free_port, gateway, poll,
                     service_entry, virtual_service)
from test_h2 import (GSVC, RESOURCE_EXHAUSTED, UNIMPLEMENTED, alog, check_grpc_local_error, grpc, grpc_raw,
                     grpc_world, grpcup_stats, need_tools, wait_log)

_test = Registry()
register = _test.register

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(os.path.dirname(HERE), "fixtures")
SVC = "cf.test.internal"
DEAD = "dead.test.internal"
ACA = "access-control-"


def _world(env, http_yaml, app_extra="", extra_docs=()):
    """One C test upstream (e0) for SVC, a dead endpoint for DEAD, the gateway
    with http_yaml as its VirtualService's routes. Returns the upstream's port."""
    up = env.upstream(["127.0.0.1:0=e0"], name="e0")["e0"]
    dead = free_port()
    gw = free_port()
    conf = env.write("isthmus.yaml", docs(
        appliance(env, extra=app_extra), gateway(gw),
        virtual_service("cf", ["*"], http_yaml),
        service_entry("cf", SVC, [{"address": "127.0.0.1", "port": up}]),
        service_entry("dead", DEAD, [{"address": "127.0.0.1", "port": dead}]), *extra_docs))
    env.start_gateway(conf, gw)
    return up


def upstream_count(port):
    """Requests the C test upstream has served (its /__ctl/count)."""
    with Conn("127.0.0.1", port) as c:
        r = c.request("GET", "/__ctl/count")
    check(r.status == 200, f"upstream count: {r}")
    return int(r.body)


def aca_fields(headers):
    """The Access-Control-* fields of a response, {name: [values]}."""
    out = {}
    for k, v in headers:
        if k.startswith(ACA):
            out.setdefault(k, []).append(v)
    return out


def curl_h2c(port, path, method="GET", headers=()):
    """One request with curl over h2c (prior knowledge): (status, [(name, value)], body)."""
    args = ["-i", "--http2-prior-knowledge", "-X", method, "--max-time", "10"]
    for k, v in headers:
        args += ["-H", f"{k}: {v}"]
    rc, out, err = curl(args + [f"http://127.0.0.1:{port}{path}"], timeout=20)
    check(rc == 0, f"curl --http2-prior-knowledge {method} {path}: rc {rc}: {err}")
    head, _, body = out.partition("\r\n\r\n")
    lines = head.split("\r\n")
    check(lines[0].startswith("HTTP/2 "), f"curl did not speak HTTP/2: {lines[0]!r}")
    hdrs = [(k.strip().lower(), v.strip()) for k, _, v in (l.partition(":") for l in lines[1:])]
    return int(lines[0].split()[1]), hdrs, body


CORS = ("    corsPolicy:\n"
        "      allowOrigins: [{exact: \"https://app.example\"}, {regex: \"https://[a-z]+[.]cdn[.]example\"}]\n"
        "      allowMethods: [GET, POST, PUT]\n"
        "      allowHeaders: [X-Token, Content-Type]\n"
        "      exposeHeaders: [X-Upstream]\n"
        "      maxAge: 1h\n"
        "      allowCredentials: true\n")
PREFLIGHT = [("Origin", "https://app.example"), ("Access-Control-Request-Method", "PUT"),
             ("Access-Control-Request-Headers", "x-token")]
WANT_PREFLIGHT = {"access-control-allow-origin": ["https://app.example"],
                  "access-control-allow-credentials": ["true"],
                  "access-control-allow-methods": ["GET,POST,PUT"],
                  "access-control-allow-headers": ["X-Token,Content-Type"],
                  "access-control-max-age": ["3600"]}


def cors_routes():
    return (f"  - match: [{{uri: {{prefix: /ignore}}}}]\n    route: [{{destination: {{host: {SVC}}}}}]\n"
            "    corsPolicy: {allowOrigins: [{exact: \"https://app.example\"}], unmatchedPreflights: IGNORE}\n"
            f"  - match: [{{authority: {{exact: dead.test}}}}]\n    route: [{{destination: {{host: {DEAD}}}}}]\n"
            + CORS + f"  - route: [{{destination: {{host: {SVC}}}}}]\n" + CORS)


@_test
def cors_preflight(env):
    """A preflight from an allowed origin is answered by isthmus (200, the
    Access-Control-Allow-* fields as Envoy sends them, no body) without an
    upstream hit, over HTTP/1.1 and HTTP/2 (curl, h2c); one from a refused
    origin goes to the upstream and gets no Access-Control-* field, or, with
    unmatchedPreflights IGNORE, is answered without one. The access log
    gives a preflight answered here Envoy's CORS filter's details,
    cors_response."""
    log = env.path("access.log")
    up = _world(env, cors_routes(), app_extra=f"  accessLog: {{path: {log}, format: text, textFormat: "
                                              "\"%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE_DETAILS%\"}\n")
    before = upstream_count(up)
    with Conn("127.0.0.1", env.gw_port) as c:
        for i in range(2):  # kept alive: the answer's framing holds
            r = c.request("OPTIONS", "/api", headers=PREFLIGHT)
            check(r.status == 200 and r.body == b"" and r.header("content-length") == "0",
                  f"HTTP/1.1 preflight {i}: {r}")
            check(aca_fields(r.headers) == WANT_PREFLIGHT, f"HTTP/1.1 preflight fields: {r.headers}")
            check(r.header("x-upstream") is None, f"the preflight reached the upstream: {r}")
        r = c.request("GET", "/after")
        check(r.status == 200 and r.header("x-upstream") == "e0", f"the request after two preflights: {r}")
    st, hdrs, body = curl_h2c(env.gw_port, "/api", "OPTIONS", PREFLIGHT)
    check(st == 200 and body == "", f"HTTP/2 preflight: {st} {hdrs} {body!r}")
    check(aca_fields(hdrs) == WANT_PREFLIGHT, f"HTTP/2 preflight fields: {hdrs}")
    check(upstream_count(up) - before == 1, f"preflights reached the upstream: {upstream_count(up) - before} "
          "requests there, want only the GET")

    before = upstream_count(up)
    refused = [("Origin", "https://evil.example"), ("Access-Control-Request-Method", "PUT")]
    r = env.get("/api", headers=refused, method="OPTIONS")
    check(r.status == 200 and r.header("x-upstream") == "e0", f"a refused origin's preflight (FORWARD): {r}")
    check(aca_fields(r.headers) == {}, f"a refused origin got Access-Control-* fields: {r.headers}")
    st, hdrs, _ = curl_h2c(env.gw_port, "/api", "OPTIONS", refused)
    check(st == 200 and aca_fields(hdrs) == {} and ("x-upstream", "e0") in hdrs,
          f"HTTP/2, a refused origin's preflight: {st} {hdrs}")
    check(upstream_count(up) - before == 2, "a refused origin's preflights were not forwarded")

    before = upstream_count(up)
    r = env.get("/ignore", headers=refused, method="OPTIONS")
    check(r.status == 200 and r.body == b"" and aca_fields(r.headers) == {} and r.header("x-upstream") is None,
          f"unmatchedPreflights IGNORE, a refused origin: {r}")
    r = env.get("/ignore", headers=PREFLIGHT, method="OPTIONS")
    check(r.status == 200 and r.header("access-control-allow-origin") == "https://app.example"
          and r.header("access-control-allow-methods") is None, f"IGNORE, an allowed origin: {r}")
    check(upstream_count(up) == before, "IGNORE: a preflight reached the upstream")
    # An OPTIONS without Access-Control-Request-Method is no preflight: forwarded.
    r = env.get("/api", headers=[("Origin", "https://app.example")], method="OPTIONS")
    check(r.header("x-upstream") == "e0", f"a plain OPTIONS was answered by isthmus: {r}")
    want = {"OPTIONS /api cors_response": 3, "OPTIONS /ignore cors_response": 2, "OPTIONS /api via_upstream": 3}
    got = poll(lambda: {k: file_lines(log).count(k) for k in want} if len(file_lines(log)) >= 9 else None, 5,
               what="nine access-log lines")
    check(got == want, f"response code details: {file_lines(log)}")


@_test
def cors_actual_request(env):
    """An allowed origin's request goes to the upstream and its response gets
    Access-Control-Allow-Origin (the origin as sent), -Allow-Credentials and
    -Expose-Headers, replacing the upstream's own; isthmus's own error answers
    get them too; a refused origin's response gets none. HTTP/1.1 and HTTP/2."""
    up = _world(env, cors_routes())
    want = {"access-control-allow-origin": ["https://eu.cdn.example"],
            "access-control-allow-credentials": ["true"], "access-control-expose-headers": ["X-Upstream"]}
    origin = [("Origin", "https://eu.cdn.example")]
    before = upstream_count(up)
    r = env.get("/data", headers=origin)
    check(r.status == 200 and r.header("x-upstream") == "e0", f"HTTP/1.1 CORS request: {r}")
    check(aca_fields(r.headers) == want, f"HTTP/1.1 CORS response fields: {r.headers}")
    st, hdrs, _ = curl_h2c(env.gw_port, "/data", headers=origin)
    check(st == 200 and aca_fields(hdrs) == want, f"HTTP/2 CORS response fields: {st} {hdrs}")
    check(upstream_count(up) - before == 2, "the CORS requests did not reach the upstream")
    # The upstream's own Access-Control-Allow-Origin is replaced, not doubled.
    raw = b"HTTP/1.1 200 OK\r\nAccess-Control-Allow-Origin: *\r\nContent-Length: 2\r\n\r\nok"
    r = env.get("/raw", headers=origin + [("x-respond", raw.hex())])
    check(r.status == 200 and r.body == b"ok", f"/raw: {r}")
    check(r.header_all("access-control-allow-origin") == ["https://eu.cdn.example"],
          f"the upstream's Access-Control-Allow-Origin was not replaced: {r.headers}")
    # isthmus's own answer (no healthy upstream) carries them, as Envoy's local replies do.
    r = env.get("/x", host="dead.test", headers=[("Origin", "https://app.example")])
    check(r.status == 503 and r.header("access-control-allow-origin") == "https://app.example",
          f"a 503 made by isthmus for an allowed origin: {r}")
    for o in ("https://evil.example", "https://eu.cdn.example.evil", "HTTPS://APP.EXAMPLE"):
        r = env.get("/data", headers=[("Origin", o)])
        check(r.status == 200 and aca_fields(r.headers) == {}, f"refused origin {o} got fields: {r.headers}")
        st, hdrs, _ = curl_h2c(env.gw_port, "/data", headers=[("Origin", o)])
        check(st == 200 and aca_fields(hdrs) == {}, f"HTTP/2, refused origin {o} got fields: {hdrs}")
    r = env.get("/data")
    check(r.status == 200 and aca_fields(r.headers) == {}, f"no Origin, yet fields: {r.headers}")


@_test
def cors_with_route_actions(env):
    """CORS with the route's other actions, in Envoy's order: on a route that
    answers directly the CORS filter does nothing, as Envoy's finds no route
    entry there: a preflight gets the direct answer, and the direct answer to
    an allowed origin no field (both were CORS's); the route's response edits
    come first and CORS sets its fields over them."""
    routes = (f"  - match: [{{uri: {{prefix: /direct}}}}]\n"
              "    directResponse: {status: 200, body: {string: hi}}\n" + CORS
              + f"  - match: [{{uri: {{prefix: /edited}}}}]\n    route: [{{destination: {{host: {SVC}}}}}]\n"
              "    headers: {response: {set: {access-control-allow-origin: \"*\", x-edit: \"1\"}}}\n" + CORS)
    up = _world(env, routes)
    before = upstream_count(up)
    r = env.get("/direct", headers=PREFLIGHT, method="OPTIONS")
    check(r.status == 200 and r.body == b"hi" and aca_fields(r.headers) == {},
          f"a preflight to a direct-response route: {r}")
    r = env.get("/direct", headers=[("Origin", "https://app.example")])
    check(r.status == 200 and r.body == b"hi" and aca_fields(r.headers) == {},
          f"a direct response to an allowed origin: {r}")
    r = env.get("/edited", headers=[("Origin", "https://app.example")])
    check(r.status == 200 and r.header("x-edit") == "1"
          and r.header_all("access-control-allow-origin") == ["https://app.example"],
          f"the route's response edits, then CORS: {r.headers}")
    r = env.get("/edited", headers=[("Origin", "https://evil.example")])
    check(r.header_all("access-control-allow-origin") == ["*"], f"a refused origin, the route's own edit: {r.headers}")
    check(upstream_count(up) - before == 2, "the direct-response route reached the upstream")


def _fault_routes():
    return (f"  - match: [{{uri: {{prefix: /abort}}}}]\n    route: [{{destination: {{host: {SVC}}}}}]\n"
            "    fault: {abort: {httpStatus: 503, percentage: {value: 100}}}\n"
            f"  - match: [{{uri: {{prefix: /nocontent}}}}]\n    route: [{{destination: {{host: {SVC}}}}}]\n"
            "    fault: {abort: {httpStatus: 204, percentage: {value: 100}}}\n"
            f"  - match: [{{uri: {{prefix: /delay}}}}]\n    route: [{{destination: {{host: {SVC}}}}}]\n"
            "    timeout: 1s\n"
            "    fault: {delay: {fixedDelay: 800ms, percentage: {value: 100}}}\n"
            f"  - match: [{{uri: {{prefix: /both}}}}]\n    route: [{{destination: {{host: {SVC}}}}}]\n"
            "    fault:\n      delay: {fixedDelay: 300ms, percent: 100}\n"
            "      abort: {httpStatus: 418, percentage: {value: 100}}\n"
            f"  - match: [{{uri: {{prefix: /late}}}}]\n    route: [{{destination: {{host: nowhere.test.internal}}}}]\n"
            "    fault: {delay: {fixedDelay: 300ms, percentage: {value: 100}}}\n" + CORS
            + f"  - route: [{{destination: {{host: {SVC}}}}}]\n")


@_test
def fault_abort_and_delay(env):
    """abort 100 %: the status and Envoy's "fault filter abort", no upstream
    hit, FI in the access log; a 204 abort answers without a body on a kept
    connection; delay 100 %: the request goes on after fixedDelay (DI), the
    route's timeout and x-envoy-upstream-service-time counted from then;
    both: the abort after the delay (DI,FI).
    HTTP/1.1 and HTTP/2."""
    extra, log = alog(env, "text")
    extra = extra.replace("%REQ(:PATH)%", "%DURATION% %REQ(:PATH)%")
    up = _world(env, _fault_routes(), app_extra=extra)
    before = upstream_count(up)
    r = env.get("/abort")
    check(r.status == 503 and r.body == b"fault filter abort\n", f"HTTP/1.1 abort: {r}")
    st, _, body = curl_h2c(env.gw_port, "/abort")
    check(st == 503 and body == "fault filter abort\n", f"HTTP/2 abort: {st} {body!r}")
    with Conn("127.0.0.1", env.gw_port) as c:
        for i in range(2):
            r = c.request("GET", "/nocontent")
            check(r.status == 204 and r.header("content-length") is None, f"204 abort {i}: {r}")
        check(c.request("GET", "/").status == 200, "a request after two 204 aborts on the connection")
    check(upstream_count(up) - before == 1, "aborted requests reached the upstream")
    for proto in ("HTTP/1.1", "HTTP/2"):
        # 800 ms of delay, then 500 ms at the upstream, within a route timeout
        # of 1 s: the timeout starts once the delay is over.
        t0 = time.monotonic()
        if proto == "HTTP/1.1":
            r = env.get("/delay/500")
            st = r.status
            # Envoy's router takes the request after the delay: the service
            # time is the upstream's 500 ms, not the delay's 800 more.
            svc = int(r.header("x-envoy-upstream-service-time"))
            check(500 <= svc < 1300, f"x-envoy-upstream-service-time of the delayed request: {svc}")
        else:
            st = curl_h2c(env.gw_port, "/delay/500")[0]
        took = time.monotonic() - t0
        check(st == 200 and 1.3 <= took < 3, f"{proto} delayed request: {st} after {took:.2f}s")
        t0 = time.monotonic()
        st = env.get("/both").status if proto == "HTTP/1.1" else curl_h2c(env.gw_port, "/both")[0]
        took = time.monotonic() - t0
        check(st == 418 and 0.3 <= took < 2, f"{proto} delay then abort: {st} after {took:.2f}s")
    # What answers a delayed request before it goes out waits for the delay
    # too, as Envoy's router runs after it: a CORS preflight, a 503 for a
    # host without a ServiceEntry (NC: no such cluster).
    for path, hdrs, method, want in (("/late", PREFLIGHT, "OPTIONS", 200), ("/late", (), "GET", 503)):
        t0 = time.monotonic()
        r = env.get(path, headers=list(hdrs), method=method)
        took = time.monotonic() - t0
        check(r.status == want and 0.3 <= took < 2, f"{method} {path} after a delay: {r.status} in {took:.2f}s")
    # A client that goes away during the delay: its stream ends when the timer does.
    with Conn("127.0.0.1", env.gw_port) as c:
        c.send(b"GET /delay/0 HTTP/1.1\r\nHost: test.local\r\n\r\n")
    check(env.get("/").status == 200, "a request after a client left during a delay")
    lines = wait_log(log, lambda ls: sum("/both" in l for l in ls) >= 2 and any("/delay/0" in l for l in ls)
                     and sum("/late" in l for l in ls) >= 2,
                     "the /both lines and that of the client that left")
    flags = {}
    for l in lines:
        proto, status, fl, dur, path = l.split()
        if path == "/delay/0":
            check(fl.startswith("DI"), f"the line of the client that left: {l}")
            continue
        flags.setdefault(path, set()).add((proto, status, fl))
        if fl.startswith("DI"):
            check(int(dur) >= (1300 if path == "/delay/500" else 300), f"a DI line too short: {l}")
    check(flags["/abort"] == {("HTTP/1.1", "503", "FI"), ("HTTP/2", "503", "FI")}, f"/abort lines: {flags}")
    check(flags["/nocontent"] == {("HTTP/1.1", "204", "FI")}, f"/nocontent lines: {flags}")
    check(flags["/delay/500"] == {("HTTP/1.1", "200", "DI"), ("HTTP/2", "200", "DI")}, f"/delay lines: {flags}")
    check(flags["/both"] == {("HTTP/1.1", "418", "DI,FI"), ("HTTP/2", "418", "DI,FI")}, f"/both lines: {flags}")
    check(flags["/"] == {("HTTP/1.1", "200", "-")}, f"an untouched request's line: {flags}")
    check(flags["/late"] == {("HTTP/1.1", "200", "DI"), ("HTTP/1.1", "503", "DI,NC")}, f"/late lines: {flags}")


def h2load(url, n, h1=False):
    """h2load's summary of n requests to url (h2c, or HTTP/1.1 with h1)."""
    args = ["h2load", "-n", str(n)] + (["--h1", "-c", "16"] if h1 else ["-c", "4", "-m", "16"]) + [url]
    try:
        p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=120)
    except subprocess.TimeoutExpired:
        check(False, f"h2load still running after 120 s: {args}")
    out = p.stdout.decode()
    # h2load counts a 5xx as "failed": every request done without an error is what matters.
    check(re.search(rf"requests: {n} total, {n} started, {n} done, \d+ succeeded, \d+ failed, 0 errored, "
                    r"0 timeout", out), f"h2load: not every request was answered: {out[-1200:]}")
    m = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    check(m, f"h2load: no status code line: {out[-1200:]}")
    return [int(x) for x in m.groups()]


@_test
def fault_percentages(env):
    """abort 50 % over 10,000 HTTP/2 requests and delay 50 % over 10,000
    HTTP/1.1 requests (h2load): each share within 3 points; the delayed ones
    (DI in the access log) took at least the delay."""
    need_tools("h2load")
    extra, log = alog(env, "text")
    extra = extra.replace("%REQ(:PATH)%", "%DURATION% %REQ(:PATH)%")
    routes = (f"  - match: [{{uri: {{prefix: /abort50}}}}]\n    route: [{{destination: {{host: {SVC}}}}}]\n"
              "    fault: {abort: {httpStatus: 503, percentage: {value: 50}}}\n"
              f"  - match: [{{uri: {{prefix: /delay50}}}}]\n    route: [{{destination: {{host: {SVC}}}}}]\n"
              "    fault: {delay: {fixedDelay: 5ms, percentage: {value: 50.0}}}\n")
    up = _world(env, routes, app_extra=extra)
    n = 10000
    before = upstream_count(up)
    ok, _, _, aborted = h2load(f"http://127.0.0.1:{env.gw_port}/abort50", n)
    check(ok + aborted == n and 4700 <= aborted <= 5300,
          f"abort 50 %: {aborted} of {n} aborted (want 5000 ± 300)")
    check(upstream_count(up) - before == ok, f"the upstream saw {upstream_count(up) - before}, want {ok}")
    ok, _, _, _ = h2load(f"http://127.0.0.1:{env.gw_port}/delay50", n, h1=True)
    check(ok == n, f"delay 50 %: {ok} of {n} answered 2xx")
    lines = wait_log(log, lambda ls: sum("/delay50" in l for l in ls) >= n, f"{n} /delay50 lines", timeout=30)
    delayed = [l.split() for l in lines if l.endswith("/delay50") and " DI " in l]
    check(4700 <= len(delayed) <= 5300, f"delay 50 %: {len(delayed)} of {n} delayed (want 5000 ± 300)")
    check(all(int(d[3]) >= 5 for d in delayed), f"a DI request took under 5 ms: "
          f"{[d for d in delayed if int(d[3]) < 5][:5]}")
    fi = sum(1 for l in lines if l.endswith("/abort50") and " 503 FI " in l)
    check(fi == aborted, f"the access log has {fi} FI lines for /abort50, h2load saw {aborted} 503s")


@_test
def fault_grpc_abort(env):
    """grpcStatus: a gRPC client gets that status trailers-only (HTTP 200,
    grpc-message "fault filter abort"), never reaching the upstream; an
    httpStatus abort reaches a gRPC client as Envoy maps it (404 → 12); a
    request that is not gRPC gets HTTP 200 and Envoy's text."""
    need_tools("grpc", "h2")
    routes = (f"  - match: [{{authority: {{exact: grpc.abort}}}}]\n    route: [{{destination: {{host: {GSVC}}}}}]\n"
              "    fault: {abort: {grpcStatus: RESOURCE_EXHAUSTED, percentage: {value: 100}}}\n"
              f"  - match: [{{authority: {{exact: http.abort}}}}]\n    route: [{{destination: {{host: {GSVC}}}}}]\n"
              "    fault: {abort: {httpStatus: 404, percentage: {value: 100}}}\n"
              f"  - route: [{{destination: {{host: {GSVC}}}}}]\n")
    gw, ports = grpc_world(env, routes=routes)
    unary = "/isthmus.test.Echo/Unary"
    s = grpc_raw(gw, unary, "x", authority="grpc.abort")
    check_grpc_local_error(s, RESOURCE_EXHAUSTED, "grpcStatus RESOURCE_EXHAUSTED")
    check(dict(s["headers"]).get("grpc-message") == "fault filter abort", f"grpc-message: {s['headers']}")
    check_grpc_local_error(grpc_raw(gw, unary, "x", authority="http.abort"), UNIMPLEMENTED, "httpStatus 404")
    res = grpc(gw, [{"method": "Unary", "request": "x"}], authority="grpc.abort")
    check(res[0]["code_value"] == RESOURCE_EXHAUSTED and res[0]["details"] == "fault filter abort",
          f"grpcio client, grpcStatus abort: {res[0]}")
    res = grpc(gw, [{"method": "Unary", "request": "y"}])
    check(res[0]["code"] == "OK" and res[0]["responses"] == ["y"], f"the route without a fault: {res[0]}")
    calls = grpcup_stats(ports[0])["calls"]
    check(calls.get("Unary", 0) == 1, f"aborted calls reached the upstream: {calls}")
    st, _, body = curl_h2c(gw, "/plain", headers=[("Host", "grpc.abort")])
    check(st == 200 and body == "fault filter abort\n", f"grpcStatus abort of a request that is not gRPC: "
          f"{st} {body!r}")


def _sample(name):
    with open(os.path.join(FIXTURES, "istio-cors-fault", name)) as f:
        text = f.read()
    # The samples bind to the mesh; the test serves them on its Gateway.
    text, n = re.subn(r"\nspec:\n", "\nspec:\n  gateways: [gw]\n", text, count=1)
    check(n == 1, f"no spec in {name}")
    return text


@_test
def istio_fault_cors_samples(env):
    """Istio's samples: Bookinfo's fault-injection task (jason's ratings
    requests get HTTP 500, or wait 7 s; the others go through) and the
    CorsPolicy example of Istio's API reference."""
    up = env.upstream(["127.0.0.1:0=v1"], name="v1")["v1"]
    with open(os.path.join(FIXTURES, "istio-samples", "destination-rule-all.yaml")) as f:
        rules = f.read()
    # Each service in its namespace, where Istio looks for its DestinationRule.
    ses = [service_entry("ratings", f"ratings.{ns}.svc.cluster.local",
                         [{"address": "127.0.0.1", "port": up, "labels": {"version": "v1"}}], port=9080)
           .replace("{name: ratings}", f"{{name: ratings, namespace: {ns}}}", 1)
           for ns in ("default", "prod")]
    prod_dr = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ratings, "
               "namespace: prod}\nspec:\n  host: ratings.prod.svc.cluster.local\n"
               "  subsets: [{name: v1, labels: {version: v1}}]\n")
    jason = [("end-user", "jason")]
    RATINGS = "ratings.default.svc.cluster.local"

    def start(sample):
        gw = free_port()
        conf = env.write(f"{sample}.conf.yaml", docs(appliance(env), gateway(gw), *ses, prod_dr) + "---\n"
                         + rules + "---\n" + _sample(sample))
        if env.gateway is not None:
            os.killpg(env.gateway.pid, 15)
            env.gateway.p.wait(10)
        env.start_gateway(conf, gw)

    start("virtual-service-ratings-test-abort.yaml")
    r = env.get("/ratings/0", host=RATINGS, headers=jason)
    check(r.status == 500 and r.body == b"fault filter abort\n", f"jason, abort sample: {r}")
    r = env.get("/ratings/0", host=RATINGS)
    check(r.status == 200 and r.header("x-upstream") == "v1", f"another user, abort sample: {r}")
    start("virtual-service-ratings-test-delay.yaml")
    t0 = time.monotonic()
    r = env.get("/ratings/0", host=RATINGS, headers=jason, timeout=15)
    took = time.monotonic() - t0
    check(r.status == 200 and 7.0 <= took < 10, f"jason, delay sample: {r.status} after {took:.1f}s (want 7 s)")
    t0 = time.monotonic()
    r = env.get("/ratings/0", host=RATINGS)
    check(r.status == 200 and time.monotonic() - t0 < 2, f"another user, delay sample: {r}")
    start("virtual-service-cors-ratings-route.yaml")
    r = env.get("/ratings/0", host="ratings.prod.svc.cluster.local", method="OPTIONS",
                headers=[("Origin", "https://example.com"), ("Access-Control-Request-Method", "POST")])
    check(r.status == 200 and aca_fields(r.headers) == {
        "access-control-allow-origin": ["https://example.com"], "access-control-allow-methods": ["POST,GET"],
        "access-control-allow-headers": ["X-Foo-Bar"], "access-control-max-age": ["86400"]},
        f"the CorsPolicy example's preflight (allowCredentials false: no such field): {r}")
    r = env.get("/ratings/0", host="ratings.prod.svc.cluster.local", headers=[("Origin", "https://example.org")])
    check(r.status == 200 and r.header("x-upstream") == "v1" and aca_fields(r.headers) == {},
          f"another origin, CORS example: {r}")


@_test
def explain_cors_fault(env):
    """isthmusctl explain tells what a route's fault and corsPolicy do to a
    request: the shares of its delay and abort, whether a preflight is answered
    by isthmus (and then no destination), whether the answer gets CORS fields."""
    routes = (f"  - match: [{{uri: {{prefix: /f}}}}]\n    route: [{{destination: {{host: {SVC}}}}}]\n"
              "    fault:\n      delay: {fixedDelay: 5ms, percentage: {value: 12.5}}\n"
              "      abort: {grpcStatus: UNAVAILABLE, percentage: {value: 0.5}}\n"
              f"  - route: [{{destination: {{host: {SVC}}}}}]\n" + CORS)
    _world(env, routes)
    ctl = os.path.join(env.build, "isthmusctl")

    def explain(*args):
        p = subprocess.run([ctl, "-s", env.path("ctl.sock"), "explain", *args], stdout=subprocess.PIPE,
                           timeout=30)
        check(p.returncode == 0, f"explain {args}: exit {p.returncode}: {p.stdout!r}")
        return p.stdout.decode()

    url = f"http://x.example:{env.gw_port}"
    out = explain("GET", url + "/f")
    check("fault: a 5 ms delay for 12.5 % of requests (DI)" in out
          and "fault: an abort with gRPC status 14 for 0.5 % of requests (FI)" in out
          and f"destination: outbound|80||{SVC}" in out, f"explain, fault: {out}")
    out = explain("OPTIONS", url + "/", "origin=https://app.example", "access-control-request-method=PUT")
    check("corsPolicy: a preflight from an allowed origin: the answer is 200, here" in out
          and "destination:" not in out, f"explain, an allowed preflight: {out}")
    out = explain("GET", url + "/", "origin=https://app.example")
    check("its answer gets Access-Control-* fields" in out and "destination:" in out, f"explain, CORS: {out}")
    out = explain("OPTIONS", url + "/", "origin=https://evil.example", "access-control-request-method=PUT")
    check("no Access-Control-* field" in out and "destination:" in out, f"explain, a refused preflight: {out}")


@_test
def fault_delay_freed_with_client(env):
    """A request a fault delays whose client goes gives its stream back at
    once, as Envoy's fault filter drops its timer with the stream: it was
    held until the end of the delay (an hour here), so requests reset in a
    loop grew a worker without bound (show info's streams)."""
    _world(env, "  - fault: {delay: {fixedDelay: 3600s, percentage: {value: 100}}}\n"
                f"    route: [{{destination: {{host: {SVC}}}}}]\n")

    def streams():
        return json.loads(ctl_cmd(env.path("ctl.sock"), "show info json"))["streams"]

    n = 200
    for i in range(n):
        with Conn("127.0.0.1", env.gw_port, timeout=5) as c:
            c.send(f"GET /held{i} HTTP/1.1\r\nHost: a\r\n\r\n".encode())
    check(streams() <= n, f"{streams()} streams for {n} requests")
    poll(lambda: streams() == 0, 10, interval=0.05,
         what=f"every stream of the {n} delayed requests whose clients went to be given back")
