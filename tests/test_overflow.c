/* Stack overflow: a tasklet that runs off the bottom of its stack hits the
 * guard page, and the process aborts with a message naming it:
 *   coil: tasklet <id> "<name>" overflowed its <N>-byte stack
 * Faults that are not in a guard page keep their usual fate (SIGSEGV, or a
 * handler the program installed before coil).
 *
 * Every scenario runs in a forked child. The parent never calls coil_run, so
 * that coil installs its fault handler in each child afresh, after the child
 * has put back the default action that cmocka's own handler replaced. */
// coil-test: tsan (a scheduler on a thread of its own overflows a stack)
#include "coil_test.h"

#include <pthread.h>
#include <sys/mman.h>

/* Exit codes of a child that did not die. */
enum { CHILD_RUN_RETURNED = 10, CHILD_SIGACTION_FAILED = 11 };

static void default_fault_actions(void) {
    signal(SIGSEGV, SIG_DFL);
    signal(SIGBUS, SIG_DFL);
    signal(SIGABRT, SIG_DFL);
}

static __attribute__((noinline)) int recurse(int depth) {
    volatile char frame[512];
    frame[0] = (char)depth;
    frame[sizeof frame - 1] = (char)(depth >> 8);
    if (depth > 100000000) return frame[0];
    return recurse(depth + 1) + frame[sizeof frame - 1];
}

static volatile int sink;

static void overflow(void *arg) {
    (void)arg;
    sink = recurse(0);
}

/* ---- the scenarios (run in children) ------------------------------------- */

struct scenario {
    const char *name;  /* of the overflowing tasklet; NULL: unnamed */
    size_t stack_size; /* 0: default */
    int warm_pool;     /* spawn and finish this many tasklets first */
    int bystanders;    /* sleeping tasklets around it */
    int in_main;       /* overflow in main itself */
};

static void sleep_a_while(void *arg) {
    (void)arg;
    coil_sleep(10 * COIL_SEC);
}

static void noop(void *arg) {
    (void)arg;
}

static void scenario_main(void *arg) {
    const struct scenario *s = arg;
    if (s->in_main) overflow(NULL);
    for (int i = 0; i < s->warm_pool; i++)
        coil_join(coil_spawn(noop, NULL, NULL), COIL_FOREVER);
    for (int i = 0; i < s->bystanders; i++)
        coil_spawn(sleep_a_while, NULL, &(coil_spawn_opts){.name = "bystander"});
    coil_spawn(overflow, NULL, &(coil_spawn_opts){.name = s->name, .stack_size = s->stack_size});
}

static void scenario_child(void *arg) {
    default_fault_actions();
    coil_run(scenario_main, arg);
    _exit(CHILD_RUN_RETURNED);
}

/* Runs child(arg) in a child process; asserts that it died by SIGABRT and
 * wrote want. */
static void expect_abort_with(void (*child)(void *), void *arg, const char *want) {
    struct coil_test_child c;
    coil_test_fork_run(&c, child, arg, 60000);
    if (!coil_test_child_signaled(&c, SIGABRT) || !strstr(c.err, want)) {
        coil_test_child_describe(&c);
        coil_test_child_free(&c);
        fail_msg("expected death by SIGABRT and: %s", want);
    }
    coil_test_child_free(&c);
}

/* Runs scenario s in a child: tasklet id (named as in s) must be reported
 * as having overflowed its stack of `reported` bytes. */
static void expect_overflow_in(void (*child)(void *), const struct scenario *s, coil_id id,
                               size_t reported) {
    char want[256];
    snprintf(want, sizeof want, "coil: tasklet %lld \"%s\" overflowed its %zu-byte stack",
             (long long)id, s->name ? s->name : "", reported);
    expect_abort_with(child, (void *)s, want);
}

static void expect_overflow(const struct scenario *s, coil_id id, size_t reported) {
    expect_overflow_in(scenario_child, s, id, reported);
}

static size_t page_size(void) {
    return (size_t)sysconf(_SC_PAGESIZE);
}

static void test_overflow_named_small_stack(void **state) {
    (void)state;
    struct scenario s = {.name = "deep", .stack_size = 64 * 1024};
    expect_overflow(&s, 2, 64 * 1024);
}

static void test_overflow_reports_the_rounded_size(void **state) {
    (void)state;
    size_t page = page_size();
    size_t asked = COIL_STACK_MIN + 1;
    size_t rounded = (asked + page - 1) / page * page;
    struct scenario s = {.name = "odd-size", .stack_size = asked};
    expect_overflow(&s, 2, rounded);
}

static void test_overflow_unnamed_default_stack(void **state) {
    (void)state;
    struct scenario s = {.name = NULL};
    expect_overflow(&s, 2, COIL_STACK_DEFAULT);
}

static void test_overflow_in_main(void **state) {
    (void)state;
    struct scenario s = {.name = "main", .in_main = 1};
    expect_overflow(&s, 1, COIL_STACK_DEFAULT);
}

static void test_overflow_on_a_recycled_stack_among_others(void **state) {
    (void)state;
    /* Ten stacks go back to the pool first; the overflowing tasklet gets one
     * of them, and sleepers named otherwise must not be blamed. */
    struct scenario s = {.name = "recycled", .warm_pool = 10, .bystanders = 3};
    expect_overflow(&s, 2 + 10 + 3, COIL_STACK_DEFAULT);
}

/* The alternate signal stack the handler runs on is per thread and per run:
 * an overflow is still reported in a scheduler on another thread, and in a
 * later run on a thread that has run one before. */
