/* Deadlock detection: when every remaining tasklet waits on something that
 * can never happen, coil_run writes a dump to stderr, kills them so that
 * their calls return -ECANCELED, lets them finish through their own cleanup
 * and returns -EDEADLK. A kill does not end a join: joins on a cycle are
 * broken with -EDEADLK, a join of a killed tasklet waits for its cleanup. A
 * pending timer means no deadlock. */
#include "coil_test.h"

/* ---- everyone blocked on a channel ------------------------------------------ */

#define RECEIVERS 3

struct chan_dl {
    coil_chan *ch;
    coil_id ids[RECEIVERS];
    int recv_rc[RECEIVERS];
    int later_rc[RECEIVERS];
    int cleanup[RECEIVERS];
    int join_rc;
    int join_saw_cleanup;
    int main_cleanup;
};

struct recv_arg {
    struct chan_dl *d;
    int i;
};

static void stuck_receiver(void *arg) {
    struct recv_arg *a = arg;
    int v;
    a->d->recv_rc[a->i] = coil_chan_recv(a->d->ch, &v);
    /* Cleanup may block again; that returns at once. */
    a->d->later_rc[a->i] = coil_chan_recv(a->d->ch, &v);
    a->d->cleanup[a->i] = 1;
}

static void chan_dl_main(void *arg) {
    struct chan_dl *d = arg;
    static struct recv_arg args[RECEIVERS];
    static const char *const names[RECEIVERS] = {"rx-a", "rx-b", "rx-c"};
    for (int i = 0; i < RECEIVERS; i++) {
        args[i] = (struct recv_arg){.d = d, .i = i};
        d->ids[i] = coil_spawn(stuck_receiver, &args[i], &(coil_spawn_opts){.name = names[i]});
    }
    d->join_rc = coil_join(d->ids[0], COIL_FOREVER);
    d->join_saw_cleanup = d->cleanup[0];
    d->main_cleanup = 1;
}

static void test_all_blocked_on_a_channel(void **state) {
    (void)state;
    struct chan_dl d;
    memset(&d, 0x55, sizeof d);
    memset(d.cleanup, 0, sizeof d.cleanup);
    d.main_cleanup = 0;
    assert_int_equal(coil_chan_open(&d.ch, sizeof(int), 0), 0);
    struct coil_test_stderr cap;
    coil_test_stderr_begin(&cap);
    int rc = coil_run(chan_dl_main, &d);
    char *err = coil_test_stderr_end(&cap);
    print_message("%s", err);
    assert_int_equal(rc, -EDEADLK);
    /* The kill did not cut main's join short: it returned once rx-a had
     * finished its cleanup. */
    assert_int_equal(d.join_rc, 0);
    assert_int_equal(d.join_saw_cleanup, 1);
    assert_int_equal(d.main_cleanup, 1);
    for (int i = 0; i < RECEIVERS; i++) {
        assert_int_equal(d.recv_rc[i], -ECANCELED);
        assert_int_equal(d.later_rc[i], -ECANCELED);
        /* coil_run returned only after they had finished their cleanup. */
        assert_int_equal(d.cleanup[i], 1);
    }
    /* The report: a deadlock, with a dump naming each stuck tasklet. */
    assert_non_null(strstr(err, "deadlock"));
    char line[512];
    assert_true(coil_test_find_line(err, "\"main\"", line, sizeof line));
    assert_true(coil_test_has_number(line, 1));
    assert_non_null(strstr(line, "join"));
    const char *names[RECEIVERS] = {"\"rx-a\"", "\"rx-b\"", "\"rx-c\""};
    for (int i = 0; i < RECEIVERS; i++) {
        assert_true(coil_test_find_line(err, names[i], line, sizeof line));
        assert_true(coil_test_has_number(line, d.ids[i]));
        assert_non_null(strstr(line, "chan recv"));
    }
    free(err);
    /* Nobody waits on the channel any more. */
    assert_int_equal(coil_chan_free(d.ch), 0);
    /* The scheduler is gone and the next run is an ordinary one. */
    assert_int_equal(coil_self(), 0);
}

/* ---- a join cycle ------------------------------------------------------------- */

