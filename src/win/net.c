/*
 * The blocking socket API on Windows: what src/net.c's POSIX half does on
 * Linux, on Winsock. Each blocking call builds a struct coil__op in its own
 * frame and runs it with coil__op_run (src/net.c), which hands it to the
 * IOCP backend (src/io/iocp.c) and parks. An fd is a SOCKET cast to int.
 */
#include "internal.h"

#include <limits.h>
#include <mswsock.h>
#include <stdlib.h>
#include <string.h>

/* Results are ints; Winsock takes ULONG lengths. */
#define MAX_IO 0x7ffff000u

static SOCKET sock(int fd) {
    return (SOCKET)(uintptr_t)(unsigned)fd;
}

static int wsa_error(void) {
    return coil__win_errno((DWORD)WSAGetLastError());
}

/* mingw-w64's mswsock.h has SIO_UDP_CONNRESET but not SIO_UDP_NETRESET (the
 * values are Microsoft's, from the SDK's mstcpip.h). */
#ifndef SIO_UDP_CONNRESET
#define SIO_UDP_CONNRESET _WSAIOW(IOC_VENDOR, 12)
#endif
#ifndef SIO_UDP_NETRESET
#define SIO_UDP_NETRESET _WSAIOW(IOC_VENDOR, 15)
#endif

/* coil_socket and friends are callable outside coil_run: Winsock must be
 * started by then. Started once and never cleaned up (the process's end
 * does that); each coil_run's backend holds a reference of its own. */
static INIT_ONCE wsa_once = INIT_ONCE_STATIC_INIT;
static BOOL CALLBACK wsa_start(PINIT_ONCE once, PVOID param, PVOID *ctx) {
    (void)once;
    (void)param;
    (void)ctx;
    WSADATA wsa;
    return WSAStartup(MAKEWORD(2, 2), &wsa) == 0;
}
static int startup(void) {
    return InitOnceExecuteOnce(&wsa_once, wsa_start, NULL, NULL) ? 0 : -ENOSYS;
}

/* Whether fd is an open socket: 0, or -EBADF. */
static int check_socket(int fd) {
    int type, len = sizeof type;
    if (fd < 0) return -EBADF;
    if (getsockopt(sock(fd), SOL_SOCKET, SO_TYPE, (char *)&type, &len) == 0) return 0;
    return -EBADF;
}

/* ---- fd life ------------------------------------------------------------ */

