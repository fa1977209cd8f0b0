/*
 * The io_uring backend.
 *
 * A blocking call queues one SQE whose user_data is its struct coil__op (on
 * the caller's stack) and parks; the scheduler submits everything queued and
 * reaps completions once per round (io_uring_submit_and_get_events, or
 * io_uring_submit_and_wait_timeout when nothing is runnable), and each CQE
 * wakes the owner of the op it names (invariant 2). user_data values that are
 * not ops: 0 for SQEs whose completion means nothing to us (cancel
 * requests), and the two tags below for the wake-up polls.
 *
 * Kernel features are probed, never assumed: DEFER_TASKRUN+SINGLE_ISSUER
 * (6.1), else COOP_TASKRUN (5.19), else neither; a registered ring fd (5.18);
 * multishot poll (5.13), else re-armed single-shot polls; multishot accept
 * (5.19), else one accept SQE per call.
 *
 * Multishot accept. A listener that coil_accept waits on gets a record of its
 * own (struct acceptor, on the heap, since it outlives every call): one
 * multishot SQE, user_data = the record | 1, accepts connection after
 * connection. Each new fd goes to the longest-waiting caller, or into the
 * record's queue, which the next call takes from without a system call. The
 * waiting callers are not in the kernel (the SQE is the record's), so a kill,
 * timeout or close takes one off at once. With no caller waiting the queue
 * may grow: at ACCEPT_HOLD fds the multishot is cancelled (and re-armed when
 * the queue is empty and someone waits again), so one scheduler never hoards
 * a shared listener's connections. Closing the listener cancels the SQE; the
 * record is freed at its last CQE (no IORING_CQE_F_MORE), and fds accepted
 * meanwhile are closed.
 */
#include "internal.h"
#include "uring_batch.h"

#include <fcntl.h>
#include <liburing.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#if COIL_HAVE_VALGRIND_H
#include <valgrind/memcheck.h>
#else
#define VALGRIND_MAKE_MEM_DEFINED(p, n) ((void)(p), (void)(n))
#define RUNNING_ON_VALGRIND             0
#endif

#define TAG_SIGNAL 1 /* the multishot poll on coil__signal_wake_fd */
#define TAG_WAKE   2 /* the multishot poll on this scheduler's wake eventfd */
#define TAG_RING   4 /* a wake-up from another ring of the group (IORING_OP_MSG_RING) */
/* The MSG_RING SQE itself carries the target's struct uring | MSG_SENT, and
 * posts a CQE on the sender's ring only when it failed
 * (IOSQE_CQE_SKIP_SUCCESS): the target is then woken through its eventfd. */
#define MSG_SENT    2

#define ACCEPT_HOLD 16 /* queued connections at which a multishot accept stops */

struct acceptor {
    struct coil__link link; /* in the ring's acceptors: every record, freed at the end */
    int fd;
    bool armed;    /* the multishot SQE is in the kernel (until a CQE without F_MORE) */
    bool closed;   /* the listener was closed: free at the last CQE */
    bool plain;    /* this listener answers EAGAIN (O_NONBLOCK): one SQE per call */
    bool stopping; /* a cancel of the SQE was asked for (the queue is full) */
    struct coil__slist waiters; /* the callers waiting (struct ur_op.waiter) */
    int *queue;                 /* accepted fds no caller has taken yet (a ring) */
    size_t qhead, qlen, qcap;
};

/* What the ring keeps of an fd number (the scheduler's struct coil__fd keeps
 * what the fd API needs). Forgotten in ur_fd_closing, when the number is
 * about to name another file. */
struct ur_fd {
    struct acceptor *acceptor; /* the listener's multishot accept, if one was set up */
    bool rd_idle;              /* the last receive emptied it (no IORING_CQE_F_SOCK_NONEMPTY) */
};

struct uring {
    struct io_uring ring;
    size_t inflight; /* ops queued or in the kernel whose CQE is not yet seen,
                      * and callers waiting on a multishot accept */
    int wake_fd;     /* an eventfd: written by ur_wake from another thread */
    bool msg_ring;   /* wake a ring of the group with IORING_OP_MSG_RING (5.18) */
    bool signal_armed, wake_armed;
    bool no_multishot;           /* the kernel refused a multishot poll */
    bool no_multishot_accept;    /* ... or a multishot accept */
    struct coil__list acceptors; /* struct acceptor.link */
    struct ur_fd *fds;           /* the ring's own state of each fd number, by number */
    size_t nfds;
    struct coil__sched *sched;
    bool no_poll_first; /* the kernel refused IORING_RECVSEND_POLL_FIRST (before 5.19) */
    bool min_timeout;   /* the kernel has IORING_FEAT_MIN_TIMEOUT (6.12): waits are
                         * batched unless batch.wait_us is 0 */
    bool ring_fd_registered;
    struct coil__ur_batch batch; /* what a blocking wait asks for (src/io/uring_batch.c) */
#ifdef COIL_FAULT_INJECTION
    /* NOPs standing in for SQEs (set_data), and the result each must give. */
    struct {
        uint64_t ud;
        int res;
    } injected[8];
    unsigned ninjected;
#endif
};

