#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""An HTTP/2 origin that answers every stream with one header block, as given
and unchecked (the h2 package's outbound validation off), and END_STREAM: for
heads a proper server would not send, such as a :status below 100.

usage: h2_raw_answer.py --listen ADDR:PORT --status STATUS [--field NAME=VALUE ...]
(VALUE takes Python escapes: "a\\x00b" is a, NUL, b)
Run it with Debian's python (/usr/bin/python3: python3-h2)."""
import argparse
import codecs
import socket
import threading

import h2.config
import h2.connection
import h2.events


def serve(c, fields):
    try:
        conn = h2.connection.H2Connection(h2.config.H2Configuration(
            client_side=False, validate_outbound_headers=False, normalize_outbound_headers=False))
        conn.initiate_connection()
        c.sendall(conn.data_to_send())
        while True:
            d = c.recv(65536)
            if not d:
                break
            for ev in conn.receive_data(d):
                if isinstance(ev, h2.events.RequestReceived):
                    conn.send_headers(ev.stream_id, fields, end_stream=True)
            c.sendall(conn.data_to_send())
    except Exception:
        pass
    c.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--listen", required=True)
    ap.add_argument("--status", required=True)
    ap.add_argument("--field", action="append", default=[])
    a = ap.parse_args()
    host, port = a.listen.rsplit(":", 1)
    fields = [(":status", a.status)] + [(n, codecs.decode(v, "unicode_escape"))
                                        for n, v in (f.split("=", 1) for f in a.field)]
    ls = socket.socket()
    ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    ls.bind((host, int(port)))
    ls.listen(16)
    while True:
        c, _ = ls.accept()
        threading.Thread(target=serve, args=(c, fields), daemon=True).start()


if __name__ == "__main__":
    main()
