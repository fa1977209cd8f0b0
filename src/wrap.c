/*
 * coil_install: unmodified blocking code runs concurrently inside tasklets.
 *
 * How calls are diverted. coil_install rewrites, in every loaded object but
 * the C library, the dynamic loader and the object coil itself is in, the
 * GOT slots (the JUMP_SLOT and GLOB_DAT relocations, and function pointers
 * kept in data: R_X86_64_64/R_AARCH64_ABS64) of the libc functions below so
 * that they point at coil's wrappers; coil_uninstall puts the saved values
 * back where the wrappers still are, in objects still loaded. coil's own calls to libc go through
 * its own GOT, which is never patched, so a wrapper reaches the real function by simply calling it.
 * Nothing is exported under libc's names, so a program that never calls coil_install (and has no
 * COIL_INSTALL=1 in its environment) runs exactly as without coil.
 *
 * What a wrapper does. Outside a tasklet (before coil_run, on another thread
 * such as libcurl's resolver thread or an offload worker, in a forked child)
 * it calls the real function at once: libc's exact behaviour. Inside one:
 *  - an fd the program made O_NONBLOCK (asked of the kernel each time: coil
 *    never changes an fd's flags, so F_GETFL is the truth, and fcntl and
 *    ioctl(FIONBIO) need no wrapper) and a call with MSG_DONTWAIT go to libc
 *    as they are: they answer EAGAIN, and the caller then waits in poll or
 *    select, which park the tasklet;
 *  - a blocking call becomes coil's call (parks the tasklet), with
 *    SO_RCVTIMEO/SO_SNDTIMEO as its deadline, and the result in libc's form:
 *    -1 and errno. A timeout is EAGAIN (as the kernel says for SO_RCVTIMEO),
 *    EINPROGRESS for connect; a killed tasklet's call fails with ECANCELED,
 *    which no library retries (EINTR would be retried forever), its sleeps
 *    too; a blocking write/send/writev/sendmsg is complete (short transfers
 *    are continued), as the kernel makes it;
 *  - poll/ppoll/select/pselect/epoll_wait/epoll_pwait with a zero timeout
 *    never park; otherwise they look once (the real call, timeout 0), park on
 *    every fd (coil__wait_fds) until one may be ready or the timeout, and look
 *    again to fill in the result (a spurious wake-up parks again);
 *  - sleep/usleep/nanosleep/clock_nanosleep park the tasklet;
 *  - getaddrinfo/getnameinfo/gethostbyname(_r) run on the offload pool, so
 *    glibc's own code (/etc/hosts, nsswitch, DNS) gives its exact answers
 *    (getaddrinfo of a numeric host and service of one socket type, without
 *    AI_ADDRCONFIG, is answered at once: see w_getaddrinfo);
 *  - close is coil_close on a scheduler's thread (waiters wake with EBADF;
 *    the number's state is reset); socket/socketpair/accept tell the
 *    scheduler that their numbers name new files.
 * Limits, documented in coil.h: objects loaded after coil_install (dlopen)
 * are not diverted until coil_install is called again; the signal mask of
 * ppoll/pselect is not applied (tasklets share their thread's mask).
 */
#include "internal.h"

#include <dlfcn.h>
#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <netdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <limits.h>
#include <unistd.h>

static volatile bool installed;

/* The running tasklet, if the calls of this thread are diverted now. */
static inline struct coil__tasklet *inside(void) {
    return COIL_LIKELY(!installed) ? NULL : coil__self();
}

/* libc's form of a result: -1 with errno, or the value. */
static ssize_t libc_result(ssize_t r) {
    if (r >= 0) return r;
    errno = (int)-r;
    return -1;
}

/* The program's own view: is fd O_NONBLOCK? (-1 if it is not open.) */
static int user_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : (fl & O_NONBLOCK) != 0;
}

/* The deadline SO_RCVTIMEO (SO_SNDTIMEO) sets for a blocking call on fd
 * starting now; COIL_FOREVER if none (or fd is not a socket). */
static int64_t sock_deadline(int fd, int optname) {
    struct timeval tv = {0, 0};
    socklen_t len = sizeof tv;
    int saved = errno;
    int r = getsockopt(fd, SOL_SOCKET, optname, &tv, &len);
    errno = saved;
    if (r != 0 || (tv.tv_sec == 0 && tv.tv_usec == 0)) return COIL_FOREVER;
    return coil_now() + (int64_t)tv.tv_sec * COIL_SEC + (int64_t)tv.tv_usec * 1000;
}

/* A blocking data call's error in libc's words. */
static ssize_t data_result(ssize_t r) {
    if (r == -ETIMEDOUT) r = -EAGAIN; /* SO_RCVTIMEO/SO_SNDTIMEO passed */
    return libc_result(r);
}

/* ---- reads and writes ----------------------------------------------------- */

/* A blocking write or send is complete, as the kernel makes it: short
 * transfers are continued until all is written; an error after some bytes
 * returns the count (as an interrupted write(2) does). */
static ssize_t send_all(int fd, const char *buf, size_t n, int flags, const struct sockaddr *to,
                        socklen_t tolen, bool plain_write) {
    int64_t deadline = sock_deadline(fd, SO_SNDTIMEO);
    size_t done = 0;
    do {
        ssize_t r = plain_write ? coil_write_dl(fd, buf + done, n - done, deadline)
                    : to        ? coil_sendto(fd, buf + done, n - done, flags, to, tolen, deadline)
                                : coil_send_dl(fd, buf + done, n - done, flags, deadline);
        if (r < 0) return done ? (ssize_t)done : data_result(r);
        done += (size_t)r;
    } while (done < n);
    return (ssize_t)done;
}

