# SPDX-License-Identifier: Apache-2.0
"""Integration tests of tunnels (issue 13): WebSocket and other HTTP/1.1
upgrades, TLS passthrough chosen by SNI, TCP routes, DestinationRule
connectionPool.tcp (idleTimeout, maxConnectionDuration, tcpKeepalive,
maxConnections), failover and outlier ejection of tunnel endpoints, the access
log, metrics, `show info` and `explain` for tunnels, reload and graceful stop
with tunnels open.

Real clients and servers: tests/upstream/ws_upstream.py and ws_client.py
(Debian's python3-websockets, under harness.DEBIAN_PYTHON), tcp_upstream.py (a
TCP echo that greets with its name, with a certificate of its own for
passthrough), openssl s_client, and raw sockets where the test needs exact
bytes. tunnel_tools_selftest checks those tools alone, without a proxy.

ISM_STANDIN=haproxy (debugging the tests only, like harness's nginx stand-in):
the tests that check proxy behaviour rather than isthmus's own features run
with HAProxy 2.6 in place of isthmus, configured from the same description of
the world (World.haproxy_cfg); the others skip. So a test that passes through
HAProxy and fails through isthmus points at isthmus.

The names isthmus gives to metrics, access-log fields, flags and the `explain`
syntax for tunnels are in one place, NAMES and the explain_* functions below.

Registered into run.py's list by register(test)."""

import hashlib
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import threading
import time
import urllib.request

from harness import (DEBIAN_PYTHON, Conn, Registry, Skip, TestFailure, appliance, build_request, check, ctl_cmd,
                     debian_python_has, docs, file_lines, free_port, gateway, have, in_netns, make_netns, poll,
                     read_to_end, service_entry, virtual_service, vmrss_kib)
from test_h2 import background, parse_tool
from test_tls import Pki, ku_end, ku_flood

_test = Registry()
register = _test.register

HERE = os.path.dirname(os.path.abspath(__file__))
TOOLS = os.path.join(os.path.dirname(HERE), "upstream")
NS = "default"

# --------------------------------------------------------------------------- names (align with the worker)

NAMES = {
    # /metrics: summed over every series of the family, whatever its labels.
    "m_active": "isthmus_tunnels_active",  # gauge: tunnels open now (WebSocket, TCP, TLS passthrough)
    "m_opened": "isthmus_tunnels_total",  # counter: tunnels opened
    "m_rx": "isthmus_tunnel_received_bytes_total",  # bytes from clients carried by tunnels
    "m_tx": "isthmus_tunnel_sent_bytes_total",  # bytes to clients carried by tunnels
    "m_duration_ms": "isthmus_tunnel_duration_milliseconds_total",  # the closed tunnels' lifetimes, summed
    "m_refused": "isthmus_tunnels_refused_total",  # TCP/TLS connections closed without a tunnel
    "m_route_conns": "isthmus_l4_route_connections_total",  # per tcp/tls route {listener, route}
    "m_route_rx": "isthmus_l4_route_received_bytes_total",
    "m_route_tx": "isthmus_l4_route_sent_bytes_total",
    "m_connect_failures": "isthmus_upstream_connect_failures_total",  # exists already (HTTP)
    # `show info json`
    "info_active": "tunnels_active",
    "info_opened": "tunnels_total",
    "info_in": "tunnel_bytes_in",
    "info_out": "tunnel_bytes_out",
    # access-log JSON fields (the existing ones) and flags
    "log_status": "status",
    "log_in": "bytes_in",
    "log_out": "bytes_out",
    "log_ms": "duration_ms",
    "log_route": "route",
    "log_upstream": "upstream",
    "log_flags": "flags",
    "log_sni": "sni",
    "flag_no_route": "NR",  # a ClientHello without SNI or with one no route names (Envoy: no filter chain)
    "flag_overflow": "UO",  # connectionPool.tcp.maxConnections reached
    "flag_connect": "UF",  # every connect attempt of a TCP/TLS tunnel failed
    "flag_idle": "SI",  # a tunnel closed after connectionPool.tcp.idleTimeout
    "flag_duration": "DT",  # a tunnel closed at maxConnectionDuration
    "l4_status": 0,  # the status of a TCP or TLS tunnel's line
    # route names, as shm/table-t.h gives them to ism_l4route
    "route_web": "{ns}/{vs}#{i}",  # an HTTP route (conf/compile.c)
    "route_tcp": "{ns}/{vs}#tcp{i}",
    "route_tls": "{ns}/{vs}#tls{i}",
    # explain's answer for an SNI no passthrough server or route takes
    "explain_closed": "the connection is closed",
}


def explain_tls_args(sni, port):
    """isthmusctl arguments that explain a TLS connection with this SNI on this port."""
    return ["tls", sni, str(port)]


def explain_tcp_args(port):
    """isthmusctl arguments that explain a TCP connection to this port."""
    return ["tcp", str(port)]


def upstream_of(service, b):
    """The access log's upstream field for endpoint b of service (the endpoint's key)."""
    return f"{service}|{b.hostport}"


def route_name(kind, vs, i=0):
    return NAMES["route_" + kind].format(ns=NS, vs=vs, i=i)


# --------------------------------------------------------------------------- stand-in


def standin():
    return os.environ.get("ISM_STANDIN") == "haproxy"


def isthmus_only(what):
    """The test checks isthmus's own features: skipped with the HAProxy stand-in."""
    if standin():
        raise Skip(f"ISM_STANDIN=haproxy: {what} is isthmus's own")


# --------------------------------------------------------------------------- tools


def need_ws():
    if not debian_python_has("websockets"):
        raise Skip(f"{DEBIAN_PYTHON} lacks websockets (Debian package python3-websockets)")


def spawn_tool(env, name, argv, want=("listening on",), timeout=10.0):
    """Starts a tool printing "<want> ADDR:PORT" lines; returns {want: port}."""
    proc = env.spawn(name, argv, stdout=subprocess.PIPE)
    found = {}
    fd = proc.p.stdout.fileno()
    pending = b""
    deadline = time.monotonic() + timeout
    import select

    while len(found) < len(want):
        left = deadline - time.monotonic()
        if left <= 0:
            raise TestFailure(f"{name} did not print {want} within {timeout}s: {proc.log()}")
        r, _, _ = select.select([fd], [], [], left)
        if not r:
            continue
        d = os.read(fd, 4096)
        if not d:
            raise TestFailure(f"{name} exited: {proc.log()}")
        pending += d
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            for w in want:
                m = re.match(re.escape(w) + r" ([\d.]+):(\d+)", line.decode())
                if m:
                    found[w] = int(m.group(2))
    return found, proc


class Backend:
    """A tcp_upstream.py (TCP echo, or TLS with cert) or ws_upstream.py process."""

    def __init__(self, name, addr, port, ctl_port=None, proc=None, cert=None):
        self.name, self.addr, self.port, self.ctl_port, self.proc, self.cert = name, addr, port, ctl_port, proc, cert

    @property
    def hostport(self):
        return f"{self.addr}:{self.port}"

    def ctl(self, cmd):
        """A tcp_upstream.py control command; its stats (dict)."""
        with socket.create_connection((self.addr, self.ctl_port), timeout=5) as s:
            s.sendall(cmd.encode() + b"\n")
            data = b""
            deadline = time.monotonic() + 5
            while time.monotonic() < deadline:
                d = s.recv(65536)
                if not d:
                    break
                data += d
        out = json.loads(data.decode())
        check("error" not in out, f"backend {self.name}: {out}")
        return out

    def ws_stats(self):
        """ws_upstream.py's counters (asked directly, not through the proxy)."""
        with Conn(self.addr, self.port, timeout=5) as c:
            r = c.request("GET", "/__ctl/stats")
        check(r.status == 200, f"ws backend {self.name} stats: {r}")
        return json.loads(r.body)


def tcp_backend(env, name, addr, cert=None, greet=True):
    argv = [DEBIAN_PYTHON, os.path.join(TOOLS, "tcp_upstream.py"), "--listen", f"{addr}:0", "--name", name,
            "--ctl", f"{addr}:0"]
    if cert:
        argv += ["--cert", cert[0], "--key", cert[1]]
    if not greet:
        argv.append("--no-greet")
    ports, proc = spawn_tool(env, f"tcp-{name}", argv, want=("listening on", "control on"))
    return Backend(name, addr, ports["listening on"], ports["control on"], proc, cert)


def ws_backend(env, name, addr):
    need_ws()
    argv = [DEBIAN_PYTHON, os.path.join(TOOLS, "ws_upstream.py"), "--listen", f"{addr}:0", "--name", name]
    ports, proc = spawn_tool(env, f"ws-{name}", argv)
    return Backend(name, addr, ports["listening on"], None, proc)


def ws_args(url, steps, ca=None, sni=None, connect=None, ready=None, headers=(), timeout=60):
    a = ["--url", url, "--timeout", str(timeout)]
    for opt, v in (("--ca", ca), ("--sni", sni), ("--connect", connect), ("--ready", ready)):
        if v:
            a += [opt, v]
    for h in headers:
        a += ["--header", h]
    return a + [json.dumps(steps)]


def ws_run(url, steps, timeout=60, **kw):
    """ws_client.py over one connection; its report."""
    argv = [DEBIAN_PYTHON, os.path.join(TOOLS, "ws_client.py")] + ws_args(url, steps, timeout=timeout, **kw)
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout + 20)
    except subprocess.TimeoutExpired:
        raise TestFailure(f"ws_client.py still running after {timeout + 20}s: {steps!r:.200}")
    return parse_tool("ws_client.py", p.returncode, p.stdout, p.stderr)


def ws_bg(env, url, steps, timeout=60, **kw):
    """ws_client.py in the background (harness-reaped); .result() gives its report."""
    return background(env, "ws_client.py", ws_args(url, steps, timeout=timeout, **kw), timeout)


def ws_ok(rep, what):
    check(rep["status"] == 101 and rep["error"] is None, f"{what}: {rep}")
    return rep["steps"]


def wait_file(path, timeout, what):
    poll(lambda: os.path.exists(path), timeout, what=what)


