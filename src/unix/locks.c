/*
 * coil_install's wrappers of the pthread locks and POSIX semaphores: a lock
 * held across I/O parks the tasklets that wait for it, not the thread.
 *
 * Without them a library that holds a pthread mutex across a blocking recv
 * (one connection shared by its callers) hangs a scheduler for good: the
 * holder parks in recv, the next caller blocks the thread in the futex, and
 * the holder never runs again to unlock.
 *
 * Outside a tasklet (before coil_install, on a plain thread, in the
 * scheduler's own context) every call goes to libc as it is. Inside one, an
 * acquisition first makes libc's non-blocking attempt (trylock, sem_trywait);
 * when the object is taken, the tasklet parks on a waiter record keyed by
 * the object's address, in a table shared by every thread. A diverted
 * release (unlock, sem_post, cond signal and broadcast), made inside a
 * tasklet of any scheduler, does libc's release and then wakes the parked
 * waiters of that address: one for a mutex, a semaphore and a cond signal,
 * every one for an rwlock and a broadcast; a woken waiter tries again, and
 * parks again if another caller took the object first (no hand-off: pthread
 * has none either). A release that no wrapper sees (a plain thread's unlock,
 * a call made inside libc) wakes nobody, so each park also has a retry
 * timer: 1 ms, doubling up to 32 ms while nothing wakes it.
 *
 * The waiter table is a fixed array of buckets, each a spinlock and a list;
 * a parked waiter's wait is taken by whoever wins its wait_claim (a waker on
 * any scheduler of the group, or its own timer or kill), and a waker on
 * another scheduler wakes it with a message, as for coil's own shared sync
 * objects (src/sync.c). The waiters of another coil_run (a scheduler on
 * another thread, not of the releaser's group, whose loop reads no
 * messages) are left to their retry timers.
 *
 * Ownership stays per thread, as pthread counts it: the tasklets of one
 * thread share it. So a recursive mutex a tasklet holds is taken at once by
 * another tasklet of the same thread, and an rwlock a tasklet write-holds is
 * not taken again by that tasklet (trywrlock says EBUSY, and it waits for
 * itself, as pthread would deadlock).
 */
#include "internal.h"

#include <semaphore.h>
#include <time.h>

enum lock_kind { LOCK_MUTEX, LOCK_RWLOCK, LOCK_COND, LOCK_SEM };

/* A tasklet parked on a lock: in its frame, linked in its bucket exactly
 * while linked is true (read and written under the bucket's lock). */
struct lock_waiter {
    struct coil__link link;
    struct coil__tasklet *t;
    const void *addr;
    struct lock_waiter *next_woken; /* the waker's private list, after unlinking */
    uint8_t kind;                   /* enum lock_kind */
    bool linked;
};

#define NBUCKETS 64
static struct bucket {
    int lock; /* coil__spin_lock */
    size_t n; /* waiters linked; read without the lock by a release (atomic) */
    struct coil__list waiters;
} buckets[NBUCKETS];

static struct bucket *bucket_of(const void *addr) {
    uint64_t h = (uint64_t)(uintptr_t)addr * 0x9e3779b97f4a7c15ull;
    return &buckets[h >> 58]; /* the top 6 bits: NBUCKETS == 64 */
}

static const int64_t retry_min = COIL_MSEC, retry_max = 32 * COIL_MSEC;

static void waiter_link(struct lock_waiter *w, struct coil__tasklet *t, const void *addr,
                        enum lock_kind kind) {
    struct bucket *b = bucket_of(addr);
    *w = (struct lock_waiter){.t = t, .addr = addr, .kind = (uint8_t)kind, .linked = true};
    __atomic_store_n(&t->wait_claim, 0, __ATOMIC_RELAXED);
    coil__spin_lock(&b->lock);
    coil__list_push_back(&b->waiters, &w->link);
    __atomic_store_n(&b->n, b->n + 1, __ATOMIC_RELAXED);
    coil__spin_unlock(&b->lock);
#if !defined(__x86_64__)
    __atomic_thread_fence(__ATOMIC_SEQ_CST); /* see wake_waiters */
#endif
}