/* sendmsg/writev on a socket, complete: the iovecs are advanced past what
 * was sent (ancillary data goes with the first part only). */
static ssize_t sendmsg_all(int fd, const struct msghdr *msg, int flags) {
    int64_t deadline = sock_deadline(fd, SO_SNDTIMEO);
    size_t total = 0;
    for (size_t i = 0; i < msg->msg_iovlen; i++)
        total += msg->msg_iov[i].iov_len;
    ssize_t r = coil__sendmsg(fd, msg, flags, deadline);
    if (r < 0 || (size_t)r >= total) return data_result(r);
    struct iovec local[16], *iov = local;
    if (msg->msg_iovlen > 16 && !(iov = malloc(msg->msg_iovlen * sizeof *iov))) return r;
    memcpy(iov, msg->msg_iov, msg->msg_iovlen * sizeof *iov);
    struct msghdr m = *msg;
    m.msg_iov = iov;
    m.msg_control = NULL;
    m.msg_controllen = 0;
    size_t done = (size_t)r;
    while (done < total) {
        /* skip what is sent */
        size_t skip = done;
        m.msg_iov = iov;
        m.msg_iovlen = msg->msg_iovlen;
        memcpy(iov, msg->msg_iov, msg->msg_iovlen * sizeof *iov);
        while (skip && skip >= m.msg_iov->iov_len) {
            skip -= m.msg_iov->iov_len;
            m.msg_iov++;
            m.msg_iovlen--;
        }
        m.msg_iov->iov_base = (char *)m.msg_iov->iov_base + skip;
        m.msg_iov->iov_len -= skip;
        r = coil__sendmsg(fd, &m, flags, deadline);
        if (r < 0) break;
        done += (size_t)r;
    }
    if (iov != local) free(iov);
    return (ssize_t)done;
}

static ssize_t w_read(int fd, void *buf, size_t n) {
    if (!inside() || user_nonblock(fd) != 0) return read(fd, buf, n);
    return data_result(coil_read_dl(fd, buf, n, sock_deadline(fd, SO_RCVTIMEO)));
}

static ssize_t w_write(int fd, const void *buf, size_t n) {
    if (!inside() || user_nonblock(fd) != 0) return write(fd, buf, n);
    if (!buf && n) return data_result(-EFAULT);
    return send_all(fd, buf, n, 0, NULL, 0, true);
}

static ssize_t w_recv(int fd, void *buf, size_t n, int flags) {
    if (!inside() || (flags & MSG_DONTWAIT) || user_nonblock(fd) != 0)
        return recv(fd, buf, n, flags);
    return data_result(coil_recv_dl(fd, buf, n, flags, sock_deadline(fd, SO_RCVTIMEO)));
}

static ssize_t w_send(int fd, const void *buf, size_t n, int flags) {
    if (!inside() || (flags & MSG_DONTWAIT) || user_nonblock(fd) != 0)
        return send(fd, buf, n, flags);
    if (!buf && n) return data_result(-EFAULT);
    return send_all(fd, buf, n, flags, NULL, 0, false);
}

static ssize_t w_recvfrom(int fd, void *buf, size_t n, int flags, struct sockaddr *addr,
                          socklen_t *addrlen) {
    if (!inside() || (flags & MSG_DONTWAIT) || user_nonblock(fd) != 0)
        return recvfrom(fd, buf, n, flags, addr, addrlen);
    return data_result(
        coil_recvfrom(fd, buf, n, flags, addr, addrlen, sock_deadline(fd, SO_RCVTIMEO)));
}

static ssize_t w_sendto(int fd, const void *buf, size_t n, int flags, const struct sockaddr *addr,
                        socklen_t addrlen) {
    if (!inside() || (flags & MSG_DONTWAIT) || user_nonblock(fd) != 0)
        return sendto(fd, buf, n, flags, addr, addrlen);
    if (!buf && n) return data_result(-EFAULT);
    return send_all(fd, buf, n, flags, addr, addrlen, false);
}

static ssize_t w_recvmsg(int fd, struct msghdr *msg, int flags) {
    if (!inside() || (flags & MSG_DONTWAIT) || user_nonblock(fd) != 0)
        return recvmsg(fd, msg, flags);
    return data_result(coil__recvmsg(fd, msg, flags, sock_deadline(fd, SO_RCVTIMEO)));
}

static ssize_t w_sendmsg(int fd, const struct msghdr *msg, int flags) {
    if (!inside() || (flags & MSG_DONTWAIT) || user_nonblock(fd) != 0)
        return sendmsg(fd, msg, flags);
    return sendmsg_all(fd, msg, flags);
}

/* readv/writev: on a socket, recvmsg/sendmsg; on anything else, wait until
 * the fd is ready and make the call (a regular file is always ready). */
static ssize_t vector_io(int fd, const struct iovec *iov, int iovcnt, bool wr) {
    struct coil__sched *s = coil__sched_cur;
    int err;
    struct coil__fd *f = coil__fd_get(s, fd, &err);
    if (iovcnt < 0 || iovcnt > IOV_MAX) return data_result(-EINVAL);
    if (f && coil__fd_is_socket(coil__fd_kind(f, fd))) {
        struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};
        return wr ? sendmsg_all(fd, &msg, 0)
                  : data_result(coil__recvmsg(fd, &msg, 0, sock_deadline(fd, SO_RCVTIMEO)));
    }
    if (f && wr) { /* a pipe or a file: each part written completely, in turn */
        size_t done = 0;
        for (int i = 0; i < iovcnt; i++) {
            if (!iov[i].iov_len) continue;
            ssize_t r = send_all(fd, iov[i].iov_base, iov[i].iov_len, 0, NULL, 0, true);
            if (r < 0) return done ? (ssize_t)done : r;
            done += (size_t)r;
            if ((size_t)r < iov[i].iov_len) break;
        }
        return (ssize_t)done;
    }
    if (f && coil__fd_kind(f, fd) != COIL__FD_FILE) {
        struct pollfd p = {.fd = fd, .events = wr ? POLLOUT : POLLIN};
        int r = coil__wait_fds(&p, 1, COIL_FOREVER);
        if (r < 0) return libc_result(r);
    }
    return wr ? writev(fd, iov, iovcnt) : readv(fd, iov, iovcnt);
}

