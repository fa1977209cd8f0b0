/*
 * Child processes (Linux): coil_proc_spawn, _wait, _kill, _release. See the
 * contracts in coil.h and docs/architecture.md, section "Child processes".
 *
 * Spawning is vfork + execve. posix_spawn would do the same on glibc (a
 * clone with CLONE_VM|CLONE_VFORK, no page tables copied), but glibc reports
 * a failed exec through memory the child shares with the parent; under
 * Valgrind, which runs a CLONE_VM child as a fork, that report is lost and
 * a missing program shows as a child that exits with 127 (measured with
 * glibc 2.36 and Valgrind 3.19). So the child here writes the errno of a
 * failed exec both to shared memory (read when the parent finds that the
 * child ran in its memory) and to a close-on-exec pipe (read otherwise: a
 * vfork run as a fork, by Valgrind or ThreadSanitizer).
 */
#include "internal.h"

#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#if COIL_HAVE_VALGRIND_H
#include <valgrind/valgrind.h>
#else
#define RUNNING_ON_VALGRIND 0
#endif

extern char **environ;

/* coil__flags */
#define PROC_LIVE   1 /* spawned, not released */
#define PROC_REAPED 2 /* waited for: p->status holds its status */

/* The first and longest pause between two looks at a child without a pidfd
 * (and at a SIGKILLed one in coil_proc_release). */
#define POLL_FIRST (1 * COIL_MSEC)
#define POLL_MAX   (50 * COIL_MSEC)

/* Set once pidfd_open has answered ENOSYS (a kernel before 5.3): it is not
 * asked again. */
static int pidfd_missing;

static int sys_pidfd_open(pid_t pid) {
#ifdef SYS_pidfd_open
    /* COIL_PROC_PIDFD=0 forces the fallback for every child, so that the
     * suite tests it on a kernel that has pidfds. Valgrind 3.19 knows no
     * pidfd_open: it answers ENOSYS with a warning on stderr at each call,
     * so it is not asked (the fallback is what runs there). */
    const char *e = getenv("COIL_PROC_PIDFD");
    if ((e && strcmp(e, "0") == 0) || RUNNING_ON_VALGRIND ||
        __atomic_load_n(&pidfd_missing, __ATOMIC_RELAXED))
        return -ENOSYS;
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0 && errno == ENOSYS) __atomic_store_n(&pidfd_missing, 1, __ATOMIC_RELAXED);
    return fd < 0 ? -errno : fd;
#else
    (void)pid;
    return -ENOSYS;
#endif
}

/* ---- spawning ------------------------------------------------------------ */

/* What the child does between vfork and exec, prepared by the parent: the
 * child must not allocate (it runs in the parent's memory, on the caller's
 * stack, while the parent's other threads go on). */
struct spawn {
    const char *file;
    char *const *argv;
    char *const *envp;
    const char *dir;
    int src[3];        /* what becomes the child's fd i; -1: left as it is */
    bool err_from_out; /* stderr: a copy of the child's stdout */
    int report_fd;     /* the write end of the close-on-exec error pipe */
    /* Written by the child, read by the parent. */
    volatile int child_ran;
    volatile int child_errno;
};

__attribute__((noreturn)) static void child_fail(struct spawn *sp) {
    int e = errno;
    sp->child_errno = e;
    ssize_t w = write(sp->report_fd, &e, sizeof e);
    (void)w;
    _exit(127);
}

