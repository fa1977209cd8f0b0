/* coil_sleep, coil_sleep_until and coil_now: never wake early, wake in
 * deadline order (including after timers are taken out of the heap by a
 * kill), past deadlines and non-positive durations return at once, the
 * -EINVAL cases, very long sleeps, and errno left alone. Upper bounds on
 * timing are deliberately loose: the machine is shared. */
#include "coil_test.h"

static void test_now_is_monotonic_and_callable_anywhere(void **state) {
    (void)state;
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    int64_t n1 = coil_now();
    int64_t n2 = coil_now();
    clock_gettime(CLOCK_MONOTONIC, &b);
    int64_t lo = (int64_t)a.tv_sec * COIL_SEC + a.tv_nsec;
    int64_t hi = (int64_t)b.tv_sec * COIL_SEC + b.tv_nsec;
    assert_true(n1 >= lo);
    assert_true(n2 >= n1);
    assert_true(hi >= n2);
}

/* ---- lower bounds ------------------------------------------------------- */

struct lower {
    int rc[4];
    int64_t asked[4];
    int64_t took[4];
    int until_rc;
    int64_t until_deadline, until_woke;
};

static void sleep_some(void *arg) {
    struct lower *l = arg;
    const int64_t durations[4] = {1, 50 * COIL_USEC, 2 * COIL_MSEC, 20 * COIL_MSEC};
    for (int i = 0; i < 4; i++) {
        l->asked[i] = durations[i];
        int64_t t0 = coil_now();
        l->rc[i] = coil_sleep(durations[i]);
        l->took[i] = coil_now() - t0;
    }
    l->until_deadline = coil_now() + 15 * COIL_MSEC;
    l->until_rc = coil_sleep_until(l->until_deadline);
    l->until_woke = coil_now();
}

static void test_sleep_never_wakes_early(void **state) {
    (void)state;
    struct lower l;
    memset(&l, 0xff, sizeof l);
    COIL_RUN_OK(sleep_some, &l);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(l.rc[i], 0);
        assert_true(l.took[i] >= l.asked[i]);
        assert_true(l.took[i] < l.asked[i] + 5 * COIL_SEC);
    }
    assert_int_equal(l.until_rc, 0);
    assert_true(l.until_woke >= l.until_deadline);
}

/* ---- at once, and -EINVAL ----------------------------------------------- */

struct at_once {
    int zero, negative, most_negative;
    int until_zero, until_past, until_now;
    int64_t took;
    int inval_forever, inval_minus2, inval_min;
};

static void sleep_at_once(void *arg) {
    struct at_once *a = arg;
    /* None of these waits for anything: the batch is far quicker than a second. */
    int64_t t0 = coil_now();
    a->zero = coil_sleep(0);
    a->negative = coil_sleep(-1);
    a->most_negative = coil_sleep(INT64_MIN);
    a->until_zero = coil_sleep_until(0);
    a->until_past = coil_sleep_until(coil_now() - COIL_MSEC);
    a->until_now = coil_sleep_until(coil_now());
    a->took = coil_now() - t0;
    a->inval_forever = coil_sleep_until(COIL_FOREVER);
    a->inval_minus2 = coil_sleep_until(-2);
    a->inval_min = coil_sleep_until(INT64_MIN);
}

static void test_sleep_at_once_and_einval(void **state) {
    (void)state;
    struct at_once a;
    memset(&a, 0x55, sizeof a);
    COIL_RUN_OK(sleep_at_once, &a);
    assert_int_equal(a.zero, 0);
    assert_int_equal(a.negative, 0);
    assert_int_equal(a.most_negative, 0);
    assert_int_equal(a.until_zero, 0);
    assert_int_equal(a.until_past, 0);
    assert_int_equal(a.until_now, 0);
    assert_true(a.took >= 0 && a.took < COIL_SEC);
    assert_int_equal(a.inval_forever, -EINVAL);
    assert_int_equal(a.inval_minus2, -EINVAL);
    assert_int_equal(a.inval_min, -EINVAL);
}

/* ---- deadline order ----------------------------------------------------- */

#define ORDER_N    200
#define ORDER_STEP (50 * COIL_USEC)

