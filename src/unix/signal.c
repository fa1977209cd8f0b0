/*
 * Signals that reach the schedulers: SIGINT/SIGTERM (clean shutdown, while a
 * coil_run is active), the dump signal (coil_dump_on_signal), and the signals
 * tasklets wait for (coil_signal_wait). A handler only bumps a counter (or
 * sets a bit) and writes to one process-wide eventfd that every scheduler's
 * backend watches; each scheduler acts on the counters at its next round, on
 * its own thread. When a shutdown cannot finish (a second signal, or the
 * grace timer), the handler itself ends the process, after asking each
 * scheduler's thread where it is (src/unix/watchdog.c): a scheduler stuck in
 * a call nothing diverted never reaches its next round.
 */
#include "internal.h"

#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdint.h>
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

static bool program_waits(int sig);
static void keep(int sig);
static void wait_catches_begin(void);
static void wait_catches_end(void);

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
    if (program_waits(sig)) { /* a tasklet asked for it: not a shutdown */
        keep(sig);
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
        wait_catches_begin();
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
        wait_catches_end();
    }
    pthread_mutex_unlock(&lock);
}

/* ---- coil_signal_wait ---------------------------------------------------- */

/*
 * coil catches each signal a wait asks for with on_wait_signal, from the
 * first wait that asks for it until the last coil_run ends (then the
 * program's disposition is given back). The handler runs on whichever thread
 * the kernel picks (any thread that does not block the signal: a scheduler,
 * an offload worker, a thread of the program's), sets the signal's bit in
 * `kept` and wakes every scheduler through the eventfd; each scheduler sees
 * coil__signal_arrivals move and hands kept signals to its waiters
 * (coil__signal_deliver). Whichever waiter takes a bit first (one atomic
 * compare-and-swap) gets the signal, on any scheduler of any group: a signal
 * reaches one wait. A bit nobody takes stays set for the next wait (several
 * signals of one number count as one, as in the kernel's pending set).
 *
 * A handler, not a signalfd: a signalfd sees only signals blocked in every
 * thread of the process (a process-directed signal goes to any thread that
 * does not block it, and SIGHUP's default action ends the process), which a
 * library cannot arrange for threads it did not start (the program's, a
 * library's resolver thread, those started before coil_run); and SIGINT and
 * SIGTERM must go to a waiter or to the shutdown, decided at each arrival
 * (program_waits), which a blocked signal cannot do. Go's os/signal and
 * libuv's uv_signal take signals with a handler for the same reasons.
 */

volatile unsigned coil__signal_arrivals;
#define MAX_SIG  64
#define BIT(sig) ((uint64_t)1 << ((sig)-1))
static uint64_t kept;                         /* bit n-1: signal n caught, not yet taken (atomic) */
static unsigned waiting[MAX_SIG + 1];         /* tasklets waiting for signal n now (atomic) */
static bool wcaught[MAX_SIG + 1];             /* on_wait_signal is installed (under lock) */
static struct sigaction wbefore[MAX_SIG + 1]; /* the program's, given back at the end */
static bool wbefore_ignored[MAX_SIG + 1];     /* SIG_IGN before (atomic: the handler reads it) */

static bool is_shutdown_sig(int sig) {
    return sig == SIGINT || sig == SIGTERM;
}

/* Async-signal-safe, as keep. */
static bool program_waits(int sig) {
    return __atomic_load_n(&waiting[sig], __ATOMIC_SEQ_CST) > 0;
}

static void keep(int sig) {
    __atomic_or_fetch(&kept, BIT(sig), __ATOMIC_SEQ_CST);
    __atomic_add_fetch(&coil__signal_arrivals, 1, __ATOMIC_RELEASE);
    coil__signal_wake();
}

/* SIGINT and SIGTERM are kept only while a tasklet waits for them. Here
 * coil_run did not take the signal for a shutdown (it was ignored, or
 * COIL_SIGNALS_LEAVE): with no waiter it does what it did before the first
 * wait, which was its default action or nothing. (Caught for a shutdown, it
 * has on_shutdown, which makes the same choice.) */
static void on_wait_signal(int sig) {
    int saved = errno;
    if (!is_shutdown_sig(sig) || program_waits(sig))
        keep(sig);
    else if (!__atomic_load_n(&wbefore_ignored[sig], __ATOMIC_RELAXED))
        coil__die_by_signal(sig);
    errno = saved;
}

/* Takes one signal of mask that is kept (the lowest-numbered, as the kernel
 * delivers pending signals), or returns 0. */
