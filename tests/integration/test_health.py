# SPDX-License-Identifier: Apache-2.0
"""Integration tests of the active health checks as the rest of the gateway
sees them: which endpoint a check decides, what waits for a first round of
checks (the start, a reload), and what `show events` says of the
endpoints.

Registered into run.py's list by register(test)."""

import json
import socket
import threading

from harness import (Env, Registry, TestFailure, appliance, check, ctl_cmd, docs, free_port, gateway, http_get,
                     no_panic_rule, poll, service_entry, virtual_service)

_test = Registry()
register = _test.register

SVC = "hc.test.internal"


def _route(host=SVC):
    return virtual_service("hc", ["*"], f"  - route: [{{destination: {{host: {host}}}}}]\n")


def _endpoints(env):
    """'show endpoints json' by key."""
    return {e["key"]: e for e in json.loads(ctl_cmd(env.path("ctl.sock"), "show endpoints json"))}


def _reload(env):
    ans = ctl_cmd(env.path("ctl.sock"), "reload", timeout=30)
    check("published" in ans, f"reload: {ans!r}")


@_test
def events_reused_endpoint_slot(env):
    """`show events` after an endpoint slot is reused: a drained endpoint that a
    reload removes frees its slot (the sweep), and a later reload gives that
    slot to a new endpoint, whose admin state and health were reported as
    changes of the old one's ("c set to ready", "c is now unhealthy"),
    although nobody set it and nothing was known of it before. The slot's
    incarnation tells a new endpoint, as for the outlier slots."""
    addrs = {"a": "127.0.0.2", "b": "127.0.0.4", "c": "127.0.0.3"}
    ports = {n: env.upstream([f"{a}:0={n}"], name=n)[n] for n, a in addrs.items()}
    Env.ctl(addrs["c"], ports["c"], "health/fail")
    key = {n: f"{SVC}|{addrs[n]}:{ports[n]}" for n in addrs}
    gw = free_port()
    sock = env.path("ctl.sock")

    def conf(names):
        return env.write("isthmus.yaml", docs(
            appliance(env, health_checks=[SVC]), gateway(gw), _route(),
            service_entry("hc", SVC, [{"address": addrs[n], "port": ports[n]} for n in names])))

    env.start_gateway(conf("a"), gw)
    poll(lambda: _endpoints(env).get(key["a"], {}).get("health") == "healthy", 10,
         what="a healthy")
    a_id = _endpoints(env)[key["a"]]["id"]
    ans = ctl_cmd(sock, f"set endpoint {key['a']} state drain")
    check(ans.startswith("ok"), f"set endpoint: {ans!r}")
    poll(lambda: f"{key['a']} set to drain" in ctl_cmd(sock, "show events"), 5, what="a's drain event")
    conf("b")
    _reload(env)
    # a's slot is freed once no generation holds it, and then no longer listed.
    poll(lambda: key["a"] not in _endpoints(env), 15, what="a's endpoint slot swept")
    conf("bc")
    _reload(env)
    eps = _endpoints(env)
    check(eps[key["c"]]["id"] == a_id, f"c took slot {eps[key['c']]['id']}, not a's freed {a_id}: {eps}")
    poll(lambda: _endpoints(env)[key["c"]]["checks"] >= 2, 10, what="two checks of c")
    events = ctl_cmd(sock, "show events")
    bad = [line for line in events.splitlines()
           if key["c"] in line and (" admin " in line or "is now unhealthy" in line)]
    check(not bad, f"events of a new endpoint in a reused slot: {bad}\n{events}")


