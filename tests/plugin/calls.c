/* The calls tests/test_install_pread.c and test_install_fdview.c make, from
 * a shared object of their own: its calls go through its GOT, which
 * coil_install rewrites, in every build. The test executable's own calls
 * would not be diverted in a sanitizer build (clang's ASan and TSan define
 * read, pread, recv, ... in the executable, where no GOT slot names them),
 * and the tests would have to skip there. fcntl and ioctl are variadic: one
 * argument, passed on as glibc reads it (one word). */
#define COIL_TEST_CALLS_IMPL
#include "calls.h"

#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

ssize_t coil_tc_pread(int fd, void *buf, size_t n, off_t off) {
    return pread(fd, buf, n, off);
}

ssize_t coil_tc_pread64(int fd, void *buf, size_t n, off64_t off) {
    return pread64(fd, buf, n, off);
}

ssize_t coil_tc_pwrite(int fd, const void *buf, size_t n, off_t off) {
    return pwrite(fd, buf, n, off);
}

ssize_t coil_tc_pwrite64(int fd, const void *buf, size_t n, off64_t off) {
    return pwrite64(fd, buf, n, off);
}

ssize_t coil_tc_preadv(int fd, const struct iovec *iov, int cnt, off_t off) {
    return preadv(fd, iov, cnt, off);
}

ssize_t coil_tc_preadv64(int fd, const struct iovec *iov, int cnt, off64_t off) {
    return preadv64(fd, iov, cnt, off);
}

ssize_t coil_tc_pwritev(int fd, const struct iovec *iov, int cnt, off_t off) {
    return pwritev(fd, iov, cnt, off);
}

ssize_t coil_tc_pwritev64(int fd, const struct iovec *iov, int cnt, off64_t off) {
    return pwritev64(fd, iov, cnt, off);
}

ssize_t coil_tc_preadv2(int fd, const struct iovec *iov, int cnt, off_t off, int flags) {
    return preadv2(fd, iov, cnt, off, flags);
}

ssize_t coil_tc_preadv64v2(int fd, const struct iovec *iov, int cnt, off64_t off, int flags) {
    return preadv64v2(fd, iov, cnt, off, flags);
}

ssize_t coil_tc_pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int flags) {
    return pwritev2(fd, iov, cnt, off, flags);
}

ssize_t coil_tc_pwritev64v2(int fd, const struct iovec *iov, int cnt, off64_t off, int flags) {
    return pwritev64v2(fd, iov, cnt, off, flags);
}

ssize_t coil_tc_read(int fd, void *buf, size_t n) {
    return read(fd, buf, n);
}

ssize_t coil_tc_recv(int fd, void *buf, size_t n, int flags) {
    return recv(fd, buf, n, flags);
}

ssize_t coil_tc_send(int fd, const void *buf, size_t n, int flags) {
    return send(fd, buf, n, flags);
}

int coil_tc_setsockopt(int fd, int level, int name, const void *val, socklen_t len) {
    return setsockopt(fd, level, name, val, len);
}

int coil_tc_fclose(FILE *f) {
    return fclose(f);
}

int coil_tc_close(int fd) {
    return close(fd);
}

int coil_tc_pipe(int fds[2]) {
    return pipe(fds);
}

int coil_tc_fcntl(int fd, int cmd, ...) {
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return fcntl(fd, cmd, arg);
}

int coil_tc_ioctl(int fd, unsigned long request, ...) {
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    return ioctl(fd, request, arg);
}

int coil_tc_socket(int domain, int type, int protocol) {
    return socket(domain, type, protocol);
}

int coil_tc_connect(int fd, const struct sockaddr *addr, socklen_t len) {
    return connect(fd, addr, len);
}

int coil_tc_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags) {
    return accept4(fd, addr, len, flags);
}

ssize_t coil_tc_write(int fd, const void *buf, size_t n) {
    return write(fd, buf, n);
}

int coil_tc_poll(struct pollfd *fds, unsigned long n, int timeout_ms) {
    return poll(fds, n, timeout_ms);
}

int coil_tc_usleep(unsigned usec) {
    return usleep(usec);
}

int coil_tc_mutex_lock(void *m) {
    return pthread_mutex_lock(m);
}

int coil_tc_mutex_unlock(void *m) {
    return pthread_mutex_unlock(m);
}

int coil_tc_getaddrinfo(const char *host, const char *service, const struct addrinfo *hints,
                        struct addrinfo **res) {
    return getaddrinfo(host, service, hints, res);
}
