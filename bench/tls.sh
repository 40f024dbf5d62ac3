#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/tls.sh — isthmus beside HAProxy over TLS: interleaved rounds of (1) full handshakes per
# second without resumption (openssl s_time -new), (1b) a new connection per request as wrk makes
# them (wrk -H 'Connection: close'; wrk resumes sessions) and
# (2) requests per second on kept-alive TLS connections; req/s, p99 and proxy CPU µs per
# request, medians and isthmus/HAProxy ratios; then (3) a request on an open connection during a
# burst of full handshakes (bench/hsburst.py): its latency and the burst's; (4) a request body in
# 1-byte TLS records (bench/tinyrec.py): the proxy's CPU per record. `make bench` runs it as `sh bench/tls.sh BUILD`,
# so it re-executes itself under bash. See bench/README.md ("TLS"). Usage: bench/tls.sh [BUILD_DIR]
# Environment: ROUNDS (5) DURATION (10, s) CONNS (64) WARMUP (2, s) KEY (rsa: RSA-2048; ecdsa: P-256)
#              STIME_PROCS (2: parallel openssl s_time clients in the full-handshake rounds)
#              BURST (200: ClientHellos sent at once in the burst rounds, bench/hsburst.py)
#              RECORDS (500000: 1-byte TLS records of the body in the records rounds, bench/tinyrec.py)
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -u

BUILD=${1:-build}
ROUNDS=${ROUNDS:-5}
DURATION=${DURATION:-10}
CONNS=${CONNS:-64}
WARMUP=${WARMUP:-2}
KEY=${KEY:-rsa}
STIME_PROCS=${STIME_PROCS:-2}
BURST=${BURST:-200}
RECORDS=${RECORDS:-500000}

UP1=19083 UP2=19084 ADMIN=19901
declare -A PORT=([isthmus]=19443 [haproxy]=19543)
declare -A PID=() DEAD=()
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
BENCH_NAME=tls
. "$BENCH_DIR/lib.sh"

case $ROUNDS$DURATION$CONNS$WARMUP$BURST$RECORDS in *[!0-9]*) die "ROUNDS, DURATION, CONNS, WARMUP, BURST, RECORDS must be integers";; esac
[ "$ROUNDS" -ge 1 ] && [ "$DURATION" -ge 1 ] && [ "$CONNS" -ge 1 ] || die "ROUNDS, DURATION, CONNS must be >= 1"
case $KEY in rsa) KEYDESC="RSA-2048" ;; ecdsa) KEYDESC="ECDSA P-256" ;; *) die "KEY must be rsa or ecdsa" ;; esac
need_tools "$NGINX" "$HAPROXY" "$WRK" curl openssl python3 ps
[ -x "$BUILD/isthmus" ] || die "$BUILD/isthmus not found (run make first)"

bench_tmp
results_open "$BENCH_DIR"
raise_nofile

say "# isthmus TLS bench $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
say "# command: $0 $* (ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS WARMUP=$WARMUP KEY=$KEY)"
say "# host: $(uname -srm), $(nproc) CPUs, nofile=$NOFILE, CLK_TCK=$HZ"
say "# $(versions); $(openssl version)"
say "# results file: $RESULTS"
ports_free $UP1 $UP2 $ADMIN ${PORT[isthmus]} ${PORT[haproxy]}

# --- certificates: one CA, one server certificate (SAN 127.0.0.1, localhost) for both ---------
make_certs "$KEY"
C=$CERTS
say "# certificate: $KEYDESC server certificate signed by a $KEYDESC CA, the same files for both proxies"

start_upstream $UP1 $UP2

# --- proxies ------------------------------------------------------------------------------------
ACTIVE=""
start_isthmus HTTPS "tls: {mode: SIMPLE, serverCertificate: $C/server.crt, privateKey: $C/server.key}" \
	"  admin: {address: 127.0.0.1:$ADMIN}"
# Requests on resumed TLS sessions go to be_res, the same servers, counted apart (see
# haproxy_tls_counters).
start_haproxy https "ssl crt $C/combined.pem alpn http/1.1" \
	"    stats socket $TMP/haproxy/stats.sock mode 600 level admin" \
	"    use_backend be_res if { ssl_fc_is_resumed }" \
	"backend be_res
    balance roundrobin
    server up1 127.0.0.1:$UP1
    server up2 127.0.0.1:$UP2"
[ -n "$ACTIVE" ] || die "no proxy started"