#define IORING_FEAT_MIN_TIMEOUT_ (1U << 15) /* 6.12; not in liburing 2.3's header */

/* What the ring keeps of an op, in the op's scratch space. */
struct ur_op {
    /* A Unix connect's retry delay: the kernel reads it when the timeout SQE
     * is submitted. */
    struct __kernel_timespec delay;
    struct acceptor *acceptor; /* waiting for this listener's multishot accept */
    struct coil__slink waiter; /* in acceptor->waiters */
    bool sleeping;             /* waiting out a retry delay (Unix connect, EAGAIN) */
    bool poll_first;           /* submitted with IORING_RECVSEND_POLL_FIRST */
};
_Static_assert(sizeof(struct ur_op) <= COIL__OP_SCRATCH && _Alignof(struct ur_op) <= 8,
               "io_uring's per-op state fits in the op's scratch space");

/* fd's entry, growing the table as needed (fd is one the scheduler's table
 * has: below RLIMIT_NOFILE); NULL when out of memory. */
static struct ur_fd *ur_fd_grow(struct uring *u, int fd) {
    struct ur_fd *v = coil__fd_table_grow(u->fds, &u->nfds, sizeof *v, fd);
    if (!v) return NULL;
    u->fds = v;
    return &v[fd];
}

static inline struct ur_fd *ur_fd(struct uring *u, int fd) {
    return COIL_LIKELY((size_t)fd < u->nfds) ? &u->fds[fd] : ur_fd_grow(u, fd);
}

static inline struct ur_op *ur_op(struct coil__op *op) {
    return (struct ur_op *)(void *)op->scratch;
}

/* The op a multishot accept's waiter link belongs to. */
static struct coil__op *waiter_op(struct coil__slink *l) {
    struct ur_op *x = coil__container_of(l, struct ur_op, waiter);
    return coil__container_of((unsigned char *)x, struct coil__op, scratch);
}

/* Whether the kernel has IORING_OP_MSG_RING (5.18), unless
 * COIL_URING_MSG_RING=0 asks for the eventfd (a test, an A/B of the two). */
static bool msg_ring_usable(struct io_uring *ring) {
    const char *env = getenv("COIL_URING_MSG_RING");
    if (env && !strcmp(env, "0")) return false;
    struct io_uring_probe *p = io_uring_get_probe_ring(ring);
    if (!p) return false;
    bool ok = io_uring_opcode_supported(p, IORING_OP_MSG_RING);
    io_uring_free_probe(p);
    return ok;
}

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
        if (err != -EINVAL) {
            u->min_timeout = p.features & IORING_FEAT_MIN_TIMEOUT_;
            break; /* only "unknown flag" makes a lesser setup worth trying */
        }
    }
    if (err) {
        free(u);
        return err;
    }
    /* Saves an fd lookup per enter; optional. */
    u->ring_fd_registered = io_uring_register_ring_fd(&u->ring) == 1;
    coil__ur_batch_init(&u->batch);
    u->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (u->wake_fd < 0) {
        err = -errno;
        io_uring_queue_exit(&u->ring);
        free(u);
        return err;
    }
    u->msg_ring = msg_ring_usable(&u->ring);
    u->sched = s;
    s->backend_data = u;
    return 0;
}

static void acceptor_free(struct uring *u, struct acceptor *a);
static void stop_accept(struct uring *u, struct acceptor *a);
static unsigned reap(struct coil__sched *s, struct uring *u);

