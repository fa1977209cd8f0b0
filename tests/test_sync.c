/* Mutexes, condition variables, semaphores and wait groups: every call's
 * contract with its exact error, FIFO hand-off, 1,000 tasklets on one mutex,
 * a lost-wakeup hunt, kill storms on a semaphore, deadline and kill on each
 * primitive, EOWNERDEAD, the opposite-order deadlock, the dump lines, and
 * the same between the two schedulers of a group.
 *
 * coil-test: tsan: the group cases run two schedulers on two threads that
 * share mutexes, condition variables, semaphores and wait groups.
 */
// coil-test: tsan (see above)
#include "coil_test.h"

static int64_t ms_from_now(int ms) {
    return coil_now() + ms * COIL_MSEC;
}

static coil_id spawn_named(coil_fn fn, void *arg, const char *name) {
    return coil_spawn(fn, arg, &(coil_spawn_opts){.name = name});
}

/* ---- contracts outside a tasklet ------------------------------------------ */

static void test_outside_a_tasklet(void **state) {
    (void)state;
    coil_mutex *m;
    coil_cond *c;
    coil_sem *s;
    coil_wg *wg;
    assert_int_equal(coil_mutex_open(NULL), -EINVAL);
    assert_int_equal(coil_cond_open(NULL), -EINVAL);
    assert_int_equal(coil_sem_open(NULL, 1), -EINVAL);
    assert_int_equal(coil_sem_open(&s, -1), -EINVAL);
    assert_int_equal(coil_sem_open(&s, (int64_t)COIL_SEM_MAX + 1), -EINVAL);
    assert_int_equal(coil_wg_open(NULL), -EINVAL);
    assert_int_equal(coil_mutex_open(&m), 0);
    assert_int_equal(coil_cond_open(&c), 0);
    assert_int_equal(coil_sem_open(&s, 2), 0);
    assert_int_equal(coil_wg_open(&wg), 0);
    assert_int_equal(coil_mutex_lock(m), -EPERM);
    assert_int_equal(coil_mutex_trylock(m), -EPERM);
    assert_int_equal(coil_mutex_unlock(m), -EPERM);
    assert_int_equal(coil_cond_wait(c, m, COIL_FOREVER), -EPERM);
    assert_int_equal(coil_cond_signal(c), -EPERM);
    assert_int_equal(coil_sem_acquire(s, COIL_FOREVER), -EPERM);
    assert_int_equal(coil_sem_release(s), -EPERM);
    assert_int_equal(coil_wg_add(wg, 1), -EPERM);
    assert_int_equal(coil_wg_wait(wg, COIL_FOREVER), -EPERM);
    assert_int_equal(coil_mutex_lock(NULL), -EINVAL);
    assert_int_equal(coil_mutex_free(NULL), -EINVAL);
    assert_int_equal(coil_cond_free(NULL), -EINVAL);
    assert_int_equal(coil_sem_free(NULL), -EINVAL);
    assert_int_equal(coil_wg_free(NULL), -EINVAL);
    assert_int_equal(coil_mutex_free(m), 0);
    assert_int_equal(coil_cond_free(c), 0);
    assert_int_equal(coil_sem_free(s), 0);
    assert_int_equal(coil_wg_free(wg), 0);
}

/* NULL for every call; -EXDEV for an object of another coil_run. */
struct xdev {
    coil_mutex *m;
    coil_cond *c;
    coil_sem *s;
    coil_wg *wg;
};

static void bind_main(void *arg) {
    struct xdev *x = arg;
    EXPECT_EQ(coil_mutex_trylock(x->m), 0);
    EXPECT_EQ(coil_mutex_unlock(x->m), 0);
    EXPECT_EQ(coil_cond_signal(x->c), 0);
    EXPECT_EQ(coil_sem_value(x->s), 1);
    EXPECT_EQ(coil_wg_add(x->wg, 0), 0);
}

static void xdev_main(void *arg) {
    struct xdev *x = arg;
    EXPECT_EQ(coil_mutex_lock(x->m), -EXDEV);
    EXPECT_EQ(coil_mutex_trylock(x->m), -EXDEV);
    EXPECT_EQ(coil_mutex_unlock(x->m), -EXDEV);
    EXPECT_EQ(coil_mutex_free(x->m), -EXDEV);
    EXPECT_EQ(coil_cond_signal(x->c), -EXDEV);
    EXPECT_EQ(coil_cond_free(x->c), -EXDEV);
    EXPECT_EQ(coil_sem_acquire(x->s, COIL_FOREVER), -EXDEV);
    EXPECT_EQ(coil_sem_free(x->s), -EXDEV);
    EXPECT_EQ(coil_wg_wait(x->wg, COIL_FOREVER), -EXDEV);
    EXPECT_EQ(coil_wg_free(x->wg), -EXDEV);
    /* NULL, in a tasklet */
    EXPECT_EQ(coil_mutex_lock_dl(NULL, COIL_FOREVER), -EINVAL);
    EXPECT_EQ(coil_mutex_trylock(NULL), -EINVAL);
    EXPECT_EQ(coil_mutex_unlock(NULL), -EINVAL);
    EXPECT_EQ(coil_cond_broadcast(NULL), -EINVAL);
    EXPECT_EQ(coil_sem_acquire(NULL, COIL_FOREVER), -EINVAL);
    EXPECT_EQ(coil_sem_tryacquire(NULL), -EINVAL);
    EXPECT_EQ(coil_sem_release(NULL), -EINVAL);
    EXPECT_EQ(coil_sem_value(NULL), -EINVAL);
    EXPECT_EQ(coil_wg_add(NULL, 1), -EINVAL);
    EXPECT_EQ(coil_wg_done(NULL), -EINVAL);
    EXPECT_EQ(coil_wg_wait(NULL, COIL_FOREVER), -EINVAL);
}

static void test_null_and_other_run(void **state) {
    (void)state;
    struct xdev x;
    assert_int_equal(coil_mutex_open(&x.m), 0);
    assert_int_equal(coil_cond_open(&x.c), 0);
    assert_int_equal(coil_sem_open(&x.s, 1), 0);
    assert_int_equal(coil_wg_open(&x.wg), 0);
    COIL_RUN_CHECKED(bind_main, &x);
    COIL_RUN_CHECKED(xdev_main, &x);
    /* outside every scheduler, with nobody waiting: freed */
    assert_int_equal(coil_mutex_free(x.m), 0);
    assert_int_equal(coil_cond_free(x.c), 0);
    assert_int_equal(coil_sem_free(x.s), 0);
    assert_int_equal(coil_wg_free(x.wg), 0);
}

/* ---- mutex contracts -------------------------------------------------------- */

struct mx {
    coil_mutex *m;
    int rc[8];
    int step;
};

static void other_tries(void *arg) {
    struct mx *x = arg;
    x->rc[0] = coil_mutex_trylock(x->m);
    x->rc[1] = coil_mutex_unlock(x->m);
    x->rc[2] = coil_mutex_lock_dl(x->m, coil_now() - 1);  /* passed: one try */
    x->rc[3] = coil_mutex_lock_dl(x->m, ms_from_now(20)); /* waits, then times out */
    x->rc[4] = coil_mutex_lock(x->m);                     /* waits until main unlocks */
    x->rc[5] = coil_mutex_unlock(x->m);
}

