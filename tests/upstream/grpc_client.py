#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A gRPC test client (grpcio, generic calls over raw bytes) for grpc_upstream.py's
service, for tests that run under a python without grpcio.

Run it with Debian's python (/usr/bin/python3: python3-grpcio).

usage: grpc_client.py --target ADDR:PORT [--ca CRT [--sni NAME]] [--authority A]
                      [--parallel] CALLS

CALLS is a JSON list of calls, made over one channel (one HTTP/2 connection),
one after the other or, with --parallel, all at once:
  {"method": "Unary", "request": "text", "repeat": 1, "requests": ["a", "b"],
   "timeout": 5.0, "metadata": [["name", "value"]]}
The method's kind (unary, server streaming, client streaming, bidi) follows its
name (see grpc_upstream.py); "request" is sent "repeat" times concatenated, and
"requests" are the messages of a streaming request. Prints a JSON list, one
result per call: {"code": "OK", "code_value": 0, "details": "...",
"responses": [first 200 bytes of each, as latin-1], "count": N, "bytes": N,
"sha256": hex of all responses, "initial_metadata": [[k, v]],
"trailing_metadata": [[k, v]], "elapsed": seconds}.
Exits 0 when every call got a result (whatever its status), 2 on bad usage.
"""

import argparse
import hashlib
import json
import sys
import threading
import time

import grpc

SERVICE = "isthmus.test.Echo"
KINDS = {"ServerStream": "unary_stream", "ClientStream": "stream_unary", "Bidi": "stream_stream"}
CALL_TIMEOUT_CAP = 120.0
MAX_MSG = 4 * 1024 * 1024


def md_list(md):
    return [[k, v if isinstance(v, str) else v.hex()] for k, v in (md or ())]


def one_call(channel, spec):
    method = spec["method"]
    kind = KINDS.get(method, "unary_unary")
    stub = getattr(channel, kind)(f"/{SERVICE}/{method}")
    timeout = min(float(spec.get("timeout", 30.0)), CALL_TIMEOUT_CAP)
    metadata = [tuple(x) for x in spec.get("metadata", [])]
    request = spec.get("request", "").encode("latin-1") * int(spec.get("repeat", 1))
    requests = [r.encode("latin-1") for r in spec.get("requests", [])]
    out = {"responses": [], "count": 0, "bytes": 0}
    h = hashlib.sha256()
    t0 = time.monotonic()

    def take(m):
        out["responses"].append(m[:65536].decode("latin-1"))
        out["count"] += 1
        out["bytes"] += len(m)
        h.update(m)

    call = None
    try:
        if kind == "unary_unary":
            resp, call = stub.with_call(request, timeout=timeout, metadata=metadata)
            take(resp)
        elif kind == "stream_unary":
            resp, call = stub.with_call(iter(requests), timeout=timeout, metadata=metadata)
            take(resp)
        else:
            call = stub(request if kind == "unary_stream" else iter(requests), timeout=timeout,
                        metadata=metadata)
            for m in call:
                take(m)
        out["code"] = call.code().name
        out["details"] = call.details() or ""
    except grpc.RpcError as e:
        call = e
        out["code"] = e.code().name
        out["details"] = e.details() or ""
    out["code_value"] = grpc.StatusCode[out["code"]].value[0]
    try:
        out["initial_metadata"] = md_list(call.initial_metadata())
        out["trailing_metadata"] = md_list(call.trailing_metadata())
    except Exception:  # a call that never got going has no metadata
        out["initial_metadata"] = out["trailing_metadata"] = []
    out["sha256"] = h.hexdigest()
    out["elapsed"] = round(time.monotonic() - t0, 3)
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--target", required=True)
    ap.add_argument("--ca")
    ap.add_argument("--sni")
    ap.add_argument("--authority")
    ap.add_argument("--parallel", action="store_true")
    ap.add_argument("calls")
    args = ap.parse_args()
    try:
        calls = json.loads(args.calls)
        assert isinstance(calls, list) and all(isinstance(c, dict) and "method" in c for c in calls)
    except (ValueError, AssertionError):
        ap.error("CALLS must be a JSON list of objects with a method")
    options = [("grpc.enable_retries", 0), ("grpc.max_receive_message_length", MAX_MSG),
               ("grpc.max_send_message_length", MAX_MSG)]
    if args.authority:
        options.append(("grpc.default_authority", args.authority))
    if args.ca:
        if args.sni:
            options.append(("grpc.ssl_target_name_override", args.sni))
        with open(args.ca, "rb") as f:
            channel = grpc.secure_channel(args.target, grpc.ssl_channel_credentials(f.read()), options)
    else:
        channel = grpc.insecure_channel(args.target, options)
    results = [None] * len(calls)
    with channel:
        if args.parallel:
            def run(i):
                results[i] = one_call(channel, calls[i])

            threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
            for t in threads:
                t.start()
            for t in threads:
                t.join(CALL_TIMEOUT_CAP + 5)
        else:
            for i, c in enumerate(calls):
                results[i] = one_call(channel, c)
    json.dump(results, sys.stdout)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
