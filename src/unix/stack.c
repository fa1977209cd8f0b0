/*
 * Tasklet stacks on POSIX: mmap'd, a 64 KiB guard below each, committed
 * lazily by the kernel as they are touched (the layout and the pool are
 * src/stack.c's); and the SIGSEGV handler that turns a hit on a guard into a
 * message naming the tasklet.
 */
#include "internal.h"

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* Linux 6.13 added guard regions: page-table markers that fault like
 * PROT_NONE without splitting the mapping. With them, neighbouring stacks
 * merge into one VMA and a million tasklets stay far below vm.max_map_count
 * (65530 by default); with mprotect every stack costs two VMAs. */
#ifndef MADV_GUARD_INSTALL
#define MADV_GUARD_INSTALL 102
#endif
static bool guard_regions;
static pthread_once_t guard_probe_once = PTHREAD_ONCE_INIT;

/* qemu-user (7.2) answers 0 to every madvise advice it does not know and does
 * nothing, which would leave stacks without guards. A kernel rejects unknown
 * advice with EINVAL, so an advice that exists nowhere tells them apart. */
static void guard_probe(void) {
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    char *p = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return;
    guard_regions = madvise(p, page, 0x7fff) != 0 && madvise(p, page, MADV_GUARD_INSTALL) == 0;
    munmap(p, page);
}

static int make_guard(char *lo, size_t len) {
    pthread_once(&guard_probe_once, guard_probe);
    if (guard_regions && madvise(lo, len, MADV_GUARD_INSTALL) == 0) return 0;
    /* Past vm.max_map_count this fails with ENOMEM, which spawn reports. */
    return mprotect(lo, len, PROT_NONE) == 0 ? 0 : -errno;
}

char *coil__stack_map(struct coil__sched *s, size_t map_len, int *err_out) {
    (void)s;
    /* MAP_NORESERVE: only touched pages count, so a million tasklets with
     * 256 KiB stacks do not need 256 GiB of commit. */
    char *map = mmap(NULL, map_len, PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
    if (map == MAP_FAILED) {
        *err_out = -ENOMEM;
        return NULL;
    }
    int err = make_guard(map, COIL__GUARD_SIZE);
    if (err) {
        *err_out = err;
        munmap(map, map_len);
        return NULL;
    }
    return map;
}

void coil__stack_unmap(char *map, size_t map_len) {
    munmap(map, map_len);
}

/* ---- stack overflow ----------------------------------------------------- */

static pthread_mutex_t guard_lock = PTHREAD_MUTEX_INITIALIZER;
static struct sigaction prev_segv, prev_bus;

/* Formats v in decimal into buf (async-signal-safe). Returns the length. */
static size_t fmt_u64(char *buf, uint64_t v) {
    char tmp[24];
    size_t n = 0, i;
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    for (i = 0; i < n; i++)
        buf[i] = tmp[n - 1 - i];
    return n;
}

static size_t put(char *buf, size_t at, size_t cap, const char *str, size_t len) {
    if (at + len > cap) len = cap - at;
    memcpy(buf + at, str, len);
    return at + len;
}

static void on_fault(int sig, siginfo_t *si, void *uctx) {
    struct coil__sched *s = coil__sched_cur;
    struct coil__tasklet *t = s ? s->current : NULL;
    uintptr_t addr = (uintptr_t)si->si_addr;
    /* In the guard: between the start of the mapping and the stack. */
    if (t && t != &s->root && addr >= (uintptr_t)t->map && addr < (uintptr_t)coil__stack_lo(t)) {
        char msg[256];
        size_t n = 0;
        n = put(msg, n, sizeof msg, "coil: tasklet ", 14);
        n += fmt_u64(msg + n, (uint64_t)t->id);
        n = put(msg, n, sizeof msg, " \"", 2);
        n = put(msg, n, sizeof msg, t->name, strnlen(t->name, sizeof t->name));
        n = put(msg, n, sizeof msg, "\" overflowed its ", 17);
        n += fmt_u64(msg + n, t->stack_size);
        static const char tail[] = "-byte stack (raise coil_spawn_opts.stack_size)\n";
        n = put(msg, n, sizeof msg, tail, sizeof tail - 1);
        ssize_t w = write(STDERR_FILENO, msg, n);
        (void)w;
        signal(SIGABRT, SIG_DFL);
        COIL__COVERAGE_DUMP();
        abort();
    }
    /* Not ours: hand it to whoever was installed before, or let the default
     * action happen when the faulting instruction runs again. */
    const struct sigaction *prev = sig == SIGBUS ? &prev_bus : &prev_segv;
    if (prev->sa_flags & SA_SIGINFO) {
        if (prev->sa_sigaction) {
            prev->sa_sigaction(sig, si, uctx);
            return;
        }
    } else if (prev->sa_handler != SIG_DFL && prev->sa_handler != SIG_IGN) {
        prev->sa_handler(sig);
        return;
    }
    signal(sig, SIG_DFL);
    COIL__COVERAGE_DUMP(); /* the fault comes again, and ends the process */
}

/* Installs on_fault for sig unless it is there already, remembering the
 * handler it replaces. Checked at every coil_run, not once: a program (or a
 * test framework) may have installed its own handler since. */
static int install(int sig, struct sigaction *prev) {
    struct sigaction cur, sa;
    if (sigaction(sig, NULL, &cur) != 0) return -errno;
    if ((cur.sa_flags & SA_SIGINFO) && cur.sa_sigaction == on_fault) return 0;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, prev) != 0) return -errno;
    return 0;
}

int coil__overflow_guard_init(struct coil__sched *s) {
    pthread_mutex_lock(&guard_lock);
    int err = install(SIGSEGV, &prev_segv);
    if (!err) err = install(SIGBUS, &prev_bus);
    pthread_mutex_unlock(&guard_lock);
    if (err) return err;
    /* The handler cannot run on the stack that just overflowed. Keep a thread
     * that already has an alternate stack (a runtime or the program set it). */
    stack_t cur;
    if (sigaltstack(NULL, &cur) == 0 && !(cur.ss_flags & SS_DISABLE)) return 0;
    size_t size = 64 * 1024;
    void *mem = malloc(size);
    if (!mem) return -ENOMEM;
    stack_t ss = {.ss_sp = mem, .ss_size = size, .ss_flags = 0};
    if (sigaltstack(&ss, NULL) != 0) {
        int e = -errno;
        free(mem);
        return e;
    }
    s->altstack = mem;
    return 0;
}

void coil__overflow_guard_fini(struct coil__sched *s) {
    if (!s->altstack) return;
    stack_t ss = {.ss_sp = NULL, .ss_size = 0, .ss_flags = SS_DISABLE};
    sigaltstack(&ss, NULL);
    free(s->altstack);
    s->altstack = NULL;
}
