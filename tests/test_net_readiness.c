/* Edge cases of waiting for readiness (the epoll backend's, mostly), run on
 * both backends with the same expectations:
 *  - fairness: a tasklet whose receives always complete at once (a socket
 *    filled beforehand, read 1 or 64 bytes at a time) does not starve the
 *    others: a yielding tasklet, a 1 ms ticker and a 1 ms timer all make
 *    progress while it reads;
 *  - MSG_WAITALL: a deadline or a kill with part of the bytes received
 *    returns that part (never -ETIMEDOUT / -ECANCELED: data is not lost),
 *    nothing received is -ETIMEDOUT, the rest arriving later completes it,
 *    end of stream ends it short;
 *  - end of stream right after a short read (TCP and Unix stream; close and
 *    shutdown(SHUT_WR); a fresh fd, one that waited before, one waiting):
 *    the data, then 0 at once;
 *  - MSG_PEEK leaves the data for the next receive, which then gets it at
 *    once, and the one after that waits for more (streams and UDP);
 *  - a Unix stream listener whose backlog is full: coil_connect waits
 *    (blocking and O_NONBLOCK sockets) and succeeds promptly once a
 *    connection is accepted (also when the acceptor then computes for a
 *    while); a deadline is -ETIMEDOUT, a kill -ECANCELED;
 *  - fd flags (F_GETFL) are never changed, during a wait or after it, for
 *    accept, connect, recv, and read/write on pipes, blocking or O_NONBLOCK;
 *  - many tasklets accepting on one listener, and many receiving on one UDP
 *    socket: each connection / datagram goes to exactly one of them;
 *  - close and reuse of an fd number while a dup keeps the old file open:
 *    data arriving on the old file never wakes a waiter on the new one;
 *  - a regular file written and read back (1 MiB) while other tasklets run,
 *    at the file position as write(2)/read(2) use it. */
#define _GNU_SOURCE
#include "coil_test.h"

#include <fcntl.h>
#include <sys/stat.h>

enum fam { FAM_TCP, FAM_UNIX };
static const char *const fam_names[] = {"tcp", "unix"};

/* A connected stream pair made with plain system calls (blocking, CLOEXEC);
 * asserts, so outside coil_run only. */
static void stream_pair(enum fam fam, int *a, int *b) {
    if (fam == FAM_TCP) {
        assert_int_equal(coil_test_raw_tcp_pair(AF_INET, a, b), 0);
    } else {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        *a = sv[0];
        *b = sv[1];
    }
}

/* Runs fn(arg) as COIL_RUN_CHECKED does, naming the variant on failure. */
static void run_variant(coil_fn fn, void *arg, const char *variant) {
    coil_test_reset_failures();
    int rc = coil_run(fn, arg);
    if (coil_test_failure()->count || rc != 0)
        print_message("variant: %s (coil_run returned %d)\n", variant, rc);
    coil_test_assert_no_failure();
    assert_int_equal(rc, 0);
}

static int flags_of(int fd) {
    return fcntl(fd, F_GETFL);
}

/* A tasklet that sends len bytes on fd after delay; sent is set
 * just before, so that a receiver can tell that it did not return early. */
struct later {
    int fd;
    int64_t delay;
    const void *data;
    size_t len;
    bool sent;
    ssize_t rc;
};

static void later_fn(void *arg) {
    struct later *l = arg;
    if (!EXPECT_EQ(coil_sleep(l->delay), 0)) return;
    l->sent = true;
    l->rc = coil_send(l->fd, l->data, l->len, 0);
    EXPECT_EQ(l->rc, l->len);
}

static coil_id send_later(struct later *l, int fd, const void *data, size_t len, int64_t delay) {
    *l = (struct later){.fd = fd, .delay = delay, .data = data, .len = len, .rc = -1};
    coil_id id = coil_spawn(later_fn, l, NULL);
    EXPECT(id > 0);
    return id;
}

/* ---- 1. fairness -------------------------------------------------------------- */

#define FAIR_SEED 41

struct fair {
    int rx, tx;
    size_t filled;    /* bytes put into the socket beforehand */
    size_t chunk;     /* bytes per receive */
    long min_calls;   /* the reader makes at least this many receives */
    bool reading;     /* the reader is in its loop */
    bool stop;        /* for the yielding tasklet */
    long calls;       /* receives made */
    long yield_ticks; /* runs of the yielding tasklet while the reader read */
    bool timer_fired, timer_fired_while_reading;
    struct coil_test_ticker ticker; /* 1 ms sleeps */
};

static void fair_yielder(void *arg) {
    struct fair *f = arg;
    while (!f->stop) {
        if (f->reading) f->yield_ticks++;
        if (!EXPECT_EQ(coil_yield(), 0)) return;
    }
}

static void fair_timer(void *arg) {
    struct fair *f = arg;
    EXPECT_EQ(coil_sleep(COIL_MSEC), 0);
    f->timer_fired = true;
    f->timer_fired_while_reading = f->reading;
}

static bool fair_enough(const struct fair *f) {
    return f->calls >= f->min_calls && f->timer_fired && f->ticker.ticks >= 3 &&
           f->yield_ticks >= 10;
}

static void fair_main(void *arg) {
    struct fair *f = arg;
    f->reading = true; /* (the others first run once the reader parks or yields) */
    coil_id y = coil_spawn(fair_yielder, f, NULL);
    coil_id t = coil_spawn(coil_test_ticker_fn, &f->ticker, NULL);
    coil_id s = coil_spawn(fair_timer, f, NULL);
    uint8_t buf[64];
    size_t off = 0;
    /* Every receive can complete at once: the socket holds more than is
     * read. Read until the others have shown progress. */
    while (off + f->chunk <= f->filled) {
        ssize_t n = coil_recv(f->rx, buf, f->chunk, 0);
        if (!EXPECT_EQ(n, f->chunk)) break;
        if (!EXPECT_EQ(coil_test_pattern_check(buf, f->chunk, FAIR_SEED, off), f->chunk)) break;
        off += f->chunk;
        f->calls++;
        if (fair_enough(f)) break;
    }
    f->reading = false;
    if (!fair_enough(f))
        print_message("reader: %ld receives of %zu bytes (of %zu filled); yielder %ld runs, "
                      "ticker %ld ticks, timer %s\n",
                      f->calls, f->chunk, f->filled, f->yield_ticks, f->ticker.ticks,
                      f->timer_fired ? "fired" : "not fired");
    /* All of it while the reader was still reading (not after the data ran out). */
    EXPECT(f->calls >= f->min_calls);
    EXPECT(f->timer_fired_while_reading);
    EXPECT(f->ticker.ticks >= 3);
    EXPECT(f->yield_ticks >= 10);
    f->stop = true;
    f->ticker.stop = true;
    EXPECT_EQ(coil_join(y, coil_test_in(10 * COIL_SEC)), 0);
    EXPECT_EQ(coil_join(t, coil_test_in(10 * COIL_SEC)), 0);
    EXPECT_EQ(coil_join(s, coil_test_in(10 * COIL_SEC)), 0);
    EXPECT_EQ(coil_close(f->rx), 0);
    EXPECT_EQ(coil_close(f->tx), 0);
}

/* A buffer size: forced (as root) or asked for (capped by net.core.*mem_max). */
static void big_buffer(int fd, int opt_force, int opt, int bytes) {
    if (coil_test_setsockopt_int(fd, SOL_SOCKET, opt_force, bytes) != 0)
        coil_test_setsockopt_int(fd, SOL_SOCKET, opt, bytes);
}

/* Puts up to want bytes of the pattern stream into fd without blocking
 * (waiting a little for a TCP peer's window to open); returns the count. */
