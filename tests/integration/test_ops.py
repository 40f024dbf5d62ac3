# SPDX-License-Identifier: Apache-2.0
"""Integration tests of operating features: the access log (JSON lines, the
text format, syslog, reason codes, reopening on SIGUSR1 for logrotate).

Registered into run.py's list by register(test)."""

import json
import pwd
import os
import re
import signal
import socket
import struct
import subprocess
import threading
import time

from harness import (Conn, Registry, TestFailure, appliance, check_wrk_clean, wrk_reap, check, ctl_cmd, curl, docs,
                     free_port, file_lines, gateway, in_netns, make_netns, metric, poll, service_entry,
                     virtual_service)

SVC = "ops.test.internal"
_test = Registry()
register = _test.register


def _lines(path):
    try:
        with open(path) as f:
            return [json.loads(l) for l in f if l.strip()]
    except FileNotFoundError:
        return []


@_test
def access_log(env):
    ports = env.upstream(["127.0.0.2:0=a"], name="a")
    gw_port = free_port()
    log = env.path("access.log")
    conf = env.write("isthmus.yaml", docs(
        appliance(env, extra=f"  accessLog: {{path: {log}, format: json}}\n"), gateway(gw_port),
        virtual_service("ops", ["*"], f"  - match: [{{uri: {{prefix: /app}}}}, {{uri: {{prefix: /status}}}}]\n"
                                      f"    route: [{{destination: {{host: {SVC}}}}}]\n"),
        service_entry("ops", SVC, [{"address": "127.0.0.2", "port": ports["a"]}])))
    env.start_gateway(conf, gw_port)
    r = env.get("/app/x?q=1", headers={"x-a": "1", "User-Agent": "itest/1", "X-Forwarded-For": "10.9.8.7"})
    check(r.status == 200, "request failed")
    check(env.get("/nowhere").status == 404, "no 404 for an unrouted path")
    check(env.get("/status/503").status == 503, "upstream 503 not passed on")
    # UTF-8 is written as it is (Envoy's JSON sanitizer), a byte that is not
    # UTF-8 as \u00XX (it was every byte past 0x7f: "é" read back as "Ã©").
    utf8 = "é€𝄞 ok"
    for path, agent in (("/app/utf8", utf8.encode()), ("/app/latin1", b"caf\xe9")):
        check(env.get(path, headers={"User-Agent": agent.decode("latin-1")}).status == 200,
              f"{path} failed")
    poll(lambda: len(_lines(log)) >= 5, 5, what="five access-log lines")
    with open(log, "rb") as f:
        raw = f.read()
    agents = {r["path"]: r["user_agent"] for r in _lines(log)}
    check(agents.get("/app/utf8") == utf8 and utf8.encode() in raw,
          f"a UTF-8 user agent logged as {agents.get('/app/utf8')!r}")
    check(agents.get("/app/latin1") == "caf\u00e9" and b"caf\\u00e9" in raw,
          f"a user agent that is not UTF-8 logged as {agents.get('/app/latin1')!r}")
    # Each worker writes its own lines: find them by path, not by position.
    by_path = {r["path"]: r for r in _lines(log)}
    ok, nr, up503 = by_path.get("/app/x?q=1"), by_path.get("/nowhere"), by_path.get("/status/503")
    check(ok and nr and up503, f"a line is missing: {sorted(by_path)}")
    for rec in (ok, nr, up503):
        for field in ("time", "client", "method", "authority", "path", "protocol", "route", "status",
                      "bytes_in", "bytes_out", "duration_ms", "upstream", "upstream_cluster", "attempts",
                      "flags", "request_id", "user_agent", "x_forwarded_for", "sni"):
            check(field in rec, f"access-log line lacks {field}: {rec}")
    check(ok["user_agent"] == "itest/1" and ok["x_forwarded_for"] == "10.9.8.7,127.0.0.1" and
          ok["protocol"] == "HTTP/1.1" and ok["upstream_cluster"] == f"outbound|80||{SVC}" and
          re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                       ok["request_id"]), f"bad line {ok}")
    check(ok["status"] == 200 and ok["path"] == "/app/x?q=1" and ok["method"] == "GET", f"bad line {ok}")
    check(ok["upstream"].endswith(f"127.0.0.2:{ports['a']}") and ok["flags"] == "-", f"bad line {ok}")
    check(ok["bytes_out"] > 0 and ok["bytes_in"] > 0 and ok["client"] == "127.0.0.1", f"bad line {ok}")
    check(nr["status"] == 404 and nr["flags"] == "NR" and nr["upstream"] == "-", f"bad 404 line {nr}")
    # A 503 from the upstream is passed on, not retried (Istio's default policy
    # since 1.24: the request reached the upstream).
    check(up503["status"] == 503 and up503["attempts"] == 1 and up503["flags"] == "-",
          f"bad upstream-503 line {up503}")
    # logrotate: move the file, then SIGUSR1 to the master; new lines go to a new file.
    os.rename(log, log + ".1")
    os.kill(env.gateway.pid, signal.SIGUSR1)
    poll(lambda: env.get("/app/after").status == 200 and
         any(r["path"] == "/app/after" for r in _lines(log)), 5, what="lines in the reopened access log")
    check(all(r["path"] != "/app/after" for r in _lines(log + ".1")), "rotated file still written to")


DOWN = "down.test.internal"
# Istio's default proxy format (conf/alog.c; Istio's EnvoyTextLogFormat), as a regex.
DEFAULT_TEXT = re.compile(r'^\[(\S+)\] "(\S+) (\S+) (\S+)" (\d+) (\S+) (\S+) (\S+) "([^"]*)" (\d+) (\d+) (\d+) '
                          r'(\S+) "([^"]*)" "([^"]*)" "([^"]*)" "([^"]*)" "([^"]*)" (\S+) (\S+) (\S+) (\S+) (\S+) '
                          r'(\S+)$')
DEFAULT_FIELDS = ("start", "method", "path", "protocol", "code", "flags", "details", "termination", "transport",
                  "bytes_in", "bytes_out", "duration", "service_time", "xff", "ua", "rid", "authority", "upstream",
                  "cluster", "upstream_local", "local", "client", "sni", "route")


def _default_fields(line):
    m = DEFAULT_TEXT.match(line)
    check(m, f"access-log line not in the default text format: {line!r}")
    return dict(zip(DEFAULT_FIELDS, m.groups()))


def _two_services(env, extra, up_name="a"):
    """/app (route "app") to an upstream, /down to an endpoint that refuses
    connections; returns (config text, gateway port, upstream port, refused port)."""
    ports = env.upstream([f"127.0.0.2:0={up_name}"], name=up_name)
    gw_port, refused = free_port(), free_port("127.0.0.5")
    routes = (f"  - name: app\n    match: [{{uri: {{prefix: /app}}}}]\n"
              f"    route: [{{destination: {{host: {SVC}}}}}]\n"
              f"  - match: [{{uri: {{prefix: /down}}}}]\n"
              f"    route: [{{destination: {{host: {DOWN}}}}}]\n")
    text = docs(appliance(env, extra=extra), gateway(gw_port), virtual_service("ops", ["*"], routes),
                service_entry("ops", SVC, [{"address": "127.0.0.2", "port": ports[up_name]}]),
                service_entry("down", DOWN, [{"address": "127.0.0.5", "port": refused}]))
    return text, gw_port, ports[up_name], refused


def worker_uids(env):
    """{pid: real uid} of the running workers (those gone meanwhile left out)."""
    out = {}
    for pid in env.workers():
        try:
            with open(f"/proc/{pid}/status") as f:
                out[pid] = next(int(l.split()[1]) for l in f if l.startswith("Uid:"))
        except (OSError, StopIteration):
            pass
    return out


@_test
def access_log_istio_operators(env):
    """More of the operators of Istio's default access-log format: Envoy's
    response code details (via_upstream, no route, a failed connect, a
    redirect), the address and port the client reached, UPSTREAM_CLUSTER_RAW,
    fields of the response the client got (%RESP()%: isthmus's own Server and
    service time among them, an alternative, a length), a request field
    outside the usual list (%REQ(TRACEPARENT)%), the upstream transport
    failure reason (a refused connect, in the details too) and the connection
    termination details (none: no network filter ends connections); Istio's
    whole default format loads."""
    log = env.path("access.log")
    fmt = ("%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_CODE_DETAILS% %DOWNSTREAM_LOCAL_ADDRESS% "
           "%DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT% %DOWNSTREAM_LOCAL_PORT% %UPSTREAM_CLUSTER_RAW% "
           "%RESP(SERVER)% %RESP(LOCATION?CONTENT-TYPE):10% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% "
           "%REQ(TRACEPARENT)% %UPSTREAM_TRANSPORT_FAILURE_REASON% %CONNECTION_TERMINATION_DETAILS% "
           "%RESP(:STATUS)% %START_TIME(%s.%3f)%")
    text, gw_port, _, _ = _two_services(env, f"  accessLog: {{path: {log}, format: text, textFormat: \"{fmt}\"}}\n")
    text = text.replace("  - match: [{uri: {prefix: /down}}]",
                        "  - match: [{uri: {prefix: /moved}}]\n    redirect: {uri: /app}\n"
                        "  - match: [{uri: {prefix: /down}}]", 1)
    env.start_gateway(env.write("isthmus.yaml", text), gw_port)
    for path, status in (("/app/x", 200), ("/down/y", 503), ("/nowhere", 404), ("/moved", 301)):
        check(env.get(path, headers={"traceparent": "00-t-01"} if path == "/app/x" else None).status == status,
              f"GET {path}: want {status}")
    poll(lambda: len(file_lines(log)) >= 4, 5, what="four access-log lines")
    lines = {l.split(" ", 1)[0]: l.split(" ") for l in file_lines(log)}
    local = f"127.0.0.1:{gw_port} 127.0.0.1 {gw_port}"
    # The service time is the upstream's answers' only: a number, then checked apart.
    svc = lines.get("/app/x", ["", "", "", "", "", ""])[-6]
    check(svc.isdigit() and int(svc) < 60000, f"the service time of /app/x: {lines}")
    lines["/app/x"][-6] = "N"
    # %START_TIME(FORMAT)%: the epoch's seconds and milliseconds, now.
    for f in lines.values():
        check(re.fullmatch(r"\d+\.\d{3}", f[-1]) and abs(float(f[-1]) - time.time()) < 60,
              f"%START_TIME(%s.%3f)% {f[-1]!r} is not now")
        f.pop()
    refused = "delayed_connect_error:_Connection_refused"
    want = {"/app/x": f"/app/x 200 via_upstream {local} outbound|80||{SVC} isthmus text/plain N 00-t-01 - - 200",
            "/down/y": f"/down/y 503 upstream_reset_before_response_started{{connection_failure,{refused}}} {local} "
                       f"outbound|80||{DOWN} isthmus text/plain - - {refused} - 503",
            "/nowhere": f"/nowhere 404 route_not_found {local} - isthmus text/plain - - - - 404",
            "/moved": f"/moved 301 direct_response {local} - isthmus http://tes - - - - 301"}
    got = {p: " ".join(f) for p, f in lines.items()}
    check(got == want, f"lines {got}, want {want}")
    # Istio's own default (pilot/pkg/model/telemetry_logging.go, EnvoyTextLogFormat).
    istio = ('[%START_TIME%] \\"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\\" %RESPONSE_CODE% '
             '%RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% '
             '\\"%UPSTREAM_TRANSPORT_FAILURE_REASON%\\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% '
             '%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \\"%REQ(X-FORWARDED-FOR)%\\" \\"%REQ(USER-AGENT)%\\" '
             '\\"%REQ(X-REQUEST-ID)%\\" \\"%REQ(:AUTHORITY)%\\" \\"%UPSTREAM_HOST%\\" %UPSTREAM_CLUSTER_RAW% '
             '%UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% '
             '%REQUESTED_SERVER_NAME% %ROUTE_NAME%\\n')
    rc, out = env.check_config(env.write("istio.yaml", text.replace(fmt, istio)))
    check(rc == 0, f"Istio's default access-log format: rc {rc}, {out}")


@_test
def access_log_req_after_route_edits(env):
    """%REQ()% shows a request field as the route's header edits left it, as
    Envoy's does (the route changes the request's own fields): a field set
    shows the route's value, one removed shows none, one added to keeps the
    client's first value (and shows the route's when the client sent none);
    the others, and requests of routes without edits, show the client's."""
    log = env.path("access.log")
    fmt = "%REQ(:PATH)% %REQ(USER-AGENT)% %REQ(X-TEAM)% %REQ(X-EXTRA)% %REQ(X-NEW)% %REQ(REFERER)% %REQ(X-KEEP)%"
    text, gw_port, _, _ = _two_services(env, f"  accessLog: {{path: {log}, format: text, textFormat: \"{fmt}\"}}\n")
    text = text.replace("    route: [{destination: {host: " + SVC + "}}]\n",
                        "    headers: {request: {set: {user-agent: edited-agent, x-team: payments},\n"
                        "      add: {x-extra: route-extra, x-new: route-new}, remove: [referer]}}\n"
                        "    route: [{destination: {host: " + SVC + "}}]\n"
                        "  - match: [{uri: {prefix: /plain}}]\n"
                        "    route: [{destination: {host: " + SVC + "}}]\n", 1)
    env.start_gateway(env.write("isthmus.yaml", text), gw_port)
    sent = {"user-agent": "client-agent", "x-team": "client-team", "x-extra": "client-extra",
            "referer": "http://from.example/", "x-keep": "kept"}
    for path in ("/app/x", "/plain/y"):
        check(env.get(path, headers=sent).status == 200, f"GET {path}")
    poll(lambda: len(file_lines(log)) >= 2, 5, what="two access-log lines")
    got = {l.split(" ", 1)[0]: l for l in file_lines(log)}
    want = {"/app/x": "/app/x edited-agent payments client-extra route-new - kept",
            "/plain/y": "/plain/y client-agent client-team client-extra - http://from.example/ kept"}
    check(got == want, f"lines {got}, want {want}")