static void ur_fini(struct coil__sched *s) {
    struct uring *u = s->backend_data;
    COIL_ASSERT(u->inflight == 0, "no operation is in flight when the scheduler ends");
    /* A multishot accept still armed may have installed fds whose CQEs are
     * not reaped yet: cancel each and reap until its last CQE, closing what
     * comes (bounded: the kernel answers a cancel at once). */
    bool armed = false;
    coil__list_each(l, &u->acceptors) {
        struct acceptor *a = coil__container_of(l, struct acceptor, link);
        a->closed = true;
        if (a->armed) {
            armed = true;
            if (!a->stopping) stop_accept(u, a);
        }
    }
    for (int i = 0; armed && i < 50; i++) {
        struct io_uring_cqe *cqe;
        struct __kernel_timespec ts = {.tv_sec = 0, .tv_nsec = 10 * COIL_MSEC};
        io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, &ts, NULL);
        reap(s, u);
        armed = false;
        coil__list_each(l, &u->acceptors) armed |=
            coil__container_of(l, struct acceptor, link)->armed;
    }
    io_uring_queue_exit(&u->ring); /* also cancels the wake-up polls */
    while (!coil__list_empty(&u->acceptors))
        acceptor_free(u, coil__container_of(u->acceptors.first, struct acceptor, link));
    close(u->wake_fd);
    coil__ur_batch_fini(&u->batch);
    free(u->fds);
    free(u);
    s->backend_data = NULL;
}

/* Sets sqe's user_data. A fault-injection build (src/fault.h, kind "cqe")
 * may instead make the SQE a NOP, which reap() reads as the injected error:
 * the request is refused as a kernel without the feature (EINVAL,
 * EOPNOTSUPP) or an O_NONBLOCK fd (EAGAIN) refuses it, before anything was
 * moved. Only for SQEs whose user_data has a single SQE in flight at a time:
 * an operation, a multishot accept, a wake-up poll, a MSG_RING. */
#ifdef COIL_FAULT_INJECTION
#define set_data(u, sqe, ud) set_data_at(u, sqe, ud, __FILE__, __LINE__)
static void set_data_at(struct uring *u, struct io_uring_sqe *sqe, uint64_t ud, const char *file,
                        int line) {
    int err;
    if (u->ninjected < sizeof u->injected / sizeof u->injected[0] &&
        (err = coil__fault(COIL__FAULT_CQE, file, line)) > 0) {
        io_uring_prep_nop(sqe);
        u->injected[u->ninjected].ud = ud;
        u->injected[u->ninjected++].res = -err;
    }
    io_uring_sqe_set_data64(sqe, ud);
}

/* The result a NOP of set_data stands for, or res. */
static int injected_res(struct uring *u, uint64_t ud, int res, unsigned *flags) {
    for (unsigned i = 0; i < u->ninjected; i++) {
        if (u->injected[i].ud != ud) continue;
        res = u->injected[i].res;
        u->injected[i] = u->injected[--u->ninjected];
        *flags = 0; /* the last CQE of its request */
        break;
    }
    return res;
}
#else
#define set_data(u, sqe, ud) io_uring_sqe_set_data64(sqe, ud)
#endif

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
    case COIL__OP_PREADV:
    case COIL__OP_RECV:
    case COIL__OP_RECVMSG:
    case COIL__OP_ACCEPT: return POLLIN;
    case COIL__OP_POLL: return op->u.poll.events;
    default: return POLLOUT;
    }
}

/* A receive on a socket that the last receive left empty (its CQE had no
 * IORING_CQE_F_SOCK_NONEMPTY) will most likely have to wait: ask the kernel
 * to arm its readiness poll first rather than try a receive that finds
 * nothing (5.19; IORING_RECVSEND_POLL_FIRST). Only the order of the kernel's
 * attempts changes, never the result, with two exceptions kept off this path:
 * MSG_DONTWAIT (the kernel would wait instead of answering EAGAIN) and a
 * deadline already passed (the op is owed one real try before its cancel). */
static void poll_first(struct uring *u, struct coil__op *op, struct io_uring_sqe *sqe) {
    ur_op(op)->poll_first = false;
    if (u->no_poll_first || op->retried || (op->flags & MSG_DONTWAIT)) return;
    if (!u->fds[op->fd].rd_idle) return; /* the entry exists: ur_submit made sure */
    if (op->deadline >= 0 && coil__deadline_passed(op->deadline)) return;
    sqe->ioprio |= IORING_RECVSEND_POLL_FIRST;
    ur_op(op)->poll_first = true;
}

