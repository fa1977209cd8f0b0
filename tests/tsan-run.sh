#!/bin/sh
# Runs one test of the ThreadSanitizer stage (label tsan): tests/CMakeLists.txt
# puts this in front of each such test's command line.
#
# Debian 12's clang 14 ships a TSan runtime that knows the x86-64 memory layout
# of up to 28-30 bits of mmap randomisation. Kernels that default to
# vm.mmap_rnd_bits=32 (distributions' 6.5+ kernels: Ubuntu 23.10 and later,
# Arch, GitHub's runners) make every TSan program die at start with "FATAL:
# ThreadSanitizer: unexpected memory mapping" (google/sanitizers#1716); LLVM 18
# re-executes itself without ASLR then (llvm-project commit 0784b1eefa36),
# LLVM 14 does not. A test must not lower the sysctl for the whole machine, so
# ASLR is turned off for this process and its children only, with setarch -R
# (personality(ADDR_NO_RANDOMIZE)), which works whatever the sysctl says. A
# container whose seccomp profile forbids that personality (Docker's default
# allows only a few values) makes setarch fail before it runs anything: then
# the test runs as it is, which works wherever the bits are 28 (Debian 12's
# own 6.1 kernel, and this machine).
if setarch "$(uname -m)" -R true 2>/dev/null; then
    exec setarch "$(uname -m)" -R "$@"
fi
exec "$@"
