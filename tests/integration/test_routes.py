# SPDX-License-Identifier: Apache-2.0
"""Integration tests of the VirtualService route actions (issue 12): rewrite
(uri after a prefix, exact or regex match, uriRegexRewrite, authority, and
x-envoy-original-path upstream and in the access log), headers (set, add,
remove on requests and responses, route and destination), redirect (answered
by isthmus, Location as Envoy writes it), directResponse (status, body, its
length, HEAD), with HTTP/1.1 and HTTP/2 clients and HTTP/1.1 and HTTP/2
upstreams; and the examples of Istio's VirtualService reference.

The C test upstream answers "NAME TARGET" by default and sends the request head
it received back on /headers; h2_upstream.py reports the request it got as JSON.

Registered into run.py's list by register(test)."""

import email.utils
import os
import re
import subprocess
import time

from harness import (Conn, Registry, appliance, check, ctl_cmd, curl, docs, file_lines, free_port, gateway, http_get,
                     poll, service_entry, service_entry_protocol, virtual_service)
from test_h2 import curl_h2, info, need_tools, start_h2_upstream

_test = Registry()
register = _test.register

SVC = "routes.test.internal"
H2SVC = "routes-h2.test.internal"


def dest(host=SVC):
    return f"    route: [{{destination: {{host: {host}}}}}]\n"


def setup(env, http_yaml, app_extra="", h2_port=None):
    """The C upstream "up" behind SVC (and h2_upstream.py behind H2SVC when
    h2_port is given); the gateway with the VirtualService routes http_yaml.
    Returns the gateway port; env.up_port is the upstream's."""
    up = env.up_port = env.upstream(["127.0.0.2:0=up"], name="up")["up"]
    gw = free_port()
    parts = [appliance(env, extra=app_extra), gateway(gw), virtual_service("vs", ["*"], http_yaml),
             service_entry("svc", SVC, [{"address": "127.0.0.2", "port": up}])]
    if h2_port:
        parts.append(service_entry_protocol("h2svc", H2SVC, [{"address": "127.0.0.3", "port": h2_port}], "HTTP2"))
    env.start_gateway(env.write("isthmus.yaml", docs(*parts)), gw)
    return gw


def head_lines(body):
    """The request head the C upstream got (its /headers answer): lowercased lines."""
    return [l.lower() for l in body.decode("latin-1").split("\r\n") if l]


REWRITES = (
    # the matched prefix replaced; the query kept
    "  - match: [{uri: {prefix: /api/}}]\n    rewrite: {uri: /}\n" + dest() +
    # an exact match: the whole path replaced
    "  - match: [{uri: {exact: /old}}]\n    rewrite: {uri: /new}\n" + dest() +
    # uriRegexRewrite with groups
    "  - match: [{uri: {prefix: /svc/}}]\n"
    "    rewrite: {uriRegexRewrite: {match: \"^/svc/([^/]+)/(.*)$\", rewrite: \"/\\\\2/\\\\1\"}}\n" + dest() +
    # the authority, with a prefix rewrite to the upstream's /headers
    "  - match: [{uri: {prefix: /h/}}]\n    rewrite: {uri: /, authority: \"backend.internal:8080\"}\n" + dest() +
    "  - match: [{uri: {prefix: /h2/}}]\n    rewrite: {uri: /, authority: h2.backend}\n" + dest(H2SVC) +
    # a regex rewrite that leaves nothing: no rewrite (Envoy's)
    "  - match: [{uri: {prefix: /gone}}]\n"
    "    rewrite: {uriRegexRewrite: {match: \"^/gone(.*)$\", rewrite: \"\\\\1\"}}\n" + dest() +
    "  - " + dest()[4:])


@_test
def rewrite_uri(env):
    """GET /api/x arrives as /x, /old as /new, /svc/users/list as /list/users
    (uriRegexRewrite), each with its query; a uriRegexRewrite that leaves
    nothing leaves the path as it is, as Envoy's (it sent /); the rest
    unchanged."""
    gw = setup(env, REWRITES)
    for path, want in (("/api/x?q=1&r", "up /x?q=1&r"), ("/api/", "up /"), ("/old?z", "up /new?z"),
                       ("/svc/users/list", "up /list/users"), ("/svc/a/b/c?d=/e", "up /b/c/a?d=/e"),
                       ("/gone?q=1", "up /gone?q=1"), ("/plain/x?y", "up /plain/x?y")):
        r = env.get(path)
        check(r.status == 200 and r.body.decode().strip() == want,
              f"GET {path}: want {want!r} from the upstream, got {r.status} {r.body!r}")


@_test
def rewrite_authority_original_path(env):
    """rewrite.authority replaces Host; the rewritten request carries the
    original path (query included) as x-envoy-original-path, in place of one the
    client sent; the access log shows :path and :authority as the upstream got
    them and %REQ(X-ENVOY-ORIGINAL-PATH)% the original."""
    log = env.path("access.log")
    fmt = "%REQ(X-ENVOY-ORIGINAL-PATH)% %REQ(:PATH)% %REQ(:AUTHORITY)% %RESPONSE_CODE%"
    gw = setup(env, REWRITES, app_extra=f"  accessLog: {{path: {log}, format: text, textFormat: \"{fmt}\"}}\n")
    r = env.get("/h/headers?k=v", headers={"x-envoy-original-path": "/forged"})
    check(r.status == 200, f"GET /h/headers: {r}")
    lines = head_lines(r.body)
    check(lines[0] == "get /headers?k=v http/1.1", f"request line upstream: {lines[0]!r}")
    hosts = [l for l in lines if l.startswith("host:")]
    check(hosts == ["host: backend.internal:8080"], f"Host upstream: {hosts}")
    orig = [l for l in lines if l.startswith("x-envoy-original-path:")]
    check(orig == ["x-envoy-original-path: /h/headers?k=v"], f"x-envoy-original-path upstream: {orig}")
    # Without a rewrite, nothing is added.
    r = env.get("/headers")
    check(not any(l.startswith("x-envoy-original-path") for l in head_lines(r.body)),
          f"x-envoy-original-path on a route without rewrite: {r.body!r}")
    want = ["/h/headers?k=v /headers?k=v backend.internal:8080 200", "- /headers test.local 200"]
    got = poll(lambda: file_lines(log) if len(file_lines(log)) >= 2 else None, 5, what="two log lines")
    # Two workers write their lines each: in either order.
    check(sorted(got) == sorted(want), f"access log {got}, want {want}")


@_test
def rewrite_h2(env):
    """The same rewrite whatever the protocols: an HTTP/2 client to the HTTP/1.1
    upstream, an HTTP/1.1 client to an HTTP/2 upstream, HTTP/2 on both sides."""
    need_tools("h2", "curl")
    h2 = start_h2_upstream(env, "127.0.0.3", "h2up")
    gw = setup(env, REWRITES, h2_port=h2)
    rc, out, err = curl_h2(["--http2-prior-knowledge", f"http://127.0.0.1:{gw}/h/headers?k=v"], timeout=20)
    check(rc == 0, f"curl h2: rc {rc} {err}")
    lines = head_lines(out.encode("latin-1"))
    check(lines[0] == "get /headers?k=v http/1.1", f"h2 client, request line upstream: {lines[0]!r}")
    check("host: backend.internal:8080" in lines and "x-envoy-original-path: /h/headers?k=v" in lines,
          f"h2 client, head upstream: {lines}")
    for client in (["--http1.1"], ["--http2-prior-knowledge"]):
        rc, out, err = curl_h2(client + [f"http://127.0.0.1:{gw}/h2/x/y?z=1"], timeout=20)
        check(rc == 0, f"curl {client}: rc {rc} {err}")
        rep = info(out)
        check(rep["protocol"] == "HTTP/2" and rep["path"] == "/x/y?z=1" and rep["authority"] == "h2.backend",
              f"{client} to the HTTP/2 upstream: {rep}")
        hdrs = {k: v for k, v in rep["headers"]}
        check(hdrs.get("x-envoy-original-path") == "/h2/x/y?z=1", f"{client}: headers upstream {rep['headers']}")


