/* Names and the offload pool: coil_dial to a local listener by "127.0.0.1",
 * "localhost" and "::1" (TCP, and UDP); a refused port (-ECONNREFUSED), an
 * unknown name (-ENOENT, or -EAGAIN when no resolver answers), bad arguments
 * (-EINVAL), a deadline (-ETIMEDOUT) and a kill (-ECANCELED) while
 * connecting, and before dialling or listening on a literal (which resolves
 * without the pool; -EPERM outside coil_run); coil_listen_on(NULL, "0", ...) (every address, IPv6
 * and IPv4, SO_REUSEADDR) and on a loopback address, -EADDRINUSE; coil_listen_on_flags with
 * COIL_LISTEN_REUSEPORT (two listeners on one port share its connections; -EADDRINUSE against a
 * listener without the flag, either way round; -EINVAL for another flag); coil_offload: fn's
 * result, on another thread while the scheduler goes on, many at once (a burst runs on more than
 * one worker), a kill while fn runs (the call still returns fn's result, the next call is
 * -ECANCELED and does not run fn), the same when SIGINT ends coil_run, from two schedulers at once.
 * A literal address is listened on and dialled while every worker of the pool is held by a job that
 * waits until the calls are done (they resolve without it).
 *
 * Only loopback addresses are connected to. The unknown name is under the
 * reserved .invalid top-level domain (RFC 6761), so no resolver can know it:
 * the lookup reads /etc/hosts and may ask the DNS servers of
 * /etc/resolv.conf; RES_OPTIONS (unless already set) bounds how long that
 * takes when none answers. */
#define _GNU_SOURCE
// coil-test: tsan (names are resolved on the offload pool's workers)
#include "coil_test.h"

#include <pthread.h>
#include <stdatomic.h>

static void port_string(const struct coil_test_addr *a, char *out, size_t cap) {
    snprintf(out, cap, "%u", (unsigned)coil_test_port(a));
}

/* ---- coil_dial ---------------------------------------------------------------- */

struct dial {
    const char *host;
    int type;
    int listener; /* TCP listener or UDP socket, bound to a loopback address */
    struct coil_test_addr bound;
    int fd;
    struct coil_test_addr peer; /* what the dialled fd is connected to */
    bool exchanged;
};

static void dial_server(void *arg) {
    struct dial *d = arg;
    int fd = coil_accept_dl(d->listener, NULL, NULL, coil_test_in(10 * COIL_SEC));
    if (!EXPECT(fd >= 0)) return;
    char buf[8];
    EXPECT_EQ(coil_test_recv_all(fd, buf, 4, coil_test_in(10 * COIL_SEC), NULL), 4);
    EXPECT_EQ(coil_sendall(fd, buf, 4, 0, COIL_FOREVER), 4);
    EXPECT_EQ(coil_close(fd), 0);
}

static void dial_main(void *arg) {
    struct dial *d = arg;
    char port[16];
    port_string(&d->bound, port, sizeof port);
    coil_id s = 0;
    if (d->type == SOCK_STREAM) s = coil_spawn(dial_server, d, NULL);
    d->fd = coil_dial(d->host, port, d->type, coil_test_in(10 * COIL_SEC));
    if (!EXPECT(d->fd >= 0)) {
        fprintf(stderr, "coil_dial(\"%s\", \"%s\") returned %d\n", d->host, port, d->fd);
        if (s) coil_kill(s);
        return;
    }
    int fl = fcntl(d->fd, F_GETFD);
    EXPECT(fl >= 0 && (fl & FD_CLOEXEC));
    EXPECT_EQ(coil_test_peername(d->fd, &d->peer), 0);
    char buf[8];
    if (d->type == SOCK_STREAM) {
        EXPECT_EQ(coil_send(d->fd, "ping", 4, 0), 4);
        d->exchanged =
            EXPECT_EQ(coil_test_recv_all(d->fd, buf, 4, coil_test_in(10 * COIL_SEC), NULL), 4) &&
            EXPECT(memcmp(buf, "ping", 4) == 0);
        EXPECT_EQ(coil_join(s, coil_test_in(10 * COIL_SEC)), 0);
    } else {
        EXPECT_EQ(coil_send(d->fd, "dgrm", 4, 0), 4);
        struct coil_test_addr from, mine;
        from.len = sizeof from.ss;
        EXPECT_EQ(coil_recvfrom(d->listener, buf, sizeof buf, 0, COIL_TEST_SA(&from), &from.len,
                                coil_test_in(10 * COIL_SEC)),
                  4);
        EXPECT_EQ(coil_test_sockname(d->fd, &mine), 0);
        d->exchanged =
            EXPECT(memcmp(buf, "dgrm", 4) == 0) && EXPECT(coil_test_same_addr(&from, &mine));
    }
    EXPECT_EQ(coil_close(d->fd), 0);
}

