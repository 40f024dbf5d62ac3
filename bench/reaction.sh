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

BENCH_NAME=reaction
BENCH_FILES=reaction
. "$BENCH_DIR/reaction_lib.sh"
need_integers RUNS WORKERS THREADS
reaction_init

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

# True when the gateway on port $1 answers 200 and shows the four endpoints healthy.
all_healthy() {
	[ "$(curl -s -o /dev/null -m 1 -w '%{http_code}' "http://127.0.0.1:$1/")" = 200 ] &&
		[ -S "$TMP/run/ctl.sock" ] && [ "$(ctl 'show endpoints' | grep -c "^[0-9]* $SVC|.*health=healthy")" = 4 ]
}

# One run: mode $1 (passive | active), run number $2. Sets RESULT_LINE.
one_run() {
	local mode=$1 run=$2 gw hc od ej
	rm -rf "$TMP/run"
	mkdir -p "$TMP/run"
	start_upstream l1 127.0.0.1 0 eu-west/eu-west-1a; local L1=$UP_PORT L1_PID=$UP_PID
	start_upstream l2 127.0.0.1 0 eu-west/eu-west-1a; local L2=$UP_PORT
	start_upstream r1 127.0.0.2 0 eu-west/eu-west-1b; local R1=$UP_PORT
	start_upstream r2 127.0.0.3 0 eu-west/eu-west-1c; local R2=$UP_PORT
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
	{
		reaction_yaml reaction "$gw" STATIC "  healthChecks:" "  - $hc"
		cat <<EOF
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
	} >"$TMP/run/isthmus.yaml"
	start_gateway
	gateway_ready "$gw" "serve with 4 healthy endpoints" all_healthy "$gw"
	DEAD_NAME=l1 run_client reaction_client.py --port "$gw" --ctl "$TMP/run/ctl.sock" \
		--service "$SVC" --dead "127.0.0.1:$L1" --kill-pid "$L1_PID" --threads "$THREADS" \
		--rate "$RATE" --duration "$DURATION" --kill-after "$KILL_AFTER" --sample-ms "$SAMPLE_MS" \
		--log "$TMP/run/isthmus.log"
	ej=$(grep -c 'ejected by outlier detection' "$TMP/run/isthmus.log")
	stop_run
	RESULT_LINE="mode=$mode run=$run $CLIENT_LINE ejections_logged=$ej"
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

say ""
say "medians over $RUNS runs (min..max); reaction = kill -> last ${SAMPLE_MS} ms window with > 1 % of attempts to the killed endpoint"
FMT='%-8s | %-22s | %-18s | %-14s | %-20s | %-20s'
say "$(printf "$FMT" mode 'reaction ms' 'attempts to dead' 'client errors' 'p99 ms before kill' 'p99 ms 1 s after')"
say "$(printf "$FMT" -------- ---------------------- ------------------ -------------- -------------------- -------------------- | tr ' ' '-')"
for mode in $MODES; do
	sel=()
	for l in "${LINES[@]}"; do [ "$(field mode "$l")" = "$mode" ] && sel+=("$l"); done
	say "$(printf "$FMT" "$mode" "$(cell reaction_ms "${sel[@]}")" "$(cell dead_attempts_after_kill "${sel[@]}")" \
		"$(cell errors "${sel[@]}")" "$(cell p99_before_ms "${sel[@]}")" "$(cell p99_1s_after_ms "${sel[@]}")")"
done
