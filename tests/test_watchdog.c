/* The stall watchdog (coil_watchdog, COIL_WATCHDOG_MS): a tasklet blocked in
 * a raw system call that nothing diverts, and one that computes without a
 * switch, are reported by name with a backtrace through the stalling
 * function, once per stall, and run on; off by default (no thread, SIGURG
 * left alone); a program's own SIGURG handler still gets its signals; bad
 * arguments and environment values are refused. Every case runs in a forked
 * child: the environment is read once per process, and the reports go to
 * the child's stderr, which the test reads.
 * The test is linked with -rdynamic (tests/CMakeLists.txt), so that the
 * backtraces name its functions.
 */
// coil-test: tsan (a monitor thread signals the scheduler's thread)
#include "coil_test.h"

#include <dirent.h>
#include <pthread.h>
#include <sys/syscall.h>

#define THRESHOLD (100 * COIL_MSEC)
/* How long a test's stall lasts: four times longer under Valgrind, where the
 * monitor thread runs only when Valgrind lets it (one thread at a time; on a
 * loaded machine it was seen to sample too rarely to catch a 300 ms stall). */
#define STALL(ms) ((coil_test_under_valgrind() ? 4 : 1) * (int64_t)(ms)*COIL_MSEC)

/* How many threads the process has now. */
static int thread_count(void) {
    DIR *d = opendir("/proc/self/task");
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d)) != NULL;)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

/* thread_count once it is want, or after 2 s: pthread_join returns when the
 * kernel clears the thread's tid, which comes before the thread leaves
 * /proc/self/task, so a count just after a join may still see it (seen once
 * in a fresh-machine run of the suite under load). */
static int thread_count_settled(int want) {
    int n = thread_count();
    for (int i = 0; n != want && i < 200; i++) {
        struct timespec ts = {0, 10 * 1000000};
        nanosleep(&ts, NULL);
        n = thread_count();
    }
    return n;
}

/* ---- a tasklet blocked in a raw read ---------------------------------------- */

struct pipe_writer {
    int fd;
    int64_t after;
};

static void *write_later(void *arg) {
    struct pipe_writer *w = arg;
    struct timespec ts = {(time_t)(w->after / COIL_SEC), (long)(w->after % COIL_SEC)};
    nanosleep(&ts, NULL);
    ssize_t n = write(w->fd, "x", 1);
    (void)n;
    return NULL;
}

/* Reads one byte from fd, the way a library would: a system call that coil
 * does not divert. Under TSan the read is libc's (TSan runs a handler at
 * once only inside a call it intercepts; through syscall() it would wait
 * for the stall to end, and the backtrace would miss it). Not static, not
 * inlined: the backtrace must name it. */
ssize_t watchdog_stall_in_read(int fd);
long watchdog_busy_loop(int64_t ns);

__attribute__((noinline)) ssize_t watchdog_stall_in_read(int fd) {
    char c;
    ssize_t n = coil_test_under_tsan() ? read(fd, &c, 1) : syscall(SYS_read, fd, &c, 1);
    __asm__ volatile("" ::: "memory"); /* not a tail call: the frame stays */
    return n;
}

/* Spins for ns without a switch. */
__attribute__((noinline)) long watchdog_busy_loop(int64_t ns) {
    volatile long spins = 0;
    int64_t end = coil_now() + ns;
    while (coil_now() < end)
        spins++;
    return spins;
}

static void reader(void *arg) {
    int *fds = arg;
    ssize_t n = watchdog_stall_in_read(fds[0]);
    fprintf(stderr, "read=%zd\n", n);
    coil_sleep(THRESHOLD); /* the monitor sees the switch: "gave it back" */
}

static void read_main(void *arg) {
    coil_spawn(reader, arg, &(coil_spawn_opts){.name = "reader"});
}

/* The child: a writer thread fills the pipe after 300 ms. */
static void stall_child(void *arg) {
    (void)arg;
    int fds[2];
    if (pipe(fds) != 0) _exit(2);
    if (coil_watchdog(THRESHOLD) != 0) _exit(3);
    struct pipe_writer w = {fds[1], STALL(300)};
    pthread_t th;
    if (pthread_create(&th, NULL, write_later, &w) != 0) _exit(4);
    int rc = coil_run(read_main, fds);
    pthread_join(th, NULL);
    fprintf(stderr, "coil_run=%d\n", rc);
}

