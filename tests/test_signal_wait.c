/* coil_signal_wait: a tasklet receives SIGHUP while other tasklets serve
 * echo connections; deadlines, kills, a signal kept until a wait takes it,
 * two signals in one set, SIGINT received by a waiter instead of a shutdown
 * (and a shutdown as before when none waits for it), a waiter on the second
 * scheduler of a group, a signal sent by another process, and the exact
 * error of every bad set. Every case runs in a forked child (signals and
 * their dispositions are process-wide): the child exits 0 when every check
 * held. */
// coil-test: tsan (signal handlers run on any thread; a group's second scheduler waits)
#include "coil_test.h"

#include <stdatomic.h>

/* ---- the child's side ---------------------------------------------------- */

/* Signal dispositions and the mask as a program starts with them (cmocka,
 * or a shell running the tests in the background, may have changed them). */
static void child_prepare(void) {
    static const int sigs[] = {SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2, SIGQUIT};
    for (size_t i = 0; i < sizeof sigs / sizeof sigs[0]; i++)
        signal(sigs[i], SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
}

/* Leaves the child: 0 when coil_run returned want and every check held. */
static void child_end(int rc, int want) {
    fprintf(stderr, "coil_run=%d\n", rc);
    if (rc != want) fprintf(stderr, "coil_run returned %d, want %d\n", rc, want);
    _exit(rc == want && coil_test_failure()->count == 0 ? 0 : 1);
}

static sigset_t set_of(int a, int b) {
    sigset_t set;
    sigemptyset(&set);
    if (a) sigaddset(&set, a);
    if (b) sigaddset(&set, b);
    return set;
}

static bool handler_is(int sig, void (*h)(int)) {
    struct sigaction sa;
    return sigaction(sig, NULL, &sa) == 0 && !(sa.sa_flags & SA_SIGINFO) && sa.sa_handler == h;
}

/* ---- SIGHUP while other tasklets serve connections ------------------------- */

#define CLIENTS 4
#define RELOADS 3
#define MSG     1000

struct serve {
    int lfd;
    uint16_t port;
    sigset_t hup;
    coil_chan *reloaded;
    int reloads;
    bool reloads_done;
    long rounds[CLIENTS];
    long rounds_at_reload[RELOADS];
};

static struct serve sv;

static long rounds_total(void) {
    long n = 0;
    for (int i = 0; i < CLIENTS; i++)
        n += sv.rounds[i];
    return n;
}

static void echo_conn(void *arg) {
    int fd = (int)(intptr_t)arg;
    char buf[4096];
    ssize_t n;
    while ((n = coil_recv(fd, buf, sizeof buf, 0)) > 0)
        if (coil_sendall(fd, buf, (size_t)n, 0, COIL_FOREVER) != n) break;
    coil_close(fd);
}

static void acceptor(void *arg) {
    (void)arg;
    for (int i = 0; i < CLIENTS; i++) {
        int fd = coil_accept(sv.lfd, NULL, NULL);
        if (!EXPECT(fd >= 0)) return;
        EXPECT(coil_spawn(echo_conn, (void *)(intptr_t)fd, NULL) > 0);
    }
}

/* Round trips of MSG patterned bytes, each echo checked, until the reloads
 * are done and at least 50 more have been made. */
static void client(void *arg) {
    int i = (int)(intptr_t)arg;
    struct coil_test_addr a;
    coil_test_loopback(&a, AF_INET, sv.port);
    int fd = coil_socket(AF_INET, SOCK_STREAM, 0);
    if (!EXPECT(fd >= 0)) return;
    if (!EXPECT_EQ(coil_connect(fd, COIL_TEST_SA(&a), a.len), 0)) return;
    char out[MSG], in[MSG];
    uint64_t off = 0;
    long after = 0;
    while (!sv.reloads_done || after < 50) {
        coil_test_pattern_fill(out, MSG, (uint64_t)i + 1, off);
        if (!EXPECT_EQ(coil_sendall(fd, out, MSG, 0, coil_test_in(20 * COIL_SEC)), MSG)) break;
        if (!EXPECT_EQ(coil_test_recv_all(fd, in, MSG, coil_test_in(20 * COIL_SEC), NULL), MSG))
            break;
        if (!EXPECT_EQ(coil_test_pattern_check(in, MSG, (uint64_t)i + 1, off), MSG)) break;
        off += MSG;
        sv.rounds[i]++;
        if (sv.reloads_done) after++;
    }
    coil_close(fd);
}

static void reloader(void *arg) {
    (void)arg;
    for (int i = 0; i < RELOADS; i++) {
        int sig = coil_signal_wait(&sv.hup, coil_test_in(20 * COIL_SEC));
        if (!EXPECT_EQ(sig, SIGHUP)) return;
        sv.rounds_at_reload[i] = rounds_total();
        sv.reloads++;
        EXPECT_EQ(coil_chan_send(sv.reloaded, &i), 0);
    }
}

static void hup_main(void *arg) {
    (void)arg;
    sv.hup = set_of(SIGHUP, 0);
    sv.lfd = coil_listen_on("127.0.0.1", "0", 64);
    if (!EXPECT(sv.lfd >= 0)) return;
    struct coil_test_addr la;
    EXPECT_EQ(coil_test_sockname(sv.lfd, &la), 0);
    sv.port = coil_test_port(&la);
    EXPECT_EQ(coil_chan_open(&sv.reloaded, sizeof(int), 0), 0);
    coil_id ids[CLIENTS + 2];
    ids[0] = coil_spawn(reloader, NULL, &(coil_spawn_opts){.name = "reloader"});
    ids[1] = coil_spawn(acceptor, NULL, NULL);
    for (int i = 0; i < CLIENTS; i++)
        ids[2 + i] = coil_spawn(client, (void *)(intptr_t)i, NULL);
    /* Each SIGHUP goes out once every client has made progress since the
     * last reload, so the reloads fall in the middle of the traffic. */
    for (int r = 0; r < RELOADS; r++) {
        long base[CLIENTS];
        memcpy(base, sv.rounds, sizeof base);
        for (int i = 0; i < CLIENTS; i++)
            while (sv.rounds[i] < base[i] + 10 && coil_sleep(COIL_MSEC) == 0) {
            }
        EXPECT_EQ(kill(getpid(), SIGHUP), 0);
        int got = -1;
        EXPECT_EQ(coil_chan_recv(sv.reloaded, &got), 0);
        EXPECT_EQ(got, r);
    }
    sv.reloads_done = true;
    for (int i = 0; i < CLIENTS + 2; i++)
        EXPECT_EQ(coil_join(ids[i], COIL_FOREVER), 0);
    coil_close(sv.lfd);
    coil_chan_free(sv.reloaded);
}

static void hup_child(void *arg) {
    (void)arg;
    child_prepare();
    int rc = coil_run(hup_main, NULL);
    EXPECT_EQ(sv.reloads, RELOADS);
    long total = rounds_total();
    for (int r = 0; r < RELOADS; r++) {
        EXPECT(sv.rounds_at_reload[r] > (r + 1) * 10L * CLIENTS - 1);
        EXPECT(sv.rounds_at_reload[r] < total); /* traffic went on after it */
    }
    for (int i = 0; i < CLIENTS; i++)
        EXPECT(sv.rounds[i] >= 50);
    EXPECT(handler_is(SIGHUP, SIG_DFL)); /* given back when coil_run returned */
    child_end(rc, 0);
}

static void test_sighup_while_serving(void **state) {
    (void)state;
    coil_test_child_run(hup_child, NULL, 60000, "SIGHUP to a waiting tasklet while serving");
}

/* ---- deadlines ------------------------------------------------------------ */

static void deadline_main(void *arg) {
    (void)arg;
    sigset_t hup = set_of(SIGHUP, 0);
    int64_t t0 = coil_now();
    EXPECT_EQ(coil_signal_wait(&hup, 0), -ETIMEDOUT); /* past: no wait */
    EXPECT_EQ(coil_signal_wait(&hup, t0 - COIL_SEC), -ETIMEDOUT);
    EXPECT(coil_now() - t0 < coil_test_slack());
    t0 = coil_now();
    EXPECT_EQ(coil_signal_wait(&hup, t0 + 50 * COIL_MSEC), -ETIMEDOUT);
    int64_t took = coil_now() - t0;
    EXPECT(took >= 50 * COIL_MSEC);
    EXPECT(took < 50 * COIL_MSEC + coil_test_slack());
}

static void deadline_child(void *arg) {
    (void)arg;
    child_prepare();
    child_end(coil_run(deadline_main, NULL), 0);
}

static void test_deadline(void **state) {
    (void)state;
    coil_test_child_run(deadline_child, NULL, 30000, "deadlines: -ETIMEDOUT");
}

/* ---- kill ---------------------------------------------------------------- */

struct killed {
    int rc, again_rc;
    atomic_bool parked;
};

static void killed_waiter(void *arg) {
    struct killed *k = arg;
    sigset_t hup = set_of(SIGHUP, 0);
    atomic_store(&k->parked, true);
    k->rc = coil_signal_wait(&hup, COIL_FOREVER);
    k->again_rc = coil_signal_wait(&hup, COIL_FOREVER); /* killed: at once */
}

static void dump_lines(char *line, size_t cap) {
    struct coil_test_stderr cap_err;
    coil_test_stderr_begin(&cap_err);
    coil_dump(stderr);
    char *text = coil_test_stderr_end(&cap_err);
    coil_test_find_line(text, "\"sigwaiter\"", line, cap);
    free(text);
}

static void kill_main(void *arg) {
    (void)arg;
    struct killed k = {.rc = 1, .again_rc = 1};
    coil_id id = coil_spawn(killed_waiter, &k, &(coil_spawn_opts){.name = "sigwaiter"});
    while (!atomic_load(&k.parked))
        coil_yield();
    coil_yield();
    char line[512];
    dump_lines(line, sizeof line);
    EXPECT(strstr(line, "waiting on signal wait (1)") != NULL);
    EXPECT_EQ(coil_kill(id), 0);
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    EXPECT_EQ(k.rc, -ECANCELED);
    EXPECT_EQ(k.again_rc, -ECANCELED);
    /* SIGHUP stays caught for the program: one that comes now is kept for
     * the next wait. */
    sigset_t hup = set_of(SIGHUP, 0);
    EXPECT_EQ(kill(getpid(), SIGHUP), 0);
    EXPECT_EQ(coil_signal_wait(&hup, coil_test_in(10 * COIL_SEC)), SIGHUP);
}

static void kill_child(void *arg) {
    (void)arg;
    child_prepare();
    child_end(coil_run(kill_main, NULL), 0);
}

static void test_kill_while_waiting(void **state) {
    (void)state;
    coil_test_child_run(kill_child, NULL, 30000, "a kill ends a signal wait with -ECANCELED");
}

/* ---- kept until a wait takes it -------------------------------------------- */

static void kept_main(void *arg) {
    (void)arg;
    sigset_t hup = set_of(SIGHUP, 0), two = set_of(SIGHUP, SIGUSR1);
    EXPECT_EQ(coil_signal_wait(&two, 0), -ETIMEDOUT); /* catches both, waits not */
    /* Three SIGHUPs and a SIGUSR1 while nobody waits: kept, the SIGHUPs as
     * one; the lowest number comes first. */
    for (int i = 0; i < 3; i++)
        EXPECT_EQ(kill(getpid(), SIGHUP), 0);
    EXPECT_EQ(kill(getpid(), SIGUSR1), 0);
    EXPECT_EQ(coil_signal_wait(&two, 0), SIGHUP);
    EXPECT_EQ(coil_signal_wait(&hup, 0), -ETIMEDOUT); /* no second SIGHUP */
    EXPECT_EQ(coil_signal_wait(&two, 0), SIGUSR1);
    EXPECT_EQ(coil_signal_wait(&two, 0), -ETIMEDOUT);
    /* A SIGUSR1 kept is not taken by a wait for SIGHUP alone. */
    EXPECT_EQ(kill(getpid(), SIGUSR1), 0);
    EXPECT_EQ(coil_signal_wait(&hup, coil_test_in(20 * COIL_MSEC)), -ETIMEDOUT);
    EXPECT_EQ(coil_signal_wait(&two, 0), SIGUSR1);
}

static void kept_child(void *arg) {
    (void)arg;
    child_prepare();
    signal(SIGUSR1, SIG_IGN); /* ignored before: caught all the same, given back */
    int rc = coil_run(kept_main, NULL);
    EXPECT(handler_is(SIGHUP, SIG_DFL));
    EXPECT(handler_is(SIGUSR1, SIG_IGN));
    child_end(rc, 0);
}

static void test_kept_until_a_wait(void **state) {
    (void)state;
    coil_test_child_run(kept_child, NULL, 30000, "signals kept while nobody waits");
}

/* Before the first wait that names it, SIGHUP keeps its default action. */
static void uncaught_main(void *arg) {
    (void)arg;
    kill(getpid(), SIGHUP);
    coil_sleep(5 * COIL_SEC);
    fprintf(stderr, "still alive\n");
}

static void uncaught_child(void *arg) {
    (void)arg;
    child_prepare();
    coil_run(uncaught_main, NULL);
    _exit(1);
}

static void test_uncaught_before_first_wait(void **state) {
    (void)state;
    struct coil_test_child c;
    coil_test_fork_run(&c, uncaught_child, NULL, 30000);
    if (!coil_test_child_signaled(&c, SIGHUP)) {
        coil_test_child_describe(&c);
        coil_test_child_free(&c);
        fail_msg("SIGHUP before any wait did not end the process");
    }
    coil_test_child_free(&c);
}

/* ---- two signals in one set, while waiting ---------------------------------- */

struct two {
    int got[2];
    atomic_int parked;
};

static void two_waiter(void *arg) {
    struct two *t = arg;
    sigset_t usr = set_of(SIGUSR1, SIGUSR2);
    for (int i = 0; i < 2; i++) {
        atomic_store(&t->parked, i + 1);
        t->got[i] = coil_signal_wait(&usr, coil_test_in(20 * COIL_SEC));
    }
}

static void two_main(void *arg) {
    (void)arg;
    struct two t = {{0, 0}, 0};
    coil_id id = coil_spawn(two_waiter, &t, NULL);
    for (int i = 0; i < 2; i++) {
        while (atomic_load(&t.parked) != i + 1)
            coil_sleep(COIL_MSEC);
        coil_sleep(5 * COIL_MSEC);
        EXPECT_EQ(kill(getpid(), i == 0 ? SIGUSR2 : SIGUSR1), 0);
    }
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    EXPECT_EQ(t.got[0], SIGUSR2);
    EXPECT_EQ(t.got[1], SIGUSR1);
}

static void two_child(void *arg) {
    (void)arg;
    child_prepare();
    child_end(coil_run(two_main, NULL), 0);
}

static void test_two_signals_in_a_set(void **state) {
    (void)state;
    coil_test_child_run(two_child, NULL, 30000, "a set of two signals");
}

/* ---- SIGINT: to a waiter, or a shutdown ------------------------------------- */

struct intr {
    int waiter_rc;
    int sleeper_rc;
    int main_rc;
};

static struct intr in;

static void sleeper(void *arg) {
    (void)arg;
    in.sleeper_rc = coil_sleep(300 * COIL_MSEC); /* not killed by the first SIGINT */
}

/* A tasklet that waits for SIGINT receives it, and nothing is shut down;
 * once none waits, SIGINT is a shutdown again. The waiter parks first. */
struct intr_wait {
    atomic_bool parked;
    int rc;
};

static void int_waiter(void *arg) {
    struct intr_wait *w = arg;
    sigset_t intset = set_of(SIGINT, 0);
    atomic_store(&w->parked, true);
    w->rc = coil_signal_wait(&intset, coil_test_in(20 * COIL_SEC));
}

static void int_received_main(void *arg) {
    (void)arg;
    struct intr_wait w = {.rc = 1};
    coil_id sl = coil_spawn(sleeper, NULL, NULL);
    coil_id id = coil_spawn(int_waiter, &w, NULL);
    while (!atomic_load(&w.parked))
        coil_sleep(COIL_MSEC);
    coil_sleep(5 * COIL_MSEC);
    EXPECT_EQ(kill(getpid(), SIGINT), 0);
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    in.waiter_rc = w.rc;
    EXPECT_EQ(coil_killed(), 0); /* no shutdown */
    EXPECT_EQ(coil_join(sl, COIL_FOREVER), 0);
    /* Nobody waits for SIGINT now: it is a shutdown, as before. */
    EXPECT_EQ(kill(getpid(), SIGINT), 0);
    in.main_rc = coil_sleep(20 * COIL_SEC);
}

static void int_received_child(void *arg) {
    (void)arg;
    child_prepare();
    int rc = coil_run(int_received_main, NULL);
    EXPECT_EQ(in.waiter_rc, SIGINT);
    EXPECT_EQ(in.sleeper_rc, 0);
    EXPECT_EQ(in.main_rc, -ECANCELED);
    EXPECT(handler_is(SIGINT, SIG_DFL));
    child_end(rc, -EINTR);
}

static void test_sigint_to_a_waiter(void **state) {
    (void)state;
    coil_test_child_run(int_received_child, NULL, 30000,
                        "SIGINT received by a waiter, then a shutdown");
}

/* SIGINT not in the set: a shutdown as before; the waiter is killed. */
static void int_not_asked_main(void *arg) {
    (void)arg;
    struct killed k = {.rc = 1};
    coil_id id = coil_spawn(killed_waiter, &k, NULL);
    while (!atomic_load(&k.parked))
        coil_sleep(COIL_MSEC);
    coil_sleep(5 * COIL_MSEC);
    EXPECT_EQ(kill(getpid(), SIGINT), 0);
    in.main_rc = coil_join(id, COIL_FOREVER);
    in.waiter_rc = k.rc;
}

static void int_not_asked_child(void *arg) {
    (void)arg;
    child_prepare();
    int rc = coil_run(int_not_asked_main, NULL);
    EXPECT_EQ(in.main_rc, 0);
    EXPECT_EQ(in.waiter_rc, -ECANCELED);
    child_end(rc, -EINTR);
}

static void test_sigint_not_asked_shuts_down(void **state) {
    (void)state;
    coil_test_child_run(int_not_asked_child, NULL, 30000,
                        "SIGINT shuts down while a tasklet waits for SIGHUP only");
}

/* COIL_SIGNALS_LEAVE: coil_run does not take SIGINT; a wait for it does,
 * and with no waiter SIGINT keeps its default action. */
static void int_leave_main(void *arg) {
    (void)arg;
    struct intr_wait w = {.rc = 1};
    coil_id id = coil_spawn(int_waiter, &w, NULL);
    while (!atomic_load(&w.parked))
        coil_sleep(COIL_MSEC);
    coil_sleep(5 * COIL_MSEC);
    EXPECT_EQ(kill(getpid(), SIGINT), 0);
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    EXPECT_EQ(w.rc, SIGINT);
    fprintf(stderr, "received: %d\n", coil_test_failure()->count);
    fflush(stderr);
    kill(getpid(), SIGINT); /* ends the process */
    coil_sleep(5 * COIL_SEC);
}

static void int_leave_child(void *arg) {
    (void)arg;
    child_prepare();
    coil_set_shutdown_signals(COIL_SIGNALS_LEAVE);
    coil_run(int_leave_main, NULL);
    _exit(1);
}

static void test_sigint_left_then_waited(void **state) {
    (void)state;
    struct coil_test_child c;
    coil_test_fork_run(&c, int_leave_child, NULL, 30000);
    if (!coil_test_child_signaled(&c, SIGINT) || !strstr(c.err, "received: 0\n")) {
        coil_test_child_describe(&c);
        coil_test_child_free(&c);
        fail_msg("COIL_SIGNALS_LEAVE: a waiter gets SIGINT, then SIGINT's default action");
    }
    coil_test_child_free(&c);
}

/* ---- a waiter on the second scheduler of a group ---------------------------- */

struct grp {
    atomic_bool parked;
    int sched;
    int rc;
};

static void grp_waiter(void *arg) {
    struct grp *g = arg;
    sigset_t hup = set_of(SIGHUP, SIGTERM);
    g->sched = coil_sched_index();
    atomic_store(&g->parked, true);
    g->rc = coil_signal_wait(&hup, coil_test_in(20 * COIL_SEC));
}

static void grp_main(void *arg) {
    struct grp *g = arg;
    coil_id id = coil_spawn_on(1, grp_waiter, g, NULL);
    EXPECT(id > 0);
    while (!atomic_load(&g->parked))
        coil_sleep(COIL_MSEC);
    coil_sleep(5 * COIL_MSEC);
    EXPECT_EQ(kill(getpid(), SIGTERM), 0); /* the waiter asked for it: no shutdown */
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    EXPECT_EQ(coil_killed(), 0);
}

static void grp_child(void *arg) {
    (void)arg;
    child_prepare();
    struct grp g = {.rc = 1, .sched = -1};
    int rc = coil_run_group(2, grp_main, &g);
    EXPECT_EQ(g.sched, 1);
    EXPECT_EQ(g.rc, SIGTERM);
    child_end(rc, 0);
}

static void test_group_second_scheduler(void **state) {
    (void)state;
    coil_test_child_run(grp_child, NULL, 30000, "a waiter on scheduler 1 of a group");
}

/* ---- sent by another process, to a lone waiter ----------------------------- */

/* The only tasklet waits for SIGHUP with no deadline: not a deadlock (the
 * signal comes from outside). The test process sends it. */
static void lone_main(void *arg) {
    (void)arg;
    sigset_t hup = set_of(SIGHUP, 0);
    EXPECT_EQ(coil_signal_wait(&hup, 0), -ETIMEDOUT); /* caught before "ready" */
    fprintf(stderr, "ready\n");
    fflush(stderr);
    EXPECT_EQ(coil_signal_wait(&hup, COIL_FOREVER), SIGHUP);
}

static void lone_child(void *arg) {
    (void)arg;
    child_prepare();
    child_end(coil_run(lone_main, NULL), 0);
}

static void test_from_another_process(void **state) {
    (void)state;
    struct coil_test_child c;
    bool ready = coil_test_child_signal_at(&c, lone_child, NULL, "ready", SIGHUP);
    if (!ready || !coil_test_child_exited(&c, 0)) {
        coil_test_child_describe(&c);
        coil_test_child_free(&c);
        fail_msg("a SIGHUP from another process to a lone waiter");
    }
    coil_test_child_free(&c);
}

/* ---- bad sets ------------------------------------------------------------ */

static void on_usr1(int sig) {
    (void)sig;
}

static void bad_main(void *arg) {
    (void)arg;
    EXPECT_EQ(coil_signal_wait(NULL, 0), -EINVAL);
    sigset_t empty;
    sigemptyset(&empty);
    EXPECT_EQ(coil_signal_wait(&empty, 0), -EINVAL);
    static const int never[] = {SIGKILL, SIGSTOP, SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGPIPE};
    for (size_t i = 0; i < sizeof never / sizeof never[0]; i++) {
        sigset_t s = set_of(SIGHUP, never[i]);
        EXPECT_EQ(coil_signal_wait(&s, 0), -EINVAL);
    }
    EXPECT(handler_is(SIGHUP, SIG_DFL)); /* nothing was caught */
    /* The program's own handler, and coil_dump_on_signal's: -EBUSY, and the
     * other signal of the set is not caught either. */
    sigset_t s = set_of(SIGUSR1, SIGUSR2);
    EXPECT_EQ(coil_signal_wait(&s, 0), -EBUSY);
    EXPECT(handler_is(SIGUSR2, SIG_DFL));
    EXPECT(handler_is(SIGUSR1, on_usr1));
    s = set_of(SIGQUIT, 0);
    EXPECT_EQ(coil_signal_wait(&s, 0), -EBUSY);
    /* A killed tasklet: -ECANCELED before anything else is done. */
    coil_kill(coil_self());
    s = set_of(SIGHUP, 0);
    EXPECT_EQ(coil_signal_wait(&s, COIL_FOREVER), -ECANCELED);
    EXPECT(handler_is(SIGHUP, SIG_DFL));
}

static void bad_child(void *arg) {
    (void)arg;
    child_prepare();
    signal(SIGUSR1, on_usr1);
    EXPECT_EQ(coil_dump_on_signal(SIGQUIT), 0);
    sigset_t hup = set_of(SIGHUP, 0);
    EXPECT_EQ(coil_signal_wait(&hup, 0), -EPERM); /* outside a tasklet */
    EXPECT_EQ(coil_signal_wait(NULL, 0), -EINVAL);
    child_end(coil_run(bad_main, NULL), 0);
}

static void test_bad_sets(void **state) {
    (void)state;
    coil_test_child_run(bad_child, NULL, 30000, "bad sets: exact errors");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sighup_while_serving),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_kill_while_waiting),
        cmocka_unit_test(test_kept_until_a_wait),
        cmocka_unit_test(test_uncaught_before_first_wait),
        cmocka_unit_test(test_two_signals_in_a_set),
        cmocka_unit_test(test_sigint_to_a_waiter),
        cmocka_unit_test(test_sigint_not_asked_shuts_down),
        cmocka_unit_test(test_sigint_left_then_waited),
        cmocka_unit_test(test_group_second_scheduler),
        cmocka_unit_test(test_from_another_process),
        cmocka_unit_test(test_bad_sets),
    };
    coil_test_apply_filter();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
