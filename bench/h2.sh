#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/h2.sh — isthmus beside HAProxy and nginx over HTTP/2: interleaved h2load rounds (64
# connections, 1 and 10 streams each, h2 over TLS and h2c with prior knowledge) in front of the
# same HTTP/1.1 upstream; a gRPC unary round (isthmus vs HAProxy) in front of
# bench/grpc_responder.c; memory per idle HTTP/2 connection (measured first, on fresh proxies).
# req/s, p99 and proxy CPU µs per request, medians, ratios to the better of HAProxy and nginx. `make bench` runs it as
# `sh bench/h2.sh BUILD`. See bench/README.md ("HTTP/2 and gRPC"). Usage: bench/h2.sh [BUILD_DIR]
# Environment: SKIP_H2 (0; 1: do nothing) ROUNDS (5) DURATION (10, s) CONNS (64) STREAMS ("1 10")
#              WARMUP (2, s) GRPC_STREAMS (10) GRPC_BYTES (32) SKIP_GRPC (0) SKIP_IDLE (0)
#              SKIP_LOAD (0; 1: only the idle phase) IDLE_H2_CONNS (2000) IDLE_BATCHES (2: 1 or 2)
#              IDLE_TIMEOUT (120, s) PROXIES ("isthmus haproxy nginx")
#              BASE_BUILD (unset: another isthmus build run as isthmus-base in the same rounds)
#              PIN_PROXY PIN_CLIENT PIN_UPSTREAM CLIENT_THREADS UPSTREAM_WORKERS PROXY_WORKERS
#              GRPC_RESPONDER: placement (bench/README.md, "A proxy-bound run")
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -u

if [ "${SKIP_H2:-0}" = 1 ]; then
	echo "h2: skipped (SKIP_H2=1)"
	exit 0
fi

BUILD=${1:-build}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
STREAMS=${STREAMS:-1 10}
WARMUP=${WARMUP:-2}
GRPC_STREAMS=${GRPC_STREAMS:-10}
GRPC_BYTES=${GRPC_BYTES:-32}
SKIP_GRPC=${SKIP_GRPC:-0}
SKIP_IDLE=${SKIP_IDLE:-0}
SKIP_LOAD=${SKIP_LOAD:-0}
IDLE_H2_CONNS=${IDLE_H2_CONNS:-2000}
IDLE_BATCHES=${IDLE_BATCHES:-2}
IDLE_TIMEOUT=${IDLE_TIMEOUT:-120}
PROXIES=${PROXIES:-isthmus haproxy nginx}
BASE_BUILD=${BASE_BUILD:-}
[ -z "$BASE_BUILD" ] || PROXIES="$PROXIES isthmus-base"

UP1=19085 UP2=19086 GRPC_UP=19087
# PORT: h2 over TLS (and the h2c gRPC listeners of the -grpc proxies); H2C: h2c prior knowledge
declare -A PORT=([isthmus]=19643 [haproxy]=19743 [nginx]=19843 [isthmus-base]=19943
	[isthmus-grpc]=19690 [haproxy-grpc]=19790 [isthmus-base-grpc]=19990)
declare -A H2C=([isthmus]=19680 [haproxy]=19780 [nginx]=19880 [isthmus-base]=19980)
declare -A PID=() DEAD=()
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
BENCH_NAME=h2
. "$BENCH_DIR/lib.sh"

case $ROUNDS$DURATION$CONNS$WARMUP$GRPC_STREAMS$GRPC_BYTES$IDLE_H2_CONNS$IDLE_TIMEOUT${STREAMS// /} in
*[!0-9]*) die "ROUNDS, DURATION, CONNS, WARMUP, STREAMS, GRPC_STREAMS, GRPC_BYTES, IDLE_H2_CONNS, IDLE_TIMEOUT must be integers" ;;
esac
case $IDLE_BATCHES in 1 | 2) ;; *) die "IDLE_BATCHES must be 1 or 2" ;; esac
[ "$ROUNDS" -ge 1 ] && [ "$DURATION" -ge 1 ] && [ "$CONNS" -ge 1 ] && [ "$GRPC_STREAMS" -ge 1 ] ||
	die "ROUNDS, DURATION, CONNS, GRPC_STREAMS must be >= 1"
