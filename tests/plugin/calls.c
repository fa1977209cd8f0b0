/* The calls tests/test_install_pread.c, test_install_fdview.c,
 * test_install_edges.c and the fault sweep make, from
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
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

/* glibc declares these only to a program built with _FORTIFY_SOURCE. */
extern ssize_t __read_chk(int fd, void *buf, size_t n, size_t buflen);
extern ssize_t __recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags);
extern ssize_t __recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags,
                              struct sockaddr *addr, socklen_t *len);
extern ssize_t __pread_chk(int fd, void *buf, size_t n, off_t off, size_t buflen);
extern int __poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen);
extern int __ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *ts,
                       const sigset_t *mask, size_t fdslen);

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

int coil_tc_recvmmsg(int fd, struct mmsghdr *vec, unsigned vlen, int flags, struct timespec *ts) {
    return recvmmsg(fd, vec, vlen, flags, ts);
}

int coil_tc_sendmmsg(int fd, struct mmsghdr *vec, unsigned vlen, int flags) {
    return sendmmsg(fd, vec, vlen, flags);
}

ssize_t coil_tc_readv(int fd, const struct iovec *iov, int cnt) {
    return readv(fd, iov, cnt);
}

ssize_t coil_tc_writev(int fd, const struct iovec *iov, int cnt) {
    return writev(fd, iov, cnt);
}

int coil_tc_ppoll(struct pollfd *fds, unsigned long n, const struct timespec *ts) {
    return ppoll(fds, n, ts, NULL);
}

int coil_tc_select(int nfds, void *rd, void *wr, void *ex, struct timeval *tv) {
    return select(nfds, rd, wr, ex, tv);
}

int coil_tc_pselect(int nfds, void *rd, void *wr, void *ex, const struct timespec *ts) {
    return pselect(nfds, rd, wr, ex, ts, NULL);
}

int coil_tc_nanosleep(const struct timespec *req, struct timespec *rem) {
    return nanosleep(req, rem);
}

int coil_tc_clock_nanosleep(int clk, int flags, const struct timespec *req, struct timespec *rem) {
    return clock_nanosleep((clockid_t)clk, flags, req, rem);
}

ssize_t coil_tc_read_chk(int fd, void *buf, size_t n, size_t buflen) {
    return __read_chk(fd, buf, n, buflen);
}

ssize_t coil_tc_recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags) {
    return __recv_chk(fd, buf, n, buflen, flags);
}

ssize_t coil_tc_recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags,
                             struct sockaddr *addr, socklen_t *len) {
    return __recvfrom_chk(fd, buf, n, buflen, flags, addr, len);
}

ssize_t coil_tc_pread_chk(int fd, void *buf, size_t n, off_t off, size_t buflen) {
    return __pread_chk(fd, buf, n, off, buflen);
}

int coil_tc_poll_chk(struct pollfd *fds, unsigned long n, int timeout_ms, size_t fdslen) {
    return __poll_chk(fds, n, timeout_ms, fdslen);
}

int coil_tc_ppoll_chk(struct pollfd *fds, unsigned long n, const struct timespec *ts,
                      size_t fdslen) {
    return __ppoll_chk(fds, n, ts, NULL, fdslen);
}

ssize_t coil_tc_sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr,
                       socklen_t len) {
    return sendto(fd, buf, n, flags, addr, len);
}

int coil_tc_wait4(int pid, int *status, int options) {
    return wait4(pid, status, options, NULL);
}

int coil_tc_waitid_all(int options) {
    siginfo_t info;
    return waitid(P_ALL, 0, &info, options);
}

int coil_tc_dup3(int oldfd, int newfd, int flags) {
    return dup3(oldfd, newfd, flags);
}