def _two_ports(env, gw, port, checks):
    """SVC's ports 80 and 8080 both reaching the endpoint's port (targetPort),
    / routed to 80 and /admin to 8080, no panic (a cluster whose endpoints
    fail their checks answers 503), with the checks of checks: {service
    port: path}."""
    hc = "  healthChecks:\n" + "".join(
        f"  - {{host: {SVC}, port: {p}, path: {path}, interval: 200ms, timeout: 500ms,"
        " healthyThreshold: 1, unhealthyThreshold: 1}\n" for p, path in checks.items())
    se = ("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: hc}\nspec:\n"
          f"  hosts: [{SVC}]\n  ports:\n"
          f"  - {{number: 80, name: http, protocol: HTTP, targetPort: {port}}}\n"
          f"  - {{number: 8080, name: http-admin, protocol: HTTP, targetPort: {port}}}\n"
          "  resolution: STATIC\n  endpoints: [{address: 127.0.0.2}]\n")
    routes = (f"  - match: [{{uri: {{prefix: /admin}}}}]\n"
              f"    route: [{{destination: {{host: {SVC}, port: {{number: 8080}}}}}}]\n"
              f"  - route: [{{destination: {{host: {SVC}, port: {{number: 80}}}}}}]\n")
    return env.write("isthmus.yaml", docs(
        appliance(env, extra=hc), gateway(gw), virtual_service("hc", ["*"], routes), se,
        no_panic_rule("hc", SVC)))


@_test
def health_check_per_service_port(env):
    """Two service ports that reach the same endpoint port (the same
    targetPort) are two clusters, each with its own hosts and health checker
    in Envoy: a check configured on port 8080 only (failing) took port 80's
    cluster down too, and with a check on each port only one of them ran,
    deciding both. Each port's endpoint now has its own slot
    (SVC:<port>|address:port) and its own check's verdict."""
    port = env.upstream(["127.0.0.2:0=a"], name="a")["a"]
    gw = free_port()
    key = {p: f"{SVC}:{p}|127.0.0.2:{port}" for p in (80, 8080)}
    env.start_gateway(_two_ports(env, gw, port, {8080: "/status/503"}), gw)
    poll(lambda: env.get("/admin").status == 503, 10, what="port 8080's failing check to take its cluster down")
    poll(lambda: env.get("/").status == 200, 5, what="port 80, which has no check, to serve")
    eps = _endpoints(env)
    check(eps.get(key[80], {}).get("health") == "healthy" and eps[key[80]]["checks"] == 0,
          f"port 80's endpoint: {eps}")
    check(eps.get(key[8080], {}).get("health") == "unhealthy", f"port 8080's endpoint: {eps}")

    # A check per port: port 80's passes, 8080's fails; both run.
    _two_ports(env, gw, port, {8080: "/status/503", 80: "/healthz"})
    _reload(env)
    poll(lambda: all(e["checks"] >= 2 for k, e in _endpoints(env).items() if k in key.values()), 10,
         what="two checks of each port's endpoint")
    eps = _endpoints(env)
    check(eps[key[80]]["check_failures"] == 0 and eps[key[80]]["health"] == "healthy", f"port 80's: {eps}")
    check(eps[key[8080]]["check_failures"] == eps[key[8080]]["checks"], f"port 8080's: {eps}")
    check(env.get("/").status == 200 and env.get("/admin").status == 503,
          "port 80 serves and port 8080 does not")


def _ready(aport):
    """GET /healthz/ready: its status, or None when no answer came."""
    try:
        return http_get(aport, "/healthz/ready", timeout=5).status
    except (OSError, EOFError, TestFailure):
        return None


