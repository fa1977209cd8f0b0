/* coil_kill: a killed tasklet's current blocking call (sleep, yield) and
 * every later one that would wait return -ECANCELED, while a join is the wait
 * of cleanup: not cut short, bounded by its deadline; -ESRCH for finished and
 * unknown ids; a tasklet killed before it starts still starts; killing
 * oneself; a killed tasklet's timer is disarmed and it stays joinable. */
#include "coil_test.h"

/* What a killed tasklet sees from every blocking call after the kill. */
struct after_kill {
    int first; /* the call that was interrupted (or the first one) */
    int yield, sleep0, sleep, sleep_until_future, sleep_until_past;
    int join_timed, join_spawned, spawned_ran, killed;
    int64_t join_timed_took, later_took;
    coil_id self;
    int name_ok;
    int done;
};

static void mark_ran(void *arg) {
    *(int *)arg = 1;
}

static void later_calls(struct after_kill *a, coil_id other) {
    int64_t t0 = coil_now();
    a->killed = coil_killed();
    a->yield = coil_yield();
    a->sleep0 = coil_sleep(0);
    a->sleep = coil_sleep(5 * COIL_SEC);
    a->sleep_until_future = coil_sleep_until(coil_now() + 5 * COIL_SEC);
    a->sleep_until_past = coil_sleep_until(0);
    /* Cleanup's waits: a join of a tasklet that does not end is bounded by
     * its deadline; "spawn, join" works (the new tasklet is not killed). */
    int64_t j0 = coil_now();
    a->join_timed = coil_join(other, j0 + 20 * COIL_MSEC);
    a->join_timed_took = coil_now() - j0;
    a->spawned_ran = 0;
    a->join_spawned = coil_join(coil_spawn(mark_ran, &a->spawned_ran, NULL), COIL_FOREVER);
    a->later_took = coil_now() - t0;
    /* Non-blocking calls keep working. */
    a->self = coil_self();
    const char *n = coil_name(coil_self());
    a->name_ok = n != NULL && strcmp(n, "victim") == 0;
    a->done = 1;
}

static void assert_later_cancelled(const struct after_kill *a, coil_id id) {
    assert_int_equal(a->done, 1);
    assert_int_equal(a->killed, 1);
    assert_int_equal(a->yield, -ECANCELED);
    assert_int_equal(a->sleep0, -ECANCELED);
    assert_int_equal(a->sleep, -ECANCELED);
    assert_int_equal(a->sleep_until_future, -ECANCELED);
    assert_int_equal(a->sleep_until_past, -ECANCELED);
    assert_int_equal(a->join_timed, -ETIMEDOUT);
    assert_true(a->join_timed_took >= 20 * COIL_MSEC);
    assert_int_equal(a->join_spawned, 0);
    assert_int_equal(a->spawned_ran, 1);
    /* Only the timed join waited: together far below the sleeps' 5 s. */
    assert_true(a->later_took < 4 * COIL_SEC);
    assert_int_equal(a->self, id);
    assert_int_equal(a->name_ok, 1);
}

static void assert_all_cancelled(const struct after_kill *a, coil_id id) {
    assert_int_equal(a->first, -ECANCELED);
    assert_later_cancelled(a, id);
}

static const coil_spawn_opts victim_opts = {.name = "victim"};

/* A tasklet that outlives every test scenario unless killed. */
static void long_sleeper(void *arg) {
    (void)arg;
    coil_sleep(10 * COIL_SEC);
}

/* ---- kill while sleeping --------------------------------------------------- */

struct sleeping {
    struct after_kill a;
    coil_id id, other;
    int kill_rc;
    int64_t slept;
};

static void sleeping_victim(void *arg) {
    struct sleeping *s = arg;
    int64_t t0 = coil_now();
    s->a.first = coil_sleep(10 * COIL_SEC);
    s->slept = coil_now() - t0;
    later_calls(&s->a, s->other);
}

static void sleeping_main(void *arg) {
    struct sleeping *s = arg;
    s->other = coil_spawn(long_sleeper, NULL, NULL);
    s->id = coil_spawn(sleeping_victim, s, &victim_opts);
    coil_yield(); /* the victim parks in coil_sleep */
    s->kill_rc = coil_kill(s->id);
    coil_join(s->id, COIL_FOREVER);
    coil_kill(s->other);
}

