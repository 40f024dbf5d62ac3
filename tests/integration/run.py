#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""isthmus integration tests: the real master and workers, real upstreams, real clients.

usage: run.py [--build DIR] [--only NAME[,NAME...]] [--list] [--keep]

Prints "ok NAME" or "FAIL NAME: reason" (with the tail of the gateway log) per
test, then "N passed, M failed"; exits 1 when any test failed.
"""

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (DEBIAN_PYTHON, ctl_cmd, file_lines, http_get, check_wrk_clean, wrk_reap, Conn, Env, Proc, Skip, TestFailure, appliance, build_request, check, curl,  # noqa: E402
                     destination_rule, docs, free_port, gateway, have, in_netns, make_netns, no_panic_rule, poll, port_open,
                     read_head, service_entry, virtual_service, vmrss_kib)
import test_locality  # noqa: E402
import test_policies  # noqa: E402
import test_ops  # noqa: E402
import test_tls  # noqa: E402
import test_security  # noqa: E402
import test_control  # noqa: E402
import test_operator  # noqa: E402
import test_h2  # noqa: E402
import test_h2safety  # noqa: E402
import test_istio_api  # noqa: E402
import test_routes  # noqa: E402
import test_mirror  # noqa: E402
import test_cors_fault  # noqa: E402
import test_tunnels  # noqa: E402
import test_dns  # noqa: E402
import test_multishot  # noqa: E402
import test_retries  # noqa: E402
import test_h2upconn  # noqa: E402
import test_h2strict  # noqa: E402
import test_upstream_pp  # noqa: E402
import test_authz  # noqa: E402
import test_jwt  # noqa: E402
import test_extauthz  # noqa: E402
import test_extauthz_grpc  # noqa: E402
import test_extauthz_body  # noqa: E402
import test_reload_flight  # noqa: E402
import test_unix_upstream  # noqa: E402
import test_health  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TESTS = []


def test(fn):
    TESTS.append(fn)
    return fn


# --------------------------------------------------------------------------- common setups

WEB = "web.test.internal"
API = "api.test.internal"


def web_routes(w1=75, w2=25):
    return (f"  - match: [{{uri: {{prefix: /api}}}}]\n"
            f"    route: [{{destination: {{host: {API}, port: {{number: 80}}}}}}]\n"
            f"  - route:\n"
            f"    - {{destination: {{host: {WEB}, subset: v1}}, weight: {w1}}}\n"
            f"    - {{destination: {{host: {WEB}, subset: v2}}, weight: {w2}}}\n")


def standard(env, health=False, timeouts=None, w1=75, w2=25, start=True, extra=""):
    """The brief's example: /api → api (127.0.0.4), the rest 75/25 v1 (127.0.0.2) / v2 (127.0.0.3)."""
    p1 = env.upstream(["127.0.0.2:0=v1"], name="v1")["v1"]
    p2 = env.upstream(["127.0.0.3:0=v2"], name="v2")["v2"]
    pa = env.upstream(["127.0.0.4:0=api"], name="api")["api"]
    env.ports = {"v1": ("127.0.0.2", p1), "v2": ("127.0.0.3", p2), "api": ("127.0.0.4", pa)}
    gw_port = free_port()

    def make(a, b):
        return docs(
            appliance(env, timeouts=timeouts, health_checks=[WEB] if health else [], extra=extra),
            gateway(gw_port),
            virtual_service("web", ["*"], web_routes(a, b)),
            destination_rule("web", WEB, ["v1", "v2"]),
            service_entry("web", WEB, [
                {"address": "127.0.0.2", "port": p1, "labels": {"version": "v1"}, "locality": "eu-west/eu-west-1a"},
                {"address": "127.0.0.3", "port": p2, "labels": {"version": "v2"}, "locality": "eu-west/eu-west-1b"},
            ]),
            service_entry("api", API, [{"address": "127.0.0.4", "port": pa, "locality": "eu-west/eu-west-1a"}]),
        )

    env.make_conf = make
    conf = env.write("isthmus.yaml", make(w1, w2))
    if start:
        env.start_gateway(conf, gw_port)
        wait_serving(env, "/")
    return conf


def wait_serving(env, path, host="test.local", timeout=10.0):
    """Polls until the gateway answers path with 200 (endpoints may start unhealthy
    until their first health check passes)."""
    return poll(lambda: env.get(path, host).status == 200, timeout, interval=0.1,
                what=f"200 for {path} through the gateway")


def who(resp):
    return resp.header("x-upstream")


def served(r, path, upstreams=("v1", "v2")):
    """r is the default answer of one of upstreams to path."""
    return r.status == 200 and who(r) in upstreams and r.body == f"{who(r)} {path}\n".encode()


def tally(env, n, path="/", host="test.local", headers=None):
    """n requests over keep-alive connections; returns {x-upstream: count}; every one must be 200."""
    counts = {}
    c = Conn("127.0.0.1", env.gw_port)
    try:
        for i in range(n):
            if i % 100 == 0 and i:
                c.close()
                c = Conn("127.0.0.1", env.gw_port)
            r = c.request("GET", path, host, headers)
            check(r.status == 200, f"request {i} to {path} answered {r.status}: {r.body[:200]!r}")
            counts[who(r)] = counts.get(who(r), 0) + 1
            if (r.header("connection") or "").lower() == "close":
                c.close()
                c = Conn("127.0.0.1", env.gw_port)
    finally:
        c.close()
    return counts


# --------------------------------------------------------------------------- configuration checks


@test
def check_bad_file(env):
    good = env.write("good.yaml", docs(appliance(env), gateway(free_port()),
                                       virtual_service("v", ["*"], "  - route: [{destination: {host: x.test}}]\n"),
                                       service_entry("x", "x.test", [{"address": "127.0.0.2", "port": 1}])))
    rc, out = env.check_config(good)
    check(rc == 0, f"isthmus -c on a valid file exited {rc}: {out}")
    bad = env.write("bad.yaml", docs(appliance(env), gateway(free_port()),
                                     virtual_service("v", ["*"], "  - route: [{destination: {host: x.test}, weight: lots}]\n"),
                                     service_entry("x", "x.test", [{"address": "127.0.0.2", "port": 1}])))
    rc, out = env.check_config(bad)
    check(rc == 1, f"isthmus -c on a bad file exited {rc} (want 1): {out}")
    m = re.search(re.escape(bad) + r":(\d+):(\d+): error: ", out)
    check(m, f"no '{bad}:LINE:COL: error:' in output: {out!r}")
    # The bad weight is on the VirtualService's route line; the line must point into that document.
    lines = open(bad).read().split("\n")
    line = int(m.group(1))
    check(1 <= line <= len(lines) and "lots" in lines[line - 1],
          f"error points at line {line} ({lines[line - 1] if 1 <= line <= len(lines) else '?'!r}), not at the bad weight")
    bad2 = env.write("bad2.yaml", docs(appliance(env), "apiVersion: networking.istio.io/v1\nkind: Gateway\n"
                                       "metadata: {name: gw}\nspec:\n  servers:\n  - port: {number: 99999, name: http, protocol: HTTP}\n"
                                       "    hosts: ['*']\n  unknownField: 1\n"))
    rc, out = env.check_config(bad2)
    check(rc == 1 and re.search(re.escape(bad2) + r":\d+:\d+: error: ", out),
          f"out-of-range port / unknown field not reported as file:line:col (rc {rc}): {out!r}")
    # A FIFO (or a directory) is refused at once: a check never waits for a writer.
    fifo = env.path("fifo.yaml")
    os.mkfifo(fifo)
    for path in (fifo, env.dir):
        rc, out = env.check_config(path)
        check(rc == 1 and f"{path}: error: cannot read: not a regular file" in out,
              f"isthmus -c on {path} (not a regular file): rc {rc} {out!r}")


def _position(text, marker, value):
    """Line and column (from 1) of value on the first line holding marker."""
    for i, line in enumerate(text.split("\n")):
        if marker in line:
            return i + 1, line.index(value, line.index(marker)) + 1
    raise TestFailure(f"{marker!r} not in the file")


@test
def check_unbindable_files(env):
    """Files the master could never bind are errors of the file, at the
    offending value, from isthmus -c, the start and a reload alike (they were
    "valid", then the start failed with "File name too long" or "Address
    already in use", naming no place): a control socket path longer than a
    unix address holds, the admin listener on a server's address and port, a
    wildcard bind beside another address of one port."""
    port = free_port()
    app = appliance(env)  # listenAddress 127.0.0.1
    long_sock = "/tmp/" + "s" * 110 + ".sock"
    wild = gateway(port) + f"  - port: {{number: {port}, name: http-{port}, protocol: HTTP}}\n    bind: 0.0.0.0\n    hosts: [b.test]\n"
    cases = [
        ("sock", docs(app.replace(f"controlSocket: {env.path('ctl.sock')}", f"controlSocket: {long_sock}"),
                      gateway(port)),
         ("controlSocket:", "/tmp/"), "Appliance test: spec.controlSocket",
         "a unix socket path holds at most 107 bytes; this one has 120"),
        ("admin", docs(appliance(env, extra=f"  admin: {{address: \"127.0.0.1:{port}\"}}\n"), gateway(port)),
         ("admin:", '"127'), "Appliance test: spec.admin.address",
         f"127.0.0.1:{port} cannot be bound beside 127.0.0.1:{port} (the Appliance's listenAddress) of "
         "Gateway default/gw spec.servers[0]: the same address and port"),
        ("wild", docs(app, wild), ("bind: 0.0.0.0", "0.0.0.0"), "Gateway default/gw: spec.servers[1].bind",
         f"0.0.0.0:{port} cannot be bound beside 127.0.0.1:{port} (the Appliance's listenAddress) of "
         "Gateway default/gw spec.servers[0]: a wildcard address takes the port on every address of its family"),
    ]
    for name, text, (marker, value), field, msg in cases:
        path = env.write(f"{name}.yaml", text)
        line, col = _position(text, marker, value)
        want = f"{path}:{line}:{col}: error: {field}: {msg}"
        rc, out = env.check_config(path)
        check(rc == 1 and want in out, f"{name}: isthmus -c exited {rc}, want 1 and {want!r}: {out!r}")
        p = subprocess.run([env.isthmus, "-f", path], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=20, stdin=subprocess.DEVNULL)
        out = p.stdout.decode("utf-8", "replace")
        check(p.returncode != 0 and want in out, f"{name}: the start exited {p.returncode}, want {want!r}: {out!r}")
        check(not os.path.exists(long_sock), f"{name}: a control socket was bound")
    # A reload to the admin case is refused, with the position, and the
    # running generation serves on.
    conf = env.write("isthmus.yaml", docs(app, gateway(port)))
    env.start_gateway(conf, port)
    path = env.path("admin.yaml")
    text = open(path).read()
    line, col = _position(text, "admin:", '"127')
    env.write("isthmus.yaml", text)
    os.kill(env.gateway.pid, signal.SIGHUP)
    poll(lambda: "reload refused" in env.gateway.log(), 5, what="'reload refused' in the log")
    check(f"{conf}:{line}:{col}: error: Appliance test: spec.admin.address" in env.gateway.log(),
          f"the refused reload does not name {conf}:{line}:{col}: {env.gateway.log()[-2000:]!r}")
    # Each line a record of its own, with its time, process and level (the
    # errors were bare lines after the first, and an empty one ended them).
    errs = [l for l in env.gateway.log().splitlines() if "spec.admin.address" in l]
    check(errs and all(re.match(r"\d{4}-\d\d-\d\dT[\d:.]+Z master\[\d+\] error: ", l) for l in errs),
          f"the refused reload's lines: {errs}")
    check("\n\n" not in env.gateway.log(), "an empty line in the master's log")
    check(env.gateway.alive(), "master died on a refused reload")


@test
def check_addresses_here(env):
    """isthmus -c binds nothing but tries the listeners' and the admin
    listener's addresses as the start binds them: an address no interface of
    this machine has (here: a namespace of the test's own, loopback alone) is
    an error at spec.listenAddress or spec.admin.address (a warning with
    --portable), where the check said "valid" and the start then failed. The
    same file on loopback is valid."""
    ns = make_netns(env)
    port, admin_port = free_port(), free_port()
    text = docs(appliance(env, extra=f"  admin: {{address: \"198.51.100.8:{admin_port}\"}}\n").replace(
        "listenAddress: 127.0.0.1", "listenAddress: 198.51.100.7"), gateway(port))
    path = env.write("elsewhere.yaml", text)
    want = []
    for marker, value, field, what in (
            ("listenAddress:", "198", "spec.listenAddress", f"listener http (198.51.100.7 port {port})"),
            ("admin:", '"198', "spec.admin.address", f"the admin listener (198.51.100.8 port {admin_port})")):
        line, col = _position(text, marker, value)
        want.append(f"{path}:{line}:{col}: %s: Appliance test: {field}: {what} cannot be bound here: "
                    "Cannot assign requested address")
    with in_netns(env, ns):
        rc, out = env.check_config(path)
        check(rc == 1 and all(w % "error" in out for w in want), f"isthmus -c exited {rc}, want 1 and {want}: {out!r}")
        rc, out = env.check_config(path, portable=True)
        check(rc == 0 and all(w % "warning" in out for w in want),
              f"isthmus -c --portable exited {rc}, want 0 and warnings {want}: {out!r}")
        # A run directory refused too: both said, errors or warnings.
        blocker = env.write("blocker", "a file where a directory should be\n")
        both = env.write("both.yaml", text.replace("spec:\n", f"spec:\n  pidFile: {blocker}/x.pid\n", 1))
        for portable, sev in ((False, "error"), (True, "warning")):
            rc, out = env.check_config(both, portable=portable)
            check(f"{sev}: Appliance test: spec.pidFile" in out and f"{sev}: Appliance test: spec.listenAddress" in out,
                  f"isthmus -c{' --portable' if portable else ''} with two refusals: rc {rc}, {out!r}")
        here = env.write("here.yaml", text.replace("198.51.100.7", "127.0.0.1").replace("198.51.100.8", "127.0.0.1"))
        rc, out = env.check_config(here)
        check(rc == 0 and "cannot be bound" not in out, f"isthmus -c on loopback exited {rc}: {out!r}")


