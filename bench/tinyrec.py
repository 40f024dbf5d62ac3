# SPDX-License-Identifier: Apache-2.0
"""bench/tinyrec.py — what a request body sent as tiny TLS records costs a proxy.

Usage: python3 tinyrec.py PORT RECORDS [SIZE]
One TLS connection to 127.0.0.1:PORT sends a POST /records whose body is
RECORDS records of SIZE (1) bytes each, written 2,000 records at a time, and
reads the response (the bench's nginx reads the whole body before it answers
/records). Prints "seconds status": the time from the first body byte to the
response, and its status. The caller measures the proxy's CPU around it
(bench/tls.sh: µs per record). Bounded: 120 s."""

import re
import socket
import ssl
import sys
import time


def bio_session(port, ctx, sni="localhost", timeout=120):
    """A TLS client over a socket through memory BIOs, handshaken: (socket,
    SSLObject, incoming BIO, outgoing BIO); what the object writes goes out
    only when the caller sends it, so records can be sent together (also
    test_tls.py's)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname=sni)
    while True:
        try:
            obj.do_handshake()
            break
        except ssl.SSLWantReadError:
            sock.sendall(out.read())
            d = sock.recv(65536)
            if not d:
                sock.close()
                raise EOFError("the handshake ended")
            inc.write(d)
    sock.sendall(out.read())
    return sock, obj, inc, out


def read_until(sock, obj, inc, pattern, deadline):
    """The plaintext the session reads until it matches pattern (bytes, a
    regular expression), the peer closes, or time.monotonic() passes
    deadline: what came (also test_tls.py's)."""
    got = b""
    while not re.search(pattern, got) and time.monotonic() < deadline:
        try:
            got += obj.read(65536)
            continue
        except ssl.SSLWantReadError:
            pass
        d = sock.recv(65536)
        if not d:
            break
        inc.write(d)
    return got


def main():
    port, records = int(sys.argv[1]), int(sys.argv[2])
    size = int(sys.argv[3]) if len(sys.argv) > 3 else 1
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(["http/1.1"])
    sock, obj, inc, out = bio_session(port, ctx)
    obj.write(f"POST /records HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {records * size}\r\n\r\n".encode())
    sock.sendall(out.read())
    chunk = b"x" * size
    t0 = time.monotonic()
    left = records
    while left > 0:
        for _ in range(min(2000, left)):
            obj.write(chunk)
        left -= min(2000, left)
        sock.sendall(out.read())
    got = read_until(sock, obj, inc, rb"\r\n\r\n", t0 + 120)
    status = got.split(b" ", 2)[1].decode() if got.startswith(b"HTTP/1.1 ") else "none"
    print(f"{time.monotonic() - t0:.3f} {status}", flush=True)
    sock.close()


if __name__ == "__main__":
    main()