static void prep(struct uring *u, struct coil__op *op) {
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
            io_uring_prep_recv(sqe, op->fd, op->u.io.buf, op->u.io.len, op->flags);
            poll_first(u, op, sqe);
            break;
        case COIL__OP_SEND:
            io_uring_prep_send(sqe, op->fd, op->u.io.buf, op->u.io.len, op->flags);
            break;
        case COIL__OP_RECVMSG:
            io_uring_prep_recvmsg(sqe, op->fd, op->u.msg.msg, (unsigned)op->flags);
            poll_first(u, op, sqe);
            break;
        case COIL__OP_SENDMSG:
            io_uring_prep_sendmsg(sqe, op->fd, op->u.msg.msg, (unsigned)op->flags);
            break;
        case COIL__OP_ACCEPT:
            io_uring_prep_accept(sqe, op->fd, op->u.accept.addr, op->u.accept.addrlen,
                                 SOCK_CLOEXEC);
            break;
        case COIL__OP_CONNECT:
            io_uring_prep_connect(sqe, op->fd, op->u.connect.addr, op->u.connect.addrlen);
            break;
        case COIL__OP_POLL: io_uring_prep_poll_add(sqe, op->fd, (unsigned)op->u.poll.events); break;
        case COIL__OP_PREADV:
            io_uring_prep_readv2(sqe, op->fd, op->u.rw.iov, (unsigned)op->u.rw.iovcnt,
                                 (uint64_t)op->u.rw.off, op->u.rw.rwflags);
            break;
        case COIL__OP_PWRITEV:
            io_uring_prep_writev2(sqe, op->fd, op->u.rw.iov, (unsigned)op->u.rw.iovcnt,
                                  (uint64_t)op->u.rw.off, op->u.rw.rwflags);
            break;
        default: COIL_ASSERT(0, "a known opcode");
        }
        if (op->opcode != COIL__OP_POLL) { /* a poll is never refused with these */
            set_data(u, sqe, (uint64_t)(uintptr_t)op);
            return;
        }
    }
    io_uring_sqe_set_data(sqe, op);
}

/* ---- multishot accept (see the top of the file) -------------------------- */

static struct acceptor *acceptor_new(struct uring *u, struct ur_fd *e, int fd) {
    struct acceptor *a = calloc(1, sizeof *a);
    if (!a) return NULL;
    a->fd = fd;
    /* io_uring answers EAGAIN on an O_NONBLOCK listener, which would end the
     * multishot at each empty moment: such a listener gets the plain path. */
    int saved = errno;
    int fl = fcntl(fd, F_GETFL);
    errno = saved;
    a->plain = fl >= 0 && (fl & O_NONBLOCK);
    coil__list_push_front(&u->acceptors, &a->link);
    e->acceptor = a;
    return a;
}

static void acceptor_free(struct uring *u, struct acceptor *a) {
    for (size_t i = 0; i < a->qlen; i++)
        close(a->queue[(a->qhead + i) % a->qcap]);
    coil__list_remove(&u->acceptors, &a->link);
    free(a->queue);
    free(a);
}

static void arm_accept(struct uring *u, struct acceptor *a) {
    struct io_uring_sqe *sqe = get_sqe(u);
    io_uring_prep_multishot_accept(sqe, a->fd, NULL, NULL, SOCK_CLOEXEC);
    set_data(u, sqe, (uint64_t)(uintptr_t)a | 1);
    a->armed = true;
    a->stopping = false;
}

static void stop_accept(struct uring *u, struct acceptor *a) {
    struct io_uring_sqe *sqe = get_sqe(u);
    io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)a | 1, 0);
    io_uring_sqe_set_data64(sqe, 0);
    a->stopping = true;
}

static struct coil__op *waiter_pop(struct acceptor *a) {
    struct coil__slink *l = coil__slist_pop_front(&a->waiters);
    if (!l) return NULL;
    struct coil__op *op = waiter_op(l);
    ur_op(op)->acceptor = NULL;
    return op;
}

static void waiter_remove(struct acceptor *a, struct coil__op *op) {
    coil__slist_remove(&a->waiters, &ur_op(op)->waiter);
    ur_op(op)->acceptor = NULL;
}

static bool queue_push(struct acceptor *a, int fd) {
    if (a->qlen == a->qcap) {
        size_t cap = a->qcap ? a->qcap * 2 : ACCEPT_HOLD * 2;
        int *q = malloc(cap * sizeof *q);
        if (!q) return false;
        for (size_t i = 0; i < a->qlen; i++)
            q[i] = a->queue[(a->qhead + i) % a->qcap];
        free(a->queue);
        a->queue = q;
        a->qcap = cap;
        a->qhead = 0;
    }
    a->queue[(a->qhead + a->qlen) % a->qcap] = fd;
    a->qlen++;
    return true;
}

static int queue_pop(struct acceptor *a) {
    int fd = a->queue[a->qhead];
    a->qhead = (a->qhead + 1) % a->qcap;
    a->qlen--;
    return fd;
}

/* The caller's address, as accept(2) would have written it (the multishot
 * SQE has no room for one address per connection). */
static void fill_addr(const struct coil__op *op, int fd) {
    if (!op->u.accept.addr || !op->u.accept.addrlen) return;
    int saved = errno;
    if (getpeername(fd, op->u.accept.addr, op->u.accept.addrlen) < 0)
        *op->u.accept.addrlen = 0; /* the peer is gone already; the fd is still good */
    errno = saved;
}

