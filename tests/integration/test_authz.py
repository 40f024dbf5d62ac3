# SPDX-License-Identifier: Apache-2.0
"""Integration tests of Istio's AuthorizationPolicy (security.istio.io/v1), as
istiod translates it into Envoy's RBAC filters at a gateway: DENY before ALLOW,
evaluated before routing; a denied request is a 403 "RBAC: access denied" (a
gRPC one grpc-status 7) that no upstream sees, logged with Envoy's response
code details; sources (peer and X-Forwarded-For addresses, certificate
identities), operations and conditions; TCP connections judged by their
connection attributes alone; which policies apply, dry-run, AUDIT, reload and
configuration errors.

Clients other than 127.0.0.1 bind 127.0.0.2 or 127.0.0.3; upstreams are on
127.0.0.4. Registered into run.py's list by register(test)."""

import re
import socket

from harness import (Conn, Registry, TestFailure, appliance, check, ctl_cmd, curl, docs, file_lines, free_port,
                     http_get, poll, service_entry, service_entry_protocol, virtual_service)
from test_h2 import UNIMPLEMENTED, check_grpc_local_error, h2_client, hdr, need_tools
from test_tls import Pki, client_ctx, server, tls_get, tls_simple
from test_tls import world as tls_world
from test_tunnels import tcp_backend

_test = Registry()
register = _test.register

SVC = "authz.test.internal"
UP = "127.0.0.4"
DENIED = "RBAC: access denied"
ROUTE_ALL = f"  - route: [{{destination: {{host: {SVC}}}}}]\n"


def policy(name, spec, ns="default", dry_run=False):
    """An AuthorizationPolicy; spec: its lines under spec:, indented two spaces;
    dry_run: True, or the istio.io/dry-run annotation's value as written."""
    value = "true" if dry_run is True else dry_run
    ann = f', annotations: {{istio.io/dry-run: "{value}"}}' if dry_run else ""
    return (f"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
            f"metadata: {{name: {name}, namespace: {ns}{ann}}}\nspec:\n{spec}")


def gateway_ports(ports, protocol="HTTP"):
    return ("apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  servers:\n" +
            "".join(f"  - port: {{number: {p}, name: {protocol.lower()}-{p}, protocol: {protocol}}}\n"
                    f"    hosts: [\"*\"]\n" for p in ports))


def world(env, *policies, routes=ROUTE_ALL, app_extra="", ports=None):
    """The upstream "a" on UP behind a plaintext gateway on ports (default: one
    free port), with policies; env.conf(*policies) writes the file again (for
    reloads). Returns (the gateway's ports, the upstream's port)."""
    up = env.upstream([f"{UP}:0=a"], name="a")["a"]
    gws = ports or [free_port()]

    def conf(*pols):
        return env.write("isthmus.yaml", docs(
            appliance(env, extra=app_extra), gateway_ports(gws), virtual_service("vs", ["*"], routes),
            service_entry("a", SVC, [{"address": UP, "port": up}]), *pols))

    env.conf = conf
    env.start_gateway(conf(*policies), gws[0])
    return gws, up


def reload(env, *policies, ok=True):
    env.conf(*policies)
    ans = ctl_cmd(env.path("ctl.sock"), "reload")
    check(("published" in ans) == ok, f"reload {'refused' if ok else 'published'}: {ans!r}")


def get(port, path="/", host="test.local", src="127.0.0.1", headers=None, method="GET"):
    with Conn("127.0.0.1", port, source=(src, 0)) as c:
        return c.request(method, path, host, headers)


def check_denied(r, what):
    check(r.status == 403 and r.body.decode().strip() == DENIED and r.header("x-upstream") is None
          and (r.header("content-type") or "").startswith("text/plain"),
          f"{what}: want Envoy's RBAC 403 text/plain {DENIED!r}, got {r}")


def upstream_count(up):
    return int(http_get(up, "/__ctl/count", addr=UP).body)


def log_line(log, *needles):
    """The access-log line holding every one of needles (polled, bounded)."""
    try:
        return poll(lambda: next((l for l in file_lines(log) if all(n in l for n in needles)), None), 5,
                    what=f"an access-log line with {needles}")
    except TestFailure as e:
        raise TestFailure(f"{e}; the log has {file_lines(log)[-10:]}")


def details(name, rule, ns="default"):
    return f"rbac_access_denied_matched_policy[ns[{ns}]-policy[{name}]-rule[{rule}]]"