@_test
def health_first_round_before_serving(env):
    """At the start the workers, and readiness, wait for the first round of
    health checks, as Envoy starts its listeners once its clusters have
    initialised, their first health checks included: /healthz/ready said 200
    at once and a checked service answered 503 until its endpoint's first
    check (here 700 ms) had passed. A request sent as the listener opens is
    served once the round is over, with 200; readiness is 200 only with the
    endpoint healthy; a service whose check never answers (timeout 1.5 s)
    does not hold the start past its timeout, and answers 503."""
    port = env.upstream(["127.0.0.2:0=web"], name="web")["web"]
    gw, aport = free_port(), free_port()
    dead = "dead.test.internal"
    hc = (f"  admin:\n    address: 127.0.0.1:{aport}\n  healthChecks:\n"
          f"  - {{host: {SVC}, path: /delay/700, interval: 30s, timeout: 5s}}\n"
          f"  - {{host: {dead}, path: /delay/30000, interval: 30s, timeout: 1500ms}}\n")
    routes = (f"  - match: [{{uri: {{prefix: /dead}}}}]\n"
              f"    route: [{{destination: {{host: {dead}}}}}]\n"
              f"  - route: [{{destination: {{host: {SVC}}}}}]\n")
    env.start_gateway(env.write("isthmus.yaml", docs(
        appliance(env, extra=hc), gateway(gw), virtual_service("hc", ["*"], routes),
        service_entry("hc", SVC, [{"address": "127.0.0.2", "port": port}]),
        service_entry("dead", dead, [{"address": "127.0.0.2", "port": port}]),
        no_panic_rule("hc", SVC), no_panic_rule("dead", dead))), gw)
    r = env.get("/")
    check(r.status == 200, f"a request sent as the gateway started: {r}")
    poll(lambda: _ready(aport) == 200, 10, interval=0.02, what="readiness")
    eps = _endpoints(env)
    web = next(e for k, e in eps.items() if k.startswith(SVC + "|"))
    check(web["health"] == "healthy", f"ready with the checked endpoint {web}")
    check(env.get("/").status == 200, "the checked service once ready")
    check(env.get("/dead").status == 503, "the service whose check timed out")


@_test
def reload_warms_health_checks(env):
    """A reload that moves a route to a service with an active health check
    is published once the new endpoint's first check has ended (here 700
    ms), as Envoy warms a new cluster, its first health checks included,
    before it replaces the one serving: the requests meanwhile go to the old
    destination, where every one answered 503 until that check passed."""
    ports = {n: env.upstream([f"{a}:0={n}"], name=n)[n] for n, a in (("old", "127.0.0.2"), ("new", "127.0.0.3"))}
    gw = free_port()
    new = "new.test.internal"
    hc = (f"  healthChecks:\n"
          f"  - {{host: {new}, path: /delay/700, interval: 30s, timeout: 5s}}\n")

    def conf(host):
        return env.write("isthmus.yaml", docs(
            appliance(env, extra=hc), gateway(gw), _route(host),
            service_entry("old", SVC, [{"address": "127.0.0.2", "port": ports["old"]}]),
            service_entry("new", new, [{"address": "127.0.0.3", "port": ports["new"]}]),
            no_panic_rule("new", new)))

    env.start_gateway(conf(SVC), gw)
    poll(lambda: env.get("/").status == 200, 10, what="200 from the old service")
    conf(new)
    answers, stop = [], threading.Event()

    def load():
        while not stop.is_set():
            try:
                r = env.get("/", timeout=5)
                answers.append((r.status, r.header("x-upstream")))
            except (OSError, EOFError) as e:
                answers.append((type(e).__name__, None))

    t = threading.Thread(target=load, daemon=True)
    t.start()
    try:
        _reload(env)
        n = len(answers)
        poll(lambda: len(answers) > n + 5, 10, what="answers after the reload")
    finally:
        stop.set()
        t.join(10)
    bad = [a for a in answers if a[0] != 200]
    check(not bad, f"{len(bad)} of {len(answers)} answers not 200 around the reload: {bad[:5]}")
    check(answers[-1][1] == "new", f"the last answers came from {answers[-3:]}")
    check(env.get("/").header("x-upstream") == "new", "after the reload, the new service")


