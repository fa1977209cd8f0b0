/* Scale: ten thousand live tasklets that sleep and yield, a long join chain,
 * id lookups while thousands finish in random order, and many spawn/exit
 * cycles that must reuse (or free)
 * stacks instead of growing the address space. Scaled down under Valgrind. */
#include "coil_test.h"

static int scale(int n) {
    return coil_test_under_valgrind() ? n / 10 : n;
}

/* ---- many live tasklets ---------------------------------------------------- */

struct crowd {
    int n;
    int64_t deadline;
    int started, woke, finished;
    int bad_sleep, bad_yield, early;
    int max_live;
};

static void crowd_member(void *arg) {
    struct crowd *c = arg;
    c->started++;
    /* Spread the wake-ups over a few distinct deadlines. */
    int64_t deadline = c->deadline + (c->started % 16) * COIL_USEC;
    if (coil_sleep_until(deadline) != 0) c->bad_sleep++;
    if (coil_now() < deadline) c->early++;
    c->woke++;
    for (int i = 0; i < 2; i++)
        if (coil_yield() != 0) c->bad_yield++;
    c->finished++;
}

static void crowd_main(void *arg) {
    struct crowd *c = arg;
    c->deadline = coil_now() + 20 * COIL_MSEC;
    for (int i = 0; i < c->n; i++) {
        if (coil_spawn(crowd_member, c, NULL) <= 0) return;
    }
    /* Everyone is alive at once. */
    FILE *devnull = fopen("/dev/null", "w");
    if (devnull) {
        c->max_live = coil_dump(devnull);
        fclose(devnull);
    }
}

static void test_ten_thousand_tasklets(void **state) {
    (void)state;
    struct crowd c;
    memset(&c, 0, sizeof c);
    c.n = scale(10000);
    COIL_RUN_OK(crowd_main, &c);
    assert_int_equal(c.max_live, c.n + 1);
    assert_int_equal(c.started, c.n);
    assert_int_equal(c.woke, c.n);
    assert_int_equal(c.finished, c.n);
    assert_int_equal(c.bad_sleep, 0);
    assert_int_equal(c.bad_yield, 0);
    assert_int_equal(c.early, 0);
}

/* ---- a long join chain ------------------------------------------------------ */

struct chain {
    int n;
    coil_id *ids;
    int next; /* the link expected to finish next */
    int out_of_order;
    int bad_join;
};

static void chain_link(void *arg) {
    struct chain *c = arg;
    coil_id self = coil_self();
    int i = (int)(self - c->ids[0]);
    if (i > 0 && coil_join(c->ids[i - 1], COIL_FOREVER) != 0) c->bad_join++;
    if (i == 0) coil_sleep(COIL_MSEC);
    if (i != c->next) c->out_of_order++;
    c->next++;
}

static void chain_main(void *arg) {
    struct chain *c = arg;
    for (int i = 0; i < c->n; i++) {
        c->ids[i] = coil_spawn(chain_link, c, NULL);
        if (c->ids[i] != c->ids[0] + i) return; /* ids are consecutive here */
    }
    if (coil_join(c->ids[c->n - 1], COIL_FOREVER) != 0) c->bad_join++;
}

static void test_long_join_chain(void **state) {
    (void)state;
    struct chain c;
    memset(&c, 0, sizeof c);
    c.n = scale(3000);
    c.ids = calloc((size_t)c.n, sizeof *c.ids);
    assert_non_null(c.ids);
    COIL_RUN_OK(chain_main, &c);
    assert_int_equal(c.next, c.n);
    assert_int_equal(c.out_of_order, 0);
    assert_int_equal(c.bad_join, 0);
    free(c.ids);
}

/* ---- ids looked up while tasklets finish in random order ------------------- */

#define SCATTER_MAX 4000

struct scatter {
    int n;
    coil_id ids[SCATTER_MAX];
    int64_t deadline[SCATTER_MAX];
    int finished[SCATTER_MAX];
    long wrong_name, wrong_null, wrong_kill, checks;
};

struct scatter_arg {
    struct scatter *s;
    int i;
};

static void scatter_member(void *arg) {
    struct scatter_arg *a = arg;
    coil_sleep_until(a->s->deadline[a->i]);
    a->s->finished[a->i] = 1;
}

/* Every id must answer for its own tasklet while it lives, and for nobody
 * once it has finished, however the id map was reshuffled by deletions. */
static void scatter_check(struct scatter *s) {
    char want[32];
    for (int i = 0; i < s->n; i++) {
        const char *name = coil_name(s->ids[i]);
        s->checks++;
        if (s->finished[i]) {
            if (name) s->wrong_null++;
            if (coil_kill(s->ids[i]) != -ESRCH) s->wrong_kill++;
        } else {
            snprintf(want, sizeof want, "s%d", i);
            if (!name || strcmp(name, want) != 0) s->wrong_name++;
        }
    }
}

static void scatter_main(void *arg) {
    struct scatter *s = arg;
    static struct scatter_arg args[SCATTER_MAX];
    uint64_t seed = 88172645463325252ull;
    int64_t base = coil_now() + 10 * COIL_MSEC;
    for (int i = 0; i < s->n; i++) {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        s->deadline[i] = base + (int64_t)(seed % 40) * COIL_MSEC;
        char name[32];
        snprintf(name, sizeof name, "s%d", i);
        args[i] = (struct scatter_arg){.s = s, .i = i};
        s->ids[i] = coil_spawn(scatter_member, &args[i], &(coil_spawn_opts){.name = name});
    }
    scatter_check(s);
    for (int k = 0; k < 12; k++) {
        coil_sleep(4 * COIL_MSEC);
        scatter_check(s);
    }
    for (int i = 0; i < s->n; i++)
        coil_join(s->ids[i], COIL_FOREVER);
    scatter_check(s);
}

