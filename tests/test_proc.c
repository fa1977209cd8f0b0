/* Child processes: coil_proc_spawn, _wait, _kill, _release. A child (this
 * program, run again) that prints 1 MiB of a known pattern to its stdout and
 * 256 KiB to its stderr, both read to the end by tasklets while another
 * tasklet ticks; cat fed through its stdin; exit status 3 passed through; a
 * child killed with SIGTERM and one with SIGKILL; one reaped behind coil's
 * back (-ECHILD); a child that outlives its deadline (-ETIMEDOUT, then
 * killed and reaped); a missing program, a missing directory, a file that
 * is not executable and one that is no program give spawn's own -ENOENT /
 * -EACCES / -ENOEXEC (no child left, no fd); bad arguments -EINVAL / -EBADF
 * / -EPERM; the waiting tasklet killed (-ECANCELED, and release reaps the
 * child: no zombie); release of a running child; SIGINT (coil_run's
 * shutdown) while tasklets wait for children, in a process of its own; the
 * environment, given and inherited; the working directory; no signal
 * blocked in the child (yes dies of SIGPIPE); /dev/null, a caller's fd and
 * 2>&1; many children at once, also from the two threads of a group of
 * schedulers (each vfork runs while the other thread goes on). Registered a
 * second time with COIL_PROC_PIDFD=0: the wait without a pidfd (waitpid
 * polling, which is also what runs under Valgrind). */
#define _GNU_SOURCE
// coil-test: tsan (a group of two schedulers spawns children from both threads; SIGINT)
#include "coil_test.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/wait.h>

#define PATTERN_OUT  ((size_t)1 << 20)
#define PATTERN_ERR  ((size_t)256 << 10)
#define PATTERN_STEP ((size_t)16 << 10)
#define SEED_OUT     11
#define SEED_ERR     12

static char self_exe[4096];

/* ---- the child side: this program run with --coil-proc-child ---------- */

static int write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return -1;
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Interleaves the two streams in 16 KiB steps, so that a parent reading only
 * one of them would leave the child blocked on the other. */
static int child_pattern(void) {
    static char buf[PATTERN_STEP];
    size_t out = 0, err = 0;
    while (out < PATTERN_OUT || err < PATTERN_ERR) {
        if (out < PATTERN_OUT) {
            coil_test_pattern_fill(buf, PATTERN_STEP, SEED_OUT, out);
            if (write_all(1, buf, PATTERN_STEP)) return 1;
            out += PATTERN_STEP;
        }
        if (err < PATTERN_ERR) {
            coil_test_pattern_fill(buf, PATTERN_STEP, SEED_ERR, err);
            if (write_all(2, buf, PATTERN_STEP)) return 1;
            err += PATTERN_STEP;
        }
    }
    return 0;
}

/* ---- helpers --------------------------------------------------------------- */

/* No child of this process is left, running or zombie. */
static bool no_children(void) {
    return waitpid(-1, NULL, WNOHANG) < 0 && errno == ECHILD;
}

/* Reads fd to end of file into buf (cap bytes); the count, or -errno. */
static ssize_t read_to_end(int fd, char *buf, size_t cap) {
    size_t got = 0;
    for (;;) {
        ssize_t n = coil_read(fd, buf + got, cap - got);
        if (n < 0) return n;
        if (n == 0) return (ssize_t)got;
        got += (size_t)n;
        if (got == cap) return (ssize_t)got;
    }
}

static int spawn_argv(coil_proc *p, const char *const *argv, int in, int out, int err) {
    coil_proc_opts o = {.argv = argv, .stdio = {in, out, err}};
    return coil_proc_spawn(p, &o);
}

/* ---- 1 MiB from a child, while other tasklets run ------------------------- */

struct stream {
    int fd;
    uint64_t seed;
    size_t want, got;
    size_t bad_at; /* SIZE_MAX: every byte as expected */
    int res;
};

static void read_stream(void *arg) {
    struct stream *s = arg;
    char buf[16384]; /* its own: two readers' reads are in flight at once */
    s->bad_at = SIZE_MAX;
    for (;;) {
        ssize_t n = coil_read(s->fd, buf, sizeof buf);
        if (n <= 0) {
            s->res = (int)n;
            return;
        }
        size_t ok = coil_test_pattern_check(buf, (size_t)n, s->seed, s->got);
        if (ok != (size_t)n && s->bad_at == SIZE_MAX) s->bad_at = s->got + ok;
        s->got += (size_t)n;
    }
}

struct ticker {
    bool stop;
    long ticks;
};

static void tick(void *arg) {
    struct ticker *t = arg;
    while (!t->stop && coil_sleep(COIL_MSEC) == 0)
        t->ticks++;
}

