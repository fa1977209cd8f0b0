/*
 * coil-bench-install: what coil_install's wrappers cost. A ping-pong of
 * 1-byte messages between two tasklets over a socket pair, once through
 * coil's own calls (coil_send, coil_recv) and once through plain send and
 * recv, diverted by coil_install to the same calls; on each backend.
 *
 *   coil-bench-install [-n ROUND_TRIPS] [-r ROUNDS] [-b BACKENDS] [-t]
 *
 *   -n  round trips per measurement (default 200000)
 *   -r  paired rounds (default 5): each round measures coil's calls, then
 *       the diverted ones, then coil's again, and compares the diverted run
 *       with the mean of the two around it, so that a drift of the machine
 *       during a round falls on both sides alike
 *   -b  the backends, comma-separated (default io_uring,epoll)
 *   -t  loopback TCP (TCP_NODELAY) instead of an AF_UNIX stream pair
 *
 * Prints, per backend and round, ns per round trip of each and the ratio
 * diverted / coil; then the median of the rounds' ratios. Nothing is
 * asserted. Linked with libcoil.so: coil does not divert the calls of the
 * object it is linked into, so a static coil would leave this program's own
 * send and recv alone.
 */
#define _GNU_SOURCE
#include <coil.h>

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long trips = 200000;
static int rounds = 5;
static bool tcp;

struct pp {
    int fd[2];
    bool diverted;
    long trips;
    int64_t ns;
    bool bad;
};

static void ponger(void *arg) {
    struct pp *p = arg;
    char c;
    for (long i = 0; i < p->trips; i++) {
        ssize_t r = p->diverted ? recv(p->fd[1], &c, 1, 0) : coil_recv(p->fd[1], &c, 1, 0);
        if (r != 1) {
            p->bad = true;
            return;
        }
        r = p->diverted ? send(p->fd[1], &c, 1, 0) : coil_send(p->fd[1], &c, 1, 0);
        if (r != 1) {
            p->bad = true;
            return;
        }
    }
}

static void pinger(void *arg) {
    struct pp *p = arg;
    coil_id pong = coil_spawn(ponger, p, NULL);
    char c = 'x';
    int64_t t0 = coil_now();
    for (long i = 0; i < p->trips && !p->bad; i++) {
        ssize_t r = p->diverted ? send(p->fd[0], &c, 1, 0) : coil_send(p->fd[0], &c, 1, 0);
        if (r != 1) {
            p->bad = true;
            break;
        }
        r = p->diverted ? recv(p->fd[0], &c, 1, 0) : coil_recv(p->fd[0], &c, 1, 0);
        if (r != 1) {
            p->bad = true;
            break;
        }
    }
    p->ns = coil_now() - t0;
    coil_join(pong, COIL_FOREVER);
}

static int tcp_pair(int fd[2]) {
    int l = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof a;
    if (l < 0 || bind(l, (struct sockaddr *)&a, sizeof a) != 0 || listen(l, 1) != 0 ||
        getsockname(l, (struct sockaddr *)&a, &len) != 0)
        return -1;
    fd[0] = socket(AF_INET, SOCK_STREAM, 0);
    if (fd[0] < 0 || connect(fd[0], (struct sockaddr *)&a, sizeof a) != 0) return -1;
    fd[1] = accept(l, NULL, NULL);
    close(l);
    if (fd[1] < 0) return -1;
    int one = 1;
    setsockopt(fd[0], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    setsockopt(fd[1], IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return 0;
}

/* ns per round trip of one run, or -1. A new pair each run: no state of
 * one run (the sockets' buffers, coil's per-fd records) helps the next. */
static double run(bool diverted) {
    struct pp p = {.diverted = diverted, .trips = trips};
    if (tcp ? tcp_pair(p.fd) != 0 : socketpair(AF_UNIX, SOCK_STREAM, 0, p.fd) != 0) {
        perror("coil-bench-install: socket pair");
        return -1;
    }
    int rc = coil_run(pinger, &p);
    close(p.fd[0]);
    close(p.fd[1]);
    if (rc != 0 || p.bad) {
        fprintf(stderr, "coil-bench-install: the ping-pong failed (coil_run %d)\n", rc);
        return -1;
    }
    return (double)p.ns / (double)trips;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static int bench_backend(const char *backend) {
    setenv("COIL_BACKEND", backend, 1);
    double *ratio = calloc((size_t)rounds, sizeof *ratio);
    if (!ratio) return 1;
    run(false); /* warm-up: stacks, the rings' first setup, the page cache */
    for (int i = 0; i < rounds; i++) {
        double a = run(false), d = run(true), b = run(false);
        if (a < 0 || d < 0 || b < 0) {
            free(ratio);
            return 1;
        }
        ratio[i] = d / ((a + b) / 2);
        printf("%s round %d: coil %.0f ns, diverted %.0f ns, coil %.0f ns per round trip; "
               "ratio %.3f\n",
               backend, i + 1, a, d, b, ratio[i]);
        fflush(stdout);
    }
    qsort(ratio, (size_t)rounds, sizeof *ratio, cmp_double);
    printf("%s median of %d: diverted / coil %.3f\n", backend, rounds, ratio[rounds / 2]);
    free(ratio);
    return 0;
}

int main(int argc, char **argv) {
    const char *backends = "io_uring,epoll";
    int opt;
    while ((opt = getopt(argc, argv, "n:r:b:t")) != -1) {
        switch (opt) {
        case 'n': trips = atol(optarg); break;
        case 'r': rounds = atoi(optarg); break;
        case 'b': backends = optarg; break;
        case 't': tcp = true; break;
        default:
            fprintf(stderr, "usage: coil-bench-install [-n ROUND_TRIPS] [-r ROUNDS] "
                            "[-b BACKENDS] [-t]\n");
            return 2;
        }
    }
    if (trips < 1 || rounds < 1) {
        fprintf(stderr, "coil-bench-install: -n and -r must be positive\n");
        return 2;
    }
    if (coil_install() != 0) {
        fprintf(stderr, "coil-bench-install: coil_install failed\n");
        return 1;
    }
    printf("coil-bench-install: %ld round trips of 1 byte over %s, %d paired rounds\n", trips,
           tcp ? "loopback TCP" : "an AF_UNIX stream pair", rounds);
    char *list = strdup(backends);
    int rc = 0;
    for (char *save = NULL, *b = strtok_r(list, ",", &save); b && !rc;
         b = strtok_r(NULL, ",", &save))
        rc = bench_backend(b);
    free(list);
    return rc;
}
