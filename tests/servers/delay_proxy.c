/* See delay_proxy.h. One thread, one poll() over the listener, a wake-up pipe
 * and both sockets of every connection, all non-blocking; the poll's timeout
 * is the next release of a held piece. */
#define _GNU_SOURCE
#include "delay_proxy.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

struct buf {
    char *data;
    size_t len, cap;
};

/* A piece of a response, held until release (CLOCK_MONOTONIC ns). */
struct held {
    struct held *next;
    int64_t release;
    size_t len;
    char data[];
};

struct pconn {
    int cfd, ufd;
    struct buf to_up, to_client;
    struct held *head, *tail;
    bool waiting;
    bool up_eof; /* upstream closed: close the client once all is passed on */
    bool dead;
};

struct coil_delay_proxy {
    pthread_t thread;
    int listener;
    int wake[2];
    uint16_t port, upstream_port;
    int64_t delay_ns;                    /* atomic */
    int stop;                            /* atomic */
    int reset;                           /* atomic: the thread zeroes the counts */
    struct coil_delay_proxy_stats stats; /* each field atomic; written by the thread */
    struct pconn **conns;
    size_t n, cap;
};

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#define LOAD(x)     __atomic_load_n(&(x), __ATOMIC_SEQ_CST)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_SEQ_CST)

static bool buf_add(struct buf *b, const void *data, size_t len) {
    if (b->len + len > b->cap) {
        size_t cap = (b->len + len) * 2;
        char *grown = realloc(b->data, cap);
        if (!grown) return false;
        b->data = grown;
        b->cap = cap;
    }
    memcpy(b->data + b->len, data, len);
    b->len += len;
    return true;
}

/* Sends what b holds, as much as the socket takes now. False on an error. */
static bool buf_flush(struct buf *b, int fd) {
    while (b->len > 0) {
        ssize_t n = send(fd, b->data, b->len, MSG_NOSIGNAL);
        if (n < 0) return errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR;
        memmove(b->data, b->data + n, b->len - (size_t)n);
        b->len -= (size_t)n;
    }
    return true;
}

static void set_waiting(struct coil_delay_proxy *p, struct pconn *c, bool on) {
    if (c->waiting == on) return;
    c->waiting = on;
    if (!on) {
        __atomic_sub_fetch(&p->stats.waiting, 1, __ATOMIC_SEQ_CST);
        return;
    }
    int before = __atomic_fetch_add(&p->stats.waiting, 1, __ATOMIC_SEQ_CST);
    if (__atomic_fetch_add(&p->stats.requests, 1, __ATOMIC_SEQ_CST) == 0)
        STORE(p->stats.first_ns, now_ns());
    if (before > 0) __atomic_add_fetch(&p->stats.overlapped, 1, __ATOMIC_SEQ_CST);
    if (before + 1 > LOAD(p->stats.peak)) {
        STORE(p->stats.peak, before + 1);
        STORE(p->stats.peak_ns, now_ns());
    }
}

static void conn_free(struct coil_delay_proxy *p, struct pconn *c) {
    set_waiting(p, c, false);
    close(c->cfd);
    close(c->ufd);
    free(c->to_up.data);
    free(c->to_client.data);
    while (c->head) {
        struct held *h = c->head;
        c->head = h->next;
        free(h);
    }
    free(c);
}