/* The report's first line names the tasklet, and one of the lines after it
 * the stalling function. */
static bool reported(const char *err, const char *who, const char *fn) {
    const char *at = strstr(err, who);
    /* Under Valgrind the handler runs on a signal frame of Valgrind's, which
     * libgcc's unwinder cannot step through: the report has no backtrace. */
    return at && (coil_test_under_valgrind() || strstr(at, fn) != NULL);
}

/* Exactly n reports; under Valgrind at least one (its scheduling of the
 * threads, one at a time, can let a short stall pass between samples). */
static bool reports(const char *err, size_t n) {
    size_t got = coil_test_count(err, "has held");
    return coil_test_under_valgrind() ? got >= 1 && got <= n : got == n;
}

static void test_raw_read_is_reported(void **state) {
    (void)state;
    struct coil_test_child c;
    coil_test_fork_run(&c, stall_child, NULL, 30000);
    const char *err = c.err;
    bool ok =
        coil_test_child_exited(&c, 0) && strstr(err, "coil_run=0") &&
        strstr(err, "read=1") && /* not EINTR: the read went on */
        reported(err, "coil: watchdog: tasklet 2 \"reader\" has held its scheduler for at least ",
                 "watchdog_stall_in_read") &&
        reports(err, 1) &&
        strstr(err, "coil: watchdog: tasklet 2 gave its scheduler back after at least ");
    if (!ok) {
        coil_test_child_describe(&c);
        coil_test_child_free(&c);
        fail_msg("a tasklet blocked in a raw read was not reported once, by name and frame");
    }
    coil_test_child_free(&c);
}

/* ---- a busy loop; once per stall --------------------------------------------- */

static void spinner(void *arg) {
    (void)arg;
    watchdog_busy_loop(STALL(500)); /* five thresholds: still one report */
    fprintf(stderr, "first stall over\n");
    coil_yield();
    coil_sleep(COIL_MSEC); /* a switch ends the stall */
    watchdog_busy_loop(STALL(300));
    fprintf(stderr, "second stall over\n");
}

static void spin_main(void *arg) {
    (void)arg;
    coil_spawn(spinner, NULL, &(coil_spawn_opts){.name = "spinner"});
}

static void busy_child(void *arg) {
    (void)arg;
    if (coil_watchdog(THRESHOLD) != 0) _exit(3);
    fprintf(stderr, "coil_run=%d\n", coil_run(spin_main, NULL));
}

static void test_busy_loop_once_per_stall(void **state) {
    (void)state;
    struct coil_test_child c;
    coil_test_fork_run(&c, busy_child, NULL, 30000);
    const char *err = c.err;
    const char *second = strstr(err, "first stall over");
    bool ok =
        coil_test_child_exited(&c, 0) && strstr(err, "coil_run=0") && second &&
        reported(err, "coil: watchdog: tasklet 2 \"spinner\" has held its scheduler for at least ",
                 "watchdog_busy_loop") &&
        reports(err, 2) && reported(second, "\"spinner\" has held", "watchdog_busy_loop");
    if (!ok) {
        coil_test_child_describe(&c);
        coil_test_child_free(&c);
        fail_msg("two busy stalls were not reported once each, by name and frame");
    }
    coil_test_child_free(&c);
}

/* ---- a trace one frame deep: sampled again ------------------------------------ */

/* Spins until *stop is set, in code without an unwind table (no CFI), where
 * libgcc's unwinder stops as it does in an aarch64 PLT stub (the busy loop's
 * call of clock_gettime, under qemu): a backtrace taken there is one frame. */
void watchdog_nocfi_spin(volatile int *stop);
__asm__(".text\n"
        ".globl watchdog_nocfi_spin\n"
        ".type watchdog_nocfi_spin, %function\n"
        "watchdog_nocfi_spin:\n"
#if defined(__x86_64__)
        "1: movl (%rdi), %eax\n"
        "   testl %eax, %eax\n"
        "   jz 1b\n"
        "   ret\n"
#elif defined(__aarch64__)
        "1: ldr w1, [x0]\n"
        "   cbz w1, 1b\n"
        "   ret\n"
#else
#error "watchdog_nocfi_spin: no spelling for this architecture"
#endif
        ".size watchdog_nocfi_spin, . - watchdog_nocfi_spin\n");

static volatile int nocfi_stop;