# --------------------------------------------------------------------------- headers

HEADERS = (
    "  - match: [{uri: {prefix: /hdr/}}]\n    rewrite: {uri: /}\n"
    "    headers:\n"
    "      request:\n"
    "        set: {x-a: \"1\", x-forwarded-proto: https}\n"
    "        add: {x-b: \"2\"}\n"
    "        remove: [x-drop]\n"
    "      response:\n"
    "        remove: [server, x-r]\n"
    "        set: {x-resp: edited}\n"
    "        add: {x-extra: \"1\"}\n"
    "    route:\n"
    "    - destination: {host: " + SVC + "}\n"
    "      headers: {response: {set: {x-r: dest}}}\n"
    "  - match: [{uri: {prefix: /h2hdr/}}]\n    rewrite: {uri: /}\n"
    "    headers: {request: {set: {x-a: \"1\"}}, response: {add: {x-extra: \"1\"}}}\n" + dest(H2SVC) +
    "  - " + dest()[4:])

CLIENT_HEADERS = [("x-a", "c1"), ("x-a", "c2"), ("x-b", "c"), ("x-drop", "1"), ("x-keep", "k")]


def named(lines, name):
    return [l for l in lines if l.startswith(name + ":")]


def raw_answer(text):
    """The x-respond header that makes the C upstream's /raw send text verbatim."""
    return ("x-respond", text.encode("latin-1").hex())


UPSTREAM_ANSWER = "HTTP/1.1 200 OK\r\nServer: upstream/1.0\r\nx-resp: a\r\nx-r: up\r\ncontent-length: 2\r\n\r\nok"


@_test
def headers_request(env):
    """set replaces every instance (the upstream sees exactly one x-a: 1 when the
    client sent two), add appends, remove removes; set also replaces a field
    isthmus makes itself (x-forwarded-proto). A route without headers changes
    nothing."""
    gw = setup(env, HEADERS)
    with Conn("127.0.0.1", gw) as c:
        r = c.request("GET", "/hdr/headers", headers=CLIENT_HEADERS)
    check(r.status == 200, f"GET /hdr/headers: {r}")
    lines = head_lines(r.body)
    check(named(lines, "x-a") == ["x-a: 1"], f"x-a upstream: {named(lines, 'x-a')}")
    check(named(lines, "x-b") == ["x-b: c", "x-b: 2"], f"x-b upstream: {named(lines, 'x-b')}")
    check(named(lines, "x-drop") == [], f"x-drop reached the upstream: {lines}")
    check(named(lines, "x-keep") == ["x-keep: k"], f"x-keep upstream: {named(lines, 'x-keep')}")
    check(named(lines, "x-forwarded-proto") == ["x-forwarded-proto: https"],
          f"x-forwarded-proto upstream: {named(lines, 'x-forwarded-proto')}")
    with Conn("127.0.0.1", gw) as c:
        r = c.request("GET", "/headers", headers=CLIENT_HEADERS)
    lines = head_lines(r.body)
    check(named(lines, "x-a") == ["x-a: c1", "x-a: c2"] and named(lines, "x-drop") == ["x-drop: 1"] and
          named(lines, "x-forwarded-proto") == ["x-forwarded-proto: http"],
          f"a route without headers changed the request: {lines}")


@_test
def headers_response(env):
    """Server removed from the response, x-resp replaced, x-extra added; the
    destination's set of x-r and the route's remove of it in one parser
    (a single destination): removed first, then set. The body and its length
    are untouched; a route without headers changes nothing but the Server
    isthmus writes (spec.proxyHeaders.server)."""
    gw = setup(env, HEADERS)
    r = env.get("/hdr/raw", headers=dict([raw_answer(UPSTREAM_ANSWER)]))
    check(r.status == 200 and r.body == b"ok" and r.header("content-length") == "2", f"GET /hdr/raw: {r}")
    check(r.header_all("server") == [], f"Server still in the response: {r.headers}")
    check(r.header_all("x-resp") == ["edited"], f"x-resp: {r.header_all('x-resp')}")
    check(r.header_all("x-extra") == ["1"], f"x-extra: {r.header_all('x-extra')}")
    check(r.header_all("x-r") == ["dest"], f"x-r: {r.header_all('x-r')}")
    r = env.get("/raw", headers=dict([raw_answer(UPSTREAM_ANSWER)]))
    # Without edits of Server, spec.proxyHeaders.server replaces the upstream's (proxy_headers).
    check(r.header_all("server") == ["isthmus"] and r.header_all("x-extra") == [] and
          r.header_all("x-resp") == ["a"], f"a route without headers changed the response: {r.headers}")


@_test
def proxy_headers(env):
    """The fields isthmus writes itself (Istio's proxyHeaders, as Envoy's
    connection manager and router write them at an Istio gateway): Server on
    every answer, the upstream's replaced (isthmus by default; a route that
    edits Server decides it instead), and x-envoy-upstream-service-time on
    answers from upstreams, over HTTP/1.1 and HTTP/2; then, by reload,
    another server value with the debug headers off, and server disabled:
    the upstream's Server passes and answers made here have none."""
    routes = ("  - match: [{uri: {prefix: /set/}}]\n    rewrite: {uri: /}\n"
              "    headers: {response: {set: {server: by-route}}}\n" + dest() + "  - match: [{uri: {prefix: /raw}}]\n" + dest())
    gw = setup(env, routes)
    conf_path = env.path("isthmus.yaml")
    text = open(conf_path).read()
    answer = dict([raw_answer(UPSTREAM_ANSWER)])

    def get(path):
        return env.get(path, headers=answer)

    r = get("/raw")
    check(r.status == 200 and r.header_all("server") == ["isthmus"], f"default: {r.headers}")
    svc = r.header_all("x-envoy-upstream-service-time")
    check(len(svc) == 1 and svc[0].isdigit() and int(svc[0]) < 60000, f"service time: {r.headers}")
    r = get("/set/raw")
    check(r.header_all("server") == ["by-route"], f"a route's set of Server: {r.headers}")
    r = get("/nowhere")
    check(r.status == 404 and r.header_all("server") == ["isthmus"] and
          r.header_all("x-envoy-upstream-service-time") == [], f"an answer made here: {r.headers}")
    k, v = raw_answer(UPSTREAM_ANSWER)
    rc, out, err = curl(["--http2-prior-knowledge", "-s", "-D", "-", "-o", "/dev/null", "-H", f"{k}: {v}",
                         f"http://127.0.0.1:{gw}/raw"])
    head = out.lower()
    check(rc == 0 and head.count("\nserver: isthmus") == 1 and "upstream/1.0" not in head and
          "\nx-envoy-upstream-service-time: " in head, f"h2c: rc {rc} {out!r} {err}")
    rc, out, err = curl(["--http2-prior-knowledge", "-s", "-D", "-", "-o", "/dev/null",
                         f"http://127.0.0.1:{gw}/nowhere"])
    check(rc == 0 and "\nserver: isthmus" in out.lower(), f"h2c 404: rc {rc} {out!r} {err}")
    for extra, want_server, want_local, want_svc in (
            ("  proxyHeaders: {server: {value: edge-gw}, envoyDebugHeaders: {disabled: true}}\n",
             ["edge-gw"], ["edge-gw"], False),
            ("  proxyHeaders: {server: {disabled: true}}\n", ["upstream/1.0"], [], True)):
        env.write("isthmus.yaml", text.replace("  timeouts:", extra + "  timeouts:", 1))
        check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), f"reload with {extra} refused")
        r = get("/raw")
        check(r.header_all("server") == want_server and
              bool(r.header_all("x-envoy-upstream-service-time")) == want_svc, f"{extra}: {r.headers}")
        r = get("/nowhere")
        check(r.header_all("server") == want_local, f"{extra}: 404 {r.headers}")


