/* Ctrl-C in the middle of each example's work: the built programs run as
 * child processes, each under Valgrind (in the ASan build, sanitized
 * themselves instead), are sent one SIGINT while they are busy, and must exit
 * with the status each documents, with no invalid access and no leak:
 *
 * - coil-download (its offline server, -d 2 -n 3): interrupted in the serial
 *   run (page 2 in flight) and, in a second case, in the parallel run (the
 *   three downloads in flight: where the use-after-free of issue 21 was);
 *   130, each download in flight says Cancelled.
 * - coil-pipeline 200000, after it printed prime #100 (a hundred or more
 *   sieve tasklets and channels are live): 130, no final summary.
 * - coil-echo-client talking to coil-echo: 130, having echoed some but not
 *   all messages; then coil-echo while another client talks to it: 0 and its
 *   summary, each connection closed at shutdown after echoing bytes (the
 *   client then fails with 1: its server went away).
 * - coil-echo --threads 2 (a group of two schedulers) serving 1,000
 *   connections of this process, each of which has echoed its own four
 *   bytes: 0 and its summary, every connection closed at shutdown (each
 *   tasklet ran its cleanup), 500 on each thread.
 * - coil-http with four keep-alive connections of this process that have
 *   been answered and each have a request in flight: 0 and its summary, each
 *   connection closed at shutdown.
 *
 * Valgrind runs with --error-exitcode=99 and a full leak check: an invalid
 * access or a definite leak makes the exit status 99 and puts Valgrind's
 * report in the output, which a failing case prints. In a sanitizer build
 * (COIL_TEST_SANITIZED) an ASan, LSan or UBSan report fails the case the
 * same way. Without Valgrind or sanitizers the exit statuses are still
 * checked. The programs' paths come from tests/CMakeLists.txt (COIL_*_BIN;
 * a case whose program is not built is skipped), Valgrind's from
 * COIL_TEST_VALGRIND. The programs inherit COIL_BACKEND.
 *
 * coil-test: no-valgrind: this test runs the examples under Valgrind itself;
 * the suite's Valgrind pass would only watch this process, slower.
 * coil-test: tsan: coil-echo --threads 2 and the offload workers of
 * coil-download cross threads; in the ThreadSanitizer build the programs are
 * built with TSan, inherit TSAN_OPTIONS (halt_on_error), and a report makes
 * their exit status 66, which no case accepts.
 */
// coil-test: no-valgrind (see above)
// coil-test: tsan (see above)
#include "coil_test.h"

#ifndef COIL_PIPELINE_BIN
int main(void) {
    fprintf(stderr, "test_examples_sigint: the examples are not built; skipped\n");
    return 77;
}
#else

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

/* ---- children ---------------------------------------------------------- */

/* The children a case started and has not reaped yet (their pid and pipe:
 * the structs are in the case's frame): a failing case leaves through
 * cmocka's longjmp, and the teardown kills what it left running (their
 * output buffers are left to the process's exit). */
#define MAX_LIVE 4
static struct {
    pid_t pid;
    int fd;
} live[MAX_LIVE];

static int kill_leftovers(void **state) {
    (void)state;
    for (int i = 0; i < MAX_LIVE; i++) {
        if (live[i].pid <= 0) continue;
        kill(live[i].pid, SIGKILL);
        while (waitpid(live[i].pid, NULL, 0) < 0 && errno == EINTR) {
        }
        close(live[i].fd);
        live[i].pid = 0;
    }
    return 0;
}

/* What runs a program: Valgrind (with the options of the suite's own
 * Valgrind pass that matter here), or nothing in a sanitizer build. */
#if defined(COIL_TEST_VALGRIND) && !defined(COIL_TEST_SANITIZED)
static const char *const wrapper[] = {COIL_TEST_VALGRIND,
                                      "--quiet",
                                      "--fair-sched=yes",
                                      "--error-exitcode=99",
                                      "--leak-check=full",
                                      "--errors-for-leak-kinds=definite,indirect",
                                      "--show-leak-kinds=definite,indirect",
                                      NULL};
#define UNDER_VALGRIND 1
#else
static const char *const wrapper[] = {NULL};
#define UNDER_VALGRIND 0
#endif

