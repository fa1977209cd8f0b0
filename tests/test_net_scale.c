/* At scale: 10,000 concurrent TCP connections to one coil server in one
 * process (a handler tasklet per accepted connection, a client tasklet per
 * connection: 20,000 tasklets), all open at the same time, each echoing a
 * message; and Ctrl-C: a child runs a coil server with 1,000 open connections (clients in
 * the same child) and gets SIGINT (then, smaller, SIGTERM): coil_run returns
 * -EINTR after every blocked tasklet saw -ECANCELED, the signal's default
 * disposition is back, and the child exits normally, within a time limit.
 *
 * 10,000 connections take about 20,000 fds: RLIMIT_NOFILE is raised (the
 * hard limit too, when allowed: root with CAP_SYS_RESOURCE). When it cannot
 * go that far the clients run in a child process (under a coil scheduler of
 * their own), so that each process needs 10,000; the whole file is skipped
 * (exit 77) if even that is out of reach. Under qemu-user (COIL_UNDER_QEMU)
 * the connection count is 1,000.
 * coil-test: no-valgrind: 20,000 tasklets and sockets are far too slow under
 * Valgrind, and the fd limit Valgrind reserves for itself is in the way. */
// coil-test: no-valgrind (see above)
#define _GNU_SOURCE
#include "coil_test.h"

/* 10,000; COIL_TEST_CONNS=<n> sets another count. */
static int conn_count(void) {
    const char *env = getenv("COIL_TEST_CONNS");
    if (env && atoi(env) > 0) return atoi(env);
    return getenv("COIL_UNDER_QEMU") ? 1000 : 10000;
}

/* ---- 10,000 connections ----------------------------------------------------- */

#define MSG_LEN 48

struct scale {
    int n;
    bool server, clients; /* which side(s) this process runs */
    int listener;
    struct coil_test_addr addr;
    coil_chan *tokens;     /* connects in flight at once (the accept queue is finite) */
    coil_chan *all_conn;   /* closed once every client is connected */
    coil_chan *all_accept; /* closed once every connection is accepted */
    int connected, accepted, open_now, open_max;
    int echoed_ok, handlers_ok;
    int connect_fail, first_connect_err;
};

static struct scale *scale_cur;

/* Waits until ch is closed (a barrier for every tasklet at once). */
static bool await_closed(coil_chan *ch) {
    int dummy;
    return EXPECT_EQ(coil_chan_recv_dl(ch, &dummy, coil_test_in(60 * COIL_SEC)), -EPIPE);
}

static void scale_handler(void *arg) {
    int fd = (int)(intptr_t)arg;
    struct scale *s = scale_cur;
    char buf[MSG_LEN];
    /* No echo before every connection is accepted: then all are open at once
     * on this side, as none has been closed yet. */
    bool ok = await_closed(s->all_accept) &&
              EXPECT_EQ(coil_test_recv_all(fd, buf, MSG_LEN, coil_test_in(60 * COIL_SEC), NULL),
                        MSG_LEN) &&
              EXPECT_EQ(coil_sendall(fd, buf, MSG_LEN, 0, coil_test_in(60 * COIL_SEC)), MSG_LEN) &&
              EXPECT_EQ(coil_recv_dl(fd, buf, 1, 0, coil_test_in(60 * COIL_SEC)), 0);
    EXPECT_EQ(coil_close(fd), 0);
    s->open_now--;
    if (ok) s->handlers_ok++;
}

static void scale_acceptor(void *arg) {
    struct scale *s = arg;
    static const coil_spawn_opts opts = {.name = "handler", .stack_size = 32 * 1024};
    while (s->accepted < s->n) {
        int fd = coil_accept_dl(s->listener, NULL, NULL, coil_test_in(60 * COIL_SEC));
        if (!EXPECT(fd >= 0)) {
            fprintf(stderr, "accept: %d after %d\n", fd, s->accepted);
            break;
        }
        s->accepted++;
        if (++s->open_now > s->open_max) s->open_max = s->open_now;
        if (!EXPECT(coil_spawn(scale_handler, (void *)(intptr_t)fd, &opts) > 0)) break;
    }
    EXPECT_EQ(coil_chan_close(s->all_accept), 0);
}

