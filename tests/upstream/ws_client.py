#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A WebSocket client for the tunnel tests (Debian's python3-websockets: run it
with harness.DEBIAN_PYTHON): one connection, a list of steps, a JSON report.

usage: ws_client.py --url ws://HOST:PORT/PATH | wss://... [--connect ADDR:PORT]
                    [--ca CA] [--sni NAME] [--header NAME:VALUE]... [--ready FILE]
                    [--timeout S] STEPS

The URL's host goes in the Host header; --connect connects elsewhere (default:
the URL's host and port). No compression is offered and no pings are sent unasked. --ready FILE is
created once the handshake is done (a test running the client in the
background waits for it). STEPS is a JSON list; each step is an object with
"op" and its arguments, and gives one result object:
  echo       {count, size, window=8, text=false}: count messages of size bytes
             (random; text: ASCII), at most window unanswered; each answer must
             equal its message -> {sent, echoed, mismatched, seconds}
  send       {data, binary=false} -> {}
  recv       {timeout=10} -> {type: "text"|"binary", data (text) | len, sha256}
  drain      {count, timeout=30}: receives count messages -> {messages, bytes, seconds}
  ping       {data="", timeout=10} -> {pong: true, rtt_ms}
  chat       {seconds, interval, size=100}: one message each interval for
             seconds, each answer checked -> {rounds, ok}
  sleep      {seconds} -> {}
  wait_file  {path, timeout=30}: until the file exists -> {waited}
  close      {code=1000, reason="", timeout=10}: the close handshake -> {code,
             reason} of the peer's close frame, clean (a close frame came back)
  wait_close {timeout}: until the peer closes (or the connection drops) ->
             {closed, after (s since the step began), code, reason}
