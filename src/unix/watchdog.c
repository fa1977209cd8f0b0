/*
 * The stall watchdog (coil_watchdog, COIL_WATCHDOG_MS) and the registry of
 * running schedulers that it and the forced shutdown read.
 *
 * A scheduler's thread bumps a counter at every switch. One monitor thread,
 * started only while the watchdog is on, samples every scheduler's counter;
 * a tasklet that is running while the counter stays put for the threshold
 * holds its scheduler. The monitor then sends SIGURG to that scheduler's
 * thread, whose handler writes (async-signal-safely, to stderr) which
 * tasklet, for how long, and a backtrace of where the signal found it. Once
 * per stall: the next report needs the counter to move first.
 *
 * SIGURG because its default action is to ignore it: a stray one harms
 * nothing. A program's own SIGURG handler (sockets with F_SETOWN get SIGURG
 * for out-of-band data) is kept and called for every SIGURG that is not a
 * report request; if the program replaces coil's handler meanwhile, the
 * monitor sees it and writes its report without a backtrace.
 */
#include "internal.h"

#include <execinfo.h>
#include <limits.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

/* ---- async-signal-safe output --------------------------------------------- */

void coil__report_str(const char *str) {
    size_t len = strlen(str);
    while (len > 0) {
        ssize_t w = write(STDERR_FILENO, str, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        str += w;
        len -= (size_t)w;
    }
}

static void format_num(char *buf, int64_t v) {
    char tmp[24];
    int n = 0;
    uint64_t u = v < 0 ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) *buf++ = '-';
    while (n)
        *buf++ = tmp[--n];
    *buf = '\0';
}

void coil__report_num(int64_t v) {
    char buf[24];
    format_num(buf, v);
    coil__report_str(buf);
}

/* A line is built in one buffer and written at once, so that lines of
 * reports from different threads do not interleave within a line. */
struct line {
    char buf[256];
    size_t len;
};

static void put(struct line *l, const char *str) {
    size_t n = strlen(str);
    if (n > sizeof l->buf - 1 - l->len) n = sizeof l->buf - 1 - l->len;
    memcpy(l->buf + l->len, str, n);
    l->len += n;
    l->buf[l->len] = '\0';
}

static void put_num(struct line *l, int64_t v) {
    char buf[24];
    format_num(buf, v);
    put(l, buf);
}

/* "scheduler 1 of 4" or "its scheduler". */
static void put_sched(struct line *l, const struct coil__sched *s) {
    if (s->group) {
        put(l, "scheduler ");
        put_num(l, s->index);
        put(l, " of ");
        put_num(l, s->group->n);
    } else {
        put(l, "its scheduler");
    }
}

static void put_tasklet(struct line *l, const struct coil__tasklet *t) {
    put(l, "tasklet ");
    put_num(l, t->id);
    put(l, " \"");
    put(l, t->name);
    put(l, "\"");
}

/* ---- the registry ---------------------------------------------------------- */

/* A lock of its own rather than a pthread mutex: the forced shutdown reads
 * the registry from a signal handler, which may only try it. Holders never
 * block while holding it, and hold it with signals blocked (register,
 * unregister) or on a thread that blocks them all (the monitor), so a
 * handler never interrupts a holder on its own thread and waits for it. */
static int registry_lock;
/* Not static, and named: tools/gdb/coil.py finds every running scheduler
 * through it, in a live process and in a core file. */
struct coil__sched *coil__registry;

static void lock_registry(void) {
    while (__atomic_exchange_n(&registry_lock, 1, __ATOMIC_ACQUIRE))
        sched_yield();
}

/* From a handler: tries for about 100 ms. */
static bool try_lock_registry(void) {
    for (int i = 0; i < 100; i++) {
        if (!__atomic_exchange_n(&registry_lock, 1, __ATOMIC_ACQUIRE)) return true;
        struct timespec ms = {0, 1000000};
        nanosleep(&ms, NULL);
    }
    return false;
}

