/* coil_accept under load and at the edges, on both backends; on io_uring it
 * runs on a multishot accept (one SQE per listener, connections queued for
 * the next call): connections that arrive before anyone waits, bursts larger
 * than the multishot's queue, many callers on one listener, the peer address
 * (which the multishot path asks for with getpeername), closing a listener
 * whose queue holds connections, and a scheduler that ends with a multishot
 * armed and connections queued. No fd may leak in any of them. */
#include "coil_test.h"

#include <dirent.h>

static void noop(void *arg) {
    (void)arg;
}

/* The number of open fds of this process. */
static int fd_count(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    while (readdir(d))
        n++;
    closedir(d);
    return n - 3; /* ".", ".." and the DIR's own fd */
}

/* The fd count to come back to: the first coil_run of a process opens the
 * process-wide signal eventfd, which stays. */
static int baseline(void) {
    assert_int_equal(coil_run(noop, NULL), 0);
    return fd_count();
}

/* A plain blocking connect (the test's client side, outside coil). */
static int raw_connect(const struct coil_test_addr *a) {
    int fd = socket(a->ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (connect(fd, (const struct sockaddr *)&a->ss, a->len) != 0) {
        int err = -errno;
        close(fd);
        return err;
    }
    return fd;
}

/* ---- connections made before anyone accepts, in a burst ------------------- */

#define BURST 40 /* more than the io_uring backend queues before it stops accepting */

struct burst {
    int listener;
    struct coil_test_addr addr;
    int clients[BURST];
};

static void burst_main(void *arg) {
    struct burst *b = arg;
    /* One accept first, so that the multishot is armed before the burst. */
    b->clients[0] = raw_connect(&b->addr);
    if (!EXPECT(b->clients[0] >= 0)) return;
    int first = coil_accept(b->listener, NULL, NULL);
    EXPECT(first >= 0);
    for (int i = 1; i < BURST; i++) {
        b->clients[i] = raw_connect(&b->addr);
        if (!EXPECT(b->clients[i] >= 0)) return;
    }
    /* Let the kernel deliver them (the multishot takes some, the backlog
     * keeps the rest), then take every one, each once, in order. */
    EXPECT_EQ(coil_sleep(20 * COIL_MSEC), 0);
    int fds[BURST];
    fds[0] = first;
    for (int i = 1; i < BURST; i++) {
        struct coil_test_addr peer;
        peer.len = sizeof peer.ss;
        fds[i] =
            coil_accept_dl(b->listener, COIL_TEST_SA(&peer), &peer.len, coil_test_in(5 * COIL_SEC));
        if (!EXPECT(fds[i] >= 0)) return;
        /* The address is the client's own. */
        struct coil_test_addr mine;
        EXPECT_EQ(coil_test_sockname(b->clients[i], &mine), 0);
        EXPECT(coil_test_same_addr(&peer, &mine));
    }
    /* Nothing more is pending: the next accept times out. */
    EXPECT_EQ(coil_accept_dl(b->listener, NULL, NULL, coil_test_in(30 * COIL_MSEC)), -ETIMEDOUT);
    /* Each accepted fd is connected to its own client. */
    for (int i = 0; i < BURST; i++) {
        char c = (char)('A' + i % 26), got = 0;
        EXPECT_EQ(send(b->clients[i], &c, 1, MSG_NOSIGNAL), 1);
        EXPECT_EQ(coil_recv_dl(fds[i], &got, 1, 0, coil_test_in(5 * COIL_SEC)), 1);
        EXPECT_EQ(got, c);
        EXPECT_EQ(coil_close(fds[i]), 0);
        close(b->clients[i]);
    }
}

static void test_accept_burst_before_callers(void **state) {
    (void)state;
    int before = baseline();
    struct burst b;
    b.listener = coil_test_raw_bound(AF_INET, SOCK_STREAM, BURST + 8, &b.addr);
    assert_true(b.listener >= 0);
    COIL_RUN_CHECKED(burst_main, &b);
    close(b.listener);
    assert_int_equal(fd_count(), before);
}

/* ---- many callers on one listener ------------------------------------------ */

#define CALLERS 24

struct many {
    int listener;
    struct coil_test_addr addr;
    int got[CALLERS];
    int served;
};

static void many_caller(void *arg) {
    struct many *m = arg;
    int fd = coil_accept_dl(m->listener, NULL, NULL, coil_test_in(10 * COIL_SEC));
    if (!EXPECT(fd >= 0)) return;
    char c;
    if (EXPECT_EQ(coil_recv_dl(fd, &c, 1, 0, coil_test_in(10 * COIL_SEC)), 1)) {
        int i = (unsigned char)c;
        if (EXPECT(i < CALLERS)) m->got[i]++;
    }
    m->served++;
    EXPECT_EQ(coil_close(fd), 0);
}

static void many_main(void *arg) {
    struct many *m = arg;
    coil_id ids[CALLERS];
    for (int i = 0; i < CALLERS; i++)
        ids[i] = coil_spawn(many_caller, m, NULL);
    EXPECT_EQ(coil_sleep(10 * COIL_MSEC), 0); /* all of them wait */
    int clients[CALLERS];
    for (int i = 0; i < CALLERS; i++) {
        clients[i] = raw_connect(&m->addr);
        if (!EXPECT(clients[i] >= 0)) return;
        char c = (char)i;
        EXPECT_EQ(send(clients[i], &c, 1, MSG_NOSIGNAL), 1);
        if (i % 5 == 0) coil_yield(); /* some arrive while others are being served */
    }
    for (int i = 0; i < CALLERS; i++)
        EXPECT_EQ(coil_join(ids[i], coil_test_in(10 * COIL_SEC)), 0);
    for (int i = 0; i < CALLERS; i++)
        close(clients[i]);
}

static void test_accept_many_callers_one_listener(void **state) {
    (void)state;
    int before = baseline();
    struct many m = {0};
    m.listener = coil_test_raw_bound(AF_INET, SOCK_STREAM, CALLERS, &m.addr);
    assert_true(m.listener >= 0);
    COIL_RUN_CHECKED(many_main, &m);
    close(m.listener);
    assert_int_equal(m.served, CALLERS);
    for (int i = 0; i < CALLERS; i++)
        assert_int_equal(m.got[i], 1); /* every connection accepted exactly once */
    assert_int_equal(fd_count(), before);
}

/* ---- closing a listener with connections queued ----------------------------- */

struct closing {
    int listener;
    struct coil_test_addr addr;
    int clients[8];
    coil_id waiter;
    int waiter_rc;
};

static void closing_waiter(void *arg) {
    struct closing *c = arg;
    c->waiter_rc = coil_accept(c->listener, NULL, NULL);
}

static void closing_main(void *arg) {
    struct closing *c = arg;
    /* Arm it (io_uring: the multishot), then let connections pile up. */
    int first_client = raw_connect(&c->addr);
    if (!EXPECT(first_client >= 0)) return;
    int first = coil_accept(c->listener, NULL, NULL);
    EXPECT(first >= 0);
    for (int i = 0; i < 8; i++) {
        c->clients[i] = raw_connect(&c->addr);
        if (!EXPECT(c->clients[i] >= 0)) return;
    }
    EXPECT_EQ(coil_sleep(20 * COIL_MSEC), 0);
    /* Closing the listener closes (or leaves to the kernel to reset) every
     * connection no one accepted: each client sees its end. */
    EXPECT_EQ(coil_close(c->listener), 0);
    for (int i = 0; i < 8; i++) {
        char buf[4];
        ssize_t r = coil_recv_dl(c->clients[i], buf, sizeof buf, 0, coil_test_in(5 * COIL_SEC));
        EXPECT(r == 0 || r == -ECONNRESET);
        close(c->clients[i]);
    }
    EXPECT_EQ(coil_close(first), 0);
    close(first_client);
}

static void test_accept_close_listener_with_queued_connections(void **state) {
    (void)state;
    int before = baseline();
    struct closing c = {0};
    c.listener = coil_test_raw_bound(AF_INET, SOCK_STREAM, 16, &c.addr);
    assert_true(c.listener >= 0);
    COIL_RUN_CHECKED(closing_main, &c);
    assert_int_equal(fd_count(), before);
}

/* A caller waiting on the listener when it is closed gets -EBADF at once. */
static void close_while_waiting_main(void *arg) {
    struct closing *c = arg;
    c->waiter = coil_spawn(closing_waiter, c, NULL);
    EXPECT_EQ(coil_sleep(10 * COIL_MSEC), 0);
    int64_t t0 = coil_now();
    EXPECT_EQ(coil_close(c->listener), 0);
    EXPECT_EQ(coil_join(c->waiter, coil_test_in(5 * COIL_SEC)), 0);
    EXPECT(coil_now() - t0 < coil_test_slack());
    EXPECT_EQ(c->waiter_rc, -EBADF);
}

static void test_accept_close_listener_while_waiting(void **state) {
    (void)state;
    int before = baseline();
    struct closing c = {0};
    c.listener = coil_test_raw_bound(AF_INET, SOCK_STREAM, 16, &c.addr);
    assert_true(c.listener >= 0);
    COIL_RUN_CHECKED(close_while_waiting_main, &c);
    assert_int_equal(fd_count(), before);
}

/* ---- the scheduler ends with connections queued ------------------------------ */

struct ending {
    int listener;
    struct coil_test_addr addr;
    int clients[6];
};

static void ending_main(void *arg) {
    struct ending *e = arg;
    int c0 = raw_connect(&e->addr);
    if (!EXPECT(c0 >= 0)) return;
    int first = coil_accept(e->listener, NULL, NULL);
    EXPECT(first >= 0);
    EXPECT_EQ(coil_close(first), 0);
    close(c0);
    for (int i = 0; i < 6; i++)
        e->clients[i] = raw_connect(&e->addr);
    EXPECT_EQ(coil_sleep(20 * COIL_MSEC), 0);
    /* main returns with the listener open: coil_run ends anyway. */
}

static void test_accept_scheduler_ends_with_queued_connections(void **state) {
    (void)state;
    int before = baseline();
    struct ending e = {0};
    e.listener = coil_test_raw_bound(AF_INET, SOCK_STREAM, 16, &e.addr);
    assert_true(e.listener >= 0);
    COIL_RUN_CHECKED(ending_main, &e);
    /* Whatever coil accepted but nobody took is closed; what is still in the
     * backlog is the listener's. After closing the listener, every client
     * sees its end. */
    close(e.listener);
    for (int i = 0; i < 6; i++) {
        assert_true(e.clients[i] >= 0);
        struct pollfd p = {.fd = e.clients[i], .events = POLLIN};
        assert_int_equal(poll(&p, 1, 5000), 1);
        char buf[4];
        ssize_t r = recv(e.clients[i], buf, sizeof buf, 0);
        assert_true(r == 0 || (r < 0 && errno == ECONNRESET));
        close(e.clients[i]);
    }
    assert_int_equal(fd_count(), before);
    /* And a new scheduler accepts on a new listener as usual. */
    struct burst b;
    b.listener = coil_test_raw_bound(AF_INET, SOCK_STREAM, BURST + 8, &b.addr);
    assert_true(b.listener >= 0);
    COIL_RUN_CHECKED(burst_main, &b);
    close(b.listener);
}

/* ---- an O_NONBLOCK listener --------------------------------------------------- */

static void nonblock_main(void *arg) {
    struct burst *b = arg;
    for (int i = 0; i < 3; i++) {
        int64_t t0 = coil_now();
        EXPECT_EQ(coil_accept_dl(b->listener, NULL, NULL, coil_test_in(20 * COIL_MSEC)),
                  -ETIMEDOUT); /* it waits like a blocking one, not -EAGAIN */
        EXPECT(coil_now() - t0 >= 15 * COIL_MSEC);
        b->clients[i] = raw_connect(&b->addr);
        if (!EXPECT(b->clients[i] >= 0)) return;
        int fd = coil_accept_dl(b->listener, NULL, NULL, coil_test_in(5 * COIL_SEC));
        EXPECT(fd >= 0);
        EXPECT_EQ(coil_close(fd), 0);
        close(b->clients[i]);
    }
    EXPECT(fcntl(b->listener, F_GETFL) & O_NONBLOCK); /* left as it was */
}

static void test_accept_nonblocking_listener(void **state) {
    (void)state;
    int before = baseline();
    struct burst b;
    b.listener = coil_test_raw_bound(AF_INET, SOCK_STREAM, 8, &b.addr);
    assert_true(b.listener >= 0);
    assert_int_equal(coil_test_set_nonblock(b.listener, true), 0);
    COIL_RUN_CHECKED(nonblock_main, &b);
    close(b.listener);
    assert_int_equal(fd_count(), before);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_accept_burst_before_callers),
        cmocka_unit_test(test_accept_many_callers_one_listener),
        cmocka_unit_test(test_accept_close_listener_with_queued_connections),
        cmocka_unit_test(test_accept_close_listener_while_waiting),
        cmocka_unit_test(test_accept_scheduler_ends_with_queued_connections),
        cmocka_unit_test(test_accept_nonblocking_listener),
    };
    coil_test_apply_filter();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
