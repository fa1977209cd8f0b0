/* Scopes: every call's contract with its exact errors; results (0, the first
 * failure); COIL_SCOPE_FAIL_FAST: the third member fails and the others are
 * cancelled, each unwinding through its own cleanup (code after a
 * -ECANCELED return, a tasklet-local destructor) before the wait returns;
 * the wait's deadline and a killed waiter cancel the rest and wait for them;
 * nested scopes cancel together; a deadlock and a SIGINT (in a child) end
 * through the wait; -EXDEV from another scheduler of a group; 50 members
 * doing real socket I/O against an in-test server, with a 5 s deadline and
 * the first error stopping the rest. */
// coil-test: tsan (a group of two schedulers; SIGINT while a scheduler runs)
#include "coil_test.h"

static int ok_fn(void *arg) {
    (void)arg;
    return 0;
}

static int sleep_fn(void *arg) {
    int64_t ns = (int64_t)(intptr_t)arg;
    return coil_sleep(ns);
}

/* ---- the contract ---------------------------------------------------------- */

struct contract {
    coil_scope *kept; /* opened in one coil_run, used after it */
    coil_id waiter;
    int busy_rc, deadlk_rc, nested_deadlk_rc;
    coil_scope *sc;
    coil_scope *inner;
};

static int member_waits_own(void *arg) {
    struct contract *c = arg;
    c->deadlk_rc = coil_scope_wait(c->sc, COIL_FOREVER);
    return 0;
}

static void second_waiter(void *arg) {
    struct contract *c = arg;
    c->busy_rc = coil_scope_wait(c->sc, COIL_FOREVER);
}

/* A member of inner waits for sc, whose member waits for inner: a cycle. */
static int inner_member(void *arg) {
    struct contract *c = arg;
    coil_sleep(5 * COIL_MSEC); /* the outer member is parked on inner by now */
    c->nested_deadlk_rc = coil_scope_wait(c->sc, COIL_FOREVER);
    return 0;
}

static int outer_member(void *arg) {
    struct contract *c = arg;
    EXPECT_EQ(coil_scope_open(&c->inner, 0), 0);
    EXPECT(coil_scope_spawn(c->inner, inner_member, c, NULL) > 0);
    EXPECT_EQ(coil_scope_wait(c->inner, COIL_FOREVER), 0);
    EXPECT_EQ(coil_scope_free(c->inner), 0);
    return 0;
}