/* Starts the program argv (NULL-terminated, at most 12) under the wrapper. */
static void start(struct coil_test_child *c, const char *const *argv) {
    char *full[24];
    int n = 0;
    for (const char *const *w = wrapper; *w; w++)
        full[n++] = (char *)*w;
    for (; *argv && n < 23; argv++)
        full[n++] = (char *)*argv;
    full[n] = NULL;
    coil_test_child_start(c, coil_test_exec_child, full);
    for (int i = 0; i < MAX_LIVE; i++)
        if (live[i].pid <= 0) {
            live[i].pid = c->pid;
            live[i].fd = c->err_fd;
            return;
        }
    fail_msg("more than %d children", MAX_LIVE);
}

/* Prints how c ended (once reaped) and all it printed: not through cmocka's
 * print_message, which cuts a long message short (Valgrind's report comes
 * last). */
static void describe(const struct coil_test_child *c) {
    fflush(stdout);
    if (c->err_fd < 0 && WIFEXITED(c->status))
        fprintf(stderr, "child exited with %d\n", WEXITSTATUS(c->status));
    else if (c->err_fd < 0 && WIFSIGNALED(c->status))
        fprintf(stderr, "child died by signal %d\n", WTERMSIG(c->status));
    fprintf(stderr, "child output:\n");
    fwrite(c->err, 1, c->err_len, stderr);
    fprintf(stderr, "(end of child output)\n");
}

/* Fails the case, with what the child printed so far (or in all). */
static void fail_with(struct coil_test_child *c, const char *what) {
    describe(c);
    fail_msg("%s", what);
}

/* Reads c's output until a line containing marker has come (at most
 * timeout_ms), or fails with what. */
static void wait_for(struct coil_test_child *c, const char *marker, int timeout_ms,
                     const char *what) {
    if (!coil_test_child_read(c, marker, timeout_ms)) fail_with(c, what);
}

static int count(const char *text, const char *needle) {
    int n = 0;
    for (const char *p = text; (p = strstr(p, needle)) != NULL; p += strlen(needle))
        n++;
    return n;
}

/* Reads c's output until needle has come n times (at most timeout_ms). */
static void wait_count(struct coil_test_child *c, const char *needle, int n, int timeout_ms,
                       const char *what) {
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    while (count(c->err, needle) < n) {
        int64_t left = timeout_ms - coil_test_ms_since(&t0);
        if (left <= 0) fail_with(c, what);
        coil_test_child_read(c, "\x01", left < 50 ? (int)left : 50); /* never printed: reads */
    }
}

/* How long a child gets to exit after its SIGINT. coil's own grace is 10 s
 * (then it ends the process as SIGINT would, which fails the case too). */
#define EXIT_MS 30000

/* Reaps c (at most timeout_ms, then SIGKILL) and checks that it exited with
 * status and that neither Valgrind nor a sanitizer reported anything. */
static void finish(struct coil_test_child *c, int status, int timeout_ms, const char *name) {
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    coil_test_child_finish(c, timeout_ms);
    for (int i = 0; i < MAX_LIVE; i++)
        if (live[i].pid == c->pid) live[i].pid = 0;
    int64_t ms = coil_test_ms_since(&t0);
    static const char *const reports[] = {"Invalid read",
                                          "Invalid write",
                                          "Invalid free",
                                          "uninitialised",
                                          "definitely lost",
                                          "indirectly lost",
                                          "ERROR: AddressSanitizer",
                                          "ERROR: LeakSanitizer",
                                          "runtime error:",
                                          NULL};
    const char *report = NULL;
    for (const char *const *r = reports; *r && !report; r++)
        if (strstr(c->err, *r)) report = *r;
    if (report || !coil_test_child_exited(c, status)) {
        print_message("%s: expected exit status %d, within %d ms (took %lld ms)\n", name, status,
                      timeout_ms, (long long)ms);
        describe(c);
        if (coil_test_child_exited(c, 99) && UNDER_VALGRIND)
            fail_msg("%s: Valgrind found errors (exit status 99)", name);
        if (report) fail_msg("%s: \"%s\" in its output", name, report);
        fail_msg("%s did not exit with %d", name, status);
    }
}

/* SIGINT now, then finish. */
static void interrupt(struct coil_test_child *c, int status, const char *name) {
    assert_int_equal(kill(c->pid, SIGINT), 0);
    finish(c, status, EXIT_MS, name);
}

