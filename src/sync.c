/*
 * Mutexes, condition variables, counting semaphores and wait groups for
 * tasklets: a wait parks the tasklet, never the thread.
 *
 * Every object starts with the same header (struct sync): its queue of
 * waiter records, longest waiting first, each in the waiting tasklet's
 * frame, linked exactly while its tasklet is parked on the object, as a
 * channel's are. A unit that frees up (a mutex unlocked, a semaphore unit
 * released) is handed to the first waiter directly: the waiter's wake-up is
 * its acquisition, and a tasklet that asks again meanwhile queues behind it
 * (FIFO, no barging).
 *
 * Across the schedulers of a group this is the channels' machinery (see
 * src/chan.c and docs/architecture.md, "Channels across schedulers"): an
 * object belongs to the scheduler that first uses it and is "local" (no lock,
 * no atomic read-modify-write) until the first use from another scheduler
 * asks the owner, by a message run between two tasklets, to make it "shared"
 * for good; a shared object is guarded by its spinlock, held for a few stores
 * and never across a switch; a parked tasklet's wait is taken by whoever wins
 * its wait_claim (a waker on another thread, or its own timeout or kill), and
 * a waker on another scheduler wakes it with a message (coil__wake_any).
 *
 * A mutex's holder keeps it in its own list (t->mutexes, touched only on the
 * holder's thread: a waiter handed the mutex links it there itself once it
 * runs), so that a tasklet ending with mutexes held gives each to its next
 * locker with -EOWNERDEAD (coil__sync_owner_died, from tasklet_exit).
 */
#include "internal.h"

#include <stdlib.h>

enum kind { MUTEX, COND, SEM, WG };

static const uint64_t live_magic[] = {
    0x786574756d2d6c69ull, /* MUTEX */
    0x646e6f632d2d6c69ull, /* COND */
    0x6d65732d2d2d6c69ull, /* SEM */
    0x67772d2d2d2d6c69ull, /* WG */
};
#define SYNC_DEAD 0x646165642d2d6c69ull

struct sync {
    uint64_t magic; /* live_magic[kind], or SYNC_DEAD once freed (atomic) */
    uint64_t owner; /* serial of the scheduler that uses it; 0 until first use (atomic) */
    int shared;     /* used from several schedulers of a group; written by the owner only */
    int lock;       /* a spinlock, while shared */
    struct coil__list waiters; /* struct waiter.link, longest waiting first */
    size_t nwaiters;
};

struct waiter {
    struct coil__link link; /* in its object's waiters */
    struct coil__tasklet *t;
    coil_id id; /* t's, for a mutex handed to it (t may be another thread's) */
    struct sync *obj;
    bool linked; /* shared object: read under its lock */
};

struct coil_mutex {
    struct sync h;
    struct coil__tasklet *holder; /* NULL when free */
    coil_id holder_id;
    bool owner_dead;        /* its last holder ended holding it */
    struct coil__link held; /* in holder->mutexes (the holder's thread only) */
};

struct coil_cond {
    struct sync h;
};

struct coil_sem {
    struct sync h;
    int64_t value; /* free units; 0 while tasklets wait */
};

struct coil_wg {
    struct sync h;
    int64_t count;
};

/* ---- the header: modes, locking, waiters ------------------------------- */

static int check(const struct sync *o, enum kind k) {
    if (!o) return -EINVAL;
    return __atomic_load_n(&o->magic, __ATOMIC_RELAXED) == live_magic[k] ? 0 : -EBADF;
}

static inline bool is_shared(const struct sync *o) {
    return __atomic_load_n(&o->shared, __ATOMIC_ACQUIRE);
}

static void promote_run(struct coil__sched *s, struct coil__msg *m) {
    struct coil__xcall *x = coil__container_of(m, struct coil__xcall, msg);
    struct sync *o = x->arg;
    if (__atomic_load_n(&o->magic, __ATOMIC_RELAXED) != SYNC_DEAD &&
        __atomic_load_n(&o->owner, __ATOMIC_RELAXED) == s->serial && !o->shared) {
        /* Published under the lock, which every later user takes. */
        coil__spin_lock(&o->lock);
        __atomic_store_n(&o->shared, 1, __ATOMIC_RELEASE);
        coil__spin_unlock(&o->lock);
    }
    coil__wake_any(x->caller, 0);
}

enum { LOCAL = 0, SHARED = 1 };

