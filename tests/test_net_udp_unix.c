/* Datagrams and Unix sockets: UDP round trips over 127.0.0.1 and ::1
 * (coil_recvfrom fills in the sender's address and its length; boundaries
 * are kept; truncation; an empty datagram is 0, not an end of stream; an
 * address buffer too small gets the start and the full length),
 * connected UDP with coil_send / coil_recv; Unix stream sockets from
 * socketpair (blocking and O_NONBLOCK) and bound to a path in a temporary
 * directory (connect, accept, a large transfer, -ENOENT and -ECONNREFUSED);
 * Unix datagram sockets, unnamed pairs and bound paths. */
#define _GNU_SOURCE
#include "coil_test.h"

#include <sys/stat.h>

/* ---- UDP -------------------------------------------------------------------- */

struct udp {
    int family;
    int a, b;
    struct coil_test_addr a_addr, b_addr;
};

static void udp_peer(void *arg) {
    struct udp *u = arg;
    char buf[2048];
    /* Echo three datagrams back to where they came from, upper-cased. */
    for (int i = 0; i < 3; i++) {
        struct coil_test_addr from;
        memset(&from, 0x55, sizeof from);
        from.len = sizeof from.ss;
        ssize_t n = coil_recvfrom(u->b, buf, sizeof buf, 0, COIL_TEST_SA(&from), &from.len,
                                  coil_test_in(10 * COIL_SEC));
        if (!EXPECT(n >= 0)) return;
        EXPECT(coil_test_same_addr(&from, &u->a_addr));
        EXPECT_EQ(from.len,
                  u->family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
        for (ssize_t j = 0; j < n; j++)
            if (buf[j] >= 'a' && buf[j] <= 'z') buf[j] = (char)(buf[j] - 32);
        EXPECT_EQ(coil_sendto(u->b, buf, (size_t)n, 0, COIL_TEST_SA(&from), from.len,
                              coil_test_in(10 * COIL_SEC)),
                  n);
    }
}

static void udp_main(void *arg) {
    struct udp *u = arg;
    struct coil_test_addr any;
    coil_test_loopback(&any, u->family, 0);
    u->a = coil_socket(u->family, SOCK_DGRAM, 0);
    u->b = coil_socket(u->family, SOCK_DGRAM, 0);
    if (!EXPECT(u->a >= 0 && u->b >= 0)) return;
    EXPECT_EQ(coil_bind(u->a, COIL_TEST_SA(&any), any.len), 0);
    EXPECT_EQ(coil_bind(u->b, COIL_TEST_SA(&any), any.len), 0);
    EXPECT_EQ(coil_test_sockname(u->a, &u->a_addr), 0);
    EXPECT_EQ(coil_test_sockname(u->b, &u->b_addr), 0);
    EXPECT(coil_test_port(&u->a_addr) != 0);
    coil_id peer = coil_spawn(udp_peer, u, NULL);
    /* Three datagrams in a row: 1, 1000 and 0 bytes. Each arrives alone. */
    static char big[1000];
    memset(big, 'x', sizeof big);
    int64_t dl = coil_test_in(10 * COIL_SEC);
    EXPECT_EQ(coil_sendto(u->a, "q", 1, 0, COIL_TEST_SA(&u->b_addr), u->b_addr.len, dl), 1);
    EXPECT_EQ(coil_sendto(u->a, big, sizeof big, 0, COIL_TEST_SA(&u->b_addr), u->b_addr.len, dl),
              1000);
    EXPECT_EQ(coil_sendto(u->a, "", 0, 0, COIL_TEST_SA(&u->b_addr), u->b_addr.len, dl), 0);
    char buf[2048];
    struct coil_test_addr from;
    from.len = sizeof from.ss;
    EXPECT_EQ(coil_recvfrom(u->a, buf, sizeof buf, 0, COIL_TEST_SA(&from), &from.len, dl), 1);
    EXPECT_EQ(buf[0], 'Q');
    EXPECT(coil_test_same_addr(&from, &u->b_addr));
    /* addr and addrlen may be NULL */
    EXPECT_EQ(coil_recvfrom(u->a, buf, sizeof buf, 0, NULL, NULL, dl), 1000);
    EXPECT(buf[0] == 'X' && buf[999] == 'X');
    /* the empty datagram: 0, and the address is still filled in */
    memset(&from, 0, sizeof from);
    from.len = sizeof from.ss;
    EXPECT_EQ(coil_recvfrom(u->a, buf, sizeof buf, 0, COIL_TEST_SA(&from), &from.len, dl), 0);
    EXPECT(coil_test_same_addr(&from, &u->b_addr));
    EXPECT_EQ(coil_join(peer, dl), 0);

    /* Truncation: the rest of a datagram is dropped; MSG_TRUNC tells the
     * real length. */
    EXPECT_EQ(coil_sendto(u->b, big, 100, 0, COIL_TEST_SA(&u->a_addr), u->a_addr.len, dl), 100);
    EXPECT_EQ(coil_sendto(u->b, big, 100, 0, COIL_TEST_SA(&u->a_addr), u->a_addr.len, dl), 100);
    EXPECT_EQ(coil_sendto(u->b, "z", 1, 0, COIL_TEST_SA(&u->a_addr), u->a_addr.len, dl), 1);
    EXPECT_EQ(coil_recvfrom(u->a, buf, 10, 0, NULL, NULL, dl), 10);
    EXPECT_EQ(coil_recvfrom(u->a, buf, 10, MSG_TRUNC, NULL, NULL, dl), 100);
    EXPECT_EQ(coil_recvfrom(u->a, buf, sizeof buf, 0, NULL, NULL, dl), 1);
    EXPECT_EQ(buf[0], 'z');

    /* Connected UDP: coil_connect, then coil_send / coil_recv. */
    EXPECT_EQ(coil_connect(u->a, COIL_TEST_SA(&u->b_addr), u->b_addr.len), 0);
    EXPECT_EQ(coil_send(u->a, "conn", 4, 0), 4);
    from.len = sizeof from.ss;
    EXPECT_EQ(coil_recvfrom(u->b, buf, sizeof buf, 0, COIL_TEST_SA(&from), &from.len, dl), 4);
    EXPECT(coil_test_same_addr(&from, &u->a_addr));
    EXPECT_EQ(coil_sendto(u->b, "back", 4, 0, COIL_TEST_SA(&u->a_addr), u->a_addr.len, dl), 4);
    EXPECT_EQ(coil_recv(u->a, buf, sizeof buf, 0), 4);
    EXPECT(memcmp(buf, "back", 4) == 0);
    EXPECT_EQ(coil_write(u->a, "wr", 2), 2);
    EXPECT_EQ(coil_read_dl(u->b, buf, sizeof buf, dl), 2);
    EXPECT(memcmp(buf, "wr", 2) == 0);
    EXPECT_EQ(coil_close(u->a), 0);
    EXPECT_EQ(coil_close(u->b), 0);
}

static void test_udp_ipv4_round_trip(void **state) {
    (void)state;
    struct udp u = {.family = AF_INET};
    COIL_RUN_CHECKED(udp_main, &u);
}

static void test_udp_ipv6_round_trip(void **state) {
    (void)state;
    if (!coil_test_have_ipv6()) skip();
    struct udp u = {.family = AF_INET6};
    COIL_RUN_CHECKED(udp_main, &u);
}

/* addrlen as in libc: a buffer too small for the address gets the start of
 * it, and *addrlen says how long the whole address is. */
struct short_name {
    int rx, tx;
    struct coil_test_addr rx_addr, tx_addr;
    socklen_t len;
    struct sockaddr_in6 got;
    ssize_t rc;
};

static void short_name_main(void *arg) {
    struct short_name *n = arg;
    EXPECT_EQ(coil_sendto(n->tx, "abc", 3, 0, COIL_TEST_SA(&n->rx_addr), n->rx_addr.len,
                          coil_test_in(5 * COIL_SEC)),
              3);
    char buf[8];
    memset(&n->got, 0x55, sizeof n->got);
    n->len = 8; /* family and port only */
    n->rc = coil_recvfrom(n->rx, buf, sizeof buf, 0, (struct sockaddr *)&n->got, &n->len,
                          coil_test_in(5 * COIL_SEC));
}

static void test_udp_recvfrom_short_address_buffer(void **state) {
    (void)state;
    if (!coil_test_have_ipv6()) skip();
    /* qemu-user converts the whole address into the caller's buffer, past
     * the length given: the kernel's truncation is not what it emulates. */
    if (coil_test_under_qemu()) skip();
    struct short_name n;
    n.rx = coil_test_raw_bound(AF_INET6, SOCK_DGRAM, -1, &n.rx_addr);
    n.tx = coil_test_raw_bound(AF_INET6, SOCK_DGRAM, -1, &n.tx_addr);
    assert_true(n.rx >= 0 && n.tx >= 0);
    COIL_RUN_CHECKED(short_name_main, &n);
    close(n.rx);
    close(n.tx);
    assert_int_equal(n.rc, 3);
    assert_int_equal(n.len, sizeof(struct sockaddr_in6));
    assert_int_equal(n.got.sin6_family, AF_INET6);
    assert_int_equal(n.got.sin6_port, ((struct sockaddr_in6 *)&n.tx_addr.ss)->sin6_port);
    /* nothing beyond the 8 bytes given was written */
    unsigned char after[sizeof n.got - 8];
    memset(after, 0x55, sizeof after);
    assert_memory_equal((char *)&n.got + 8, after, sizeof after);
}

/* An address buffer without a length to say its size: the datagram is
 * received and the buffer is left alone (no room was given for the
 * address), on every platform. */
struct no_len {
    int rx, tx;
    struct coil_test_addr rx_addr, tx_addr;
    unsigned char got[sizeof(struct sockaddr_in6)];
    ssize_t rc;
    char buf[8];
};

static void no_len_main(void *arg) {
    struct no_len *n = arg;
    EXPECT_EQ(coil_sendto(n->tx, "abc", 3, 0, COIL_TEST_SA(&n->rx_addr), n->rx_addr.len,
                          coil_test_in(5 * COIL_SEC)),
              3);
    memset(n->got, 0x55, sizeof n->got);
    n->rc = coil_recvfrom(n->rx, n->buf, sizeof n->buf, 0, (struct sockaddr *)n->got, NULL,
                          coil_test_in(5 * COIL_SEC));
}

static void test_udp_recvfrom_address_without_length(void **state) {
    (void)state;
    struct no_len n;
    n.rx = coil_test_raw_bound(AF_INET, SOCK_DGRAM, -1, &n.rx_addr);
    n.tx = coil_test_raw_bound(AF_INET, SOCK_DGRAM, -1, &n.tx_addr);
    assert_true(n.rx >= 0 && n.tx >= 0);
    COIL_RUN_CHECKED(no_len_main, &n);
    close(n.rx);
    close(n.tx);
    assert_int_equal(n.rc, 3);
    assert_memory_equal(n.buf, "abc", 3);
    unsigned char untouched[sizeof n.got];
    memset(untouched, 0x55, sizeof untouched);
    assert_memory_equal(n.got, untouched, sizeof untouched);
}

/* Many datagrams from several senders to one receiver: each arrives whole,
 * and each sender's arrive in order (loopback does not reorder or drop while
 * the receive buffer has room). */
struct udp_many {
    int rx;
    struct coil_test_addr rx_addr;
    int senders, per_sender;
    int got[8];
    int bad;
};

struct udp_sender {
    struct udp_many *m;
    int index;
};

static void udp_sender_fn(void *arg) {
    struct udp_sender *s = arg;
    int fd = coil_socket(AF_INET, SOCK_DGRAM, 0);
    if (!EXPECT(fd >= 0)) return;
    for (int i = 0; i < s->m->per_sender; i++) {
        int msg[2] = {s->index, i};
        EXPECT_EQ(coil_sendto(fd, msg, sizeof msg, 0, COIL_TEST_SA(&s->m->rx_addr),
                              s->m->rx_addr.len, coil_test_in(10 * COIL_SEC)),
                  sizeof msg);
        if (i % 16 == 15) coil_sleep(COIL_MSEC); /* let the receiver keep up */
    }
    coil_close(fd);
}

static void udp_many_main(void *arg) {
    struct udp_many *m = arg;
    struct udp_sender s[8];
    for (int i = 0; i < m->senders; i++) {
        s[i] = (struct udp_sender){.m = m, .index = i};
        coil_spawn(udp_sender_fn, &s[i], NULL);
    }
    for (int n = 0; n < m->senders * m->per_sender; n++) {
        int msg[3];
        ssize_t r =
            coil_recvfrom(m->rx, msg, sizeof msg, 0, NULL, NULL, coil_test_in(10 * COIL_SEC));
        if (!EXPECT_EQ(r, 2 * sizeof(int))) break;
        if (msg[0] < 0 || msg[0] >= m->senders || msg[1] != m->got[msg[0]])
            m->bad++;
        else
            m->got[msg[0]]++;
    }
}

static void test_udp_many_datagrams(void **state) {
    (void)state;
    struct udp_many m = {.senders = 8, .per_sender = (int)coil_test_scaled(500, 50)};
    m.rx = coil_test_raw_bound(AF_INET, SOCK_DGRAM, -1, &m.rx_addr);
    assert_true(m.rx >= 0);
    assert_int_equal(coil_test_setsockopt_int(m.rx, SOL_SOCKET, SO_RCVBUF, 1 << 20), 0);
    COIL_RUN_CHECKED(udp_many_main, &m);
    close(m.rx);
    assert_int_equal(m.bad, 0);
    for (int i = 0; i < m.senders; i++)
        assert_int_equal(m.got[i], m.per_sender);
}

/* ---- Unix stream: socketpair ------------------------------------------------- */

struct upair {
    int a, b;
    bool nonblock;
    size_t len;
    uint8_t *data;
    size_t got, bad_at;
};

static void upair_reader(void *arg) {
    struct upair *p = arg;
    uint8_t buf[7000];
    for (;;) {
        ssize_t r = coil_read_dl(p->b, buf, sizeof buf, coil_test_in(10 * COIL_SEC));
        if (r <= 0) {
            EXPECT_EQ(r, 0);
            break;
        }
        if (p->bad_at == SIZE_MAX && memcmp(buf, p->data + p->got, (size_t)r) != 0)
            p->bad_at = p->got;
        p->got += (size_t)r;
    }
    /* the other way, after the end of stream */
    EXPECT_EQ(coil_send(p->b, "bye", 3, 0), 3);
}

static void upair_main(void *arg) {
    struct upair *p = arg;
    coil_id r = coil_spawn(upair_reader, p, NULL);
    /* The reader waits on an empty socket (O_NONBLOCK or not) first. */
    EXPECT_EQ(coil_sleep(20 * COIL_MSEC), 0);
    EXPECT_EQ(coil_sendall(p->a, p->data, p->len / 2, 0, coil_test_in(10 * COIL_SEC)), p->len / 2);
    size_t done = p->len / 2;
    while (done < p->len) {
        ssize_t n = coil_write(p->a, p->data + done, p->len - done);
        if (!EXPECT(n > 0)) return;
        done += (size_t)n;
    }
    EXPECT_EQ(coil_shutdown(p->a, SHUT_WR), 0);
    char buf[8];
    EXPECT_EQ(coil_test_recv_all(p->a, buf, 3, coil_test_in(10 * COIL_SEC), NULL), 3);
    EXPECT(memcmp(buf, "bye", 3) == 0);
    EXPECT_EQ(coil_join(r, coil_test_in(10 * COIL_SEC)), 0);
    EXPECT_EQ(coil_close(p->b), 0);
    EXPECT_EQ(coil_recv(p->a, buf, sizeof buf, 0), 0);
    EXPECT_EQ(coil_close(p->a), 0);
}

static void run_upair(bool nonblock) {
    struct upair p = {
        .nonblock = nonblock, .len = coil_test_scaled(4u << 20, 256u << 10), .bad_at = SIZE_MAX};
    int sv[2];
    assert_int_equal(
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | (nonblock ? SOCK_NONBLOCK : 0), 0, sv), 0);
    p.a = sv[0];
    p.b = sv[1];
    p.data = malloc(p.len);
    assert_non_null(p.data);
    coil_test_pattern_fill(p.data, p.len, 3, 0);
    COIL_RUN_CHECKED(upair_main, &p);
    free(p.data);
    assert_int_equal(p.got, p.len);
    assert_int_equal(p.bad_at, SIZE_MAX);
}

