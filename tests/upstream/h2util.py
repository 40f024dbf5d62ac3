# SPDX-License-Identifier: Apache-2.0
"""What h2_upstream.py and h2_client.py share: the body pattern, and the GOAWAY
frames taken out of the bytes before the `h2` package sees them (h2 closes its
state machine on any GOAWAY, so the streams still open could not finish, which
is what a graceful GOAWAY is for); the bytes of each stream's frames."""

PATTERN = bytes(ord("a") + i % 26 for i in range(26 * 4096 + 26))
FRAME_HEAD = 9
GOAWAY = 0x7
MAX_FRAME = 1 << 24


def pattern(n, offset=0):
    """n bytes of the a..z pattern, starting at offset in it."""
    out = bytearray()
    while len(out) < n:
        off = (offset + len(out)) % 26
        out += PATTERN[off:off + min(len(PATTERN) - 26, n - len(out))]
    return bytes(out)


HEADERS = 0x1
CONTINUATION = 0x9


class GoawayFilter:
    """Splits the bytes a peer sends into frames: GOAWAY frames are kept back and
    reported as (last_stream_id, error_code); the rest is passed on. skip: bytes
    before the first frame (the client preface, on a server).

    It meters each stream's frames as Envoy and nghttp2 do: wire[id] all of
    them (9 bytes of frame header with each payload), head[id] its header
    blocks; a CONTINUATION counts its payload only (nghttp2 adds it to its
    HEADERS frame's length)."""

    def __init__(self, skip=0):
        self.skip = skip
        self.buf = bytearray()
        self.wire = {}
        self.head = {}

    def _meter(self, frame, length):
        sid = int.from_bytes(frame[5:9], "big") & 0x7fffffff
        if sid == 0:
            return
        size = length if frame[3] == CONTINUATION else FRAME_HEAD + length
        self.wire[sid] = self.wire.get(sid, 0) + size
        if frame[3] in (HEADERS, CONTINUATION):
            self.head[sid] = self.head.get(sid, 0) + size

    def feed(self, data):
        """Returns (bytes for h2, [(last_stream_id, error_code), ...])."""
        self.buf += data
        out = bytearray()
        goaways = []
        if self.skip:
            n = min(self.skip, len(self.buf))
            out += self.buf[:n]
            del self.buf[:n]
            self.skip -= n
        while len(self.buf) >= FRAME_HEAD:
            length = int.from_bytes(self.buf[0:3], "big")
            if length > MAX_FRAME:  # not HTTP/2: let h2 say so
                out += self.buf
                self.buf.clear()
                break
            if len(self.buf) < FRAME_HEAD + length:
                break
            frame = self.buf[:FRAME_HEAD + length]
            del self.buf[:FRAME_HEAD + length]
            self._meter(frame, length)
            if frame[3] == GOAWAY and length >= 8:
                last = int.from_bytes(frame[9:13], "big") & 0x7fffffff
                goaways.append((last, int.from_bytes(frame[13:17], "big")))
            else:
                out += frame
        return bytes(out), goaways
