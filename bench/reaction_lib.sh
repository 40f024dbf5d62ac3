# SPDX-License-Identifier: Apache-2.0
# bench/reaction_lib.sh — shared by bench/reaction.sh and bench/dns_reaction.sh (sourced, bash
# only): the checks of the build, the temp dir and its teardown, the results file, the runs'
# processes (tests/upstream, isthmus, anything else started in its own process group and
# stopped at the end of each run), the generated configuration's common part, the client and
# the summary's medians. Not bench/lib.sh: that one serves the throughput benches (an nginx
# upstream, wrk, one teardown at the end); here every run starts and stops its own processes.
# The sourcing script sets BUILD, BENCH_DIR, WORKERS, SVC, BENCH_NAME (prefix of its
# messages) and BENCH_FILES (prefix of its temp dir and results file).

STARTED=""   # pids of this run's processes (each in its own process group)

die() { echo "$BENCH_NAME: $*" >&2; exit 1; }

need_integers() { # variable names...
	local v all="" names="$*"
	for v in "$@"; do all="$all${!v}"; done
	case $all in *[!0-9]*) die "${names// /, } must be integers";; esac
}

# The build and the tools checked, ISTHMUS and UPSTREAM set (absolute paths), the temp dir
# made (TMP, removed on exit unless KEEP_TMP=1), the results file opened (RESULTS).
reaction_init() {
	[ -x "$BUILD/isthmus" ] || die "$BUILD/isthmus is not built (make)"
	[ -x "$BUILD/tests/upstream" ] || die "$BUILD/tests/upstream is not built (make)"
	local b
	for b in python3 curl; do command -v "$b" >/dev/null 2>&1 || die "$b not found"; done
	ISTHMUS=$(cd "$(dirname "$BUILD/isthmus")" && pwd)/isthmus
	UPSTREAM=$(cd "$(dirname "$BUILD/tests/upstream")" && pwd)/upstream
	TMP=$(mktemp -d "/tmp/isthmus-$BENCH_FILES.XXXXXX") || die "mktemp failed"
	trap teardown EXIT
	trap 'echo "$BENCH_NAME: interrupted" >&2; exit 130' INT TERM HUP
	mkdir -p "$BENCH_DIR/results"
	RESULTS="$BENCH_DIR/results/$BENCH_FILES-$(date +%Y%m%d-%H%M%S).txt"
	: >"$RESULTS" || die "cannot write $RESULTS"
}

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
	if [ "${KEEP_TMP:-0}" = 1 ]; then echo "$BENCH_NAME: kept $TMP"; else rm -rf "$TMP"; fi
}

say() { printf '%s\n' "$*" | tee -a "$RESULTS"; }

# A port free for TCP and UDP (dnsmasq listens on both) on 127.0.0.1 a moment ago.
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

# start_bg OUTFILE COMMAND...: started in its own process group, its output in OUTFILE, and
# stopped by stop_run. Sets BG_PID. Disowned: no "Killed" job report when a client SIGKILLs it.
start_bg() {
	local out=$1
	shift
	setsid "$@" >"$out" 2>&1 </dev/null &
	BG_PID=$!
	disown "$BG_PID"
	STARTED="$STARTED $BG_PID"
}

# start_upstream NAME ADDR PORT [ZONE]: a tests/upstream answering as NAME (x-upstream) on
# ADDR:PORT (PORT 0: any). Sets UP_PORT (the port it listens on) and UP_PID.
start_upstream() {
	local out="$TMP/run/up-$1.out" i
	start_bg "$out" "$UPSTREAM" --name "$1" --listen "$2:$3=$1" ${4:+--zone "$4"}
	UP_PID=$BG_PID
	for i in $(seq 1 50); do
		UP_PORT=$(sed -n 's/^listening on [0-9.]*:\([0-9]*\)$/\1/p' "$out" | head -1)
		[ -n "$UP_PORT" ] && return 0
		sleep 0.1
	done
	die "upstream $1 did not start on $2:$3: $(cat "$out")"
}

# reaction_yaml NAME GW_PORT RESOLUTION [LINE...]: the generated configuration up to the
# ServiceEntry's endpoints (the caller adds them, and what follows): an Appliance of WORKERS
# workers with a control socket in $TMP/run and more spec lines LINE..., a Gateway on GW_PORT, a
# VirtualService sending everything to the ServiceEntry of host SVC and resolution RESOLUTION.
reaction_yaml() {
	cat <<EOF
apiVersion: isthmus.io/v1
kind: Appliance
metadata: {name: $1}
spec:
  locality: eu-west/eu-west-1a
  workers: $WORKERS
  listenAddress: 127.0.0.1
  controlSocket: $TMP/run/ctl.sock
  timeouts: {upstreamConnect: 1s, upstreamResponse: 5s}
$(printf '%s\n' "${@:4}")
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  servers:
  - port: {number: $2, name: http, protocol: HTTP}
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
  resolution: $3
  endpoints:
EOF
}

# start_gateway: isthmus on $TMP/run/isthmus.yaml, checked first (isthmus -c); its log in
# $TMP/run/isthmus.log. Sets GW_PID.
start_gateway() {
	"$ISTHMUS" -c -f "$TMP/run/isthmus.yaml" >"$TMP/run/check.out" 2>&1 ||
		die "isthmus -c refused the generated file: $(cat "$TMP/run/check.out")"
	start_bg "$TMP/run/isthmus.log" "$ISTHMUS" -f "$TMP/run/isthmus.yaml"
	GW_PID=$BG_PID
}

# gateway_ready PORT WHAT COMMAND...: within 10 s the gateway (GW_PID, listening on PORT) makes
# COMMAND true ("isthmus did not WHAT within 10 s" otherwise); then the pooled connections of
# every worker are warmed.
gateway_ready() {
	local port=$1 what=$2 i ok=0
	shift 2
	for i in $(seq 1 100); do
		kill -0 "$GW_PID" 2>/dev/null || die "isthmus exited: $(tail -20 "$TMP/run/isthmus.log")"
		if "$@"; then
			ok=1
			break
		fi
		sleep 0.1
	done
	[ "$ok" = 1 ] || die "isthmus did not $what within 10 s: $(tail -20 "$TMP/run/isthmus.log")"
	for i in $(seq 1 40); do curl -s -o /dev/null "http://127.0.0.1:$port/"; done
}

# run_client SCRIPT ARGS...: bench/SCRIPT, its output in $TMP/run/client.{out,err}. Sets
# CLIENT_LINE, the last line of its output (its results).
run_client() {
	python3 "$BENCH_DIR/$1" "${@:2}" >"$TMP/run/client.out" 2>"$TMP/run/client.err" ||
		die "client failed: $(cat "$TMP/run/client.err")"
	CLIENT_LINE=$(tail -1 "$TMP/run/client.out")
}

# The summary. field NAME LINE: the value of NAME= in LINE. median, range: of the numbers on
# stdin, one a line ("-", no value, left out). cell NAME LINES...: "median (min..max)" of
# field NAME over LINES.
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<<" $2"; }
median() { grep -v '^-$' | sort -g | awk '{v[NR]=$1} END {if (NR==0) print "-"; else if (NR%2) print v[(NR+1)/2]; else printf "%.1f\n", (v[NR/2]+v[NR/2+1])/2}'; }
range() { grep -v '^-$' | sort -g | awk 'NR==1{a=$1} {b=$1} END {print a ".." b}'; }
col() { local l; for l in "${@:2}"; do field "$1" "$l"; done; }
cell() { printf '%s (%s)' "$(col "$@" | median)" "$(col "$@" | range)"; }