__attribute__((noreturn)) static void child_exec(struct spawn *sp) {
    sp->child_ran = 1;
    /* Every signal is blocked (by the parent, around vfork). A handler of
     * the parent must not run here, in the parent's memory: reset the
     * caught ones to their default before unblocking (exec would reset
     * them anyway, but only at the exec). The child's table of handlers is
     * its own (vfork shares memory, not dispositions). */
    for (int sig = 1; sig < NSIG; sig++) {
        struct sigaction sa;
        if (sigaction(sig, NULL, &sa) != 0) continue;
        if (sa.sa_handler == SIG_DFL || sa.sa_handler == SIG_IGN) continue;
        memset(&sa, 0, sizeof sa);
        sa.sa_handler = SIG_DFL;
        sigaction(sig, &sa, NULL);
    }
    for (int i = 0; i < 3; i++)
        if (sp->src[i] >= 0 && dup2(sp->src[i], i) < 0) child_fail(sp);
    if (sp->err_from_out && dup2(1, 2) < 0) child_fail(sp);
    if (sp->dir && chdir(sp->dir) != 0) child_fail(sp);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    if (strchr(sp->file, '/'))
        execve(sp->file, sp->argv, sp->envp);
    else
        execvpe(sp->file, sp->argv, sp->envp);
    child_fail(sp);
}

/* vfork in a function of its own, which the child never returns from: the
 * child runs on this stack, below this frame, until it execs or exits. */
__attribute__((noinline)) static pid_t start_child(struct spawn *sp) {
    pid_t pid = vfork();
    if (pid == 0) child_exec(sp);
    return pid;
}

/* fd moved (or duplicated) to a number >= 3, close-on-exec, so that the
 * child's dup2 onto 0, 1 and 2 never overwrites a source still to be
 * copied. *owned says whether the result is a new fd (to close). */
static int above_stdio(int fd, bool *owned) {
    *owned = false;
    if (fd >= 3) return fd;
    int d = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (d < 0) return -errno;
    *owned = true;
    return d;
}

/* A new fd for the child (a pipe's end, /dev/null), moved above 2 if need
 * be; -1 with *err set (and nothing left open) on failure. */
static int child_end(int fd, int *err) {
    bool moved;
    int d = above_stdio(fd, &moved);
    if (d < 0 || moved) close(fd);
    if (d < 0) *err = d;
    return d < 0 ? -1 : d;
}

static void close_quietly(int fd) {
    if (fd >= 0) close(fd);
}

