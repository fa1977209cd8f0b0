/*
 * The epoll backend: the fallback when io_uring cannot be set up (seccomp
 * profiles, kernel.io_uring_disabled, old kernels, qemu-user).
 *
 * Readiness is turned into the same blocking calls as on io_uring. A call
 * first tries its system call without blocking; if that would block, the op
 * stays linked on its fd (struct coil__fd.ops) and the tasklet parks; when
 * epoll reports the fd ready the op is tried again, from the scheduler, and
 * its tasklet woken with the result. So the guarantees of the fd API hold
 * unchanged: kill, timeout and close take a parked op off at once (no system
 * call is in progress for it), and a readiness event of a closed fd never
 * reaches a later file with the same number (the event carries the fd's
 * generation, bumped by coil_close).
 *
 * Registration. Each fd is added to the epoll set once, edge-triggered, for
 * both directions, the first time a call on it has to wait; it is never
 * modified or deleted (close(2) removes it; an event of a registration that
 * outlives its number in a dup is stale by generation). One epoll_ctl per
 * connection, none per message. Edge-triggered is exact here because a call
 * always tries before it parks, except when the last try on the fd found it
 * empty (or full) and no event has come since (rd_idle/wr_idle): then the
 * data that makes it ready must arrive later, and its arrival is an event.
 *
 * Not blocking without changing what the user sees:
 *  - recv/send/recvmsg/sendmsg, and read/write on sockets, pass MSG_DONTWAIT;
 *  - accept, connect, and read/write on pipes, ttys and other non-sockets
 *    set O_NONBLOCK for the duration of each try and then put the fd's flags
 *    back: fds are often shared with other threads and processes (a shell's
 *    terminal), and libraries look at their flags. (libuv, Go and gevent
 *    leave O_NONBLOCK set; coil does not change an fd behind the program's
 *    back, at the price of two fcntl calls per try on a blocking fd.)
 *  - regular files and block devices are always "ready" to epoll (it refuses
 *    them): their reads and writes run on the offload pool, on a dup of the
 *    fd so that a close and reuse of the number cannot redirect them.
 */
#include "internal.h"

#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#if COIL_HAVE_VALGRIND_H
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

#define DATA_WAKE   UINT64_MAX       /* this scheduler's wake eventfd */
#define DATA_SIGNAL (UINT64_MAX - 1) /* the process-wide signal eventfd */
#define MAX_EVENTS  256

/* What the backend keeps of an fd number (the scheduler's struct coil__fd
 * keeps what the fd API needs; its gen names the file in an event).
 * Forgotten in ep_fd_closing, when the number is about to name another
 * file. */
struct ep_fd {
    bool registered; /* in the epoll set (edge-triggered) */
    /* "The last try found nothing to read / no room to write": with an
     * edge-triggered registration the next event says when to try again, so
     * the next call parks without a useless system call. */
    bool rd_idle, wr_idle;
    /* The peer has shut down its side (EPOLLRDHUP) or the fd is in error or
     * hung up: a read (a write) never waits again, and no further event
     * would come to say so, so the fd is never marked idle. */
    bool rd_shut, wr_shut;
};

struct epoll_backend {
    int epfd;
    struct ep_fd *fds; /* by fd number */
    size_t nfds;
    int wake_fd;                /* an eventfd: written by ep_wake from another thread */
    size_t waiting;             /* ops parked (on readiness, the retry list or a job) */
    struct coil__slist retries; /* connects to try again (coil__connect_retry; ep_op.retry) */
    int64_t next_retry;
    bool signal_fd_added;
    bool no_pwait2; /* epoll_pwait2 (Linux 5.11) returned ENOSYS */
};

struct file_job;

