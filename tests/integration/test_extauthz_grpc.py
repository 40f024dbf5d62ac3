# SPDX-License-Identifier: Apache-2.0
"""Integration tests of AuthorizationPolicy action CUSTOM with a gRPC external
authorizer: the Appliance's spec.extensionProviders[] entry of kind
envoyExtAuthzGrpc (Istio's meshConfig.extensionProviders), called as Envoy's
ext_authz filter (gRPC service) calls envoy.service.auth.v3.Authorization/Check:
what the CheckRequest carries (peers, principals, time, the request's method,
path, host, scheme, protocol, size, headers with the pseudo-headers, the TLS
server name); what an OK CheckResponse's ok_response does (fields set,
appended and removed upstream, fields added to the client's response, the
query edited); what a denial answers (denied_response's status, fields and
body, 403 by default); errors (a gRPC status, a timeout, an answer that is
not a CheckResponse, the authorizer down), statusOnError and failOpen; the
access log's UAEX flag and details, isthmus_ext_authz_total; gRPC clients
answered with a grpc-status; configuration errors.

The authorizer is tests/upstream/extauthz_grpc.py (grpcio under Debian's
python; with --raw, HTTP/2 served by hand with the h2 package, for answers
grpcio never sends) on 127.0.0.5, behind a ServiceEntry whose port has
protocol GRPC; it
decides by the x-authz* fields of the request (every field of the request is
in the CheckRequest) and records every CheckRequest it decodes in a file of
the test's directory. The upstream "a" is upstream.c on 127.0.0.4. Registered
into run.py's list by register(test)."""

import json
import os
import re
import threading
import time
from urllib.parse import parse_qsl

from harness import (DEBIAN_PYTHON, Conn, Registry, appliance, check, curl, docs, file_lines, free_port,
                     http_get, no_panic_rule, poll, service_entry, service_entry_protocol, virtual_service)
from test_authz import ROUTE_ALL, SVC, UP, gateway_ports
from test_extauthz import (AUTHZ_ADDR, AUTHZ_HOST, LOG_FORMAT, World, check_config_errors, check_error_answer,
                           check_own_answers, check_upstream_served, curl_h2c, custom, providers)
from test_h2 import (GSVC, TOOLS, background, dest_rule, grpc, h2_args, h2_client, need_tools, run_tool,
                     start_grpc_upstream)
from test_jwt import field, seen
from test_tls import Pki, TlsConn, client_ctx, gateway_of, server, tls_simple
from test_tunnels import spawn_tool

_test = Registry()
register = _test.register


# --------------------------------------------------------------------------- the authorizer


class GrpcAuthorizer:
    """extauthz_grpc.py on AUTHZ_ADDR (port: that one, else the kernel's) and
    the CheckRequests it recorded. raw: HTTP/2 served by hand (--raw);
    max_streams: grpcio's SETTINGS_MAX_CONCURRENT_STREAMS."""

    def __init__(self, env, name="authz", cert=None, port=0, raw=False, max_streams=0):
        need_tools("grpc", "h2")
        self.record = env.path(f"{name}-checks.jsonl")
        argv = [DEBIAN_PYTHON, os.path.join(TOOLS, "extauthz_grpc.py"), "--listen", f"{AUTHZ_ADDR}:{port}",
                "--record", self.record, "--name", name]
        if cert:
            argv += ["--cert", cert[0], "--key", cert[1]]
        if raw:
            argv.append("--raw")
        if max_streams:
            argv += ["--max-streams", str(max_streams)]
        ports, self.proc = spawn_tool(env, f"extauthz-grpc-{name}", argv)
        self.port = ports["listening on"]

    def stop(self):
        self.proc.p.terminate()
        self.proc.p.wait(10)

    def lines(self):
        return [json.loads(l) for l in file_lines(self.record)]

    def checks(self):
        return [c for c in self.lines() if not c.get("event")]

    def events(self):
        """Calls the gateway gave up on: {"event": "reset" (--raw, with the
        RST_STREAM's code) or "cancelled" (grpcio), "path"}."""
        return [c for c in self.lines() if c.get("event")]

    def count(self):
        return len(self.checks())

    def since(self, before, n, what):
        """The n CheckRequests recorded since count() was before (each decoded).
        extauthz_grpc.py records a check before it answers, so a check made
        for a request is on file by the time the gateway answers the client."""
        new = self.checks()[before:]
        check(len(new) == n, f"{what}: want {n} CheckRequest(s), the authorizer got {len(new)}: {str(new)[:3000]}")
        bad = [c["error"] for c in new if c["error"]]
        check(not bad, f"{what}: a CheckRequest that is not valid protobuf: {bad}")
        return new

    def one_since(self, before, what):
        return self.since(before, 1, what)[0]


def ask(verdict, **more):
    """Request fields telling extauthz_grpc.py what to answer: ask("allow",
    set="a=1", resp_append="b=2") → x-authz: allow, x-authz-set: a=1,
    x-authz-resp-append: b=2."""
    return [("x-authz", verdict)] + [(f"x-authz-{k.replace('_', '-')}", str(v)) for k, v in more.items()]


def hmap(rec):
    return rec["http"]["headers"]


# --------------------------------------------------------------------------- configuration


def gprovider(name="ext", service=AUTHZ_HOST, port=80, **fields):
    """One spec.extensionProviders[] entry of kind envoyExtAuthzGrpc; fields as YAML flow (JSON)."""
    s = f"  - name: {name}\n    envoyExtAuthzGrpc:\n      service: {service}\n      port: {port}\n"
    for k, v in fields.items():
        s += f"      {k}: {json.dumps(v)}\n"
    return s


def gconfig(env, prov, *extra_docs, gw, admin, log, up, authz_port, protocol="GRPC", routes=ROUTE_ALL,
            gateway_doc=None, workers=2):
    """The file: an Appliance with an admin listener, a text access log
    (LOG_FORMAT) and the providers prov; a plaintext Gateway on gw (or
    gateway_doc); routes to SVC (the upstream on UP:up); the authorizer's
    ServiceEntry (AUTHZ_HOST port 80, protocol protocol → AUTHZ_ADDR:authz_port)."""
    extra = (f"  admin: {{address: 127.0.0.1:{admin}}}\n"
             f"  accessLog: {{path: {log}, format: text, textFormat: \"{LOG_FORMAT}\"}}\n" + prov)
    return docs(appliance(env, extra=extra, workers=workers), gateway_doc or gateway_ports([gw]),
                virtual_service("vs", ["*"], routes),
                service_entry("a", SVC, [{"address": UP, "port": up}]),
                service_entry_protocol("authz", AUTHZ_HOST, [{"address": AUTHZ_ADDR, "port": authz_port}], protocol),
                *extra_docs)


class GWorld(World):
    """The upstream "a" (every route goes to it unless routes says otherwise)
    and the gRPC authorizer (authz, else a new extauthz_grpc.py) behind a
    gateway on self.gw (plaintext, or the server tls makes HTTPS; taking a
    PROXY header with proxy_protocol) with an admin listener and a text
    access log; the authorizer's ServiceEntry port of protocol protocol.
    The helpers (req, reload, log_line, check_log, counters, wait_counters,
    upstream_count) are test_extauthz.World's."""

    def __init__(self, env, prov, *extra_docs, routes=ROUTE_ALL, authz_port=None, cert=None, tls=None,
                 authz=None, proxy_protocol=False, protocol="GRPC", workers=2):
        self.env = env
        self.protocol = protocol
        self.workers = workers
        self.authz = authz or GrpcAuthorizer(env, cert=cert)
        self.authz_port = authz_port or self.authz.port
        self.up = env.upstream([f"{UP}:0=a"], name="a")["a"]
        self.gw = free_port()
        self.admin = free_port()
        self.log = env.path("access.log")
        self.routes = routes
        self.gateway_doc = gateway_of(server(self.gw, ["*"], tls)) if tls else None
        self.proxy_protocol = proxy_protocol
        env.start_gateway(self.write(prov, *extra_docs), self.gw)
        poll(lambda: http_get(self.admin, "/metrics").status == 200, 5, what="the admin listener to answer")

    def text(self, prov, *extra_docs):
        if self.proxy_protocol:
            prov += f"  proxyProtocol: {{ports: [{self.gw}]}}\n"
        return gconfig(self.env, prov, *extra_docs, gw=self.gw, admin=self.admin, log=self.log, up=self.up,
                       authz_port=self.authz_port, routes=self.routes, gateway_doc=self.gateway_doc,
                       protocol=self.protocol, workers=self.workers)


