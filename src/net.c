/*
 * The blocking fd API, written once for every platform: each call checks its
 * arguments, builds a struct coil__op in its own frame, hands it to the
 * backend and parks until the completion (coil__op_run), or makes a call
 * that never blocks (socket, bind, listen, shutdown, close). What it asks of
 * the system goes through the per-platform primitives (coil__sys_*:
 * src/unix/net.c, src/win/net.c).
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <netdb.h> /* Windows: ws2tcpip.h, through internal.h */
#endif

/* Linux caps one read/write at this (MAX_RW_COUNT), results are ints, and
 * Winsock takes ULONG lengths. */
#define MAX_IO 0x7ffff000u

/* ---- running operations ------------------------------------------------- */

static void fd_link(struct coil__fd *f, struct coil__op *op) {
    coil__list_push_front(&f->ops, &op->fd_link);
}

static void fd_unlink(struct coil__sched *s, struct coil__op *op) {
    /* The table may have grown while op was parked: index it afresh. */
    coil__list_remove(&s->fds.v[op->fd].ops, &op->fd_link);
}

/* A kill, a timeout or a close interrupts an operation in flight: ask the
 * kernel to cancel it and keep the tasklet parked until the completion comes
 * (the kernel may still be writing into the caller's buffer until then). */
static bool op_unwait(struct coil__tasklet *t, int err) {
    struct coil__op *op = t->wait_obj;
    if (!op->interrupt) {
        op->interrupt = err;
        t->sched->backend->cancel(t->sched, op);
    }
    return false;
}

static void group_done(struct coil__op *op, int res);

void coil__op_complete(struct coil__op *op, int res) {
    op->done = true;
    if (op->group) {
        group_done(op, res);
        return;
    }
    if (op->interrupt) {
        /* Cancelled as asked; an operation that completed first keeps its
         * result, so that received data is never lost. */
        if (res == -ECANCELED || res == -EINTR) res = op->interrupt;
    } else if ((res == -ECANCELED || res == -EINTR) && op->has_timeout) {
        /* The backend's own timeout fired. An op that io_uring runs as a blocking
         * call on a worker thread (a connect on a blocking Unix socket whose
         * listener's backlog is full) is interrupted: -EINTR. */
        res = -ETIMEDOUT;
    }
    coil__wake(op->t, res);
}

void coil__spend_budget(struct coil__tasklet *t) {
    struct coil__sched *s = t->sched;
    if (COIL_UNLIKELY(--s->budget < 0)) {
        coil__runq_push(s, t);
        coil__schedule(s, t);
    }
}

int coil__op_run(struct coil__tasklet *t, struct coil__op *op) {
    struct coil__sched *s = t->sched;
    int err;
    struct coil__fd *f = coil__fd_get(s, op->fd, &err);
    if (!f) return err;
    if (f->timeout >= 0) {
        int64_t now = coil_now();
        int64_t d = f->timeout > INT64_MAX - now ? INT64_MAX : now + f->timeout;
        if (op->deadline < 0 || d < op->deadline) op->deadline = d;
    }
    /* A deadline that has passed already still submits the operation: the
     * kernel tries it once at once, and the timeout (linked, or the timer
     * heap) cancels it right after if it would have to wait. */
    op->t = t;
    op->interrupt = 0;
    op->polling = op->retried = op->has_timeout = op->done = false;
    op->group = NULL;
#ifdef COIL_FAULT_INJECTION
    int fault = coil__fault(COIL__FAULT_COMPLETION, __FILE__, __LINE__);
    if (fault > 0) return -fault; /* its completion: an error, nothing done */
    bool bytes = op->opcode == COIL__OP_READ || op->opcode == COIL__OP_WRITE ||
                 op->opcode == COIL__OP_RECV || op->opcode == COIL__OP_SEND;
    if (fault == COIL__FAULT_SHORT && bytes && op->u.io.len > 1) op->u.io.len /= 2;
#endif
    err = s->backend->submit(s, op);
    if (err) {
        if (err < 0) return err;
        /* Finished at once (epoll: the first try did not have to wait). A
         * tasklet whose every call finishes at once would never let the
         * others run: such calls spend the round's switch budget, and when
         * it is gone the tasklet yields like coil_yield. */
        coil__spend_budget(t);
        return op->res;
    }
    fd_link(f, op);
    int res = coil__park(t, COIL__WAIT_IO, op, 0, op_unwait, op->has_timeout ? -1 : op->deadline);
    fd_unlink(s, op);
    return res;
}