class TcpClient:
    """A raw TCP client of a tunnel: reads the backend's greeting line first."""

    def __init__(self, port, addr="127.0.0.1", timeout=10.0, greet=True):
        self.sock = socket.create_connection((addr, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.greeting = self.line() if greet else None

    def line(self):
        while b"\n" not in self.buf:
            d = self.sock.recv(65536)
            if not d:
                raise EOFError(f"closed before a full line (got {self.buf!r})")
            self.buf += d
        line, self.buf = self.buf.split(b"\n", 1)
        return line.decode()

    def exact(self, n):
        while len(self.buf) < n:
            d = self.sock.recv(1 << 20)
            if not d:
                raise EOFError(f"closed after {len(self.buf)} of {n} bytes")
            self.buf += d
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def echo(self, data):
        self.sock.sendall(data)
        got = self.exact(len(data))
        check(got == data, f"the echo of {len(data)} bytes differs")

    def closed_within(self, timeout):
        """Seconds until the peer closes (EOF or reset), bytes in flight read first; None if not closed."""
        t0 = time.monotonic()
        self.sock.settimeout(0.2)
        try:
            while time.monotonic() - t0 < timeout:
                try:
                    d = self.sock.recv(65536)
                except socket.timeout:
                    continue
                except (ConnectionResetError, BrokenPipeError):
                    return time.monotonic() - t0
                if not d:
                    return time.monotonic() - t0
                self.buf += d
            return None
        finally:
            self.sock.settimeout(10)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


def tls_client_ctx(ca=None):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    if ca:
        ctx.load_verify_locations(ca)
    else:
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


class TlsClient(TcpClient):
    """TcpClient over TLS with sni (None: no SNI), the greeting read after the handshake."""

    def __init__(self, port, sni, ctx, addr="127.0.0.1", timeout=10.0):
        raw = socket.create_connection((addr, port), timeout=timeout)
        try:
            raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.sock = ctx.wrap_socket(raw, server_hostname=sni)
        except BaseException:
            raw.close()
            raise
        self.buf = b""
        self.greeting = self.line()


def tls_refused(port, sni, ctx, addr="127.0.0.1"):
    """Asserts a handshake with sni through port fails (closed, reset or an alert)
    without reaching any backend; returns what the client saw."""
    try:
        c = TlsClient(port, sni, ctx, addr=addr, timeout=5)
    except socket.timeout:
        raise TestFailure(f"port {port} SNI {sni!r}: neither closed nor answered within 5 s")
    except (ssl.SSLError, OSError, EOFError) as e:
        return f"{type(e).__name__}: {e}"
    c.close()
    raise TestFailure(f"port {port} SNI {sni!r}: reached backend {c.greeting!r}, expected the connection closed")


def der_of(pem_path):
    with open(pem_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def tally(fn, n, threads=4):
    """fn(i) -> name, n times over threads; {name: count}. Exceptions fail the test."""
    counts, errors, lock = {}, [], threading.Lock()

    def work(k):
        for i in range(k, n, threads):
            try:
                who = fn(i)
            except Exception as e:  # reported below
                with lock:
                    errors.append(f"#{i}: {type(e).__name__}: {e}")
                continue
            with lock:
                counts[who] = counts.get(who, 0) + 1

    ts = [threading.Thread(target=work, args=(k,), daemon=True) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(300)
    check(not any(t.is_alive() for t in ts), f"{n} connections not done within 300 s")
    check(not errors, f"{len(errors)} of {n} connections failed: {errors[:5]}")
    return counts


def check_shares(counts, want, n, what, tolerance=3.0):
    """counts within tolerance percentage points of want ({name: percent})."""
    check(sum(counts.values()) == n and set(counts) <= set(want), f"{what}: {counts} over {n}")
    for name, pct in want.items():
        got = 100.0 * counts.get(name, 0) / n
        check(abs(got - pct) <= tolerance,
              f"{what}: {name} got {got:.1f} % of {n}, want {pct} ± {tolerance}: {counts}")


# --------------------------------------------------------------------------- observing isthmus


def scrape(admin):
    """/metrics -> {family or series name: summed value}: "name" sums every series
    of that name, whatever its labels."""
    body = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
    out = {}
    for line in body.splitlines():
        if not line or line[0] == "#":
            continue
        m = re.match(r"([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m:
            try:
                v = float(m.group(3))
            except ValueError:
                continue
            out[m.group(1)] = out.get(m.group(1), 0.0) + v
    return out


def metric_of(admin, key):
    name = NAMES[key]
    got = scrape(admin)
    check(name in got, f"{name} missing from /metrics")
    return got[name]


def show_info(env):
    return json.loads(ctl_cmd(env.path("ctl.sock"), "show info json"))


def log_entries(path):
    out = []
    for l in file_lines(path):
        try:
            out.append(json.loads(l))
        except ValueError:
            raise TestFailure(f"access-log line is not JSON: {l!r}")
    return out


def wait_log(path, pred, what, timeout=10.0):
    """The first access-log entry for which pred holds (bounded poll)."""

    def find():
        for e in log_entries(path):
            if pred(e):
                return e
        return None

    return poll(find, timeout, what=f"an access-log line {what}")


def endpoints_json(env):
    return json.loads(ctl_cmd(env.path("ctl.sock"), "show endpoints json"))


def isthmusctl(env, *args):
    p = subprocess.run([os.path.join(env.build, "isthmusctl"), "-s", env.path("ctl.sock"), *args],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    return p.returncode, p.stdout.decode("utf-8", "replace")


def worker_rss_kib(env):
    return sum(vmrss_kib(p) for p in env.workers())


def settled_rss(rss_of):
    """rss_of() once two readings 0.3 s apart agree within 256 KiB (a worker just
    started may still be touching its memory on a loaded machine); the last
    reading after 10 s at most."""
    last = [rss_of()]

    def settled():
        time.sleep(0.3)
        cur, prev = rss_of(), last[0]
        last[0] = cur
        return abs(cur - prev) < 256

    deadline = time.monotonic() + 10
    while not settled() and time.monotonic() < deadline:
        pass
    return last[0]


# --------------------------------------------------------------------------- the world


def _flow(d):
    return "{" + ", ".join(f"{k}: {v}" for k, v in d.items()) + "}"


class World:
    """What a test sets up, written as an Istio appliance file for isthmus and, with
    ISM_STANDIN=haproxy, as the equivalent HAProxy configuration.

    services: host -> (protocol, [Backend], {Backend name: labels}); listeners: one
    Gateway server each (http, https, tcp, tls passthrough), with their routes."""

    def __init__(self, env, workers=2, timeouts=None, app_extra="", log_format="format: json"):
        self.env = env
        self.log_format = log_format
        self.workers = workers
        self.timeouts = {"requestHeader": "2s", "idle": "5s", "upstreamConnect": "1s", "upstreamResponse": "3s",
                         "drain": "3s"}
        self.timeouts.update(timeouts or {})
        self.app_extra = app_extra
        self.admin = free_port()
        self.log = env.path("access.log")
        self.services = {}
        self.drs = {}
        self.listeners = []
        self.extra_servers = []  # raw Gateway server YAML (isthmus only)
        self.extra_docs = []
        self.conf = env.path("isthmus.yaml")

    # ---- services

    def service(self, host, backends, protocol="TCP", port=9000):
        self.services[host] = (protocol, list(backends), port)
        return host

    def dr(self, host, policy):
        """policy: the trafficPolicy's YAML lines, indented for under trafficPolicy."""
        self.drs[host] = policy

    # ---- listeners

    def http(self, host, timeout=None, tls=None, port=None):
        """An HTTP (or, with tls=(crt, key), HTTPS) server, every path to service host."""
        port = port or free_port()
        self.listeners.append({"kind": "https" if tls else "http", "port": port, "host": host, "timeout": timeout,
                               "tls": tls})
        return port

    def tcp(self, dests, port=None, bind=None):
        """A TCP server; one tcp route (match port) to dests [(host, weight)]."""
        port = port or free_port()
        self.listeners.append({"kind": "tcp", "port": port, "dests": dests, "bind": bind})
        return port

    def tls(self, routes, port=None, hosts=None, bind=None, mode="PASSTHROUGH"):
        """A TLS PASSTHROUGH server; routes: [(sni_hosts, dests, extra_match)] with
        extra_match a dict of more match fields ({"port": N}, {"destinationSubnets":
        [...]}), or None for {port: this port}."""
        port = port or free_port()
        if hosts is None:
            hosts = sorted({h for r in routes for h in r[0]})
        self.listeners.append({"kind": "tls", "port": port, "routes": routes, "hosts": hosts, "bind": bind,
                               "mode": mode})
        return port

    # ---- isthmus

    def _appliance(self):
        return (f"apiVersion: isthmus.io/v1\nkind: Appliance\nmetadata: {{name: test}}\nspec:\n"
                f"  locality: eu-west/eu-west-1a\n  workers: {self.workers}\n  listenAddress: 127.0.0.1\n"
                f"  controlSocket: {self.env.path('ctl.sock')}\n  admin: {{address: 127.0.0.1:{self.admin}}}\n"
                f"  accessLog: {{path: {self.log}, {self.log_format}}}\n  timeouts: {_flow(self.timeouts)}\n"
                f"{self.app_extra}")

    @staticmethod
    def _dests(dests, port=None):
        out = ""
        for host, weight in dests:
            out += f"    - destination: {{host: {host}, port: {{number: 9000}}}}\n"
            if weight is not None:
                out += f"      weight: {weight}\n"
        return out

    def yaml(self):
        """One VirtualService per kind of route ("web", "tcp", "tls"), whose routes
        carry the listener's port in their match, so that the routes of a listener
        are its own and their names are known (route_of)."""
        servers = ""
        web, tcp, tls, tls_hosts = "", "", "", []
        for li in self.listeners:
            p, k = li["port"], li["kind"]
            bind = f"\n    bind: {li['bind']}" if li.get("bind") else ""
            if k in ("http", "https"):
                tls_line = ""
                proto = "HTTP"
                if k == "https":
                    proto = "HTTPS"
                    tls_line = (f"\n    tls: {{mode: SIMPLE, serverCertificate: {li['tls'][0]}, "
                                f"privateKey: {li['tls'][1]}}}")
                servers += (f"  - port: {{number: {p}, name: {k}-{p}, protocol: {proto}}}\n"
                            f"    hosts: [\"*\"]{tls_line}\n")
                to = f"    timeout: {li['timeout']}\n" if li["timeout"] else ""
                web += (f"  - match: [{{port: {p}}}]\n"
                        f"    route:\n    - destination: {{host: {li['host']}, port: {{number: 9000}}}}\n{to}")
            elif k == "tcp":
                servers += f"  - port: {{number: {p}, name: tcp-{p}, protocol: TCP}}\n    hosts: [\"*\"]{bind}\n"
                tcp += f"  - match: [{{port: {p}}}]\n    route:\n{self._dests(li['dests'])}"
            else:
                hl = ", ".join(f'"{h}"' for h in li["hosts"])
                tls_hosts += [h for h in li["hosts"] if h not in tls_hosts]
                servers += (f"  - port: {{number: {p}, name: tls-{p}, protocol: TLS}}\n    hosts: [{hl}]{bind}\n"
                            f"    tls: {{mode: {li['mode']}}}\n")
                for sni, dests, extra in li["routes"]:
                    m = {"sniHosts": "[" + ", ".join(f'"{h}"' for h in sni) + "]"}
                    if extra is None:
                        m["port"] = p
                    else:
                        for mk, mv in extra.items():
                            m[mk] = "[" + ", ".join(f'"{x}"' for x in mv) + "]" if isinstance(mv, list) else mv
                    tls += f"  - match: [{_flow(m)}]\n    route:\n{self._dests(dests)}"
        vss = []
        head = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {n}}}\nspec:\n"
        if web:
            vss.append(head.format(n="web") + f"  hosts: [\"*\"]\n  gateways: [gw]\n  http:\n{web}")
        if tcp:
            vss.append(head.format(n="tcp") + f"  hosts: [\"*\"]\n  gateways: [gw]\n  tcp:\n{tcp}")
        if tls:
            hl = ", ".join(f'"{h}"' for h in tls_hosts)
            vss.append(head.format(n="tls") + f"  hosts: [{hl}]\n  gateways: [gw]\n  tls:\n{tls}")
        servers += "".join(self.extra_servers)
        gw = f"apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: gw}}\nspec:\n  servers:\n{servers}"
        ses = []
        for host, (proto, backends, sport) in self.services.items():
            name = re.sub(r"[^a-z0-9-]", "-", host)
            pname = proto.lower()
            s = (f"apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}}}\nspec:\n"
                 f"  hosts: [{host}]\n  ports: [{{number: {sport}, name: {pname}, protocol: {proto}}}]\n"
                 f"  resolution: STATIC\n  endpoints:\n")
            for b in backends:
                s += f"  - {{address: {b.addr}, ports: {{{pname}: {b.port}}}, locality: eu-west/eu-west-1a}}\n"
            ses.append(s)
        drs = []
        for host, policy in self.drs.items():
            name = "dr-" + re.sub(r"[^a-z0-9-]", "-", host)
            drs.append(f"apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}}}\n"
                       f"spec:\n  host: {host}\n  trafficPolicy:\n" + "".join(f"    {l}\n" for l in policy))
        return docs(self._appliance(), gw, *vss, *ses, *drs, *self.extra_docs)

    def route_of(self, port):
        """The name of the first route of the listener on port (see yaml)."""
        vs_of = {"http": "web", "https": "web", "tcp": "tcp", "tls": "tls"}
        i = {"web": 0, "tcp": 0, "tls": 0}
        for li in self.listeners:
            vs = vs_of[li["kind"]]
            if li["port"] == port:
                return route_name(vs, vs, i[vs])
            i[vs] += len(li["routes"]) if vs == "tls" else 1
        raise KeyError(port)

    # ---- the HAProxy stand-in

    def _servers(self, dests, mode):
        out = ""
        for host, weight in dests:
            _, backends, _ = self.services[host]
            for b in backends:
                w = 100 if weight is None else weight
                out += f"    server {host.split('.')[0]}-{b.name} {b.hostport} weight {w}\n"
        return out

    def haproxy_cfg(self):
        idle = self.timeouts["idle"]
        cfg = ("global\n    nbthread 1\n    maxconn 4096\n    no strict-limits\n"
               f"    hard-stop-after {self.timeouts['drain']}\n\n"
               "defaults\n    timeout connect 1s\n    timeout client 5s\n    timeout server 5s\n"
               f"    timeout tunnel {idle}\n    timeout client-fin 1s\n    timeout server-fin 1s\n"
               "    retries 2\n    option redispatch 1\n\n")
        for li in self.listeners:
            p, k = li["port"], li["kind"]
            if k in ("http", "https"):
                ssl_opt = ""
                if k == "https":
                    pem = self.env.path(f"haproxy-{p}.pem")
                    with open(pem, "w") as f:
                        f.write(open(li["tls"][0]).read() + open(li["tls"][1]).read())
                    ssl_opt = f" ssl crt {pem} alpn http/1.1"
                cfg += (f"frontend f{p}\n    mode http\n    bind 127.0.0.1:{p}{ssl_opt}\n"
                        f"    timeout client {idle}\n    default_backend b{p}\n"
                        f"backend b{p}\n    mode http\n    balance roundrobin\n"
                        f"    timeout server {li['timeout'] or self.timeouts['upstreamResponse']}\n"
                        f"{self._servers([(li['host'], None)], 'http')}\n")
            elif k == "tcp":
                cfg += (f"frontend f{p}\n    mode tcp\n    bind {li.get('bind') or '127.0.0.1'}:{p}\n"
                        f"    timeout client 1h\n    default_backend b{p}\n"
                        f"backend b{p}\n    mode tcp\n    balance roundrobin\n    timeout server 1h\n"
                        f"{self._servers(li['dests'], 'tcp')}\n")
            else:
                cfg += (f"frontend f{p}\n    mode tcp\n    bind {li.get('bind') or '127.0.0.1'}:{p}\n"
                        f"    timeout client 1h\n    tcp-request inspect-delay 5s\n"
                        f"    tcp-request content accept if {{ req_ssl_hello_type 1 }}\n")
                backends = ""
                for i, (sni, dests, _extra) in enumerate(li["routes"]):
                    for h in sni:
                        acl = f"-m end -i {h[1:]}" if h.startswith("*.") else f"-i {h}"
                        cfg += f"    use_backend b{p}_{i} if {{ req_ssl_sni {acl} }}\n"
                    backends += (f"backend b{p}_{i}\n    mode tcp\n    balance roundrobin\n    timeout server 1h\n"
                                 f"{self._servers(dests, 'tcp')}")
                cfg += backends + "\n"
        return cfg

    # ---- start

    def write(self):
        with open(self.conf + ".tmp", "w") as f:
            f.write(self.yaml())
        os.replace(self.conf + ".tmp", self.conf)
        return self.conf

    def start(self):
        env = self.env
        if standin():
            cfg = env.write("haproxy.cfg", self.haproxy_cfg())
            env.gateway = env.spawn("isthmus", ["haproxy", "-f", cfg, "-db"])
            ports = [li["port"] for li in self.listeners]
            poll(lambda: check(env.gateway.alive(), f"haproxy exited: {env.gateway.log()}") or
                 all(listening(p) for p in ports), 10, what="haproxy to listen")
            return
        self.write()
        env.gateway = env.spawn("isthmus", [env.isthmus, "-f", self.conf])

        def ready():
            if not env.gateway.alive():
                raise TestFailure(f"isthmus exited with {env.gateway.p.returncode}")
            with urllib.request.urlopen(f"http://127.0.0.1:{self.admin}/healthz/ready", timeout=1) as r:
                return r.status == 200

        try:
            poll(ready, 15, what="isthmus to be ready (admin /healthz/ready)")
        except TestFailure:
            if not env.gateway.alive():
                raise TestFailure(f"isthmus exited with {env.gateway.p.returncode}")
            raise


def listening(port):
    """Whether a TCP socket listens on port (any address), from /proc/net/tcp."""
    want = f"{port:04X}"
    try:
        with open("/proc/net/tcp") as f:
            for line in f.readlines()[1:]:
                parts = line.split()
                if parts[1].split(":")[1] == want and parts[3] == "0A":
                    return True
    except OSError:
        pass
    return False


# --------------------------------------------------------------------------- raw WebSocket frames

WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
WS_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455's example


def ws_upgrade_headers(key=WS_KEY):
    return [("Upgrade", "websocket"), ("Connection", "Upgrade"), ("Sec-WebSocket-Key", key),
            ("Sec-WebSocket-Version", "13")]


def ws_frame(payload, opcode=1, mask=b"\x11\x22\x33\x44"):
    """One final client frame (masked)."""
    n = len(payload)
    head = bytes([0x80 | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([0x80 | 127]) + n.to_bytes(8, "big")
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def ws_read_frame(conn):
    """One server frame from a harness Conn: (opcode, payload)."""
    b0, b1 = conn._read_exact(2)
    check(not b1 & 0x80, "a server frame is masked")
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(conn._read_exact(2), "big")
    elif n == 127:
        n = int.from_bytes(conn._read_exact(8), "big")
    return b0 & 0x0F, conn._read_exact(n)


# =========================================================================== the tools alone


@_test
def tunnel_tools_selftest(env):
    """ws_upstream.py, ws_client.py and tcp_upstream.py without a proxy: echo,
    the headers report, a refused upgrade, ping/pong, both close handshakes; the
    TCP echo's greeting and control commands; the TLS backend's certificate and
    SNI; openssl s_client against it."""
    w = ws_backend(env, "w1", "127.0.0.2")
    url = f"ws://{w.hostport}"
    rep = ws_run(url + "/report", [{"op": "recv"}, {"op": "echo", "count": 50, "size": 65536},
                                   {"op": "ping", "data": "p1"}, {"op": "send", "data": "!ping p2"},
                                   {"op": "recv"}, {"op": "close", "code": 4000, "reason": "bye"}])
    steps = ws_ok(rep, "ws_client to ws_upstream")
    seen = {k.lower(): v for k, v in json.loads(steps[0]["data"])["headers"]}
    check(seen.get("upgrade") == "websocket" and "sec-websocket-key" in seen, f"report: {seen}")
    check(steps[1]["echoed"] == 50 and steps[1]["mismatched"] == 0, f"echo: {steps[1]}")
    check(steps[2]["pong"] and steps[4]["data"] == "pong p2", f"pings: {steps}")
    check(steps[5] == {"code": 4000, "reason": "bye", "clean": True, "op": "close"}, f"close: {steps[5]}")
    poll(lambda: {"code": 4000, "reason": "bye"} in w.ws_stats()["closes"], 5, what="the backend to see the close")
    rep = ws_run(url + "/", [{"op": "send", "data": "!close 4001 done"}, {"op": "wait_close", "timeout": 5}])
    check(ws_ok(rep, "server close")[1]["code"] == 4001, f"server-initiated close: {rep}")
    rep = ws_run(url + "/status/403", [])
    check(rep["status"] == 403, f"refused upgrade: {rep}")
    with Conn(w.addr, w.port) as c:
        r = c.request("GET", "/plain", headers=[("Upgrade", "h2c"), ("Connection", "Upgrade")])
    check(r.status == 200 and json.loads(r.body)["upgraded"] is False, f"plain GET: {r}")

    t = tcp_backend(env, "t1", "127.0.0.2")
    c = TcpClient(t.port, addr=t.addr)
    check(c.greeting == "t1", f"greeting {c.greeting!r}")
    c.echo(os.urandom(100000))
    st = t.ctl("close")
    check(c.closed_within(5) is not None and st["accepted"] == 1, f"close command: {st}")
    t.ctl("refuse")
    try:
        socket.create_connection((t.addr, t.port), timeout=2).close()
        raise TestFailure("refuse: the port still takes connections")
    except ConnectionRefusedError:
        pass
    t.ctl("accept")
    t.ctl("reset")
    try:
        TcpClient(t.port, addr=t.addr, timeout=3)
        raise TestFailure("reset: a greeting came")
    except (ConnectionResetError, EOFError):
        pass
    check(t.ctl("normal")["reset"] == 1, "reset not counted")
    check(TcpClient(t.port, addr=t.addr).greeting == "t1", "after normal")

    pki = Pki(env)
    crt = pki.leaf("pa", ["DNS:a.pass.test"], key="ec", ca="backend-ca")
    tb = tcp_backend(env, "pa", "127.0.0.3", cert=crt)
    c = TlsClient(tb.port, "a.pass.test", tls_client_ctx(pki.ca("backend-ca")), addr=tb.addr)
    check(c.greeting == "pa sni=a.pass.test", f"TLS greeting {c.greeting!r}")
    check(c.sock.getpeercert(binary_form=True) == der_of(crt[0]), "TLS backend's certificate")
    c.close()
    out = s_client_echo(f"{tb.addr}:{tb.port}", "a.pass.test", pki.ca("backend-ca"))
    check("CN = pa" in out and "Verify return code: 0 (ok)" in out and "pa sni=a.pass.test" in out,
          f"s_client to the TLS backend:\n{out}")


def s_client_echo(target, sni, ca, line=b"ping-through\n", timeout=15):
    """openssl s_client -servername sni to target, verifying against ca; sends line
    and returns the output once the echo came back (or the client exited)."""
    argv = ["openssl", "s_client", "-connect", target, "-CAfile", ca, "-verify_return_error"]
    argv += ["-servername", sni] if sni else ["-noservername"]
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         start_new_session=True)
    out = []

    def reader():
        for l in iter(p.stdout.readline, b""):
            out.append(l.decode("utf-8", "replace"))

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    try:
        poll(lambda: p.poll() is not None or any("Verify return code" in l for l in out), timeout,
             what="s_client's handshake")
        if p.poll() is None:
            p.stdin.write(line)
            p.stdin.flush()
            want = line.decode().strip()
            poll(lambda: p.poll() is not None or sum(l.strip() == want for l in out) >= 1, timeout,
                 what="s_client to get the echo")
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(5)
        t.join(5)
    return "".join(out)


# =========================================================================== WebSocket


def ws_world(env, https=False, timeout=None, timeouts=None, workers=2):
    """One WebSocket backend w1 (127.0.0.2) behind an HTTP (and, with https, an HTTPS)
    server. Returns (world, backend, ports {"http": p, "https": p}, pki)."""
    w = ws_backend(env, "w1", "127.0.0.2")
    world = World(env, timeouts=timeouts, workers=workers)
    svc = world.service("ws.test.internal", [w], protocol="HTTP")
    ports = {"http": world.http(svc, timeout=timeout)}
    pki = None
    if https:
        pki = Pki(env)
        ports["https"] = world.http(svc, timeout=timeout, tls=pki.leaf("gw", ["DNS:ws.example.com"], key="ec"))
    world.start()
    return world, w, ports, pki


def ws_echo_suite(env, w, url, **kw):
    """The WebSocket checks of item 5 through a proxy: the upgrade headers reach the
    backend, 1,000 messages of 64 KiB each way come back intact, a ping from the
    client and one from the backend get their pongs, and both close handshakes
    pass with their codes and reasons."""
    rep = ws_run(url + "/report", [
        {"op": "recv"},
        {"op": "echo", "count": 1000, "size": 65536, "window": 8},
        {"op": "ping", "data": "from-client"},
        {"op": "send", "data": "!ping from-backend"},
        {"op": "recv"},
        {"op": "echo", "count": 20, "size": 3000, "text": True},
        {"op": "close", "code": 4000, "reason": "bye"},
    ], timeout=180, **kw)
    steps = ws_ok(rep, f"WebSocket echo through {url}")
    rhead = {k.lower(): v for k, v in rep["headers"]}
    check(rhead.get("x-upstream") == "w1", f"the 101's fields lack the backend's x-upstream: {rep['headers']}")
    check(rhead.get("upgrade", "").lower() == "websocket", f"the 101's Upgrade: {rep['headers']}")
    seen = {k.lower(): v for k, v in json.loads(steps[0]["data"])["headers"]}
    check(seen.get("upgrade", "").lower() == "websocket", f"the backend saw Upgrade {seen.get('upgrade')!r}: {seen}")
    check("upgrade" in seen.get("connection", "").lower(), f"the backend saw Connection {seen.get('connection')!r}")
    check(seen.get("sec-websocket-version") == "13" and seen.get("sec-websocket-key"),
          f"the backend lacks Sec-WebSocket-Key/Version: {seen}")
    e = steps[1]
    check(e["sent"] == 1000 and e["echoed"] == 1000 and e["mismatched"] == 0, f"1,000 x 64 KiB echo: {e}")
    check(steps[2]["pong"], f"client ping: {steps[2]}")
    check(steps[4].get("data") == "pong from-backend", f"backend ping: {steps[4]}")
    check(steps[5]["echoed"] == 20 and steps[5]["mismatched"] == 0, f"text echo: {steps[5]}")
    check(steps[6] == {"code": 4000, "reason": "bye", "clean": True, "op": "close"},
          f"client-initiated close handshake: {steps[6]}")
    poll(lambda: {"code": 4000, "reason": "bye"} in w.ws_stats()["closes"], 5,
         what="the backend to receive the client's close frame (4000 bye)")
    rep = ws_run(url + "/", [{"op": "send", "data": "!close 4001 backend-done"}, {"op": "wait_close", "timeout": 5}],
                 **kw)
    st = ws_ok(rep, "backend-initiated close")[1]
    check(st["closed"] and st["code"] == 4001 and st["reason"] == "backend-done", f"backend-initiated close: {st}")
    poll(lambda: w.ws_stats()["open"] == 0, 5, what="the backend's tunnels to be closed")


@_test
def ws_echo_http(env):
    """WebSocket over an HTTP port: see ws_echo_suite."""
    world, w, ports, _ = ws_world(env)
    ws_echo_suite(env, w, f"ws://127.0.0.1:{ports['http']}")


@_test
def ws_echo_https(env):
    """WebSocket over an HTTPS port (wss, SNI, the gateway's certificate verified):
    see ws_echo_suite."""
    world, w, ports, pki = ws_world(env, https=True)
    ws_echo_suite(env, w, f"wss://ws.example.com:{ports['https']}", ca=pki.ca(), sni="ws.example.com",
                  connect=f"127.0.0.1:{ports['https']}")


@_test
def ws_echo_h2(env):
    """WebSocket over HTTP/2 (RFC 8441): the gateway announces
    SETTINGS_ENABLE_CONNECT_PROTOCOL; an extended CONNECT reaches the backend as
    the HTTP/1.1 upgrade (Upgrade: websocket, a Sec-WebSocket-Key isthmus made),
    is answered 200, and 200 messages of 64 KiB each way come back intact through
    the stream's DATA frames (HTTP/2 flow control on the client side); its
    access-log line says HTTP/2, 200."""
    isthmus_only("RFC 8441 (HAProxy 2.6 translates it too, but not by this config)")
    world, w, ports, _ = ws_world(env)
    argv = [DEBIAN_PYTHON, os.path.join(TOOLS, "ws_h2_client.py"), str(ports["http"]), "/report", "200",
            "65536", "--timeout", "60"]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=90)
    rep = parse_tool("ws_h2_client.py", p.returncode, p.stdout, p.stderr)
    check(rep["connect_protocol"] == 1, f"SETTINGS_ENABLE_CONNECT_PROTOCOL not announced: {rep}")
    check(rep["status"] == 200 and rep["error"] is None and rep["echoed"] == 200, f"over HTTP/2: {rep}")
    seen = {k.lower(): v for k, v in json.loads(rep["report"])["headers"]}
    check(seen.get("upgrade", "").lower() == "websocket" and "upgrade" in seen.get("connection", "").lower(),
          f"the backend's upgrade request: {seen}")
    check(len(seen.get("sec-websocket-key", "")) == 24, f"no Sec-WebSocket-Key made: {seen}")
    e = wait_log(world.log, lambda e: e.get(NAMES["log_status"]) == 200 and e.get("protocol") == "HTTP/2",
                 "of the HTTP/2 WebSocket")
    check(e["bytes_in"] >= 200 * 65536 and e["bytes_out"] >= 200 * 65536, f"its bytes: {e}")


@_test
def ws_101_own_fields(env):
    """The upstream's 101 carries what every answer from an upstream does:
    isthmus's Server in place of the backend's, x-envoy-upstream-service-time
    and one Date (the 101 went out with the backend's Server and no service
    time)."""
    isthmus_only("spec.proxyHeaders")
    world, w, ports, _ = ws_world(env)
    with Conn("127.0.0.1", ports["http"]) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: ws.test\r\n" +
               b"".join(f"{k}: {v}\r\n".encode() for k, v in ws_upgrade_headers()) + b"\r\n")
        status, _, headers, _ = c.read_head()
    names = [k.lower() for k, _ in headers]
    h = {k.lower(): v for k, v in headers}
    check(status == 101 and h.get("sec-websocket-accept") == WS_ACCEPT, f"the upgrade: {status} {headers}")
    check(names.count("server") == 1 and h["server"] == "isthmus", f"the 101's Server: {headers}")
    check(h.get("x-envoy-upstream-service-time", "").isdigit(), f"the 101's service time: {headers}")
    check(names.count("date") == 1 and h.get("connection", "").lower() == "upgrade", f"the 101: {headers}")


@_test
def ws_h2_upgrade_refused(env):
    """An extended CONNECT whose backend answers without switching protocols:
    its 2xx would read as the tunnel open (RFC 8441 5; the client took the
    backend's body for WebSocket frames), so the client gets 502 (UPE); a 403
    reaches it as it is."""
    isthmus_only("RFC 8441")
    world, w, ports, _ = ws_world(env)
    for path, want in (("/status/200", 502), ("/status/403", 403)):
        argv = [DEBIAN_PYTHON, os.path.join(TOOLS, "ws_h2_client.py"), str(ports["http"]), path, "1", "1",
                "--timeout", "20"]
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=40)
        rep = parse_tool("ws_h2_client.py", p.returncode, p.stdout, p.stderr)
        check(rep["status"] == want, f"extended CONNECT to {path}: {rep}, want {want}")
    e = wait_log(world.log, lambda e: e.get(NAMES["log_status"]) == 502, "of the refused HTTP/2 upgrade")
    check(e.get("flags") == "UPE", f"its line: {e}")


@_test
def upgrade_other_than_websocket_refused(env):
    """An upgrade other than WebSocket is refused as Envoy's connection
    manager refuses an upgrade type it is not configured for (Istio's
    gateway configures websocket only): 403, details upgrade_failed, the
    connection closed, nothing at the backend; over HTTP/2 an extended
    CONNECT of another :protocol likewise. It was tunnelled: a backend that
    answered 101 got a raw pipe past the gateway's per-request checks.
    "WebSocket" in any case still upgrades."""
    isthmus_only("refusing upgrades")
    world, w, ports, _ = ws_world(env)
    before = w.ws_stats()
    with Conn("127.0.0.1", ports["http"]) as c:
        r = c.request("GET", "/", "ws.test", headers=[("Upgrade", "foo/1"), ("Connection", "Upgrade")])
        check(r.status == 403 and c.closed_by_peer(2), f"Upgrade: foo/1: {r}")
    with Conn("127.0.0.1", ports["http"]) as c:
        r = c.request("GET", "/", "ws.test", headers=[("Upgrade", "websocket, foo"), ("Connection", "Upgrade")])
        check(r.status == 403, f"Upgrade: websocket, foo: {r}")
    argv = [DEBIAN_PYTHON, os.path.join(TOOLS, "ws_h2_client.py"), str(ports["http"]), "/", "1", "1",
            "--timeout", "20", "--protocol", "foo"]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=40)
    rep = parse_tool("ws_h2_client.py", p.returncode, p.stdout, p.stderr)
    check(rep["status"] == 403, f"an extended CONNECT of :protocol foo: {rep}")
    after = w.ws_stats()
    check(after["upgraded"] == before["upgraded"] and after["refused"] == before["refused"],
          f"the backend saw the refused upgrades: {before} -> {after}")
    with Conn("127.0.0.1", ports["http"]) as c:
        c.send(build_request("GET", "/", "ws.test", [("Upgrade", "WebSocket"), ("Connection", "Upgrade"),
                                                    ("Sec-WebSocket-Key", WS_KEY), ("Sec-WebSocket-Version", "13")]))
        status = c.read_head()[0]
        check(status == 101, f"Upgrade: WebSocket: {status}")
    e = wait_log(world.log, lambda e: e.get(NAMES["log_status"]) == 403, "of the refused upgrade")
    check(e.get("flags") in (None, "-"), f"its line: {e}")


@_test
def ws_h2_client_half_close(env):
    """An HTTP/2 WebSocket whose client ends the stream (END_STREAM after
    its echoes, no close frame): the end reaches the backend as its
    connection's half close, as a tunnel's, and the backend's close ends the
    stream at once. The END_STREAM was dropped: the backend never saw the
    end, and the stream stayed open until timeouts.idle (30 s here)."""
    isthmus_only("RFC 8441")
    world, w, ports, _ = ws_world(env, timeouts={"idle": "30s"})
    argv = [DEBIAN_PYTHON, os.path.join(TOOLS, "ws_h2_client.py"), str(ports["http"]), "/", "3", "100",
            "--timeout", "20", "--half-close"]
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=40)
    rep = parse_tool("ws_h2_client.py", p.returncode, p.stdout, p.stderr)
    check(rep["error"] is None and rep["echoed"] == 3 and rep["ended"] is not None and rep["ended"] < 10,
          f"the half-closed stream: {rep}")
    poll(lambda: w.ws_stats()["open"] == 0, 5, what="the backend's side to be closed")