static void *stop_later(void *arg) {
    int64_t ns = *(int64_t *)arg;
    struct timespec ts = {(time_t)(ns / COIL_SEC), (long)(ns % COIL_SEC)};
    nanosleep(&ts, NULL);
    __atomic_store_n(&nocfi_stop, 1, __ATOMIC_SEQ_CST);
    return NULL;
}

struct shallow_plan {
    int64_t nocfi_ns; /* in watchdog_nocfi_spin */
    int64_t busy_ns;  /* then in watchdog_busy_loop */
};

static void shallow_spinner(void *arg) {
    struct shallow_plan *p = arg;
    pthread_t th;
    if (pthread_create(&th, NULL, stop_later, &p->nocfi_ns) != 0) _exit(4);
    watchdog_nocfi_spin(&nocfi_stop);
    if (p->busy_ns) watchdog_busy_loop(p->busy_ns);
    pthread_join(th, NULL);
    coil_sleep(THRESHOLD); /* the monitor sees the switch: "gave it back" */
}

static void shallow_main(void *arg) {
    coil_spawn(shallow_spinner, arg, &(coil_spawn_opts){.name = "shallow"});
}

static void shallow_child(void *arg) {
    if (coil_watchdog(THRESHOLD) != 0) _exit(3);
    fprintf(stderr, "coil_run=%d\n", coil_run(shallow_main, arg));
}

/* The monitor first asks at one threshold (100 ms), while the tasklet is in
 * the spin without unwind table until 130 ms; that trace is one frame, so it
 * asks again at every sample (25 ms apart) up to two thresholds: one of
 * those finds the busy loop, and that is the one report. */
static void test_shallow_trace_sampled_again(void **state) {
    (void)state;
    struct shallow_plan plan = {130 * COIL_MSEC, STALL(300)};
    struct coil_test_child c;
    coil_test_fork_run(&c, shallow_child, &plan, 30000);
    const char *err = c.err;
    bool ok =
        coil_test_child_exited(&c, 0) && strstr(err, "coil_run=0") &&
        reported(err, "coil: watchdog: tasklet 2 \"shallow\" has held its scheduler for at least ",
                 "watchdog_busy_loop") &&
        reports(err, 1) &&
        strstr(err, "coil: watchdog: tasklet 2 gave its scheduler back after at least ");
    if (!ok) {
        coil_test_child_describe(&c);
        coil_test_child_free(&c);
        fail_msg("a one-frame trace was reported instead of being sampled again");
    }
    coil_test_child_free(&c);
}

/* A stall spent wholly where the unwinder cannot step: after two
 * thresholds the monitor's last ask writes the one frame it finds, once.
 * (Under TSan the signal waits for a call it intercepts, after the spin,
 * where the trace is deep: the frame is not checked there.) */
static void test_shallow_trace_written_at_last(void **state) {
    (void)state;
    struct shallow_plan plan = {STALL(400), 0};
    struct coil_test_child c;
    coil_test_fork_run(&c, shallow_child, &plan, 30000);
    const char *err = c.err;
    const char *who = "coil: watchdog: tasklet 2 \"shallow\" has held its scheduler for at least ";
    bool ok = coil_test_child_exited(&c, 0) && strstr(err, "coil_run=0") &&
              (coil_test_under_tsan() ? strstr(err, who) != NULL
                                      : reported(err, who, "watchdog_nocfi_spin")) &&
              reports(err, 1) &&
              strstr(err, "coil: watchdog: tasklet 2 gave its scheduler back after at least ");
    if (!ok) {
        coil_test_child_describe(&c);
        coil_test_child_free(&c);
        fail_msg("a stall with no deeper trace was not reported once, with its one frame");
    }
    coil_test_child_free(&c);
}

/* ---- every scheduler of a group ----------------------------------------------- */

static void group_spinner(void *arg) {
    (void)arg;
    watchdog_busy_loop(STALL(300));
}

static void group_main(void *arg) {
    (void)arg;
    coil_id id = coil_spawn_on(1, group_spinner, NULL, &(coil_spawn_opts){.name = "far"});
    coil_join(id, COIL_FOREVER);
}

static void group_child(void *arg) {
    (void)arg;
    if (coil_watchdog(THRESHOLD) != 0) _exit(3);
    fprintf(stderr, "coil_run_group=%d\n", coil_run_group(2, group_main, NULL));
}

