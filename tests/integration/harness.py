# SPDX-License-Identifier: Apache-2.0
"""Integration-test harness for isthmus: processes, ports, configuration, clients.

Python standard library only. Every process is started in its own session
(process group) and torn down by Env.close(), which the runner calls whatever
the test's outcome. Every wait is a bounded poll.
"""

import ctypes
import json
import contextlib
import os
import random
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time


class TestFailure(Exception):
    pass


class Skip(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise TestFailure(msg)


def poll(cond, timeout, interval=0.05, what="condition"):
    """Calls cond() until it returns a true value (returned) or timeout seconds pass."""
    deadline = time.monotonic() + timeout
    last_exc = None
    while True:
        try:
            v = cond()
            if v:
                return v
        except (OSError, TestFailure) as e:
            last_exc = e
        if time.monotonic() >= deadline:
            extra = f" (last error: {last_exc})" if last_exc else ""
            raise TestFailure(f"timed out after {timeout}s waiting for {what}{extra}")
        time.sleep(interval)


_GIVEN_PORTS = set()


def read_head(c, buf=b""):
    """The request head from socket c (and what followed it); (None, b"") at EOF."""
    while b"\r\n\r\n" not in buf:
        d = c.recv(65536)
        if not d:
            return None, b""
        buf += d
    head, rest = buf.split(b"\r\n\r\n", 1)
    return head.decode("latin-1"), rest


def port_open(addr, port):
    """Whether addr:port accepts a connection (within half a second)."""
    try:
        socket.create_connection((addr, port), timeout=0.5).close()
        return True
    except OSError:
        return False


def _claim_port(port):
    """Whether port was not handed out before in this run, now claimed. Tests that
    run side by side (run.py --jobs) share ISM_PORT_REGISTRY, a directory holding
    a file per port handed out; alone, a set of this process's."""
    reg = os.environ.get("ISM_PORT_REGISTRY")
    if reg is None:
        if port in _GIVEN_PORTS:
            return False
        _GIVEN_PORTS.add(port)
        return True
    try:
        os.close(os.open(os.path.join(reg, str(port)), os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        return True
    except FileExistsError:
        return False


def _below_ephemeral():
    """The ports below the kernel's ephemeral range (ip_local_port_range): no
    outgoing connection takes one of them as its source port, so one handed
    out stays free until its test binds it, and after it closes it, as when a
    reload drops a listener and a later one binds it again (with tests side by
    side, another's connection took such a port from the ephemeral range)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            low = int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    return (10000, low) if low > 12000 else None


_PORTS = _below_ephemeral()


def free_port(host="127.0.0.1"):
    """A TCP port that was free a moment ago (bound, then released), below the
    ephemeral range when there is room there, and not handed out before in
    this run: a test asking for two ports must get two."""
    for _ in range(200):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            s.bind((host, random.randrange(*_PORTS) if _PORTS else 0))
            port = s.getsockname()[1]
        except OSError:
            continue  # taken: another
        finally:
            s.close()
        if _claim_port(port):
            return port
    raise TestFailure("no free port that was not handed out already")


# --------------------------------------------------------------------------- HTTP


class Response:
    def __init__(self, status, reason, headers, body, raw_head):
        self.status = status
        self.reason = reason
        self.headers = headers  # list of (lowercased name, value)
        self.body = body
        self.raw_head = raw_head

    def header(self, name, default=None):
        name = name.lower()
        for k, v in self.headers:
            if k == name:
                return v
        return default

    def header_all(self, name):
        name = name.lower()
        return [v for k, v in self.headers if k == name]

    def __repr__(self):
        return f"<Response {self.status} {self.headers!r} body={self.body[:200]!r}>"


class Conn:
    """A raw HTTP/1.1 client over one TCP connection: a real client that lets a
    test send exactly the bytes it wants (pipelining, malformed requests)."""

    def __init__(self, host, port, timeout=10.0, source=None):
        """source: (address, port) to connect from (another 127.x address)."""
        self.sock = socket.create_connection((host, port), timeout=timeout, source_address=source)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""
        self.timeout = timeout

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *a):
        self.close()

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        d = self.sock.recv(65536)
        if not d:
            raise EOFError("connection closed by peer")
        self.buf += d

    def read_head(self):
        while b"\r\n\r\n" not in self.buf:
            check(len(self.buf) < 1 << 20, "response head over 1 MiB")
            self._fill()
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        m = re.match(r"HTTP/1\.[01] (\d{3})(?: (.*))?$", lines[0])
        check(m, f"bad status line {lines[0]!r}")
        headers = []
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers.append((k.strip().lower(), v.strip()))
        return int(m.group(1)), m.group(2) or "", headers, head

    def _read_exact(self, n):
        while len(self.buf) < n:
            self._fill()
        d, self.buf = self.buf[:n], self.buf[n:]
        return d

    def _read_line(self):
        while b"\r\n" not in self.buf:
            check(len(self.buf) < 65536, "chunk size line too long")
            self._fill()
        line, self.buf = self.buf.split(b"\r\n", 1)
        return line

    def read_response(self, method="GET", allow_interim=False):
        """Reads one response. Interim 1xx responses are skipped unless allow_interim."""
        while True:
            status, reason, headers, head = self.read_head()
            if 100 <= status < 200 and not allow_interim:
                continue
            break
        r = Response(status, reason, headers, b"", head)
        if method == "HEAD" or status < 200 or status in (204, 304):
            return r
        te = r.header("transfer-encoding")
        cl = r.header("content-length")
        if te is not None and "chunked" in te.lower():
            parts = []
            while True:
                size = int(self._read_line().split(b";")[0], 16)
                if size == 0:
                    while self._read_line() != b"":
                        pass
                    break
                parts.append(self._read_exact(size))
                check(self._read_exact(2) == b"\r\n", "bad chunk terminator")
            r.body = b"".join(parts)
        elif cl is not None:
            r.body = self._read_exact(int(cl))
        else:
            parts = [self.buf]
            self.buf = b""
            while True:
                d = self.sock.recv(65536)
                if not d:
                    break
                parts.append(d)
            r.body = b"".join(parts)
        return r

    def request(self, method, path, host="test.local", headers=None, body=None):
        self.send(build_request(method, path, host, headers, body))
        return self.read_response(method)

    def closed_by_peer(self, timeout=3.0):
        """True when the peer closes the connection (EOF or reset) within timeout,
        after any bytes still in flight."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            r, _, _ = select.select([self.sock], [], [], max(0.0, deadline - time.monotonic()))
            if not r:
                return False
            try:
                d = self.sock.recv(65536)
            except ConnectionResetError:
                return True
            if not d:
                return True
            self.buf += d
        return False


def build_request(method, path, host="test.local", headers=None, body=None):
    lines = [f"{method} {path} HTTP/1.1"]
    if host is not None:
        lines.append(f"Host: {host}")
    hdrs = list((headers or {}).items()) if isinstance(headers, dict) else list(headers or [])
    if body is not None and not any(k.lower() in ("content-length", "transfer-encoding") for k, _ in hdrs):
        hdrs.append(("Content-Length", str(len(body))))
    for k, v in hdrs:
        lines.append(f"{k}: {v}")
    data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    if body is not None:
        data += body if isinstance(body, bytes) else body.encode()
    return data


def http_get(port, path, host="test.local", headers=None, addr="127.0.0.1", timeout=10.0, method="GET"):
    """One request on a fresh connection."""
    with Conn(addr, port, timeout=timeout) as c:
        return c.request(method, path, host, headers)


# --------------------------------------------------------------------------- processes


class Proc:
    def __init__(self, name, popen, log_path):
        self.name = name
        self.p = popen
        self.log_path = log_path

    @property
    def pid(self):
        return self.p.pid

    def alive(self):
        return self.p.poll() is None

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return ""


class Env:
    """One test's world: a temp dir, the processes it starts, and their teardown."""

    def __init__(self, build, samples, name):
        self.build = os.path.abspath(build)
        self.samples = samples
        self.name = name
        self.dir = tempfile.mkdtemp(prefix=f"itest-{name}-")
        self.procs = []
        self.gateway = None
        self.gw_port = None
        self.netns = None  # processes spawned start in this network namespace
        self.cleanups = []

    @property
    def isthmus(self):
        """The binary start_gateway runs: the build's, or one a test set."""
        return getattr(self, "_isthmus", None) or os.path.join(self.build, "isthmus")

    @isthmus.setter
    def isthmus(self, path):
        self._isthmus = path

    @property
    def upstream_bin(self):
        return os.path.join(self.build, "tests", "upstream")

    def path(self, name):
        return os.path.join(self.dir, name)

    def write(self, name, text):
        p = self.path(name)
        with open(p, "w") as f:
            f.write(text)
        return p

    def spawn(self, name, argv, stdout=None):
        log_path = self.path(f"{name}.log")
        logf = open(log_path, "wb")
        if self.netns:
            argv = ["ip", "netns", "exec", self.netns] + list(argv)
        p = subprocess.Popen(argv, stdout=stdout if stdout is not None else logf, stderr=logf,
                             stdin=subprocess.DEVNULL, start_new_session=True, cwd=self.dir)
        logf.close()
        proc = Proc(name, p, log_path)
        self.procs.append(proc)
        return proc

    # ---- upstreams

    def upstream(self, listens, name="up", zone=None):
        """Starts one upstream process. listens: ["127.0.0.2:0=name", "[::1]:0=name6", ...].
        Returns {listener name: port} (ports chosen by the kernel, read back from
        the "listening on" lines)."""
        argv = [self.upstream_bin, "--name", name]
        for l in listens:
            argv += ["--listen", l]
        if zone:
            argv += ["--zone", zone]
        proc = self.spawn(f"upstream-{name}", argv, stdout=subprocess.PIPE)
        ports = []
        deadline = time.monotonic() + 5
        fd = proc.p.stdout.fileno()
        pending = b""
        while len(ports) < len(listens):
            left = deadline - time.monotonic()
            if left <= 0:
                raise TestFailure(f"upstream {name} did not print 'listening on' within 5s: {proc.log()}")
            r, _, _ = select.select([fd], [], [], left)
            if not r:
                continue
            d = os.read(fd, 4096)
            if not d:
                raise TestFailure(f"upstream {name} exited: {proc.log()}")
            pending += d
            while b"\n" in pending:
                line, pending = pending.split(b"\n", 1)
                m = re.match(r"listening on ([\d.]+|\[[\da-fA-F:.]+\]):(\d+)", line.decode())
                if m:
                    ports.append(int(m.group(2)))
        out = {}
        for l, port in zip(listens, ports):
            addr, _, lname = l.partition("=")
            out[lname or name] = port
        return out

    @staticmethod
    def ctl(addr, port, cmd):
        r = http_get(port, f"/__ctl/{cmd}", addr=addr)
        check(r.status == 200, f"upstream control {cmd} on {addr}:{port} answered {r.status}")
        return r.body.decode()

    # ---- the gateway

    def check_config(self, path, portable=False):
        """Runs isthmus -c -f path (--portable); returns (exit code, combined output)."""
        if not os.access(self.isthmus, os.X_OK):
            raise TestFailure(f"{self.isthmus} is not built")
        p = subprocess.run([self.isthmus, "-c"] + (["--portable"] if portable else []) + ["-f", path],
                           stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, timeout=20, cwd=self.dir)
        return p.returncode, p.stdout.decode("utf-8", "replace")

    def start_gateway(self, conf_path, port, wait=10.0):
        self.gw_port = port
        if os.environ.get("ISM_STANDIN") == "nginx":
            self.gateway = self.start_nginx_standin(port)
        else:
            if not os.access(self.isthmus, os.X_OK):
                raise TestFailure(f"{self.isthmus} is not built")
            self.gateway = self.spawn("isthmus", [self.isthmus, "-f", conf_path])
        self.gw_port = port

        def up():
            if not self.gateway.alive():
                raise TestFailure(f"isthmus exited with {self.gateway.p.returncode}")
            s = socket.create_connection(("127.0.0.1", port), timeout=1)
            s.close()
            return True

        try:
            poll(up, wait, what=f"isthmus to listen on 127.0.0.1:{port}")
        except TestFailure as e:
            if not self.gateway.alive():
                raise TestFailure(f"isthmus exited with {self.gateway.p.returncode}")
            raise e
        return self.gateway

    def start_nginx_standin(self, port):
        """Debugging the harness only (ISM_STANDIN=nginx): nginx in place of the
        gateway, proxying /api to the "api" upstream and the rest to "v1", so the
        HTTP-behaviour tests can be checked against a known-good proxy."""
        ports = getattr(self, "ports", {})
        api = ports.get("api", ("127.0.0.4", 1))
        v1 = ports.get("v1", ("127.0.0.2", 1))
        proxy = ("proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_request_buffering off; "
                 "proxy_buffering off; proxy_set_header Host $http_host; "
                 "proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for; "
                 "proxy_set_header X-Forwarded-Proto $scheme; proxy_set_header X-Request-Id $request_id; ")
        conf = self.write("nginx.conf", f"""
worker_processes 2; daemon off; master_process on; pid {self.path('nginx.pid')};
error_log stderr info;
events {{ worker_connections 1024; }}
http {{
  access_log off; client_body_temp_path {self.dir}; client_max_body_size 0;
  server {{ listen 127.0.0.1:{port}; large_client_header_buffers 4 64k;
    location /api {{ proxy_pass http://{api[0]}:{api[1]}; {proxy} }}
    location / {{ proxy_pass http://{v1[0]}:{v1[1]}; {proxy} }}
  }}
}}
""")
        return self.spawn("isthmus", ["nginx", "-c", conf, "-p", self.dir])

    def workers(self):
        """The master's live child processes (the workers)."""
        pid = self.gateway.pid
        kids = set()
        try:
            for t in os.listdir(f"/proc/{pid}/task"):
                try:
                    with open(f"/proc/{pid}/task/{t}/children") as f:
                        kids.update(int(x) for x in f.read().split())
                except OSError:
                    pass
        except OSError:
            return []
        return sorted(kids)

    def get(self, path, host="test.local", headers=None, timeout=10.0, method="GET"):
        return http_get(self.gw_port, path, host, headers, timeout=timeout, method=method)

    def log_count(self, needle):
        return self.gateway.log().count(needle)

    def close(self):
        for proc in reversed(self.procs):
            if proc.alive():
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 5
        for proc in reversed(self.procs):
            try:
                proc.p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            # The group, not just the leader: workers of a master that died first.
            try:
                os.killpg(proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
            try:
                proc.p.wait(timeout=2)
            except subprocess.TimeoutExpired:
                pass
            if proc.p.stdout:
                proc.p.stdout.close()
        while self.cleanups:
            self.cleanups.pop()()

    def cleanup_dir(self):
        shutil.rmtree(self.dir, ignore_errors=True)


def sample(env, n, path="/", per_conn=250, timeout=10.0):
    """n GETs of path through the gateway (env.gw_port) over keep-alive connections (a new
    one every per_conn requests, so that every worker takes part). Returns ({x-upstream:
    count} of the 200s, {status, or the exception's name (OSError, EOFError): count})."""
    ups, statuses = {}, {}
    c = None
    try:
        for i in range(n):
            try:
                if c is None or i % per_conn == 0:
                    if c is not None:
                        c.close()
                    c = Conn("127.0.0.1", env.gw_port, timeout=timeout)
                r = c.request("GET", path, "test.local")
                statuses[r.status] = statuses.get(r.status, 0) + 1
                if r.status == 200:
                    u = r.header("x-upstream")
                    ups[u] = ups.get(u, 0) + 1
                if (r.header("connection") or "").lower() == "close":
                    c.close()
                    c = None
            except (OSError, EOFError) as e:
                k = type(e).__name__
                statuses[k] = statuses.get(k, 0) + 1
                if c is not None:
                    c.close()
                c = None
    finally:
        if c is not None:
            c.close()
    return ups, statuses


def tally_ok(env, n, **kw):
    """sample(env, n, **kw), checked: every GET answered 200. Returns {x-upstream: count}."""
    ups, statuses = sample(env, n, **kw)
    check(statuses == {200: n}, f"{n} GETs: statuses {statuses}, want all 200 (upstreams {ups})")
    return ups


_CLONE_NEWNET = 0x40000000


def _setns(fd):
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(fd, _CLONE_NEWNET) != 0:
        e = ctypes.get_errno()
        raise OSError(e, os.strerror(e))


def make_netns(env, sysctls=None):
    """A network namespace of the test's own, loopback up (127.0.0.0/8), with
    per-namespace sysctls set (e.g. small TCP buffers); deleted by env.close().
    Needs root: skips otherwise (CI runs as root)."""
    if os.geteuid() != 0 or not have("ip"):
        raise Skip("a network namespace needs root and iproute2")
    name = f"ism-{os.getpid()}-{env.name[:24]}"
    subprocess.run(["ip", "netns", "add", name], check=True, timeout=10)
    env.cleanups.append(lambda: subprocess.run(["ip", "netns", "del", name], timeout=10))
    subprocess.run(["ip", "-n", name, "link", "set", "lo", "up"], check=True, timeout=10)
    for k, v in (sysctls or {}).items():
        subprocess.run(["ip", "netns", "exec", name, "sysctl", "-q", "-w", f"{k}={v}"], check=True,
                       timeout=10)
    return name


@contextlib.contextmanager
def in_netns(env, name):
    """For the with-block, this thread's sockets and the processes env spawns live
    in network namespace name."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/var/run/netns/{name}", os.O_RDONLY)
    try:
        _setns(target)
        env.netns = name
        try:
            yield
        finally:
            env.netns = None
            _setns(own)
    finally:
        os.close(target)
        os.close(own)


def vmrss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


# --------------------------------------------------------------------------- configuration


def appliance(env, locality="eu-west/eu-west-1a", workers=2, timeouts=None, health_checks=(), extra=""):
    t = {"requestHeader": "2s", "idle": "5s", "upstreamConnect": "1s", "upstreamResponse": "3s", "streamIdle": "5s"}
    t.update(timeouts or {})
    tl = ", ".join(f"{k}: {v}" for k, v in t.items())
    hc = ""
    if health_checks:
        hc = "  healthChecks:\n"
        for h in health_checks:
            hc += (f"  - host: {h}\n    path: /healthz\n    interval: 200ms\n    timeout: 200ms\n"
                   f"    healthyThreshold: 1\n    unhealthyThreshold: 2\n")
    return (f"apiVersion: isthmus.io/v1\nkind: Appliance\nmetadata: {{name: test}}\nspec:\n"
            f"  locality: {locality}\n  workers: {workers}\n  listenAddress: 127.0.0.1\n"
            f"  controlSocket: {env.path('ctl.sock')}\n  timeouts: {{{tl}}}\n{hc}{extra}")


def gateway(port, name="gw", hosts=("*",)):
    hl = ", ".join(f'"{h}"' for h in hosts)
    return (f"apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: {name}}}\nspec:\n"
            f"  servers:\n  - port: {{number: {port}, name: http, protocol: HTTP}}\n    hosts: [{hl}]\n")


def service_entry(name, host, endpoints, port=80, resolution="STATIC", target_port=None):
    """endpoints: list of dicts {address (an IP, or a name to resolve), port, labels?,
    locality?, weight?, serviceAccount?}; [] for none (with resolution DNS: the host itself is resolved,
    on target_port)."""
    tp = f", targetPort: {target_port}" if target_port else ""
    s = (f"apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: {name}}}\nspec:\n"
         f"  hosts: [{host}]\n  ports: [{{number: {port}, name: http, protocol: HTTP{tp}}}]\n"
         f"  resolution: {resolution}\n")
    if endpoints:
        s += "  endpoints:\n"
    for e in endpoints:
        s += f"  - {{address: {e['address']}, ports: {{http: {e['port']}}}"
        if e.get("labels"):
            s += ", labels: {" + ", ".join(f"{k}: {json.dumps(str(v))}" for k, v in e["labels"].items()) + "}"
        if e.get("locality"):
            s += f", locality: {e['locality']}"
        if e.get("weight"):
            s += f", weight: {e['weight']}"
        if e.get("serviceAccount"):
            s += f", serviceAccount: {e['serviceAccount']}"
        s += "}\n"
    return s


def destination_rule(name, host, subsets):
    s = (f"apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}}}\n"
         f"spec:\n  host: {host}\n  subsets:\n")
    for sub in subsets:
        s += f"  - {{name: {sub}, labels: {{version: {sub}}}}}\n"
    return s


def no_panic_rule(name, host):
    """A DestinationRule whose outlierDetection sets minHealthPercent 0 (Istio's
    default there): no panic, so a cluster whose endpoints all fail their
    active checks answers 503 no healthy upstream. Without outlierDetection a
    cluster keeps Envoy's 50 % panic threshold and sends to them all."""
    return (f"apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}}}\n"
            f"spec:\n  host: {host}\n  trafficPolicy:\n    outlierDetection: {{minHealthPercent: 0}}\n")


def virtual_service(name, hosts, http_yaml, gateways=("gw",)):
    hl = ", ".join(f'"{h}"' for h in hosts)
    gl = ", ".join(gateways)
    return (f"apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: {name}}}\n"
            f"spec:\n  hosts: [{hl}]\n  gateways: [{gl}]\n  http:\n{http_yaml}")


def read_to_end(sock):
    """Every byte sock receives until the peer's end or a reset: (the bytes,
    "the end" or "a reset")."""
    data = b""
    while True:
        try:
            d = sock.recv(1 << 20)
        except ConnectionResetError:
            return data, "a reset"
        if not d:
            return data, "the end"
        data += d


def docs(*parts):
    return "---\n".join(p if p.endswith("\n") else p + "\n" for p in parts)


# --------------------------------------------------------------------------- external clients


def curl(args, timeout=60):
    p = subprocess.run(["curl", "-sS"] + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def metric(port, name):
    """The value of the unlabelled metric name on the admin listener at 127.0.0.1:port."""
    import urllib.request

    body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in body.splitlines():
        if line.startswith(name + " "):
            return int(line.split()[1])
    raise AssertionError(f"{name} missing from /metrics")


def have(tool):
    return shutil.which(tool) is not None

def ctl_cmd(path, cmd, timeout=10.0):
    """One control-socket command: connect, send the line, read the answer until the master closes."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(cmd.encode() + b"\n")
        parts = []
        deadline = time.monotonic() + timeout
        while True:
            check(time.monotonic() < deadline, f"control socket answer to {cmd!r} not closed within {timeout}s")
            d = s.recv(65536)
            if not d:
                break
            parts.append(d)
        return b"".join(parts).decode("utf-8", "replace")
    finally:
        s.close()


class Registry:
    """Collects a module's tests; register(test) hands them to run.py's @test."""

    def __init__(self):
        self.tests = []

    def __call__(self, fn):
        self.tests.append(fn)
        return fn

    def register(self, test):
        for fn in self.tests:
            test(fn)


def wrk_reap(wrk):
    """Kills a wrk run still going (a test that failed half-way)."""
    if wrk.poll() is None:
        os.killpg(wrk.pid, signal.SIGKILL)
        wrk.wait()


def check_wrk_clean(out, min_requests, during):
    """wrk's summary (bytes) shows more than min_requests requests, every one a
    2xx/3xx, and no socket error of any kind. Returns the summary text."""
    out = out.decode()
    m = re.search(r"(\d+) requests in", out)
    check(m and int(m.group(1)) > min_requests, f"wrk made too few requests {during}: {out}")
    check("Non-2xx or 3xx responses" not in out, f"non-2xx responses {during}: {out}")
    check("Socket errors" not in out, f"socket errors {during}: {out}")
    return out


# --------------------------------------------------------------------------- HTTP/2 and gRPC helpers

# Debian's python: the test upstreams and clients that need the `h2` and `grpc`
# packages (python3-h2, python3-grpcio) run under it, whatever python runs the
# tests (a pyenv python lacks Debian's modules).
DEBIAN_PYTHON = os.environ.get("ISM_DEBIAN_PYTHON", "/usr/bin/python3")
_PY_MODULES = {}


def file_lines(path):
    """The non-empty lines of a file (an access log, say); [] while it does not exist."""
    try:
        with open(path) as f:
            return [l.rstrip("\n") for l in f if l.strip()]
    except FileNotFoundError:
        return []


def debian_python_has(*modules):
    """Whether DEBIAN_PYTHON imports every one of modules (answers cached)."""
    key = tuple(sorted(modules))
    if key not in _PY_MODULES:
        try:
            p = subprocess.run([DEBIAN_PYTHON, "-c", "import " + ", ".join(key)], stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=30)
            _PY_MODULES[key] = p.returncode == 0
        except (OSError, subprocess.TimeoutExpired):
            _PY_MODULES[key] = False
    return _PY_MODULES[key]


def service_entry_protocol(name, host, endpoints, protocol, port=80):
    """service_entry() with its port's protocol set (HTTP2, GRPC, ...)."""
    return service_entry(name, host, endpoints, port).replace("protocol: HTTP}", f"protocol: {protocol}}}", 1)


def spawn_listening(env, name, argv, addr, port, timeout=10.0):
    """env.spawn(name, argv) and waits (bounded) until addr:port takes connections."""
    proc = env.spawn(name, argv)

    def up():
        check(proc.alive(), f"{name} exited: {proc.log()}")
        socket.create_connection((addr, port), 1).close()
        return True

    poll(up, timeout, what=f"{name} to listen on {addr}:{port}")
    return proc


def wait_master_exit(env, timeout=10.0):
    """After a SIGTERM: the master exits within timeout, with status 0."""
    try:
        env.gateway.p.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        raise TestFailure(f"master still running {timeout:g} s after SIGTERM")
    check(env.gateway.p.returncode == 0, f"master exited with {env.gateway.p.returncode}")
