/* Ending a blocked socket or pipe call early, for each blocking call: accept,
 * connect (to a listener whose accept queue is full), recv, send and sendall
 * (on a full socket buffer), recvfrom, read (an empty pipe) and write (a full
 * pipe):
 *  - coil_kill while it waits: -ECANCELED, and every later call -ECANCELED at
 *    once, even one that could complete; what the cancelled call waited for
 *    (data, a connection, room) is left for the next caller;
 *  - a deadline (the _dl form): -ETIMEDOUT, not before it; a passed deadline
 *    tries once; coil_set_timeout: -ETIMEDOUT, the earlier of the two
 *    applies, 0 means "do not wait", negative means none;
 *  - coil_close from another tasklet while several tasklets wait on the fd:
 *    they all wake with -EBADF at once, and a new fd that reuses the number
 *    at once never sees the old operations' completions;
 *  - a kill racing with the completion never loses what completed. */
#define _GNU_SOURCE
#include "coil_test.h"

#include <fcntl.h>

enum kind { K_ACCEPT, K_CONNECT, K_RECV, K_SEND, K_SENDALL, K_RECVFROM, K_READ, K_WRITE };

static const char *const kind_names[] = {"accept",  "connect",  "recv", "send",
                                         "sendall", "recvfrom", "read", "write"};

#define OP_LEN 100 /* bytes a send / write / recv / read asks for */

static uint8_t op_out[OP_LEN]; /* what sends and writes send */

/* What an operation of a kind works on: blocked (it must wait) or ready (it
 * can complete at once). */
struct res {
    enum kind k;
    int fd;   /* the fd the operation uses */
    int peer; /* the other end: connected peer, pipe's other end, UDP sender */
    int more[20];
    int nmore;                       /* other fds to close afterwards */
    struct coil_test_addr addr;      /* connect: the target; recvfrom: fd's own */
    struct coil_test_addr peer_addr; /* recvfrom: the sender's */
    size_t filled;                   /* send / write: bytes put in beforehand */
};

static void add_more(struct res *r, int fd) {
    if (fd >= 0 && r->nmore < 20) r->more[r->nmore++] = fd;
}

static void res_close(struct res *r) {
    if (r->fd >= 0) coil_close(r->fd);
    if (r->peer >= 0) coil_close(r->peer);
    for (int i = 0; i < r->nmore; i++)
        coil_close(r->more[i]);
    r->fd = r->peer = -1;
    r->nmore = 0;
}

/* A TCP pair with small buffers, so that a few KiB fill them. */
static int small_pair(int *client, int *server) {
    struct coil_test_addr a;
    int l = coil_test_raw_bound(AF_INET, SOCK_STREAM, -1, &a);
    if (l < 0) return l;
    coil_test_setsockopt_int(l, SOL_SOCKET, SO_RCVBUF, 4096);
    int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    coil_test_setsockopt_int(c, SOL_SOCKET, SO_SNDBUF, 4096);
    if (listen(l, 1) != 0 || connect(c, COIL_TEST_SA(&a), a.len) != 0) {
        close(l);
        close(c);
        return -1;
    }
    *client = c;
    *server = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    close(l);
    return *server >= 0 ? 0 : -1;
}

