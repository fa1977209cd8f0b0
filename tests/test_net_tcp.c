/* TCP over loopback (127.0.0.1 and ::1): coil_socket / coil_bind (port 0,
 * then getsockname) / coil_listen / coil_accept / coil_connect / coil_recv /
 * coil_send / coil_sendall; end of stream is 0 (and stays 0); half-close
 * with coil_shutdown(SHUT_WR); a zero-length receive returns 0 at once and
 * consumes nothing; coil_send of a large buffer into a small socket buffer
 * is short, coil_sendall sends everything; a checksummed stream arrives
 * intact (1 GiB natively, 4 MiB under Valgrind; COIL_TEST_STREAM_BYTES=<n>[KMG]
 * sets another size), also
 * both ways at once on one connection; many tasklets each with its own
 * connection; fds made outside coil, blocking or O_NONBLOCK; a lone tasklet
 * waiting for I/O is not a deadlock; the two ends of a connection in two
 * schedulers on two threads; lengths of 3 GiB (beyond what one system call
 * moves) give sane counts. */
#define _GNU_SOURCE /* accept4 */
// coil-test: tsan (two schedulers on two threads share a connection; a plain thread writes to a
// tasklet's socket)
#include "coil_test.h"

#include <fcntl.h>
#include <pthread.h>
#include <sys/mman.h>

/* ---- echo over IPv4 and IPv6 ---------------------------------------------- */

struct echo {
    int family;
    int listener;
    struct coil_test_addr bound;       /* the listener's, from getsockname */
    struct coil_test_addr seen_peer;   /* what coil_accept filled in */
    struct coil_test_addr client_addr; /* the client's own, from getsockname */
    int server_fd;
    bool server_done;
};

static void upcase(char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] >= 'a' && s[i] <= 'z') s[i] = (char)(s[i] - 'a' + 'A');
}

static void echo_server(void *arg) {
    struct echo *e = arg;
    e->seen_peer.len = sizeof e->seen_peer.ss;
    int fd = coil_accept(e->listener, COIL_TEST_SA(&e->seen_peer), &e->seen_peer.len);
    if (!EXPECT(fd >= 0)) return;
    e->server_fd = fd;
    int fdflags = fcntl(fd, F_GETFD);
    EXPECT(fdflags >= 0 && (fdflags & FD_CLOEXEC));
    /* Two requests: "hello" (sent with coil_send) and "world!" (coil_sendall). */
    char buf[64];
    EXPECT_EQ(coil_test_recv_all(fd, buf, 5, coil_test_in(10 * COIL_SEC), NULL), 5);
    EXPECT(memcmp(buf, "hello", 5) == 0);
    upcase(buf, 5);
    EXPECT_EQ(coil_send(fd, buf, 5, 0), 5);
    EXPECT_EQ(coil_test_recv_all(fd, buf, 6, coil_test_in(10 * COIL_SEC), NULL), 6);
    EXPECT(memcmp(buf, "world!", 6) == 0);
    upcase(buf, 6);
    EXPECT_EQ(coil_sendall(fd, buf, 6, 0, COIL_FOREVER), 6);
    /* The client closes: end of stream is 0, and stays 0. */
    EXPECT_EQ(coil_recv(fd, buf, sizeof buf, 0), 0);
    EXPECT_EQ(coil_recv(fd, buf, sizeof buf, 0), 0);
    EXPECT_EQ(coil_recv_dl(fd, buf, sizeof buf, 0, coil_test_in(COIL_SEC)), 0);
    EXPECT_EQ(coil_read(fd, buf, sizeof buf), 0);
    EXPECT_EQ(coil_close(fd), 0);
    e->server_done = true;
}

static void echo_main(void *arg) {
    struct echo *e = arg;
    struct coil_test_addr any;
    coil_test_loopback(&any, e->family, 0);
    e->listener = coil_socket(e->family, SOCK_STREAM, 0);
    if (!EXPECT(e->listener >= 0)) return;
    int fdflags = fcntl(e->listener, F_GETFD);
    EXPECT(fdflags >= 0 && (fdflags & FD_CLOEXEC));
    EXPECT_EQ(coil_bind(e->listener, COIL_TEST_SA(&any), any.len), 0);
    EXPECT_EQ(coil_listen(e->listener, 16), 0);
    EXPECT_EQ(coil_test_sockname(e->listener, &e->bound), 0);
    EXPECT_EQ(e->bound.ss.ss_family, e->family);
    EXPECT(coil_test_is_loopback(&e->bound));
    EXPECT(coil_test_port(&e->bound) != 0);

    coil_id server = coil_spawn(echo_server, e, NULL);
    EXPECT(server > 0);

    int c = coil_socket(e->family, SOCK_STREAM, 0);
    if (!EXPECT(c >= 0)) return;
    EXPECT_EQ(coil_connect(c, COIL_TEST_SA(&e->bound), e->bound.len), 0);
    EXPECT_EQ(coil_test_sockname(c, &e->client_addr), 0);
    struct coil_test_addr peer;
    EXPECT_EQ(coil_test_peername(c, &peer), 0);
    EXPECT(coil_test_same_addr(&peer, &e->bound));

    char buf[64];
    EXPECT_EQ(coil_send(c, "hello", 5, 0), 5);
    EXPECT_EQ(coil_test_recv_all(c, buf, 5, coil_test_in(10 * COIL_SEC), NULL), 5);
    EXPECT(memcmp(buf, "HELLO", 5) == 0);
    EXPECT_EQ(coil_sendall(c, "world!", 6, 0, coil_test_in(10 * COIL_SEC)), 6);
    EXPECT_EQ(coil_test_recv_all(c, buf, 6, coil_test_in(10 * COIL_SEC), NULL), 6);
    EXPECT(memcmp(buf, "WORLD!", 6) == 0);
    EXPECT_EQ(coil_close(c), 0);
    EXPECT_EQ(coil_join(server, coil_test_in(10 * COIL_SEC)), 0);
    EXPECT(e->server_done);
    EXPECT(coil_test_same_addr(&e->seen_peer, &e->client_addr));
    EXPECT_EQ(coil_close(e->listener), 0);
}

