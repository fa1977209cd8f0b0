/*
 * Private declarations shared by coil's source files (coil__ prefix).
 * Nothing here is exported: the library is built with -fvisibility=hidden.
 */
#ifndef COIL_INTERNAL_H
#define COIL_INTERNAL_H

#include "coil.h"
#include "list.h"

#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#ifdef _WIN32
#include "win/compat.h"
#else
#include <poll.h>
#endif

#if defined(__SANITIZE_ADDRESS__)
#define COIL_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define COIL_ASAN 1
#endif
#endif

#if COIL_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

#if defined(__SANITIZE_THREAD__)
#define COIL_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define COIL_TSAN 1
#endif
#endif

#ifndef COIL_TSAN
#define COIL_TSAN 0 /* usable in C expressions, as RUNNING_ON_VALGRIND is */
#endif
#if COIL_TSAN
#include <pthread.h>
#include <sanitizer/tsan_interface.h>
#include <signal.h> /* pthread_sigmask around a switch: coil__switch_to */
#endif

#define COIL_LIKELY(x)   __builtin_expect(!!(x), 1)
#define COIL_UNLIKELY(x) __builtin_expect(!!(x), 0)

/* A broken invariant is a bug in coil (or memory corruption): say which and abort. */
#define COIL_ASSERT(cond, what)                                                                    \
    do {                                                                                           \
        if (COIL_UNLIKELY(!(cond))) coil__panic(__FILE__, __LINE__, what);                         \
    } while (0)
__attribute__((noreturn, cold)) void coil__panic(const char *file, int line, const char *what);

/* Coverage builds (make coverage, -DCOIL_COVERAGE=ON): gcc writes its counters
 * at exit(3), so a process that ends by a signal, abort or _exit would take
 * what it ran with it. The paths by which coil ends a process write them
 * first. __gcov_dump is not async-signal-safe: these builds only. */
#ifdef COIL_COVERAGE
void __gcov_dump(void);
#define COIL__COVERAGE_DUMP() __gcov_dump()
#else
#define COIL__COVERAGE_DUMP() ((void)0)
#endif

/* ---- context switch (src/arch/) ---------------------------------------- */

/* A suspended context is just its stack pointer: the callee-saved registers and
 * the resume address are on that stack. The floating-point control words
 * (x86 MXCSR/x87 CW, aarch64 FPCR) are thread state shared by all tasklets of
 * a thread, like the signal mask, and are not switched. */
struct coil__ctx {
    void *sp;
};

/* Saves the caller's context into *from and resumes *to. Returns when some
 * other context switches back to *from. */
void coil__ctx_switch(struct coil__ctx *from, struct coil__ctx *to);

/* Prepares *ctx so that switching to it calls entry(arg) on the stack that
 * ends (grows down from) at top. entry must never return. */
void coil__ctx_make(struct coil__ctx *ctx, void *top, void (*entry)(void *), void *arg);

/* Whether *ctx was made by coil__ctx_make and never switched to: it has no
 * frames of its own yet. */
bool coil__ctx_fresh(const struct coil__ctx *ctx);

/* The backtrace of a parked context (coil_dump): where glibc's DWARF
 * unwinder (backtrace()) and the unwinding routine below exist. */
#if !defined(_WIN32) && defined(__GLIBC__) && (defined(__x86_64__) || defined(__aarch64__))
#define COIL__CTX_UNWIND 1
/* Calls fn(arg) on the current stack in a frame that an unwinder sees as
 * called from where the parked context *ctx stopped (coil__ctx_switch's
 * caller), so that backtrace() in fn lists the parked tasklet's frames after
 * fn's and this one's; coil__ctx_unwind_ret is the return address of that
 * call, which ends the frames to skip. See src/arch/switch_x86_64.S. */
void coil__ctx_unwind(const struct coil__ctx *ctx, void (*fn)(void *), void *arg);
extern const char coil__ctx_unwind_ret[];
#else
#define COIL__CTX_UNWIND 0
#endif

/* ---- timers (src/timer.c) ---------------------------------------------- */

struct coil__timer {
    int64_t deadline; /* when armed: when it expires */
    uint32_t index;   /* its slot in the heap, or COIL__TIMER_IDLE (16 bytes in all:
                       * it shares the tasklet record's hot cache line) */
    bool armed;
};
#define COIL__TIMER_IDLE UINT32_MAX

/* A binary min-heap of deadlines, with lazy disarming. A server's tasklets
 * arm a deadline ("now + idle timeout") at nearly every call and disarm it
 * a moment later; sifting a heap at each would touch other tasklets' records
 * (a cache miss per level; 3-4% of coil-http's time at 1,000 connections).
 * So disarming only clears `armed`, and the timer keeps its slot, keyed by
 * its old deadline; arming again with a later deadline changes only the
 * timer (an earlier one moves the slot up at once). A slot is looked at
 * again only when its key comes due: coil__timers_expire then drops it (its
 * timer is disarmed), re-keys it (armed again, for later) or returns it
 * (expired). A slot's key is never later than its armed timer's deadline,
 * so the top's key is a safe time to wake (at worst early, once per stale
 * slot). Each timer has at most one slot: capacity is reserved ahead (one
 * per live tasklet, see coil__timers_reserve) so that arming never fails; a
 * timer whose tasklet ends is taken out for good (coil__timer_remove). Each
 * slot holds its key by value, so sifting compares within the array. */
struct coil__timer_slot {
    int64_t deadline;
    struct coil__timer *tm;
};
struct coil__timers {
    struct coil__timer_slot *heap;
    size_t len, cap;
    size_t armed; /* timers armed now (stale slots not counted) */
};

int coil__timers_reserve(struct coil__timers *ts, size_t n);
void coil__timers_free(struct coil__timers *ts);
void coil__timer_arm(struct coil__timers *ts, struct coil__timer *tm, int64_t deadline);
static inline void coil__timer_disarm(struct coil__timers *ts, struct coil__timer *tm) {
    if (tm->armed) {
        tm->armed = false;
        ts->armed--;
    }
}
/* Disarms tm and takes its slot out of the heap (its owner is going away). */
void coil__timer_remove(struct coil__timers *ts, struct coil__timer *tm);
/* An armed timer whose deadline is <= now, or NULL; drops and re-keys the
 * stale slots that come due on the way. */
struct coil__timer *coil__timers_expire(struct coil__timers *ts, int64_t now);
/* When the scheduler must look at the timers again: COIL_FOREVER (-1) when
 * none is armed, else a time no later than the earliest armed deadline. */
static inline int64_t coil__timers_next(const struct coil__timers *ts) {
    return ts->armed ? ts->heap[0].deadline : -1;
}

/* ---- tasklets (src/sched.c) -------------------------------------------- */

enum coil__state {
    COIL__RUNNABLE = 1, /* in the run queue */
    COIL__RUNNING,      /* the current tasklet */
    COIL__WAITING,      /* parked; woken by coil__wake */
    COIL__DONE,         /* finished; its stack is released by the next context */
};

