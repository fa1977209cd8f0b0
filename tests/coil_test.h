/* Shared helpers for coil's tests (cmocka). Each tests/test_*.c is its own
 * executable, registered with ctest by tests/CMakeLists.txt. */
#ifndef COIL_TEST_H
#define COIL_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>
#ifndef _WIN32
#include <dirent.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/wait.h>
#endif

#ifdef COIL_COVERAGE
/* make coverage: gcc writes its counters at exit(3); a child that leaves by
 * _exit would take what it ran with it, so it writes them first. */
void __gcov_dump(void);
#define _exit(code) (__gcov_dump(), _exit(code))
#endif

#include <cmocka.h>

#include <coil.h>

/* Set by the ctest registration of the Valgrind run: scale loops down there. */
static inline bool coil_test_under_valgrind(void) {
    return getenv("COIL_UNDER_VALGRIND") != NULL;
}

/* Set by the ctest registration of the ThreadSanitizer stage (label tsan):
 * everything runs 5-15 times slower there. */
static inline bool coil_test_under_tsan(void) {
    return getenv("COIL_UNDER_TSAN") != NULL;
}

/* Built with AddressSanitizer (gcc's flag, or clang's feature test): 1 or 0. */
#if defined(__SANITIZE_ADDRESS__)
#define COIL_TEST_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define COIL_TEST_ASAN 1
#endif
#endif
#ifndef COIL_TEST_ASAN
#define COIL_TEST_ASAN 0
#endif

/* Set by the ctest registration of a cross build run under qemu-user. */
static inline bool coil_test_under_qemu(void) {
    return getenv("COIL_UNDER_QEMU") != NULL;
}

/* Runs fn(arg) as the main tasklet and asserts that coil_run returned 0. */
#define COIL_RUN_OK(fn, arg) assert_int_equal(coil_run((fn), (arg)), 0)

/* ---- checks inside tasklets ---------------------------------------------- */

/* cmocka's assertions longjmp, which must not leave a tasklet's stack: code
 * running in tasklets records failed checks with EXPECT / EXPECT_EQ (the
 * first one is kept, the first few are printed), and COIL_RUN_CHECKED asserts
 * after coil_run has returned. Both macros are expressions: true when the
 * check held, so a tasklet can leave early with `if (!EXPECT(...)) return;`. */
struct coil_test_failure {
    const char *file;
    int line;
    int count;
    char text[512];
};

static inline struct coil_test_failure *coil_test_failure(void) {
    static struct coil_test_failure failure;
    return &failure;
}

static inline bool coil_test_expect_eq(long long a, long long b, const char *as, const char *bs,
                                       const char *file, int line) {
    if (a == b) return true;
    struct coil_test_failure *f = coil_test_failure();
    if (f->count++ == 0) {
        f->file = file;
        f->line = line;
        snprintf(f->text, sizeof f->text, "%s == %s: %lld != %lld", as, bs, a, b);
    }
    if (f->count <= 10)
        fprintf(stderr, "check failed at %s:%d: %s == %s: %lld != %lld\n", file, line, as, bs, a,
                b);
    return false;
}