need_tools "$NGINX" "$HAPROXY" "$H2LOAD" curl openssl python3 ps ${GRPC_RESPONDER:-cc pkg-config}
[ -x "$BUILD/isthmus" ] || die "$BUILD/isthmus not found (run make first)"

bench_tmp
results_open "$BENCH_DIR"
raise_nofile

say "# isthmus HTTP/2 bench $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
say "# command: $0 $* (ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS STREAMS='$STREAMS' WARMUP=$WARMUP GRPC_STREAMS=$GRPC_STREAMS GRPC_BYTES=$GRPC_BYTES IDLE_H2_CONNS=$IDLE_H2_CONNS)"
say "# host: $(uname -srm), $(nproc) CPUs, nofile=$NOFILE, CLK_TCK=$HZ"
say "# $("$HAPROXY" -v 2>&1 | head -1 | cut -d' ' -f1-3); $("$NGINX" -v 2>&1 | sed 's/.*: //'); $("$H2LOAD" --version | head -1); $(openssl version)"
say "# $(placement)"
say "# results file: $RESULTS"
ALLPORTS="$UP1 $UP2 $GRPC_UP"
for p in "${PORT[@]}" "${H2C[@]}"; do ALLPORTS="$ALLPORTS $p"; done
ports_free $ALLPORTS

make_certs rsa
C=$CERTS
start_upstream $UP1 $UP2

# --- proxies: h2 over TLS on PORT, h2c on H2C, one process each -----------------------------------
ACTIVE=""
isthmus_h2() { # name build
	start_isthmus HTTPS "tls: {mode: SIMPLE, serverCertificate: $C/server.crt, privateKey: $C/server.key}" "" "$1" "$2" \
		"  - port: {number: ${H2C[$1]}, name: h2c, protocol: HTTP}
    hosts: [\"*\"]"
}
for p in $PROXIES; do
	case $p in
	isthmus) isthmus_h2 isthmus "$BUILD" ;;
	isthmus-base) isthmus_h2 isthmus-base "$BASE_BUILD" ;;
	haproxy) start_haproxy https "ssl crt $C/combined.pem alpn h2,http/1.1" "" \
		"    bind 127.0.0.1:${H2C[haproxy]} proto h2 backlog 4096" "" ;;
	nginx) start_nginx "listen 127.0.0.1:${PORT[nginx]} ssl http2 backlog=4096; listen 127.0.0.1:${H2C[nginx]} http2 backlog=4096;" \
		"ssl_certificate $C/server.crt; ssl_certificate_key $C/server.key;" "https://127.0.0.1:${PORT[nginx]}/" ;;
	*) die "unknown proxy '$p' in PROXIES" ;;
	esac
done
[ -n "$ACTIVE" ] || die "no proxy started"
H2_ACTIVE=$ACTIVE

# Sanity: over TLS (ALPN h2, certificate verified) and over h2c, HTTP/2 is spoken, 200, 1 KiB body.
for p in $H2_ACTIVE; do
	for u in "--http2 --cacert $C/ca.crt https://127.0.0.1:${PORT[$p]}/" "--http2-prior-knowledge http://127.0.0.1:${H2C[$p]}/"; do
		got=$(curl -s -m 2 -o /dev/null -w '%{http_version} %{http_code} %{size_download}' $u)
		say "# $p: ${u##* } -> HTTP/$got"
		[ "$got" = "2 200 1024" ] || say "# WARNING: $p: expected HTTP/2, 200 and a 1024-byte body from ${u##* }"
	done
	check_edits "$p" "https://127.0.0.1:${PORT[$p]}/edits" --http2 --cacert "$C/ca.crt"
	check_edits "$p" "http://127.0.0.1:${H2C[$p]}/edits" --http2-prior-knowledge
done

# --- idle HTTP/2 connections ----------------------------------------------------------------------
declare -A IDLE_KIB=()
idle_phase "idle HTTP/2 connections (h2c)" \
	"$IDLE_BATCHES batches of $IDLE_H2_CONNS per proxy, one GET each, then held idle; VmRSS summed over the proxy's processes; KiB/conn 2: the second batch's, beside the first (what one more costs); ratio = proxy / HAProxy, of the last" \
	"$H2_ACTIVE" H2C "$IDLE_H2_CONNS" --h2
