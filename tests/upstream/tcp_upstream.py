#!/usr/bin/python3
# SPDX-License-Identifier: Apache-2.0
"""A test backend for TCP and TLS-passthrough tunnels: a TCP echo server that
says who it is, optionally behind TLS with a certificate of its own.

Python standard library only (run it with any python3; the tests use
harness.DEBIAN_PYTHON like the other tools).

usage: tcp_upstream.py --listen ADDR:PORT [--name NAME] [--ctl ADDR:PORT]
                       [--cert CRT --key KEY] [--no-greet]

Prints "listening on ADDR:PORT" once it listens (port 0: the kernel's choice),
then "control on ADDR:PORT" for --ctl.

Each connection (with --cert: once its TLS handshake is done) is greeted with
one line, "NAME\\n" (TLS: "NAME sni=SERVER_NAME\\n", "-" without SNI), unless
--no-greet; then every byte received is sent back, until the peer closes.

The control listener (plain TCP, one command line per connection, answered by
one JSON line, then closed):
  stats    {"name", "port", "mode", "listening", "accepted", "open", "closed",
           "reset", "bytes_in", "bytes_out", "sni": {name: connections}}
  refuse   stop listening: new connections are refused (ECONNREFUSED)
  accept   listen again, on the same port
  reset    accept new connections and reset them at once (RST, no greeting)
  normal   back to greeting and echoing new connections
  close    close every open connection (FIN)
  pause    stop reading from every connection (new ones too); resume: read again
  halfclose  new connections: the greeting, then the backend's end (a FIN, TLS:
           nothing more sent), the peer's bytes read and counted, not echoed,
           until it closes (normal: back to echoing)
Every answer is the stats object after the command.
"""

import argparse
import asyncio
import json
import signal
import socket
import ssl
import struct
import sys

IDLE_S = 600  # a connection silent that long is closed (a leak guard, not a test knob)
CHUNK = 256 * 1024


class Upstream:
    def __init__(self, args):
        self.name = args.name
        self.greet = not args.no_greet
        host, _, port = args.listen.rpartition(":")
        self.host, self.port = host, int(port)
        self.ctx = None
        self.sni_of = {}
        if args.cert:
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            self.ctx.load_cert_chain(args.cert, args.key)
            self.ctx.sni_callback = self._sni
        self.server = None
        self.mode = "normal"
        self.writers = set()
        self.accepted = self.closed = self.reset = 0
        self.bytes_in = self.bytes_out = 0
        self.sni = {}
        self.reading = asyncio.Event()
        self.reading.set()

    def _sni(self, sslobj, name, _ctx):
        self.sni_of[id(sslobj)] = name
        return None

    def stats(self):
        return {"name": self.name, "port": self.port, "mode": self.mode, "listening": self.server is not None,
                "accepted": self.accepted, "open": len(self.writers), "closed": self.closed, "reset": self.reset,
                "paused": not self.reading.is_set(), "bytes_in": self.bytes_in, "bytes_out": self.bytes_out,
                "sni": self.sni}

    async def listen(self):
        self.server = await asyncio.start_server(self.on_conn, self.host, self.port, ssl=self.ctx, backlog=1024,
                                                 reuse_address=True, ssl_handshake_timeout=10 if self.ctx else None)
        self.port = self.server.sockets[0].getsockname()[1]

    async def unlisten(self):
        if self.server is not None:
            self.server.close()
            await self.server.wait_closed()
            self.server = None

    async def on_conn(self, reader, writer):
        sock = writer.get_extra_info("socket")
        if self.mode == "reset":
            self.reset += 1
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            except OSError:
                pass
            writer.transport.abort()
            return
        self.accepted += 1
        self.writers.add(writer)
        try:
            if sock is not None:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            line = self.name
            if self.ctx is not None:
                sni = self.sni_of.pop(id(writer.get_extra_info("ssl_object")), None)
                self.sni[sni or "-"] = self.sni.get(sni or "-", 0) + 1
                line += f" sni={sni or '-'}"
            if self.greet:
                data = (line + "\n").encode()
                writer.write(data)
                self.bytes_out += len(data)
                await writer.drain()
            if self.mode == "halfclose":
                if writer.can_write_eof():
                    writer.write_eof()
                elif sock is not None:
                    sock.shutdown(socket.SHUT_WR)
                while data := await asyncio.wait_for(reader.read(CHUNK), IDLE_S):
                    self.bytes_in += len(data)
                return
            while True:
                await asyncio.wait_for(self.reading.wait(), IDLE_S)
                data = await asyncio.wait_for(reader.read(CHUNK), IDLE_S)
                if not data:
                    break
                self.bytes_in += len(data)
                writer.write(data)
                await writer.drain()
                self.bytes_out += len(data)
        except (OSError, asyncio.TimeoutError, ssl.SSLError, asyncio.IncompleteReadError):
            pass
        finally:
            self.writers.discard(writer)
            self.closed += 1
            try:
                writer.close()
            except (OSError, RuntimeError):
                pass

    async def on_ctl(self, reader, writer):
        try:
            cmd = (await asyncio.wait_for(reader.readline(), 5)).decode("ascii", "replace").strip()
            if cmd == "refuse":
                await self.unlisten()
            elif cmd == "accept":
                if self.server is None:
                    await self.listen()
            elif cmd in ("reset", "normal", "halfclose"):
                self.mode = cmd
            elif cmd == "pause":
                self.reading.clear()
            elif cmd == "resume":
                self.reading.set()
            elif cmd == "close":
                for w in list(self.writers):
                    try:
                        w.close()
                    except (OSError, RuntimeError):
                        pass
            elif cmd != "stats":
                writer.write(json.dumps({"error": f"unknown command {cmd!r}"}).encode() + b"\n")
                return
            writer.write(json.dumps(self.stats()).encode() + b"\n")
            await writer.drain()
        except (OSError, asyncio.TimeoutError):
            pass
        finally:
            writer.close()


async def main_async(args):
    up = Upstream(args)
    await up.listen()
    print(f"listening on {up.host}:{up.port}", flush=True)
    ctl = None
    if args.ctl:
        h, _, p = args.ctl.rpartition(":")
        ctl = await asyncio.start_server(up.on_ctl, h, int(p), reuse_address=True)
        print(f"control on {h}:{ctl.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await up.unlisten()
    if ctl:
        ctl.close()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--listen", required=True, help="ADDR:PORT")
    ap.add_argument("--name", default="tcpup")
    ap.add_argument("--ctl", help="ADDR:PORT of the control listener")
    ap.add_argument("--cert")
    ap.add_argument("--key")
    ap.add_argument("--no-greet", action="store_true")
    args = ap.parse_args()
    if bool(args.cert) != bool(args.key):
        ap.error("--cert and --key go together")
    try:
        asyncio.run(main_async(args))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
