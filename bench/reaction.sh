#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/reaction.sh — how fast isthmus stops sending traffic to an upstream that dies
# (SIGKILL), by passive ejection (outlier detection) and by active health checks alone,
# and how many client requests fail meanwhile. See bench/README.md, section "Reaction".
# Usage: bash bench/reaction.sh [BUILD_DIR]            (default BUILD_DIR: build)
# Environment: RUNS (3) WORKERS (2) THREADS (4) RATE (400 req/s per thread) DURATION (3 s)
#              KILL_AFTER (1 s) SAMPLE_MS (5) MODES ("passive active") KEEP_TMP (0)
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -u

BUILD=${1:-build}
RUNS=${RUNS:-3}
WORKERS=${WORKERS:-2}
THREADS=${THREADS:-4}
RATE=${RATE:-400}
DURATION=${DURATION:-3}
KILL_AFTER=${KILL_AFTER:-1}
SAMPLE_MS=${SAMPLE_MS:-5}
MODES=${MODES:-passive active}
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
SVC=web.reaction.internal

die() { echo "reaction: $*" >&2; exit 1; }
case $RUNS$WORKERS$THREADS in *[!0-9]*) die "RUNS, WORKERS, THREADS must be integers";; esac
[ -x "$BUILD/isthmus" ] || die "$BUILD/isthmus is not built (make)"
[ -x "$BUILD/tests/upstream" ] || die "$BUILD/tests/upstream is not built (make)"
for b in python3 curl; do command -v "$b" >/dev/null 2>&1 || die "$b not found"; done
ISTHMUS=$(cd "$(dirname "$BUILD/isthmus")" && pwd)/isthmus
UPSTREAM=$(cd "$(dirname "$BUILD/tests/upstream")" && pwd)/upstream

TMP=$(mktemp -d /tmp/isthmus-reaction.XXXXXX) || die "mktemp failed"
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
	if [ "${KEEP_TMP:-0}" = 1 ]; then echo "reaction: kept $TMP"; else rm -rf "$TMP"; fi
}
trap teardown EXIT
trap 'echo "reaction: interrupted" >&2; exit 130' INT TERM HUP

mkdir -p "$BENCH_DIR/results"
RESULTS="$BENCH_DIR/results/reaction-$(date +%Y%m%d-%H%M%S).txt"
: >"$RESULTS" || die "cannot write $RESULTS"
say() { printf '%s\n' "$*" | tee -a "$RESULTS"; }

# A TCP port that was free a moment ago.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# start_upstream NAME ADDR ZONE -> sets UP_PORT, UP_PID
start_upstream() {
	local out="$TMP/run/up-$1.out" i
	setsid "$UPSTREAM" --name "$1" --listen "$2:0=$1" --zone "$3" >"$out" 2>&1 </dev/null &
	UP_PID=$!
	disown "$UP_PID"   # no "Killed" job report when the client SIGKILLs it
	STARTED="$STARTED $UP_PID"
	for i in $(seq 1 50); do
		UP_PORT=$(sed -n 's/^listening on [0-9.]*:\([0-9]*\)$/\1/p' "$out" | head -1)
		[ -n "$UP_PORT" ] && return 0
		sleep 0.1
	done
	die "upstream $1 did not start: $(cat "$out")"
}

# ctl CMD: one control-socket command.
ctl() {
	python3 - "$TMP/run/ctl.sock" "$1" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(2); s.connect(sys.argv[1])
s.sendall(sys.argv[2].encode() + b"\n"); b = b""
while True:
    d = s.recv(65536)
    if not d: break
    b += d
sys.stdout.write(b.decode())
EOF
}

# One run: mode $1 (passive | active), run number $2. Sets RESULT_LINE.
one_run() {
	local mode=$1 run=$2 gw hc od i ok
	rm -rf "$TMP/run"
	mkdir -p "$TMP/run"
	start_upstream l1 127.0.0.1 eu-west/eu-west-1a; local L1=$UP_PORT L1_PID=$UP_PID
	start_upstream l2 127.0.0.1 eu-west/eu-west-1a; local L2=$UP_PORT
	start_upstream r1 127.0.0.2 eu-west/eu-west-1b; local R1=$UP_PORT
	start_upstream r2 127.0.0.3 eu-west/eu-west-1c; local R2=$UP_PORT
	gw=$(free_port)
	if [ "$mode" = passive ]; then
		# Outlier detection ejects at the first connect failure; the active check is
		# slow (it would take 15 s to notice), so the reaction is the passive one.
		hc="{host: $SVC, path: /healthz, interval: 5s, timeout: 1s, healthyThreshold: 1, unhealthyThreshold: 3}"
		od="    outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 30s}"
	else
		# Active checks only: without outlierDetection Istio sets up no locality
		# priorities, so the four endpoints share the traffic.
		hc="{host: $SVC, path: /healthz, interval: 200ms, timeout: 200ms, healthyThreshold: 1, unhealthyThreshold: 2}"
		od=""
	fi
	cat >"$TMP/run/isthmus.yaml" <<EOF
apiVersion: isthmus.io/v1
kind: Appliance
metadata: {name: reaction}
spec:
  locality: eu-west/eu-west-1a
  workers: $WORKERS
  listenAddress: 127.0.0.1
  controlSocket: $TMP/run/ctl.sock
  timeouts: {upstreamConnect: 1s, upstreamResponse: 5s}
  healthChecks:
  - $hc
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
  resolution: STATIC
  endpoints:
  - {address: 127.0.0.1, ports: {http: $L1}, locality: eu-west/eu-west-1a}
  - {address: 127.0.0.1, ports: {http: $L2}, locality: eu-west/eu-west-1a}
  - {address: 127.0.0.2, ports: {http: $R1}, locality: eu-west/eu-west-1b}
  - {address: 127.0.0.3, ports: {http: $R2}, locality: eu-west/eu-west-1c}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web}
