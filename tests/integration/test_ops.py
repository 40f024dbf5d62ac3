"""Integration tests of operating features: the access log (JSON lines, reason
codes, reopening on SIGUSR1 for logrotate).

Registered into run.py's list by register(test)."""

import json
import os
import signal

from harness import Registry, appliance, check_wrk_clean, wrk_reap, check, docs, free_port, gateway, poll, service_entry, virtual_service

SVC = "ops.test.internal"
_test = Registry()
register = _test.register


def _lines(path):
    try:
        with open(path) as f:
            return [json.loads(l) for l in f if l.strip()]
    except FileNotFoundError:
        return []


@_test
def access_log(env):
    ports = env.upstream(["127.0.0.2:0=a"], name="a")
    gw_port = free_port()
    log = env.path("access.log")
    conf = env.write("isthmus.yaml", docs(
        appliance(env, extra=f"  accessLog: {{path: {log}, format: json}}\n"), gateway(gw_port),
        virtual_service("ops", ["*"], f"  - match: [{{uri: {{prefix: /app}}}}, {{uri: {{prefix: /status}}}}]\n"
                                      f"    route: [{{destination: {{host: {SVC}}}}}]\n"),
        service_entry("ops", SVC, [{"address": "127.0.0.2", "port": ports["a"]}])))
    env.start_gateway(conf, gw_port)
    check(env.get("/app/x?q=1", headers={"x-a": "1"}).status == 200, "request failed")
    check(env.get("/nowhere").status == 404, "no 404 for an unrouted path")
    check(env.get("/status/503").status == 503, "upstream 503 not passed on")
    poll(lambda: len(_lines(log)) >= 3, 5, what="three access-log lines")
    ok, nr, up503 = _lines(log)[:3]
    for rec in (ok, nr, up503):
        for field in ("time", "client", "method", "authority", "path", "route", "status", "bytes_in",
                      "bytes_out", "duration_ms", "upstream", "attempts", "flags"):
            check(field in rec, f"access-log line lacks {field}: {rec}")
    check(ok["status"] == 200 and ok["path"] == "/app/x?q=1" and ok["method"] == "GET", f"bad line {ok}")
    check(ok["upstream"].endswith(f"127.0.0.2:{ports['a']}") and ok["flags"] == "-", f"bad line {ok}")
    check(ok["bytes_out"] > 0 and ok["bytes_in"] > 0 and ok["client"] == "127.0.0.1", f"bad line {ok}")
    check(nr["status"] == 404 and nr["flags"] == "NR" and nr["upstream"] == "-", f"bad 404 line {nr}")
    # A 503 from the upstream is retried (Istio's default policy), then passed on.
    check(up503["status"] == 503 and up503["attempts"] == 3, f"bad retried-503 line {up503}")
    # logrotate: move the file, then SIGUSR1 to the master; new lines go to a new file.
    os.rename(log, log + ".1")
    os.kill(env.gateway.pid, signal.SIGUSR1)
    poll(lambda: env.get("/app/after").status == 200 and
         any(r["path"] == "/app/after" for r in _lines(log)), 5, what="lines in the reopened access log")
    check(all(r["path"] != "/app/after" for r in _lines(log + ".1")), "rotated file still written to")


def _fnv1a64(data):
    h = 0xcbf29ce484222325
    for b in data:
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return f"{h:016x}"