static void run_dial(const char *host, int family, int type) {
    struct dial d = {.host = host, .type = type};
    d.listener = coil_test_raw_bound(family, type, 16, &d.bound);
    assert_true(d.listener >= 0);
    COIL_RUN_CHECKED(dial_main, &d);
    close(d.listener);
    assert_true(d.exchanged);
    assert_true(coil_test_same_addr(&d.peer, &d.bound));
}

static void test_dial_ipv4_literal(void **state) {
    (void)state;
    run_dial("127.0.0.1", AF_INET, SOCK_STREAM);
}

/* "localhost" may resolve to ::1 and 127.0.0.1 in either order; the listener
 * is on 127.0.0.1 only, so coil_dial may have to try the next address. */
static void test_dial_localhost(void **state) {
    (void)state;
    if (coil_test_under_valgrind()) skip(); /* see valgrind_and_the_resolver below */
    run_dial("localhost", AF_INET, SOCK_STREAM);
}

static void test_dial_ipv6_literal(void **state) {
    (void)state;
    if (!coil_test_have_ipv6()) skip();
    run_dial("::1", AF_INET6, SOCK_STREAM);
}

static void test_dial_udp(void **state) {
    (void)state;
    run_dial("127.0.0.1", AF_INET, SOCK_DGRAM);
}

/* The errors of coil_dial. */
struct dial_errors {
    int refused;
    int null_host, null_service, bad_type0, bad_type_raw, bad_type_seq;
    /* Literals, which resolve without the pool: the listen fails because
     * the resolve checks for the kill (bind and listen do not park); the
     * dial would fail at its connect anyway. */
    int killed_dial, killed_listen;
};

static void dial_errors_main(void *arg) {
    struct dial_errors *e = arg;
    struct coil_test_addr a;
    int quiet = coil_test_raw_bound(AF_INET, SOCK_STREAM, -1, &a); /* bound, not listening */
    if (!EXPECT(quiet >= 0)) return;
    char port[16];
    port_string(&a, port, sizeof port);
    int64_t dl = coil_test_in(30 * COIL_SEC);
    e->refused = coil_dial("127.0.0.1", port, SOCK_STREAM, dl);
    coil_close(quiet);
    e->null_host = coil_dial(NULL, "80", SOCK_STREAM, dl);
    e->null_service = coil_dial("127.0.0.1", NULL, SOCK_STREAM, dl);
    e->bad_type0 = coil_dial("127.0.0.1", "80", 0, dl);
    e->bad_type_raw = coil_dial("127.0.0.1", "80", SOCK_RAW, dl);
    e->bad_type_seq = coil_dial("127.0.0.1", "80", SOCK_SEQPACKET, dl);
    EXPECT_EQ(coil_kill(coil_self()), 0);
    e->killed_dial = coil_dial("127.0.0.1", "80", SOCK_STREAM, dl);
    e->killed_listen = coil_listen_on("127.0.0.1", "0", 16);
}

static void test_dial_errors(void **state) {
    (void)state;
    struct dial_errors e;
    memset(&e, 0x55, sizeof e);
    COIL_RUN_CHECKED(dial_errors_main, &e);
    assert_int_equal(e.refused, -ECONNREFUSED);
    assert_int_equal(e.null_host, -EINVAL);
    assert_int_equal(e.null_service, -EINVAL);
    assert_int_equal(e.bad_type0, -EINVAL);
    assert_int_equal(e.bad_type_raw, -EINVAL);
    assert_int_equal(e.bad_type_seq, -EINVAL);
    assert_int_equal(e.killed_dial, -ECANCELED);
    assert_int_equal(e.killed_listen, -ECANCELED);
    /* Outside coil_run. */
    assert_int_equal(coil_dial("127.0.0.1", "80", SOCK_STREAM, COIL_FOREVER), -EPERM);
    assert_int_equal(coil_listen_on("127.0.0.1", "0", 16), -EPERM);
}

/* A name nobody can resolve. */
struct unknown_name {
    int dial_rc, listen_rc;
    int64_t took;
};

static void unknown_name_main(void *arg) {
    struct unknown_name *u = arg;
    int64_t t0 = coil_now();
    u->dial_rc = coil_dial("nonexistent.invalid", "80", SOCK_STREAM, coil_test_in(30 * COIL_SEC));
    u->took = coil_now() - t0;
    u->listen_rc = coil_listen_on("nonexistent.invalid", "0", 4);
}

static void test_dial_unknown_name(void **state) {
    (void)state;
    if (coil_test_under_valgrind()) skip(); /* see valgrind_and_the_resolver below */
    struct unknown_name u;
    COIL_RUN_CHECKED(unknown_name_main, &u);
    print_message("nonexistent.invalid: %d (%s) after %lld ms\n", u.dial_rc,
                  u.dial_rc == -ENOENT   ? "ENOENT"
                  : u.dial_rc == -EAGAIN ? "EAGAIN"
                                         : "?",
                  (long long)(u.took / COIL_MSEC));
    /* -ENOENT: the resolver answered that the name does not exist; -EAGAIN:
     * no resolver could be reached (no DNS configured or answering), which
     * getaddrinfo reports as a temporary failure (EAI_AGAIN). */
    assert_true(u.dial_rc == -ENOENT || u.dial_rc == -EAGAIN);
    assert_true(u.listen_rc == -ENOENT || u.listen_rc == -EAGAIN);
}