@_test
def proxy_headers_forwarded(env):
    """Istio's proxyHeaders that change what the upstream gets: by default no
    X-Forwarded-Port or -Host, and an X-Request-Id of isthmus's in place of the
    client's; with xForwardedPort the port the client connected to (the
    client's replaced), with xForwardedHost the Host an authority rewrite
    replaced joins X-Forwarded-Host (not when it is already its last element),
    with requestId disabled the client's X-Request-Id passes and none is made."""
    routes = ("  - match: [{uri: {exact: /auth}}]\n    rewrite: {uri: /headers, authority: backend.example}\n" +
              dest() + "  - match: [{uri: {prefix: /headers}}]\n" + dest())
    gw = setup(env, routes)
    conf_path = env.path("isthmus.yaml")
    text = open(conf_path).read()

    def upstream_saw(path, headers):
        with Conn("127.0.0.1", gw) as c:
            r = c.request("GET", path, host="front.example:8080", headers=headers)
        check(r.status == 200, f"GET {path}: {r}")
        return head_lines(r.body)

    lines = upstream_saw("/auth", {"x-forwarded-port": "1", "x-request-id": "client-rid"})
    check(named(lines, "host") == ["host: backend.example"] and named(lines, "x-forwarded-host") == [] and
          named(lines, "x-forwarded-port") == ["x-forwarded-port: 1"], f"defaults: {lines}")
    rid = named(lines, "x-request-id")
    check(len(rid) == 1 and rid != ["x-request-id: client-rid"], f"default X-Request-Id: {rid}")
    extra = ("  proxyHeaders: {xForwardedPort: {enabled: true}, xForwardedHost: {enabled: true}, "
             "requestId: {disabled: true}}\n")
    env.write("isthmus.yaml", text.replace("  timeouts:", extra + "  timeouts:", 1))
    check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), "reload with the proxyHeaders refused")
    lines = upstream_saw("/auth", {"x-forwarded-port": "1", "x-request-id": "client-rid"})
    check(named(lines, "host") == ["host: backend.example"] and
          named(lines, "x-forwarded-host") == ["x-forwarded-host: front.example:8080"] and
          named(lines, "x-forwarded-port") == [f"x-forwarded-port: {gw}"] and
          named(lines, "x-request-id") == ["x-request-id: client-rid"], f"enabled: {lines}")
    lines = upstream_saw("/auth", {"x-forwarded-host": "a.example,front.example:8080"})
    check(named(lines, "x-forwarded-host") == ["x-forwarded-host: a.example,front.example:8080"],
          f"already the last element: {lines}")
    lines = upstream_saw("/auth", {"x-forwarded-host": "a.example"})
    check(named(lines, "x-forwarded-host") == ["x-forwarded-host: a.example", "x-forwarded-host: front.example:8080"],
          f"appended: {lines}")
    lines = upstream_saw("/headers", {})
    check(named(lines, "x-forwarded-host") == [] and named(lines, "x-request-id") == [] and
          named(lines, "host") == ["host: front.example:8080"], f"no rewrite, no client id: {lines}")


HTTP_DATE = re.compile(r"(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d\d (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) "
                       r"\d{4} \d\d:\d\d:\d\d GMT")


def date_now(values, what):
    """values (a field's values) is one IMF-fixdate within a minute of now."""
    check(len(values) == 1 and HTTP_DATE.fullmatch(values[0]), f"{what}: Date {values}")
    at = email.utils.parsedate_to_datetime(values[0]).timestamp()
    check(abs(at - time.time()) < 60, f"{what}: Date {values[0]} is not now")


@_test
def date_header(env):
    """A response without a Date gets one, as Envoy's connection manager adds
    it (RFC 9110 6.6.1): the upstream's when it has none, every answer made
    here, over HTTP/1.1 and HTTP/2; the upstream's own passes unchanged, and
    one the route's edits remove is replaced by isthmus's."""
    routes = ("  - match: [{uri: {prefix: /nodate/}}]\n    rewrite: {uri: /}\n"
              "    headers: {response: {remove: [date]}}\n" + dest() + "  - match: [{uri: {prefix: /raw}}]\n" + dest())
    gw = setup(env, routes)
    dated = UPSTREAM_ANSWER.replace("x-r: up\r\n", "x-r: up\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n")
    r = env.get("/raw", headers=dict([raw_answer(UPSTREAM_ANSWER)]))
    check(r.status == 200, f"GET /raw: {r}")
    date_now(r.header_all("date"), "HTTP/1.1, upstream without one")
    r = env.get("/raw", headers=dict([raw_answer(dated)]))
    check(r.header_all("date") == ["Sun, 06 Nov 1994 08:49:37 GMT"], f"the upstream's Date: {r.headers}")
    r = env.get("/nodate/raw", headers=dict([raw_answer(dated)]))
    date_now(r.header_all("date"), "HTTP/1.1, the upstream's removed by the route")
    r = env.get("/nowhere")
    check(r.status == 404, f"GET /nowhere: {r}")
    date_now(r.header_all("date"), "HTTP/1.1 404")
    for path, answer, what in (("/raw", UPSTREAM_ANSWER, "upstream without one"), ("/raw", dated, "dated upstream"),
                               ("/nowhere", None, "404")):
        extra = ["-H", "%s: %s" % raw_answer(answer)] if answer else []
        rc, out, err = curl(["--http2-prior-knowledge", "-s", "-D", "-", "-o", "/dev/null"] + extra +
                            [f"http://127.0.0.1:{gw}{path}"])
        dates = [ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.lower().startswith("date:")]
        check(rc == 0 and out.startswith("HTTP/2 "), f"h2c {path}: rc {rc} {out!r} {err}")
        if answer == dated:
            check(dates == ["Sun, 06 Nov 1994 08:49:37 GMT"], f"h2c, {what}: {out!r}")
        else:
            date_now(dates, f"h2c, {what}")


@_test
def headers_h2(env):
    """The same edits with an HTTP/2 client (request to the HTTP/1.1 upstream,
    response back over HTTP/2) and towards an HTTP/2 upstream."""
    need_tools("h2", "curl")
    h2 = start_h2_upstream(env, "127.0.0.3", "h2up")
    gw = setup(env, HEADERS, h2_port=h2)
    args = ["--http2-prior-knowledge"] + sum((["-H", f"{k}: {v}"] for k, v in CLIENT_HEADERS), [])
    rc, out, err = curl_h2(args + [f"http://127.0.0.1:{gw}/hdr/headers"], timeout=20)
    check(rc == 0, f"curl h2: rc {rc} {err}")
    lines = head_lines(out.encode("latin-1"))
    check(named(lines, "x-a") == ["x-a: 1"] and named(lines, "x-drop") == [] and
          named(lines, "x-b") == ["x-b: c", "x-b: 2"], f"h2 client, head upstream: {lines}")
    k, v = raw_answer(UPSTREAM_ANSWER)
    rc, out, err = curl_h2(["--http2-prior-knowledge", "-D", "-", "-H", f"{k}: {v}",
                            f"http://127.0.0.1:{gw}/hdr/raw"], timeout=20)
    head = out.lower()
    check(rc == 0 and head.startswith("http/2 200") and "\nserver:" not in head and
          "\nx-resp: edited" in head and "\nx-extra: 1" in head and "\nx-r: dest" in head and
          head.endswith("ok"), f"h2 client, response: rc {rc} {out!r} {err}")
    for client in (["--http1.1"], ["--http2-prior-knowledge"]):
        rc, out, err = curl_h2(client + ["-D", "-", "-H", "x-a: c1", "-H", "x-a: c2",
                                         f"http://127.0.0.1:{gw}/h2hdr/x"], timeout=20)
        check(rc == 0, f"curl {client}: rc {rc} {err}")
        head, _, body = out.replace("\r\n", "\n").partition("\n\n")
        rep = info(body)
        check([v for k, v in rep["headers"] if k == "x-a"] == ["1"], f"{client} to the HTTP/2 upstream: {rep}")
        check([v for k, v in rep["headers"] if k == "x-envoy-attempt-count"] == ["1"],
              f"{client}: the attempt's number to the HTTP/2 upstream: {rep}")
        check("\nx-extra: 1" in head.lower(), f"{client}: response head from the HTTP/2 upstream: {head!r}")