@_test
def authz_deny_paths_and_log(env):
    """DENY paths (prefix, exact without the query string, {*} and {**}
    templates; case-sensitive): a denied request is Envoy's 403 and the upstream
    never sees it, a path without a route too (403, not 404), over HTTP/1.1 and
    h2c alike; the access log's response code details name the namespace,
    policy and rule that matched (of two, the first by name, as Envoy's RBAC
    engine orders its policies, whatever the file's order)."""
    log = env.path("access.log")
    routes = "".join(f"  - match: [{{uri: {{prefix: {p}}}}}]\n    route: [{{destination: {{host: {SVC}}}}}]\n"
                     for p in ("/ok", "/admin/"))
    deny = policy("deny-admin", "  action: DENY\n  rules:\n  - to: [{operation: {paths: [\"/admin*\"]}}]\n"
                  "  - to: [{operation: {paths: [/ok/secret]}}]\n"
                  "  - to: [{operation: {paths: [\"/ok/{*}/secret\", \"/ok/deep/{**}\"]}}]\n")
    also = policy("a-also", "  action: DENY\n  rules: [{to: [{operation: {paths: [/ok/secret]}}]}]\n")
    (gw,), up = world(env, deny, also, routes=routes, app_extra=f"  accessLog: {{path: {log}, format: text}}\n")
    before = upstream_count(up)
    for path in ("/admin/x", "/adminz", "/ok/secret?x=1", "/ok/a/secret", "/ok/deep/a/b"):
        check_denied(get(gw, path), path)
    check(upstream_count(up) == before, "the upstream saw a denied request")
    # A template's {*} and {**} take Envoy's segment characters only ('*' is none).
    for path, status in (("/nothing", 404), ("/ADMIN/x", 404), ("/ok/x", 200), ("/ok/a/b/secret", 200),
                         ("/ok/secretz", 200), ("/ok/a*b/secret", 200)):
        r = get(gw, path)
        check(r.status == status and (status != 200 or r.header("x-upstream") == "a"), f"{path}: want {status}: {r}")
    rc, out, err = curl(["--http2-prior-knowledge", "-w", "\n%{http_version} %{http_code}",
                         f"http://127.0.0.1:{gw}/admin/h2"], timeout=20)
    body, _, tail = out.rpartition("\n")
    check(rc == 0 and tail == "2 403" and body.strip() == DENIED, f"h2c: rc {rc} {out!r} {err}")
    for path, name, rule in (("/admin/x HTTP/1.1", "deny-admin", 0), ("/adminz HTTP/1.1", "deny-admin", 0),
                             ("/ok/secret?x=1 HTTP/1.1", "a-also", 0), ("/ok/a/secret HTTP/1.1", "deny-admin", 2),
                             ("/ok/deep/a/b HTTP/1.1", "deny-admin", 2), ("/admin/h2 HTTP/2", "deny-admin", 0)):
        log_line(log, f" {path}\" 403 ", details(name, rule))
    # The route the request would have taken is named, as Envoy finds it before its filters.
    line = log_line(log, " /admin/x HTTP/1.1\" 403 ")
    check(line.endswith(" default/vs#1"), f"the denied request's line names its route: {line}")


@_test
def authz_allow_ip_blocks(env):
    """ALLOW from ipBlocks (the peer): 127.0.0.1 is served, 127.0.0.2 denied,
    logged rbac_access_denied_matched_policy[none]. After a reload, an ipBlocks
    CIDR ANDed with notIpBlocks in one source, and a second ALLOW policy whose
    rule (ORed with the first's) lets 127.0.0.2 reach /two only."""
    log = env.path("access.log")
    (gw,), _ = world(env, policy("from-one", "  rules: [{from: [{source: {ipBlocks: [127.0.0.1/32]}}]}]\n"),
                     app_extra=f"  accessLog: {{path: {log}, format: text}}\n")
    check(get(gw, "/a").status == 200, "127.0.0.1 is allowed")
    check_denied(get(gw, "/b", src="127.0.0.2"), "127.0.0.2")
    check_denied(get(gw, "/b", src="127.0.0.3"), "127.0.0.3")
    log_line(log, " /b ", " 403 ", "rbac_access_denied_matched_policy[none]", "127.0.0.2:")
    reload(env, policy("local", "  rules:\n  - from:\n"
                       "    - source: {ipBlocks: [127.0.0.0/30], notIpBlocks: [127.0.0.2]}\n"
                       "    - source: {ipBlocks: [10.0.0.0/8]}\n"),
           policy("two", "  rules: [{from: [{source: {ipBlocks: [127.0.0.2]}}],\n"
                  "           to: [{operation: {paths: [/two]}}]}]\n"))
    for src, path, status in (("127.0.0.1", "/", 200), ("127.0.0.2", "/", 403), ("127.0.0.3", "/", 200),
                              ("127.0.0.2", "/two", 200), ("127.0.0.3", "/two", 200)):
        r = get(gw, path, src=src)
        check(r.status == status, f"after the reload, {src} {path}: want {status}, got {r}")


