// coil-test: link-shared
/* coil_install(): plain libc calls made inside a tasklet park only that
 * tasklet and keep libc's results and errno; outside tasklets they are
 * libc's. This file links libcoil.so (the marker above), so its own calls are
 * diverted; coil_install is called once, by the group setup (twice: it is
 * idempotent), and the cases that need "not installed" run in a child.
 * Covered:
 *  - each blocking call parks only its tasklet (a ticker tasklet keeps
 *    running while it waits) and returns the right value once another tasklet
 *    makes it ready: read, readv, write, writev, recv, recvfrom, recvmsg,
 *    send, accept, accept4, connect, sleep, usleep, nanosleep,
 *    clock_nanosleep (relative; TIMER_ABSTIME on CLOCK_MONOTONIC and
 *    CLOCK_REALTIME), poll, ppoll, select, pselect, epoll_wait, epoll_pwait,
 *    made ready or timing out; poll/select used as sleeps;
 *  - libc's contract, compared with the same calls made outside coil_run:
 *    -1 and errno (EBADF, ENOTSOCK, EINVAL, ENOTCONN, ECONNREFUSED; EAGAIN
 *    at once on fds the program made O_NONBLOCK with fcntl, SOCK_NONBLOCK or
 *    FIONBIO, which stay so, and with MSG_DONTWAIT); MSG_PEEK; MSG_WAITALL
 *    (recv, recvfrom, recvmsg); zero timeouts never park; poll's revents
 *    (POLLIN, POLLOUT, POLLHUP, POLLNVAL; a wait for POLLRDHUP alone, or
 *    with no events, for POLLHUP) and select's sets and timeval (also a
 *    tv_usec of a second or more, which glibc normalises);
 *    SO_RCVTIMEO and SO_SNDTIMEO (EAGAIN; EINPROGRESS for connect); the fd
 *    flags of accept and accept4; a kill (ECANCELED, the sleeps too)
 *    and a close by another tasklet (EBADF); a blocking write or send is
 *    complete; a killed tasklet's EINTR retry loop around nanosleep ends; a
 *    large writev into a pipe does not block the thread;
 *  - the resolver (getaddrinfo, getnameinfo, gethostbyname, gethostbyname_r)
 *    answers as outside coil_run, for /etc/hosts names and for names that do
 *    not exist (under Valgrind numeric lookups only: see names_resolvable);
 *    getaddrinfo of a numeric host and service answers while every worker
 *    of the offload pool is held; in a killed tasklet its calls fail (a
 *    numeric getaddrinfo too);
 *  - dup2 and dup3 onto an fd a tasklet reads wake it with EBADF and the
 *    number then reads the new file; dup2 onto itself leaves it waiting;
 *  - recvmmsg (with and without MSG_WAITFORONE) and sendmmsg on UDP park;
 *  - sendfile of 1 MiB to a slow reader over a socketpair parks only its
 *    tasklet; the data arrives whole;
 *  - waitpid, wait4(-1), waitid(P_PID, P_ALL) and wait park while a child
 *    sleeps, its status passed through; WNOHANG is libc's; ECHILD; a kill
 *    (ECANCELED);
 *  - pass-through: before coil_run, on another thread while a scheduler
 *    runs, and in a child forked from a tasklet, the calls are libc's;
 *  - coil_uninstall (a read in a tasklet blocks the whole thread again),
 *    coil_install again, idempotence, and COIL_INSTALL=1 in the environment.
 * A build whose sanitizer runtime is linked into the executable (clang's
 * ASan) binds the executable's own calls of the functions it intercepts
 * (read, recv, accept, poll, getaddrinfo, ...) to the interceptors there: no
 * GOT entry to rewrite, so those calls are not diverted, and the tests that
 * need one of them skip there (the group setup lists them on stderr).
 */
#define _GNU_SOURCE /* accept4, ppoll, POLLRDHUP, gethostbyname_r */
// coil-test: tsan (the resolver's calls go to the offload pool; plain threads call the diverted
// functions)
#include "coil_test.h"

#include <dlfcn.h>
#include <fcntl.h>
#include <netdb.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <sys/select.h>
#include <sys/resource.h>
#include <sys/sendfile.h>
#include <sys/uio.h>
#include <sys/wait.h>

#if defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) ||                         \
    __has_feature(memory_sanitizer)
#define SANITIZER_IN_EXECUTABLE 1
#endif
#endif
#ifndef SANITIZER_IN_EXECUTABLE
#define SANITIZER_IN_EXECUTABLE 0
#endif

#define MS(n) ((int64_t)(n)*COIL_MSEC)

/* The wrapped functions this executable binds to itself (a sanitizer's
 * interceptors, linked into the executable): its calls of those have no GOT
 * entry to rewrite, so they are not diverted. None in a plain build. */
static const char *const wrapped[] = {"read",          "write",
                                      "readv",         "writev",
                                      "recv",          "send",
                                      "recvfrom",      "sendto",
                                      "recvmsg",       "sendmsg",
                                      "accept",        "accept4",
                                      "connect",       "close",
                                      "socket",        "socketpair",
                                      "poll",          "ppoll",
                                      "select",        "pselect",
                                      "epoll_wait",    "epoll_pwait",
                                      "sleep",         "usleep",
                                      "nanosleep",     "clock_nanosleep",
                                      "getaddrinfo",   "getnameinfo",
                                      "gethostbyname", "gethostbyname_r",
                                      "dup2",          "dup3",
                                      "wait",          "waitpid",
                                      "wait4",         "waitid",
                                      "recvmmsg",      "sendmmsg",
                                      "sendfile",      "splice"};
#define NWRAPPED (sizeof wrapped / sizeof wrapped[0])
static bool bound_in_executable[NWRAPPED];

int main(int argc, char **argv);

static bool defined_in_executable(const char *name) {
    void *f = dlsym(RTLD_DEFAULT, name);
    Dl_info fi, mi;
    if (!f || !dladdr(f, &fi) || !dladdr((void *)main, &mi)) return false;
    return fi.dli_fbase == mi.dli_fbase;
}

/* Skips the test unless every function named (NULL-terminated) is diverted. */
static void need_diverted(const char *const *names) {
    for (; *names; names++) {
        for (size_t i = 0; i < NWRAPPED; i++) {
            if (strcmp(*names, wrapped[i]) != 0 || !bound_in_executable[i]) continue;
            print_message("skipped: this executable binds %s to itself (a sanitizer's "
                          "interceptor): its calls are not diverted\n",
                          *names);
            skip();
        }
    }
}
#define NEED(...) need_diverted((const char *const[]){__VA_ARGS__, NULL})

/* A call's result and errno, taken together. */
#define CALL(p, expr)                                                                              \
    do {                                                                                           \
        errno = 0;                                                                                 \
        long r_ = (long)(expr);                                                                    \
        (p)->err = errno;                                                                          \
        (p)->r = r_;                                                                               \
    } while (0)
#define CALL2(p, expr)                                                                             \
    do {                                                                                           \
        errno = 0;                                                                                 \
        long r_ = (long)(expr);                                                                    \
        (p)->err2 = errno;                                                                         \
        (p)->r2 = r_;                                                                              \
    } while (0)

static void close_fd(int *fd) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
}

/* How long the cases that time out wait: long enough that the main tasklet
 * (which checks after 100 ms that the call still waits) is not late for it
 * on a loaded machine or under Valgrind. */
static int64_t timeo(void) {
    return coil_test_under_valgrind() ? MS(1000) : MS(300);
}

static struct timeval timeo_tv(void) {
    return (struct timeval){timeo() / COIL_SEC, (suseconds_t)(timeo() % COIL_SEC / 1000)};
}

static int64_t ts_ns(const struct timespec *ts) {
    return (int64_t)ts->tv_sec * COIL_SEC + ts->tv_nsec;
}

static struct timespec ns_ts(int64_t ns) {
    return (struct timespec){.tv_sec = ns / COIL_SEC, .tv_nsec = ns % COIL_SEC};
}

static int64_t tv_ns(const struct timeval *tv) {
    return (int64_t)tv->tv_sec * COIL_SEC + (int64_t)tv->tv_usec * 1000;
}

static int fd_flags(int fd) {
    return fcntl(fd, F_GETFD);
}

static int fl_nonblock(int fd) {
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : (fl & O_NONBLOCK) != 0;
}

/* A number that names no file (above what the scheduler's own fds take). */
static int closed_fd_number(void) {
    int p[2];
    assert_int_equal(pipe(p), 0);
    int fd = fcntl(p[0], F_DUPFD, 600);
    assert_true(fd >= 600);
    close(p[0]);
    close(p[1]);
    close(fd);
    return fd;
}

/* ==== one blocking call in its own tasklet =================================== */

/* The call runs in a tasklet of its own; the main tasklet lets it wait
 * (wait_ns, 100 ms by default), checks that it still waits while a ticker
 * tasklet ticks, then calls ready() (if any) and joins it. */
struct park {
    void (*call)(struct park *p);  /* the blocking call; sets r and err */
    void (*ready)(struct park *p); /* main tasklet: makes it ready (NULL: it times out) */
    void (*after)(struct park *p); /* main tasklet, once the call returned (may be NULL) */
    int64_t wait_ns;
    int fd[4];
    struct coil_test_addr a, b;
    long r, r2;
    int err, err2;
    int timeout_ms;
    char buf[256];
    struct pollfd pfd[4];
    struct timeval tv;
    struct timespec ts, rem, when;
    struct epoll_event ev[4];
    struct sockaddr_storage addr;
    socklen_t addrlen;
    fd_set rd, wr;
    int64_t t0, t1;  /* when the call began and returned */
    int64_t t_ready; /* when the main tasklet called ready() */
    bool done;
    long ticks; /* the ticker's ticks while the call waited */
    coil_id waiter, helper;
    void *ctx;
};

static struct park park_of(void (*call)(struct park *), void (*ready)(struct park *)) {
    struct park p;
    memset(&p, 0, sizeof p);
    p.call = call;
    p.ready = ready;
    for (int i = 0; i < 4; i++)
        p.fd[i] = -1;
    p.timeout_ms = 5000;
    return p;
}

static void park_close(struct park *p) {
    for (int i = 0; i < 4; i++)
        close_fd(&p->fd[i]);
}

static int64_t park_elapsed(const struct park *p) {
    return p->t1 - p->t0;
}

static void park_call(void *arg) {
    struct park *p = arg;
    p->t0 = coil_now();
    p->call(p);
    p->t1 = coil_now();
    p->done = true;
}

/* Waits, after the call's wait time, until the ticker has ticked more than
 * twice (the proof that the thread is not blocked) or *done is set, for 10 s
 * at most: a hand-shake rather than a count within a fixed window, which a
 * CPU-starved run (the suite beside a parallel build) could miss. */
static void await_ticks(const struct coil_test_ticker *t, const bool *done) {
    int64_t limit = coil_now() + 10 * COIL_SEC;
    while (t->ticks <= 2 && !(done && *done) && coil_now() < limit) /* coil_sleep: reloaded */
        coil_sleep(MS(1));
}

static void park_main(void *arg) {
    struct park *p = arg;
    struct coil_test_ticker ticker = {0};
    coil_id t = coil_spawn(coil_test_ticker_fn, &ticker, NULL);
    p->waiter = coil_spawn(park_call, p, NULL);
    EXPECT(p->waiter > 0);
    EXPECT_EQ(coil_sleep(p->wait_ns ? p->wait_ns : MS(100)), 0);
    await_ticks(&ticker, &p->done);
    p->ticks = ticker.ticks;
    EXPECT(!p->done);         /* the call still waits... */
    EXPECT(ticker.ticks > 2); /* ...and the thread is not blocked */
    p->t_ready = coil_now();
    if (p->ready) p->ready(p);
    if (!EXPECT_EQ(coil_join(p->waiter, coil_test_in(15 * COIL_SEC)), 0)) {
        coil_kill(p->waiter);
        coil_join(p->waiter, COIL_FOREVER);
    }
    if (p->after) p->after(p);
    ticker.stop = true;
    coil_join(t, COIL_FOREVER);
}

/* Runs the case; a failed check also shows what the call returned. */
static void park_run(struct park *p) {
    coil_test_reset_failures();
    int rc = coil_run(park_main, p);
    if (coil_test_failure()->count || rc != 0)
        print_message("the call returned %ld (errno %s) after %lld ms; %ld ticks while waiting\n",
                      p->r, strerror(p->err), (long long)((p->t1 - p->t0) / COIL_MSEC), p->ticks);
    coil_test_assert_no_failure();
    assert_int_equal(rc, 0);
}

/* ---- calls and readiness shared by several cases ---------------------------- */

static void call_read(struct park *p) {
    CALL(p, read(p->fd[0], p->buf, sizeof p->buf));
}

static void call_recv(struct park *p) {
    CALL(p, recv(p->fd[0], p->buf, sizeof p->buf, 0));
}

static void call_write_x(struct park *p) {
    CALL(p, write(p->fd[1], "x", 1));
}

static void ready_write_hello(struct park *p) {
    EXPECT_EQ(write(p->fd[1], "hello", 5), 5);
}

static void ready_send_hello(struct park *p) {
    EXPECT_EQ(send(p->fd[1], "hello", 5, 0), 5);
}

/* Makes room in a full pipe: one page read from its other end. */
static void ready_read_page(struct park *p) {
    char page[4096];
    EXPECT_EQ(read(p->fd[0], page, sizeof page), (long)sizeof page);
}

/* fd[0] server, fd[1] client: a connected blocking TCP pair over 127.0.0.1. */
static void park_tcp_pair(struct park *p) {
    assert_int_equal(coil_test_raw_tcp_pair(AF_INET, &p->fd[1], &p->fd[0]), 0);
}

static void set_timeo(int fd, int opt, int64_t ns) {
    struct timeval tv = {.tv_sec = ns / COIL_SEC, .tv_usec = (ns % COIL_SEC) / 1000};
    assert_int_equal(setsockopt(fd, SOL_SOCKET, opt, &tv, sizeof tv), 0);
}

/* ==== 1. every blocking call parks only its tasklet ========================== */

static void test_read_pipe_parks(void **state) {
    (void)state;
    NEED("read");
    struct park p = park_of(call_read, ready_write_hello);
    assert_int_equal(pipe(p.fd), 0);
    park_run(&p);
    assert_int_equal(p.r, 5);
    assert_memory_equal(p.buf, "hello", 5);
    park_close(&p);
}

static void call_readv(struct park *p) {
    struct iovec iov[2] = {{p->buf, 2}, {p->buf + 2, 10}};
    CALL(p, readv(p->fd[0], iov, 2));
}

static void test_readv_pipe_parks(void **state) {
    (void)state;
    NEED("readv");
    struct park p = park_of(call_readv, ready_write_hello);
    assert_int_equal(pipe(p.fd), 0);
    park_run(&p);
    assert_int_equal(p.r, 5);
    assert_memory_equal(p.buf, "hello", 5);
    park_close(&p);
}

static void test_recv_tcp_parks(void **state) {
    (void)state;
    NEED("recv");
    struct park p = park_of(call_recv, ready_send_hello);
    park_tcp_pair(&p);
    park_run(&p);
    assert_int_equal(p.r, 5);
    assert_memory_equal(p.buf, "hello", 5);
    park_close(&p);
}

static void call_recvfrom(struct park *p) {
    p->addrlen = sizeof p->addr;
    CALL(p, recvfrom(p->fd[0], p->buf, sizeof p->buf, 0, (struct sockaddr *)&p->addr, &p->addrlen));
}

static void ready_sendto(struct park *p) {
    EXPECT_EQ(sendto(p->fd[1], "hello", 5, 0, COIL_TEST_SA(&p->a), p->a.len), 5);
}

static void test_recvfrom_udp_parks(void **state) {
    (void)state;
    NEED("recvfrom");
    struct park p = park_of(call_recvfrom, ready_sendto);
    p.fd[0] = coil_test_raw_bound(AF_INET, SOCK_DGRAM, -1, &p.a);
    p.fd[1] = coil_test_raw_bound(AF_INET, SOCK_DGRAM, -1, &p.b);
    assert_true(p.fd[0] >= 0 && p.fd[1] >= 0);
    park_run(&p);
    assert_int_equal(p.r, 5);
    assert_memory_equal(p.buf, "hello", 5);
    struct coil_test_addr from = {.len = p.addrlen};
    memcpy(&from.ss, &p.addr, sizeof p.addr);
    assert_true(coil_test_same_addr(&from, &p.b));
    park_close(&p);
}

static void call_recvmsg(struct park *p) {
    struct iovec iov[2] = {{p->buf, 3}, {p->buf + 3, 100}};
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
    CALL(p, recvmsg(p->fd[0], &m, 0));
}

static void ready_sendmsg(struct park *p) {
    struct iovec iov[2] = {{(void *)"hel", 3}, {(void *)"lo", 2}};
    struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
    EXPECT_EQ(sendmsg(p->fd[1], &m, 0), 5);
}

static void test_recvmsg_unix_parks(void **state) {
    (void)state;
    NEED("recvmsg");
    struct park p = park_of(call_recvmsg, ready_sendmsg);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, p.fd), 0);
    park_run(&p);
    assert_int_equal(p.r, 5);
    assert_memory_equal(p.buf, "hello", 5);
    park_close(&p);
}

static void call_accept(struct park *p) {
    p->addrlen = sizeof p->addr;
    CALL(p, accept(p->fd[0], (struct sockaddr *)&p->addr, &p->addrlen));
    p->fd[2] = (int)p->r;
}