static void scale_client(void *arg) {
    int index = (int)(intptr_t)arg;
    struct scale *s = scale_cur;
    int token;
    if (!EXPECT_EQ(coil_chan_recv(s->tokens, &token), 0)) return;
    int fd = coil_socket(AF_INET, SOCK_STREAM, 0);
    int rc = fd < 0 ? fd
                    : coil_connect_dl(fd, COIL_TEST_SA(&s->addr), s->addr.len,
                                      coil_test_in(60 * COIL_SEC));
    EXPECT_EQ(coil_chan_send(s->tokens, &token), 0);
    if (rc != 0) {
        if (!s->connect_fail++) s->first_connect_err = rc;
        if (fd >= 0) coil_close(fd);
        rc = -1;
    } else {
        s->connected++;
    }
    /* Every client waits until all are connected. */
    if (s->connected + s->connect_fail == s->n) EXPECT_EQ(coil_chan_close(s->all_conn), 0);
    if (!await_closed(s->all_conn) || rc != 0) {
        if (rc == 0) coil_close(fd);
        return;
    }
    char out[MSG_LEN], in[MSG_LEN];
    memset(out, '.', sizeof out);
    snprintf(out, sizeof out, "client %d says hello", index);
    bool ok = EXPECT_EQ(coil_sendall(fd, out, MSG_LEN, 0, coil_test_in(60 * COIL_SEC)), MSG_LEN) &&
              EXPECT_EQ(coil_test_recv_all(fd, in, MSG_LEN, coil_test_in(60 * COIL_SEC), NULL),
                        MSG_LEN) &&
              EXPECT(memcmp(in, out, MSG_LEN) == 0);
    EXPECT_EQ(coil_close(fd), 0);
    if (ok) s->echoed_ok++;
}

static void scale_main(void *arg) {
    struct scale *s = arg;
    scale_cur = s;
    coil_id acc = 0;
    if (s->server) acc = coil_spawn(scale_acceptor, s, NULL);
    if (s->clients) {
        int token = 0;
        for (int i = 0; i < 256; i++)
            EXPECT_EQ(coil_chan_send(s->tokens, &token), 0);
        static const coil_spawn_opts copts = {.name = "client", .stack_size = 32 * 1024};
        for (int i = 0; i < s->n; i++)
            if (!EXPECT(coil_spawn(scale_client, (void *)(intptr_t)i, &copts) > 0)) break;
    }
    if (acc) EXPECT_EQ(coil_join(acc, coil_test_in(60 * COIL_SEC)), 0);
}

static void scale_open(struct scale *s) {
    assert_int_equal(coil_chan_open(&s->tokens, sizeof(int), 256), 0);
    assert_int_equal(coil_chan_open(&s->all_conn, sizeof(int), 0), 0);
    assert_int_equal(coil_chan_open(&s->all_accept, sizeof(int), 0), 0);
}

static void scale_free(struct scale *s) {
    coil_chan_free(s->tokens);
    coil_chan_free(s->all_conn);
    coil_chan_free(s->all_accept);
}

/* The clients, in a child process of their own (see below). */
static void scale_clients_child(void *arg) {
    struct scale *s = arg;
    s->server = false;
    s->clients = true;
    coil_test_reset_failures();
    int rc = coil_run(scale_main, s);
    fprintf(stderr, "clients: coil_run=%d connected=%d echoed=%d connect failures=%d (first %d)\n",
            rc, s->connected, s->echoed_ok, s->connect_fail, s->first_connect_err);
    _exit(rc == 0 && s->echoed_ok == s->n && coil_test_failure()->count == 0 ? 0 : 1);
}

