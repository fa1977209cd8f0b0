/*
 * The io_uring backend.
 *
 * A blocking call queues one SQE whose user_data is its struct coil__op (on
 * the caller's stack) and parks; the scheduler submits everything queued and
 * reaps completions once per round (io_uring_submit_and_get_events, or
 * io_uring_submit_and_wait_timeout when nothing is runnable), and each CQE
 * wakes the owner of the op it names (invariant 2). user_data values that are
 * not ops: 0 for SQEs whose completion means nothing to us (linked timeouts,
 * cancel requests), and the two tags below for the wake-up polls.
 *
 * Kernel features are probed, never assumed: DEFER_TASKRUN+SINGLE_ISSUER
 * (6.1), else COOP_TASKRUN (5.19), else neither; a registered ring fd (5.18);
 * multishot poll (5.13), else re-armed single-shot polls.
 */
#include "internal.h"

#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#if COIL_HAVE_VALGRIND_H
#include <valgrind/memcheck.h>
#else
#define VALGRIND_MAKE_MEM_DEFINED(p, n) ((void)(p), (void)(n))
#define RUNNING_ON_VALGRIND             0
#endif

#define TAG_SIGNAL 1 /* the multishot poll on coil__signal_wake_fd */
#define TAG_WAKE   2 /* the multishot poll on this scheduler's wake eventfd */

struct uring {
    struct io_uring ring;
    size_t inflight; /* ops queued or in the kernel whose CQE is not yet seen */
    bool signal_armed, wake_armed;
    bool no_multishot; /* the kernel refused a multishot poll */
};

static int ur_init(struct coil__sched *s) {
    struct uring *u = calloc(1, sizeof *u);
    if (!u) return -ENOMEM;
    static const unsigned tries[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_COOP_TASKRUN,
        0,
    };
    int err = -EINVAL;
    for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        p.flags = tries[i] | IORING_SETUP_CQSIZE;
        p.cq_entries = 8192; /* the kernel keeps overflowing CQEs (FEAT_NODROP) */
        err = io_uring_queue_init_params(1024, &u->ring, &p);
        if (err != -EINVAL) break; /* only "unknown flag" makes a lesser setup worth trying */
    }
    if (err) {
        free(u);
        return err;
    }
    io_uring_register_ring_fd(&u->ring); /* saves an fd lookup per enter; optional */
    s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (s->wake_fd < 0) {
        err = -errno;
        io_uring_queue_exit(&u->ring);
        free(u);
        return err;
    }
    s->backend_data = u;
    return 0;
}

static void ur_fini(struct coil__sched *s) {
    struct uring *u = s->backend_data;
    COIL_ASSERT(u->inflight == 0, "no operation is in flight when the scheduler ends");
    io_uring_queue_exit(&u->ring); /* also cancels the wake-up polls */
    close(s->wake_fd);
    s->wake_fd = -1;
    free(u);
    s->backend_data = NULL;
}

static struct io_uring_sqe *get_sqe(struct uring *u) {
    struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);
    if (!sqe) { /* the submission queue is full: hand it to the kernel */
        io_uring_submit(&u->ring);
        sqe = io_uring_get_sqe(&u->ring);
    }
    COIL_ASSERT(sqe, "an SQE is free right after a submit");
    return sqe;
}

static short events_of(const struct coil__op *op) {
    switch (op->opcode) {
    case COIL__OP_READ:
    case COIL__OP_RECV:
    case COIL__OP_RECVMSG:
    case COIL__OP_ACCEPT: return POLLIN;
    case COIL__OP_POLL: return op->u.poll.events;
    default: return POLLOUT;
    }
}