/* How tasklet t may use o: LOCAL, SHARED (take the lock), or -EXDEV; as
 * chan_mode in src/chan.c. */
static int sync_mode(struct sync *o, struct coil__tasklet *t) {
    const struct coil__sched *s = t->sched;
    uint64_t owner = __atomic_load_n(&o->owner, __ATOMIC_RELAXED);
    if (COIL_LIKELY(owner == s->serial))
        return __atomic_load_n(&o->shared, __ATOMIC_RELAXED) ? SHARED : LOCAL;
    if (!owner && __atomic_compare_exchange_n(&o->owner, &owner, s->serial, false, __ATOMIC_ACQ_REL,
                                              __ATOMIC_ACQUIRE))
        return LOCAL;
    struct coil__sched *os = coil__sched_by_serial(s, owner);
    if (!os) return -EXDEV;
    if (is_shared(o)) return SHARED;
    struct coil__xcall x = {.arg = o};
    coil__xcall(t, os, promote_run, &x);
    return SHARED;
}

/* The start of every call made in a tasklet: checks o, sets *tp and
 * *shared, and locks o if it is shared (leave() unlocks). */
static int enter(struct sync *o, enum kind k, struct coil__tasklet **tp, bool *shared) {
    int err = check(o, k);
    if (err) return err;
    struct coil__tasklet *t = coil__self();
    if (COIL_UNLIKELY(!t)) return -EPERM;
    int mode = sync_mode(o, t);
    if (COIL_UNLIKELY(mode < 0)) return mode;
    *tp = t;
    *shared = mode == SHARED;
    if (COIL_UNLIKELY(*shared)) {
        coil__spin_lock(&o->lock);
        if ((err = check(o, k)) != 0) {
            coil__spin_unlock(&o->lock);
            return err;
        }
    }
    return 0;
}

static inline void leave(struct sync *o, bool shared) {
    if (COIL_UNLIKELY(shared)) coil__spin_unlock(&o->lock);
}

static void waiter_link(struct sync *o, struct waiter *w, struct coil__tasklet *t) {
    *w = (struct waiter){.t = t, .id = t->id, .obj = o, .linked = true};
    __atomic_store_n(&t->wait_claim, 0, __ATOMIC_RELAXED);
    coil__list_push_back(&o->waiters, &w->link);
    o->nwaiters++;
}

static void waiter_unlink(struct sync *o, struct waiter *w) {
    coil__list_remove(&o->waiters, &w->link);
    o->nwaiters--;
    w->linked = false;
}

/* The longest waiting tasklet whose wait this caller may complete, taken
 * off the queue; NULL if none. On a shared object, a waiter whose wait
 * another thread has taken (its timeout or kill) is dropped on the way. */
static struct waiter *waiter_take(struct sync *o, bool shared) {
    struct waiter *w;
    while ((w = coil__list_entry(o->waiters.first, struct waiter, link)) != NULL) {
        waiter_unlink(o, w);
        if (!shared || coil__take_claim(w->t)) return w;
    }
    return NULL;
}

/* Drops the waiters whose tasklets another thread has taken (shared, locked). */
static void waiter_purge(struct sync *o) {
    struct coil__link *l = o->waiters.first;
    while (l) {
        struct coil__link *next = l->next;
        struct waiter *w = coil__container_of(l, struct waiter, link);
        if (__atomic_load_n(&w->t->wait_claim, __ATOMIC_ACQUIRE)) waiter_unlink(o, w);
        l = next;
    }
}

/* A timeout or kill of a parked tasklet. */
static bool unwait(struct coil__tasklet *t, int err) {
    (void)err;
    struct waiter *w = t->wait_obj;
    struct sync *o = w->obj;
    bool shared = is_shared(o);
    if (shared && !coil__take_claim(t)) return false; /* its waker's message is on its way */
    if (shared) coil__spin_lock(&o->lock);
    if (w->linked) waiter_unlink(o, w);
    if (shared) coil__spin_unlock(&o->lock);
    return true;
}

/* As in src/chan.c: a killed tasklet may still do what needs no waiting. */
static int would_wait(const struct coil__tasklet *t, int64_t deadline) {
    if (COIL_UNLIKELY(t->killed)) return -ECANCELED;
    return coil__deadline_passed(deadline) ? -ETIMEDOUT : 0;
}