static void pattern_main(void *arg) {
    (void)arg;
    const char *argv[] = {self_exe, "--coil-proc-child", "pattern", NULL};
    coil_proc p;
    if (!EXPECT_EQ(spawn_argv(&p, argv, COIL_PROC_NULL, COIL_PROC_PIPE, COIL_PROC_PIPE), 0)) return;
    EXPECT(p.pid > 0);
    EXPECT_EQ(p.stdin_fd, -1);
    EXPECT(p.stdout_fd >= 0 && p.stderr_fd >= 0);
    EXPECT_EQ(p.status, -1);
    EXPECT(fcntl(p.stdout_fd, F_GETFL) & O_NONBLOCK);
    EXPECT(fcntl(p.stdout_fd, F_GETFD) & FD_CLOEXEC);
    struct ticker tk = {0};
    struct stream out = {.fd = p.stdout_fd, .seed = SEED_OUT, .want = PATTERN_OUT};
    struct stream err = {.fd = p.stderr_fd, .seed = SEED_ERR, .want = PATTERN_ERR};
    coil_id ti = coil_spawn(tick, &tk, NULL);
    coil_id oi = coil_spawn(read_stream, &out, NULL);
    coil_id ei = coil_spawn(read_stream, &err, NULL);
    EXPECT_EQ(coil_join(oi, COIL_FOREVER), 0);
    EXPECT_EQ(coil_join(ei, COIL_FOREVER), 0);
    int st = coil_proc_wait(&p, coil_now() + 30 * COIL_SEC);
    tk.stop = true;
    EXPECT_EQ(coil_join(ti, COIL_FOREVER), 0);
    EXPECT_EQ(out.res, 0);
    EXPECT_EQ(out.got, PATTERN_OUT);
    EXPECT_EQ(out.bad_at, SIZE_MAX);
    EXPECT_EQ(err.res, 0);
    EXPECT_EQ(err.got, PATTERN_ERR);
    EXPECT_EQ(err.bad_at, SIZE_MAX);
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    EXPECT_EQ(p.status, st);
    EXPECT(tk.ticks > 0); /* the ticker ran meanwhile */
    EXPECT_EQ(coil_proc_release(&p), 0);
    EXPECT_EQ(p.stdout_fd, -1);
    EXPECT_EQ(p.stderr_fd, -1);
}

static void test_child_prints_1mib(void **state) {
    (void)state;
    /* Under qemu-user this aarch64 program could be run again only through
     * binfmt_misc, which the cross stage does not set up. */
    if (coil_test_under_qemu()) skip();
    int fds = coil_test_open_fds();
    COIL_RUN_CHECKED(pattern_main, NULL);
    assert_true(no_children());
    assert_int_equal(coil_test_open_fds(), fds);
}

/* ---- writing to a child's stdin and reading its stdout (cat) --------------- */

#define CAT_BYTES ((size_t)300 << 10) /* more than a pipe holds both ways */

struct feed {
    coil_proc *p;
    int res;
};

static void feed_cat(void *arg) {
    struct feed *f = arg;
    static char buf[CAT_BYTES];
    coil_test_pattern_fill(buf, sizeof buf, 7, 0);
    f->res = (int)coil_write(f->p->stdin_fd, buf, 0); /* zero bytes: nothing */
    size_t done = 0;
    while (done < sizeof buf && f->res >= 0) {
        ssize_t n = coil_write(f->p->stdin_fd, buf + done, sizeof buf - done);
        if (n < 0)
            f->res = (int)n;
        else
            done += (size_t)n;
    }
    EXPECT_EQ(coil_close(f->p->stdin_fd), 0); /* end of file for cat */
    f->p->stdin_fd = -1;
}

static void cat_main(void *arg) {
    (void)arg;
    const char *argv[] = {"cat", NULL};
    coil_proc p;
    if (!EXPECT_EQ(spawn_argv(&p, argv, COIL_PROC_PIPE, COIL_PROC_PIPE, COIL_PROC_INHERIT), 0))
        return;
    EXPECT(fcntl(p.stdin_fd, F_GETFL) & O_NONBLOCK);
    struct feed f = {.p = &p};
    coil_id w = coil_spawn(feed_cat, &f, NULL);
    struct stream out = {.fd = p.stdout_fd, .seed = 7, .want = CAT_BYTES};
    read_stream(&out);
    EXPECT_EQ(coil_join(w, COIL_FOREVER), 0);
    EXPECT_EQ(f.res, 0);
    EXPECT_EQ(out.res, 0);
    EXPECT_EQ(out.got, CAT_BYTES);
    EXPECT_EQ(out.bad_at, SIZE_MAX);
    int st = coil_proc_wait(&p, COIL_FOREVER);
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    EXPECT_EQ(coil_proc_release(&p), 0);
}

static void test_stdin_and_stdout_of_cat(void **state) {
    (void)state;
    COIL_RUN_CHECKED(cat_main, NULL);
    assert_true(no_children());
}

/* ---- exit status, signals, deadline ------------------------------------- */

