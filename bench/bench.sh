#!/usr/bin/env bash
# bench/bench.sh — isthmus beside HAProxy and nginx: interleaved wrk rounds (req/s, p99,
# proxy CPU µs per request) and idle keep-alive connection memory. A bash script; `make bench`
# runs it as `sh bench/bench.sh BUILD_DIR`, so it re-executes itself under bash.
# See bench/README.md for the method. Usage: bench/bench.sh [BUILD_DIR]
# Environment: ROUNDS (5) DURATION (10, s) CONNS (64) WARMUP (2, s) SKIP_IDLE (0)
#              IDLE_CONNS (10000) IDLE_TIMEOUT (120, s per proxy) PROXIES ("isthmus haproxy nginx")
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

UP1=19081 UP2=19082
declare -A PORT=([isthmus]=19180 [haproxy]=19280 [nginx]=19380)
declare -A PID=()   # proxy -> pid of its top process (master)
BENCH_DIR=$(cd "$(dirname "$0")" && pwd)
NGINX=${NGINX:-/usr/sbin/nginx}
HAPROXY=${HAPROXY:-/usr/sbin/haproxy}
WRK=${WRK:-/usr/bin/wrk}
HZ=$(getconf CLK_TCK)

die() { echo "bench: $*" >&2; exit 1; }
case $ROUNDS$DURATION$CONNS$WARMUP$IDLE_CONNS$IDLE_TIMEOUT in *[!0-9]*) die "ROUNDS, DURATION, CONNS, WARMUP, IDLE_CONNS, IDLE_TIMEOUT must be integers";; esac
[ "$ROUNDS" -ge 1 ] && [ "$DURATION" -ge 1 ] && [ "$CONNS" -ge 1 ] || die "ROUNDS, DURATION, CONNS must be >= 1"
for b in "$NGINX" "$HAPROXY" "$WRK" curl python3 ps; do
	command -v "$b" >/dev/null 2>&1 || die "$b not found (make deps installs nginx haproxy wrk curl python3 procps)"
done

TMP=$(mktemp -d /tmp/isthmus-bench.XXXXXX) || die "mktemp failed"
STARTED=""          # every pid we started, for the teardown
CLIENT_PID=""       # the idle-connection client while it runs
CUR_PID=""          # the wrk run in progress

# Every pid in the process tree under $1 (itself first).
tree_pids() {
	local p c
	for p in "$@"; do
		[ -d "/proc/$p" ] || continue
		echo "$p"
		for c in $(ps -o pid= --ppid "$p" 2>/dev/null); do tree_pids "$c"; done
	done
}

teardown() {
	local p pids="" i
	trap - EXIT INT TERM HUP
	[ -n "$CLIENT_PID" ] && kill -TERM "$CLIENT_PID" 2>/dev/null
	[ -n "$CUR_PID" ] && kill -TERM "$CUR_PID" 2>/dev/null
	for p in $STARTED; do pids="$pids $(tree_pids "$p")"; done
	for p in $STARTED; do kill -TERM "$p" 2>/dev/null; done
	for i in 1 2 3 4 5 6 7 8 9 10; do
		local alive=""
		for p in $pids; do
			[ -d "/proc/$p" ] && [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ] && alive="$alive $p"
		done
		[ -z "$alive" ] && break
		sleep 0.3
	done
	for p in $pids; do
		if [ -d "/proc/$p" ] && [ "$(awk '{print $3}' "/proc/$p/stat" 2>/dev/null)" != Z ]; then
			kill -KILL "$p" 2>/dev/null
		fi
	done
	wait 2>/dev/null
	if [ "${KEEP_TMP:-0}" = 1 ]; then echo "bench: kept $TMP"; else rm -rf "$TMP"; fi
}
trap teardown EXIT
trap 'echo "bench: interrupted" >&2; exit 130' INT TERM HUP

# ---------------------------------------------------------------------------------------------
mkdir -p "$BENCH_DIR/results"
STAMP=$(date +%Y%m%d-%H%M%S)
RESULTS="$BENCH_DIR/results/bench-$STAMP.txt"
: >"$RESULTS" || die "cannot write $RESULTS"
say() { printf '%s\n' "$*" | tee -a "$RESULTS"; }
raw() { printf '%s\n' "$*" >>"$RESULTS"; }

# Raise the descriptor limit before starting anything: the proxies inherit it.
ulimit -n 30000 2>/dev/null || ulimit -n "$(ulimit -Hn)" 2>/dev/null
NOFILE=$(ulimit -n)

