/*
 * Signals that reach the schedulers: SIGINT/SIGTERM (clean shutdown, while a
 * coil_run is active) and the dump signal (coil_dump_on_signal). A handler
 * only bumps a counter and writes to one process-wide eventfd that every
 * scheduler's backend watches; each scheduler acts on the counters at its
 * next round, on its own thread. When a shutdown cannot finish (a second
 * signal, or the grace timer), the handler itself ends the process, after
 * asking each scheduler's thread where it is (src/unix/watchdog.c): a
 * scheduler stuck in a call nothing diverted never reaches its next round.
 */
#include "internal.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
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

/* Since the first coil_run of the active ones started (atomic): shutdown
 * signals caught, and whether a handler is ending the process. */
static unsigned signals_seen;
static int forcing;

/* The grace, kept by the kernel too: a scheduler stuck in a call that nothing
 * diverted never reaches its own deadline check. Armed by the first signal
 * (timer_settime is async-signal-safe) for the grace plus a second, so that
 * a scheduler that can act ends the process itself, with its full dump; its
 * expiry is a caught shutdown signal with si_code SI_TIMER. */
#define GRACE_MARGIN COIL_SEC
static timer_t grace_timer;
static bool grace_timer_made;

/* The shutdown cannot finish, or the user does not want to wait: say so,
 * write what each scheduler is doing, and end the process as sig's default
 * action would. Async-signal-safe; a signal that comes during the dump ends
 * the process at once. */
__attribute__((noreturn)) static void give_up(int sig, bool grace_ran_out, void *uc) {
    if (__atomic_exchange_n(&forcing, 1, __ATOMIC_ACQ_REL)) coil__die_by_signal(sig);
    if (grace_ran_out) {
        coil__report_str("coil: shutdown: the tasklets have not finished ");
        coil__report_num(coil__shutdown_grace() / COIL_MSEC);
        coil__report_str(" ms after signal ");
        coil__report_num(sig);
        coil__report_str(", and a scheduler did not act on it; ending the process as the "
                         "signal would\n");
    } else {
        coil__report_str("coil: shutdown: signal ");
        coil__report_num(sig);
        coil__report_str(" came again before the tasklets finished; ending the process as the "
                         "signal would\n");
    }
    coil__watchdog_dump_all(uc);
    coil__die_by_signal(sig);
}

/* The first shutdown signal asks every scheduler to kill its tasklets (a
 * counter and a wake-up) and starts the grace timer; a second one, or the
 * timer, gives up (see give_up). */
static void on_shutdown(int sig, siginfo_t *si, void *uc) {
    int saved = errno;
    if (si && si->si_code == SI_TIMER && si->si_value.sival_ptr == &grace_timer) {
        if (__atomic_load_n(&signals_seen, __ATOMIC_ACQUIRE))
            give_up(__atomic_load_n(&coil__shutdown_signo, __ATOMIC_RELAXED), true, uc);
        errno = saved;
        return;
    }
    if (__atomic_add_fetch(&signals_seen, 1, __ATOMIC_ACQ_REL) > 1) give_up(sig, false, uc);
    __atomic_store_n(&coil__shutdown_signo, sig, __ATOMIC_RELAXED);
    __atomic_add_fetch(&coil__shutdown_requests, 1, __ATOMIC_RELAXED);
    coil__signal_wake();
    int64_t grace = coil__shutdown_grace();
    if (grace >= 0 && grace_timer_made) {
        grace += GRACE_MARGIN;
        struct itimerspec its = {
            .it_value = {(time_t)(grace / COIL_SEC), (long)(grace % COIL_SEC)}};
        timer_settime(grace_timer, 0, &its, NULL);
    }
    errno = saved;
}

static bool is_ours(const struct sigaction *sa) {
    return (sa->sa_flags & SA_SIGINFO) && sa->sa_sigaction == on_shutdown;
}

void coil__shutdown_signals_acquire(void) {
    pthread_mutex_lock(&lock);
    if (active_runs++ == 0) {
        int m = coil__shutdown_mode();
        __atomic_store_n(&signals_seen, 0, __ATOMIC_RELAXED);
        __atomic_store_n(&forcing, 0, __ATOMIC_RELAXED);
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
            sa.sa_sigaction = on_shutdown;
            /* SA_NODEFER: a signal that comes while a handler writes its
             * dump ends the process at once. */
            sa.sa_flags = SA_SIGINFO | SA_RESTART | SA_NODEFER;
            sigemptyset(&sa.sa_mask);
            caught[i] = sigaction(shutdown_sigs[i], &sa, NULL) == 0;
        }
        if (caught[0] || caught[1]) {
            struct sigevent sev;
            memset(&sev, 0, sizeof sev);
            sev.sigev_notify = SIGEV_SIGNAL;
            sev.sigev_signo = caught[0] ? SIGINT : SIGTERM;
            sev.sigev_value.sival_ptr = &grace_timer;
            /* Without the timer (it cannot fail but for lack of memory) only
             * a scheduler that can act keeps the grace. */
            grace_timer_made = timer_create(CLOCK_MONOTONIC, &sev, &grace_timer) == 0;
        }
    }
    pthread_mutex_unlock(&lock);
}

void coil__shutdown_signals_release(void) {
    pthread_mutex_lock(&lock);
    if (--active_runs == 0) {
        /* Deleted first: its signal must not reach the program's own
         * disposition. (One already queued still would, if the grace and
         * the margin ran out just as the last tasklet ended.) */
        if (grace_timer_made) timer_delete(grace_timer);
        grace_timer_made = false;
        for (int i = 0; i < 2; i++) {
            if (!caught[i]) continue;
            struct sigaction cur;
            /* Give it back only if it is still ours, not one the program
             * installed meanwhile. */
            if (sigaction(shutdown_sigs[i], NULL, &cur) == 0 && is_ours(&cur))
                sigaction(shutdown_sigs[i], &before[i], NULL);
            caught[i] = false;
        }
    }
    pthread_mutex_unlock(&lock);
}

/* Async-signal-safe (the handlers above call it). */
void coil__die_by_signal(int sig) {
    struct sigaction dfl;
    memset(&dfl, 0, sizeof dfl);
    dfl.sa_handler = SIG_DFL;
    sigemptyset(&dfl.sa_mask);
    sigaction(sig, &dfl, NULL);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, sig);
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
    raise(sig);
    _exit(128 + sig); /* only if the signal did not end it (it cannot, as a default) */
}
