# Cross build for aarch64 Linux on a Debian x86_64 host, tests run under qemu-user:
#   cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake
# (make check-aarch64 does this). What it relies on, all from Debian and installed
# by scripts/deps.sh check:
#   gcc-aarch64-linux-gnu, libc6-dev-arm64-cross  the compiler and its C library
#   libcmocka-dev:arm64                           cmocka through Debian multiarch
#                                                 (dpkg --add-architecture arm64),
#                                                 which also brings libc6:arm64
#   qemu-user                                     qemu-aarch64, runs the tests
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_ASM_COMPILER aarch64-linux-gnu-gcc)

# Debian's cross gcc is multiarch-aware without a sysroot: after its own
# /usr/aarch64-linux-gnu it searches /usr/include for headers (cmocka.h) and
# /usr/lib/aarch64-linux-gnu for libraries (libcmocka.so). So no
# CMAKE_SYSROOT and no CMAKE_FIND_ROOT_PATH: re-rooting the searches under
# /usr/aarch64-linux-gnu would hide the multiarch cmocka.
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)

# pkg-config must see the arm64 .pc files only, never the host's
# (/usr/lib/x86_64-linux-gnu/pkgconfig), whose -L would link amd64 libraries.
# The toolchain file is read on every configure, so this holds for re-runs too.
set(ENV{PKG_CONFIG_LIBDIR} /usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig)
unset(ENV{PKG_CONFIG_PATH})

# ctest runs each test executable through this.
#
# Why "-L /" and not "-L /usr/aarch64-linux-gnu": Debian ships no static
# libcmocka, so the tests link dynamically and need an arm64 loader, libc and
# libcmocka at run time. With -L /usr/aarch64-linux-gnu qemu takes the loader
# from the cross toolchain's copy of glibc (libc6-arm64-cross), but the loader
# then finds libc.so.6 through /etc/ld.so.cache in /lib/aarch64-linux-gnu,
# which is the multiarch libc6:arm64 that libcmocka0:arm64 pulled in: a loader
# and a libc from two different glibc builds. That happens to work while both
# are 2.36, but nothing keeps them in step. With -L / (no path remapping) the
# loader, libc and libcmocka all come from the dpkg-managed arm64 packages,
# which dpkg keeps at the exact version of the amd64 libc6. We link against the
# cross glibc (2.36-8cross1) and run on the multiarch one (2.36-9+deb12uN, the
# same or newer), which glibc's compatibility allows.
# qemu is named explicitly, so binfmt_misc registration is not needed.
find_program(COIL_QEMU_AARCH64 qemu-aarch64)
if(NOT COIL_QEMU_AARCH64)
  message(FATAL_ERROR "qemu-aarch64 not found: run scripts/deps.sh check (package qemu-user)")
endif()
set(CMAKE_CROSSCOMPILING_EMULATOR ${COIL_QEMU_AARCH64} -L /)
