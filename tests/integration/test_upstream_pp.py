# SPDX-License-Identifier: Apache-2.0
"""Integration tests of DestinationRule trafficPolicy.proxyProtocol: the PROXY
protocol towards upstreams, as Istio configures Envoy's upstream_proxy_protocol
transport socket. Each upstream here requires the header and says what it got:
nginx (`listen ... proxy_protocol`, plaintext, TLS and HTTP/2, answering with
its $proxy_protocol_* variables) and tests/upstream/pp_upstream.py (HTTP/1.1
or a TCP echo that speaks first, logging every connection's header, its close
and any refusal).

What is checked: v1 and v2 name the client's address and port and the
listener's (a client bound to 127.0.0.2, not the default address); the
header precedes the TLS handshake, the HTTP/2 preface and a tunnel's bytes
(TCP routes); an inbound PROXY header's addresses go on; an upstream
connection carries one client's requests only and closes when that client
goes; active health checks send the header; configuration errors name the
field.

Registered into run.py's list by register(test)."""

import json
import os
import socket
import subprocess
import time

from harness import (DEBIAN_PYTHON, Conn, Registry, Skip, TestFailure, appliance, check, ctl_cmd,
                     debian_python_has, docs, file_lines, free_port, gateway, have, poll, service_entry,
                     service_entry_protocol, spawn_listening, virtual_service)
from test_h2 import h2_client
from test_tls import Pki, spawn_nginx

_test = Registry()
register = _test.register

TOOLS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "upstream")
CLIENT_A = "127.0.0.2"  # the test clients' own addresses: not the default 127.0.0.1
CLIENT_B = "127.0.0.3"
PP_ADDR = "127.0.0.5"  # pp_upstream.py
NGINX_ADDR = "127.0.0.6"


# --------------------------------------------------------------------------- upstreams


def pp_upstream(env, name, mode="http", addr=PP_ADDR):
    """pp_upstream.py on addr; returns (port, the path of its event log)."""
    port = free_port(addr)
    log = env.path(f"{name}.jsonl")
    spawn_listening(env, name, [DEBIAN_PYTHON, os.path.join(TOOLS, "pp_upstream.py"), "--listen",
                                f"{addr}:{port}", "--mode", mode, "--log", log], addr, port)
    return port, log


def events(log, kind=None):
    """The event log's entries (of kind, when given), but for the connections
    that sent nothing at all (spawn_listening's probe)."""
    out = [json.loads(l) for l in file_lines(log)]
    return [e for e in out if (kind is None or e["event"] == kind) and
            not (e["event"] == "refused" and e["head"] == "" and e["why"] == "closed after 0 bytes")]


NGINX_ANSWER = '"pp $proxy_protocol_addr $proxy_protocol_port $proxy_protocol_server_addr ' \
               '$proxy_protocol_server_port $server_protocol\\n"'


def start_nginx(env, pki=None):
    """nginx on NGINX_ADDR requiring the PROXY protocol: plaintext HTTP/1.1
    ("plain"), h2c ("h2") and, with pki, TLS ("tls", a certificate for
    pp-tls.test.internal). Each answers NGINX_ANSWER. Returns {kind: port}."""
    ports = {k: free_port(NGINX_ADDR) for k in ("plain", "h2", "tls")}
    loc = f"location / {{ default_type text/plain; return 200 {NGINX_ANSWER}; }}"
    servers = (f"  server {{ listen {NGINX_ADDR}:{ports['plain']} proxy_protocol; {loc} }}\n"
               f"  server {{ listen {NGINX_ADDR}:{ports['h2']} http2 proxy_protocol; {loc} }}\n")
    if pki is not None:
        crt, key = pki.leaf("nginx-pp", ["DNS:pp-tls.test.internal"])
        servers += (f"  server {{ listen {NGINX_ADDR}:{ports['tls']} ssl proxy_protocol; "
                    f"ssl_certificate {crt}; ssl_certificate_key {key}; {loc} }}\n")
    spawn_nginx(env, servers, [(NGINX_ADDR, p) for k, p in ports.items() if k != "tls" or pki is not None])
    return ports