/* What a parked tasklet waits on (for coil_dump). */
enum coil__wait {
    COIL__WAIT_NONE = 0,
    COIL__WAIT_SLEEP,
    COIL__WAIT_JOIN,
    COIL__WAIT_CHAN_SEND,
    COIL__WAIT_CHAN_RECV,
    COIL__WAIT_CHOOSE,
    COIL__WAIT_IO,      /* wait_obj: the struct coil__op in flight */
    COIL__WAIT_OFFLOAD, /* wait_obj: the offload job */
    COIL__WAIT_POLL,    /* wait_obj: the struct coil__opgroup of coil__wait_fds */
    COIL__WAIT_XCALL,   /* wait_obj: the struct coil__xcall on another scheduler */
    COIL__WAIT_MUTEX,   /* wait_obj: the waiter (src/sync.c), for each of these four */
    COIL__WAIT_COND,
    COIL__WAIT_SEM,
    COIL__WAIT_WG,
    COIL__WAIT_SCOPE,  /* wait_obj: the struct coil_scope whose members it waits for */
    COIL__WAIT_SIGNAL, /* wait_obj: the struct coil__sigwait (coil_signal_wait) */
    COIL__WAIT_PMUTEX, /* wait_obj: the waiter (src/unix/locks.c), for each of these four */
    COIL__WAIT_PRWLOCK,
    COIL__WAIT_PCOND,
    COIL__WAIT_PSEM,
};

struct coil__sched;
struct coil__tasklet;

/* A message to a scheduler of a group, pushed onto its inbox by another
 * thread (src/group.c): fn runs on the receiving scheduler's thread, in its
 * loop, between two tasklets. The node lives in whatever the sender made it
 * part of (a tasklet, a frame that waits for the answer). */
struct coil__msg {
    struct coil__msg *next;
    void (*fn)(struct coil__sched *s, struct coil__msg *m);
};

/* A tasklet waiting in coil_join, linked into the target's list of joiners.
 * Lives in the joiner's frame. A join of a tasklet of another scheduler is
 * linked there by that scheduler (link_msg), and taken off by it (unlink_msg)
 * when the join's deadline passes first. */
struct coil__joiner {
    struct coil__link link;       /* in the target's joiners */
    struct coil__tasklet *t;      /* the joiner */
    struct coil__tasklet *target; /* the tasklet it waits for (remote: once linked) */
    coil_id id;                   /* the target's id */
    bool linked;                  /* remote: in target->joiners (the target's thread's) */
    bool unlinking;               /* remote: unlink_msg sent */
    int unlink_err;
    struct coil__msg link_msg, unlink_msg;
};

/*
 * A tasklet. Its record is carved from its scheduler's record chunks
 * (coil__record_get), apart from its stack, so that the records of a
 * thousand connections' tasklets share a few dozen pages instead of taking
 * a page each; spawning from the pool still allocates nothing:
 *
 *   map                                                   map + map_len
 *   | guard (64 KiB) | stack, grows down <--------------------------- |
 *                    ^ stack_lo                                      ^ initial sp
 *
 * The first 64 bytes (the record is 64-byte aligned) are what a blocking
 * call's park, its wake-up and the switch touch: one cache line per
 * tasklet on the hot path. The rest is read by spawn, join, kill, dump and
 * the overflow handler.
 *
 * The scheduler's own context (the thread's stack) is a coil__tasklet too,
 * embedded in struct coil__sched, with id 0 and no mapping.
 */
struct coil__tasklet {
    /* ---- hot: park, wake, switch ---- */
    struct coil__ctx ctx;
    struct coil__slink runq; /* in the run queue, or the stack pool */
    struct coil__sched *sched;
    /* While WAITING: what it waits on, and how to take it off that when a
     * kill or a timeout (err) interrupts the wait. unwait returns true when
     * the tasklet may be woken now (its waiter records are unlinked), false
     * when it must stay parked until an operation the kernel still owns has
     * completed (invariant 1): the completion wakes it. */
    bool (*unwait)(struct coil__tasklet *t, int err);
    void *wait_obj;
    struct coil__timer timer;
    uint8_t state;     /* enum coil__state */
    uint8_t wait_kind; /* enum coil__wait */
    bool killed;
    /* Waking it from a shared channel (src/chan.c): whoever takes the wait
     * (0 -> 1, compare-and-swap) completes it. Written at each channel
     * park, so it sits in this line. */
    uint8_t wait_claim;
    int wake_result; /* what the parked call returns, set by its waker */
    /* ---- the rest ---- */
    size_t wait_n;
    int64_t wait_since;
    /* Woken from another scheduler of a group: the waker sends xwake, which
     * runs coil__wake(t, xwake_result) on t's thread. */
    int xwake_result;
    bool deadlock_cycle; /* scratch of the deadlock detector */
    struct coil__msg xwake;
    struct coil__link all; /* in the scheduler's list of every live tasklet */
    coil_id id;
    coil_fn fn;
    void *arg;
    struct coil__list joiners;   /* struct coil__joiner.link */
    struct coil__list mutexes;   /* the coil_mutex it holds (src/sync.c), touched on its thread */
    void *user;                  /* coil_set_user, coil_user */
    struct coil__locals *locals; /* its tasklet-local values (src/local.c); NULL: none yet */
    /* Stack mapping (guard included) and usable size. */
    char *map;
    size_t map_len;
    size_t stack_size;
#if COIL_ASAN
    void *asan_fake_stack;
#endif
#if COIL_TSAN
    /* Its TSan fiber: made at spawn, destroyed when the stack is released
     * (the root's is the thread's own, never destroyed). */
    void *tsan_fiber;
#endif
    unsigned vg_stack_id;
    char name[32];
};
#if UINTPTR_MAX == UINT64_MAX
_Static_assert(offsetof(struct coil__tasklet, wait_n) == 64,
               "a tasklet's hot fields fill its record's first cache line");
#endif

/* The guard below each stack: larger than a page, so that a frame of a few
 * KiB (a local buffer) cannot step over it into the next stack. It costs
 * address space only. */
#define COIL__GUARD_SIZE ((size_t)64 * 1024)

/* The stack pool keeps released default-size stacks (dirty, committed) for the
 * next spawn; beyond this many they are unmapped. */
#define COIL__STACK_POOL_MAX 128

struct coil__backend_ops;
struct coil__group;
struct coil__sched;

/* A scheduler as the stall watchdog and the forced shutdown see it
 * (src/unix/watchdog.c). */
struct coil__watch {
    /* Bumped by every switch (atomic store by the owner; the monitor thread
     * loads it): a count that does not move while a tasklet runs is a stall. */
    unsigned long switches;
    struct coil__sched *next; /* in the registry of running schedulers */
    pthread_t thread;
    /* A report asked of this scheduler's thread (SIGURG): the asker bumps
     * req, the handler writes the report and sets ack to it (atomic). */
    unsigned req, ack;
    int kind;             /* COIL__REPORT_* of the last request */
    unsigned long expect; /* STALL: switches when the stall was seen */
    int64_t held;         /* STALL: how long the tasklet had held it (ns) */
    coil_id reported_id;  /* the tasklet the last stall report named (atomic) */
    /* STALL: the handler found a trace of one frame (the signal landed where
     * the unwinder cannot step, e.g. a PLT stub) and wrote nothing; the
     * monitor asks again (atomic; the handler sets it, the monitor clears
     * it). last_try: the monitor's last ask, which must write what it has. */
    bool shallow, last_try;
    /* The monitor's own bookkeeping (only its thread touches these). */
    unsigned long last;
    int64_t since;
    bool reported;
};
enum { COIL__REPORT_STALL = 1, COIL__REPORT_SHUTDOWN = 2 };