/* Under b's lock. */
static void waiter_unlink(struct bucket *b, struct lock_waiter *w) {
    coil__list_remove(&b->waiters, &w->link);
    __atomic_store_n(&b->n, b->n - 1, __ATOMIC_RELAXED);
    w->linked = false;
}

/* Takes the calling tasklet's own wait back (it linked w and then did not
 * park, or was woken by its timer or kill). False when a waker took it
 * first: its wake-up is on the way and must be absorbed by parking. */
static bool waiter_take_back(struct lock_waiter *w) {
    if (!coil__take_claim(w->t)) return false;
    struct bucket *b = bucket_of(w->addr);
    coil__spin_lock(&b->lock);
    if (w->linked) waiter_unlink(b, w);
    coil__spin_unlock(&b->lock);
    return true;
}

static bool lock_unwait(struct coil__tasklet *t, int err) {
    (void)err;
    return waiter_take_back(t->wait_obj);
}

static const uint8_t wait_kinds[] = {
    [LOCK_MUTEX] = COIL__WAIT_PMUTEX,
    [LOCK_RWLOCK] = COIL__WAIT_PRWLOCK,
    [LOCK_COND] = COIL__WAIT_PCOND,
    [LOCK_SEM] = COIL__WAIT_PSEM,
};

/* Parks t on w (linked) until a release wakes it (0), until (-ETIMEDOUT;
 * negative: no timer) or a kill (-ECANCELED). */
static int waiter_park(struct coil__tasklet *t, struct lock_waiter *w, int64_t until) {
    return coil__park(t, (enum coil__wait)wait_kinds[w->kind], w, 0, lock_unwait, until);
}

/* Wakes the waiters parked on addr: the first one, or all. Returns whether
 * one of them is a tasklet of the calling thread's scheduler. */
static bool wake_waiters(const void *addr, bool all) {
    struct bucket *b = bucket_of(addr);
    /* A waiter stores to its bucket's count and then tries the object; a
     * releaser releases the object and then loads the count: each needs its
     * store ordered before its load, or both can miss the other (the waiter
     * would sleep until its retry timer). On x86-64 glibc's releases and
     * attempts are locked instructions, full barriers already. */
#if !defined(__x86_64__)
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
#endif
    if (!__atomic_load_n(&b->n, __ATOMIC_RELAXED)) return false;
    const struct coil__sched *s = coil__sched_cur;
    bool here = false;
    struct lock_waiter *woken = NULL, **tail = &woken;
    coil__spin_lock(&b->lock);
    struct coil__link *l = b->waiters.first;
    while (l) {
        struct coil__link *next = l->next;
        struct lock_waiter *w = coil__container_of(l, struct lock_waiter, link);
        /* A waiter of another coil_run (a scheduler on another thread,
         * not of this group) has no inbox that its loop reads: it is left
         * to its retry timer. */
        if (w->addr == addr && (w->t->sched == s || (s->group && w->t->sched->group == s->group))) {
            waiter_unlink(b, w);
            /* Lost: its timer or kill has taken the wait, and it will try
             * again by itself. */
            if (coil__take_claim(w->t)) {
                w->next_woken = NULL;
                *tail = w;
                tail = &w->next_woken;
                if (!all) break;
            }
        }
        l = next;
    }
    coil__spin_unlock(&b->lock);
    /* Outside the spinlock: a wake on another scheduler may write to its
     * eventfd. Each waiter stays parked until its wake-up runs, so its
     * record lives until then; next_woken is read first. */
    while (woken) {
        struct lock_waiter *next = woken->next_woken;
        here |= woken->t->sched == s;
        coil__wake_any(woken->t, 0);
        woken = next;
    }
    return here;
}