static void test_tcp_ipv4_echo(void **state) {
    (void)state;
    struct echo e = {.family = AF_INET};
    COIL_RUN_CHECKED(echo_main, &e);
    assert_int_equal(e.seen_peer.len, sizeof(struct sockaddr_in));
}

static void test_tcp_ipv6_echo(void **state) {
    (void)state;
    if (!coil_test_have_ipv6()) skip();
    struct echo e = {.family = AF_INET6};
    COIL_RUN_CHECKED(echo_main, &e);
    assert_int_equal(e.seen_peer.len, sizeof(struct sockaddr_in6));
}

/* accept with NULL address arguments; accepting from a listener made outside
 * coil, blocking, while another tasklet keeps running. */
struct null_accept {
    int listener;
    struct coil_test_addr bound;
    int accepted;
};

static void null_accept_server(void *arg) {
    struct null_accept *n = arg;
    n->accepted = coil_accept(n->listener, NULL, NULL);
}

static void null_accept_main(void *arg) {
    struct null_accept *n = arg;
    struct coil_test_ticker ticker = {0};
    coil_id t = coil_spawn(coil_test_ticker_fn, &ticker, NULL);
    coil_id s = coil_spawn(null_accept_server, n, NULL);
    EXPECT_EQ(coil_sleep(50 * COIL_MSEC), 0); /* the server waits in accept */
    EXPECT(ticker.ticks > 2);                 /* ...without blocking the thread */
    int c = coil_socket(AF_INET, SOCK_STREAM, 0);
    EXPECT_EQ(coil_connect(c, COIL_TEST_SA(&n->bound), n->bound.len), 0);
    EXPECT_EQ(coil_join(s, coil_test_in(10 * COIL_SEC)), 0);
    if (EXPECT(n->accepted >= 0)) {
        EXPECT_EQ(coil_send(c, "x", 1, 0), 1);
        char b = 0;
        EXPECT_EQ(coil_recv(n->accepted, &b, 1, 0), 1);
        EXPECT_EQ(b, 'x');
        EXPECT_EQ(coil_close(n->accepted), 0);
    }
    EXPECT_EQ(coil_close(c), 0);
    ticker.stop = true;
    coil_join(t, COIL_FOREVER);
}

static void test_tcp_accept_null_addr_blocking_listener(void **state) {
    (void)state;
    struct null_accept n = {.accepted = -1};
    n.listener = coil_test_raw_bound(AF_INET, SOCK_STREAM, 4, &n.bound);
    assert_true(n.listener >= 0);
    COIL_RUN_CHECKED(null_accept_main, &n);
    close(n.listener);
}

/* ---- half-close ------------------------------------------------------------- */

struct half {
    int client, server;
};

static void half_server(void *arg) {
    struct half *h = arg;
    char buf[64];
    size_t got = 0;
    /* Read the whole request: it ends where the client's stream ends. */
    for (;;) {
        ssize_t r = coil_recv(h->server, buf + got, sizeof buf - got, 0);
        if (r <= 0) {
            EXPECT_EQ(r, 0);
            break;
        }
        got += (size_t)r;
    }
    EXPECT_EQ(got, 7);
    EXPECT(memcmp(buf, "request", 7) == 0);
    EXPECT_EQ(coil_recv(h->server, buf, sizeof buf, 0), 0); /* still 0 */
    /* The other direction still works. */
    EXPECT_EQ(coil_sendall(h->server, "response", 8, 0, COIL_FOREVER), 8);
    EXPECT_EQ(coil_shutdown(h->server, SHUT_WR), 0);
}

static void half_main(void *arg) {
    struct half *h = arg;
    coil_id s = coil_spawn(half_server, h, NULL);
    EXPECT_EQ(coil_send(h->client, "request", 7, 0), 7);
    EXPECT_EQ(coil_shutdown(h->client, SHUT_WR), 0);
    /* Sending after one's own SHUT_WR is EPIPE (and no SIGPIPE). */
    EXPECT_EQ(coil_send(h->client, "more", 4, 0), -EPIPE);
    char buf[64];
    EXPECT_EQ(coil_test_recv_all(h->client, buf, sizeof buf, coil_test_in(10 * COIL_SEC), NULL), 8);
    EXPECT(memcmp(buf, "response", 8) == 0);
    EXPECT_EQ(coil_recv(h->client, buf, sizeof buf, 0), 0);
    EXPECT_EQ(coil_join(s, coil_test_in(10 * COIL_SEC)), 0);
    EXPECT_EQ(coil_close(h->client), 0);
    EXPECT_EQ(coil_close(h->server), 0);
}