static void test_ten_thousand_connections(void **state) {
    (void)state;
    struct scale s = {.n = conn_count(), .server = true, .clients = true};
    /* Both ends in this process take 2 fds a connection. Where the hard limit
     * cannot be raised that far (root without CAP_SYS_RESOURCE, say), the
     * clients run in a child process, also under coil: the server still has
     * every connection in one process. */
    bool split = !coil_test_raise_nofile((rlim_t)s.n * 2 + 256);
    s.listener = coil_test_raw_bound(AF_INET, SOCK_STREAM, 4096, &s.addr);
    assert_true(s.listener >= 0);
    scale_open(&s);
    struct coil_test_child child;
    if (split) {
        coil_test_child_start(&child, scale_clients_child, &s);
        s.clients = false;
    }
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    COIL_RUN_CHECKED(scale_main, &s);
    if (split) {
        coil_test_child_finish(&child, 60000);
        if (!coil_test_child_exited(&child, 0)) {
            coil_test_child_describe(&child);
            coil_test_child_free(&child);
            fail_msg("the client process failed");
        }
        print_message("%s", child.err);
        coil_test_child_free(&child);
    }
    int64_t ms = coil_test_ms_since(&t0);
    print_message("%d connections (clients in %s): %d accepted, at most %d open at once in the "
                  "server, %d echoed, %lld ms\n",
                  s.n, split ? "a child process" : "this process", s.accepted, s.open_max,
                  split ? s.n : s.echoed_ok, (long long)ms);
    scale_free(&s);
    close(s.listener);
    if (s.connect_fail)
        fail_msg("%d connects failed, the first with %d", s.connect_fail, s.first_connect_err);
    assert_int_equal(s.accepted, s.n);
    assert_int_equal(s.open_max, s.n);
    if (!split) assert_int_equal(s.echoed_ok, s.n);
    assert_int_equal(s.handlers_ok, s.n);
    assert_int_equal(s.open_now, 0);
}

/* ---- Ctrl-C ---------------------------------------------------------------------- */

struct ctrlc {
    int n;
    int listener;
    struct coil_test_addr addr;
    int connected, accepted;
    int blocked;   /* calls that were waiting when the signal came */
    int cancelled; /* ...and returned -ECANCELED */
    int other;     /* ...and returned something else */
    int first_other_rc;
    bool ready_printed;
};

static struct ctrlc *ctrlc_cur;

static void record(struct ctrlc *c, long long rc) {
    if (rc == -ECANCELED) {
        c->cancelled++;
    } else if (!c->other++) {
        c->first_other_rc = (int)rc;
    }
}

static void maybe_ready(struct ctrlc *c) {
    if (c->ready_printed || c->connected < c->n || c->accepted < c->n) return;
    c->ready_printed = true;
    fprintf(stderr, "ready: %d connections\n", c->n);
    fflush(stderr);
}

static void ctrlc_handler(void *arg) {
    int fd = (int)(intptr_t)arg;
    struct ctrlc *c = ctrlc_cur;
    char b;
    c->blocked++;
    record(c, coil_recv(fd, &b, 1, 0)); /* the clients never send */
    coil_close(fd);
}

static void ctrlc_acceptor(void *arg) {
    struct ctrlc *c = arg;
    static const coil_spawn_opts opts = {.stack_size = 32 * 1024};
    for (;;) {
        int fd = coil_accept(c->listener, NULL, NULL);
        if (fd < 0) {
            c->blocked++; /* the accept after the last connection */
            record(c, fd);
            return;
        }
        c->accepted++;
        coil_spawn(ctrlc_handler, (void *)(intptr_t)fd, &opts);
        maybe_ready(c);
    }
}

