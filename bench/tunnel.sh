#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/tunnel.sh — tunnels through isthmus beside HAProxy: interleaved rounds of WebSocket
# message rate (many connections, small messages echoed), TCP throughput (bulk bytes echoed
# through a tcp route) and the same over TLS terminated by the proxy (a Gateway server of protocol
# TLS, mode SIMPLE, to a tcp route; HAProxy's `bind ... ssl` in mode tcp), in front of bench/tunnel_echo.c and driven by bench/tunnel_load.c (both
# C, epoll, so that neither is what the rounds measure); per round the proxy's CPU from /proc;
# medians, per-round ratios, ratios to HAProxy. `make bench` runs it as `sh bench/tunnel.sh
# BUILD`. See bench/README.md ("Tunnels"). Usage: bench/tunnel.sh [BUILD_DIR]
# Environment: SKIP_TUNNEL (0; 1: do nothing) ROUNDS (5) DURATION (10, s) WARMUP (2, s)
#              KINDS ("ws tcp tls") WS_CONNS (100) WS_SIZE (64, bytes) WS_DEPTH (1)
#              TCP_CONNS (4) TCP_CHUNK (65536) TCP_WINDOW (1048576)
#              PROXIES ("isthmus haproxy"; also haproxy-splice: HAProxy with option splice-auto)
#              BASE_BUILD (unset: another isthmus build run as isthmus-base in the same rounds)
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -u

if [ "${SKIP_TUNNEL:-0}" = 1 ]; then
	echo "tunnel: skipped (SKIP_TUNNEL=1)"
	exit 0
fi

BUILD=${1:-build}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
KINDS=${KINDS:-ws tcp tls}
WS_CONNS=${WS_CONNS:-100}
WS_SIZE=${WS_SIZE:-64}
WS_DEPTH=${WS_DEPTH:-1}
TCP_CONNS=${TCP_CONNS:-4}
TCP_CHUNK=${TCP_CHUNK:-65536}
TCP_WINDOW=${TCP_WINDOW:-1048576}
PROXIES=${PROXIES:-isthmus haproxy}
BASE_BUILD=${BASE_BUILD:-}
[ -z "$BASE_BUILD" ] || PROXIES="$PROXIES isthmus-base"

ECHO_WS=19095 ECHO_TCP=19096
# PORT: the HTTP listener (WebSocket upgrades); TPORT: the TCP listener (a tcp route); SPORT: the
# TLS listener (TLS terminated, then a tcp route)
declare -A PORT=([isthmus]=19195 [haproxy]=19295 [haproxy-splice]=19395 [isthmus-base]=19495)
declare -A TPORT=([isthmus]=19196 [haproxy]=19296 [haproxy-splice]=19396 [isthmus-base]=19496)
declare -A SPORT=([isthmus]=19197 [haproxy]=19297 [haproxy-splice]=19397 [isthmus-base]=19497)
declare -A PID=() DEAD=()
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
BENCH_NAME=tunnel
. "$BENCH_DIR/lib.sh"

case $ROUNDS$DURATION$WARMUP$WS_CONNS$WS_SIZE$WS_DEPTH$TCP_CONNS$TCP_CHUNK$TCP_WINDOW in
*[!0-9]*) die "ROUNDS, DURATION, WARMUP, WS_CONNS, WS_SIZE, WS_DEPTH, TCP_CONNS, TCP_CHUNK, TCP_WINDOW must be integers" ;;
esac
[ "$ROUNDS" -ge 1 ] && [ "$DURATION" -ge 1 ] && [ "$WS_CONNS" -ge 1 ] && [ "$TCP_CONNS" -ge 1 ] ||
	die "ROUNDS, DURATION, WS_CONNS, TCP_CONNS must be >= 1"
for k in $KINDS; do case $k in ws | tcp | tls) ;; *) die "unknown kind '$k' in KINDS (ws, tcp, tls)" ;; esac; done
need_tools "$HAPROXY" curl ps cc pkg-config openssl
[ -x "$BUILD/isthmus" ] || die "$BUILD/isthmus not found (run make first)"

bench_tmp
results_open "$BENCH_DIR"
raise_nofile

