#!/usr/bin/env bash
# The benchmark harness's smoke test (ctest: bench_compare_smoke, label native),
# so that bench/compare cannot rot unnoticed: it builds the echo peers and the
# load generator, runs two short rounds of coil-echo against the epoll and
# io_uring peers, and checks that the table and coil's ratio to each peer were
# printed. It asserts no figure: performance is measured by running
# bench/compare, never in a test. Installs nothing; skips (exit 77) when a
# package a peer needs is missing.
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
