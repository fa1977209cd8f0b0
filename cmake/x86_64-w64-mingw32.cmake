# Cross build for Windows x64 with mingw-w64, tests run under Wine:
#   cmake -S . -B build-windows -DCMAKE_TOOLCHAIN_FILE=cmake/x86_64-w64-mingw32.cmake
# (make check-windows does this). What it relies on, both from Debian and
# installed by scripts/deps.sh check:
#   gcc-mingw-w64-x86-64  the compiler; its -posix variant, whose C runtime
#                         has winpthreads (coil's offload pool uses pthreads)
#   wine64                runs the test executables (/usr/lib/wine/wine64)
set(CMAKE_SYSTEM_NAME Windows)
set(CMAKE_SYSTEM_PROCESSOR x86_64)
set(CMAKE_C_COMPILER x86_64-w64-mingw32-gcc-posix)
set(CMAKE_ASM_COMPILER x86_64-w64-mingw32-gcc-posix)
set(CMAKE_RC_COMPILER x86_64-w64-mingw32-windres)
set(CMAKE_FIND_ROOT_PATH /usr/x86_64-w64-mingw32)
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
set(CMAKE_FIND_ROOT_PATH_MODE_LIBRARY ONLY)
set(CMAKE_FIND_ROOT_PATH_MODE_INCLUDE ONLY)

# Executables are linked statically (libgcc, winpthreads): Wine then needs no
# DLL search path into the cross toolchain's directories.
set(CMAKE_EXE_LINKER_FLAGS_INIT "-static")

# ctest runs each test executable through Wine, in a prefix of the build's
# own (created on the first run, which takes a few seconds), quiet. The
# prefix and the quiet debug channel come from the environment that
# tests/CMakeLists.txt gives each Windows test.
find_program(COIL_WINE64 wine64 PATHS /usr/lib/wine NO_DEFAULT_PATH)
if(NOT COIL_WINE64)
  find_program(COIL_WINE64 wine64)
endif()
if(NOT COIL_WINE64)
  message(FATAL_ERROR "wine64 not found: run scripts/deps.sh check (package wine64)")
endif()
set(CMAKE_CROSSCOMPILING_EMULATOR ${COIL_WINE64})
