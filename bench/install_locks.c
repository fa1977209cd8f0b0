/*
 * coil-bench-install-locks: what coil_install's pthread lock wrappers
 * (src/unix/locks.c) cost, one figure a line:
 *
 *   pthread_uncontended_ns X        pthread_mutex_lock + unlock in a tasklet,
 *                                   nobody else wanting the mutex, diverted
 *   pthread_uncontended_libc_ns X   the same after coil_uninstall: libc's
 *                                   calls as they are
 *   pthread_handoff_ns X            a pthread mutex (diverted) taken in turn
 *                                   by two tasklets of one scheduler, each
 *                                   holding it across a coil_yield, so the
 *                                   other is parked on it: per hand-off
 *   coil_mutex_handoff_ns X         the same with coil_mutex, coil's own
 *   ratio uncontended X             diverted / libc
 *   ratio handoff X                 pthread (diverted) / coil_mutex
 *
 * Each figure is the best of 5 runs. Nothing is asserted. The program's own
 * calls are diverted because it links libcoil.so (coil does not divert the
 * object it is linked into).
 */
#include <coil.h>

#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>

#define RUNS 5

static pthread_mutex_t pm = PTHREAD_MUTEX_INITIALIZER;
static coil_mutex *cm;
static bool use_coil_mutex;
static long n_iter;

static double best(double a, double b) {
    return a < b ? a : b;
}

static void uncontended_main(void *arg) {
    double *out = arg;
    long n = 10000000;
    int64_t t0 = coil_now();
    for (long i = 0; i < n; i++) {
        pthread_mutex_lock(&pm);
        pthread_mutex_unlock(&pm);
    }
    *out = (double)(coil_now() - t0) / (double)n;
}

static void pthread_taker(void *arg) {
    (void)arg;
    for (long i = 0; i < n_iter; i++) {
        pthread_mutex_lock(&pm);
        coil_yield();
        pthread_mutex_unlock(&pm);
    }
}

static void coil_taker(void *arg) {
    (void)arg;
    for (long i = 0; i < n_iter; i++) {
        coil_mutex_lock(cm);
        coil_yield();
        coil_mutex_unlock(cm);
    }
}

static void handoff_main(void *arg) {
    double *out = arg;
    /* a coil_mutex belongs to the coil_run that first uses it: one per run */
    if (use_coil_mutex && coil_mutex_open(&cm) != 0) return;
    coil_fn taker = use_coil_mutex ? coil_taker : pthread_taker;
    int64_t t0 = coil_now();
    coil_id a = coil_spawn(taker, NULL, NULL);
    taker(NULL);
    coil_join(a, COIL_FOREVER);
    /* every acquisition but the first of each run is a hand-off */
    *out = (double)(coil_now() - t0) / (2.0 * (double)n_iter);
    if (use_coil_mutex) coil_mutex_free(cm);
}

static double run(coil_fn fn) {
    double b = 1e300, r = 0;
    for (int i = 0; i < RUNS; i++) {
        if (coil_run(fn, &r) != 0) return -1;
        b = best(b, r);
    }
    return b;
}

int main(void) {
    if (coil_install() != 0) {
        fprintf(stderr, "coil_install failed\n");
        return 1;
    }
    double unc = run(uncontended_main);
    n_iter = 500000;
    double handoff = run(handoff_main);
    coil_uninstall();
    double unc_libc = run(uncontended_main);
    use_coil_mutex = true;
    double coil_handoff = run(handoff_main);
    printf("pthread_uncontended_ns %.2f\n", unc);
    printf("pthread_uncontended_libc_ns %.2f\n", unc_libc);
    printf("pthread_handoff_ns %.2f\n", handoff);
    printf("coil_mutex_handoff_ns %.2f\n", coil_handoff);
    printf("ratio uncontended %.2f\n", unc / unc_libc);
    printf("ratio handoff %.2f\n", handoff / coil_handoff);
    return 0;
}
