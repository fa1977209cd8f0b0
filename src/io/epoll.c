/*
 * The epoll backend: the fallback when io_uring cannot be set up (qemu-user,
 * seccomp profiles, kernel.io_uring_disabled, old kernels).
 *
 * Today it only waits: until the earliest timer, a signal (the process-wide
 * signal eventfd) or an offload completion (this scheduler's wake eventfd).
 * Operations on fds are the epoll issue's work: submit answers -EOPNOTSUPP
 * until then, so every fd call fails cleanly with that error here.
 */
#include "internal.h"

#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct epoll_backend {
    int epfd;
    bool signal_fd_added;
    bool no_pwait2; /* epoll_pwait2 (Linux 5.11) returned ENOSYS */
};

static int ep_init(struct coil__sched *s) {
    struct epoll_backend *b = calloc(1, sizeof *b);
    if (!b) return -ENOMEM;
    b->epfd = epoll_create1(EPOLL_CLOEXEC);
    s->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = s->wake_fd};
    if (b->epfd < 0 || s->wake_fd < 0 || epoll_ctl(b->epfd, EPOLL_CTL_ADD, s->wake_fd, &ev) != 0) {
        int err = -errno;
        if (b->epfd >= 0) close(b->epfd);
        if (s->wake_fd >= 0) close(s->wake_fd);
        s->wake_fd = -1;
        free(b);
        return err;
    }
    s->backend_data = b;
    return 0;
}

static void ep_fini(struct coil__sched *s) {
    struct epoll_backend *b = s->backend_data;
    close(b->epfd);
    close(s->wake_fd);
    s->wake_fd = -1;
    free(b);
    s->backend_data = NULL;
}

static int ep_submit(struct coil__sched *s, struct coil__op *op) {
    (void)s;
    (void)op;
    return -EOPNOTSUPP;
}

static void ep_nothing(struct coil__sched *s) {
    (void)s;
}

static void ep_cancel(struct coil__sched *s, struct coil__op *op) {
    (void)s;
    (void)op;
}

static int ep_wait(struct coil__sched *s, int64_t deadline) {
    struct epoll_backend *b = s->backend_data;
    int fd = __atomic_load_n(&coil__signal_wake_fd, __ATOMIC_ACQUIRE);
    if (!b->signal_fd_added && fd >= 0) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLET, .data.fd = fd};
        if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, fd, &ev) == 0) b->signal_fd_added = true;
    }
    struct epoll_event evs[8];
    int n;
    if (deadline < 0) {
        n = epoll_wait(b->epfd, evs, 8, -1);
    } else {
        int64_t rel = deadline - coil_now();
        if (rel < 0) rel = 0;
        n = -1;
        if (!b->no_pwait2) {
            struct timespec ts = {.tv_sec = rel / COIL_SEC, .tv_nsec = rel % COIL_SEC};
            n = (int)syscall(SYS_epoll_pwait2, b->epfd, evs, 8, &ts, NULL, (size_t)0);
            if (n < 0 && errno == ENOSYS) b->no_pwait2 = true;
        }
        if (b->no_pwait2) /* whole milliseconds, rounded up: never wake early and spin */
            n = epoll_wait(b->epfd, evs, 8, (int)((rel + COIL_MSEC - 1) / COIL_MSEC));
    }
    if (n < 0) return errno == EINTR ? 0 : -errno;
    for (int i = 0; i < n; i++) {
        if (evs[i].data.fd != s->wake_fd) continue;
        uint64_t v;
        ssize_t r = read(s->wake_fd, &v, sizeof v);
        (void)r;
        coil__offload_reap(s);
    }
    return 0;
}

static bool ep_busy(const struct coil__sched *s) {
    return s->offload_pending > 0;
}

const struct coil__backend_ops coil__backend_epoll = {
    .name = "epoll",
    .init = ep_init,
    .fini = ep_fini,
    .submit = ep_submit,
    .cancel = ep_cancel,
    .poll = ep_nothing,
    .wait = ep_wait,
    .busy = ep_busy,
    .flush = ep_nothing,
};
