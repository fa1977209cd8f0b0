/* coil_dump and coil_dump_on_signal: what a dump lists (ids, names, states,
 * what each waits on), its return value and errors, and dumps requested by
 * a signal: raised by a tasklet, sent from outside while the scheduler is
 * idle in its backend or while it never goes idle, and seen by every
 * scheduler of the process. Signal
 * handlers are process-wide, so everything that installs one runs in a
 * forked child. */
// coil-test: tsan (the dump signal reaches two schedulers on two threads)
#include "coil_test.h"

#include <limits.h>
#include <pthread.h>

static void noop(void *arg) {
    (void)arg;
}

/* ---- the content of a dump ---------------------------------------------------- */

struct content {
    char *text;
    int rc;
    int rc_after;
    coil_id sleeper, joiner, receiver, sender, ready, chooser;
    int recv_rc, send_rc, sleep_rc, join_rc, choose_rc;
    coil_chan *rx, *tx;
};

static struct content *content;

static void c_sleeper(void *arg) {
    (void)arg;
    content->sleep_rc = coil_sleep(10 * COIL_SEC);
}

static void c_joiner(void *arg) {
    (void)arg;
    content->join_rc = coil_join(content->sleeper, COIL_FOREVER);
}

static void c_receiver(void *arg) {
    int v;
    content->recv_rc = coil_chan_recv(arg, &v);
}

static void c_sender(void *arg) {
    int v = 1;
    content->send_rc = coil_chan_send(arg, &v);
}

static void c_chooser(void *arg) {
    struct content *c = arg;
    int in, out = 2;
    coil_clause cl[2] = {{.ch = c->rx, .op = COIL_CHOOSE_RECV, .elem = &in},
                         {.ch = c->tx, .op = COIL_CHOOSE_SEND, .elem = &out}};
    c->choose_rc = coil_choose(cl, 2, COIL_FOREVER);
}

static void content_main(void *arg) {
    struct content *c = arg;
    coil_chan *rx, *tx;
    content = c;
    if (coil_chan_open(&rx, sizeof(int), 0) || coil_chan_open(&tx, sizeof(int), 0)) return;
    c->rx = rx;
    c->tx = tx;
    c->sleeper = coil_spawn(c_sleeper, NULL, &(coil_spawn_opts){.name = "dozer"});
    c->joiner = coil_spawn(c_joiner, NULL, &(coil_spawn_opts){.name = "waiter"});
    c->receiver = coil_spawn(c_receiver, rx, &(coil_spawn_opts){.name = "listener"});
    c->sender = coil_spawn(c_sender, tx, &(coil_spawn_opts){.name = "talker"});
    c->chooser = coil_spawn(c_chooser, c, &(coil_spawn_opts){.name = "picker"});
    coil_yield(); /* all five park */
    c->ready = coil_spawn(noop, NULL, &(coil_spawn_opts){.name = "eager"});
    size_t len = 0;
    FILE *f = open_memstream(&c->text, &len);
    if (!f) return;
    c->rc = coil_dump(f);
    fclose(f);
    /* Let everyone go, then count again. */
    coil_chan_close(rx);
    coil_chan_close(tx);
    coil_kill(c->sleeper);
    coil_join(c->joiner, COIL_FOREVER);
    coil_join(c->receiver, COIL_FOREVER);
    coil_join(c->sender, COIL_FOREVER);
    coil_join(c->chooser, COIL_FOREVER);
    coil_join(c->ready, COIL_FOREVER);
    FILE *devnull = fopen("/dev/null", "w");
    if (devnull) {
        c->rc_after = coil_dump(devnull);
        fclose(devnull);
    }
    coil_chan_free(rx);
    coil_chan_free(tx);
}

static void assert_line(const char *text, const char *name, coil_id id, const char *a,
                        const char *b) {
    char line[512];
    if (!coil_test_find_line(text, name, line, sizeof line)) fail_msg("no line for %s", name);
    if (!coil_test_has_number(line, id)) fail_msg("id %lld missing: %s", (long long)id, line);
    if (a && !strstr(line, a)) fail_msg("\"%s\" missing: %s", a, line);
    if (b && !strstr(line, b)) fail_msg("\"%s\" missing: %s", b, line);
}