/* ---- waiting on several fds at once ------------------------------------- */

/* Cancels every op of g that has not completed. An epoll op completes inside
 * cancel (re-entering group_done): the caller holds a count of g->pending so
 * that only it can see the count reach zero. */
static void group_cancel_rest(struct coil__opgroup *g) {
    struct coil__sched *s = g->t->sched;
    for (size_t i = 0; i < g->n; i++) {
        struct coil__op *op = &g->ops[i];
        if (op->done || op->interrupt) continue;
        op->interrupt = -ECANCELED;
        s->backend->cancel(s, op);
    }
}

static void group_done(struct coil__op *op, int res) {
    struct coil__opgroup *g = op->group;
    op->res = res;
    if (!g->fired) {
        g->fired = true;
        g->pending++; /* held while the others are cancelled */
        group_cancel_rest(g);
        g->pending--;
    }
    if (--g->pending == 0) coil__wake(g->t, g->interrupt);
}

/* ---- the life of an fd's number (both platforms) ------------------------ */

/* Every op still waiting on f ends with -EBADF (through its completion,
 * which cancel brings about at once or later). */
void coil__fd_cancel_ops(struct coil__sched *s, struct coil__fd *f) {
    coil__list_each(l, &f->ops) {
        struct coil__op *op = coil__container_of(l, struct coil__op, fd_link);
        if (op->interrupt || op->done) continue;
        op->interrupt = -EBADF;
        s->backend->cancel(s, op);
    }
}

/* fd names a file just made (by coil, or by the program behind coil's back):
 * forget what was known of the number. The old file was closed without
 * coil_close, so its waiters end as coil_close would have ended them. */
void coil__fd_fresh(int fd, enum coil__fd_kind kind, bool tcp) {
    struct coil__sched *s = coil__sched_cur;
    int err;
    struct coil__fd *f = s ? coil__fd_get(s, fd, &err) : NULL;
    if (!f) return;
    coil__fd_cancel_ops(s, f);
    s->backend->fd_closing(s, f);
    coil__fd_reset(f);
    f->kind = (uint8_t)kind;
    f->tcp = tcp;
}

/* coil_install's poll and select wait here: POSIX only (it serves only
 * coil_install's wrappers, and Windows has no coil_install; coil_wait_fd's
 * single-fd wait works there on the AFD poll). */
#ifndef _WIN32

static bool group_unwait(struct coil__tasklet *t, int err) {
    struct coil__opgroup *g = t->wait_obj;
    if (g->fired) return false;
    g->fired = true;
    g->interrupt = err;
    g->pending++;
    group_cancel_rest(g);
    /* All completed inside cancel (epoll): the caller wakes t with err. */
    return --g->pending == 0;
}

int coil__wait_fds(const struct pollfd *fds, size_t n, int64_t deadline) {
    struct coil__tasklet *t;
    int err = coil__enter(&t);
    if (err) return err;
    struct coil__sched *s = t->sched;
    struct coil__op local[8];
    struct coil__op *ops = n <= 8 ? local : calloc(n, sizeof *ops);
    if (!ops) return -ENOMEM;
    struct coil__opgroup g = {.t = t, .ops = ops};
    for (size_t i = 0; i < n && !g.fired; i++) {
        if (fds[i].fd < 0) continue;
        struct coil__fd *f = coil__fd_get(s, fds[i].fd, &err);
        if (!f) {
            g.fired = true; /* poll(2) will say POLLNVAL */
            break;
        }
        struct coil__op *op = &ops[g.n];
        *op = (struct coil__op){.t = t, .fd = fds[i].fd, .opcode = COIL__OP_POLL, .deadline = -1};
        op->u.poll.events = (short)(fds[i].events & (POLLIN | POLLPRI | POLLOUT | POLLRDHUP));
        op->group = &g;
        int r = s->backend->submit(s, op);
        if (r != 0) {
            g.fired = true; /* ready now, or it cannot be watched: either way, look */
            break;
        }
        fd_link(f, op);
        g.n++;
        g.pending++;
    }
    int res = 0;
    if (g.fired) {
        /* Something is ready already: take back what was started. */
        g.pending++;
        group_cancel_rest(&g);
        if (--g.pending > 0) coil__park(t, COIL__WAIT_POLL, &g, 0, group_unwait, -1);
    } else if (g.n == 0) { /* nothing to wait on: the deadline, or until killed */
        res = deadline >= 0 ? coil_sleep_until(deadline)
                            : coil__park(t, COIL__WAIT_POLL, &g, 0, NULL, -1);
        if (res == 0) res = -ETIMEDOUT;
    } else {
        res = coil__park(t, COIL__WAIT_POLL, &g, 0, group_unwait, deadline);
    }
    for (size_t i = 0; i < g.n; i++)
        fd_unlink(s, &ops[i]);
    if (ops != local) free(ops);
    return res;
}

