# SPDX-License-Identifier: Apache-2.0
"""Integration tests of the DestinationRule policies beyond locality: consistent
hashing (header, issued cookie) and the connection-pool limits (maxConnections
with a pending queue, http1MaxPendingRequests overflow, maxRequestsPerConnection).

Registered into run.py's list by register(test)."""

import json
import re
import subprocess
import threading
import time

from harness import (Conn, Registry, Skip, appliance, check, ctl_cmd, curl, docs, free_port, gateway, have, metric, poll,
                     service_entry, tally_ok, virtual_service)

SVC = "pol.test.internal"
_test = Registry()
register = _test.register


def _setup(env, policy, n_endpoints=3, admin_port=None, keep=None, extra=""):
    """n upstream processes on 127.0.0.1 named e0..e(n-1); a DestinationRule with
    `policy` (YAML under trafficPolicy); the gateway routing everything there.
    keep(indexes) writes the file again with only those endpoints."""
    eps = []
    for i in range(n_endpoints):
        ports = env.upstream([f"127.0.0.1:0=e{i}"], name=f"e{i}")
        eps.append({"address": "127.0.0.1", "port": ports[f"e{i}"], "locality": "eu-west/eu-west-1a"})
    gw_port = free_port()
    extra += f"  admin: {{address: 127.0.0.1:{admin_port}}}\n" if admin_port else ""
    dr = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: pol}\n"
          f"spec:\n  host: {SVC}\n  trafficPolicy:\n{policy}")

    def write(indexes):
        return env.write("isthmus.yaml", docs(
            appliance(env, extra=extra), gateway(gw_port),
            virtual_service("pol", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n"),
            dr, service_entry("pol", SVC, [eps[i] for i in indexes])))

    env.start_gateway(write(range(n_endpoints)), gw_port)
    if keep is not None:
        keep.append(write)
    return [e["port"] for e in eps]


@_test
def consistent_hash_header(env):
    _setup(env, "    loadBalancer:\n      consistentHash: {httpHeaderName: x-user, ringHash: {minimumRingSize: 1024}}\n")
    seen = set()
    for u in range(20):
        owners = {env.get("/", headers={"x-user": f"user-{u}"}).header("x-upstream") for _ in range(8)}
        check(len(owners) == 1, f"user-{u} went to {owners}, want one endpoint")
        seen |= owners
    check(len(seen) >= 2, f"20 users all hashed to {seen}: the key is not spread")
    # Without the header: a random endpoint (Envoy), still answered.
    check(env.get("/").status == 200, "request without the hash header failed")


@_test
def consistent_hash_retries_stay(env):
    """A route of one destination whose cluster hashes retries to the endpoint
    its key hashes to, as Istio's retry policy for it has no previous_hosts
    predicate ("When Consistent Hashing is enabled, we don't want to use other
    hosts during retries"): the keys of a dead endpoint get 503 UF, the others
    200, and no key moves (they were retried on the live endpoint).
    retryIgnorePreviousHosts: true brings the predicate back."""
    live = env.upstream(["127.0.0.1:0=e0"], name="e0")["e0"]
    dead = free_port()
    gw_port = free_port()
    dr = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: pol}\n"
          f"spec:\n  host: {SVC}\n  trafficPolicy:\n    loadBalancer:\n      consistentHash: {{httpHeaderName: x-user}}\n")

    def conf(retries=""):
        return env.write("isthmus.yaml", docs(
            appliance(env), gateway(gw_port),
            virtual_service("pol", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n{retries}"),
            dr, service_entry("pol", SVC, [{"address": "127.0.0.1", "port": live},
                                           {"address": "127.0.0.1", "port": dead}])))
    env.start_gateway(conf(), gw_port)
    got = {u: env.get("/", headers={"x-user": f"user-{u}"}) for u in range(20)}
    codes = {u: r.status for u, r in got.items()}
    check(set(codes.values()) == {200, 503}, f"statuses by key {codes}: want the dead endpoint's keys 503")
    for u, r in got.items():
        if r.status == 200:
            check(r.header("x-upstream") == "e0", f"user-{u}: {r}")
    conf("    retries: {attempts: 2, retryOn: connect-failure, retryIgnorePreviousHosts: true}\n")
    ans = ctl_cmd(env.path("ctl.sock"), "reload")
    check("published" in ans, f"reload: {ans!r}")
    for u in range(20):
        r = env.get("/", headers={"x-user": f"user-{u}"})
        check(r.status == 200 and r.header("x-upstream") == "e0", f"user-{u} with retryIgnorePreviousHosts: {r}")


@_test
def consistent_hash_cookie_issued(env):
    _setup(env, "    loadBalancer:\n      consistentHash:\n        httpCookie: {name: sticky, path: /, ttl: 60s}\n"
                "        maglev: {tableSize: 65537}\n")
    r = env.get("/")
    sc = r.header("set-cookie") or ""
    check(sc.startswith("sticky=") and "Max-Age=60" in sc, f"no sticky cookie issued: {sc!r}")
    cookie = sc.split(";", 1)[0]
    owners = {env.get("/", headers={"cookie": cookie}).header("x-upstream") for _ in range(15)}
    check(owners == {r.header("x-upstream")}, f"with {cookie} requests went to {owners}, "
          f"want only {r.header('x-upstream')}")
    check(env.get("/", headers={"cookie": cookie}).header("set-cookie") is None,
          "a cookie was issued although the request carried one")


@_test
def consistent_hash_cookie_per_connection(env):
    """An issued cookie is Envoy's: its value quoted, and the same for every
    request of one client connection (a hash of its addresses), so that the
    first requests of a page, which race without the cookie, all reach one
    endpoint (each got a random value, and went anywhere); a cookie sent
    empty counts as none, so one is issued (it was hashed as a value, and
    every such client went to one endpoint)."""
    if not have("nghttp"):
        raise Skip("nghttp is not installed (Debian package nghttp2-client)")
    _setup(env, "    loadBalancer:\n      consistentHash:\n        httpCookie: {name: sticky, path: /, ttl: 60s}\n",
           n_endpoints=4)
    for attempt in range(3):
        rc, out, err = curl(["-si", "--http1.1"] + [f"http://127.0.0.1:{env.gw_port}/n{i}" for i in range(6)])
        check(rc == 0, f"curl: {rc} {err}")
        cookies = re.findall(r"(?im)^set-cookie: (sticky=[^;]*);", out)
        owners = re.findall(r"(?im)^x-upstream: (\S+)", out)
        check(len(cookies) == 6 and len(set(cookies)) == 1 and re.fullmatch(r'sticky="[0-9a-f]{16}"', cookies[0]),
              f"six requests of one connection: cookies {cookies}")
        check(len(owners) == 6 and len(set(owners)) == 1, f"six requests of one connection went to {owners}")
    # HTTP/2: four streams at once on one connection (nghttp; curl 7.88
    # cannot reuse a prior-knowledge connection)
    p = subprocess.run(["nghttp", "-v"] + [f"http://127.0.0.1:{env.gw_port}/p{i}" for i in range(4)],
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=30)
    out = p.stdout.decode("utf-8", "replace")
    cookies = re.findall(r"(?m)recv \(stream_id=\d+\) set-cookie: (sticky=[^;]*);", out)
    check(p.returncode == 0 and len(cookies) == 4 and len(set(cookies)) == 1,
          f"four HTTP/2 streams of one connection: {cookies}")
    for empty in ("sticky=", 'sticky=""'):
        r = env.get("/", headers={"cookie": empty})
        check((r.header("set-cookie") or "").startswith("sticky=\""), f"with {empty!r}: no cookie issued: {r}")


@_test
def consistent_hash_cookie_attributes(env):
    """httpCookie with `ttl: 0s` and attributes: the cookie issued is a session
    cookie (no Max-Age), without Path when none is given, with the attributes
    in order and HttpOnly last, as Envoy writes it; and it still pins."""
    _setup(env, "    loadBalancer:\n      consistentHash:\n        httpCookie:\n"
                "          name: pin\n          ttl: 0s\n"
                "          attributes: [{name: SameSite, value: Strict}, {name: Secure}]\n")
    r = env.get("/")
    sc = r.header("set-cookie") or ""
    parts = sc.split("; ")
    check(len(parts) == 4 and parts[0].startswith("pin=") and parts[1:] == ["SameSite=Strict", "Secure", "HttpOnly"],
          f"session cookie with attributes not issued as Envoy writes it: {sc!r}")
    owners = {env.get("/", headers={"cookie": parts[0]}).header("x-upstream") for _ in range(15)}
    check(owners == {r.header("x-upstream")}, f"with {parts[0]} requests went to {owners}")


@_test
def consistent_hash_cookie_no_ttl(env):
    """httpCookie without a ttl: no cookie is issued (Envoy), a request
    without one goes to any endpoint, and one with it is pinned."""
    _setup(env, "    loadBalancer:\n      consistentHash:\n        httpCookie: {name: pin}\n")
    rs = [env.get("/") for _ in range(20)]
    check(all(r.status == 200 and r.header("set-cookie") is None for r in rs),
          f"a cookie was issued without a ttl: {[r.header('set-cookie') for r in rs]}")
    owners = {env.get("/", headers={"cookie": "pin=abc"}).header("x-upstream") for _ in range(15)}
    check(len(owners) == 1, f"requests with the cookie went to {owners}")


def _parallel(env, n, path, field=None):
    """n GETs at once: their statuses (with field: (status, that field's value))."""
    out = []
    lock = threading.Lock()

    def one():
        try:
            r = env.get(path, timeout=15)
            st = (r.status, r.header(field)) if field else r.status
        except Exception as e:  # reported by the assertion below
            st = repr(e)
        with lock:
            out.append(st)

    ts = [threading.Thread(target=one) for _ in range(n)]
    t0 = time.monotonic()
    for t in ts:
        t.start()
    for t in ts:
        t.join(20)
    return out, time.monotonic() - t0


@_test
def pool_max_connections_queues(env):
    # One upstream connection for the whole cluster (all workers): five slow
    # requests at once are queued and served one after the other.
    _setup(env, "    connectionPool:\n      tcp: {maxConnections: 1, connectTimeout: 5s}\n"
                "      http: {http1MaxPendingRequests: 10}\n", n_endpoints=1)
    out, elapsed = _parallel(env, 5, "/delay/300")
    check(out == [200] * 5, f"queued requests answered {out}")
    check(elapsed >= 1.2, f"5 requests of 300 ms over one connection took {elapsed:.2f}s: not serialized")


@_test
def pool_pending_overflow(env):
    _setup(env, "    connectionPool:\n      tcp: {maxConnections: 1, connectTimeout: 5s}\n"
                "      http: {http1MaxPendingRequests: 1}\n", n_endpoints=1)
    got, _ = _parallel(env, 6, "/delay/2000", field="x-envoy-overloaded")
    out = [g[0] if isinstance(g, tuple) else g for g in got]
    ok = out.count(200)
    over = out.count(503)
    check(ok + over == 6, f"statuses {out}: want only 200 and 503")
    # All six reach isthmus while the first is answered (2 s): one on the
    # connection, one queued, four over the limit; a queue one longer than
    # http1MaxPendingRequests serves three.
    check(ok == 2, f"{ok} requests served with maxConnections 1, http1MaxPendingRequests 1 (want 2): {out}")
    # Envoy's router marks a circuit breaker's drop for the client
    check(all(g[1] == ("true" if g[0] == 503 else None) for g in got),
          f"x-envoy-overloaded on the overflow's 503s only: {got}")
    check(over >= 1, f"no request overflowed with 1 connection and 1 pending slot: {out}")
    # Both workers share the limits: one request on the connection, one queued;
    # a third only where it reached isthmus after the first had finished (a
    # slow start on a busy machine).
    check(ok <= 3, f"{ok} requests served with maxConnections 1, http1MaxPendingRequests 1: {out}")


@_test
def pool_overflow_without_debug_headers(env):
    """With proxyHeaders.envoyDebugHeaders disabled, a circuit breaker's drop
    (503 UO) carries no x-envoy-overloaded, as Envoy's router adds it only
    where its headers are not suppressed (the fifth mutation review: nothing
    checked the two together)."""
    _setup(env, "    connectionPool:\n      tcp: {maxConnections: 1, connectTimeout: 5s}\n"
                "      http: {http1MaxPendingRequests: 1}\n", n_endpoints=1,
           extra="  proxyHeaders: {envoyDebugHeaders: {disabled: true}}\n")
    got, _ = _parallel(env, 6, "/delay/2000", field="x-envoy-overloaded")
    over = [g for g in got if isinstance(g, tuple) and g[0] == 503]
    check(over and all(g[1] is None for g in over), f"the overflow's 503s: {got}")


@_test
def pool_idle_timeout_closes_pooled_connection(env):
    """connectionPool.http.idleTimeout closes a pooled upstream connection that
    stayed unused that long (Envoy's idle_timeout of the cluster's HTTP
    protocol options): a request within it reuses the connection, one after it
    opens a new one."""
    admin = free_port()
    _setup(env, "    connectionPool:\n      http: {idleTimeout: 1s}\n", n_endpoints=1, admin_port=admin)
    # One client connection: one worker, whose pool the upstream connection is in.
    with Conn("127.0.0.1", env.gw_port) as c:
        check(c.request("GET", "/", "test.local").status == 200, "first request failed")
        connects = metric(admin, "isthmus_upstream_connects_total")
        reused = metric(admin, "isthmus_upstream_reused_total")
        check(c.request("GET", "/", "test.local").status == 200, "second request failed")
        check(metric(admin, "isthmus_upstream_reused_total") == reused + 1,
              "a request right after the first did not reuse its connection")
        time.sleep(2.5)  # the idleness under test (idleTimeout 1s), not a synchronisation
        check(c.request("GET", "/", "test.local").status == 200, "request after the idle timeout failed")
        check(metric(admin, "isthmus_upstream_connects_total") == connects + 1
              and metric(admin, "isthmus_upstream_reused_total") == reused + 1,
              "a request 2.5 s after the last (idleTimeout 1s) reused the pooled connection: it was never closed")


@_test
def max_requests_per_connection(env):
    admin = free_port()
    _setup(env, "    connectionPool:\n      http: {maxRequestsPerConnection: 1}\n", n_endpoints=1,
           admin_port=admin)
    before = metric(admin, "isthmus_upstream_connects_total")
    for _ in range(10):
        check(env.get("/").status == 200, "request failed")
    used = metric(admin, "isthmus_upstream_connects_total") - before
    check(used == 10, f"10 requests with maxRequestsPerConnection 1 opened {used} upstream connections")
    reused = metric(admin, "isthmus_upstream_reused_total")
    check(reused == 0, f"{reused} requests reused a connection despite maxRequestsPerConnection 1")


@_test
def upstream_reuse_and_reload_failures_counted(env):
    """isthmus_upstream_reused_total counts the requests that went on a pooled
    connection: 10 requests one after another to one endpoint (2 workers)
    open at most 2 connections and reuse them at least 8 times.
    isthmus_reload_failures_total counts a refused reload, and
    isthmus_reloads_total does not."""
    admin = free_port()
    _setup(env, "    connectionPool:\n      http: {maxRequestsPerConnection: 100}\n", n_endpoints=1,
           admin_port=admin)
    before = metric(admin, "isthmus_upstream_connects_total")
    reused0 = metric(admin, "isthmus_upstream_reused_total")
    for _ in range(10):
        check(env.get("/").status == 200, "request failed")
    used = metric(admin, "isthmus_upstream_connects_total") - before
    reused = metric(admin, "isthmus_upstream_reused_total") - reused0
    check(used <= 2 and used + reused == 10,
          f"10 requests: {used} upstream connections opened, {reused} counted as reusing one")
    fails0 = metric(admin, "isthmus_reload_failures_total")
    reloads0 = metric(admin, "isthmus_reloads_total")
    with open(env.path("isthmus.yaml"), "a") as f:
        f.write("---\nkind: Nonsense\n")
    ans = ctl_cmd(env.path("ctl.sock"), "reload", timeout=30)
    check("refused" in ans, f"a bad file's reload: {ans!r}")
    check(metric(admin, "isthmus_reload_failures_total") == fails0 + 1 and
          metric(admin, "isthmus_reloads_total") == reloads0,
          f"after a refused reload: isthmus_reload_failures_total {fails0} -> "
          f"{metric(admin, 'isthmus_reload_failures_total')}, isthmus_reloads_total {reloads0} -> "
          f"{metric(admin, 'isthmus_reloads_total')}")


@_test
def max_connection_duration_http(env):
    """connectionPool.tcp.maxConnectionDuration bounds pooled HTTP/1.1
    connections too (Istio sets Envoy's max_connection_duration on HTTP
    clusters from it): a connection that old is not used again, the request
    it carries finishing on it; the next request opens a new one (one
    connection served every request for ever)."""
    admin = free_port()
    ports = env.upstream(["127.0.0.1:0=e0"], name="e0")
    gw_port = free_port()
    dr = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: pol}\n"
          f"spec:\n  host: {SVC}\n  trafficPolicy:\n    connectionPool:\n      tcp: {{maxConnectionDuration: 1s}}\n")
    conf = env.write("isthmus.yaml", docs(
        appliance(env, workers=1, extra=f"  admin: {{address: 127.0.0.1:{admin}}}\n"), gateway(gw_port),
        virtual_service("pol", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n"), dr,
        service_entry("pol", SVC, [{"address": "127.0.0.1", "port": ports["e0"], "locality": "eu-west/eu-west-1a"}])))
    env.start_gateway(conf, gw_port)
    before = metric(admin, "isthmus_upstream_connects_total")
    t0 = time.monotonic()
    check(env.get("/delay/1300").status == 200, "a request that outlives the connection's duration failed")
    check(time.monotonic() - t0 >= 1.0, "the first request took less than the duration")
    check(env.get("/").status == 200, "the request after the duration failed")
    used = metric(admin, "isthmus_upstream_connects_total") - before
    check(used == 2, f"two requests, the second after the first connection's duration: {used} connections")


@_test
def retries_backoff(env):
    """retries.backoff is Envoy's base interval: retry N waits a random time
    below 2^(N-1) x backoff. Two retries of an upstream that answers 503 wait
    1.5 x backoff on average: 225 ms with backoff 150ms, against 38 ms for the
    same route with the default base (25 ms), side by side, 20 requests each."""
    ports = env.upstream(["127.0.0.1:0=e0"], name="e0")
    gw_port = free_port()
    http = "".join(
        f"  - match: [{{headers: {{x-b: {{exact: {name}}}}}}}]\n"
        f"    route: [{{destination: {{host: {SVC}}}}}]\n"
        f"    retries: {{attempts: 2, retryOn: \"503\"{extra}}}\n"
        for name, extra in (("slow", ", backoff: 150ms"), ("default", "")))
    conf = env.write("isthmus.yaml", docs(
        appliance(env), gateway(gw_port), virtual_service("pol", ["*"], http),
        service_entry("pol", SVC, [{"address": "127.0.0.1", "port": ports["e0"],
                                    "locality": "eu-west/eu-west-1a"}])))
    env.start_gateway(conf, gw_port)
    mean = {}
    for name in ("slow", "default"):
        took = []
        for _ in range(20):
            t0 = time.monotonic()
            r = env.get("/status/503", headers={"x-b": name})
            took.append(time.monotonic() - t0)
            check(r.status == 503, f"{name}: answered {r.status}, want the upstream's 503")
        mean[name] = sum(took) / len(took)
    check(mean["slow"] - mean["default"] > 0.12,
          f"mean time with backoff 150ms {mean['slow'] * 1000:.0f} ms, with the default "
          f"{mean['default'] * 1000:.0f} ms: the backoff is not applied")
    check(mean["slow"] < 2.0, f"mean time with backoff 150ms: {mean['slow'] * 1000:.0f} ms (want about 225)")


@_test
def lb_warmup(env):
    """loadBalancer.warmup (Envoy's slow start, as Istio configures it): an
    endpoint a reload adds takes a small share of the requests at first, its
    weight scaled by max((t / duration)^(1 / aggression), minimumPercent), and
    its full share once the duration is over; under ROUND_ROBIN and under
    LEAST_REQUEST (which then weighs every pick instead of two random
    choices). The endpoints already serving are not held back. show endpoints
    says how far each one is (warmup_percent)."""
    names = ("e0", "e1", "e2")
    ports = {n: env.upstream([f"127.0.0.1:0={n}"], name=n)[n] for n in names}
    gw_port = free_port()
    # At half the duration the factor is 0.5^4 = 1/16; at two thirds, 0.2.
    warm = "warmup: {duration: 6s, minimumPercent: 1, aggression: 0.25}"

    def conf(lb, members):
        dr = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: pol}\n"
              f"spec:\n  host: {SVC}\n  trafficPolicy:\n    loadBalancer: {{simple: {lb}, {warm}}}\n")
        eps = [{"address": "127.0.0.1", "port": ports[m], "locality": "eu-west/eu-west-1a"} for m in members]
        return env.write("isthmus.yaml", docs(
            appliance(env), gateway(gw_port),
            virtual_service("pol", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n"),
            dr, service_entry("pol", SVC, eps)))

    env.start_gateway(conf("ROUND_ROBIN", names[:1]), gw_port)
    sock = env.path("ctl.sock")

    def warmed_up():
        """{endpoint name: warmup_percent} of the cluster's endpoints."""
        eps = json.loads(ctl_cmd(sock, f"show endpoints outbound|80||{SVC} json"))
        by_port = {str(p): n for n, p in ports.items()}
        return {by_port[e["key"].rsplit(":", 1)[1]]: e["warmup_percent"] for e in eps}

    for lb, members in (("ROUND_ROBIN", names[:2]), ("LEAST_REQUEST", names)):
        new, even = members[-1], 1 / len(members)
        # The endpoints there before (since the start, too) are warm first.
        poll(lambda: all(p == 100 for p in warmed_up().values()) and warmed_up(), 20,
             what="the serving endpoints' warmup to end")
        conf(lb, members)
        t0 = time.monotonic()
        check("published" in ctl_cmd(sock, "reload"), f"reload to {members} refused")
        ups = tally_ok(env, 150)
        took = time.monotonic() - t0
        # Within 4 s the factor is at most (4/6)^4 = 0.2: a fifth of an even share.
        check(took < 4, f"150 requests took {took:.1f}s: too slow to see the warmup")
        w = warmed_up()
        check(w[new] < 100 and all(w[m] == 100 for m in members[:-1]), f"warmup_percent: {w}")
        check(ups.get(new, 0) / 150 < even / 2,
              f"{lb}: the new endpoint {new} took {ups.get(new, 0)} of 150 within {took:.1f}s of joining, "
              f"want well under an even share ({even:.2f}): {ups}")
        check(all(ups.get(m, 0) / 150 > even * 0.7 for m in members[:-1]),
              f"{lb}: the endpoints already serving should share the rest: {ups}")

        def warmed():
            got = tally_ok(env, 150)
            return got.get(new, 0) / 150 > even * 0.7 and got

        poll(warmed, 40, what=f"{new}'s share to grow to an even one ({lb}) once the warmup is over")


@_test
def outlier_ejection_per_subset(env):
    """Each cluster has its own outlier detection, as each Envoy cluster (and so
    each Istio subset) has its own detector: an endpoint ejected by the
    service's cluster without a subset still serves its subset, whose
    counters, ejections and events are its own."""
    eps = []
    for i, version in enumerate(("v1", "v2")):
        ports = env.upstream([f"127.0.0.1:0=e{i}"], name=f"e{i}")
        eps.append({"address": "127.0.0.1", "port": ports[f"e{i}"], "labels": {"version": version}})
    gw_port = free_port()
    dr = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: pol}\n"
          f"spec:\n  host: {SVC}\n  trafficPolicy:\n"
          "    loadBalancer: {simple: ROUND_ROBIN}\n"
          "    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 60s,\n"
          "      maxEjectionPercent: 100}\n"
          "  subsets:\n  - {name: v1, labels: {version: v1}}\n")
    routes = (f"  - match: [{{uri: {{prefix: /v1}}}}]\n    route: [{{destination: {{host: {SVC}, subset: v1}}}}]\n"
              f"  - route: [{{destination: {{host: {SVC}}}}}]\n")
    admin = free_port()
    conf = env.write("isthmus.yaml", docs(appliance(env, extra=f"  admin: {{address: 127.0.0.1:{admin}}}\n"),
                                          gateway(gw_port), virtual_service("pol", ["*"], routes), dr,
                                          service_entry("pol", SVC, eps)))
    env.start_gateway(conf, gw_port)
    sock = env.path("ctl.sock")
    all_cl, v1_cl = f"outbound|80||{SVC}", f"outbound|80|v1|{SVC}"

    def cluster_metrics():
        """{(family, cluster): value} of the per-cluster ejection families."""
        import urllib.request

        body = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
        out = {}
        for line in body.splitlines():
            for fam in ("isthmus_cluster_ejections_active", "isthmus_cluster_ejections_total"):
                for cl in (all_cl, v1_cl):
                    if line.startswith(f'{fam}{{cluster="{cl}"}} '):
                        out[(fam[len("isthmus_cluster_ejections_"):], cl)] = int(line.split()[-1])
        return out

    def e0_ejected(cluster=None):
        """(ejected, ejections) in cluster; without one, and the clusters ejecting it."""
        cmd = f"show endpoints {cluster} json" if cluster else "show endpoints json"
        for e in json.loads(ctl_cmd(sock, cmd)):
            if int(e["key"].rsplit(":", 1)[1]) == eps[0]["port"]:
                return (e["ejected"], e["ejections"]) + (() if cluster else (e["ejected_by"],))
        raise AssertionError(f"e0 not in {cmd}")

    def clusters_ejected():
        return {c["name"]: c["ejected"] for c in json.loads(ctl_cmd(sock, "show clusters json"))}

    check(env.get("/v1/").header("x-upstream") == "e0", "the subset v1 is not e0")
    env.ctl("127.0.0.1", eps[0]["port"], "fail/503")
    # The cluster without a subset meets e0's 503 (retried on e1) and ejects it.
    poll(lambda: env.get("/").status == 200 and e0_ejected(all_cl)[0], 10,
         what="e0's ejection by the cluster without a subset")
    env.ctl("127.0.0.1", eps[0]["port"], "ok")
    check(e0_ejected(v1_cl) == (False, 0), f"e0 in subset v1: {e0_ejected(v1_cl)}, want not ejected")
    check(e0_ejected() == (True, 1, all_cl), f"e0 over every cluster: {e0_ejected()}, want ejected once")
    check(clusters_ejected() == {all_cl: 1, v1_cl: 0}, f"show clusters: {clusters_ejected()}")
    want = {("active", all_cl): 1, ("total", all_cl): 1, ("active", v1_cl): 0, ("total", v1_cl): 0}
    check(cluster_metrics() == want, f"per-cluster ejection metrics {cluster_metrics()}, want {want}")
    # Subset v1 still sends to e0; the cluster without a subset does not.
    got = [env.get("/v1/") for _ in range(6)]
    check(all(r.status == 200 and r.header("x-upstream") == "e0" for r in got),
          f"subset v1 lost e0 to the other cluster's ejection: {[(r.status, r.header('x-upstream')) for r in got]}")
    ups = {env.get("/").header("x-upstream") for _ in range(6)}
    check(ups == {"e1"}, f"the cluster without a subset sent to {ups} while e0 is ejected there")
    # v1's own errors eject it there too, with an event naming the cluster.
    env.ctl("127.0.0.1", eps[0]["port"], "fail/503")
    poll(lambda: env.get("/v1/").status == 503 and e0_ejected(v1_cl) == (True, 1), 10,
         what="e0's ejection by subset v1")
    check(e0_ejected() == (True, 2, f"{all_cl},{v1_cl}") or e0_ejected() == (True, 2, f"{v1_cl},{all_cl}"),
          f"e0 over every cluster: {e0_ejected()}, want two ejections, by both")
    check(clusters_ejected() == {all_cl: 1, v1_cl: 1}, f"show clusters: {clusters_ejected()}")
    want = {("active", all_cl): 1, ("total", all_cl): 1, ("active", v1_cl): 1, ("total", v1_cl): 1}
    check(cluster_metrics() == want, f"per-cluster ejection metrics {cluster_metrics()}, want {want}")
    events = ctl_cmd(sock, "show events")
    for cl in (all_cl, v1_cl):
        check(any(" ejection " in l and "ejected by outlier detection" in l and f"(cluster {cl})" in l
                  for l in events.splitlines()), f"no ejection event naming {cl}:\n{events}")


