/*
 * Thread primitives on POSIX for groups of schedulers (src/group.c).
 */
#include "internal.h"

#include <sched.h>
#include <unistd.h>

unsigned coil__sys_cpu_count(void) {
    /* The CPUs this process may run on (taskset, a container's cpuset), not
     * every CPU of the machine. */
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) == 0 && CPU_COUNT(&set) > 0)
        return (unsigned)CPU_COUNT(&set);
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (unsigned)n : 1;
}

void coil__cpu_yield(void) {
    sched_yield();
}
