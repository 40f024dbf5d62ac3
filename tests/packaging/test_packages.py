#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""`make package-test`: install the .deb on this machine and run what it installed,
then purge it; inspect the .rpm and install it into a scratch root.

Run as root on Debian (dpkg, rpm). systemd need not be running: the installed
binary is started by hand, as the unit would start it, on a copy of the installed
configuration moved to loopback ports and the test upstream.

    python3 tests/packaging/test_packages.py [--build build]

Prints one line per check and a final `N passed, N failed`; exit status 1 when
a check failed.
"""

import argparse
import glob
import grp
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

PASSED = 0
FAILED = 0


def check(name, ok, detail=""):
    global PASSED, FAILED
    if ok:
        PASSED += 1
        print(f"ok    {name}")
    else:
        FAILED += 1
        print(f"FAIL  {name}" + (f": {detail}" if detail else ""))
    sys.stdout.flush()
    return ok


def run(cmd, timeout=60, **kw):
    """Runs cmd (a list); returns (rc, stdout+stderr)."""
    try:
        p = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           timeout=timeout, text=True, **kw)
        return p.returncode, p.stdout
    except subprocess.TimeoutExpired as e:
        return 124, f"timed out after {timeout} s: {e.output or ''}"
    except OSError as e:
        return 127, str(e)


def free_port(addr="127.0.0.1"):
    s = socket.socket()
    s.bind((addr, 0))
    port = s.getsockname()[1]
    s.close()
    return port


def http_get(url, timeout=2.0):
    """Returns (status, headers, body) or (None, None, error text)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return r.status, r.headers, r.read().decode(errors="replace")
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode(errors="replace")
    except Exception as e:  # noqa: BLE001 - any failure is "not yet"
        return None, None, str(e)


def wait_for(pred, timeout, step=0.1):
    end = time.monotonic() + timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() >= end:
            return v
        time.sleep(step)


def mode_of(path):
    st = os.lstat(path)
    return stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid


def user_exists(name):
    try:
        pwd.getpwnam(name)
        return True
    except KeyError:
        return False


def group_exists(name):
    try:
        grp.getgrnam(name)
        return True
    except KeyError:
        return False


def children(pid):
    rc, out = run(["ps", "-o", "pid=,user=", "--ppid", str(pid)])
    rows = []
    for line in out.splitlines():
        parts = line.split()
        if len(parts) == 2:
            rows.append((int(parts[0]), parts[1]))
    return rows


DEB_FILES = {
    # path: (mode, conffile)
    "/usr/sbin/isthmus": (0o755, False),
    "/usr/sbin/isthmusctl": (0o755, False),
    "/lib/systemd/system/isthmus.service": (0o644, False),
    "/etc/isthmus/isthmus.yaml": (0o644, True),
    "/etc/default/isthmus": (0o644, True),
    "/etc/logrotate.d/isthmus": (0o644, True),
    "/usr/share/man/man8/isthmus.8.gz": (0o644, False),
    "/usr/share/man/man8/isthmusctl.8.gz": (0o644, False),
    "/usr/share/man/man5/isthmus.yaml.5.gz": (0o644, False),
    "/usr/share/doc/isthmus/copyright": (0o644, False),
    "/usr/share/doc/isthmus/changelog.Debian.gz": (0o644, False),
}
MANS = [p for p in DEB_FILES if "/man/" in p]
WANTS = "/etc/systemd/system/multi-user.target.wants/isthmus.service"


