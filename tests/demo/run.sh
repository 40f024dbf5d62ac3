#!/bin/sh
# SPDX-License-Identifier: Apache-2.0
# `make run`: demo upstreams on loopback standing for the appliance's zone
# (127.0.0.1), two other zones of its region (127.0.0.2, 127.0.0.3) and a
# failover region (127.0.0.4), then the gateway on conf/isthmus.yaml in the
# foreground. Ctrl-C stops everything.
set -eu
BUILD=${1:-build}
UP="$BUILD/tests/upstream"
pids=""
cleanup() {
	for p in $pids; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

start() { # name zone listen...
	name=$1; zone=$2; shift 2
	args=""
	for l in "$@"; do args="$args --listen $l"; done
	# shellcheck disable=SC2086
	"$UP" --name "$name" --zone "$zone" $args >/dev/null &
	pids="$pids $!"
}
start api-1a eu-west-1a 127.0.0.1:18081
start api-1b eu-west-1b 127.0.0.2:18081
start api-1c eu-west-1c 127.0.0.3:18081
start api-us us-east-1a 127.0.0.4:18081
start web-v1-1a eu-west-1a 127.0.0.1:18082
start web-v2-1a eu-west-1a 127.0.0.1:18083
start web-v1-1b eu-west-1b 127.0.0.2:18082
start web-v1-1c eu-west-1c 127.0.0.3:18082
start web-v1-us us-east-1a 127.0.0.4:18082

"$BUILD/isthmus" -c -f conf/isthmus.yaml
# The control socket, admin listener and pid file as the file sets them.
conf=conf/isthmus.yaml
sock=$(sed -n 's/^  controlSocket: *//p' "$conf")
admin=$(sed -n '/^  admin:/{n;s/^    address: *//p;}' "$conf")
pidfile=$(sed -n 's/^  pidFile: *//p' "$conf")
: "${sock:?no controlSocket in $conf}" "${admin:?no admin.address in $conf}" "${pidfile:?no pidFile in $conf}"
ctl="$BUILD/isthmusctl -s $sock"
cat <<TXT

isthmus is starting on 127.0.0.1:8080 ($conf). Try, in another terminal:

  curl -i http://127.0.0.1:8080/                          # web: 90 % v1, 10 % v2 (see x-upstream)
  curl -i -H 'x-canary: true' http://127.0.0.1:8080/      # web v2 only
  curl -i http://127.0.0.1:8080/api/users                 # api, same zone (api-1a)
  for i in \$(seq 20); do curl -s http://127.0.0.1:8080/; done | sort | uniq -c

  # take the zone-local api endpoint out: its health check fails, traffic moves to the other zones
  curl -s http://127.0.0.1:18081/__ctl/health/fail; sleep 7; curl -s http://127.0.0.1:8080/api/x
  curl -s http://127.0.0.1:18081/__ctl/health/ok

  # the control socket (every command: $BUILD/isthmusctl --help)
  $ctl show info
  $ctl show endpoints
  $ctl reload                                # after editing the file; or: kill -HUP \$(cat $pidfile)

  # the admin listener: Prometheus metrics, readiness (/healthz/live: liveness)
  curl -s http://$admin/metrics
  curl -s http://$admin/healthz/ready

Ctrl-C stops the gateway and the demo upstreams.

TXT
"$BUILD/isthmus" -f conf/isthmus.yaml