say "# isthmus bench $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
say "# command: $0 $* (ROUNDS=$ROUNDS DURATION=$DURATION CONNS=$CONNS WARMUP=$WARMUP SKIP_IDLE=$SKIP_IDLE IDLE_CONNS=$IDLE_CONNS)"
say "# host: $(uname -srm), $(nproc) CPUs, nofile=$NOFILE, CLK_TCK=$HZ"
say "# $("$HAPROXY" -v 2>&1 | head -1 | cut -d' ' -f1-3); $("$NGINX" -v 2>&1 | sed 's/.*: //'); $("$WRK" -v 2>&1 | head -1 | cut -d' ' -f1-2)"
say "# results file: $RESULTS"
[ "$NOFILE" -ge 30000 ] || say "# note: could not raise nofile to 30000 (hard limit $(ulimit -Hn)); using $NOFILE"

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
for p in $UP1 $UP2 ${PORT[isthmus]} ${PORT[haproxy]} ${PORT[nginx]}; do
	port_busy "$p" && die "127.0.0.1:$p is already in use; stop whatever listens there"
done

# HTTP status of GET / on port $1 (000 when nothing answers).
http_status() { curl -s -o /dev/null -m 2 -w '%{http_code}' "http://127.0.0.1:$1/" 2>/dev/null; }
wait_http() { # port, tries of 0.2 s, [pid: give up as soon as it has exited]
	local i
	for i in $(seq 1 "$2"); do
		[ "$(http_status "$1")" = 200 ] && return 0
		[ -n "${3:-}" ] && ! kill -0 "$3" 2>/dev/null && return 1
		sleep 0.2
	done
	return 1
}

# --- upstreams: one nginx, one worker, two ports, 1 KiB body ----------------------------------
BODY=$(head -c 1023 /dev/zero | tr '\0' 'x')
mkdir -p "$TMP/up"
cat >"$TMP/up/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile $NOFILE;
user root root;
pid $TMP/up/nginx.pid;
error_log $TMP/up/error.log warn;
events { worker_connections 8192; multi_accept on; }
http {
    access_log off;
    client_body_temp_path $TMP/up/body;
    proxy_temp_path $TMP/up/proxy;
    fastcgi_temp_path $TMP/up/fastcgi;
    uwsgi_temp_path $TMP/up/uwsgi;
    scgi_temp_path $TMP/up/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 600s;
    default_type text/plain;
    server {
        listen 127.0.0.1:$UP1 backlog=4096;
        listen 127.0.0.1:$UP2 backlog=4096;
        location / {
            add_header X-Upstream \$server_port;
            return 200 "$BODY\n";
        }
    }
}
EOF
"$NGINX" -p "$TMP/up" -c "$TMP/up/nginx.conf" -g 'daemon off;' >"$TMP/up/stderr.log" 2>&1 &
STARTED="$STARTED $!"
wait_http $UP1 50 && wait_http $UP2 50 || { cat "$TMP/up/stderr.log" "$TMP/up/error.log" >&2; die "upstream nginx did not start"; }

# --- proxies ----------------------------------------------------------------------------------
ACTIVE=""
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

start_isthmus() {
	local bin="$BUILD/isthmus" d="$TMP/isthmus" pid
	mkdir -p "$d"
	if [ ! -x "$bin" ]; then skip_loudly isthmus "$bin not found (run make first)"; return; fi
	cat >"$d/isthmus.yaml" <<EOF
apiVersion: isthmus.io/v1
kind: Appliance
metadata:
  name: bench
spec:
  locality: bench/bench-a
  workers: 1
  listenAddress: 127.0.0.1
  controlSocket: $d/ctl.sock
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: bench-gw
  namespace: bench
spec:
  servers:
  - port:
      number: ${PORT[isthmus]}
      name: http
      protocol: HTTP
    hosts: ["*"]
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
    protocol: HTTP
  resolution: STATIC
  endpoints:
  - address: 127.0.0.1
    ports: {http: $UP1}
    locality: bench/bench-a
  - address: 127.0.0.1
    ports: {http: $UP2}
    locality: bench/bench-a
---
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
	if ! "$bin" -c -f "$d/isthmus.yaml" >"$d/check.log" 2>&1; then
		skip_loudly isthmus "'$bin -c -f $d/isthmus.yaml' rejected the appliance file" "$d/check.log"
		return
	fi
	"$bin" -f "$d/isthmus.yaml" >"$d/stderr.log" 2>&1 &
	pid=$!
	STARTED="$STARTED $pid"
	if ! wait_http "${PORT[isthmus]}" 50 "$pid"; then
		if kill -0 "$pid" 2>/dev/null; then
			skip_loudly isthmus "no 200 from 127.0.0.1:${PORT[isthmus]} within 10 s (status $(http_status "${PORT[isthmus]}"))" "$d/stderr.log"
		else
			wait "$pid"
			skip_loudly isthmus "'$bin -f $d/isthmus.yaml' exited with status $? before answering" "$d/stderr.log"
		fi
		kill -TERM "$pid" 2>/dev/null
		return
	fi
	PID[isthmus]=$pid
	ACTIVE="$ACTIVE isthmus"
}

