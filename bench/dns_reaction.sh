#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/dns_reaction.sh — how fast isthmus moves traffic to a name's new address when the
# DNS answer changes (resolution: DNS, dnsmasq as the server, TTL 2 s), and how many client
# requests fail meanwhile. See bench/README.md, section "DNS reaction".
# Usage: bash bench/dns_reaction.sh [BUILD_DIR]            (default BUILD_DIR: build)
# Environment: RUNS (5) WORKERS (2) THREADS (4) RATE (200 req/s per thread) TTL (2 s)
#              MIN_REFRESH (100ms) DURATION (7 s) CHANGE_AFTER (1 s) JITTER (TTL s) WINDOW_MS (50)
#              KEEP_TMP (0)
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -u

BUILD=${1:-build}
RUNS=${RUNS:-5}
WORKERS=${WORKERS:-2}
THREADS=${THREADS:-4}
RATE=${RATE:-200}
TTL=${TTL:-2}
MIN_REFRESH=${MIN_REFRESH:-100ms}
DURATION=${DURATION:-7}
CHANGE_AFTER=${CHANGE_AFTER:-1}
JITTER=${JITTER:-$TTL}
WINDOW_MS=${WINDOW_MS:-50}
DNSMASQ=${DNSMASQ:-/usr/sbin/dnsmasq}
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
SVC=web.dnsreaction.internal
NAME=app.dns.test

die() { echo "dns_reaction: $*" >&2; exit 1; }
case $RUNS$WORKERS$THREADS$TTL in *[!0-9]*) die "RUNS, WORKERS, THREADS, TTL must be integers";; esac
[ -x "$BUILD/isthmus" ] || die "$BUILD/isthmus is not built (make)"
[ -x "$BUILD/tests/upstream" ] || die "$BUILD/tests/upstream is not built (make)"
[ -x "$DNSMASQ" ] || die "$DNSMASQ not found (Debian package dnsmasq-base; make deps)"
for b in python3 curl; do command -v "$b" >/dev/null 2>&1 || die "$b not found"; done
ISTHMUS=$(cd "$(dirname "$BUILD/isthmus")" && pwd)/isthmus
UPSTREAM=$(cd "$(dirname "$BUILD/tests/upstream")" && pwd)/upstream

TMP=$(mktemp -d /tmp/isthmus-dns-reaction.XXXXXX) || die "mktemp failed"
STARTED=""   # pids of this run's processes (each in its own process group)

stop_run() {
	local p i alive
	for p in $STARTED; do kill -TERM -- "-$p" 2>/dev/null || kill -TERM "$p" 2>/dev/null; done
	for i in $(seq 1 30); do
		alive=""
		for p in $STARTED; do kill -0 "$p" 2>/dev/null && alive="$alive $p"; done
		[ -z "$alive" ] && break
		sleep 0.1
	done
	for p in $STARTED; do kill -KILL -- "-$p" 2>/dev/null; done
	wait 2>/dev/null
	STARTED=""
}
teardown() {
	trap - EXIT INT TERM HUP
	stop_run
	if [ "${KEEP_TMP:-0}" = 1 ]; then echo "dns_reaction: kept $TMP"; else rm -rf "$TMP"; fi
}
trap teardown EXIT
trap 'echo "dns_reaction: interrupted" >&2; exit 130' INT TERM HUP

mkdir -p "$BENCH_DIR/results"
RESULTS="$BENCH_DIR/results/dns-reaction-$(date +%Y%m%d-%H%M%S).txt"
: >"$RESULTS" || die "cannot write $RESULTS"
say() { printf '%s\n' "$*" | tee -a "$RESULTS"; }

# A port free for TCP (and, for dnsmasq, UDP too) on 127.0.0.1 a moment ago.
free_port() {
	python3 -c '
import socket
for _ in range(100):
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", 0)); p = u.getsockname()[1]
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", p)); print(p); break
    except OSError:
        pass
    finally:
        u.close(); t.close()'
}

# start_upstream NAME ADDR PORT
start_upstream() {
	local out="$TMP/run/up-$1.out" i
	setsid "$UPSTREAM" --name "$1" --listen "$2:$3=$1" >"$out" 2>&1 </dev/null &
	STARTED="$STARTED $!"
	for i in $(seq 1 50); do
		grep -q '^listening on' "$out" && return 0
		sleep 0.1
	done
	die "upstream $1 did not start on $2:$3: $(cat "$out")"
}