/* After a release that woke a tasklet of t's scheduler: t lets it run
 * before going on. Nothing is handed over, so otherwise t, which keeps
 * running, would take the object again at its next attempt, and a tasklet
 * that releases and takes again in a loop (lock, recv, unlock, lock, ...)
 * would keep its waiters waiting until it parks with the lock free; between
 * threads the waiter's thread runs meanwhile. */
static void let_woken_run(struct coil__tasklet *t) {
    coil__runq_push(t->sched, t);
    coil__schedule(t->sched, t);
}

/* The running tasklet, if this thread's calls are diverted now. */
static inline struct coil__tasklet *inside(void) {
    return COIL_LIKELY(!coil__is_installed()) ? NULL : coil__self();
}

/* ---- deadlines ---------------------------------------------------------- */

static bool ts_valid(const struct timespec *ts) {
    return ts && ts->tv_nsec >= 0 && ts->tv_nsec < COIL_SEC;
}

/* The absolute time abs on clock clk as a coil_now() deadline (past: a
 * deadline already passed). */
static int64_t deadline_on(clockid_t clk, const struct timespec *abs) {
    struct timespec now;
    clock_gettime(clk, &now);
    const time_t far = (time_t)(INT64_MAX / COIL_SEC / 4); /* about 73 years */
    if (abs->tv_sec > now.tv_sec && abs->tv_sec - now.tv_sec > far) return INT64_MAX;
    if (abs->tv_sec < now.tv_sec && now.tv_sec - abs->tv_sec > far) return 0; /* long past */
    int64_t left = (int64_t)(abs->tv_sec - now.tv_sec) * COIL_SEC + (abs->tv_nsec - now.tv_nsec);
    int64_t d = coil_now() + left;
    return d < 0 ? 0 : d;
}

/* ---- acquisition -------------------------------------------------------- */

/* One non-blocking attempt: 0 (taken), EBUSY (taken by another), or an
 * error to return as it is. */
typedef int (*try_fn)(void *obj);

/*
 * Acquires obj for the running tasklet t: tries, and while it is taken parks
 * until a release wakes it or the retry timer runs out, then tries again.
 * deadline: negative for none. cancellable: a kill ends the wait with
 * ECANCELED; otherwise (the calls pthread gives no error for: lock, rdlock,
 * wrlock, the relock of a cond wait) the wait goes on after a kill, since
 * their callers go on as if they held the lock. A killed tasklet still takes
 * an object that is free. Returns 0, the attempt's own error, ETIMEDOUT or
 * ECANCELED.
 */
static int acquire(struct coil__tasklet *t, void *obj, enum lock_kind kind, try_fn try,
                   int64_t deadline, bool cancellable) {
    int64_t retry = retry_min;
    for (;;) {
        int r = try(obj);
        if (r != EBUSY) return r;
        if (cancellable && t->killed) return ECANCELED;
        if (coil__deadline_passed(deadline)) return ETIMEDOUT;
        struct lock_waiter w;
        waiter_link(&w, t, obj, kind);
        /* Again, now that a release would see the record: one that came
         * between the first attempt and the link woke nobody. */
        r = try(obj);
        if (r != EBUSY) {
            if (!waiter_take_back(&w)) waiter_park(t, &w, COIL_FOREVER);
            return r;
        }
        int64_t until = coil_now() + retry;
        if (deadline >= 0 && deadline < until) until = deadline;
        int woke = waiter_park(t, &w, until);
        if (woke == 0)
            retry = retry_min;
        else if (woke == -ETIMEDOUT && retry < retry_max)
            retry *= 2;
    }
}

static int try_mutex(void *m) {
    return pthread_mutex_trylock(m);
}

static int try_rdlock(void *rw) {
    return pthread_rwlock_tryrdlock(rw);
}

static int try_wrlock(void *rw) {
    return pthread_rwlock_trywrlock(rw);
}

static int try_sem(void *sem) {
    int saved = errno;
    int r = sem_trywait(sem) == 0 ? 0 : errno == EAGAIN ? EBUSY : errno;
    errno = saved;
    return r;
}