start_haproxy() {
	local d="$TMP/haproxy" pid
	mkdir -p "$d"
	cat >"$d/haproxy.cfg" <<EOF
global
    nbthread 1
    maxconn 20000
    # maxconn 20000 asks for ~40000 descriptors; where the hard limit is lower, run anyway
    # (a warning, not a failure): the idle phase needs IDLE_CONNS client fds plus a few.
    no strict-limits

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
    bind 127.0.0.1:${PORT[haproxy]} backlog 4096
    default_backend be

backend be
    balance roundrobin
    server up1 127.0.0.1:$UP1
    server up2 127.0.0.1:$UP2
EOF
	"$HAPROXY" -f "$d/haproxy.cfg" -db >"$d/stderr.log" 2>&1 &
	pid=$!
	STARTED="$STARTED $pid"
	if ! wait_http "${PORT[haproxy]}" 50 "$pid"; then
		skip_loudly haproxy "did not answer on 127.0.0.1:${PORT[haproxy]}" "$d/stderr.log"
		return
	fi
	PID[haproxy]=$pid
	ACTIVE="$ACTIVE haproxy"
}

start_nginx() {
	local d="$TMP/nginx" pid
	mkdir -p "$d"
	cat >"$d/nginx.conf" <<EOF
worker_processes 1;
worker_rlimit_nofile $NOFILE;
user root root;
pid $d/nginx.pid;
error_log $d/error.log warn;
events { worker_connections 20000; }
http {
    access_log off;
    client_body_temp_path $d/body;
    proxy_temp_path $d/proxy;
    fastcgi_temp_path $d/fastcgi;
    uwsgi_temp_path $d/uwsgi;
    scgi_temp_path $d/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 300s;
    upstream be {
        server 127.0.0.1:$UP1;
        server 127.0.0.1:$UP2;
        keepalive 64;
        keepalive_requests 10000000;
    }
    server {
        listen 127.0.0.1:${PORT[nginx]} backlog=4096;
        location / {
            proxy_pass http://be;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }
    }
}
EOF
	"$NGINX" -p "$d" -c "$d/nginx.conf" -g 'daemon off;' >"$d/stderr.log" 2>&1 &
	pid=$!
	STARTED="$STARTED $pid"
	if ! wait_http "${PORT[nginx]}" 50 "$pid"; then
		skip_loudly nginx "did not answer on 127.0.0.1:${PORT[nginx]}" "$d/error.log"
		return
	fi
	PID[nginx]=$pid
	ACTIVE="$ACTIVE nginx"
}

for p in $PROXIES; do
	case $p in
	isthmus) start_isthmus ;;
	haproxy) start_haproxy ;;
	nginx) start_nginx ;;
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
done

# --- throughput rounds --------------------------------------------------------------------------
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

# In the background and waited for, so that a signal to the script is acted on at once (bash
# runs traps only between foreground commands, and not at all when the child exits normally).
run_wrk() { # proxy seconds outfile
	local rc
	timeout $(($2 + 30)) "$WRK" -t1 -c"$CONNS" -d"$2"s --timeout 5s --latency \
		"http://127.0.0.1:${PORT[$1]}/" >"$3" 2>&1 &
	CUR_PID=$!
	wait "$CUR_PID"
	rc=$?
	CUR_PID=""
	return $rc
}

