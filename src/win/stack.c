/*
 * Tasklet stacks on Windows: VirtualAlloc'd, the same layout as on Linux
 * (src/stack.c): a 64 KiB guard at the bottom of the reservation, the stack
 * above it; the tasklet record is apart, from the scheduler's chunks. The stack is committed whole
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

struct coil__tasklet *coil__stack_get(struct coil__sched *s, size_t stack_size, int *err_out) {
    struct coil__tasklet *t;
    if (stack_size == COIL_STACK_DEFAULT && !coil__slist_empty(&s->pool.q)) {
        t = coil__container_of(coil__slist_pop_front(&s->pool.q), struct coil__tasklet, runq);
        s->pool.len--;
        char *map = t->map;
        size_t map_len = t->map_len;
        memset(t, 0, sizeof *t);
        t->map = map;
        t->map_len = map_len;
        t->stack_size = stack_size;
        return t;
    }
    t = coil__record_get(s);
    if (!t) {
        *err_out = -ENOMEM;
        return NULL;
    }
    size_t map_len = stack_size + COIL__GUARD_SIZE;
    size_t page = s->page;
    char *map = VirtualAlloc(NULL, map_len, MEM_RESERVE, PAGE_NOACCESS);
    if (!map ||
        !VirtualAlloc(map + COIL__GUARD_SIZE - page, page, MEM_COMMIT,
                      PAGE_READWRITE | PAGE_GUARD) ||
        !VirtualAlloc(map + COIL__GUARD_SIZE, stack_size, MEM_COMMIT, PAGE_READWRITE)) {
        if (map) VirtualFree(map, 0, MEM_RELEASE);
        coil__record_put(s, t);
        *err_out = -ENOMEM;
        return NULL;
    }
    t->map = map;
    t->map_len = map_len;
    t->stack_size = stack_size;
    return t;
}

void coil__stack_put(struct coil__sched *s, struct coil__tasklet *t) {
    if (t->stack_size == COIL_STACK_DEFAULT && s->pool.len < COIL__STACK_POOL_MAX) {
        coil__slist_push_front(&s->pool.q, &t->runq);
        s->pool.len++;
        return;
    }
    VirtualFree(t->map, 0, MEM_RELEASE);
    coil__record_put(s, t);
}

void coil__stack_pool_drain(struct coil__sched *s) {
    struct coil__slink *l;
    while ((l = coil__slist_pop_front(&s->pool.q)) != NULL) {
        struct coil__tasklet *t = coil__container_of(l, struct coil__tasklet, runq);
        VirtualFree(t->map, 0, MEM_RELEASE);
        coil__record_put(s, t);
    }
    s->pool.len = 0;
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