static void mutex_contract_main(void *arg) {
    struct mx *x = arg;
    EXPECT_EQ(coil_mutex_lock(NULL), -EINVAL);
    EXPECT_EQ(coil_mutex_unlock(x->m), -EPERM); /* nobody holds it */
    EXPECT_EQ(coil_mutex_lock(x->m), 0);
    EXPECT_EQ(coil_mutex_lock(x->m), -EDEADLK);
    EXPECT_EQ(coil_mutex_trylock(x->m), -EDEADLK);
    EXPECT_EQ(coil_mutex_free(x->m), -EBUSY); /* held */
    coil_id id = coil_spawn(other_tries, x, NULL);
    coil_sleep(50 * COIL_MSEC);
    EXPECT_EQ(coil_mutex_free(x->m), -EBUSY); /* held, and a tasklet waits */
    EXPECT_EQ(coil_mutex_unlock(x->m), 0);    /* handed to the waiter */
    EXPECT_EQ(coil_mutex_trylock(x->m), -EBUSY);
    EXPECT_EQ(coil_mutex_unlock(x->m), -EPERM);
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    EXPECT_EQ(x->rc[0], -EBUSY);
    EXPECT_EQ(x->rc[1], -EPERM);
    EXPECT_EQ(x->rc[2], -ETIMEDOUT);
    EXPECT_EQ(x->rc[3], -ETIMEDOUT);
    EXPECT_EQ(x->rc[4], 0);
    EXPECT_EQ(x->rc[5], 0);
    EXPECT_EQ(coil_mutex_trylock(x->m), 0);
    EXPECT_EQ(coil_mutex_unlock(x->m), 0);
    EXPECT_EQ(coil_mutex_free(x->m), 0);
    EXPECT_EQ(coil_mutex_lock(x->m), -EBADF); /* in quarantine */
    EXPECT_EQ(coil_mutex_free(x->m), -EBADF);
}

static void test_mutex_contract(void **state) {
    (void)state;
    struct mx x = {0};
    assert_int_equal(coil_mutex_open(&x.m), 0);
    COIL_RUN_CHECKED(mutex_contract_main, &x);
}

/* A kill while waiting: -ECANCELED, the mutex not held by the killed one,
 * and the next waiter gets it in turn. A killed tasklet still takes a free
 * mutex (cleanup). */
static void locker(void *arg) {
    struct mx *x = arg;
    int i = x->step++;
    x->rc[i] = coil_mutex_lock(x->m);
    if (x->rc[i] == 0) {
        x->rc[i + 4] = coil_mutex_unlock(x->m);
    } else {
        x->rc[i + 4] = coil_mutex_unlock(x->m); /* not its own: -EPERM */
    }
}

static void mutex_kill_main(void *arg) {
    struct mx *x = arg;
    EXPECT_EQ(coil_mutex_lock(x->m), 0);
    coil_id a = coil_spawn(locker, x, NULL); /* rc[0] */
    coil_id b = coil_spawn(locker, x, NULL); /* rc[1] */
    coil_yield();
    coil_yield();
    EXPECT_EQ(x->step, 2);
    EXPECT_EQ(coil_kill(a), 0);
    coil_yield();
    EXPECT_EQ(x->rc[0], -ECANCELED);
    EXPECT_EQ(x->rc[4], -EPERM);
    EXPECT_EQ(coil_mutex_unlock(x->m), 0);
    EXPECT_EQ(coil_join(b, COIL_FOREVER), 0);
    EXPECT_EQ(x->rc[1], 0);
    EXPECT_EQ(x->rc[5], 0);
    EXPECT_EQ(coil_join(a, COIL_FOREVER), 0);
    /* Killed, yet a free mutex is taken (no waiting). */
    coil_kill(coil_self());
    EXPECT_EQ(coil_mutex_lock(x->m), 0);
    EXPECT_EQ(coil_mutex_unlock(x->m), 0);
    EXPECT_EQ(coil_mutex_free(x->m), 0);
}

static void test_mutex_kill_while_waiting(void **state) {
    (void)state;
    struct mx x = {0};
    assert_int_equal(coil_mutex_open(&x.m), 0);
    COIL_RUN_CHECKED(mutex_kill_main, &x);
}

/* FIFO hand-off: waiters get the mutex in the order they asked; the
 * releaser asking again queues behind them. */
struct fifo {
    coil_mutex *m;
    char order[16];
    int n;
};

static void fifo_locker(void *arg) {
    struct fifo *f = arg;
    const char *name = coil_name(coil_self());
    if (!EXPECT_EQ(coil_mutex_lock(f->m), 0)) return;
    f->order[f->n++] = name[0];
    coil_yield();
    EXPECT_EQ(coil_mutex_unlock(f->m), 0);
}

static void fifo_main(void *arg) {
    struct fifo *f = arg;
    EXPECT_EQ(coil_mutex_lock(f->m), 0);
    coil_id ids[3] = {spawn_named(fifo_locker, f, "a"), spawn_named(fifo_locker, f, "b"),
                      spawn_named(fifo_locker, f, "c")};
    coil_yield();
    EXPECT_EQ(coil_mutex_unlock(f->m), 0);
    EXPECT_EQ(coil_mutex_trylock(f->m), -EBUSY); /* "a" has it already */
    EXPECT_EQ(coil_mutex_lock(f->m), 0);         /* after a, b, c */
    f->order[f->n++] = 'M';
    EXPECT_EQ(coil_mutex_unlock(f->m), 0);
    for (int i = 0; i < 3; i++)
        EXPECT_EQ(coil_join(ids[i], COIL_FOREVER), 0);
}

static void test_mutex_fifo_handoff(void **state) {
    (void)state;
    struct fifo f = {0};
    assert_int_equal(coil_mutex_open(&f.m), 0);
    COIL_RUN_CHECKED(fifo_main, &f);
    assert_string_equal(f.order, "abcM");
    assert_int_equal(coil_mutex_free(f.m), 0);
}

/* ---- 1,000 tasklets on one mutex ------------------------------------------- */

#define CONTENDERS 1000
#define ROUNDS     20

struct contend {
    coil_mutex *m;
    int inside; /* tasklets between lock and unlock: must stay <= 1 */
    int max_inside;
    uint64_t a, b; /* protected: b == a * 31 + rounds, updated across a yield */
    long rounds;
};

static void contender(void *arg) {
    struct contend *c = arg;
    for (int i = 0; i < ROUNDS; i++) {
        if (!EXPECT_EQ(coil_mutex_lock(c->m), 0)) return;
        if (++c->inside > c->max_inside) c->max_inside = c->inside;
        uint64_t a = c->a;
        if (i % 3 == 0) coil_yield(); /* others run, and queue */
        c->a = a + (uint64_t)coil_self();
        c->rounds++;
        c->b = c->b + (uint64_t)coil_self() * 31 + 1;
        c->inside--;
        EXPECT_EQ(coil_mutex_unlock(c->m), 0);
        if (i % 5 == 0) coil_yield();
    }
}

static void contend_main(void *arg) {
    struct contend *c = arg;
    static coil_id ids[CONTENDERS];
    for (int i = 0; i < CONTENDERS; i++)
        ids[i] = coil_spawn(contender, c, &(coil_spawn_opts){.stack_size = COIL_STACK_MIN});
    for (int i = 0; i < CONTENDERS; i++)
        EXPECT_EQ(coil_join(ids[i], COIL_FOREVER), 0);
    uint64_t sum = 0;
    for (int i = 0; i < CONTENDERS; i++)
        sum += (uint64_t)ids[i];
    EXPECT_EQ(c->a, sum * ROUNDS);
    EXPECT_EQ(c->b, sum * ROUNDS * 31 + CONTENDERS * ROUNDS);
    EXPECT_EQ(c->rounds, CONTENDERS * ROUNDS);
    EXPECT_EQ(c->max_inside, 1);
}

