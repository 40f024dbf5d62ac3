#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""An HTTP/1.1 CONNECT proxy for the tests of a DestinationRule's tunnel: a
TCP or TLS route's bytes reach their target through it, as through an
egress proxy.

Python standard library only (run it with any python3; the tests use
harness.DEBIAN_PYTHON like the other tools).

usage: connect_proxy.py --listen ADDR:PORT [--ctl ADDR:PORT]

Prints "listening on ADDR:PORT" once it listens (port 0: the kernel's choice),
then "control on ADDR:PORT" for --ctl.

Each connection sends one request head. A CONNECT to HOST:PORT, or a POST
whose Host field is HOST:PORT (Envoy's tunnel over POST: the bytes follow the
head as its body, neither chunked nor counted), connects there and answers
"HTTP/1.1 200 Connection established", in one write with
what the target sent first (a server that speaks first: its first bytes
within 0.5 s), then carries bytes both ways until either side closes. Any
other request, or a target that cannot be reached, gets a 400 or 502 and the
close. With the answer set to a status other than 200 (control "answer N"),
every CONNECT gets that status and the close, the target not connected; set
to 0, no answer at all (the connection is held until the client closes it).

The control listener (plain TCP, one command line per connection, answered by
one JSON line, then closed):
  stats       {"heads": [each request head, as received], "tunnels": count}
  answer N    answer CONNECTs with status N from now on (200: as usual; 0: never)
Every answer is the stats object after the command.
"""

import argparse
import asyncio
import json
import signal
import sys

MAX_HEAD = 16384


class Proxy:
    def __init__(self):
        self.heads = []
        self.tunnels = 0
        self.answer = 200

    def stats(self):
        return {"heads": self.heads, "tunnels": self.tunnels, "answer": self.answer}

    async def pipe(self, reader, writer):
        try:
            while True:
                data = await reader.read(65536)
                if not data:
                    break
                writer.write(data)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            writer.close()

    async def client(self, reader, writer):
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        text = head.decode("latin-1")
        self.heads.append(text)
        parts = text.split("\r\n", 1)[0].split(" ")
        hosts = [ln.split(":", 1)[1].strip() for ln in text.split("\r\n")[1:] if ln.lower().startswith("host:")]
        target = parts[1] if len(parts) == 3 and parts[0] == "CONNECT" else \
            hosts[0] if len(parts) == 3 and parts[0] == "POST" and len(hosts) == 1 else ""
        if ":" not in target:
            await self.refuse(writer, 400, "Bad Request")
            return
        if self.answer == 0:
            await reader.read()  # until the client closes
            writer.close()
            return
        if self.answer != 200:
            await self.refuse(writer, self.answer, "Refused")
            return
        host, _, port = target.rpartition(":")
        try:
            up_r, up_w = await asyncio.open_connection(host.strip("[]"), int(port))
        except (OSError, ValueError):
            await self.refuse(writer, 502, "Bad Gateway")
            return
        first = b""
        try:
            first = await asyncio.wait_for(up_r.read(65536), 0.5)
        except asyncio.TimeoutError:
            pass
        self.tunnels += 1
        writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n" + first)
        await writer.drain()
        await asyncio.gather(self.pipe(reader, up_w), self.pipe(up_r, writer))
        up_w.close()
        writer.close()

    async def refuse(self, writer, status, reason):
        writer.write(b"HTTP/1.1 %d %s\r\ncontent-length: 0\r\nconnection: close\r\n\r\n" %
                     (status, reason.encode()))
        try:
            await writer.drain()
        except ConnectionError:
            pass
        writer.close()

    async def control(self, reader, writer):
        try:
            line = (await reader.readline()).decode().split()
        except ConnectionError:
            writer.close()
            return
        if len(line) == 2 and line[0] == "answer" and line[1].isdigit():
            self.answer = int(line[1])
            out = self.stats()
        elif line == ["stats"]:
            out = self.stats()
        else:
            out = {"error": f"unknown command {line!r}"}
        writer.write(json.dumps(out).encode() + b"\n")
        await writer.drain()
        writer.close()


async def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", required=True)
    ap.add_argument("--ctl")
    args = ap.parse_args()
    p = Proxy()
    addr, _, port = args.listen.rpartition(":")
    server = await asyncio.start_server(p.client, addr, int(port), limit=MAX_HEAD)
    print(f"listening on {addr}:{server.sockets[0].getsockname()[1]}", flush=True)
    if args.ctl:
        caddr, _, cport = args.ctl.rpartition(":")
        ctl = await asyncio.start_server(p.control, caddr, int(cport))
        print(f"control on {caddr}:{ctl.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