static void contract_main(void *arg) {
    struct contract *c = arg;
    coil_scope *sc = NULL;
    EXPECT_EQ(coil_scope_open(NULL, 0), -EINVAL);
    EXPECT_EQ(coil_scope_open(&sc, 2), -EINVAL);
    EXPECT_EQ(coil_scope_open(&sc, -1), -EINVAL);
    EXPECT(sc == NULL);
    EXPECT_EQ(coil_scope_spawn(NULL, ok_fn, NULL, NULL), -EINVAL);
    EXPECT_EQ(coil_scope_wait(NULL, COIL_FOREVER), -EINVAL);
    EXPECT_EQ(coil_scope_cancel(NULL), -EINVAL);
    EXPECT_EQ(coil_scope_free(NULL), -EINVAL);

    /* An empty scope: the wait returns 0 at once, even past its deadline. */
    EXPECT_EQ(coil_scope_open(&sc, 0), 0);
    EXPECT_EQ(coil_scope_spawn(sc, NULL, NULL, NULL), -EINVAL);
    coil_spawn_opts tiny = {.stack_size = 1024};
    EXPECT_EQ(coil_scope_spawn(sc, ok_fn, NULL, &tiny), -EINVAL);
    EXPECT_EQ(coil_scope_wait(sc, coil_now() - COIL_SEC), 0);
    /* After its wait, a scope takes no members; a wait answers again. */
    EXPECT_EQ(coil_scope_spawn(sc, ok_fn, NULL, NULL), -EPIPE);
    EXPECT_EQ(coil_scope_wait(sc, COIL_FOREVER), 0);
    EXPECT_EQ(coil_scope_cancel(sc), 0);
    EXPECT_EQ(coil_scope_wait(sc, COIL_FOREVER), 0); /* a cancel after the end changes nothing */
    EXPECT_EQ(coil_scope_free(sc), 0);

    /* -EBUSY: free with members, free and wait while another waits;
     * -EDEADLK: a member waits for its own scope. */
    EXPECT_EQ(coil_scope_open(&c->sc, 0), 0);
    coil_id m = coil_scope_spawn(c->sc, sleep_fn, (void *)(intptr_t)(20 * COIL_MSEC), NULL);
    EXPECT(m > 0);
    EXPECT_EQ(coil_scope_spawn(c->sc, member_waits_own, c, NULL) > 0, 1);
    EXPECT_EQ(coil_scope_free(c->sc), -EBUSY);
    coil_id w = coil_spawn(second_waiter, c, NULL);
    coil_yield(); /* second_waiter parks in the wait */
    EXPECT_EQ(coil_scope_wait(c->sc, COIL_FOREVER), -EBUSY);
    EXPECT_EQ(coil_scope_free(c->sc), -EBUSY);
    EXPECT_EQ(coil_join(w, COIL_FOREVER), 0);
    EXPECT_EQ(c->busy_rc, 0);
    EXPECT_EQ(c->deadlk_rc, -EDEADLK);
    EXPECT_EQ(coil_scope_free(c->sc), 0);

    /* -EDEADLK through a nested scope. */
    EXPECT_EQ(coil_scope_open(&c->sc, 0), 0);
    EXPECT(coil_scope_spawn(c->sc, outer_member, c, NULL) > 0);
    coil_sleep(20 * COIL_MSEC); /* not a waiter yet when inner_member tries (else -EBUSY) */
    EXPECT_EQ(coil_scope_wait(c->sc, COIL_FOREVER), 0);
    EXPECT_EQ(c->nested_deadlk_rc, -EDEADLK);
    EXPECT_EQ(coil_scope_free(c->sc), 0);

    /* -ECANCELED: spawning into a cancelled scope runs nothing. */
    EXPECT_EQ(coil_scope_open(&sc, 0), 0);
    EXPECT_EQ(coil_scope_cancel(sc), 0);
    EXPECT_EQ(coil_scope_cancel(sc), 0);
    EXPECT_EQ(coil_scope_spawn(sc, ok_fn, NULL, NULL), -ECANCELED);
    EXPECT_EQ(coil_scope_wait(sc, COIL_FOREVER), -ECANCELED);
    EXPECT_EQ(coil_scope_free(sc), 0);

    /* Kept past this coil_run (see the test). */
    EXPECT_EQ(coil_scope_open(&c->kept, 0), 0);
}

static void later_main(void *arg) {
    struct contract *c = arg;
    /* A scope of an earlier coil_run is another scheduler's. */
    EXPECT_EQ(coil_scope_spawn(c->kept, ok_fn, NULL, NULL), -EXDEV);
    EXPECT_EQ(coil_scope_wait(c->kept, COIL_FOREVER), -EXDEV);
    EXPECT_EQ(coil_scope_cancel(c->kept), -EXDEV);
    EXPECT_EQ(coil_scope_free(c->kept), -EXDEV);
}

static void test_contract(void **state) {
    (void)state;
    struct contract c;
    memset(&c, 0, sizeof c);
    coil_scope *sc = NULL;
    assert_int_equal(coil_scope_open(&sc, 0), -EPERM);
    assert_null(sc);
    COIL_RUN_CHECKED(contract_main, &c);
    assert_non_null(c.kept);
    assert_int_equal(coil_scope_spawn(c.kept, ok_fn, NULL, NULL), -EPERM);
    assert_int_equal(coil_scope_wait(c.kept, COIL_FOREVER), -EPERM);
    assert_int_equal(coil_scope_cancel(c.kept), -EPERM);
    COIL_RUN_CHECKED(later_main, &c);
    assert_int_equal(coil_scope_free(c.kept), 0); /* outside every scheduler */
}

/* ---- results ----------------------------------------------------------------- */

static int result_fn(void *arg) {
    int r = (int)(intptr_t)arg;
    coil_sleep(r == -EIO ? 10 * COIL_MSEC : r == -ENOENT ? 20 * COIL_MSEC : 30 * COIL_MSEC);
    return r;
}

struct results {
    int all_ok, positive, first_failure, waited_for_all;
    int64_t took;
};