static void call_accept4_both(struct park *p) {
    p->addrlen = sizeof p->addr;
    CALL(p,
         accept4(p->fd[0], (struct sockaddr *)&p->addr, &p->addrlen, SOCK_CLOEXEC | SOCK_NONBLOCK));
    p->fd[2] = (int)p->r;
}

static void ready_connect(struct park *p) {
    p->fd[1] = socket(AF_INET, SOCK_STREAM, 0);
    if (!EXPECT(p->fd[1] >= 0)) return;
    EXPECT_EQ(connect(p->fd[1], COIL_TEST_SA(&p->a), p->a.len), 0);
}

static void check_accepted(struct park *p) {
    assert_true(p->r >= 0);
    struct coil_test_addr client, seen = {.len = p->addrlen};
    memcpy(&seen.ss, &p->addr, sizeof p->addr);
    assert_int_equal(coil_test_sockname(p->fd[1], &client), 0);
    assert_true(coil_test_same_addr(&seen, &client));
    /* It is the connection: data flows. */
    assert_int_equal(send(p->fd[1], "ok", 2, 0), 2);
    char b[2];
    assert_int_equal(recv(p->fd[2], b, 2, MSG_WAITALL), 2);
    assert_memory_equal(b, "ok", 2);
}

static void test_accept_parks(void **state) {
    (void)state;
    NEED("accept");
    struct park p = park_of(call_accept, ready_connect);
    p.fd[0] = coil_test_raw_bound(AF_INET, SOCK_STREAM, 4, &p.a);
    assert_true(p.fd[0] >= 0);
    park_run(&p);
    check_accepted(&p);
    /* accept(2) gives neither FD_CLOEXEC nor O_NONBLOCK. */
    assert_int_equal(fd_flags(p.fd[2]), 0);
    assert_int_equal(fl_nonblock(p.fd[2]), 0);
    park_close(&p);
}

static void test_accept4_parks(void **state) {
    (void)state;
    NEED("accept4");
    struct park p = park_of(call_accept4_both, ready_connect);
    p.fd[0] = coil_test_raw_bound(AF_INET, SOCK_STREAM, 4, &p.a);
    assert_true(p.fd[0] >= 0);
    park_run(&p);
    assert_true(p.r >= 0);
    assert_int_equal(fd_flags(p.fd[2]), FD_CLOEXEC);
    assert_int_equal(fl_nonblock(p.fd[2]), 1);
    assert_int_equal(coil_test_set_nonblock(p.fd[2], false), 0);
    check_accepted(&p);
    park_close(&p);
}

/* connect to a listener whose accept queue is full: the SYN is dropped, and
 * the connection is made (on a retransmission) once an acceptor tasklet
 * empties the queue. */
struct acceptor {
    int listener;
    int fds[32];
    int n;
    long last_r;
    int last_err;
};

static void acceptor_fn(void *arg) {
    struct acceptor *a = arg;
    for (;;) {
        errno = 0;
        int r = accept(a->listener, NULL, NULL);
        if (r < 0) {
            a->last_r = r;
            a->last_err = errno;
            return;
        }
        if (a->n < 32)
            a->fds[a->n++] = r;
        else
            close(r);
    }
}

static void call_connect(struct park *p) {
    p->fd[1] = socket(AF_INET, SOCK_STREAM, 0);
    if (!EXPECT(p->fd[1] >= 0)) return;
    CALL(p, connect(p->fd[1], COIL_TEST_SA(&p->a), p->a.len));
}

static void ready_spawn_acceptor(struct park *p) {
    p->helper = coil_spawn(acceptor_fn, p->ctx, NULL);
    EXPECT(p->helper > 0);
}

static void after_stop_acceptor(struct park *p) {
    struct acceptor *a = p->ctx;
    EXPECT_EQ(coil_kill(p->helper), 0);
    EXPECT_EQ(coil_join(p->helper, coil_test_in(5 * COIL_SEC)), 0);
    EXPECT_EQ(a->last_r, -1);
    EXPECT_EQ(a->last_err, ECANCELED);
    for (int i = 0; i < a->n; i++)
        EXPECT_EQ(close(a->fds[i]), 0);
}

static void test_connect_parks(void **state) {
    (void)state;
    NEED("connect", "accept");
    struct park p = park_of(call_connect, ready_spawn_acceptor);
    int fillers[16], n = 0;
    int l = coil_test_full_backlog_listener(&p.a, fillers, 16, &n);
    if (l == -EAGAIN) skip();
    assert_true(l >= 0);
    struct acceptor a = {.listener = l};
    p.ctx = &a;
    p.after = after_stop_acceptor;
    park_run(&p);
    assert_int_equal(p.r, 0);
    struct coil_test_addr peer;
    assert_int_equal(coil_test_peername(p.fd[1], &peer), 0);
    assert_true(coil_test_same_addr(&peer, &p.a));
    park_close(&p);
    for (int i = 0; i < n; i++)
        close(fillers[i]);
    close(l);
}

static void test_write_full_pipe_parks(void **state) {
    (void)state;
    NEED("write");
    struct park p = park_of(call_write_x, ready_read_page);
    assert_int_equal(pipe(p.fd), 0);
    size_t filled = coil_test_fill_pipe(p.fd[1]);
    assert_true(filled >= 4096);
    park_run(&p);
    assert_int_equal(p.r, 1);
    assert_int_equal(coil_test_drain(p.fd[0], NULL, 0), filled - 4096 + 1);
    park_close(&p);
}

static void call_writev_abc(struct park *p) {
    struct iovec iov[2] = {{(void *)"ab", 2}, {(void *)"c", 1}};
    CALL(p, writev(p->fd[1], iov, 2));
}

static void test_writev_full_pipe_parks(void **state) {
    (void)state;
    NEED("writev");
    struct park p = park_of(call_writev_abc, ready_read_page);
    assert_int_equal(pipe(p.fd), 0);
    size_t filled = coil_test_fill_pipe(p.fd[1]);
    park_run(&p);
    assert_int_equal(p.r, 3);
    assert_int_equal(coil_test_drain(p.fd[0], NULL, 0), filled - 4096 + 3);
    park_close(&p);
}

static void call_send_x(struct park *p) {
    CALL(p, send(p->fd[1], "x", 1, 0));
}

static void ready_drain_server(struct park *p) {
    EXPECT(coil_test_drain(p->fd[0], NULL, 0) > 0);
}

static void test_send_full_socket_parks(void **state) {
    (void)state;
    NEED("send");
    struct park p = park_of(call_send_x, ready_drain_server);
    park_tcp_pair(&p);
    assert_true(coil_test_fill_socket(p.fd[1]) > 0);
    park_run(&p);
    assert_int_equal(p.r, 1);
    park_close(&p);
}

/* ---- sleeping ---------------------------------------------------------------- */

static void call_sleep_1(struct park *p) {
    CALL(p, sleep(1));
}

static void call_usleep_300ms(struct park *p) {
    CALL(p, usleep((useconds_t)(timeo() / 1000)));
}

static void call_nanosleep_300ms(struct park *p) {
    p->ts = ns_ts(timeo());
    CALL(p, nanosleep(&p->ts, &p->rem));
}

static void call_clock_nanosleep_rel(struct park *p) {
    p->ts = ns_ts(timeo());
    CALL(p, clock_nanosleep(CLOCK_MONOTONIC, 0, &p->ts, &p->rem));
}

/* TIMER_ABSTIME on the clock in p->timeout_ms (CLOCK_MONOTONIC or
 * CLOCK_REALTIME): timeo() from now; p->when is that clock on return. */
static void call_clock_nanosleep_abs(struct park *p) {
    clockid_t clk = (clockid_t)p->timeout_ms;
    struct timespec now;
    clock_gettime(clk, &now);
    p->ts = ns_ts(ts_ns(&now) + timeo());
    CALL(p, clock_nanosleep(clk, TIMER_ABSTIME, &p->ts, NULL));
    clock_gettime(clk, &p->when);
}

static void check_slept(const struct park *p, int64_t ns) {
    assert_int_equal(p->r, 0);
    assert_true(park_elapsed(p) >= ns);
    assert_true(park_elapsed(p) < ns + coil_test_slack());
}

static void test_sleep_parks(void **state) {
    (void)state;
    NEED("sleep");
    struct park p = park_of(call_sleep_1, NULL);
    park_run(&p);
    check_slept(&p, COIL_SEC);
}

static void test_usleep_parks(void **state) {
    (void)state;
    NEED("usleep");
    struct park p = park_of(call_usleep_300ms, NULL);
    park_run(&p);
    check_slept(&p, timeo());
}

static void test_nanosleep_parks(void **state) {
    (void)state;
    NEED("nanosleep");
    struct park p = park_of(call_nanosleep_300ms, NULL);
    park_run(&p);
    check_slept(&p, timeo());
}

static void test_clock_nanosleep_relative_parks(void **state) {
    (void)state;
    NEED("clock_nanosleep");
    struct park p = park_of(call_clock_nanosleep_rel, NULL);
    park_run(&p);
    check_slept(&p, timeo());
}

static void test_clock_nanosleep_abstime_monotonic_parks(void **state) {
    (void)state;
    NEED("clock_nanosleep");
    struct park p = park_of(call_clock_nanosleep_abs, NULL);
    p.timeout_ms = CLOCK_MONOTONIC;
    park_run(&p);
    assert_int_equal(p.r, 0);
    assert_true(ts_ns(&p.when) >= ts_ns(&p.ts)); /* not woken early */
    assert_true(park_elapsed(&p) < timeo() + coil_test_slack());
}

static void test_clock_nanosleep_abstime_realtime_parks(void **state) {
    (void)state;
    NEED("clock_nanosleep");
    struct park p = park_of(call_clock_nanosleep_abs, NULL);
    p.timeout_ms = CLOCK_REALTIME;
    park_run(&p);
    assert_int_equal(p.r, 0);
    assert_true(ts_ns(&p.when) >= ts_ns(&p.ts));
    assert_true(park_elapsed(&p) < timeo() + coil_test_slack());
}

/* ---- poll, ppoll ------------------------------------------------------------------ */

static void call_poll(struct park *p) {
    p->pfd[0] = (struct pollfd){.fd = p->fd[0], .events = (short)(p->pfd[0].events ?: POLLIN)};
    CALL(p, poll(p->pfd, 1, p->timeout_ms));
}

static void test_poll_parks_until_ready(void **state) {
    (void)state;
    NEED("poll");
    struct park p = park_of(call_poll, ready_write_hello);
    assert_int_equal(pipe(p.fd), 0);
    park_run(&p);
    assert_int_equal(p.r, 1);
    assert_int_equal(p.pfd[0].revents, POLLIN);
    assert_true(park_elapsed(&p) < 4 * COIL_SEC);
    park_close(&p);
}

static void test_poll_parks_until_timeout(void **state) {
    (void)state;
    NEED("poll");
    struct park p = park_of(call_poll, NULL);
    assert_int_equal(pipe(p.fd), 0);
    p.timeout_ms = (int)(timeo() / COIL_MSEC);
    park_run(&p);
    assert_int_equal(p.r, 0);
    assert_int_equal(p.pfd[0].revents, 0);
    assert_true(park_elapsed(&p) >= timeo());
    park_close(&p);
}

static void ready_close_peer(struct park *p) {
    EXPECT_EQ(close(p->fd[1]), 0);
    p->fd[1] = -1;
}

/* The peer closes while poll waits: POLLHUP (with POLLIN), as libc says. */
static void test_poll_pollhup_when_peer_closes(void **state) {
    (void)state;
    NEED("poll");
    struct park p = park_of(call_poll, ready_close_peer);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, p.fd), 0);
    park_run(&p);
    struct pollfd ref = {.fd = p.fd[0], .events = POLLIN};
    assert_int_equal(poll(&ref, 1, 0), 1); /* libc, outside coil_run */
    assert_int_equal(p.r, 1);
    assert_int_equal(p.pfd[0].revents, ref.revents);
    assert_true(p.pfd[0].revents & POLLHUP);
    assert_true(park_elapsed(&p) < 4 * COIL_SEC);
    park_close(&p);
}

static void ready_shutdown_peer(struct park *p) {
    EXPECT_EQ(shutdown(p->fd[1], SHUT_WR), 0);
}

/* poll for POLLRDHUP alone: the peer's half-close ends the wait at once. */
static void test_poll_pollrdhup_alone(void **state) {
    (void)state;
    NEED("poll");
    struct park p = park_of(call_poll, ready_shutdown_peer);
    park_tcp_pair(&p);
    p.pfd[0].events = POLLRDHUP;
    p.timeout_ms = 10000;
    park_run(&p);
    if (p.r != 1 || p.pfd[0].revents != POLLRDHUP ||
        park_elapsed(&p) >= MS(100) + coil_test_slack())
        fail_msg("poll(POLLRDHUP, 10 s): %ld, revents %#x, after %lld ms; libc: 1, POLLRDHUP, "
                 "as the FIN comes (100 ms)",
                 p.r, (unsigned)p.pfd[0].revents, (long long)(park_elapsed(&p) / COIL_MSEC));
    park_close(&p);
}

static void call_poll_no_events(struct park *p) {
    p->pfd[0] = (struct pollfd){.fd = p->fd[0], .events = 0};
    CALL(p, poll(p->pfd, 1, p->timeout_ms));
}

/* events 0: poll waits for POLLHUP/POLLERR alone, which it always reports. */
static void test_poll_no_events_pollhup(void **state) {
    (void)state;
    NEED("poll");
    struct park p = park_of(call_poll_no_events, ready_close_peer);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, p.fd), 0);
    p.timeout_ms = 10000;
    park_run(&p);
    if (p.r != 1 || p.pfd[0].revents != POLLHUP || park_elapsed(&p) >= MS(100) + coil_test_slack())
        fail_msg("poll(events 0, 10 s): %ld, revents %#x, after %lld ms; libc: 1, POLLHUP, as "
                 "the peer closes (100 ms)",
                 p.r, (unsigned)p.pfd[0].revents, (long long)(park_elapsed(&p) / COIL_MSEC));
    park_close(&p);
}

static void call_poll_no_fds(struct park *p) {
    CALL(p, poll(NULL, 0, (int)(timeo() / COIL_MSEC)));
}

static void test_poll_without_fds_sleeps(void **state) {
    (void)state;
    NEED("poll");
    struct park p = park_of(call_poll_no_fds, NULL);
    park_run(&p);
    check_slept(&p, timeo());
}

static void call_ppoll(struct park *p) {
    p->pfd[0] = (struct pollfd){.fd = p->fd[0], .events = POLLIN};
    CALL(p, ppoll(p->pfd, 1, &p->ts, NULL));
}

static void test_ppoll_parks_until_ready(void **state) {
    (void)state;
    NEED("ppoll");
    struct park p = park_of(call_ppoll, ready_write_hello);
    assert_int_equal(pipe(p.fd), 0);
    p.ts = ns_ts(5 * COIL_SEC);
    park_run(&p);
    assert_int_equal(p.r, 1);
    assert_int_equal(p.pfd[0].revents, POLLIN);
    park_close(&p);
}

static void test_ppoll_parks_until_timeout(void **state) {
    (void)state;
    NEED("ppoll");
    struct park p = park_of(call_ppoll, NULL);
    assert_int_equal(pipe(p.fd), 0);
    p.ts = ns_ts(timeo());
    park_run(&p);
    assert_int_equal(p.r, 0);
    assert_int_equal(p.pfd[0].revents, 0);
    assert_true(park_elapsed(&p) >= timeo());
    park_close(&p);
}

/* ---- select, pselect --------------------------------------------------------- */

static void call_select_read(struct park *p) {
    FD_ZERO(&p->rd);
    FD_SET(p->fd[0], &p->rd);
    CALL(p, select(p->fd[0] + 1, &p->rd, NULL, NULL, &p->tv));
}

static void call_select_write(struct park *p) {
    FD_ZERO(&p->wr);
    FD_SET(p->fd[1], &p->wr);
    CALL(p, select(p->fd[1] + 1, NULL, &p->wr, NULL, &p->tv));
}

static void call_select_no_fds(struct park *p) {
    CALL(p, select(0, NULL, NULL, NULL, &p->tv));
}

static void call_pselect_read(struct park *p) {
    FD_ZERO(&p->rd);
    FD_SET(p->fd[0], &p->rd);
    CALL(p, pselect(p->fd[0] + 1, &p->rd, NULL, NULL, &p->ts, NULL));
}

/* Linux leaves in *tv the time not slept: less the time it waited (until
 * ready() at least), no less than the time the call took. */
static void check_select_time_left(const struct park *p, int64_t timeout) {
    int64_t left = tv_ns(&p->tv);
    assert_true(left <= timeout - (p->t_ready - p->t0) + MS(20));
    assert_true(left >= timeout - park_elapsed(p) - COIL_USEC);
}

static void test_select_parks_until_readable(void **state) {
    (void)state;
    NEED("select");
    struct park p = park_of(call_select_read, ready_write_hello);
    assert_int_equal(pipe(p.fd), 0);
    p.tv = (struct timeval){5, 0};
    park_run(&p);
    assert_int_equal(p.r, 1);
    assert_true(FD_ISSET(p.fd[0], &p.rd));
    check_select_time_left(&p, 5 * COIL_SEC);
    park_close(&p);
}