# Sanity: 200, 1 KiB body, certificate verifies against the CA, negotiated protocol and cipher.
for p in $ACTIVE; do
	url="https://127.0.0.1:${PORT[$p]}/"
	size=$(curl -s --cacert "$C/ca.crt" -m 2 "$url" | wc -c)
	nego=$(openssl s_client -connect "127.0.0.1:${PORT[$p]}" -alpn http/1.1 -CAfile "$C/ca.crt" </dev/null 2>/dev/null |
		awk '/^New,/{v=$2" "$5} /^ALPN protocol:/{a=$3} /Verify return code:/{r=$4} END{printf "%s, ALPN %s, verify %s", v, a, r}')
	say "# $p: port ${PORT[$p]}, pids $(tree_pids "${PID[$p]}" | tr '\n' ' '), body ${size} B (verified with the CA), $nego"
	[ "$size" = 1024 ] || say "# WARNING: $p returned a ${size}-byte body over verified TLS, expected 1024"
	check_edits "$p" "https://127.0.0.1:${PORT[$p]}/edits" --cacert "$C/ca.crt"
done

# isthmus's TLS counters from its admin /metrics: "handshakes resumed failures".
tls_counters() {
	curl -s -m 2 "http://127.0.0.1:$ADMIN/metrics" | awk '
		$1 == "isthmus_tls_handshakes_total" { h = $2 }
		$1 == "isthmus_tls_resumed_total" { r = $2 }
		$1 == "isthmus_tls_handshake_failures_total" { f = $2 }
		END { printf "%d %d %d\n", h, r, f }'
}

# HAProxy's resumed / all client TLS sessions: the frontend sends requests that arrived on a
# resumed session (ssl_fc_is_resumed) to backend be_res, the same servers as be; "show stat" on
# the stats socket gives each backend's total (stot). With Connection: close, one request is one
# handshake. Prints "handshakes resumed".
haproxy_tls_counters() {
	python3 - "$TMP/haproxy/stats.sock" <<'PY' 2>/dev/null || echo "0 0"
import socket, sys
s = socket.socket(socket.AF_UNIX); s.settimeout(2); s.connect(sys.argv[1]); s.sendall(b"show stat\n")
d = b""
while True:
    b = s.recv(65536)
    if not b: break
    d += b
lines = d.decode().splitlines()
hdr = lines[0].lstrip("# ").split(",")
tot = {}
for l in lines[1:]:
    f = dict(zip(hdr, l.split(",")))
    if f.get("svname") == "BACKEND": tot[f["pxname"]] = int(f.get("stot") or 0)
print(tot.get("be", 0) + tot.get("be_res", 0), tot.get("be_res", 0))
PY
}

# Full handshakes, no resumption: `openssl s_time -new` (a new session per connection, one
# HTTP/1.0 GET each), STIME_PROCS clients side by side. Writes a wrk-style summary to outfile so
# that parse_wrk reads it (no latency figures: p99 is reported as -1).
run_stime() { # outfile seconds port
	local i n=0 conns pids=""
	for i in $(seq 1 "$STIME_PROCS"); do
		timeout $(($2 + 30)) openssl s_time -connect "127.0.0.1:$3" -new -www / -time "$2" \
			-CAfile "$C/ca.crt" >"$1.$i" 2>&1 &
		pids="$pids $!"
	done
	CUR_PID=$pids
	wait $pids
	CUR_PID=""
	for i in $(seq 1 "$STIME_PROCS"); do
		conns=$(awk '/connections in .* real seconds/ { print $1 }' "$1.$i")
		n=$((n + ${conns:-0}))
	done
	printf '  %d requests in %ds\nRequests/sec: %s\n' "$n" "$2" \
		"$(awk -v n="$n" -v s="$2" 'BEGIN { printf "%.1f", n / s }')" >"$1"
	[ "$n" -gt 0 ]
}

run_mode() { # mode proxy seconds outfile
	local url="https://127.0.0.1:${PORT[$2]}/"
	case $1 in
	new) run_stime "$4" "$3" "${PORT[$2]}" ;;
	hs) run_wrk "$4" "$3" -c"$CONNS" --timeout 5s --latency -H 'Connection: close' "$url" ;;
	ka) run_wrk "$4" "$3" -c"$CONNS" --timeout 5s --latency "$url" ;;
	esac
}

MODES="new hs ka"
declare -A MODE_DESC=([new]="full handshakes, no resumption (openssl s_time -new, $STIME_PROCS clients; one GET per connection)"
	[hs]="a new TLS connection per request, sessions resumed as wrk does (wrk -H 'Connection: close')"
	[ka]="kept-alive TLS connections")
