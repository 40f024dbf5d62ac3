# SPDX-License-Identifier: Apache-2.0
"""Integration tests of AuthorizationPolicy action CUSTOM: an external HTTP
authorizer named by the Appliance's spec.extensionProviders[] (Istio's
meshConfig.extensionProviders envoyExtAuthzHttp), called as Envoy's ext_authz
filter (HTTP service) calls it at an Istio gateway: which requests are
checked; what the check request carries; what an allowing answer adds
upstream and downstream; what the client gets from a denying answer; errors,
timeouts, statusOnError and failOpen; the access log's UAEX flag and details
and the isthmus_ext_authz_total counters; CUSTOM before the JWT check, DENY
and ALLOW; HTTP/2 and gRPC; configuration errors and reloads.

The authorizer is tests/upstream/extauthz.py on 127.0.0.5, reached through a
ServiceEntry like any upstream; it decides by the x-authz* fields the client
sends (which the provider lists in includeRequestHeadersInCheck) and records
every check request it gets in a file of the test's directory. The upstream
"a" is upstream.c on 127.0.0.4. Registered into run.py's list by
register(test)."""

import base64
import hashlib
import hmac
import json
import os
import re
import threading
import time

from harness import (DEBIAN_PYTHON, Conn, Registry, TestFailure, appliance, build_request, check, ctl_cmd, curl, docs,
                     file_lines, free_port, http_get, no_panic_rule, poll, service_entry, service_entry_protocol,
                     virtual_service)
from test_authz import ROUTE_ALL, SVC, UP, check_denied, gateway_ports, policy, tcp_through, upstream_count
from test_h2 import TOOLS, check_grpc_local_error, dest_rule, h2_client, hdr, need_tools
from test_jwt import field, request_authn, seen
from test_tls import Pki
from test_tunnels import spawn_tool, tcp_backend

_test = Registry()
register = _test.register

AUTHZ_HOST = "ext-authz.auth.internal"
AUTHZ_ADDR = "127.0.0.5"
LOG_FORMAT = "%REQ(:METHOD)% %REQ(:PATH)% %PROTOCOL% %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS%"
# The check carries the x-authz* fields extauthz.py decides by (a prefix
# pattern), cookie, and fields ending in -tenant (a suffix pattern).
INCLUDE = ["x-authz*", "cookie", "*-tenant"]
RESULTS = ("ok", "denied", "error", "failure_mode_allowed")


# --------------------------------------------------------------------------- the authorizer


class Authorizer:
    """extauthz.py on AUTHZ_ADDR (a port of its own) and the check requests it recorded."""

    def __init__(self, env, name="authz", cert=None):
        self.record = env.path(f"{name}-checks.jsonl")
        argv = [DEBIAN_PYTHON, os.path.join(TOOLS, "extauthz.py"), "--listen", f"{AUTHZ_ADDR}:0",
                "--record", self.record, "--name", name]
        if cert:
            argv += ["--cert", cert[0], "--key", cert[1]]
        ports, self.proc = spawn_tool(env, f"extauthz-{name}", argv)
        self.port = ports["listening on"]

    def checks(self):
        return [json.loads(l) for l in file_lines(self.record)]

    def count(self):
        return len(file_lines(self.record))

    def one_since(self, before, what):
        """The one check request recorded since count() was before. extauthz.py
        records a check before it answers, so a check made for a request is
        on file by the time the gateway answers the client."""
        new = self.checks()[before:]
        check(len(new) == 1, f"{what}: want one check request, the authorizer got {len(new)}: {new}")
        return new[0]


def got(rec, name):
    """The values of the field name in a recorded check request."""
    return [v for k, v in rec["headers"] if k == name]


def ask(verdict, **more):
    """Request fields telling extauthz.py what to answer: ask("deny", status=401,
    body="no", set="a=1|b=2") → x-authz: deny, x-authz-status: 401, ..."""
    return [("x-authz", verdict)] + [(f"x-authz-{k}", str(v)) for k, v in more.items()]


# --------------------------------------------------------------------------- configuration


def provider(name="ext", service=AUTHZ_HOST, port=80, **fields):
    """One spec.extensionProviders[] entry of kind envoyExtAuthzHttp; fields
    written as YAML flow (JSON is)."""
    s = f"  - name: {name}\n    envoyExtAuthzHttp:\n      service: {service}\n      port: {port}\n"
    for k, v in fields.items():
        s += f"      {k}: {json.dumps(v)}\n"
    return s


def providers(*entries):
    return "  extensionProviders:\n" + "".join(entries)


def custom(name="ext-authz", rules="  rules: [{}]\n", provider_name="ext", ns="default"):
    """An AuthorizationPolicy with action CUSTOM naming provider_name."""
    return policy(name, f"  action: CUSTOM\n  provider: {{name: {provider_name}}}\n{rules}", ns=ns)


def config(env, prov, *extra_docs, gw, admin, log, up, authz_port, routes=ROUTE_ALL, health=(), workers=2):
    """The file: an Appliance with an admin listener, a text access log
    (LOG_FORMAT) and the providers prov; a plaintext Gateway on gw; routes to
    SVC (the upstream on UP:up); the authorizer's ServiceEntry (AUTHZ_HOST
    port 80 → AUTHZ_ADDR:authz_port); extra_docs."""
    extra = (f"  admin: {{address: 127.0.0.1:{admin}}}\n"
             f"  accessLog: {{path: {log}, format: text, textFormat: \"{LOG_FORMAT}\"}}\n" + prov)
    return docs(appliance(env, extra=extra, health_checks=health, workers=workers), gateway_ports([gw]),
                virtual_service("vs", ["*"], routes),
                service_entry("a", SVC, [{"address": UP, "port": up}]),
                service_entry("authz", AUTHZ_HOST, [{"address": AUTHZ_ADDR, "port": authz_port}]),
                *extra_docs)


class World:
    """The upstream "a" (every route goes to it) and the authorizer behind a
    plaintext gateway with an admin listener and a text access log
    (LOG_FORMAT). authz_port: where the authorizer's ServiceEntry points
    (default: the running extauthz.py)."""

    def __init__(self, env, prov, *extra_docs, routes=ROUTE_ALL, authz_port=None, health=(), cert=None, workers=2):
        self.env = env
        self.workers = workers
        self.authz = Authorizer(env, cert=cert)
        self.authz_port = authz_port or self.authz.port
        self.up = env.upstream([f"{UP}:0=a"], name="a")["a"]
        self.gw = free_port()
        self.admin = free_port()
        self.log = env.path("access.log")
        self.routes = routes
        self.health = health
        env.start_gateway(self.write(prov, *extra_docs), self.gw)
        poll(lambda: http_get(self.admin, "/metrics").status == 200, 5, what="the admin listener to answer")

    def text(self, prov, *extra_docs):
        return config(self.env, prov, *extra_docs, gw=self.gw, admin=self.admin, log=self.log, up=self.up,
                      authz_port=self.authz_port, routes=self.routes, health=self.health, workers=self.workers)

    def write(self, prov, *extra_docs):
        return self.env.write("isthmus.yaml", self.text(prov, *extra_docs))

    def reload(self, prov, *extra_docs, ok=True):
        self.write(prov, *extra_docs)
        ans = ctl_cmd(self.env.path("ctl.sock"), "reload")
        check(("published" in ans) == ok, f"reload {'refused' if ok else 'published'}: {ans!r}")

    def req(self, path, headers=None, method="GET", body=None, host="test.local"):
        """One request on a fresh connection."""
        with Conn("127.0.0.1", self.gw, timeout=10) as c:
            return c.request(method, path, host, headers, body)

    def upstream_count(self):
        return upstream_count(self.up)

    def log_line(self, method, path, proto="HTTP/1.1"):
        """The access-log line of the request (polled, bounded): [code, flags, details]."""
        prefix = f"{method} {path} {proto} "

        def find():
            return next((l for l in file_lines(self.log) if l.startswith(prefix)), None)
        try:
            line = poll(find, 5, what=f"the access-log line of {method} {path}")
        except TestFailure as e:
            raise TestFailure(f"{e}; the log has {file_lines(self.log)[-10:]}")
        return line[len(prefix):].split(" ")

    def check_log(self, method, path, code, flags, details, proto="HTTP/1.1"):
        got_ = self.log_line(method, path, proto)
        check(got_ == [str(code), flags, details],
              f"{method} {path}: want the access log to say {code} {flags} {details}, it says {' '.join(got_)}")

    def counters(self):
        """isthmus_ext_authz_total by result, from the admin /metrics (absent: 0)."""
        r = http_get(self.admin, "/metrics", addr="127.0.0.1")
        check(r.status == 200, f"/metrics answered {r}")
        out = {k: 0.0 for k in RESULTS}
        for line in r.body.decode().split("\n"):
            m = re.match(r"isthmus_ext_authz_total\{([^}]*)\} (\S+)$", line)
            if m:
                res = re.search(r'result="([^"]*)"', m.group(1))
                check(res and res.group(1) in RESULTS, f"isthmus_ext_authz_total with an unknown result: {line!r}")
                out[res.group(1)] += float(m.group(2))
        return out

    def wait_counters(self, before, **want):
        """Polls until isthmus_ext_authz_total grew from before by want ({result:
        n}) exactly, every other result unchanged."""
        want = {k: want.get(k, 0) for k in RESULTS}
        last = {}

        def grown():
            now = self.counters()
            last["d"] = {k: now[k] - before[k] for k in RESULTS}
            return last["d"] == want
        try:
            poll(grown, 5, what=f"isthmus_ext_authz_total to grow by {want}")
        except TestFailure as e:
            raise TestFailure(f"{e}: it grew by {last.get('d')}")