declare -A RPS=() P99=() CPU=() DEAD=()
read -r -a ACTIVE_ARR <<<"$ACTIVE"
N=${#ACTIVE_ARR[@]}

say ""
say "# warm-up: ${WARMUP}s per proxy"
for p in $ACTIVE; do run_wrk "$p" "$WARMUP" "$TMP/warmup-$p.txt" || say "# WARNING: warm-up wrk for $p exited non-zero"; done

say "# rounds: $ROUNDS x ${DURATION}s per proxy, wrk -t1 -c$CONNS, order rotated every round"
raw ""
raw "round proxy requests req_per_s p99_ms cpu_us_per_req cpu_ticks errors non2xx"
for r in $(seq 1 "$ROUNDS"); do
	order=""
	for i in $(seq 0 $((N - 1))); do order="$order ${ACTIVE_ARR[$(((i + r - 1) % N))]}"; done
	for p in $order; do
		out="$TMP/wrk-$r-$p.txt"
		if [ ! -d "/proc/${PID[$p]}" ] || [ "$(awk '{print $3}' "/proc/${PID[$p]}/stat")" = Z ]; then
			if [ -z "${DEAD[$p]:-}" ]; then
				DEAD[$p]=1
				say "!!! $p (pid ${PID[$p]}) is no longer running; its remaining runs are skipped"
				[ -s "$TMP/$p/stderr.log" ] && tail -n 15 "$TMP/$p/stderr.log" | sed 's/^/!!!   /' | tee -a "$RESULTS"
			fi
			continue
		fi
		t0=$(cpu_ticks "${PID[$p]}")
		run_wrk "$p" "$DURATION" "$out"
		rc=$?
		t1=$(cpu_ticks "${PID[$p]}")
		read -r req rps p99 err non2xx < <(parse_wrk "$out")
		if [ "$rc" != 0 ] || [ "${req:-0}" -le 0 ]; then
			say "# WARNING: round $r $p: wrk rc=$rc, $req requests:"
			sed 's/^/#   /' "$out" | tee -a "$RESULTS"
			continue
		fi
		cpu=$(awk -v d=$((t1 - t0)) -v hz="$HZ" -v n="$req" 'BEGIN{printf "%.2f", d * 1e6 / hz / n}')
		RPS[$p]="${RPS[$p]:-} $rps"
		P99[$p]="${P99[$p]:-} $p99"
		CPU[$p]="${CPU[$p]:-} $cpu"
		line=$(printf 'round %d %-8s req/s %10s  p99 %8s ms  cpu %7s us/req  (%d ticks, %d requests, errors %d, non-2xx %d)' \
			"$r" "$p" "$rps" "$p99" "$cpu" $((t1 - t0)) "$req" "$err" "$non2xx")
		echo "$line"
		raw "$r $p $req $rps $p99 $cpu $((t1 - t0)) $err $non2xx"
		[ "$err" = 0 ] && [ "$non2xx" = 0 ] || say "# WARNING: round $r $p: $err socket errors, $non2xx non-2xx responses"
	done
done

median() { tr ' ' '\n' | awk 'NF' | sort -g | awk '{v[NR]=$1} END{if(NR==0){print "n/a";exit} if(NR%2) print v[(NR+1)/2]; else printf "%.6f\n", (v[NR/2]+v[NR/2+1])/2}'; }
spread() { tr ' ' '\n' | awk 'NF' | sort -g | awk 'NR==1{lo=$1} {hi=$1} END{if(NR) printf "%s..%s", lo, hi; else print "n/a"}'; }
fmt_num() { awk -v d="$1" '{ if ($1 == "n/a") print; else printf "%.*f\n", d, $1 }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{if (a=="n/a" || b=="n/a" || b+0==0) print "n/a"; else printf "%.2f", a/b}'; }

declare -A MR=() MP=() MC=()
for p in $ACTIVE; do
	MR[$p]=$(echo "${RPS[$p]:-}" | median | fmt_num 0)
	MP[$p]=$(echo "${P99[$p]:-}" | median | fmt_num 3)
	MC[$p]=$(echo "${CPU[$p]:-}" | median | fmt_num 2)
done
base() { if [ -n "${PID[haproxy]:-}" ]; then echo "$1"; else echo "n/a"; fi; }

say ""
say "## throughput: medians of $ROUNDS rounds (wrk -t1 -c$CONNS -d${DURATION}s); ratio = proxy / HAProxy"
FMT='%-8s %10s %9s %11s   %8s %7s %7s'
say "$(printf "$FMT" proxy 'req/s' 'p99 ms' 'CPU us/req' 'req/s x' 'p99 x' 'CPU x')"
for p in haproxy isthmus nginx; do
	case " $ACTIVE " in *" $p "*) ;; *) say "$(printf '%-8s %10s' "$p" 'skipped')"; continue ;; esac
	say "$(printf "$FMT" "$p" "${MR[$p]}" "${MP[$p]}" "${MC[$p]}" \
		"$(ratio "${MR[$p]}" "$(base "${MR[haproxy]:-n/a}")")" \
		"$(ratio "${MP[$p]}" "$(base "${MP[haproxy]:-n/a}")")" \
		"$(ratio "${MC[$p]}" "$(base "${MC[haproxy]:-n/a}")")")"