say "# isthmus tunnel bench $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
say "# command: $0 $* (ROUNDS=$ROUNDS DURATION=$DURATION WARMUP=$WARMUP KINDS='$KINDS' WS_CONNS=$WS_CONNS WS_SIZE=$WS_SIZE WS_DEPTH=$WS_DEPTH TCP_CONNS=$TCP_CONNS TCP_CHUNK=$TCP_CHUNK TCP_WINDOW=$TCP_WINDOW PROXIES='$PROXIES')"
say "# host: $(uname -srm), $(nproc) CPUs, nofile=$NOFILE, CLK_TCK=$HZ"
say "# $("$HAPROXY" -v 2>&1 | head -1 | cut -d' ' -f1-3)"
say "# results file: $RESULTS"
ALLPORTS="$ECHO_WS $ECHO_TCP"
for p in $PROXIES; do
	[ -n "${PORT[$p]:-}" ] || die "unknown proxy '$p' in PROXIES (isthmus haproxy haproxy-splice)"
	ALLPORTS="$ALLPORTS ${PORT[$p]} ${TPORT[$p]} ${SPORT[$p]}"
done
ports_free $ALLPORTS

# --- the load client and the echo server: built by make; else here ------------------------------
LOAD=$BUILD/bench/tunnel_load
ECHO=$BUILD/bench/tunnel_echo
for t in tunnel_load tunnel_echo; do
	if [ ! -x "$BUILD/bench/$t" ]; then
		cc -O2 -o "$TMP/$t" "$BENCH_DIR/$t.c" $(pkg-config --cflags --libs libssl libcrypto) >"$TMP/cc.log" 2>&1 ||
			{ cat "$TMP/cc.log" >&2; die "cannot build bench/$t.c (libssl-dev)"; }
		[ $t = tunnel_load ] && LOAD=$TMP/$t || ECHO=$TMP/$t
	fi
done
"$ECHO" "$ECHO_WS" "$ECHO_TCP" >"$TMP/echo.log" 2>&1 &
ECHO_PID=$!
STARTED="$STARTED $ECHO_PID"
wait_http "http://127.0.0.1:$ECHO_WS/" 50 "$ECHO_PID" || { cat "$TMP/echo.log" >&2; die "tunnel_echo did not start"; }
"$LOAD" --mode tcp --connect "127.0.0.1:$ECHO_TCP" --conns 1 --duration 0.3 >"$TMP/echo-check.txt" 2>&1 ||
	{ cat "$TMP/echo-check.txt" >&2; die "tunnel_echo's TCP port does not echo"; }

# The TLS listeners' certificate (EC P-256, for tls.bench): the same for every proxy.
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=tls.bench \
	-addext subjectAltName=DNS:tls.bench -keyout "$TMP/tls.key" -out "$TMP/tls.crt" >"$TMP/openssl.log" 2>&1 ||
	{ cat "$TMP/openssl.log" >&2; die "openssl could not make the TLS listener's certificate"; }
cat "$TMP/tls.crt" "$TMP/tls.key" >"$TMP/tls.pem"

# --- proxies: one worker / one thread each, an HTTP listener (WebSocket), a TCP one, a TLS one ----
ACTIVE=""
start_isthmus_tunnel() { # name build
	local name=$1 bin="$2/isthmus" d="$TMP/$1"
	mkdir -p "$d"
	if [ ! -x "$bin" ]; then skip_loudly "$name" "$bin not found (run make first)"; return; fi
	cat >"$d/isthmus.yaml" <<EOF
apiVersion: isthmus.io/v1
kind: Appliance
metadata:
  name: $BENCH_NAME
spec:
  locality: bench/bench-a
  workers: 1
  listenAddress: 127.0.0.1
  controlSocket: $d/ctl.sock
  timeouts: {idle: 300s}
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: bench-gw, namespace: bench}
spec:
  servers:
  - port: {number: ${PORT[$name]}, name: http, protocol: HTTP}
    hosts: ["*"]
  - port: {number: ${TPORT[$name]}, name: tcp, protocol: TCP}
    hosts: ["*"]
  - port: {number: ${SPORT[$name]}, name: tls, protocol: TLS}
    hosts: [tls.bench]
    tls: {mode: SIMPLE, serverCertificate: $TMP/tls.crt, privateKey: $TMP/tls.key}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bench-ws, namespace: bench}
spec:
  hosts: ["*"]
  gateways: [bench-gw]
  http:
  - route:
    - destination: {host: ws.bench.internal, port: {number: 80}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bench-tcp, namespace: bench}