static void test_dump_lists_every_tasklet(void **state) {
    (void)state;
    struct content c;
    memset(&c, 0, sizeof c);
    COIL_RUN_OK(content_main, &c);
    assert_non_null(c.text);
    print_message("%s", c.text);
    /* main, five parked, one runnable. */
    assert_int_equal(c.rc, 7);
    assert_line(c.text, "\"main\"", 1, "running", NULL);
    assert_line(c.text, "\"dozer\"", c.sleeper, "waiting", "sleep");
    assert_line(c.text, "\"waiter\"", c.joiner, "join", NULL);
    {
        /* ... and it says whom it joins. */
        char line[512];
        coil_test_find_line(c.text, "\"waiter\"", line, sizeof line);
        char *after = strstr(line, "join");
        assert_non_null(after);
        assert_true(coil_test_has_number(after, c.sleeper));
    }
    assert_line(c.text, "\"listener\"", c.receiver, "waiting", "chan recv");
    assert_line(c.text, "\"talker\"", c.sender, "waiting", "chan send");
    assert_line(c.text, "\"eager\"", c.ready, "runnable", NULL);
    /* a choose names each of its clauses */
    assert_line(c.text, "\"picker\"", c.chooser, "among 2: recv", " send ");
    assert_true(c.choose_rc == 0 || c.choose_rc == 1); /* the first clause closed */
    assert_int_equal(c.sleep_rc, -ECANCELED);
    assert_int_equal(c.join_rc, 0);
    assert_int_equal(c.recv_rc, -EPIPE);
    assert_int_equal(c.send_rc, -EPIPE);
    /* Only main is left at the second dump. */
    assert_int_equal(c.rc_after, 1);
    free(c.text);
}

/* ---- backtraces of parked tasklets ------------------------------------------------- */

/* Under each parked tasklet's line, the frames of its stack from where it
 * parked out to its entry, named from the dynamic symbol table (this test is
 * linked with -rdynamic, see tests/CMakeLists.txt). A tasklet never run has
 * no frames, nor has the running one. */

struct bt {
    coil_chan *ch;
    char *text;
    int rc;
    coil_id parker, fresh;
    int recv_rc;
};

/* Exported (not static) so that the dump can name them; noinline and a use
 * of the result after the call: each stays a frame of its own (no inlining,
 * no tail call). */
int parked_in_here(coil_chan *ch);
int parked_caller(coil_chan *ch);

__attribute__((noinline)) int parked_in_here(coil_chan *ch) {
    int v = 0;
    int rc = coil_chan_recv(ch, &v);
    return rc + v;
}

__attribute__((noinline)) int parked_caller(coil_chan *ch) {
    int rc = parked_in_here(ch);
    __asm__ volatile("" ::: "memory");
    return rc;
}

static void bt_parker(void *arg) {
    struct bt *b = arg;
    b->recv_rc = parked_caller(b->ch);
}

static void bt_main(void *arg) {
    struct bt *b = arg;
    if (coil_chan_open(&b->ch, sizeof(int), 0)) return;
    b->parker = coil_spawn(bt_parker, b, &(coil_spawn_opts){.name = "parker"});
    coil_yield(); /* it parks in parked_in_here */
    b->fresh = coil_spawn(noop, NULL, &(coil_spawn_opts){.name = "fresh"});
    size_t len = 0;
    FILE *f = open_memstream(&b->text, &len);
    if (f) {
        b->rc = coil_dump(f);
        fclose(f);
    }
    coil_chan_close(b->ch);
    coil_join(b->parker, COIL_FOREVER);
    coil_join(b->fresh, COIL_FOREVER);
    coil_chan_free(b->ch);
}

/* The lines after the one that contains needle, up to the next tasklet's
 * (or the end), in a string the caller frees. */