def check_upstream_served(r, path, what):
    check(r.status == 200 and r.header("x-upstream") == "a" and r.body == f"a {path}\n".encode(),
          f"{what}: want the upstream's 200 to {path}, got {r}")


def check_error_answer(r, status, what):
    """An authorizer error answered here: status, an empty body, no upstream."""
    check(r.status == status and r.body == b"" and r.header("x-upstream") is None
          and r.header("x-authz-name") is None,
          f"{what}: want {status} with an empty body (ext_authz error), got {r}")


# --------------------------------------------------------------------------- tests


@_test
def extauthz_matched_requests_only(env):
    """Only a request that a rule of the CUSTOM policy matches is checked: the
    authorizer gets a check for it and its answer decides; a request the rule
    leaves out (a path in notPaths, another host) is not checked — the
    authorizer's record shows no check — and reaches the upstream whatever
    x-authz says."""
    rules = '  rules:\n  - to: [{operation: {hosts: ["app.example.com"], notPaths: ["/public*"]}}]\n'
    w = World(env, providers(provider(includeRequestHeadersInCheck=INCLUDE)), custom(rules=rules))
    up0, n0 = w.upstream_count(), w.authz.count()
    r = w.req("/private/1", ask("deny", body="no entry"), host="app.example.com")
    check(r.status == 403 and r.body == b"no entry" and r.header("x-upstream") is None,
          f"a matched request the authorizer denies: want its 403 'no entry', got {r}")
    rec = w.authz.one_since(n0, "the matched request")
    check(rec["path"] == "/private/1", f"the check's path: {rec}")
    check(w.upstream_count() == up0, "the upstream saw the denied request")
    for path, host in (("/public/1", "app.example.com"), ("/publicity", "app.example.com"),
                       ("/private/2", "other.example.com")):
        n = w.authz.count()
        r = w.req(path, ask("deny", body="no entry"), host=host)
        check_upstream_served(r, path, f"{host}{path}, not matched by the rule")
        check(w.authz.count() == n, f"{host}{path} is not matched, yet the authorizer got a check: "
              f"{w.authz.checks()[n:]}")
    n = w.authz.count()
    r = w.req("/private/3", ask("allow"), host="app.example.com")
    check_upstream_served(r, "/private/3", "a matched request the authorizer allows")
    w.authz.one_since(n, "the allowed request")
    check(w.upstream_count() == up0 + 4, f"the upstream saw {w.upstream_count() - up0} requests, want 4")


@_test
def extauthz_additional_host(env):
    """An additional field named host replaces the check request's Host (the
    check carried two Host fields: the request's and the configured one)."""
    w = World(env, providers(provider(includeRequestHeadersInCheck=INCLUDE,
                                      includeAdditionalHeadersInCheck={"host": "authz.internal"})), custom())
    n = w.authz.count()
    r = w.req("/a", ask("allow"))
    check(r.status == 200 and r.header("x-upstream") == "a", f"the allowed request: {r}")
    rec = w.authz.one_since(n, "the request")
    check(got(rec, "host") == ["authz.internal"], f"the check's Host: {got(rec, 'host')}")


@_test
def extauthz_check_request(env):
    """The check request: the client's method; the path pathPrefix + the
    normalised path with its query; Host the request's authority as sent;
    authorization; the fields includeRequestHeadersInCheck names, by name,
    by prefix (x-authz*) and by suffix (*-tenant), values of one name joined
    with ","; no other client field; content-length 0 and no body although the
    client's request has one; includeAdditionalHeadersInCheck's fields, one
    replacing the client's field of that name. The upstream then gets the
    request whole."""
    prov = providers(provider(pathPrefix="/check", includeRequestHeadersInCheck=INCLUDE,
                              includeAdditionalHeadersInCheck={"x-authz-extra": "from-config", "x-added": "added"}))
    w = World(env, prov, custom())
    n = w.authz.count()
    hdrs = ask("allow") + [("Authorization", "Basic dXNlcjpwYXNz"), ("X-Authz-Multi", "one"),
                           ("X-Authz-Multi", "two"), ("X-Authz-Extra", "from-client"), ("Acme-Tenant", "t1"),
                           ("Cookie", "c=1; big=" + "k" * 16000), ("Other-Field", "secret"), ("X-Other", "secret"),
                           ("User-Agent", "test-agent/1.0"), ("Content-Type", "text/plain")]
    r = w.req("/private/../api/a%20b?x=1&y=two", hdrs, method="POST", body=b"q" * 1000,
              host="shop.example.com:8443")
    check(r.status == 200 and r.header("x-upstream") == "a" and r.body == b"a /api/a%20b?x=1&y=two\n",
          f"the allowed POST: want the upstream's 200, got {r}")
    rec = w.authz.one_since(n, "the POST")
    bad = []
    for name, want in (("host", ["shop.example.com:8443"]), ("authorization", ["Basic dXNlcjpwYXNz"]),
                       ("x-authz", ["allow"]), ("x-authz-multi", ["one,two"]), ("acme-tenant", ["t1"]),
                       ("cookie", ["c=1; big=" + "k" * 16000]), ("x-authz-extra", ["from-config"]),
                       ("x-added", ["added"]),
                       ("content-length", ["0"]), ("other-field", []), ("x-other", []), ("user-agent", []),
                       ("content-type", []), ("transfer-encoding", [])):
        if got(rec, name) != want:
            bad.append(f"{name}: want {str(want)[:100]}, got {str(got(rec, name))[:100]}")
    check(not bad, "the check request's fields: " + "; ".join(bad) + f" (all: {str(rec['headers'])[:1500]})")
    check(rec["method"] == "POST" and rec["path"] == "/check/api/a%20b?x=1&y=two" and rec["body_len"] == 0,
          f"the check request: want POST /check/api/a%20b?x=1&y=two without a body, got {rec}")
    # Another method, no authorization of the client's.
    n = w.authz.count()
    r = w.req("/d?", ask("allow"), method="DELETE")
    check(r.status == 200 and r.header("x-upstream") == "a", f"the allowed DELETE: {r}")
    rec = w.authz.one_since(n, "the DELETE")
    check(rec["method"] == "DELETE" and rec["path"] in ("/check/d?", "/check/d") and got(rec, "authorization") == []
          and got(rec, "host") == ["test.local"] and got(rec, "content-length") == ["0"] and rec["body_len"] == 0,
          f"the DELETE's check: {rec}")