/* Links a waiter for t, unlocks o, and parks until a waker or unwait. */
static int wait_on(struct sync *o, bool shared, struct coil__tasklet *t, enum coil__wait kind,
                   int64_t deadline) {
    struct waiter w;
    waiter_link(o, &w, t);
    leave(o, shared);
    return coil__park(t, kind, &w, 0, unwait, deadline);
}

/* Wakes, with result, the waiters taken off o into list l (each claimed).
 * Called once o is unlocked: a woken tasklet may free o at once. */
static void wake_list(struct coil__list *l, int result) {
    struct coil__link *x;
    while ((x = coil__list_pop_front(l)) != NULL)
        coil__wake_any(coil__container_of(x, struct waiter, link)->t, result);
}

static void *sync_alloc(size_t size, enum kind k) {
    int saved_errno = errno;
    struct sync *o = calloc(1, size);
    if (!o) {
        errno = saved_errno;
        return NULL;
    }
    o->magic = live_magic[k];
    return o;
}

/* coil_*_free: callable anywhere, as coil_chan_free. */
static int sync_free(struct sync *o, enum kind k) {
    int err = check(o, k);
    if (err) return err;
    struct coil__tasklet *t = coil__self();
    bool shared;
    if (t) {
        int mode = sync_mode(o, t);
        if (mode < 0) return mode;
        shared = mode == SHARED;
    } else {
        shared = is_shared(o);
    }
    if (shared) {
        coil__spin_lock(&o->lock);
        if ((err = check(o, k)) == 0) waiter_purge(o);
    }
    if (!err && (o->nwaiters || (k == MUTEX && ((struct coil_mutex *)o)->holder))) err = -EBUSY;
    if (!err) __atomic_store_n(&o->magic, SYNC_DEAD, __ATOMIC_RELAXED);
    leave(o, shared);
    if (!err) coil__quarantine_put(o);
    return err;
}

/* ---- mutex ------------------------------------------------------------- */

int coil_mutex_open(coil_mutex **out) {
    if (!out) return -EINVAL;
    return (*out = sync_alloc(sizeof(coil_mutex), MUTEX)) ? 0 : -ENOMEM;
}

int coil_mutex_free(coil_mutex *m) {
    return m ? sync_free(&m->h, MUTEX) : -EINVAL;
}

/* m is free: t takes it (o locked if shared); links it into t's list once
 * o is unlocked (mutex_held). */
static int mutex_take(coil_mutex *m, struct coil__tasklet *t) {
    m->holder = t;
    m->holder_id = t->id;
    if (COIL_LIKELY(!m->owner_dead)) return 0;
    m->owner_dead = false;
    return -EOWNERDEAD;
}

static void mutex_held(coil_mutex *m, struct coil__tasklet *t) {
    coil__list_push_back(&t->mutexes, &m->held);
}

int coil_mutex_lock_dl(coil_mutex *m, int64_t deadline) {
    struct coil__tasklet *t;
    bool shared;
    int res = enter(m ? &m->h : NULL, MUTEX, &t, &shared);
    if (res) return res;
    if (COIL_LIKELY(!m->holder)) {
        res = mutex_take(m, t);
        leave(&m->h, shared);
        mutex_held(m, t);
        return res;
    }
    res = m->holder == t ? -EDEADLK : would_wait(t, deadline);
    if (res) {
        leave(&m->h, shared);
        return res;
    }
    /* Its waker hands it the mutex (holder set) before waking it. */
    res = wait_on(&m->h, shared, t, COIL__WAIT_MUTEX, deadline);
    if (res == 0 || res == -EOWNERDEAD) mutex_held(m, t);
    return res;
}

int coil_mutex_lock(coil_mutex *m) {
    return coil_mutex_lock_dl(m, COIL_FOREVER);
}

int coil_mutex_trylock(coil_mutex *m) {
    struct coil__tasklet *t;
    bool shared;
    int res = enter(m ? &m->h : NULL, MUTEX, &t, &shared);
    if (res) return res;
    if (!m->holder) {
        res = mutex_take(m, t);
        leave(&m->h, shared);
        mutex_held(m, t);
        return res;
    }
    res = m->holder == t ? -EDEADLK : -EBUSY;
    leave(&m->h, shared);
    return res;
}

/* Gives m (locked if shared) to its first waiter, or frees it; returns the
 * waiter's tasklet, to be woken once m is unlocked. */
static struct coil__tasklet *mutex_pass(coil_mutex *m, bool shared, bool owner_died) {
    struct waiter *w = waiter_take(&m->h, shared);
    m->holder = w ? w->t : NULL;
    m->holder_id = w ? w->id : 0;
    if (owner_died && !w) m->owner_dead = true;
    return m->holder;
}