/* The number after the last occurrence of prefix in text, or -1. */
static long long number_after(const char *text, const char *prefix) {
    const char *hit = NULL;
    for (const char *p = text; (p = strstr(p, prefix)) != NULL; p++)
        hit = p;
    return hit ? atoll(hit + strlen(prefix)) : -1;
}

/* The port after "listening on 127.0.0.1:" (the servers' first line). */
static int listening_port(struct coil_test_child *srv, const char *name) {
    const char *marker = "listening on 127.0.0.1:";
    char what[64];
    snprintf(what, sizeof what, "%s did not report listening", name);
    wait_for(srv, marker, 30000, what);
    int port = atoi(strstr(srv->err, marker) + strlen(marker));
    assert_true(port > 0 && port < 65536);
    return port;
}

/* ---- coil-download ------------------------------------------------------ */

#ifdef COIL_DOWNLOAD_BIN
static const char *const download_argv[] = {COIL_DOWNLOAD_BIN, "-d", "2", "-n", "3", NULL};

/* Page 1 downloaded, page 2 in flight (the server answers after 2 s). */
static void test_download_serial(void **state) {
    (void)state;
    struct coil_test_child c;
    start(&c, download_argv);
    wait_for(&c, "/page1 in ", 30000, "coil-download did not download page 1");
    interrupt(&c, 130, "coil-download");
    char line[256];
    coil_test_find_line(c.err, "Cancelled http://127.0.0.1:", line, sizeof line);
    if (!strstr(line, "/page2") || strstr(c.err, "/page3") || strstr(c.err, "Parallel") ||
        !strstr(c.err, "coil-download: interrupted\n"))
        fail_with(&c, "coil-download did not cancel page 2 and stop after the serial run");
    coil_test_child_free(&c);
}

/* The three parallel downloads in flight: what they use is freed only once
 * each has finished unwinding (issue 21's use-after-free). */
static void test_download_parallel(void **state) {
    (void)state;
    struct coil_test_child c;
    start(&c, download_argv);
    wait_for(&c, " === Parallel ===", 60000, "coil-download did not start the parallel run");
    usleep(500 * 1000); /* they connect and wait for the answers */
    interrupt(&c, 130, "coil-download");
    const char *par = strstr(c.err, " === Parallel ===");
    if (count(par, "Cancelled http://127.0.0.1:") != 3 || strstr(par, "Downloaded") ||
        !strstr(c.err, "coil-download: interrupted\n"))
        fail_with(&c, "coil-download did not cancel the three parallel downloads");
    coil_test_child_free(&c);
}
#endif

/* ---- coil-pipeline ------------------------------------------------------ */

/* Up to 200000 there are 17984 primes: a run far longer than this case. Its
 * output reaches the pipe in blocks, so once prime #100 has come through, a
 * hundred or more sieve tasklets and their channels are live. */
static void test_pipeline(void **state) {
    (void)state;
    struct coil_test_child c;
    start(&c, (const char *const[]){COIL_PIPELINE_BIN, "200000", NULL});
    wait_for(&c, "prime #100: 541", 60000, "coil-pipeline did not print prime #100");
    interrupt(&c, 130, "coil-pipeline");
    if (strstr(c.err, "primes up to") || !strstr(c.err, "coil-pipeline: interrupted\n"))
        fail_with(&c, "coil-pipeline was not interrupted mid-run");
    coil_test_child_free(&c);
}

/* ---- coil-echo and coil-echo-client ------------------------------------- */

#if defined(COIL_ECHO_BIN) && defined(COIL_ECHO_CLIENT_BIN)
static void start_client(struct coil_test_child *c, const char *port) {
    /* Far more messages than the case lasts for. */
    start(c, (const char *const[]){COIL_ECHO_CLIENT_BIN, "--port", port, "-c", "4", "-n",
                                   "10000000", "-s", "1000", NULL});
}

/* The -v server's lines of ended connections ("PEER: WHY, N bytes echoed")
 * number n, each with N > 0; those that say why as `why` number n_why. */