/* fd's entry, growing the table as needed; NULL when out of memory. */
static struct ep_fd *ep_fd(struct epoll_backend *b, int fd) {
    if (COIL_LIKELY((size_t)fd < b->nfds)) return &b->fds[fd];
    struct ep_fd *v = coil__fd_table_grow(b->fds, &b->nfds, sizeof *v, fd);
    if (!v) return NULL;
    b->fds = v;
    return &v[fd];
}

/* What the backend keeps of an op, in the op's scratch space. */
struct ep_op {
    struct file_job *job;     /* a regular file's read or write on the offload pool */
    struct coil__slink retry; /* in retries: no readiness event says when to try again */
    size_t got;               /* bytes a MSG_WAITALL recv has received so far */
};
_Static_assert(sizeof(struct ep_op) <= COIL__OP_SCRATCH && _Alignof(struct ep_op) <= 8,
               "epoll's per-op state fits in the op's scratch space");

static inline struct ep_op *ep_op(struct coil__op *op) {
    return (struct ep_op *)(void *)op->scratch;
}

/* The op a retry link belongs to. */
static struct coil__op *retry_op(struct coil__slink *l) {
    struct ep_op *x = coil__container_of(l, struct ep_op, retry);
    return coil__container_of((unsigned char *)x, struct coil__op, scratch);
}

static int ep_init(struct coil__sched *s) {
    struct epoll_backend *b = calloc(1, sizeof *b);
    if (!b) return -ENOMEM;
    b->epfd = epoll_create1(EPOLL_CLOEXEC);
    b->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = DATA_WAKE};
    if (b->epfd < 0 || b->wake_fd < 0 || epoll_ctl(b->epfd, EPOLL_CTL_ADD, b->wake_fd, &ev) != 0) {
        int err = -errno;
        if (b->epfd >= 0) close(b->epfd);
        if (b->wake_fd >= 0) close(b->wake_fd);
        free(b);
        return err;
    }
    /* Valgrind 3.19 does not know epoll_pwait2 (Linux 5.11) and warns of it.
     * ThreadSanitizer intercepts epoll_wait as a blocking call, in which it
     * delivers a signal at once, but not syscall(SYS_epoll_pwait2): a signal
     * that came while the scheduler slept there stayed in TSan's queue until
     * the wait ended (test_dump's idle-scheduler case: no dump within 15 s
     * in 3 runs of 20). Both wait in whole milliseconds instead. */
#if COIL_TSAN
    b->no_pwait2 = true;
#else
    b->no_pwait2 = RUNNING_ON_VALGRIND;
#endif
    s->backend_data = b;
    return 0;
}

static void ep_fini(struct coil__sched *s) {
    struct epoll_backend *b = s->backend_data;
    COIL_ASSERT(b->waiting == 0, "no operation is in flight when the scheduler ends");
    close(b->epfd);
    close(b->wake_fd);
    free(b->fds);
    free(b);
    s->backend_data = NULL;
}

/* ---- one try of an operation -------------------------------------------- */

static bool is_read(const struct coil__op *op) {
    switch (op->opcode) {
    case COIL__OP_READ:
    case COIL__OP_RECV:
    case COIL__OP_RECVMSG:
    case COIL__OP_ACCEPT: return true;
    case COIL__OP_POLL: return op->u.poll.events & POLLIN;
    default: return false;
    }
}

static uint32_t events_of(const struct coil__op *op) {
    if (op->opcode == COIL__OP_POLL) {
        uint32_t e = 0;
        if (op->u.poll.events & POLLIN) e |= EPOLLIN;
        if (op->u.poll.events & POLLPRI) e |= EPOLLPRI;
        if (op->u.poll.events & POLLOUT) e |= EPOLLOUT;
        if (op->u.poll.events & POLLRDHUP) e |= EPOLLRDHUP;
        return e | EPOLLERR | EPOLLHUP; /* poll(2) always reports these */
    }
    return is_read(op) ? EPOLLIN : EPOLLOUT;
}