static void test_ids_stay_right_as_tasklets_finish_in_random_order(void **state) {
    (void)state;
    static struct scatter s;
    memset(&s, 0, sizeof s);
    s.n = scale(SCATTER_MAX);
    COIL_RUN_OK(scatter_main, &s);
    for (int i = 0; i < s.n; i++)
        assert_int_equal(s.finished[i], 1);
    assert_true(s.checks > 0);
    assert_int_equal(s.wrong_name, 0);
    assert_int_equal(s.wrong_null, 0);
    assert_int_equal(s.wrong_kill, 0);
}

/* ---- spawn/exit cycles ------------------------------------------------------- */

/* The process's virtual size in KiB (VmSize), or -1. */
static long vm_size_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    if (!f) return -1;
    char line[256];
    long kib = -1;
    while (fgets(line, sizeof line, f))
        if (sscanf(line, "VmSize: %ld kB", &kib) == 1) break;
    fclose(f);
    return kib;
}

struct cycles {
    int rounds, batch;
    size_t stack_size;
    long vm_early, vm_late;
    long spawned, finished;
    int bad_spawn, bad_join;
};

static void cycle_member(void *arg) {
    struct cycles *c = arg;
    volatile char buf[2048]; /* dirty a little of the stack */
    for (size_t i = 0; i < sizeof buf; i += 64)
        buf[i] = (char)i;
    coil_yield();
    c->finished++;
    (void)buf[0];
}

static void cycles_main(void *arg) {
    struct cycles *c = arg;
    coil_id ids[64];
    coil_spawn_opts opts = {.stack_size = c->stack_size};
    for (int r = 0; r < c->rounds; r++) {
        for (int i = 0; i < c->batch; i++) {
            ids[i] = coil_spawn(cycle_member, c, &opts);
            if (ids[i] <= 0) c->bad_spawn++;
            c->spawned++;
        }
        for (int i = 0; i < c->batch; i++)
            if (ids[i] > 0 && coil_join(ids[i], COIL_FOREVER) != 0) c->bad_join++;
        if (r == 1) c->vm_early = vm_size_kib();
    }
    c->vm_late = vm_size_kib();
}

static void run_cycles(size_t stack_size) {
    struct cycles c;
    memset(&c, 0, sizeof c);
    c.rounds = scale(100);
    c.batch = 50;
    c.stack_size = stack_size;
    COIL_RUN_OK(cycles_main, &c);
    assert_int_equal(c.bad_spawn, 0);
    assert_int_equal(c.bad_join, 0);
    assert_int_equal(c.finished, c.spawned);
    assert_int_equal(c.spawned, (long)c.rounds * c.batch);
    assert_true(c.vm_early > 0);
    assert_true(c.vm_late > 0);
    /* Leaking each finished tasklet's stack would add rounds * batch stacks
     * (about 1.2 GiB with default stacks, 0.3 GiB with 64 KiB ones); reuse
     * keeps the address space flat. */
    long grown = c.vm_late - c.vm_early;
    print_message("VmSize grew by %ld KiB over %d rounds\n", grown, c.rounds - 2);
    assert_true(grown < 32 * 1024);
}

static void test_spawn_exit_cycles_default_stacks(void **state) {
    (void)state;
    run_cycles(0);
}

static void test_spawn_exit_cycles_custom_stacks(void **state) {
    (void)state;
    /* Not pooled: each one must be unmapped when it finishes. */
    run_cycles(64 * 1024);
}

/* More finished at once than the pool keeps: the surplus is unmapped, and
 * the next crowd still gets stacks. */
struct waves {
    int waves, per_wave;
    long done;
    int bad;
};

static void wave_member(void *arg) {
    struct waves *w = arg;
    coil_yield();
    w->done++;
}

static void waves_main(void *arg) {
    struct waves *w = arg;
    for (int k = 0; k < w->waves; k++) {
        coil_id last = 0;
        for (int i = 0; i < w->per_wave; i++) {
            last = coil_spawn(wave_member, w, NULL);
            if (last <= 0) w->bad++;
        }
        /* FIFO: the last one spawned finishes last. */
        if (coil_join(last, COIL_FOREVER) != 0) w->bad++;
    }
}

static void test_waves_larger_than_the_pool(void **state) {
    (void)state;
    struct waves w = {.waves = 3, .per_wave = scale(1000)};
    COIL_RUN_OK(waves_main, &w);
    assert_int_equal(w.bad, 0);
    assert_int_equal(w.done, (long)w.waves * w.per_wave);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ten_thousand_tasklets),
        cmocka_unit_test(test_long_join_chain),
        cmocka_unit_test(test_ids_stay_right_as_tasklets_finish_in_random_order),
        cmocka_unit_test(test_spawn_exit_cycles_default_stacks),
        cmocka_unit_test(test_spawn_exit_cycles_custom_stacks),
        cmocka_unit_test(test_waves_larger_than_the_pool),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
