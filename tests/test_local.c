/* Tasklet-local storage and the user pointer: every call's contract with its
 * exact errors (outside a tasklet, deleted and never-made keys, the key
 * limit); destructors run once per tasklet with a value, in slot order, on
 * the tasklet's own stack before its joiners hear of its end, also for
 * killed tasklets and, in a child process, for tasklets ended by SIGINT;
 * rounds for values set by destructors; the user pointer from spawn, set
 * and read by id, and in a group (-EXDEV for another scheduler's tasklet). */
// coil-test: tsan (a group of two schedulers; SIGINT while a scheduler runs)
#include "coil_test.h"

static void noop(void *arg) {
    (void)arg;
}

/* ---- keys: create, delete, the limit, outside a tasklet ------------------ */

static void test_key_errors_outside(void **state) {
    (void)state;
    coil_key k = 0;
    assert_int_equal(coil_key_create(NULL, NULL), -EINVAL);
    assert_int_equal(coil_key_create(&k, NULL), 0);
    assert_true(k != 0);
    /* outside a tasklet: set is -EPERM, get is NULL */
    assert_int_equal(coil_local_set(k, &k), -EPERM);
    assert_null(coil_local_get(k));
    assert_null(coil_user());
    assert_int_equal(coil_set_user(1, &k), -EPERM);
    void *out = &out;
    assert_int_equal(coil_get_user(1, &out), -EPERM);
    assert_int_equal(coil_get_user(1, NULL), -EINVAL);
    assert_int_equal(coil_key_delete(k), 0);
    assert_int_equal(coil_key_delete(k), -EINVAL);
    assert_int_equal(coil_key_delete(0), -EINVAL);
    assert_int_equal(coil_key_delete(0xffffffffu), -EINVAL);
}

static void test_key_limit(void **state) {
    (void)state;
    coil_key keys[COIL_KEYS_MAX];
    for (int i = 0; i < COIL_KEYS_MAX; i++)
        assert_int_equal(coil_key_create(&keys[i], NULL), 0);
    coil_key extra = 12345;
    assert_int_equal(coil_key_create(&extra, NULL), -EAGAIN);
    assert_int_equal(extra, 12345); /* untouched */
    /* one deleted: one more can be made, a new key (the old one stays dead) */
    coil_key old = keys[7];
    assert_int_equal(coil_key_delete(old), 0);
    assert_int_equal(coil_key_create(&keys[7], NULL), 0);
    assert_true(keys[7] != old);
    assert_int_equal(coil_key_delete(old), -EINVAL);
    assert_int_equal(coil_key_create(&extra, NULL), -EAGAIN);
    for (int i = 0; i < COIL_KEYS_MAX; i++)
        assert_int_equal(coil_key_delete(keys[i]), 0);
}

/* ---- set and get --------------------------------------------------------- */

struct setget {
    coil_key k1, k2, dead;
    int a, b;
    int other_saw_null;
};

static void setget_other(void *arg) {
    struct setget *g = arg;
    g->other_saw_null = coil_local_get(g->k1) == NULL && coil_local_get(g->k2) == NULL;
    EXPECT_EQ(coil_local_set(g->k2, &g->b), 0);
    EXPECT(coil_local_get(g->k2) == &g->b);
}