/* A deadline, and a kill, while the connect waits (the accept queue is full). */
struct dial_wait {
    struct coil_test_addr a;
    int timed_rc, killed_rc, after_kill_rc;
    int64_t timed_took, killed_took, spawned_at;
    bool killed_done;
};

static void dial_victim(void *arg) {
    struct dial_wait *w = arg;
    char port[16];
    port_string(&w->a, port, sizeof port);
    w->killed_rc = coil_dial("127.0.0.1", port, SOCK_STREAM, COIL_FOREVER);
    /* From the spawn, not from this tasklet's first run: the kill comes 200 ms
     * after the spawn, and the victim may start a few ms late (Valgrind). */
    w->killed_took = coil_now() - w->spawned_at;
    w->after_kill_rc = coil_dial("127.0.0.1", port, SOCK_STREAM, COIL_FOREVER);
    w->killed_done = true;
}

static void dial_wait_main(void *arg) {
    struct dial_wait *w = arg;
    char port[16];
    port_string(&w->a, port, sizeof port);
    int64_t t0 = coil_now();
    w->timed_rc = coil_dial("127.0.0.1", port, SOCK_STREAM, t0 + 300 * COIL_MSEC);
    w->timed_took = coil_now() - t0;
    w->spawned_at = coil_now();
    coil_id v = coil_spawn(dial_victim, w, NULL);
    EXPECT_EQ(coil_sleep(200 * COIL_MSEC), 0);
    EXPECT(!w->killed_done);
    EXPECT_EQ(coil_kill(v), 0);
    EXPECT_EQ(coil_join(v, coil_test_in(5 * COIL_SEC)), 0);
}

static void test_dial_deadline_and_kill(void **state) {
    (void)state;
    int fillers[16], n;
    struct dial_wait w = {0};
    int l = coil_test_full_backlog_listener(&w.a, fillers, 16, &n);
    if (l == -EAGAIN) skip();
    assert_true(l >= 0);
    COIL_RUN_CHECKED(dial_wait_main, &w);
    for (int i = 0; i < n; i++)
        close(fillers[i]);
    close(l);
    assert_int_equal(w.timed_rc, -ETIMEDOUT);
    assert_true(w.timed_took >= 299 * COIL_MSEC);
    assert_true(w.timed_took < 300 * COIL_MSEC + coil_test_slack());
    assert_true(w.killed_done);
    assert_int_equal(w.killed_rc, -ECANCELED);
    assert_true(w.killed_took >= 199 * COIL_MSEC);
    assert_true(w.killed_took < 200 * COIL_MSEC + coil_test_slack());
    assert_int_equal(w.after_kill_rc, -ECANCELED);
}

/* ---- coil_listen_on --------------------------------------------------------------- */

struct listen_on {
    int any, v4, v6;
    struct coil_test_addr any_addr, v4_addr, v6_addr;
    int reuse;
    int in_use_rc, null_service_rc;
    int connected_v4, connected_v6;
    /* COIL_LISTEN_REUSEPORT */
    int rp[2], rp_opt;
    uint16_t rp_port[2];
    int rp_accepted[2];
    int plain_on_rp_rc, rp_on_plain_rc, bad_flags_rc, neg_flags_rc;
};

/* Connections to port (32 of them) reach the two SO_REUSEPORT listeners of
 * l, which take what the kernel gave each. */
static void share_port(struct listen_on *l, uint16_t port) {
    enum { N = 32 };
    int c[N];
    struct coil_test_addr to;
    coil_test_loopback(&to, AF_INET, port);
    for (int i = 0; i < N; i++) {
        c[i] = coil_socket(AF_INET, SOCK_STREAM, 0);
        EXPECT_EQ(coil_connect(c[i], COIL_TEST_SA(&to), to.len), 0);
    }
    /* Both queues are full by now (loopback's handshake ends in connect):
     * a passed deadline takes what is there, without waiting. */
    int64_t until = coil_test_in(5 * COIL_SEC);
    while (l->rp_accepted[0] + l->rp_accepted[1] < N && coil_now() < until) {
        for (int k = 0; k < 2; k++) {
            int s = coil_accept_dl(l->rp[k], NULL, NULL, 0);
            if (s >= 0) {
                l->rp_accepted[k]++;
                coil_close(s);
            } else if (!EXPECT_EQ(s, -ETIMEDOUT)) {
                until = 0;
            }
        }
    }
    for (int i = 0; i < N; i++)
        coil_close(c[i]);
}