static size_t fill_pattern(int fd, size_t want) {
    static uint8_t chunk[16384];
    size_t total = 0;
    for (int idle = 0; total < want && idle < 5;) {
        size_t n = want - total < sizeof chunk ? want - total : sizeof chunk;
        coil_test_pattern_fill(chunk, n, FAIR_SEED, total);
        ssize_t r = send(fd, chunk, n, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (r > 0) {
            total += (size_t)r;
            idle = 0;
            continue;
        }
        if (r < 0 && errno != EAGAIN && errno != EWOULDBLOCK) break;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
        idle++;
    }
    return total;
}

static void run_fair(enum fam fam, size_t chunk, long min_calls) {
    size_t want = coil_test_scaled(1u << 20, 256u << 10);
    struct fair f = {.chunk = chunk, .min_calls = min_calls};
    if (fam == FAM_UNIX) {
        int sv[2];
        assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
        f.rx = sv[0];
        f.tx = sv[1];
        big_buffer(f.tx, SO_SNDBUFFORCE, SO_SNDBUF, (int)(2 * want));
    } else {
        /* The receive buffer is set before the connection, for the window. */
        struct coil_test_addr a;
        int l = coil_test_raw_bound(AF_INET, SOCK_STREAM, -1, &a);
        assert_true(l >= 0);
        big_buffer(l, SO_RCVBUFFORCE, SO_RCVBUF, (int)(2 * want));
        assert_int_equal(listen(l, 1), 0);
        f.tx = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(f.tx >= 0);
        big_buffer(f.tx, SO_SNDBUFFORCE, SO_SNDBUF, (int)(2 * want));
        assert_int_equal(connect(f.tx, COIL_TEST_SA(&a), a.len), 0);
        f.rx = accept4(l, NULL, NULL, SOCK_CLOEXEC);
        assert_true(f.rx >= 0);
        close(l);
    }
    f.filled = fill_pattern(f.tx, want);
    /* Enough for the minimum number of receives, with room to spare (where
     * net.core.wmem_max / rmem_max keep the buffers small, fewer receives). */
    assert_true(f.filled >= 64u << 10);
    if (f.filled < 2 * (size_t)f.min_calls * chunk) f.min_calls = (long)(f.filled / (2 * chunk));
    COIL_RUN_CHECKED(fair_main, &f);
}

static void test_fairness_unix_1_byte_receives(void **state) {
    (void)state;
    run_fair(FAM_UNIX, 1, (long)coil_test_scaled(20000, 2000));
}

static void test_fairness_tcp_64_byte_receives(void **state) {
    (void)state;
    run_fair(FAM_TCP, 64, (long)coil_test_scaled(4000, 1000));
}

/* ---- 2. MSG_WAITALL -------------------------------------------------------------- */

struct waitall {
    int a, b; /* a receives, b is the peer */
    ssize_t victim_rc;
    bool victim_done;
    char victim_buf[8];
};

static void waitall_victim(void *arg) {
    struct waitall *w = arg;
    w->victim_rc = coil_recv(w->a, w->victim_buf, 6, MSG_WAITALL);
    w->victim_done = true;
}

static void waitall_main(void *arg) {
    struct waitall *w = arg;
    char buf[8];
    struct later l;

    /* Nothing there: -ETIMEDOUT, not before the deadline. */
    int64_t dl = coil_test_in(100 * COIL_MSEC);
    EXPECT_EQ(coil_recv_dl(w->a, buf, 6, MSG_WAITALL, dl), -ETIMEDOUT);
    EXPECT(coil_now() >= dl);

    /* 3 of 6 there, no more coming: the 3 at the deadline, not -ETIMEDOUT. */
    EXPECT_EQ(coil_send(w->b, "abc", 3, 0), 3);
    memset(buf, 0, sizeof buf);
    dl = coil_test_in(100 * COIL_MSEC);
    EXPECT_EQ(coil_recv_dl(w->a, buf, 6, MSG_WAITALL, dl), 3);
    EXPECT(memcmp(buf, "abc", 3) == 0);
    EXPECT(coil_now() >= dl);                                  /* it did wait for the rest */
    EXPECT_EQ(coil_recv(w->a, buf, 6, MSG_DONTWAIT), -EAGAIN); /* nothing left behind */

    /* 3 there, 3 more after 20 ms: all 6. */
    EXPECT_EQ(coil_send(w->b, "def", 3, 0), 3);
    coil_id s = send_later(&l, w->b, "ghi", 3, 20 * COIL_MSEC);
    memset(buf, 0, sizeof buf);
    EXPECT_EQ(coil_recv_dl(w->a, buf, 6, MSG_WAITALL, coil_test_in(10 * COIL_SEC)), 6);
    EXPECT(memcmp(buf, "defghi", 6) == 0);
    EXPECT(l.sent);
    EXPECT_EQ(coil_join(s, coil_test_in(10 * COIL_SEC)), 0);

    /* Nothing there, then 2 + 4 in two sends: all 6. */
    struct later l2;
    s = send_later(&l, w->b, "jk", 2, 20 * COIL_MSEC);
    coil_id s2 = send_later(&l2, w->b, "lmno", 4, 40 * COIL_MSEC);
    memset(buf, 0, sizeof buf);
    EXPECT_EQ(coil_recv_dl(w->a, buf, 6, MSG_WAITALL, coil_test_in(10 * COIL_SEC)), 6);
    EXPECT(memcmp(buf, "jklmno", 6) == 0);
    EXPECT(l2.sent);
    EXPECT_EQ(coil_join(s, coil_test_in(10 * COIL_SEC)), 0);
    EXPECT_EQ(coil_join(s2, coil_test_in(10 * COIL_SEC)), 0);

    /* All 6 there: 6 at once. */
    EXPECT_EQ(coil_send(w->b, "pqrstu", 6, 0), 6);
    EXPECT_EQ(coil_recv_dl(w->a, buf, 6, MSG_WAITALL, coil_test_in(10 * COIL_SEC)), 6);
    EXPECT(memcmp(buf, "pqrstu", 6) == 0);

    /* Killed with 3 of 6 received: the 3, not -ECANCELED. */
    EXPECT_EQ(coil_send(w->b, "vwx", 3, 0), 3);
    coil_id v = coil_spawn(waitall_victim, w, NULL);
    EXPECT_EQ(coil_sleep(50 * COIL_MSEC), 0);
    EXPECT(!w->victim_done);
    EXPECT_EQ(coil_kill(v), 0);
    EXPECT_EQ(coil_join(v, coil_test_in(5 * COIL_SEC)), 0);
    EXPECT(w->victim_done);
    EXPECT_EQ(w->victim_rc, 3);
    EXPECT(memcmp(w->victim_buf, "vwx", 3) == 0);
    EXPECT_EQ(coil_recv(w->a, buf, 6, MSG_DONTWAIT), -EAGAIN);

    /* The stream goes on intact after all that. */
    EXPECT_EQ(coil_send(w->b, "yz0123", 6, 0), 6);
    EXPECT_EQ(coil_recv_dl(w->a, buf, 6, MSG_WAITALL, coil_test_in(10 * COIL_SEC)), 6);
    EXPECT(memcmp(buf, "yz0123", 6) == 0);

    /* 3 there, then end of stream: the 3 at once (no deadline needed), then 0. */
    EXPECT_EQ(coil_send(w->b, "456", 3, 0), 3);
    EXPECT_EQ(coil_shutdown(w->b, SHUT_WR), 0);
    int64_t t0 = coil_now();
    EXPECT_EQ(coil_recv_dl(w->a, buf, 6, MSG_WAITALL, coil_test_in(10 * COIL_SEC)), 3);
    EXPECT(memcmp(buf, "456", 3) == 0);
    EXPECT_EQ(coil_recv_dl(w->a, buf, 6, MSG_WAITALL, coil_test_in(10 * COIL_SEC)), 0);
    EXPECT(coil_now() - t0 < coil_test_slack());
    EXPECT_EQ(coil_close(w->a), 0);
    EXPECT_EQ(coil_close(w->b), 0);
}

static void run_waitall(enum fam fam) {
    struct waitall w = {.victim_rc = 12345};
    stream_pair(fam, &w.a, &w.b);
    run_variant(waitall_main, &w, fam_names[fam]);
}

static void test_waitall_tcp(void **state) {
    (void)state;
    run_waitall(FAM_TCP);
}

static void test_waitall_unix(void **state) {
    (void)state;
    run_waitall(FAM_UNIX);
}

/* Parked in a MSG_WAITALL receive for 6 bytes, then 3 arrive with end of
 * stream right behind them (one readiness edge may announce both): the call
 * returns the 3 at once, not at its deadline. */
struct waitall_eof {
    int a, b;
    bool close_peer; /* close rather than shut down writing */
};

static void waitall_eof_peer(void *arg) {
    struct waitall_eof *w = arg;
    coil_sleep(20 * COIL_MSEC); /* the reader parks first */
    EXPECT_EQ(coil_send(w->b, "abc", 3, 0), 3);
    if (w->close_peer)
        EXPECT_EQ(coil_close(w->b), 0);
    else
        EXPECT_EQ(coil_shutdown(w->b, SHUT_WR), 0);
}

static void waitall_eof_main(void *arg) {
    struct waitall_eof *w = arg;
    char buf[6];
    coil_id peer = coil_spawn(waitall_eof_peer, w, NULL);
    int64_t t0 = coil_now();
    EXPECT_EQ(coil_recv_dl(w->a, buf, 6, MSG_WAITALL, coil_test_in(10 * COIL_SEC)), 3);
    EXPECT(memcmp(buf, "abc", 3) == 0);
    EXPECT(coil_now() - t0 < coil_test_slack());
    EXPECT_EQ(coil_recv_dl(w->a, buf, 6, MSG_WAITALL, coil_test_in(10 * COIL_SEC)), 0);
    EXPECT_EQ(coil_join(peer, COIL_FOREVER), 0);
    EXPECT_EQ(coil_close(w->a), 0);
    if (!w->close_peer) EXPECT_EQ(coil_close(w->b), 0);
}

static void test_waitall_parked_then_eof(void **state) {
    (void)state;
    for (int fam = FAM_TCP; fam <= FAM_UNIX; fam++) {
        for (int c = 0; c < 2; c++) {
            struct waitall_eof w = {.close_peer = c};
            stream_pair((enum fam)fam, &w.a, &w.b);
            run_variant(waitall_eof_main, &w, fam_names[fam]);
        }
    }
}

/* ---- 3. end of stream after a short read -------------------------------------------- */

enum eof_how { EOF_CLOSE, EOF_SHUT_WR };
enum eof_when {
    EOF_FRESH,           /* the reader's first call on the fd */
    EOF_WAITED_AT_ONCE,  /* it waited on the fd before (a short read); reads at once */
    EOF_WAITED_SLEEPING, /* ...and sleeps before reading, so that events are seen first */
    EOF_WAITING,         /* it waits in coil_recv when the data and the end come */
    EOF_WHEN_COUNT
};
static const char *const eof_when_names[] = {"fresh fd", "waited before, reads at once",
                                             "waited before, sleeps first", "waiting"};

struct eof {
    enum fam fam;
    enum eof_how how;
    enum eof_when when;
    int fd, peer;
    uint8_t data[100];
};

/* The peer's part: 100 bytes, then the end of its stream. */
static void eof_finish_peer(struct eof *e) {
    EXPECT_EQ(coil_send(e->peer, e->data, sizeof e->data, 0), sizeof e->data);
    if (e->how == EOF_CLOSE) {
        EXPECT_EQ(coil_close(e->peer), 0);
        e->peer = -1;
    } else {
        EXPECT_EQ(coil_shutdown(e->peer, SHUT_WR), 0);
    }
}

static void eof_peer_later(void *arg) {
    struct eof *e = arg;
    EXPECT_EQ(coil_sleep(20 * COIL_MSEC), 0);
    eof_finish_peer(e);
}

static void eof_main(void *arg) {
    struct eof *e = arg;
    uint8_t buf[4096];
    int64_t long_dl = coil_test_in(10 * COIL_SEC);
    if (e->when == EOF_WAITED_AT_ONCE || e->when == EOF_WAITED_SLEEPING) {
        /* A short read that had to wait first. */
        struct later l;
        coil_id s = send_later(&l, e->peer, "x", 1, 20 * COIL_MSEC);
        EXPECT_EQ(coil_recv_dl(e->fd, buf, sizeof buf, 0, long_dl), 1);
        EXPECT(l.sent);
        EXPECT_EQ(coil_join(s, long_dl), 0);
    }
    coil_id p = 0;
    if (e->when == EOF_WAITING)
        p = coil_spawn(eof_peer_later, e, NULL);
    else
        eof_finish_peer(e); /* before the reader reads */
    if (e->when == EOF_WAITED_SLEEPING) EXPECT_EQ(coil_sleep(20 * COIL_MSEC), 0);
    int64_t t0 = coil_now();
    memset(buf, 0, sizeof buf);
    EXPECT_EQ(coil_recv_dl(e->fd, buf, sizeof buf, 0, long_dl), sizeof e->data);
    EXPECT(memcmp(buf, e->data, sizeof e->data) == 0);
    if (e->when != EOF_WAITING) t0 = coil_now();
    EXPECT_EQ(coil_recv_dl(e->fd, buf, sizeof buf, 0, long_dl), 0);
    EXPECT(coil_now() - t0 < coil_test_slack()); /* promptly: no wait for another event */
    EXPECT_EQ(coil_recv_dl(e->fd, buf, sizeof buf, 0, long_dl), 0); /* and it stays 0 */
    EXPECT_EQ(coil_read(e->fd, buf, sizeof buf), 0);
    if (p) EXPECT_EQ(coil_join(p, long_dl), 0);
    EXPECT_EQ(coil_close(e->fd), 0);
    if (e->peer >= 0) EXPECT_EQ(coil_close(e->peer), 0);
}

static void test_eof_after_short_read(void **state) {
    (void)state;
    for (int fam = FAM_TCP; fam <= FAM_UNIX; fam++)
        for (int how = EOF_CLOSE; how <= EOF_SHUT_WR; how++)
            for (int when = 0; when < EOF_WHEN_COUNT; when++) {
                struct eof e = {
                    .fam = (enum fam)fam, .how = (enum eof_how)how, .when = (enum eof_when)when};
                coil_test_pattern_fill(e.data, sizeof e.data, 7, (uint64_t)when);
                stream_pair(e.fam, &e.fd, &e.peer);
                char name[128];
                snprintf(name, sizeof name, "%s, %s, %s", fam_names[fam],
                         how == EOF_CLOSE ? "close" : "shutdown(SHUT_WR)", eof_when_names[when]);
                run_variant(eof_main, &e, name);
            }
}

/* ---- 4. MSG_PEEK --------------------------------------------------------------------- */

struct peek {
    int fd, peer;
    bool dgram;
    struct coil_test_addr fd_addr; /* UDP: where the peer sends */
};

/* Sends on the peer (UDP: to fd's address), without waiting. */
static ssize_t peek_send(struct peek *p, const char *s) {
    size_t len = strlen(s);
    if (p->dgram)
        return coil_sendto(p->peer, s, len, 0, COIL_TEST_SA(&p->fd_addr), p->fd_addr.len,
                           coil_test_in(10 * COIL_SEC));
    return coil_send(p->peer, s, len, 0);
}

struct peek_later {
    struct peek *p;
    const char *s;
    bool sent;
};

static void peek_later_fn(void *arg) {
    struct peek_later *l = arg;
    EXPECT_EQ(coil_sleep(20 * COIL_MSEC), 0);
    l->sent = true;
    EXPECT_EQ(peek_send(l->p, l->s), strlen(l->s));
}

static void peek_main(void *arg) {
    struct peek *p = arg;
    char buf[4096];
    int64_t dl = coil_test_in(10 * COIL_SEC);

    /* Data there: a peek with a big buffer returns it (twice), the receive
     * after it gets the same bytes at once. */
    EXPECT_EQ(peek_send(p, "hello"), 5);
    if (!p->dgram) {
        /* (a stream: wait until it has all arrived, peeking) */
        struct pollfd pf = {.fd = p->fd, .events = POLLIN};
        EXPECT_EQ(poll(&pf, 1, 5000), 1);
    }
    memset(buf, 0, sizeof buf);
    EXPECT_EQ(coil_recv_dl(p->fd, buf, sizeof buf, MSG_PEEK, dl), 5);
    EXPECT(memcmp(buf, "hello", 5) == 0);
    EXPECT_EQ(coil_recv_dl(p->fd, buf, 2, MSG_PEEK, dl), 2); /* a smaller peek */
    memset(buf, 0, sizeof buf);
    EXPECT_EQ(coil_recv_dl(p->fd, buf, sizeof buf, MSG_PEEK, dl), 5);
    EXPECT(memcmp(buf, "hello", 5) == 0);
    int64_t t0 = coil_now();
    memset(buf, 0, sizeof buf);
    EXPECT_EQ(coil_recv_dl(p->fd, buf, sizeof buf, 0, dl), 5);
    EXPECT(memcmp(buf, "hello", 5) == 0);
    EXPECT(coil_now() - t0 < coil_test_slack());

    /* Nothing left: the next receive waits. */
    int64_t short_dl = coil_test_in(50 * COIL_MSEC);
    EXPECT_EQ(coil_recv_dl(p->fd, buf, sizeof buf, 0, short_dl), -ETIMEDOUT);
    EXPECT_EQ(coil_recv_dl(p->fd, buf, sizeof buf, MSG_PEEK, coil_test_in(50 * COIL_MSEC)),
              -ETIMEDOUT);

    /* A peek that waits for the data, then the receive of it. */
    struct peek_later l = {.p = p, .s = "world"};
    coil_id s = coil_spawn(peek_later_fn, &l, NULL);
    memset(buf, 0, sizeof buf);
    EXPECT_EQ(coil_recv_dl(p->fd, buf, sizeof buf, MSG_PEEK, dl), 5);
    EXPECT(memcmp(buf, "world", 5) == 0);
    EXPECT(l.sent);
    t0 = coil_now();
    memset(buf, 0, sizeof buf);
    EXPECT_EQ(coil_recv_dl(p->fd, buf, sizeof buf, 0, dl), 5);
    EXPECT(memcmp(buf, "world", 5) == 0);
    EXPECT(coil_now() - t0 < coil_test_slack());
    EXPECT_EQ(coil_join(s, dl), 0);

    /* And the receive after that waits until the peer sends more. */
    l = (struct peek_later){.p = p, .s = "more"};
    s = coil_spawn(peek_later_fn, &l, NULL);
    memset(buf, 0, sizeof buf);
    EXPECT_EQ(coil_recv_dl(p->fd, buf, sizeof buf, 0, dl), 4);
    EXPECT(memcmp(buf, "more", 4) == 0);
    EXPECT(l.sent);
    EXPECT_EQ(coil_join(s, dl), 0);

    EXPECT_EQ(coil_recv(p->fd, buf, sizeof buf, MSG_DONTWAIT), -EAGAIN);

    EXPECT_EQ(coil_close(p->fd), 0);
    EXPECT_EQ(coil_close(p->peer), 0);
}

static void test_peek_stream(void **state) {
    (void)state;
    for (int fam = FAM_TCP; fam <= FAM_UNIX; fam++) {
        struct peek p = {0};
        stream_pair((enum fam)fam, &p.fd, &p.peer);
        run_variant(peek_main, &p, fam_names[fam]);
    }
}

static void test_peek_udp(void **state) {
    (void)state;
    struct peek p = {.dgram = true};
    struct coil_test_addr peer_addr;
    p.fd = coil_test_raw_bound(AF_INET, SOCK_DGRAM, -1, &p.fd_addr);
    p.peer = coil_test_raw_bound(AF_INET, SOCK_DGRAM, -1, &peer_addr);
    assert_true(p.fd >= 0 && p.peer >= 0);
    run_variant(peek_main, &p, "udp");
}

/* ---- 5. a Unix listener whose backlog is full ------------------------------------------ */

#define MAX_FILLERS 16

struct ubl {
    bool nonblock; /* the connecting sockets are O_NONBLOCK */
    char dir[64];
    struct sockaddr_un addr;
    int listener;
    int fillers[MAX_FILLERS];
    int nfill;
    bool accept_started;
    bool busy_after_accept;
    int accepted;
    int64_t accepted_at;
    ssize_t victim_rc;
    bool victim_done;
    int victim_fd;
    int64_t victim_dl, victim_end; /* the deadline case: its deadline, when it returned */
};

/* A new listener (backlog 0) on the path dir/sock<i>, made with plain system
 * calls; its backlog is then filled: O_NONBLOCK sockets connect to it until
 * one is refused with EAGAIN. Each part of the test has its own listener: on
 * io_uring, one that coil_accept has used stays under a multishot accept,
 * which takes connections out of the kernel's queue as they come. */
static bool ubl_listen_and_fill(struct ubl *u, int i) {
    u->addr.sun_family = AF_UNIX;
    snprintf(u->addr.sun_path, sizeof u->addr.sun_path, "%s/sock%d", u->dir, i);
    u->listener = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (!EXPECT(u->listener >= 0)) return false;
    if (!EXPECT_EQ(bind(u->listener, (struct sockaddr *)&u->addr, sizeof u->addr), 0)) return false;
    if (!EXPECT_EQ(listen(u->listener, 0), 0)) return false;
    for (;;) {
        if (!EXPECT(u->nfill < MAX_FILLERS)) return false;
        int c = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (!EXPECT(c >= 0)) return false;
        if (connect(c, (struct sockaddr *)&u->addr, sizeof u->addr) == 0) {
            u->fillers[u->nfill++] = c;
            continue;
        }
        int err = errno;
        close(c);
        return EXPECT_EQ(err, EAGAIN) && EXPECT(u->nfill >= 1);
    }
}

/* Closes the fillers and the listener (with coil_close: coil may have used it). */
static void ubl_end(struct ubl *u) {
    for (int i = 0; i < u->nfill; i++)
        close(u->fillers[i]);
    u->nfill = 0;
    if (u->listener >= 0) EXPECT_EQ(coil_close(u->listener), 0);
    u->listener = -1;
    unlink(u->addr.sun_path);
}

/* The fd of a new Unix stream socket, O_NONBLOCK as u says. */
static int ubl_socket(struct ubl *u) {
    int c = coil_socket(AF_UNIX, SOCK_STREAM, 0);
    if (EXPECT(c >= 0) && u->nonblock) EXPECT_EQ(coil_test_set_nonblock(c, true), 0);
    return c;
}

static void ubl_acceptor(void *arg) {
    struct ubl *u = arg;
    EXPECT_EQ(coil_sleep(50 * COIL_MSEC), 0);
    u->accept_started = true;
    u->accepted = coil_accept_dl(u->listener, NULL, NULL, coil_test_in(10 * COIL_SEC));
    u->accepted_at = coil_now();
    EXPECT(u->accepted >= 0);
    /* Then, in one variant, 20 ms of work without a blocking call: the
     * waiting connect is due to be tried again while no tasklet waits on
     * anything else (no timer, no fd) that would wake the scheduler. */
    if (u->busy_after_accept)
        while (coil_now() - u->accepted_at < 20 * COIL_MSEC) {
        }
}

/* Sleeps for a bound on the whole case (a timer that wakes a scheduler that
 * would otherwise wait forever), unless killed first. */
static void ubl_guard(void *arg) {
    (void)arg;
    coil_sleep(4 * coil_test_slack());
}

static void ubl_timed(void *arg) {
    struct ubl *u = arg;
    u->victim_rc =
        coil_connect_dl(u->victim_fd, (struct sockaddr *)&u->addr, sizeof u->addr, u->victim_dl);
    u->victim_end = coil_now();
    u->victim_done = true;
}

static void ubl_victim(void *arg) {
    struct ubl *u = arg;
    u->victim_rc = coil_connect(u->victim_fd, (struct sockaddr *)&u->addr, sizeof u->addr);
    u->victim_done = true;
}

/* Accepts with plain system calls (without waiting) whatever is queued on a
 * listener coil never accepted from; returns the count. */
static int ubl_accept_all(struct ubl *u) {
    int n = 0;
    for (;;) {
        struct pollfd p = {.fd = u->listener, .events = POLLIN};
        if (poll(&p, 1, 0) != 1) break;
        int fd = accept4(u->listener, NULL, NULL, SOCK_CLOEXEC);
        if (fd < 0) break;
        close(fd);
        n++;
    }
    return n;
}

static void ubl_main(void *arg) {
    struct ubl *u = arg;
    struct coil_test_addr peer;

    /* It waits (not -EAGAIN), and succeeds once a connection is accepted,
     * promptly (a guard tasklet bounds the wait: without it a connect that is
     * never tried again would hang the test). */
    for (int busy = 0; busy <= 1; busy++) {
        if (!ubl_listen_and_fill(u, 1 + 3 * busy)) return;
        u->busy_after_accept = busy;
        u->accept_started = false;
        u->accepted = -1;
        int c = ubl_socket(u);
        int fl = flags_of(c);
        coil_id g = coil_spawn(ubl_guard, NULL, NULL);
        coil_id a = coil_spawn(ubl_acceptor, u, NULL);
        EXPECT_EQ(coil_connect(c, (struct sockaddr *)&u->addr, sizeof u->addr), 0);
        int64_t took = coil_now() - u->accepted_at;
        EXPECT(u->accept_started); /* (it could not have got in before) */
        if (!EXPECT(took < 20 * COIL_MSEC + coil_test_slack()))
            print_message("%s: coil_connect returned %.3f s after the accept that made room\n",
                          busy ? "busy acceptor" : "plain", (double)took / COIL_SEC);
        EXPECT_EQ(flags_of(c), fl);
        EXPECT_EQ(coil_join(a, coil_test_in(10 * COIL_SEC)), 0);
        EXPECT_EQ(coil_kill(g), 0);
        EXPECT_EQ(coil_join(g, coil_test_in(10 * COIL_SEC)), 0);
        /* The accepted one was the first filler; c's connection came after it. */
        int s = coil_accept_dl(u->listener, NULL, NULL, coil_test_in(10 * COIL_SEC));
        if (EXPECT(s >= 0)) {
            char b = 0;
            EXPECT_EQ(coil_send(c, "!", 1, 0), 1);
            EXPECT_EQ(coil_recv_dl(s, &b, 1, 0, coil_test_in(10 * COIL_SEC)), 1);
            EXPECT_EQ(b, '!');
            EXPECT_EQ(coil_close(s), 0);
        }
        if (u->accepted >= 0) EXPECT_EQ(coil_close(u->accepted), 0);
        EXPECT_EQ(coil_close(c), 0);
        ubl_end(u);
    }

    /* A deadline: -ETIMEDOUT, not before it, and no connection made. The
     * call runs in a tasklet of its own, so that a call that misses its
     * deadline is reported (and killed) rather than hanging the test. */
    if (!ubl_listen_and_fill(u, 2)) return;
    u->victim_fd = ubl_socket(u);
    int fl = flags_of(u->victim_fd);
    u->victim_done = false;
    u->victim_dl = coil_test_in(100 * COIL_MSEC);
    coil_id t = coil_spawn(ubl_timed, u, NULL);
    int j = coil_join(t, u->victim_dl + 5 * COIL_SEC);
    if (!EXPECT_EQ(j, 0)) {
        print_message("coil_connect_dl is still waiting 5 s after its deadline: killed\n");
        EXPECT_EQ(coil_kill(t), 0);
        EXPECT_EQ(coil_join(t, coil_test_in(10 * COIL_SEC)), 0);
    }
    EXPECT_EQ(u->victim_rc, -ETIMEDOUT);
    EXPECT(u->victim_end >= u->victim_dl);
    EXPECT_EQ(flags_of(u->victim_fd), fl);
    EXPECT_EQ(coil_test_peername(u->victim_fd, &peer), -ENOTCONN);
    EXPECT_EQ(coil_close(u->victim_fd), 0);
    EXPECT_EQ(ubl_accept_all(u), u->nfill); /* the fillers only */
    ubl_end(u);

    /* A kill: -ECANCELED, at once, and no connection made. */
    if (!ubl_listen_and_fill(u, 3)) return;
    u->victim_fd = ubl_socket(u);
    fl = flags_of(u->victim_fd);
    u->victim_done = false;
    u->victim_rc = 12345;
    coil_id v = coil_spawn(ubl_victim, u, NULL);
    EXPECT_EQ(coil_sleep(50 * COIL_MSEC), 0);
    EXPECT(!u->victim_done);
    int64_t t_kill = coil_now();
    EXPECT_EQ(coil_kill(v), 0);
    EXPECT_EQ(coil_join(v, coil_test_in(10 * COIL_SEC)), 0);
    EXPECT(u->victim_done);
    EXPECT_EQ(u->victim_rc, -ECANCELED);
    EXPECT(coil_now() - t_kill < coil_test_slack());
    EXPECT_EQ(flags_of(u->victim_fd), fl);
    EXPECT_EQ(coil_test_peername(u->victim_fd, &peer), -ENOTCONN);
    EXPECT_EQ(coil_close(u->victim_fd), 0);
    EXPECT_EQ(ubl_accept_all(u), u->nfill);
    ubl_end(u);
}

static void run_ubl(bool nonblock) {
    struct ubl u = {.nonblock = nonblock, .listener = -1, .accepted = -1, .victim_rc = 12345};
    snprintf(u.dir, sizeof u.dir, "/tmp/coil-test-XXXXXX");
    assert_non_null(mkdtemp(u.dir));
    coil_test_reset_failures();
    int rc = coil_run(ubl_main, &u);
    for (int i = 0; i < u.nfill; i++) /* (after a failed check) */
        close(u.fillers[i]);
    if (u.listener >= 0) close(u.listener);
    for (int i = 1; i <= 4; i++) {
        char path[sizeof u.dir + 16];
        snprintf(path, sizeof path, "%s/sock%d", u.dir, i);
        unlink(path);
    }
    rmdir(u.dir);
    coil_test_assert_no_failure();
    assert_int_equal(rc, 0);
}

static void test_unix_connect_full_backlog_blocking(void **state) {
    (void)state;
    run_ubl(false);
}

static void test_unix_connect_full_backlog_nonblocking(void **state) {
    (void)state;
    run_ubl(true);
}

/* ---- 6. flags are never changed ----------------------------------------------------------- */

struct flags {
    bool nonblock;
    int fd;         /* the fd a tasklet waits on */
    int want_flags; /* what F_GETFL must say of it */
    int rc;         /* its call's result */
    bool done;
    char buf[128];
};

static void flags_acceptor(void *arg) {
    struct flags *f = arg;
    f->rc = coil_accept_dl(f->fd, NULL, NULL, coil_test_in(10 * COIL_SEC));
    f->done = true;
}

static void flags_reader(void *arg) {
    struct flags *f = arg;
    f->rc = (int)coil_read_dl(f->fd, f->buf, sizeof f->buf, coil_test_in(10 * COIL_SEC));
    f->done = true;
}

static void flags_receiver(void *arg) {
    struct flags *f = arg;
    f->rc = (int)coil_recv_dl(f->fd, f->buf, sizeof f->buf, 0, coil_test_in(10 * COIL_SEC));
    f->done = true;
}

static void flags_writer(void *arg) {
    struct flags *f = arg;
    memset(f->buf, 'w', sizeof f->buf);
    f->rc = (int)coil_write_dl(f->fd, f->buf, 100, coil_test_in(10 * COIL_SEC));
    f->done = true;
}

/* Spawns fn on w (w->fd set), lets it park, checks the flags meanwhile. */
static coil_id flags_park(struct flags *w, coil_fn fn) {
    w->want_flags = flags_of(w->fd);
    w->done = false;
    w->rc = -12345;
    coil_id id = coil_spawn(fn, w, NULL);
    EXPECT_EQ(coil_sleep(20 * COIL_MSEC), 0);
    EXPECT(!w->done);                          /* it waits... */
    EXPECT_EQ(flags_of(w->fd), w->want_flags); /* ...with the fd's flags as they were */
    return id;
}

static void flags_main(void *arg) {
    struct flags *f = arg;
    int64_t dl = coil_test_in(10 * COIL_SEC);
    int nb = f->nonblock ? O_NONBLOCK : 0;
    struct flags w;
    memset(&w, 0, sizeof w);

    /* accept: one that waits, then one that does not. */
    struct coil_test_addr a;
    int l = coil_test_raw_bound(AF_INET, SOCK_STREAM, 8, &a);
    if (!EXPECT(l >= 0)) return;
    EXPECT_EQ(coil_test_set_nonblock(l, f->nonblock), 0);
    int lfl = flags_of(l);
    EXPECT_EQ(lfl & O_NONBLOCK, nb);
    w.fd = l;
    coil_id id = flags_park(&w, flags_acceptor);
    int c1 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | nb, 0);
    int cfl = flags_of(c1);
    EXPECT_EQ(coil_connect(c1, COIL_TEST_SA(&a), a.len), 0); /* (a connect that may wait) */
    EXPECT_EQ(flags_of(c1), cfl);
    EXPECT_EQ(coil_join(id, dl), 0);
    EXPECT(w.rc >= 0);
    EXPECT_EQ(flags_of(l), lfl);
    if (w.rc >= 0) {
        EXPECT_EQ(flags_of(w.rc) & O_NONBLOCK, 0); /* accepted fds are blocking, as accept(2)'s */
        EXPECT_EQ(coil_close(w.rc), 0);
    }
    int c2 = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT_EQ(connect(c2, COIL_TEST_SA(&a), a.len), 0);
    int s2 = coil_accept_dl(l, NULL, NULL, dl); /* (queued already) */
    EXPECT(s2 >= 0);
    EXPECT_EQ(flags_of(l), lfl);
    EXPECT_EQ(flags_of(s2) & O_NONBLOCK, 0);

    /* recv on a socket (MSG_DONTWAIT inside): waits, flags untouched. */
    EXPECT_EQ(coil_test_set_nonblock(s2, f->nonblock), 0);
    w.fd = s2;
    id = flags_park(&w, flags_receiver);
    EXPECT_EQ(coil_send(c2, "sock", 4, 0), 4);
    EXPECT_EQ(coil_join(id, dl), 0);
    EXPECT_EQ(w.rc, 4);
    EXPECT_EQ(flags_of(s2), w.want_flags);
    EXPECT_EQ(coil_close(s2), 0);
    EXPECT_EQ(coil_close(c2), 0);
    EXPECT_EQ(coil_close(c1), 0);
    EXPECT_EQ(coil_close(l), 0);

    /* Pipes: a read that waits, one that does not; a write that waits on a
     * full pipe, one that does not. */
    int p[2];
    if (!EXPECT_EQ(pipe2(p, O_CLOEXEC | nb), 0)) return;
    int rfl = flags_of(p[0]), wfl = flags_of(p[1]);
    EXPECT_EQ(rfl & O_NONBLOCK, nb);
    w.fd = p[0];
    id = flags_park(&w, flags_reader);
    EXPECT_EQ(coil_write(p[1], "hello", 5), 5); /* at once */
    EXPECT_EQ(flags_of(p[1]), wfl);
    EXPECT_EQ(coil_join(id, dl), 0);
    EXPECT_EQ(w.rc, 5);
    EXPECT(memcmp(w.buf, "hello", 5) == 0);
    EXPECT_EQ(flags_of(p[0]), rfl);

    EXPECT(fcntl(p[1], F_SETPIPE_SZ, 4096) >= 0);
    size_t filled = coil_test_fill_pipe(p[1]);
    EXPECT(filled > 0);
    EXPECT_EQ(flags_of(p[1]), wfl);
    w.fd = p[1];
    id = flags_park(&w, flags_writer);
    /* Make room with coil_read (each at once: the pipe is full). */
    char buf[4096];
    size_t drained = 0;
    while (drained < filled) {
        ssize_t n = coil_read_dl(p[0], buf, sizeof buf, dl);
        if (!EXPECT(n > 0)) break;
        drained += (size_t)n;
    }
    EXPECT_EQ(flags_of(p[0]), rfl);
    EXPECT_EQ(coil_join(id, dl), 0);
    EXPECT_EQ(w.rc, 100);
    EXPECT_EQ(flags_of(p[1]), wfl);
    EXPECT_EQ(coil_read_dl(p[0], buf, sizeof buf, dl), 100);
    EXPECT_EQ(flags_of(p[0]), rfl);
    EXPECT_EQ(coil_close(p[0]), 0);
    EXPECT_EQ(coil_close(p[1]), 0);
}