int coil_mutex_unlock(coil_mutex *m) {
    struct coil__tasklet *t;
    bool shared;
    int res = enter(m ? &m->h : NULL, MUTEX, &t, &shared);
    if (res) return res;
    if (COIL_UNLIKELY(m->holder != t)) {
        leave(&m->h, shared);
        return -EPERM;
    }
    coil__list_remove(&t->mutexes, &m->held);
    struct coil__tasklet *next = mutex_pass(m, shared, false);
    leave(&m->h, shared);
    if (next) coil__wake_any(next, 0);
    return 0;
}

void coil__sync_owner_died(struct coil__tasklet *t) {
    struct coil__link *l;
    while ((l = coil__list_pop_front(&t->mutexes)) != NULL) {
        coil_mutex *m = coil__container_of(l, coil_mutex, held);
        /* t locked m, so m is its scheduler's or shared: no mode to ask. */
        bool shared = is_shared(&m->h);
        if (shared) coil__spin_lock(&m->h.lock);
        struct coil__tasklet *next = mutex_pass(m, shared, true);
        leave(&m->h, shared);
        if (next) coil__wake_any(next, -EOWNERDEAD);
    }
}

/* ---- condition variable ------------------------------------------------ */

int coil_cond_open(coil_cond **out) {
    if (!out) return -EINVAL;
    return (*out = sync_alloc(sizeof(coil_cond), COND)) ? 0 : -ENOMEM;
}

int coil_cond_free(coil_cond *c) {
    return c ? sync_free(&c->h, COND) : -EINVAL;
}

int coil_cond_wait(coil_cond *c, coil_mutex *m, int64_t deadline) {
    struct coil__tasklet *t;
    bool shared;
    int res = check(c ? &c->h : NULL, COND);
    if (res) return res;
    if ((res = enter(m ? &m->h : NULL, MUTEX, &t, &shared)) != 0) return res;
    bool mine = m->holder == t;
    leave(&m->h, shared);
    if (!mine) return -EPERM;
    if ((res = enter(&c->h, COND, &t, &shared)) != 0) return res;
    if (COIL_UNLIKELY(t->killed)) {
        leave(&c->h, shared);
        coil_mutex_unlock(m); /* -ECANCELED: m is not held */
        return -ECANCELED;
    }
    if (coil__deadline_passed(deadline)) {
        leave(&c->h, shared);
        return -ETIMEDOUT;
    }
    /* Linked before m is unlocked, so a signal given once m is free finds
     * it; a waker on another thread wakes it by a message, which this
     * scheduler runs only once it has parked. */
    struct waiter w;
    waiter_link(&c->h, &w, t);
    leave(&c->h, shared);
    coil_mutex_unlock(m);
    res = coil__park(t, COIL__WAIT_COND, &w, 0, unwait, deadline);
    if (res == -ECANCELED) return res;
    int lres = coil_mutex_lock(m);
    if (lres == -ECANCELED) {
        /* Killed after a signal reached it: another waiter gets it. */
        if (res == 0) coil_cond_signal(c);
        return lres;
    }
    return lres ? lres : res;
}

static int cond_wake(coil_cond *c, bool all) {
    struct coil__tasklet *t;
    bool shared;
    int res = enter(c ? &c->h : NULL, COND, &t, &shared);
    if (res) return res;
    struct coil__list woken = {0};
    struct waiter *w;
    while ((w = waiter_take(&c->h, shared)) != NULL) {
        coil__list_push_back(&woken, &w->link);
        if (!all) break;
    }
    leave(&c->h, shared);
    wake_list(&woken, 0);
    return 0;
}

int coil_cond_signal(coil_cond *c) {
    return cond_wake(c, false);
}

int coil_cond_broadcast(coil_cond *c) {
    return cond_wake(c, true);
}

/* ---- semaphore --------------------------------------------------------- */

int coil_sem_open(coil_sem **out, int64_t value) {
    if (!out || value < 0 || value > COIL_SEM_MAX) return -EINVAL;
    coil_sem *s = sync_alloc(sizeof(coil_sem), SEM);
    if (!s) return -ENOMEM;
    s->value = value;
    *out = s;
    return 0;
}

int coil_sem_free(coil_sem *s) {
    return s ? sync_free(&s->h, SEM) : -EINVAL;
}