static void setget_main(void *arg) {
    struct setget *g = arg;
    EXPECT(coil_local_get(g->k1) == NULL);
    EXPECT_EQ(coil_local_set(g->k1, NULL), 0); /* clearing with no table allocates nothing */
    EXPECT_EQ(coil_local_set(g->k2, &g->a), 0);
    EXPECT(coil_local_get(g->k2) == &g->a);
    EXPECT(coil_local_get(g->k1) == NULL);
    EXPECT_EQ(coil_local_set(g->k1, &g->b), 0);
    EXPECT(coil_local_get(g->k1) == &g->b);
    EXPECT_EQ(coil_local_set(g->dead, &g->a), -EINVAL);
    EXPECT(coil_local_get(g->dead) == NULL);
    EXPECT_EQ(coil_local_set(0, &g->a), -EINVAL);
    EXPECT(coil_local_get(0) == NULL);
    coil_id id = coil_spawn(setget_other, g, NULL);
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    EXPECT(g->other_saw_null);
    EXPECT(coil_local_get(g->k2) == &g->a); /* the other's value is its own */
    /* A deleted key's value is unreachable, also through the key that reuses
     * its slot. */
    coil_key k1 = g->k1;
    EXPECT_EQ(coil_key_delete(k1), 0);
    EXPECT(coil_local_get(k1) == NULL);
    EXPECT_EQ(coil_local_set(k1, &g->a), -EINVAL);
    EXPECT_EQ(coil_key_create(&g->k1, NULL), 0);
    EXPECT(coil_local_get(g->k1) == NULL);
    EXPECT_EQ(coil_local_set(g->k1, NULL), 0);
    EXPECT_EQ(coil_local_set(g->k2, NULL), 0);
    EXPECT(coil_local_get(g->k2) == NULL);
}

static void test_set_get(void **state) {
    (void)state;
    struct setget g;
    memset(&g, 0, sizeof g);
    assert_int_equal(coil_key_create(&g.k1, NULL), 0);
    assert_int_equal(coil_key_create(&g.k2, NULL), 0);
    assert_int_equal(coil_key_create(&g.dead, NULL), 0);
    assert_int_equal(coil_key_delete(g.dead), 0);
    COIL_RUN_CHECKED(setget_main, &g);
    assert_int_equal(coil_key_delete(g.k1), 0);
    assert_int_equal(coil_key_delete(g.k2), 0);
}

/* ---- destructors ---------------------------------------------------------- */

#define N_TASKLETS 20

struct dtor_ctx {
    coil_key k1, k2;
    int calls[N_TASKLETS][2]; /* per tasklet, per key */
    char order[N_TASKLETS][4];
    coil_id self_in_dtor[N_TASKLETS];
    coil_id id[N_TASKLETS];
    int killed_in_dtor[N_TASKLETS];
    int sleep_rc_in_dtor[N_TASKLETS];
    int done_at_join[N_TASKLETS];
    int wrong_value;
};

static struct dtor_ctx *dc;

/* The value is the tasklet's index + 1, as a pointer into a static array. */
static int slots[N_TASKLETS][2];

static void dtor(int key, void *value) {
    int *v = value;
    int i = v[0];
    if (v != &slots[i][key]) dc->wrong_value = 1;
    dc->calls[i][key]++;
    size_t n = strlen(dc->order[i]);
    dc->order[i][n] = key ? 'b' : 'a';
    dc->self_in_dtor[i] = coil_self();
    dc->killed_in_dtor[i] = coil_killed();
    if (key == 0) {
        dc->sleep_rc_in_dtor[i] = coil_sleep(COIL_MSEC);         /* a wait in a destructor */
        if (coil_local_get(dc->k1) != NULL) dc->wrong_value = 1; /* cleared before the call */
    }
}

static void dtor_a(void *value) {
    dtor(0, value);
}

static void dtor_b(void *value) {
    dtor(1, value);
}

static void dtor_worker(void *arg) {
    int i = (int)(intptr_t)arg;
    slots[i][0] = slots[i][1] = i;
    /* k2 set first: the order is the keys' slots', not the order of setting */
    coil_local_set(dc->k2, &slots[i][1]);
    if (i % 4 != 3) coil_local_set(dc->k1, &slots[i][0]); /* every fourth: one value only */
    if (i % 2) coil_sleep(10 * COIL_SEC);                 /* the odd ones are killed here */
}

