#!/usr/bin/env bash
# The benchmark harness's smoke test (ctest: bench_compare_smoke, label native),
# so that bench/compare cannot rot unnoticed: it builds the echo peers and the
# load generator, runs two short rounds of coil-echo against the epoll and
# io_uring peers, and checks that the table and coil's ratio to each peer were
# printed; then bench/chart draws that run's rounds into a scratch directory
# and it checks that a PNG was written. It asserts no figure: performance is
# measured by running bench/compare, never in a test. The peers install
# nothing; skips (exit 77) when a package a peer needs is missing. bench/chart
# installs gnuplot-nox as root when it is missing; without gnuplot the chart
# part is skipped with a message.
#
#   bench/smoke-test.sh BUILD_DIR COIL_ECHO
set -euo pipefail
[ $# -eq 2 ] || { echo "usage: $0 BUILD_DIR COIL_ECHO" >&2; exit 2; }
here=$(cd "$(dirname "$0")" && pwd)
command -v cc >/dev/null || { echo "smoke-test: no C compiler: skipped"; exit 77; }
[ -e /usr/include/liburing.h ] || { echo "smoke-test: no liburing header: skipped"; exit 77; }
out=$1/bench-smoke
rc=0
"$here/compare" echo --no-install --out "$out" -r 2 -d 0.5 --warm 0.2 -c 8 -p epoll,uring \
  -- "$2" --port '{PORT}' >"$out.txt" 2>&1 || rc=$?
cat "$out.txt"
[ "$rc" -ne 77 ] || exit 77
[ "$rc" -eq 0 ] || { echo "smoke-test: compare exited $rc"; exit 1; }
num='[0-9]+\.[0-9]+ \([0-9]+\.[0-9]+-[0-9]+\.[0-9]+\)'
for want in '^server +msg/s +cpu_us/msg +load%$' '^epoll +[0-9]+ +[0-9.]+ +[0-9]+$' \
  '^uring +[0-9]+ +[0-9.]+ +[0-9]+$' '^coil +[0-9]+ +[0-9.]+ +[0-9]+$' \
  "^coil / epoll +$num +$num\$" "^coil / uring +$num +$num\$"; do
  grep -Eq "$want" "$out.txt" || { echo "smoke-test: no line matching: $want"; exit 1; }
done
echo "smoke-test: compare printed the table and the ratios"
res=$out/results-echo-c8.txt
[ -s "$res" ] || { echo "smoke-test: compare left no $res"; exit 1; }
command -v python3 >/dev/null || { echo "smoke-test: no python3: bench/chart not tried"; exit 0; }
rm -rf "$out/charts"
rc=0
"$here/chart" -o "$out/charts" "$res" || rc=$?
if [ "$rc" -eq 2 ] && ! command -v gnuplot >/dev/null; then
  echo "smoke-test: no gnuplot (Debian package gnuplot-nox): bench/chart not tried"
  exit 0
fi
[ "$rc" -eq 0 ] || { echo "smoke-test: chart exited $rc"; exit 1; }
png=$out/charts/echo-c8.png
[ "$(head -c 8 "$png" 2>/dev/null | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] ||
  { echo "smoke-test: bench/chart wrote no PNG at $png"; exit 1; }
echo "smoke-test: chart drew $png"
