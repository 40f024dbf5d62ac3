#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# bench/instructions.sh — what one request of the bench's plain route costs isthmus builds,
# in counts instead of time: the instructions a worker executes in user space per request
# (valgrind's callgrind counts every one, so the figure does not move with the machine's load)
# and its io_uring submissions, completions and system calls per request (perf's software
# tracepoints, the kernel's side). For a change whose cost is a few per cent, which CPU-time
# rounds on a shared 2-core machine do not resolve. The first build is the reference. Also the
# share of the worker's samples (perf record, cpu-clock) in the kernel's descriptor lookups:
# fget/fdget and fput around each operation on a descriptor, io_uring's lookup of a request's
# file (normal or registered). And the TCP segments the machine sends per request (nstat).
# Usage: bench/instructions.sh BUILD_DIR [BUILD_DIR...]
# Environment: ROUNDS (3) DURATION (10, s under valgrind) CONNS (4) KERNEL_DURATION (5, s)
#              LOAD (h1: wrk; h2c: h2load over prior-knowledge HTTP/2; grpc: h2load's unary gRPC calls
#              over h2c to a ServiceEntry of protocol GRPC, bench/grpc_responder.c behind it;
#              h1tls: wrk over HTTPS; h2tls: h2load over HTTP/2 on TLS, STREAMS each)
#              STREAMS (10, h2c's and grpc's per connection) GRPC_BYTES (32, each message's size)
#              CG_KEEP (a directory: each build's last callgrind profiles are kept there, for
#              callgrind_annotate)
#              LOAD_HEADER (a request field every request of the load carries, "name: value";
#              with ISTHMUS_EXTRA=bench/jwt.yaml, "authorization: Bearer $(cat bench/jwt-es256.token)")
if [ -z "${BASH_VERSION:-}" ]; then exec bash "$0" "$@"; fi
set -u

[ $# -ge 1 ] || { echo "usage: $0 BUILD_DIR [BUILD_DIR...]" >&2; exit 2; }
ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
CONNS=${CONNS:-4}
KERNEL_DURATION=${KERNEL_DURATION:-5}
LOAD=${LOAD:-h1}
STREAMS=${STREAMS:-10}
GRPC_BYTES=${GRPC_BYTES:-32}
UP1=19081 UP2=19082 GRPC_UP=19083
declare -A PORT=()
declare -A PID=()
ACTIVE=""
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
BENCH_NAME=instructions
. "$BENCH_DIR/lib.sh"

case $ROUNDS$DURATION$CONNS$KERNEL_DURATION$STREAMS$GRPC_BYTES in
*[!0-9]*) die "ROUNDS, DURATION, CONNS, KERNEL_DURATION, STREAMS, GRPC_BYTES must be integers" ;;
esac
case $LOAD in h1|h2c|grpc|h1tls|h2tls) ;; *) die "LOAD must be h1, h2c, grpc, h1tls or h2tls";; esac
[ "$ROUNDS" -ge 1 ] && [ "$DURATION" -ge 1 ] && [ "$CONNS" -ge 1 ] || die "ROUNDS, DURATION, CONNS must be >= 1"
need_tools "$NGINX" "$WRK" "$H2LOAD" curl valgrind callgrind_control perf nstat
for b in "$@"; do [ -x "$b/isthmus" ] || die "$b/isthmus not found (build it first)"; done

bench_tmp
results_open "$BENCH_DIR"
raise_nofile
say "# isthmus instructions $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
say "# command: $0 $* (ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS KERNEL_DURATION=$KERNEL_DURATION LOAD=$LOAD STREAMS=$STREAMS GRPC_BYTES=$GRPC_BYTES${ISTHMUS_EXTRA:+ ISTHMUS_EXTRA=$ISTHMUS_EXTRA}${ISTHMUS_SPEC_EXTRA:+ ISTHMUS_SPEC_EXTRA=$ISTHMUS_SPEC_EXTRA}${LOAD_HEADER:+ LOAD_HEADER=${LOAD_HEADER:0:40}...})"
say "# host: $(uname -srm), $(nproc) CPUs; $(valgrind --version)"
for b in "$@"; do say "# build $b: $(cd "$b/.." 2>/dev/null && git describe --always --dirty 2>/dev/null || echo '?')"; done
if [ "$LOAD" = grpc ]; then
	start_grpc_responder $GRPC_UP "$GRPC_BYTES"
	grpc_request_body "$TMP/grpc-req.bin" "$GRPC_BYTES"
	# isthmus's listener is h2c-capable HTTP; the readiness probe of start_isthmus speaks h2c.
	export UPS=$GRPC_UP SE_PROTOCOL=GRPC
	CURL_EXTRA=--http2-prior-knowledge
else
	start_upstream $UP1 $UP2
