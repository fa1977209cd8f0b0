#!/usr/bin/env bash
# Runs the nginx of ../shared/bench/compare (one worker, `return 200 "Hello,
# World!"`) on port PORT, in the foreground, for scripts/bench-pairs.sh --http.
# compare writes its configuration to /tmp/coil-anchors/nginx.conf (run
# `../shared/bench/compare http` once first).
#
#   scripts/nginx-port.sh PORT
set -euo pipefail
[ $# -eq 1 ] || { echo "usage: $0 PORT" >&2; exit 2; }
conf=/tmp/coil-anchors/nginx.conf
[ -r "$conf" ] || { echo "$conf missing: run ../shared/bench/compare http once" >&2; exit 2; }
mine=/tmp/coil-nginx-$1.conf
# compare's file listens on its own port and keeps its pid file in one place.
sed -E "s/listen 127\.0\.0\.1:[0-9]+/listen 127.0.0.1:$1/; s#pid [^;]*;#pid /tmp/coil-nginx-$1.pid;#" "$conf" >"$mine"
exec nginx -c "$mine"
