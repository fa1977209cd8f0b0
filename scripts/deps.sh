#!/usr/bin/env bash
# Installs what building and testing coil needs on Debian 12, with apt-get,
# when run as root; otherwise lists what is missing and fails.
#
#   scripts/deps.sh demo    what the library and the examples need (make demo)
#   scripts/deps.sh check   + what the test suite needs, including the aarch64
#                           build's cmocka from Debian's arm64 packages (multiarch:
#                           the script adds the arm64 architecture to dpkg first),
#                           and mingw-w64 and Wine for the Windows build
#   scripts/deps.sh --list demo|check
#                           prints the set's Debian packages, one a line, and
#                           changes nothing (tests/docs/demo_deps.sh configures
#                           the demo build with exactly these)
set -euo pipefail
list=
if [ "${1:-}" = --list ]; then
  list=1
  shift
fi
what=${1:-check}
case $what in
  demo | check) ;;
  *)
    echo "usage: scripts/deps.sh [--list] demo|check" >&2
    exit 2
    ;;
esac

ma=$(gcc -print-multiarch 2>/dev/null || echo "$(uname -m)-linux-gnu")

# command-or-file  Debian package  why
need=(
  "cmake cmake the build"
  "make make the top-level Makefile"
  "cc gcc the compiler"
  "pkg-config pkg-config finds liburing and cmocka"
  "/usr/include/liburing.h liburing-dev the io_uring backend"
  "/usr/lib/$ma/pkgconfig/libcurl.pc libcurl4-openssl-dev libcurl, for the download demo (coil-download) and the coil_install tests"
  "/usr/include/http_parser.h libhttp-parser-dev http_parser, the reference that bench/http_parse_bench (built with the examples, so in the demo's build) and the HTTP parser's fuzz target compare coil-http's own parser with"
)
if [ "$what" = check ]; then
  need+=(
    "clang clang second compiler; builds the ASan+UBSan run"
    "/usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.asan-x86_64.a libclang-rt-14-dev clang's sanitizer runtimes"
    "/usr/include/cmocka.h libcmocka-dev the tests' assertion library"
    "valgrind valgrind the leak and memory-error run of the suite"
    "/usr/include/valgrind/valgrind.h valgrind stack registration for Valgrind"
    "aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu cross-builds the aarch64 context switch"
    "/usr/aarch64-linux-gnu/include/stdio.h libc6-dev-arm64-cross the cross compiler's C library; gcc-aarch64-linux-gnu only recommends it"
    "/usr/lib/aarch64-linux-gnu/pkgconfig/cmocka.pc libcmocka-dev:arm64 cmocka for the aarch64 tests, via multiarch; brings libc6:arm64, which qemu runs them with"
    "/usr/lib/aarch64-linux-gnu/pkgconfig/liburing.pc liburing-dev:arm64 liburing for the aarch64 build, via multiarch"
    "qemu-aarch64 qemu-user runs the aarch64 tests"
    "/usr/include/hiredis/hiredis.h libhiredis-dev hiredis, an unmodified client library the coil_install tests run"
    "redis-server redis-server the Redis server those tests start"
    "/usr/include/libmemcached-1.0/memcached.h libmemcached-dev libmemcached, an unmodified client library test_install_memcached and coil-bench-db-memcached run in tasklets"
    "memcached memcached the memcached server that test and that benchmark start"
    "/usr/include/mariadb/mysql.h libmariadb-dev MariaDB Connector/C, an unmodified client library the coil_install tests and coil-bench-db-mariadb run"
    "/usr/bin/my_print_defaults mariadb-client-core my_print_defaults, which mariadb-install-db runs to read its options; mariadb-server-core does not depend on it"
    "/usr/sbin/mariadbd mariadb-server-core the MariaDB server (mariadbd, mariadb-install-db) they start in a temporary directory; not mariadb-server, which would also set up and start the system's own service"
    "/usr/include/postgresql/libpq-fe.h libpq-dev libpq, PostgreSQL's client library, which test_install_pg and coil-bench-db-pg run unmodified"
    "/usr/lib/postgresql/15/bin/postgres postgresql-15 the PostgreSQL server (initdb, postgres) they start in a temporary directory. Debian has no package of the server alone: this one (all the metapackage postgresql brings) also makes the system's cluster 15/main and starts its service, which nothing here uses (stop it with systemctl stop postgresql, or set create_main_cluster = false in /etc/postgresql-common/createcluster.conf before installing)"
    "/usr/include/openssl/ssl.h libssl-dev OpenSSL, for the HTTPS server of the coil_install tests"
    "openssl openssl makes the test certificate"
    "x86_64-w64-mingw32-gcc-posix gcc-mingw-w64-x86-64 cross-builds coil for Windows (its -posix variant has winpthreads)"
    "/usr/lib/wine/wine64 wine64 runs the Windows tests (coil-echo.exe included)"
    "gcovr gcovr the coverage report of make coverage"
    "gdb gdb the tests of tools/gdb/coil.py (gdb.live, gdb.core): gdb -batch on a live process and on a core file"
  )
fi

if [ -n "$list" ]; then
  for entry in "${need[@]}"; do
    read -r _ pkg _ <<<"$entry"
    echo "$pkg"
  done | awk '!seen[$0]++'
  exit 0
fi

missing=()
for entry in "${need[@]}"; do
  read -r thing pkg why <<<"$entry"
  if [[ $thing == /* ]]; then
    [ -e "$thing" ] && continue
  else
    command -v "$thing" >/dev/null 2>&1 && continue
  fi
  [ "$(uname -m)" != x86_64 ] && [[ $thing == *x86_64* ]] && continue
  missing+=("$pkg")
  echo "deps: need $pkg ($why)"
done
[ ${#missing[@]} -eq 0 ] && exit 0

# A package named PKG:ARCH for a foreign ARCH needs dpkg to know that
# architecture (multiarch) and apt's lists for it, fetched by the update below.
foreign=()
for pkg in "${missing[@]}"; do
  [[ $pkg == *:* ]] || continue
  arch=${pkg##*:}
  [ "$arch" = "$(dpkg --print-architecture)" ] && continue
  dpkg --print-foreign-architectures | grep -qx "$arch" && continue
  [[ " ${foreign[*]} " == *" $arch "* ]] || foreign+=("$arch")
done

if [ "$(id -u)" != 0 ]; then
  how=
  for arch in "${foreign[@]}"; do how+="dpkg --add-architecture $arch && "; done
  [ -n "$how" ] && how+="apt-get update && "
  echo "deps: run as root to install them, or: ${how}apt-get install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
for arch in "${foreign[@]}"; do
  echo "deps: dpkg --add-architecture $arch"
  dpkg --add-architecture "$arch"
done
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