static void status_main(void *arg) {
    (void)arg;
    const char *argv[] = {"sh", "-c", "exit 3", NULL};
    coil_proc p;
    if (!EXPECT_EQ(spawn_argv(&p, argv, COIL_PROC_NULL, COIL_PROC_NULL, COIL_PROC_NULL), 0)) return;
    int st = coil_proc_wait(&p, COIL_FOREVER);
    EXPECT(WIFEXITED(st));
    EXPECT_EQ(WEXITSTATUS(st), 3);
    EXPECT_EQ(p.status, st);
    EXPECT_EQ(coil_proc_wait(&p, 0), st);           /* kept: at once, even past a deadline */
    EXPECT_EQ(coil_proc_kill(&p, SIGTERM), -ESRCH); /* reaped */
    EXPECT_EQ(coil_proc_release(&p), 0);
    EXPECT_EQ(coil_proc_release(&p), 0); /* twice: nothing more */
    EXPECT_EQ(coil_proc_wait(&p, COIL_FOREVER), -EINVAL);
    EXPECT_EQ(coil_proc_kill(&p, SIGTERM), -EINVAL);
}

/* A child reaped by someone else: a waitpid of the program's own, or the
 * kernel with SIGCHLD ignored. coil never signals that pid again. */
static void reaped_elsewhere_main(void *arg) {
    (void)arg;
    const char *argv[] = {"true", NULL};
    coil_proc p;
    if (!EXPECT_EQ(spawn_argv(&p, argv, COIL_PROC_NULL, COIL_PROC_NULL, COIL_PROC_NULL), 0)) return;
    int st;
    EXPECT_EQ(waitpid(p.pid, &st, 0), p.pid);
    EXPECT_EQ(coil_proc_wait(&p, COIL_FOREVER), -ECHILD);
    EXPECT_EQ(coil_proc_wait(&p, COIL_FOREVER), -ECHILD);
    EXPECT_EQ(coil_proc_kill(&p, SIGKILL), -ESRCH);
    EXPECT_EQ(coil_proc_release(&p), 0);
    /* SIGCHLD ignored: the kernel reaps the child as it ends. */
    struct sigaction ign = {.sa_handler = SIG_IGN}, old;
    sigemptyset(&ign.sa_mask);
    EXPECT_EQ(sigaction(SIGCHLD, &ign, &old), 0);
    if (EXPECT_EQ(spawn_argv(&p, argv, COIL_PROC_NULL, COIL_PROC_NULL, COIL_PROC_NULL), 0)) {
        EXPECT_EQ(coil_proc_wait(&p, coil_now() + 20 * COIL_SEC), -ECHILD);
        EXPECT_EQ(coil_proc_release(&p), 0);
    }
    EXPECT_EQ(sigaction(SIGCHLD, &old, NULL), 0);
}

static void test_reaped_behind_coils_back(void **state) {
    (void)state;
    COIL_RUN_CHECKED(reaped_elsewhere_main, NULL);
    assert_true(no_children());
}

static void test_exit_status(void **state) {
    (void)state;
    COIL_RUN_CHECKED(status_main, NULL);
    assert_true(no_children());
}

static void killed_main(void *arg) {
    (void)arg;
    const int sigs[] = {SIGTERM, SIGKILL};
    for (int i = 0; i < 2; i++) {
        const char *argv[] = {"sleep", "10", NULL};
        coil_proc p;
        if (!EXPECT_EQ(spawn_argv(&p, argv, COIL_PROC_NULL, COIL_PROC_NULL, COIL_PROC_NULL), 0))
            return;
        EXPECT_EQ(coil_proc_kill(&p, 0), 0); /* it is there */
        int64_t t0 = coil_now();
        EXPECT_EQ(coil_proc_kill(&p, sigs[i]), 0);
        int st = coil_proc_wait(&p, coil_now() + 20 * COIL_SEC);
        EXPECT(coil_now() - t0 < 10 * COIL_SEC); /* not sleep's own end */
        EXPECT(WIFSIGNALED(st));
        EXPECT_EQ(WTERMSIG(st), sigs[i]);
        EXPECT_EQ(coil_proc_kill(&p, sigs[i]), -ESRCH);
        EXPECT_EQ(coil_proc_release(&p), 0);
    }
}

static void test_killed_child(void **state) {
    (void)state;
    COIL_RUN_CHECKED(killed_main, NULL);
    assert_true(no_children());
}

static void deadline_main(void *arg) {
    (void)arg;
    const char *argv[] = {"sleep", "10", NULL};
    coil_proc p;
    if (!EXPECT_EQ(spawn_argv(&p, argv, COIL_PROC_NULL, COIL_PROC_NULL, COIL_PROC_NULL), 0)) return;
    /* A deadline already passed: one look, no wait. */
    int64_t t0 = coil_now();
    EXPECT_EQ(coil_proc_wait(&p, 0), -ETIMEDOUT);
    EXPECT_EQ(coil_proc_wait(&p, t0 - 1), -ETIMEDOUT);
    EXPECT(coil_now() - t0 < coil_test_slack());
    t0 = coil_now();
    EXPECT_EQ(coil_proc_wait(&p, t0 + 200 * COIL_MSEC), -ETIMEDOUT);
    int64_t took = coil_now() - t0;
    EXPECT(took >= 200 * COIL_MSEC);
    EXPECT(took < 200 * COIL_MSEC + coil_test_slack());
    EXPECT_EQ(p.status, -1);
    /* It runs on: kill it, and the next wait reaps it. */
    EXPECT_EQ(coil_proc_kill(&p, 0), 0);
    EXPECT_EQ(coil_proc_kill(&p, SIGKILL), 0);
    int st = coil_proc_wait(&p, coil_now() + 20 * COIL_SEC);
    EXPECT(WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL);
    EXPECT_EQ(coil_proc_release(&p), 0);
}