static char *frames_after(const char *text, const char *needle) {
    const char *at = strstr(text, needle);
    if (!at) return NULL;
    const char *start = strchr(at, '\n');
    if (!start) return strdup("");
    start++;
    const char *end = strstr(start, "  tasklet ");
    size_t n = end ? (size_t)(end - start) : strlen(start);
    return strndup(start, n);
}

static void test_dump_backtrace(void **state) {
    (void)state;
    struct bt b;
    memset(&b, 0, sizeof b);
    COIL_RUN_OK(bt_main, &b);
    assert_non_null(b.text);
    print_message("%s", b.text);
    assert_int_equal(b.rc, 3);
    assert_int_equal(b.recv_rc, -EPIPE);
    char *frames = frames_after(b.text, "\"parker\"");
    assert_non_null(frames);
    /* Every line is a frame line; the innermost named ones are coil's own
     * (the channel's park), then ours in call order. */
    for (const char *l = frames; *l; l = strchr(l, '\n') + 1) {
        if (strncmp(l, "      at ", 9) != 0) fail_msg("not a frame line: %s", l);
        if (!strchr(l, '\n')) break;
    }
    const char *in_here = strstr(frames, "      at parked_in_here+0x");
    const char *caller = strstr(frames, "      at parked_caller+0x");
    const char *entry = strstr(frames, "      at bt_parker");
    if (!in_here || !caller)
        fail_msg("parked_in_here, then parked_caller, expected in:\n%s", frames);
    assert_true(in_here < caller);
    /* bt_parker is static: not in the dynamic symbol table, so not named. */
    assert_null(entry);
    /* coil's frames come first (its park is static in libcoil: shown as
     * an address). */
    assert_true(in_here > frames);
    assert_non_null(strstr(in_here, "(test_dump)"));
    free(frames);
    /* Neither the running tasklet nor the one that has not run has frames. */
    frames = frames_after(b.text, "\"main\"");
    assert_non_null(frames);
    assert_string_equal(frames, "");
    free(frames);
    frames = frames_after(b.text, "\"fresh\"");
    assert_non_null(frames);
    assert_string_equal(frames, "");
    free(frames);
    free(b.text);
}

/* Stacks deeper than the dump shows: 32 frame lines, then one that says how
 * many more; exactly when the unwinder saw them all (64 collected), "at
 * least" when it stopped first. */

static coil_chan *deep_ch;

int parked_deep(int depth);

__attribute__((noinline)) int parked_deep(int depth) {
    int rc;
    if (depth == 0) {
        int v = 0;
        rc = coil_chan_recv(deep_ch, &v);
    } else {
        rc = parked_deep(depth - 1);
    }
    __asm__ volatile("" ::: "memory"); /* no tail call */
    return rc;
}

struct deep {
    char *text;
    int rc[2];
};

static struct deep *deep;

static void deep_parker(void *arg) {
    deep->rc[0] = parked_deep(*(int *)arg);
}

static void deeper_parker(void *arg) {
    deep->rc[1] = parked_deep(*(int *)arg);
}

static void deep_main(void *arg) {
    deep = arg;
    int depth[2] = {40, 100};
    if (coil_chan_open(&deep_ch, sizeof(int), 0)) return;
    coil_id a = coil_spawn(deep_parker, &depth[0], &(coil_spawn_opts){.name = "deep"});
    coil_id b = coil_spawn(deeper_parker, &depth[1], &(coil_spawn_opts){.name = "deeper"});
    coil_yield();
    size_t len = 0;
    FILE *f = open_memstream(&deep->text, &len);
    if (f) {
        coil_dump(f);
        fclose(f);
    }
    coil_chan_close(deep_ch);
    coil_join(a, COIL_FOREVER);
    coil_join(b, COIL_FOREVER);
    coil_chan_free(deep_ch);
}

/* Checks the frame lines under the tasklet named name: 32 shown, coil's few
 * first (at most 8: more without inlining, in the -O0 coverage build), then
 * only parked_deep, then the count of the rest. Returns that count. */