static void test_select_parks_until_writable(void **state) {
    (void)state;
    NEED("select");
    struct park p = park_of(call_select_write, ready_read_page);
    assert_int_equal(pipe(p.fd), 0);
    coil_test_fill_pipe(p.fd[1]);
    p.tv = (struct timeval){5, 0};
    park_run(&p);
    assert_int_equal(p.r, 1);
    assert_true(FD_ISSET(p.fd[1], &p.wr));
    check_select_time_left(&p, 5 * COIL_SEC);
    park_close(&p);
}

static void test_select_parks_until_timeout(void **state) {
    (void)state;
    NEED("select");
    struct park p = park_of(call_select_read, NULL);
    assert_int_equal(pipe(p.fd), 0);
    p.tv = timeo_tv();
    park_run(&p);
    assert_int_equal(p.r, 0);
    assert_false(FD_ISSET(p.fd[0], &p.rd)); /* the sets are cleared */
    assert_int_equal(p.tv.tv_sec, 0);
    assert_int_equal(p.tv.tv_usec, 0);
    assert_true(park_elapsed(&p) >= timeo());
    park_close(&p);
}

static void test_select_without_fds_sleeps(void **state) {
    (void)state;
    NEED("select");
    struct park p = park_of(call_select_no_fds, NULL);
    p.tv = timeo_tv();
    park_run(&p);
    check_slept(&p, timeo());
    assert_int_equal(p.tv.tv_sec, 0);
    assert_int_equal(p.tv.tv_usec, 0);
}

/* glibc's select takes tv_usec >= 1000000 and normalises it (as the kernel's
 * select did): {0, 1000000} is one second, not EINVAL. */
static void test_select_normalises_tv_usec(void **state) {
    (void)state;
    NEED("select");
    struct park p = park_of(call_select_no_fds, NULL);
    p.tv = (struct timeval){0, 1000000};
    park_run(&p);
    assert_int_equal(p.r, 0);
    assert_true(park_elapsed(&p) >= COIL_SEC);
}

static void test_pselect_parks_until_readable(void **state) {
    (void)state;
    NEED("pselect");
    struct park p = park_of(call_pselect_read, ready_write_hello);
    assert_int_equal(pipe(p.fd), 0);
    p.ts = ns_ts(5 * COIL_SEC);
    park_run(&p);
    assert_int_equal(p.r, 1);
    assert_true(FD_ISSET(p.fd[0], &p.rd));
    assert_int_equal(ts_ns(&p.ts), 5 * COIL_SEC); /* pselect's timeout is const */
    park_close(&p);
}

static void test_pselect_parks_until_timeout(void **state) {
    (void)state;
    NEED("pselect");
    struct park p = park_of(call_pselect_read, NULL);
    assert_int_equal(pipe(p.fd), 0);
    p.ts = ns_ts(timeo());
    park_run(&p);
    assert_int_equal(p.r, 0);
    assert_false(FD_ISSET(p.fd[0], &p.rd));
    assert_true(park_elapsed(&p) >= timeo());
    park_close(&p);
}

/* ---- epoll_wait, epoll_pwait --------------------------------------------------- */

static void call_epoll_wait(struct park *p) {
    CALL(p, epoll_wait(p->fd[2], p->ev, 4, p->timeout_ms));
}

static void call_epoll_pwait(struct park *p) {
    CALL(p, epoll_pwait(p->fd[2], p->ev, 4, p->timeout_ms, NULL));
}

/* fd[0..1] a pipe, fd[2] an epoll set watching fd[0] for EPOLLIN (data 42). */
static void park_epoll_pipe(struct park *p) {
    assert_int_equal(pipe(p->fd), 0);
    p->fd[2] = epoll_create1(EPOLL_CLOEXEC);
    assert_true(p->fd[2] >= 0);
    struct epoll_event ev = {.events = EPOLLIN, .data.u64 = 42};
    assert_int_equal(epoll_ctl(p->fd[2], EPOLL_CTL_ADD, p->fd[0], &ev), 0);
}

static void test_epoll_wait_parks_until_ready(void **state) {
    (void)state;
    NEED("epoll_wait");
    struct park p = park_of(call_epoll_wait, ready_write_hello);
    park_epoll_pipe(&p);
    park_run(&p);
    assert_int_equal(p.r, 1);
    assert_int_equal(p.ev[0].events, EPOLLIN);
    assert_int_equal(p.ev[0].data.u64, 42);
    park_close(&p);
}

static void test_epoll_pwait_parks_until_ready(void **state) {
    (void)state;
    NEED("epoll_pwait");
    struct park p = park_of(call_epoll_pwait, ready_write_hello);
    park_epoll_pipe(&p);
    park_run(&p);
    assert_int_equal(p.r, 1);
    assert_int_equal(p.ev[0].events, EPOLLIN);
    assert_int_equal(p.ev[0].data.u64, 42);
    park_close(&p);
}

static void test_epoll_wait_parks_until_timeout(void **state) {
    (void)state;
    NEED("epoll_wait");
    struct park p = park_of(call_epoll_wait, NULL);
    park_epoll_pipe(&p);
    p.timeout_ms = (int)(timeo() / COIL_MSEC);
    park_run(&p);
    assert_int_equal(p.r, 0);
    assert_true(park_elapsed(&p) >= timeo());
    park_close(&p);
}

/* ==== 2. libc's contract ======================================================== */

/* ---- errors and O_NONBLOCK: the same call outside coil_run and in a tasklet -- */

struct probe_ctx {
    int closed;                    /* a number that names no file */
    int pipe_blk[2];               /* an empty blocking pipe */
    int pipe_nb[2];                /* an empty pipe made O_NONBLOCK with fcntl */
    int full_nb[2];                /* a full pipe, O_NONBLOCK */
    int pair_nb[2];                /* socketpair(SOCK_NONBLOCK), empty */
    int fionbio[2];                /* a TCP pair; [0] made non-blocking with ioctl(FIONBIO) */
    int tcp[2];                    /* a blocking TCP pair, [0] server, [1] client */
    int listener_nb;               /* a listener with O_NONBLOCK and nothing pending */
    int unconnected;               /* a TCP socket, neither bound nor connected */
    int ep;                        /* an epoll set */
    struct coil_test_addr refused; /* 127.0.0.1:port where nobody listens */
};

struct probe {
    const char *name;
    long (*fn)(struct probe_ctx *c);
    long want;
    int want_errno; /* checked when want is -1, or when not -1 here */
};

static long keep_errno(long r, int fd_to_close) {
    int e = errno;
    close(fd_to_close);
    errno = e;
    return r;
}

static struct iovec one_iov(void) {
    static char byte;
    return (struct iovec){&byte, 1};
}

#define PROBE(name) static long probe_##name(struct probe_ctx *c)

/* closed fd */
PROBE(read_closed) {
    char b;
    return read(c->closed, &b, 1);
}
PROBE(write_closed) {
    return write(c->closed, "x", 1);
}
PROBE(readv_closed) {
    struct iovec v = one_iov();
    return readv(c->closed, &v, 1);
}
PROBE(writev_closed) {
    struct iovec v = one_iov();
    return writev(c->closed, &v, 1);
}
PROBE(recv_closed) {
    char b;
    return recv(c->closed, &b, 1, 0);
}
PROBE(send_closed) {
    return send(c->closed, "x", 1, 0);
}
PROBE(recvfrom_closed) {
    char b;
    return recvfrom(c->closed, &b, 1, 0, NULL, NULL);
}
PROBE(sendto_closed) {
    return sendto(c->closed, "x", 1, 0, COIL_TEST_SA(&c->refused), c->refused.len);
}
PROBE(recvmsg_closed) {
    struct iovec v = one_iov();
    struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1};
    return recvmsg(c->closed, &m, 0);
}
PROBE(sendmsg_closed) {
    struct iovec v = one_iov();
    struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1};
    return sendmsg(c->closed, &m, 0);
}
PROBE(accept_closed) {
    return accept(c->closed, NULL, NULL);
}
PROBE(accept4_closed) {
    return accept4(c->closed, NULL, NULL, SOCK_CLOEXEC);
}
PROBE(connect_closed) {
    return connect(c->closed, COIL_TEST_SA(&c->refused), c->refused.len);
}
PROBE(close_closed) {
    return close(c->closed);
}
PROBE(select_closed) {
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(c->closed, &rd);
    struct timeval tv = {1, 0};
    return select(c->closed + 1, &rd, NULL, NULL, &tv);
}
PROBE(epoll_wait_closed) {
    struct epoll_event ev;
    return epoll_wait(c->closed, &ev, 1, 1000);
}

/* not a socket */
PROBE(recv_pipe) {
    char b;
    return recv(c->pipe_blk[0], &b, 1, 0);
}
PROBE(send_pipe) {
    return send(c->pipe_blk[1], "x", 1, 0);
}
PROBE(recvfrom_pipe) {
    char b;
    return recvfrom(c->pipe_blk[0], &b, 1, 0, NULL, NULL);
}
PROBE(sendto_pipe) {
    return sendto(c->pipe_blk[1], "x", 1, 0, COIL_TEST_SA(&c->refused), c->refused.len);
}
PROBE(recvmsg_pipe) {
    struct iovec v = one_iov();
    struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1};
    return recvmsg(c->pipe_blk[0], &m, 0);
}
PROBE(sendmsg_pipe) {
    struct iovec v = one_iov();
    struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1};
    return sendmsg(c->pipe_blk[1], &m, 0);
}
PROBE(accept_pipe) {
    return accept(c->pipe_blk[0], NULL, NULL);
}
PROBE(accept4_pipe) {
    return accept4(c->pipe_blk[0], NULL, NULL, SOCK_CLOEXEC);
}
PROBE(connect_pipe) {
    return connect(c->pipe_blk[0], COIL_TEST_SA(&c->refused), c->refused.len);
}

/* invalid arguments, unconnected sockets */
PROBE(select_negative_nfds) {
    struct timeval tv = {1, 0};
    return select(-1, NULL, NULL, NULL, &tv);
}
PROBE(pselect_negative_nfds) {
    struct timespec ts = {1, 0};
    return pselect(-1, NULL, NULL, NULL, &ts, NULL);
}
PROBE(select_negative_tv) {
    struct timeval tv = {-1, 0};
    return select(0, NULL, NULL, NULL, &tv);
}
PROBE(ppoll_bad_nsec) {
    struct pollfd p = {.fd = c->pipe_blk[0], .events = POLLIN};
    struct timespec ts = {0, 1000000000};
    return ppoll(&p, 1, &ts, NULL);
}
PROBE(pselect_bad_nsec) {
    struct timespec ts = {0, 1000000000};
    return pselect(0, NULL, NULL, NULL, &ts, NULL);
}
PROBE(nanosleep_bad_nsec) {
    struct timespec ts = {0, 1000000000};
    return nanosleep(&ts, NULL);
}
PROBE(nanosleep_negative) {
    struct timespec ts = {-1, 0};
    return nanosleep(&ts, NULL);
}
PROBE(clock_nanosleep_bad_nsec) { /* returns the error, errno untouched */
    struct timespec ts = {0, 1000000000};
    return clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
}
PROBE(clock_nanosleep_abs_negative) {
    struct timespec ts = {-1, 0};
    return clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &ts, NULL);
}
PROBE(epoll_wait_zero_max) {
    struct epoll_event ev;
    return epoll_wait(c->ep, &ev, 0, 1000);
}
PROBE(epoll_wait_not_epoll) {
    struct epoll_event ev;
    return epoll_wait(c->pipe_blk[0], &ev, 1, 1000);
}
PROBE(accept4_bad_flags) {
    return accept4(c->unconnected, NULL, NULL, 0x40000000);
}
PROBE(accept_not_listening) {
    return accept(c->unconnected, NULL, NULL);
}
PROBE(connect_short_addrlen) {
    return connect(c->unconnected, COIL_TEST_SA(&c->refused), 3);
}
PROBE(recv_unconnected) {
    char b;
    return recv(c->unconnected, &b, 1, 0);
}
PROBE(read_unconnected) {
    char b;
    return read(c->unconnected, &b, 1);
}
PROBE(connect_refused) {
    int s = socket(AF_INET, SOCK_STREAM, 0);
    if (s < 0) return -2;
    return keep_errno(connect(s, COIL_TEST_SA(&c->refused), c->refused.len), s);
}

/* O_NONBLOCK (fcntl, SOCK_NONBLOCK, FIONBIO) and MSG_DONTWAIT: EAGAIN at once */
PROBE(read_nonblock_pipe) {
    char b;
    return read(c->pipe_nb[0], &b, 1);
}
PROBE(readv_nonblock_pipe) {
    struct iovec v = one_iov();
    return readv(c->pipe_nb[0], &v, 1);
}
PROBE(write_nonblock_full_pipe) {
    return write(c->full_nb[1], "x", 1);
}
PROBE(writev_nonblock_full_pipe) {
    struct iovec v = one_iov();
    return writev(c->full_nb[1], &v, 1);
}
PROBE(recv_sock_nonblock) {
    char b;
    return recv(c->pair_nb[0], &b, 1, 0);
}
PROBE(recvfrom_sock_nonblock) {
    char b;
    return recvfrom(c->pair_nb[0], &b, 1, 0, NULL, NULL);
}
PROBE(recvmsg_sock_nonblock) {
    struct iovec v = one_iov();
    struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1};
    return recvmsg(c->pair_nb[0], &m, 0);
}
PROBE(read_sock_nonblock) {
    char b;
    return read(c->pair_nb[0], &b, 1);
}
PROBE(recv_fionbio) {
    char b;
    return recv(c->fionbio[0], &b, 1, 0);
}
PROBE(read_fionbio) {
    char b;
    return read(c->fionbio[0], &b, 1);
}
PROBE(accept_nonblock_listener) {
    return accept(c->listener_nb, NULL, NULL);
}
PROBE(accept4_nonblock_listener) {
    return accept4(c->listener_nb, NULL, NULL, SOCK_CLOEXEC);
}
PROBE(recv_dontwait) {
    char b;
    return recv(c->tcp[0], &b, 1, MSG_DONTWAIT);
}
PROBE(recvfrom_dontwait) {
    char b;
    return recvfrom(c->tcp[0], &b, 1, MSG_DONTWAIT, NULL, NULL);
}
PROBE(recvmsg_dontwait) {
    struct iovec v = one_iov();
    struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1};
    return recvmsg(c->tcp[0], &m, MSG_DONTWAIT);
}
/* ... and the fds keep their mode */
PROBE(still_nonblock_pipe) {
    return fl_nonblock(c->pipe_nb[0]);
}
PROBE(still_nonblock_full_pipe) {
    return fl_nonblock(c->full_nb[1]);
}
PROBE(still_nonblock_pair) {
    return fl_nonblock(c->pair_nb[0]);
}
PROBE(still_nonblock_fionbio) {
    return fl_nonblock(c->fionbio[0]);
}
PROBE(still_nonblock_listener) {
    return fl_nonblock(c->listener_nb);
}
PROBE(still_blocking_after_dontwait) {
    return fl_nonblock(c->tcp[0]);
}
/* MSG_PEEK leaves the data: 10 * peeked + read, both 3 */
PROBE(peek_then_read) {
    char a[8], b[8];
    if (send(c->tcp[1], "xyz", 3, 0) != 3) return -2;
    long n1 = recv(c->tcp[0], a, sizeof a, MSG_PEEK);
    long n2 = recv(c->tcp[0], b, sizeof b, 0);
    if (n1 != 3 || n2 != 3 || memcmp(a, "xyz", 3) != 0 || memcmp(b, "xyz", 3) != 0) return -3;
    return 10 * n1 + n2;
}

