# SPDX-License-Identifier: Apache-2.0
"""bench/hsburst.py — what a burst of TLS handshakes costs the connections already open.

Usage: python3 hsburst.py PORT CA_FILE [BURST [ROUNDS]]
One TLS keep-alive connection to 127.0.0.1:PORT is opened first; then, each round,
BURST (200) TCP connections each send a ClientHello at once (made beforehand,
TLS 1.3, no session to resume: every one a full handshake), and right after
them the open connection sends a GET. Prints one line a round:
"get_ms all_ms answered_before_get": the GET's latency, the time until every
ClientHello had its answer, and how many had one when the GET's response was
complete. Bounded: 60 s a round at most. Called by bench/tls.sh."""

import re
import selectors
import socket
import ssl
import sys
import time


def done(r):
    m = re.search(rb"(?i)\r\ncontent-length: (\d+)", r)
    return b"\r\n\r\n" in r and m is not None and len(r) >= r.index(b"\r\n\r\n") + 4 + int(m.group(1))


def main():
    port, ca = int(sys.argv[1]), sys.argv[2]
    burst_n = int(sys.argv[3]) if len(sys.argv) > 3 else 200
    rounds = int(sys.argv[4]) if len(sys.argv) > 4 else 3
    hctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    hctx.check_hostname = False
    hctx.verify_mode = ssl.CERT_NONE
    hellos = []
    for _ in range(burst_n):
        out = ssl.MemoryBIO()
        obj = hctx.wrap_bio(ssl.MemoryBIO(), out, server_hostname="localhost")
        try:
            obj.do_handshake()
        except ssl.SSLWantReadError:
            pass
        hellos.append(out.read())
    ctx = ssl.create_default_context(cafile=ca)
    ctx.check_hostname = False
    ctx.set_alpn_protocols(["http/1.1"])
    by = ctx.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10), server_hostname="localhost")
    by.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    get = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode()
    for _ in range(rounds):
        by.setblocking(True)
        by.sendall(get)  # warm: the request goes straight upstream
        r = b""
        while not done(r):
            d = by.recv(65536)
            if not d:
                sys.exit("hsburst: the open connection closed")
            r += d
        burst = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(burst_n)]
        t0 = time.monotonic()
        for s, h in zip(burst, hellos):
            s.sendall(h)
        tg = time.monotonic()
        by.sendall(get)
        sel = selectors.DefaultSelector()
        for i, s in enumerate(burst):
            s.setblocking(False)
            sel.register(s, selectors.EVENT_READ, i)
        by.setblocking(False)
        sel.register(by, selectors.EVENT_READ, -1)
        n, resp, tget, tall, before = 0, b"", None, None, None
        deadline = t0 + 60
        while (n < burst_n or tget is None) and time.monotonic() < deadline:
            for key, _ in sorted(sel.select(timeout=1), key=lambda e: e[0].data == -1):
                if key.data >= 0:
                    key.fileobj.recv(65536)
                    n += 1
                    sel.unregister(key.fileobj)
                    if n == burst_n:
                        tall = time.monotonic()
                    continue
                try:
                    d = by.recv(65536)
                except ssl.SSLWantReadError:
                    continue
                if not d:
                    sys.exit("hsburst: the open connection closed during the burst")
                resp += d
                if done(resp):
                    tget, before = time.monotonic(), n
                    sel.unregister(by)
        sel.close()
        for s in burst:
            s.close()
        if tget is None or tall is None:
            sys.exit(f"hsburst: round not complete in 60 s ({n} of {burst_n} answered)")
        print(f"{(tget - tg) * 1000:.2f} {(tall - t0) * 1000:.2f} {before}", flush=True)
    by.close()


main()