struct coil__sched {
    struct coil__tasklet root;     /* the scheduler's own context */
    struct coil__tasklet *current; /* written with an atomic store: the watchdog reads it */
    struct coil__watch watch;
    struct {
        struct coil__slist q; /* struct coil__tasklet.runq */
        size_t len;
    } runq;
    /* Switches a parking tasklet may make directly to the next runnable one
     * before control goes back to the scheduler loop to poll timers and I/O. */
    long budget;
    struct coil__tasklet *reap; /* finished; stack released after the next switch */
    struct coil__list all;      /* every live tasklet, by id */
    size_t nlive;
    coil_id next_id;
    uint64_t serial; /* unique per coil_run in the process: channels bind to it */
    struct {
        uint64_t *keys;
        struct coil__tasklet **vals;
        size_t cap, len; /* cap is a power of two */
    } ids;
    struct coil__timers timers;
    struct {
        struct coil__slist q; /* struct coil__tasklet.runq */
        size_t len;
    } pool;
    struct {
        struct coil__slist free;   /* unused records (struct coil__tasklet.runq) */
        struct coil__slist chunks; /* every chunk, freed when coil_run ends */
    } records;
    size_t page;
    int64_t round_start; /* coil_now() at the start of this scheduler round */
#if COIL_TSAN
    sigset_t tsan_mask; /* the thread's signal mask, while a switch blocks all */
#endif
    int *errno_ptr; /* &errno of this thread, without a call per switch */
    bool deadlock;
    unsigned dump_seen;
    const struct coil__backend_ops *backend;
    void *backend_data;
    struct {
        struct coil__fd *v;
        size_t len;
    } fds;
    /* Offload jobs finished by the workers, handed over under the lock (a
     * worker then wakes the scheduler through backend->wake). */
    void *offload_done;
    size_t offload_pending;
    bool interrupted; /* SIGINT/SIGTERM: everything was killed */
    /* When an interrupted scheduler gives up waiting for its tasklets and
     * ends the process (coil_set_shutdown_grace); negative: never. */
    int64_t shutdown_deadline;
    bool killing_all; /* after a deadlock or a shutdown: spawns are born killed */
    unsigned shutdown_seen;
    void *altstack;
    const void *root_stack_lo;
    size_t root_stack_size;
    /* In a group of schedulers (coil_run_group; NULL under coil_run): which
     * one this is, and the messages other threads send it (src/group.c). */
    struct coil__group *group;
    unsigned index;
    struct coil__msg *inbox; /* a stack pushed with CAS, taken whole */
    int sleeping;            /* blocked (or about to) in backend->wait */
    unsigned deadlock_seen;  /* the group's deadlock_gen last acted on */
    int start_err;
    /* Tasklets in coil_signal_wait (struct coil__sigwait.link), longest
     * waiting first, and the coil__signal_arrivals last acted on. */
    struct coil__list sigwaiters;
    unsigned signals_seen;
};

/* The scheduler of the calling thread, or NULL outside coil_run. */
/* initial-exec: a blocking call reads it first thing, and the default model
 * for a shared library costs a call to __tls_get_addr each time. (mingw-w64
 * has one TLS model, emulated; the attribute would only warn there.) */
#ifdef _WIN32
#define COIL__TLS_IE
#else
#define COIL__TLS_IE __attribute__((tls_model("initial-exec")))
#endif
extern __thread struct coil__sched *coil__sched_cur COIL__TLS_IE;

static inline struct coil__tasklet *coil__self(void) {
    struct coil__sched *s = coil__sched_cur;
    return s && s->current != &s->root ? s->current : NULL;
}

/* Interrupts a WAITING tasklet with err (-ECANCELED, -ETIMEDOUT): runs its
 * unwait hook and, unless that defers the wake to a completion, disarms its
 * timer and queues it. */
void coil__interrupt(struct coil__tasklet *t, int err);

/* Common entry checks of a blocking call: sets *tp to the running tasklet and
 * returns 0, or -EPERM outside a tasklet, -ECANCELED if it was killed. A call
 * that can complete without waiting (a channel transfer that is ready) checks
 * the kill only once it knows it would have to wait: see coil__self. */
static inline int coil__enter(struct coil__tasklet **tp) {
    struct coil__tasklet *t = coil__self();
    if (COIL_UNLIKELY(!t)) return -EPERM;
    if (COIL_UNLIKELY(t->killed)) return -ECANCELED;
    *tp = t;
    return 0;
}

/* True when a deadline is set and has passed: a would-block call then fails
 * with -ETIMEDOUT instead of parking. */
static inline bool coil__deadline_passed(int64_t deadline) {
    return deadline >= 0 && deadline <= coil_now();
}

const char *coil__wait_name(enum coil__wait kind);

/* Lets another thread run (sched_yield, SwitchToThread): a spinning waiter
 * whose lock holder may not be on a CPU. src/unix/thread.c, src/win/thread.c. */
void coil__cpu_yield(void);
/* The CPUs the process may run on (its affinity), at least 1. */
unsigned coil__sys_cpu_count(void);

/* ---- groups of schedulers (src/group.c) ------------------------------- */

/* A group of schedulers, one per thread (coil_run_group). */
struct coil__group {
    unsigned n;
    pthread_cond_t barrier;      /* its own: a condvar waits with one mutex only */
    struct coil__sched **scheds; /* n, by index; scheds[0] runs on the caller's thread */
    uint64_t serial0;            /* scheds[i]->serial == serial0 + i */
    size_t nlive;                /* tasklets alive in the whole group (atomic) */
    unsigned next_spawn;         /* coil_spawn_on(COIL_SCHED_NEXT): round robin (atomic) */
    /* Idle bookkeeping, for the group's deadlock detector (under lock). */
    pthread_mutex_t lock;
    unsigned stalled;           /* schedulers with nothing but a message to wait for */
    unsigned deadlock_gen;      /* bumped for each deadlock step the schedulers take (atomic) */
    bool deadlock;              /* the first step was taken */
    int start_err;              /* a scheduler could not be set up (atomic) */
    unsigned started, finished; /* schedulers at each barrier (under lock) */
};

/* Sends m to scheduler s (another thread's, or this one's): m->fn(s, m) runs
 * in s's loop. Wakes s if it sleeps. */
void coil__msg_post(struct coil__sched *s, struct coil__msg *m);
/* Runs the messages sent to s, in the order each sender sent them. */
void coil__inbox_run(struct coil__sched *s);
static inline bool coil__inbox_pending(const struct coil__sched *s) {
    return __atomic_load_n(&s->inbox, __ATOMIC_RELAXED) != NULL;
}
/* Wakes t, parked on this or another scheduler of the group, with result;
 * the caller has taken t off what it waited on (and won wait_claim). */
void coil__wake_any(struct coil__tasklet *t, int result);
/* A call on another scheduler: fn runs on target's thread and ends by
 * waking x->caller (coil__wake_any) with the result, now or later. */
struct coil__xcall {
    struct coil__msg msg;
    struct coil__tasklet *caller;
    void *arg;
    int64_t value; /* fn's 64-bit answer, beside the wake's int */
};
/* Parks the calling tasklet t until fn(target, x) wakes it; returns that
 * result. Not cut short by a kill or a timeout: fn answers within a round
 * of target's. */
int coil__xcall(struct coil__tasklet *t, struct coil__sched *target,
                void (*fn)(struct coil__sched *s, struct coil__msg *m), struct coil__xcall *x);
/* The scheduler of the calling thread's group that owns tasklet id, or NULL
 * when id cannot name a tasklet of the group. */
struct coil__sched *coil__sched_of(const struct coil__sched *s, coil_id id);
/* The scheduler of s's group whose serial is serial, or NULL. */
struct coil__sched *coil__sched_by_serial(const struct coil__sched *s, uint64_t serial);
/* The loop's group duties: s has nothing that can wake it but another
 * thread; returns after s may have work (a message, the group's end, a
 * deadlock notice). */