static ssize_t w_readv(int fd, const struct iovec *iov, int iovcnt) {
    if (!inside() || user_nonblock(fd) != 0) return readv(fd, iov, iovcnt);
    return vector_io(fd, iov, iovcnt, false);
}

static ssize_t w_writev(int fd, const struct iovec *iov, int iovcnt) {
    if (!inside() || user_nonblock(fd) != 0) return writev(fd, iov, iovcnt);
    return vector_io(fd, iov, iovcnt, true);
}

/* ---- connections ----------------------------------------------------------- */

static int w_socket(int domain, int type, int protocol) {
    int fd = socket(domain, type, protocol);
    if (fd >= 0 && installed && coil__sched_cur)
        coil__fd_fresh(fd, COIL__FD_UNKNOWN, false); /* learnt on first use */
    return fd;
}

static int w_socketpair(int domain, int type, int protocol, int sv[2]) {
    int r = socketpair(domain, type, protocol, sv);
    if (r == 0 && installed && coil__sched_cur) {
        coil__fd_fresh(sv[0], COIL__FD_UNKNOWN, false);
        coil__fd_fresh(sv[1], COIL__FD_UNKNOWN, false);
    }
    return r;
}

/* coil_accept's fd is SOCK_CLOEXEC and blocking: give it accept4's flags. */
static int accept_common(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags) {
    int r = coil_accept_dl(fd, addr, addrlen, sock_deadline(fd, SO_RCVTIMEO));
    if (r < 0) return (int)data_result(r);
    if (!(flags & SOCK_CLOEXEC)) fcntl(r, F_SETFD, 0);
    if (flags & SOCK_NONBLOCK) fcntl(r, F_SETFL, fcntl(r, F_GETFL) | O_NONBLOCK);
    return r;
}

static int w_accept(int fd, struct sockaddr *addr, socklen_t *addrlen) {
    if (!inside() || user_nonblock(fd) != 0) {
        int r = accept(fd, addr, addrlen);
        if (r >= 0 && installed && coil__sched_cur) coil__fd_fresh(r, COIL__FD_UNKNOWN, false);
        return r;
    }
    return accept_common(fd, addr, addrlen, 0);
}

static int w_accept4(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags) {
    if (!inside() || user_nonblock(fd) != 0) {
        int r = accept4(fd, addr, addrlen, flags);
        if (r >= 0 && installed && coil__sched_cur) coil__fd_fresh(r, COIL__FD_UNKNOWN, false);
        return r;
    }
    if (flags & ~(SOCK_CLOEXEC | SOCK_NONBLOCK)) {
        errno = EINVAL;
        return -1;
    }
    return accept_common(fd, addr, addrlen, flags);
}

static int w_connect(int fd, const struct sockaddr *addr, socklen_t len) {
    if (!inside() || user_nonblock(fd) != 0) return connect(fd, addr, len);
    int64_t deadline = sock_deadline(fd, SO_SNDTIMEO);
    int r = coil_connect_dl(fd, addr, len, deadline);
    /* Linux says EINPROGRESS when SO_SNDTIMEO ends a blocking connect. */
    if (r == -ETIMEDOUT && deadline >= 0 && coil_now() >= deadline) r = -EINPROGRESS;
    return (int)libc_result(r);
}

static int w_close(int fd) {
    if (!installed || !coil__sched_cur) return close(fd);
    return (int)libc_result(coil_close(fd));
}

/* ---- waiting for readiness -------------------------------------------------- */

static int64_t deadline_ms(int timeout) {
    return timeout < 0 ? COIL_FOREVER : coil_now() + (int64_t)timeout * COIL_MSEC;
}

static int64_t deadline_ts(const struct timespec *ts) {
    if (!ts) return COIL_FOREVER;
    int64_t now = coil_now();
    if (ts->tv_sec >= (INT64_MAX - now) / COIL_SEC - 1) return INT64_MAX; /* saturate */
    return now + (int64_t)ts->tv_sec * COIL_SEC + ts->tv_nsec;
}

/* poll(2) that parks the tasklet: look, wait, look again. */
static int park_poll(struct pollfd *fds, nfds_t n, int64_t deadline) {
    for (;;) {
        int r = poll(fds, n, 0);
        if (r != 0) return r;
        if (deadline >= 0 && coil_now() >= deadline) return 0;
        int err = coil__wait_fds(fds, n, deadline);
        if (err == -ETIMEDOUT) return poll(fds, n, 0);
        if (err) return (int)libc_result(err);
    }
}

static int w_poll(struct pollfd *fds, nfds_t n, int timeout) {
    if (!inside() || timeout == 0) return poll(fds, n, timeout);
    return park_poll(fds, n, deadline_ms(timeout));
}

static int w_ppoll(struct pollfd *fds, nfds_t n, const struct timespec *ts, const sigset_t *mask) {
    if (!inside() || (ts && ts->tv_sec == 0 && ts->tv_nsec == 0)) return ppoll(fds, n, ts, mask);
    if (ts && (ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= COIL_SEC)) {
        errno = EINVAL;
        return -1;
    }
    return park_poll(fds, n, deadline_ts(ts));
}