static void run_half_close(int family) {
    struct half h;
    assert_int_equal(coil_test_raw_tcp_pair(family, &h.client, &h.server), 0);
    COIL_RUN_CHECKED(half_main, &h);
}

static void test_tcp_half_close_ipv4(void **state) {
    (void)state;
    run_half_close(AF_INET);
}

static void test_tcp_half_close_ipv6(void **state) {
    (void)state;
    if (!coil_test_have_ipv6()) skip();
    run_half_close(AF_INET6);
}

/* shutdown is callable outside a tasklet too; SHUT_RDWR ends both ways. */
static void shut_rdwr_main(void *arg) {
    struct half *h = arg;
    char buf[8];
    EXPECT_EQ(coil_recv(h->server, buf, sizeof buf, 0), 0);
    EXPECT_EQ(coil_recv(h->client, buf, sizeof buf, 0), 0);
    EXPECT_EQ(coil_send(h->client, "x", 1, 0), -EPIPE);
}

static void test_tcp_shutdown_rdwr_outside_a_tasklet(void **state) {
    (void)state;
    struct half h;
    assert_int_equal(coil_test_raw_tcp_pair(AF_INET, &h.client, &h.server), 0);
    assert_int_equal(coil_shutdown(h.client, SHUT_RDWR), 0);
    COIL_RUN_CHECKED(shut_rdwr_main, &h);
    close(h.client);
    close(h.server);
}

/* ---- zero-length buffers ---------------------------------------------------- */

/* A zero-length call must return 0 at once (coil.h: "0 ... for a
 * zero-length buffer"), even though recv(2) itself would wait for data. If
 * one waits, a watchdog sends a byte after a second to end the wait, so that
 * the test reports how long it waited instead of hanging. */
struct zero {
    struct half *h;
    bool call_done;
    int unblocked;
};

static void zero_watchdog(void *arg) {
    struct zero *z = arg;
    if (coil_sleep(COIL_SEC) != 0 || z->call_done) return;
    z->unblocked++;
    EXPECT_EQ(send(z->h->server, "!", 1, MSG_NOSIGNAL), 1);
}

enum zero_call { Z_RECV, Z_RECV_NULL, Z_RECV_DL, Z_READ, Z_SEND_NULL, Z_SEND, Z_SENDALL, Z_WRITE };
static const char *const zero_names[] = {
    "coil_recv(buf, 0)",  "coil_recv(NULL, 0)", "coil_recv_dl(buf, 0)",  "coil_read(buf, 0)",
    "coil_send(NULL, 0)", "coil_send(buf, 0)",  "coil_sendall(NULL, 0)", "coil_write(NULL, 0)"};

static void zero_one(struct zero *z, enum zero_call which) {
    int fd = z->h->client;
    char buf[4];
    z->call_done = false;
    coil_id w = coil_spawn(zero_watchdog, z, NULL);
    int unblocked = z->unblocked;
    int64_t t0 = coil_now();
    ssize_t rc = -1;
    switch (which) {
    case Z_RECV: rc = coil_recv(fd, buf, 0, 0); break;
    case Z_RECV_NULL: rc = coil_recv(fd, NULL, 0, 0); break;
    case Z_RECV_DL: rc = coil_recv_dl(fd, buf, 0, 0, coil_test_in(5 * COIL_SEC)); break;
    case Z_READ: rc = coil_read(fd, buf, 0); break;
    case Z_SEND_NULL: rc = coil_send(fd, NULL, 0, 0); break;
    case Z_SEND: rc = coil_send(fd, buf, 0, 0); break;
    case Z_SENDALL: rc = coil_sendall(fd, NULL, 0, 0, COIL_FOREVER); break;
    case Z_WRITE: rc = coil_write(fd, NULL, 0); break;
    }
    int64_t took = coil_now() - t0;
    z->call_done = true;
    coil_kill(w);
    coil_join(w, COIL_FOREVER);
    if (rc != 0 || took >= 800 * COIL_MSEC)
        fprintf(stderr, "%s returned %zd after %lld ms%s\n", zero_names[which], rc,
                (long long)(took / COIL_MSEC),
                z->unblocked > unblocked ? " (ended by the watchdog's byte)" : "");
    EXPECT_EQ(rc, 0);
    EXPECT(took < 800 * COIL_MSEC);
    coil_test_drain(fd, NULL, 0); /* the watchdog's byte, if it sent one */
}

static void zero_len_main(void *arg) {
    struct zero z = {.h = arg};
    struct half *h = z.h;
    /* Nothing has been sent: no zero-length call waits. */
    for (int c = Z_RECV; c <= Z_WRITE; c++)
        zero_one(&z, (enum zero_call)c);
    /* With data waiting, a zero-length receive returns 0 and takes nothing. */
    char buf[16] = {0};
    EXPECT_EQ(coil_send(h->server, "abc", 3, 0), 3);
    EXPECT_EQ(coil_sleep(10 * COIL_MSEC), 0);
    EXPECT_EQ(coil_recv(h->client, buf, 0, 0), 0);
    EXPECT_EQ(coil_read(h->client, buf, 0), 0);
    EXPECT_EQ(coil_test_recv_all(h->client, buf, 3, coil_test_in(10 * COIL_SEC), NULL), 3);
    EXPECT(memcmp(buf, "abc", 3) == 0);
    /* Nothing of the zero-length sends reached the peer. */
    EXPECT_EQ(coil_recv_dl(h->server, buf, sizeof buf, 0, coil_test_in(20 * COIL_MSEC)),
              -ETIMEDOUT);
}