# --------------------------------------------------------------------------- redirect

REDIRECTS = (
    "  - match: [{uri: {prefix: /old/}}]\n"
    "    redirect: {uri: /new, redirectCode: 308}\n"
    "    headers: {response: {set: {x-r: \"1\"}}}\n"
    "  - match: [{uri: {prefix: /pre/}}]\n    redirect: {prefixRewrite: /post/}\n"
    "  - match: [{uri: {prefix: /secure/}}]\n    redirect: {scheme: https, derivePort: FROM_PROTOCOL_DEFAULT}\n"
    "  - match: [{uri: {prefix: /moved/}}]\n"
    "    redirect: {authority: new.example, derivePort: FROM_REQUEST_PORT, redirectCode: 302}\n"
    "  - " + dest()[4:])


OPERATORS = (
    "  - name: ops\n    match: [{uri: {prefix: /ops/}}]\n    rewrite: {uri: /}\n"
    "    headers:\n"
    "      request:\n"
    "        set:\n"
    "          x-client: \"%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%\"\n"
    "          x-client-full: \"%DOWNSTREAM_REMOTE_ADDRESS%\"\n"
    "          x-peer-port: \"%DOWNSTREAM_DIRECT_REMOTE_PORT%\"\n"
    "          x-local: \"%DOWNSTREAM_LOCAL_ADDRESS%\"\n"
    "          x-proto: \"%PROTOCOL%\"\n"
    "          x-ua: \"ua=%REQ(User-Agent)% is 100%%\"\n"
    "          x-ua3: \"%REQ(user-agent):3%\"\n"
    "          x-alt: \"%REQ(x-nope?:AUTHORITY)%\"\n"
    "          x-path: \"%REQ(:PATH)%\"\n"
    "          x-route: \"%ROUTE_NAME% %UPSTREAM_CLUSTER%\"\n"
    "          x-start: \"%START_TIME%\"\n"
    "          x-host: \"%HOSTNAME%\"\n"
    "          x-keep: \"%REQ(x-nope)%\"\n"
    "          x-sni: \"[%REQUESTED_SERVER_NAME%]\"\n"
    "        add: {x-tls: \"%DOWNSTREAM_TLS_VERSION%\"}\n"
    "      response:\n"
    "        set: {x-seen-client: \"%DOWNSTREAM_REMOTE_ADDRESS%\"}\n"
    + dest() +
    "  - name: answer\n    match: [{uri: {prefix: /answer}}]\n"
    "    directResponse: {status: 200, body: {string: ok}}\n"
    "    headers: {response: {set: {x-answer-for: \"%REQ(x-who)%\"}}}\n"
    "  - " + dest()[4:])


@_test
def headers_command_operators(env):
    """Envoy's command operators in header values, made for each request: the
    client's address (with and without port), the connection's local address
    and peer port, the protocol, request fields (pseudo-headers, an
    alternative, a length; the request as it came, before the route's
    rewrite, as Envoy makes a request's edits), the route and cluster, the
    start time, the host name; %% is a '%'. A value that comes out empty is not sent, and a set of
    it leaves the client's field (as Envoy skips the set); the TLS operators
    are empty on plaintext. Response edits and a route's own answer have
    them too. Operators isthmus does not make, and malformed ones, are errors
    naming the field."""
    import datetime
    import socket as pysocket

    gw = setup(env, OPERATORS)
    with Conn("127.0.0.1", gw, source=("127.0.0.7", 0)) as c:
        sport = c.sock.getsockname()[1]
        r = c.request("GET", "/ops/headers?q=1", "ops.example:81",
                      [("User-Agent", "probe/2"), ("x-keep", "mine")])
    check(r.status == 200, f"GET /ops/headers: {r}")
    lines = head_lines(r.body)

    def one(name):
        got = named(lines, name)
        check(len(got) == 1, f"{name} upstream: {got} in {lines}")
        return got[0].split(": ", 1)[1]

    check(one("x-client") == "127.0.0.7", f"x-client {one('x-client')}")
    check(one("x-client-full") == f"127.0.0.7:{sport}", f"x-client-full {one('x-client-full')}")
    check(one("x-peer-port") == str(sport), f"x-peer-port {one('x-peer-port')}")
    check(one("x-local") == f"127.0.0.1:{gw}", f"x-local {one('x-local')}")
    check(one("x-proto") == "http/1.1", f"x-proto {one('x-proto')}")
    check(one("x-ua") == "ua=probe/2 is 100%", f"x-ua {one('x-ua')}")
    check(one("x-ua3") == "pro", f"x-ua3 {one('x-ua3')}")
    check(one("x-alt") == "ops.example:81", f"x-alt {one('x-alt')}")
    # Made before the route's rewrite, as Envoy makes a request's edits.
    check(one("x-path") == "/ops/headers?q=1", f"x-path (before the rewrite) {one('x-path')}")
    check(one("x-route") == f"ops outbound|80||{SVC}", f"x-route {one('x-route')}")
    start = datetime.datetime.strptime(one("x-start"), "%Y-%m-%dt%H:%M:%S.%fz")
    age = abs((datetime.datetime.utcnow() - start).total_seconds())
    check(age < 60, f"x-start {one('x-start')} is not now")
    check(one("x-host") == pysocket.gethostname().lower(), f"x-host {one('x-host')}")
    check(one("x-keep") == "mine", f"a set that came out empty must leave the client's field: {one('x-keep')}")
    check(one("x-sni") == "[]", f"x-sni {one('x-sni')}")
    check(named(lines, "x-tls") == [], f"an empty add was sent: {named(lines, 'x-tls')}")
    check(r.header("x-seen-client") == f"127.0.0.7:{sport}", f"response x-seen-client {r.headers}")
    r = env.get("/answer", headers={"x-who": "alice"})
    check(r.status == 200 and r.body == b"ok" and r.header("x-answer-for") == "alice",
          f"a direct response's edits: {r} {r.headers}")
    # Over HTTP/2 (h2c), the protocol says so.
    rc, out, err = curl(["--http2-prior-knowledge", "-s", "-i", f"http://127.0.0.1:{gw}/ops/headers"])
    check(rc == 0 and "x-proto: HTTP/2" in out, f"h2c: rc {rc} {err} {out[:400]}")

    cases = (
        ("%UPSTREAM_TRANSPORT_FAILURE_REASON%", "not implemented yet in header values"),
        ("%NO_SUCH_THING%", "unknown command operator"),
        ("50% off", "a lone '%'"),
        ("%REQ%", "needs a name"),
        ("%PROTOCOL(x)%", "takes no argument"),
    )
    for i, (value, words) in enumerate(cases):
        routes = ("  - headers: {request: {set: {x-bad: \"" + value + "\"}}}\n" + dest())
        path = env.write(f"bad{i}.yaml", docs(appliance(env), gateway(gw), virtual_service("vs", ["*"], routes)))
        rc, out = env.check_config(path)
        line = next((l for l in out.splitlines() if words in l), "")
        check(rc != 0 and re.match(re.escape(path) + r":\d+:\d+: error: ", line) and
              "headers.request.set.x-bad" in line, f"{value!r}: want an error with {words!r}: rc {rc}\n{out}")
    routes = "  - headers: {request: {set: {host: \"%REQ(x-h)%\"}}}\n" + dest()
    path = env.write("badhost.yaml", docs(appliance(env), gateway(gw), virtual_service("vs", ["*"], routes)))
    rc, out = env.check_config(path)
    check(rc != 0 and "cannot hold command operators" in out, f"an authority with an operator: rc {rc}\n{out}")