static void prep(struct uring *u, struct coil__op *op) {
    /* Two SQEs when a linked timeout follows: never split them over a submit. */
    if (op->deadline >= 0 && io_uring_sq_space_left(&u->ring) < 2) io_uring_submit(&u->ring);
    struct io_uring_sqe *sqe = get_sqe(u);
    if (op->polling) {
        io_uring_prep_poll_add(sqe, op->fd, (unsigned)events_of(op));
    } else {
        switch (op->opcode) {
        case COIL__OP_READ:
            io_uring_prep_read(sqe, op->fd, op->u.io.buf, (unsigned)op->u.io.len, (uint64_t)-1);
            break;
        case COIL__OP_WRITE:
            io_uring_prep_write(sqe, op->fd, op->u.io.buf, (unsigned)op->u.io.len, (uint64_t)-1);
            break;
        case COIL__OP_RECV:
            io_uring_prep_recv(sqe, op->fd, op->u.io.buf, op->u.io.len, op->u.io.flags);
            break;
        case COIL__OP_SEND:
            io_uring_prep_send(sqe, op->fd, op->u.io.buf, op->u.io.len, op->u.io.flags);
            break;
        case COIL__OP_RECVMSG:
            io_uring_prep_recvmsg(sqe, op->fd, op->u.msg.msg, (unsigned)op->u.msg.flags);
            break;
        case COIL__OP_SENDMSG:
            io_uring_prep_sendmsg(sqe, op->fd, op->u.msg.msg, (unsigned)op->u.msg.flags);
            break;
        case COIL__OP_ACCEPT:
            io_uring_prep_accept(sqe, op->fd, op->u.accept.addr, op->u.accept.addrlen,
                                 SOCK_CLOEXEC);
            break;
        case COIL__OP_CONNECT:
            io_uring_prep_connect(sqe, op->fd, op->u.connect.addr, op->u.connect.addrlen);
            break;
        case COIL__OP_POLL: io_uring_prep_poll_add(sqe, op->fd, (unsigned)op->u.poll.events); break;
        default: COIL_ASSERT(0, "a known opcode");
        }
    }
    io_uring_sqe_set_data(sqe, op);
    if (op->deadline >= 0) {
        /* An absolute CLOCK_MONOTONIC timeout linked to the op: the kernel
         * cancels the op (res -ECANCELED) when it fires. It reads the
         * timespec at submission, which is before op's frame is left. */
        struct __kernel_timespec ts = {.tv_sec = op->deadline / COIL_SEC,
                                       .tv_nsec = op->deadline % COIL_SEC};
        _Static_assert(sizeof ts <= sizeof op->scratch, "the timespec fits in the op");
        memcpy(op->scratch, &ts, sizeof ts);
        sqe->flags |= IOSQE_IO_LINK;
        struct io_uring_sqe *tsqe = get_sqe(u);
        io_uring_prep_link_timeout(tsqe, (struct __kernel_timespec *)(void *)op->scratch,
                                   IORING_TIMEOUT_ABS);
        io_uring_sqe_set_data64(tsqe, 0);
        op->has_timeout = true;
    }
}

static int ur_submit(struct coil__sched *s, struct coil__op *op) {
    struct uring *u = s->backend_data;
    prep(u, op);
    u->inflight++;
    return 0;
}

static void ur_cancel(struct coil__sched *s, struct coil__op *op) {
    struct uring *u = s->backend_data;
    struct io_uring_sqe *sqe = get_sqe(u);
    io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)op, 0);
    io_uring_sqe_set_data64(sqe, 0);
}

/* Valgrind cannot see the kernel write into our buffers (seen with Valgrind
 * 3.19 and plain recv): tell it which bytes a completion defined. */