#endif /* !_WIN32 */

/* ---- the calls ---------------------------------------------------------- */

/* Entry checks shared by the blocking calls. */
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
    /* A zero-length transfer never waits (a blocking recv(2) of 0 bytes on
     * TCP, or a WSARecv, would wait for data). */
    if (!len) return coil__sys_zero_length(opcode, fd, flags);
    struct coil__op op = {.fd = fd, .opcode = (uint8_t)opcode, .deadline = deadline};
    op.u.io.buf = buf;
    op.u.io.len = len > MAX_IO ? MAX_IO : len;
    op.flags = flags;
    return coil__op_run(t, &op);
}

/* ---- calls that never block --------------------------------------------- */

int coil_socket(int domain, int type, int protocol) {
    int fd = coil__sys_socket(domain, type, protocol);
    if (fd >= 0) {
        bool stream = (type & 0xf) == SOCK_STREAM; /* without SOCK_CLOEXEC and the like */
        bool tcp = stream && (domain == AF_INET || domain == AF_INET6) &&
                   (protocol == 0 || protocol == IPPROTO_TCP);
        coil__fd_fresh(fd, stream ? COIL__FD_STREAM : COIL__FD_SOCKET, tcp);
    }
    return fd;
}

int coil_bind(int fd, const struct sockaddr *addr, socklen_t addrlen) {
    return coil__sys_bind(fd, addr, addrlen);
}

int coil_listen(int fd, int backlog) {
    return coil__sys_listen(fd, backlog);
}

int coil_shutdown(int fd, int how) {
    return coil__sys_shutdown(fd, how);
}

void coil__fd_forget(int fd) {
    struct coil__sched *s = coil__sched_cur;
    if (s && fd >= 0 && (size_t)fd < s->fds.len) {
        /* Wake every waiter at once: cancel its operation; the completion
         * (with -ECANCELED, mapped to -EBADF) wakes it. Then push every queued
         * SQE to the kernel before the number can be reused: a queued SQE
         * names the fd by number until it is submitted. (IOCP: completions
         * find their op by OVERLAPPED pointer, never by socket.) */
        struct coil__fd *f = &s->fds.v[fd];
        coil__fd_cancel_ops(s, f);
        s->backend->fd_closing(s, f);
        s->backend->flush(s);
        coil__fd_reset(f);
    }
}

int coil_close(int fd) {
    coil__fd_forget(fd);
    if (fd < 0) return -EBADF;
    return coil__sys_close(fd);
}

int coil_set_timeout(int fd, int64_t ns) {
    struct coil__sched *s = coil__sched_cur;
    if (!s) return -EPERM;
    int err = coil__sys_fd_open(fd);
    if (err) return err;
    struct coil__fd *f = coil__fd_get(s, fd, &err);
    if (!f) return err;
    f->timeout = ns < 0 ? -1 : ns;
    return 0;
}

/* ---- blocking calls ----------------------------------------------------- */

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
        /* The listener is a stream socket (or SOCK_SEQPACKET, whose
         * kind is learnt on first use). */
        const struct coil__fd *lf = &t->sched->fds.v[fd];
        enum coil__fd_kind k = (enum coil__fd_kind)lf->kind;
        coil__fd_fresh(r, k == COIL__FD_STREAM ? k : COIL__FD_UNKNOWN,
                       k == COIL__FD_STREAM && lf->tcp);
    } else if (r == -EMFILE || r == -ENFILE || r == -ENOBUFS) {
        /* No fd (Windows: no socket) for the connection, which stays queued:
         * a caller that simply tries again would spin. Pause first (see
         * coil.h). */
        int64_t until = coil_now() + 100 * COIL_MSEC;
        if (deadline >= 0 && deadline < until) until = deadline;
        int e = coil_sleep_until(until);
        if (e == -ECANCELED) return e;
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
    return run_io(COIL__OP_SEND, fd, (void *)buf, len, flags | MSG_NOSIGNAL, deadline);
}

