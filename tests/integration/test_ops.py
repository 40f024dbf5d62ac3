"""Integration tests of operating features: the access log (JSON lines, reason
codes, reopening on SIGUSR1 for logrotate).

Registered into run.py's list by register(test)."""

import json
import os
import signal

from harness import Registry, appliance, check, docs, free_port, gateway, poll, service_entry, virtual_service

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