@_test
def access_log_local_details(env):
    """Envoy's response code details of answers made here for reasons Envoy
    names the same: a request head not complete within timeouts.requestHeader
    (408 request_header_timeout), a body declared over
    limits.maxRequestBodyBytes (413 request_payload_too_large), and the
    requests the parser refuses, with the details of Envoy's HTTP/1.1 codec
    (http1.codec_error, http1.headers_too_large, http1.too_many_headers,
    http1.invalid_transfer_encoding) or its path normalisation
    (path_normalization_failed); a URI over maxUriBytes, a limit Envoy does
    not have, the detail of the header limit its request line counts toward
    there (http1.headers_too_large)."""
    log = env.path("access.log")
    fmt = "%RESPONSE_CODE% %RESPONSE_CODE_DETAILS%"
    text, gw_port, _, _ = _two_services(env, "  limits: {maxRequestBodyBytes: 100, maxRequestHeaders: 5, "
                                             "maxUriBytes: 64, maxRequestHeaderBytes: 1024}\n"
                                             f"  accessLog: {{path: {log}, format: text, textFormat: \"{fmt}\"}}\n")
    env.start_gateway(env.write("isthmus.yaml", text.replace("requestHeader: 2s", "requestHeader: 1s")), gw_port)
    with Conn("127.0.0.1", gw_port) as c:
        c.send(b"POST /app/x HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n")
        check(c.read_response().status == 413, "no 413 for a body over the limit")
    with Conn("127.0.0.1", gw_port) as c:
        c.send(b"GET /app/x HTTP/1.1\r\nHost: a\r\n")  # the head never ends
        check(c.read_response().status == 408, "no 408 for a head past the timeout")
    refused = [(b"GET /app/x HTTP/1.1\r\nHost: a\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(6)) + b"\r\n",
                431, "431 http1.too_many_headers"),
               (b"GET /app/x HTTP/1.1\r\nHost: a\r\nX-Pad: " + b"p" * 1100 + b"\r\n\r\n",
                431, "431 http1.headers_too_large"),
               (b"GET /app/" + b"u" * 80 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414, "414 http1.headers_too_large"),
               (b"GET /app/x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n",
                501, "501 http1.invalid_transfer_encoding"),
               (b"GET /app/x HTTP/2.0\r\nHost: a\r\n\r\n", 505, "505 http1.codec_error"),
               (b"GET /app/x HTTP/1.1\r\nHost: a\r\nBad Name: x\r\n\r\n", 400, "400 http1.codec_error"),
               (b"GET /app/%zz HTTP/1.1\r\nHost: a\r\n\r\n", 400, "400 path_normalization_failed")]
    for raw, status, _ in refused:
        with Conn("127.0.0.1", gw_port) as c:
            c.send(raw)
            got = c.read_response().status
            check(got == status, f"{raw[:40]!r}...: {got}, want {status}")
    want = sorted(["408 request_header_timeout", "413 request_payload_too_large"] + [l for _, _, l in refused])
    poll(lambda: len(file_lines(log)) >= len(want), 5, what=f"{len(want)} access-log lines")
    check(sorted(file_lines(log)) == want, f"lines {sorted(file_lines(log))}, want {want}")


@_test
def request_timeout_line_starts_with_the_head(env):
    """A 408 (the head not complete within timeouts.requestHeader) is logged
    as Envoy logs its stream: starting with the head's first bytes, its
    duration the wait (it started at the timeout, duration 0, hiding a slow
    client)."""
    log = env.path("access.log")
    fmt = "%RESPONSE_CODE% %DURATION% %START_TIME(%s.%3f)%"
    text, gw_port, _, _ = _two_services(env, f"  accessLog: {{path: {log}, format: text, textFormat: \"{fmt}\"}}\n")
    env.start_gateway(env.write("isthmus.yaml", text.replace("requestHeader: 2s", "requestHeader: 1s")), gw_port)
    with Conn("127.0.0.1", gw_port) as c:
        sent = time.time()
        c.send(b"GET /app/x HTTP/1.1\r\nHost: a\r\n")  # the head never ends
        check(c.read_response().status == 408, "no 408 for a head past the timeout")
    poll(lambda: len(file_lines(log)) >= 1, 5, what="the 408's line")
    code, duration, start = file_lines(log)[0].split()
    check(code == "408" and 900 <= int(duration) <= 10000, f"the 408's line {file_lines(log)[0]!r}: want ~1000 ms")
    check(abs(float(start) - sent) < 0.5, f"the 408's line starts at {start}, the head at {sent:.3f}")


def _metric_labelled(port, name, labels):
    """The value of metric name{labels} on the admin listener at 127.0.0.1:port; 0 when absent."""
    import urllib.request

    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in body.splitlines():
        if line.startswith(f"{name}{{{labels}}} "):
            return int(float(line.split()[-1]))
    return 0


@_test
def access_log_retry_buffer_details(env):
    """A request whose body outgrows what a retry keeps (64 KiB) during the
    back-off of its route's retry is answered 507, as Envoy's router
    answers it, and logged with Envoy's detail
    request_payload_exceeded_retry_buffer_limit: the endpoint (the test's
    own socket) takes the head and 60 KiB of the body, then resets the
    connection (retryOn reset: a retry waits its back-off, up to 30 s); the
    client's next 40 KiB come while it waits."""
    import socket
    import struct

    log, admin = env.path("access.log"), free_port()
    fmt = "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_CODE_DETAILS%"
    up = socket.socket()
    up.bind(("127.0.0.3", 0))
    up.listen(4)
    up.settimeout(10)
    host = "buffered.test.internal"
    text, gw_port, _, _ = _two_services(env, f"  admin: {{address: 127.0.0.1:{admin}}}\n"
                                             f"  accessLog: {{path: {log}, format: text, textFormat: \"{fmt}\"}}\n")
    text = text.replace("  - name: app\n",
                        "  - match: [{uri: {prefix: /buffered}}]\n"
                        "    retries: {attempts: 2, retryOn: reset, backoff: 30s}\n"
                        f"    route: [{{destination: {{host: {host}}}}}]\n"
                        "  - name: app\n", 1)
    text = docs(text, service_entry("buffered", host, [{"address": "127.0.0.3", "port": up.getsockname()[1]}]))
    env.start_gateway(env.write("isthmus.yaml", text), gw_port)
    first, rest = 60 * 1024, 40 * 1024
    with Conn("127.0.0.1", gw_port) as c:
        c.send(b"POST /buffered/x HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % (first + rest) +
               b"b" * first)
        conn, _ = up.accept()
        conn.settimeout(10)
        got = b""
        deadline = time.monotonic() + 10
        while b"\r\n\r\n" not in got or len(got) - got.index(b"\r\n\r\n") - 4 < first:
            check(time.monotonic() < deadline, f"the endpoint got {len(got)} bytes of the request")
            got += conn.recv(65536)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        conn.close()  # a reset: the try failed, the retry waits its back-off
        poll(lambda: _metric_labelled(admin, "isthmus_cluster_retries_total",
                                      f'cluster="outbound|80||{host}"') >= 1, 5, what="the retry's back-off")
        c.send(b"b" * rest)
        status = c.read_response().status
        check(status == 507, f"a body past the retry buffer during the back-off: {status}, want 507")
    up.close()
    want = ["/buffered/x 507 request_payload_exceeded_retry_buffer_limit"]
    poll(lambda: len(file_lines(log)) >= len(want), 5, what=f"{len(want)} access-log lines")
    check(file_lines(log) == want, f"lines {file_lines(log)}, want {want}")