int coil_proc_spawn(coil_proc *p, const coil_proc_opts *o) {
    if (!p) return -EINVAL;
    *p = (coil_proc){.pid = -1,
                     .stdin_fd = -1,
                     .stdout_fd = -1,
                     .stderr_fd = -1,
                     .status = -1,
                     .coil__pidfd = -1};
    if (!o || !o->argv || !o->argv[0]) return -EINVAL;
    for (int i = 0; i < 3; i++) {
        int m = o->stdio[i];
        if (m < COIL_PROC_INHERIT || m > COIL_PROC_STDOUT || (m == COIL_PROC_STDOUT && i != 2))
            return -EINVAL;
    }
    int saved = errno;
    struct spawn sp = {.file = o->file ? o->file : o->argv[0],
                       .argv = (char *const *)o->argv,
                       .envp = o->envp ? (char *const *)o->envp : environ,
                       .dir = o->dir,
                       .src = {-1, -1, -1},
                       .report_fd = -1};
    int mine[3] = {-1, -1, -1}; /* this process's pipe ends */
    bool owned[3] = {false, false, false};
    int report[2] = {-1, -1};
    int err = 0;
    for (int i = 0; i < 3 && !err; i++) {
        int fd = -1;
        switch (o->stdio[i]) {
        case COIL_PROC_PIPE: {
            int pf[2];
            if (pipe2(pf, O_CLOEXEC) != 0) {
                err = -errno;
                break;
            }
            /* stdin: the child reads pf[0]; stdout, stderr: it writes pf[1] */
            mine[i] = i == 0 ? pf[1] : pf[0];
            fd = child_end(i == 0 ? pf[0] : pf[1], &err);
            owned[i] = fd >= 0;
            int fl = fcntl(mine[i], F_GETFL);
            if (!err && (fl < 0 || fcntl(mine[i], F_SETFL, fl | O_NONBLOCK) != 0)) err = -errno;
            break;
        }
        case COIL_PROC_NULL: {
            int n = open("/dev/null", O_RDWR | O_CLOEXEC);
            if (n < 0) {
                err = -errno;
                break;
            }
            fd = child_end(n, &err);
            owned[i] = fd >= 0;
            break;
        }
        case COIL_PROC_FD:
            if (o->stdio_fd[i] < 0 || fcntl(o->stdio_fd[i], F_GETFD) < 0) {
                err = -EBADF;
                break;
            }
            fd = above_stdio(o->stdio_fd[i], &owned[i]);
            if (fd < 0) {
                err = fd;
                fd = -1;
            }
            break;
        case COIL_PROC_STDOUT: sp.err_from_out = true; break;
        default: break;
        }
        sp.src[i] = fd;
    }
    if (!err && pipe2(report, O_CLOEXEC) != 0) err = -errno;
    pid_t pid = -1;
    if (!err) {
        sp.report_fd = report[1];
        sigset_t all, old;
        sigfillset(&all);
        pthread_sigmask(SIG_SETMASK, &all, &old);
        pid = start_child(&sp);
        int vfork_errno = errno;
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        if (pid < 0) err = -vfork_errno;
    }
    close_quietly(report[1]);
    if (pid > 0) {
        int child_err = 0;
        if (sp.child_ran) {
            /* The child ran in this memory (a real vfork) and has exec'd or
             * exited by now. */
            child_err = sp.child_errno;
        } else {
            /* A vfork run as a fork (Valgrind, ThreadSanitizer): the pipe
             * says, at the child's exec (end of file) or failure. */
            int e;
            ssize_t n;
            while ((n = read(report[0], &e, sizeof e)) < 0 && errno == EINTR) {
            }
            if (n == (ssize_t)sizeof e) child_err = e;
        }
        if (child_err) {
            int st;
            while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
            }
            err = -child_err;
            pid = -1;
        }
    }
    close_quietly(report[0]);
    for (int i = 0; i < 3; i++)
        if (owned[i]) close_quietly(sp.src[i]);
    if (err) {
        for (int i = 0; i < 3; i++)
            close_quietly(mine[i]);
        errno = saved;
        return err;
    }
    p->pid = pid;
    p->stdin_fd = mine[0];
    p->stdout_fd = mine[1];
    p->stderr_fd = mine[2];
    p->coil__flags = PROC_LIVE;
    int pidfd = sys_pidfd_open(pid);
    if (pidfd >= 0) p->coil__pidfd = pidfd;
    /* These numbers name new files now: whatever a scheduler knew of them
     * is stale. */
    for (int i = 0; i < 3; i++)
        if (mine[i] >= 0) coil__fd_fresh(mine[i], COIL__FD_OTHER, false);
    if (pidfd >= 0) coil__fd_fresh(pidfd, COIL__FD_OTHER, false);
    errno = saved;
    return 0;
}

/* ---- waiting ------------------------------------------------------------- */

/* One look: 1 when reaped now (p->status set), 0 while it runs, or -errno. */
static int try_reap(coil_proc *p) {
    int st, saved = errno;
    pid_t r;
    while ((r = waitpid(p->pid, &st, WNOHANG)) < 0 && errno == EINTR) {
    }
    int res = r < 0 ? -errno : r == 0 ? 0 : 1;
    errno = saved;
    if (res == 1) {
        p->status = st;
        p->coil__flags |= PROC_REAPED;
    } else if (res == -ECHILD) {
        /* Reaped behind coil's back: the pid may name another process
         * soon; never signal it again. */
        p->coil__flags |= PROC_REAPED;
        p->status = -1;
    }
    return res;
}

