/* The exact errors of the socket and file calls: a refused connect
 * (-ECONNREFUSED), a connect to a listener whose accept queue is full
 * (-ETIMEDOUT at the deadline), a reset peer (-ECONNRESET), a closed peer
 * (-EPIPE, and no SIGPIPE kills the process, whose SIGPIPE disposition is the
 * default), an invalid or closed fd (-EBADF from every call), a NULL buffer
 * with a non-zero length (-EINVAL), calls outside a tasklet (-EPERM, except
 * socket/bind/listen/shutdown/close, which work anywhere), coil_set_timeout
 * on a bad fd, and the errors the system calls give that coil passes on. */
#define _GNU_SOURCE
#include "coil_test.h"

#include <fcntl.h>

/* ---- refused ---------------------------------------------------------------- */

struct refused {
    int family;
    int rc_unlistened, rc_closed, rc_unlistened_dl;
};

static void refused_main(void *arg) {
    struct refused *r = arg;
    /* A port that is bound but not listening. */
    struct coil_test_addr a;
    int bound = coil_test_raw_bound(r->family, SOCK_STREAM, -1, &a);
    if (!EXPECT(bound >= 0)) return;
    int c = coil_socket(r->family, SOCK_STREAM, 0);
    r->rc_unlistened = coil_connect(c, COIL_TEST_SA(&a), a.len);
    coil_close(c);
    c = coil_socket(r->family, SOCK_STREAM, 0);
    r->rc_unlistened_dl = coil_connect_dl(c, COIL_TEST_SA(&a), a.len, coil_test_in(5 * COIL_SEC));
    coil_close(c);
    coil_close(bound);
    /* A listener that has been closed. */
    int l = coil_test_raw_bound(r->family, SOCK_STREAM, 4, &a);
    if (!EXPECT(l >= 0)) return;
    EXPECT_EQ(coil_close(l), 0);
    c = coil_socket(r->family, SOCK_STREAM, 0);
    r->rc_closed = coil_connect(c, COIL_TEST_SA(&a), a.len);
    coil_close(c);
}

static void test_connect_refused_ipv4(void **state) {
    (void)state;
    struct refused r = {.family = AF_INET};
    COIL_RUN_CHECKED(refused_main, &r);
    assert_int_equal(r.rc_unlistened, -ECONNREFUSED);
    assert_int_equal(r.rc_unlistened_dl, -ECONNREFUSED);
    assert_int_equal(r.rc_closed, -ECONNREFUSED);
}

static void test_connect_refused_ipv6(void **state) {
    (void)state;
    if (!coil_test_have_ipv6()) skip();
    struct refused r = {.family = AF_INET6};
    COIL_RUN_CHECKED(refused_main, &r);
    assert_int_equal(r.rc_unlistened, -ECONNREFUSED);
    assert_int_equal(r.rc_unlistened_dl, -ECONNREFUSED);
    assert_int_equal(r.rc_closed, -ECONNREFUSED);
}

/* ---- connect timeout: the listener's accept queue is full ------------------- */

struct conn_timeout {
    struct coil_test_addr a;
    int rc;
    int64_t took;
};

static void conn_timeout_main(void *arg) {
    struct conn_timeout *t = arg;
    int c = coil_socket(AF_INET, SOCK_STREAM, 0);
    if (!EXPECT(c >= 0)) return;
    int64_t t0 = coil_now();
    t->rc = coil_connect_dl(c, COIL_TEST_SA(&t->a), t->a.len, t0 + 300 * COIL_MSEC);
    t->took = coil_now() - t0;
    EXPECT_EQ(coil_close(c), 0);
}

static void test_connect_timeout_full_backlog(void **state) {
    (void)state;
    int fillers[16], n;
    struct conn_timeout t = {0};
    int l = coil_test_full_backlog_listener(&t.a, fillers, 16, &n);
    if (l == -EAGAIN) {
        print_message("could not fill the accept queue of a loopback listener\n");
        skip();
    }
    assert_true(l >= 0);
    COIL_RUN_CHECKED(conn_timeout_main, &t);
    for (int i = 0; i < n; i++)
        close(fillers[i]);
    close(l);
    assert_int_equal(t.rc, -ETIMEDOUT);
    assert_true(t.took >= 300 * COIL_MSEC - COIL_MSEC);
    assert_true(t.took < 300 * COIL_MSEC + coil_test_slack() + COIL_SEC / 2);
}

/* ---- reset peer --------------------------------------------------------------- */

struct reset {
    int client, server;
    bool recv_waiting; /* the client is blocked in recv when the RST comes */
    ssize_t recv_rc, send_rc;
};

