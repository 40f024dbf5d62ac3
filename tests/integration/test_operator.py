# SPDX-License-Identifier: Apache-2.0
"""Integration tests of what a first-time operator meets: the two binaries'
options, the control socket's command list and JSON answers, the admin
listener's probes and metrics, the endpoint settings, the pid file.

Registered into run.py's list by register(test)."""

import json
import os
import re
import signal
import socket
import subprocess
import threading
import time

from harness import (Conn, Registry, TestFailure, appliance, check, ctl_cmd, docs, free_port, gateway, poll,
                     service_entry, virtual_service)

SVC = "op.test.internal"
_test = Registry()
register = _test.register


def _run(argv, timeout=20, env=None):
    p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout,
                       stdin=subprocess.DEVNULL, env=env)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def _ctl(env, *args):
    return _run([os.path.join(env.build, "isthmusctl"), "-s", env.path("ctl.sock"), *args])


def _start(env, n_endpoints=1, extra="", lb=None, checked=False, workers=2, route_name=None):
    """n upstreams (named a, b, ... on 127.0.0.2, .3, ...) behind one route, with an
    admin listener; lb: the DestinationRule's simple policy; checked: active health
    checks every 200 ms; route_name: the route's name (YAML single-quoted).
    Returns (admin port, [{name, address, port, key}])."""
    eps = []
    for i in range(n_endpoints):
        addr, name = f"127.0.0.{2 + i}", chr(ord("a") + i)
        port = env.upstream([f"{addr}:0={name}"], name=name)[name]
        eps.append({"name": name, "address": addr, "port": port, "key": f"{SVC}|{addr}:{port}"})
    gw_port, aport = free_port(), free_port()
    dr = ""
    if lb:
        dr = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: op}\n"
              f"spec:\n  host: {SVC}\n  trafficPolicy: {{loadBalancer: {{simple: {lb}}}}}\n")
    conf = env.write("isthmus.yaml", docs(*[d for d in (
        appliance(env, workers=workers, health_checks=(SVC,) if checked else (),
                  extra=f"  admin:\n    address: 127.0.0.1:{aport}\n" + extra),
        gateway(gw_port),
        virtual_service("op", ["*"], (f"  - name: '{route_name}'\n" if route_name else "") +
                        f"  {'  ' if route_name else '- '}route: [{{destination: {{host: {SVC}}}}}]\n"), dr,
        service_entry("op", SVC, eps)) if d]))
    env.start_gateway(conf, gw_port)
    env.conf = conf
    poll(lambda: env.get("/").status == 200, 10, what="200 through the gateway")
    return aport, eps


def _help_commands(text):
    """The command lines of a help text: "  WORDS [SYNTAX]" (two spaces, then not a space)."""
    return [l.strip() for l in text.splitlines() if re.match(r"^  \S", l) and not l.startswith("  -")]


# --------------------------------------------------------------------------- the command list


@_test
def ctl_help_offline(env):
    """isthmusctl --help, -h and `help` list the commands without a running
    master (exit 0); --version names the release isthmus -v names."""
    ctl = os.path.join(env.build, "isthmusctl")
    nowhere = env.path("no-such.sock")
    outs = []
    for args in (["--help"], ["-h"], ["-s", nowhere, "help"]):
        rc, out, err = _run([ctl, *args])
        check(rc == 0, f"isthmusctl {' '.join(args)}: exit {rc}, {out!r} {err!r}")
        outs.append(out)
    cmds = _help_commands(outs[0])
    check(all(o == outs[0] for o in outs), f"--help, -h and help differ: {outs!r}")
    for want in ("show info", "show workers", "show endpoints [CLUSTER]", "reload", "help"):
        check(want in cmds, f"{want!r} missing from isthmusctl --help: {cmds}")
    rc, out, _ = _run([ctl, "--version"])
    rc2, out2, _ = _run([env.isthmus, "-v"])
    check(rc == 0 and rc2 == 0 and out.split() == ["isthmusctl", out2.split()[1]],
          f"isthmusctl --version {out!r} vs isthmus -v {out2!r}")
    rc, out, err = _run([ctl, "--bogus"])
    check(rc == 2 and "usage:" in err, f"a bad option: exit {rc}, {err!r}")