struct order {
    int64_t base;
    int64_t deadline[ORDER_N];
    coil_id id[ORDER_N];
    int killed[ORDER_N];
    int rc[ORDER_N];
    int early[ORDER_N];
    int log[ORDER_N];
    int n;
    int parked_in_time;
};

struct order_arg {
    struct order *o;
    int i;
};

static void order_sleeper(void *arg) {
    struct order_arg *a = arg;
    struct order *o = a->o;
    o->rc[a->i] = coil_sleep_until(o->deadline[a->i]);
    if (o->rc[a->i] == 0) {
        if (coil_now() < o->deadline[a->i]) o->early[a->i] = 1;
        o->log[o->n++] = a->i;
    }
}

static void order_main(void *arg) {
    struct order *o = arg;
    static struct order_arg args[ORDER_N];
    /* Deadlines are a fixed permutation of base + k * step (k distinct),
     * computed once here so that late starts cannot reorder them. */
    o->base = coil_now() + 100 * COIL_MSEC;
    for (int i = 0; i < ORDER_N; i++) {
        int k = (i * 73 + 11) % ORDER_N; /* 73 is prime to 200: a permutation */
        o->deadline[i] = o->base + k * ORDER_STEP;
        args[i] = (struct order_arg){.o = o, .i = i};
        o->id[i] = coil_spawn(order_sleeper, &args[i], NULL);
    }
    coil_yield(); /* all of them start and park */
    o->parked_in_time = coil_now() < o->base;
    /* Take every seventh out of the middle of the timer heap (those still
     * parked: after a stall some deadlines may have passed already). */
    for (int i = 0; i < ORDER_N; i += 7) {
        if (o->deadline[i] <= coil_now()) continue;
        o->killed[i] = 1;
        coil_kill(o->id[i]);
    }
}

static void test_sleepers_wake_in_deadline_order(void **state) {
    (void)state;
    static struct order o;
    memset(&o, 0, sizeof o);
    COIL_RUN_OK(order_main, &o);
    int expected = 0;
    for (int i = 0; i < ORDER_N; i++) {
        if (o.killed[i]) {
            assert_int_equal(o.rc[i], -ECANCELED);
        } else {
            assert_int_equal(o.rc[i], 0);
            assert_int_equal(o.early[i], 0);
            expected++;
        }
    }
    assert_int_equal(o.n, expected);
    if (!o.parked_in_time) {
        /* The machine stalled for 100 ms before everyone had parked: a late
         * starter may have found its deadline passed. Nothing to conclude. */
        print_message("machine too slow to check the order; skipped\n");
        return;
    }
    for (int k = 1; k < o.n; k++)
        assert_true(o.deadline[o.log[k - 1]] < o.deadline[o.log[k]]);
}

/* The timer heap under churn: many sleepers with scattered deadlines, and
 * kills in random order, some before any timer fired and some while they
 * are firing. Whoever is not killed wakes in deadline order, never early. */
#define CHURN_MAX 1000

struct churn {
    int n;
    int64_t deadline[CHURN_MAX];
    coil_id id[CHURN_MAX];
    int killed[CHURN_MAX];
    int rc[CHURN_MAX];
    int woke_early;
    int log[CHURN_MAX];
    int logged;
    int64_t parked_at, first_deadline;
};

struct churn_arg {
    struct churn *c;
    int i;
};

