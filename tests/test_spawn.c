/* Spawning and running tasklets: coil_run's contract (main is tasklet 1
 * "main", errors, it waits for everyone), spawn order, ids, names, spawn
 * options and stack sizes, the answers of every call outside a tasklet, and
 * one scheduler per thread. */
// coil-test: tsan (one scheduler per thread, two at once)
#include "coil_test.h"

#include <pthread.h>

static void noop(void *arg) {
    (void)arg;
}

static int count_calls;
static void count_call(void *arg) {
    (void)arg;
    count_calls++;
}

/* ---- coil_run ----------------------------------------------------------- */

static void test_run_null_main(void **state) {
    (void)state;
    assert_int_equal(coil_run(NULL, NULL), -EINVAL);
    assert_int_equal(coil_self(), 0);
    /* The refused call left no scheduler behind. */
    COIL_RUN_OK(noop, NULL);
}

struct main_rec {
    int ran;
    void *arg;
    coil_id self;
    char name[40];
    int name_null;
};

static void record_main(void *arg) {
    struct main_rec *r = arg;
    r->ran++;
    r->arg = arg;
    r->self = coil_self();
    const char *name = coil_name(coil_self());
    r->name_null = name == NULL;
    if (name) snprintf(r->name, sizeof r->name, "%s", name);
}

static void test_run_main_is_tasklet_1_named_main(void **state) {
    (void)state;
    struct main_rec r = {0};
    assert_int_equal(coil_self(), 0);
    COIL_RUN_OK(record_main, &r);
    assert_int_equal(r.ran, 1);
    assert_ptr_equal(r.arg, &r);
    assert_int_equal(r.self, 1);
    assert_false(r.name_null);
    assert_string_equal(r.name, "main");
    assert_int_equal(coil_self(), 0);
}

struct nested_rec {
    int rc;
    int rc_null;
};

static void run_nested(void *arg) {
    struct nested_rec *r = arg;
    r->rc = coil_run(count_call, NULL);
    r->rc_null = coil_run(NULL, NULL);
}

static void test_run_nested_is_ebusy(void **state) {
    (void)state;
    struct nested_rec r = {0};
    count_calls = 0;
    COIL_RUN_OK(run_nested, &r);
    assert_int_equal(r.rc, -EBUSY);
    /* NULL is checked first; either way nothing ran. */
    assert_int_equal(r.rc_null, -EINVAL);
    assert_int_equal(count_calls, 0);
    /* The thread's scheduler is gone again: a new run works. */
    COIL_RUN_OK(count_call, NULL);
    assert_int_equal(count_calls, 1);
}

/* Every call that needs a tasklet answers -EPERM outside one. */
static void check_outside(void) {
    assert_int_equal(coil_self(), 0);
    assert_int_equal(coil_spawn(noop, NULL, NULL), -EPERM);
    assert_int_equal(coil_spawn(noop, NULL, &(coil_spawn_opts){.name = "x"}), -EPERM);
    assert_int_equal(coil_yield(), -EPERM);
    assert_int_equal(coil_sleep(0), -EPERM);
    assert_int_equal(coil_sleep(-5), -EPERM);
    assert_int_equal(coil_sleep(COIL_MSEC), -EPERM);
    assert_int_equal(coil_sleep_until(coil_now() + COIL_MSEC), -EPERM);
    assert_int_equal(coil_sleep_until(0), -EPERM);
    assert_int_equal(coil_join(1, COIL_FOREVER), -EPERM);
    assert_int_equal(coil_join(1, 0), -EPERM);
    assert_int_equal(coil_kill(1), -EPERM);
    assert_null(coil_name(1));
    assert_null(coil_name(0));
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(coil_dump(f), -EPERM);
    fclose(f);
}

static void test_calls_outside_a_tasklet(void **state) {
    (void)state;
    check_outside();
    COIL_RUN_OK(noop, NULL);
    /* ... and again once a run is over. */
    check_outside();
}

struct after_rec {
    int flag;
    int64_t woke;
};

static void late_sleeper(void *arg) {
    struct after_rec *r = arg;
    if (coil_sleep(20 * COIL_MSEC) == 0) r->flag = 1;
    r->woke = coil_now();
}

static void late_grandchild(void *arg) {
    struct after_rec *r = arg;
    for (int i = 0; i < 10; i++)
        coil_yield();
    r[1].flag = 1;
}