static void test_flags_unchanged_blocking(void **state) {
    (void)state;
    struct flags f = {.nonblock = false};
    run_variant(flags_main, &f, "blocking fds");
}

static void test_flags_unchanged_nonblocking(void **state) {
    (void)state;
    struct flags f = {.nonblock = true};
    run_variant(flags_main, &f, "O_NONBLOCK fds");
}

/* ---- 7. many acceptors on one listener ----------------------------------------------------- */

#define N_MANY 20

struct acceptor {
    int listener;
    int fd;  /* what coil_accept returned */
    int idx; /* the client index it read from the connection */
    bool done;
};

static void acceptor_fn(void *arg) {
    struct acceptor *a = arg;
    a->fd = coil_accept_dl(a->listener, NULL, NULL, coil_test_in(10 * COIL_SEC));
    if (a->fd >= 0) {
        int idx = -1;
        EXPECT_EQ(coil_test_recv_all(a->fd, &idx, sizeof idx, coil_test_in(10 * COIL_SEC), NULL),
                  sizeof idx);
        a->idx = idx;
    }
    a->done = true;
}

static void many_accept_main(void *arg) {
    (void)arg;
    struct coil_test_addr addr;
    int l = coil_test_raw_bound(AF_INET, SOCK_STREAM, 64, &addr);
    if (!EXPECT(l >= 0)) return;
    struct acceptor acc[N_MANY];
    coil_id ids[N_MANY];
    int clients[N_MANY];
    for (int i = 0; i < N_MANY; i++) {
        acc[i] = (struct acceptor){.listener = l, .fd = -1, .idx = -1};
        ids[i] = coil_spawn(acceptor_fn, &acc[i], NULL);
        EXPECT(ids[i] > 0);
    }
    EXPECT_EQ(coil_sleep(20 * COIL_MSEC), 0); /* all of them wait in coil_accept */
    for (int i = 0; i < N_MANY; i++)
        EXPECT(!acc[i].done);
    for (int i = 0; i < N_MANY; i++) {
        clients[i] = coil_socket(AF_INET, SOCK_STREAM, 0);
        if (!EXPECT(clients[i] >= 0)) continue;
        EXPECT_EQ(coil_connect(clients[i], COIL_TEST_SA(&addr), addr.len), 0);
        EXPECT_EQ(coil_send(clients[i], &i, sizeof i, 0), sizeof i);
    }
    for (int i = 0; i < N_MANY; i++)
        EXPECT_EQ(coil_join(ids[i], coil_test_in(10 * COIL_SEC)), 0);
    /* Every acceptor got a connection of its own, every client was accepted once. */
    int seen[N_MANY] = {0};
    for (int i = 0; i < N_MANY; i++) {
        EXPECT(acc[i].done);
        EXPECT(acc[i].fd >= 0);
        for (int j = 0; j < i; j++)
            EXPECT(acc[i].fd != acc[j].fd);
        if (EXPECT(acc[i].idx >= 0 && acc[i].idx < N_MANY)) seen[acc[i].idx]++;
    }
    for (int i = 0; i < N_MANY; i++)
        EXPECT_EQ(seen[i], 1);
    /* Nothing more is queued. */
    EXPECT_EQ(coil_accept_dl(l, NULL, NULL, coil_test_in(20 * COIL_MSEC)), -ETIMEDOUT);
    for (int i = 0; i < N_MANY; i++) {
        if (acc[i].fd >= 0) EXPECT_EQ(coil_close(acc[i].fd), 0);
        if (clients[i] >= 0) EXPECT_EQ(coil_close(clients[i]), 0);
    }
    EXPECT_EQ(coil_close(l), 0);
}