@_test
def isthmusctl_commands(env):
    import subprocess
    from collections import Counter

    ports = env.upstream(["127.0.0.2:0=a"], name="a")
    ports.update(env.upstream(["127.0.0.3:0=b"], name="b"))
    gw_port = free_port()
    dr = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ops}\n"
          f"spec:\n  host: {SVC}\n  trafficPolicy: {{loadBalancer: {{simple: ROUND_ROBIN}}}}\n")
    conf = env.write("isthmus.yaml", docs(
        appliance(env), gateway(gw_port),
        virtual_service("ops", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n"), dr,
        service_entry("ops", SVC, [{"address": "127.0.0.2", "port": ports["a"]},
                                   {"address": "127.0.0.3", "port": ports["b"]}])))
    env.start_gateway(conf, gw_port)
    ctl = os.path.join(env.build, "isthmusctl")

    def run(*args):
        p = subprocess.run([ctl, "-s", env.path("ctl.sock"), *args], stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=30)
        return p.returncode, p.stdout.decode()

    rc, out = run("show", "info")
    check(rc == 0 and "generation: 1" in out, f"show info: rc {rc} {out!r}")
    rc, out = run("show", "info", "json")
    info = json.loads(out)
    check(rc == 0 and info["generation"] == 1 and info["workers"] == 2, f"show info json: {out!r}")
    rc, out = run("show", "workers", "json")
    workers = json.loads(out)
    check(sorted(w["pid"] for w in workers) == env.workers(), f"show workers pids {workers} vs {env.workers()}")
    rc, out = run("show", "config", "json")
    cfg = json.loads(out)
    with open(conf, "rb") as f:
        want = _fnv1a64(f.read())
    check(cfg["file"] == conf and cfg["checksum"] == want, f"show config {cfg}, want checksum {want}")
    rc, out = run("show", "clusters", "json")
    cl = [c for c in json.loads(out) if c["name"].endswith(SVC)]
    check(len(cl) == 1 and cl[0]["endpoints"] == 2 and cl[0]["lb"] == "ROUND_ROBIN", f"show clusters {out!r}")
    rc, out = run("show", "endpoints", cl[0]["name"], "json")
    eps = json.loads(out)
    check(rc == 0 and len(eps) == 2 and all(e["admin"] == "ready" for e in eps), f"show endpoints {out!r}")
    key_a = f"{SVC}|127.0.0.2:{ports['a']}"

    def split(n):
        return Counter(env.get("/").header("x-upstream") for _ in range(n))

    # drain: no new requests to a; ready: back.
    rc, out = run("set", "endpoint", key_a, "state", "drain")
    check(rc == 0 and out.startswith("ok:"), f"set state drain: {rc} {out!r}")
    c = split(40)
    check(c == Counter({"b": 40}), f"with a drained, traffic went {dict(c)}")
    rc, _ = run("set", "endpoint", key_a, "state", "ready")
    poll(lambda: split(20)["a"] > 0, 5, what="traffic back to a after state ready")
    # weight 3 for a: round robin gives it three requests in four.
    rc, out = run("set", "endpoint", key_a, "weight", "3")
    check(rc == 0, f"set weight: {rc} {out!r}")
    c = split(400)
    check(280 <= c["a"] <= 320, f"weight 3:1 gave {dict(c)}")
    # Errors: exit status 1 and an error line.
    for args in (["frobnicate"], ["set", "endpoint", "nope", "state", "drain"],
                 ["set", "endpoint", key_a, "state", "sleepy"], ["show", "endpoints", "no-such-cluster"]):
        rc, out = run(*args)
        check(rc == 1 and out.startswith("error:"), f"{args}: rc {rc} {out!r}")
    env.write("isthmus.yaml", "kind: Nonsense\n")
    rc, out = run("reload")
    check(rc == 1 and "reload refused" in out, f"bad reload: rc {rc} {out!r}")
    rc, out = run("reload", "json")
    doc = json.loads(out)
    check(rc == 1 and doc["result"] == "refused" and doc["errors"] and
          all(e.startswith(conf + ":") for e in doc["errors"]), f"bad reload, json: rc {rc} {out!r}")
    rc, out = run("set", "endpoint", key_a, "weight", "0", "json")
    check(rc == 0 and json.loads(out)["result"] == "ok", f"set, json: rc {rc} {out!r}")
    rc, out = run("set", "endpoint", "nope", "weight", "1", "json")
    check(rc == 1 and json.loads(out)["result"] == "error", f"bad set, json: rc {rc} {out!r}")
    rc, out = run("show", "routes", "json")
    routes = json.loads(out)
    check(rc == 0 and routes[0]["port"] == gw_port and
          routes[0]["vhosts"][0]["routes"][0]["destinations"][0]["cluster"] == cl[0]["name"],
          f"show routes json: {out!r}")
    rc, out = run("show", "routes")
    check(rc == 0 and f"port {gw_port}" in out and cl[0]["name"] in out, f"show routes: {out!r}")
    rc, out = run("explain", "GET", "/x", "json")
    doc = json.loads(out)
    check(rc == 0 and any(l.startswith("route: ") for l in doc["lines"]), f"explain, json: {out!r}")
    rc, out = run("show", "events", "json")
    kinds = [(e["kind"], e["event"]) for e in json.loads(out)]
    check(("admin", f"{key_a} set to drain") in kinds and ("admin", f"{key_a} set to ready") in kinds,
          f"show events lacks the admin changes: {kinds}")
    check(any(k == "reload" and e.startswith("refused") for k, e in kinds), f"no refused reload in {kinds}")


@_test
def systemd_notify(env):
    """Type=notify: READY=1 once serving, RELOADING=1 then READY=1 around a
    reload, STOPPING=1 at a graceful stop, as sd_notify sends them to systemd."""
    import socket

    ports = env.upstream(["127.0.0.2:0=a"], name="a")
    gw_port = free_port()
    sock_path = env.path("notify.sock")
    nsock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    nsock.bind(sock_path)
    nsock.settimeout(5)
    conf = env.write("isthmus.yaml", docs(
        appliance(env), gateway(gw_port),
        virtual_service("ops", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n"),
        service_entry("ops", SVC, [{"address": "127.0.0.2", "port": ports["a"]}])))
    os.environ["NOTIFY_SOCKET"] = sock_path
    try:
        env.start_gateway(conf, gw_port)
    finally:
        del os.environ["NOTIFY_SOCKET"]

    def next_msg():
        return nsock.recv(4096).decode()

    try:
        m = next_msg()
        check("READY=1" in m and "generation 1" in m, f"first notification {m!r}")
        os.kill(env.gateway.pid, signal.SIGHUP)
        m = next_msg()
        check(m.startswith("RELOADING=1") and "MONOTONIC_USEC=" in m, f"at reload {m!r}")
        m = next_msg()
        check("READY=1" in m and "generation 2" in m, f"after reload {m!r}")
        os.kill(env.gateway.pid, signal.SIGTERM)
        m = next_msg()
        check("STOPPING=1" in m, f"at stop {m!r}")
    except socket.timeout:
        raise AssertionError("no sd_notify message within 5 s")
    finally:
        nsock.close()


@_test
def explain_matches_behaviour(env):
    """explain names the route, cluster and endpoint that real requests then get:
    a header route to a consistent-hash cluster (a stable pick), the default
    route, and a path that no route matches."""
    import subprocess

    ports = {}
    for i, addr in enumerate(("127.0.0.2", "127.0.0.3", "127.0.0.4")):
        ports.update(env.upstream([f"{addr}:0=e{i}"], name=f"e{i}"))
    gw_port = free_port()
    vs = (f"  - name: by-user\n    match: [{{headers: {{x-user: {{prefix: u}}}}}}]\n"
          f"    route: [{{destination: {{host: {SVC}}}}}]\n"
          f"  - name: default\n    match: [{{uri: {{prefix: /app}}}}]\n"
          f"    route: [{{destination: {{host: {SVC}}}}}]\n")
    dr = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ops}\n"
          f"spec:\n  host: {SVC}\n  trafficPolicy:\n    loadBalancer:\n"
          "      consistentHash: {httpHeaderName: x-user}\n")
    conf = env.write("isthmus.yaml", docs(
        appliance(env), gateway(gw_port), virtual_service("ops", ["*"], vs), dr,
        service_entry("ops", SVC, [{"address": a, "port": ports[f"e{i}"]} for i, a in
                                   enumerate(("127.0.0.2", "127.0.0.3", "127.0.0.4"))])))
    env.start_gateway(conf, gw_port)
    ctl = os.path.join(env.build, "isthmusctl")
    name_of = {f"127.0.0.{i + 2}:{ports[f'e{i}']}": f"e{i}" for i in range(3)}

    def explain(*args):
        p = subprocess.run([ctl, "-s", env.path("ctl.sock"), "explain", *args], stdout=subprocess.PIPE,
                           timeout=30)
        return p.returncode, p.stdout.decode()

    for user in ("u1", "u2", "u3", "u4"):
        rc, out = explain("GET", f"http://shop.example:{gw_port}/app/x", f"x-user={user}")
        check(rc == 0 and "route: by-user" in out and "present (the pick below is stable)" in out,
              f"explain for {user}: {out}")
        predicted = name_of[out.split("endpoint: ")[1].split()[0]]
        got = {env.get("/app/x", headers={"x-user": user}).header("x-upstream") for _ in range(5)}
        check(got == {predicted}, f"explain predicted {predicted} for {user}, requests went to {got}")
    rc, out = explain("GET", f"http://shop.example:{gw_port}/app/y")
    check("route: default" in out, f"explain without the header: {out}")
    rc, out = explain("GET", f"http://shop.example:{gw_port}/elsewhere")
    check("404 (NR)" in out and env.get("/elsewhere").status == 404, f"explain for no route: {out}")


