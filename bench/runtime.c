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
 *   coil mutex_uncontended_ns X   coil_mutex_lock + coil_mutex_unlock, nobody
 *                                 else wanting the mutex
 *   coil pthread_mutex_uncontended_ns X
 *                                 pthread_mutex_lock + unlock, the same way,
 *                                 for comparison
 *   coil mutex_handoff_ns X       a mutex handed between two tasklets that
 *                                 both want it all the time (each unlock goes
 *                                 to the waiting one, which then runs): per
 *                                 hand-off
 *
 * Across the two schedulers of a group (coil_run_group(2, ...)):
 *
 *   coil xhandoff_ns X            unbuffered ping-pong between a tasklet on
 *                                 each scheduler, round trip / 2; neither
 *                                 scheduler has anything else to do, so each
 *                                 spins on its inbox between messages
 *   coil xhandoff_idle_ns X       one unbuffered hand-off to a tasklet whose
 *                                 scheduler sleeps in the kernel (it has had
 *                                 nothing to do for 200 us, ten times its
 *                                 spin): from coil_now() before the send to
 *                                 coil_now() in the receiver, the mean of 2,000
 *   coil xstream_ns X             a 1024-slot buffered channel, one way, per
 *                                 message (10,000,000 longs, checksummed)
 *   coil xspin_cpu_pct X          CPU time of both schedulers' threads over
 *                                 wall time, in % of one core, while a tasklet
 *                                 on scheduler 1 receives a message every 2 ms
 *                                 from a tasklet on scheduler 0: what idle
 *                                 spinning costs
 *   machine syscall_ns X          one system call that does nothing (getppid):
 *                                 the entry and exit every recv, send and
 *                                 epoll_wait pays before its own work (not
 *                                 coil's figure: it says what a system call
 *                                 saved is worth on this machine)
 *
 *   coil-bench-runtime [--parked N]   (default 100000; 1000000 for the million)
 *   coil-bench-runtime --xthread      chan_handoff_ns and the figures across
 *                                     schedulers only (bench/compare xthread)
 *
 * Timing figures are the best of 5 runs. Nothing is asserted: these are
 * figures to compare, in the same run, with the peers' figures.
 */
#include <coil.h>

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#ifndef _WIN32
#include <sys/resource.h>
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

/* ---- mutexes ---- */

struct mutex_args {
    coil_mutex *m;
    long n;
    double ns;
};

static void mutex_uncontended_main(void *arg) {
    struct mutex_args *a = arg;
    coil_mutex_open(&a->m);
    int64_t t0 = coil_now();
    for (long i = 0; i < a->n; i++) {
        coil_mutex_lock(a->m);
        coil_mutex_unlock(a->m);
    }
    a->ns = (double)(coil_now() - t0) / (double)a->n;
    coil_mutex_free(a->m);
}

static double bench_pthread_mutex(long n) {
    static pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    int64_t t0 = coil_now();
    for (long i = 0; i < n; i++) {
        pthread_mutex_lock(&m);
        pthread_mutex_unlock(&m);
    }
    return (double)(coil_now() - t0) / (double)n;
}

/* Each holds the mutex, unlocks (handing it to the other, parked in its
 * lock) and locks again (parking until the other hands it back). */
static void mutex_taker(void *arg) {
    struct mutex_args *a = arg;
    coil_mutex_lock(a->m);
    for (long i = 0; i < a->n; i++) {
        coil_mutex_unlock(a->m);
        coil_mutex_lock(a->m);
    }
    coil_mutex_unlock(a->m);
}

