/*
 * coil-bench-runtime: figures for the runtime, one per line, in the form the
 * peers of bench/compare switch (bench/peers/) print them:
 *
 *   coil switch_ns X              one context switch (coil__ctx_switch)
 *   coil yield_ns X               coil_yield between two tasklets: one trip
 *                                 through the run queue and one switch
 *   coil chan_handoff_ns X        unbuffered send -> recv between two tasklets
 *                                 (ping-pong round trip / 2, as Go's anchor)
 *   coil spawn_exit_ns X          spawn + run + exit of an empty tasklet,
 *                                 spawned in waves of 100 (stacks from the pool)
 *   coil spawn_exit_burst_ns X    the same with 100,000 spawned before any runs
 *                                 (every stack freshly mapped, as in Go's anchor)
 *   coil parked_tasklet_bytes X   RSS per tasklet with N parked on a channel
 *   machine syscall_ns X          one system call that does nothing (getppid):
 *                                 the entry and exit every recv, send and
 *                                 epoll_wait pays before its own work (not
 *                                 coil's figure: it says what a system call
 *                                 saved is worth on this machine)
 *
 *   coil-bench-runtime [--parked N]   (default 100000; 1000000 for the million)
 *
 * Timing figures are the best of 5 runs. Nothing is asserted: these are
 * figures to compare, in the same run, with the peers' figures.
 */
#include <coil.h>

#include <errno.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifndef _WIN32
#include <sys/syscall.h>
#endif

/* Internal symbols, reachable because the benchmark links libcoil.a. */
struct coil__ctx {
    void *sp;
};
void coil__ctx_switch(struct coil__ctx *from, struct coil__ctx *to);
void coil__ctx_make(struct coil__ctx *ctx, void *top, void (*entry)(void *), void *arg);

#define RUNS 5

static double best(double a, double b) {
    return a < b ? a : b;
}

/* ---- raw switch ---- */

static struct coil__ctx main_ctx, peer_ctx;

static void peer(void *arg) {
    (void)arg;
    for (;;)
        coil__ctx_switch(&peer_ctx, &main_ctx);
}

static double bench_switch(void) {
    static char stack[64 * 1024] __attribute__((aligned(16)));
    coil__ctx_make(&peer_ctx, stack + sizeof stack, peer, NULL);
    long n = 20000000;
    int64_t t0 = coil_now();
    for (long i = 0; i < n; i++)
        coil__ctx_switch(&main_ctx, &peer_ctx);
    return (double)(coil_now() - t0) / (2.0 * (double)n);
}

/* ---- one system call ---- */

#ifndef _WIN32
static double bench_syscall(void) {
    long n = 200000;
    int64_t t0 = coil_now();
    for (long i = 0; i < n; i++)
        syscall(SYS_getppid); /* not cached by libc, and does nothing */
    return (double)(coil_now() - t0) / (double)n;
}
#endif

/* ---- yield ---- */

static long yield_n;

static void yielder(void *arg) {
    (void)arg;
    for (long i = 0; i < yield_n; i++)
        coil_yield();
}

static void yield_main(void *arg) {
    double *out = arg;
    coil_id a = coil_spawn(yielder, NULL, NULL);
    int64_t t0 = coil_now();
    yielder(NULL);
    coil_join(a, COIL_FOREVER);
    *out = (double)(coil_now() - t0) / (2.0 * (double)yield_n);
}

/* ---- channel handoff ---- */

struct pingpong {
    coil_chan *a, *b;
    long n;
    double ns;
};

static void echo(void *arg) {
    struct pingpong *p = arg;
    long v;
    while (coil_chan_recv(p->a, &v) == 0)
        coil_chan_send(p->b, &v);
}

static void handoff_main(void *arg) {
    struct pingpong *p = arg;
    coil_chan_open(&p->a, sizeof(long), 0);
    coil_chan_open(&p->b, sizeof(long), 0);
    coil_spawn(echo, p, NULL);
    coil_yield();
    int64_t t0 = coil_now();
    for (long i = 0; i < p->n; i++) {
        long v = i;
        coil_chan_send(p->a, &v);
        coil_chan_recv(p->b, &v);
    }
    p->ns = (double)(coil_now() - t0) / (2.0 * (double)p->n);
    coil_chan_close(p->a);
    coil_yield();
    coil_chan_free(p->a);
    coil_chan_free(p->b);
}

