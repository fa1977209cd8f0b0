/* coil_join: waits for the end, answers at once for a finished tasklet,
 * -ESRCH / -EDEADLK / -ETIMEDOUT, many joiners (with some of them leaving
 * early by timeout; a kill does not), and join chains. */
#include "coil_test.h"

struct target {
    int64_t sleep_ns;
    int finished;
    int64_t finished_at;
};

static void target_fn(void *arg) {
    struct target *t = arg;
    if (t->sleep_ns) coil_sleep(t->sleep_ns);
    t->finished = 1;
    t->finished_at = coil_now();
}

static void noop(void *arg) {
    (void)arg;
}

/* ---- basic -------------------------------------------------------------- */

struct basic {
    struct target t;
    int rc;
    int finished_when_returned;
    int rc_again;
    int rc_started_later;
    struct target t2;
    int t2_finished_when_returned;
};

static void basic_main(void *arg) {
    struct basic *b = arg;
    coil_id id = coil_spawn(target_fn, &b->t, NULL);
    b->rc = coil_join(id, COIL_FOREVER);
    b->finished_when_returned = b->t.finished;
    b->rc_again = coil_join(id, COIL_FOREVER);
    /* A tasklet that has not even started yet: join lets it run to its end. */
    coil_id id2 = coil_spawn(target_fn, &b->t2, NULL);
    b->rc_started_later = coil_join(id2, COIL_FOREVER);
    b->t2_finished_when_returned = b->t2.finished;
}

static void test_join_waits_for_the_end(void **state) {
    (void)state;
    struct basic b;
    memset(&b, 0, sizeof b);
    b.t.sleep_ns = 20 * COIL_MSEC;
    COIL_RUN_OK(basic_main, &b);
    assert_int_equal(b.rc, 0);
    assert_int_equal(b.finished_when_returned, 1);
    assert_int_equal(b.rc_again, 0);
    assert_int_equal(b.rc_started_later, 0);
    assert_int_equal(b.t2_finished_when_returned, 1);
}

struct finished {
    int rc_forever, rc_past_deadline, rc_zero_deadline;
    int64_t took;
};

static void finished_main(void *arg) {
    struct finished *f = arg;
    coil_id id = coil_spawn(noop, NULL, NULL);
    coil_yield(); /* it runs and finishes */
    int64_t t0 = coil_now();
    f->rc_forever = coil_join(id, COIL_FOREVER);
    /* A finished tasklet needs no waiting, so a passed deadline is no error. */
    f->rc_past_deadline = coil_join(id, coil_now() - COIL_SEC);
    f->rc_zero_deadline = coil_join(id, 0);
    f->took = coil_now() - t0;
}

static void test_join_finished_is_zero_at_once(void **state) {
    (void)state;
    struct finished f;
    memset(&f, 0x55, sizeof f);
    COIL_RUN_OK(finished_main, &f);
    assert_int_equal(f.rc_forever, 0);
    assert_int_equal(f.rc_past_deadline, 0);
    assert_int_equal(f.rc_zero_deadline, 0);
    assert_true(f.took < COIL_SEC);
}

/* ---- errors ------------------------------------------------------------- */

struct errors {
    int zero, negative, min, beyond, far_beyond, self, self_timed, main_from_child;
    int beyond_with_deadline;
};

static void join_main_from_child(void *arg) {
    struct errors *e = arg;
    /* main (id 1) is alive and waiting for us: joining it would deadlock at
     * the scheduler level, but as a call it is a legal wait with a timeout. */
    e->main_from_child = coil_join(1, coil_now() + COIL_MSEC);
}

static void errors_main(void *arg) {
    struct errors *e = arg;
    coil_id last = coil_spawn(join_main_from_child, e, NULL);
    e->zero = coil_join(0, COIL_FOREVER);
    e->negative = coil_join(-1, COIL_FOREVER);
    e->min = coil_join(INT64_MIN, COIL_FOREVER);
    e->beyond = coil_join(last + 1, COIL_FOREVER);
    e->far_beyond = coil_join(INT64_MAX, COIL_FOREVER);
    e->beyond_with_deadline = coil_join(last + 1, coil_now() + COIL_MSEC);
    e->self = coil_join(coil_self(), COIL_FOREVER);
    e->self_timed = coil_join(coil_self(), coil_now() + COIL_MSEC);
    coil_join(last, COIL_FOREVER);
}

