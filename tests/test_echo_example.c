/* The echo example end to end: the built coil-echo server and
 * coil-echo-client, run as child processes on loopback. Many connections
 * echo intact (including messages larger than the client's 16 KiB pieces and
 * the server's 16 KiB buffer); SIGINT and SIGTERM stop the server promptly
 * with exit 0 and its summary, closing idle connections on the way; -v
 * prints one line per connection and disconnection (and, with more than
 * one thread, one per thread at the end); bad arguments exit 2, those of
 * --threads with a line that names it; the client fails (exit 1) when
 * nothing listens. The server's cases run twice: with --threads 1 and with
 * --threads 2 (a group of two schedulers, the connections dealt out to
 * both).
 *
 * The programs' paths come from tests/CMakeLists.txt (COIL_ECHO_BIN,
 * COIL_ECHO_CLIENT_BIN); without the examples the test is skipped. Under
 * Valgrind only this process is checked: the children exec unwatched. */
#include "coil_test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#if !defined(COIL_ECHO_BIN) || !defined(COIL_ECHO_CLIENT_BIN)
int main(void) {
    fprintf(stderr, "test_echo_example: the examples are not built; skipped\n");
    return 77;
}
#else

/* The --threads of the group of cases running: "1" or "2". */
static const char *threads = "1";

static int with_one_thread(void **state) {
    (void)state;
    threads = "1";
    return 0;
}

static int with_two_threads(void **state) {
    (void)state;
    threads = "2";
    return 0;
}

/* Starts coil-echo on a free loopback port (--port 0: the kernel picks one,
 * the server prints it) with --threads `threads`, and returns that port. */
static int start_server(struct coil_test_child *srv, bool verbose) {
    char *argv[] = {COIL_ECHO_BIN, "--host",        "127.0.0.1",           "--port", "0",
                    "--threads",   (char *)threads, verbose ? "-v" : NULL, NULL};
    coil_test_child_start(srv, coil_test_exec_child, argv);
    const char *marker = "listening on 127.0.0.1:";
    char says[64];
    snprintf(says, sizeof says, ", %s thread%s)\n", threads, strcmp(threads, "1") ? "s" : "");
    if (!coil_test_child_read(srv, says, 10000) || !strstr(srv->err, marker)) {
        kill(srv->pid, SIGKILL);
        coil_test_child_finish(srv, 5000);
        coil_test_child_describe(srv);
        fail_msg("coil-echo did not report listening with %s thread(s)", threads);
    }
    int port = atoi(strstr(srv->err, marker) + strlen(marker));
    assert_true(port > 0 && port < 65536);
    return port;
}

/* Runs coil-echo-client against port to its end (at most 60 s). */
static void run_client(struct coil_test_child *cl, int port, const char *conns,
                       const char *messages, const char *size) {
    char portstr[16];
    snprintf(portstr, sizeof portstr, "%d", port);
    char *argv[] = {COIL_ECHO_CLIENT_BIN, "--host", "127.0.0.1",      "--port", portstr,      "-c",
                    (char *)conns,        "-n",     (char *)messages, "-s",     (char *)size, NULL};
    coil_test_fork_run(cl, coil_test_exec_child, argv, 60000);
}

static void assert_client_ok(struct coil_test_child *cl) {
    if (!coil_test_child_exited(cl, 0) || !strstr(cl->err, "(0 failed)") ||
        !strstr(cl->err, " 0 mismatches")) {
        coil_test_child_describe(cl);
        fail_msg("coil-echo-client did not report a clean run");
    }
}

/* Sends sig to the server and waits for it (at most 10 s); returns how long
 * it took to exit, in ms. */
static int64_t stop_server(struct coil_test_child *srv, int sig) {
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(kill(srv->pid, sig), 0);
    coil_test_child_finish(srv, 10000);
    return coil_test_ms_since(&t0);
}

/* Reads the child's output until it has printed n lines (at most timeout_ms). */
static bool wait_lines(struct coil_test_child *c, size_t n, int timeout_ms) {
    return coil_test_child_read_count(c, "\n", n, timeout_ms);
}

/* ---- many connections, then SIGINT -------------------------------------- */