@test
def check_route_table_size(env):
    """How full the route table's arena is: isthmus -c says its size beside
    the arena's, a table over three quarters of it is a warning (from -c and
    a reload alike: 52 Maglev tables of 65537 entries), and show info gives
    route_table_bytes and route_table_arena_bytes. Nothing said it: an
    operator learned of the bound when a file no longer loaded."""
    port = free_port()
    ups = env.upstream(["127.0.0.2:0=a"], name="a")

    def conf(n):
        routes = "".join(f"  - match: [{{uri: {{prefix: /s{i}/}}}}]\n    route: [{{destination: {{host: s{i}.internal}}}}]\n"
                         for i in range(n))
        parts = [appliance(env), gateway(port), virtual_service("vs", ["*"], routes)]
        for i in range(n):
            parts.append(service_entry(f"s{i}", f"s{i}.internal", [{"address": "127.0.0.2", "port": ups["a"]}]))
            parts.append(f"apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: d{i}}}\n"
                         f"spec:\n  host: s{i}.internal\n  trafficPolicy:\n    loadBalancer:\n"
                         f"      consistentHash: {{httpHeaderName: x-user, maglev: {{tableSize: 65537}}}}\n")
        return docs(*parts)

    small = env.write("small.yaml", conf(2))
    rc, out = env.check_config(small)
    m = re.search(r"route table (\d+) KiB of 16384\)", out)
    check(rc == 0 and m and 512 <= int(m.group(1)) < 2048 and "warning" not in out,
          f"isthmus -c of 2 Maglev tables: rc {rc}, {out!r}")
    big = env.write("big.yaml", conf(52))
    rc, out = env.check_config(big)
    check(rc == 0 and "warning: the route table fills" in out and "Maglev tables fill most of it" in out,
          f"isthmus -c of 52 Maglev tables: rc {rc}, {out!r}")
    env.start_gateway(small, port)
    info = ctl_cmd(env.path("ctl.sock"), "show info")
    used = re.search(r"route_table_bytes: (\d+)", info)
    arena = re.search(r"route_table_arena_bytes: (\d+)", info)
    check(used and arena and 512 * 1024 <= int(used.group(1)) < 2 * 1024 * 1024 and int(arena.group(1)) == 16 << 20,
          f"show info: {info!r}")
    env.write("small.yaml", open(big).read())
    answer = ctl_cmd(env.path("ctl.sock"), "reload")
    check("published" in answer and "the route table fills" in answer, f"a reload to 52 Maglev tables: {answer!r}")


SAMPLE_NEEDS = {
    # sample file -> ServiceEntry hosts (short name, port) it refers to
    "bookinfo-gateway.yaml": [("productpage", 9080)],
    "destination-rule-all.yaml": [("productpage", 9080), ("reviews", 9080), ("ratings", 9080), ("details", 9080)],
    "helloworld-gateway.yaml": [("helloworld", 5000)],
    "virtual-service-reviews-80-20.yaml": [("reviews", 9080)],
    "virtual-service-reviews-jason-v2-v3.yaml": [("reviews", 9080)],
    "testdata-rule-weighted-route.yaml": [],
    "testdata-peer-authn-strict.yaml": [],
}


def samples_dir():
    d = os.path.join(ROOT, "tests", "fixtures", "istio-samples")
    if not os.path.isdir(d):
        raise TestFailure(f"Istio samples not found at {d}")
    return d


def sample_ses(needs, port_map=None):
    out = []
    for name, port in needs:
        eps = []
        for i, v in enumerate(["v1", "v2", "v3", "v2-mysql", "v2-mysql-vm"]):
            up = (port_map or {}).get(name, 9000 + i)
            eps.append({"address": f"127.0.0.{2 + i % 3}", "port": up, "labels": {"version": v},
                        "locality": "eu-west/eu-west-1a"})
        out.append(service_entry(name, f"{name}.default.svc.cluster.local", eps, port=port))
    return out


@test
def istio_samples_load(env):
    d = samples_dir()
    files = sorted(f for f in os.listdir(d) if f.endswith(".yaml"))
    check(set(files) >= set(SAMPLE_NEEDS), f"missing samples: {set(SAMPLE_NEEDS) - set(files)}")
    failures = []
    for f in files:
        text = open(os.path.join(d, f)).read()
        parts = [appliance(env)] + sample_ses(SAMPLE_NEEDS.get(f, []))
        if "kind: Gateway" not in text:
            parts.append(gateway(free_port()))
        # The reviews VirtualServices name subsets: Istio's docs apply them after
        # destination-rule-all.yaml, and so does this test.
        if f.startswith("virtual-service-reviews"):
            text = open(os.path.join(d, "destination-rule-all.yaml")).read() + "---\n" + text
        path = env.write(f, docs(*parts) + "---\n" + text)
        rc, out = env.check_config(path)
        if rc != 0:
            failures.append(f"{f}: exit {rc}: {out.strip()[:600]}")
    check(not failures, "samples refused by isthmus -c:\n  " + "\n  ".join(failures))


@test
def helloworld_served(env):
    port = env.upstream(["127.0.0.2:0=helloworld"], name="helloworld")["helloworld"]
    gw_port = free_port()
    text = open(os.path.join(samples_dir(), "helloworld-gateway.yaml")).read()
    # The sample's Gateway listens on port 80; the test moves it to a free port.
    text, n = re.subn(r"(\n\s+number:\s*)80\n", rf"\g<1>{gw_port}\n", text)
    check(n == 1, "could not find the Gateway port in the helloworld sample")
    ses = [service_entry("helloworld", "helloworld.default.svc.cluster.local",
                         [{"address": "127.0.0.2", "port": port, "locality": "eu-west/eu-west-1a"}], port=5000)]
    conf = env.write("isthmus.yaml", docs(appliance(env), *ses) + "---\n" + text)
    env.start_gateway(conf, gw_port)
    r = wait_serving(env, "/hello")
    r = env.get("/hello")
    check(r.status == 200 and who(r) == "helloworld" and r.body == b"helloworld /hello\n",
          f"/hello: {r}")
    for p in ["/hello/", "/helloX", "/", "/hello/world"]:
        r = env.get(p)
        check(r.status == 404, f"{p} answered {r.status}, want 404 (exact match only): {r}")
    rc, out, err = curl(["-o", "/dev/null", "-w", "%{http_code}", f"http://127.0.0.1:{gw_port}/hello"])
    check(rc == 0 and out == "200", f"curl /hello: rc {rc} code {out} {err}")


# --------------------------------------------------------------------------- routing


@test
def route_by_host(env):
    pa = env.upstream(["127.0.0.2:0=alpha"], name="alpha")["alpha"]
    pb = env.upstream(["127.0.0.3:0=beta"], name="beta")["beta"]
    gw_port = free_port()
    conf = env.write("isthmus.yaml", docs(
        appliance(env), gateway(gw_port),
        virtual_service("a", ["a.example.com"], "  - route: [{destination: {host: a.svc.internal}}]\n"),
        virtual_service("b", ["b.example.com", "*.wild.example.com"], "  - route: [{destination: {host: b.svc.internal}}]\n"),
        service_entry("a", "a.svc.internal", [{"address": "127.0.0.2", "port": pa}]),
        service_entry("b", "b.svc.internal", [{"address": "127.0.0.3", "port": pb}]),
    ))
    env.start_gateway(conf, gw_port)
    wait_serving(env, "/", host="a.example.com")
    for host, want in [("a.example.com", "alpha"), ("b.example.com", "beta"), ("A.Example.COM", "alpha"),
                       (f"a.example.com:{gw_port}", "alpha"), ("x.wild.example.com", "beta")]:
        r = env.get("/p", host=host)
        check(r.status == 200 and who(r) == want, f"Host {host}: want {want}, got {r}")
    r = env.get("/p", host="c.example.com")
    check(r.status == 404, f"unknown host answered {r.status}, want 404")


@test
def route_by_path(env):
    pa = env.upstream(["127.0.0.2:0=prefix", "127.0.0.3:0=exact", "127.0.0.4:0=default"], name="paths")
    gw_port = free_port()
    routes = (f"  - match: [{{uri: {{prefix: /api}}}}]\n    route: [{{destination: {{host: prefix.internal}}}}]\n"
              f"  - match: [{{uri: {{exact: /login}}}}, {{uri: {{exact: /logout}}}}]\n"
              f"    route: [{{destination: {{host: exact.internal}}}}]\n"
              f"  - route: [{{destination: {{host: default.internal}}}}]\n")
    conf = env.write("isthmus.yaml", docs(
        appliance(env), gateway(gw_port), virtual_service("p", ["*"], routes),
        service_entry("p", "prefix.internal", [{"address": "127.0.0.2", "port": pa["prefix"]}]),
        service_entry("e", "exact.internal", [{"address": "127.0.0.3", "port": pa["exact"]}]),
        service_entry("d", "default.internal", [{"address": "127.0.0.4", "port": pa["default"]}]),
    ))
    env.start_gateway(conf, gw_port)
    wait_serving(env, "/")
    cases = [("/api", "prefix"), ("/api/v1/x?q=1", "prefix"), ("/apiary", "prefix"), ("/login", "exact"),
             ("/logout", "exact"), ("/login?next=/", "exact"), ("/login/", "default"), ("/loginx", "default"),
             ("/", "default"), ("/ap", "default")]
    for path, want in cases:
        r = env.get(path)
        check(r.status == 200 and who(r) == want, f"{path}: want {want}, got {r}")
        check(r.body.decode().split(" ", 1)[1] == path + "\n", f"{path}: upstream saw {r.body!r}")


@test
def route_by_header(env):
    # The semantics of the jason sample, bound to this appliance's Gateway.
    ports = env.upstream(["127.0.0.2:0=v2", "127.0.0.3:0=v3"], name="reviews")
    gw_port = free_port()
    routes = ("  - match: [{headers: {end-user: {exact: jason}}}]\n"
              "    route: [{destination: {host: reviews.internal, subset: v2}}]\n"
              "  - route: [{destination: {host: reviews.internal, subset: v3}}]\n")
    conf = env.write("isthmus.yaml", docs(
        appliance(env), gateway(gw_port), virtual_service("reviews", ["*"], routes),
        destination_rule("reviews", "reviews.internal", ["v2", "v3"]),
        service_entry("reviews", "reviews.internal", [
            {"address": "127.0.0.2", "port": ports["v2"], "labels": {"version": "v2"}},
            {"address": "127.0.0.3", "port": ports["v3"], "labels": {"version": "v3"}}]),
    ))
    env.start_gateway(conf, gw_port)
    wait_serving(env, "/")
    for headers, want in [({"end-user": "jason"}, "v2"), ({"End-User": "jason"}, "v2"), ({}, "v3"),
                          ({"end-user": "Jason"}, "v3"), ({"end-user": "jason2"}, "v3"), ({"end-user": "jaso"}, "v3")]:
        for _ in range(3):
            r = env.get("/reviews/1", headers=headers)
            check(r.status == 200 and who(r) == want, f"headers {headers}: want {want}, got {r}")


@test
def route_by_gateway(env):
    """match.gateways: one VirtualService bound to a public and an internal
    Gateway (two ports) sends /admin to v2 only through the internal one; through
    the public one /admin falls to the next route (v3), as Istio builds each
    gateway's routes; a route for sidecars only (gateways: [mesh]) is left out."""
    ports = env.upstream(["127.0.0.2:0=v2", "127.0.0.3:0=v3"], name="adm")
    pub, internal = free_port(), free_port()
    routes = ("  - match: [{uri: {prefix: /admin}, gateways: [internal]}]\n"
              "    route: [{destination: {host: adm.internal, subset: v2}}]\n"
              "  - match: [{gateways: [mesh]}]\n"
              "    route: [{destination: {host: adm.internal, subset: v2}}]\n"
              "  - route: [{destination: {host: adm.internal, subset: v3}}]\n")
    conf = env.write("isthmus.yaml", docs(
        appliance(env), gateway(pub, name="public"), gateway(internal, name="internal"),
        virtual_service("adm", ["*"], routes, gateways=("public", "internal")),
        destination_rule("adm", "adm.internal", ["v2", "v3"]),
        service_entry("adm", "adm.internal", [
            {"address": "127.0.0.2", "port": ports["v2"], "labels": {"version": "v2"}},
            {"address": "127.0.0.3", "port": ports["v3"], "labels": {"version": "v3"}}]),
    ))
    env.start_gateway(conf, pub)
    for port, path, want in ((internal, "/admin/x", "v2"), (pub, "/admin/x", "v3"),
                             (internal, "/other", "v3"), (pub, "/other", "v3")):
        for _ in range(3):
            r = http_get(port, path)
            check(r.status == 200 and who(r) == want,
                  f"{path} through port {'internal' if port == internal else 'public'}: want {want}, got {r}")


@test
def vhost_without_routes_here(env):
    """A VirtualService none of whose routes applies on a listener (each
    match names another port, or other gateways) claims no host there, as
    istiod omits it for that server ("no routes matched"): its host falls to
    the "*" VirtualService, 200, where it answered 404; on the listener its
    routes are for, it serves them."""
    ports = env.upstream(["127.0.0.2:0=v2", "127.0.0.3:0=v3"], name="vh")
    pub, internal = free_port(), free_port()
    by_port = (f"  - match: [{{port: {internal}, uri: {{prefix: /}}}}]\n"
               "    route: [{destination: {host: vh.internal, subset: v2}}]\n")
    by_gw = ("  - match: [{gateways: [internal]}]\n"
             "    route: [{destination: {host: vh.internal, subset: v2}}]\n")
    conf = env.write("isthmus.yaml", docs(
        appliance(env), gateway(pub, name="public"), gateway(internal, name="internal"),
        virtual_service("a", ["a.example.com"], by_port, gateways=("public", "internal")),
        virtual_service("b", ["b.example.com"], by_gw, gateways=("public", "internal")),
        virtual_service("rest", ["*"], "  - route: [{destination: {host: vh.internal, subset: v3}}]\n",
                        gateways=("public", "internal")),
        destination_rule("vh", "vh.internal", ["v2", "v3"]),
        service_entry("vh", "vh.internal", [
            {"address": "127.0.0.2", "port": ports["v2"], "labels": {"version": "v2"}},
            {"address": "127.0.0.3", "port": ports["v3"], "labels": {"version": "v3"}}]),
    ))
    env.start_gateway(conf, pub)
    for host in ("a.example.com", "b.example.com"):
        for port, want in ((pub, "v3"), (internal, "v2")):
            r = http_get(port, "/x", host=host)
            check(r.status == 200 and who(r) == want,
                  f"{host} on the {'public' if port == pub else 'internal'} port: want {want}, got {r}")