static void test_group_scheduler_is_watched(void **state) {
    (void)state;
    struct coil_test_child c;
    coil_test_fork_run(&c, group_child, NULL, 30000);
    bool ok =
        coil_test_child_exited(&c, 0) && strstr(c.err, "coil_run_group=0") &&
        reported(c.err, "\"far\" has held scheduler 1 of 2 for at least ", "watchdog_busy_loop") &&
        reports(c.err, 1);
    if (!ok) {
        coil_test_child_describe(&c);
        coil_test_child_free(&c);
        fail_msg("a stall on the second scheduler of a group was not reported");
    }
    coil_test_child_free(&c);
}

/* ---- off by default; on and off ----------------------------------------------- */

struct threads_seen {
    int before, during;
    bool urg_default;
};

static void count_main(void *arg) {
    struct threads_seen *t = arg;
    coil_sleep(20 * COIL_MSEC);
    t->during = thread_count();
    struct sigaction sa;
    sigaction(SIGURG, NULL, &sa);
    t->urg_default = sa.sa_handler == SIG_DFL;
}

static void default_child(void *arg) {
    (void)arg;
    unsetenv("COIL_WATCHDOG_MS");
    struct threads_seen t = {.before = thread_count()};
    int rc = coil_run(count_main, &t);
    if (rc != 0 || !t.urg_default) _exit(3);
    /* qemu-user lists threads that have been joined, and TSan starts a
     * thread of its own when it likes: no count there. */
    bool count = !coil_test_under_qemu() && !coil_test_under_tsan();
    if (count && t.during != t.before) _exit(4);
    /* On: one thread more; off again: back (the monitor is joined). */
    if (coil_watchdog(THRESHOLD) != 0) _exit(5);
    int on = thread_count();
    if (coil_watchdog(5 * THRESHOLD) != 0) _exit(6); /* a new threshold: no new thread */
    int again = thread_count();
    if (coil_watchdog(0) != 0) _exit(7);
    int off = thread_count_settled(t.before);
    if (count && (on != t.before + 1 || again != on || off != t.before)) _exit(8);
    /* Off twice is still 0. */
    if (coil_watchdog(0) != 0) _exit(9);
}

static void test_off_by_default(void **state) {
    (void)state;
    coil_test_child_run(default_child, NULL, 30000,
                        "the watchdog was not off by default, or on/off changed no thread");
}

/* A stall while the watchdog is off is not reported; a zero from the
 * environment is off too. */
static void quiet_child(void *arg) {
    setenv("COIL_WATCHDOG_MS", (const char *)arg, 1);
    fprintf(stderr, "coil_run=%d\n", coil_run(spin_main, NULL));
}

static void test_off_says_nothing(void **state) {
    (void)state;
    const char *values[] = {"", "0"};
    for (int i = 0; i < 2; i++) {
        struct coil_test_child c;
        coil_test_fork_run(&c, quiet_child, (void *)values[i], 30000);
        bool ok = coil_test_child_exited(&c, 0) && strstr(c.err, "coil_run=0") &&
                  !strstr(c.err, "watchdog");
        if (!ok) {
            coil_test_child_describe(&c);
            coil_test_child_free(&c);
            fail_msg("COIL_WATCHDOG_MS=\"%s\": a stall was reported", values[i]);
        }
        coil_test_child_free(&c);
    }
}

/* ---- the environment ------------------------------------------------------------ */

static void env_child(void *arg) {
    setenv("COIL_WATCHDOG_MS", (const char *)arg, 1);
    fprintf(stderr, "coil_run=%d\n", coil_run(spin_main, NULL));
    /* A second run says the same. */
    fprintf(stderr, "again=%d\n", coil_run(spin_main, NULL));
}

static void test_env_turns_it_on(void **state) {
    (void)state;
    struct coil_test_child c;
    coil_test_fork_run(&c, env_child, "100", 30000);
    bool ok = coil_test_child_exited(&c, 0) && strstr(c.err, "coil_run=0") &&
              strstr(c.err, "again=0") &&
              reported(c.err, "\"spinner\" has held its scheduler", "watchdog_busy_loop");
    if (!ok) {
        coil_test_child_describe(&c);
        coil_test_child_free(&c);
        fail_msg("COIL_WATCHDOG_MS=100 did not report a stall");
    }
    coil_test_child_free(&c);
}