static void dtor_main(void *arg) {
    (void)arg;
    for (int i = 0; i < N_TASKLETS; i++)
        dc->id[i] = coil_spawn(dtor_worker, (void *)(intptr_t)i, NULL);
    coil_sleep(5 * COIL_MSEC);
    for (int i = 1; i < N_TASKLETS; i += 2)
        EXPECT_EQ(coil_kill(dc->id[i]), 0);
    for (int i = 0; i < N_TASKLETS; i++) {
        EXPECT_EQ(coil_join(dc->id[i], COIL_FOREVER), 0);
        /* the destructors (which wait) had all run when the join returned */
        dc->done_at_join[i] = dc->calls[i][1];
    }
}

static void test_destructors(void **state) {
    (void)state;
    static struct dtor_ctx ctx;
    memset(&ctx, 0, sizeof ctx);
    dc = &ctx;
    assert_int_equal(coil_key_create(&ctx.k1, dtor_a), 0);
    assert_int_equal(coil_key_create(&ctx.k2, dtor_b), 0);
    assert_true((ctx.k1 & 0xff) < (ctx.k2 & 0xff));
    COIL_RUN_CHECKED(dtor_main, NULL);
    assert_int_equal(ctx.wrong_value, 0);
    for (int i = 0; i < N_TASKLETS; i++) {
        assert_int_equal(ctx.calls[i][0], i % 4 != 3);
        assert_int_equal(ctx.calls[i][1], 1);
        assert_string_equal(ctx.order[i], i % 4 != 3 ? "ab" : "b");
        assert_int_equal(ctx.self_in_dtor[i], ctx.id[i]);
        assert_int_equal(ctx.killed_in_dtor[i], i % 2);
        if (i % 4 != 3) assert_int_equal(ctx.sleep_rc_in_dtor[i], i % 2 ? -ECANCELED : 0);
        assert_int_equal(ctx.done_at_join[i], 1);
    }
    assert_int_equal(coil_key_delete(ctx.k1), 0);
    assert_int_equal(coil_key_delete(ctx.k2), 0);
}

/* A destructor that sets values again gets more rounds, up to
 * COIL_DESTRUCTOR_ROUNDS; a deleted key's values get no call; a NULL
 * destructor is no call. */
static coil_key again_key, late_key, nodtor_key, deleted_key;
static int again_calls, late_calls, deleted_calls;

static void again_dtor(void *value) {
    again_calls++;
    coil_local_set(again_key, value); /* forever: stopped after the last round */
}

static void late_dtor(void *value) {
    (void)value;
    late_calls++;
}

static void first_dtor(void *value) {
    (void)value;
    /* a value of another key, set during the first round: the next round */
    coil_local_set(late_key, &late_calls);
}

static void deleted_dtor(void *value) {
    (void)value;
    deleted_calls++;
}

static coil_key first_key;

static void rounds_worker(void *arg) {
    (void)arg;
    coil_local_set(again_key, &again_calls);
    coil_local_set(first_key, &again_calls);
    coil_local_set(nodtor_key, &again_calls);
    coil_local_set(deleted_key, &again_calls);
    coil_key_delete(deleted_key);
}

static void rounds_main(void *arg) {
    (void)arg;
    EXPECT_EQ(coil_join(coil_spawn(rounds_worker, NULL, NULL), COIL_FOREVER), 0);
}