static void test_child_exceeds_deadline(void **state) {
    (void)state;
    COIL_RUN_CHECKED(deadline_main, NULL);
    assert_true(no_children());
}

/* ---- spawn's errors ---------------------------------------------------------- */

static void spawn_errors_main(void *arg) {
    (void)arg;
    coil_proc p;
    const char *missing[] = {"coil-no-such-program-here", NULL};
    EXPECT_EQ(spawn_argv(&p, missing, COIL_PROC_PIPE, COIL_PROC_PIPE, COIL_PROC_PIPE), -ENOENT);
    EXPECT_EQ(p.pid, -1);
    EXPECT_EQ(p.stdin_fd, -1);
    EXPECT_EQ(p.stdout_fd, -1);
    EXPECT_EQ(coil_proc_release(&p), 0);
    const char *missing_path[] = {"/nonexistent/coil/prog", NULL};
    EXPECT_EQ(spawn_argv(&p, missing_path, 0, 0, 0), -ENOENT);
    /* A file without execute permission (-EACCES, root included), and an
     * executable one that is no program (-ENOEXEC: a path is run with
     * execve, which does not hand it to /bin/sh). */
    char path[256];
    const char *dir = getenv("TMPDIR");
    snprintf(path, sizeof path, "%s/coil-test-proc-XXXXXX", dir && *dir ? dir : "/tmp");
    int fd = mkostemp(path, O_CLOEXEC);
    if (!EXPECT(fd >= 0)) return;
    EXPECT_EQ(write(fd,
                    "\x7f"
                    "ELF, not really",
                    16),
              16);
    close(fd);
    const char *not_exec[] = {path, NULL};
    EXPECT_EQ(chmod(path, 0644), 0);
    EXPECT_EQ(spawn_argv(&p, not_exec, COIL_PROC_NULL, 0, 0), -EACCES);
    EXPECT_EQ(chmod(path, 0755), 0);
    EXPECT_EQ(spawn_argv(&p, not_exec, COIL_PROC_NULL, 0, 0), -ENOEXEC);
    unlink(path);
    /* file names the program; argv[0] is only its name. */
    const char *argv[] = {"true", NULL};
    coil_proc_opts o = {.argv = argv, .file = "/nonexistent/true"};
    EXPECT_EQ(coil_proc_spawn(&p, &o), -ENOENT);
    o.file = NULL;
    o.dir = "/nonexistent/coil-dir";
    EXPECT_EQ(coil_proc_spawn(&p, &o), -ENOENT);
    /* errno is left alone */
    errno = 1234;
    EXPECT_EQ(spawn_argv(&p, missing, 0, 0, 0), -ENOENT);
    EXPECT_EQ(errno, 1234);
}

static void test_spawn_failures_are_spawns_errors(void **state) {
    (void)state;
    int fds = coil_test_open_fds();
    COIL_RUN_CHECKED(spawn_errors_main, NULL);
    assert_true(no_children());
    assert_int_equal(coil_test_open_fds(), fds);
}

static void bad_args_main(void *arg) {
    (void)arg;
    coil_proc p;
    const char *argv[] = {"true", NULL};
    const char *empty[] = {NULL};
    coil_proc_opts o = {.argv = argv};
    EXPECT_EQ(coil_proc_spawn(NULL, &o), -EINVAL);
    EXPECT_EQ(coil_proc_spawn(&p, NULL), -EINVAL);
    o.argv = NULL;
    EXPECT_EQ(coil_proc_spawn(&p, &o), -EINVAL);
    o.argv = empty;
    EXPECT_EQ(coil_proc_spawn(&p, &o), -EINVAL);
    o.argv = argv;
    o.stdio[0] = COIL_PROC_STDOUT; /* stderr only */
    EXPECT_EQ(coil_proc_spawn(&p, &o), -EINVAL);
    o.stdio[0] = 0;
    o.stdio[1] = COIL_PROC_STDOUT;
    EXPECT_EQ(coil_proc_spawn(&p, &o), -EINVAL);
    o.stdio[1] = 99;
    EXPECT_EQ(coil_proc_spawn(&p, &o), -EINVAL);
    o.stdio[1] = -1;
    EXPECT_EQ(coil_proc_spawn(&p, &o), -EINVAL);
    o.stdio[1] = COIL_PROC_FD;
    o.stdio_fd[1] = -1;
    EXPECT_EQ(coil_proc_spawn(&p, &o), -EBADF);
    o.stdio_fd[1] = 1000; /* not open */
    EXPECT_EQ(coil_proc_spawn(&p, &o), -EBADF);
    EXPECT_EQ(coil_proc_wait(NULL, COIL_FOREVER), -EINVAL);
    EXPECT_EQ(coil_proc_kill(NULL, SIGTERM), -EINVAL);
    EXPECT_EQ(coil_proc_release(NULL), -EINVAL);
    /* A failed spawn leaves p released. */
    EXPECT_EQ(coil_proc_wait(&p, COIL_FOREVER), -EINVAL);
    EXPECT_EQ(coil_proc_release(&p), 0);
    /* A zeroed coil_proc has no child: release touches none of its fields'
     * fds (0 here). */
    coil_proc zero;
    memset(&zero, 0, sizeof zero);
    EXPECT_EQ(coil_proc_release(&zero), 0);
    EXPECT_EQ(coil_proc_wait(&zero, COIL_FOREVER), -EINVAL);
    /* A bad signal. */
    const char *sleeper[] = {"sleep", "10", NULL};
    if (!EXPECT_EQ(spawn_argv(&p, sleeper, COIL_PROC_NULL, COIL_PROC_NULL, COIL_PROC_NULL), 0))
        return;
    EXPECT_EQ(coil_proc_kill(&p, 1000), -EINVAL);
    EXPECT_EQ(coil_proc_kill(&p, -1), -EINVAL);
    EXPECT_EQ(coil_proc_release(&p), 0); /* SIGKILL and reap */
}

