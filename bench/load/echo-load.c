/*
 * echo-load: closed-loop ping-pong load for an echo server, checking every byte.
 *
 *   echo-load --port P [--host 127.0.0.1] [-c CONNS] [-s SIZE] [-d SECONDS]
 *
 * Opens CONNS connections (default 100). Each keeps exactly one message of
 * SIZE bytes (default 512) in flight: it sends the message, reads until SIZE
 * bytes have come back, compares them with what it sent, and sends the next.
 * Every connection and every message carries different bytes (a window into a
 * pseudo-random pattern, moved by the connection's number and the message's
 * sequence number), so a byte echoed on the wrong connection, out of order or
 * twice is caught, not only a corrupted one. After SECONDS (default 3) it
 * prints one line:
 *
 *   echo-load conns=100 size=512 seconds=3.00 msgs=312345 msgs_per_s=104115 load_cpu_pct=99.1
 *
 * load_cpu_pct is this program's own CPU time (user + system) over the run, as
 * a share of one core: near 100, the rate is how fast the load generator can
 * go, and a server changes it only through what its answers cost the
 * generator. One thread, one epoll set; the same program for every server.
 *
 * Exits 0; 1 on a wrong byte, a connection the server closed, or an error
 * (stderr says which); 2 on bad usage. An alarm ends it 30 s after SECONDS
 * whatever happens, so it never hangs on a stuck server.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define WINDOWS 251 /* distinct starting offsets into the pattern (a prime) */

struct conn {
    int fd;
    unsigned long seq; /* messages completed on this connection */
    size_t sent, got;  /* bytes of the current message sent, received back */
    const unsigned char *msg;
};

static unsigned char *pattern; /* size + WINDOWS bytes */
static size_t size;

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double cpu_self(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static const unsigned char *message(long conn, unsigned long seq) {
    return pattern + ((unsigned long)conn * 7 + seq) % WINDOWS;
}

static void die(const char *what, long conn) {
    if (conn >= 0)
        fprintf(stderr, "echo-load: connection %ld: %s\n", conn, what);
    else
        fprintf(stderr, "echo-load: %s\n", what);
    exit(1);
}

/* Sends what is left of the current message; waits for EPOLLOUT if the
 * socket's buffer is full (never with the small messages of a benchmark). */
static void push(int ep, struct conn *c, long i) {
    while (c->sent < size) {
        ssize_t w = send(c->fd, c->msg + c->sent, size - c->sent, MSG_NOSIGNAL);
        if (w > 0) {
            c->sent += (size_t)w;
            continue;
        }
        if (w < 0 && errno == EAGAIN) {
            struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT, .data.u64 = (uint64_t)i};
            epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
            return;
        }
        die(w < 0 ? strerror(errno) : "send returned 0", i);
    }
}

static void usage(void) {
    fprintf(stderr, "usage: echo-load --port P [--host ADDR] [-c CONNS] [-s SIZE] [-d SECONDS]\n");
    exit(2);
}

int main(int argc, char **argv) {
    const char *host = "127.0.0.1";
    long port = -1, conns = 100;
    double secs = 3;
    size = 512;
    static const struct option opts[] = {{"host", required_argument, NULL, 'H'},
                                         {"port", required_argument, NULL, 'p'},
                                         {NULL, 0, NULL, 0}};
    int o;
    while ((o = getopt_long(argc, argv, "H:p:c:s:d:", opts, NULL)) != -1) {
        switch (o) {
        case 'H': host = optarg; break;
        case 'p': port = atol(optarg); break;
        case 'c': conns = atol(optarg); break;
        case 's': size = (size_t)atol(optarg); break;
        case 'd': secs = atof(optarg); break;
        default: usage();
        }
    }
    if (optind != argc || port <= 0 || port > 65535 || conns < 1 || conns > 1000000 || size < 1 ||
        size > (1 << 20) || !(secs > 0 && secs < 3600))
        usage();
    alarm((unsigned)secs + 30);

    struct rlimit rl = {(rlim_t)conns + 64, (rlim_t)conns + 64};
    setrlimit(RLIMIT_NOFILE, &rl);
    pattern = malloc(size + WINDOWS);
    unsigned char *buf = malloc(size);
    struct conn *c = calloc((size_t)conns, sizeof *c);
    if (!pattern || !buf || !c) die("out of memory", -1);
    uint32_t x = 2463534242u; /* xorshift32: bytes that do not repeat within a window */
    for (size_t i = 0; i < size + WINDOWS; i++) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        pattern[i] = (unsigned char)x;
    }

    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa.sin_addr) != 1) die("--host must be an IPv4 address", -1);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0) die(strerror(errno), -1);
    for (long i = 0; i < conns; i++) {
        c[i].fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (c[i].fd < 0) die(strerror(errno), i);
        if (connect(c[i].fd, (struct sockaddr *)&sa, sizeof sa) < 0) die(strerror(errno), i);
        int one = 1;
        setsockopt(c[i].fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        fcntl(c[i].fd, F_SETFL, O_NONBLOCK);
        struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)i};
        if (epoll_ctl(ep, EPOLL_CTL_ADD, c[i].fd, &ev) < 0) die(strerror(errno), i);
    }

    double t0 = now(), end = t0 + secs, cpu0 = cpu_self();
    long msgs = 0;
    for (long i = 0; i < conns; i++) {
        c[i].msg = message(i, 0);
        push(ep, &c[i], i);
    }
    struct epoll_event evs[512];
    while (now() < end) {
        int k = epoll_wait(ep, evs, 512, 100);
        if (k < 0 && errno != EINTR) die(strerror(errno), -1);
        for (int j = 0; j < k; j++) {
            long i = (long)evs[j].data.u64;
            struct conn *cn = &c[i];
            if (evs[j].events & EPOLLOUT) {
                struct epoll_event ev = {.events = EPOLLIN, .data.u64 = (uint64_t)i};
                epoll_ctl(ep, EPOLL_CTL_MOD, cn->fd, &ev);
                push(ep, cn, i);
            }
            if (!(evs[j].events & (EPOLLIN | EPOLLERR | EPOLLHUP))) continue;
            ssize_t r = recv(cn->fd, buf, size - cn->got, 0);
            if (r < 0 && errno == EAGAIN) continue;
            if (r < 0) die(strerror(errno), i);
            if (r == 0) die("closed by the server", i);
            if (cn->got + (size_t)r > cn->sent) die("more bytes came back than were sent", i);
            if (memcmp(buf, cn->msg + cn->got, (size_t)r) != 0) {
                char what[96];
                snprintf(what, sizeof what, "wrong bytes in message %lu at offset %zu", cn->seq,
                         cn->got);
                die(what, i);
            }
            cn->got += (size_t)r;
            if (cn->got == size) {
                msgs++;
                cn->seq++;
                cn->got = cn->sent = 0;
                cn->msg = message(i, cn->seq);
                push(ep, cn, i);
            }
        }
    }
    double el = now() - t0, cpu = cpu_self() - cpu0;
    printf("echo-load conns=%ld size=%zu seconds=%.2f msgs=%ld msgs_per_s=%.0f load_cpu_pct=%.1f\n",
           conns, size, el, msgs, (double)msgs / el, cpu * 100 / el);
    for (long i = 0; i < conns; i++)
        close(c[i].fd);
    return 0;
}