/* accept, connect, and read/write on non-sockets have no per-call "do not
 * wait" flag: O_NONBLOCK is set for the duration of the call (nb_begin
 * returns the flags to restore, or -1 with errno) and the fd's own flags
 * are put back after it (nb_end keeps errno). */
static int nb_begin(int fd) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) return -1;
    if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) return -1;
    return fl;
}

static void nb_end(int fd, int fl) {
    if (fl & O_NONBLOCK) return;
    int e = errno;
    fcntl(fd, F_SETFL, fl);
    errno = e;
}

enum { TRY_DONE, TRY_WAIT, TRY_RETRY_LATER, TRY_AGAIN /* recvmsg_waitall_once: read more */ };

/* recvmsg with MSG_WAITALL on a stream: as a blocking one, it waits for all
 * the bytes the iovecs hold (or end of stream, or an error). What arrived so
 * far is its ep_op's got; the next try receives into the rest of the iovecs (the
 * address and ancillary data come with the first part). Returns TRY_DONE or
 * TRY_WAIT, or TRY_RETRY_LATER to let the caller report a failed first try
 * (errno set) the usual way. */
static int recvmsg_waitall_once(struct ep_fd *e, struct coil__op *op);

static int recvmsg_waitall(struct ep_fd *e, struct coil__op *op) {
    int st;
    /* A short read does not prove the socket drained: end of stream may be
     * right behind it (see try_op's MSG_WAITALL recv). Read again. */
    while ((st = recvmsg_waitall_once(e, op)) == TRY_AGAIN) {
    }
    return st;
}

static int recvmsg_waitall_once(struct ep_fd *e, struct coil__op *op) {
    struct ep_op *x = ep_op(op);
    struct msghdr *msg = op->u.msg.msg;
    size_t total = 0;
    for (size_t i = 0; i < msg->msg_iovlen; i++)
        total += msg->msg_iov[i].iov_len;
    struct iovec local[16];
    struct msghdr m = *msg;
    if (x->got) {
        size_t skip = x->got, i = 0;
        while (i < msg->msg_iovlen && skip >= msg->msg_iov[i].iov_len)
            skip -= msg->msg_iov[i++].iov_len;
        size_t n = msg->msg_iovlen - i;
        if (n > 16) n = 16; /* enough for any use of it; the rest waits for the next try */
        for (size_t j = 0; j < n; j++)
            local[j] = msg->msg_iov[i + j];
        local[0].iov_base = (char *)local[0].iov_base + skip;
        local[0].iov_len -= skip;
        m.msg_iov = local;
        m.msg_iovlen = n;
        m.msg_name = NULL;
        m.msg_namelen = 0;
        m.msg_control = NULL;
        m.msg_controllen = 0;
    }
    ssize_t r = recvmsg(op->fd, &m, (op->flags | MSG_DONTWAIT) & ~MSG_WAITALL);
    if (!x->got && r >= 0) *msg = m; /* namelen, controllen, flags of the first part */
    if (r > 0) x->got += (size_t)r;
    if (r > 0 && x->got < total) return TRY_AGAIN;
    if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        e->rd_idle = !e->rd_shut;
        if (x->got) return TRY_WAIT;
        return TRY_RETRY_LATER;
    }
    if (r < 0 && !x->got) return TRY_RETRY_LATER;
    op->res = (int)x->got; /* all of it, or end of stream / an error after some */
    return TRY_DONE;
}

/* Tries op once without blocking. TRY_DONE with the result in op->res, or
 * TRY_WAIT when it must wait for readiness (TRY_RETRY_LATER: for time). */