A step that fails ends the run: "error" names it (with its index in
"failed_step"). The report: {status (101 or the refusal), headers (of the
101), steps, error, failed_step, seconds}.
"""

import argparse
import asyncio
import hashlib
import json
import os
import ssl
import sys
import time

import websockets
import websockets.exceptions


class StepError(Exception):
    pass


async def step_echo(ws, a):
    count, size, window, text = a["count"], a["size"], a.get("window", 8), a.get("text", False)
    pending = asyncio.Queue()
    res = {"sent": 0, "echoed": 0, "mismatched": 0}
    sem = asyncio.Semaphore(window)
    t0 = time.monotonic()

    async def sender():
        for i in range(count):
            await sem.acquire()
            if text:
                m = os.urandom(size // 2 + 1).hex()[:size]
            else:
                m = os.urandom(size)
            await pending.put(m)
            await ws.send(m)
            res["sent"] += 1

    async def receiver():
        for i in range(count):
            got = await ws.recv()
            want = await pending.get()
            sem.release()
            res["echoed"] += 1
            if got != want:
                res["mismatched"] += 1

    await asyncio.gather(sender(), receiver())
    res["seconds"] = round(time.monotonic() - t0, 3)
    return res


async def step_recv(ws, a):
    m = await asyncio.wait_for(ws.recv(), a.get("timeout", 10))
    if isinstance(m, str):
        return {"type": "text", "data": m}
    return {"type": "binary", "len": len(m), "sha256": hashlib.sha256(m).hexdigest()}


async def step_drain(ws, a):
    t0 = time.monotonic()
    n = total = 0
    for _ in range(a["count"]):
        m = await asyncio.wait_for(ws.recv(), a.get("timeout", 30))
        n += 1
        total += len(m)
    return {"messages": n, "bytes": total, "seconds": round(time.monotonic() - t0, 3)}


async def step_ping(ws, a):
    t0 = time.monotonic()
    waiter = await ws.ping(a.get("data", "").encode())
    await asyncio.wait_for(waiter, a.get("timeout", 10))
    return {"pong": True, "rtt_ms": round((time.monotonic() - t0) * 1000, 2)}


async def step_chat(ws, a):
    deadline = time.monotonic() + a["seconds"]
    rounds = ok = 0
    while time.monotonic() < deadline:
        m = os.urandom(a.get("size", 100))
        await ws.send(m)
        got = await asyncio.wait_for(ws.recv(), 10)
        rounds += 1
        if got != m:
            raise StepError(f"chat round {rounds}: the echo differs from the message")
        ok += 1
        await asyncio.sleep(a["interval"])
    return {"rounds": rounds, "ok": ok}


async def step_wait_file(ws, a):
    t0 = time.monotonic()
    while not os.path.exists(a["path"]):
        if time.monotonic() - t0 > a.get("timeout", 30):
            raise StepError(f"{a['path']} did not appear within {a.get('timeout', 30)} s")
        await asyncio.sleep(0.02)
    return {"waited": round(time.monotonic() - t0, 3)}


async def step_close(ws, a):
    await asyncio.wait_for(ws.close(a.get("code", 1000), a.get("reason", "")), a.get("timeout", 10))
    rcvd = ws.close_rcvd
    return {"code": rcvd.code if rcvd else None, "reason": rcvd.reason if rcvd else None, "clean": rcvd is not None}


async def step_wait_close(ws, a):
    t0 = time.monotonic()
    try:
        await asyncio.wait_for(ws.wait_closed(), a["timeout"])
    except asyncio.TimeoutError:
        return {"closed": False, "after": round(time.monotonic() - t0, 3)}
    return {"closed": True, "after": round(time.monotonic() - t0, 3), "code": ws.close_code, "reason": ws.close_reason}


async def run(args, steps, report):
    ctx = None
    kw = {}
    if args.url.startswith("wss://"):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        if args.ca:
            ctx.load_verify_locations(args.ca)
        else:
            ctx.verify_mode = ssl.CERT_NONE
        kw["ssl"] = ctx
        kw["server_hostname"] = args.sni or "localhost"
    headers = [tuple(h.split(":", 1)) for h in args.header]
    if args.connect:
        addr, _, port = args.connect.rpartition(":")
        kw["host"], kw["port"] = addr, int(port)
    try:
        ws = await websockets.connect(args.url, compression=None, ping_interval=None, close_timeout=5,
                                      max_size=8 << 20, max_queue=64, extra_headers=headers, open_timeout=10, **kw)
    except websockets.exceptions.InvalidStatusCode as e:
        report["status"] = e.status_code
        report["error"] = f"handshake: {e}"
        return
    report["status"] = 101
    report["headers"] = [[k, v] for k, v in ws.response_headers.raw_items()]
    if args.ready:
        with open(args.ready + ".tmp", "w") as f:
            f.write("open\n")
        os.replace(args.ready + ".tmp", args.ready)
    ops = {"echo": step_echo, "send": None, "recv": step_recv, "drain": step_drain, "ping": step_ping,
           "chat": step_chat, "sleep": None, "wait_file": step_wait_file, "close": step_close,
           "wait_close": step_wait_close}
    try:
        for i, st in enumerate(steps):
            op = st.get("op")
            if op not in ops:
                raise StepError(f"unknown op {op!r}")
            try:
                if op == "send":
                    d = st["data"]
                    await ws.send(d.encode() if st.get("binary") else d)
                    r = {}
                elif op == "sleep":
                    await asyncio.sleep(st["seconds"])
                    r = {}
                else:
                    r = await ops[op](ws, st)
            except (StepError, asyncio.TimeoutError, websockets.exceptions.ConnectionClosed, OSError) as e:
                report["failed_step"] = i
                report["error"] = f"step {i} ({op}): {type(e).__name__}: {e}"
                report["close"] = {"code": ws.close_code, "reason": ws.close_reason}
                return
            r["op"] = op
            report["steps"].append(r)
    finally:
        if not ws.closed:
            ws.transport.abort()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", required=True)
    ap.add_argument("--ca")
    ap.add_argument("--sni")
    ap.add_argument("--connect")
    ap.add_argument("--header", action="append", default=[])
    ap.add_argument("--ready")
    ap.add_argument("--timeout", type=float, default=60)
    ap.add_argument("steps")
    args = ap.parse_args()
    steps = json.loads(args.steps)
    report = {"status": None, "headers": None, "steps": [], "error": None, "failed_step": None}
    t0 = time.monotonic()

    async def bounded():
        try:
            await asyncio.wait_for(run(args, steps, report), args.timeout)
        except asyncio.TimeoutError:
            report["error"] = report["error"] or f"not done within {args.timeout} s"
        except (OSError, websockets.exceptions.WebSocketException) as e:
            report["error"] = report["error"] or f"{type(e).__name__}: {e}"

    asyncio.run(bounded())
    report["seconds"] = round(time.monotonic() - t0, 3)
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
