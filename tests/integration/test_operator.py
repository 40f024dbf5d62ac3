"""Integration tests of what a first-time operator meets: the two binaries'
options, the control socket's command list and JSON answers, the admin
listener's probes and metrics, the endpoint settings, the pid file.

Registered into run.py's list by register(test)."""

import json
import os
import re
import subprocess

from harness import (Registry, appliance, check, ctl_cmd, docs, free_port, gateway, poll,
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


def _start(env, n_endpoints=1, extra="", dr=""):
    """n upstreams (127.0.0.2, .3, ...) behind one route; returns (admin port, endpoint keys)."""
    eps = []
    for i in range(n_endpoints):
        addr = f"127.0.0.{2 + i}"
        name = chr(ord("a") + i)
        port = env.upstream([f"{addr}:0={name}"], name=name)[name]
        eps.append({"address": addr, "port": port})
    gw_port = free_port()
    aport = free_port()
    conf = env.write("isthmus.yaml", docs(*[d for d in (
        appliance(env, extra=f"  admin:\n    address: 127.0.0.1:{aport}\n" + extra), gateway(gw_port),
        virtual_service("op", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n"), dr,
        service_entry("op", SVC, eps)) if d]))
    env.start_gateway(conf, gw_port)
    poll(lambda: env.get("/").status == 200, 10, what="200 through the gateway")
    return aport, [f"{SVC}|{e['address']}:{e['port']}" for e in eps]


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
    for line in ("show info now", "reload please"):
        ans = ctl_cmd(sock, line)
        check(ans.startswith("error: usage: "), f"{line!r}: {ans!r}")
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
    up = env.upstream(["127.0.0.2:0=a"], name="a")["a"]
    gw_port, aport = free_port(), free_port()
    name = 'a"b\\\\c'  # YAML single-quoted: a"b\\c, two backslashes
    conf = env.write("isthmus.yaml", docs(
        appliance(env, extra=f"  admin:\n    address: 127.0.0.1:{aport}\n"), gateway(gw_port),
        virtual_service("op", ["*"], f"  - name: '{name}'\n    route: [{{destination: {{host: {SVC}}}}}]\n"),
        service_entry("op", SVC, [{"address": "127.0.0.2", "port": up}])))
    env.start_gateway(conf, gw_port)
    poll(lambda: env.get("/").status == 200, 10, what="200 through the gateway")
    samples, _ = _scrape(aport)
    routes = {l["route"] for l, _ in samples.get("isthmus_route_responses_total", [])}
    check(routes == {'a"b\\\\c'}, f"route labels read back as {routes}")
