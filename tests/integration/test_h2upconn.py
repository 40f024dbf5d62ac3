# SPDX-License-Identifier: Apache-2.0
"""Integration tests of HTTP/2 upstream connections that never become usable:
the connection's own connect timeout (the cluster's connectTimeout, counted
from when the connection started connecting, as Envoy's) closes it and fails
its streams as a connect failure, and a later stream opens a new connection
instead of joining the stuck one. Two ways of being stuck: a TLS handshake the
upstream never answers (the TCP connection is made), and a SYN that is never
answered (the upstream's accept queue is full).

Registered into run.py's list by register(test)."""

import socket
import struct
import threading
import time

from harness import (Registry, TestFailure, appliance, check, docs, free_port, gateway, http_get, poll,
                     service_entry_protocol, virtual_service)
from test_retries import fill_accept_queue, listener, shut_listener

SVC = "stuck.test.internal"
UP_ADDR = "127.0.0.2"
CONNECT_S = 1.0  # the cluster's connectTimeout
# How long after its connect timeout a stuck connection may still be open: the
# worker's tick (100 ms) and a slow (sanitizer) build's scheduling.
SLACK_S = 2.0
_test = Registry()
register = _test.register


class SilentUpstream:
    """A loopback TCP listener on UP_ADDR that never sends a byte. Accepting:
    each connection's accept and EOF times (monotonic) go to self.conns
    [{"accepted": t, "eof": t or None}], what it is sent is read and dropped.
    Not accepting (syn_drop): the accept queue is kept full, so that the
    kernel drops every new SYN and connects to it stay in SYN-SENT."""

    def __init__(self, syn_drop=False):
        self.conns = []
        self.lock = threading.Lock()
        self.stop = False
        self.fillers = []
        self.ls, self.port = listener(UP_ADDR, 0 if syn_drop else 16)
        self.t = None
        if syn_drop:
            self.fill_queue()
            return
        self.ls.settimeout(0.2)
        self.t = threading.Thread(target=self.accept_loop, daemon=True)
        self.t.start()

    def close(self):
        self.stop = True
        shut_listener(self.t, self.fillers, self.ls)

    def fill_queue(self):
        """The accept queue kept full (fill_accept_queue)."""
        self.fillers += fill_accept_queue(UP_ADDR, self.port)
        # The first is in the queue once it is established.
        first = self.fillers[0].getsockname()[1]
        poll(lambda: first not in syn_sent_ports(self.port), 5, what="the accept queue to fill")

    def filler_ports(self):
        return {s.getsockname()[1] for s in self.fillers}

    def accept_loop(self):
        while not self.stop:
            try:
                c, _ = self.ls.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            rec = {"accepted": time.monotonic(), "eof": None}
            with self.lock:
                self.conns.append(rec)
            threading.Thread(target=self.drain, args=(c, rec), daemon=True).start()

    def drain(self, c, rec):
        c.settimeout(0.2)
        try:
            while not self.stop:
                try:
                    if not c.recv(65536):
                        break
                except socket.timeout:
                    continue
        except OSError:
            pass  # a reset is an end too
        finally:
            rec["eof"] = time.monotonic()
            c.close()

    def n_conns(self):
        with self.lock:
            return len(self.conns)


def syn_sent_ports(port, addr=UP_ADDR):
    """Local ports of the sockets in SYN-SENT towards addr:port (IPv4)."""
    rem = "%08X:%04X" % (struct.unpack("=I", socket.inet_aton(addr))[0], port)
    out = set()
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if fields[2] == rem and fields[3] == "02":  # TCP_SYN_SENT
                out.add(int(fields[1].split(":")[1], 16))
    return out


def stuck_gateway(env, port, protocol, tls):
    """One worker, everything to SVC (one endpoint, UP_ADDR:port, spoken to over
    HTTP/2: protocol HTTP2 or GRPC), connectTimeout CONNECT_S, no retries (one
    connection per request)."""
    gw = free_port()
    tls_yaml = f"    tls: {{mode: SIMPLE, sni: {SVC}}}\n" if tls else ""
    dr = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: dr}\n"
          f"spec:\n  host: {SVC}\n  trafficPolicy:\n    connectionPool:\n"
          f"      tcp: {{connectTimeout: {int(CONNECT_S * 1000)}ms}}\n{tls_yaml}")
    conf = env.write("isthmus.yaml", docs(
        appliance(env, workers=1, timeouts={"upstreamResponse": "20s", "upstreamConnect": "20s"}),
        gateway(gw),
        virtual_service("vs", ["*"], f"  - route: [{{destination: {{host: {SVC}}}}}]\n"
                                     "    retries: {attempts: 0}\n"),
        service_entry_protocol("svc", SVC, [{"address": UP_ADDR, "port": port}], protocol),
        dr))
    env.start_gateway(conf, gw)
    return gw