@_test
def authz_explain(env):
    """explain METHOD URL gives the policies' verdict as a worker reaches it:
    the DENY rule that matches, no ALLOW rule matching, or the ALLOW rule that
    lets the request through, with from= and X-Forwarded-For (by
    numTrustedProxies) as the request's sources."""
    deny = policy("deny-admin", "  action: DENY\n  rules: [{to: [{operation: {paths: [\"/admin*\"]}}]}]\n")
    allow = policy("allow-lo", "  rules:\n  - from: [{source: {remoteIpBlocks: [127.0.0.0/8]}}]\n")
    (gw,), _ = world(env, deny, allow, app_extra="  gatewayTopology: {numTrustedProxies: 1}\n")
    sock = env.path("ctl.sock")
    for args, want in (
            (f"GET http://test.local:{gw}/admin/x", [details("deny-admin", 0), "the answer is 403"]),
            (f"GET http://test.local:{gw}/a", ["allowed by the ALLOW rule ns[default]-policy[allow-lo]-rule[0]",
                                             "route: "]),
            (f"GET http://test.local:{gw}/a from=10.0.0.1", ["rbac_access_denied_matched_policy[none]",
                                                            "the answer is 403"]),
            (f"GET http://test.local:{gw}/a from=10.0.0.1 x-forwarded-for=127.0.0.9",
             ["allowed by the ALLOW rule"])):
        ans = ctl_cmd(sock, "explain " + args)
        check(all(w in ans for w in want), f"explain {args}: want {want}: {ans}")
    check(get(gw, "/a").status == 200 and get(gw, "/admin/x").status == 403, "the workers agree")


@_test
def authz_remote_ip_xff(env):
    """numTrustedProxies 1: remoteIpBlocks and the remote.ip condition match the
    client X-Forwarded-For names (the rightmost address), else the peer;
    ipBlocks stays the peer whatever the header says."""
    deny = policy("remote", "  action: DENY\n  rules:\n"
                  "  - from: [{source: {remoteIpBlocks: [203.0.113.0/24]}}]\n"
                  "  - from: [{source: {ipBlocks: [198.51.100.0/24]}}]\n"
                  "  - when: [{key: remote.ip, values: [192.0.2.0/24]}]\n")
    (gw,), _ = world(env, deny, app_extra="  gatewayTopology: {numTrustedProxies: 1}\n")
    for xff, status in (("203.0.113.7", 403), ("198.51.100.1", 200), (None, 200), ("203.0.113.7, 10.0.0.1", 200),
                        ("10.0.0.1, 203.0.113.9", 403), ("192.0.2.9", 403)):
        r = get(gw, headers={"X-Forwarded-For": xff} if xff else None)
        check(r.status == status, f"X-Forwarded-For {xff!r}: want {status}, got {r}")


@_test
def authz_remote_ip_xff_lines(env):
    """X-Forwarded-For in several fields (a proxy that adds one per hop, as
    HAProxy's forwardfor does) is one list, as Envoy's header map joins them:
    with numTrustedProxies 2 the client is the second address from the right
    of all the fields together. The last field alone named too few addresses,
    so the peer (a trusted proxy) was taken for the client and an ALLOW of
    the proxies' addresses let an outside client in. The upstream gets the
    joined list with the peer appended after a comma (Envoy's appendXff), and
    the access log says the same."""
    allow = policy("proxies-only", "  rules:\n  - from: [{source: {remoteIpBlocks: [127.0.0.1/32, 127.0.0.9/32]}}]\n")
    log = env.path("access.log")
    (gw,), _ = world(env, allow, app_extra="  gatewayTopology: {numTrustedProxies: 2}\n"
                     f"  accessLog: {{path: {log}, format: text, textFormat: \"%REQ(:PATH)% %REQ(X-FORWARDED-FOR)%\"}}\n")
    cases = [  # (X-Forwarded-For fields, status)
        (["127.0.0.5", "127.0.0.9"], 403),  # client 127.0.0.5, then proxy 127.0.0.9
        (["127.0.0.5, 127.0.0.9"], 403),
        (["127.0.0.9", "127.0.0.1"], 200),  # the client is the allowed 127.0.0.9
    ]
    for i, (fields, status) in enumerate(cases):
        r = get(gw, f"/headers?{i}", headers=[("X-Forwarded-For", v) for v in fields])
        check(r.status == status, f"X-Forwarded-For fields {fields}: want {status}, got {r}")
    got = [l.lower() for l in r.body.decode().split("\r\n") if l.lower().startswith("x-forwarded-for:")]
    check(got == ["x-forwarded-for: 127.0.0.9,127.0.0.1,127.0.0.1"],
          f"the upstream's X-Forwarded-For of two fields: {got}")
    lines = poll(lambda: (lambda ls: ls if len(ls) >= 3 else None)(file_lines(log)), 5, what="three log lines")
    check("/headers?2 127.0.0.9,127.0.0.1,127.0.0.1" in lines, f"the access log's X-Forwarded-For: {lines}")