static void mutex_handoff_main(void *arg) {
    struct mutex_args *a = arg;
    coil_mutex_open(&a->m);
    coil_mutex_lock(a->m);
    coil_id id = coil_spawn(mutex_taker, a, NULL);
    coil_yield(); /* the other waits for the mutex */
    int64_t t0 = coil_now();
    for (long i = 0; i < a->n; i++) {
        coil_mutex_unlock(a->m);
        coil_mutex_lock(a->m);
    }
    coil_mutex_unlock(a->m);
    coil_join(id, COIL_FOREVER);
    a->ns = (double)(coil_now() - t0) / (2.0 * (double)a->n);
    coil_mutex_free(a->m);
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

/* ---- across the schedulers of a group ---- */

struct xpair {
    coil_chan *a, *b; /* a: scheduler 0 -> 1; b: 1 -> 0 */
    long n;
    int64_t gap;     /* xhandoff_idle, xspin: sleep this long between messages */
    int64_t latency; /* xhandoff_idle: the sum of the one-way hand-offs */
    double ns;
    int err;
};

/* Scheduler 1: answers every message of a on b, until a is closed. */
static void xecho(void *arg) {
    struct xpair *p = arg;
    long v;
    while (coil_chan_recv(p->a, &v) == 0)
        coil_chan_send(p->b, &v);
}

/* Scheduler 1: the one-way time of every message (each carries its send's
 * coil_now()), answered on b. */
static void xstamp(void *arg) {
    struct xpair *p = arg;
    int64_t sent;
    while (coil_chan_recv(p->a, &sent) == 0) {
        p->latency += coil_now() - sent;
        coil_chan_send(p->b, &sent);
    }
}

static void xsum(void *arg) {
    struct xpair *p = arg;
    long v, sum = 0;
    while (coil_chan_recv(p->a, &v) == 0)
        sum += v;
    coil_chan_send(p->b, &sum);
}

static int xopen(struct xpair *p, size_t cap, coil_fn fn) {
    int err;
    if ((err = coil_chan_open(&p->a, sizeof(long), cap)) != 0 ||
        (err = coil_chan_open(&p->b, sizeof(long), 0)) != 0)
        return err;
    coil_id id = coil_spawn_on(1, fn, p, NULL);
    return id < 0 ? (int)id : 0;
}

static void xclose(struct xpair *p) {
    coil_chan_close(p->a);
    coil_sleep(COIL_MSEC); /* the peer leaves a */
    coil_chan_free(p->a);
    coil_chan_free(p->b);
}

static void xhandoff_main(void *arg) {
    struct xpair *p = arg;
    if ((p->err = xopen(p, 0, xecho)) != 0) return;
    long v = 0;
    coil_chan_send(p->a, &v); /* the peer and the shared channels are ready */
    coil_chan_recv(p->b, &v);
    int64_t t0 = coil_now();
    for (long i = 0; i < p->n; i++) {
        v = i;
        coil_chan_send(p->a, &v);
        coil_chan_recv(p->b, &v);
    }
    p->ns = (double)(coil_now() - t0) / (2.0 * (double)p->n);
    xclose(p);
}

static void xidle_main(void *arg) {
    struct xpair *p = arg;
    if ((p->err = xopen(p, 0, xstamp)) != 0) return;
    int64_t v = coil_now();
    coil_chan_send(p->a, &v);
    coil_chan_recv(p->b, &v);
    p->latency = 0;
    for (long i = 0; i < p->n; i++) {
        coil_sleep(p->gap); /* the peer's scheduler spins, then sleeps */
        v = coil_now();
        coil_chan_send(p->a, &v);
        coil_chan_recv(p->b, &v);
    }
    p->ns = (double)p->latency / (double)p->n;
    xclose(p);
}

static void xstream_main(void *arg) {
    struct xpair *p = arg;
    long n = p->n;
    if ((p->err = xopen(p, 1024, xsum)) != 0) return;
    long v = 0;
    coil_chan_send(p->a, &v); /* made shared before the clock starts */
    coil_sleep(COIL_MSEC);
    int64_t t0 = coil_now();
    for (long i = 0; i < n; i++)
        coil_chan_send(p->a, &i);
    coil_chan_close(p->a);
    long sum;
    coil_chan_recv(p->b, &sum);
    p->ns = (double)(coil_now() - t0) / (double)n;
    if (sum != n * (n - 1) / 2) p->err = -EIO;
    coil_sleep(COIL_MSEC);
    coil_chan_free(p->a);
    coil_chan_free(p->b);
}

#ifndef _WIN32
static int64_t cpu_ns(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru); /* the process: the group's two threads */
    return ((int64_t)ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * COIL_SEC +
           ((int64_t)ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) * COIL_USEC;
}

static void xspin_main(void *arg) {
    struct xpair *p = arg;
    if ((p->err = xopen(p, 0, xecho)) != 0) return;
    long v = 0;
    coil_chan_send(p->a, &v);
    coil_chan_recv(p->b, &v);
    int64_t c0 = cpu_ns(), t0 = coil_now();
    for (long i = 0; i < p->n; i++) {
        coil_sleep(p->gap);
        coil_chan_send(p->a, &i);
        coil_chan_recv(p->b, &v);
    }
    p->ns = 100.0 * (double)(cpu_ns() - c0) / (double)(coil_now() - t0);
    xclose(p);
}
#endif

/* Runs main in a group of two; the figure, or -1 (said on stderr). */
static double xrun(const char *what, coil_fn main, struct xpair *p) {
    int err = coil_run_group(2, main, p);
    if (err || p->err) {
        fprintf(stderr, "coil %s: coil_run_group %d, %d\n", what, err, p->err);
        return -1;
    }
    return p->ns;
}

int main(int argc, char **argv) {
    long parked_n = 100000;
    bool xonly = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--parked") && i + 1 < argc)
            parked_n = atol(argv[++i]);
        else if (!strcmp(argv[i], "--xthread"))
            xonly = true;
        else {
            fprintf(stderr, "usage: %s [--parked N] [--xthread]\n", argv[0]);
            return 2;
        }
    }
    double sw = 1e9, y = 1e9, h = 1e9, sp = 1e9, burst = 1e9, mu = 1e9, pmu = 1e9, mh = 1e9;
#ifndef _WIN32
    double sc = 1e9;
#endif
    double xh = 1e9, xi = 1e9, xs = 1e9, xc = 1e9;
    for (int r = 0; r < RUNS; r++) {
        struct pingpong p = {.n = 2000000};
        coil_run(handoff_main, &p);
        h = best(h, p.ns);
        struct xpair x = {.n = 200000};
        xh = best(xh, xrun("xhandoff", xhandoff_main, &x));
        x = (struct xpair){.n = 2000, .gap = 200 * COIL_USEC};
        xi = best(xi, xrun("xhandoff_idle", xidle_main, &x));
        x = (struct xpair){.n = 10000000};
        xs = best(xs, xrun("xstream", xstream_main, &x));
#ifndef _WIN32
        x = (struct xpair){.n = 250, .gap = 2 * COIL_MSEC};
        xc = best(xc, xrun("xspin", xspin_main, &x));
#endif
        if (xonly) continue;
        sw = best(sw, bench_switch());
#ifndef _WIN32
        sc = best(sc, bench_syscall());
#endif
        double v;
        yield_n = 2000000;
        coil_run(yield_main, &v);
        y = best(y, v);
        struct spawn_args s = {.n = 1000000, .wave = 100};
        coil_run(spawn_main, &s);
        sp = best(sp, s.ns);
        struct mutex_args m = {.n = 20000000};
        coil_run(mutex_uncontended_main, &m);
        mu = best(mu, m.ns);
        pmu = best(pmu, bench_pthread_mutex(20000000));
        m = (struct mutex_args){.n = 1000000};
        coil_run(mutex_handoff_main, &m);
        mh = best(mh, m.ns);
        if (r < 2) {
            struct spawn_args b = {.n = 100000, .wave = 100000};
            coil_run(spawn_main, &b);
            burst = best(burst, b.ns);
        }
    }
    if (!xonly) {
        printf("coil switch_ns %.2f\n", sw);
        printf("coil yield_ns %.2f\n", y);
    }
    printf("coil chan_handoff_ns %.2f\n", h);
    if (!xonly) {
        printf("coil spawn_exit_ns %.2f\n", sp);
        printf("coil spawn_exit_burst_ns %.2f\n", burst);
        printf("coil mutex_uncontended_ns %.2f\n", mu);
        printf("coil pthread_mutex_uncontended_ns %.2f\n", pmu);
        printf("coil mutex_handoff_ns %.2f\n", mh);
    }
    if (xh < 0 || xi < 0 || xs < 0 || xc < 0) return 1;
    printf("coil xhandoff_ns %.2f\n", xh);
    printf("coil xhandoff_idle_ns %.2f\n", xi);
    printf("coil xstream_ns %.2f\n", xs);
#ifndef _WIN32
    printf("coil xspin_cpu_pct %.2f\n", xc);
    if (!xonly) printf("machine syscall_ns %.2f\n", sc);
#endif
    if (xonly) return 0;
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