static void test_kill_while_sleeping(void **state) {
    (void)state;
    struct sleeping s;
    memset(&s, 0x55, sizeof s);
    s.a.done = 0;
    int64_t t0 = coil_now();
    COIL_RUN_OK(sleeping_main, &s);
    assert_int_equal(s.kill_rc, 0);
    assert_all_cancelled(&s.a, s.id);
    /* Woken by the kill, not by its 10 s timer. */
    assert_true(s.slept < 5 * COIL_SEC);
    assert_true(coil_now() - t0 < 5 * COIL_SEC);
}

/* ---- kill while joining ------------------------------------------------------ */

/* The shape of "spawn, join, free": the victim joins a child that uses the
 * victim's memory; the kill does not cut the join short, so the child has
 * finished (and stopped using it) when the join returns. */
struct joining {
    struct after_kill a;
    coil_id id, target, other;
    int kill_rc;
    int child_done, victim_saw_child_done;
    int64_t joined_after;
};

static void short_child(void *arg) {
    struct joining *j = arg;
    coil_sleep(100 * COIL_MSEC);
    j->child_done = 1;
}

static void joining_victim(void *arg) {
    struct joining *j = arg;
    int64_t t0 = coil_now();
    j->target = coil_spawn(short_child, j, NULL);
    j->a.first = coil_join(j->target, COIL_FOREVER);
    j->joined_after = coil_now() - t0;
    j->victim_saw_child_done = j->child_done;
    later_calls(&j->a, j->other);
}

static void joining_main(void *arg) {
    struct joining *j = arg;
    j->other = coil_spawn(long_sleeper, NULL, NULL);
    j->id = coil_spawn(joining_victim, j, &victim_opts);
    coil_yield(); /* the victim parks in its join */
    j->kill_rc = coil_kill(j->id);
    coil_join(j->id, COIL_FOREVER);
    coil_kill(j->other);
}

static void test_kill_while_joining(void **state) {
    (void)state;
    struct joining j;
    memset(&j, 0x55, sizeof j);
    j.a.done = 0;
    j.child_done = 0;
    int64_t t0 = coil_now();
    COIL_RUN_OK(joining_main, &j);
    assert_int_equal(j.kill_rc, 0);
    assert_int_equal(j.a.first, 0);
    assert_int_equal(j.victim_saw_child_done, 1);
    assert_true(j.joined_after >= 100 * COIL_MSEC);
    assert_later_cancelled(&j.a, j.id);
    assert_true(coil_now() - t0 < 5 * COIL_SEC);
}

/* ---- kill while runnable (in the middle of a yield) ------------------------ */

struct yielding {
    struct after_kill a;
    coil_id id, other;
    int kill_rc;
    int calls;          /* coil_yield calls the victim has made */
    int in_progress;    /* the one it was inside when killed */
    int cancelled_call; /* the first one that returned an error */
};

static void yielding_victim(void *arg) {
    struct yielding *y = arg;
    int rc;
    do {
        y->calls++;
        rc = coil_yield();
    } while (rc == 0);
    y->cancelled_call = y->calls;
    y->a.first = rc;
    later_calls(&y->a, y->other);
}

static void yielding_main(void *arg) {
    struct yielding *y = arg;
    y->other = coil_spawn(long_sleeper, NULL, NULL);
    y->id = coil_spawn(yielding_victim, y, &victim_opts);
    for (int i = 0; i < 3; i++)
        coil_yield();
    /* The victim sits in the run queue, inside coil_yield. */
    y->in_progress = y->calls;
    y->kill_rc = coil_kill(y->id);
    coil_join(y->id, COIL_FOREVER);
    coil_kill(y->other);
}

static void test_kill_while_yielding(void **state) {
    (void)state;
    struct yielding y;
    memset(&y, 0, sizeof y);
    COIL_RUN_OK(yielding_main, &y);
    assert_int_equal(y.kill_rc, 0);
    assert_true(y.in_progress >= 2);
    /* The yield it was in returns -ECANCELED, not only the next one. */
    assert_int_equal(y.cancelled_call, y.in_progress);
    assert_all_cancelled(&y.a, y.id);
}

/* ---- kill before start ------------------------------------------------------ */

struct unstarted {
    struct after_kill a;
    coil_id id, other;
    int kill_rc;
    int started;
    int freed;
};

struct owned {
    struct unstarted *u;
    char payload[64];
};