void coil__group_idle(struct coil__sched *s, int64_t next, bool stalled);
/* sched.c, for the detector: marks the joins on a cycle, every scheduler of
 * g stalled. */
void coil__group_find_cycles(struct coil__group *g);
/* Spawns on s, the calling thread's scheduler (coil_spawn without its checks). */
coil_id coil__spawn_here(struct coil__sched *s, coil_fn fn, void *arg, const coil_spawn_opts *opts);
bool coil__group_live(const struct coil__sched *s);
void coil__group_tasklet_born(struct coil__sched *s);
void coil__group_tasklet_ended(struct coil__sched *s);
/* sched.c, for the group: set up, run, tear down one scheduler. */
int coil__sched_setup(struct coil__sched *s, struct coil__group *g, unsigned index);
int coil__sched_spawn_main(struct coil__sched *s, coil_fn main, void *arg);
int coil__sched_loop(struct coil__sched *s);
void coil__sched_unspawn_main(struct coil__sched *s);
int coil__sched_teardown(struct coil__sched *s, int err);
void coil__sched_deadlock_step(struct coil__sched *s);

/* ---- stacks (src/stack.c; mapping: src/unix/stack.c, src/win/stack.c) --- */

/* Takes a stack of stack_size usable bytes (a page multiple) from the pool or
 * maps a new one, and returns the tasklet record that owns it (zeroed but for
 * map, map_len, stack_size and vg_stack_id). NULL with -errno in *err. */
struct coil__tasklet *coil__stack_get(struct coil__sched *s, size_t stack_size, int *err);
/* Returns t's stack to the pool (with t) or unmaps it (and puts t back with
 * coil__record_put). t must not be running on it. */
void coil__stack_put(struct coil__sched *s, struct coil__tasklet *t);
/* Unmaps every pooled stack. */
void coil__stack_pool_drain(struct coil__sched *s);
/* The platform's part (src/unix/stack.c, src/win/stack.c): maps map_len
 * bytes for a stack whose lowest COIL__GUARD_SIZE bytes are its guard, or
 * returns NULL with -errno in *err; and unmaps such a mapping. */
char *coil__stack_map(struct coil__sched *s, size_t map_len, int *err);
void coil__stack_unmap(char *map, size_t map_len);
/* Lowest usable byte of t's stack (just above its guard page). */
static inline char *coil__stack_lo(const struct coil__tasklet *t) {
    return t->map + t->map_len - t->stack_size;
}
/* One past the highest byte of t's stack: where its first frame goes. */
static inline char *coil__stack_hi(const struct coil__tasklet *t) {
    return t->map + t->map_len;
}

/* A zeroed tasklet record from s's chunks (src/sched.c), NULL when out of
 * memory; put gives it back. The chunks are freed when coil_run ends. */
struct coil__tasklet *coil__record_get(struct coil__sched *s);
void coil__record_put(struct coil__sched *s, struct coil__tasklet *t);

/* Installs (once per process) the SIGSEGV/SIGBUS handler that names a tasklet
 * whose stack overflowed into its guard page, and gives the calling thread an
 * alternate signal stack to run it on. */
int coil__overflow_guard_init(struct coil__sched *s);
void coil__overflow_guard_fini(struct coil__sched *s);

/* ---- shared waits: channels and sync objects across schedulers ---------- */

/* A spinlock guarding an object that tasklets of several schedulers use
 * (a shared channel, mutex, ...): held for a few stores, never across a
 * switch. */
static inline void coil__spin_lock(int *lock) {
    for (unsigned spins = 0; __atomic_exchange_n(lock, 1, __ATOMIC_ACQUIRE);)
        while (__atomic_load_n(lock, __ATOMIC_RELAXED)) {
            /* The holder does a few stores; if it is not running (more
             * threads than cores), let it. */
            if (++spins % 256 == 0) coil__cpu_yield();
        }
}

static inline void coil__spin_unlock(int *lock) {
    __atomic_store_n(lock, 0, __ATOMIC_RELEASE);
}

/* Takes parked t's wait, against every other thread that could (a waker
 * on another scheduler, t's own timeout or kill): true for the one winner,
 * which completes the wait. t->wait_claim was zeroed when t parked. */
static inline bool coil__take_claim(struct coil__tasklet *t) {
    uint8_t idle = 0;
    return __atomic_compare_exchange_n(&t->wait_claim, &idle, 1, false, __ATOMIC_ACQ_REL,
                                       __ATOMIC_RELAXED);
}

/* Keeps freed memory p (a channel's, a sync object's, marked dead by its
 * owner) for a while, so that a use after free is answered with -EBADF;
 * frees it at once outside coil_run (src/chan.c). */
void coil__quarantine_put(void *p);

/* ---- mutexes, condition variables, semaphores, wait groups (src/sync.c) */

/* t ends holding mutexes: each goes to its first waiter, or to the next
 * locker, with -EOWNERDEAD. */
void coil__sync_owner_died(struct coil__tasklet *t);
/* Writes what a tasklet parked on a sync object waits on (for coil_dump). */
void coil__sync_describe_wait(const struct coil__tasklet *t, FILE *out);

/* ---- channels (src/chan.c) --------------------------------------------- */

/* Frees the channels that coil_chan_free kept in quarantine. */
void coil__chan_quarantine_flush(void);
/* Writes what a tasklet parked on channels waits on (for coil_dump). */
void coil__chan_describe_wait(const struct coil__tasklet *t, FILE *out);

/* ---- tasklet-local storage and scopes (src/local.c, src/scope.c) ------- */

/* Runs the destructors of t's tasklet-local values (t is the running
 * tasklet, whose fn has returned) and frees its storage. */
void coil__locals_end(struct coil__tasklet *t);
#ifndef _WIN32
/* coil_install's thread-specific data (src/unix/tsd.c): t's value of pthread
 * key `key`, if it was set while the key's sequence number in glibc's table
 * was seq (else NULL); and setting it (0, or ENOMEM). Kept with t's
 * tasklet-local values (src/local.c). */
void *coil__tsd_get(struct coil__tasklet *t, unsigned key, uintptr_t seq);
int coil__tsd_set(struct coil__tasklet *t, unsigned key, uintptr_t seq, void *value);
/* The destructor of pthread key `key` while its sequence number is still
 * seq; NULL when it has none, was deleted since, or coil is no longer
 * installed. */
void (*coil__tsd_destructor(unsigned key, uintptr_t seq))(void *);
#endif
static inline void coil__locals_run(struct coil__tasklet *t) {
    if (COIL_UNLIKELY(t->locals != NULL)) coil__locals_end(t);
}

/* sched.c: the live tasklet id of s, or NULL; and, for scopes, a kill as
 * coil_kill makes it, from any context of s's thread. */
struct coil__tasklet *coil__tasklet_get(const struct coil__sched *s, coil_id id);
void coil__kill(struct coil__tasklet *t);
/* Whether t is u, or what u waits for: the members of the scope it waits on
 * and, with joins, its join target, and so on; each step costs one of
 * *budget (false when it runs out). sched.c's join target of t, or NULL. */
bool coil__wait_reaches(const struct coil__tasklet *u, const struct coil__tasklet *t, bool joins,
                        size_t *budget);
const struct coil__tasklet *coil__join_target(const struct coil__tasklet *t);
/* What a tasklet parked in coil_scope_wait waits on (for coil_dump). */
void coil__scope_describe_wait(const struct coil__tasklet *t, FILE *out);

