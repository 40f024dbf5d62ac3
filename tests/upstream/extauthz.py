#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A test external authorizer: an HTTP service as Envoy's ext_authz filter
(HTTP service) calls it, and as Istio's envoyExtAuthzHttp provider names it,
for tests/integration/test_extauthz.py.

Python standard library only (run it with any python3; the tests use
harness.DEBIAN_PYTHON like the other tools).

usage: extauthz.py --listen ADDR:PORT --record FILE [--name NAME]
                   [--cert CRT --key KEY]

Prints "listening on ADDR:PORT" once it listens (port 0: the kernel's
choice). HTTP/1.1 with keep-alive; any method, any path; over TLS with
--cert (the handshake in the connection's thread).

Every check request is first recorded: one JSON line appended to FILE (and
flushed) before anything is answered, {"method", "path" (the request target
as received), "version", "headers": [[lowercased name, value], ...] in the
order received, "content_length" (the field's value, or null), "chunked",
"body_len" (body bytes read), "body_sha256" (hex, of all of them),
"body_b64" (base64 of the first 64 KiB of them), "peer" ("ADDR:PORT"),
"tls" (bool), "name"}.

Then it answers by the fields the check request carries (so the gateway must
pass them: the tests list them in includeRequestHeadersInCheck):
  x-authz: allow    200, empty body
  x-authz: deny     x-authz-status (default 403), body x-authz-body (default
                    empty)
  x-authz: error    x-authz-status (default 500), body "authorizer error\\n"
  x-authz: slow     waits x-authz-delay milliseconds (default 3000), then as
                    allow
  x-authz: reset    no answer: the connection is reset (RST)
  x-authz: close    no answer: the connection is closed (FIN)
  anything else     403, body "no verdict\\n" (a test that forgot to ask)
and for every verdict that answers:
  x-authz-set: NAME=VALUE|NAME=VALUE...   fields added to the answer, in
                    that order (a name may repeat; a value may hold ";")
  x-authz-delay: MS the answer waits that long first (at most 5000)
  x-authz-pad: N    N bytes of "z" appended to the body (at most 1 MiB)
  x-authz-chunked: 1  the body is sent chunked (Transfer-Encoding: chunked,
                    no Content-Length), in pieces of at most 1000 bytes
Every answer also has `x-authz-name: NAME`, and a Content-Length unless
chunked. With `connection=close` among the x-authz-set fields, the
connection is closed after the answer.
"""

import argparse
import base64
import hashlib
import socket
import ssl
import struct
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from testserve import Recorder, bounded_int

MAX_DELAY_MS = 5000
MAX_PAD = 1 << 20
MAX_BODY = 64 << 20  # a check request's body is read and kept, up to this
KEEP_B64 = 64 << 10  # the body's first bytes recorded as they came (base64)
IDLE_S = 120  # a connection silent that long is closed (a leak guard, not a test knob)


def parse_set(text):
    """x-authz-set: "a=1|b=2" → [("a", "1"), ("b", "2")]."""
    out = []
    for item in (text or "").split("|"):
        name, eq, value = item.partition("=")
        name = name.strip()
        if eq and name:
            out.append((name, value.strip()))
    return out


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "extauthz"
    timeout = IDLE_S

    def version_string(self):
        return self.server_version

    def setup(self):
        if isinstance(self.request, ssl.SSLSocket):
            self.request.settimeout(10)
            self.request.do_handshake()
        super().setup()

    def __getattr__(self, name):
        # Any method: do_GET, do_POST, do_DELETE, do_FOO ...
        if name.startswith("do_"):
            return self.check
        raise AttributeError(name)

    def log_message(self, fmt, *args):
        sys.stderr.write("%s %s\n" % (self.address_string(), fmt % args))

    def read_body(self):
        """Reads the request body (Content-Length or chunked); its bytes."""
        te = self.headers.get("Transfer-Encoding") or ""
        parts, n = [], 0
        if "chunked" in te.lower():
            while True:
                line = self.rfile.readline(65537)
                if not line:
                    raise ConnectionError("EOF in a chunked body")
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                d = self.rfile.read(size)
                parts.append(d)
                n += len(d)
                self.rfile.readline(3)
                if n > MAX_BODY:
                    raise ConnectionError("body too long")
        cl = self.headers.get("Content-Length")
        if cl is None:
            return b""
        left = int(cl)
        if left > MAX_BODY:
            raise ConnectionError("body too long")
        while left > 0:
            d = self.rfile.read(min(left, 65536))
            if not d:
                raise ConnectionError("EOF in the body")
            parts.append(d)
            left -= len(d)
        return b"".join(parts)

    def check(self):
        chunked = "chunked" in (self.headers.get("Transfer-Encoding") or "").lower()
        got = self.read_body()
        host, port = self.client_address[:2]
        self.server.recorder.add({
            "method": self.command, "path": self.path, "version": self.request_version,
            "headers": [[k.lower(), v] for k, v in self.headers.items()],
            "content_length": self.headers.get("Content-Length"), "chunked": chunked,
            "body_len": len(got), "body_sha256": hashlib.sha256(got).hexdigest(),
            "body_b64": base64.b64encode(got[:KEEP_B64]).decode(),
            "peer": f"{host}:{port}", "tls": isinstance(self.connection, ssl.SSLSocket),
            "name": self.server.name})
        h = self.headers
        verdict = (h.get("x-authz") or "").strip()
        delay = bounded_int(h.get("x-authz-delay"), 0, 0, MAX_DELAY_MS)
        if verdict == "allow":
            status, body = 200, b""
        elif verdict == "deny":
            status, body = bounded_int(h.get("x-authz-status"), 403, 100, 599), (h.get("x-authz-body") or "").encode()
        elif verdict == "error":
            status, body = bounded_int(h.get("x-authz-status"), 500, 100, 599), b"authorizer error\n"
        elif verdict == "slow":
            status, body = 200, b""
            delay = bounded_int(h.get("x-authz-delay"), 3000, 0, MAX_DELAY_MS)
        elif verdict in ("reset", "close"):
            self.close_connection = True
            if verdict == "reset":
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()
            return
        else:
            status, body = 403, b"no verdict\n"
        body += b"z" * bounded_int(h.get("x-authz-pad"), 0, 0, MAX_PAD)
        answer_chunked = (h.get("x-authz-chunked") or "").strip() == "1"
        if delay:
            time.sleep(delay / 1000)
        try:
            self.send_response(status)
            self.send_header("x-authz-name", self.server.name)
            for k, v in parse_set(h.get("x-authz-set")):
                self.send_header(k, v)
            if answer_chunked:
                self.send_header("Transfer-Encoding", "chunked")
            else:
                self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command == "HEAD":
                pass
            elif answer_chunked:
                for i in range(0, len(body), 1000):
                    piece = body[i:i + 1000]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
            else:
                self.wfile.write(body)
            self.wfile.flush()
        except OSError:
            # The gateway gave up (its timeout) and closed the connection.
            self.close_connection = True

    def handle_one_request(self):
        try:
            super().handle_one_request()
        except (OSError, ValueError) as e:
            self.log_message("connection ends: %s", e)
            self.close_connection = True


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 256

    def handle_error(self, request, client_address):
        sys.stderr.write(f"{client_address}: error in a handler\n")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--record", required=True)
    ap.add_argument("--name", default="extauthz")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    args = ap.parse_args()
    host, _, port = args.listen.rpartition(":")
    srv = Server((host, int(port)), Handler)
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True, do_handshake_on_connect=False)
    srv.recorder = Recorder(args.record)
    srv.name = args.name
    open(args.record, "a").close()
    print(f"listening on {host}:{srv.server_address[1]}", flush=True)
    srv.serve_forever()


if __name__ == "__main__":
    main()