static int nonblocking(int fd) {
    int fl = fcntl(fd, F_GETFL);
    return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

static void accept_one(struct coil_delay_proxy *p) {
    int cfd = accept4(p->listener, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (cfd < 0) return;
    int ufd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK),
                            .sin_port = htons(p->upstream_port)};
    /* A blocking connect: loopback, answered at once (or refused). */
    if (ufd < 0 || connect(ufd, (struct sockaddr *)&a, sizeof a) != 0 || nonblocking(ufd) != 0) {
        __atomic_add_fetch(&p->stats.upstream_errors, 1, __ATOMIC_SEQ_CST);
        if (ufd >= 0) close(ufd);
        close(cfd);
        return;
    }
    int one = 1;
    setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(ufd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct pconn *c = calloc(1, sizeof *c);
    if (c && p->n == p->cap) {
        size_t cap = p->cap ? p->cap * 2 : 64;
        struct pconn **grown = realloc(p->conns, cap * sizeof *grown);
        if (grown) {
            p->conns = grown;
            p->cap = cap;
        }
    }
    if (!c || p->n == p->cap) {
        free(c);
        close(ufd);
        close(cfd);
        return;
    }
    c->cfd = cfd;
    c->ufd = ufd;
    p->conns[p->n++] = c;
    __atomic_add_fetch(&p->stats.connections, 1, __ATOMIC_SEQ_CST);
}

/* The client sent something: upstream at once. */
static void from_client(struct coil_delay_proxy *p, struct pconn *c) {
    char buf[16384];
    ssize_t n = recv(c->cfd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) { /* the client is gone: so is its exchange */
        c->dead = true;
        return;
    }
    set_waiting(p, c, true);
    if (!buf_add(&c->to_up, buf, (size_t)n) || !buf_flush(&c->to_up, c->ufd)) c->dead = true;
}

/* Upstream answered: held from now for the delay. */
static void from_upstream(struct coil_delay_proxy *p, struct pconn *c) {
    char buf[16384];
    ssize_t n = recv(c->ufd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
    if (n <= 0) {
        c->up_eof = true;
        return;
    }
    struct held *h = malloc(sizeof *h + (size_t)n);
    if (!h) {
        c->dead = true;
        return;
    }
    h->next = NULL;
    h->release = now_ns() + LOAD(p->delay_ns);
    h->len = (size_t)n;
    memcpy(h->data, buf, (size_t)n);
    if (c->tail)
        c->tail->next = h;
    else
        c->head = h;
    c->tail = h;
}

/* Passes on what is due; the next release still held, or INT64_MAX. */
static int64_t release_due(struct coil_delay_proxy *p, struct pconn *c, int64_t now) {
    while (c->head && c->head->release <= now) {
        struct held *h = c->head;
        c->head = h->next;
        if (!c->head) c->tail = NULL;
        bool ok = buf_add(&c->to_client, h->data, h->len);
        free(h);
        if (!ok) {
            c->dead = true;
            return INT64_MAX;
        }
        if (!c->head) set_waiting(p, c, false);
    }
    if (c->to_client.len > 0 && !buf_flush(&c->to_client, c->cfd)) c->dead = true;
    if (c->up_eof && !c->head && c->to_client.len == 0) c->dead = true;
    return c->head ? c->head->release : INT64_MAX;
}

static void *proxy_main(void *arg) {
    struct coil_delay_proxy *p = arg;
    struct pollfd *pfds = NULL;
    size_t pcap = 0;
    while (!LOAD(p->stop)) {
        if (LOAD(p->reset)) {
            int waiting = 0;
            for (size_t i = 0; i < p->n; i++)
                waiting += p->conns[i]->waiting;
            STORE(p->stats.connections, 0);
            STORE(p->stats.requests, 0);
            STORE(p->stats.overlapped, 0);
            STORE(p->stats.upstream_errors, 0);
            STORE(p->stats.waiting, waiting);
            STORE(p->stats.peak, waiting);
            STORE(p->stats.first_ns, 0);
            STORE(p->stats.peak_ns, 0);
            STORE(p->reset, 0);
        }
        int64_t now = now_ns(), next = INT64_MAX;
        size_t live = 0;
        for (size_t i = 0; i < p->n; i++) {
            struct pconn *c = p->conns[i];
            int64_t r = c->dead ? INT64_MAX : release_due(p, c, now);
            if (c->dead) {
                conn_free(p, c);
                continue;
            }
            if (r < next) next = r;
            p->conns[live++] = c;
        }
        p->n = live;
        size_t want = 2 + 2 * p->n;
        if (want > pcap) {
            struct pollfd *grown = realloc(pfds, want * 2 * sizeof *pfds);
            if (!grown) break;
            pfds = grown;
            pcap = want * 2;
        }
        pfds[0] = (struct pollfd){.fd = p->wake[0], .events = POLLIN};
        pfds[1] = (struct pollfd){.fd = p->listener, .events = POLLIN};
        for (size_t i = 0; i < p->n; i++) {
            struct pconn *c = p->conns[i];
            pfds[2 + 2 * i] = (struct pollfd){
                .fd = c->cfd, .events = (short)(POLLIN | (c->to_client.len ? POLLOUT : 0))};
            /* Once upstream has closed, its socket is left out (it would
             * report POLLHUP at once, and the loop spin until the release). */
            pfds[3 + 2 * i] =
                (struct pollfd){.fd = c->up_eof ? -1 : c->ufd,
                                .events = (short)(POLLIN | (c->to_up.len ? POLLOUT : 0))};
        }
        int timeout = -1;
        if (next != INT64_MAX) {
            int64_t ms = (next - now + 999999) / 1000000;
            timeout = ms < 0 ? 0 : ms > 1000 ? 1000 : (int)ms;
        }
        int r = poll(pfds, want, timeout);
        if (r < 0) {
            if (errno == EINTR) continue;
            break;
        }
        if (pfds[0].revents) {
            char b[64];
            while (read(p->wake[0], b, sizeof b) > 0) {
            }
        }
        size_t n = p->n; /* connections accepted below are polled next time */
        if (pfds[1].revents & POLLIN) accept_one(p);
        for (size_t i = 0; i < n; i++) {
            struct pconn *c = p->conns[i];
            short cr = pfds[2 + 2 * i].revents, ur = pfds[3 + 2 * i].revents;
            if (!c->up_eof && (ur & (POLLIN | POLLHUP | POLLERR))) from_upstream(p, c);
            if ((ur & POLLOUT) && !buf_flush(&c->to_up, c->ufd)) c->dead = true;
            if (cr & (POLLIN | POLLHUP | POLLERR)) from_client(p, c);
            if ((cr & POLLOUT) && !buf_flush(&c->to_client, c->cfd)) c->dead = true;
        }
    }
    for (size_t i = 0; i < p->n; i++)
        conn_free(p, p->conns[i]);
    p->n = 0;
    free(pfds);
    return NULL;
}

struct coil_delay_proxy *coil_delay_proxy_start(uint16_t upstream_port, int64_t delay_ns) {
    struct coil_delay_proxy *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->upstream_port = upstream_port;
    p->delay_ns = delay_ns;
    p->wake[0] = p->wake[1] = -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    const char *what = "socket";
    p->listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (p->listener < 0) goto fail;
    what = "bind";
    if (bind(p->listener, (struct sockaddr *)&a, sizeof a) != 0) goto fail;
    what = "listen";
    if (listen(p->listener, 1024) != 0) goto fail;
    what = "getsockname";
    if (getsockname(p->listener, (struct sockaddr *)&a, &len) != 0) goto fail;
    p->port = ntohs(a.sin_port);
    what = "pipe2";
    if (pipe2(p->wake, O_CLOEXEC | O_NONBLOCK) != 0) goto fail;
    what = "pthread_create";
    int rc = pthread_create(&p->thread, NULL, proxy_main, p);
    if (rc != 0) {
        errno = rc;
        goto fail;
    }
    return p;
fail:;
    int err = errno;
    fprintf(stderr, "delay proxy: %s: %s\n", what, strerror(err));
    if (p->listener >= 0) close(p->listener);
    if (p->wake[0] >= 0) close(p->wake[0]);
    if (p->wake[1] >= 0) close(p->wake[1]);
    free(p);
    errno = err;
    return NULL;
}

uint16_t coil_delay_proxy_port(const struct coil_delay_proxy *p) {
    return p->port;
}

static void wake(struct coil_delay_proxy *p) {
    ssize_t n = write(p->wake[1], "x", 1);
    (void)n; /* a full pipe wakes it as well */
}

void coil_delay_proxy_set_delay(struct coil_delay_proxy *p, int64_t delay_ns) {
    STORE(p->delay_ns, delay_ns);
}

void coil_delay_proxy_reset(struct coil_delay_proxy *p) {
    STORE(p->reset, 1);
    wake(p);
    while (LOAD(p->reset)) {
        struct timespec ts = {0, 200000};
        nanosleep(&ts, NULL);
    }
}

void coil_delay_proxy_get_stats(const struct coil_delay_proxy *p,
                                struct coil_delay_proxy_stats *out) {
    out->connections = LOAD(p->stats.connections);
    out->requests = LOAD(p->stats.requests);
    out->overlapped = LOAD(p->stats.overlapped);
    out->peak = LOAD(p->stats.peak);
    out->waiting = LOAD(p->stats.waiting);
    out->upstream_errors = LOAD(p->stats.upstream_errors);
    out->first_ns = LOAD(p->stats.first_ns);
    out->peak_ns = LOAD(p->stats.peak_ns);
}

void coil_delay_proxy_stop(struct coil_delay_proxy *p) {
    if (!p) return;
    STORE(p->stop, 1);
    wake(p);
    pthread_join(p->thread, NULL);
    close(p->listener);
    close(p->wake[0]);
    close(p->wake[1]);
    free(p->conns);
    free(p);
}