@_test
def headers_response_operators(env):
    """The operators whose value is the upstream's answer, made when it
    comes, beside a request operator made when the request went: the
    endpoint that answered (with and without port, the port alone), the
    status, a response field (an alternative, a length). An empty one is not
    sent. In a request's headers they have no value yet (as in Envoy's
    router, which edits the request before it picks a host)."""
    routes = ("  - headers:\n"
              "      request:\n"
              "        set: {x-up-early: \"%UPSTREAM_HOST%\", x-code-early: \"[%RESPONSE_CODE%]\"}\n"
              "      response:\n"
              "        set:\n"
              "          x-served-by: \"%UPSTREAM_HOST%\"\n"
              "          x-up-ip: \"%UPSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%\"\n"
              "          x-up-port: \"%UPSTREAM_REMOTE_PORT%\"\n"
              "          x-code: \"%RESPONSE_CODE% for %REQ(x-who)% by %RESP(X-Upstream)%\"\n"
              "          x-alt: \"%RESP(x-nope?x-upstream):1%\"\n"
              "        add: {x-empty: \"%RESP(x-nope)%\"}\n" + dest())
    gw = setup(env, routes)
    up = env.up_port
    for path, status in (("/headers", 200), ("/status/404", 404)):
        r = env.get(path, headers={"x-who": "alice"})
        check(r.status == status, f"GET {path}: {r}")
        want = {"x-served-by": f"127.0.0.2:{up}", "x-up-ip": "127.0.0.2", "x-up-port": str(up),
                "x-code": f"{status} for alice by up", "x-alt": "u", "x-empty": None}
        got = {k: r.header(k) for k in want}
        check(got == want, f"GET {path}: response fields {got}, want {want}")
    r = env.get("/headers")
    lines = head_lines(r.body)
    check(named(lines, "x-up-early") == [] and named(lines, "x-code-early") == ["x-code-early: []"],
          f"the upstream got {named(lines, 'x-up-early')} {named(lines, 'x-code-early')}")
    rc, out, err = curl(["--http2-prior-knowledge", "-s", "-i", f"http://127.0.0.1:{gw}/headers"])
    check(rc == 0 and f"x-served-by: 127.0.0.2:{up}" in out and "x-code: 200 for  by up" in out,
          f"h2c: rc {rc} {err} {out[:600]}")


@_test
def headers_command_operators_proxy_protocol(env):
    """Behind a PROXY header, as Envoy names them: the remote address is the
    header's source, the local address its destination, and the direct
    remote address the connection's own peer."""
    routes = ("  - headers: {request: {set: {x-client: \"%DOWNSTREAM_REMOTE_ADDRESS%\", "
              "x-local: \"%DOWNSTREAM_LOCAL_ADDRESS%\", "
              "x-direct: \"%DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT%\"}}}\n" + dest())
    gw = setup(env, routes, app_extra="  gatewayTopology: {proxyProtocol: {}}\n")
    with Conn("127.0.0.1", gw, source=("127.0.0.8", 0)) as c:
        c.send(b"PROXY TCP4 192.0.2.1 198.51.100.1 1234 443\r\n")
        r = c.request("GET", "/headers", "pp.example")
    check(r.status == 200, f"GET /headers behind a PROXY header: {r}")
    lines = head_lines(r.body)
    got = {k: named(lines, k) for k in ("x-client", "x-local", "x-direct")}
    want = {"x-client": ["x-client: 192.0.2.1:1234"], "x-local": ["x-local: 198.51.100.1:443"],
            "x-direct": ["x-direct: 127.0.0.8"]}
    check(got == want, f"upstream got {got}, want {want}")


def upstream_count(env):
    return int(env.ctl("127.0.0.2", env.up_port, "count"))


@_test
def destination_port_from_listener(env):
    """A destination without port.number to a host of two ports goes to the
    port of the Gateway server the request came through (istiod's
    GetDestinationCluster): each listener reaches its own service port's
    endpoint port; a listener whose port the ServiceEntry lacks answers 503 NC
    (cluster_not_found, no upstream cluster in the log), as Envoy answers for
    a cluster istiod never made, and `isthmus -c` warns of it."""
    log = env.path("access.log")
    fmt = "%RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_CLUSTER% %RESPONSE_CODE_DETAILS% %REQ(:PATH)%"
    ups = env.upstream(["127.0.0.2:0=one", "127.0.0.2:0=two"], name="up")
    ports = [free_port() for _ in range(3)]
    gw = ("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  servers:\n" +
          "".join(f"  - port: {{number: {p}, name: http-{i}, protocol: HTTP}}\n    hosts: [\"*\"]\n"
                  for i, p in enumerate(ports)))
    se = (f"apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: svc}}\nspec:\n"
          f"  hosts: [{SVC}]\n  ports:\n  - {{number: {ports[0]}, name: one, protocol: HTTP}}\n"
          f"  - {{number: {ports[1]}, name: two, protocol: HTTP}}\n  resolution: STATIC\n"
          f"  endpoints:\n  - {{address: 127.0.0.2, ports: {{one: {ups['one']}, two: {ups['two']}}}}}\n")
    app = appliance(env, extra=f"  accessLog: {{path: {log}, format: text, textFormat: \"{fmt}\"}}\n")
    conf = env.write("isthmus.yaml", docs(app, gw, virtual_service("vs", ["*"], "  - " + dest()[4:]), se))
    rc, out = env.check_config(conf)
    check(rc == 0 and f"has no port {ports[2]}" in out and "503 NC" in out,
          f"isthmus -c: want a warning of port {ports[2]}, got {rc}: {out}")
    check(f"has no port {ports[0]}" not in out and f"has no port {ports[1]}" not in out, f"isthmus -c: {out}")
    env.start_gateway(conf, ports[0])
    for port, name in ((ports[0], "one"), (ports[1], "two")):
        r = poll(lambda: http_get(port, f"/{name}"), 10, what=f"an answer on port {port}")
        check(r.status == 200 and r.body.decode().strip() == f"{name} /{name}", f"port {port}: {r}")
    r = poll(lambda: http_get(ports[2], "/none"), 10, what=f"an answer on port {ports[2]}")
    check(r.status == 503 and r.body == b"cluster not found\n", f"port {ports[2]}: {r}")
    for port, want in ((ports[1], f"cluster outbound|{ports[1]}||{SVC}: 1 endpoints"),
                       (ports[2], f"no ServiceEntry has host {SVC} and port {ports[2]}: no such cluster (NC): the answer is 503")):
        ans = ctl_cmd(env.path("ctl.sock"), f"explain GET http://test.local:{port}/x")
        check(want in ans, f"explain on port {port}: want {want!r}: {ans}")
    want = [f"200 - outbound|{ports[0]}||{SVC} via_upstream /one",
            f"200 - outbound|{ports[1]}||{SVC} via_upstream /two",
            "503 NC - cluster_not_found /none"]
    got = poll(lambda: file_lines(log) if len(file_lines(log)) >= 3 else None, 5, what="three log lines")
    check(sorted(got) == sorted(want), f"access log: {got}, want {want}")


@_test
def redirect(env):
    """A 308 with Location http://host/new?query (uri replaces the whole path,
    the query kept), no body, the route's response headers, and no upstream
    request; prefixRewrite, scheme with derivePort FROM_PROTOCOL_DEFAULT (Envoy's
    port rules: :80 goes with the scheme change, :8080 stays), authority with
    FROM_REQUEST_PORT (the listener's port) and redirectCode 302; a HEAD gets the
    same head and the connection stays usable; the access log has the line."""
    log = env.path("access.log")
    fmt = "%RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_HOST% %REQ(:PATH)%"
    gw = setup(env, REDIRECTS, app_extra=f"  accessLog: {{path: {log}, format: text, textFormat: \"{fmt}\"}}\n")
    for path, host, status, loc in (
            ("/old/x?q=1", "test.local", 308, "http://test.local/new?q=1"),
            ("/pre/a/b?c", "test.local", 301, "http://test.local/post/a/b?c"),
            ("/secure/x", "shop.example:80", 301, "https://shop.example/secure/x"),
            ("/secure/x", "shop.example:8080", 301, "https://shop.example:8080/secure/x"),
            ("/moved/x", "test.local", 302, f"http://new.example:{gw}/moved/x")):
        r = env.get(path, host=host)
        check(r.status == status and r.header("location") == loc and r.body == b"" and
              r.header("content-length") == "0",
              f"GET {path} (Host {host}): want {status} to {loc}, got {r}")
    check(r.header("x-r") is None, f"another route's response headers: {r.headers}")
    r = env.get("/old/x")
    check(r.header_all("x-r") == ["1"], f"the redirect's response headers: {r.headers}")
    with Conn("127.0.0.1", gw) as c:
        r = c.request("HEAD", "/old/x")
        check(r.status == 308 and r.header("location") == "http://test.local/new", f"HEAD: {r}")
        r = c.request("GET", "/plain")
        check(r.status == 200 and r.body.decode().strip() == "up /plain", f"GET after the HEAD: {r}")
    check(upstream_count(env) == 1, f"the upstream got {upstream_count(env)} requests, want 1 (/plain)")
    got = poll(lambda: file_lines(log) if len(file_lines(log)) >= 8 else None, 5, what="eight log lines")
    check("308 - - /old/x?q=1" in got and "302 - - /moved/x" in got, f"access log: {got}")


