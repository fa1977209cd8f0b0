#!/usr/bin/env bash
# "Build against an installed coil", as the README shows it: the build is
# installed (cmake --install, what `make install` runs, staged under DESTDIR),
# then the README's own compile line builds the README's first program
# against it through pkg-config, and the program must run and exit 0. ctest
# runs it (test readme_installed, label native).
#
#   installed.sh SOURCE-DIR BUILD-DIR WORK-DIR [EXPECTED-CFLAG]
#
# From README.md, so that it cannot drift from what is tested:
# - the program: the first ```c block;
# - the compile line: the first line with $(pkg-config ...) in a ```sh block
#   (or ```shell, ```bash, ```console; a leading "$ " is dropped), else the
#   first `inline code` with it; the program is saved under the .c name it
#   compiles, and the executable is its -o, else a.out.
# pkg-config finds the staged coil.pc through PKG_CONFIG_PATH, and
# PKG_CONFIG_SYSROOT_DIR puts the staging directory before its paths; the
# compile line itself is run as written.
#
# EXPECTED-CFLAG (-fstack-clash-protection where the compiler has it) must be
# among coil.pc's Cflags, and doing its job: big_frame.c, a tasklet whose one
# frame is larger than its stack and the guard together, built by the same
# line, must end in coil's overflow message, not a bare SIGSEGV.
set -u
src=$1 build=$2 work=$3 want_cflag=${4:-}
fail() {
    echo "readme_installed: FAIL: $*"
    exit 1
}
readme=$src/README.md

rm -rf "$work"
mkdir -p "$work/prog"
stage=$work/stage
DESTDIR=$stage cmake --install "$build" >"$work/install.log" 2>&1 || {
    cat "$work/install.log"
    fail "cmake --install $build failed"
}
pc=$(find "$stage" -name coil.pc | head -1)
[ -n "$pc" ] || fail "cmake --install installed no coil.pc"
export PKG_CONFIG_PATH=${pc%/coil.pc} PKG_CONFIG_SYSROOT_DIR=$stage

# The first ```c block.
awk '/^```c[[:space:]]*$/ { on = 1; next } on && /^```/ { exit } on' "$readme" >"$work/first.c"
[ -s "$work/first.c" ] || fail "README.md has no \`\`\`c block"

# The compile line.
line=$(awk '/^```(sh|shell|bash|console)[[:space:]]*$/ { on = 1; next } on && /^```/ { on = 0 }
            on && /\$\(pkg-config / { sub(/^\$ /, ""); print; exit }' "$readme")
if [ -z "$line" ]; then
    # shellcheck disable=SC2016 # the $( is README.md's text, not ours
    line=$(grep -o '`[^`]*\$(pkg-config [^`]*`' "$readme" | head -1 | tr -d '`')
fi
[ -n "$line" ] || fail "README.md shows no compile line that calls pkg-config"
csrc='' exe=a.out prev=''
for word in $line; do
    case $word in *.c) [ -z "$csrc" ] && csrc=$word ;; esac
    [ "$prev" = -o ] && exe=$word
    prev=$word
done
[ -n "$csrc" ] || fail "README.md's compile line names no .c file: $line"
echo "readme_installed: README.md's compile line: $line"

cflags=$(pkg-config --cflags coil) || fail "pkg-config --cflags coil failed"
libdirs=$(pkg-config --libs-only-L coil | sed 's/-L//g; s/ /:/g') || fail "pkg-config --libs-only-L coil failed"
echo "readme_installed: pkg-config --cflags coil: $cflags"
if [ -n "$want_cflag" ]; then
    grep -qw -- "$want_cflag" <<<"$cflags" || fail "coil.pc's Cflags lack $want_cflag"
fi

cp "$work/first.c" "$work/prog/$csrc"
(cd "$work/prog" && bash -c "$line") || fail "README.md's compile line failed: $line"
(cd "$work/prog" && LD_LIBRARY_PATH=$libdirs "./$exe") || fail "README.md's first program exited $?"

if [ -n "$want_cflag" ]; then
    mkdir -p "$work/big" && cp "$src/tests/docs/big_frame.c" "$work/big/$csrc"
    (cd "$work/big" && bash -c "$line") || fail "big_frame.c does not build by README.md's line"
    (cd "$work/big" && LD_LIBRARY_PATH=$libdirs "./$exe") 2>"$work/big/err"
    status=$?
    grep -q 'coil: tasklet [0-9]* "big frame" overflowed its' "$work/big/err" || {
        cat "$work/big/err"
        fail "big_frame.c, built with coil.pc's Cflags, exited $status without coil's overflow message"
    }
    echo "readme_installed: a frame larger than the guard: $(head -1 "$work/big/err")"
fi
echo "readme_installed: README.md's first program builds against the installed coil and runs"