static void mark_defined(const struct coil__op *op, int res) {
    if (res < 0) return;
    switch (op->opcode) {
    case COIL__OP_READ:
    case COIL__OP_RECV: VALGRIND_MAKE_MEM_DEFINED(op->u.io.buf, (size_t)res); break;
    case COIL__OP_RECVMSG: {
        struct msghdr *m = op->u.msg.msg;
        size_t left = (size_t)res;
        for (size_t i = 0; i < m->msg_iovlen && left; i++) {
            size_t n = m->msg_iov[i].iov_len < left ? m->msg_iov[i].iov_len : left;
            VALGRIND_MAKE_MEM_DEFINED(m->msg_iov[i].iov_base, n);
            left -= n;
        }
        /* The kernel reports the full address length, which may exceed the
         * caller's buffer (the address was truncated): mark what was written. */
        if (m->msg_name)
            VALGRIND_MAKE_MEM_DEFINED(m->msg_name, m->msg_namelen < op->u.msg.namecap
                                                       ? m->msg_namelen
                                                       : op->u.msg.namecap);
        VALGRIND_MAKE_MEM_DEFINED(&m->msg_namelen, sizeof m->msg_namelen);
        if (m->msg_control) VALGRIND_MAKE_MEM_DEFINED(m->msg_control, m->msg_controllen);
        VALGRIND_MAKE_MEM_DEFINED(&m->msg_flags, sizeof m->msg_flags);
        break;
    }
    case COIL__OP_ACCEPT:
        if (op->u.accept.addrlen) {
            VALGRIND_MAKE_MEM_DEFINED(op->u.accept.addrlen, sizeof *op->u.accept.addrlen);
            socklen_t n = *op->u.accept.addrlen < op->u.accept.addrcap ? *op->u.accept.addrlen
                                                                       : op->u.accept.addrcap;
            if (op->u.accept.addr) VALGRIND_MAKE_MEM_DEFINED(op->u.accept.addr, n);
        }
        break;
    default: break;
    }
}

static void arm(struct uring *u, int fd, uint64_t tag) {
    struct io_uring_sqe *sqe = get_sqe(u);
    if (u->no_multishot)
        io_uring_prep_poll_add(sqe, fd, POLLIN);
    else
        io_uring_prep_poll_multishot(sqe, fd, POLLIN);
    io_uring_sqe_set_data64(sqe, tag);
}

static void arm_watches(struct coil__sched *s, struct uring *u) {
    int sigfd = __atomic_load_n(&coil__signal_wake_fd, __ATOMIC_ACQUIRE);
    if (!u->signal_armed && sigfd >= 0) {
        arm(u, sigfd, TAG_SIGNAL);
        u->signal_armed = true;
    }
    if (!u->wake_armed) {
        arm(u, s->wake_fd, TAG_WAKE);
        u->wake_armed = true;
    }
}

static void on_watch(struct coil__sched *s, struct uring *u, struct io_uring_cqe *cqe) {
    bool *armed = cqe->user_data == TAG_SIGNAL ? &u->signal_armed : &u->wake_armed;
    if (cqe->res == -EINVAL && !u->no_multishot) u->no_multishot = true;
    if (!(cqe->flags & IORING_CQE_F_MORE)) *armed = false;
    if (cqe->user_data == TAG_WAKE) {
        uint64_t v;
        ssize_t r = read(s->wake_fd, &v, sizeof v); /* reset it; the jobs are in the list */
        (void)r;
        coil__offload_reap(s);
    }
    /* TAG_SIGNAL: the scheduler reads the signal counters every round. */
}

static void on_cqe(struct coil__sched *s, struct uring *u, struct coil__op *op, int res) {
    u->inflight--;
    if (op->polling) {
        /* Readiness arrived (or the poll failed): now the operation itself.
         * A readiness result (a poll mask) is never the call's result. */
        op->polling = false;
        if (op->interrupt) {
            coil__op_complete(op, op->interrupt);
            return;
        }
        if (res >= 0) {
            op->retried = true;
            prep(u, op);
            u->inflight++;
            return;
        }
    } else if (res == -EAGAIN && op->opcode != COIL__OP_POLL) {
        /* An O_NONBLOCK fd (made outside coil) answers EAGAIN where a
         * blocking one would wait: wait for readiness, then try again. A
         * caller that asked for MSG_DONTWAIT gets its EAGAIN. */
        bool dontwait = (op->opcode == COIL__OP_RECV || op->opcode == COIL__OP_SEND)
                            ? (op->u.io.flags & MSG_DONTWAIT)
                        : (op->opcode == COIL__OP_RECVMSG || op->opcode == COIL__OP_SENDMSG)
                            ? (op->u.msg.flags & MSG_DONTWAIT)
                            : 0;
        if (op->interrupt) {
            coil__op_complete(op, op->interrupt);
            return;
        }
        if (!dontwait) {
            op->polling = true;
            prep(u, op);
            u->inflight++;
            return;
        }
    } else if (res == -EISCONN && op->opcode == COIL__OP_CONNECT && op->retried) {
        res = 0; /* the first attempt started it; readiness says it is done */
    }
    mark_defined(op, res);
    coil__op_complete(op, res);
}