/* select(2) through park_poll: wait on the sets as pollfds, then let the real
 * select, with a zero timeout, compute its own answer on the original sets. */
static int park_select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, int64_t deadline) {
    if (nfds < 0) {
        errno = EINVAL;
        return -1;
    }
    fd_set r0, w0, e0;
    if (rd) r0 = *rd;
    if (wr) w0 = *wr;
    if (ex) e0 = *ex;
    struct pollfd local[64], *p = local;
    size_t n = 0;
    for (int fd = 0; fd < nfds; fd++) {
        short ev =
            (short)((rd && FD_ISSET(fd, rd) ? POLLIN : 0) | (wr && FD_ISSET(fd, wr) ? POLLOUT : 0) |
                    (ex && FD_ISSET(fd, ex) ? POLLPRI : 0));
        if (!ev) continue;
        if (p == local && n == 64) {
            p = malloc(sizeof *p * (size_t)nfds);
            if (!p) {
                errno = ENOMEM;
                return -1;
            }
            memcpy(p, local, sizeof local);
        }
        p[n++] = (struct pollfd){.fd = fd, .events = ev};
    }
    for (;;) {
        struct timeval zero = {0, 0};
        int r = select(nfds, rd, wr, ex, &zero);
        if (r != 0 || (deadline >= 0 && coil_now() >= deadline)) {
            if (p != local) free(p);
            return r;
        }
        if (rd) *rd = r0;
        if (wr) *wr = w0;
        if (ex) *ex = e0;
        int err = coil__wait_fds(p, n, deadline);
        if (err && err != -ETIMEDOUT) {
            if (p != local) free(p);
            return (int)libc_result(err);
        }
    }
}

static int w_select(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, struct timeval *tv) {
    if (!inside() || (tv && tv->tv_sec == 0 && tv->tv_usec == 0))
        return select(nfds, rd, wr, ex, tv);
    if (tv && (tv->tv_sec < 0 || tv->tv_usec < 0)) {
        errno = EINVAL;
        return -1;
    } /* (glibc folds whole seconds of tv_usec into tv_sec: so does the sum below) */
    int64_t deadline =
        tv ? coil_now() + (int64_t)tv->tv_sec * COIL_SEC + (int64_t)tv->tv_usec * 1000 : -1;
    int r = park_select(nfds, rd, wr, ex, deadline);
    if (tv && r >= 0) { /* Linux leaves the time not slept in *tv */
        int64_t left = deadline - coil_now();
        if (left < 0) left = 0;
        tv->tv_sec = left / COIL_SEC;
        tv->tv_usec = (left % COIL_SEC) / 1000;
    }
    return r;
}

static int w_pselect(int nfds, fd_set *rd, fd_set *wr, fd_set *ex, const struct timespec *ts,
                     const sigset_t *mask) {
    if (!inside() || (ts && ts->tv_sec == 0 && ts->tv_nsec == 0))
        return pselect(nfds, rd, wr, ex, ts, mask);
    if (ts && (ts->tv_sec < 0 || ts->tv_nsec < 0 || ts->tv_nsec >= COIL_SEC)) {
        errno = EINVAL;
        return -1;
    }
    return park_select(nfds, rd, wr, ex, deadline_ts(ts));
}

/* A library that drives its own epoll set: the set's fd is readable when one
 * of its fds is ready. */
static int park_epoll(int epfd, struct epoll_event *evs, int max, int64_t deadline) {
    for (;;) {
        int r = epoll_wait(epfd, evs, max, 0);
        if (r != 0 || (deadline >= 0 && coil_now() >= deadline)) return r;
        struct pollfd p = {.fd = epfd, .events = POLLIN};
        int err = coil__wait_fds(&p, 1, deadline);
        if (err && err != -ETIMEDOUT) return (int)libc_result(err);
    }
}

static int w_epoll_wait(int epfd, struct epoll_event *evs, int max, int timeout) {
    if (!inside() || timeout == 0) return epoll_wait(epfd, evs, max, timeout);
    return park_epoll(epfd, evs, max, deadline_ms(timeout));
}

static int w_epoll_pwait(int epfd, struct epoll_event *evs, int max, int timeout,
                         const sigset_t *mask) {
    if (!inside() || timeout == 0) return epoll_pwait(epfd, evs, max, timeout, mask);
    return park_epoll(epfd, evs, max, deadline_ms(timeout));
}

/* ---- sleeping ------------------------------------------------------------------- */

/* Parks until deadline. A killed tasklet's sleep fails with ECANCELED (and
 * the time left in *rem), not EINTR: the usual "while (nanosleep(&ts, &ts)
 * && errno == EINTR);" would retry it forever without yielding. */
static int park_sleep(int64_t deadline, struct timespec *rem) {
    if (deadline < 0) deadline = 0; /* an absolute time long past: no wait */
    int r = coil_sleep_until(deadline);
    if (r == 0) return 0;
    if (rem) {
        int64_t left = deadline - coil_now();
        if (left < 0) left = 0;
        rem->tv_sec = left / COIL_SEC;
        rem->tv_nsec = left % COIL_SEC;
    }
    errno = ECANCELED;
    return -1;
}

static int w_nanosleep(const struct timespec *req, struct timespec *rem) {
    if (!inside()) return nanosleep(req, rem);
    if (!req || req->tv_sec < 0 || req->tv_nsec < 0 || req->tv_nsec >= COIL_SEC) {
        errno = EINVAL;
        return -1;
    }
    return park_sleep(deadline_ts(req), rem);
}