static void results_main(void *arg) {
    struct results *r = arg;
    coil_scope *sc;
    EXPECT_EQ(coil_scope_open(&sc, 0), 0);
    for (int i = 0; i < 5; i++)
        EXPECT(coil_scope_spawn(sc, result_fn, (void *)(intptr_t)0, NULL) > 0);
    r->all_ok = coil_scope_wait(sc, COIL_FOREVER);
    EXPECT_EQ(coil_scope_free(sc), 0);

    EXPECT_EQ(coil_scope_open(&sc, 0), 0);
    EXPECT(coil_scope_spawn(sc, result_fn, (void *)(intptr_t)7, NULL) > 0);
    r->positive = coil_scope_wait(sc, COIL_FOREVER);
    EXPECT_EQ(coil_scope_free(sc), 0);

    /* Without FAIL_FAST a failure cancels nothing: the others finish, and
     * the wait returns the first failure (-EIO at 10 ms, not -ENOENT). */
    EXPECT_EQ(coil_scope_open(&sc, 0), 0);
    int64_t t0 = coil_now();
    EXPECT(coil_scope_spawn(sc, result_fn, (void *)(intptr_t)-ENOENT, NULL) > 0);
    EXPECT(coil_scope_spawn(sc, result_fn, (void *)(intptr_t)0, NULL) > 0);
    EXPECT(coil_scope_spawn(sc, result_fn, (void *)(intptr_t)-EIO, NULL) > 0);
    r->first_failure = coil_scope_wait(sc, COIL_FOREVER);
    r->took = coil_now() - t0;
    EXPECT_EQ(coil_scope_free(sc), 0);
}

static void test_results(void **state) {
    (void)state;
    struct results r;
    memset(&r, 0x55, sizeof r);
    COIL_RUN_CHECKED(results_main, &r);
    assert_int_equal(r.all_ok, 0);
    assert_int_equal(r.positive, 0);
    assert_int_equal(r.first_failure, -EIO);
    assert_true(r.took >= 30 * COIL_MSEC); /* the 30 ms member was not cancelled */
}

/* ---- the third member fails: the rest unwind through their cleanup --------- */

#define FF_MEMBERS 10

static coil_key ff_key;

struct ff_ctx {
    coil_id ids[FF_MEMBERS];
    int started[FF_MEMBERS];
    int sleep_rc[FF_MEMBERS];
    int cleanup_done[FF_MEMBERS]; /* the code after the -ECANCELED return */
    int dtor_calls[FF_MEMBERS];   /* the tasklet-local destructor */
    int all_done_at_wait;
    int rc;
    int64_t took;
    char *buf; /* the waiter's memory, which cleanup still uses */
};

static struct ff_ctx *ff;

static void ff_helper(void *arg) {
    (void)arg;
    for (int i = 0; i < 3; i++)
        coil_yield();
}

static void ff_dtor(void *value) {
    int i = (int)(intptr_t)value - 1;
    /* a wait in cleanup (a join waits also in a killed tasklet): the scope's
     * wait must still be waiting when it ends */
    EXPECT_EQ(coil_join(coil_spawn(ff_helper, NULL, NULL), COIL_FOREVER), 0);
    ff->dtor_calls[i]++;
    ff->buf[i] = 'd';
}

static int ff_member(void *arg) {
    int i = (int)(intptr_t)arg;
    coil_local_set(ff_key, (void *)(intptr_t)(i + 1));
    ff->started[i] = 1;
    if (i == 2) {
        coil_sleep(20 * COIL_MSEC);
        return -EIO; /* the third one fails */
    }
    ff->sleep_rc[i] = coil_sleep(10 * COIL_SEC);
    coil_sleep(COIL_MSEC); /* -ECANCELED at once: it was killed */
    ff->cleanup_done[i] = 1;
    ff->buf[FF_MEMBERS + i] = 'c';
    return ff->sleep_rc[i];
}

static void ff_main(void *arg) {
    (void)arg;
    coil_scope *sc;
    ff->buf = calloc(2 * FF_MEMBERS, 1);
    EXPECT_EQ(coil_scope_open(&sc, COIL_SCOPE_FAIL_FAST), 0);
    int64_t t0 = coil_now();
    for (int i = 0; i < FF_MEMBERS; i++)
        ff->ids[i] = coil_scope_spawn(sc, ff_member, (void *)(intptr_t)i, NULL);
    ff->rc = coil_scope_wait(sc, coil_now() + 5 * COIL_SEC);
    ff->took = coil_now() - t0;
    int all = 1;
    for (int i = 0; i < FF_MEMBERS; i++) {
        all &= ff->dtor_calls[i] == 1 && ff->buf[i] == 'd';
        if (i != 2) all &= ff->cleanup_done[i] && ff->buf[FF_MEMBERS + i] == 'c';
        all &= coil_join(ff->ids[i], 0) == 0; /* finished */
    }
    ff->all_done_at_wait = all;
    EXPECT_EQ(coil_scope_free(sc), 0);
    free(ff->buf);
}

