# SPDX-License-Identifier: Apache-2.0
"""Integration tests of locality priorities, overprovisioned spill-over, region
failover, outlier ejection and retries (Istio / Envoy semantics: Envoy's
priority levels, overprovisioning, panic and locality-weight documentation).

Registered into run.py's list by register(test). Every endpoint is its own
upstream process (health/fail and fail/N act on a whole process), and every
endpoint's zone has its own loopback address:

    127.0.0.1  the appliance's own zone        (P0)
    127.0.0.2  another zone of its region      (P1 together with 127.0.0.3)
    127.0.0.3  a third zone of its region
    127.0.0.4  the `failover` region           (P2)
    127.0.0.5  a region nobody fails over to   (P3)

Splits are measured from the x-upstream header over 1000-2000 requests and
compared with Envoy's priority load: health(P) = min(100, 140 * healthy / total),
spilled over in priority order.
"""

import json
import os
import re
import signal
import socket
import threading
import time

from harness import (Registry, ctl_cmd, Conn, Env, TestFailure, appliance, build_request, check, docs, free_port, gateway,
                     poll, sample, service_entry, tally_ok, virtual_service)

_test = Registry()
register = _test.register


SVC = "web.test.internal"
LOC_A = "eu-west/eu-west-1a"  # the appliance
LOC_B = "eu-west/eu-west-1b"
LOC_C = "eu-west/eu-west-1c"
LOC_F = "us-east/us-east-1a"  # failover region
LOC_X = "ap-south/ap-south-1a"  # another region
ADDR = {LOC_A: "127.0.0.1", LOC_B: "127.0.0.2", LOC_C: "127.0.0.3", LOC_F: "127.0.0.4", LOC_X: "127.0.0.5"}
OD_FAST = {"consecutive5xxErrors": 1, "interval": "1s", "baseEjectionTime": "30s", "maxEjectionPercent": 100}


# --------------------------------------------------------------------------- configuration


def health_checks(host, interval="100ms", unhealthy=1, healthy=1, timeout="1s"):
    """Appliance `extra`: a fast active HTTP check of host on /healthz. The
    tests fail endpoints by their answer (503) or their death (refused), seen
    at once: a timeout of 1 s spares a loaded machine's slow answer (one of
    100 ms took a healthy endpoint out mid-count)."""
    return ("  healthChecks:\n"
            f"  - {{host: {host}, path: /healthz, interval: {interval}, timeout: {timeout},"
            f" healthyThreshold: {healthy}, unhealthyThreshold: {unhealthy}}}\n")


def dest_rule(host, od=None, failover=None, simple=None, pool=None, name="web"):
    """A DestinationRule with a trafficPolicy: od (outlierDetection mapping),
    failover ([(from, to)]), simple (LB policy), pool (connectionPool YAML lines)."""
    s = (f"apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: {name}}}\n"
         f"spec:\n  host: {host}\n  trafficPolicy:\n")
    if pool:
        s += "    connectionPool:\n" + "".join(f"      {l}\n" for l in pool)
    if simple or failover is not None:
        s += "    loadBalancer:\n"
        if simple:
            s += f"      simple: {simple}\n"
        if failover is not None:
            s += "      localityLbSetting:\n        enabled: true\n        failover:\n"
            for f, t in failover:
                s += f"        - from: {f}\n          to: {t}\n"
    if od is not None:
        s += "    outlierDetection:\n" + "".join(f"      {k}: {v}\n" for k, v in od.items())
    return s


class Ups:
    """The test's endpoints: name -> (address, port, locality, process)."""

    def __init__(self, env):
        self.env = env
        self.eps = {}

    def start(self, name, loc, addr=None):
        addr = addr or ADDR[loc]
        port = self.env.upstream([f"{addr}:0={name}"], name=name, zone=loc)[name]
        self.eps[name] = (addr, port, loc, self.env.procs[-1])
        return port

    def key(self, name, host=SVC):
        addr, port = self.eps[name][:2]
        return f"{host}|{addr}:{port}"

    def ctl(self, name, cmd):
        addr, port = self.eps[name][:2]
        return Env.ctl(addr, port, cmd)

    def entries(self):
        return [{"address": a, "port": p, "locality": loc} for a, p, loc, _ in self.eps.values()]

    def loc_of(self, name):
        return self.eps[name][2] if name in self.eps else None

    def kill(self, name):
        proc = self.eps[name][3]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.p.wait(timeout=5)


