# SPDX-License-Identifier: Apache-2.0
"""What the test servers under tests/upstream share: a record of JSON lines
that a test reads back, a bounded integer from a request's instructions, and
a grpcio server's life (listen in plaintext or TLS, say "listening on
ADDR:PORT", serve until SIGTERM or SIGINT)."""

import json
import signal
import sys
import threading


class Recorder:
    """Appends one JSON object a line to the file at path, whole, from any
    thread."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()

    def add(self, rec):
        line = json.dumps(rec) + "\n"
        with self.lock:
            with open(self.path, "a") as f:
                f.write(line)
                f.flush()


def bounded_int(text, default, low, high):
    """text as an integer within [low, high]; default when it is not one."""
    try:
        v = int(text)
    except (TypeError, ValueError):
        return default
    return max(low, min(high, v))


def serve_grpc(server, name, listen, cert=None, key=None):
    """Runs grpcio server on listen (ADDR:PORT, PORT 0: the kernel's choice),
    over TLS with cert and key; prints "listening on ADDR:PORT" once it
    serves, returns 0 when told to stop (1 when it cannot listen)."""
    import grpc

    addr, _, _ = listen.rpartition(":")
    if cert:
        with open(key, "rb") as k, open(cert, "rb") as c:
            creds = grpc.ssl_server_credentials([(k.read(), c.read())])
        port = server.add_secure_port(listen, creds)
    else:
        port = server.add_insecure_port(listen)
    if not port:
        print(f"{name}: cannot listen on {listen}", file=sys.stderr)
        return 1
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    print(f"listening on {addr}:{port}", flush=True)
    while not stop.wait(1.0):
        pass
    server.stop(grace=1.0).wait(3.0)
    return 0
