/*
 * Windows has no stall watchdog yet (coil.h: coil_watchdog returns -ENOTSUP
 * there, and COIL_WATCHDOG_MS is not read). A Windows one would suspend the
 * scheduler's thread (SuspendThread, GetThreadContext) and walk its stack
 * from the monitor thread, since no signal interrupts a thread there.
 */
#include "internal.h"

int coil_watchdog(int64_t ns) {
    if (ns < 0) return -EINVAL;
    return ns ? -ENOTSUP : 0;
}

int coil__watchdog_attach(struct coil__sched *s) {
    (void)s;
    return 0;
}

void coil__watchdog_detach(struct coil__sched *s) {
    (void)s;
}
