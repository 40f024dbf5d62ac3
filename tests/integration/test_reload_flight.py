# SPDX-License-Identifier: Apache-2.0
"""Integration tests of requests in flight across a reload: what they had of the
old generation (their cluster, its endpoints and counted capacity, the route,
listener and cluster counters) is found by name in the new one, as Envoy's
router finds its cluster by name at each retry. A request whose attempt fails
after the reload is retried; one in a fault delay or waiting for a connection
goes on when the wait ends (they were answered 503, or not at all); one whose cluster
the new file no longer has answers 503 NC (at a retry: UH); one holding an http2MaxRequests slot
still holds it in the new generation; its response is counted and logged with
its cluster; a TCP tunnel's bytes are counted in its route's new counters.
Beside them: a fault delay that ends with no endpoint left
answers at once (it waited for a second end of the delay, for ever).

Every reload here puts a ServiceEntry in front of the request's own, so the
cluster's index in the table changes: the request must find it by name.

Registered into run.py's list by register(test)."""

import json
import re
import socket
import threading
import time

from harness import (Registry, appliance, check, ctl_cmd, docs, file_lines, free_port, gateway, http_get, poll,
                     service_entry, virtual_service)
from test_retries import SVC, UP_ADDR, ScriptedUpstream
from test_tunnels import Backend, TcpClient, World, scrape, tcp_world

_test = Registry()
register = _test.register

CLUSTER = f"outbound|80||{SVC}"
LOG_FMT = "%REQ(:PATH)% %RESPONSE_CODE% %RESPONSE_FLAGS% %UPSTREAM_REQUEST_ATTEMPT_COUNT% %UPSTREAM_CLUSTER%"


def reload_to(env, gen):
    """A reload of the file as it is now, which must publish generation gen;
    returns once every worker uses it."""
    sock = env.path("ctl.sock")
    ans = ctl_cmd(sock, "reload")
    check(f"generation {gen} published" in ans, f"reload answered {ans!r}")
    poll(lambda: all(w["generation"] == gen for w in json.loads(ctl_cmd(sock, "show workers json"))),
         10, what=f"every worker on generation {gen}")