int coil_socket(int domain, int type, int protocol) {
    int err = startup();
    if (err) return err;
    SOCKET sk = WSASocketW(domain, type, protocol, NULL, 0,
                           WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
    if (sk == INVALID_SOCKET) return wsa_error();
    if (sk > INT_MAX) { /* never seen: handles are small; but an fd is an int */
        closesocket(sk);
        return -EMFILE;
    }
    if (type == SOCK_DGRAM) {
        /* Windows reports an ICMP port unreachable (net unreachable: TTL
         * expired) that answered an earlier sendto to the next receive on
         * the socket, connected or not: WSAECONNRESET (WSAENETRESET). Linux
         * reports them on connected datagram sockets only; an unconnected
         * server socket would otherwise fail a recvfrom because some client
         * went away. Both off; failures ignored (SIO_UDP_NETRESET is not on
         * every Windows; under Wine the
         * host is Linux, whose unconnected sockets never report them anyway). */
        BOOL off = FALSE;
        DWORD bytes;
        WSAIoctl(sk, SIO_UDP_CONNRESET, &off, sizeof off, NULL, 0, &bytes, NULL, NULL);
        WSAIoctl(sk, SIO_UDP_NETRESET, &off, sizeof off, NULL, 0, &bytes, NULL, NULL);
    }
    coil__fd_fresh((int)sk, type == SOCK_STREAM ? COIL__FD_STREAM : COIL__FD_SOCKET,
                   type == SOCK_STREAM);
    return (int)sk;
}

int coil_bind(int fd, const struct sockaddr *addr, socklen_t addrlen) {
    return bind(sock(fd), addr, (int)addrlen) == 0 ? 0 : wsa_error();
}

int coil_listen(int fd, int backlog) {
    return listen(sock(fd), backlog) == 0 ? 0 : wsa_error();
}

int coil_shutdown(int fd, int how) {
    return shutdown(sock(fd), how) == 0 ? 0 : wsa_error();
}

int coil_close(int fd) {
    struct coil__sched *s = coil__sched_cur;
    if (s && fd >= 0 && (size_t)fd < s->fds.len) {
        /* Wake every waiter at once: cancel its operation; the completion
         * (ERROR_OPERATION_ABORTED, mapped to -EBADF) wakes it. Completions
         * find their op by OVERLAPPED pointer, never by socket, so nothing
         * of this socket can reach a later one with the same number. */
        struct coil__fd *f = &s->fds.v[fd];
        coil__fd_cancel_ops(s, f);
        s->backend->fd_closing(s, f);
        s->backend->flush(s);
        coil__fd_reset(f);
    }
    if (fd < 0) return -EBADF;
    return closesocket(sock(fd)) == 0 ? 0 : wsa_error();
}

int coil_set_timeout(int fd, int64_t ns) {
    struct coil__sched *s = coil__sched_cur;
    if (!s) return -EPERM;
    int err = check_socket(fd);
    if (err) return err;
    struct coil__fd *f = coil__fd_get(s, fd, &err);
    if (!f) return err;
    f->timeout = ns < 0 ? -1 : ns;
    return 0;
}

/* ---- blocking calls ----------------------------------------------------- */

static int enter_io(struct coil__tasklet **t, int fd, const void *buf, size_t len) {
    if (!buf && len) return -EINVAL;
    int err = coil__enter(t);
    if (err) return err;
    return fd < 0 ? -EBADF : 0;
}

static ssize_t run_io(int opcode, int fd, void *buf, size_t len, int flags, int64_t deadline) {
    struct coil__tasklet *t;
    int err = enter_io(&t, fd, buf, len);
    if (err) return err;
    /* A zero-length transfer never waits (a zero-byte WSARecv on TCP would
     * wait for data): report whether the socket is open. */
    if (!len) return check_socket(fd);
    struct coil__op op = {.fd = fd, .opcode = (uint8_t)opcode, .deadline = deadline};
    op.u.io.buf = buf;
    op.u.io.len = len > MAX_IO ? MAX_IO : len;
    op.flags = flags;
    return coil__op_run(t, &op);
}

int coil_accept_dl(int fd, struct sockaddr *addr, socklen_t *addrlen, int64_t deadline) {
    struct coil__tasklet *t;
    int err = enter_io(&t, fd, NULL, 0);
    if (err) return err;
    struct coil__op op = {.fd = fd, .opcode = COIL__OP_ACCEPT, .deadline = deadline};
    op.u.accept.addr = addr;
    op.u.accept.addrlen = addrlen;
    op.u.accept.addrcap = addrlen ? *addrlen : 0;
    int r = coil__op_run(t, &op);
    if (r >= 0) {
        coil__fd_fresh(r, COIL__FD_STREAM, true);
    } else if (r == -EMFILE || r == -ENOBUFS) {
        /* No socket for the connection: pause before the caller retries (as on Linux). */
        int64_t until = coil_now() + 100 * COIL_MSEC;
        if (deadline >= 0 && deadline < until) until = deadline;
        if (coil_sleep_until(until) == -ECANCELED) return -ECANCELED;
    }
    return r;
}

int coil_accept(int fd, struct sockaddr *addr, socklen_t *addrlen) {
    return coil_accept_dl(fd, addr, addrlen, COIL_FOREVER);
}

int coil_connect_dl(int fd, const struct sockaddr *addr, socklen_t addrlen, int64_t deadline) {
    struct coil__tasklet *t;
    int err = enter_io(&t, fd, NULL, 0);
    if (err) return err;
    if (!addr) return -EFAULT;
    /* ConnectEx is for connection-oriented sockets only (Microsoft's
     * documentation; Wine happens to accept a datagram socket). A datagram
     * socket's connect only sets its default peer and never blocks: the plain
     * call, its result mapped. */
    int type, tlen = sizeof type;
    if (getsockopt(sock(fd), SOL_SOCKET, SO_TYPE, (char *)&type, &tlen) != 0) return wsa_error();
    if (type != SOCK_STREAM) return connect(sock(fd), addr, (int)addrlen) == 0 ? 0 : wsa_error();
    struct coil__op op = {.fd = fd, .opcode = COIL__OP_CONNECT, .deadline = deadline};
    op.u.connect.addr = addr;
    op.u.connect.addrlen = addrlen;
    return coil__op_run(t, &op);
}

int coil_connect(int fd, const struct sockaddr *addr, socklen_t addrlen) {
    return coil_connect_dl(fd, addr, addrlen, COIL_FOREVER);
}

ssize_t coil_recv_dl(int fd, void *buf, size_t len, int flags, int64_t deadline) {
    return run_io(COIL__OP_RECV, fd, buf, len, flags, deadline);
}

ssize_t coil_recv(int fd, void *buf, size_t len, int flags) {
    return run_io(COIL__OP_RECV, fd, buf, len, flags, COIL_FOREVER);
}

ssize_t coil_send_dl(int fd, const void *buf, size_t len, int flags, int64_t deadline) {
    return run_io(COIL__OP_SEND, fd, (void *)buf, len, flags, deadline);
}

ssize_t coil_send(int fd, const void *buf, size_t len, int flags) {
    return run_io(COIL__OP_SEND, fd, (void *)buf, len, flags, COIL_FOREVER);
}

ssize_t coil_sendall(int fd, const void *buf, size_t len, int flags, int64_t deadline) {
    if (!buf && len) return -EINVAL;
    if (!len) return coil_send_dl(fd, buf, 0, flags, deadline);
    size_t done = 0;
    do {
        ssize_t n = coil_send_dl(fd, (const char *)buf + done, len - done, flags, deadline);
        if (n < 0) return n;
        done += (size_t)n;
    } while (done < len);
    return (ssize_t)len;
}

static ssize_t run_msg(int opcode, int fd, struct msghdr *msg, int flags, int64_t deadline) {
    struct coil__tasklet *t;
    int err = coil__enter(&t);
    if (err) return err;
    if (fd < 0) return -EBADF;
    struct coil__op op = {.fd = fd, .opcode = (uint8_t)opcode, .deadline = deadline};
    op.u.msg.msg = msg;
    op.flags = flags;
    op.u.msg.namecap = msg->msg_namelen;
    return coil__op_run(t, &op);
}

ssize_t coil_recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *addr,
                      socklen_t *addrlen, int64_t deadline) {
    if (!buf && len) return -EINVAL;
    struct iovec iov = {.iov_base = buf, .iov_len = len > MAX_IO ? MAX_IO : len};
    struct msghdr msg = {.msg_name = addr,
                         .msg_namelen = addr && addrlen ? *addrlen : 0,
                         .msg_iov = &iov,
                         .msg_iovlen = 1};
    if (!addrlen) msg.msg_name = NULL;
    ssize_t r = run_msg(COIL__OP_RECVMSG, fd, &msg, flags, deadline);
    if (r >= 0 && addr && addrlen) *addrlen = msg.msg_namelen;
    return r;
}