/* Each waiting caller gets an accept SQE of its own (this listener, or this
 * kernel, cannot do multishot). They stay counted in inflight. */
static void acceptor_to_plain(struct uring *u, struct acceptor *a) {
    struct coil__op *op;
    while ((op = waiter_pop(a)) != NULL)
        prep(u, op);
}

/* Returns 1 with a queued connection in op->res, 0 when op waits for the
 * multishot's next one, or -1 when the plain path must take it. */
static int accept_submit(struct uring *u, struct coil__op *op) {
    struct ur_fd *e = &u->fds[op->fd];
    struct acceptor *a = e->acceptor;
    if (a && a->qlen) {
        int fd = queue_pop(a);
        fill_addr(op, fd);
        op->res = fd;
        return 1;
    }
    /* A passed deadline still gets one try, which only a plain SQE (tried
     * inline before the timer's cancel reaches the kernel) gives. */
    if (coil__deadline_passed(op->deadline)) return -1;
    if (!a && !(a = acceptor_new(u, e, op->fd))) return -1;
    if (a->plain) return -1;
    ur_op(op)->acceptor = a;
    coil__slist_push_back(&a->waiters, &ur_op(op)->waiter);
    u->inflight++;
    if (!a->armed) arm_accept(u, a);
    return 0;
}

