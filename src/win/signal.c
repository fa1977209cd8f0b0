/*
 * Ctrl-C on Windows: SIGINT and SIGTERM through the C runtime's signal(),
 * which covers both raise(SIGINT) and a console's Ctrl-C (the runtime turns
 * CTRL_C_EVENT into SIGINT on a thread of its own, Wine's msvcrt included).
 * The handler does what src/signal.c's does: bump a counter, and wake every
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

void coil__signal_wake(void) {
    AcquireSRWLockShared(&ports_lock);
    for (int i = 0; i < MAX_PORTS; i++)
        if (ports[i]) PostQueuedCompletionStatus(ports[i], 0, 0, NULL);
    ReleaseSRWLockShared(&ports_lock);
}

static CRITICAL_SECTION lock;
static int active_runs;

static void on_shutdown(int sig) {
    int saved = errno;
    /* The C runtime resets a handler to SIG_DFL before calling it: put it
     * back first, and only while a coil_run is active. Done after the wake
     * (as it once was), a console Ctrl-C's handler thread could put it back
     * after coil_run had ended and given SIGINT back (seen under Wine in
     * test_win_sigint): a later Ctrl-C would then be swallowed. The lock
     * orders it with coil__shutdown_signals_release (the handler runs on an
     * ordinary thread, or inside raise() on a thread that does not hold it;
     * the section is recursive anyway). */
    EnterCriticalSection(&lock);
    if (active_runs > 0) signal(sig, on_shutdown);
    LeaveCriticalSection(&lock);
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

static bool caught[2];
static const int shutdown_sigs[2] = {SIGINT, SIGTERM};

void coil__shutdown_signals_acquire(void) {
    InitOnceExecuteOnce(&lock_once, lock_init, NULL, NULL);
    EnterCriticalSection(&lock);
    if (active_runs++ == 0) {
        for (int i = 0; i < 2; i++) {
            /* Only a signal left at its default action is taken. */
            void (*prev)(int) = signal(shutdown_sigs[i], on_shutdown);
            caught[i] = prev == SIG_DFL;
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
            void (*cur)(int) = signal(shutdown_sigs[i], SIG_DFL);
            if (cur != on_shutdown && cur != SIG_DFL && cur != SIG_ERR)
                signal(shutdown_sigs[i], cur); /* not ours any more: leave it */
            caught[i] = false;
        }
    }
    LeaveCriticalSection(&lock);
}
