#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A WebSocket echo server for the tunnel tests (Debian's python3-websockets:
run it with harness.DEBIAN_PYTHON).

usage: ws_upstream.py --listen ADDR:PORT [--listen ...] [--name NAME]

Prints "listening on ADDR:PORT" per listener once it listens. Every answer,
the 101 included, has `x-upstream: NAME`. No compression is negotiated and no
pings are sent unasked, so what crosses the proxy is what the tests send.

Requests with `Upgrade: websocket` (a GET, as RFC 6455 wants), by path (the
query is ignored):
  /status/N   the upgrade is refused with status N (200..599), body
              "NAME /status/N\\n", `connection: close` (the proxy must treat it
              as an ordinary response)
  /report     after the 101, one text message: JSON {upstream, path,
              upgraded: true, headers: [[name, value], ...]} as received; then
              as below
  otherwise   after the 101, every message comes back as it came (text as
              text, binary as binary), except text commands starting with "!":
                !close CODE REASON  the server starts the close handshake
                !ping DATA          the server pings with DATA and, once the
                                    pong is back, sends the text "pong DATA"
                !flood N            the server sends N binary messages of
                                    64 KiB (byte i of message k: (k + i) % 251)
                                    as fast as the peer takes them
Requests without `Upgrade: websocket` (no Upgrade, or another protocol such as
h2c), GET only:
  /healthz       200 "ok"
  /__ctl/stats   200, JSON: open (tunnels now), upgraded (101s sent),
                 refused (upgrades answered otherwise), plain (other requests),
                 messages_in, bytes_in, bytes_out (payload bytes), closes (the
                 last 64 tunnels' close codes and reasons as received)
  otherwise      200, JSON {upstream, path, upgraded: false, headers: [...]}
"""

import argparse
import asyncio
import http
import json
import signal
import sys

import websockets
import websockets.exceptions
import websockets.legacy.server

MSG = 64 * 1024
MAX_FLOOD = 4096  # messages (256 MiB)


class Stats:
    def __init__(self):
        self.open = self.upgraded = self.refused = self.plain = 0
        self.messages_in = self.bytes_in = self.bytes_out = 0
        self.closes = []

    def as_json(self):
        return json.dumps({k: v for k, v in vars(self).items()}).encode()


STATS = Stats()


def flood_message(k):
    return bytes((k + i) % 251 for i in range(251)) * (MSG // 251) + bytes((k + i) % 251 for i in range(MSG % 251))


def report(name, path, headers, upgraded):
    return json.dumps({"upstream": name, "path": path, "upgraded": upgraded,
                       "headers": [[k, v] for k, v in headers.raw_items()]})


def make_process_request(name):
    async def process_request(path, headers):
        plain_path = path.split("?", 1)[0]
        upgrade = headers.get("Upgrade", "")
        hdrs = [("x-upstream", name), ("content-type", "text/plain")]
        if upgrade.lower() != "websocket":
            STATS.plain += 1
            if plain_path == "/healthz":
                return http.HTTPStatus.OK, hdrs, b"ok\n"
            if plain_path == "/__ctl/stats":
                return http.HTTPStatus.OK, hdrs, STATS.as_json()
            return http.HTTPStatus.OK, hdrs, report(name, path, headers, False).encode()
        if plain_path.startswith("/status/"):
            try:
                status = http.HTTPStatus(int(plain_path[len("/status/"):]))
            except ValueError:
                status = None
            if status is not None and 200 <= status <= 599:
                STATS.refused += 1
                return status, hdrs, f"{name} {plain_path}\n".encode()
        return None

    return process_request


async def command(ws, msg):
    verb, _, rest = msg[1:].partition(" ")
    if verb == "close":
        code, _, reason = rest.partition(" ")
        await ws.close(int(code), reason)
    elif verb == "ping":
        waiter = await ws.ping(rest.encode())
        await asyncio.wait_for(waiter, 30)
        await ws.send(f"pong {rest}")
    elif verb == "flood":
        for k in range(min(int(rest), MAX_FLOOD)):
            m = flood_message(k)
            await ws.send(m)
            STATS.bytes_out += len(m)
    else:
        await ws.send(f"unknown command {verb}")


def make_handler(name):
    async def handler(ws):
        STATS.open += 1
        STATS.upgraded += 1
        try:
            if ws.path.split("?", 1)[0] == "/report":
                await ws.send(report(name, ws.path, ws.request_headers, True))
            async for msg in ws:
                STATS.messages_in += 1
                STATS.bytes_in += len(msg)
                if isinstance(msg, str) and msg.startswith("!"):
                    await command(ws, msg)
                    continue
                await ws.send(msg)
                STATS.bytes_out += len(msg)
        except (websockets.exceptions.ConnectionClosed, asyncio.TimeoutError, ValueError):
            pass
        finally:
            STATS.open -= 1
            await ws.wait_closed()
            STATS.closes = (STATS.closes + [{"code": ws.close_code, "reason": ws.close_reason}])[-64:]

    return handler


async def main_async(args):
    servers = []
    for spec in args.listen:
        host, _, port = spec.rpartition(":")
        s = await websockets.serve(make_handler(args.name), host, int(port),
                                   process_request=make_process_request(args.name),
                                   extra_headers={"x-upstream": args.name}, compression=None,
                                   ping_interval=None, close_timeout=5, max_size=4 << 20, max_queue=64,
                                   backlog=1024, reuse_address=True)
        servers.append(s)
        for sock in s.sockets:
            h, p = sock.getsockname()[:2]
            print(f"listening on {h}:{p}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for s in servers:
        s.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", action="append", required=True, help="ADDR:PORT")
    ap.add_argument("--name", default="wsup")
    args = ap.parse_args()
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