@_test
def authz_dual_stack_ipv4_client(env):
    """On a dual-stack listener ("::"), an IPv4 client is named as IPv4, as
    Envoy's listener reads the peer: a DENY by an IPv4 block (ipBlocks and
    remoteIpBlocks) matches it, and X-Forwarded-For, x-envoy-external-address
    and the access log carry 127.0.0.x, not ::ffff:127.0.0.x. It stayed in its
    IPv6-mapped form, so an IPv4 DENY let every IPv4 client through. An IPv6
    client (::1) is judged by IPv6 blocks."""
    deny = policy("deny-v4", "  action: DENY\n  rules:\n"
                  "  - from: [{source: {ipBlocks: [127.0.0.2/32]}}]\n"
                  "  - from: [{source: {remoteIpBlocks: [127.0.0.3/32]}}]\n"
                  "    to: [{operation: {paths: [/remote]}}]\n"
                  "  - from: [{source: {ipBlocks: [\"::1/128\"]}}]\n")
    log = env.path("access.log")
    up = env.upstream([f"{UP}:0=a"], name="a")["a"]
    gw = free_port()
    app = appliance(env, extra=f"  accessLog: {{path: {log}, format: text, "
                    "textFormat: \"%REQ(:PATH)% %DOWNSTREAM_REMOTE_ADDRESS%\"}\n")
    check("listenAddress: 127.0.0.1\n" in app, "the harness's Appliance names listenAddress")
    env.start_gateway(env.write("isthmus.yaml", docs(
        app.replace("listenAddress: 127.0.0.1\n", "listenAddress: \"::\"\n"), gateway_ports([gw]),
        virtual_service("vs", ["*"], ROUTE_ALL), service_entry("a", SVC, [{"address": UP, "port": up}]), deny)), gw)
    r = get(gw, "/headers")
    check(r.status == 200, f"127.0.0.1 is served: {r}")
    got = {l.split(":", 1)[0].lower(): l.split(":", 1)[1].strip() for l in r.body.decode().split("\r\n")
           if l.lower().startswith(("x-forwarded-for:", "x-envoy-external-address:"))}
    check(got == {"x-forwarded-for": "127.0.0.1", "x-envoy-external-address": "127.0.0.1"},
          f"the upstream's client address fields: {got}")
    check_denied(get(gw, "/a", src="127.0.0.2"), "127.0.0.2 by ipBlocks on a dual-stack listener")
    check_denied(get(gw, "/remote", src="127.0.0.3"), "127.0.0.3 by remoteIpBlocks on a dual-stack listener")
    check(get(gw, "/a", src="127.0.0.3").status == 200, "127.0.0.3 elsewhere is served")
    with Conn("::1", gw) as c:
        check_denied(c.request("GET", "/a", "test.local"), "::1 by an IPv6 block")
    # explain takes a URL with an IPv6 literal (its port's colon past the brackets)
    ans = ctl_cmd(env.path("ctl.sock"), f"explain GET http://[::1]:{gw}/a from=::1")
    check(details("deny-v4", 2) in ans, f"explain of an IPv6 URL: {ans}")
    line = log_line(log, "/headers ")
    check(re.fullmatch(r"/headers 127\.0\.0\.1:\d+", line), f"the access log's client address: {line!r}")


@_test
def xff_client_address_written_as_envoy(env):
    """The client address X-Forwarded-For names (numTrustedProxies) is written
    as inet_ntop writes it, as Envoy does, in x-envoy-external-address and the
    access log: FD00:0:0::5 is fd00::5 (it went on as the client spelt it, so
    two spellings of one client were two addresses to whatever compares text)."""
    log = env.path("access.log")
    (gw,), _ = world(env, app_extra="  gatewayTopology: {numTrustedProxies: 1}\n"
                     f"  accessLog: {{path: {log}, format: text, "
                     "textFormat: \"%REQ(:PATH)% %DOWNSTREAM_REMOTE_ADDRESS%\"}\n")
    for path, xff, want in (("/headers?6", "FD00:0:0::5", "fd00::5"), ("/headers?4", " 10.0.0.7 ", "10.0.0.7")):
        r = get(gw, path, headers=[("X-Forwarded-For", xff)])
        got = [l.split(":", 1)[1].strip() for l in r.body.decode().split("\r\n")
               if l.lower().startswith("x-envoy-external-address:")]
        check(r.status == 200 and got == [want], f"X-Forwarded-For {xff!r}: external address {got}, want {want}")
    lines = poll(lambda: (lambda ls: ls if len(ls) >= 2 else None)(file_lines(log)), 5, what="two log lines")
    # (two workers: either line may come first)
    check(sorted(lines) == ["/headers?4 10.0.0.7:0", "/headers?6 [fd00::5]:0"], f"the access log: {lines}")


