/* Helpers of the Windows socket tests (tests/win/test_*.c): loopback
 * addresses and listeners on Winsock. Each test is one executable, run under
 * Wine by ctest (label windows). */
#ifndef COIL_WIN_TEST_H
#define COIL_WIN_TEST_H

#include "coil_test.h"

/* 127.0.0.1:port */
static inline struct sockaddr_in win_test_loopback(uint16_t port) {
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons(port);
    return a;
}

static inline uint16_t win_test_port(int fd) {
    struct sockaddr_in a;
    int len = sizeof a;
    if (getsockname((SOCKET)fd, (struct sockaddr *)&a, &len) != 0) return 0;
    return ntohs(a.sin_port);
}

/* A TCP listener on 127.0.0.1, any port; *port gets it. */
static inline int win_test_listener(uint16_t *port) {
    int fd = coil_socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    if (fd < 0) return fd;
    struct sockaddr_in a = win_test_loopback(0);
    int err = coil_bind(fd, (struct sockaddr *)&a, sizeof a);
    if (!err) err = coil_listen(fd, 64);
    if (err) {
        coil_close(fd);
        return err;
    }
    *port = win_test_port(fd);
    return fd;
}

/* A connected pair on loopback (made by coil calls: call inside a tasklet).
 * Returns 0 or -errno. */
struct win_test_pair {
    int a, b;
};

struct win_test_pair_ctx {
    int lfd;
    int accepted;
};

static inline void win_test_accept_one(void *arg) {
    struct win_test_pair_ctx *c = arg;
    c->accepted = coil_accept(c->lfd, NULL, NULL);
}

static inline int win_test_pair(struct win_test_pair *p) {
    uint16_t port = 0;
    int lfd = win_test_listener(&port);
    if (lfd < 0) return lfd;
    struct win_test_pair_ctx c = {.lfd = lfd, .accepted = -1};
    coil_id id = coil_spawn(win_test_accept_one, &c, NULL);
    if (id < 0) return (int)id;
    int fd = coil_socket(AF_INET, SOCK_STREAM, IPPROTO_TCP);
    struct sockaddr_in a = win_test_loopback(port);
    int err = fd < 0 ? fd : coil_connect(fd, (struct sockaddr *)&a, sizeof a);
    coil_join(id, COIL_FOREVER);
    coil_close(lfd);
    if (err || c.accepted < 0) {
        if (fd >= 0) coil_close(fd);
        if (c.accepted >= 0) coil_close(c.accepted);
        return err ? err : c.accepted;
    }
    p->a = fd;
    p->b = c.accepted;
    return 0;
}

#endif