@_test
def redirect_h2(env):
    """The redirect to an HTTP/2 client: the same status and Location."""
    need_tools("curl")
    gw = setup(env, REDIRECTS)
    rc, out, err = curl_h2(["--http2-prior-knowledge", "-D", "-", "-o", "/dev/null",
                            f"http://127.0.0.1:{gw}/old/x?q=1"], timeout=20)
    head = out.lower()
    check(rc == 0 and head.startswith("http/2 308") and f"\nlocation: http://127.0.0.1:{gw}/new?q=1" in head
          and "\nx-r: 1" in head, f"h2 redirect: rc {rc} {out!r} {err}")


EDGE = (
    "  - match: [{uri: {prefix: /xfp}, headers: {x-forwarded-proto: {exact: https}}}]\n"
    "    directResponse: {status: 200, body: {string: xfp-https}}\n"
    "  - match: [{uri: {prefix: /xfp}, headers: {x-forwarded-proto: {exact: http}}}]\n"
    "    directResponse: {status: 200, body: {string: xfp-http}}\n"
    "  - match: [{uri: {prefix: /a}, headers: {x-forwarded-for: {exact: \"1.2.3.4,127.0.0.1\"}}}]\n"
    "    directResponse: {status: 200, body: {string: xff-appended}}\n"
    "  - match: [{uri: {prefix: /xff}, headers: {x-forwarded-for: {exact: 127.0.0.1}}}]\n"
    "    directResponse: {status: 200, body: {string: xff-peer}}\n"
    "  - match: [{uri: {prefix: /rid}, headers: {x-request-id: {regex: \"[0-9a-f-]{36}\"}}}]\n"
    "    directResponse: {status: 200, body: {string: rid-made}}\n"
    "  - " + dest()[4:])


@_test
def route_matches_edge_fields(env):
    """Routes match X-Forwarded-Proto, X-Forwarded-For and X-Request-Id as
    Envoy's route table sees them, after its connection manager set them: the
    connection's scheme in place of the client's (no trusted proxy: a plaintext
    client that says https is http), the peer appended, the id made (in place
    of the client's). Matched on the client's, a spoofed X-Forwarded-Proto:
    https took a route meant for TLS, and a request without the field matched
    neither scheme; the upstream gets the same values."""
    setup(env, EDGE)
    for path, hdrs, want in (("/xfp", {"X-Forwarded-Proto": "https"}, b"xfp-http"),
                             ("/xfp", None, b"xfp-http"),
                             ("/a", {"X-Forwarded-For": "1.2.3.4"}, b"xff-appended"),
                             ("/xff", None, b"xff-peer"),
                             ("/rid", None, b"rid-made"), ("/rid", {"X-Request-Id": "mine"}, b"rid-made")):
        r = env.get(path, headers=hdrs)
        check(r.status == 200 and r.body == want, f"GET {path} {hdrs}: want {want!r}, got {r}")
    r = env.get("/headers", headers={"X-Forwarded-Proto": "https", "X-Forwarded-For": "1.2.3.4"})
    lines = head_lines(r.body)
    check("x-forwarded-proto: http" in lines and "x-forwarded-for: 1.2.3.4,127.0.0.1" in lines,
          f"what the upstream got: {lines}")


# --------------------------------------------------------------------------- directResponse

DIRECT = (
    "  - match: [{uri: {exact: /v1/getProductRatings}}]\n"
    "    directResponse: {status: 503, body: {string: \"unknown error\"}}\n"
    "  - match: [{uri: {exact: /json}}]\n"
    "    directResponse: {status: 200, body: {string: \"{\\\"error\\\": \\\"unknown error\\\"}\"}}\n"
    "    headers: {response: {set: {content-type: application/json}, add: {x-d: \"1\"}}}\n"
    "  - match: [{uri: {exact: /bytes}}]\n"
    "    directResponse: {status: 200, body: {bytes: \"dW5rbm93bgBlcnJvcg==\"}}\n"
    "  - match: [{uri: {exact: /empty}}]\n    directResponse: {status: 204}\n"
    "  - match: [{uri: {exact: /created}}]\n    directResponse: {status: 201}\n"
    "  - " + dest()[4:])


@_test
def direct_response(env):
    """A direct 503 with its body, text/plain and its length, no upstream
    request; the route's response headers (content-type replaced, one more
    field); a binary body from base64; 204 without a length or body; 201 with
    the request's URL as Location (Envoy's rule); HEAD: the length, no body, the
    connection reusable; the access log line without reason code."""
    log = env.path("access.log")
    fmt = "%RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_HOST% %BYTES_SENT% %REQ(:PATH)%"
    gw = setup(env, DIRECT, app_extra=f"  accessLog: {{path: {log}, format: text, textFormat: \"{fmt}\"}}\n")
    r = env.get("/v1/getProductRatings")
    check(r.status == 503 and r.body == b"unknown error" and r.header("content-length") == "13" and
          r.header_all("content-type") == ["text/plain"], f"GET /v1/getProductRatings: {r}")
    r = env.get("/json")
    check(r.status == 200 and r.body == b'{"error": "unknown error"}' and
          r.header_all("content-type") == ["application/json"] and r.header_all("x-d") == ["1"],
          f"GET /json: {r}")
    r = env.get("/bytes")
    check(r.status == 200 and r.body == b"unknown\x00error" and r.header("content-length") == "13",
          f"GET /bytes: {r}")
    r = env.get("/created")
    check(r.status == 201 and r.header("location") == "http://test.local/created" and r.body == b"" and
          r.header("content-length") == "0" and r.header("content-type") is None, f"GET /created: {r}")
    with Conn("127.0.0.1", gw) as c:
        r = c.request("GET", "/empty")
        check(r.status == 204 and r.header("content-length") is None, f"GET /empty: {r}")
        r = c.request("HEAD", "/v1/getProductRatings")
        check(r.status == 503 and r.header("content-length") == "13" and r.body == b"", f"HEAD: {r}")
        r = c.request("GET", "/plain")
        check(r.status == 200 and r.body.decode().strip() == "up /plain",
              f"GET after the HEAD on the same connection: {r}")
    check(upstream_count(env) == 1, f"the upstream got {upstream_count(env)} requests, want 1 (/plain)")
    got = poll(lambda: file_lines(log) if len(file_lines(log)) >= 7 else None, 5, what="seven log lines")
    # %BYTES_SENT% is the body: 13 bytes, none for HEAD.
    check("503 - - 13 /v1/getProductRatings" in got and "503 - - 0 /v1/getProductRatings" in got,
          f"access log: {got}")


def said(status):
    return f"    directResponse: {{status: 200, body: {{string: \"{status}\"}}}}\n"