ssize_t coil_send(int fd, const void *buf, size_t len, int flags) {
    return run_io(COIL__OP_SEND, fd, (void *)buf, len, flags | MSG_NOSIGNAL, COIL_FOREVER);
}

ssize_t coil_sendall(int fd, const void *buf, size_t len, int flags, int64_t deadline) {
    if (!buf && len) return -EINVAL;
    if (!len) return coil_send_dl(fd, buf, 0, flags, deadline); /* reports the usual errors */
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

ssize_t coil__recvmsg(int fd, struct msghdr *msg, int flags, int64_t deadline) {
    return run_msg(COIL__OP_RECVMSG, fd, msg, flags, deadline);
}

ssize_t coil__sendmsg(int fd, const struct msghdr *msg, int flags, int64_t deadline) {
    return run_msg(COIL__OP_SENDMSG, fd, (struct msghdr *)msg, flags | MSG_NOSIGNAL, deadline);
}

ssize_t coil_recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *addr,
                      socklen_t *addrlen, int64_t deadline) {
    if (!buf && len) return -EINVAL;
    struct iovec iov = {.iov_base = buf, .iov_len = len > MAX_IO ? MAX_IO : len};
    /* No room for the address without its length: none is asked for (a
     * WSARecvFrom would fail on the name with no length). */
    struct msghdr msg = {.msg_name = addr && addrlen ? addr : NULL,
                         .msg_namelen = addr && addrlen ? *addrlen : 0,
                         .msg_iov = &iov,
                         .msg_iovlen = 1};
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
    return run_msg(COIL__OP_SENDMSG, fd, &msg, flags | MSG_NOSIGNAL, deadline);
}

ssize_t coil_read_dl(int fd, void *buf, size_t len, int64_t deadline) {
    int err = coil__sys_rw_check(fd);
    return err ? err : run_io(COIL__OP_READ, fd, buf, len, 0, deadline);
}

ssize_t coil_read(int fd, void *buf, size_t len) {
    return coil_read_dl(fd, buf, len, COIL_FOREVER);
}

/* A write to a socket is a send with MSG_NOSIGNAL, so that a closed peer is
 * -EPIPE and never SIGPIPE. Which fds are sockets is remembered per fd. */
ssize_t coil_write_dl(int fd, const void *buf, size_t len, int64_t deadline) {
    int err = coil__sys_rw_check(fd);
    if (err) return err;
    struct coil__sched *s = coil__sched_cur;
    struct coil__fd *f = s && coil__self() ? coil__fd_get(s, fd, &err) : NULL;
    if (f && coil__fd_is_socket(coil__fd_kind(f, fd))) {
        ssize_t r = run_io(COIL__OP_SEND, fd, (void *)buf, len, MSG_NOSIGNAL, deadline);
        if (r != -ENOTSOCK) return r;
        f = coil__fd_get(s, fd, &err); /* closed and reused by a non-socket */
        if (f) f->kind = COIL__FD_UNKNOWN;
    }
    return run_io(COIL__OP_WRITE, fd, (void *)buf, len, 0, deadline);
}

ssize_t coil_write(int fd, const void *buf, size_t len) {
    return coil_write_dl(fd, buf, len, COIL_FOREVER);
}

/* ---- readiness ---------------------------------------------------------- */

/* One COIL__OP_POLL: its events and its result are poll(2)'s POLL* bits
 * (winsock2's on Windows, whose values differ: the names are what counts). */
int coil_wait_fd(int fd, int events, int64_t deadline) {
    if (!events || (events & ~(COIL_READABLE | COIL_WRITABLE))) return -EINVAL;
    struct coil__tasklet *t;
    int err = enter_io(&t, fd, NULL, 0);
    if (err) return err;
    err = coil__sys_rw_check(fd); /* Windows: sockets only */
    if (err) return err;
    struct coil__op op = {.fd = fd, .opcode = COIL__OP_POLL, .deadline = deadline};
    op.u.poll.events =
        (short)(((events & COIL_READABLE) ? POLLIN : 0) | ((events & COIL_WRITABLE) ? POLLOUT : 0));
    for (;;) {
        int r = coil__op_run(t, &op);
        if (r < 0) return r;
        /* epoll's first try is poll(2), which flags a number that is not
         * open with POLLNVAL where io_uring's poll fails with -EBADF. */
        if (r & POLLNVAL) return -EBADF;
        int ready = ((r & POLLIN) && (events & COIL_READABLE) ? COIL_READABLE : 0) |
                    ((r & POLLOUT) && (events & COIL_WRITABLE) ? COIL_WRITABLE : 0) |
                    (r & POLLHUP ? COIL_HANGUP : 0) | (r & POLLERR ? COIL_ERROR : 0);
        if (ready) return ready;
        /* Nothing asked for is ready (an AFD poll that completed without an
         * event, which no test has seen): wait again, never return 0. */
        op.deadline = deadline;
    }
}