@_test
def ws_timeouts(env):
    """timeouts.idle (2 s) closes a silent WebSocket tunnel, both sides; the
    route's timeout (1 s) and timeouts.upstreamResponse (3 s) do not cut a live
    one that talks every 250 ms for 5 s (Istio: a route timeout is not applied to
    upgraded connections)."""
    world, w, ports, _ = ws_world(env, timeout="1s", timeouts={"idle": "2s", "upstreamResponse": "3s"})
    url = f"ws://127.0.0.1:{ports['http']}/"
    rep = ws_run(url, [{"op": "chat", "seconds": 5, "interval": 0.25}, {"op": "close"}], timeout=30)
    steps = ws_ok(rep, "a live tunnel past the route timeout")
    check(steps[0]["rounds"] >= 10 and steps[0]["ok"] == steps[0]["rounds"], f"chat: {steps[0]}")
    check(steps[1]["clean"] and steps[1]["code"] == 1000, f"close after the chat: {steps[1]}")
    poll(lambda: w.ws_stats()["open"] == 0, 5, what="the chat tunnel to close at the backend")
    rep = ws_run(url, [{"op": "echo", "count": 1, "size": 10}, {"op": "wait_close", "timeout": 12}], timeout=30)
    st = ws_ok(rep, "an idle tunnel")[1]
    check(st["closed"], f"a silent tunnel still open after 12 s (timeouts.idle 2s): {st}")
    check(1.5 <= st["after"] <= 6.0, f"a silent tunnel closed after {st['after']} s, want about 2 s: {st}")
    poll(lambda: w.ws_stats()["open"] == 0, 5, what="the backend side of the idle tunnel to be closed")