spec:
  hosts: ["*"]
  gateways: [bench-gw]
  tcp:
  - match: [{port: ${TPORT[$name]}}]
    route:
    - destination: {host: tcp.bench.internal, port: {number: 9000}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: bench-tls, namespace: bench}
spec:
  hosts: [tls.bench]
  gateways: [bench-gw]
  tcp:
  - route:
    - destination: {host: tcp.bench.internal, port: {number: 9000}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: bench-ws, namespace: bench}
spec:
  hosts: [ws.bench.internal]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  endpoints:
  - {address: 127.0.0.1, ports: {http: $ECHO_WS}, locality: bench/bench-a}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: bench-tcp, namespace: bench}
spec:
  hosts: [tcp.bench.internal]
  ports: [{number: 9000, name: tcp, protocol: TCP}]
  resolution: STATIC
  endpoints:
  - {address: 127.0.0.1, ports: {tcp: $ECHO_TCP}, locality: bench/bench-a}
EOF
	if ! "$bin" -c -f "$d/isthmus.yaml" >"$d/check.log" 2>&1; then
		skip_loudly "$name" "'$bin -c -f $d/isthmus.yaml' rejected the appliance file" "$d/check.log"
		return
	fi
	"$bin" -f "$d/isthmus.yaml" >"$d/stderr.log" 2>&1 &
	STARTED="$STARTED $!"
	proxy_up "$name" $! "http://127.0.0.1:${PORT[$name]}/" "$d/stderr.log"
}

# HAProxy 2.6: `mode http` passes the upgrade and then tunnels (timeout tunnel); `mode tcp` for
# the TCP listener. $2: more defaults lines (option splice-auto).
start_haproxy_tunnel() { # name defaults-lines
	local name=$1 d="$TMP/$1"
	mkdir -p "$d"
	cat >"$d/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 20000
    no strict-limits

defaults
    timeout connect 5s
    timeout client 300s
    timeout server 300s
    timeout tunnel 300s
$2

frontend ws
    mode http
    option http-keep-alive
    bind 127.0.0.1:${PORT[$name]} backlog 4096
    default_backend ws

backend ws
    mode http
    server echo 127.0.0.1:$ECHO_WS

frontend tcp
    mode tcp
    bind 127.0.0.1:${TPORT[$name]} backlog 4096
    default_backend tcp

frontend tls
    mode tcp
    bind 127.0.0.1:${SPORT[$name]} backlog 4096 ssl crt $TMP/tls.pem
    default_backend tcp

backend tcp
    mode tcp
    server echo 127.0.0.1:$ECHO_TCP
EOF
	"$HAPROXY" -f "$d/haproxy.cfg" -db >"$d/stderr.log" 2>&1 &
	STARTED="$STARTED $!"
	proxy_up "$name" $! "http://127.0.0.1:${PORT[$name]}/" "$d/stderr.log"
}

for p in $PROXIES; do
	case $p in
	isthmus) start_isthmus_tunnel isthmus "$BUILD" ;;
	isthmus-base) start_isthmus_tunnel isthmus-base "$BASE_BUILD" ;;
	haproxy) start_haproxy_tunnel haproxy "" ;;
	haproxy-splice) start_haproxy_tunnel haproxy-splice "    option splice-auto" ;;
	esac
done
[ -n "$ACTIVE" ] || die "no proxy started"

# --- runs ----------------------------------------------------------------------------------------
run_kind() { # kind proxy seconds outfile
	case $1 in
	ws) run_client "$4" "$3" "$LOAD" --mode ws --connect "127.0.0.1:${PORT[$2]}" --conns "$WS_CONNS" \
		--size "$WS_SIZE" --depth "$WS_DEPTH" --duration "$3" ;;
	tcp) run_client "$4" "$3" "$LOAD" --mode tcp --connect "127.0.0.1:${TPORT[$2]}" --conns "$TCP_CONNS" \
		--chunk "$TCP_CHUNK" --window "$TCP_WINDOW" --duration "$3" ;;
	tls) run_client "$4" "$3" "$LOAD" --mode tcp --connect "127.0.0.1:${SPORT[$2]}" --conns "$TCP_CONNS" \
		--chunk "$TCP_CHUNK" --window "$TCP_WINDOW" --duration "$3" --tls tls.bench ;;
	esac
}
# field value of tunnel_load's result line
field() { sed -n "s/.*\\b$2=\\([^ ]*\\).*/\\1/p" "$1" | tail -1; }