static int try_op(struct coil__fd *f, struct ep_fd *e, struct coil__op *op) {
    int fd = op->fd;
    bool dontwait = op->flags & MSG_DONTWAIT; /* the caller asked for EAGAIN, not a wait */
    /* A short transfer on a stream socket: nothing more to read (or no more
     * room) for now. Not end of stream (r == 0), which stays readable. */
    bool drained = false;
    ssize_t r;
    int k;
    for (;;) {
        switch (op->opcode) {
        case COIL__OP_READ:
        case COIL__OP_WRITE: {
            bool wr = op->opcode == COIL__OP_WRITE;
            k = coil__fd_kind(f, fd);
            if (coil__fd_is_socket(k)) {
                int fl = MSG_DONTWAIT | (wr ? MSG_NOSIGNAL : 0);
                r = wr ? send(fd, op->u.io.buf, op->u.io.len, fl)
                       : recv(fd, op->u.io.buf, op->u.io.len, fl);
                if (r < 0 && errno == ENOTSOCK) { /* the number now names a non-socket */
                    f->kind = COIL__FD_UNKNOWN;
                    continue;
                }
            } else {
                int fl = nb_begin(fd);
                r = fl < 0 ? -1
                    : wr   ? write(fd, op->u.io.buf, op->u.io.len)
                           : read(fd, op->u.io.buf, op->u.io.len);
                if (fl >= 0) nb_end(fd, fl);
            }
            drained = k == COIL__FD_STREAM && f->tcp && r > 0 && (size_t)r < op->u.io.len;
            break;
        }
        case COIL__OP_RECV:
        case COIL__OP_SEND: {
            int fl = op->flags;
            char *buf = (char *)op->u.io.buf + ep_op(op)->got;
            size_t len = op->u.io.len - ep_op(op)->got;
            r = op->opcode == COIL__OP_SEND ? send(fd, buf, len, fl | MSG_DONTWAIT)
                                            : recv(fd, buf, len, fl | MSG_DONTWAIT);
            /* A peek leaves the data in place, and out-of-band data is apart. */
            drained = !(fl & (MSG_PEEK | MSG_OOB)) && r > 0 && (size_t)r < len &&
                      coil__fd_kind(f, fd) == COIL__FD_STREAM && f->tcp;
            if (op->opcode == COIL__OP_RECV && (fl & MSG_WAITALL) && !dontwait &&
                !(fl & MSG_PEEK) && coil__fd_kind(f, fd) == COIL__FD_STREAM) {
                /* Waits for all len bytes, as a blocking recv does; stops
                 * early at end of stream or an error, with what it has. A
                 * short read does not prove the socket drained here: end of
                 * stream may sit right behind the bytes, announced by the
                 * same edge, and no later event would come. Read again
                 * until EAGAIN (then wait), 0 or an error. */
                if (r > 0) ep_op(op)->got += (size_t)r;
                if (r > 0 && ep_op(op)->got < op->u.io.len) continue;
                if (ep_op(op)->got && !(r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))) {
                    op->res = (int)ep_op(op)->got;
                    return TRY_DONE;
                }
            }
            break;
        }
        case COIL__OP_RECVMSG:
        case COIL__OP_SENDMSG: {
            int fl = op->flags;
            if (op->opcode == COIL__OP_RECVMSG && (fl & MSG_WAITALL) && !dontwait &&
                !(fl & MSG_PEEK) && coil__fd_kind(f, fd) == COIL__FD_STREAM) {
                int st = recvmsg_waitall(e, op);
                if (st != TRY_RETRY_LATER) return st;
                r = -1; /* errno set: EAGAIN with nothing received yet, or an error */
                break;
            }
            r = op->opcode == COIL__OP_SENDMSG ? sendmsg(fd, op->u.msg.msg, fl | MSG_DONTWAIT)
                                               : recvmsg(fd, op->u.msg.msg, fl | MSG_DONTWAIT);
            break;
        }
        case COIL__OP_ACCEPT: {
            int fl = nb_begin(fd);
            r = fl < 0 ? -1 : accept4(fd, op->u.accept.addr, op->u.accept.addrlen, SOCK_CLOEXEC);
            if (fl >= 0) nb_end(fd, fl);
            break;
        }
        case COIL__OP_CONNECT:
            if (!op->polling) {
                /* The handshake goes on after the flags are restored. */
                int fl = nb_begin(fd);
                r = fl < 0 ? -1 : connect(fd, op->u.connect.addr, op->u.connect.addrlen);
                if (fl >= 0) nb_end(fd, fl);
                if (r < 0 && errno == EINPROGRESS) {
                    op->polling = true; /* from now on: has it finished? */
                    return TRY_WAIT;
                }
                if (r < 0 && coil__connect_retry(op, -errno)) return TRY_RETRY_LATER;
            } else {
                int soerr = 0;
                socklen_t len = sizeof soerr;
                if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len) < 0) {
                    r = -1;
                } else if (soerr) {
                    errno = soerr;
                    r = -1;
                } else {
                    struct sockaddr_storage peer;
                    socklen_t plen = sizeof peer;
                    r = getpeername(fd, (struct sockaddr *)&peer, &plen);
                    if (r < 0 && errno == ENOTCONN) return TRY_WAIT; /* not yet */
                }
            }
            break;
        case COIL__OP_POLL: {
            struct pollfd p = {.fd = fd, .events = op->u.poll.events};
            r = poll(&p, 1, 0);
            if (r == 0) return TRY_WAIT;
            if (r > 0) r = p.revents;
            break;
        }
        default: COIL_ASSERT(0, "a known opcode"); return TRY_DONE;
        }
        if (r < 0 && errno == EINTR) continue; /* a handler without SA_RESTART */
        break;
    }
    if ((r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) || drained) {
        if (is_read(op))
            e->rd_idle = !e->rd_shut;
        else
            e->wr_idle = !e->wr_shut;
        if (!drained && !dontwait) return TRY_WAIT;
    }
    op->res = r < 0 ? -errno : (int)r;
    return TRY_DONE;
}