/* ---- mutexes ------------------------------------------------------------ */

static int w_pthread_mutex_lock(pthread_mutex_t *m) {
    struct coil__tasklet *t = inside();
    if (!t) return pthread_mutex_lock(m);
    return acquire(t, m, LOCK_MUTEX, try_mutex, COIL_FOREVER, false);
}

static int mutex_lock_until(pthread_mutex_t *m, clockid_t clk, const struct timespec *abs) {
    struct coil__tasklet *t = inside();
    int r = pthread_mutex_trylock(m);
    if (r != EBUSY) return r;
    /* pthread checks the time only once it would have to wait. */
    if (!ts_valid(abs)) return EINVAL;
    return acquire(t, m, LOCK_MUTEX, try_mutex, deadline_on(clk, abs), true);
}

static int w_pthread_mutex_timedlock(pthread_mutex_t *m, const struct timespec *abs) {
    if (!inside()) return pthread_mutex_timedlock(m, abs);
    return mutex_lock_until(m, CLOCK_REALTIME, abs);
}

static int w_pthread_mutex_clocklock(pthread_mutex_t *m, clockid_t clk,
                                     const struct timespec *abs) {
    if (!inside() || (clk != CLOCK_REALTIME && clk != CLOCK_MONOTONIC))
        return pthread_mutex_clocklock(m, clk, abs);
    return mutex_lock_until(m, clk, abs);
}

static int w_pthread_mutex_unlock(pthread_mutex_t *m) {
    int r = pthread_mutex_unlock(m);
    struct coil__tasklet *t;
    if (r == 0 && (t = inside()) != NULL && wake_waiters(m, false)) let_woken_run(t);
    return r;
}

/* ---- rwlocks ------------------------------------------------------------ */

static int w_pthread_rwlock_rdlock(pthread_rwlock_t *rw) {
    struct coil__tasklet *t = inside();
    if (!t) return pthread_rwlock_rdlock(rw);
    return acquire(t, rw, LOCK_RWLOCK, try_rdlock, COIL_FOREVER, false);
}

static int w_pthread_rwlock_wrlock(pthread_rwlock_t *rw) {
    struct coil__tasklet *t = inside();
    if (!t) return pthread_rwlock_wrlock(rw);
    return acquire(t, rw, LOCK_RWLOCK, try_wrlock, COIL_FOREVER, false);
}

static int rwlock_until(pthread_rwlock_t *rw, try_fn try, clockid_t clk,
                        const struct timespec *abs) {
    int r = try(rw);
    if (r != EBUSY) return r;
    if (!ts_valid(abs)) return EINVAL;
    return acquire(inside(), rw, LOCK_RWLOCK, try, deadline_on(clk, abs), true);
}

static int w_pthread_rwlock_timedrdlock(pthread_rwlock_t *rw, const struct timespec *abs) {
    if (!inside()) return pthread_rwlock_timedrdlock(rw, abs);
    return rwlock_until(rw, try_rdlock, CLOCK_REALTIME, abs);
}

static int w_pthread_rwlock_timedwrlock(pthread_rwlock_t *rw, const struct timespec *abs) {
    if (!inside()) return pthread_rwlock_timedwrlock(rw, abs);
    return rwlock_until(rw, try_wrlock, CLOCK_REALTIME, abs);
}

static int w_pthread_rwlock_clockrdlock(pthread_rwlock_t *rw, clockid_t clk,
                                        const struct timespec *abs) {
    if (!inside() || (clk != CLOCK_REALTIME && clk != CLOCK_MONOTONIC))
        return pthread_rwlock_clockrdlock(rw, clk, abs);
    return rwlock_until(rw, try_rdlock, clk, abs);
}