static int take(uint64_t mask) {
    uint64_t k = __atomic_load_n(&kept, __ATOMIC_ACQUIRE);
    while (k & mask) {
        uint64_t bit = (k & mask) & (~(k & mask) + 1);
        if (__atomic_compare_exchange_n(&kept, &k, k & ~bit, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
            return __builtin_ctzll(bit) + 1;
    }
    return 0;
}

static void count_waiting(uint64_t mask, int delta) {
    for (int sig = 1; sig <= MAX_SIG; sig++)
        if (mask & BIT(sig)) __atomic_add_fetch(&waiting[sig], (unsigned)delta, __ATOMIC_SEQ_CST);
}

/* Under lock: the first coil_run starts with nothing kept (a bit that a
 * handler set as the last run ended belongs to no run). */
static void wait_catches_begin(void) {
    __atomic_store_n(&kept, 0, __ATOMIC_SEQ_CST);
}

/* Under lock: the last coil_run has ended. Each signal caught for the waits
 * gets back what the program had, unless the program has changed it since;
 * what no wait took is dropped. */
static void wait_catches_end(void) {
    for (int sig = 1; sig <= MAX_SIG; sig++) {
        if (!wcaught[sig]) continue;
        struct sigaction cur;
        if (sigaction(sig, NULL, &cur) == 0 && !(cur.sa_flags & SA_SIGINFO) &&
            cur.sa_handler == on_wait_signal)
            sigaction(sig, &wbefore[sig], NULL);
        wcaught[sig] = false;
    }
    __atomic_store_n(&kept, 0, __ATOMIC_SEQ_CST);
}

/* Makes sure every signal of mask is caught: the first pass only checks, so
 * that a set with one signal the program handles itself changes nothing.
 * Returns 0, or -EBUSY when a signal has a handler that is not coil's wait
 * handler (the program's, or coil_dump_on_signal's). */
static int catch_for_waits(uint64_t mask) {
    int err = 0;
    pthread_mutex_lock(&lock);
    for (int pass = 0; pass < 2 && !err; pass++) {
        for (int sig = 1; sig <= MAX_SIG && !err; sig++) {
            if (!(mask & BIT(sig)) || wcaught[sig]) continue;
            /* Taken for a shutdown: on_shutdown hands it to the waiters
             * (after a first shutdown signal every tasklet is killed, and
             * none waits: a second one ends the process). */
            if (is_shutdown_sig(sig) && caught[sig == SIGINT ? 0 : 1]) continue;
            struct sigaction cur;
            if (sigaction(sig, NULL, &cur) != 0) {
                err = -errno;
            } else if (pass == 0) {
                if ((cur.sa_flags & SA_SIGINFO) ||
                    (cur.sa_handler != SIG_DFL && cur.sa_handler != SIG_IGN))
                    err = -EBUSY;
            } else {
                struct sigaction sa;
                memset(&sa, 0, sizeof sa);
                sa.sa_handler = on_wait_signal;
                sa.sa_flags = SA_RESTART;
                sigemptyset(&sa.sa_mask);
                wbefore[sig] = cur;
                __atomic_store_n(&wbefore_ignored[sig], cur.sa_handler == SIG_IGN,
                                 __ATOMIC_RELAXED);
                if (sigaction(sig, &sa, NULL) != 0)
                    err = -errno;
                else
                    wcaught[sig] = true;
            }
        }
    }
    pthread_mutex_unlock(&lock);
    return err;
}

/* The set as a mask; -EINVAL when it is empty or names a signal that no
 * wait can take: SIGKILL and SIGSTOP (never caught), the faults (SIGSEGV,
 * SIGBUS, SIGFPE, SIGILL: a handler that returns runs the faulting
 * instruction again; SIGSEGV is also coil's overflow handler's), SIGPIPE
 * (blocked on every scheduler's thread during coil_run). glibc's own
 * real-time signals (32, 33) are never members for sigismember. */
static int mask_of(const sigset_t *set, uint64_t *out) {
    uint64_t mask = 0;
    for (int sig = 1; sig <= MAX_SIG && sig < NSIG; sig++) {
        if (sigismember(set, sig) != 1) continue;
        switch (sig) {
        case SIGKILL:
        case SIGSTOP:
        case SIGSEGV:
        case SIGBUS:
        case SIGFPE:
        case SIGILL:
        case SIGPIPE: return -EINVAL;
        default: mask |= BIT(sig);
        }
    }
    *out = mask;
    return mask ? 0 : -EINVAL;
}

static bool sigwait_unwait(struct coil__tasklet *t, int err) {
    (void)err;
    struct coil__sigwait *w = t->wait_obj;
    coil__list_remove(&t->sched->sigwaiters, &w->link);
    count_waiting(w->mask, -1);
    return true;
}

void coil__signal_deliver(struct coil__sched *s) {
    struct coil__link *l = s->sigwaiters.first;
    while (l && __atomic_load_n(&kept, __ATOMIC_ACQUIRE)) {
        struct coil__link *next = l->next;
        struct coil__sigwait *w = coil__container_of(l, struct coil__sigwait, link);
        int sig = take(w->mask);
        if (sig) {
            coil__list_remove(&s->sigwaiters, l);
            count_waiting(w->mask, -1);
            coil__wake(w->t, sig);
        }
        l = next;
    }
}

int coil_signal_wait(const sigset_t *set, int64_t deadline) {
    if (!set) return -EINVAL;
    int saved_errno = errno; /* sigismember and sigaction may set it */
    uint64_t mask = 0;
    struct coil__tasklet *t = NULL;
    int err = mask_of(set, &mask);
    if (!err) err = coil__enter(&t);
    if (!err) err = catch_for_waits(mask);
    errno = saved_errno;
    if (err) return err;
    int sig = take(mask);
    if (sig) return sig;
    if (coil__deadline_passed(deadline)) return -ETIMEDOUT;
    struct coil__sigwait w = {.t = t, .mask = mask};
    /* Counted before it parks: a SIGINT or SIGTERM that comes from here on
     * is kept for it rather than taken for a shutdown. One kept meanwhile
     * moved coil__signal_arrivals, so the loop delivers it after the park. */
    coil__list_push_back(&t->sched->sigwaiters, &w.link);
    count_waiting(mask, 1);
    int rc = coil__park(t, COIL__WAIT_SIGNAL, &w, 0, sigwait_unwait, deadline);
    if (rc == -ETIMEDOUT && (sig = take(mask)) != 0) rc = sig; /* came as the deadline did */
    return rc;
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
    COIL__COVERAGE_DUMP();
    raise(sig);
    _exit(128 + sig); /* only if the signal did not end it (it cannot, as a default) */
}
