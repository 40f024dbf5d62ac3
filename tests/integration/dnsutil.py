# SPDX-License-Identifier: Apache-2.0
"""A DNS server for the integration tests: dnsmasq (Debian's dnsmasq-base) on a
loopback port, answering for one zone from a hosts file the test rewrites, and a
minimal DNS client (standard library only) to check it without isthmus.

    dns = Dnsmasq(env, ttl=2)          # started, listening on 127.0.0.1:dns.port
    dns.set("web.dns.test", ["127.0.0.2", "127.0.0.3"])   # A records (AAAA for IPv6)
    dns.remove("web.dns.test")         # NXDOMAIN from the next SIGHUP on
    dns.servfail("web.dns.test")       # SERVFAIL (forwarded to a responder that says so)
    dns.blackhole("web.dns.test")      # no answer at all for that name (a timeout)
    dns.stop(); dns.start()            # a dead server, then the same one back
    dns.queries("web.dns.test")        # what the query log says was asked

Every change rewrites the files and sends SIGHUP, which makes dnsmasq re-read the
hosts file and the servers file and empty its cache; set() and friends then wait
(bounded) until a query answers as asked, so a test never races the reload.

dnsmasq is authoritative-like for ZONE (`--local=/dns.test/`): a name of the zone
that is not in the hosts file is NXDOMAIN, a name with only IPv4 addresses has
no AAAA (NOERROR, no data) and vice versa. SERVFAIL: the name is moved out of
the hosts file and into `--servers-file` as `server=/NAME/127.0.0.1#PORT`, where
a thread of the test answers every query with SERVFAIL, which dnsmasq passes on
(a closed port would not do: dnsmasq then never answers, which blackhole() uses
for a timeout of one name; `server=/NAME/#` with no servers gives REFUSED). The
query log (`--log-queries=extra`) goes to a file of the test's directory. No
--pid-file: with --no-daemon dnsmasq does not write one; the harness has the pid. `--user=root
--group=root`: dnsmasq started as root would otherwise drop to its own user, which
cannot re-read the hosts file in the test's private (0700) directory on SIGHUP; as
another user the options are harmless.
"""

import os
import random
import re
import signal
import socket
import struct
import subprocess
import threading
import time

from harness import Skip, TestFailure, check, poll

DNSMASQ = os.environ.get("ISM_DNSMASQ", "/usr/sbin/dnsmasq")
ZONE = "dns.test"

PROBE = f"probe.{ZONE}"  # the name start() asks to see that dnsmasq answers
TYPE_A, TYPE_AAAA = 1, 28
RCODES = {0: "NOERROR", 1: "FORMERR", 2: "SERVFAIL", 3: "NXDOMAIN", 4: "NOTIMP", 5: "REFUSED"}


# --------------------------------------------------------------------------- a minimal DNS client


def _encode_name(name):
    out = b""
    for label in name.rstrip(".").split("."):
        b = label.encode("ascii")
        check(0 < len(b) < 64, f"bad DNS label in {name!r}")
        out += bytes([len(b)]) + b
    return out + b"\0"


def _skip_name(msg, off):
    """The offset just past the (possibly compressed) name at off."""
    while True:
        check(off < len(msg), "DNS answer: name runs past the end")
        n = msg[off]
        if n == 0:
            return off + 1
        if n & 0xC0 == 0xC0:
            return off + 2
        off += 1 + n


def query(port, name, qtype=TYPE_A, server="127.0.0.1", timeout=2.0):
    """One UDP query. Returns (rcode name, [(address, ttl)]) for the A or AAAA
    records of the answer section; raises socket.timeout when nothing answers."""
    qid = random.randrange(1 << 16)
    msg = struct.pack("!HHHHHH", qid, 0x0100, 1, 0, 0, 0) + _encode_name(name) + struct.pack("!HH", qtype, 1)
    family = socket.AF_INET6 if ":" in server else socket.AF_INET
    s = socket.socket(family, socket.SOCK_DGRAM)
    s.settimeout(timeout)
    try:
        s.sendto(msg, (server, port))
        deadline = time.monotonic() + timeout
        while True:
            s.settimeout(max(0.01, deadline - time.monotonic()))
            resp, _ = s.recvfrom(4096)
            if len(resp) >= 12 and struct.unpack("!H", resp[:2])[0] == qid:
                break
    finally:
        s.close()
    _, flags, qd, an, _, _ = struct.unpack("!HHHHHH", resp[:12])
    rcode = RCODES.get(flags & 0xF, str(flags & 0xF))
    off = 12
    for _ in range(qd):
        off = _skip_name(resp, off) + 4
    answers = []
    for _ in range(an):
        off = _skip_name(resp, off)
        rtype, _, ttl, rdlen = struct.unpack("!HHIH", resp[off:off + 10])
        off += 10
        rdata = resp[off:off + rdlen]
        off += rdlen
        if rtype == TYPE_A and rdlen == 4:
            answers.append((socket.inet_ntop(socket.AF_INET, rdata), ttl))
        elif rtype == TYPE_AAAA and rdlen == 16:
            answers.append((socket.inet_ntop(socket.AF_INET6, rdata), ttl))
    return rcode, answers