static int w_clock_nanosleep(clockid_t clk, int flags, const struct timespec *req,
                             struct timespec *rem) {
    /* CPU-time clocks do not advance while the tasklet is parked. */
    struct timespec clk_now;
    if (!inside() || !req || clk == CLOCK_PROCESS_CPUTIME_ID || clk == CLOCK_THREAD_CPUTIME_ID ||
        clock_gettime(clk, &clk_now) != 0)
        return clock_nanosleep(clk, flags, req, rem);
    if (req->tv_sec < 0 || req->tv_nsec < 0 || req->tv_nsec >= COIL_SEC) return EINVAL;
    int64_t deadline;
    if (!(flags & TIMER_ABSTIME)) {
        deadline = deadline_ts(req);
    } else {
        /* On the clock asked for, converted to coil_now()'s (monotonic). */
        int64_t at = (int64_t)req->tv_sec * COIL_SEC + req->tv_nsec;
        deadline = coil_now() + at - ((int64_t)clk_now.tv_sec * COIL_SEC + clk_now.tv_nsec);
    }
    /* clock_nanosleep returns the error; it does not set errno. */
    int saved = errno;
    int r = park_sleep(deadline, (flags & TIMER_ABSTIME) ? NULL : rem);
    int e = r ? errno : 0;
    errno = saved;
    return e;
}

static int w_usleep(useconds_t us) {
    if (!inside()) return usleep(us);
    return park_sleep(coil_now() + (int64_t)us * 1000, NULL);
}

static unsigned w_sleep(unsigned secs) {
    if (!inside()) return sleep(secs);
    /* sleep(3) has no error to give: a killed tasklet's sleep returns 0
     * at once, so that "while ((left = sleep(left)));" ends. */
    coil_sleep_until(coil_now() + (int64_t)secs * COIL_SEC);
    return 0;
}

/* ---- the resolver, on the offload pool ---------------------------------------- */

struct gai_call {
    const char *node, *service;
    const struct addrinfo *hints;
    struct addrinfo **res;
    int result, sys_errno;
};

static int do_getaddrinfo(void *arg) {
    struct gai_call *c = arg;
    c->result = getaddrinfo(c->node, c->service, c->hints, c->res);
    c->sys_errno = errno;
    return 0;
}

static int w_getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                         struct addrinfo **res) {
    struct coil__tasklet *t = inside();
    if (!t) return getaddrinfo(node, service, hints, res);
    if (node && hints && hints->ai_socktype && !(hints->ai_flags & AI_ADDRCONFIG) && !t->killed) {
        /* A numeric host and service ("127.0.0.1", "5432") of one socket
         * type: glibc answers that one address from the strings, with no
         * system call but malloc's (checked with strace, glibc 2.36), so the
         * call is made here, with the caller's own flags: the answer a worker
         * would give, without waiting behind other tasklets' lookups. A name
         * fails here at once with EAI_NONAME and goes to the pool. Not with
         * AI_ADDRCONFIG (NULL hints have it) or several socket types (several
         * entries, which glibc sorts): glibc would then ask the kernel for
         * the host's addresses, try nscd's socket and connect a UDP socket
         * per entry, all on the scheduler's thread. */
        struct addrinfo h = *hints;
        h.ai_flags |= AI_NUMERICHOST | AI_NUMERICSERV;
        struct addrinfo *r = NULL;
        int saved = errno;
        int rc = getaddrinfo(node, service, &h, &r);
        errno = saved;
        if (rc == 0) {
            *res = r;
            return 0;
        }
    }
    struct gai_call c = {node, service, hints, res, 0, 0};
    int err = coil_offload(do_getaddrinfo, &c);
    if (err) { /* the job never ran (killed before the call, or no worker) */
        errno = -err;
        return EAI_SYSTEM;
    }
    if (c.result == EAI_SYSTEM) errno = c.sys_errno;
    return c.result;
}

struct gni_call {
    const struct sockaddr *sa;
    socklen_t salen;
    char *host, *serv;
    socklen_t hostlen, servlen;
    int flags, result, sys_errno;
};

static int do_getnameinfo(void *arg) {
    struct gni_call *c = arg;
    c->result = getnameinfo(c->sa, c->salen, c->host, c->hostlen, c->serv, c->servlen, c->flags);
    c->sys_errno = errno;
    return 0;
}

static int w_getnameinfo(const struct sockaddr *sa, socklen_t salen, char *host, socklen_t hostlen,
                         char *serv, socklen_t servlen, int flags) {
    if (!inside()) return getnameinfo(sa, salen, host, hostlen, serv, servlen, flags);
    struct gni_call c = {sa, salen, host, serv, hostlen, servlen, flags, 0, 0};
    int err = coil_offload(do_getnameinfo, &c);
    if (err) {
        errno = -err;
        return EAI_SYSTEM;
    }
    if (c.result == EAI_SYSTEM) errno = c.sys_errno;
    return c.result;
}

struct ghbn_call {
    const char *name;
    struct hostent *result_buf;
    char *buf;
    size_t buflen;
    struct hostent **result;
    int *h_errnop;
    int r;
};

static int do_gethostbyname_r(void *arg);

/* gethostbyname's result lives in static storage until the next call. glibc's
 * is one for the whole process, which a worker could be rewriting while a
 * tasklet reads it: this one is per thread of the caller (the scheduler's),
 * and filled by gethostbyname_r on a worker. */
static __thread struct {
    struct hostent he;
    char buf[16384];
} ghbn;