#define P(name, want, e)                                                                           \
    { #name, probe_##name, want, e }
static const struct probe probes[] = {
    P(read_closed, -1, EBADF),
    P(write_closed, -1, EBADF),
    P(readv_closed, -1, EBADF),
    P(writev_closed, -1, EBADF),
    P(recv_closed, -1, EBADF),
    P(send_closed, -1, EBADF),
    P(recvfrom_closed, -1, EBADF),
    P(sendto_closed, -1, EBADF),
    P(recvmsg_closed, -1, EBADF),
    P(sendmsg_closed, -1, EBADF),
    P(accept_closed, -1, EBADF),
    P(accept4_closed, -1, EBADF),
    P(connect_closed, -1, EBADF),
    P(close_closed, -1, EBADF),
    P(select_closed, -1, EBADF),
    P(epoll_wait_closed, -1, EBADF),
    P(recv_pipe, -1, ENOTSOCK),
    P(send_pipe, -1, ENOTSOCK),
    P(recvfrom_pipe, -1, ENOTSOCK),
    P(sendto_pipe, -1, ENOTSOCK),
    P(recvmsg_pipe, -1, ENOTSOCK),
    P(sendmsg_pipe, -1, ENOTSOCK),
    P(accept_pipe, -1, ENOTSOCK),
    P(accept4_pipe, -1, ENOTSOCK),
    P(connect_pipe, -1, ENOTSOCK),
    P(select_negative_nfds, -1, EINVAL),
    P(pselect_negative_nfds, -1, EINVAL),
    P(select_negative_tv, -1, EINVAL),
    P(ppoll_bad_nsec, -1, EINVAL),
    P(pselect_bad_nsec, -1, EINVAL),
    P(nanosleep_bad_nsec, -1, EINVAL),
    P(nanosleep_negative, -1, EINVAL),
    P(clock_nanosleep_bad_nsec, EINVAL, 0),
    P(clock_nanosleep_abs_negative, EINVAL, 0),
    P(epoll_wait_zero_max, -1, EINVAL),
    P(epoll_wait_not_epoll, -1, EINVAL),
    P(accept4_bad_flags, -1, EINVAL),
    P(accept_not_listening, -1, EINVAL),
    P(connect_short_addrlen, -1, EINVAL),
    P(recv_unconnected, -1, ENOTCONN),
    P(read_unconnected, -1, ENOTCONN),
    P(connect_refused, -1, ECONNREFUSED),
    P(read_nonblock_pipe, -1, EAGAIN),
    P(readv_nonblock_pipe, -1, EAGAIN),
    P(write_nonblock_full_pipe, -1, EAGAIN),
    P(writev_nonblock_full_pipe, -1, EAGAIN),
    P(recv_sock_nonblock, -1, EAGAIN),
    P(recvfrom_sock_nonblock, -1, EAGAIN),
    P(recvmsg_sock_nonblock, -1, EAGAIN),
    P(read_sock_nonblock, -1, EAGAIN),
    P(recv_fionbio, -1, EAGAIN),
    P(read_fionbio, -1, EAGAIN),
    P(accept_nonblock_listener, -1, EAGAIN),
    P(accept4_nonblock_listener, -1, EAGAIN),
    P(recv_dontwait, -1, EAGAIN),
    P(recvfrom_dontwait, -1, EAGAIN),
    P(recvmsg_dontwait, -1, EAGAIN),
    P(still_nonblock_pipe, 1, -1),
    P(still_nonblock_full_pipe, 1, -1),
    P(still_nonblock_pair, 1, -1),
    P(still_nonblock_fionbio, 1, -1),
    P(still_nonblock_listener, 1, -1),
    P(still_blocking_after_dontwait, 0, -1),
    P(peek_then_read, 33, -1),
};
#undef P
#define NPROBES (sizeof probes / sizeof probes[0])

struct outcome {
    long r;
    int err;
    int64_t ns;
};

struct probe_run {
    struct probe_ctx *c;
    struct outcome out[NPROBES];
};

static void probe_all(struct probe_ctx *c, struct outcome *out) {
    for (size_t i = 0; i < NPROBES; i++) {
        int64_t t0 = coil_now();
        errno = 0;
        out[i].r = probes[i].fn(c);
        out[i].err = errno;
        out[i].ns = coil_now() - t0;
    }
}

static void probe_main(void *arg) {
    struct probe_run *pr = arg;
    probe_all(pr->c, pr->out);
}

static void probe_ctx_open(struct probe_ctx *c) {
    memset(c, 0, sizeof *c);
    c->closed = closed_fd_number();
    assert_int_equal(pipe(c->pipe_blk), 0);
    assert_int_equal(pipe(c->pipe_nb), 0);
    assert_int_equal(coil_test_set_nonblock(c->pipe_nb[0], true), 0);
    assert_int_equal(coil_test_set_nonblock(c->pipe_nb[1], true), 0);
    assert_int_equal(pipe(c->full_nb), 0);
    assert_int_equal(coil_test_set_nonblock(c->full_nb[1], true), 0);
    coil_test_fill_pipe(c->full_nb[1]);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, c->pair_nb), 0);
    assert_int_equal(coil_test_raw_tcp_pair(AF_INET, &c->fionbio[1], &c->fionbio[0]), 0);
    int on = 1;
    assert_int_equal(ioctl(c->fionbio[0], FIONBIO, &on), 0);
    assert_int_equal(coil_test_raw_tcp_pair(AF_INET, &c->tcp[1], &c->tcp[0]), 0);
    struct coil_test_addr a;
    c->listener_nb = coil_test_raw_bound(AF_INET, SOCK_STREAM, 4, &a);
    assert_true(c->listener_nb >= 0);
    assert_int_equal(coil_test_set_nonblock(c->listener_nb, true), 0);
    c->unconnected = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(c->unconnected >= 0);
    c->ep = epoll_create1(EPOLL_CLOEXEC);
    assert_true(c->ep >= 0);
    int gone = coil_test_raw_bound(AF_INET, SOCK_STREAM, -1, &c->refused);
    assert_true(gone >= 0);
    close(gone); /* nobody listens on that port now */
}

static void probe_ctx_close(struct probe_ctx *c) {
    int *all[] = {&c->pipe_blk[0], &c->pipe_blk[1], &c->pipe_nb[0], &c->pipe_nb[1],
                  &c->full_nb[0],  &c->full_nb[1],  &c->pair_nb[0], &c->pair_nb[1],
                  &c->fionbio[0],  &c->fionbio[1],  &c->tcp[0],     &c->tcp[1],
                  &c->listener_nb, &c->unconnected, &c->ep};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++)
        close_fd(all[i]);
}

/* Each call, made in a tasklet, answers exactly what libc answers outside
 * coil_run (and what Linux documents), at once. */
static void test_errors_and_nonblocking_as_libc(void **state) {
    (void)state;
    struct probe_ctx c;
    probe_ctx_open(&c);
    struct outcome ref[NPROBES];
    probe_all(&c, ref); /* libc: no scheduler on this thread */
    static struct probe_run pr;
    memset(&pr, 0, sizeof pr);
    pr.c = &c;
    COIL_RUN_CHECKED(probe_main, &pr);
    int bad = 0;
    for (size_t i = 0; i < NPROBES; i++) {
        const struct probe *p = &probes[i];
        const struct outcome *o = &pr.out[i], *r = &ref[i];
        bool errno_matters = p->want == -1 || p->want_errno != -1;
        if (r->r != p->want || (errno_matters && r->err != p->want_errno)) {
            print_message("%s: libc outside coil_run says %ld/%s, the test expects %ld/%s\n",
                          p->name, r->r, strerror(r->err), p->want,
                          strerror(p->want_errno < 0 ? 0 : p->want_errno));
            bad++;
        }
        if (o->r != r->r || (errno_matters && o->err != r->err)) {
            print_message("%s: in a tasklet %ld/%s, libc %ld/%s\n", p->name, o->r, strerror(o->err),
                          r->r, strerror(r->err));
            bad++;
        }
        if (o->ns >= coil_test_slack()) {
            print_message("%s: in a tasklet took %lld ms (should answer at once)\n", p->name,
                          (long long)(o->ns / COIL_MSEC));
            bad++;
        }
    }
    probe_ctx_close(&c);
    if (bad) fail_msg("%d mismatch(es), listed above", bad);
}

/* ---- zero timeouts never park ------------------------------------------------ */

struct zero {
    int fd[2];
    int ep;
    int runs;
    bool stop;
};

static void zero_spy(void *arg) {
    struct zero *z = arg;
    while (!z->stop) {
        z->runs++;
        coil_yield();
    }
}

static void zero_main(void *arg) {
    struct zero *z = arg;
    coil_id s = coil_spawn(zero_spy, z, NULL);
    coil_yield(); /* the spy starts */
    int before = z->runs;
    EXPECT(before > 0);
    int64_t t0 = coil_now();
    struct pollfd pfd = {.fd = z->fd[0], .events = POLLIN, .revents = -1};
    EXPECT_EQ(poll(&pfd, 1, 0), 0);
    EXPECT_EQ(pfd.revents, 0);
    struct timespec zts = {0, 0};
    pfd.revents = -1;
    EXPECT_EQ(ppoll(&pfd, 1, &zts, NULL), 0);
    EXPECT_EQ(pfd.revents, 0);
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(z->fd[0], &rd);
    struct timeval ztv = {0, 0};
    EXPECT_EQ(select(z->fd[0] + 1, &rd, NULL, NULL, &ztv), 0);
    EXPECT(!FD_ISSET(z->fd[0], &rd));
    FD_SET(z->fd[0], &rd);
    EXPECT_EQ(pselect(z->fd[0] + 1, &rd, NULL, NULL, &zts, NULL), 0);
    EXPECT(!FD_ISSET(z->fd[0], &rd));
    struct epoll_event ev;
    EXPECT_EQ(epoll_wait(z->ep, &ev, 1, 0), 0);
    EXPECT_EQ(epoll_pwait(z->ep, &ev, 1, 0, NULL), 0);
    EXPECT_EQ(z->runs, before); /* none of them let another tasklet run */
    EXPECT(coil_now() - t0 < coil_test_slack());
    z->stop = true;
    coil_join(s, COIL_FOREVER);
}

static void test_zero_timeouts_never_park(void **state) {
    (void)state;
    struct zero z = {0};
    assert_int_equal(pipe(z.fd), 0);
    z.ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN};
    assert_int_equal(epoll_ctl(z.ep, EPOLL_CTL_ADD, z.fd[0], &ev), 0);
    COIL_RUN_CHECKED(zero_main, &z);
    close(z.fd[0]);
    close(z.fd[1]);
    close(z.ep);
}

/* ---- poll's revents and select's sets, as libc fills them ---------------------- */

struct ready_set {
    struct pollfd pfd[7];
    int n;
    fd_set rd, wr;
    int nfds;
    struct timeval tv;
    int poll_r, select_r, err;
    int64_t select_ns;
};

static void ready_set_main(void *arg) {
    struct ready_set *s = arg;
    s->poll_r = poll(s->pfd, (nfds_t)s->n, 1000);
    int64_t t0 = coil_now();
    s->select_r = select(s->nfds, &s->rd, &s->wr, NULL, &s->tv);
    s->err = errno;
    s->select_ns = coil_now() - t0;
}

static void test_poll_and_select_report_as_libc(void **state) {
    (void)state;
    int a[2], b[2], d[2], e[2], sp[2];
    assert_int_equal(pipe(a), 0); /* a: data waiting */
    assert_int_equal(write(a[1], "x", 1), 1);
    assert_int_equal(pipe(b), 0); /* b: writer gone */
    close(b[1]);
    assert_int_equal(pipe(d), 0); /* d: its write end full */
    coil_test_fill_pipe(d[1]);
    assert_int_equal(pipe(e), 0);                                 /* e: empty */
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sp), 0); /* peer closed */
    close(sp[1]);
    int closed = closed_fd_number();

    struct ready_set in, ref;
    memset(&in, 0, sizeof in);
    in.n = 7;
    in.pfd[0] = (struct pollfd){.fd = a[0], .events = POLLIN};           /* POLLIN */
    in.pfd[1] = (struct pollfd){.fd = a[1], .events = POLLOUT};          /* POLLOUT */
    in.pfd[2] = (struct pollfd){.fd = b[0], .events = POLLIN};           /* POLLHUP */
    in.pfd[3] = (struct pollfd){.fd = sp[0], .events = POLLIN};          /* POLLIN|POLLHUP */
    in.pfd[4] = (struct pollfd){.fd = closed, .events = POLLIN};         /* POLLNVAL */
    in.pfd[5] = (struct pollfd){.fd = -1, .events = POLLIN};             /* ignored */
    in.pfd[6] = (struct pollfd){.fd = e[0], .events = POLLIN | POLLPRI}; /* nothing */
    FD_ZERO(&in.rd);
    FD_ZERO(&in.wr);
    FD_SET(a[0], &in.rd);
    FD_SET(e[0], &in.rd);
    FD_SET(b[0], &in.rd);
    FD_SET(a[1], &in.wr);
    FD_SET(d[1], &in.wr);
    int maxfd = a[0];
    int all[] = {a[1], b[0], e[0], d[1]};
    for (int i = 0; i < 4; i++)
        if (all[i] > maxfd) maxfd = all[i];
    in.nfds = maxfd + 1;
    in.tv = (struct timeval){2, 0};
    ref = in;
    ref.tv = (struct timeval){0, 0};
    ready_set_main(&ref); /* libc (poll's 1000 ms does not wait: fds are ready) */
    COIL_RUN_CHECKED(ready_set_main, &in);

    assert_int_equal(ref.poll_r, 5);
    assert_int_equal(ref.pfd[0].revents, POLLIN);
    assert_int_equal(ref.pfd[1].revents, POLLOUT);
    assert_int_equal(ref.pfd[2].revents, POLLHUP);
    assert_int_equal(ref.pfd[4].revents, POLLNVAL);
    assert_int_equal(in.poll_r, ref.poll_r);
    for (int i = 0; i < 7; i++)
        assert_int_equal(in.pfd[i].revents, ref.pfd[i].revents);
    assert_true(ref.pfd[3].revents & POLLHUP);
    assert_int_equal(ref.pfd[5].revents, 0);
    assert_int_equal(ref.pfd[6].revents, 0);

    assert_int_equal(ref.select_r, 3); /* a[0], b[0] (end of file), a[1] */
    assert_int_equal(in.select_r, ref.select_r);
    assert_memory_equal(&in.rd, &ref.rd, sizeof in.rd);
    assert_memory_equal(&in.wr, &ref.wr, sizeof in.wr);
    assert_true(FD_ISSET(a[0], &in.rd) && FD_ISSET(b[0], &in.rd) && !FD_ISSET(e[0], &in.rd));
    assert_true(FD_ISSET(a[1], &in.wr) && !FD_ISSET(d[1], &in.wr));
    /* No time passed: (almost) all of it is left in the timeval. */
    assert_true(tv_ns(&in.tv) <= 2 * COIL_SEC);
    assert_true(tv_ns(&in.tv) >= 2 * COIL_SEC - in.select_ns - COIL_USEC);
    close(a[0]);
    close(a[1]);
    close(b[0]);
    close(d[0]);
    close(d[1]);
    close(e[0]);
    close(e[1]);
    close(sp[0]);
}

/* ---- MSG_PEEK, MSG_WAITALL ------------------------------------------------------- */

static void call_recv_peek(struct park *p) {
    CALL(p, recv(p->fd[0], p->buf, sizeof p->buf, MSG_PEEK));
}

static void ready_send_abc(struct park *p) {
    EXPECT_EQ(send(p->fd[1], "abc", 3, 0), 3);
}

static void test_recv_peek_parks_and_leaves_data(void **state) {
    (void)state;
    NEED("recv");
    struct park p = park_of(call_recv_peek, ready_send_abc);
    park_tcp_pair(&p);
    park_run(&p);
    assert_int_equal(p.r, 3);
    assert_memory_equal(p.buf, "abc", 3);
    char b[8];
    assert_int_equal(recv(p.fd[0], b, sizeof b, MSG_DONTWAIT), 3); /* still there */
    assert_memory_equal(b, "abc", 3);
    park_close(&p);
}

static void call_recv_waitall(struct park *p) {
    CALL(p, recv(p->fd[0], p->buf, 12, MSG_WAITALL));
}

static void call_recvfrom_waitall(struct park *p) {
    CALL(p, recvfrom(p->fd[0], p->buf, 12, MSG_WAITALL, NULL, NULL));
}

static void call_recvmsg_waitall(struct park *p) {
    struct iovec iov = {p->buf, 12};
    struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1};
    CALL(p, recvmsg(p->fd[0], &m, MSG_WAITALL));
}

/* Three pieces, 30 ms apart: the call waits for all of them. */
static void ready_three_pieces(struct park *p) {
    EXPECT_EQ(send(p->fd[1], "abcd", 4, 0), 4);
    EXPECT_EQ(usleep(30000), 0);
    EXPECT(!p->done);
    EXPECT_EQ(send(p->fd[1], "efgh", 4, 0), 4);
    EXPECT_EQ(usleep(30000), 0);
    EXPECT(!p->done);
    EXPECT_EQ(send(p->fd[1], "ijkl", 4, 0), 4);
}

static void run_waitall(void (*call)(struct park *)) {
    struct park p = park_of(call, ready_three_pieces);
    park_tcp_pair(&p);
    park_run(&p);
    assert_int_equal(p.r, 12);
    assert_memory_equal(p.buf, "abcdefghijkl", 12);
    park_close(&p);
}

static void test_recv_waitall_gets_everything(void **state) {
    (void)state;
    NEED("recv", "usleep");
    run_waitall(call_recv_waitall);
}

static void test_recvfrom_waitall_gets_everything(void **state) {
    (void)state;
    NEED("recvfrom", "usleep");
    run_waitall(call_recvfrom_waitall);
}

static void test_recvmsg_waitall_gets_everything(void **state) {
    (void)state;
    NEED("recvmsg", "usleep");
    run_waitall(call_recvmsg_waitall);
}

/* ---- SO_RCVTIMEO, SO_SNDTIMEO ------------------------------------------------------ */

static void check_timed_out(const struct park *p, long want_r, int want_errno, int64_t timeo) {
    assert_int_equal(p->r, want_r);
    assert_int_equal(p->err, want_errno);
    assert_true(park_elapsed(p) >= timeo);
    assert_true(park_elapsed(p) < timeo + coil_test_slack());
}

static void test_so_rcvtimeo_recv(void **state) {
    (void)state;
    NEED("recv");
    struct park p = park_of(call_recv, NULL);
    park_tcp_pair(&p);
    set_timeo(p.fd[0], SO_RCVTIMEO, timeo());
    park_run(&p);
    check_timed_out(&p, -1, EAGAIN, timeo());
    park_close(&p);
}

static void test_so_rcvtimeo_read(void **state) {
    (void)state;
    NEED("read");
    struct park p = park_of(call_read, NULL);
    park_tcp_pair(&p);
    set_timeo(p.fd[0], SO_RCVTIMEO, timeo());
    park_run(&p);
    check_timed_out(&p, -1, EAGAIN, timeo());
    park_close(&p);
}

