/* coil_wait_fd, the readiness wait, on both backends with the same
 * expectations:
 *  - a socketpair, a TCP connection, a pipe (both ends) and an eventfd:
 *    writable at once, readable once another tasklet writes (the waiter
 *    parks until then), both asked: what is ready;
 *  - hang-up and error: a pipe whose writer closed (COIL_HANGUP), a pipe
 *    whose reader closed (COIL_ERROR), a reset TCP connection (both), a
 *    refused non-blocking connect (both), a finished one (writable);
 *  - a listener with a connection queued is readable; a regular file is
 *    ready at once;
 *  - deadlines: -ETIMEDOUT once the deadline has passed, never before; a
 *    passed deadline looks once (ready: the events; not: -ETIMEDOUT at
 *    once); coil_set_timeout's default applies;
 *  - a kill while waiting is -ECANCELED, a killed tasklet's call too (even
 *    on a ready fd); coil_close by another tasklet while waiting is -EBADF;
 *    an fd that is not open is -EBADF; bad events are -EINVAL; outside a
 *    tasklet -EPERM;
 *  - many tasklets waiting on different fds at once while another serves
 *    TCP connections: each wakes for its own fd only. */
#define _GNU_SOURCE
#include "coil_test.h"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

/* ---- a waiter in another tasklet ---------------------------------------- */

struct waiter {
    int fd, events;
    int64_t deadline;
    int res;
    bool done;
};

static void waiter_fn(void *arg) {
    struct waiter *w = arg;
    w->res = coil_wait_fd(w->fd, w->events, w->deadline);
    w->done = true;
}

static coil_id start_waiter(struct waiter *w, int fd, int events) {
    *w = (struct waiter){.fd = fd, .events = events, .deadline = COIL_FOREVER};
    coil_id id = coil_spawn(waiter_fn, w, NULL);
    EXPECT(id > 0);
    /* Let it start and park (a few rounds: io_uring submits at the next one). */
    for (int i = 0; i < 3; i++)
        coil_yield();
    return id;
}

/* The waiter is still parked after a short sleep: it waits for readiness. */
static void expect_parked(struct waiter *w) {
    coil_sleep(20 * COIL_MSEC);
    EXPECT(!w->done);
}

/* ---- readable and writable on every kind of fd --------------------------- */

/* rd is readable once wr is written; wr is writable at once. */
static void readable_after_write(int rd, int wr) {
    EXPECT_EQ(coil_wait_fd(wr, COIL_WRITABLE, COIL_FOREVER), COIL_WRITABLE);
    EXPECT_EQ(coil_wait_fd(rd, COIL_READABLE, 0), -ETIMEDOUT);
    struct waiter w;
    coil_id id = start_waiter(&w, rd, COIL_READABLE);
    expect_parked(&w);
    uint64_t one = 1; /* 8 bytes: what an eventfd takes */
    EXPECT_EQ(coil_write(wr, &one, sizeof one), (ssize_t)sizeof one);
    EXPECT_EQ(coil_join(id, coil_test_in(coil_test_slack())), 0);
    EXPECT_EQ(w.res, COIL_READABLE);
    /* Data waiting: readable, and (asked for both) writable if it is. */
    EXPECT_EQ(coil_wait_fd(rd, COIL_READABLE, COIL_FOREVER), COIL_READABLE);
    uint64_t got;
    EXPECT_EQ(coil_read(rd, &got, sizeof got), (ssize_t)sizeof got);
    EXPECT_EQ(got, 1);
}