@_test
def virtual_services_share_a_host(env):
    """Several VirtualServices binding one host to a gateway serve it
    together, as istiod builds the host's virtual host: each one's routes in
    turn (a VirtualService's routes after its first catch-all are left out:
    they can never match), then every catch-all route (no match, path prefix
    "/" or regex ".*" without header or query condition) moved behind the
    others. The router took the first VirtualService's routes alone, so its
    catch-all swallowed the others' routes and the second one's paths were
    404. Over HTTP and on an HTTPS server alike; a host served by one of them
    only keeps that one's routes."""
    from test_tls import Pki, client_ctx, gateway_of, server, tls_get
    up = env.upstream(["127.0.0.2:0=up"], name="up")["up"]
    pki = Pki(env)
    crt, key = pki.leaf("shop", ["DNS:shop.example.com", "DNS:*.example.org"])
    gw, tls_port = free_port(), free_port()
    vss = {
        "first": (["shop.example.com", "p.example.org", "q.example.org"],
                  "  - match: [{uri: {prefix: /a}}]\n" + said("first-a") +
                  "  - match: [{uri: {prefix: /}}]\n" + said("first-all") +
                  "  - match: [{uri: {prefix: /b}}]\n" + said("first-b")),
        "second": (["shop.example.com", "q.example.org"],
                   "  - match: [{uri: {prefix: /b}}]\n" + said("second-b") +
                   "  - match: [{uri: {regex: \".*\"}, headers: {x-h: {exact: \"1\"}}}]\n" + said("second-h") +
                   "  - match: [{uri: {prefix: /up}}]\n    route: [{destination: {host: shared.internal}}]\n" +
                   "  - match: [{uri: {prefix: /m}}, {uri: {regex: \".*\"}}, {uri: {prefix: /n}}]\n" +
                   said("second-mall")),
        "third": (["shop.example.com"],
                  "  - match: [{uri: {prefix: /n}}]\n" + said("third-n") +
                  "  - " + said("third-all")[4:]),
    }
    parts = [appliance(env),
             gateway_of(server(gw, ["*"], None, "HTTP"),
                        server(tls_port, ["*"], f"mode: SIMPLE, serverCertificate: {crt}, privateKey: {key}")),
             service_entry("shared", "shared.internal", [{"address": "127.0.0.2", "port": up}])]
    parts += [virtual_service(name, hosts, http) for name, (hosts, http) in vss.items()]
    env.start_gateway(env.write("isthmus.yaml", docs(*parts)), gw)
    ctx = client_ctx(pki)
    cases = [  # (host, path, headers, what answers)
        ("shop.example.com", "/a", None, "first-a"),
        ("shop.example.com", "/b", None, "second-b"),  # first's /b comes after its catch-all
        ("shop.example.com", "/zz", {"x-h": "1"}, "second-h"),  # a header condition is no catch-all
        ("shop.example.com", "/m1", None, "second-mall"),  # its matches before the catch-all stay
        ("shop.example.com", "/n", None, "third-n"),  # second's /n came after its catch-all match
        ("shop.example.com", "/zz", None, "first-all"),  # the catch-alls, in order
        ("shop.example.com", "/up/x", None, "up /up/x"),
        ("p.example.org", "/b", None, "first-all"),  # first's alone
        ("q.example.org", "/b", None, "second-b"),
        ("q.example.org", "/zz", None, "first-all"),
    ]
    for host, path, headers, want in cases:
        r = env.get(path, host=host, headers=headers)
        check(r.status == 200 and r.body.decode().strip() == want,
              f"HTTP {host}{path} {headers or ''}: want {want!r}, got {r}")
        if headers is None:
            r = tls_get(tls_port, host, ctx, path=path)
            check(r.status == 200 and r.body.decode().strip() == want,
                  f"HTTPS {host}{path}: want {want!r}, got {r}")


@_test
def header_matches_as_envoy(env):
    """Header conditions see the request as Envoy's header map does, over
    HTTP/1.1 and HTTP/2 alike: the pseudo-headers :method, :authority,
    :scheme and :path (the path with its query) match, and were never
    found; "host" is the :authority (Envoy's header map finds its :authority
    under that name), over HTTP/2 too; a withoutHeaders condition takes a missing header as
    the empty value (istiod's treat_missing_header_as_empty), so a pattern
    matching "" excludes requests without the header, and its regex "*" is
    istiod's presence match (it was refused)."""
    http = ("  - match: [{uri: {prefix: /m}, headers: {\":method\": {exact: GET}}}]\n" + said("method") +
            "  - match: [{headers: {\":path\": {regex: \"/p.*[?]x=1\"}}}]\n" + said("path") +
            "  - match: [{uri: {prefix: /a}, headers: {\":authority\": {prefix: \"a.\"}}}]\n" + said("authority") +
            "  - match: [{uri: {prefix: /s}, headers: {\":scheme\": {exact: http}}}]\n" + said("scheme") +
            "  - match: [{uri: {prefix: /w}, withoutHeaders: {\":method\": {exact: POST}}}]\n" + said("not-post") +
            "  - match: [{uri: {prefix: /h}, headers: {host: {prefix: \"a.\"}}}]\n" + said("host") +
            "  - match: [{uri: {prefix: /e}, withoutHeaders: {x-h: {exact: \"\"}}}]\n" + said("x-h-not-empty") +
            "  - match: [{uri: {prefix: /r}, withoutHeaders: {x-h: {regex: \".*\"}}}]\n" + said("x-h-never") +
            "  - match: [{uri: {prefix: /z}, withoutHeaders: {x-h: {regex: \"*\"}}}]\n" + said("x-h-absent") +
            "  - " + said("default")[4:])
    gw = free_port()
    conf = env.write("isthmus.yaml", docs(appliance(env), gateway(gw), virtual_service("vs", ["*"], http)))
    rc, out = env.check_config(conf)
    check(rc == 0 and "never a request's header" not in out, f"isthmus -c: valid, no warning: rc {rc}: {out}")
    env.start_gateway(conf, gw)
    cases = [  # (method, host, path, headers, want)
        ("GET", "a.example", "/m", [], "method"),
        ("POST", "a.example", "/m", [], "default"),
        ("GET", "a.example", "/px?x=1", [], "path"),
        ("GET", "a.example", "/px?x=2", [], "default"),
        ("GET", "a.example:8080", "/a", [], "authority"),
        ("GET", "b.example", "/a", [], "default"),
        ("GET", "a.example", "/s", [], "scheme"),
        ("GET", "a.example", "/w", [], "not-post"),
        ("POST", "a.example", "/w", [], "default"),
        ("GET", "a.example", "/h", [], "host"),
        ("GET", "b.example", "/h", [], "default"),
        ("GET", "a.example", "/e", [], "default"),
        ("GET", "a.example", "/e", ["x-h: "], "default"),
        ("GET", "a.example", "/e", ["x-h: 1"], "x-h-not-empty"),
        ("GET", "a.example", "/r", [], "default"),
        ("GET", "a.example", "/r", ["x-h: 1"], "default"),
        ("GET", "a.example", "/z", [], "x-h-absent"),
        ("GET", "a.example", "/z", ["x-h: 1"], "default"),
    ]
    for method, host, path, headers, want in cases:
        for proto in ("--http1.1", "--http2-prior-knowledge"):
            args = [proto, "-X", method, "-H", f"host: {host}", f"http://127.0.0.1:{gw}{path}"]
            for h in headers:
                args[1:1] = ["-H", h.replace(": ", ";") if h.endswith(": ") else h]
            rc, body, err = curl(args)
            check(rc == 0 and body.strip() == want, f"{proto} {method} {host}{path} {headers}: want {want!r}, "
                  f"got rc {rc} {body!r} {err}")


@_test
def direct_response_first_answer(env):
    """A direct response without body or field as the first answer of each
    worker (its scratch for the fields never used yet): answered, not 503."""
    gw = setup(env, DIRECT)
    for i in range(4):  # fresh connections: both workers get some
        with Conn("127.0.0.1", gw) as c:
            r = c.request("GET", "/empty")
        check(r.status == 204 and r.body == b"", f"GET /empty on connection {i}: {r}")