static void test_unix_socketpair_stream(void **state) {
    (void)state;
    run_upair(false);
}

static void test_unix_socketpair_stream_nonblocking(void **state) {
    (void)state;
    run_upair(true);
}

/* ---- Unix stream: a bound path ---------------------------------------------- */

struct upath {
    char dir[64];
    struct sockaddr_un addr;
    socklen_t addrlen;
    int listener;
    size_t len;
    uint8_t *data;
    size_t got;
    bool intact;
    struct sockaddr_un peer;
    socklen_t peerlen;
};

static void upath_server(void *arg) {
    struct upath *u = arg;
    u->peerlen = sizeof u->peer;
    int fd = coil_accept_dl(u->listener, (struct sockaddr *)&u->peer, &u->peerlen,
                            coil_test_in(10 * COIL_SEC));
    if (!EXPECT(fd >= 0)) return;
    uint8_t *buf = malloc(u->len);
    if (!EXPECT(buf != NULL)) return;
    EXPECT_EQ(coil_test_recv_all(fd, buf, u->len, coil_test_in(30 * COIL_SEC), &u->got), u->len);
    u->intact = u->got == u->len && memcmp(buf, u->data, u->len) == 0;
    free(buf);
    EXPECT_EQ(coil_sendall(fd, "done", 4, 0, COIL_FOREVER), 4);
    EXPECT_EQ(coil_close(fd), 0);
}