static void test_many_acceptors_one_listener(void **state) {
    (void)state;
    COIL_RUN_CHECKED(many_accept_main, NULL);
}

/* ---- 8. many receivers on one UDP socket ---------------------------------------------------- */

struct udp_reader {
    int fd;
    struct coil_test_addr from;
    char buf[64];
    ssize_t rc;
    bool done;
};

static void udp_reader_fn(void *arg) {
    struct udp_reader *r = arg;
    r->from.len = sizeof r->from.ss;
    r->rc = coil_recvfrom(r->fd, r->buf, sizeof r->buf - 1, 0, COIL_TEST_SA(&r->from), &r->from.len,
                          coil_test_in(10 * COIL_SEC));
    r->done = true;
}

/* One round: N receivers, N datagrams ("dgram-00" ...), each delivered once.
 * queued_first: the datagrams are sent before the receivers start. */
static void udp_round(int rx, int tx, const struct coil_test_addr *rx_addr,
                      const struct coil_test_addr *tx_addr, bool queued_first) {
    struct udp_reader rd[N_MANY];
    coil_id ids[N_MANY];
    int64_t dl = coil_test_in(10 * COIL_SEC);
    char msg[16];
    if (queued_first)
        for (int i = 0; i < N_MANY; i++) {
            snprintf(msg, sizeof msg, "dgram-%02d", i);
            EXPECT_EQ(coil_sendto(tx, msg, 8, 0, COIL_TEST_SA(rx_addr), rx_addr->len, dl), 8);
        }
    for (int i = 0; i < N_MANY; i++) {
        memset(&rd[i], 0, sizeof rd[i]);
        rd[i].fd = rx;
        rd[i].rc = -12345;
        ids[i] = coil_spawn(udp_reader_fn, &rd[i], NULL);
        EXPECT(ids[i] > 0);
    }
    if (!queued_first) {
        EXPECT_EQ(coil_sleep(20 * COIL_MSEC), 0); /* all of them wait in coil_recvfrom */
        for (int i = 0; i < N_MANY; i++)
            EXPECT(!rd[i].done);
        for (int i = 0; i < N_MANY; i++) {
            snprintf(msg, sizeof msg, "dgram-%02d", i);
            EXPECT_EQ(coil_sendto(tx, msg, 8, 0, COIL_TEST_SA(rx_addr), rx_addr->len, dl), 8);
        }
    }
    for (int i = 0; i < N_MANY; i++)
        EXPECT_EQ(coil_join(ids[i], dl), 0);
    int seen[N_MANY] = {0};
    for (int i = 0; i < N_MANY; i++) {
        EXPECT(rd[i].done);
        if (!EXPECT_EQ(rd[i].rc, 8)) continue;
        EXPECT(coil_test_same_addr(&rd[i].from, tx_addr));
        int k = -1;
        if (EXPECT(sscanf(rd[i].buf, "dgram-%d", &k) == 1 && k >= 0 && k < N_MANY)) seen[k]++;
    }
    for (int i = 0; i < N_MANY; i++)
        EXPECT_EQ(seen[i], 1);
    /* Nothing is left over. */
    char buf[64];
    EXPECT_EQ(coil_recvfrom(rx, buf, sizeof buf, 0, NULL, NULL, coil_test_in(20 * COIL_MSEC)),
              -ETIMEDOUT);
}

