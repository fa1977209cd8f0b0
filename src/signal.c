/*
 * Signals that reach the schedulers: SIGINT/SIGTERM (clean shutdown, while a
 * coil_run is active) and the dump signal (coil_dump_on_signal). A handler
 * only bumps a counter and writes to one process-wide eventfd that every
 * scheduler's backend watches; each scheduler acts on the counters at its
 * next round, on its own thread.
 */
#include "internal.h"

#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

volatile unsigned coil__dump_requests;
volatile unsigned coil__shutdown_requests;
int coil__signal_wake_fd = -1;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

int coil__signal_wake_init(void) {
    int err = 0;
    pthread_mutex_lock(&lock);
    if (coil__signal_wake_fd < 0) {
        /* Watched edge-triggered (epoll) or by a multishot poll (io_uring):
         * each write wakes every scheduler once; nobody needs to drain it,
         * and writes never block (the counter cannot fill up in practice). */
        int fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (fd < 0)
            err = -errno;
        else
            __atomic_store_n(&coil__signal_wake_fd, fd, __ATOMIC_RELEASE);
    }
    pthread_mutex_unlock(&lock);
    return err;
}

/* Async-signal-safe. */
void coil__signal_wake(void) {
    int fd = __atomic_load_n(&coil__signal_wake_fd, __ATOMIC_ACQUIRE);
    if (fd >= 0) {
        uint64_t one = 1;
        ssize_t w = write(fd, &one, sizeof one);
        (void)w;
    }
}

static void on_shutdown(int sig) {
    int saved = errno;
    __atomic_add_fetch(&coil__shutdown_requests, 1, __ATOMIC_RELAXED);
    coil__signal_wake();
    errno = saved;
}

/* SIGINT and SIGTERM are caught while at least one coil_run is active, and
 * only if the program left them at their default action. */
static int active_runs;
static bool caught[2];
static const int shutdown_sigs[2] = {SIGINT, SIGTERM};

void coil__shutdown_signals_acquire(void) {
    pthread_mutex_lock(&lock);
    if (active_runs++ == 0) {
        for (int i = 0; i < 2; i++) {
            struct sigaction cur, sa;
            caught[i] = false;
            if (sigaction(shutdown_sigs[i], NULL, &cur) != 0 || cur.sa_handler != SIG_DFL ||
                (cur.sa_flags & SA_SIGINFO))
                continue;
            memset(&sa, 0, sizeof sa);
            sa.sa_handler = on_shutdown;
            sa.sa_flags = SA_RESTART;
            sigemptyset(&sa.sa_mask);
            caught[i] = sigaction(shutdown_sigs[i], &sa, NULL) == 0;
        }
    }
    pthread_mutex_unlock(&lock);
}

void coil__shutdown_signals_release(void) {
    pthread_mutex_lock(&lock);
    if (--active_runs == 0) {
        for (int i = 0; i < 2; i++) {
            if (!caught[i]) continue;
            struct sigaction cur;
            /* Give it back only if it is still ours. */
            if (sigaction(shutdown_sigs[i], NULL, &cur) == 0 && cur.sa_handler == on_shutdown)
                signal(shutdown_sigs[i], SIG_DFL);
            caught[i] = false;
        }
    }
    pthread_mutex_unlock(&lock);
}
