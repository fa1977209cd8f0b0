/* UDP on the IOCP backend under Wine: WSASendTo and WSARecvFrom with the
 * sender's address, truncation, timeouts. */
#include "win_test.h"

static int udp_bound(uint16_t *port) {
    int fd = coil_socket(AF_INET, SOCK_DGRAM, IPPROTO_UDP);
    if (fd < 0) return fd;
    struct sockaddr_in a = win_test_loopback(0);
    int err = coil_bind(fd, (struct sockaddr *)&a, sizeof a);
    if (err) {
        coil_close(fd);
        return err;
    }
    *port = win_test_port(fd);
    return fd;
}

struct rx {
    int fd;
    ssize_t n;
    char buf[64];
    struct sockaddr_in from;
    socklen_t fromlen;
};

static void receiver(void *arg) {
    struct rx *r = arg;
    r->fromlen = sizeof r->from;
    r->n = coil_recvfrom(r->fd, r->buf, sizeof r->buf, 0, (struct sockaddr *)&r->from, &r->fromlen,
                         coil_now() + 5 * COIL_SEC);
}

struct small_rx {
    int fd;
    ssize_t n;
    char buf[4];
};

static void small_receiver(void *arg) {
    struct small_rx *r = arg;
    r->n = coil_recvfrom(r->fd, r->buf, sizeof r->buf, 0, NULL, NULL, coil_now() + 5 * COIL_SEC);
}

static void udp_main(void *arg) {
    (void)arg;
    uint16_t pa = 0, pb = 0;
    int a = udp_bound(&pa), b = udp_bound(&pb);
    if (!EXPECT(a >= 0 && b >= 0)) return;
    /* b waits first (a pending WSARecvFrom), then a sends. */
    struct rx r = {.fd = b};
    coil_id id = coil_spawn(receiver, &r, NULL);
    coil_sleep(20 * COIL_MSEC);
    struct sockaddr_in to = win_test_loopback(pb);
    EXPECT_EQ(coil_sendto(a, "datagram", 8, 0, (struct sockaddr *)&to, sizeof to, COIL_FOREVER), 8);
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    EXPECT_EQ(r.n, 8);
    EXPECT_EQ(memcmp(r.buf, "datagram", 8), 0);
    EXPECT_EQ(r.fromlen, sizeof(struct sockaddr_in));
    EXPECT_EQ(ntohs(r.from.sin_port), pa);
    EXPECT_EQ(ntohl(r.from.sin_addr.s_addr), INADDR_LOOPBACK);

    /* A datagram larger than the buffer: truncated, its length is the
     * buffer's (as Linux without MSG_TRUNC), the rest is dropped. */
    EXPECT_EQ(coil_sendto(a, "0123456789", 10, 0, (struct sockaddr *)&to, sizeof to, COIL_FOREVER),
              10);
    EXPECT_EQ(coil_sendto(a, "next", 4, 0, (struct sockaddr *)&to, sizeof to, COIL_FOREVER), 4);
    char small[4];
    EXPECT_EQ(coil_recvfrom(b, small, sizeof small, 0, NULL, NULL, coil_now() + COIL_SEC), 4);
    EXPECT_EQ(memcmp(small, "0123", 4), 0);
    char buf[16];
    EXPECT_EQ(coil_recvfrom(b, buf, sizeof buf, 0, NULL, NULL, coil_now() + COIL_SEC), 4);
    EXPECT_EQ(memcmp(buf, "next", 4), 0);

    /* The same when the receive waits first (the truncation arrives in the
     * completion packet, STATUS_BUFFER_OVERFLOW). */
    struct small_rx sr = {.fd = b};
    id = coil_spawn(small_receiver, &sr, NULL);
    coil_sleep(20 * COIL_MSEC);
    EXPECT_EQ(coil_sendto(a, "abcdefghij", 10, 0, (struct sockaddr *)&to, sizeof to, COIL_FOREVER),
              10);
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    EXPECT_EQ(sr.n, 4);
    EXPECT_EQ(memcmp(sr.buf, "abcd", 4), 0);

    /* Nothing comes: -ETIMEDOUT after the deadline. */
    int64_t t0 = coil_now();
    EXPECT_EQ(coil_recvfrom(b, buf, sizeof buf, 0, NULL, NULL, coil_now() + 100 * COIL_MSEC),
              -ETIMEDOUT);
    EXPECT(coil_now() - t0 >= 90 * COIL_MSEC);

    /* A connected datagram socket: send and recv. */
    struct sockaddr_in back = win_test_loopback(pa);
    EXPECT_EQ(coil_connect(b, (struct sockaddr *)&back, sizeof back), 0);
    EXPECT_EQ(coil_send(b, "reply", 5, 0), 5);
    EXPECT_EQ(coil_recv(a, buf, sizeof buf, 0), 5);
    EXPECT_EQ(memcmp(buf, "reply", 5), 0);
    coil_close(a);
    coil_close(b);
    EXPECT_EQ(coil_sendto(a, "x", 1, 0, (struct sockaddr *)&to, sizeof to, COIL_FOREVER), -EBADF);
}

static void test_udp(void **state) {
    (void)state;
    COIL_RUN_CHECKED(udp_main, NULL);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_udp),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