static void upath_main(void *arg) {
    struct upath *u = arg;
    u->listener = coil_socket(AF_UNIX, SOCK_STREAM, 0);
    if (!EXPECT(u->listener >= 0)) return;
    EXPECT_EQ(coil_bind(u->listener, (struct sockaddr *)&u->addr, u->addrlen), 0);
    EXPECT_EQ(coil_listen(u->listener, 4), 0);
    coil_id s = coil_spawn(upath_server, u, NULL);
    int c = coil_socket(AF_UNIX, SOCK_STREAM, 0);
    EXPECT_EQ(coil_connect(c, (struct sockaddr *)&u->addr, u->addrlen), 0);
    EXPECT_EQ(coil_sendall(c, u->data, u->len, 0, coil_test_in(30 * COIL_SEC)), u->len);
    char buf[8];
    EXPECT_EQ(coil_test_recv_all(c, buf, 4, coil_test_in(10 * COIL_SEC), NULL), 4);
    EXPECT(memcmp(buf, "done", 4) == 0);
    EXPECT_EQ(coil_recv(c, buf, sizeof buf, 0), 0);
    EXPECT_EQ(coil_join(s, coil_test_in(10 * COIL_SEC)), 0);
    EXPECT_EQ(coil_close(c), 0);

    /* A path where nothing is bound: -ENOENT. */
    struct sockaddr_un none = u->addr;
    snprintf(none.sun_path, sizeof none.sun_path, "%s/nothing", u->dir);
    c = coil_socket(AF_UNIX, SOCK_STREAM, 0);
    EXPECT_EQ(coil_connect(c, (struct sockaddr *)&none, sizeof none), -ENOENT);
    coil_close(c);
    /* A path bound by a socket that does not listen: -ECONNREFUSED. */
    struct sockaddr_un quiet = u->addr;
    snprintf(quiet.sun_path, sizeof quiet.sun_path, "%s/quiet", u->dir);
    int q = coil_socket(AF_UNIX, SOCK_STREAM, 0);
    EXPECT_EQ(coil_bind(q, (struct sockaddr *)&quiet, sizeof quiet), 0);
    c = coil_socket(AF_UNIX, SOCK_STREAM, 0);
    EXPECT_EQ(coil_connect(c, (struct sockaddr *)&quiet, sizeof quiet), -ECONNREFUSED);
    coil_close(c);
    coil_close(q);
    unlink(quiet.sun_path);
    /* The path is taken while its socket file exists: -EADDRINUSE. */
    q = coil_socket(AF_UNIX, SOCK_STREAM, 0);
    EXPECT_EQ(coil_bind(q, (struct sockaddr *)&u->addr, u->addrlen), -EADDRINUSE);
    coil_close(q);
    EXPECT_EQ(coil_close(u->listener), 0);
}

