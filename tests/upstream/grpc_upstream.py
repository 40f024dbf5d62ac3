#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A gRPC test server (grpcio, no generated code: generic handlers over raw bytes).

Run it with Debian's python (/usr/bin/python3: python3-grpcio).

usage: grpc_upstream.py --listen ADDR:PORT [--name NAME] [--cert CRT --key KEY] [--fail CODE]

Prints "listening on ADDR:PORT" once it serves (PORT 0: the kernel's choice).
Service isthmus.test.Echo; requests and responses are raw bytes, JSON where a
method takes parameters:
  Unary          the request back
  ServerStream   {"n": N, "size": S, "code": C, "message": M}: N messages ("i:" padded
                 to S bytes), then status C (default 0) with M
  ClientStream   messages are decimal integers: {"count": K, "sum": S}
  Bidi           each message back as it comes
  Status         {"code": C, "message": M}: that status, nothing else (trailers-only)
  Sleep          {"ms": MS}: answers "slept" after MS milliseconds (at most 60000);
                 a call ended early (cancel, deadline) is counted in Stats
  Flaky          {"key": K, "fail": N, "code": C}: the first N calls of key K end
                 with status C (trailers-only), later ones answer {"attempt": i}
  Headers        {"metadata": [[name, value], ...], "time_remaining": seconds or null}
  SetHealth      {"service": S, "status": N}: what grpc.health.v1.Health/Check answers
                 for S from now on (1 SERVING, 2 NOT_SERVING, 0 UNKNOWN; null: S is
                 unknown, answered NOT_FOUND); "" (the server) and isthmus.test.Echo start SERVING
  Stats          JSON counters: calls per method, cancelled, in flight, flaky attempts,
                 health checks answered, the last one's service and metadata
Service grpc.health.v1.Health, method Check (the standard health service, written
here as raw protobuf: HealthCheckRequest{service = 1}, HealthCheckResponse{status = 1}).
Every answer carries the metadata `x-upstream: NAME` (initial metadata when the
call sends a message, trailing metadata otherwise, so that an error stays
trailers-only). With --fail CODE, every call but Stats ends with status CODE
(trailers-only): a broken instance. Bounded: 64 threads, 256 calls at once,
messages of 4 MiB.
"""

import argparse
import contextlib
import json
import sys
import threading
import time
from concurrent import futures

import grpc
from testserve import serve_grpc

SERVICE = "isthmus.test.Echo"
SLEEP_CAP_MS = 60000
MAX_STREAM_MSGS = 100000
MAX_MSG = 4 * 1024 * 1024
CODES = {c.value[0]: c for c in grpc.StatusCode}


class State:
    def __init__(self, name):
        self.name = name
        self.lock = threading.Lock()
        self.calls = {}
        self.cancelled = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.flaky = {}
        self.fail = 0  # --fail
        self.health = {"": 1, SERVICE: 1}
        self.checks = 0
        self.check_service = None
        self.check_md = []

    def as_json(self):
        with self.lock:
            return {"name": self.name, "calls": dict(self.calls), "cancelled": self.cancelled,
                    "in_flight": self.in_flight, "max_in_flight": self.max_in_flight,
                    "flaky": dict(self.flaky), "health_checks": self.checks,
                    "health_service": self.check_service, "health_metadata": self.check_md}


def params(raw):
    try:
        v = json.loads(raw.decode() or "{}")
    except (UnicodeDecodeError, ValueError):
        return {}
    return v if isinstance(v, dict) else {}


def code_of(v):
    try:
        return CODES.get(int(v), grpc.StatusCode.UNKNOWN)
    except (TypeError, ValueError):
        return grpc.StatusCode.UNKNOWN


def methods(st):
    @contextlib.contextmanager
    def call(name):
        with st.lock:
            st.calls[name] = st.calls.get(name, 0) + 1
            st.in_flight += 1
            st.max_in_flight = max(st.max_in_flight, st.in_flight)
        try:
            yield
        finally:
            with st.lock:
                st.in_flight -= 1

    def counted(name, fn):
        """fn(request or request iterator, ctx), counted while it runs: as a
        function, and as a generator for the methods that stream responses."""
        def run(req, ctx):
            with call(name):
                if st.fail and name != "Stats":
                    ctx.set_trailing_metadata(up)
                    ctx.abort(code_of(st.fail), "failing on command (--fail)")
                return fn(req, ctx)

        def run_gen(req, ctx):
            with call(name):
                yield from fn(req, ctx)
        return run, run_gen

    up = (("x-upstream", st.name),)

    def unary(req, ctx):
        ctx.send_initial_metadata(up)
        return req

    def server_stream(req, ctx):
        p = params(req)
        n = max(0, min(int(p.get("n", 1)), MAX_STREAM_MSGS))
        size = max(0, min(int(p.get("size", 0)), MAX_MSG))
        ctx.send_initial_metadata(up)
        for i in range(n):
            m = f"{i}:".encode()
            yield m + b"x" * max(0, size - len(m))
        code = int(p.get("code", 0))
        if code:
            ctx.set_code(code_of(code))
            ctx.set_details(str(p.get("message", "")))

    def client_stream(it, ctx):
        count = total = 0
        for m in it:
            count += 1
            try:
                total += int(m.decode())
            except (UnicodeDecodeError, ValueError):
                ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, f"not an integer: {m[:40]!r}")
        ctx.send_initial_metadata(up)
        return json.dumps({"count": count, "sum": total}).encode()

    def bidi(it, ctx):
        ctx.send_initial_metadata(up)
        for m in it:
            yield m

    def status(req, ctx):
        p = params(req)
        ctx.set_trailing_metadata(up)
        ctx.abort(code_of(p.get("code", 2)), str(p.get("message", "")))

    def sleep(req, ctx):
        p = params(req)
        ms = max(0, min(int(p.get("ms", 0)), SLEEP_CAP_MS))
        deadline = time.monotonic() + ms / 1000.0
        while time.monotonic() < deadline:
            if not ctx.is_active():
                with st.lock:
                    st.cancelled += 1
                return b""
            time.sleep(min(0.01, max(0.0, deadline - time.monotonic())))
        ctx.send_initial_metadata(up)
        return b"slept"

    def flaky(req, ctx):
        p = params(req)
        key = str(p.get("key", ""))
        with st.lock:
            attempt = st.flaky.get(key, 0) + 1
            st.flaky[key] = attempt
        if attempt <= int(p.get("fail", 0)):
            ctx.set_trailing_metadata(up)
            ctx.abort(code_of(p.get("code", 14)), f"flaky attempt {attempt}")
        ctx.send_initial_metadata(up)
        return json.dumps({"attempt": attempt}).encode()

    def headers(req, ctx):
        ctx.send_initial_metadata(up)
        md = [[k, v if isinstance(v, str) else v.hex()] for k, v in ctx.invocation_metadata()]
        return json.dumps({"metadata": md, "time_remaining": ctx.time_remaining()}).encode()

    def set_health(req, ctx):
        p = params(req)
        with st.lock:
            if p.get("status") is None:
                st.health.pop(str(p.get("service", "")), None)
            else:
                st.health[str(p.get("service", ""))] = int(p["status"])
        ctx.send_initial_metadata(up)
        return b"ok"

    def stats(req, ctx):
        ctx.send_initial_metadata(up)
        return json.dumps(st.as_json()).encode()

    table = {}
    for name, fn, maker in (
            ("Unary", unary, grpc.unary_unary_rpc_method_handler),
            ("ServerStream", server_stream, grpc.unary_stream_rpc_method_handler),
            ("ClientStream", client_stream, grpc.stream_unary_rpc_method_handler),
            ("Bidi", bidi, grpc.stream_stream_rpc_method_handler),
            ("Status", status, grpc.unary_unary_rpc_method_handler),
            ("Sleep", sleep, grpc.unary_unary_rpc_method_handler),
            ("Flaky", flaky, grpc.unary_unary_rpc_method_handler),
            ("Headers", headers, grpc.unary_unary_rpc_method_handler),
            ("SetHealth", set_health, grpc.unary_unary_rpc_method_handler),
            ("Stats", stats, grpc.unary_unary_rpc_method_handler)):
        run, run_gen = counted(name, fn)
        streaming_out = maker in (grpc.unary_stream_rpc_method_handler, grpc.stream_stream_rpc_method_handler)
        table[name] = maker(run_gen if streaming_out else run)
    return table


def varint(b, i):
    v = shift = 0
    while i < len(b):
        v |= (b[i] & 0x7f) << shift
        i += 1
        if not b[i - 1] & 0x80:
            return v, i
        shift += 7
    raise ValueError("truncated varint")


def health_methods(st):
    """grpc.health.v1.Health/Check over raw protobuf."""
    def check(req, ctx):
        service = ""
        try:
            if req[:1] == b"\x0a":
                n, i = varint(req, 1)
                service = req[i:i + n].decode()
        except (ValueError, UnicodeDecodeError):
            ctx.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad HealthCheckRequest")
        with st.lock:
            st.checks += 1
            st.check_service = service
            st.check_md = [[k, v if isinstance(v, str) else v.hex()] for k, v in ctx.invocation_metadata()]
            status = st.health.get(service)
        if status is None:
            ctx.abort(grpc.StatusCode.NOT_FOUND, "unknown service")
        return bytes([0x08, status]) if status else b""
    return {"Check": grpc.unary_unary_rpc_method_handler(check)}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", required=True, help="ADDR:PORT")
    ap.add_argument("--name", default="grpcup")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--fail", type=int, default=0, help="end every call with this status")
    args = ap.parse_args()
    if bool(args.cert) != bool(args.key):
        ap.error("--cert and --key go together")
    st = State(args.name)
    st.fail = args.fail
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=64),
        handlers=[grpc.method_handlers_generic_handler(SERVICE, methods(st)),
                  grpc.method_handlers_generic_handler("grpc.health.v1.Health", health_methods(st))],
        maximum_concurrent_rpcs=256,
        options=[("grpc.so_reuseport", 0), ("grpc.max_receive_message_length", MAX_MSG),
                 ("grpc.max_send_message_length", MAX_MSG)])
    return serve_grpc(server, "grpc_upstream", args.listen, args.cert, args.key)


if __name__ == "__main__":
    sys.exit(main())