static void listen_on_reuseport(struct listen_on *l) {
    l->rp[0] = coil_listen_on_flags("127.0.0.1", "0", 64, COIL_LISTEN_REUSEPORT);
    if (!EXPECT(l->rp[0] >= 0)) return;
    struct coil_test_addr a;
    EXPECT_EQ(coil_test_sockname(l->rp[0], &a), 0);
    l->rp_port[0] = coil_test_port(&a);
    char p[16];
    port_string(&a, p, sizeof p);
    socklen_t len = sizeof l->rp_opt;
    EXPECT_EQ(getsockopt(l->rp[0], SOL_SOCKET, SO_REUSEPORT, &l->rp_opt, &len), 0);
    l->rp[1] = coil_listen_on_flags("127.0.0.1", p, 64, COIL_LISTEN_REUSEPORT);
    if (EXPECT(l->rp[1] >= 0)) {
        EXPECT_EQ(coil_test_sockname(l->rp[1], &a), 0);
        l->rp_port[1] = coil_test_port(&a);
        /* Without the flag, the port is taken. */
        l->plain_on_rp_rc = coil_listen_on("127.0.0.1", p, 16);
        share_port(l, l->rp_port[0]);
        coil_close(l->rp[1]);
    }
    coil_close(l->rp[0]);
    /* And the other way round: a listener without the flag holds its port. */
    int plain = coil_listen_on("127.0.0.1", "0", 16);
    if (!EXPECT(plain >= 0)) return;
    EXPECT_EQ(coil_test_sockname(plain, &a), 0);
    port_string(&a, p, sizeof p);
    l->rp_on_plain_rc = coil_listen_on_flags("127.0.0.1", p, 16, COIL_LISTEN_REUSEPORT);
    coil_close(plain);
    l->bad_flags_rc = coil_listen_on_flags("127.0.0.1", "0", 16, 2);
    l->neg_flags_rc = coil_listen_on_flags("127.0.0.1", "0", 16, -1);
}

static void connect_and_accept(int listener, int family, uint16_t port, int *ok) {
    struct coil_test_addr to;
    coil_test_loopback(&to, family, port);
    int c = coil_socket(family, SOCK_STREAM, 0);
    int rc = coil_connect(c, COIL_TEST_SA(&to), to.len);
    int s = coil_accept_dl(listener, NULL, NULL, coil_test_in(5 * COIL_SEC));
    if (rc == 0 && s >= 0) {
        EXPECT_EQ(coil_send(c, "k", 1, 0), 1);
        char b = 0;
        EXPECT_EQ(coil_recv(s, &b, 1, 0), 1);
        *ok = b == 'k';
    } else {
        fprintf(stderr, "connect to port %u over %s: %d, accept: %d\n", port,
                family == AF_INET6 ? "::1" : "127.0.0.1", rc, s);
    }
    if (s >= 0) coil_close(s);
    coil_close(c);
}

static void listen_on_main(void *arg) {
    struct listen_on *l = arg;
    l->any = coil_listen_on(NULL, "0", 16);
    if (!EXPECT(l->any >= 0)) return;
    EXPECT_EQ(coil_test_sockname(l->any, &l->any_addr), 0);
    socklen_t len = sizeof l->reuse;
    EXPECT_EQ(getsockopt(l->any, SOL_SOCKET, SO_REUSEADDR, &l->reuse, &len), 0);
    uint16_t port = coil_test_port(&l->any_addr);
    /* Every address: both loopbacks reach it. */
    connect_and_accept(l->any, AF_INET, port, &l->connected_v4);
    if (coil_test_have_ipv6()) connect_and_accept(l->any, AF_INET6, port, &l->connected_v6);
    EXPECT_EQ(coil_close(l->any), 0);

    l->v4 = coil_listen_on("127.0.0.1", "0", 16);
    if (!EXPECT(l->v4 >= 0)) return;
    EXPECT_EQ(coil_test_sockname(l->v4, &l->v4_addr), 0);
    char p[16];
    port_string(&l->v4_addr, p, sizeof p);
    /* A failed listen_on releases the socket it made (the lowest free
     * number is free again) and leaves errno alone. */
    int lowest = dup(0);
    close(lowest);
    errno = 1234;
    l->in_use_rc = coil_listen_on("127.0.0.1", p, 16);
    EXPECT_EQ(errno, 1234);
    int after = dup(0);
    EXPECT_EQ(after, lowest);
    close(after);
    EXPECT_EQ(coil_close(l->v4), 0);
    if (coil_test_have_ipv6()) {
        l->v6 = coil_listen_on("::1", "0", 16);
        if (EXPECT(l->v6 >= 0)) {
            EXPECT_EQ(coil_test_sockname(l->v6, &l->v6_addr), 0);
            EXPECT_EQ(coil_close(l->v6), 0);
        }
    }
    l->null_service_rc = coil_listen_on("127.0.0.1", NULL, 16);
    listen_on_reuseport(l);
}

