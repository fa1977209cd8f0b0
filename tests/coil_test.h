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
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <coil.h>

/* Set by the ctest registration of the Valgrind run: scale loops down there. */
static inline bool coil_test_under_valgrind(void) {
    return getenv("COIL_UNDER_VALGRIND") != NULL;
}

/* Runs fn(arg) as the main tasklet and asserts that coil_run returned 0. */
#define COIL_RUN_OK(fn, arg) assert_int_equal(coil_run((fn), (arg)), 0)

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
