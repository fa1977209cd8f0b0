/* Kill, timeout and close while a tasklet waits in a call, on the IOCP
 * backend under Wine: each asks CancelIoEx, and the call returns only when
 * the cancelled operation's packet has been reaped (invariant 1), with the
 * error Linux gives. */
#include "win_test.h"

/* The OVERLAPPED lives in the frames of the call (run_io's op), below
 * wait_in_call's: canaries in wait_in_call's own frame cannot see a late
 * write there. So after the call returns, check_no_late_write is called from
 * the same place: its frame covers the stack the call used (8 KiB, far more
 * than the call's frames), painted with a pattern; it then lets the
 * scheduler reap for a while and checks the pattern. A packet reaped after
 * the call returned would have the kernel write its OVERLAPPED (Internal,
 * InternalHigh) into the painted range, and reap would find its mark painted
 * over and abort; a late data write would change the call's buffer, which is
 * checked too. */
#define PAINT_BYTES 8192
static __attribute__((noinline)) void check_no_late_write(const char *buf, size_t len) {
    volatile unsigned char paint[PAINT_BYTES];
    for (size_t i = 0; i < PAINT_BYTES; i++)
        paint[i] = (unsigned char)(0xa5 ^ i);
    char copy[512];
    memcpy(copy, buf, len);
    for (int i = 0; i < 5; i++)
        coil_sleep(5 * COIL_MSEC); /* reap rounds: the loop waits on the port */
    size_t bad = 0;
    for (size_t i = 0; i < PAINT_BYTES; i++)
        bad += paint[i] != (unsigned char)(0xa5 ^ i);
    EXPECT_EQ(bad, 0);
    EXPECT_EQ(memcmp(copy, buf, len), 0);
}

struct waiter {
    int fd;
    int op; /* 0 recv, 1 accept, 2 recvfrom, 3 send (until the buffers fill) */
    int64_t deadline;
    ssize_t result;
    int64_t took;
    bool done;
};

static void wait_in_call(void *arg) {
    struct waiter *w = arg;
    volatile uint64_t canary_hi = 0x1122334455667788ull;
    char buf[512];
    volatile uint64_t canary_lo = 0x8877665544332211ull;
    int64_t t0 = coil_now();
    switch (w->op) {
    case 0: w->result = coil_recv_dl(w->fd, buf, sizeof buf, 0, w->deadline); break;
    case 1: w->result = coil_accept_dl(w->fd, NULL, NULL, w->deadline); break;
    case 2: w->result = coil_recvfrom(w->fd, buf, sizeof buf, 0, NULL, NULL, w->deadline); break;
    default: {
        static char big[1 << 16];
        for (;;) {
            w->result = coil_send_dl(w->fd, big, sizeof big, 0, w->deadline);
            if (w->result < 0) break;
        }
    }
    }
    w->took = coil_now() - t0;
    check_no_late_write(buf, sizeof buf);
    EXPECT_EQ(canary_hi, 0x1122334455667788ull);
    EXPECT_EQ(canary_lo, 0x8877665544332211ull);
    w->done = true;
}

/* ---- timeouts ----------------------------------------------------------- */