/* ---- regular files: the offload pool ------------------------------------ */

/* The system call of a file op, made on fd (op->fd or its dup). */
static ssize_t file_call(const struct coil__op *op, int fd) {
    switch (op->opcode) {
    case COIL__OP_WRITE: return write(fd, op->u.io.buf, op->u.io.len);
    case COIL__OP_PREADV:
        return preadv2(fd, op->u.rw.iov, op->u.rw.iovcnt, (off_t)op->u.rw.off, op->u.rw.rwflags);
    case COIL__OP_PWRITEV:
        return pwritev2(fd, op->u.rw.iov, op->u.rw.iovcnt, (off_t)op->u.rw.off, op->u.rw.rwflags);
    default: return read(fd, op->u.io.buf, op->u.io.len);
    }
}

struct file_job {
    struct coil__job job;
    struct coil__op *op;
    int fd; /* a dup of op->fd, closed when the job is done */
};

static int file_io(void *arg) {
    struct file_job *fj = arg;
    struct coil__op *op = fj->op;
    ssize_t r = file_call(op, fj->fd);
    return r < 0 ? -errno : (int)r;
}

static void file_done(struct coil__job *j) {
    struct file_job *fj = coil__container_of(j, struct file_job, job);
    struct coil__op *op = fj->op;
    struct epoll_backend *b = op->t->sched->backend_data;
    int res = j->result;
    close(fj->fd);
    free(fj);
    ep_op(op)->job = NULL;
    op->done = true;
    b->waiting--;
    coil__op_complete(op, res); /* a kill or close meanwhile keeps the result */
}

/* Starts op on the offload pool. Returns 0, or -errno (nothing started). */
static int start_file_job(struct coil__sched *s, struct coil__op *op) {
    struct file_job *fj = malloc(sizeof *fj);
    if (!fj) return -ENOMEM;
    fj->fd = fcntl(op->fd, F_DUPFD_CLOEXEC, 0);
    if (fj->fd < 0) {
        int err = -errno;
        free(fj);
        return err;
    }
    fj->op = op;
    fj->job = (struct coil__job){.fn = file_io, .arg = fj, .done = file_done};
    int err = coil__offload_start(s, &fj->job);
    if (err) {
        close(fj->fd);
        free(fj);
        return err;
    }
    ep_op(op)->job = fj;
    op->has_timeout = true; /* no deadline: a file's I/O is never "not ready" */
    return 0;
}

