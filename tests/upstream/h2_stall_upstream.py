#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""An HTTP/2 test origin (prior-knowledge h2c) that stops reading: once N
streams have arrived on a connection, it reads nothing more of that connection
for STALL seconds, with a small receive buffer (64 KiB, set on the listener so
that the kernel does not grow it), so that what its peer sends backs up in
the peer. It advertises the largest windows, so that flow control never holds
the peer back instead. A stream is answered 200 once its request has ended
(the body's length in the body); one reset by the peer is dropped.

Run it with Debian's python (/usr/bin/python3: python3-h2).

usage: h2_stall_upstream.py ADDR:PORT N STALL

Prints "listening on ADDR:PORT" once it listens; a line per stream on stderr.
"""

import socket
import sys
import threading
import time

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings

MAX_WINDOW = (1 << 31) - 1
MAX_CONNS = 64


def log(*a):
    print(*a, file=sys.stderr, flush=True)


def serve(s, seq, n_streams, stall):
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
    c.initiate_connection()
    c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: MAX_WINDOW})
    c.increment_flow_control_window(MAX_WINDOW - 65535)
    s.sendall(c.data_to_send())
    seen, body, stalled = set(), {}, False
    while True:
        try:
            d = s.recv(1 << 16)
        except OSError:
            break
        if not d:
            break
        try:
            events = c.receive_data(d)
        except h2.exceptions.ProtocolError as e:
            log(f"conn{seq}: {e!r}")
            break
        for ev in events:
            if isinstance(ev, h2.events.RequestReceived):
                seen.add(ev.stream_id)
                body[ev.stream_id] = 0
                log(f"conn{seq} stream{ev.stream_id} {dict(ev.headers).get(':path')}")
            elif isinstance(ev, h2.events.DataReceived):
                body[ev.stream_id] = body.get(ev.stream_id, 0) + len(ev.data)
                c.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamReset):
                body.pop(ev.stream_id, None)
                log(f"conn{seq} stream{ev.stream_id} reset {ev.error_code}")
            if isinstance(ev, (h2.events.RequestReceived, h2.events.DataReceived)) and ev.stream_ended \
                    and ev.stream_id in body:
                got = f"{body.pop(ev.stream_id)}\n".encode()
                try:
                    c.send_headers(ev.stream_id, [(":status", "200"), ("content-length", str(len(got)))])
                    c.send_data(ev.stream_id, got, end_stream=True)
                except h2.exceptions.StreamClosedError:
                    pass
        try:
            s.sendall(c.data_to_send())
        except OSError:
            break
        if len(seen) >= n_streams and not stalled:
            stalled = True
            log(f"conn{seq} stalling {stall}s")
            time.sleep(stall)
            log(f"conn{seq} reading again")
    s.close()


def main():
    if len(sys.argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    host, _, port = sys.argv[1].rpartition(":")
    n_streams, stall = int(sys.argv[2]), min(float(sys.argv[3]), 60.0)
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
    ls.bind((host, int(port)))
    ls.listen(64)
    print(f"listening on {host}:{port}", flush=True)
    for seq in range(1, MAX_CONNS + 1):
        s, _ = ls.accept()
        threading.Thread(target=serve, args=(s, seq, n_streams, stall), daemon=True).start()
    return 0


if __name__ == "__main__":
    sys.exit(main())