static void test_third_fails(void **state) {
    (void)state;
    static struct ff_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    ff = &ctx;
    assert_int_equal(coil_key_create(&ff_key, ff_dtor), 0);
    COIL_RUN_CHECKED(ff_main, NULL);
    assert_int_equal(coil_key_delete(ff_key), 0);
    assert_int_equal(ctx.rc, -EIO);
    assert_int_equal(ctx.all_done_at_wait, 1);
    for (int i = 0; i < FF_MEMBERS; i++) {
        assert_int_equal(ctx.started[i], 1);
        assert_int_equal(ctx.dtor_calls[i], 1);
        if (i != 2) assert_int_equal(ctx.sleep_rc[i], -ECANCELED);
    }
    assert_true(ctx.took < 3 * COIL_SEC); /* cancelled, not slept out */
}

/* ---- the deadline, a killed waiter, cancel, nested scopes ------------------- */

/* A member whose cleanup takes a while (a join of a helper that sleeps 30 ms,
 * as cleanup may wait for what it spawned): the wait must outlast it. */
struct slow {
    int cleaned;
    int64_t cleaned_at;
    int inner_cleaned;
};

static void slow_helper(void *arg) {
    (void)arg;
    int64_t until = coil_now() + 30 * COIL_MSEC;
    while (coil_now() < until)
        coil_yield(); /* not killed: yields, and -ECANCELED never comes */
}

static int slow_member(void *arg) {
    struct slow *s = arg;
    int rc = coil_sleep(10 * COIL_SEC);
    coil_id h = coil_spawn(slow_helper, NULL, NULL);
    EXPECT_EQ(coil_join(h, COIL_FOREVER), 0);
    s->cleaned = 1;
    s->cleaned_at = coil_now();
    return rc;
}

static int nested_member(void *arg) {
    struct slow *s = arg;
    coil_scope *inner;
    EXPECT_EQ(coil_scope_open(&inner, 0), 0);
    for (int i = 0; i < 3; i++)
        EXPECT(coil_scope_spawn(inner, sleep_fn, (void *)(intptr_t)(10 * COIL_SEC), NULL) > 0);
    /* the kill of this member cancels inner: its members end, then this wait */
    int rc = coil_scope_wait(inner, COIL_FOREVER);
    EXPECT_EQ(rc, -ECANCELED);
    EXPECT_EQ(coil_scope_free(inner), 0);
    s->inner_cleaned = 1;
    return rc;
}

struct cancel_ctx {
    struct slow slow;
    int rc;
    int64_t took, returned_at;
    coil_id waiter;
    int mode; /* 0: deadline, 1: waiter killed while waiting, 2: killed before, 3: cancel */
    coil_scope *sc;
};

static void cancel_waiter(void *arg) {
    struct cancel_ctx *c = arg;
    EXPECT_EQ(coil_scope_open(&c->sc, 0), 0);
    EXPECT(coil_scope_spawn(c->sc, slow_member, &c->slow, NULL) > 0);
    EXPECT(coil_scope_spawn(c->sc, nested_member, &c->slow, NULL) > 0);
    for (int i = 0; i < 5; i++)
        EXPECT(coil_scope_spawn(c->sc, sleep_fn, (void *)(intptr_t)(10 * COIL_SEC), NULL) > 0);
    int64_t t0 = coil_now();
    if (c->mode == 2) coil_kill(coil_self());
    c->rc = coil_scope_wait(c->sc, c->mode == 0 ? coil_now() + 50 * COIL_MSEC : COIL_FOREVER);
    c->returned_at = coil_now();
    c->took = c->returned_at - t0;
    EXPECT_EQ(coil_scope_free(c->sc), 0);
}

static void cancel_main(void *arg) {
    struct cancel_ctx *c = arg;
    c->waiter = coil_spawn(cancel_waiter, c, NULL);
    coil_sleep(20 * COIL_MSEC);
    if (c->mode == 1) EXPECT_EQ(coil_kill(c->waiter), 0);
    if (c->mode == 3) EXPECT_EQ(coil_scope_cancel(c->sc), 0);
    EXPECT_EQ(coil_join(c->waiter, COIL_FOREVER), 0);
}

static void run_cancel(int mode, int want_rc, int64_t min_took) {
    struct cancel_ctx c;
    memset(&c, 0, sizeof c);
    c.mode = mode;
    COIL_RUN_CHECKED(cancel_main, &c);
    assert_int_equal(c.rc, want_rc);
    assert_int_equal(c.slow.cleaned, 1);
    assert_int_equal(c.slow.inner_cleaned, 1);
    assert_true(c.slow.cleaned_at <= c.returned_at);
    assert_true(c.took >= min_took);
    assert_true(c.took < 5 * COIL_SEC);
}

static void test_deadline(void **state) {
    (void)state;
    run_cancel(0, -ETIMEDOUT, 80 * COIL_MSEC); /* 50 ms, then the 30 ms cleanup */
}

static void test_killed_waiter(void **state) {
    (void)state;
    run_cancel(1, -ECANCELED, 30 * COIL_MSEC);
    run_cancel(2, -ECANCELED, 30 * COIL_MSEC);
}

static void test_cancel(void **state) {
    (void)state;
    run_cancel(3, -ECANCELED, 30 * COIL_MSEC);
}

/* ---- a deadlock ends through the wait ------------------------------------- */

static coil_chan *never;

static int never_fn(void *arg) {
    (void)arg;
    int x;
    return coil_chan_recv(never, &x);
}

static int deadlock_rc;

static void deadlock_main(void *arg) {
    (void)arg;
    coil_scope *sc;
    EXPECT_EQ(coil_scope_open(&sc, 0), 0);
    for (int i = 0; i < 3; i++)
        EXPECT(coil_scope_spawn(sc, never_fn, NULL, NULL) > 0);
    deadlock_rc = coil_scope_wait(sc, COIL_FOREVER);
    EXPECT_EQ(coil_scope_free(sc), 0);
}

static void test_deadlock(void **state) {
    (void)state;
    assert_int_equal(coil_chan_open(&never, sizeof(int), 0), 0);
    struct coil_test_stderr cap;
    coil_test_stderr_begin(&cap);
    coil_test_reset_failures();
    int rc = coil_run(deadlock_main, NULL);
    char *err = coil_test_stderr_end(&cap);
    coil_test_assert_no_failure();
    assert_int_equal(rc, -EDEADLK);
    assert_int_equal(deadlock_rc, -ECANCELED);
    /* the dump names the waiter's wait */
    assert_non_null(strstr(err, "on scope of 3 members"));
    free(err);
    assert_int_equal(coil_chan_free(never), 0);
}

/* A member joins the scope's waiter: a cycle through a join and a wait. Made
 * before the wait, the wait sees it (-EDEADLK); made after, the deadlock
 * detector breaks the join (-EDEADLK) and the wait ends with the member. */
struct cycle_ctx {
    coil_id waiter, member;
    coil_scope *sc;
    int join_rc, wait_rc;
    int join_first; /* the member joins before the wait starts */
};

static int cycle_member(void *arg) {
    struct cycle_ctx *c = arg;
    if (!c->join_first) coil_sleep(5 * COIL_MSEC); /* the waiter is parked by now */
    c->join_rc = coil_join(c->waiter, COIL_FOREVER);
    return c->join_rc;
}

static void cycle_waiter(void *arg) {
    struct cycle_ctx *c = arg;
    EXPECT_EQ(coil_scope_open(&c->sc, 0), 0);
    c->member = coil_scope_spawn(c->sc, cycle_member, c, NULL);
    EXPECT(c->member > 0);
    if (c->join_first) coil_yield(); /* the member parks in its join */
    c->wait_rc = coil_scope_wait(c->sc, COIL_FOREVER);
}

static void cycle_main(void *arg) {
    struct cycle_ctx *c = arg;
    c->waiter = coil_spawn(cycle_waiter, c, NULL);
    EXPECT_EQ(coil_join(c->waiter, COIL_FOREVER), 0);
    EXPECT_EQ(coil_join(c->member, COIL_FOREVER), 0);
    EXPECT_EQ(coil_scope_free(c->sc), 0);
}

static void test_join_cycle(void **state) {
    (void)state;
    struct cycle_ctx c;
    memset(&c, 0, sizeof c);
    c.join_first = 1;
    COIL_RUN_CHECKED(cycle_main, &c);
    assert_int_equal(c.wait_rc, -EDEADLK);
    assert_int_equal(c.join_rc, 0); /* the waiter ended after its -EDEADLK */

    memset(&c, 0, sizeof c);
    struct coil_test_stderr cap;
    coil_test_stderr_begin(&cap);
    coil_test_reset_failures();
    int rc = coil_run(cycle_main, &c);
    char *err = coil_test_stderr_end(&cap);
    coil_test_assert_no_failure();
    assert_int_equal(rc, -EDEADLK);
    assert_int_equal(c.join_rc, -EDEADLK); /* the detector broke the join */
    assert_int_equal(c.wait_rc, -ECANCELED);
    assert_non_null(strstr(err, "on scope of 1 member"));
    free(err);
}