@_test
def access_log_addresses_of_a_reset(env):
    """A client that resets its connection mid-response still has the
    connection's addresses in its line, as Envoy records them at the accept:
    %DOWNSTREAM_LOCAL_ADDRESS% and %DOWNSTREAM_DIRECT_REMOTE_ADDRESS% were "-"
    (asked of the socket once it was reset), and a Telemetry filter on
    destination.port dropped exactly such lines."""
    ports = env.upstream(["127.0.0.2:0=a"], name="a")
    gw_port = free_port()
    log = env.path("access.log")
    fmt = ("%RESPONSE_FLAGS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_PORT% "
           "%DOWNSTREAM_DIRECT_REMOTE_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQ(:PATH)%\\n")
    tel = ("apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: mesh-default, "
           "namespace: istio-system}\nspec:\n  accessLogging:\n  - providers: [{name: envoy}]\n"
           f"    filter: {{expression: \"destination.port == {gw_port}\"}}\n")
    conf = env.write("isthmus.yaml", docs(
        appliance(env, extra=f"  accessLog: {{path: {log}, format: text, textFormat: \"{fmt}\"}}\n"),
        gateway(gw_port),
        virtual_service("ops", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n"),
        service_entry("ops", SVC, [{"address": "127.0.0.2", "port": ports["a"]}]), tel))
    env.start_gateway(conf, gw_port)
    check(env.get("/status/200").status == 200, "a plain request failed")
    c = socket.create_connection(("127.0.0.1", gw_port), timeout=5)
    cport = c.getsockname()[1]
    c.sendall(b"GET /delay/1500 HTTP/1.1\r\nHost: x\r\n\r\n")
    poll(lambda: json.loads(ctl_cmd(env.path("ctl.sock"), "show info json"))["requests"] >= 2, 5,
         what="the request to be read")
    c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    c.close()
    poll(lambda: any("/delay/1500" in l for l in file_lines(log)), 10, what="the reset request's line")
    line = next(l for l in file_lines(log) if "/delay/1500" in l)
    want = f"DC 127.0.0.1:{gw_port} {gw_port} 127.0.0.1:{cport} 127.0.0.1:{cport} /delay/1500"
    check(line == want, f"the reset request's line {line!r}, want {want!r}")


@_test
def close_delimited_body_reset_is_cut(env):
    """A body that its upstream's close delimits (no length, not chunked) and
    that ends with a reset, not a FIN, is cut short: the HTTP/1.1 client's
    connection closes without the last chunk, and the line says UC. It was
    passed on as whole (the last chunk sent, no flag), as nginx does not (a
    reset is not the close that ends such a body, RFC 9112 8)."""
    release = threading.Event()
    ls = socket.socket()
    ls.bind(("127.0.0.2", 0))
    ls.listen(4)

    def serve():
        try:
            c, _ = ls.accept()
        except OSError:
            return
        with c:
            c.settimeout(10)
            try:
                c.recv(4096)
                c.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\n" + b"A" * 1000)
                release.wait(10)
                c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
    threading.Thread(target=serve, daemon=True).start()
    try:
        gw_port = free_port()
        log = env.path("access.log")
        conf = env.write("isthmus.yaml", docs(
            appliance(env, extra=f"  accessLog: {{path: {log}, format: text, textFormat: "
                                 "\"%RESPONSE_CODE% %RESPONSE_FLAGS% %REQ(:PATH)%\\n\"}\n"),
            gateway(gw_port),
            virtual_service("ops", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n"),
            service_entry("ops", SVC, [{"address": "127.0.0.2", "port": ls.getsockname()[1]}])))
        env.start_gateway(conf, gw_port)
        c = socket.create_connection(("127.0.0.1", gw_port), timeout=10)
        c.sendall(b"GET /cut HTTP/1.1\r\nHost: x\r\n\r\n")
        got = b""
        deadline = time.monotonic() + 10
        while got.count(b"A") < 1000 and time.monotonic() < deadline:
            d = c.recv(65536)
            if not d:
                break
            got += d
        check(got.startswith(b"HTTP/1.1 200") and got.count(b"A") == 1000, f"before the reset: {got[:200]!r}")
        release.set()
        c.settimeout(10)
        while not got.endswith(b"\r\n0\r\n\r\n"):  # the last chunk, or the close
            try:
                d = c.recv(65536)
            except ConnectionResetError:
                break
            if not d:
                break
            got += d
        c.close()
        check(not got.endswith(b"\r\n0\r\n\r\n"), f"the cut body ended with the last chunk: {got[-40:]!r}")
        poll(lambda: any("/cut" in l for l in file_lines(log)), 10, what="the cut request's line")
        line = next(l for l in file_lines(log) if "/cut" in l)
        check(line == "200 UC /cut", f"the cut request's line {line!r}")
    finally:
        release.set()
        ls.close()


def _labelled(port, name):
    """{labels text: value} of metric name on the admin listener at port."""
    import urllib.request
    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for line in body.splitlines():
        if line.startswith(name + "{"):
            labels, value = line[len(name):].rsplit(" ", 1)
            out[labels] = float(value)
    return out


@_test
def cut_responses_counted(env):
    """A response cut short after its head went is counted by its status in
    the listener's, route's and cluster's responses and in the duration
    histogram, as one that ends whole (it was in the global count only); one
    that the client takes no byte of for timeouts.idle is logged SI (Envoy's
    stream idle timeout), not DC (the client's close)."""
    ports = env.upstream(["127.0.0.2:0=a"], name="a")
    gw_port, admin = free_port(), free_port()
    log = env.path("access.log")
    conf = env.write("isthmus.yaml", docs(
        appliance(env, workers=1, timeouts={"idle": "1s"},
                  extra=f"  admin: {{address: 127.0.0.1:{admin}}}\n"
                        f"  accessLog: {{path: {log}, format: text, textFormat: "
                        "\"%RESPONSE_CODE% %RESPONSE_FLAGS% %REQ(:PATH)%\\n\"}\n"),
        gateway(gw_port),
        virtual_service("ops", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n"),
        service_entry("ops", SVC, [{"address": "127.0.0.2", "port": ports["a"]}])))
    env.start_gateway(conf, gw_port)
    check(env.get("/status/200").status == 200, "a plain request failed")

    def twos():
        got = {}
        for name in ("isthmus_listener_responses_total", "isthmus_route_responses_total",
                     "isthmus_cluster_responses_total"):
            got[name] = sum(v for k, v in _labelled(admin, name).items() if 'code_class="2xx"' in k)
        got["histogram"] = metric(admin, "isthmus_request_duration_seconds_count")
        return got
    before = twos()
    check(all(v == 1 for v in before.values()), f"after one request: {before}")
    raw = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort".hex()
    with Conn("127.0.0.1", gw_port, timeout=10) as c:
        c.send(f"GET /raw HTTP/1.1\r\nHost: x\r\nx-respond: {raw}\r\n\r\n".encode())
        check(c.closed_by_peer(5) and c.buf.startswith(b"HTTP/1.1 200"), f"the cut response: {c.buf!r}")
    # A client that asks for 50 MB and reads nothing.
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.settimeout(10)
    s.connect(("127.0.0.1", gw_port))
    try:
        s.sendall(b"GET /bytes/50000000 HTTP/1.1\r\nHost: x\r\n\r\n")
        poll(lambda: len([l for l in file_lines(log) if "/bytes/" in l]) == 1, 15,
             what="the stalled client's line")
    finally:
        s.close()
    lines = file_lines(log)
    check("200 UC /raw" in lines and "200 SI /bytes/50000000" in lines, f"the lines: {lines}")
    after = twos()
    check(all(after[k] == before[k] + 2 for k in after), f"counted {before} -> {after}, want 2 more each")


@_test
def access_log_istio_json(env):
    """format: istio-json: the line an Istio gateway writes with
    meshConfig.accessLogEncoding JSON: Istio's 24 keys, typed as Envoy's
    json_format (counts and codes numbers, absent values null, no flags "-"),
    for a proxied request, a refused connect (503 UF,URX) and a 404 (NR); then
    a jsonFormat of the operator's own, applied by a reload."""
    log = env.path("access.log")
    text, gw_port, up, refused = _two_services(env, f"  accessLog: {{path: {log}, format: istio-json}}\n")
    conf = env.write("isthmus.yaml", text)
    env.start_gateway(conf, gw_port)
    rc, out, err = curl(["-A", "itest-agent/1.0", "-o", "/dev/null", "-w", "%{http_code} %{size_download}",
                         f"http://127.0.0.1:{gw_port}/app/x?q=1"])
    check(rc == 0 and out.split()[0] == "200", f"curl: rc {rc} {out} {err}")
    size_body = int(out.split()[1])
    check(env.get("/down/y").status == 503, "no 503 for a refused endpoint")
    check(env.get("/nowhere").status == 404, "no 404 for an unrouted path")
    poll(lambda: len(file_lines(log)) >= 3, 5, what="three access-log lines")
    lines = [json.loads(l) for l in file_lines(log)]
    keys = ["authority", "bytes_received", "bytes_sent", "connection_termination_details",
            "downstream_local_address", "downstream_remote_address", "duration", "method", "path", "protocol",
            "request_id", "requested_server_name", "response_code", "response_code_details", "response_flags",
            "route_name", "start_time", "upstream_cluster", "upstream_host", "upstream_local_address",
            "upstream_service_time", "upstream_transport_failure_reason", "user_agent", "x_forwarded_for"]
    for l in lines:
        check(list(l) == keys, f"the keys of Istio's JSON default, in Envoy's order: {list(l)}")
    by_path = {l["path"]: l for l in lines}
    ok, down, nr = by_path.get("/app/x?q=1"), by_path.get("/down/y"), by_path.get("/nowhere")
    check(ok and down and nr, f"a line is missing: {lines}")
    want = {"authority": f"127.0.0.1:{gw_port}", "bytes_received": 0, "bytes_sent": size_body,
            "connection_termination_details": None,
            "downstream_local_address": f"127.0.0.1:{gw_port}", "method": "GET", "protocol": "HTTP/1.1",
            "requested_server_name": None, "response_code": 200, "response_code_details": "via_upstream",
            "response_flags": "-", "route_name": "app", "upstream_cluster": f"outbound|80||{SVC}",
            "upstream_host": f"127.0.0.2:{up}", "upstream_transport_failure_reason": None,
            "user_agent": "itest-agent/1.0", "x_forwarded_for": "127.0.0.1"}
    check({k: ok[k] for k in want} == want, f"200 line {ok}, want {want}")
    check(size_body > 0 and type(ok["duration"]) is int and
          re.fullmatch(r"\d+", ok["upstream_service_time"]) and
          re.fullmatch(r"127\.0\.0\.\d+:\d+", ok["upstream_local_address"]) and
          re.fullmatch(r"127\.0\.0\.1:\d+", ok["downstream_remote_address"]) and
          re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", ok["start_time"]) and
          re.fullmatch(r"[0-9a-f-]{36}", ok["request_id"]), f"200 line {ok}")
    refused_why = "delayed_connect_error:_Connection_refused"
    check((down["response_code"], down["response_flags"], down["upstream_host"], down["upstream_service_time"],
           down["upstream_local_address"], down["upstream_transport_failure_reason"]) ==
          (503, "UF,URX", f"127.0.0.5:{refused}", None, None, refused_why), f"503 line {down}")
    check((nr["response_code"], nr["response_flags"], nr["response_code_details"], nr["upstream_host"],
           nr["upstream_cluster"], nr["route_name"]) == (404, "NR", "route_not_found", None, None, None),
          f"404 line {nr}")
    # The operator's own dictionary, by a reload: keys in file order, one value of several parts.
    env.write("isthmus.yaml", text.replace(
        "format: istio-json}",
        "format: istio-json, jsonFormat: {code: '%RESPONSE_CODE%', req: '%REQ(:METHOD)% %REQ(:PATH)%',"
        " flags: '%RESPONSE_FLAGS%', sni: '%REQUESTED_SERVER_NAME%'}}"))
    check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), "the reload with jsonFormat refused")
    poll(lambda: env.get("/app/reloaded").status == 200 and
         any(json.loads(l).get("req") == "GET /app/reloaded" for l in file_lines(log)), 10,
         what="a line in the new format")
    new = [json.loads(l) for l in file_lines(log) if '"req"' in l][-1]
    check(new == {"code": 200, "req": "GET /app/reloaded", "flags": "-", "sni": None}, f"jsonFormat line {new}")
    # Values that escape long (a byte 0xff is \u00ff) past 16 KiB in all: the
    # line stays JSON, every key there (it was cut mid-escape, unclosed).
    hs = {f"h{i}": f"%REQ(X-H{i})%" for i in range(8)}
    hs["h8"] = "%REQ(USER-AGENT)%"  # eight named fields at most, and a usual one
    env.write("isthmus.yaml", text.replace(
        "format: istio-json}", "format: istio-json, jsonFormat: " + json.dumps(hs)[:-1] + ", code: '%RESPONSE_CODE%'}}"))
    check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), "the reload with nine fields refused")
    fields = [(f"X-H{i}", "\xff" * 1000) for i in range(8)] + [("User-Agent", "\xff" * 1000)]
    poll(lambda: env.get("/app/long", headers=fields).status == 200 and
         any('"h8"' in l for l in file_lines(log)), 10, what="a line in the nine-field format")
    raw = [l for l in file_lines(log) if '"h8"' in l][-1]
    try:
        long = json.loads(raw)
    except ValueError as e:
        raise TestFailure(f"a long line is not JSON ({e}): {len(raw)} bytes, ends {raw[-40:]!r}")
    check(long.get("code") == 200 and len(raw) > 16384 and all(long.get(f"h{i}") for i in range(9)),
          f"the long line: {len(raw)} bytes, keys {sorted(long)}")


@_test
def access_log_istio_json_nested(env):
    """format: istio-json with a jsonFormat of nested objects and a list, as
    Envoy's json_format takes them: each value typed as a top-level one
    (numbers, strings, null), YAML's own numbers, booleans and null written
    as JSON, a quoted number a string."""
    log = env.path("access.log")
    fmt = ("{code: '%RESPONSE_CODE%', request: {method: '%REQ(:METHOD)%', path: '%REQ(:PATH)%', "
           "headers: {ua: '%REQ(USER-AGENT)%', ref: '%REQ(REFERER)%'}}, "
           "upstream: {cluster: '%UPSTREAM_CLUSTER%', tries: ['%UPSTREAM_REQUEST_ATTEMPT_COUNT%', 'of %UPSTREAM_HOST%']}, "
           "schema: 2, ratio: 0.50, big: 1e16, sampled: true, note: ~, id: '7', empty: {}, none: []}")
    text, gw_port, up, _ = _two_services(env, f"  accessLog: {{path: {log}, format: istio-json, jsonFormat: {fmt}}}\n")
    env.start_gateway(env.write("isthmus.yaml", text), gw_port)
    check(env.get("/app/nested", headers={"User-Agent": "itest/2"}).status == 200, "GET /app/nested")
    poll(lambda: len(file_lines(log)) >= 1, 5, what="an access-log line")
    line = file_lines(log)[0]
    got = json.loads(line)
    want = {"code": 200, "request": {"method": "GET", "path": "/app/nested", "headers": {"ua": "itest/2", "ref": None}},
            "upstream": {"cluster": f"outbound|80||{SVC}", "tries": [1, f"of 127.0.0.2:{up}"]},
            "schema": 2, "ratio": 0.5, "big": 1e16, "sampled": True, "note": None, "id": "7", "empty": {}, "none": []}
    check(got == want, f"line {got}, want {want}")
    # Envoy's forms of the numbers, and the keys in the order written.
    check('"schema":2,"ratio":0.5,"big":1e+16,' in line and list(got) == list(want), f"line {line}")


@_test
def access_log_connection_ids(env):
    """%CONNECTION_ID% is the client connection's (the requests of one
    keep-alive connection share it, another connection has its own, a number
    in JSON), %UPSTREAM_CONNECTION_ID% the upstream connection's that answered
    (from the same counter; null for an answer made here) and %STREAM_ID% the
    request's id, as Envoy gives them."""
    log = env.path("access.log")
    fmt = ("{conn: '%CONNECTION_ID%', up: '%UPSTREAM_CONNECTION_ID%', sid: '%STREAM_ID%', "
           "rid: '%REQ(X-REQUEST-ID)%', path: '%REQ(:PATH)%'}")
    text, gw_port, _, _ = _two_services(env, f"  accessLog: {{path: {log}, format: istio-json, jsonFormat: {fmt}}}\n")
    env.start_gateway(env.write("isthmus.yaml", text), gw_port)
    with Conn("127.0.0.1", gw_port) as c:
        for p in ("/app/1", "/app/2"):
            check(c.request("GET", p, "a").status == 200, f"{p} not 200")
    with Conn("127.0.0.1", gw_port) as c:
        check(c.request("GET", "/app/3", "a").status == 200, "/app/3 not 200")
        check(c.request("GET", "/nowhere", "a").status == 404, "/nowhere not 404")
    poll(lambda: len(file_lines(log)) >= 4, 5, what="four access-log lines")
    by = {l["path"]: l for l in (json.loads(x) for x in file_lines(log))}
    one, two, three = by["/app/1"], by["/app/2"], by["/app/3"]
    check(all(type(l["up"]) is int and l["up"] not in (one["conn"], three["conn"]) for l in (one, two, three)) and
          by["/nowhere"]["up"] is None and by["/nowhere"]["conn"] == three["conn"], f"upstream connection ids {by}")
    check(all(type(l["conn"]) is int and l["conn"] > 0 for l in (one, two, three)), f"ids not numbers: {by}")
    check(one["conn"] == two["conn"] != three["conn"], f"connection ids {one['conn']} {two['conn']} {three['conn']}")
    check(all(l["sid"] == l["rid"] and re.fullmatch(r"[0-9a-f-]{36}", l["sid"]) for l in (one, two, three)) and
          len({one["sid"], two["sid"], three["sid"]}) == 3, f"stream ids {by}")


@_test
def access_log_environment(env):
    """%ENVIRONMENT(NAME)% shows a variable of isthmus's environment (as the
    master had it when it read the file), cut at :N; one it lacks is absent."""
    log = env.path("access.log")
    fmt = "{path: '%ENVIRONMENT(PATH)%', cut: '%ENVIRONMENT(PATH):4%', none: '%ENVIRONMENT(ISM_NO_SUCH_VARIABLE)%'}"
    text, gw_port, _, _ = _two_services(env, f"  accessLog: {{path: {log}, format: istio-json, jsonFormat: {fmt}}}\n")
    check("ISM_NO_SUCH_VARIABLE" not in os.environ and os.environ.get("PATH"), "the test's environment")
    env.start_gateway(env.write("isthmus.yaml", text), gw_port)
    check(env.get("/app/e").status == 200, "/app/e not 200")
    line = json.loads(poll(lambda: file_lines(log)[0] if file_lines(log) else None, 5, what="a line"))
    want = {"path": os.environ["PATH"], "cut": os.environ["PATH"][:4], "none": None}
    check(line == want, f"line {line}, want {want}")