class Flight:
    """A gateway of one worker in front of a ScriptedUpstream, with an access
    log and an admin listener; write(...) makes its file, reload(...) makes a
    new one and waits until the worker uses it."""

    def __init__(self, env, first, fail_on=(1,)):
        self.env = env
        self.up = ScriptedUpstream(first, fail_on=fail_on)
        self.gw = free_port()
        self.admin = free_port()
        self.log = env.path("access.log")
        self.gen = 1

    def write(self, routes, dr="", front=False, own=True, workers=1, drain="1s"):
        """The file: routes (the VirtualService's http list), dr (extra
        documents), front: a ServiceEntry whose cluster comes before the
        request's; own: the request's ServiceEntry is there."""
        extra = (f"  admin: {{address: 127.0.0.1:{self.admin}}}\n"
                 f"  accessLog: {{path: {self.log}, format: text, textFormat: \"{LOG_FMT}\"}}\n")
        parts = [appliance(self.env, workers=workers, extra=extra,
                           timeouts={"upstreamResponse": "20s", "upstreamConnect": "10s", "drain": drain}),
                 gateway(self.gw)]
        if front:
            parts.append(service_entry("aaa", "aaa.test.internal", [{"address": UP_ADDR, "port": self.up.port}]))
            parts.append(service_entry("aab", "aab.test.internal", [{"address": UP_ADDR, "port": self.up.port}],
                                       port=81))
        parts.append(virtual_service("vs", ["*"], routes))
        if own:
            parts.append(service_entry("svc", SVC, [{"address": UP_ADDR, "port": self.up.port}]))
        if dr:
            parts.append(dr)
        return self.env.write("isthmus.yaml", docs(*parts))

    def start(self, routes, dr=""):
        self.env.start_gateway(self.write(routes, dr), self.gw)

    def reload(self, routes, dr="", own=True, workers=1, drain="1s"):
        self.write(routes, dr, front=True, own=own, workers=workers, drain=drain)
        self.gen += 1
        reload_to(self.env, self.gen)

    def requests(self):
        return int(json.loads(ctl_cmd(self.env.path("ctl.sock"), "show info json"))["requests"])

    def send(self, path):
        """GET path in a thread; a dict that gets the response as "r" (or the
        exception as "e") and the time it came as "t"."""
        out = {}

        def run():
            try:
                out["r"] = http_get(self.gw, path, timeout=30)
            except Exception as e:  # noqa: BLE001 - reported by the test
                out["e"] = e
            out["t"] = time.monotonic()

        out["thread"] = threading.Thread(target=run, daemon=True)
        out["thread"].start()
        return out

    def delayed(self, delay, path):
        """Starts the gateway with one route, delayed by a fault of delay, and
        sends path, waiting until the gateway has it; (routes, send's dict,
        the time it was sent)."""
        routes = (f"  - fault: {{delay: {{fixedDelay: {delay}, percentage: {{value: 100}}}}}}\n"
                  f"    route: [{{destination: {{host: {SVC}}}}}]\n")
        self.start(routes)
        base = self.requests()
        t0 = time.monotonic()
        out = self.send(path)
        poll(lambda: self.requests() > base, 10, what=f"{path} at the gateway")
        return routes, out, t0

    def line(self, path):
        """The access log line of path (polled)."""
        got = poll(lambda: [ln for ln in file_lines(self.log) if ln.startswith(path + " ")] or None, 10,
                   what=f"the access log line of {path}")
        return got[-1]

    def cluster_2xx(self):
        """isthmus_cluster_responses_total of the request's cluster, 2xx."""
        body = http_get(self.admin, "/metrics").body.decode()
        for ln in body.splitlines():
            if ln.startswith(f'isthmus_cluster_responses_total{{cluster="{CLUSTER}",code_class="2xx"}} '):
                return int(ln.split()[-1])
        return 0

    def close(self):
        self.up.close()


def done(out, what):
    out["thread"].join(30)
    check("r" in out, f"{what}: no response ({out.get('e')!r})")
    return out["r"]


ROUTE = f"  - route: [{{destination: {{host: {SVC}}}}}]\n"