static void test_bad_arguments(void **state) {
    (void)state;
    int fd0 = fcntl(0, F_GETFD);
    COIL_RUN_CHECKED(bad_args_main, NULL);
    assert_int_equal(fcntl(0, F_GETFD), fd0); /* fd 0 as it was */
    assert_true(no_children());
}

/* Spawn, kill and release work outside a tasklet; a wait needs one. */
static void test_outside_a_tasklet(void **state) {
    (void)state;
    coil_proc p;
    const char *argv[] = {"sleep", "10", NULL};
    assert_int_equal(spawn_argv(&p, argv, COIL_PROC_PIPE, COIL_PROC_PIPE, COIL_PROC_NULL), 0);
    assert_int_equal(coil_proc_wait(&p, COIL_FOREVER), -EPERM);
    assert_int_equal(coil_proc_kill(&p, 0), 0);
    assert_int_equal(coil_proc_release(&p), 0); /* SIGKILL, blocking reap */
    assert_int_equal(p.stdin_fd, -1);
    assert_true(no_children());
}

/* ---- the waiting tasklet killed --------------------------------------------- */

struct waiter {
    coil_proc p;
    int spawn_res, wait_res, wait_again, release_res;
    bool parked;
};

static void wait_forever(void *arg) {
    struct waiter *w = arg;
    const char *argv[] = {"sleep", "10", NULL};
    w->spawn_res = spawn_argv(&w->p, argv, COIL_PROC_NULL, COIL_PROC_PIPE, COIL_PROC_NULL);
    if (w->spawn_res) return;
    w->parked = true;
    w->wait_res = coil_proc_wait(&w->p, COIL_FOREVER);
    w->wait_again = coil_proc_wait(&w->p, COIL_FOREVER); /* killed: at once */
    w->release_res = coil_proc_release(&w->p);           /* kills and reaps it */
}

static void waiter_killed_main(void *arg) {
    struct waiter *w = arg;
    coil_id id = coil_spawn(wait_forever, w, NULL);
    while (!w->parked)
        coil_yield();
    coil_sleep(20 * COIL_MSEC); /* well inside its wait */
    EXPECT_EQ(coil_kill(id), 0);
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    EXPECT_EQ(w->spawn_res, 0);
    EXPECT_EQ(w->wait_res, -ECANCELED);
    EXPECT_EQ(w->wait_again, -ECANCELED);
    EXPECT_EQ(w->release_res, 0);
    EXPECT_EQ(w->p.stdout_fd, -1);
}

static void test_waiting_tasklet_killed(void **state) {
    (void)state;
    struct waiter w = {0};
    COIL_RUN_CHECKED(waiter_killed_main, &w);
    /* The child was killed and reaped by the release: no zombie. */
    assert_true(no_children());
    assert_int_equal(kill(w.p.pid, 0), -1);
    assert_int_equal(errno, ESRCH);
}

/* A killed tasklet's release waits for the child all the same, also when the
 * kill comes during that wait (the reaping pauses are not cut short). */
static void release_running_main(void *arg) {
    (void)arg;
    coil_proc p;
    const char *argv[] = {"sleep", "10", NULL};
    if (!EXPECT_EQ(spawn_argv(&p, argv, COIL_PROC_PIPE, COIL_PROC_PIPE, COIL_PROC_PIPE), 0)) return;
    pid_t pid = p.pid;
    int64_t t0 = coil_now();
    EXPECT_EQ(coil_proc_release(&p), 0);
    EXPECT(coil_now() - t0 < 10 * COIL_SEC);
    EXPECT_EQ(p.stdin_fd, -1);
    EXPECT_EQ(p.stdout_fd, -1);
    EXPECT_EQ(p.stderr_fd, -1);
    EXPECT(waitpid(pid, NULL, WNOHANG) < 0 && errno == ECHILD);
    /* Killed first: the same. */
    if (!EXPECT_EQ(spawn_argv(&p, argv, COIL_PROC_NULL, COIL_PROC_NULL, COIL_PROC_NULL), 0)) return;
    EXPECT_EQ(coil_kill(coil_self()), 0);
    EXPECT_EQ(coil_proc_wait(&p, COIL_FOREVER), -ECANCELED);
    EXPECT_EQ(coil_proc_release(&p), 0);
}