@_test
def extauthz_rewrite_own_match(env):
    """A request that waits for its check keeps the match that chose its route:
    its prefix rewrite replaces its own route's prefix, /api/, after another
    request was routed by another route (/b) on the same worker meanwhile. It
    took the last one the worker had routed: /api/foo went upstream as
    /pi/foo."""
    route = f"    route: [{{destination: {{host: {SVC}}}}}]\n"
    routes = ("  - match: [{uri: {prefix: /api/}}]\n    rewrite: {uri: /}\n" + route +
              "  - match: [{uri: {prefix: /b}}]\n" + route)
    w = World(env, providers(provider(includeRequestHeadersInCheck=INCLUDE)), custom(), routes=routes, workers=1)
    before, slow = w.authz.count(), {}
    t = threading.Thread(target=lambda: slow.update(r=w.req("/api/foo?q=1", ask("slow", delay=600))), daemon=True)
    t.start()
    poll(lambda: w.authz.count() > before, 5, what="the slow check to reach the authorizer")
    r = w.req("/b/zz", ask("allow"))
    check(r.status == 200 and r.body == b"a /b/zz\n", f"the request routed meanwhile: {r}")
    t.join(10)
    r = slow.get("r")
    check(r is not None and r.status == 200 and r.body == b"a /foo?q=1\n",
          f"the request that waited for its check: want /foo?q=1 upstream, got {r}")


@_test
def extauthz_allowed(env):
    """An allowing answer (200): the fields headersToUpstreamOnAllow names (by
    name and by suffix) replace the client's of that name towards the upstream,
    without choosing the route again; those headersToDownstreamOnAllow names
    are added to the client's response (beside the upstream's of that name);
    the answer's other fields go nowhere. A POST body, plain or chunked, waits
    out the check (the authorizer answers after 300 ms) and reaches the
    upstream whole. Logged without a flag, via_upstream; counted ok."""
    prov = providers(provider(timeout="3s", includeRequestHeadersInCheck=INCLUDE,
                              headersToUpstreamOnAllow=["x-user", "*-role"],
                              headersToDownstreamOnAllow=["x-down*", "x-upstream"]))
    routes = (f"  - match: [{{headers: {{x-user: {{exact: admin}}}}}}]\n"
              f"    headers: {{request: {{set: {{x-route: admin}}}}}}\n"
              f"    route: [{{destination: {{host: {SVC}}}}}]\n" + ROUTE_ALL)
    w = World(env, prov, custom(), routes=routes)
    c0 = w.counters()
    sets = "x-user=admin|app-role=writer|x-notlisted=n|x-down-1=d1|x-down-2=d2"
    r = w.req("/headers", ask("allow", set=sets) + [("X-User", "mallory"), ("X-User", "mallory2"),
                                                    ("App-Role", "reader"), ("X-Keep", "kept")])
    _, fields = seen(r)
    bad = [f"{name}: want {want}, got {field(fields, name)}" for name, want in (
        ("x-user", ["admin"]), ("app-role", ["writer"]), ("x-keep", ["kept"]), ("x-notlisted", []),
        ("x-down-1", []), ("x-route", [])) if field(fields, name) != want]
    check(not bad, "what the upstream got: " + "; ".join(bad) + f" (all: {fields})")
    bad = [f"{name}: want {want}, got {r.header_all(name)}" for name, want in (
        ("x-down-1", ["d1"]), ("x-down-2", ["d2"]), ("x-user", []), ("app-role", []), ("x-notlisted", []),
        ("x-authz-name", [])) if r.header_all(name) != want]
    check(not bad, "the client's response: " + "; ".join(bad) + f" ({r.headers})")
    # A listed field the answer does not have: the client's stays.
    _, fields = seen(w.req("/headers", ask("allow", set="x-user=bob") + [("App-Role", "reader")]))
    check(field(fields, "app-role") == ["reader"] and field(fields, "x-user") == ["bob"],
          f"a field of headersToUpstreamOnAllow the answer lacks: the client's stays: {fields}")
    # Added, not replacing: the upstream's x-upstream stays beside the authorizer's.
    r = w.req("/added", ask("allow", set="x-upstream=authz"))
    check(r.status == 200 and sorted(r.header_all("x-upstream")) == ["a", "authz"],
          f"headersToDownstreamOnAllow adds to the response: want x-upstream a and authz, got {r}")
    # A body waits out the check, then reaches the upstream whole.
    body = bytes(ord("a") + i % 26 for i in range(300_000))
    n = w.authz.count()
    r = w.req("/echo", ask("slow", delay=300), method="POST", body=body)
    check(r.status == 200 and r.body == body, f"a 300 kB POST body through a 300 ms check: {r.status}, "
          f"{len(r.body)} bytes back, equal: {r.body == body}")
    rec = w.authz.one_since(n, "the POST to /echo")
    check(rec["body_len"] == 0 and got(rec, "content-length") == ["0"], f"the body went to the authorizer: {rec}")
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in (b"hello ", b"chunked ", b"world")) + b"0\r\n\r\n"
    r = w.req("/echo", ask("slow", delay=300) + [("Transfer-Encoding", "chunked")], method="POST", body=chunks)
    check(r.status == 200 and r.body == b"hello chunked world", f"a chunked POST body through the check: {r}")
    w.check_log("GET", "/headers", 200, "-", "via_upstream")
    w.wait_counters(c0, ok=5)


@_test
def extauthz_denied(env):
    """A denying answer (any status but 200 below 500: 401, 302, 403, 429,
    201) is the client's answer: its status, its body, and without
    headersToDownstreamOnDeny all its fields but host (the framing aside);
    with the list, the fields it names and www-authenticate and location, no
    other. The upstream never sees a denied request; its access-log line has
    UAEX and ext_authz_denied; isthmus_ext_authz_total counts it denied."""
    w = World(env, providers(provider(includeRequestHeadersInCheck=INCLUDE)), custom())
    up0, c0 = w.upstream_count(), w.counters()
    cases = [
        ("/d/401", ask("deny", status=401, body="login first",
                       set='www-authenticate=Bearer realm="x"|x-secret=s1|content-type=text/plain; charset=utf-8'
                           '|host=evil.example'),
         401, b"login first", {"www-authenticate": ['Bearer realm="x"'], "x-secret": ["s1"],
                               "content-type": ["text/plain; charset=utf-8"], "host": [], "x-authz-name": ["authz"]}),
        ("/d/302", ask("deny", status=302,
                       set="location=https://login.example.com/?next=/app|set-cookie=sid=1; Path=/; HttpOnly"
                           "|set-cookie=tr=2"),
         302, b"", {"location": ["https://login.example.com/?next=/app"],
                    "set-cookie": ["sid=1; Path=/; HttpOnly", "tr=2"]}),
        ("/d/403", ask("deny", status=403, body="forbidden by policy", set="content-type=text/html"),
         403, b"forbidden by policy", {"content-type": ["text/html"]}),
        ("/d/429", ask("deny", status=429, body="slow down", set="retry-after=7"),
         429, b"slow down", {"retry-after": ["7"]}),
        ("/d/201", ask("deny", status=201, body="not 200"), 201, b"not 200", {}),
    ]
    for path, hdrs, status, body, fields in cases:
        r = w.req(path, hdrs)
        bad = [f"{k}: want {v}, got {r.header_all(k)}" for k, v in fields.items() if r.header_all(k) != v]
        check(r.status == status and r.body == body and r.header("x-upstream") is None and not bad,
              f"{path}: want {status} {body!r} with {fields}: got {r} ({'; '.join(bad)})")
    check(w.upstream_count() == up0, "the upstream saw a denied request")
    for path, _, status, _, _ in cases:
        w.check_log("GET", path, status, "UAEX", "ext_authz_denied")
    w.wait_counters(c0, denied=len(cases))
    # A POST denied: its body is not needed, the answer still comes whole.
    r = w.req("/d/post", ask("deny", status=401, body="no"), method="POST", body=b"x" * 5000)
    check(r.status == 401 and r.body == b"no", f"a denied POST: {r}")
    # A body of 60,000 bytes (under the 64 KiB an answer may have) comes whole.
    r = w.req("/d/big", ask("deny", status=403, body="big", pad=60_000))
    check(r.status == 403 and r.body == b"big" + b"z" * 60_000, f"a denial with a 60 kB body: {r.status}, "
          f"{len(r.body)} bytes")
    # HEAD: the answer's status and fields, no body; the connection goes on.
    with Conn("127.0.0.1", w.gw) as c:
        r = c.request("HEAD", "/d/head", "test.local", ask("deny", status=401, body="not for HEAD", set="x-h=1"))
        check(r.status == 401 and r.header_all("x-h") == ["1"], f"a denied HEAD: {r}")
        r = c.request("GET", "/d/after-head", "test.local", ask("allow"))
        check_upstream_served(r, "/d/after-head", "the request after a denied HEAD on its connection")

    w.reload(providers(provider(includeRequestHeadersInCheck=INCLUDE, headersToDownstreamOnDeny=["x-keep", "set-c*"])),
             custom())
    r = w.req("/d/list", ask("deny", status=401, body="listed",
                             set="www-authenticate=Basic|location=/login|x-keep=k|x-secret=s|set-cookie=a=1"))
    want = {"www-authenticate": ["Basic"], "location": ["/login"], "x-keep": ["k"], "set-cookie": ["a=1"],
            "x-secret": [], "x-authz-name": []}
    bad = [f"{k}: want {v}, got {r.header_all(k)}" for k, v in want.items() if r.header_all(k) != v]
    check(r.status == 401 and r.body == b"listed" and not bad,
          f"with headersToDownstreamOnDeny: {'; '.join(bad)}: {r}")
    check(w.upstream_count() == up0 + 1, "the upstream saw a denied request (it saw /d/after-head only)")