static void test_many_connections_then_sigint(void **state) {
    (void)state;
    struct coil_test_child srv, cl;
    int port = start_server(&srv, false);

    /* 50 connections x 20 messages of 1000 bytes. */
    run_client(&cl, port, "50", "20", "1000");
    assert_client_ok(&cl);
    assert_non_null(strstr(cl.err, "1000 of 1000 messages"));
    coil_test_child_free(&cl);

    /* Messages of 100000 bytes: several pieces each way per message. */
    run_client(&cl, port, "5", "3", "100000");
    assert_client_ok(&cl);
    assert_non_null(strstr(cl.err, "15 of 15 messages"));
    coil_test_child_free(&cl);

    int64_t ms = stop_server(&srv, SIGINT);
    if (!coil_test_child_exited(&srv, 0) || ms > 5000) {
        print_message("server took %lld ms to exit\n", (long long)ms);
        coil_test_child_describe(&srv);
        fail_msg("coil-echo did not exit 0 promptly on SIGINT");
    }
    /* 50*20*1000 + 5*3*100000 bytes; and nothing per connection without -v:
     * the listening line and the summary only. */
    if (!strstr(srv.err, "coil-echo: 55 connections served, 2500000 bytes echoed\n") ||
        coil_test_count(srv.err, "\n") != 2) {
        coil_test_child_describe(&srv);
        fail_msg("coil-echo's output is not the listening line and the summary");
    }
    coil_test_child_free(&srv);
}

/* ---- -v, and an idle connection at SIGTERM ------------------------------ */

static void test_verbose_and_idle_connection_at_sigterm(void **state) {
    (void)state;
    struct coil_test_child srv, cl;
    int port = start_server(&srv, true);

    /* A connection of our own: one echo, then it stays open and idle. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    struct sockaddr_in me;
    socklen_t len = sizeof me;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&me, &len), 0);
    assert_int_equal(send(fd, "hello", 5, MSG_NOSIGNAL), 5);
    char buf[16];
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    size_t got = 0;
    while (got < 5 && poll(&pfd, 1, 10000) == 1) {
        ssize_t n = recv(fd, buf + got, sizeof buf - got, 0);
        if (n <= 0) break;
        got += (size_t)n;
    }
    assert_int_equal(got, 5);
    assert_memory_equal(buf, "hello", 5);

    run_client(&cl, port, "3", "2", "10");
    assert_client_ok(&cl);
    coil_test_child_free(&cl);
    /* The client's disconnections are logged once the server has seen them,
     * which may be after the client exited: wait for the listening line, 4
     * connected and 3 disconnected. */
    if (!wait_lines(&srv, 8, 10000)) {
        coil_test_child_describe(&srv);
        fail_msg("coil-echo -v did not log the connections");
    }

    int64_t ms = stop_server(&srv, SIGTERM);
    if (!coil_test_child_exited(&srv, 0) || ms > 5000) {
        print_message("server took %lld ms to exit\n", (long long)ms);
        coil_test_child_describe(&srv);
        fail_msg("coil-echo did not exit 0 promptly on SIGTERM");
    }
    /* The server closed our idle connection: end of stream. */
    assert_int_equal(poll(&pfd, 1, 5000), 1);
    assert_int_equal(recv(fd, buf, sizeof buf, 0), 0);
    close(fd);

    /* listening + 4 connected + 3 disconnected + 1 closed at shutdown + summary
     * (+ a line per thread when there are several) */
    char *out = srv.err, needle[64];
    snprintf(needle, sizeof needle, "127.0.0.1:%d: connected\n", ntohs(me.sin_port));
    bool ok = strstr(out, needle) != NULL;
    snprintf(needle, sizeof needle, "127.0.0.1:%d: closed at shutdown, 5 bytes echoed\n",
             ntohs(me.sin_port));
    ok = ok && strstr(out, needle) != NULL;
    size_t connected = 0, disconnected = 0;
    for (const char *p = out; (p = strstr(p, ": connected\n")) != NULL; p++)
        connected++;
    for (const char *p = out; (p = strstr(p, ": disconnected, 20 bytes echoed\n")) != NULL; p++)
        disconnected++;
    size_t nthreads = (size_t)atoi(threads);
    ok = ok && connected == 4 && disconnected == 3 &&
         coil_test_count(out, "\n") == 10 + (nthreads > 1 ? nthreads : 0);
    ok = ok && strstr(out, "coil-echo: 4 connections served, 65 bytes echoed\n") != NULL;
    if (nthreads == 2) {
        /* Dealt out in turn: our connection went to thread 0, then the
         * client's three to 1, 0, 1. */
        ok = ok && strstr(out, "coil-echo: thread 0: 2 connections, 25 bytes echoed\n");
        ok = ok && strstr(out, "coil-echo: thread 1: 2 connections, 40 bytes echoed\n");
    }
    if (!ok) {
        coil_test_child_describe(&srv);
        fail_msg("coil-echo -v did not print the expected lines");
    }
    coil_test_child_free(&srv);
}

