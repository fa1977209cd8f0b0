/*
 * The fd API's primitives on POSIX (declared in internal.h, used by
 * src/net.c): system calls that never block, their result as -errno, errno
 * left as it was.
 */
#include "internal.h"

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

/* The result of a call that returns -1 with errno set: r, or -errno; errno
 * goes back to saved (coil's calls leave errno alone). */
static int sys_result(int r, int saved) {
    if (r < 0) r = -errno;
    errno = saved;
    return r;
}

int coil__sys_socket(int domain, int type, int protocol) {
    int saved = errno;
    return sys_result(socket(domain, type | SOCK_CLOEXEC, protocol), saved);
}

int coil__sys_bind(int fd, const struct sockaddr *addr, socklen_t addrlen) {
    int saved = errno;
    return sys_result(bind(fd, addr, addrlen), saved);
}

int coil__sys_listen(int fd, int backlog) {
    int saved = errno;
    return sys_result(listen(fd, backlog), saved);
}

int coil__sys_shutdown(int fd, int how) {
    int saved = errno;
    return sys_result(shutdown(fd, how), saved);
}

int coil__sys_close(int fd) {
    int saved = errno;
    return sys_result(close(fd), saved);
}

/* SO_REUSEADDR: a restarted server binds its port while connections of the
 * last run are in TIME_WAIT. */
int coil__sys_listener_options(int fd, int family, bool wildcard, int flags) {
    int saved = errno, err = 0;
    int one = 1, zero = 0;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (family == AF_INET6 && wildcard)
        setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof zero);
    if ((flags & COIL_LISTEN_REUSEPORT) &&
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0)
        err = -errno;
    errno = saved;
    return err;
}

int coil__sys_fd_open(int fd) {
    int saved = errno;
    bool open = fd >= 0 && fcntl(fd, F_GETFD) >= 0;
    errno = saved;
    return open ? 0 : -EBADF;
}

int coil__sys_rw_check(int fd) {
    (void)fd; /* every kind of fd: files, pipes, sockets, ... */
    return 0;
}

ssize_t coil__sys_zero_length(int opcode, int fd, int flags) {
    int saved = errno;
    char dummy = 0;
    ssize_t r;
    switch (opcode) {
    case COIL__OP_RECV: r = recv(fd, &dummy, 0, flags | MSG_DONTWAIT); break;
    case COIL__OP_SEND: r = send(fd, &dummy, 0, flags | MSG_DONTWAIT); break;
    case COIL__OP_READ: r = read(fd, &dummy, 0); break;
    default: r = write(fd, &dummy, 0); break;
    }
    if (r < 0) r = errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -errno;
    errno = saved;
    return r;
}

static int resolve_error(int e, int sys_errno) {
    switch (e) {
    case 0: return 0;
    case EAI_NONAME:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY:
#endif
        return -ENOENT;
    case EAI_AGAIN: return -EAGAIN;
    case EAI_MEMORY: return -ENOMEM;
    case EAI_SYSTEM: return sys_errno ? -sys_errno : -EIO;
    default: return -EINVAL;
    }
}

int coil__sys_getaddrinfo(const char *host, const char *service, const struct addrinfo *hints,
                          struct addrinfo **res) {
    int saved = errno;
    int e = getaddrinfo(host, service, hints, res);
    int err = resolve_error(e, errno); /* EAI_SYSTEM's errno: this thread's */
    errno = saved;
    return err;
}

/* RLIMIT_NOFILE is read each time: the program may have raised it. */
bool coil__sys_fd_beyond_limit(int fd) {
    struct rlimit rl;
    return getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
           (rlim_t)fd >= rl.rlim_cur;
}

enum coil__fd_kind coil__fd_learn_kind(struct coil__fd *f, int fd) {
    int saved = errno;
    int type;
    socklen_t len = sizeof type;
    struct stat st;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0) {
        f->kind = type == SOCK_STREAM ? COIL__FD_STREAM : COIL__FD_SOCKET;
        int proto = 0;
        len = sizeof proto;
        f->tcp = type == SOCK_STREAM &&
                 getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) == 0 && proto == IPPROTO_TCP;
    } else if (errno == ENOTSOCK && fstat(fd, &st) == 0)
        f->kind = S_ISREG(st.st_mode) || S_ISBLK(st.st_mode) ? COIL__FD_FILE : COIL__FD_OTHER;
    errno = saved;
    return (enum coil__fd_kind)f->kind;
}

ssize_t coil__prw(bool write, int fd, const struct iovec *iov, int iovcnt, int64_t off,
                  int rwflags) {
    struct coil__tasklet *t;
    int err = coil__enter(&t);
    if (err) return err;
    if (fd < 0) return -EBADF;
    struct coil__op op = {.fd = fd,
                          .opcode = (uint8_t)(write ? COIL__OP_PWRITEV : COIL__OP_PREADV),
                          .deadline = COIL_FOREVER};
    op.u.rw.iov = iov;
    op.u.rw.iovcnt = iovcnt;
    op.u.rw.rwflags = rwflags;
    op.u.rw.off = off;
    return coil__op_run(t, &op);
}