static void expect_ended(struct coil_test_child *srv, int n, const char *why, int n_why) {
    const char *tail = " bytes echoed\n";
    int lines = 0;
    for (const char *p = srv->err; (p = strstr(p, tail)) != NULL; p += strlen(tail)) {
        const char *start = p;
        while (start > srv->err && start[-1] != '\n')
            start--;
        if (!strncmp(start, "coil-echo: ", 11)) continue; /* the summary */
        const char *digits = p;
        while (digits > srv->err && digits[-1] >= '0' && digits[-1] <= '9')
            digits--;
        if (atoll(digits) <= 0) fail_with(srv, "a connection ended having echoed nothing");
        lines++;
    }
    if (lines != n || count(srv->err, why) != n_why)
        fail_with(srv, "coil-echo did not log the connections ending as expected");
}

/* A client interrupted while its four connections exchange messages, then
 * the server interrupted while another client's four do. */
static void test_echo_client_then_server(void **state) {
    (void)state;
    struct coil_test_child srv, cl;
    start(&srv, (const char *const[]){COIL_ECHO_BIN, "--port", "0", "-v", NULL});
    char port[16];
    snprintf(port, sizeof port, "%d", listening_port(&srv, "coil-echo"));

    start_client(&cl, port);
    wait_count(&srv, ": connected\n", 4, 30000, "coil-echo did not log four connections");
    /* Messages go back and forth (under Valgrind some 40 per connection in
     * 500 ms: a second leaves room for a loaded machine). */
    usleep(1000 * 1000);
    interrupt(&cl, 130, "coil-echo-client");
    long long done = number_after(cl.err, "(0 failed), ");
    if (done <= 0 || done >= 40000000 || !strstr(cl.err, " 0 mismatches") ||
        !strstr(cl.err, "coil-echo-client: interrupted, 4 connections cancelled\n"))
        fail_with(&cl, "coil-echo-client was not interrupted mid-run with echoes intact");
    coil_test_child_free(&cl);
    /* Each connection ends as disconnected, or reset if the client closed
     * with an echo unread. */
    wait_count(&srv, " bytes echoed\n", 4, 30000, "coil-echo did not see the client go");
    expect_ended(&srv, 4, ": closed at shutdown, ", 0);

    start_client(&cl, port);
    wait_count(&srv, ": connected\n", 8, 30000, "coil-echo did not log four more connections");
    usleep(1000 * 1000);
    interrupt(&srv, 0, "coil-echo");
    if (!strstr(srv.err, "coil-echo: 8 connections served, ")) fail_with(&srv, "no summary");
    expect_ended(&srv, 8, ": closed at shutdown, ", 4);
    coil_test_child_free(&srv);
    /* The client sees its server hang up: a failure, exit 1, yet clean. */
    finish(&cl, 1, EXIT_MS, "coil-echo-client");
    coil_test_child_free(&cl);
}

/* A group of two schedulers serving 1,000 connections, interrupted. */
static void test_echo_two_threads_1000_connections(void **state) {
    (void)state;
    enum { N = 1000 };
    if (!coil_test_raise_nofile(N + 64)) skip();
    struct coil_test_child srv;
    start(&srv, (const char *const[]){COIL_ECHO_BIN, "--port", "0", "--threads", "2", "-v", NULL});
    int port = listening_port(&srv, "coil-echo");
    if (!strstr(srv.err, "(io_uring, 2 threads)\n") && !strstr(srv.err, "(epoll, 2 threads)\n"))
        fail_with(&srv, "coil-echo did not start two threads");
    static int fds[N];
    for (int i = 0; i < N; i++) {
        fds[i] = coil_test_connect_loopback(port, 30);
        char msg[8];
        snprintf(msg, sizeof msg, "%04d", i);
        assert_int_equal(send(fds[i], msg, 4, MSG_NOSIGNAL), 4);
        if (i % 100 == 99) coil_test_child_read(&srv, "\x01", 0); /* keep its pipe drained */
    }
    for (int i = 0; i < N; i++) {
        char want[8], got[8];
        snprintf(want, sizeof want, "%04d", i);
        size_t have = 0;
        struct pollfd pfd = {.fd = fds[i], .events = POLLIN};
        while (have < 4 && poll(&pfd, 1, 30000) == 1) {
            ssize_t n = recv(fds[i], got + have, 4 - have, 0);
            if (n <= 0) break;
            have += (size_t)n;
        }
        if (have != 4 || memcmp(got, want, 4) != 0) fail_with(&srv, "an echo did not come back");
    }
    wait_count(&srv, ": connected\n", N, 60000, "coil-echo did not log 1,000 connections");
    interrupt(&srv, 0, "coil-echo");
    if (count(srv.err, ": closed at shutdown, 4 bytes echoed\n") != N ||
        !strstr(srv.err, "coil-echo: 1000 connections served, 4000 bytes echoed\n") ||
        !strstr(srv.err, "coil-echo: thread 0: 500 connections, 2000 bytes echoed\n") ||
        !strstr(srv.err, "coil-echo: thread 1: 500 connections, 2000 bytes echoed\n"))
        fail_with(&srv, "coil-echo did not close its 1,000 connections at shutdown, 500 a thread");
    for (int i = 0; i < N; i++) {
        char b;
        struct pollfd pfd = {.fd = fds[i], .events = POLLIN};
        if (poll(&pfd, 1, 5000) != 1 || recv(fds[i], &b, 1, 0) != 0)
            fail_msg("connection %d was not closed by the server", i);
        close(fds[i]);
    }
    coil_test_child_free(&srv);
}
#endif