/* ---- names ------------------------------------------------------------- */

struct resolve {
    const char *host, *service;
    struct addrinfo hints, *res;
    int err;
};

static int do_resolve(void *arg) {
    struct resolve *r = arg;
    r->err = coil__sys_getaddrinfo(r->host, r->service, &r->hints, &r->res);
    return 0;
}

/* A literal host and port ("127.0.0.1", "::1"; "8080") need no lookup: the
 * resolver answers one address of one socket type from the strings, with no
 * system call but malloc's (glibc 2.36, checked with strace). So a literal
 * never waits behind slow lookups queued on the offload pool, and a program
 * that only uses literals starts no worker thread. Not for AI_ADDRCONFIG,
 * which hides families the host has no address of, nor several socket types
 * (several entries, which glibc sorts): glibc would then ask the kernel for
 * the host's addresses (netlink), try nscd's socket and connect a UDP socket
 * per entry, all on this thread. A name fails at once and is looked up on
 * the pool. */
int coil__resolve_literal(const char *host, const char *service, const struct addrinfo *hints,
                          struct addrinfo **res) {
    if (!host || !hints || !hints->ai_socktype || (hints->ai_flags & AI_ADDRCONFIG)) return -ENOENT;
    struct addrinfo h = *hints;
    h.ai_flags |= AI_NUMERICHOST | AI_NUMERICSERV;
    return coil__sys_getaddrinfo(host, service, &h, res);
}

/* Resolves on the offload pool; a literal host and service at once.
 * Returns 0 with *res set, or -errno. */
static int resolve(const char *host, const char *service, int type, int flags,
                   struct addrinfo **res) {
    struct coil__tasklet *t;
    int err = coil__enter(&t); /* as coil_offload: -EPERM, -ECANCELED */
    if (err) return err;
    struct resolve r = {.host = host, .service = service};
    r.hints.ai_socktype = type;
    /* A literal says which family it wants: AI_ADDRCONFIG has nothing to
     * hide from it. */
    r.hints.ai_flags = flags & ~AI_ADDRCONFIG;
    if (coil__resolve_literal(host, service, &r.hints, res) == 0) return 0;
    r.hints.ai_flags = flags;
    err = coil_offload(do_resolve, &r);
    if (err) {
        if (r.res) freeaddrinfo(r.res);
        return err;
    }
    if (r.err) return r.err;
    *res = r.res;
    return 0;
}

int coil_dial(const char *host, const char *service, int type, int64_t deadline) {
    if (!host || !service || (type != SOCK_STREAM && type != SOCK_DGRAM)) return -EINVAL;
    struct addrinfo *res;
    int saved = errno;
    int err = resolve(host, service, type, AI_ADDRCONFIG, &res);
    if (err ==
        -ENOENT) /* AI_ADDRCONFIG hides loopback-only names on hosts without other addresses */
        err = resolve(host, service, type, 0, &res);
    errno = saved;
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
    return coil_listen_on_flags(host, service, backlog, 0);
}

int coil_listen_on_flags(const char *host, const char *service, int backlog, int flags) {
    if (!service || (flags & ~COIL_LISTEN_REUSEPORT)) return -EINVAL;
    struct addrinfo *res;
    int saved = errno;
    int err = resolve(host, service, SOCK_STREAM, AI_PASSIVE, &res);
    errno = saved;
    if (err) return err;
    /* With no host, try the IPv6 wildcard first: it also takes IPv4 (dual
     * stack, IPV6_V6ONLY off). Otherwise the resolver's order. */
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
            err = coil__sys_listener_options(fd, ai->ai_family, !host, flags);
            if (!err) err = coil_bind(fd, ai->ai_addr, (socklen_t)ai->ai_addrlen);
            if (!err) err = coil_listen(fd, backlog);
            if (!err) {
                freeaddrinfo(res);
                errno = saved;
                return fd;
            }
            coil_close(fd);
        }
    }
    freeaddrinfo(res);
    errno = saved;
    return err;
}