static struct hostent *w_gethostbyname(const char *name) {
    if (!inside()) return gethostbyname(name);
    struct hostent *result = NULL;
    int herr = 0;
    struct ghbn_call c = {.name = name,
                          .result_buf = &ghbn.he,
                          .buf = ghbn.buf,
                          .buflen = sizeof ghbn.buf,
                          .result = &result,
                          .h_errnop = &herr};
    int err = coil_offload(do_gethostbyname_r, &c);
    if (err || (c.r && !herr)) { /* not run, or ERANGE: more aliases than the buffer holds */
        h_errno = NO_RECOVERY;
        return NULL;
    }
    h_errno = herr;
    return result;
}

static int do_gethostbyname_r(void *arg) {
    struct ghbn_call *c = arg;
    c->r = gethostbyname_r(c->name, c->result_buf, c->buf, c->buflen, c->result, c->h_errnop);
    return 0;
}

static int w_gethostbyname_r(const char *name, struct hostent *ret, char *buf, size_t buflen,
                             struct hostent **result, int *h_errnop) {
    if (!inside()) return gethostbyname_r(name, ret, buf, buflen, result, h_errnop);
    struct ghbn_call c = {
        .name = name, .result_buf = ret, .buf = buf, .buflen = buflen, .result = result};
    c.h_errnop = h_errnop;
    int err = coil_offload(do_gethostbyname_r, &c);
    if (err) {
        *result = NULL;
        if (h_errnop) *h_errnop = NO_RECOVERY;
        return -err;
    }
    return c.r;
}

/* ---- the fortified forms (-D_FORTIFY_SOURCE) ------------------------------------ */

/* gcc calls these instead of read, recv, ... when it knows the buffer's size:
 * glibc checks the size and calls the plain function. */
extern void __chk_fail(void) __attribute__((noreturn));

static ssize_t w___read_chk(int fd, void *buf, size_t n, size_t buflen) {
    if (n > buflen) __chk_fail();
    return w_read(fd, buf, n);
}

static ssize_t w___recv_chk(int fd, void *buf, size_t n, size_t buflen, int flags) {
    if (n > buflen) __chk_fail();
    return w_recv(fd, buf, n, flags);
}

static ssize_t w___recvfrom_chk(int fd, void *buf, size_t n, size_t buflen, int flags,
                                struct sockaddr *addr, socklen_t *addrlen) {
    if (n > buflen) __chk_fail();
    return w_recvfrom(fd, buf, n, flags, addr, addrlen);
}

static int w___poll_chk(struct pollfd *fds, nfds_t n, int timeout, size_t fdslen) {
    if (fdslen / sizeof *fds < n) __chk_fail();
    return w_poll(fds, n, timeout);
}

static int w___ppoll_chk(struct pollfd *fds, nfds_t n, const struct timespec *ts,
                         const sigset_t *mask, size_t fdslen) {
    if (fdslen / sizeof *fds < n) __chk_fail();
    return w_ppoll(fds, n, ts, mask);
}

/* ---- patching the GOT ----------------------------------------------------------- */

#define WRAP(name)                                                                                 \
    { #name, (void *)w_##name }
static const struct {
    const char *name;
    void *wrapper;
} wraps[] = {
    WRAP(read),        WRAP(write),         WRAP(readv),
    WRAP(writev),      WRAP(recv),          WRAP(send),
    WRAP(recvfrom),    WRAP(sendto),        WRAP(recvmsg),
    WRAP(sendmsg),     WRAP(socket),        WRAP(socketpair),
    WRAP(accept),      WRAP(accept4),       WRAP(connect),
    WRAP(close),       WRAP(poll),          WRAP(ppoll),
    WRAP(select),      WRAP(pselect),       WRAP(epoll_wait),
    WRAP(epoll_pwait), WRAP(nanosleep),     WRAP(clock_nanosleep),
    WRAP(usleep),      WRAP(sleep),         WRAP(getaddrinfo),
    WRAP(getnameinfo), WRAP(gethostbyname), WRAP(gethostbyname_r),
    WRAP(__read_chk),  WRAP(__recv_chk),    WRAP(__recvfrom_chk),
    WRAP(__poll_chk),  WRAP(__ppoll_chk),
};
#define NWRAPS (sizeof wraps / sizeof wraps[0])

struct patch {
    void **slot;
    void *orig;
    void *wrapper; /* what was written: restored only if still there */
};

static pthread_mutex_t install_lock = PTHREAD_MUTEX_INITIALIZER;
static struct patch *patches;
static size_t npatches, cappatches;
static size_t page_size;

/* The process's mappings and their protection, read from /proc/self/maps at
 * each coil_install and coil_uninstall (both rare). A slot in a read-only
 * page (a RELRO region the loader has protected) is written with the page
 * made writable for the moment and then read-only again; a slot in a
 * writable page is written as it is. Guessing "read-only" from the ELF
 * headers alone is wrong twice: for an object the loader is still relocating
 * (another thread's dlopen; the loader would fault on a page made read-only
 * under it) and for the part of a RELRO region that shares its last page
 * with writable data (glibc protects whole pages only). */
struct region {
    uintptr_t lo, hi;
    bool writable;
};
static struct region *regions;
static size_t nregions;

static void regions_free(void) {
    free(regions);
    regions = NULL;
    nregions = 0;
}

static int regions_load(void) {
    regions_free();
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);
    if (fd < 0) return -errno;
    size_t cap = 0, len = 0;
    char *buf = NULL;
    for (;;) {
        if (cap - len < 4096) {
            char *b = realloc(buf, cap = cap ? cap * 2 : 16384);
            if (!b) {
                free(buf);
                close(fd);
                return -ENOMEM;
            }
            buf = b;
        }
        ssize_t n = read(fd, buf + len, cap - len - 1);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) break;
        len += (size_t)n;
    }
    close(fd);
    buf[len] = '\0';
    size_t lines = 0;
    for (size_t i = 0; i < len; i++)
        lines += buf[i] == '\n';
    regions = malloc((lines + 1) * sizeof *regions);
    if (!regions) {
        free(buf);
        return -ENOMEM;
    }
    /* Each line: "lo-hi perms offset dev inode path", addresses in hex. */
    for (char *line = buf; *line;) {
        char *end, *nl = strchr(line, '\n');
        struct region r;
        r.lo = (uintptr_t)strtoull(line, &end, 16);
        if (*end == '-') {
            r.hi = (uintptr_t)strtoull(end + 1, &end, 16);
            if (*end == ' ' && end[1] && end[2]) {
                r.writable = end[2] == 'w';
                regions[nregions++] = r;
            }
        }
        if (!nl) break;
        line = nl + 1;
    }
    free(buf);
    return 0;
}