static int check_bounded(const char *text, const char *name, const char *count_prefix) {
    char *frames = frames_after(text, name);
    assert_non_null(frames);
    int lines = 0, in_deep = 0, before_deep = 0;
    const char *last = frames;
    for (const char *l = frames; *l; l = strchr(l, '\n') + 1) {
        lines++;
        last = l;
        if (strncmp(l, "      at parked_deep+0x", 23) == 0)
            in_deep++;
        else if (!in_deep)
            before_deep++;
        if (!strchr(l, '\n')) break;
    }
    print_message("%s: %d frame lines, %d of coil's, %d of parked_deep, the last: %s", name, lines,
                  before_deep, in_deep, last);
    assert_int_equal(lines, 33);
    assert_true(before_deep <= 8);
    assert_int_equal(before_deep + in_deep, 32);
    size_t n = strlen(count_prefix);
    if (strncmp(last, count_prefix, n) != 0) fail_msg("\"%s\" expected: %s", count_prefix, last);
    char *end;
    long more = strtol(last + n, &end, 10);
    assert_string_equal(end, " more)\n");
    free(frames);
    return (int)more;
}

static void test_dump_backtrace_is_bounded(void **state) {
    (void)state;
    struct deep d;
    memset(&d, 0, sizeof d);
    COIL_RUN_OK(deep_main, &d);
    assert_non_null(d.text);
    assert_int_equal(d.rc[0], -EPIPE);
    assert_int_equal(d.rc[1], -EPIPE);
    /* 41 parked_deep frames and a few of coil's and the entry's: all seen,
     * the count is exact (41 + those few - 32). */
    int more = check_bounded(d.text, "\"deep\"", "      at ... (");
    assert_true(more >= 41 - 32 && more < 64 - 32);
    /* 101: 64 collected, a few of them the dumper's (2, and a sanitizer's
     * interceptor of backtrace), 32 shown, the rest counted. */
    more = check_bounded(d.text, "\"deeper\"", "      at ... (at least ");
    assert_true(more >= 64 - 4 - 32 && more <= 64 - 2 - 32);
    free(d.text);
}

/* ---- errors ------------------------------------------------------------------------ */

static void dump_null(void *arg) {
    *(int *)arg = coil_dump(NULL);
}

static void test_dump_errors(void **state) {
    (void)state;
    int rc = 0;
    COIL_RUN_OK(dump_null, &rc);
    assert_int_equal(rc, -EINVAL);
    FILE *f = tmpfile();
    assert_non_null(f);
    assert_int_equal(coil_dump(f), -EPERM);
    /* Nothing was written by the refused call. */
    assert_int_equal(ftell(f), 0);
    fclose(f);
}

static void test_dump_on_signal_rejects_bad_signals(void **state) {
    (void)state;
    assert_int_equal(coil_dump_on_signal(0), -EINVAL);
    assert_int_equal(coil_dump_on_signal(-1), -EINVAL);
    assert_int_equal(coil_dump_on_signal(INT_MIN), -EINVAL);
    assert_int_equal(coil_dump_on_signal(NSIG), -EINVAL);
    assert_int_equal(coil_dump_on_signal(NSIG + 1), -EINVAL);
    assert_int_equal(coil_dump_on_signal(INT_MAX), -EINVAL);
    assert_int_equal(coil_dump_on_signal(SIGKILL), -EINVAL);
    assert_int_equal(coil_dump_on_signal(SIGSTOP), -EINVAL);
    assert_int_equal(coil_dump_on_signal(SIGSEGV), -EINVAL);
    assert_int_equal(coil_dump_on_signal(SIGBUS), -EINVAL);
}

/* ---- a signal raised by a tasklet ------------------------------------------------- */

struct raised {
    int signo;
};

static void napper(void *arg) {
    coil_sleep((int64_t)(intptr_t)arg * COIL_MSEC);
}

static void raise_main(void *arg) {
    struct raised *r = arg;
    coil_spawn(napper, (void *)(intptr_t)50, &(coil_spawn_opts){.name = "napper"});
    coil_yield();
    raise(r->signo);
    coil_sleep(10 * COIL_MSEC);
}