static void test_tcp_zero_length_buffers(void **state) {
    (void)state;
    struct half h;
    assert_int_equal(coil_test_raw_tcp_pair(AF_INET, &h.client, &h.server), 0);
    COIL_RUN_CHECKED(zero_len_main, &h);
    close(h.client);
    close(h.server);
}

/* recv flags are passed through: MSG_PEEK leaves the data queued, MSG_WAITALL
 * waits for the whole length. */
static void send_def_later(void *arg) {
    struct half *h = arg;
    coil_sleep(20 * COIL_MSEC);
    EXPECT_EQ(coil_send(h->server, "def", 3, 0), 3);
}

static void peek_main(void *arg) {
    struct half *h = arg;
    char buf[16] = {0};
    EXPECT_EQ(coil_sendall(h->server, "peekaboo", 8, 0, COIL_FOREVER), 8);
    EXPECT_EQ(coil_sleep(10 * COIL_MSEC), 0);
    EXPECT_EQ(coil_recv(h->client, buf, sizeof buf, MSG_PEEK), 8);
    EXPECT(memcmp(buf, "peekaboo", 8) == 0);
    memset(buf, 0, sizeof buf);
    EXPECT_EQ(coil_recv(h->client, buf, sizeof buf, 0), 8);
    EXPECT(memcmp(buf, "peekaboo", 8) == 0);
    /* MSG_WAITALL: one call gets all 6 bytes, sent in two parts. */
    EXPECT_EQ(coil_send(h->server, "abc", 3, 0), 3);
    coil_id w = coil_spawn(send_def_later, h, NULL);
    memset(buf, 0, sizeof buf);
    EXPECT_EQ(coil_recv_dl(h->client, buf, 6, MSG_WAITALL, coil_test_in(10 * COIL_SEC)), 6);
    EXPECT(memcmp(buf, "abcdef", 6) == 0);
    EXPECT_EQ(coil_join(w, COIL_FOREVER), 0);
}

static void test_tcp_recv_flags(void **state) {
    (void)state;
    struct half h;
    assert_int_equal(coil_test_raw_tcp_pair(AF_INET, &h.client, &h.server), 0);
    COIL_RUN_CHECKED(peek_main, &h);
    close(h.client);
    close(h.server);
}

/* ---- short sends and coil_sendall -------------------------------------- */

struct bulk {
    int client, server;
    size_t len;
    uint8_t *out;
    size_t first_send; /* what the first coil_send took */
    size_t received;
    size_t bad_at;     /* offset of the first wrong byte, or SIZE_MAX */
    int sends_in_loop; /* coil_send calls the plain loop took */
    bool reader_done;
};

static void bulk_reader(void *arg) {
    struct bulk *b = arg;
    size_t cap = 65536;
    uint8_t *buf = malloc(cap);
    if (!EXPECT(buf != NULL)) return;
    for (;;) {
        ssize_t r = coil_recv_dl(b->server, buf, cap, 0, coil_test_in(30 * COIL_SEC));
        if (r <= 0) {
            EXPECT_EQ(r, 0);
            break;
        }
        size_t at = coil_test_pattern_check(buf, (size_t)r, 7, b->received);
        if (at != (size_t)r && b->bad_at == SIZE_MAX) b->bad_at = b->received + at;
        b->received += (size_t)r;
    }
    free(buf);
    b->reader_done = true;
}

static void bulk_main(void *arg) {
    struct bulk *b = arg;
    size_t len = b->len;
    /* Nobody reads yet: the send buffer fills, and the send comes back short
     * instead of waiting for the rest (the deadline only guards a hang). */
    ssize_t n = coil_send_dl(b->client, b->out, len, 0, coil_test_in(5 * COIL_SEC));
    if (!EXPECT(n > 0) || !EXPECT((size_t)n < len)) return;
    b->first_send = (size_t)n;
    size_t sent = (size_t)n;
    coil_id reader = coil_spawn(bulk_reader, b, NULL);
    /* The first half with plain coil_send, looping over short sends... */
    while (sent < len / 2) {
        n = coil_send(b->client, b->out + sent, len / 2 - sent, 0);
        if (!EXPECT(n > 0)) return;
        sent += (size_t)n;
        b->sends_in_loop++;
    }
    /* ...the rest in one coil_sendall, which returns the full count. */
    EXPECT_EQ(coil_sendall(b->client, b->out + sent, len - sent, 0, coil_test_in(30 * COIL_SEC)),
              len - sent);
    EXPECT_EQ(coil_close(b->client), 0);
    EXPECT_EQ(coil_join(reader, coil_test_in(30 * COIL_SEC)), 0);
    EXPECT_EQ(coil_close(b->server), 0);
}