/* ---- the backend operations --------------------------------------------- */

/* Adds fd to the epoll set (once per file). Returns 0 or -errno.
 * A readiness wait (coil_wait_fd, coil_install's poll) makes sure first:
 * such waits are made on numbers whose file was closed with close(2) and
 * replaced behind coil's back (libcurl 7.88 closes its resolver's socketpair
 * so, and its next socketpair may get the number), where `registered` is a
 * stale memory of a file that left the set when it was closed. EPOLL_CTL_MOD
 * finds the registration of the file the number names now, or fails with
 * ENOENT: one system call per wait that parks. */
static int watch(struct epoll_backend *b, struct ep_fd *e, const struct coil__fd *f, int fd,
                 bool verify) {
    struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLPRI | EPOLLRDHUP | EPOLLET,
                             .data.u64 = (uint64_t)f->gen << 32 | (uint32_t)fd};
    if (e->registered) {
        if (!verify || epoll_ctl(b->epfd, EPOLL_CTL_MOD, fd, &ev) == 0) return 0;
        if (errno != ENOENT) return -errno;
        e->registered = false;
    }
    if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        /* EEXIST: registered under an older generation (the entry was reset
         * while the file stayed open). */
        if (errno != EEXIST || epoll_ctl(b->epfd, EPOLL_CTL_MOD, fd, &ev) < 0) return -errno;
    }
    e->registered = true;
    return 0;
}

static void finish(struct epoll_backend *b, struct coil__op *op) {
    op->done = true;
    b->waiting--;
    coil__op_complete(op, op->res);
}

static int ep_submit(struct coil__sched *s, struct coil__op *op) {
    struct epoll_backend *b = s->backend_data;
    struct coil__fd *f = &s->fds.v[op->fd]; /* coil__op_run made sure it exists */
    struct ep_fd *e = ep_fd(b, op->fd);
    if (COIL_UNLIKELY(!e)) return -ENOMEM;
    int saved = errno;
    int ret = 1;
    ep_op(op)->job = NULL;
    ep_op(op)->got = 0;
    /* A pread or pwrite (coil__prw) is on a file that takes an offset: its
     * caller made sure. */
    if (op->opcode == COIL__OP_PREADV || op->opcode == COIL__OP_PWRITEV ||
        ((op->opcode == COIL__OP_READ || op->opcode == COIL__OP_WRITE) &&
         coil__fd_kind(f, op->fd) == COIL__FD_FILE)) {
        if (start_file_job(s, op) == 0) {
            b->waiting++;
            errno = saved;
            return 0;
        }
        /* No worker thread or no fd for the dup: do it here (a regular
         * file's read or write does not wait for a peer). */
        ssize_t r = file_call(op, op->fd);
        op->res = r < 0 ? -errno : (int)r;
        errno = saved;
        return 1;
    }
    /* After a try that found nothing, an edge-triggered registration tells
     * when to try again: wait for it without a system call that would only
     * say EAGAIN. (Not for MSG_DONTWAIT, whose caller wants the EAGAIN.) */
    bool dontwait = op->flags & MSG_DONTWAIT;
    bool idle = is_read(op) ? e->rd_idle : e->wr_idle;
    /* A passed deadline gets its one try: an event may be waiting unread. */
    int st = e->registered && idle && !dontwait && op->opcode != COIL__OP_POLL &&
                     !coil__deadline_passed(op->deadline)
                 ? TRY_WAIT
                 : try_op(f, e, op);
    if (st == TRY_WAIT) {
        int err = watch(b, e, f, op->fd, op->opcode == COIL__OP_POLL);
        if (err) {
            op->res = err;
            st = TRY_DONE;
        } else {
            ret = 0;
        }
    } else if (st == TRY_RETRY_LATER) {
        coil__slist_push_front(&b->retries, &ep_op(op)->retry);
        int64_t due = coil_now() + COIL__CONNECT_RETRY_NS;
        if (!b->next_retry || due < b->next_retry) b->next_retry = due;
        ret = 0;
    }
    if (ret == 0) b->waiting++;
    errno = saved;
    return ret;
}