static void unlock_registry(void) {
    __atomic_store_n(&registry_lock, 0, __ATOMIC_RELEASE);
}

/* ---- reports, written by the scheduler's own thread ------------------------ */

static struct sigaction urg_before; /* the program's SIGURG disposition */
static bool urg_ours;               /* coil's handler is (or was) installed */

/* The program counter the signal interrupted, to skip the handler's own
 * frames in the backtrace (0 where not known: nothing is skipped). */
static void *interrupted_pc(void *ucp) {
    if (!ucp) return NULL;
    ucontext_t *uc = ucp;
#if defined(__x86_64__)
    return (void *)uc->uc_mcontext.gregs[REG_RIP];
#elif defined(__aarch64__)
    return (void *)uc->uc_mcontext.pc;
#else
    (void)uc;
    return NULL;
#endif
}

/* The backtrace from where the signal found the thread: frames[*from..n). */
static int trace(void *uc, void **frames, int cap, int *from) {
    int n = backtrace(frames, cap);
    void *pc = interrupted_pc(uc);
    *from = 0;
    for (int i = 0; pc && i < n; i++)
        if (frames[i] == pc) {
            *from = i;
            break;
        }
    return n;
}

static void report(struct coil__sched *s, int kind, void *uc) {
    struct coil__tasklet *t = __atomic_load_n(&s->current, __ATOMIC_RELAXED);
    bool in_tasklet = t != &s->root;
    void *frames[64];
    int from, n;
    struct line l = {.len = 0};
    if (kind == COIL__REPORT_STALL) {
        /* The stall may have ended between the monitor's look and now. */
        if (!in_tasklet || __atomic_load_n(&s->watch.switches, __ATOMIC_RELAXED) != s->watch.expect)
            return;
        n = trace(uc, frames, 64, &from);
        /* One frame: the unwinder stopped where the signal landed. On
         * aarch64 a PLT stub has no unwind table (seen under qemu: the
         * busy loop's clock_gettime call); a later sample finds the thread
         * elsewhere, so the monitor asks again (ask_stall). */
        if (n - from < 2 && !__atomic_load_n(&s->watch.last_try, __ATOMIC_RELAXED)) {
            __atomic_store_n(&s->watch.shallow, true, __ATOMIC_RELEASE);
            return;
        }
        __atomic_store_n(&s->watch.reported_id, t->id, __ATOMIC_RELAXED);
        put(&l, "coil: watchdog: ");
        put_tasklet(&l, t);
        put(&l, " has held ");
        put_sched(&l, s);
        put(&l, " for at least ");
        put_num(&l, s->watch.held / COIL_MSEC);
        put(&l, " ms without a switch; where it is:\n");
    } else {
        put(&l, "coil: ");
        if (s->group) {
            put_sched(&l, s);
            put(&l, ": ");
        }
        put_num(&l, (int64_t)s->nlive);
        put(&l, s->nlive == 1 ? " tasklet, " : " tasklets, ");
        if (!in_tasklet) {
            put(&l, "none running (the scheduler is in its loop)\n");
            coil__report_str(l.buf);
            return;
        }
        put(&l, "running ");
        put_tasklet(&l, t);
        put(&l, ", here:\n");
        n = trace(uc, frames, 64, &from);
    }
    coil__report_str(l.buf);
    backtrace_symbols_fd(frames + from, n - from, STDERR_FILENO);
}