def nginx_answer(body):
    """(client address, client port, server address, server port, protocol) of an NGINX_ANSWER."""
    f = body.decode().split()
    check(len(f) == 6 and f[0] == "pp", f"not nginx's answer: {body!r}")
    return f[1], int(f[2]), f[3], int(f[4]), f[5]


# --------------------------------------------------------------------------- configuration


def dr(name, host, policy, subsets=()):
    """A DestinationRule whose trafficPolicy is the lines of policy; subsets:
    (name, labels dict, trafficPolicy lines)."""
    s = (f"apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}}}\n"
         f"spec:\n  host: {host}\n")
    if policy:
        s += "  trafficPolicy:\n" + "".join(f"    {l}\n" for l in policy)
    if subsets:
        s += "  subsets:\n"
        for sn, labels, tp in subsets:
            s += f"  - name: {sn}\n    labels: {{{', '.join(f'{k}: {v}' for k, v in labels.items())}}}\n"
            if tp:
                s += "    trafficPolicy:\n" + "".join(f"      {l}\n" for l in tp)
    return s


def routes(*pairs):
    """http routes: (path prefix, destination yaml) in order; prefix None: any."""
    out = ""
    for prefix, dest in pairs:
        if prefix is not None:
            out += f"  - match: [{{uri: {{prefix: {prefix}}}}}]\n"
            out += f"    route: [{{destination: {dest}}}]\n"
        else:
            out += f"  - route: [{{destination: {dest}}}]\n"
    return out


def start(env, port, *parts, workers=1, app_extra="", servers=""):
    g = gateway(port) + servers
    conf = env.write("isthmus.yaml", docs(appliance(env, workers=workers, extra=app_extra), g, *parts))
    env.start_gateway(conf, port)
    return conf


class SrcConn(Conn):
    """Conn from a given source address (the client's address the header must name)."""

    def __init__(self, src, port, timeout=10.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(src, 0))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.timeout = timeout

    @property
    def port(self):
        return self.sock.getsockname()[1]


def get_json(c, path, host):
    r = c.request("GET", path, host)
    check(r.status == 200, f"GET {path} via {host}: {r}")
    return json.loads(r.body)


def check_addrs(got, version, src, sport, dport, what, dst="127.0.0.1"):
    want = {"version": version, "command": "PROXY", "src": src, "sport": sport, "dst": dst, "dport": dport}
    have_ = {k: got.get(k) for k in want}
    check(have_ == want, f"{what}: the upstream got {got}, want {want}")


# --------------------------------------------------------------------------- tests