@_test
def extauthz_errors(env):
    """Authorizer errors, each answered 403 with an empty body (UAEX,
    ext_authz_error; counted error) and not sent upstream: a 500, a 503, no
    answer within the provider's timeout (500 ms: the answer comes well before
    the authorizer's 5 s), a reset, a close without an answer, an allowing
    answer whose body is over 64 KiB (one of 1000 bytes is fine). A check
    after the timed-out one gets its own answer. statusOnError "503" answers
    503; failOpen lets an error through to the upstream without the
    authorizer's fields (counted failure_mode_allowed) while a denial still
    denies."""
    def prov(**more):
        return providers(provider(timeout="500ms", includeRequestHeadersInCheck=INCLUDE,
                                  headersToUpstreamOnAllow=["x-user"], **more))
    w = World(env, prov(), custom())
    up0, c0 = w.upstream_count(), w.counters()
    cases = [("/e/500", ask("error")), ("/e/503", ask("error", status=503)), ("/e/reset", ask("reset")),
             ("/e/close", ask("close")), ("/e/big", ask("allow", pad=70_000))]
    for path, hdrs in cases:
        check_error_answer(w.req(path, hdrs), 403, path)
    t0 = time.monotonic()
    r = w.req("/e/slow", ask("slow", delay=5000, set="x-user=slow"))
    took = time.monotonic() - t0
    check_error_answer(r, 403, "an authorizer slower than the timeout")
    check(0.45 <= took < 4.0, f"the timeout is 500 ms: the error came after {took:.2f} s")
    check(w.upstream_count() == up0, "the upstream saw a request the authorizer failed")
    # The next check is answered by its own answer, not by the late one.
    _, fields = seen(w.req("/headers", ask("allow", set="x-user=fresh") + [("X-User", "client")]))
    check(field(fields, "x-user") == ["fresh"], f"the check after a timeout: the upstream got {fields}")
    r = w.req("/e/padded", ask("allow", pad=1000))
    check_upstream_served(r, "/e/padded", "an allowing answer with a 1000-byte body")
    for path, _ in cases + [("/e/slow", None)]:
        w.check_log("GET", path, 403, "UAEX", "ext_authz_error")
    w.wait_counters(c0, error=len(cases) + 1, ok=2)

    w.reload(prov(statusOnError="503"), custom())
    check_error_answer(w.req("/e2/500", ask("error")), 503, "statusOnError 503, a 500")
    check_error_answer(w.req("/e2/slow", ask("slow", delay=5000)), 503, "statusOnError 503, too slow")
    w.check_log("GET", "/e2/500", 503, "UAEX", "ext_authz_error")

    w.reload(prov(failOpen=True), custom())
    c1 = w.counters()
    _, fields = seen(w.req("/headers", ask("error", set="x-user=from-authz") + [("X-User", "client")]))
    check(field(fields, "x-user") == ["client"], f"failOpen: the upstream gets no field of the failed answer: {fields}")
    r = w.req("/e3/slow", ask("slow", delay=5000))
    check_upstream_served(r, "/e3/slow", "failOpen, too slow")
    r = w.req("/e3/deny", ask("deny", status=401, body="still no"))
    check(r.status == 401 and r.body == b"still no", f"failOpen does not open a denial: {r}")
    w.check_log("GET", "/e3/slow", 200, "-", "via_upstream")
    w.wait_counters(c1, failure_mode_allowed=2, denied=1)


@_test
def extauthz_authorizer_down(env):
    """Nothing listens where the authorizer's ServiceEntry points: a checked
    request is answered 403 with an empty body (UAEX, ext_authz_error; counted
    error); a request the rule does not match is served; with failOpen it goes
    on to the upstream (counted failure_mode_allowed)."""
    dead = free_port(AUTHZ_ADDR)
    rules = '  rules: [{to: [{operation: {notPaths: ["/open*"]}}]}]\n'

    def prov(**more):
        return providers(provider(timeout="2s", includeRequestHeadersInCheck=INCLUDE, **more))
    w = World(env, prov(), custom(rules=rules), authz_port=dead)
    up0, c0 = w.upstream_count(), w.counters()
    check_error_answer(w.req("/down/1", ask("allow")), 403, "the authorizer down")
    check_error_answer(w.req("/down/2", ask("allow")), 403, "the authorizer down, again")
    check(w.upstream_count() == up0, "the upstream saw a request that could not be checked")
    check_upstream_served(w.req("/open/1", ask("allow")), "/open/1", "a request the rule does not match")
    w.check_log("GET", "/down/1", 403, "UAEX", "ext_authz_error")
    w.wait_counters(c0, error=2)
    w.reload(prov(failOpen=True), custom(rules=rules))
    c1 = w.counters()
    check_upstream_served(w.req("/down/3", ask("allow")), "/down/3", "failOpen with the authorizer down")
    w.wait_counters(c1, failure_mode_allowed=1)
    check(w.authz.count() == 0, f"the authorizer that is not named got checks: {w.authz.checks()}")


def total(text, name, **labels):
    """The sum of the samples of name whose labels include labels, in the /metrics text."""
    out = 0.0
    for m in re.finditer(r"^" + re.escape(name) + r"\{([^}]*)\} (\S+)$", text, re.M):
        have = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(1)))
        if all(have.get(k) == v for k, v in labels.items()):
            out += float(m.group(2))
    return out


@_test
def extauthz_counters_and_log(env):
    """isthmus_ext_authz_total{result} on the admin /metrics is a counter (one
    # TYPE line) and counts each outcome once, whichever worker checked: 3 ok,
    2 denied, 2 errors; requests not checked count nothing. The denied and
    refused requests are in the listener's and the route's 4xx responses. The access log's
    lines: an allowed request via_upstream without a flag, a denied one UAEX
    ext_authz_denied, an error UAEX ext_authz_error."""
    rules = '  rules: [{to: [{operation: {notPaths: ["/free*"]}}]}]\n'
    w = World(env, providers(provider(timeout="500ms", includeRequestHeadersInCheck=INCLUDE)), custom(rules=rules))
    c0 = w.counters()
    for i in range(3):
        check(w.req(f"/c/ok{i}", ask("allow")).status == 200, "an allowed request")
    for i in range(2):
        check(w.req(f"/c/deny{i}", ask("deny", status=401)).status == 401, "a denied request")
        check(w.req(f"/c/err{i}", ask("error")).status == 403, "an authorizer error")
    for i in range(4):
        check(w.req(f"/free/{i}", ask("deny")).status == 200, "a request not checked")
    w.wait_counters(c0, ok=3, denied=2, error=2)
    seen_ = {}

    def classes():
        text = http_get(w.admin, "/metrics").body.decode()
        for name in ("isthmus_listener_responses_total", "isthmus_route_responses_total"):
            seen_[name] = {cls: total(text, name, code_class=cls) for cls in ("2xx", "4xx")}
        return all(v == {"2xx": 7, "4xx": 4} for v in seen_.values())
    try:
        poll(classes, 5, what="the listener's and the route's responses: 7 2xx, 4 4xx (2 denied 401, 2 errors 403)")
    except TestFailure as e:
        raise TestFailure(f"{e}: {seen_}")
    text = http_get(w.admin, "/metrics").body.decode()
    types = re.findall(r"^# TYPE isthmus_ext_authz_total (\S+)$", text, re.M)
    check(types == ["counter"], f"want one '# TYPE isthmus_ext_authz_total counter' line, got {types}")
    w.check_log("GET", "/c/ok0", 200, "-", "via_upstream")
    w.check_log("GET", "/c/deny1", 401, "UAEX", "ext_authz_denied")
    w.check_log("GET", "/c/err1", 403, "UAEX", "ext_authz_error")
    w.check_log("GET", "/free/0", 200, "-", "via_upstream")


