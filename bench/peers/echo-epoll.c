/*
 * echo-epoll: the hand-written epoll echo server coil-echo is measured against.
 *
 *   echo-epoll PORT [BUFSIZE]   listens on 127.0.0.1:PORT until killed
 *
 * One thread, level-triggered epoll, every connection non-blocking. On each
 * readiness event: one read into a single static buffer, one write of what was
 * read: the callback-style code a tasklet-per-connection server has to match.
 * With BUFSIZE, each connection reads into a page-aligned buffer of its own of
 * that size instead, as a tasklet reads into its own stack: the hand-written
 * server with a tasklet server's per-connection memory (docs/benchmarks.md,
 * "The epoll backend at 1,000 connections").
 * A write that the socket takes only in part (never with a benchmark's small
 * messages) keeps the rest in a per-connection buffer and waits for EPOLLOUT,
 * reading nothing more from that connection until it is sent, so the server
 * stays correct for any load.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

struct backlog { /* bytes a short write left behind */
    size_t len, off;
    char data[];
};

/* What a connection has beside its fd, indexed by fd. */
struct conn {
    struct backlog *held; /* bytes waiting for EPOLLOUT, or NULL */
    char *buf;            /* with BUFSIZE: its own buffer, kept for the number's next connection */
};
static struct conn *conns;
static size_t nconns;

/* fd's entry, the table grown as needed; NULL when out of memory. */
static struct conn *conn_of(int fd) {
    if ((size_t)fd >= nconns) {
        size_t n = (size_t)fd * 2 + 64;
        struct conn *g = realloc(conns, n * sizeof *g);
        if (!g) return NULL;
        memset(g + nconns, 0, (n - nconns) * sizeof *g);
        conns = g;
        nconns = n;
    }
    return &conns[fd];
}

static void drop(int ep, int fd) {
    epoll_ctl(ep, EPOLL_CTL_DEL, fd, NULL);
    if ((size_t)fd < nconns) {
        free(conns[fd].held);
        conns[fd].held = NULL;
    }
    close(fd);
}

static void interest(int ep, int fd, unsigned events) {
    struct epoll_event ev = {.events = events, .data.fd = fd};
    epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev);
}

/* Keeps buf[off..len) for EPOLLOUT. */
static int hold(int ep, int fd, const char *buf, size_t len) {
    struct conn *c = conn_of(fd);
    if (!c) return -1;
    struct backlog *b = malloc(sizeof *b + len);
    if (!b) return -1;
    b->len = len;
    b->off = 0;
    memcpy(b->data, buf, len);
    c->held = b;
    interest(ep, fd, EPOLLOUT);
    return 0;
}

/* Writes what a short write left; back to reading once it is all out. */
static void flush(int ep, int fd) {
    struct backlog *b = conns[fd].held;
    ssize_t w = write(fd, b->data + b->off, b->len - b->off);
    if (w < 0 && errno == EAGAIN) return;
    if (w <= 0) {
        drop(ep, fd);
        return;
    }
    b->off += (size_t)w;
    if (b->off < b->len) return;
    free(b);
    conns[fd].held = NULL;
    interest(ep, fd, EPOLLIN);
}

int main(int argc, char **argv) {
    if (argc != 2 && argc != 3) {
        fprintf(stderr, "usage: echo-epoll PORT [BUFSIZE]\n");
        return 2;
    }
    size_t own = argc == 3 ? strtoul(argv[2], NULL, 10) : 0; /* per-connection buffers */
    if (argc == 3 && (own < 1 || own % 4096)) {
        fprintf(stderr, "echo-epoll: BUFSIZE must be a positive multiple of 4096\n");
        return 2;
    }
    struct rlimit rl = {1 << 20, 1 << 20};
    setrlimit(RLIMIT_NOFILE, &rl);
    int one = 1, ls = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    setsockopt(ls, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)atoi(argv[1])),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(ls, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(ls, 4096) < 0) {
        perror("echo-epoll: listen");
        return 1;
    }
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event lev = {.events = EPOLLIN, .data.fd = ls}, evs[256];
    epoll_ctl(ep, EPOLL_CTL_ADD, ls, &lev);
    static char one_buf[64 * 1024];
    for (;;) {
        int k = epoll_wait(ep, evs, 256, -1);
        if (k < 0 && errno != EINTR) {
            perror("echo-epoll: epoll_wait");
            return 1;
        }
        for (int i = 0; i < k; i++) {
            int fd = evs[i].data.fd;
            if (fd == ls) {
                int c;
                while ((c = accept4(ls, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
                    setsockopt(c, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                    struct conn *cn = own ? conn_of(c) : NULL;
                    if (own && (!cn || (!cn->buf && !(cn->buf = aligned_alloc(4096, own))))) {
                        close(c);
                        continue;
                    }
                    struct epoll_event ev = {.events = EPOLLIN, .data.fd = c};
                    epoll_ctl(ep, EPOLL_CTL_ADD, c, &ev);
                }
                continue;
            }
            if (evs[i].events & EPOLLOUT) {
                flush(ep, fd);
                continue;
            }
            char *buf = own ? conns[fd].buf : one_buf;
            size_t len = own ? own : sizeof one_buf;
            ssize_t r = read(fd, buf, len);
            if (r < 0 && errno == EAGAIN) continue;
            if (r <= 0) {
                drop(ep, fd);
                continue;
            }
            ssize_t w = write(fd, buf, (size_t)r);
            if (w < 0 && errno == EAGAIN) w = 0;
            if (w < 0 || (w < r && hold(ep, fd, buf + w, (size_t)(r - w)) < 0)) drop(ep, fd);
        }
    }
}