struct udp_many {
    int rx, tx;
    struct coil_test_addr rx_addr, tx_addr;
};

static void udp_many_main(void *arg) {
    struct udp_many *m = arg;
    udp_round(m->rx, m->tx, &m->rx_addr, &m->tx_addr, false);
    udp_round(m->rx, m->tx, &m->rx_addr, &m->tx_addr, true);
    udp_round(m->rx, m->tx, &m->rx_addr, &m->tx_addr, false);
    EXPECT_EQ(coil_close(m->rx), 0);
    EXPECT_EQ(coil_close(m->tx), 0);
}

static void test_many_receivers_one_udp_socket(void **state) {
    (void)state;
    struct udp_many m;
    m.rx = coil_test_raw_bound(AF_INET, SOCK_DGRAM, -1, &m.rx_addr);
    m.tx = coil_test_raw_bound(AF_INET, SOCK_DGRAM, -1, &m.tx_addr);
    assert_true(m.rx >= 0 && m.tx >= 0);
    COIL_RUN_CHECKED(udp_many_main, &m);
}

/* ---- 9. close and reuse of a number while a dup keeps the file open ---------------------- */

struct reuse {
    int x, xpeer; /* the old pair; x is closed and its number reused */
    int d;        /* a dup of the old x */
    int y, ypeer; /* the new pair, y == x */
    struct flags a, b, c;
};