@_test
def outlier_return_by_time_logged(env):
    """An endpoint whose ejection time is over returns, and the log says so
    (its ejection and a health check's return were logged, a return by time
    only in show events)."""
    ports = _setup(env, "    loadBalancer: {simple: ROUND_ROBIN}\n"
                        "    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 1s,\n"
                        "      maxEjectionPercent: 100}\n", n_endpoints=2)
    sock = env.path("ctl.sock")

    def ejected():
        eps = json.loads(ctl_cmd(sock, f"show endpoints outbound|80||{SVC} json"))
        return {int(e["key"].rsplit(":", 1)[1]) for e in eps if e["ejected"]}

    env.ctl("127.0.0.1", ports[0], "fail/503")
    poll(lambda: env.get("/").status and ejected() == {ports[0]}, 10, what="e0's ejection")
    env.ctl("127.0.0.1", ports[0], "ok")
    poll(lambda: ejected() == set(), 10, what="e0's return when its ejection time is over")
    key = f"{SVC}|127.0.0.1:{ports[0]}"
    poll(lambda: env.log_count(f"endpoint {key} returned from ejection: its ejection time is over "
                               f"(cluster outbound|80||{SVC})") == 1, 5, what="the return's log line")


@_test
def readded_endpoint_starts_anew(env):
    """An endpoint that a reload removes and the next one adds back is a new
    endpoint, as Envoy makes a new host: e0's ejection (120 s) and e2's drain
    by the control socket are gone, and both take their share again. They came
    back with the endpoint when the second reload came before the master's
    sweep of unused endpoints (a second or so), and not after it. e1, which
    both reloads keep, keeps its weight set by the control socket."""
    writer = []
    ports = _setup(env, "    loadBalancer: {simple: ROUND_ROBIN}\n"
                        "    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 120s,\n"
                        "      maxEjectionPercent: 100}\n", keep=writer)
    sock = env.path("ctl.sock")
    key = [f"{SVC}|127.0.0.1:{p}" for p in ports]

    def endpoints():
        return {e["key"]: e for e in json.loads(ctl_cmd(sock, f"show endpoints outbound|80||{SVC} json"))}

    env.ctl("127.0.0.1", ports[0], "fail/503")
    poll(lambda: env.get("/").status and endpoints()[key[0]]["ejected"], 10, what="e0's ejection")
    env.ctl("127.0.0.1", ports[0], "ok")
    for cmd in (f"set endpoint {key[2]} state drain", f"set endpoint {key[1]} weight 3"):
        check(ctl_cmd(sock, cmd).startswith("ok"), cmd)
    writer[0]([1])
    check("generation 2 published" in ctl_cmd(sock, "reload"), "the reload without e0 and e2")
    writer[0](range(3))
    check("generation 3 published" in ctl_cmd(sock, "reload"), "the reload adding them back")
    eps = endpoints()
    check(not eps[key[0]]["ejected"] and eps[key[0]]["ejections"] == 0, f"e0 came back ejected: {eps[key[0]]}")
    check(eps[key[2]]["admin"] == "ready", f"e2 came back drained: {eps[key[2]]}")
    check(eps[key[1]]["weight"] == 3 and eps[key[1]]["weight_set"], f"e1 lost its weight: {eps[key[1]]}")
    # Each endpoint once, though the first generation may still hold e0's and e2's old state.
    listed = [e["key"] for e in json.loads(ctl_cmd(sock, "show endpoints json"))]
    check(sorted(listed) == sorted(key), f"show endpoints lists {listed}")
    poll(lambda: set(tally_ok(env, 10)) == {"e0", "e1", "e2"}, 10, what="e0 and e2 to take traffic again")