static void test_tcp_short_send_and_sendall(void **state) {
    (void)state;
    struct bulk b = {.len = coil_test_scaled(8u << 20, 1u << 20), .bad_at = SIZE_MAX};
    struct coil_test_addr a;
    /* Small buffers on both ends: the receive buffer is set on the listener,
     * before listen, so that the accepted socket starts with it. */
    int l = coil_test_raw_bound(AF_INET, SOCK_STREAM, -1, &a);
    assert_true(l >= 0);
    assert_int_equal(coil_test_setsockopt_int(l, SOL_SOCKET, SO_RCVBUF, 4096), 0);
    assert_int_equal(listen(l, 1), 0);
    b.client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(b.client >= 0);
    assert_int_equal(coil_test_setsockopt_int(b.client, SOL_SOCKET, SO_SNDBUF, 4096), 0);
    assert_int_equal(connect(b.client, COIL_TEST_SA(&a), a.len), 0);
    b.server = accept4(l, NULL, NULL, SOCK_CLOEXEC);
    assert_true(b.server >= 0);
    close(l);
    b.out = malloc(b.len);
    assert_non_null(b.out);
    coil_test_pattern_fill(b.out, b.len, 7, 0);
    COIL_RUN_CHECKED(bulk_main, &b);
    free(b.out);
    print_message("first coil_send took %zu of %zu bytes; %d more sends for the first half\n",
                  b.first_send, b.len, b.sends_in_loop);
    assert_true(b.reader_done);
    assert_int_equal(b.received, b.len);
    assert_int_equal(b.bad_at, SIZE_MAX);
}

/* ---- a long checksummed stream ------------------------------------------- */

struct stream_side {
    int fd;
    uint64_t seed;
    size_t len;
    size_t done;
    struct coil_test_sum sum;
    size_t bad_at;
    bool finished;
};

static void stream_sender(void *arg) {
    struct stream_side *s = arg;
    size_t cap = 256 * 1024;
    uint8_t *buf = malloc(cap);
    if (!EXPECT(buf != NULL)) return;
    uint64_t rng = s->seed;
    while (s->done < s->len) {
        /* chunks of 1 byte .. 256 KiB, mostly large */
        rng = coil_test_mix64(rng);
        size_t n = (rng & 3) == 0 ? (size_t)(rng >> 8) % 4096 + 1 : (size_t)(rng >> 8) % cap + 1;
        if (n > s->len - s->done) n = s->len - s->done;
        coil_test_pattern_fill(buf, n, s->seed, s->done);
        coil_test_sum_add(&s->sum, buf, n);
        ssize_t r = coil_sendall(s->fd, buf, n, 0, coil_test_in(60 * COIL_SEC));
        if (!EXPECT_EQ(r, n)) break;
        s->done += n;
    }
    free(buf);
    EXPECT_EQ(coil_shutdown(s->fd, SHUT_WR), 0);
    s->finished = true;
}

static void stream_receiver(void *arg) {
    struct stream_side *s = arg;
    size_t cap = 200 * 1024 + 13;
    uint8_t *buf = malloc(cap);
    if (!EXPECT(buf != NULL)) return;
    uint64_t rng = s->seed ^ 0x5555;
    for (;;) {
        rng = coil_test_mix64(rng);
        size_t want = (size_t)(rng >> 8) % cap + 1;
        ssize_t r = coil_recv_dl(s->fd, buf, want, 0, coil_test_in(60 * COIL_SEC));
        if (r <= 0) {
            EXPECT_EQ(r, 0);
            break;
        }
        if (!EXPECT((size_t)r <= want)) break;
        size_t at = coil_test_pattern_check(buf, (size_t)r, s->seed, s->done);
        if (at != (size_t)r && s->bad_at == SIZE_MAX) s->bad_at = s->done + at;
        coil_test_sum_add(&s->sum, buf, (size_t)r);
        s->done += (size_t)r;
    }
    free(buf);
    s->finished = true;
}

struct stream {
    int a, b;
    size_t len;
    bool duplex;
    struct stream_side send_ab, recv_ab, send_ba, recv_ba;
};

static void stream_main(void *arg) {
    struct stream *st = arg;
    st->send_ab = (struct stream_side){.fd = st->a, .seed = 11, .len = st->len, .bad_at = SIZE_MAX};
    st->recv_ab = (struct stream_side){.fd = st->b, .seed = 11, .bad_at = SIZE_MAX};
    st->send_ba = (struct stream_side){.fd = st->b, .seed = 12, .len = st->len, .bad_at = SIZE_MAX};
    st->recv_ba = (struct stream_side){.fd = st->a, .seed = 12, .bad_at = SIZE_MAX};
    coil_id ids[4];
    int n = 0;
    ids[n++] = coil_spawn(stream_receiver, &st->recv_ab, NULL);
    ids[n++] = coil_spawn(stream_sender, &st->send_ab, NULL);
    if (st->duplex) {
        ids[n++] = coil_spawn(stream_receiver, &st->recv_ba, NULL);
        ids[n++] = coil_spawn(stream_sender, &st->send_ba, NULL);
    }
    for (int i = 0; i < n; i++)
        EXPECT_EQ(coil_join(ids[i], coil_test_in(120 * COIL_SEC)), 0);
}

static void check_stream_side(const struct stream_side *tx, const struct stream_side *rx) {
    assert_true(tx->finished);
    assert_true(rx->finished);
    assert_int_equal(tx->done, tx->len);
    assert_int_equal(rx->done, tx->len);
    if (rx->bad_at != SIZE_MAX) fail_msg("byte %zu of the stream arrived wrong", rx->bad_at);
    assert_int_equal(rx->sum.bytes, tx->sum.bytes);
    assert_true(rx->sum.a == tx->sum.a && rx->sum.b == tx->sum.b);
}

static size_t stream_bytes(void) {
    size_t dflt = coil_test_scaled((size_t)1 << 30, 4u << 20);
    return coil_test_env_bytes("COIL_TEST_STREAM_BYTES", dflt);
}