static void on_urg(int sig, siginfo_t *si, void *uc) {
    int saved = errno;
    struct coil__sched *s = coil__sched_cur;
    unsigned req = s ? __atomic_load_n(&s->watch.req, __ATOMIC_ACQUIRE) : 0;
    if (s && req != __atomic_load_n(&s->watch.ack, __ATOMIC_RELAXED)) {
        report(s, __atomic_load_n(&s->watch.kind, __ATOMIC_RELAXED), uc);
        __atomic_store_n(&s->watch.ack, req, __ATOMIC_RELEASE);
    } else if (urg_before.sa_flags & SA_SIGINFO) {
        if (urg_before.sa_sigaction) urg_before.sa_sigaction(sig, si, uc);
    } else if (urg_before.sa_handler != SIG_DFL && urg_before.sa_handler != SIG_IGN) {
        urg_before.sa_handler(sig);
    }
    errno = saved;
}

static bool urg_is_ours(void) {
    struct sigaction cur;
    return sigaction(SIGURG, NULL, &cur) == 0 && (cur.sa_flags & SA_SIGINFO) &&
           cur.sa_sigaction == on_urg;
}

/* Installs coil's SIGURG handler unless it is there (async-signal-safe:
 * the forced shutdown calls it from a handler). Returns whether it is. */
static bool urg_install(void) {
    if (urg_is_ours()) return true;
    struct sigaction sa, before;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_urg;
    /* SA_RESTART: a read or write on a pipe or socket that the signal
     * interrupts goes on by itself; poll, nanosleep and the like return
     * EINTR regardless (signal(7)), as coil.h says. */
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGURG, &sa, &before) != 0) return false;
    if (!urg_ours) urg_before = before;
    urg_ours = true;
    return true;
}

/* Asks s's thread for a report of kind; under the registry lock. */
static unsigned ask(struct coil__sched *s, int kind) {
    __atomic_store_n(&s->watch.kind, kind, __ATOMIC_RELAXED);
    unsigned req = __atomic_add_fetch(&s->watch.req, 1, __ATOMIC_RELEASE);
    pthread_kill(s->watch.thread, SIGURG);
    return req;
}

/* ---- the forced shutdown's dump ---------------------------------------- */

static int64_t mono_now(void) { /* coil_now, spelled out: async-signal-safe */
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * COIL_SEC + ts.tv_nsec;
}

void coil__watchdog_dump_all(void *uc) {
    if (!try_lock_registry()) {
        coil__report_str("coil: (the schedulers are not listed: their registry is busy)\n");
        return;
    }
    bool urg = urg_install();
    pthread_t self = pthread_self();
    int64_t give_up = mono_now() + COIL_SEC;
    for (struct coil__sched *s = coil__registry; s; s = s->watch.next) {
        if (pthread_equal(s->watch.thread, self)) {
            report(s, COIL__REPORT_SHUTDOWN, uc);
            continue;
        }
        bool answered = false;
        if (urg) {
            unsigned req = ask(s, COIL__REPORT_SHUTDOWN);
            while (!answered && mono_now() < give_up) {
                answered = (int)(__atomic_load_n(&s->watch.ack, __ATOMIC_ACQUIRE) - req) >= 0;
                struct timespec ms = {0, 1000000};
                if (!answered) nanosleep(&ms, NULL);
            }
        }
        if (!answered) {
            struct line l = {.len = 0};
            put(&l, "coil: ");
            put_sched(&l, s);
            put(&l, urg ? ": its thread did not answer SIGURG (blocked there?)\n"
                        : ": no backtrace (SIGURG has the program's handler)\n");
            coil__report_str(l.buf);
        }
    }
    unlock_registry();
}

/* ---- the monitor --------------------------------------------------------- */

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER; /* what follows */
static pthread_cond_t cond;
static int64_t threshold; /* ns; 0: off (atomic: the monitor reads it) */
static bool running;      /* the monitor thread exists */
static pthread_t monitor_thread;

/* Asks s's thread for the report of a stall seen at switch count sw. A
 * report whose trace was one frame deep is asked again at every sample
 * until the stall has lasted twice the threshold; that last ask writes
 * what it finds. */