static void ctrlc_client(void *arg) {
    struct ctrlc *c = arg;
    int fd = coil_socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0 || coil_connect(fd, COIL_TEST_SA(&c->addr), c->addr.len) != 0) {
        fprintf(stderr, "connect failed\n");
        if (fd >= 0) coil_close(fd);
        return;
    }
    c->connected++;
    maybe_ready(c);
    char b;
    c->blocked++;
    record(c, coil_recv(fd, &b, 1, 0)); /* the server never sends */
    coil_close(fd);
}

static void ctrlc_main(void *arg) {
    struct ctrlc *c = arg;
    ctrlc_cur = c;
    static const coil_spawn_opts opts = {.stack_size = 32 * 1024};
    coil_spawn(ctrlc_acceptor, c, NULL);
    for (int i = 0; i < c->n; i++) {
        coil_spawn(ctrlc_client, c, &opts);
        if (i % 128 == 127) coil_yield(); /* pace the connects */
    }
    c->blocked++;
    record(c, coil_sleep(60 * COIL_SEC)); /* until the signal */
}

/* Exit codes of the child. */
enum { CTRLC_OK = 0, CTRLC_SETUP = 10, CTRLC_WRONG = 11 };

static int ctrlc_signal;

static void ctrlc_child(void *arg) {
    struct ctrlc *c = arg;
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    c->listener = coil_test_raw_bound(AF_INET, SOCK_STREAM, 4096, &c->addr);
    if (c->listener < 0) _exit(CTRLC_SETUP);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = coil_run(ctrlc_main, c);
    struct sigaction sa;
    sigaction(ctrlc_signal, NULL, &sa);
    bool restored = sa.sa_handler == SIG_DFL;
    fprintf(stderr,
            "coil_run=%d blocked=%d cancelled=%d other=%d (first %d) accepted=%d connected=%d "
            "disposition %s, %lld ms\n",
            rc, c->blocked, c->cancelled, c->other, c->first_other_rc, c->accepted, c->connected,
            restored ? "restored" : "NOT restored", (long long)coil_test_ms_since(&t0));
    bool ok = rc == -EINTR && c->other == 0 && c->cancelled == c->blocked &&
              c->blocked == 2 * c->n + 2 && restored;
    _exit(ok ? CTRLC_OK : CTRLC_WRONG);
}

static void run_ctrlc(int signo, int n) {
    struct ctrlc c = {.n = n};
    ctrlc_signal = signo;
    struct coil_test_child child;
    coil_test_child_start(&child, ctrlc_child, &c);
    bool ready = coil_test_child_read(&child, "ready:", 30000);
    if (ready) kill(child.pid, signo);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    coil_test_child_finish(&child, 20000);
    int64_t ms = coil_test_ms_since(&t0);
    bool ok = ready && coil_test_child_exited(&child, CTRLC_OK) &&
              strstr(child.err, "coil_run=-4 ") != NULL;
    if (!ok) {
        coil_test_child_describe(&child);
        coil_test_child_free(&child);
        fail_msg("%s", ready ? "the child did not end as it should after the signal"
                             : "the child's server never got ready");
    }
    print_message("%s", strstr(child.err, "coil_run="));
    print_message("the child ended %lld ms after the signal\n", (long long)ms);
    coil_test_child_free(&child);
}

static void test_ctrl_c_with_a_thousand_connections(void **state) {
    (void)state;
    run_ctrlc(SIGINT, conn_count() / 10);
}

static void test_sigterm_with_a_hundred_connections(void **state) {
    (void)state;
    run_ctrlc(SIGTERM, 100);
}

int main(void) {

    coil_test_apply_filter();
    rlim_t want = (rlim_t)conn_count() + 512; /* with the clients in a child, see below */
    if (!coil_test_raise_nofile(want)) {
        printf("cannot raise RLIMIT_NOFILE to %llu: skipped\n", (unsigned long long)want);
        return 77;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ten_thousand_connections),
        cmocka_unit_test(test_ctrl_c_with_a_thousand_connections),
        cmocka_unit_test(test_sigterm_with_a_hundred_connections),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