static void timeout_main(void *arg) {
    (void)arg;
    struct win_test_pair p;
    if (!EXPECT_EQ(win_test_pair(&p), 0)) return;
    struct waiter w = {.fd = p.b, .deadline = coil_now() + 200 * COIL_MSEC};
    wait_in_call(&w);
    EXPECT_EQ(w.result, -ETIMEDOUT);
    EXPECT(w.took >= 190 * COIL_MSEC);
    EXPECT(w.took < 2 * COIL_SEC);
    /* The socket still works after a cancelled receive. */
    EXPECT_EQ(coil_send(p.a, "after", 5, 0), 5);
    char buf[8];
    EXPECT_EQ(coil_recv(p.b, buf, sizeof buf, 0), 5);
    /* A default timeout (Python's settimeout) applies to every call. */
    EXPECT_EQ(coil_set_timeout(p.b, 100 * COIL_MSEC), 0);
    int64_t t0 = coil_now();
    EXPECT_EQ(coil_recv(p.b, buf, sizeof buf, 0), -ETIMEDOUT);
    EXPECT(coil_now() - t0 >= 90 * COIL_MSEC);
    /* A deadline that has passed: one try, then -ETIMEDOUT. */
    EXPECT_EQ(coil_set_timeout(p.b, -1), 0);
    EXPECT_EQ(coil_recv_dl(p.b, buf, sizeof buf, 0, coil_now() - 1), -ETIMEDOUT);
    /* accept, with nobody connecting */
    uint16_t port = 0;
    int lfd = win_test_listener(&port);
    struct waiter wa = {.fd = lfd, .op = 1, .deadline = coil_now() + 100 * COIL_MSEC};
    wait_in_call(&wa);
    EXPECT_EQ(wa.result, -ETIMEDOUT);
    /* send, once the peer's window and our buffer are full */
    struct waiter ws = {.fd = p.a, .op = 3, .deadline = coil_now() + 300 * COIL_MSEC};
    wait_in_call(&ws);
    EXPECT_EQ(ws.result, -ETIMEDOUT);
    coil_close(lfd);
    coil_close(p.a);
    coil_close(p.b);
}

static void test_timeouts(void **state) {
    (void)state;
    COIL_RUN_CHECKED(timeout_main, NULL);
}

/* ---- kill --------------------------------------------------------------- */

static void kill_main(void *arg) {
    (void)arg;
    struct win_test_pair p;
    if (!EXPECT_EQ(win_test_pair(&p), 0)) return;
    uint16_t port = 0;
    int lfd = win_test_listener(&port);
    int ufd = coil_socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP);
    struct sockaddr_in any = win_test_loopback(0);
    EXPECT_EQ(coil_bind(ufd, (struct sockaddr *)&any, sizeof any), 0);
    struct waiter w[3] = {
        {.fd = p.b, .op = 0, .deadline = -1},
        {.fd = lfd, .op = 1, .deadline = -1},
        {.fd = ufd, .op = 2, .deadline = -1},
    };
    coil_id id[3];
    for (int i = 0; i < 3; i++)
        id[i] = coil_spawn(wait_in_call, &w[i], NULL);
    coil_sleep(50 * COIL_MSEC); /* they are all parked in their calls */
    for (int i = 0; i < 3; i++) {
        EXPECT(!w[i].done);
        EXPECT_EQ(coil_kill(id[i]), 0);
    }
    for (int i = 0; i < 3; i++) {
        EXPECT_EQ(coil_join(id[i], COIL_FOREVER), 0);
        EXPECT_EQ(w[i].result, -ECANCELED);
    }
    /* Nothing of theirs is in flight any more: the sockets still serve. */
    EXPECT_EQ(coil_send(p.a, "x", 1, 0), 1);
    char c;
    EXPECT_EQ(coil_recv(p.b, &c, 1, 0), 1);
    coil_close(ufd);
    coil_close(lfd);
    coil_close(p.a);
    coil_close(p.b);
}

static void test_kill_while_blocked(void **state) {
    (void)state;
    COIL_RUN_CHECKED(kill_main, NULL);
}

/* A kill that comes after the data: the call returns the data (nothing is
 * lost), the kill shows from the next call on. */
struct late_victim {
    int fd;
    ssize_t result, next;
    volatile char *buf; /* the pending receive's buffer, for the killer */
};

static void late_kill_victim(void *arg) {
    struct late_victim *w = arg;
    char buf[16] = {0};
    w->buf = buf;
    w->result = coil_recv(w->fd, buf, sizeof buf, 0);
    w->next = coil_recv(w->fd, buf, sizeof buf, 0); /* the next call */
    w->buf = NULL;
}