def query_of(request_line):
    """The query of "GET /p?a=1&b=2 HTTP/1.1" as a sorted list of pairs."""
    target = request_line.split(" ")[1]
    return sorted(parse_qsl(target.partition("?")[2], keep_blank_values=True))


def split_values(values):
    """Field values with any "," joins undone: ["c1,a1"] and ["c1", "a1"] both → ["c1", "a1"]."""
    return [p.strip() for v in values for p in v.split(",")]


def check_time(rec, t0, t1, what):
    """attributes.request.time is a wall-clock time between t0 and t1 (with
    half a second of slack for clocks read at other moments)."""
    t = rec["time"]
    check(t is not None and 0 <= t["nanos"] < 10**9, f"{what}: attributes.request.time: {t}")
    at = t["seconds"] + t["nanos"] / 1e9
    check(t0 - 0.5 <= at <= t1 + 0.5, f"{what}: attributes.request.time {at:.3f} is not between {t0:.3f} and "
          f"{t1:.3f} (when the client sent and got the answer)")


def check_peer(rec, side, address, port, principal, what):
    p = rec[side]
    check(p is not None and p["address"] == address and p["port"] == port and (p["principal"] or "") == principal,
          f"{what}: attributes.{side}: want {address}:{port} principal {principal!r}, got {p}")


def check_headers_map(rec, want, what):
    """The CheckRequest's headers map: names lower-case, each name once, and
    the fields of want with those values (None: absent)."""
    pairs = rec["http"]["header_pairs"]
    names = [k for k, _ in pairs]
    check(all(k == k.lower() for k in names) and len(set(names)) == len(names),
          f"{what}: the headers map's names must be lower-case, each once: {names}")
    h = hmap(rec)
    bad = [f"{k}: want {v!r}, got {h.get(k)!r}" for k, v in want.items() if h.get(k) != v]
    check(not bad, f"{what}: the headers map: " + "; ".join(bad) + f" (all: {str(h)[:1500]})")


# --------------------------------------------------------------------------- tests


@_test
def extauthz_grpc_selftest(env):
    """extauthz_grpc.py alone, without isthmus: its protobuf writer gives the
    encodings worked out by hand (varints, -1 as int64, HeaderValueOption with
    and without append, google.rpc.Status) and its reader refuses truncated
    and malformed input; over grpcio it records what a CheckRequest carries
    and answers allow (ok_response with each edit), deny (denied_response),
    deny-bare, grpc-error (the call's status) and garbage (not a
    CheckResponse)."""
    need_tools("grpc", "h2")
    rep = run_tool("extauthz_grpc.py", ["--codec-selftest"], 30)
    check(rep["ok"], f"extauthz_grpc.py's codec: {rep['bad']}")
    a = GrpcAuthorizer(env)
    target = f"{AUTHZ_ADDR}:{a.port}"

    def call(headers):
        spec = {"source": {"address": "127.0.0.9", "port": 1234, "principal": "spiffe://x/p"},
                "destination": {"address": "127.0.0.1", "port": 8080}, "time": {"seconds": 1700000000, "nanos": 9},
                "sni": "s.example", "http": {"id": "42", "method": "PUT", "headers": headers, "path": "/p?q=1",
                                             "host": "h.example", "scheme": "https", "size": -1,
                                             "protocol": "HTTP/2"}}
        return run_tool("extauthz_grpc.py", ["--call", target, json.dumps(spec)], 30)
    allow = call([["x-authz", "allow"], ["x-authz-set", "a=1"], ["x-authz-append", "b=2"], ["x-authz-remove", "c|d"],
                  ["x-authz-resp", "e=3"], ["x-authz-resp-append", "f=4"], ["x-authz-qset", "g=5"],
                  ["x-authz-qdel", "h"]])
    check(allow["code"] == "OK" and allow["response"] == {
        "code": 0, "message": None, "denied": None,
        "ok": {"headers": [["a", "1", None], ["b", "2", True]], "remove": ["c", "d"],
               "response": [["e", "3", None], ["f", "4", True]], "qset": [["g", "5"]], "qdel": ["h"]}},
        f"allow: {allow}")
    rec = a.checks()[-1]
    check(rec["source"]["address"] == "127.0.0.9" and rec["source"]["port"] == 1234
          and rec["source"]["principal"] == "spiffe://x/p" and rec["destination"]["port"] == 8080
          and rec["time"] == {"seconds": 1700000000, "nanos": 9} and rec["tls_session"] == {"sni": "s.example"}
          and rec["http"]["size"] == -1 and rec["http"]["method"] == "PUT" and rec["http"]["id"] == "42"
          and rec["http"]["headers"]["x-authz"] == "allow" and rec["time_remaining"] is not None,
          f"the record of the CheckRequest: {rec}")
    deny = call([["x-authz", "deny"], ["x-authz-status", "401"], ["x-authz-body", "no"], ["x-authz-set", "w=x"],
                 ["x-authz-append", "s=1|s=2"]])
    check(deny["response"] == {"code": 7, "message": "denied", "ok": None, "denied": {
        "status": 401, "body": "no", "headers": [["w", "x", None], ["s", "1", True], ["s", "2", True]]}},
        f"deny: {deny}")
    bare = call([["x-authz", "deny-bare"], ["x-authz-code", "16"]])
    check(bare["response"] == {"code": 16, "message": "denied", "ok": None, "denied": None}, f"deny-bare: {bare}")
    err = call([["x-authz", "grpc-error"], ["x-authz-grpc", "INTERNAL"]])
    check(err["code"] == "INTERNAL" and err["response"] is None, f"grpc-error: {err}")
    for kind in ("wiretype", "truncated", "nested"):
        g = call([["x-authz", "garbage"], ["x-authz-garbage", kind]])
        check(g["code"] == "OK" and g["decode_error"], f"garbage {kind}: {g}")


