/*
 * The epoll backend. For now it only waits: until the earliest timer, or
 * until a wake-up source (the dump signal's eventfd) fires.
 */
#include "internal.h"

#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

struct epoll_backend {
    int epfd;
    bool dump_fd_added;
    bool no_pwait2; /* epoll_pwait2 (Linux 5.11) returned ENOSYS */
};

static int ep_init(struct coil__sched *s) {
    struct epoll_backend *b = calloc(1, sizeof *b);
    if (!b) return -ENOMEM;
    b->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (b->epfd < 0) {
        int err = -errno;
        free(b);
        return err;
    }
    s->backend_data = b;
    return 0;
}

static void ep_fini(struct coil__sched *s) {
    struct epoll_backend *b = s->backend_data;
    close(b->epfd);
    free(b);
    s->backend_data = NULL;
}

static int ep_wait(struct coil__sched *s, int64_t deadline) {
    struct epoll_backend *b = s->backend_data;
    int fd = __atomic_load_n(&coil__dump_wake_fd, __ATOMIC_ACQUIRE);
    if (!b->dump_fd_added && fd >= 0) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLET};
        if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, fd, &ev) == 0) b->dump_fd_added = true;
    }
    struct epoll_event evs[8];
    int n;
    if (deadline < 0) {
        n = epoll_wait(b->epfd, evs, 8, -1);
    } else {
        int64_t rel = deadline - coil_now();
        if (rel < 0) rel = 0;
        n = -1;
        errno = ENOSYS;
        if (!b->no_pwait2) {
            struct timespec ts = {.tv_sec = rel / COIL_SEC, .tv_nsec = rel % COIL_SEC};
            n = (int)syscall(SYS_epoll_pwait2, b->epfd, evs, 8, &ts, NULL, (size_t)0);
            if (n < 0 && errno == ENOSYS) b->no_pwait2 = true;
        }
        if (b->no_pwait2) /* whole milliseconds, rounded up: never wake early and spin */
            n = epoll_wait(b->epfd, evs, 8, (int)((rel + COIL_MSEC - 1) / COIL_MSEC));
    }
    if (n < 0 && errno != EINTR) return -errno;
    return 0;
}

static bool ep_busy(const struct coil__sched *s) {
    (void)s;
    return false;
}

const struct coil__backend_ops coil__backend_epoll = {
    .name = "epoll",
    .init = ep_init,
    .fini = ep_fini,
    .wait = ep_wait,
    .busy = ep_busy,
};