static void test_unix_stream_bound_path(void **state) {
    (void)state;
    struct upath u = {.len = coil_test_scaled(2u << 20, 256u << 10)};
    snprintf(u.dir, sizeof u.dir, "/tmp/coil-test-XXXXXX");
    assert_non_null(mkdtemp(u.dir));
    u.addr.sun_family = AF_UNIX;
    snprintf(u.addr.sun_path, sizeof u.addr.sun_path, "%s/sock", u.dir);
    u.addrlen = (socklen_t)sizeof u.addr;
    u.data = malloc(u.len);
    assert_non_null(u.data);
    coil_test_pattern_fill(u.data, u.len, 5, 0);
    coil_test_reset_failures();
    int rc = coil_run(upath_main, &u);
    unlink(u.addr.sun_path);
    rmdir(u.dir);
    free(u.data);
    coil_test_assert_no_failure();
    assert_int_equal(rc, 0);
    assert_true(u.intact);
    /* The client was not bound: its address is just the family. */
    assert_int_equal(u.peerlen, sizeof(sa_family_t));
    assert_int_equal(u.peer.sun_family, AF_UNIX);
}

/* ---- Unix datagram ---------------------------------------------------------------- */

struct udgram {
    char dir[64];
    struct sockaddr_un a_addr, b_addr;
    int a, b;
};

