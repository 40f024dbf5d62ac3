#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/dns_reaction_client.py — load for bench/dns_reaction.sh: how fast the gateway
moves traffic to a name's new address after the DNS answer changes.

THREADS threads, each on its own keep-alive connection, send GET / at a paced rate for
DURATION seconds (and at most MAX requests in all), recording per request the send
time, the status (or the exception) and x-upstream. At CHANGE_AFTER seconds plus a
random delay in [0, JITTER) (JITTER: the TTL, so that the change falls anywhere in the
gateway's refresh cycle rather than at the same phase every run) the client itself rewrites dnsmasq's hosts file (NAME now NEW) and sends dnsmasq SIGHUP, so the
change is on the clock of the requests.

Reaction: from the change to the start of the first WINDOW_MS window after which every
window has at least 99 % of its answered requests from the new upstream (NEW_UP, the
x-upstream of the new address). Resolution: one window. Failed requests: any answer
but 200, and any exception, during the whole run.

With --log (the gateway's log), also: when the gateway logged the new answer
(seen_ms, from the change; wall clock, ms resolution), and from then to the first
answer from the new address (new_after_seen_ms): the detection, bounded by the TTL,
apart from the publication.

Prints one line of key=value results. Standard library only.
"""

import argparse
import datetime
import http.client
import os
import random
import re
import signal
import sys
import threading
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--hosts", required=True, help="dnsmasq's hosts file (--addn-hosts)")
    ap.add_argument("--dnsmasq-pid", type=int, required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--new", required=True, help="the name's new address")
    ap.add_argument("--old-up", required=True, help="x-upstream of the old address")
    ap.add_argument("--new-up", required=True, help="x-upstream of the new address")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--rate", type=float, default=200.0, help="requests/s per thread")
    ap.add_argument("--duration", type=float, default=6.0)
    ap.add_argument("--change-after", type=float, default=1.0)
    ap.add_argument("--jitter", type=float, default=0.0, help="random extra delay of the change, s")
    ap.add_argument("--window-ms", type=float, default=50.0)
    ap.add_argument("--max", type=int, default=100000, help="requests in all, at most")
    ap.add_argument("--log", default=None, help="the gateway's log: when it saw the new answer")
    a = ap.parse_args()

    lock = threading.Lock()
    records = []  # (t_send, status or error, x-upstream)
    sent = [0]
    t0 = time.monotonic()
    t_end = t0 + a.duration

    def worker(idx):
        conn = None
        i = 0
        period = 1.0 / a.rate if a.rate > 0 else 0.0
        start = t0 + idx * period / max(1, a.threads)
        local = []
        while True:
            due = start + i * period
            now = time.monotonic()
            if due > now:
                time.sleep(due - now)
            now = time.monotonic()
            if now >= t_end:
                break
            with lock:
                if sent[0] >= a.max:
                    break
                sent[0] += 1
            i += 1
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", a.port, timeout=10)
                conn.request("GET", "/", headers={"Host": "dns-reaction.local"})
                r = conn.getresponse()
                r.read()
                status, up = r.status, r.getheader("x-upstream")
                if r.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as e:
                status, up = type(e).__name__, None
                if conn is not None:
                    conn.close()
                conn = None
            local.append((now, status, up))
        if conn is not None:
            conn.close()
        with lock:
            records.extend(local)

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(a.threads)]
    for th in threads:
        th.start()
    change_at = a.change_after + random.uniform(0.0, a.jitter)
    d = t0 + change_at - time.monotonic()
    if d > 0:
        time.sleep(d)
    tmp = a.hosts + ".new"
    with open(tmp, "w") as f:
        f.write(f"{a.new} {a.name}\n")
    os.replace(tmp, a.hosts)
    tc = time.monotonic()
    tc_wall = time.time()
    try:
        os.kill(a.dnsmasq_pid, signal.SIGHUP)
    except ProcessLookupError:
        print("dns_reaction_client: dnsmasq is gone", file=sys.stderr)
        return 1
    for th in threads:
        th.join(a.duration + 30)

    records.sort()
    w = a.window_ms / 1000.0
    errors = [r for r in records if r[1] != 200]
    kinds = {}
    for r in errors:
        kinds[str(r[1])] = kinds.get(str(r[1]), 0) + 1
    before = [r for r in records if r[0] < tc]
    after = [r for r in records if r[0] >= tc]
    # windows after the change: (start, answered, from the new address)
    nwin = int((t_end - tc) / w) + 1
    wins = [[tc + k * w, 0, 0] for k in range(nwin)]
    for t, st, up in after:
        k = min(nwin - 1, int((t - tc) / w))
        if st == 200:
            wins[k][1] += 1
            wins[k][2] += up == a.new_up
    react = None
    for k in range(nwin):
        if all(c == 0 or n * 100 >= 99 * c for _, c, n in wins[k:]) and any(c for _, c, _ in wins[k:]):
            react = wins[k][0] - tc
            break
    first_new = next((t - tc for t, st, up in after if st == 200 and up == a.new_up), None)
    last_old = max((t - tc for t, st, up in after if st == 200 and up == a.old_up), default=None)
    ok_before = [r for r in before if r[1] == 200]
    old_share_before = 100.0 * sum(1 for r in ok_before if r[2] == a.old_up) / len(ok_before) if ok_before else 0
    settled = react is not None and react + 1.0 < t_end - tc  # at least a second of windows after it

    def ms(v):
        return "-" if v is None else f"{v * 1000:.0f}"

    # The gateway's own record of the new answer (wall clock, ms resolution):
    # "2026-12-02T23:07:14.901Z master[516] notice: dns NAME: OLD -> NEW (ttl 2s)".
    seen = None
    if a.log:
        pat = re.compile(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3})Z .*\bdns " + re.escape(a.name)
                         + r": \S+ -> (\S+)")
        try:
            with open(a.log, encoding="utf-8", errors="replace") as f:
                for line in f:
                    m = pat.match(line)
                    if m and a.new in m.group(2).split(","):
                        t = datetime.datetime.strptime(m.group(1), "%Y-%m-%dT%H:%M:%S.%f")
                        t = t.replace(tzinfo=datetime.timezone.utc).timestamp()
                        if t >= tc_wall - 0.001:
                            seen = t - tc_wall
                            break
        except OSError:
            pass
    after_seen = first_new - seen if seen is not None and first_new is not None else None

    print(f"reaction_ms={ms(react)} seen_ms={ms(seen)} new_after_seen_ms={ms(after_seen)} "
          f"first_new_ms={ms(first_new)} last_old_ms={ms(last_old)} "
          f"errors={len(errors)} error_kinds={','.join(f'{k}:{v}' for k, v in sorted(kinds.items())) or '-'} "
          f"requests={len(records)} before={len(before)} old_share_before={old_share_before:.1f} "
          f"change_at_ms={change_at * 1000:.0f} window_ms={a.window_ms:g} settled={'yes' if settled else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
