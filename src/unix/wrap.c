/*
 * coil_install's wrappers: what each diverted libc call does (src/unix/install.c
 * diverts them).
 *
 * What a wrapper does. Outside a tasklet (before coil_run, on another thread
 * such as libcurl's resolver thread or an offload worker, in a forked child)
 * it calls the real function at once: libc's exact behaviour. Inside one:
 *  - an fd the program made O_NONBLOCK (asked of the kernel: coil never
 *    changes an fd's flags, so F_GETFL is the truth; recv and send remember
 *    the answer, see user_view) and a call with MSG_DONTWAIT go to libc
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
 *  - dup2/dup3 onto a number tasklets wait on wake them with EBADF, as close;
 *  - recvmmsg parks until a datagram is there (see w_recvmmsg); sendmmsg
 *    sends each message complete;
 *  - sendfile/splice to a blocking socket or pipe: park until writable,
 *    then the call on the offload pool (see xfer_parked);
 *  - pread/pwrite/preadv/pwritev/preadv2/pwritev2 try with RWF_NOWAIT and
 *    park only when the disk must answer (see at_offset);
 *  - wait/waitpid/wait4/waitid park until the child changed state (see
 *    park_child), WNOHANG goes to libc;
 *  - dlopen/dlmopen divert what they load when the loader's answer does not
 *    depend on the caller (see w_dlopen's stubs below).
 * Limits, documented in coil.h: a dlopen whose answer depends on its caller
 * is diverted by the next coil_install only; the signal mask of
 * ppoll/pselect is not applied (tasklets share their thread's mask). The
 * blocking calls not diverted, and why: docs/install-calls.md.
 */
#include "internal.h"

#include <dirent.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <link.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <stdarg.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>
#include <limits.h>
#include <unistd.h>