/* 1 if the page of addr is writable now, 0 if not, -1 if it is not mapped. */
static int page_writable(uintptr_t addr) {
    size_t lo = 0, hi = nregions; /* the kernel lists mappings in address order */
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (addr < regions[mid].lo)
            hi = mid;
        else if (addr >= regions[mid].hi)
            lo = mid + 1;
        else
            return regions[mid].writable;
    }
    return -1;
}

/* Writes value into slot, whose page is writable (w = 1) or read-only (0). */
static int write_slot(void **slot, void *value, int w) {
    if (w) {
        __atomic_store_n(slot, value, __ATOMIC_RELEASE);
        return 0;
    }
    uintptr_t page = (uintptr_t)slot & ~(uintptr_t)(page_size - 1);
    if (mprotect((void *)page, page_size, PROT_READ | PROT_WRITE) != 0) return -errno;
    __atomic_store_n(slot, value, __ATOMIC_RELEASE);
    mprotect((void *)page, page_size, PROT_READ);
    return 0;
}

static int wrapper_of(const char *name) {
    for (size_t i = 0; i < NWRAPS; i++)
        if (strcmp(name, wraps[i].name) == 0) return (int)i;
    return -1;
}

#if defined(__x86_64__)
#define R_JUMP_SLOT R_X86_64_JUMP_SLOT
#define R_GLOB_DAT  R_X86_64_GLOB_DAT
#define R_ABS64     R_X86_64_64
#elif defined(__aarch64__)
#define R_JUMP_SLOT R_AARCH64_JUMP_SLOT
#define R_GLOB_DAT  R_AARCH64_GLOB_DAT
#define R_ABS64     R_AARCH64_ABS64
#else
#error "coil_install: the relocation types of this architecture"
#endif

struct object {
    ElfW(Addr) base;
    const ElfW(Sym) * symtab;
    const char *strtab;
    uintptr_t span; /* the end of its highest segment, as an offset from base */
    int err;
};

/* The relocations that hold a function's address: PLT slots (JUMP_SLOT),
 * GOT entries of address-taking code (GLOB_DAT), and function pointers
 * stored in data (R_X86_64_64 / R_AARCH64_ABS64 with no addend: a table
 * such as SQLite's list of the system calls it uses). */
static void patch_relocs(struct object *o, const ElfW(Rela) * r, size_t size) {
    if (!r) return;
    for (size_t i = 0; i < size / sizeof *r && !o->err; i++) {
        unsigned type = (unsigned)ELF64_R_TYPE(r[i].r_info);
        if (type != R_JUMP_SLOT && type != R_GLOB_DAT && !(type == R_ABS64 && r[i].r_addend == 0))
            continue;
        unsigned symi = (unsigned)ELF64_R_SYM(r[i].r_info);
        if (!symi) continue;
        const ElfW(Sym) *sym = &o->symtab[symi];
        int w = wrapper_of(o->strtab + sym->st_name);
        if (w < 0) continue;
        void **slot = (void **)(o->base + r[i].r_offset);
        void *orig = *slot;
        if (orig == wraps[w].wrapper) continue; /* installed already */
        /* Not relocated yet (the loader is still at work on this object, for
         * a dlopen on another thread): a link-time value, an offset into the
         * object (a lazy PLT slot) or the addend (0), where a relocated one
         * is an address in the process's mappings. The loader will put the
         * real address there; a later coil_install diverts it. (The main
         * executable, base 0, is relocated before any code runs.) */
        if (o->base && (uintptr_t)orig < o->span) continue;
        if (npatches == cappatches) {
            size_t cap = cappatches ? cappatches * 2 : 64;
            struct patch *p = realloc(patches, cap * sizeof *p);
            if (!p) {
                o->err = -ENOMEM;
                return;
            }
            patches = p;
            cappatches = cap;
        }
        /* Not in the view of the mappings: mapped after it was read (a
         * dlopen on another thread), so the loader is still at work on it. */
        int writable = page_writable((uintptr_t)slot);
        if (writable < 0) continue;
        int err = write_slot(slot, wraps[w].wrapper, writable);
        if (err) {
            o->err = err;
            return;
        }
        patches[npatches++] = (struct patch){slot, orig, wraps[w].wrapper};
    }
}

/* glibc has relocated the pointers of the dynamic section in place (the
 * vDSO's are not): an address below the load base is still relative. */
static uintptr_t dyn_ptr(ElfW(Addr) p, ElfW(Addr) base) {
    return p < base ? p + base : p;
}

/* What a walk over the loaded objects carries. The view of the mappings is
 * read at its first object, inside dl_iterate_phdr, that is under the
 * loader's lock: no object joins or leaves the list meanwhile, so every
 * listed object's pages are in the view, and an address cannot be unmapped
 * and mapped again for another object between the view and the walk (a view
 * read before the walk could call a page read-only that now belongs to an
 * object the loader is still relocating: the likely cause of one failure of
 * test_install_dlopen's race case under Valgrind, whose thread switches make
 * such windows wide). A RELRO page goes only from
 * writable to read-only while listed, so a stale "writable" errs safe. */