static void test_mutex_1000_contenders(void **state) {
    (void)state;
    struct contend c = {0};
    assert_int_equal(coil_mutex_open(&c.m), 0);
    COIL_RUN_CHECKED(contend_main, &c);
    assert_int_equal(coil_mutex_free(c.m), 0);
}

/* ---- EOWNERDEAD -------------------------------------------------------------- */

struct od {
    coil_mutex *m;
    int waiter_rc, waiter_unlock;
};

static void lock_and_end(void *arg) {
    struct od *o = arg;
    EXPECT_EQ(coil_mutex_lock(o->m), 0);
    /* ends holding it */
}

static void lock_and_sleep_then_end(void *arg) {
    struct od *o = arg;
    EXPECT_EQ(coil_mutex_lock(o->m), 0);
    coil_sleep(20 * COIL_MSEC);
}

static void od_waiter(void *arg) {
    struct od *o = arg;
    o->waiter_rc = coil_mutex_lock(o->m);
    o->waiter_unlock = coil_mutex_unlock(o->m);
}

static void od_main(void *arg) {
    struct od *o = arg;
    /* Nobody waits when the holder ends: the next locker hears of it. */
    coil_id id = coil_spawn(lock_and_end, o, NULL);
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    EXPECT_EQ(coil_mutex_trylock(o->m), -EOWNERDEAD);
    EXPECT_EQ(coil_mutex_unlock(o->m), 0);
    EXPECT_EQ(coil_mutex_lock(o->m), 0); /* reported once */
    EXPECT_EQ(coil_mutex_unlock(o->m), 0);
    /* A waiter is handed it when the holder ends. */
    id = coil_spawn(lock_and_sleep_then_end, o, NULL);
    coil_yield();
    coil_id w = coil_spawn(od_waiter, o, NULL);
    EXPECT_EQ(coil_join(w, COIL_FOREVER), 0);
    EXPECT_EQ(o->waiter_rc, -EOWNERDEAD);
    EXPECT_EQ(o->waiter_unlock, 0);
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    EXPECT_EQ(coil_mutex_lock(o->m), 0);
    EXPECT_EQ(coil_mutex_unlock(o->m), 0);
    EXPECT_EQ(coil_mutex_free(o->m), 0);
}

static void test_mutex_owner_dead(void **state) {
    (void)state;
    struct od o = {0};
    assert_int_equal(coil_mutex_open(&o.m), 0);
    COIL_RUN_CHECKED(od_main, &o);
}

/* ---- condition variable ------------------------------------------------------ */

struct cv {
    coil_mutex *m;
    coil_cond *c;
    int ready;
    int rc[4];
    int unlock_rc[4];
    int woken;
};

static void cv_waiter(void *arg) {
    struct cv *v = arg;
    if (!EXPECT_EQ(coil_mutex_lock(v->m), 0)) return;
    int rc = 0;
    while (!v->ready && rc == 0)
        rc = coil_cond_wait(v->c, v->m, COIL_FOREVER);
    v->woken++;
    int i = coil_name(coil_self())[0] - '0';
    v->rc[i] = rc;
    v->unlock_rc[i] = coil_mutex_unlock(v->m);
}

static void cv_contract_main(void *arg) {
    struct cv *v = arg;
    EXPECT_EQ(coil_cond_wait(v->c, v->m, COIL_FOREVER), -EPERM); /* m not held */
    EXPECT_EQ(coil_cond_wait(NULL, v->m, COIL_FOREVER), -EINVAL);
    EXPECT_EQ(coil_cond_wait(v->c, NULL, COIL_FOREVER), -EINVAL);
    EXPECT_EQ(coil_cond_signal(NULL), -EINVAL);
    EXPECT_EQ(coil_cond_signal(v->c), 0); /* nobody waits: nothing */
    EXPECT_EQ(coil_cond_broadcast(v->c), 0);
    /* Timeout: -ETIMEDOUT with m held again. */
    EXPECT_EQ(coil_mutex_lock(v->m), 0);
    int64_t t0 = coil_now();
    EXPECT_EQ(coil_cond_wait(v->c, v->m, ms_from_now(20)), -ETIMEDOUT);
    EXPECT(coil_now() - t0 >= 20 * COIL_MSEC);
    EXPECT_EQ(coil_cond_wait(v->c, v->m, coil_now() - 1), -ETIMEDOUT);
    EXPECT_EQ(coil_mutex_unlock(v->m), 0);
    /* Signal wakes one, in order; broadcast the rest. */
    coil_id ids[3] = {spawn_named(cv_waiter, v, "0"), spawn_named(cv_waiter, v, "1"),
                      spawn_named(cv_waiter, v, "2")};
    coil_sleep(5 * COIL_MSEC);
    EXPECT_EQ(coil_cond_free(v->c), -EBUSY);
    EXPECT_EQ(coil_mutex_lock(v->m), 0);
    v->ready = 1;
    EXPECT_EQ(coil_cond_signal(v->c), 0);
    EXPECT_EQ(coil_mutex_unlock(v->m), 0);
    coil_sleep(5 * COIL_MSEC);
    EXPECT_EQ(v->woken, 1);
    EXPECT_EQ(v->rc[0], 0);
    EXPECT_EQ(v->unlock_rc[0], 0);
    /* Kill one waiter: -ECANCELED, m not held by it. */
    EXPECT_EQ(coil_kill(ids[1]), 0);
    coil_sleep(5 * COIL_MSEC);
    EXPECT_EQ(v->rc[1], -ECANCELED);
    EXPECT_EQ(v->unlock_rc[1], -EPERM);
    EXPECT_EQ(coil_cond_broadcast(v->c), 0);
    for (int i = 0; i < 3; i++)
        EXPECT_EQ(coil_join(ids[i], COIL_FOREVER), 0);
    EXPECT_EQ(v->rc[2], 0);
    EXPECT_EQ(v->unlock_rc[2], 0);
    /* Killed before the wait: -ECANCELED, and m released. */
    EXPECT_EQ(coil_mutex_lock(v->m), 0);
    coil_kill(coil_self());
    EXPECT_EQ(coil_cond_wait(v->c, v->m, COIL_FOREVER), -ECANCELED);
    EXPECT_EQ(coil_mutex_unlock(v->m), -EPERM);
    EXPECT_EQ(coil_cond_free(v->c), 0);
    EXPECT_EQ(coil_cond_signal(v->c), -EBADF);
    EXPECT_EQ(coil_mutex_free(v->m), 0);
}

static void test_cond_contract(void **state) {
    (void)state;
    struct cv v = {0};
    assert_int_equal(coil_mutex_open(&v.m), 0);
    assert_int_equal(coil_cond_open(&v.c), 0);
    COIL_RUN_CHECKED(cv_contract_main, &v);
}

/* A signal taken by a waiter that is killed before it has the mutex back
 * goes on to the next waiter. */