static void late_kill_main(void *arg) {
    (void)arg;
    struct win_test_pair p;
    if (!EXPECT_EQ(win_test_pair(&p), 0)) return;
    struct late_victim w = {.fd = p.b};
    coil_id id = coil_spawn(late_kill_victim, &w, NULL);
    coil_sleep(20 * COIL_MSEC);
    if (!EXPECT(w.buf != NULL)) return; /* parked in its first receive */
    EXPECT_EQ(coil_send(p.a, "data", 4, 0), 4);
    /* Wait, without yielding (so nothing reaps), until the receive has
     * completed in the kernel: its data is in the victim's buffer, and the
     * packet is queued when the data has been copied. Not a guess at how
     * long that takes: the buffer says when. */
    int64_t give_up = coil_now() + 5 * COIL_SEC;
    while (memcmp((const char *)w.buf, "data", 4) != 0 && coil_now() < give_up)
        Sleep(1);
    EXPECT_EQ(memcmp((const char *)w.buf, "data", 4), 0);
    EXPECT_EQ(coil_kill(id), 0);
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    EXPECT_EQ(w.result, 4);
    EXPECT_EQ(w.next, -ECANCELED);
    coil_close(p.a);
    coil_close(p.b);
}

static void test_kill_after_completion_keeps_data(void **state) {
    (void)state;
    COIL_RUN_CHECKED(late_kill_main, NULL);
}

/* ---- close -------------------------------------------------------------- */

/* Closing a socket wakes every tasklet waiting on it at once with -EBADF, as
 * on Linux; and a new socket that gets the same number gets nothing of the
 * old one's (invariant 5: completions find their op by OVERLAPPED). */
static void close_main(void *arg) {
    (void)arg;
    struct win_test_pair p;
    if (!EXPECT_EQ(win_test_pair(&p), 0)) return;
    struct waiter w[2] = {{.fd = p.b, .op = 0, .deadline = -1},
                          {.fd = p.b, .op = 0, .deadline = -1}};
    coil_id id[2];
    for (int i = 0; i < 2; i++)
        id[i] = coil_spawn(wait_in_call, &w[i], NULL);
    coil_sleep(30 * COIL_MSEC);
    int64_t t0 = coil_now();
    EXPECT_EQ(coil_close(p.b), 0);
    for (int i = 0; i < 2; i++) {
        EXPECT_EQ(coil_join(id[i], COIL_FOREVER), 0);
        EXPECT_EQ(w[i].result, -EBADF);
    }
    EXPECT(coil_now() - t0 < 500 * COIL_MSEC); /* at once, not at some timeout */

    /* The number again: a new pair whose accepted socket may reuse it. */
    struct win_test_pair q;
    if (!EXPECT_EQ(win_test_pair(&q), 0)) return;
    /* Both of its sockets wait; whichever took the old number must see
     * only its own data. */
    struct waiter nw[2] = {{.fd = q.a, .op = 0, .deadline = coil_now() + 5 * COIL_SEC},
                           {.fd = q.b, .op = 0, .deadline = coil_now() + 5 * COIL_SEC}};
    coil_id nid[2];
    for (int i = 0; i < 2; i++)
        nid[i] = coil_spawn(wait_in_call, &nw[i], NULL);
    coil_sleep(30 * COIL_MSEC);
    EXPECT(!nw[0].done && !nw[1].done); /* nothing of the old socket reached them */
    EXPECT_EQ(coil_send(q.a, "new", 3, 0), 3);
    EXPECT_EQ(coil_send(q.b, "other", 5, 0), 5);
    for (int i = 0; i < 2; i++)
        EXPECT_EQ(coil_join(nid[i], COIL_FOREVER), 0);
    EXPECT_EQ(nw[0].result, 5);
    EXPECT_EQ(nw[1].result, 3);
    print_message("old fd %d, new fds %d %d (%s)\n", p.b, q.a, q.b,
                  q.a == p.b || q.b == p.b ? "number reused" : "not reused");
    coil_close(q.a);
    coil_close(q.b);
    coil_close(p.a);
}