static void reset_peer(void *arg) {
    struct reset *r = arg;
    if (r->recv_waiting) coil_sleep(30 * COIL_MSEC);
    struct linger lg = {.l_onoff = 1, .l_linger = 0};
    EXPECT_EQ(setsockopt(r->server, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    EXPECT_EQ(coil_close(r->server), 0); /* sends RST */
}

static void reset_recv_main(void *arg) {
    struct reset *r = arg;
    coil_id p = coil_spawn(reset_peer, r, NULL);
    char buf[16];
    if (!r->recv_waiting) {
        EXPECT_EQ(coil_join(p, COIL_FOREVER), 0);
        coil_sleep(30 * COIL_MSEC); /* the RST has long arrived */
    }
    r->recv_rc = coil_recv_dl(r->client, buf, sizeof buf, 0, coil_test_in(10 * COIL_SEC));
    coil_join(p, COIL_FOREVER);
    EXPECT_EQ(coil_close(r->client), 0);
}

static void reset_send_main(void *arg) {
    struct reset *r = arg;
    coil_id p = coil_spawn(reset_peer, r, NULL);
    EXPECT_EQ(coil_join(p, COIL_FOREVER), 0);
    coil_sleep(30 * COIL_MSEC);
    r->send_rc = coil_send(r->client, "x", 1, 0);
    EXPECT_EQ(coil_close(r->client), 0);
}

static void test_reset_peer_recv(void **state) {
    (void)state;
    struct reset r = {0};
    assert_int_equal(coil_test_raw_tcp_pair(AF_INET, &r.client, &r.server), 0);
    COIL_RUN_CHECKED(reset_recv_main, &r);
    assert_int_equal(r.recv_rc, -ECONNRESET);
}

static void test_reset_peer_while_waiting_in_recv(void **state) {
    (void)state;
    struct reset r = {.recv_waiting = true};
    assert_int_equal(coil_test_raw_tcp_pair(AF_INET, &r.client, &r.server), 0);
    COIL_RUN_CHECKED(reset_recv_main, &r);
    assert_int_equal(r.recv_rc, -ECONNRESET);
}

static void test_reset_peer_send(void **state) {
    (void)state;
    struct reset r = {0};
    assert_int_equal(coil_test_raw_tcp_pair(AF_INET, &r.client, &r.server), 0);
    COIL_RUN_CHECKED(reset_send_main, &r);
    assert_int_equal(r.send_rc, -ECONNRESET);
}

/* ---- closed peer: -EPIPE, and SIGPIPE does not kill the process -------------- */

/* Child exit codes. */
enum { EPIPE_OK = 0, EPIPE_SETUP = 10, EPIPE_RUN = 11, EPIPE_WRONG = 12 };

enum pipe_how { VIA_SEND, VIA_SENDALL, VIA_SENDTO, VIA_WRITE_SOCKET, VIA_WRITE_PIPE };

struct epipe {
    enum pipe_how how;
    int fd, peer;
    ssize_t last;
    int tries;
};

static void epipe_main(void *arg) {
    struct epipe *e = arg;
    /* The peer closes; the first send may still be taken (the peer's kernel
     * answers it with a RST), and the next ones fail with EPIPE. */
    close(e->peer);
    coil_sleep(20 * COIL_MSEC);
    static const char msg[100];
    for (e->tries = 0; e->tries < 50; e->tries++) {
        switch (e->how) {
        case VIA_SEND: e->last = coil_send(e->fd, msg, sizeof msg, 0); break;
        case VIA_SENDALL:
            e->last = coil_sendall(e->fd, msg, sizeof msg, 0, coil_test_in(5 * COIL_SEC));
            break;
        case VIA_SENDTO:
            e->last = coil_sendto(e->fd, msg, sizeof msg, 0, NULL, 0, coil_test_in(5 * COIL_SEC));
            break;
        case VIA_WRITE_SOCKET:
        case VIA_WRITE_PIPE: e->last = coil_write(e->fd, msg, sizeof msg); break;
        }
        if (e->last < 0) break;
        coil_sleep(10 * COIL_MSEC);
    }
}

static void epipe_child(void *arg) {
    struct epipe *e = arg;
    signal(SIGPIPE, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    int fds[2];
    if (e->how == VIA_WRITE_PIPE) {
        if (pipe(fds) != 0) _exit(EPIPE_SETUP);
        e->fd = fds[1];
        e->peer = fds[0];
    } else if (coil_test_raw_tcp_pair(AF_INET, &e->fd, &e->peer) != 0) {
        _exit(EPIPE_SETUP);
    }
    int rc = coil_run(epipe_main, e);
    fprintf(stderr, "coil_run=%d last=%zd tries=%d\n", rc, e->last, e->tries);
    if (rc != 0) _exit(EPIPE_RUN);
    /* Still alive here: SIGPIPE was not raised (or is still pending, which the
     * check below would deliver). */
    sigset_t pending;
    sigpending(&pending);
    if (sigismember(&pending, SIGPIPE)) fprintf(stderr, "SIGPIPE pending\n");
    _exit(e->last == -EPIPE ? EPIPE_OK : EPIPE_WRONG);
}

static void expect_epipe_survived(enum pipe_how how) {
    struct epipe e = {.how = how};
    struct coil_test_child c;
    coil_test_fork_run(&c, epipe_child, &e, 30000);
    if (!coil_test_child_exited(&c, EPIPE_OK)) {
        coil_test_child_describe(&c);
        if (coil_test_child_signaled(&c, SIGPIPE)) {
            coil_test_child_free(&c);
            fail_msg("the process was killed by SIGPIPE");
        }
        coil_test_child_free(&c);
        fail_msg("expected -EPIPE and a normal exit");
    }
    coil_test_child_free(&c);
}

static void test_send_to_closed_peer_epipe_no_sigpipe(void **state) {
    (void)state;
    expect_epipe_survived(VIA_SEND);
}

static void test_sendall_to_closed_peer_epipe_no_sigpipe(void **state) {
    (void)state;
    expect_epipe_survived(VIA_SENDALL);
}

static void test_sendto_connected_closed_peer_epipe_no_sigpipe(void **state) {
    (void)state;
    expect_epipe_survived(VIA_SENDTO);
}

/* coil_write is a coil call too: coil_run's contract says SIGPIPE is never
 * raised by coil's calls. */
static void test_write_to_closed_socket_peer_epipe_no_sigpipe(void **state) {
    (void)state;
    expect_epipe_survived(VIA_WRITE_SOCKET);
}

static void test_write_to_pipe_without_reader_epipe_no_sigpipe(void **state) {
    (void)state;
    expect_epipe_survived(VIA_WRITE_PIPE);
}

/* ---- bad fds --------------------------------------------------------------- */

struct badfd {
    int fd;
    int line; /* of the first call that did not return -EBADF */
    long long got;
};

#define BADF(call)                                                                                 \
    do {                                                                                           \
        long long got_ = (long long)(call);                                                        \
        if (got_ != -EBADF && !b->line) {                                                          \
            b->line = __LINE__;                                                                    \
            b->got = got_;                                                                         \
        }                                                                                          \
        EXPECT_EQ(got_, -EBADF);                                                                   \
    } while (0)

static void badfd_main(void *arg) {
    struct badfd *b = arg;
    int fd = b->fd;
    char buf[16] = {0};
    struct coil_test_addr a;
    coil_test_loopback(&a, AF_INET, 9); /* never reached: the fd is bad */
    struct sockaddr_storage from;
    socklen_t fromlen = sizeof from;
    int64_t dl = coil_test_in(5 * COIL_SEC);
    int64_t t0 = coil_now();
    BADF(coil_bind(fd, COIL_TEST_SA(&a), a.len));
    BADF(coil_listen(fd, 4));
    BADF(coil_shutdown(fd, SHUT_RDWR));
    BADF(coil_accept(fd, NULL, NULL));
    BADF(coil_accept_dl(fd, NULL, NULL, dl));
    BADF(coil_connect(fd, COIL_TEST_SA(&a), a.len));
    BADF(coil_connect_dl(fd, COIL_TEST_SA(&a), a.len, dl));
    BADF(coil_recv(fd, buf, sizeof buf, 0));
    BADF(coil_recv_dl(fd, buf, sizeof buf, 0, dl));
    BADF(coil_send(fd, buf, sizeof buf, 0));
    BADF(coil_send_dl(fd, buf, sizeof buf, 0, dl));
    BADF(coil_sendall(fd, buf, sizeof buf, 0, dl));
    BADF(coil_recvfrom(fd, buf, sizeof buf, 0, (struct sockaddr *)&from, &fromlen, dl));
    BADF(coil_sendto(fd, buf, sizeof buf, 0, COIL_TEST_SA(&a), a.len, dl));
    BADF(coil_read(fd, buf, sizeof buf));
    BADF(coil_read_dl(fd, buf, sizeof buf, dl));
    BADF(coil_write(fd, buf, sizeof buf));
    BADF(coil_write_dl(fd, buf, sizeof buf, dl));
    BADF(coil_set_timeout(fd, COIL_SEC));
    BADF(coil_set_timeout(fd, -1));
    BADF(coil_close(fd));
    /* with a passed deadline too */
    BADF(coil_recv_dl(fd, buf, sizeof buf, 0, 0));
    BADF(coil_accept_dl(fd, NULL, NULL, 0));
    EXPECT(coil_now() - t0 < coil_test_slack()); /* none of them waited */
}

static void run_badfd(int fd) {
    struct badfd b = {.fd = fd};
    COIL_RUN_CHECKED(badfd_main, &b);
    if (b.line) fail_msg("fd %d: the call at line %d returned %lld, not -EBADF", fd, b.line, b.got);
}

static void test_ebadf_negative_fd(void **state) {
    (void)state;
    run_badfd(-1);
}

static void test_ebadf_fd_beyond_the_table(void **state) {
    (void)state;
    struct rlimit rl;
    assert_int_equal(getrlimit(RLIMIT_NOFILE, &rl), 0);
    run_badfd(rl.rlim_cur < 1000000 ? (int)rl.rlim_cur + 10 : 1000000);
}

/* An fd closed inside coil_run (closed before it, its number would go to
 * coil_run's own fds). */
static void closed_fd_main(void *arg) {
    struct badfd *b = arg;
    b->fd = coil_socket(AF_INET, SOCK_STREAM, 0);
    if (!EXPECT(b->fd >= 0)) return;
    EXPECT_EQ(coil_close(b->fd), 0);
    badfd_main(b);
}

static void test_ebadf_closed_fd(void **state) {
    (void)state;
    struct badfd b = {0};
    COIL_RUN_CHECKED(closed_fd_main, &b);
    if (b.line) fail_msg("the call at line %d returned %lld, not -EBADF", b.line, b.got);
}

/* A socket that was closed inside coil_run, by coil_close, after I/O on it:
 * coil must not remember it as open. */
struct closed_after_use {
    int fd;
    struct badfd b;
};

static void closed_after_use_main(void *arg) {
    struct closed_after_use *u = arg;
    int peer;
    if (!EXPECT_EQ(coil_test_raw_tcp_pair(AF_INET, &u->fd, &peer), 0)) return;
    EXPECT_EQ(coil_set_timeout(u->fd, COIL_SEC), 0);
    EXPECT_EQ(coil_send(u->fd, "ab", 2, 0), 2);
    char buf[2];
    EXPECT_EQ(coil_recv(peer, buf, 2, 0), 2);
    EXPECT_EQ(coil_close(u->fd), 0);
    u->b.fd = u->fd;
    badfd_main(&u->b);
    EXPECT_EQ(coil_close(peer), 0);
}

static void test_ebadf_fd_closed_after_use(void **state) {
    (void)state;
    struct closed_after_use u = {0};
    COIL_RUN_CHECKED(closed_after_use_main, &u);
    if (u.b.line) fail_msg("the call at line %d returned %lld, not -EBADF", u.b.line, u.b.got);
}

static void test_close_outside_a_tasklet_bad_fds(void **state) {
    (void)state;
    assert_int_equal(coil_close(-1), -EBADF);
    int fd = coil_socket(AF_INET, SOCK_DGRAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(coil_close(fd), 0);
    assert_int_equal(coil_close(fd), -EBADF);
    /* qemu-user checks the address before the fd (-EFAULT): the kernel's
     * order is what is tested here. */
    if (coil_test_under_qemu()) return;
    assert_int_equal(coil_bind(fd, NULL, 0), -EBADF);
    assert_int_equal(coil_listen(fd, 1), -EBADF);
    assert_int_equal(coil_shutdown(fd, SHUT_RD), -EBADF);
}

/* ---- NULL buffers ---------------------------------------------------------- */

struct nullbuf {
    int tcp_a, tcp_b, udp, pipe_r, pipe_w;
    struct coil_test_addr udp_addr;
};

static void nullbuf_main(void *arg) {
    struct nullbuf *n = arg;
    int64_t dl = coil_test_in(5 * COIL_SEC);
    struct sockaddr_storage from;
    socklen_t fromlen = sizeof from;
    int64_t t0 = coil_now();
    EXPECT_EQ(coil_recv(n->tcp_a, NULL, 10, 0), -EINVAL);
    EXPECT_EQ(coil_recv_dl(n->tcp_a, NULL, 10, 0, dl), -EINVAL);
    EXPECT_EQ(coil_send(n->tcp_a, NULL, 10, 0), -EINVAL);
    EXPECT_EQ(coil_send_dl(n->tcp_a, NULL, 10, 0, dl), -EINVAL);
    EXPECT_EQ(coil_sendall(n->tcp_a, NULL, 10, 0, dl), -EINVAL);
    EXPECT_EQ(coil_read(n->tcp_a, NULL, 10), -EINVAL);
    EXPECT_EQ(coil_read_dl(n->tcp_a, NULL, 10, dl), -EINVAL);
    EXPECT_EQ(coil_write(n->tcp_a, NULL, 10), -EINVAL);
    EXPECT_EQ(coil_write_dl(n->tcp_a, NULL, 10, dl), -EINVAL);
    EXPECT_EQ(coil_recvfrom(n->udp, NULL, 10, 0, (struct sockaddr *)&from, &fromlen, dl), -EINVAL);
    EXPECT_EQ(coil_sendto(n->udp, NULL, 10, 0, COIL_TEST_SA(&n->udp_addr), n->udp_addr.len, dl),
              -EINVAL);
    EXPECT_EQ(coil_read(n->pipe_r, NULL, 1), -EINVAL);
    EXPECT_EQ(coil_write(n->pipe_w, NULL, 1), -EINVAL);
    EXPECT(coil_now() - t0 < coil_test_slack());
    /* Nothing was sent, and the fds still work. */
    char buf[8];
    EXPECT_EQ(coil_recv_dl(n->tcp_b, buf, sizeof buf, 0, coil_test_in(20 * COIL_MSEC)), -ETIMEDOUT);
    EXPECT_EQ(coil_recvfrom(n->udp, buf, sizeof buf, 0, NULL, NULL, coil_test_in(20 * COIL_MSEC)),
              -ETIMEDOUT);
    EXPECT_EQ(coil_send(n->tcp_a, "ok", 2, 0), 2);
    EXPECT_EQ(coil_test_recv_all(n->tcp_b, buf, 2, coil_test_in(5 * COIL_SEC), NULL), 2);
    EXPECT_EQ(coil_write(n->pipe_w, "p", 1), 1);
    EXPECT_EQ(coil_read(n->pipe_r, buf, sizeof buf), 1);
}

static void test_einval_null_buffer(void **state) {
    (void)state;
    struct nullbuf n;
    int p[2];
    assert_int_equal(coil_test_raw_tcp_pair(AF_INET, &n.tcp_a, &n.tcp_b), 0);
    n.udp = coil_test_raw_bound(AF_INET, SOCK_DGRAM, -1, &n.udp_addr);
    assert_true(n.udp >= 0);
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    n.pipe_r = p[0];
    n.pipe_w = p[1];
    COIL_RUN_CHECKED(nullbuf_main, &n);
    close(n.tcp_a);
    close(n.tcp_b);
    close(n.udp);
    close(p[0]);
    close(p[1]);
}

/* ---- outside a tasklet ------------------------------------------------------- */

static int dummy_offload(void *arg) {
    (void)arg;
    return 0;
}

static void test_eperm_outside_a_tasklet(void **state) {
    (void)state;
    int a, b;
    assert_int_equal(coil_test_raw_tcp_pair(AF_INET, &a, &b), 0);
    struct coil_test_addr la, ua;
    int l = coil_test_raw_bound(AF_INET, SOCK_STREAM, 4, &la);
    int u = coil_test_raw_bound(AF_INET, SOCK_DGRAM, -1, &ua);
    assert_true(l >= 0 && u >= 0);
    int fresh = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int p[2];
    assert_int_equal(pipe2(p, O_CLOEXEC), 0);
    char buf[8] = {0};
    struct sockaddr_storage from;
    socklen_t fromlen = sizeof from;
    int64_t dl = coil_now() + 5 * COIL_SEC;
    assert_int_equal(coil_accept(l, NULL, NULL), -EPERM);
    assert_int_equal(coil_accept_dl(l, NULL, NULL, dl), -EPERM);
    assert_int_equal(coil_connect(fresh, COIL_TEST_SA(&la), la.len), -EPERM);
    assert_int_equal(coil_connect_dl(fresh, COIL_TEST_SA(&la), la.len, dl), -EPERM);
    assert_int_equal(coil_recv(a, buf, sizeof buf, 0), -EPERM);
    assert_int_equal(coil_recv_dl(a, buf, sizeof buf, 0, dl), -EPERM);
    assert_int_equal(coil_send(a, buf, sizeof buf, 0), -EPERM);
    assert_int_equal(coil_send_dl(a, buf, sizeof buf, 0, dl), -EPERM);
    assert_int_equal(coil_sendall(a, buf, sizeof buf, 0, dl), -EPERM);
    assert_int_equal(coil_recvfrom(u, buf, sizeof buf, 0, (struct sockaddr *)&from, &fromlen, dl),
                     -EPERM);
    assert_int_equal(coil_sendto(u, buf, sizeof buf, 0, COIL_TEST_SA(&ua), ua.len, dl), -EPERM);
    assert_int_equal(coil_read(p[0], buf, sizeof buf), -EPERM);
    assert_int_equal(coil_read_dl(p[0], buf, sizeof buf, dl), -EPERM);
    assert_int_equal(coil_write(p[1], buf, sizeof buf), -EPERM);
    assert_int_equal(coil_write_dl(p[1], buf, sizeof buf, dl), -EPERM);
    assert_int_equal(coil_set_timeout(a, COIL_SEC), -EPERM);
    assert_int_equal(coil_dial("127.0.0.1", "9", SOCK_STREAM, dl), -EPERM);
    assert_int_equal(coil_offload(dummy_offload, NULL), -EPERM);
    /* Nothing happened: no connection was made or accepted, no byte moved. */
    struct coil_test_addr peer;
    assert_int_equal(coil_test_peername(fresh, &peer), -ENOTCONN);
    assert_int_equal(coil_test_drain(b, NULL, 0), 0);
    assert_int_equal(coil_test_drain(u, NULL, 0), 0);
    assert_int_equal(coil_test_drain(p[0], NULL, 0), 0);
    close(a);
    close(b);
    close(l);
    close(u);
    close(fresh);
    close(p[0]);
    close(p[1]);
}

/* socket, bind, listen, shutdown and close work outside every tasklet, and the
 * fds they made work inside coil_run afterwards. */
struct anywhere {
    int listener;
    struct coil_test_addr bound;
    int got;
};

static void anywhere_main(void *arg) {
    struct anywhere *w = arg;
    int c = coil_socket(AF_INET, SOCK_STREAM, 0);
    EXPECT_EQ(coil_connect(c, COIL_TEST_SA(&w->bound), w->bound.len), 0);
    int s = coil_accept_dl(w->listener, NULL, NULL, coil_test_in(5 * COIL_SEC));
    if (EXPECT(s >= 0)) {
        EXPECT_EQ(coil_send(c, "hi", 2, 0), 2);
        char buf[2];
        w->got = (int)coil_test_recv_all(s, buf, 2, coil_test_in(5 * COIL_SEC), NULL);
        EXPECT_EQ(coil_close(s), 0);
    }
    EXPECT_EQ(coil_close(c), 0);
}

static void test_callable_anywhere(void **state) {
    (void)state;
    struct anywhere w = {0};
    struct coil_test_addr a;
    coil_test_loopback(&a, AF_INET, 0);
    w.listener = coil_socket(AF_INET, SOCK_STREAM, 0);
    assert_true(w.listener >= 0);
    assert_int_equal(coil_bind(w.listener, COIL_TEST_SA(&a), a.len), 0);
    assert_int_equal(coil_listen(w.listener, 8), 0);
    assert_int_equal(coil_test_sockname(w.listener, &w.bound), 0);
    COIL_RUN_CHECKED(anywhere_main, &w);
    assert_int_equal(w.got, 2);
    /* shutdown and close of a connected pair, outside coil_run */
    int c, s;
    assert_int_equal(coil_test_raw_tcp_pair(AF_INET, &c, &s), 0);
    assert_int_equal(coil_shutdown(c, SHUT_WR), 0);
    char b;
    assert_int_equal(recv(s, &b, 1, 0), 0); /* the FIN arrived */
    assert_int_equal(coil_close(c), 0);
    assert_int_equal(coil_close(s), 0);
    assert_int_equal(coil_close(w.listener), 0);
}

/* coil_set_timeout outside coil_run, on a good fd: -EPERM; inside, on a bad
 * one: -EBADF (also covered in badfd_main). */
static void set_timeout_main(void *arg) {
    int *fd = arg;
    EXPECT_EQ(coil_set_timeout(*fd, COIL_SEC), 0);
    EXPECT_EQ(coil_set_timeout(*fd, 0), 0);
    EXPECT_EQ(coil_set_timeout(*fd, -1), 0);
    EXPECT_EQ(coil_set_timeout(-1, COIL_SEC), -EBADF);
    EXPECT_EQ(coil_set_timeout(-5, -1), -EBADF);
    EXPECT_EQ(coil_set_timeout(1 << 24, COIL_SEC), -EBADF);
}

static void test_set_timeout_errors(void **state) {
    (void)state;
    int fd = coil_socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    assert_int_equal(coil_set_timeout(fd, COIL_SEC), -EPERM);
    assert_int_equal(coil_set_timeout(-1, COIL_SEC), -EPERM);
    COIL_RUN_CHECKED(set_timeout_main, &fd);
    assert_int_equal(coil_close(fd), 0);
}

/* ---- errors of the system calls, passed on as -errno ----------------------- */

static void syscall_errors_main(void *arg) {
    (void)arg;
    char buf[8];
    struct coil_test_addr a;
    int p[2];
    if (!EXPECT_EQ(pipe2(p, O_CLOEXEC), 0)) return;
    /* recv/send on something that is not a socket */
    EXPECT_EQ(coil_recv(p[0], buf, sizeof buf, 0), -ENOTSOCK);
    EXPECT_EQ(coil_send(p[1], "x", 1, 0), -ENOTSOCK);
    EXPECT_EQ(coil_accept(p[0], NULL, NULL), -ENOTSOCK);
    /* accept on a socket that does not listen */
    int s = coil_socket(AF_INET, SOCK_STREAM, 0);
    EXPECT_EQ(coil_accept_dl(s, NULL, NULL, coil_test_in(COIL_SEC)), -EINVAL);
    /* recv on a TCP socket that is not connected */
    EXPECT_EQ(coil_recv_dl(s, buf, sizeof buf, 0, coil_test_in(COIL_SEC)), -ENOTCONN);
    EXPECT_EQ(coil_shutdown(s, SHUT_RDWR), -ENOTCONN);
    /* address too short for its family */
    coil_test_loopback(&a, AF_INET, 9);
    EXPECT_EQ(coil_connect(s, COIL_TEST_SA(&a), 2), -EINVAL);
    EXPECT_EQ(coil_bind(s, COIL_TEST_SA(&a), 2), -EINVAL);
    EXPECT_EQ(coil_shutdown(s, 99), -EINVAL);
    EXPECT_EQ(coil_close(s), 0);
    /* a port in use */
    struct coil_test_addr in_use;
    int l = coil_test_raw_bound(AF_INET, SOCK_STREAM, 4, &in_use);
    s = coil_socket(AF_INET, SOCK_STREAM, 0);
    EXPECT_EQ(coil_bind(s, COIL_TEST_SA(&in_use), in_use.len), -EADDRINUSE);
    EXPECT_EQ(coil_close(s), 0);
    EXPECT_EQ(coil_close(l), 0);
    /* listen on a datagram socket */
    s = coil_socket(AF_INET, SOCK_DGRAM, 0);
    EXPECT_EQ(coil_listen(s, 4), -EOPNOTSUPP);
    /* connected-only send on an unconnected datagram socket */
    EXPECT_EQ(coil_send(s, "x", 1, 0), -EDESTADDRREQ);
    EXPECT_EQ(coil_close(s), 0);
    /* reading the write end of a pipe, writing the read end */
    EXPECT_EQ(coil_read(p[1], buf, sizeof buf), -EBADF);
    EXPECT_EQ(coil_write(p[0], "x", 1), -EBADF);
    EXPECT_EQ(coil_close(p[0]), 0);
    EXPECT_EQ(coil_close(p[1]), 0);
}

static void test_system_call_errors_passed_on(void **state) {
    (void)state;
    COIL_RUN_CHECKED(syscall_errors_main, NULL);
}

static void test_socket_errors(void **state) {
    (void)state;
    assert_int_equal(coil_socket(12345, SOCK_STREAM, 0), -EAFNOSUPPORT);
    /* qemu-user answers an unknown type itself, with -ESOCKTNOSUPPORT. */
    if (!coil_test_under_qemu()) assert_int_equal(coil_socket(AF_INET, 12345, 0), -EINVAL);
    assert_int_equal(coil_socket(AF_INET, SOCK_STREAM, IPPROTO_UDP), -EPROTONOSUPPORT);
    int fd = coil_socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    assert_true(fd >= 0);
    int fl = fcntl(fd, F_GETFD);
    assert_true(fl >= 0 && (fl & FD_CLOEXEC));
    assert_true(fcntl(fd, F_GETFL) & O_NONBLOCK);
    assert_int_equal(coil_close(fd), 0);
}

/* A full fd table: coil_socket fails with -EMFILE; coil_accept first waits
 * 100 ms (or until its deadline, if sooner) instead of spinning, and the
 * pending connection stays queued, so that it is accepted once an fd is
 * free. Runs in a child, whose fd limit is lowered. */
struct emfile {
    int listener;
    struct coil_test_addr bound;
    int client;
    int fillers[128];
    int nfill;
};

static void emfile_main(void *arg) {
    struct emfile *m = arg;
    /* coil has set itself up by now; take every fd that is left. */
    for (;;) {
        int fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
        if (fd < 0) {
            EXPECT_EQ(errno, EMFILE);
            break;
        }
        if (!EXPECT(m->nfill < 128)) return;
        m->fillers[m->nfill++] = fd;
    }
    EXPECT_EQ(coil_socket(AF_INET, SOCK_STREAM, 0), -EMFILE);
    int64_t t0 = coil_now();
    EXPECT_EQ(coil_accept(m->listener, NULL, NULL), -EMFILE);
    int64_t took = coil_now() - t0;
    fprintf(stderr, "accept took %lld ms\n", (long long)(took / COIL_MSEC));
    EXPECT(took >= 99 * COIL_MSEC);
    EXPECT(took < 100 * COIL_MSEC + coil_test_slack());
    /* A sooner deadline: the wait ends there (with -EMFILE or -ETIMEDOUT). */
    t0 = coil_now();
    int rc = coil_accept_dl(m->listener, NULL, NULL, t0 + 30 * COIL_MSEC);
    took = coil_now() - t0;
    fprintf(stderr, "accept_dl returned %d after %lld ms\n", rc, (long long)(took / COIL_MSEC));
    EXPECT(rc == -EMFILE || rc == -ETIMEDOUT);
    EXPECT(took >= 29 * COIL_MSEC);
    EXPECT(took < 99 * COIL_MSEC);
    /* One fd freed: the connection that waited is accepted at once. */
    close(m->fillers[--m->nfill]);
    t0 = coil_now();
    int s = coil_accept_dl(m->listener, NULL, NULL, coil_test_in(5 * COIL_SEC));
    EXPECT(s >= 0);
    EXPECT(coil_now() - t0 < coil_test_slack());
    if (s >= 0) {
        EXPECT_EQ(send(m->client, "z", 1, MSG_NOSIGNAL), 1);
        char b = 0;
        EXPECT_EQ(coil_recv(s, &b, 1, 0), 1);
        EXPECT_EQ(b, 'z');
        coil_close(s);
    }
    while (m->nfill)
        close(m->fillers[--m->nfill]);
}

static void emfile_child(void *arg) {
    struct emfile *m = arg;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) _exit(10);
    rl.rlim_cur = 64;
    if (setrlimit(RLIMIT_NOFILE, &rl) != 0) _exit(10);
    m->listener = coil_test_raw_bound(AF_INET, SOCK_STREAM, 4, &m->bound);
    m->client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (m->listener < 0 || m->client < 0) _exit(11);
    if (connect(m->client, COIL_TEST_SA(&m->bound), m->bound.len) != 0) _exit(12);
    coil_test_reset_failures();
    int rc = coil_run(emfile_main, m);
    fprintf(stderr, "coil_run=%d failures=%d\n", rc, coil_test_failure()->count);
    _exit(rc == 0 && coil_test_failure()->count == 0 ? 0 : 1);
}

static void test_emfile_accept_waits(void **state) {
    (void)state;
    /* Valgrind emulates RLIMIT_NOFILE for the program's own calls, but the
     * kernel (io_uring's accept, for one) does not see the lowered limit. */
    if (coil_test_under_valgrind()) skip();
    struct emfile m = {0};
    struct coil_test_child c;
    coil_test_fork_run(&c, emfile_child, &m, 30000);
    if (!coil_test_child_exited(&c, 0)) {
        coil_test_child_describe(&c);
        coil_test_child_free(&c);
        fail_msg("the fd-table-full scenario failed");
    }
    coil_test_child_free(&c);
}

/* ---- an fd number far beyond the fd limit ------------------------------------- */

struct huge_fd {
    ssize_t recv_rc, write_rc;
    int timeout_rc;
};

static void huge_fd_main(void *arg) {
    struct huge_fd *h = arg;
    char buf[8];
    h->recv_rc = coil_recv(1 << 30, buf, sizeof buf, 0);
    h->write_rc = coil_write(INT32_MAX, buf, sizeof buf);
    h->timeout_rc = coil_set_timeout(1 << 30, COIL_SEC);
}

/* -EBADF at once: coil must not grow its per-fd table to the number first
 * (that would cost gigabytes, or end in -ENOMEM). */
static void test_fd_beyond_the_limit_is_ebadf(void **state) {
    (void)state;
    struct huge_fd h = {0};
    COIL_RUN_OK(huge_fd_main, &h);
    assert_int_equal(h.recv_rc, -EBADF);
    assert_int_equal(h.write_rc, -EBADF);
    assert_int_equal(h.timeout_rc, -EBADF);
}

int main(void) {

    coil_test_apply_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fd_beyond_the_limit_is_ebadf),
        cmocka_unit_test(test_connect_refused_ipv4),
        cmocka_unit_test(test_connect_refused_ipv6),
        cmocka_unit_test(test_connect_timeout_full_backlog),
        cmocka_unit_test(test_reset_peer_recv),
        cmocka_unit_test(test_reset_peer_while_waiting_in_recv),
        cmocka_unit_test(test_reset_peer_send),
        cmocka_unit_test(test_send_to_closed_peer_epipe_no_sigpipe),
        cmocka_unit_test(test_sendall_to_closed_peer_epipe_no_sigpipe),
        cmocka_unit_test(test_sendto_connected_closed_peer_epipe_no_sigpipe),
        cmocka_unit_test(test_write_to_closed_socket_peer_epipe_no_sigpipe),
        cmocka_unit_test(test_write_to_pipe_without_reader_epipe_no_sigpipe),
        cmocka_unit_test(test_ebadf_negative_fd),
        cmocka_unit_test(test_ebadf_fd_beyond_the_table),
        cmocka_unit_test(test_ebadf_closed_fd),
        cmocka_unit_test(test_ebadf_fd_closed_after_use),
        cmocka_unit_test(test_close_outside_a_tasklet_bad_fds),
        cmocka_unit_test(test_einval_null_buffer),
        cmocka_unit_test(test_eperm_outside_a_tasklet),
        cmocka_unit_test(test_callable_anywhere),
        cmocka_unit_test(test_set_timeout_errors),
        cmocka_unit_test(test_system_call_errors_passed_on),
        cmocka_unit_test(test_socket_errors),
        cmocka_unit_test(test_emfile_accept_waits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