/* ---- coil-http ----------------------------------------------------------- */

#ifdef COIL_HTTP_BIN
#define GET_ROOT "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"
#define RESPONSE                                                                                   \
    "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 13\r\n\r\nHello, World!"

static int connect_to(int port) {
    return coil_test_connect_loopback(port, 30);
}

static void get(int fd) {
    assert_int_equal(send(fd, GET_ROOT, strlen(GET_ROOT), MSG_NOSIGNAL), (ssize_t)strlen(GET_ROOT));
}

static void expect_response(int fd) {
    char buf[sizeof RESPONSE];
    size_t want = strlen(RESPONSE), got = 0;
    while (got < want) {
        ssize_t n = recv(fd, buf + got, want - got, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0)
            fail_msg("coil-http: the response ended early (%s)", n ? strerror(errno) : "EOF");
        got += (size_t)n;
    }
    assert_memory_equal(buf, RESPONSE, want);
}

/* Four keep-alive connections, five requests answered on each, then one
 * more sent on each and SIGINT at once. */
static void test_http(void **state) {
    (void)state;
    struct coil_test_child srv;
    start(&srv, (const char *const[]){COIL_HTTP_BIN, "--port", "0", "-v", NULL});
    int port = listening_port(&srv, "coil-http");
    int fds[4];
    for (int i = 0; i < 4; i++)
        fds[i] = connect_to(port);
    for (int round = 0; round < 5; round++) {
        for (int i = 0; i < 4; i++)
            get(fds[i]);
        for (int i = 0; i < 4; i++)
            expect_response(fds[i]);
    }
    for (int i = 0; i < 4; i++)
        get(fds[i]);
    interrupt(&srv, 0, "coil-http");
    /* Each connection ends at shutdown, after its five or six requests. */
    int ended = 0;
    const char *how = ": closed at shutdown, ";
    for (const char *p = srv.err; (p = strstr(p, how)) != NULL; p += strlen(how)) {
        long long n = atoll(p + strlen(how));
        if (n < 5 || n > 6)
            fail_with(&srv, "a connection ended at shutdown after too few requests");
        ended++;
    }
    if (ended != 4 || !strstr(srv.err, "coil-http: 4 connections served, "))
        fail_with(&srv, "coil-http did not close the four connections at shutdown");
    for (int i = 0; i < 4; i++)
        close(fds[i]);
    coil_test_child_free(&srv);
}
#endif

int main(void) {
    if (getenv("COIL_UNDER_QEMU")) {
        /* qemu-user runs this process, not the programs it would exec. */
        fprintf(stderr, "test_examples_sigint: skipped under qemu\n");
        return 77;
    }
    const struct CMUnitTest tests[] = {
#ifdef COIL_DOWNLOAD_BIN
        cmocka_unit_test_teardown(test_download_serial, kill_leftovers),
        cmocka_unit_test_teardown(test_download_parallel, kill_leftovers),
#endif
        cmocka_unit_test_teardown(test_pipeline, kill_leftovers),
#if defined(COIL_ECHO_BIN) && defined(COIL_ECHO_CLIENT_BIN)
        cmocka_unit_test_teardown(test_echo_client_then_server, kill_leftovers),
        cmocka_unit_test_teardown(test_echo_two_threads_1000_connections, kill_leftovers),
#endif
#ifdef COIL_HTTP_BIN
        cmocka_unit_test_teardown(test_http, kill_leftovers),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif
