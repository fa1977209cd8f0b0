/*
 * The scheduler: tasklets, the run queue, spawn/yield/sleep/join/kill, and
 * the loop that alternates "run what is ready" with "wait for timers and I/O".
 *
 * Switching. A tasklet that parks or yields switches directly to the next
 * runnable tasklet, without a detour through the scheduler's own context,
 * until the round's budget is spent; then control returns to the scheduler
 * loop (coil_run's stack), which fires timers, polls the backend and starts
 * the next round. So a busy set of tasklets cannot starve timers or I/O, and
 * a channel handoff costs one switch, not two.
 *
 * Exit. A finished tasklet cannot unmap the stack it runs on: it leaves
 * itself in s->reap and the next context to run releases it right after the
 * switch (after_switch).
 */
#include "internal.h"

#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

__thread struct coil__sched *coil__sched_cur COIL__TLS_IE;
static atomic_uint_fast64_t sched_serial;

/* Direct switches a round allows at least, however short the run queue. */
#define BUDGET_MIN 64

void coil__panic(const char *file, int line, const char *what) {
    fprintf(stderr, "coil: broken invariant: %s (%s:%d)\n", what, file, line);
    COIL__COVERAGE_DUMP();
    abort();
}

int64_t coil_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * COIL_SEC + ts.tv_nsec;
}

/* ---- id -> tasklet map: open addressing, linear probing, key 0 = empty --- */

static size_t id_slot(coil_id id, size_t cap) {
    return (size_t)(((uint64_t)id * 0x9E3779B97F4A7C15ull) >> 17) & (cap - 1);
}

static int ids_reserve(struct coil__sched *s) {
    if ((s->ids.len + 1) * 2 <= s->ids.cap) return 0;
    size_t cap = s->ids.cap ? s->ids.cap * 2 : 256;
    uint64_t *keys = calloc(cap, sizeof *keys);
    struct coil__tasklet **vals = malloc(cap * sizeof *vals);
    if (!keys || !vals) {
        free(keys);
        free(vals);
        return -ENOMEM;
    }
    for (size_t i = 0; i < s->ids.cap; i++) {
        if (!s->ids.keys[i]) continue;
        size_t j = id_slot((coil_id)s->ids.keys[i], cap);
        while (keys[j])
            j = (j + 1) & (cap - 1);
        keys[j] = s->ids.keys[i];
        vals[j] = s->ids.vals[i];
    }
    free(s->ids.keys);
    free(s->ids.vals);
    s->ids.keys = keys;
    s->ids.vals = vals;
    s->ids.cap = cap;
    return 0;
}

static void ids_put(struct coil__sched *s, struct coil__tasklet *t) {
    size_t mask = s->ids.cap - 1, i = id_slot(t->id, s->ids.cap);
    while (s->ids.keys[i])
        i = (i + 1) & mask;
    s->ids.keys[i] = (uint64_t)t->id;
    s->ids.vals[i] = t;
    s->ids.len++;
}

static struct coil__tasklet *ids_get(const struct coil__sched *s, coil_id id) {
    if (id <= 0 || !s->ids.cap) return NULL;
    size_t mask = s->ids.cap - 1, i = id_slot(id, s->ids.cap);
    for (; s->ids.keys[i]; i = (i + 1) & mask)
        if (s->ids.keys[i] == (uint64_t)id) return s->ids.vals[i];
    return NULL;
}

/* Deletion with backward shift, so that lookups never need tombstones. */
static void ids_del(struct coil__sched *s, coil_id id) {
    size_t mask = s->ids.cap - 1, i = id_slot(id, s->ids.cap);
    while (s->ids.keys[i] != (uint64_t)id) {
        COIL_ASSERT(s->ids.keys[i], "a live tasklet is in the id map");
        i = (i + 1) & mask;
    }
    for (size_t j = (i + 1) & mask; s->ids.keys[j]; j = (j + 1) & mask) {
        size_t home = id_slot((coil_id)s->ids.keys[j], s->ids.cap);
        /* Move j into the hole at i unless its home lies cyclically in (i, j]. */
        if (((j - home) & mask) >= ((j - i) & mask)) {
            s->ids.keys[i] = s->ids.keys[j];
            s->ids.vals[i] = s->ids.vals[j];
            i = j;
        }
    }
    s->ids.keys[i] = 0;
    s->ids.len--;
}

void coil__interrupt(struct coil__tasklet *t, int err) {
    if (t->state != COIL__WAITING) return;
    /* Its deadline has done its work (or no longer matters after a kill):
     * disarmed first, so that a wait that must go on until a completion
     * (unwait returns false) is not found expired again and again. */
    coil__timer_disarm(&t->sched->timers, &t->timer);
    if (t->unwait && !t->unwait(t, err)) return; /* the completion will wake it */
    coil__wake(t, err);
}