def route_all(host, port=None):
    p = f", port: {{number: {port}}}" if port else ""
    return f"  - route: [{{destination: {{host: {host}{p}}}}}]\n"


def start(env, ups, dr, extra="", locality=LOC_A, host=SVC, port=80, workers=2, http=None):
    gw_port = free_port()
    conf = env.write("isthmus.yaml", docs(
        appliance(env, locality=locality, workers=workers, extra=extra), gateway(gw_port),
        virtual_service("web", ["*"], http or route_all(host, port)),
        service_entry("web", host, ups.entries(), port=port),
        *([dr] if dr else [])))
    env.start_gateway(conf, gw_port)
    return conf


# --------------------------------------------------------------------------- control socket




def endpoints_view(env):
    """'show endpoints' -> {"<service>|<addr>:<port>": {field: value}} (health=, and
    whatever other key=value fields the line carries, e.g. ejected=)."""
    out = {}
    text = ctl_cmd(env.path("ctl.sock"), "show endpoints")
    for line in text.strip().split("\n"):
        m = re.search(r"(\S+\|\S+:\d+)\s(.*)$", line)
        if not m:
            continue
        out[m.group(1)] = dict(re.findall(r"\b(\w+)=(\S+)", m.group(2)))
    return out


def not_healthy(fields):
    """The endpoint counts as not healthy in the gateway's view: failed active
    checks, or (if the line says so) ejected by outlier detection."""
    if fields.get("health", "healthy") != "healthy":
        return True
    ej = fields.get("ejected")
    return ej is not None and ej not in ("0", "no", "false")


def wait_view(env, ups, unhealthy, timeout=5.0):
    """Polls 'show endpoints' until exactly the endpoints named in unhealthy are not
    healthy (the others healthy), then until the master has computed the
    priority loads for every change seen (show info's loads_epoch)."""
    want = {ups.key(n) for n in unhealthy}
    mine = {ups.key(n) for n in ups.eps}

    def settled():
        v = endpoints_view(env)
        missing = mine - set(v)
        check(not missing, f"'show endpoints' lacks {sorted(missing)}")
        bad = {k for k in mine if not_healthy(v[k])}
        return bad == want

    poll(settled, timeout, interval=0.05,
         what=f"'show endpoints' to show exactly {sorted(unhealthy)} not healthy")

    def loads_current():
        info = json.loads(ctl_cmd(env.path("ctl.sock"), "show info json"))
        return info["loads_epoch"] == info["health_epoch"]

    poll(loads_current, timeout, interval=0.05, what="the priority loads computed for the health seen")


# --------------------------------------------------------------------------- traffic


def share(counts, names):
    total = sum(counts.values())
    return 100.0 * sum(counts.get(n, 0) for n in names) / total if total else 0.0


def check_share(counts, names, want, tol, what):
    got = share(counts, names)
    check(abs(got - want) <= tol, f"{what}: {got:.1f} %, want {want} ± {tol} (counts {counts})")


# --------------------------------------------------------------------------- tests


@_test
def locality_all_local(env):
    """Everything healthy: the appliance's zone (P0) takes all traffic."""
    ups = Ups(env)
    for n, loc in (("a1", LOC_A), ("a2", LOC_A), ("b1", LOC_B), ("c1", LOC_C), ("f1", LOC_F)):
        ups.start(n, loc)
    start(env, ups, dest_rule(SVC, od=OD_FAST, failover=[("eu-west", "us-east")]), extra=health_checks(SVC))
    wait_view(env, ups, [])
    counts = tally_ok(env, 1000)
    check(set(counts) <= {"a1", "a2"}, f"with every endpoint healthy, traffic left zone a: {counts}")
    check(min(counts.get("a1", 0), counts.get("a2", 0)) >= 300,
          f"the two zone-a endpoints did not share the traffic: {counts}")


