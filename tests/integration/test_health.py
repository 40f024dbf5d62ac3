# SPDX-License-Identifier: Apache-2.0
"""Integration tests of the active health checks as the rest of the gateway
sees them: which endpoint a check decides, and what `show events` says of
the endpoints.

Registered into run.py's list by register(test)."""

import json

from harness import (Env, Registry, appliance, check, ctl_cmd, docs, free_port, gateway, poll, service_entry,
                     virtual_service)

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