static void cv_pass_main(void *arg) {
    struct cv *v = arg;
    coil_id a = spawn_named(cv_waiter, v, "0");
    coil_id b = spawn_named(cv_waiter, v, "1");
    coil_sleep(5 * COIL_MSEC);
    EXPECT_EQ(coil_mutex_lock(v->m), 0);
    v->ready = 1;
    EXPECT_EQ(coil_cond_signal(v->c), 0); /* to "0", which now waits for m */
    coil_yield();
    EXPECT_EQ(coil_kill(a), 0);
    EXPECT_EQ(coil_mutex_unlock(v->m), 0);
    EXPECT_EQ(coil_join(a, COIL_FOREVER), 0);
    EXPECT_EQ(coil_join(b, COIL_FOREVER), 0);
    EXPECT_EQ(v->rc[0], -ECANCELED);
    EXPECT_EQ(v->unlock_rc[0], -EPERM);
    EXPECT_EQ(v->rc[1], 0);
    EXPECT_EQ(v->unlock_rc[1], 0);
}

static void test_cond_signal_passed_on_kill(void **state) {
    (void)state;
    struct cv v = {0};
    assert_int_equal(coil_mutex_open(&v.m), 0);
    assert_int_equal(coil_cond_open(&v.c), 0);
    COIL_RUN_CHECKED(cv_pass_main, &v);
    assert_int_equal(coil_cond_free(v.c), 0);
    assert_int_equal(coil_mutex_free(v.m), 0);
}

/* Lost-wakeup hunt: a bounded queue of one slot, producers and consumers
 * waiting on two condition variables with no deadline, yields sprinkled
 * everywhere. A lost wake-up leaves tasklets waiting forever: coil_run
 * would return -EDEADLK. */
#define HUNT_ITEMS 20000

struct hunt {
    coil_mutex *m;
    coil_cond *not_empty, *not_full;
    int full;
    long item, produced, consumed;
    long sum_in, sum_out;
    unsigned seed;
};

static unsigned hunt_rand(struct hunt *h) {
    h->seed = h->seed * 1103515245u + 12345u;
    return h->seed >> 16;
}

static void producer(void *arg) {
    struct hunt *h = arg;
    for (;;) {
        if (!EXPECT_EQ(coil_mutex_lock(h->m), 0)) return;
        while (h->full && h->produced < HUNT_ITEMS)
            if (!EXPECT_EQ(coil_cond_wait(h->not_full, h->m, COIL_FOREVER), 0)) return;
        if (h->produced == HUNT_ITEMS) {
            coil_mutex_unlock(h->m);
            return;
        }
        h->item = ++h->produced;
        h->sum_in += h->item;
        h->full = 1;
        if (hunt_rand(h) % 2) coil_yield(); /* signal while holding, or not */
        coil_cond_signal(h->not_empty);
        coil_mutex_unlock(h->m);
        if (hunt_rand(h) % 3 == 0) coil_yield();
    }
}

static void consumer(void *arg) {
    struct hunt *h = arg;
    for (;;) {
        if (!EXPECT_EQ(coil_mutex_lock(h->m), 0)) return;
        while (!h->full && h->consumed < HUNT_ITEMS)
            if (!EXPECT_EQ(coil_cond_wait(h->not_empty, h->m, COIL_FOREVER), 0)) return;
        if (h->consumed == HUNT_ITEMS) {
            coil_cond_broadcast(h->not_empty);
            coil_cond_broadcast(h->not_full);
            coil_mutex_unlock(h->m);
            return;
        }
        h->sum_out += h->item;
        h->full = 0;
        if (++h->consumed == HUNT_ITEMS) {
            coil_cond_broadcast(h->not_empty);
            coil_cond_broadcast(h->not_full);
        }
        coil_mutex_unlock(h->m);
        coil_cond_signal(h->not_full); /* signal after unlocking */
        if (hunt_rand(h) % 3 == 0) coil_yield();
    }
}

static void hunt_main(void *arg) {
    struct hunt *h = arg;
    coil_id ids[8];
    for (int i = 0; i < 4; i++) {
        ids[2 * i] = coil_spawn(producer, h, NULL);
        ids[2 * i + 1] = coil_spawn(consumer, h, NULL);
    }
    for (int i = 0; i < 8; i++)
        EXPECT_EQ(coil_join(ids[i], COIL_FOREVER), 0);
    EXPECT_EQ(h->consumed, HUNT_ITEMS);
    EXPECT_EQ(h->sum_in, (long)HUNT_ITEMS * (HUNT_ITEMS + 1) / 2);
    EXPECT_EQ(h->sum_out, h->sum_in);
}

static void test_cond_lost_wakeup_hunt(void **state) {
    (void)state;
    struct hunt h = {.seed = 42};
    assert_int_equal(coil_mutex_open(&h.m), 0);
    assert_int_equal(coil_cond_open(&h.not_empty), 0);
    assert_int_equal(coil_cond_open(&h.not_full), 0);
    COIL_RUN_CHECKED(hunt_main, &h);
    assert_int_equal(coil_cond_free(h.not_empty), 0);
    assert_int_equal(coil_cond_free(h.not_full), 0);
    assert_int_equal(coil_mutex_free(h.m), 0);
}

/* ---- semaphore --------------------------------------------------------------- */

struct semx {
    coil_sem *s;
    int rc[4];
};

static void sem_waiter(void *arg) {
    struct semx *x = arg;
    int i = coil_name(coil_self())[0] - '0';
    x->rc[i] = coil_sem_acquire(x->s, i == 2 ? ms_from_now(20) : COIL_FOREVER);
}

static void sem_contract_main(void *arg) {
    struct semx *x = arg;
    EXPECT_EQ(coil_sem_acquire(NULL, COIL_FOREVER), -EINVAL);
    EXPECT_EQ(coil_sem_value(x->s), 1);
    EXPECT_EQ(coil_sem_tryacquire(x->s), 0);
    EXPECT_EQ(coil_sem_tryacquire(x->s), -EAGAIN);
    EXPECT_EQ(coil_sem_acquire(x->s, coil_now() - 1), -ETIMEDOUT);
    coil_id ids[3] = {spawn_named(sem_waiter, x, "0"), spawn_named(sem_waiter, x, "1"),
                      spawn_named(sem_waiter, x, "2")};
    coil_sleep(40 * COIL_MSEC);
    EXPECT_EQ(x->rc[2], -ETIMEDOUT);
    EXPECT_EQ(coil_sem_free(x->s), -EBUSY);
    EXPECT_EQ(coil_kill(ids[0]), 0);
    coil_yield();
    EXPECT_EQ(x->rc[0], -ECANCELED);
    EXPECT_EQ(coil_sem_release(x->s), 0); /* to "1" */
    EXPECT_EQ(coil_sem_value(x->s), 0);
    for (int i = 0; i < 3; i++)
        EXPECT_EQ(coil_join(ids[i], COIL_FOREVER), 0);
    EXPECT_EQ(x->rc[1], 0);
    EXPECT_EQ(coil_sem_release(x->s), 0);
    EXPECT_EQ(coil_sem_value(x->s), 1);
    EXPECT_EQ(coil_sem_free(x->s), 0);
    EXPECT_EQ(coil_sem_open(&x->s, COIL_SEM_MAX), 0);
    EXPECT_EQ(coil_sem_release(x->s), -EOVERFLOW);
    EXPECT_EQ(coil_sem_value(x->s), COIL_SEM_MAX);
    EXPECT_EQ(coil_sem_free(x->s), 0);
    EXPECT_EQ(coil_sem_value(x->s), -EBADF);
}

static void test_sem_contract(void **state) {
    (void)state;
    struct semx x = {0};
    assert_int_equal(coil_sem_open(&x.s, 1), 0);
    COIL_RUN_CHECKED(sem_contract_main, &x);
}