static void late_spawner(void *arg) {
    struct after_rec *r = arg;
    coil_sleep(5 * COIL_MSEC);
    coil_spawn(late_grandchild, r, NULL);
}

static void spawn_and_return(void *arg) {
    coil_spawn(late_sleeper, arg, NULL);
    coil_spawn(late_spawner, arg, NULL);
}

static void test_run_waits_for_every_tasklet(void **state) {
    (void)state;
    struct after_rec r[2] = {{0}};
    int64_t t0 = coil_now();
    COIL_RUN_OK(spawn_and_return, r);
    int64_t t1 = coil_now();
    assert_int_equal(r[0].flag, 1);
    assert_int_equal(r[1].flag, 1);
    assert_true(r[0].woke >= t0 + 20 * COIL_MSEC);
    assert_true(t1 >= r[0].woke);
}

/* ---- spawn: order and ids ------------------------------------------------ */

struct order_log {
    int n;
    int seq[16];
    int flag_after_spawn;
};

struct order_arg {
    struct order_log *log;
    int tag;
};

static void append_tag(void *arg) {
    struct order_arg *a = arg;
    a->log->seq[a->log->n++] = a->tag;
}

static void spawn_five_then_yield(void *arg) {
    struct order_log *log = arg;
    static struct order_arg args[5];
    for (int i = 0; i < 5; i++) {
        args[i] = (struct order_arg){.log = log, .tag = i};
        coil_spawn(append_tag, &args[i], NULL);
    }
    /* Spawned tasklets are runnable but do not run before the caller yields. */
    log->flag_after_spawn = log->n;
    coil_yield();
    log->seq[log->n++] = 100;
}

static void test_spawn_runs_in_fifo_order_after_caller_yields(void **state) {
    (void)state;
    struct order_log log = {0};
    COIL_RUN_OK(spawn_five_then_yield, &log);
    assert_int_equal(log.flag_after_spawn, 0);
    assert_int_equal(log.n, 6);
    for (int i = 0; i < 5; i++)
        assert_int_equal(log.seq[i], i);
    assert_int_equal(log.seq[5], 100);
}

struct id_rec {
    coil_id spawned[8];
    coil_id seen[8];
};

static void record_self(void *arg) {
    *(coil_id *)arg = coil_self();
}

static void spawn_ids(void *arg) {
    struct id_rec *r = arg;
    for (int i = 0; i < 8; i++)
        r->spawned[i] = coil_spawn(record_self, &r->seen[i], NULL);
}

static void test_spawn_ids_are_positive_increasing_and_match_self(void **state) {
    (void)state;
    struct id_rec r;
    memset(&r, 0, sizeof r);
    COIL_RUN_OK(spawn_ids, &r);
    /* main is 1, so the first spawn is 2. */
    assert_int_equal(r.spawned[0], 2);
    for (int i = 0; i < 8; i++) {
        assert_true(r.spawned[i] > 1);
        if (i) assert_true(r.spawned[i] > r.spawned[i - 1]);
        assert_int_equal(r.seen[i], r.spawned[i]);
    }
}

struct reuse_rec {
    int bad_order;
    int bad_join;
    int bad_kill;
    int bad_name;
    int rounds;
};

static void test_ids_never_reused_main(void *arg) {
    struct reuse_rec *r = arg;
    coil_id prev = coil_self();
    coil_id first = 0;
    for (int i = 0; i < 300; i++) {
        coil_id id = coil_spawn(noop, NULL, NULL);
        if (id <= prev) r->bad_order++;
        if (!first) first = id;
        if (coil_join(id, COIL_FOREVER) != 0) r->bad_join++;
        /* Finished: still known as once valid, but no longer live. */
        if (coil_join(id, COIL_FOREVER) != 0) r->bad_join++;
        if (coil_kill(id) != -ESRCH) r->bad_kill++;
        if (coil_name(id) != NULL) r->bad_name++;
        prev = id;
        r->rounds++;
    }
    /* The very first id is still answered as finished, not as someone else. */
    if (coil_join(first, 0) != 0) r->bad_join++;
    if (coil_kill(first) != -ESRCH) r->bad_kill++;
}

