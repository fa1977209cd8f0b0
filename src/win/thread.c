/*
 * Thread primitives on Windows for groups of schedulers (src/group.c).
 */
#include "internal.h"

#include <windows.h>

unsigned coil__sys_cpu_count(void) {
    DWORD_PTR process, system;
    if (GetProcessAffinityMask(GetCurrentProcess(), &process, &system) && process) {
        unsigned n = 0;
        for (; process; process &= process - 1)
            n++;
        return n;
    }
    SYSTEM_INFO si;
    GetSystemInfo(&si);
    return si.dwNumberOfProcessors ? (unsigned)si.dwNumberOfProcessors : 1;
}

void coil__cpu_yield(void) {
    SwitchToThread();
}