@_test
def locality_spill(env):
    """4 zone-a endpoints fail their health checks one by one; the zone-a share
    follows min(100, 140 * healthy / 4): 100, 100, 70, 35, 0. The spill goes to
    zones b and c (P1, shared by locality weight), never to the failover region."""
    ups = Ups(env)
    names_a = ["a1", "a2", "a3", "a4"]
    for n in names_a:
        ups.start(n, LOC_A)
    for n, loc in (("b1", LOC_B), ("b2", LOC_B), ("c1", LOC_C), ("c2", LOC_C), ("f1", LOC_F), ("f2", LOC_F)):
        ups.start(n, loc)
    start(env, ups, dest_rule(SVC, od=OD_FAST, failover=[("eu-west", "us-east")]), extra=health_checks(SVC))
    wait_view(env, ups, [])
    zone_b, zone_c = ["b1", "b2"], ["c1", "c2"]
    failed = []
    for down, want_a in ((0, 100), (1, 100), (2, 70), (3, 35), (4, 0)):
        while len(failed) < down:
            n = names_a[len(failed)]
            ups.ctl(n, "health/fail")
            failed.append(n)
        wait_view(env, ups, failed)
        counts = tally_ok(env, 2000)
        step = f"{down} of 4 zone-a endpoints failing"
        check(not any(counts.get(n) for n in failed), f"{step}: a failing endpoint was picked: {counts}")
        check(not counts.get("f1") and not counts.get("f2"),
              f"{step}: the failover region got traffic while zones b and c are healthy: {counts}")
        check_share(counts, names_a, want_a, 5, f"{step}: zone a share")
        check_share(counts, zone_b + zone_c, 100 - want_a, 5, f"{step}: zones b+c share")
        spilled = sum(counts.get(n, 0) for n in zone_b + zone_c)
        if spilled >= 500:
            b = 100.0 * sum(counts.get(n, 0) for n in zone_b) / spilled
            check(35 <= b <= 65, f"{step}: zones b and c should share the spill about evenly, b got {b:.1f} % "
                                 f"({counts})")
    # Back: every zone-a endpoint healthy again -> all local.
    for n in names_a:
        ups.ctl(n, "health/ok")
    wait_view(env, ups, [])
    counts = tally_ok(env, 1000)
    check_share(counts, names_a, 100, 1, "all zone-a endpoints healthy again: zone a share")


@_test
def locality_region_failover(env):
    """The region's endpoints all fail: the `failover` region (us-east) takes
    everything, another region (ap-south) nothing; the region returns -> zone a."""
    ups = Ups(env)
    for n, loc in (("a1", LOC_A), ("b1", LOC_B), ("c1", LOC_C), ("f1", LOC_F), ("f2", LOC_F), ("x1", LOC_X)):
        ups.start(n, loc)
    start(env, ups, dest_rule(SVC, od=OD_FAST, failover=[("eu-west", "us-east")]), extra=health_checks(SVC))
    wait_view(env, ups, [])
    counts = tally_ok(env, 500)
    check(counts == {"a1": 500}, f"everything healthy: traffic went {counts}, want all to a1")
    ups.ctl("a1", "health/fail")
    wait_view(env, ups, ["a1"])
    counts = tally_ok(env, 1000)
    check_share(counts, ["b1", "c1"], 100, 0, "zone a down: zones b+c share")
    region = ["a1", "b1", "c1"]
    for n in ("b1", "c1"):
        ups.ctl(n, "health/fail")
    wait_view(env, ups, region)
    counts = tally_ok(env, 1000)
    check(not counts.get("x1"), f"region eu-west down: ap-south got traffic while us-east is healthy: {counts}")
    check_share(counts, ["f1", "f2"], 100, 0, "region eu-west down: failover region us-east share")
    check(min(counts.get("f1", 0), counts.get("f2", 0)) >= 300, f"us-east endpoints did not share: {counts}")
    for n in region:
        ups.ctl(n, "health/ok")
    wait_view(env, ups, [])

    def local_again():
        c = tally_ok(env, 200)
        return share(c, ["a1"]) >= 99

    poll(local_again, 10, interval=0.1, what="≥ 99 % of the traffic back on zone a")
    counts = tally_ok(env, 1000)
    check_share(counts, ["a1"], 100, 1, "region back: zone a share")


def zone_aware_rule(host, failover=(), enabled=True):
    """A DestinationRule whose loadBalancer is a zoneAwareLbSetting, without outlierDetection."""
    s = (f"apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: web}}\n"
         f"spec:\n  host: {host}\n  trafficPolicy:\n    loadBalancer:\n      zoneAwareLbSetting:\n"
         f"        enabled: {'true' if enabled else 'false'}\n")
    if failover:
        s += "        failover:\n" + "".join(f"        - {{from: {f}, to: {t}}}\n" for f, t in failover)
    return s