static void reuse_main(void *arg) {
    struct reuse *r = arg;
    int64_t dl = coil_test_in(10 * COIL_SEC);
    int sv[2];
    if (!EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0)) return;
    r->x = sv[0];
    r->xpeer = sv[1];

    /* A waits on x; x is dup'ed and closed: A gets -EBADF. */
    r->a.fd = r->x;
    coil_id a = flags_park(&r->a, flags_receiver);
    r->d = fcntl(r->x, F_DUPFD_CLOEXEC, 0);
    EXPECT(r->d >= 0);
    EXPECT_EQ(coil_close(r->x), 0);
    EXPECT_EQ(coil_join(a, dl), 0);
    EXPECT_EQ(r->a.rc, -EBADF);

    /* A new pair; one end at x's number. */
    if (!EXPECT_EQ(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0)) return;
    if (sv[0] == r->x || sv[1] == r->x) {
        r->y = sv[0] == r->x ? sv[0] : sv[1];
        r->ypeer = sv[0] == r->x ? sv[1] : sv[0];
    } else {
        /* (lower numbers were free): put it there */
        print_message("fd %d was not reused by socketpair (got %d, %d): dup3 onto it\n", r->x,
                      sv[0], sv[1]);
        r->y = dup3(sv[0], r->x, O_CLOEXEC);
        EXPECT_EQ(r->y, r->x);
        close(sv[0]);
        r->ypeer = sv[1];
    }

    /* B waits on the new x; data for the old file (still open as d) must not
     * wake it. */
    r->b.fd = r->y;
    coil_id b = flags_park(&r->b, flags_receiver);
    EXPECT_EQ(coil_send(r->xpeer, "old!", 4, 0), 4);
    EXPECT_EQ(coil_sleep(50 * COIL_MSEC), 0);
    EXPECT(!r->b.done);
    EXPECT_EQ(coil_send(r->ypeer, "new!", 4, 0), 4);
    EXPECT_EQ(coil_join(b, dl), 0);
    EXPECT_EQ(r->b.rc, 4);
    EXPECT(memcmp(r->b.buf, "new!", 4) == 0);

    /* The old file's data is there, through d. */
    char buf[64];
    memset(buf, 0, sizeof buf);
    EXPECT_EQ(coil_recv_dl(r->d, buf, sizeof buf, 0, dl), 4);
    EXPECT(memcmp(buf, "old!", 4) == 0);
    /* A waiter on d is woken by the old file's data; the new x is not. */
    r->c.fd = r->d;
    coil_id c = flags_park(&r->c, flags_receiver);
    r->b.fd = r->y;
    b = flags_park(&r->b, flags_receiver);
    EXPECT_EQ(coil_send(r->xpeer, "more", 4, 0), 4);
    EXPECT_EQ(coil_join(c, dl), 0);
    EXPECT_EQ(r->c.rc, 4);
    EXPECT(memcmp(r->c.buf, "more", 4) == 0);
    EXPECT_EQ(coil_sleep(50 * COIL_MSEC), 0);
    EXPECT(!r->b.done);
    EXPECT_EQ(coil_send(r->ypeer, "mine", 4, 0), 4);
    EXPECT_EQ(coil_join(b, dl), 0);
    EXPECT_EQ(r->b.rc, 4);
    EXPECT(memcmp(r->b.buf, "mine", 4) == 0);

    EXPECT_EQ(coil_recv(r->y, buf, sizeof buf, MSG_DONTWAIT), -EAGAIN);
    EXPECT_EQ(coil_recv(r->d, buf, sizeof buf, MSG_DONTWAIT), -EAGAIN);
    EXPECT_EQ(coil_close(r->d), 0);
    EXPECT_EQ(coil_close(r->xpeer), 0);
    EXPECT_EQ(coil_close(r->y), 0);
    EXPECT_EQ(coil_close(r->ypeer), 0);
}

