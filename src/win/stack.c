/*
 * Tasklet stacks on Windows: VirtualAlloc'd, the layout of src/stack.c
 * (which keeps the pool): a 64 KiB guard at the bottom of the reservation, the stack
 * above it, the tasklet record at the top. The stack is committed whole
 * (Windows backs a committed page with memory only when it is first touched,
 * but counts it against the commit limit).
 *
 * The guard is Windows' own kind, because a plain PAGE_NOACCESS page leaves
 * no room to report an overflow: an exception is dispatched on the stack
 * that faulted, below its stack pointer, i.e. in the inaccessible page
 * itself (under Wine 8.0 that killed the process with a host SIGSEGV and
 * nothing said). So the top page of the guard is PAGE_GUARD and the rest is
 * reserved, uncommitted, as below a thread's stack: the TEB's
 * DeallocationStack names the reservation (see ctx.c), so a touch of the
 * guard page makes the system move it down, as it grows a thread's stack,
 * until the reservation is nearly used up, and then raise
 * EXCEPTION_STACK_OVERFLOW with room left to handle it. A vectored handler
 * names the tasklet and ends the process. Reserved pages fault like
 * PAGE_NOACCESS: nothing below the guard, another stack, is ever touched.
 */
#include "internal.h"

#include <stdio.h>
#include <string.h>

size_t coil__page_size(void) {
    SYSTEM_INFO si;
    GetSystemInfo(&si);
    return si.dwPageSize;
}

char *coil__stack_map(struct coil__sched *s, size_t map_len, int *err_out) {
    size_t page = s->page;
    char *map = VirtualAlloc(NULL, map_len, MEM_RESERVE, PAGE_NOACCESS);
    if (!map ||
        !VirtualAlloc(map + COIL__GUARD_SIZE - page, page, MEM_COMMIT,
                      PAGE_READWRITE | PAGE_GUARD) ||
        !VirtualAlloc(map + COIL__GUARD_SIZE, map_len - COIL__GUARD_SIZE, MEM_COMMIT,
                      PAGE_READWRITE)) {
        if (map) VirtualFree(map, 0, MEM_RELEASE);
        *err_out = -ENOMEM;
        return NULL;
    }
    return map;
}

void coil__stack_unmap(char *map, size_t map_len) {
    (void)map_len;
    VirtualFree(map, 0, MEM_RELEASE);
}

/* ---- stack overflow ----------------------------------------------------- */

/* Runs on the faulting thread, on the stack that overflowed, in the room
 * the moved guard left (see the top of this file). */
static LONG CALLBACK on_fault(EXCEPTION_POINTERS *ep) {
    const EXCEPTION_RECORD *er = ep->ExceptionRecord;
    struct coil__sched *s = coil__sched_cur;
    struct coil__tasklet *t = s ? s->current : NULL;
    if (!t || t == &s->root) return EXCEPTION_CONTINUE_SEARCH;
    if (er->ExceptionCode == EXCEPTION_STACK_OVERFLOW) {
        /* Raised on the overflowing stack: the running tasklet's. */
    } else if (er->ExceptionCode == EXCEPTION_ACCESS_VIOLATION && er->NumberParameters >= 2) {
        uintptr_t addr = (uintptr_t)er->ExceptionInformation[1];
        if (addr < (uintptr_t)t->map || addr >= (uintptr_t)coil__stack_lo(t))
            return EXCEPTION_CONTINUE_SEARCH;
    } else {
        return EXCEPTION_CONTINUE_SEARCH;
    }
    char msg[160];
    int n = snprintf(msg, sizeof msg,
                     "coil: tasklet %lld \"%s\" overflowed its %llu-byte stack (raise "
                     "coil_spawn_opts.stack_size)\n",
                     (long long)t->id, t->name, (unsigned long long)t->stack_size);
    DWORD written;
    WriteFile(GetStdHandle(STD_ERROR_HANDLE), msg, (DWORD)n, &written, NULL);
    TerminateProcess(GetCurrentProcess(), 3); /* abort()'s exit code */
    return EXCEPTION_CONTINUE_SEARCH;
}

static INIT_ONCE guard_once = INIT_ONCE_STATIC_INIT;

static BOOL CALLBACK add_handler(PINIT_ONCE once, PVOID param, PVOID *ctx) {
    (void)once;
    (void)param;
    (void)ctx;
    return AddVectoredExceptionHandler(1, on_fault) != NULL;
}

int coil__overflow_guard_init(struct coil__sched *s) {
    (void)s;
    return InitOnceExecuteOnce(&guard_once, add_handler, NULL, NULL) ? 0 : -ENOMEM;
}

void coil__overflow_guard_fini(struct coil__sched *s) {
    (void)s;
}
