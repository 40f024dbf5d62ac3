# SPDX-License-Identifier: Apache-2.0
"""Integration tests of ServiceEntry endpoints on Unix domain sockets
(`address: unix:///path`, and `unix://@name` for Linux's abstract sockets), as
Istio validates them and Envoy connects to a pipe: traffic balanced over them,
their name in the access log and the control socket, active health checks
and connect failures on them, and the configuration errors Istio's validation
gives.

The upstreams are HTTP/1.1 servers on Unix sockets in this process
(UnixUpstream): each answers with its name, and its /healthz answers 200 or,
once told, 503.

Registered into run.py's list by register(test)."""

import json
import os
import re
import socketserver
import threading
from http.server import BaseHTTPRequestHandler

from harness import (DEBIAN_PYTHON, Registry, appliance, check, ctl_cmd, debian_python_has, docs, file_lines,
                     free_port, gateway, http_get, poll, virtual_service, Skip)
from test_h2 import TOOLS, grpc

_test = Registry()
register = _test.register

HOST = "app.unix.test"
LOG_FMT = "%REQ(:PATH)% %RESPONSE_CODE% %UPSTREAM_LOCAL_ADDRESS% %UPSTREAM_HOST%"


class _Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 128  # socketserver's 5 refuses connects on a busy machine

    def handle_error(self, request, client_address):
        pass  # a health check that closes after the status line: nothing to report


class UnixUpstream:
    """An HTTP/1.1 server on the Unix socket path (a leading '@': an abstract
    name); answers every request 200 with its name, /healthz with 200 or 503
    (self.sick)."""

    def __init__(self, name, path):
        self.name, self.path, self.sick, self.hits = name, path, False, 0
        up = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self):  # noqa: N802 - http.server's name
                sick = self.path == "/healthz" and up.sick
                if self.path != "/healthz":
                    up.hits += 1
                body = (b"sick" if sick else up.name.encode())
                self.send_response(503 if sick else 200)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):  # the peer of a Unix socket has no address to log
                pass

        bind = "\0" + path[1:] if path.startswith("@") else path
        self.srv = _Server(bind, Handler)
        self.t = threading.Thread(target=self.srv.serve_forever, daemon=True)
        self.t.start()

    def close(self):
        self.srv.shutdown()
        self.srv.server_close()
        self.t.join(5)
        if not self.path.startswith("@") and os.path.exists(self.path):
            os.unlink(self.path)


def unix_se(addresses, ports="[{number: 80, name: http, protocol: HTTP}]", resolution="STATIC", extra=""):
    eps = "".join(f"  - {{address: \"unix://{a}\"{extra}}}\n" for a in addresses)
    return (f"apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: app}}\nspec:\n"
            f"  hosts: [{HOST}]\n  ports: {ports}\n  resolution: {resolution}\n  endpoints:\n{eps}")


ROUND_ROBIN = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: rr}\n"
               f"spec:\n  host: {HOST}\n  trafficPolicy: {{loadBalancer: {{simple: ROUND_ROBIN}}}}\n")


def two_upstreams(env, health=False):
    """A gateway of one worker routing to two Unix-socket upstreams, a (a
    path) and b (an abstract name); (gateway port, a, b, access log path,
    admin port)."""
    a = UnixUpstream("a", env.path("a.sock"))
    b = UnixUpstream("b", f"@isthmus-test-{os.getpid()}-{free_port()}")
    log = env.path("access.log")
    gw, admin = free_port(), free_port()
    conf = env.write("isthmus.yaml", docs(
        appliance(env, workers=1, health_checks=[HOST] if health else (),
                  extra=f"  admin: {{address: 127.0.0.1:{admin}}}\n"
                  f"  accessLog: {{path: {log}, format: text, textFormat: \"{LOG_FMT}\"}}\n"),
        gateway(gw), virtual_service("vs", ["*"], f"  - route: [{{destination: {{host: {HOST}}}}}]\n"),
        unix_se([a.path, b.path]), ROUND_ROBIN))
    env.start_gateway(conf, gw)
    return gw, a, b, log, admin


def tally(gw, n, prefix):
    """n requests; {upstream name: count}; every one must be answered 200."""
    got = {}
    for i in range(n):
        r = http_get(gw, f"{prefix}{i}")
        check(r.status == 200, f"request {i}: {r.status} {r.body!r}")
        got[r.body.decode()] = got.get(r.body.decode(), 0) + 1
    return got


def endpoint_keys(env):
    return {e["key"]: e for e in json.loads(ctl_cmd(env.path("ctl.sock"), "show endpoints json"))}


@_test
def unix_endpoints_serve(env):
    """Endpoints on a Unix socket path and on an abstract name both take
    traffic (ROUND_ROBIN: half each); the access log's %UPSTREAM_HOST%, the
    control socket's endpoint keys and the metrics' endpoint label name the
    path (the abstract name with '@'), as Envoy names a pipe; a Unix socket's
    %UPSTREAM_LOCAL_ADDRESS% is '-'."""
    gw, a, b, log, admin = two_upstreams(env)
    try:
        got = tally(gw, 20, "/rr")
        check(got == {"a": 10, "b": 10}, f"answers by upstream: {got}, want 10 each")
        lines = poll(lambda: [ln for ln in file_lines(log) if ln.startswith("/rr")] if len(
            [ln for ln in file_lines(log) if ln.startswith("/rr")]) == 20 else None, 10, what="20 access log lines")
        hosts = {ln.split(" ", 3)[3] for ln in lines}
        check(hosts == {a.path, b.path}, f"%UPSTREAM_HOST% values: {hosts}, want {{{a.path}, {b.path}}}")
        local = {ln.split(" ", 3)[2] for ln in lines}
        check(local == {"-"}, f"%UPSTREAM_LOCAL_ADDRESS% values: {local}, want '-'")
        keys = endpoint_keys(env)
        metrics = http_get(admin, "/metrics").body.decode()
        for p in (a.path, b.path):
            check(f"{HOST}|{p}" in keys, f"no endpoint key {HOST}|{p} in {sorted(keys)}")
            check(f'service="{HOST}",endpoint="{p}"' in metrics, f"no endpoint label {p} in /metrics")
    finally:
        a.close()
        b.close()