@_test
def ctl_help_matches_master(env):
    """One list of commands: the master's `help` names exactly the commands
    isthmusctl's usage names; every command given without the arguments it
    needs, or with arguments it takes none of, answers its usage (not
    'unknown command')."""
    _start(env)
    sock = env.path("ctl.sock")
    master = _help_commands(ctl_cmd(sock, "help"))
    rc, out, _ = _ctl(env, "--help")
    check(master == _help_commands(out), f"the master's help {master} vs isthmusctl's {_help_commands(out)}")
    listed = json.loads(ctl_cmd(sock, "help json"))
    check([(c["command"] + " " + c["syntax"]).strip() for c in listed] == master,
          f"help json {listed} vs help {master}")
    for c in listed:
        if c["syntax"] and not c["syntax"].startswith("["):
            ans = ctl_cmd(sock, c["command"])
            check(ans.startswith(f"error: usage: {c['command']} "), f"{c['command']!r} alone: {ans!r}")
    for line in ("show info now", "reload please", "set endpoint 0 weight 5 extra",
                 "set endpoint 0 state drain now"):
        ans = ctl_cmd(sock, line)
        check(ans.startswith("error: usage: "), f"{line!r}: {ans!r}")
    # A command's words end at a space or the end: "show infox" is none.
    for line in ("show infox", "reloadx", "helpme"):
        ans = ctl_cmd(sock, line)
        check(ans.startswith("error: unknown command"), f"{line!r}: {ans!r}")
    check(ctl_cmd(sock, "").startswith("commands"), "an empty line does not answer the list")


# --------------------------------------------------------------------------- metrics