/* ---- tasklet life ------------------------------------------------------- */

__attribute__((noreturn)) static void tasklet_exit(struct coil__sched *s, struct coil__tasklet *t) {
    struct coil__link *l;
    if (COIL_UNLIKELY(t->mutexes.first)) coil__sync_owner_died(t);
    while ((l = coil__list_pop_front(&t->joiners)) != NULL) {
        struct coil__joiner *j = coil__container_of(l, struct coil__joiner, link);
        j->linked = false;
        /* A join of a group's deadlock cycle whose breaking message has not
         * come yet: broken all the same (its target ended only because its
         * own join on the cycle was broken). */
        coil__wake_any(j->t,
                       __atomic_load_n(&j->t->deadlock_cycle, __ATOMIC_RELAXED) ? -EDEADLK : 0);
    }
    ids_del(s, t->id);
    coil__timer_remove(&s->timers, &t->timer);
    coil__list_remove(&s->all, &t->all);
    s->nlive--;
    if (s->group) coil__group_tasklet_ended(s);
    t->state = COIL__DONE;
    s->reap = t;
    struct coil__tasklet *next = NULL;
    if (s->budget > 0 && (next = coil__runq_pop(s)) != NULL)
        s->budget--;
    else
        next = &s->root;
    coil__switch_to(s, t, next);
    coil__panic(__FILE__, __LINE__, "a finished tasklet is never resumed");
}

static void tasklet_entry(void *p) {
    struct coil__tasklet *t = p;
    struct coil__sched *s = t->sched;
#if COIL_ASAN
    const void *lo;
    size_t size;
    __sanitizer_finish_switch_fiber(NULL, &lo, &size);
    /* The very first switch into a tasklet comes from the scheduler: learn
     * the bounds of the thread's own stack for the switches back to it. */
    if (!s->root_stack_lo) {
        s->root_stack_lo = lo;
        s->root_stack_size = size;
    }
#endif
    coil__after_switch(s);
    t->fn(t->arg);
    /* On its own stack, before its joiners hear of its end: a joiner that
     * frees what a destructor uses frees it after the destructor. */
    coil__locals_run(t);
    tasklet_exit(s, t);
}

/* ---- tasklet records ----------------------------------------------------- */

/* Records are carved from chunks of RECORDS_PER_CHUNK, each record 64-byte
 * aligned, and kept on a free list when their tasklet (and its stack) goes.
 * So the hot first cache lines of a thousand connections' tasklets sit in
 * 63 pages (16 records to a 4 KiB page), where a record at the top of its
 * stack took a page, and a TLB entry, of its own, touched by every park and
 * wake-up (the echo server on epoll at 1,000 connections: docs/benchmarks.md).
 * Chunks stay until coil_run ends: the peak number of tasklets' records,
 * 256 bytes each. */
#define RECORDS_PER_CHUNK 64

struct record_chunk {
    struct coil__slink link; /* in s->records.chunks */
};

static size_t record_size(void) {
    return (sizeof(struct coil__tasklet) + 63) & ~(size_t)63;
}

struct coil__tasklet *coil__record_get(struct coil__sched *s) {
    if (coil__slist_empty(&s->records.free)) {
        size_t rs = record_size();
        /* The header, then room to round up to 64 bytes, then the records. */
        struct record_chunk *c = malloc(sizeof *c + 63 + RECORDS_PER_CHUNK * rs);
        if (!c) return NULL;
        coil__slist_push_front(&s->records.chunks, &c->link);
        uintptr_t at = ((uintptr_t)(c + 1) + 63) & ~(uintptr_t)63;
        for (size_t i = RECORDS_PER_CHUNK; i-- > 0;) {
            struct coil__tasklet *t = (struct coil__tasklet *)(at + i * rs);
            coil__slist_push_front(&s->records.free, &t->runq);
        }
    }
    struct coil__tasklet *t =
        coil__container_of(coil__slist_pop_front(&s->records.free), struct coil__tasklet, runq);
    memset(t, 0, sizeof *t);
    return t;
}

void coil__record_put(struct coil__sched *s, struct coil__tasklet *t) {
    coil__slist_push_front(&s->records.free, &t->runq);
}

static void records_free(struct coil__sched *s) {
    struct coil__slink *l;
    while ((l = coil__slist_pop_front(&s->records.chunks)) != NULL)
        free(coil__container_of(l, struct record_chunk, link));
    s->records.free = (struct coil__slist){0};
}

static coil_id spawn(struct coil__sched *s, coil_fn fn, void *arg, const coil_spawn_opts *opts) {
    if (!fn) return -EINVAL;
    size_t size = COIL_STACK_DEFAULT;
    if (opts && opts->stack_size) {
        if (opts->stack_size < COIL_STACK_MIN || opts->stack_size > COIL_STACK_MAX) return -EINVAL;
        size = (opts->stack_size + s->page - 1) & ~(s->page - 1);
    }
    int err = ids_reserve(s);
    if (!err) err = coil__timers_reserve(&s->timers, s->nlive + 1);
    if (err) return err;
    struct coil__tasklet *t = coil__stack_get(s, size, &err);
    if (!t) return err;
    t->sched = s;
    /* Ids of a group: scheduler i of n hands out i+1, n+i+1, 2n+i+1, ...
     * (one scheduler: 1, 2, 3, ...), so an id names its scheduler. */
    t->id = s->group ? (s->next_id++ - 1) * (coil_id)s->group->n + s->index + 1 : s->next_id++;
    t->fn = fn;
    t->arg = arg;
    t->timer.index = COIL__TIMER_IDLE;
    t->timer.armed = false;
    t->killed = s->killing_all; /* born into a shutdown: it must not hold it up */
    if (opts) t->user = opts->user;
    if (opts && opts->name) {
        size_t len = strnlen(opts->name, sizeof t->name - 1);
        memcpy(t->name, opts->name, len);
        t->name[len] = '\0';
    }
    coil__ctx_make(&t->ctx, coil__stack_hi(t), tasklet_entry, t);
#if COIL_TSAN
    /* Its own fiber, so that TSan keeps a shadow call stack per tasklet and
     * orders its accesses by the switches (coil__switch_to). */
    t->tsan_fiber = __tsan_create_fiber(0);
    if (t->name[0]) __tsan_set_fiber_name(t->tsan_fiber, t->name);
#endif
    ids_put(s, t);
    coil__list_push_back(&s->all, &t->all);
    s->nlive++;
    if (s->group) coil__group_tasklet_born(s);
    coil__runq_push(s, t);
    return t->id;
}

coil_id coil__spawn_here(struct coil__sched *s, coil_fn fn, void *arg,
                         const coil_spawn_opts *opts) {
    int saved_errno = errno;
    coil_id id = spawn(s, fn, arg, opts);
    errno = saved_errno;
    return id;
}

coil_id coil_spawn(coil_fn fn, void *arg, const coil_spawn_opts *opts) {
    if (!fn) return -EINVAL;
    if (!coil__self()) return -EPERM;
    int saved_errno = errno; /* mmap and friends may set it on failure */
    coil_id id = spawn(coil__sched_cur, fn, arg, opts);
    errno = saved_errno;
    return id;
}

int coil_yield(void) {
    struct coil__tasklet *t;
    int err = coil__enter(&t);
    if (err) return err;
    coil__runq_push(t->sched, t);
    coil__schedule(t->sched, t);
    return t->killed ? -ECANCELED : 0;
}

int coil_sleep_until(int64_t deadline) {
    struct coil__tasklet *t;
    if (deadline < 0) return -EINVAL;
    int err = coil__enter(&t);
    if (err) return err;
    if (deadline <= coil_now()) return 0;
    err = coil__park(t, COIL__WAIT_SLEEP, NULL, 0, NULL, deadline);
    return err == -ETIMEDOUT ? 0 : err;
}

int coil_sleep(int64_t ns) {
    if (ns <= 0) {
        struct coil__tasklet *t;
        return coil__enter(&t);
    }
    int64_t now = coil_now();
    /* Saturate: a duration past the end of time is an endless sleep. */
    return coil_sleep_until(ns > INT64_MAX - now ? INT64_MAX : now + ns);
}

static bool join_unwait(struct coil__tasklet *t, int err) {
    (void)err;
    struct coil__joiner *j = t->wait_obj;
    coil__list_remove(&j->target->joiners, &j->link);
    return true;
}

/* Whether id was handed out by s (ids of a group: see spawn). */
static bool id_issued(const struct coil__sched *s, coil_id id) {
    if (id <= 0) return false;
    coil_id seq = s->group ? (id - 1) / (coil_id)s->group->n + 1 : id;
    return seq < s->next_id;
}

/* A join of a tasklet of another scheduler: that scheduler links j into its
 * target's joiners (or answers at once), and takes it off again when the
 * joiner's deadline passes first (the joiner stays parked until then, since
 * j lives in its frame). Each runs on the target's thread, so the target's
 * exit, the link and the unlink are ordered, and the joiner is woken once. */
static void join_link_remote(struct coil__sched *s, struct coil__msg *m) {
    struct coil__joiner *j = coil__container_of(m, struct coil__joiner, link_msg);
    struct coil__tasklet *target = ids_get(s, j->id);
    if (!target) {
        coil__wake_any(j->t, id_issued(s, j->id) ? 0 : -ESRCH);
        return;
    }
    j->target = target;
    j->linked = true;
    coil__list_push_front(&target->joiners, &j->link);
}