static void reap(struct coil__sched *s, struct uring *u) {
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&u->ring, head, cqe) {
        n++;
        uint64_t ud = cqe->user_data;
        /* 0: nothing to do; LIBURING_UDATA_TIMEOUT: liburing's own timeout
         * SQE on kernels without IORING_FEAT_EXT_ARG (before 5.11). */
        if (ud == 0 || ud == LIBURING_UDATA_TIMEOUT) continue;
        if (ud == TAG_SIGNAL || ud == TAG_WAKE)
            on_watch(s, u, cqe);
        else
            on_cqe(s, u, (struct coil__op *)(uintptr_t)ud, cqe->res);
    }
    io_uring_cq_advance(&u->ring, n);
}

static void ur_poll(struct coil__sched *s) {
    struct uring *u = s->backend_data;
    arm_watches(s, u);
    /* With DEFER_TASKRUN completions are only posted when we enter the
     * kernel, so a round with work in flight costs one system call; a round
     * without any costs none. */
    if (u->inflight || io_uring_sq_ready(&u->ring)) io_uring_submit_and_get_events(&u->ring);
    reap(s, u);
}

static int ur_wait(struct coil__sched *s, int64_t deadline) {
    struct uring *u = s->backend_data;
    arm_watches(s, u);
    struct io_uring_cqe *cqe;
    struct __kernel_timespec ts, *tsp = NULL;
    /* Valgrind 3.19 does not know that io_uring_enter blocks and keeps its
     * big lock while a thread waits in it (KDE bug 463859): the offload
     * workers would never run. Under Valgrind, block in ppoll on the ring fd
     * instead (it releases the lock), in slices of at most 10 ms, then reap
     * without blocking. */
    if (RUNNING_ON_VALGRIND) {
        int64_t rel = deadline < 0 ? 10 * COIL_MSEC : deadline - coil_now();
        if (rel > 10 * COIL_MSEC) rel = 10 * COIL_MSEC;
        if (rel < 0) rel = 0;
        io_uring_submit(&u->ring);
        struct pollfd p = {.fd = u->ring.ring_fd, .events = POLLIN};
        struct timespec pts = {.tv_sec = 0, .tv_nsec = rel};
        ppoll(&p, 1, &pts, NULL);
        io_uring_submit_and_get_events(&u->ring);
        reap(s, u);
        return 0;
    }
    if (deadline >= 0) {
        int64_t rel = deadline - coil_now();
        if (rel < 0) rel = 0;
        ts.tv_sec = rel / COIL_SEC;
        ts.tv_nsec = rel % COIL_SEC;
        tsp = &ts;
    }
    int r = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, tsp, NULL);
    if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN && r != -EBUSY) return r;
    reap(s, u);
    return 0;
}

static bool ur_busy(const struct coil__sched *s) {
    const struct uring *u = s->backend_data;
    return u->inflight > 0 || s->offload_pending > 0;
}

static void ur_flush(struct coil__sched *s) {
    struct uring *u = s->backend_data;
    if (io_uring_sq_ready(&u->ring)) io_uring_submit(&u->ring);
}

const struct coil__backend_ops coil__backend_uring = {
    .name = "io_uring",
    .init = ur_init,
    .fini = ur_fini,
    .submit = ur_submit,
    .cancel = ur_cancel,
    .poll = ur_poll,
    .wait = ur_wait,
    .busy = ur_busy,
    .flush = ur_flush,
};