@_test
def extauthz_grpc_check_request(env):
    """The CheckRequest, as Envoy's CheckRequestUtils fills it, for HTTP/1.1
    from 127.0.0.7 (a POST with a body and a query, then a GET on the same
    connection): source 127.0.0.7 and the client's port, no principal;
    destination 127.0.0.1 and the gateway's port; request.time between send
    and answer; http.id a number, another for the next request; method, path
    with the query, host the authority as sent, scheme http, protocol
    HTTP/1.1, size the content-length (-1 without one); the headers map with
    :authority :method :path :scheme, every field of the client's (values of
    one name joined with ","), names lower-case, X-Forwarded-Proto and -For as
    the upstream gets them (the client's https is http; the peer appended),
    and the X-Request-Id isthmus made;
    no body; no tls_session;
    the call's deadline the provider's timeout (grpc-timeout). A chunked
    POST has size -1; HTTP/1.0 says protocol HTTP/1.0; h2c streams say
    HTTP/2, the :authority, size 5 with a content-length and -1 without."""
    w = GWorld(env, providers(gprovider(timeout="2s")), custom())
    n = w.authz.count()
    hdrs = ask("allow") + [("X-Multi", "one"), ("X-Multi", "two"), ("User-Agent", "test-agent/1.0"),
                           ("Content-Type", "text/plain"), ("Acme-Tenant", "T1"),
                           ("X-Forwarded-Proto", "https"), ("X-Forwarded-For", "192.0.2.1")]
    t0 = time.time()
    with Conn("127.0.0.1", w.gw, timeout=10, source=("127.0.0.7", 0)) as c:
        sport = c.sock.getsockname()[1]
        r1 = c.request("POST", "/api/items?x=1&y=two", "shop.example.com:8443", hdrs, b"q" * 1000)
        r2 = c.request("GET", "/api/second", "shop.example.com:8443", ask("allow"))
    t1 = time.time()
    check_upstream_served(r1, "/api/items?x=1&y=two", "the allowed POST")
    check_upstream_served(r2, "/api/second", "the allowed GET")
    rec1, rec2 = w.authz.since(n, 2, "two requests on one connection")
    h = rec1["http"]
    check(h is not None and h["method"] == "POST" and h["path"] == "/api/items?x=1&y=two"
          and h["host"] == "shop.example.com:8443" and h["scheme"] == "http" and h["protocol"] == "HTTP/1.1"
          and h["size"] == 1000 and not h["body"],
          f"the POST's attributes.request.http: want POST /api/items?x=1&y=two host shop.example.com:8443 scheme "
          f"http protocol HTTP/1.1 size 1000 without a body, got {str(h)[:1500]}")
    check_headers_map(rec1, {":authority": "shop.example.com:8443", ":method": "POST",
                             ":path": "/api/items?x=1&y=two", ":scheme": "http", "x-multi": "one,two",
                             "user-agent": "test-agent/1.0", "content-type": "text/plain", "acme-tenant": "T1",
                             "content-length": "1000", "x-authz": "allow",
                             # as the upstream gets them (Envoy's filter reads the changed map)
                             "x-forwarded-proto": "http", "x-forwarded-for": "192.0.2.1,127.0.0.7"},
                      "the POST")
    check(re.fullmatch(r"[0-9a-f-]{36}", hmap(rec1).get("x-request-id", "")),
          f"the POST's check: want the x-request-id isthmus made, got {hmap(rec1).get('x-request-id')!r}")
    check_peer(rec1, "source", "127.0.0.7", sport, "", "the POST")
    check_peer(rec1, "destination", "127.0.0.1", w.gw, "", "the POST")
    check(rec1["tls_session"] is None, f"a plaintext request with a tls_session: {rec1['tls_session']}")
    check_time(rec1, t0, t1, "the POST")
    check(rec1["time_remaining"] is not None and 0 < rec1["time_remaining"] <= 2.1,
          f"the Check call's deadline: want at most the provider's timeout 2 s, it had {rec1['time_remaining']}")
    h2 = rec2["http"]
    check(h2["method"] == "GET" and h2["path"] == "/api/second" and h2["size"] == -1,
          f"the GET without a body: want size -1, got {str(h2)[:800]}")
    check_peer(rec2, "source", "127.0.0.7", sport, "", "the GET")
    ids = (h["id"], h2["id"])
    check(all(i and i.isdigit() for i in ids) and ids[0] != ids[1],
          f"http.id: want a number, another for each request of the connection: {ids}")

    # A chunked POST: no content-length, size -1.
    n = w.authz.count()
    chunks = b"5\r\nhello\r\n0\r\n\r\n"
    r = w.req("/echo", ask("allow") + [("Transfer-Encoding", "chunked")], method="POST", body=chunks)
    check(r.status == 200 and r.body == b"hello", f"the chunked POST: {r}")
    rec = w.authz.one_since(n, "the chunked POST")
    check(rec["http"]["size"] == -1 and rec["http"]["method"] == "POST",
          f"a chunked POST: want size -1, got {str(rec['http'])[:800]}")

    # HTTP/1.0.
    n = w.authz.count()
    with Conn("127.0.0.1", w.gw) as c:
        c.send(b"GET /old HTTP/1.0\r\nHost: old.example\r\nx-authz: allow\r\n\r\n")
        r = c.read_response()
    check(r.status == 200 and r.header("x-upstream") == "a", f"the HTTP/1.0 request: {r}")
    rec = w.authz.one_since(n, "the HTTP/1.0 request")
    check(rec["http"]["protocol"] == "HTTP/1.0" and rec["http"]["host"] == "old.example"
          and hmap(rec).get(":authority") == "old.example",
          f"HTTP/1.0: want protocol HTTP/1.0, host old.example: {str(rec['http'])[:800]}")

    # h2c: three streams on one connection.
    n = w.authz.count()
    al = [[k, v] for k, v in ask("allow")]
    rep = h2_client(w.gw, [
        {"path": "/h2/a?q=1", "authority": "h2.example.com", "headers": al + [["x-multi", "m1"]]},
        {"method": "POST", "path": "/h2/b", "authority": "h2.example.com", "body": "hello",
         "headers": al + [["content-length", "5"]]},
        {"method": "POST", "path": "/h2/c", "authority": "h2.example.com", "body": "hello", "headers": al}])
    check([s["status"] for s in rep["streams"]] == [200, 200, 200], f"the h2c requests: {rep}")
    recs = {r["http"]["path"]: r for r in w.authz.since(n, 3, "the h2c requests")}
    check(set(recs) == {"/h2/a?q=1", "/h2/b", "/h2/c"}, f"the h2c checks' paths: {list(recs)}")
    for path, method, size in (("/h2/a?q=1", "GET", -1), ("/h2/b", "POST", 5), ("/h2/c", "POST", -1)):
        rec = recs[path]
        hh = rec["http"]
        check(hh["protocol"] == "HTTP/2" and hh["method"] == method and hh["size"] == size
              and hh["host"] == "h2.example.com" and hh["scheme"] == "http",
              f"h2c {method} {path}: want protocol HTTP/2 size {size} host h2.example.com scheme http, "
              f"got {str(hh)[:800]}")
        check_headers_map(rec, {":authority": "h2.example.com", ":method": method, ":path": path, ":scheme": "http"},
                          f"h2c {path}")
        check(rec["source"]["address"] == "127.0.0.1" and rec["destination"]["port"] == w.gw,
              f"h2c {path}: the peers {rec['source']} {rec['destination']}")
    check(hmap(recs["/h2/b"]).get("content-length") == "5", f"h2c POST's content-length: {hmap(recs['/h2/b'])}")
    check(hmap(recs["/h2/a?q=1"]).get("x-multi") == "m1", f"h2c field: {hmap(recs['/h2/a?q=1'])}")
    ids = [recs[p]["http"]["id"] for p in sorted(recs)]
    check(len(set(ids)) == 3, f"http.id of three streams of one connection: {ids}")


@_test
def extauthz_grpc_allowed(env):
    """An OK CheckResponse: ok_response.headers replace the client's fields of
    their name (append unset) or are added beside them (append true, a new
    name too); headers_to_remove takes the client's field away, but not
    host; query_parameters_to_set and _to_remove edit the query the upstream
    gets; response_headers_to_add reach the client, replacing the upstream's
    field of that name when append is unset, beside it when true. An empty
    CheckResponse (status absent, code 0) allows. A 300 kB POST body waits
    out a 300 ms check and arrives whole. Logged via_upstream without a
    flag; counted ok."""
    w = GWorld(env, providers(gprovider(timeout="3s")), custom())
    c0 = w.counters()
    up0 = w.upstream_count()
    hdrs = ask("allow", set="x-user=admin|x-new=n", append="x-app=a1|x-fresh=f", remove="x-drop|host",
               qset="mod=new|add=3", qdel="drop", resp="x-r=1", resp_append="x-ra=1|x-ra=2")
    hdrs += [("X-User", "mallory"), ("X-User", "mallory2"), ("X-App", "c1"), ("X-Drop", "gone"), ("X-Keep", "kept")]
    r = w.req("/headers?keep=1&drop=2&mod=old", hdrs)
    line, fields = seen(r)
    bad = [f"{name}: want {want}, got {field(fields, name)}" for name, want in (
        ("x-user", ["admin"]), ("x-new", ["n"]), ("x-fresh", ["f"]), ("x-drop", []), ("x-keep", ["kept"]),
        ("host", ["test.local"])) if field(fields, name) != want]
    if sorted(split_values(field(fields, "x-app"))) != ["a1", "c1"]:
        bad.append(f"x-app: want c1 and a1 (appended), got {field(fields, 'x-app')}")
    check(not bad, "what the upstream got: " + "; ".join(bad) + f" (all: {fields})")
    check(query_of(line) == [("add", "3"), ("keep", "1"), ("mod", "new")],
          f"the query the upstream got: want add=3 keep=1 mod=new (drop removed), got {line!r}")
    bad = [f"{name}: want {want}, got {sorted(r.header_all(name))}" for name, want in (
        ("x-r", ["1"]), ("x-ra", ["1", "2"]), ("x-user", []), ("x-new", [])) if sorted(r.header_all(name)) != want]
    check(not bad, "the client's response: " + "; ".join(bad) + f" ({r.headers})")
    # response_headers_to_add: append unset replaces the upstream's field, true adds beside it.
    r = w.req("/replace", ask("allow", resp="x-upstream=authz"))
    check(r.status == 200 and r.body == b"a /replace\n" and r.header_all("x-upstream") == ["authz"],
          f"response_headers_to_add without append: want x-upstream authz only, got {r}")
    r = w.req("/add", ask("allow", resp_append="x-upstream=authz"))
    check(r.status == 200 and sorted(r.header_all("x-upstream")) == ["a", "authz"],
          f"response_headers_to_add with append true: want x-upstream a and authz, got {r}")
    # A query set on a path without one; the only parameter removed (no "?" left).
    line, _ = seen(w.req("/headers", ask("allow", qset="a=1")))
    check(line.split(" ")[1] == "/headers?a=1", f"a parameter set on a path without a query: {line!r}")
    line, _ = seen(w.req("/headers?drop=1", ask("allow", qdel="drop")))
    check(line.split(" ")[1] == "/headers", f"the only parameter removed: want /headers, got {line!r}")
    check_upstream_served(w.req("/empty", ask("allow-empty")), "/empty", "an empty CheckResponse (code 0)")
    body = bytes(ord("a") + i % 26 for i in range(300_000))
    r = w.req("/echo", ask("slow", delay=300), method="POST", body=body)
    check(r.status == 200 and r.body == body, f"a 300 kB POST body through a 300 ms check: {r.status}, "
          f"{len(r.body)} bytes back, equal: {r.body == body}")
    check(w.upstream_count() == up0 + 7, f"the upstream saw {w.upstream_count() - up0} requests, want 7")
    w.check_log("GET", "/headers?keep=1&drop=2&mod=old", 200, "-", "via_upstream")
    w.check_log("GET", "/empty", 200, "-", "via_upstream")
    w.wait_counters(c0, ok=7)