@_test
def extauthz_before_deny_and_allow(env):
    """CUSTOM is evaluated first: a request the authorizer allows is then
    judged by the DENY and ALLOW policies (403 "RBAC: access denied", with
    the DENY rule's details, or [none] when no ALLOW rule matches), after the
    authorizer was asked; a request the authorizer denies gets the
    authorizer's answer even where a DENY policy matches it too."""
    deny = policy("deny-blocked", '  action: DENY\n  rules: [{to: [{operation: {paths: ["/blocked*"]}}]}]\n')
    allow = policy("allow-some", '  rules: [{to: [{operation: {paths: ["/blocked*", "/ok*"]}}]}]\n')
    w = World(env, providers(provider(includeRequestHeadersInCheck=INCLUDE)), custom(), deny, allow)
    up0 = w.upstream_count()
    n = w.authz.count()
    check_denied(w.req("/blocked/1", ask("allow")), "allowed by the authorizer, denied by the DENY policy")
    w.authz.one_since(n, "/blocked/1 (the authorizer is asked first)")
    w.check_log("GET", "/blocked/1", 403, "-",
                "rbac_access_denied_matched_policy[ns[default]-policy[deny-blocked]-rule[0]]")
    r = w.req("/blocked/2", ask("deny", status=401, body="authz says no"))
    check(r.status == 401 and r.body == b"authz says no", f"denied by the authorizer and by DENY: want the "
          f"authorizer's 401, got {r}")
    w.check_log("GET", "/blocked/2", 401, "UAEX", "ext_authz_denied")
    check_denied(w.req("/other", ask("allow")), "allowed by the authorizer, no ALLOW rule matches")
    w.check_log("GET", "/other", 403, "-", "rbac_access_denied_matched_policy[none]")
    r = w.req("/other2", ask("deny", status=429, body="later"))
    check(r.status == 429 and r.body == b"later", f"denied by the authorizer, no ALLOW rule: {r}")
    check(w.upstream_count() == up0, "the upstream saw a denied request")
    check_upstream_served(w.req("/ok/1", ask("allow")), "/ok/1", "allowed by the authorizer and by ALLOW")
    check(w.upstream_count() == up0 + 1, "the upstream's count")


@_test
def extauthz_dry_run_and_tcp(env):
    """A CUSTOM policy annotated istio.io/dry-run calls the authorizer all the
    same (its denial is the client's answer). On a TCP server a CUSTOM policy
    does nothing: connections pass through to the backend and the authorizer
    gets no check."""
    dry = policy("ext-authz", "  action: CUSTOM\n  provider: {name: ext}\n  rules: [{}]\n", dry_run=True)
    w = World(env, providers(provider(includeRequestHeadersInCheck=INCLUDE)), dry)
    n = w.authz.count()
    r = w.req("/dry/1", ask("deny", status=401, body="dry but no"))
    check(r.status == 401 and r.body == b"dry but no", f"a dry-run CUSTOM policy: want the authorizer's 401: {r}")
    w.authz.one_since(n, "the dry-run CUSTOM policy")
    check_upstream_served(w.req("/dry/2", ask("allow")), "/dry/2", "allowed under a dry-run CUSTOM policy")

    be = tcp_backend(env, "t", UP)
    tcp = free_port()
    host = "tcp.test.internal"
    vs = ("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: tcp}\nspec:\n"
          f"  hosts: [\"*\"]\n  gateways: [tcpgw]\n  tcp:\n"
          f"  - route: [{{destination: {{host: {host}, port: {{number: 80}}}}}}]\n")
    gw = gateway_ports([tcp], "TCP").replace("name: gw}", "name: tcpgw}")
    text = docs(appliance(env, extra=providers(provider(includeRequestHeadersInCheck=INCLUDE))), gw, vs,
                service_entry_protocol("t", host, [{"address": UP, "port": be.port}], "TCP"),
                service_entry("authz", AUTHZ_HOST, [{"address": AUTHZ_ADDR, "port": w.authz.port}]), custom())
    env.gateway.p.terminate()
    env.gateway.p.wait(10)
    n = w.authz.count()
    env.start_gateway(env.write("tcp.yaml", text), tcp)
    tcp_through(tcp, "127.0.0.1")
    check(w.authz.count() == n, f"a TCP connection under a CUSTOM policy was checked: {w.authz.checks()[n:]}")


@_test
def extauthz_no_healthy_endpoint(env):
    """The authorizer's only endpoint is unhealthy (its health check, GET
    /healthz, gets extauthz.py's 403; its DestinationRule's outlierDetection
    leaves no panic threshold): a checked request is an error (403, empty
    body, UAEX ext_authz_error) without a check being sent, and a request the
    rule does not match is served."""
    rules = '  rules: [{to: [{operation: {notPaths: ["/open*"]}}]}]\n'
    w = World(env, providers(provider(timeout="2s", includeRequestHeadersInCheck=INCLUDE)), custom(rules=rules),
              no_panic_rule("authz", AUTHZ_HOST), health=[AUTHZ_HOST])

    def unhealthy():
        text = http_get(w.admin, "/metrics").body.decode()
        return re.search(r'^isthmus_endpoint_healthy\{[^}]*service="' + re.escape(AUTHZ_HOST) + r'"[^}]*\} 0$',
                         text, re.M) and any(c["path"] == "/healthz" for c in w.authz.checks())
    poll(unhealthy, 5, what="the authorizer's endpoint unhealthy in /metrics, after a health check")
    c0 = w.counters()
    check_error_answer(w.req("/uh/1", ask("allow")), 403, "no healthy authorizer")
    check_upstream_served(w.req("/open/1", ask("allow")), "/open/1", "a request the rule does not match")
    asked = [c for c in w.authz.checks() if c["path"] != "/healthz"]
    check(asked == [], f"a check went to the unhealthy authorizer: {asked}")
    w.check_log("GET", "/uh/1", 403, "UAEX", "ext_authz_error")
    w.wait_counters(c0, error=1)


@_test
def extauthz_authorizer_tls(env):
    """The check goes through the authorizer's cluster as any route to it
    would: with a DestinationRule originating TLS (SIMPLE, the test CA), the
    authorizer gets its checks over TLS and decides; with a CA that did not
    sign its certificate, every check is an error (403, empty body, UAEX
    ext_authz_error) and the authorizer decides nothing."""
    pki = Pki(env)
    cert = pki.leaf("authz", [f"DNS:{AUTHZ_HOST}"], key="ec")
    pki.ca("other")
    prov = providers(provider(timeout="2s", includeRequestHeadersInCheck=INCLUDE))

    def dr(ca):
        return dest_rule("authz-tls", AUTHZ_HOST, tls=f"mode: SIMPLE, caCertificates: {pki.ca(ca)}, sni: {AUTHZ_HOST}")
    w = World(env, prov, custom(), dr("ca"), cert=cert)
    n = w.authz.count()
    r = w.req("/tls/1", ask("deny", status=401, body="over tls"))
    check(r.status == 401 and r.body == b"over tls", f"the authorizer over TLS denies: {r}")
    rec = w.authz.one_since(n, "the check over TLS")
    check(rec["tls"], f"the check did not come over TLS: {rec}")
    check_upstream_served(w.req("/tls/2", ask("allow")), "/tls/2", "the authorizer over TLS allows")
    w.reload(prov, custom(), dr("other"))
    n = w.authz.count()
    check_error_answer(w.req("/tls/3", ask("allow")), 403, "the authorizer's certificate not trusted")
    w.check_log("GET", "/tls/3", 403, "UAEX", "ext_authz_error")
    check(w.authz.count() == n, f"a check reached the authorizer over an untrusted connection: {w.authz.checks()[n:]}")