/* Kill storm: 200 tasklets take and give back 3 units in a loop while a
 * killer kills them at random. Never more than 3 holders; at the end the
 * semaphore holds its 3 units again. */
#define STORM_UNITS    3
#define STORM_TASKLETS 200

struct storm {
    coil_sem *s;
    int holders, max_holders;
    long acquired, cancelled;
    int alive;
};

static void storm_worker(void *arg) {
    struct storm *st = arg;
    for (;;) {
        int rc = coil_sem_acquire(st->s, COIL_FOREVER);
        if (rc == -ECANCELED) {
            st->cancelled++;
            break;
        }
        if (!EXPECT_EQ(rc, 0)) break;
        st->acquired++;
        if (++st->holders > st->max_holders) st->max_holders = st->holders;
        int y = coil_yield(); /* a kill here: still holding, must release */
        st->holders--;
        EXPECT_EQ(coil_sem_release(st->s), 0);
        if (y == -ECANCELED) break;
    }
    st->alive--;
}

static void storm_main(void *arg) {
    struct storm *st = arg;
    static coil_id ids[STORM_TASKLETS];
    unsigned seed = 7;
    st->alive = STORM_TASKLETS;
    for (int i = 0; i < STORM_TASKLETS; i++)
        ids[i] = coil_spawn(storm_worker, st, NULL);
    for (int round = 0; st->alive > 0 && round < 100000; round++) {
        seed = seed * 1103515245u + 12345u;
        coil_kill(ids[(seed >> 16) % STORM_TASKLETS]);
        coil_yield();
    }
    for (int i = 0; i < STORM_TASKLETS; i++)
        coil_kill(ids[i]); /* the few the random kills missed */
    for (int i = 0; i < STORM_TASKLETS; i++)
        EXPECT_EQ(coil_join(ids[i], COIL_FOREVER), 0);
    EXPECT_EQ(st->alive, 0);
    EXPECT(st->max_holders <= STORM_UNITS);
    EXPECT(st->cancelled > 0);
    EXPECT_EQ(coil_sem_value(st->s), STORM_UNITS);
}

static void test_sem_kill_storm(void **state) {
    (void)state;
    struct storm st = {0};
    assert_int_equal(coil_sem_open(&st.s, STORM_UNITS), 0);
    COIL_RUN_CHECKED(storm_main, &st);
    assert_int_equal(st.max_holders, STORM_UNITS);
    assert_int_equal(coil_sem_free(st.s), 0);
}

/* ---- wait group ---------------------------------------------------------------- */

struct wgx {
    coil_wg *wg;
    int rc[4];
    int done;
};

static void wg_worker(void *arg) {
    struct wgx *x = arg;
    coil_sleep(5 * COIL_MSEC);
    x->done++;
    EXPECT_EQ(coil_wg_done(x->wg), 0);
}

static void wg_waiter(void *arg) {
    struct wgx *x = arg;
    int i = coil_name(coil_self())[0] - '0';
    x->rc[i] = coil_wg_wait(x->wg, i == 2 ? ms_from_now(1) : COIL_FOREVER);
}

static void wg_contract_main(void *arg) {
    struct wgx *x = arg;
    EXPECT_EQ(coil_wg_add(NULL, 1), -EINVAL);
    EXPECT_EQ(coil_wg_wait(x->wg, COIL_FOREVER), 0); /* at 0: at once */
    EXPECT_EQ(coil_wg_done(x->wg), -EINVAL);         /* below 0 */
    EXPECT_EQ(coil_wg_add(x->wg, INT64_MAX), 0);
    EXPECT_EQ(coil_wg_add(x->wg, 1), -EINVAL); /* overflow */
    EXPECT_EQ(coil_wg_add(x->wg, -INT64_MAX), 0);
    EXPECT_EQ(coil_wg_add(x->wg, 3), 0);
    coil_id w[3] = {spawn_named(wg_waiter, x, "0"), spawn_named(wg_waiter, x, "1"),
                    spawn_named(wg_waiter, x, "2")};
    coil_yield();
    EXPECT_EQ(coil_wg_free(x->wg), -EBUSY);
    EXPECT_EQ(coil_kill(w[1]), 0);
    EXPECT_EQ(coil_wg_wait(x->wg, coil_now() - 1), -ETIMEDOUT);
    for (int i = 0; i < 3; i++)
        coil_spawn(wg_worker, x, NULL);
    EXPECT_EQ(coil_wg_wait(x->wg, COIL_FOREVER), 0);
    EXPECT_EQ(x->done, 3);
    for (int i = 0; i < 3; i++)
        EXPECT_EQ(coil_join(w[i], COIL_FOREVER), 0);
    EXPECT_EQ(x->rc[0], 0);
    EXPECT_EQ(x->rc[1], -ECANCELED);
    EXPECT_EQ(x->rc[2], -ETIMEDOUT);
    EXPECT_EQ(coil_wg_free(x->wg), 0);
    EXPECT_EQ(coil_wg_wait(x->wg, COIL_FOREVER), -EBADF);
}

static void test_wg_contract(void **state) {
    (void)state;
    struct wgx x = {0};
    assert_int_equal(coil_wg_open(&x.wg), 0);
    COIL_RUN_CHECKED(wg_contract_main, &x);
}

/* ---- deadlock and dump ---------------------------------------------------------- */

struct dl {
    coil_mutex *a, *b;
    coil_wg *both; /* the group case: both hold their first mutex */
    int rc[2];
    int unlock_rc[2];
};

static void lock_ab(void *arg) {
    struct dl *d = arg;
    int i = coil_name(coil_self())[0] == 'x' ? 0 : 1;
    coil_mutex *first = i ? d->b : d->a, *second = i ? d->a : d->b;
    EXPECT_EQ(coil_mutex_lock(first), 0);
    coil_yield();
    d->rc[i] = coil_mutex_lock(second);
    d->unlock_rc[i] = coil_mutex_unlock(first);
}

static void dl_main(void *arg) {
    struct dl *d = arg;
    spawn_named(lock_ab, d, "x");
    spawn_named(lock_ab, d, "y");
}

static void test_opposite_order_deadlock(void **state) {
    (void)state;
    struct dl d = {0};
    assert_int_equal(coil_mutex_open(&d.a), 0);
    assert_int_equal(coil_mutex_open(&d.b), 0);
    struct coil_test_stderr cap;
    coil_test_stderr_begin(&cap);
    coil_test_reset_failures();
    int rc = coil_run(dl_main, &d);
    char *err = coil_test_stderr_end(&cap);
    print_message("%s", err);
    coil_test_assert_no_failure();
    assert_int_equal(rc, -EDEADLK);
    assert_int_equal(d.rc[0], -ECANCELED);
    assert_int_equal(d.rc[1], -ECANCELED);
    assert_int_equal(d.unlock_rc[0], 0);
    assert_int_equal(d.unlock_rc[1], 0);
    assert_non_null(strstr(err, "deadlock"));
    char line[512];
    assert_true(coil_test_find_line(err, "\"x\"", line, sizeof line));
    assert_non_null(strstr(line, "on mutex lock"));
    assert_true(coil_test_find_line(err, "\"y\"", line, sizeof line));
    assert_non_null(strstr(line, "on mutex lock"));
    assert_non_null(strstr(line, "held by tasklet"));
    free(err);
    assert_int_equal(coil_mutex_free(d.a), 0);
    assert_int_equal(coil_mutex_free(d.b), 0);
}

