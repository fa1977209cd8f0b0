#!/bin/sh
# Runs one Windows test program under Wine: wine_run.sh WINE PROGRAM [ARGS...].
# If the run fails with Wine's own "wine client error" (the link between the
# program and wineserver broke: "recvmsg: Connection reset by peer", seen
# about one Windows stage in ten, on a different test each time, and never
# in coil's code), it is run once more; any other failure stands as it is.
wine=$1
shift
out=$(mktemp) || exit 1
"$wine" "$@" >"$out" 2>&1
rc=$?
if [ "$rc" -ne 0 ] && grep -q "wine client error" "$out"; then
    cat "$out"
    echo "wine_run.sh: Wine's client-server link broke (above); running once more"
    "$wine" "$@" >"$out" 2>&1
    rc=$?
fi
cat "$out"
rm -f "$out"
exit "$rc"
