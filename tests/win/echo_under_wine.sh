#!/usr/bin/env bash
# coil-echo.exe under Wine serves real Linux clients on loopback: ctest runs
# this (test echo_under_wine, label windows) in the Windows cross build.
#
#   echo_under_wine.sh WINE64 COIL-ECHO.EXE [LINUX-ECHO-CLIENT]
#
# 1. starts the server under Wine on a free port (--port 0, read back from
#    its first line) with two threads (a group of two schedulers, each with
#    its own completion port; the connections are dealt out to both);
# 2. bash's /dev/tcp (a Linux socket, no Wine involved): ten connections at
#    once, each sends its own lines and must get exactly them back;
# 3. with the native build's coil-echo-client (a Linux program), 50
#    connections x 100 messages, checked byte for byte by the client;
# 4. SIGINT to the Wine process: Wine turns it into a console Ctrl-C, which
#    must stop the server cleanly (its summary line, exit status 0).
# WINEPREFIX and WINEDEBUG come from the test's environment.
set -u
wine=$1 server=$2 client=${3:-}
log=$(mktemp)
trap 'rm -f "$log"; [ -n "${pid:-}" ] && kill -KILL "$pid" 2>/dev/null' EXIT
fail() { echo "echo_under_wine: FAIL: $*"; echo "--- server output:"; cat "$log"; exit 1; }

"$wine" "$server" --port 0 --threads 2 -v >"$log" 2>&1 &
pid=$!
port=
for _ in $(seq 600); do # the first start of a Wine prefix can take a while
    port=$(sed -n 's/.*listening on 127\.0\.0\.1:\([0-9]*\) (iocp, 2 threads).*/\1/p' "$log")
    [ -n "$port" ] && break
    kill -0 "$pid" 2>/dev/null || fail "the server exited before listening"
    sleep 0.1
done
[ -n "$port" ] || fail "the server did not say where it listens"
echo "server under Wine listens on 127.0.0.1:$port"

# Ten connections open at once; each sends 20 lines, interleaved.
fds=()
for i in $(seq 10); do
    exec {fd}<>"/dev/tcp/127.0.0.1/$port" || fail "connect $i"
    fds+=("$fd")
done
for n in $(seq 20); do
    for i in "${!fds[@]}"; do
        printf 'conn %d line %d %s\n' "$i" "$n" "$(printf '%*s' $((n * 37)) '' | tr ' ' x)" >&"${fds[$i]}"
    done
done
for i in "${!fds[@]}"; do
    for n in $(seq 20); do
        want=$(printf 'conn %d line %d %s' "$i" "$n" "$(printf '%*s' $((n * 37)) '' | tr ' ' x)")
        IFS= read -r -t 10 got <&"${fds[$i]}" || fail "conn $i line $n: nothing came back"
        [ "$got" = "$want" ] || fail "conn $i line $n: got '$got'"
    done
    exec {fds[$i]}>&-
done
echo "10 bash /dev/tcp connections x 20 lines: echoed intact"

if [ -n "$client" ] && [ -x "$client" ]; then
    "$client" --port "$port" -c 50 -n 100 || fail "coil-echo-client (Linux) failed"
else
    echo "no Linux coil-echo-client given: that part is skipped"
fi

kill -INT "$pid"
wait "$pid"
status=$?
pid=
[ "$status" -eq 0 ] || fail "the server exited with $status after SIGINT"
grep -q "connections served" "$log" || fail "no summary line after SIGINT"
grep -q "^coil-echo: thread 1: [1-9]" "$log" || fail "thread 1 served no connection"
tail -3 "$log"
echo "echo_under_wine: ok"