# One run, number $1. Sets RESULT_LINE.
one_run() {
	local run=$1 gw port dport i ok DNS_PID GW_PID line
	rm -rf "$TMP/run"
	mkdir -p "$TMP/run"
	port=$(free_port)
	start_upstream old 127.0.0.2 "$port"
	start_upstream new 127.0.0.3 "$port"
	dport=$(free_port)
	printf '127.0.0.2 %s\n' "$NAME" >"$TMP/run/hosts"
	setsid "$DNSMASQ" --no-daemon --port="$dport" --listen-address=127.0.0.1 --bind-interfaces --no-resolv \
		--no-hosts --addn-hosts="$TMP/run/hosts" --local-ttl="$TTL" --local=/dns.test/ \
		--log-facility="$TMP/run/dnsmasq.log" --user=root --group=root >"$TMP/run/dnsmasq.out" 2>&1 </dev/null &
	DNS_PID=$!
	STARTED="$STARTED $DNS_PID"
	gw=$(free_port)
	cat >"$TMP/run/isthmus.yaml" <<EOF
apiVersion: isthmus.io/v1
kind: Appliance
metadata: {name: dns-reaction}
spec:
  locality: eu-west/eu-west-1a
  workers: $WORKERS
  listenAddress: 127.0.0.1
  controlSocket: $TMP/run/ctl.sock
  timeouts: {upstreamConnect: 1s, upstreamResponse: 5s}
  dns:
    servers: ["127.0.0.1:$dport"]
    minRefresh: $MIN_REFRESH
    maxRefresh: 30s
    timeout: 1s
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  servers:
  - port: {number: $gw, name: http, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: ["*"]
  gateways: [gw]
  http:
  - route: [{destination: {host: $SVC}}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: web}
spec:
  hosts: [$SVC]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
  endpoints:
  - {address: $NAME, ports: {http: $port}, locality: eu-west/eu-west-1a}
EOF
	"$ISTHMUS" -c -f "$TMP/run/isthmus.yaml" >"$TMP/run/check.out" 2>&1 ||
		die "isthmus -c refused the generated file: $(cat "$TMP/run/check.out")"
	setsid "$ISTHMUS" -f "$TMP/run/isthmus.yaml" >"$TMP/run/isthmus.log" 2>&1 </dev/null &
	GW_PID=$!
	STARTED="$STARTED $GW_PID"
	ok=0
	for i in $(seq 1 100); do
		kill -0 "$GW_PID" 2>/dev/null || die "isthmus exited: $(tail -20 "$TMP/run/isthmus.log")"
		if curl -s -D - -o /dev/null -m 1 "http://127.0.0.1:$gw/" 2>/dev/null | grep -qi '^x-upstream: old'; then
			ok=1
			break
		fi
		sleep 0.1
	done
	[ "$ok" = 1 ] || die "isthmus did not serve from the name's address within 10 s: $(tail -20 "$TMP/run/isthmus.log")"
	# Warm the pooled connections of every worker.
	for i in $(seq 1 40); do curl -s -o /dev/null "http://127.0.0.1:$gw/"; done
	python3 "$BENCH_DIR/dns_reaction_client.py" --port "$gw" --hosts "$TMP/run/hosts" --dnsmasq-pid "$DNS_PID" \
		--name "$NAME" --new 127.0.0.3 --old-up old --new-up new --threads "$THREADS" --rate "$RATE" \
		--duration "$DURATION" --change-after "$CHANGE_AFTER" --jitter "$JITTER" --window-ms "$WINDOW_MS" \
		--log "$TMP/run/isthmus.log" >"$TMP/run/client.out" 2>"$TMP/run/client.err" ||
		die "client failed: $(cat "$TMP/run/client.err")"
	line=$(tail -1 "$TMP/run/client.out")
	stop_run
	RESULT_LINE="run=$run $line"
}

say "# isthmus DNS reaction bench $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
say "# command: $0 $* (RUNS=$RUNS WORKERS=$WORKERS THREADS=$THREADS RATE=$RATE TTL=$TTL MIN_REFRESH=$MIN_REFRESH DURATION=$DURATION CHANGE_AFTER=$CHANGE_AFTER JITTER=$JITTER WINDOW_MS=$WINDOW_MS)"
say "# host: $(uname -srm), $(nproc) CPUs; $("$DNSMASQ" --version | head -1); results file: $RESULTS"
LINES=()
for run in $(seq 1 "$RUNS"); do
	one_run "$run"
	say "$RESULT_LINE"
	LINES+=("$RESULT_LINE")
done

# field NAME LINE
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }
median() { grep -v '^-$' | sort -g | awk '{v[NR]=$1} END {if (NR==0) print "-"; else if (NR%2) print v[(NR+1)/2]; else printf "%.1f\n", (v[NR/2]+v[NR/2+1])/2}'; }
range() { grep -v '^-$' | sort -g | awk 'NR==1{a=$1} {b=$1} END {print a ".." b}'; }
col() { local l; for l in "${LINES[@]}"; do field "$1" "$l"; done; }
cell() { printf '%s (%s)' "$(col "$1" | median)" "$(col "$1" | range)"; }

say ""
say "medians over $RUNS runs (min..max); reaction = DNS change (hosts file + SIGHUP) -> start of the first ${WINDOW_MS} ms window from which on >= 99 % of answers come from the new address"
FMT='%-22s | %-22s | %-22s | %-22s | %-22s | %-14s | %-9s'
say "$(printf "$FMT" 'reaction ms' 'answer seen ms' 'then on new ms' 'first from new ms' 'last from old ms' 'failed' 'unsettled')"
say "$(printf "$FMT" ---------------------- ---------------------- ---------------------- ---------------------- ---------------------- -------------- --------- | tr ' ' '-')"
say "$(printf "$FMT" "$(cell reaction_ms)" "$(cell seen_ms)" "$(cell new_after_seen_ms)" "$(cell first_new_ms)" \
	"$(cell last_old_ms)" "$(cell errors)" "$(col settled | grep -c no)")"
