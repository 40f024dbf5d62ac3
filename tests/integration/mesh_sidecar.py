#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""A stand-in for an Istio sidecar's inbound listener, for the ISTIO_MUTUAL tests.

usage: mesh_sidecar.py --listen ADDR:PORT --cert CRT --key KEY --ca CA --log FILE [--sni NAME]... [--any-hello]

Each connection's ClientHello is read before the handshake (peeked, not
consumed) and its SNI and ALPN list are appended to FILE as a JSON line. Then,
as Envoy's inbound filter chains choose: a ClientHello that offers one of
Istio's HTTP mTLS ALPN values (istio-http/1.0, istio-http/1.1, istio-h2) and
names one of the --sni values (any, when none is given) gets mutual TLS
(a client certificate signed by CA is required) and HTTP/1.1; any other is
what a sidecar takes for plain application TLS, which this stand-in cannot
serve: it closes (--any-hello: every ClientHello gets mutual TLS). Requests
(GET, keep-alive) are answered 200 with the body
"sidecar sni=<SNI> alpn=<selected> peer=<client URI SAN>". A failed handshake
logs {"error": <OpenSSL reason>} (an alert the client sent shows here).
Stdlib only; one thread per connection; runs until killed."""

import argparse
import json
import socket
import ssl
import sys
import threading

MTLS_HTTP_ALPNS = ("istio-http/1.0", "istio-http/1.1", "istio-h2")


def peek_exact(sock, n):
    data = sock.recv(n, socket.MSG_PEEK | socket.MSG_WAITALL)
    if len(data) < n:
        raise EOFError("closed before the ClientHello was complete")
    return data


def client_hello(sock):
    """(SNI or None, [ALPN values]) of the ClientHello waiting on sock."""
    head = peek_exact(sock, 5)
    if head[0] != 0x16:
        raise ValueError("not a TLS handshake record")
    body = peek_exact(sock, 5 + int.from_bytes(head[3:5], "big"))[5:]
    if body[0] != 1:
        raise ValueError("not a ClientHello")
    i = 4 + 2 + 32  # handshake header, legacy_version, random
    i += 1 + body[i]  # session id
    i += 2 + int.from_bytes(body[i:i + 2], "big")  # cipher suites
    i += 1 + body[i]  # compression methods
    end = i + 2 + int.from_bytes(body[i:i + 2], "big")
    i += 2
    sni, alpn = None, []
    while i + 4 <= end:
        typ, ln = int.from_bytes(body[i:i + 2], "big"), int.from_bytes(body[i + 2:i + 4], "big")
        ext = body[i + 4:i + 4 + ln]
        if typ == 0 and len(ext) >= 5:  # server_name: list length, type 0, name length, name
            sni = ext[5:5 + int.from_bytes(ext[3:5], "big")].decode("ascii", "replace")
        elif typ == 16:  # ALPN: list length, then length-prefixed names
            j = 2
            while j < len(ext):
                alpn.append(ext[j + 1:j + 1 + ext[j]].decode("ascii", "replace"))
                j += 1 + ext[j]
        i += 4 + ln
    return sni, alpn


class Sidecar:
    def __init__(self, args):
        self.snis = set(args.sni or ())
        self.any_hello = args.any_hello
        self.log_path = args.log
        self.lock = threading.Lock()
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(args.cert, args.key)
        self.ctx.load_verify_locations(args.ca)
        self.ctx.verify_mode = ssl.CERT_REQUIRED
        # Istio's inbound mTLS chain offers these; the client's list decides.
        self.ctx.set_alpn_protocols(["istio-peer-exchange", "h2", "http/1.1"])

    def log(self, rec):
        with self.lock, open(self.log_path, "a") as f:
            f.write(json.dumps(rec) + "\n")

    def serve(self, raw):
        raw.settimeout(10)
        try:
            sni, alpn = client_hello(raw)
            mesh = self.any_hello or (any(a in MTLS_HTTP_ALPNS for a in alpn) and
                                      (not self.snis or sni in self.snis))
            self.log({"sni": sni, "alpn": alpn, "mesh": mesh})
            if not mesh:
                return
            try:
                tls = self.ctx.wrap_socket(raw, server_side=True)
            except ssl.SSLError as e:
                self.log({"error": e.reason or str(e)})
                return
            with tls:
                peer = [v for k, v in tls.getpeercert().get("subjectAltName", ()) if k == "URI"]
                body = f"sidecar sni={sni} alpn={tls.selected_alpn_protocol()} peer={','.join(peer)}\n".encode()
                buf = b""
                while True:  # keep-alive: GET requests, no bodies
                    while b"\r\n\r\n" not in buf:
                        chunk = tls.recv(4096)
                        if not chunk:
                            return
                        buf += chunk
                    buf = buf.split(b"\r\n\r\n", 1)[1]
                    tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        except (OSError, ValueError, EOFError) as e:
            self.log({"error": f"{type(e).__name__}: {e}"})
        finally:
            raw.close()


def main():
    ap = argparse.ArgumentParser()
    for opt in ("--listen", "--cert", "--key", "--ca", "--log"):
        ap.add_argument(opt, required=True)
    ap.add_argument("--sni", action="append")
    ap.add_argument("--any-hello", action="store_true")
    args = ap.parse_args()
    side = Sidecar(args)
    addr, port = args.listen.rsplit(":", 1)
    ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((addr, int(port)))
    ls.listen(64)
    print(f"listening on {addr}:{ls.getsockname()[1]}", flush=True)
    while True:
        conn, _ = ls.accept()
        threading.Thread(target=side.serve, args=(conn,), daemon=True).start()


if __name__ == "__main__":
    sys.exit(main())