/* accept(2) without waiting: -1 when no connection is queued. */
static int accept_now(int l) {
    struct pollfd p = {.fd = l, .events = POLLIN};
    if (poll(&p, 1, 0) != 1) return -1;
    return accept4(l, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
}

static bool wait_readable(int fd) {
    struct pollfd p = {.fd = fd, .events = POLLIN};
    return poll(&p, 1, 5000) == 1;
}

/* Sets r up so that an operation of kind k waits (ready false) or completes
 * at once (ready true). Plain system calls only, callable anywhere. */
static bool res_setup(struct res *r, enum kind k, bool ready) {
    memset(r, 0, sizeof *r);
    r->k = k;
    r->fd = r->peer = -1;
    int p[2];
    switch (k) {
    case K_ACCEPT:
        r->fd = coil_test_raw_bound(AF_INET, SOCK_STREAM, 16, &r->addr);
        if (r->fd < 0) return false;
        if (ready) {
            r->peer = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
            if (connect(r->peer, COIL_TEST_SA(&r->addr), r->addr.len) != 0) return false;
        }
        return true;
    case K_CONNECT: {
        int l;
        if (ready) {
            l = coil_test_raw_bound(AF_INET, SOCK_STREAM, 16, &r->addr);
            add_more(r, l);
        } else {
            int fillers[16], n = 0;
            l = coil_test_full_backlog_listener(&r->addr, fillers, 16, &n);
            add_more(r, l);
            for (int i = 0; i < n; i++)
                add_more(r, fillers[i]);
        }
        r->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        return l >= 0 && r->fd >= 0;
    }
    case K_RECV:
        if (coil_test_raw_tcp_pair(AF_INET, &r->fd, &r->peer) != 0) return false;
        if (ready) {
            if (send(r->peer, "ready", 5, MSG_NOSIGNAL) != 5) return false;
            return wait_readable(r->fd);
        }
        return true;
    case K_SEND:
    case K_SENDALL:
        if (small_pair(&r->fd, &r->peer) != 0) return false;
        if (!ready) r->filled = coil_test_fill_socket(r->fd);
        return true;
    case K_RECVFROM:
        r->fd = coil_test_raw_bound(AF_INET, SOCK_DGRAM, -1, &r->addr);
        r->peer = coil_test_raw_bound(AF_INET, SOCK_DGRAM, -1, &r->peer_addr);
        if (r->fd < 0 || r->peer < 0) return false;
        if (ready) {
            if (sendto(r->peer, "ready", 5, 0, COIL_TEST_SA(&r->addr), r->addr.len) != 5)
                return false;
            return wait_readable(r->fd);
        }
        return true;
    case K_READ:
        if (pipe2(p, O_CLOEXEC) != 0) return false;
        r->fd = p[0];
        r->peer = p[1];
        if (ready && write(r->peer, "ready", 5) != 5) return false;
        return true;
    case K_WRITE:
        if (pipe2(p, O_CLOEXEC) != 0) return false;
        r->fd = p[1];
        r->peer = p[0];
        if (!ready) {
            fcntl(r->fd, F_SETPIPE_SZ, 4096);
            r->filled = coil_test_fill_pipe(r->fd);
        }
        return true;
    }
    return false;
}

/* Gives the operation's fd the number num (free now), moving any other fd
 * of r that holds it out of the way. */
static void res_force_fd(struct res *r, int num) {
    if (r->fd == num) return;
    int *others[22];
    int n = 0;
    others[n++] = &r->peer;
    for (int i = 0; i < r->nmore; i++)
        others[n++] = &r->more[i];
    for (int i = 0; i < n; i++)
        if (*others[i] == num) {
            int moved = fcntl(num, F_DUPFD_CLOEXEC, num + 1);
            close(num);
            *others[i] = moved;
        }
    int got = dup3(r->fd, num, O_CLOEXEC);
    close(r->fd);
    r->fd = got;
}

enum form { PLAIN, DL };

/* One operation of r's kind on r; the accepted fd, if any, is closed at once. */
static ssize_t do_op(struct res *r, enum kind k, enum form form, int64_t deadline) {
    uint8_t buf[OP_LEN];
    ssize_t rc = -1;
    int64_t dl = form == DL ? deadline : COIL_FOREVER;
    switch (k) {
    case K_ACCEPT:
        rc = form == DL ? coil_accept_dl(r->fd, NULL, NULL, dl) : coil_accept(r->fd, NULL, NULL);
        if (rc >= 0) coil_close((int)rc);
        break;
    case K_CONNECT:
        rc = form == DL ? coil_connect_dl(r->fd, COIL_TEST_SA(&r->addr), r->addr.len, dl)
                        : coil_connect(r->fd, COIL_TEST_SA(&r->addr), r->addr.len);
        break;
    case K_RECV:
        rc = form == DL ? coil_recv_dl(r->fd, buf, sizeof buf, 0, dl)
                        : coil_recv(r->fd, buf, sizeof buf, 0);
        break;
    case K_SEND:
        rc = form == DL ? coil_send_dl(r->fd, op_out, OP_LEN, 0, dl)
                        : coil_send(r->fd, op_out, OP_LEN, 0);
        break;
    case K_SENDALL: rc = coil_sendall(r->fd, op_out, OP_LEN, 0, dl); break;
    case K_RECVFROM: {
        struct coil_test_addr from = {.len = sizeof from.ss};
        rc = coil_recvfrom(r->fd, buf, sizeof buf, 0, COIL_TEST_SA(&from), &from.len, dl);
        if (rc >= 0) EXPECT(coil_test_same_addr(&from, &r->peer_addr));
        break;
    }
    case K_READ:
        rc = form == DL ? coil_read_dl(r->fd, buf, sizeof buf, dl)
                        : coil_read(r->fd, buf, sizeof buf);
        break;
    case K_WRITE:
        rc = form == DL ? coil_write_dl(r->fd, op_out, OP_LEN, dl)
                        : coil_write(r->fd, op_out, OP_LEN);
        break;
    }
    if (rc > 0 && (k == K_RECV || k == K_RECVFROM || k == K_READ)) {
        EXPECT_EQ(rc, 5);
        EXPECT(memcmp(buf, "ready", 5) == 0 || memcmp(buf, "after", 5) == 0 ||
               memcmp(buf, "fresh", 5) == 0);
    }
    return rc;
}

/* What a successful operation of kind k returns. */
static bool op_succeeded(enum kind k, ssize_t rc) {
    switch (k) {
    case K_ACCEPT: return rc >= 0;
    case K_CONNECT: return rc == 0;
    case K_RECV:
    case K_RECVFROM:
    case K_READ: return rc == 5;
    default: return rc == OP_LEN;
    }
}

/* Reads the other end of a send / write with coil until it stays empty for
 * 100 ms; returns the byte count, the last OP_LEN bytes go to tail. */
static size_t drain_peer(struct res *r, uint8_t tail[OP_LEN]) {
    uint8_t buf[16384];
    size_t total = 0;
    for (;;) {
        ssize_t n = r->k == K_WRITE
                        ? coil_read_dl(r->peer, buf, sizeof buf, coil_test_in(100 * COIL_MSEC))
                        : coil_recv_dl(r->peer, buf, sizeof buf, 0, coil_test_in(100 * COIL_MSEC));
        if (n <= 0) {
            EXPECT_EQ(n, -ETIMEDOUT);
            break;
        }
        if ((size_t)n >= OP_LEN) {
            memcpy(tail, buf + n - OP_LEN, OP_LEN);
        } else {
            memmove(tail, tail + n, OP_LEN - (size_t)n);
            memcpy(tail + OP_LEN - n, buf, (size_t)n);
        }
        total += (size_t)n;
    }
    return total;
}

/* A ready resource on which an operation was refused: it holds what it held. */
static void check_ready_untouched(struct res *r) {
    char buf[64];
    int fd;
    struct coil_test_addr peer;
    switch (r->k) {
    case K_ACCEPT:
        fd = accept_now(r->fd);
        EXPECT(fd >= 0); /* the connection is still queued */
        if (fd >= 0) close(fd);
        break;
    case K_CONNECT:
        EXPECT_EQ(coil_test_peername(r->fd, &peer), -ENOTCONN);
        fd = accept_now(r->more[0]);
        EXPECT_EQ(fd, -1);
        if (fd >= 0) close(fd);
        break;
    case K_RECV:
    case K_READ:
        EXPECT_EQ(coil_test_drain(r->fd, buf, sizeof buf), 5);
        EXPECT(memcmp(buf, "ready", 5) == 0);
        break;
    case K_RECVFROM:
        EXPECT_EQ(recv(r->fd, buf, sizeof buf, MSG_DONTWAIT), 5);
        EXPECT(memcmp(buf, "ready", 5) == 0);
        break;
    case K_SEND:
    case K_SENDALL:
    case K_WRITE: EXPECT_EQ(coil_test_drain(r->peer, NULL, 0), 0); break;
    }
}

/* Makes a blocked resource ready, so that a waiting operation completes. For
 * connect, nothing can: the caller uses a ready resource instead. */
static void make_ready(struct res *r) {
    int c;
    switch (r->k) {
    case K_ACCEPT:
        c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        EXPECT_EQ(connect(c, COIL_TEST_SA(&r->addr), r->addr.len), 0);
        add_more(r, c);
        break;
    case K_CONNECT: break;
    case K_RECV: EXPECT_EQ(send(r->peer, "fresh", 5, MSG_NOSIGNAL), 5); break;
    case K_RECVFROM:
        EXPECT_EQ(sendto(r->peer, "fresh", 5, 0, COIL_TEST_SA(&r->addr), r->addr.len), 5);
        break;
    case K_READ: EXPECT_EQ(write(r->peer, "fresh", 5), 5); break;
    case K_SEND:
    case K_SENDALL:
    case K_WRITE: break; /* the caller drains the peer */
    }
}

/* After an operation on blocked resource r ended early (kill, timeout): r is
 * intact, nothing of it was taken, and the fd still works. */
static void check_blocked_intact(struct res *r) {
    uint8_t tail[OP_LEN];
    char buf[16];
    int fd;
    switch (r->k) {
    case K_ACCEPT:
        make_ready(r);
        fd = coil_accept_dl(r->fd, NULL, NULL, coil_test_in(5 * COIL_SEC));
        EXPECT(fd >= 0);
        if (fd >= 0) coil_close(fd);
        break;
    case K_CONNECT: break;
    case K_RECV:
        EXPECT_EQ(send(r->peer, "after", 5, MSG_NOSIGNAL), 5);
        EXPECT_EQ(coil_test_recv_all(r->fd, buf, 5, coil_test_in(5 * COIL_SEC), NULL), 5);
        EXPECT(memcmp(buf, "after", 5) == 0);
        EXPECT_EQ(coil_test_drain(r->fd, NULL, 0), 0);
        break;
    case K_RECVFROM:
        EXPECT_EQ(sendto(r->peer, "after", 5, 0, COIL_TEST_SA(&r->addr), r->addr.len), 5);
        EXPECT_EQ(do_op(r, K_RECVFROM, DL, coil_test_in(5 * COIL_SEC)), 5);
        EXPECT_EQ(coil_test_drain(r->fd, NULL, 0), 0);
        break;
    case K_READ:
        EXPECT_EQ(write(r->peer, "after", 5), 5);
        EXPECT_EQ(coil_read_dl(r->fd, buf, sizeof buf, coil_test_in(5 * COIL_SEC)), 5);
        EXPECT(memcmp(buf, "after", 5) == 0);
        break;
    case K_SEND:
    case K_SENDALL:
    case K_WRITE:
        /* Exactly the filler arrives: nothing of the ended operation. */
        EXPECT_EQ(drain_peer(r, tail), r->filled);
        /* And the fd still sends. */
        EXPECT_EQ(do_op(r, r->k, DL, coil_test_in(5 * COIL_SEC)), OP_LEN);
        EXPECT_EQ(drain_peer(r, tail), OP_LEN);
        EXPECT(memcmp(tail, op_out, OP_LEN) == 0);
        break;
    }
}

/* ---- kill while blocked ------------------------------------------------------ */

struct victim {
    struct res *blocked, *ready;
    enum kind k;
    ssize_t first, again, ready_plain, ready_dl;
    int64_t woke, later_took;
    bool done;
};

static void victim_fn(void *arg) {
    struct victim *v = arg;
    v->first = do_op(v->blocked, v->k, PLAIN, 0);
    v->woke = coil_now();
    v->again = do_op(v->blocked, v->k, PLAIN, 0);
    v->ready_plain = do_op(v->ready, v->k, PLAIN, 0);
    v->ready_dl = do_op(v->ready, v->k, DL, coil_test_in(5 * COIL_SEC));
    v->later_took = coil_now() - v->woke;
    v->done = true;
}

static void kill_main(void *arg) {
    struct victim *v = arg;
    coil_id id = coil_spawn(victim_fn, v, NULL);
    EXPECT_EQ(coil_sleep(50 * COIL_MSEC), 0);
    EXPECT(!v->done);
    int64_t t_kill = coil_now();
    EXPECT_EQ(coil_kill(id), 0);
    EXPECT_EQ(coil_join(id, coil_test_in(5 * COIL_SEC)), 0);
    if (!EXPECT(v->done)) return;
    EXPECT_EQ(v->first, -ECANCELED);
    EXPECT_EQ(v->again, -ECANCELED);
    EXPECT_EQ(v->ready_plain, -ECANCELED);
    EXPECT_EQ(v->ready_dl, -ECANCELED);
    EXPECT(v->woke - t_kill < coil_test_slack());
    EXPECT(v->later_took < coil_test_slack());
    check_ready_untouched(v->ready);
    check_blocked_intact(v->blocked);
}

static void run_kill(enum kind k) {
    struct res blocked, ready;
    assert_true(res_setup(&blocked, k, false));
    assert_true(res_setup(&ready, k, true));
    struct victim v = {.blocked = &blocked, .ready = &ready, .k = k};
    COIL_RUN_CHECKED(kill_main, &v);
    res_close(&blocked);
    res_close(&ready);
}

/* ---- timeouts ------------------------------------------------------------------ */

/* connect: a socket whose connect was ended stays in the middle of its
 * handshake, so every step gets a fresh one. */
static void renew(struct res *r) {
    if (r->k != K_CONNECT) return;
    coil_close(r->fd);
    r->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    EXPECT(r->fd >= 0);
}

struct timeout_case {
    struct res blocked, ready;
    enum kind k;
};

struct timed_op {
    struct res *r;
    enum form form;
    int64_t dl;
    ssize_t rc;
    bool done;
};

static void timed_op_fn(void *arg) {
    struct timed_op *o = arg;
    o->rc = do_op(o->r, o->r->k, o->form, o->dl);
    o->done = true;
}

/* op with a deadline `after` from now (or a passed one if after <= 0):
 * -ETIMEDOUT, not before the deadline and not long after. The op runs in a
 * tasklet of its own, killed if it is still waiting a second after it
 * should have ended, so that a deadline coil ignores fails the test instead
 * of hanging it. */
static void expect_timeout(struct res *r, enum form form, int64_t after, int64_t expect_wait,
                           int line) {
    int64_t t0 = coil_now();
    struct timed_op o = {.r = r, .form = form, .dl = after > 0 ? t0 + after : 1 /* long passed */};
    coil_id id = coil_spawn(timed_op_fn, &o, NULL);
    int64_t limit = t0 + expect_wait + coil_test_slack() + COIL_SEC;
    int joined = coil_join(id, limit);
    int64_t took = coil_now() - t0;
    if (joined == -ETIMEDOUT) {
        coil_kill(id);
        coil_join(id, COIL_FOREVER);
        fprintf(stderr,
                "line %d: %s was still waiting after %lld ms (expected -ETIMEDOUT after %lld ms); "
                "killed: %zd\n",
                line, kind_names[r->k], (long long)(took / COIL_MSEC),
                (long long)(expect_wait / COIL_MSEC), o.rc);
        EXPECT_EQ(joined, 0);
        return;
    }
    if (o.rc != -ETIMEDOUT || took < expect_wait - COIL_MSEC ||
        took > expect_wait + coil_test_slack())
        fprintf(stderr, "line %d: %s returned %zd after %lld us (expected -ETIMEDOUT after %lld)\n",
                line, kind_names[r->k], o.rc, (long long)(took / 1000),
                (long long)(expect_wait / 1000));
    EXPECT_EQ(o.rc, -ETIMEDOUT);
    EXPECT(took >= expect_wait - COIL_MSEC);
    EXPECT(took <= expect_wait + coil_test_slack());
}

static void timeout_dl_main(void *arg) {
    struct timeout_case *t = arg;
    struct res *r = &t->blocked;
    expect_timeout(r, DL, 100 * COIL_MSEC, 100 * COIL_MSEC, __LINE__);
    renew(r);
    expect_timeout(r, DL, 0, 0, __LINE__); /* passed: tries once, does not wait */
    renew(r);
    check_blocked_intact(r);
    /* A passed deadline on a ready resource: the one try succeeds. (A TCP
     * handshake always takes a round trip, so connect is left out.) */
    if (t->k != K_CONNECT) {
        ssize_t rc = do_op(&t->ready, t->k, DL, 1);
        EXPECT(op_succeeded(t->k, rc));
        if (!op_succeeded(t->k, rc))
            fprintf(stderr, "%s on a ready fd with a passed deadline: %zd\n", kind_names[t->k], rc);
    }
}

static void run_timeout_dl(enum kind k) {
    struct timeout_case t = {.k = k};
    assert_true(res_setup(&t.blocked, k, false));
    assert_true(res_setup(&t.ready, k, true));
    COIL_RUN_CHECKED(timeout_dl_main, &t);
    res_close(&t.blocked);
    res_close(&t.ready);
}

struct unlimited {
    struct res *r;
    ssize_t rc;
    bool done;
};

static void unlimited_fn(void *arg) {
    struct unlimited *u = arg;
    u->rc = do_op(u->r, u->r->k, PLAIN, 0);
    u->done = true;
}

static void timeout_set_main(void *arg) {
    struct timeout_case *t = arg;
    struct res *r = &t->blocked;
    EXPECT_EQ(coil_set_timeout(r->fd, 100 * COIL_MSEC), 0);
    expect_timeout(r, PLAIN, -1, 100 * COIL_MSEC, __LINE__);
    renew(r);
    /* The earlier of the fd's timeout and the deadline applies. */
    EXPECT_EQ(coil_set_timeout(r->fd, 100 * COIL_MSEC), 0);
    expect_timeout(r, DL, 5 * COIL_SEC, 100 * COIL_MSEC, __LINE__);
    renew(r);
    EXPECT_EQ(coil_set_timeout(r->fd, 5 * COIL_SEC), 0);
    expect_timeout(r, DL, 100 * COIL_MSEC, 100 * COIL_MSEC, __LINE__);
    renew(r);
    /* 0: do not wait at all. */
    EXPECT_EQ(coil_set_timeout(r->fd, 0), 0);
    expect_timeout(r, PLAIN, -1, 0, __LINE__);
    renew(r);
    /* Negative: no timeout; the call waits until something else ends it. */
    EXPECT_EQ(coil_set_timeout(r->fd, 100 * COIL_MSEC), 0);
    EXPECT_EQ(coil_set_timeout(r->fd, -1), 0);
    struct unlimited u = {.r = r};
    coil_id id = coil_spawn(unlimited_fn, &u, NULL);
    EXPECT_EQ(coil_sleep(300 * COIL_MSEC), 0);
    EXPECT(!u.done);
    EXPECT_EQ(coil_kill(id), 0);
    EXPECT_EQ(coil_join(id, coil_test_in(5 * COIL_SEC)), 0);
    EXPECT_EQ(u.rc, -ECANCELED);
    renew(r);
    check_blocked_intact(r);
    /* The timeout is the fd's: a ready resource is not affected by it. */
    if (t->k != K_CONNECT) {
        EXPECT_EQ(coil_set_timeout(t->ready.fd, 0), 0);
        EXPECT(op_succeeded(t->k, do_op(&t->ready, t->k, PLAIN, 0)));
    }
}

static void run_timeout_set(enum kind k) {
    struct timeout_case t = {.k = k};
    assert_true(res_setup(&t.blocked, k, false));
    assert_true(res_setup(&t.ready, k, true));
    COIL_RUN_CHECKED(timeout_set_main, &t);
    res_close(&t.blocked);
    res_close(&t.ready);
}

/* ---- coil_close wakes every waiter; the number is reused at once --------------- */

struct waiter {
    struct res *r;
    enum kind k;
    ssize_t rc;
    int64_t woke;
    bool done;
};

static void waiter_fn(void *arg) {
    struct waiter *w = arg;
    w->rc = do_op(w->r, w->k, PLAIN, 0);
    w->woke = coil_now();
    w->done = true;
}

struct close_case {
    enum kind k;
    struct res blocked, fresh;
    int nwait;
    enum kind kinds[4];
};

/* Drains the fresh resource's peer so that its waiting send / write ends. */
static void fresh_drainer(void *arg) {
    struct close_case *c = arg;
    uint8_t tail[OP_LEN];
    EXPECT_EQ(drain_peer(&c->fresh, tail), c->fresh.filled + OP_LEN);
    EXPECT(memcmp(tail, op_out, OP_LEN) == 0);
}

static void close_main(void *arg) {
    struct close_case *c = arg;
    struct waiter w[4];
    coil_id ids[4];
    for (int i = 0; i < c->nwait; i++) {
        w[i] = (struct waiter){.r = &c->blocked, .k = c->kinds[i]};
        ids[i] = coil_spawn(waiter_fn, &w[i], NULL);
    }
    EXPECT_EQ(coil_sleep(50 * COIL_MSEC), 0);
    for (int i = 0; i < c->nwait; i++)
        EXPECT(!w[i].done);
    /* A new resource of the same kind, made now (filling a socket takes a
     * while), moved onto the old fd's number right after the close. */
    if (!EXPECT(res_setup(&c->fresh, c->k, c->k == K_CONNECT))) return;
    int old = c->blocked.fd;
    int64_t t_close = coil_now();
    EXPECT_EQ(coil_close(old), 0);
    EXPECT(coil_now() - t_close < coil_test_slack()); /* closing does not park */
    c->blocked.fd = -1;

    /* At once, before the waiters have even run: the new resource takes the
     * number, and an operation on it waits. */
    res_force_fd(&c->fresh, old);
    EXPECT_EQ(c->fresh.fd, old);
    struct waiter fw = {.r = &c->fresh, .k = c->k};
    coil_id fid = coil_spawn(waiter_fn, &fw, NULL);

    for (int i = 0; i < c->nwait; i++) {
        EXPECT_EQ(coil_join(ids[i], coil_test_in(5 * COIL_SEC)), 0);
        if (!EXPECT(w[i].done)) continue;
        if (w[i].rc != -EBADF)
            fprintf(stderr, "waiter %d (%s) returned %zd\n", i, kind_names[w[i].k], w[i].rc);
        EXPECT_EQ(w[i].rc, -EBADF);
        EXPECT(w[i].woke - t_close < coil_test_slack());
    }
    /* The new fd's operation is still waiting: no completion of the old
     * operations (cancelled in the kernel) reached it. */
    EXPECT_EQ(coil_sleep(30 * COIL_MSEC), 0);
    if (c->k != K_CONNECT) EXPECT(!fw.done);
    coil_id drainer = 0;
    if (c->k == K_SEND || c->k == K_SENDALL || c->k == K_WRITE)
        drainer = coil_spawn(fresh_drainer, c, NULL);
    else
        make_ready(&c->fresh);
    EXPECT_EQ(coil_join(fid, coil_test_in(5 * COIL_SEC)), 0);
    if (!op_succeeded(c->k, fw.rc))
        fprintf(stderr, "the new fd's %s returned %zd\n", kind_names[c->k], fw.rc);
    EXPECT(op_succeeded(c->k, fw.rc));
    if (drainer) EXPECT_EQ(coil_join(drainer, coil_test_in(5 * COIL_SEC)), 0);
    if (c->k == K_CONNECT) {
        struct coil_test_addr peer;
        EXPECT_EQ(coil_test_peername(c->fresh.fd, &peer), 0);
        EXPECT(coil_test_same_addr(&peer, &c->fresh.addr));
    }
    /* And the new fd keeps working. */
    if (c->k == K_RECV || c->k == K_READ || c->k == K_RECVFROM) {
        make_ready(&c->fresh);
        EXPECT_EQ(do_op(&c->fresh, c->k, DL, coil_test_in(5 * COIL_SEC)), 5);
    }
}

static void run_close(enum kind k) {
    struct close_case c = {.k = k, .nwait = 3};
    for (int i = 0; i < 4; i++)
        c.kinds[i] = k;
    /* A connecting socket has one connect; two receives wait beside it. */
    if (k == K_CONNECT) c.kinds[1] = c.kinds[2] = K_RECV;
    assert_true(res_setup(&c.blocked, k, false));
    COIL_RUN_CHECKED(close_main, &c);
    res_close(&c.blocked);
    res_close(&c.fresh);
}

/* Receives and sends waiting on one socket (full both ways) all wake. */
static void test_close_wakes_mixed_recv_and_send(void **state) {
    (void)state;
    struct close_case c = {.k = K_SEND, .nwait = 4, .kinds = {K_RECV, K_SEND, K_RECV, K_SENDALL}};
    assert_true(res_setup(&c.blocked, K_SEND, false));
    COIL_RUN_CHECKED(close_main, &c);
    res_close(&c.blocked);
    res_close(&c.fresh);
}

/* ---- a kill racing with completion ----------------------------------------------- */

struct race {
    struct res r;
    int rounds;
    int completed, cancelled;
    size_t taken, left;
};

struct race_victim {
    struct res *r;
    ssize_t rc;
};

static void race_victim_fn(void *arg) {
    struct race_victim *v = arg;
    v->rc = do_op(v->r, v->r->k, PLAIN, 0);
}

static void race_main(void *arg) {
    struct race *rc = arg;
    struct res *r = &rc->r;
    for (int i = 0; i < rc->rounds; i++) {
        struct race_victim v = {.r = r};
        coil_id id = coil_spawn(race_victim_fn, &v, NULL);
        coil_yield(); /* the victim waits in its call now */
        switch (i % 4) {
        case 0: /* data first, then the kill, without yielding between */
            make_ready(r);
            coil_kill(id);
            break;
        case 1: /* the kill first, then the data */
            coil_kill(id);
            make_ready(r);
            break;
        case 2: /* data, a chance for the completion to be reaped, then the kill */
            make_ready(r);
            coil_yield();
            coil_kill(id);
            break;
        default: /* the kill, time for the cancellation to go through, the data */
            coil_kill(id);
            coil_sleep(COIL_MSEC);
            make_ready(r);
            break;
        }
        EXPECT_EQ(coil_join(id, coil_test_in(5 * COIL_SEC)), 0);
        if (op_succeeded(r->k, v.rc)) {
            rc->completed++;
            rc->taken++;
        } else {
            if (!EXPECT_EQ(v.rc, -ECANCELED)) break;
            rc->cancelled++;
        }
        /* Whatever the victim did not take is still there. */
        char buf[16];
        int fd;
        switch (r->k) {
        case K_ACCEPT:
            while ((fd = accept_now(r->fd)) >= 0) {
                close(fd);
                rc->left++;
            }
            break;
        case K_RECVFROM:
            while (recv(r->fd, buf, sizeof buf, MSG_DONTWAIT) == 5)
                rc->left++;
            break;
        default: rc->left += coil_test_drain(r->fd, NULL, 0) / 5; break;
        }
        /* Each round's connections: close them so that fds do not pile up. */
        for (int j = 0; j < r->nmore; j++)
            close(r->more[j]);
        r->nmore = 0;
        if (rc->taken + rc->left != (size_t)i + 1) {
            EXPECT_EQ(rc->taken + rc->left, i + 1);
            break;
        }
    }
}

static void run_race(enum kind k) {
    struct race rc = {.rounds = (int)coil_test_scaled(300, 30)};
    assert_true(res_setup(&rc.r, k, false));
    COIL_RUN_CHECKED(race_main, &rc);
    print_message("%s: %d completed, %d cancelled; %zu taken + %zu left of %d\n", kind_names[k],
                  rc.completed, rc.cancelled, rc.taken, rc.left, rc.rounds);
    assert_int_equal(rc.taken + rc.left, rc.rounds);
    res_close(&rc.r);
}

/* ---- a timeout does not outlive its fd ------------------------------------------- */

struct forgotten {
    int a, b;
    ssize_t rc;
    int64_t took;
};

static void late_sender(void *arg) {
    struct forgotten *f = arg;
    coil_sleep(200 * COIL_MSEC);
    EXPECT_EQ(send(f->b, "late!", 5, MSG_NOSIGNAL), 5);
}

static void forgotten_main(void *arg) {
    struct forgotten *f = arg;
    int old = f->a;
    EXPECT_EQ(coil_set_timeout(old, 50 * COIL_MSEC), 0);
    EXPECT_EQ(coil_close(old), 0);
    close(f->b);
    /* A new socket on the same number has no timeout: it was the old fd's. */
    if (!EXPECT_EQ(coil_test_raw_tcp_pair(AF_INET, &f->a, &f->b), 0)) return;
    if (f->a != old) {
        EXPECT_EQ(dup3(f->a, old, O_CLOEXEC), old);
        close(f->a);
        f->a = old;
    }
    coil_id s = coil_spawn(late_sender, f, NULL);
    char buf[8];
    int64_t t0 = coil_now();
    f->rc = coil_recv(f->a, buf, sizeof buf, 0);
    f->took = coil_now() - t0;
    coil_join(s, COIL_FOREVER);
}

static void test_set_timeout_does_not_outlive_close(void **state) {
    (void)state;
    struct forgotten f;
    assert_int_equal(coil_test_raw_tcp_pair(AF_INET, &f.a, &f.b), 0);
    COIL_RUN_CHECKED(forgotten_main, &f);
    close(f.a);
    close(f.b);
    assert_int_equal(f.rc, 5);
    assert_true(f.took >= 150 * COIL_MSEC);
}

/* ---- the tests, one per call and scenario ------------------------------------------ */

#define PER_KIND(scenario)                                                                         \
    static void test_##scenario##_accept(void **s) {                                               \
        (void)s;                                                                                   \
        run_##scenario(K_ACCEPT);                                                                  \
    }                                                                                              \
    static void test_##scenario##_connect(void **s) {                                              \
        (void)s;                                                                                   \
        run_##scenario(K_CONNECT);                                                                 \
    }                                                                                              \
    static void test_##scenario##_recv(void **s) {                                                 \
        (void)s;                                                                                   \
        run_##scenario(K_RECV);                                                                    \
    }                                                                                              \
    static void test_##scenario##_send_full(void **s) {                                            \
        (void)s;                                                                                   \
        run_##scenario(K_SEND);                                                                    \
    }                                                                                              \
    static void test_##scenario##_sendall_full(void **s) {                                         \
        (void)s;                                                                                   \
        run_##scenario(K_SENDALL);                                                                 \
    }                                                                                              \
    static void test_##scenario##_recvfrom(void **s) {                                             \
        (void)s;                                                                                   \
        run_##scenario(K_RECVFROM);                                                                \
    }                                                                                              \
    static void test_##scenario##_read_pipe(void **s) {                                            \
        (void)s;                                                                                   \
        run_##scenario(K_READ);                                                                    \
    }                                                                                              \
    static void test_##scenario##_write_full_pipe(void **s) {                                      \
        (void)s;                                                                                   \
        run_##scenario(K_WRITE);                                                                   \
    }