fi
# The listener: plaintext, or HTTPS (h1tls, h2tls) with a certificate made for the run.
PROTO=HTTP TLS_LINE="" SCHEME=http
case $LOAD in h1tls|h2tls)
	make_certs rsa
	PROTO=HTTPS SCHEME=https
	TLS_LINE="tls: {mode: SIMPLE, serverCertificate: $CERTS/server.crt, privateKey: $CERTS/server.key}" ;;
esac

# The load for $2 seconds on port $3, its output in $1; then LOAD_REQ, LOAD_ERR: requests served,
# and those that failed or were not 2xx. h1: wrk, CONNS connections; h2c: h2load, CONNS
# connections of STREAMS streams each; grpc: h2load's unary calls, as h2c.
load() { # outfile seconds port
	local req err non2xx
	case $LOAD in
	h1)
		run_wrk "$1" "$2" -c"$CONNS" ${LOAD_HEADER:+-H "$LOAD_HEADER"} "http://127.0.0.1:$3/"
		read -r req _ _ err non2xx < <(parse_wrk "$1") ;;
	h1tls)
		run_wrk "$1" "$2" -c"$CONNS" ${LOAD_HEADER:+-H "$LOAD_HEADER"} "https://127.0.0.1:$3/"
		read -r req _ _ err non2xx < <(parse_wrk "$1") ;;
	h2c|h2tls)
		run_h2load "$1" "$2" -c"$CONNS" -m"$STREAMS" ${LOAD_HEADER:+-H "$LOAD_HEADER"} "$SCHEME://127.0.0.1:$3/"
		read -r req _ _ err non2xx < <(parse_h2load "$1") ;;
	grpc)
		run_h2load "$1" "$2" -c"$CONNS" -m"$STREAMS" -d "$TMP/grpc-req.bin" -H 'content-type: application/grpc' \
			-H 'te: trailers' "http://127.0.0.1:$3/bench.Bench/Unary"
		read -r req _ _ err non2xx < <(parse_h2load "$1") ;;
	esac
	LOAD_REQ=$req
	LOAD_ERR=$((err + non2xx))
}

# The worker of a master started with workers: 1 (its only child).
worker_of() { ps -o pid= --ppid "$1" | awk 'NR==1{print $1}'; }

# The Ir total of a callgrind dump.
dump_ir() { awk '$1 == "summary:" || $1 == "totals:" {print $2; exit}' "$1"; }

# One life of a build under callgrind: start, `wrk -d$2`, stop. CG_IR and CG_REQ: its worker's
# instructions (callgrind writes them when the worker exits) and the requests served. vgdb, and
# so callgrind_control, cannot reach a forked worker: hence whole lives, and two of them.
cg_life() { # name seconds build
	local name=$1 d="$TMP/$1" w req err non2xx
	rm -rf "$d"
	mkdir -p "$d"
	ISTHMUS_WRAP="valgrind --tool=callgrind --callgrind-out-file=$d/cg.%p --dump-instr=no --collect-jumps=no" \
		UP_TRIES=300 start_isthmus "$PROTO" "$TLS_LINE" "" "$name" "$3" || die "$3 did not start under valgrind"
	w=$(worker_of "${PID[$name]}")
	[ -n "$w" ] || die "$name: no worker process"
	load "$d/load.txt" "$2" "${PORT[$name]}"
	req=$LOAD_REQ
	[ "$LOAD_ERR" = 0 ] || say "# WARNING: $name: $LOAD_ERR requests failed or not 2xx"
	kill -TERM "${PID[$name]}" 2>/dev/null
	wait "${PID[$name]}" 2>/dev/null
	ACTIVE=""
	[ -s "$d/cg.$w" ] || die "$name: no callgrind output for worker $w"
	CG_IR=$(dump_ir "$d/cg.$w")
	[ -z "${CG_KEEP:-}" ] || cp "$d/cg.$w" "$CG_KEEP/$name-$2s.callgrind"
	CG_REQ=$req
}