def addresses(port, name, timeout=2.0):
    """(rcode of the A query, sorted A + AAAA addresses of name)."""
    rc4, a4 = query(port, name, TYPE_A, timeout=timeout)
    rc6, a6 = query(port, name, TYPE_AAAA, timeout=timeout)
    rc = rc4 if rc4 != "NOERROR" else rc6
    return rc, sorted(a for a, _ in a4 + a6)


# --------------------------------------------------------------------------- ports


def free_udp_tcp_port(host="127.0.0.1"):
    """A port free for both UDP and TCP on host a moment ago (dnsmasq takes both)."""
    for _ in range(100):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            u.bind((host, 0))
            port = u.getsockname()[1]
            try:
                t.bind((host, port))
            except OSError:
                continue
            return port
        finally:
            u.close()
            t.close()
    raise TestFailure("no port free for both UDP and TCP")


def closed_udp_port(host="127.0.0.1"):
    """A UDP port nothing listens on (a moment ago): a datagram to it is refused."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((host, 0))
        return s.getsockname()[1]
    finally:
        s.close()


# --------------------------------------------------------------------------- dnsmasq


class UdpDns:
    """A DNS server on a loopback UDP port only (a TCP connection to the port is
    refused, as behind a firewall that lets DNS over UDP through alone),
    answering the A queries for records {name: [IPv4 addresses]} (NOERROR with
    no record for other types and names). An answer fits in 512 bytes, or in
    the query's EDNS payload size; one that does not is sent empty with TC set,
    for the client to ask again over TCP. Served by a daemon thread until
    env.close(); `asked` counts the queries by name."""

    def __init__(self, env, records, ttl=30):
        self.records = {k.lower(): v for k, v in records.items()}
        self.ttl = ttl
        self.asked = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()
        env.cleanups.append(self.close)

    def close(self):
        self._stop.set()
        self._thread.join(2)
        self.sock.close()

    def _answer(self, d):
        qid, flags, qd, _, _, ar = struct.unpack("!HHHHHH", d[:12])
        end = _skip_name(d, 12)
        labels, off = [], 12
        while d[off]:
            labels.append(d[off + 1:off + 1 + d[off]].decode("ascii", "replace"))
            off += 1 + d[off]
        qname = ".".join(labels).lower()
        qtype = struct.unpack("!H", d[end:end + 2])[0]
        question = d[12:end + 4]
        room = 512
        if ar and len(d) >= end + 4 + 11 and d[end + 4] == 0 and struct.unpack("!H", d[end + 5:end + 7])[0] == 41:
            room = max(512, struct.unpack("!H", d[end + 7:end + 9])[0])
        self.asked[qname] = self.asked.get(qname, 0) + 1
        addrs = self.records.get(qname, []) if qtype == TYPE_A else []
        rrs = b"".join(struct.pack("!HHHIH", 0xC00C, TYPE_A, 1, self.ttl, 4) + socket.inet_aton(a) for a in addrs)
        opt = struct.pack("!BHHIH", 0, 41, 1232, 0, 0) if room > 512 else b""
        bits = 0x8000 | 0x0400 | (flags & 0x0100) | 0x0080  # QR, AA, the query's RD, RA
        if 12 + len(question) + len(rrs) + len(opt) > room:
            bits, addrs, rrs = bits | 0x0200, [], b""  # TC
        return struct.pack("!HHHHHH", qid, bits, qd, len(addrs), 0, 1 if opt else 0) + question + rrs + opt

    def _serve(self):
        while not self._stop.is_set():
            try:
                d, peer = self.sock.recvfrom(4096)
            except socket.timeout:
                continue
            except OSError:
                return
            try:
                self.sock.sendto(self._answer(d), peer)
            except Exception:  # a short or odd query, or the socket closed: no answer
                pass


class Dnsmasq:
    """dnsmasq on 127.0.0.1:port for names under ZONE, from a hosts file of the
    test's directory. records: {name: [address, ...]} at start."""

    def __init__(self, env, ttl=2, records=None, port=None, tag="dns", start=True):
        if not os.access(DNSMASQ, os.X_OK):
            raise Skip(f"{DNSMASQ} not installed (Debian package dnsmasq-base; make deps)")
        self.env = env
        self.ttl = ttl
        self.tag = tag
        self.port = port or free_udp_tcp_port()
        self.hosts_path = env.path(f"{tag}.hosts")
        self.servers_path = env.path(f"{tag}.servers")
        self.log_path = env.path(f"{tag}.querylog")
        self.records = {n: list(a) for n, a in (records or {}).items()}
        self.failing = {}  # name -> the port its queries are forwarded to
        self._servfail_port = None
        self.proc = None
        self._write()
        if start:
            self.start()

    # ---- files

    def _write(self):
        lines = [f"{a} {n}\n" for n, addrs in sorted(self.records.items()) for a in addrs]
        self._atomic(self.hosts_path, "".join(lines))
        self._atomic(self.servers_path, "".join(f"server=/{n}/127.0.0.1#{p}\n" for n, p in sorted(self.failing.items())))

    @staticmethod
    def _atomic(path, text):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)

    # ---- process

    def argv(self):
        return [DNSMASQ, "--no-daemon", f"--port={self.port}", "--listen-address=127.0.0.1", "--bind-interfaces",
                "--no-resolv", "--no-hosts", f"--addn-hosts={self.hosts_path}", f"--local-ttl={self.ttl}",
                f"--servers-file={self.servers_path}", f"--local=/{ZONE}/",
                "--log-queries=extra", f"--log-facility={self.log_path}", "--user=root", "--group=root"]

    def start(self):
        """Starts dnsmasq (again, on the same port) and waits until it answers."""
        check(self.proc is None or not self.proc.alive(), "dnsmasq already running")
        self.proc = self.env.spawn(self.tag, self.argv())

        def up():
            check(self.proc.alive(), f"dnsmasq exited: {self.proc.log()}")
            query(self.port, PROBE, timeout=0.3)
            return True

        poll(up, 10, interval=0.05, what=f"dnsmasq to answer on 127.0.0.1:{self.port}")

    def stop(self):
        """A dead server: SIGTERM, wait for the exit; queries then go unanswered."""
        if self.proc is None or not self.proc.alive():
            return
        os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.p.wait(timeout=5)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.p.wait(timeout=5)

    def alive(self):
        return self.proc is not None and self.proc.alive()

    def hup(self):
        """Re-read the hosts and servers files, empty the cache (SIGHUP)."""
        check(self.alive(), "dnsmasq is not running")
        os.kill(self.proc.pid, signal.SIGHUP)

    # ---- records

    def _apply(self, name, want_rcode, want_addrs, wait):
        self._write()
        if not self.alive():
            return
        self.hup()
        if wait:
            poll(lambda: addresses(self.port, name, timeout=0.5) == (want_rcode, sorted(want_addrs)), 5,
                 interval=0.05, what=f"dnsmasq to answer {name} with {want_rcode} {want_addrs}")

    def set(self, name, addrs, wait=True):
        """name's records become addrs (A for IPv4, AAAA for IPv6)."""
        self.failing.pop(name, None)
        self.records[name] = list(addrs)
        self._apply(name, "NOERROR", addrs, wait)

    def remove(self, name, wait=True):
        """name becomes NXDOMAIN."""
        self.failing.pop(name, None)
        self.records.pop(name, None)
        self._apply(name, "NXDOMAIN", [], wait)

    def servfail(self, name, wait=True):
        """name's queries are forwarded to a responder that answers SERVFAIL,
        which dnsmasq passes on."""
        self.records.pop(name, None)
        self.failing[name] = self._servfail_responder()
        self._apply(name, "SERVFAIL", [], wait)

    def blackhole(self, name):
        """name's queries are forwarded to a closed UDP port: dnsmasq never
        answers them (a timeout for that name only)."""
        self.records.pop(name, None)
        self.failing[name] = closed_udp_port()
        self._write()
        if self.alive():
            self.hup()

            def silent():
                try:
                    query(self.port, name, timeout=0.3)
                    return False
                except socket.timeout:
                    return True

            poll(silent, 5, interval=0.05, what=f"dnsmasq to stop answering {name}")

    def _servfail_responder(self):
        """A UDP socket on 127.0.0.1 answering every query SERVFAIL, served by a
        daemon thread until env.close(). Returns its port."""
        if self._servfail_port is not None:
            return self._servfail_port
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.1", 0))
        s.settimeout(0.2)
        stop = threading.Event()

        def serve():
            while not stop.is_set():
                try:
                    d, peer = s.recvfrom(4096)
                except socket.timeout:
                    continue
                except OSError:
                    return
                if len(d) < 12:
                    continue
                qid, flags = struct.unpack("!HH", d[:4])
                # QR, the query's RD, RA, RCODE 2; the question echoed, no records.
                head = struct.pack("!HHHHHH", qid, 0x8000 | (flags & 0x0100) | 0x0080 | 2,
                                   struct.unpack("!H", d[4:6])[0], 0, 0, 0)
                try:
                    s.sendto(head + d[12:], peer)
                except OSError:
                    pass

        t = threading.Thread(target=serve, daemon=True)
        t.start()

        def close():
            stop.set()
            t.join(2)
            s.close()

        self.env.cleanups.append(close)
        self._servfail_port = s.getsockname()[1]
        return self._servfail_port

    # ---- the query log

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def queries(self, name=None):
        """The query lines of the log ("query[A] NAME from ADDR"), for name or all,
        as [(type, name)], less start()'s probes. The self-test's own queries are in
        it too: count those before and after, or use a name nobody else asks for."""
        out = []
        for m in re.finditer(r"query\[(\w+)\] (\S+) from \S+", self.log()):
            if m.group(2).lower() == PROBE:
                continue  # start()'s own
            if name is None or m.group(2).lower() == name.lower():
                out.append((m.group(1), m.group(2)))
        return out