@_test
def ws_upgrade_refused_closes(env):
    """The backend answers an upgrade with 403, then with 200: each answer reaches
    the client as an ordinary response with `connection: close`, and the
    connection ends after it, as Envoy drains a connection whose upgrade was
    refused: what the client sent after its upgrade request (here a request,
    sent at once) was meant for the tunnel, and is neither read as a request nor
    sent to the backend. An upgrade on a new connection then succeeds."""
    world, w, ports, _ = ws_world(env)
    after = build_request("GET", "/after", "ws.test")
    for path, status in (("/status/403", 403), ("/status/200", 200)):
        with Conn("127.0.0.1", ports["http"]) as c:
            c.send(build_request("GET", path, "ws.test", ws_upgrade_headers()) + after)
            r = c.read_response()
            check(r.status == status and r.body == f"w1 {path}\n".encode(),
                  f"upgrade to {path}: want {status}, got {r}")
            check(r.header("upgrade") is None and r.header("connection") == "close",
                  f"a refused upgrade's answer: want connection: close and no Upgrade, got {r}")
            check(c.closed_by_peer(), f"the connection after the refused upgrade to {path} stays open")
            check(c.buf == b"", f"bytes after the refused upgrade's answer: {c.buf!r}")
    stats = w.ws_stats()
    # plain: the stats asked for here, and nothing else (/after never came).
    check(stats["refused"] == 2 and stats["plain"] == 1, f"backend stats: {stats}")
    with Conn("127.0.0.1", ports["http"]) as c:
        c.send(build_request("GET", "/", "ws.test", ws_upgrade_headers()))
        status, _, headers, _ = c.read_head()
        h = dict(headers)
        check(status == 101 and h.get("sec-websocket-accept") == WS_ACCEPT,
              f"an upgrade after two refused ones: {status} {headers}")
        c.send(ws_frame(b"after-refusals"))
        op, payload = ws_read_frame(c)
        check(op == 1 and payload == b"after-refusals", f"echo over the tunnel: {op} {payload!r}")


@_test
def ws_h2c_not_upgraded(env):
    """`Upgrade: h2c` is not honoured: the request reaches the backend without
    Upgrade (nor HTTP2-Settings, which its Connection names), the client gets the
    backend's 200 over HTTP/1.1, and the connection carries another request."""
    isthmus_only("dropping Upgrade: h2c")
    world, w, ports, _ = ws_world(env)
    with Conn("127.0.0.1", ports["http"]) as c:
        r = c.request("GET", "/h2c", "ws.test", headers=[("Upgrade", "h2c"), ("Connection", "Upgrade, HTTP2-Settings"),
                                                        ("HTTP2-Settings", "AAMAAABkAARAAAAAAAIAAAAA")])
        check(r.status == 200, f"Upgrade: h2c answered {r}")
        seen = {k.lower() for k, _ in json.loads(r.body)["headers"]}
        check("upgrade" not in seen and "http2-settings" not in seen,
              f"the backend saw the h2c upgrade's fields: {sorted(seen)}")
        r = c.request("GET", "/next", "ws.test")
        check(r.status == 200 and json.loads(r.body)["path"] == "/next", f"the next request: {r}")


@_test
def ws_upgrade_answered_before_request_sent(env):
    """An upstream that answers the upgrade with its 101 at once, before it reads
    the request, whose head (200 KiB of fields) the socket does not take at once
    (the upstream's small receive buffer and MSS): the tunnel opens while the
    rest of the head is still going out. The client's frame, sent once it has the
    101 or with the request itself, follows the whole head: the upstream reads the
    head, then the frame, and its echo comes back."""
    isthmus_only("maxRequestHeaderBytes")
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    env.cleanups.append(ls.close)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    ls.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, 536)
    ls.bind(("127.0.0.2", 0))
    ls.listen(4)
    world = World(env, app_extra="  limits: {maxRequestHeaderBytes: 262144}\n")
    svc = world.service("ws.test.internal", [Backend("raw", "127.0.0.2", ls.getsockname()[1])], protocol="HTTP")
    port = world.http(svc)
    world.start()
    fields = [(f"x-big-{i}", chr(ord("a") + i) * 50000) for i in range(4)]
    head = (b"GET /ws HTTP/1.1\r\nHost: ws.test\r\n" +
            b"".join(f"{k}: {v}\r\n".encode() for k, v in ws_upgrade_headers() + fields) + b"\r\n")
    frame = ws_frame(b"after-the-head")

    def serve(go, got):
        c, _ = ls.accept()
        with c:
            c.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      b"Sec-WebSocket-Accept: " + WS_ACCEPT.encode() + b"\r\n\r\n")
            go.wait(15)
            c.settimeout(10)
            buf = b""
            try:
                while b"\r\n\r\n" not in buf or len(buf.partition(b"\r\n\r\n")[2]) < len(frame):
                    d = c.recv(1 << 16)
                    if not d:
                        break
                    buf += d
                got["head"], _, got["rest"] = buf.partition(b"\r\n\r\n")
                c.sendall(bytes([0x81, 14]) + b"after-the-head")
                c.recv(1 << 16)
            except OSError as e:
                got["error"] = repr(e)

    for early in (False, True):
        what = "the frame sent with the request" if early else "the frame sent after the 101"
        go, got = threading.Event(), {}
        t = threading.Thread(target=serve, args=(go, got), daemon=True)
        t.start()
        with Conn("127.0.0.1", port) as c:
            c.send(head + frame if early else head)
            status, _, headers, _ = c.read_head()
            check(status == 101, f"{what}: the upstream's 101: {status} {headers}")
            if not early:
                c.send(frame)
            time.sleep(0.3)  # the frame reaches the gateway while the head is stuck
            go.set()
            try:
                op, payload = ws_read_frame(c)
            except (EOFError, OSError) as e:
                raise TestFailure(f"{what}: the tunnel broke ({e!r}); the upstream saw {got.get('error')}")
            check(op == 1 and payload == b"after-the-head", f"{what}: the echo: {op} {payload!r}")
        t.join(10)
        seen = got.get("head", b"").decode("latin-1").lower()
        check(all(f"{k}: {v}" in seen for k, v in fields),
              f"{what}: the upstream's head lacks the big fields ({len(seen)} bytes)")
        check(got.get("rest") == frame, f"{what}: the upstream got {got.get('rest')!r:.80} after the head")
    check("BUG" not in env.gateway.log(), f"a worker died: {env.gateway.log()[-400:]}")


@_test
def ws_access_log_and_metrics(env):
    """An open WebSocket shows in the metrics and `show info` (one tunnel open),
    and when it ends the access log has its line: status 101, the bytes each way
    (frames and handshake) and its duration; the open count is back to 0, the
    byte counters and the duration histogram have moved."""
    isthmus_only("metrics, show info and the access log")
    world, w, ports, _ = ws_world(env)
    m0 = scrape(world.admin)
    go, ready = env.path("go"), env.path("ready")
    n, size = 10, 1000
    b = ws_bg(env, f"ws://127.0.0.1:{ports['http']}/counted",
              [{"op": "echo", "count": n, "size": size}, {"op": "wait_file", "path": go},
               {"op": "sleep", "seconds": 1.2}, {"op": "close", "code": 1000, "reason": ""}], ready=ready, timeout=30)
    wait_file(ready, 10, "the WebSocket to open")
    poll(lambda: metric_of(world.admin, "m_active") == 1, 5, what=f"{NAMES['m_active']} 1 while a WebSocket is open")
    info = show_info(env)
    check(info.get(NAMES["info_active"]) == 1, f"show info json: {NAMES['info_active']} != 1: {info}")
    open(go, "w").close()
    rep = b.result()
    ws_ok(rep, "the counted WebSocket")
    e = wait_log(world.log, lambda e: e.get(NAMES["log_status"]) == 101, "with status 101")
    payload_in, payload_out = n * (size + 8), n * (size + 4)  # masked client frames, plain backend frames
    bi, bo, ms = e.get(NAMES["log_in"]), e.get(NAMES["log_out"]), e.get(NAMES["log_ms"])
    check(isinstance(bi, int) and payload_in <= bi <= payload_in + 4096,
          f"{NAMES['log_in']} {bi}, want {payload_in}..+4096 (the frames, the request head, the close): {e}")
    check(isinstance(bo, int) and payload_out <= bo <= payload_out + 4096,
          f"{NAMES['log_out']} {bo}, want {payload_out}..+4096: {e}")
    check(isinstance(ms, int) and 1200 <= ms <= 20000, f"{NAMES['log_ms']} {ms}, want >= 1200: {e}")
    check(e.get("path") == "/counted" and e.get(NAMES["log_route"]) == world.route_of(ports["http"]),
          f"the 101 line's path and route: {e}")
    poll(lambda: metric_of(world.admin, "m_active") == 0, 5, what=f"{NAMES['m_active']} back to 0")
    m1 = scrape(world.admin)
    for key, least in (("m_rx", n * size), ("m_tx", n * size), ("m_opened", 1), ("m_duration_ms", 1200)):
        name = NAMES[key]
        check(m1.get(name, 0) - m0.get(name, 0) >= least,
              f"{name} moved by {m1.get(name, 0) - m0.get(name, 0)}, want >= {least}")


@_test
def ws_bounded_buffers(env):
    """A client that stops reading while the backend floods it (64 MiB): the
    backend is held back (what it has written stops growing, well short of 64
    MiB) and the proxy's memory stays bounded; once the client reads again,
    every message arrives."""
    world, w, ports, _ = ws_world(env)
    ready, go = env.path("ready"), env.path("go")
    rss_of = (lambda: vmrss_kib(env.gateway.pid)) if standin() else (lambda: worker_rss_kib(env))
    # Traffic through the workers first: the pages of their receive buffers
    # are touched once, whatever the flood (a baseline before it counted
    # them, 16 MiB once on a loaded machine under ASan).
    for _ in range(4):
        ws_ok(ws_run(f"ws://127.0.0.1:{ports['http']}/", [{"op": "echo", "count": 64, "size": 65536}]),
              "a warm-up echo")
    rss0 = settled_rss(rss_of)
    base = w.ws_stats()["bytes_out"]
    # The client asks for the flood, then reads nothing until "go" (ws_client's
    # reader stops after 64 queued messages, 4 MiB).
    b = ws_bg(env, f"ws://127.0.0.1:{ports['http']}/",
              [{"op": "send", "data": "!flood 1024"}, {"op": "wait_file", "path": go, "timeout": 60},
               {"op": "drain", "count": 1024, "timeout": 60}], ready=ready, timeout=120)
    wait_file(ready, 10, "the WebSocket to open")
    last = [None]

    def plateau():
        cur = w.ws_stats()["bytes_out"]
        same = last[0] == cur
        last[0] = cur
        return same and cur > base

    poll(plateau, 30, interval=0.7, what="the backend's output to stop growing while the client does not read")
    sent = last[0] - base
    check(sent < 48 << 20, f"the backend wrote {sent >> 20} MiB to a client that reads nothing")
    rss = rss_of()
    check(rss - rss0 < 16 << 10, f"the proxy's memory grew by {(rss - rss0) >> 10} MiB while the client did not read")
    open(go, "w").close()
    st = ws_ok(b.result(), "draining the flood")
    check(st[2]["messages"] == 1024 and st[2]["bytes"] == 1024 * 65536, f"flood drained: {st[2]}")