static void run_stream(int family, bool duplex) {
    struct stream st = {.len = stream_bytes(), .duplex = duplex};
    if (duplex) st.len /= 2;
    assert_int_equal(coil_test_raw_tcp_pair(family, &st.a, &st.b), 0);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    COIL_RUN_CHECKED(stream_main, &st);
    int64_t ms = coil_test_ms_since(&t0);
    print_message("%zu MiB %s in %lld ms\n", (st.len >> 20) * (duplex ? 2 : 1),
                  duplex ? "both ways" : "one way", (long long)ms);
    check_stream_side(&st.send_ab, &st.recv_ab);
    if (duplex) check_stream_side(&st.send_ba, &st.recv_ba);
    close(st.a);
    close(st.b);
}

static void test_tcp_stream_integrity_ipv4(void **state) {
    (void)state;
    run_stream(AF_INET, false);
}

static void test_tcp_stream_integrity_ipv6_duplex(void **state) {
    (void)state;
    if (!coil_test_have_ipv6()) skip();
    run_stream(AF_INET6, true);
}

/* ---- many tasklets, each with its own connection ---------------------- */

struct many {
    int listener[2];
    struct coil_test_addr addr[2];
    int families;
    int clients;
    int rounds;
    int accepted;
    int handlers_done;
    int clients_ok;
};

static void many_handler(void *arg) {
    int fd = (int)(intptr_t)arg;
    char buf[4096];
    for (;;) {
        ssize_t r = coil_recv_dl(fd, buf, sizeof buf, 0, coil_test_in(60 * COIL_SEC));
        if (r <= 0) {
            EXPECT_EQ(r, 0);
            break;
        }
        if (!EXPECT_EQ(coil_sendall(fd, buf, (size_t)r, 0, coil_test_in(60 * COIL_SEC)), r)) break;
    }
    EXPECT_EQ(coil_close(fd), 0);
}

struct many_acceptor {
    struct many *m;
    int which;
    int expect;
};

static void many_acceptor_fn(void *arg) {
    struct many_acceptor *a = arg;
    for (int i = 0; i < a->expect; i++) {
        int fd = coil_accept_dl(a->m->listener[a->which], NULL, NULL, coil_test_in(60 * COIL_SEC));
        if (!EXPECT(fd >= 0)) return;
        a->m->accepted++;
        EXPECT(coil_spawn(many_handler, (void *)(intptr_t)fd, NULL) > 0);
    }
}

struct many_client {
    struct many *m;
    int index;
};

static void many_client_fn(void *arg) {
    struct many_client *c = arg;
    struct many *m = c->m;
    int which = c->index % m->families;
    struct coil_test_addr *a = &m->addr[which];
    int fd = coil_socket(a->ss.ss_family, SOCK_STREAM, 0);
    if (!EXPECT(fd >= 0)) return;
    bool ok = EXPECT_EQ(coil_connect(fd, COIL_TEST_SA(a), a->len), 0);
    uint8_t out[4096], in[4096];
    uint64_t rng = (uint64_t)c->index + 1, off = 0;
    for (int r = 0; ok && r < m->rounds; r++) {
        rng = coil_test_mix64(rng);
        size_t n = (size_t)(rng % sizeof out) + 1;
        coil_test_pattern_fill(out, n, (uint64_t)c->index, off);
        ok = EXPECT_EQ(coil_sendall(fd, out, n, 0, coil_test_in(60 * COIL_SEC)), n) &&
             EXPECT_EQ(coil_test_recv_all(fd, in, n, coil_test_in(60 * COIL_SEC), NULL), n) &&
             EXPECT(memcmp(in, out, n) == 0);
        off += n;
    }
    EXPECT_EQ(coil_close(fd), 0);
    if (ok) m->clients_ok++;
}

static void many_main(void *arg) {
    struct many *m = arg;
    struct many_acceptor acc[2];
    coil_id acc_ids[2];
    for (int f = 0; f < m->families; f++) {
        acc[f] = (struct many_acceptor){.m = m, .which = f};
        for (int i = 0; i < m->clients; i++)
            if (i % m->families == f) acc[f].expect++;
        acc_ids[f] = coil_spawn(many_acceptor_fn, &acc[f], NULL);
    }
    struct many_client *cl = calloc((size_t)m->clients, sizeof *cl);
    coil_id *ids = calloc((size_t)m->clients, sizeof *ids);
    if (!EXPECT(cl && ids)) return;
    for (int i = 0; i < m->clients; i++) {
        cl[i] = (struct many_client){.m = m, .index = i};
        ids[i] = coil_spawn(many_client_fn, &cl[i], &(coil_spawn_opts){.stack_size = 64 * 1024});
        EXPECT(ids[i] > 0);
    }
    for (int i = 0; i < m->clients; i++)
        EXPECT_EQ(coil_join(ids[i], coil_test_in(60 * COIL_SEC)), 0);
    for (int f = 0; f < m->families; f++)
        EXPECT_EQ(coil_join(acc_ids[f], coil_test_in(60 * COIL_SEC)), 0);
    free(cl);
    free(ids);
}