@_test
def authz_ip_blocks_behind_proxy_protocol(env):
    """On a listener behind a PROXY-protocol load balancer, ipBlocks (and
    source.ip) are the socket's peer, the load balancer, as Istio writes them
    (Envoy's direct_remote_ip); remoteIpBlocks is the client the PROXY header
    names. ipBlocks matched the PROXY header's client, so a rule meant for
    the balancer's address decided on the client's."""
    deny = policy("pp", "  action: DENY\n  rules:\n"
                  "  - from: [{source: {ipBlocks: [203.0.113.0/24, 127.0.0.3/32]}}]\n"
                  "  - from: [{source: {remoteIpBlocks: [198.51.100.0/24]}}]\n")
    (gw,), _ = world(env, deny, app_extra="  gatewayTopology: {proxyProtocol: {}}\n")
    for src, client, status in (("127.0.0.1", "203.0.113.7", 200), ("127.0.0.1", "198.51.100.9", 403),
                                ("127.0.0.3", "192.0.2.1", 403), ("127.0.0.1", "192.0.2.1", 200)):
        with Conn("127.0.0.1", gw, source=(src, 0)) as c:
            c.send(f"PROXY TCP4 {client} 127.0.0.1 40000 {gw}\r\n".encode())
            r = c.request("GET", "/", "test.local")
        check(r.status == status, f"from {src}, PROXY naming {client}: want {status}, got {r}")


@_test
def authz_operation_and_when(env):
    """ALLOW with a rule of two operations (ORed) and a request.headers
    condition: hosts (suffix, case-insensitive), methods, notPaths and ports
    ANDed in the first, paths and notMethods in the second; each request below
    flips one condition of an allowed one."""
    gws = [free_port(), free_port()]
    allow = policy("ops", "  rules:\n  - to:\n"
                   f"    - operation: {{hosts: [\"*.example.com\"], methods: [GET, POST], notPaths: [\"/private*\"], "
                   f"ports: [\"{gws[0]}\"]}}\n"
                   "    - operation: {paths: [/private/open], notMethods: [DELETE]}\n"
                   "    when: [{key: \"request.headers[x-token]\", values: [\"abc*\"], notValues: [abc-revoked]}]\n")
    (gw, gw2), _ = world(env, allow, ports=gws)
    base = dict(port=gw, method="GET", path="/pub", host="WWW.Example.COM", token="abc1")
    cases = [({}, 200), ({"method": "POST"}, 200), ({"host": "other.org"}, 403), ({"host": "example.com"}, 403),
             ({"method": "DELETE"}, 403), ({"path": "/private/x"}, 403), ({"port": gw2}, 403), ({"token": None}, 403),
             ({"token": "xyz"}, 403), ({"token": "abc-revoked"}, 403),
             ({"port": gw2, "method": "PUT", "path": "/private/open", "host": "other.org"}, 200),
             ({"path": "/private/open", "method": "DELETE"}, 403),
             ({"path": "/private/open", "token": "zabc"}, 403)]
    for change, status in cases:
        q = dict(base, **change)
        r = get(q["port"], q["path"], q["host"], method=q["method"],
                headers={"X-Token": q["token"]} if q["token"] else None)
        check(r.status == status, f"{change or 'the allowed request'}: want {status}, got {r}")


@_test
def authz_grpc_denied(env):
    """A denied gRPC call is answered as Envoy answers it: HTTP 200,
    trailers-only, grpc-status 7 (PERMISSION_DENIED), before routing (a call
    with no route that is not denied gets 12); a plain HTTP/2 request on the
    same connection that is denied gets the 403; over HTTP/1.1 too."""
    need_tools("h2")
    (gw,), _ = world(env, policy("no-admin", "  action: DENY\n"
                                 "  rules: [{to: [{operation: {methods: [POST], paths: [\"*/Admin\"]}}]}]\n"),
                     routes=f"  - match: [{{uri: {{prefix: /ok}}}}]\n    route: [{{destination: {{host: {SVC}}}}}]\n")
    rep = h2_client(gw, [{"path": "/isthmus.test.Echo/Admin", "grpc": "x"},
                         {"path": "/isthmus.test.Echo/Unary", "grpc": "x"},
                         {"method": "POST", "path": "/x/Admin", "body": "x"}])
    denied, unrouted, plain = rep["streams"]
    check_grpc_local_error(denied, 7, "a denied gRPC call")
    check((hdr(denied, "grpc-message") or "").startswith(DENIED), f"grpc-message: {denied['headers']}")
    check_grpc_local_error(unrouted, UNIMPLEMENTED, "a gRPC call without a route, not denied")
    check(plain["status"] == 403 and plain["body"].strip() == DENIED, f"plain HTTP/2 POST: {plain}")
    with Conn("127.0.0.1", gw) as c:
        r = c.request("POST", "/isthmus.test.Echo/Admin", "x", [("Content-Type", "application/grpc")], b"")
    check(r.status == 200 and r.header("grpc-status") == "7", f"a denied gRPC request over HTTP/1.1: {r}")