def test_config(src, tmp, port, admin_port, up_port):
    """The installed configuration moved to loopback: each substitution must
    apply exactly once, so that a change to the packaged file shows here."""
    text = open(src).read()
    subs = [
        (r"(?m)^(  workers:) auto$", r"\1 2"),
        (r"(?m)^(  controlSocket:) /run/isthmus/isthmus\.sock$", rf"\1 {tmp}/run/isthmus/isthmus.sock"),
        (r"(?m)^(  pidFile:) /run/isthmus/isthmus\.pid$", rf"\1 {tmp}/run/isthmus/isthmus.pid"),
        (r"(?m)^(    address:) 127\.0\.0\.1:9901$", rf"\1 127.0.0.1:{admin_port}"),
        (r"(?m)^(  listenAddress:) 0\.0\.0\.0$", r"\1 127.0.0.1"),
        (r"(?m)^(    drain:) 30s", r"\1 2s"),
        (r"(?m)^(    interval:) 5s$", r"\1 200ms"),
        (r"(?m)^(      number:) 80$", rf"\1 {port}"),
        (r"(?m)^(    targetPort:) 8080$", rf"\1 {up_port}"),
        (r"(?m)^(  - address:) 192\.0\.2\.10$", r"\1 127.0.0.1"),
        (r"(?m)^(  - address:) 192\.0\.2\.20$", r"\1 127.0.0.2"),
    ]
    for pat, rep in subs:
        text, n = re.subn(pat, rep, text)
        if n != 1:
            raise RuntimeError(f"test config: {pat!r} matched {n} times in {src}")
    path = os.path.join(tmp, "isthmus.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


def unit_sandbox():
    """What of the installed unit's sandbox can be had without systemd: its
    CapabilityBoundingSet and NoNewPrivileges, through setpriv(1)."""
    unit = open("/lib/systemd/system/isthmus.service").read()
    m = re.search(r"(?m)^CapabilityBoundingSet=(.*)$", unit)
    if not shutil.which("setpriv") or not m:
        print("note: setpriv or CapabilityBoundingSet missing: the master runs with every capability")
        return []
    caps = ",".join("+" + c.lower().removeprefix("cap_") for c in m.group(1).split())
    cmd = ["setpriv", "--bounding-set", "-all," + caps]
    if re.search(r"(?m)^NoNewPrivileges=yes$", unit):
        cmd.append("--no-new-privs")
    return cmd + ["--"]


def runtime_directory(tmp):
    """{tmp}/run/isthmus as systemd makes /run/isthmus for the installed unit
    (RuntimeDirectory=, RuntimeDirectoryMode=, default 0755; root:root, the
    unit having no User=)."""
    unit = open("/lib/systemd/system/isthmus.service").read()
    m = re.search(r"(?m)^RuntimeDirectoryMode=([0-7]+)$", unit)
    path = os.path.join(tmp, "run", "isthmus")
    os.makedirs(path)
    os.chmod(os.path.dirname(path), 0o755)
    os.chmod(path, int(m.group(1), 8) if m else 0o755)
    return path


def run_installed(build, tmp):
    """Starts /usr/sbin/isthmus on a loopback copy of the installed file, proxies,
    reloads, reopens the access log, stops it."""
    port, admin_port, up_port = free_port(), free_port(), free_port()
    try:
        cfg = test_config("/etc/isthmus/isthmus.yaml", tmp, port, admin_port, up_port)
    except RuntimeError as e:
        check("test copy of the installed configuration", False, str(e))
        return
    rc, out = run(["/usr/sbin/isthmus", "-c", "-f", cfg])
    check("isthmus -c on the loopback copy", rc == 0, out.strip())

    upstream = os.path.join(build, "tests", "upstream")
    up = subprocess.Popen([upstream, "--listen", f"127.0.0.1:{up_port}", "--listen",
                           f"127.0.0.2:{up_port}", "--name", "pkg-up"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    errlog = open(os.path.join(tmp, "isthmus.stderr"), "w+")
    rundir = runtime_directory(tmp)
    master = subprocess.Popen(unit_sandbox() + ["/usr/sbin/isthmus", "-f", cfg],
                              stdout=subprocess.DEVNULL, stderr=errlog,
                              preexec_fn=lambda: os.umask(0o027))
    sock = os.path.join(rundir, "isthmus.sock")
    ctl = ["/usr/sbin/isthmusctl", "-s", sock]
    alog = "/var/log/isthmus/access.log"
    try:
        ready = wait_for(lambda: http_get(f"http://127.0.0.1:{admin_port}/healthz/ready")[0] == 200
                         or master.poll() is not None, 15)
        check("master started, /healthz/ready 200", ready and master.poll() is None,
              f"exit {master.poll()}")
        if master.poll() is not None:
            return

        def proxied():
            st, _, body = http_get(f"http://127.0.0.1:{port}/echo")
            return st == 200

        check("request proxied to the test upstream (200)", wait_for(proxied, 15),
              str(http_get(f"http://127.0.0.1:{port}/echo")[:1]))

        kids = children(master.pid)
        check("master runs as root", pwd.getpwuid(os.stat(f"/proc/{master.pid}").st_uid).pw_name
              == "root")
        status = open(f"/proc/{master.pid}/status").read()
        bnd = re.search(r"CapBnd:\s*([0-9a-f]+)", status).group(1)
        check("master under the unit's capability bounding set" if unit_sandbox()
              else "master capability bounding set (not restricted here)",
              not unit_sandbox() or int(bnd, 16) < (1 << 30), f"CapBnd {bnd}")
        check("workers run as user isthmus", len(kids) == 2 and all(u == "isthmus" for _, u in kids),
              str(kids))

        has_line = wait_for(lambda: os.path.exists(alog) and os.path.getsize(alog) > 0, 5)
        check("access log written by the workers into /var/log/isthmus", has_line)
        if has_line:
            m, uid, gid = mode_of(alog)
            check("access log isthmus:adm 0640",
                  (pwd.getpwuid(uid).pw_name, grp.getgrgid(gid).gr_name, m)
                  == ("isthmus", "adm", 0o640),
                  f"{pwd.getpwuid(uid).pw_name}:{grp.getgrgid(gid).gr_name} {m:o}")

        m, uid, gid = mode_of(sock)
        check("control socket root:isthmus 0660",
              (pwd.getpwuid(uid).pw_name, grp.getgrgid(gid).gr_name, m & 0o777)
              == ("root", "isthmus", 0o660),
              f"{pwd.getpwuid(uid).pw_name}:{grp.getgrgid(gid).gr_name} {m:o}")
        rc, out = run(ctl + ["show", "info"], timeout=10)
        check("isthmusctl show info", rc == 0, out.strip())
        # The operators are the members of group isthmus: the runtime directory
        # (root:root) lets them through to the socket, whose mode keeps the
        # others out.
        m, uid, gid = mode_of(rundir)
        check("runtime directory root:root, searchable by the isthmus group",
              uid == 0 and gid == 0 and m & 0o011 == 0o011, f"{uid}:{gid} {m:o}")
        # An operator is a member of group isthmus (daemon here, given the
        # group alone); the workers' user, though of the group, is refused.
        rc, out = run(["setpriv", "--reuid=daemon", "--regid=isthmus", "--clear-groups"] + ctl
                      + ["show", "info"], timeout=10)
        check("a member of group isthmus reaches the control socket (daemon with group isthmus: "
              "isthmusctl show info)", rc == 0 and "generation" in out, f"rc {rc}: {out.strip()}")
        rc, out = run(["runuser", "-u", "isthmus", "--"] + ctl + ["show", "info"], timeout=10)
        check("the workers' user isthmus does not (exit 3)", rc == 3 and "generation" not in out,
              f"rc {rc}: {out.strip()}")
        rc, out = run(["runuser", "-u", "nobody", "--"] + ctl + ["show", "info"], timeout=10)
        check("a user outside group isthmus does not (exit 3)", rc == 3, f"rc {rc}: {out.strip()}")
        rc, out = run(ctl + ["reload"], timeout=20)
        check("isthmusctl reload publishes a generation", rc == 0 and "published" in out,
              f"rc {rc}: {out.strip()}")

        good = open(cfg).read()
        with open(cfg, "w") as f:
            f.write(good.replace("kind: Gateway", "kind: Gateway\nbogusField: 1", 1))
        rc, out = run(ctl + ["reload"], timeout=20)
        check("isthmusctl reload refuses a broken file (exit 1)", rc == 1 and "refused" in out,
              f"rc {rc}: {out.strip()}")
        rc, _ = run(["/usr/sbin/isthmus", "-c", "-f", cfg])
        check("isthmus -c (ExecReload's check) refuses it too", rc == 1)
        with open(cfg, "w") as f:
            f.write(good)
        check("still serving after the refused reload", wait_for(proxied, 5))

        pidf = os.path.join(rundir, "isthmus.pid")
        check("pid file (spec.pidFile) holds the master's pid",
              os.path.exists(pidf) and open(pidf).read() == f"{master.pid}\n",
              open(pidf).read() if os.path.exists(pidf) else "missing")

        # Rotation: the installed logrotate policy (forced, own state file, its
        # pid file moved as the configuration is) where logrotate is installed,
        # else a plain move and SIGUSR1 by hand. Without systemd running the
        # unit, the policy's postrotate signals the master through the pid
        # file, and the workers write anew.
        through_systemd = os.path.isdir("/run/systemd/system") and run(
            ["systemctl", "--quiet", "is-active", "isthmus.service"])[0] == 0
        if has_line:
            size_before = os.path.getsize(alog)
            if shutil.which("logrotate"):
                policy = open("/etc/logrotate.d/isthmus").read()
                policy, n = re.subn(r"(?m)^(\s*pidfile=)/run/isthmus/isthmus\.pid$", rf"\g<1>{pidf}", policy)
                check("the logrotate policy names the packaged pid file once", n == 1, str(n))
                with open(os.path.join(tmp, "logrotate.conf"), "w") as f:
                    f.write(policy)
                rc, out = run(["logrotate", "-f", "-s", os.path.join(tmp, "logrotate.state"),
                               os.path.join(tmp, "logrotate.conf")])
                check("logrotate -f /etc/logrotate.d/isthmus rotates access.log",
                      rc == 0 and os.path.exists(alog + ".1")
                      # >=: a worker may still flush a buffered line before the move
                      and os.path.getsize(alog + ".1") >= size_before, out.strip())
                if os.path.exists(alog):
                    m, uid, gid = mode_of(alog)
                    check("logrotate created the new file isthmus:adm 0640",
                          (pwd.getpwuid(uid).pw_name, grp.getgrgid(gid).gr_name, m)
                          == ("isthmus", "adm", 0o640), f"{uid}:{gid} {m:o}")
            else:
                os.rename(alog, alog + ".1")
            if through_systemd or not shutil.which("logrotate"):
                master.send_signal(signal.SIGUSR1)
                what = "SIGUSR1 by hand"
            else:
                what = "postrotate's SIGUSR1 through the pid file"

            def reopened():
                http_get(f"http://127.0.0.1:{port}/echo")
                return os.path.exists(alog) and os.path.getsize(alog) > 0
            check(f"{what}: the workers reopen the access log", wait_for(reopened, 5))

        master.send_signal(signal.SIGTERM)
        try:
            rc = master.wait(timeout=20)
            check("SIGTERM: graceful stop, exit 0", rc == 0, f"exit {rc}")
        except subprocess.TimeoutExpired:
            check("SIGTERM: graceful stop within 20 s", False)
        left = [p for p, _ in kids if os.path.exists(f"/proc/{p}")]
        check("no worker left after the stop", not left, str(left))
        check("the pid file is removed at the stop", not os.path.exists(pidf))
    finally:
        for p in (master, up):
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        for pid, _ in children(master.pid) if master.poll() is None else []:
            os.kill(pid, signal.SIGKILL)
        errlog.seek(0)
        tail = errlog.read()[-2000:]
        errlog.close()
        if FAILED:
            print("---- isthmus stderr (tail) ----\n" + tail + "\n----")


OPERATOR_DIR = "/etc/isthmus/mesh"


def test_deb(build, tmp):
    debs = sorted(glob.glob(os.path.join(build, "isthmus_*.deb")))
    if not check("a .deb in " + build, len(debs) == 1, str(debs)):
        return
    deb = debs[0]
    # Never touch an existing installation: the test installs and purges the
    # package, which would take its configuration (/etc/isthmus) and its user.
    rc, out = run(["dpkg-query", "-W", "-f=${Status}", "isthmus"])
    if rc == 0 and "not-installed" not in out:
        print("SKIP  .deb install test: an isthmus package is installed on this machine "
              f"({out.strip()}); installing and purging the test package would replace it and "
              "its /etc/isthmus. Run make package-test where isthmus is not installed.")
        return
    if user_exists("isthmus") or group_exists("isthmus"):
        print("SKIP  .deb install test: a user or group isthmus exists on this machine; the "
              "test package's purge would remove it. Run make package-test where it does not.")
        return

    rc, out = run(["dpkg", "-i", deb], timeout=300)
    if not check("dpkg -i " + os.path.basename(deb), rc == 0, out.strip()):
        return
    try:
        rc, conffiles = run(["dpkg-query", "-W", "-f=${Conffiles}\n", "isthmus"])
        for path, (mode, conf) in DEB_FILES.items():
            if not os.path.exists(path):
                check(f"installed {path}", False, "missing")
                continue
            m, uid, gid = mode_of(path)
            check(f"installed {path} root:root {mode:o}", (m, uid, gid) == (mode, 0, 0),
                  f"{uid}:{gid} {m:o}")
            if conf:
                check(f"{path} is a conffile", f" {path} " in conffiles + " ", conffiles)
        for b in ("/usr/sbin/isthmus", "/usr/sbin/isthmusctl"):
            rc, out = run(["readelf", "-S", b])
            check(f"{b} stripped (no .debug_info, no .symtab)",
                  rc == 0 and ".debug_info" not in out and ".symtab" not in out)

        check("system user isthmus", user_exists("isthmus"))
        check("system group isthmus", group_exists("isthmus"))
        if user_exists("isthmus"):
            pw = pwd.getpwnam("isthmus")
            check("user isthmus: system uid, /nonexistent, nologin, group isthmus",
                  pw.pw_uid < 1000 and pw.pw_dir == "/nonexistent"
                  and pw.pw_shell.endswith("/nologin")
                  and grp.getgrgid(pw.pw_gid).gr_name == "isthmus",
                  str(pw))
        if os.path.isdir("/var/log/isthmus"):
            m, uid, gid = mode_of("/var/log/isthmus")
            check("/var/log/isthmus isthmus:adm 2750",
                  (pwd.getpwuid(uid).pw_name, grp.getgrgid(gid).gr_name, m)
                  == ("isthmus", "adm", 0o2750), f"{uid}:{gid} {m:o}")
        else:
            check("/var/log/isthmus created", False)

        rc, out = run(["/usr/sbin/isthmus", "-c", "-f", "/etc/isthmus/isthmus.yaml"])
        check("isthmus -c -f /etc/isthmus/isthmus.yaml", rc == 0, out.strip())
        rc, out = run(["/usr/sbin/isthmus", "-v"])
        check("isthmus -v", rc == 0 and out.startswith("isthmus "), out.strip())

        if shutil.which("systemd-analyze"):
            rc, out = run(["systemd-analyze", "verify", "--man=no",
                           "/lib/systemd/system/isthmus.service"])
            check("systemd-analyze verify isthmus.service", rc == 0 and not out.strip(),
                  out.strip())
        else:
            print("note: systemd-analyze not installed (Debian package systemd): the unit is not verified")
        if shutil.which("deb-systemd-helper"):
            check("unit enabled (multi-user.target.wants link)", os.path.islink(WANTS))
        # systemd is not running here: what an upgrade does is read, not run.
        post = open("/var/lib/dpkg/info/isthmus.postinst").read()
        check("postinst upgrades a running master with SIGUSR2 (from 0.3.0 on), else restarts",
              "kill -USR2" in post and "--compare-versions \"$2\" ge 0.3.0" in post
              and "action=restart" in post, post[-800:])

        for man in MANS:
            rc, out = run(["gzip", "-t", man])
            check(f"gzip -t {man}", rc == 0, out.strip())
            # groff's warnings go to stderr; the page itself is discarded.
            p = subprocess.run(["man", "--warnings", "-E", "UTF-8", "-l", man],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               timeout=60, env=dict(os.environ, LC_ALL="C.UTF-8", MANWIDTH="80",
                                                    MANPAGER="cat", PAGER="cat"))
            check(f"man -l {os.path.basename(man)}: renders without warnings",
                  p.returncode == 0 and not p.stderr.strip(), p.stderr.strip()[:300])
            # A control character in the source (a "\f" a script once wrote
            # as a form feed) renders as text, and groff says nothing.
            rc, out = run(["sh", "-c", f"zcat {man} | grep -c -P '[\\x00-\\x08\\x0b-\\x1f]'"])
            check(f"{os.path.basename(man)}: no control characters in the source", out.strip() == "0",
                  f"{out.strip()} lines hold one")

        if shutil.which("logrotate"):
            rc, out = run(["logrotate", "-d", "/etc/logrotate.d/isthmus"])
            check("logrotate -d /etc/logrotate.d/isthmus", rc == 0 and "error" not in out.lower(),
                  out.strip()[-500:])

        run_installed(build, tmp)
        # What an operator put in /etc/isthmus (keys, as docs/tls.md
        # shows) outlives a purge; dpkg's own copies do not.
        os.makedirs(OPERATOR_DIR, exist_ok=True)
        with open(os.path.join(OPERATOR_DIR, "key.pem"), "w") as f:
            f.write("operator's\n")
        with open("/etc/isthmus/isthmus.yaml.dpkg-old", "w") as f:
            f.write("dpkg's\n")
    finally:
        rc, out = run(["dpkg", "--purge", "isthmus"], timeout=300)
    check("dpkg --purge isthmus", rc == 0, out.strip())
    check("dpkg --purge says nothing of deluser", "deluser" not in out, out.strip())
    check("package gone (dpkg-query)", run(["dpkg-query", "-W", "isthmus"])[0] != 0
          or "not-installed" in run(["dpkg-query", "-W", "-f=${Status}", "isthmus"])[1])
    kept = os.path.exists(os.path.join(OPERATOR_DIR, "key.pem"))
    check("purge kept the operator's file in /etc/isthmus, removed the conffiles' .dpkg-old",
          kept and not os.path.lexists("/etc/isthmus/isthmus.yaml.dpkg-old")
          and not os.path.lexists("/etc/isthmus/isthmus.yaml"),
          str(os.listdir("/etc/isthmus")) if os.path.isdir("/etc/isthmus") else "no /etc/isthmus")
    shutil.rmtree("/etc/isthmus", ignore_errors=True)
    left = [p for p in list(DEB_FILES) + ["/etc/isthmus", "/var/log/isthmus", WANTS]
            if os.path.lexists(p)]
    check("purge removed the files, /etc/isthmus, /var/log/isthmus and the unit link",
          not left, str(left))
    check("purge removed user isthmus", not user_exists("isthmus"))
    check("purge removed group isthmus", not group_exists("isthmus"))


RPM_FILES = {
    "/usr/sbin/isthmus": 0o755,
    "/usr/sbin/isthmusctl": 0o755,
    "/usr/lib/systemd/system/isthmus.service": 0o644,
    "/etc/isthmus/isthmus.yaml": 0o644,
    "/etc/sysconfig/isthmus": 0o644,
    "/etc/logrotate.d/isthmus": 0o644,
    "/usr/share/man/man8/isthmus.8.gz": 0o644,
    "/usr/share/man/man8/isthmusctl.8.gz": 0o644,
    "/usr/share/man/man5/isthmus.yaml.5.gz": 0o644,
    "/usr/share/doc/isthmus/copyright": 0o644,
    "/var/log/isthmus": 0o2750,
}
RPM_CONFIG = {"/etc/isthmus/isthmus.yaml", "/etc/sysconfig/isthmus", "/etc/logrotate.d/isthmus"}


def test_rpm(build, tmp):
    rpms = sorted(glob.glob(os.path.join(build, "isthmus-*.rpm")))
    if not check("an .rpm in " + build, len(rpms) == 1, str(rpms)):
        return
    pkg = rpms[0]
    if not check("rpm is installed", shutil.which("rpm") is not None):
        return
    rc, out = run(["rpm", "-qlp", pkg])
    listed = set(out.split())
    check("rpm -qlp lists every file", rc == 0 and set(RPM_FILES) <= listed,
          str(sorted(set(RPM_FILES) - listed)))
    # Owned, so that an erase removes them (rpm makes a file's parents
    # without owning them).
    docdirs = {"/usr/share/doc/isthmus", "/usr/share/doc/isthmus/examples"}
    check("rpm -qlp owns the doc directories", docdirs <= listed, str(sorted(docdirs - listed)))
    rc, out = run(["rpm", "-qcp", pkg])
    check("rpm -qcp: exactly the three config files", rc == 0 and set(out.split()) == RPM_CONFIG,
          out.strip())
    rc, out = run(["rpm", "-qp", "--qf", "[%{FILEFLAGS:fflags} %{FILENAMES}\n]", pkg])
    noreplace = {line.split()[1] for line in out.splitlines()
                 if len(line.split()) == 2 and "c" in line.split()[0] and "n" in line.split()[0]}
    check("config files are %config(noreplace)", RPM_CONFIG <= noreplace, out.strip())
    rc, out = run(["rpm", "-qp", "--scripts", pkg])
    check("%pre creates the group and user",
          "groupadd -r isthmus" in out and "useradd -r" in out, out[:300])
    check("%post/%preun/%postun scriptlets present",
          all(s in out for s in ("postinstall", "preuninstall", "postuninstall")))
    check("%posttrans upgrades the running master (SIGUSR2), %postun restarts nothing",
          "posttrans" in out and "--signal=SIGUSR2" in out and "try-restart" not in out
          and "systemctl restart" not in out, out[-600:])

    # The scratch root knows the users the package names (rpm resolves them
    # there); without them rpm installs root-owned and drops the setgid bit.
    root = os.path.join(tmp, "rpmroot")
    os.makedirs(root + "/etc")
    with open(root + "/etc/passwd", "w") as f:
        f.write("root:x:0:0:root:/root:/bin/sh\nisthmus:x:990:990::/nonexistent:/sbin/nologin\n")
    with open(root + "/etc/group", "w") as f:
        f.write("root:x:0:\nadm:x:4:\nisthmus:x:990:\n")
    rc, out = run(["rpm", "--root", root, "--initdb"])
    check("rpm --initdb in a scratch root", rc == 0, out.strip())
    rc, out = run(["rpm", "--root", root, "-i", "--nodeps", "--noscripts", pkg], timeout=120)
    check("rpm -i --nodeps --noscripts into the scratch root", rc == 0, out.strip())
    for path, mode in RPM_FILES.items():
        full = root + path
        if not os.path.lexists(full):
            check(f"rpm root: {path}", False, "missing")
            continue
        m, uid, gid = mode_of(full)
        owner = (990, 4) if path == "/var/log/isthmus" else (0, 0)
        check(f"rpm root: {path} mode {mode:o}, owner {owner[0]}:{owner[1]}",
              (m, uid, gid) == (mode, *owner), f"{uid}:{gid} {m:o}")
    rc, out = run(["rpm", "--root", root, "-qc", "isthmus"])
    check("rpm --root -qc isthmus: the config files", rc == 0 and set(out.split()) == RPM_CONFIG,
          out.strip())
    # For another root: its user and log directory are not this machine's.
    rc, out = run([root + "/usr/sbin/isthmus", "-c", "--portable", "-f", root + "/etc/isthmus/isthmus.yaml"])
    check("the rpm's isthmus checks the rpm's config (--portable)", rc == 0, out.strip())


def test_install(build, tmp):
    """make install puts what the packages install under DESTDIR/PREFIX, the
    unit pointing at PREFIX's binaries."""
    root = os.path.join(tmp, "inst")
    rc, out = run(["make", "-s", "install", f"BUILD={build}", f"DESTDIR={root}",
                   "PREFIX=/usr/local"], timeout=300)
    if not check("make install DESTDIR=... PREFIX=/usr/local", rc == 0, out.strip()):
        return
    for path in ("usr/local/sbin/isthmus", "usr/local/sbin/isthmusctl",
                 "usr/local/lib/systemd/system/isthmus.service", "etc/logrotate.d/isthmus",
                 "etc/default/isthmus", "etc/isthmus/isthmus.yaml.example",
                 "usr/local/share/man/man8/isthmus.8", "usr/local/share/man/man8/isthmusctl.8",
                 "usr/local/share/man/man5/isthmus.yaml.5", "usr/local/share/doc/isthmus/LICENSE",
                 "usr/local/share/doc/isthmus/docs/configuration.md"):
        check(f"make install: {path}", os.path.isfile(os.path.join(root, path)))
    with open(os.path.join(root, "usr/local/lib/systemd/system/isthmus.service")) as f:
        unit = f.read()
    check("make install: the unit starts PREFIX's isthmus",
          "ExecStart=/usr/local/sbin/isthmus " in unit and "/usr/sbin/" not in unit)
    check("make install: no isthmus.yaml over the administrator's",
          not os.path.exists(os.path.join(root, "etc/isthmus/isthmus.yaml")))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build")
    ap.add_argument("--only", choices=["deb", "rpm"])
    args = ap.parse_args()
    if os.geteuid() != 0:
        print("package-test: run as root (it installs and purges the .deb)")
        print("0 passed, 1 failed")
        return 1
    tmp = tempfile.mkdtemp(prefix="isthmus-pkgtest.")
    os.chmod(tmp, 0o755)
    try:
        if args.only is None:
            test_install(args.build, tmp)
        if args.only in (None, "deb"):
            test_deb(args.build, tmp)
        if args.only in (None, "rpm"):
            test_rpm(args.build, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{PASSED} passed, {FAILED} failed")
    return 1 if FAILED else 0


if __name__ == "__main__":
    sys.exit(main())