static void test_tcp_many_tasklets_own_connections(void **state) {
    (void)state;
    struct many m = {.clients = (int)coil_test_scaled(500, 40), .rounds = 10};
    m.families = coil_test_have_ipv6() ? 2 : 1;
    for (int f = 0; f < m.families; f++) {
        m.listener[f] = coil_test_raw_bound(f ? AF_INET6 : AF_INET, SOCK_STREAM, 128, &m.addr[f]);
        assert_true(m.listener[f] >= 0);
    }
    COIL_RUN_CHECKED(many_main, &m);
    assert_int_equal(m.accepted, m.clients);
    assert_int_equal(m.clients_ok, m.clients);
    for (int f = 0; f < m.families; f++)
        close(m.listener[f]);
}

/* ---- fds made outside coil: O_NONBLOCK or not ---------------------------- */

struct foreign {
    int listener; /* blocking, made with socket(2) */
    struct coil_test_addr bound;
    int client; /* O_NONBLOCK, made with socket(2) */
    int server; /* blocking, from accept4(2) */
    long ticks_during_recv;
};

static void foreign_sender(void *arg) {
    struct foreign *f = arg;
    coil_sleep(50 * COIL_MSEC);
    EXPECT_EQ(coil_send(f->server, "late", 4, 0), 4);
    coil_sleep(50 * COIL_MSEC);
    EXPECT_EQ(send(f->client, "back", 4, MSG_NOSIGNAL), 4);
}

static void foreign_main(void *arg) {
    struct foreign *f = arg;
    /* connect on an O_NONBLOCK socket waits for the handshake: 0, not
     * -EINPROGRESS. */
    EXPECT_EQ(coil_connect(f->client, COIL_TEST_SA(&f->bound), f->bound.len), 0);
    f->server = coil_accept(f->listener, NULL, NULL);
    if (!EXPECT(f->server >= 0)) return;
    coil_id s = coil_spawn(foreign_sender, f, NULL);
    struct coil_test_ticker ticker = {0};
    coil_id t = coil_spawn(coil_test_ticker_fn, &ticker, NULL);
    char buf[8];
    /* O_NONBLOCK fd, nothing there yet: waits (no -EAGAIN). */
    EXPECT_EQ(coil_recv(f->client, buf, sizeof buf, 0), 4);
    EXPECT(memcmp(buf, "late", 4) == 0);
    /* Blocking fd: waits too, without blocking the scheduler. */
    long before = ticker.ticks;
    EXPECT_EQ(coil_recv(f->server, buf, sizeof buf, 0), 4);
    EXPECT(memcmp(buf, "back", 4) == 0);
    f->ticks_during_recv = ticker.ticks - before;
    ticker.stop = true;
    EXPECT_EQ(coil_join(s, COIL_FOREVER), 0);
    EXPECT_EQ(coil_join(t, COIL_FOREVER), 0);
    /* Their blocking mode is not changed behind the program's back. */
    EXPECT(fcntl(f->client, F_GETFL) & O_NONBLOCK);
    EXPECT(!(fcntl(f->server, F_GETFL) & O_NONBLOCK));
    EXPECT(!(fcntl(f->listener, F_GETFL) & O_NONBLOCK));
    EXPECT_EQ(coil_close(f->server), 0);
}

static void test_tcp_fds_made_outside_coil(void **state) {
    (void)state;
    struct foreign f;
    f.listener = coil_test_raw_bound(AF_INET, SOCK_STREAM, 4, &f.bound);
    assert_true(f.listener >= 0);
    f.client = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    assert_true(f.client >= 0);
    COIL_RUN_CHECKED(foreign_main, &f);
    assert_true(f.ticks_during_recv > 2);
    close(f.client);
    close(f.listener);
}

/* ---- waiting for I/O is not a deadlock ------------------------------------- */

/* The only tasklet waits on a socket that only another thread (not coil)
 * will write to: coil_run must wait for it, not call it a deadlock. */
struct lone {
    int a, b;
    ssize_t rc;
    char buf[8];
};

static void *late_writer_thread(void *arg) {
    struct lone *l = arg;
    struct timespec ts = {0, 200 * 1000 * 1000};
    nanosleep(&ts, NULL);
    ssize_t w = send(l->b, "wake", 4, MSG_NOSIGNAL);
    (void)w;
    return NULL;
}

static void lone_main(void *arg) {
    struct lone *l = arg;
    l->rc = coil_recv(l->a, l->buf, sizeof l->buf, 0);
}

static void test_tcp_io_wait_is_not_a_deadlock(void **state) {
    (void)state;
    struct lone l = {.rc = -1};
    assert_int_equal(coil_test_raw_tcp_pair(AF_INET, &l.a, &l.b), 0);
    pthread_t t;
    assert_int_equal(pthread_create(&t, NULL, late_writer_thread, &l), 0);
    COIL_RUN_CHECKED(lone_main, &l);
    pthread_join(t, NULL);
    assert_int_equal(l.rc, 4);
    assert_memory_equal(l.buf, "wake", 4);
    close(l.a);
    close(l.b);
}

/* ---- two schedulers, one connection ---------------------------------------- */

/* The two ends of a connection in two schedulers on two threads: a stream
 * each way at once. */
struct two_sched {
    struct stream_side tx, rx;
    int run_rc;
};

static void two_sched_main(void *arg) {
    struct two_sched *t = arg;
    coil_id a = coil_spawn(stream_sender, &t->tx, NULL);
    coil_id b = coil_spawn(stream_receiver, &t->rx, NULL);
    EXPECT_EQ(coil_join(a, coil_test_in(60 * COIL_SEC)), 0);
    EXPECT_EQ(coil_join(b, coil_test_in(60 * COIL_SEC)), 0);
}

