#!/bin/sh
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
cat <<'TXT'

isthmus is starting on 127.0.0.1:8080 (conf/isthmus.yaml). Try, in another terminal:

  curl -i http://127.0.0.1:8080/                          # web: 90 % v1, 10 % v2 (see x-upstream)
  curl -i -H 'x-canary: true' http://127.0.0.1:8080/      # web v2 only
  curl -i http://127.0.0.1:8080/api/users                 # api, same zone (api-1a)
  for i in $(seq 20); do curl -s http://127.0.0.1:8080/; done | sort | uniq -c

  # take the zone-local api endpoint out: its health check fails, traffic moves to the other zones
  curl -s http://127.0.0.1:18081/__ctl/health/fail; sleep 7; curl -s http://127.0.0.1:8080/api/x
  curl -s http://127.0.0.1:18081/__ctl/health/ok

  echo 'show endpoints' | socat - UNIX-CONNECT:/tmp/isthmus/isthmus.sock
  kill -HUP $(pgrep -o -f 'isthmus -f conf/isthmus.yaml')      # reload after editing the file

Ctrl-C stops the gateway and the demo upstreams.

TXT
"$BUILD/isthmus" -f conf/isthmus.yaml
