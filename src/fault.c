/*
 * Fault injection: the twins of src/fault.h (test-only builds, cmake
 * -DCOIL_FAULT_INJECTION=ON). This file includes no coil header that
 * would turn its own calls of the real functions into twins.
 */
#ifdef COIL_FAULT_INJECTION

#include <errno.h>
#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fault.h"

/* fault.h's macros are not wanted here: the twins call the real ones. */
#undef malloc
#undef calloc
#undef realloc
#undef mmap
#undef mprotect
#undef madvise
#undef socket
#undef accept4
#undef eventfd
#undef epoll_create1
#undef epoll_ctl
#undef pthread_create
#undef io_uring_queue_init_params
#undef io_uring_queue_init
#undef io_uring_submit
#undef io_uring_submit_and_wait_timeout
#undef io_uring_get_sqe
#undef io_uring_submit_and_get_events
#undef io_uring_enter2
#undef pipe2
#undef open
#undef vfork

static const char *const kind_names[COIL__FAULT_KINDS] = {
    [COIL__FAULT_MALLOC] = "malloc",
    [COIL__FAULT_MMAP] = "mmap",
    [COIL__FAULT_MPROTECT] = "mprotect",
    [COIL__FAULT_MADVISE] = "madvise",
    [COIL__FAULT_SOCKET] = "socket",
    [COIL__FAULT_ACCEPT] = "accept",
    [COIL__FAULT_EVENTFD] = "eventfd",
    [COIL__FAULT_EPOLL_CREATE] = "epoll_create",
    [COIL__FAULT_EPOLL_CTL] = "epoll_ctl",
    [COIL__FAULT_THREAD] = "pthread_create",
    [COIL__FAULT_URING_INIT] = "io_uring_setup",
    [COIL__FAULT_URING_SUBMIT] = "io_uring_enter",
    [COIL__FAULT_URING_SQE] = "io_uring_get_sqe",
    [COIL__FAULT_COMPLETION] = "completion",
    [COIL__FAULT_PIPE] = "pipe2",
    [COIL__FAULT_OPEN] = "open",
    [COIL__FAULT_VFORK] = "vfork",
    [COIL__FAULT_CQE] = "cqe",
};

static const struct {
    const char *name;
    int err;
} errnos[] = {
    {"ENOMEM", ENOMEM},
    {"EAGAIN", EAGAIN},
    {"EMFILE", EMFILE},
    {"ENFILE", ENFILE},
    {"ENOBUFS", ENOBUFS},
    {"EPERM", EPERM},
    {"EACCES", EACCES},
    {"EINVAL", EINVAL},
    {"EOPNOTSUPP", EOPNOTSUPP},
    {"ENOSPC", ENOSPC},
    {"EBUSY", EBUSY},
    {"EINTR", EINTR},
    {"ECONNRESET", ECONNRESET},
    {"ECONNABORTED", ECONNABORTED},
    {"EPIPE", EPIPE},
    {"EIO", EIO},
    {"ENOSYS", ENOSYS},
    {"ENODEV", ENODEV},
    {"ECONNREFUSED", ECONNREFUSED},
    {"ETIMEDOUT", ETIMEDOUT},
    {"EBADF", EBADF},
    {"short", COIL__FAULT_SHORT},
};

static struct {
    int kind; /* -1: none */
    long nth;
    int err;
    const char *err_name;
    int log_fd;
    long count[COIL__FAULT_KINDS];
} plan = {.kind = -1, .log_fd = -1};

/* Reads COIL_FAULT and COIL_FAULT_LOG before main (the library's first call
 * may come from a constructor of the program's: a constructor of our own
 * with a priority runs before those of the program). A malformed value
 * stops the process: a sweep that injects nothing would pass for nothing. */