static void test_release_kills_and_reaps(void **state) {
    (void)state;
    int fds = coil_test_open_fds();
    COIL_RUN_CHECKED(release_running_main, NULL);
    assert_true(no_children());
    assert_int_equal(coil_test_open_fds(), fds);
}

/* ---- Ctrl-C while tasklets wait for children ------------------------------- */

#define SHUTDOWN_WAITERS 3

struct shutdown_waiter {
    int spawn_res, wait_res, release_res;
};

static struct shutdown_waiter shutdown_waiters[SHUTDOWN_WAITERS];
static int shutdown_parked;

static void shutdown_wait(void *arg) {
    struct shutdown_waiter *w = arg;
    const char *argv[] = {"sleep", "30", NULL};
    coil_proc p;
    w->spawn_res = spawn_argv(&p, argv, COIL_PROC_NULL, COIL_PROC_NULL, COIL_PROC_NULL);
    if (w->spawn_res) return;
    shutdown_parked++;
    w->wait_res = coil_proc_wait(&p, COIL_FOREVER); /* SIGINT ends this */
    w->release_res = coil_proc_release(&p);
}

static void shutdown_main(void *arg) {
    (void)arg;
    coil_id ids[SHUTDOWN_WAITERS];
    for (int i = 0; i < SHUTDOWN_WAITERS; i++)
        ids[i] = coil_spawn(shutdown_wait, &shutdown_waiters[i], NULL);
    while (shutdown_parked < SHUTDOWN_WAITERS && coil_yield() == 0) {
    }
    coil_sleep(20 * COIL_MSEC);
    fprintf(stderr, "ready\n");
    fflush(stderr);
    for (int i = 0; i < SHUTDOWN_WAITERS; i++)
        coil_join(ids[i], COIL_FOREVER);
}

static void shutdown_child(void *arg) {
    (void)arg;
    signal(SIGINT, SIG_DFL);
    int rc = coil_run(shutdown_main, NULL);
    int ok = rc == -EINTR;
    for (int i = 0; i < SHUTDOWN_WAITERS; i++) {
        struct shutdown_waiter *w = &shutdown_waiters[i];
        fprintf(stderr, "waiter %d: spawn %d wait %d release %d\n", i, w->spawn_res, w->wait_res,
                w->release_res);
        ok &= w->spawn_res == 0 && w->wait_res == -ECANCELED && w->release_res == 0;
    }
    bool none_left = no_children();
    fprintf(stderr, "coil_run=%d children left: %s\n", rc, none_left ? "none" : "some");
    _exit(ok && none_left ? 0 : 1);
}

static void test_sigint_while_waiting(void **state) {
    (void)state;
    struct coil_test_child c;
    bool ready = coil_test_child_signal_at(&c, shutdown_child, NULL, "ready", SIGINT);
    if (!ready || !coil_test_child_exited(&c, 0)) {
        coil_test_child_describe(&c);
        coil_test_child_free(&c);
        fail_msg("SIGINT: the waits did not end with -ECANCELED and every child reaped");
    }
    coil_test_child_free(&c);
}

/* ---- environment, directory, stdio modes ----------------------------------- */

static void read_all_of(const char *const *argv, const char *const *envp, const char *dir,
                        int err_mode, char *buf, size_t cap, int *status) {
    coil_proc p;
    coil_proc_opts o = {.argv = argv,
                        .envp = envp,
                        .dir = dir,
                        .stdio = {COIL_PROC_NULL, COIL_PROC_PIPE, err_mode}};
    buf[0] = '\0';
    *status = -1;
    if (!EXPECT_EQ(coil_proc_spawn(&p, &o), 0)) return;
    ssize_t n = read_to_end(p.stdout_fd, buf, cap - 1);
    EXPECT(n >= 0);
    buf[n < 0 ? 0 : n] = '\0';
    *status = coil_proc_wait(&p, coil_now() + 20 * COIL_SEC);
    EXPECT_EQ(coil_proc_release(&p), 0);
}