if [ "$SKIP_LOAD" = 1 ]; then
	say ""
	say "# load rounds skipped (SKIP_LOAD=1); raw numbers in $RESULTS"
	exit 0
fi

# --- gRPC: one responder, isthmus (ServiceEntry protocol GRPC) and HAProxy (server proto h2) -------
GRPC_ACTIVE=""
if [ "$SKIP_GRPC" != 1 ]; then
	start_grpc_responder "$GRPC_UP" "$GRPC_BYTES"
	CURL_EXTRA=--http2-prior-knowledge
	ACTIVE=""
	for p in $PROXIES; do
		case $p in
		isthmus | isthmus-base) UPS=$GRPC_UP SE_PROTOCOL=GRPC start_isthmus HTTP "" "" "$p-grpc" \
			"$([ "$p" = isthmus ] && echo "$BUILD" || echo "$BASE_BUILD")" ;;
		haproxy) UPS=$GRPC_UP start_haproxy http "proto h2" "" "" "" haproxy-grpc "proto h2" ;;
		esac
	done
	CURL_EXTRA=""
	GRPC_ACTIVE=$ACTIVE
	grpc_request_body "$TMP/grpc-req.bin" "$GRPC_BYTES"
	for p in $GRPC_ACTIVE; do
		hdr=$(curl -s -m 2 --http2-prior-knowledge -D - -o "$TMP/grpc-resp.bin" --data-binary @"$TMP/grpc-req.bin" \
			-H 'content-type: application/grpc' -H 'te: trailers' "http://127.0.0.1:${PORT[$p]}/bench.Bench/Unary" | tr -d '\r')
		st=$(echo "$hdr" | awk -F': ' '$1 == "grpc-status" { print $2 }')
		say "# $p: gRPC unary on port ${PORT[$p]}: $(echo "$hdr" | awk 'NR == 1 { print $1, $2 }'), $(wc -c <"$TMP/grpc-resp.bin") B message, grpc-status ${st:-none}"
		[ "$st" = 0 ] || say "# WARNING: $p: no grpc-status 0 in the trailers"
	done
fi

# --- rounds ---------------------------------------------------------------------------------------
# A run: mode (tls or h2c, or grpc), streams per connection, proxy.
run_mode() { # mode streams proxy seconds outfile
	case $1 in
	tls) run_h2load "$5" "$4" -c"$CONNS" -m"$2" "https://127.0.0.1:${PORT[$3]}/" ;;
	h2c) run_h2load "$5" "$4" -c"$CONNS" -m"$2" "http://127.0.0.1:${H2C[$3]}/" ;;
	grpc) run_h2load "$5" "$4" -c"$CONNS" -m"$2" -d "$TMP/grpc-req.bin" -H 'content-type: application/grpc' \
		-H 'te: trailers' "http://127.0.0.1:${PORT[$3]}/bench.Bench/Unary" ;;
	esac
}
KINDS=""
for m in tls h2c; do for s in $STREAMS; do KINDS="$KINDS $m:$s"; done; done
[ -n "$GRPC_ACTIVE" ] && KINDS="$KINDS grpc:$GRPC_STREAMS"
kind_proxies() { case $1 in grpc:*) echo "$GRPC_ACTIVE" ;; *) echo "$H2_ACTIVE" ;; esac; }

declare -A RPS=() P99=() CPU=() CLI=() CORES=() UPC=() PXC=() BUSY=() WAITC=() PARTS=()
say ""
say "# warm-up: ${WARMUP}s per proxy and kind"
for k in $KINDS; do for p in $(kind_proxies "$k"); do
	run_mode "${k%%:*}" "${k##*:}" "$p" "$WARMUP" "$TMP/warmup-$k-$p.txt" || say "# WARNING: warm-up h2load ($k) for $p exited non-zero"
done; done

