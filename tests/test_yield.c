/* coil_yield: round-robin order, fairness among busy tasklets, a lone
 * yield, that a set of tasklets that only yield cannot starve timers, and
 * that each tasklet keeps its own errno across switches. */
#include "coil_test.h"

#define LOG_MAX 4096

struct rr_log {
    int n;
    int seq[LOG_MAX];
    int bad_rc;
};

struct rr_arg {
    struct rr_log *log;
    int tag;
    int rounds;
};

static void rr_worker(void *arg) {
    struct rr_arg *a = arg;
    for (int i = 0; i < a->rounds; i++) {
        a->log->seq[a->log->n++] = a->tag;
        if (coil_yield() != 0) a->log->bad_rc++;
    }
}

static void rr_main(void *arg) {
    struct rr_log *log = arg;
    static struct rr_arg args[3];
    for (int i = 0; i < 3; i++) {
        args[i] = (struct rr_arg){.log = log, .tag = i, .rounds = 5};
        coil_spawn(rr_worker, &args[i], NULL);
    }
}

static void test_round_robin_order(void **state) {
    (void)state;
    static struct rr_log log;
    memset(&log, 0, sizeof log);
    COIL_RUN_OK(rr_main, &log);
    assert_int_equal(log.bad_rc, 0);
    assert_int_equal(log.n, 15);
    for (int i = 0; i < 15; i++)
        assert_int_equal(log.seq[i], i % 3);
}

/* main takes part too: it goes behind everyone it spawned. */
static void rr_with_main(void *arg) {
    struct rr_log *log = arg;
    static struct rr_arg args[2];
    for (int i = 0; i < 2; i++) {
        args[i] = (struct rr_arg){.log = log, .tag = i + 1, .rounds = 3};
        coil_spawn(rr_worker, &args[i], NULL);
    }
    for (int i = 0; i < 3; i++) {
        log->seq[log->n++] = 0;
        if (coil_yield() != 0) log->bad_rc++;
    }
}

static void test_round_robin_includes_the_spawner(void **state) {
    (void)state;
    static struct rr_log log;
    memset(&log, 0, sizeof log);
    COIL_RUN_OK(rr_with_main, &log);
    assert_int_equal(log.bad_rc, 0);
    assert_int_equal(log.n, 9);
    for (int i = 0; i < 9; i++)
        assert_int_equal(log.seq[i], i % 3);
}

/* Many busy tasklets: after every yield, no tasklet is more than one round
 * ahead of any other. */
#define FAIR_N      50
#define FAIR_ROUNDS 200

struct fair {
    int count[FAIR_N];
    int spread_violations;
    int max_spread;
    int bad_rc;
    int done;
};

struct fair_arg {
    struct fair *f;
    int i;
};

static void fair_worker(void *arg) {
    struct fair_arg *a = arg;
    struct fair *f = a->f;
    for (int r = 0; r < FAIR_ROUNDS; r++) {
        f->count[a->i]++;
        int lo = f->count[0], hi = f->count[0];
        for (int k = 1; k < FAIR_N; k++) {
            if (f->count[k] < lo) lo = f->count[k];
            if (f->count[k] > hi) hi = f->count[k];
        }
        if (hi - lo > f->max_spread) f->max_spread = hi - lo;
        if (hi - lo > 1) f->spread_violations++;
        if (coil_yield() != 0) f->bad_rc++;
    }
    f->done++;
}

static void fair_main(void *arg) {
    struct fair *f = arg;
    static struct fair_arg args[FAIR_N];
    for (int i = 0; i < FAIR_N; i++) {
        args[i] = (struct fair_arg){.f = f, .i = i};
        coil_spawn(fair_worker, &args[i], NULL);
    }
}

static void test_yield_is_fair(void **state) {
    (void)state;
    static struct fair f;
    memset(&f, 0, sizeof f);
    COIL_RUN_OK(fair_main, &f);
    assert_int_equal(f.done, FAIR_N);
    assert_int_equal(f.bad_rc, 0);
    assert_int_equal(f.spread_violations, 0);
    assert_int_equal(f.max_spread, 1);
    for (int i = 0; i < FAIR_N; i++)
        assert_int_equal(f.count[i], FAIR_ROUNDS);
}

struct alone {
    int rc[100];
    int64_t elapsed;
};

static void yield_alone(void *arg) {
    struct alone *a = arg;
    int64_t t0 = coil_now();
    for (int i = 0; i < 100; i++)
        a->rc[i] = coil_yield();
    a->elapsed = coil_now() - t0;
}

static void test_yield_alone_returns_at_once(void **state) {
    (void)state;
    struct alone a;
    memset(&a, 0xff, sizeof a);
    COIL_RUN_OK(yield_alone, &a);
    for (int i = 0; i < 100; i++)
        assert_int_equal(a.rc[i], 0);
    /* Nothing to wait for: 100 yields take far less than a second. */
    assert_true(a.elapsed >= 0);
    assert_true(a.elapsed < COIL_SEC);
}

/* A yield while the only other tasklets sleep returns at once too (it does
 * not wait for their timers). */