static void unstarted_victim(void *arg) {
    struct owned *o = arg;
    struct unstarted *u = o->u;
    u->started = 1;
    u->a.first = coil_sleep(COIL_MSEC);
    later_calls(&u->a, u->other);
    /* It starts precisely so that it can release what arg owns. */
    free(o);
    u->freed = 1;
}

static void unstarted_main(void *arg) {
    struct unstarted *u = arg;
    u->other = coil_spawn(long_sleeper, NULL, NULL);
    struct owned *o = calloc(1, sizeof *o);
    o->u = u;
    u->id = coil_spawn(unstarted_victim, o, &victim_opts);
    u->kill_rc = coil_kill(u->id);
    coil_join(u->id, COIL_FOREVER);
    coil_kill(u->other);
}

static void test_kill_before_start(void **state) {
    (void)state;
    struct unstarted u;
    memset(&u, 0, sizeof u);
    COIL_RUN_OK(unstarted_main, &u);
    assert_int_equal(u.kill_rc, 0);
    assert_int_equal(u.started, 1);
    assert_int_equal(u.freed, 1);
    assert_all_cancelled(&u.a, u.id);
}

/* ---- kill self ---------------------------------------------------------------- */

struct self_kill {
    struct after_kill a;
    coil_id id, other;
    int kill_rc, kill_again_rc;
    int witness_ran_before_yield;
};

static int witness_runs;
static void witness(void *arg) {
    (void)arg;
    witness_runs++;
}

static void self_victim(void *arg) {
    struct self_kill *s = arg;
    s->kill_rc = coil_kill(coil_self());
    /* Still alive, so killing again is fine too. */
    s->kill_again_rc = coil_kill(coil_self());
    /* A killed caller does not yield: the witness must not run here. */
    coil_spawn(witness, NULL, NULL);
    s->a.first = coil_yield();
    s->witness_ran_before_yield = witness_runs;
    later_calls(&s->a, s->other);
}

static void self_main(void *arg) {
    struct self_kill *s = arg;
    s->other = coil_spawn(long_sleeper, NULL, NULL);
    s->id = coil_spawn(self_victim, s, &victim_opts);
    coil_join(s->id, COIL_FOREVER);
    coil_kill(s->other);
}

static void test_kill_self(void **state) {
    (void)state;
    struct self_kill s;
    memset(&s, 0x55, sizeof s);
    s.a.done = 0;
    witness_runs = 0;
    COIL_RUN_OK(self_main, &s);
    assert_int_equal(s.kill_rc, 0);
    assert_int_equal(s.kill_again_rc, 0);
    assert_int_equal(s.witness_ran_before_yield, 0);
    assert_int_equal(witness_runs, 1);
    assert_all_cancelled(&s.a, s.id);
}

/* ---- -ESRCH ------------------------------------------------------------------- */

struct esrch {
    int finished, zero, negative, beyond, max, twice_first, twice_second;
    int sleep_rc;
};

static void noop(void *arg) {
    (void)arg;
}

static void esrch_sleeper(void *arg) {
    ((struct esrch *)arg)->sleep_rc = coil_sleep(10 * COIL_SEC);
}

static void esrch_main(void *arg) {
    struct esrch *e = arg;
    coil_id done = coil_spawn(noop, NULL, NULL);
    coil_join(done, COIL_FOREVER);
    e->finished = coil_kill(done);
    e->zero = coil_kill(0);
    e->negative = coil_kill(-7);
    e->beyond = coil_kill(done + 100);
    e->max = coil_kill(INT64_MAX);
    coil_id s = coil_spawn(esrch_sleeper, e, NULL);
    coil_yield();
    /* Killed twice before it gets to run: both succeed, it is still live. */
    e->twice_first = coil_kill(s);
    e->twice_second = coil_kill(s);
}

static void test_kill_unknown_and_finished_is_esrch(void **state) {
    (void)state;
    struct esrch e;
    memset(&e, 0x55, sizeof e);
    COIL_RUN_OK(esrch_main, &e);
    assert_int_equal(e.finished, -ESRCH);
    assert_int_equal(e.zero, -ESRCH);
    assert_int_equal(e.negative, -ESRCH);
    assert_int_equal(e.beyond, -ESRCH);
    assert_int_equal(e.max, -ESRCH);
    assert_int_equal(e.twice_first, 0);
    assert_int_equal(e.twice_second, 0);
    assert_int_equal(e.sleep_rc, -ECANCELED);
}

/* ---- killed tasklets stay joinable; kill main ------------------------------ */