#define EXPECT_EQ(a, b)                                                                            \
    coil_test_expect_eq((long long)(a), (long long)(b), #a, #b, __FILE__, __LINE__)
#define EXPECT(c) coil_test_expect_eq(!!(c), 1, #c, "true", __FILE__, __LINE__)

/* Forgets earlier failures (cmocka runs the tests of a file in one process). */
static inline void coil_test_reset_failures(void) {
    memset(coil_test_failure(), 0, sizeof(struct coil_test_failure));
}

/* Fails the cmocka test if a check failed since coil_test_reset_failures. */
static inline void coil_test_assert_no_failure(void) {
    struct coil_test_failure *f = coil_test_failure();
    if (f->count)
        fail_msg("%d check(s) failed; the first at %s:%d: %s", f->count, f->file, f->line, f->text);
}

/* Runs fn(arg) as the main tasklet; asserts that coil_run returned 0 and that
 * every check made meanwhile held. */
#define COIL_RUN_CHECKED(fn, arg)                                                                  \
    do {                                                                                           \
        coil_test_reset_failures();                                                                \
        int run_rc_ = coil_run((fn), (arg));                                                       \
        coil_test_assert_no_failure();                                                             \
        assert_int_equal(run_rc_, 0);                                                              \
    } while (0)

/* Windows (mingw-w64, run under Wine) has no fork, pipes of this kind or
 * POSIX sockets: the helpers below are POSIX only, and the Windows tests
 * (tests/win/) bring what they need. */
#ifndef _WIN32

/* ---- child processes: crashes, fatal signals, what they print ---------- */

/* A forked child whose stderr the test reads. */
struct coil_test_child {
    pid_t pid;
    int err_fd; /* read end of the child's stderr pipe; -1 once at EOF */
    int status; /* waitpid() status, once reaped */
    char *err;  /* everything read from the child's stderr, NUL-terminated */
    size_t err_len;
};

static inline int64_t coil_test_ms_since(const struct timespec *t0) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)(t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

/* Forks a child that runs fn(arg) with its stderr on a pipe and then leaves
 * with _exit(0) (fn may _exit with another code, or die). The child never
 * returns into cmocka, and fn must not use cmocka's assertions (a failing one
 * would jump back into the parent's copy of the test runner): it reports
 * through its exit code and stderr. Signal dispositions are inherited as they
 * are (cmocka's handlers included), so a test that needs the default action of
 * a signal in the child resets it in fn. */
static inline void coil_test_child_start(struct coil_test_child *c, void (*fn)(void *), void *arg) {
    int fds[2];
    memset(c, 0, sizeof *c);
    c->err_fd = -1;
    assert_int_equal(pipe(fds), 0);
    fflush(stdout);
    fflush(stderr);
    c->pid = fork();
    assert_true(c->pid >= 0);
    if (c->pid == 0) {
        struct rlimit no_core = {0, 0};
        setrlimit(RLIMIT_CORE, &no_core); /* crashing is the point; no core files */
        close(fds[0]);
        dup2(fds[1], STDERR_FILENO);
        close(fds[1]);
        fn(arg);
        fflush(stderr);
        _exit(0);
    }
    close(fds[1]);
    c->err_fd = fds[0];
    c->err = calloc(1, 1);
    assert_non_null(c->err);
}

/* Reads the child's stderr until a whole line (up to its newline) containing
 * needle has arrived (needle NULL: until EOF) or timeout_ms have passed.
 * Returns true if it got there. */
static inline bool coil_test_child_read(struct coil_test_child *c, const char *needle,
                                        int timeout_ms) {
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (;;) {
        const char *hit = needle ? strstr(c->err, needle) : NULL;
        if (hit && strchr(hit, '\n')) return true;
        if (c->err_fd < 0) return needle == NULL;
        int64_t left = timeout_ms - coil_test_ms_since(&t0);
        if (left <= 0) return false;
        struct pollfd pfd = {.fd = c->err_fd, .events = POLLIN};
        int n = poll(&pfd, 1, (int)left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) continue;
        char buf[4096];
        ssize_t got = read(c->err_fd, buf, sizeof buf);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            close(c->err_fd);
            c->err_fd = -1;
            continue;
        }
        char *grown = realloc(c->err, c->err_len + (size_t)got + 1);
        assert_non_null(grown);
        c->err = grown;
        memcpy(c->err + c->err_len, buf, (size_t)got);
        c->err_len += (size_t)got;
        c->err[c->err_len] = '\0';
    }
}

/* How many times needle occurs in text. */
static inline size_t coil_test_count(const char *text, const char *needle) {
    size_t n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* Reads the child's stderr until needle has come n times (at most
 * timeout_ms); whether it has. Lines of a server with several threads come
 * in any order: wait for each kind to be complete, not for one line. */
static inline bool coil_test_child_read_count(struct coil_test_child *c, const char *needle,
                                              size_t n, int timeout_ms) {
    for (int waited = 0; coil_test_count(c->err, needle) < n && waited < timeout_ms; waited += 50)
        coil_test_child_read(c, "\x01", 50); /* a needle never printed: reads for 50 ms */
    return coil_test_count(c->err, needle) >= n;
}

/* Reads the child's stderr to EOF and reaps it; a child still running after
 * timeout_ms is killed with SIGKILL first (so a hang shows as SIGKILL). */
static inline void coil_test_child_finish(struct coil_test_child *c, int timeout_ms) {
    if (!coil_test_child_read(c, NULL, timeout_ms)) kill(c->pid, SIGKILL);
    while (waitpid(c->pid, &c->status, 0) < 0)
        assert_int_equal(errno, EINTR);
    coil_test_child_read(c, NULL, 1000);
    if (c->err_fd >= 0) close(c->err_fd);
    c->err_fd = -1;
}

static inline void coil_test_child_free(struct coil_test_child *c) {
    free(c->err);
    c->err = NULL;
}

/* A coil_test_child_start fn: execs argv (NULL-terminated) with stdout and
 * stderr both on the child's pipe, SIGINT and SIGTERM at their default
 * action and unblocked (coil_run catches them only then; a shell that starts
 * the tests in the background leaves SIGINT ignored, and exec keeps that). */
