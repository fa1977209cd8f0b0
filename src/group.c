/*
 * A group of schedulers, one per thread (coil_run_group), and what crosses
 * between them: messages, wake-ups, calls, and the group's end and deadlock.
 *
 * Tasklets never migrate: each runs on the scheduler that spawned it, for its
 * whole life, so everything bound to a thread stays right (errno, __thread
 * variables, OpenSSL's per-thread error queue, io_uring's single issuer).
 * Work crosses as a message: a node pushed onto the receiving scheduler's
 * inbox, run by that scheduler's loop on its own thread. A wake-up of a
 * tasklet of another scheduler is such a message (the node lives in the
 * tasklet record, since a tasklet is woken at most once per wait), and so is
 * a call that wants an answer (coil__xcall: kill, join, spawn on another
 * scheduler, making a channel shared).
 *
 * The inbox is a stack pushed with compare-and-swap by any thread and taken
 * whole by its owner, who reverses it, so that the messages of one sender run
 * in the order they were sent. A scheduler with nothing to do spins on its
 * inbox for a short while (a reply in a ping-pong comes within microseconds),
 * then says it sleeps (`sleeping`) and blocks in its backend; a sender that
 * sees `sleeping` clears it and wakes the backend (backend->wake). Both sides
 * write their flag and then, after a sequentially consistent operation or
 * fence, read the other's, so one of them always sees the other: a message
 * is never left in the inbox of a sleeping scheduler.
 *
 * The group ends when its count of live tasklets reaches zero; whoever takes
 * it there wakes every scheduler. Deadlock: a scheduler that has nothing that
 * can wake it but a message (no runnable tasklet, no timer, no I/O, no
 * offload job) counts itself stalled while it sleeps; when every scheduler is
 * stalled and every inbox empty, nothing can ever happen again, and the last
 * to stall starts the deadlock steps that coil_run takes on one scheduler.
 * (No count of messages in flight: a counter every post and every inbox run
 * wrote would be one more cache line passed between the cores per message.)
 */
#include "internal.h"

#include <stdatomic.h>
#include <stdlib.h>

/* How long an idle scheduler of a group looks at its inbox before it sleeps
 * in its backend (whose wake-up costs the sender a system call and the
 * sleeper ten microseconds on this kind of machine): a reply to a message it
 * just sent usually comes sooner. */
#define SPIN_NS (20 * COIL_USEC)

static atomic_uint_fast64_t group_serials = 1ull << 62; /* beside sched.c's */

/* ---- messages ----------------------------------------------------------- */

void coil__msg_post(struct coil__sched *s, struct coil__msg *m) {
    struct coil__msg *head = __atomic_load_n(&s->inbox, __ATOMIC_RELAXED);
    do
        m->next = head;
    while (!__atomic_compare_exchange_n(&s->inbox, &head, m, true, __ATOMIC_SEQ_CST,
                                        __ATOMIC_RELAXED));
    if (__atomic_load_n(&s->sleeping, __ATOMIC_SEQ_CST) &&
        __atomic_exchange_n(&s->sleeping, 0, __ATOMIC_SEQ_CST)) {
        const struct coil__backend_ops *b = s->backend;
        struct coil__sched *from = coil__sched_cur;
        if (b->wake_from && from && from->group == s->group && from->backend == b)
            b->wake_from(from, s);
        else
            b->wake(s);
    }
}

void coil__inbox_run(struct coil__sched *s) {
    struct coil__msg *m = __atomic_exchange_n(&s->inbox, NULL, __ATOMIC_ACQUIRE), *fifo = NULL;
    while (m) {
        struct coil__msg *next = m->next;
        m->next = fifo;
        fifo = m;
        m = next;
    }
    while (fifo) {
        /* Read before fn runs: fn may answer the sender, whose frame (where
         * the node lives) can be gone the moment it runs again. */
        struct coil__msg *next = fifo->next;
        fifo->fn(s, fifo);
        fifo = next;
    }
}

static void xwake_run(struct coil__sched *s, struct coil__msg *m) {
    (void)s;
    struct coil__tasklet *t = coil__container_of(m, struct coil__tasklet, xwake);
    coil__wake(t, t->xwake_result);
}

