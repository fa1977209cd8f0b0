/*
 * Ctrl-C on Windows: SIGINT and SIGTERM through the C runtime's signal(),
 * which covers both raise(SIGINT) and a console's Ctrl-C (the runtime turns
 * CTRL_C_EVENT into SIGINT on a thread of its own, Wine's msvcrt included).
 * The handler does what src/unix/signal.c's does: bump a counter, and wake every
 * scheduler, here by posting a packet to each running scheduler's completion
 * port (PostQueuedCompletionStatus may be called from any thread).
 *
 * The ports sit in a fixed array under a slim reader/writer lock: the
 * handler posts under the shared lock, and a scheduler's end takes its port
 * out under the exclusive lock before it closes the handle. Without it the
 * handler, on its own thread, could load a port just before iocp_fini closes
 * it and post to a closed handle, or to whatever object got the number next.
 * A lock is safe here: on Windows no handler interrupts a thread. A console
 * Ctrl-C runs the C runtime's handler on a thread the console starts for it
 * (an ordinary thread, which may wait); raise() runs it on the caller's
 * thread, synchronously, and coil never raises while holding the lock (the
 * lock is held only inside the three functions below, which call nothing
 * that raises), so that thread cannot deadlock on itself either.
 */
#include "internal.h"

#include <signal.h>

volatile unsigned coil__dump_requests;
volatile unsigned coil__shutdown_requests;
volatile int coil__shutdown_signo = SIGINT;
int coil__signal_wake_fd = -1; /* not used on Windows: ports are woken instead */

#define MAX_PORTS 256
static HANDLE ports[MAX_PORTS];
static SRWLOCK ports_lock = SRWLOCK_INIT;

int coil__win_port_register(HANDLE port) {
    int err = -EAGAIN; /* more schedulers than slots: signals would not wake this one */
    AcquireSRWLockExclusive(&ports_lock);
    for (int i = 0; i < MAX_PORTS; i++) {
        if (!ports[i]) {
            ports[i] = port;
            err = 0;
            break;
        }
    }
    ReleaseSRWLockExclusive(&ports_lock);
    return err;
}

/* Once this returns, no handler posts to port: the caller may close it. */
void coil__win_port_unregister(HANDLE port) {
    AcquireSRWLockExclusive(&ports_lock);
    for (int i = 0; i < MAX_PORTS; i++) {
        if (ports[i] == port) {
            ports[i] = NULL;
            break;
        }
    }
    ReleaseSRWLockExclusive(&ports_lock);
}

int coil__signal_wake_init(void) {
    return 0;
}

void coil__signal_wake_release(void) {}

void coil__signal_wake(void) {
    AcquireSRWLockShared(&ports_lock);
    for (int i = 0; i < MAX_PORTS; i++)
        if (ports[i]) PostQueuedCompletionStatus(ports[i], 0, 0, NULL);
    ReleaseSRWLockShared(&ports_lock);
}

static CRITICAL_SECTION lock;
static int active_runs;

static bool caught[2];
static void (*before[2])(int); /* what the program had, given back at the end */
static const int shutdown_sigs[2] = {SIGINT, SIGTERM};

/* The C runtime resets a handler to SIG_DFL before calling it, and it is
 * left so: a second Ctrl-C ends a process whose tasklets do not finish, as
 * Ctrl-C would without coil. The other shutdown signal goes back to its
 * default too. (The handler used to put itself back; done on the console's
 * handler thread, that could race with coil_run giving SIGINT back and
 * swallow a later Ctrl-C, as seen under Wine: not putting it back at all
 * removes that race.) */
static void on_shutdown(int sig) {
    int saved = errno;
    EnterCriticalSection(&lock);
    for (int i = 0; i < 2; i++)
        if (caught[i] && shutdown_sigs[i] != sig) signal(shutdown_sigs[i], SIG_DFL);
    LeaveCriticalSection(&lock);
    __atomic_store_n(&coil__shutdown_signo, sig, __ATOMIC_RELAXED);
    __atomic_add_fetch(&coil__shutdown_requests, 1, __ATOMIC_RELAXED);
    coil__signal_wake();
    errno = saved;
}

static INIT_ONCE lock_once = INIT_ONCE_STATIC_INIT;
static BOOL CALLBACK lock_init(PINIT_ONCE once, PVOID param, PVOID *ctx) {
    (void)once;
    (void)param;
    (void)ctx;
    InitializeCriticalSection(&lock);
    return TRUE;
}

void coil__shutdown_signals_acquire(void) {
    InitOnceExecuteOnce(&lock_once, lock_init, NULL, NULL);
    EnterCriticalSection(&lock);
    if (active_runs++ == 0) {
        int mode = coil__shutdown_mode();
        for (int i = 0; i < 2; i++) {
            caught[i] = false;
            if (mode == COIL_SIGNALS_LEAVE) continue;
            /* A signal left at its default action is taken (or ignored, with
             * COIL_SIGNALS_TAKE). */
            void (*prev)(int) = signal(shutdown_sigs[i], on_shutdown);
            before[i] = prev;
            caught[i] = prev == SIG_DFL || (prev == SIG_IGN && mode == COIL_SIGNALS_TAKE);
            if (!caught[i] && prev != SIG_ERR) signal(shutdown_sigs[i], prev);
        }
    }
    LeaveCriticalSection(&lock);
}

void coil__shutdown_signals_release(void) {
    EnterCriticalSection(&lock);
    if (--active_runs == 0) {
        for (int i = 0; i < 2; i++) {
            if (!caught[i]) continue;
            void (*cur)(int) = signal(shutdown_sigs[i], before[i]);
            if (cur != on_shutdown && cur != SIG_DFL && cur != SIG_ERR)
                signal(shutdown_sigs[i], cur); /* not ours any more: leave it */
            caught[i] = false;
        }
    }
    LeaveCriticalSection(&lock);
}

void coil__die_by_signal(int sig) {
    signal(sig, SIG_DFL);
    raise(sig);
    _exit(3); /* the C runtime's exit status for a default SIGINT or SIGTERM */
}

/* coil_signal_wait is Linux only for now (see coil.h): the C runtime's
 * signals are few (SIGINT, SIGTERM, SIGBREAK, ...) and coil takes two of
 * them for the shutdown. */
volatile unsigned coil__signal_arrivals; /* never moves here */

void coil__signal_deliver(struct coil__sched *s) {
    (void)s;
}

int coil_signal_wait(const _sigset_t *set, int64_t deadline) {
    (void)deadline;
    return set ? -ENOTSUP : -EINVAL; /* a NULL set is -EINVAL everywhere */
}
