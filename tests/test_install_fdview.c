// coil-test: link-shared
/* coil_install(): diverted recv and send remember the program's O_NONBLOCK
 * and the socket's SO_RCVTIMEO/SO_SNDTIMEO per fd (src/unix/wrap.c,
 * user_view), and forget them when something may have changed them. This
 * file links libcoil.so (the marker above), so its own calls are diverted.
 * Covered, each after a recv or send that made coil remember the fd:
 *  - fcntl(F_SETFL, O_NONBLOCK) and ioctl(FIONBIO): the next recv answers
 *    EAGAIN at once; made blocking again, it parks until data comes;
 *  - setsockopt(SO_RCVTIMEO) and (SO_SNDTIMEO): the next recv (send to a
 *    full socket) ends with EAGAIN after that time;
 *  - a timeout cleared behind coil's back (the setsockopt system call made
 *    with syscall(2)): the remembered one does not end the wait;
 *  - fclose, whose close happens inside libc, then a non-blocking socket
 *    made behind coil's back (syscall(2)) that gets the same number: recv
 *    there answers EAGAIN at once;
 *  - the same with close on another thread;
 *  - a send to a peer that has gone, on a blocking and on an O_NONBLOCK
 *    socket: EPIPE, never SIGPIPE (in a child process, SIGPIPE at its
 *    default action, which would kill it).
 * The calls are made through tests/plugin/calls.c, a shared object whose GOT
 * coil_install rewrites in every build (the sanitizers' too).
 */
#define _GNU_SOURCE
// coil-test: tsan (a plain thread closes an fd the scheduler's thread remembers)
#include "coil_test.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "plugin/calls.h" /* after the system headers: it renames their calls */

#define MS(n) ((int64_t)(n)*COIL_MSEC)

struct ctx {
    int sv[2];
    int step;
    bool bad;
};

/* Sends one byte on sv[1] after ms. */
struct later {
    int fd;
    int ms;
};

static void send_later(void *arg) {
    struct later *l = arg;
    coil_sleep(MS(l->ms));
    if (send(l->fd, "z", 1, 0) != 1) coil_test_failure()->count++;
}

/* recv on fd: the result, errno and the time it took (ms). */
static ssize_t timed_recv(int fd, int *err, int64_t *ms) {
    char c;
    int64_t t0 = coil_now();
    errno = 0;
    ssize_t r = recv(fd, &c, 1, 0);
    *err = errno;
    *ms = (coil_now() - t0) / COIL_MSEC;
    return r;
}

/* Makes coil remember fd: a recv that parks until a byte comes. */
static void remember(int fd, int peer) {
    struct later l = {peer, 20};
    coil_id id = coil_spawn(send_later, &l, NULL);
    char c;
    EXPECT_EQ(recv(fd, &c, 1, 0), 1);
    coil_join(id, COIL_FOREVER);
}

/* ---- O_NONBLOCK set and cleared ------------------------------------------------ */

static void nonblock_main(void *arg) {
    struct ctx *x = arg;
    int err;
    int64_t ms;
    remember(x->sv[0], x->sv[1]);
    int fl = fcntl(x->sv[0], F_GETFL);
    /* fcntl */
    EXPECT_EQ(fcntl(x->sv[0], F_SETFL, fl | O_NONBLOCK), 0);
    EXPECT_EQ(timed_recv(x->sv[0], &err, &ms), -1);
    EXPECT_EQ(err, EAGAIN);
    EXPECT(ms < 100);
    EXPECT_EQ(fcntl(x->sv[0], F_SETFL, fl), 0);
    struct later l = {x->sv[1], 50};
    coil_id id = coil_spawn(send_later, &l, NULL);
    EXPECT_EQ(timed_recv(x->sv[0], &err, &ms), 1); /* parks again */
    EXPECT(ms >= 40);
    coil_join(id, COIL_FOREVER);
    /* ioctl */
    int on = 1, off = 0;
    EXPECT_EQ(ioctl(x->sv[0], FIONBIO, &on), 0);
    EXPECT_EQ(timed_recv(x->sv[0], &err, &ms), -1);
    EXPECT_EQ(err, EAGAIN);
    EXPECT_EQ(ioctl(x->sv[0], FIONBIO, &off), 0);
    id = coil_spawn(send_later, &l, NULL);
    EXPECT_EQ(timed_recv(x->sv[0], &err, &ms), 1);
    EXPECT(ms >= 40);
    coil_join(id, COIL_FOREVER);
    /* send on an fd made O_NONBLOCK, its buffer full: EAGAIN at once */
    char buf[4096] = {0};
    EXPECT_EQ(send(x->sv[1], "a", 1, 0), 1);
    EXPECT_EQ(fcntl(x->sv[1], F_SETFL, fcntl(x->sv[1], F_GETFL) | O_NONBLOCK), 0);
    ssize_t r;
    while ((r = send(x->sv[1], buf, sizeof buf, 0)) > 0) {
    }
    EXPECT_EQ(r, -1);
    EXPECT_EQ(errno, EAGAIN);
}

static void test_nonblock_changes_are_seen(void **state) {
    (void)state;
    struct ctx x = {0};
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, x.sv), 0);
    COIL_RUN_CHECKED(nonblock_main, &x);
    close(x.sv[0]);
    close(x.sv[1]);
}

/* ---- timeouts set, and cleared behind coil's back --------------------------------- */