@_test
def access_log_text(env):
    """format: text with Istio's default template: the fields of a proxied
    request (curl's own byte counts), of a connect failure (503 UF,URX after the
    retries), of a 404 (NR) and of a request that cannot be parsed (400 DPE)."""
    import datetime

    log = env.path("access.log")
    text, gw_port, up, refused = _two_services(env, f"  accessLog: {{path: {log}, format: text}}\n")
    env.start_gateway(env.write("isthmus.yaml", text), gw_port)
    rc, out, err = curl(["-A", "itest-agent/1.0", "-H", "X-Request-Id: rid-42", "-H", "X-Forwarded-For: 192.0.2.7",
                         "-o", "/dev/null", "-w", "%{http_code} %{size_request} %{size_header} %{size_download}",
                         f"http://127.0.0.1:{gw_port}/app/x?q=1"])
    code, size_req, size_head, size_body = (int(x) for x in out.split())
    check(rc == 0 and code == 200, f"curl: rc {rc} {out} {err}")
    check(env.get("/down/y").status == 503, "no 503 for a refused endpoint")
    check(env.get("/nowhere").status == 404, "no 404 for an unrouted path")
    with Conn("127.0.0.1", gw_port) as c:
        c.send(b"GET / HTTP/1.1\r\n\r\n")  # no Host: 400
        check(c.read_response().status == 400, "no 400 for a request without Host")
    poll(lambda: len(file_lines(log)) >= 4, 5, what="four access-log lines")
    # Each worker writes its own lines: the order in the file is not the order of the requests.
    by_path = {f["path"]: f for f in (_default_fields(l) for l in file_lines(log))}
    ok, down, nr, bad = (by_path.get(p, {}) for p in ("/app/x?q=1", "/down/y", "/nowhere", "-"))
    check(ok and down and nr and bad, f"a line is missing: {file_lines(log)}")

    start = datetime.datetime.strptime(ok["start"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=datetime.timezone.utc)
    age = abs((datetime.datetime.now(datetime.timezone.utc) - start).total_seconds())
    check(age < 60, f"START_TIME {ok['start']} is not now")
    want = {"method": "GET", "path": "/app/x?q=1", "protocol": "HTTP/1.1", "code": "200", "flags": "-",
            "details": "via_upstream", "termination": "-", "transport": "-",
            "bytes_in": "0", "bytes_out": str(size_body), "xff": "192.0.2.7,127.0.0.1",
            "ua": "itest-agent/1.0", "authority": f"127.0.0.1:{gw_port}",
            "upstream": f"127.0.0.2:{up}", "cluster": f"outbound|80||{SVC}", "local": f"127.0.0.1:{gw_port}",
            "route": "app"}
    check({k: ok[k] for k in want} == want, f"200 line {ok}, want {want}")
    check(re.fullmatch(r"127\.0\.0\.1:\d+", ok["client"]) and int(ok["duration"]) < 5000, f"200 line {ok}")
    check(ok["service_time"].isdigit() and int(ok["service_time"]) <= int(ok["duration"]) + 1000 and
          re.fullmatch(r"127\.0\.0\.\d+:\d+", ok["upstream_local"]), f"200 line {ok}")
    # The client's X-Request-Id was replaced (Envoy at the edge): the line has the one the upstream got.
    check(ok["rid"] != "rid-42" and re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}",
                                                 ok["rid"]), f"200 line's request id {ok['rid']}")
    # The endpoint refuses: Istio's default retry policy tries it three times, then 503 UF,
    # and URX: as often as the policy allows.
    check(down["code"] == "503" and down["flags"] == "UF,URX" and down["upstream"] == f"127.0.0.5:{refused}" and
          down["cluster"] == f"outbound|80||{DOWN}" and down["route"] == "default/ops#1", f"503 line {down}")
    refused_why = "delayed_connect_error:_Connection_refused"
    check((down["details"], down["transport"], down["service_time"], down["upstream_local"]) ==
          (f"upstream_reset_before_response_started{{connection_failure,{refused_why}}}", refused_why, "-", "-"),
          f"503 line {down}")
    check(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", down["rid"]) and
          down["xff"] == "127.0.0.1", f"the request id made by the proxy, the client address: {down}")
    check(nr["code"] == "404" and nr["flags"] == "NR" and nr["path"] == "/nowhere" and
          (nr["upstream"], nr["cluster"], nr["route"], nr["sni"]) == ("-", "-", "-", "-"), f"404 line {nr}")
    # Envoy makes a request id for every request it parsed, one it answers itself too.
    check(re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", nr["rid"]) and
          nr["rid"] not in (ok["rid"], down["rid"]), f"the 404 line's request id {nr['rid']}")
    check((bad["method"], bad["path"], bad["protocol"], bad["code"], bad["flags"], bad["ua"], bad["rid"]) ==
          ("-", "-", "-", "400", "DPE", "-", "-"), f"400 line {bad}")
    check((nr["details"], bad["details"]) == ("route_not_found", "missing_host_header"),
          f"the details of the 404 and 400: {nr} {bad}")


@_test
def access_log_reload(env):
    """A reload that changes the format applies to the next line, in the same
    workers; one that changes the destination starts new workers, which write
    to the new file."""
    from harness import ctl_cmd

    log, log2 = env.path("access.log"), env.path("access2.log")
    text, gw_port, _, _ = _two_services(env, f"  accessLog: {{path: {log}}}\n")
    conf = env.write("isthmus.yaml", text)
    env.start_gateway(conf, gw_port)
    pids = poll(lambda: len(env.workers()) == 2 and env.workers(), 5, what="the two workers")
    check(env.get("/app/1").status == 200, "request failed")
    poll(lambda: file_lines(log), 5, what="a JSON line")
    check(json.loads(file_lines(log)[0])["path"] == "/app/1", f"not a JSON line: {file_lines(log)}")
    env.write("isthmus.yaml", text.replace(f"path: {log}}}", f"path: {log}, format: text, "
                                           "textFormat: \"%REQ(:PATH)% %RESPONSE_CODE%\"}"))
    check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), "reload to format text refused")
    poll(lambda: env.get("/app/2").status == 200 and "/app/2 200" in file_lines(log), 5,
         what="a text line after the reload")
    check(env.workers() == pids, f"a format change replaced the workers: {pids} -> {env.workers()}")
    env.write("isthmus.yaml", text.replace(f"path: {log}}}", f"path: {log2}}}"))
    check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), "reload to another file refused")
    poll(lambda: env.get("/app/3").status == 200 and
         any(json.loads(l)["path"] == "/app/3" for l in file_lines(log2)), 5, what="lines in the new file")
    poll(lambda: not set(env.workers()) & set(pids), 10, what="the old workers to exit")


@_test
def reloads_replacing_workers_lose_no_connection(env):
    """A connection that comes while a reload replaces the workers is served
    at once: the kernel wakes one waiting accept per connection, and a wake
    given to a draining worker's accept was lost with it, leaving the
    connection in the listen queue until the next one came (1 reload in 30
    or so; on a quiet gateway, for ever). Each reload here starts new
    workers (the access log moves), and a request follows at once."""
    from harness import ctl_cmd

    log, log2 = env.path("access.log"), env.path("access2.log")
    text, gw_port, _, _ = _two_services(env, f"  accessLog: {{path: {log}}}\n")
    env.start_gateway(env.write("isthmus.yaml", text), gw_port)
    slow = []
    for i in range(60):
        dest = log2 if i % 2 == 0 else log
        env.write("isthmus.yaml", text.replace(f"path: {log}}}", f"path: {dest}}}"))
        check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), f"reload {i + 1} refused")
        t0 = time.monotonic()
        try:
            r = env.get(f"/app/{i}", timeout=5)
            check(r.status == 200, f"request after reload {i + 1}: {r.status}")
        except OSError as e:
            slow.append((i + 1, f"{e}"))
            continue
        if time.monotonic() - t0 > 2:
            slow.append((i + 1, f"{time.monotonic() - t0:.1f} s"))
    check(not slow, f"requests after reloads that replaced the workers waited: {slow}")


@_test
def draining_workers_exit_under_load(env):
    """Reloads that replace the workers under load, with access-log lines of
    10 kB (a buffer's write at almost every request): every draining worker
    writes its last lines and exits by itself. The write prepared in a
    worker's last loop turn was waited for without being submitted: the
    worker hung until the master killed it as hung 5 s later (about one run
    in two here), its lines lost."""
    log, log2 = env.path("access.log"), env.path("access2.log")
    fmt = f"  accessLog: {{path: {log}, format: text, textFormat: \"%REQ(:PATH)% %REQ(X-PAD)%\"}}\n"
    text, gw_port, _, _ = _two_services(env, fmt)
    env.start_gateway(env.write("isthmus.yaml", text), gw_port)
    sock = env.path("ctl.sock")
    wrk = subprocess.Popen(["wrk", "-t1", "-c16", "-d60s", "--timeout", "3s", "-H", "x-pad: " + "p" * 10000,
                            f"http://127.0.0.1:{gw_port}/app/x"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        poll(lambda: json.loads(ctl_cmd(sock, "show info json"))["requests"] > 100, 5,
             what="wrk traffic through the gateway")
        for i in range(40):
            dest = log2 if i % 2 == 0 else log
            env.write("isthmus.yaml", text.replace(f"path: {log},", f"path: {dest},"))
            check("published" in ctl_cmd(sock, "reload"), f"reload {i + 1} refused")
            time.sleep(0.1)  # pacing: load between the reloads
            check(wrk.poll() is None, "wrk ended early")
        wrk.send_signal(signal.SIGINT)
        out, _ = wrk.communicate(timeout=10)
    finally:
        wrk_reap(wrk)
    check_wrk_clean(out, 100, "during the reloads")
    poll(lambda: len(env.workers()) == 2, 10, what="every draining worker to exit")
    info = json.loads(ctl_cmd(sock, "show info json"))
    check(info["worker_hangs"] == 0 and "hung" not in env.gateway.log(),
          f"draining workers killed as hung: {info['worker_hangs']}")


@_test
def access_log_full_disk(env):
    """An access log whose writes fail (a full disk: /dev/full): proxying
    goes on, every lost line is counted in isthmus_access_log_dropped_total
    (it counted one per failed buffer of hundreds of lines), and the log says
    so once."""
    admin = free_port()
    extra = f"  admin: {{address: 127.0.0.1:{admin}}}\n  accessLog: {{path: /dev/full}}\n"
    text, gw_port, _, _ = _two_services(env, extra)
    env.start_gateway(env.write("isthmus.yaml", text.replace("workers: 2", "workers: 1")), gw_port)
    before = metric(admin, "isthmus_access_log_dropped_total")
    for i in range(40):
        check(env.get(f"/app/full{i}").status == 200, "a request failed with the access log on a full disk")
    poll(lambda: metric(admin, "isthmus_access_log_dropped_total") >= before + 40, 10,
         what="forty dropped lines counted")
    check(metric(admin, "isthmus_access_log_dropped_total") == before + 40,
          f"dropped lines counted: {metric(admin, 'isthmus_access_log_dropped_total') - before}, want 40")
    check(env.log_count("access log: /dev/full: No space left on device") == 1,
          "the failing writes were not logged once")


@_test
def access_log_syslog(env):
    """syslog over a unix datagram socket the test owns: one RFC 3164 message
    per line, with the facility, the tag and the worker's pid. Without the
    socket, proxying goes on and the lines are dropped and counted; once it is
    back, lines arrive again (and after SIGUSR1). A reload to UDP starts new
    workers that send there, with the host name."""
    import socket

    from harness import ctl_cmd

    sock_path, admin = env.path("syslog.sock"), free_port()
    fmt = ('%REQ(:METHOD)% %REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_REQUEST_ATTEMPT_COUNT% '
           '%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT% \\"%REQ(REFERER)%\\" 100%%')
    extra = (f"  admin: {{address: 127.0.0.1:{admin}}}\n  accessLog:\n"
             f"    syslog: {{address: {sock_path}, facility: local3, tag: edge}}\n"
             f"    format: text\n    textFormat: \"{fmt}\"\n")
    text, gw_port, _, _ = _two_services(env, extra)

    def bind():
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.bind(sock_path)
        s.settimeout(5)
        return s

    rx = bind()
    try:
        env.start_gateway(env.write("isthmus.yaml", text), gw_port)
        syslog_re = re.compile(r"^<158>[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d edge\[(\d+)\]: (.*)$")

        def next_line(s):
            try:
                msg = s.recv(65536).decode()
            except socket.timeout:
                raise TestFailure("no syslog message within 5 s")
            m = syslog_re.match(msg)
            check(m, f"not an RFC 3164 message with facility local3, severity info, tag edge: {msg!r}")
            check(int(m.group(1)) in env.workers(), f"pid {m.group(1)} is not a worker's: {env.workers()}")
            return m.group(2)

        check(env.get("/app/s", headers={"Referer": "http://r.example/"}).status == 200, "request failed")
        line = next_line(rx)
        check(line == 'GET /app/s 200 - 1 127.0.0.1 "http://r.example/" 100%', f"line {line!r}")
        check(env.get("/nowhere").status == 404, "no 404")
        line = next_line(rx)
        check(line == 'GET /nowhere 404 NR 0 127.0.0.1 "-" 100%', f"line {line!r}")

        # No receiver: proxying goes on, the lines are counted as dropped.
        rx.close()
        os.unlink(sock_path)
        before = metric(admin, "isthmus_access_log_dropped_total")
        for i in range(5):
            check(env.get(f"/app/gone{i}").status == 200, "a request failed without the syslog socket")
        poll(lambda: metric(admin, "isthmus_access_log_dropped_total") >= before + 5, 5,
             what="five dropped lines counted")
        check(env.gateway.alive() and env.log_count("access log: syslog") >= 1,
              "no warning about the syslog socket in the log")

        # The receiver is back: the next sends find it (no reconnection needed).
        rx = bind()
        check(env.get("/app/back").status == 200, "request failed")
        check(next_line(rx).startswith("GET /app/back 200"), "no line once the socket is back")
        os.kill(env.gateway.pid, signal.SIGUSR1)
        poll(lambda: env.get("/app/usr1").status == 200 and next_line(rx).startswith("GET /app/usr1 200"), 5,
             what="lines after SIGUSR1")
    finally:
        rx.close()

    # A new destination: UDP, with the host name after the time.
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    udp.settimeout(0.5)
    try:
        env.write("isthmus.yaml", text.replace(f"address: {sock_path}", f"address: 127.0.0.1:{udp.getsockname()[1]}"))
        check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), "reload to UDP refused")
        host = socket.gethostname()

        def udp_line():
            check(env.get("/app/udp").status == 200, "request failed")
            try:
                return udp.recv(65536).decode()
            except socket.timeout:
                return None

        msg = poll(udp_line, 10, what="a syslog message over UDP")
        check(re.match(rf"^<158>[A-Z][a-z]{{2}} [ \d]\d \d\d:\d\d:\d\d {re.escape(host)} edge\[\d+\]: "
                       r"GET /app/udp 200 - 1 127\.0\.0\.1 \"-\" 100%$", msg), f"UDP message {msg!r}")
    finally:
        udp.close()