ssize_t coil_sendto(int fd, const void *buf, size_t len, int flags, const struct sockaddr *addr,
                    socklen_t addrlen, int64_t deadline) {
    if (!buf && len) return -EINVAL;
    struct iovec iov = {.iov_base = (void *)buf, .iov_len = len > MAX_IO ? MAX_IO : len};
    struct msghdr msg = {.msg_name = (void *)addr,
                         .msg_namelen = addr ? addrlen : 0,
                         .msg_iov = &iov,
                         .msg_iovlen = 1};
    return run_msg(COIL__OP_SENDMSG, fd, &msg, flags, deadline);
}

/* Sockets only (see coil.h): another kind of handle is -ENOTSUP, a number
 * that names nothing -EBADF. */
static int rw_check(int fd) {
    if (check_socket(fd) == 0) return 0;
    if (fd < 0) return -EBADF;
    return GetFileType((HANDLE)(uintptr_t)(unsigned)fd) != FILE_TYPE_UNKNOWN ? -ENOTSUP : -EBADF;
}

ssize_t coil_read_dl(int fd, void *buf, size_t len, int64_t deadline) {
    int err = rw_check(fd);
    return err ? err : run_io(COIL__OP_RECV, fd, buf, len, 0, deadline);
}

ssize_t coil_read(int fd, void *buf, size_t len) {
    return coil_read_dl(fd, buf, len, COIL_FOREVER);
}