void coil__wake_any(struct coil__tasklet *t, int result) {
    if (t->sched == coil__sched_cur) {
        coil__wake(t, result);
        return;
    }
    t->xwake_result = result;
    t->xwake.fn = xwake_run;
    coil__msg_post(t->sched, &t->xwake);
}

static bool xcall_unwait(struct coil__tasklet *t, int err) {
    (void)t;
    (void)err;
    return false; /* the answer comes within a round of the other scheduler's */
}

int coil__xcall(struct coil__tasklet *t, struct coil__sched *target,
                void (*fn)(struct coil__sched *s, struct coil__msg *m), struct coil__xcall *x) {
    x->caller = t;
    x->msg.fn = fn;
    coil__msg_post(target, &x->msg);
    return coil__park(t, COIL__WAIT_XCALL, x, 0, xcall_unwait, COIL_FOREVER);
}

struct coil__sched *coil__sched_of(const struct coil__sched *s, coil_id id) {
    const struct coil__group *g = s->group;
    if (id <= 0) return NULL;
    return g ? g->scheds[(id - 1) % (coil_id)g->n] : (struct coil__sched *)s;
}

struct coil__sched *coil__sched_by_serial(const struct coil__sched *s, uint64_t serial) {
    const struct coil__group *g = s->group;
    if (!g || serial < g->serial0 || serial - g->serial0 >= g->n) return NULL;
    return g->scheds[serial - g->serial0];
}

/* ---- the group's end and its deadlock ---------------------------------- */

/* Makes s leave its backend's wait (if it is in it, or about to be). */
static void kick(struct coil__sched *s) {
    if (__atomic_exchange_n(&s->sleeping, 0, __ATOMIC_SEQ_CST)) s->backend->wake(s);
}

bool coil__group_live(const struct coil__sched *s) {
    return __atomic_load_n(&s->group->nlive, __ATOMIC_ACQUIRE) > 0;
}

void coil__group_tasklet_born(struct coil__sched *s) {
    __atomic_add_fetch(&s->group->nlive, 1, __ATOMIC_RELAXED);
}

void coil__group_tasklet_ended(struct coil__sched *s) {
    struct coil__group *g = s->group;
    if (__atomic_sub_fetch(&g->nlive, 1, __ATOMIC_ACQ_REL) != 0) return;
    for (unsigned i = 0; i < g->n; i++)
        if (g->scheds[i] != s) kick(g->scheds[i]);
}

/* Whether s has something to do that another thread gave it. */
static bool nudged(const struct coil__sched *s) {
    return coil__inbox_pending(s) || !coil__group_live(s) ||
           __atomic_load_n(&s->group->deadlock_gen, __ATOMIC_ACQUIRE) != s->deadlock_seen;
}

/* Whether a message waits in some inbox. Only schedulers post messages,
 * from their loops, and a stalled scheduler has left its loop's round (its
 * posts were pushed before it took g->lock to count itself stalled) and runs
 * its inbox only after it took g->lock again to stop counting: so with every
 * scheduler stalled and g->lock held, a message not yet run is in an inbox. */
static bool message_pending(const struct coil__group *g) {
    for (unsigned i = 0; i < g->n; i++)
        if (coil__inbox_pending(g->scheds[i])) return true;
    return false;
}

/* Called with g->lock held by a scheduler that has just stalled. */
static void detect_deadlock(struct coil__group *g, struct coil__sched *self) {
    if (g->stalled != g->n || message_pending(g) || !__atomic_load_n(&g->nlive, __ATOMIC_ACQUIRE))
        return;
    if (!g->deadlock) {
        g->deadlock = true;
        fprintf(stderr,
                "coil: deadlock: every tasklet of the %u schedulers is waiting and nothing can "
                "wake them\n",
                g->n);
    } else {
        coil__group_find_cycles(g);
    }
    __atomic_add_fetch(&g->deadlock_gen, 1, __ATOMIC_RELEASE);
    for (unsigned i = 0; i < g->n; i++)
        if (g->scheds[i] != self) kick(g->scheds[i]);
}

