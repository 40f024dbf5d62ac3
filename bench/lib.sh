# SPDX-License-Identifier: Apache-2.0
# bench/lib.sh — shared by bench/bench.sh and bench/tls.sh (sourced, bash only): temp dir and
# teardown, results file, port and HTTP checks, the upstream nginx, process-tree CPU ticks, wrk
# runs and their parsing, medians and ratios. The sourcing script sets BENCH_NAME (prefix of its
# messages, its temp dir and its results file) and, before calling start_upstream, NOFILE.

NGINX=${NGINX:-/usr/sbin/nginx}
HAPROXY=${HAPROXY:-/usr/sbin/haproxy}
WRK=${WRK:-/usr/bin/wrk}
H2LOAD=${H2LOAD:-/usr/bin/h2load}
HZ=$(getconf CLK_TCK)
BENCH_NAME=${BENCH_NAME:-bench}

# Placement on a machine with cores to spare (bench/README.md, "A proxy-bound run"): each of the
# three parts on its own CPUs (taskset lists), the load client with CLIENT_THREADS threads, the
# upstreams with UPSTREAM_WORKERS workers (processes), so that the proxy's one core, not the
# client or the upstream, sets the rate. Unset: every part anywhere, one thread and one worker.
# PROXY_WORKERS: the workers (isthmus, nginx) or threads (HAProxy) of each proxy, default 1.
PIN_PROXY=${PIN_PROXY:-}
PIN_CLIENT=${PIN_CLIENT:-}
PIN_UPSTREAM=${PIN_UPSTREAM:-}
CLIENT_THREADS=${CLIENT_THREADS:-1}
PROXY_WORKERS=${PROXY_WORKERS:-1}
UPSTREAM_WORKERS=${UPSTREAM_WORKERS:-1}
GRPC_RESPONDER=${GRPC_RESPONDER:-} # a built bench/grpc_responder.c (else built with cc)
case $CLIENT_THREADS$UPSTREAM_WORKERS$PROXY_WORKERS in *[!0-9]*) echo "$BENCH_NAME: CLIENT_THREADS, UPSTREAM_WORKERS, PROXY_WORKERS must be integers" >&2; exit 1 ;; esac
# The command words that run a part on its CPUs (empty where unpinned), unquoted where used.
on_cpus() { [ -z "$1" ] || echo "taskset -c $1"; }
RUN_PROXY=$(on_cpus "$PIN_PROXY")
RUN_CLIENT=$(on_cpus "$PIN_CLIENT")
RUN_UPSTREAM=$(on_cpus "$PIN_UPSTREAM")
# One line for a run's header: where the parts ran.
placement() {
	echo "placement: proxy ($PROXY_WORKERS workers) on CPUs ${PIN_PROXY:-any}, client ($CLIENT_THREADS threads) on ${PIN_CLIENT:-any}, upstream ($UPSTREAM_WORKERS workers) on ${PIN_UPSTREAM:-any}"
}

STARTED=""          # every pid we started, for the teardown
CLIENT_PID=""       # a background client (bench.sh's idle-connection client) while it runs
CUR_PID=""          # the wrk run in progress

die() { echo "$BENCH_NAME: $*" >&2; exit 1; }

need_tools() { # binaries...
	local b
	for b in "$@"; do
		command -v "$b" >/dev/null 2>&1 || die "$b not found (make deps installs nginx haproxy wrk curl python3 procps openssl)"
	done
}

# Every pid in the process tree under $1 (itself first).
tree_pids() {
	local p c
	for p in "$@"; do
		[ -d "/proc/$p" ] || continue
		echo "$p"
		for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do tree_pids "$c"; done
	done
}

# True while $1 exists and is not a zombie.
alive() { [ -d "/proc/$1" ] && [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]; }

teardown() {
	local p pids="" i alive_pids
	trap - EXIT INT TERM HUP
	[ -n "$CLIENT_PID" ] && kill -TERM $CLIENT_PID 2>/dev/null
	[ -n "$CUR_PID" ] && kill -TERM $CUR_PID 2>/dev/null
	for p in $STARTED; do pids="$pids $(tree_pids "$p")"; done
	for p in $STARTED; do kill -TERM "$p" 2>/dev/null; done
	for i in 1 2 3 4 5 6 7 8 9 10; do
		alive_pids=""
		for p in $pids; do alive "$p" && alive_pids="$alive_pids $p"; done
		[ -z "$alive_pids" ] && break
		sleep 0.3
	done
	for p in $pids; do alive "$p" && kill -KILL "$p" 2>/dev/null; done
	wait 2>/dev/null
	if [ "${KEEP_TMP:-0}" = 1 ]; then echo "$BENCH_NAME: kept $TMP"; else rm -rf "$TMP"; fi
}