declare -A RPS=() P99=() CPU=() RES=()
read -r -a ACTIVE_ARR <<<"$ACTIVE"
N=${#ACTIVE_ARR[@]}

say ""
say "# warm-up: ${WARMUP}s per proxy and mode"
for m in $MODES; do for p in $ACTIVE; do
	run_mode "$m" "$p" "$WARMUP" "$TMP/warmup-$m-$p.txt" || say "# WARNING: warm-up wrk ($m) for $p exited non-zero"
done; done

say "# rounds: $ROUNDS x ${DURATION}s per proxy and mode, wrk -t$CLIENT_THREADS -c$CONNS, proxy order rotated every round"
raw ""
raw "round mode proxy requests req_per_s p99_ms cpu_us_per_req cpu_ticks errors non2xx TLS: isthmus: handshakes resumed handshake_failures; haproxy: requests requests_on_resumed_sessions"
for r in $(seq 1 "$ROUNDS"); do
	order=""
	for i in $(seq 0 $((N - 1))); do order="$order ${ACTIVE_ARR[$(((i + r - 1) % N))]}"; done
	for m in $MODES; do
		for p in $order; do
			proxy_running "$p" || continue
			out="$TMP/wrk-$r-$m-$p.txt"
			if [ "$p" = isthmus ]; then read -r h0 s0 f0 < <(tls_counters)
			else read -r h0 s0 < <(haproxy_tls_counters); fi
			t0=$(cpu_ticks "${PID[$p]}")
			run_mode "$m" "$p" "$DURATION" "$out"
			rc=$?
			t1=$(cpu_ticks "${PID[$p]}")
			tlsnote="" tlsraw=""
			if [ "$p" = isthmus ]; then
				read -r h1 s1 f1 < <(tls_counters)
				tlsnote=$(printf ', TLS handshakes %d resumed %d failed %d' $((h1 - h0)) $((s1 - s0)) $((f1 - f0)))
				tlsraw="$((h1 - h0)) $((s1 - s0)) $((f1 - f0))"
			else
				read -r h1 s1 < <(haproxy_tls_counters)
				tlsnote=$(printf ', requests %d on resumed sessions %d' $((h1 - h0)) $((s1 - s0)))
				tlsraw="$((h1 - h0)) $((s1 - s0))"
			fi
			read -r req rps p99 err non2xx < <(parse_wrk "$out")
			if [ "$rc" != 0 ] || [ "${req:-0}" -le 0 ]; then
				say "# WARNING: round $r $m $p: wrk rc=$rc, $req requests:"
				sed 's/^/#   /' "$out" | tee -a "$RESULTS"
				continue
			fi
			cpu=$(cpu_us_per_req $((t1 - t0)) "$req")
			RPS[$m,$p]="${RPS[$m,$p]:-} $rps"
			P99[$m,$p]="${P99[$m,$p]:-} $p99"
			CPU[$m,$p]="${CPU[$m,$p]:-} $cpu"
			printf 'round %d %s %-8s req/s %9s  p99 %8s ms  cpu %8s us/req  (%d ticks, %d requests, errors %d, non-2xx %d%s)\n' \
				"$r" "$m" "$p" "$rps" "$p99" "$cpu" $((t1 - t0)) "$req" "$err" "$non2xx" "$tlsnote"
			raw "$r $m $p $req $rps $p99 $cpu $((t1 - t0)) $err $non2xx $tlsraw"
			if [ "$err" != 0 ] || [ "$non2xx" != 0 ]; then
				say "# WARNING: round $r $m $p: $err socket errors, $non2xx non-2xx responses; wrk said:"
				grep -E 'Socket errors|Non-2xx' "$out" | sed 's/^/#   /' | tee -a "$RESULTS"
			fi
			[ "$m" = hs ] && RES[$p]="${RES[$p]:-} $(awk -v a=$((s1 - s0)) -v b=$((h1 - h0)) 'BEGIN{ if (b > 0) printf "%.1f", 100 * a / b }')"
		done
	done
done

for m in $MODES; do
	declare -A MR=() MP=() MC=()
	for p in $ACTIVE; do
		MR[$p]=$(echo "${RPS[$m,$p]:-}" | median | fmt_num 0)
		MP[$p]=$(echo "${P99[$m,$p]:-}" | median | fmt_num 3)
		MC[$p]=$(echo "${CPU[$m,$p]:-}" | median | fmt_num 2)
	done
	say ""
	say "## $m: ${MODE_DESC[$m]}: medians of $ROUNDS rounds of ${DURATION}s; ratio = isthmus / HAProxy"
	[ "$m" = new ] && say "(no latency figures from s_time: p99 shows -1)"
	FMT='%-8s %10s %9s %11s   %8s %7s %7s'
	say "$(printf "$FMT" proxy 'req/s' 'p99 ms' 'CPU us/req' 'req/s x' 'p99 x' 'CPU x')"
	for p in haproxy isthmus; do
		case " $ACTIVE " in *" $p "*) ;; *) say "$(printf '%-8s %10s' "$p" 'skipped')"; continue ;; esac
		say "$(printf "$FMT" "$p" "${MR[$p]}" "${MP[$p]}" "${MC[$p]}" \
			"$(ratio "${MR[$p]}" "${MR[haproxy]:-n/a}")" \
			"$(ratio "${MP[$p]}" "${MP[haproxy]:-n/a}")" \
			"$(ratio "${MC[$p]}" "${MC[haproxy]:-n/a}")")"
	done
	say "spread (min..max over rounds):"
	for p in $ACTIVE; do
		say_spread 8 "$p" "${RPS[$m,$p]:-}" "${P99[$m,$p]:-}" "${CPU[$m,$p]:-}"
	done
	unset MR MP MC