def b64u(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256(secret, claims):
    """A JWT signed with HMAC-SHA256 (no package needed)."""
    signing = b64u(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()) + "." + b64u(json.dumps(claims).encode())
    sig = hmac.new(secret, signing.encode(), hashlib.sha256).digest()
    return signing + "." + b64u(sig)


@_test
def extauthz_before_jwt(env):
    """CUSTOM comes before the JWT check, as istiod orders Envoy's ext_authz
    filter before jwt_authn: the authorizer is asked about a request with a bad
    token and its denial is what the client gets; allowed, the JWT check then
    refuses it (401); a verified token's Authorization field reaches the check
    (and is removed before the upstream); a token the authorizer's answer sets
    (headersToUpstreamOnAllow) is the one the JWT check verifies."""
    secret = b"0123456789abcdef0123456789abcdef"
    iss = "https://issuer.example.com"
    rule = {"issuer": iss, "jwks": json.dumps({"keys": [{"kty": "oct", "k": b64u(secret), "alg": "HS256"}]})}
    w = World(env, providers(provider(includeRequestHeadersInCheck=INCLUDE,
                                      headersToUpstreamOnAllow=["authorization"])), custom(),
              request_authn("jwt", [rule]))
    n = w.authz.count()
    r = w.req("/j/bad", ask("deny", status=302, set="location=/login") + [("Authorization", "Bearer not-a-jwt")])
    check(r.status == 302 and r.header("location") == "/login" and r.header("x-upstream") is None,
          f"a bad token the authorizer denies: want its 302, got {r}")
    w.authz.one_since(n, "the bad token's denied request")
    n = w.authz.count()
    r = w.req("/j/bad", ask("allow") + [("Authorization", "Bearer not-a-jwt")])
    check(r.status == 401 and r.header("x-upstream") is None and "Jwt" in r.body.decode(),
          f"a bad token the authorizer allows: want jwt_authn's 401, got {r}")
    w.authz.one_since(n, "the bad token's allowed request")
    now = int(time.time())
    token = hs256(secret, {"iss": iss, "sub": "alice", "iat": now, "exp": now + 3600})
    n = w.authz.count()
    r = w.req("/headers", ask("allow") + [("Authorization", f"Bearer {token}")])
    _, fields = seen(r)
    check(field(fields, "authorization") == [], f"the verified token went upstream: {fields}")
    rec = w.authz.one_since(n, "the verified token's request")
    check(got(rec, "authorization") == [f"Bearer {token}"],
          f"the check did not carry the client's token: {rec['headers']}")
    bad = hs256(b"another secret of thirty-two bytes", {"iss": iss, "sub": "eve", "iat": now, "exp": now + 3600})
    r = w.req("/j/set", ask("allow", set=f"authorization=Bearer {bad}"))
    check(r.status == 401 and r.header("x-upstream") is None,
          f"a bad token the authorizer's answer set: want jwt_authn's 401, got {r}")
    r = w.req("/headers", ask("allow", set=f"authorization=Bearer {token}") + [("Authorization", "Bearer not-a-jwt")])
    _, fields = seen(r)
    check(field(fields, "authorization") == [],
          f"the token the authorizer's answer set was not verified and removed: {fields}")


def curl_h2c(w, path, headers=(), host="test.local"):
    """curl over h2c (prior knowledge) to the gateway: (HTTP version, status,
    [(lowercased name, value)], body text)."""
    head = w.env.path("curl-head.txt")
    args = ["--http2-prior-knowledge", "-D", head, "-H", f"Host: {host}", "-w", "\n%{http_version} %{http_code}",
            "--max-time", "10"]
    for k, v in headers:
        args += ["-H", f"{k}: {v}"]
    rc, out, err = curl(args + [f"http://127.0.0.1:{w.gw}{path}"], timeout=20)
    check(rc == 0, f"curl --http2-prior-knowledge {path}: rc {rc} {err}")
    body, _, tail = out.rpartition("\n")
    version, _, status = tail.partition(" ")
    fields = []
    with open(head) as f:
        lines = f.read().splitlines()[1:]
    for line in lines:
        if ":" in line:
            k, _, v = line.partition(":")
            fields.append((k.strip().lower(), v.strip()))
    return version, int(status), fields, body


@_test
def extauthz_h2_and_grpc(env):
    """Over h2c: an allowed request is checked with Host the :authority and
    served, with the authorizer's headersToDownstreamOnAllow fields; a denied
    one gets the authorizer's status, body and fields. gRPC calls answered
    here get HTTP 200, trailers only, grpc-status mapped from the status as
    Envoy maps it (403 → 7, 401 → 16, an error's default 403 → 7,
    statusOnError 503 → 14) and grpc-message the authorizer's body; a plain
    HTTP/2 POST on the same connection gets the HTTP answer."""
    need_tools("curl", "h2")
    prov = providers(provider(timeout="1s", includeRequestHeadersInCheck=INCLUDE,
                              headersToDownstreamOnAllow=["x-down"]))
    w = World(env, prov, custom())
    n = w.authz.count()
    version, status, fields, body = curl_h2c(w, "/h2/ok?q=1", ask("allow", set="x-down=d"), host="h2.example.com")
    check(version == "2" and status == 200 and body == "a /h2/ok?q=1\n" and ("x-down", "d") in fields,
          f"an allowed h2c request: {version} {status} {fields} {body!r}")
    rec = w.authz.one_since(n, "the h2c request")
    check(rec["method"] == "GET" and rec["path"] == "/h2/ok?q=1" and got(rec, "host") == ["h2.example.com"]
          and got(rec, "content-length") == ["0"], f"the h2c request's check: {rec}")
    version, status, fields, body = curl_h2c(w, "/h2/no", ask("deny", status=401, body="h2 says no",
                                                              set="www-authenticate=Basic"))
    check(version == "2" and status == 401 and body == "h2 says no" and ("www-authenticate", "Basic") in fields,
          f"a denied h2c request: {version} {status} {fields} {body!r}")
    w.check_log("GET", "/h2/no", 401, "UAEX", "ext_authz_denied", proto="HTTP/2")

    def call(verdict, **more):
        return {"path": "/isthmus.test.Echo/Unary", "grpc": "x",
                "headers": [[k, v] for k, v in ask(verdict, **more)]}
    up0 = w.upstream_count()
    rep = h2_client(w.gw, [call("deny", status=403, body="go away"), call("deny", status=401, body="who"),
                           call("error"),
                           {"method": "POST", "path": "/h2/post", "body": "x" * 100,
                            "headers": [[k, v] for k, v in ask("deny", status=403, body="plain no")]}])
    forbidden, unauth, error, plain = rep["streams"]
    check_grpc_local_error(forbidden, 7, "a gRPC call denied 403")
    check(hdr(forbidden, "grpc-message") == "go away", f"grpc-message of the 403: {forbidden['headers']}")
    check_grpc_local_error(unauth, 16, "a gRPC call denied 401")
    check(hdr(unauth, "grpc-message") == "who", f"grpc-message of the 401: {unauth['headers']}")
    check_grpc_local_error(error, 7, "a gRPC call whose check failed (statusOnError 403)")
    check(plain["status"] == 403 and plain["body"] == "plain no", f"a plain HTTP/2 POST denied: {plain}")
    check(w.upstream_count() == up0, "the upstream saw a denied call")
    w.reload(providers(provider(timeout="1s", includeRequestHeadersInCheck=INCLUDE, statusOnError="503")), custom())
    rep = h2_client(w.gw, [call("error")])
    check_grpc_local_error(rep["streams"][0], 14, "a gRPC call whose check failed, statusOnError 503")


@_test
def extauthz_answer_framing(env):
    """The authorizer's answer framed otherwise than with a Content-Length: a
    chunked denial with connection: close and keep-alive fields reaches the
    client whole and without those framing fields, over HTTP/1.1 (the
    client's connection stays open for its next request) and over h2c (where
    such fields are not allowed); allowing answers with a chunked body and
    connection: close let their requests through, each with the fields of its
    own answer."""
    need_tools("curl")
    w = World(env, providers(provider(timeout="2s", includeRequestHeadersInCheck=INCLUDE,
                                      headersToUpstreamOnAllow=["x-user"])), custom())
    text = "chunked-no." * 300
    deny = ask("deny", status=401, body=text, chunked=1, set="connection=close|keep-alive=timeout=5|x-ok=1"
               "|upgrade=websocket|te=trailers|trailer=x-t|proxy-connection=keep-alive")
    framing = {"connection", "keep-alive", "transfer-encoding", "upgrade", "te", "trailer", "proxy-connection"}
    with Conn("127.0.0.1", w.gw) as c:
        r = c.request("GET", "/f/1", "test.local", deny)
        names = {k for k, _ in r.headers}
        check(r.status == 401 and r.body == text.encode() and r.header_all("x-ok") == ["1"]
              and not names & (framing - {"connection", "transfer-encoding"})
              and "close" not in (r.header("connection") or "").lower(),
              f"a chunked denial with connection: close: want 401, the body whole, x-ok, no framing fields: {r}")
        r = c.request("GET", "/f/2", "test.local", ask("allow"))
        check_upstream_served(r, "/f/2", "the client's next request on its connection")
    version, status, fields, body = curl_h2c(w, "/f/h2", deny)
    names = {k for k, _ in fields}
    check(version == "2" and status == 401 and body == text and ("x-ok", "1") in fields and not names & framing,
          f"the chunked denial over h2c: {version} {status} {fields} {len(body)} bytes")
    for i in range(3):
        _, fields = seen(w.req("/headers", ask("allow", chunked=1, pad=2000, set=f"connection=close|x-user=u{i}")))
        check(field(fields, "x-user") == [f"u{i}"], f"allowing answer {i} (chunked, connection: close): {fields}")


def check_own_answers(w, ask, n1, n2):
    """n1 HTTP/1.1 clients at once and n2 streams of one HTTP/2 connection,
    each check answered after 0 to 300 ms (ask: the test authorizer's
    instructions): each request's upstream gets the x-user its own answer
    set, and w's authorizer got n1 + n2 checks."""
    results = {}

    def one(i):
        try:
            _, fields = seen(w.req("/headers", ask("slow", delay=(i * 7) % 4 * 100, set=f"x-user=h1-{i}")))
            results[i] = field(fields, "x-user")
        except Exception as e:  # reported below, by request
            results[i] = repr(e)
    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n1)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
    check(not any(t.is_alive() for t in threads), "an HTTP/1.1 client still waiting after 20 s")
    bad = {i: v for i, v in sorted(results.items()) if v != [f"h1-{i}"]}
    check(len(results) == n1 and not bad, f"HTTP/1.1 requests whose upstream did not get their own x-user: {bad}")
    reqs = [{"path": "/headers", "headers": [[k, v] for k, v in ask("slow", delay=(i * 5) % 4 * 100,
                                                                     set=f"x-user=h2-{i}")]} for i in range(n2)]
    rep = h2_client(w.gw, reqs, timeout=20)
    bad = []
    for i, st in enumerate(rep["streams"]):
        users = re.findall(r"(?im)^x-user:[ \t]*(\S+)[ \t]*\r?$", st["body"])
        if st["status"] != 200 or users != [f"h2-{i}"]:
            bad.append(f"stream {i}: {st['status']} x-user {users}")
    check(not bad, "HTTP/2 streams whose upstream did not get their own x-user: " + "; ".join(bad))
    check(w.authz.count() == n1 + n2, f"want {n1 + n2} checks, the authorizer got {w.authz.count()}")