/* Child: exit 2 if the handler could not be installed, 3 if coil_run failed. */
static void raise_child(void *arg) {
    struct raised *r = arg;
    if (coil_dump_on_signal(r->signo) != 0) _exit(2);
    if (coil_run(raise_main, r) != 0) _exit(3);
}

static void check_raised(int signo) {
    struct raised r = {.signo = signo};
    struct coil_test_child c;
    coil_test_fork_run(&c, raise_child, &r, 30000);
    if (!coil_test_child_exited(&c, 0)) {
        coil_test_child_describe(&c);
        coil_test_child_free(&c);
        fail_msg("the child did not exit cleanly");
    }
    char line[512];
    if (!coil_test_find_line(c.err, "\"napper\"", line, sizeof line)) {
        coil_test_child_describe(&c);
        coil_test_child_free(&c);
        fail_msg("no dump on signal %d", signo);
    }
    assert_true(coil_test_has_number(line, 2));
    assert_non_null(strstr(line, "sleep"));
    assert_true(coil_test_find_line(c.err, "\"main\"", line, sizeof line));
    coil_test_child_free(&c);
}

static void test_dump_on_raised_sigquit(void **state) {
    (void)state;
    check_raised(SIGQUIT);
}

static void test_dump_on_raised_sigusr1(void **state) {
    (void)state;
    check_raised(SIGUSR1);
}

/* ---- a signal from outside, while the scheduler waits in its backend ------------- */

static int ready_pipe[2];

static void idle_main(void *arg) {
    (void)arg;
    coil_id id = coil_spawn(napper, (void *)(intptr_t)30000, &(coil_spawn_opts){.name = "idler"});
    coil_yield();
    char byte = 'r';
    if (write(ready_pipe[1], &byte, 1) != 1) _exit(4);
    /* Everyone now waits 30 s: only the signal can make the scheduler write. */
    coil_join(id, COIL_FOREVER);
}

static void idle_child(void *arg) {
    (void)arg;
    close(ready_pipe[0]);
    if (coil_dump_on_signal(SIGQUIT) != 0) _exit(2);
    coil_run(idle_main, NULL);
    _exit(5); /* not reached: the parent kills us first */
}

static bool wait_ready(int timeout_ms) {
    struct pollfd pfd = {.fd = ready_pipe[0], .events = POLLIN};
    char byte;
    return poll(&pfd, 1, timeout_ms) == 1 && read(ready_pipe[0], &byte, 1) == 1;
}

/* Starts child_fn in a child, waits until it says it is ready, sends it
 * SIGQUIT and reads its stderr until `name` appears in a dump; then kills it
 * and reaps it. Asserts that it got ready and dumped. */
static void dump_child_on_sigquit(struct coil_test_child *c, void (*child_fn)(void *),
                                  const char *name) {
    assert_int_equal(pipe(ready_pipe), 0);
    coil_test_child_start(c, child_fn, NULL);
    close(ready_pipe[1]);
    bool ready = wait_ready(20000);
    if (ready) kill(c->pid, SIGQUIT);
    bool dumped = ready && coil_test_child_read(c, name, 15000);
    kill(c->pid, SIGKILL);
    coil_test_child_finish(c, 10000);
    close(ready_pipe[0]);
    if (!ready || !dumped) coil_test_child_describe(c);
    assert_true(ready);
    assert_true(dumped);
}

static void test_dump_on_signal_wakes_an_idle_scheduler(void **state) {
    (void)state;
    struct coil_test_child c;
    /* The dump must come well before the child's 30 s sleep ends. */
    dump_child_on_sigquit(&c, idle_child, "\"idler\"");
    char line[512];
    assert_true(coil_test_find_line(c.err, "\"idler\"", line, sizeof line));
    assert_non_null(strstr(line, "sleep"));
    assert_true(coil_test_find_line(c.err, "\"main\"", line, sizeof line));
    assert_non_null(strstr(line, "join"));
    /* The child was still alive (the dump did not end it). */
    assert_true(coil_test_child_signaled(&c, SIGKILL));
    coil_test_child_free(&c);
}