__attribute__((constructor(101))) static void fault_init(void) {
    const char *spec = getenv("COIL_FAULT");
    const char *log = getenv("COIL_FAULT_LOG");
    if (log && *log) plan.log_fd = open(log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (!spec || !*spec) return;
    char kind[32], err[32];
    long nth;
    if (sscanf(spec, "%31[^:]:%ld:%31s", kind, &nth, err) != 3 || nth < 1) goto bad;
    for (int k = 0; k < COIL__FAULT_KINDS; k++)
        if (!strcmp(kind, kind_names[k])) plan.kind = k;
    for (size_t i = 0; i < sizeof errnos / sizeof errnos[0]; i++)
        if (!strcmp(err, errnos[i].name)) {
            plan.err = errnos[i].err;
            plan.err_name = errnos[i].name;
        }
    if (plan.kind < 0 || !plan.err_name) goto bad;
    plan.nth = nth;
    return;
bad:
    fprintf(stderr, "coil: COIL_FAULT=%s: not KIND:N:ERROR\n", spec);
    _exit(125);
}

int coil__fault(enum coil__fault_kind kind, const char *file, int line) {
    long n = __atomic_add_fetch(&plan.count[kind], 1, __ATOMIC_RELAXED);
    if ((int)kind != plan.kind || n != plan.nth) return 0;
    if (plan.log_fd >= 0) {
        char buf[256];
        const char *base = strrchr(file, '/');
        int len = snprintf(buf, sizeof buf, "fault %s %ld %s %s:%d\n", kind_names[kind], n,
                           plan.err_name, base ? base + 1 : file, line);
        if (len > 0 && write(plan.log_fd, buf, (size_t)len) < 0) {
            /* nothing to do: the sweep then sees no injection and says so */
        }
    }
    return plan.err;
}

/* The error for a call that cannot be short: "short" means none. */
static int fail(enum coil__fault_kind kind, const char *file, int line) {
    int e = coil__fault(kind, file, line);
    return e == COIL__FAULT_SHORT ? 0 : e;
}

void *coil__fault_malloc(const char *file, int line, size_t n) {
    int e = fail(COIL__FAULT_MALLOC, file, line);
    if (e) {
        errno = e;
        return NULL;
    }
    return malloc(n);
}

void *coil__fault_calloc(const char *file, int line, size_t n, size_t size) {
    int e = fail(COIL__FAULT_MALLOC, file, line);
    if (e) {
        errno = e;
        return NULL;
    }
    return calloc(n, size);
}

void *coil__fault_realloc(const char *file, int line, void *p, size_t n) {
    int e = fail(COIL__FAULT_MALLOC, file, line);
    if (e) {
        errno = e;
        return NULL;
    }
    return realloc(p, n);
}

#define TWIN_ERRNO(kind, call)                                                                     \
    do {                                                                                           \
        int e_ = fail(kind, file, line);                                                           \
        if (e_) {                                                                                  \
            errno = e_;                                                                            \
            return -1;                                                                             \
        }                                                                                          \
        return call;                                                                               \
    } while (0)

void *coil__fault_mmap(const char *file, int line, void *addr, size_t len, int prot, int flags,
                       int fd, off_t off) {
    int e = fail(COIL__FAULT_MMAP, file, line);
    if (e) {
        errno = e;
        return MAP_FAILED;
    }
    return mmap(addr, len, prot, flags, fd, off);
}

int coil__fault_mprotect(const char *file, int line, void *addr, size_t len, int prot) {
    TWIN_ERRNO(COIL__FAULT_MPROTECT, mprotect(addr, len, prot));
}

int coil__fault_madvise(const char *file, int line, void *addr, size_t len, int advice) {
    TWIN_ERRNO(COIL__FAULT_MADVISE, madvise(addr, len, advice));
}

int coil__fault_socket(const char *file, int line, int domain, int type, int protocol) {
    TWIN_ERRNO(COIL__FAULT_SOCKET, socket(domain, type, protocol));
}

int coil__fault_accept4(const char *file, int line, int fd, struct sockaddr *addr,
                        socklen_t *addrlen, int flags) {
    TWIN_ERRNO(COIL__FAULT_ACCEPT, accept4(fd, addr, addrlen, flags));
}

int coil__fault_eventfd(const char *file, int line, unsigned int initval, int flags) {
    TWIN_ERRNO(COIL__FAULT_EVENTFD, eventfd(initval, flags));
}

int coil__fault_epoll_create1(const char *file, int line, int flags) {
    TWIN_ERRNO(COIL__FAULT_EPOLL_CREATE, epoll_create1(flags));
}

int coil__fault_epoll_ctl(const char *file, int line, int epfd, int op, int fd,
                          struct epoll_event *ev) {
    TWIN_ERRNO(COIL__FAULT_EPOLL_CTL, epoll_ctl(epfd, op, fd, ev));
}

int coil__fault_pthread_create(const char *file, int line, pthread_t *th,
                               const pthread_attr_t *attr, void *(*fn)(void *), void *arg) {
    int e = fail(COIL__FAULT_THREAD, file, line);
    return e ? e : pthread_create(th, attr, fn, arg);
}

int coil__fault_io_uring_queue_init_params(const char *file, int line, unsigned entries,
                                           struct io_uring *ring, struct io_uring_params *p) {
    int e = fail(COIL__FAULT_URING_INIT, file, line);
    return e ? -e : io_uring_queue_init_params(entries, ring, p);
}

int coil__fault_io_uring_queue_init(const char *file, int line, unsigned entries,
                                    struct io_uring *ring, unsigned flags) {
    int e = fail(COIL__FAULT_URING_INIT, file, line);
    return e ? -e : io_uring_queue_init(entries, ring, flags);
}

/* A failed io_uring_enter consumes nothing: the SQEs stay queued, as the
 * kernel leaves them for EBUSY, EAGAIN and EINTR. */
int coil__fault_io_uring_submit(const char *file, int line, struct io_uring *ring) {
    int e = fail(COIL__FAULT_URING_SUBMIT, file, line);
    return e ? -e : io_uring_submit(ring);
}

int coil__fault_io_uring_submit_and_wait_timeout(const char *file, int line, struct io_uring *ring,
                                                 struct io_uring_cqe **cqe, unsigned wait_nr,
                                                 struct __kernel_timespec *ts, sigset_t *sigmask) {
    int e = fail(COIL__FAULT_URING_SUBMIT, file, line);
    return e ? -e : io_uring_submit_and_wait_timeout(ring, cqe, wait_nr, ts, sigmask);
}

int coil__fault_io_uring_submit_and_get_events(const char *file, int line, struct io_uring *ring) {
    int e = fail(COIL__FAULT_URING_SUBMIT, file, line);
    return e ? -e : io_uring_submit_and_get_events(ring);
}

int coil__fault_io_uring_enter2(const char *file, int line, unsigned fd, unsigned to_submit,
                                unsigned min_complete, unsigned flags, sigset_t *sig, size_t sz) {
    int e = fail(COIL__FAULT_URING_SUBMIT, file, line);
    return e ? -e : io_uring_enter2(fd, to_submit, min_complete, flags, sig, sz);
}

int coil__fault_pipe2(const char *file, int line, int fds[2], int flags) {
    TWIN_ERRNO(COIL__FAULT_PIPE, pipe2(fds, flags));
}

int coil__fault_open(const char *file, int line, const char *path, int flags, ...) {
    va_list ap;
    va_start(ap, flags);
    mode_t mode = (flags & (O_CREAT | O_TMPFILE)) ? (mode_t)va_arg(ap, int) : 0;
    va_end(ap);
    TWIN_ERRNO(COIL__FAULT_OPEN, open(path, flags, mode));
}

int coil__fault_errno(enum coil__fault_kind kind, const char *file, int line) {
    int e = fail(kind, file, line);
    if (e) errno = e;
    return e;
}

/* No SQE: the submission queue is full. */
struct io_uring_sqe *coil__fault_io_uring_get_sqe(const char *file, int line,
                                                  struct io_uring *ring) {
    return coil__fault(COIL__FAULT_URING_SQE, file, line) ? NULL : io_uring_get_sqe(ring);
}

#endif