static void test_listen_on(void **state) {
    (void)state;
    struct listen_on l = {0};
    COIL_RUN_CHECKED(listen_on_main, &l);
    assert_true(l.any_addr.ss.ss_family == AF_INET6 || l.any_addr.ss.ss_family == AF_INET);
    assert_true(coil_test_port(&l.any_addr) != 0);
    assert_int_equal(l.reuse, 1);
    assert_true(l.connected_v4);
    if (coil_test_have_ipv6()) {
        assert_int_equal(l.any_addr.ss.ss_family, AF_INET6);
        assert_true(l.connected_v6);
        assert_true(coil_test_is_loopback(&l.v6_addr));
        assert_true(coil_test_port(&l.v6_addr) != 0);
    }
    assert_true(coil_test_is_loopback(&l.v4_addr));
    assert_true(coil_test_port(&l.v4_addr) != 0);
    assert_int_equal(l.in_use_rc, -EADDRINUSE);
    assert_int_equal(l.null_service_rc, -EINVAL);
    /* COIL_LISTEN_REUSEPORT: one port, two listeners, each given some of
     * the 32 connections (all to one: a chance of 2^-31). */
    assert_int_equal(l.rp_opt, 1);
    assert_true(l.rp_port[0] != 0);
    assert_int_equal(l.rp_port[1], l.rp_port[0]);
    assert_int_equal(l.rp_accepted[0] + l.rp_accepted[1], 32);
    assert_true(l.rp_accepted[0] > 0 && l.rp_accepted[1] > 0);
    assert_int_equal(l.plain_on_rp_rc, -EADDRINUSE);
    assert_int_equal(l.rp_on_plain_rc, -EADDRINUSE);
    assert_int_equal(l.bad_flags_rc, -EINVAL);
    assert_int_equal(l.neg_flags_rc, -EINVAL);
}

/* ---- coil_offload --------------------------------------------------------------- */

struct job {
    int value;
    int64_t sleep_ns;
    pthread_t ran_on;
    atomic_int ran;
    atomic_bool finished;
};

static int job_fn(void *arg) {
    struct job *j = arg;
    atomic_fetch_add(&j->ran, 1);
    j->ran_on = pthread_self();
    if (j->sleep_ns > 0) {
        struct timespec ts = {j->sleep_ns / COIL_SEC, j->sleep_ns % COIL_SEC};
        while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
        }
    }
    atomic_store(&j->finished, true);
    return j->value;
}

struct offload_basic {
    pthread_t scheduler;
    struct job j42, jneg, jslow;
    int r42, rneg, rslow, rnull;
    long ticks_during_slow;
};

static void offload_basic_main(void *arg) {
    struct offload_basic *o = arg;
    o->scheduler = pthread_self();
    o->r42 = coil_offload(job_fn, &o->j42);
    o->rneg = coil_offload(job_fn, &o->jneg);
    o->rnull = coil_offload(NULL, NULL);
    /* The scheduler goes on while fn sleeps on its worker. */
    struct coil_test_ticker ticker = {0};
    coil_id t = coil_spawn(coil_test_ticker_fn, &ticker, NULL);
    o->rslow = coil_offload(job_fn, &o->jslow);
    o->ticks_during_slow = ticker.ticks;
    ticker.stop = true;
    coil_join(t, COIL_FOREVER);
}

static void test_offload_result_and_thread(void **state) {
    (void)state;
    struct offload_basic o;
    memset(&o, 0, sizeof o);
    o.j42.value = 42;
    o.jneg.value = -7;
    o.jslow.value = 5;
    o.jslow.sleep_ns = 100 * COIL_MSEC;
    COIL_RUN_CHECKED(offload_basic_main, &o);
    assert_int_equal(o.r42, 42);
    assert_int_equal(o.rneg, -7); /* fn's result, whatever it is */
    assert_int_equal(o.rslow, 5);
    assert_int_equal(o.rnull, -EINVAL);
    assert_int_equal(atomic_load(&o.j42.ran), 1);
    assert_false(pthread_equal(o.j42.ran_on, o.scheduler));
    assert_false(pthread_equal(o.jslow.ran_on, o.scheduler));
    assert_true(o.ticks_during_slow > 3);
}

/* Many at once. */
struct offload_many {
    int n;
    struct job *jobs;
    int *results;
    int64_t took;
};

struct offload_one {
    struct offload_many *m;
    int i;
};

static void offload_one_fn(void *arg) {
    struct offload_one *x = arg;
    x->m->results[x->i] = coil_offload(job_fn, &x->m->jobs[x->i]);
}

static void offload_many_main(void *arg) {
    struct offload_many *m = arg;
    struct offload_one *xs = calloc((size_t)m->n, sizeof *xs);
    coil_id *ids = calloc((size_t)m->n, sizeof *ids);
    if (!EXPECT(xs && ids)) return;
    int64_t t0 = coil_now();
    for (int i = 0; i < m->n; i++) {
        xs[i] = (struct offload_one){.m = m, .i = i};
        ids[i] = coil_spawn(offload_one_fn, &xs[i], NULL);
    }
    for (int i = 0; i < m->n; i++)
        EXPECT_EQ(coil_join(ids[i], coil_test_in(60 * COIL_SEC)), 0);
    m->took = coil_now() - t0;
    free(xs);
    free(ids);
}