def _fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


@_test
def isthmusctl_commands(env):
    import subprocess
    from collections import Counter

    ports = env.upstream(["127.0.0.2:0=a"], name="a")
    ports.update(env.upstream(["127.0.0.3:0=b"], name="b"))
    gw_port = free_port()
    dr = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ops}\n"
          f"spec:\n  host: {SVC}\n  trafficPolicy: {{loadBalancer: {{simple: ROUND_ROBIN}}}}\n")
    conf = env.write("isthmus.yaml", docs(
        appliance(env), gateway(gw_port),
        virtual_service("ops", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n"), dr,
        service_entry("ops", SVC, [{"address": "127.0.0.2", "port": ports["a"]},
                                   {"address": "127.0.0.3", "port": ports["b"]}])))
    env.start_gateway(conf, gw_port)
    ctl = os.path.join(env.build, "isthmusctl")

    def run(*args):
        p = subprocess.run([ctl, "-s", env.path("ctl.sock"), *args], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30)
        return p.returncode, p.stdout.decode()

    rc, out = run("show", "info")
    check(rc == 0 and "generation: 1" in out, f"show info: rc {rc} {out!r}")
    rc, out = run("show", "info", "json")
    info = json.loads(out)
    check(rc == 0 and info["generation"] == 1 and info["workers"] == 2, f"show info json: {out!r}")
    rc, out = run("show", "workers", "json")
    workers = json.loads(out)
    check(sorted(w["pid"] for w in workers) == env.workers(), f"show workers pids {workers} vs {env.workers()}")
    rc, out = run("show", "config", "json")
    cfg = json.loads(out)
    with open(conf, "rb") as f:
        want = _fnv1a64(f.read())
    check(cfg["file"] == conf and cfg["checksum"] == want, f"show config {cfg}, want checksum {want}")
    rc, out = run("show", "clusters", "json")
    cl = [c for c in json.loads(out) if c["name"].endswith(SVC)]
    check(len(cl) == 1 and cl[0]["endpoints"] == 2 and cl[0]["lb"] == "ROUND_ROBIN", f"show clusters {out!r}")
    rc, out = run("show", "endpoints", cl[0]["name"], "json")
    eps = json.loads(out)
    check(rc == 0 and len(eps) == 2 and all(e["admin"] == "ready" for e in eps), f"show endpoints {out!r}")
    key_a = f"{SVC}|127.0.0.2:{ports['a']}"

    def split(n):
        return Counter(env.get("/").header("x-upstream") for _ in range(n))

    # drain: no new requests to a; ready: back.
    rc, out = run("set", "endpoint", key_a, "state", "drain")
    check(rc == 0 and out.startswith("ok:"), f"set state drain: {rc} {out!r}")
    c = split(40)
    check(c == Counter({"b": 40}), f"with a drained, traffic went {dict(c)}")
    rc, _ = run("set", "endpoint", key_a, "state", "ready")
    poll(lambda: split(20)["a"] > 0, 5, what="traffic back to a after state ready")
    # weight 3 for a: round robin gives it three requests in four.
    rc, out = run("set", "endpoint", key_a, "weight", "3")
    check(rc == 0, f"set weight: {rc} {out!r}")
    c = split(400)
    check(280 <= c["a"] <= 320, f"weight 3:1 gave {dict(c)}")
    # Errors: exit status 1 and an error line.
    for args in (["frobnicate"], ["set", "endpoint", "nope", "state", "drain"],
                 ["set", "endpoint", key_a, "state", "sleepy"], ["show", "endpoints", "no-such-cluster"]):
        rc, out = run(*args)
        check(rc == 1 and out.startswith("error:"), f"{args}: rc {rc} {out!r}")
    env.write("isthmus.yaml", "kind: Nonsense\n")
    rc, out = run("reload")
    check(rc == 1 and "reload refused" in out, f"bad reload: rc {rc} {out!r}")
    rc, out = run("reload", "json")
    doc = json.loads(out)
    check(rc == 1 and doc["result"] == "refused" and doc["errors"] and
          all(e.startswith(conf + ":") for e in doc["errors"]), f"bad reload, json: rc {rc} {out!r}")
    # A refused file is not the running text: show config keeps the served one's checksum.
    rc, out = run("show", "config", "json")
    check(rc == 0 and json.loads(out)["checksum"] == want, f"show config after a refused reload: {out!r}, want {want}")
    rc, out = run("set", "endpoint", key_a, "weight", "0", "json")
    check(rc == 0 and json.loads(out)["result"] == "ok", f"set, json: rc {rc} {out!r}")
    rc, out = run("set", "endpoint", "nope", "weight", "1", "json")
    check(rc == 1 and json.loads(out)["result"] == "error", f"bad set, json: rc {rc} {out!r}")
    rc, out = run("show", "routes", "json")
    routes = json.loads(out)
    check(rc == 0 and routes[0]["port"] == gw_port and
          routes[0]["vhosts"][0]["routes"][0]["destinations"][0]["cluster"] == cl[0]["name"],
          f"show routes json: {out!r}")
    rc, out = run("show", "routes")
    check(rc == 0 and f"port {gw_port}" in out and cl[0]["name"] in out, f"show routes: {out!r}")
    rc, out = run("explain", "GET", "/x", "json")
    doc = json.loads(out)
    check(rc == 0 and any(l.startswith("route: ") for l in doc["lines"]), f"explain, json: {out!r}")
    rc, out = run("show", "events", "json")
    kinds = [(e["kind"], e["event"]) for e in json.loads(out)]
    check(("admin", f"{key_a} set to drain") in kinds and ("admin", f"{key_a} set to ready") in kinds,
          f"show events lacks the admin changes: {kinds}")
    check(any(k == "reload" and e.startswith("refused") for k, e in kinds), f"no refused reload in {kinds}")


@_test
def systemd_notify(env):
    """Type=notify: READY=1 once serving, RELOADING=1 then READY=1 around a
    reload, STOPPING=1 at a graceful stop, as sd_notify sends them to systemd."""
    import socket

    ports = env.upstream(["127.0.0.2:0=a"], name="a")
    gw_port = free_port()
    sock_path = env.path("notify.sock")
    nsock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    nsock.bind(sock_path)
    nsock.settimeout(5)
    conf = env.write("isthmus.yaml", docs(
        appliance(env), gateway(gw_port),
        virtual_service("ops", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n"),
        service_entry("ops", SVC, [{"address": "127.0.0.2", "port": ports["a"]}])))
    os.environ["NOTIFY_SOCKET"] = sock_path
    try:
        env.start_gateway(conf, gw_port)
    finally:
        del os.environ["NOTIFY_SOCKET"]

    def next_msg():
        return nsock.recv(4096).decode()

    try:
        m = next_msg()
        check("READY=1" in m and "generation 1" in m, f"first notification {m!r}")
        os.kill(env.gateway.pid, signal.SIGHUP)
        m = next_msg()
        check(m.startswith("RELOADING=1") and "MONOTONIC_USEC=" in m, f"at reload {m!r}")
        m = next_msg()
        check("READY=1" in m and "generation 2" in m and "refused" not in m, f"after reload {m!r}")
        # A refused reload says so in STATUS= (HAProxy's "Reload failed!"):
        # systemctl status showed the same line as after a good one.
        with open(conf) as f:
            good = f.read()
        env.write("isthmus.yaml", good.replace("kind: Gateway", "kind: Gateway\nbogus: 1", 1))
        os.kill(env.gateway.pid, signal.SIGHUP)
        check(next_msg().startswith("RELOADING=1"), "no RELOADING=1 at the refused reload")
        m = next_msg()
        check("READY=1" in m and "generation 2" in m and "the last reload was refused" in m,
              f"after a refused reload {m!r}")
        env.write("isthmus.yaml", good)
        os.kill(env.gateway.pid, signal.SIGHUP)
        check(next_msg().startswith("RELOADING=1"), "no RELOADING=1 at the reload after")
        m = next_msg()
        check("READY=1" in m and "generation 3" in m and "refused" not in m, f"after a good reload again {m!r}")
        os.kill(env.gateway.pid, signal.SIGTERM)
        m = next_msg()
        check("STOPPING=1" in m, f"at stop {m!r}")
    except socket.timeout:
        raise AssertionError("no sd_notify message within 5 s")
    finally:
        nsock.close()


@_test
def explain_matches_behaviour(env):
    """explain names the route, cluster and endpoint that real requests then get:
    a header route to a consistent-hash cluster (a stable pick), the default
    route, and a path that no route matches."""
    import subprocess

    ports = {}
    for i, addr in enumerate(("127.0.0.2", "127.0.0.3", "127.0.0.4")):
        ports.update(env.upstream([f"{addr}:0=e{i}"], name=f"e{i}"))
    gw_port = free_port()
    vs = (f"  - name: by-user\n    match: [{{headers: {{x-user: {{prefix: u}}}}}}]\n"
          f"    route: [{{destination: {{host: {SVC}}}}}]\n"
          f"  - name: default\n    match: [{{uri: {{prefix: /app}}}}]\n"
          f"    route: [{{destination: {{host: {SVC}}}}}]\n")
    dr = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ops}\n"
          f"spec:\n  host: {SVC}\n  trafficPolicy:\n    loadBalancer:\n"
          "      consistentHash: {httpHeaderName: x-user}\n")
    conf = env.write("isthmus.yaml", docs(
        appliance(env), gateway(gw_port), virtual_service("ops", ["*"], vs), dr,
        service_entry("ops", SVC, [{"address": a, "port": ports[f"e{i}"]} for i, a in
                                   enumerate(("127.0.0.2", "127.0.0.3", "127.0.0.4"))])))
    env.start_gateway(conf, gw_port)
    ctl = os.path.join(env.build, "isthmusctl")
    name_of = {f"127.0.0.{i + 2}:{ports[f'e{i}']}": f"e{i}" for i in range(3)}

    def explain(*args):
        p = subprocess.run([ctl, "-s", env.path("ctl.sock"), "explain", *args], stdout=subprocess.PIPE,
                           timeout=30)
        return p.returncode, p.stdout.decode()

    for user in ("u1", "u2", "u3", "u4"):
        rc, out = explain("GET", f"http://shop.example:{gw_port}/app/x", f"x-user={user}")
        check(rc == 0 and "route: by-user" in out and "present (the pick below is stable)" in out,
              f"explain for {user}: {out}")
        predicted = name_of[out.split("endpoint: ")[1].split()[0]]
        got = {env.get("/app/x", headers={"x-user": user}).header("x-upstream") for _ in range(5)}
        check(got == {predicted}, f"explain predicted {predicted} for {user}, requests went to {got}")
    rc, out = explain("GET", f"http://shop.example:{gw_port}/app/y")
    check("route: default" in out, f"explain without the header: {out}")
    rc, out = explain("GET", f"http://shop.example:{gw_port}/elsewhere")
    check("404 (NR)" in out and env.get("/elsewhere").status == 404, f"explain for no route: {out}")


