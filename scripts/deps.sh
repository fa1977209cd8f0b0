#!/usr/bin/env bash
# Installs what building and testing coil needs on Debian 12, with apt-get,
# when run as root; otherwise lists what is missing and fails.
#
#   scripts/deps.sh demo    build tools only
#   scripts/deps.sh check   + what the test suite needs
set -euo pipefail
what=${1:-check}

# command-or-file  Debian package  why
need=(
  "cmake cmake the build"
  "make make the top-level Makefile"
  "cc gcc the compiler"
  "pkg-config pkg-config finds cmocka"
)
if [ "$what" = check ]; then
  need+=(
    "clang clang second compiler; builds the ASan+UBSan run"
    "/usr/lib/llvm-14/lib/clang/14.0.6/lib/linux/libclang_rt.asan-x86_64.a libclang-rt-14-dev clang's sanitizer runtimes"
    "/usr/include/cmocka.h libcmocka-dev the tests' assertion library"
    "valgrind valgrind the leak and memory-error run of the suite"
    "/usr/include/valgrind/valgrind.h valgrind stack registration for Valgrind"
    "aarch64-linux-gnu-gcc gcc-aarch64-linux-gnu cross-builds the aarch64 context switch"
    "qemu-aarch64 qemu-user runs the aarch64 tests"
  )
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

if [ "$(id -u)" != 0 ]; then
  echo "deps: run as root to install them, or: apt-get install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
