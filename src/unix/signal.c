/*
 * Signals that reach the schedulers: SIGINT/SIGTERM (clean shutdown, while a
 * coil_run is active) and the dump signal (coil_dump_on_signal). A handler
 * only bumps a counter and writes to one process-wide eventfd that every
 * scheduler's backend watches; each scheduler acts on the counters at its
 * next round, on its own thread.
 */
#include "internal.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

volatile unsigned coil__dump_requests;
volatile unsigned coil__shutdown_requests;
volatile int coil__shutdown_signo = SIGINT;
int coil__signal_wake_fd = -1;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int wake_users;       /* schedulers running (under lock) */
static int handlers_writing; /* handlers between loading the fd and writing it */

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
            __atomic_store_n(&coil__signal_wake_fd, fd, __ATOMIC_SEQ_CST);
    }
    if (!err) wake_users++;
    pthread_mutex_unlock(&lock);
    return err;
}

/* The last scheduler has ended (its backend no longer watches the fd): close
 * it, so that coil_run leaves no fd behind. A handler on another thread may
 * have loaded the number just before it was cleared: wait until it has
 * written, or the close could let the number name another file before that
 * write. (A handler that interrupts this thread itself runs to completion
 * before the thread goes on.) */
void coil__signal_wake_release(void) {
    pthread_mutex_lock(&lock);
    if (--wake_users == 0) {
        int fd = __atomic_exchange_n(&coil__signal_wake_fd, -1, __ATOMIC_SEQ_CST);
        while (__atomic_load_n(&handlers_writing, __ATOMIC_SEQ_CST))
            sched_yield();
        if (fd >= 0) close(fd);
    }
    pthread_mutex_unlock(&lock);
}

void coil__eventfd_post(int fd) {
    uint64_t one = 1;
    ssize_t w = write(fd, &one, sizeof one);
    (void)w;
}

/* Async-signal-safe. */
void coil__signal_wake(void) {
    __atomic_add_fetch(&handlers_writing, 1, __ATOMIC_SEQ_CST);
    int fd = __atomic_load_n(&coil__signal_wake_fd, __ATOMIC_SEQ_CST);
    if (fd >= 0) coil__eventfd_post(fd);
    __atomic_sub_fetch(&handlers_writing, 1, __ATOMIC_SEQ_CST);
}

/* ---- SIGINT and SIGTERM ------------------------------------------------- */

/* They are caught while at least one coil_run is active, if the program left
 * them at their default action (or ignored, with COIL_SIGNALS_TAKE). */
static int active_runs;
static bool caught[2];
static struct sigaction before[2]; /* what the program had, given back at the end */
static const int shutdown_sigs[2] = {SIGINT, SIGTERM};

/* The first shutdown signal gives both back to their default action, so that
 * a second Ctrl-C ends a process whose tasklets do not finish, as Ctrl-C
 * would without coil (sigaction is async-signal-safe; `caught` does not
 * change while a run is active). */
static void on_shutdown(int sig) {
    int saved = errno;
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    for (int i = 0; i < 2; i++)
        if (caught[i]) sigaction(shutdown_sigs[i], &dfl, NULL);
    __atomic_store_n(&coil__shutdown_signo, sig, __ATOMIC_RELAXED);
    __atomic_add_fetch(&coil__shutdown_requests, 1, __ATOMIC_RELAXED);
    coil__signal_wake();
    errno = saved;
}

void coil__shutdown_signals_acquire(void) {
    pthread_mutex_lock(&lock);
    if (active_runs++ == 0) {
        int m = coil__shutdown_mode();
        for (int i = 0; i < 2; i++) {
            struct sigaction sa;
            caught[i] = false;
            if (m == COIL_SIGNALS_LEAVE || sigaction(shutdown_sigs[i], NULL, &before[i]) != 0 ||
                (before[i].sa_flags & SA_SIGINFO))
                continue;
            if (before[i].sa_handler != SIG_DFL &&
                !(before[i].sa_handler == SIG_IGN && m == COIL_SIGNALS_TAKE))
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
            /* Give it back only if it is still ours (or the default our
             * handler left after the first signal), not one the program
             * installed meanwhile. */
            if (sigaction(shutdown_sigs[i], NULL, &cur) == 0 &&
                (cur.sa_handler == on_shutdown || cur.sa_handler == SIG_DFL))
                sigaction(shutdown_sigs[i], &before[i], NULL);
            caught[i] = false;
        }
    }
    pthread_mutex_unlock(&lock);
}

void coil__die_by_signal(int sig) {
    signal(sig, SIG_DFL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    raise(sig);
    _exit(128 + sig); /* only if the signal did not end it (it cannot, as a default) */
}