static void udgram_pair_main(void *arg) {
    struct udgram *u = arg;
    int64_t dl = coil_test_in(10 * COIL_SEC);
    char buf[256];
    /* An unnamed pair: boundaries are kept. */
    EXPECT_EQ(coil_send(u->a, "one", 3, 0), 3);
    EXPECT_EQ(coil_send(u->a, "three", 5, 0), 5);
    EXPECT_EQ(coil_send(u->a, "", 0, 0), 0); /* an empty datagram */
    EXPECT_EQ(coil_recv(u->b, buf, sizeof buf, 0), 3);
    EXPECT_EQ(coil_recvfrom(u->b, buf, sizeof buf, 0, NULL, NULL, dl), 5);
    EXPECT(memcmp(buf, "three", 5) == 0);
    EXPECT_EQ(coil_recv_dl(u->b, buf, sizeof buf, 0, dl), 0);
    EXPECT_EQ(coil_recv_dl(u->b, buf, sizeof buf, 0, coil_test_in(20 * COIL_MSEC)), -ETIMEDOUT);
    /* The other way, with sendto (no address: the peer's) and read. */
    EXPECT_EQ(coil_sendto(u->b, "later", 5, 0, NULL, 0, dl), 5);
    EXPECT_EQ(coil_read_dl(u->a, buf, sizeof buf, dl), 5);
    EXPECT(memcmp(buf, "later", 5) == 0);
}