# =========================================================================== TCP


def tcp_world(env, n=1, weights=None, workers=2, policy=None, timeouts=None):
    """Backends t1..tn (127.0.0.2, .3, ...), each the only endpoint of its service
    tN.tcp.internal; one TCP server routing to them with weights (default: one
    destination, t1). policy: the DestinationRule trafficPolicy lines of every
    service. Returns (world, [backends], port)."""
    bs = [tcp_backend(env, f"t{i + 1}", f"127.0.0.{2 + i}") for i in range(n)]
    world = World(env, workers=workers, timeouts=timeouts)
    hosts = [world.service(f"t{i + 1}.tcp.internal", [b]) for i, b in enumerate(bs)]
    if policy:
        for h in hosts:
            world.dr(h, policy)
    dests = [(h, (weights[i] if weights else None)) for i, h in enumerate(hosts)]
    port = world.tcp(dests)
    world.start()
    return world, bs, port


def pump(c, total, chunk=256 * 1024):
    """Sends total random bytes over TcpClient c while reading the echo in a thread;
    returns (sha256 sent, sha256 received, bytes received)."""
    h_out, h_in = hashlib.sha256(), hashlib.sha256()
    got = [0]
    err = []

    def reader():
        try:
            c.sock.settimeout(20)
            if c.buf:
                h_in.update(c.buf)
                got[0] += len(c.buf)
                c.buf = b""
            while got[0] < total:
                d = c.sock.recv(1 << 20)
                if not d:
                    break
                h_in.update(d)
                got[0] += len(d)
        except OSError as e:
            err.append(e)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    sent = 0
    while sent < total:
        d = os.urandom(min(chunk, total - sent))
        h_out.update(d)
        c.sock.sendall(d)
        sent += len(d)
    t.join(60)
    check(not t.is_alive(), f"echo of {total} bytes not back within 60 s ({got[0]} so far)")
    check(not err, f"reading the echo: {err}")
    return h_out.hexdigest(), h_in.hexdigest(), got[0]


@_test
def tcp_echo(env):
    """A TCP server and a tcp route (match port): the backend greets, 16 MiB come
    back intact (written and read at once), and a half-close is carried: after
    the client's FIN the echo still in flight arrives, then the backend's FIN."""
    world, (t1,), port = tcp_world(env)
    c = TcpClient(port)
    check(c.greeting == "t1", f"greeting through the tcp route: {c.greeting!r}")
    a, b, n = pump(c, 16 << 20)
    check(n == 16 << 20 and a == b, f"16 MiB echo: {n} bytes back, intact {a == b}")
    data = os.urandom(4 << 20)
    c.sock.sendall(data)
    c.sock.shutdown(socket.SHUT_WR)
    got = c.exact(len(data))
    check(got == data, "the echo sent after the client's FIN differs")
    check(c.closed_within(5) is not None, "the backend's FIN did not reach the client within 5 s")
    c.close()
    st = t1.ctl("stats")
    check(st["bytes_in"] == (16 << 20) + (4 << 20) and st["accepted"] == 1, f"backend stats: {st}")


def connect_proxy(env, addr):
    """connect_proxy.py (an HTTP/1.1 CONNECT proxy) on addr, with its control port."""
    argv = [DEBIAN_PYTHON, os.path.join(TOOLS, "connect_proxy.py"), "--listen", f"{addr}:0", "--ctl", f"{addr}:0"]
    ports, proc = spawn_tool(env, "connect-proxy", argv, want=("listening on", "control on"))
    return Backend("proxy", addr, ports["listening on"], ports["control on"], proc)


def tunnel_through_proxy(env, protocol, size):
    """A TCP route whose DestinationRule tunnels (protocol) through the endpoint,
    connect_proxy.py, to backend t1: the backend's greeting and size bytes come
    back through it intact, the proxy got the head Envoy sends for protocol,
    and show clusters says so. (world, proxy, listener port, t1)."""
    t1 = tcp_backend(env, "t1", "127.0.0.3")
    proxy = connect_proxy(env, "127.0.0.2")
    world = World(env)
    host = world.service("egress.proxy.internal", [proxy])
    world.dr(host, [f"tunnel: {{protocol: {protocol}, targetHost: 127.0.0.3, targetPort: {t1.port}}}"])
    port = world.tcp([(host, None)])
    world.start()
    c = TcpClient(port)
    check(c.greeting == "t1", f"the backend's greeting through the proxy: {c.greeting!r}")
    a, b, n = pump(c, size)
    check(n == size and a == b, f"{size} bytes echoed through the proxy: {n} back, intact {a == b}")
    c.close()
    target = f"127.0.0.3:{t1.port}"
    line = f"CONNECT {target} HTTP/1.1" if protocol == "CONNECT" else "POST / HTTP/1.1"
    st = proxy.ctl("stats")
    check(st["tunnels"] == 1 and st["heads"] == [f"{line}\r\nhost: {target}\r\n\r\n"], f"what the proxy got: {st}")
    cl = json.loads(ctl_cmd(env.path("ctl.sock"), "show clusters json"))
    check([(c["tunnel"], c["tunnel_protocol"]) for c in cl] == [(target, protocol)], f"show clusters: {cl}")
    return world, proxy, port, t1


@_test
def tcp_tunnel_connect(env):
    """A DestinationRule's tunnel: a TCP route's bytes go through the
    endpoint, an HTTP/1.1 CONNECT proxy, to the tunnel's target (Envoy's
    tcp_proxy tunneling_config as Istio sets it). The proxy gets "CONNECT
    host:port HTTP/1.1" with its Host field; the backend's greeting, sent
    with the proxy's 200 in one write, reaches the client first; 4 MiB come
    back intact. A proxy that refuses (403) is a failed connect: the client's
    connection closes with nothing, the access log says UF; so is one that
    does not answer within the connect timeout (1 s a try, three tries)."""
    world, proxy, port, t1 = tunnel_through_proxy(env, "CONNECT", 4 << 20)
    proxy.ctl("answer 403")
    c = TcpClient(port, greet=False)
    check(c.closed_within(5) is not None and c.buf == b"", f"a refused CONNECT: the client got {c.buf!r}")
    c.close()
    wait_log(world.log, lambda e: "UF" in str(e.get(NAMES["log_flags"])), "flagged UF")
    proxy.ctl("answer 0")
    before = len(proxy.ctl("stats")["heads"])
    c = TcpClient(port, greet=False)
    took = c.closed_within(15)
    check(took is not None and 2.5 <= took < 12 and c.buf == b"",
          f"a CONNECT never answered: closed after {took} s with {c.buf!r}, want after three 1 s tries")
    c.close()
    check(len(proxy.ctl("stats")["heads"]) - before == 3, "three tries of the unanswered CONNECT")
    check(t1.ctl("stats")["accepted"] == 1, "a refused CONNECT reached the backend")


@_test
def tcp_tunnel_post(env):
    """A DestinationRule's tunnel with protocol POST (Envoy's use_post, as
    Istio sets it): the proxy gets "POST / HTTP/1.1" with the target as its
    Host, and the route's bytes follow as its body, neither chunked nor
    counted; the backend's greeting and 1 MiB come back intact; show
    clusters says POST."""
    tunnel_through_proxy(env, "POST", 1 << 20)


@_test
def tcp_bounded_buffers(env):
    """A backend that stops reading: the client's writes stall (what it could
    send stays well short of 64 MiB) and the proxy's memory stays bounded; once
    the backend reads again, everything sent comes back intact."""
    world, (t1,), port = tcp_world(env)
    rss_of = (lambda: vmrss_kib(env.gateway.pid)) if standin() else (lambda: worker_rss_kib(env))
    c = TcpClient(port)
    rss0 = settled_rss(rss_of)
    t1.ctl("pause")
    c.sock.setblocking(False)
    h_out, sent, chunk = hashlib.sha256(), 0, os.urandom(64 * 1024)
    last_progress = time.monotonic()
    deadline = last_progress + 30
    while sent < 64 << 20 and time.monotonic() - last_progress < 1.0:
        check(time.monotonic() < deadline, "the client's writes neither stalled nor reached 64 MiB within 30 s")
        try:
            n = c.sock.send(chunk)
        except BlockingIOError:
            time.sleep(0.01)
            continue
        h_out.update(chunk[:n])
        sent += n
        last_progress = time.monotonic()
    check(sent < 48 << 20, f"the client wrote {sent >> 20} MiB towards a backend that reads nothing")
    rss = rss_of()
    check(rss - rss0 < 16 << 10, f"the proxy's memory grew by {(rss - rss0) >> 10} MiB while the backend did not read")
    c.sock.setblocking(True)
    c.sock.settimeout(20)
    t1.ctl("resume")
    got = c.exact(sent)
    check(hashlib.sha256(got).hexdigest() == h_out.hexdigest(), f"the {sent} bytes echoed after the stall differ")
    c.close()


@_test
def tcp_weighted(env):
    """A tcp route with weights 75/25 over two services: 2,000 connections split
    within 3 points."""
    world, bs, port = tcp_world(env, n=2, weights=[75, 25])
    counts = tally(lambda i: greet_of(TcpClient(port)), 2000)
    check_shares(counts, {"t1": 75, "t2": 25}, 2000, "tcp route 75/25")


def greet_of(c):
    try:
        return c.greeting
    finally:
        c.close()


@_test
def tcp_access_log_and_metrics(env):
    """A TCP tunnel open shows in the metrics and `show info`; when it ends, its
    access-log line names the tcp route and the endpoint, counts exactly the bytes
    each way, and its duration."""
    isthmus_only("metrics, show info and the access log")
    world, (t1,), port = tcp_world(env)
    m0, info0 = scrape(world.admin), show_info(env)
    c = TcpClient(port)
    for _ in range(5):
        c.echo(os.urandom(1000))
    poll(lambda: metric_of(world.admin, "m_active") == 1, 5, what=f"{NAMES['m_active']} 1 with a TCP tunnel open")
    check(show_info(env).get(NAMES["info_active"]) == 1, f"show info: {show_info(env)}")
    time.sleep(1.0)  # the tunnel's lifetime, for the duration (not a wait for anything)
    c.close()
    route = world.route_of(port)
    e = wait_log(world.log, lambda e: e.get(NAMES["log_route"]) == route, f"for route {route}")
    check(e.get(NAMES["log_upstream"]) == upstream_of("t1.tcp.internal", t1), f"the line's upstream: {e}")
    check(e.get(NAMES["log_in"]) == 5000, f"{NAMES['log_in']} {e.get(NAMES['log_in'])}, want exactly 5000: {e}")
    check(e.get(NAMES["log_out"]) == 5000 + len("t1\n"), f"{NAMES['log_out']}, want exactly 5003: {e}")
    ms = e.get(NAMES["log_ms"])
    check(isinstance(ms, int) and 1000 <= ms <= 20000, f"{NAMES['log_ms']} {ms}, want >= 1000: {e}")
    check(e.get(NAMES["log_flags"]) in ("-", None) and e.get(NAMES["log_status"]) == NAMES["l4_status"],
          f"flags and status of a clean TCP tunnel: {e}")
    poll(lambda: metric_of(world.admin, "m_active") == 0, 5, what=f"{NAMES['m_active']} back to 0")
    m1 = scrape(world.admin)
    for key, least in (("m_rx", 5000), ("m_tx", 5003), ("m_opened", 1), ("m_duration_ms", 1000),
                       ("m_route_conns", 1), ("m_route_rx", 5000), ("m_route_tx", 5003)):
        name = NAMES[key]
        check(m1.get(name, 0) - m0.get(name, 0) >= least,
              f"{name} moved by {m1.get(name, 0) - m0.get(name, 0)}, want >= {least}")
    info1 = show_info(env)
    for key, want in (("info_opened", 1), ("info_in", 5000), ("info_out", 5003)):
        name = NAMES[key]
        check(info1.get(name, 0) - info0.get(name, 0) == want,
              f"show info {name} moved by {info1.get(name, 0) - info0.get(name, 0)}, want {want}")


@_test
def tunnel_lines_and_counts_as_any_response(env):
    """A WebSocket's line has its response as any request's (the 101's
    fields, %RESPONSE_DURATION%) and the upstream connection it went on
    (%UPSTREAM_LOCAL_ADDRESS%, %UPSTREAM_CONNECTION_ID%), and its 101 counts
    in its listener's, route's and cluster's 1xx as Envoy charges it; a TCP
    tunnel's line names its upstream connection too (Envoy's tcp_proxy sets
    the upstream local address). Each was "-", and the 101 counted nowhere
    but isthmus_responses_total."""
    isthmus_only("the access log's operators and the per-listener counters")
    w = ws_backend(env, "w1", "127.0.0.2")
    t1 = tcp_backend(env, "t1", "127.0.0.3")
    fmt = ("{code: '%RESPONSE_CODE%', up: '%RESP(X-UPSTREAM)%', rsd: '%RESPONSE_DURATION%', "
           "ula: '%UPSTREAM_LOCAL_ADDRESS%', ucid: '%UPSTREAM_CONNECTION_ID%', "
           "uh: '%UPSTREAM_HOST%', route: '%ROUTE_NAME%'}")
    world = World(env, log_format=f"format: istio-json, jsonFormat: {fmt}")
    ws_port = world.http(world.service("ws.test.internal", [w], protocol="HTTP"))
    tcp_port = world.tcp([(world.service("t1.tcp.internal", [t1]), None)])
    world.start()

    def ones():
        body = urllib.request.urlopen(f"http://127.0.0.1:{world.admin}/metrics", timeout=5).read().decode()
        out = {}
        for m in re.finditer(r'^(isthmus_(?:listener|route|cluster)_responses_total)'
                             r'\{[^}]*code_class="1xx"[^}]*\} (\S+)$', body, re.M):
            out[m.group(1)] = out.get(m.group(1), 0) + float(m.group(2))
        return out

    rep = ws_run(f"ws://127.0.0.1:{ws_port}/x", [{"op": "echo", "count": 2, "size": 10},
                                                {"op": "close", "code": 1000, "reason": ""}])
    ws_ok(rep, "the WebSocket")
    e = wait_log(world.log, lambda e: e.get("code") == 101, "with code 101")
    check(e.get("up") == "w1" and isinstance(e.get("rsd"), int), f"the 101's response fields: {e}")
    check(re.fullmatch(r"127\.0\.0\.1:\d+", e.get("ula") or "") and isinstance(e.get("ucid"), int),
          f"the WebSocket's upstream connection: {e}")
    got = ones()
    check(sorted(got) == ["isthmus_cluster_responses_total", "isthmus_listener_responses_total",
                          "isthmus_route_responses_total"] and all(v >= 1 for v in got.values()),
          f"the 101 in the 1xx counters: {got}")
    check(show_info(env).get("responses_1xx", 0) >= 1, f"show info's responses_1xx: {show_info(env)}")
    c = TcpClient(tcp_port)
    c.echo(b"x" * 100)
    c.close()
    route = world.route_of(tcp_port)
    e = wait_log(world.log, lambda e: e.get("route") == route, f"for route {route}")
    check(re.fullmatch(r"127\.0\.0\.1:\d+", e.get("ula") or "") and isinstance(e.get("ucid"), int)
          and e.get("uh") == t1.hostport, f"the TCP tunnel's upstream connection: {e}")


