#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A test external authorizer over gRPC: Envoy's
envoy.service.auth.v3.Authorization/Check, as Envoy's ext_authz filter (gRPC
service) calls it and as Istio's envoyExtAuthzGrpc provider names it, for
tests/integration/test_extauthz_grpc.py.

Run it with Debian's python (/usr/bin/python3: python3-grpcio). grpcio with a
generic handler over raw bytes (no generated code): the protobuf messages are
read and written here by hand, by field number, after
envoy/service/auth/v3/{external_auth,attribute_context}.proto.

usage: extauthz_grpc.py --listen ADDR:PORT --record FILE [--name NAME]
                        [--cert CRT --key KEY | --raw] [--max-streams N]
       extauthz_grpc.py --call ADDR:PORT REQUEST_JSON   (a client, for the selftest)
       extauthz_grpc.py --codec-selftest

Prints "listening on ADDR:PORT" once it serves (PORT 0: the kernel's choice).
grpcio serves plaintext HTTP/2, or TLS with --cert; --max-streams sets its
SETTINGS_MAX_CONCURRENT_STREAMS. With --raw, HTTP/2 is served by hand with
the `h2` package (python3-h2), plaintext only, so that answers grpcio would
never send can be sent, and what the call itself carried is recorded.

Every Check is first recorded: one JSON line appended to FILE (and flushed)
before anything is answered:
  {"name", "event": null, "received" (time.time()), "size_bytes" (of the
   CheckRequest), "error" (why it could not be decoded, or null),
   "source"/"destination": {"address", "port", "protocol", "principal",
                            "fields": [Peer's field numbers present]} or null,
   "time": {"seconds", "nanos"} or null,
   "http": {"id", "method", "headers": {name: value}, "header_pairs": [[name,
            value]] in the order sent (a map entry twice shows here),
            "path", "host", "scheme", "query", "fragment", "size" (int64;
            null when absent, which reads as 0), "protocol", "body" (field
            11, its bytes as latin-1 text; null when absent), "body_len",
            "body_sha256" (hex; null when absent), "raw_body", "raw_body_len",
            "raw_body_sha256" (field 12, the same way),
            "fields": [HttpRequest's field numbers present]} or null,
   "tls_session": {"sni"} or null (absent),
   "attributes_fields": [AttributeContext's field numbers present]}
and, from grpcio: "peer" (grpc's peer string), "tls" (bool),
"time_remaining" (the call's deadline in seconds, from grpc-timeout; null
without one), "metadata" ([[name, value]], grpc's own fields left out);
from --raw: "raw": true, "conn" (the connection's number), "stream",
"h2_headers" ([[name, value]] of the call's HEADERS, pseudo-headers too),
"messages" ([[compressed flag, length]] of the call's gRPC messages).
Lines with "event" set are not checks: {"event": "cancelled", "path"} (grpcio:
the call ended while its answer waited), {"event": "reset", "stream", "code",
"path"} (--raw: the gateway reset the call's stream).

Then it answers by the request's fields (the CheckRequest's headers map):
  x-authz: allow        status.code 0, an ok_response from the fields below
  x-authz: allow-empty  an empty CheckResponse (status absent: code 0)
  x-authz: deny         status.code x-authz-code (default 7, PERMISSION_DENIED)
                        and a denied_response: status x-authz-status when
                        given (0 too: HttpStatus{code: 0}), none without;
                        headers from x-authz-set (append unset) and
                        x-authz-append (append true); body x-authz-body and
                        x-authz-pad: N bytes of "z" (at most 1 MiB)
  x-authz: deny-bare    status.code x-authz-code (default 7), no denied_response
  x-authz: grpc-error   the call ends with gRPC status x-authz-grpc (a name
                        such as UNAVAILABLE, or a number; default UNAVAILABLE)
                        and message x-authz-message; no CheckResponse
  x-authz: slow         waits x-authz-delay ms (default 3000), then as allow
  x-authz: garbage      answers bytes that are not a CheckResponse, by
                        x-authz-garbage: wiretype (default: a field of wire
                        type 7), truncated (a length past the end), badname
                        (allow, setting a field named "bad name"), badvalue
                        (allow, a value holding CR LF), nested (allow whose
                        ok_response is not a message)
  anything else         status.code 7, denied_response 403 body "no verdict\\n"
and with --raw only (each answering the allow CheckResponse, if any):
  http-status           HTTP status x-authz-http (default 503), text/plain
  compressed            the message gzip'd, its compressed flag set, grpc-encoding gzip
  bad-frame             the message's last byte missing, then grpc-status 0
  no-message            HEADERS, then trailers grpc-status 0, no message
  no-trailers           the message, END_STREAM on the DATA: no grpc-status
  allow-then-error      the message, then trailers grpc-status 13
  reset                 RST_STREAM (INTERNAL_ERROR), no answer
  close                 the connection closed, no answer
For allow and slow, the ok_response holds:
  x-authz-set: NAME=VALUE|...      headers, append unset (replace)
  x-authz-append: NAME=VALUE|...   headers, append true (add)
  x-authz-fill: NAME=N|...         headers, append unset, of N bytes "y" (at most 1 MiB)
  x-authz-many: NAME=N|...         N headers NAME-0: v0 .. NAME-<N-1>: v<N-1> (at most 1000)
  x-authz-remove: NAME|...         headers_to_remove
  x-authz-resp: NAME=VALUE|...     response_headers_to_add, append unset
  x-authz-resp-append: NAME=VALUE|...  response_headers_to_add, append true
  x-authz-qset: KEY=VALUE|...      query_parameters_to_set
  x-authz-qdel: KEY|...            query_parameters_to_remove
For every verdict, x-authz-delay: MS waits that long first (at most 5000; the
wait ends early when the gateway cancels the call).
"""

import argparse
import hashlib
import json
import signal
import sys
import threading
import time
from concurrent import futures

import grpc
from testserve import Recorder, bounded_int, serve_grpc

SERVICE = "envoy.service.auth.v3.Authorization"
MAX_DELAY_MS = 5000
MAX_MSG = 4 * 1024 * 1024
MAX_PAD = 1 << 20
GRPC_OWN = ("grpc-", ":", "te", "content-type", "user-agent")

# --------------------------------------------------------------------------- protobuf, by hand

VARINT, I64, LEN, I32 = 0, 1, 2, 5


class DecodeError(Exception):
    pass


def read_varint(b, i):
    v = shift = 0
    while True:
        if i >= len(b):
            raise DecodeError("truncated varint")
        if shift >= 64:
            raise DecodeError("varint over 10 bytes")
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        if not c & 0x80:
            return v & ((1 << 64) - 1), i
        shift += 7


def fields(b):
    """The fields of a message: [(number, wire type, value)], value an int
    (varint, fixed) or bytes (length-delimited). Raises DecodeError."""
    out, i = [], 0
    while i < len(b):
        key, i = read_varint(b, i)
        num, wt = key >> 3, key & 7
        if num == 0:
            raise DecodeError("field number 0")
        if wt == VARINT:
            v, i = read_varint(b, i)
        elif wt == I64:
            if i + 8 > len(b):
                raise DecodeError("truncated fixed64")
            v, i = int.from_bytes(b[i:i + 8], "little"), i + 8
        elif wt == I32:
            if i + 4 > len(b):
                raise DecodeError("truncated fixed32")
            v, i = int.from_bytes(b[i:i + 4], "little"), i + 4
        elif wt == LEN:
            n, i = read_varint(b, i)
            if i + n > len(b):
                raise DecodeError(f"field {num}: length {n} past the end")
            v, i = bytes(b[i:i + n]), i + n
        else:
            raise DecodeError(f"field {num}: wire type {wt}")
        out.append((num, wt, v))
    return out


def signed64(v):
    return v - (1 << 64) if v >= 1 << 63 else v


class Msg:
    """A decoded message: last value of a field, all values of a field, checks on wire types."""

    def __init__(self, b):
        self.f = fields(b)

    def numbers(self):
        return sorted({n for n, _, _ in self.f})

    def all(self, num, wt):
        vals = []
        for n, w, v in self.f:
            if n == num:
                if w != wt:
                    raise DecodeError(f"field {num}: wire type {w}, want {wt}")
                vals.append(v)
        return vals

    def last(self, num, wt, default=None):
        vals = self.all(num, wt)
        return vals[-1] if vals else default

    def string(self, num):
        v = self.last(num, LEN)
        if v is None:
            return None
        try:
            return v.decode("utf-8")
        except UnicodeDecodeError:
            raise DecodeError(f"field {num}: not UTF-8")

    def msg(self, num):
        v = self.last(num, LEN)
        return None if v is None else Msg(v)


def varint(v):
    v &= (1 << 64) - 1
    out = bytearray()
    while True:
        c = v & 0x7F
        v >>= 7
        if v:
            out.append(c | 0x80)
        else:
            out.append(c)
            return bytes(out)


def key(num, wt):
    return varint(num << 3 | wt)


def f_varint(num, v):
    return key(num, VARINT) + varint(v)


def f_bytes(num, data):
    if isinstance(data, str):
        data = data.encode("utf-8")
    return key(num, LEN) + varint(len(data)) + data


# --------------------------------------------------------------------------- CheckRequest

def peer(m):
    if m is None:
        return None
    out = {"address": None, "port": None, "protocol": None, "principal": m.string(4), "fields": m.numbers()}
    addr = m.msg(1)
    if addr is not None:
        sock = addr.msg(1)
        if sock is not None:
            out["protocol"] = sock.last(1, VARINT)
            out["address"] = sock.string(2)
            out["port"] = sock.last(3, VARINT)
    return out


def http_request(m):
    if m is None:
        return None
    pairs = []
    for entry in m.all(3, LEN):
        e = Msg(entry)
        pairs.append([e.string(1) or "", e.string(2) or ""])
    size = m.last(9, VARINT)
    out = {"id": m.string(1), "method": m.string(2), "headers": {k: v for k, v in pairs}, "header_pairs": pairs,
           "path": m.string(4), "host": m.string(5), "scheme": m.string(6), "query": m.string(7),
           "fragment": m.string(8), "size": None if size is None else signed64(size),
           "protocol": m.string(10), "fields": m.numbers()}
    for num, name in ((11, "body"), (12, "raw_body")):
        data = m.last(num, LEN)
        out[name] = None if data is None else data.decode("latin-1")
        out[name + "_len"] = None if data is None else len(data)
        out[name + "_sha256"] = None if data is None else hashlib.sha256(data).hexdigest()
    return out


def decode_check_request(b):
    """CheckRequest{attributes = 1: AttributeContext} → the record's fields."""
    rec = {"source": None, "destination": None, "time": None, "http": None, "tls_session": None,
           "attributes_fields": []}
    req = Msg(b)
    attrs = req.msg(1)
    if attrs is None:
        return rec
    rec["attributes_fields"] = attrs.numbers()
    rec["source"] = peer(attrs.msg(1))
    rec["destination"] = peer(attrs.msg(2))
    request = attrs.msg(4)
    if request is not None:
        t = request.msg(1)
        if t is not None:
            rec["time"] = {"seconds": signed64(t.last(1, VARINT, 0)), "nanos": t.last(2, VARINT, 0)}
        rec["http"] = http_request(request.msg(2))
    tls = attrs.msg(12)
    if tls is not None:
        rec["tls_session"] = {"sni": tls.string(1)}
    return rec


def encode_check_request(spec):
    """The selftest's CheckRequest from JSON: {"source": {"address", "port",
    "principal"}, "destination": {...}, "time": {"seconds", "nanos"},
    "http": {"id", "method", "headers": [[k, v]], "path", "host", "scheme",
    "size", "protocol", "body", "raw_body" (text, each char a byte)}, "sni"}."""
    def peer_(p):
        sock = f_bytes(2, p["address"]) + f_varint(3, p["port"])
        out = f_bytes(1, f_bytes(1, sock))
        if p.get("principal"):
            out += f_bytes(4, p["principal"])
        return out
    attrs = b""
    if "source" in spec:
        attrs += f_bytes(1, peer_(spec["source"]))
    if "destination" in spec:
        attrs += f_bytes(2, peer_(spec["destination"]))
    request = b""
    if "time" in spec:
        request += f_bytes(1, f_varint(1, spec["time"]["seconds"]) + f_varint(2, spec["time"]["nanos"]))
    if "http" in spec:
        h = spec["http"]
        hb = f_bytes(1, h.get("id", "")) + f_bytes(2, h.get("method", ""))
        for k, v in h.get("headers", []):
            hb += f_bytes(3, f_bytes(1, k) + f_bytes(2, v))
        for num, name in ((4, "path"), (5, "host"), (6, "scheme")):
            if name in h:
                hb += f_bytes(num, h[name])
        if "size" in h:
            hb += f_varint(9, h["size"])
        if "protocol" in h:
            hb += f_bytes(10, h["protocol"])
        for num, name in ((11, "body"), (12, "raw_body")):
            if name in h:
                hb += f_bytes(num, h[name].encode("latin-1"))
        request += f_bytes(2, hb)
    attrs += f_bytes(4, request)
    if "sni" in spec:
        attrs += f_bytes(12, f_bytes(1, spec["sni"]))
    return f_bytes(1, attrs)


# --------------------------------------------------------------------------- CheckResponse

def header_option(k, v, append=None):
    """HeaderValueOption{header = 1: HeaderValue{key = 1, value = 2}, append = 2: BoolValue{value = 1}}."""
    out = f_bytes(1, f_bytes(1, k) + f_bytes(2, v))
    if append is not None:
        out += f_bytes(2, f_varint(1, 1) if append else b"")
    return out


def rpc_status(code, message=""):
    """google.rpc.Status{code = 1, message = 2}."""
    return (f_varint(1, code) if code else b"") + (f_bytes(2, message) if message else b"")


def pairs(text):
    """"a=1|b=2" → [("a", "1"), ("b", "2")] (a value may hold "=")."""
    out = []
    for item in (text or "").split("|"):
        name, eq, value = item.partition("=")
        if eq and name.strip():
            out.append((name.strip(), value.strip()))
    return out


def names(text):
    return [n.strip() for n in (text or "").split("|") if n.strip()]


def ok_response(h, extra=b""):
    """OkHttpResponse{headers = 2, headers_to_remove = 5, response_headers_to_add = 6,
    query_parameters_to_set = 7: QueryParameter{key = 1, value = 2}, query_parameters_to_remove = 8}."""
    out = b""
    for k, v in pairs(h.get("x-authz-set")):
        out += f_bytes(2, header_option(k, v))
    for k, v in pairs(h.get("x-authz-append")):
        out += f_bytes(2, header_option(k, v, append=True))
    for k, v in pairs(h.get("x-authz-fill")):
        out += f_bytes(2, header_option(k, "y" * bounded_int(v, 0, 0, MAX_PAD)))
    for k, v in pairs(h.get("x-authz-many")):
        for i in range(bounded_int(v, 0, 0, 1000)):
            out += f_bytes(2, header_option(f"{k}-{i}", f"v{i}"))
    out += extra
    for n in names(h.get("x-authz-remove")):
        out += f_bytes(5, n)
    for k, v in pairs(h.get("x-authz-resp")):
        out += f_bytes(6, header_option(k, v))
    for k, v in pairs(h.get("x-authz-resp-append")):
        out += f_bytes(6, header_option(k, v, append=True))
    for k, v in pairs(h.get("x-authz-qset")):
        out += f_bytes(7, f_bytes(1, k) + f_bytes(2, v))
    for n in names(h.get("x-authz-qdel")):
        out += f_bytes(8, n)
    return out


def allow(h, extra=b""):
    """CheckResponse{status = 1 (code 0), ok_response = 3}."""
    return f_bytes(1, rpc_status(0)) + f_bytes(3, ok_response(h, extra))


def denied_response(h):
    """DeniedHttpResponse{status = 1: HttpStatus{code = 1}, headers = 2, body = 3}."""
    out = b""
    st = h.get("x-authz-status")
    if st is not None:
        out += f_bytes(1, f_varint(1, bounded_int(st, 403, 0, 999)))
    for k, v in pairs(h.get("x-authz-set")):
        out += f_bytes(2, header_option(k, v))
    for k, v in pairs(h.get("x-authz-append")):
        out += f_bytes(2, header_option(k, v, append=True))
    body = (h.get("x-authz-body") or "") + "z" * bounded_int(h.get("x-authz-pad"), 0, 0, MAX_PAD)
    if body:
        out += f_bytes(3, body)
    return out


def garbage(h):
    kind = (h.get("x-authz-garbage") or "wiretype").strip()
    if kind == "truncated":
        return b"\x0a\x00\x1a\x40\x12"  # status {}, then an ok_response of 64 bytes with 1 there
    if kind == "badname":
        return allow({}, f_bytes(2, header_option("bad name", "v")))
    if kind == "badvalue":
        return allow({}, f_bytes(2, header_option("x-user", "a\r\nx-injected: 1")))
    if kind == "nested":
        return f_bytes(1, rpc_status(0)) + f_bytes(3, b"\xff\xff\xff\xff")
    return b"\x0f\xff\xff\xff"  # field 1, wire type 7


CODES = {c.name: c for c in grpc.StatusCode}
CODE_BY_VALUE = {c.value[0]: c for c in grpc.StatusCode}


def grpc_code(text):
    t = (text or "UNAVAILABLE").strip()
    if t.isdigit():
        return CODE_BY_VALUE.get(int(t), grpc.StatusCode.UNKNOWN)
    return CODES.get(t.upper(), grpc.StatusCode.UNAVAILABLE)


# --------------------------------------------------------------------------- the service

RAW_ONLY = ("http-status", "compressed", "bad-frame", "no-message", "no-trailers", "allow-then-error", "reset",
            "close")


def decide(h):
    """What to answer the CheckRequest whose headers map is h: (delay in ms,
    kind, value): ("message", CheckResponse bytes), ("grpc-error", (grpc code,
    message)) or ("raw", verdict) for what only --raw can answer."""
    verdict = (h.get("x-authz") or "").strip()
    delay = bounded_int(h.get("x-authz-delay"), 3000 if verdict == "slow" else 0, 0, MAX_DELAY_MS)
    if verdict in ("allow", "slow"):
        return delay, "message", allow(h)
    if verdict == "allow-empty":
        return delay, "message", b""
    if verdict == "deny":
        return delay, "message", (f_bytes(1, rpc_status(bounded_int(h.get("x-authz-code"), 7, 1, 16), "denied"))
                                  + f_bytes(2, denied_response(h)))
    if verdict == "deny-bare":
        return delay, "message", f_bytes(1, rpc_status(bounded_int(h.get("x-authz-code"), 7, 1, 16), "denied"))
    if verdict == "grpc-error":
        return delay, "grpc-error", (grpc_code(h.get("x-authz-grpc")),
                                     h.get("x-authz-message") or "authorizer error")
    if verdict == "garbage":
        return delay, "message", garbage(h)
    if verdict in RAW_ONLY:
        return delay, "raw", verdict
    return delay, "message", (f_bytes(1, rpc_status(7, "no verdict"))
                              + f_bytes(2, f_bytes(1, f_varint(1, 403)) + f_bytes(3, "no verdict\n")))


def record_of(name, req):
    rec = {"name": name, "received": time.time(), "size_bytes": len(req), "error": None, "event": None}
    try:
        rec.update(decode_check_request(req))
    except DecodeError as e:
        rec["error"] = str(e)
    return rec


def make_check(name, recorder):
    def check(req, ctx):
        auth = ctx.auth_context() or {}
        rec = record_of(name, req)
        rec.update({"peer": ctx.peer(), "tls": auth.get("transport_security_type") == [b"ssl"],
                    "time_remaining": ctx.time_remaining(),
                    "metadata": [[k, v if isinstance(v, str) else v.hex()] for k, v in ctx.invocation_metadata()
                                 if not k.startswith(GRPC_OWN)]})
        recorder.add(rec)
        if rec["error"]:
            ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad CheckRequest: {rec['error']}")
        delay, kind, value = decide((rec["http"] or {}).get("headers") or {})
        if delay:
            end = time.monotonic() + delay / 1000.0
            while time.monotonic() < end and ctx.is_active():
                time.sleep(min(0.01, max(0.0, end - time.monotonic())))
            if not ctx.is_active():
                recorder.add({"event": "cancelled", "path": (rec["http"] or {}).get("path"), "at": time.time()})
                return b""
        if kind == "grpc-error":
            ctx.abort(value[0], value[1])
        if kind == "raw":
            ctx.abort(grpc.StatusCode.UNIMPLEMENTED, f"{value} needs --raw")
        return value
    return check


def serve(args):
    recorder = Recorder(args.record)
    open(args.record, "a").close()
    if args.raw:
        return serve_raw(args, recorder)
    options = [("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", MAX_MSG),
               ("grpc.max_send_message_length", MAX_MSG)]
    if args.max_streams:
        options.append(("grpc.max_concurrent_streams", args.max_streams))
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=64),
        handlers=[grpc.method_handlers_generic_handler(
            SERVICE, {"Check": grpc.unary_unary_rpc_method_handler(make_check(args.name, recorder))})],
        maximum_concurrent_rpcs=256, options=options)
    return serve_grpc(server, "extauthz_grpc", args.listen, args.cert, args.key)


# --------------------------------------------------------------------------- --raw: HTTP/2 by hand

def grpc_frame(msg, compressed=False):
    return bytes([1 if compressed else 0]) + len(msg).to_bytes(4, "big") + msg


def split_frames(body):
    """The gRPC messages of a request body: [(compressed flag, bytes)]; raises DecodeError."""
    out, i = [], 0
    while i < len(body):
        if i + 5 > len(body):
            raise DecodeError("a gRPC message prefix cut short")
        n = int.from_bytes(body[i + 1:i + 5], "big")
        if i + 5 + n > len(body):
            raise DecodeError("a gRPC message cut short")
        out.append((body[i], body[i + 5:i + 5 + n]))
        i += 5 + n
    return out


class RawConn:
    """One HTTP/2 connection, served by a thread reading it; each Check
    answered by a thread of its own (the h2 state under self.lock)."""

    def __init__(self, sock, n, args, recorder):
        import h2.config
        import h2.connection
        self.sock = sock
        self.n = n
        self.args = args
        self.recorder = recorder
        self.h2 = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False, header_encoding="utf-8"))
        self.lock = threading.Lock()
        self.streams = {}  # id → {"headers", "body", "reset"}
        self.closed = False

    def flush(self):
        data = self.h2.data_to_send()
        if data and not self.closed:
            try:
                self.sock.sendall(data)
            except OSError:
                self.closed = True

    def run(self):
        import h2.events
        import h2.exceptions
        self.sock.settimeout(120)
        with self.lock:
            self.h2.initiate_connection()
            self.flush()
        try:
            while not self.closed:
                data = self.sock.recv(65536)
                if not data:
                    break
                with self.lock:
                    try:
                        events = self.h2.receive_data(data)
                    except h2.exceptions.ProtocolError as e:
                        print(f"extauthz_grpc --raw: connection {self.n}: {e!r}", file=sys.stderr, flush=True)
                        self.flush()
                        break
                    for ev in events:
                        self.on_event(ev, h2.events)
                    self.flush()
        except OSError:
            pass
        finally:
            self.closed = True
            with self.lock:
                for sid, st in self.streams.items():
                    st["reset"] = True
            try:
                self.sock.close()
            except OSError:
                pass

    def on_event(self, ev, events):
        if isinstance(ev, events.RequestReceived):
            self.streams[ev.stream_id] = {"headers": [[k, v] for k, v in ev.headers], "body": b"", "reset": False}
        elif isinstance(ev, events.DataReceived):
            st = self.streams.get(ev.stream_id)
            if st is not None:
                st["body"] += ev.data
            if ev.flow_controlled_length:
                self.h2.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
        elif isinstance(ev, events.StreamEnded):
            st = self.streams.get(ev.stream_id)
            if st is not None:
                threading.Thread(target=self.answer, args=(ev.stream_id, st), daemon=True).start()
        elif isinstance(ev, events.StreamReset):
            st = self.streams.get(ev.stream_id)
            if st is not None:
                st["reset"] = True
                self.recorder.add({"event": "reset", "stream": ev.stream_id, "code": int(ev.error_code),
                                   "path": st.get("path"), "at": time.time()})
        elif isinstance(ev, events.ConnectionTerminated):
            self.closed = True

    def answer(self, sid, st):
        hdrs = st["headers"]
        rec = {"name": self.args.name, "raw": True, "conn": self.n, "stream": sid, "h2_headers": hdrs,
               "received": time.time(), "error": None, "event": None, "messages": None}
        try:
            frames = split_frames(st["body"])
            rec["messages"] = [[flag, len(m)] for flag, m in frames]
            if len(frames) != 1 or frames[0][0] != 0:
                raise DecodeError(f"want one uncompressed message, got {rec['messages']}")
            rec.update(record_of(self.args.name, frames[0][1]))
            rec["received"] = time.time()
        except DecodeError as e:
            rec["error"] = str(e)
        st["path"] = (rec.get("http") or {}).get("path")
        self.recorder.add(rec)
        if rec["error"]:
            return self.send(sid, [(":status", "200"), ("content-type", "application/grpc"), ("grpc-status", "3"),
                                   ("grpc-message", "bad CheckRequest")], end=True)
        delay, kind, value = decide((rec.get("http") or {}).get("headers") or {})
        end = time.monotonic() + delay / 1000.0
        while time.monotonic() < end and not st["reset"] and not self.closed:
            time.sleep(min(0.01, max(0.0, end - time.monotonic())))
        if st["reset"] or self.closed:
            return
        h = (rec.get("http") or {}).get("headers") or {}
        head = [(":status", "200"), ("content-type", "application/grpc")]
        if kind == "grpc-error":
            return self.send(sid, head + [("grpc-status", str(value[0].value[0])), ("grpc-message", value[1])],
                             end=True)
        if kind == "message":
            return self.send(sid, head, grpc_frame(value), [("grpc-status", "0")])
        ok = allow(h)
        if value == "http-status":
            return self.send(sid, [(":status", str(bounded_int(h.get("x-authz-http"), 503, 200, 599))),
                                   ("content-type", "text/plain")], b"not grpc\n", end=True)
        if value == "compressed":
            import gzip
            return self.send(sid, head + [("grpc-encoding", "gzip")], grpc_frame(gzip.compress(ok), True),
                             [("grpc-status", "0")])
        if value == "bad-frame":
            return self.send(sid, head, grpc_frame(ok)[:-1], [("grpc-status", "0")])
        if value == "no-message":
            return self.send(sid, head, b"", [("grpc-status", "0")])
        if value == "no-trailers":
            return self.send(sid, head, grpc_frame(ok), end=True)
        if value == "allow-then-error":
            return self.send(sid, head, grpc_frame(ok), [("grpc-status", "13"), ("grpc-message", "late failure")])
        if value == "reset":
            with self.lock:
                self.h2.reset_stream(sid, 2)
                self.flush()
            return
        if value == "close":
            self.closed = True
            try:
                self.sock.shutdown(2)
            except OSError:
                pass

    def send(self, sid, head, data=b"", trailers=None, end=False):
        import h2.exceptions
        with self.lock:
            try:
                self.h2.send_headers(sid, head, end_stream=end and not data and trailers is None)
                view = memoryview(data)
                while view:
                    room = min(self.h2.local_flow_control_window(sid), self.h2.max_outbound_frame_size)
                    if room <= 0:
                        break  # small answers only: a stalled window ends the answer here
                    piece, view = bytes(view[:room]), view[room:]
                    self.h2.send_data(sid, piece, end_stream=end and not view and trailers is None)
                if trailers is not None:
                    self.h2.send_headers(sid, trailers, end_stream=True)
            except (h2.exceptions.StreamClosedError, h2.exceptions.ProtocolError):
                pass
            self.flush()


def serve_raw(args, recorder):
    import socket
    addr, _, port = args.listen.rpartition(":")
    lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    lsock.bind((addr, int(port)))
    lsock.listen(128)
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: sys.exit(0))
    print(f"listening on {addr}:{lsock.getsockname()[1]}", flush=True)
    n = 0
    while True:
        sock, _ = lsock.accept()
        n += 1
        if n > 1024:
            sock.close()
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=RawConn(sock, n, args, recorder).run, daemon=True).start()


# --------------------------------------------------------------------------- client and selftest

def decode_header_options(vals):
    out = []
    for b in vals:
        m = Msg(b)
        hv = m.msg(1)
        ap = m.msg(2)
        out.append([hv.string(1) if hv else None, hv.string(2) if hv else None,
                    None if ap is None else bool(ap.last(1, VARINT, 0))])
    return out


def decode_check_response(b):
    m = Msg(b)
    st = m.msg(1)
    out = {"code": st.last(1, VARINT, 0) if st else 0, "message": st.string(2) if st else None,
           "denied": None, "ok": None}
    d = m.msg(2)
    if d is not None:
        hs = d.msg(1)
        out["denied"] = {"status": hs.last(1, VARINT) if hs else None,
                         "headers": decode_header_options(d.all(2, LEN)), "body": d.string(3)}
    ok = m.msg(3)
    if ok is not None:
        out["ok"] = {"headers": decode_header_options(ok.all(2, LEN)),
                     "remove": [x.decode() for x in ok.all(5, LEN)],
                     "response": decode_header_options(ok.all(6, LEN)),
                     "qset": [[Msg(x).string(1), Msg(x).string(2)] for x in ok.all(7, LEN)],
                     "qdel": [x.decode() for x in ok.all(8, LEN)]}
    return out


def call(target, spec):
    """One Check with the CheckRequest spec describes; prints {"code", "details",
    "response": decoded CheckResponse or null, "raw": hex, "decode_error"}."""
    with grpc.insecure_channel(target) as ch:
        stub = ch.unary_unary(f"/{SERVICE}/Check")
        out = {"code": "OK", "details": "", "response": None, "raw": None, "decode_error": None}
        try:
            resp = stub(encode_check_request(spec), timeout=float(spec.get("timeout", 10)))
            if resp is None:  # grpcio's answer to a call that ended OK without a (whole) message
                out["decode_error"] = "no message"
            else:
                out["raw"] = resp.hex()
                try:
                    out["response"] = decode_check_response(resp)
                except DecodeError as e:
                    out["decode_error"] = str(e)
        except grpc.RpcError as e:
            out["code"], out["details"] = e.code().name, e.details() or ""
    print(json.dumps(out))
    return 0


def codec_selftest():
    """Known encodings, worked out by hand from the protobuf wire format."""
    cases = [
        (varint(0), b"\x00"), (varint(300), b"\xac\x02"),
        (varint(-1), b"\xff" * 9 + b"\x01"),
        (header_option("a", "b", append=True), bytes.fromhex("0a060a0161120162" "12020801")),
        (header_option("a", "b", append=False), bytes.fromhex("0a060a0161120162" "1200")),
        (header_option("a", "b"), bytes.fromhex("0a060a0161120162")),
        (rpc_status(7, "x"), bytes.fromhex("0807" "120178")),
        (allow({"x-authz-qdel": "q"}), bytes.fromhex("0a00" "1a03" "420171")),
    ]
    bad = [f"{got.hex()} != {want.hex()}" for got, want in cases if got != want]
    for raw, want in ((b"\xff" * 9 + b"\x01", (1 << 64) - 1),):
        v, _ = read_varint(raw, 0)
        if signed64(v) != -1 or v != want:
            bad.append(f"read_varint {raw.hex()} = {v}")
    for raw in (b"\x0f", b"\x0a\x05ab", b"\x80", b"\x00\x01"):
        try:
            fields(raw)
            bad.append(f"{raw.hex()} decoded without an error")
        except DecodeError:
            pass
    spec = {"source": {"address": "127.0.0.9", "port": 4242, "principal": "spiffe://x/c"},
            "destination": {"address": "127.0.0.1", "port": 80},
            "time": {"seconds": 1700000000, "nanos": 5}, "sni": "s.example",
            "http": {"id": "7", "method": "GET", "headers": [[":path", "/a?b"], ["x", "1,2"]], "path": "/a?b",
                     "host": "h", "scheme": "https", "size": -1, "protocol": "HTTP/2", "raw_body": "\x00\xffb"}}
    rec = decode_check_request(encode_check_request(spec))
    want = {"source": ["127.0.0.9", 4242, "spiffe://x/c"], "destination": ["127.0.0.1", 80, None]}
    for side, (a, p, pr) in want.items():
        s = rec[side]
        if [s["address"], s["port"], s["principal"]] != [a, p, pr]:
            bad.append(f"{side}: {s}")
    h = rec["http"]
    if (h["size"] != -1 or h["headers"] != {":path": "/a?b", "x": "1,2"} or h["protocol"] != "HTTP/2"
            or rec["tls_session"] != {"sni": "s.example"} or rec["time"] != {"seconds": 1700000000, "nanos": 5}
            or h["body"] is not None or h["body_len"] is not None or h["raw_body"] != "\x00\xffb"
            or h["raw_body_len"] != 3 or h["raw_body_sha256"] != hashlib.sha256(b"\x00\xffb").hexdigest()):
        bad.append(f"round trip: {rec}")
    print(json.dumps({"ok": not bad, "bad": bad}))
    return 0 if not bad else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen")
    ap.add_argument("--record")
    ap.add_argument("--name", default="authz")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--call", metavar="ADDR:PORT")
    ap.add_argument("--codec-selftest", action="store_true")
    ap.add_argument("--raw", action="store_true", help="HTTP/2 by hand (the h2 package), plaintext")
    ap.add_argument("--max-streams", type=int, default=0, help="SETTINGS_MAX_CONCURRENT_STREAMS (grpcio)")
    ap.add_argument("request", nargs="?")
    args = ap.parse_args()
    if args.codec_selftest:
        return codec_selftest()
    if args.call:
        return call(args.call, json.loads(args.request or "{}"))
    if not args.listen or not args.record:
        ap.error("--listen and --record are required to serve")
    if bool(args.cert) != bool(args.key):
        ap.error("--cert and --key go together")
    if args.raw and args.cert:
        ap.error("--raw serves plaintext only")
    return serve(args)


if __name__ == "__main__":
    sys.exit(main())
