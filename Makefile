# The two commands of the README:
#   make demo    installs what is missing (as root), builds, runs the demo
#                (coil-download: libcurl downloads, serial then in parallel)
#   make check   installs what is missing (as root), builds and runs the whole
#                suite: natively (gcc), under ASan+UBSan (clang), under Valgrind,
#                the runtime tests of the aarch64 build under qemu-user, and the
#                Windows build (mingw-w64) under Wine.
# Other targets: build, bench, format, install, clean.

JOBS ?= $(shell nproc)
BUILD ?= build
CTEST = ctest --output-on-failure -j$(JOBS)

.PHONY: all build demo check check-native check-asan check-valgrind check-aarch64 check-windows \
        bench format install clean deps-demo deps-check

all: build

deps-demo:
	@scripts/deps.sh demo
deps-check:
	@scripts/deps.sh check

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo

build: $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

demo: deps-demo
	@$(MAKE) --no-print-directory build
	$(BUILD)/examples/coil-download

check: deps-check
	@$(MAKE) --no-print-directory check-native check-asan check-valgrind check-aarch64 \
	        check-windows
	@echo "check: every stage passed"

check-native: build
	cd $(BUILD) && $(CTEST) -L native

check-asan:
	cmake -S . -B build-asan -DCMAKE_C_COMPILER=clang -DCOIL_SANITIZE=address,undefined \
	      -DCOIL_TEST_LINK=static -DCOIL_BENCH=OFF
	cmake --build build-asan -j$(JOBS)
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 $(CTEST) -L native

check-valgrind: build
	cd $(BUILD) && $(CTEST) -L valgrind

check-aarch64:
	cmake -S . -B build-aarch64 -DCMAKE_TOOLCHAIN_FILE=cmake/aarch64-linux-gnu.cmake \
	      -DCOIL_BENCH=OFF -DCOIL_VALGRIND_TESTS=OFF
	cmake --build build-aarch64 -j$(JOBS)
	cd build-aarch64 && $(CTEST) -L native

# Windows: mingw-w64 cross build, tests under Wine (label windows). The echo
# test talks to coil-echo.exe from the native build's coil-echo-client.
check-windows: build
	cmake -S . -B build-windows -DCMAKE_TOOLCHAIN_FILE=cmake/x86_64-w64-mingw32.cmake \
	      -DCOIL_BENCH=OFF -DCOIL_LINUX_ECHO_CLIENT=$(CURDIR)/$(BUILD)/examples/coil-echo-client
	cmake --build build-windows -j$(JOBS)
	cd build-windows && $(CTEST) -L windows

# Every headline figure of docs/benchmarks.md, coil beside its peers (about 8
# minutes; installs the peers' packages when run as root). One kind alone:
# bench/compare echo|http|switch|xthread (bench/README.md).
bench: build
	bench/compare all --build $(BUILD)

format:
	clang-format -i include/*.h src/*.c src/*.h src/*/*.c src/win/*.h examples/*.c examples/*.h \
	             tests/*.c tests/win/*.c tests/win/*.h tests/fuzz/*.c bench/*.c \
	             bench/peers/*.c bench/peers/*.cpp bench/load/*.c

install: build
	cmake --install $(BUILD)

clean:
	rm -rf build build-asan build-aarch64 build-windows