static void join_unlink_remote(struct coil__sched *s, struct coil__msg *m) {
    (void)s;
    struct coil__joiner *j = coil__container_of(m, struct coil__joiner, unlink_msg);
    if (!j->linked) return; /* the target ended: its exit has woken the joiner */
    j->linked = false;
    coil__list_remove(&j->target->joiners, &j->link);
    coil__wake_any(j->t, j->unlink_err);
}

static bool join_unwait_remote(struct coil__tasklet *t, int err) {
    struct coil__joiner *j = t->wait_obj;
    if (j->unlinking) return false; /* asked once already: the node is in flight */
    j->unlinking = true;
    j->unlink_err = err;
    j->unlink_msg.fn = join_unlink_remote;
    coil__msg_post(coil__sched_of(t->sched, j->id), &j->unlink_msg);
    return false; /* the target's scheduler wakes t */
}

/* A join is the wait of cleanup ("spawn, join, free"): a kill does not cut
 * it short, and a killed tasklet may start one (see coil_join in coil.h). */
int coil_join(coil_id id, int64_t deadline) {
    struct coil__tasklet *t = coil__self();
    if (!t) return -EPERM;
    struct coil__sched *s = t->sched;
    if (id == t->id) return -EDEADLK;
    struct coil__sched *owner = s->group ? coil__sched_of(s, id) : s;
    if (!owner) return -ESRCH;
    if (owner != s) {
        if (coil__deadline_passed(deadline)) return -ETIMEDOUT;
        struct coil__joiner j = {.t = t, .id = id};
        j.link_msg.fn = join_link_remote;
        coil__msg_post(owner, &j.link_msg);
        int rc = coil__park(t, COIL__WAIT_JOIN, &j, 0, join_unwait_remote, deadline);
        /* a later join is on no cycle until the detector says so again */
        __atomic_store_n(&t->deadlock_cycle, false, __ATOMIC_RELAXED);
        return rc;
    }
    struct coil__tasklet *target = ids_get(s, id);
    if (!target) return id_issued(s, id) ? 0 : -ESRCH;
    if (coil__deadline_passed(deadline)) return -ETIMEDOUT;
    struct coil__joiner j = {.t = t, .target = target, .id = id};
    coil__list_push_front(&target->joiners, &j.link);
    int rc = coil__park(t, COIL__WAIT_JOIN, &j, 0, join_unwait, deadline);
    if (COIL_UNLIKELY(s->group)) __atomic_store_n(&t->deadlock_cycle, false, __ATOMIC_RELAXED);
    return rc;
}

/* Marks t killed and cancels the wait it is in, unless that is a join: a
 * killed tasklet still waits for the tasklets it joins (cleanup must be able
 * to finish), bounded by the join's own deadline. */
static void kill_one(struct coil__tasklet *t) {
    t->killed = true;
    if (t->wait_kind != COIL__WAIT_JOIN) coil__interrupt(t, -ECANCELED);
}

void coil__kill(struct coil__tasklet *t) {
    kill_one(t);
}

struct coil__tasklet *coil__tasklet_get(const struct coil__sched *s, coil_id id) {
    return ids_get(s, id);
}

static void kill_remote(struct coil__sched *s, struct coil__msg *m) {
    struct coil__xcall *x = coil__container_of(m, struct coil__xcall, msg);
    struct coil__tasklet *t = ids_get(s, x->value);
    if (t) kill_one(t);
    coil__wake_any(x->caller, t ? 0 : -ESRCH);
}

int coil_kill(coil_id id) {
    struct coil__tasklet *self = coil__self();
    if (!self) return -EPERM;
    struct coil__sched *s = self->sched;
    if (s->group) {
        struct coil__sched *owner = coil__sched_of(s, id);
        if (!owner) return -ESRCH;
        if (owner != s) {
            struct coil__xcall x = {.value = id};
            return coil__xcall(self, owner, kill_remote, &x);
        }
    }
    struct coil__tasklet *t = ids_get(s, id);
    if (!t) return -ESRCH;
    kill_one(t);
    return 0;
}

int coil_killed(void) {
    struct coil__tasklet *t = coil__self();
    return t && t->killed;
}

coil_id coil_self(void) {
    struct coil__tasklet *t = coil__self();
    return t ? t->id : 0;
}

const char *coil_name(coil_id id) {
    struct coil__sched *s = coil__sched_cur;
    struct coil__tasklet *t = s ? ids_get(s, id) : NULL;
    return t ? t->name : NULL;
}

/* ---- shutdown settings (process-wide) ----------------------------------- */

static int shutdown_mode = COIL_SIGNALS_IF_DEFAULT;
static int64_t shutdown_grace = 10 * COIL_SEC;

int coil_set_shutdown_signals(int mode) {
    if (mode != COIL_SIGNALS_IF_DEFAULT && mode != COIL_SIGNALS_TAKE && mode != COIL_SIGNALS_LEAVE)
        return -EINVAL;
    __atomic_store_n(&shutdown_mode, mode, __ATOMIC_RELAXED);
    return 0;
}

int coil__shutdown_mode(void) {
    return __atomic_load_n(&shutdown_mode, __ATOMIC_RELAXED);
}

int coil_set_shutdown_grace(int64_t ns) {
    __atomic_store_n(&shutdown_grace, ns < 0 ? (int64_t)-1 : ns, __ATOMIC_RELAXED);
    return 0;
}

int64_t coil__shutdown_grace(void) {
    return __atomic_load_n(&shutdown_grace, __ATOMIC_RELAXED);
}

/* ---- the scheduler loop ------------------------------------------------ */

static void fire_timers(struct coil__sched *s, int64_t now) {
    struct coil__timer *tm;
    while ((tm = coil__timers_expire(&s->timers, now)) != NULL)
        coil__interrupt(coil__container_of(tm, struct coil__tasklet, timer), -ETIMEDOUT);
}

static void kill_all(struct coil__sched *s) {
    s->killing_all = true;
    coil__list_each(l, &s->all) kill_one(coil__container_of(l, struct coil__tasklet, all));
}

static struct coil__tasklet *join_target(const struct coil__tasklet *t) {
    if (t->state != COIL__WAITING || t->wait_kind != COIL__WAIT_JOIN) return NULL;
    return ((const struct coil__joiner *)t->wait_obj)->target;
}

const struct coil__tasklet *coil__join_target(const struct coil__tasklet *t) {
    return join_target(t);
}

/* Whether following t's join target, and that one's, comes back to t; the
 * chain also goes through a scope's wait to each of its members (a cycle
 * through a scope's waiter can only be broken at one of its joins: the
 * wait goes on until its members end). At most a few times `live` steps
 * (the tasklets there are). In a group the chain may cross schedulers: only
 * the detector follows it then, while every scheduler is stalled
 * (coil__group_find_cycles). */
static bool join_on_cycle(const struct coil__tasklet *t, size_t live) {
    size_t budget = 4 * live;
    return coil__wait_reaches(join_target(t), t, true, &budget);
}

/* Something outside the run queue will still wake a tasklet: an op in the
 * backend, an offload job (the pool's, whatever the backend), or a signal
 * that a tasklet waits for (another process may send it at any time). */
static bool waking_pending(const struct coil__sched *s) {
    return s->offload_pending > 0 || s->backend->busy(s) || !coil__list_empty(&s->sigwaiters);
}

static void deadlock_report(struct coil__sched *s) {
    flockfile(stderr);
    if (s->group)
        fprintf(stderr, "coil: deadlock: scheduler %u of %u:\n", s->index, s->group->n);
    else
        fprintf(stderr, "coil: deadlock: every tasklet is waiting and nothing can wake them\n");
    coil__dump_sched(s, stderr);
    fflush(stderr);
    funlockfile(stderr);
}

/* Interrupts the joins marked as lying on a cycle. On one scheduler the
 * marks are cleared here; in a group they stay until the detector's next
 * pass, since a target on another scheduler that ends reads them (see
 * tasklet_exit). */
static void break_cycles(struct coil__sched *s) {
    coil__list_each(l, &s->all) {
        struct coil__tasklet *t = coil__container_of(l, struct coil__tasklet, all);
        if (__atomic_load_n(&t->deadlock_cycle, __ATOMIC_RELAXED)) {
            if (!s->group) t->deadlock_cycle = false;
            coil__interrupt(t, -EDEADLK);
        }
    }
}

/* Every live tasklet waits, no timer is armed and no I/O is in flight: nothing
 * can ever wake them. Report it like Go's "all goroutines are asleep", then
 * kill them all so that they unwind through their own cleanup. A kill leaves
 * joins waiting; if only joins are left (tasklets joining each other, or a
 * killed joiner whose target is stuck in such a cycle), nothing else can end
 * them: they return -EDEADLK. */
static void deadlock(struct coil__sched *s) {
    if (!s->deadlock) {
        deadlock_report(s);
        s->deadlock = true;
        kill_all(s);
        if (s->runq.len || waking_pending(s)) return;
    }
    /* Every tasklet left waits in a join (any other wait was cancelled or is
     * in the backend, which is then busy): the targets lead into a cycle.
     * Only the joins on a cycle are broken, so that a tasklet joining one of
     * them still waits until that one has finished its cleanup. */
    coil__list_each(l, &s->all) {
        struct coil__tasklet *t = coil__container_of(l, struct coil__tasklet, all);
        t->deadlock_cycle = join_on_cycle(t, s->nlive);
    }
    break_cycles(s);
}