@_test
def reload_listeners_under_load(env):
    """50 reloads under wrk, alternating route, endpoint and listener/worker-count
    changes: the latter start a new worker set on the new sockets while the old
    one drains; no request fails, the added port answers, the removed one closes,
    and the old workers exit."""
    import socket
    import subprocess

    from harness import ctl_cmd

    ports = env.upstream(["127.0.0.2:0=a"], name="a")
    ports.update(env.upstream(["127.0.0.3:0=b"], name="b"))
    gw_port, extra_port = free_port(), free_port()

    def make(weights_swapped, with_b, extra_listener):
        wa, wb = (25, 75) if weights_swapped else (75, 25)
        eps = [{"address": "127.0.0.2", "port": ports["a"], "labels": {"v": "a"}}]
        if with_b:
            eps.append({"address": "127.0.0.3", "port": ports["b"], "labels": {"v": "a"}})
        gw = gateway(gw_port)
        if extra_listener:
            gw += (f"  - port: {{number: {extra_port}, name: extra, protocol: HTTP}}\n"
                   "    hosts: [\"*\"]\n")
        return docs(
            appliance(env, workers=2 if extra_listener else 1,
                      timeouts={"drain": "5s", "idle": "5s"}), gw,
            virtual_service("ops", ["*"], f"  - route:\n"
                                          f"    - {{destination: {{host: {SVC}}}, weight: {wa}}}\n"
                                          f"    - {{destination: {{host: {SVC}}}, weight: {wb}}}\n"),
            service_entry("ops", SVC, eps))

    state = [False, True, False]
    conf = env.write("isthmus.yaml", make(*state))
    env.start_gateway(conf, gw_port)
    sock = env.path("ctl.sock")
    wrk = subprocess.Popen(["wrk", "-t1", "-c16", "-d60s", "--timeout", "3s", f"http://127.0.0.1:{gw_port}/"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    listener_changes = 0
    try:
        poll(lambda: int(ctl_cmd(sock, "show info").split("requests: ")[1].split()[0]) > 100, 5,
             what="wrk traffic through the gateway")
        for i in range(50):
            kind = i % 3
            state[kind] = not state[kind]
            tmp = conf + ".tmp"
            with open(tmp, "w") as f:
                f.write(make(*state))
            os.replace(tmp, conf)
            answer = ctl_cmd(sock, "reload")
            check(f"generation {i + 2} published" in answer, f"reload {i + 1} ({state}): {answer}")
            if kind == 2:
                listener_changes += 1
                if state[2]:
                    poll(lambda: socket.create_connection(("127.0.0.1", extra_port), 1).close() is None,
                         5, what="the added listener to accept")
            check(wrk.poll() is None, "wrk ended early")
        wrk.send_signal(signal.SIGINT)
        out, _ = wrk.communicate(timeout=10)
    finally:
        wrk_reap(wrk)
    check_wrk_clean(out, 100, "during the reloads")  # enough to span them; the check is "no error"
    # The last state: the extra listener answers exactly when it is configured.
    if state[2]:
        check(http_ok(extra_port), "the extra listener does not answer")
    else:
        try:
            socket.create_connection(("127.0.0.1", extra_port), 1).close()
            raise AssertionError(f"port {extra_port} still accepts after its listener was removed")
        except OSError:
            pass
    # Old worker sets exit after draining: only the current set is left (bounded wait).
    want = 2 if state[2] else 1
    poll(lambda: len(env.workers()) == want, 12, what=f"the old workers to exit ({want} left)")
    check(listener_changes >= 16, "too few listener changes")


def http_ok(port):
    import urllib.request

    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=3).status == 200
    except OSError:
        return False


@_test
def route_counters_per_listener(env):
    """A route served on two ports is counted per port, as Envoy counts a
    route per route configuration (Istio makes one per port): requests on
    one port move its listener's series only (the route had one counter,
    shown under both listeners), and a reload keeps each count by name. Two
    VirtualServices' routes of one name are one series (two series of one
    name made Prometheus refuse the whole page)."""
    import urllib.request

    ports = env.upstream(["127.0.0.2:0=a"], name="a")
    p1, p2, admin = free_port(), free_port(), free_port()
    gw = ("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  servers:\n"
          f"  - port: {{number: {p1}, name: one, protocol: HTTP}}\n    hosts: ['*']\n"
          f"  - port: {{number: {p2}, name: two, protocol: HTTP}}\n    hosts: ['*']\n")
    conf = env.write("isthmus.yaml", docs(
        appliance(env, extra=f"  admin: {{address: 127.0.0.1:{admin}}}\n"), gw,
        virtual_service("ops", ["*"], f"  - name: r\n    route: [{{destination: {{host: {SVC}}}}}]\n"),
        virtual_service("ops2", ["b.example"], f"  - name: r\n    route: [{{destination: {{host: {SVC}}}}}]\n"),
        service_entry("ops", SVC, [{"address": "127.0.0.2", "port": ports["a"]}])))
    env.start_gateway(conf, p1)

    def counts():
        body = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
        series = [(m.group(1), float(m.group(2))) for m in re.finditer(
            r'^isthmus_route_responses_total\{listener="([^"]+)",route="r",code_class="2xx"\} (\S+)$', body, re.M)]
        check(len(series) == len(dict(series)), f"one series per listener and route name: {series}")
        return dict(series)

    for _ in range(2):
        check(env.get("/").status == 200, "a request on the first port failed")
    rc, out, err = curl(["-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: b.example",
                         f"http://127.0.0.1:{p1}/"])
    check(out == "200", f"a request for b.example: {rc} {out} {err}")
    rc, out, err = curl(["-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{p2}/"])
    check(out == "200", f"a request on the second port: {rc} {out} {err}")
    check(counts() == {"one": 3, "two": 1}, f"the route's 2xx per listener: {counts()}")
    check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), "the reload was refused")
    check(env.get("/").status == 200, "a request after the reload failed")
    check(counts() == {"one": 4, "two": 1}, f"the route's 2xx per listener after a reload: {counts()}")


@_test
def listener_names_alike(env):
    """Two Gateways that both call their port `http` are two listeners named
    by address and port (127.0.0.1_PORT), as Envoy names them: their series
    were two of one name (`listener="http"`), which Prometheus drops, and a
    reload moved one's counts to the other (the kept counters took the first
    listener of the name). Each keeps its own counts across a reload."""
    import urllib.request

    ports = env.upstream(["127.0.0.2:0=a"], name="a")
    p1, p2, admin = free_port(), free_port(), free_port()
    conf = env.write("isthmus.yaml", docs(
        appliance(env, extra=f"  admin: {{address: 127.0.0.1:{admin}}}\n"), gateway(p1), gateway(p2, name="gw2"),
        virtual_service("ops", ["*"], f"  - name: r\n    route: [{{destination: {{host: {SVC}}}}}]\n",
                        gateways=("gw", "gw2")),
        service_entry("ops", SVC, [{"address": "127.0.0.2", "port": ports["a"]}])))
    env.start_gateway(conf, p1)

    def counts():
        body = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
        out = {}
        for family, labels in (("listener", ""), ("route", ',route="r"')):
            series = [(m.group(1), float(m.group(2))) for m in re.finditer(
                rf'^isthmus_{family}_responses_total\{{listener="([^"]+)"{labels},code_class="2xx"\}} (\S+)$',
                body, re.M)]
            check(len(series) == len(dict(series)), f"two {family} series of one name: {series}")
            out[family] = dict(series)
        return out

    def send(port, n):
        for _ in range(n):
            rc, out, err = curl(["-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{port}/"])
            check(out == "200", f"a request on port {port}: {rc} {out} {err}")

    send(p1, 3)
    send(p2, 1)
    want = {f"127.0.0.1_{p1}": 3, f"127.0.0.1_{p2}": 1}
    check(counts() == {"listener": want, "route": want}, f"2xx per listener: {counts()}")
    check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), "the reload was refused")
    send(p1, 1)
    want[f"127.0.0.1_{p1}"] = 4
    check(counts() == {"listener": want, "route": want}, f"2xx per listener after a reload: {counts()}")


def _start_with_admin(env):
    """One upstream behind every path, and an admin listener; its port."""
    ports = env.upstream(["127.0.0.2:0=a"], name="a")
    gw_port, admin = free_port(), free_port()
    conf = env.write("isthmus.yaml", docs(
        appliance(env, extra=f"  admin: {{address: 127.0.0.1:{admin}}}\n"), gateway(gw_port),
        virtual_service("ops", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n"),
        service_entry("ops", SVC, [{"address": "127.0.0.2", "port": ports["a"]}])))
    env.start_gateway(conf, gw_port)
    return admin


@_test
def metrics_all_documented(env):
    """Every metric family /metrics serves is named in docs/operations.md
    (isthmus_tls_handshakes_total and three more were served and documented
    nowhere); the page is well formed: one TYPE line per family."""
    import urllib.request

    admin = _start_with_admin(env)
    check(env.get("/").status == 200, "a request failed")
    body = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
    types = re.findall(r"(?m)^# TYPE (\S+) ", body)
    check(len(types) == len(set(types)), f"a family's TYPE twice: {sorted(t for t in types if types.count(t) > 1)}")
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    with open(os.path.join(root, "docs", "operations.md")) as f:
        doc = f.read()
    missing = sorted(t for t in set(types) if t not in doc)
    check(not missing, f"metric families docs/operations.md does not name: {missing}")


@_test
def metrics_latency_and_clusters(env):
    """The request-duration histogram and the per-cluster counters follow the
    traffic actually sent: 10 fast requests and 3 slow (/delay/300) ones."""
    import urllib.request

    admin = _start_with_admin(env)

    def scrape():
        body = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
        return {l.rsplit(" ", 1)[0]: float(l.rsplit(" ", 1)[1]) for l in body.splitlines()
                if l and not l.startswith("#")}

    before = scrape()
    for _ in range(10):
        check(env.get("/").status == 200, "fast request failed")
    for _ in range(3):
        check(env.get("/delay/300").status == 200, "slow request failed")
    for _ in range(2):
        check(env.get("/status/404").status == 404, "404 not passed on")
    after = scrape()

    def delta(name):
        return after.get(name, 0) - before.get(name, 0)

    check(delta("isthmus_request_duration_seconds_count") == 15, f"histogram count moved by "
          f"{delta('isthmus_request_duration_seconds_count')}, want 15")
    check(delta('isthmus_request_duration_seconds_bucket{le="0.25"}') == 12,
          "want 12 requests at or under 250 ms (10 fast, 2 404s)")
    check(delta('isthmus_request_duration_seconds_bucket{le="0.5"}') == 15, "want all 15 under 500 ms")
    # In seconds, as the family's name says (not milliseconds): 3 x 300 ms and little more.
    check(0.9 <= delta("isthmus_request_duration_seconds_sum") <= 3.0,
          f"the histogram's sum moved by {delta('isthmus_request_duration_seconds_sum')}: want 3 x 300 ms in seconds")
    cl = f"outbound|80||{SVC}"
    ok2xx = delta(f'isthmus_cluster_responses_total{{cluster="{cl}",code_class="2xx"}}')
    check(ok2xx == 13, f"cluster 2xx moved by {ok2xx}, want 13")
    check(delta(f'isthmus_cluster_responses_total{{cluster="{cl}",code_class="4xx"}}') == 2, "cluster 4xx")
    check(delta('isthmus_listener_responses_total{listener="http",code_class="2xx"}') == 13, "listener 2xx")
    route = 'isthmus_route_responses_total{listener="http",route="default/ops#0",code_class="4xx"}'
    check(delta(route) == 2, f"route 4xx moved by {delta(route)}")
    # The workers' responses by class, 1xx..5xx each (a 5xx class missing
    # would hide the errors a dashboard alerts on).
    check(delta('isthmus_responses_total{code_class="2xx"}') == 13, "isthmus_responses_total 2xx")
    check(delta('isthmus_responses_total{code_class="4xx"}') == 2, "isthmus_responses_total 4xx")
    before = scrape()
    check(env.get("/status/503").status == 503, "503 not passed on")
    after = scrape()
    k5 = 'isthmus_responses_total{code_class="5xx"}'
    check(delta(k5) == 1, f"isthmus_responses_total 5xx moved by {delta(k5)}, want 1")
    # Gauges are gauges (a counter's rate() of a value that falls is wrong).
    body = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
    for name, kind in (("isthmus_connections_active", "gauge"), ("isthmus_streams_active", "gauge"),
                       ("isthmus_requests_total", "counter"),
                       ("isthmus_request_duration_seconds", "histogram")):
        check(f"# TYPE {name} {kind}\n" in body, f"no '# TYPE {name} {kind}' in /metrics")


@_test
def counters_kept_by_name(env):
    """The listener, route and cluster counters are kept by name across
    generations, as Envoy keeps its stats by name: a reload, and the
    generation published after a worker dies holding a request (its share of
    the clusters' counts given back), leave them counting on (they started
    again at zero, even when no reload happened); each scrape, while the old
    generation drains and after it is reclaimed, counts every response once."""
    admin = free_port()
    ports = env.upstream(["127.0.0.2:0=a"], name="a")
    gw_port = free_port()

    def text(extra_route=""):
        return docs(appliance(env, extra=f"  admin: {{address: 127.0.0.1:{admin}}}\n"), gateway(gw_port),
                    virtual_service("ops", ["*"], extra_route +
                                    f"  - name: app\n    route: [{{destination: {{host: {SVC}}}}}]\n"),
                    service_entry("ops", SVC, [{"address": "127.0.0.2", "port": ports["a"]}]))

    env.start_gateway(env.write("isthmus.yaml", text()), gw_port)
    cl = f"outbound|80||{SVC}"
    names = {"listener": ('isthmus_listener_responses_total', 'listener="http",code_class="2xx"'),
             "route": ('isthmus_route_responses_total', 'listener="http",route="app",code_class="2xx"'),
             "cluster": ('isthmus_cluster_responses_total', f'cluster="{cl}",code_class="2xx"')}

    def counts():
        return {k: _metric_labelled(admin, n, lab) for k, (n, lab) in names.items()}

    for _ in range(10):
        check(env.get("/app/x").status == 200, "a request failed")
    check(counts() == {"listener": 10, "route": 10, "cluster": 10}, f"after 10 requests: {counts()}")
    env.write("isthmus.yaml", text("  - match: [{uri: {prefix: /gone}}]\n    directResponse: {status: 410}\n"))
    check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), "the reload failed")
    check(counts() == {"listener": 10, "route": 10, "cluster": 10}, f"right after the reload: {counts()}")
    for _ in range(5):
        check(env.get("/app/x").status == 200, "a request failed")
    check(counts() == {"listener": 15, "route": 15, "cluster": 15}, f"5 more after the reload: {counts()}")
    # A worker dies holding a request: a generation of its own is published.
    gen = int(re.search(r"generation: (\d+)", ctl_cmd(env.path("ctl.sock"), "show info")).group(1))
    slow = []
    th = threading.Thread(target=lambda: slow.append(_slow_get(env)))
    th.start()
    # In flight at its endpoint (its connection accepted is not enough: a
    # worker killed before it sent the request held nothing).
    poll(lambda: any(e["inflight"] for e in json.loads(ctl_cmd(env.path("ctl.sock"), "show endpoints json"))),
         5, what="the slow request to be in flight")
    for w in json.loads(ctl_cmd(env.path("ctl.sock"), "show workers json")):
        if w["connections"]:
            os.kill(w["pid"], signal.SIGKILL)
    th.join(15)
    poll(lambda: int(re.search(r"generation: (\d+)", ctl_cmd(env.path("ctl.sock"), "show info")).group(1)) > gen,
         10, what="the generation published for the dead worker")
    check(counts() == {"listener": 15, "route": 15, "cluster": 15}, f"after the worker's death: {counts()}")
    for _ in range(5):
        check(env.get("/app/x").status == 200, "a request failed")
    # Every scrape while the old generations are reclaimed (the master looks
    # each second) counts each response once: watched for 3 s.
    end = time.monotonic() + 3
    while time.monotonic() < end:
        got = counts()
        check(got == {"listener": 20, "route": 20, "cluster": 20}, f"20 responses, scraped: {got}")
        time.sleep(0.1)  # the scrapes' pace, not a synchronisation