@_test
def reload_listeners_under_load(env):
    """50 reloads under wrk, alternating route, endpoint and listener/worker-count
    changes: the latter start a new worker set on the new sockets while the old
    one drains; no request fails, the added port answers, the removed one closes,
    and the old workers exit."""
    import socket
    import subprocess

    from harness import ctl_cmd

    ports = env.upstream(["127.0.0.2:0=a"], name="a")
    ports.update(env.upstream(["127.0.0.3:0=b"], name="b"))
    gw_port, extra_port = free_port(), free_port()

    def make(weights_swapped, with_b, extra_listener):
        wa, wb = (25, 75) if weights_swapped else (75, 25)
        eps = [{"address": "127.0.0.2", "port": ports["a"], "labels": {"v": "a"}}]
        if with_b:
            eps.append({"address": "127.0.0.3", "port": ports["b"], "labels": {"v": "a"}})
        gw = gateway(gw_port)
        if extra_listener:
            gw += (f"  - port: {{number: {extra_port}, name: extra, protocol: HTTP}}\n"
                   "    hosts: [\"*\"]\n")
        return docs(
            appliance(env, workers=2 if extra_listener else 1,
                      timeouts={"drain": "5s", "idle": "5s"}), gw,
            virtual_service("ops", ["*"], f"  - route:\n"
                                          f"    - {{destination: {{host: {SVC}}}, weight: {wa}}}\n"
                                          f"    - {{destination: {{host: {SVC}}}, weight: {wb}}}\n"),
            service_entry("ops", SVC, eps))

    state = [False, True, False]
    conf = env.write("isthmus.yaml", make(*state))
    env.start_gateway(conf, gw_port)
    sock = env.path("ctl.sock")
    wrk = subprocess.Popen(["wrk", "-t1", "-c16", "-d60s", "--timeout", "3s", f"http://127.0.0.1:{gw_port}/"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    listener_changes = 0
    try:
        poll(lambda: int(ctl_cmd(sock, "show info").split("requests: ")[1].split()[0]) > 100, 5,
             what="wrk traffic through the gateway")
        for i in range(50):
            kind = i % 3
            state[kind] = not state[kind]
            tmp = conf + ".tmp"
            with open(tmp, "w") as f:
                f.write(make(*state))
            os.replace(tmp, conf)
            answer = ctl_cmd(sock, "reload")
            check(f"generation {i + 2} published" in answer, f"reload {i + 1} ({state}): {answer}")
            if kind == 2:
                listener_changes += 1
                if state[2]:
                    poll(lambda: socket.create_connection(("127.0.0.1", extra_port), 1).close() is None,
                         5, what="the added listener to accept")
            check(wrk.poll() is None, "wrk ended early")
        wrk.send_signal(signal.SIGINT)
        out, _ = wrk.communicate(timeout=10)
    finally:
        wrk_reap(wrk)
    check_wrk_clean(out, 500, "during the reloads")
    # The last state: the extra listener answers exactly when it is configured.
    if state[2]:
        check(http_ok(extra_port), "the extra listener does not answer")
    else:
        try:
            socket.create_connection(("127.0.0.1", extra_port), 1).close()
            raise AssertionError(f"port {extra_port} still accepts after its listener was removed")
        except OSError:
            pass
    # Old worker sets exit after draining: only the current set is left (bounded wait).
    want = 2 if state[2] else 1
    poll(lambda: len(env.workers()) == want, 12, what=f"the old workers to exit ({want} left)")
    check(listener_changes >= 16, "too few listener changes")


def http_ok(port):
    import urllib.request

    try:
        return urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=3).status == 200
    except OSError:
        return False


@_test
def metrics_latency_and_clusters(env):
    """The request-duration histogram and the per-cluster counters follow the
    traffic actually sent: 10 fast requests and 3 slow (/delay/300) ones."""
    import urllib.request

    ports = env.upstream(["127.0.0.2:0=a"], name="a")
    gw_port, admin = free_port(), free_port()
    conf = env.write("isthmus.yaml", docs(
        appliance(env, extra=f"  admin: {{address: 127.0.0.1:{admin}}}\n"), gateway(gw_port),
        virtual_service("ops", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n"),
        service_entry("ops", SVC, [{"address": "127.0.0.2", "port": ports["a"]}])))
    env.start_gateway(conf, gw_port)

    def scrape():
        body = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
        return {l.rsplit(" ", 1)[0]: float(l.rsplit(" ", 1)[1]) for l in body.splitlines()
                if l and not l.startswith("#")}

    before = scrape()
    for _ in range(10):
        check(env.get("/").status == 200, "fast request failed")
    for _ in range(3):
        check(env.get("/delay/300").status == 200, "slow request failed")
    for _ in range(2):
        check(env.get("/status/404").status == 404, "404 not passed on")
    after = scrape()

    def delta(name):
        return after.get(name, 0) - before.get(name, 0)

    check(delta("isthmus_request_duration_seconds_count") == 15, f"histogram count moved by "
          f"{delta('isthmus_request_duration_seconds_count')}, want 15")
    check(delta('isthmus_request_duration_seconds_bucket{le="0.25"}') == 12,
          "want 12 requests at or under 250 ms (10 fast, 2 404s)")
    check(delta('isthmus_request_duration_seconds_bucket{le="0.5"}') == 15, "want all 15 under 500 ms")
    check(delta("isthmus_request_duration_seconds_sum") >= 0.9, "3 x 300 ms missing from the sum")
    cl = f"outbound|80||{SVC}"
    ok2xx = delta(f'isthmus_cluster_responses_total{{cluster="{cl}",code_class="2xx"}}')
    check(ok2xx == 13, f"cluster 2xx moved by {ok2xx}, want 13")
    check(delta(f'isthmus_cluster_responses_total{{cluster="{cl}",code_class="4xx"}}') == 2, "cluster 4xx")
    check(delta('isthmus_listener_responses_total{listener="http",code_class="2xx"}') == 13, "listener 2xx")
    route = 'isthmus_route_responses_total{listener="http",route="default/ops#0",code_class="4xx"}'
    check(delta(route) == 2, f"route 4xx moved by {delta(route)}")