/* A group's deadlock, step by step: the detector (src/group.c) found every
 * scheduler stalled with no message in flight and bumped deadlock_gen; each
 * scheduler then takes the step on its own thread. The first reports and
 * kills, as on one scheduler; a later one breaks the joins the detector
 * marked as lying on a cycle. */
void coil__sched_deadlock_step(struct coil__sched *s) {
    if (!s->deadlock) {
        s->deadlock = true;
        deadlock_report(s);
        kill_all(s);
    } else {
        break_cycles(s);
    }
}

/* The detector's second step: with every scheduler of g stalled (their
 * tasklets cannot change), marks the joins that lie on a cycle, across
 * schedulers. */
void coil__group_find_cycles(struct coil__group *g) {
    size_t live = __atomic_load_n(&g->nlive, __ATOMIC_RELAXED);
    for (unsigned i = 0; i < g->n; i++)
        coil__list_each(l, &g->scheds[i]->all) {
            struct coil__tasklet *t = coil__container_of(l, struct coil__tasklet, all);
            __atomic_store_n(&t->deadlock_cycle, join_on_cycle(t, live), __ATOMIC_RELAXED);
        }
}

/* The tasklets did not finish within the grace after a shutdown signal:
 * say who holds it up, then end the process as the signal would have. */
__attribute__((noreturn)) static void shutdown_overdue(struct coil__sched *s) {
    int sig = __atomic_load_n(&coil__shutdown_signo, __ATOMIC_RELAXED);
    fprintf(stderr,
            "coil: shutdown: %zu tasklet(s) still running %.1f s after the signal; ending the "
            "process as signal %d would\n",
            s->nlive, (double)coil__shutdown_grace() / COIL_SEC, sig);
    coil__dump_sched(s, stderr);
    fflush(stderr);
    coil__die_by_signal(sig);
}

static void loop(struct coil__sched *s) {
    while (s->nlive > 0 || (s->group && coil__group_live(s))) {
        unsigned dumps = __atomic_load_n(&coil__dump_requests, __ATOMIC_RELAXED);
        if (COIL_UNLIKELY(dumps != s->dump_seen)) {
            s->dump_seen = dumps;
            flockfile(stderr);
            coil__dump_sched(s, stderr);
            fflush(stderr);
            funlockfile(stderr);
        }
        unsigned shutdowns = __atomic_load_n(&coil__shutdown_requests, __ATOMIC_RELAXED);
        if (COIL_UNLIKELY(shutdowns != s->shutdown_seen)) {
            /* SIGINT/SIGTERM: cancel everything, let every tasklet unwind. */
            s->shutdown_seen = shutdowns;
            if (!s->interrupted) {
                int64_t grace = coil__shutdown_grace();
                s->shutdown_deadline = grace < 0 ? -1 : coil_now() + grace;
            }
            s->interrupted = true;
            kill_all(s);
        }
        unsigned sigs = __atomic_load_n(&coil__signal_arrivals, __ATOMIC_ACQUIRE);
        if (COIL_UNLIKELY(sigs != s->signals_seen)) {
            /* A signal kept for the program's waits: hand it to one here. */
            s->signals_seen = sigs;
            coil__signal_deliver(s);
        }
        if (s->group) {
            if (coil__inbox_pending(s)) coil__inbox_run(s);
            unsigned gen = __atomic_load_n(&s->group->deadlock_gen, __ATOMIC_ACQUIRE);
            if (COIL_UNLIKELY(gen != s->deadlock_seen)) {
                s->deadlock_seen = gen;
                coil__sched_deadlock_step(s);
            }
        }
        /* Offload results are collected every round, without a system call:
         * the eventfd only wakes a scheduler that is blocked. */
        if (__atomic_load_n(&s->offload_done, __ATOMIC_ACQUIRE)) coil__offload_reap(s);
        s->round_start = coil_now();
        if (COIL_UNLIKELY(s->interrupted) && s->shutdown_deadline >= 0 &&
            s->round_start >= s->shutdown_deadline)
            shutdown_overdue(s);
        fire_timers(s, s->round_start);
        /* One trip into the kernel per round: submit what the last round
         * queued and reap, blocking only when nothing is runnable. */
        if (s->runq.len) {
            s->backend->poll(s);
        } else {
            int64_t next = coil__timers_next(&s->timers);
            bool stalled = next < 0 && !waking_pending(s);
            if (stalled && !s->group) {
                deadlock(s);
                continue;
            }
            if (COIL_UNLIKELY(s->interrupted) && s->shutdown_deadline >= 0 &&
                (next < 0 || next > s->shutdown_deadline))
                next = s->shutdown_deadline;
            if (s->group) {
                /* Another thread may wake this one: a message, the group's
                 * end, a deadlock step. */
                coil__group_idle(s, next, stalled);
            } else {
                int err = s->backend->wait(s, next);
                COIL_ASSERT(err == 0, "the backend can always wait");
            }
            if (!s->runq.len) continue; /* a timer is due, or a signal or message came */
            s->round_start = coil_now();
        }
        s->budget = s->runq.len > BUDGET_MIN ? (long)s->runq.len : BUDGET_MIN;
        struct coil__tasklet *next = coil__runq_pop(s);
        coil__switch_to(s, &s->root, next);
    }
}