/* Nothing of op is in the kernel (a job excepted): it ends now. */
static void ep_cancel(struct coil__sched *s, struct coil__op *op) {
    struct epoll_backend *b = s->backend_data;
    if (op->done || ep_op(op)->job) return; /* a job cannot be stopped: its end wakes the caller */
    coil__slist_remove(&b->retries, &ep_op(op)->retry);
    /* What a MSG_WAITALL recv has received is returned, not lost. */
    op->res = ep_op(op)->got ? (int)ep_op(op)->got : -ECANCELED;
    finish(b, op);
}

static void run_retries(struct epoll_backend *b) {
    if (coil__slist_empty(&b->retries) || coil_now() < b->next_retry) return;
    struct coil__slist list = b->retries;
    b->retries = (struct coil__slist){0};
    b->next_retry = 0;
    struct coil__slink *l;
    while ((l = coil__slist_pop_front(&list)) != NULL) {
        struct coil__op *op = retry_op(l);
        int st = try_op(&op->t->sched->fds.v[op->fd], &b->fds[op->fd], op);
        if (st == TRY_DONE) {
            finish(b, op);
        } else { /* still full (TRY_WAIT cannot come from a connect's first try) */
            coil__slist_push_front(&b->retries, &ep_op(op)->retry);
            b->next_retry = coil_now() + COIL__CONNECT_RETRY_NS;
        }
    }
}

/* fd is ready (events): try its parked ops again, oldest first. Once a try
 * in one direction finds nothing, the others in that direction would too. */
static void on_ready(struct coil__sched *s, struct epoll_backend *b, uint64_t data,
                     uint32_t events) {
    int fd = (int)(uint32_t)data;
    if ((size_t)fd >= s->fds.len) return;
    if ((size_t)fd >= b->nfds) return; /* never registered */
    struct coil__fd *f = &s->fds.v[fd];
    struct ep_fd *e = &b->fds[fd];
    if (f->gen != (uint32_t)(data >> 32)) return; /* of a file closed since */
    if (events & (EPOLLERR | EPOLLHUP)) {
        events |= EPOLLIN | EPOLLOUT | EPOLLPRI;
        e->rd_shut = e->wr_shut = true;
    }
    if (events & EPOLLRDHUP) e->rd_shut = true;
    if (events & (EPOLLIN | EPOLLPRI | EPOLLRDHUP)) e->rd_idle = false;
    if (events & EPOLLOUT) e->wr_idle = false;
    for (struct coil__link *l = f->ops.last, *prev; l; l = prev) {
        prev = l->prev;
        struct coil__op *op = coil__container_of(l, struct coil__op, fd_link);
        if (op->done || ep_op(op)->job) continue;
        if (!(events_of(op) & events)) continue;
        bool rd = is_read(op);
        if (op->opcode != COIL__OP_POLL && (rd ? e->rd_idle : e->wr_idle)) continue;
        if (try_op(f, e, op) == TRY_DONE) finish(b, op);
    }
}