done
say "spread (min..max over rounds):"
for p in $ACTIVE; do
	say "$(printf '  %-8s req/s %s  p99 ms %s  CPU us/req %s' "$p" "$(echo "${RPS[$p]:-}" | spread)" \
		"$(echo "${P99[$p]:-}" | spread)" "$(echo "${CPU[$p]:-}" | spread)")"
done

# --- idle connection memory ---------------------------------------------------------------------
if [ "$SKIP_IDLE" = 1 ]; then
	say ""
	say "## idle connections: skipped (SKIP_IDLE=1)"
	exit 0
fi

declare -A IDLE_KIB=()
say ""
say "## idle keep-alive connections: $IDLE_CONNS per proxy, one GET each, then held idle; VmRSS summed over the proxy's processes"
say "$(printf '%-8s %8s %10s %10s %10s %8s %12s %9s' proxy 'held' 'RSS0 KiB' 'RSS1 KiB' 'delta KiB' 'fds' 'KiB/conn' 'ratio')"
for p in haproxy isthmus nginx; do
	case " $ACTIVE " in *" $p "*) ;; *) continue ;; esac
	if [ ! -d "/proc/${PID[$p]}" ]; then say "$(printf '%-8s %8s' "$p" 'not running')"; continue; fi
	sleep 1
	rss0=$(rss_kib "${PID[$p]}")
	out="$TMP/idle-$p.txt"
	timeout -s KILL $((IDLE_TIMEOUT + 30)) python3 "$BENCH_DIR/idle_conns.py" --port "${PORT[$p]}" \
		--conns "$IDLE_CONNS" --sources 9 --window 64 --timeout "$IDLE_TIMEOUT" \
		--hold-max "$IDLE_TIMEOUT" >"$out" 2>&1 &
	CLIENT_PID=$!
	waited=0
	while ! grep -q '^READY' "$out" 2>/dev/null && kill -0 "$CLIENT_PID" 2>/dev/null && [ "$waited" -lt $((IDLE_TIMEOUT * 5 + 25)) ]; do
		sleep 0.2
		waited=$((waited + 1))
	done
	if ! grep -q '^READY' "$out"; then
		say "# WARNING: $p: idle client did not get ready:"
		sed 's/^/#   /' "$out" | tee -a "$RESULTS"
		kill -TERM "$CLIENT_PID" 2>/dev/null; wait "$CLIENT_PID" 2>/dev/null; CLIENT_PID=""
		continue
	fi
	sleep 2 # let the proxy settle (lazy frees, timers)
	rss1=$(rss_kib "${PID[$p]}")
	fds=$(fd_count "${PID[$p]}")
	kill -TERM "$CLIENT_PID" 2>/dev/null
	wait "$CLIENT_PID" 2>/dev/null
	CLIENT_PID=""
	ok=$(sed -n 's/^READY .*ok=\([0-9]*\).*/\1/p' "$out")
	failed=$(sed -n 's/^READY .*failed=\([0-9]*\).*/\1/p' "$out")
	closed=$(sed -n 's/^HOLD closed_by_peer=\([0-9]*\).*/\1/p' "$out")
	held=$((ok - ${closed:-0}))
	per=$(awk -v a="$rss0" -v b="$rss1" -v n="$held" 'BEGIN{ if (n > 0) printf "%.2f", (b - a) / n; else print "n/a" }')
	IDLE_KIB[$p]=$per
	raw "idle $p ok=$ok failed=$failed closed_by_peer=${closed:-?} rss0_kib=$rss0 rss1_kib=$rss1 fds=$fds kib_per_conn=$per"
	say "$(printf '%-8s %8s %10s %10s %10s %8s %12s %9s' "$p" "$held" "$rss0" "$rss1" $((rss1 - rss0)) "$fds" "$per" \
		"$(ratio "$per" "$(base "${IDLE_KIB[haproxy]:-n/a}")")")"
	[ "${failed:-1}" = 0 ] || { say "# WARNING: $p: $failed connections failed:"; grep '^FAIL' "$out" | sed 's/^/#   /' | tee -a "$RESULTS"; }
	[ "${closed:-0}" = 0 ] || say "# WARNING: $p closed $closed idle connections while they were held"
	sleep 2 # let the proxy release the closed connections before the next one
done
say ""
say "# done; raw numbers in $RESULTS"