static void test_ids_never_reused(void **state) {
    (void)state;
    struct reuse_rec r = {0};
    COIL_RUN_OK(test_ids_never_reused_main, &r);
    assert_int_equal(r.rounds, 300);
    assert_int_equal(r.bad_order, 0);
    assert_int_equal(r.bad_join, 0);
    assert_int_equal(r.bad_kill, 0);
    assert_int_equal(r.bad_name, 0);
}

struct restart_rec {
    coil_id main_id, first_spawn;
};

static void restart_main(void *arg) {
    struct restart_rec *r = arg;
    r->main_id = coil_self();
    r->first_spawn = coil_spawn(noop, NULL, NULL);
    for (int i = 0; i < 5; i++)
        coil_spawn(noop, NULL, NULL);
}

static void test_ids_start_again_in_a_new_run(void **state) {
    (void)state;
    struct restart_rec a = {0}, b = {0};
    COIL_RUN_OK(restart_main, &a);
    COIL_RUN_OK(restart_main, &b);
    assert_int_equal(a.main_id, 1);
    assert_int_equal(a.first_spawn, 2);
    assert_int_equal(b.main_id, 1);
    assert_int_equal(b.first_spawn, 2);
}

/* A tree of spawns: every tasklet spawns two children until depth 6. */
static int tree_count;
static void tree(void *arg) {
    intptr_t depth = (intptr_t)arg;
    tree_count++;
    if (depth < 6) {
        coil_spawn(tree, (void *)(depth + 1), NULL);
        coil_spawn(tree, (void *)(depth + 1), NULL);
    }
}

static void test_spawn_from_spawned_tasklets(void **state) {
    (void)state;
    tree_count = 0;
    COIL_RUN_OK(tree, (void *)(intptr_t)0);
    assert_int_equal(tree_count, (1 << 7) - 1);
}

/* ---- spawn: errors and options ------------------------------------------ */

struct opts_rec {
    coil_id null_fn, null_fn_opts;
    coil_id tiny, below_min, above_max, huge;
    coil_id at_min, min_plus_one, odd, at_max, zero;
};

static void spawn_with_sizes(void *arg) {
    struct opts_rec *r = arg;
    r->null_fn = coil_spawn(NULL, NULL, NULL);
    r->null_fn_opts = coil_spawn(NULL, NULL, &(coil_spawn_opts){.name = "x"});
    r->tiny = coil_spawn(count_call, NULL, &(coil_spawn_opts){.stack_size = 1});
    r->below_min =
        coil_spawn(count_call, NULL, &(coil_spawn_opts){.stack_size = COIL_STACK_MIN - 1});
    r->above_max =
        coil_spawn(count_call, NULL, &(coil_spawn_opts){.stack_size = COIL_STACK_MAX + 1});
    r->huge = coil_spawn(count_call, NULL, &(coil_spawn_opts){.stack_size = SIZE_MAX});
    r->at_min = coil_spawn(count_call, NULL, &(coil_spawn_opts){.stack_size = COIL_STACK_MIN});
    r->min_plus_one =
        coil_spawn(count_call, NULL, &(coil_spawn_opts){.stack_size = COIL_STACK_MIN + 1});
    r->odd = coil_spawn(count_call, NULL, &(coil_spawn_opts){.stack_size = 100000});
    r->at_max = coil_spawn(count_call, NULL, &(coil_spawn_opts){.stack_size = COIL_STACK_MAX});
    r->zero = coil_spawn(count_call, NULL, &(coil_spawn_opts){.stack_size = 0});
}

static void test_spawn_errors_and_stack_size_limits(void **state) {
    (void)state;
    struct opts_rec r;
    memset(&r, 0, sizeof r);
    count_calls = 0;
    COIL_RUN_OK(spawn_with_sizes, &r);
    assert_int_equal(r.null_fn, -EINVAL);
    assert_int_equal(r.null_fn_opts, -EINVAL);
    assert_int_equal(r.tiny, -EINVAL);
    assert_int_equal(r.below_min, -EINVAL);
    assert_int_equal(r.above_max, -EINVAL);
    assert_int_equal(r.huge, -EINVAL);
    assert_true(r.at_min > 0);
    assert_true(r.min_plus_one > 0);
    assert_true(r.odd > 0);
    assert_true(r.at_max > 0);
    assert_true(r.zero > 0);
    /* Exactly the five accepted ones ran. */
    assert_int_equal(count_calls, 5);
}

/* A tasklet can use (nearly) all of the stack it asked for: this touches
 * `use` bytes of a local array, and would fault if the stack were smaller. */
