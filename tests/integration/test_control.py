# SPDX-License-Identifier: Apache-2.0
"""Integration tests of the master's control surfaces under stress and misuse:
the control socket and isthmusctl, the admin listener (readiness, metrics),
worker supervision, descriptor limits and reloads that take long.

Registered into run.py's list by register(test)."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

from harness import (Registry, Skip, TestFailure, appliance, check, ctl_cmd, curl, docs, free_port, gateway,
                     http_get, poll, service_entry, virtual_service)

SVC = "ctl.test.internal"
_test = Registry()
register = _test.register


def _isthmusctl(env, *args, timeout=20):
    p = subprocess.run([os.path.join(env.build, "isthmusctl"), "-s", env.path("ctl.sock"), *args],
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def _socat(path, data, timeout=10):
    """data as it is, through socat (which ends its sending side after its input)."""
    p = subprocess.run(["socat", "-t", "5", "-", f"UNIX-CONNECT:{path}"], input=data,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
    return p.stdout.decode("utf-8", "replace")


def _start(env, extra="", workers=2, admin=True, timeouts=None, health_checks=(), more=()):
    """One upstream behind one route (and the documents of more); returns the
    admin port (or None)."""
    ports = env.upstream(["127.0.0.2:0=a"], name="a")
    gw_port = free_port()
    aport = free_port() if admin else None
    if admin:
        extra = f"  admin:\n    address: 127.0.0.1:{aport}\n" + extra
    conf = env.write("isthmus.yaml", docs(
        appliance(env, workers=workers, timeouts=timeouts, health_checks=health_checks, extra=extra),
        gateway(gw_port),
        virtual_service("ctl", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n"),
        service_entry("ctl", SVC, [{"address": "127.0.0.2", "port": ports["a"]}]), *more))
    env.start_gateway(conf, gw_port)
    poll(lambda: env.get("/").status == 200, 10, what="200 through the gateway")
    return aport


def _info(env):
    out = ctl_cmd(env.path("ctl.sock"), "show info json")
    return json.loads(out)


# --------------------------------------------------------------------------- isthmusctl and the socket


@_test
def isthmusctl_dropped_connection(env):
    """A master that closes the connection before isthmusctl sent its command
    (a full pool, a stop) gives exit status 3 and a message, not a death by
    SIGPIPE (141). strace delays isthmusctl's send until the server has closed."""
    if shutil.which("strace") is None:
        raise Skip("strace not installed (make deps installs it)")
    path = env.path("dropper.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(4)
    srv.settimeout(10)

    def drop():
        try:
            c, _ = srv.accept()
            c.close()
        except OSError:
            pass

    t = threading.Thread(target=drop, daemon=True)
    t.start()
    try:
        p = subprocess.run(["strace", "-qq", "-o", "/dev/null", "-e", "trace=write,sendto,sendmsg",
                            "-e", "inject=write,sendto,sendmsg:delay_enter=500000",
                            os.path.join(env.build, "isthmusctl"), "-s", path, "show", "info"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20,
                           # LeakSanitizer cannot run under ptrace (ASan builds).
                           env=dict(os.environ, ASAN_OPTIONS="detect_leaks=0"))
    finally:
        t.join(10)
        srv.close()
    err = p.stderr.decode("utf-8", "replace")
    check(p.returncode == 3, f"isthmusctl on a dropped connection exited with {p.returncode} "
          f"(want 3; -13/141 is SIGPIPE): {err!r}")
    check(path in err and err.startswith("isthmusctl: "), f"no message naming the socket: {err!r}")


@_test
def control_nul_byte(env):
    """A command with a NUL byte is refused, not run as the text before the NUL."""
    aport = _start(env)
    sock = env.path("ctl.sock")
    ans = _socat(sock, b"reload\x00 of nothing\n")
    check(ans.startswith("error:") and "NUL" in ans, f"'reload\\0...' answered {ans!r}")
    check(_info(env)["generation"] == 1, f"a command with a NUL byte ran a reload: {_info(env)}")
    ans = _socat(sock, b"show info\x00\n")
    check(ans.startswith("error:"), f"'show info\\0' answered {ans!r}")
    rc, out, err = _isthmusctl(env, "show", "info")
    check(rc == 0 and "generation: 1" in out, f"isthmusctl after the refusals: rc {rc} {out!r} {err!r}")
    with socket.create_connection(("127.0.0.1", aport), timeout=5) as s:
        s.sendall(b"GET /healthz/ready\x00 HTTP/1.1\r\nHost: x\r\n\r\n")
        head = s.recv(4096).decode("latin-1")
    check(head.startswith("HTTP/1.1 400 "), f"admin request with a NUL byte answered {head[:80]!r}")


@_test
def control_line_limit(env):
    """A command line of 4095 bytes is read (and answered as the command it is);
    one of 4096 is refused as too long; the admin pages take a query and HEAD."""
    aport = _start(env)
    sock = env.path("ctl.sock")
    ans = _socat(sock, b"x" * 4095 + b"\n")
    check(ans.startswith("error:") and "too long" not in ans and "unknown" in ans,
          f"a 4095-byte line answered {ans[:120]!r}")
    ans = _socat(sock, b"x" * 4096 + b"\n")
    check(ans.startswith("error:") and "too long" in ans, f"a 4096-byte line answered {ans[:120]!r}")
    for path, want in (("/healthz/ready?probe=1", 200), ("/healthz/live?x", 200), ("/metrics?name[]=x", 200),
                       ("/healthz/readyz", 404), ("/healthz/ready/", 404)):
        r = http_get(aport, path, addr="127.0.0.1", timeout=5)
        check(r.status == want, f"GET {path}: {r.status}, want {want}")
    with socket.create_connection(("127.0.0.1", aport), timeout=5) as s:
        s.sendall(b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        head = s.recv(65536).decode("latin-1")
    check(head.startswith("HTTP/1.1 200 ") and head.endswith("\r\n\r\n") and "content-length: " in head,
          f"HEAD /metrics answered {head[:200]!r}")
    with socket.create_connection(("127.0.0.1", aport), timeout=5) as s:
        s.sendall(b"POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        head = s.recv(65536).decode("latin-1")
    check(head.startswith("HTTP/1.1 405 ") and "\r\nallow: GET, HEAD\r\n" in head,
          f"POST /metrics answered {head[:200]!r} (RFC 9110: a 405 has Allow)")


@_test
def events_worker_subject(env):
    """`show events` names a worker once: "worker 0 (pid N) killed by signal 9";
    the worker restarted in its slot counts its own requests in `show workers`
    (from 0), while `show info` keeps the total."""
    _start(env)
    sock = env.path("ctl.sock")
    for _ in range(20):
        check(env.get("/").status == 200, "a request before the kill")
    workers = json.loads(ctl_cmd(sock, "show workers json"))
    victim = max(workers, key=lambda w: w["requests"])
    total = _info(env)["requests"]
    check(victim["requests"] > 0 and total >= 21, f"requests before the kill: {workers}, total {total}")
    os.kill(victim["pid"], signal.SIGKILL)
    pat = re.compile(rf" worker {victim['index']} \(pid {victim['pid']}\) killed by signal 9; restart in \d+ ms$",
                     re.M)
    events = poll(lambda: (lambda e: e if pat.search(e) else None)(ctl_cmd(sock, "show events")), 5,
                  what="the worker's exit in 'show events'")
    check("worker worker" not in events, f"'show events' doubles the subject:\n{events}")
    doc = json.loads(ctl_cmd(sock, "show events json"))
    check(any(e["kind"] == "worker" and e["event"].startswith(f"{victim['index']} (pid {victim['pid']})")
              for e in doc), f"'show events json' lacks the worker's exit: {doc}")
    heir = poll(lambda: next((w for w in json.loads(ctl_cmd(sock, "show workers json"))
                              if w["index"] == victim["index"] and w["pid"] != victim["pid"]), None), 10,
                what="the worker's restart")
    check(heir["requests"] == 0, f"the restarted worker shows the dead one's requests: {heir}")
    check(_info(env)["requests"] >= total, f"the total went back: {_info(env)['requests']} < {total}")


@_test
def ready_while_a_worker_restarts(env):
    """One worker in a crash loop (killed as soon as it is back, so its restart
    waits 100, 200, 400, 800 ms): /healthz/ready stays 200 while the other
    serves (it answered 503 for the whole restart delay, which takes a
    gateway that serves out of its balancer's pool); show events names the
    delays, the first 100 ms as documented."""
    aport = _start(env, workers=2)
    sock = env.path("ctl.sock")

    def worker0():
        """Worker 0 when it runs a generation, else None (a slot waiting for
        its restart is not listed)."""
        return next((w for w in json.loads(ctl_cmd(sock, "show workers json"))
                     if w["index"] == 0 and w["generation"]), None)

    # Both workers past their start: a worker 1 not yet on its generation
    # leaves none serving while worker 0 is down (under load, at once).
    poll(lambda: len([w for w in json.loads(ctl_cmd(sock, "show workers json")) if w["generation"]]) == 2,
         10, what="both workers on their generation")
    seen = []  # readiness asked while worker 0 was down, before and after
    for k in range(8):
        w = poll(worker0, 10, what="worker 0 to run")
        os.kill(w["pid"], signal.SIGKILL)
        after = poll(lambda: (lambda n: "down" if n is None else n if n["pid"] != w["pid"] else None)(worker0()),
                     5, interval=0.01, what="worker 0 to exit")
        if after == "down":
            status, _ = _ready_ms(aport)
            if worker0() is None:
                seen.append(status)
        if len(seen) >= 3:
            break
    check(len(seen) >= 3, f"worker 0 was never seen down around a readiness probe: {seen}")
    check(all(st == 200 for st in seen), f"/healthz/ready with worker 0 in its restart delay: {seen}")
    check(env.get("/").status == 200, "the other worker does not serve")
    events = ctl_cmd(sock, "show events")
    check(re.search(r"worker 0 \(pid \d+\) killed by signal 9; restart in 100 ms", events),
          f"the first young death's delay is not 100 ms:\n{events}")


# --------------------------------------------------------------------------- admin listener and control socket pools


def _ready_ms(aport, timeout=5.0):
    """GET /healthz/ready on a fresh connection: (status or the error, milliseconds)."""
    t0 = time.monotonic()
    try:
        status = http_get(aport, "/healthz/ready", addr="127.0.0.1", timeout=timeout).status
    except (OSError, EOFError, TestFailure) as e:
        status = repr(e)
    return status, (time.monotonic() - t0) * 1000


def _closed(s):
    """True when the peer has closed s (EOF or reset); s is non-blocking."""
    try:
        return s.recv(1) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _answered(s):
    """True when the peer has answered on s or closed it; s is non-blocking."""
    try:
        s.recv(1, socket.MSG_PEEK)
        return True
    except BlockingIOError:
        return False
    except OSError:
        return True


@_test
def admin_idle_flood(env):
    """300 idle TCP connections to the admin listener, then 40 to the control
    socket: /healthz/ready still answers 200 at once, isthmusctl still works
    (each has its own pool; a new client takes the slot of the oldest idle one),
    and the idle connections are closed after ISM_CTL_REQUEST_MS (2 s)."""
    aport = _start(env)
    admin, ctl = [], []
    try:
        for _ in range(300):
            admin.append(socket.create_connection(("127.0.0.1", aport), timeout=5))
        t_admin = time.monotonic()
        probes = []
        for _ in range(10):
            probes.append(_ready_ms(aport))
            rc, out, err = _isthmusctl(env, "show", "info", timeout=10)
            check(rc == 0 and "generation: 1" in out,
                  f"isthmusctl with 300 idle admin connections: rc {rc} {out!r} {err!r}")
        bad = [p for p in probes if p[0] != 200 or p[1] > 1000]
        check(not bad, f"/healthz/ready with 300 idle admin connections: {len(bad)} of {len(probes)} probes "
              f"failed or took over 1 s: {bad[:5]}")
        for _ in range(40):
            u = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            u.settimeout(5)
            u.connect(env.path("ctl.sock"))
            ctl.append(u)
        for _ in range(5):
            rc, out, err = _isthmusctl(env, "show", "info", timeout=10)
            check(rc == 0 and "generation: 1" in out,
                  f"isthmusctl with 40 idle control connections: rc {rc} {out!r} {err!r}")
            status, ms = _ready_ms(aport)
            check(status == 200 and ms < 1000, f"/healthz/ready with idle control connections: {status} {ms:.0f} ms")
        # Idle connections are closed at their request deadline, not before: the
        # newest admin one is still open a second after it was opened...
        for s in admin + ctl:
            s.setblocking(False)
        wait = t_admin + 1.0 - time.monotonic()
        if wait > 0:
            time.sleep(wait)  # not a synchronisation: the timeout must not have struck yet
        check(not _closed(admin[-1]), "the newest idle admin connection was closed within 1 s")
        # ...and all of them within the 2 s deadline and generous slack.
        poll(lambda: all(_closed(s) for s in admin + ctl), 8, interval=0.1,
             what="the master to close every idle connection")
    finally:
        for s in admin + ctl:
            s.close()
    check(env.gateway.alive(), "master died")


def _start_many(env, services=75, per=100):
    """services ServiceEntries of per endpoints each (127.1.S.E port 9: never
    connected to, no health checks), one route each, and the real upstream on
    the rest; returns (admin port, [endpoint keys])."""
    ports = env.upstream(["127.0.0.2:0=a"], name="a")
    gw_port, aport = free_port(), free_port()
    routes = "".join(f"  - match: [{{uri: {{prefix: /s{i}/}}}}]\n"
                     f"    route: [{{destination: {{host: s{i}.many.internal}}}}]\n" for i in range(services))
    routes += f"  - route: [{{destination: {{host: {SVC}}}}}]\n"
    ses = [service_entry(f"s{i}", f"s{i}.many.internal",
                         [{"address": f"127.1.{i}.{j + 1}", "port": 9} for j in range(per)])
           for i in range(services)]
    keys = [f"s{i}.many.internal|127.1.{i}.{j + 1}:9" for i in range(services) for j in range(per)]
    conf = env.write("isthmus.yaml", docs(
        appliance(env, extra=f"  admin:\n    address: 127.0.0.1:{aport}\n"), gateway(gw_port),
        virtual_service("many", ["*"], routes),
        service_entry("ctl", SVC, [{"address": "127.0.0.2", "port": ports["a"]}]), *ses))
    env.start_gateway(conf, gw_port)
    poll(lambda: env.get("/").status == 200, 10, what="200 through the gateway")
    poll(lambda: _ready_ms(aport)[0] == 200, 10, what="/healthz/ready to answer 200")
    return aport, keys


@_test
def admin_slow_scraper(env):
    """Clients that ask for /metrics (several MB here) or for `show endpoints
    json` and never read the answer do not delay /healthz/ready or the control
    socket: an answer is written as its client reads it, the master's loop never
    waits on one client. (Loopback TCP takes about 3 MB before a send blocks; the
    unix socket about 200 kB: the control-socket readers are the ones that
    blocked the loop before.)"""
    aport, _ = _start_many(env)
    stalled, lat = [], []
    try:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            if len(stalled) < 16:
                if len(stalled) % 2:
                    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                    s.settimeout(5)
                    s.connect(env.path("ctl.sock"))
                    s.sendall(b"show endpoints json\n")
                else:
                    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                    if stalled:  # the first one reads its answer at the end: a normal window
                        s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
                    s.settimeout(5)
                    s.connect(("127.0.0.1", aport))
                    s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
                stalled.append(s)
            lat.append(("ready",) + _ready_ms(aport))
            t0 = time.monotonic()
            rc, out, _ = _isthmusctl(env, "show", "info", timeout=10)
            lat.append(("isthmusctl", rc, (time.monotonic() - t0) * 1000))
            time.sleep(0.05)  # pacing of the probe loop, not a synchronisation
        slow = [x for x in lat if x[1] not in (200, 0) or x[2] > 500]
        check(not slow, f"with {len(stalled)} clients that do not read their answer, {len(slow)} of {len(lat)} "
              f"probes failed or took over 500 ms: {[(k, v, round(ms)) for k, v, ms in slow[:6]]}")
        # A scraper that reads late still gets its whole answer (within the 10 s answer deadline).
        buf = b""
        stalled[0].settimeout(10)
        while True:
            d = stalled[0].recv(1 << 16)
            if not d:
                break
            buf += d
        head, _, body = buf.partition(b"\r\n\r\n")
        m = re.search(rb"content-length: (\d+)", head)
        check(head.startswith(b"HTTP/1.1 200") and m and int(m.group(1)) == len(body),
              f"a late reader got {head[:120]!r} and {len(body)} body bytes")
    finally:
        for s in stalled:
            s.close()
    check(env.gateway.alive(), "master died")


def _read_all(s):
    buf = b""
    while True:
        d = s.recv(1 << 16)
        if not d:
            return buf
        buf += d


@_test
def admin_metrics_flood(env):
    """64 scrapes sent together (2,000 endpoints: a page of 2 MB) share a few
    /metrics builds (isthmus_metrics_builds_total), where each was a build of
    its own that held the master's loop, so that a client looping on /metrics
    starved the health checks and readiness probes; a /healthz/ready sent
    behind them is answered, and every scrape gets a whole page."""
    aport, _ = _start_many(env, services=20)
    n = 64
    before = _admin_metric(aport, "isthmus_metrics_builds_total")
    socks = []
    try:
        for _ in range(n):
            socks.append(socket.create_connection(("127.0.0.1", aport), timeout=10))
        for s in socks:
            s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        status, ms = _ready_ms(aport, timeout=10)
        check(status == 200, f"/healthz/ready behind {n} scrapes: {status} after {ms:.0f} ms")
        for i, s in enumerate(socks):
            head, _, body = _read_all(s).partition(b"\r\n\r\n")
            m = re.search(rb"content-length: (\d+)", head)
            check(head.startswith(b"HTTP/1.1 200") and m and int(m.group(1)) == len(body) > 1 << 20,
                  f"scrape {i} got {head[:120]!r} and {len(body)} body bytes")
    finally:
        for s in socks:
            s.close()
    builds = _admin_metric(aport, "isthmus_metrics_builds_total") - before - 1
    check(builds <= n // 4, f"{n} scrapes sent together took {builds:.0f} /metrics builds")


# --------------------------------------------------------------------------- large answers

SAMPLE = re.compile(r'^[a-zA-Z_:][a-zA-Z0-9_:]*(\{[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
                    r'(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*")*\})? [-+]?(?:[0-9.]+(?:[eE][-+]?[0-9]+)?|NaN|[-+]?Inf)$')
COMMENT = re.compile(r"^# (?:HELP [a-zA-Z_:][a-zA-Z0-9_:]* .*|TYPE [a-zA-Z_:][a-zA-Z0-9_:]* "
                     r"(?:counter|gauge|histogram|summary|untyped))$")


@_test
def large_answers(env):
    """7,500 endpoints: /metrics (about 6 MB) comes whole, every line in the
    Prometheus text format, its content-length right; `show endpoints` (text and
    JSON, over 1 MiB each) lists every endpoint. Before, both were cut at 1 MiB,
    /metrics mid-line with status 200."""
    aport, keys = _start_many(env)
    with socket.create_connection(("127.0.0.1", aport), timeout=10) as s:
        s.sendall(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        buf = b""
        while True:
            d = s.recv(1 << 20)
            if not d:
                break
            buf += d
    head, _, body = buf.partition(b"\r\n\r\n")
    m = re.search(rb"\r\ncontent-length: (\d+)\r\n", head)
    check(head.startswith(b"HTTP/1.1 200 ") and m, f"/metrics answered {head[:200]!r}")
    check(int(m.group(1)) == len(body), f"content-length {m.group(1).decode()}, {len(body)} body bytes")
    text = body.decode()
    check(text.endswith("\n"), f"/metrics does not end with a newline: ...{text[-80:]!r}")
    bad = [l for l in text.split("\n")[:-1] if not (COMMENT.match(l) or SAMPLE.match(l))]
    check(not bad, f"{len(bad)} lines of /metrics are not in the text format: {bad[:3]}")
    for family in ("isthmus_endpoint_healthy", "isthmus_endpoint_requests_total", "isthmus_endpoint_ejected"):
        n = sum(1 for l in text.split("\n") if l.startswith(family + "{"))
        check(n == len(keys) + 1, f"{n} samples of {family}, want {len(keys) + 1} (every endpoint)")
    check(len(body) > 4 << 20, f"/metrics of {len(body)} bytes: the test wants more than 4 MiB")

    sock = env.path("ctl.sock")
    out = ctl_cmd(sock, "show endpoints", timeout=20)
    listed = {l.split()[1] for l in out.strip().split("\n") if len(l.split()) > 1}
    check(len(out) > 1 << 20 and set(keys) <= listed and len(listed) == len(keys) + 1,
          f"'show endpoints' ({len(out)} bytes) lists {len(listed)} endpoints, want {len(keys) + 1}")
    rc, out, err = _isthmusctl(env, "show", "endpoints", "json")
    check(rc == 0, f"isthmusctl show endpoints json: rc {rc} {err!r}")
    doc = json.loads(out)
    check({e["key"] for e in doc} >= set(keys) and len(doc) == len(keys) + 1,
          f"'show endpoints json' holds {len(doc)} endpoints, want {len(keys) + 1}")


# --------------------------------------------------------------------------- worker supervision


def _admin_metric(aport, name):
    body = http_get(aport, "/metrics", addr="127.0.0.1", timeout=10).body.decode()
    m = re.search(rf"^{re.escape(name)} (\S+)$", body, re.M)
    check(m, f"{name} missing from /metrics")
    return float(m.group(1))


@_test
def worker_hang(env):
    """A worker stopped (SIGSTOP) is noticed by its heartbeat, 5 s old: killed,
    replaced by a new process, an event and a metric say so, and traffic is
    served by the new one."""
    aport = _start(env)
    sock = env.path("ctl.sock")
    # Both workers past their start (a worker without a first heartbeat has 30 s).
    victim = poll(lambda: (lambda w: w[0] if all(x["heartbeat_age_ms"] > 0 for x in w) else None)(
        json.loads(ctl_cmd(sock, "show workers json"))), 10, what="a heartbeat from every worker")
    t0 = time.monotonic()
    os.kill(victim["pid"], signal.SIGSTOP)
    try:
        def replaced():
            # By slot: a slot whose worker exited is not listed until it is restarted.
            w = next((w for w in json.loads(ctl_cmd(sock, "show workers json"))
                      if w["index"] == victim["index"]), None)
            return w if w and w["pid"] != victim["pid"] and w["generation"] > 0 else None
        new = poll(replaced, 15, interval=0.2, what=f"worker {victim['index']} (pid {victim['pid']}, stopped) "
                   "to be replaced")
    finally:
        try:
            os.kill(victim["pid"], signal.SIGCONT)
        except ProcessLookupError:
            pass
    took = time.monotonic() - t0
    check(took >= 4.0, f"the stopped worker was replaced after {took:.1f} s, before its 5 s bound")
    check(not os.path.exists(f"/proc/{victim['pid']}"), f"the hung worker {victim['pid']} still exists")
    events = ctl_cmd(sock, "show events")
    check(re.search(rf" worker {victim['index']} \(pid {victim['pid']}\) hung: heartbeat \d+ ms old, killed$",
                    events, re.M), f"no hang event in 'show events':\n{events}")
    check(_admin_metric(aport, "isthmus_worker_hangs_total") == 1, "isthmus_worker_hangs_total is not 1")
    check(_info(env)["worker_hangs"] == 1, f"show info: {_info(env)}")
    for i in range(20):
        r = env.get(f"/after-hang/{i}")
        check(r.status == 200, f"request {i} after the replacement: {r}")
    check(new["pid"] in env.workers(), f"the new worker {new['pid']} is not a child of the master")


@_test
def master_stall_spares_workers(env):
    """The master itself stopped for longer than the heartbeat bound does not
    take its (healthy) workers for hung when it resumes."""
    aport = _start(env)
    sock = env.path("ctl.sock")
    before = [w["pid"] for w in json.loads(ctl_cmd(sock, "show workers json"))]
    os.kill(env.gateway.pid, signal.SIGSTOP)
    try:
        time.sleep(6.5)  # the stall under test, not a synchronisation
    finally:
        os.kill(env.gateway.pid, signal.SIGCONT)
    # An answer comes from a loop turn after the resume: the hang check ran in it.
    after = [w["pid"] for w in json.loads(ctl_cmd(sock, "show workers json"))]
    check(after == before, f"workers replaced after a master stall: {before} -> {after}")
    check(_admin_metric(aport, "isthmus_worker_hangs_total") == 0, "a worker counted as hung")
    check(env.get("/").status == 200, "no service after the stall")


@_test
def machine_stall_spares_workers(env):
    """The whole machine held up (the master and its workers stopped together
    for longer than the heartbeat bound, as a suspended VM), the master
    resuming a little before its workers: their old heartbeats are the
    stall's, not a hang, and the master gives them a whole bound again."""
    aport = _start(env)
    sock = env.path("ctl.sock")
    # Both workers past their start (a worker without a first heartbeat has 30 s).
    poll(lambda: all(x["heartbeat_age_ms"] > 0 for x in json.loads(ctl_cmd(sock, "show workers json"))), 10,
         what="a heartbeat from every worker")
    before = [w["pid"] for w in json.loads(ctl_cmd(sock, "show workers json"))]
    stopped = []
    try:
        for pid in before + [env.gateway.pid]:
            os.kill(pid, signal.SIGSTOP)
            stopped.append(pid)
        time.sleep(6.5)  # the stall under test, not a synchronisation
        os.kill(env.gateway.pid, signal.SIGCONT)
        stopped.remove(env.gateway.pid)
        ctl_cmd(sock, "show info")  # answered: the master's loop turned before its workers run again
    finally:
        for pid in stopped:
            try:
                os.kill(pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
    after = [w["pid"] for w in json.loads(ctl_cmd(sock, "show workers json"))]
    check(after == before, f"workers replaced after the machine stalled: {before} -> {after}")
    check(_admin_metric(aport, "isthmus_worker_hangs_total") == 0, "a worker counted as hung")
    check(env.get("/").status == 200, "no service after the stall")


@_test
def admin_out_of_descriptors(env):
    """The master out of descriptors (its RLIMIT_NOFILE lowered to what it has
    open plus 8) under 40 idle admin connections: a readiness probe behind
    them is answered at once, the oldest idle client giving its descriptor up
    as a full pool's rule says, and the loop does not spin on the listener
    (the probe waited for the idle clients' 2 s deadline while the master
    burnt a CPU retrying the accept)."""
    import resource
    from test_security import cpu_seconds
    aport = _start(env, workers=1)
    master = env.gateway.pid
    soft, hard = resource.prlimit(master, resource.RLIMIT_NOFILE)
    resource.prlimit(master, resource.RLIMIT_NOFILE, (len(os.listdir(f"/proc/{master}/fd")) + 8, hard))
    idle = []
    try:
        for _ in range(40):
            idle.append(socket.create_connection(("127.0.0.1", aport), timeout=5))
        c0 = cpu_seconds(master)
        probes = [_ready_ms(aport) for _ in range(5)]
        used = cpu_seconds(master) - c0
        bad = [p for p in probes if p[0] != 200 or p[1] > 1000]
        check(not bad, f"/healthz/ready out of descriptors: {len(bad)} of 5 probes failed or took over 1 s: {probes}")
        check(used < 0.5 * max(1.0, sum(p[1] for p in probes) / 1000),
              f"the master used {used:.2f} s of CPU during {len(probes)} probes out of descriptors")
    finally:
        for c in idle:
            c.close()
        resource.prlimit(master, resource.RLIMIT_NOFILE, (soft, hard))
    check(_ready_ms(aport)[0] == 200, "/healthz/ready after the descriptors came back")


# --------------------------------------------------------------------------- open-file limit


def _start_limited(env, conf, port, soft, hard):
    """The master under RLIMIT_NOFILE soft:hard (prlimit execs it: same pid)."""
    env.gw_port = port
    env.gateway = env.spawn("isthmus", ["prlimit", f"--nofile={soft}:{hard}", env.isthmus, "-f", conf])

    def up():
        if not env.gateway.alive():
            raise TestFailure(f"isthmus exited with {env.gateway.p.returncode}")
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    poll(up, 10, what=f"isthmus to listen on 127.0.0.1:{port}")


def _limited_conf(env, max_conn=None):
    ports = getattr(env, "up_ports", None) or env.upstream(["127.0.0.2:0=a"], name="a")
    env.up_ports = ports
    gw_port = getattr(env, "gw_port_fixed", None) or free_port()
    env.gw_port_fixed = gw_port
    extra = f"  limits:\n    maxConnectionsPerWorker: {max_conn}\n" if max_conn else ""
    text = docs(appliance(env, extra=extra), gateway(gw_port),
                virtual_service("ctl", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n"),
                service_entry("ctl", SVC, [{"address": "127.0.0.2", "port": ports["a"]}]))
    return env.write("isthmus.yaml", text), gw_port, text


def _field_error(out, conf, text):
    """The error line for maxConnectionsPerWorker, checked to point at its line."""
    m = re.search(re.escape(conf) + r":(\d+):(\d+): error: Appliance test: "
                  r"spec\.limits\.maxConnectionsPerWorker: (.*)", out)
    check(m, f"no '{conf}:LINE:COL: error: Appliance test: spec.limits.maxConnectionsPerWorker:' in {out!r}")
    line = text.split("\n")[int(m.group(1)) - 1]
    check("maxConnectionsPerWorker" in line, f"the error points at line {m.group(1)}: {line!r}")
    return m.group(3)


@_test
def max_connections_per_worker_is_a_bound(env):
    """limits.maxConnectionsPerWorker: 2 with one worker: two client connections
    open at once are served, a third is closed without an answer (and counted
    in isthmus_connections_rejected_total); once one of the two closes, a new
    connection is served again."""
    from harness import Conn
    ports = env.upstream(["127.0.0.2:0=a"], name="a")
    gw, admin = free_port(), free_port()
    extra = f"  admin: {{address: 127.0.0.1:{admin}}}\n  limits:\n    maxConnectionsPerWorker: 2\n"
    text = docs(appliance(env, workers=1, extra=extra), gateway(gw),
                virtual_service("ctl", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n"),
                service_entry("ctl", SVC, [{"address": "127.0.0.2", "port": ports["a"]}]))
    env.start_gateway(env.write("isthmus.yaml", text), gw)
    poll(lambda: json.loads(ctl_cmd(env.path("ctl.sock"), "show info json"))["connections_active"] == 0, 5,
         what="the start's probe connection gone")

    def rejected():
        body = http_get(admin, "/metrics").body.decode()
        m = re.search(r"^isthmus_connections_rejected_total (\d+)", body, re.M)
        return int(m.group(1)) if m else -1

    before = rejected()
    c1, c2 = Conn("127.0.0.1", gw, timeout=5), Conn("127.0.0.1", gw, timeout=5)
    try:
        for i, c in enumerate((c1, c2)):
            r = c.request("GET", f"/{i}")
            check(r.status == 200, f"connection {i + 1} of 2: {r.status}")
        with Conn("127.0.0.1", gw, timeout=5) as c3:
            try:
                c3.send(b"GET /third HTTP/1.1\r\nHost: test.local\r\n\r\n")
                r = c3.read_response()
                got = f"answered {r.status}"
            except Exception as e:  # closed: what is expected
                got = None
            check(got is None, f"a third connection beyond maxConnectionsPerWorker 2 was {got}")
        poll(lambda: rejected() == before + 1, 5, what="isthmus_connections_rejected_total one more")
    finally:
        c1.close()

    def served():
        with Conn("127.0.0.1", gw, timeout=5) as c:
            return c.request("GET", "/again").status == 200
    poll(served, 5, what="a connection served once one of the two closed")
    c2.close()


@_test
def nofile_explicit(env):
    """An explicit maxConnectionsPerWorker the open-file limit cannot honour is
    refused, with its position: by `isthmus -c`, at the start, and at a reload
    (which cannot raise the limit of the running workers); one that fits after
    raising the soft limit starts with the limit raised."""
    with open("/proc/sys/fs/nr_open") as f:
        nr_open = int(f.read())
    if nr_open >= 2 * 1048576 + 65:
        raise Skip(f"fs.nr_open is {nr_open}: a privileged master can honour any value")
    conf, gw_port, text = _limited_conf(env, 1048576)
    p = subprocess.run(["prlimit", "--nofile=4096:4096", env.isthmus, "-c", "-f", conf], stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, timeout=20)
    out = p.stdout.decode()
    check(p.returncode == 1, f"isthmus -c of 1048576 connections under 4096 files: rc {p.returncode} {out!r}")
    msg = _field_error(out, conf, text)
    check("1048576 connections need 2097217 open files" in msg, f"the message: {msg!r}")
    env.gateway = env.spawn("isthmus", ["prlimit", "--nofile=4096:4096", env.isthmus, "-f", conf])
    try:
        env.gateway.p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        raise TestFailure("isthmus started with 1048576 connections under a 4096-file limit")
    check(env.gateway.p.returncode != 0, "isthmus exited with 0 on a refused start")
    _field_error(env.gateway.log(), conf, text)
    check("not started" in env.gateway.log(), "no 'not started' in the log")

    # 3000 connections need 6065: the soft limit is raised to it (the hard one allows).
    conf, gw_port, text = _limited_conf(env, 3000)
    _start_limited(env, conf, gw_port, 1024, 8192)
    info = _info(env)
    check(info["max_connections_per_worker"] == 3000 and info["open_files_limit"] == 6065,
          f"3000 connections under 1024:8192: {info}")
    check(env.get("/").status == 200, "no service")
    # A reload cannot raise it: 5000 (10065 files) is refused where it is written.
    conf, _, text = _limited_conf(env, 5000)
    rc, out, err = _isthmusctl(env, "reload")
    check(rc == 1 and out.startswith("reload refused"), f"reload to 5000 connections: rc {rc} {out!r}")
    msg = _field_error(out, conf, text)
    check("5000 connections need 10065 open files" in msg and "restart" in msg, f"the message: {msg!r}")
    check(_info(env)["generation"] == 1, "a refused reload changed the generation")


@_test
def nofile_default_derived(env):
    """Without maxConnectionsPerWorker, the default (16384) is lowered to what
    the open-file limit allows, instead of a warning and workers that run out
    of descriptors: shown by `show info` and /metrics."""
    aport = free_port()
    ports = env.upstream(["127.0.0.2:0=a"], name="a")
    gw_port = free_port()
    conf = env.write("isthmus.yaml", docs(
        appliance(env, extra=f"  admin:\n    address: 127.0.0.1:{aport}\n"), gateway(gw_port),
        virtual_service("ctl", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n"),
        service_entry("ctl", SVC, [{"address": "127.0.0.2", "port": ports["a"]}])))
    _start_limited(env, conf, gw_port, 4096, 4096)
    want = (4096 - 64 - 1) // 2  # 2 per connection; 64 and the listener besides
    info = _info(env)
    check(info.get("max_connections_per_worker") == want and info.get("open_files_limit") == 4096,
          f"show info under a 4096-file limit: {info}")
    check(_admin_metric(aport, "isthmus_max_connections_per_worker") == want,
          "isthmus_max_connections_per_worker is not the derived default")
    check("below the" not in env.gateway.log(), "the old warning is still logged")
    check(env.get("/").status == 200, "no service")


@_test
def nofile_low_hard_limit(env):
    """Under an open-file hard limit below the master's poll slots (2
    listeners, 32 control and 256 admin clients), the master runs: only the
    slots that hold a descriptor are polled (it exited at once with
    "poll: Invalid argument"); the control socket and the admin listener
    answer."""
    aport = free_port()
    ports = env.upstream(["127.0.0.2:0=a"], name="a")
    gw_port = free_port()
    conf = env.write("isthmus.yaml", docs(
        appliance(env, workers=1, extra=f"  admin:\n    address: 127.0.0.1:{aport}\n"), gateway(gw_port),
        virtual_service("ctl", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n"),
        service_entry("ctl", SVC, [{"address": "127.0.0.2", "port": ports["a"]}])))
    _start_limited(env, conf, gw_port, 200, 200)
    check(env.get("/").status == 200, "no service under a 200-file limit")
    info = _info(env)
    check(info.get("open_files_limit") == 200, f"show info under a 200-file limit: {info}")
    check(_admin_metric(aport, "isthmus_max_connections_per_worker") == info.get("max_connections_per_worker"),
          "the admin listener under a 200-file limit")
    check(env.gateway.alive(), f"the master exited: {env.gateway.log()[-400:]}")


# --------------------------------------------------------------------------- reloads off the loop


def _reload_conf(env, gw_port, up_port, prefix, creds=None):
    """One route (prefix) to the upstream; with creds=(n, crt, key), n credentials
    naming the same pair: each is read and checked with OpenSSL at load time
    (milliseconds each), which makes a load that takes seconds whatever the
    parser's speed."""
    extra = f"  admin:\n    address: 127.0.0.1:{env.aport}\n"
    if creds:
        n, crt, key = creds
        extra += "  credentials:\n" + "".join(f"  - {{name: c{i}, certificate: {crt}, privateKey: {key}}}\n"
                                              for i in range(n))
    return docs(appliance(env, extra=extra), gateway(gw_port),
                virtual_service("ctl", ["*"], f"  - match: [{{uri: {{prefix: {prefix}}}}}]\n"
                                              f"    route: [{{destination: {{host: {SVC}}}}}]\n"),
                service_entry("ctl", SVC, [{"address": "127.0.0.2", "port": up_port}]))


@_test
def control_pool_full_of_reload_waiters(env):
    """40 clients that asked for a reload wait for its end (a slow one: 1,200
    credentials to read), more than the control socket's 32 slots: an
    operator's `show info` still gets an answer, taking the slot of the
    oldest waiter (every new client was closed until the reload was over)."""
    from test_tls import Pki

    pki = Pki(env)
    crt = pki.ca("cred")
    key = env.path("cred.key")
    up = env.upstream(["127.0.0.2:0=a"], name="a")["a"]
    gw_port, env.aport = free_port(), free_port()
    env.start_gateway(env.write("isthmus.yaml", _reload_conf(env, gw_port, up, "/a")), gw_port)
    env.write("isthmus.yaml", _reload_conf(env, gw_port, up, "/a", creds=(1200, crt, key)))
    sock = env.path("ctl.sock")
    waiters = []
    try:
        for _ in range(40):
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(sock)
            s.sendall(b"reload\n")
            waiters.append(s)
        info = _info(env)
        check(info.get("reloading"), f"the reload was over before the check: {info}")
    finally:
        for s in waiters:
            s.close()
    poll(lambda: not _info(env).get("reloading"), 60, what="the reload to end")


@_test
def reload_off_the_loop(env):
    """A reload whose load takes seconds (1,200 credentials) runs off the loop:
    meanwhile /healthz/ready and `isthmusctl show info` answer within 1 s and a
    killed worker is restarted; `isthmusctl reload` still answers when the
    reload is over. A reload and a SIGHUP asked during it are queued as one
    (generation 3, not 4), and that one reads the file as it is then."""
    from test_tls import Pki

    pki = Pki(env)
    crt = pki.ca("cred")
    key = env.path("cred.key")
    up = env.upstream(["127.0.0.2:0=a"], name="a")["a"]
    gw_port, env.aport = free_port(), free_port()
    conf = env.write("isthmus.yaml", _reload_conf(env, gw_port, up, "/a"))
    env.start_gateway(conf, gw_port)
    poll(lambda: env.get("/a/x").status == 200, 10, what="200 for /a")
    sock = env.path("ctl.sock")
    env.write("isthmus.yaml", _reload_conf(env, gw_port, up, "/a", creds=(1200, crt, key)))

    answers = {}

    def reload(name):
        answers[name] = _isthmusctl(env, "reload", timeout=120)

    slow = threading.Thread(target=reload, args=("slow",))
    queued = threading.Thread(target=reload, args=("queued",))
    t0 = time.monotonic()
    slow.start()
    lat, victim, respawned, ready_after, asked = [], None, None, False, None
    try:
        # Probes all along the slow reload; meanwhile a worker is killed, and once
        # it is back, a reload and a SIGHUP are asked.
        while slow.is_alive() and time.monotonic() - t0 < 60:
            status, ms = _ready_ms(env.aport)
            lat.append(("ready", status, ms))
            t1 = time.monotonic()
            info = _info(env)
            workers = json.loads(ctl_cmd(sock, "show workers json"))
            lat.append(("show info+workers", info["generation"], (time.monotonic() - t1) * 1000))
            busy = info.get("reloading") and info["generation"] == 1
            if busy and victim is None:
                victim = workers[0]
                os.kill(victim["pid"], signal.SIGKILL)
            elif busy and victim is not None and respawned is None:
                w = workers[victim["index"]]
                respawned = w["pid"] if w["pid"] not in (0, victim["pid"]) else None
            elif busy and respawned and not ready_after:
                ready_after = status == 200
            elif busy and ready_after and asked is None:
                env.write("isthmus.yaml", _reload_conf(env, gw_port, up, "/b"))
                queued.start()
                os.kill(env.gateway.pid, signal.SIGHUP)
                asked = _info(env)
            time.sleep(0.05)  # pacing of the probes, not a synchronisation
    finally:
        slow.join(120)
        if queued.is_alive() or asked is not None:
            queued.join(120)
    # 503 is right while the killed worker is down; slow or failed is not.
    slow_probes = [x for x in lat if (x[0] == "ready" and x[1] not in (200, 503)) or x[2] > 1000]
    check(not slow_probes, f"during a reload, {len(slow_probes)} of {len(lat)} probes failed or took over 1 s: "
          f"{[(k, v, round(ms)) for k, v, ms in slow_probes[:6]]}")
    check(victim and respawned, f"the killed worker {victim} was not restarted while the reload ran")
    check(ready_after, "/healthz/ready did not answer 200 again while the reload ran")
    check(asked and asked["reloading"] and asked["generation"] == 1,
          f"the slow reload ended after {time.monotonic() - t0:.1f} s, before the test asked again: {asked}")
    rc, out, err = answers.get("slow", (None, "", ""))
    check(rc == 0 and out == "reload: generation 2 published\n", f"the slow reload answered rc {rc} {out!r} {err!r}")
    rc, out, err = answers.get("queued", (None, "", ""))
    check(rc == 0 and out == "reload: generation 3 published\n",
          f"the reload asked during it answered rc {rc} {out!r} {err!r}")
    info = _info(env)
    check(info["generation"] == 3 and info["reloads"] == 2 and not info["reloading"],
          f"after a reload and a reload + SIGHUP queued behind it: {info}")
    check(env.get("/b/x").status == 200 and env.get("/a/x").status == 404, "the last file is not in force")


@_test
def second_master_keeps_off_the_control_socket(env):
    """A second master started on the control socket of a running one (the
    same file, without a pid file; or another file naming the same socket)
    refuses to start and leaves the socket to the first: it unlinked it
    before binding, and on its way out, so the running gateway could no
    longer be managed."""
    _start(env, admin=False)
    conf = env.path("isthmus.yaml")
    other = env.write("other.yaml", open(conf).read().replace(f"number: {env.gw_port},",
                                                               f"number: {free_port()},"))
    for c in (conf, other):
        p = subprocess.run([env.isthmus, "-f", c], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
        out = p.stdout.decode()
        check(p.returncode != 0, f"a second master on {os.path.basename(c)} started: {out[-400:]}")
        if c == other:
            check("a running isthmus answers on it" in out, f"the refusal does not say why: {out[-400:]}")
        check("generation" in ctl_cmd(env.path("ctl.sock"), "show info"),
              f"the first master's control socket after a second start on {os.path.basename(c)}")
    check(env.get("/").status == 200, "the first master does not serve")


@_test
def control_socket_path_checked(env):
    """The control socket's path is checked before anything is made there: a
    regular file it names by mistake is kept and the start refused, saying so
    (it was taken for a stale socket and deleted); a directory above it that
    another user may change (world-writable, not sticky) refuses the start,
    named (a local user could swap the socket for a link to a file of root's
    before its chmod and chown). isthmus -c refuses both paths alike, and
    a pidFile below a file, without making anything."""
    _start(env, admin=False)
    # Made 0660 as it is bound (docs/operations.md): no other user may connect.
    mode = os.stat(env.path("ctl.sock")).st_mode & 0o777
    check(mode == 0o660, f"the control socket's mode is {mode:o}, not 660")
    conf = env.path("isthmus.yaml")
    text = open(conf).read()
    os.kill(env.gateway.pid, signal.SIGTERM)
    env.gateway.p.wait(timeout=30)
    keep = env.write("important.conf", "do not lose me\n")
    open_dir = env.path("open")
    os.mkdir(open_dir)
    os.chmod(open_dir, 0o777)
    for what, path, says in (("a regular file", keep, "it exists and is not a socket"),
                             ("a world-writable directory", os.path.join(open_dir, "ctl.sock"),
                              f"directory {open_dir} may be changed by another user")):
        c = env.write("bad.yaml", text.replace(env.path("ctl.sock"), path))
        p = subprocess.run([env.isthmus, "-f", c], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
        out = p.stdout.decode()
        check(p.returncode != 0 and says in out, f"{what}: rc {p.returncode}, {out[-400:]!r}")
        if what != "a regular file":
            p = subprocess.run([env.isthmus, "-c", "-f", c], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               timeout=20)
            out = p.stdout.decode()
            check(p.returncode == 1 and "error: " in out and "spec.controlSocket" in out and says in out,
                  f"isthmus -c, {what}: rc {p.returncode}, {out[-400:]!r}")
    c = env.write("bad.yaml", text.replace("spec:\n", f"spec:\n  pidFile: {keep}/x/isthmus.pid\n", 1))
    p = subprocess.run([env.isthmus, "-c", "-f", c], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
    out = p.stdout.decode()
    check(p.returncode == 1 and "spec.pidFile" in out and f"{keep} is not a directory" in out,
          f"isthmus -c, a pidFile below a file: rc {p.returncode}, {out[-400:]!r}")
    with open(keep) as f:
        check(f.read() == "do not lose me\n", "the regular file named as the control socket was changed")
    check(os.listdir(open_dir) == [], f"something was made in the world-writable directory: {os.listdir(open_dir)}")


@_test
def control_socket_refuses_worker_user(env):
    """With spec.user nobody and spec.group nogroup (as the package's
    isthmus:isthmus), the control socket is root:nogroup 0660: a process of
    the group that is not the workers' user is served, one running as the
    workers' user is refused at once and counted
    (isthmus_ctl_clients_dropped_total{reason="worker_user"}): a worker, which
    parses what the network sends, is no operator (it could set every endpoint
    to maint)."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        raise Skip("needs root and setpriv to act as other users")
    os.chmod(env.dir, 0o711)  # others may reach the socket inside; its mode decides
    aport = _start(env, extra="  user: nobody\n  group: nogroup\n")

    def ctl_as(uid):
        p = subprocess.run(["setpriv", f"--reuid={uid}", "--regid=nogroup", "--clear-groups",
                            os.path.join(env.build, "isthmusctl"), "-s", env.path("ctl.sock"), "show", "info"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
        return p.returncode, p.stdout.decode("utf-8", "replace")

    rc, out = ctl_as("daemon")
    check(rc == 0 and "generation: 1" in out, f"a member of the group (daemon): rc {rc} {out!r}")
    rc, out = ctl_as("nobody")
    check(rc != 0 and "generation" not in out, f"the workers' user was served: rc {rc} {out!r}")
    got = _admin_metric(aport, 'isthmus_ctl_clients_dropped_total{listener="control",reason="worker_user"}')
    check(got == 1, f"isthmus_ctl_clients_dropped_total worker_user {got}")
    check(env.get("/").status == 200, "no service after the refusal")


@_test
def stop_unbinds_at_once(env):
    """A graceful stop gives the ports up at once (HAProxy's soft stop): a
    client that connects while a slow response drains is refused at once,
    not left in a listen queue nobody accepts from until the drain ends (then
    reset); the response in flight still completes."""
    _start(env, admin=False, extra="")
    t, out = _slow_in_flight(env)
    os.kill(env.gateway.pid, signal.SIGTERM)

    def refused():
        try:
            socket.create_connection(("127.0.0.1", env.gw_port), timeout=1).close()
            return False
        except ConnectionRefusedError:
            return True
    poll(refused, 2, what="connections to the port to be refused during the drain")
    t.join(20)
    check(out.get("r") is not None and out["r"].status == 200, f"the response in flight: {out.get('r')}")


@_test
def second_stop_signal_stops_now(env):
    """A second SIGTERM during the drain (an operator who will not wait for
    a slow response, Ctrl-C twice) stops at once: the workers are killed and
    the master exits, well before the drain time (60 s) would end it; one
    SIGTERM alone keeps draining."""
    _start(env, admin=False, timeouts={"drain": "60s", "upstreamResponse": "60s"})
    out = {}

    def slow():
        try:
            out["r"] = env.get("/delay/30000", timeout=40)
        except Exception as e:  # the cut response
            out["r"] = e

    t = threading.Thread(target=slow)
    t.start()
    _wait_in_flight(env)
    os.kill(env.gateway.pid, signal.SIGTERM)
    poll(lambda: "stopping (SIGTERM)" in env.gateway.log(), 5, what="the drain to begin")
    check(env.gateway.p.poll() is None, "one SIGTERM did not drain the slow response")
    t0 = time.monotonic()
    os.kill(env.gateway.pid, signal.SIGTERM)
    env.gateway.p.wait(timeout=30)
    took = time.monotonic() - t0
    check(took < 10, f"the master took {took:.1f} s to stop after a second SIGTERM")
    check("SIGTERM during the drain: killing" in env.gateway.log(), "the hard stop is not logged")
    t.join(20)
    check("r" in out and getattr(out["r"], "status", None) != 200, f"the slow response was not cut: {out.get('r')}")


def _wait_in_flight(env):
    """Until a request is in flight at its endpoint (a connection accepted is
    not yet a request a drain waits for)."""
    poll(lambda: any(e["inflight"] for e in json.loads(ctl_cmd(env.path("ctl.sock"), "show endpoints json"))),
         5, what="the slow request to be in flight")


def _slow_in_flight(env):
    """A 2.5 s response under way in a thread; (the thread, {"r": its response} once done)."""
    out = {}

    def slow():
        out["r"] = env.get("/delay/2500", timeout=20)

    t = threading.Thread(target=slow)
    t.start()
    _wait_in_flight(env)
    return t, out


def _exe(pid):
    return os.readlink(f"/proc/{pid}/exe")


def _own_binary(env):
    """A copy of the binary that start_gateway runs then, which the test
    replaces as a package upgrade does: its path."""
    os.makedirs(env.path("bin"))
    exe = os.path.join(env.path("bin"), "isthmus")
    shutil.copy2(env.isthmus, exe)
    env.isthmus = exe
    return exe


def _replace_and_upgrade(env, exe):
    """The binary at exe replaced by a copy of itself, as dpkg replaces it,
    then SIGUSR2 to the master."""
    shutil.copy2(exe, exe + ".new")
    os.replace(exe + ".new", exe)
    os.kill(env.gateway.pid, signal.SIGUSR2)


def _upgrade_done(env, exe):
    """_replace_and_upgrade, until the upgrade is over."""
    done = env.gateway.log().count("upgrade: done")
    _replace_and_upgrade(env, exe)
    poll(lambda: env.gateway.log().count("upgrade: done") > done, 30, what="the upgrade to end")


def _hold_new_port(conf):
    """A second Gateway port added to the file at conf, on a port a socket of
    the test holds (an upgrade's new master cannot bind it): (socket, port)."""
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen(8)
    port = held.getsockname()[1]
    text = open(conf).read()
    with open(conf, "w") as f:
        f.write(text.replace("    hosts: [\"*\"]\n", f"    hosts: [\"*\"]\n  - port: {{number: {port}, name: extra, "
                             "protocol: HTTP}\n    hosts: [\"*\"]\n", 1))
    return held, port


@_test
def upgrade_starts_once_health_settles(env):
    """The new master's workers start as soon as its first round of health
    checks has settled (ism_upgrade_may_start), not at the 10 s bound kept
    for checks that never answer: with one healthy checked endpoint the
    upgrade is over in a few seconds."""
    exe = _own_binary(env)
    _start(env, health_checks=[SVC])
    poll(lambda: env.get("/").status == 200, 10, what="the checked endpoint to serve")
    t0 = time.monotonic()
    _upgrade_done(env, exe)
    took = time.monotonic() - t0
    check(took < 8, f"the upgrade took {took:.1f} s with a healthy checked endpoint (10 s is the bound "
                    "for checks that do not settle)")
    r = env.get("/")
    check(r.status == 200, f"after the upgrade: {r}")


@_test
def upgrade_old_workers_drain_their_time(env):
    """After an upgrade the old workers drain for timeouts.drain before the
    master kills them (its drain deadline is the drain time plus a grace of
    5 s): a request in flight on an old worker that ends within the drain
    time is answered whole, as a reload's draining worker answers it."""
    exe = _own_binary(env)
    _start(env, timeouts={"drain": "12s", "upstreamResponse": "20s"})
    out = {}

    def slow():
        try:
            r = env.get("/delay/8000", timeout=20)
            out["r"] = (r.status, r.body)
        except Exception as e:  # cut by the old worker's death
            out["r"] = repr(e)

    t = threading.Thread(target=slow)
    t.start()
    poll(lambda: "inflight=1" in ctl_cmd(env.path("ctl.sock"), "show endpoints"), 5,
         what="the request in flight on an old worker, waiting for the upstream")
    t0 = time.monotonic()
    _replace_and_upgrade(env, exe)
    t.join(25)
    took = time.monotonic() - t0
    r = out.get("r")
    check(isinstance(r, tuple) and r[0] == 200,
          f"the request in flight on an old worker: {r!r} after {took:.1f} s (drain 12s)")
    poll(lambda: "upgrade: done" in env.gateway.log(), 20, what="the upgrade to end")


@_test
def upgrade_keeps_every_connection(env):
    """SIGUSR2 upgrades the binary as HAProxy's master-worker reload does: the
    master checks the file with the binary now at its path, executes it in its
    own process (the pid stays), hands over the listening sockets and its
    workers, which serve until the new ones start and then drain. A client
    sending request after request on new connections meanwhile sees no
    refusal and no failure (a package upgrade restarted the service: every
    new connection was refused for the drain time), nor a 503 of an endpoint
    the new master has not checked yet (its workers start after a first
    round of health checks). A readiness probe says ready all along (the
    admin listener was refused while the new binary loaded, and said 503
    between the old workers' drain and the new ones' start). A binary whose
    check fails is not executed, and the running one serves on."""
    import urllib.request
    exe = _own_binary(env)
    aport = _start(env, timeouts={"drain": "5s"}, health_checks=[SVC])
    poll(lambda: env.get("/").status == 200, 10, what="the checked endpoint to serve")
    pid = env.gateway.pid
    old = {w["pid"] for w in json.loads(ctl_cmd(env.path("ctl.sock"), "show workers json"))}
    results, probes, stop = [], [], threading.Event()

    def client():
        t_end = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < t_end and len(results) < 5000:
            try:
                results.append(env.get("/", timeout=5).status)
            except Exception as e:  # a refused or cut connection
                results.append(repr(e))

    def prober():
        t_end = time.monotonic() + 60
        while not stop.is_set() and time.monotonic() < t_end and len(probes) < 5000:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{aport}/healthz/ready", timeout=5) as r:
                    probes.append(r.status)
            except Exception as e:  # a refusal, or 503
                probes.append(repr(e))

    threads = [threading.Thread(target=client), threading.Thread(target=prober)]
    for t in threads:
        t.start()
    try:
        poll(lambda: len(results) >= 20, 10, what="requests before the upgrade")
        shutil.copy2(exe, exe + ".new")
        os.replace(exe + ".new", exe)  # as dpkg replaces it
        check(_exe(pid).endswith(" (deleted)"), f"the running binary is not the replaced one: {_exe(pid)}")
        before = len(results)
        os.kill(pid, signal.SIGUSR2)
        poll(lambda: "upgrade: done" in env.gateway.log(), 30, what="the upgrade to end")
        poll(lambda: len(results) >= before + 20, 10, what="requests after the upgrade")
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    check(env.gateway.p.poll() is None and env.gateway.pid == pid, "the master did not stay")
    check(_exe(pid) == exe, f"the master runs {_exe(pid)}, want the new {exe}")
    new = {w["pid"] for w in json.loads(ctl_cmd(env.path("ctl.sock"), "show workers json"))}
    check(new and not (new & old), f"workers before {old}, after {new}")
    check(all(not os.path.exists(f"/proc/{p}") or open(f"/proc/{p}/stat").read().split()[2] == "Z"
              for p in old), "an old worker is still running")
    bad = [r for r in results if r != 200]
    check(not bad, f"{len(bad)} of {len(results)} requests failed during the upgrade: {bad[:5]}")
    bad = [r for r in probes if r != 200]
    check(probes and not bad, f"{len(bad)} of {len(probes)} readiness probes failed during the upgrade: {bad[:5]}")
    # A binary that fails its check is not executed.
    with open(exe + ".new", "w") as f:
        f.write("#!/bin/sh\necho 'this binary refuses the file' >&2\nexit 1\n")
    os.chmod(exe + ".new", 0o755)
    os.replace(exe + ".new", exe)
    os.kill(pid, signal.SIGUSR2)
    poll(lambda: "this binary refuses the file" in env.gateway.log(), 20, what="the refused upgrade")
    check("upgrade refused" in env.gateway.log(), "the refused upgrade is not logged as such")
    check(env.gateway.p.poll() is None and env.get("/").status == 200, "the running binary stopped serving")


@_test
def stop_during_an_upgrade_waits_for_old_workers(env):
    """SIGTERM while an upgrade's old workers still drain (one holds a slow
    response): the master waits for them as for its own, then ends; it
    ended at once, leaving them to init with their requests."""
    exe = _own_binary(env)
    _start(env, admin=False, timeouts={"drain": "10s", "upstreamResponse": "10s"})
    pid = env.gateway.pid
    old = {w["pid"] for w in json.loads(ctl_cmd(env.path("ctl.sock"), "show workers json"))}
    t, out = _slow_in_flight(env)
    os.kill(pid, signal.SIGUSR2)
    poll(lambda: "old workers draining" in env.gateway.log(), 20, what="the old workers to drain")
    os.kill(pid, signal.SIGTERM)
    env.gateway.p.wait(timeout=30)
    t.join(20)
    check(out.get("r") is not None and out["r"].status == 200, f"the slow response: {out.get('r')}")
    left = [p for p in old if os.path.exists(f"/proc/{p}") and open(f"/proc/{p}/stat").read().split()[2] != "Z"]
    check(not left, f"old workers {left} outlived their master")


@_test
def upgrade_old_workers_gone_or_rotated(env):
    """While an upgrade settles (a health check whose first answer takes 6 s),
    the old workers serve and reopen the access log on SIGUSR1 as the new
    ones do (logrotate's signal reached only the new set); once they are
    gone (killed), the new workers start at once (nothing accepted until the
    settling ended), and the deaths are warnings."""
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.3", 0))
    blackhole.listen(64)  # accepts, never answers: the check's first round takes its timeout
    log = env.path("access.log")
    exe = _own_binary(env)
    _start(env, admin=False, timeouts={"drain": "5s"},
           extra=(f"  accessLog: {{path: {log}, format: text, textFormat: \"%REQ(:PATH)%\\n\"}}\n"
                  "  healthChecks:\n  - {host: slow.internal, path: /healthz, interval: 10s, timeout: 6s,\n"
                  "    healthyThreshold: 1, unhealthyThreshold: 1}\n"),
           more=[virtual_service("slow", ["slow.example"],
                                 "  - route: [{destination: {host: slow.internal}}]\n"),
                 service_entry("slow", "slow.internal",
                               [{"address": "127.0.0.3", "port": blackhole.getsockname()[1]}])])
    pid = env.gateway.pid
    old = {w["pid"] for w in json.loads(ctl_cmd(env.path("ctl.sock"), "show workers json"))}
    try:
        _replace_and_upgrade(env, exe)
        poll(lambda: "its workers start after a first round" in env.gateway.log(), 20,
             what="the new master to settle")
        os.rename(log, log + ".1")
        os.kill(pid, signal.SIGUSR1)
        poll(lambda: env.get("/rotated").status == 200 and os.path.exists(log) and
             "/rotated" in open(log).read(), 5, what="the old workers to write the reopened log")
        t0 = time.monotonic()
        for p in old:
            os.kill(p, signal.SIGKILL)
        poll(lambda: env.get("/after").status == 200, 10, what="an answer once the old workers are gone")
        took = time.monotonic() - t0
        check(took < 3, f"{took:.1f} s without a worker after the old ones died (settling lasts 6 s)")
        check(env.gateway.log().count("killed by signal 9 during the upgrade") == len(old),
              "the old workers' deaths are not warnings")
    finally:
        blackhole.close()


def answered_by(env, want, most=60):
    """The upstreams that answered requests, sent until all of want answered
    (most requests at most)."""
    seen = set()
    for i in range(most):
        seen.add(env.get(f"/by{i}").header("x-upstream"))
        if seen >= want:
            break
    return seen


@_test
def endpoint_address_spellings(env):
    """An endpoint address is named as inet_ntop writes it, as Envoy names a
    host, and one address listed twice for a port is one endpoint (Envoy keeps
    one host per address): ::1, 0:0:0:0:0:0:0:1 and 0000::0001 were three
    endpoints (three shares of the balancing, three health slots), and
    isthmusctl set endpoint on [::1] left the other spellings serving."""
    ups = env.upstream(["[::1]:0=six", "127.0.0.2:0=four", "127.0.0.2:0=seven"], name="sp")
    gw_port = free_port()
    eps = [{"address": f'"{a}"', "port": ups["six"]} for a in ("::1", "0:0:0:0:0:0:0:1", "0000::0001")]
    eps += [{"address": "127.0.0.2", "port": ups["four"]}] * 2
    eps += [{"address": '"::FFFF:127.0.0.2"', "port": ups["four"]}, {"address": "127.0.0.2", "port": ups["seven"]}]
    env.start_gateway(env.write("isthmus.yaml", docs(
        appliance(env, workers=1), gateway(gw_port),
        virtual_service("ctl", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n"),
        service_entry("ctl", SVC, eps))), gw_port)
    sock = env.path("ctl.sock")
    six, four, mapped, seven = (f"{SVC}|[::1]:{ups['six']}", f"{SVC}|127.0.0.2:{ups['four']}",
                                f"{SVC}|[::ffff:127.0.0.2]:{ups['four']}", f"{SVC}|127.0.0.2:{ups['seven']}")
    keys = sorted(e["key"] for e in json.loads(ctl_cmd(sock, "show endpoints json")))
    check(keys == sorted([six, four, mapped, seven]), f"endpoints: {keys}")
    line = next((l for l in ctl_cmd(sock, "show clusters").split("\n") if SVC in l), "")
    check(re.search(r"\bendpoints=4\b", line), f"the cluster's endpoints: {line!r}")
    # Another spelling of an address finds its endpoint: a zone (no endpoint
    # has one), an IPv4-mapped address where only the IPv4 one is listed.
    for alt, want in ((f"{SVC}|[::1%lo]:{ups['six']}", six), (f"{SVC}|[::FFFF:127.0.0.2]:{ups['seven']}", seven)):
        out = ctl_cmd(sock, f"set endpoint {alt} state ready")
        check(out.startswith(f"ok: endpoint {want} state ready"), f"set endpoint {alt}: {out!r}")
    check(ctl_cmd(sock, f"set endpoint {six} state maint").startswith("ok"), "set state refused")
    seen = answered_by(env, {"four", "seven"})
    check(seen == {"four", "seven"}, f"with [::1] in maintenance, answers came from {seen}")
    # A key may name the address another way (an operator's, an older build's
    # at an upgrade): it finds the endpoint all the same.
    alt = f"{SVC}|[0000:0:0::0001]:{ups['six']}"
    out = ctl_cmd(sock, f"set endpoint {alt} state ready")
    check(out.startswith(f"ok: endpoint {six} state ready"), f"set endpoint {alt}: {out!r}")
    seen = answered_by(env, {"four", "six", "seven"})
    check(seen == {"four", "six", "seven"}, f"with [::1] ready again, answers came from {seen}")


@_test
def upgrade_keeps_endpoint_settings(env):
    """What isthmusctl set of the endpoints outlives a binary upgrade, as it
    outlives a reload: a drained endpoint stays drained (it took traffic again
    after a package upgrade), a weight stays set; also when the upgrade went
    through the wait mode first (a port held, then freed: the retry hands
    over the same)."""
    exe = _own_binary(env)
    ups = {n: env.upstream([f"{a}:0={n}"], name=n)[n] for n, a in (("a", "127.0.0.2"), ("b", "127.0.0.3"))}
    gw_port = free_port()
    conf = env.write("isthmus.yaml", docs(
        appliance(env, workers=1, timeouts={"drain": "5s"}), gateway(gw_port),
        virtual_service("ctl", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n"),
        service_entry("ctl", SVC, [{"address": "127.0.0.2", "port": ups["a"]},
                                   {"address": "127.0.0.3", "port": ups["b"]}])))
    env.start_gateway(conf, gw_port)
    sock = env.path("ctl.sock")
    pid = env.gateway.pid
    key = {n: f"{SVC}|{a}:{ups[n]}" for n, a in (("a", "127.0.0.2"), ("b", "127.0.0.3"))}
    check(ctl_cmd(sock, f"set endpoint {key['a']} state drain").startswith("ok"), "set state refused")
    check(ctl_cmd(sock, f"set endpoint {key['b']} weight 7").startswith("ok"), "set weight refused")

    def settings():
        eps = {e["key"]: e for e in json.loads(ctl_cmd(sock, "show endpoints json"))}
        return {n: (eps[k]["admin"], eps[k]["weight"], eps[k]["weight_set"]) for n, k in key.items()}

    want = {"a": ("drain", 1, False), "b": ("ready", 7, True)}
    check(settings() == want, f"before the upgrade: {settings()}")
    held, _ = _hold_new_port(conf)
    _replace_and_upgrade(env, exe)
    poll(lambda: "upgrade failed" in env.gateway.log(), 20, what="the failed start to be told")
    held.close()
    os.kill(pid, signal.SIGUSR2)
    poll(lambda: "upgrade: done" in env.gateway.log(), 30, what="the upgrade to end")
    check(settings() == want, f"after the upgrade: {settings()}")
    check("states and weights of 2 endpoints kept" in env.gateway.log(), "the handover is not logged")
    # The new master hands over what it was handed.
    kept = env.gateway.log().count("states and weights of 2 endpoints kept")
    _upgrade_done(env, exe)
    check(env.gateway.log().count("states and weights of 2 endpoints kept") == kept + 1 and settings() == want,
          f"after a second upgrade: {settings()}")
    got = {}
    for i in range(20):
        r = env.get(f"/{i}")
        got[r.body.split(b" ")[0]] = got.get(r.body.split(b" ")[0], 0) + 1
    check(set(got) == {b"b"}, f"requests after the upgrade reached {got}: the drained endpoint took some")


@_test
def upgrade_that_cannot_start_waits(env):
    """A new binary that passes its check but cannot start (a new port that
    another process holds: only a bind finds out) leaves the old workers
    serving under their master, as HAProxy's wait mode does (the master
    exited and every connection was refused); a second SIGUSR2, once the
    port is free, upgrades; SIGTERM in the wait drains them and ends,
    removing the control socket and the pid file as a stop does (they were
    left behind). In the wait, a command is answered that the upgrade failed
    and a readiness probe that the old workers serve (both waited unanswered
    in the backlog), at once behind idle connections (each held the wait
    100 ms, one after another)."""
    import urllib.error
    import urllib.request
    exe = _own_binary(env)
    pid_file = env.path("run/isthmus.pid")
    aport = _start(env, timeouts={"drain": "5s"}, extra=f"  pidFile: {pid_file}\n")
    pid = env.gateway.pid
    conf = env.path("isthmus.yaml")
    held, p2 = _hold_new_port(conf)
    _replace_and_upgrade(env, exe)
    poll(lambda: "upgrade failed" in env.gateway.log(), 20, what="the failed start to be told")
    check(env.gateway.p.poll() is None, "the master exited: nothing supervises the old workers")
    check(os.path.exists(pid_file) and open(pid_file).read().strip() == str(pid) and
          os.path.exists(env.path("ctl.sock")), "the wait keeps the pid file and the control socket")
    ans = ctl_cmd(env.path("ctl.sock"), "show info", timeout=10)
    check(ans.startswith("error: the upgrade failed"), f"a command in the wait: {ans!r}")
    with urllib.request.urlopen(f"http://127.0.0.1:{aport}/healthz/ready", timeout=10) as r:
        check(r.status == 200 and b"old workers serve" in r.read(), f"readiness in the wait: {r.status}")
    idle = [socket.create_connection(("127.0.0.1", aport), timeout=5) for _ in range(10)]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{aport}/healthz/ready", timeout=10) as r:
            check(r.status == 200, f"readiness behind idle connections in the wait: {r.status}")
        # The idle ones wait for their request (2 s at most), the probe did not wait for them.
        for s in idle:
            s.setblocking(False)
        check(not _answered(idle[-1]), "the idle connections were answered before the probe behind them")
        for s in idle:
            s.sendall(b"GET /healthz/live HTTP/1.1\r\nHost: x\r\n\r\n")
        poll(lambda: all(_answered(s) for s in idle), 5, interval=0.05,
             what="the wait to answer the idle connections' requests")
        check(all(s.recv(100).startswith(b"HTTP/1.1 200") for s in idle), "liveness in the wait: not 200")
    finally:
        for s in idle:
            s.close()
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{aport}/metrics", timeout=10)
        check(False, "/metrics answered 200 in the wait")
    except urllib.error.HTTPError as e:
        check(e.code == 503, f"/metrics in the wait: {e.code}")
    for i in range(10):
        check(env.get(f"/{i}").status == 200, f"request {i}: the old workers do not serve")
    held.close()
    os.kill(pid, signal.SIGUSR2)
    poll(lambda: "upgrade: done" in env.gateway.log(), 30, what="the second upgrade to end")
    check(env.get("/").status == 200, "no answer after the second upgrade")
    rc, out, err = curl(["-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{p2}/"])
    check(out == "200", f"the new port after the second upgrade: {rc} {out} {err}")
    # Again, and SIGTERM in the wait: the old workers drain, the master ends.
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen(8)
    text = open(conf).read()
    with open(conf, "w") as f:
        f.write(text.replace(f"number: {p2},", f"number: {held.getsockname()[1]},"))
    fails = env.gateway.log().count("upgrade failed")
    os.kill(pid, signal.SIGUSR2)
    poll(lambda: env.gateway.log().count("upgrade failed") > fails, 20, what="the second failed start")
    os.kill(pid, signal.SIGTERM)
    env.gateway.p.wait(timeout=30)
    held.close()
    check(env.gateway.p.returncode == 0, f"exit status {env.gateway.p.returncode} after SIGTERM in the wait")
    left = [p for p in (env.path("ctl.sock"), pid_file) if os.path.exists(p)]
    check(not left, f"left behind by the stop in the wait: {left}")


def _slow_key_set(env, dead, timeout):
    """Appends to the running file a RequestAuthentication whose key set is at
    dead (a socket that listens and never answers), fetched with timeout: a
    reload of it waits that long."""
    with open(env.path("isthmus.yaml"), "a") as f:
        f.write("---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"
                "metadata: {name: ra, namespace: istio-system}\nspec:\n  jwtRules:\n"
                "  - issuer: https://issuer.example\n"
                f"    jwksUri: http://127.0.0.1:{dead.getsockname()[1]}/jwks\n    timeout: {timeout}\n")


@_test
def reload_waiters_all_answered(env):
    """Three `reload` commands while a slow reload runs (a key set whose
    server never answers, timeout 1.5 s): the first runs, the other two are
    queued as one reload, and every client gets its answer (a third request
    must join the queued ticket, not replace it and leave the second client
    waiting for ever)."""
    _start(env, admin=False)
    dead = socket.socket()
    dead.bind(("127.0.0.1", free_port()))
    dead.listen(16)
    clients = []
    try:
        _slow_key_set(env, dead, "1500ms")
        for i in range(3):
            c = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            c.settimeout(12)
            c.connect(env.path("ctl.sock"))
            c.sendall(b"reload\n")
            clients.append(c)
            if i == 0:
                poll(lambda: _info(env).get("reloading"), 5, what="the first reload to run")
            elif i == 1:
                poll(lambda: _info(env).get("reload_queued"), 5, what="the second reload to be queued")
        for i, c in enumerate(clients):
            got = b""
            try:
                while True:
                    d = c.recv(4096)
                    if not d:
                        break
                    got += d
            except socket.timeout:
                raise TestFailure(f"reload client {i + 1} of 3 got no answer in 12 s (so far {got!r})")
            check(got.startswith(b"reload: generation"), f"reload client {i + 1}: {got!r}")
    finally:
        for c in clients:
            c.close()
        dead.close()


@_test
def stop_during_a_slow_reload(env):
    """SIGTERM while a reload waits for a key set that never comes (a JWKS
    server that accepts and never answers, timeout 15 s): the master ends
    once its workers have, abandoning the reload (it waited for the fetch's
    timeout, holding the pid file and the ports)."""
    _start(env, admin=False)
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    dead.listen(16)
    try:
        _slow_key_set(env, dead, "15s")
        os.kill(env.gateway.pid, signal.SIGHUP)
        poll(lambda: _info(env).get("reloading"), 5, what="the reload to wait for the key set")
        t0 = time.monotonic()
        os.kill(env.gateway.pid, signal.SIGTERM)
        env.gateway.p.wait(timeout=30)
        took = time.monotonic() - t0
        check(took < 5, f"the master took {took:.1f} s to stop during a reload waiting 15 s for a key set")
        check(env.gateway.p.returncode == 0, f"exit status {env.gateway.p.returncode}")
        check("reload in progress abandoned" in env.gateway.log(), "the abandoned reload is not logged")
        check(not os.path.exists(env.path("ctl.sock")), "the control socket was left behind")
    finally:
        dead.close()


@_test
def reload_answers_its_warnings(env):
    """`isthmusctl reload` answers the load's warnings with the generation it
    published (only the log had them): a route to a host without a
    ServiceEntry (every request 503), and fields only a start takes
    (controlSocket, admin.address) changed by the file."""
    aport = _start(env)
    conf = env.path("isthmus.yaml")
    text = open(conf).read()
    with open(conf, "w") as f:
        f.write(text.replace(f"host: {SVC}}}", "host: nothere.internal}")
                .replace(f"address: 127.0.0.1:{aport}", f"address: 127.0.0.1:{free_port()}")
                .replace("ctl.sock", "other.sock"))
    rc, out, err = _isthmusctl(env, "reload")
    check(rc == 0 and "generation 2 published" in out, f"reload: rc {rc} {out!r} {err!r}")
    for want in ("no ServiceEntry for host nothere.internal", "spec.controlSocket changed: takes effect at the "
                 "next start", "spec.admin.address changed"):
        check(want in out, f"the reload's answer lacks {want!r}: {out!r}")
    check(not os.path.exists(env.path("other.sock")), "the control socket moved at a reload")
    rc, out, err = _isthmusctl(env, "reload", "json")
    doc = json.loads(out)
    check(doc["result"] == "ok" and any("nothere.internal" in l for l in doc["lines"]),
          f"reload json: {doc}")
    # Compared with what the start took, not with the last reload: the same
    # file warns again (it did not: the running table had its values), and
    # the start's values back warn no more.
    check(any("spec.controlSocket changed" in l for l in doc["lines"]),
          f"a second reload of the changed file: {doc}")
    with open(conf, "w") as f:
        f.write(text.replace(f"host: {SVC}}}", "host: nothere.internal}"))
    rc, out, err = _isthmusctl(env, "reload")
    check(rc == 0 and "published" in out and "changed: takes effect" not in out,
          f"the start's values back: rc {rc} {out!r} {err!r}")


def _many_endpoints(net, n=5000):
    """A ServiceEntry of n STATIC endpoints 127.<net>.x.y, the host many.example
    routed to it."""
    eps = "".join(f"  - {{address: 127.{net}.{i // 250}.{i % 250 + 1}}}\n" for i in range(n))
    return (virtual_service("many", ["many.example"], "  - route: [{destination: {host: many.internal}}]\n") +
            "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: many}\nspec:\n"
            "  hosts: [many.internal]\n  location: MESH_EXTERNAL\n  resolution: STATIC\n"
            "  ports: [{number: 80, name: http, protocol: HTTP}]\n  endpoints:\n" + eps)


@_test
def reload_endpoint_ids_taken(env):
    """A reload that replaces 5,000 endpoints with 5,000 others needs more
    than the 8,192 endpoint ids, the running generation's being held: it is
    refused with the bound, the reason and the way out (it said only "No
    space left on device"), the old configuration serving; two steps fit."""
    _start(env)
    conf = env.path("isthmus.yaml")
    base = open(conf).read()
    with open(conf, "w") as f:
        f.write(base + "---\n" + _many_endpoints(1))
    rc, out, err = _isthmusctl(env, "reload")
    check(rc == 0 and "published" in out, f"reload with 5000 endpoints: rc {rc} {out!r} {err!r}")
    with open(conf, "w") as f:
        f.write(base + "---\n" + _many_endpoints(2))
    rc, out, err = _isthmusctl(env, "reload")
    check(rc == 1 and "the 8192 endpoint ids of the generations running, draining and loaded are all taken" in out
          and "two steps" in out, f"reload replacing 5000 endpoints: rc {rc} {out[:600]!r}")
    check(env.get("/").status == 200, "the old configuration does not serve after the refused reload")


@_test
def reload_file_too_large(env):
    """The file may be at most 16 MiB: a larger one is refused with that reason."""
    _start(env)
    conf = env.path("isthmus.yaml")
    text = open(conf).read()
    with open(conf, "a") as f:
        f.write(("#" * 1023 + "\n") * (17 * 1024))
    rc, out, err = _isthmusctl(env, "reload")
    check(rc == 1 and out.startswith("reload refused") and "larger than the 16 MiB limit" in out,
          f"reload of a 17 MiB file: rc {rc} {out!r} {err!r}")
    with open(conf, "w") as f:
        f.write(text)
    rc, out, err = _isthmusctl(env, "reload")
    check(rc == 0 and "generation 2 published" in out, f"reload of the file again: rc {rc} {out!r} {err!r}")