static void test_so_rcvtimeo_accept(void **state) {
    (void)state;
    NEED("accept");
    struct park p = park_of(call_accept, NULL);
    p.fd[0] = coil_test_raw_bound(AF_INET, SOCK_STREAM, 4, &p.a);
    assert_true(p.fd[0] >= 0);
    set_timeo(p.fd[0], SO_RCVTIMEO, timeo());
    park_run(&p);
    check_timed_out(&p, -1, EAGAIN, timeo());
    p.fd[2] = -1;
    park_close(&p);
}

static void call_send_1000(struct park *p) {
    static const char junk[1000];
    CALL(p, send(p->fd[1], junk, sizeof junk, 0));
}

static void call_write_1000(struct park *p) {
    static const char junk[1000];
    CALL(p, write(p->fd[1], junk, sizeof junk));
}

static void test_so_sndtimeo_send(void **state) {
    (void)state;
    NEED("send");
    struct park p = park_of(call_send_1000, NULL);
    park_tcp_pair(&p);
    assert_true(coil_test_fill_socket(p.fd[1]) > 0);
    set_timeo(p.fd[1], SO_SNDTIMEO, timeo());
    park_run(&p);
    check_timed_out(&p, -1, EAGAIN, timeo());
    park_close(&p);
}

static void test_so_sndtimeo_write(void **state) {
    (void)state;
    NEED("write");
    struct park p = park_of(call_write_1000, NULL);
    park_tcp_pair(&p);
    assert_true(coil_test_fill_socket(p.fd[1]) > 0);
    set_timeo(p.fd[1], SO_SNDTIMEO, timeo());
    park_run(&p);
    check_timed_out(&p, -1, EAGAIN, timeo());
    park_close(&p);
}

static void call_connect_sndtimeo(struct park *p) {
    p->fd[1] = socket(AF_INET, SOCK_STREAM, 0);
    if (!EXPECT(p->fd[1] >= 0)) return;
    struct timeval tv = timeo_tv();
    EXPECT_EQ(setsockopt(p->fd[1], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv), 0);
    CALL(p, connect(p->fd[1], COIL_TEST_SA(&p->a), p->a.len));
}

/* A blocking connect that SO_SNDTIMEO ends: Linux says EINPROGRESS. */
static void test_so_sndtimeo_connect(void **state) {
    (void)state;
    NEED("connect");
    int fillers[16], n = 0;
    struct park p = park_of(call_connect_sndtimeo, NULL);
    int l = coil_test_full_backlog_listener(&p.a, fillers, 16, &n);
    if (l == -EAGAIN) skip();
    assert_true(l >= 0);
    struct park ref = p; /* libc, outside coil_run */
    ref.t0 = coil_now();
    call_connect_sndtimeo(&ref);
    ref.t1 = coil_now();
    check_timed_out(&ref, -1, EINPROGRESS, timeo());
    close_fd(&ref.fd[1]);
    park_run(&p);
    check_timed_out(&p, -1, EINPROGRESS, timeo());
    park_close(&p);
    for (int i = 0; i < n; i++)
        close(fillers[i]);
    close(l);
}

/* ---- the fd flags of accept and accept4 ----------------------------------------- */

struct accept_flags {
    int listener;
    struct coil_test_addr a;
    int fdflags[5], nonblock[5];
};

static void accept_flags_main(void *arg) {
    struct accept_flags *af = arg;
    static const int variants[5] = {-1, 0, SOCK_CLOEXEC, SOCK_NONBLOCK,
                                    SOCK_CLOEXEC | SOCK_NONBLOCK};
    for (int i = 0; i < 5; i++) {
        int c = socket(AF_INET, SOCK_STREAM, 0);
        if (!EXPECT(c >= 0)) return;
        EXPECT_EQ(connect(c, COIL_TEST_SA(&af->a), af->a.len), 0);
        int s = variants[i] < 0 ? accept(af->listener, NULL, NULL)
                                : accept4(af->listener, NULL, NULL, variants[i]);
        if (EXPECT(s >= 0)) {
            af->fdflags[i] = fd_flags(s);
            af->nonblock[i] = fl_nonblock(s);
            EXPECT_EQ(close(s), 0);
        }
        EXPECT_EQ(close(c), 0);
    }
}

static void test_accept_fd_flags_as_libc(void **state) {
    (void)state;
    struct accept_flags af;
    memset(&af, 0, sizeof af);
    af.listener = coil_test_raw_bound(AF_INET, SOCK_STREAM, 8, &af.a);
    assert_true(af.listener >= 0);
    COIL_RUN_CHECKED(accept_flags_main, &af);
    static const int want_cloexec[5] = {0, 0, FD_CLOEXEC, 0, FD_CLOEXEC};
    static const int want_nonblock[5] = {0, 0, 0, 1, 1};
    for (int i = 0; i < 5; i++) {
        assert_int_equal(af.fdflags[i], want_cloexec[i]);
        assert_int_equal(af.nonblock[i], want_nonblock[i]);
    }
    close(af.listener);
}

/* ---- a kill, a close -------------------------------------------------------------- */

/* Several calls wait, each in its tasklet; the main tasklet then acts on all
 * of them at once (a kill, or a close of their fds). */
struct multi {
    struct park *p;
    size_t n;
    void (*act)(struct park *p);
};

static void multi_main(void *arg) {
    struct multi *m = arg;
    struct coil_test_ticker ticker = {0};
    coil_id t = coil_spawn(coil_test_ticker_fn, &ticker, NULL);
    for (size_t i = 0; i < m->n; i++) {
        m->p[i].waiter = coil_spawn(park_call, &m->p[i], NULL);
        EXPECT(m->p[i].waiter > 0);
    }
    EXPECT_EQ(coil_sleep(MS(100)), 0);
    await_ticks(&ticker, NULL);
    EXPECT(ticker.ticks > 2);
    for (size_t i = 0; i < m->n; i++)
        EXPECT(!m->p[i].done);
    for (size_t i = 0; i < m->n; i++)
        m->act(&m->p[i]);
    for (size_t i = 0; i < m->n; i++) {
        if (!EXPECT_EQ(coil_join(m->p[i].waiter, coil_test_in(10 * COIL_SEC)), 0)) {
            coil_kill(m->p[i].waiter);
            coil_join(m->p[i].waiter, COIL_FOREVER);
        }
    }
    ticker.stop = true;
    coil_join(t, COIL_FOREVER);
}

static void kcall_read(struct park *p) {
    char b[8];
    CALL(p, read(p->fd[0], b, sizeof b));
    CALL2(p, read(p->fd[0], b, sizeof b));
}
static void kcall_readv(struct park *p) {
    struct iovec v = {p->buf, 8};
    CALL(p, readv(p->fd[0], &v, 1));
    CALL2(p, readv(p->fd[0], &v, 1));
}
static void kcall_recv(struct park *p) {
    char b[8];
    CALL(p, recv(p->fd[0], b, sizeof b, 0));
    CALL2(p, recv(p->fd[0], b, sizeof b, 0));
}
static void kcall_recvmsg(struct park *p) {
    struct iovec v = {p->buf, 8};
    struct msghdr m = {.msg_iov = &v, .msg_iovlen = 1};
    CALL(p, recvmsg(p->fd[0], &m, 0));
    CALL2(p, recvmsg(p->fd[0], &m, 0));
}
static void kcall_accept(struct park *p) {
    CALL(p, accept(p->fd[0], NULL, NULL));
    CALL2(p, accept(p->fd[0], NULL, NULL));
}
static void kcall_write(struct park *p) {
    CALL(p, write(p->fd[1], "x", 1));
    CALL2(p, write(p->fd[1], "x", 1));
}
static void kcall_poll(struct park *p) {
    struct pollfd pfd = {.fd = p->fd[0], .events = POLLIN};
    CALL(p, poll(&pfd, 1, -1));
    CALL2(p, poll(&pfd, 1, -1));
}
static void kcall_select(struct park *p) {
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(p->fd[0], &rd);
    CALL(p, select(p->fd[0] + 1, &rd, NULL, NULL, NULL));
    FD_SET(p->fd[0], &rd);
    CALL2(p, select(p->fd[0] + 1, &rd, NULL, NULL, NULL));
}
static void kcall_epoll_wait(struct park *p) {
    struct epoll_event ev;
    CALL(p, epoll_wait(p->fd[2], &ev, 1, -1));
    CALL2(p, epoll_wait(p->fd[2], &ev, 1, -1));
}
static void kcall_nanosleep(struct park *p) {
    struct timespec ts = {10, 0};
    p->rem = (struct timespec){-1, -1};
    CALL(p, nanosleep(&ts, &p->rem));
}
static void kcall_clock_nanosleep(struct park *p) {
    struct timespec ts = {10, 0};
    p->rem = (struct timespec){-1, -1};
    CALL(p, clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, &p->rem));
}
static void kcall_usleep(struct park *p) {
    CALL(p, usleep(10 * 1000 * 1000));
}
static void kcall_sleep(struct park *p) {
    CALL(p, sleep(10));
}

static void act_kill(struct park *p) {
    EXPECT_EQ(coil_kill(p->waiter), 0);
}

enum {
    K_READ,
    K_READV,
    K_RECV,
    K_RECVMSG,
    K_ACCEPT,
    K_WRITE,
    K_POLL,
    K_SELECT,
    K_EPOLL,
    K_NANOSLEEP,
    K_CLOCK_NANOSLEEP,
    K_USLEEP,
    K_SLEEP,
    K_COUNT
};

/* A killed tasklet's blocking call fails with ECANCELED, and so does its next
 * one; a sleep too (with the time left in rem; not EINTR, which retry loops
 * would retry forever), and sleep(3), which has no error, returns 0. */
static void test_kill_ends_blocked_calls(void **state) {
    (void)state;
    NEED("read", "readv", "recv", "recvmsg", "accept", "write", "poll", "select", "epoll_wait",
         "nanosleep", "clock_nanosleep", "usleep", "sleep");
    static struct park k[K_COUNT];
    static void (*const calls[K_COUNT])(struct park *) = {
        [K_READ] = kcall_read,
        [K_READV] = kcall_readv,
        [K_RECV] = kcall_recv,
        [K_RECVMSG] = kcall_recvmsg,
        [K_ACCEPT] = kcall_accept,
        [K_WRITE] = kcall_write,
        [K_POLL] = kcall_poll,
        [K_SELECT] = kcall_select,
        [K_EPOLL] = kcall_epoll_wait,
        [K_NANOSLEEP] = kcall_nanosleep,
        [K_CLOCK_NANOSLEEP] = kcall_clock_nanosleep,
        [K_USLEEP] = kcall_usleep,
        [K_SLEEP] = kcall_sleep,
    };
    for (int i = 0; i < K_COUNT; i++)
        k[i] = park_of(calls[i], NULL);
    assert_int_equal(pipe(k[K_READ].fd), 0);
    assert_int_equal(pipe(k[K_READV].fd), 0);
    park_tcp_pair(&k[K_RECV]);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, k[K_RECVMSG].fd), 0);
    k[K_ACCEPT].fd[0] = coil_test_raw_bound(AF_INET, SOCK_STREAM, 4, &k[K_ACCEPT].a);
    assert_true(k[K_ACCEPT].fd[0] >= 0);
    assert_int_equal(pipe(k[K_WRITE].fd), 0);
    coil_test_fill_pipe(k[K_WRITE].fd[1]);
    assert_int_equal(pipe(k[K_POLL].fd), 0);
    assert_int_equal(pipe(k[K_SELECT].fd), 0);
    park_epoll_pipe(&k[K_EPOLL]);
    struct multi m = {k, K_COUNT, act_kill};
    COIL_RUN_CHECKED(multi_main, &m);
    static const char *const names[K_COUNT] = {"read",  "readv", "recv",   "recvmsg",   "accept",
                                               "write", "poll",  "select", "epoll_wait"};
    for (int i = K_READ; i <= K_EPOLL; i++) {
        if (k[i].r != -1 || k[i].err != ECANCELED || k[i].r2 != -1 || k[i].err2 != ECANCELED)
            fail_msg("%s in a killed tasklet: %ld/%s then %ld/%s; want -1/ECANCELED twice",
                     names[i], k[i].r, strerror(k[i].err), k[i].r2, strerror(k[i].err2));
    }
    int64_t left_min = 10 * COIL_SEC - MS(100) - coil_test_slack();
    assert_int_equal(k[K_NANOSLEEP].r, -1);
    assert_int_equal(k[K_NANOSLEEP].err, ECANCELED);
    assert_true(ts_ns(&k[K_NANOSLEEP].rem) > left_min);
    assert_true(ts_ns(&k[K_NANOSLEEP].rem) < 10 * COIL_SEC);
    assert_int_equal(k[K_CLOCK_NANOSLEEP].r, ECANCELED);
    assert_int_equal(k[K_CLOCK_NANOSLEEP].err, 0); /* clock_nanosleep leaves errno */
    assert_true(ts_ns(&k[K_CLOCK_NANOSLEEP].rem) > left_min);
    assert_true(ts_ns(&k[K_CLOCK_NANOSLEEP].rem) < 10 * COIL_SEC);
    assert_int_equal(k[K_USLEEP].r, -1);
    assert_int_equal(k[K_USLEEP].err, ECANCELED);
    assert_int_equal(k[K_SLEEP].r, 0); /* ends "while ((left = sleep(left)));" */
    for (int i = 0; i < K_COUNT; i++)
        park_close(&k[i]);
}

static void act_close_fd0(struct park *p) {
    EXPECT_EQ(close(p->fd[0]), 0);
    p->fd[0] = -1;
}

/* close() of an fd other tasklets wait on wakes them: -1/EBADF. */
static void test_close_wakes_blocked_calls(void **state) {
    (void)state;
    NEED("read", "recv", "accept");
    struct park c[3] = {park_of(call_read, NULL), park_of(call_recv, NULL),
                        park_of(call_accept, NULL)};
    assert_int_equal(pipe(c[0].fd), 0);
    park_tcp_pair(&c[1]);
    c[2].fd[0] = coil_test_raw_bound(AF_INET, SOCK_STREAM, 4, &c[2].a);
    assert_true(c[2].fd[0] >= 0);
    struct multi m = {c, 3, act_close_fd0};
    COIL_RUN_CHECKED(multi_main, &m);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(c[i].r, -1);
        assert_int_equal(c[i].err, EBADF);
        c[i].fd[2] = -1;
        park_close(&c[i]);
    }
}

/* ---- dup2/dup3 onto an fd tasklets wait on -------------------------------------- */

struct dupper {
    int a[2], b[2]; /* the reader waits on a[0]; b[0] is dup'ed onto it */
    int how;        /* 2: dup2, 3: dup3, 0: dup2 of a[0] onto itself */
    ssize_t r;
    int err, dup_r;
    char got;
};

static void dupper_reader(void *arg) {
    struct dupper *d = arg;
    char c = 0;
    errno = 0;
    d->r = read(d->a[0], &c, 1);
    d->err = errno;
    d->got = c;
}

static void dupper_main(void *arg) {
    struct dupper *d = arg;
    coil_id reader = coil_spawn(dupper_reader, d, NULL);
    coil_sleep(MS(20)); /* the reader is parked in read */
    if (d->how == 0) {
        d->dup_r = dup2(d->a[0], d->a[0]); /* a no-op: the reader still waits */
        coil_sleep(MS(10));
        EXPECT_EQ(write(d->a[1], "a", 1), 1);
    } else {
        d->dup_r = d->how == 2 ? dup2(d->b[0], d->a[0]) : dup3(d->b[0], d->a[0], O_CLOEXEC);
    }
    coil_join(reader, COIL_FOREVER);
    if (d->how == 0) return;
    /* The number names b's read end now: a diverted read of it works. */
    EXPECT_EQ(write(d->b[1], "b", 1), 1);
    char c = 0;
    EXPECT_EQ(read(d->a[0], &c, 1), 1);
    EXPECT_EQ(c, 'b');
}

static void test_dup2_onto_waited_fd(void **state) {
    (void)state;
    NEED("read", "dup2", "dup3");
    for (int how = 0; how <= 3; how++) {
        if (how == 1) continue;
        struct dupper d = {.how = how};
        assert_int_equal(pipe(d.a), 0);
        assert_int_equal(pipe(d.b), 0);
        COIL_RUN_CHECKED(dupper_main, &d);
        assert_int_equal(d.dup_r, d.a[0]);
        if (how == 0) {
            assert_int_equal(d.r, 1);
            assert_int_equal(d.got, 'a');
        } else {
            assert_int_equal(d.r, -1);
            assert_int_equal(d.err, EBADF);
            if (how == 3) assert_int_equal(fcntl(d.a[0], F_GETFD), FD_CLOEXEC);
        }
        for (int i = 0; i < 2; i++) {
            close(d.a[i]);
            close(d.b[i]);
        }
    }
}

/* ---- recvmmsg/sendmmsg on UDP ------------------------------------------------- */

struct mmsg {
    int rx, tx;
    int flags; /* of the recvmmsg */
    int got, sent1, sent2, ticks;
    char buf[3][8];
    struct mmsghdr vec[3];
    struct iovec iov[3];
};

static void mmsg_sender(void *arg) {
    struct mmsg *m = arg;
    coil_sleep(MS(30));
    m->ticks = 1;
    struct iovec iov[2] = {{"one", 3}, {"two", 3}};
    struct mmsghdr out[2] = {{.msg_hdr = {.msg_iov = &iov[0], .msg_iovlen = 1}},
                             {.msg_hdr = {.msg_iov = &iov[1], .msg_iovlen = 1}}};
    m->sent1 = sendmmsg(m->tx, out, 2, 0);
    coil_sleep(MS(30));
    m->sent2 = sendmmsg(m->tx, out, 1, 0);
}