static void test_unix_datagram_socketpair(void **state) {
    (void)state;
    struct udgram u;
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0, sv), 0);
    u.a = sv[0];
    u.b = sv[1];
    COIL_RUN_CHECKED(udgram_pair_main, &u);
    close(sv[0]);
    close(sv[1]);
}

static void udgram_waiter(void *arg) {
    struct udgram *u = arg;
    char buf[64];
    struct sockaddr_un from;
    socklen_t fromlen = sizeof from;
    memset(&from, 0, sizeof from);
    ssize_t n = coil_recvfrom(u->b, buf, sizeof buf, 0, (struct sockaddr *)&from, &fromlen,
                              coil_test_in(10 * COIL_SEC));
    EXPECT_EQ(n, 5);
    EXPECT(memcmp(buf, "hello", 5) == 0);
    EXPECT(fromlen > sizeof(sa_family_t));
    EXPECT_EQ(strcmp(from.sun_path, u->a_addr.sun_path), 0);
    /* reply to the address it came from */
    EXPECT_EQ(coil_sendto(u->b, "world", 5, 0, (struct sockaddr *)&from, fromlen,
                          coil_test_in(10 * COIL_SEC)),
              5);
}

static void udgram_path_main(void *arg) {
    struct udgram *u = arg;
    u->a = coil_socket(AF_UNIX, SOCK_DGRAM, 0);
    u->b = coil_socket(AF_UNIX, SOCK_DGRAM, 0);
    if (!EXPECT(u->a >= 0 && u->b >= 0)) return;
    EXPECT_EQ(coil_bind(u->a, (struct sockaddr *)&u->a_addr, sizeof u->a_addr), 0);
    EXPECT_EQ(coil_bind(u->b, (struct sockaddr *)&u->b_addr, sizeof u->b_addr), 0);
    coil_id w = coil_spawn(udgram_waiter, u, NULL);
    EXPECT_EQ(coil_sleep(20 * COIL_MSEC), 0); /* the waiter waits first */
    EXPECT_EQ(coil_sendto(u->a, "hello", 5, 0, (struct sockaddr *)&u->b_addr, sizeof u->b_addr,
                          coil_test_in(10 * COIL_SEC)),
              5);
    char buf[64];
    struct sockaddr_un from;
    socklen_t fromlen = sizeof from;
    memset(&from, 0, sizeof from);
    EXPECT_EQ(coil_recvfrom(u->a, buf, sizeof buf, 0, (struct sockaddr *)&from, &fromlen,
                            coil_test_in(10 * COIL_SEC)),
              5);
    EXPECT(memcmp(buf, "world", 5) == 0);
    EXPECT_EQ(strcmp(from.sun_path, u->b_addr.sun_path), 0);
    EXPECT_EQ(coil_join(w, COIL_FOREVER), 0);
    /* To a path nobody is bound to: -ENOENT (after unlinking b's) */
    unlink(u->b_addr.sun_path);
    EXPECT_EQ(coil_sendto(u->a, "x", 1, 0, (struct sockaddr *)&u->b_addr, sizeof u->b_addr,
                          coil_test_in(10 * COIL_SEC)),
              -ENOENT);
    EXPECT_EQ(coil_close(u->a), 0);
    EXPECT_EQ(coil_close(u->b), 0);
}