struct joinable {
    int cleanup_done;
    int cleanup_seen_by_joiner[4];
    int join_rc[4];
    coil_id victim;
};

struct joinable_arg {
    struct joinable *j;
    int i;
};

static void joinable_victim(void *arg) {
    struct joinable *j = arg;
    coil_sleep(10 * COIL_SEC);
    /* Cleanup that itself tries to block: returns at once with -ECANCELED. */
    coil_sleep(COIL_MSEC);
    j->cleanup_done = 1;
}

static void joinable_joiner(void *arg) {
    struct joinable_arg *a = arg;
    a->j->join_rc[a->i] = coil_join(a->j->victim, COIL_FOREVER);
    a->j->cleanup_seen_by_joiner[a->i] = a->j->cleanup_done;
}

static void joinable_main(void *arg) {
    struct joinable *j = arg;
    static struct joinable_arg args[4];
    j->victim = coil_spawn(joinable_victim, j, NULL);
    coil_id ids[4];
    for (int i = 0; i < 4; i++) {
        args[i] = (struct joinable_arg){.j = j, .i = i};
        ids[i] = coil_spawn(joinable_joiner, &args[i], NULL);
    }
    coil_yield();
    coil_kill(j->victim);
    for (int i = 0; i < 4; i++)
        coil_join(ids[i], COIL_FOREVER);
}

static void test_killed_tasklet_is_joinable(void **state) {
    (void)state;
    struct joinable j;
    memset(&j, 0, sizeof j);
    COIL_RUN_OK(joinable_main, &j);
    assert_int_equal(j.cleanup_done, 1);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(j.join_rc[i], 0);
        assert_int_equal(j.cleanup_seen_by_joiner[i], 1);
    }
}

struct kill_main {
    int kill_rc;
    int main_sleep_rc;
    int main_yield_rc;
};

static void main_killer(void *arg) {
    struct kill_main *k = arg;
    k->kill_rc = coil_kill(1);
}

static void killable_main(void *arg) {
    struct kill_main *k = arg;
    coil_spawn(main_killer, k, NULL);
    k->main_sleep_rc = coil_sleep(10 * COIL_SEC);
    k->main_yield_rc = coil_yield();
}

static void test_kill_main(void **state) {
    (void)state;
    struct kill_main k;
    memset(&k, 0x55, sizeof k);
    int64_t t0 = coil_now();
    COIL_RUN_OK(killable_main, &k);
    assert_int_equal(k.kill_rc, 0);
    assert_int_equal(k.main_sleep_rc, -ECANCELED);
    assert_int_equal(k.main_yield_rc, -ECANCELED);
    assert_true(coil_now() - t0 < 5 * COIL_SEC);
}

/* ---- a killed waiter's timer is gone --------------------------------------- */

struct timers_gone {
    int join_rc, sleep_rc;
    int later_sleep_rc;
};

static void timed_joiner(void *arg) {
    struct timers_gone *t = arg;
    t->join_rc = coil_join(1, coil_now() + 20 * COIL_MSEC);
}

static void timed_sleeper(void *arg) {
    struct timers_gone *t = arg;
    t->sleep_rc = coil_sleep(20 * COIL_MSEC);
}

static void scribble(void *arg) {
    (void)arg;
    volatile char buf[16384];
    for (size_t i = 0; i < sizeof buf; i++)
        buf[i] = (char)0x5a;
    coil_sleep(40 * COIL_MSEC);
    (void)buf[0];
}

static void timers_gone_main(void *arg) {
    struct timers_gone *t = arg;
    coil_id a = coil_spawn(timed_joiner, t, NULL);
    coil_id b = coil_spawn(timed_sleeper, t, NULL);
    coil_yield(); /* both park with a 20 ms deadline */
    coil_kill(a);
    coil_kill(b);
    coil_join(a, COIL_FOREVER);
    coil_join(b, COIL_FOREVER);
    /* Their stacks go back to the pool and get reused and overwritten; if a
     * timer of theirs were still armed it would fire in here. */
    coil_id s1 = coil_spawn(scribble, NULL, NULL);
    coil_id s2 = coil_spawn(scribble, NULL, NULL);
    t->later_sleep_rc = coil_sleep(50 * COIL_MSEC);
    coil_join(s1, COIL_FOREVER);
    coil_join(s2, COIL_FOREVER);
}

