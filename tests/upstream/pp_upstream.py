#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A test backend that requires the PROXY protocol (v1 or v2) on every
connection, as HAProxy's `accept-proxy` or nginx's `proxy_protocol` do, and
tells what the header said.

Python standard library only.

usage: pp_upstream.py --listen ADDR:PORT [--mode http|tcp] [--log FILE]

Prints "listening on ADDR:PORT" once it listens (port 0: the kernel's choice).

Every connection must start with a PROXY header; one that does not (or a bad
one) is logged and closed without an answer. The header gives the connection:
  {"conn": N, "version": 1|2, "command": "PROXY"|"LOCAL"|"UNKNOWN",
   "src": ADDR, "sport": PORT, "dst": ADDR, "dport": PORT}
(no addresses for LOCAL and UNKNOWN; conn counts the connections from 1).

--mode http (the default): HTTP/1.1 requests (a body delimited by
content-length), each answered 200 with that object as JSON plus "path" and
"requests" (this connection's so far), keep-alive unless the request says
close.
--mode tcp: the object as one JSON line at once (the server speaks first),
then every byte received is sent back.

--log FILE: one JSON line per event, flushed as it happens:
  {"event": "open", ...the connection's object}
  {"event": "close", "conn": N}
  {"event": "refused", "why": TEXT, "head": HEX of what came first}
"""

import argparse
import ipaddress
import json
import socket
import struct
import sys
import threading

V1_MAX = 107
V2_SIG = b"\r\n\r\n\x00\r\nQUIT\n"
TIMEOUT_S = 60


class Refused(Exception):
    pass


class Log:
    def __init__(self, path):
        self.f = open(path, "a") if path else None
        self.lock = threading.Lock()

    def write(self, **event):
        if self.f is None:
            return
        with self.lock:
            self.f.write(json.dumps(event) + "\n")
            self.f.flush()


def read_exact(sock, n, buf):
    """buf (a bytearray) filled to at least n bytes from sock."""
    while len(buf) < n:
        d = sock.recv(4096)
        if not d:
            raise Refused(f"closed after {len(buf)} bytes")
        buf += d


def parse_v1(sock, buf):
    while b"\r\n" not in buf[:V1_MAX]:
        if len(buf) >= V1_MAX:
            raise Refused("v1 line too long")
        d = sock.recv(4096)
        if not d:
            raise Refused("closed inside the v1 line")
        buf += d
    end = buf.index(b"\r\n")
    line = bytes(buf[:end]).decode("ascii", "replace")
    del buf[:end + 2]
    f = line.split(" ")
    if f[:2] == ["PROXY", "UNKNOWN"]:
        return {"version": 1, "command": "UNKNOWN"}
    if len(f) != 6 or f[0] != "PROXY" or f[1] not in ("TCP4", "TCP6"):
        raise Refused(f"bad v1 line {line!r}")
    want = 4 if f[1] == "TCP4" else 6
    try:
        src, dst = ipaddress.ip_address(f[2]), ipaddress.ip_address(f[3])
        sport, dport = int(f[4]), int(f[5])
    except ValueError:
        raise Refused(f"bad v1 line {line!r}")
    if src.version != want or dst.version != want or not (0 <= sport < 65536 and 0 <= dport < 65536):
        raise Refused(f"bad v1 line {line!r}")
    return {"version": 1, "command": "PROXY", "src": str(src), "sport": sport, "dst": str(dst), "dport": dport}


def parse_v2(sock, buf):
    read_exact(sock, 16, buf)
    if bytes(buf[:12]) != V2_SIG or buf[12] >> 4 != 2 or (buf[12] & 0xF) > 1:
        raise Refused("bad v2 signature or version")
    cmd, fam, length = buf[12] & 0xF, buf[13], struct.unpack("!H", buf[14:16])[0]
    read_exact(sock, 16 + length, buf)
    body = bytes(buf[16:16 + length])
    del buf[:16 + length]
    if cmd == 0:
        return {"version": 2, "command": "LOCAL", "family": fam, "length": length}
    if fam == 0x11 and length >= 12:
        src, dst = ipaddress.IPv4Address(body[0:4]), ipaddress.IPv4Address(body[4:8])
        sport, dport = struct.unpack("!HH", body[8:12])
    elif fam == 0x21 and length >= 36:
        src, dst = ipaddress.IPv6Address(body[0:16]), ipaddress.IPv6Address(body[16:32])
        sport, dport = struct.unpack("!HH", body[32:36])
    else:
        raise Refused(f"v2 PROXY of family {fam:#x}, length {length}")
    return {"version": 2, "command": "PROXY", "src": str(src), "sport": sport, "dst": str(dst),
            "dport": dport, "tlvs": length - (12 if fam == 0x11 else 36)}


def read_header(sock, buf):
    read_exact(sock, 1, buf)
    if buf[0:1] == b"P":
        read_exact(sock, 6, buf)
        if bytes(buf[:6]) != b"PROXY ":
            raise Refused("neither v1 nor v2")
        return parse_v1(sock, buf)
    if buf[0:1] == b"\r":
        return parse_v2(sock, buf)
    raise Refused("neither v1 nor v2")


def serve_http(sock, buf, info):
    requests = 0
    while True:
        while b"\r\n\r\n" not in buf:
            d = sock.recv(65536)
            if not d:
                return
            buf += d
        end = buf.index(b"\r\n\r\n")
        head = bytes(buf[:end]).decode("latin-1")
        del buf[:end + 4]
        lines = head.split("\r\n")
        parts = lines[0].split(" ")
        fields = {}
        for l in lines[1:]:
            k, _, v = l.partition(":")
            fields[k.strip().lower()] = v.strip()
        length = int(fields.get("content-length", "0") or 0)
        read_exact(sock, length, buf)
        del buf[:length]
        requests += 1
        body = json.dumps({**info, "path": parts[1] if len(parts) > 1 else "", "requests": requests}).encode()
        close = fields.get("connection", "").lower() == "close"
        sock.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                     + f"content-length: {len(body)}\r\n".encode()
                     + (b"connection: close\r\n" if close else b"") + b"\r\n" + body)
        if close:
            return


def serve_tcp(sock, buf, info):
    sock.sendall(json.dumps(info).encode() + b"\n")
    if buf:
        sock.sendall(bytes(buf))
    while True:
        d = sock.recv(65536)
        if not d:
            return
        sock.sendall(d)


class Server:
    def __init__(self, args):
        self.mode = args.mode
        self.log = Log(args.log)
        self.count = 0
        self.lock = threading.Lock()

    def handle(self, sock):
        buf = bytearray()
        with self.lock:
            self.count += 1
            conn = self.count
        try:
            sock.settimeout(TIMEOUT_S)
            try:
                info = {"conn": conn, **read_header(sock, buf)}
            except (Refused, socket.timeout, OSError) as e:
                self.log.write(event="refused", conn=conn, why=str(e), head=bytes(buf[:64]).hex())
                return
            self.log.write(event="open", **info)
            try:
                (serve_http if self.mode == "http" else serve_tcp)(sock, buf, info)
            except (Refused, socket.timeout, OSError, ValueError):
                pass
            self.log.write(event="close", conn=conn)
        finally:
            sock.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--mode", choices=("http", "tcp"), default="http")
    ap.add_argument("--log", default=None)
    args = ap.parse_args()
    host, _, port = args.listen.rpartition(":")
    host = host.strip("[]")
    fam = socket.AF_INET6 if ":" in host else socket.AF_INET
    ls = socket.socket(fam, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, int(port)))
    ls.listen(256)
    print(f"listening on {args.listen.rpartition(':')[0]}:{ls.getsockname()[1]}", flush=True)
    srv = Server(args)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=srv.handle, args=(c,), daemon=True).start()


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
