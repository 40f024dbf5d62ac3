#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/bench.sh — isthmus beside HAProxy and nginx: interleaved wrk rounds (req/s, p99,
# proxy CPU µs per request) and idle keep-alive connection memory (measured first, on fresh proxies). A bash script; `make bench`
# runs it as `sh bench/bench.sh BUILD_DIR`, so it re-executes itself under bash.
# See bench/README.md for the method. Usage: bench/bench.sh [BUILD_DIR]
# Environment: ROUNDS (5) DURATION (10, s) CONNS (64) WARMUP (2, s) SKIP_IDLE (0)
#              IDLE_CONNS (10000) IDLE_TIMEOUT (120, s per proxy) PROXIES ("isthmus haproxy nginx")
#              BASE_BUILD (unset): another build of isthmus (say, of the previous commit), run as
#              the proxy "isthmus-base" in the same interleaved rounds, to see what a change moved
#              PIN_PROXY PIN_CLIENT PIN_UPSTREAM CLIENT_THREADS UPSTREAM_WORKERS PROXY_WORKERS: where
#              the parts run and how many threads each has (bench/README.md, "A proxy-bound run")
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -u

BUILD=${1:-build}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
WARMUP=${WARMUP:-2}
SKIP_IDLE=${SKIP_IDLE:-0}
IDLE_CONNS=${IDLE_CONNS:-10000}
IDLE_TIMEOUT=${IDLE_TIMEOUT:-120}
PROXIES=${PROXIES:-isthmus haproxy nginx}
BASE_BUILD=${BASE_BUILD:-}
[ -z "$BASE_BUILD" ] || PROXIES="$PROXIES isthmus-base"

UP1=19081 UP2=19082
declare -A PORT=([isthmus]=19180 [haproxy]=19280 [nginx]=19380 [isthmus-base]=19480)
declare -A PID=()   # proxy -> pid of its top process (master)
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
BENCH_NAME=bench
. "$BENCH_DIR/lib.sh"

case $ROUNDS$DURATION$CONNS$WARMUP$IDLE_CONNS$IDLE_TIMEOUT in *[!0-9]*) die "ROUNDS, DURATION, CONNS, WARMUP, IDLE_CONNS, IDLE_TIMEOUT must be integers";; esac
[ "$ROUNDS" -ge 1 ] && [ "$DURATION" -ge 1 ] && [ "$CONNS" -ge 1 ] || die "ROUNDS, DURATION, CONNS must be >= 1"
need_tools "$NGINX" "$HAPROXY" "$WRK" curl python3 ps

bench_tmp

# ---------------------------------------------------------------------------------------------
results_open "$BENCH_DIR"

raise_nofile

say "# isthmus bench $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
say "# command: $0 $* (ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS WARMUP=$WARMUP SKIP_IDLE=$SKIP_IDLE IDLE_CONNS=$IDLE_CONNS)"
say "# host: $(uname -srm), $(nproc) CPUs, nofile=$NOFILE, CLK_TCK=$HZ"
say "# $(versions)"
say "# $(placement)"
say "# results file: $RESULTS"
[ "$NOFILE" -ge 30000 ] || say "# note: could not raise nofile to 30000 (hard limit $(ulimit -Hn)); using $NOFILE"
# isthmus counts two descriptors per client connection (its upstream's too) and holds
# (limit - 66) / 2 by default: past that it closes new connections. Every proxy gets the same
# count, one it can hold under this limit.
if [ $(((NOFILE - 200) / 2)) -lt "$IDLE_CONNS" ]; then
	IDLE_CONNS=$(((NOFILE - 200) / 2))
	say "# note: IDLE_CONNS lowered to $IDLE_CONNS, what isthmus holds with $NOFILE open files"
fi

ports_free $UP1 $UP2 ${PORT[isthmus]} ${PORT[haproxy]} ${PORT[nginx]} ${PORT[isthmus-base]}

# --- upstreams: one nginx, one worker, two ports, 1 KiB body ----------------------------------
start_upstream $UP1 $UP2

# --- proxies ----------------------------------------------------------------------------------
ACTIVE=""

for p in $PROXIES; do
	case $p in
	isthmus) start_isthmus HTTP "" "" ;;
	isthmus-base) start_isthmus HTTP "" "" isthmus-base "$BASE_BUILD" ;;
	haproxy) start_haproxy http "" "" "" "" ;;
	nginx) start_nginx "listen 127.0.0.1:${PORT[nginx]} backlog=4096;" "" "http://127.0.0.1:${PORT[nginx]}/" ;;
	*) die "unknown proxy '$p' in PROXIES" ;;
	esac
done
[ -n "$ACTIVE" ] || die "no proxy started"