static void test_close_and_reuse_with_dup_open(void **state) {
    (void)state;
    struct reuse r;
    memset(&r, 0, sizeof r);
    COIL_RUN_CHECKED(reuse_main, &r);
}

/* ---- 10. a regular file while other tasklets run ------------------------------------------ */

struct file {
    int fd;
    size_t len;
    uint8_t *data, *back;
    bool stop;
    long ticks;
};

static void file_yielder(void *arg) {
    struct file *f = arg;
    while (!f->stop) {
        f->ticks++;
        if (!EXPECT_EQ(coil_yield(), 0)) return;
    }
}

static void file_main(void *arg) {
    struct file *f = arg;
    coil_id y = coil_spawn(file_yielder, f, NULL);
    off_t len = (off_t)f->len;

    long t0 = f->ticks;
    EXPECT_EQ(coil_write(f->fd, f->data, f->len), f->len);
    EXPECT(f->ticks > t0); /* the yielder ran while the write was in flight */
    EXPECT_EQ(lseek(f->fd, 0, SEEK_CUR), len);
    struct stat st;
    EXPECT_EQ(fstat(f->fd, &st), 0);
    EXPECT_EQ(st.st_size, len);

    EXPECT_EQ(lseek(f->fd, 0, SEEK_SET), 0);
    t0 = f->ticks;
    EXPECT_EQ(coil_read(f->fd, f->back, f->len), f->len);
    EXPECT(f->ticks > t0);
    EXPECT(memcmp(f->back, f->data, f->len) == 0);
    EXPECT_EQ(lseek(f->fd, 0, SEEK_CUR), len);
    EXPECT_EQ(coil_read(f->fd, f->back, 100), 0); /* at the end */
    EXPECT_EQ(lseek(f->fd, 0, SEEK_CUR), len);

    /* From the middle: the position advances by what was read. */
    EXPECT_EQ(lseek(f->fd, 12345, SEEK_SET), 12345);
    EXPECT_EQ(coil_read_dl(f->fd, f->back, 1000, coil_test_in(10 * COIL_SEC)), 1000);
    EXPECT(memcmp(f->back, f->data + 12345, 1000) == 0);
    EXPECT_EQ(lseek(f->fd, 0, SEEK_CUR), 13345);
    EXPECT_EQ(coil_read(f->fd, f->back, 10), 10);
    EXPECT(memcmp(f->back, f->data + 13345, 10) == 0);
    EXPECT_EQ(lseek(f->fd, 0, SEEK_CUR), 13355);
    /* Short at the end of the file. */
    EXPECT_EQ(lseek(f->fd, len - 50, SEEK_SET), len - 50);
    EXPECT_EQ(coil_read(f->fd, f->back, 100), 50);
    EXPECT(memcmp(f->back, f->data + f->len - 50, 50) == 0);
    EXPECT_EQ(lseek(f->fd, 0, SEEK_CUR), len);
    /* A write in the middle, at the position, which it advances. */
    EXPECT_EQ(lseek(f->fd, 100, SEEK_SET), 100);
    EXPECT_EQ(coil_write_dl(f->fd, "XYZ", 3, coil_test_in(10 * COIL_SEC)), 3);
    EXPECT_EQ(lseek(f->fd, 0, SEEK_CUR), 103);
    char head[8];
    EXPECT_EQ(pread(f->fd, head, 5, 99), 5);
    EXPECT(head[0] == (char)f->data[99] && memcmp(head + 1, "XYZ", 3) == 0 &&
           head[4] == (char)f->data[103]);
    EXPECT_EQ(fstat(f->fd, &st), 0);
    EXPECT_EQ(st.st_size, len);
    /* Appending past the end grows the file, from the position. */
    EXPECT_EQ(lseek(f->fd, 0, SEEK_END), len);
    EXPECT_EQ(coil_write(f->fd, "tail", 4), 4);
    EXPECT_EQ(lseek(f->fd, 0, SEEK_CUR), len + 4);
    EXPECT_EQ(fstat(f->fd, &st), 0);
    EXPECT_EQ(st.st_size, len + 4);

    f->stop = true;
    EXPECT_EQ(coil_join(y, coil_test_in(10 * COIL_SEC)), 0);
    EXPECT_EQ(coil_close(f->fd), 0);
}