@_test
def tcp_idle_timeout_and_duration(env):
    """DestinationRule connectionPool.tcp: idleTimeout 1s closes a quiet tunnel
    after about a second and leaves one that talks every 300 ms; a service with
    maxConnectionDuration 2s has its tunnel closed after about 2 s however busy."""
    isthmus_only("connectionPool.tcp")
    bq = tcp_backend(env, "q", "127.0.0.2")
    bd = tcp_backend(env, "d", "127.0.0.3")
    world = World(env)
    world.dr(world.service("quiet.tcp.internal", [bq]), ["connectionPool:", "  tcp: {idleTimeout: 1s}"])
    world.dr(world.service("busy.tcp.internal", [bd]), ["connectionPool:", "  tcp: {maxConnectionDuration: 2s}"])
    pq = world.tcp([("quiet.tcp.internal", None)])
    pd = world.tcp([("busy.tcp.internal", None)])
    world.start()
    # Talking every 300 ms for 2.5 s: never idle for 1 s.
    c = TcpClient(pq)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 2.5:
        c.echo(b"tick")
        last = time.monotonic()
        time.sleep(0.3)
    # Then quiet: closed about 1 s after the last echo (counted from it: the
    # loop's last sleep is part of the quiet; from the loop's end, 0.7 s
    # fell 0.3 ms short on a busy machine).
    waited = time.monotonic() - last
    after = c.closed_within(6)
    quiet = None if after is None else after + waited
    check(quiet is not None and 0.8 <= quiet <= 4.0, f"a quiet tunnel (idleTimeout 1s) closed {quiet} s after its last echo")
    poll(lambda: bq.ctl("stats")["open"] == 0, 5, what="the backend side of the idle tunnel to close")
    # Busy: an echo every 200 ms until the proxy closes it.
    c = TcpClient(pd)
    t0 = time.monotonic()
    closed = None
    while time.monotonic() - t0 < 8:
        try:
            c.echo(b"busy")
        except (OSError, EOFError, TestFailure):
            closed = time.monotonic() - t0
            break
        time.sleep(0.2)
    check(closed is not None and 1.7 <= closed <= 5.0,
          f"a busy tunnel (maxConnectionDuration 2s) closed after {closed} s, want about 2")
    for flag, svc, b in (("flag_idle", "quiet.tcp.internal", bq), ("flag_duration", "busy.tcp.internal", bd)):
        wait_log(world.log, lambda e: e.get(NAMES["log_upstream"]) == upstream_of(svc, b) and
                 NAMES[flag] in str(e.get(NAMES["log_flags"])), f"to {upstream_of(svc, b)} flagged {NAMES[flag]}")


def keepalive_timers(backend):
    """The keepalive timers ('keepalive,6.9sec,0') of the established sockets whose
    peer is backend (the proxy's upstream side: its address and port, as another
    process may use the same port on another address), from ss."""
    p = subprocess.run(["ss", "-tnoH", "state", "established", "dst", backend.hostport],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=10)
    text = p.stdout.decode()
    return [l for l in text.splitlines() if l.strip()], re.findall(r"timer:\((keepalive,[^)]*)\)", text)


@_test
def tcp_keepalive(env):
    """DestinationRule connectionPool.tcp.tcpKeepalive {time: 7s, interval: 2s,
    probes: 3}: the proxy's socket to the backend has a keepalive timer of at most
    7 s; a service without tcpKeepalive gets none (Istio sets SO_KEEPALIVE only
    when asked)."""
    isthmus_only("tcpKeepalive")
    if not have("ss"):
        raise Skip("ss (iproute2) is not installed")
    bk = tcp_backend(env, "k", "127.0.0.2")
    bn = tcp_backend(env, "n", "127.0.0.3")
    world = World(env)
    world.dr(world.service("ka.tcp.internal", [bk]),
             ["connectionPool:", "  tcp: {tcpKeepalive: {time: 7s, interval: 2s, probes: 3}}"])
    world.service("noka.tcp.internal", [bn])
    pk = world.tcp([("ka.tcp.internal", None)])
    pn = world.tcp([("noka.tcp.internal", None)])
    world.start()
    ck, cn = TcpClient(pk), TcpClient(pn)
    lines, timers = keepalive_timers(bk)
    check(len(lines) == 1 and len(timers) == 1, f"the proxy's socket to the keepalive backend: {lines}")
    secs = float(re.search(r"keepalive,([\d.]+)(m?s)", timers[0]).group(1))
    check(secs <= 7.0, f"keepalive timer {timers[0]}, want <= 7 s")
    lines, timers = keepalive_timers(bn)
    check(len(lines) == 1 and not timers, f"the socket to the backend without tcpKeepalive: {lines}")
    ck.close()
    cn.close()


@_test
def tcp_max_connections(env):
    """connectionPool.tcp.maxConnections 2: two tunnels open, a third connection
    is closed without reaching the backend (access log flag UO); once one tunnel
    ends, a new connection is carried."""
    isthmus_only("connectionPool.tcp.maxConnections")
    world, (t1,), port = tcp_world(env, policy=["connectionPool:", "  tcp: {maxConnections: 2}"])
    a, b = TcpClient(port), TcpClient(port)
    check(a.greeting == b.greeting == "t1", "two tunnels within the limit")
    c = TcpClient(port, greet=False)
    after = c.closed_within(5)
    check(after is not None and c.buf == b"", f"a third tunnel over maxConnections 2: closed={after} got {c.buf!r}")
    c.close()
    check(t1.ctl("stats")["accepted"] == 2, f"the backend accepted {t1.ctl('stats')['accepted']}, want 2")
    wait_log(world.log, lambda e: NAMES["flag_overflow"] in str(e.get(NAMES["log_flags"], "")),
             f"flagged {NAMES['flag_overflow']}")
    a.close()

    def again():
        d = TcpClient(port, greet=False, timeout=3)
        try:
            return d.line() == "t1"
        except (EOFError, OSError):
            return False
        finally:
            d.close()

    poll(again, 5, interval=0.2, what="a new tunnel once one of the two ended")
    b.close()


# =========================================================================== TLS passthrough


def pass_world(env, routes_of, n=2, extra=None, workers=2):
    """Backends pa, pb, ... (127.0.0.2, .3, ...) with certificates of their own CA
    ("backend-ca", SANs DNS:*.pass.test), each the only endpoint of its service
    pX.tls.internal; routes_of(hosts) gives the TLS server's routes. Returns
    (world, backends, port, pki)."""
    pki = Pki(env)
    bs = []
    for i in range(n):
        name = "p" + "abcdefgh"[i]
        crt = pki.leaf(name, ["DNS:*.pass.test"], key="ec", ca="backend-ca")
        bs.append(tcp_backend(env, name, f"127.0.0.{2 + i}", cert=crt))
    world = World(env, workers=workers)
    hosts = [world.service(f"{b.name}.tls.internal", [b], protocol="TLS") for b in bs]
    port = world.tls(routes_of(hosts))
    if extra:
        extra(world, hosts)
    world.start()
    return world, bs, port, pki


@_test
def tls_tunnel_connect(env):
    """A TLS-passthrough route through a DestinationRule's tunnel: the
    ClientHello isthmus read for its SNI goes through the CONNECT proxy to the
    target after the proxy's 200, and the client talks TLS to the backend
    itself (its certificate, its greeting naming the SNI)."""
    pki = Pki(env)
    pa = tcp_backend(env, "pa", "127.0.0.3", cert=pki.leaf("pa", ["DNS:*.pass.test"], key="ec", ca="backend-ca"))
    proxy = connect_proxy(env, "127.0.0.2")
    world = World(env)
    host = world.service("egress.proxy.internal", [proxy], protocol="TLS")
    world.dr(host, [f"tunnel: {{targetHost: 127.0.0.3, targetPort: {pa.port}}}"])
    port = world.tls([(["a.pass.test"], [(host, None)], None)])
    world.start()
    ctx = tls_client_ctx(pki.ca("backend-ca"))
    check(greet_of(TlsClient(port, "a.pass.test", ctx)) == "pa sni=a.pass.test", "TLS through the proxy")
    st = proxy.ctl("stats")
    check(st["tunnels"] == 1 and st["heads"][0].startswith(f"CONNECT 127.0.0.3:{pa.port} HTTP/1.1\r\n"),
          f"what the proxy got: {st}")


@_test
def tls_passthrough_s_client(env):
    """openssl s_client -servername reaches the backend its SNI routes to (an
    exact sniHost, and one a wildcard sniHost covers), sees that backend's
    certificate (verified against the backends' CA, which isthmus
    has never seen) and talks to it: TLS is not terminated."""
    world, (pa, pb), port, pki = pass_world(env, lambda h: [(["a.pass.test"], [(h[0], None)], None),
                                                            (["b.pass.test", "*.wild.test"], [(h[1], None)], None)])
    for sni, b in (("a.pass.test", pa), ("b.pass.test", pb), ("x.wild.test", pb)):
        out = s_client_echo(f"127.0.0.1:{port}", sni, pki.ca("backend-ca"))
        check(f"CN = {b.name}" in out and "Verify return code: 0 (ok)" in out,
              f"s_client -servername {sni}: not {b.name}'s certificate, verified:\n{out}")
        check(f"{b.name} sni={sni}" in out and "ping-through" in out,
              f"s_client -servername {sni}: no greeting or echo from {b.name}:\n{out}")
        c = TlsClient(port, sni, tls_client_ctx(pki.ca("backend-ca")))
        check(c.sock.getpeercert(binary_form=True) == der_of(b.cert[0]), f"{sni}: the certificate is not {b.name}'s")
        c.echo(os.urandom(1 << 20))
        c.close()


def web_service_entry(port):
    """The ServiceEntry of web.test.internal, the test upstream on 127.0.0.4's port."""
    return ("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: web}\nspec:\n"
            "  hosts: [web.test.internal]\n  ports: [{number: 80, name: http, protocol: HTTP}]\n  resolution: STATIC\n"
            f"  endpoints:\n  - {{address: 127.0.0.4, ports: {{http: {port}}}}}\n")