/* The running tasklet, if the calls of this thread are diverted now. */
static inline struct coil__tasklet *inside(void) {
    return COIL_LIKELY(!coil__is_installed()) ? NULL : coil__self();
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

/* SO_RCVTIMEO (SO_SNDTIMEO) of fd in ns, asked of the kernel; 0 if none (or
 * fd is not a socket). */
static int64_t read_timeout(int fd, int optname) {
    struct timeval tv = {0, 0};
    socklen_t len = sizeof tv;
    int saved = errno;
    int r = getsockopt(fd, SOL_SOCKET, optname, &tv, &len);
    errno = saved;
    if (r != 0) return 0;
    return (int64_t)tv.tv_sec * COIL_SEC + (int64_t)tv.tv_usec * 1000;
}

/* The deadline SO_RCVTIMEO (SO_SNDTIMEO) sets for a blocking call on fd
 * starting now; COIL_FOREVER if none (or fd is not a socket). */
static int64_t sock_deadline(int fd, int optname) {
    int64_t t = read_timeout(fd, optname);
    return t ? coil_now() + t : COIL_FOREVER;
}

uint32_t coil__sockopt_epoch = 1;

/* Something may have changed what a number names, its O_NONBLOCK or its
 * timeouts (a diverted close, dup2, socket, accept, fcntl(F_SETFL),
 * ioctl(FIONBIO), setsockopt of a timeout, fclose, ...), on any thread: every
 * scheduler's memory of them (user_view) is stale. */
static void user_view_changed(void) {
    int saved = errno;
    if (__atomic_add_fetch(&coil__sockopt_epoch, 1, __ATOMIC_RELEASE) == 0)
        __atomic_add_fetch(&coil__sockopt_epoch, 1, __ATOMIC_RELEASE); /* 0 is "never read" */
    errno = saved;
}

/* The program's O_NONBLOCK and SO_RCVTIMEO/SO_SNDTIMEO of fd, remembered in
 * f, so that a diverted recv or send that may wait need not ask the kernel
 * each time (those three system calls per call were most of the wrappers'
 * cost: coil-bench-install, docs/benchmarks.md). The memory is valid while
 * no thread has made a call that may change them (user_view_changed: every
 * diverted call that closes, replaces or creates an fd, or changes its
 * O_NONBLOCK or timeouts, including fclose, closedir, close_range and
 * closefrom, whose closes happen inside libc). It can still go stale through
 * what no wrapper sees: a close inside libc other than those, a system call
 * made with syscall(2), the code of the object coil is linked into, or
 * another process changing the O_NONBLOCK of a file it shares. A stale
 * timeout that ends a wait is checked with the kernel before it counts
 * (timed_out). Returns false (and leaves f alone) when fd is not open. */
static bool user_view(struct coil__fd *f, int fd) {
    uint32_t epoch = __atomic_load_n(&coil__sockopt_epoch, __ATOMIC_ACQUIRE);
    if (f->opt_epoch == epoch) return true;
    int nb = user_nonblock(fd);
    if (nb < 0) return false;
    f->nonblock = nb;
    f->rcvtimeo = read_timeout(fd, SO_RCVTIMEO);
    f->sndtimeo = read_timeout(fd, SO_SNDTIMEO);
    f->opt_epoch = epoch;
    return true;
}

/* The program's O_NONBLOCK of fd (1, 0; -1 if not open), remembered. */
static int cached_nonblock(struct coil__fd *f, int fd) {
    if (!f) return user_nonblock(fd);
    return user_view(f, fd) ? f->nonblock : -1;
}

/* Its SO_RCVTIMEO (rcv) or SO_SNDTIMEO in ns, 0 for none, remembered. */
static int64_t sock_timeout(struct coil__fd *f, int fd, bool rcv) {
    if (!f || !user_view(f, fd)) return read_timeout(fd, rcv ? SO_RCVTIMEO : SO_SNDTIMEO);
    return rcv ? f->rcvtimeo : f->sndtimeo;
}

/* A call on fd that began at start with a remembered timeout of used ns
 * has timed out: true if the kernel's value says so too; false with
 * *deadline set to the wait still owed (COIL_FOREVER: none) when the memory
 * was stale. */
static bool timed_out(struct coil__fd *f, int fd, bool rcv, int64_t start, int64_t used,
                      int64_t *deadline) {
    if (!used) return true; /* not a remembered timeout's: coil_set_timeout's */
    int64_t real = read_timeout(fd, rcv ? SO_RCVTIMEO : SO_SNDTIMEO);
    if (f) f->opt_epoch = 0; /* read again next time */
    if (real == used) return true;
    *deadline = real ? start + real : COIL_FOREVER;
    return real && coil_now() >= *deadline;
}

/* This thread's scheduler's record of fd (inside a tasklet), or NULL. */
static struct coil__fd *fd_record(int fd) {
    struct coil__sched *s = coil__sched_cur;
    int err;
    return s ? coil__fd_get(s, fd, &err) : NULL;
}

/* A blocking data call's error in libc's words. */
static ssize_t data_result(ssize_t r) {
    if (r == -ETIMEDOUT) r = -EAGAIN; /* SO_RCVTIMEO/SO_SNDTIMEO passed */
    return libc_result(r);
}

static int64_t deadline_ts(const struct timespec *ts);

/* ---- reads and writes ----------------------------------------------------- */

/* send_all from byte done on (the first done bytes are sent already). */
static ssize_t send_rest(int fd, const char *buf, size_t n, size_t done, int flags,
                         const struct sockaddr *to, socklen_t tolen, bool plain_write) {
    struct coil__fd *f = fd_record(fd);
    int64_t timeout = sock_timeout(f, fd, false), start = timeout ? coil_now() : 0;
    int64_t deadline = timeout ? start + timeout : COIL_FOREVER;
    do { /* once at least: a send of 0 bytes reports the socket's errors */
        ssize_t r = plain_write ? coil_write_dl(fd, buf + done, n - done, deadline)
                    : to        ? coil_sendto(fd, buf + done, n - done, flags, to, tolen, deadline)
                                : coil_send_dl(fd, buf + done, n - done, flags, deadline);
        if (r == -ETIMEDOUT && !timed_out(f, fd, false, start, timeout, &deadline)) continue;
        if (r < 0) return done ? (ssize_t)done : data_result(r);
        done += (size_t)r;
    } while (done < n);
    return (ssize_t)done;
}

/* A blocking write or send is complete, as the kernel makes it: short
 * transfers are continued until all is written; an error after some bytes
 * returns the count (as an interrupted write(2) does). */
static ssize_t send_all(int fd, const char *buf, size_t n, int flags, const struct sockaddr *to,
                        socklen_t tolen, bool plain_write) {
    return send_rest(fd, buf, n, 0, flags, to, tolen, plain_write);
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

/* recv and send need the program's O_NONBLOCK and the socket's timeout
 * only to decide how to wait: remembered (user_view), they cost nothing, and
 * the call is coil's (or libc's on an O_NONBLOCK fd) at once. While that
 * memory is stale (a number closed or created since, on any thread), the
 * call is first tried without waiting (MSG_DONTWAIT): when data is there
 * (room, for send), that one system call is all, whatever the flags and
 * timeouts, and the memory is read again only when the call may wait. */
static bool view_fresh(const struct coil__fd *f) {
    return f && f->opt_epoch == __atomic_load_n(&coil__sockopt_epoch, __ATOMIC_ACQUIRE);
}

static ssize_t w_recv(int fd, void *buf, size_t n, int flags) {
    if (!inside() || (flags & MSG_DONTWAIT)) return recv(fd, buf, n, flags);
    struct coil__fd *f = fd_record(fd);
    /* (Not for 0 bytes: coil's call answers those without waiting.) */
    if (n && !(flags & MSG_WAITALL) && !view_fresh(f)) {
        int saved = errno;
        ssize_t r = recv(fd, buf, n, flags | MSG_DONTWAIT);
        if (r >= 0 || (errno != EAGAIN && errno != EWOULDBLOCK)) return r; /* libc's errors */
        errno = saved;
    }
    if (cached_nonblock(f, fd) != 0) return recv(fd, buf, n, flags); /* EAGAIN, or libc's EBADF */
    int64_t timeout = sock_timeout(f, fd, true), start = timeout ? coil_now() : 0;
    int64_t deadline = timeout ? start + timeout : COIL_FOREVER;
    for (;;) {
        ssize_t r = coil_recv_dl(fd, buf, n, flags, deadline);
        if (r == -ETIMEDOUT && !timed_out(f, fd, true, start, timeout, &deadline)) continue;
        return data_result(r);
    }
}

/* A send on a blocking socket is complete (send_rest goes on after a short
 * try); on an O_NONBLOCK one it is libc's. Both with MSG_NOSIGNAL: a send
 * inside a tasklet never raises SIGPIPE (coil.h), as coil's own. */
static ssize_t w_send(int fd, const void *buf, size_t n, int flags) {
    if (!inside() || (flags & MSG_DONTWAIT)) return send(fd, buf, n, flags);
    if (!buf && n) return data_result(-EFAULT);
    struct coil__fd *f = fd_record(fd);
    size_t done = 0;
    if (n && !view_fresh(f)) { /* (0 bytes: coil's call gives their errors, without waiting) */
        int saved = errno;
        ssize_t r = send(fd, buf, n, flags | MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r == (ssize_t)n) return r;
        if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return r; /* libc's errors */
        errno = saved;
        if (r > 0) done = (size_t)r;
    }
    int nb = cached_nonblock(f, fd);
    if (nb > 0 && done) return (ssize_t)done;
    if (nb != 0) return send(fd, buf, n, flags | MSG_NOSIGNAL); /* EAGAIN, or libc's EBADF */
    return send_rest(fd, buf, n, done, flags, NULL, 0, false);
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

/* recvmmsg: park until a datagram is there, then take what is there without
 * waiting (MSG_DONTWAIT added); with MSG_WAITFORONE that is the answer, else
 * the call goes on until vlen messages, or until its timeout (as the kernel,
 * checked once a message has come) or SO_RCVTIMEO ends it: then the count so
 * far, or EAGAIN if none. An error after some messages returns the count, as
 * the kernel does (the error is lost, as there). */
static int w_recvmmsg(int fd, struct mmsghdr *vec, unsigned vlen, int flags,
                      struct timespec *timeout) {
    if (!inside() || (flags & MSG_DONTWAIT) || user_nonblock(fd) != 0)
        return recvmmsg(fd, vec, vlen, flags, timeout);
    if (timeout && (timeout->tv_sec < 0 || timeout->tv_nsec < 0 || timeout->tv_nsec >= COIL_SEC))
        return (int)libc_result(-EINVAL);
    int64_t rcv = sock_deadline(fd, SO_RCVTIMEO), until = deadline_ts(timeout);
    unsigned got = 0;
    for (;;) {
        int r = recvmmsg(fd, vec + got, vlen - got, flags | MSG_DONTWAIT, NULL);
        if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) return got ? (int)got : -1;
        if (r > 0) got += (unsigned)r;
        if (got && (got >= vlen || (flags & MSG_WAITFORONE) || (until >= 0 && coil_now() >= until)))
            return (int)got;
        if (vlen == 0) return 0;
        int64_t dl = rcv;
        if (got && until >= 0 && (dl < 0 || until < dl)) dl = until;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int err = coil__wait_fds(&p, 1, dl);
        if (err == -ETIMEDOUT && got) return (int)got;
        if (err) return (int)data_result(err);
    }
}

/* sendmmsg: each message complete, as sendmsg's wrapper sends it; the
 * number of messages sent, or -1 and errno if the first failed. */
static int w_sendmmsg(int fd, struct mmsghdr *vec, unsigned vlen, int flags) {
    if (!inside() || (flags & MSG_DONTWAIT) || user_nonblock(fd) != 0)
        return sendmmsg(fd, vec, vlen, flags);
    unsigned i = 0;
    for (; i < vlen; i++) {
        ssize_t r = sendmsg_all(fd, &vec[i].msg_hdr, flags);
        if (r < 0) return i ? (int)i : -1;
        vec[i].msg_len = (unsigned)r;
    }
    return (int)i;
}

/* sendfile/splice to a blocking socket or pipe would block the thread until
 * all is sent (the kernel does not stop at a full buffer on a blocking fd,
 * and coil never changes an fd's flags to make it stop): the call runs on
 * the offload pool, after the tasklet has parked until the destination is
 * writable (that wait honours SO_SNDTIMEO and a kill; the call itself, once
 * on a worker, cannot be interrupted: coil_offload's rule). A regular file as
 * the destination goes to libc (it waits only for the disk). */
struct xfer_call {
    bool splice;
    int in, out;
    off_t *off_in, *off_out;
    size_t count;
    unsigned flags;
    ssize_t r;
    int err;
};

static int do_xfer(void *arg) {
    struct xfer_call *c = arg;
    c->r = c->splice ? splice(c->in, c->off_in, c->out, c->off_out, c->count, c->flags)
                     : sendfile(c->out, c->in, c->off_in, c->count);
    c->err = errno;
    return 0;
}

/* false when the call is not coil's to make (outside a tasklet, an O_NONBLOCK
 * or regular-file destination), else its result in libc's form in *r. */
static bool xfer_parked(struct xfer_call *c, ssize_t *r) {
    if (!inside() || user_nonblock(c->out) != 0 || (c->splice && (c->flags & SPLICE_F_NONBLOCK)))
        return false;
    struct coil__sched *s = coil__sched_cur;
    int err;
    struct coil__fd *f = coil__fd_get(s, c->out, &err);
    if (!f || coil__fd_kind(f, c->out) == COIL__FD_FILE) return false;
    struct pollfd p = {.fd = c->out, .events = POLLOUT};
    err = coil__wait_fds(&p, 1, sock_deadline(c->out, SO_SNDTIMEO));
    if (!err) err = coil_offload(do_xfer, c);
    if (err) {
        *r = data_result(err);
        return true;
    }
    errno = c->err;
    *r = c->r;
    return true;
}

static ssize_t w_sendfile(int out, int in, off_t *off, size_t count) {
    struct xfer_call c = {.in = in, .out = out, .off_in = off, .count = count};
    ssize_t r;
    return xfer_parked(&c, &r) ? r : sendfile(out, in, off, count);
}

static ssize_t w_splice(int in, off_t *off_in, int out, off_t *off_out, size_t count,
                        unsigned flags) {
    struct xfer_call c = {true, in, out, off_in, off_out, count, flags, 0, 0};
    ssize_t r;
    return xfer_parked(&c, &r) ? r : splice(in, off_in, out, off_out, count, flags);
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

/* ---- pread and pwrite: a file at an offset ------------------------------------ */

/* Only a file that takes an offset (a regular file, a block device, some
 * character devices) answers pread: a pipe, FIFO or socket fails with
 * ESPIPE at once. So a call first tries the real system call with
 * RWF_NOWAIT: that gives every error exactly as libc would (EBADF, ESPIPE,
 * EINVAL, EFAULT, ...) and a page-cache hit at once, without parking and
 * without trusting coil's per-fd memory of the number, which goes stale when
 * libc closes an fd internally (fclose) and the number is reused. Only EAGAIN
 * (the data is not in memory; a write that would wait for the disk) and
 * EOPNOTSUPP (a file without RWF_NOWAIT, or flags the kernel refuses, which
 * the parked call then reports itself) park the tasklet: coil__prw. A call
 * is complete as the blocking call is: what a try left (a short transfer
 * where only part was cached) is tried again from where it stopped, until
 * all is done, end of file (a read of 0) or an error after some bytes (the
 * count is returned). */
static ssize_t at_offset(bool wr, int fd, const struct iovec *iov, int iovcnt, off_t off,
                         int flags) {
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    struct iovec local[8], *copy = NULL;
    const struct iovec *cur = iov;
    int cnt = iovcnt;
    size_t done = 0;
    bool nowait = true;
    int saved = errno; /* a call that succeeds leaves errno alone */
    ssize_t r;
    for (;;) {
        r = -1;
        if (nowait) {
            r = wr ? pwritev2(fd, cur, cnt, off + (off_t)done, flags | RWF_NOWAIT)
                   : preadv2(fd, cur, cnt, off + (off_t)done, flags | RWF_NOWAIT);
            if (r < 0 && errno == EOPNOTSUPP) nowait = false; /* this file: every time */
            if (r < 0 && errno != EAGAIN && errno != EOPNOTSUPP) break;
        }
        if (r < 0) {
            r = coil__prw(wr, fd, cur, cnt, (int64_t)off + (int64_t)done, flags);
            if (r < 0) {
                errno = (int)-r;
                r = -1;
                break;
            }
        } else if (nowait) {
            coil__spend_budget(coil__self());
        }
        done += (size_t)r;
        if (r == 0 || done >= total) break;
        /* Go on past what was transferred, in a copy of the caller's vector. */
        if (!copy) {
            copy = (size_t)iovcnt <= sizeof local / sizeof local[0]
                       ? local
                       : malloc((size_t)iovcnt * sizeof *copy);
            if (!copy) break; /* the count so far: a short transfer */
            memcpy(copy, iov, (size_t)iovcnt * sizeof *copy);
            cur = copy;
        }
        size_t skip = (size_t)r;
        struct iovec *c = (struct iovec *)cur;
        while (skip && skip >= c->iov_len) {
            skip -= c->iov_len;
            c++;
            cnt--;
        }
        c->iov_base = (char *)c->iov_base + skip;
        c->iov_len -= skip;
        cur = c;
    }
    if (copy && copy != local) free(copy);
    if (!done && r < 0) return -1;
    errno = saved;
    return (ssize_t)done;
}

/* The arguments at_offset never sees: outside a tasklet; RWF_NOWAIT, which
 * asks not to wait; a negative offset or count (EINVAL, with libc's own
 * order of checks); more than SSIZE_MAX bytes. */
static bool vector_ok(const struct iovec *iov, int iovcnt) {
    if (iovcnt < 0 || iovcnt > IOV_MAX) return false;
    size_t total = 0;
    for (int i = 0; i < iovcnt; i++) {
        if (iov[i].iov_len > SSIZE_MAX - total) return false;
        total += iov[i].iov_len;
    }
    return true;
}

_Static_assert(sizeof(off_t) == 8, "pread and pread64 are one function (64-bit off_t)");

static ssize_t w_pread(int fd, void *buf, size_t n, off_t off) {
    if (!inside() || off < 0 || n > SSIZE_MAX) return pread(fd, buf, n, off);
    struct iovec iov = {buf, n};
    return at_offset(false, fd, &iov, 1, off, 0);
}

static ssize_t w_pwrite(int fd, const void *buf, size_t n, off_t off) {
    if (!inside() || off < 0 || n > SSIZE_MAX) return pwrite(fd, buf, n, off);
    struct iovec iov = {(void *)buf, n};
    return at_offset(true, fd, &iov, 1, off, 0);
}

static ssize_t w_preadv(int fd, const struct iovec *iov, int iovcnt, off_t off) {
    if (!inside() || off < 0 || !vector_ok(iov, iovcnt)) return preadv(fd, iov, iovcnt, off);
    return at_offset(false, fd, iov, iovcnt, off, 0);
}

static ssize_t w_pwritev(int fd, const struct iovec *iov, int iovcnt, off_t off) {
    if (!inside() || off < 0 || !vector_ok(iov, iovcnt)) return pwritev(fd, iov, iovcnt, off);
    return at_offset(true, fd, iov, iovcnt, off, 0);
}

/* An offset of -1 is readv/writev at the file's position, on any fd (a pipe
 * too): without flags, the readv/writev wrapper's; with flags, libc's. */
static ssize_t w_preadv2(int fd, const struct iovec *iov, int iovcnt, off_t off, int flags) {
    if (inside() && off == -1 && !flags) return w_readv(fd, iov, iovcnt);
    if (!inside() || off < 0 || (flags & RWF_NOWAIT) || !vector_ok(iov, iovcnt))
        return preadv2(fd, iov, iovcnt, off, flags);
    return at_offset(false, fd, iov, iovcnt, off, flags);
}

static ssize_t w_pwritev2(int fd, const struct iovec *iov, int iovcnt, off_t off, int flags) {
    if (inside() && off == -1 && !flags) return w_writev(fd, iov, iovcnt);
    if (!inside() || off < 0 || (flags & RWF_NOWAIT) || !vector_ok(iov, iovcnt))
        return pwritev2(fd, iov, iovcnt, off, flags);
    return at_offset(true, fd, iov, iovcnt, off, flags);
}

/* ---- connections ----------------------------------------------------------- */

static bool is_timeout_option(int level, int optname) {
    if (level != SOL_SOCKET) return false;
    switch (optname) {
    case SO_RCVTIMEO:
    case SO_SNDTIMEO:
#if defined(SO_RCVTIMEO_OLD) && defined(SO_RCVTIMEO_NEW)
    case (SO_RCVTIMEO == SO_RCVTIMEO_OLD ? SO_RCVTIMEO_NEW : SO_RCVTIMEO_OLD):
    case (SO_SNDTIMEO == SO_SNDTIMEO_OLD ? SO_SNDTIMEO_NEW : SO_SNDTIMEO_OLD):
#endif
        return true;
    default: return false;
    }
}

/* Any thread, inside a tasklet or not: a new timeout makes every
 * scheduler's memory of timeouts stale (user_view). */
static int w_setsockopt(int fd, int level, int optname, const void *val, socklen_t len) {
    int r = setsockopt(fd, level, optname, val, len);
    if (is_timeout_option(level, optname)) user_view_changed();
    return r;
}

/* fcntl and ioctl are diverted only to see O_NONBLOCK change (F_SETFL,
 * FIONBIO) and new numbers (F_DUPFD); the argument is passed on as glibc's
 * own fcntl reads it (one word, whatever its type). */
static int w_fcntl(int fd, int cmd, ...) {
    va_list ap;
    va_start(ap, cmd);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    int r = fcntl(fd, cmd, arg);
    if (cmd == F_SETFL || cmd == F_DUPFD || cmd == F_DUPFD_CLOEXEC) user_view_changed();
    return r;
}

static int w_ioctl(int fd, unsigned long request, ...) {
    va_list ap;
    va_start(ap, request);
    void *arg = va_arg(ap, void *);
    va_end(ap);
    int r = ioctl(fd, request, arg);
    if (request == FIONBIO) user_view_changed();
    return r;
}

/* Closes made inside libc, on the program's behalf. */
static int w_fclose(FILE *f) {
    int r = fclose(f);
    user_view_changed();
    return r;
}

static int w_closedir(DIR *d) {
    int r = closedir(d);
    user_view_changed();
    return r;
}

static int w_pclose(FILE *f) {
    int r = pclose(f);
    user_view_changed();
    return r;
}

static int w_close_range(unsigned first, unsigned last, int flags) {
    int r = close_range(first, last, flags);
    user_view_changed();
    return r;
}

static void w_closefrom(int lowfd) {
    closefrom(lowfd);
    user_view_changed();
}

static int w_socket(int domain, int type, int protocol) {
    int fd = socket(domain, type, protocol);
    user_view_changed();
    if (fd >= 0 && coil__is_installed() && coil__sched_cur)
        coil__fd_fresh(fd, COIL__FD_UNKNOWN, false); /* learnt on first use */
    return fd;
}

static int w_socketpair(int domain, int type, int protocol, int sv[2]) {
    int r = socketpair(domain, type, protocol, sv);
    user_view_changed();
    if (r == 0 && coil__is_installed() && coil__sched_cur) {
        coil__fd_fresh(sv[0], COIL__FD_UNKNOWN, false);
        coil__fd_fresh(sv[1], COIL__FD_UNKNOWN, false);
    }
    return r;
}

/* coil_accept's fd is SOCK_CLOEXEC and blocking: give it accept4's flags. */
static int accept_common(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags) {
    int r = coil_accept_dl(fd, addr, addrlen, sock_deadline(fd, SO_RCVTIMEO));
    user_view_changed();
    if (r < 0) return (int)data_result(r);
    if (!(flags & SOCK_CLOEXEC)) fcntl(r, F_SETFD, 0);
    if (flags & SOCK_NONBLOCK) fcntl(r, F_SETFL, fcntl(r, F_GETFL) | O_NONBLOCK);
    return r;
}

static int w_accept(int fd, struct sockaddr *addr, socklen_t *addrlen) {
    if (!inside() || user_nonblock(fd) != 0) {
        int r = accept(fd, addr, addrlen);
        user_view_changed();
        if (r >= 0 && coil__is_installed() && coil__sched_cur)
            coil__fd_fresh(r, COIL__FD_UNKNOWN, false);
        return r;
    }
    return accept_common(fd, addr, addrlen, 0);
}

static int w_accept4(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags) {
    if (!inside() || user_nonblock(fd) != 0) {
        int r = accept4(fd, addr, addrlen, flags);
        user_view_changed();
        if (r >= 0 && coil__is_installed() && coil__sched_cur)
            coil__fd_fresh(r, COIL__FD_UNKNOWN, false);
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
    int r =
        !coil__is_installed() || !coil__sched_cur ? close(fd) : (int)libc_result(coil_close(fd));
    user_view_changed();
    return r;
}

/* dup2/dup3 onto a number tasklets wait on: the number is about to name
 * another file, as after close, so its waiters wake with EBADF and coil
 * forgets what it knew of it (before the call: the epoll backend drops its
 * registration while the number still names the old file). Not when the call
 * would fail before closing anything: oldfd not open (EBADF), or dup2 onto
 * itself (a no-op; dup3 onto itself is EINVAL). */
static bool dup_replaces(int oldfd, int newfd) {
    if (!coil__is_installed() || !coil__sched_cur || oldfd == newfd) return false;
    int saved = errno;
    bool open = fcntl(oldfd, F_GETFD) >= 0;
    errno = saved;
    return open;
}

static int w_dup2(int oldfd, int newfd) {
    if (dup_replaces(oldfd, newfd)) coil__fd_forget(newfd);
    int r = dup2(oldfd, newfd);
    user_view_changed();
    return r;
}

static int w_dup3(int oldfd, int newfd, int flags) {
    if (!(flags & ~O_CLOEXEC) && dup_replaces(oldfd, newfd)) coil__fd_forget(newfd);
    int r = dup3(oldfd, newfd, flags);
    user_view_changed();
    return r;
}

/* ---- waiting for a child ----------------------------------------------------- */

/* waitpid/wait4/waitid/wait inside a tasklet: ask with WNOHANG added (the
 * caller's other options and its exact result are kept); while no child has
 * changed state, park. A specific child (pid > 0, P_PID, P_PIDFD) is waited
 * for on its pidfd, which polls readable when it exits (Linux 5.3); for any
 * child (-1, 0, a process group, P_ALL, P_PGID), for stops and continues
 * (WUNTRACED, WCONTINUED: a pidfd does not signal them) and where pidfd_open
 * fails, there is nothing to wait on: the tasklet sleeps, 1 ms at first,
 * doubling up to 32 ms, and asks again (a child's exit is then seen up to
 * 32 ms late). A killed tasklet's wait fails with ECANCELED. */
struct child_wait {
    bool id; /* waitid, else wait4 */
    pid_t pid;
    int *status, options;
    struct rusage *ru;
    idtype_t idtype;
    id_t idv;
    siginfo_t *info;
};

/* 1: done (result in *r), 0: nothing yet. */
static int child_try(struct child_wait *c, pid_t *r) {
    if (c->id) {
        if (c->info) c->info->si_pid = 0;
        siginfo_t local;
        siginfo_t *info = c->info ? c->info : &local;
        if (!c->info) local.si_pid = 0;
        *r = waitid(c->idtype, c->idv, info, c->options | WNOHANG);
        return *r != 0 || info->si_pid != 0;
    }
    *r = wait4(c->pid, c->status, c->options | WNOHANG, c->ru);
    return *r != 0;
}

static pid_t park_child(struct child_wait *c) {
    pid_t r;
    if (child_try(c, &r)) return r;
    int pidfd = -1;
    bool own = false;
    if (!(c->options & (WUNTRACED | WCONTINUED))) {
        if (!c->id && c->pid > 0) {
            pidfd = (int)syscall(SYS_pidfd_open, c->pid, 0);
            own = pidfd >= 0;
        } else if (c->id && c->idtype == P_PID) {
            pidfd = (int)syscall(SYS_pidfd_open, (pid_t)c->idv, 0);
            own = pidfd >= 0;
        } else if (c->id && c->idtype == P_PIDFD) {
            pidfd = (int)c->idv;
        }
    }
    int64_t backoff = COIL_MSEC;
    for (;;) {
        int err;
        if (pidfd >= 0) {
            struct pollfd p = {.fd = pidfd, .events = POLLIN};
            err = coil__wait_fds(&p, 1, COIL_FOREVER);
        } else {
            err = coil_sleep_until(coil_now() + backoff) ? -ECANCELED : 0;
            if (backoff < 32 * COIL_MSEC) backoff *= 2;
        }
        if (err && err != -ETIMEDOUT) {
            r = (pid_t)libc_result(err);
            break;
        }
        if (child_try(c, &r)) break;
    }
    if (own) {
        int saved = errno;
        close(pidfd);
        errno = saved;
    }
    return r;
}

static pid_t w_wait4(pid_t pid, int *status, int options, struct rusage *ru) {
    if (!inside() || (options & WNOHANG)) return wait4(pid, status, options, ru);
    struct child_wait c = {.pid = pid, .status = status, .options = options, .ru = ru};
    return park_child(&c);
}

static pid_t w_waitpid(pid_t pid, int *status, int options) {
    if (!inside() || (options & WNOHANG)) return waitpid(pid, status, options);
    return w_wait4(pid, status, options, NULL);
}

static pid_t w_wait(int *status) {
    if (!inside()) return wait(status);
    return w_wait4(-1, status, 0, NULL);
}

static int w_waitid(idtype_t idtype, id_t id, siginfo_t *info, int options) {
    if (!inside() || (options & WNOHANG)) return waitid(idtype, id, info, options);
    struct child_wait c = {
        .id = true, .idtype = idtype, .idv = id, .info = info, .options = options};
    return (int)park_child(&c);
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
    if (!inside() || !req) return nanosleep(req, rem); /* NULL: the kernel's EFAULT */
    if (req->tv_sec < 0 || req->tv_nsec < 0 || req->tv_nsec >= COIL_SEC) {
        errno = EINVAL;
        return -1;
    }
    return park_sleep(deadline_ts(req), rem);
}

static int w_clock_nanosleep(clockid_t clk, int flags, const struct timespec *req,
                             struct timespec *rem) {
    /* CPU-time clocks do not advance while the tasklet is parked. A clock
     * clock_gettime does not know goes to libc too, with errno as it was:
     * clock_nanosleep returns its error and leaves errno alone. */
    struct timespec clk_now;
    int saved = errno;
    if (!inside() || !req || clk == CLOCK_PROCESS_CPUTIME_ID || clk == CLOCK_THREAD_CPUTIME_ID ||
        clock_gettime(clk, &clk_now) != 0) {
        errno = saved;
        return clock_nanosleep(clk, flags, req, rem);
    }
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
    /* A literal host and service of one socket type is answered here, with
     * the caller's own flags: the answer a worker would give, without
     * waiting behind other tasklets' lookups (coil__resolve_literal says
     * which queries qualify, and why). A name goes to the pool. */
    struct addrinfo *r = NULL;
    if (!t->killed && coil__resolve_literal(node, service, hints, &r) == 0) {
        *res = r;
        return 0;
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

/* ---- dlopen: the objects it loads are diverted at once ------------------------ */

/* What the loader does with a dlopen depends on who calls it: glibc takes
 * the caller from the return address of dlopen (the object whose code
 * called it) and uses it for the namespace to load into, for the search of
 * a name without a slash (the caller's DT_RUNPATH; the DT_RPATH of it and
 * of the objects that loaded it) and for $ORIGIN in the name. A wrapper
 * that called dlopen itself would be that caller: coil's object, with its
 * own search path. So the wrapper is a stub (below, per architecture) that
 * first asks dl_direct whether the answer cannot depend on the caller; if
 * so, coil makes the call and then diverts the new objects
 * (coil__install_loaded); if not, the stub jumps to the real function with
 * the caller's return address still in place, exactly as if it had not been
 * diverted, and the objects that call loads are diverted by the next
 * coil_install (as before this wrapper: documented in coil.h). */
void *coil__dl_real_dlopen = (void *)dlopen;
void *coil__dl_real_dlmopen = (void *)dlmopen;
int coil__dl_dlopen(uintptr_t file, uintptr_t mode, uintptr_t unused, const void *caller,
                    void **out);
int coil__dl_dlmopen(uintptr_t lmid, uintptr_t file, uintptr_t mode, const void *caller,
                     void **out);
extern char coil__w_dlopen[], coil__w_dlmopen[];

struct dl_search {
    uintptr_t caller, me;
    bool differs; /* a DT_RPATH anywhere, or a DT_RUNPATH in the caller or coil */
};

static int dl_search_object(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    struct dl_search *d = data;
    bool caller = false, me = false;
    const ElfW(Dyn) *dyn = NULL;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr, hi = lo + ph->p_memsz;
        if (ph->p_type == PT_DYNAMIC) dyn = (const ElfW(Dyn) *)lo;
        if (ph->p_type != PT_LOAD) continue;
        caller |= d->caller >= lo && d->caller < hi;
        me |= d->me >= lo && d->me < hi;
    }
    for (; dyn && dyn->d_tag != DT_NULL; dyn++)
        if (dyn->d_tag == DT_RPATH || (dyn->d_tag == DT_RUNPATH && (caller || me)))
            d->differs = true;
    return d->differs;
}

/* True when glibc's dlopen of file in namespace ns gives the same answer
 * whoever calls it: a path with a slash and no $ (no search, no $ORIGIN),
 * or a bare name searched without any object's DT_RPATH and without a
 * DT_RUNPATH of the caller or of coil (then only LD_LIBRARY_PATH, the cache
 * and the default directories count, the same for every caller). */
static bool dl_caller_free(const char *file, const void *caller) {
    if (!file || strchr(file, '$')) return false;
    if (strchr(file, '/')) return true;
    struct dl_search d = {(uintptr_t)caller, (uintptr_t)(void *)coil__w_dlopen, false};
    dl_iterate_phdr(dl_search_object, &d);
    return !d.differs;
}

/* The namespace of the object that contains caller (the base namespace if
 * none does, as glibc decides). */
static Lmid_t dl_caller_ns(const void *caller) {
    Dl_info info;
    struct link_map *map = NULL;
    Lmid_t ns = LM_ID_BASE;
    if (dladdr1(caller, &info, (void **)&map, RTLD_DL_LINKMAP) && map &&
        dlinfo(map, RTLD_DI_LMID, &ns) != 0)
        ns = -1; /* unknown: leave it to the loader */
    return ns;
}

/* 1 with *out set when coil made the call (and diverted what it loaded);
 * 0: the stub hands the call to the loader as the caller made it. */
int coil__dl_dlopen(uintptr_t file_, uintptr_t mode, uintptr_t unused, const void *caller,
                    void **out) {
    (void)unused;
    const char *file = (const char *)file_;
    if (!coil__is_installed() || !dl_caller_free(file, caller) ||
        dl_caller_ns(caller) != LM_ID_BASE)
        return 0;
    *out = dlopen(file, (int)mode);
    if (*out) coil__install_loaded();
    return 1;
}

/* dlmopen into the base namespace is dlopen's case. Another namespace has
 * a C library of its own (its own errno, its own malloc): its objects are
 * not diverted. */
int coil__dl_dlmopen(uintptr_t lmid, uintptr_t file_, uintptr_t mode, const void *caller,
                     void **out) {
    const char *file = (const char *)file_;
    if (!coil__is_installed() || (Lmid_t)lmid != LM_ID_BASE || !dl_caller_free(file, caller))
        return 0;
    *out = dlmopen(LM_ID_BASE, file, (int)mode);
    if (*out) coil__install_loaded();
    return 1;
}

/* The stubs: save the arguments, ask coil__dl_<fn>(a0, a1, a2, caller,
 * &result); when it says 1, return the result; else restore the arguments
 * and the frame and jump to the real function, whose return address is then
 * the caller's. */
#if defined(__x86_64__)
#if defined(__CET__)
#define DL_ENDBR "endbr64\n"
#else
#define DL_ENDBR ""
#endif
#define DL_STUB(fn)                                                                                \
    __asm__(".text\n"                                                                              \
            ".globl coil__w_" #fn "\n"                                                             \
            ".hidden coil__w_" #fn "\n"                                                            \
            ".type coil__w_" #fn ", @function\n"                                                   \
            ".p2align 4\n"                                                                         \
            "coil__w_" #fn ":\n"                                                                   \
            ".cfi_startproc\n" DL_ENDBR "pushq %rdi\n"                                             \
            ".cfi_adjust_cfa_offset 8\n"                                                           \
            "pushq %rsi\n"                                                                         \
            ".cfi_adjust_cfa_offset 8\n"                                                           \
            "pushq %rdx\n"                                                                         \
            ".cfi_adjust_cfa_offset 8\n"                                                           \
            "subq $16, %rsp\n"                                                                     \
            ".cfi_adjust_cfa_offset 16\n"                                                          \
            "movq 40(%rsp), %rcx\n"                                                                \
            "movq %rsp, %r8\n"                                                                     \
            "call coil__dl_" #fn "\n"                                                              \
            "testl %eax, %eax\n"                                                                   \
            "jz 1f\n"                                                                              \
            "movq (%rsp), %rax\n"                                                                  \
            "addq $40, %rsp\n"                                                                     \
            ".cfi_adjust_cfa_offset -40\n"                                                         \
            "ret\n"                                                                                \
            ".cfi_adjust_cfa_offset 40\n"                                                          \
            "1:\n"                                                                                 \
            "addq $16, %rsp\n"                                                                     \
            ".cfi_adjust_cfa_offset -16\n"                                                         \
            "popq %rdx\n"                                                                          \
            ".cfi_adjust_cfa_offset -8\n"                                                          \
            "popq %rsi\n"                                                                          \
            ".cfi_adjust_cfa_offset -8\n"                                                          \
            "popq %rdi\n"                                                                          \
            ".cfi_adjust_cfa_offset -8\n"                                                          \
            "jmp *coil__dl_real_" #fn "(%rip)\n"                                                   \
            ".cfi_endproc\n"                                                                       \
            ".size coil__w_" #fn ", .-coil__w_" #fn "\n")
#elif defined(__aarch64__)
#if defined(__ARM_FEATURE_BTI_DEFAULT)
#define DL_BTI "bti c\n"
#else
#define DL_BTI ""
#endif
#define DL_STUB(fn)                                                                                \
    __asm__(".text\n"                                                                              \
            ".globl coil__w_" #fn "\n"                                                             \
            ".hidden coil__w_" #fn "\n"                                                            \
            ".type coil__w_" #fn ", %function\n"                                                   \
            ".p2align 4\n"                                                                         \
            "coil__w_" #fn ":\n"                                                                   \
            ".cfi_startproc\n" DL_BTI "stp x29, x30, [sp, #-48]!\n"                                \
            ".cfi_def_cfa_offset 48\n"                                                             \
            ".cfi_offset 29, -48\n"                                                                \
            ".cfi_offset 30, -40\n"                                                                \
            "mov x29, sp\n"                                                                        \
            "stp x0, x1, [sp, #16]\n"                                                              \
            "str x2, [sp, #32]\n"                                                                  \
            "mov x3, x30\n"                                                                        \
            "add x4, sp, #40\n"                                                                    \
            "bl coil__dl_" #fn "\n"                                                                \
            "cbz w0, 1f\n"                                                                         \
            "ldr x0, [sp, #40]\n"                                                                  \
            "ldp x29, x30, [sp], #48\n"                                                            \
            "ret\n"                                                                                \
            "1:\n"                                                                                 \
            "ldp x0, x1, [sp, #16]\n"                                                              \
            "ldr x2, [sp, #32]\n"                                                                  \
            "ldp x29, x30, [sp], #48\n"                                                            \
            "adrp x16, coil__dl_real_" #fn "\n"                                                    \
            "ldr x16, [x16, :lo12:coil__dl_real_" #fn "]\n"                                        \
            "br x16\n"                                                                             \
            ".cfi_endproc\n"                                                                       \
            ".size coil__w_" #fn ", .-coil__w_" #fn "\n")
#else
#error "coil_install: the dlopen stub of this architecture"
#endif
DL_STUB(dlopen);
DL_STUB(dlmopen);

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

static ssize_t w___pread_chk(int fd, void *buf, size_t n, off_t off, size_t buflen) {
    if (n > buflen) __chk_fail();
    return w_pread(fd, buf, n, off);
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

/* ---- the table the patcher (src/unix/install.c) diverts calls by ---------------- */

#define WRAP(name)                                                                                 \
    { #name, (void *)w_##name }
const struct coil__wrap coil__wraps[] = {
    WRAP(read),
    WRAP(write),
    WRAP(readv),
    WRAP(writev),
    WRAP(recv),
    WRAP(send),
    WRAP(recvfrom),
    WRAP(sendto),
    WRAP(recvmsg),
    WRAP(sendmsg),
    WRAP(socket),
    WRAP(setsockopt),
    WRAP(fcntl),
    {"fcntl64", (void *)w_fcntl},
    WRAP(ioctl),
    WRAP(fclose),
    WRAP(closedir),
    WRAP(pclose),
    WRAP(close_range),
    WRAP(closefrom),
    WRAP(socketpair),
    WRAP(accept),
    WRAP(accept4),
    WRAP(connect),
    WRAP(close),
    WRAP(poll),
    WRAP(ppoll),
    WRAP(select),
    WRAP(pselect),
    WRAP(epoll_wait),
    WRAP(epoll_pwait),
    WRAP(nanosleep),
    WRAP(clock_nanosleep),
    WRAP(usleep),
    WRAP(sleep),
    WRAP(getaddrinfo),
    WRAP(getnameinfo),
    WRAP(gethostbyname),
    WRAP(gethostbyname_r),
    WRAP(__read_chk),
    WRAP(__recv_chk),
    WRAP(__recvfrom_chk),
    WRAP(__poll_chk),
    WRAP(__ppoll_chk),
    WRAP(dup2),
    WRAP(dup3),
    WRAP(wait),
    WRAP(waitpid),
    WRAP(wait4),
    WRAP(waitid),
    WRAP(recvmmsg),
    WRAP(sendmmsg),
    WRAP(sendfile),
    WRAP(splice),
    {"pread", (void *)w_pread},
    {"pread64", (void *)w_pread},
    {"pwrite", (void *)w_pwrite},
    {"pwrite64", (void *)w_pwrite},
    {"preadv", (void *)w_preadv},
    {"preadv64", (void *)w_preadv},
    {"pwritev", (void *)w_pwritev},
    {"pwritev64", (void *)w_pwritev},
    {"preadv2", (void *)w_preadv2},
    {"preadv64v2", (void *)w_preadv2},
    {"pwritev2", (void *)w_pwritev2},
    {"pwritev64v2", (void *)w_pwritev2},
    {"__pread_chk", (void *)w___pread_chk},
    {"__pread64_chk", (void *)w___pread_chk},
    {"dlopen", (void *)coil__w_dlopen},
    {"dlmopen", (void *)coil__w_dlmopen},
};
const size_t coil__nwraps = sizeof coil__wraps / sizeof coil__wraps[0];