static void on_accept_cqe(struct uring *u, struct acceptor *a, int res, unsigned flags) {
    if (!(flags & IORING_CQE_F_MORE)) a->armed = false;
    if (a->closed) {
        if (res >= 0) close(res);
        if (!a->armed) acceptor_free(u, a);
        return;
    }
    struct coil__op *op;
    if (res >= 0) {
        if ((op = waiter_pop(a)) != NULL) {
            u->inflight--;
            fill_addr(op, res);
            coil__op_complete(op, res);
        } else if (!queue_push(a, res)) {
            close(res); /* no memory to keep it: the peer sees a reset */
        } else if (a->qlen >= ACCEPT_HOLD && a->armed && !a->stopping) {
            stop_accept(u, a);
        }
    } else if (res == -EINVAL || res == -EAGAIN) {
        /* EINVAL from a listening socket: this kernel has no multishot
         * accept (before 5.19). EAGAIN: the listener is O_NONBLOCK now. */
        int saved = errno, listening = 0;
        socklen_t len = sizeof listening;
        if (res == -EINVAL && getsockopt(a->fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 &&
            listening)
            u->no_multishot_accept = true;
        errno = saved;
        a->plain = true;
        acceptor_to_plain(u, a); /* and each gets its own answer */
    } else if (res != -ECANCELED && (op = waiter_pop(a)) != NULL) {
        u->inflight--; /* -EMFILE, -ENFILE, ...: the caller's to see */
        coil__op_complete(op, res);
    }
    if (!a->armed && !coil__slist_empty(&a->waiters) && !a->plain) arm_accept(u, a);
}

static void ur_fd_closing(struct coil__sched *s, struct coil__fd *f) {
    struct uring *u = s->backend_data;
    size_t fd = (size_t)(f - s->fds.v);
    if (fd >= u->nfds) return;
    struct ur_fd *e = &u->fds[fd];
    struct acceptor *a = e->acceptor;
    *e = (struct ur_fd){0};
    if (!a) return; /* its waiters were cancelled before (coil__fd_cancel_ops) */
    while (a->qlen)
        close(queue_pop(a));
    a->closed = true;
    if (!a->armed)
        acceptor_free(u, a);
    else if (!a->stopping)
        stop_accept(u, a); /* freed at its last CQE */
}

/* ---- the backend operations --------------------------------------------- */

static int ur_submit(struct coil__sched *s, struct coil__op *op) {
    struct uring *u = s->backend_data;
    if (COIL_UNLIKELY(!ur_fd(u, op->fd))) return -ENOMEM;
    struct ur_op *x = ur_op(op);
    x->acceptor = NULL;
    x->sleeping = x->poll_first = false;
    if (op->opcode == COIL__OP_ACCEPT && !u->no_multishot_accept) {
        int r = accept_submit(u, op);
        if (r >= 0) return r;
    }
    prep(u, op);
    u->inflight++;
    return 0;
}

static void ur_cancel(struct coil__sched *s, struct coil__op *op) {
    struct uring *u = s->backend_data;
    struct acceptor *a = ur_op(op)->acceptor;
    if (a) { /* waiting for a multishot accept: nothing of its own in the kernel */
        waiter_remove(a, op);
        u->inflight--;
        coil__op_complete(op, -ECANCELED);
        return;
    }
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
    case COIL__OP_PREADV: {
        size_t left = (size_t)res;
        for (int i = 0; i < op->u.rw.iovcnt && left; i++) {
            size_t n = op->u.rw.iov[i].iov_len < left ? op->u.rw.iov[i].iov_len : left;
            VALGRIND_MAKE_MEM_DEFINED(op->u.rw.iov[i].iov_base, n);
            left -= n;
        }
        break;
    }
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
    set_data(u, sqe, tag);
}

static void arm_watches(struct coil__sched *s, struct uring *u) {
    int sigfd = __atomic_load_n(&coil__signal_wake_fd, __ATOMIC_ACQUIRE);
    if (!u->signal_armed && sigfd >= 0) {
        arm(u, sigfd, TAG_SIGNAL);
        u->signal_armed = true;
    }
    if (!u->wake_armed) {
        arm(u, u->wake_fd, TAG_WAKE);
        u->wake_armed = true;
    }
}

static void on_watch(struct coil__sched *s, struct uring *u, uint64_t tag, int res,
                     unsigned flags) {
    bool *armed = tag == TAG_SIGNAL ? &u->signal_armed : &u->wake_armed;
    if (res == -EINVAL && !u->no_multishot) u->no_multishot = true;
    if (!(flags & IORING_CQE_F_MORE)) *armed = false;
    if (tag == TAG_WAKE) {
        uint64_t v;
        ssize_t r = read(u->wake_fd, &v, sizeof v); /* reset it; the jobs are in the list */
        (void)r;
        coil__offload_reap(s);
    }
    /* TAG_SIGNAL: the scheduler reads the signal counters every round. */
}

/* A Unix connect that said EAGAIN waits out the retry delay in a timeout
 * SQE (coil__connect_retry). */
static void retry_later(struct uring *u, struct coil__op *op) {
    struct ur_op *x = ur_op(op);
    x->delay = (struct __kernel_timespec){.tv_sec = 0, .tv_nsec = COIL__CONNECT_RETRY_NS};
    struct io_uring_sqe *sqe = get_sqe(u);
    io_uring_prep_timeout(sqe, &x->delay, 0, 0);
    io_uring_sqe_set_data(sqe, op);
    x->sleeping = true;
    u->inflight++;
}

static void on_cqe(struct coil__sched *s, struct uring *u, struct coil__op *op, int res,
                   unsigned flags) {
    u->inflight--;
    coil__ur_batch_count(&u->batch, op->t);
    if (ur_op(op)->sleeping) {
        /* The retry delay is over (-ETIME), or a kill/close cancelled it. */
        ur_op(op)->sleeping = false;
        if (op->interrupt) {
            coil__op_complete(op, op->interrupt);
        } else if (coil__deadline_passed(op->deadline)) {
            op->interrupt = -ETIMEDOUT;
            coil__op_complete(op, -ETIMEDOUT);
        } else {
            prep(u, op);
            u->inflight++;
        }
        return;
    }
    if (coil__connect_retry(op, res)) {
        if (op->interrupt)
            coil__op_complete(op, op->interrupt);
        else if (coil__deadline_passed(op->deadline))
            coil__op_complete(op, -ETIMEDOUT);
        else
            retry_later(u, op);
        return;
    }
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
        bool dontwait = op->flags & MSG_DONTWAIT;
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
    } else if (op->opcode == COIL__OP_RECV || op->opcode == COIL__OP_RECVMSG) {
        if (res == -EINVAL && ur_op(op)->poll_first && !op->interrupt) {
            /* A kernel before 5.19 rejects the flag: never again, and this
             * receive goes again without it. */
            u->no_poll_first = true;
            prep(u, op);
            u->inflight++;
            return;
        }
        u->fds[op->fd].rd_idle = res > 0 && !(flags & IORING_CQE_F_SOCK_NONEMPTY);
    }
    mark_defined(op, res);
    coil__op_complete(op, res);
}

/* A wake-up sent to target's ring did not arrive (res < 0): it goes through
 * target's eventfd instead; a kernel that refuses the opcode for good never
 * gets it again. Target lives until every scheduler of the group has left
 * its loop, and this runs in the sender's. */
static void msg_ring_failed(struct uring *u, struct uring *target, int res) {
    if (res == -EINVAL || res == -EOPNOTSUPP) u->msg_ring = false;
    coil__eventfd_post(target->wake_fd);
}