struct stack_use {
    size_t use;
    int done;
};

static __attribute__((noinline)) unsigned touch_stack(size_t use) {
    volatile unsigned char *buf = __builtin_alloca(use);
    for (size_t i = 0; i < use; i += 512)
        buf[i] = (unsigned char)i;
    buf[use - 1] = 7;
    unsigned sum = 0;
    for (size_t i = 0; i < use; i += 4096)
        sum += buf[i];
    return sum + buf[use - 1];
}

static void use_stack(void *arg) {
    struct stack_use *u = arg;
    (void)touch_stack(u->use);
    u->done = 1;
}

static void spawn_stack_users(void *arg) {
    struct stack_use *u = arg;
    coil_spawn(use_stack, &u[0], &(coil_spawn_opts){.stack_size = 64 * 1024});
    coil_spawn(use_stack, &u[1], NULL);
    coil_spawn(use_stack, &u[2], &(coil_spawn_opts){.stack_size = 1024 * 1024});
    coil_spawn(use_stack, &u[3], &(coil_spawn_opts){.stack_size = COIL_STACK_MIN});
}

static void test_spawn_stack_size_is_usable(void **state) {
    (void)state;
    struct stack_use u[4] = {
        {.use = 44 * 1024}, {.use = 200 * 1024}, {.use = 900 * 1024}, {.use = 6 * 1024}};
    COIL_RUN_OK(spawn_stack_users, u);
    for (int i = 0; i < 4; i++)
        assert_int_equal(u[i].done, 1);
}

/* ---- names --------------------------------------------------------------- */

struct names_rec {
    char main_name[40];
    char got[8][40];
    int null_ptr[8];
    int stable;
    int own_name_ok;
    int finished_null, never_null, zero_null, negative_null;
};

static void check_own_name(void *arg) {
    struct names_rec *r = arg;
    const char *n = coil_name(coil_self());
    r->own_name_ok = n != NULL && strcmp(n, "self-aware") == 0;
}

static void copy_name(struct names_rec *r, int i, coil_id id) {
    const char *n = coil_name(id);
    r->null_ptr[i] = n == NULL;
    if (n) snprintf(r->got[i], sizeof r->got[i], "%s", n);
}

static void spawn_names(void *arg) {
    struct names_rec *r = arg;
    char buf[64];
    snprintf(r->main_name, sizeof r->main_name, "%s", coil_name(1) ? coil_name(1) : "(null)");
    coil_id ids[6];
    ids[0] = coil_spawn(noop, NULL, NULL);
    ids[1] = coil_spawn(noop, NULL, &(coil_spawn_opts){.name = NULL});
    ids[2] = coil_spawn(noop, NULL, &(coil_spawn_opts){.name = ""});
    strcpy(buf, "worker");
    ids[3] = coil_spawn(noop, NULL, &(coil_spawn_opts){.name = buf});
    /* The name is copied: changing the caller's buffer changes nothing. */
    strcpy(buf, "changed");
    ids[4] = coil_spawn(noop, NULL,
                        &(coil_spawn_opts){.name = "0123456789abcdefghijklmnopqrstu"}); /* 31 */
    ids[5] = coil_spawn(noop, NULL,
                        &(coil_spawn_opts){.name = "0123456789abcdefghijklmnopqrstuvwxyz-40-ch"});
    const char *p3 = coil_name(ids[3]);
    for (int i = 0; i < 6; i++)
        copy_name(r, i, ids[i]);
    coil_id self_aware = coil_spawn(check_own_name, r, &(coil_spawn_opts){.name = "self-aware"});
    coil_yield(); /* everyone runs and finishes */
    /* The pointer stayed valid and unchanged while the tasklet lived. */
    r->stable = p3 != NULL && strcmp(p3, "worker") == 0;
    r->finished_null = coil_name(ids[3]) == NULL && coil_name(self_aware) == NULL;
    r->never_null = coil_name(self_aware + 1000) == NULL;
    r->zero_null = coil_name(0) == NULL;
    r->negative_null = coil_name(-1) == NULL;
}