static inline void coil_test_exec_child(void *arg) {
    char **argv = arg;
    dup2(STDERR_FILENO, STDOUT_FILENO);
    signal(SIGINT, SIG_DFL);
    signal(SIGTERM, SIG_DFL);
    sigset_t none;
    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    execv(argv[0], argv);
    fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

/* Starts fn(arg) in a child, sends it sig once a line containing marker has
 * come on its stderr (within 20 s), and reaps it (within 20 s; see
 * coil_test_child_finish). Returns whether the marker came. */
static inline bool coil_test_child_signal_at(struct coil_test_child *c, void (*fn)(void *),
                                             void *arg, const char *marker, int sig) {
    coil_test_child_start(c, fn, arg);
    bool came = coil_test_child_read(c, marker, 20000);
    if (came) kill(c->pid, sig);
    coil_test_child_finish(c, 20000);
    return came;
}

/* Runs fn(arg) in a child to its end (at most timeout_ms); see above. */
static inline void coil_test_fork_run(struct coil_test_child *c, void (*fn)(void *), void *arg,
                                      int timeout_ms) {
    coil_test_child_start(c, fn, arg);
    coil_test_child_finish(c, timeout_ms);
}

static inline bool coil_test_child_signaled(const struct coil_test_child *c, int sig) {
    return WIFSIGNALED(c->status) && WTERMSIG(c->status) == sig;
}

static inline bool coil_test_child_exited(const struct coil_test_child *c, int code) {
    return WIFEXITED(c->status) && WEXITSTATUS(c->status) == code;
}

/* Prints what a child left, for a failing assertion's context. */
static inline void coil_test_child_describe(const struct coil_test_child *c) {
    if (WIFEXITED(c->status))
        print_message("child exited with %d\n", WEXITSTATUS(c->status));
    else if (WIFSIGNALED(c->status))
        print_message("child died by signal %d\n", WTERMSIG(c->status));
    print_message("child stderr:\n%s\n", c->err ? c->err : "");
}

/* Runs fn(arg) in a child that must exit with 0 within limit_ms; otherwise
 * the case fails with `what` (and says whether the child hung and was
 * killed after the limit). */
static inline void coil_test_child_run(void (*fn)(void *), void *arg, int limit_ms,
                                       const char *what) {
    struct coil_test_child c;
    coil_test_fork_run(&c, fn, arg, limit_ms);
    if (!coil_test_child_exited(&c, 0)) {
        coil_test_child_describe(&c);
        bool hung = coil_test_child_signaled(&c, SIGKILL);
        coil_test_child_free(&c);
        fail_msg("%s%s", what, hung ? " (the child hung: killed after the time limit)" : "");
    }
    coil_test_child_free(&c);
}

/* How many fds this process has open (from /proc/self/fd, less the one the
 * count itself opens): tests compare it before and after. */
static inline int coil_test_open_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    if (!d) return -1;
    while (readdir(d))
        n++;
    closedir(d);
    return n - 3; /* ".", "..", and the directory's own fd */
}
#endif /* !_WIN32 */

/* ---- this process's stderr, captured ------------------------------------ */

struct coil_test_stderr {
    int saved_fd;
    FILE *tmp;
};

/* From here until coil_test_stderr_end, whatever goes to fd 2 is kept. */
static inline void coil_test_stderr_begin(struct coil_test_stderr *cap) {
    fflush(stderr);
    cap->tmp = tmpfile();
    assert_non_null(cap->tmp);
    cap->saved_fd = dup(STDERR_FILENO);
    assert_true(cap->saved_fd >= 0);
    assert_true(dup2(fileno(cap->tmp), STDERR_FILENO) >= 0);
}

/* Restores fd 2 and returns what was written meanwhile (malloc'd, NUL-terminated). */
static inline char *coil_test_stderr_end(struct coil_test_stderr *cap) {
    fflush(stderr);
    assert_true(dup2(cap->saved_fd, STDERR_FILENO) >= 0);
    close(cap->saved_fd);
    long len = ftell(cap->tmp);
    if (len < 0) len = 0;
    char *text = calloc(1, (size_t)len + 1);
    assert_non_null(text);
    rewind(cap->tmp);
    size_t got = fread(text, 1, (size_t)len, cap->tmp);
    text[got] = '\0';
    fclose(cap->tmp);
    return text;
}

/* ---- reading dumps ------------------------------------------------------ */

/* Copies into line (cap bytes) the first line of text that contains needle;
 * returns false (and an empty line) when there is none. */
static inline bool coil_test_find_line(const char *text, const char *needle, char *line,
                                       size_t cap) {
    const char *hit = strstr(text, needle);
    line[0] = '\0';
    if (!hit) return false;
    const char *start = hit;
    while (start > text && start[-1] != '\n')
        start--;
    const char *end = strchr(hit, '\n');
    size_t len = end ? (size_t)(end - start) : strlen(start);
    if (len >= cap) len = cap - 1;
    memcpy(line, start, len);
    line[len] = '\0';
    return true;
}

/* True when text contains the decimal number n standing alone (not as part
 * of a longer number). */
