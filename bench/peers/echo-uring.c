/*
 * echo-uring: the hand-written io_uring (liburing) echo server coil-echo is
 * measured against, in the style of the well-known io_uring echo benchmarks.
 *
 *   echo-uring PORT        listens on 127.0.0.1:PORT until killed
 *
 * One thread, one ring (single issuer with deferred task work where the kernel
 * has them). Each connection has one operation in flight at a time: a recv into
 * its own buffer, then a send of what came, then the next recv. The loop
 * submits everything it queued and waits for at least one completion in one
 * io_uring_submit_and_wait, then handles every completion that is there.
 */
#define _GNU_SOURCE
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

enum { ACCEPTING, RECEIVING, SENDING };

struct conn {
    int fd, state;
    unsigned len, off; /* a send's bytes, and how many of them are out */
    char buf[4096];
};

static struct io_uring ring;

static struct io_uring_sqe *next_sqe(void) {
    struct io_uring_sqe *s = io_uring_get_sqe(&ring);
    while (!s) { /* the submission queue is full: hand it to the kernel */
        io_uring_submit(&ring);
        s = io_uring_get_sqe(&ring);
    }
    return s;
}

static void want_accept(struct conn *l) {
    struct io_uring_sqe *s = next_sqe();
    io_uring_prep_accept(s, l->fd, NULL, NULL, SOCK_CLOEXEC);
    l->state = ACCEPTING;
    io_uring_sqe_set_data(s, l);
}

static void want_recv(struct conn *c) {
    struct io_uring_sqe *s = next_sqe();
    io_uring_prep_recv(s, c->fd, c->buf, sizeof c->buf, 0);
    c->state = RECEIVING;
    io_uring_sqe_set_data(s, c);
}

static void want_send(struct conn *c) {
    struct io_uring_sqe *s = next_sqe();
    io_uring_prep_send(s, c->fd, c->buf + c->off, c->len - c->off, MSG_NOSIGNAL);
    c->state = SENDING;
    io_uring_sqe_set_data(s, c);
}

static void finish(struct conn *c) {
    close(c->fd);
    free(c);
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: echo-uring PORT\n");
        return 2;
    }
    struct rlimit rl = {1 << 20, 1 << 20};
    setrlimit(RLIMIT_NOFILE, &rl);
    struct io_uring_params p = {.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN};
    if (io_uring_queue_init_params(4096, &ring, &p) < 0) {
        struct io_uring_params plain = {0};
        int err = io_uring_queue_init_params(4096, &ring, &plain);
        if (err < 0) {
            fprintf(stderr, "echo-uring: io_uring_queue_init: error %d\n", -err);
            return 1;
        }
    }
    int one = 1;
    struct conn *l = calloc(1, sizeof *l);
    l->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    setsockopt(l->fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in sa = {.sin_family = AF_INET,
                             .sin_port = htons((uint16_t)atoi(argv[1])),
                             .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(l->fd, (struct sockaddr *)&sa, sizeof sa) < 0 || listen(l->fd, 4096) < 0) {
        perror("echo-uring: listen");
        return 1;
    }
    want_accept(l);
    for (;;) {
        io_uring_submit_and_wait(&ring, 1);
        struct io_uring_cqe *cqe;
        unsigned head, seen = 0;
        io_uring_for_each_cqe(&ring, head, cqe) {
            seen++;
            struct conn *c = io_uring_cqe_get_data(cqe);
            int res = cqe->res;
            switch (c->state) {
            case ACCEPTING:
                if (res >= 0) {
                    struct conn *n = malloc(sizeof *n);
                    if (!n) {
                        close(res);
                    } else {
                        n->fd = res;
                        setsockopt(res, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                        want_recv(n);
                    }
                }
                want_accept(l);
                break;
            case RECEIVING:
                if (res <= 0) {
                    finish(c);
                } else {
                    c->len = (unsigned)res;
                    c->off = 0;
                    want_send(c);
                }
                break;
            case SENDING:
                if (res <= 0) {
                    finish(c);
                } else if ((c->off += (unsigned)res) < c->len) {
                    want_send(c); /* a short send: the rest */
                } else {
                    want_recv(c);
                }
                break;
            }
        }
        io_uring_cq_advance(&ring, seen);
    }
}