static int w_pthread_rwlock_clockwrlock(pthread_rwlock_t *rw, clockid_t clk,
                                        const struct timespec *abs) {
    if (!inside() || (clk != CLOCK_REALTIME && clk != CLOCK_MONOTONIC))
        return pthread_rwlock_clockwrlock(rw, clk, abs);
    return rwlock_until(rw, try_wrlock, clk, abs);
}

/* Every waiter tries again: readers may all get it, or one writer. */
static int w_pthread_rwlock_unlock(pthread_rwlock_t *rw) {
    int r = pthread_rwlock_unlock(rw);
    struct coil__tasklet *t;
    if (r == 0 && (t = inside()) != NULL && wake_waiters(rw, true)) let_woken_run(t);
    return r;
}

/* ---- condition variables ------------------------------------------------ */

/*
 * Waits on c for the running tasklet t, which holds m: links a waiter on c
 * before m is released (a signal right after the unlock finds it), releases
 * m by the diverted unlock, parks, and takes m again by the parking path.
 * A signal from a plain thread, or from libc, wakes nobody: the park ends
 * after 32 ms at most, and returns as a spurious wake-up (which every
 * caller must expect of pthread_cond_wait). deadline: negative for none.
 * Returns 0, ETIMEDOUT, ECANCELED (timed waits only: a kill ends an untimed
 * wait as a spurious wake-up), or an error of unlocking m (EPERM: not the
 * holder; m is not released then); a relock's EOWNERDEAD.
 */
static int cond_wait(struct coil__tasklet *t, pthread_cond_t *c, pthread_mutex_t *m,
                     int64_t deadline, bool timed) {
    struct lock_waiter w;
    waiter_link(&w, t, c, LOCK_COND);
    int r = pthread_mutex_unlock(m);
    if (r != 0) {
        if (!waiter_take_back(&w)) waiter_park(t, &w, COIL_FOREVER);
        return r;
    }
    wake_waiters(m, false);
    int64_t until = coil_now() + retry_max;
    if (deadline >= 0 && deadline < until) until = deadline;
    int woke = t->killed && timed ? -ECANCELED : 0;
    if (woke == 0)
        woke = waiter_park(t, &w, until);
    else if (!waiter_take_back(&w))
        waiter_park(t, &w, COIL_FOREVER);
    r = acquire(t, m, LOCK_MUTEX, try_mutex, COIL_FOREVER, false);
    if (r != 0) return r;
    if (woke == -ECANCELED && timed) return ECANCELED;
    if (woke == -ETIMEDOUT && coil__deadline_passed(deadline)) return ETIMEDOUT;
    return 0;
}

static int w_pthread_cond_wait(pthread_cond_t *c, pthread_mutex_t *m) {
    struct coil__tasklet *t = inside();
    if (!t) return pthread_cond_wait(c, m);
    return cond_wait(t, c, m, COIL_FOREVER, false);
}

/* The clock a cond's pthread_cond_timedwait measures its time on: glibc
 * keeps it in bit 1 of __data.__wrefs (__PTHREAD_COND_CLOCK_MONOTONIC_MASK,
 * set by pthread_condattr_setclock(CLOCK_MONOTONIC)), and has no call to
 * read it back from the cond itself. */
static clockid_t cond_clock(const pthread_cond_t *c) {
#ifdef __GLIBC__
    return (__atomic_load_n(&c->__data.__wrefs, __ATOMIC_RELAXED) & 2) ? CLOCK_MONOTONIC
                                                                       : CLOCK_REALTIME;
#else
    (void)c;
    return CLOCK_REALTIME;
#endif
}

static int w_pthread_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m,
                                    const struct timespec *abs) {
    struct coil__tasklet *t = inside();
    if (!t) return pthread_cond_timedwait(c, m, abs);
    if (!ts_valid(abs)) return EINVAL;
    return cond_wait(t, c, m, deadline_on(cond_clock(c), abs), true);
}