static void env_main(void *arg) {
    (void)arg;
    char buf[256];
    int st;
    /* Given: only what is given. */
    const char *sh_env[] = {"/bin/sh", "-c", "printf '%s|%s' \"$COIL_PROC_A\" \"$COIL_PROC_B\"",
                            NULL};
    const char *envp[] = {"COIL_PROC_A=hello world", NULL};
    read_all_of(sh_env, envp, NULL, COIL_PROC_INHERIT, buf, sizeof buf, &st);
    EXPECT_EQ(strcmp(buf, "hello world|"), 0);
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* Inherited: this process's. */
    read_all_of(sh_env, NULL, NULL, COIL_PROC_INHERIT, buf, sizeof buf, &st);
    EXPECT_EQ(strcmp(buf, "|inherited"), 0);
    /* An empty environment. */
    const char *none[] = {NULL};
    const char *env_cmd[] = {"/usr/bin/env", NULL};
    read_all_of(env_cmd, none, NULL, COIL_PROC_INHERIT, buf, sizeof buf, &st);
    EXPECT_EQ(strcmp(buf, ""), 0);
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    /* The working directory. */
    const char *pwd[] = {"/bin/sh", "-c", "pwd", NULL};
    read_all_of(pwd, NULL, "/", COIL_PROC_INHERIT, buf, sizeof buf, &st);
    EXPECT_EQ(strcmp(buf, "/\n"), 0);
    /* 2>&1: both on the one pipe, in order. */
    const char *both[] = {"/bin/sh", "-c", "echo out; echo err >&2; exit 5", NULL};
    read_all_of(both, NULL, NULL, COIL_PROC_STDOUT, buf, sizeof buf, &st);
    EXPECT_EQ(strcmp(buf, "out\nerr\n"), 0);
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 5);
    /* No signal blocked in the child, though coil_run blocks SIGPIPE on this
     * thread (exec keeps a mask): a child writing to a closed pipe dies of
     * SIGPIPE as it would without coil. */
    const char *mask[] = {"grep", "SigBlk", "/proc/self/status", NULL};     /* not sh: */
    read_all_of(mask, NULL, NULL, COIL_PROC_INHERIT, buf, sizeof buf, &st); /* it clears it */
    EXPECT_EQ(strcmp(buf, "SigBlk:\t0000000000000000\n"), 0);
    const char *pipe_death[] = {"yes", NULL};
    coil_proc p;
    if (EXPECT_EQ(spawn_argv(&p, pipe_death, COIL_PROC_NULL, COIL_PROC_PIPE, COIL_PROC_NULL), 0)) {
        EXPECT(coil_read(p.stdout_fd, buf, sizeof buf) > 0);
        EXPECT_EQ(coil_close(p.stdout_fd), 0); /* no reader left */
        p.stdout_fd = -1;
        st = coil_proc_wait(&p, coil_now() + 20 * COIL_SEC);
        EXPECT(WIFSIGNALED(st) && WTERMSIG(st) == SIGPIPE);
        EXPECT_EQ(coil_proc_release(&p), 0);
    }
    /* stderr to /dev/null. */
    read_all_of(both, NULL, NULL, COIL_PROC_NULL, buf, sizeof buf, &st);
    EXPECT_EQ(strcmp(buf, "out\n"), 0);
}

static void test_environment_directory_and_stderr(void **state) {
    (void)state;
    setenv("COIL_PROC_B", "inherited", 1);
    COIL_RUN_CHECKED(env_main, NULL);
    unsetenv("COIL_PROC_B");
    assert_true(no_children());
}

/* COIL_PROC_FD: the child writes into a pipe of the caller's, which stays
 * the caller's (open after the spawn and the release). And a given fd below
 * 3 that the child's own fd 2 replaces: this process's fd 2 (a pipe here)
 * as the child's stdin, while the child's stderr is /dev/null. */
static void given_fd_main(void *arg) {
    (void)arg;
    int fds[2];
    if (!EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0)) return;
    const char *argv[] = {"/bin/sh", "-c", "echo given", NULL};
    coil_proc p;
    coil_proc_opts o = {.argv = argv,
                        .stdio = {COIL_PROC_NULL, COIL_PROC_FD, COIL_PROC_INHERIT},
                        .stdio_fd = {0, fds[1], 0}};
    if (!EXPECT_EQ(coil_proc_spawn(&p, &o), 0)) return;
    EXPECT_EQ(p.stdout_fd, -1);
    int st = coil_proc_wait(&p, coil_now() + 20 * COIL_SEC);
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    EXPECT_EQ(coil_proc_release(&p), 0);
    EXPECT(fcntl(fds[1], F_GETFD) >= 0); /* still the caller's */
    EXPECT_EQ(coil_close(fds[1]), 0);
    char buf[64];
    ssize_t n = read_to_end(fds[0], buf, sizeof buf - 1);
    EXPECT_EQ(n, 6);
    buf[n < 0 ? 0 : n] = '\0';
    EXPECT_EQ(strcmp(buf, "given\n"), 0);
    EXPECT_EQ(coil_close(fds[0]), 0);

    /* The child's stdin is the file of this process's fd 2, which the
     * child's /dev/null replaces as its fd 2. For the case, fd 2 is moved
     * aside and a pipe takes its place. */
    int saved2 = dup(2);
    if (!EXPECT(saved2 >= 0) || !EXPECT_EQ(pipe2(fds, O_CLOEXEC), 0)) return;
    dup2(fds[0], 2); /* fd 2 is now the read end of a pipe */
    const char *cat[] = {"cat", NULL};
    coil_proc_opts o2 = {.argv = cat,
                         .stdio = {COIL_PROC_FD, COIL_PROC_PIPE, COIL_PROC_NULL},
                         .stdio_fd = {2, 0, 0}};
    int rc = coil_proc_spawn(&p, &o2);
    dup2(saved2, 2);
    close(saved2);
    close(fds[0]);
    if (!EXPECT_EQ(rc, 0)) return;
    EXPECT_EQ(write(fds[1], "via fd 2\n", 9), 9);
    close(fds[1]);
    n = read_to_end(p.stdout_fd, buf, sizeof buf - 1);
    EXPECT_EQ(n, 9);
    buf[n < 0 ? 0 : n] = '\0';
    EXPECT_EQ(strcmp(buf, "via fd 2\n"), 0);
    st = coil_proc_wait(&p, coil_now() + 20 * COIL_SEC);
    EXPECT(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    EXPECT_EQ(coil_proc_release(&p), 0);
}