/* Handles every posted completion; returns how many there were. */
static unsigned reap(struct coil__sched *s, struct uring *u) {
    struct io_uring_cqe *cqe;
    unsigned head, n = 0;
    io_uring_for_each_cqe(&u->ring, head, cqe) {
        n++;
        uint64_t ud = cqe->user_data;
        /* 0: nothing to do; LIBURING_UDATA_TIMEOUT: liburing's own timeout
         * SQE on kernels without IORING_FEAT_EXT_ARG (before 5.11). */
        if (ud == 0 || ud == LIBURING_UDATA_TIMEOUT) continue;
        int res = cqe->res;
        unsigned flags = cqe->flags;
#ifdef COIL_FAULT_INJECTION
        if (u->ninjected) res = injected_res(u, ud, res, &flags);
#endif
        if (ud == TAG_SIGNAL || ud == TAG_WAKE)
            on_watch(s, u, ud, res, flags);
        else if (ud == TAG_RING)
            continue; /* the loop looks at the inbox every round */
        else if ((ud & 7) == MSG_SENT)
            msg_ring_failed(u, (struct uring *)(uintptr_t)(ud & ~(uint64_t)7), res);
        else if (ud & 1)
            on_accept_cqe(u, (struct acceptor *)(uintptr_t)(ud & ~(uint64_t)1), res, flags);
        else
            on_cqe(s, u, (struct coil__op *)(uintptr_t)ud, res, flags);
    }
    io_uring_cq_advance(&u->ring, n);
    return n;
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

/* Hands the queued SQEs to the kernel's view of the ring and returns how
 * many there are: liburing's own __io_uring_flush_sq, which 2.3 does not
 * export (we call io_uring_enter ourselves for the min-wait argument). */
static unsigned flush_sq(struct uring *u) {
    struct io_uring_sq *sq = &u->ring.sq;
    unsigned tail = sq->sqe_tail;
    if (sq->sqe_head != tail) {
        sq->sqe_head = tail;
        io_uring_smp_store_release(sq->ktail, tail);
    }
    return tail - io_uring_smp_load_acquire(sq->khead);
}

/* io_uring_getevents_arg as of Linux 6.12. liburing 2.3's copy calls the
 * third field "pad", later ones "min_wait_usec": a struct of our own
 * compiles against both. */
struct getevents_arg {
    uint64_t sigmask;
    uint32_t sigmask_sz;
    uint32_t min_wait_usec;
    uint64_t ts;
};
_Static_assert(sizeof(struct getevents_arg) == sizeof(struct io_uring_getevents_arg),
               "the kernel's io_uring_getevents_arg layout");

/* Submits what is queued and waits until want completions are posted, or
 * min_us have passed and at least one is, or the deadline (ts, may be NULL)
 * passes (IORING_FEAT_MIN_TIMEOUT, 6.12). The kernel looks at the deadline
 * only after the minimum wait: min_us must not exceed it (see ur_wait). With
 * no deadline, the call also ends after min_us when nothing came (-ETIME). */
static int enter_min_wait(struct uring *u, unsigned want, unsigned min_us,
                          struct __kernel_timespec *ts) {
    struct getevents_arg arg = {
        .sigmask = 0,
        .sigmask_sz = _NSIG / 8, /* read only with a sigmask; liburing passes the same */
        .min_wait_usec = min_us,
        .ts = (uint64_t)(uintptr_t)ts,
    };
    unsigned flags = IORING_ENTER_GETEVENTS | IORING_ENTER_EXT_ARG;
    int fd = u->ring.ring_fd;
    if (u->ring_fd_registered) {
        flags |= IORING_ENTER_REGISTERED_RING;
        fd = u->ring.enter_ring_fd;
    }
    return io_uring_enter2((unsigned)fd, flush_sq(u), want, flags, (sigset_t *)&arg, sizeof arg);
}

/* Blocks until a completion, a wake-up or the deadline; when the kernel can
 * (IORING_FEAT_MIN_TIMEOUT), until as many completions as the batching policy
 * asks for (src/io/uring_batch.c), held back no longer than batch.wait_us. */
static int ur_wait(struct coil__sched *s, int64_t deadline) {
    struct uring *u = s->backend_data;
    arm_watches(s, u);
    struct io_uring_cqe *cqe;
    struct __kernel_timespec ts, *tsp = NULL;
    /* Valgrind 3.19 does not know that io_uring_enter blocks and keeps its
     * big lock while a thread waits in it (KDE bug 463859): the offload
     * workers would never run. Under Valgrind, block in ppoll on the ring fd
     * instead (it releases the lock), in slices of at most 10 ms, then reap
     * without blocking. ThreadSanitizer runs a signal handler at once only
     * inside a blocking call it intercepts (ppoll is one; io_uring_enter, a
     * raw syscall, is not): a SIGQUIT for coil_dump_on_signal that came
     * while the scheduler slept in io_uring_enter stayed queued until the
     * wait ended (test_dump's idle case: no dump in 15 s, 2 runs of 40).
     * TSan builds wait the same way, in slices of 1 ms: with DEFER_TASKRUN
     * a completion (a MSG_RING wake-up too) is queued as task work, which
     * does not wake a poller of the ring fd, so each slice's end is when
     * such a wait sees it (10 ms slices made test_group 107 s, mostly
     * asleep). */
    if (RUNNING_ON_VALGRIND || COIL_TSAN) {
        const int64_t slice = COIL_TSAN ? COIL_MSEC : 10 * COIL_MSEC;
        int64_t rel = deadline < 0 ? slice : deadline - coil_now();
        if (rel > slice) rel = slice;
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
    coil__ur_batch_roll(&u->batch, s->round_start); /* the ask's cap */
    unsigned want = u->batch.ask < u->inflight ? u->batch.ask : (unsigned)u->inflight;
    /* The minimum wait never runs past the next timer: the kernel would wake
     * at the end of the minimum wait, not at the deadline (a 1 ms sleep would
     * take the whole minimum wait). A deadline under 1 us away gets a plain
     * wait. */
    unsigned min_us = u->batch.wait_us;
    if (deadline >= 0) {
        int64_t rel_us = ((int64_t)ts.tv_sec * COIL_SEC + ts.tv_nsec) / 1000;
        if (rel_us < (int64_t)min_us) min_us = (unsigned)rel_us;
    }
    bool batching = u->min_timeout && u->batch.wait_us;
    if (!batching || want <= 1 || min_us == 0) {
        int r = io_uring_submit_and_wait_timeout(&u->ring, &cqe, 1, tsp, NULL);
        if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN && r != -EBUSY) return r;
        unsigned got = reap(s, u);
        if (batching) coil__ur_batch_adapt(&u->batch, 1, got);
        return 0;
    }
    int r = enter_min_wait(u, want, min_us, tsp);
    if (r < 0 && r != -ETIME && r != -EINTR && r != -EAGAIN && r != -EBUSY) return r;
    coil__ur_batch_adapt(&u->batch, want, reap(s, u));
    return 0;
}

static void ur_describe(const struct coil__sched *s, FILE *out) {
    const struct uring *u = s->backend_data;
    if (COIL_TSAN)
        fprintf(out, "  io_uring: waits not batched (ThreadSanitizer build)\n");
    else if (RUNNING_ON_VALGRIND)
        fprintf(out, "  io_uring: waits not batched (under Valgrind)\n");
    else
        coil__ur_batch_describe(&u->batch, u->min_timeout, out);
}

static bool ur_busy(const struct coil__sched *s) {
    const struct uring *u = s->backend_data;
    return u->inflight > 0;
}

static void ur_wake(struct coil__sched *s) {
    struct uring *u = s->backend_data;
    coil__eventfd_post(u->wake_fd);
}

static void ur_wake_from(struct coil__sched *from, struct coil__sched *to) {
    struct uring *u = from->backend_data, *t = to->backend_data;
    if (!u->msg_ring) {
        coil__eventfd_post(t->wake_fd);
        return;
    }
    /* A CQE on the target ring ends its wait; nothing there to read and
     * reset, unlike the eventfd's poll. Submitted now: the wake-up cannot
     * wait for this scheduler's next round. */
    struct io_uring_sqe *sqe = get_sqe(u);
    io_uring_prep_msg_ring(sqe, t->ring.ring_fd, 0, TAG_RING, 0);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    set_data(u, sqe, (uint64_t)(uintptr_t)t | MSG_SENT);
    io_uring_submit(&u->ring);
}

/* A ring of two entries, set up and torn down: what init's first step needs
 * of the kernel (ENOSYS, EPERM, EACCES where it is absent or forbidden). */
static int ur_probe(void) {
    struct io_uring ring;
    int err = io_uring_queue_init(2, &ring, 0);
    if (!err) io_uring_queue_exit(&ring);
    return err;
}

static void ur_flush(struct coil__sched *s) {
    struct uring *u = s->backend_data;
    if (io_uring_sq_ready(&u->ring)) io_uring_submit(&u->ring);
}

const struct coil__backend_ops coil__backend_uring = {
    .name = "io_uring",
    .probe = ur_probe,
    .init = ur_init,
    .fini = ur_fini,
    .submit = ur_submit,
    .cancel = ur_cancel,
    .poll = ur_poll,
    .wait = ur_wait,
    .busy = ur_busy,
    .wake = ur_wake,
    .wake_from = ur_wake_from,
    .flush = ur_flush,
    .fd_closing = ur_fd_closing,
    .describe = ur_describe,
};
