# SPDX-License-Identifier: Apache-2.0
"""A WebSocket client over HTTP/2 (RFC 8441 extended CONNECT), with python3-h2.

    ws_h2_client.py PORT PATH COUNT SIZE [--timeout S] [--half-close] [--protocol P]
                    [--early TEXT [--early-end]] [--after TEXT]

Connects to 127.0.0.1:PORT in plaintext (prior knowledge), waits for the
server's SETTINGS, opens PATH with :method CONNECT and :protocol websocket,
then (after a 200) reads one text message when PATH ends in /report, sends
COUNT binary messages of SIZE random bytes one at a time and checks each echo,
and ends the stream. With --half-close the stream ends after the last echo
with END_STREAM alone (the client's half close, no close frame), and the
server's end of the stream is awaited ("ended": seconds from the END_STREAM to
the server's, or null). With --early, TEXT (backslash escapes decoded) goes as
DATA right behind the request's HEADERS, before any answer, with END_STREAM
when --early-end. With --after, an answer other than 200 is no error: TEXT
goes as DATA once it came, with END_STREAM, and the stream's end is awaited. Prints one JSON object: {"connect_protocol": the server's
SETTINGS_ENABLE_CONNECT_PROTOCOL, "status": the response's :status, "report":
the first text message or null, "echoed": messages that came back intact,
"error": text or null}. Exits 0 when it could say what happened."""

import json
import os
import socket
import struct
import sys
import time

import h2.config
import h2.connection
import h2.events
import h2.settings


def frame(opcode, payload):
    """A masked client frame."""
    mask = os.urandom(4)
    n = len(payload)
    if n < 126:
        hdr = bytes([0x80 | opcode, 0x80 | n])
    elif n < 65536:
        hdr = bytes([0x80 | opcode, 0x80 | 126]) + struct.pack("!H", n)
    else:
        hdr = bytes([0x80 | opcode, 0x80 | 127]) + struct.pack("!Q", n)
    return hdr + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def parse(buf):
    """The first whole unmasked server frame of buf: (opcode, payload, rest) or None."""
    if len(buf) < 2:
        return None
    n, off = buf[1] & 0x7F, 2
    if n == 126:
        if len(buf) < 4:
            return None
        n, off = struct.unpack("!H", buf[2:4])[0], 4
    elif n == 127:
        if len(buf) < 10:
            return None
        n, off = struct.unpack("!Q", buf[2:10])[0], 10
    if len(buf) < off + n:
        return None
    return buf[0] & 0x0F, buf[off:off + n], buf[off + n:]


def main():
    port, path, count, size = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    opts = sys.argv[5:]
    timeout = float(opts[opts.index("--timeout") + 1]) if "--timeout" in opts else 20.0
    half_close = "--half-close" in opts
    proto = opts[opts.index("--protocol") + 1] if "--protocol" in opts else "websocket"
    early = opts[opts.index("--early") + 1].encode().decode("unicode_escape").encode("latin-1") \
        if "--early" in opts else None
    after = opts[opts.index("--after") + 1].encode().decode("unicode_escape").encode("latin-1") \
        if "--after" in opts else None
    out = {"connect_protocol": None, "status": None, "report": None, "echoed": 0, "error": None, "ended": None}
    half_closed_at = None
    deadline = time.time() + timeout
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    c.initiate_connection()
    s.sendall(c.data_to_send())
    sid, buf, want, msg = None, b"", "report" if path.endswith("/report") else "echo", None

    pending = b""

    def flush():
        """What flow control lets out of pending, in frames the peer takes."""
        nonlocal pending
        while pending:
            n = min(len(pending), c.local_flow_control_window(sid), c.max_outbound_frame_size)
            if n <= 0:
                return
            c.send_data(sid, pending[:n])
            pending = pending[n:]

    def send_next():
        nonlocal msg, pending
        msg = os.urandom(size)
        pending += frame(2, msg)
        flush()

    try:
        while time.time() < deadline:
            data = s.recv(1 << 20)
            if not data:
                out["error"] = "the server closed the connection"
                break
            for e in c.receive_data(data):
                if isinstance(e, h2.events.RemoteSettingsChanged) and sid is None:
                    out["connect_protocol"] = c.remote_settings.get(
                        h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL)
                    sid = c.get_next_available_stream_id()
                    c.send_headers(sid, [(":method", "CONNECT"), (":protocol", proto),
                                         (":scheme", "http"), (":path", path),
                                         (":authority", f"ws.test:{port}"),
                                         ("sec-websocket-version", "13")])
                    if early is not None:
                        c.send_data(sid, early, end_stream="--early-end" in opts)
                elif isinstance(e, h2.events.ResponseReceived):
                    out["status"] = int(dict(e.headers)[b":status"])
                    if out["status"] != 200 and after is not None:
                        c.send_data(sid, after, end_stream=True)
                        half_closed_at = time.time()
                        want = "answer"  # its body is no WebSocket frame
                        continue
                    if out["status"] != 200:
                        raise RuntimeError("not accepted")
                    if want == "echo" and count:
                        send_next()
                elif isinstance(e, h2.events.DataReceived):
                    buf += e.data
                    c.acknowledge_received_data(e.flow_controlled_length, e.stream_id)
                elif isinstance(e, h2.events.WindowUpdated):
                    if sid is not None and out["status"] == 200:
                        flush()
                elif isinstance(e, h2.events.StreamEnded) and half_closed_at is not None:
                    out["ended"] = round(time.time() - half_closed_at, 3)
                elif isinstance(e, (h2.events.StreamEnded, h2.events.StreamReset)):
                    raise RuntimeError(f"the stream ended: {e}")
            while want != "answer" and (f := parse(buf)) is not None:
                op, payload, buf = f
                if want == "report":
                    out["report"] = payload.decode("utf-8", "replace")
                    want = "echo"
                    if count:
                        send_next()
                    continue
                if op != 2 or payload != msg:
                    raise RuntimeError(f"echo {out['echoed']}: opcode {op}, {len(payload)} bytes differ")
                out["echoed"] += 1
                if out["echoed"] < count:
                    send_next()
            s.sendall(c.data_to_send())
            if (half_close or after is not None) and out["ended"] is not None:
                break
            if half_close and half_closed_at is None and out["echoed"] >= count:
                c.end_stream(sid)
                s.sendall(c.data_to_send())
                half_closed_at = time.time()
                continue
            if want == "echo" and out["echoed"] >= count and not half_close:
                c.send_data(sid, frame(8, struct.pack("!H", 1000)), end_stream=True)
                s.sendall(c.data_to_send())
                break
        else:
            out["error"] = "timed out"
    except Exception as ex:  # noqa: BLE001: the report says what happened
        out["error"] = str(ex)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
