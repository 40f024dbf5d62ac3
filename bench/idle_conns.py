#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Open many keep-alive HTTP/1.1 connections to one proxy and keep them idle.

Used by bench/bench.sh for the idle-connection memory measurement:

  1. open --conns connections to --host:--port, spreading the source
     addresses over 127.0.0.1 .. 127.0.0.<--sources> (bind with
     IP_BIND_ADDRESS_NO_PORT, so each source address has its own ephemeral
     port range), at most --window connections in progress at a time;
  2. on each one send one "GET / HTTP/1.1" and read the whole response
     (Content-Length or chunked), keeping the connection open;
  3. print one line "READY opened=N ok=N failed=N elapsed_s=T" (and write
     --ready-file if given), then hold every connection idle until SIGTERM or
     SIGINT arrives or --hold-max seconds have passed;
  4. on exit print "HOLD closed_by_peer=N still_open=N held_s=T".

A connection the proxy closes while it is held is counted in closed_by_peer.
Everything is bounded by --timeout (open phase) and --hold-max (hold phase).
Exit status: 0 when every connection got a 200, 1 otherwise, 2 on bad usage.
"""

import argparse
import errno
import os
import select
import signal
import socket
import sys
import time

IP_BIND_ADDRESS_NO_PORT = getattr(socket, "IP_BIND_ADDRESS_NO_PORT", 24)

ST_CONNECTING, ST_SENDING, ST_READING, ST_IDLE = range(4)


class Conn:
    __slots__ = ("sock", "state", "out", "buf", "need", "chunked", "status")

    def __init__(self, sock, request):
        self.sock = sock
        self.state = ST_CONNECTING
        self.out = request
        self.buf = b""
        self.need = None  # total bytes (headers + body) when Content-Length is known
        self.chunked = False
        self.status = 0


def response_complete(c):
    """True when c.buf holds one whole response; sets c.status."""
    hdr_end = c.buf.find(b"\r\n\r\n")
    if hdr_end < 0:
        return False
    if c.status == 0:
        head = c.buf[:hdr_end].decode("latin-1")
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        try:
            c.status = int(parts[1])
        except (IndexError, ValueError):
            c.status = -1
        clen = None
        for line in lines[1:]:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            if name == "content-length":
                clen = int(value.strip())
            elif name == "transfer-encoding" and "chunked" in value.lower():
                c.chunked = True
        if not c.chunked:
            c.need = hdr_end + 4 + (clen or 0)
    if c.chunked:
        return c.buf.endswith(b"0\r\n\r\n")
    return len(c.buf) >= c.need


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--conns", type=int, default=10000)
    ap.add_argument("--sources", type=int, default=9, help="source addresses 127.0.0.1..N")
    ap.add_argument("--window", type=int, default=64, help="connections in progress at once")
    ap.add_argument("--timeout", type=float, default=90.0, help="limit for the open phase, s")
    ap.add_argument("--hold-max", type=float, default=60.0, help="limit for the hold phase, s")
    ap.add_argument("--ready-file", default=None)
    args = ap.parse_args()
    if args.conns < 1 or not 1 <= args.sources <= 254 or args.window < 1:
        ap.error("bad --conns/--sources/--window")

    stop = {"flag": False}

    def on_signal(_signo, _frame):
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    request = ("GET / HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: isthmus-bench-idle\r\n\r\n"
               % (args.host, args.port)).encode()
    ep = select.epoll()
    conns = {}  # fd -> Conn
    opened = ok = failed = 0
    in_progress = 0
    failures = {}
    t0 = time.monotonic()
    deadline = t0 + args.timeout

    def fail(c, why):
        nonlocal failed, in_progress
        failed += 1
        in_progress -= 1
        failures[why] = failures.get(why, 0) + 1
        fd = c.sock.fileno()
        try:
            ep.unregister(fd)
        except OSError:
            pass
        del conns[fd]
        c.sock.close()

    while (ok + failed < args.conns) and not stop["flag"] and time.monotonic() < deadline:
        # Start new connections up to the window.
        while opened < args.conns and in_progress < args.window:
            src = "127.0.0.%d" % (1 + opened % args.sources)
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.setsockopt(socket.IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, 1)
            s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            s.setblocking(False)
            opened += 1
            in_progress += 1
            c = Conn(s, request)
            conns[s.fileno()] = c
            try:
                s.bind((src, 0))
                rc = s.connect_ex((args.host, args.port))
            except OSError as e:
                fail(c, "bind/connect: " + errno.errorcode.get(e.errno, str(e.errno)))
                continue
            if rc not in (0, errno.EINPROGRESS):
                fail(c, "connect: " + errno.errorcode.get(rc, str(rc)))
                continue
            ep.register(s.fileno(), select.EPOLLOUT)
        for fd, ev in ep.poll(0.5):
            c = conns.get(fd)
            if c is None or c.state == ST_IDLE:
                continue
            s = c.sock
            if c.state == ST_CONNECTING:
                err = s.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    fail(c, "connect: " + errno.errorcode.get(err, str(err)))
                    continue
                c.state = ST_SENDING
            if c.state == ST_SENDING:
                try:
                    n = s.send(c.out)
                except BlockingIOError:
                    continue
                except OSError as e:
                    fail(c, "send: " + errno.errorcode.get(e.errno, str(e.errno)))
                    continue
                c.out = c.out[n:]
                if c.out:
                    continue
                c.state = ST_READING
                ep.modify(fd, select.EPOLLIN)
                continue
            if c.state == ST_READING:
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError as e:
                    fail(c, "recv: " + errno.errorcode.get(e.errno, str(e.errno)))
                    continue
                if not data:
                    fail(c, "closed before response end")
                    continue
                c.buf += data
                if response_complete(c):
                    if c.status != 200:
                        fail(c, "status %d" % c.status)
                        continue
                    c.state = ST_IDLE
                    c.buf = b""
                    in_progress -= 1
                    ok += 1
                    # Stay registered for EPOLLIN: readable now means closed (or junk).
    elapsed = time.monotonic() - t0
    unfinished = args.conns - ok - failed
    if unfinished:
        failures["unfinished (timeout or signal)"] = unfinished
        failed += unfinished
        for fd, c in list(conns.items()):
            if c.state != ST_IDLE:
                try:
                    ep.unregister(fd)
                except OSError:
                    pass
                c.sock.close()
                del conns[fd]
    print("READY opened=%d ok=%d failed=%d elapsed_s=%.2f" % (opened, ok, failed, elapsed),
          flush=True)
    for why, n in sorted(failures.items()):
        print("FAIL %d %s" % (n, why), flush=True)
    if args.ready_file:
        with open(args.ready_file, "w") as f:
            f.write("%d %d\n" % (ok, failed))

    # Hold phase: keep everything idle, notice connections the proxy closes.
    closed = 0
    t1 = time.monotonic()
    hold_deadline = t1 + args.hold_max
    while not stop["flag"] and time.monotonic() < hold_deadline:
        try:
            events = ep.poll(0.5)
        except InterruptedError:
            continue
        for fd, _ev in events:
            c = conns.get(fd)
            if c is None:
                continue
            try:
                data = c.sock.recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
            if not data:
                closed += 1
                ep.unregister(fd)
                c.sock.close()
                del conns[fd]
    print("HOLD closed_by_peer=%d still_open=%d held_s=%.2f"
          % (closed, len(conns), time.monotonic() - t1), flush=True)
    for c in conns.values():
        c.sock.close()
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