static inline bool coil_test_has_number(const char *text, long long n) {
    char num[32];
    snprintf(num, sizeof num, "%lld", n);
    size_t len = strlen(num);
    for (const char *p = text; (p = strstr(p, num)) != NULL; p++) {
        bool left = p == text || p[-1] < '0' || p[-1] > '9';
        bool right = p[len] < '0' || p[len] > '9';
        if (left && right) return true;
    }
    return false;
}

#endif

/* ======================================================================== */
/* Sockets, pipes and files: helpers of tests/test_net_*.c                  */
/* ======================================================================== */
/* (Appended after the guard above, so with a guard of its own.) */
#if !defined(COIL_TEST_NET_H) && !defined(_WIN32)
#define COIL_TEST_NET_H

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/socket.h>
#include <sys/un.h>

/* ---- sizes and time -------------------------------------------------------- */

/* native natively, valgrind under Valgrind. */
static inline size_t coil_test_scaled(size_t native, size_t valgrind) {
    return coil_test_under_valgrind() ? valgrind : native;
}

/* The byte count in environment variable name (a number with an optional
 * K, M or G suffix, powers of 1024), or dflt when it is unset or unreadable. */
static inline size_t coil_test_env_bytes(const char *name, size_t dflt) {
    const char *s = getenv(name);
    if (!s || !*s) return dflt;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (end == s) return dflt;
    switch (*end) {
    case 'k':
    case 'K': v <<= 10; break;
    case 'm':
    case 'M': v <<= 20; break;
    case 'g':
    case 'G': v <<= 30; break;
    default: break;
    }
    return (size_t)v;
}

/* A deadline ns from now. */
static inline int64_t coil_test_in(int64_t ns) {
    return coil_now() + ns;
}

/* Slack for "at once" and "did not wait" checks, generous enough for a
 * loaded machine (ctest -j); Valgrind is much slower. */
static inline int64_t coil_test_slack(void) {
    return coil_test_under_valgrind() ? 3 * COIL_SEC : 500 * COIL_MSEC;
}

/* ---- addresses (loopback only) ------------------------------------------- */

struct coil_test_addr {
    struct sockaddr_storage ss;
    socklen_t len;
};

#define COIL_TEST_SA(a) ((struct sockaddr *)&(a)->ss)

/* 127.0.0.1:port or [::1]:port. */
static inline void coil_test_loopback(struct coil_test_addr *a, int family, uint16_t port) {
    memset(a, 0, sizeof *a);
    if (family == AF_INET6) {
        struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)&a->ss;
        s6->sin6_family = AF_INET6;
        s6->sin6_addr = in6addr_loopback;
        s6->sin6_port = htons(port);
        a->len = sizeof *s6;
    } else {
        struct sockaddr_in *s4 = (struct sockaddr_in *)&a->ss;
        s4->sin_family = AF_INET;
        s4->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        s4->sin_port = htons(port);
        a->len = sizeof *s4;
    }
}

/* A plain blocking TCP connection to 127.0.0.1:port, outside coil (a test's
 * own client), whose receives fail after timeout_s seconds instead of hanging
 * the test if a response never comes. */
static inline int coil_test_connect_loopback(int port, int timeout_s) {
    struct coil_test_addr a;
    coil_test_loopback(&a, AF_INET, (uint16_t)port);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(connect(fd, COIL_TEST_SA(&a), a.len), 0);
    struct timeval tv = {.tv_sec = timeout_s};
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    return fd;
}

static inline uint16_t coil_test_port(const struct coil_test_addr *a) {
    if (a->ss.ss_family == AF_INET6) return ntohs(((const struct sockaddr_in6 *)&a->ss)->sin6_port);
    return ntohs(((const struct sockaddr_in *)&a->ss)->sin_port);
}

/* True when a is 127.0.0.1 or ::1 (any port). */
static inline bool coil_test_is_loopback(const struct coil_test_addr *a) {
    if (a->ss.ss_family == AF_INET6)
        return a->len == sizeof(struct sockaddr_in6) &&
               IN6_IS_ADDR_LOOPBACK(&((const struct sockaddr_in6 *)&a->ss)->sin6_addr);
    return a->ss.ss_family == AF_INET && a->len == sizeof(struct sockaddr_in) &&
           ((const struct sockaddr_in *)&a->ss)->sin_addr.s_addr == htonl(INADDR_LOOPBACK);
}

static inline int coil_test_sockname(int fd, struct coil_test_addr *a) {
    memset(a, 0, sizeof *a);
    a->len = sizeof a->ss;
    return getsockname(fd, COIL_TEST_SA(a), &a->len) == 0 ? 0 : -errno;
}

static inline int coil_test_peername(int fd, struct coil_test_addr *a) {
    memset(a, 0, sizeof *a);
    a->len = sizeof a->ss;
    return getpeername(fd, COIL_TEST_SA(a), &a->len) == 0 ? 0 : -errno;
}