# Sanity: every proxy answers 200 with the 1 KiB body and spreads requests over both upstreams.
for p in $ACTIVE; do
	seen=$(for i in 1 2 3 4 5 6; do
		curl -s -D - -o /dev/null -m 2 "http://127.0.0.1:${PORT[$p]}/" | tr -d '\r' |
			awk -F': ' 'tolower($1)=="x-upstream"{print $2}'
	done | sort -u | tr '\n' ' ')
	size=$(curl -s -m 2 "http://127.0.0.1:${PORT[$p]}/" | wc -c)
	procs=$(tree_pids "${PID[$p]}" | tr '\n' ' ')
	say "# $p: port ${PORT[$p]}, pids ${procs}, body ${size} B, upstreams seen: ${seen:-none}"
	[ "$size" = 1024 ] || say "# WARNING: $p returned a ${size}-byte body, expected 1024"
	case $seen in *"$UP1"*"$UP2"*) ;; *) say "# WARNING: $p did not spread 6 requests over both upstreams" ;; esac
	check_edits "$p" "http://127.0.0.1:${PORT[$p]}/edits"
done

# --- idle connection memory ---------------------------------------------------------------------
declare -A IDLE_KIB=()
idle_phase "idle keep-alive connections" \
	"$IDLE_CONNS per proxy, one GET each, then held idle; VmRSS summed over the proxy's processes" \
	"$ACTIVE" PORT "$IDLE_CONNS"

# --- throughput rounds --------------------------------------------------------------------------
run_wrk_http() { # proxy seconds outfile
	run_wrk "$3" "$2" -c"$CONNS" --timeout 5s --latency "http://127.0.0.1:${PORT[$1]}/"
}