static void test_file_round_trip_while_others_run(void **state) {
    (void)state;
    struct file f = {.len = 1u << 20};
    char path[] = "/tmp/coil-test-readiness-XXXXXX";
    f.fd = mkostemp(path, O_CLOEXEC);
    assert_true(f.fd >= 0);
    unlink(path);
    f.data = malloc(f.len);
    f.back = malloc(f.len);
    assert_true(f.data && f.back);
    coil_test_pattern_fill(f.data, f.len, 77, 0);
    memset(f.back, 0, f.len);
    COIL_RUN_CHECKED(file_main, &f);
    free(f.data);
    free(f.back);
}

/* ---- after a try that found the fd empty (epoll marks it idle) ------------- */

struct idle {
    int client, server;
};

static void idle_main(void *arg) {
    struct idle *p = arg;
    char buf[16];
    struct sockaddr_storage from;
    socklen_t fromlen = sizeof from;
    /* Make the fd known empty: a wait that times out. */
    EXPECT_EQ(coil_recv_dl(p->server, buf, sizeof buf, 0, coil_test_in(20 * COIL_MSEC)),
              -ETIMEDOUT);
    /* MSG_DONTWAIT wants EAGAIN at once, through every call. */
    int64_t t0 = coil_now();
    EXPECT_EQ(coil_recv(p->server, buf, sizeof buf, MSG_DONTWAIT), -EAGAIN);
    EXPECT_EQ(coil_recvfrom(p->server, buf, sizeof buf, MSG_DONTWAIT, (struct sockaddr *)&from,
                            &fromlen, COIL_FOREVER),
              -EAGAIN);
    EXPECT(coil_now() - t0 < coil_test_slack());
    /* Data arrives while nobody waits; a call whose deadline has passed still
     * gets its one try, and finds it. */
    EXPECT_EQ(send(p->client, "late", 4, MSG_NOSIGNAL), 4);
    EXPECT_EQ(coil_sleep(10 * COIL_MSEC), 0);
    EXPECT_EQ(coil_recv_dl(p->server, buf, sizeof buf, 0, coil_now()), 4);
    EXPECT(memcmp(buf, "late", 4) == 0);
}

static void test_idle_fd_dontwait_and_passed_deadline(void **state) {
    (void)state;
    struct idle p;
    assert_int_equal(coil_test_raw_tcp_pair(AF_INET, &p.client, &p.server), 0);
    COIL_RUN_CHECKED(idle_main, &p);
    close(p.client);
    close(p.server);
}

int main(void) {
    coil_test_apply_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fairness_unix_1_byte_receives),
        cmocka_unit_test(test_fairness_tcp_64_byte_receives),
        cmocka_unit_test(test_waitall_tcp),
        cmocka_unit_test(test_waitall_unix),
        cmocka_unit_test(test_waitall_parked_then_eof),
        cmocka_unit_test(test_eof_after_short_read),
        cmocka_unit_test(test_peek_stream),
        cmocka_unit_test(test_peek_udp),
        cmocka_unit_test(test_unix_connect_full_backlog_blocking),
        cmocka_unit_test(test_unix_connect_full_backlog_nonblocking),
        cmocka_unit_test(test_flags_unchanged_blocking),
        cmocka_unit_test(test_flags_unchanged_nonblocking),
        cmocka_unit_test(test_many_acceptors_one_listener),
        cmocka_unit_test(test_many_receivers_one_udp_socket),
        cmocka_unit_test(test_close_and_reuse_with_dup_open),
        cmocka_unit_test(test_file_round_trip_while_others_run),
        cmocka_unit_test(test_idle_fd_dontwait_and_passed_deadline),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