/* ---- SIGINT: the wait returns once every member has unwound ---------------- */
#ifndef _WIN32

#define SIG_MEMBERS 8
static int sig_cleaned[SIG_MEMBERS];
static int sig_rc;
static int sig_all_cleaned_at_wait;

static int sig_member(void *arg) {
    int i = (int)(intptr_t)arg;
    int rc = coil_sleep(20 * COIL_SEC);
    coil_yield();
    sig_cleaned[i] = 1;
    return rc;
}

static void sig_main(void *arg) {
    (void)arg;
    coil_scope *sc;
    if (coil_scope_open(&sc, COIL_SCOPE_FAIL_FAST) != 0) return;
    for (int i = 0; i < SIG_MEMBERS; i++)
        coil_scope_spawn(sc, sig_member, (void *)(intptr_t)i, NULL);
    coil_sleep(20 * COIL_MSEC);
    fprintf(stderr, "ready\n");
    fflush(stderr);
    sig_rc = coil_scope_wait(sc, COIL_FOREVER);
    sig_all_cleaned_at_wait = 1;
    for (int i = 0; i < SIG_MEMBERS; i++)
        sig_all_cleaned_at_wait &= sig_cleaned[i];
    coil_scope_free(sc);
}

static void sig_child(void *arg) {
    (void)arg;
    signal(SIGINT, SIG_DFL);
    int rc = coil_run(sig_main, NULL);
    fprintf(stderr, "coil_run=%d wait=%d cleaned=%d\n", rc, sig_rc, sig_all_cleaned_at_wait);
    _exit(rc == -EINTR && sig_rc == -ECANCELED && sig_all_cleaned_at_wait ? 0 : 1);
}

static void test_sigint(void **state) {
    (void)state;
    /* ThreadSanitizer holds a signal that lands outside its interceptors
     * until the thread next enters one; in CI's TSan stage this child once
     * got its SIGINT only after the members' 20 s sleeps had ended (wait=0).
     * The case runs on one thread: the native, ASan and Valgrind stages
     * check it; under TSan it would test TSan's signal delivery. */
    if (coil_test_under_tsan()) skip();
    struct coil_test_child c;
    bool ready = coil_test_child_signal_at(&c, sig_child, NULL, "ready", SIGINT);
    if (!ready || !coil_test_child_exited(&c, 0)) {
        coil_test_child_describe(&c);
        coil_test_child_free(&c);
        fail_msg("SIGINT: the scope's wait did not outlast its members");
    }
    coil_test_child_free(&c);
}
#endif

/* ---- a scope belongs to one scheduler of a group ------------------------------ */

struct group_ctx {
    coil_scope *sc;
    int rcs[4];
    int idx;
};

static void group_remote(void *arg) {
    struct group_ctx *g = arg;
    g->idx = coil_sched_index();
    g->rcs[0] = (int)coil_scope_spawn(g->sc, ok_fn, NULL, NULL);
    g->rcs[1] = coil_scope_wait(g->sc, COIL_FOREVER);
    g->rcs[2] = coil_scope_cancel(g->sc);
    g->rcs[3] = coil_scope_free(g->sc);
}

static void group_main(void *arg) {
    struct group_ctx *g = arg;
    EXPECT_EQ(coil_scope_open(&g->sc, 0), 0);
    EXPECT(coil_scope_spawn(g->sc, sleep_fn, (void *)(intptr_t)(5 * COIL_MSEC), NULL) > 0);
    coil_id r = coil_spawn_on(1, group_remote, g, NULL);
    EXPECT(r > 0);
    EXPECT_EQ(coil_join(r, COIL_FOREVER), 0);
    EXPECT_EQ(coil_scope_wait(g->sc, COIL_FOREVER), 0);
    EXPECT_EQ(coil_scope_free(g->sc), 0);
}

static void test_group_exdev(void **state) {
    (void)state;
    struct group_ctx g;
    memset(&g, 0, sizeof g);
    coil_test_reset_failures();
    assert_int_equal(coil_run_group(2, group_main, &g), 0);
    coil_test_assert_no_failure();
    assert_int_equal(g.idx, 1);
    for (int i = 0; i < 4; i++)
        assert_int_equal(g.rcs[i], -EXDEV);
}