@_test
def extauthz_grpc_denied(env):
    """A CheckResponse with a code other than 0 denies: the client gets
    denied_response's status (403 when it has none, or 0, or there is no
    denied_response), its fields (append true: both of a name) and its
    body, but for host and server; the upstream sees none of them; the access log says UAEX
    ext_authz_denied; isthmus_ext_authz_total counts them denied. A denied
    HEAD gets the status and fields and the connection goes on; over h2c the
    denial comes as over HTTP/1.1."""
    need_tools("curl")
    w = GWorld(env, providers(gprovider(timeout="3s")), custom())
    up0, c0 = w.upstream_count(), w.counters()
    cases = [
        ("/d/401", ask("deny", status=401, body="login first",
                       set='www-authenticate=Bearer realm="x"|x-secret=s1|content-type=text/plain'),
         401, b"login first", {"www-authenticate": ['Bearer realm="x"'], "x-secret": ["s1"],
                               "content-type": ["text/plain"]}),
        ("/d/302", ask("deny", status=302, set="location=https://login.example.com/?next=/app",
                       append="set-cookie=sid=1; Path=/|set-cookie=tr=2"),
         302, b"", {"location": ["https://login.example.com/?next=/app"], "set-cookie": ["sid=1; Path=/", "tr=2"]}),
        ("/d/429", ask("deny", code=8, status=429, body="slow down", set="retry-after=7"),
         429, b"slow down", {"retry-after": ["7"]}),
        ("/d/unset", ask("deny", body="no status given"), 403, b"no status given", {}),
        ("/d/zero", ask("deny", status=0, body="status zero"), 403, b"status zero", {}),
        ("/d/bare", ask("deny-bare", code=16), 403, b"", {}),
        # The answer's host and server never reach the client (the HTTP
        # service's are dropped alike): one server field, isthmus's.
        ("/d/host", ask("deny", status=401, set="host=h|server=s|x-k=v"), 401, b"",
         {"host": [], "server": ["isthmus"], "x-k": ["v"]}),
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
    with Conn("127.0.0.1", w.gw) as c:
        r = c.request("HEAD", "/d/head", "test.local", ask("deny", status=401, body="not for HEAD", set="x-h=1"))
        check(r.status == 401 and r.header_all("x-h") == ["1"], f"a denied HEAD: {r}")
        r = c.request("GET", "/d/after-head", "test.local", ask("allow"))
        check_upstream_served(r, "/d/after-head", "the request after a denied HEAD on its connection")
    version, status, fields, body = curl_h2c(w, "/d/h2", ask("deny", status=401, body="h2 says no",
                                                              set="www-authenticate=Basic"))
    check(version == "2" and status == 401 and body == "h2 says no" and ("www-authenticate", "Basic") in fields,
          f"a denied h2c request: {version} {status} {fields} {body!r}")
    w.check_log("GET", "/d/h2", 401, "UAEX", "ext_authz_denied", proto="HTTP/2")
    check(w.upstream_count() == up0 + 1, "the upstream saw a denied request (it saw /d/after-head only)")


@_test
def extauthz_grpc_errors(env):
    """A Check that fails is an error, answered 403 with an empty body (UAEX,
    ext_authz_error; counted error) and not sent upstream: the call ending
    with UNAVAILABLE, INTERNAL or PERMISSION_DENIED (a gRPC status, not a
    denial); answers that are not a CheckResponse (a wire type 7, a length
    past the end, an ok_response that is not a message, a field name with a
    space, a value with CR LF); no answer within the provider's 500 ms (the
    error comes well before the authorizer's 5 s). The next check gets its
    own answer. statusOnError "503" answers 503; failOpen lets errors through
    without the authorizer's fields (counted failure_mode_allowed) while a
    denial still denies."""
    def prov(**more):
        return providers(gprovider(timeout="500ms", **more))
    w = GWorld(env, prov(), custom())
    up0, c0 = w.upstream_count(), w.counters()
    cases = [("/e/unavailable", ask("grpc-error", grpc="UNAVAILABLE")),
             ("/e/internal", ask("grpc-error", grpc="INTERNAL", message="boom")),
             ("/e/permission", ask("grpc-error", grpc="PERMISSION_DENIED")),
             ("/e/wiretype", ask("garbage", garbage="wiretype")),
             ("/e/truncated", ask("garbage", garbage="truncated")),
             ("/e/nested", ask("garbage", garbage="nested")),
             ("/e/badname", ask("garbage", garbage="badname")),
             ("/e/badvalue", ask("garbage", garbage="badvalue"))]
    bad = []
    for path, hdrs in cases:
        r = w.req(path, hdrs)
        if not (r.status == 403 and r.body == b"" and r.header("x-upstream") is None):
            bad.append(f"{path}: {r}")
    check(not bad, "want 403 with an empty body (ext_authz error) for each of:\n  " + "\n  ".join(bad))
    t0 = time.monotonic()
    r = w.req("/e/slow", ask("slow", delay=5000, set="x-user=slow"))
    took = time.monotonic() - t0
    check_error_answer(r, 403, "an authorizer slower than the timeout")
    check(0.45 <= took < 4.0, f"the timeout is 500 ms: the error came after {took:.2f} s")
    check(w.upstream_count() == up0, "the upstream saw a request the authorizer failed")
    _, fields = seen(w.req("/headers", ask("allow", set="x-user=fresh") + [("X-User", "client")]))
    check(field(fields, "x-user") == ["fresh"], f"the check after the errors: the upstream got {fields}")
    bad = []
    for path, _ in cases + [("/e/slow", None)]:
        got_ = w.log_line("GET", path)
        if got_ != ["403", "UAEX", "ext_authz_error"]:
            bad.append(f"{path}: {' '.join(got_)}")
    check(not bad, "want the access log to say 403 UAEX ext_authz_error: " + "; ".join(bad))
    w.wait_counters(c0, error=len(cases) + 1, ok=1)

    w.reload(prov(statusOnError="503"), custom())
    check_error_answer(w.req("/e2/unavailable", ask("grpc-error")), 503, "statusOnError 503, a gRPC error")
    check_error_answer(w.req("/e2/garbage", ask("garbage")), 503, "statusOnError 503, garbage")
    check_error_answer(w.req("/e2/slow", ask("slow", delay=5000)), 503, "statusOnError 503, too slow")
    w.check_log("GET", "/e2/unavailable", 503, "UAEX", "ext_authz_error")

    w.reload(prov(failOpen=True), custom())
    c1 = w.counters()
    _, fields = seen(w.req("/headers", ask("grpc-error") + [("X-User", "client")]))
    check(field(fields, "x-user") == ["client"], f"failOpen, a gRPC error: the upstream gets the client's: {fields}")
    _, fields = seen(w.req("/headers", ask("garbage", garbage="badname") + [("X-User", "client")]))
    check(field(fields, "x-user") == ["client"] and field(fields, "bad name") == [],
          f"failOpen, an answer that is not valid: nothing of it goes upstream: {fields}")
    check_upstream_served(w.req("/e3/slow", ask("slow", delay=5000)), "/e3/slow", "failOpen, too slow")
    r = w.req("/e3/deny", ask("deny", status=401, body="still no"))
    check(r.status == 401 and r.body == b"still no", f"failOpen does not open a denial: {r}")
    w.check_log("GET", "/e3/slow", 200, "-", "via_upstream")
    w.wait_counters(c1, failure_mode_allowed=3, denied=1)


@_test
def extauthz_grpc_authorizer_down(env):
    """Nothing listens where the authorizer's ServiceEntry points: a checked
    request is answered 403 with an empty body (UAEX, ext_authz_error;
    counted error); a request the rule does not match is served; with
    failOpen it goes on to the upstream (counted failure_mode_allowed). The
    authorizer started later on that port is then called and decides."""
    dead = free_port(AUTHZ_ADDR)
    rules = '  rules: [{to: [{operation: {notPaths: ["/open*"]}}]}]\n'

    def prov(**more):
        return providers(gprovider(timeout="2s", **more))
    idle = GrpcAuthorizer(env, name="idle")
    w = GWorld(env, prov(), custom(rules=rules), authz_port=dead, authz=idle)
    up0, c0 = w.upstream_count(), w.counters()
    check_error_answer(w.req("/down/1", ask("allow")), 403, "the authorizer down")
    check_error_answer(w.req("/down/2", ask("allow")), 403, "the authorizer down, again")
    check(w.upstream_count() == up0, "the upstream saw a request that could not be checked")
    check_upstream_served(w.req("/open/1", ask("allow")), "/open/1", "a request the rule does not match")
    w.check_log("GET", "/down/1", 403, "UAEX", "ext_authz_error")
    w.wait_counters(c0, error=2)
    w.reload(prov(failOpen=True), custom(rules=rules))
    c1 = w.counters()
    check_upstream_served(w.req("/down/3", ask("deny")), "/down/3", "failOpen with the authorizer down")
    w.wait_counters(c1, failure_mode_allowed=1)
    check(idle.count() == 0, f"the authorizer that is not named got checks: {idle.checks()}")
    w.reload(prov(), custom(rules=rules))
    late = GrpcAuthorizer(env, name="late", port=dead)

    def decided():
        r = w.req("/down/late", ask("deny", status=401, body="up now"))
        return r.status == 401 and r.body == b"up now"
    poll(decided, 10, interval=0.2, what="the authorizer started late to decide a request")
    check(late.count() >= 1, "the late authorizer recorded no check")


@_test
def extauthz_provider_kind_changes_midcheck(env):
    """A reload that makes the provider of a check in flight a gRPC one (the
    same name) reads the check's answer as what it is, an HTTP service's: the
    allowing answer lets the request on to the upstream, where it was 403
    ext_authz_error."""
    import test_extauthz
    http_authz = test_extauthz.Authorizer(env, name="http")
    hsvc = "http-authz.auth.internal"
    hse = service_entry("hauthz", hsvc, [{"address": AUTHZ_ADDR, "port": http_authz.port}])
    hprov = providers(test_extauthz.provider(service=hsvc, includeRequestHeadersInCheck=test_extauthz.INCLUDE))
    w = GWorld(env, hprov, custom(), hse, workers=1)
    got = {}
    t = threading.Thread(target=lambda: got.setdefault("r", w.req("/k/slow", test_extauthz.ask("slow", delay=2500))))
    t.start()
    try:
        poll(lambda: http_authz.count() == 1, 5, what="the slow check to reach the HTTP authorizer")
        w.reload(providers(gprovider(timeout="3s")), custom(), hse)
        g0 = w.authz.count()
        r = w.req("/k/grpc", ask("deny", status=401, body="grpc now"))
        check(r.status == 401 and r.body == b"grpc now" and w.authz.count() == g0 + 1,
              f"after the reload, the gRPC authorizer decides: {r}")
    finally:
        t.join(10)
    check_upstream_served(got.get("r"), "/k/slow", "the check in flight over the provider's change of kind")


@_test
def extauthz_grpc_authorizer_restart(env):
    """The authorizer goes away and comes back on its port: while it is away
    checks are errors (403), and once it is back checks reach it again (the
    gateway's HTTP/2 connection to it is replaced)."""
    port = free_port(AUTHZ_ADDR)
    a = GrpcAuthorizer(env, name="first", port=port)
    w = GWorld(env, providers(gprovider(timeout="2s")), custom(), authz=a)
    for i in range(3):
        r = w.req(f"/r/{i}", ask("deny", status=401, body="first"))
        check(r.status == 401 and r.body == b"first", f"before the restart, request {i}: {r}")
    a.stop()
    check_error_answer(w.req("/r/away", ask("allow")), 403, "the authorizer gone")
    b = GrpcAuthorizer(env, name="second", port=port)

    def decided():
        r = w.req("/r/back", ask("deny", status=401, body="second"))
        return r.status == 401 and r.body == b"second"
    poll(decided, 10, interval=0.2, what="the restarted authorizer to decide a request")
    r = w.req("/r/after", ask("allow"))
    check_upstream_served(r, "/r/after", "allowed by the restarted authorizer")
    check(b.count() >= 2, f"the restarted authorizer got {b.count()} checks")


@_test
def extauthz_grpc_tls_gateway(env):
    """On an HTTPS server (OPTIONAL_MUTUAL): the CheckRequest has
    tls_session.sni the client's server name, scheme https and :scheme
    https, source.principal the client certificate's URI SAN (its subject
    without one, empty without a client certificate), destination.principal the server certificate's
    URI SAN, the destination port the gateway's; over HTTP/2 (ALPN h2, curl)
    protocol HTTP/2. A denial comes over TLS as over plaintext."""
    need_tools("curl")
    pki = Pki(env)
    srv = pki.leaf("gw", ["DNS:app.example.com", "URI:spiffe://x/gateway"])
    client = pki.leaf("client", ["URI:spiffe://x/client"])
    tls = f"{tls_simple(srv, 'OPTIONAL_MUTUAL')}, caCertificates: {pki.ca()}"
    w = GWorld(env, providers(gprovider(timeout="2s")), custom(), tls=tls)
    n = w.authz.count()
    t0 = time.time()
    with TlsConn(w.gw, "app.example.com", client_ctx(pki, cert=client)) as c:
        sport = c.sock.getsockname()[1]
        r = c.request("GET", "/tls/1?z=1", "app.example.com", ask("allow"))
    t1 = time.time()
    check_upstream_served(r, "/tls/1?z=1", "an allowed HTTPS request with a client certificate")
    rec = w.authz.one_since(n, "the HTTPS request with a client certificate")
    h = rec["http"]
    check(h["scheme"] == "https" and h["protocol"] == "HTTP/1.1" and h["path"] == "/tls/1?z=1"
          and h["host"] == "app.example.com",
          f"HTTPS: want scheme https protocol HTTP/1.1 path /tls/1?z=1 host app.example.com: {str(h)[:800]}")
    check_headers_map(rec, {":scheme": "https", ":authority": "app.example.com"}, "HTTPS")
    check(rec["tls_session"] == {"sni": "app.example.com"},
          f"attributes.tls_session: want sni app.example.com, got {rec['tls_session']}")
    check_peer(rec, "source", "127.0.0.1", sport, "spiffe://x/client", "HTTPS with a client certificate")
    check_peer(rec, "destination", "127.0.0.1", w.gw, "spiffe://x/gateway", "HTTPS with a client certificate")
    check_time(rec, t0, t1, "HTTPS")
    n = w.authz.count()
    with TlsConn(w.gw, "app.example.com", client_ctx(pki)) as c:
        sport = c.sock.getsockname()[1]
        r = c.request("GET", "/tls/2", "app.example.com", ask("deny", status=401, body="tls no"))
    check(r.status == 401 and r.body == b"tls no", f"a denied HTTPS request: {r}")
    rec = w.authz.one_since(n, "the HTTPS request without a client certificate")
    check_peer(rec, "source", "127.0.0.1", sport, "", "HTTPS without a client certificate")
    check_peer(rec, "destination", "127.0.0.1", w.gw, "spiffe://x/gateway", "HTTPS without a client certificate")
    w.check_log("GET", "/tls/2", 401, "UAEX", "ext_authz_denied")
    n = w.authz.count()
    dns_only = pki.leaf("client-dns", ["DNS:client.example.com"])
    with TlsConn(w.gw, "app.example.com", client_ctx(pki, cert=dns_only)) as c:
        sport = c.sock.getsockname()[1]
        r = c.request("GET", "/tls/3", "app.example.com", ask("allow"))
    check_upstream_served(r, "/tls/3", "an HTTPS request with a client certificate without a URI SAN")
    rec = w.authz.one_since(n, "the HTTPS request with a client certificate without a URI SAN")
    check_peer(rec, "source", "127.0.0.1", sport, "CN=client-dns",
               "a client certificate without a URI SAN (its subject, RFC 2253 as Envoy prints it)")
    n = w.authz.count()
    rc, out, err = curl(["--http2", "--cacert", pki.ca(), "--resolve", f"app.example.com:{w.gw}:127.0.0.1",
                         "-H", "x-authz: allow", "-w", "\n%{http_version}", "--max-time", "10",
                         f"https://app.example.com:{w.gw}/tls/h2"], timeout=20)
    check(rc == 0 and out == "a /tls/h2\n\n2", f"curl --http2 over TLS: rc {rc} {out!r} {err}")
    rec = w.authz.one_since(n, "the HTTP/2 request over TLS")
    check(rec["http"]["protocol"] == "HTTP/2" and rec["http"]["scheme"] == "https"
          and rec["tls_session"] == {"sni": "app.example.com"}
          and hmap(rec).get(":authority") == f"app.example.com:{w.gw}",
          f"HTTP/2 over TLS: want protocol HTTP/2, scheme https, sni app.example.com, :authority "
          f"app.example.com:{w.gw}: {str(rec)[:1500]}")


@_test
def extauthz_grpc_grpc_client(env):
    """gRPC calls of a grpcio client through the gateway to grpc_upstream.py:
    an allowed call reaches the upstream, with the field the ok_response set
    in its metadata and response_headers_to_add in the client's initial
    metadata; its CheckRequest says POST, the method's path, HTTP/2,
    content-type application/grpc, size -1. Denied calls get HTTP 200 with
    grpc-status mapped from denied_response's status as Envoy maps it (403 →
    7 PERMISSION_DENIED, 401 → 16 UNAUTHENTICATED, 429 → 14, none → 403 → 7)
    and grpc-message the body; an error gets statusOnError's mapping (403 →
    7, "503" → 14). The upstream sees only the allowed calls."""
    need_tools("grpc", "h2")
    gport = start_grpc_upstream(env, UP, "g")
    routes = (f"  - match: [{{uri: {{prefix: /isthmus.test.Echo/}}}}]\n"
              f"    route: [{{destination: {{host: {GSVC}}}}}]\n" + ROUTE_ALL)
    gse = service_entry_protocol("g", GSVC, [{"address": UP, "port": gport}], "GRPC")
    w = GWorld(env, providers(gprovider(timeout="2s")), custom(), gse, routes=routes)

    def md(verdict, **more):
        return [[k, v] for k, v in ask(verdict, **more)]
    n = w.authz.count()
    res = grpc(w.gw, [
        {"method": "Unary", "request": "hi", "metadata": md("allow", resp="x-r=1")},
        {"method": "Headers", "request": "{}", "metadata": md("allow", set="x-user=grpc-admin")},
        {"method": "Unary", "request": "x", "metadata": md("deny", status=403, body="go away")},
        {"method": "Unary", "request": "x", "metadata": md("deny", status=401, body="who")},
        {"method": "Unary", "request": "x", "metadata": md("deny", status=429, body="later")},
        {"method": "Unary", "request": "x", "metadata": md("deny-bare")},
        {"method": "Unary", "request": "x", "metadata": md("grpc-error")},
    ])
    ok, headers, forbidden, unauth, later, bare, error = res
    check(ok["code"] == "OK" and ok["responses"] == ["hi"] and ["x-r", "1"] in ok["initial_metadata"],
          f"an allowed call: want OK 'hi' with x-r: 1 in the initial metadata, got {ok}")
    check(headers["code"] == "OK", f"the allowed Headers call: {headers}")
    got_md = json.loads(headers["responses"][0])["metadata"]
    check(["x-user", "grpc-admin"] in got_md, f"the upstream's metadata lacks x-user: grpc-admin: {got_md}")
    for r, code, details, what in ((forbidden, 7, "go away", "denied 403"), (unauth, 16, "who", "denied 401"),
                                   (later, 14, "later", "denied 429"), (bare, 7, None, "denied, no denied_response"),
                                   (error, 7, None, "an error (statusOnError 403)")):
        check(r["code_value"] == code and (details is None or r["details"] == details) and not r["responses"],
              f"a gRPC call {what}: want status {code}" + (f" with {details!r}" if details else "") + f", got {r}")
    recs = w.authz.since(n, 7, "the gRPC calls")
    rec = recs[0]
    h = rec["http"]
    check(h["method"] == "POST" and h["path"] == "/isthmus.test.Echo/Unary" and h["protocol"] == "HTTP/2"
          and h["size"] == -1 and h["scheme"] == "http",
          f"a gRPC call's CheckRequest: want POST /isthmus.test.Echo/Unary HTTP/2 size -1: {str(h)[:800]}")
    check_headers_map(rec, {":method": "POST", ":path": "/isthmus.test.Echo/Unary", "content-type": "application/grpc",
                            "te": "trailers", "x-authz": "allow"}, "a gRPC call")
    stats = grpc(w.gw, [{"method": "Stats", "request": "", "metadata": md("allow")}])[0]
    calls = json.loads(stats["responses"][0])["calls"]
    check(calls == {"Unary": 1, "Headers": 1, "Stats": 1}, f"the upstream's calls: want only the allowed ones: {calls}")
    w.reload(providers(gprovider(timeout="2s", statusOnError="503")), custom(), gse)
    r = grpc(w.gw, [{"method": "Unary", "request": "x", "metadata": md("grpc-error")}])[0]
    check(r["code_value"] == 14, f"a gRPC call whose check failed, statusOnError 503: want 14, got {r}")


@_test
def extauthz_grpc_concurrent(env):
    """Checks in flight together on the gateway's HTTP/2 connections to the
    authorizer and answered out of order (0 to 300 ms each): 12 HTTP/1.1
    clients at once and 8 streams of one HTTP/2 connection; each request's
    upstream gets the x-user its own CheckResponse set."""
    w = GWorld(env, providers(gprovider(timeout="5s")), custom())
    check_own_answers(w, ask, 12, 8)


@_test
def extauthz_grpc_authorizer_tls(env):
    """The Check goes through the authorizer's cluster: with a DestinationRule
    originating TLS (SIMPLE, the test CA), extauthz_grpc.py serving TLS gets
    its calls over TLS and decides."""
    pki = Pki(env)
    cert = pki.leaf("authz", [f"DNS:{AUTHZ_HOST}"], key="ec")
    dr = dest_rule("authz-tls", AUTHZ_HOST, tls=f"mode: SIMPLE, caCertificates: {pki.ca()}, sni: {AUTHZ_HOST}")
    w = GWorld(env, providers(gprovider(timeout="2s")), custom(), dr, cert=cert)
    n = w.authz.count()
    r = w.req("/tls/1", ask("deny", status=401, body="over tls"))
    check(r.status == 401 and r.body == b"over tls", f"the gRPC authorizer over TLS denies: {r}")
    rec = w.authz.one_since(n, "the check over TLS")
    check(rec["tls"], f"the Check did not come over TLS: {rec['peer']}")
    check_upstream_served(w.req("/tls/2", ask("allow")), "/tls/2", "the gRPC authorizer over TLS allows")


@_test
def extauthz_grpc_proxy_protocol(env):
    """On a listener that takes a PROXY header, the CheckRequest's source is
    the header's source address and port, and its destination the header's
    destination (the address the client reached), not the connection's."""
    w = GWorld(env, providers(gprovider(timeout="2s")), custom(), proxy_protocol=True)
    n = w.authz.count()
    with Conn("127.0.0.1", w.gw) as c:
        c.send(b"PROXY TCP4 127.0.0.99 127.0.0.98 40001 8443\r\n")
        r = c.request("GET", "/pp/1", "test.local", ask("allow"))
    check_upstream_served(r, "/pp/1", "a request behind a PROXY header")
    rec = w.authz.one_since(n, "the request behind a PROXY header")
    check_peer(rec, "source", "127.0.0.99", 40001, "", "behind a PROXY header")
    check_peer(rec, "destination", "127.0.0.98", 8443, "", "behind a PROXY header")


@_test
def extauthz_grpc_http2_port(env):
    """The authorizer's ServiceEntry port of protocol HTTP2 (not GRPC) serves as
    well: an allowed request is served with the field its CheckResponse set, a
    denied one gets the denial."""
    w = GWorld(env, providers(gprovider(timeout="2s")), custom(), protocol="HTTP2")
    _, fields = seen(w.req("/headers", ask("allow", set="x-user=h2port")))
    check(field(fields, "x-user") == ["h2port"], f"allowed over an HTTP2 port: the upstream got {fields}")
    r = w.req("/h2port/no", ask("deny", status=401, body="h2 port says no"))
    check(r.status == 401 and r.body == b"h2 port says no", f"denied over an HTTP2 port: {r}")
    check(w.authz.count() == 2, f"want 2 checks, the authorizer got {w.authz.count()}")


@_test
def extauthz_grpc_remove_pseudo(env):
    """headers_to_remove naming pseudo-headers (:authority, :path) is not an
    error: they are not removed (the docs: "not host nor pseudo-headers";
    Envoy skips names it may not remove), the request goes on to the
    upstream with its path and host, and the other names are removed."""
    w = GWorld(env, providers(gprovider(timeout="2s")), custom())
    r = w.req("/headers?p=1", ask("allow", remove=":authority|:path|x-drop") + [("X-Drop", "gone")])
    line, fields = seen(r)
    check(line.split(" ")[1] == "/headers?p=1" and field(fields, "host") == ["test.local"]
          and field(fields, "x-drop") == [],
          f"headers_to_remove with :authority and :path: want /headers?p=1, host test.local, no x-drop: "
          f"{line!r} {fields}")
    w.check_log("GET", "/headers?p=1", 200, "-", "via_upstream")


@_test
def extauthz_grpc_many_fields(env):
    """An ok_response setting 80 fields gets them all to the upstream (Envoy
    bounds their number only by the message's size; the docs name no
    bound)."""
    w = GWorld(env, providers(gprovider(timeout="2s")), custom())
    r = w.req("/headers", ask("allow", many="x-many=80"))
    check(r.status == 200, f"an ok_response setting 80 fields: want the upstream's 200, got {r}")
    _, fields = seen(r)
    missing = [i for i in range(80) if field(fields, f"x-many-{i}") != [f"v{i}"]]
    check(not missing, f"an ok_response setting 80 fields: the upstream lacks x-many-N for N in {missing}")


GRPC_TIMEOUT_UNITS = {"H": 3600.0, "M": 60.0, "S": 1.0, "m": 1e-3, "u": 1e-6, "n": 1e-9}


def grpc_timeout_s(value):
    """A grpc-timeout value ("2S", "500m") in seconds; None when it is not one."""
    m = re.fullmatch(r"(\d{1,8})([HMSmun])", value or "")
    return int(m.group(1)) * GRPC_TIMEOUT_UNITS[m.group(2)] if m else None


@_test
def extauthz_grpc_call_framing(env):
    """The Check call as the authorizer's HTTP/2 server sees it (extauthz_grpc.py
    --raw): POST /envoy.service.auth.v3.Authorization/Check, :scheme http,
    :authority the service's host, content-type application/grpc, te
    trailers, grpc-timeout the provider's timeout (2 s), one uncompressed
    message holding the CheckRequest."""
    w = GWorld(env, providers(gprovider(timeout="2s")), custom(), authz=GrpcAuthorizer(env, raw=True))
    n = w.authz.count()
    check_upstream_served(w.req("/frame/1?a=b", ask("allow")), "/frame/1?a=b", "an allowed request")
    rec = w.authz.one_since(n, "the request")
    h = {}
    for k, v in rec["h2_headers"]:
        h.setdefault(k, []).append(v)
    want = {":method": ["POST"], ":path": ["/envoy.service.auth.v3.Authorization/Check"], ":scheme": ["http"],
            ":authority": [AUTHZ_HOST], "te": ["trailers"]}
    bad = [f"{k}: want {v}, got {h.get(k)}" for k, v in want.items() if h.get(k) != v]
    ct = h.get("content-type") or [""]
    if len(ct) != 1 or not re.fullmatch(r"application/grpc(\+proto)?", ct[0]):
        bad.append(f"content-type: want application/grpc, got {ct}")
    gt = h.get("grpc-timeout") or []
    secs = grpc_timeout_s(gt[0]) if len(gt) == 1 else None
    if secs is None or not 1.0 < secs <= 2.0:
        bad.append(f"grpc-timeout: want the provider's 2 s (at most), got {gt} ({secs} s)")
    check(not bad, "the Check call's HEADERS: " + "; ".join(bad) + f" (all: {rec['h2_headers']})")
    check(rec["messages"] == [[0, rec["size_bytes"]]] and rec["http"]["path"] == "/frame/1?a=b",
          f"the Check call's body: want one uncompressed message, the CheckRequest: {rec['messages']}")


@_test
def extauthz_grpc_call_errors(env):
    """Answers of the authorizer's HTTP/2 server that are not an OK gRPC call
    with a CheckResponse (extauthz_grpc.py --raw) are errors, each answered
    403 with an empty body (UAEX ext_authz_error, counted error), none
    forwarded: HTTP 503 and 500, a compressed message, a message cut short
    before grpc-status 0, no message then grpc-status 0, a message without
    trailers (no grpc-status), a message then grpc-status 13, a RST_STREAM,
    the connection closed. After the closed connection the next check is
    made (on a new connection) and decides."""
    w = GWorld(env, providers(gprovider(timeout="2s")), custom(), authz=GrpcAuthorizer(env, raw=True))
    up0, c0 = w.upstream_count(), w.counters()
    cases = [("/x/http503", ask("http-status", http=503)), ("/x/http500", ask("http-status", http=500)),
             ("/x/compressed", ask("compressed")), ("/x/bad-frame", ask("bad-frame")),
             ("/x/no-message", ask("no-message")), ("/x/no-trailers", ask("no-trailers")),
             ("/x/allow-then-error", ask("allow-then-error")), ("/x/reset", ask("reset")), ("/x/close", ask("close"))]
    bad = []
    for path, hdrs in cases:
        r = w.req(path, hdrs + [("X-User", "client")])
        if not (r.status == 403 and r.body == b"" and r.header("x-upstream") is None):
            bad.append(f"{path}: {r}")
    check(not bad, "want 403 with an empty body (ext_authz error) for each of:\n  " + "\n  ".join(bad))
    check(w.upstream_count() == up0, "the upstream saw a request whose check failed")
    r = w.req("/x/after", ask("deny", status=401, body="decided"))
    check(r.status == 401 and r.body == b"decided", f"the check after the closed connection: {r}")
    bad = []
    for path, _ in cases:
        got_ = w.log_line("GET", path)
        if got_ != ["403", "UAEX", "ext_authz_error"]:
            bad.append(f"{path}: {' '.join(got_)}")
    check(not bad, "want the access log to say 403 UAEX ext_authz_error: " + "; ".join(bad))
    w.wait_counters(c0, error=len(cases), denied=1)


@_test
def extauthz_grpc_cancel(env):
    """A Check the gateway gives up on is cancelled (its stream reset, as
    Envoy's ext_authz cancels its gRPC request): on the provider's timeout
    (500 ms, the authorizer would answer after 5 s), and when the HTTP/2
    client goes away while its check is in flight. The gateway serves on."""
    need_tools("h2")
    w = GWorld(env, providers(gprovider(timeout="500ms")), custom(), authz=GrpcAuthorizer(env, raw=True))
    workers = w.env.workers()
    check_error_answer(w.req("/c/slow", ask("slow", delay=5000)), 403, "a check past the timeout")

    def reset_of(path):
        return next((e for e in w.authz.events() if e["event"] == "reset" and e.get("path") == path), None)
    poll(lambda: reset_of("/c/slow"), 3, what="the timed-out Check's stream to be reset by the gateway")
    w.reload(providers(gprovider(timeout="10s")), custom())
    n = w.authz.count()
    client = background(env, "h2_client.py", h2_args(
        w.gw, [{"path": "/c/gone", "headers": [[k, v] for k, v in ask("slow", delay=5000)]}], timeout=10), 10)
    poll(lambda: w.authz.count() > n, 5, what="the check of the HTTP/2 client to reach the authorizer")
    client.kill()  # the client goes away (its connection closed) while its check waits
    poll(lambda: reset_of("/c/gone"), 3, what="the Check of a client gone to be reset by the gateway")
    check_upstream_served(w.req("/c/after", ask("allow")), "/c/after", "a request after")
    check(w.env.gateway.alive() and w.env.workers() == workers,
          f"workers {workers} before, {w.env.workers()} after (a worker died?)")


@_test
def extauthz_grpc_no_healthy_endpoint(env):
    """The authorizer's only endpoint is unhealthy (a grpc health check:
    extauthz_grpc.py has no grpc.health.v1 service, UNIMPLEMENTED; its
    DestinationRule's outlierDetection leaves no panic threshold): a
    checked request is an error (403, empty body, UAEX ext_authz_error)
    without a Check being sent; a request the rule does not match is
    served."""
    rules = '  rules: [{to: [{operation: {notPaths: ["/open*"]}}]}]\n'
    hc = (f"  healthChecks:\n  - {{host: {AUTHZ_HOST}, type: grpc, interval: 200ms, timeout: 200ms, "
          f"healthyThreshold: 1, unhealthyThreshold: 2}}\n")
    w = GWorld(env, providers(gprovider(timeout="2s")) + hc, custom(rules=rules), no_panic_rule("authz", AUTHZ_HOST))

    def unhealthy():
        text = http_get(w.admin, "/metrics").body.decode()
        return re.search(r'^isthmus_endpoint_healthy\{[^}]*service="' + re.escape(AUTHZ_HOST) + r'"[^}]*\} 0$',
                         text, re.M)
    poll(unhealthy, 5, what="the authorizer's endpoint unhealthy in /metrics")
    c0 = w.counters()
    check_error_answer(w.req("/uh/1", ask("allow")), 403, "no healthy authorizer")
    check_upstream_served(w.req("/open/1", ask("allow")), "/open/1", "a request the rule does not match")
    check(w.authz.count() == 0, f"a Check went to the unhealthy authorizer: {w.authz.checks()}")
    w.check_log("GET", "/uh/1", 403, "UAEX", "ext_authz_error")
    w.wait_counters(c0, error=1)


@_test
def extauthz_grpc_large(env):
    """Messages over one HTTP/2 frame (16 KiB) both ways: a request with two
    9000-byte fields has them whole in its CheckRequest; an ok_response
    setting a 20000-byte field gets it to the upstream whole; a denial with
    a 60000-byte body gets it to the client whole."""
    w = GWorld(env, providers(gprovider(timeout="3s")), custom())
    n = w.authz.count()
    big1, big2 = "k" * 9000, "m" * 9000
    r = w.req("/big/1", ask("allow") + [("X-Big-1", big1), ("X-Big-2", big2)])
    check_upstream_served(r, "/big/1", "a request with 18 kB of fields")
    rec = w.authz.one_since(n, "the request with 18 kB of fields")
    check(rec["size_bytes"] > 18000 and hmap(rec).get("x-big-1") == big1 and hmap(rec).get("x-big-2") == big2,
          f"the big fields in the CheckRequest ({rec['size_bytes']} bytes): x-big-1 "
          f"{len(hmap(rec).get('x-big-1') or '')} bytes, x-big-2 {len(hmap(rec).get('x-big-2') or '')} bytes")
    _, fields = seen(w.req("/headers", ask("allow", fill="x-filled=20000")))
    check(field(fields, "x-filled") == ["y" * 20000],
          f"a 20000-byte field of the ok_response: the upstream got {[len(v) for v in field(fields, 'x-filled')]}")
    r = w.req("/big/deny", ask("deny", status=403, body="big", pad=60000))
    check(r.status == 403 and r.body == b"big" + b"z" * 60000,
          f"a denial with a 60003-byte body: {r.status}, {len(r.body)} bytes")


@_test
def extauthz_grpc_max_streams(env):
    """The authorizer allows 2 streams at once on a connection
    (SETTINGS_MAX_CONCURRENT_STREAMS): 10 HTTP/1.1 clients at once, each
    check answered after 300 ms, all get their own answer (x-user) within
    bounds: the gateway keeps to the limit (a stream over it would be
    refused and the request would get 403)."""
    w = GWorld(env, providers(gprovider(timeout="8s")), custom(), authz=GrpcAuthorizer(env, max_streams=2))
    results = {}

    def one(i):
        try:
            _, fields = seen(w.req("/headers", ask("slow", delay=300, set=f"x-user=u{i}")))
            results[i] = field(fields, "x-user")
        except Exception as e:  # reported below, by request
            results[i] = repr(e)
    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(10)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 25
    for t in threads:
        t.join(max(0.1, deadline - time.monotonic()))
    check(not any(t.is_alive() for t in threads), "a client still waiting after 25 s")
    bad = {i: v for i, v in sorted(results.items()) if v != [f"u{i}"]}
    check(len(results) == 10 and not bad, f"requests that did not get their own x-user: {bad}")
    check(w.authz.count() == 10, f"want 10 checks, the authorizer got {w.authz.count()}")


@_test
def extauthz_grpc_reload_in_flight(env):
    """A reload while a Check is in flight: the request still gets its own
    answer (allowed, with the x-user its CheckResponse set), and requests
    after the reload are checked under the new configuration."""
    w = GWorld(env, providers(gprovider(timeout="5s")), custom())
    out = {}

    def one():
        try:
            out["r"] = w.req("/headers", ask("slow", delay=1500, set="x-user=inflight"))
        except Exception as e:  # reported below
            out["r"] = repr(e)
    t = threading.Thread(target=one, daemon=True)
    t.start()
    poll(lambda: w.authz.count() == 1, 5, what="the slow check to reach the authorizer")
    w.reload(providers(gprovider(timeout="4s", statusOnError="503")), custom())
    t.join(10)
    check(not t.is_alive(), "the request in flight over the reload still waits after 10 s")
    r = out.get("r")
    check(not isinstance(r, str), f"the request in flight over the reload: {r}")
    _, fields = seen(r)
    check(field(fields, "x-user") == ["inflight"], f"the request in flight: the upstream got {fields}")
    check_error_answer(w.req("/after", ask("grpc-error")), 503, "after the reload, statusOnError 503")


def error_cases():
    """(what, the providers, the authorizer's port protocol, the error's
    document and field (a regex), a regex the message matches, a line
    marker: (text, occurrence) on the line the error names, or None)."""
    field_ = r"Appliance test: spec\.extensionProviders\[0\]\.envoyExtAuthzGrpc\."
    return [
        ("the authorizer's port of protocol HTTP", providers(gprovider()), "HTTP",
         field_ + r"(port|service)", r"(?i)protocol|GRPC|HTTP2", None),
        ("the authorizer's port of protocol TCP", providers(gprovider()), "TCP",
         field_ + r"(port|service)", r"(?i)protocol|GRPC|HTTP2", None),
        ("includeRequestBodyInCheck without maxRequestBytes", providers(gprovider(includeRequestBodyInCheck={})),
         "GRPC", field_ + r"includeRequestBodyInCheck\.maxRequestBytes", "required field missing",
         ("includeRequestBodyInCheck", 1)),
        ("includeRequestBodyInCheck with maxRequestBytes 0",
         providers(gprovider(includeRequestBodyInCheck={"maxRequestBytes": 0, "packAsBytes": True})), "GRPC",
         field_ + r"includeRequestBodyInCheck\.maxRequestBytes", "must be an integer between 1 and 4294967295",
         ("includeRequestBodyInCheck", 1)),
        ("a service no ServiceEntry has", providers(gprovider(service="missing.auth.internal")), "GRPC",
         field_ + "service", "missing.auth.internal", ("service: missing", 1)),
        ("a port the ServiceEntry lacks", providers(gprovider(port=81)), "GRPC", field_ + "port", "",
         ("port: 81", 1)),
        ("statusOnError abc", providers(gprovider(statusOnError="abc")), "GRPC", field_ + "statusOnError", "",
         ("statusOnError", 1)),
        ("a timeout that is not a duration", providers(gprovider(timeout="soon")), "GRPC", field_ + "timeout", "",
         ('timeout: "soon"', 1)),
        ("an entry of two kinds",
         providers(f"  - name: ext\n    envoyExtAuthzGrpc: {{service: {AUTHZ_HOST}, port: 80}}\n"
                   f"    envoyExtAuthzHttp: {{service: {AUTHZ_HOST}, port: 80}}\n"),
         "GRPC", r"Appliance test: spec\.extensionProviders\[0\]", "", None),
    ]


@_test
def extauthz_grpc_config_errors(env):
    """isthmus -c accepts an envoyExtAuthzGrpc provider whose service's port
    has protocol GRPC or HTTP2 (with timeout, failOpen, statusOnError), and
    refuses, naming the file, line and column, the document and the field:
    the port's protocol HTTP or TCP, includeRequestBodyInCheck without
    maxRequestBytes (required field missing) or with maxRequestBytes 0 (must
    be an integer between 1 and 4294967295), a service without a
    ServiceEntry, a port not of it, statusOnError abc, a timeout that is not
    a duration, an entry of both kinds."""
    ports = dict(gw=free_port(), admin=free_port(), log=env.path("access.log"), up=1, authz_port=2)
    good = providers(gprovider(timeout="250ms", failOpen=True, statusOnError="503"))
    for protocol in ("GRPC", "HTTP2"):
        rc, out = env.check_config(env.write("good.yaml", gconfig(env, good, custom(), protocol=protocol, **ports)))
        check(rc == 0, f"isthmus -c refuses an envoyExtAuthzGrpc provider on a {protocol} port: rc {rc}, {out}")
    check_config_errors(env, ((what, gconfig(env, prov, custom(), protocol=protocol, **ports), where, want, marker)
                              for what, prov, protocol, where, want, marker in error_cases()),
                        lambda out, m, want: re.search(want, out[m.end():]))