static int w_pthread_cond_clockwait(pthread_cond_t *c, pthread_mutex_t *m, clockid_t clk,
                                    const struct timespec *abs) {
    struct coil__tasklet *t = inside();
    if (!t || (clk != CLOCK_REALTIME && clk != CLOCK_MONOTONIC))
        return pthread_cond_clockwait(c, m, clk, abs);
    if (!ts_valid(abs)) return EINVAL;
    return cond_wait(t, c, m, deadline_on(clk, abs), true);
}

/* libc's signal too: plain threads may wait on c as well (pthread lets a
 * signal wake more than one waiter). */
static int w_pthread_cond_signal(pthread_cond_t *c) {
    if (inside()) wake_waiters(c, false);
    return pthread_cond_signal(c);
}

static int w_pthread_cond_broadcast(pthread_cond_t *c) {
    if (inside()) wake_waiters(c, true);
    return pthread_cond_broadcast(c);
}

/* ---- semaphores --------------------------------------------------------- */

/* sem_wait's form of acquire's result: 0, or -1 with errno. */
static int sem_result(int r) {
    if (r == 0) return 0;
    errno = r;
    return -1;
}

static int w_sem_wait(sem_t *sem) {
    struct coil__tasklet *t = inside();
    if (!t) return sem_wait(sem);
    return sem_result(acquire(t, sem, LOCK_SEM, try_sem, COIL_FOREVER, true));
}

static int sem_until(sem_t *sem, clockid_t clk, const struct timespec *abs) {
    int r = try_sem(sem);
    if (r != EBUSY) return sem_result(r);
    if (!ts_valid(abs)) return sem_result(EINVAL);
    return sem_result(acquire(inside(), sem, LOCK_SEM, try_sem, deadline_on(clk, abs), true));
}

static int w_sem_timedwait(sem_t *sem, const struct timespec *abs) {
    if (!inside()) return sem_timedwait(sem, abs);
    return sem_until(sem, CLOCK_REALTIME, abs);
}

static int w_sem_clockwait(sem_t *sem, clockid_t clk, const struct timespec *abs) {
    if (!inside() || (clk != CLOCK_REALTIME && clk != CLOCK_MONOTONIC))
        return sem_clockwait(sem, clk, abs);
    return sem_until(sem, clk, abs);
}

static int w_sem_post(sem_t *sem) {
    int r = sem_post(sem);
    struct coil__tasklet *t;
    if (r == 0 && (t = inside()) != NULL && wake_waiters(sem, false)) let_woken_run(t);
    return r;
}

/* ---- the table the patcher (src/unix/install.c) diverts calls by ---------- */

#define WRAP(name)                                                                                 \
    { #name, (void *)w_##name }
const struct coil__wrap coil__lock_wraps[] = {
    WRAP(pthread_mutex_lock),
    WRAP(pthread_mutex_timedlock),
    WRAP(pthread_mutex_clocklock),
    WRAP(pthread_mutex_unlock),
    WRAP(pthread_rwlock_rdlock),
    WRAP(pthread_rwlock_wrlock),
    WRAP(pthread_rwlock_timedrdlock),
    WRAP(pthread_rwlock_timedwrlock),
    WRAP(pthread_rwlock_clockrdlock),
    WRAP(pthread_rwlock_clockwrlock),
    WRAP(pthread_rwlock_unlock),
    WRAP(pthread_cond_wait),
    WRAP(pthread_cond_timedwait),
    WRAP(pthread_cond_clockwait),
    WRAP(pthread_cond_signal),
    WRAP(pthread_cond_broadcast),
    WRAP(sem_wait),
    WRAP(sem_timedwait),
    WRAP(sem_clockwait),
    WRAP(sem_post),
};
const size_t coil__nlock_wraps = sizeof coil__lock_wraps / sizeof coil__lock_wraps[0];

/* ---- coil_dump ---------------------------------------------------------- */

void coil__lock_describe_wait(const struct coil__tasklet *t, FILE *out) {
    const struct lock_waiter *w = t->wait_obj;
    fprintf(out, " %p", w->addr);
}