declare -A IR=() SQE=() CQE=() SYS=() LOOKUP=() SEGS=()
n=0
for b in "$@"; do
	n=$((n + 1))
	name="build$n"
	PORT[$name]=$((19580 + n))
	ports_free "${PORT[$name]}"
	# 1. User space: two lives under callgrind, a short and a long one; the difference of their
	# workers' instructions over the difference of their requests leaves start and stop out.
	for r in $(seq 1 "$ROUNDS"); do
		cg_life "$name" 1 "$b"
		ir1=$CG_IR n1=$CG_REQ
		cg_life "$name" "$DURATION" "$b"
		ir2=$CG_IR n2=$CG_REQ
		[ -n "$ir1" ] && [ -n "$ir2" ] && [ "$((n2 - n1))" -gt 0 ] || die "$name round $r: no counts ($ir1 $n1, $ir2 $n2)"
		per=$(awk -v a="$ir1" -v b="$ir2" -v m="$n1" -v n="$n2" 'BEGIN{printf "%.0f", (b - a) / (n - m)}')
		# The lives' fixed costs (start, stop, handshakes) must be alike for the difference
		# to mean anything: under valgrind, the 1 s life may not finish many TLS handshakes.
		[ "$per" -gt 0 ] || die "$name round $r: the ${DURATION} s life counted no more per request than the 1 s one ($ir1 for $n1, $ir2 for $n2): with TLS, use fewer CONNS (each handshake takes tens of ms under valgrind)"
		IR[$name]="${IR[$name]:-} $per"
		say "round $r $name: $ir1 instructions for $n1 requests, $ir2 for $n2: $per per request"
	done
	# 2. The kernel's side: natively, io_uring submissions/completions and system calls.
	kname="k$name"
	PORT[$kname]=$((19680 + n))
	ports_free "${PORT[$kname]}"
	start_isthmus "$PROTO" "$TLS_LINE" "" "$kname" "$b" || die "$b did not start"
	w=$(worker_of "${PID[$kname]}")
	load "$TMP/kwarm-$name.txt" 2 "${PORT[$kname]}" || true
	perf stat -x, -o "$TMP/perf-$name.txt" -e io_uring:io_uring_submit_req,io_uring:io_uring_complete,raw_syscalls:sys_enter \
		-p "$w" -- sleep $((KERNEL_DURATION + 1)) &
	pp=$!
	perf record -q -F 1999 -o "$TMP/prof-$name.data" -p "$w" -- sleep $((KERNEL_DURATION + 1)) >/dev/null 2>&1 &
	pr=$!
	sleep 0.5
	# The machine's TCP counters from here (loopback: sent = received), the
	# history nstat keeps between its calls in the run's directory.
	export NSTAT_HISTORY="$TMP/nstat.history"
	nstat -n >/dev/null
	load "$TMP/kwrk-$name.txt" "$KERNEL_DURATION" "${PORT[$kname]}"
	SEGS_OUT=$(nstat 2>/dev/null | awk '$1 == "TcpOutSegs" {print $2}')
	wait "$pp"
	wait "$pr"
	LOOKUP[$name]=$(perf report -q -i "$TMP/prof-$name.data" --no-children --sort sym --stdio 2>/dev/null |
		awk '$NF ~ /^(fget|fget_raw|fdget|fput|io_file_get_normal|io_file_get_fixed)$/ {sub(/%/, "", $1); t += $1}
		     END {printf "%.2f", t}')
	say "profile $name: descriptor lookups ${LOOKUP[$name]} % of the worker's samples"
	req=$LOAD_REQ
	ev() { awk -F, -v e="$1" '$3 == e {print $1}' "$TMP/perf-$name.txt"; }
	SQE[$name]=$(awk -v a="$(ev io_uring:io_uring_submit_req)" -v n="$req" 'BEGIN{printf "%.2f", a / n}')
	CQE[$name]=$(awk -v a="$(ev io_uring:io_uring_complete)" -v n="$req" 'BEGIN{printf "%.2f", a / n}')
	SYS[$name]=$(awk -v a="$(ev raw_syscalls:sys_enter)" -v n="$req" 'BEGIN{printf "%.3f", a / n}')
	SEGS[$name]=$(awk -v a="${SEGS_OUT:-0}" -v n="$req" 'BEGIN{printf "%.2f", a / n}')
	say "kernel $name: $req requests: ${SQE[$name]} submissions, ${CQE[$name]} completions, ${SYS[$name]} system calls, ${SEGS[$name]} TCP segments per request"
	kill -TERM "${PID[$kname]}" 2>/dev/null
	wait "${PID[$kname]}" 2>/dev/null
done

say ""
say "## per request, medians of $ROUNDS rounds ($LOAD, $CONNS connections$(case $LOAD in h1*) ;; *) echo " of $STREAMS streams" ;; esac)); ratio = build / build1"
say "$(printf '%-8s %-40s %12s %7s %10s %8s %8s %8s %8s %8s' build dir instructions ratio spread sqe cqe syscalls lookup% segments)"
ref=$(echo "${IR[build1]}" | median)
n=0
for b in "$@"; do
	n=$((n + 1))
	name="build$n"
	m=$(echo "${IR[$name]}" | median)
	say "$(printf '%-8s %-40s %12.0f %7s %10s %8s %8s %8s %8s %8s' "$name" "$b" "$m" "$(awk -v a="$m" -v b="$ref" 'BEGIN{printf "%.3f", a / b}')" \
		"$(echo "${IR[$name]}" | spread)" "${SQE[$name]}" "${CQE[$name]}" "${SYS[$name]}" "${LOOKUP[$name]}" "${SEGS[$name]}")"
done