static void mmsg_main(void *arg) {
    struct mmsg *m = arg;
    coil_spawn(mmsg_sender, m, NULL);
    for (int i = 0; i < 3; i++) {
        m->iov[i] = (struct iovec){m->buf[i], sizeof m->buf[i]};
        m->vec[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &m->iov[i], .msg_iovlen = 1}};
    }
    m->got = recvmmsg(m->rx, m->vec, 3, m->flags, NULL);
    /* MSG_WAITFORONE: what was there once the first came (the sender's
     * second message may still be on its way: io_uring sends it as an op of
     * its own); the rest is drained here. */
    for (int i = m->got; i < 3 && (m->flags & MSG_WAITFORONE); i++) {
        char c[8];
        EXPECT_EQ(recv(m->rx, c, sizeof c, 0), 3);
    }
}

static void test_recvmmsg_sendmmsg_udp(void **state) {
    (void)state;
    NEED("recvmmsg", "sendmmsg", "recv");
    for (int w = 0; w < 2; w++) {
        struct mmsg m = {.flags = w ? MSG_WAITFORONE : 0};
        struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
        socklen_t alen = sizeof a;
        m.rx = socket(AF_INET, SOCK_DGRAM, 0);
        m.tx = socket(AF_INET, SOCK_DGRAM, 0);
        assert_int_equal(bind(m.rx, (struct sockaddr *)&a, sizeof a), 0);
        assert_int_equal(getsockname(m.rx, (struct sockaddr *)&a, &alen), 0);
        assert_int_equal(connect(m.tx, (struct sockaddr *)&a, sizeof a), 0);
        COIL_RUN_CHECKED(mmsg_main, &m);
        assert_int_equal(m.ticks, 1); /* the sender ran while recvmmsg waited */
        assert_int_equal(m.sent1, 2);
        assert_int_equal(m.sent2, 1);
        /* MSG_WAITFORONE: one or two (what was there); else all three. */
        if (w)
            assert_true(m.got == 1 || m.got == 2);
        else
            assert_int_equal(m.got, 3);
        assert_int_equal(m.vec[0].msg_len, 3);
        assert_memory_equal(m.buf[0], "one", 3);
        if (m.got >= 2) assert_memory_equal(m.buf[1], "two", 3);
        if (!w) assert_memory_equal(m.buf[2], "one", 3);
        close(m.rx);
        close(m.tx);
    }
}

/* ---- sendfile to a slow reader parks only its tasklet --------------------------- */

#define SF_LEN (1 << 20)

struct sf {
    int file, sv[2];
    ssize_t sent;
    size_t got;
    int ticks_during; /* ticks while sendfile was in progress */
    int ticks;
    bool done, bad;
};

static void sf_ticker(void *arg) {
    struct sf *x = arg;
    while (!x->done) {
        coil_sleep(MS(5));
        x->ticks++;
    }
}

static void sf_reader(void *arg) {
    struct sf *x = arg;
    static char buf[65536];
    while (x->got < SF_LEN) {
        coil_sleep(MS(5)); /* a slow reader */
        ssize_t r = read(x->sv[1], buf, sizeof buf);
        if (r <= 0) break;
        for (ssize_t i = 0; i < r; i++)
            if (buf[i] != (char)((x->got + (size_t)i) % 251)) x->bad = true;
        x->got += (size_t)r;
    }
}

static void sf_main(void *arg) {
    struct sf *x = arg;
    coil_spawn(sf_ticker, x, NULL);
    coil_id rd = coil_spawn(sf_reader, x, NULL);
    int before = x->ticks;
    x->sent = sendfile(x->sv[0], x->file, NULL, SF_LEN);
    x->ticks_during = x->ticks - before;
    coil_join(rd, COIL_FOREVER);
    x->done = true;
}

static void test_sendfile_to_slow_reader(void **state) {
    (void)state;
    NEED("sendfile", "read");
    struct sf x = {0};
    char path[] = "/tmp/coil-sendfile-XXXXXX";
    x.file = mkstemp(path);
    assert_true(x.file >= 0);
    unlink(path);
    char *data = malloc(SF_LEN);
    assert_non_null(data);
    for (size_t i = 0; i < SF_LEN; i++)
        data[i] = (char)(i % 251);
    assert_int_equal(pwrite(x.file, data, SF_LEN, 0), SF_LEN);
    free(data);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, x.sv), 0);
    COIL_RUN_CHECKED(sf_main, &x);
    assert_int_equal(x.sent, SF_LEN);
    assert_int_equal(x.got, SF_LEN);
    assert_false(x.bad);
    /* The reader and the ticker ran while sendfile waited for room. */
    assert_true(x.ticks_during >= 3);
    close(x.file);
    close(x.sv[0]);
    close(x.sv[1]);
}

/* ---- waiting for a child parks the tasklet ------------------------------------- */

static pid_t child_exiting(int ms, int code) {
    pid_t pid = fork();
    if (pid == 0) {
        struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
        nanosleep(&ts, NULL);
        _exit(code);
    }
    return pid;
}

/* A child that exits with code once a byte comes on the pipe (or the pipe
 * closes), or by itself after 10 s: the parent decides when, so that a check
 * made while it waits is a hand-shake, not a race with a timer (a CPU-starved
 * run, the suite beside a parallel build, ticked too few times in a fixed
 * 200 ms). *release gets the write end. */
static pid_t child_released(int *release, int code) {
    int p[2];
    if (pipe2(p, O_CLOEXEC) < 0) return -1;
    pid_t pid = fork();
    if (pid == 0) {
        close(p[1]);
        struct pollfd pfd = {.fd = p[0], .events = POLLIN};
        poll(&pfd, 1, 10 * 1000);
        _exit(code);
    }
    close(p[0]);
    *release = p[1];
    return pid;
}

struct waiter {
    int form;    /* 0 waitpid(pid), 1 wait4(-1), 2 waitid(P_PID), 3 wait(), 4 waitid(P_ALL) */
    int release; /* the child exits once this is written (child_released) */
    pid_t pid;
    pid_t r;
    int err, status, ticks;
    siginfo_t info;
    struct rusage ru;
    bool done;
};

/* Ticks while the wait waits, and lets the child exit after the fifth tick:
 * if the wait blocked the thread, no tick comes until the child gives up. */
static void waiter_ticker(void *arg) {
    struct waiter *w = arg;
    while (!w->done) {
        coil_sleep(MS(10));
        if (++w->ticks == 5) {
            EXPECT_EQ(write(w->release, "x", 1), 1);
            close_fd(&w->release);
        }
    }
}

static void waiter_main(void *arg) {
    struct waiter *w = arg;
    coil_spawn(waiter_ticker, w, NULL);
    errno = 0;
    switch (w->form) {
    case 0: w->r = waitpid(w->pid, &w->status, 0); break;
    case 1: w->r = wait4(-1, &w->status, 0, &w->ru); break;
    case 2: w->r = waitid(P_PID, (id_t)w->pid, &w->info, WEXITED); break;
    case 3: w->r = wait(&w->status); break;
    default: w->r = waitid(P_ALL, 0, &w->info, WEXITED); break;
    }
    w->err = errno;
    w->done = true;
}

static void test_wait_for_child_parks(void **state) {
    (void)state;
    NEED("waitpid", "wait4", "waitid", "wait");
    for (int form = 0; form <= 4; form++) {
        struct waiter w = {.form = form, .release = -1};
        w.pid = child_released(&w.release, 7);
        assert_true(w.pid > 0);
        COIL_RUN_CHECKED(waiter_main, &w);
        close_fd(&w.release);
        if (form == 2 || form == 4) {
            assert_int_equal(w.r, 0);
            assert_int_equal(w.info.si_pid, w.pid);
            assert_int_equal(w.info.si_code, CLD_EXITED);
            assert_int_equal(w.info.si_status, 7);
        } else {
            assert_int_equal(w.r, w.pid);
            assert_true(WIFEXITED(w.status));
            assert_int_equal(WEXITSTATUS(w.status), 7);
        }
        /* The ticker released the child: the wait parked. */
        assert_true(w.ticks >= 5);
    }
}

struct wait_errors {
    pid_t running;
    pid_t nohang, nochild;
    int nochild_err;
    pid_t killed;
    int killed_err;
};

static void wait_killed(void *arg) {
    struct wait_errors *e = arg;
    int st;
    errno = 0;
    e->killed = waitpid(e->running, &st, 0);
    e->killed_err = errno;
}

static void wait_errors_main(void *arg) {
    struct wait_errors *e = arg;
    int st = 0;
    e->nohang = waitpid(e->running, &st, WNOHANG); /* libc's own: 0, still running */
    errno = 0;
    e->nochild = waitpid(getpid(), &st, 0); /* not a child */
    e->nochild_err = errno;
    coil_id t = coil_spawn(wait_killed, e, NULL);
    coil_sleep(MS(20));
    coil_kill(t);
    coil_join(t, COIL_FOREVER);
}

static void test_wait_for_child_errors(void **state) {
    (void)state;
    NEED("waitpid");
    struct wait_errors e = {0};
    e.running = child_exiting(300, 0);
    assert_true(e.running > 0);
    COIL_RUN_CHECKED(wait_errors_main, &e);
    assert_int_equal(e.nohang, 0);
    assert_int_equal(e.nochild, -1);
    assert_int_equal(e.nochild_err, ECHILD);
    assert_int_equal(e.killed, -1);
    assert_int_equal(e.killed_err, ECANCELED);
    int st;
    assert_int_equal(waitpid(e.running, &st, 0), e.running); /* outside: libc's */
}

/* ---- a blocking write or send is complete ------------------------------------------- */

struct bulk {
    int fd[2];
    bool sock;
    char *data;
    size_t len;
    long wrote;
    int err;
    size_t got;
    size_t first_bad;
    char *in;
};

static void bulk_writer(void *arg) {
    struct bulk *b = arg;
    errno = 0;
    b->wrote = b->sock ? send(b->fd[1], b->data, b->len, 0) : write(b->fd[1], b->data, b->len);
    b->err = errno;
    EXPECT_EQ(close(b->fd[1]), 0); /* the reader sees the end */
    b->fd[1] = -1;
}

static void bulk_reader(void *arg) {
    struct bulk *b = arg;
    usleep(20000); /* the writer fills the buffer first */
    for (;;) {
        size_t room = b->len - b->got;
        ssize_t n = read(b->fd[0], b->in + b->got, room < 65536 ? room : 65536);
        if (n <= 0) {
            EXPECT_EQ(n, 0);
            break;
        }
        b->got += (size_t)n;
        if (b->got == b->len) {
            char extra;
            EXPECT_EQ(read(b->fd[0], &extra, 1), 0);
            break;
        }
    }
}

static void bulk_main(void *arg) {
    struct bulk *b = arg;
    coil_id w = coil_spawn(bulk_writer, b, NULL);
    coil_id r = coil_spawn(bulk_reader, b, NULL);
    EXPECT_EQ(coil_join(w, coil_test_in(60 * COIL_SEC)), 0);
    EXPECT_EQ(coil_join(r, coil_test_in(60 * COIL_SEC)), 0);
}

static void run_bulk(struct bulk *b) {
    b->data = malloc(b->len);
    b->in = malloc(b->len);
    assert_non_null(b->data);
    assert_non_null(b->in);
    coil_test_pattern_fill(b->data, b->len, 7, 0);
    COIL_RUN_CHECKED(bulk_main, b);
    assert_int_equal(b->got, b->wrote < 0 ? 0 : (size_t)b->wrote);
    assert_int_equal(coil_test_pattern_check(b->in, b->got, 7, 0), b->got);
    close_fd(&b->fd[0]);
    close_fd(&b->fd[1]);
    free(b->data);
    free(b->in);
    if (b->wrote != (long)b->len)
        fail_msg("a blocking %s of %zu bytes returned %ld (errno %s); libc's is complete",
                 b->sock ? "send" : "write", b->len, b->wrote, strerror(b->err));
}

/* POSIX: a blocking write to a pipe returns nbyte once all is written. */
static void test_blocking_write_to_pipe_is_complete(void **state) {
    (void)state;
    NEED("write", "read", "usleep");
    struct bulk b = {.len = coil_test_scaled(1 << 20, 256 << 10)};
    assert_int_equal(pipe(b.fd), 0);
    run_bulk(&b);
}

/* Linux: a blocking send on a stream socket sends everything (no timeout, no
 * signal) before it returns. */
static void test_blocking_send_is_complete(void **state) {
    (void)state;
    NEED("send", "read", "usleep");
    struct bulk b = {.len = coil_test_scaled(4 << 20, 1 << 20), .sock = true};
    assert_int_equal(coil_test_raw_tcp_pair(AF_INET, &b.fd[1], &b.fd[0]), 0);
    assert_int_equal(coil_test_setsockopt_int(b.fd[1], SOL_SOCKET, SO_SNDBUF, 32 << 10), 0);
    assert_int_equal(coil_test_setsockopt_int(b.fd[0], SOL_SOCKET, SO_RCVBUF, 32 << 10), 0);
    run_bulk(&b);
}

/* ---- calls that must not hang the thread: in a child, with a time limit ------------ */

/* Runs fn in a child that must exit with 0 within a few seconds (its work
 * takes well under one); one that hangs is killed (signal 9). */
static void child_run(void (*fn)(void *), void *arg, const char *what) {
    coil_test_child_run(fn, arg, coil_test_under_valgrind() ? 60000 : 8000, what);
}

static int child_result(int rc) {
    struct coil_test_failure *f = coil_test_failure();
    if (rc != 0) fprintf(stderr, "coil_run returned %d\n", rc);
    return rc != 0 ? 2 : f->count ? 1 : 0;
}

/* A tasklet running the usual EINTR retry loop around nanosleep is killed:
 * the loop must end (and not spin without letting others run). */
struct eintr_loop {
    bool done;
    long loops;
};

static void eintr_sleeper(void *arg) {
    struct eintr_loop *e = arg;
    struct timespec ts = {30, 0};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR)
        e->loops++;
    e->done = true;
}

static void eintr_main(void *arg) {
    struct eintr_loop *e = arg;
    coil_id s = coil_spawn(eintr_sleeper, e, NULL);
    EXPECT_EQ(coil_sleep(MS(50)), 0);
    EXPECT_EQ(coil_kill(s), 0);
    EXPECT_EQ(coil_join(s, coil_test_in(3 * COIL_SEC)), 0);
    EXPECT(e->done);
}

static void eintr_child(void *arg) {
    (void)arg;
    struct eintr_loop e = {0};
    coil_test_reset_failures();
    int rc = coil_run(eintr_main, &e);
    _exit(child_result(rc));
}

static void test_killed_nanosleep_retry_loop_ends(void **state) {
    (void)state;
    NEED("nanosleep");
    child_run(eintr_child, NULL, "the EINTR retry loop of a killed tasklet did not end");
}

/* A blocking writev larger than the pipe's buffer, read by another tasklet:
 * it must complete (libc: all bytes) without blocking the thread. */
struct bigv {
    int fd[2];
    long wrote;
    int err;
    size_t got;
};

static void bigv_writer(void *arg) {
    struct bigv *b = arg;
    static char data[256 << 10];
    memset(data, 'v', sizeof data);
    struct iovec iov[2] = {{data, sizeof data / 2}, {data + sizeof data / 2, sizeof data / 2}};
    errno = 0;
    b->wrote = writev(b->fd[1], iov, 2);
    b->err = errno;
    close(b->fd[1]);
    b->fd[1] = -1;
}

static void bigv_reader(void *arg) {
    struct bigv *b = arg;
    char buf[16384];
    for (;;) {
        ssize_t n = read(b->fd[0], buf, sizeof buf);
        if (n <= 0) break;
        b->got += (size_t)n;
    }
}

static void bigv_main(void *arg) {
    struct bigv *b = arg;
    coil_id w = coil_spawn(bigv_writer, b, NULL);
    coil_id r = coil_spawn(bigv_reader, b, NULL);
    EXPECT_EQ(coil_join(w, coil_test_in(10 * COIL_SEC)), 0);
    EXPECT_EQ(coil_join(r, coil_test_in(10 * COIL_SEC)), 0);
    EXPECT_EQ(b->wrote, 256 << 10);
    EXPECT_EQ(b->got, 256 << 10);
}

static void bigv_child(void *arg) {
    (void)arg;
    struct bigv b = {.fd = {-1, -1}};
    if (pipe(b.fd) != 0) _exit(3);
    coil_test_reset_failures();
    int rc = coil_run(bigv_main, &b);
    _exit(child_result(rc));
}

static void test_large_writev_to_pipe_does_not_block_thread(void **state) {
    (void)state;
    NEED("writev", "read");
    child_run(bigv_child, NULL, "a large blocking writev into a pipe did not complete");
}

/* ==== 3. the resolver =========================================================== */

struct gai_copy {
    int rc, sys_errno, n;
    struct {
        int family, socktype, protocol;
        socklen_t addrlen;
        unsigned char addr[sizeof(struct sockaddr_in6)];
    } ai[16];
    char canon[256];
};

struct host_copy {
    int rc; /* gethostbyname_r's return */
    int found, herr;
    char name[256];
    int addrtype, length, naddrs, naliases;
    unsigned char addrs[8][16];
};