/* ---- the choice of a backend -------------------------------------------- */

/* The backends, in order of preference: the first that can be set up here
 * runs. Adding one is a line here (and its file). */
static const struct coil__backend_ops *const backends[] = {
#ifdef _WIN32
    &coil__backend_iocp,
#else
    &coil__backend_uring,
    &coil__backend_epoll,
#endif
};
#ifdef _WIN32
#define BACKEND_NAMES "iocp on Windows"
#else
#define BACKEND_NAMES "io_uring or epoll"
#endif

/* A backend that failed with err is absent or forbidden here (no kernel
 * support, a seccomp filter, kernel.io_uring_disabled), and the next one is
 * the answer; any other error is a real failure and is returned. */
static bool fallback_ok(int err) {
    return err == -ENOSYS || err == -EPERM || err == -EACCES;
}

/* The first backend of `backends` that can be set up, falling back only as
 * fallback_ok says; COIL_BACKEND forces one, and forcing an unavailable one
 * (or naming an unknown one) is an error. With s, each candidate is set up
 * for s (init) and the errors are said on stderr, since the variable is the
 * user's own setting; without s (coil_backend_name), each is only probed,
 * quietly. Returns 0 with the backend in *chosen, or -errno. */
static int backend_choose(struct coil__sched *s, const struct coil__backend_ops **chosen) {
    const char *want = getenv("COIL_BACKEND");
    if (want && !*want) want = NULL;
    int err = -EINVAL;
    for (size_t i = 0; i < sizeof backends / sizeof backends[0]; i++) {
        const struct coil__backend_ops *b = backends[i];
        if (want && strcmp(want, b->name) != 0) continue;
        err = s ? b->init(s) : b->probe();
        if (!err) {
            *chosen = b;
            return 0;
        }
        if (want) {
            if (s)
                fprintf(stderr, "coil: COIL_BACKEND=%s: the backend cannot be set up: %s\n", want,
                        strerror(-err));
            return err;
        }
        if (!fallback_ok(err)) return err;
    }
    if (want && s)
        fprintf(stderr, "coil: COIL_BACKEND=%s: unknown backend (" BACKEND_NAMES ")\n", want);
    return err;
}

/* Outside a scheduler: the backend coil_run would choose, probed once per
 * process; NULL when coil_run would fail to set one up. */
static const char *probed_name;
static pthread_once_t probe_once = PTHREAD_ONCE_INIT;

static void probe_backend(void) {
    const struct coil__backend_ops *b;
    if (backend_choose(NULL, &b) == 0) probed_name = b->name;
}

const char *coil_backend_name(void) {
    struct coil__sched *s = coil__sched_cur;
    if (s) return s->backend->name;
    int saved = errno;
    pthread_once(&probe_once, probe_backend);
    errno = saved;
    return probed_name;
}

int coil_run(coil_fn main, void *arg) {
    if (!main) return -EINVAL;
    if (coil__sched_cur) return -EBUSY;
    int saved_errno = errno; /* the scheduler's own system calls set it */
    struct coil__sched *s = calloc(1, sizeof *s);
    int err = s ? coil__sched_setup(s, NULL, 0) : -ENOMEM;
    if (!err) {
        err = coil__sched_spawn_main(s, main, arg);
        err = coil__sched_teardown(s, err ? err : coil__sched_loop(s));
    } else
        free(s);
    errno = saved_errno;
    return err;
}

/* The parts of a scheduler's life that its thread's state needs undone:
 * kept here between setup and teardown. */
#ifndef _WIN32
struct thread_state {
    sigset_t pipe_set, old_mask;
    bool pipe_was_pending;
};
static __thread struct thread_state thread_state;
#endif

/* Sets s up on the calling thread (index in group g, or g NULL); on failure
 * s is left for the caller to free. */