@_test
def zone_aware_regions(env):
    """zoneAwareLbSetting, without outlierDetection (it fails over on its own,
    as Istio forces it): the appliance's region takes everything, its three
    zones sharing it (an appliance has no cluster of its own, so no zone comes
    first); the region down, the failover region takes everything, another
    region nothing; disabled (a reload), every endpoint shares the traffic."""
    ups = Ups(env)
    for n, loc in (("a1", LOC_A), ("b1", LOC_B), ("c1", LOC_C), ("f1", LOC_F), ("x1", LOC_X)):
        ups.start(n, loc)
    conf = start(env, ups, zone_aware_rule(SVC, [("eu-west", "us-east")]), extra=health_checks(SVC))
    wait_view(env, ups, [])
    counts = tally_ok(env, 900)
    check(set(counts) == {"a1", "b1", "c1"} and min(counts.values()) >= 200,
          f"the region's three zones should share everything: {counts}")
    cl = json.loads(ctl_cmd(env.path("ctl.sock"), "show clusters json"))
    check([(c["zone_aware"], c["tunnel"]) for c in cl] == [(True, "-")], f"show clusters: {cl}")
    ex = ctl_cmd(env.path("ctl.sock"), "explain GET http://test.local/")
    check("3 priorities (zoneAwareLbSetting: by region" in ex and "no outlierDetection" not in ex,
          f"explain: {ex}")
    region = ["a1", "b1", "c1"]
    for n in region:
        ups.ctl(n, "health/fail")
    wait_view(env, ups, region)
    counts = tally_ok(env, 500)
    check(counts == {"f1": 500}, f"region eu-west down: want everything on us-east's f1, got {counts}")
    for n in region:
        ups.ctl(n, "health/ok")
    wait_view(env, ups, [])
    with open(conf) as f:
        text = f.read()
    env.write("isthmus.yaml", text.replace("        enabled: true\n", "        enabled: false\n", 1))
    check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), "the reload was refused")
    poll(lambda: len(tally_ok(env, 200)) == 5, 10, interval=0.1, what="every endpoint to get traffic")
    counts = tally_ok(env, 1000)
    check(set(counts) == set(ups.eps) and min(counts.values()) >= 120,
          f"disabled: every endpoint should share the traffic: {counts}")


TRUNCATED = "truncated response"


def kill_under_load(env, retries=None, total=500, n_threads=4, kill_after=150):
    """Zone a: a1, a2; zone b: b1, b2; outlier detection (consecutive5xxErrors 1).
    total GETs from n_threads keep-alive clients; a1 is SIGKILLed once kill_after
    requests have started. retries: the route's `retries` (flow YAML), or None for
    Istio's default policy. Returns (results [(send time, status or error, x-upstream)],
    kill time), times on time.monotonic()."""
    ups = Ups(env)
    for n, loc in (("a1", LOC_A), ("a2", LOC_A), ("b1", LOC_B), ("b2", LOC_B)):
        ups.start(n, loc)
    http = None
    if retries:
        http = f"  - route: [{{destination: {{host: {SVC}}}}}]\n    retries: {retries}\n"
    start(env, ups, dest_rule(SVC, od=OD_FAST, failover=[("eu-west", "us-east")]), http=http)
    poll(lambda: set(tally_ok(env, 50)) == {"a1", "a2"}, 10, what="both zone-a endpoints to take the traffic")
    lock = threading.Lock()
    started = [0]
    results = []
    go_kill = threading.Event()

    def client():
        c = None
        while True:
            with lock:
                if started[0] >= total:
                    break
                started[0] += 1
                if started[0] == kill_after:
                    go_kill.set()
            t = time.monotonic()
            head = None
            try:
                if c is None:
                    c = Conn("127.0.0.1", env.gw_port, timeout=10)
                c.send(build_request("GET", "/", "test.local"))
                head = c.read_head()
                status, _, headers, _ = head
                hd = dict(headers)
                c._read_exact(int(hd.get("content-length", "0")))
                res = (t, status, hd.get("x-upstream"))
                if hd.get("connection", "").lower() == "close":
                    c.close()
                    c = None
            except (OSError, EOFError, TestFailure) as e:
                # TRUNCATED: the response had begun (the upstream died between the
                # head and the body); no proxy can take that back.
                res = (t, TRUNCATED if head else f"{type(e).__name__}: {e}", None)
                if c is not None:
                    c.close()
                c = None
            with lock:
                results.append(res)
        if c is not None:
            c.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(n_threads)]
    for th in threads:
        th.start()
    check(go_kill.wait(10), f"the load did not reach {kill_after} requests within 10 s")
    kill_at = time.monotonic()
    ups.kill("a1")
    for th in threads:
        th.join(30)
    check(not any(th.is_alive() for th in threads), "client threads still running 30 s after the kill")
    check(len(results) == total, f"{len(results)} results, want {total}")
    after = [r for r in results if r[0] >= kill_at]
    check(len(after) >= 100, f"only {len(after)} requests were sent after the kill; the load ended too early")
    late = [r for r in after if r[2] == "a1" and r[0] > kill_at + 0.05]
    check(not late, f"answers from the killed endpoint after the kill: {late[:3]}")
    return results, kill_at


