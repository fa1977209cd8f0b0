#!/usr/bin/env bash
# The guard of `make demo` on a fresh machine: the demo's build must configure
# with nothing but what `scripts/deps.sh demo` installs, so that a dependency
# added to a test, or to the library, without adding it there fails this test
# rather than a newcomer. ctest runs it (test demo_deps, label native).
#
#   demo_deps.sh SOURCE-DIR WORK-DIR
#
# 1. The packages come from deps.sh itself (--list demo), and pkg-config sees
#    the .pc files of exactly those (PKG_CONFIG_LIBDIR, a directory of links):
#    cmocka, hiredis, OpenSSL... are hidden as on a fresh machine.
# 2. The build is configured in WORK-DIR by the Makefile's own rule, the one
#    `make demo` runs; it must succeed, leave the tests out (saying so), and
#    build the program the demo runs (coil-download) and the HTTP example.
# 3. Every library the configuration found by path (find_library and
#    pkg-config results in the cache) must belong to one of those packages: a
#    library found without pkg-config is not hidden by step 1.
# 4. Asking for the tests there (-DCOIL_TESTS=ON) must fail, naming
#    `scripts/deps.sh check`.
# Debian only (dpkg), with every package of the demo set installed (as after
# make check's deps.sh check on a fresh machine); otherwise it skips (77).
set -u
src=$1 work=$2
fail() {
    echo "demo_deps: FAIL: $*"
    exit 1
}
command -v dpkg >/dev/null || {
    echo "demo_deps: no dpkg, not Debian: skipped"
    exit 77
}

"$src/scripts/deps.sh" --list nonsense >/dev/null 2>&1
[ $? = 2 ] || fail "scripts/deps.sh --list nonsense must exit 2 (usage)"
pkgs=$("$src/scripts/deps.sh" --list demo) || fail "scripts/deps.sh --list demo failed"
[ -n "$pkgs" ] || fail "scripts/deps.sh --list demo lists nothing"

rm -rf "$work"
mkdir -p "$work/pkgconfig"
arch=$(dpkg --print-architecture)
for pkg in $pkgs; do
    # deps.sh installs a package only when what it is needed for is missing:
    # another package may provide that here, and a fresh machine cannot be
    # modelled from this one.
    files=$(dpkg -L "$pkg:$arch" 2>/dev/null || dpkg -L "$pkg" 2>/dev/null) || {
        echo "demo_deps: $pkg, of scripts/deps.sh demo, is not installed here: skipped"
        exit 77
    }
    grep '\.pc$' <<<"$files" | while IFS= read -r pc; do
        ln -sf "$pc" "$work/pkgconfig/"
    done
done
echo "demo_deps: packages: $(tr '\n' ' ' <<<"$pkgs")"
echo "demo_deps: their pkg-config files: $(cd "$work/pkgconfig" && echo *)"

# The Makefile's rule for a build directory that holds no configuration, as
# `make demo` runs it. MAKEFLAGS and the like of an outer make are dropped.
log=$work/configure.log
env -u MAKEFLAGS -u MFLAGS -u MAKELEVEL -u PKG_CONFIG_PATH PKG_CONFIG_LIBDIR="$work/pkgconfig" \
    make -C "$src" --no-print-directory BUILD="$work/build" "$work/build/cmake_install.cmake" \
    >"$log" 2>&1 || {
    sed 's/^/    /' "$log"
    fail "the demo's build does not configure with only the packages of scripts/deps.sh demo" \
        "(output above): add what it needs to the demo set in scripts/deps.sh, or keep it out of" \
        "the demo's build (a test's dependency belongs in tests/, configured with the tests only)"
}
grep -q 'cmocka not found, the tests are not built' "$log" ||
    fail "the demo's build does not say that it leaves the tests out; $log"
targets=$(cmake --build "$work/build" --target help 2>&1)
for t in coil-download coil-http; do
    grep -qw -- "$t" <<<"$targets" ||
        fail "the demo's build would not build $t with only scripts/deps.sh demo's packages; $log"
done

# Libraries found by path: each must come from a package of the demo set.
while IFS= read -r lib; do
    owner=$(dpkg -S "$lib" 2>/dev/null | grep -v '^diversion' | head -1)
    [ -n "$owner" ] || owner=$(dpkg -S "$(readlink -f "$lib")" 2>/dev/null | grep -v '^diversion' | head -1)
    owner=${owner%%: /*}
    owner=${owner%%:*}
    grep -qx -- "$owner" <<<"$pkgs" ||
        fail "the demo's build uses $lib, of package ${owner:-(none)}, which scripts/deps.sh demo" \
            "does not install: add it to the demo set there, or keep it out of the demo's build"
done < <(sed -nE 's@^[^#/][^:]*:FILEPATH=(/.*/lib[^/]*\.(so|a)(\.[0-9.]+)?)$@\1@p' \
    "$work/build/CMakeCache.txt")

out=$(env -u PKG_CONFIG_PATH PKG_CONFIG_LIBDIR="$work/pkgconfig" \
    cmake -S "$src" -B "$work/build" -DCOIL_TESTS=ON 2>&1) &&
    fail "the build configured with COIL_TESTS=ON and no cmocka"
tr -s ' \n' ' ' <<<"$out" | grep -q 'scripts/deps.sh check' || {
    echo "$out"
    fail "COIL_TESTS=ON without cmocka does not name scripts/deps.sh check"
}
echo "demo_deps: the demo's build needs only scripts/deps.sh demo's packages"
