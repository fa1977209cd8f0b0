/* A shared object that test_install_dlopen loads with dlopen: its calls of
 * read go through its own GOT, which coil_install rewrites. Linked with
 * -z now (CMake), so its GOT is inside the read-only-after-relocation
 * (RELRO) region, as in hardened distribution libraries. */
#include <sys/types.h>
#include <unistd.h>

ssize_t coil_test_plugin_read(int fd, void *buf, size_t len);
ssize_t coil_test_plugin_read(int fd, void *buf, size_t len) {
    return read(fd, buf, len);
}

/* Its address as data too: a GLOB_DAT relocation besides the JUMP_SLOT. */
ssize_t (*coil_test_plugin_read_ptr)(int, void *, size_t) = read;