@_test
def outlier_error_codes(env):
    """outlierDetection.outlierDetectionHttpErrorCodes (Envoy's error matcher
    on the status, as Istio sets it): the listed statuses are errors, and the
    others, 5xx included, are successes. An endpoint answering 429 (listed) is
    ejected after consecutive5xxErrors of them; one answering 500 (not listed)
    is never ejected and keeps its share."""
    ports = _setup(env, "    loadBalancer: {simple: ROUND_ROBIN}\n"
                        "    outlierDetection: {consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 60s,\n"
                        "      maxEjectionPercent: 100, outlierDetectionHttpErrorCodes: [429, 503]}\n")
    sock = env.path("ctl.sock")
    env.ctl("127.0.0.1", ports[0], "fail/500")
    env.ctl("127.0.0.1", ports[1], "fail/429")

    def ejected():
        eps = json.loads(ctl_cmd(sock, f"show endpoints outbound|80||{SVC} json"))
        return {int(e["key"].rsplit(":", 1)[1]) for e in eps if e["ejected"]}

    statuses = [env.get("/").status for _ in range(30)]
    poll(lambda: ejected() == {ports[1]}, 10, what=f"only the endpoint answering 429 to be ejected ({ejected()})")
    later = [env.get("/").status for _ in range(30)]
    check(429 in statuses, f"the endpoint answering 429 was never reached: {statuses}")
    check(429 not in later, f"the ejected endpoint still answered: {later}")
    check(later.count(500) >= 10,
          f"the endpoint answering 500 (not a listed code) lost its share: {later.count(500)} of 30")
    check(env.log_count("ejected by outlier detection (cluster outbound|80||" + SVC + ", status 429)") >= 1,
          "the ejection's log line does not name the status")
