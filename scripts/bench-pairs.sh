#!/usr/bin/env bash
# Compares echo servers on a noisy machine: many short rounds, every server once
# per round (A B C A B C ...), and for each server the median over rounds of its
# CPU time per message, and of its rate, divided by the first server's in the
# same round. A slow spell of the machine then moves a whole round, not one
# server's figure. Uses the peers and the load generator that
# ../shared/bench/compare builds in /tmp/coil-anchors (run `compare echo` once
# first).
#
#   scripts/bench-pairs.sh CONNS ROUNDS SECONDS -- NAME 'ENV=... CMD ... {PORT}' NAME '...' ...
#
# e.g. the batched waits of the io_uring backend against no batching and the peers:
#   scripts/bench-pairs.sh 100 10 2 -- batched 'X=1 build/examples/coil-echo --port {PORT}' \
#     unbatched 'COIL_BATCH_WAIT_US=0 build/examples/coil-echo --port {PORT}' \
#     liburing 'X=1 /tmp/coil-anchors/echo_uring {PORT}' epoll 'X=1 /tmp/coil-anchors/echo_epoll {PORT}'
# (each command starts with an environment assignment, X=1 when none is needed).
# load% is the median CPU of the load generator as a share of one core: near
# 100, the rate is the load generator's, and a server changes it only through
# what its answers cost the generator.
#
# With --http first, HTTP servers instead, under `wrk -t1 -cCONNS` (keep-alive
# GET /), the server's CPU read from /proc (its own and its children's, for
# nginx's worker); scripts/nginx-port.sh PORT runs compare's nginx on a port:
#   scripts/bench-pairs.sh --http 100 6 4 -- nginx 'X=1 scripts/nginx-port.sh {PORT}' \
#     coil 'X=1 build/examples/coil-http --port {PORT}'
set -euo pipefail
cd "$(dirname "$0")/.."
http=false
if [ "${1:-}" = --http ]; then
  http=true
  shift
fi
[ $# -ge 6 ] && [ "$4" = -- ] || {
  echo "usage: $0 [--http] CONNS ROUNDS SECONDS -- NAME 'CMD {PORT}' ..." >&2
  exit 2
}
conns=$1 rounds=$2 secs=$3
shift 4
load=/tmp/coil-anchors/echo_load
if $http; then
  command -v wrk >/dev/null || { echo "wrk missing: run ../shared/bench/compare http once" >&2; exit 2; }
else
  [ -x "$load" ] || { echo "$load missing: run ../shared/bench/compare echo once" >&2; exit 2; }
fi
tck=$(getconf CLK_TCK)
# Printed last inside the $(...) that ran the load generator: the CPU ticks of
# that subshell's finished children, i.e. the load generator's.
loadticks() {
  awk '{ print "loadticks", $16 + $17 }' "/proc/$BASHPID/stat"
}
# CPU ticks of a process and its children so far.
ticks() {
  local t=0 p
  for p in "$1" $(pgrep -P "$1" || true); do
    t=$((t + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
  done
  echo "$t"
}
out=$(mktemp)
pid=
trap 'rm -f "$out"; [ -z "$pid" ] || kill "$pid" 2>/dev/null || true' EXIT
for r in $(seq "$rounds"); do
  args=("$@")
  for ((j = 0; j < ${#args[@]}; j += 2)); do
    name=${args[j]} cmd=${args[j + 1]}
    port=$((20000 + RANDOM % 10000))
    # shellcheck disable=SC2086 # the command is split into words on purpose
    env ${cmd//\{PORT\}/$port} >/dev/null 2>&1 &
    pid=$!
    sleep 0.3
    if $http; then
      t0=$(ticks "$pid")
      w=$(
        wrk -t1 -c"$conns" -d"${secs}s" "http://127.0.0.1:$port/" 2>&1 || true
        loadticks
      )
      t1=$(ticks "$pid")
      reqs=$(echo "$w" | awk '/requests in/ {print $1}')
      rate=$(echo "$w" | awk '/Requests\/sec/ {print int($2)}')
      cpu=$(awk -v d=$((t1 - t0)) -v n="${reqs:-0}" -v h="$tck" 'BEGIN { if (n > 0) printf "%.3f", d * 1e6 / h / n; else print "nan" }')
    else
      w=$(
        "$load" 127.0.0.1 "$port" "$conns" 512 "$secs" "$pid" 2>&1 || true
        loadticks
      )
      line=$(awk '/^echo_load/ { l = $0 } END { print l }' <<<"$w")
      cpu=$(echo "$line" | sed -n 's/.*server_cpu_us_per_msg=\([0-9.]*\).*/\1/p')
      rate=$(echo "$line" | sed -n 's/.*msgs_per_s=\([0-9]*\).*/\1/p')
    fi
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    pid=
    lpct=$(echo "$w" | awk -v s="$secs" -v h="$tck" '/^loadticks/ { printf "%.0f", $2 * 100 / h / s }')
    echo "$r $name ${cpu:-nan} ${rate:-0} ${lpct:-0}" >>"$out"
  done
done
if $http; then
  echo "http (wrk -t1, keep-alive GET /), $conns connections, $rounds rounds of $secs s; ratios to ${1}'s in the same round"
  unit=req
else
  echo "echo, $conns connections, 512 bytes, $rounds rounds of $secs s; ratios to ${1}'s in the same round"
  unit=msg
fi
awk -v first="$1" -v unit="$unit" '
  { cpu[$1, $2] = $3; rate[$1, $2] = $4; load[$1, $2] = $5; if (!($2 in seen)) { seen[$2] = 1; names[++n] = $2 } rounds[$1] = 1 }
  function median(a, k,   i, j, t) {
    for (i = 2; i <= k; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return k % 2 ? a[(k + 1) / 2] : (a[k / 2] + a[k / 2 + 1]) / 2
  }
  END {
    printf "%-12s %12s %12s %14s %15s %7s  %s\n", "server", "cpu_us/" unit, unit "/s", "cpu / " first, "rate / " first, "load%", "cpu ratio per round"
    for (i = 1; i <= n; i++) {
      k = 0; list = ""
      for (r in rounds) { k++; c[k] = cpu[r, names[i]]; m[k] = rate[r, names[i]]; q[k] = cpu[r, names[i]] / cpu[r, first]; w[k] = rate[r, names[i]] / rate[r, first]; l[k] = load[r, names[i]]; list = list sprintf(" %.2f", q[k]) }
      printf "%-12s %12.2f %12d %14.3f %15.3f %7d  %s\n", names[i], median(c, k), median(m, k), median(q, k), median(w, k), median(l, k), list
    }
  }' "$out"