static void ask_stall(struct coil__sched *s, int64_t now, unsigned long sw, int64_t limit) {
    struct coil__watch *w = &s->watch;
    w->expect = sw;
    w->held = now - w->since;
    __atomic_store_n(&w->last_try, w->held >= 2 * limit, __ATOMIC_RELAXED);
    ask(s, COIL__REPORT_STALL);
}

/* One sample of every scheduler; under the registry lock. */
static void sample(int64_t limit) {
    int64_t now = coil_now();
    bool urg = urg_is_ours();
    for (struct coil__sched *s = coil__registry; s; s = s->watch.next) {
        struct coil__watch *w = &s->watch;
        unsigned long sw = __atomic_load_n(&w->switches, __ATOMIC_RELAXED);
        if (sw != w->last) {
            if (w->reported) {
                coil_id id = __atomic_load_n(&w->reported_id, __ATOMIC_RELAXED);
                if (id) {
                    struct line l = {.len = 0};
                    put(&l, "coil: watchdog: tasklet ");
                    put_num(&l, id);
                    put(&l, " gave ");
                    put_sched(&l, s);
                    put(&l, " back after at least ");
                    put_num(&l, (now - w->since) / COIL_MSEC);
                    put(&l, " ms\n");
                    coil__report_str(l.buf);
                }
            }
            w->last = sw;
            w->since = now;
            w->reported = false;
            __atomic_store_n(&w->reported_id, 0, __ATOMIC_RELAXED);
            __atomic_store_n(&w->shallow, false, __ATOMIC_RELAXED);
            continue;
        }
        struct coil__tasklet *t = __atomic_load_n(&s->current, __ATOMIC_RELAXED);
        if (w->reported && __atomic_load_n(&w->shallow, __ATOMIC_ACQUIRE)) {
            /* The handler's trace was one frame deep: sample it again. */
            __atomic_store_n(&w->shallow, false, __ATOMIC_RELAXED);
            ask_stall(s, now, sw, limit);
            continue;
        }
        if (w->reported || t == &s->root || now - w->since < limit) continue;
        w->reported = true;
        if (!urg) {
            struct line l = {.len = 0};
            put(&l, "coil: watchdog: a tasklet has held ");
            put_sched(&l, s);
            put(&l, " for at least ");
            put_num(&l, (now - w->since) / COIL_MSEC);
            put(&l, " ms without a switch (no backtrace: SIGURG has the program's handler)\n");
            coil__report_str(l.buf);
            continue;
        }
        ask_stall(s, now, sw, limit);
    }
}

static void *monitor(void *arg) {
    (void)arg;
    pthread_mutex_lock(&lock);
    for (;;) {
        int64_t limit = threshold;
        if (!limit) break;
        /* A quarter of the threshold between samples (1 ms to 1 s): a stall
         * is reported at most that long after it passed the threshold. */
        int64_t period = limit / 4;
        if (period < COIL_MSEC) period = COIL_MSEC;
        if (period > COIL_SEC) period = COIL_SEC;
        pthread_mutex_unlock(&lock);
        lock_registry();
        sample(limit);
        unlock_registry();
        pthread_mutex_lock(&lock);
        if (threshold != limit) continue;
        int64_t until = coil_now() + period;
        struct timespec ts = {(time_t)(until / COIL_SEC), (long)(until % COIL_SEC)};
        while (threshold == limit && pthread_cond_timedwait(&cond, &lock, &ts) == 0) {
        }
    }
    pthread_mutex_unlock(&lock);
    return NULL;
}

static pthread_once_t once = PTHREAD_ONCE_INIT;

/* A forked child has no monitor thread (nor the parent's other schedulers):
 * it starts from "off" with its own scheduler, if it forked in one. */
static void after_fork_child(void) {
    pthread_mutex_init(&lock, NULL);
    running = false;
    threshold = 0;
    registry_lock = 0;
    struct coil__sched **p = &coil__registry;
    while (*p) {
        if (pthread_equal((*p)->watch.thread, pthread_self()))
            p = &(*p)->watch.next;
        else
            *p = (*p)->watch.next;
    }
}