static void socketpair_main(void *arg) {
    (void)arg;
    int sv[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    readable_after_write(sv[0], sv[1]);
    readable_after_write(sv[1], sv[0]);
    /* Both asked, data waiting: both ready. */
    EXPECT_EQ(coil_write(sv[1], "x", 1), 1);
    EXPECT_EQ(coil_wait_fd(sv[0], COIL_READABLE | COIL_WRITABLE, COIL_FOREVER),
              COIL_READABLE | COIL_WRITABLE);
    /* Both asked, nothing to read: writable only, at once. */
    char c;
    EXPECT_EQ(coil_read(sv[0], &c, 1), 1);
    EXPECT_EQ(coil_wait_fd(sv[0], COIL_READABLE | COIL_WRITABLE, COIL_FOREVER), COIL_WRITABLE);
    coil_close(sv[0]);
    coil_close(sv[1]);
}

static void test_socketpair(void **state) {
    (void)state;
    COIL_RUN_CHECKED(socketpair_main, NULL);
}

static void tcp_main(void *arg) {
    int *p = arg;
    readable_after_write(p[0], p[1]);
    readable_after_write(p[1], p[0]);
    coil_close(p[0]);
    coil_close(p[1]);
}

static void test_tcp(void **state) {
    (void)state;
    int p[2];
    assert_int_equal(coil_test_raw_tcp_pair(AF_INET, &p[0], &p[1]), 0);
    COIL_RUN_CHECKED(tcp_main, p);
}

static void pipe_main(void *arg) {
    (void)arg;
    int p[2];
    EXPECT_EQ(pipe2(p, O_CLOEXEC), 0);
    readable_after_write(p[0], p[1]);
    /* The writer closes while a reader waits: hang-up, nothing readable. */
    struct waiter w;
    coil_id id = start_waiter(&w, p[0], COIL_READABLE);
    expect_parked(&w);
    EXPECT_EQ(coil_close(p[1]), 0);
    EXPECT_EQ(coil_join(id, coil_test_in(coil_test_slack())), 0);
    EXPECT_EQ(w.res, COIL_HANGUP);
    EXPECT_EQ(coil_wait_fd(p[0], COIL_READABLE, COIL_FOREVER), COIL_HANGUP);
    char c;
    EXPECT_EQ(coil_read(p[0], &c, 1), 0); /* and a read says: end of file */
    coil_close(p[0]);
    /* The reader closed: the write end is in error (a write would be EPIPE). */
    EXPECT_EQ(pipe2(p, O_CLOEXEC), 0);
    coil_close(p[0]);
    EXPECT_EQ(coil_wait_fd(p[1], COIL_WRITABLE, COIL_FOREVER), COIL_WRITABLE | COIL_ERROR);
    coil_close(p[1]);
    /* A full pipe is not writable until the reader takes some. */
    EXPECT_EQ(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    static char buf[4096];
    while (write(p[1], buf, sizeof buf) > 0) {
    }
    EXPECT_EQ(coil_wait_fd(p[1], COIL_WRITABLE, 0), -ETIMEDOUT);
    id = start_waiter(&w, p[1], COIL_WRITABLE);
    expect_parked(&w);
    while (read(p[0], buf, sizeof buf) > 0) {
    }
    EXPECT_EQ(coil_join(id, coil_test_in(coil_test_slack())), 0);
    EXPECT_EQ(w.res, COIL_WRITABLE);
    coil_close(p[0]);
    coil_close(p[1]);
}

static void test_pipe(void **state) {
    (void)state;
    COIL_RUN_CHECKED(pipe_main, NULL);
}

static void eventfd_main(void *arg) {
    (void)arg;
    int efd = eventfd(0, EFD_CLOEXEC);
    EXPECT(efd >= 0);
    readable_after_write(efd, efd);
    /* Read to zero: no longer readable. */
    EXPECT_EQ(coil_wait_fd(efd, COIL_READABLE, 0), -ETIMEDOUT);
    coil_close(efd);
}

static void test_eventfd(void **state) {
    (void)state;
    COIL_RUN_CHECKED(eventfd_main, NULL);
}

/* ---- hang-up and error -------------------------------------------------- */

static void reset_main(void *arg) {
    int *p = arg;
    struct waiter w;
    coil_id id = start_waiter(&w, p[0], COIL_READABLE);
    expect_parked(&w);
    struct linger lg = {.l_onoff = 1, .l_linger = 0}; /* close sends a reset */
    EXPECT_EQ(setsockopt(p[1], SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    EXPECT_EQ(coil_close(p[1]), 0);
    EXPECT_EQ(coil_join(id, coil_test_in(coil_test_slack())), 0);
    EXPECT_EQ(w.res, COIL_READABLE | COIL_HANGUP | COIL_ERROR);
    char c;
    EXPECT_EQ(coil_recv(p[0], &c, 1, 0), -ECONNRESET);
    coil_close(p[0]);
}

static void test_tcp_reset(void **state) {
    (void)state;
    int p[2];
    assert_int_equal(coil_test_raw_tcp_pair(AF_INET, &p[0], &p[1]), 0);
    COIL_RUN_CHECKED(reset_main, p);
}

/* What libcurl does: a non-blocking connect, then a wait for writable. */
static void nb_connect_main(void *arg) {
    (void)arg;
    struct coil_test_addr a;
    int l = coil_test_raw_bound(AF_INET, SOCK_STREAM, 4, &a);
    EXPECT(l >= 0);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int r = connect(fd, COIL_TEST_SA(&a), a.len);
    EXPECT(r == 0 || errno == EINPROGRESS);
    EXPECT_EQ(coil_wait_fd(fd, COIL_WRITABLE, coil_test_in(coil_test_slack())), COIL_WRITABLE);
    int soerr = -1;
    socklen_t len = sizeof soerr;
    EXPECT_EQ(getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len), 0);
    EXPECT_EQ(soerr, 0);
    /* The listener has it queued: readable (an accept would not wait). */
    EXPECT_EQ(coil_wait_fd(l, COIL_READABLE, coil_test_in(coil_test_slack())), COIL_READABLE);
    coil_close(fd);
    coil_close(l); /* no listener any more: the next connect is refused */
    fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    r = connect(fd, COIL_TEST_SA(&a), a.len);
    EXPECT(r < 0 && (errno == EINPROGRESS || errno == ECONNREFUSED));
    if (errno == EINPROGRESS) {
        EXPECT_EQ(coil_wait_fd(fd, COIL_WRITABLE, coil_test_in(coil_test_slack())),
                  COIL_WRITABLE | COIL_HANGUP | COIL_ERROR);
        EXPECT_EQ(getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len), 0);
        EXPECT_EQ(soerr, ECONNREFUSED);
    }
    coil_close(fd);
}

static void test_nonblocking_connect(void **state) {
    (void)state;
    COIL_RUN_CHECKED(nb_connect_main, NULL);
}

static void file_main(void *arg) {
    const char *path = arg;
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    EXPECT(fd >= 0);
    int64_t t0 = coil_now();
    EXPECT_EQ(coil_wait_fd(fd, COIL_READABLE | COIL_WRITABLE, COIL_FOREVER),
              COIL_READABLE | COIL_WRITABLE);
    EXPECT(coil_now() - t0 < coil_test_slack());
    coil_close(fd);
}

static void test_regular_file(void **state) {
    (void)state;
    char path[] = "/tmp/coil-wait-fd-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    COIL_RUN_CHECKED(file_main, path);
    unlink(path);
}

/* ---- deadlines ---------------------------------------------------------- */

static void deadline_main(void *arg) {
    (void)arg;
    int sv[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    /* Not ready: -ETIMEDOUT when the deadline has passed, not before. */
    int64_t deadline = coil_test_in(50 * COIL_MSEC);
    EXPECT_EQ(coil_wait_fd(sv[0], COIL_READABLE, deadline), -ETIMEDOUT);
    int64_t now = coil_now();
    EXPECT(now >= deadline);
    EXPECT(now - deadline < coil_test_slack());
    /* A passed deadline looks once: -ETIMEDOUT at once, or what is ready. */
    int64_t t0 = coil_now();
    EXPECT_EQ(coil_wait_fd(sv[0], COIL_READABLE, 0), -ETIMEDOUT);
    EXPECT_EQ(coil_wait_fd(sv[0], COIL_READABLE, t0 - COIL_SEC), -ETIMEDOUT);
    EXPECT_EQ(coil_wait_fd(sv[0], COIL_WRITABLE, 0), COIL_WRITABLE);
    EXPECT_EQ(coil_write(sv[1], "x", 1), 1);
    EXPECT_EQ(coil_wait_fd(sv[0], COIL_READABLE, 0), COIL_READABLE);
    /* Already ready with a far deadline, or none: at once. */
    EXPECT_EQ(coil_wait_fd(sv[0], COIL_READABLE, coil_test_in(60 * COIL_SEC)), COIL_READABLE);
    EXPECT_EQ(coil_wait_fd(sv[0], COIL_READABLE, COIL_FOREVER), COIL_READABLE);
    EXPECT(coil_now() - t0 < coil_test_slack());
    /* The fd's default timeout applies to a wait without a deadline. */
    char c;
    EXPECT_EQ(coil_read(sv[0], &c, 1), 1);
    EXPECT_EQ(coil_set_timeout(sv[0], 30 * COIL_MSEC), 0);
    t0 = coil_now();
    EXPECT_EQ(coil_wait_fd(sv[0], COIL_READABLE, COIL_FOREVER), -ETIMEDOUT);
    EXPECT(coil_now() - t0 >= 30 * COIL_MSEC);
    coil_close(sv[0]);
    coil_close(sv[1]);
}

static void test_deadline(void **state) {
    (void)state;
    COIL_RUN_CHECKED(deadline_main, NULL);
}

/* ---- kill, close, bad arguments ------------------------------------------ */

static void self_killed(void *arg) {
    int fd = *(int *)arg;
    coil_kill(coil_self());
    EXPECT_EQ(coil_wait_fd(fd, COIL_WRITABLE, COIL_FOREVER), -ECANCELED); /* ready, but killed */
    EXPECT_EQ(coil_wait_fd(fd, COIL_READABLE, 0), -ECANCELED);
}

static void kill_close_main(void *arg) {
    (void)arg;
    int sv[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    /* Killed while waiting. */
    struct waiter w;
    coil_id id = start_waiter(&w, sv[0], COIL_READABLE);
    expect_parked(&w);
    EXPECT_EQ(coil_kill(id), 0);
    EXPECT_EQ(coil_join(id, coil_test_in(coil_test_slack())), 0);
    EXPECT_EQ(w.res, -ECANCELED);
    /* Killed before the call. */
    id = coil_spawn(self_killed, &sv[0], NULL);
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    /* The fd is none the worse: another wait on it works. */
    EXPECT_EQ(coil_write(sv[1], "x", 1), 1);
    EXPECT_EQ(coil_wait_fd(sv[0], COIL_READABLE, COIL_FOREVER), COIL_READABLE);
    /* Closed by another tasklet while waiting: -EBADF at once. Two waiters,
     * on the two directions of the same fd. */
    struct waiter w2;
    id = start_waiter(&w, sv[1], COIL_READABLE);
    coil_id id2 = start_waiter(&w2, sv[1], COIL_READABLE | COIL_WRITABLE);
    expect_parked(&w);
    EXPECT_EQ(coil_close(sv[1]), 0);
    EXPECT_EQ(coil_join(id, coil_test_in(coil_test_slack())), 0);
    EXPECT_EQ(coil_join(id2, COIL_FOREVER), 0);
    EXPECT_EQ(w.res, -EBADF);
    EXPECT_EQ(w2.res, COIL_WRITABLE); /* writable at once: it never waited */
    /* And the closed number is not open any more: -EBADF. */
    EXPECT_EQ(coil_wait_fd(sv[1], COIL_READABLE, COIL_FOREVER), -EBADF);
    coil_close(sv[0]);
}

static void test_kill_and_close(void **state) {
    (void)state;
    COIL_RUN_CHECKED(kill_close_main, NULL);
}

static void bad_args_main(void *arg) {
    (void)arg;
    int sv[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    EXPECT_EQ(coil_wait_fd(-1, COIL_READABLE, COIL_FOREVER), -EBADF);
    EXPECT_EQ(coil_wait_fd(-1, COIL_READABLE, 0), -EBADF);
    EXPECT_EQ(coil_wait_fd(1 << 30, COIL_READABLE, COIL_FOREVER), -EBADF);
    /* A number that is not open (closed behind coil's back: never waited on). */
    int d = dup(sv[0]);
    close(d);
    EXPECT_EQ(coil_wait_fd(d, COIL_READABLE, COIL_FOREVER), -EBADF);
    EXPECT_EQ(coil_wait_fd(d, COIL_WRITABLE, 0), -EBADF);
    EXPECT_EQ(coil_wait_fd(sv[0], 0, COIL_FOREVER), -EINVAL);
    EXPECT_EQ(coil_wait_fd(sv[0], COIL_HANGUP, COIL_FOREVER), -EINVAL);
    EXPECT_EQ(coil_wait_fd(sv[0], COIL_READABLE | COIL_ERROR, COIL_FOREVER), -EINVAL);
    EXPECT_EQ(coil_wait_fd(sv[0], 0x100, COIL_FOREVER), -EINVAL);
    EXPECT_EQ(coil_wait_fd(sv[0], -1, COIL_FOREVER), -EINVAL);
    coil_close(sv[0]);
    coil_close(sv[1]);
}

static void test_bad_arguments(void **state) {
    (void)state;
    COIL_RUN_CHECKED(bad_args_main, NULL);
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    assert_int_equal(coil_wait_fd(sv[0], COIL_WRITABLE, COIL_FOREVER), -EPERM);
    assert_int_equal(coil_wait_fd(sv[0], 0, COIL_FOREVER), -EINVAL);
    close(sv[0]);
    close(sv[1]);
}

/* A number closed with close(2), not coil_close, and reused by another file
 * (libcurl closes its resolver's socketpair so): a wait on the new file
 * still wakes when it is ready. */
static void reused_main(void *arg) {
    (void)arg;
    int sv[2], p[2];
    EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    struct waiter w;
    coil_id id = start_waiter(&w, sv[0], COIL_READABLE);
    expect_parked(&w); /* (on epoll: in the epoll set from now on) */
    EXPECT_EQ(coil_write(sv[1], "x", 1), 1);
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    EXPECT_EQ(w.res, COIL_READABLE);
    /* Waited on once, then the number changes hands behind coil's back. */
    int num = sv[0];
    close(num);
    EXPECT_EQ(pipe2(p, O_CLOEXEC), 0);
    if (p[0] != num) { /* (the lowest free number: most likely num itself) */
        EXPECT_EQ(dup3(p[0], num, O_CLOEXEC), num);
        close(p[0]);
    }
    id = start_waiter(&w, num, COIL_READABLE);
    expect_parked(&w);
    EXPECT_EQ(coil_write(p[1], "y", 1), 1);
    EXPECT_EQ(coil_join(id, coil_test_in(coil_test_slack())), 0);
    EXPECT_EQ(w.res, COIL_READABLE);
    if (!w.done) { /* not woken: end it, for the next cases */
        coil_kill(id);
        coil_join(id, COIL_FOREVER);
    }
    coil_close(num);
    coil_close(p[1]);
    coil_close(sv[1]);
}

static void test_number_reused_behind_coils_back(void **state) {
    (void)state;
    COIL_RUN_CHECKED(reused_main, NULL);
}

/* ---- many waiters while connections are served ---------------------------- */

#define NPAIRS 64
#define NCONNS 16

struct many {
    int pairs[NPAIRS][2];
    int woke[NPAIRS];
    int listener;
    struct coil_test_addr addr;
    int echoed;
};

struct many_waiter {
    struct many *m;
    int i;
};

/* Waits on its own pair; the byte it then reads is its own index. */
static void many_wait_fn(void *arg) {
    struct many_waiter *mw = arg;
    int fd = mw->m->pairs[mw->i][0];
    int r = coil_wait_fd(fd, COIL_READABLE, COIL_FOREVER);
    if (!EXPECT_EQ(r, COIL_READABLE)) return;
    unsigned char c;
    EXPECT_EQ(read(fd, &c, 1), 1); /* it is readable: a plain read does not wait */
    EXPECT_EQ(c, mw->i);
    mw->m->woke[mw->i]++;
}

static void echo_conn(void *arg) {
    int fd = (int)(intptr_t)arg;
    char buf[64];
    ssize_t n;
    while ((n = coil_recv(fd, buf, sizeof buf, 0)) > 0)
        EXPECT_EQ(coil_sendall(fd, buf, (size_t)n, 0, COIL_FOREVER), n);
    coil_close(fd);
}

static void serve_fn(void *arg) {
    struct many *m = arg;
    for (int i = 0; i < NCONNS; i++) {
        int c = coil_accept(m->listener, NULL, NULL);
        if (!EXPECT(c >= 0)) return;
        coil_spawn(echo_conn, (void *)(intptr_t)c, NULL);
    }
}

static void client_fn(void *arg) {
    struct many *m = arg;
    int fd = coil_socket(AF_INET, SOCK_STREAM, 0);
    if (!EXPECT_EQ(coil_connect(fd, COIL_TEST_SA(&m->addr), m->addr.len), 0)) return;
    char buf[5];
    EXPECT_EQ(coil_sendall(fd, "hello", 5, 0, COIL_FOREVER), 5);
    EXPECT_EQ(coil_recv_dl(fd, buf, 5, MSG_WAITALL, COIL_FOREVER), 5);
    EXPECT(memcmp(buf, "hello", 5) == 0);
    m->echoed++;
    coil_close(fd);
}

static void many_main(void *arg) {
    struct many *m = arg;
    struct many_waiter mw[NPAIRS];
    coil_id ids[NPAIRS], cids[NCONNS];
    for (int i = 0; i < NPAIRS; i++) {
        EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, m->pairs[i]), 0);
        mw[i] = (struct many_waiter){m, i};
        ids[i] = coil_spawn(many_wait_fn, &mw[i], NULL);
    }
    m->listener = coil_test_raw_bound(AF_INET, SOCK_STREAM, NCONNS, &m->addr);
    coil_id server = coil_spawn(serve_fn, m, NULL);
    for (int i = 0; i < NCONNS; i++)
        cids[i] = coil_spawn(client_fn, m, NULL);
    /* Wake the waiters one at a time, in a scrambled order, while the
     * connections are being served: each must wake for its own fd only. */
    for (int k = 0; k < NPAIRS; k++) {
        int i = (k * 37) % NPAIRS;
        unsigned char c = (unsigned char)i;
        EXPECT_EQ(coil_write(m->pairs[i][1], &c, 1), 1);
        coil_yield();
    }
    for (int i = 0; i < NPAIRS; i++)
        EXPECT_EQ(coil_join(ids[i], coil_test_in(10 * coil_test_slack())), 0);
    for (int i = 0; i < NCONNS; i++)
        EXPECT_EQ(coil_join(cids[i], coil_test_in(10 * coil_test_slack())), 0);
    EXPECT_EQ(coil_join(server, coil_test_in(10 * coil_test_slack())), 0);
    for (int i = 0; i < NPAIRS; i++) {
        EXPECT_EQ(m->woke[i], 1);
        coil_close(m->pairs[i][0]);
        coil_close(m->pairs[i][1]);
    }
    EXPECT_EQ(m->echoed, NCONNS);
    coil_close(m->listener);
}

static void test_many_waiters_while_serving(void **state) {
    (void)state;
    static struct many m;
    memset(&m, 0, sizeof m);
    COIL_RUN_CHECKED(many_main, &m);
}

int main(void) {
    coil_test_apply_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_socketpair),
        cmocka_unit_test(test_tcp),
        cmocka_unit_test(test_pipe),
        cmocka_unit_test(test_eventfd),
        cmocka_unit_test(test_tcp_reset),
        cmocka_unit_test(test_nonblocking_connect),
        cmocka_unit_test(test_regular_file),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_kill_and_close),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_number_reused_behind_coils_back),
        cmocka_unit_test(test_many_waiters_while_serving),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