static void test_offload_many_concurrent(void **state) {
    (void)state;
    struct offload_many m = {.n = (int)coil_test_scaled(300, 30)};
    m.jobs = calloc((size_t)m.n, sizeof *m.jobs);
    m.results = calloc((size_t)m.n, sizeof *m.results);
    assert_non_null(m.jobs);
    assert_non_null(m.results);
    for (int i = 0; i < m.n; i++) {
        m.jobs[i].value = i * 3 + 1;
        m.jobs[i].sleep_ns = 2 * COIL_MSEC;
    }
    COIL_RUN_CHECKED(offload_many_main, &m);
    pthread_t threads[64];
    int nthreads = 0;
    for (int i = 0; i < m.n; i++) {
        assert_int_equal(m.results[i], i * 3 + 1);
        assert_int_equal(atomic_load(&m.jobs[i].ran), 1);
        bool seen = false;
        for (int t = 0; t < nthreads; t++)
            seen = seen || pthread_equal(threads[t], m.jobs[i].ran_on);
        if (!seen && nthreads < 64) threads[nthreads++] = m.jobs[i].ran_on;
    }
    print_message("%d offloads of 2 ms each in %lld ms on %d worker thread(s)\n", m.n,
                  (long long)(m.took / COIL_MSEC), nthreads);
    free(m.jobs);
    free(m.results);
}

/* A burst of offloads, all made before any worker has picked one up, runs
 * on more than one of the "few worker threads": a slow fn does not hold up
 * every call queued behind it (coil_dial's name lookups among them). It
 * comes before every other offload of this process, so that the pool starts
 * empty: after one offload alone, it has one idle worker, and the burst must
 * not queue everything behind it. */
static atomic_int burst_running, burst_max;

static int burst_fn(void *arg) {
    (void)arg;
    int now = atomic_fetch_add(&burst_running, 1) + 1;
    int max = atomic_load(&burst_max);
    while (now > max && !atomic_compare_exchange_weak(&burst_max, &max, now)) {
    }
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
    atomic_fetch_sub(&burst_running, 1);
    return 1;
}

static void burst_one(void *arg) {
    int *ok = arg;
    if (coil_offload(burst_fn, NULL) == 1) (*ok)++;
}

static void burst_main(void *arg) {
    /* One offload alone first, so that the pool has a worker, idle now. */
    int warm = 0;
    burst_one(&warm);
    EXPECT_EQ(warm, 1);
    EXPECT_EQ(coil_sleep(20 * COIL_MSEC), 0);
    coil_id ids[8];
    for (int i = 0; i < 8; i++)
        ids[i] = coil_spawn(burst_one, arg, NULL);
    for (int i = 0; i < 8; i++)
        EXPECT_EQ(coil_join(ids[i], coil_test_in(10 * COIL_SEC)), 0);
}

static void test_offload_burst_runs_in_parallel(void **state) {
    (void)state;
    int ok = 0;
    atomic_store(&burst_running, 0);
    atomic_store(&burst_max, 0);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    COIL_RUN_CHECKED(burst_main, &ok);
    int64_t ms = coil_test_ms_since(&t0);
    print_message("8 offloads of 50 ms at once: %lld ms, at most %d running together\n",
                  (long long)ms, atomic_load(&burst_max));
    assert_int_equal(ok, 8);
    assert_true(atomic_load(&burst_max) >= 2);
}

/* A kill while fn runs: the call still waits for fn and returns its result;
 * the next call returns -ECANCELED without running fn. Killed before the
 * call: -ECANCELED, fn never runs. */
struct offload_kill {
    struct job slow, next, never;
    int slow_rc, next_rc, never_rc;
    bool finished_at_return;
    int64_t slow_took;
    bool done, early_done;
};

static void offload_victim(void *arg) {
    struct offload_kill *k = arg;
    int64_t t0 = coil_now();
    k->slow_rc = coil_offload(job_fn, &k->slow);
    k->slow_took = coil_now() - t0;
    k->finished_at_return = atomic_load(&k->slow.finished);
    k->next_rc = coil_offload(job_fn, &k->next);
    k->done = true;
}

static void offload_early_victim(void *arg) {
    struct offload_kill *k = arg;
    k->never_rc = coil_offload(job_fn, &k->never);
    k->early_done = true;
}

static void offload_kill_main(void *arg) {
    struct offload_kill *k = arg;
    coil_id v = coil_spawn(offload_victim, k, NULL);
    EXPECT_EQ(coil_sleep(50 * COIL_MSEC), 0);
    EXPECT(!k->done);
    EXPECT_EQ(coil_kill(v), 0);
    EXPECT_EQ(coil_join(v, coil_test_in(10 * COIL_SEC)), 0);
    /* killed before it ever runs */
    coil_id e = coil_spawn(offload_early_victim, k, NULL);
    EXPECT_EQ(coil_kill(e), 0);
    EXPECT_EQ(coil_join(e, coil_test_in(10 * COIL_SEC)), 0);
}