static void test_destructor_rounds(void **state) {
    (void)state;
    assert_int_equal(coil_key_create(&again_key, again_dtor), 0);
    assert_int_equal(coil_key_create(&first_key, first_dtor), 0);
    assert_int_equal(coil_key_create(&nodtor_key, NULL), 0);
    assert_int_equal(coil_key_create(&deleted_key, deleted_dtor), 0);
    /* the last slot, so that the table grows inside a destructor */
    coil_key fill[COIL_KEYS_MAX];
    int nfill = 0;
    while (coil_key_create(&fill[nfill], NULL) == 0)
        nfill++;
    assert_int_equal(coil_key_delete(fill[nfill - 1]), 0);
    assert_int_equal(coil_key_create(&late_key, late_dtor), 0);
    assert_int_equal(late_key & 0xff, COIL_KEYS_MAX - 1);
    COIL_RUN_OK(rounds_main, NULL);
    assert_int_equal(again_calls, COIL_DESTRUCTOR_ROUNDS);
    assert_int_equal(late_calls, 1);
    assert_int_equal(deleted_calls, 0);
    for (int i = 0; i < nfill - 1; i++)
        assert_int_equal(coil_key_delete(fill[i]), 0);
    assert_int_equal(coil_key_delete(late_key), 0);
    assert_int_equal(coil_key_delete(again_key), 0);
    assert_int_equal(coil_key_delete(first_key), 0);
    assert_int_equal(coil_key_delete(nodtor_key), 0);
}

/* ---- destructors at a shutdown (SIGINT, in a child) ------------------------ */
#ifndef _WIN32 /* no fork there */

#define SIG_WORKERS 16

static coil_key sig_key;
static int sig_calls[SIG_WORKERS];
static int sig_killed[SIG_WORKERS];

static void sig_dtor(void *value) {
    int i = (int)((int *)value - sig_calls);
    sig_calls[i]++;
    sig_killed[i] = coil_killed();
}

static void sig_worker(void *arg) {
    int i = (int)(intptr_t)arg;
    coil_local_set(sig_key, &sig_calls[i]);
    while (coil_sleep(COIL_MSEC) == 0) {
    }
}

static void sig_main(void *arg) {
    (void)arg;
    for (int i = 0; i < SIG_WORKERS; i++)
        coil_spawn(sig_worker, (void *)(intptr_t)i, NULL);
    coil_sleep(20 * COIL_MSEC);
    fprintf(stderr, "ready\n");
    fflush(stderr);
    coil_sleep(20 * COIL_SEC); /* SIGINT ends this */
}

static void sig_child(void *arg) {
    (void)arg;
    signal(SIGINT, SIG_DFL);
    if (coil_key_create(&sig_key, sig_dtor) != 0) _exit(2);
    int rc = coil_run(sig_main, NULL);
    int ok = rc == -EINTR;
    for (int i = 0; i < SIG_WORKERS; i++) {
        ok &= sig_calls[i] == 1 && sig_killed[i] == 1;
        if (sig_calls[i] != 1) fprintf(stderr, "worker %d: %d destructor calls\n", i, sig_calls[i]);
    }
    fprintf(stderr, "coil_run=%d\n", rc);
    _exit(ok ? 0 : 1);
}

static void test_destructors_at_sigint(void **state) {
    (void)state;
    struct coil_test_child c;
    bool ready = coil_test_child_signal_at(&c, sig_child, NULL, "ready", SIGINT);
    if (!ready || !coil_test_child_exited(&c, 0)) {
        coil_test_child_describe(&c);
        coil_test_child_free(&c);
        fail_msg("SIGINT: a destructor did not run exactly once per tasklet");
    }
    coil_test_child_free(&c);
}
#endif

/* ---- the user pointer ------------------------------------------------------ */

struct user_ctx {
    int a, b;
    void *seen_at_start;
    void *seen_after_set;
    coil_id worker;
};

static void user_worker(void *arg) {
    struct user_ctx *u = arg;
    u->seen_at_start = coil_user();
    coil_sleep(5 * COIL_MSEC);
    u->seen_after_set = coil_user();
}