static void *two_sched_thread(void *arg) {
    struct two_sched *t = arg;
    t->run_rc = coil_run(two_sched_main, t);
    return NULL;
}

static void test_tcp_between_two_schedulers(void **state) {
    (void)state;
    int a, b;
    assert_int_equal(coil_test_raw_tcp_pair(AF_INET, &a, &b), 0);
    size_t len = coil_test_scaled(32u << 20, 2u << 20);
    struct two_sched x = {.tx = {.fd = a, .seed = 31, .len = len, .bad_at = SIZE_MAX},
                          .rx = {.fd = a, .seed = 32, .bad_at = SIZE_MAX}};
    struct two_sched y = {.tx = {.fd = b, .seed = 32, .len = len, .bad_at = SIZE_MAX},
                          .rx = {.fd = b, .seed = 31, .bad_at = SIZE_MAX}};
    coil_test_reset_failures();
    pthread_t tx, ty;
    assert_int_equal(pthread_create(&tx, NULL, two_sched_thread, &x), 0);
    assert_int_equal(pthread_create(&ty, NULL, two_sched_thread, &y), 0);
    pthread_join(tx, NULL);
    pthread_join(ty, NULL);
    coil_test_assert_no_failure();
    assert_int_equal(x.run_rc, 0);
    assert_int_equal(y.run_rc, 0);
    check_stream_side(&x.tx, &y.rx);
    check_stream_side(&y.tx, &x.rx);
    close(a);
    close(b);
}

/* ---- lengths beyond what one system call moves ----------------------------- */

/* Linux moves at most 0x7ffff000 bytes per call and io_uring results are
 * 32-bit: a 3 GiB length must still give a sane (positive, not wrapped)
 * count. The buffers are untouched anonymous mappings; only the few KiB
 * that move are ever read or written. */
struct huge {
    int a, b;
    char *buf;
    size_t len;
    ssize_t send_rc, recv_rc, read_rc;
};

static void huge_main(void *arg) {
    struct huge *h = arg;
    h->send_rc = coil_send_dl(h->a, h->buf, h->len, 0, coil_test_in(5 * COIL_SEC));
    EXPECT_EQ(send(h->b, "five!", 5, MSG_NOSIGNAL), 5);
    h->recv_rc = coil_recv_dl(h->a, h->buf, h->len, 0, coil_test_in(5 * COIL_SEC));
    EXPECT_EQ(send(h->b, "more", 4, MSG_NOSIGNAL), 4);
    h->read_rc = coil_read_dl(h->a, h->buf, h->len, coil_test_in(5 * COIL_SEC));
}

static void test_tcp_huge_lengths(void **state) {
    (void)state;
    if (coil_test_under_valgrind()) skip(); /* a 3 GiB mapping */
    struct huge h = {.len = (size_t)3 << 30};
    h.buf = mmap(NULL, h.len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
    if (h.buf == MAP_FAILED) skip();
    struct coil_test_addr addr;
    int l = coil_test_raw_bound(AF_INET, SOCK_STREAM, -1, &addr);
    assert_true(l >= 0);
    assert_int_equal(coil_test_setsockopt_int(l, SOL_SOCKET, SO_RCVBUF, 4096), 0);
    assert_int_equal(listen(l, 1), 0);
    h.a = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(coil_test_setsockopt_int(h.a, SOL_SOCKET, SO_SNDBUF, 4096), 0);
    assert_int_equal(connect(h.a, COIL_TEST_SA(&addr), addr.len), 0);
    h.b = accept(l, NULL, NULL);
    assert_true(h.b >= 0);
    close(l);
    COIL_RUN_CHECKED(huge_main, &h);
    munmap(h.buf, h.len);
    close(h.a);
    close(h.b);
    print_message("3 GiB send: %zd, recv: %zd, read: %zd\n", h.send_rc, h.recv_rc, h.read_rc);
    assert_true(h.send_rc > 0 && h.send_rc <= 0x7ffff000);
    assert_int_equal(h.recv_rc, 5);
    assert_int_equal(h.read_rc, 4);
}

int main(void) {

    coil_test_apply_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_tcp_ipv4_echo),
        cmocka_unit_test(test_tcp_ipv6_echo),
        cmocka_unit_test(test_tcp_accept_null_addr_blocking_listener),
        cmocka_unit_test(test_tcp_half_close_ipv4),
        cmocka_unit_test(test_tcp_half_close_ipv6),
        cmocka_unit_test(test_tcp_shutdown_rdwr_outside_a_tasklet),
        cmocka_unit_test(test_tcp_zero_length_buffers),
        cmocka_unit_test(test_tcp_recv_flags),
        cmocka_unit_test(test_tcp_short_send_and_sendall),
        cmocka_unit_test(test_tcp_stream_integrity_ipv4),
        cmocka_unit_test(test_tcp_stream_integrity_ipv6_duplex),
        cmocka_unit_test(test_tcp_many_tasklets_own_connections),
        cmocka_unit_test(test_tcp_fds_made_outside_coil),
        cmocka_unit_test(test_tcp_io_wait_is_not_a_deadlock),
        cmocka_unit_test(test_tcp_between_two_schedulers),
        cmocka_unit_test(test_tcp_huge_lengths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
