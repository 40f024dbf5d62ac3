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
import os
import random
import re
import signal
import sys

from reaction_common import Load, add_load_args, error_kinds, log_stamps, signal_now


def main():
    ap = argparse.ArgumentParser()
    add_load_args(ap, rate=200.0, duration=6.0)
    ap.add_argument("--hosts", required=True, help="dnsmasq's hosts file (--addn-hosts)")
    ap.add_argument("--dnsmasq-pid", type=int, required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--new", required=True, help="the name's new address")
    ap.add_argument("--old-up", required=True, help="x-upstream of the old address")
    ap.add_argument("--new-up", required=True, help="x-upstream of the new address")
    ap.add_argument("--change-after", type=float, default=1.0)
    ap.add_argument("--jitter", type=float, default=0.0, help="random extra delay of the change, s")
    ap.add_argument("--window-ms", type=float, default=50.0)
    ap.add_argument("--log", default=None, help="the gateway's log: when it saw the new answer")
    a = ap.parse_args()

    load = Load(a, "dns-reaction.local")
    load.start()
    change_at = a.change_after + random.uniform(0.0, a.jitter)
    load.sleep_until(change_at)
    tmp = a.hosts + ".new"
    with open(tmp, "w") as f:
        f.write(f"{a.new} {a.name}\n")
    os.replace(tmp, a.hosts)
    tc, tc_wall = signal_now(a.dnsmasq_pid, signal.SIGHUP, "dns_reaction_client: dnsmasq is gone")
    load.join()

    # (t_send, status, x-upstream) per request
    records = sorted((r[0], r[2], r[3]) for r in load.records)
    t_end = load.t_end
    w = a.window_ms / 1000.0
    errors = [r for r in records if r[1] != 200]
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
    for t, m in log_stamps(a.log, r".*\bdns " + re.escape(a.name) + r": \S+ -> (\S+)"):
        if a.new in m.group(2).split(",") and t >= tc_wall - 0.001:
            seen = t - tc_wall
            break
    after_seen = first_new - seen if seen is not None and first_new is not None else None

    print(f"reaction_ms={ms(react)} seen_ms={ms(seen)} new_after_seen_ms={ms(after_seen)} "
          f"first_new_ms={ms(first_new)} last_old_ms={ms(last_old)} "
          f"errors={len(errors)} error_kinds={error_kinds(r[1] for r in errors)} "
          f"requests={len(records)} before={len(before)} old_share_before={old_share_before:.1f} "
          f"change_at_ms={change_at * 1000:.0f} window_ms={a.window_ms:g} settled={'yes' if settled else 'no'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