static void user_main(void *arg) {
    struct user_ctx *u = arg;
    EXPECT(coil_user() == NULL);
    EXPECT_EQ(coil_set_user(coil_self(), &u->a), 0);
    EXPECT(coil_user() == &u->a);
    coil_spawn_opts opts = {.user = &u->b};
    u->worker = coil_spawn(user_worker, u, &opts);
    void *out = NULL;
    EXPECT_EQ(coil_get_user(u->worker, &out), 0);
    EXPECT(out == &u->b);
    coil_sleep(COIL_MSEC);
    EXPECT_EQ(coil_set_user(u->worker, &u->a), 0);
    EXPECT_EQ(coil_join(u->worker, COIL_FOREVER), 0);
    out = &out;
    EXPECT_EQ(coil_get_user(u->worker, &out), -ESRCH); /* finished */
    EXPECT(out == &out);                               /* untouched */
    EXPECT_EQ(coil_set_user(u->worker, NULL), -ESRCH);
    EXPECT_EQ(coil_set_user(0, NULL), -ESRCH);
    EXPECT_EQ(coil_set_user(1000000, NULL), -ESRCH);
    EXPECT_EQ(coil_get_user(coil_self(), NULL), -EINVAL);
    EXPECT(coil_spawn(noop, NULL, NULL) > 0);
}

static void test_user_pointer(void **state) {
    (void)state;
    struct user_ctx u;
    memset(&u, 0, sizeof u);
    COIL_RUN_CHECKED(user_main, &u);
    assert_ptr_equal(u.seen_at_start, &u.b);
    assert_ptr_equal(u.seen_after_set, &u.a);
}

/* In a group: each scheduler's tasklets have their own pointers and values;
 * a tasklet of another scheduler is -EXDEV. */
static coil_key group_key;
static int group_dtor_calls;

static void group_dtor(void *value) {
    (void)value;
    __atomic_add_fetch(&group_dtor_calls, 1, __ATOMIC_RELAXED);
}

struct group_ctx {
    int v[2];
    coil_id remote;
    int remote_ok;
    coil_chan *go;
};

static void group_remote(void *arg) {
    struct group_ctx *g = arg;
    coil_set_user(coil_self(), &g->v[1]);
    coil_local_set(group_key, &g->v[1]);
    g->remote_ok =
        coil_user() == &g->v[1] && coil_local_get(group_key) == &g->v[1] && coil_sched_index() == 1;
    int x;
    coil_chan_recv(g->go, &x); /* stays alive until main has looked */
}

static void group_main(void *arg) {
    struct group_ctx *g = arg;
    EXPECT_EQ(coil_local_set(group_key, &g->v[0]), 0);
    g->remote = coil_spawn_on(1, group_remote, g, NULL);
    EXPECT(g->remote > 0);
    void *out = &out;
    EXPECT_EQ(coil_get_user(g->remote, &out), -EXDEV);
    EXPECT_EQ(coil_set_user(g->remote, NULL), -EXDEV);
    int x = 1;
    EXPECT_EQ(coil_chan_send(g->go, &x), 0);
    EXPECT_EQ(coil_join(g->remote, COIL_FOREVER), 0);
    EXPECT(coil_local_get(group_key) == &g->v[0]);
}

static void test_group(void **state) {
    (void)state;
    struct group_ctx g;
    memset(&g, 0, sizeof g);
    assert_int_equal(coil_key_create(&group_key, group_dtor), 0);
    assert_int_equal(coil_chan_open(&g.go, sizeof(int), 0), 0);
    coil_test_reset_failures();
    assert_int_equal(coil_run_group(2, group_main, &g), 0);
    coil_test_assert_no_failure();
    assert_int_equal(g.remote_ok, 1);
    assert_int_equal(group_dtor_calls, 2);
    assert_int_equal(coil_chan_free(g.go), 0);
    assert_int_equal(coil_key_delete(group_key), 0);
}

int main(void) {
#ifndef _WIN32
    coil_test_apply_filter();
#endif
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_errors_outside),
        cmocka_unit_test(test_key_limit),
        cmocka_unit_test(test_set_get),
        cmocka_unit_test(test_destructors),
        cmocka_unit_test(test_destructor_rounds),
#ifndef _WIN32
        cmocka_unit_test(test_destructors_at_sigint),
#endif
        cmocka_unit_test(test_user_pointer),
        cmocka_unit_test(test_group),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