say "# rounds: $ROUNDS x ${DURATION}s per proxy and kind, h2load -t$CLIENT_THREADS -c$CONNS -m STREAMS, proxy order rotated every round"
raw ""
raw "round kind proxy requests req_per_s p99_ms cpu_us_per_req cpu_ticks errors non2xx client_us_per_req client_cores upstream_cores machine_cores proxy_wait_cores parts_us_per_req proxy_cores"
for r in $(seq 1 "$ROUNDS"); do
	for k in $KINDS; do
		read -r -a arr <<<"$(kind_proxies "$k")"
		n=${#arr[@]}
		for i in $(seq 0 $((n - 1))); do
			p=${arr[$(((i + r - 1) % n))]}
			proxy_running "$p" || continue
			out="$TMP/h2load-$r-$k-$p.txt"
			t0=$(cpu_ticks "${PID[$p]}")
			upid=$UPSTREAM_PID
			[ "${k%%:*}" = grpc ] && upid=$GRPC_UPSTREAM_PID
			round_begin "$upid" "${PID[$p]}"
			run_mode "${k%%:*}" "${k##*:}" "$p" "$DURATION" "$out"
			rc=$?
			round_end "$upid" "${PID[$p]}" "$DURATION"
			t1=$(cpu_ticks "${PID[$p]}")
			read -r req rps p99 err non2xx < <(parse_h2load "$out")
			if [ "$rc" != 0 ] || [ "${req:-0}" -le 0 ]; then
				say "# WARNING: round $r $k $p: h2load rc=$rc, $req requests:"
				tail -n 12 "$out" | sed 's/^/#   /' | tee -a "$RESULTS"
				continue
			fi
			cpu=$(cpu_us_per_req $((t1 - t0)) "$req")
			cli=$(client_us_per_req "$req") cores=$(client_cores "$DURATION")
			parts=$(parts_us_per_req "$cli" "$cpu" "$req")
			RPS[$k,$p]="${RPS[$k,$p]:-} $rps"
			P99[$k,$p]="${P99[$k,$p]:-} $p99"
			CPU[$k,$p]="${CPU[$k,$p]:-} $cpu"
			CLI[$k,$p]="${CLI[$k,$p]:-} $cli"
			CORES[$k,$p]="${CORES[$k,$p]:-} $cores"
			UPC[$k,$p]="${UPC[$k,$p]:-} $UP_CORES"
			PXC[$k,$p]="${PXC[$k,$p]:-} $PROXY_CORES"
			BUSY[$k,$p]="${BUSY[$k,$p]:-} $BUSY_CORES"
			WAITC[$k,$p]="${WAITC[$k,$p]:-} $WAIT_CORES"
			PARTS[$k,$p]="${PARTS[$k,$p]:-} $parts"
			printf 'round %d %-7s %-17s req/s %9s  p99 %8s ms  cpu %7s us/req  h2load %7s us/req %5s cores  upstream %5s cores  proxy %5s cores  machine %5s cores  proxy waited %5s cores  (%d ticks, %d requests, errors %d, non-2xx %d)\n' \
				"$r" "$k" "$p" "$rps" "$p99" "$cpu" "$cli" "$cores" "$UP_CORES" "$PROXY_CORES" "$BUSY_CORES" "$WAIT_CORES" $((t1 - t0)) "$req" "$err" "$non2xx"
			raw "$r $k $p $req $rps $p99 $cpu $((t1 - t0)) $err $non2xx $cli $cores $UP_CORES $BUSY_CORES $WAIT_CORES $parts $PROXY_CORES"
			[ "$err" = 0 ] && [ "$non2xx" = 0 ] || say "# WARNING: round $r $k $p: $err errored or timed-out requests, $non2xx non-2xx responses"
		done
	done
done

# The better peer per metric: the highest req/s, the lowest p99 and CPU of HAProxy and nginx.
best() { # high|low values...
	local dir=$1
	shift
	printf '%s\n' "$@" | awk -v d="$dir" '$1 != "n/a" && $1 != "" { if (!n++ || (d == "high" ? $1 > b : $1 < b)) b = $1 } END { print n ? b : "n/a" }'
}
declare -A KIND_DESC=([tls]="h2 over TLS (ALPN h2)" [h2c]="h2c, prior knowledge" [grpc]="gRPC unary over h2c, $GRPC_BYTES-byte messages")
for k in $KINDS; do
	declare -A MR=() MP=() MC=() ML=() MK=() MU=() MX=() MB=() MW=() MS=()
	for p in $(kind_proxies "$k"); do
		MR[$p]=$(echo "${RPS[$k,$p]:-}" | median | fmt_num 0)
		MP[$p]=$(echo "${P99[$k,$p]:-}" | median | fmt_num 3)
		MC[$p]=$(echo "${CPU[$k,$p]:-}" | median | fmt_num 2)
		ML[$p]=$(echo "${CLI[$k,$p]:-}" | median | fmt_num 2)
		MK[$p]=$(echo "${CORES[$k,$p]:-}" | median | fmt_num 2)
		MU[$p]=$(echo "${UPC[$k,$p]:-}" | median | fmt_num 2)
		MX[$p]=$(echo "${PXC[$k,$p]:-}" | median | fmt_num 2)
		MB[$p]=$(echo "${BUSY[$k,$p]:-}" | median | fmt_num 2)
		MW[$p]=$(echo "${WAITC[$k,$p]:-}" | median | fmt_num 2)
		MS[$p]=$(echo "${PARTS[$k,$p]:-}" | median | fmt_num 2)
	done
	peers="haproxy nginx"
	[ "${k%%:*}" = grpc ] && peers=haproxy-grpc
	br=n/a bp=n/a bc=n/a rr="" rp="" rc=""
	for q in $peers; do rr="$rr ${MR[$q]:-n/a}" rp="$rp ${MP[$q]:-n/a}" rc="$rc ${MC[$q]:-n/a}"; done
	br=$(best high $rr) bp=$(best low $rp) bc=$(best low $rc)
	bs=n/a # the parts' sum of the peer with the better rate
	for q in $peers; do if [ "${MR[$q]:-n/a}" = "$br" ]; then bs=${MS[$q]:-n/a}; fi; done
	say ""
	say "## $k: ${KIND_DESC[${k%%:*}]}, h2load -c$CONNS -m${k##*:}: medians of $ROUNDS rounds of ${DURATION}s; ratio = proxy / the better of ${peers// / and } for each metric"
	FMT='%-17s %10s %9s %11s   %8s %7s %7s   %13s %12s %8s %11s %9s %11s   %11s %7s'
	say "$(printf "$FMT" proxy 'req/s' 'p99 ms' 'CPU us/req' 'req/s x' 'p99 x' 'CPU x' 'h2load us/req' 'h2load cores' 'up cores' 'proxy cores' 'all cores' 'proxy wait' 'all us/req' 'bound x')"
	for p in $(kind_proxies "$k"); do
		say "$(printf "$FMT" "$p" "${MR[$p]}" "${MP[$p]}" "${MC[$p]}" "$(ratio "${MR[$p]}" "$br")" \
			"$(ratio "${MP[$p]}" "$bp")" "$(ratio "${MC[$p]}" "$bc")" "${ML[$p]}" "${MK[$p]}" "${MU[$p]}" "${MX[$p]}" "${MB[$p]}" "${MW[$p]}" \
			"${MS[$p]}" "$(ratio "$bs" "${MS[$p]}")")"
	done
	say "spread (min..max over rounds):"
	for p in $(kind_proxies "$k"); do
		say_spread 17 "$p" "${RPS[$k,$p]:-}" "${P99[$k,$p]:-}" "${CPU[$k,$p]:-}"
	done
	unset MR MP MC ML MK MU MX MB MW MS
done
say ""
say "(h2load: the load client's own CPU per request and the cores it used; up: the upstream's cores"
say " (nginx, or grpc_responder for gRPC); proxy: the proxy's; all: the whole machine's busy cores."
say " h2load has $CLIENT_THREADS thread(s) and each upstream $UPSTREAM_WORKERS process(es): either near that, or all near the"
say " machine's $(nproc), and that part, not the proxy, set the rate; proxy cores near its $PROXY_WORKERS"
say " worker(s): the proxy set it; proxy wait: the cores' worth of time the proxy was ready to run but"
say " waited for a CPU; all us/req: h2load's, the upstream's and the proxy's CPU per request"
say " together; bound: the better peer's all us/req over the proxy's, the rate ratio the cores allow"
say " where both rounds kept the machine equally busy)"

say ""
say "# done; raw numbers in $RESULTS"