/* ---- dump (src/dump.c) ------------------------------------------------- */

int coil__dump_sched(struct coil__sched *s, FILE *out);

/* ---- I/O operations and backends (src/io/, src/net.c, src/fd.c) ------- */

enum coil__opcode {
    COIL__OP_READ = 1,
    COIL__OP_WRITE,
    COIL__OP_RECV,
    COIL__OP_SEND,
    COIL__OP_RECVMSG,
    COIL__OP_SENDMSG,
    COIL__OP_ACCEPT,
    COIL__OP_CONNECT,
    COIL__OP_POLL,    /* wait for readiness: u.poll.events */
    COIL__OP_PREADV,  /* preadv2(2) of a file at an offset: u.rw */
    COIL__OP_PWRITEV, /* pwritev2(2): u.rw */
};

#ifdef _WIN32
#define COIL__OP_SCRATCH 384
#else
#define COIL__OP_SCRATCH 40
#endif

/*
 * One I/O operation in flight. It lives in the frame of the tasklet that
 * waits on it, and that frame is not left before the backend has reported
 * the operation finished (invariant 1): a kill, a timeout or a coil_close
 * only asks the backend to cancel it. Its completion finds it through the
 * pointer the kernel carries back (io_uring user_data; invariant 2).
 */
struct coil__op {
    struct coil__tasklet *t;
    struct coil__link fd_link; /* in the fd's operations in flight */
    int fd;
    /* MSG_* of a recv, send, recvmsg or sendmsg (0 for the others): outside
     * the union, so that "don't wait" is one test in every backend. */
    int flags;
    uint8_t opcode;   /* enum coil__opcode */
    bool polling;     /* waiting for readiness before (re)trying the op */
    bool has_timeout; /* the backend enforces deadline itself */
    bool retried;     /* submitted again after waiting for readiness */
    bool done;        /* finished, its tasklet woken (or about to be) */
    int interrupt;    /* error asked for by kill/timeout/close; 0 if none */
    int res;          /* the result, when submit finished op at once */
    int64_t deadline;
    union {
        struct {
            void *buf;
            size_t len;
        } io;
        struct {
            struct msghdr *msg;
            socklen_t namecap; /* msg_namelen before the call */
        } msg;
        struct {
            struct sockaddr *addr;
            socklen_t *addrlen;
            socklen_t addrcap; /* *addrlen before the call */
        } accept;
        struct {
            const struct sockaddr *addr;
            socklen_t addrlen;
        } connect;
        struct {
            short events;
        } poll;
        struct {
            const struct iovec *iov;
            int iovcnt;
            int rwflags; /* RWF_* of preadv2/pwritev2 */
            int64_t off;
        } rw;
    } u;
    /* The backend's own per-op state, its struct checked against this size
     * by a static assertion in its file (io_uring: struct ur_op; epoll:
     * struct ep_op; iocp: struct iocp_op, the OVERLAPPED and what the kernel
     * writes besides the caller's buffer). Set up by the backend's submit;
     * nothing else reads it. */
    _Alignas(8) unsigned char scratch[COIL__OP_SCRATCH];
    /* Set when op is one of several a tasklet waits on at once (poll(2) and
     * select(2) after coil_install): see coil__wait_fds. */
    struct coil__opgroup *group;
};

/* Ops a tasklet waits on together: the first to complete cancels the others,
 * and the tasklet is woken when every one has completed (invariant 1: they
 * live in its frame). */
struct coil__opgroup {
    struct coil__tasklet *t;
    struct coil__op *ops;
    size_t n;
    size_t pending; /* submitted ops whose completion has not come yet */
    bool fired;     /* one completed, or the wait was interrupted */
    int interrupt;  /* the kill or timeout that interrupted it; 0 if none */
};

/* Parks the calling tasklet until one of the n fds may be ready for its
 * events (POLLIN, POLLOUT, POLLPRI, POLLRDHUP; errors and hang-ups always count), or
 * the deadline. Returns 0 (look with poll(2) at what is ready: a wake-up may
 * be spurious), -ETIMEDOUT, -ECANCELED, -ENOMEM, or -EPERM outside a
 * tasklet. Entries with a negative fd are ignored; an fd that cannot be
 * watched counts as ready. */
int coil__wait_fds(const struct pollfd *fds, size_t n, int64_t deadline);

/* The fixed set of operations every backend implements, chosen once per
 * scheduler (in the manner of redis's aeApi*; the choice is made in
 * sched.c, backend_choose, the one place that lists the backends). */
struct coil__backend_ops {
    const char *name;
    /* 0 when init would succeed in this process as far as a cheap test can
     * tell, else the -errno init would fail with (coil_backend_name asks
     * this outside coil_run, by the rule coil_run chooses with). */
    int (*probe)(void);
    int (*init)(struct coil__sched *s);
    void (*fini)(struct coil__sched *s);
    /* Starts op (io_uring: queued, submitted in a batch by poll/wait). When
     * the backend enforces op->deadline itself, or must not have it enforced
     * (epoll: a regular file's read or write on the offload pool, which takes
     * no deadline), it sets op->has_timeout; otherwise the scheduler's timer
     * heap enforces it.
     * Returns 0 when op is in flight (its completion wakes the caller), 1
     * when it finished at once with its result in op->res (epoll: the first
     * try did not have to wait), or -errno (nothing started). */
    int (*submit)(struct coil__sched *s, struct coil__op *op);
    /* Asks the kernel to cancel op; its completion still comes. */
    void (*cancel)(struct coil__sched *s, struct coil__op *op);
    /* Submits what is queued and reaps completions without blocking. */
    void (*poll)(struct coil__sched *s);
    /* Submits, then blocks until a completion, a wake-up or the deadline
     * (negative: none). Returns 0 or -errno; EINTR counts as a wake-up. */
    int (*wait)(struct coil__sched *s, int64_t deadline);
    /* True while operations are in flight, so the scheduler is not idle
     * (offload jobs are the scheduler's to count, not the backend's). */
    bool (*busy)(const struct coil__sched *s);
    /* Called from another thread (an offload worker that finished a job):
     * makes the scheduler's wait return soon, and that round reap the
     * finished jobs (coil__offload_reap). Async-signal-safe it need not be:
     * signals have their own wake-up (coil__signal_wake_fd). */
    void (*wake)(struct coil__sched *s);
    /* Optional (NULL: wake(to)): makes the wait of `to`, a scheduler of the
     * caller's group on this backend, return soon; called on the thread of
     * `from`, the calling scheduler (in its loop or a tasklet), which has a
     * ring of its own to send the wake-up through (io_uring: a message
     * between rings, IORING_OP_MSG_RING). A wake-up it fails to deliver it
     * delivers through wake, later in from's loop at worst. */
    void (*wake_from)(struct coil__sched *from, struct coil__sched *to);
    /* Pushes everything queued to the kernel now (before an fd is closed, so
     * that no queued SQE can name a reused fd number). */
    void (*flush)(struct coil__sched *s);
    /* The number of f is about to name another file (coil_close, or a new
     * fd from coil_socket/coil_accept): drop what the backend keeps for the
     * old one. Ops on it have been cancelled already. */
    void (*fd_closing)(struct coil__sched *s, struct coil__fd *f);
    /* Optional: one line or more of the backend's state for coil_dump, each
     * starting with two spaces. */
    void (*describe)(const struct coil__sched *s, FILE *out);
};