static void test_killed_waiters_timers_are_disarmed(void **state) {
    (void)state;
    struct timers_gone t;
    memset(&t, 0x55, sizeof t);
    COIL_RUN_OK(timers_gone_main, &t);
    /* The kill leaves the join to its deadline (it joins main, which is
     * still running then); the sleep ends at once. */
    assert_int_equal(t.join_rc, -ETIMEDOUT);
    assert_int_equal(t.sleep_rc, -ECANCELED);
    assert_int_equal(t.later_sleep_rc, 0);
}

/* ---- killed after its wait was over, before it ran again ------------------ */

/* The sleeper's timer has fired (it sits in the run queue) when the kill
 * comes. coil.h: a call whose wait had already ended when the kill came
 * still returns its result (the sleep's 0, no timeout leaks out); the kill
 * shows from the next call on. */
struct woken {
    int sleep_rc, later_rc;
    int kill_rc;
    int64_t main_deadline, deadline;
};

static void woken_sleeper(void *arg) {
    struct woken *w = arg;
    w->sleep_rc = coil_sleep_until(w->deadline);
    w->later_rc = coil_yield();
}

/* Holds the thread past both deadlines, so that one scheduler round fires
 * both timers: main's (earlier) first, so main runs before the sleeper. */
static void hog(void *arg) {
    struct woken *w = arg;
    while (coil_now() < w->deadline + COIL_MSEC) {
    }
}

static void woken_main(void *arg) {
    struct woken *w = arg;
    w->main_deadline = coil_now() + 5 * COIL_MSEC;
    w->deadline = w->main_deadline + COIL_MSEC;
    coil_id id = coil_spawn(woken_sleeper, w, NULL);
    coil_spawn(hog, w, NULL);
    coil_sleep_until(w->main_deadline);
    w->kill_rc = coil_kill(id);
}

static void test_kill_after_the_wait_is_over(void **state) {
    (void)state;
    struct woken w;
    memset(&w, 0x55, sizeof w);
    COIL_RUN_OK(woken_main, &w);
    print_message("kill %d, the finished sleep returned %d\n", w.kill_rc, w.sleep_rc);
    if (w.kill_rc == 0) {
        assert_int_equal(w.sleep_rc, 0);
        assert_int_equal(w.later_rc, -ECANCELED);
    } else {
        /* It had already finished: nothing to check about the kill. */
        assert_int_equal(w.kill_rc, -ESRCH);
        assert_int_equal(w.sleep_rc, 0);
    }
}

#ifndef _WIN32
/* A SIGINT that comes as the last tasklet ends (the loop has nothing left to
 * run, so it never looks at the shutdown counter again) is still Ctrl-C:
 * coil_run returns -EINTR rather than 0, and the program learns of it.
 * raise() makes the timing exact: the handler has run before raise returns.
 * In a child: the signal's disposition is the point. */
static void sigint_last_main(void *arg) {
    (void)arg;
    raise(SIGINT);
}

static void sigint_last_child(void *arg) {
    (void)arg;
    signal(SIGINT, SIG_DFL);
    int rc = coil_run(sigint_last_main, NULL);
    struct sigaction sa;
    sigaction(SIGINT, NULL, &sa);
    fprintf(stderr, "coil_run=%d disposition %s\n", rc,
            sa.sa_handler == SIG_DFL ? "restored" : "NOT restored");
    _exit(rc == -EINTR && sa.sa_handler == SIG_DFL ? 0 : 1);
}

static void test_sigint_as_the_last_tasklet_ends(void **state) {
    (void)state;
    struct coil_test_child c;
    coil_test_fork_run(&c, sigint_last_child, NULL, 20000);
    if (!coil_test_child_exited(&c, 0)) {
        coil_test_child_describe(&c);
        coil_test_child_free(&c);
        fail_msg("a SIGINT at the end of coil_run was lost");
    }
    coil_test_child_free(&c);
}
#endif

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kill_while_sleeping),
        cmocka_unit_test(test_kill_while_joining),
        cmocka_unit_test(test_kill_while_yielding),
        cmocka_unit_test(test_kill_before_start),
        cmocka_unit_test(test_kill_self),
        cmocka_unit_test(test_kill_unknown_and_finished_is_esrch),
        cmocka_unit_test(test_killed_tasklet_is_joinable),
        cmocka_unit_test(test_kill_main),
        cmocka_unit_test(test_killed_waiters_timers_are_disarmed),
        cmocka_unit_test(test_kill_after_the_wait_is_over),
#ifndef _WIN32
        cmocka_unit_test(test_sigint_as_the_last_tasklet_ends),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