def https_get_x(port, ctx, sni="www.term.test"):
    """GET /x over TLS with sni through port: (the server's DER certificate, the whole answer)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with ctx.wrap_socket(raw, server_hostname=sni) as s:
        cert = s.getpeercert(binary_form=True)
        s.sendall(f"GET /x HTTP/1.1\r\nHost: {sni}\r\nConnection: close\r\n\r\n".encode())
        data, end = read_to_end(s)
    check(end == "the end", f"GET /x with SNI {sni}: {end} after {data[:100]!r}")
    return cert, data


@_test
def tls_passthrough_beside_https(env):
    """One port, two Gateway servers: PASSTHROUGH for a.pass.test and HTTPS
    (SIMPLE, isthmus's own certificate) for www.term.test. Each SNI gets its own
    certificate: the backend's through the tunnel, isthmus's where it
    terminates (and answers HTTP)."""
    isthmus_only("passthrough and HTTPS servers on one port")
    pki = Pki(env)
    crt = pki.leaf("pa", ["DNS:a.pass.test"], key="ec", ca="backend-ca")
    pa = tcp_backend(env, "pa", "127.0.0.2", cert=crt)
    web = env.upstream(["127.0.0.4:0=web"], name="web")["web"]
    gwc = pki.leaf("isthmus-gw", ["DNS:www.term.test"], key="ec")
    world = World(env)
    world.service("pa.tls.internal", [pa], protocol="TLS")
    port = world.tls([(["a.pass.test"], [("pa.tls.internal", None)], None)])
    world.extra_servers.append(f"  - port: {{number: {port}, name: https-{port}, protocol: HTTPS}}\n"
                               f"    hosts: [www.term.test]\n"
                               f"    tls: {{mode: SIMPLE, serverCertificate: {gwc[0]}, privateKey: {gwc[1]}}}\n")
    world.extra_docs += [
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: term}\nspec:\n"
        "  hosts: [www.term.test]\n  gateways: [gw]\n  http:\n  - route: [{destination: {host: web.test.internal}}]\n",
        web_service_entry(web)]
    world.start()
    out = s_client_echo(f"127.0.0.1:{port}", "a.pass.test", pki.ca("backend-ca"))
    check("CN = pa" in out and "pa sni=a.pass.test" in out, f"passthrough SNI on the shared port:\n{out}")
    cert, data = https_get_x(port, tls_client_ctx(pki.ca()))
    check(cert == der_of(gwc[0]), "www.term.test: not isthmus's certificate")
    check(data.startswith(b"HTTP/1.1 200") and b"x-upstream: web" in data.lower(),
          f"HTTPS on the shared port: {data[:300]!r}")


@_test
def tls_terminated_tcp(env):
    """Gateway servers of protocol TLS whose tls.mode terminates (SIMPLE,
    MUTUAL), beside an HTTPS server on one port, as Istio's gateway builds them
    (buildGatewayNetworkFiltersFromTCPRoutes): the SNI picks the server, TLS
    ends here with the server's certificate (ALPN h2 for a client offering
    it, as Istio's gateway offers h2 and http/1.1 there too), and the
    plaintext goes to the first tcp route of a VirtualService of the server's
    hosts, the backend's greeting and 1 MiB of echo through it, its end a half
    close (the client sends on after the close_notify); an SNI no
    server names, a server with no route, and a MUTUAL server's client without
    a certificate are refused at the handshake, a client certificate an
    AuthorizationPolicy denies (principals) after it, before any upstream
    connection; the access log has the SNI, route and endpoint; explain says
    what takes the connection."""
    isthmus_only("TLS terminated for tcp routes")
    pki = Pki(env)
    t1 = tcp_backend(env, "t1", "127.0.0.2")
    t2 = tcp_backend(env, "t2", "127.0.0.3")
    web = env.upstream(["127.0.0.4:0=web"], name="web")["web"]
    gwc = pki.leaf("isthmus-gw", ["DNS:db.term.test", "DNS:mq.term.test", "DNS:www.term.test",
                                  "DNS:none.term.test"], key="ec")
    client = pki.leaf("client", ["URI:spiffe://term.test/ns/a/sa/client"], ca="client-ca")
    other = pki.leaf("other", ["URI:spiffe://term.test/ns/a/sa/other"], ca="client-ca")
    world = World(env)
    world.service("t1.tcp.internal", [t1])
    world.service("t2.tcp.internal", [t2])
    port = free_port()
    simple = f"tls: {{mode: SIMPLE, serverCertificate: {gwc[0]}, privateKey: {gwc[1]}}}"
    mutual = (f"tls: {{mode: MUTUAL, serverCertificate: {gwc[0]}, privateKey: {gwc[1]}, "
              f"caCertificates: {pki.ca('client-ca')}}}")
    for i, (host, tls, proto) in enumerate((("db.term.test", simple, "TLS"), ("mq.term.test", mutual, "TLS"),
                                           ("none.term.test", simple, "TLS"), ("www.term.test", simple, "HTTPS"))):
        world.extra_servers.append(f"  - port: {{number: {port}, name: s{i}-{port}, protocol: {proto}}}\n"
                                   f"    hosts: [{host}]\n    {tls}\n")
    vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {n}}}\nspec:\n  hosts: [{h}]\n"
    world.extra_docs += [
        vs.format(n="db", h="db.term.test") + "  gateways: [gw]\n  tcp:\n"
        f"  - match: [{{port: {port + 1}}}]\n    route: [{{destination: {{host: t2.tcp.internal}}}}]\n"
        "  - route: [{destination: {host: t1.tcp.internal}}]\n",
        vs.format(n="mq", h="mq.term.test") + "  gateways: [gw]\n  tcp:\n"
        "  - route: [{destination: {host: t2.tcp.internal}}]\n",
        vs.format(n="www", h="www.term.test") + "  gateways: [gw]\n  http:\n"
        "  - route: [{destination: {host: web.test.internal}}]\n",
        web_service_entry(web),
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-other}\nspec:\n"
        "  action: DENY\n  rules:\n  - from: [{source: {principals: [term.test/ns/a/sa/other]}}]\n"]
    conf = world.write()
    rc, out = env.check_config(conf)
    check(rc == 0 and re.search(r"warning: .*spec\.servers\[2\].*no tcp route", out),
          f"isthmus -c: exit {rc}, want 0 and a warning for the server without a route: {out}")
    world.start()
    ctx = tls_client_ctx(pki.ca())
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    c = TlsClient(port, "db.term.test", ctx)
    check(c.greeting == "t1" and c.sock.getpeercert(binary_form=True) == der_of(gwc[0]),
          f"db.term.test: greeting {c.greeting!r}, isthmus's certificate: "
          f"{c.sock.getpeercert(binary_form=True) == der_of(gwc[0])}")
    check(c.sock.selected_alpn_protocol() == "h2", f"ALPN {c.sock.selected_alpn_protocol()!r} on a tcp server")
    a, b, n = pump(c, 1 << 20)
    check(n == 1 << 20 and a == b, f"1 MiB echo over terminated TLS: {n} bytes back, intact {a == b}")
    c.close()
    # The backend ends its side first: the client gets a close_notify, and
    # what it sends after still reaches the backend (a half close).
    t1.ctl("halfclose")
    c = TlsClient(port, "db.term.test", ctx)
    end = c.sock.recv(100)
    try:
        c.sock.sendall(b"x" * 1000)
        c.sock.shutdown(socket.SHUT_WR)
    except OSError as e:
        raise TestFailure(f"after the backend's end ({end!r}) the client could not send on: {e}")
    poll(lambda: t1.ctl("stats")["bytes_in"] == (1 << 20) + 1000, 5,
         what=f"the 1,000 bytes sent after the backend's end at it (got the end {end!r})")
    c.close()
    # The client ends its side right after the handshake, before the
    # upstream is connected: the end reaches the backend once it is, and the
    # backend's greeting the client (the connection was cut, nothing passed).
    for _ in range(3):
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        with ctx.wrap_socket(raw, server_hostname="db.term.test") as s:
            socket.socket.shutdown(s, socket.SHUT_WR)  # the FIN, the TLS session kept for reading
            got = b""
            while (d := s.recv(100)):
                got += d
        check(got == b"t1\n", f"the backend's greeting after the client's early end: {got!r}")
    t1.ctl("normal")
    tls_refused(port, "mq.term.test", ctx)  # MUTUAL: no client certificate
    mctx = tls_client_ctx(pki.ca())
    mctx.load_cert_chain(*client)
    check(greet_of(TlsClient(port, "mq.term.test", mctx)) == "t2", "mq.term.test with a client certificate")
    octx = tls_client_ctx(pki.ca())
    octx.load_cert_chain(*other)
    tls_refused(port, "mq.term.test", octx)  # the policy denies its principal
    check(t2.ctl("stats")["accepted"] == 1, f"t2 reached by a denied connection: {t2.ctl('stats')}")
    tls_refused(port, "none.term.test", ctx)  # its server has no route: Istio makes no filter chain
    tls_refused(port, "other.term.test", ctx)
    _, data = https_get_x(port, ctx)
    check(data.startswith(b"HTTP/1.1 200") and b"x-upstream: web" in data.lower(),
          f"HTTPS beside the TLS servers: {data[:300]!r}")
    e = wait_log(world.log, lambda e: e.get(NAMES["log_sni"]) == "db.term.test" and e.get(NAMES["log_in"]) == 1 << 20,
                 "with SNI db.term.test and the 1 MiB echoed")
    check(e.get(NAMES["log_route"]) == route_name("tcp", "db", 1) and
          e.get(NAMES["log_upstream"]) == upstream_of("t1.tcp.internal", t1),
          f"the terminated connection's line: {e}")
    out = ctl_cmd(env.path("ctl.sock"), "show routes")
    check(f"tcp route {route_name('tcp', 'db', 1)} server=" in out, f"show routes lacks the server's tcp route: {out}")
    out = ctl_cmd(env.path("ctl.sock"), f"explain tls db.term.test {port}")
    check("TLS server" in out and "terminated here" in out and route_name("tcp", "db", 1) in out and
          "t1.tcp.internal" in out, f"explain tls db.term.test: {out}")


@_test
def tls_tunnel_keyupdate_flood_no_abort(env):
    """A TLS client of a tunnel floods KeyUpdate requests without reading
    (tests/keyupdate_flood, trickle) towards a backend that neither reads nor
    writes, then goes with its answers unread (a reset), twice after the
    backend ended its side: the TLS session's own records (the KeyUpdate
    answers) fail to go while the tunnel has no send of its own to that side.
    That failure aborted the worker (BUG in worker/tunnel.c), every connection
    of it lost; it ends that tunnel alone now, and the worker serves on."""
    isthmus_only("the worker's own failure")
    pki = Pki(env)
    t1 = tcp_backend(env, "t1", "127.0.0.2", greet=False)
    gwc = pki.leaf("isthmus-gw", ["DNS:ku.example.com"], key="ec")
    world = World(env, workers=1)
    world.service("t1.tcp.internal", [t1])
    port = free_port()
    world.extra_servers.append(f"  - port: {{number: {port}, name: tls-{port}, protocol: TLS}}\n"
                               f"    hosts: [ku.example.com]\n"
                               f"    tls: {{mode: SIMPLE, serverCertificate: {gwc[0]}, privateKey: {gwc[1]}}}\n")
    world.extra_docs.append("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: ku}\n"
                            "spec:\n  hosts: [ku.example.com]\n  gateways: [gw]\n  tcp:\n"
                            "  - route: [{destination: {host: t1.tcp.internal}}]\n")
    world.start()
    (wpid,) = env.workers()
    t1.ctl("pause")
    for i in range(4):  # the answers must be on their way when the reset comes: not every time
        flood, line = ku_flood(env, port, "trickle", 200_000, 2)
        if i % 2:
            # The backend's end first, the answers unsent: the close_notify
            # and the FIN wait behind them (the FIN used to cut them).
            t1.ctl("close")
        ku_end(flood)
    t1.ctl("resume")
    # A half close, then the client's KeyUpdates: OpenSSL answers them after
    # our close_notify; that answer, sent after the FIN, failed and cut the
    # tunnel the client still sent on (its bytes lost). Dropped now, as
    # BoringSSL writes nothing once its write side is shut.
    t1.ctl("halfclose")  # no greeting: the backend's FIN at once, then it reads
    flood, line = ku_flood(env, port, "trickle", 300, 5)
    ku_end(flood)
    check(line == "sent 300 unsent 0\n", f"300 KeyUpdates and bytes after the backend's end: {line!r}")
    t1.ctl("normal")
    ctx = tls_client_ctx(pki.ca())
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    with ctx.wrap_socket(raw, server_hostname="ku.example.com") as s:
        s.sendall(b"after the flood\n")
        echo = s.recv(100)
    check(env.log_count("BUG at") == 0 and env.workers() == [wpid] and echo == b"after the flood\n",
          f"after the flood ({line.strip()}): {env.log_count('BUG at')} BUG lines, workers {env.workers()} "
          f"(was [{wpid}]), echo {echo!r}")
    poll(lambda: json.loads(ctl_cmd(env.path("ctl.sock"), "show info json"))["connections_active"] == 0, 10,
         what="no connection left open")


@_test
def tls_upstream_reset_while_stalled(env):
    """An upstream over TLS (DestinationRule tls SIMPLE) that sends a response
    slowly with a KeyUpdate request before each byte and never reads: the
    worker's answers pile up unread and it stops reading that upstream (its
    own records wait); then the upstream resets. The reset used to fail only
    the send, unseen by the stalled reader: the response hung until the
    stream idle timeout (SI, 30 s here). It ends the response at once now (UC)."""
    isthmus_only("the worker's TLS reads")
    # Small TCP buffers, so that the answers pile up within seconds.
    ns = make_netns(env, {"net.ipv4.tcp_wmem": "4096 16384 16384", "net.ipv4.tcp_rmem": "4096 16384 16384"})
    with in_netns(env, ns):
        stalled_upstream_reset_in(env)


def stalled_upstream_reset_in(env):
    pki = Pki(env)
    crt = pki.leaf("ku-up", ["DNS:ku.up.test"], key="ec")
    ports, _ = spawn_tool(env, "ku-upstream", [os.path.join(env.build, "tests", "keyupdate_upstream"), "127.0.0.2",
                                               "0", crt[0], crt[1], "4"])
    gw = free_port()
    dr = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ku}\nspec:\n"
          f"  host: ku.up.test\n  trafficPolicy:\n    tls: {{mode: SIMPLE, caCertificates: {pki.ca()}}}\n")
    env.start_gateway(env.write("isthmus.yaml", docs(
        appliance(env, workers=1, timeouts={"streamIdle": "30s", "upstreamResponse": "30s", "idle": "60s"}),
        gateway(gw), virtual_service("ku", ["*"], "  - route: [{destination: {host: ku.up.test}}]\n"),
        service_entry("ku", "ku.up.test", [{"address": "127.0.0.2", "port": ports["listening on"]}]), dr)), gw)
    t0 = time.monotonic()
    with Conn("127.0.0.1", gw, timeout=40) as c:
        c.send(b"GET /ku HTTP/1.1\r\nHost: ku.up.test\r\n\r\n")
        got = c.buf
        try:
            while (d := c.sock.recv(65536)):
                got += d
        except OSError:
            pass
    took = time.monotonic() - t0
    check(got.startswith(b"HTTP/1.1 200") and took < 15,
          f"the response of an upstream reset after 4 s ended after {took:.1f} s (head {got[:15]!r}), want at once")


@_test
def tls_weighted(env):
    """A tls route with weights 80/20: 2,000 handshakes through it split within 3
    points, each backend seeing the client's SNI."""
    world, bs, port, pki = pass_world(env, lambda h: [(["w.pass.test"], [(h[0], 80), (h[1], 20)], None)])
    ctx = tls_client_ctx(pki.ca("backend-ca"))
    counts = tally(lambda i: greet_of(TlsClient(port, "w.pass.test", ctx)), 2000)
    check_shares(counts, {"pa sni=w.pass.test": 80, "pb sni=w.pass.test": 20}, 2000, "tls route 80/20")


@_test
def tls_sni_unmatched_closed(env):
    """A ClientHello without SNI, one with an SNI no route names, and bytes that
    are not TLS at all are closed without reaching a backend; the access log
    records the first two (flag NR); a matching SNI still works."""
    world, (pa, pb), port, pki = pass_world(env, lambda h: [(["a.pass.test"], [(h[0], None)], None)],
                                            extra=None)
    ctx = tls_client_ctx(pki.ca("backend-ca"))
    tls_refused(port, None, ctx)
    tls_refused(port, "nope.pass.test", ctx)
    with Conn("127.0.0.1", port, timeout=5) as c:
        c.send(b"GET / HTTP/1.1\r\nHost: a.pass.test\r\n\r\n")
        check(c.closed_by_peer(8) and b"HTTP/" not in c.buf, f"plain HTTP to a passthrough port: {c.buf[:200]!r}")
    check(pa.ctl("stats")["accepted"] == 0 and pb.ctl("stats")["accepted"] == 0,
          "a refused ClientHello reached a backend")
    check(greet_of(TlsClient(port, "a.pass.test", ctx)) == "pa sni=a.pass.test", "the matching SNI")
    if standin():
        return
    flag = NAMES["flag_no_route"]

    def refused_with(sni_values):
        return lambda e: flag in str(e.get(NAMES["log_flags"])) and e.get(NAMES["log_sni"]) in sni_values

    wait_log(world.log, refused_with(("nope.pass.test",)), f"flagged {flag} with SNI nope.pass.test")
    wait_log(world.log, refused_with(("-", None, "")), f"flagged {flag} without SNI")
    # The passthrough tunnel that did reach pa has its line too.
    e = wait_log(world.log, lambda e: e.get(NAMES["log_sni"]) == "a.pass.test", "with SNI a.pass.test")
    check(e.get(NAMES["log_route"]) == world.route_of(port) and
          e.get(NAMES["log_upstream"]) == upstream_of("pa.tls.internal", pa),
          f"the passthrough tunnel's route and endpoint: {e}")
    check(isinstance(e.get(NAMES["log_in"]), int) and e[NAMES["log_in"]] > 200 and e.get(NAMES["log_out"], 0) > 200,
          f"the passthrough tunnel's bytes (a ClientHello in, a handshake and a greeting out): {e}")