done
# A burst of full handshakes beside an open connection (bench/hsburst.py): the open connection's
# request waits for what the proxy runs before it; the burst's own time is the handshakes' CPU.
say ""
say "## burst: a request on an open TLS connection sent right after BURST ($BURST) ClientHellos, $ROUNDS rounds of 3 per proxy; medians (min..max)"
declare -A BG=() BA=() BB=()
for r in $(seq 1 "$ROUNDS"); do
	for p in $ACTIVE; do
		proxy_running "$p" || continue
		if ! timeout 200 python3 "$BENCH_DIR/hsburst.py" "${PORT[$p]}" "$C/ca.crt" "$BURST" 3 >"$TMP/burst-$r-$p.txt" 2>&1; then
			say "# WARNING: round $r burst $p failed: $(tail -1 "$TMP/burst-$r-$p.txt")"
			continue
		fi
		while read -r g a b; do
			BG[$p]="${BG[$p]:-} $g" BA[$p]="${BA[$p]:-} $a" BB[$p]="${BB[$p]:-} $b"
			raw "$r burst $p get_ms $g all_ms $a answered_before_get $b"
		done <"$TMP/burst-$r-$p.txt"
	done
done
FMT='%-8s %24s %24s %22s'
say "$(printf "$FMT" proxy 'request ms' 'burst done ms' 'answered before it')"
for p in $ACTIVE; do
	say "$(printf "$FMT" "$p" "$(echo "${BG[$p]:-}" | median | fmt_num 1) ($(echo "${BG[$p]:-}" | spread))" \
		"$(echo "${BA[$p]:-}" | median | fmt_num 1) ($(echo "${BA[$p]:-}" | spread))" \
		"$(echo "${BB[$p]:-}" | median | fmt_num 0) ($(echo "${BB[$p]:-}" | spread))")"
done
# A request body in 1-byte TLS records (bench/tinyrec.py): the proxy's CPU per record, which a
# proxy that hands on one record at a time pays in full for each.
say ""
say "## records: a request body of RECORDS ($RECORDS) 1-byte TLS records, $ROUNDS rounds per proxy; proxy CPU µs per record, medians (min..max)"
declare -A TR=()
for r in $(seq 1 "$ROUNDS"); do
	for p in $ACTIVE; do
		proxy_running "$p" || continue
		t0=$(cpu_ticks "${PID[$p]}")
		if ! timeout 200 python3 "$BENCH_DIR/tinyrec.py" "${PORT[$p]}" "$RECORDS" >"$TMP/records-$r-$p.txt" 2>&1; then
			say "# WARNING: round $r records $p failed: $(tail -1 "$TMP/records-$r-$p.txt")"
			continue
		fi
		t1=$(cpu_ticks "${PID[$p]}")
		read -r secs status <"$TMP/records-$r-$p.txt"
		us=$(awk -v t=$((t1 - t0)) -v n="$RECORDS" -v hz="$HZ" 'BEGIN { printf "%.2f", t * 1e6 / hz / n }')
		TR[$p]="${TR[$p]:-} $us"
		raw "$r records $p seconds $secs status $status cpu_ticks $((t1 - t0)) us_per_record $us"
	done
done
for p in $ACTIVE; do
	say "$(printf '  %-8s %s (%s)' "$p" "$(echo "${TR[$p]:-}" | median | fmt_num 2)" "$(echo "${TR[$p]:-}" | spread)")"
done
say ""
say "## share of resumed TLS sessions in the hs rounds, % (median, min..max) — wrk resumes a session when it reconnects"
for p in $ACTIVE; do say "$(printf '  %-8s %s (%s)' "$p" "$(echo "${RES[$p]:-}" | median | fmt_num 1)" "$(echo "${RES[$p]:-}" | spread)")"; done
case " $ACTIVE " in *" isthmus "*)
	say ""
	say "# isthmus TLS counters at the end (handshakes resumed failures): $(tls_counters)" ;;
esac
say ""
say "# done; raw numbers in $RESULTS"
