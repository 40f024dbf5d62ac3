# SPDX-License-Identifier: Apache-2.0
"""Integration tests of the HTTP route's corsPolicy (issue 12): a preflight
from an allowed origin answered by isthmus without an upstream hit, the
Access-Control-* fields of the actual response, nothing for a refused origin,
unmatchedPreflights; over HTTP/1.1 and HTTP/2 clients alike; and the example of
Istio's API reference.

Registered into run.py's list by register(test)."""

import os
import re

from harness import Conn, Registry, appliance, check, curl, docs, free_port, gateway, service_entry, virtual_service

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
    unmatchedPreflights IGNORE, is answered without one."""
    up = _world(env, cors_routes())
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
    """CORS with the route's other actions, in Envoy's order: a preflight to a
    route that answers directly is CORS's answer; the direct answer to an
    allowed origin gets the fields; the route's response edits come first and
    CORS sets its fields over them."""
    routes = (f"  - match: [{{uri: {{prefix: /direct}}}}]\n"
              "    directResponse: {status: 200, body: {string: hi}}\n" + CORS
              + f"  - match: [{{uri: {{prefix: /edited}}}}]\n    route: [{{destination: {{host: {SVC}}}}}]\n"
              "    headers: {response: {set: {access-control-allow-origin: \"*\", x-edit: \"1\"}}}\n" + CORS)
    up = _world(env, routes)
    before = upstream_count(up)
    r = env.get("/direct", headers=PREFLIGHT, method="OPTIONS")
    check(r.status == 200 and r.body == b"" and aca_fields(r.headers) == WANT_PREFLIGHT,
          f"a preflight to a direct-response route: {r}")
    r = env.get("/direct", headers=[("Origin", "https://app.example")])
    check(r.status == 200 and r.body == b"hi" and r.header("access-control-allow-origin") == "https://app.example",
          f"a direct response to an allowed origin: {r}")
    r = env.get("/edited", headers=[("Origin", "https://app.example")])
    check(r.status == 200 and r.header("x-edit") == "1"
          and r.header_all("access-control-allow-origin") == ["https://app.example"],
          f"the route's response edits, then CORS: {r.headers}")
    r = env.get("/edited", headers=[("Origin", "https://evil.example")])
    check(r.header_all("access-control-allow-origin") == ["*"], f"a refused origin, the route's own edit: {r.headers}")
    check(upstream_count(up) - before == 2, "the direct-response route reached the upstream")


def _sample(name):
    with open(os.path.join(FIXTURES, "istio-cors-fault", name)) as f:
        text = f.read()
    # The samples bind to the mesh; the test serves them on its Gateway.
    text, n = re.subn(r"\nspec:\n", "\nspec:\n  gateways: [gw]\n", text, count=1)
    check(n == 1, f"no spec in {name}")
    return text


@_test
def istio_cors_sample(env):
    """The CorsPolicy example of Istio's API reference."""
    up = env.upstream(["127.0.0.1:0=v1"], name="v1")["v1"]
    gw = free_port()
    se = service_entry("ratings-prod", "ratings.prod.svc.cluster.local",
                       [{"address": "127.0.0.1", "port": up, "labels": {"version": "v1"}}], port=9080)
    dr = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ratings, "
          "namespace: prod}\nspec:\n  host: ratings.prod.svc.cluster.local\n"
          "  subsets: [{name: v1, labels: {version: v1}}]\n")
    conf = env.write("isthmus.yaml", docs(appliance(env), gateway(gw), se, dr) + "---\n"
                     + _sample("virtual-service-cors-ratings-route.yaml"))
    env.start_gateway(conf, gw)
    r = env.get("/ratings/0", host="ratings.prod.svc.cluster.local", method="OPTIONS",
                headers=[("Origin", "https://example.com"), ("Access-Control-Request-Method", "POST")])
    check(r.status == 200 and aca_fields(r.headers) == {
        "access-control-allow-origin": ["https://example.com"], "access-control-allow-methods": ["POST,GET"],
        "access-control-allow-headers": ["X-Foo-Bar"], "access-control-max-age": ["86400"]},
        f"the CorsPolicy example's preflight (allowCredentials false: no such field): {r}")
    r = env.get("/ratings/0", host="ratings.prod.svc.cluster.local", headers=[("Origin", "https://example.org")])
    check(r.status == 200 and r.header("x-upstream") == "v1" and aca_fields(r.headers) == {},
          f"another origin, CORS example: {r}")