static void timeouts_main(void *arg) {
    struct ctx *x = arg;
    int err;
    int64_t ms;
    remember(x->sv[0], x->sv[1]);
    struct timeval tv = {0, 60 * 1000};
    EXPECT_EQ(setsockopt(x->sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    EXPECT_EQ(timed_recv(x->sv[0], &err, &ms), -1);
    EXPECT_EQ(err, EAGAIN);
    EXPECT(ms >= 50);
    /* cleared with the system call itself: coil still remembers 60 ms, and
     * must not end the wait by it */
    struct timeval zero = {0, 0};
    EXPECT_EQ(syscall(SYS_setsockopt, x->sv[0], SOL_SOCKET, SO_RCVTIMEO, &zero, sizeof zero), 0);
    struct later l = {x->sv[1], 200};
    coil_id id = coil_spawn(send_later, &l, NULL);
    EXPECT_EQ(timed_recv(x->sv[0], &err, &ms), 1);
    EXPECT(ms >= 150);
    coil_join(id, COIL_FOREVER);
    /* SO_SNDTIMEO on a full socket */
    char c = 0;
    EXPECT_EQ(send(x->sv[1], &c, 1, 0), 1); /* remembered */
    EXPECT_EQ(recv(x->sv[0], &c, 1, 0), 1);
    EXPECT_EQ(setsockopt(x->sv[1], SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv), 0);
    static char big[1 << 20];
    int64_t t0 = coil_now();
    errno = 0;
    ssize_t r = send(x->sv[1], big, sizeof big, 0);
    int e = errno;
    /* the part that fitted, or EAGAIN if none did */
    EXPECT(r > 0 || (r == -1 && e == EAGAIN));
    EXPECT(r < (ssize_t)sizeof big);
    EXPECT(coil_now() - t0 >= MS(50));
}

static void test_timeout_changes_are_seen(void **state) {
    (void)state;
    struct ctx x = {0};
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, x.sv), 0);
    COIL_RUN_CHECKED(timeouts_main, &x);
    close(x.sv[0]);
    close(x.sv[1]);
}

/* ---- a number closed inside libc, reused behind coil's back ------------------------ */

/* A non-blocking socket pair made with the system call (no wrapper sees it). */
static int raw_nonblocking_pair(int sv[2]) {
    return (int)syscall(SYS_socketpair, AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv);
}

static void fclose_main(void *arg) {
    struct ctx *x = arg;
    int err;
    int64_t ms;
    remember(x->sv[0], x->sv[1]); /* blocking, remembered */
    int n = x->sv[0];
    FILE *f = fdopen(n, "r");
    if (!EXPECT(f != NULL)) return;
    EXPECT_EQ(fclose(f), 0); /* closes n inside libc */
    int nv[2];
    if (!EXPECT_EQ(raw_nonblocking_pair(nv), 0)) return;
    EXPECT_EQ(nv[0], n);
    EXPECT_EQ(timed_recv(n, &err, &ms), -1);
    EXPECT_EQ(err, EAGAIN);
    EXPECT(ms < 100);
    x->sv[0] = nv[0];
    close(nv[1]);
}

static void test_fclose_then_reuse(void **state) {
    (void)state;
    struct ctx x = {0};
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, x.sv), 0);
    COIL_RUN_CHECKED(fclose_main, &x);
    close(x.sv[0]);
    close(x.sv[1]);
}

static void *close_on_thread(void *arg) {
    close(*(int *)arg);
    return NULL;
}

static void thread_close_main(void *arg) {
    struct ctx *x = arg;
    int err;
    int64_t ms;
    remember(x->sv[0], x->sv[1]);
    int n = x->sv[0];
    pthread_t th;
    if (!EXPECT_EQ(pthread_create(&th, NULL, close_on_thread, &n), 0)) return;
    pthread_join(th, NULL);
    int nv[2];
    if (!EXPECT_EQ(raw_nonblocking_pair(nv), 0)) return;
    EXPECT_EQ(nv[0], n);
    EXPECT_EQ(timed_recv(n, &err, &ms), -1);
    EXPECT_EQ(err, EAGAIN);
    EXPECT(ms < 100);
    x->sv[0] = nv[0];
    close(nv[1]);
}

static void test_close_on_another_thread_then_reuse(void **state) {
    (void)state;
    struct ctx x = {0};
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, x.sv), 0);
    COIL_RUN_CHECKED(thread_close_main, &x);
    close(x.sv[0]);
    close(x.sv[1]);
}

/* ---- EPIPE, never SIGPIPE ------------------------------------------------------------ */

static int epipe_errs[2];

static void epipe_main(void *arg) {
    (void)arg;
    for (int nb = 0; nb < 2; nb++) {
        int sv[2];
        if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) != 0) return;
        char c = 'q';
        send(sv[0], &c, 1, 0); /* remembered */
        if (nb) fcntl(sv[0], F_SETFL, fcntl(sv[0], F_GETFL) | O_NONBLOCK);
        close(sv[1]);
        errno = 0;
        ssize_t r = send(sv[0], &c, 1, 0);
        epipe_errs[nb] = r == -1 ? errno : 0;
        close(sv[0]);
    }
}

static void test_send_to_gone_peer_is_epipe(void **state) {
    (void)state;
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        signal(SIGPIPE, SIG_DFL);
        if (coil_run(epipe_main, NULL) != 0) _exit(2);
        _exit(epipe_errs[0] == EPIPE && epipe_errs[1] == EPIPE ? 0 : 3);
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    if (WIFSIGNALED(status)) fail_msg("the child died of signal %d", WTERMSIG(status));
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static int group_setup(void **state) {
    (void)state;
    return coil_install() == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_nonblock_changes_are_seen),
        cmocka_unit_test(test_timeout_changes_are_seen),
        cmocka_unit_test(test_fclose_then_reuse),
        cmocka_unit_test(test_close_on_another_thread_then_reuse),
        cmocka_unit_test(test_send_to_gone_peer_is_epipe),
    };
    coil_test_apply_filter();
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