static void test_spawn_names(void **state) {
    (void)state;
    struct names_rec r;
    memset(&r, 0, sizeof r);
    COIL_RUN_OK(spawn_names, &r);
    assert_string_equal(r.main_name, "main");
    for (int i = 0; i < 6; i++)
        assert_int_equal(r.null_ptr[i], 0);
    assert_string_equal(r.got[0], "");
    assert_string_equal(r.got[1], "");
    assert_string_equal(r.got[2], "");
    assert_string_equal(r.got[3], "worker");
    assert_string_equal(r.got[4], "0123456789abcdefghijklmnopqrstu");
    /* Copied up to 31 bytes. */
    assert_string_equal(r.got[5], "0123456789abcdefghijklmnopqrstu");
    assert_int_equal(r.stable, 1);
    assert_int_equal(r.own_name_ok, 1);
    assert_int_equal(r.finished_null, 1);
    assert_int_equal(r.never_null, 1);
    assert_int_equal(r.zero_null, 1);
    assert_int_equal(r.negative_null, 1);
}

/* ---- one scheduler per thread -------------------------------------------- */

struct thread_run {
    pthread_t thread;
    int tag;
    pthread_barrier_t *barrier;
    int rc;
    coil_id main_id;
    coil_id self_before;
    int migrated;
    int wrong_sched;
    int finished;
    int barrier_waited;
};

static __thread int thread_tag;

struct thread_worker {
    struct thread_run *run;
    int tag;
};

static void thread_worker(void *arg) {
    struct thread_worker *w = arg;
    for (int i = 0; i < 20; i++) {
        if (!pthread_equal(pthread_self(), w->run->thread)) w->run->migrated++;
        if (thread_tag != w->tag) w->run->wrong_sched++;
        coil_yield();
    }
    w->run->finished++;
}

static void thread_main(void *arg) {
    struct thread_run *run = arg;
    struct thread_worker workers[30];
    run->main_id = coil_self();
    coil_id ids[30];
    for (int i = 0; i < 30; i++) {
        workers[i] = (struct thread_worker){.run = run, .tag = thread_tag};
        ids[i] = coil_spawn(thread_worker, &workers[i], NULL);
    }
    /* Both schedulers are running at this point. */
    pthread_barrier_wait(run->barrier);
    run->barrier_waited = 1;
    for (int i = 0; i < 30; i++)
        coil_join(ids[i], COIL_FOREVER);
}

static void *thread_body(void *arg) {
    struct thread_run *run = arg;
    thread_tag = run->tag;
    run->self_before = coil_self();
    run->rc = coil_run(thread_main, run);
    return NULL;
}

static void test_one_scheduler_per_thread(void **state) {
    (void)state;
    pthread_barrier_t barrier;
    assert_int_equal(pthread_barrier_init(&barrier, NULL, 2), 0);
    struct thread_run runs[2];
    memset(runs, 0, sizeof runs);
    for (int i = 0; i < 2; i++) {
        runs[i].barrier = &barrier;
        runs[i].tag = 1000 + i;
        runs[i].self_before = -1;
        assert_int_equal(pthread_create(&runs[i].thread, NULL, thread_body, &runs[i]), 0);
    }
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_join(runs[i].thread, NULL), 0);
    pthread_barrier_destroy(&barrier);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(runs[i].rc, 0);
        assert_int_equal(runs[i].self_before, 0);
        /* Ids are per scheduler: each thread's main is 1. */
        assert_int_equal(runs[i].main_id, 1);
        assert_int_equal(runs[i].barrier_waited, 1);
        assert_int_equal(runs[i].finished, 30);
        assert_int_equal(runs[i].migrated, 0);
        assert_int_equal(runs[i].wrong_sched, 0);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_run_null_main),
        cmocka_unit_test(test_run_main_is_tasklet_1_named_main),
        cmocka_unit_test(test_run_nested_is_ebusy),
        cmocka_unit_test(test_calls_outside_a_tasklet),
        cmocka_unit_test(test_run_waits_for_every_tasklet),
        cmocka_unit_test(test_spawn_runs_in_fifo_order_after_caller_yields),
        cmocka_unit_test(test_spawn_ids_are_positive_increasing_and_match_self),
        cmocka_unit_test(test_ids_never_reused),
        cmocka_unit_test(test_ids_start_again_in_a_new_run),
        cmocka_unit_test(test_spawn_from_spawned_tasklets),
        cmocka_unit_test(test_spawn_errors_and_stack_size_limits),
        cmocka_unit_test(test_spawn_stack_size_is_usable),
        cmocka_unit_test(test_spawn_names),
        cmocka_unit_test(test_one_scheduler_per_thread),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