/* ---- 50 downloads, at most 5 s, the first error stops the rest ------------------ */
#ifndef _WIN32

#define DOWNLOADS 50
#define BODY      (64 * 1024)

/* The server answers "<n>\n" with BODY bytes of stream n; "<n>\n" with n in
 * the stall set with nothing (it waits until the client goes away); and
 * "<n>\n" with n == fail_at with "ERR\n". */
struct dl_server {
    int listener;
    uint16_t port;
    int fail_at;   /* -1: none */
    int stall_mod; /* every stall_mod-th download stalls; 0: none */
    int handlers_done;
    int connected; /* downloads whose dial succeeded */
    int accepted;
};

struct dl_conn {
    struct dl_server *srv;
    int fd;
};

static void dl_handler(void *arg) {
    struct dl_conn *c = arg;
    char req[16];
    size_t len = 0;
    while (len < sizeof req - 1) {
        ssize_t r = coil_recv(c->fd, req + len, 1, 0);
        if (r <= 0) break;
        if (req[len++] == '\n') break;
    }
    req[len] = '\0';
    int n = atoi(req);
    if (len && n == c->srv->fail_at) {
        coil_sendall(c->fd, "ERR\n", 4, 0, COIL_FOREVER);
    } else if (len && c->srv->stall_mod && n % c->srv->stall_mod == 1) {
        char b;
        coil_recv(c->fd, &b, 1, 0); /* until the client closes */
    } else if (len) {
        char *body = malloc(BODY);
        coil_test_pattern_fill(body, BODY, (uint64_t)n, 0);
        coil_sendall(c->fd, body, BODY, 0, COIL_FOREVER);
        free(body);
    }
    coil_close(c->fd);
    c->srv->handlers_done++;
    free(c);
}

static void dl_server_fn(void *arg) {
    struct dl_server *srv = arg;
    for (;;) {
        int fd = coil_accept(srv->listener, NULL, NULL);
        if (fd < 0) break; /* the listener was closed */
        struct dl_conn *c = malloc(sizeof *c);
        c->srv = srv;
        c->fd = fd;
        srv->accepted++;
        coil_spawn(dl_handler, c, NULL);
    }
}

struct download {
    struct dl_server *srv;
    int n;
    int64_t deadline;
    int result;
    int bytes_ok;
    int closed; /* its cleanup ran */
};

static int download_fn(void *arg) {
    struct download *d = arg;
    char port[8];
    snprintf(port, sizeof port, "%u", d->srv->port);
    int fd = coil_dial("127.0.0.1", port, SOCK_STREAM, COIL_FOREVER);
    if (fd < 0) return d->result = fd;
    d->srv->connected++;
    char req[16];
    int len = snprintf(req, sizeof req, "%d\n", d->n);
    ssize_t rc = coil_sendall(fd, req, (size_t)len, 0, COIL_FOREVER);
    char *body = malloc(BODY);
    if (rc >= 0) rc = coil_test_recv_all(fd, body, BODY, COIL_FOREVER, NULL);
    if (rc == 4 && memcmp(body, "ERR\n", 4) == 0)
        rc = -EPROTO;
    else if (rc >= 0)
        d->bytes_ok = rc == BODY && coil_test_pattern_check(body, BODY, (uint64_t)d->n, 0) == BODY;
    free(body);
    coil_close(fd); /* cleanup, also after -ECANCELED */
    d->closed = 1;
    return d->result = rc < 0 ? (int)rc : 0;
}

struct dl_run {
    int fail_at, stall_mod;
    int64_t deadline_ns;
    int rc;
    int64_t took;
    struct download d[DOWNLOADS];
    int handlers_done, connected, accepted;
    int closed_at_wait;
};