int coil_sem_acquire(coil_sem *s, int64_t deadline) {
    struct coil__tasklet *t;
    bool shared;
    int res = enter(s ? &s->h : NULL, SEM, &t, &shared);
    if (res) return res;
    if (s->value > 0) { /* units are free only while nobody waits */
        s->value--;
        leave(&s->h, shared);
        return 0;
    }
    if ((res = would_wait(t, deadline)) != 0) {
        leave(&s->h, shared);
        return res;
    }
    return wait_on(&s->h, shared, t, COIL__WAIT_SEM, deadline); /* 0: handed a unit */
}

int coil_sem_tryacquire(coil_sem *s) {
    struct coil__tasklet *t;
    bool shared;
    int res = enter(s ? &s->h : NULL, SEM, &t, &shared);
    if (res) return res;
    if (s->value > 0)
        s->value--;
    else
        res = -EAGAIN;
    leave(&s->h, shared);
    return res;
}

int coil_sem_release(coil_sem *s) {
    struct coil__tasklet *t;
    bool shared;
    int res = enter(s ? &s->h : NULL, SEM, &t, &shared);
    if (res) return res;
    struct waiter *w = s->h.nwaiters ? waiter_take(&s->h, shared) : NULL;
    struct coil__tasklet *next = w ? w->t : NULL;
    if (!next) {
        if (s->value >= COIL_SEM_MAX)
            res = -EOVERFLOW;
        else
            s->value++;
    }
    leave(&s->h, shared);
    if (next) coil__wake_any(next, 0);
    return res;
}

int64_t coil_sem_value(coil_sem *s) {
    struct coil__tasklet *t;
    bool shared;
    int res = enter(s ? &s->h : NULL, SEM, &t, &shared);
    if (res) return res;
    int64_t v = s->value;
    leave(&s->h, shared);
    return v;
}

/* ---- wait group -------------------------------------------------------- */

int coil_wg_open(coil_wg **out) {
    if (!out) return -EINVAL;
    return (*out = sync_alloc(sizeof(coil_wg), WG)) ? 0 : -ENOMEM;
}

int coil_wg_free(coil_wg *wg) {
    return wg ? sync_free(&wg->h, WG) : -EINVAL;
}

int coil_wg_add(coil_wg *wg, int64_t delta) {
    struct coil__tasklet *t;
    bool shared;
    int res = enter(wg ? &wg->h : NULL, WG, &t, &shared);
    if (res) return res;
    int64_t count;
    struct coil__list woken = {0};
    if (__builtin_add_overflow(wg->count, delta, &count) || count < 0) {
        res = -EINVAL;
    } else {
        wg->count = count;
        struct waiter *w;
        if (count == 0)
            while ((w = waiter_take(&wg->h, shared)) != NULL)
                coil__list_push_back(&woken, &w->link);
    }
    leave(&wg->h, shared);
    wake_list(&woken, 0);
    return res;
}

int coil_wg_done(coil_wg *wg) {
    return coil_wg_add(wg, -1);
}

int coil_wg_wait(coil_wg *wg, int64_t deadline) {
    struct coil__tasklet *t;
    bool shared;
    int res = enter(wg ? &wg->h : NULL, WG, &t, &shared);
    if (res) return res;
    if (wg->count == 0 || (res = would_wait(t, deadline)) != 0) {
        leave(&wg->h, shared);
        return res;
    }
    return wait_on(&wg->h, shared, t, COIL__WAIT_WG, deadline);
}

/* ---- dump -------------------------------------------------------------- */

void coil__sync_describe_wait(const struct coil__tasklet *t, FILE *out) {
    const struct waiter *w = t->wait_obj;
    struct sync *o = w->obj;
    bool shared = is_shared(o);
    if (shared) coil__spin_lock(&o->lock);
    fprintf(out, " %p (", (void *)o);
    switch (t->wait_kind) {
    case COIL__WAIT_MUTEX: {
        const coil_mutex *m = (const coil_mutex *)o;
        fprintf(out, "held by tasklet %lld, ", (long long)m->holder_id);
        break;
    }
    case COIL__WAIT_WG: fprintf(out, "counter %lld, ", (long long)((coil_wg *)o)->count); break;
    default: break;
    }
    fprintf(out, "%zu waiting%s)", o->nwaiters, shared ? ", shared" : "");
    if (shared) coil__spin_unlock(&o->lock);
}