def describe(bad, kill_at):
    return [(f"{(t - kill_at) * 1000:+.1f} ms", s, u) for t, s, u in bad[:5]]


@_test
def retries_hide_failures(env):
    """One of two local endpoints is SIGKILLed while 500 GETs run from 4 threads,
    under Istio's default retry policy (2 retries on connect-failure, refused-stream,
    unavailable, cancelled, 503). Requests that start after the kill meet connect
    failures (or a pooled connection the upstream closed), which are retried
    elsewhere, and the dead endpoint is ejected: no error. Only a request that was
    already at the upstream when it died may fail: the default policy does not
    retry a reset (as in Envoy), and a response that had begun cannot be taken
    back; so at most one per client thread, sent before the upstream was gone
    (the kill plus 20 ms for the kernel to tear the process down)."""
    results, kill_at = kill_under_load(env)
    bad = [r for r in results if r[1] != 200]
    late = [r for r in bad if r[0] > kill_at + 0.02]
    check(not late, f"{len(late)} GETs sent after the kill failed (t relative to the kill): "
                    f"{describe(late, kill_at)}; all failures: {describe(bad, kill_at)}")
    check(len(bad) <= 4, f"{len(bad)} GETs in flight at the kill failed, more than one per client thread: "
                         f"{describe(bad, kill_at)}")


@_test
def retries_reset_hides_inflight(env):
    """As retries_hide_failures, with the route's retries {attempts: 2, retryOn:
    connect-failure,reset,503}: a request in flight at the kill is retried too, so
    the only failure left is a response the upstream had begun when it died
    (the test upstream writes head and body separately)."""
    results, kill_at = kill_under_load(env, retries="{attempts: 2, retryOn: \"connect-failure,reset,503\"}")
    bad = [r for r in results if r[1] != 200]
    hidden = [r for r in bad if r[1] != TRUNCATED or r[0] > kill_at + 0.02]
    check(not hidden, f"{len(hidden)} of {len(results)} GETs failed around the kill of a1 with retryOn reset "
                      f"(t relative to the kill): {describe(hidden, kill_at)}")
    check(len(bad) <= 4, f"{len(bad)} responses cut by the kill, more than one per client thread: "
                         f"{describe(bad, kill_at)}")


HELLO = "helloworld.sample.svc.cluster.local"