# Temp dir under /tmp, removed (and everything started stopped) on exit or signal.
bench_tmp() {
	TMP=$(mktemp -d "/tmp/isthmus-$BENCH_NAME.XXXXXX") || die "mktemp failed"
	trap teardown EXIT
	trap 'echo "$BENCH_NAME: interrupted" >&2; exit 130' INT TERM HUP
}

# bench/results/NAME-YYYYMMDD-HHMMSS.txt; say: to stdout and the file, raw: to the file only.
results_open() { # bench dir
	mkdir -p "$1/results"
	RESULTS="$1/results/$BENCH_NAME-$(date +%Y%m%d-%H%M%S).txt"
	: >"$RESULTS" || die "cannot write $RESULTS"
}
say() { printf '%s\n' "$*" | tee -a "$RESULTS"; }
raw() { printf '%s\n' "$*" >>"$RESULTS"; }
versions() {
	echo "$("$HAPROXY" -v 2>&1 | head -1 | cut -d' ' -f1-3); $("$NGINX" -v 2>&1 | sed 's/.*: //'); $("$WRK" -v 2>&1 | head -1 | cut -d' ' -f1-2)"
}

# Raise the descriptor limit before starting anything: the proxies inherit it. Sets NOFILE.
raise_nofile() {
	ulimit -n 30000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null
	NOFILE=$(ulimit -n)
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
ports_free() { # ports...
	local p
	for p in "$@"; do port_busy "$p" && die "127.0.0.1:$p is already in use; stop whatever listens there"; done
	return 0
}

# HTTP status of GET URL (000 when nothing answers); certificates are not verified (-k).
# CURL_EXTRA: more curl options (--http2-prior-knowledge for a listener that speaks only h2c).
CURL_EXTRA=""
http_status() { curl -sk $CURL_EXTRA -o /dev/null -m 2 -w '%{http_code}' "$1" 2>/dev/null; }
wait_http() { # URL, tries of 0.2 s, [pid: give up as soon as it has exited]
	local i
	for i in $(seq 1 "$2"); do
		[ "$(http_status "$1")" = 200 ] && return 0
		[ -n "${3:-}" ] && ! kill -0 "$3" 2>/dev/null && return 1
		sleep 0.2
	done
	return 1
}

# The start of an nginx configuration in directory $1, $3 workers (default 1), its events block
# $2: up to the http block's keep-alive settings (what follows is the caller's).
nginx_head() { # dir events [workers]
	cat <<EOF
worker_processes ${3:-1};
worker_rlimit_nofile $NOFILE;
user root root;
pid $1/nginx.pid;
error_log $1/error.log warn;
events { $2 }
http {
    access_log off;
    client_body_temp_path $1/body;
    proxy_temp_path $1/proxy;
    fastcgi_temp_path $1/fastcgi;
    uwsgi_temp_path $1/uwsgi;
    scgi_temp_path $1/scgi;
    keepalive_requests 10000000;
EOF
}

# The upstream: one nginx, UPSTREAM_WORKERS workers (default 1), listening on the given ports, 1 KiB body and an
# X-Upstream header naming the port. Its files live in $TMP/up.
start_upstream() { # ports...
	local body d="$TMP/up" listen="" p
	body=$(head -c 1023 /dev/zero | tr '\0' 'x')
	mkdir -p "$d"
	for p in "$@"; do listen="$listen        listen 127.0.0.1:$p backlog=4096;
"; done
	cat >"$d/nginx.conf" <<EOF
$(nginx_head "$d" "worker_connections 8192; multi_accept on;" "$UPSTREAM_WORKERS")
    keepalive_timeout 600s;
    default_type text/plain;
    server {
$listen        location / {
            add_header X-Upstream \$server_port;
            return 200 "$body\n";
        }
        # A body read whole before the answer (bench/tinyrec.py): nginx buffers it and passes it
        # on to itself.
        location = /records {
            client_max_body_size 0;
            proxy_pass http://127.0.0.1:$1/;
        }
        # What a proxy added to the request (check_edits); only requests for /edits pay for it.
        location = /edits {
            return 200 "xff=\$http_x_forwarded_for xfp=\$http_x_forwarded_proto rid=\$http_x_request_id\n";
        }
    }
}
EOF
	$RUN_UPSTREAM "$NGINX" -p "$d" -c "$d/nginx.conf" -g 'daemon off;' >"$d/stderr.log" 2>&1 &
	STARTED="$STARTED $!"
	UPSTREAM_PID=$!
	for p in "$@"; do
		wait_http "http://127.0.0.1:$p/" 50 || { cat "$d/stderr.log" "$d/error.log" >&2; die "upstream nginx did not start"; }
	done
}

# The gRPC upstream: bench/grpc_responder.c built with libnghttp2 (or GRPC_RESPONDER, built
# before) and started on port $1 with UPSTREAM_WORKERS processes, answering every call with one
# message of $2 bytes and grpc-status 0. Its log is $TMP/grpc_responder.log.
start_grpc_responder() { # port bytes
	local pid bin=$GRPC_RESPONDER
	if [ -z "$bin" ]; then
		bin=$TMP/grpc_responder
		cc -O2 -o "$bin" "$BENCH_DIR/grpc_responder.c" $(pkg-config --cflags --libs libnghttp2) \
			>"$TMP/cc.log" 2>&1 || { cat "$TMP/cc.log" >&2; die "cannot build bench/grpc_responder.c (libnghttp2-dev)"; }
	fi
	$RUN_UPSTREAM "$bin" "$1" "$2" "$UPSTREAM_WORKERS" >"$TMP/grpc_responder.log" 2>&1 &
	pid=$!
	STARTED="$STARTED $pid"
	GRPC_UPSTREAM_PID=$pid
	CURL_EXTRA=--http2-prior-knowledge wait_http "http://127.0.0.1:$1/" 50 "$pid" ||
		{ cat "$TMP/grpc_responder.log" >&2; die "grpc_responder did not start"; }
}

# One length-prefixed gRPC message (uncompressed, $2 bytes) into file $1: a unary call's body.
grpc_request_body() { # file bytes
	printf '\0' >"$1"
	python3 -c 'import sys; n = int(sys.argv[1]); sys.stdout.buffer.write(n.to_bytes(4, "big") + b"r" * n)' \
		"$2" >>"$1"
}

# Summed utime+stime clock ticks (/proc/PID/stat fields 14, 15) over the proxy's process tree.
cpu_ticks() {
	local p s rest total=0
	for p in $(tree_pids "$1"); do
		s=$(cat "/proc/$p/stat" 2>/dev/null) || continue
		rest=${s##*) }
		set -- $rest
		total=$((total + ${12} + ${13}))
	done
	echo "$total"
}

# wrk output -> "requests rps p99_ms errors non2xx"
parse_wrk() {
	awk '
	function ms(v) {
		if (v ~ /us$/) return substr(v, 1, length(v) - 2) / 1000
		if (v ~ /ms$/) return substr(v, 1, length(v) - 2) + 0
		if (v ~ /m$/) return substr(v, 1, length(v) - 1) * 60000
		if (v ~ /h$/) return substr(v, 1, length(v) - 1) * 3600000
		if (v ~ /s$/) return substr(v, 1, length(v) - 1) * 1000
		return -1
	}
	$1 == "99%" { p99 = ms($2) }
	$2 == "requests" && $3 == "in" { req = $1 }
	$1 == "Requests/sec:" { rps = $2 }
	$1 == "Socket" && $2 == "errors:" { gsub(",", ""); err = $4 + $6 + $8 + $10 }
	$1 == "Non-2xx" { non2xx = $5 }
	END { printf "%d %.1f %.3f %d %d\n", req, rps, (p99 == "" ? -1 : p99), err, non2xx }
	' "$1"
}

# The CPU seconds (user + system) that this shell's waited-for children have used, into
# CHILD_CPU_S: bash's `times`, run in this shell (a subshell's would start from zero).
children_cpu() {
	times >"$TMP/times.txt"
	CHILD_CPU_S=$(awk 'NR == 2 { for (i = 1; i <= 2; i++) { split($i, a, "m"); t += a[1] * 60 + a[2] } }
		END { printf "%.3f", t }' "$TMP/times.txt")
}

# A load client in the background and waited for, so that a signal to the script is acted on at
# once (bash runs traps only between foreground commands, and not at all when the child exits
# normally). Bounded: killed 30 s after its own duration. CLIENT_CPU_S: the CPU seconds the
# client used (wrk and h2load run CLIENT_THREADS threads, so over the run's seconds, the share
# of the cores it can use: near CLIENT_THREADS, the client, not the proxy, sets the rate).
run_client() { # outfile seconds command...
	local rc out=$1 secs=$2 c0
	shift 2
	children_cpu
	c0=$CHILD_CPU_S
	timeout $((secs + 30)) $RUN_CLIENT "$@" >"$out" 2>&1 &
	CUR_PID=$!
	wait "$CUR_PID"
	rc=$?
	CUR_PID=""
	children_cpu
	CLIENT_CPU_S=$(awk -v a="$c0" -v b="$CHILD_CPU_S" 'BEGIN { printf "%.3f", b - a }')
	return $rc
}
# The client's CPU microseconds per request, and its cores over the run (CLIENT_CPU_S).
client_us_per_req() { awk -v s="$CLIENT_CPU_S" -v n="$1" 'BEGIN { if (n > 0) printf "%.2f", s * 1e6 / n; else print "n/a" }'; }
client_cores() { awk -v s="$CLIENT_CPU_S" -v d="$1" 'BEGIN { printf "%.2f", s / d }'; }

# Where a round's CPU went besides the proxy: round_begin UPSTREAM_PID PROXY_PID before it,
# round_end UPSTREAM_PID PROXY_PID SECONDS after it sets UP_CORES (the upstream's process tree;
# UP_TICKS, the same in clock ticks) and BUSY_CORES (the whole machine: /proc/stat less idle and
# iowait) and PROXY_CORES (the proxy's process tree), in cores over the round's seconds, and WAIT_CORES: the time the proxy's threads were
# ready to run but waited for a CPU (the run-queue wait of /proc/TID/schedstat), in cores. With
# the client's cores, they say which of the parts (one-thread client, one-worker upstream, the
# machine's cores, the scheduler's placement of the three on them) ran out first.
machine_ticks() { awk '$1 == "cpu" { print $2 + $3 + $4 + $7 + $8 + $9; exit }' /proc/stat; }
wait_ns() { # pid: nanoseconds the threads of its process tree waited, runnable, for a CPU
	local p f total=0 run wait rest
	for p in $(tree_pids "$1"); do
		for f in /proc/"$p"/task/*/schedstat; do
			read -r run wait rest 2>/dev/null <"$f" || continue
			total=$((total + wait))
		done
	done
	echo "$total"
}
round_begin() { # upstream-pid proxy-pid
	ROUND_UP0=$(cpu_ticks "$1")
	ROUND_PROXY0=$(cpu_ticks "$2")
	ROUND_WAIT0=$(wait_ns "$2")
	ROUND_BUSY0=$(machine_ticks)
}
# The three parts' CPU per request together, in microseconds: the client's, the proxy's and the
# upstream's (from round_end's UP_TICKS). The three share the machine's cores, so where two
# proxies' rounds kept it equally busy their rates stand as the inverse of these sums: the "bound"
# of a proxy is the better peer's sum over its own, the rate ratio the cores allow it.
parts_us_per_req() { # client-us proxy-us requests
	awk -v c="$1" -v p="$2" -v u="$(cpu_us_per_req "$UP_TICKS" "$3")" \
		'BEGIN { if (c == "n/a" || p == "n/a" || u == "n/a") print "n/a"; else printf "%.2f", c + p + u }'
}
round_end() { # upstream-pid proxy-pid seconds
	local u b w
	b=$(machine_ticks)
	u=$(cpu_ticks "$1")
	w=$(wait_ns "$2")
	PROXY_CORES=$(awk -v t=$(($(cpu_ticks "$2") - ROUND_PROXY0)) -v hz="$HZ" -v d="$3" 'BEGIN { printf "%.2f", t / hz / d }')
	UP_TICKS=$((u - ROUND_UP0))
	UP_CORES=$(awk -v t="$UP_TICKS" -v hz="$HZ" -v d="$3" 'BEGIN { printf "%.2f", t / hz / d }')
	BUSY_CORES=$(awk -v t=$((b - ROUND_BUSY0)) -v hz="$HZ" -v d="$3" 'BEGIN { printf "%.2f", t / hz / d }')
	WAIT_CORES=$(awk -v t=$((w - ROUND_WAIT0)) -v d="$3" 'BEGIN { printf "%.2f", t / 1e9 / d }')
}
run_wrk() { # outfile seconds wrk-arguments... (-t CLIENT_THREADS and -d are added)
	run_client "$1" "$2" "$WRK" -t"$CLIENT_THREADS" -d"$2"s "${@:3}"
}
# h2load for a duration, CLIENT_THREADS threads, writing its per-request log (for the p99) to
# outfile.log.
run_h2load() { # outfile seconds h2load-arguments... (-t -D --log-file are added)
	run_client "$1" "$2" "$H2LOAD" -t"$CLIENT_THREADS" -D "$2" --log-file="$1.log" "${@:3}"
}

# h2load output (and its --log-file, $1.log) -> "requests rps p99_ms errors non2xx". h2load prints
# no percentiles; the p99 is taken from its per-request log (third column: microseconds from the
# request's start to the end of its response). errors: h2load's "errored" (requests that failed
# other than by their status) plus "timeout".
parse_h2load() {
	local p99
	p99=$(awk -F'\t' '{print $3}' "$1.log" 2>/dev/null | sort -n |
		awk '{v[NR]=$1} END{ if (NR == 0) { print -1; exit } i = int(NR * 0.99); if (i < NR * 0.99) i++; if (i < 1) i = 1; printf "%.3f", v[i] / 1000 }')
	awk -v p99="$p99" '
	$1 == "finished" && $2 == "in" { rps = $4 }
	$1 == "requests:" { req = $6; err = $12 + $14 }
	$1 == "status" && $2 == "codes:" { non2xx = $5 + $7 + $9 }
	END { printf "%d %.1f %s %d %d\n", req, rps, p99, err, non2xx }
	' "$1"
}

# CPU microseconds per request from a tick delta and a request count.
cpu_us_per_req() { awk -v t="$1" -v n="$2" -v hz="$HZ" 'BEGIN{ if (n > 0) printf "%.2f", t * 1e6 / hz / n; else print "n/a" }'; }

median() { tr ' ' '\n' | awk 'NF' | sort -g | awk '{v[NR]=$1} END{if(NR==0){print "n/a";exit} if(NR%2) print v[(NR+1)/2]; else printf "%.6f\n", (v[NR/2]+v[NR/2+1])/2}'; }
spread() { tr ' ' '\n' | awk 'NF' | sort -g | awk 'NR==1{lo=$1} {hi=$1} END{if(NR) printf "%s..%s", lo, hi; else print "n/a"}'; }

# One line of a "spread (min..max over rounds)" list: the proxy's req/s, p99 and CPU figures of
# every round (space-separated lists), in a name column of the given width.
say_spread() { # width proxy rps-list p99-list cpu-list
	say "$(printf "  %-${1}s req/s %s  p99 ms %s  CPU us/req %s" "$2" "$(echo "$3" | spread)" \
		"$(echo "$4" | spread)" "$(echo "$5" | spread)")"
}
fmt_num() { awk -v d="$1" '{ if ($1 == "n/a") print; else printf "%.*f\n", d, $1 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{if (a=="n/a" || b=="n/a" || b+0==0) print "n/a"; else printf "%.2f", a/b}'; }

# A proxy that could not be started: said loudly, with the end of its log, and remembered.
SKIPPED=""
skip_loudly() { # name, reason, [log file]
	say ""
	say "!!! ---------------------------------------------------------------------------"
	say "!!! $1 SKIPPED: $2"
	if [ -n "${3:-}" ] && [ -s "$3" ]; then
		tail -n 15 "$3" | sed 's/^/!!!   /' | tee -a "$RESULTS"
	fi
	say "!!! ---------------------------------------------------------------------------"
	SKIPPED="$SKIPPED $1"
}

# True while proxy $1 (pid ${PID[$1]}) runs; the first time it is found gone, says so loudly
# with the end of $TMP/$1/stderr.log. PID and DEAD are associative arrays of the caller.
proxy_running() {
	alive "${PID[$1]}" && return 0
	if [ -z "${DEAD[$1]:-}" ]; then
		DEAD[$1]=1
		say "!!! $1 (pid ${PID[$1]}) is no longer running; its remaining runs are skipped"
		[ -s "$TMP/$1/stderr.log" ] && tail -n 15 "$TMP/$1/stderr.log" | sed 's/^/!!!   /' | tee -a "$RESULTS"
	fi
	return 1
}

# A proxy started in the background ($2: its pid) answers 200 on URL $3 within 10 s: then it is
# recorded (PID, ACTIVE); else it is skipped loudly with its log $4, and stopped.
proxy_up() { # name pid url log
	local tries=${UP_TRIES:-50}
	if ! wait_http "$3" "$tries" "$2"; then
		if kill -0 "$2" 2>/dev/null; then
			skip_loudly "$1" "no 200 from $3 within $((tries / 5)) s (status $(http_status "$3"))" "$4"
		else
			wait "$2"
			skip_loudly "$1" "exited with status $? before answering on $3" "$4"
		fi
		kill -TERM "$2" 2>/dev/null
		return 1
	fi
	PID[$1]=$2
	ACTIVE="$ACTIVE $1"
}

# Every proxy makes the request edits an Istio gateway makes (x-forwarded-for, x-forwarded-proto,
# x-request-id): the upstream's /edits echoes what arrived. A warning, not a failure, where one
# is missing: the rounds would then compare unequal work. $1 the proxy, $2 the URL of /edits,
# the rest curl's options.
check_edits() { # name url curl-options...
	local name=$1 url=$2 got
	shift 2
	got=$(curl -s -m 2 "$@" "$url")
	say "# $name: request edits at the upstream: ${got:-none}"
	case $got in
	*"xff= "* | *"xfp= "* | *"rid=" | "") say "# WARNING: $name did not make every request edit (x-forwarded-for, x-forwarded-proto, x-request-id)" ;;
	esac
}

# The upstream ports the proxies balance over (round robin): $UPS when set, else $UP1 and $UP2.
upstream_ports() { echo "${UPS:-$UP1 $UP2}"; }

# isthmus, PROXY_WORKERS workers (default 1), on 127.0.0.1:${PORT[isthmus]} in front of the upstream ports (see
# upstream_ports; ServiceEntry port protocol $SE_PROTOCOL, default HTTP): one Gateway server of
# protocol $1 (HTTP or HTTPS) whose tls block is $2 (a "tls: {...}" line, or empty); $3: more
# Appliance spec lines (indented two spaces), or empty; $6: more Gateway servers (YAML list items
# indented two spaces), or empty. ISTHMUS_EXTRA: a file of more YAML documents, appended (e.g.
# bench/authz.yaml, for what AuthorizationPolicies cost a request); ISTHMUS_SPEC_EXTRA: a file
# of more Appliance spec lines (e.g. bench/extauthz-spec.yaml, with bench/extauthz.yaml).
start_isthmus() { # protocol tls-line appliance-lines [name [build [servers]]]
	local name=${4:-isthmus} build=${5:-$BUILD}
	local bin="$build/isthmus" d="$TMP/$name" scheme up eps=""
	scheme=$(printf '%s' "$1" | tr 'A-Z' 'a-z')
	for up in $(upstream_ports); do eps="$eps  - address: 127.0.0.1
    ports: {http: $up}
    locality: bench/bench-a
"; done
	mkdir -p "$d"
	if [ ! -x "$bin" ]; then skip_loudly "$name" "$bin not found (run make first)"; return; fi
	cat >"$d/isthmus.yaml" <<EOF
apiVersion: isthmus.io/v1
kind: Appliance
metadata:
  name: $BENCH_NAME
spec:
  locality: bench/bench-a
  workers: $PROXY_WORKERS
  listenAddress: 127.0.0.1
  controlSocket: $d/ctl.sock
$3
$(if [ -n "${ISTHMUS_SPEC_EXTRA:-}" ]; then cat "$ISTHMUS_SPEC_EXTRA"; fi)
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: bench-gw
  namespace: bench
spec:
  servers:
  - port: {number: ${PORT[$name]}, name: $scheme, protocol: $1}
    hosts: ["*"]
    $2
${6:-}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: bench-vs
  namespace: bench
spec:
  hosts: ["*"]
  gateways: [bench-gw]
  http:
  - route:
    - destination:
        host: bench.internal
        port:
          number: 80
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata:
  name: bench-se
  namespace: bench
spec:
  hosts: [bench.internal]
  ports:
  - number: 80
    name: http
    protocol: ${SE_PROTOCOL:-HTTP}
  resolution: STATIC
  endpoints:
$eps---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: bench-dr
  namespace: bench
spec:
  host: bench.internal
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
EOF
	if [ -n "${ISTHMUS_EXTRA:-}" ]; then
		{ echo "---"; cat "$ISTHMUS_EXTRA"; } >>"$d/isthmus.yaml" || die "cannot read ISTHMUS_EXTRA $ISTHMUS_EXTRA"
	fi
	if ! "$bin" -c -f "$d/isthmus.yaml" >"$d/check.log" 2>&1; then
		skip_loudly "$name" "'$bin -c -f $d/isthmus.yaml' rejected the appliance file" "$d/check.log"
		return
	fi
	# ISTHMUS_WRAP: a command the binary runs under (bench/instructions.sh: valgrind).
	$RUN_PROXY ${ISTHMUS_WRAP:-} "$bin" -f "$d/isthmus.yaml" >"$d/stderr.log" 2>&1 &
	STARTED="$STARTED $!"
	proxy_up "$name" $! "$scheme://127.0.0.1:${PORT[$name]}/" "$d/stderr.log"
}

# HAProxy, PROXY_WORKERS threads (default 1), on 127.0.0.1:${PORT[NAME]} in front of the upstream ports (see
# upstream_ports; round robin, keep-alive both sides): $1 "http" or "https"; $2 more options of
# its bind line; $3 more global lines; $4 more frontend lines (another bind line, say); $5 more
# sections (each may be several lines, or empty); $6 NAME (default haproxy); $7 more options of
# each server line ("proto h2", say).
start_haproxy() { # scheme bind-options global-lines frontend-lines sections [name [server-options]]
	local name=${6:-haproxy} up n=0 servers=""
	local d="$TMP/$name"
	for up in $(upstream_ports); do
		n=$((n + 1))
		servers="$servers    server up$n 127.0.0.1:$up ${7:-}
"
	done
	mkdir -p "$d"
	cat >"$d/haproxy.cfg" <<EOF
global
    nbthread $PROXY_WORKERS
    maxconn 20000
    # maxconn 20000 asks for ~40000 descriptors; where the hard limit is lower, run anyway
    # (a warning, not a failure): bench.sh's idle phase needs IDLE_CONNS client fds plus a few.
    no strict-limits
$3

defaults
    mode http
    option http-keep-alive
    http-reuse always
    timeout connect 5s
    timeout client 300s
    timeout server 30s
    timeout http-request 30s
    timeout http-keep-alive 300s

frontend fe
    bind 127.0.0.1:${PORT[$name]} $2 backlog 4096
    # The request edits an Istio gateway makes, as isthmus does (bench/README.md).
    option forwardfor
    http-request set-header X-Forwarded-Proto https if { ssl_fc }
    http-request set-header X-Forwarded-Proto http if !{ ssl_fc }
    unique-id-format %[uuid]
    unique-id-header X-Request-ID
$4
    default_backend be

backend be
    balance roundrobin
$servers$5
EOF
	$RUN_PROXY "$HAPROXY" -f "$d/haproxy.cfg" -db >"$d/stderr.log" 2>&1 &
	STARTED="$STARTED $!"
	proxy_up "$name" $! "$1://127.0.0.1:${PORT[$name]}/" "$d/stderr.log"
}

# nginx, PROXY_WORKERS workers (default 1), in front of the upstream ports (see upstream_ports; round robin, upstream
# keep-alive as bench.sh describes): $1 its listen lines ("listen ADDR:PORT ...;", several may
# be given), $2 more lines of its server block (certificates, say), $3 a URL that must answer 200.
start_nginx() { # listen-lines server-lines check-url
	local d="$TMP/nginx" up servers=""
	for up in $(upstream_ports); do servers="$servers        server 127.0.0.1:$up;
"; done
	mkdir -p "$d"
	cat >"$d/nginx.conf" <<EOF
$(nginx_head "$d" "worker_connections 20000;" "$PROXY_WORKERS")
    keepalive_timeout 300s;
    upstream be {
$servers        keepalive 64;
        keepalive_requests 10000000;
    }
    server {
        $1
        $2
        location / {
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            # The request edits an Istio gateway makes, as isthmus does (bench/README.md).
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Request-ID \$request_id;
        }
    }
}
EOF
	$RUN_PROXY "$NGINX" -p "$d" -c "$d/nginx.conf" -g 'daemon off;' >"$d/stderr.log" 2>&1 &
	STARTED="$STARTED $!"
	proxy_up nginx $! "$3" "$d/error.log"
}

# A CA and a server certificate (SAN IP:127.0.0.1, DNS:localhost) in $TMP/certs, which CERTS
# names: ca.crt, server.crt, server.key, combined.pem (certificate + key, for HAProxy). $1: rsa
# (RSA-2048) or ecdsa (P-256).
make_certs() { # rsa|ecdsa
	local c="$TMP/certs"
	mkdir -p "$c"
	newkey() { # file
		if [ "$1" = rsa ]; then openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$2"
		else openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$2"; fi
	}
	{
		newkey "$1" "$c/ca.key" &&
		openssl req -x509 -new -key "$c/ca.key" -days 2 -subj "/CN=isthmus bench CA" -out "$c/ca.crt" &&
		newkey "$1" "$c/server.key" &&
		openssl req -new -key "$c/server.key" -subj "/CN=localhost" -out "$c/server.csr" &&
		printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n' >"$c/ext.cnf" &&
		openssl x509 -req -in "$c/server.csr" -CA "$c/ca.crt" -CAkey "$c/ca.key" -CAcreateserial \
			-days 2 -extfile "$c/ext.cnf" -out "$c/server.crt" &&
		cat "$c/server.crt" "$c/server.key" >"$c/combined.pem"
	} >"$c/openssl.log" 2>&1 || { cat "$c/openssl.log" >&2; die "openssl could not make the certificates"; }
	CERTS=$c
}

# Summed VmRSS (KiB) over the proxy's process tree.
rss_kib() {
	local p total=0 v
	for p in $(tree_pids "$1"); do
		v=$(awk '/^VmRSS:/{print $2}' "/proc/$p/status" 2>/dev/null)
		total=$((total + ${v:-0}))
	done
	echo "$total"
}
fd_count() {
	local p total=0
	for p in $(tree_pids "$1"); do
		total=$((total + $(ls "/proc/$p/fd" 2>/dev/null | wc -l)))
	done
	echo "$total"
}

# One batch of idle connections for idle_measure: bench/idle_conns.py opens $2 connections on
# port $1 (one request each) and holds them in the background (its pid added to CLIENT_PID);
# waits for its READY line (bounded by IDLE_TIMEOUT). $3: its output file; $4...: more options.
# False when it did not get ready (said, client stopped).
idle_batch() { # port conns outfile [idle_conns options...]
	local port=$1 conns=$2 out=$3 pid waited=0
	shift 3
	timeout -s KILL $((IDLE_TIMEOUT + 30)) python3 "$BENCH_DIR/idle_conns.py" --port "$port" \
		--conns "$conns" --sources 9 --window 64 --timeout "$IDLE_TIMEOUT" \
		--hold-max "$IDLE_TIMEOUT" "$@" >"$out" 2>&1 &
	pid=$!
	CLIENT_PID="$CLIENT_PID $pid"
	while ! grep -q '^READY' "$out" 2>/dev/null && kill -0 "$pid" 2>/dev/null && [ "$waited" -lt $((IDLE_TIMEOUT * 5 + 25)) ]; do
		sleep 0.2
		waited=$((waited + 1))
	done
	grep -q '^READY' "$out" && return 0
	say "# WARNING: idle client on port $port did not get ready:"
	sed 's/^/#   /' "$out" | tee -a "$RESULTS"
	return 1
}

# The idle phase of a bench, run first, on proxies that served only the sanity requests: after
# load rounds a proxy reuses the memory its load grew (HAProxy's pools, glibc's free lists), and
# an idle connection that fits in it costs nothing in RSS (HAProxy's idle HTTP/2 connections
# showed 0.01 KiB that way, 6.3 KiB fresh). idle_measure on each active proxy, HAProxy (the
# reference) first, on the port its entry in the named associative array gives; skipped with
# SKIP_IDLE=1. The caller declares IDLE_KIB (an associative array) beforehand.
idle_phase() { # name description active-proxies port-array conns [idle_conns options...]
	local name=$1 desc=$2 active=$3 conns=$5 p
	local -n ports=$4
	shift 5
	say ""
	if [ "$SKIP_IDLE" = 1 ]; then
		say "## $name: skipped (SKIP_IDLE=1)"
		return
	fi
	say "## $name, on fresh proxies before any load: $desc"
	idle_header
	for p in haproxy isthmus nginx ${BASE_BUILD:+isthmus-base}; do
		case " $active " in *" $p "*) idle_measure "$p" "${ports[$p]}" "$conns" haproxy "$@" ;; esac
	done
}

# The header of idle_measure's table (IDLE_BATCHES: 1 or 2 batches).
idle_header() {
	local h b
	h="$(printf '%-12s' proxy)"
	for b in $(seq 1 "${IDLE_BATCHES:-1}"); do
		h="$h$(printf ' %8s %10s %10s %12s' "held" "RSS$((b - 1)) KiB" "RSS$b KiB" "KiB/conn $b")"
	done
	say "$h$(printf ' %8s %9s' fds ratio)"
}

# Idle connection memory of one proxy (bench/README.md, "Idle keep-alive connection memory"):
# RSS before, bench/idle_conns.py opens CONNS connections on PORT (one request each) and holds
# them, RSS after; with IDLE_BATCHES=2, CONNS more beside them and RSS again, so that the second
# figure (the marginal cost) leaves out what a proxy touches once whatever the count (shared
# buffers, pools' first pages). Prints the table row (ratio of the last figure to IDLE_KIB[$4],
# the reference proxy measured before, or itself), records IDLE_KIB[proxy] (an associative array
# of the caller) and a raw line. $5...: more idle_conns.py options (--h2). Uses IDLE_TIMEOUT.
idle_measure() { # proxy port conns reference-proxy [idle_conns options...]
	local p=$1 port=$2 conns=$3 ref=$4 rss=() fds ok failed closed held=() per=() b n=${IDLE_BATCHES:-1} row
	shift 4
	if [ ! -d "/proc/${PID[$p]}" ]; then say "$(printf '%-12s %8s' "$p" 'not running')"; return; fi
	sleep 1
	rss[0]=$(rss_kib "${PID[$p]}")
	for b in $(seq 1 "$n"); do
		idle_batch "$port" "$conns" "$TMP/idle-$p-$b.txt" "$@" || break
		sleep 2 # let the proxy settle (lazy frees, timers)
		rss[b]=$(rss_kib "${PID[$p]}")
	done
	fds=$(fd_count "${PID[$p]}")
	kill -TERM $CLIENT_PID 2>/dev/null
	wait $CLIENT_PID 2>/dev/null
	CLIENT_PID=""
	row="$(printf '%-12s' "$p")"
	for b in $(seq 1 "$n"); do
		[ -n "${rss[b]:-}" ] || { say "$row (batch $b did not get ready)"; return; }
		ok=$(sed -n 's/^READY .*ok=\([0-9]*\).*/\1/p' "$TMP/idle-$p-$b.txt")
		failed=$(sed -n 's/^READY .*failed=\([0-9]*\).*/\1/p' "$TMP/idle-$p-$b.txt")
		closed=$(sed -n 's/^HOLD closed_by_peer=\([0-9]*\).*/\1/p' "$TMP/idle-$p-$b.txt")
		held[b]=$((ok - ${closed:-0}))
		per[b]=$(awk -v a="${rss[b - 1]}" -v c="${rss[b]}" -v n="${held[b]}" 'BEGIN{ if (n > 0) printf "%.2f", (c - a) / n; else print "n/a" }')
		raw "idle $p batch=$b ok=$ok failed=$failed closed_by_peer=${closed:-?} rss0_kib=${rss[b - 1]} rss1_kib=${rss[b]} fds=$fds kib_per_conn=${per[b]}"
		row="$row$(printf ' %8s %10s %10s %12s' "${held[b]}" "${rss[b - 1]}" "${rss[b]}" "${per[b]}")"
		[ "${failed:-1}" = 0 ] || { say "# WARNING: $p: $failed connections failed:"; grep '^FAIL' "$TMP/idle-$p-$b.txt" | sed 's/^/#   /' | tee -a "$RESULTS"; }
		[ "${closed:-0}" = 0 ] || say "# WARNING: $p closed $closed idle connections while they were held"
	done
	IDLE_KIB[$p]=${per[n]}
	say "$row$(printf ' %8s %9s' "$fds" "$(ratio "${per[n]}" "${IDLE_KIB[$ref]:-n/a}")")"
	sleep 2 # let the proxy release the closed connections before the next one
}