/* A connect on a Unix socket whose listener's backlog is full fails with
 * EAGAIN, and no readiness says when there is room (an unconnected Unix
 * socket always polls writable): every backend tries such a connect again
 * after COIL__CONNECT_RETRY_NS, until it succeeds, fails otherwise, or its
 * deadline, a kill or a close ends it. */
#define COIL__CONNECT_RETRY_NS (5 * COIL_MSEC)
static inline bool coil__connect_retry(const struct coil__op *op, int res) {
    return res == -EAGAIN && op->opcode == COIL__OP_CONNECT;
}

/* Called by a backend when op has finished with res (-errno or a count):
 * maps a requested cancellation to its error and wakes op's tasklet. */
void coil__op_complete(struct coil__op *op, int res);

/* Runs op to completion for the calling tasklet t: submits it, parks, and
 * returns its result. */
int coil__op_run(struct coil__tasklet *t, struct coil__op *op);

extern const struct coil__backend_ops coil__backend_epoll;
extern const struct coil__backend_ops coil__backend_uring;
extern const struct coil__backend_ops coil__backend_iocp;

/* ---- per-fd state (src/fd.c) ------------------------------------------- */

/* What an fd is, learnt once (coil__fd_kind) and forgotten by coil_close. */
enum coil__fd_kind {
    COIL__FD_UNKNOWN = 0,
    COIL__FD_STREAM, /* a SOCK_STREAM socket */
    COIL__FD_SOCKET, /* any other socket */
    COIL__FD_FILE,   /* a regular file or block device: never "not ready" */
    COIL__FD_OTHER,  /* pipe, FIFO, tty, eventfd, ... */
};

/*
 * What a scheduler knows of one fd number. The entry describes the open file
 * the number names now: coil_close (and coil_socket/coil_accept, which return
 * a number that names a new file) reset it with coil__fd_reset, and bump gen
 * so that a readiness event of the old file (an epoll registration survives
 * in a dup of it) is recognised as stale.
 */
struct coil__fd {
    struct coil__list ops; /* operations in flight on this fd (coil__op.fd_link) */
    int64_t timeout;       /* coil_set_timeout; negative: none */
    uint32_t gen;          /* bumped each time the number names a new file */
    uint8_t kind;          /* enum coil__fd_kind */
    /* A TCP socket: a short read or write means it is drained (or full) for
     * now. Not so for every stream: AF_UNIX stops a read at a message that
     * carries fds, SCTP at each message. */
    bool tcp;
    /* coil_install's memory of the program's O_NONBLOCK and of the socket's
     * SO_RCVTIMEO and SO_SNDTIMEO (ns, 0: none), so that a diverted recv or
     * send need not ask the kernel each time: valid while opt_epoch equals
     * coil__sockopt_epoch (0: never read; coil__fd_reset sets it so). See
     * user_view in src/unix/wrap.c. */
    uint32_t opt_epoch;
    bool nonblock;
    int64_t rcvtimeo, sndtimeo;
};

/* Bumped by coil_install's wrappers, on any thread, by every call that may
 * change what a number names, its O_NONBLOCK or its timeouts: every
 * scheduler's memory of them is then stale (struct coil__fd.opt_epoch).
 * Starts at 1. */
extern uint32_t coil__sockopt_epoch;

/* The state of fd in s, growing the table as needed; NULL with *err = -EBADF
 * for a negative fd or one at or above RLIMIT_NOFILE (it cannot be open), or
 * -ENOMEM. errno is left alone. */
struct coil__fd *coil__fd_grow(struct coil__sched *s, int fd, int *err);
static inline struct coil__fd *coil__fd_get(struct coil__sched *s, int fd, int *err) {
    if (COIL_LIKELY(fd >= 0 && (size_t)fd < s->fds.len)) return &s->fds.v[fd];
    return coil__fd_grow(s, fd, err);
}
void coil__fd_table_free(struct coil__sched *s);
/* A backend's own per-fd table (len entries of elem bytes at v, indexed by
 * fd number): returns it grown (realloc'd, the new entries zeroed) to hold
 * entry fd, with *len updated; NULL when out of memory (v is unchanged). */
void *coil__fd_table_grow(void *v, size_t *len, size_t elem, int fd);
/* Forgets what was known of the file f named (not its ops in flight). */
void coil__fd_reset(struct coil__fd *f);
/* f's kind, learnt with a system call or two the first time (errno is left
 * alone); COIL__FD_UNKNOWN if fd is not open. Per platform (src/unix/net.c,
 * src/win/net.c). */
enum coil__fd_kind coil__fd_learn_kind(struct coil__fd *f, int fd);
static inline enum coil__fd_kind coil__fd_kind(struct coil__fd *f, int fd) {
    return COIL_LIKELY(f->kind) ? (enum coil__fd_kind)f->kind : coil__fd_learn_kind(f, fd);
}
static inline bool coil__fd_is_socket(enum coil__fd_kind k) {
    return k == COIL__FD_STREAM || k == COIL__FD_SOCKET;
}

/* fd is a number coil (or, after coil_install, the program) just got for a
 * new file: forget what the scheduler of this thread knew of the number. */
void coil__fd_fresh(int fd, enum coil__fd_kind kind, bool tcp);
/* The number fd is about to name another file (coil_close; dup2 onto it):
 * its waiters on this thread's scheduler wake with -EBADF, the backend
 * drops what it keeps for it, and what was known of it is forgotten. */
void coil__fd_forget(int fd);
/* Ends every op waiting on f with -EBADF (coil_close, and a reused number). */
void coil__fd_cancel_ops(struct coil__sched *s, struct coil__fd *f);
/* recvmsg(2)/sendmsg(2) as blocking calls (coil_install's wrappers). */
ssize_t coil__recvmsg(int fd, struct msghdr *msg, int flags, int64_t deadline);
ssize_t coil__sendmsg(int fd, const struct msghdr *msg, int flags, int64_t deadline);
/* preadv2(2)/pwritev2(2) (write: true) of fd at offset off >= 0, parking
 * the calling tasklet (coil_install's pread family; POSIX only): io_uring's
 * read or write at an offset, or the epoll backend's offload pool. fd must
 * name a file that takes an offset (a pipe or socket would not give
 * ESPIPE here): the caller has tried the call with RWF_NOWAIT first. The
 * count, or -errno (-ECANCELED: the tasklet was killed). */
ssize_t coil__prw(bool write, int fd, const struct iovec *iov, int iovcnt, int64_t off,
                  int rwflags);
/* A call that finished without parking spends the round's switch budget
 * (as coil__op_run's ops that finish at once): when it is gone, the calling
 * tasklet t yields. */
void coil__spend_budget(struct coil__tasklet *t);

/* ---- the fd API's per-platform primitives (src/unix/net.c, src/win/net.c) */

struct addrinfo;

/* src/net.c is the fd API of every platform: argument checks, the ops, the
 * message forms, dial and listen_on. What it asks of the system goes
 * through these calls. Each returns 0 (or an fd), else -errno, and leaves
 * errno alone. */

/* A socket that coil's backend can drive (POSIX: close-on-exec; Windows:
 * overlapped, not inherited, Winsock started). */
int coil__sys_socket(int domain, int type, int protocol);
int coil__sys_bind(int fd, const struct sockaddr *addr, socklen_t addrlen);
int coil__sys_listen(int fd, int backlog);
int coil__sys_shutdown(int fd, int how);
int coil__sys_close(int fd);
/* Options of a listening socket of family before its bind; wildcard: bound
 * to every address (an IPv6 wildcard then takes IPv4 too); flags: those of
 * coil_listen_on_flags. Returns 0, or -errno when a flag cannot be had
 * (-ENOTSUP: the system has no such thing); the other options' failures are
 * ignored: the bind says what matters. */