struct dumpx {
    coil_mutex *m;
    coil_cond *c;
    coil_sem *s;
    coil_wg *wg;
    char text[4096];
};

static void dump_mutex(void *arg) {
    coil_mutex_lock(((struct dumpx *)arg)->m);
}
static void dump_cond(void *arg) {
    struct dumpx *x = arg;
    coil_mutex *m;
    coil_mutex_open(&m);
    coil_mutex_lock(m);
    if (coil_cond_wait(x->c, m, COIL_FOREVER) != -ECANCELED) coil_mutex_unlock(m);
    coil_mutex_free(m);
}
static void dump_sem(void *arg) {
    coil_sem_acquire(((struct dumpx *)arg)->s, COIL_FOREVER);
}
static void dump_wg(void *arg) {
    coil_wg_wait(((struct dumpx *)arg)->wg, COIL_FOREVER);
}

static void dump_main(void *arg) {
    struct dumpx *x = arg;
    EXPECT_EQ(coil_mutex_lock(x->m), 0);
    EXPECT_EQ(coil_wg_add(x->wg, 2), 0);
    coil_id ids[4] = {spawn_named(dump_mutex, x, "mx"), spawn_named(dump_cond, x, "cv"),
                      spawn_named(dump_sem, x, "sm"), spawn_named(dump_wg, x, "wg")};
    coil_yield();
    FILE *f = tmpfile();
    if (!EXPECT(f != NULL)) return;
    EXPECT_EQ(coil_dump(f), 5);
    fflush(f);
    rewind(f);
    size_t len = fread(x->text, 1, sizeof x->text - 1, f);
    x->text[len] = '\0';
    fclose(f);
    for (int i = 0; i < 4; i++)
        coil_kill(ids[i]);
    for (int i = 0; i < 4; i++)
        EXPECT_EQ(coil_join(ids[i], COIL_FOREVER), 0);
    EXPECT_EQ(coil_mutex_unlock(x->m), 0);
}

static void test_dump_lines(void **state) {
    (void)state;
    struct dumpx x = {0};
    assert_int_equal(coil_mutex_open(&x.m), 0);
    assert_int_equal(coil_cond_open(&x.c), 0);
    assert_int_equal(coil_sem_open(&x.s, 0), 0);
    assert_int_equal(coil_wg_open(&x.wg), 0);
    COIL_RUN_CHECKED(dump_main, &x);
    print_message("%s", x.text);
    char line[512];
    assert_true(coil_test_find_line(x.text, "\"mx\"", line, sizeof line));
    assert_non_null(strstr(line, "waiting on mutex lock"));
    assert_non_null(strstr(line, "held by tasklet 1,"));
    assert_true(coil_test_find_line(x.text, "\"cv\"", line, sizeof line));
    assert_non_null(strstr(line, "waiting on cond wait"));
    assert_true(coil_test_find_line(x.text, "\"sm\"", line, sizeof line));
    assert_non_null(strstr(line, "waiting on sem acquire"));
    assert_true(coil_test_find_line(x.text, "\"wg\"", line, sizeof line));
    assert_non_null(strstr(line, "waiting on waitgroup wait"));
    assert_non_null(strstr(line, "counter 2"));
    assert_int_equal(coil_mutex_free(x.m), 0);
    assert_int_equal(coil_cond_free(x.c), 0);
    assert_int_equal(coil_sem_free(x.s), 0);
    assert_int_equal(coil_wg_free(x.wg), 0);
}

/* ---- across the two schedulers of a group ------------------------------------------ */

#define X_WORKERS 8 /* per scheduler */
#define X_ROUNDS  2000

struct xg {
    coil_mutex *m;
    coil_cond *c;
    coil_sem *s;
    coil_wg *wg;
    /* Protected by m (plain fields: TSan checks that m orders them). */
    uint64_t a, b;
    long n;
    int inside, max_inside;
    /* Protected by m, waited for on c. */
    long turn;
    int sem_holders; /* atomic */
    int sem_max;     /* atomic */
    int failures;    /* atomic */
};

static void xg_fail(struct xg *x) {
    __atomic_add_fetch(&x->failures, 1, __ATOMIC_RELAXED);
}

static void xg_worker(void *arg) {
    struct xg *x = arg;
    uint64_t me = (uint64_t)coil_self();
    for (int i = 0; i < X_ROUNDS; i++) {
        if (coil_mutex_lock(x->m) != 0) {
            xg_fail(x);
            break;
        }
        if (++x->inside > x->max_inside) x->max_inside = x->inside;
        uint64_t a = x->a;
        if (i % 7 == 0) coil_yield();
        x->a = a + me;
        x->b += me * 31 + 1;
        x->n++;
        x->inside--;
        if (coil_mutex_unlock(x->m) != 0) xg_fail(x);
        /* The semaphore: at most 2 holders over both schedulers. */
        if (coil_sem_acquire(x->s, COIL_FOREVER) != 0) {
            xg_fail(x);
            break;
        }
        int h = __atomic_add_fetch(&x->sem_holders, 1, __ATOMIC_RELAXED);
        int mx = __atomic_load_n(&x->sem_max, __ATOMIC_RELAXED);
        while (h > mx && !__atomic_compare_exchange_n(&x->sem_max, &mx, h, false, __ATOMIC_RELAXED,
                                                      __ATOMIC_RELAXED)) {
        }
        if (i % 3 == 0) coil_yield();
        __atomic_sub_fetch(&x->sem_holders, 1, __ATOMIC_RELAXED);
        if (coil_sem_release(x->s) != 0) xg_fail(x);
    }
    if (coil_wg_done(x->wg) != 0) xg_fail(x);
}

/* Two tasklets, one per scheduler, take turns through the condition
 * variable: each waits for its parity. */
static void xg_turns(void *arg) {
    struct xg *x = arg;
    long parity = coil_sched_index();
    for (int i = 0; i < 500; i++) {
        if (coil_mutex_lock(x->m) != 0) {
            xg_fail(x);
            break;
        }
        while (x->turn % 2 != parity)
            if (coil_cond_wait(x->c, x->m, COIL_FOREVER) != 0) {
                xg_fail(x);
                return; /* only -ECANCELED leaves m unheld; any error fails the test */
            }
        x->turn++;
        coil_cond_broadcast(x->c);
        coil_mutex_unlock(x->m);
    }
    if (coil_wg_done(x->wg) != 0) xg_fail(x);
}

static void xg_main(void *arg) {
    struct xg *x = arg;
    if (coil_wg_add(x->wg, 2 * X_WORKERS + 2) != 0) xg_fail(x);
    coil_id ids[2 * X_WORKERS + 2];
    int n = 0;
    for (int s = 0; s < 2; s++) {
        for (int i = 0; i < X_WORKERS; i++)
            ids[n++] = coil_spawn_on(s, xg_worker, x, NULL);
        ids[n++] = coil_spawn_on(s, xg_turns, x, NULL);
    }
    if (coil_wg_wait(x->wg, COIL_FOREVER) != 0) xg_fail(x);
    for (int i = 0; i < n; i++)
        if (coil_join(ids[i], COIL_FOREVER) != 0) xg_fail(x);
    uint64_t sum = 0;
    for (int i = 0; i < n; i++)
        if (i % (X_WORKERS + 1) != X_WORKERS) sum += (uint64_t)ids[i];
    if (coil_mutex_lock(x->m) != 0) xg_fail(x);
    if (x->a != sum * X_ROUNDS || x->b != sum * X_ROUNDS * 31 + 2 * X_WORKERS * X_ROUNDS ||
        x->n != 2L * X_WORKERS * X_ROUNDS || x->max_inside != 1 || x->turn != 1000)
        xg_fail(x);
    coil_mutex_unlock(x->m);
    if (coil_sem_value(x->s) != 2) xg_fail(x);
}