def tcp_refused(port, src):
    """What a client from src receives before the gateway ends the connection
    (after sending a line): b"" when it is closed or reset without a byte."""
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(src, 0)) as s:
        try:
            s.sendall(b"secret\n")
            return s.recv(4096)
        except ConnectionError:
            return b""
        except socket.timeout:
            raise TestFailure(f"the connection from {src} was neither closed nor answered within 5 s")


def tcp_through(port, src):
    """The tunnel from src to the echo backend works: its greeting, then the echo."""
    with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(src, 0)) as s:
        f = s.makefile("rb")
        try:
            greet = f.readline()
            s.sendall(b"ping\n")
            echo = f.readline()
        except OSError as e:
            raise TestFailure(f"tunnel from {src}: {type(e).__name__}: {e}")
    check(greet == b"t\n" and echo == b"ping\n", f"tunnel from {src}: greeting {greet!r}, echo {echo!r}")


@_test
def authz_tcp(env):
    """On a TCP server a connection is judged when it arrives, by its connection
    attributes: a denied one is closed with no byte to or from the backend. In a
    DENY rule an HTTP-only field (methods) is left out, so the rest denies; an
    ALLOW rule with one is dropped (matches nothing), while the policy's other
    rule (source.ip and destination.port conditions) still allows."""
    be = tcp_backend(env, "t", UP)
    tcp = free_port()
    host = "tcp.test.internal"

    def conf(*pols):
        vs = ("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: tcp}\nspec:\n"
              f"  hosts: [\"*\"]\n  gateways: [gw]\n  tcp:\n"
              f"  - route: [{{destination: {{host: {host}, port: {{number: 80}}}}}}]\n")
        return env.write("isthmus.yaml", docs(appliance(env), gateway_ports([tcp], "TCP"), vs, service_entry_protocol(
            "t", host, [{"address": UP, "port": be.port}], "TCP"), *pols))

    env.conf = conf
    deny = policy("deny", "  action: DENY\n  rules:\n  - from: [{source: {ipBlocks: [127.0.0.2/32]}}]\n"
                  "  - from: [{source: {ipBlocks: [127.0.0.3/32]}}]\n    to: [{operation: {methods: [GET]}}]\n")
    env.start_gateway(conf(deny), tcp)
    for src in ("127.0.0.2", "127.0.0.3"):
        got = tcp_refused(tcp, src)
        check(got == b"", f"a denied connection from {src} received {got!r}")
    tcp_through(tcp, "127.0.0.1")
    st = be.ctl("stats")
    check(st["bytes_in"] == len(b"ping\n"), f"the backend got bytes of a denied connection: {st}")
    reload(env, policy("allow", "  rules:\n  - to: [{operation: {methods: [GET]}}]\n"
                       "  - when: [{key: source.ip, values: [127.0.0.3]},\n"
                       f"           {{key: destination.port, values: [\"{tcp}\"]}}]\n"))
    got = tcp_refused(tcp, "127.0.0.1")
    check(got == b"", f"the ALLOW rule with methods is dropped for TCP: 127.0.0.1 received {got!r}")
    tcp_through(tcp, "127.0.0.3")
    # explain gives the workers' verdict.
    ans = ctl_cmd(env.path("ctl.sock"), f"explain tcp {tcp} from=127.0.0.1")
    check("authorization: no ALLOW rule matches: rbac_access_denied_matched_policy[none]" in ans
          and "the connection is closed" in ans and "tcp route" not in ans, f"explain tcp from .1: {ans}")
    ans = ctl_cmd(env.path("ctl.sock"), f"explain tcp {tcp} from=127.0.0.3")
    check("authorization: allowed by the ALLOW rule ns[default]-policy[allow]-rule[1]" in ans
          and "tcp route" in ans, f"explain tcp from .3: {ans}")
    for cmd in (f"explain tcp {tcp} from=notanip", f"GET http://test.local:{tcp}/ from=10.0.0.1x"):
        ans = ctl_cmd(env.path("ctl.sock"), cmd if cmd.startswith("explain") else "explain " + cmd)
        check(ans.startswith("error: from=") and "is not an IP address" in ans, f"{cmd}: {ans}")