def _slow_get(env):
    try:
        return env.get("/delay/3000", timeout=10).status
    except Exception as e:  # the worker is killed: no answer
        return repr(e)


@_test
def trusted_proxies_client_address(env):
    """gatewayTopology.numTrustedProxies N: the client is the Nth address from the
    right of X-Forwarded-For (Envoy's xff_num_trusted_hops), else the peer; the
    upstream still gets the peer appended."""
    ports = env.upstream(["127.0.0.2:0=a"], name="a")
    gw_port = free_port()
    log = env.path("access.log")
    conf = env.write("isthmus.yaml", docs(
        appliance(env, extra=f"  accessLog: {{path: {log}, format: json}}\n"
                             "  gatewayTopology: {numTrustedProxies: 2}\n"), gateway(gw_port),
        virtual_service("ops", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n"),
        service_entry("ops", SVC, [{"address": "127.0.0.2", "port": ports["a"]}])))
    env.start_gateway(conf, gw_port)
    cases = {"/two": ("203.0.113.7, 10.0.0.1", "203.0.113.7"),
             "/three": ("198.51.100.1, 2001:db8::5 , 10.0.0.1", "2001:db8::5"),
             "/one": ("10.0.0.1", "127.0.0.1"),
             "/bogus": ("not-an-ip, 10.0.0.1", "127.0.0.1"),
             "/none": (None, "127.0.0.1")}
    for path, (xff, _) in cases.items():
        r = env.get(path, headers={"X-Forwarded-For": xff} if xff else None)
        check(r.status == 200, f"{path}: {r}")
    poll(lambda: len(_lines(log)) >= len(cases), 5, what="the access-log lines")
    by_path = {r["path"]: r for r in _lines(log)}
    for path, (xff, want) in cases.items():
        got = by_path[path]
        check(got["client"] == want, f"{path} with X-Forwarded-For {xff!r}: client {got['client']}, want {want}")
        check(got["x_forwarded_for"] == (f"{xff},127.0.0.1" if xff else "127.0.0.1"),
              f"{path}: X-Forwarded-For sent upstream {got['x_forwarded_for']!r}")
    # Envoy's x-envoy-external-address is that client too, whatever the client wrote.
    r = env.get("/headers", headers=[("X-Forwarded-For", "203.0.113.7, 10.0.0.1"),
                                     ("X-Envoy-External-Address", "192.0.2.1")])
    seen = [l.split(":", 1)[1].strip() for l in r.body.decode("latin-1").split("\r\n")
            if l.lower().startswith("x-envoy-external-address:")]
    check(r.status == 200 and seen == ["203.0.113.7"], f"x-envoy-external-address upstream: {seen}")


@_test
def worker_user_and_unknown_user_reload(env):
    """spec.user: the workers run as that user. A reload naming a user that
    does not exist is refused with the field named; the running workers keep
    serving, and a worker that dies is restarted as the user it had."""
    from harness import ctl_cmd, Skip

    if os.geteuid() != 0:
        raise Skip("needs root to change users")
    text, gw_port, _, _ = _two_services(env, "  user: nobody\n")
    conf = env.write("isthmus.yaml", text)
    env.start_gateway(conf, gw_port)
    nobody = pwd.getpwnam("nobody").pw_uid

    def uids():
        return worker_uids(env)

    pids = poll(lambda: len(uids()) == 2 and set(uids().values()) == {nobody} and uids(), 10,
                what="two workers running as nobody")
    env.write("isthmus.yaml", text.replace("user: nobody", "user: no-such-user-isthmus"))
    answer = ctl_cmd(env.path("ctl.sock"), "reload")
    check("refused" in answer and "spec.user" in answer and "no-such-user-isthmus" in answer,
          f"reload with an unknown user: {answer}")
    check(env.get("/app/1").status == 200, "not serving after the refused reload")
    victim = next(iter(pids))
    os.kill(victim, signal.SIGKILL)
    poll(lambda: len(uids()) == 2 and victim not in uids() and set(uids().values()) == {nobody}, 10,
         what="the killed worker restarted as nobody")
    check(env.get("/app/2").status == 200, "not serving after the restart")


@_test
def reload_owes_workers_until_slots_free(env):
    """workers: 64, the most. A listener-changing reload starts a whole new
    set beside the old one still draining; a second one while both older sets
    still drain (each worker held by a connection with half a request head)
    finds no slot free: its workers are owed (show info workers_owed), and the
    set it replaces serves on meanwhile (ready, answering) rather than nobody;
    a third that changes the count to 63 owes 63, not 64 more, and they start
    as the old workers exit."""
    import resource
    import socket
    from harness import ctl_cmd

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    ports = env.upstream(["127.0.0.2:0=a"], name="a")
    gw_port, extra1, extra2 = free_port(), free_port(), free_port()
    timeouts = {"requestHeader": "120s", "drain": "120s"}
    routes = f"  - route: [{{destination: {{host: {SVC}}}}}]\n"
    se = service_entry("ops", SVC, [{"address": "127.0.0.2", "port": ports["a"]}])

    def write(*listeners, workers=64):
        app = appliance(env, workers=workers, timeouts=timeouts)
        env.write("isthmus.yaml", docs(app, *(gateway(p, name=f"gw{p}") for p in listeners),
                                       virtual_service("ops", ["*"], routes, gateways=[f"gw{p}" for p in listeners]), se))

    write(gw_port)
    env.start_gateway(env.path("isthmus.yaml"), gw_port)
    sock = env.path("ctl.sock")
    held = []

    def workers():
        return {w["pid"]: w for w in json.loads(ctl_cmd(sock, "show workers json"))}

    def info():
        return json.loads(ctl_cmd(sock, "show info json"))

    def hold_every(pids, port):
        """Half-request connections until every worker in pids holds one
        (each takes the next from the shared socket in turn once it is up)."""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(held) < 4000:
            ws = workers()
            idle = [p for p in pids if ws.get(p, {}).get("connections", 0) == 0]
            if not idle:
                return
            for _ in range(len(idle)):
                c = socket.create_connection(("127.0.0.1", port), timeout=5)
                c.sendall(b"GET /held HTTP/1.1\r\n")
                held.append(c)
            time.sleep(0.05)  # the accepts reach the counters; the loop polls, bounded
        raise TestFailure(f"{len(held)} connections do not reach workers {idle}: {ws}")

    try:
        gen1 = set(poll(lambda: len(workers()) == 64 and info()["ready"] and workers(), 30,
                        what="64 workers serving"))
        hold_every(gen1, gw_port)
        n1 = len(held)
        write(gw_port, extra1)
        check("published" in ctl_cmd(sock, "reload"), "first listener-changing reload refused")
        gen2 = poll(lambda: (lambda s: len(s) == 64 and info()["ready"] and s)(set(workers()) - gen1), 30,
                    what="64 new workers serving beside the 64 draining")
        check(info()["workers"] == 64 and info()["workers_owed"] == 0, f"after the first reload: {info()}")
        check(env.get("/").status == 200, "the new set does not serve")
        hold_every(gen2, extra1)
        write(gw_port, extra2)
        check("published" in ctl_cmd(sock, "reload"), "second listener-changing reload refused")
        i = info()
        check(i["workers"] == 0 and i["workers_owed"] == 64 and i["ready"] is True,
              f"every slot held by a draining or replaced worker: {i}")
        check(env.get("/").status == 200, "the replaced set stopped serving before the new one could start")
        check(not set(workers()) - gen1 - gen2, "a worker started with no slot free")
        write(gw_port, extra2, workers=63)
        check("published" in ctl_cmd(sock, "reload"), "the count-changing reload refused")
        i = info()
        check(i["workers"] == 0 and i["workers_owed"] == 63, f"the new count, owed: {i}")
        for c in held[:n1]:
            c.close()
        poll(lambda: info()["workers_owed"] == 0 and info()["ready"] is True, 30,
             what="the owed workers started as the first set exited")
        gen3 = set(workers()) - gen1 - gen2
        check(len(gen3) == 63 and info()["workers"] == 63, f"{len(gen3)} workers in the newest set")
        check("owed workers started as old workers exited" in ctl_cmd(sock, "show events"),
              "no event says the owed workers started")
        code = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}",
                               f"http://127.0.0.1:{extra2}/"], capture_output=True, text=True, timeout=10).stdout
        check(code == "200", f"the newest listener answered {code}")
    finally:
        for c in held:
            c.close()
    poll(lambda: not set(workers()) & (gen1 | gen2), 30, what="the old sets to exit")


@_test
def logging_level(env):
    """spec.logging.level sets what every process writes: at debug a worker
    logs each answer it makes (a 404 here); a reload to warning silences that
    in the running workers, and the master's notices from its publish on (the
    reload's own among them); back to info, the notices return."""
    gw = free_port()
    up = env.upstream(["127.0.0.2:0=up"], name="up")["up"]
    conf = env.path("isthmus.yaml")

    def write(level):
        env.write("isthmus.yaml", docs(
            appliance(env, extra=f"  logging: {{level: {level}}}\n"), gateway(gw),
            virtual_service("vs", ["*"], f"  - match: [{{uri: {{prefix: /a}}}}]\n"
                                         f"    route: [{{destination: {{host: {SVC}}}}}]\n"),
            service_entry("svc", SVC, [{"address": "127.0.0.2", "port": up}])))

    def reload():
        check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), "reload refused")

    def answered_404():
        r = env.get("/nowhere")
        check(r.status == 404, f"GET /nowhere: {r}")
        return env.gateway.log().count(" 404 no route")

    write("debug")
    env.start_gateway(conf, gw)
    check(answered_404() == 1, f"debug: the worker's line of its 404 is missing:\n{env.gateway.log()[-2000:]}")
    write("warning")
    reload()
    for _ in range(4):  # each worker (the two of appliance()) takes some
        check(answered_404() == 1, "warning: a worker still logs its 404s")
    reload()
    check(env.gateway.log().count("reload: generation") == 0, "warning: the master logged a reload's notice")
    write("info")
    reload()
    poll(lambda: env.gateway.log().count("reload: generation") == 1, 10, what="the reload's notice back at info")


class ForkRefusing:
    """A gateway of `workers` workers on one port whose master's forks fail
    while refuse() holds (tests/upstream/fail_fork.c, preloaded: root ignores
    the process limits that would make them fail), and the listener-changing
    reload that adds a second port."""

    def __init__(self, env, workers):
        ports = env.upstream(["127.0.0.2:0=a"], name="a")
        self.env, self.workers = env, workers
        self.port, self.extra = free_port(), free_port()
        self.routes = f"  - route: [{{destination: {{host: {SVC}}}}}]\n"
        self.se = service_entry("ops", SVC, [{"address": "127.0.0.2", "port": ports["a"]}])
        self.flag = env.path("no-fork")
        shim = os.path.join(env.build, "tests", "fail_fork.so")
        check(os.path.exists(shim), f"{shim} is not built")
        saved = {k: os.environ.get(k) for k in ("LD_PRELOAD", "ISM_FAIL_FORK", "ASAN_OPTIONS")}
        os.environ.update(LD_PRELOAD=shim, ISM_FAIL_FORK=self.flag,
                          # the sanitizer build: the library comes before its runtime
                          ASAN_OPTIONS=":".join(filter(None, (saved["ASAN_OPTIONS"], "verify_asan_link_order=0"))))
        try:
            self.write(self.port)
            env.start_gateway(env.path("isthmus.yaml"), self.port)
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        self.sock = env.path("ctl.sock")
        poll(lambda: self.info()["ready"] and self.info()["workers"] == workers, 20,
             what=f"{workers} workers serving")

    def write(self, *listeners):
        self.env.write("isthmus.yaml", docs(
            appliance(self.env, workers=self.workers), *(gateway(p, name=f"gw{p}") for p in listeners),
            virtual_service("ops", ["*"], self.routes, gateways=[f"gw{p}" for p in listeners]), self.se))

    def info(self):
        return json.loads(ctl_cmd(self.sock, "show info json"))

    def pids(self):
        return {w["pid"] for w in json.loads(ctl_cmd(self.sock, "show workers json"))}

    def refuse(self, on):
        if on:
            open(self.flag, "w").close()
        else:
            os.unlink(self.flag)

    def reload_refused(self):
        """The reload adding the second port, its new workers' forks refused."""
        self.refuse(True)
        self.write(self.port, self.extra)
        check("published" in ctl_cmd(self.sock, "reload"), "the listener-changing reload was refused")
        poll(lambda: "fork: Resource temporarily unavailable" in self.env.gateway.log(), 10, what="a refused fork")