static void test_group_contention(void **state) {
    (void)state;
    struct xg x = {0};
    assert_int_equal(coil_mutex_open(&x.m), 0);
    assert_int_equal(coil_cond_open(&x.c), 0);
    assert_int_equal(coil_sem_open(&x.s, 2), 0);
    assert_int_equal(coil_wg_open(&x.wg), 0);
    assert_int_equal(coil_run_group(2, xg_main, &x), 0);
    assert_int_equal(x.failures, 0);
    assert_true(x.sem_max <= 2);
    assert_int_equal(coil_mutex_free(x.m), 0);
    assert_int_equal(coil_cond_free(x.c), 0);
    assert_int_equal(coil_sem_free(x.s), 0);
    assert_int_equal(coil_wg_free(x.wg), 0);
}

/* Lost-wakeup hunt across schedulers: a producer and three consumers on
 * each, a one-slot buffer; producers wait with no deadline, so a lost
 * wake-up leaves one waiting for ever (the group would end with -EDEADLK),
 * and consumers with a short one (5 us), so that signals race timeouts
 * (and their wait_claim) on the other thread. */
#define XH_ITEMS 4000

struct xhunt {
    coil_mutex *m;
    coil_cond *not_empty, *not_full;
    /* under m */
    int full;
    long item, produced, consumed, sum_in, sum_out, timeouts;
    int failures; /* atomic */
};

#define XH_FAIL(h)                                                                                 \
    do {                                                                                           \
        __atomic_add_fetch(&(h)->failures, 1, __ATOMIC_RELAXED);                                   \
        return;                                                                                    \
    } while (0)

static void xh_producer(void *arg) {
    struct xhunt *h = arg;
    unsigned seed = (unsigned)coil_self();
    for (;;) {
        if (coil_mutex_lock(h->m) != 0) XH_FAIL(h);
        while (h->full && h->produced < XH_ITEMS)
            if (coil_cond_wait(h->not_full, h->m, COIL_FOREVER) != 0) XH_FAIL(h);
        if (h->produced == XH_ITEMS) {
            coil_mutex_unlock(h->m);
            return;
        }
        h->item = ++h->produced;
        h->sum_in += h->item;
        h->full = 1;
        seed = seed * 1103515245u + 12345u;
        if ((seed >> 16) % 2) {
            coil_cond_signal(h->not_empty);
            coil_mutex_unlock(h->m);
        } else {
            coil_mutex_unlock(h->m);
            coil_cond_signal(h->not_empty);
        }
    }
}

static void xh_consumer(void *arg) {
    struct xhunt *h = arg;
    for (;;) {
        if (coil_mutex_lock(h->m) != 0) XH_FAIL(h);
        while (!h->full && h->consumed < XH_ITEMS) {
            int rc = coil_cond_wait(h->not_empty, h->m, coil_now() + 5 * COIL_USEC);
            if (rc == -ETIMEDOUT)
                h->timeouts++;
            else if (rc != 0)
                XH_FAIL(h);
        }
        if (h->consumed == XH_ITEMS) {
            coil_mutex_unlock(h->m);
            return;
        }
        h->sum_out += h->item;
        h->full = 0;
        if (++h->consumed == XH_ITEMS) coil_cond_broadcast(h->not_full);
        coil_mutex_unlock(h->m);
        coil_cond_signal(h->not_full);
    }
}

static void xh_main(void *arg) {
    struct xhunt *h = arg;
    coil_id ids[8];
    int n = 0;
    for (int s = 0; s < 2; s++) {
        ids[n++] = coil_spawn_on(s, xh_producer, h, NULL);
        for (int i = 0; i < 3; i++)
            ids[n++] = coil_spawn_on(s, xh_consumer, h, NULL);
    }
    for (int i = 0; i < n; i++)
        if (coil_join(ids[i], COIL_FOREVER) != 0)
            __atomic_add_fetch(&h->failures, 1, __ATOMIC_RELAXED);
}

static void test_group_lost_wakeup_hunt(void **state) {
    (void)state;
    struct xhunt h = {0};
    assert_int_equal(coil_mutex_open(&h.m), 0);
    assert_int_equal(coil_cond_open(&h.not_empty), 0);
    assert_int_equal(coil_cond_open(&h.not_full), 0);
    assert_int_equal(coil_run_group(2, xh_main, &h), 0);
    assert_int_equal(h.failures, 0);
    assert_int_equal(h.consumed, XH_ITEMS);
    assert_int_equal(h.sum_in, (long)XH_ITEMS * (XH_ITEMS + 1) / 2);
    assert_int_equal(h.sum_out, h.sum_in);
    print_message("%ld consumer timeouts\n", h.timeouts);
    assert_int_equal(coil_cond_free(h.not_empty), 0);
    assert_int_equal(coil_cond_free(h.not_full), 0);
    assert_int_equal(coil_mutex_free(h.m), 0);
}

/* Deadlines racing hand-offs across schedulers: tasklets on both take 2
 * units of a semaphore with deadlines of 0 to 15 us, so that a unit is
 * often released to a waiter whose deadline is expiring on the other
 * thread at that moment. Exactly one of them may win the wait: a unit
 * handed to a waiter that then reports -ETIMEDOUT would be lost (the
 * count at the end says so), a waiter woken twice would break an
 * invariant. */
#define XT_TASKLETS 6 /* per scheduler */
#define XT_ROUNDS   3000

struct xtimeout {
    coil_sem *s;
    int holders, max_holders; /* atomic */
    long timeouts, acquired;  /* atomic */
    int failures;             /* atomic */
};

static void xt_worker(void *arg) {
    struct xtimeout *x = arg;
    for (int i = 0; i < XT_ROUNDS; i++) {
        int rc = coil_sem_acquire(x->s, coil_now() + (i % 4) * 5 * COIL_USEC);
        if (rc == -ETIMEDOUT) {
            __atomic_add_fetch(&x->timeouts, 1, __ATOMIC_RELAXED);
            continue;
        }
        if (rc != 0) {
            __atomic_add_fetch(&x->failures, 1, __ATOMIC_RELAXED);
            return;
        }
        __atomic_add_fetch(&x->acquired, 1, __ATOMIC_RELAXED);
        int h = __atomic_add_fetch(&x->holders, 1, __ATOMIC_RELAXED);
        int mx = __atomic_load_n(&x->max_holders, __ATOMIC_RELAXED);
        while (h > mx && !__atomic_compare_exchange_n(&x->max_holders, &mx, h, false,
                                                      __ATOMIC_RELAXED, __ATOMIC_RELAXED)) {
        }
        if (i % 2) coil_yield();
        __atomic_sub_fetch(&x->holders, 1, __ATOMIC_RELAXED);
        if (coil_sem_release(x->s) != 0) __atomic_add_fetch(&x->failures, 1, __ATOMIC_RELAXED);
    }
}