struct resolved {
    struct gai_copy gai[4];
    int ni_rc[2];
    char ni_host[2][NI_MAXHOST], ni_serv[2][NI_MAXSERV];
    struct host_copy hbn, hbn_missing, hbnr, hbnr_missing;
};

static void gai_collect(const char *node, const char *service, struct gai_copy *out) {
    struct addrinfo hints = {
        .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_CANONNAME};
    struct addrinfo *res = NULL;
    errno = 0;
    out->rc = getaddrinfo(node, service, &hints, &res);
    out->sys_errno = out->rc == EAI_SYSTEM ? errno : 0;
    if (out->rc != 0) return;
    if (res && res->ai_canonname) snprintf(out->canon, sizeof out->canon, "%s", res->ai_canonname);
    for (struct addrinfo *ai = res; ai && out->n < 16; ai = ai->ai_next, out->n++) {
        out->ai[out->n].family = ai->ai_family;
        out->ai[out->n].socktype = ai->ai_socktype;
        out->ai[out->n].protocol = ai->ai_protocol;
        out->ai[out->n].addrlen = ai->ai_addrlen;
        memcpy(out->ai[out->n].addr, ai->ai_addr,
               ai->ai_addrlen < sizeof out->ai[0].addr ? ai->ai_addrlen : sizeof out->ai[0].addr);
    }
    freeaddrinfo(res);
}

static void host_collect(struct host_copy *h, const struct hostent *he, int herr) {
    h->found = he != NULL;
    h->herr = he ? 0 : herr;
    if (!he) return;
    snprintf(h->name, sizeof h->name, "%s", he->h_name);
    h->addrtype = he->h_addrtype;
    h->length = he->h_length;
    for (char **a = he->h_addr_list; *a && h->naddrs < 8; a++)
        memcpy(h->addrs[h->naddrs++], *a, he->h_length <= 16 ? (size_t)he->h_length : 16);
    for (char **a = he->h_aliases; *a; a++)
        h->naliases++;
}

static void hbnr_collect(const char *name, struct host_copy *h) {
    struct hostent he, *result = NULL;
    char buf[8192];
    int herr = 0;
    h->rc = gethostbyname_r(name, &he, buf, sizeof buf, &result, &herr);
    host_collect(h, result, herr);
}

/* Under Valgrind only numeric lookups: a name sets up glibc's per-thread
 * resolver state on the offload worker that looks it up, workers never exit,
 * and Valgrind reports that state as definitely lost at exit (as it does
 * without coil for any thread alive at exit that resolved a name; see
 * valgrind_and_the_resolver in tests/test_net_dial.c). */
static bool names_resolvable(void) {
    return !coil_test_under_valgrind();
}

static void resolve_all(struct resolved *r) {
    memset(r, 0, sizeof *r);
    bool names = names_resolvable();
    gai_collect(names ? "localhost" : "::1", "80", &r->gai[0]);
    gai_collect("127.0.0.1", "http", &r->gai[1]);
    gai_collect(names ? "nonexistent.invalid" : "127.0.0.1", names ? "80" : "no-such-service",
                &r->gai[2]);
    gai_collect(names ? "localhost" : "127.0.0.1", "no-such-service-name", &r->gai[3]);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(80)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    r->ni_rc[0] = getnameinfo((struct sockaddr *)&sin, sizeof sin, r->ni_host[0], NI_MAXHOST,
                              r->ni_serv[0], NI_MAXSERV, NI_NUMERICHOST | NI_NUMERICSERV);
    r->ni_rc[1] = getnameinfo((struct sockaddr *)&sin, sizeof sin, r->ni_host[1], NI_MAXHOST,
                              r->ni_serv[1], NI_MAXSERV, names ? 0 : NI_NUMERICHOST);
    if (!names) return;
    h_errno = 0;
    struct hostent *he = gethostbyname("localhost");
    host_collect(&r->hbn, he, h_errno);
    h_errno = 0;
    he = gethostbyname("nonexistent.invalid");
    host_collect(&r->hbn_missing, he, h_errno);
    hbnr_collect("localhost", &r->hbnr);
    hbnr_collect("nonexistent.invalid", &r->hbnr_missing);
}

struct resolve_run {
    struct resolved in;
    long ticks;
};

static void resolve_main(void *arg) {
    struct resolve_run *rr = arg;
    struct coil_test_ticker ticker = {0};
    coil_id t = coil_spawn(coil_test_ticker_fn, &ticker, NULL);
    resolve_all(&rr->in);
    rr->ticks = ticker.ticks; /* not asserted: the lookups are quick */
    ticker.stop = true;
    coil_join(t, COIL_FOREVER);
}

static void test_resolver_answers_as_libc(void **state) {
    (void)state;
    static struct resolved ref;
    static struct resolve_run rr;
    resolve_all(&ref); /* libc, outside coil_run */
    COIL_RUN_CHECKED(resolve_main, &rr);
    struct resolved *in = &rr.in;
    /* What the test relies on, from /etc/hosts and /etc/services. */
    assert_int_equal(ref.gai[0].rc, 0);
    assert_true(ref.gai[0].n >= 1);
    assert_int_equal(ref.gai[1].rc, 0);
    assert_int_not_equal(ref.gai[2].rc, 0);
    assert_int_equal(ref.ni_rc[0], 0);
    assert_string_equal(ref.ni_host[0], "127.0.0.1");
    assert_string_equal(ref.ni_serv[0], "80");
    assert_true(ref.hbn.found || !names_resolvable());
    assert_false(ref.hbn_missing.found);
    /* The same answers inside a tasklet. */
    for (int i = 0; i < 4; i++) {
        assert_int_equal(in->gai[i].rc, ref.gai[i].rc);
        assert_int_equal(in->gai[i].sys_errno, ref.gai[i].sys_errno);
        assert_int_equal(in->gai[i].n, ref.gai[i].n);
        assert_memory_equal(&in->gai[i], &ref.gai[i], sizeof ref.gai[i]);
    }
    for (int i = 0; i < 2; i++) {
        assert_int_equal(in->ni_rc[i], ref.ni_rc[i]);
        assert_string_equal(in->ni_host[i], ref.ni_host[i]);
        assert_string_equal(in->ni_serv[i], ref.ni_serv[i]);
    }
    assert_string_equal(in->hbn.name, ref.hbn.name);
    assert_memory_equal(&in->hbn, &ref.hbn, sizeof ref.hbn);
    assert_memory_equal(&in->hbn_missing, &ref.hbn_missing, sizeof ref.hbn_missing);
    assert_int_equal(in->hbnr.rc, ref.hbnr.rc);
    assert_memory_equal(&in->hbnr, &ref.hbnr, sizeof ref.hbnr);
    assert_memory_equal(&in->hbnr_missing, &ref.hbnr_missing, sizeof ref.hbnr_missing);
}

/* getaddrinfo of a numeric host and service does not wait for the offload
 * pool: while every worker is held (coil_test_while_pool_held) it answers,
 * as libc does outside coil_run. */
static struct gai_copy gai_literal;

static void gai_literal_lookup(void *arg) {
    (void)arg;
    gai_collect("127.0.0.1", "5432", &gai_literal);
}

static void gai_literal_main(void *arg) {
    *(bool *)arg = coil_test_while_pool_held(gai_literal_lookup, NULL);
}

static void test_resolver_literal_does_not_wait_for_the_pool(void **state) {
    (void)state;
    NEED("getaddrinfo");
    static struct gai_copy ref;
    memset(&ref, 0, sizeof ref);
    gai_collect("127.0.0.1", "5432", &ref); /* libc, outside coil_run */
    memset(&gai_literal, 0, sizeof gai_literal);
    bool returned_while_held = false;
    COIL_RUN_CHECKED(gai_literal_main, &returned_while_held);
    assert_true(returned_while_held);
    assert_int_equal(ref.rc, 0);
    assert_true(ref.n >= 1);
    assert_memory_equal(&gai_literal, &ref, sizeof ref);
}

/* In a killed tasklet the lookups fail (the offload pool is not used), and
 * *res is not touched. */
struct killed_resolve {
    int gai_rc, gai_errno;
    int gai_lit_rc, gai_lit_errno; /* a numeric host, answered without the pool */
    struct addrinfo *res;
    int gni_rc, gni_errno;
    struct hostent *hbn;
    int hbn_herr;
    int hbnr_rc;
    struct hostent *hbnr_result;
};

static void killed_resolve_main(void *arg) {
    struct killed_resolve *k = arg;
    EXPECT_EQ(coil_kill(coil_self()), 0);
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM};
    static struct addrinfo sentinel;
    k->res = &sentinel; /* as an uninitialised variable might be */
    errno = 0;
    k->gai_rc = getaddrinfo("localhost", "80", &hints, &k->res);
    k->gai_errno = errno;
    if (k->gai_rc == 0 && k->res != &sentinel) freeaddrinfo(k->res);
    struct addrinfo *lit = &sentinel;
    errno = 0;
    k->gai_lit_rc = getaddrinfo("127.0.0.1", "80", &hints, &lit);
    k->gai_lit_errno = errno;
    if (k->gai_lit_rc == 0 && lit != &sentinel) freeaddrinfo(lit);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = htons(80)};
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char host[64], serv[16];
    errno = 0;
    k->gni_rc = getnameinfo((struct sockaddr *)&sin, sizeof sin, host, sizeof host, serv,
                            sizeof serv, NI_NUMERICHOST);
    k->gni_errno = errno;
    h_errno = 0;
    k->hbn = gethostbyname("localhost");
    k->hbn_herr = h_errno;
    struct hostent he;
    char buf[4096];
    int herr = 0;
    k->hbnr_result = &he;
    k->hbnr_rc = gethostbyname_r("localhost", &he, buf, sizeof buf, &k->hbnr_result, &herr);
}

static void test_resolver_in_killed_tasklet_fails(void **state) {
    (void)state;
    NEED("getaddrinfo", "getnameinfo", "gethostbyname", "gethostbyname_r");
    struct killed_resolve k;
    memset(&k, 0, sizeof k);
    COIL_RUN_CHECKED(killed_resolve_main, &k);
    if (k.gai_rc != EAI_SYSTEM || k.gai_errno != ECANCELED)
        fail_msg("getaddrinfo in a killed tasklet returned %d (%s), errno %s; want EAI_SYSTEM "
                 "with ECANCELED%s",
                 k.gai_rc, gai_strerror(k.gai_rc), strerror(k.gai_errno),
                 k.gai_rc == 0 ? " (0 hands the caller its own, uninitialised, *res)" : "");
    assert_int_equal(k.gai_lit_rc, EAI_SYSTEM);
    assert_int_equal(k.gai_lit_errno, ECANCELED);
    assert_int_equal(k.gni_rc, EAI_SYSTEM);
    assert_int_equal(k.gni_errno, ECANCELED);
    assert_null(k.hbn);
    assert_int_equal(k.hbn_herr, NO_RECOVERY);
    assert_int_equal(k.hbnr_rc, ECANCELED);
    assert_null(k.hbnr_result);
}

/* ==== 4. pass-through: outside tasklets the calls are libc's ===================== */

struct delayed_write {
    int fd;
    int64_t delay;
};

static void *delayed_write_fn(void *arg) {
    struct delayed_write *d = arg;
    struct timespec ts = ns_ts(d->delay);
    nanosleep(&ts, NULL);
    if (write(d->fd, "hello", 5) != 5) abort();
    return NULL;
}

/* Installed, before coil_run: libc's blocking behaviour. */
static void test_passthrough_before_coil_run(void **state) {
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    struct delayed_write d = {p[1], MS(150)};
    int64_t t0 = coil_now();
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, delayed_write_fn, &d), 0);
    char buf[8];
    assert_int_equal(read(p[0], buf, sizeof buf), 5); /* blocks this thread */
    assert_true(coil_now() - t0 >= MS(150));
    assert_memory_equal(buf, "hello", 5);
    assert_int_equal(pthread_join(th, NULL), 0);
    struct pollfd pfd = {.fd = p[0], .events = POLLIN};
    t0 = coil_now();
    assert_int_equal(poll(&pfd, 1, 100), 0);
    assert_true(coil_now() - t0 >= MS(100));
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(p[0], &rd);
    struct timeval tv = {0, 50000};
    t0 = coil_now();
    assert_int_equal(select(p[0] + 1, &rd, NULL, NULL, &tv), 0);
    assert_true(coil_now() - t0 >= MS(50));
    t0 = coil_now();
    assert_int_equal(usleep(30000), 0);
    assert_true(coil_now() - t0 >= MS(30));
    struct timespec ts = ns_ts(MS(30));
    t0 = coil_now();
    assert_int_equal(nanosleep(&ts, NULL), 0);
    assert_true(coil_now() - t0 >= MS(30));
    t0 = coil_now();
    assert_int_equal(clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL), 0);
    assert_true(coil_now() - t0 >= MS(30));
    assert_int_equal(sleep(0), 0);
    errno = 0;
    assert_int_equal(read(closed_fd_number(), buf, 1), -1);
    assert_int_equal(errno, EBADF);
    assert_int_equal(close(p[0]), 0);
    assert_int_equal(close(p[1]), 0);
}

/* Another thread while a scheduler runs on this one: its calls block it (and
 * only it), as libc's do. */
struct other {
    int in[2], done[2], tcp[2], ep;
    atomic_int phase; /* 1: about to read; 2: about to recv */
    coil_id self;
    long read_r, recv_r, poll_r, select_r, epoll_r, usleep_r, nanosleep_r, cns_r, gai_r;
    int64_t read_ns, recv_ns, poll_ns, select_ns, epoll_ns, usleep_ns, nanosleep_ns, cns_ns;
    char buf[8], buf2[8];
    long ticks;
};

static void *other_thread(void *arg) {
    struct other *o = arg;
    o->self = coil_self();
    int64_t t0 = coil_now();
    atomic_store(&o->phase, 1);
    o->read_r = read(o->in[0], o->buf, sizeof o->buf);
    o->read_ns = coil_now() - t0;
    t0 = coil_now();
    atomic_store(&o->phase, 2);
    o->recv_r = recv(o->tcp[0], o->buf2, sizeof o->buf2, 0);
    o->recv_ns = coil_now() - t0;
    struct pollfd pfd = {.fd = o->in[0], .events = POLLIN};
    t0 = coil_now();
    o->poll_r = poll(&pfd, 1, 100);
    o->poll_ns = coil_now() - t0;
    fd_set rd;
    FD_ZERO(&rd);
    FD_SET(o->in[0], &rd);
    struct timeval tv = {0, 50000};
    t0 = coil_now();
    o->select_r = select(o->in[0] + 1, &rd, NULL, NULL, &tv);
    o->select_ns = coil_now() - t0;
    struct epoll_event ev;
    t0 = coil_now();
    o->epoll_r = epoll_wait(o->ep, &ev, 1, 50);
    o->epoll_ns = coil_now() - t0;
    t0 = coil_now();
    o->usleep_r = usleep(20000);
    o->usleep_ns = coil_now() - t0;
    struct timespec ts = ns_ts(MS(20));
    t0 = coil_now();
    o->nanosleep_r = nanosleep(&ts, NULL);
    o->nanosleep_ns = coil_now() - t0;
    t0 = coil_now();
    o->cns_r = clock_nanosleep(CLOCK_MONOTONIC, 0, &ts, NULL);
    o->cns_ns = coil_now() - t0;
    struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *res = NULL;
    o->gai_r = getaddrinfo(names_resolvable() ? "localhost" : "127.0.0.1", "80", &hints, &res);
    if (o->gai_r == 0) freeaddrinfo(res);
    if (write(o->done[1], "k", 1) != 1) abort();
    return NULL;
}

static void wait_phase(struct other *o, int phase) {
    int64_t until = coil_test_in(20 * COIL_SEC);
    while (atomic_load(&o->phase) < phase && coil_now() < until)
        EXPECT_EQ(usleep(1000), 0);
}

static void other_main(void *arg) {
    struct other *o = arg;
    struct coil_test_ticker ticker = {0};
    coil_id t = coil_spawn(coil_test_ticker_fn, &ticker, NULL);
    pthread_t th;
    if (!EXPECT_EQ(pthread_create(&th, NULL, other_thread, o), 0)) return;
    wait_phase(o, 1);
    EXPECT_EQ(usleep(150000), 0); /* the thread waits in read meanwhile */
    EXPECT_EQ(write(o->in[1], "hello", 5), 5);
    wait_phase(o, 2);
    EXPECT_EQ(usleep(100000), 0);
    EXPECT_EQ(send(o->tcp[1], "world", 5, 0), 5);
    char c;
    EXPECT_EQ(read(o->done[0], &c, 1), 1); /* parks until the thread is through */
    EXPECT_EQ(pthread_join(th, NULL), 0);
    o->ticks = ticker.ticks;
    ticker.stop = true;
    coil_join(t, COIL_FOREVER);
}