/* True when two addresses are the same (family, address and port). */
static inline bool coil_test_same_addr(const struct coil_test_addr *a,
                                       const struct coil_test_addr *b) {
    if (a->len != b->len || a->ss.ss_family != b->ss.ss_family) return false;
    if (a->ss.ss_family == AF_INET6) {
        const struct sockaddr_in6 *x = (const void *)&a->ss, *y = (const void *)&b->ss;
        return x->sin6_port == y->sin6_port &&
               memcmp(&x->sin6_addr, &y->sin6_addr, sizeof x->sin6_addr) == 0;
    }
    if (a->ss.ss_family == AF_INET) {
        const struct sockaddr_in *x = (const void *)&a->ss, *y = (const void *)&b->ss;
        return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
    }
    return memcmp(&a->ss, &b->ss, a->len) == 0;
}

/* ---- fds made with plain system calls (callable anywhere) ---------------- */

/* A socket of type bound to the loopback address of family on an ephemeral
 * port, listening with backlog unless backlog < 0 (or type is not a stream);
 * *bound gets its address. Returns the fd or -errno. */
static inline int coil_test_raw_bound(int family, int type, int backlog,
                                      struct coil_test_addr *bound) {
    struct coil_test_addr a;
    coil_test_loopback(&a, family, 0);
    int fd = socket(family, type | SOCK_CLOEXEC, 0);
    if (fd < 0) return -errno;
    if (bind(fd, COIL_TEST_SA(&a), a.len) != 0 ||
        (backlog >= 0 && type == SOCK_STREAM && listen(fd, backlog) != 0) ||
        coil_test_sockname(fd, bound) != 0) {
        int err = errno;
        close(fd);
        return -err;
    }
    return fd;
}

/* True when this machine has IPv6 loopback (::1 can be bound). */
static inline bool coil_test_have_ipv6(void) {
    struct coil_test_addr a;
    int fd = coil_test_raw_bound(AF_INET6, SOCK_STREAM, -1, &a);
    if (fd < 0) return false;
    close(fd);
    return true;
}

/* A connected TCP pair over loopback of family, made with blocking system
 * calls (loopback connects complete at once). *client and *server are
 * CLOEXEC and blocking. Returns 0 or -errno. */
static inline int coil_test_raw_tcp_pair(int family, int *client, int *server) {
    struct coil_test_addr a;
    int l = coil_test_raw_bound(family, SOCK_STREAM, 1, &a);
    if (l < 0) return l;
    int c = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int err = 0;
    if (c < 0 || connect(c, COIL_TEST_SA(&a), a.len) != 0) err = -errno;
    int s = err ? -1 : accept(l, NULL, NULL);
    if (!err && (s < 0 || fcntl(s, F_SETFD, FD_CLOEXEC) != 0)) err = -errno;
    close(l);
    if (err) {
        if (c >= 0) close(c);
        return err;
    }
    *client = c;
    *server = s;
    return 0;
}

static inline int coil_test_set_nonblock(int fd, bool on) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0) return -errno;
    fl = on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK;
    return fcntl(fd, F_SETFL, fl) == 0 ? 0 : -errno;
}

static inline int coil_test_setsockopt_int(int fd, int level, int name, int value) {
    return setsockopt(fd, level, name, &value, sizeof value) == 0 ? 0 : -errno;
}

/* Fills fd's send buffer (a stream socket whose peer does not read) until the
 * kernel takes nothing more, even after the peer's window has closed and its
 * delayed acknowledgements have come (300 ms without progress). Returns the
 * number of bytes written. fd's blocking mode is left as it was. */
static inline size_t coil_test_fill_socket(int fd) {
    static const char junk[16384];
    size_t total = 0;
    for (int idle = 0; idle < 6;) {
        ssize_t n = send(fd, junk, sizeof junk, MSG_DONTWAIT | MSG_NOSIGNAL);
        if (n > 0) {
            total += (size_t)n;
            idle = 0;
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK) break;
        struct timespec ts = {0, 50 * 1000 * 1000};
        nanosleep(&ts, NULL); /* let the peer acknowledge and shrink its window */
        idle++;
    }
    return total;
}

/* Fills a pipe until a write would block; returns the number of bytes. The
 * fd's blocking mode is left as it was. */
static inline size_t coil_test_fill_pipe(int wfd) {
    static const char junk[4096];
    int fl = fcntl(wfd, F_GETFL);
    fcntl(wfd, F_SETFL, fl | O_NONBLOCK);
    size_t total = 0;
    for (;;) {
        ssize_t n = write(wfd, junk, sizeof junk);
        if (n <= 0) {
            n = write(wfd, junk, 1); /* the last partial page */
            if (n <= 0) break;
        }
        total += (size_t)n;
    }
    fcntl(wfd, F_SETFL, fl);
    return total;
}