static void test_unix_datagram_bound_paths(void **state) {
    (void)state;
    struct udgram u;
    memset(&u, 0, sizeof u);
    snprintf(u.dir, sizeof u.dir, "/tmp/coil-test-XXXXXX");
    assert_non_null(mkdtemp(u.dir));
    u.a_addr.sun_family = u.b_addr.sun_family = AF_UNIX;
    snprintf(u.a_addr.sun_path, sizeof u.a_addr.sun_path, "%s/a", u.dir);
    snprintf(u.b_addr.sun_path, sizeof u.b_addr.sun_path, "%s/b", u.dir);
    coil_test_reset_failures();
    int rc = coil_run(udgram_path_main, &u);
    unlink(u.a_addr.sun_path);
    unlink(u.b_addr.sun_path);
    rmdir(u.dir);
    coil_test_assert_no_failure();
    assert_int_equal(rc, 0);
}

int main(void) {

    coil_test_apply_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_udp_ipv4_round_trip),
        cmocka_unit_test(test_udp_ipv6_round_trip),
        cmocka_unit_test(test_udp_recvfrom_short_address_buffer),
        cmocka_unit_test(test_udp_recvfrom_address_without_length),
        cmocka_unit_test(test_udp_many_datagrams),
        cmocka_unit_test(test_unix_socketpair_stream),
        cmocka_unit_test(test_unix_socketpair_stream_nonblocking),
        cmocka_unit_test(test_unix_stream_bound_path),
        cmocka_unit_test(test_unix_datagram_socketpair),
        cmocka_unit_test(test_unix_datagram_bound_paths),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