static void test_join_errors(void **state) {
    (void)state;
    struct errors e;
    memset(&e, 0x55, sizeof e);
    COIL_RUN_OK(errors_main, &e);
    assert_int_equal(e.zero, -ESRCH);
    assert_int_equal(e.negative, -ESRCH);
    assert_int_equal(e.min, -ESRCH);
    assert_int_equal(e.beyond, -ESRCH);
    assert_int_equal(e.far_beyond, -ESRCH);
    assert_int_equal(e.beyond_with_deadline, -ESRCH);
    assert_int_equal(e.self, -EDEADLK);
    assert_int_equal(e.self_timed, -EDEADLK);
    assert_int_equal(e.main_from_child, -ETIMEDOUT);
}

/* ---- timeouts ----------------------------------------------------------- */

struct timeout {
    struct target t;
    int rc_timeout;
    int64_t deadline, returned_at;
    int finished_at_timeout;
    int rc_past;
    int finished_after_past;
    int rc_final;
};

static void timeout_main(void *arg) {
    struct timeout *to = arg;
    coil_id id = coil_spawn(target_fn, &to->t, NULL);
    to->deadline = coil_now() + 10 * COIL_MSEC;
    to->rc_timeout = coil_join(id, to->deadline);
    to->returned_at = coil_now();
    to->finished_at_timeout = to->t.finished;
    to->rc_past = coil_join(id, coil_now() - 1); /* passed: try once, do not wait */
    to->finished_after_past = to->t.finished;
    /* The timed-out join left no trace: a later join still works. */
    to->rc_final = coil_join(id, COIL_FOREVER);
}

static void test_join_timeout(void **state) {
    (void)state;
    struct timeout to;
    memset(&to, 0, sizeof to);
    to.t.sleep_ns = 300 * COIL_MSEC;
    COIL_RUN_OK(timeout_main, &to);
    assert_int_equal(to.rc_timeout, -ETIMEDOUT);
    assert_true(to.returned_at >= to.deadline);
    assert_int_equal(to.finished_at_timeout, 0);
    assert_int_equal(to.rc_past, -ETIMEDOUT);
    assert_int_equal(to.finished_after_past, 0);
    assert_int_equal(to.rc_final, 0);
    assert_int_equal(to.t.finished, 1);
}

/* ---- many joiners -------------------------------------------------------- */

#define JOINERS 24

struct crowd {
    struct target t;
    coil_id target_id;
    coil_id joiner_id[JOINERS];
    int rc[JOINERS];
    int saw_finished[JOINERS];
    int returned[JOINERS];
    int64_t deadline[JOINERS];
    int64_t returned_at[JOINERS];
};

struct joiner_arg {
    struct crowd *c;
    int i;
};

/* Joiner i: i % 4 == 1 times out early, i % 4 == 2 is killed, the rest
 * wait for the target to finish. */
static void crowd_joiner(void *arg) {
    struct joiner_arg *a = arg;
    struct crowd *c = a->c;
    c->rc[a->i] = coil_join(c->target_id, c->deadline[a->i]);
    c->returned_at[a->i] = coil_now();
    c->saw_finished[a->i] = c->t.finished;
    c->returned[a->i]++;
}

static void crowd_main(void *arg) {
    struct crowd *c = arg;
    static struct joiner_arg args[JOINERS];
    c->target_id = coil_spawn(target_fn, &c->t, &(coil_spawn_opts){.name = "target"});
    int64_t now = coil_now();
    for (int i = 0; i < JOINERS; i++) {
        c->deadline[i] = i % 4 == 1 ? now + 10 * COIL_MSEC : COIL_FOREVER;
        args[i] = (struct joiner_arg){.c = c, .i = i};
        c->joiner_id[i] = coil_spawn(crowd_joiner, &args[i], NULL);
    }
    coil_yield(); /* everyone parks */
    for (int i = 2; i < JOINERS; i += 4)
        coil_kill(c->joiner_id[i]);
}

static void test_many_joiners(void **state) {
    (void)state;
    static struct crowd c;
    memset(&c, 0, sizeof c);
    c.t.sleep_ns = 60 * COIL_MSEC;
    COIL_RUN_OK(crowd_main, &c);
    assert_int_equal(c.t.finished, 1);
    for (int i = 0; i < JOINERS; i++) {
        assert_int_equal(c.returned[i], 1);
        switch (i % 4) {
        case 1:
            assert_int_equal(c.rc[i], -ETIMEDOUT);
            assert_true(c.returned_at[i] >= c.deadline[i]);
            assert_int_equal(c.saw_finished[i], 0);
            break;
        case 2: /* killed while joining: the join still waits for the target */
            assert_int_equal(c.rc[i], 0);
            assert_int_equal(c.saw_finished[i], 1);
            assert_true(c.returned_at[i] >= c.t.finished_at);
            break;
        default:
            assert_int_equal(c.rc[i], 0);
            assert_int_equal(c.saw_finished[i], 1);
            assert_true(c.returned_at[i] >= c.t.finished_at);
            break;
        }
    }
}