/* Reads (without blocking) whatever fd holds now; returns the byte count.
 * If out is not NULL, the first cap bytes read are copied there. */
static inline size_t coil_test_drain(int fd, void *out, size_t cap) {
    char buf[16384];
    size_t total = 0;
    int fl = fcntl(fd, F_GETFL);
    fcntl(fd, F_SETFL, fl | O_NONBLOCK);
    for (;;) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0) break;
        if (out && total < cap)
            memcpy((char *)out + total, buf, (size_t)n < cap - total ? (size_t)n : cap - total);
        total += (size_t)n;
    }
    fcntl(fd, F_SETFL, fl);
    return total;
}

/* A TCP listener on 127.0.0.1 whose accept queue is full: it listens with a
 * backlog of 0 and is never accepted from, and connections are made to it
 * until one is left hanging (its SYN dropped). A connect to *a then waits
 * until its deadline. The fillers (fds to close afterwards) go to fillers
 * (at most max), their count to *n. Returns the listener's fd or -errno
 * (-EAGAIN if no connection was left hanging). Only loopback traffic. */
static inline int coil_test_full_backlog_listener(struct coil_test_addr *a, int *fillers, int max,
                                                  int *n) {
    *n = 0;
    int l = coil_test_raw_bound(AF_INET, SOCK_STREAM, 0, a);
    if (l < 0) return l;
    while (*n < max) {
        int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (c < 0) break;
        fillers[(*n)++] = c;
        if (connect(c, COIL_TEST_SA(a), a->len) == 0) continue;
        if (errno != EINPROGRESS) break;
        struct pollfd p = {.fd = c, .events = POLLOUT};
        if (poll(&p, 1, 250) == 0) return l; /* hanging: the queue is full */
    }
    for (int i = 0; i < *n; i++)
        close(fillers[i]);
    *n = 0;
    close(l);
    return -EAGAIN;
}

/* Raises RLIMIT_NOFILE to at least want (the hard limit too, when allowed).
 * Returns true when the soft limit is now at least want. */
static inline bool coil_test_raise_nofile(rlim_t want) {
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return false;
    if (rl.rlim_cur >= want) return true;
    struct rlimit up = {want, rl.rlim_max >= want ? rl.rlim_max : want};
    if (setrlimit(RLIMIT_NOFILE, &up) == 0) return true;
    up.rlim_cur = up.rlim_max = rl.rlim_max;
    return setrlimit(RLIMIT_NOFILE, &up) == 0 && rl.rlim_max >= want;
}

/* ---- data whose every byte is known ------------------------------------- */

