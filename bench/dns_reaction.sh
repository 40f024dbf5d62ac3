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

BENCH_NAME=dns_reaction
BENCH_FILES=dns-reaction
. "$BENCH_DIR/reaction_lib.sh"
need_integers RUNS WORKERS THREADS TTL
[ -x "$DNSMASQ" ] || die "$DNSMASQ not found (Debian package dnsmasq-base; make deps)"
reaction_init

# True when the gateway on port $1 answers from the name's old address.
serves_old() { curl -s -D - -o /dev/null -m 1 "http://127.0.0.1:$1/" 2>/dev/null | grep -qi '^x-upstream: old'; }

# One run, number $1. Sets RESULT_LINE.
one_run() {
	local run=$1 gw port dport DNS_PID
	rm -rf "$TMP/run"
	mkdir -p "$TMP/run"
	port=$(free_port)
	start_upstream old 127.0.0.2 "$port"
	start_upstream new 127.0.0.3 "$port"
	dport=$(free_port)
	printf '127.0.0.2 %s\n' "$NAME" >"$TMP/run/hosts"
	start_bg "$TMP/run/dnsmasq.out" "$DNSMASQ" --no-daemon --port="$dport" --listen-address=127.0.0.1 \
		--bind-interfaces --no-resolv --no-hosts --addn-hosts="$TMP/run/hosts" --local-ttl="$TTL" \
		--local=/dns.test/ --log-facility="$TMP/run/dnsmasq.log" --user=root --group=root
	DNS_PID=$BG_PID
	gw=$(free_port)
	{
		reaction_yaml dns-reaction "$gw" DNS "  dns:" "    servers: [\"127.0.0.1:$dport\"]" \
			"    minRefresh: $MIN_REFRESH" "    maxRefresh: 30s" "    timeout: 1s"
		echo "  - {address: $NAME, ports: {http: $port}, locality: eu-west/eu-west-1a}"
	} >"$TMP/run/isthmus.yaml"
	start_gateway
	gateway_ready "$gw" "serve from the name's address" serves_old "$gw"
	run_client dns_reaction_client.py --port "$gw" --hosts "$TMP/run/hosts" --dnsmasq-pid "$DNS_PID" \
		--name "$NAME" --new 127.0.0.3 --old-up old --new-up new --threads "$THREADS" --rate "$RATE" \
		--duration "$DURATION" --change-after "$CHANGE_AFTER" --jitter "$JITTER" --window-ms "$WINDOW_MS" \
		--log "$TMP/run/isthmus.log"
	stop_run
	RESULT_LINE="run=$run $CLIENT_LINE"
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

say ""
say "medians over $RUNS runs (min..max); reaction = DNS change (hosts file + SIGHUP) -> start of the first ${WINDOW_MS} ms window from which on >= 99 % of answers come from the new address"
FMT='%-22s | %-22s | %-22s | %-22s | %-22s | %-14s | %-9s'
say "$(printf "$FMT" 'reaction ms' 'answer seen ms' 'then on new ms' 'first from new ms' 'last from old ms' 'failed' 'unsettled')"
say "$(printf "$FMT" ---------------------- ---------------------- ---------------------- ---------------------- ---------------------- -------------- --------- | tr ' ' '-')"
L=("${LINES[@]}")
say "$(printf "$FMT" "$(cell reaction_ms "${L[@]}")" "$(cell seen_ms "${L[@]}")" "$(cell new_after_seen_ms "${L[@]}")" \
	"$(cell first_new_ms "${L[@]}")" "$(cell last_old_ms "${L[@]}")" "$(cell errors "${L[@]}")" \
	"$(col settled "${L[@]}" | grep -c no)")"