@_test
def istio_failover_task(env):
    """Istio's locality-failover task (tasks/traffic-management/locality-load-balancing/
    failover): the client in region1/zone1; helloworld in region1/zone1, region1/zone2,
    region2/zone3, region3/zone4; the task's DestinationRule. Each endpoint is made to
    fail (503) in turn, and traffic moves zone1 -> zone2 -> zone3 -> zone4 as the task
    shows (priorities 0, 2, 3, 4 with the empty level 1 compacted). The rule keeps
    the default maxEjectionPercent (10 %): each step needs the ejection of the only
    endpoint of its priority while the earlier ones stay ejected (DESIGN.md's
    deliberate choice)."""
    ups = Ups(env)
    seq = [("region1.zone1", "region1/zone1", "127.0.0.1"), ("region1.zone2", "region1/zone2", "127.0.0.2"),
           ("region2.zone3", "region2/zone3", "127.0.0.3"), ("region3.zone4", "region3/zone4", "127.0.0.4")]
    for name, loc, addr in seq:
        ups.start(name, loc, addr)
    dr = dest_rule(HELLO, name="helloworld", simple="ROUND_ROBIN", failover=[("region1", "region2")],
                   pool=["http:", "  maxRequestsPerConnection: 1"],
                   od={"consecutive5xxErrors": 1, "interval": "1s", "baseEjectionTime": "1m"})
    start(env, ups, dr, locality="region1/zone1", host=HELLO, port=5000)
    t_first_fail = None

    def all_from(name, n):
        got, statuses = sample(env, n)
        return got == {name: n} and statuses == {200: n}

    poll(lambda: all_from("region1.zone1", 20), 10, what="traffic to go to region1.zone1")
    counts = tally_ok(env, 200)
    check(counts == {"region1.zone1": 200}, f"before any failure: {counts}")
    for i in range(3):
        failing, nxt = seq[i][0], seq[i + 1][0]
        ups.ctl(failing, "fail/503")
        if t_first_fail is None:
            t_first_fail = time.monotonic()
        try:
            poll(lambda: all_from(nxt, 20), 10, interval=0.1,
                 what=f"traffic to move to {nxt} after {failing} fails (503)")
        except TestFailure as e:
            counts, statuses = sample(env, 20)
            view = {k.split("|")[1]: v for k, v in endpoints_view(env).items()}
            raise TestFailure(f"{e}; 20 more GETs: answered by {counts}, statuses {statuses}; "
                              f"show endpoints: {view}")
        counts, statuses = sample(env, 200)
        check(statuses == {200: 200} and counts == {nxt: 200},
              f"{failing} failing: want every request on {nxt}, got {counts} statuses {statuses}")
    # The ejections (baseEjectionTime 1m) must all still be in force.
    check(time.monotonic() - t_first_fail < 55, "the steps took too long: the first ejection may have ended")
    # The operator's view: three ejections and the failovers they caused, in order.
    events = ctl_cmd(env.path("ctl.sock"), "show events")
    ejections = [l for l in events.splitlines() if " ejection " in l and "ejected" in l]
    failovers = [l for l in events.splitlines() if " failover " in l]
    check(len(ejections) == 3, f"show events lists {len(ejections)} ejections:\n{events}")
    check(len(failovers) >= 3 and failovers[-1].endswith("-> 0/0/0/100"),
          f"show events lacks the failovers to the last level:\n{events}")


@_test
def locality_from_labels(env):
    """An endpoint's locality and topology labels as Istio gives them
    (convertWorkloadEntryToWorkloadInstance, AugmentLabels): a2 has no
    `locality`, only the label topology.istio.io/locality ('.' for '/'), which
    is its locality, so under outlier detection it shares priority 0 with a1
    (locality written), where it was ranked another region and took nothing;
    and a subset selecting topology.kubernetes.io/zone, which Istio derives
    from the locality, holds both, where it held none (503)."""
    ups = Ups(env)
    ups.start("a1", LOC_A)
    ups.start("a2", LOC_A, addr="127.0.0.2")
    entries = ups.entries()
    del entries[1]["locality"]
    entries[1]["labels"] = {"topology.istio.io/locality": "eu-west.eu-west-1a"}
    http = (f"  - match: [{{uri: {{prefix: /zone-a}}}}]\n"
            f"    route: [{{destination: {{host: {SVC}, subset: zone-a}}}}]\n" + route_all(SVC))
    dr = (dest_rule(SVC, od=OD_FAST) +
          "  subsets:\n  - {name: zone-a, labels: {topology.kubernetes.io/zone: eu-west-1a}}\n")
    env.gw_port = free_port()
    env.start_gateway(env.write("isthmus.yaml", docs(
        appliance(env, locality=LOC_A), gateway(env.gw_port), virtual_service("web", ["*"], http),
        service_entry("web", SVC, entries), dr)), env.gw_port)
    shown = ctl_cmd(env.path("ctl.sock"), f"show endpoints outbound|80||{SVC}")
    line = next((l for l in shown.splitlines() if ups.key("a2") in l), "")
    check("locality=eu-west/eu-west-1a" in line and "priority=0" in line,
          f"a2's locality from its label, priority 0: {shown}")
    for path in ("/", "/zone-a/x"):
        counts = tally_ok(env, 400, path=path)
        check(set(counts) == {"a1", "a2"} and min(counts.values()) >= 100,
              f"GET {path}: a1 and a2 share it: {counts}")