static uint64_t churn_rand(uint64_t *s) {
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void churn_sleeper(void *arg) {
    struct churn_arg *a = arg;
    struct churn *c = a->c;
    c->rc[a->i] = coil_sleep_until(c->deadline[a->i]);
    if (c->rc[a->i] == 0) {
        if (coil_now() < c->deadline[a->i]) c->woke_early++;
        c->log[c->logged++] = a->i;
    }
}

static void churn_main(void *arg) {
    struct churn *c = arg;
    static struct churn_arg args[CHURN_MAX];
    uint64_t seed = 0x9e3779b97f4a7c15ull;
    int64_t base = coil_now() + 100 * COIL_MSEC;
    c->first_deadline = INT64_MAX;
    for (int i = 0; i < c->n; i++) {
        /* Distinct: a random slot of 20 us in a window of 40 ms, made unique
         * by the index in the low bits. */
        int64_t slot = (int64_t)(churn_rand(&seed) % 2000);
        c->deadline[i] = base + slot * 20 * COIL_USEC + i;
        if (c->deadline[i] < c->first_deadline) c->first_deadline = c->deadline[i];
        args[i] = (struct churn_arg){.c = c, .i = i};
        c->id[i] = coil_spawn(churn_sleeper, &args[i], NULL);
    }
    coil_yield();
    c->parked_at = coil_now();
    /* A quarter killed at once, in random order (only those whose deadline
     * is still ahead, so surely parked, even if the machine stalled)... */
    for (int k = 0; k < c->n / 4; k++) {
        int i = (int)(churn_rand(&seed) % (uint64_t)c->n);
        if (!c->killed[i] && c->deadline[i] > coil_now()) {
            c->killed[i] = 1;
            coil_kill(c->id[i]);
        }
    }
    /* ... and more in the middle of the window, among timers that fire.
     * Only those whose deadline is still ahead: one whose timer has fired
     * but that has not run yet has finished its sleep (see test_kill.c). */
    coil_sleep_until(base + 20 * COIL_MSEC);
    for (int k = 0; k < c->n / 4; k++) {
        int i = (int)(churn_rand(&seed) % (uint64_t)c->n);
        if (!c->killed[i] && c->deadline[i] > coil_now() + COIL_MSEC) {
            c->killed[i] = 1;
            coil_kill(c->id[i]);
        }
    }
}

static void test_timer_heap_churn(void **state) {
    (void)state;
    static struct churn c;
    memset(&c, 0, sizeof c);
    c.n = coil_test_under_valgrind() ? 200 : CHURN_MAX;
    for (int i = 0; i < c.n; i++)
        c.rc[i] = 1; /* "still sleeping" */
    COIL_RUN_OK(churn_main, &c);
    int alive = 0;
    for (int i = 0; i < c.n; i++) {
        if (c.killed[i]) {
            assert_int_equal(c.rc[i], -ECANCELED);
        } else {
            assert_int_equal(c.rc[i], 0);
            alive++;
        }
    }
    assert_int_equal(c.woke_early, 0);
    assert_int_equal(c.logged, alive);
    if (c.parked_at >= c.first_deadline) {
        print_message("machine too slow to check the order; skipped\n");
        return;
    }
    for (int k = 1; k < c.logged; k++)
        assert_true(c.deadline[c.log[k - 1]] < c.deadline[c.log[k]]);
}

/* Disarming is lazy (src/timer.c): a satisfied wait leaves its timer's slot
 * keyed by the old deadline. With other timers in the heap, a later wait
 * with an earlier deadline must still expire before them, one with a later
 * deadline must not hold up an earlier timer behind it, and a tasklet that
 * ends with a stale slot must leave the heap empty (coil_run asserts that at
 * its end). Checked by the order of events, not by timing. */
struct lazy {
    coil_chan *ch;
    int rc_early, rc_late, rc_short;
    char log[8];
    int n;
};

static void lazy_note(struct lazy *l, char c) {
    if (l->n < (int)sizeof l->log - 1) l->log[l->n++] = c;
}

/* Sends one element: spawned just before a receive parks, it satisfies the
 * receive after its timer is armed. */
static void lazy_send_one(void *arg) {
    struct lazy *l = arg;
    int v = 1;
    coil_chan_send(l->ch, &v);
}

static void lazy_sleep_100ms(void *arg) {
    coil_sleep(100 * COIL_MSEC);
    lazy_note(arg, 'b');
}

static void lazy_sleep_30ms(void *arg) {
    coil_sleep(30 * COIL_MSEC);
    lazy_note(arg, 's');
}

static void lazy_short_lived(void *arg) {
    struct lazy *l = arg;
    int v;
    l->rc_short = coil_chan_recv_dl(l->ch, &v, coil_now() + 10 * COIL_SEC);
}

static void lazy_main(void *arg) {
    struct lazy *l = arg;
    coil_chan *never;
    coil_chan_open(&l->ch, sizeof(int), 0);
    coil_chan_open(&never, sizeof(int), 0);
    int v;
    /* A stale slot 10 s out, a sleeper at 100 ms, then a 20 ms deadline: it
     * must expire first ("e" before "b"). */
    coil_spawn(lazy_send_one, l, NULL);
    coil_chan_recv_dl(l->ch, &v, coil_now() + 10 * COIL_SEC);
    coil_spawn(lazy_sleep_100ms, l, NULL);
    l->rc_early = coil_chan_recv_dl(never, &v, coil_now() + 20 * COIL_MSEC);
    lazy_note(l, 'e');
    coil_sleep(150 * COIL_MSEC); /* the sleeper is done */
    /* A stale slot 5 ms out, then a 60 ms deadline, and a sleeper at 30 ms
     * behind the stale slot: the sleeper wakes first ("s" before "l"). */
    coil_spawn(lazy_send_one, l, NULL);
    coil_chan_recv_dl(l->ch, &v, coil_now() + 5 * COIL_MSEC);
    coil_spawn(lazy_sleep_30ms, l, NULL);
    l->rc_late = coil_chan_recv_dl(never, &v, coil_now() + 60 * COIL_MSEC);
    lazy_note(l, 'l');
    /* A tasklet that ends while its slot (10 s out) is still in the heap. */
    coil_spawn(lazy_short_lived, l, NULL);
    coil_spawn(lazy_send_one, l, NULL);
    coil_sleep(10 * COIL_MSEC);
    coil_chan_free(never);
    coil_chan_free(l->ch);
}

static void test_lazy_disarm_keeps_deadlines_exact(void **state) {
    (void)state;
    struct lazy l = {0};
    COIL_RUN_OK(lazy_main, &l);
    assert_int_equal(l.rc_early, -ETIMEDOUT);
    assert_int_equal(l.rc_late, -ETIMEDOUT);
    assert_int_equal(l.rc_short, 0);
    assert_string_equal(l.log, "ebsl");
}

/* Many sleepers on the same deadline all wake. */
struct same {
    int64_t deadline;
    int woke;
    int bad;
};

static void same_sleeper(void *arg) {
    struct same *s = arg;
    if (coil_sleep_until(s->deadline) == 0 && coil_now() >= s->deadline)
        s->woke++;
    else
        s->bad++;
}

static void same_main(void *arg) {
    struct same *s = arg;
    s->deadline = coil_now() + 10 * COIL_MSEC;
    for (int i = 0; i < 64; i++)
        coil_spawn(same_sleeper, s, NULL);
}

static void test_same_deadline_all_wake(void **state) {
    (void)state;
    struct same s = {0};
    COIL_RUN_OK(same_main, &s);
    assert_int_equal(s.woke, 64);
    assert_int_equal(s.bad, 0);
}

/* Sleeps overlap: 100 tasklets sleeping 30 ms each take about 30 ms, not 3 s. */
static void overlap_sleeper(void *arg) {
    if (coil_sleep(30 * COIL_MSEC) == 0) (*(int *)arg)++;
}

static void overlap_main(void *arg) {
    for (int i = 0; i < 100; i++)
        coil_spawn(overlap_sleeper, arg, NULL);
}

static void test_sleeps_overlap(void **state) {
    (void)state;
    int done = 0;
    int64_t t0 = coil_now();
    COIL_RUN_OK(overlap_main, &done);
    int64_t took = coil_now() - t0;
    assert_int_equal(done, 100);
    assert_true(took >= 30 * COIL_MSEC);
    assert_true(took < 2 * COIL_SEC);
}

/* ---- very long sleeps ----------------------------------------------------- */

struct longest {
    coil_id id[3];
    int rc[3];
    int returned_before_kill[3];
    int killing;
};

struct longest_arg {
    struct longest *l;
    int i;
};

static void longest_sleeper(void *arg) {
    struct longest_arg *a = arg;
    int rc;
    switch (a->i) {
    case 0: rc = coil_sleep(INT64_MAX); break;
    case 1: rc = coil_sleep_until(INT64_MAX); break;
    default: rc = coil_sleep(INT64_MAX - coil_now() / 2); break;
    }
    a->l->rc[a->i] = rc;
    if (!a->l->killing) a->l->returned_before_kill[a->i] = 1;
}

static void longest_main(void *arg) {
    struct longest *l = arg;
    static struct longest_arg args[3];
    for (int i = 0; i < 3; i++) {
        args[i] = (struct longest_arg){.l = l, .i = i};
        l->id[i] = coil_spawn(longest_sleeper, &args[i], NULL);
    }
    coil_sleep(5 * COIL_MSEC);
    l->killing = 1;
    for (int i = 0; i < 3; i++)
        coil_kill(l->id[i]);
}

/* A duration so long that now + ns does not fit in int64_t is still a
 * (practically endless) sleep, ended here by a kill: not an error, not an
 * immediate return, and no signed overflow. */
static void test_very_long_sleep_parks_until_killed(void **state) {
    (void)state;
    struct longest l;
    memset(&l, 0, sizeof l);
    COIL_RUN_OK(longest_main, &l);
    static const char *const call[3] = {"coil_sleep(INT64_MAX)", "coil_sleep_until(INT64_MAX)",
                                        "coil_sleep(INT64_MAX - now / 2)"};
    int bad = 0;
    for (int i = 0; i < 3; i++) {
        if (l.rc[i] != -ECANCELED || l.returned_before_kill[i]) {
            print_message("%s returned %d%s\n", call[i], l.rc[i],
                          l.returned_before_kill[i] ? " before the kill" : "");
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}

/* ---- errno ---------------------------------------------------------------- */

/* coil.h: "errno itself is never touched". Each entry is errno right after
 * one call that was made with errno set to a marker. */
#define ERRNO_MARK 4242

struct errno_log {
    int n;
    struct {
        const char *what;
        int after;
    } entry[16];
};

static void errno_nap(void *arg) {
    (void)arg;
    coil_sleep(2 * COIL_MSEC);
}

static void errno_forever(void *arg) {
    (void)arg;
    coil_sleep(10 * COIL_SEC);
}

#define AFTER(log, call)                                                                           \
    do {                                                                                           \
        errno = ERRNO_MARK;                                                                        \
        call;                                                                                      \
        (log)->entry[(log)->n].what = #call;                                                       \
        (log)->entry[(log)->n++].after = errno;                                                    \
    } while (0)

static void errno_main(void *arg) {
    struct errno_log *log = arg;
    coil_id id = 0, forever;
    AFTER(log, id = coil_spawn(errno_nap, NULL, NULL));
    AFTER(log, coil_yield());
    AFTER(log, coil_sleep(0));
    AFTER(log, coil_sleep(COIL_MSEC));
    AFTER(log, coil_sleep_until(coil_now() + COIL_MSEC));
    AFTER(log, coil_join(id, COIL_FOREVER));
    forever = coil_spawn(errno_forever, NULL, NULL);
    AFTER(log, coil_join(forever, coil_now() + COIL_MSEC));
    AFTER(log, coil_kill(forever));
    AFTER(log, coil_self());
    AFTER(log, coil_name(1));
    AFTER(log, coil_now());
    AFTER(log, coil_sleep_until(-1));
    FILE *devnull = fopen("/dev/null", "w");
    if (devnull) {
        AFTER(log, coil_dump(devnull));
        fclose(devnull);
    }
}

static void test_calls_leave_errno_alone(void **state) {
    (void)state;
    struct errno_log log;
    memset(&log, 0, sizeof log);
    errno = ERRNO_MARK;
    int rc = coil_run(errno_main, &log);
    int after_run = errno;
    assert_int_equal(rc, 0);
    assert_int_equal(after_run, ERRNO_MARK);
    assert_int_equal(log.n, 13);
    int bad = 0;
    for (int i = 0; i < log.n; i++) {
        if (log.entry[i].after != ERRNO_MARK) {
            print_message("errno after %s: %d, not %d\n", log.entry[i].what, log.entry[i].after,
                          ERRNO_MARK);
            bad++;
        }
    }
    assert_int_equal(bad, 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_now_is_monotonic_and_callable_anywhere),
        cmocka_unit_test(test_sleep_never_wakes_early),
        cmocka_unit_test(test_sleep_at_once_and_einval),
        cmocka_unit_test(test_sleepers_wake_in_deadline_order),
        cmocka_unit_test(test_timer_heap_churn),
        cmocka_unit_test(test_lazy_disarm_keeps_deadlines_exact),
        cmocka_unit_test(test_same_deadline_all_wake),
        cmocka_unit_test(test_sleeps_overlap),
        cmocka_unit_test(test_very_long_sleep_parks_until_killed),
        cmocka_unit_test(test_calls_leave_errno_alone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