PER_KIND(kill)
PER_KIND(timeout_dl)
PER_KIND(timeout_set)
PER_KIND(close)

#define KIND_TESTS(scenario)                                                                       \
    cmocka_unit_test(test_##scenario##_accept), cmocka_unit_test(test_##scenario##_connect),       \
        cmocka_unit_test(test_##scenario##_recv), cmocka_unit_test(test_##scenario##_send_full),   \
        cmocka_unit_test(test_##scenario##_sendall_full),                                          \
        cmocka_unit_test(test_##scenario##_recvfrom),                                              \
        cmocka_unit_test(test_##scenario##_read_pipe),                                             \
        cmocka_unit_test(test_##scenario##_write_full_pipe)

static void test_kill_race_recv(void **state) {
    (void)state;
    run_race(K_RECV);
}

static void test_kill_race_read_pipe(void **state) {
    (void)state;
    run_race(K_READ);
}

static void test_kill_race_recvfrom(void **state) {
    (void)state;
    run_race(K_RECVFROM);
}

static void test_kill_race_accept(void **state) {
    (void)state;
    run_race(K_ACCEPT);
}

int main(void) {

    coil_test_apply_filter();
    coil_test_pattern_fill(op_out, OP_LEN, 99, 0);
    const struct CMUnitTest tests[] = {
        KIND_TESTS(kill),
        KIND_TESTS(timeout_dl),
        KIND_TESTS(timeout_set),
        KIND_TESTS(close),
        cmocka_unit_test(test_close_wakes_mixed_recv_and_send),
        cmocka_unit_test(test_kill_race_recv),
        cmocka_unit_test(test_kill_race_read_pipe),
        cmocka_unit_test(test_kill_race_recvfrom),
        cmocka_unit_test(test_kill_race_accept),
        cmocka_unit_test(test_set_timeout_does_not_outlive_close),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
