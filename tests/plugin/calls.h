/* Diverted calls for the tests (tests/plugin/calls.c says why): include
 * this after every system header; the names below then call through a
 * shared object whose GOT coil_install rewrites. */
#ifndef COIL_TEST_CALLS_H
#define COIL_TEST_CALLS_H
#include <stdio.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <sys/uio.h>

ssize_t coil_tc_pread(int fd, void *buf, size_t n, off_t off);
ssize_t coil_tc_pread64(int fd, void *buf, size_t n, off64_t off);
ssize_t coil_tc_pwrite(int fd, const void *buf, size_t n, off_t off);
ssize_t coil_tc_pwrite64(int fd, const void *buf, size_t n, off64_t off);
ssize_t coil_tc_preadv(int fd, const struct iovec *iov, int cnt, off_t off);
ssize_t coil_tc_preadv64(int fd, const struct iovec *iov, int cnt, off64_t off);
ssize_t coil_tc_pwritev(int fd, const struct iovec *iov, int cnt, off_t off);
ssize_t coil_tc_pwritev64(int fd, const struct iovec *iov, int cnt, off64_t off);
ssize_t coil_tc_preadv2(int fd, const struct iovec *iov, int cnt, off_t off, int flags);
ssize_t coil_tc_preadv64v2(int fd, const struct iovec *iov, int cnt, off64_t off, int flags);
ssize_t coil_tc_pwritev2(int fd, const struct iovec *iov, int cnt, off_t off, int flags);
ssize_t coil_tc_pwritev64v2(int fd, const struct iovec *iov, int cnt, off64_t off, int flags);
ssize_t coil_tc_read(int fd, void *buf, size_t n);
ssize_t coil_tc_recv(int fd, void *buf, size_t n, int flags);
ssize_t coil_tc_send(int fd, const void *buf, size_t n, int flags);
int coil_tc_setsockopt(int fd, int level, int name, const void *val, socklen_t len);
int coil_tc_fclose(FILE *f);
int coil_tc_close(int fd);
int coil_tc_pipe(int fds[2]);
int coil_tc_fcntl(int fd, int cmd, ...);
int coil_tc_ioctl(int fd, unsigned long request, ...);

/* Also through the object's GOT, under their own names only (no macro):
 * the fault sweep's scenario of coil_install (tests/fault/sweep.c). */
struct pollfd;
struct addrinfo;
int coil_tc_socket(int domain, int type, int protocol);
int coil_tc_connect(int fd, const struct sockaddr *addr, socklen_t len);
int coil_tc_accept4(int fd, struct sockaddr *addr, socklen_t *len, int flags);
ssize_t coil_tc_write(int fd, const void *buf, size_t n);
int coil_tc_poll(struct pollfd *fds, unsigned long n, int timeout_ms);
int coil_tc_usleep(unsigned usec);
int coil_tc_mutex_lock(void *m);   /* pthread_mutex_t * */
int coil_tc_mutex_unlock(void *m); /* pthread_mutex_t * */
int coil_tc_getaddrinfo(const char *host, const char *service, const struct addrinfo *hints,
                        struct addrinfo **res);

/* test_install_edges.c's: the edges of the diverted calls, and the
 * _FORTIFY_SOURCE entry points (__read_chk, ...), called by name as a
 * fortified program's inline wrappers call them. */
struct mmsghdr;
struct timespec;
struct timeval;
int coil_tc_recvmmsg(int fd, struct mmsghdr *vec, unsigned vlen, int flags, struct timespec *ts);
int coil_tc_sendmmsg(int fd, struct mmsghdr *vec, unsigned vlen, int flags);
ssize_t coil_tc_readv(int fd, const struct iovec *iov, int cnt);
ssize_t coil_tc_writev(int fd, const struct iovec *iov, int cnt);
int coil_tc_ppoll(struct pollfd *fds, unsigned long n, const struct timespec *ts);
int coil_tc_select(int nfds, void *rd, void *wr, void *ex, struct timeval *tv); /* fd_set * */
int coil_tc_pselect(int nfds, void *rd, void *wr, void *ex, const struct timespec *ts);
int coil_tc_nanosleep(const struct timespec *req, struct timespec *rem);
int coil_tc_clock_nanosleep(int clk, int flags, const struct timespec *req, struct timespec *rem);
ssize_t coil_tc_sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr,
                       socklen_t len);
int coil_tc_wait4(int pid, int *status, int options);
int coil_tc_waitid_all(int options); /* waitid(P_ALL, 0, &info, options) */
int coil_tc_dup3(int oldfd, int newfd, int flags);
ssize_t coil_tc_read_chk(int fd, void *buf, size_t n, size_t buflen);
ssize_t coil_tc_recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags);
ssize_t coil_tc_recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags,
                             struct sockaddr *addr, socklen_t *len);
ssize_t coil_tc_pread_chk(int fd, void *buf, size_t n, off_t off, size_t buflen);
int coil_tc_poll_chk(struct pollfd *fds, unsigned long n, int timeout_ms, size_t fdslen);
int coil_tc_ppoll_chk(struct pollfd *fds, unsigned long n, const struct timespec *ts,
                      size_t fdslen);

#ifndef COIL_TEST_CALLS_IMPL /* not in calls.c itself, which calls the real ones */
#define pread       coil_tc_pread
#define pread64     coil_tc_pread64
#define pwrite      coil_tc_pwrite
#define pwrite64    coil_tc_pwrite64
#define preadv      coil_tc_preadv
#define preadv64    coil_tc_preadv64
#define pwritev     coil_tc_pwritev
#define pwritev64   coil_tc_pwritev64
#define preadv2     coil_tc_preadv2
#define preadv64v2  coil_tc_preadv64v2
#define pwritev2    coil_tc_pwritev2
#define pwritev64v2 coil_tc_pwritev64v2
#define read        coil_tc_read
#define recv        coil_tc_recv
#define send        coil_tc_send
#define setsockopt  coil_tc_setsockopt
#define fclose      coil_tc_fclose
#define close       coil_tc_close
#define pipe        coil_tc_pipe
#define fcntl       coil_tc_fcntl
#define ioctl       coil_tc_ioctl
#endif
#endif