struct cycle {
    coil_id a, b;
    int a_rc, b_rc, main_rc;
    int a_done, b_done;
    int main_saw_a_done;
};

static void cycle_a(void *arg) {
    struct cycle *c = arg;
    coil_yield(); /* let b be spawned */
    c->a_rc = coil_join(c->b, COIL_FOREVER);
    c->a_done = 1;
}

static void cycle_b(void *arg) {
    struct cycle *c = arg;
    c->b_rc = coil_join(c->a, COIL_FOREVER);
    c->b_done = 1;
}

static void cycle_main(void *arg) {
    struct cycle *c = arg;
    c->a = coil_spawn(cycle_a, c, &(coil_spawn_opts){.name = "cyc-a"});
    c->b = coil_spawn(cycle_b, c, &(coil_spawn_opts){.name = "cyc-b"});
    c->main_rc = coil_join(c->a, COIL_FOREVER);
    c->main_saw_a_done = c->a_done;
}

static void test_join_cycle(void **state) {
    (void)state;
    struct cycle c;
    memset(&c, 0x55, sizeof c);
    c.a_done = c.b_done = 0;
    struct coil_test_stderr cap;
    coil_test_stderr_begin(&cap);
    int rc = coil_run(cycle_main, &c);
    char *err = coil_test_stderr_end(&cap);
    print_message("%s", err);
    assert_int_equal(rc, -EDEADLK);
    /* A kill does not end a join: the joins of the cycle are broken with
     * -EDEADLK; main's join of a is not on the cycle and returns 0 once a
     * has finished. */
    assert_int_equal(c.a_rc, -EDEADLK);
    assert_int_equal(c.b_rc, -EDEADLK);
    assert_int_equal(c.main_rc, 0);
    assert_int_equal(c.main_saw_a_done, 1);
    assert_int_equal(c.a_done, 1);
    assert_int_equal(c.b_done, 1);
    char line[512];
    assert_true(coil_test_find_line(err, "\"cyc-a\"", line, sizeof line));
    assert_non_null(strstr(line, "join"));
    assert_true(coil_test_has_number(line, c.b));
    assert_true(coil_test_find_line(err, "\"cyc-b\"", line, sizeof line));
    assert_non_null(strstr(line, "join"));
    assert_true(coil_test_has_number(line, c.a));
    free(err);
}

/* ---- the last one left, blocked on a send -------------------------------------- */

struct leftover {
    coil_chan *ch;
    int send_rc;
    int done;
};

static void stuck_sender(void *arg) {
    struct leftover *l = arg;
    int v = 7;
    l->send_rc = coil_chan_send(l->ch, &v);
    l->done = 1;
}

static void leftover_main(void *arg) {
    coil_spawn(stuck_sender, arg, &(coil_spawn_opts){.name = "tx-left"});
    coil_yield();
    /* main finishes normally; the sender is left waiting alone. */
}

static void test_last_tasklet_blocked_on_send(void **state) {
    (void)state;
    struct leftover l = {0};
    assert_int_equal(coil_chan_open(&l.ch, sizeof(int), 0), 0);
    struct coil_test_stderr cap;
    coil_test_stderr_begin(&cap);
    int rc = coil_run(leftover_main, &l);
    char *err = coil_test_stderr_end(&cap);
    print_message("%s", err);
    assert_int_equal(rc, -EDEADLK);
    assert_int_equal(l.send_rc, -ECANCELED);
    assert_int_equal(l.done, 1);
    char line[512];
    assert_true(coil_test_find_line(err, "\"tx-left\"", line, sizeof line));
    assert_non_null(strstr(line, "chan send"));
    /* main had finished: it is not listed. */
    assert_null(strstr(err, "\"main\""));
    free(err);
    assert_int_equal(coil_chan_free(l.ch), 0);
}

/* ---- cleanup that blocks a newcomer: a second deadlock ------------------------- */

struct second {
    coil_chan *ch;
    int first_rc, newcomer_rc;
    int newcomer_done;
};

static void newcomer(void *arg) {
    struct second *s = arg;
    int v;
    s->newcomer_rc = coil_chan_recv(s->ch, &v);
    s->newcomer_done = 1;
}