static void xt_main(void *arg) {
    struct xtimeout *x = arg;
    coil_id ids[2 * XT_TASKLETS];
    int n = 0;
    for (int s = 0; s < 2; s++)
        for (int i = 0; i < XT_TASKLETS; i++)
            ids[n++] = coil_spawn_on(s, xt_worker, x, NULL);
    for (int i = 0; i < n; i++)
        if (coil_join(ids[i], COIL_FOREVER) != 0)
            __atomic_add_fetch(&x->failures, 1, __ATOMIC_RELAXED);
    if (coil_sem_value(x->s) != 2) __atomic_add_fetch(&x->failures, 1, __ATOMIC_RELAXED);
}

static void test_group_sem_deadline_races(void **state) {
    (void)state;
    struct xtimeout x = {0};
    assert_int_equal(coil_sem_open(&x.s, 2), 0);
    assert_int_equal(coil_run_group(2, xt_main, &x), 0);
    print_message("%ld acquired, %ld timed out\n", x.acquired, x.timeouts);
    assert_int_equal(x.failures, 0);
    assert_true(x.max_holders <= 2);
    assert_int_equal(x.acquired + x.timeouts, 2L * XT_TASKLETS * XT_ROUNDS);
    assert_int_equal(coil_sem_free(x.s), 0);
}

/* Across schedulers: a kill and a deadline while waiting on another
 * scheduler's mutex, and EOWNERDEAD handed to a waiter on the other one. */
struct xk {
    coil_mutex *m;
    int rc_kill, rc_timeout, rc_dead, unlock_dead;
};

static void xk_kill_victim(void *arg) {
    struct xk *x = arg;
    x->rc_kill = coil_mutex_lock(x->m);
}

static void xk_timeout(void *arg) {
    struct xk *x = arg;
    x->rc_timeout = coil_mutex_lock_dl(x->m, ms_from_now(20));
}

static void xk_dead_waiter(void *arg) {
    struct xk *x = arg;
    x->rc_dead = coil_mutex_lock(x->m);
    x->unlock_dead = coil_mutex_unlock(x->m);
}

static void xk_holder(void *arg) {
    struct xk *x = arg;
    coil_mutex_lock(x->m);
    coil_sleep(30 * COIL_MSEC);
    /* ends holding it */
}

static void xk_main(void *arg) {
    struct xk *x = arg;
    EXPECT_EQ(coil_mutex_lock(x->m), 0);
    coil_id v = coil_spawn_on(1, xk_kill_victim, x, NULL);
    coil_id t = coil_spawn_on(1, xk_timeout, x, NULL);
    coil_sleep(5 * COIL_MSEC);
    EXPECT_EQ(coil_kill(v), 0);
    EXPECT_EQ(coil_join(v, COIL_FOREVER), 0);
    EXPECT_EQ(coil_join(t, COIL_FOREVER), 0);
    EXPECT_EQ(x->rc_kill, -ECANCELED);
    EXPECT_EQ(x->rc_timeout, -ETIMEDOUT);
    EXPECT_EQ(coil_mutex_unlock(x->m), 0);
    coil_id h = coil_spawn(xk_holder, x, NULL);
    coil_yield();
    coil_id w = coil_spawn_on(1, xk_dead_waiter, x, NULL);
    EXPECT_EQ(coil_join(h, COIL_FOREVER), 0);
    EXPECT_EQ(coil_join(w, COIL_FOREVER), 0);
    EXPECT_EQ(x->rc_dead, -EOWNERDEAD);
    EXPECT_EQ(x->unlock_dead, 0);
    EXPECT_EQ(coil_mutex_trylock(x->m), 0);
    EXPECT_EQ(coil_mutex_unlock(x->m), 0);
}

static void test_group_kill_timeout_ownerdead(void **state) {
    (void)state;
    struct xk x = {0};
    assert_int_equal(coil_mutex_open(&x.m), 0);
    coil_test_reset_failures();
    assert_int_equal(coil_run_group(2, xk_main, &x), 0);
    coil_test_assert_no_failure();
    assert_int_equal(coil_mutex_free(x.m), 0);
}

/* Opposite-order locking across two schedulers: the group's detector. */
static void lock_ab_on(void *arg) {
    struct dl *d = arg;
    int i = coil_sched_index();
    coil_mutex *first = i ? d->b : d->a, *second = i ? d->a : d->b;
    if (coil_mutex_lock(first) != 0) return;
    /* Not a sleep: under Valgrind a scheduler's thread may start later
     * than any sleep, and the other would then take both mutexes. */
    coil_wg_done(d->both);
    coil_wg_wait(d->both, COIL_FOREVER);
    d->rc[i] = coil_mutex_lock(second);
    d->unlock_rc[i] = coil_mutex_unlock(first);
}

static void xdl_main(void *arg) {
    struct dl *d = arg;
    coil_wg_add(d->both, 2);
    coil_spawn_on(0, lock_ab_on, arg, NULL);
    coil_spawn_on(1, lock_ab_on, arg, NULL);
}

static void test_group_opposite_order_deadlock(void **state) {
    (void)state;
    struct dl d = {0};
    assert_int_equal(coil_mutex_open(&d.a), 0);
    assert_int_equal(coil_mutex_open(&d.b), 0);
    assert_int_equal(coil_wg_open(&d.both), 0);
    struct coil_test_stderr cap;
    coil_test_stderr_begin(&cap);
    int rc = coil_run_group(2, xdl_main, &d);
    char *err = coil_test_stderr_end(&cap);
    print_message("%s", err);
    assert_int_equal(rc, -EDEADLK);
    /* Each scheduler kills its own tasklets in its own step: the first one
     * killed unlocks its first mutex, which may reach the other before that
     * one's kill does (then it locks it, and ends holding both). */
    assert_true(d.rc[0] == -ECANCELED || d.rc[1] == -ECANCELED);
    assert_true(d.rc[0] == -ECANCELED || d.rc[0] == 0);
    assert_true(d.rc[1] == -ECANCELED || d.rc[1] == 0);
    assert_int_equal(d.unlock_rc[0], 0);
    assert_int_equal(d.unlock_rc[1], 0);
    assert_non_null(strstr(err, "on mutex lock"));
    assert_non_null(strstr(err, "shared"));
    free(err);
    assert_int_equal(coil_mutex_free(d.a), 0);
    assert_int_equal(coil_mutex_free(d.b), 0);
    assert_int_equal(coil_wg_free(d.both), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_outside_a_tasklet),
        cmocka_unit_test(test_null_and_other_run),
        cmocka_unit_test(test_mutex_contract),
        cmocka_unit_test(test_mutex_kill_while_waiting),
        cmocka_unit_test(test_mutex_fifo_handoff),
        cmocka_unit_test(test_mutex_1000_contenders),
        cmocka_unit_test(test_mutex_owner_dead),
        cmocka_unit_test(test_cond_contract),
        cmocka_unit_test(test_cond_signal_passed_on_kill),
        cmocka_unit_test(test_cond_lost_wakeup_hunt),
        cmocka_unit_test(test_sem_contract),
        cmocka_unit_test(test_sem_kill_storm),
        cmocka_unit_test(test_wg_contract),
        cmocka_unit_test(test_opposite_order_deadlock),
        cmocka_unit_test(test_dump_lines),
        cmocka_unit_test(test_group_contention),
        cmocka_unit_test(test_group_lost_wakeup_hunt),
        cmocka_unit_test(test_group_sem_deadline_races),
        cmocka_unit_test(test_group_kill_timeout_ownerdead),
        cmocka_unit_test(test_group_opposite_order_deadlock),
    };
#ifndef _WIN32
    coil_test_apply_filter();
#endif
    return cmocka_run_group_tests(tests, NULL, NULL);
}