# Sanity: through every proxy, a short run of each kind echoes and fails nothing.
SANE=""
for p in $ACTIVE; do
	ok=1
	for k in $KINDS; do
		run_kind "$k" "$p" 1 "$TMP/sanity-$k-$p.txt"
		rc=$?
		say "# $p: $k sanity: rc=$rc $(tail -1 "$TMP/sanity-$k-$p.txt")"
		[ "$rc" = 0 ] || ok=0
	done
	if [ "$ok" = 1 ]; then SANE="$SANE $p"; else skip_loudly "$p" "the sanity runs failed (see above)"; fi
done
ACTIVE=$SANE
[ -n "$ACTIVE" ] || die "no proxy passed the sanity runs"

say ""
say "# warm-up: ${WARMUP}s per proxy and kind"
for k in $KINDS; do for p in $ACTIVE; do
	run_kind "$k" "$p" "$WARMUP" "$TMP/warmup-$k-$p.txt" || say "# WARNING: warm-up ($k) for $p exited non-zero"
done; done

declare -A RATE=() P99=() CPU=() BUSY=() RATIO=()
say "# rounds: $ROUNDS x ${DURATION}s per proxy and kind, proxy order rotated every round"
raw ""
raw "round kind proxy units rate p99_ms cpu_per_unit busy_pct cpu_ticks errors client_pct echo_pct"
read -r -a arr <<<"$ACTIVE"
n=${#arr[@]}
for r in $(seq 1 "$ROUNDS"); do
	for k in $KINDS; do
		declare -A ROUND_RATE=() ROUND_CPU=()
		for i in $(seq 0 $((n - 1))); do
			p=${arr[$(((i + r - 1) % n))]}
			proxy_running "$p" || continue
			out="$TMP/run-$r-$k-$p.txt"
			e0=$(cpu_ticks "$ECHO_PID")
			t0=$(cpu_ticks "${PID[$p]}")
			run_kind "$k" "$p" "$DURATION" "$out"
			rc=$?
			t1=$(cpu_ticks "${PID[$p]}")
			e1=$(cpu_ticks "$ECHO_PID")
			secs=$(field "$out" seconds)
			errs=$(field "$out" errors)
			if [ "$k" = ws ]; then
				units=$(field "$out" messages)
				rate=$(field "$out" rate)
				p99=$(awk -v u="$(field "$out" p99_us)" 'BEGIN{ printf "%.3f", u / 1000 }')
				cpu=$(cpu_us_per_req $((t1 - t0)) "${units:-0}")
			else
				units=$(field "$out" bytes)
				rate=$(field "$out" mib_per_s)
				p99=n/a
				cpu=$(awk -v t=$((t1 - t0)) -v b="${units:-0}" -v hz="$HZ" \
					'BEGIN{ if (b > 0) printf "%.1f", t * 1000 / hz / (b / 1073741824); else print "n/a" }')
			fi
			if [ "$rc" != 0 ] || [ -z "$units" ] || [ "${units:-0}" = 0 ]; then
				say "# WARNING: round $r $k $p: tunnel_load rc=$rc:"
				tail -n 6 "$out" | sed 's/^/#   /' | tee -a "$RESULTS"
				continue
			fi
			busy=$(awk -v t=$((t1 - t0)) -v s="$secs" -v hz="$HZ" 'BEGIN{ printf "%.0f", t * 100 / hz / s }')
			ebusy=$(awk -v t=$((e1 - e0)) -v s="$secs" -v hz="$HZ" 'BEGIN{ printf "%.0f", t * 100 / hz / s }')
			cbusy=$(field "$out" cpu_pct)
			RATE[$k,$p]="${RATE[$k,$p]:-} $rate"
			P99[$k,$p]="${P99[$k,$p]:-} $p99"
			CPU[$k,$p]="${CPU[$k,$p]:-} $cpu"
			BUSY[$k,$p]="${BUSY[$k,$p]:-} $busy"
			ROUND_RATE[$p]=$rate ROUND_CPU[$p]=$cpu
			printf 'round %d %-3s %-15s %10s %-5s  p99 %7s ms  cpu %8s %-6s  proxy %3s%%  client %3s%%  echo %3s%%  (%d ticks, errors %s)\n' \
				"$r" "$k" "$p" "$rate" "$([ "$k" = ws ] && echo msg/s || echo MiB/s)" "$p99" "$cpu" \
				"$([ "$k" = ws ] && echo us/msg || echo ms/GiB)" "$busy" "$cbusy" "$ebusy" $((t1 - t0)) "$errs"
			raw "$r $k $p $units $rate $p99 $cpu $busy $((t1 - t0)) $errs $cbusy $ebusy"
		done
		# Per-round ratios to HAProxy (the same minute, the same machine state).
		for p in $ACTIVE; do
			[ "$p" = haproxy ] && continue
			[ -n "${ROUND_RATE[$p]:-}" ] && [ -n "${ROUND_RATE[haproxy]:-}" ] || continue
			RATIO[$k,$p,rate]="${RATIO[$k,$p,rate]:-} $(ratio "${ROUND_RATE[$p]}" "${ROUND_RATE[haproxy]}")"
			RATIO[$k,$p,cpu]="${RATIO[$k,$p,cpu]:-} $(ratio "${ROUND_CPU[$p]}" "${ROUND_CPU[haproxy]}")"
		done
		unset ROUND_RATE ROUND_CPU
	done
done

declare -A KIND_DESC=(
	[ws]="WebSocket echo, $WS_CONNS connections, $WS_SIZE-byte binary messages, $WS_DEPTH in flight per connection"
	[tcp]="TCP echo through a tcp route, $TCP_CONNS connections, $TCP_CHUNK-byte writes, $TCP_WINDOW bytes in flight per connection (MiB/s: bytes echoed; each crossed the proxy both ways)"
	[tls]="the same over TLS the proxy terminates (TLS 1.3, ECDSA P-256; plaintext to the echo server)")
for k in $KINDS; do
	unit=msg/s cunit="CPU us/msg"
	[ "$k" != ws ] && unit=MiB/s cunit="CPU ms/GiB"
	say ""
	say "## $k: ${KIND_DESC[$k]}: medians of $ROUNDS rounds of ${DURATION}s; x = proxy / haproxy (medians; per-round ratios' median in brackets)"
	FMT='%-15s %10s %8s %11s %7s   %14s %14s'
	say "$(printf "$FMT" proxy "$unit" 'p99 ms' "$cunit" 'proxy%' "$unit x" 'CPU x')"
	declare -A MR=() MC=()
	for p in $ACTIVE; do
		MR[$p]=$(echo "${RATE[$k,$p]:-}" | median | fmt_num 1)
		MC[$p]=$(echo "${CPU[$k,$p]:-}" | median | fmt_num 2)
	done
	for p in $ACTIVE; do
		rr=$(ratio "${MR[$p]}" "${MR[haproxy]:-n/a}") rc=$(ratio "${MC[$p]}" "${MC[haproxy]:-n/a}")
		if [ "$p" != haproxy ] && [ -n "${RATIO[$k,$p,rate]:-}" ]; then
			rr="$rr [$(echo "${RATIO[$k,$p,rate]}" | median | fmt_num 2)]"
			rc="$rc [$(echo "${RATIO[$k,$p,cpu]}" | median | fmt_num 2)]"
		fi
		mp=n/a
		[ "$k" = ws ] && mp=$(echo "${P99[$k,$p]:-}" | median | fmt_num 3)
		say "$(printf "$FMT" "$p" "${MR[$p]}" "$mp" "${MC[$p]}" \
			"$(echo "${BUSY[$k,$p]:-}" | median | fmt_num 0)" "$rr" "$rc")"
	done
	say "spread (min..max over rounds):"
	for p in $ACTIVE; do
		sp=""
		[ "$k" = ws ] && sp="  p99 ms $(echo "${P99[$k,$p]:-}" | spread)"
		say "$(printf "  %-15s %s %s%s  %s %s" "$p" "$unit" "$(echo "${RATE[$k,$p]:-}" | spread)" "$sp" \
			"$cunit" "$(echo "${CPU[$k,$p]:-}" | spread)")"
	done
	unset MR MC
done
say ""
say "# done; raw numbers in $RESULTS"