int coil__sys_listener_options(int fd, int family, bool wildcard, int flags);
/* 0 when fd is open (Windows: a socket), else -EBADF. */
int coil__sys_fd_open(int fd);
/* 0 when coil_read and coil_write serve fd; Windows: sockets only, another
 * handle is -ENOTSUP, a number that names nothing -EBADF. */
int coil__sys_rw_check(int fd);
/* A transfer of zero bytes (opcode: COIL__OP_RECV, _SEND, _READ, _WRITE)
 * never waits: the errors a non-blocking call would report, else 0. */
ssize_t coil__sys_zero_length(int opcode, int fd, int flags);
/* getaddrinfo, blocking (an offload worker calls it, or a literal address
 * at once), its error as -errno: a name that is not found -ENOENT, a
 * temporary failure -EAGAIN, out of memory -ENOMEM, others -EINVAL. */
int coil__sys_getaddrinfo(const char *host, const char *service, const struct addrinfo *hints,
                          struct addrinfo **res);
/* True when fd is at or above the number of fds a process may have open:
 * it cannot be open, and no table grows for it. */
bool coil__sys_fd_beyond_limit(int fd);

/* The literal-address fast path (src/net.c), for coil_dial, coil_listen_on
 * and coil_install's getaddrinfo: a numeric host and service ("127.0.0.1",
 * "::1"; "8080") of one socket type (hints->ai_socktype set), without
 * AI_ADDRCONFIG, answered at once on the calling thread. 0 with *res set,
 * or -errno: -ENOENT when host is a name or the query is not one to answer
 * here. errno is left alone. */
int coil__resolve_literal(const char *host, const char *service, const struct addrinfo *hints,
                          struct addrinfo **res);

/* ---- interposition (src/unix/install.c patches, src/unix/wrap.c wraps) */

/* A libc function coil_install diverts, and the wrapper it is diverted to. */
struct coil__wrap {
    const char *name;
    void *wrapper;
};
extern const struct coil__wrap coil__wraps[];
extern const size_t coil__nwraps;
/* The pthread locks and semaphores (src/unix/locks.c). */
extern const struct coil__wrap coil__lock_wraps[];
extern const size_t coil__nlock_wraps;
/* pthread_getspecific and pthread_setspecific (src/unix/tsd.c): empty
 * (coil__ntsd_wraps 0) when this C library's key table cannot be read; see
 * coil__tsd_probe. */
extern const struct coil__wrap coil__tsd_wraps[];
extern size_t coil__ntsd_wraps;
/* Learns where glibc keeps its pthread keys (once; under the install lock):
 * without that, thread-specific data stays the thread's. */
void coil__tsd_probe(void);
/* Addresses inside the objects whose pthread_getspecific and
 * pthread_setspecific calls are not diverted (0: none): the sanitizer
 * runtime, and the process's malloc (see src/unix/tsd.c). Set by
 * coil__tsd_probe. */
extern uintptr_t coil__tsd_keep[2];
/* Writes what a tasklet parked on a pthread lock waits on (for coil_dump). */
void coil__lock_describe_wait(const struct coil__tasklet *t, FILE *out);
/* Between coil_install and coil_uninstall: a wrapper called inside a
 * tasklet does coil's call; otherwise (and always before) libc's. Written
 * under the install lock, read by every wrapper on any thread without it:
 * each access is an __atomic one (a plain volatile flag was a data race,
 * reported by the TSan stage in test_install_dlopen). Relaxed: the flag
 * orders nothing else, and either answer is safe at the moment it flips
 * (the GOT slots themselves are swapped with single atomic stores). */
extern bool coil__installed;
/* Diverts the objects loaded since the last walk, if coil is installed. */
void coil__install_loaded(void);
static inline bool coil__is_installed(void) {
    return __atomic_load_n(&coil__installed, __ATOMIC_RELAXED);
}

/* ---- offload pool (src/offload.c) -------------------------------------- */

/* A job for the offload pool. fn(arg) runs on a worker; then, back on the
 * scheduler's thread, done(job) is called, or (done NULL) t is woken with
 * fn's result. The job's memory must live until then. */
struct coil__job {
    int (*fn)(void *arg);
    void *arg;
    int result;
    struct coil__tasklet *t;
    void (*done)(struct coil__job *j);
    struct coil__sched *s;
    struct coil__job *next;
};

/* Queues j (j->fn, arg, t or done set by the caller). Returns 0, or -EAGAIN
 * when no worker thread could be started. */
int coil__offload_start(struct coil__sched *s, struct coil__job *j);
/* Moves the jobs the workers finished to the run queue. */
void coil__offload_reap(struct coil__sched *s);
void coil__offload_fini(struct coil__sched *s);

/* ---- signals (src/unix/signal.c, src/win/signal.c) ---------------------- */

/* Counters bumped by signal handlers, and an eventfd (-1 until first needed)
 * that every scheduler's backend watches so that a signal wakes it. A
 * handler runs on whichever thread the kernel picks, so every access to these
 * three is an __atomic one (relaxed: a scheduler only needs to notice, at its
 * next round, that a count moved; volatile alone is a data race between
 * threads, which the TSan stage reported). */
extern volatile unsigned coil__dump_requests;
extern volatile unsigned coil__shutdown_requests;
extern volatile int coil__shutdown_signo; /* the last shutdown signal caught */
extern int coil__signal_wake_fd;
/* Makes sure the eventfd exists, counting a user (a scheduler, or
 * coil_dump_on_signal, which never lets go); release closes it when the last
 * scheduler ends, once no handler can still be writing to it. */
int coil__signal_wake_init(void);
void coil__signal_wake_release(void);
void coil__signal_wake(void);
#ifndef _WIN32
/* Adds one to eventfd fd (a wake-up); async-signal-safe, errors ignored: a
 * full counter is as awake as it gets. */
void coil__eventfd_post(int fd);
#endif
/* A tasklet in coil_signal_wait (src/unix/signal.c): in its frame, linked
 * in its scheduler's sigwaiters while it waits. Bit n-1 of mask is signal n. */
struct coil__sigwait {
    struct coil__link link;
    struct coil__tasklet *t;
    uint64_t mask;
};
/* Bumped (release) by the handler each time it keeps a signal for the
 * program's waits; each scheduler compares it with signals_seen every round
 * and then hands kept signals to its waiters (coil__signal_deliver). Never
 * moves on Windows. */
extern volatile unsigned coil__signal_arrivals;
void coil__signal_deliver(struct coil__sched *s);
/* How long the tasklets get to finish after a shutdown signal (ns; negative:
 * forever), see coil_set_shutdown_grace. */
int64_t coil__shutdown_grace(void);
/* COIL_SIGNALS_*, see coil_set_shutdown_signals. */
int coil__shutdown_mode(void);
/* Ends the process as signal sig's default action would (after a shutdown
 * that overran its grace). */
__attribute__((noreturn)) void coil__die_by_signal(int sig);
/* Catches SIGINT/SIGTERM for the duration of a coil_run (if they have their
 * default disposition), and gives them back. */
void coil__shutdown_signals_acquire(void);
void coil__shutdown_signals_release(void);

/* The stall watchdog and the registry of running schedulers
 * (src/unix/watchdog.c; src/win/watchdog.c has neither). attach applies
 * COIL_WATCHDOG_MS (once per process; -EINVAL, said on stderr, for a value
 * that is not a number of milliseconds) and registers s, running on the
 * calling thread; detach takes it out, after which no report reads s. */