static void *thread_run_scenario(void *arg) {
    coil_run(scenario_main, arg);
    return NULL;
}

static void other_thread_child(void *arg) {
    default_fault_actions();
    pthread_t t;
    if (pthread_create(&t, NULL, thread_run_scenario, arg) != 0) _exit(CHILD_SIGACTION_FAILED);
    pthread_join(t, NULL);
    _exit(CHILD_RUN_RETURNED);
}

static void test_overflow_in_a_scheduler_on_another_thread(void **state) {
    (void)state;
    struct scenario s = {.name = "threaded", .stack_size = 64 * 1024};
    expect_overflow_in(other_thread_child, &s, 2, 64 * 1024);
}

static void second_run_child(void *arg) {
    default_fault_actions();
    if (coil_run(noop, NULL) != 0) _exit(CHILD_SIGACTION_FAILED);
    coil_run(scenario_main, arg);
    _exit(CHILD_RUN_RETURNED);
}

static void test_overflow_in_a_later_run(void **state) {
    (void)state;
    struct scenario s = {.name = "second", .stack_size = 64 * 1024};
    expect_overflow_in(second_run_child, &s, 2, 64 * 1024);
}

/* ---- faults that are not overflows ------------------------------------------- */

static void *volatile null_ptr;

static void write_null(void *arg) {
    (void)arg;
    *(volatile int *)null_ptr = 1;
}

static void *volatile prot_none_page;

static void write_prot_none(void *arg) {
    (void)arg;
    *(volatile char *)prot_none_page = 1;
}

/* What the "faulty" tasklet runs, set by the parent before it forks. */
static coil_fn faulter;

static void spawn_faulter(void *arg) {
    (void)arg;
    coil_spawn(faulter, NULL, &(coil_spawn_opts){.name = "faulty"});
}

static void fault_child(void *arg) {
    default_fault_actions();
    coil_run(spawn_faulter, arg);
    _exit(CHILD_RUN_RETURNED);
}

static void expect_plain_segv(coil_fn fn) {
    struct coil_test_child c;
    faulter = fn;
    coil_test_fork_run(&c, fault_child, NULL, 60000);
    if (!coil_test_child_signaled(&c, SIGSEGV) || strstr(c.err, "overflowed")) {
        coil_test_child_describe(&c);
        coil_test_child_free(&c);
        fail_msg("expected a plain SIGSEGV, not an overflow report");
    }
    coil_test_child_free(&c);
}

static void test_null_write_is_a_plain_segv(void **state) {
    (void)state;
    expect_plain_segv(write_null);
}

static void test_other_protected_page_is_a_plain_segv(void **state) {
    (void)state;
    void *p = mmap(NULL, page_size(), PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    assert_true(p != MAP_FAILED);
    prot_none_page = p;
    expect_plain_segv(write_prot_none);
    munmap(p, page_size());
}

/* A SIGSEGV handler that the program installed before coil still gets the
 * faults that are not overflows; overflows are still coil's. */
#define USER_HANDLER_EXIT 42

static void user_segv(int sig, siginfo_t *si, void *uctx) {
    (void)sig;
    (void)si;
    (void)uctx;
    static const char msg[] = "user handler ran\n";
    ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
    (void)w;
    _exit(USER_HANDLER_EXIT);
}

static void install_user_handler(void) {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = user_segv;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGSEGV, &sa, NULL) != 0) _exit(CHILD_SIGACTION_FAILED);
}

static void chained_fault_child(void *arg) {
    default_fault_actions();
    install_user_handler();
    coil_run(spawn_faulter, arg);
    _exit(CHILD_RUN_RETURNED);
}

static void test_earlier_handler_gets_other_faults(void **state) {
    (void)state;
    struct coil_test_child c;
    faulter = write_null;
    coil_test_fork_run(&c, chained_fault_child, NULL, 60000);
    /* Under Valgrind the deliberate invalid write is an error, and Valgrind
     * replaces the exit code with its own (99); the handler's output is the
     * proof then. */
    bool exited = coil_test_child_exited(&c, USER_HANDLER_EXIT) ||
                  (coil_test_under_valgrind() && coil_test_child_exited(&c, 99));
    if (!exited || !strstr(c.err, "user handler ran") || strstr(c.err, "overflowed")) {
        coil_test_child_describe(&c);
        coil_test_child_free(&c);
        fail_msg("the program's own SIGSEGV handler should have run");
    }
    coil_test_child_free(&c);
}

static void chained_overflow_child(void *arg) {
    default_fault_actions();
    install_user_handler();
    coil_run(scenario_main, arg);
    _exit(CHILD_RUN_RETURNED);
}

static void test_overflow_beats_earlier_handler(void **state) {
    (void)state;
    struct scenario s = {.name = "deep", .stack_size = 32 * 1024};
    expect_overflow_in(chained_overflow_child, &s, 2, 32 * 1024);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_overflow_named_small_stack),
        cmocka_unit_test(test_overflow_reports_the_rounded_size),
        cmocka_unit_test(test_overflow_unnamed_default_stack),
        cmocka_unit_test(test_overflow_in_main),
        cmocka_unit_test(test_overflow_on_a_recycled_stack_among_others),
        cmocka_unit_test(test_overflow_in_a_scheduler_on_another_thread),
        cmocka_unit_test(test_overflow_in_a_later_run),
        cmocka_unit_test(test_null_write_is_a_plain_segv),
        cmocka_unit_test(test_other_protected_page_is_a_plain_segv),
        cmocka_unit_test(test_earlier_handler_gets_other_faults),
        cmocka_unit_test(test_overflow_beats_earlier_handler),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