static void test_passthrough_other_thread(void **state) {
    (void)state;
    NEED("read", "usleep");
    struct other o;
    memset(&o, 0, sizeof o);
    assert_int_equal(pipe(o.in), 0);
    assert_int_equal(pipe(o.done), 0);
    assert_int_equal(coil_test_raw_tcp_pair(AF_INET, &o.tcp[1], &o.tcp[0]), 0);
    o.ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = {.events = EPOLLIN};
    assert_int_equal(epoll_ctl(o.ep, EPOLL_CTL_ADD, o.in[0], &ev), 0);
    COIL_RUN_CHECKED(other_main, &o);
    assert_int_equal(o.self, 0);
    assert_int_equal(o.read_r, 5);
    assert_memory_equal(o.buf, "hello", 5);
    assert_true(o.read_ns >= MS(150));
    assert_int_equal(o.recv_r, 5);
    assert_memory_equal(o.buf2, "world", 5);
    assert_true(o.recv_ns >= MS(100));
    assert_int_equal(o.poll_r, 0);
    assert_true(o.poll_ns >= MS(100));
    assert_int_equal(o.select_r, 0);
    assert_true(o.select_ns >= MS(50));
    assert_int_equal(o.epoll_r, 0);
    assert_true(o.epoll_ns >= MS(50));
    assert_int_equal(o.usleep_r, 0);
    assert_true(o.usleep_ns >= MS(20));
    assert_int_equal(o.nanosleep_r, 0);
    assert_true(o.nanosleep_ns >= MS(20));
    assert_int_equal(o.cns_r, 0);
    assert_true(o.cns_ns >= MS(20));
    assert_int_equal(o.gai_r, 0);
    assert_true(o.ticks > 10); /* the scheduler ran all along */
    int fds[] = {o.in[0], o.in[1], o.done[0], o.done[1], o.tcp[0], o.tcp[1], o.ep};
    for (size_t i = 0; i < sizeof fds / sizeof fds[0]; i++)
        close(fds[i]);
}

/* fork() from a tasklet: the child has no scheduler, its calls are libc's
 * (it must not touch the parent's scheduler), and it reports by exit code. */
struct forked {
    int to_child[2], from_child[2];
    int status;
    bool reaped;
    long ticks;
};

__attribute__((noreturn)) static void forked_child(struct forked *f) {
    if (coil_self() != 0) _exit(10);
    if (coil_sleep(1) != -EPERM) _exit(11); /* no scheduler here */
    close(f->to_child[1]);
    close(f->from_child[0]);
    int64_t t0 = coil_now();
    if (write(f->from_child[1], "r", 1) != 1) _exit(12);
    char buf[8];
    ssize_t n = read(f->to_child[0], buf, sizeof buf); /* blocks until the parent writes */
    if (n != 5 || memcmp(buf, "hello", 5) != 0) _exit(13);
    if (coil_now() - t0 < MS(100)) _exit(14);
    struct pollfd pfd = {.fd = f->to_child[0], .events = POLLIN};
    t0 = coil_now();
    if (poll(&pfd, 1, 100) != 0 || coil_now() - t0 < MS(100)) _exit(15);
    t0 = coil_now();
    if (usleep(20000) != 0 || coil_now() - t0 < MS(20)) _exit(16);
    struct timespec ts = ns_ts(MS(20));
    t0 = coil_now();
    if (nanosleep(&ts, NULL) != 0 || coil_now() - t0 < MS(20)) _exit(17);
    struct timeval tv = {0, 20000};
    t0 = coil_now();
    if (select(0, NULL, NULL, NULL, &tv) != 0 || coil_now() - t0 < MS(20)) _exit(18);
    if (close(f->to_child[0]) != 0 || close(f->from_child[1]) != 0) _exit(19);
    errno = 0;
    if (close(f->to_child[0]) != -1 || errno != EBADF) _exit(20);
    _exit(0);
}

static void fork_main(void *arg) {
    struct forked *f = arg;
    struct coil_test_ticker ticker = {0};
    coil_id t = coil_spawn(coil_test_ticker_fn, &ticker, NULL);
    fflush(stdout);
    fflush(stderr);
    pid_t pid = fork();
    if (pid == 0) forked_child(f);
    if (EXPECT(pid > 0)) {
        EXPECT_EQ(close(f->to_child[0]), 0);
        EXPECT_EQ(close(f->from_child[1]), 0);
        f->to_child[0] = f->from_child[1] = -1;
        char c;
        EXPECT_EQ(read(f->from_child[0], &c, 1), 1); /* the child is about to read */
        EXPECT_EQ(usleep(150000), 0);
        EXPECT_EQ(write(f->to_child[1], "hello", 5), 5);
        int64_t until = coil_test_in(30 * COIL_SEC);
        while (!f->reaped && coil_now() < until) {
            pid_t r = waitpid(pid, &f->status, WNOHANG);
            if (r == pid)
                f->reaped = true;
            else if (!EXPECT_EQ(r, 0) || !EXPECT_EQ(usleep(5000), 0))
                break;
        }
        if (!f->reaped) {
            kill(pid, SIGKILL);
            waitpid(pid, &f->status, 0);
        }
    }
    f->ticks = ticker.ticks;
    ticker.stop = true;
    coil_join(t, COIL_FOREVER);
}

static void test_passthrough_child_forked_in_tasklet(void **state) {
    (void)state;
    NEED("read", "usleep");
    struct forked f;
    memset(&f, 0, sizeof f);
    assert_int_equal(pipe(f.to_child), 0);
    assert_int_equal(pipe(f.from_child), 0);
    COIL_RUN_CHECKED(fork_main, &f);
    assert_true(f.reaped);
    if (!WIFEXITED(f.status) || WEXITSTATUS(f.status) != 0)
        fail_msg("the child %s %d", WIFEXITED(f.status) ? "exited with" : "died by signal",
                 WIFEXITED(f.status) ? WEXITSTATUS(f.status) : WTERMSIG(f.status));
    assert_true(f.ticks > 10);
    close_fd(&f.to_child[1]);
    close_fd(&f.from_child[0]);
}

/* ==== 5. coil_uninstall, coil_install again, COIL_INSTALL=1 ==================== */

/* Not diverted: a read in a tasklet blocks the whole thread (the ticker does
 * not tick) until a second thread writes, 200 ms after the read began. */
struct thread_block {
    int fd[2];
    atomic_int reading;
    long ticks_before, ticks_after, r;
    int64_t waited;
};

static void *late_writer(void *arg) {
    struct thread_block *b = arg;
    while (!atomic_load(&b->reading)) {
        struct timespec ts = ns_ts(MS(1));
        nanosleep(&ts, NULL);
    }
    struct timespec ts = ns_ts(MS(200));
    nanosleep(&ts, NULL);
    if (write(b->fd[1], "hello", 5) != 5) abort();
    return NULL;
}

static void blocks_main(void *arg) {
    struct thread_block *b = arg;
    struct coil_test_ticker ticker = {0};
    coil_id t = coil_spawn(coil_test_ticker_fn, &ticker, NULL);
    coil_sleep(MS(20));
    b->ticks_before = ticker.ticks;
    char buf[8];
    int64_t t0 = coil_now();
    atomic_store(&b->reading, 1);
    b->r = read(b->fd[0], buf, sizeof buf);
    b->waited = coil_now() - t0;
    b->ticks_after = ticker.ticks;
    ticker.stop = true;
    coil_join(t, COIL_FOREVER);
}

/* 0, or why not. */
static int read_blocks_thread(void) {
    struct thread_block b;
    memset(&b, 0, sizeof b);
    if (pipe(b.fd) != 0) return 1;
    pthread_t th;
    if (pthread_create(&th, NULL, late_writer, &b) != 0) return 1;
    int rc = coil_run(blocks_main, &b);
    pthread_join(th, NULL);
    close(b.fd[0]);
    close(b.fd[1]);
    fprintf(stderr, "not diverted: coil_run %d, read %ld after %lld ms, ticks %ld -> %ld\n", rc,
            b.r, (long long)(b.waited / COIL_MSEC), b.ticks_before, b.ticks_after);
    if (rc != 0) return 2;
    if (b.r != 5) return 3;
    if (b.ticks_after != b.ticks_before) return 4; /* the thread was not blocked */
    if (b.waited < MS(150)) return 5;
    return 0;
}

/* Diverted: the read parks; 0, or why not. */
static int read_parks(void) {
    struct park p = park_of(call_read, ready_write_hello);
    if (pipe(p.fd) != 0) return 1;
    coil_test_reset_failures();
    int rc = coil_run(park_main, &p);
    park_close(&p);
    fprintf(stderr,
            "diverted: coil_run %d, read %ld, ticks while waiting %ld, %d failed check(s)\n", rc,
            p.r, p.ticks, coil_test_failure()->count);
    if (rc != 0) return 2;
    if (coil_test_failure()->count) return 3;
    if (p.r != 5) return 4;
    return 0;
}

static void uninstall_child(void *arg) {
    (void)arg;
    if (coil_uninstall() != 0) _exit(10);
    if (coil_uninstall() != 0) _exit(11); /* twice: still 0 */
    int e = read_blocks_thread();
    if (e) _exit(20 + e);
    if (coil_install() != 0) _exit(30);
    e = read_parks();
    if (e) _exit(40 + e);
    _exit(0);
}

/* qemu-user (Debian 12's 7.2) aborts on its own assertions
 * (qemu_plugin_vcpu_init_hook, cpu_exec) when a child forked from a
 * multithreaded process starts a thread, which these cases do to unblock a
 * read that must block the whole thread: natively only. */
static void skip_under_qemu_threads_after_fork(void) {
    if (coil_test_under_qemu()) skip();
}

static void test_uninstall_then_install_again(void **state) {
    (void)state;
    NEED("read");
    skip_under_qemu_threads_after_fork();
    child_run(uninstall_child, NULL,
              "exit 2x: not libc after coil_uninstall; 4x: not diverted after coil_install");
}

static void idempotent_child(void *arg) {
    (void)arg;
    if (coil_install() != 0) _exit(10); /* installed already (the group setup) */
    if (coil_install() != 0) _exit(11);
    int e = read_parks();
    if (e) _exit(20 + e);
    if (coil_uninstall() != 0) _exit(30); /* one uninstall undoes them all */
    e = read_blocks_thread();
    if (e) _exit(40 + e);
    if (coil_install() != 0) _exit(50);
    e = read_parks();
    if (e) _exit(60 + e);
    _exit(0);
}

static void test_install_is_idempotent(void **state) {
    (void)state;
    NEED("read");
    skip_under_qemu_threads_after_fork();
    child_run(idempotent_child, NULL,
              "exit 2x: installing thrice does not divert; 4x: one uninstall does not undo it; "
              "6x: installing again does not divert");
}

/* This executable re-run with COIL_INSTALL=1 (diverted without calling
 * coil_install) and without it (libc). */
static char self_path[4096];

struct exec_args {
    const char *mode;
    bool env_install;
};

static void exec_child(void *arg) {
    struct exec_args *a = arg;
    if (a->env_install)
        setenv("COIL_INSTALL", "1", 1);
    else
        unsetenv("COIL_INSTALL");
    char *argv[] = {self_path, (char *)a->mode, NULL};
    execv(self_path, argv);
    fprintf(stderr, "execv %s: %s\n", self_path, strerror(errno));
    _exit(127);
}

static int env_probe_main(const char *mode) {
    if (strcmp(mode, "--env-probe-diverted") == 0) return read_parks();
    return read_blocks_thread();
}

static void test_coil_install_environment(void **state) {
    (void)state;
    NEED("read");
    skip_under_qemu_threads_after_fork();
    /* /proc/self/exe itself, which survives a rebuild of the file; under
     * Valgrind it would name Valgrind's tool, so the path (Valgrind's
     * readlink gives the program's). */
    snprintf(self_path, sizeof self_path, "/proc/self/exe");
    if (coil_test_under_valgrind()) {
        ssize_t n = readlink("/proc/self/exe", self_path, sizeof self_path - 1);
        assert_true(n > 0);
        self_path[n] = '\0';
    }
    struct exec_args on = {"--env-probe-diverted", true}, off = {"--env-probe-libc", false};
    child_run(exec_child, &on, "COIL_INSTALL=1 did not divert the calls");
    child_run(exec_child, &off, "without coil_install, a tasklet's read did not block the thread");
}

/* ==== the group: coil_install, and whether this executable's calls follow =========== */

static int group_setup(void **state) {
    (void)state;
    if (coil_install() != 0) return -1;
    if (coil_install() != 0) return -1; /* idempotent */
    int bound = 0;
    for (size_t i = 0; i < NWRAPPED; i++) {
        bound_in_executable[i] = defined_in_executable(wrapped[i]);
        if (bound_in_executable[i]) {
            fprintf(stderr, "%s%s",
                    bound++ ? ", " : "test_install: not diverted here: ", wrapped[i]);
        }
    }
    if (bound)
        fprintf(stderr, " (%s): the tests that need them skip\n",
                SANITIZER_IN_EXECUTABLE ? "a sanitizer's interceptors in the executable"
                                        : "defined in the executable");
    return bound && !SANITIZER_IN_EXECUTABLE ? -1 : 0; /* a plain build diverts all */
}

int main(int argc, char **argv) {
    if (argc > 1 && strncmp(argv[1], "--env-probe-", 12) == 0) return env_probe_main(argv[1]);
    const struct CMUnitTest tests[] = {
        /* 1. parks only the tasklet */
        cmocka_unit_test(test_read_pipe_parks),
        cmocka_unit_test(test_readv_pipe_parks),
        cmocka_unit_test(test_recv_tcp_parks),
        cmocka_unit_test(test_recvfrom_udp_parks),
        cmocka_unit_test(test_recvmsg_unix_parks),
        cmocka_unit_test(test_accept_parks),
        cmocka_unit_test(test_accept4_parks),
        cmocka_unit_test(test_connect_parks),
        cmocka_unit_test(test_write_full_pipe_parks),
        cmocka_unit_test(test_writev_full_pipe_parks),
        cmocka_unit_test(test_send_full_socket_parks),
        cmocka_unit_test(test_sleep_parks),
        cmocka_unit_test(test_usleep_parks),
        cmocka_unit_test(test_nanosleep_parks),
        cmocka_unit_test(test_clock_nanosleep_relative_parks),
        cmocka_unit_test(test_clock_nanosleep_abstime_monotonic_parks),
        cmocka_unit_test(test_clock_nanosleep_abstime_realtime_parks),
        cmocka_unit_test(test_poll_parks_until_ready),
        cmocka_unit_test(test_poll_parks_until_timeout),
        cmocka_unit_test(test_poll_pollhup_when_peer_closes),
        cmocka_unit_test(test_poll_pollrdhup_alone),
        cmocka_unit_test(test_poll_no_events_pollhup),
        cmocka_unit_test(test_poll_without_fds_sleeps),
        cmocka_unit_test(test_ppoll_parks_until_ready),
        cmocka_unit_test(test_ppoll_parks_until_timeout),
        cmocka_unit_test(test_select_parks_until_readable),
        cmocka_unit_test(test_select_parks_until_writable),
        cmocka_unit_test(test_select_parks_until_timeout),
        cmocka_unit_test(test_select_without_fds_sleeps),
        cmocka_unit_test(test_select_normalises_tv_usec),
        cmocka_unit_test(test_pselect_parks_until_readable),
        cmocka_unit_test(test_pselect_parks_until_timeout),
        cmocka_unit_test(test_epoll_wait_parks_until_ready),
        cmocka_unit_test(test_epoll_pwait_parks_until_ready),
        cmocka_unit_test(test_epoll_wait_parks_until_timeout),
        /* 2. libc's contract */
        cmocka_unit_test(test_errors_and_nonblocking_as_libc),
        cmocka_unit_test(test_zero_timeouts_never_park),
        cmocka_unit_test(test_poll_and_select_report_as_libc),
        cmocka_unit_test(test_recv_peek_parks_and_leaves_data),
        cmocka_unit_test(test_recv_waitall_gets_everything),
        cmocka_unit_test(test_recvfrom_waitall_gets_everything),
        cmocka_unit_test(test_recvmsg_waitall_gets_everything),
        cmocka_unit_test(test_so_rcvtimeo_recv),
        cmocka_unit_test(test_so_rcvtimeo_read),
        cmocka_unit_test(test_so_rcvtimeo_accept),
        cmocka_unit_test(test_so_sndtimeo_send),
        cmocka_unit_test(test_so_sndtimeo_write),
        cmocka_unit_test(test_so_sndtimeo_connect),
        cmocka_unit_test(test_accept_fd_flags_as_libc),
        cmocka_unit_test(test_kill_ends_blocked_calls),
        cmocka_unit_test(test_close_wakes_blocked_calls),
        cmocka_unit_test(test_dup2_onto_waited_fd),
        cmocka_unit_test(test_recvmmsg_sendmmsg_udp),
        cmocka_unit_test(test_sendfile_to_slow_reader),
        cmocka_unit_test(test_wait_for_child_parks),
        cmocka_unit_test(test_wait_for_child_errors),
        cmocka_unit_test(test_blocking_write_to_pipe_is_complete),
        cmocka_unit_test(test_blocking_send_is_complete),
        cmocka_unit_test(test_killed_nanosleep_retry_loop_ends),
        cmocka_unit_test(test_large_writev_to_pipe_does_not_block_thread),
        /* 3. the resolver */
        cmocka_unit_test(test_resolver_answers_as_libc),
        cmocka_unit_test(test_resolver_literal_does_not_wait_for_the_pool),
        cmocka_unit_test(test_resolver_in_killed_tasklet_fails),
        /* 4. pass-through */
        cmocka_unit_test(test_passthrough_before_coil_run),
        cmocka_unit_test(test_passthrough_other_thread),
        cmocka_unit_test(test_passthrough_child_forked_in_tasklet),
        /* 5. uninstall, install again, the environment */
        cmocka_unit_test(test_uninstall_then_install_again),
        cmocka_unit_test(test_install_is_idempotent),
        cmocka_unit_test(test_coil_install_environment),
    };
    coil_test_apply_filter();
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