static void test_given_fds(void **state) {
    (void)state;
    int fds = coil_test_open_fds();
    COIL_RUN_CHECKED(given_fd_main, NULL);
    assert_true(no_children());
    assert_int_equal(coil_test_open_fds(), fds);
}

/* ---- many at once ----------------------------------------------------------- */

#define MANY 16

struct one {
    int index, status, got;
    char line[32];
};

static void run_one(void *arg) {
    struct one *o = arg;
    char script[64];
    snprintf(script, sizeof script, "echo %d; exit %d", o->index, o->index);
    const char *argv[] = {"/bin/sh", "-c", script, NULL};
    read_all_of(argv, NULL, NULL, COIL_PROC_INHERIT, o->line, sizeof o->line, &o->status);
}

static void many_main(void *arg) {
    (void)arg;
    struct one ones[MANY];
    coil_id ids[MANY];
    for (int i = 0; i < MANY; i++) {
        ones[i] = (struct one){.index = i};
        ids[i] = coil_spawn(run_one, &ones[i], NULL);
    }
    for (int i = 0; i < MANY; i++) {
        EXPECT_EQ(coil_join(ids[i], COIL_FOREVER), 0);
        char want[32];
        snprintf(want, sizeof want, "%d\n", i);
        EXPECT_EQ(strcmp(ones[i].line, want), 0);
        EXPECT(WIFEXITED(ones[i].status) && WEXITSTATUS(ones[i].status) == i);
    }
}

static void test_many_children_at_once(void **state) {
    (void)state;
    COIL_RUN_CHECKED(many_main, NULL);
    assert_true(no_children());
}

/* Each scheduler of a group of two runs MANY children at once (half on each,
 * spawned on their own threads), while the other thread spawns too. */
static void group_one(void *arg) {
    struct one *o = arg;
    run_one(o);
    EXPECT_EQ(coil_sched_index(), o->index % 2); /* it never moved */
}

static void group_main(void *arg) {
    (void)arg;
    struct one ones[MANY];
    coil_id ids[MANY];
    for (int i = 0; i < MANY; i++) {
        ones[i] = (struct one){.index = i};
        ids[i] = coil_spawn_on(i % 2, group_one, &ones[i], NULL);
        EXPECT(ids[i] > 0);
    }
    for (int i = 0; i < MANY; i++) {
        EXPECT_EQ(coil_join(ids[i], COIL_FOREVER), 0);
        char want[32];
        snprintf(want, sizeof want, "%d\n", i);
        EXPECT_EQ(strcmp(ones[i].line, want), 0);
        EXPECT(WIFEXITED(ones[i].status) && WEXITSTATUS(ones[i].status) == i);
    }
}

static void test_children_from_a_group(void **state) {
    (void)state;
    coil_test_reset_failures();
    int rc = coil_run_group(2, group_main, NULL);
    coil_test_assert_no_failure();
    assert_int_equal(rc, 0);
    assert_true(no_children());
}

int main(int argc, char **argv) {
    if (argc >= 3 && strcmp(argv[1], "--coil-proc-child") == 0) {
        if (strcmp(argv[2], "pattern") == 0) return child_pattern();
        return 2;
    }
    /* The program itself, to run again as a child (under Valgrind this is
     * the program's path, not Valgrind's). */
    ssize_t n = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    if (n <= 0) return 1;
    self_exe[n] = '\0';
    coil_test_apply_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_child_prints_1mib),
        cmocka_unit_test(test_stdin_and_stdout_of_cat),
        cmocka_unit_test(test_exit_status),
        cmocka_unit_test(test_reaped_behind_coils_back),
        cmocka_unit_test(test_killed_child),
        cmocka_unit_test(test_child_exceeds_deadline),
        cmocka_unit_test(test_spawn_failures_are_spawns_errors),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_outside_a_tasklet),
        cmocka_unit_test(test_waiting_tasklet_killed),
        cmocka_unit_test(test_release_kills_and_reaps),
        cmocka_unit_test(test_sigint_while_waiting),
        cmocka_unit_test(test_environment_directory_and_stderr),
        cmocka_unit_test(test_given_fds),
        cmocka_unit_test(test_many_children_at_once),
        cmocka_unit_test(test_children_from_a_group),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