@_test
def unix_endpoint_health_check(env):
    """An active health check reaches a Unix-socket endpoint: one whose
    /healthz answers 503 is taken out (every request goes to the other), and
    back in once it answers 200 again."""
    gw, a, b, _, _ = two_upstreams(env, health=True)
    key = f"{HOST}|{a.path}"
    try:
        poll(lambda: all(e["health"] == "healthy" for e in endpoint_keys(env).values()), 10,
             what="both endpoints healthy")
        a.sick = True
        poll(lambda: endpoint_keys(env)[key]["health"] == "unhealthy", 10, what=f"{key} unhealthy")
        got = tally(gw, 10, "/sick")
        check(got == {"b": 10}, f"with a unhealthy: {got}, want all to b")
        a.sick = False
        poll(lambda: endpoint_keys(env)[key]["health"] == "healthy", 10, what=f"{key} healthy again")
        got = tally(gw, 10, "/well")
        check(got.get("a", 0) > 0, f"a healthy again took no request: {got}")
    finally:
        a.close()
        b.close()


@_test
def unix_endpoint_gone(env):
    """An endpoint whose socket is gone (server stopped, file removed) fails
    its connects, and the default retry policy sends the requests to the other
    one: every request is answered 200, by b."""
    gw, a, b, _, _ = two_upstreams(env)
    try:
        a.close()
        check(not os.path.exists(a.path), "the socket file is still there")
        got = tally(gw, 10, "/gone")
        check(got == {"b": 10}, f"with a gone: {got}, want all to b")
    finally:
        b.close()


@_test
def unix_endpoint_config_errors(env):
    """What Istio's validation refuses of Unix endpoints, as errors naming the
    file, line, column and field: a relative path, a directory, an empty
    address, ports on the endpoint, a ServiceEntry of two ports, resolution
    DNS, a path longer than a socket takes."""
    two_ports = "[{number: 80, name: http, protocol: HTTP}, {number: 81, name: h2, protocol: HTTP}]"
    cases = [
        ("relative", unix_se(["run/app.sock"]), r"endpoints\[0\]\.address", "is not an absolute path"),
        ("directory", unix_se(["/run/app/"]), r"endpoints\[0\]\.address", "is not an absolute path"),
        ("empty", unix_se([""]), r"endpoints\[0\]\.address", "must not be empty"),
        ("ports", unix_se(["/run/app.sock"], extra=", ports: {http: 8080}"), r"endpoints\[0\]\.ports",
         "must not include ports"),
        ("two service ports", unix_se(["/run/app.sock"], ports=two_ports), r"endpoints\[0\]",
         "exactly 1 service port required"),
        ("DNS", unix_se(["/run/app.sock"], resolution="DNS"), r"endpoints\[0\]\.address",
         "needs resolution STATIC"),
        ("too long", unix_se(["/" + "x" * 120]), r"endpoints\[0\]\.address", "over the 107"),
    ]
    for what, se, field, text in cases:
        conf = env.write(f"bad-{what.replace(' ', '-')}.yaml", docs(
            appliance(env, workers=1), gateway(free_port()),
            virtual_service("vs", ["*"], f"  - route: [{{destination: {{host: {HOST}}}}}]\n"), se))
        rc, out = env.check_config(conf)
        check(rc != 0, f"{what}: isthmus -c accepted it: {out}")
        pat = rf"{re.escape(os.path.basename(conf))}:\d+:\d+: error: ServiceEntry default/app: spec\.{field}: .*{text}"
        check(re.search(pat, out), f"{what}: want /{pat}/ in: {out}")


@_test
def unix_endpoint_grpc(env):
    """A ServiceEntry port of protocol GRPC whose endpoint is a Unix socket:
    the gateway speaks HTTP/2 to it there; a gRPC call through the gateway is
    answered by that server (its x-upstream metadata), trailers included."""
    if not debian_python_has("grpc"):
        raise Skip("python3-grpcio not installed")
    path = env.path("g.sock")
    up = env.spawn("grpcup-unix", [DEBIAN_PYTHON, os.path.join(TOOLS, "grpc_upstream.py"), "--listen",
                                   f"unix:{path}", "--name", "gu"])
    poll(lambda: check(up.alive(), f"grpc_upstream exited: {up.log()}") or os.path.exists(path), 10,
         what="the gRPC server's socket")
    gw = free_port()
    conf = env.write("isthmus.yaml", docs(
        appliance(env, workers=1), gateway(gw),
        virtual_service("vs", ["*"], f"  - route: [{{destination: {{host: {HOST}}}}}]\n"),
        unix_se([path], ports="[{number: 80, name: grpc, protocol: GRPC}]")))
    env.start_gateway(conf, gw)
    res = grpc(gw, [{"method": "Unary", "request": "over a pipe"},
                    {"method": "Status", "request": json.dumps({"code": 5, "message": "none"})}])
    u, st = res
    check(u["code"] == "OK" and u["responses"] == ["over a pipe"] and ["x-upstream", "gu"] in u["initial_metadata"],
          f"Unary through the Unix endpoint: {u}")
    check(st["code_value"] == 5 and st["details"] == "none", f"a status in the trailers: {st}")