static void test_offload_kill_while_running(void **state) {
    (void)state;
    struct offload_kill k;
    memset(&k, 0, sizeof k);
    k.slow.value = 77;
    k.slow.sleep_ns = 200 * COIL_MSEC;
    k.next.value = 1;
    k.never.value = 2;
    COIL_RUN_CHECKED(offload_kill_main, &k);
    assert_true(k.done);
    assert_int_equal(k.slow_rc, 77);
    assert_true(k.finished_at_return);
    assert_true(k.slow_took >= 199 * COIL_MSEC);
    assert_int_equal(k.next_rc, -ECANCELED);
    assert_int_equal(atomic_load(&k.next.ran), 0);
    assert_true(k.early_done);
    assert_int_equal(k.never_rc, -ECANCELED);
    assert_int_equal(atomic_load(&k.never.ran), 0);
}

/* SIGINT while a tasklet waits for its offloaded fn: coil_run cancels
 * everything, but that call still waits for fn and returns its result; the
 * next call is -ECANCELED. Runs in a child, which gets the signal; it is the
 * first test of the file, as the child needs an offload pool of its own: the
 * workers of the parent's pool do not survive fork(2), and the copied pool
 * would wait for them (see the note above main). */
static struct offload_kill sigint_k;

static void sigint_offloader(void *arg) {
    (void)arg;
    offload_victim(&sigint_k);
}

static void sigint_main(void *arg) {
    (void)arg;
    coil_spawn(sigint_offloader, NULL, NULL);
    coil_sleep(50 * COIL_MSEC);
    fprintf(stderr, "ready\n");
    fflush(stderr);
    int rc = coil_sleep(10 * COIL_SEC);
    fprintf(stderr, "main's sleep: %d\n", rc);
}

static void sigint_child(void *arg) {
    (void)arg;
    signal(SIGINT, SIG_DFL);
    memset(&sigint_k, 0, sizeof sigint_k);
    sigint_k.slow.value = 77;
    sigint_k.slow.sleep_ns = 400 * COIL_MSEC;
    sigint_k.next.value = 1;
    int rc = coil_run(sigint_main, NULL);
    fprintf(stderr, "coil_run=%d offload=%d finished_at_return=%d took_ms=%lld next=%d ran=%d\n",
            rc, sigint_k.slow_rc, sigint_k.finished_at_return,
            (long long)(sigint_k.slow_took / COIL_MSEC), sigint_k.next_rc,
            atomic_load(&sigint_k.next.ran));
    bool ok = rc == -EINTR && sigint_k.slow_rc == 77 && sigint_k.finished_at_return &&
              sigint_k.next_rc == -ECANCELED && atomic_load(&sigint_k.next.ran) == 0;
    _exit(ok ? 0 : 1);
}

static void test_offload_sigint_waits_for_fn(void **state) {
    (void)state;
    struct coil_test_child c;
    bool ready = coil_test_child_signal_at(&c, sigint_child, NULL, "ready", SIGINT);
    if (!ready || !coil_test_child_exited(&c, 0)) {
        coil_test_child_describe(&c);
        coil_test_child_free(&c);
        fail_msg("SIGINT during an offload did not end as expected");
    }
    coil_test_child_free(&c);
}

/* Two schedulers, on two threads, offloading at the same time. */
struct sched_thread {
    int base;
    int n;
    int wrong;
    int run_rc;
};

static void offload_sum_one(void *arg) {
    struct sched_thread *s = arg;
    struct job j;
    memset(&j, 0, sizeof j);
    j.value = s->base + (int)coil_self();
    j.sleep_ns = COIL_MSEC;
    if (coil_offload(job_fn, &j) != j.value) s->wrong++;
}

static void sched_thread_main(void *arg) {
    struct sched_thread *s = arg;
    for (int i = 0; i < s->n; i++)
        coil_spawn(offload_sum_one, s, NULL);
}

static void *sched_thread_body(void *arg) {
    struct sched_thread *s = arg;
    s->run_rc = coil_run(sched_thread_main, s);
    return NULL;
}

static void test_offload_from_two_schedulers(void **state) {
    (void)state;
    struct sched_thread s[2] = {{.base = 1000, .n = 50}, {.base = 5000, .n = 50}};
    pthread_t t[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&t[i], NULL, sched_thread_body, &s[i]), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(s[i].run_rc, 0);
        assert_int_equal(s[i].wrong, 0);
    }
}