@_test
def extauthz_concurrent_checks(env):
    """Checks in flight together and answered out of order (each answer is
    delayed 0 to 300 ms) each go with their own request: 16 HTTP/1.1 clients
    at once and 12 streams of one HTTP/2 connection; each request's upstream
    gets the x-user its own answer set."""
    need_tools("h2")
    w = World(env, providers(provider(timeout="5s", includeRequestHeadersInCheck=INCLUDE,
                                      headersToUpstreamOnAllow=["x-user"])), custom())
    check_own_answers(w, ask, 16, 12)


@_test
def extauthz_client_gone(env):
    """A client that goes away while its check is in flight leaves the gateway
    serving, its workers alive, and later requests are checked and served. An
    HTTP/2 client that gives up and drops its connection: its request never
    reaches the upstream once the (allowing) answer comes, logged 0 DC.
    HTTP/1.1 clients that close their connection: isthmus does not read the
    client while the check runs (the docs say so), so it may forward such a
    request; the upstream's count agrees with the access log either way."""
    need_tools("h2")
    w = World(env, providers(provider(timeout="5s", includeRequestHeadersInCheck=INCLUDE)), custom())
    workers = w.env.workers()
    up0 = w.upstream_count()
    for i in range(3):
        n = w.authz.count()
        c = Conn("127.0.0.1", w.gw)
        c.send(build_request("GET", f"/gone/{i}", "test.local", ask("slow", delay=1000)))
        poll(lambda: w.authz.count() > n, 5, what=f"the check of /gone/{i} to reach the authorizer")
        c.close()
    rep = h2_client(w.gw, [{"path": "/gone/h2", "headers": [[k, v] for k, v in ask("slow", delay=1000)]}],
                    timeout=0.5)
    check(rep["streams"][0]["status"] is None, f"the HTTP/2 client was answered before it gave up: {rep}")
    # Answered after every abandoned check was answered (each took 1 s and began before).
    r = w.req("/after", ask("slow", delay=1200))
    check_upstream_served(r, "/after", "a request after the clients went away")
    line = w.log_line("GET", "/gone/h2", proto="HTTP/2")
    check(line[:2] == ["0", "DC"], f"the HTTP/2 request whose client gave up: want 0 DC, the log says {line}")
    forwarded = [i for i in range(3) if w.log_line("GET", f"/gone/{i}")[2] == "via_upstream"]
    check(w.upstream_count() == up0 + 1 + len(forwarded),
          f"the upstream saw {w.upstream_count() - up0 - 1} abandoned requests; the access log says "
          f"{len(forwarded)} HTTP/1.1 ones ({forwarded}) went to it, and the HTTP/2 one none")
    check(w.env.gateway.alive() and w.env.workers() == workers,
          f"workers {workers} before, {w.env.workers()} after (a worker died?)")
    check_upstream_served(w.req("/after2", ask("allow")), "/after2", "a second request after")