spec:
  host: $SVC
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST}
$od
EOF
	"$ISTHMUS" -c -f "$TMP/run/isthmus.yaml" >"$TMP/run/check.out" 2>&1 ||
		die "isthmus -c refused the generated file: $(cat "$TMP/run/check.out")"
	setsid "$ISTHMUS" -f "$TMP/run/isthmus.yaml" >"$TMP/run/isthmus.log" 2>&1 </dev/null &
	local GW_PID=$!
	disown "$GW_PID"
	STARTED="$STARTED $GW_PID"
	ok=0
	for i in $(seq 1 100); do
		kill -0 "$GW_PID" 2>/dev/null || die "isthmus exited: $(tail -20 "$TMP/run/isthmus.log")"
		if [ "$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$gw/")" = 200 ] &&
			[ -S "$TMP/run/ctl.sock" ] && [ "$(ctl 'show endpoints' | grep -c "^[0-9]* $SVC|.*health=healthy")" = 4 ]; then
			ok=1
			break
		fi
		sleep 0.1
	done
	[ "$ok" = 1 ] || die "isthmus did not serve with 4 healthy endpoints within 10 s: $(tail -20 "$TMP/run/isthmus.log")"
	# Warm the pooled connections of every worker.
	for i in $(seq 1 40); do curl -s -o /dev/null "http://127.0.0.1:$gw/"; done
	DEAD_NAME=l1 python3 "$BENCH_DIR/reaction_client.py" --port "$gw" --ctl "$TMP/run/ctl.sock" \
		--service "$SVC" --dead "127.0.0.1:$L1" --kill-pid "$L1_PID" --threads "$THREADS" \
		--rate "$RATE" --duration "$DURATION" --kill-after "$KILL_AFTER" --sample-ms "$SAMPLE_MS" \
		--log "$TMP/run/isthmus.log" \
		>"$TMP/run/client.out" 2>"$TMP/run/client.err" ||
		die "client failed: $(cat "$TMP/run/client.err")"
	local line
	line=$(tail -1 "$TMP/run/client.out")
	local ej
	ej=$(grep -c 'ejected by outlier detection' "$TMP/run/isthmus.log")
	stop_run
	RESULT_LINE="mode=$mode run=$run $line ejections_logged=$ej"
}

say "# isthmus reaction bench $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
say "# command: $0 $* (RUNS=$RUNS WORKERS=$WORKERS THREADS=$THREADS RATE=$RATE DURATION=$DURATION KILL_AFTER=$KILL_AFTER SAMPLE_MS=$SAMPLE_MS)"
say "# host: $(uname -srm), $(nproc) CPUs; results file: $RESULTS"
LINES=()
for run in $(seq 1 "$RUNS"); do
	for mode in $MODES; do   # interleaved: passive, active, passive, ...
		one_run "$mode" "$run"
		say "$RESULT_LINE"
		LINES+=("$RESULT_LINE")
	done
done

# field NAME LINE
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }
median() { sort -g | awk '{v[NR]=$1} END {if (NR==0) print "-"; else if (NR%2) print v[(NR+1)/2]; else printf "%.1f\n", (v[NR/2]+v[NR/2+1])/2}'; }
range() { sort -g | awk 'NR==1{a=$1} {b=$1} END {print a ".." b}'; }

say ""
say "medians over $RUNS runs (min..max); reaction = kill -> last ${SAMPLE_MS} ms window with > 1 % of attempts to the killed endpoint"
FMT='%-8s | %-22s | %-18s | %-14s | %-20s | %-20s'
say "$(printf "$FMT" mode 'reaction ms' 'attempts to dead' 'client errors' 'p99 ms before kill' 'p99 ms 1 s after')"
say "$(printf "$FMT" -------- ---------------------- ------------------ -------------- -------------------- -------------------- | tr ' ' '-')"
for mode in $MODES; do
	sel=()
	for l in "${LINES[@]}"; do [ "$(field mode "$l")" = "$mode" ] && sel+=("$l"); done
	col() { for l in "${sel[@]}"; do field "$1" "$l"; done; }
	cell() { printf '%s (%s)' "$(col "$1" | median)" "$(col "$1" | range)"; }
	say "$(printf "$FMT" "$mode" "$(cell reaction_ms)" \
		"$(cell dead_attempts_after_kill)" "$(cell errors)" "$(cell p99_before_ms)" "$(cell p99_1s_after_ms)")"
done