@_test
def authz_reload_and_errors(env):
    """isthmus -c refuses what Envoy's RBAC cannot do or Istio does not accept,
    naming the file, line, column and field; a policy of another namespace or
    whose selector does not select the appliance loads with a warning and no
    effect, as a dry-run DENY, a dry-run ALLOW and an AUDIT do; a reload that
    adds a root namespace DENY selecting the appliance applies, a reload with a
    bad policy is refused and the old one serves on; an ALLOW policy without
    rules denies everything."""
    head = docs(appliance(env), gateway_ports([free_port()]), virtual_service("vs", ["*"], ROUTE_ALL))
    cases = [("  action: CUSTOM\n  provider: {name: ext}\n  rules: [{}]\n", "spec.provider.name",
              'no extension provider "ext"'),
             ("  rules: [{when: [{key: \"request.auth.claims[a][]\", values: [a]}]}]\n", "spec.rules[0].when[0]",
              "request.auth.claims[<name>]"),
             ("  rules: [{when: [{key: \"experimental.envoy.filters.a[b]\", values: [a]}]}]\n",
              "spec.rules[0].when[0]", "not implemented yet"),
             ("  action: DENY\n  rules: [{from: [{source: {ipBlocks: [10.0.0.0/33]}}]}]\n",
              "spec.rules[0].from[0].source.ipBlocks[0]", "10.0.0.0/33"),
             ("  rules: [{from: [{source: {notRemoteIpBlocks: [10.0.0.1, not-an-ip]}}]}]\n",
              "spec.rules[0].from[0].source.notRemoteIpBlocks[1]", "not-an-ip"),
             ("  rules: [{when: [{key: source.ipp, values: [10.0.0.1]}]}]\n", "spec.rules[0].when[0]", "source.ipp"),
             ("  action: DENY\n", "spec", ""),
             ("  rules: [{to: [{operation: {paths: [\"\"]}}]}]\n", "spec.rules[0].to[0].operation.paths[0]", ""),
             ("  rules: [{to: [{operation: {paths: [/a/x, \"/a/{x}/b\"]}}]}]\n",
              "spec.rules[0].to[0].operation.paths[1]", "'{' or '}'")]
    for spec, path, want in cases:
        text = docs(head, policy("bad", spec))
        rc, out = env.check_config(env.write("bad.yaml", text))
        m = re.search(r"bad\.yaml:(\d+):(\d+): error: AuthorizationPolicy default/bad: " + re.escape(path), out)
        check(rc != 0 and m and want in out,
              f"{spec.strip()!r}: want an error at {path} saying {want!r}: rc {rc}, {out}")
        lines = text.split("\n")
        if "10.0.0.0/33" in spec:
            at = next(i for i, l in enumerate(lines) if "10.0.0.0/33" in l)
            check((int(m.group(1)), int(m.group(2))) == (at + 1, lines[at].index("10.0.0.0/33") + 1),
                  f"the bad CIDR is at {at + 1}:{lines[at].index('10.0.0.0/33') + 1}: {out}")
        else:
            check(int(m.group(1)) >= text.count("\n", 0, text.index("kind: AuthorizationPolicy")),
                  f"the error is not within the policy: {out}")
    quiet = [policy("deny-shop", "  action: DENY\n  rules: [{}]\n", ns="shop"),
             policy("deny-other", "  selector: {matchLabels: {app: other}}\n  action: DENY\n  rules: [{}]\n",
                    ns="istio-system"),
             policy("dry", "  action: DENY\n  rules: [{}]\n", dry_run=True),
             policy("dry-allow", "  rules: [{to: [{operation: {paths: [/nothing]}}]}]\n", dry_run=True),
             policy("audit", "  action: AUDIT\n  rules: [{to: [{operation: {paths: [/audited]}}]}]\n")]
    (gw,), _ = world(env, *quiet, app_extra="  labels: {istio: ingressgateway}\n")
    rc, out = env.check_config(env.path("isthmus.yaml"))
    check(rc == 0 and "AuthorizationPolicy shop/deny-shop: spec" in out
          and "AuthorizationPolicy istio-system/deny-other: spec.selector" in out,
          f"isthmus -c warns of the two that do not apply: rc {rc}, {out}")
    for path in ("/", "/audited"):
        check(get(gw, path).status == 200, f"{path} with policies that do not apply, dry-run and AUDIT")
    block = policy("block", "  selector: {matchLabels: {istio: ingressgateway}}\n  action: DENY\n"
                   "  rules: [{to: [{operation: {paths: [/blocked]}}]}]\n", ns="istio-system")
    reload(env, *quiet, block)
    check_denied(get(gw, "/blocked"), "/blocked after the reload")
    check(get(gw, "/").status == 200, "/ after the reload")
    reload(env, *quiet, block, policy("bad", cases[0][0]), ok=False)
    check_denied(get(gw, "/blocked"), "/blocked after the refused reload")
    check(get(gw, "/").status == 200, "/ after the refused reload")
    reload(env, *quiet, block, policy("allow-nothing", "  action: ALLOW\n"))
    check_denied(get(gw, "/"), "/ with an ALLOW policy without rules")