/* A joiner that leaves early (timeout) and finishes before its target: the
 * target's end must not touch the departed joiner's (reused) stack. */
struct departed {
    struct target t;
    coil_id target;
    int rc;
    int reused_ok;
};

static void departing_joiner(void *arg) {
    struct departed *d = arg;
    d->rc = coil_join(d->target, coil_now() + 2 * COIL_MSEC);
}

static void stack_scribbler(void *arg) {
    (void)arg;
    volatile char buf[8192];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (char)0xa5;
    coil_sleep(40 * COIL_MSEC);
    (void)buf[0];
}

static void departed_main(void *arg) {
    struct departed *d = arg;
    d->target = coil_spawn(target_fn, &d->t, NULL);
    coil_id j = coil_spawn(departing_joiner, d, NULL);
    coil_join(j, COIL_FOREVER);
    /* Likely to get the departed joiner's pooled stack, and write over it. */
    coil_id s = coil_spawn(stack_scribbler, NULL, NULL);
    coil_join(d->target, COIL_FOREVER);
    coil_join(s, COIL_FOREVER);
    d->reused_ok = 1;
}

static void test_timed_out_joiner_is_forgotten(void **state) {
    (void)state;
    struct departed d;
    memset(&d, 0, sizeof d);
    d.t.sleep_ns = 20 * COIL_MSEC;
    COIL_RUN_OK(departed_main, &d);
    assert_int_equal(d.rc, -ETIMEDOUT);
    assert_int_equal(d.t.finished, 1);
    assert_int_equal(d.reused_ok, 1);
}

/* A chain: each tasklet joins the one spawned before it. */
#define CHAIN 50

struct chain {
    coil_id ids[CHAIN];
    int order[CHAIN];
    int n;
    int bad_rc;
};

struct chain_arg {
    struct chain *c;
    int i;
};

static void chain_link(void *arg) {
    struct chain_arg *a = arg;
    if (a->i > 0 && coil_join(a->c->ids[a->i - 1], COIL_FOREVER) != 0) a->c->bad_rc++;
    if (a->i == 0) coil_sleep(5 * COIL_MSEC);
    a->c->order[a->c->n++] = a->i;
}

static void chain_main(void *arg) {
    struct chain *c = arg;
    static struct chain_arg args[CHAIN];
    /* Spawned last to first is impossible with ids known only after spawn,
     * so link i joins ids[i - 1], which exists by the time i runs. */
    for (int i = 0; i < CHAIN; i++) {
        args[i] = (struct chain_arg){.c = c, .i = i};
        c->ids[i] = coil_spawn(chain_link, &args[i], NULL);
    }
    if (coil_join(c->ids[CHAIN - 1], COIL_FOREVER) != 0) c->bad_rc++;
}

static void test_join_chain(void **state) {
    (void)state;
    static struct chain c;
    memset(&c, 0, sizeof c);
    COIL_RUN_OK(chain_main, &c);
    assert_int_equal(c.bad_rc, 0);
    assert_int_equal(c.n, CHAIN);
    for (int i = 0; i < CHAIN; i++)
        assert_int_equal(c.order[i], i);
}

/* After join returns 0 the tasklet is gone for every other call. */
struct gone {
    int join_rc, kill_rc, name_null;
};

static void gone_main(void *arg) {
    struct gone *g = arg;
    coil_id id = coil_spawn(noop, NULL, &(coil_spawn_opts){.name = "brief"});
    g->join_rc = coil_join(id, COIL_FOREVER);
    g->kill_rc = coil_kill(id);
    g->name_null = coil_name(id) == NULL;
}

static void test_joined_tasklet_is_gone(void **state) {
    (void)state;
    struct gone g;
    memset(&g, 0x55, sizeof g);
    COIL_RUN_OK(gone_main, &g);
    assert_int_equal(g.join_rc, 0);
    assert_int_equal(g.kill_rc, -ESRCH);
    assert_int_equal(g.name_null, 1);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_join_waits_for_the_end),
        cmocka_unit_test(test_join_finished_is_zero_at_once),
        cmocka_unit_test(test_join_errors),
        cmocka_unit_test(test_join_timeout),
        cmocka_unit_test(test_many_joiners),
        cmocka_unit_test(test_timed_out_joiner_is_forgotten),
        cmocka_unit_test(test_join_chain),
        cmocka_unit_test(test_joined_tasklet_is_gone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