def retried_in_flight(env, retries="{attempts: 2, retryOn: 5xx}"):
    """A Flight whose upstream answers the first attempt of /retried, now in
    flight, with a 503 once release is set; its route retries on 5xx (the
    route's retries): (f, out, release, routes). The caller closes f and sets
    release."""
    release = threading.Event()

    def late_503(c, head, rest):
        release.wait(20)
        c.sendall(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")

    f = Flight(env, late_503)
    routes = ROUTE + f"    retries: {retries}\n"
    try:
        f.start(routes)
        out = f.send("/retried")
        poll(lambda: len(f.up.heads) >= 1, 10, what="the first attempt at the upstream")
    except BaseException:
        release.set()
        f.close()
        raise
    return f, out, release, routes


@_test
def reload_retries_attempt_in_flight(env):
    """An attempt that fails after a reload is retried on the new generation's
    cluster of the same name (it was answered with the 503: the request had no
    cluster any more), and its line names the cluster and both tries."""
    f, out, release, routes = retried_in_flight(env)
    try:
        f.reload(routes + "    headers: {request: {set: {x-gen: \"2\"}}}\n")
        release.set()
        r = done(out, "the request in flight")
        check(r.status == 200 and r.body == b"got 0", f"got {r.status} {r.body!r}, want the retry's 200 'got 0'")
        check(f.up.conns == 2, f"{f.up.conns} upstream connections, want 2 (the retry)")
        # The request keeps its route as routed: the new route's edit is not on the retry.
        check("x-gen" not in f.up.heads[1].lower(), f"the retry took the new route's edits: {f.up.heads[1]!r}")
        line = f.line("/retried")
        check(line == f"/retried 200 - 2 {CLUSTER}", f"access log: {line!r}")
        check(f.cluster_2xx() == 1, f"the new generation's cluster counted {f.cluster_2xx()} 2xx, want 1")
    finally:
        release.set()
        f.close()


@_test
def draining_worker_retries(env):
    """An attempt that fails on a worker that a reload set draining (one that
    changes the worker count) is retried, as Envoy's router retries while its
    listener drains: the client got the upstream's 503."""
    f, out, release, routes = retried_in_flight(env)
    try:
        f.reload(routes, workers=2, drain="20s")
        workers = json.loads(ctl_cmd(env.path("ctl.sock"), "show workers json"))
        check(sum(w["draining"] for w in workers) == 1, f"want one worker draining: {workers}")
        release.set()
        r = done(out, "the request in flight")
        check(r.status == 200 and r.body == b"got 0", f"got {r.status} {r.body!r}, want the retry's 200 'got 0'")
        check(f.line("/retried") == f"/retried 200 - 2 {CLUSTER}", f"access log: {f.line('/retried')!r}")
    finally:
        release.set()
        f.close()


@_test
def draining_worker_skips_a_retry_past_its_drain(env):
    """A retry whose back-off could still run when the draining worker's
    drain time (1 s) is over is not started (backoff 20 s): the client gets
    the upstream's 503 at once, not a connection cut at the drain's end."""
    f, out, release, routes = retried_in_flight(env, "{attempts: 2, retryOn: 5xx, backoff: 20s}")
    try:
        f.reload(routes, workers=2, drain="1s")
        # The old worker drains once one of the new set serves.
        poll(lambda: sum(w["draining"] for w in json.loads(ctl_cmd(env.path("ctl.sock"), "show workers json"))) == 1,
             10, what="the old worker draining")
        release.set()
        r = done(out, "the request in flight")
        check(r.status == 503, f"got {r.status} {r.body!r}, want the upstream's 503 (no retry past the drain)")
        check(f.line("/retried") == f"/retried 503 - 1 {CLUSTER}", f"access log: {f.line('/retried')!r}")
    finally:
        release.set()
        f.close()


@_test
def reload_during_fault_delay(env):
    """A request in a fault delay when the reload comes goes on when the delay
    ends (it got no answer at all: the 503 'configuration changed' made at
    the delay's end waited for the delay's end, which had come)."""
    f = Flight(env, None, fail_on=())
    try:
        routes, out, t0 = f.delayed("4s", "/delayed")
        f.reload(routes)
        reloaded = time.monotonic()
        r = done(out, "the delayed request")
        check(r.status == 200 and r.body == b"got 0", f"got {r.status} {r.body!r}, want the upstream's 200")
        check(reloaded < out["t"], "the reload ended after the response: the delay did not span it")
        check(out["t"] - t0 >= 3.5, f"answered after {out['t'] - t0:.1f} s, before the 4 s delay")
        check(f.line("/delayed") == f"/delayed 200 DI 1 {CLUSTER}", f"access log: {f.line('/delayed')!r}")
    finally:
        f.close()


@_test
def reload_while_waiting_for_connection(env):
    """A request queued for a connection (maxConnections reached) when the
    reload comes is sent once the connection is released (it was answered 503
    'configuration changed')."""
    release = threading.Event()

    def hold(c, head, rest):
        release.wait(20)
        c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nheld")

    dr = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: dr}\n"
          f"spec:\n  host: {SVC}\n  trafficPolicy:\n    connectionPool:\n"
          "      tcp: {maxConnections: 1}\n      http: {http1MaxPendingRequests: 10}\n")
    f = Flight(env, hold)
    try:
        f.start(ROUTE, dr)
        first = f.send("/held")
        poll(lambda: len(f.up.heads) >= 1, 10, what="the first request at the upstream")
        base = f.requests()
        second = f.send("/queued")
        poll(lambda: f.requests() > base, 10, what="the second request at the gateway")
        f.reload(ROUTE, dr)
        check("r" not in second, f"the queued request was answered at the reload: {second.get('r')}")
        release.set()
        r1, r2 = done(first, "the held request"), done(second, "the queued request")
        check(r1.status == 200 and r1.body == b"held", f"held request: {r1.status} {r1.body!r}")
        check(r2.status == 200 and r2.body == b"got 0", f"queued request: {r2.status} {r2.body!r}, want 200")
        check(f.line("/queued") == f"/queued 200 - 1 {CLUSTER}", f"access log: {f.line('/queued')!r}")
        check(f.cluster_2xx() == 2, f"the new generation's cluster counted {f.cluster_2xx()} 2xx, want 2")
    finally:
        release.set()
        f.close()