ssize_t coil_write_dl(int fd, const void *buf, size_t len, int64_t deadline) {
    int err = rw_check(fd);
    return err ? err : run_io(COIL__OP_SEND, fd, (void *)buf, len, 0, deadline);
}

ssize_t coil_write(int fd, const void *buf, size_t len) {
    return coil_write_dl(fd, buf, len, COIL_FOREVER);
}

/* ---- names ------------------------------------------------------------- */

struct resolve {
    const char *host, *service;
    struct addrinfo hints, *res;
    int err;
};

static int do_resolve(void *arg) {
    struct resolve *r = arg;
    r->err = getaddrinfo(r->host, r->service, &r->hints, &r->res);
    return 0;
}

static int resolve_error(int e) {
    switch (e) {
    case 0: return 0;
    case EAI_NONAME:
#if defined(EAI_NODATA) && EAI_NODATA != EAI_NONAME
    case EAI_NODATA:
#endif
        return -ENOENT;
    case EAI_AGAIN: return -EAGAIN;
    case EAI_MEMORY: return -ENOMEM;
    default: return -EINVAL;
    }
}

static int resolve(const char *host, const char *service, int type, int flags,
                   struct addrinfo **res) {
    int err = startup();
    if (err) return err;
    struct resolve r = {.host = host, .service = service};
    r.hints.ai_socktype = type;
    r.hints.ai_flags = flags;
    err = coil_offload(do_resolve, &r);
    if (err) {
        if (r.res) freeaddrinfo(r.res);
        return err;
    }
    if (r.err) return resolve_error(r.err);
    *res = r.res;
    return 0;
}

int coil_dial(const char *host, const char *service, int type, int64_t deadline) {
    if (!host || !service || (type != SOCK_STREAM && type != SOCK_DGRAM)) return -EINVAL;
    struct addrinfo *res;
    int err = resolve(host, service, type, 0, &res);
    if (err) return err;
    err = -EHOSTUNREACH;
    for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
        int fd = coil_socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
        if (fd < 0) {
            err = fd;
            continue;
        }
        err = coil_connect_dl(fd, ai->ai_addr, (socklen_t)ai->ai_addrlen, deadline);
        if (err == 0) {
            freeaddrinfo(res);
            return fd;
        }
        coil_close(fd);
        if (err == -ECANCELED || err == -ETIMEDOUT) break;
    }
    freeaddrinfo(res);
    return err;
}

int coil_listen_on(const char *host, const char *service, int backlog) {
    if (!service) return -EINVAL;
    struct addrinfo *res;
    int err = resolve(host, service, SOCK_STREAM, AI_PASSIVE, &res);
    if (err) return err;
    /* With no host, try the IPv6 wildcard first: it also takes IPv4 (dual
     * stack, once IPV6_V6ONLY is off). Otherwise the resolver's order. */
    err = -EADDRNOTAVAIL;
    for (int pass = 0; pass < 2; pass++) {
        for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
            if (!host && (pass == 0) != (ai->ai_family == AF_INET6)) continue;
            if (host && pass == 1) break;
            int fd = coil_socket(ai->ai_family, ai->ai_socktype, ai->ai_protocol);
            if (fd < 0) {
                err = fd;
                continue;
            }
            /* Not SO_REUSEADDR: on Windows it lets another socket steal a
             * bound port. SO_EXCLUSIVEADDRUSE is the default for servers. */
            DWORD zero = 0;
            if (ai->ai_family == AF_INET6 && !host)
                setsockopt(sock(fd), IPPROTO_IPV6, IPV6_V6ONLY, (const char *)&zero, sizeof zero);
            err = coil_bind(fd, ai->ai_addr, (socklen_t)ai->ai_addrlen);
            if (!err) err = coil_listen(fd, backlog);
            if (!err) {
                freeaddrinfo(res);
                return fd;
            }
            coil_close(fd);
        }
    }
    freeaddrinfo(res);
    return err;
}

/* ---- what Windows does not have ----------------------------------------- */

int coil_install(void) {
    return -ENOTSUP; /* hooking Winsock's imports is another project (see coil.h) */
}

int coil_uninstall(void) {
    return 0;
}