@_test
def upstream_pp_http(env):
    """HTTP/1.1 routes to upstreams that require the PROXY protocol: v1 (the
    default version) and v2 name the client's address and port and the
    listener's address and port; a subset's proxyProtocol replaces the rule's;
    nginx reads both versions; a cluster without proxyProtocol sends none (the
    upstream refuses the connection, 503), nor does one whose rule has it but
    also a portLevelSettings entry for its port, which stands for the whole
    policy there (Istio's shadowCopyPortTrafficPolicy: it was sent)."""
    pport, plog = pp_upstream(env, "pp")
    nports = start_nginx(env)
    port = free_port()
    host, nhost, bare = "pp.test.internal", "nginx.test.internal", "bare.test.internal"
    start(env, port,
          virtual_service("vs", ["*"], routes(
              ("/v2", f"{{host: {host}, subset: b}}"), ("/nginx1", f"{{host: {nhost}}}"),
              ("/nginx2", f"{{host: {nhost}, subset: b}}"), ("/bare", f"{{host: {bare}}}"),
              (None, f"{{host: {host}}}"))),
          service_entry("pp", host, [{"address": PP_ADDR, "port": pport, "labels": {"v": "b"}}]),
          service_entry("nginx", nhost, [{"address": NGINX_ADDR, "port": nports["plain"], "labels": {"v": "b"}}]),
          service_entry("bare", bare, [{"address": PP_ADDR, "port": pport}]),
          dr("pp", host, ["proxyProtocol: {}",
                          "portLevelSettings:",
                          "- {port: {number: 81}, connectionPool: {http: {idleTimeout: 30s}}}"],
             [("b", {"v": "b"}, ["proxyProtocol: {version: V2}"])]),
          dr("bare", bare, ["proxyProtocol: {}",
                            "portLevelSettings:",
                            "- {port: {number: 80}, connectionPool: {http: {idleTimeout: 30s}}}"]),
          dr("nginx", nhost, ["proxyProtocol: {version: V1}"],
             [("b", {"v": "b"}, ["proxyProtocol: {version: V2}"])]))
    with SrcConn(CLIENT_A, port) as c:
        check_addrs(get_json(c, "/one", "x.test"), 1, CLIENT_A, c.port, port, "v1 (the default)")
        check_addrs(get_json(c, "/v2/one", "x.test"), 2, CLIENT_A, c.port, port, "v2 (the subset's)")
        for path, version in (("/nginx1", "v1"), ("/nginx2", "v2")):
            r = c.request("GET", path, "x.test")
            check(r.status == 200, f"nginx over {version}: {r}")
            check(nginx_answer(r.body)[:4] == (CLIENT_A, c.port, "127.0.0.1", port),
                  f"nginx over {version}: {r.body!r}, client {CLIENT_A}:{c.port}, listener 127.0.0.1:{port}")
        r = c.request("GET", "/bare", "x.test")
        check(r.status == 503, f"no proxyProtocol to an upstream that requires it: {r}")
    poll(lambda: events(plog, "refused"), 5, what="the upstream to refuse the connection without a header")
    check(not [e for e in events(plog, "open") if e["command"] != "PROXY"], f"headers: {events(plog)}")


@_test
def upstream_pp_tls(env):
    """Over upstream TLS (DestinationRule tls SIMPLE): the PROXY header comes
    before the ClientHello, as nginx's `listen ... ssl proxy_protocol` wants
    it, for v1 and v2."""
    pki = Pki(env)
    nports = start_nginx(env, pki)
    port = free_port()
    nhost = "pp-tls.test.internal"
    tls = f"tls: {{mode: SIMPLE, caCertificates: {pki.ca()}, sni: pp-tls.test.internal}}"
    start(env, port,
          virtual_service("vs", ["*"], routes(("/v2", f"{{host: {nhost}, subset: b}}"), (None, f"{{host: {nhost}}}"))),
          service_entry("nginx", nhost, [{"address": NGINX_ADDR, "port": nports["tls"], "labels": {"v": "b"}}]),
          dr("nginx", nhost, ["proxyProtocol: {version: V1}", tls],
             [("b", {"v": "b"}, ["proxyProtocol: {version: V2}"])]))
    for path in ("/", "/v2"):
        with SrcConn(CLIENT_A, port) as c:
            r = c.request("GET", path, "x.test")
            check(r.status == 200, f"{path} over TLS: {r}")
            check(nginx_answer(r.body)[:4] == (CLIENT_A, c.port, "127.0.0.1", port), f"{path} over TLS: {r.body!r}")


@_test
def upstream_pp_h2(env):
    """An HTTP/2 upstream (ServiceEntry port protocol HTTP2, prior knowledge):
    the header comes before the connection preface; nginx serves the request
    over HTTP/2 and names the client; an HTTP/2 client's streams go the same
    way."""
    nports = start_nginx(env)
    port = free_port()
    nhost = "pp-h2.test.internal"
    start(env, port,
          virtual_service("vs", ["*"], routes((None, f"{{host: {nhost}}}"))),
          service_entry_protocol("nginx", nhost, [{"address": NGINX_ADDR, "port": nports["h2"]}], "HTTP2"),
          dr("nginx", nhost, ["proxyProtocol: {version: V2}"]))
    with SrcConn(CLIENT_A, port) as c:
        for _ in range(2):
            r = c.request("GET", "/", "x.test")
            check(r.status == 200, f"over HTTP/2 upstream: {r}")
            check(nginx_answer(r.body) == (CLIENT_A, c.port, "127.0.0.1", port, "HTTP/2.0"), f"{r.body!r}")
    rc, out = nghttp(port, ["/a", "/b"])
    answers = [nginx_answer(l.encode()) for l in out.splitlines() if l.startswith("pp ")]
    check(rc == 0 and len(answers) == 2 and len({a[1] for a in answers}) == 1 and
          all(a[0] == "127.0.0.1" and a[2:] == ("127.0.0.1", port, "HTTP/2.0") for a in answers),
          f"an HTTP/2 client's two streams: rc {rc}: {out!r}")