int coil__watchdog_attach(struct coil__sched *s);
void coil__watchdog_detach(struct coil__sched *s);
#ifndef _WIN32
/* From a SIGINT/SIGTERM handler that gives up on the shutdown: writes to
 * stderr what each running scheduler is doing (the tasklet it runs and a
 * backtrace, written by its own thread on SIGURG; uc is the handler's
 * context, for the thread the handler interrupted). Async-signal-safe;
 * bounded: a scheduler whose thread does not answer within a second is
 * named without a backtrace. */
void coil__watchdog_dump_all(void *uc);
/* The running schedulers (src/unix/watchdog.c), linked by watch.next. */
extern struct coil__sched *coil__registry;
/* Async-signal-safe writing to stderr: a string, a number. */
void coil__report_str(const char *str);
void coil__report_num(int64_t v);
#endif

/* ---- run queue and switching (inline: they are the hot path of every
 * blocking call, and each call level a switch returns through costs a
 * mispredicted return) ---------------------------------------------------- */

static inline void coil__runq_push(struct coil__sched *s, struct coil__tasklet *t) {
    t->state = COIL__RUNNABLE;
    coil__slist_push_back(&s->runq.q, &t->runq);
    s->runq.len++;
}

static inline struct coil__tasklet *coil__runq_pop(struct coil__sched *s) {
    struct coil__slink *l = coil__slist_pop_front(&s->runq.q);
    if (!l) return NULL;
    /* with a thousand tasklets their records are rarely cached: fetch the
     * next one's while this one runs (measured, echo server at 1,000
     * connections: this load was the top miss) */
    if (s->runq.q.first) __builtin_prefetch(s->runq.q.first);
    s->runq.len--;
    return coil__container_of(l, struct coil__tasklet, runq);
}

static inline void coil__after_switch(struct coil__sched *s) {
#if COIL_TSAN
    pthread_sigmask(SIG_SETMASK, &s->tsan_mask, NULL); /* see coil__switch_to */
#endif
    struct coil__tasklet *dead = s->reap;
    if (dead) {
        s->reap = NULL;
        coil__stack_put(s, dead);
    }
}

static inline void coil__switch_to(struct coil__sched *s, struct coil__tasklet *from,
                                   struct coil__tasklet *to) {
    __atomic_store_n(&s->current, to, __ATOMIC_RELAXED);
    __atomic_store_n(&s->watch.switches, s->watch.switches + 1, __ATOMIC_RELAXED);
    to->state = COIL__RUNNING;
#if COIL_ASAN
    /* A finishing tasklet passes NULL so that ASan drops its fake stack. */
    if (to == &s->root)
        __sanitizer_start_switch_fiber(from->state == COIL__DONE ? NULL : &from->asan_fake_stack,
                                       s->root_stack_lo, s->root_stack_size);
    else
        __sanitizer_start_switch_fiber(from->state == COIL__DONE ? NULL : &from->asan_fake_stack,
                                       coil__stack_lo(to), to->stack_size);
#endif
    /* errno is per thread, but each tasklet must see its own: the scheduler's
     * and other tasklets' system calls in between would change it. */
    int saved_errno = *s->errno_ptr;
#if COIL_TSAN
    /* ThreadSanitizer runs a signal handler at once only inside a blocking
     * call it intercepts; otherwise it queues the signal until the next call
     * it intercepts, on a queue of the fiber that is running (a fiber is a
     * thread to TSan). A tasklet that switched away with a signal queued
     * kept it until it ran again, and one parked until that very signal came
     * (coil_signal_wait's lone waiter in test_signal_wait) hung: about one
     * run in 60 on a loaded machine, caught with gdb idling in the loop,
     * the kernel's pending set empty and coil's handler never run. So every
     * signal is blocked across the switch: the intercepted pthread_sigmask
     * runs what `from` has queued on its way out, one that comes during the
     * switch stays pending in the kernel, and the mask given back on the
     * other side (coil__after_switch) lets it in where `to` runs it. */
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &s->tsan_mask);
    /* Flag 0, not __tsan_switch_to_fiber_no_sync: the switch orders
     * everything `from` did before everything `to` does next. Tasklets of a
     * scheduler share its queues, timers and channels without a lock, and
     * the switch is what makes that correct; without the happens-before
     * edge TSan would report every hand-off as a race. */
    __tsan_switch_to_fiber(to->tsan_fiber, 0);
#endif
    coil__ctx_switch(&from->ctx, &to->ctx);
#if COIL_ASAN
    __sanitizer_finish_switch_fiber(from->asan_fake_stack, NULL, NULL);
#endif
    *s->errno_ptr = saved_errno;
    coil__after_switch(s);
}

/* The running tasklet self has parked or queued itself: run the next one. */
static inline void coil__schedule(struct coil__sched *s, struct coil__tasklet *self) {
    struct coil__tasklet *next = NULL;
    if (s->budget > 0 && (next = coil__runq_pop(s)) != NULL)
        s->budget--;
    else
        next = &s->root;
    if (next != self)
        coil__switch_to(s, self, next);
    else
        self->state = COIL__RUNNING;
}

static inline void coil__prepare_resume(struct coil__sched *s, struct coil__tasklet *t,
                                        int result) {
    COIL_ASSERT(t->state == COIL__WAITING, "only a waiting tasklet is woken");
    t->wake_result = result;
    t->unwait = NULL;
    t->wait_kind = COIL__WAIT_NONE;
    coil__timer_disarm(&s->timers, &t->timer);
}

/* Puts t at the back of the run queue with wake_result = result. t must be
 * WAITING; the waker has already taken it off what it waited on. */
static inline void coil__wake(struct coil__tasklet *t, int result) {
    struct coil__sched *s = t->sched;
    coil__prepare_resume(s, t, result);
    coil__runq_push(s, t);
}

/* Like coil__wake(to, result), but the running tasklet t lets `to` run at
 * once and goes to the back of the run queue itself (a channel's preferred
 * side runs first). */
static inline void coil__handoff(struct coil__tasklet *t, struct coil__tasklet *to, int result) {
    struct coil__sched *s = t->sched;
    coil__prepare_resume(s, to, result);
    /* No budget check: `to` parked through coil__schedule, which counted
     * against the budget, so handoffs alone cannot keep the loop away. */
    coil__runq_push(s, t);
    coil__switch_to(s, t, to);
}

/* Parks the running tasklet t, which the caller has linked into whatever will
 * wake it, until coil__wake; arms a timer first when deadline >= 0 (expiry
 * calls unwait and wakes t with -ETIMEDOUT). Returns wake_result. */
static inline int coil__park(struct coil__tasklet *t, enum coil__wait kind, void *obj, size_t n,
                             bool (*unwait)(struct coil__tasklet *, int), int64_t deadline) {
    struct coil__sched *s = t->sched;
    t->state = COIL__WAITING;
    t->wait_kind = (uint8_t)kind;
    t->wait_obj = obj;
    t->wait_n = n;
    t->unwait = unwait;
    t->wait_since = s->round_start;
    if (deadline >= 0) coil__timer_arm(&s->timers, &t->timer, deadline);
    coil__schedule(s, t);
    return t->wake_result;
}

/* A test-only build's fault injection (src/fault.h): last, after every
 * system header it wraps. */
#ifdef COIL_FAULT_INJECTION
#include "fault.h"
#endif

#endif /* COIL_INTERNAL_H */