/* ---- a scheduler that never goes idle still dumps ---------------------------------- */

static void spinner(void *arg) {
    (void)arg;
    int64_t end = coil_now() + 30 * COIL_SEC;
    while (coil_now() < end && coil_yield() == 0) {
    }
}

static void busy_main(void *arg) {
    (void)arg;
    for (int i = 0; i < 3; i++)
        coil_spawn(spinner, NULL, &(coil_spawn_opts){.name = "spinner"});
    coil_yield();
    char byte = 'r';
    if (write(ready_pipe[1], &byte, 1) != 1) _exit(4);
    spinner(NULL);
}

static void busy_child(void *arg) {
    (void)arg;
    close(ready_pipe[0]);
    if (coil_dump_on_signal(SIGQUIT) != 0) _exit(2);
    coil_run(busy_main, NULL);
    _exit(5);
}

static void test_dump_on_signal_while_always_busy(void **state) {
    (void)state;
    struct coil_test_child c;
    dump_child_on_sigquit(&c, busy_child, "\"spinner\"");
    coil_test_child_free(&c);
}

/* ---- every scheduler of the process dumps ----------------------------------------- */

static pthread_barrier_t both_parked;

static void thread_main(void *arg) {
    coil_spawn(napper, (void *)(intptr_t)30000, &(coil_spawn_opts){.name = arg});
    coil_yield();
    pthread_barrier_wait(&both_parked);
    if (strcmp(arg, "napper-0") == 0) {
        char byte = 'r';
        if (write(ready_pipe[1], &byte, 1) != 1) _exit(4);
    }
}

static void *thread_body(void *arg) {
    coil_run(thread_main, arg);
    return NULL;
}

static void two_schedulers_child(void *arg) {
    (void)arg;
    close(ready_pipe[0]);
    if (coil_dump_on_signal(SIGQUIT) != 0) _exit(2);
    pthread_barrier_init(&both_parked, NULL, 2);
    pthread_t t[2];
    static char *names[2] = {"napper-0", "napper-1"};
    for (int i = 0; i < 2; i++)
        if (pthread_create(&t[i], NULL, thread_body, names[i]) != 0) _exit(3);
    for (int i = 0; i < 2; i++)
        pthread_join(t[i], NULL);
    _exit(5);
}

static void test_dump_on_signal_reaches_every_scheduler(void **state) {
    (void)state;
    assert_int_equal(pipe(ready_pipe), 0);
    struct coil_test_child c;
    coil_test_child_start(&c, two_schedulers_child, NULL);
    close(ready_pipe[1]);
    bool ready = wait_ready(20000);
    /* Give the second thread a moment to go idle as well (not required for
     * correctness: a scheduler also dumps at its next round). */
    if (ready) {
        usleep(50 * 1000);
        kill(c.pid, SIGQUIT);
    }
    bool first = ready && coil_test_child_read(&c, "\"napper-0\"", 15000);
    bool second = ready && coil_test_child_read(&c, "\"napper-1\"", 15000);
    kill(c.pid, SIGKILL);
    coil_test_child_finish(&c, 10000);
    close(ready_pipe[0]);
    if (!ready || !first || !second) coil_test_child_describe(&c);
    assert_true(ready);
    assert_true(first);
    assert_true(second);
    coil_test_child_free(&c);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_dump_lists_every_tasklet),
        cmocka_unit_test(test_dump_backtrace),
        cmocka_unit_test(test_dump_backtrace_is_bounded),
        cmocka_unit_test(test_dump_errors),
        cmocka_unit_test(test_dump_on_signal_rejects_bad_signals),
        cmocka_unit_test(test_dump_on_raised_sigquit),
        cmocka_unit_test(test_dump_on_raised_sigusr1),
        cmocka_unit_test(test_dump_on_signal_wakes_an_idle_scheduler),
        cmocka_unit_test(test_dump_on_signal_while_always_busy),
        cmocka_unit_test(test_dump_on_signal_reaches_every_scheduler),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