@test
def route_delegate(env):
    """delegate: /shop is handed to a VirtualService without hosts (the shop
    team's), whose routes are merged with the root route as Istio merges them:
    /shop/cart → v3 by the delegate's first route, the rest of /shop → v2 by its
    catch-all (which keeps the root's /shop condition), /other → v3 by the root's
    own next route."""
    ports = env.upstream(["127.0.0.2:0=v2", "127.0.0.3:0=v3"], name="shop")
    gw_port = free_port()
    root = ("  - match: [{uri: {prefix: /shop}}]\n"
            "    delegate: {name: shop-routes}\n"
            "  - route: [{destination: {host: shop.internal, subset: v3}}]\n")
    delegate = ("apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: shop-routes}\n"
                "spec:\n  http:\n"
                "  - match: [{uri: {prefix: /shop/cart}}]\n"
                "    route: [{destination: {host: shop.internal, subset: v3}}]\n"
                "  - route: [{destination: {host: shop.internal, subset: v2}}]\n")
    conf = env.write("isthmus.yaml", docs(
        appliance(env), gateway(gw_port), virtual_service("root", ["*"], root), delegate,
        destination_rule("shop", "shop.internal", ["v2", "v3"]),
        service_entry("shop", "shop.internal", [
            {"address": "127.0.0.2", "port": ports["v2"], "labels": {"version": "v2"}},
            {"address": "127.0.0.3", "port": ports["v3"], "labels": {"version": "v3"}}]),
    ))
    env.start_gateway(conf, gw_port)
    for path, want in (("/shop/cart/1", "v3"), ("/shop/x", "v2"), ("/other", "v3")):
        for _ in range(3):
            r = env.get(path)
            check(r.status == 200 and who(r) == want, f"{path}: want {want}, got {r}")


@test
def weighted_split(env):
    standard(env)
    counts = tally(env, 1000)
    check(set(counts) <= {"v1", "v2"}, f"unexpected upstreams {counts}")
    share = 100.0 * counts.get("v1", 0) / 1000
    check(70 <= share <= 80, f"v1 share {share:.1f}% of 1000, want 75 ± 5 ({counts})")
    r = env.get("/api/x")
    check(r.status == 200 and who(r) == "api", f"/api/x went to {r}")


# --------------------------------------------------------------------------- HTTP/1.1 behaviour


@test
def keepalive_curl(env):
    standard(env)
    urls = [f"http://127.0.0.1:{env.gw_port}/ka{i}" for i in range(5)]
    rc, out, err = curl(urls + ["-w", "\n%{http_code} %{num_connects}\n"])
    check(rc == 0, f"curl failed: {err}")
    stats = [tuple(map(int, m)) for m in re.findall(r"^(\d{3}) (\d+)$", out, re.M)]
    check(len(stats) == 5 and all(code == 200 for code, _ in stats), f"curl results {stats}: {out}")
    check(sum(n for _, n in stats) == 1, f"curl opened {sum(n for _, n in stats)} connections for 5 URLs, want 1")


@test
def pipelining(env):
    standard(env)
    with Conn("127.0.0.1", env.gw_port) as c:
        c.send(b"".join(build_request("GET", f"/p{i}") for i in range(3)) +
               build_request("POST", "/echo", body=b"pipelined-body") +
               build_request("GET", "/api/p3"))
        for i in range(3):
            r = c.read_response()
            check(served(r, f"/p{i}"), f"pipelined response {i}: {r}")
        r = c.read_response()
        check(r.status == 200 and r.body == b"pipelined-body", f"pipelined POST /echo: {r}")
        r = c.read_response()
        check(r.status == 200 and r.body == b"api /api/p3\n", f"pipelined response after POST: {r}")


@test
def no_body_responses(env):
    standard(env)
    with Conn("127.0.0.1", env.gw_port) as c:
        r = c.request("HEAD", "/bytes/100")
        check(r.status == 200 and r.header("content-length") == "100", f"HEAD /bytes/100: {r}")
        for code in (204, 304):
            r = c.request("GET", f"/status/{code}")
            check(r.status == code, f"/status/{code} answered {r}")
            check(r.header("content-length") in (None, "0") and r.header("transfer-encoding") is None,
                  f"{code} carries body framing: {r.headers}")
        r = c.request("HEAD", "/status/404")
        check(r.status == 404, f"HEAD /status/404: {r}")
        r = c.request("GET", "/after")
        check(served(r, "/after"), f"request after HEAD/204/304 on the same "
              f"connection read {r} (stray body bytes?)")
        check(c.buf == b"", f"stray bytes after the last response: {c.buf[:100]!r}")
        check(not c.closed_by_peer(0.3) and c.buf == b"", f"stray bytes or close: {c.buf[:100]!r}")


@test
def body_integrity(env):
    standard(env)
    pattern = bytes(ord("a") + i % 26 for i in range(300000))
    c = Conn("127.0.0.1", env.gw_port)

    def req(*args, **kw):
        # A gateway may close after a response it streamed before the request
        # body ended (it says so with Connection: close); follow it.
        nonlocal c
        r = c.request(*args, **kw)
        if "close" in (r.header("connection") or "").lower():
            c.close()
            c = Conn("127.0.0.1", env.gw_port)
        return r

    try:
        for path in ("/bytes/300000", "/chunked/300000"):
            r = req("GET", path)
            check(r.status == 200 and r.body == pattern, f"{path}: {r.status}, {len(r.body)} bytes, equal={r.body == pattern}")
        body = os.urandom(1 << 20)
        r = req("POST", "/echo", body=body)
        check(r.status == 200 and r.body == body, f"echo of 1 MiB: {r.status}, {len(r.body)} bytes")
        chunked = b"".join(b"%x\r\n" % len(body[i:i + 70000]) + body[i:i + 70000] + b"\r\n"
                           for i in range(0, len(body), 70000)) + b"0\r\n\r\n"
        r = req("POST", "/echo", headers={"Transfer-Encoding": "chunked"}, body=chunked)
        check(r.status == 200 and r.body == body, f"chunked echo of 1 MiB: {r.status}, {len(r.body)} bytes")
        r = req("POST", "/echo/count", headers={"Transfer-Encoding": "chunked"}, body=chunked)
        check(r.status == 200 and r.body == b"%d\n" % len(body), f"chunked count: {r}")
    finally:
        c.close()


@test
def expect_continue(env):
    standard(env)
    with Conn("127.0.0.1", env.gw_port, timeout=3) as c:
        c.send(build_request("POST", "/echo/count", headers={"Expect": "100-continue", "Content-Length": "5"}))
        try:
            r = c.read_response(allow_interim=True)
        except OSError as e:
            raise TestFailure(f"no 100 Continue within 3 s before the body was sent ({e})")
        check(r.status == 100, f"want 100 Continue before the body, got {r}")
        c.send(b"hello")
        r = c.read_response()
        check(r.status == 200 and r.body == b"5\n", f"after the body: {r}")
    rc, out, err = curl(["-H", "Expect: 100-continue", "--data-binary", "x" * 2048, "-w", " %{http_code}",
                         f"http://127.0.0.1:{env.gw_port}/echo/count"])
    check(rc == 0 and out == "2048\n 200", f"curl with Expect: rc {rc} out {out!r} {err}")


@test
def head_errors_have_no_body(env):
    """The answers isthmus makes to a HEAD it refuses (no Host, a transfer
    coding other than chunked, a head over the limit) have the length their
    body would have and no body (RFC 9110 9.3.2): their text followed the
    head on the connection."""
    standard(env)
    for what, head, want in (("no Host", b"HEAD / HTTP/1.1\r\n\r\n", 400),
                             ("a bad path", b"HEAD /a%00 HTTP/1.1\r\nHost: a\r\n\r\n", 400),
                             ("TE gzip", b"HEAD / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
                             ("a big head", b"HEAD / HTTP/1.1\r\nHost: a\r\nx-big: " + b"a" * 70000 + b"\r\n\r\n",
                              431)):
        with Conn("127.0.0.1", env.gw_port, timeout=10) as c:
            c.send(head)
            r = c.read_response("HEAD")
            closed = c.closed_by_peer(5)
            check(r.status == want and int(r.header("content-length") or 0) > 0,
                  f"{what}: {r.status} {r.headers}, want {want} with its length")
            check(closed and c.buf == b"", f"{what}: {c.buf[:80]!r} after the head of a HEAD's answer")


@test
def close_delimited_response_chunked(env):
    """An upstream's response that its close ends (no length, not chunked)
    reaches an HTTP/1.1 client chunked, and the client's connection serves
    on, as Envoy's codec chunks a body without a length (the client's
    connection was closed with the upstream's); an HTTP/1.0 client gets the
    body and the close."""
    standard(env)
    raw = b"HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\nbody until the close".hex()
    with Conn("127.0.0.1", env.gw_port, timeout=10) as c:
        r = c.request("GET", "/raw", headers={"x-respond": raw})
        check(r.status == 200 and r.body == b"body until the close" and
              (r.header("transfer-encoding") or "").lower() == "chunked" and
              "close" not in (r.header("connection") or ""), f"HTTP/1.1: {r.status} {r.headers} {r.body!r}")
        r = c.request("GET", "/api/next")
        check(r.status == 200, f"the next request on the connection: {r}")
    with Conn("127.0.0.1", env.gw_port, timeout=10) as c:
        c.send(f"GET /raw HTTP/1.0\r\nHost: a\r\nx-respond: {raw}\r\n\r\n".encode())
        closed = c.closed_by_peer(5)
        check(closed and c.buf.startswith(b"HTTP/1.1 200") and c.buf.endswith(b"\r\n\r\nbody until the close") and
              b"chunked" not in c.buf.lower(), f"HTTP/1.0: closed {closed}, {c.buf!r}")


@test
def interim_heads_bounded(env):
    """An upstream's interim (1xx) heads count together in
    maxResponseHeaderBytes: 30 "100 Continue" heads before the final one
    (750 bytes) pass under 1024, 60 of them (1500) are a protocol error, 502
    UPE, so that an upstream sending them without end cannot hold the
    exchange."""
    log = env.path("access.log")
    standard(env, extra=f"  limits: {{maxResponseHeaderBytes: 1024}}\n"
                        f"  accessLog: {{path: {log}, format: text, textFormat: \"%REQ(:PATH)% %RESPONSE_CODE% "
                        f"%RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS%\"}}\n")
    final = b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfinal"
    for n, want in ((30, 200), (60, 502)):
        raw = (b"HTTP/1.1 100 Continue\r\n\r\n" * n + final).hex()
        r = env.get(f"/raw?n={n}", headers={"x-respond": raw})
        check(r.status == want and (want != 200 or r.body == b"final"), f"{n} interim heads: {r}, want {want}")
    line = poll(lambda: next((l for l in file_lines(log) if l.startswith("/raw?n=60 ")), None), 5,
                what="the access-log line of /raw?n=60")
    check(line == "/raw?n=60 502 UPE upstream_reset_before_response_started{protocol_error}",
          f"the access log says {line!r}")


@test
def connection_close(env):
    standard(env)
    with Conn("127.0.0.1", env.gw_port) as c:
        r = c.request("GET", "/api/x", headers={"Connection": "close"})
        check(r.status == 200, f"status {r.status}")
        check("close" in (r.header("connection") or "").lower(), f"no Connection: close in {r.headers}")
        check(c.closed_by_peer(3.0), "gateway did not close the connection after Connection: close")
    with Conn("127.0.0.1", env.gw_port) as c:
        c.send(b"GET /api/y HTTP/1.0\r\nHost: test.local\r\n\r\n")
        r = c.read_response()
        check(r.status == 200 and r.body == b"api /api/y\n", f"HTTP/1.0: {r}")
        check(c.closed_by_peer(3.0), "gateway did not close an HTTP/1.0 connection without keep-alive")
    # The upstream closing its connection must not break the client's keep-alive connection.
    with Conn("127.0.0.1", env.gw_port) as c:
        for i in range(3):
            r = c.request("GET", "/close")
            check(r.status == 200, f"/close #{i}: {r}")
            if "close" in (r.header("connection") or "").lower():
                break
        else:
            r = c.request("GET", "/api/after")
            check(r.status == 200, f"after upstream closes: {r}")


UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


@test
def forwarded_headers(env):
    standard(env)
    hdrs = [("Connection", "keep-alive, X-Hop-Custom"), ("X-Hop-Custom", "secret"), ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"), ("X-Keep-Me", "yes")]
    r = env.get("/headers", host="svc.example.com", headers=hdrs)
    check(r.status == 200, f"/headers: {r}")
    head = r.body.decode("latin-1")
    lines = head.split("\r\n")
    fields = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        fields.setdefault(k.strip().lower(), []).append(v.strip())
    check(lines[0] == "GET /headers HTTP/1.1", f"request line seen upstream: {lines[0]!r}")
    for h in ("x-hop-custom", "keep-alive", "proxy-connection"):
        check(h not in fields, f"hop-by-hop header {h} forwarded: {head!r}")
    check("keep-alive" not in ",".join(fields.get("connection", [])).lower()
          and "x-hop-custom" not in ",".join(fields.get("connection", [])).lower(),
          f"client's Connection header forwarded: {fields.get('connection')}")
    check(fields.get("x-keep-me") == ["yes"], f"end-to-end header lost: {head!r}")
    check(fields.get("host") == ["svc.example.com"], f"Host seen upstream: {fields.get('host')}")
    xff = fields.get("x-forwarded-for", [])
    check(len(xff) == 1 and xff[0].split(",")[-1].strip() == "127.0.0.1", f"X-Forwarded-For: {xff}")
    check(fields.get("x-forwarded-proto") == ["http"], f"X-Forwarded-Proto: {fields.get('x-forwarded-proto')}")
    rid = fields.get("x-request-id", [])
    check(len(rid) == 1 and re.fullmatch(UUID4, rid[0]) is not None, f"X-Request-Id is not a version 4 UUID: {rid}")
    # The x-envoy-* fields an Istio gateway's Envoy removes from a request
    # from outside (they would steer the mesh's Envoys); others pass, and
    # x-envoy-external-address is the client's address.
    control = [("X-Envoy-Retry-On", "5xx"), ("x-envoy-max-retries", "50"), ("X-Envoy-Internal", "true"),
               ("x-envoy-upstream-rq-timeout-ms", "1"), ("x-envoy-force-trace", "1"),
               ("x-envoy-decorator-operation", "op"), ("X-Envoy-External-Address", "192.0.2.1"),
               ("x-envoy-hedge-on-per-try-timeout", "true"), ("x-envoy-custom", "kept")]
    r3 = env.get("/headers", headers=control)
    f3 = {}
    for line in r3.body.decode("latin-1").split("\r\n")[1:]:
        k, _, v = line.partition(":")
        f3.setdefault(k.strip().lower(), []).append(v.strip())
    gone = [k for k, _ in control[:-1] if k.lower() in f3 and k.lower() != "x-envoy-external-address"]
    check(r3.status == 200 and not gone, f"x-envoy control fields forwarded: {gone}")
    check(f3.get("x-envoy-external-address") == ["127.0.0.1"] and f3.get("x-envoy-custom") == ["kept"],
          f"x-envoy-external-address {f3.get('x-envoy-external-address')}, x-envoy-custom {f3.get('x-envoy-custom')}")
    r2 = env.get("/headers", headers=[("X-Forwarded-For", "10.0.0.1")])
    xff2 = [l for l in r2.body.decode("latin-1").split("\r\n") if l.lower().startswith("x-forwarded-for:")]
    check(len(xff2) == 1 and xff2[0].split(":", 1)[1].replace(" ", "") == "10.0.0.1,127.0.0.1",
          f"X-Forwarded-For not appended to: {xff2}")
    r3 = env.get("/headers")
    rid3 = [l for l in r3.body.decode("latin-1").split("\r\n") if l.lower().startswith("x-request-id:")]
    check(len(rid3) == 1 and rid3[0] != "x-request-id: " + rid[0], f"X-Request-Id repeated: {rid3} vs {rid}")
    # A client's X-Request-Id is replaced, as Envoy does at the edge; with
    # preserveExternalRequestId it goes on (a reload turns it on and off).

    def rids():
        r = env.get("/headers", headers=[("X-Request-Id", "client-rid-7")])
        check(r.status == 200, f"/headers: {r}")
        return [l.split(":", 1)[1].strip() for l in r.body.decode("latin-1").split("\r\n")
                if l.lower().startswith("x-request-id:")]

    got = rids()
    check(len(got) == 1 and got[0] != "client-rid-7" and re.fullmatch(UUID4, got[0]),
          f"the client's X-Request-Id should be replaced by one made here: {got}")
    for preserve, want in ((True, ["client-rid-7"]), (False, None)):
        env.write("isthmus.yaml", env.make_conf(75, 25).replace(
            "  timeouts:", f"  preserveExternalRequestId: {str(preserve).lower()}\n  timeouts:", 1))
        check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), "reload refused")
        got = rids()
        check(got == want if want else len(got) == 1 and re.fullmatch(UUID4, got[0]),
              f"preserveExternalRequestId {preserve}: upstream saw X-Request-Id {got}")