int coil_proc_wait(coil_proc *p, int64_t deadline) {
    if (!p || !(p->coil__flags & PROC_LIVE)) return -EINVAL;
    if (p->coil__flags & PROC_REAPED) return p->status >= 0 ? p->status : -ECHILD;
    struct coil__tasklet *t;
    int err = coil__enter(&t);
    if (err) return err;
    int64_t pause = POLL_FIRST;
    for (;;) {
        int r = try_reap(p);
        if (r == 1) return p->status;
        if (r < 0) return r;
        if (coil__deadline_passed(deadline)) return -ETIMEDOUT;
        if (p->coil__pidfd >= 0) {
            /* Readable once the child has ended (Linux 5.3). */
            struct pollfd pfd = {.fd = p->coil__pidfd, .events = POLLIN};
            err = coil__wait_fds(&pfd, 1, deadline);
            if (err == -ETIMEDOUT) {
                r = try_reap(p); /* it may have ended just then */
                return r == 1 ? p->status : r < 0 ? r : -ETIMEDOUT;
            }
            if (err) return err;
        } else {
            /* No pidfd: look again after a pause that grows (see coil.h). */
            int64_t until = coil_now() + pause;
            if (deadline >= 0 && deadline < until) until = deadline;
            err = coil_sleep_until(until);
            if (err) return err;
            if (pause < POLL_MAX) pause = pause * 2 > POLL_MAX ? POLL_MAX : pause * 2;
        }
    }
}

/* ---- signals and release --------------------------------------------------- */

int coil_proc_kill(coil_proc *p, int sig) {
    if (!p || !(p->coil__flags & PROC_LIVE)) return -EINVAL;
    if (p->coil__flags & PROC_REAPED) return -ESRCH;
    int saved = errno, r = -1;
#ifdef SYS_pidfd_send_signal
    if (p->coil__pidfd >= 0) {
        r = (int)syscall(SYS_pidfd_send_signal, p->coil__pidfd, sig, NULL, 0);
        if (r < 0 && errno == ENOSYS) r = kill(p->pid, sig); /* Linux 5.3 has both */
    } else
#endif
        r = kill(p->pid, sig); /* not reaped: the pid is still the child's */
    r = r < 0 ? -errno : 0;
    errno = saved;
    return r;
}

/* A pause that a kill does not cut short: the reaping wait of release is the
 * wait of cleanup (as coil_join's), and the child it waits for has been sent
 * SIGKILL. coil__interrupt disarms the timer before it asks: a kill arms it
 * again and leaves the tasklet parked; the timer ends the pause. */
static bool reap_pause_unwait(struct coil__tasklet *t, int err) {
    if (err == -ETIMEDOUT) return true;
    coil__timer_arm(&t->sched->timers, &t->timer, t->timer.deadline);
    return false;
}

static void reap_pause(struct coil__tasklet *t, int64_t ns) {
    coil__park(t, COIL__WAIT_SLEEP, NULL, 0, reap_pause_unwait, coil_now() + ns);
}

int coil_proc_release(coil_proc *p) {
    if (!p) return -EINVAL;
    if (!(p->coil__flags & PROC_LIVE)) return 0;
    int *fds[3] = {&p->stdin_fd, &p->stdout_fd, &p->stderr_fd};
    for (int i = 0; i < 3; i++)
        if (*fds[i] >= 0) {
            coil_close(*fds[i]);
            *fds[i] = -1;
        }
    if (!(p->coil__flags & PROC_REAPED)) {
        coil_proc_kill(p, SIGKILL);
        struct coil__tasklet *t = coil__self();
        int64_t pause = POLL_FIRST / 4;
        while (!(p->coil__flags & PROC_REAPED)) {
            if (try_reap(p) != 0) break;
            if (t) {
                reap_pause(t, pause);
                if (pause < POLL_MAX) pause *= 2;
            } else {
                /* Outside a tasklet the thread may block: the child has been
                 * sent SIGKILL. */
                int st, saved = errno;
                while (waitpid(p->pid, &st, 0) < 0 && errno == EINTR) {
                }
                errno = saved;
                p->coil__flags |= PROC_REAPED;
            }
        }
    }
    if (p->coil__pidfd >= 0) coil_close(p->coil__pidfd);
    p->coil__pidfd = -1;
    p->coil__flags = 0;
    return 0;
}