static void second_main(void *arg) {
    struct second *s = arg;
    int v;
    s->first_rc = coil_chan_recv(s->ch, &v);
    /* Cleanup spawns a tasklet that was never killed, and it blocks too. */
    coil_spawn(newcomer, s, NULL);
}

static void test_deadlock_again_during_cleanup(void **state) {
    (void)state;
    struct second s = {0};
    assert_int_equal(coil_chan_open(&s.ch, sizeof(int), 0), 0);
    struct coil_test_stderr cap;
    coil_test_stderr_begin(&cap);
    int rc = coil_run(second_main, &s);
    char *err = coil_test_stderr_end(&cap);
    print_message("%s", err);
    free(err);
    assert_int_equal(rc, -EDEADLK);
    assert_int_equal(s.first_rc, -ECANCELED);
    assert_int_equal(s.newcomer_rc, -ECANCELED);
    assert_int_equal(s.newcomer_done, 1);
    assert_int_equal(coil_chan_free(s.ch), 0);
}

/* ---- no deadlock while a timer is pending --------------------------------------- */

struct no_dl {
    coil_chan *ch;
    int recv_rc, send_rc, value;
    int timed_rc;
};

static void late_sender(void *arg) {
    struct no_dl *n = arg;
    coil_sleep(20 * COIL_MSEC);
    int v = 42;
    n->send_rc = coil_chan_send(n->ch, &v);
}

static void timed_receiver(void *arg) {
    struct no_dl *n = arg;
    int v;
    /* Nobody will ever send a second value, but the deadline ends the wait. */
    n->timed_rc = coil_chan_recv_dl(n->ch, &v, coil_now() + 40 * COIL_MSEC);
}

static void no_dl_main(void *arg) {
    struct no_dl *n = arg;
    coil_spawn(late_sender, n, NULL);
    n->recv_rc = coil_chan_recv(n->ch, &n->value);
    coil_spawn(timed_receiver, n, NULL);
}

static void test_pending_timer_is_not_a_deadlock(void **state) {
    (void)state;
    struct no_dl n = {0};
    n.timed_rc = 1;
    assert_int_equal(coil_chan_open(&n.ch, sizeof(int), 0), 0);
    struct coil_test_stderr cap;
    coil_test_stderr_begin(&cap);
    int rc = coil_run(no_dl_main, &n);
    char *err = coil_test_stderr_end(&cap);
    assert_int_equal(rc, 0);
    assert_int_equal(n.recv_rc, 0);
    assert_int_equal(n.send_rc, 0);
    assert_int_equal(n.value, 42);
    assert_int_equal(n.timed_rc, -ETIMEDOUT);
    /* Nothing reported. */
    assert_null(strstr(err, "deadlock"));
    free(err);
    assert_int_equal(coil_chan_free(n.ch), 0);
}

static void noop(void *arg) {
    (void)arg;
}

static void test_run_after_a_deadlock_is_clean(void **state) {
    (void)state;
    coil_chan *ch;
    assert_int_equal(coil_chan_open(&ch, sizeof(int), 0), 0);
    struct leftover l = {.ch = ch};
    struct coil_test_stderr cap;
    coil_test_stderr_begin(&cap);
    int rc1 = coil_run(leftover_main, &l);
    int rc2 = coil_run(noop, NULL);
    char *err = coil_test_stderr_end(&cap);
    assert_int_equal(rc1, -EDEADLK);
    assert_int_equal(rc2, 0);
    /* Exactly one report, from the first run (its frame lines name this
     * program, test_deadlock: the report's own words are searched). */
    const char *first = strstr(err, "coil: deadlock");
    assert_non_null(first);
    assert_null(strstr(first + 1, "coil: deadlock"));
    free(err);
    assert_int_equal(coil_chan_free(ch), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_all_blocked_on_a_channel),
        cmocka_unit_test(test_join_cycle),
        cmocka_unit_test(test_last_tasklet_blocked_on_send),
        cmocka_unit_test(test_deadlock_again_during_cleanup),
        cmocka_unit_test(test_pending_timer_is_not_a_deadlock),
        cmocka_unit_test(test_run_after_a_deadlock_is_clean),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