@_test
def tls_match_port_and_subnets(env):
    """tls route matches beyond sniHosts: destinationSubnets (the address the
    client connected to: servers bound to 127.0.0.5 and 127.0.0.6) and port (of
    three passthrough servers). A match that does not hold closes its SNI's
    connections: as in Istio, an SNI host belongs to the first match naming it on
    a port (Envoy refuses two filter chains with one server name), so no later
    route takes it."""
    isthmus_only("destinationSubnets and server binds")
    p5, p6, p1 = free_port("127.0.0.5"), free_port("127.0.0.6"), free_port()
    pki = Pki(env)
    bs = []
    for i, name in enumerate(("pa", "pb", "pc")):
        crt = pki.leaf(name, ["DNS:*.pass.test"], key="ec", ca="backend-ca")
        bs.append(tcp_backend(env, name, f"127.0.0.{2 + i}", cert=crt))
    world = World(env)
    h = [world.service(f"{b.name}.tls.internal", [b], protocol="TLS") for b in bs]
    hosts = ["s.pass.test", "p.pass.test", "o.pass.test"]
    # The routes, once (the VirtualService "tls" gathers them); every server takes all three hosts.
    world.tls([(["s.pass.test"], [(h[0], None)], {"destinationSubnets": ["127.0.0.5/32"]}),
               (["p.pass.test"], [(h[2], None)], {"port": p1}),
               (["o.pass.test"], [(h[1], None)], {})], port=p5, bind="127.0.0.5", hosts=hosts)
    world.tls([], port=p6, bind="127.0.0.6", hosts=hosts)
    world.tls([], port=p1, hosts=hosts)
    world.start()
    ctx = tls_client_ctx(pki.ca("backend-ca"))
    for addr, port, sni, want in (("127.0.0.5", p5, "s.pass.test", "pa"), ("127.0.0.6", p6, "s.pass.test", None),
                                  ("127.0.0.1", p1, "p.pass.test", "pc"), ("127.0.0.5", p5, "p.pass.test", None),
                                  ("127.0.0.6", p6, "o.pass.test", "pb"), ("127.0.0.1", p1, "o.pass.test", "pb")):
        if want is None:
            tls_refused(port, sni, ctx, addr=addr)
            continue
        got = greet_of(TlsClient(port, sni, ctx, addr=addr))
        check(got == f"{want} sni={sni}", f"SNI {sni} to {addr}:{port} went to {got!r}, want {want}")


@_test
def tls_subnets_on_dual_stack_listener(env):
    """destinationSubnets on a dual-stack (::) server: the address an IPv4
    client connected to is IPv4 (127.0.0.5, not ::ffff:127.0.0.5), as its peer
    is, so an IPv4 subnet matches it; it never matched, and the connection was
    closed."""
    isthmus_only("destinationSubnets and server binds")
    port = free_port()
    pki = Pki(env)
    crt = pki.leaf("pa", ["DNS:*.pass.test"], key="ec", ca="backend-ca")
    b = tcp_backend(env, "pa", "127.0.0.2", cert=crt)
    world = World(env)
    h = world.service("pa.tls.internal", [b], protocol="TLS")
    world.tls([(["s.pass.test"], [(h, None)], {"destinationSubnets": ["127.0.0.5/32"]})], port=port, bind="\"::\"",
              hosts=["s.pass.test"])
    world.start()
    ctx = tls_client_ctx(pki.ca("backend-ca"))
    got = greet_of(TlsClient(port, "s.pass.test", ctx, addr="127.0.0.5"))
    check(got == "pa sni=s.pass.test", f"an IPv4 client of a :: server, to 127.0.0.5: {got!r}")
    tls_refused(port, "s.pass.test", ctx, addr="127.0.0.6")


@_test
def tls_auto_passthrough_refused(env):
    """A Gateway server with tls.mode AUTO_PASSTHROUGH is refused by isthmus -c,
    with the place of the mode and a message naming it."""
    isthmus_only("configuration checks")
    world = World(env)
    b = Backend("pa", "127.0.0.2", 9443)
    world.service("pa.tls.internal", [b], protocol="TLS")
    world.tls([(["a.pass.test"], [("pa.tls.internal", None)], None)], mode="AUTO_PASSTHROUGH")
    conf = world.write()
    rc, out = env.check_config(conf)
    check(rc == 1, f"isthmus -c on AUTO_PASSTHROUGH exited {rc}, want 1: {out}")
    m = re.search(re.escape(conf) + r":(\d+):(\d+): error: .*AUTO_PASSTHROUGH", out)
    check(m, f"no '{conf}:LINE:COL: error: ...AUTO_PASSTHROUGH...' in: {out!r}")
    line = open(conf).read().split("\n")[int(m.group(1)) - 1]
    check("AUTO_PASSTHROUGH" in line, f"the error points at line {m.group(1)} ({line!r}), not at the mode")


# =========================================================================== failover and ejection


def failover_and_ejection(env, kind):
    """Endpoints a (its port refusing connections) and b of one service, twice:
    without outlier detection (listener 1) every connection still reaches b, a
    connect failure trying the other endpoint; with outlierDetection
    (consecutive5xxErrors 1, listener 2) a is ejected, and stays out of traffic
    when it listens again, while listener 1's service sends it connections."""
    pki = Pki(env) if kind == "tls" else None
    bs = []
    for i, name in enumerate(("a", "b")):
        crt = pki.leaf(name, ["DNS:*.pass.test"], key="ec", ca="backend-ca") if pki else None
        bs.append(tcp_backend(env, name, f"127.0.0.{2 + i}", cert=crt))
    a, b = bs
    a.ctl("refuse")
    world = World(env)
    proto = "TLS" if kind == "tls" else "TCP"
    plain = world.service(f"plain.{kind}.internal", bs, protocol=proto)
    od = world.service(f"od.{kind}.internal", bs, protocol=proto)
    world.dr(od, ["outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 60s, "
                  "maxEjectionPercent: 100}"])
    if kind == "tls":
        p1 = world.tls([(["f.pass.test"], [(plain, None)], None)])
        p2 = world.tls([(["f.pass.test"], [(od, None)], None)])
        ctx = tls_client_ctx(pki.ca("backend-ca"))

        def connect(p):
            return greet_of(TlsClient(p, "f.pass.test", ctx)).split()[0]
    else:
        p1 = world.tcp([(plain, None)])
        p2 = world.tcp([(od, None)])

        def connect(p):
            return greet_of(TcpClient(p))

    world.start()
    f0 = None if standin() else metric_of(world.admin, "m_connect_failures")
    counts = tally(lambda i: connect(p1), 20, threads=1)
    check(counts == {"b": 20}, f"with a refusing connections, 20 {kind} connections went {counts}")
    if standin():
        return
    check(metric_of(world.admin, "m_connect_failures") > f0,
          f"{NAMES['m_connect_failures']} did not move: a was never tried, so failover was not exercised")
    key_a = f"{od}|{a.hostport}"

    def ejected():
        check(connect(p2) == "b", "a connection through the outlier-detected service")
        eps = {e["key"]: e for e in endpoints_json(env)}
        check(key_a in eps, f"show endpoints lacks {key_a}: {sorted(eps)}")
        return eps[key_a]["ejected"]

    poll(ejected, 10, interval=0.2, what=f"{key_a} to be ejected after its connect failures")
    a.ctl("accept")
    counts = tally(lambda i: connect(p2), 20, threads=1)
    check(counts == {"b": 20}, f"an ejected endpoint got connections: {counts}")
    poll(lambda: connect(p1) == "a", 10, interval=0.05, what="the service without outlier detection to reach a again")


@_test
def tcp_all_endpoints_down(env):
    """A tcp route whose only endpoint refuses connections: the client's
    connection is closed without a byte (after the connect attempts), logged with
    UF and counted as refused; the gateway goes on serving."""
    world, (t1,), port = tcp_world(env)
    t1.ctl("refuse")
    r0 = None if standin() else metric_of(world.admin, "m_refused")
    c = TcpClient(port, greet=False)
    after = c.closed_within(8)
    check(after is not None and c.buf == b"", f"a tunnel to a refusing endpoint: closed={after} got {c.buf!r}")
    c.close()
    t1.ctl("accept")
    check(greet_of(TcpClient(port)) == "t1", "a tunnel once the endpoint listens again")
    if standin():
        return
    wait_log(world.log, lambda e: NAMES["flag_connect"] in str(e.get(NAMES["log_flags"])),
             f"flagged {NAMES['flag_connect']}")
    check(metric_of(world.admin, "m_refused") >= r0 + 1, f"{NAMES['m_refused']} did not count the refused tunnel")


@_test
def tcp_failover_and_ejection(env):
    """failover_and_ejection for TCP routes."""
    failover_and_ejection(env, "tcp")


@_test
def tls_failover_and_ejection(env):
    """failover_and_ejection for TLS passthrough routes."""
    failover_and_ejection(env, "tls")


# =========================================================================== explain


@_test
def tunnel_explain(env):
    """explain for an SNI on a passthrough port names its tls route and weighted
    destinations with their endpoints, for a TCP port its tcp route; an SNI that
    no route takes is said to be closed (NR)."""
    isthmus_only("explain")
    world, (pa, pb), port, pki = pass_world(
        env, lambda h: [(["a.pass.test"], [(h[0], 70), (h[1], 30)], None)],
        extra=lambda w, h: w.tcp([(h[1], None)]))
    tport = world.listeners[-1]["port"]
    rc, out = isthmusctl(env, "explain", *explain_tls_args("a.pass.test", port))
    check(rc == 0 and world.route_of(port) in out, f"explain for SNI a.pass.test: rc {rc}\n{out}")
    check("pa.tls.internal" in out and "pb.tls.internal" in out and pa.hostport in out,
          f"explain for SNI a.pass.test names neither the destinations nor the endpoints:\n{out}")
    rc, out = isthmusctl(env, "explain", *explain_tcp_args(tport))
    check(rc == 0 and world.route_of(tport) in out and pb.hostport in out,
          f"explain for TCP port {tport}: rc {rc}\n{out}")
    rc, out = isthmusctl(env, "explain", *explain_tls_args("nope.pass.test", port))
    check(NAMES["explain_closed"] in out and "#tls" not in out, f"explain for an SNI no route takes:\n{out}")


# =========================================================================== reload and stop


def open_tunnels(env, world, ports, pki=None):
    """A WebSocket (background client: waits for file "go", echoes, then waits for
    the close), a TCP tunnel and, with pki, a TLS one. Returns (ws background, go
    path, [TcpClient, ...])."""
    ready, go = env.path("ready"), env.path("go")
    b = ws_bg(env, f"ws://127.0.0.1:{ports['http']}/",
              [{"op": "echo", "count": 3, "size": 100}, {"op": "wait_file", "path": go, "timeout": 30},
               {"op": "echo", "count": 5, "size": 1000}, {"op": "wait_close", "timeout": 20}],
              ready=ready, timeout=60)
    wait_file(ready, 10, "the WebSocket to open")
    raws = [TcpClient(ports["tcp"])]
    if pki:
        raws.append(TlsClient(ports["tls"], "a.pass.test", tls_client_ctx(pki.ca("backend-ca"))))
    return b, go, raws


def tunnels_world(env, workers=2, drain="3s"):
    need_ws()
    w = ws_backend(env, "w1", "127.0.0.2")
    t = tcp_backend(env, "t1", "127.0.0.3")
    pki = Pki(env)
    p = tcp_backend(env, "pa", "127.0.0.4", cert=pki.leaf("pa", ["DNS:a.pass.test"], key="ec", ca="backend-ca"))
    world = World(env, workers=workers, timeouts={"drain": drain, "idle": "30s"})
    ports = {"http": world.http(world.service("ws.test.internal", [w], protocol="HTTP")),
             "tcp": world.tcp([(world.service("t1.tcp.internal", [t]), None)]),
             "tls": world.tls([(["a.pass.test"], [(world.service("pa.tls.internal", [p], protocol="TLS"), None)],
                                None)])}
    world.start()
    return world, ports, pki, (w, t, p)


def check_drained(b, go, raws, t_event, drain, what):
    """After the event at t_event: every tunnel still carries bytes, then is closed
    by the proxy at about the drain time (drain - 0.5 .. drain + 4 s)."""
    for c in raws:
        c.echo(os.urandom(5000))
    open(go, "w").close()
    for c in raws:
        after = c.closed_within(drain + 8)
        check(after is not None, f"{what}: a tunnel still open {drain + 8} s later")
        at = time.monotonic() - t_event
        check(drain - 0.5 <= at <= drain + 4, f"{what}: a tunnel closed {at:.1f} s after, want about {drain} s (drain)")
    rep = b.result()
    steps = ws_ok(rep, f"the WebSocket across the {what}")
    check(steps[2]["echoed"] == 5 and steps[2]["mismatched"] == 0, f"{what}: WebSocket echo after it: {steps[2]}")
    check(steps[3]["closed"], f"{what}: the WebSocket was not closed at the drain: {steps[3]}")


@_test
def tunnels_reload(env):
    """A reload that replaces the workers (2 -> 1) with a WebSocket, a TCP and a
    TLS tunnel open: new connections go to the new worker at once; the open
    tunnels are left alone (they still carry bytes) until timeouts.drain (3 s),
    then closed, and the old workers exit."""
    isthmus_only("reload")
    world, ports, pki, _ = tunnels_world(env)
    b, go, raws = open_tunnels(env, world, ports, pki)
    world.workers = 1
    world.write()
    base = env.log_count("old workers draining")
    os.kill(env.gateway.pid, signal.SIGHUP)
    t_reload = time.monotonic()
    poll(lambda: env.log_count("old workers draining") > base, 5, what="the reload to replace the workers")
    check(greet_of(TcpClient(ports["tcp"])) == "t1", "a new TCP tunnel after the reload")
    rep = ws_run(f"ws://127.0.0.1:{ports['http']}/", [{"op": "echo", "count": 3, "size": 100}, {"op": "close"}])
    ws_ok(rep, "a new WebSocket after the reload")
    check_drained(b, go, raws, t_reload, 3.0, "reload")
    poll(lambda: len(env.workers()) == 1, 8, what="the old workers to exit after the drain")
    check(env.gateway.alive(), "the master died")


@_test
def tunnels_graceful_stop(env):
    """SIGTERM with a WebSocket, a TCP and a TLS tunnel open: they still carry
    bytes during the drain, are closed at timeouts.drain (3 s), and the master
    exits 0. (The HAProxy stand-in: SIGUSR1, its soft stop, with hard-stop-after
    as the drain.)"""
    world, ports, pki, _ = tunnels_world(env)
    b, go, raws = open_tunnels(env, world, ports, pki)
    os.kill(env.gateway.pid, signal.SIGUSR1 if standin() else signal.SIGTERM)
    t_stop = time.monotonic()
    check_drained(b, go, raws, t_stop, 3.0, "graceful stop")
    try:
        env.gateway.p.wait(timeout=8)
    except subprocess.TimeoutExpired:
        raise TestFailure("master still running 8 s after the drain ended")
    check(env.gateway.p.returncode == 0, f"master exited with {env.gateway.p.returncode}")