/* ---- spawn + exit ---- */

static long spawned_done;

static void empty(void *arg) {
    (void)arg;
    spawned_done++;
}

struct spawn_args {
    long n, wave;
    double ns;
};

static void spawn_main(void *arg) {
    struct spawn_args *a = arg;
    spawned_done = 0;
    int64_t t0 = coil_now();
    for (long i = 0; i < a->n; i += a->wave) {
        for (long j = 0; j < a->wave; j++)
            coil_spawn(empty, NULL, NULL);
        while (spawned_done < i + a->wave)
            coil_yield();
    }
    a->ns = (double)(coil_now() - t0) / (double)a->n;
}

/* ---- parked tasklets ---- */

static long rss_bytes(void) {
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f) return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = -1;
    fclose(f);
    return resident * sysconf(_SC_PAGESIZE);
}

struct parked_args {
    long n;
    coil_chan *ch;
    long parked_ok;
    double bytes;
    int err;
};

static void parked(void *arg) {
    struct parked_args *p = arg;
    char c;
    if (coil_chan_recv(p->ch, &c) == -EPIPE) p->parked_ok++;
}

static void parked_main(void *arg) {
    struct parked_args *p = arg;
    coil_chan_open(&p->ch, 1, 0);
    long before = rss_bytes();
    for (long i = 0; i < p->n; i++) {
        coil_id id = coil_spawn(parked, p, NULL);
        if (id < 0) {
            p->err = (int)id;
            break;
        }
    }
    coil_yield(); /* every tasklet runs until it parks on the channel */
    while (1) {
        coil_chan_info info;
        coil_chan_getinfo(p->ch, &info);
        if (-info.balance >= p->n || p->err) break;
        coil_yield();
    }
    long after = rss_bytes();
    p->bytes = (double)(after - before) / (double)p->n;
    coil_chan_close(p->ch);
    coil_yield();
    coil_chan_free(p->ch);
}

int main(int argc, char **argv) {
    long parked_n = 100000;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--parked") && i + 1 < argc)
            parked_n = atol(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--parked N]\n", argv[0]);
            return 2;
        }
    }
    double sw = 1e9, y = 1e9, h = 1e9, sp = 1e9, burst = 1e9;
#ifndef _WIN32
    double sc = 1e9;
#endif
    for (int r = 0; r < RUNS; r++) {
        sw = best(sw, bench_switch());
#ifndef _WIN32
        sc = best(sc, bench_syscall());
#endif
        double v;
        yield_n = 2000000;
        coil_run(yield_main, &v);
        y = best(y, v);
        struct pingpong p = {.n = 2000000};
        coil_run(handoff_main, &p);
        h = best(h, p.ns);
        struct spawn_args s = {.n = 1000000, .wave = 100};
        coil_run(spawn_main, &s);
        sp = best(sp, s.ns);
        if (r < 2) {
            struct spawn_args b = {.n = 100000, .wave = 100000};
            coil_run(spawn_main, &b);
            burst = best(burst, b.ns);
        }
    }
    printf("coil switch_ns %.2f\n", sw);
    printf("coil yield_ns %.2f\n", y);
    printf("coil chan_handoff_ns %.2f\n", h);
    printf("coil spawn_exit_ns %.2f\n", sp);
    printf("coil spawn_exit_burst_ns %.2f\n", burst);
#ifndef _WIN32
    printf("machine syscall_ns %.2f\n", sc);
#endif
    fflush(stdout);
    struct parked_args pa = {.n = parked_n};
    int64_t t0 = coil_now();
    int err = coil_run(parked_main, &pa);
    if (err || pa.err || pa.parked_ok != parked_n) {
        fprintf(stderr, "coil parked: coil_run %d, spawn error %d, %ld of %ld parked\n", err,
                pa.err, pa.parked_ok, parked_n);
        return 1;
    }
    printf("coil parked_tasklet_bytes %.0f (%ld tasklets, %.2f s to spawn, park and finish)\n",
           pa.bytes, parked_n, (double)(coil_now() - t0) / 1e9);
    return 0;
}
