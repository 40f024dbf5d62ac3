#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""Open many keep-alive HTTP/1.1 connections to one proxy and keep them idle.

Used by bench/bench.sh (HTTP/1.1) and bench/h2.sh (--h2: HTTP/2 with prior knowledge) for the
idle-connection memory measurement:

  1. open --conns connections to --host:--port, spreading the source
     addresses over 127.0.0.1 .. 127.0.0.<--sources> (bind with
     IP_BIND_ADDRESS_NO_PORT, so each source address has its own ephemeral
     port range), at most --window connections in progress at a time;
  2. on each one send one "GET / HTTP/1.1" and read the whole response
     (Content-Length or chunked), keeping the connection open; with --h2, send
     the HTTP/2 preface, an empty SETTINGS frame and one GET on stream 1,
     acknowledge the server's SETTINGS and read until stream 1 ends;
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


H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_DATA, H2_HEADERS, H2_SETTINGS, H2_GOAWAY = 0, 1, 4, 7
H2_END_STREAM, H2_ACK, H2_PADDED, H2_PRIORITY = 0x1, 0x1, 0x8, 0x20
# HPACK static table entries for :status (RFC 7541 appendix A)
H2_STATUS = {8: 200, 9: 204, 10: 206, 11: 304, 12: 400, 13: 404, 14: 500}


def h2_frame(ftype, flags, stream, payload=b""):
    return (len(payload).to_bytes(3, "big") + bytes([ftype, flags])
            + stream.to_bytes(4, "big") + payload)


def h2_request(authority):
    """Preface, empty SETTINGS, HEADERS of GET / on stream 1 (HPACK without Huffman)."""
    a = authority.encode()
    block = bytes([0x82, 0x86, 0x84, 0x41, len(a)]) + a  # GET, http, /, :authority (indexed name)
    return H2_PREFACE + h2_frame(H2_SETTINGS, 0, 0) + h2_frame(H2_HEADERS, 0x5, 1, block)


def h2_status(block):
    """:status from the first field of a response header block (servers send it first),
    after any dynamic table size updates (RFC 7541 6.3: 001xxxxx, a 5-bit prefix integer)."""
    while block and block[0] & 0xE0 == 0x20:
        i = 1
        if block[0] & 0x1F == 0x1F:
            while i < len(block) and block[i] & 0x80:
                i += 1
            i += 1
        block = block[i:]
    b = block[0] if block else 0
    if b & 0x80:
        return H2_STATUS.get(b & 0x7F, -1)
    if b in (0x48, 0x08, 0x18) and len(block) >= 5 and block[1] == 3:  # literal, name :status
        return int(block[2:5])
    return -1


def h2_response_complete(c):
    """Consumes the whole frames in c.buf: queues a SETTINGS ACK in c.out for the server's
    SETTINGS, sets c.status from stream 1's HEADERS; True once stream 1 has ended."""
    while len(c.buf) >= 9:
        n = int.from_bytes(c.buf[:3], "big")
        if len(c.buf) < 9 + n:
            return False
        ftype, flags = c.buf[3], c.buf[4]
        stream = int.from_bytes(c.buf[5:9], "big") & 0x7FFFFFFF
        payload, c.buf = c.buf[9:9 + n], c.buf[9 + n:]
        if ftype == H2_SETTINGS and not flags & H2_ACK:
            c.out += h2_frame(H2_SETTINGS, H2_ACK, 0)
        elif ftype == H2_GOAWAY:
            c.status = -2
            return True
        elif stream == 1 and ftype in (H2_HEADERS, H2_DATA):
            if ftype == H2_HEADERS and c.status == 0:
                pad = payload[0] if flags & H2_PADDED else 0
                start = (1 if flags & H2_PADDED else 0) + (5 if flags & H2_PRIORITY else 0)
                c.status = h2_status(payload[start:len(payload) - pad])
            if flags & H2_END_STREAM:
                return True
    return False


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
    ap.add_argument("--h2", action="store_true", help="HTTP/2 with prior knowledge (h2c)")
    args = ap.parse_args()
    if args.conns < 1 or not 1 <= args.sources <= 254 or args.window < 1:
        ap.error("bad --conns/--sources/--window")

    stop = {"flag": False}

    def on_signal(_signo, _frame):
        stop["flag"] = True

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    if args.h2:
        request = h2_request("%s:%d" % (args.host, args.port))
    else:
        request = ("GET / HTTP/1.1\r\nHost: %s:%d\r\nUser-Agent: isthmus-bench-idle\r\n\r\n"
                   % (args.host, args.port)).encode()
    complete = h2_response_complete if args.h2 else response_complete
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
                done = complete(c)
                if c.out:  # the SETTINGS ACK (9 bytes: a fresh socket's buffer takes it)
                    try:
                        c.sock.send(c.out)
                    except OSError as e:
                        fail(c, "send: " + errno.errorcode.get(e.errno, str(e.errno)))
                        continue
                    c.out = b""
                if done:
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
