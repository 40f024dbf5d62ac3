# SPDX-License-Identifier: Apache-2.0
"""bench/reaction_common.py — shared by bench/reaction_client.py and
bench/dns_reaction_client.py (imported from the scripts' own directory): their
common options, the paced keep-alive load, the gateway's log time stamps and the
summary of failed requests. Standard library only."""

import datetime
import http.client
import os
import re
import sys
import threading
import time

# The gateway's log lines begin with a UTC time stamp of millisecond resolution:
# "2026-12-02T23:07:14.901Z master[516] notice: ...".
LOG_STAMP = r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z "


def add_load_args(ap, rate, duration):
    """The options of the load: --port (the gateway's), --threads, --rate (requests/s
    per thread, default rate), --duration (s, default duration), --max."""
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--rate", type=float, default=rate, help="requests/s per thread")
    ap.add_argument("--duration", type=float, default=duration)
    ap.add_argument("--max", type=int, default=100000, help="requests in all, at most")


class Load:
    """a.threads threads, each on its own keep-alive connection to 127.0.0.1:a.port,
    send GET / (Host: host) paced at a.rate requests/s each, from the time of the
    constructor (t0) for a.duration seconds (until t_end) and at most a.max requests
    in all. records: per request (t_send, t_done, status or exception name,
    x-upstream), once join() has returned."""

    def __init__(self, a, host):
        self.a = a
        self.host = host
        self.records = []
        self.lock = threading.Lock()
        self.sent = 0
        self.t0 = time.monotonic()
        self.t_end = self.t0 + a.duration
        self.threads = [threading.Thread(target=self._worker, args=(i,), daemon=True) for i in range(a.threads)]

    def start(self):
        for th in self.threads:
            th.start()

    def sleep_until(self, offset):
        """Sleeps until offset seconds after t0."""
        d = self.t0 + offset - time.monotonic()
        if d > 0:
            time.sleep(d)

    def join(self):
        for th in self.threads:
            th.join(self.a.duration + 30)

    def _get(self, conn):
        """One GET on conn (None: a new connection). Returns (conn to use next or
        None, status or exception name, x-upstream)."""
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.a.port, timeout=10)
            conn.request("GET", "/", headers={"Host": self.host})
            r = conn.getresponse()
            r.read()
            status, up = r.status, r.getheader("x-upstream")
            if r.will_close:
                conn.close()
                conn = None
            return conn, status, up
        except (OSError, http.client.HTTPException) as e:
            if conn is not None:
                conn.close()
            return None, type(e).__name__, None

    def _worker(self, idx):
        a = self.a
        conn = None
        i = 0
        period = 1.0 / a.rate if a.rate > 0 else 0.0
        start = self.t0 + idx * period / max(1, a.threads)  # spread the threads over one period
        local = []
        while True:
            due = start + i * period
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            now = time.monotonic()
            if now >= self.t_end:
                break
            with self.lock:
                if self.sent >= a.max:
                    break
                self.sent += 1
            i += 1
            conn, status, up = self._get(conn)
            local.append((now, time.monotonic(), status, up))
        if conn is not None:
            conn.close()
        with self.lock:
            self.records.extend(local)


def signal_now(pid, sig, gone):
    """Sends sig to pid. Returns the (monotonic, wall-clock) time it was sent; when pid
    is gone, exits with status 1 and the message gone on stderr."""
    t, wall = time.monotonic(), time.time()
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        sys.exit(gone)
    return t, wall


def log_stamps(path, pattern):
    """The lines of the gateway's log at path that match LOG_STAMP + pattern, in
    order: (wall-clock time of the line, the match). None for path: none."""
    if not path:
        return
    pat = re.compile(LOG_STAMP + pattern)
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                m = pat.match(line)
                if m:
                    t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f")
                    yield t.replace(tzinfo=datetime.timezone.utc).timestamp(), m
    except OSError:
        pass


def error_kinds(statuses):
    """'KIND:COUNT,...' of the statuses (or exception names) of failed requests, '-' for none."""
    kinds = {}
    for st in statuses:
        kinds[str(st)] = kinds.get(str(st), 0) + 1
    return ",".join(f"{k}:{v}" for k, v in sorted(kinds.items())) or "-"
