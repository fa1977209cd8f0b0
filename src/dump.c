/*
 * coil_dump: every tasklet, its state, and what it waits on and for how long
 * (Go's goroutine dump), on request or when a signal asks for it.
 */
#include "internal.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>
#if COIL__CTX_UNWIND
#include <dlfcn.h>
#include <execinfo.h>
#endif

const char *coil__wait_name(enum coil__wait kind) {
    switch (kind) {
    case COIL__WAIT_SLEEP: return "sleep";
    case COIL__WAIT_JOIN: return "join";
    case COIL__WAIT_CHAN_SEND: return "chan send";
    case COIL__WAIT_CHAN_RECV: return "chan recv";
    case COIL__WAIT_CHOOSE: return "choose";
    case COIL__WAIT_IO: return "io";
    case COIL__WAIT_OFFLOAD: return "offload";
    case COIL__WAIT_POLL: return "poll";
    case COIL__WAIT_XCALL: return "another scheduler";
    case COIL__WAIT_MUTEX: return "mutex lock";
    case COIL__WAIT_COND: return "cond wait";
    case COIL__WAIT_SEM: return "sem acquire";
    case COIL__WAIT_WG: return "waitgroup wait";
    case COIL__WAIT_SCOPE: return "scope";
    case COIL__WAIT_SIGNAL: return "signal wait";
    case COIL__WAIT_PMUTEX: return "pthread mutex";
    case COIL__WAIT_PRWLOCK: return "pthread rwlock";
    case COIL__WAIT_PCOND: return "pthread cond";
    case COIL__WAIT_PSEM: return "semaphore";
    case COIL__WAIT_NONE: break;
    }
    return "?";
}

static const char *state_name(const struct coil__tasklet *t) {
    switch (t->state) {
    case COIL__RUNNABLE: return "runnable";
    case COIL__RUNNING: return "running";
    case COIL__WAITING: return "waiting";
    }
    return "?";
}

#if COIL__CTX_UNWIND
/* The frames shown under a parked tasklet: enough for a library call inside
 * a few of the program's own, as the watchdog's backtraces. Up to
 * FRAMES_SEEN are collected (on the stack, 512 bytes: a dump may run on a
 * small tasklet stack), to say how many more there are. */
#define FRAMES_MAX  32
#define FRAMES_SEEN 64

struct frames {
    void *pc[FRAMES_SEEN];
    int n;
};

static void collect(void *arg) {
    struct frames *f = arg;
    f->n = backtrace(f->pc, FRAMES_SEEN);
}

/* One line per frame of a parked tasklet, from where it parked (inside
 * coil) out to its entry: "      at NAME+0xOFF (OBJECT)", NAME from the
 * dynamic symbol table (dladdr, as backtrace_symbols; an executable's own
 * functions need -rdynamic, see coil_dump in coil.h), the address instead
 * where there is none. */
static void write_frames(const struct coil__tasklet *t, FILE *out) {
    struct frames f;
    f.n = 0;
    coil__ctx_unwind(&t->ctx, collect, &f);
    /* The first frames are collect's and coil__ctx_unwind's own. */
    int from = f.n;
    for (int i = 0; i < f.n; i++)
        if (f.pc[i] == (const void *)coil__ctx_unwind_ret) {
            from = i + 1;
            break;
        }
    int to = f.n - from > FRAMES_MAX ? from + FRAMES_MAX : f.n;
    for (int i = from; i < to; i++) {
        Dl_info info;
        memset(&info, 0, sizeof info);
        fputs("      at ", out);
        /* A return address is after its call: pc - 1 is in the calling
         * function even when the call ends it (a noreturn callee). */
        if (dladdr((char *)f.pc[i] - 1, &info) && info.dli_sname && info.dli_saddr)
            fprintf(out, "%s+0x%lx", info.dli_sname,
                    (unsigned long)((uintptr_t)f.pc[i] - (uintptr_t)info.dli_saddr));
        else
            fprintf(out, "%p", f.pc[i]);
        if (info.dli_fname && *info.dli_fname) {
            const char *base = strrchr(info.dli_fname, '/');
            fprintf(out, " (%s)", base ? base + 1 : info.dli_fname);
        }
        fputc('\n', out);
    }
    if (to < f.n)
        fprintf(out, "      at ... (%s%d more)\n", f.n == FRAMES_SEEN ? "at least " : "", f.n - to);
}
#endif

static double secs(int64_t ns) {
    return (double)ns / (double)COIL_SEC;
}

int coil__dump_sched(struct coil__sched *s, FILE *out) {
    int64_t now = coil_now();
    int n = 0;
    if (s->group)
        fprintf(out, "coil: scheduler %u of %u: ", s->index, s->group->n);
    else
        fputs("coil: ", out);
    fprintf(out, "%zu tasklet%s (backend %s, %zu runnable, %zu timers)\n", s->nlive,
            s->nlive == 1 ? "" : "s", s->backend->name, s->runq.len, s->timers.armed);
    if (s->backend->describe) s->backend->describe(s, out);
    for (const struct coil__link *l = s->all.first; l; l = l->next, n++) {
        const struct coil__tasklet *t = coil__container_of(l, const struct coil__tasklet, all);
        fprintf(out, "  tasklet %lld \"%s\": %s", (long long)t->id, t->name, state_name(t));
        if (t->state == COIL__WAITING) {
            fprintf(out, " on %s", coil__wait_name((enum coil__wait)t->wait_kind));
            switch (t->wait_kind) {
            case COIL__WAIT_JOIN:
                fprintf(out, " of tasklet %lld",
                        (long long)((const struct coil__joiner *)t->wait_obj)->id);
                break;
            case COIL__WAIT_IO: {
                static const char *const names[] = {"?",       "read",    "write",   "recv",
                                                    "send",    "recvmsg", "sendmsg", "accept",
                                                    "connect", "poll",    "pread",   "pwrite"};
                const struct coil__op *op = t->wait_obj;
                size_t nnames = sizeof names / sizeof names[0];
                fprintf(out, " %s fd %d%s", op->opcode < nnames ? names[op->opcode] : "?", op->fd,
                        op->interrupt ? " (cancelling)" : "");
                break;
            }
            case COIL__WAIT_POLL: {
                const struct coil__opgroup *g = t->wait_obj;
                fprintf(out, " of %zu fd%s", g->n, g->n == 1 ? "" : "s");
                if (g->n) fprintf(out, " (fd %d, ...)", g->ops[0].fd);
                break;
            }
            case COIL__WAIT_CHAN_SEND:
            case COIL__WAIT_CHAN_RECV:
            case COIL__WAIT_CHOOSE: coil__chan_describe_wait(t, out); break;
            case COIL__WAIT_MUTEX:
            case COIL__WAIT_COND:
            case COIL__WAIT_SEM:
            case COIL__WAIT_WG: coil__sync_describe_wait(t, out); break;
            case COIL__WAIT_SCOPE: coil__scope_describe_wait(t, out); break;
#ifndef _WIN32
            case COIL__WAIT_PMUTEX:
            case COIL__WAIT_PRWLOCK:
            case COIL__WAIT_PCOND:
            case COIL__WAIT_PSEM: coil__lock_describe_wait(t, out); break;
#endif
            case COIL__WAIT_SIGNAL: {
                uint64_t mask = ((const struct coil__sigwait *)t->wait_obj)->mask;
                const char *sep = " (";
                for (int sig = 1; sig <= 64; sig++, mask >>= 1)
                    if (mask & 1) {
                        fprintf(out, "%s%d", sep, sig);
                        sep = ", ";
                    }
                fputc(')', out);
                break;
            }
            default: break;
            }
            fprintf(out, " for %.3fs", secs(now - t->wait_since));
            if (t->timer.armed) fprintf(out, ", deadline in %.3fs", secs(t->timer.deadline - now));
        }
        if (t->killed) fprintf(out, " [killed]");
        fputc('\n', out);
#if COIL__CTX_UNWIND
        /* Its saved context is where it stopped; the running one (the
         * caller) has none, and one never run has no frames yet. */
        if (t->state != COIL__RUNNING && !coil__ctx_fresh(&t->ctx)) write_frames(t, out);
#endif
    }
    return n;
}

/* Another scheduler of the group writes its own part, on its own thread. */
static void dump_remote(struct coil__sched *s, struct coil__msg *m) {
    struct coil__xcall *x = coil__container_of(m, struct coil__xcall, msg);
    x->value = coil__dump_sched(s, x->arg);
    coil__wake_any(x->caller, 0);
}

int coil_dump(FILE *out) {
    if (!out) return -EINVAL;
    struct coil__sched *s = coil__sched_cur;
    if (!s) return -EPERM;
    int saved_errno = errno;
    int n = coil__dump_sched(s, out);
    struct coil__tasklet *t = coil__self();
    if (s->group && t)
        for (unsigned i = 0; i < s->group->n; i++) {
            if (i == s->index) continue;
            struct coil__xcall x = {.arg = out};
            coil__xcall(t, s->group->scheds[i], dump_remote, &x);
            n += (int)x.value;
        }
    errno = saved_errno;
    return n;
}

static void on_dump_signal(int sig) {
    int saved = errno;
    __atomic_add_fetch(&coil__dump_requests, 1, __ATOMIC_RELAXED);
    coil__signal_wake();
#ifdef _WIN32 /* the C runtime resets a handler to SIG_DFL before calling it */
    signal(sig, on_dump_signal);
#endif
    errno = saved;
}

#ifndef _WIN32
static pthread_mutex_t dump_lock = PTHREAD_MUTEX_INITIALIZER;
#endif
static int dump_on_signal(int signo);

int coil_dump_on_signal(int signo) {
    int saved_errno = errno;
    int err = dump_on_signal(signo);
    errno = saved_errno;
    return err;
}

static int dump_on_signal(int signo) {
#ifdef _WIN32 /* the C runtime's signals: SIGINT, SIGBREAK (Ctrl-Break), SIGTERM, ... */
    if (signo <= 0 || signo >= NSIG || signo == SIGSEGV || signo == SIGABRT) return -EINVAL;
    return signal(signo, on_dump_signal) == SIG_ERR ? -EINVAL : 0;
#else
    if (signo <= 0 || signo >= NSIG || signo == SIGKILL || signo == SIGSTOP || signo == SIGSEGV ||
        signo == SIGBUS)
        return -EINVAL;
    /* The handler wakes the running schedulers through their eventfd (none
     * to wake when no coil_run is active). */
    pthread_mutex_lock(&dump_lock);
    int err = 0;
    {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = on_dump_signal;
        sa.sa_flags = SA_RESTART;
        sigemptyset(&sa.sa_mask);
        if (sigaction(signo, &sa, NULL) != 0) err = -errno;
    }
    pthread_mutex_unlock(&dump_lock);
    return err;
#endif
}