struct with_sleepers {
    int64_t yield_took;
    int yield_rc;
    int sleep_rc;
    int sleeper_done;
};

static void long_sleeper(void *arg) {
    struct with_sleepers *w = arg;
    w->sleep_rc = coil_sleep(10 * COIL_SEC);
    w->sleeper_done = 1;
}

static void yield_among_sleepers(void *arg) {
    struct with_sleepers *w = arg;
    coil_id id = coil_spawn(long_sleeper, w, NULL);
    coil_yield(); /* the sleeper starts and parks */
    int64_t t0 = coil_now();
    w->yield_rc = coil_yield();
    w->yield_took = coil_now() - t0;
    coil_kill(id); /* no need to wait for it */
}

static void test_yield_does_not_wait_for_sleepers(void **state) {
    (void)state;
    struct with_sleepers w = {0};
    COIL_RUN_OK(yield_among_sleepers, &w);
    assert_int_equal(w.yield_rc, 0);
    assert_true(w.yield_took < 5 * COIL_SEC);
    assert_int_equal(w.sleeper_done, 1);
    assert_int_equal(w.sleep_rc, -ECANCELED);
}

/* Tasklets that do nothing but yield must not keep a timer from firing. */
struct starve {
    volatile int woke;
    int spins_after_timeout;
    long spins;
    int bad_rc;
};

static void starve_sleeper(void *arg) {
    struct starve *s = arg;
    if (coil_sleep(10 * COIL_MSEC) == 0) s->woke = 1;
}

static void starve_spinner(void *arg) {
    struct starve *s = arg;
    int64_t give_up = coil_now() + 10 * COIL_SEC;
    while (!s->woke) {
        if (coil_now() > give_up) {
            s->spins_after_timeout = 1;
            break;
        }
        s->spins++;
        if (coil_yield() != 0) s->bad_rc++;
    }
}

static void starve_main(void *arg) {
    coil_spawn(starve_sleeper, arg, NULL);
    for (int i = 0; i < 3; i++)
        coil_spawn(starve_spinner, arg, NULL);
}

static void test_yielding_tasklets_do_not_starve_timers(void **state) {
    (void)state;
    struct starve s = {0};
    COIL_RUN_OK(starve_main, &s);
    assert_int_equal(s.woke, 1);
    assert_int_equal(s.spins_after_timeout, 0);
    assert_int_equal(s.bad_rc, 0);
    assert_true(s.spins > 0);
}

/* A tasklet spawned during a round of yields joins the back of the queue. */
struct late {
    int n;
    int seq[16];
};

static struct late *late_log;

static void late_tagged(void *arg) {
    late_log->seq[late_log->n++] = (int)(intptr_t)arg;
    coil_yield();
    late_log->seq[late_log->n++] = (int)(intptr_t)arg;
}

static void late_main(void *arg) {
    late_log = arg;
    coil_spawn(late_tagged, (void *)1, NULL);
    coil_spawn(late_tagged, (void *)2, NULL);
    coil_yield(); /* 1 and 2 run once and queue behind main */
    coil_spawn(late_tagged, (void *)3, NULL);
    coil_yield(); /* queue: 1 2 3 main */
}

static void test_spawn_during_yields_queues_at_the_back(void **state) {
    (void)state;
    struct late log = {0};
    COIL_RUN_OK(late_main, &log);
    int want[] = {1, 2, 1, 2, 3, 3};
    assert_int_equal(log.n, 6);
    for (int i = 0; i < 6; i++)
        assert_int_equal(log.seq[i], want[i]);
}

/* errno across switches: coil.h promises that coil never touches errno, so
 * a tasklet finds its own value after a yield or a sleep, whatever other
 * tasklets (and the scheduler's own system calls) did to it meanwhile. */
struct errno_keeper {
    int mine;
    int after_yield, after_sleep;
};

static void keep_errno(void *arg) {
    struct errno_keeper *k = arg;
    errno = k->mine;
    coil_yield();
    k->after_yield = errno;
    errno = k->mine;
    coil_sleep(2 * COIL_MSEC);
    k->after_sleep = errno;
}

static void errno_main(void *arg) {
    struct errno_keeper *k = arg;
    for (int i = 0; i < 3; i++)
        coil_spawn(keep_errno, &k[i], NULL);
}

static void test_each_tasklet_keeps_its_errno(void **state) {
    (void)state;
    struct errno_keeper k[3] = {{.mine = 1001}, {.mine = 1002}, {.mine = 1003}};
    COIL_RUN_OK(errno_main, k);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(k[i].after_yield, k[i].mine);
        assert_int_equal(k[i].after_sleep, k[i].mine);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_robin_order),
        cmocka_unit_test(test_round_robin_includes_the_spawner),
        cmocka_unit_test(test_yield_is_fair),
        cmocka_unit_test(test_yield_alone_returns_at_once),
        cmocka_unit_test(test_yield_does_not_wait_for_sleepers),
        cmocka_unit_test(test_yielding_tasklets_do_not_starve_timers),
        cmocka_unit_test(test_spawn_during_yields_queues_at_the_back),
        cmocka_unit_test(test_each_tasklet_keeps_its_errno),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