declare -A RPS=() P99=() CPU=() DEAD=() CLI=() CORES=() UPC=() PXC=() BUSY=() WAITC=() PARTS=()
read -r -a ACTIVE_ARR <<<"$ACTIVE"
N=${#ACTIVE_ARR[@]}

say ""
say "# warm-up: ${WARMUP}s per proxy"
for p in $ACTIVE; do run_wrk_http "$p" "$WARMUP" "$TMP/warmup-$p.txt" || say "# WARNING: warm-up wrk for $p exited non-zero"; done

say "# rounds: $ROUNDS x ${DURATION}s per proxy, wrk -t$CLIENT_THREADS -c$CONNS, order rotated every round"
raw ""
raw "round proxy requests req_per_s p99_ms cpu_us_per_req cpu_ticks errors non2xx client_us_per_req client_cores upstream_cores machine_cores proxy_wait_cores parts_us_per_req proxy_cores"
for r in $(seq 1 "$ROUNDS"); do
	order=""
	for i in $(seq 0 $((N - 1))); do order="$order ${ACTIVE_ARR[$(((i + r - 1) % N))]}"; done
	for p in $order; do
		out="$TMP/wrk-$r-$p.txt"
		proxy_running "$p" || continue
		t0=$(cpu_ticks "${PID[$p]}")
		round_begin "$UPSTREAM_PID" "${PID[$p]}"
		run_wrk_http "$p" "$DURATION" "$out"
		rc=$?
		round_end "$UPSTREAM_PID" "${PID[$p]}" "$DURATION"
		t1=$(cpu_ticks "${PID[$p]}")
		read -r req rps p99 err non2xx < <(parse_wrk "$out")
		if [ "$rc" != 0 ] || [ "${req:-0}" -le 0 ]; then
			say "# WARNING: round $r $p: wrk rc=$rc, $req requests:"
			sed 's/^/#   /' "$out" | tee -a "$RESULTS"
			continue
		fi
		cpu=$(cpu_us_per_req $((t1 - t0)) "$req")
		cli=$(client_us_per_req "$req") cores=$(client_cores "$DURATION")
		parts=$(parts_us_per_req "$cli" "$cpu" "$req")
		RPS[$p]="${RPS[$p]:-} $rps"
		P99[$p]="${P99[$p]:-} $p99"
		CPU[$p]="${CPU[$p]:-} $cpu"
		CLI[$p]="${CLI[$p]:-} $cli"
		CORES[$p]="${CORES[$p]:-} $cores"
		UPC[$p]="${UPC[$p]:-} $UP_CORES"
		PXC[$p]="${PXC[$p]:-} $PROXY_CORES"
		BUSY[$p]="${BUSY[$p]:-} $BUSY_CORES"
		WAITC[$p]="${WAITC[$p]:-} $WAIT_CORES"
		PARTS[$p]="${PARTS[$p]:-} $parts"
		line=$(printf 'round %d %-12s req/s %10s  p99 %8s ms  cpu %7s us/req  wrk %7s us/req %5s cores  upstream %5s cores  proxy %5s cores  machine %5s cores  proxy waited %5s cores  (%d ticks, %d requests, errors %d, non-2xx %d)' \
			"$r" "$p" "$rps" "$p99" "$cpu" "$cli" "$cores" "$UP_CORES" "$PROXY_CORES" "$BUSY_CORES" "$WAIT_CORES" $((t1 - t0)) "$req" "$err" "$non2xx")
		echo "$line"
		raw "$r $p $req $rps $p99 $cpu $((t1 - t0)) $err $non2xx $cli $cores $UP_CORES $BUSY_CORES $WAIT_CORES $parts $PROXY_CORES"
		[ "$err" = 0 ] && [ "$non2xx" = 0 ] || say "# WARNING: round $r $p: $err socket errors, $non2xx non-2xx responses"
	done
done

declare -A MR=() MP=() MC=() ML=() MK=() MU=() MX=() MB=() MW=() MS=()
for p in $ACTIVE; do
	MR[$p]=$(echo "${RPS[$p]:-}" | median | fmt_num 0)
	MP[$p]=$(echo "${P99[$p]:-}" | median | fmt_num 3)
	MC[$p]=$(echo "${CPU[$p]:-}" | median | fmt_num 2)
	ML[$p]=$(echo "${CLI[$p]:-}" | median | fmt_num 2)
	MK[$p]=$(echo "${CORES[$p]:-}" | median | fmt_num 2)
	MU[$p]=$(echo "${UPC[$p]:-}" | median | fmt_num 2)
	MX[$p]=$(echo "${PXC[$p]:-}" | median | fmt_num 2)
	MB[$p]=$(echo "${BUSY[$p]:-}" | median | fmt_num 2)
	MW[$p]=$(echo "${WAITC[$p]:-}" | median | fmt_num 2)
	MS[$p]=$(echo "${PARTS[$p]:-}" | median | fmt_num 2)
done
base() { if [ -n "${PID[haproxy]:-}" ]; then echo "$1"; else echo "n/a"; fi; }

say ""
say "## throughput: medians of $ROUNDS rounds (wrk -t$CLIENT_THREADS -c$CONNS -d${DURATION}s); ratio = proxy / HAProxy"
FMT='%-12s %10s %9s %11s   %8s %7s %7s   %10s %9s %8s %11s %9s %11s   %11s %7s'
say "$(printf "$FMT" proxy 'req/s' 'p99 ms' 'CPU us/req' 'req/s x' 'p99 x' 'CPU x' 'wrk us/req' 'wrk cores' 'up cores' 'proxy cores' 'all cores' 'proxy wait' 'all us/req' 'bound x')"
for p in haproxy isthmus nginx ${BASE_BUILD:+isthmus-base}; do
	case " $ACTIVE " in *" $p "*) ;; *) say "$(printf '%-12s %10s' "$p" 'skipped')"; continue ;; esac
	say "$(printf "$FMT" "$p" "${MR[$p]}" "${MP[$p]}" "${MC[$p]}" \
		"$(ratio "${MR[$p]}" "$(base "${MR[haproxy]:-n/a}")")" \
		"$(ratio "${MP[$p]}" "$(base "${MP[haproxy]:-n/a}")")" \
		"$(ratio "${MC[$p]}" "$(base "${MC[haproxy]:-n/a}")")" "${ML[$p]}" "${MK[$p]}" "${MU[$p]}" "${MX[$p]}" "${MB[$p]}" "${MW[$p]}" \
		"${MS[$p]}" "$(ratio "$(base "${MS[haproxy]:-n/a}")" "${MS[$p]}")")"
done
say "(wrk: the load client's own CPU per request and the cores it used; up: the upstream nginx's"
say " cores; proxy: the proxy's; all: the whole machine's busy cores. wrk has $CLIENT_THREADS thread(s) and"
say " the upstream $UPSTREAM_WORKERS worker(s): either near that, or all near the machine's $(nproc), and that part,"
say " not the proxy, set the rate; proxy cores near its $PROXY_WORKERS worker(s): the proxy set it;"
say " proxy wait: the cores' worth of time the proxy was ready to run but waited for a CPU;"
say " all us/req: wrk's, the upstream's and the proxy's CPU per request together; bound: HAProxy's"
say " all us/req over the proxy's, the rate ratio the cores allow where both rounds kept the"
say " machine equally busy)"
say "spread (min..max over rounds):"
for p in $ACTIVE; do
	say_spread 12 "$p" "${RPS[$p]:-}" "${P99[$p]:-}" "${CPU[$p]:-}"
done
say ""
say "# done; raw numbers in $RESULTS"