static void test_env_errors(void **state) {
    (void)state;
    const char *bad[] = {"abc", "-5", "12ms", " 100", "1.5", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        struct coil_test_child c;
        coil_test_fork_run(&c, env_child, (void *)bad[i], 30000);
        char want[128];
        snprintf(want, sizeof want, "coil: COIL_WATCHDOG_MS=%s: not a number of milliseconds",
                 bad[i]);
        bool ok = coil_test_child_exited(&c, 0) && strstr(c.err, "coil_run=-22") &&
                  strstr(c.err, "again=-22") && strstr(c.err, want) && !strstr(c.err, "has held");
        if (!ok) {
            coil_test_child_describe(&c);
            coil_test_child_free(&c);
            fail_msg("COIL_WATCHDOG_MS=\"%s\" was not refused with -EINVAL", bad[i]);
        }
        coil_test_child_free(&c);
    }
}

/* ---- bad arguments ------------------------------------------------------------- */

static void test_bad_argument(void **state) {
    (void)state;
    assert_int_equal(coil_watchdog(-1), -EINVAL);
    assert_int_equal(coil_watchdog(COIL_FOREVER), -EINVAL);
    assert_int_equal(coil_watchdog(INT64_MIN), -EINVAL);
    assert_int_equal(coil_watchdog(0), 0); /* off while off */
}

/* ---- the program's own SIGURG handler ------------------------------------------ */

static volatile sig_atomic_t own_urgs;

static void own_urg(int sig) {
    (void)sig;
    own_urgs++;
}

static void own_urg_info(int sig, siginfo_t *si, void *uc) {
    (void)sig;
    (void)uc;
    if (si && si->si_signo == SIGURG) own_urgs++;
}

static void urg_main(void *arg) {
    (void)arg;
    raise(SIGURG); /* the program's: its handler gets it, no report */
    coil_spawn(spinner, NULL, &(coil_spawn_opts){.name = "spinner"});
}

/* arg: non-NULL for an SA_SIGINFO handler, else a plain one. */
static void own_handler_child(void *arg) {
    if (arg) {
        struct sigaction sa;
        memset(&sa, 0, sizeof sa);
        sa.sa_sigaction = own_urg_info;
        sa.sa_flags = SA_SIGINFO;
        sigemptyset(&sa.sa_mask);
        sigaction(SIGURG, &sa, NULL);
    } else {
        signal(SIGURG, own_urg);
    }
    if (coil_watchdog(THRESHOLD) != 0) _exit(3);
    int rc = coil_run(urg_main, NULL);
    fprintf(stderr, "coil_run=%d own=%d\n", rc, (int)own_urgs);
    /* Off again: the handler stays coil's, and still passes the program's
     * SIGURGs on. */
    coil_watchdog(0);
    raise(SIGURG);
    fprintf(stderr, "after=%d\n", (int)own_urgs);
}

static void program_handler_kept(bool siginfo) {
    struct coil_test_child c;
    coil_test_fork_run(&c, own_handler_child, siginfo ? &c : NULL, 30000);
    bool ok = coil_test_child_exited(&c, 0) && strstr(c.err, "coil_run=0 own=1") &&
              strstr(c.err, "after=2") &&
              reported(c.err, "\"spinner\" has held its scheduler", "watchdog_busy_loop") &&
              reports(c.err, 2);
    if (!ok) {
        coil_test_child_describe(&c);
        coil_test_child_free(&c);
        fail_msg("with a SIGURG handler of the program's (%s): its signals or the reports went "
                 "astray",
                 siginfo ? "SA_SIGINFO" : "plain");
    }
    coil_test_child_free(&c);
}

static void test_program_handler_kept(void **state) {
    (void)state;
    program_handler_kept(false);
    program_handler_kept(true);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_raw_read_is_reported),
        cmocka_unit_test(test_busy_loop_once_per_stall),
        cmocka_unit_test(test_shallow_trace_sampled_again),
        cmocka_unit_test(test_shallow_trace_written_at_last),
        cmocka_unit_test(test_group_scheduler_is_watched),
        cmocka_unit_test(test_off_by_default),
        cmocka_unit_test(test_off_says_nothing),
        cmocka_unit_test(test_env_turns_it_on),
        cmocka_unit_test(test_env_errors),
        cmocka_unit_test(test_bad_argument),
        cmocka_unit_test(test_program_handler_kept),
    };
    coil_test_apply_filter();
    return cmocka_run_group_tests(tests, NULL, NULL);
}