@_test
def reload_removes_cluster_of_waiting_request(env):
    """A request in a fault delay whose cluster the new file no longer has is
    answered as Envoy's router, which sees it after the delay, answers for a
    cluster it does not find: 503 NC ('cluster not found'); a retry finding
    none is retry_finds_cluster_gone's."""
    f = Flight(env, None, fail_on=())
    try:
        _, out, _ = f.delayed("3s", "/orphan")
        f.reload("  - route: [{destination: {host: aaa.test.internal}}]\n", own=False)
        r = done(out, "the delayed request")
        check(r.status == 503 and r.body == b"cluster not found\n",
              f"got {r.status} {r.body!r}, want 503 'cluster not found'")
        check(f.line("/orphan") == "/orphan 503 DI,NC 0 -", f"access log: {f.line('/orphan')!r}")
        check(f.up.conns == 0, f"{f.up.conns} upstream connections, want none")
        r = http_get(f.gw, "/after")
        check(r.status == 200, f"a request after the reload: {r.status}")
    finally:
        f.close()


@_test
def retry_finds_cluster_gone(env):
    """An attempt that fails after a reload that removed its cluster is not
    retried: Envoy's router, finding no cluster at its retry, answers that no
    upstream is healthy (503 UH), where a request whose first attempt finds
    none is NC (reload_removes_cluster_of_waiting_request)."""
    f, out, release, routes = retried_in_flight(env)
    try:
        f.reload("  - route: [{destination: {host: aaa.test.internal}}]\n", own=False)
        release.set()
        r = done(out, "the request in flight")
        check(r.status == 503 and r.body == b"no healthy upstream\n",
              f"got {r.status} {r.body!r}, want 503 'no healthy upstream'")
        check(f.up.conns == 1, f"{f.up.conns} upstream connections, want 1 (no retry)")
        check(f.line("/retried") == "/retried 503 UH 1 -", f"access log: {f.line('/retried')!r}")
    finally:
        release.set()
        f.close()


@_test
def tcp_retry_finds_cluster_gone(env):
    """A TCP route's connection whose connect times out after a reload removed
    its cluster: the retry finds no cluster and the connection closes, logged
    NC as Envoy's TCP proxy logs it (it was UH, the HTTP router's answer)."""
    held = socket.socket()
    held.bind(("127.0.0.3", 0))
    held.listen(0)  # never accepted: its queue full, further connects wait
    fill = []
    try:
        for _ in range(4):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(held.getsockname())
            fill.append(f)
        world = World(env, workers=1, timeouts={"upstreamConnect": "2s"}, log_format="format: text")
        host = world.service("gone.tcp.internal", [Backend("h", "127.0.0.3", held.getsockname()[1])])
        port = world.tcp([(host, None)])
        world.start()
        c = socket.create_connection(("127.0.0.1", port), timeout=10)
        c.sendall(b"hello")
        poll(lambda: json.loads(ctl_cmd(env.path("ctl.sock"), "show info json"))["connections_active"] >= 1, 5,
             what="the connection at the gateway")
        world.services = {"other.tcp.internal": world.services[host]}
        world.listeners[0]["dests"] = [("other.tcp.internal", None)]
        world.write()
        reload_to(env, 2)
        end = c.recv(100)
        c.close()
        check(end == b"", f"the client got {end!r}, want the end")
        lines = poll(lambda: [ln for ln in file_lines(world.log) if "NC" in ln or "UH" in ln] or None, 10,
                     what="the connection's log line")
        check(re.search(r"\bNC\b", lines[-1]) and "UH" not in lines[-1], f"access log: {lines[-1]!r}, want NC")
    finally:
        for f in fill:
            f.close()
        held.close()


