/*
 * xthread: hand-offs between two OS threads in C, the floors under a channel
 * that crosses schedulers (threads). Each figure is per message:
 *
 *   c condvar_handoff_ns X   mutex + condition variable ping-pong, round trip / 2
 *   c eventfd_handoff_ns X   each thread blocks in read() on its own eventfd,
 *                            the other wakes it with write(): round trip / 2
 *   c spin_handoff_ns X      a shared word both threads spin on: round trip / 2,
 *                            the cache-line floor, paid for with two busy cores
 *   c spsc_stream_ns X       a lock-free 1024-slot single-producer,
 *                            single-consumer ring, one way
 *
 * Every loop runs a fixed count; the spinning ones yield the core after a
 * while, so that a machine busy with other work slows them but cannot hang them.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

static void relax(unsigned *spins) {
    if (++*spins % 4096 == 0) sched_yield();
}

static long count;

/* ---- mutex + condvar ---- */
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int ball; /* 1: the peer's turn, 0: main's */

static void *cv_peer(void *arg) {
    (void)arg;
    pthread_mutex_lock(&mu);
    for (long i = 0; i < count; i++) {
        while (ball != 1)
            pthread_cond_wait(&cv, &mu);
        ball = 0;
        pthread_cond_signal(&cv);
    }
    pthread_mutex_unlock(&mu);
    return NULL;
}

static double condvar(void) {
    pthread_t t;
    ball = 0;
    pthread_create(&t, NULL, cv_peer, NULL);
    double t0 = now_ns();
    pthread_mutex_lock(&mu);
    for (long i = 0; i < count; i++) {
        ball = 1;
        pthread_cond_signal(&cv);
        while (ball != 0)
            pthread_cond_wait(&cv, &mu);
    }
    pthread_mutex_unlock(&mu);
    double el = now_ns() - t0;
    pthread_join(t, NULL);
    return el / (2.0 * (double)count);
}

/* ---- eventfd ---- */
static int to_peer, to_main;

static void *ev_peer(void *arg) {
    (void)arg;
    uint64_t v;
    for (long i = 0; i < count; i++) {
        if (read(to_peer, &v, sizeof v) != sizeof v) break;
        if (write(to_main, &v, sizeof v) != sizeof v) break;
    }
    return NULL;
}

static double eventfd_pp(void) {
    pthread_t t;
    to_peer = eventfd(0, EFD_CLOEXEC);
    to_main = eventfd(0, EFD_CLOEXEC);
    pthread_create(&t, NULL, ev_peer, NULL);
    double t0 = now_ns();
    for (long i = 0; i < count; i++) {
        uint64_t v = 1;
        if (write(to_peer, &v, sizeof v) != sizeof v || read(to_main, &v, sizeof v) != sizeof v)
            break;
    }
    double el = now_ns() - t0;
    pthread_join(t, NULL);
    close(to_peer);
    close(to_main);
    return el / (2.0 * (double)count);
}

/* ---- spinning ---- */
static _Atomic int word;

static void *spin_peer(void *arg) {
    (void)arg;
    unsigned spins = 0;
    for (long i = 0; i < count; i++) {
        while (atomic_load_explicit(&word, memory_order_acquire) != 1)
            relax(&spins);
        atomic_store_explicit(&word, 0, memory_order_release);
    }
    return NULL;
}

static double spin(void) {
    pthread_t t;
    unsigned spins = 0;
    atomic_store(&word, 0);
    pthread_create(&t, NULL, spin_peer, NULL);
    double t0 = now_ns();
    for (long i = 0; i < count; i++) {
        atomic_store_explicit(&word, 1, memory_order_release);
        while (atomic_load_explicit(&word, memory_order_acquire) != 0)
            relax(&spins);
    }
    double el = now_ns() - t0;
    pthread_join(t, NULL);
    return el / (2.0 * (double)count);
}

/* ---- SPSC ring ---- */
#define SLOTS 1024
static long slot[SLOTS];
static _Alignas(64) _Atomic unsigned long produced;
static _Alignas(64) _Atomic unsigned long consumed;
static long sum;

static void *ring_consumer(void *arg) {
    (void)arg;
    unsigned long next = 0;
    unsigned spins = 0;
    long s = 0;
    for (long i = 0; i < count; i++) {
        while (atomic_load_explicit(&produced, memory_order_acquire) == next)
            relax(&spins);
        s += slot[next % SLOTS];
        atomic_store_explicit(&consumed, ++next, memory_order_release);
    }
    sum = s;
    return NULL;
}

static double ring(void) {
    pthread_t t;
    unsigned spins = 0;
    atomic_store(&produced, 0);
    atomic_store(&consumed, 0);
    pthread_create(&t, NULL, ring_consumer, NULL);
    double t0 = now_ns();
    unsigned long next = 0;
    for (long i = 0; i < count; i++) {
        while (next - atomic_load_explicit(&consumed, memory_order_acquire) >= SLOTS)
            relax(&spins);
        slot[next % SLOTS] = i;
        atomic_store_explicit(&produced, ++next, memory_order_release);
    }
    pthread_join(t, NULL);
    double el = now_ns() - t0;
    if (sum != count * (count - 1) / 2) fprintf(stderr, "xthread: the ring lost messages\n");
    return el / (double)count;
}

int main(void) {
    count = 50000;
    printf("c condvar_handoff_ns %.1f\n", condvar());
    printf("c eventfd_handoff_ns %.1f\n", eventfd_pp());
    count = 500000;
    printf("c spin_handoff_ns %.1f\n", spin());
    count = 20000000;
    printf("c spsc_stream_ns %.2f\n", ring());
    return 0;
}
