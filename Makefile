# The two commands of the README:
#   make demo    installs what is missing (as root), builds, runs the demo
#                (coil-download: libcurl downloads, serial then in parallel)
#   make check   installs what is missing (as root), builds and runs the whole
#                suite: natively (gcc), under ASan+UBSan (clang), the tests that
#                cross threads under ThreadSanitizer (clang), under Valgrind,
#                the runtime tests of the aarch64 build under qemu-user, and the
#                Windows build (mingw-w64, built as the README builds it by
#                hand) under Wine; the native stage also builds the README's
#                first program against an installed coil, and configures the
#                demo's build with only what deps.sh demo installs.
# Either may come first, and a failed command leaves nothing that breaks the
# next: the build directory is configured again whenever it holds no finished
# configuration. The tests are built where cmocka is found, so make demo's
# build leaves them out; make check configures them in.
# Other targets: build, coverage, bench, format, install, clean.

JOBS ?= $(shell nproc)
BUILD ?= build
CTEST = ctest --output-on-failure -j$(JOBS)
CONFIGURE = cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

.PHONY: all build build-tests demo check check-native check-asan check-tsan check-valgrind \
        check-aarch64 check-windows check-coverage coverage bench format install clean deps-demo deps-check

all: build

deps-demo:
	@scripts/deps.sh demo
deps-check:
	@scripts/deps.sh check

# cmake_install.cmake is written by CMake's generate step only, whatever the
# generator; a configure that failed leaves CMakeCache.txt but never this.
$(BUILD)/cmake_install.cmake:
	$(CONFIGURE)

build: $(BUILD)/cmake_install.cmake
	cmake --build $(BUILD) -j$(JOBS)

# The suite's build: configured again with the tests asked for, since the
# build directory may hold the demo's configuration, made without cmocka.
build-tests:
	$(CONFIGURE) -DCOIL_TESTS=ON
	cmake --build $(BUILD) -j$(JOBS)

demo: deps-demo
	@$(MAKE) --no-print-directory build
	$(BUILD)/examples/coil-download

check: deps-check
	@$(MAKE) --no-print-directory check-native check-asan check-tsan check-valgrind \
	        check-aarch64 check-windows check-coverage
	@echo "check: every stage passed"

check-native: build-tests
	cd $(BUILD) && $(CTEST) -L native

# The ASan build also carries the fault injection (src/fault.h; inert unless
# COIL_FAULT is set), so that the sweep (tests/fault/sweep.c, ctest
# fault_sweep.*) runs under ASan, UBSan and LeakSanitizer.
check-asan:
	cmake -S . -B build-asan -DCMAKE_C_COMPILER=clang -DCOIL_SANITIZE=address,undefined \
	      -DCOIL_TEST_LINK=static -DCOIL_BENCH=OFF -DCOIL_TESTS=ON -DCOIL_FAULT_INJECTION=ON
	cmake --build build-asan -j$(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 $(CTEST) -L native

# ThreadSanitizer: the tests labelled tsan (every test that crosses threads,
# each marked "// coil-test: tsan", see tests/CMakeLists.txt), in a build of
# their own: TSan cannot share one with ASan. Statically linked as the ASan
# stage is; each runs through tests/tsan-run.sh (ASLR off for TSan).
check-tsan:
	cmake -S . -B build-tsan -DCMAKE_C_COMPILER=clang -DCOIL_SANITIZE=thread \
	      -DCOIL_TEST_LINK=static -DCOIL_BENCH=OFF -DCOIL_TESTS=ON
	cmake --build build-tsan -j$(JOBS)
	cd build-tsan && $(CTEST) -L tsan

check-valgrind: build-tests
	cd $(BUILD) && $(CTEST) -L valgrind

check-aarch64:
	cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
	      -DCOIL_BENCH=OFF -DCOIL_VALGRIND_TESTS=OFF -DCOIL_TESTS=ON
	cmake --build build-aarch64 -j$(JOBS)
	cd build-aarch64 && $(CTEST) -L native

# Windows: mingw-w64 cross build, tests under Wine (label windows), by the
# README's commands for building by hand, as they are. Then the echo test is
# pointed at the native build's coil-echo-client, which talks to coil-echo.exe
# (this changes a test's command line only: nothing is rebuilt). build-tests,
# as the other stages: one configuration of $(BUILD) in a run, even with -j.
check-windows: build-tests
	cmake -S . -B build-windows -DCMAKE_TOOLCHAIN_FILE=cmake/x86_64-w64-mingw32.cmake
	cmake --build build-windows -j$(JOBS)
	cmake -S . -B build-windows -DCOIL_LINUX_ECHO_CLIENT=$(CURDIR)/$(BUILD)/examples/coil-echo-client
	cd build-windows && $(CTEST) -L windows

# make coverage on a few tests (channels, TCP on both backends): that
# the build, the counters and gcovr still work together.
check-coverage:
	@$(MAKE) --no-print-directory coverage COVERAGE_TESTS='^test_(chan|net_tcp)\.'

# Line and branch coverage of src/: a build with gcc's counters (-O0) and the
# fault injection, the native tests on both backends (the fault sweep among
# them), then gcovr: an HTML report per file in
# build-coverage/coverage/index.html, a text one beside it, and gcovr's summary
# lines (lines: N%, branches: N%) last. Counters start from zero each time.
# COVERAGE_TESTS, a ctest -R pattern, runs only the tests it matches: make
# check does so with a few (check-coverage), to keep the target working within
# CI's time; the whole run takes about 10 minutes on 2 cores (docs/testing.md).
COVERAGE_TESTS ?=
coverage: deps-check
	cmake -S . -B build-coverage -DCMAKE_BUILD_TYPE=Debug -DCOIL_COVERAGE=ON -DCOIL_BENCH=OFF \
	      -DCOIL_TESTS=ON -DCOIL_FAULT_INJECTION=ON
	cmake --build build-coverage -j$(JOBS)
	find build-coverage -name '*.gcda' -delete
	cd build-coverage && $(CTEST) -L native $(if $(COVERAGE_TESTS),-R '$(COVERAGE_TESTS)')
	mkdir -p build-coverage/coverage
	gcovr --root . --object-directory build-coverage --filter 'src/' --exclude 'src/fault.c' --branches \
	      --exclude-unreachable-branches --html-details build-coverage/coverage/index.html \
	      --txt build-coverage/coverage/coverage.txt --print-summary

# Every headline figure of docs/benchmarks.md, coil beside its peers (about 8
# minutes; installs the peers' packages when run as root). One kind alone:
# bench/compare echo|http|switch|xthread (bench/README.md).
bench: build
	bench/compare all --build $(BUILD)

format:
	clang-format -i include/*.h src/*.c src/*.h src/*/*.c src/win/*.h examples/*.c examples/*.h \
	             tests/*.c tests/win/*.c tests/win/*.h tests/fuzz/*.c tests/docs/*.c tests/servers/*.c \
	             tests/servers/*.h tests/gdb/*.c tests/locklib/*.c tests/locklib/*.h bench/*.c \
	             bench/peers/*.c bench/peers/*.cpp bench/load/*.c

# Into /usr/local by default. ldconfig, as root and without DESTDIR, so that a
# program linked with the new libcoil.so finds it at once.
install: build
	cmake --install $(BUILD)
	@if [ -z "$$DESTDIR" ] && [ "$$(id -u)" = 0 ]; then ldconfig; fi

clean:
	rm -rf build build-asan build-tsan build-aarch64 build-windows