void coil__group_idle(struct coil__sched *s, int64_t next, bool stalled) {
    struct coil__group *g = s->group;
    if (!s->backend->busy(s) && !s->offload_pending) {
        int64_t until = coil_now() + SPIN_NS;
        if (next >= 0 && next < until) until = next;
        for (unsigned i = 0; !nudged(s); i++) {
#if defined(__x86_64__) || defined(__i386__)
            __builtin_ia32_pause();
#elif defined(__aarch64__)
            __asm__ __volatile__("yield");
#endif
            if ((i & 63) == 63) {
                if (coil_now() >= until) break;
                /* More runnable threads than CPUs: the sender may be
                 * waiting for this CPU. */
                coil__cpu_yield();
            }
        }
        if (nudged(s)) return;
    }
    if (stalled) {
        pthread_mutex_lock(&g->lock);
        g->stalled++;
        detect_deadlock(g, s);
        pthread_mutex_unlock(&g->lock);
    }
    __atomic_store_n(&s->sleeping, 1, __ATOMIC_SEQ_CST);
    /* A full fence between the flag and nudged()'s loads, which are relaxed
     * or acquire: a sequentially consistent store orders only what comes
     * before it, and on arm64 (STLR) a later plain load may pass it, so this
     * scheduler could read an empty inbox while the sender, having pushed,
     * still reads sleeping == 0; both sides would then wait for ever. Seen
     * under qemu-aarch64 as a group hanging in test_group's buffered
     * ping-pong about once in forty runs; x86's sequentially consistent store is a
     * full barrier already (MFENCE), which is why no x86 run showed it. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!nudged(s)) {
        int err = s->backend->wait(s, next);
        COIL_ASSERT(err == 0, "the backend can always wait");
    }
    __atomic_store_n(&s->sleeping, 0, __ATOMIC_SEQ_CST);
    if (stalled) {
        pthread_mutex_lock(&g->lock);
        g->stalled--;
        pthread_mutex_unlock(&g->lock);
    }
}

/* ---- running a group ---------------------------------------------------- */

struct member {
    struct coil__group *g;
    unsigned index;
    coil_fn main;
    void *arg;
    int result;
    pthread_t thread;
};

/* Waits (under g->lock) until `*count` reaches g->n. */
static void barrier(struct coil__group *g, unsigned *count) {
    pthread_mutex_lock(&g->lock);
    if (++*count == g->n)
        pthread_cond_broadcast(&g->barrier);
    else
        while (*count < g->n)
            pthread_cond_wait(&g->barrier, &g->lock);
    pthread_mutex_unlock(&g->lock);
}

static void *member_run(void *p) {
    struct member *mb = p;
    struct coil__group *g = mb->g;
    struct coil__sched *s = calloc(1, sizeof *s);
    int err = s ? coil__sched_setup(s, g, mb->index) : -ENOMEM;
    if (err) {
        free(s);
        s = NULL;
        int zero = 0;
        __atomic_compare_exchange_n(&g->start_err, &zero, err, false, __ATOMIC_SEQ_CST,
                                    __ATOMIC_SEQ_CST);
    }
    g->scheds[mb->index] = s;
    /* main counts in the group before any scheduler can see the group
     * empty and end. */
    if (s && mb->index == 0 && (err = coil__sched_spawn_main(s, mb->main, mb->arg)) != 0)
        __atomic_store_n(&g->start_err, err, __ATOMIC_SEQ_CST);
    /* Every scheduler exists before any tasklet runs (a tasklet may send to
     * any of them at once), and a failure stops them all. */
    barrier(g, &g->started);
    if (s) {
        err = __atomic_load_n(&g->start_err, __ATOMIC_SEQ_CST);
        if (!err)
            err = coil__sched_loop(s);
        else if (mb->index == 0 && s->nlive)
            coil__sched_unspawn_main(s);
    }
    /* No scheduler tears its backend down while another may still wake it
     * (the one that ended the group kicks every other). A member whose set-up
     * failed passes this barrier too: the others count on it (it hung them
     * for good before, found by the fault sweep: an eventfd of the second
     * scheduler failing with EMFILE). */
    barrier(g, &g->finished);
    if (s) err = coil__sched_teardown(s, err);
    mb->result = err;
    return NULL;
}

int coil_run_group(unsigned nthreads, coil_fn main, void *arg) {
    if (!main || nthreads > COIL_GROUP_MAX) return -EINVAL;
    if (coil__sched_cur) return -EBUSY;
    if (nthreads == 0) nthreads = coil__sys_cpu_count();
    if (nthreads > COIL_GROUP_MAX) nthreads = COIL_GROUP_MAX;
    int saved_errno = errno;
    struct coil__group *g = calloc(1, sizeof *g);
    struct coil__sched **scheds = calloc(nthreads, sizeof *scheds);
    struct member *mb = calloc(nthreads, sizeof *mb);
    if (!g || !scheds || !mb) {
        free(g);
        free(scheds);
        free(mb);
        return -ENOMEM;
    }
    g->n = nthreads;
    g->scheds = scheds;
    g->serial0 = atomic_fetch_add(&group_serials, nthreads);
    pthread_mutex_init(&g->lock, NULL);
    pthread_cond_init(&g->barrier, NULL);
    int err = 0;
    unsigned started = 1;
    for (unsigned i = 0; i < nthreads; i++)
        mb[i] = (struct member){.g = g, .index = i, .main = main, .arg = arg};
    for (; started < nthreads; started++) {
        int e = pthread_create(&mb[started].thread, NULL, member_run, &mb[started]);
        if (e) {
            err = -e;
            break;
        }
    }
    if (err) {
        /* The threads already started wait at the first barrier for the
         * rest: let them through with the error. */
        __atomic_store_n(&g->start_err, err, __ATOMIC_SEQ_CST);
        pthread_mutex_lock(&g->lock);
        g->n = started; /* scheds beyond are never looked at: no tasklet runs */
        pthread_mutex_unlock(&g->lock);
    }
    member_run(&mb[0]);
    for (unsigned i = 1; i < started; i++)
        pthread_join(mb[i].thread, NULL);
    /* The group's answer: a failure to start, else a shutdown signal
     * (-EINTR) over a deadlock (-EDEADLK), as coil_run's. */
    if (!err) err = __atomic_load_n(&g->start_err, __ATOMIC_SEQ_CST);
    for (unsigned i = 0; i < started && !err; i++)
        if (mb[i].result == -EINTR) err = -EINTR;
    for (unsigned i = 0; i < started && !err; i++)
        if (mb[i].result) err = mb[i].result;
    pthread_cond_destroy(&g->barrier);
    pthread_mutex_destroy(&g->lock);
    free(mb);
    free(scheds);
    free(g);
    errno = saved_errno;
    return err;
}

/* ---- what a tasklet asks of its group ----------------------------------- */

int coil_sched_count(void) {
    struct coil__sched *s = coil__sched_cur;
    if (!s) return -EPERM;
    return s->group ? (int)s->group->n : 1;
}

int coil_sched_index(void) {
    struct coil__sched *s = coil__sched_cur;
    if (!s) return -EPERM;
    return (int)s->index;
}

struct spawn_req {
    struct coil__xcall x;
    coil_fn fn;
    const coil_spawn_opts *opts;
};

static void spawn_remote(struct coil__sched *s, struct coil__msg *m) {
    struct spawn_req *r = coil__container_of(m, struct spawn_req, x.msg);
    r->x.value = coil__spawn_here(s, r->fn, r->x.arg, r->opts);
    coil__wake_any(r->x.caller, 0);
}

coil_id coil_spawn_on(int sched, coil_fn fn, void *arg, const coil_spawn_opts *opts) {
    if (!fn) return -EINVAL;
    struct coil__tasklet *t = coil__self();
    if (!t) return -EPERM;
    struct coil__sched *s = t->sched;
    unsigned n = s->group ? s->group->n : 1;
    if (sched == COIL_SCHED_NEXT)
        sched = s->group ? (int)(__atomic_fetch_add(&s->group->next_spawn, 1, __ATOMIC_RELAXED) % n)
                         : 0;
    if (sched < 0 || (unsigned)sched >= n) return -EINVAL;
    if ((unsigned)sched == s->index) return coil__spawn_here(s, fn, arg, opts);
    struct spawn_req r = {.x = {.arg = arg}, .fn = fn, .opts = opts};
    coil__xcall(t, s->group->scheds[sched], spawn_remote, &r.x);
    return (coil_id)r.x.value;
}