static void dl_main(void *arg) {
    struct dl_run *run = arg;
    struct dl_server srv = {.fail_at = run->fail_at, .stall_mod = run->stall_mod};
    srv.listener = coil_listen_on("127.0.0.1", "0", 128);
    if (!EXPECT(srv.listener >= 0)) return;
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    EXPECT_EQ(getsockname(srv.listener, (struct sockaddr *)&a, &alen), 0);
    srv.port = ntohs(a.sin_port);
    coil_id server = coil_spawn(dl_server_fn, &srv, NULL);

    coil_scope *sc;
    EXPECT_EQ(coil_scope_open(&sc, COIL_SCOPE_FAIL_FAST), 0);
    int64_t t0 = coil_now();
    for (int i = 0; i < DOWNLOADS; i++) {
        run->d[i] = (struct download){.srv = &srv, .n = i, .result = 1};
        EXPECT(coil_scope_spawn(sc, download_fn, &run->d[i], NULL) > 0);
    }
    run->rc = coil_scope_wait(sc, t0 + run->deadline_ns);
    run->took = coil_now() - t0;
    run->closed_at_wait = 1;
    for (int i = 0; i < DOWNLOADS; i++)
        run->closed_at_wait &= run->d[i].closed;
    EXPECT_EQ(coil_scope_free(sc), 0);
    EXPECT_EQ(coil_close(srv.listener), 0);
    EXPECT_EQ(coil_join(server, COIL_FOREVER), 0);
    /* the handlers end as their clients went away */
    int64_t until = coil_now() + 5 * COIL_SEC;
    while (srv.handlers_done < srv.accepted && coil_now() < until)
        coil_sleep(COIL_MSEC);
    run->handlers_done = srv.handlers_done;
    run->connected = srv.connected;
    run->accepted = srv.accepted;
}

static void run_downloads(struct dl_run *run) {
    COIL_RUN_CHECKED(dl_main, run);
    assert_int_equal(run->closed_at_wait, 1);
    assert_true(run->accepted > 0);
    assert_int_equal(run->handlers_done, run->accepted); /* every connection served */
}

static void test_downloads_all_ok(void **state) {
    (void)state;
    static struct dl_run run;
    memset(&run, 0, sizeof run);
    run.fail_at = -1;
    run.deadline_ns = 5 * COIL_SEC;
    run_downloads(&run);
    assert_int_equal(run.rc, 0);
    assert_int_equal(run.connected, DOWNLOADS);
    assert_int_equal(run.handlers_done, DOWNLOADS);
    for (int i = 0; i < DOWNLOADS; i++) {
        assert_int_equal(run.d[i].result, 0);
        assert_int_equal(run.d[i].bytes_ok, 1);
    }
}

/* Every tenth download stalls (its server never answers); download 27
 * fails: the failure stops the stalled ones long before the 5 s. */
static void test_downloads_first_error(void **state) {
    (void)state;
    static struct dl_run run;
    memset(&run, 0, sizeof run);
    run.fail_at = 27;
    run.stall_mod = 10;
    run.deadline_ns = 5 * COIL_SEC;
    run_downloads(&run);
    assert_int_equal(run.rc, -EPROTO);
    assert_int_equal(run.d[27].result, -EPROTO);
    for (int i = 1; i < DOWNLOADS; i += 10)
        assert_int_equal(run.d[i].result, -ECANCELED);
    for (int i = 0; i < DOWNLOADS; i++)
        if (run.d[i].result == 0) assert_int_equal(run.d[i].bytes_ok, 1);
    assert_true(run.took < 4 * COIL_SEC);
}

/* Stalled downloads and no failure: the deadline stops them. */
static void test_downloads_deadline(void **state) {
    (void)state;
    static struct dl_run run;
    memset(&run, 0, sizeof run);
    run.fail_at = -1;
    run.stall_mod = 10;
    run.deadline_ns = coil_test_under_valgrind() ? 3 * COIL_SEC : 300 * COIL_MSEC;
    run_downloads(&run);
    assert_int_equal(run.rc, -ETIMEDOUT);
    for (int i = 0; i < DOWNLOADS; i++) {
        if (i % 10 == 1)
            assert_int_equal(run.d[i].result, -ECANCELED);
        else
            assert_int_equal(run.d[i].result, 0);
    }
    assert_true(run.took >= run.deadline_ns);
    assert_int_equal(run.connected, DOWNLOADS);
}
#endif

int main(void) {
#ifndef _WIN32
    coil_test_apply_filter();
#endif
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_contract),
        cmocka_unit_test(test_results),
        cmocka_unit_test(test_third_fails),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_killed_waiter),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_deadlock),
        cmocka_unit_test(test_join_cycle),
#ifndef _WIN32
        cmocka_unit_test(test_sigint),
#endif
        cmocka_unit_test(test_group_exdev),
#ifndef _WIN32
        cmocka_unit_test(test_downloads_all_ok),
        cmocka_unit_test(test_downloads_first_error),
        cmocka_unit_test(test_downloads_deadline),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