static void test_close_wakes_waiters(void **state) {
    (void)state;
    COIL_RUN_CHECKED(close_main, NULL);
}

static void close_accept_main(void *arg) {
    (void)arg;
    uint16_t port = 0;
    int lfd = win_test_listener(&port);
    struct waiter w = {.fd = lfd, .op = 1, .deadline = -1};
    coil_id id = coil_spawn(wait_in_call, &w, NULL);
    coil_sleep(30 * COIL_MSEC);
    EXPECT_EQ(coil_close(lfd), 0);
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    EXPECT_EQ(w.result, -EBADF);
}

static void test_close_wakes_accept(void **state) {
    (void)state;
    COIL_RUN_CHECKED(close_accept_main, NULL);
}

/* ---- connect that cannot complete ---------------------------------------- */

/* A listener whose backlog is full and that never accepts: the host (Linux,
 * under Wine) drops further SYNs, so a connect stays pending. */
struct conn_waiter {
    int fd;
    uint16_t port;
    int64_t deadline;
    int result;
};

static void in_connect(void *arg) {
    struct conn_waiter *c = arg;
    struct sockaddr_in a = win_test_loopback(c->port);
    c->result = coil_connect_dl(c->fd, (struct sockaddr *)&a, sizeof a, c->deadline);
}

static void connect_main(void *arg) {
    (void)arg;
    int lfd = coil_socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    struct sockaddr_in any = win_test_loopback(0);
    EXPECT_EQ(coil_bind(lfd, (struct sockaddr *)&any, sizeof any), 0);
    EXPECT_EQ(coil_listen(lfd, 1), 0);
    uint16_t port = win_test_port(lfd);
    /* Fill the backlog: connects succeed until one times out. */
    int fds[16], n = 0, timed_out = -1;
    for (; n < 16; n++) {
        fds[n] = coil_socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
        struct conn_waiter c = {
            .fd = fds[n], .port = port, .deadline = coil_now() + 300 * COIL_MSEC};
        in_connect(&c);
        if (c.result == -ETIMEDOUT) {
            timed_out = n++;
            break;
        }
        EXPECT_EQ(c.result, 0);
    }
    if (!EXPECT(timed_out >= 0)) goto out;
    /* Now a connect waits: kill one, close another's socket. */
    struct conn_waiter k = {
        .fd = coil_socket(AF_INET, SOCK_STREAM, IPPROTO_TCP), .port = port, .deadline = -1};
    struct conn_waiter c = {
        .fd = coil_socket(AF_INET, SOCK_STREAM, IPPROTO_TCP), .port = port, .deadline = -1};
    coil_id kid = coil_spawn(in_connect, &k, NULL);
    coil_id cid = coil_spawn(in_connect, &c, NULL);
    coil_sleep(100 * COIL_MSEC);
    EXPECT_EQ(coil_kill(kid), 0);
    EXPECT_EQ(coil_close(c.fd), 0);
    EXPECT_EQ(coil_join(kid, COIL_FOREVER), 0);
    EXPECT_EQ(coil_join(cid, COIL_FOREVER), 0);
    EXPECT_EQ(k.result, -ECANCELED);
    EXPECT_EQ(c.result, -EBADF);
    coil_close(k.fd);
out:
    for (int i = 0; i < n; i++)
        coil_close(fds[i]);
    coil_close(lfd);
}

static void test_connect_timeout_kill_close(void **state) {
    (void)state;
    COIL_RUN_CHECKED(connect_main, NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timeouts),
        cmocka_unit_test(test_kill_while_blocked),
        cmocka_unit_test(test_kill_after_completion_keeps_data),
        cmocka_unit_test(test_close_wakes_waiters),
        cmocka_unit_test(test_close_wakes_accept),
        cmocka_unit_test(test_connect_timeout_kill_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
