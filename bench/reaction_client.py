#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""bench/reaction_client.py — load for bench/reaction.sh: how fast the gateway stops
sending traffic to an upstream that dies.

THREADS threads, each on its own keep-alive connection, send GET / at a paced rate
for DURATION seconds (and at most MAX requests in all), recording per request the
send time, the status (or the exception) and x-upstream. At KILL_AFTER seconds the
client sends SIGKILL to KILL_PID itself, so the kill time is on the same clock as
the requests. Meanwhile a sampler thread reads the gateway's per-endpoint attempt
counters ("show endpoints" on the control socket, field requests=) every SAMPLE_MS.

Reaction time: from the kill to the end of the last sampling window in which more
than 1 % of the gateway's upstream attempts (all endpoints of the service) went to
the killed endpoint. Resolution: one sampling window.

Prints one line of key=value results (see the end of main()). Standard library only.
"""

import argparse
import os
import re
import signal
import socket
import sys
import threading
import time

from reaction_common import Load, add_load_args, error_kinds, log_stamps, signal_now


def ctl(path, cmd, timeout=2.0):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
        s.sendall(cmd.encode() + b"\n")
        parts = []
        while True:
            d = s.recv(65536)
            if not d:
                break
            parts.append(d)
        return b"".join(parts).decode("utf-8", "replace")
    finally:
        s.close()


def attempts(path, service):
    """{"addr:port": requests} for the endpoints of service."""
    out = {}
    for line in ctl(path, "show endpoints").split("\n"):
        m = re.search(r"(\S+)\|(\S+:\d+)\s.*\brequests=(\d+)", line)
        if m and m.group(1) == service:
            out[m.group(2)] = int(m.group(3))
    return out


def pct(sorted_vals, p):
    if not sorted_vals:
        return float("nan")
    i = min(len(sorted_vals) - 1, max(0, int(round(p / 100.0 * len(sorted_vals) + 0.5)) - 1))
    return sorted_vals[i]


def main():
    ap = argparse.ArgumentParser()
    add_load_args(ap, rate=400.0, duration=3.0)
    ap.add_argument("--ctl", required=True, help="control socket path")
    ap.add_argument("--service", required=True)
    ap.add_argument("--dead", required=True, help="addr:port of the endpoint that is killed")
    ap.add_argument("--kill-pid", type=int, required=True)
    ap.add_argument("--kill-after", type=float, default=1.0)
    ap.add_argument("--sample-ms", type=float, default=5.0)
    ap.add_argument("--log", default=None, help="the gateway's log: time of its first ejection line")
    a = ap.parse_args()

    load = Load(a, "reaction.local")
    stop = threading.Event()

    samples = []  # (t, {addr:port: attempts})

    def sampler():
        period = a.sample_ms / 1000.0
        nxt = time.monotonic()
        while not stop.is_set():
            t = time.monotonic()
            try:
                samples.append((t, attempts(a.ctl, a.service)))
            except OSError:
                pass
            nxt += period
            d = nxt - time.monotonic()
            if d > 0:
                time.sleep(d)

    st = threading.Thread(target=sampler, daemon=True)
    st.start()
    load.start()
    load.sleep_until(a.kill_after)
    tk, kill_wall = signal_now(a.kill_pid, signal.SIGKILL, "reaction_client: the process to kill is gone")
    load.join()
    time.sleep(2 * a.sample_ms / 1000.0)
    stop.set()
    st.join(5)

    # --- the gateway's view: attempts per sampling window
    react = None
    dead_after = 0
    total_after = 0
    last_bad = None
    first_after = None
    for (ta, ca), (tb, cb) in zip(samples, samples[1:]):
        if tb <= tk:
            continue
        dd = cb.get(a.dead, 0) - ca.get(a.dead, 0)
        dt = sum(cb.values()) - sum(ca.values())
        if first_after is None:
            first_after = ta
        dead_after += dd
        total_after += dt
        if dd > 0 and dd * 100 > dt:
            last_bad = tb
    if first_after is None:
        print("reaction_client: no control-socket samples after the kill", file=sys.stderr)
        return 1
    react = max(0.0, (last_bad - tk)) if last_bad is not None else 0.0
    # the window before it: a lower bound
    react_lo = 0.0
    if last_bad is not None:
        prev = [t for t, _ in samples if t < last_bad]
        react_lo = max(0.0, prev[-1] - tk) if prev else 0.0
    # the gateway's own record of the ejection (wall clock, ms resolution)
    eject_ms = "-"
    for t, _ in log_stamps(a.log, r".*ejected by outlier detection"):
        eject_ms = f"{(t - kill_wall) * 1000:.0f}"
        break
    gaps = [tb - ta for (ta, _), (tb, _) in zip(samples, samples[1:])]
    max_gap = max(gaps) if gaps else float("nan")

    # --- the client's view
    records = sorted(load.records)
    ok = [r for r in records if r[2] == 200]
    bad = [r for r in records if r[2] != 200]
    before = sorted(r[1] - r[0] for r in records if r[0] < tk)
    after = sorted(r[1] - r[0] for r in records if tk <= r[0] < tk + 1.0)
    before_dead = sum(1 for r in ok if r[0] < tk and r[3] and r[3] == os.environ.get("DEAD_NAME", ""))
    n_before = sum(1 for r in records if r[0] < tk)
    # send time of the failed requests relative to the kill (negative: in flight at the kill)
    err_at = ",".join(f"{(r[0] - tk) * 1000:.1f}" for r in bad[:5]) or "-"
    print(f"requests={len(records)} errors={len(bad)} "
          f"error_kinds={error_kinds(r[2] for r in bad)} "
          f"error_sent_ms={err_at} "
          f"reaction_ms={react * 1000:.1f} reaction_lo_ms={react_lo * 1000:.1f} eject_log_ms={eject_ms} "
          f"dead_attempts_after_kill={dead_after} attempts_after_kill={total_after} "
          f"dead_share_before={100.0 * before_dead / n_before if n_before else 0:.1f} "
          f"p50_before_ms={pct(before, 50) * 1000:.2f} p99_before_ms={pct(before, 99) * 1000:.2f} "
          f"p99_1s_after_ms={pct(after, 99) * 1000:.2f} max_1s_after_ms={(after[-1] if after else 0) * 1000:.2f} "
          f"samples={len(samples)} max_sample_gap_ms={max_gap * 1000:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
