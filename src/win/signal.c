/*
 * Ctrl-C on Windows: SIGINT and SIGTERM through the C runtime's signal(),
 * which covers both raise(SIGINT) and a console's Ctrl-C (the runtime turns
 * CTRL_C_EVENT into SIGINT on a thread of its own, Wine's msvcrt included).
 * The handler does what src/signal.c's does: bump a counter, and wake every
 * scheduler, here by posting a packet to each running scheduler's completion
 * port (PostQueuedCompletionStatus may be called from any thread). The ports
 * sit in a fixed array of slots taken with compare-and-swap, so the handler
 * takes no lock (raise() runs it on the thread that may hold one).
 */
#include "internal.h"

#include <signal.h>

volatile unsigned coil__dump_requests;
volatile unsigned coil__shutdown_requests;
int coil__signal_wake_fd = -1; /* not used on Windows: ports are woken instead */

#define MAX_PORTS 256
static HANDLE ports[MAX_PORTS];

int coil__win_port_register(HANDLE port) {
    for (int i = 0; i < MAX_PORTS; i++) {
        HANDLE empty = NULL;
        if (__atomic_compare_exchange_n(&ports[i], &empty, port, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED))
            return 0;
    }
    return -EAGAIN; /* more schedulers than slots: signals would not wake this one */
}

void coil__win_port_unregister(HANDLE port) {
    for (int i = 0; i < MAX_PORTS; i++) {
        HANDLE mine = port;
        if (__atomic_compare_exchange_n(&ports[i], &mine, NULL, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_RELAXED))
            return;
    }
}

int coil__signal_wake_init(void) {
    return 0;
}

void coil__signal_wake(void) {
    for (int i = 0; i < MAX_PORTS; i++) {
        HANDLE p = __atomic_load_n(&ports[i], __ATOMIC_ACQUIRE);
        if (p) PostQueuedCompletionStatus(p, 0, 0, NULL);
    }
}

static void on_shutdown(int sig) {
    int saved = errno;
    __atomic_add_fetch(&coil__shutdown_requests, 1, __ATOMIC_RELAXED);
    coil__signal_wake();
    /* The C runtime resets a handler to SIG_DFL before calling it. */
    signal(sig, on_shutdown);
    errno = saved;
}

static CRITICAL_SECTION lock;
static INIT_ONCE lock_once = INIT_ONCE_STATIC_INIT;
static BOOL CALLBACK lock_init(PINIT_ONCE once, PVOID param, PVOID *ctx) {
    (void)once;
    (void)param;
    (void)ctx;
    InitializeCriticalSection(&lock);
    return TRUE;
}

static int active_runs;
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