struct walk {
    int err;
    bool viewed;
};

static bool walk_view(struct walk *w) {
    if (!w->viewed) {
        w->viewed = true;
        w->err = regions_load();
    }
    return w->err == 0;
}

static int patch_object(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    struct walk *walk = data;
    if (!walk_view(walk)) return 1;
    int *errp = &walk->err;
    const char *name = info->dlpi_name ? info->dlpi_name : "";
    /* libc and the loader call each other internally; the vDSO has no GOT. */
    if (strstr(name, "linux-vdso") || strstr(name, "/ld-linux") || strstr(name, "/libc.so."))
        return 0;
    struct object o = {.base = info->dlpi_addr};
    const ElfW(Dyn) *dyn = NULL;
    uintptr_t me = (uintptr_t)(void *)coil_install;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = o.base + ph->p_vaddr, hi = lo + ph->p_memsz;
        if (ph->p_type == PT_DYNAMIC) dyn = (const ElfW(Dyn) *)lo;
        if (ph->p_type == PT_LOAD && ph->p_vaddr + ph->p_memsz > o.span)
            o.span = ph->p_vaddr + ph->p_memsz;
        if (ph->p_type == PT_GNU_RELRO) {
            /* The loader makes the whole pages of this region read-only
             * once it has relocated the object. Still writable: another
             * thread's dlopen is relocating it now; leave it to the loader
             * (a later coil_install diverts it). */
            uintptr_t first = lo & ~(uintptr_t)(page_size - 1);
            uintptr_t last = hi & ~(uintptr_t)(page_size - 1);
            if (first < last && page_writable(first) == 1) return 0;
        }
        if (ph->p_type == PT_LOAD && me >= lo && me < hi) return 0; /* coil's own object */
    }
    if (!dyn) return 0;
    const ElfW(Rela) *jmprel = NULL, *rela = NULL;
    size_t jmprelsz = 0, relasz = 0;
    for (const ElfW(Dyn) *d = dyn; d->d_tag != DT_NULL; d++) {
        switch (d->d_tag) {
        case DT_SYMTAB: o.symtab = (const void *)dyn_ptr(d->d_un.d_ptr, o.base); break;
        case DT_STRTAB: o.strtab = (const void *)dyn_ptr(d->d_un.d_ptr, o.base); break;
        case DT_JMPREL: jmprel = (const void *)dyn_ptr(d->d_un.d_ptr, o.base); break;
        case DT_PLTRELSZ: jmprelsz = d->d_un.d_val; break;
        case DT_RELA: rela = (const void *)dyn_ptr(d->d_un.d_ptr, o.base); break;
        case DT_RELASZ: relasz = d->d_un.d_val; break;
        default: break;
        }
    }
    if (!o.symtab || !o.strtab) return 0;
    patch_relocs(&o, jmprel, jmprelsz);
    patch_relocs(&o, rela, relasz);
    if (o.err) *errp = o.err;
    return o.err ? 1 : 0;
}

/* A forked child has no scheduler: its calls go straight to libc, even if
 * fork was called from a tasklet. */
static void forget_scheduler_in_child(void) {
    coil__sched_cur = NULL;
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void register_atfork(void) {
    pthread_atfork(NULL, NULL, forget_scheduler_in_child);
}

int coil_install(void) {
    int saved = errno;
    pthread_once(&atfork_once, register_atfork);
    pthread_mutex_lock(&install_lock);
    if (!page_size) page_size = (size_t)sysconf(_SC_PAGESIZE);
    struct walk walk = {0};
    dl_iterate_phdr(patch_object, &walk);
    regions_free();
    int err = walk.err;
    if (!err) installed = true;
    pthread_mutex_unlock(&install_lock);
    errno = saved;
    return err;
}

/* Puts back the saved values of the slots inside this object, if they still
 * hold the wrapper. Runs under the loader's lock (dl_iterate_phdr), so the
 * object cannot be unloaded meanwhile; slots of objects unloaded since
 * coil_install are in no object and are left alone (writing there would
 * write into unmapped memory, or into whatever was mapped there since). */
static int unpatch_object(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    if (!walk_view(data)) return 1;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD) continue;
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
        for (size_t k = 0; k < npatches; k++) {
            struct patch *p = &patches[k];
            if (!p->slot || (uintptr_t)p->slot < lo || (uintptr_t)p->slot >= hi) continue;
            int writable = page_writable((uintptr_t)p->slot);
            if (writable >= 0 && __atomic_load_n(p->slot, __ATOMIC_ACQUIRE) == p->wrapper)
                write_slot(p->slot, p->orig, writable);
            p->slot = NULL; /* done */
        }
    }
    return 0;
}

int coil_uninstall(void) {
    int saved = errno;
    pthread_mutex_lock(&install_lock);
    installed = false;
    /* Without a view of the mappings nothing can be written safely: the
     * wrappers stay (they pass every call through once `installed` is
     * false). */
    struct walk walk = {0};
    if (npatches) dl_iterate_phdr(unpatch_object, &walk);
    regions_free();
    free(patches);
    patches = NULL;
    npatches = cappatches = 0;
    pthread_mutex_unlock(&install_lock);
    errno = saved;
    return 0;
}

/* COIL_INSTALL=1 in the environment: installed when coil is loaded, for
 * programs that cannot call coil_install themselves. */
__attribute__((constructor)) static void install_from_environment(void) {
    const char *v = getenv("COIL_INSTALL");
    if (v && strcmp(v, "1") == 0) coil_install();
}