/* Order: the first two tests need an offload pool that has not been used
 * (the first forks, and after fork(2) the child has the parent's pool
 * bookkeeping but none of its worker threads; the second counts workers).
 *
 * valgrind_and_the_resolver: a name that is not a numeric address makes
 * getaddrinfo set up glibc's per-thread resolver state on the offload worker
 * that runs it. The workers never exit, so that state is never freed, and
 * Valgrind reports it (96 bytes) as definitely lost at exit, which fails the
 * Valgrind run. The same happens without coil (any thread alive at exit
 * that has called getaddrinfo for a name), so under Valgrind the tests that
 * resolve names (localhost, nonexistent.invalid) are skipped; the numeric
 * ones (127.0.0.1, ::1, and NULL for coil_listen_on) still run there. */
/* ---- an offload result reaches a scheduler that never goes idle -------------- */

struct busy_offload {
    volatile bool done;
    int result;
    int64_t took;
};

static int slow_42(void *arg) {
    (void)arg;
    usleep(10000);
    return 42;
}

static void busy_offloader(void *arg) {
    struct busy_offload *b = arg;
    int64_t t0 = coil_now();
    b->result = coil_offload(slow_42, NULL);
    b->took = coil_now() - t0;
    b->done = true;
}

/* How long the yielder keeps the scheduler busy: Valgrind runs the worker
 * thread only now and then while the main thread never blocks. */
static int64_t busy_limit(void) {
    return coil_test_under_valgrind() ? 20 * COIL_SEC : 3 * COIL_SEC;
}

static void busy_yielder(void *arg) {
    struct busy_offload *b = arg;
    int64_t t0 = coil_now();
    while (!b->done && coil_now() - t0 < busy_limit())
        coil_yield(); /* never idle */
}

static void busy_offload_main(void *arg) {
    coil_spawn(busy_offloader, arg, NULL);
    coil_spawn(busy_yielder, arg, NULL);
}

/* The worker's result must be collected while other tasklets keep the run
 * queue full (the scheduler then never blocks in the kernel, where the
 * eventfd would wake it): well before the yielder gives up. */
static void test_offload_result_reaches_a_busy_scheduler(void **state) {
    (void)state;
    struct busy_offload b = {0};
    COIL_RUN_OK(busy_offload_main, &b);
    assert_true(b.done);
    assert_int_equal(b.result, 42);
    assert_true(b.took < busy_limit() * 2 / 3);
}

/* ---- literals do not wait for the pool ----------------------------------------- */

/* Listening on and dialling a literal address while every worker of the
 * offload pool is held (coil_test_while_pool_held): they must not need it. */
struct literals {
    int listen_fd; /* coil_listen_on("127.0.0.1", "0") */
    int dial_fd;   /* coil_dial("127.0.0.1", its port) */
    bool returned_while_held;
};

static void literal_calls(void *arg) {
    struct literals *l = arg;
    l->listen_fd = coil_listen_on("127.0.0.1", "0", 16);
    if (l->listen_fd >= 0) {
        struct coil_test_addr a;
        char port[16];
        if (EXPECT_EQ(coil_test_sockname(l->listen_fd, &a), 0)) {
            port_string(&a, port, sizeof port);
            l->dial_fd = coil_dial("127.0.0.1", port, SOCK_STREAM, coil_test_in(10 * COIL_SEC));
        }
    }
}

static void literals_main(void *arg) {
    struct literals *l = arg;
    l->returned_while_held = coil_test_while_pool_held(literal_calls, l);
    if (l->dial_fd >= 0) EXPECT_EQ(coil_close(l->dial_fd), 0);
    if (l->listen_fd >= 0) EXPECT_EQ(coil_close(l->listen_fd), 0);
}

static void test_literals_do_not_wait_for_the_pool(void **state) {
    (void)state;
    struct literals l = {.listen_fd = -1, .dial_fd = -1};
    COIL_RUN_CHECKED(literals_main, &l);
    assert_true(l.returned_while_held);
    assert_true(l.listen_fd >= 0);
    assert_true(l.dial_fd >= 0);
}

int main(void) {

    coil_test_apply_filter();
    /* Bounds the resolver's wait when no DNS server answers (resolv.conf(5)). */
    setenv("RES_OPTIONS", "timeout:2 attempts:1", 0);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_offload_sigint_waits_for_fn),
        cmocka_unit_test(test_offload_burst_runs_in_parallel),
        cmocka_unit_test(test_offload_result_reaches_a_busy_scheduler),
        cmocka_unit_test(test_dial_ipv4_literal),
        cmocka_unit_test(test_dial_localhost),
        cmocka_unit_test(test_dial_ipv6_literal),
        cmocka_unit_test(test_dial_udp),
        cmocka_unit_test(test_dial_errors),
        cmocka_unit_test(test_dial_unknown_name),
        cmocka_unit_test(test_dial_deadline_and_kill),
        cmocka_unit_test(test_listen_on),
        cmocka_unit_test(test_literals_do_not_wait_for_the_pool),
        cmocka_unit_test(test_offload_result_and_thread),
        cmocka_unit_test(test_offload_many_concurrent),
        cmocka_unit_test(test_offload_kill_while_running),
        cmocka_unit_test(test_offload_from_two_schedulers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