_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\[\\"n])*)"(,|$)')


def _scrape(aport):
    """/metrics parsed as the text format 0.0.4 demands: {name: [(labels, value)]},
    and {name: (type, help)}; a line that does not parse fails the test."""
    import urllib.request

    body = urllib.request.urlopen(f"http://127.0.0.1:{aport}/metrics", timeout=10).read().decode()
    samples, families = {}, {}
    for line in body.splitlines():
        if line.startswith("# HELP "):
            name, _, text = line[7:].partition(" ")
            families.setdefault(name, [None, None])[1] = text
            continue
        if line.startswith("# TYPE "):
            name, _, typ = line[7:].partition(" ")
            families.setdefault(name, [None, None])[0] = typ
            continue
        m = _SAMPLE.match(line)
        check(m is not None, f"/metrics line does not parse: {line!r}")
        labels = {}
        rest = m.group(3) or ""
        while rest:
            lm = _LABEL.match(rest)
            check(lm is not None, f"/metrics labels do not parse: {line!r}")
            labels[lm.group(1)] = re.sub(r'\\(.)', lambda x: "\n" if x.group(1) == "n" else x.group(1),
                                         lm.group(2))
            rest = rest[lm.end():]
        samples.setdefault(m.group(1), []).append((labels, float(m.group(4))))
    return samples, families


@_test
def metrics_label_escaping(env):
    """A route name may hold any character Istio allows in a string: in
    /metrics its label value is escaped (\\" \\\\), so the page still parses and
    the name reads back as written."""
    aport, _ = _start(env, route_name='a"b\\\\c')  # YAML single-quoted: a"b\\c
    samples, _ = _scrape(aport)
    routes = {l["route"] for l, _ in samples.get("isthmus_route_responses_total", [])}
    check(routes == {'a"b\\\\c'}, f"route labels read back as {routes}")


def _admin(aport, path, method="GET", timeout=5.0):
    with Conn("127.0.0.1", aport, timeout=timeout) as c:
        c.send(f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        return c.read_response(method=method)


def _value(samples, name, **labels):
    """The value of the sample of family name whose labels include labels (None: none)."""
    for l, v in samples.get(name, []):
        if all(l.get(k) == w for k, w in labels.items()):
            return v
    return None


def _served_count(env, ep):
    return int(env.ctl(ep["address"], ep["port"], "count"))


# --------------------------------------------------------------------------- admin listener


@_test
def admin_live_probe(env):
    """/healthz/live answers 200 while the master's loop turns, also during a
    graceful stop, when /healthz/ready answers 503 (a liveness probe must not
    kill a draining gateway)."""
    aport, eps = _start(env)
    for method in ("GET", "HEAD"):
        r = _admin(aport, "/healthz/live", method)
        check(r.status == 200, f"{method} /healthz/live answered {r}")
    check(_admin(aport, "/healthz/live").body == b"live\n", "GET /healthz/live body")
    # A request whose lines end in a bare LF (RFC 9112 2.2 lets a server take them) is answered at once.
    with socket.create_connection(("127.0.0.1", aport), timeout=1.5) as c:
        c.sendall(b"GET /healthz/live HTTP/1.1\nHost: 127.0.0.1\n\n")
        try:
            got = c.recv(4096)
        except socket.timeout:
            got = b"(nothing in 1.5 s)"
        check(got.startswith(b"HTTP/1.1 200 "), f"/healthz/live asked with bare LFs: {got!r}")
    # A HEAD answer has a head only (RFC 9110 9.3.2), whatever its page.
    for path in ("/healthz/live", "/healthz/ready", "/nope"):
        with socket.create_connection(("127.0.0.1", aport), timeout=5) as c:
            c.sendall(f"HEAD {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
            raw = b""
            while True:
                d = c.recv(65536)
                if not d:
                    break
                raw += d
        head, _, rest = raw.partition(b"\r\n\r\n")
        check(head.startswith(b"HTTP/1.1 ") and rest == b"", f"HEAD {path}: bytes after the head: {raw!r}")
    check(b"/healthz/live" in _admin(aport, "/nope").body, "the 404 page does not name /healthz/live")
    # A slow request keeps the drain going while the probes are asked.
    before = _served_count(env, eps[0])
    result = {}
    t = threading.Thread(target=lambda: result.update(r=env.get("/delay/2000", timeout=15)), daemon=True)
    t.start()
    poll(lambda: _served_count(env, eps[0]) > before, 5, what="the slow request to reach the upstream")
    os.kill(env.gateway.pid, signal.SIGTERM)
    poll(lambda: _admin(aport, "/healthz/ready", timeout=1).status == 503, 1.5, interval=0.02,
         what="/healthz/ready to answer 503 while draining")
    r = _admin(aport, "/healthz/live", timeout=1)
    check(env.gateway.alive() and r.status == 200, f"/healthz/live while draining: {r}")
    t.join(15)
    check(result.get("r") is not None and result["r"].status == 200, f"the slow request: {result}")


@_test
def metrics_process_and_build(env):
    """process_* as the Prometheus client libraries name them, for the master;
    CPU and memory per running worker; isthmus_build_info with the release and
    the libraries' versions."""
    aport, _ = _start(env)
    t0 = time.time()
    samples, families = _scrape(aport)
    pid = env.gateway.pid
    for name, typ in (("process_start_time_seconds", "gauge"), ("process_cpu_seconds_total", "counter"),
                      ("process_resident_memory_bytes", "gauge"), ("process_virtual_memory_bytes", "gauge"),
                      ("process_open_fds", "gauge"), ("process_max_fds", "gauge"),
                      ("isthmus_build_info", "gauge")):
        check(families.get(name, [None])[0] == typ and name in samples, f"{name} ({typ}) missing: {families.get(name)}")
    start = _value(samples, "process_start_time_seconds")
    check(t0 - 120 < start <= t0 + 1, f"process_start_time_seconds {start}, now {t0}")
    check(_value(samples, "process_cpu_seconds_total") >= 0, "negative CPU time")
    rss = _value(samples, "process_resident_memory_bytes")
    with open(f"/proc/{pid}/status") as f:
        vmrss = next(int(l.split()[1]) * 1024 for l in f if l.startswith("VmRSS:"))
    check(0.5 * vmrss <= rss <= 2 * vmrss, f"process_resident_memory_bytes {rss}, VmRSS {vmrss}")
    fds = _value(samples, "process_open_fds")
    check(3 <= fds <= len(os.listdir(f"/proc/{pid}/fd")) + 8, f"process_open_fds {fds}")
    with open(f"/proc/{pid}/limits") as f:
        soft = next(int(l.split()[3]) for l in f if l.startswith("Max open files"))
    check(_value(samples, "process_max_fds") == soft, f"process_max_fds vs /proc limits {soft}")
    workers = {int(l["worker"]) for l, _ in samples.get("isthmus_worker_cpu_seconds_total", [])}
    check(len(workers) == 2 and len(samples.get("isthmus_worker_resident_memory_bytes", [])) == 2,
          f"per-worker samples: {samples.get('isthmus_worker_cpu_seconds_total')}")
    check(all(v > 0 for _, v in samples["isthmus_worker_resident_memory_bytes"]), "a worker without memory")
    (labels, v), = samples["isthmus_build_info"]
    _, out, _ = _run([env.isthmus, "-v"])
    check(v == 1 and labels["version"] == out.split()[1], f"build_info {labels} vs isthmus -v {out!r}")
    check(all(re.match(r"^\d+\.\d+", labels[k]) for k in ("openssl", "pcre2", "libyaml", "liburing", "nghttp2")),
          f"build_info versions {labels}")


# --------------------------------------------------------------------------- endpoint settings


@_test
def maint_stops_health_checks(env):
    """drain and maint both take an endpoint out of new traffic; drain keeps its
    active health checks, maint suspends them (the endpoint then counts as
    unhealthy: nothing is known of it). Back to ready, a maint endpoint is
    checked at once and takes traffic again when that check passes. The admin
    state is a metric of its own."""
    aport, eps = _start(env, 3, lb="ROUND_ROBIN", checked=True)
    a, b, c = eps
    sock = env.path("ctl.sock")
    poll(lambda: all(_value(_scrape(aport)[0], "isthmus_endpoint_healthy", endpoint=f"{e['address']}:{e['port']}") == 1
                     for e in eps), 10, what="every endpoint healthy")
    check(ctl_cmd(sock, f"set endpoint {a['key']} state drain").startswith("ok:"), "drain")
    check(ctl_cmd(sock, f"set endpoint {b['key']} state maint").startswith("ok:"), "maint")

    def checks(s, e):
        return _value(s, "isthmus_health_checks_total", endpoint=f"{e['address']}:{e['port']}")
    s0 = _scrape(aport)[0]
    # Until a (drained) has been checked four more times: b's checks stand still
    # (one in flight when maint began may still end).
    poll(lambda: checks(_scrape(aport)[0], a) >= checks(s0, a) + 4, 10, what="4 more checks of the drained endpoint")
    s1 = _scrape(aport)[0]
    check(checks(s1, b) <= checks(s0, b) + 1, f"maint endpoint checked {checks(s1, b) - checks(s0, b)} times")
    ep = lambda e: f"{e['address']}:{e['port']}"  # noqa: E731
    check(_value(s1, "isthmus_endpoint_healthy", endpoint=ep(a)) == 1, "drained endpoint not healthy")
    check(_value(s1, "isthmus_endpoint_healthy", endpoint=ep(b)) == 0, "maint endpoint still reported healthy")
    for e, state in ((a, "drain"), (b, "maint"), (c, "ready")):
        got = {st: _value(s1, "isthmus_endpoint_admin_state", endpoint=ep(e), state=st)
               for st in ("ready", "drain", "maint")}
        check(got == {st: (1 if st == state else 0) for st in got}, f"admin_state of {e['name']}: {got}")
        check(_value(s1, "isthmus_endpoint_eligible", endpoint=ep(e)) == (1 if state == "ready" else 0),
              f"eligible of {e['name']} ({state})")
    hits = {env.get("/").header("x-upstream") for _ in range(20)}
    check(hits == {"c"}, f"with a drained and b in maint, traffic went to {hits}")
    check(ctl_cmd(sock, f"set endpoint {b['key']} state ready").startswith("ok:"), "ready")
    poll(lambda: "b" in {env.get("/").header("x-upstream") for _ in range(6)}, 5,
         what="traffic back to b after maint -> ready")
    check(checks(_scrape(aport)[0], b) > checks(s1, b), "b was not checked again after maint")


@_test
def weight_zero_no_new_requests(env):
    """`set endpoint ... weight 0` means what it means in HAProxy: no new
    requests (one in flight finishes), while the endpoint stays healthy;
    `weight configured` brings back the file's weight."""
    aport, eps = _start(env, 2, lb="ROUND_ROBIN")
    a, b = eps
    sock = env.path("ctl.sock")
    # A slow request on a: b drained while it is sent.
    check(ctl_cmd(sock, f"set endpoint {b['key']} state drain").startswith("ok:"), "drain b")
    before = _served_count(env, a)
    result = {}
    t = threading.Thread(target=lambda: result.update(r=env.get("/delay/1500", timeout=15)), daemon=True)
    t.start()
    poll(lambda: _served_count(env, a) > before, 5, what="the slow request to reach a")
    check(ctl_cmd(sock, f"set endpoint {b['key']} state ready").startswith("ok:"), "b ready")
    ans = ctl_cmd(sock, f"set endpoint {a['key']} weight 0")
    check(ans.startswith("ok:"), f"weight 0: {ans!r}")
    hits = [env.get("/").header("x-upstream") for _ in range(40)]
    check(hits.count("b") == 40, f"with a at weight 0, 40 requests went {sorted(set(hits))}: {hits.count('a')} to a")
    t.join(15)
    check(result.get("r") is not None and result["r"].status == 200 and result["r"].header("x-upstream") == "a",
          f"the request in flight on a: {result}")
    row = next(e for e in json.loads(ctl_cmd(sock, "show endpoints json")) if e["key"] == a["key"])
    check(row["weight"] == 0 and row["weight_set"] is True and row["health"] == "healthy", f"show endpoints: {row}")
    s = _scrape(aport)[0]
    check(_value(s, "isthmus_endpoint_eligible", endpoint=f"{a['address']}:{a['port']}") == 0, "a still eligible")
    check(ctl_cmd(sock, f"set endpoint {a['key']} weight configured").startswith("ok:"), "weight configured")
    hits = [env.get("/").header("x-upstream") for _ in range(20)]
    check(hits.count("a") == 10, f"back to the configured weight, 20 requests gave a {hits.count('a')}")
    row = next(e for e in json.loads(ctl_cmd(sock, "show endpoints json")) if e["key"] == a["key"])
    check(row["weight"] == 1 and row["weight_set"] is False, f"show endpoints after configured: {row}")
    for bad in ("-1", "1000001", "x", "0x10"):
        ans = ctl_cmd(sock, f"set endpoint {a['key']} weight {bad}")
        check(ans.startswith("error: weight must be"), f"weight {bad}: {ans!r}")
    # An endpoint's id is digits only, as a weight is ("-0" drained endpoint 0).
    check(ctl_cmd(sock, f"set endpoint {row['id']} weight configured").startswith("ok:"), "by id")
    for bad in (f"-{row['id']}", f"+{row['id']}", f"\t{row['id']}", "4000", "8191", "8192"):
        ans = ctl_cmd(sock, f"set endpoint {bad} state drain")
        check(ans.startswith("error: no endpoint"), f"set endpoint {bad!r}: {ans!r}")


# --------------------------------------------------------------------------- show workers, JSON


@_test
def show_workers_running_only(env):
    """After a reload that starts a new set of workers, `show workers` lists
    the running workers only, not the slots of the ones that exited."""
    aport, eps = _start(env, workers=2)
    sock = env.path("ctl.sock")
    with open(env.conf) as f:
        text = f.read()
    with open(env.conf, "w") as f:
        f.write(text.replace("  workers: 2\n", "  workers: 1\n"))
    ans = ctl_cmd(sock, "reload")
    check("published" in ans, f"reload: {ans!r}")
    poll(lambda: len(env.workers()) == 1, 15, what="the old workers to exit")
    listed = json.loads(ctl_cmd(sock, "show workers json"))
    check([w["pid"] for w in listed] == env.workers(), f"show workers json {listed} vs running {env.workers()}")
    text_rows = [l for l in ctl_cmd(sock, "show workers").splitlines() if l.strip()]
    check(len(text_rows) == 1 and f"pid={env.workers()[0]}" in text_rows[0], f"show workers: {text_rows}")


_TYPES = {
    "show info": {"version": str, "generation": int, "config": str, "workers": int, "ready": bool,
                  "reloading": bool, "reloads": int, "uptime_s": int, "requests": int},
    "show config": {"file": str, "checksum": str, "generation": int, "loaded": str},
    "show workers": {"index": int, "pid": int, "generation": int, "draining": bool, "retiring": bool,
                     "heartbeat_age_ms": int, "connections": int, "requests": int},
    "show clusters": {"name": str, "lb": str, "endpoints": int, "eligible": int, "ejected": int,
                      "priorities": int,
                      "loads": list, "panic": list, "outlier_detection": bool, "zone_aware": bool,
                      "tunnel": str, "overflow": int, "retries": int},
    "show endpoints": {"id": int, "key": str, "health": str, "ejected": bool, "ejections": int,
                       "ejected_by": str,
                       "admin": str, "weight": int, "weight_set": bool, "inflight": int, "requests": int,
                       "failures": int, "checks": int, "check_failures": int},
    "show events": {"time": str, "kind": str, "event": str},
    "help": {"command": str, "syntax": str, "help": str},
}
_REPORT = {"result": str, "lines": list, "errors": list}


def _typed(what, obj, types):
    for k, t in types.items():
        check(k in obj, f"{what}: no field {k!r} in {obj}")
        # bool is an int in Python: a boolean field must be a bool, a number never one.
        ok = isinstance(obj[k], t) and (t is bool or not isinstance(obj[k], bool))
        check(ok, f"{what}: {k} is {type(obj[k]).__name__} ({obj[k]!r}), want {t.__name__}")


@_test
def json_answers_typed(env):
    """Every control-socket answer in JSON parses, and its known fields have
    one type each: booleans are true/false, numbers are numbers, strings are
    escaped (a route name holding a quote). A failure is a report."""
    _, eps = _start(env, route_name='say "hi"')
    sock = env.path("ctl.sock")
    key = eps[0]["key"]
    ctl_cmd(sock, f"set endpoint {key} state drain")  # an event for show events
    poll(lambda: "set to drain" in ctl_cmd(sock, "show events"), 5, what="the admin event")
    ctl_cmd(sock, f"set endpoint {key} state ready")

    def ask(cmd):
        out = ctl_cmd(sock, cmd + " json")
        try:
            return json.loads(out)
        except ValueError as e:
            raise TestFailure(f"{cmd} json is not JSON ({e}): {out!r}")

    for cmd, types in _TYPES.items():
        doc = ask(cmd)
        for i, obj in enumerate(doc if isinstance(doc, list) else [doc]):
            _typed(f"{cmd}[{i}]", obj, types)
        check(doc, f"{cmd} json is empty")
    cl = ask("show clusters")[0]
    check(all(isinstance(x, int) and not isinstance(x, bool) for x in cl["loads"]) and
          all(isinstance(x, bool) for x in cl["panic"]), f"loads/panic of {cl}")
    routes = ask("show routes")
    vh = routes[0]["vhosts"][0]
    check(isinstance(routes[0]["port"], int) and isinstance(vh["https_redirect"], bool) and
          vh["routes"][0]["name"] == 'say "hi"' and isinstance(vh["routes"][0]["destinations"][0]["weight"], int),
          f"show routes json: {routes}")
    for cmd, result in ((f"set endpoint {key} weight 2", "ok"), ("explain GET /x", "ok"),
                        ("show endpoints no-such-cluster", "error"), ("frobnicate", "error"),
                        ("explain", "error"), ("show info extra", "error")):
        doc = ask(cmd)
        _typed(cmd, doc, _REPORT)
        check(doc["result"] == result, f"{cmd} json: {doc}")


# --------------------------------------------------------------------------- the binaries, the pid file


@_test
def isthmus_cli_options(env):
    """isthmus --help and -h (exit 0), --version and -v (the release), -vv (the
    build, each library's version, what the kernel offers), a bad option
    (exit 2 and the usage)."""
    for args in (["--help"], ["-h"]):
        rc, out, err = _run([env.isthmus, *args])
        check(rc == 0 and out.startswith("usage: isthmus") and "-vv" in out, f"isthmus {args}: {rc} {out!r} {err!r}")
    rc, v1, _ = _run([env.isthmus, "-v"])
    rc2, v2, _ = _run([env.isthmus, "--version"])
    check(rc == rc2 == 0 and v1 == v2 and re.fullmatch(r"isthmus \d+\.\d+\.\d+\n", v1), f"-v {v1!r}, --version {v2!r}")
    rc, out, err = _run([env.isthmus, "-vv"])
    check(rc == 0 and out.startswith(v1), f"-vv: {rc} {out!r} {err!r}")
    for want in (r"^Build: \S+ \S+", r"^Built with: .*openssl=\d", r"^  OpenSSL \d+\.\d+", r"^  PCRE2 \d+\.\d+, JIT",
                 r"^  libyaml \d+\.\d+", r"^  liburing \d+\.\d+", r"^  libnghttp2 \d+\.\d+", r"^Kernel: Linux ",
                 r"^  io_uring: (available|not available)", r"^  kTLS .*: (offered|not offered)"):
        check(re.search(want, out, re.M), f"-vv lacks {want!r}:\n{out}")
    if os.path.exists("/proc/sys/net/ipv4/tcp_available_ulp"):
        with open("/proc/sys/net/ipv4/tcp_available_ulp") as f:
            offered = "tls" in f.read().split()
        check(("kTLS (the \"tls\" upper-layer protocol): offered" in out) == offered,
              f"-vv's kTLS line vs tcp_available_ulp ({offered}):\n{out}")
    rc, out, err = _run([env.isthmus, "--bogus"])
    check(rc == 2 and "usage: isthmus" in err, f"a bad option: {rc} {err!r}")


@_test
def pid_file(env):
    """spec.pidFile: written (its directory made) once the master serves,
    holding its pid; a second isthmus on the same pid file refuses to start and
    leaves the first one's control socket alone; a stale file (a dead pid) is
    overwritten; the file goes at the stop."""
    pidf = env.path("run/isthmus.pid")
    aport, _ = _start(env, extra=f"  pidFile: {pidf}\n")
    poll(lambda: os.path.exists(pidf), 5, what="the pid file")
    with open(pidf) as f:
        check(f.read() == f"{env.gateway.pid}\n", "the pid file does not hold the master's pid")
    check(oct(os.stat(pidf).st_mode & 0o777) == "0o644", f"pid file mode {oct(os.stat(pidf).st_mode)}")
    # A second master, own ports and socket, the same pid file.
    other = env.write("other.yaml", open(env.conf).read()
                      .replace(env.path("ctl.sock"), env.path("other.sock"))
                      .replace(f"127.0.0.1:{aport}", f"127.0.0.1:{free_port()}")
                      .replace(f"number: {env.gw_port}", f"number: {free_port()}"))
    p = subprocess.run([env.isthmus, "-f", other], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=20, stdin=subprocess.DEVNULL)
    out = p.stdout.decode()
    check(p.returncode == 1 and f"isthmus already runs as pid {env.gateway.pid}" in out,
          f"the second master: exit {p.returncode}: {out}")
    check(not os.path.exists(env.path("other.sock")), "the second master bound its control socket")
    check(ctl_cmd(env.path("ctl.sock"), "show info").startswith("version"), "the first master's socket is gone")
    with open(pidf) as f:
        check(f.read() == f"{env.gateway.pid}\n", "the second master touched the pid file")
    os.kill(env.gateway.pid, signal.SIGTERM)
    env.gateway.p.wait(timeout=20)
    check(not os.path.exists(pidf), "the pid file outlived the master")
    # Stale: the pid of the master just stopped.
    with open(pidf, "w") as f:
        f.write(f"{env.gateway.pid}\n")
    g = env.start_gateway(env.conf, env.gw_port)
    poll(lambda: open(pidf).read() == f"{g.pid}\n", 5, what="the stale pid file overwritten")
    rc, out = env.check_config(env.write("bad.yaml", open(env.conf).read()
                                         .replace(f"pidFile: {pidf}", "pidFile: run/isthmus.pid")))
    check(rc == 1 and re.search(r"bad\.yaml:\d+:\d+: error: .*spec\.pidFile: must be an absolute path", out),
          f"a relative pidFile: {out}")