static inline uint64_t coil_test_mix64(uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/* The byte at stream offset off of the stream named seed. */
static inline uint8_t coil_test_pattern_byte(uint64_t seed, uint64_t off) {
    return (uint8_t)(coil_test_mix64((off >> 3) ^ (seed << 40)) >> ((off & 7) * 8));
}

/* Fills buf with bytes off .. off + len - 1 of stream seed. */
static inline void coil_test_pattern_fill(void *buf, size_t len, uint64_t seed, uint64_t off) {
    uint8_t *p = buf;
    size_t i = 0;
    for (; i < len && ((off + i) & 7); i++)
        p[i] = coil_test_pattern_byte(seed, off + i);
    for (; i + 8 <= len; i += 8) {
        uint64_t w = coil_test_mix64(((off + i) >> 3) ^ (seed << 40));
        memcpy(p + i, &w, 8); /* little-endian byte order assumed by pattern_byte */
    }
    for (; i < len; i++)
        p[i] = coil_test_pattern_byte(seed, off + i);
}

/* The index of the first byte of buf that is not byte off + index of stream
 * seed, or len if all are. */
static inline size_t coil_test_pattern_check(const void *buf, size_t len, uint64_t seed,
                                             uint64_t off) {
    const uint8_t *p = buf;
    size_t i = 0;
    for (; i < len && ((off + i) & 7); i++)
        if (p[i] != coil_test_pattern_byte(seed, off + i)) return i;
    for (; i + 8 <= len; i += 8) {
        uint64_t w = coil_test_mix64(((off + i) >> 3) ^ (seed << 40)), got;
        memcpy(&got, p + i, 8);
        if (got != w) break;
    }
    for (; i < len; i++)
        if (p[i] != coil_test_pattern_byte(seed, off + i)) return i;
    return len;
}

/* A running checksum (Fletcher-like, 64-bit halves) of a byte stream. */
struct coil_test_sum {
    uint64_t a, b, bytes;
};

static inline void coil_test_sum_add(struct coil_test_sum *s, const void *buf, size_t len) {
    const uint8_t *p = buf;
    uint64_t a = s->a, b = s->b;
    for (size_t i = 0; i < len; i++) {
        a += p[i];
        b += a;
    }
    s->a = a;
    s->b = b;
    s->bytes += len;
}

/* ---- coil calls that loop (from a tasklet) -------------------------------- */

/* Receives until len bytes have come, the stream ends or an error. Returns
 * the byte count (short only at end of stream) or the error that stopped it;
 * either way *got (if not NULL) says how many bytes came. */
static inline ssize_t coil_test_recv_all(int fd, void *buf, size_t len, int64_t deadline,
                                         size_t *got) {
    size_t total = 0;
    ssize_t r = 0;
    while (total < len) {
        r = coil_recv_dl(fd, (char *)buf + total, len - total, 0, deadline);
        if (r <= 0) break;
        total += (size_t)r;
    }
    if (got) *got = total;
    return r < 0 ? r : (ssize_t)total;
}

/* coil_read until len bytes or end of file; as coil_test_recv_all. */
static inline ssize_t coil_test_read_all(int fd, void *buf, size_t len, int64_t deadline,
                                         size_t *got) {
    size_t total = 0;
    ssize_t r = 0;
    while (total < len) {
        r = coil_read_dl(fd, (char *)buf + total, len - total, deadline);
        if (r <= 0) break;
        total += (size_t)r;
    }
    if (got) *got = total;
    return r < 0 ? r : (ssize_t)total;
}

/* A tasklet that counts its wake-ups (1 ms sleeps) until *stop is set: proof
 * that the scheduler kept running while another tasklet waited. */
struct coil_test_ticker {
    volatile bool stop;
    long ticks;
};

static inline void coil_test_ticker_fn(void *arg) {
    struct coil_test_ticker *t = arg;
    while (!t->stop && coil_sleep(COIL_MSEC) == 0)
        t->ticks++;
}

/* Whether a call needs the offload pool: coil_test_while_pool_held(fn, arg)
 * holds every worker of the pool with jobs that wait at a gate (as lookups
 * of a resolver that does not answer would), runs fn(arg) in a tasklet of
 * its own, and returns true when fn returned within 5 s, before the gate
 * opened. Then it opens the gate and joins every tasklet (fn's too, so a fn
 * that waited for the pool finishes then). Call it from a tasklet. */
struct coil_test_gate {
    pthread_mutex_t lock;
    pthread_cond_t open_cv;
    bool open;
    atomic_int inside; /* jobs waiting at the gate */
    coil_fn fn;
    void *arg;
    atomic_bool fn_done;
};

static inline int coil_test_gate_job(void *arg) { /* on a worker */
    struct coil_test_gate *g = arg;
    atomic_fetch_add(&g->inside, 1);
    pthread_mutex_lock(&g->lock);
    while (!g->open)
        pthread_cond_wait(&g->open_cv, &g->lock);
    pthread_mutex_unlock(&g->lock);
    return 7;
}

static inline void coil_test_gate_holder(void *arg) {
    EXPECT_EQ(coil_offload(coil_test_gate_job, arg), 7);
}

static inline void coil_test_gate_runner(void *arg) {
    struct coil_test_gate *g = arg;
    g->fn(g->arg);
    atomic_store(&g->fn_done, true);
}

static inline bool coil_test_while_pool_held(coil_fn fn, void *arg) {
    enum { HOLDERS = 6, WORKERS = 4 }; /* the pool has at most 4 workers */
    struct coil_test_gate g = {.fn = fn, .arg = arg};
    pthread_mutex_init(&g.lock, NULL);
    pthread_cond_init(&g.open_cv, NULL);
    coil_id ids[HOLDERS];
    for (int i = 0; i < HOLDERS; i++) {
        ids[i] = coil_spawn(coil_test_gate_holder, &g, NULL);
        EXPECT(ids[i] > 0);
    }
    int64_t t0 = coil_now();
    while (atomic_load(&g.inside) < WORKERS && coil_now() - t0 < 10 * COIL_SEC)
        coil_sleep(COIL_MSEC);
    EXPECT(atomic_load(&g.inside) >= WORKERS);
    coil_id r = coil_spawn(coil_test_gate_runner, &g, NULL);
    EXPECT(r > 0);
    t0 = coil_now();
    while (!atomic_load(&g.fn_done) && coil_now() - t0 < 5 * COIL_SEC)
        coil_sleep(COIL_MSEC);
    bool done = atomic_load(&g.fn_done);
    pthread_mutex_lock(&g.lock);
    g.open = true;
    pthread_cond_broadcast(&g.open_cv);
    pthread_mutex_unlock(&g.lock);
    EXPECT_EQ(coil_join(r, COIL_FOREVER), 0);
    for (int i = 0; i < HOLDERS; i++)
        EXPECT_EQ(coil_join(ids[i], COIL_FOREVER), 0);
    pthread_mutex_destroy(&g.lock);
    pthread_cond_destroy(&g.open_cv);
    return done;
}

/* Runs only the tests whose names match the pattern in COIL_TEST_FILTER
 * (cmocka's wildcards: * and ?), when it is set; for debugging one case. */
static inline void coil_test_apply_filter(void) {
    const char *f = getenv("COIL_TEST_FILTER");
    if (f && *f) cmocka_set_test_filter(f);
}

#endif /* COIL_TEST_NET_H */

/* ======================================================================== */
/* Channels: helpers of tests/test_chan*.c and tests/test_choose.c          */
/* ======================================================================== */
/* Short names, so only for the files that ask for them by defining
 * COIL_TEST_CHAN_HELPERS before including this header. Checks inside
 * tasklets use EXPECT / EXPECT_EQ; the main tasklet runs under
 * COIL_RUN_CHECKED (see "checks inside tasklets" above). */
#if defined(COIL_TEST_CHAN_HELPERS) && !defined(COIL_TEST_CHAN_H)
#define COIL_TEST_CHAN_H

/* An event log: tasklets append short tokens, the test compares the string. */
struct evlog {
    char buf[16384];
    size_t len;
};

static inline void logev(struct evlog *l, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static inline void logev(struct evlog *l, const char *fmt, ...) {
    if (l->len + 1 >= sizeof l->buf) return;
    if (l->len) l->buf[l->len++] = ' ';
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(l->buf + l->len, sizeof l->buf - l->len, fmt, ap);
    va_end(ap);
    if (n > 0) l->len += (size_t)n;
    if (l->len >= sizeof l->buf) l->len = sizeof l->buf - 1;
}

/* ch's coil_chan_getinfo, which is checked to succeed (on failure the fields
 * are 0x5a bytes). */
static inline coil_chan_info info_of(coil_chan *ch) {
    coil_chan_info info;
    memset(&info, 0x5a, sizeof info);
    EXPECT_EQ(coil_chan_getinfo(ch, &info), 0);
    return info;
}

static inline int balance(coil_chan *ch) {
    return info_of(ch).balance;
}

static inline long count(coil_chan *ch) {
    return (long)info_of(ch).count;
}

/* Yields until ch's balance is want (the other tasklets have parked). */
static inline bool await_balance(coil_chan *ch, int want) {
    for (int i = 0; i < 1000; i++) {
        if (balance(ch) == want) return true;
        coil_yield();
    }
    return false;
}

/* A new channel; asserts, so outside coil_run only. */
static inline coil_chan *open_chan(size_t elem_size, size_t cap) {
    coil_chan *ch = NULL;
    assert_int_equal(coil_chan_open(&ch, elem_size, cap), 0);
    assert_non_null(ch);
    return ch;
}

/* One channel operation run as its own tasklet. */
enum { OP_SEND = 1, OP_RECV, OP_SEND_ERROR, OP_CHOOSE_RECV };
struct op {
    coil_chan *ch;
    int kind;
    int val;           /* send: the value; send_error: the errno; recv: what arrived */
    int result;        /* what the call returned */
    int clause_result; /* OP_CHOOSE_RECV: the clause's result */
    bool done;
    int yields_first;  /* coil_yield this many times before the operation */
    struct evlog *log; /* if set, "tag:start" and "tag:done=result,val" go there */
    const char *tag;
};

static inline void op_fn(void *arg) {
    struct op *o = arg;
    for (int i = 0; i < o->yields_first; i++)
        coil_yield();
    if (o->log) logev(o->log, "%s:start", o->tag);
    switch (o->kind) {
    case OP_SEND: o->result = coil_chan_send(o->ch, &o->val); break;
    case OP_RECV: o->result = coil_chan_recv(o->ch, &o->val); break;
    case OP_SEND_ERROR: o->result = coil_chan_send_error(o->ch, o->val); break;
    case OP_CHOOSE_RECV: {
        coil_clause cl[1] = {{.ch = o->ch, .op = COIL_CHOOSE_RECV, .elem = &o->val}};
        o->result = coil_choose(cl, 1, COIL_FOREVER);
        o->clause_result = cl[0].result;
        break;
    }
    }
    o->done = true;
    if (o->log) logev(o->log, "%s:done=%d,%d", o->tag, o->result, o->val);
}

static inline coil_id spawn_op(struct op *o) {
    coil_id id = coil_spawn(op_fn, o, NULL);
    EXPECT(id > 0);
    return id;
}

/* Counts how often it gets to run: proof that a caller did not yield. */
struct spy {
    int runs;
    bool stop;
};

static inline void spy_fn(void *arg) {
    struct spy *s = arg;
    while (!s->stop) {
        s->runs++;
        coil_yield();
    }
}

#endif /* COIL_TEST_CHAN_H */