def error_cases():
    """(what, the Appliance's providers, the other documents, the error's
    document and field (a regex), text the message holds, a line marker:
    (text, occurrence) on the line the error names, or None)."""
    ok = providers(provider())
    field_ = r"spec\.extensionProviders\[0\]\.envoyExtAuthzHttp\."
    return [
        ("an unknown provider", ok, [custom(provider_name="nope")],
         r"AuthorizationPolicy default/ext-authz: spec\.provider", "nope", ("provider: {name: nope}", 1)),
        ("two CUSTOM policies naming different providers", providers(provider(), provider("ext2")),
         [custom("a-one"), custom("b-two", provider_name="ext2")],
         r"AuthorizationPolicy default/(a-one|b-two): spec\.provider", "", None),
        ("a provider name in capitals", providers(provider(), provider("Bad")), [custom()],
         r"Appliance test: spec\.extensionProviders\[1\]\.name", "", ("- name: Bad", 1)),
        ("two providers of one name", providers(provider(), provider()), [custom()],
         r"Appliance test: spec\.extensionProviders\[1\]\.name", "", ("- name: ext", 2)),
        ("a service no ServiceEntry has", providers(provider(service="missing.auth.internal")), [custom()],
         r"Appliance test: " + field_ + "service", "missing.auth.internal", ("service: missing", 1)),
        ("a port the ServiceEntry lacks", providers(provider(port=81)), [custom()],
         r"Appliance test: " + field_ + "port", "", ("port: 81", 1)),
        ("statusOnError abc", providers(provider(statusOnError="abc")), [custom()],
         r"Appliance test: " + field_ + "statusOnError", "", ("statusOnError", 1)),
        ("statusOnError 299, no StatusCode", providers(provider(statusOnError="299")), [custom()],
         r"Appliance test: " + field_ + "statusOnError", "", ("statusOnError", 1)),
        ("a pathPrefix without /", providers(provider(pathPrefix="check")), [custom()],
         r"Appliance test: " + field_ + "pathPrefix", "", ("pathPrefix", 1)),
        ("a lone * in headersToUpstreamOnAllow", providers(provider(headersToUpstreamOnAllow=["x-a", "*"])),
         [custom()], r"Appliance test: " + field_ + r"headersToUpstreamOnAllow\[1\]", "",
         ("headersToUpstreamOnAllow", 1)),
        ("a lone * in includeRequestHeadersInCheck", providers(provider(includeRequestHeadersInCheck=["*"])),
         [custom()], r"Appliance test: " + field_ + r"includeRequestHeadersInCheck\[0\]", "",
         ("includeRequestHeadersInCheck", 1)),
        ("includeRequestBodyInCheck without maxRequestBytes",
         providers(provider(includeRequestBodyInCheck={"allowPartialMessage": True})), [custom()],
         r"Appliance test: " + field_ + r"includeRequestBodyInCheck\.maxRequestBytes", "required field missing",
         ("includeRequestBodyInCheck", 1)),
        ("includeRequestBodyInCheck with maxRequestBytes 0",
         providers(provider(includeRequestBodyInCheck={"maxRequestBytes": 0})), [custom()],
         r"Appliance test: " + field_ + r"includeRequestBodyInCheck\.maxRequestBytes",
         "must be an integer between 1 and 4294967295", ("includeRequestBodyInCheck", 1)),
        ("a framing field in includeAdditionalHeadersInCheck",
         providers(provider(includeAdditionalHeadersInCheck={"Content-Length": "50"})),
         [custom()], r"Appliance test: " + field_ + "includeAdditionalHeadersInCheck", "frames the check request",
         ("includeAdditionalHeadersInCheck", 1)),
        ("a command operator in includeAdditionalHeadersInCheck",
         providers(provider(includeAdditionalHeadersInCheck={"x-peer": "%DOWNSTREAM_REMOTE_ADDRESS%"})),
         [custom()], r"Appliance test: " + field_ + "includeAdditionalHeadersInCheck", "not implemented yet",
         ("includeAdditionalHeadersInCheck", 1)),
        ("a telemetry provider",
         providers(provider(), "  - name: tracing\n    zipkin: {service: z.internal, port: 9411}\n"),
         [custom()], r"Appliance test: spec\.extensionProviders\[1\]\.zipkin", "not implemented yet", ("zipkin", 1)),
        ("an entry of no kind", providers(provider(), "  - name: empty\n"), [custom()],
         r"Appliance test: spec\.extensionProviders\[1\]", "kind", None),
        ("CUSTOM without a provider", ok, [policy("ext-authz", "  action: CUSTOM\n  rules: [{}]\n")],
         r"AuthorizationPolicy default/ext-authz: spec\.(action|provider)", "provider", None),
    ]


def check_config_errors(env, cases, says):
    """isthmus -c refuses each case (what, the file's text, the regex of the
    error's field, what it says, and the marker (text, occurrence) of the
    line it must name, or None): an error at that field, whose message
    says(out, the field's match, want), on the marker's line (else one of the
    file)."""
    failures = []
    for what, text, where, want, marker in cases:
        rc, out = env.check_config(env.write("bad.yaml", text))
        m = re.search(r"bad\.yaml:(\d+):(\d+): error: " + where, out)
        if rc == 0 or not m or not says(out, m, want):
            failures.append(f"{what}: want an error at {where!r} saying {want!r}: rc {rc}, {out.strip()[:400]}")
            continue
        lines = text.split("\n")
        line = int(m.group(1))
        if marker:
            at = [i + 1 for i, l in enumerate(lines) if marker[0] in l]
            if len(at) < marker[1] or at[marker[1] - 1] != line:
                failures.append(f"{what}: the error names line {line}, want the line of {marker[0]!r} "
                                f"(occurrence {marker[1]}, lines {at}): {out.strip()[:300]}")
        elif not 1 <= line <= len(lines):
            failures.append(f"{what}: line {line} is not in the file: {out.strip()[:300]}")
    check(not failures, "isthmus -c:\n  " + "\n  ".join(failures))


@_test
def extauthz_config_errors(env):
    """isthmus -c accepts a valid provider and policy, and refuses each of
    these naming the file, the line and column, the document and the field:
    an unknown provider, two providers among the CUSTOM policies, a provider
    name in capitals, a name twice, a service without a ServiceEntry, a port
    not of it, statusOnError not a status (abc) or not one of Envoy's
    StatusCode values (299), a pathPrefix not beginning with "/", a lone "*"
    in a field list, includeRequestBodyInCheck without maxRequestBytes
    (required field missing) or with maxRequestBytes 0 (must be an integer
    between 1 and 4294967295), a command operator in
    includeAdditionalHeadersInCheck and a telemetry provider (not
    implemented yet), an entry of no kind, CUSTOM without a provider
    (envoyExtAuthzGrpc's errors: test_extauthz_grpc.py; more of
    includeRequestBodyInCheck's: test_extauthz_body.py)."""
    ports = dict(gw=free_port(), admin=free_port(), log=env.path("access.log"), up=1, authz_port=2)
    text = config(env, providers(provider(timeout="1s", pathPrefix="/check", statusOnError="503",
                                          includeRequestHeadersInCheck=INCLUDE, headersToUpstreamOnAllow=["x-*"],
                                          includeAdditionalHeadersInCheck={"x-a": "b"})), custom(), **ports)
    rc, out = env.check_config(env.write("good.yaml", text))
    check(rc == 0, f"isthmus -c refuses a valid CUSTOM policy and provider: rc {rc}, {out}")
    check_config_errors(env, ((what, config(env, prov, *pols, **ports), where, want, marker)
                              for what, prov, pols, where, want, marker in error_cases()),
                        lambda out, m, want: want in out)


@_test
def extauthz_reload(env):
    """A reload that names an unknown provider is refused and the old
    configuration serves on (the authorizer still decides); a reload without
    the CUSTOM policy stops the checks (requests go straight to the upstream
    whatever x-authz says, and the authorizer gets nothing); one that brings
    it back, with the provider's deprecated includeHeadersInCheck, checks
    again."""
    prov = providers(provider(includeRequestHeadersInCheck=INCLUDE))
    w = World(env, prov, custom())
    r = w.req("/r/1", ask("deny", body="nope"))
    check(r.status == 403 and r.body == b"nope", f"before the reloads: {r}")
    w.reload(prov, custom(provider_name="missing"), ok=False)
    n = w.authz.count()
    r = w.req("/r/2", ask("deny", body="nope"))
    check(r.status == 403 and r.body == b"nope", f"after a refused reload, the old policy: {r}")
    w.authz.one_since(n, "after the refused reload")
    w.reload(prov)
    n, up0 = w.authz.count(), w.upstream_count()
    for i in range(5):
        check_upstream_served(w.req(f"/r/off{i}", ask("deny", body="nope")), f"/r/off{i}", "without the CUSTOM policy")
    check(w.authz.count() == n, f"the authorizer was asked without a CUSTOM policy: {w.authz.checks()[n:]}")
    check(w.upstream_count() == up0 + 5, "the upstream's count without the CUSTOM policy")
    w.reload(providers(provider(includeHeadersInCheck=["x-authz*"])), custom())
    r = w.req("/r/3", ask("deny", status=401, body="back"))
    check(r.status == 401 and r.body == b"back", f"the CUSTOM policy back, includeHeadersInCheck: {r}")
    w.authz.one_since(n, "the CUSTOM policy back")