def nghttp(port, paths):
    """nghttp's GETs of paths, all on one HTTP/2 connection (prior knowledge):
    (exit code, the bodies as they came)."""
    if not have("nghttp"):
        raise Skip("nghttp is not installed (Debian package nghttp2-client)")
    p = subprocess.run(["nghttp", "-H", ":authority: x.test", *[f"http://127.0.0.1:{port}{x}" for x in paths]],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    return p.returncode, p.stdout.decode(errors="replace")


def tcp_read_line(s, buf=b""):
    while b"\n" not in buf:
        try:
            d = s.recv(4096)
        except socket.timeout:
            raise TestFailure(f"no line through the tunnel within 10 s: {buf!r}") from None
        if not d:
            raise TestFailure(f"closed before a line: {buf!r}")
        buf += d
    line, _, rest = buf.partition(b"\n")
    return line, rest


@_test
def upstream_pp_tcp(env):
    """TCP routes (VirtualService tcp): the tunnel's upstream connection starts
    with the header, alone when the client has sent nothing (the upstream
    speaks first), before the client's bytes when it has; v1 and v2."""
    pport, plog = pp_upstream(env, "pp-tcp", mode="tcp")
    port, t1, t2 = free_port(), free_port(), free_port()
    h1, h2 = "tcp1.test.internal", "tcp2.test.internal"
    servers = "".join(f"  - port: {{number: {p}, name: tcp-{p}, protocol: TCP}}\n    hosts: [\"*\"]\n" for p in (t1, t2))
    tcp = (f"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: tcp}}\nspec:\n"
           f"  hosts: [\"*\"]\n  gateways: [gw]\n  tcp:\n"
           f"  - match: [{{port: {t1}}}]\n    route: [{{destination: {{host: {h1}, port: {{number: 80}}}}}}]\n"
           f"  - match: [{{port: {t2}}}]\n    route: [{{destination: {{host: {h2}, port: {{number: 80}}}}}}]\n")
    start(env, port, tcp,
          service_entry_protocol("t1", h1, [{"address": PP_ADDR, "port": pport}], "TCP"),
          service_entry_protocol("t2", h2, [{"address": PP_ADDR, "port": pport}], "TCP"),
          dr("t1", h1, ["proxyProtocol: {version: V1}"]), dr("t2", h2, ["proxyProtocol: {version: V2}"]),
          servers=servers)
    # The client waits for the upstream to speak: the header goes alone.
    with socket.create_connection(("127.0.0.1", t1), timeout=10, source_address=(CLIENT_A, 0)) as s:
        line, rest = tcp_read_line(s)
        check_addrs(json.loads(line), 1, CLIENT_A, s.getsockname()[1], t1, "v1, TCP route, server first")
        s.sendall(b"ping\n")
        echo, _ = tcp_read_line(s, rest)
        check(echo == b"ping", f"echo through the tunnel: {echo!r}")
    # The client speaks at once: its bytes follow the header.
    with socket.create_connection(("127.0.0.1", t2), timeout=10, source_address=(CLIENT_A, 0)) as s:
        s.sendall(b"early bytes\n")
        line, rest = tcp_read_line(s)
        check_addrs(json.loads(line), 2, CLIENT_A, s.getsockname()[1], t2, "v2, TCP route, client first")
        echo, _ = tcp_read_line(s, rest)
        check(echo == b"early bytes", f"the client's first bytes after the header: {echo!r}")
    check(not events(plog, "refused"), f"refused: {events(plog, 'refused')}")


@_test
def upstream_pp_inbound(env):
    """A listener that takes the PROXY protocol (Appliance spec.proxyProtocol):
    the upstream's header names the addresses of the inbound one (v1 and v2,
    IPv4 and IPv6); after an inbound LOCAL header, the connection's own."""
    pport, _ = pp_upstream(env, "pp")
    port = free_port()
    host = "pp.test.internal"
    start(env, port,
          virtual_service("vs", ["*"], routes(("/v2", f"{{host: {host}, subset: b}}"), (None, f"{{host: {host}}}"))),
          service_entry("pp", host, [{"address": PP_ADDR, "port": pport, "labels": {"v": "b"}}]),
          dr("pp", host, ["proxyProtocol: {version: V1}"], [("b", {"v": "b"}, ["proxyProtocol: {version: V2}"])]),
          app_extra=f"  proxyProtocol: {{ports: [{port}]}}\n")
    cases = [(b"PROXY TCP4 203.0.113.7 198.51.100.9 5555 8443\r\n", "203.0.113.7", 5555, "198.51.100.9", 8443),
             (b"PROXY TCP6 2001:db8::7 2001:db8::1 6000 443\r\n", "2001:db8::7", 6000, "2001:db8::1", 443)]
    for hdr, src, sport, dst, dport in cases:
        for path, version in (("/", 1), ("/v2", 2)):
            with SrcConn(CLIENT_A, port) as c:
                c.send(hdr)
                check_addrs(get_json(c, path, "x.test"), version, src, sport, dport, f"{hdr!r} v{version}", dst=dst)
    local = b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"
    with SrcConn(CLIENT_A, port) as c:
        c.send(local)
        check_addrs(get_json(c, "/v2", "x.test"), 2, CLIENT_A, c.port, port, "after an inbound LOCAL header")


@_test
def upstream_pp_private(env):
    """A connection that sent a client's addresses carries that client's
    requests only: two keep-alive clients on one worker, taking turns, each
    keep one upstream connection of their own, every answer naming their own
    port; when a client goes, its connection closes at once (not at the pool's
    idle timeout), the other's stays. An HTTP/2 client's streams at once take
    connections of their own (to an HTTP/1.1 upstream), a later stream one of
    those again, and they close when it goes."""
    pport, plog = pp_upstream(env, "pp")
    port = free_port()
    host = "pp.test.internal"
    start(env, port, virtual_service("vs", ["*"], routes((None, f"{{host: {host}}}"))),
          service_entry("pp", host, [{"address": PP_ADDR, "port": pport}]),
          dr("pp", host, ["proxyProtocol: {version: V2}", "connectionPool: {http: {idleTimeout: 300s}}"]))
    a, b = SrcConn(CLIENT_A, port), SrcConn(CLIENT_B, port)
    try:
        seen = {"a": set(), "b": set()}
        for i in range(4):
            for name, c, src in (("a", a, CLIENT_A), ("b", b, CLIENT_B)):
                got = get_json(c, f"/{name}{i}", "x.test")
                check_addrs(got, 2, src, c.port, port, f"client {name}, request {i}")
                seen[name].add(got["conn"])
        check(len(seen["a"]) == 1 and len(seen["b"]) == 1 and not seen["a"] & seen["b"],
              f"upstream connections of each client: {seen}")
        ca, cb = seen["a"].pop(), seen["b"].pop()
        a.close()
        t0 = time.monotonic()
        poll(lambda: any(e["conn"] == ca for e in events(plog, "close")), 5,
             what="the upstream connection of the client that left to close")
        check(time.monotonic() - t0 < 5, "closed promptly")
        check(not any(e["conn"] == cb for e in events(plog, "close")), "the other client's connection stays")
        check(get_json(b, "/again", "x.test")["conn"] == cb, "the other client's connection still serves it")
    finally:
        a.close()
        b.close()
    poll(lambda: any(e["conn"] == cb for e in events(plog, "close")), 5, what="the second client's connection to close")
    # An HTTP/2 client: its streams at once take a connection each (HTTP/1.1
    # upstream), all its own; a later stream takes one of them again.
    if not debian_python_has("h2"):
        raise Skip("python3-h2 is not installed (for the HTTP/2 client)")
    rep = h2_client(port, [{"path": f"/h2-{i}"} for i in range(3)], after=[{"path": "/h2-after"}],
                    authority="x.test")
    got = [json.loads(s["body"]) for s in rep["streams"] + rep["after"]]
    conns = {g["conn"] for g in got[:3]}
    check(len(got) == 4 and len({g["sport"] for g in got}) == 1 and all(g["src"] == "127.0.0.1" for g in got)
          and got[3]["conn"] in conns and not conns & {ca, cb}, f"an HTTP/2 client's streams: {got}")
    poll(lambda: conns <= {e["conn"] for e in events(plog, "close")}, 5,
         what="the HTTP/2 client's upstream connections to close after it")


@_test
def upstream_pp_mirror(env):
    """Mirrored requests have no client connection of their own (Envoy's shadow
    requests): to a cluster with proxyProtocol, v1 names the upstream
    connection's own addresses, v2 is LOCAL; the original request's header
    names the client."""
    pport, plog = pp_upstream(env, "pp")
    m1, log1 = pp_upstream(env, "m1", addr="127.0.0.7")
    m2, log2 = pp_upstream(env, "m2", addr="127.0.0.8")
    port = free_port()
    host, h1, h2 = "pp.test.internal", "m1.test.internal", "m2.test.internal"
    http = (f"  - match: [{{uri: {{prefix: /v2}}}}]\n    route: [{{destination: {{host: {host}}}}}]\n"
            f"    mirror: {{host: {h2}}}\n"
            f"  - route: [{{destination: {{host: {host}}}}}]\n    mirror: {{host: {h1}}}\n")
    start(env, port, virtual_service("vs", ["*"], http),
          service_entry("pp", host, [{"address": PP_ADDR, "port": pport}]),
          service_entry("m1", h1, [{"address": "127.0.0.7", "port": m1}]),
          service_entry("m2", h2, [{"address": "127.0.0.8", "port": m2}]),
          dr("pp", host, ["proxyProtocol: {version: V1}"]), dr("m1", h1, ["proxyProtocol: {version: V1}"]),
          dr("m2", h2, ["proxyProtocol: {version: V2}"]))
    with SrcConn(CLIENT_A, port) as c:
        cport = c.port
        check_addrs(get_json(c, "/", "x.test"), 1, CLIENT_A, cport, port, "the original request")
        check_addrs(get_json(c, "/v2", "x.test"), 1, CLIENT_A, cport, port, "the original request")
    poll(lambda: events(log1, "open") and events(log2, "open"), 5, what="the mirrored requests")
    got1, got2 = events(log1, "open")[0], events(log2, "open")[0]
    check(got1["command"] == "PROXY" and got1["dst"] == "127.0.0.7" and got1["dport"] == m1 and
          got1["src"] != CLIENT_A and got1["sport"] != cport, f"a mirrored request's v1 header: {got1}")
    check(got2["command"] == "LOCAL", f"a mirrored request's v2 header: {got2}")


@_test
def upstream_pp_health_checks(env):
    """Active health checks of a cluster with proxyProtocol send the header
    (what Envoy's transport socket sends without a downstream connection: v1
    names the check's own connection, v2 is LOCAL), so an upstream that
    requires it finds them healthy."""
    p1, log1 = pp_upstream(env, "pp1")
    p2, log2 = pp_upstream(env, "pp2", addr="127.0.0.7")
    port = free_port()
    h1, h2 = "hc1.test.internal", "hc2.test.internal"
    checks = "  healthChecks:\n" + "".join(
        f"  - {{host: {h}, path: /healthz, interval: 300ms, timeout: 2s, healthyThreshold: 1, "
        f"unhealthyThreshold: 1}}\n" for h in (h1, h2))
    start(env, port,
          virtual_service("vs", ["*"], routes(("/2", f"{{host: {h2}}}"), (None, f"{{host: {h1}}}"))),
          service_entry("hc1", h1, [{"address": PP_ADDR, "port": p1}]),
          service_entry("hc2", h2, [{"address": "127.0.0.7", "port": p2}]),
          dr("hc1", h1, ["proxyProtocol: {version: V1}"]), dr("hc2", h2, ["proxyProtocol: {version: V2}"]),
          app_extra=checks)
    sock = env.path("ctl.sock")
    keys = {f"{h1}|{PP_ADDR}:{p1}", f"{h2}|127.0.0.7:{p2}"}

    def healthy():
        doc = {e["key"]: e for e in json.loads(ctl_cmd(sock, "show endpoints json"))}
        return all(k in doc and doc[k]["checks"] > 0 and doc[k]["health"] == "healthy" for k in keys)

    try:
        poll(healthy, 15, what="the checked endpoints to be healthy")
    except TestFailure as e:
        raise TestFailure(f"{e}: {ctl_cmd(sock, 'show endpoints json')}; upstream: {events(log1)} {events(log2)}")
    v1 = events(log1, "open")  # no request went yet: the checks'
    check(v1 and all(e["command"] == "PROXY" and e["dst"] == PP_ADDR and e["dport"] == p1 and
                     e["src"].startswith("127.") for e in v1),
          f"a v1 check names its own connection: {events(log1)}")
    check(any(e["command"] == "LOCAL" for e in events(log2, "open")), f"a v2 check is LOCAL: {events(log2)}")
    check(not events(log1, "refused") and not events(log2, "refused"), f"refused: {events(log1)} {events(log2)}")
    with SrcConn(CLIENT_A, port) as c:
        check_addrs(get_json(c, "/", "x.test"), 1, CLIENT_A, c.port, port, "a request to the checked v1 cluster")
        check_addrs(get_json(c, "/2", "x.test"), 2, CLIENT_A, c.port, port, "a request to the checked v2 cluster")


@_test
def upstream_pp_config_errors(env):
    """An unknown version is an error naming the field (in the rule's and a
    subset's trafficPolicy); proxyProtocol in portLevelSettings (Istio's
    PortTrafficPolicy has none) is an unknown field."""
    base = [appliance(env), gateway(8080), virtual_service("vs", ["*"], routes((None, "{host: a.test.internal}"))),
            service_entry("a", "a.test.internal", [{"address": "127.0.0.1", "port": 9, "labels": {"v": "b"}}])]
    cases = [
        (dr("a", "a.test.internal", ["proxyProtocol: {version: V3}"]),
         ["spec.trafficPolicy.proxyProtocol.version", "V3"]),
        (dr("a", "a.test.internal", [], [("b", {"v": "b"}, ["proxyProtocol: {version: v2}"])]),
         ["spec.subsets[0].trafficPolicy.proxyProtocol.version", "v2"]),
        (dr("a", "a.test.internal", ["proxyProtocol: {version: V1, tlvs: []}"]),
         ["spec.trafficPolicy.proxyProtocol.tlvs", "unknown field"]),
        (dr("a", "a.test.internal", ["portLevelSettings:", "- {port: {number: 80}, proxyProtocol: {}}"]),
         ["spec.trafficPolicy.portLevelSettings[0].proxyProtocol", "unknown field"]),
    ]
    for doc, wants in cases:
        rc, out = env.check_config(env.write("bad.yaml", docs(*base, doc)))
        check(rc != 0 and all(w in out for w in wants), f"want an error with {wants}: rc {rc}: {out}")
    rc, out = env.check_config(env.write("good.yaml", docs(*base, dr("a", "a.test.internal", [
        "proxyProtocol: {version: V2}"], [("b", {"v": "b"}, ["proxyProtocol: {}"])]))))
    check(rc == 0, f"a valid proxyProtocol: rc {rc}: {out}")