@_test
def failover_needs_outlier_detection(env):
    """`failover` without outlierDetection: isthmus -c accepts the file with a
    warning naming the field, and (as in Istio) no locality priorities are set up:
    all endpoints share priority 0."""
    ups = Ups(env)
    for n, loc in (("a1", LOC_A), ("a2", LOC_A), ("b1", LOC_B), ("b2", LOC_B), ("f1", LOC_F)):
        ups.start(n, loc)
    conf = start(env, ups, dest_rule(SVC, simple="ROUND_ROBIN", failover=[("eu-west", "us-east")]))
    rc, out = env.check_config(conf)
    check(rc == 0, f"isthmus -c on failover without outlierDetection exited {rc}: {out}")
    warn = [l for l in out.split("\n") if re.search(r":\d+:\d+: warning: ", l)]
    check(any("failover" in l and "outlierDetection" in l for l in warn),
          f"no warning naming localityLbSetting.failover and outlierDetection: {out!r}")
    lines = open(conf).read().split("\n")
    m = re.search(re.escape(conf) + r":(\d+):\d+: warning: [^\n]*failover", out)
    check(m and "failover" in lines[int(m.group(1)) - 1],
          f"the warning does not point at the failover line: {out!r}")
    counts = tally_ok(env, 1000)
    check_share(counts, ["a1", "a2"], 40, 5, "no priorities: zone a share (2 of 5 endpoints)")
    check_share(counts, ["b1", "b2"], 40, 5, "no priorities: zone b share (2 of 5 endpoints)")
    check_share(counts, ["f1"], 20, 5, "no priorities: us-east share (1 of 5 endpoints)")


def retry_route(prefix, attempts, remote):
    return (f"  - match: [{{uri: {{prefix: {prefix}}}}}]\n"
            f"    retries: {{attempts: {attempts}, retryOn: \"503\", retryRemoteLocalities: {str(remote).lower()}}}\n"
            f"    route: [{{destination: {{host: {SVC}}}}}]\n")


@_test
def retry_remote_localities(env):
    """retries.retryRemoteLocalities: Istio gives the route Envoy's
    previous_priorities with update_frequency 2, so from the third try on a
    retry leaves out the priorities already tried, brought up to date at every
    second try. Zone a (P0: a1, a2) and later zone b (P1: b1) answer 503; the
    failover region's f1 (P2) answers. Counted per endpoint: every try goes
    where the policy says (retryIgnorePreviousHosts: a retry avoids the
    endpoints tried, inside the priority it picks)."""
    ups = Ups(env)
    for n, loc in (("a1", LOC_A), ("a2", LOC_A), ("b1", LOC_B), ("f1", LOC_F)):
        ups.start(n, loc)
    http = (retry_route("/r1", 1, True) + retry_route("/r2", 2, True) + retry_route("/l2", 2, False)
            + retry_route("/r3", 3, True) + retry_route("/r4", 4, True))
    od = {"consecutive5xxErrors": 0, "interval": "1s"}
    start(env, ups, dest_rule(SVC, od=od, failover=[("eu-west", "us-east")]), http=http)
    for n in ("a1", "a2"):
        ups.ctl(n, "fail/503")
    ex = ctl_cmd(env.path("ctl.sock"), "explain GET http://test.local/r2")
    check("from the third try to localities not tried (retryRemoteLocalities)" in ex,
          f"explain does not say the route's retries go to other localities: {ex}")
    ex = ctl_cmd(env.path("ctl.sock"), "explain GET http://test.local/l2")
    check("2 retries)" in ex, f"explain of a route without retryRemoteLocalities: {ex}")

    def tries(path):
        before = {n: int(ups.ctl(n, "count")) for n in ups.eps}
        r = env.get(path)
        after = {n: int(ups.ctl(n, "count")) for n in ups.eps}
        return r, {n: after[n] - before[n] for n in ups.eps if after[n] != before[n]}

    for _ in range(5):
        r, got = tries("/r2")
        check(r.status == 200 and r.header("x-upstream") == "b1" and got == {"a1": 1, "a2": 1, "b1": 1},
              f"attempts 2 with retryRemoteLocalities: {r.status} from {r.header('x-upstream')}, tries {got}; "
              "want a1 and a2 once each, then b1 (zone a left out from the third try) with 200")
        r, got = tries("/r1")
        check(r.status == 503 and got == {"a1": 1, "a2": 1},
              f"attempts 1 with retryRemoteLocalities: {r.status}, tries {got}; want 503 after a1 and a2 "
              "(the priorities tried are left out only from the third try)")
        r, got = tries("/l2")
        check(r.status == 503 and set(got) == {"a1", "a2"} and sum(got.values()) == 3,
              f"attempts 2 without retryRemoteLocalities: {r.status}, tries {got}; want 503 with all "
              "three tries in zone a")
    ups.ctl("b1", "fail/503")
    for _ in range(5):
        r, got = tries("/r3")
        check(r.status == 503 and r.header("x-upstream") == "b1" and got == {"a1": 1, "a2": 1, "b1": 2},
              f"attempts 3 with zones a and b failing: {r.status} from {r.header('x-upstream')}, tries "
              f"{got}; want a1, a2, then b1 twice (the left-out set is updated at even tries only)")
        r, got = tries("/r4")
        check(r.status == 200 and r.header("x-upstream") == "f1" and got == {"a1": 1, "a2": 1, "b1": 2, "f1": 1},
              f"attempts 4 with zones a and b failing: {r.status} from {r.header('x-upstream')}, tries "
              f"{got}; want a1, a2, b1, b1, then f1 with 200")