class Request:
    """A GET through the gateway in a thread of its own: .status once done."""

    def __init__(self, gw, path):
        self.status = None
        self.error = None
        self.t0 = time.monotonic()
        self.took = None
        self.t = threading.Thread(target=self.run, args=(gw, path), daemon=True)
        self.t.start()

    def run(self, gw, path):
        try:
            self.status = http_get(gw, path, host=SVC, timeout=15).status
        except OSError as e:
            self.error = e
        self.took = time.monotonic() - self.t0

    def wait(self):
        self.t.join(20)
        check(not self.t.is_alive(), "a request through the gateway got no answer in 20 s")
        return self.status if self.error is None else f"error {self.error!r}"


def bounded(cond, timeout):
    """poll(cond, timeout) as a truth value: whether cond held in time."""
    try:
        return poll(cond, max(timeout, 0.1))
    except TestFailure:
        return None


@_test
def h2_upstream_stuck_tls_connect_closed(env):
    """An HTTP/2 upstream connection whose TLS handshake is never answered is
    closed at the cluster's connectTimeout (the upstream sees it end), its
    stream answered 503 (connect failure); the next request opens a new
    connection instead of joining the stuck one. (The connection lived on,
    taking every new stream, until the kernel gave up on it.)"""
    up = SilentUpstream()
    try:
        gw = stuck_gateway(env, up.port, "HTTP2", tls=True)
        problems = []
        reqs = []
        for i in (1, 2):
            r = Request(gw, f"/stuck{i}")
            reqs.append(r)
            status = r.wait()
            if status != 503:
                problems.append(f"request {i}: {status}, want 503 (connect timeout)")
            elif r.took < CONNECT_S * 0.9:
                problems.append(f"request {i}: 503 after {r.took:.2f} s, before the connect timeout")
            if up.n_conns() != i:
                problems.append(f"request {i}: the upstream has seen {up.n_conns()} connections, want {i}"
                                + (" (the request joined the stuck connection)" if up.n_conns() < i else ""))
        for n, rec in enumerate(list(up.conns), 1):
            # Its request was sent before the connection was made; the
            # upstream's accept (a thread of this test's) may come later on a
            # busy machine, so the close is timed from the request.
            made = reqs[n - 1].t0 if n <= len(reqs) else rec["accepted"]
            if not bounded(lambda: rec["eof"] is not None,
                           CONNECT_S + SLACK_S - (time.monotonic() - rec["accepted"])):
                problems.append(f"connection {n}: still open {time.monotonic() - rec['accepted']:.1f} s "
                                f"after it was made (connect timeout {CONNECT_S} s)")
            elif rec["eof"] - made < CONNECT_S * 0.9:
                problems.append(f"connection {n}: closed {rec['eof'] - made:.2f} s after its request was "
                                f"sent, before its connect timeout")
        check(not problems, "; ".join(problems))
    finally:
        up.close()


@_test
def h2_upstream_stuck_syn_connect_closed(env):
    """An HTTP/2 (gRPC port, prior knowledge) upstream connection whose SYN is
    never answered is given up at the cluster's connectTimeout: its socket
    leaves SYN-SENT, and the next request makes a new connection instead of
    joining the stuck one. (The socket stayed in SYN-SENT for the kernel's SYN
    retries, minutes, with every new stream queued on it.)"""
    up = SilentUpstream(syn_drop=True)
    try:
        fillers = up.filler_ports()
        gw = stuck_gateway(env, up.port, "GRPC", tls=False)
        problems = []
        seen = set()
        for i in (1, 2):
            r = Request(gw, f"/stuck{i}")
            mine = bounded(lambda: syn_sent_ports(up.port) - fillers - seen, CONNECT_S * 0.8) or set()
            status = r.wait()
            if not mine:
                problems.append(f"request {i}: no new connect to the upstream while it waited"
                                + (" (it joined the stuck connection)" if seen else ""))
            if status != 503:
                problems.append(f"request {i}: {status}, want 503 (connect timeout)")
            seen |= mine
        for port in sorted(seen):
            if not bounded(lambda: port not in syn_sent_ports(up.port), SLACK_S):
                problems.append(f"the connect from local port {port} is still in SYN-SENT (connect timeout "
                                f"{CONNECT_S} s, the last request started {time.monotonic() - r.t0:.1f} s ago)")
        check(not problems, "; ".join(problems))
    finally:
        up.close()