# --------------------------------------------------------------------------- errors


def expect_error(env, raw, want, what, closed=True, timeout=5.0):
    with Conn("127.0.0.1", env.gw_port, timeout=timeout) as c:
        c.send(raw)
        try:
            r = c.read_response()
        except (OSError, EOFError) as e:
            raise TestFailure(f"{what}: no response (want {want}): {e}")
        check(r.status in (want if isinstance(want, tuple) else (want,)),
              f"{what}: status {r.status}, want {want}: {r}")
        if closed:
            check(c.closed_by_peer(3.0), f"{what}: connection left open after {want}")
        return r


@test
def error_400_malformed(env):
    standard(env)
    before = Env.ctl(*env.ports["api"], "count")
    expect_error(env, b"GARBAGE\r\n\r\n", 400, "garbage request line")
    expect_error(env, b"GET /api/x HTTP/1.1\r\nHost: a\r\nBad Header\r\n\r\n", 400, "header without colon")
    expect_error(env, b"GET /api/x HTTP/1.1\r\nHost: a\r\nX-A : b\r\n\r\n", 400, "space before colon")
    expect_error(env, b"GET /api/x HTTP/1.1\r\n\r\n", 400, "HTTP/1.1 without Host")
    expect_error(env, b"GET /api/x HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400, "two Host headers")
    check(Env.ctl(*env.ports["api"], "count") == before, "a malformed request reached the upstream")


@test
def error_404_no_route(env):
    p = env.upstream(["127.0.0.4:0=api"], name="api")["api"]
    gw_port = free_port()
    conf = env.write("isthmus.yaml", docs(
        appliance(env), gateway(gw_port),
        virtual_service("api", ["*"], f"  - match: [{{uri: {{prefix: /api}}}}]\n    route: [{{destination: {{host: {API}}}}}]\n"),
        service_entry("api", API, [{"address": "127.0.0.4", "port": p}])))
    env.start_gateway(conf, gw_port)
    wait_serving(env, "/api")
    r = env.get("/other")
    check(r.status == 404, f"/other answered {r}, want 404")
    r = env.get("/ap")
    check(r.status == 404, f"/ap answered {r}, want 404")
    check(Env.ctl("127.0.0.4", p, "count").strip() == "1", "404 requests reached the upstream")
    # Answered before the request's body was read: the body left unread
    # would be taken for the next request, so the answer says
    # "connection: close" and the connection closes, as Envoy's does.
    with Conn("127.0.0.1", gw_port, timeout=5) as c:
        c.send(b"POST /other HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n")
        r = c.read_response("POST")
        check(r.status == 404 and r.header("connection") == "close",
              f"a 404 before the body was read: {r.status} {r.headers}")
        check(c.closed_by_peer(3.0), "the connection stayed open after the 404 before its request's body")


@test
def error_408_slow_header(env):
    standard(env, timeouts={"requestHeader": "1s"})
    t0 = time.monotonic()
    r = expect_error(env, b"GET /api/slow HTTP/1.1\r\nHost: a\r\nX-Partial: ", 408, "partial head", timeout=6)
    el = time.monotonic() - t0
    check(0.8 <= el <= 4.0, f"408 after {el:.2f}s, requestHeader is 1s")
    # Dribbling bytes does not extend the deadline (first byte to end of head).
    with Conn("127.0.0.1", env.gw_port, timeout=6) as c:
        t0 = time.monotonic()
        c.send(b"GET /api/slow HTTP/1.1\r\n")
        got = None
        for i in range(40):
            try:
                c.send(b"X-D%d: 1\r\n" % i)
            except OSError:
                break
            if c.closed_by_peer(0.1) or c.buf:
                break
        try:
            got = c.read_response()
        except (OSError, EOFError):
            pass
        el = time.monotonic() - t0
        check(el <= 4.0, f"dribbled head kept the connection {el:.1f}s past a 1s requestHeader timeout")
        check(got is None or got.status == 408, f"dribbled head answered {got}")
    # A connection that sends no byte at all is bounded too: the timeout
    # runs from the accept (docs/configuration.md, timeouts.requestHeader).
    with Conn("127.0.0.1", env.gw_port, timeout=6) as c:
        t0 = time.monotonic()
        closed = c.closed_by_peer(4.0)
        el = time.monotonic() - t0
        check(closed, "a connection that sent nothing was still open 4 s after the accept (requestHeader 1s)")
        check(el >= 0.8, f"a silent connection closed after {el:.2f}s, requestHeader is 1s")



@test
def error_414_431(env):
    standard(env)
    expect_error(env, build_request("GET", "/api/" + "u" * 70000), 414, "70 KB URI")
    expect_error(env, build_request("GET", "/api/x", headers={"X-Big": "h" * 200000}), 431, "200 KB header")
    expect_error(env, build_request("GET", "/api/x", headers=[(f"X-N{i}", "v") for i in range(2000)]), 431,
                 "2000 headers")
    r = env.get("/api/after")
    check(r.status == 200, f"gateway broken after big heads: {r}")


@test
def error_501_te(env):
    standard(env)
    expect_error(env, b"POST /api/echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501, "TE gzip")


@test
def smuggling_rejected(env):
    standard(env)
    before = Env.ctl(*env.ports["api"], "count")
    expect_error(env, b"POST /api/echo/count HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                 b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /api/smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
                 400, "CL + TE")
    expect_error(env, b"POST /api/echo/count HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n"
                 b"Content-Length: 6\r\n\r\nhello!", 400, "two Content-Lengths")
    expect_error(env, b"POST /api/echo/count HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
                 400, "signed Content-Length")
    expect_error(env, b"POST /api/echo/count HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity, chunked\r\n\r\n"
                 b"0\r\n\r\n", (400, 501), "a coding besides chunked")
    check(Env.ctl(*env.ports["api"], "count") == before, "an ambiguous request reached the upstream")


@test
def upstream_down(env):
    dead = free_port("127.0.0.2")
    gw_port = free_port()
    conf = env.write("isthmus.yaml", docs(
        appliance(env), gateway(gw_port),
        virtual_service("d", ["*"], "  - route: [{destination: {host: dead.internal}}]\n"),
        service_entry("d", "dead.internal", [{"address": "127.0.0.2", "port": dead}])))
    env.start_gateway(conf, gw_port)
    t0 = time.monotonic()
    r = env.get("/x")
    check(r.status in (502, 503), f"connect refused answered {r}, want 502 or 503")
    check(time.monotonic() - t0 < 5, "took more than 5 s to answer a refused connection")
    r = env.get("/y")
    check(r.status in (502, 503), f"second request: {r}")


@test
def upstream_timeout(env):
    standard(env, timeouts={"upstreamResponse": "1s"})
    t0 = time.monotonic()
    r = env.get("/delay/5000", timeout=10)
    el = time.monotonic() - t0
    check(r.status == 504, f"/delay/5000 with upstreamResponse 1s answered {r}")
    check(el < 4, f"504 after {el:.1f}s")
    r = env.get("/delay/100")
    check(r.status == 200, f"short delay: {r}")


@test
def upstream_closed_503(env):
    """An upstream closing its connection before a response head: 503, as
    Envoy answers a connection termination (UC), not 502 (a malformed
    response's, UPE)."""
    standard(env)
    Env.ctl(*env.ports["api"], "reset")
    r = env.get("/api/x")
    check(r.status == 503, f"upstream closing without an answer gave {r}, want 503")
    Env.ctl(*env.ports["api"], "ok")
    r = env.get("/api/x")
    check(r.status == 200, f"after the upstream recovered: {r}")


# --------------------------------------------------------------------------- big bodies


def rss_sampler(env, stop, peak):
    while not stop.is_set():
        for pid in env.workers():
            kib = vmrss_kib(pid)
            if kib > peak.get(pid, 0):
                peak[pid] = kib
        time.sleep(0.05)


def with_rss(env, fn):
    stop = threading.Event()
    peak = {}
    t = threading.Thread(target=rss_sampler, args=(env, stop, peak), daemon=True)
    t.start()
    try:
        return fn(), peak
    finally:
        stop.set()
        t.join(5)


GIB = 1 << 30
RSS_LIMIT_KIB = 64 * 1024


@test
def big_upload(env):
    standard(env)
    check(env.workers(), "no worker processes found")

    def upload(chunked):
        gen = subprocess.Popen(["head", "-c", str(GIB), "/dev/zero"], stdout=subprocess.PIPE)
        args = ["curl", "-sS", "-T", "-", "-X", "POST", "-w", " %{http_code}", "--max-time", "120",
                f"http://127.0.0.1:{env.gw_port}/echo/count"]
        if not chunked:
            # curl would add Transfer-Encoding: chunked for stdin; the empty header removes it.
            args[2:2] = ["-H", "Transfer-Encoding:", "-H", f"Content-Length: {GIB}"]
        p = subprocess.run(args, stdin=gen.stdout, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=150)
        gen.stdout.close()
        gen.wait()
        return p.returncode, p.stdout.decode(), p.stderr.decode()

    for chunked in (False, True):
        (rc, out, err), peak = with_rss(env, lambda: upload(chunked))
        kind = "chunked" if chunked else "Content-Length"
        check(rc == 0 and out == f"{GIB}\n 200", f"1 GiB {kind} upload: rc {rc} out {out!r} {err}")
        check(peak and max(peak.values()) < RSS_LIMIT_KIB, f"worker RSS peaked at {peak} KiB during {kind} upload")


@test
def big_download(env):
    standard(env)
    check(env.workers(), "no worker processes found")
    for path in ("/bytes/%d" % GIB, "/chunked/%d" % GIB):
        (rc, out, err), peak = with_rss(env, lambda: curl(
            ["-o", "/dev/null", "-w", "%{http_code} %{size_download}", "--max-time", "120",
             f"http://127.0.0.1:{env.gw_port}{path}"], timeout=150))
        check(rc == 0 and out == f"200 {GIB}", f"download {path}: rc {rc} out {out!r} {err}")
        check(peak and max(peak.values()) < RSS_LIMIT_KIB, f"worker RSS peaked at {peak} KiB during {path}")


# --------------------------------------------------------------------------- processes, reload, stop


@test
def worker_respawn(env):
    standard(env)
    before = env.workers()
    check(len(before) == 2, f"want 2 workers (workers: 2), found {before}")
    victim = before[0]
    os.kill(victim, signal.SIGKILL)

    def dead():
        try:
            with open(f"/proc/{victim}/stat") as f:
                return f.read().rsplit(")", 1)[1].split()[0] == "Z"
        except FileNotFoundError:
            return True

    # A connection the worker accepted in the instant it was killed dies with it
    # (as with any proxy); what must not fail is what comes once it is gone.
    poll(dead, 5, what=f"worker {victim} to die")
    deadline = time.monotonic() + 10
    failures = []
    n = 0
    while time.monotonic() < deadline:
        try:
            r = env.get(f"/api/during{n}", timeout=3)
            if r.status != 200:
                failures.append(f"#{n}: {r.status}")
        except (OSError, EOFError, TestFailure) as e:
            failures.append(f"#{n}: {e!r}")
        n += 1
        now = env.workers()
        if victim not in now and len(now) == 2:
            break
    now = env.workers()
    check(victim not in now and len(now) == 2, f"killed worker {victim} not replaced within 10 s: {before} -> {now}")
    check(env.gateway.alive(), "master died")
    for i in range(20):
        r = env.get(f"/api/after{i}")
        check(r.status == 200, f"after respawn #{i}: {r}")
    check(not failures, f"{len(failures)} of {n} requests failed while the worker was replaced: {failures[:5]}")


@test
def accept_spreads_over_workers(env):
    """Every worker takes new connections from the shared listening socket (a
    one-shot accept re-armed after each connection joins the end of the queue),
    and a stopped worker holds up at most the one connection it was woken for."""
    standard(env)
    sock = env.path("ctl.sock")

    def per_worker():
        return {w["pid"]: w["requests"] for w in json.loads(ctl_cmd(sock, "show workers json"))}

    before = per_worker()
    for i in range(200):
        r = http_get(env.gw_port, f"/api/spread{i}", headers={"Connection": "close"})
        check(r.status == 200, f"#{i}: {r}")
    after = per_worker()
    served = {pid: after[pid] - before.get(pid, 0) for pid in after}
    check(len(served) == 2 and min(served.values()) >= 40,
          f"200 new connections over 2 workers: {served} (one worker takes them all?)")
    stopped = env.workers()[0]
    os.kill(stopped, signal.SIGSTOP)
    try:
        ok = 0
        for i in range(20):
            try:
                ok += http_get(env.gw_port, f"/api/stopped{i}", headers={"Connection": "close"},
                               timeout=1.0).status == 200
            except (OSError, EOFError, TestFailure):
                pass
    finally:
        os.kill(stopped, signal.SIGCONT)
    check(ok >= 15, f"with one of 2 workers stopped, {ok} of 20 new connections were served")


def wait_reloads(env, n, timeout=5.0):
    poll(lambda: env.log_count("reload: generation") >= n, timeout,
         what=f"{n} 'reload: generation' lines in the log")


@test
def reload_under_load(env):
    if not have("wrk"):
        raise Skip("wrk not installed")
    conf = standard(env)
    a, b = env.make_conf(75, 25), env.make_conf(25, 75)
    wrk = subprocess.Popen(["wrk", "-t1", "-c16", "-d8s", f"http://127.0.0.1:{env.gw_port}/"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        time.sleep(0.5)  # let wrk open its connections: reloads must not disturb established ones
        base = env.log_count("reload: generation")
        for i in range(20):
            tmp = conf + ".tmp"
            with open(tmp, "w") as f:
                f.write(b if i % 2 == 0 else a)
            os.replace(tmp, conf)
            os.kill(env.gateway.pid, signal.SIGHUP)
            wait_reloads(env, base + i + 1)
            check(env.gateway.alive(), f"master died at reload {i}")
        out, _ = wrk.communicate(timeout=20)
    finally:
        wrk_reap(wrk)
    check_wrk_clean(out, 100, "during reloads")
    check(len(env.workers()) == 2, f"workers after reloads: {env.workers()}")
    # The last file (a: 75/25) is in force.
    counts = tally(env, 400)
    share = 100.0 * counts.get("v1", 0) / 400
    check(65 <= share <= 85, f"after reloads, v1 share {share:.0f}% (want ≈75): {counts}")


@test
def reload_bad_refused(env):
    conf = standard(env)
    good = open(conf).read()
    r = env.get("/api/x")
    check(r.status == 200 and who(r) == "api", f"before: {r}")
    with open(conf, "w") as f:
        f.write(good.replace("weight: 75", "weight: -3"))
    os.kill(env.gateway.pid, signal.SIGHUP)
    poll(lambda: "reload refused" in env.gateway.log(), 5, what="'reload refused' in the log")
    check(env.gateway.alive(), "master died on a bad reload")
    for i in range(10):
        r = env.get(f"/api/x{i}")
        check(r.status == 200 and who(r) == "api", f"old routes after a refused reload: {r}")
    # A good file after the bad one is taken.
    routes2 = good.replace("prefix: /api", "prefix: /v2api")
    with open(conf, "w") as f:
        f.write(routes2)
    base = env.log_count("reload: generation")
    os.kill(env.gateway.pid, signal.SIGHUP)
    wait_reloads(env, base + 1)
    poll(lambda: who(env.get("/v2api/x")) == "api", 3, what="the new route /v2api")
    r = env.get("/api/x")
    check(who(r) in ("v1", "v2"), f"old /api route still in force after a good reload: {r}")


def slow_request_in_flight(env, path):
    """Starts a GET of path (a /delay/ path) through the gateway in a thread and
    returns once the upstream is delaying it: (thread, result dict with "r" or
    "e"). Not the upstream's count of requests: health checks add to that."""
    result = {}

    def slow():
        try:
            result["r"] = env.get(path, timeout=10)
        except Exception as e:  # reported by the caller
            result["e"] = e

    t = threading.Thread(target=slow, daemon=True)
    t.start()
    poll(lambda: sum(int(Env.ctl(*env.ports[u], "delaying")) for u in ("v1", "v2")) > 0, 3,
         what="the slow request to reach the upstream")
    return t, result


@test
def h2_websocket_early_data_held(env):
    """An HTTP/2 client's WebSocket (extended CONNECT) to an HTTP/1.1 backend
    that does not switch: what the client sends before the answer (here a
    whole HTTP/1.1 request, then END_STREAM) waits for the 101, as Envoy
    pauses the request, and is dropped with the refusal. Sent at once, the
    backend read it as its next request, past the gateway's routing and
    policies, and its answer went to the next client that got the connection
    from the pool."""
    standard(env)
    tool = os.path.join(ROOT, "tests", "upstream", "ws_h2_client.py")

    def count():
        return sum(int(Env.ctl(*env.ports[u], "count")) for u in ("v1", "v2"))

    for path, want in (("/status/403", 403), ("/status/200", 502)):
        before = count()
        p = subprocess.run([DEBIAN_PYTHON, tool, str(env.gw_port), path, "1", "1", "--timeout", "20",
                            "--early", r"GET /smuggled HTTP/1.1\r\nHost: test.local\r\n\r\n", "--early-end"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=40)
        rep = json.loads(p.stdout) if p.returncode == 0 else {}
        check(rep.get("status") == want, f"extended CONNECT to {path}: want {want}, got {p.stdout!r} {p.stderr!r}")
        for i in range(4):
            r = env.get(f"/next-{i}")
            check(r.status == 200 and r.body.endswith(f" /next-{i}\n".encode()),
                  f"request {i} after the refused upgrade to {path}: {r}")
        check(count() == before + 5, f"{path}: the backends counted {count() - before} requests, want 5 "
              "(the upgrade and the four after it: nothing smuggled)")


@test
def h2_websocket_refused_then_data(env):
    """An HTTP/2 client's WebSocket that its HTTP/1.1 backend refuses with a 403
    whose body comes late: what the client sends once the 403's head came (a
    whole HTTP/1.1 request) is dropped, never sent. It went to the backend
    behind the upgrade request, which read it as its next request."""
    srv = socket.socket()
    srv.bind(("127.0.0.2", 0))
    srv.listen(4)
    seen = {}

    def serve():
        c, _ = srv.accept()
        with c:
            head, seen["after"] = read_head(c)
            if head is None:
                return
            c.sendall(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 3\r\n\r\n")
            c.settimeout(0.2)
            end = time.monotonic() + 1.5  # the body waits: what comes meanwhile is seen
            while time.monotonic() < end:
                try:
                    chunk = c.recv(65536)
                except socket.timeout:
                    continue
                if not chunk:
                    break
                seen["after"] += chunk
            c.sendall(b"no\n")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    gw = free_port()
    host = "refuser.test.internal"
    conf = env.write("isthmus.yaml", docs(
        appliance(env), gateway(gw), virtual_service("ws", ["*"], f"  - route: [{{destination: {{host: {host}}}}}]\n"),
        service_entry("refuser", host, [{"address": "127.0.0.2", "port": srv.getsockname()[1]}])))
    env.start_gateway(conf, gw)
    try:
        p = subprocess.run([DEBIAN_PYTHON, os.path.join(ROOT, "tests", "upstream", "ws_h2_client.py"), str(gw),
                            "/ws", "1", "1", "--timeout", "10",
                            "--after", r"GET /smuggled HTTP/1.1\r\nHost: refuser\r\n\r\n"],
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=30)
        rep = json.loads(p.stdout) if p.returncode == 0 else {}
        check(rep.get("status") == 403, f"the refused upgrade: want 403, got {p.stdout!r} {p.stderr!r}")
        t.join(10)
        check("after" in seen and b"smuggled" not in seen["after"],
              f"the backend got bytes after the upgrade request: {seen.get('after')!r}")
    finally:
        srv.close()


@test
def graceful_stop(env):
    standard(env)
    t, result = slow_request_in_flight(env, "/delay/1000")
    os.kill(env.gateway.pid, signal.SIGTERM)
    t.join(10)
    check(not t.is_alive(), "slow request still running 10 s after SIGTERM")
    check("r" in result, f"slow request failed during graceful stop: {result.get('e')!r}")
    r = result["r"]
    check(served(r, "/delay/1000"), f"slow request answered {r}")
    try:
        env.gateway.p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        raise TestFailure("master still running 10 s after SIGTERM")
    check(env.gateway.p.returncode == 0, f"master exited with {env.gateway.p.returncode}")


# --------------------------------------------------------------------------- health and locality


@test
def health_initial_jitter(env):
    """initialJitter spreads the first checks of the endpoints at the start
    (Envoy's first check waits a random time below it): they all went out
    within a millisecond of each other, the jitter applied only to an
    endpoint already healthy when its service got a check."""
    first = {}
    socks = []

    def serve(ls, i):
        while True:
            try:
                c, _ = ls.accept()
            except OSError:
                return
            with c:
                c.settimeout(5)
                try:
                    c.recv(4096)
                    first.setdefault(i, time.monotonic())
                    c.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                except OSError:
                    pass

    for i in range(6):
        ls = socket.socket()
        ls.bind(("127.0.0.2", 0))
        ls.listen(8)
        socks.append(ls)
        threading.Thread(target=serve, args=(ls, i), daemon=True).start()
    try:
        gw_port = free_port()
        hc = ("  healthChecks:\n"
              f"  - {{host: {WEB}, path: /healthz, interval: 30s, timeout: 1s, healthyThreshold: 1,"
              f" unhealthyThreshold: 2, initialJitter: 2s}}\n")
        eps = [{"address": "127.0.0.2", "port": ls.getsockname()[1]} for ls in socks]
        env.start_gateway(env.write("isthmus.yaml", docs(
            appliance(env, extra=hc), gateway(gw_port),
            virtual_service("web", ["*"], f"  - route: [{{destination: {{host: {WEB}}}}}]\n"),
            service_entry("web", WEB, eps))), gw_port)
        poll(lambda: len(first) == 6, 10, what="a first check of each of the 6 endpoints")
        spread = max(first.values()) - min(first.values())
        # 6 draws below 2 s: a spread under 0.3 s is about 1 chance in 2,000.
        check(0.3 <= spread <= 2.5, f"the first checks spread over {spread * 1000:.0f} ms, want the jitter's")
    finally:
        for ls in socks:
            ls.close()


def _raw_check_servers(answers, stop):
    """One listener on 127.0.0.2 per answer (its parts, bytes, sent to each
    check's request on a thread of the connection's own, which then holds it
    open until stop is set, or closes it when the parts end with None): their
    ports and listening sockets."""
    ports = []

    def answer(c, parts):
        with c:
            c.settimeout(5)
            try:
                c.recv(4096)
                for part in parts:
                    if part is None:
                        break
                    c.sendall(part)
                else:
                    stop.wait(10)
            except OSError:
                pass

    def serve(ls, parts):
        while not stop.is_set():
            try:
                c, _ = ls.accept()
            except OSError:
                return
            threading.Thread(target=answer, args=(c, parts), daemon=True).start()

    socks = []
    for parts in answers:
        ls = socket.socket()
        ls.bind(("127.0.0.2", 0))
        ls.listen(16)
        socks.append(ls)
        ports.append(ls.getsockname()[1])
        threading.Thread(target=serve, args=(ls, parts), daemon=True).start()
    return ports, socks


@test
def health_check_reads_whole_response(env):
    """An HTTP check is decided on the whole response, as Envoy's: a status
    line and then silence, a body that never ends, or a connection closed
    within the body fail (timeout, network failure), where they passed on their
    status line; a 103 Early Hints before the 200 is skipped (it was taken for
    the answer: unexpected status 103), and a head larger than 1 KiB, a
    chunked body in pieces and a body the close ends pass."""
    big = b"x-big: " + b"a" * 4000 + b"\r\n"
    answers = {
        "half": [b"HTTP/1.1 200 OK\r\n"],
        "endless": [b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n"],
        "cut": [b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nshort", None],
        "early": [b"HTTP/1.1 103 Early Hints\r\nlink: </s.css>; rel=preload\r\n\r\n",
                  b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok", None],
        "big": [b"HTTP/1.1 200 OK\r\n" + big + b"transfer-encoding: chunked\r\n\r\n3\r\nabc\r\n",
                b"2\r\nde\r\n", b"0\r\n\r\n", None],
        "closed": [b"HTTP/1.1 200 OK\r\n\r\nthe close ends this", None],
    }
    names = list(answers)
    stop = threading.Event()
    ports, socks = _raw_check_servers([answers[n] for n in names], stop)
    try:
        gw_port = free_port()
        hc = ("  healthChecks:\n"
              f"  - {{host: {WEB}, path: /healthz, interval: 300ms, timeout: 500ms, healthyThreshold: 1,"
              " unhealthyThreshold: 1}\n")
        env.start_gateway(env.write("isthmus.yaml", docs(
            appliance(env, extra=hc), gateway(gw_port),
            virtual_service("web", ["*"], f"  - route: [{{destination: {{host: {WEB}}}}}]\n"),
            service_entry("web", WEB, [{"address": "127.0.0.2", "port": p} for p in ports]))), gw_port)
        sock = env.path("ctl.sock")

        def rows():
            doc = json.loads(ctl_cmd(sock, "show endpoints json"))
            return {n: next(e for e in doc if e["key"].endswith(f":{p}")) for n, p in zip(names, ports)}
        # Three checks of each decided (a held one ends at its 500 ms timeout).
        got = poll(lambda: (lambda r: r if all(e["checks"] >= 3 for e in r.values()) else None)(rows()),
                   20, what="three checks of every endpoint")
        health = {n: e["health"] for n, e in got.items()}
        want = {"half": "unhealthy", "endless": "unhealthy", "cut": "unhealthy",
                "early": "healthy", "big": "healthy", "closed": "healthy"}
        check(health == want, f"health {health}, want {want}")
        for n in ("half", "endless", "cut"):
            check(got[n]["check_failures"] == got[n]["checks"], f"{n}: {got[n]}")
        for n in ("early", "big", "closed"):
            check(got[n]["check_failures"] == 0, f"{n}: {got[n]}")
    finally:
        stop.set()
        for ls in socks:
            ls.close()


@test
def health_interval_shortened_by_reload(env):
    """A reload that shortens a check's interval brings the next check within
    the new interval: from 60 s to 300 ms, a failing endpoint is found within
    seconds, where the check waited out the old 60 s."""
    port = env.upstream(["127.0.0.2:0=a"], name="a")["a"]
    gw_port = free_port()

    def conf(interval):
        hc = ("  healthChecks:\n"
              f"  - {{host: {WEB}, path: /healthz, interval: {interval}, timeout: 1s, healthyThreshold: 1,"
              " unhealthyThreshold: 1}\n")
        return env.write("isthmus.yaml", docs(
            appliance(env, extra=hc), gateway(gw_port),
            virtual_service("web", ["*"], f"  - route: [{{destination: {{host: {WEB}}}}}]\n"),
            service_entry("web", WEB, [{"address": "127.0.0.2", "port": port}])))
    env.start_gateway(conf("60s"), gw_port)
    sock = env.path("ctl.sock")
    wait_serving(env, "/")
    conf("300ms")
    ans = ctl_cmd(sock, "reload")
    check("published" in ans, f"reload: {ans!r}")
    Env.ctl("127.0.0.2", port, "health/fail")
    poll(lambda: set(endpoint_health(ctl_cmd(sock, "show endpoints")).values()) == {"unhealthy"}, 10,
         what="the failing endpoint found unhealthy at the new interval")


@test
def health_ejection(env):
    ports = env.upstream(["127.0.0.2:0=a"], name="a")
    ports.update(env.upstream(["127.0.0.3:0=b"], name="b"))
    gw_port = free_port()
    conf = env.write("isthmus.yaml", docs(
        appliance(env, health_checks=[WEB]), gateway(gw_port),
        virtual_service("web", ["*"], f"  - route: [{{destination: {{host: {WEB}}}}}]\n"),
        service_entry("web", WEB, [
            {"address": "127.0.0.2", "port": ports["a"], "locality": "eu-west/eu-west-1a"},
            {"address": "127.0.0.3", "port": ports["b"], "locality": "eu-west/eu-west-1a"}])))
    env.start_gateway(conf, gw_port)
    poll(lambda: set(tally(env, 20)) == {"a", "b"}, 10, what="both endpoints to get traffic")
    Env.ctl("127.0.0.2", ports["a"], "health/fail")
    poll(lambda: set(tally(env, 20)) == {"b"}, 5, what="traffic to stop going to the failing endpoint")
    counts = tally(env, 100)
    check(counts == {"b": 100}, f"failing endpoint still picked: {counts}")
    Env.ctl("127.0.0.2", ports["a"], "health/ok")
    poll(lambda: "a" in tally(env, 20), 5, what="the recovered endpoint to get traffic again")


@test
def health_panic_threshold(env):
    """A cluster without outlierDetection keeps Envoy's 50 % panic threshold:
    1 endpoint of 3 passing its checks (33 %) puts the priority in panic and
    the traffic goes to all 3; 2 of 3 (67 %) is no panic, the failing one gets
    none. With outlierDetection (minHealthPercent 0, Istio's default) there is
    no panic: the healthy one alone."""
    ports = env.upstream(["127.0.0.2:0=a"], name="a")
    ports.update(env.upstream(["127.0.0.3:0=b"], name="b"))
    ports.update(env.upstream(["127.0.0.4:0=c"], name="c"))
    gw_port = free_port()
    parts = [appliance(env, health_checks=[WEB]), gateway(gw_port),
             virtual_service("web", ["*"], f"  - route: [{{destination: {{host: {WEB}}}}}]\n"),
             service_entry("web", WEB, [{"address": f"127.0.0.{i + 2}", "port": ports[n]}
                                        for i, n in enumerate("abc")])]
    env.start_gateway(env.write("isthmus.yaml", docs(*parts)), gw_port)
    poll(lambda: set(tally(env, 30)) == {"a", "b", "c"}, 10, what="the three endpoints to get traffic")
    Env.ctl("127.0.0.2", ports["a"], "health/fail")
    poll(lambda: set(tally(env, 30)) == {"b", "c"}, 5, what="traffic to leave a (2 of 3 healthy: no panic)")
    Env.ctl("127.0.0.3", ports["b"], "health/fail")
    poll(lambda: set(tally(env, 60)) == {"a", "b", "c"}, 5, what="1 of 3 healthy: panic, traffic to all three")
    env.write("isthmus.yaml", docs(*parts, no_panic_rule("web", WEB)))
    check("published" in ctl_cmd(env.path("ctl.sock"), "reload"), "the reload was refused")
    poll(lambda: tally(env, 30) == {"c": 30}, 5, what="with outlierDetection, traffic to c alone")


@test
def zone_preference(env):
    ports = env.upstream(["127.0.0.2:0=local"], name="local")
    ports.update(env.upstream(["127.0.0.3:0=remote-b", "127.0.0.4:0=remote-c"], name="remote"))
    gw_port = free_port()
    conf = env.write("isthmus.yaml", docs(
        appliance(env, locality="eu-west/eu-west-1a", health_checks=[WEB]), gateway(gw_port),
        virtual_service("web", ["*"], f"  - route: [{{destination: {{host: {WEB}}}}}]\n"),
        # Locality priorities apply with outlier detection, as in Istio.
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: web}\n"
        f"spec:\n  host: {WEB}\n  trafficPolicy:\n    outlierDetection: {{consecutive5xxErrors: 5}}\n",
        service_entry("web", WEB, [
            {"address": "127.0.0.2", "port": ports["local"], "locality": "eu-west/eu-west-1a"},
            {"address": "127.0.0.3", "port": ports["remote-b"], "locality": "eu-west/eu-west-1b"},
            {"address": "127.0.0.4", "port": ports["remote-c"], "locality": "eu-west/eu-west-1c"}])))
    env.start_gateway(conf, gw_port)
    poll(lambda: tally(env, 20) == {"local": 20}, 10, what="all traffic to the local-zone endpoint")
    counts = tally(env, 200)
    check(counts == {"local": 200}, f"with the local endpoint healthy, traffic went {counts}")
    Env.ctl("127.0.0.2", ports["local"], "health/fail")
    poll(lambda: "local" not in tally(env, 20), 5, what="traffic to leave the failing local endpoint")
    counts = tally(env, 100)
    check(set(counts) == {"remote-b", "remote-c"}, f"with local failing, traffic went {counts} (want both remotes)")
    Env.ctl("127.0.0.2", ports["local"], "health/ok")
    poll(lambda: tally(env, 20) == {"local": 20}, 5, what="traffic to return to the local endpoint")


# --------------------------------------------------------------------------- reload stress, control socket, admin


class LogTail:
    """Reads a process log incrementally (the log can grow large under load)."""

    def __init__(self, proc):
        self.path = proc.log_path
        self.off = 0
        self.pending = ""

    def lines(self):
        with open(self.path, "rb") as f:
            f.seek(self.off)
            d = f.read()
        self.off += len(d)
        self.pending += d.decode("utf-8", "replace")
        *done, self.pending = self.pending.split("\n")
        return done




def info_field(text, name):
    m = re.search(rf"^{re.escape(name)}: *(\S+)$", text, re.M)
    check(m, f"no '{name}:' line in 'show info' answer: {text!r}")
    return m.group(1)


def endpoint_health(text):
    """'show endpoints' answer -> {key: "healthy"/"unhealthy"}; every line must carry a key and health=."""
    out = {}
    for line in text.strip().split("\n"):
        m = re.search(r"(\S+\|\S+:\d+)\s.*\bhealth=(\w+)", line)
        check(m, f"'show endpoints' line without '<service>|<addr>:<port> ... health=': {line!r} in {text!r}")
        out[m.group(1)] = m.group(2)
    return out


@test
def reload_reused_endpoint_slot(env):
    """An endpoint slot a reload freed and a later one gave to another endpoint
    (A, then B, then C in A's slot): a connection pooled to A is not used for
    C (requests reached A's address before), and the slot's in-flight and
    connection counts are C's alone."""
    names = {"a": "127.0.0.2", "b": "127.0.0.3", "c": "127.0.0.4"}
    ports = {n: env.upstream([f"{addr}:0={n}"], name=n)[n] for n, addr in names.items()}
    gw = free_port()
    sock = env.path("ctl.sock")

    def conf_for(n, host="s.test"):
        return env.write("isthmus.yaml", docs(
            appliance(env, workers=1), gateway(gw),
            virtual_service("vs", ["*"], f"  - route: [{{destination: {{host: {host}}}}}]\n"),
            service_entry("s", host, [{"address": names[n], "port": ports[n]}])))

    def ep_id(n):
        doc = json.loads(ctl_cmd(sock, "show endpoints json"))
        ids = [e["id"] for e in doc if e["key"].endswith(f"{names[n]}:{ports[n]}")]
        return ids[0] if ids else None

    def reload(n, host="s.test"):
        conf_for(n, host)
        ans = ctl_cmd(sock, "reload")
        check("published" in ans, f"reload to {n}: {ans!r}")

    env.start_gateway(conf_for("a"), gw)
    with Conn("127.0.0.1", gw) as c:  # A's connection stays pooled
        r = c.request("GET", "/")
        check(r.status == 200 and who(r) == "a", f"before the reloads: {r}")
    slot_a = ep_id("a")

    reload("b")
    tries = [0]

    def c_in_a_slot():
        # C under a new service name each time: a new key, which takes the
        # lowest free slot (A's, once no generation holds it: the sweep).
        tries[0] += 1
        reload("c", f"s{tries[0]}.test")
        return ep_id("c") == slot_a

    poll(c_in_a_slot, 20, interval=0.3, what=f"endpoint c in endpoint a's freed slot {slot_a}")
    for i in range(3):
        r = env.get(f"/after{i}")
        check(r.status == 200 and who(r) == "c", f"request {i} after the slot went to c: {r}")

    def c_entry():
        doc = {e["key"]: e for e in json.loads(ctl_cmd(sock, "show endpoints json"))}
        return next(v for k, v in doc.items() if k.endswith(f"{names['c']}:{ports['c']}"))

    # The client reads the last response before the worker hears its send
    # completed and ends the request: the count is polled, within a bound.
    try:
        poll(lambda: c_entry()["inflight"] == 0, 5, what="endpoint c's in-flight count back to 0")
    except TestFailure:
        raise TestFailure(f"endpoint c's in-flight count after the requests: {c_entry()}")


@test
def reload_stress(env):
    if not have("wrk"):
        raise Skip("wrk not installed")
    ups = env.upstream(["127.0.0.2:0=v1", "127.0.0.5:0=v1b"], name="v1")
    p2 = env.upstream(["127.0.0.3:0=v2"], name="v2")["v2"]
    pa = env.upstream(["127.0.0.4:0=api"], name="api")["api"]
    gw_port = free_port()

    def make(weights_swapped, extra_ep, extra_route, slow_hc):
        w1, w2 = (25, 75) if weights_swapped else (75, 25)
        hc = ("  healthChecks:\n"
              f"  - {{host: {WEB}, path: /healthz, interval: {'300ms' if slow_hc else '200ms'}, timeout: 200ms,"
              f" healthyThreshold: 1, unhealthyThreshold: 2}}\n")
        routes = web_routes(w1, w2)
        if extra_route:
            routes = (f"  - match: [{{uri: {{prefix: /extra}}}}]\n"
                      f"    route: [{{destination: {{host: {API}}}}}]\n") + routes
        eps = [{"address": "127.0.0.2", "port": ups["v1"], "labels": {"version": "v1"}, "locality": "eu-west/eu-west-1a"},
               {"address": "127.0.0.3", "port": p2, "labels": {"version": "v2"}, "locality": "eu-west/eu-west-1b"}]
        if extra_ep:
            eps.append({"address": "127.0.0.5", "port": ups["v1b"], "labels": {"version": "v1"},
                        "locality": "eu-west/eu-west-1a"})
        return docs(appliance(env, extra=hc), gateway(gw_port), virtual_service("web", ["*"], routes),
                    destination_rule("web", WEB, ["v1", "v2"]), service_entry("web", WEB, eps),
                    service_entry("api", API, [{"address": "127.0.0.4", "port": pa, "locality": "eu-west/eu-west-1a"}]))

    state = [False, False, False, False]
    conf = env.write("isthmus.yaml", make(*state))
    env.start_gateway(conf, gw_port)
    wait_serving(env, "/")
    workers = env.workers()
    check(len(workers) == 2, f"want 2 workers, found {workers}")
    log = LogTail(env.gateway)
    log.lines()
    wrk = subprocess.Popen(["wrk", "-t1", "-c16", "-d60s", "--timeout", "3s", f"http://127.0.0.1:{gw_port}/"],
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    n_reloads = 200
    t0 = time.monotonic()
    try:
        poll(lambda: int(Env.ctl("127.0.0.2", ups["v1"], "count")) > 0, 5,
             what="wrk traffic to reach the upstreams")
        refused = []
        for i in range(n_reloads):
            state[i % 4] = not state[i % 4]
            tmp = conf + ".tmp"
            with open(tmp, "w") as f:
                f.write(make(*state))
            os.replace(tmp, conf)
            os.kill(env.gateway.pid, signal.SIGHUP)
            want = f"reload: generation {i + 2} published"
            deadline = time.monotonic() + 10
            while True:
                lines = log.lines()
                refused += [l for l in lines if "reload refused" in l or "error" in l]
                if refused:
                    raise TestFailure(f"reload {i + 1} (state {state}) refused or an error logged: {refused[:5]}")
                if any(want in l for l in lines):
                    break
                check(env.gateway.alive(), f"master died at reload {i + 1}")
                check(time.monotonic() < deadline, f"no '{want}' in the log within 10 s (reload {i + 1})")
                time.sleep(0.002)
            if wrk.poll() is not None:
                raise TestFailure(f"wrk ended before reload {i + 1}: {wrk.communicate()[0].decode()}")
        reload_s = time.monotonic() - t0
        time.sleep(0.3)  # traffic on the last generation too; wrk is stopped below, not awaited
        wrk.send_signal(signal.SIGINT)  # wrk stops and prints its summary
        out, _ = wrk.communicate(timeout=10)
    finally:
        wrk_reap(wrk)
    check_wrk_clean(out, n_reloads, f"during {n_reloads} reloads ({reload_s:.1f}s)")
    check(env.gateway.alive(), "master died")
    check(env.workers() == workers, f"workers changed during reloads: {workers} -> {env.workers()}")
    exits = [l for l in env.gateway.log().split("\n") if "exited" in l or "restarted" in l]
    check(not exits, f"worker exits logged during reloads: {exits[:5]}")
    info = ctl_cmd(env.path("ctl.sock"), "show info")
    check(info_field(info, "generation") == str(n_reloads + 1), f"show info after {n_reloads} reloads: {info}")
    # The last file is in force: /extra goes to api exactly when the last file has that route.
    r = env.get("/extra/x")
    if state[2]:
        check(r.status == 200 and who(r) == "api", f"/extra/x with the extra route in force: {r}")
    else:
        check(r.status == 200 and who(r) in ("v1", "v1b", "v2"), f"/extra/x without the extra route: {r}")


@test
def control_socket(env):
    standard(env, health=True)
    sock = env.path("ctl.sock")
    p1, p2, pa = env.ports["v1"][1], env.ports["v2"][1], env.ports["api"][1]

    info = ctl_cmd(sock, "show info")
    check(info_field(info, "generation") == "1", f"show info: {info!r}")
    check(info_field(info, "workers") == "2", f"show info (workers: 2 configured): {info!r}")
    before = int(info_field(info, "requests"))
    for i in range(10):
        r = env.get(f"/api/ctl{i}")
        check(r.status == 200, f"request {i}: {r}")
    poll(lambda: int(info_field(ctl_cmd(sock, "show info"), "requests")) >= before + 10, 3,
         what=f"'requests:' to grow by 10 from {before}")

    # A real client.
    p = subprocess.run(["socat", "-t", "5", "-", f"UNIX-CONNECT:{sock}"], input=b"show info\n",
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=10)
    out = p.stdout.decode()
    check(p.returncode == 0 and re.search(r"^generation: 1$", out, re.M) and re.search(r"^workers: 2$", out, re.M),
          f"socat 'show info': rc {p.returncode} {out!r} {p.stderr.decode()!r}")

    k1, k2, ka = f"{WEB}|127.0.0.2:{p1}", f"{WEB}|127.0.0.3:{p2}", f"{API}|127.0.0.4:{pa}"
    eps = poll(lambda: (lambda h: h if h.get(k1) == "healthy" and h.get(k2) == "healthy" else None)(
        endpoint_health(ctl_cmd(sock, "show endpoints"))), 5, what="both web endpoints healthy in 'show endpoints'")
    check(set(eps) == {k1, k2, ka}, f"'show endpoints' keys {sorted(eps)}, want {sorted([k1, k2, ka])}")
    check(eps[ka] == "healthy", f"api endpoint (no health check) is {eps[ka]}")
    Env.ctl("127.0.0.2", p1, "health/fail")
    poll(lambda: endpoint_health(ctl_cmd(sock, "show endpoints")).get(k1) == "unhealthy", 5,
         what=f"{k1} to become unhealthy in 'show endpoints'")
    check(endpoint_health(ctl_cmd(sock, "show endpoints")).get(k2) == "healthy", "v2 went unhealthy too")
    Env.ctl("127.0.0.2", p1, "health/ok")
    poll(lambda: endpoint_health(ctl_cmd(sock, "show endpoints")).get(k1) == "healthy", 5,
         what=f"{k1} to become healthy again")

    # reload: a good file, then a bad one.
    conf = env.path("isthmus.yaml")
    good = open(conf).read().replace("prefix: /api", "prefix: /v2api")
    with open(conf, "w") as f:
        f.write(good)
    ans = ctl_cmd(sock, "reload")
    check("generation 2 published" in ans, f"reload of a good file answered {ans!r}")
    r = env.get("/v2api/x")
    check(r.status == 200 and who(r) == "api", f"/v2api after the reload: {r}")
    bad = good.replace("weight: 25", "weight: lots")
    with open(conf, "w") as f:
        f.write(bad)
    ans = ctl_cmd(sock, "reload")
    check("reload refused" in ans, f"reload of a bad file answered {ans!r}")
    m = re.search(re.escape(conf) + r":(\d+):(\d+): error", ans)
    check(m, f"no '{conf}:LINE:COL: error' in the reload answer {ans!r}")
    line = int(m.group(1))
    lines = bad.split("\n")
    check(1 <= line <= len(lines) and "lots" in lines[line - 1],
          f"reload error points at line {line}, not at the bad weight: {ans!r}")
    check(info_field(ctl_cmd(sock, "show info"), "generation") == "2", "generation changed by a refused reload")
    for i in range(10):
        r = env.get(f"/v2api/x{i}")
        check(r.status == 200 and who(r) == "api", f"generation-2 route after a refused reload: {r}")
        r = env.get(f"/api/x{i}")
        check(r.status == 200 and who(r) in ("v1", "v2"), f"/api after a refused reload: {r}")

    ans = ctl_cmd(sock, "frobnicate")
    check(ans.startswith("error: unknown command"), f"unknown command answered {ans!r}")
    check(env.gateway.alive(), "master died")


def admin_get(port, path, timeout=5.0):
    with Conn("127.0.0.1", port, timeout=timeout) as c:
        c.send(f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        return c.read_response()


METRIC_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*",?)*\})?'
                         r' ([-+]?(?:[0-9.]+(?:[eE][-+]?[0-9]+)?|NaN|[-+]?Inf))(?: -?\d+)?$')


def scrape(port):
    """GET /metrics: checks the Prometheus text format; returns {(name, frozenset(labels)): value}."""
    r = admin_get(port, "/metrics")
    check(r.status == 200, f"/metrics answered {r}")
    ct = r.header("content-type") or ""
    check(ct.replace(" ", "").startswith("text/plain;version=0.0.4"), f"/metrics Content-Type {ct!r}")
    text = r.body.decode()
    check(text.endswith("\n"), "metrics text does not end with a newline")
    typed, out = {}, {}
    for line in text.split("\n")[:-1]:
        if line.startswith("#"):
            m = re.match(r"# (HELP|TYPE) ([a-zA-Z_:][a-zA-Z0-9_:]*)(?: (.*))?$", line)
            check(m, f"bad comment line {line!r}")
            if m.group(1) == "TYPE":
                check(m.group(3) in ("counter", "gauge", "histogram", "summary", "untyped"), f"bad TYPE {line!r}")
                check(m.group(2) not in typed, f"second TYPE for {m.group(2)}")
                typed[m.group(2)] = m.group(3)
            continue
        check(line != "", "empty line in the metrics text")
        m = METRIC_LINE.match(line)
        check(m, f"not a Prometheus sample line: {line!r}")
        labels = frozenset(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2) or ""))
        key = (m.group(1), labels)
        check(key not in out, f"duplicate sample {line!r}")
        out[key] = float(m.group(3))
    for name, _ in out:
        base = re.sub(r"_(bucket|sum|count)$", "", name)
        check(name in typed or base in typed, f"sample {name} has no # TYPE line")
    return out


def metric(ms, name, **labels):
    """The value of the one sample of name whose labels include labels."""
    want = set(labels.items())
    vals = [v for (n, ls), v in ms.items() if n == name and want <= set(ls)]
    check(len(vals) == 1, f"{len(vals)} samples of {name}{labels or ''} in /metrics "
          f"(have: {sorted((n, sorted(ls)) for n, ls in ms if n == name)})")
    return vals[0]


@test
def admin_listener(env):
    aport = free_port()
    standard(env, health=True, extra=f"  admin:\n    address: 127.0.0.1:{aport}\n")
    p1, p2, pa = env.ports["v1"][1], env.ports["v2"][1], env.ports["api"][1]
    poll(lambda: admin_get(aport, "/healthz/ready").status == 200, 5, what="/healthz/ready to answer 200")
    r = admin_get(aport, "/no/such/path")
    check(r.status == 404, f"unknown admin path answered {r}")

    ep1 = dict(service=WEB, endpoint=f"127.0.0.2:{p1}")
    ep2 = dict(service=WEB, endpoint=f"127.0.0.3:{p2}")
    epa = dict(service=API, endpoint=f"127.0.0.4:{pa}")
    poll(lambda: metric(scrape(aport), "isthmus_endpoint_healthy", **ep1) == 1 and
         metric(scrape(aport), "isthmus_endpoint_healthy", **ep2) == 1, 5, what="both web endpoints healthy in /metrics")
    m0 = scrape(aport)
    check(metric(m0, "isthmus_config_generation") == 1, "isthmus_config_generation is not 1 at start")
    check(metric(m0, "isthmus_endpoint_healthy", **epa) == 1, "api endpoint (no health check) not healthy")
    served_by = {}
    for i in range(25):
        path = f"/m{i}" if i % 5 else "/status/404"
        r = env.get(path)
        check(r.status == (404 if path == "/status/404" else 200), f"{path}: {r}")
        served_by[who(r)] = served_by.get(who(r), 0) + 1
    check(set(served_by) <= {"v1", "v2"}, f"served by {served_by}")

    def delta(ms, name, **labels):
        return metric(ms, name, **labels) - metric(m0, name, **labels)

    m1 = poll(lambda: (lambda ms: ms if delta(ms, "isthmus_requests_total") >= 25 else None)(scrape(aport)), 3,
              what="isthmus_requests_total to grow by 25")
    time.sleep(0.2)  # nothing else runs: a later scrape must show the same counts
    m1 = scrape(aport)
    check(metric(m1, "isthmus_requests_total") >= 25, "isthmus_requests_total below the 25 requests sent")
    check(delta(m1, "isthmus_requests_total") == 25,
          f"isthmus_requests_total grew by {delta(m1, 'isthmus_requests_total')}, 25 requests were sent")
    check(delta(m1, "isthmus_responses_total", code_class="2xx") == 20,
          f"2xx responses grew by {delta(m1, 'isthmus_responses_total', code_class='2xx')}, want 20")
    check(delta(m1, "isthmus_responses_total", code_class="4xx") == 5,
          f"4xx responses grew by {delta(m1, 'isthmus_responses_total', code_class='4xx')}, want 5")
    for name, ep, labels in (("v1", ep1, ep1), ("v2", ep2, ep2), ("api", epa, epa)):
        d = delta(m1, "isthmus_endpoint_requests_total", **labels)
        check(d == served_by.get(name, 0), f"isthmus_endpoint_requests_total{labels} grew by {d}, "
              f"the upstream answered {served_by.get(name, 0)}")

    # Connections: one open keep-alive connection is counted, then not.
    with Conn("127.0.0.1", env.gw_port) as c:
        check(c.request("GET", "/api/held").status == 200, "request on the held connection")
        poll(lambda: metric(scrape(aport), "isthmus_connections_active") >= 1, 3,
             what="isthmus_connections_active >= 1 with a connection open")
    poll(lambda: metric(scrape(aport), "isthmus_connections_active") == 0, 3,
         what="isthmus_connections_active back to 0 after the connection closed")

    # Health follows the checks.
    Env.ctl("127.0.0.2", p1, "health/fail")
    poll(lambda: metric(scrape(aport), "isthmus_endpoint_healthy", **ep1) == 0, 5,
         what="isthmus_endpoint_healthy of v1 to drop to 0")
    check(metric(scrape(aport), "isthmus_endpoint_healthy", **ep2) == 1, "v2 went unhealthy too")
    Env.ctl("127.0.0.2", p1, "health/ok")
    poll(lambda: metric(scrape(aport), "isthmus_endpoint_healthy", **ep1) == 1, 5,
         what="isthmus_endpoint_healthy of v1 back to 1")

    # A reload.
    reloads0 = metric(scrape(aport), "isthmus_reloads_total")
    ans = ctl_cmd(env.path("ctl.sock"), "reload")
    check("generation 2 published" in ans, f"reload answered {ans!r}")
    m2 = scrape(aport)
    check(metric(m2, "isthmus_config_generation") == 2, "isthmus_config_generation not 2 after a reload")
    check(metric(m2, "isthmus_reloads_total") == reloads0 + 1, "isthmus_reloads_total did not grow by 1")

    # Graceful stop: not ready while draining, before the master exits.
    t, result = slow_request_in_flight(env, "/delay/1500")
    check(admin_get(aport, "/healthz/ready").status == 200, "not ready before SIGTERM")
    os.kill(env.gateway.pid, signal.SIGTERM)
    poll(lambda: admin_get(aport, "/healthz/ready", timeout=1).status == 503, 1.2, interval=0.02,
         what="/healthz/ready to answer 503 while draining")
    check(env.gateway.alive(), "master exited before the slow request finished")
    t.join(10)
    check(not t.is_alive() and "r" in result and served(result["r"], "/delay/1500"),
          f"slow request during the stop: {result}")
    try:
        env.gateway.p.wait(timeout=10)
    except subprocess.TimeoutExpired:
        raise TestFailure("master still running 10 s after SIGTERM")
    check(env.gateway.p.returncode == 0, f"master exited with {env.gateway.p.returncode}")


# --------------------------------------------------------------------------- make run


DEMO_PORTS = [("127.0.0.1", 8080), ("127.0.0.1", 9901)] + [
    (f"127.0.0.{a}", p) for a in range(1, 5) for p in (18081, 18082)] + [("127.0.0.1", 18083)]


@test
def readme_sample_error(env):
    """README's example of a refused file is what isthmus -c says of the demo
    file with that mistake (its line had drifted as the file grew)."""
    with open(os.path.join(ROOT, "README.md")) as f:
        m = re.search(r"^    (isthmus\.yaml:\d+:\d+: error: Appliance demo: spec\.workerz: .*)$", f.read(), re.M)
    check(m is not None, "README.md shows no error of spec.workerz")
    with open(os.path.join(ROOT, "conf", "isthmus.yaml")) as f:
        text = f.read()
    check(text.count("\n  workers: ") == 1, "the demo file has no one spec.workers")
    rc, out = env.check_config(env.write("isthmus.yaml", text.replace("\n  workers: ", "\n  workerz: ")), True)
    check(rc != 0 and m.group(1) in out, f"README says {m.group(1)!r}; isthmus -c says:\n{out}")


@test
def demo_make_run(env):
    busy = [f"{a}:{p}" for a, p in DEMO_PORTS if port_open(a, p)]
    check(not busy, f"the demo's fixed ports are taken by something else: {busy}; stop it and rerun")
    log_path = env.path("demo.log")
    with open(log_path, "wb") as logf:
        p = subprocess.Popen(["sh", "tests/demo/run.sh", env.build], stdout=logf, stderr=logf,
                             stdin=subprocess.DEVNULL, start_new_session=True, cwd=ROOT)
    demo = Proc("demo", p, log_path)
    env.procs.append(demo)
    env.gateway = demo  # the failure report shows this log
    env.gw_port = 8080

    def up():
        if not demo.alive():
            raise TestFailure(f"tests/demo/run.sh exited with {p.returncode}")
        return env.get("/", timeout=2).status == 200

    poll(up, 20, interval=0.1, what="the demo to answer 200 on 127.0.0.1:8080/")
    check("curl -i http://127.0.0.1:8080/" in demo.log(), "the demo did not print its instructions")
    seen = set()
    for i in range(20):
        r = env.get("/")
        check(r.status == 200 and re.match(r"web-v[12]-", who(r) or ""), f"/ answered {r}")
        seen.add(who(r))
    check(any(s.startswith("web-v1-") for s in seen), f"20 requests to / never reached web v1 (90 %): {seen}")
    for i in range(5):
        r = env.get("/", headers={"x-canary": "true"})
        check(r.status == 200 and who(r) == "web-v2-1a", f"x-canary: true answered {r}")
        r = env.get("/api/users")
        check(r.status == 200 and who(r) == "api-1a", f"/api/users answered {r} (want the zone-local api-1a)")
    out = ctl_cmd("/tmp/isthmus/isthmus.sock", "show endpoints")
    check(endpoint_health(out).get("api.demo.internal|127.0.0.1:18081") == "healthy",
          f"'show endpoints' on the demo: {out!r}")
    # The banner's commands work as printed: isthmusctl on the demo's socket,
    # the admin URLs, the pid file in place of pgrep.
    banner = demo.log()
    check("pgrep" not in banner, "the banner still finds the master with pgrep")
    cmds = re.findall(r"^  (\S*isthmusctl -s \S+ show info)$", banner, re.M)
    check(len(cmds) == 1, f"no isthmusctl show info line in the banner:\n{banner}")
    p2 = subprocess.run(cmds[0].split(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=ROOT, timeout=20)
    check(p2.returncode == 0 and b"generation: 1" in p2.stdout, f"{cmds[0]}: {p2.returncode} {p2.stdout!r}")
    urls = re.findall(r"^  curl -s (http://127\.0\.0\.1:9901/\S+)$", banner, re.M)
    check("http://127.0.0.1:9901/metrics" in urls, f"no metrics URL in the banner: {urls}")
    for url in urls:
        st = http_get(9901, url.split(":9901", 1)[1]).status
        check(st == 200, f"{url} answered {st}")
    m = re.search(r"kill -HUP \$\(cat (\S+)\)", banner)
    check(m is not None, f"no reload through the pid file in the banner:\n{banner}")
    pidf = m.group(1)
    with open(pidf) as f:
        master = int(f.read())
    check(os.path.exists(f"/proc/{master}") and os.getpgid(master) == p.pid,
          f"the pid file {pidf} names {master}, not the demo's master")

    os.killpg(p.pid, signal.SIGINT)
    try:
        p.wait(timeout=20)
    except subprocess.TimeoutExpired:
        raise TestFailure("tests/demo/run.sh still running 20 s after SIGINT")
    poll(lambda: not [1 for a, pt in DEMO_PORTS if port_open(a, pt)], 5,
         what="every demo port to close after SIGINT")

    def group_gone():
        try:
            os.killpg(p.pid, 0)
            return False
        except ProcessLookupError:
            return True
    poll(group_gone, 5, what="every process of the demo to exit after SIGINT")
    check(not os.path.exists("/tmp/isthmus/isthmus.sock"), "the demo's control socket was left behind")
    check(not os.path.exists(pidf), "the demo's pid file was left behind")


test_locality.register(test)
test_policies.register(test)
test_ops.register(test)
test_tls.register(test)
test_security.register(test)
test_control.register(test)
test_operator.register(test)
test_h2.register(test)
test_h2safety.register(test)
test_istio_api.register(test)
test_routes.register(test)
test_mirror.register(test)
test_cors_fault.register(test)
test_tunnels.register(test)
test_dns.register(test)
test_multishot.register(test)
test_retries.register(test)
test_h2upconn.register(test)
test_h2strict.register(test)
test_upstream_pp.register(test)
test_authz.register(test)
test_jwt.register(test)
test_extauthz.register(test)
test_extauthz_grpc.register(test)
test_extauthz_body.register(test)
test_reload_flight.register(test)
test_unix_upstream.register(test)
test_health.register(test)


# --------------------------------------------------------------------------- runner


def tail(text, n=25):
    return "\n".join("    | " + l for l in text.rstrip().split("\n")[-n:])


SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:", "AddressSanitizer:DEADLYSIGNAL")


def check_sanitizers(env):
    """A sanitizer report in any process's log fails the test (ASan/UBSan builds)."""
    for proc in env.procs:
        text = proc.log()
        for mark in SANITIZER_MARKS:
            i = text.find(mark)
            if i >= 0:
                raise TestFailure(f"sanitizer report in {proc.name}'s log ({proc.log_path}):\n"
                                  + text[max(0, i - 200):i + 1500])


# Tests that must run with no other test beside them under --jobs: the demo's
# ports and control socket are fixed.
SERIAL = {"demo_make_run"}

# What a test's process exits with under --jobs.
EXIT_OK, EXIT_FAIL, EXIT_SKIP = 0, 1, 3
# A test that runs past TEST_LIMIT_S under --jobs is interrupted (its teardown
# runs), and killed TEST_KILL_S later if it has not ended: the slowest take
# under a minute under the sanitizers.
TEST_LIMIT_S = 300
TEST_KILL_S = 30


def run_one(t, build, keep):
    """Runs test t in this process; prints its line(s); returns EXIT_OK, EXIT_FAIL or EXIT_SKIP."""
    env = Env(build, None, t.__name__)
    t0 = time.monotonic()
    result = EXIT_FAIL
    try:
        t(env)
        env.close()
        check_sanitizers(env)
        print(f"ok {t.__name__} ({time.monotonic() - t0:.1f}s)", flush=True)
        result = EXIT_OK
    except Skip as e:
        print(f"SKIP {t.__name__}: {e}", flush=True)
        result = EXIT_SKIP
    except Exception as e:
        reason = str(e) if isinstance(e, TestFailure) else traceback.format_exc().rstrip()
        print(f"FAIL {t.__name__}: {reason}", flush=True)
        if env.gateway is not None:
            print(f"  isthmus log ({env.gateway.log_path}):\n{tail(env.gateway.log())}", flush=True)
    finally:
        env.close()
        if not keep and result != EXIT_FAIL:
            env.cleanup_dir()
    return result


def run_forked(t, build, keep, out_path):
    """Starts test t in a child process whose output goes to out_path; returns its pid."""
    sys.stdout.flush()
    sys.stderr.flush()
    pid = os.fork()
    if pid:
        return pid
    code = EXIT_FAIL
    try:
        fd = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        code = run_one(t, build, keep)
    except BaseException:
        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def run_jobs(selected, build, keep, jobs):
    """Runs the tests jobs at a time, each in a process of its own (its rlimits,
    environment and threads its own), the SERIAL ones alone; prints each test's
    lines when it ends. Returns (passed, failed, skipped)."""
    rundir = tempfile.mkdtemp(prefix="itest-run-")
    os.environ["ISM_PORT_REGISTRY"] = os.path.join(rundir, "ports")
    os.mkdir(os.environ["ISM_PORT_REGISTRY"])
    counts = {EXIT_OK: 0, EXIT_FAIL: 0, EXIT_SKIP: 0}
    running = {}  # pid -> [output path, when it started, when it was interrupted]
    queue = list(selected)

    def overdue(now):
        """A test past TEST_LIMIT_S is interrupted (SIGINT: its teardown runs),
        then killed if that does not end it."""
        for pid, r in running.items():
            if r[2] is None and now - r[1] > TEST_LIMIT_S:
                os.kill(pid, signal.SIGINT)
                r[2] = now
            elif r[2] is not None and now - r[2] > TEST_KILL_S:
                os.kill(pid, signal.SIGKILL)

    def reap():
        while True:
            pid, status = os.waitpid(-1, os.WNOHANG)
            if pid:
                break
            overdue(time.monotonic())
            time.sleep(0.05)  # the runner's own wait for its children, not a test's
        out_path, _, interrupted = running.pop(pid)
        with open(out_path, errors="replace") as f:
            text = f.read()
        code = os.waitstatus_to_exitcode(status)
        name = os.path.basename(out_path)
        if interrupted is not None:
            code = EXIT_FAIL
            text += f"FAIL {name}: no end within {TEST_LIMIT_S} s: interrupted\n"
        elif code not in counts:
            code = EXIT_FAIL
            text += f"FAIL {name}: its process ended with status {status}\n"
        counts[code] += 1
        sys.stdout.write(text)
        sys.stdout.flush()
        os.unlink(out_path)

    while queue or running:
        t = queue[0] if queue else None
        serial = t is not None and t.__name__ in SERIAL
        if t is not None and len(running) < jobs and not (serial and running) \
                and not any(os.path.basename(r[0]) in SERIAL for r in running.values()):
            queue.pop(0)
            out_path = os.path.join(rundir, t.__name__)
            running[run_forked(t, build, keep, out_path)] = [out_path, time.monotonic(), None]
            continue
        reap()
    shutil.rmtree(rundir, ignore_errors=True)
    return counts[EXIT_OK], counts[EXIT_FAIL], counts[EXIT_SKIP]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--only", default=None, help="comma-separated test names")
    ap.add_argument("--list", action="store_true")
    ap.add_argument("--keep", action="store_true", help="keep temp dirs")
    ap.add_argument("--jobs", type=int, default=1,
                    help="tests run side by side, each in a process of its own (the serial ones alone)")
    args = ap.parse_args()
    if args.list:
        for t in TESTS:
            print(t.__name__)
        return 0
    build = os.path.abspath(args.build)
    selected = TESTS
    if args.only:
        names = args.only.split(",")
        unknown = set(names) - {t.__name__ for t in TESTS}
        if unknown:
            print(f"unknown tests: {', '.join(sorted(unknown))}", file=sys.stderr)
            return 2
        selected = [t for t in TESTS if t.__name__ in names]
    if args.jobs > 1:
        passed, failed, skipped = run_jobs(selected, build, args.keep, args.jobs)
    else:
        counts = {EXIT_OK: 0, EXIT_FAIL: 0, EXIT_SKIP: 0}
        for t in selected:
            counts[run_one(t, build, args.keep)] += 1
        passed, failed, skipped = counts[EXIT_OK], counts[EXIT_FAIL], counts[EXIT_SKIP]
    if skipped:
        print(f"{skipped} skipped (each SKIP above says why)")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