static void dispatch(struct coil__sched *s, struct epoll_backend *b, struct epoll_event *evs,
                     int n) {
    for (int i = 0; i < n; i++) {
        if (evs[i].data.u64 == DATA_WAKE) {
            uint64_t v;
            ssize_t r = read(b->wake_fd, &v, sizeof v); /* reset it; the jobs are in the list */
            (void)r;
            coil__offload_reap(s);
        } else if (evs[i].data.u64 != DATA_SIGNAL) {
            /* DATA_SIGNAL: the scheduler reads the signal counters every round. */
            on_ready(s, b, evs[i].data.u64, evs[i].events);
        }
    }
}

static void add_signal_fd(struct epoll_backend *b) {
    int fd = __atomic_load_n(&coil__signal_wake_fd, __ATOMIC_ACQUIRE);
    if (!b->signal_fd_added && fd >= 0) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.u64 = DATA_SIGNAL};
        if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, fd, &ev) == 0) b->signal_fd_added = true;
    }
}

static void ep_poll(struct coil__sched *s) {
    struct epoll_backend *b = s->backend_data;
    run_retries(b);
    if (!b->waiting) return; /* no fd is waited on: no system call this round */
    struct epoll_event evs[MAX_EVENTS];
    int n = epoll_wait(b->epfd, evs, MAX_EVENTS, 0);
    if (n > 0) dispatch(s, b, evs, n);
}

static int ep_wait(struct coil__sched *s, int64_t deadline) {
    struct epoll_backend *b = s->backend_data;
    add_signal_fd(b);
    run_retries(b);
    /* A retry that finished woke its tasklet: look, but do not block. */
    if (s->runq.len) deadline = 0;
    if (!coil__slist_empty(&b->retries) && (deadline < 0 || b->next_retry < deadline))
        deadline = b->next_retry;
    struct epoll_event evs[MAX_EVENTS];
    int n;
    if (deadline < 0) {
        n = epoll_wait(b->epfd, evs, MAX_EVENTS, -1);
    } else {
        int64_t rel = deadline - coil_now();
        if (rel < 0) rel = 0;
        n = -1;
        if (!b->no_pwait2) {
            struct timespec ts = {.tv_sec = rel / COIL_SEC, .tv_nsec = rel % COIL_SEC};
            n = (int)syscall(SYS_epoll_pwait2, b->epfd, evs, MAX_EVENTS, &ts, NULL, (size_t)0);
            if (n < 0 && errno == ENOSYS) b->no_pwait2 = true;
        }
        if (b->no_pwait2) /* whole milliseconds, rounded up: never wake early and spin */
            n = epoll_wait(b->epfd, evs, MAX_EVENTS, (int)((rel + COIL_MSEC - 1) / COIL_MSEC));
    }
    if (n < 0) return errno == EINTR ? 0 : -errno;
    dispatch(s, b, evs, n);
    run_retries(b);
    return 0;
}

static bool ep_busy(const struct coil__sched *s) {
    const struct epoll_backend *b = s->backend_data;
    return b->waiting > 0;
}

static void ep_wake(struct coil__sched *s) {
    struct epoll_backend *b = s->backend_data;
    coil__eventfd_post(b->wake_fd);
}

static int ep_probe(void) {
    return 0; /* epoll is in every kernel coil runs on */
}

static void ep_flush(struct coil__sched *s) {
    (void)s; /* nothing is queued: every try is made at once */
}

static void ep_fd_closing(struct coil__sched *s, struct coil__fd *f) {
    struct epoll_backend *b = s->backend_data;
    size_t fd = (size_t)(f - s->fds.v);
    /* The registration goes with the file (its generation ends). */
    if (fd < b->nfds) b->fds[fd] = (struct ep_fd){0};
}

const struct coil__backend_ops coil__backend_epoll = {
    .name = "epoll",
    .probe = ep_probe,
    .init = ep_init,
    .fini = ep_fini,
    .submit = ep_submit,
    .cancel = ep_cancel,
    .poll = ep_poll,
    .wait = ep_wait,
    .busy = ep_busy,
    .wake = ep_wake,
    .flush = ep_flush,
    .fd_closing = ep_fd_closing,
};