/* ---- failures ----------------------------------------------------------- */

/* argv must print its usage (and `says`, unless NULL) and exit 2. */
static void expect_usage_saying(char **argv, const char *says) {
    struct coil_test_child c;
    coil_test_fork_run(&c, coil_test_exec_child, argv, 10000);
    if (!coil_test_child_exited(&c, 2) || !strstr(c.err, "usage:") ||
        (says && !strstr(c.err, says))) {
        print_message("%s %s ...\n", argv[0], argv[1] ? argv[1] : "");
        coil_test_child_describe(&c);
        fail_msg("bad arguments did not give usage and exit 2");
    }
    coil_test_child_free(&c);
}

static void expect_usage(char **argv) {
    expect_usage_saying(argv, NULL);
}

static void test_bad_arguments_exit_2(void **state) {
    (void)state;
    expect_usage((char *[]){COIL_ECHO_BIN, NULL});
    expect_usage((char *[]){COIL_ECHO_BIN, "--port", "70000", NULL});
    expect_usage((char *[]){COIL_ECHO_BIN, "--port", "80x", NULL});
    expect_usage((char *[]){COIL_ECHO_BIN, "--port", "8000", "extra", NULL});
    expect_usage((char *[]){COIL_ECHO_BIN, "--bogus", NULL});
    static const char *const bad_threads[] = {"abc", "-1", "1025",
                                              "",    "2x", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad_threads / sizeof bad_threads[0]; i++) {
        char says[64];
        snprintf(says, sizeof says, "coil-echo: --threads %s: not a number from 0 to 1024\n",
                 bad_threads[i]);
        expect_usage_saying(
            (char *[]){COIL_ECHO_BIN, "--port", "0", "--threads", (char *)bad_threads[i], NULL},
            says);
    }
    expect_usage((char *[]){COIL_ECHO_CLIENT_BIN, "-c", "3", NULL});
    expect_usage((char *[]){COIL_ECHO_CLIENT_BIN, "--port", "0", NULL});
    expect_usage((char *[]){COIL_ECHO_CLIENT_BIN, "--port", "8000", "-c", "0", NULL});
    expect_usage((char *[]){COIL_ECHO_CLIENT_BIN, "--port", "8000", "-s", "big", NULL});
}

static void test_client_fails_when_nothing_listens(void **state) {
    (void)state;
    /* A bound, not listening, socket: its port refuses connections and stays
     * ours while the client runs. */
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa = {.sin_family = AF_INET};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    socklen_t len = sizeof sa;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sa, &len), 0);

    struct coil_test_child cl;
    run_client(&cl, ntohs(sa.sin_port), "2", "1", "10");
    close(fd);
    if (!coil_test_child_exited(&cl, 1) || !strstr(cl.err, strerror(ECONNREFUSED)) ||
        !strstr(cl.err, "(2 failed)")) {
        coil_test_child_describe(&cl);
        fail_msg("coil-echo-client did not fail with connection refused");
    }
    coil_test_child_free(&cl);
}

int main(void) {
    if (getenv("COIL_UNDER_QEMU")) {
        /* qemu-user runs this process, not the programs it would exec. */
        fprintf(stderr, "test_echo_example: skipped under qemu\n");
        return 77;
    }
    const struct CMUnitTest servers[] = {
        cmocka_unit_test(test_many_connections_then_sigint),
        cmocka_unit_test(test_verbose_and_idle_connection_at_sigterm),
    };
    const struct CMUnitTest others[] = {
        cmocka_unit_test(test_bad_arguments_exit_2),
        cmocka_unit_test(test_client_fails_when_nothing_listens),
    };
    int failed = cmocka_run_group_tests_name("--threads 1", servers, with_one_thread, NULL);
    failed += cmocka_run_group_tests_name("--threads 2", servers, with_two_threads, NULL);
    return failed + cmocka_run_group_tests(others, NULL, NULL);
}
#endif