@_test
def reload_keeps_max_requests_slot(env):
    """http2MaxRequests (Envoy's max_requests) holds across a reload: a request
    in flight still takes its slot in the new generation, so another is an
    overflow (503 UO) until it ends, and then the slot is free again (given
    back once, in the new generation)."""
    release = threading.Event()

    def hold(c, head, rest):
        release.wait(20)
        c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 4\r\nconnection: close\r\n\r\nheld")

    dr = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: dr}\n"
          f"spec:\n  host: {SVC}\n  trafficPolicy:\n    connectionPool:\n      http: {{http2MaxRequests: 1}}\n")
    f = Flight(env, hold)
    try:
        f.start(ROUTE, dr)
        first = f.send("/held")
        poll(lambda: len(f.up.heads) >= 1, 10, what="the first request at the upstream")
        f.reload(ROUTE, dr)
        r = http_get(f.gw, "/over")
        check(r.status == 503, f"a second request while the first holds the slot: {r.status}, want 503")
        check(f.line("/over") == "/over 503 UO 0 " + CLUSTER, f"access log: {f.line('/over')!r}")
        release.set()
        r1 = done(first, "the held request")
        check(r1.status == 200 and r1.body == b"held", f"held request: {r1.status} {r1.body!r}")
        for i in range(3):
            r = http_get(f.gw, f"/free{i}")
            check(r.status == 200, f"request {i} after the held one ended: {r.status}, want 200")
    finally:
        release.set()
        f.close()


@_test
def fault_delay_ends_without_endpoint(env):
    """A fault delay that ends with no endpoint left to take the request (the
    only one set to maint meanwhile) answers 503 'no healthy upstream' at its
    end; the answer made as the delay ended waited for the delay's end, which
    had come, and the client waited for nothing."""
    f = Flight(env, None, fail_on=())
    sock = env.path("ctl.sock")
    try:
        _, out, t0 = f.delayed("2s", "/stranded")
        key = [e["key"] for e in json.loads(ctl_cmd(sock, "show endpoints json"))]
        check(len(key) == 1, f"endpoints: {key}")
        check(ctl_cmd(sock, f"set endpoint {key[0]} state maint").startswith("ok"), "maint")
        r = done(out, "the delayed request")
        check(r.status == 503 and r.body == b"no healthy upstream\n",
              f"got {r.status} {r.body!r}, want 503 'no healthy upstream'")
        check(out["t"] - t0 < 10, f"answered after {out['t'] - t0:.1f} s, not at the delay's end")
        check(f.line("/stranded") == f"/stranded 503 UH,DI 0 {CLUSTER}", f"access log: {f.line('/stranded')!r}")
    finally:
        f.close()


@_test
def reload_counts_open_tunnel(env):
    """A TCP tunnel open across a reload that keeps the workers goes on, and
    the bytes it carries after the reload are counted under its TCP route in
    the new generation (they were counted nowhere), beside those before the
    reload (the counters are kept by name): 1000 + 5000 (and the greeting),
    each once."""
    world, (t1,), port = tcp_world(env, workers=1)
    c = TcpClient(port)
    try:
        check(c.greeting == "t1", f"greeting through the tcp route: {c.greeting!r}")
        c.echo(b"x" * 1000)
        world.service("aaa.tcp.internal", [t1])  # a cluster in front of the route's
        world.write()
        reload_to(env, 2)
        c.echo(b"y" * 5000)
        greeting = len(c.greeting) + 1  # its line, before the reload too
        want = {"isthmus_l4_route_received_bytes_total": 6000,
                "isthmus_l4_route_sent_bytes_total": 6000 + greeting}
        poll(lambda: all(scrape(world.admin).get(k) == v for k, v in want.items()), 10,
             what=f"the TCP route counters at {want}")
    finally:
        c.close()


FULL_DR = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: dr}\n"
           f"spec:\n  host: {SVC}\n  trafficPolicy:\n    connectionPool:\n"
           "      tcp: {maxConnections: 2}\n      http: {http2MaxRequests: 2, http1MaxPendingRequests: 1}\n")


def holding_worker(env, lose, what, dr=FULL_DR):
    """A worker holding two requests to an upstream that never answers them,
    with maxConnections and http2MaxRequests of 2, which lose(f) takes away
    (a kill, a drain); then every count must be back: the endpoint's
    in-flight count is 0 and new requests are answered 200 (they got 503
    for ever). Returns the Flight, closed."""
    release = threading.Event()

    def hold(c, head, rest):
        release.wait(20)

    f = Flight(env, hold, fail_on=(1, 2))
    try:
        f.start(ROUTE, dr)
        held = [f.send(f"/held{i}") for i in range(2)]
        poll(lambda: len(f.up.heads) >= 2, 10, what="two requests at the upstream")
        lose(f)
        for h in held:  # their connections went with the worker
            h["thread"].join(30)
        poll(lambda: all(e.get("inflight") == 0
                         for e in json.loads(ctl_cmd(env.path("ctl.sock"), "show endpoints json"))),
             10, what="the endpoints' in-flight counts back to 0")
        for i in range(4):
            r = http_get(f.gw, f"/after{i}")
            check(r.status == 200, f"request {i} after {what}: {r.status} {r.body!r}, want 200")
    finally:
        release.set()
        f.close()
    return f


@_test
def worker_killed_gives_back_counts(env):
    """A worker killed while it holds requests (a crash, a hang's kill)
    leaves nothing counted: its share of the endpoint's connections and
    requests in flight is taken off by the master, and its share of the
    cluster's http2MaxRequests count is left behind in a new generation
    (every later request was answered 503 UO, for ever)."""
    import os
    import signal

    def kill(f):
        victim = env.workers()[0]
        os.kill(victim, signal.SIGKILL)
        poll(lambda: (lambda ws: len(ws) == 1 and ws[0] != victim)(env.workers()), 10, what="the worker restarted")

    holding_worker(env, kill, "the kill")
    events = ctl_cmd(env.path("ctl.sock"), "show events")
    check("without a dead worker's share" in events, f"no event of the new generation: {events}")


@_test
def worker_killed_heal_retried(env):
    """The publish that leaves a killed worker's share of the counts behind is
    tried again until it succeeds: here the running file's certificate is away
    when the worker dies (the publish is refused), then back; the heal follows
    within seconds (a refused heal was never tried again, and every request
    to the cluster was 503 UO until an operator's reload)."""
    import os
    import signal

    from test_tls import Pki, gateway_of, server, tls_simple

    crt, key = Pki(env).leaf("heal", ["DNS:heal.test"])
    tls_gw = gateway_of(server(free_port(), ["*"], tls_simple((crt, key))), name="gw-tls")

    def kill(f):
        os.rename(crt, crt + ".away")
        victim = env.workers()[0]
        os.kill(victim, signal.SIGKILL)
        poll(lambda: "counts stays until" in env.gateway.log(), 10, what="the refused heal in the log")
        os.rename(crt + ".away", crt)
        poll(lambda: "a worker died holding requests" in env.gateway.log(), 10,
             what="the heal published once the certificate is back")

    holding_worker(env, kill, "the kill", dr=FULL_DR + "---\n" + tls_gw)


@_test
def worker_killed_in_backoff_gives_back_retry(env):
    """A worker killed while a request waits in a retry's back-off holds the
    cluster's maxRetries place and no endpoint count: the master heals it
    all the same, by a new generation (the place stayed taken until the next
    reload: with maxRetries 1, no request of the cluster was retried)."""
    import os
    import signal

    from test_retries import answer_503

    dr = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: dr}\n"
          f"spec:\n  host: {SVC}\n  trafficPolicy:\n    connectionPool:\n      http: {{maxRetries: 1}}\n")

    def cluster():
        return next(c for c in json.loads(ctl_cmd(env.path("ctl.sock"), "show clusters json"))
                    if c["name"] == CLUSTER)

    f = Flight(env, answer_503, fail_on=(1, 2, 3))
    try:
        f.start(ROUTE + "    retries: {attempts: 2, retryOn: 5xx, backoff: 30s}\n", dr)
        # The back-off is random below 30 s: a request whose retry comes at
        # once (1 in 60 for 0.5 s) leaves no window; the next one does.
        for i in range(3):
            out = f.send(f"/backoff{i}")
            poll(lambda: cluster()["retries_active"] == 1 or "t" in out, 10,
                 what="the request in its retry's back-off")
            if cluster()["retries_active"] == 1:
                break
        check(cluster()["retries_active"] == 1, f"no request stayed in its back-off: {cluster()}")
        victim = env.workers()[0]
        os.kill(victim, signal.SIGKILL)
        poll(lambda: (lambda ws: len(ws) == 1 and ws[0] != victim)(env.workers()), 10, what="the worker restarted")
        poll(lambda: cluster()["retries_active"] == 0, 10, what="the cluster's retries in flight back to 0")
        events = ctl_cmd(env.path("ctl.sock"), "show events")
        check("without a dead worker's share" in events, f"no event of the new generation: {events}")
    finally:
        f.close()


@_test
def drain_over_gives_back_counts(env):
    """A worker whose drain time ends with requests open (a reload that
    starts a new set of workers, timeouts.drain 1s) closes them and gives
    back what they held of the shared counts before it exits: the new
    workers have the endpoint's connections and the cluster's requests
    (maxConnections, http2MaxRequests) to themselves (every later request
    was answered 503, for ever); the cut requests are logged DC."""

    def drain(f):
        f.reload(ROUTE, FULL_DR, workers=2)
        poll(lambda: "exited after draining" in env.gateway.log(), 15,
             what="the old worker to exit at its drain time")

    f = holding_worker(env, drain, "the drain")
    check(f.line("/held0").startswith("/held0 0 DC"), f"the cut request's line: {f.line('/held0')!r}")


@_test
def reloads_replacing_workers_kill_none(env):
    """Reloads that start new sets of workers one after the other (the worker
    count 3, 2, 3, ...) kill no worker as hung: a worker started in the
    master's turn after it read its clock was judged to have gone 2^64-1 ms
    without a heartbeat, and killed at once."""
    f = Flight(env, None, fail_on=())
    try:
        f.start(ROUTE)
        # Workers are judged once the master has been awake 5 s.
        poll(lambda: json.loads(ctl_cmd(env.path("ctl.sock"), "show info json"))["uptime_s"] >= 6, 15,
             what="the master up for 6 s")
        for i in range(12):
            n = 3 if i % 2 == 0 else 2
            f.reload(ROUTE, workers=n)
            poll(lambda: len(env.workers()) == n, 15, what=f"the {n} workers of reload {i + 1}")
            check(http_get(f.gw, f"/r{i}").status == 200, f"a request after reload {i + 1}")
        info = json.loads(ctl_cmd(env.path("ctl.sock"), "show info json"))
        check(info["worker_hangs"] == 0 and "hung" not in env.gateway.log(),
              f"workers killed as hung: {info['worker_hangs']}")
    finally:
        f.close()