@_test
def authz_dry_run_values(env):
    """istio.io/dry-run is read as istiod reads it (strconv.ParseBool): "1" is a
    dry run, so its DENY decides nothing; "tRuE" is no boolean to istiod, which
    logs it and enforces the policy: isthmus -c warns at the annotation, and the
    DENY applies (a case-insensitive "true" took it for a dry run)."""
    one = policy("dry-one", "  action: DENY\n  rules: [{to: [{operation: {paths: [/one]}}]}]\n", dry_run="1")
    odd = policy("odd", "  action: DENY\n  rules: [{to: [{operation: {paths: [/two]}}]}]\n", dry_run="tRuE")
    (gw,), _ = world(env, one, odd)
    rc, out = env.check_config(env.path("isthmus.yaml"))
    check(rc == 0 and re.search(r"isthmus\.yaml:\d+:\d+: warning: AuthorizationPolicy default/odd: "
                                r"metadata\.annotations\.istio\.io/dry-run: \"tRuE\" is not a boolean", out),
          f"isthmus -c warns at the annotation: rc {rc}, {out}")
    check(get(gw, "/one").status == 200, 'GET /one under a DENY annotated dry-run "1"')
    check_denied(get(gw, "/two"), 'GET /two under a DENY annotated dry-run "tRuE"')


@_test
def authz_principals(env):
    """Over HTTPS with OPTIONAL_MUTUAL: principals, namespaces and trustDomains
    from the client certificate's SPIFFE URI (a trust domain whose name only
    starts with a listed one does not match); a request without a certificate
    never matches notPrincipals' "*" (so a DENY notPrincipals ["*"] denies it);
    a connection.sni condition."""
    pki = Pki(env)
    port = free_port()
    srv = pki.leaf("gw", ["DNS:a.example.com", "DNS:blocked.example.com"], key="ec")
    certs = {n: pki.leaf(n, [f"URI:spiffe://{uri}"], key="ec") for n, uri in (
        ("web", "cluster.local/ns/shop/sa/web"), ("other", "cluster.local/ns/shop/sa/other"),
        ("prod", "td.example/ns/prod/sa/x"), ("prod-cl", "cluster.local/ns/prod/sa/x"),
        ("prod-td-longer", "td.example.evil/ns/prod/sa/x"))}
    allow = policy("mesh", "  rules:\n  - from: [{source: {principals: [cluster.local/ns/shop/sa/web]}}]\n"
                   "  - from: [{source: {namespaces: [prod], trustDomains: [td.example]}}]\n"
                   "  - to: [{operation: {paths: [\"/public*\"]}}]\n")
    deny = policy("need-cert", "  action: DENY\n  rules:\n"
                  "  - from: [{source: {notPrincipals: [\"*\"]}}]\n    to: [{operation: {paths: [/public/private]}}]\n"
                  "  - when: [{key: connection.sni, values: [\"blocked.*\"]}]\n")
    tls_world(env, [server(port, ["*"], f"{tls_simple(srv, 'OPTIONAL_MUTUAL')}, caCertificates: {pki.ca()}")],
              extra_docs=[allow, deny])
    for cert, path, sni, status in (("web", "/x", "a.example.com", 200), ("other", "/x", "a.example.com", 403),
                                    ("prod", "/x", "a.example.com", 200), ("prod-cl", "/x", "a.example.com", 403),
                                    # trustDomains td.example is the prefix "spiffe://td.example/" (istiod's
                                    # srcTrustDomainGenerator), not a prefix of another trust domain's name
                                    ("prod-td-longer", "/x", "a.example.com", 403),
                                    (None, "/x", "a.example.com", 403), (None, "/public", "a.example.com", 200),
                                    (None, "/public/private", "a.example.com", 403),
                                    ("web", "/public/private", "a.example.com", 200),
                                    ("web", "/x", "blocked.example.com", 403)):
        r = tls_get(port, sni, client_ctx(pki, cert=certs.get(cert)), path)
        check(r.status == status, f"{cert or 'no'} certificate, {path}, SNI {sni}: want {status}, got {r}")