@_test
def direct_response_h2(env):
    """The direct response to an HTTP/2 client: status, body, content-length;
    HEAD gets the length and no body."""
    need_tools("curl")
    gw = setup(env, DIRECT)
    url = f"http://127.0.0.1:{gw}/v1/getProductRatings"
    rc, out, err = curl_h2(["--http2-prior-knowledge", "-D", "-", url], timeout=20)
    head, _, body = out.replace("\r\n", "\n").partition("\n\n")
    check(rc == 0 and head.lower().startswith("http/2 503") and "\ncontent-length: 13" in head.lower() and
          body == "unknown error", f"h2 direct response: rc {rc} {out!r} {err}")
    rc, out, err = curl_h2(["--http2-prior-knowledge", "-I", url], timeout=20)
    check(rc == 0 and out.lower().startswith("http/2 503") and "content-length: 13" in out.lower(),
          f"h2 HEAD: rc {rc} {out!r} {err}")


# --------------------------------------------------------------------------- Istio's reference

ISTIO_EXAMPLES = """\
  - match:
    - uri:
        prefix: /ratings
    rewrite:
      uri: /v1/bookRatings
""" + dest() + """\
  - match:
    - uri:
        exact: /v1/getProductRatings
    redirect:
      uri: /v1/bookRatings
      authority: newratings.default.svc.cluster.local
  - match:
    - uri:
        exact: /v1/getProductRatings/direct
    directResponse:
      status: 503
      body:
        string: "{\\"error\\": \\"unknown error\\"}"
    headers:
      response:
        set:
          content-type: "text/plain"
  - headers:
      request:
        set:
          test: "true"
    route:
    - destination:
        host: """ + SVC + """
      weight: 25
    - destination:
        host: """ + SVC + """
      headers:
        response:
          remove:
          - foo
      weight: 75
"""


@_test
def istio_reference_examples(env):
    """The examples of Istio's VirtualService reference behave as it says:
    /ratings rewritten to /v1/bookRatings, the redirect to
    newratings.default.svc.cluster.local/v1/bookRatings, the direct 503 with
    its body and the content-type the route sets, and the request header
    `test: true` on every request of the weighted route."""
    gw = setup(env, ISTIO_EXAMPLES)
    r = env.get("/ratings/7")
    check(r.body.decode().strip() == "up /v1/bookRatings/7", f"rewrite: {r}")
    r = env.get("/v1/getProductRatings")
    check(r.status == 301 and r.header("location") ==
          "http://newratings.default.svc.cluster.local/v1/bookRatings", f"redirect: {r}")
    r = env.get("/v1/getProductRatings/direct")
    check(r.status == 503 and r.body == b'{"error": "unknown error"}' and
          r.header_all("content-type") == ["text/plain"], f"direct response: {r}")
    for _ in range(8):
        lines = head_lines(env.get("/headers").body)
        check(named(lines, "test") == ["test: true"], f"headers.request.set test: {lines}")


# --------------------------------------------------------------------------- explain


@_test
def explain_route_actions(env):
    """isthmusctl explain says what the route's actions do, and real requests
    get exactly that: the rewritten path, the redirect's Location, the direct
    response."""
    routes = ("  - match: [{uri: {prefix: /api/}}]\n    rewrite: {uri: /, authority: backend.internal}\n" + dest() +
              "  - match: [{uri: {prefix: /old/}}]\n    redirect: {uri: /new, redirectCode: 308}\n"
              "  - match: [{uri: {exact: /gone}}]\n    directResponse: {status: 410, body: {string: gone}}\n")
    gw = setup(env, routes)

    def explain(path):
        p = subprocess.run([os.path.join(env.build, "isthmusctl"), "-s", env.path("ctl.sock"), "explain",
                            "GET", f"http://test.local:{gw}{path}"], stdout=subprocess.PIPE, timeout=30)
        check(p.returncode == 0, f"explain {path}: rc {p.returncode} {p.stdout!r}")
        return p.stdout.decode()

    out = explain("/api/x?q=1")
    check("rewrite: the upstream gets /x?q=1\n" in out and "(Host rewritten to backend.internal)" in out,
          f"explain /api/x: {out}")
    check(env.get("/api/x?q=1").body.decode().strip() == "up /x?q=1", "the request did not go as explained")
    out = explain("/old/a?b")
    check(f"redirect: the answer is 308 to http://test.local:{gw}/new?b\n" in out and "destination" not in out,
          f"explain /old/a: {out}")
    r = env.get("/old/a?b", host=f"test.local:{gw}")
    check(r.status == 308 and r.header("location") == f"http://test.local:{gw}/new?b", f"redirect: {r}")
    out = explain("/gone")
    check("directResponse: the answer is 410 with 4 bytes of body\n" in out, f"explain /gone: {out}")
    r = env.get("/gone")
    check(r.status == 410 and r.body == b"gone", f"direct response: {r}")


@_test
def partial_wildcard_hosts(env):
    """Partial wildcard hosts, which Istio takes in a VirtualService's hosts
    and a DestinationRule's host (and refused as not implemented yet): a
    VirtualService of "*-api.example.com" takes shop-api.example.com (the
    longest wildcard first, before "*.example.com", and by the listener's
    name index: more than 16 names), a name that only ends in "-api...."
    without a byte before it is not its; a DestinationRule of
    "*-db.internal" gives orders-db.internal its subsets, one of
    "*cache.internal" cache.internal its own (Istio's MostSpecificHostMatch
    takes the suffix itself)."""
    ports = env.upstream(["127.0.0.2:0=api", "127.0.0.3:0=web", "127.0.0.4:0=v1", "127.0.0.5:0=v2"], name="ups")
    gw = free_port()
    many = [f"h{i}.example.org" for i in range(16)]
    dr = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: db}\nspec:\n"
          "  host: \"*-db.internal\"\n  subsets:\n  - {name: v2, labels: {version: v2}}\n")
    dr_cache = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: cache}\n"
                "spec:\n  host: \"*cache.internal\"\n  subsets:\n  - {name: v1, labels: {version: v1}}\n")
    v1v2 = [{"address": "127.0.0.4", "port": ports["v1"], "labels": {"version": "v1"}},
            {"address": "127.0.0.5", "port": ports["v2"], "labels": {"version": "v2"}}]
    parts = [appliance(env), gateway(gw),
             virtual_service("api", ["*-api.example.com"], "  -" + dest("api.internal")[3:]),
             virtual_service("web", ["*.example.com"] + many, "  -" + dest("web.internal")[3:]),
             virtual_service("db", ["db.example.net"],
                             "  - route: [{destination: {host: orders-db.internal, subset: v2}}]\n"),
             service_entry("api", "api.internal", [{"address": "127.0.0.2", "port": ports["api"]}]),
             service_entry("web", "web.internal", [{"address": "127.0.0.3", "port": ports["web"]}]),
             virtual_service("cache", ["cache.example.net"],
                             "  - route: [{destination: {host: cache.internal, subset: v1}}]\n"),
             service_entry("db", "orders-db.internal", v1v2), service_entry("cache", "cache.internal", v1v2),
             dr, dr_cache]
    env.start_gateway(env.write("isthmus.yaml", docs(*parts)), gw)
    for host, want in (("shop-api.example.com", "api"), ("a.b-api.example.com", "api"),
                       ("shop.example.com", "web"), ("api.example.com", "web"), ("h3.example.org", "web")):
        r = poll(lambda: env.get("/", host=host), 10, what=f"an answer for {host}")
        check(r.status == 200 and r.header("x-upstream") == want,
              f"{host}: {r.status} from {r.header('x-upstream')}, want {want}")
    for _ in range(6):
        r = env.get("/", host="db.example.net")
        check(r.status == 200 and r.header("x-upstream") == "v2",
              f"subset v2 of orders-db.internal by the DestinationRule *-db.internal: {r.status} "
              f"from {r.header('x-upstream')}")
    for _ in range(6):
        r = env.get("/", host="cache.example.net")
        check(r.status == 200 and r.header("x-upstream") == "v1",
              f"subset v1 of cache.internal by the DestinationRule *cache.internal: {r.status} "
              f"from {r.header('x-upstream')}")
