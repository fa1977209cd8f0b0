#!/usr/bin/env bash
# Measures coil-http against the peers of ../shared/bench/compare (nginx with one
# worker, Go's net/http with GOMAXPROCS=1, gevent) at 100 and at 1,000 connections,
# keeps compare's tables in docs/bench/http-c100.txt and http-c1000.txt, and draws
# docs/bench/http.png: requests per second and server CPU time per request, every
# server, both connection counts. Run as root on a quiet machine (compare installs
# its peers, this script gnuplot, with apt-get).
#
#   scripts/bench-http.sh [SECONDS]      seconds per round (default 8)
#   COMPARE=path/to/compare scripts/bench-http.sh
#   scripts/bench-http.sh --plot-only    redraw the chart from the kept tables
set -euo pipefail
cd "$(dirname "$0")/.."
compare=${COMPARE:-../shared/bench/compare}
out=docs/bench
mkdir -p "$out"

if ! command -v gnuplot >/dev/null 2>&1; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q gnuplot-nox >/dev/null
fi

if [ "${1:-}" != --plot-only ]; then
  secs=${1:-8}
  make --no-print-directory build >/dev/null
  for c in 100 1000; do
    {
      echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), $(git rev-parse --short HEAD), $(uname -r)"
      "$compare" http -d "$secs" -c "$c" -- build/examples/coil-http --port '{PORT}'
    } | tee "$out/http-c$c.txt"
  done
fi

# compare's rows: "name req/s cpu_us/req ratio ratio"; one data row per server:
# name rate@100 cpu@100 rate@1000 cpu@1000
rows() { awk '$1 ~ /^(ours|nginx|go|gevent)$/ && $2 ~ /^[0-9]/ {print $1, $2, $3}' "$1"; }
join <(rows "$out/http-c100.txt" | sort) <(rows "$out/http-c1000.txt" | sort) |
  awk '{n = ($1 == "ours") ? "coil" : $1; print n, $2, $3, $4, $5}' |
  sort -k1,1 >"$out/http.dat"

gnuplot <<EOF
set terminal pngcairo size 1100,460 font "sans,11"
set output "$out/http.png"
set multiplot layout 1,2 title "coil-http vs peers: keep-alive GET /, wrk -t1 (../shared/bench/compare http)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set grid ytics
set key below
set yrange [0:*]
set title "requests per second (higher is better)"
plot "$out/http.dat" using 2:xtic(1) title "100 connections" lc rgb "#4878a8", \
     "" using 4 title "1,000 connections" lc rgb "#e08a3c"
set title "server CPU time per request, µs (lower is better)"
plot "$out/http.dat" using 3:xtic(1) title "100 connections" lc rgb "#4878a8", \
     "" using 5 title "1,000 connections" lc rgb "#e08a3c"
unset multiplot
EOF
echo "bench-http: $out/http.png"