@_test
def retry_avoids_tried_endpoints(env):
    """retryIgnorePreviousHosts (Istio's default): Envoy's previous_hosts
    predicate keeps a retry off every endpoint tried, not only the last one.
    Of three endpoints two answer 503: with two retries every request ends at
    the third, and no endpoint is tried twice."""
    ups = Ups(env)
    for n in ("a1", "a2", "a3"):
        ups.start(n, LOC_A)
    start(env, ups, None, http=retry_route("/", 2, False))
    for n in ("a1", "a2"):
        ups.ctl(n, "fail/503")
    for i in range(20):
        before = {n: int(ups.ctl(n, "count")) for n in ups.eps}
        r = env.get(f"/x{i}")
        got = {n: int(ups.ctl(n, "count")) - before[n] for n in ups.eps}
        check(r.status == 200 and r.header("x-upstream") == "a3" and max(got.values()) == 1,
              f"request {i}: {r.status} from {r.header('x-upstream')}, tries {got}; want 200 from a3 "
              "with no endpoint tried twice")


@_test
def draining_worker_follows_health(env):
    """A worker that a reload moving the listener leaves draining on the old
    generation balances with the priority loads of the endpoints' health now,
    as a draining Envoy listener shares its clusters: a2 failing its checks
    after the reload leaves zone a 70 % and sends zone b 30 % of the
    requests finished on the old connections (all went to a1, with the loads
    frozen at the reload). The requests' heads are begun before the reload,
    so that the old connections are not idle (closed after a second)."""
    ups = Ups(env)
    for n, loc in (("a1", LOC_A), ("a2", LOC_A), ("b1", LOC_B)):
        ups.start(n, loc)
    sock = env.path("ctl.sock")
    dr = dest_rule(SVC, od={"consecutive5xxErrors": 0, "minHealthPercent": 0}, simple="ROUND_ROBIN")

    def write(port):
        return env.write("isthmus.yaml", docs(
            appliance(env, locality=LOC_A, workers=1, extra=health_checks(SVC),
                      timeouts={"requestHeader": "30s", "idle": "30s"}),
            gateway(port), virtual_service("web", ["*"], route_all(SVC) + "    retries: {attempts: 0}\n"),
            service_entry("web", SVC, ups.entries()), dr))

    def loads():
        return json.loads(ctl_cmd(sock, "show clusters json"))[0]["loads"]

    gw = free_port()
    env.start_gateway(write(gw), gw)
    poll(lambda: loads() == [100, 0], 10, what="zone a whole, every endpoint healthy")
    conns = [Conn("127.0.0.1", gw) for _ in range(40)]
    try:
        for c in conns:
            check(c.request("GET", "/").status == 200, "a request before the reload")
            c.send(b"GET / HTTP/1.1\r\nhost: test.local\r\n")
        write(free_port())
        check("generation 2 published" in ctl_cmd(sock, "reload"), "the reload moving the listener")
        poll(lambda: any(w["draining"] for w in json.loads(ctl_cmd(sock, "show workers json"))), 10,
             what="the old worker draining")
        ups.ctl("a2", "health/fail")
        poll(lambda: loads() == [70, 30], 10, what="zone a at 70 % with a2 failing")
        got = {}
        for c in conns:
            c.send(b"\r\n")
            r = c.read_response()
            check(r.status == 200, f"a request on an old connection: {r.status}")
            got[r.header("x-upstream")] = got.get(r.header("x-upstream"), 0) + 1
        check(got.get("b1", 0) > 0 and "a2" not in got, f"the draining worker's requests went {got}")
    finally:
        for c in conns:
            c.close()