def http_code(port):
    return subprocess.run(["curl", "-s", "-m", "3", "-o", "/dev/null", "-w", "%{http_code}",
                           f"http://127.0.0.1:{port}/"], capture_output=True, text=True, timeout=10).stdout


@_test
def reload_keeps_old_workers_while_new_cannot_fork(env):
    """A listener-changing reload whose new workers cannot start (the system
    refuses fork, as a process limit does): the set it replaces keeps serving
    its ports, ready, until a worker of the new set serves, instead of stopping
    with nobody to accept; the new workers are tried again and, once forks
    succeed, start, serve the new port, and the old set drains."""
    g = ForkRefusing(env, 2)
    old = g.pids()
    g.reload_refused()
    for _ in range(3):  # across the master's first tries again (100, 200, 400 ms)
        c = http_code(g.port)
        check(c == "200", f"the kept port answered {c!r} while the new set could not start")
        time.sleep(0.2)
    i = g.info()
    check(i["workers"] == 0 and i["workers_owed"] == 2 and i["ready"] is True, f"while forks fail: {i}")
    g.refuse(False)
    poll(lambda: http_code(g.extra) == "200", 30, what="the new set to start and serve the new port")
    poll(lambda: "the new worker set serves; 2 old workers draining" in env.gateway.log(), 10,
         what="the old set told to drain once the new one serves")
    poll(lambda: not g.pids() & old, 30, what="the old set to exit")
    check(http_code(g.port) == "200", "the kept port does not answer after the change")


@_test
def reload_replaced_worker_dies_before_new_set(env):
    """A worker of the set a reload replaced dies while it still serves (the
    new set's forks refused): its slot is free again, and the new set's worker
    that starts there, once forks succeed, serves on, where it was told to
    drain with the old set it had replaced (the slot still marked)."""
    g = ForkRefusing(env, 1)
    (old,) = g.pids()
    g.reload_refused()
    os.kill(old, signal.SIGKILL)
    poll(lambda: not g.pids(), 10, what="the replaced worker reaped")
    g.refuse(False)
    poll(lambda: http_code(g.extra) == "200", 30, what="the new set to start and serve the new port")
    (new,) = poll(lambda: (lambda p: len(p) == 1 and p)(g.pids()), 10, what="the new worker")
    # A worker told to drain with nothing open exits within a second: give
    # it three, then it must be the same one serving both ports.
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        check(g.pids() == {new}, f"the new set's worker {new} was replaced: {g.pids()}")
        time.sleep(0.2)
    check(http_code(g.port) == "200" and http_code(g.extra) == "200", "the new set does not serve")
    check("old workers draining" not in env.gateway.log(), "a worker was told to drain with no old one left")


@_test
def access_log_unwritable_refused(env):
    """An access-log path the workers cannot write (its directory missing, or
    not writable by spec.user) is an error of the file with its place at the
    start and at a reload, which keeps the running configuration serving (it
    was published, and every new worker failed to start: no traffic at all);
    isthmus -c refuses it as a start would (the unit's ExecStartPre= and
    ExecReload= run it: it passed files the master then refused), and
    --portable (a file checked on another machine) only warns of it."""
    from harness import ctl_cmd

    good_log = env.path("access.log")
    text, gw_port, _, _ = _two_services(env, f"  accessLog: {{path: {good_log}}}\n")
    bad = text.replace(good_log, env.path("missing-dir/access.log"))
    where = (r"bad\.yaml:\d+:\d+: {}: Appliance test: spec\.accessLog\.path: .*missing-dir/access\.log cannot be "
             r"written by the workers: No such file or directory")
    rc, out = env.check_config(env.write("bad.yaml", bad))
    check(rc == 1 and re.search(where.format("error"), out), f"isthmus -c of a log in a missing directory: rc {rc}, {out}")
    rc, out = env.check_config(env.path("bad.yaml"), portable=True)
    check(rc == 0 and re.search(where.format("warning"), out),
          f"isthmus -c --portable of a log in a missing directory: rc {rc}, {out}")
    p = subprocess.run([env.isthmus, "-f", env.path("bad.yaml")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=30, cwd=env.dir)
    out = p.stdout.decode("utf-8", "replace")
    check(p.returncode != 0 and re.search(where.format("error"), out) and "not started" in out,
          f"a start with a log in a missing directory: rc {p.returncode}, {out}")
    conf = env.write("isthmus.yaml", text)
    env.start_gateway(conf, gw_port)
    env.write("isthmus.yaml", bad)
    answer = ctl_cmd(env.path("ctl.sock"), "reload")
    check("refused" in answer and "spec.accessLog.path" in answer, f"reload to an unwritable log: {answer}")
    for i in range(4):
        check(env.get(f"/app/{i}").status == 200, f"request {i} after the refused reload")
    if os.geteuid() == 0:
        # A directory the workers' user cannot write, though the master (root) could.
        locked = env.path("root-only")
        os.makedirs(locked, mode=0o755, exist_ok=True)
        os.chmod(locked, 0o755)
        as_nobody = text.replace("  accessLog:", "  user: nobody\n  accessLog:").replace(
            good_log, os.path.join(locked, "access.log"))
        rc, out = env.check_config(env.write("nobody.yaml", as_nobody))
        check(rc == 1 and "error: " in out and
              "cannot be written by the workers (user nobody): Permission denied" in out,
              f"isthmus -c of a log nobody cannot write: rc {rc}, {out}")
        rc, out = env.check_config(env.write("nosuchuser.yaml", text.replace(
            "  accessLog:", "  user: isthmus-no-such-user\n  accessLog:")))
        missing = r"nosuchuser\.yaml:\d+:\d+: {}: Appliance test: spec\.user: user isthmus-no-such-user: not found"
        check(rc == 1 and re.search(missing.format("error"), out),
              f"isthmus -c of a user missing here: rc {rc}, {out}")
        rc, out = env.check_config(env.path("nosuchuser.yaml"), portable=True)
        check(rc == 0 and re.search(missing.format("warning"), out),
              f"isthmus -c --portable of a user missing here: rc {rc}, {out}")
        # A user and a group both missing: both are said, in the file's order.
        rc, out = env.check_config(env.write("nosuchboth.yaml", text.replace(
            "  accessLog:", "  user: isthmus-no-such-user\n  group: isthmus-no-such-group\n  accessLog:")))
        both = [m.group(1) for m in re.finditer(r"error: Appliance test: spec\.(user|group): ", out)]
        check(rc == 1 and both == ["user", "group"], f"isthmus -c of a user and a group missing here: rc {rc}, {out}")


@_test
def removed_endpoint_idle_connections_close(env):
    """A reload that removes an endpoint closes the idle pooled connections
    to it at once, as Envoy drains a removed host's pools: they stayed open
    until a later change freed the endpoint's slot, or for the pool's idle
    timeout (an hour by default)."""
    ups = {n: env.upstream([f"{a}:0={n}"], name=n)[n] for n, a in (("a", "127.0.0.2"), ("b", "127.0.0.3"))}
    gw_port = free_port()
    routes = f"  - route: [{{destination: {{host: {SVC}}}}}]\n"

    def write(*names):
        eps = [{"address": {"a": "127.0.0.2", "b": "127.0.0.3"}[n], "port": ups[n]} for n in names]
        env.write("isthmus.yaml", docs(appliance(env, workers=1), gateway(gw_port),
                                       virtual_service("ops", ["*"], routes), service_entry("ops", SVC, eps)))

    def conns_to_b():
        out = subprocess.run(["ss", "-tnH", "state", "established", "dst", f"127.0.0.3:{ups['b']}"],
                             capture_output=True, text=True, timeout=10).stdout
        return len([l for l in out.splitlines() if l.strip()])

    write("a", "b")
    env.start_gateway(env.path("isthmus.yaml"), gw_port)
    poll(lambda: {env.get(f"/p{i}").header("x-upstream") for i in range(4)} == {"a", "b"}, 10,
         what="both endpoints answering")
    check(conns_to_b() >= 1, "no pooled connection to b")
    write("a")
    check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), "the reload removing b was refused")
    poll(lambda: conns_to_b() == 0, 10, what="the idle connections to the removed endpoint to close")
    check({env.get(f"/q{i}").header("x-upstream") for i in range(4)} == {"a"}, "b still answers")


@_test
def reload_changes_worker_user(env):
    """A reload that sets spec.user starts a new set of workers as that user
    (the running ones stayed root, and only a worker restarted later took the
    new user: a mixed set); traffic goes on."""
    from harness import Skip, ctl_cmd

    if os.geteuid() != 0:
        raise Skip("needs root to change users")
    text, gw_port, _, _ = _two_services(env, "")
    conf = env.write("isthmus.yaml", text)
    env.start_gateway(conf, gw_port)
    nobody = pwd.getpwnam("nobody").pw_uid

    def uids():
        return set(worker_uids(env).values())

    poll(lambda: uids() == {0}, 10, what="the workers running as root")
    env.write("isthmus.yaml", text.replace("  timeouts:", "  user: nobody\n  timeouts:", 1))
    check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), "reload refused")
    poll(lambda: uids() == {nobody}, 15, what="every worker running as nobody after the reload")
    check(env.get("/app/1").status == 200, "not serving after the reload")


@_test
def reload_moves_bind_address(env):
    """A reload that moves a port between an address and the wildcard
    (listenAddress 127.0.0.1 to 0.0.0.0 and back) is applied: the new socket
    is bound beside the running one, which the retired workers close (it was
    refused, "Address already in use", by the master's own socket, after a
    2 s wait on the master's loop). A port another process holds is still
    refused, the reply naming the listener and its address. In a network
    namespace of the test's own, so that the wildcard is its loopback only."""
    ns = make_netns(env)
    with in_netns(env, ns):
        up = env.upstream(["127.0.0.2:0=a"], name="a")["a"]
        gw = free_port()

        def conf(addr, extra_port=None):
            app = appliance(env, workers=1).replace("listenAddress: 127.0.0.1", f"listenAddress: {addr}")
            g = gateway(gw)
            if extra_port:
                g += f"  - port: {{number: {extra_port}, name: busy, protocol: HTTP}}\n    hosts: [\"*\"]\n"
            return env.write("isthmus.yaml", docs(
                app, g, virtual_service("vs", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n"),
                service_entry("a", SVC, [{"address": "127.0.0.2", "port": up}])))

        env.start_gateway(conf("127.0.0.1"), gw)
        sock = env.path("ctl.sock")
        for addr in ("0.0.0.0", "127.0.0.1", "0.0.0.0"):
            conf(addr)
            out = ctl_cmd(sock, "reload")
            check("published" in out, f"reload to listenAddress {addr} refused: {out}")
            # Which socket listens: the kernel's table, in hex.
            want = "00000000" if addr == "0.0.0.0" else "0100007F"
            poll(lambda: listening(gw) == [want], 20,
                 what=f"{addr}:{gw} alone to listen (the old socket closed); now {listening(gw)}")
            check(env.get("/moved").status == 200, f"the port after the move to {addr}")
        busy = socket.socket()
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        try:
            conf("0.0.0.0", busy.getsockname()[1])
            out = ctl_cmd(sock, "reload")
            check("reload refused" in out and f"a new listener cannot be bound: busy (0.0.0.0 port "
                  f"{busy.getsockname()[1]}): Address already in use" in out, f"reload onto a held port: {out}")
            # At the server that asks for it: file, line, column, field.
            lines = open(env.path("isthmus.yaml")).read().splitlines()
            ln = next(i + 1 for i, l in enumerate(lines) if "name: busy" in l)
            col = lines[ln - 1].index(str(busy.getsockname()[1])) + 1
            check(f"isthmus.yaml:{ln}:{col}: error: Gateway default/gw: spec.servers[1].port.number: a new "
                  "listener cannot be bound" in out, f"the refusal does not name the server's port: {out}")
        finally:
            busy.close()
        check(env.get("/still").status == 200, "the running configuration after the refused reload")


@_test
def start_port_taken_named(env):
    """A start whose listener's port is taken fails naming the Gateway server
    that asks for it (file, line, column, field), as a refused reload does,
    and says the file was not started."""
    busy = socket.socket()
    busy.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]
    try:
        path = env.write("isthmus.yaml", docs(
            appliance(env, workers=1), gateway(port),
            virtual_service("vs", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n"),
            service_entry("a", SVC, [{"address": "127.0.0.2", "port": 9}])))
        p = subprocess.run([env.isthmus, "-f", path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=30, cwd=env.dir)
        out = p.stdout.decode("utf-8", "replace")
    finally:
        busy.close()
    lines = open(path).read().splitlines()
    ln = next(i + 1 for i, l in enumerate(lines) if f"number: {port}" in l)
    col = lines[ln - 1].index(str(port)) + 1
    check(p.returncode != 0, f"the start on a taken port exited {p.returncode}: {out}")
    check(f"isthmus.yaml:{ln}:{col}: error: Gateway default/gw: spec.servers[0].port.number: a new listener "
          f"cannot be bound: http (127.0.0.1 port {port}): Address already in use" in out and "not started" in out,
          f"the start on a taken port does not name the server: {out}")


def listening(port):
    """The local addresses (hex, as /proc/net/tcp has them) listening on port, in
    this thread's network namespace."""
    rows = [l.split() for l in open("/proc/thread-self/net/tcp").read().splitlines()[1:]]
    return sorted(r[1].split(":")[0] for r in rows if r[3] == "0A" and int(r[1].split(":")[1], 16) == port)