int coil__sched_setup(struct coil__sched *s, struct coil__group *g, unsigned index) {
#ifdef _WIN32
    s->page = coil__page_size();
#else
    s->page = (size_t)sysconf(_SC_PAGESIZE);
#endif
    s->group = g;
    s->index = index;
    s->next_id = 1;
    s->serial = g ? g->serial0 + index : atomic_fetch_add(&sched_serial, 1) + 1;
    s->errno_ptr = &errno;
    s->root.sched = s;
    s->root.state = COIL__RUNNING;
    s->root.timer.index = COIL__TIMER_IDLE;
    strcpy(s->root.name, "scheduler");
#if COIL_TSAN
    s->root.tsan_fiber = __tsan_get_current_fiber();
#endif
    s->current = &s->root;
    int err = coil__watchdog_attach(s);
    if (err) return err;
    err = coil__signal_wake_init();
    if (!err) {
        err = backend_choose(s, &s->backend);
        if (err) coil__signal_wake_release();
    }
    if (err) {
        coil__watchdog_detach(s);
        return err;
    }
    /* Read before the handler goes in, so that a signal caught in between is
     * acted on rather than lost. */
    s->shutdown_seen = __atomic_load_n(&coil__shutdown_requests, __ATOMIC_RELAXED);
    s->signals_seen = __atomic_load_n(&coil__signal_arrivals, __ATOMIC_ACQUIRE);
    coil__shutdown_signals_acquire();
#ifndef _WIN32 /* Windows has no SIGPIPE */
    /* A write to a pipe whose reader is gone raises SIGPIPE on the thread
     * that runs it, and there is no MSG_NOSIGNAL for pipes. Block it on this
     * thread while the scheduler runs: the call returns -EPIPE instead, and
     * the pending signal is discarded before the mask is restored. */
    struct thread_state *ts = &thread_state;
    sigemptyset(&ts->pipe_set);
    sigaddset(&ts->pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &ts->pipe_set, &ts->old_mask);
    sigset_t pending;
    sigpending(&pending);
    ts->pipe_was_pending = sigismember(&pending, SIGPIPE);
#endif
    s->start_err = coil__overflow_guard_init(s);
    coil__sched_cur = s;
    s->dump_seen = __atomic_load_n(&coil__dump_requests, __ATOMIC_RELAXED);
    return 0;
}

/* Spawns main(arg) as s's first tasklet, "main". */
int coil__sched_spawn_main(struct coil__sched *s, coil_fn main, void *arg) {
    int err = s->start_err;
    if (!err) {
        coil_spawn_opts opts = {.name = "main"};
        coil_id id = spawn(s, main, arg, &opts);
        if (id < 0) err = (int)id;
    }
    return err;
}

/* The group could not start: takes back the main tasklet that
 * coil__sched_spawn_main made and that never ran. */
void coil__sched_unspawn_main(struct coil__sched *s) {
    struct coil__tasklet *t = coil__runq_pop(s);
    COIL_ASSERT(t && !s->runq.len && s->nlive == 1, "only main was spawned");
    ids_del(s, t->id);
    coil__timer_remove(&s->timers, &t->timer);
    coil__list_remove(&s->all, &t->all);
    s->nlive--;
    if (s->group) __atomic_sub_fetch(&s->group->nlive, 1, __ATOMIC_RELAXED);
    coil__stack_put(s, t);
}

/* Runs s's loop until its tasklets (in a group: every tasklet of the group)
 * have finished. Returns the result of coil_run for this scheduler. */
int coil__sched_loop(struct coil__sched *s) {
    loop(s);
    return s->interrupted ? -EINTR : s->deadlock ? -EDEADLK : 0;
}

/* Undoes coil__sched_setup and frees s; returns err, or -EINTR for a
 * shutdown signal that came as the last tasklet ended. */
int coil__sched_teardown(struct coil__sched *s, int err) {
    COIL_ASSERT(!s->reap && !s->nlive && !s->timers.len, "coil_run ends with nothing left");
    coil__watchdog_detach(s);
    coil__stack_pool_drain(s);
    records_free(s);
    coil__timers_free(&s->timers);
    free(s->ids.keys);
    free(s->ids.vals);
    coil__chan_quarantine_flush();
    coil__offload_fini(s);
    coil__sched_cur = NULL;
    coil__overflow_guard_fini(s);
    coil__shutdown_signals_release();
    /* A SIGINT/SIGTERM caught after the loop last looked (as the last tasklet
     * ended, or while everything was being freed) is still the user's Ctrl-C
     * during coil_run: say so, rather than let it vanish. */
    if (!err && __atomic_load_n(&coil__shutdown_requests, __ATOMIC_RELAXED) != s->shutdown_seen)
        err = -EINTR;
#ifndef _WIN32
    struct thread_state *ts = &thread_state;
    if (!ts->pipe_was_pending && !sigismember(&ts->old_mask, SIGPIPE)) {
        struct timespec zero = {0, 0};
        while (sigtimedwait(&ts->pipe_set, NULL, &zero) == SIGPIPE) {
        }
    }
    pthread_sigmask(SIG_SETMASK, &ts->old_mask, NULL);
#endif
    s->backend->fini(s);
    coil__fd_table_free(s);
    free(s);
    coil__signal_wake_release();
    return err;
}
