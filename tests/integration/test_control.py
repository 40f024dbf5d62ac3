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

from harness import (Registry, Skip, TestFailure, appliance, check, ctl_cmd, docs, free_port, gateway,
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


def _start(env, extra="", workers=2, admin=True):
    """One upstream behind one route; returns the admin port (or None)."""
    ports = env.upstream(["127.0.0.2:0=a"], name="a")
    gw_port = free_port()
    aport = free_port() if admin else None
    if admin:
        extra = f"  admin:\n    address: 127.0.0.1:{aport}\n" + extra
    conf = env.write("isthmus.yaml", docs(
        appliance(env, workers=workers, extra=extra), gateway(gw_port),
        virtual_service("ctl", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n"),
        service_entry("ctl", SVC, [{"address": "127.0.0.2", "port": ports["a"]}])))
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
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
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
def events_worker_subject(env):
    """`show events` names a worker once: "worker 0 (pid N) killed by signal 9"."""
    _start(env)
    sock = env.path("ctl.sock")
    workers = json.loads(ctl_cmd(sock, "show workers json"))
    victim = workers[0]
    os.kill(victim["pid"], signal.SIGKILL)
    pat = re.compile(rf" worker {victim['index']} \(pid {victim['pid']}\) killed by signal 9; restart in \d+ ms$",
                     re.M)
    events = poll(lambda: (lambda e: e if pat.search(e) else None)(ctl_cmd(sock, "show events")), 5,
                  what="the worker's exit in 'show events'")
    check("worker worker" not in events, f"'show events' doubles the subject:\n{events}")
    doc = json.loads(ctl_cmd(sock, "show events json"))
    check(any(e["kind"] == "worker" and e["event"].startswith(f"{victim['index']} (pid {victim['pid']})")
              for e in doc), f"'show events json' lacks the worker's exit: {doc}")