@_test
def health_expected_statuses_edges(env):
    """expectedStatuses are Envoy's half-open ranges made of Istio's inclusive
    "200-299": the default [200] does not take a 201; "200-299" takes 299
    but not 300. Three services, one endpoint each, checked at a path that
    answers that status; without panic (minHealthPercent 0) a failing one
    answers 503."""
    cases = {"a": ("/status/201", None, 503), "b": ("/status/299", '["200-299"]', 200),
             "c": ("/status/300", '["200-299"]', 503)}
    addr = {"a": "127.0.0.2", "b": "127.0.0.3", "c": "127.0.0.4"}
    ports = {}
    for k in cases:
        ports.update(env.upstream([f"{addr[k]}:0={k}"], name=k))
    hc = "  healthChecks:\n"
    for k, (path, exp, _) in cases.items():
        hc += (f"  - host: {k}.{SVC}\n    path: {path}\n    interval: 100ms\n    timeout: 200ms\n"
               f"    healthyThreshold: 1\n    unhealthyThreshold: 1\n")
        if exp:
            hc += f"    expectedStatuses: {exp}\n"
    gw = free_port()
    parts = [appliance(env, workers=1, extra=hc), gateway(gw)]
    for k in cases:
        parts += [virtual_service(k, [f"{k}.example"], f"  - route: [{{destination: {{host: {k}.{SVC}}}}}]\n"),
                  service_entry(k, f"{k}.{SVC}", [{"address": addr[k], "port": ports[k]}]),
                  no_panic_rule(f"np-{k}", f"{k}.{SVC}")]
    env.start_gateway(env.write("isthmus.yaml", docs(*parts)), gw)

    def status(k):
        return http_get(gw, "/x", host=f"{k}.example").status

    for k in ("a", "c"):
        poll(lambda: status(k) == 503, 5, what=f"{k} (checked at {cases[k][0]}, expecting "
                                               f"{cases[k][1] or '[200]'}) to be unhealthy")
    for i in range(5):
        check(status("b") == 200, f"b (checked at /status/299, expecting 200-299): {status('b')}")


@_test
def health_first_round_within_open_files(env):
    """A first round of more checks than the master has descriptors waits for
    descriptors instead of failing for want of them: 300 endpoints whose
    checks each hold a connection for their timeout (a listener that never
    answers), under a master limited to 200 open files: every endpoint gets a
    result in the first round, and nothing logs "Too many open files" (each
    check past the limit did, and its endpoint went without a result for an
    interval)."""
    n, port = 300, free_port("127.3.0.1")
    socks = []
    try:
        for i in range(n):
            s = socket.socket()
            s.bind((f"127.3.{1 + i // 250}.{1 + i % 250}", port))
            s.listen(8)  # connections complete in the backlog; none is answered
            socks.append(s)
        eps = "".join(f"  - {{address: 127.3.{1 + i // 250}.{1 + i % 250}}}\n" for i in range(n))
        se = ("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {name: hc}\nspec:\n"
              f"  hosts: [{SVC}]\n  ports: [{{number: 80, name: http, protocol: HTTP, targetPort: {port}}}]\n"
              f"  resolution: STATIC\n  endpoints:\n{eps}")
        hc = (f"  healthChecks:\n  - {{host: {SVC}, path: /, interval: 30s, timeout: 300ms, "
              "unhealthyThreshold: 1}\n")
        gw = free_port()
        conf = env.write("isthmus.yaml", docs(
            appliance(env, workers=1, extra=hc), gateway(gw),
            virtual_service("hc", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n"), se))
        env.gw_port = gw
        env.gateway = env.spawn("isthmus", ["prlimit", "--nofile=200:200", env.isthmus, "-f", conf])

        def checked():
            eps = json.loads(ctl_cmd(env.path("ctl.sock"), "show endpoints json"))
            return len(eps) == n and all(e["checks"] >= 1 for e in eps) and eps
        poll(checked, 30, what=f"a result for each of the {n} endpoints")
        check("Too many open files" not in env.gateway.log(),
              f"the checks ran out of descriptors: {env.gateway.log()[-1200:]}")
    finally:
        for s in socks:
            s.close()