static void init_once(void) {
    pthread_condattr_t attr;
    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* coil_now's clock */
    pthread_cond_init(&cond, &attr);
    pthread_condattr_destroy(&attr);
    pthread_atfork(NULL, NULL, after_fork_child);
    /* backtrace() loads the unwinder (libgcc_s) at its first call, which
     * allocates: done here, never first in a handler. */
    void *frames[2];
    backtrace(frames, 2);
}

static int watchdog_set(int64_t ns) {
    pthread_once(&once, init_once);
    pthread_mutex_lock(&lock);
    int err = 0;
    if (ns > 0 && !running) {
        if (!urg_install()) {
            err = -errno;
        } else {
            /* The monitor blocks every signal: a SIGINT handler that dumps
             * must not find it holding the registry. */
            sigset_t all, old;
            sigfillset(&all);
            pthread_sigmask(SIG_SETMASK, &all, &old);
            threshold = ns;
            int e = pthread_create(&monitor_thread, NULL, monitor, NULL);
            pthread_sigmask(SIG_SETMASK, &old, NULL);
            if (e) {
                threshold = 0;
                err = -e;
            } else {
                running = true;
            }
        }
    } else if (ns > 0) {
        threshold = ns;
        pthread_cond_signal(&cond);
    } else if (running) {
        threshold = 0;
        pthread_cond_signal(&cond);
        pthread_mutex_unlock(&lock);
        pthread_join(monitor_thread, NULL);
        pthread_mutex_lock(&lock);
        running = false;
    }
    pthread_mutex_unlock(&lock);
    return err;
}

int coil_watchdog(int64_t ns) {
    if (ns < 0) return -EINVAL;
    int saved = errno;
    int err = watchdog_set(ns);
    errno = saved;
    return err;
}

/* ---- COIL_WATCHDOG_MS and the schedulers ----------------------------------- */

static pthread_once_t env_once = PTHREAD_ONCE_INIT;
static int env_err;
static char env_value[64];

/* A whole number of milliseconds, digits only; 0 is off. */
static void env_apply(void) {
    const char *v = getenv("COIL_WATCHDOG_MS");
    if (!v || !*v) return;
    int64_t ms = 0;
    const char *p = v;
    for (; *p >= '0' && *p <= '9'; p++) {
        ms = ms * 10 + (*p - '0');
        if (ms > INT64_MAX / COIL_MSEC) break;
    }
    snprintf(env_value, sizeof env_value, "%s", v);
    if (*p || p - v > 15) {
        env_err = -EINVAL;
        return;
    }
    env_err = ms ? coil_watchdog(ms * COIL_MSEC) : 0;
}

int coil__watchdog_attach(struct coil__sched *s) {
    pthread_once(&env_once, env_apply);
    if (env_err) {
        if (env_err == -EINVAL)
            fprintf(stderr,
                    "coil: COIL_WATCHDOG_MS=%s: not a number of milliseconds (digits only, 0 for "
                    "off)\n",
                    env_value);
        else
            fprintf(stderr, "coil: COIL_WATCHDOG_MS=%s: the watchdog cannot start: %s\n", env_value,
                    strerror(-env_err));
        return env_err;
    }
    s->watch.thread = pthread_self();
    s->watch.last = __atomic_load_n(&s->watch.switches, __ATOMIC_RELAXED);
    s->watch.since = coil_now();
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    lock_registry();
    s->watch.next = coil__registry;
    coil__registry = s;
    unlock_registry();
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return 0;
}

void coil__watchdog_detach(struct coil__sched *s) {
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    lock_registry();
    for (struct coil__sched **p = &coil__registry; *p; p = &(*p)->watch.next)
        if (*p == s) {
            *p = s->watch.next;
            break;
        }
    unlock_registry();
    pthread_sigmask(SIG_SETMASK, &old, NULL);
}
