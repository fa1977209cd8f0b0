/* The echo example end to end: the built coil-echo server and
 * coil-echo-client, run as child processes on loopback. Many connections
 * echo intact (including messages larger than the client's 16 KiB pieces and
 * the server's 16 KiB buffer); SIGINT and SIGTERM stop the server promptly
 * with exit 0 and its summary, closing idle connections on the way; -v
 * prints one line per connection and disconnection (and, with more than
 * one thread, one per thread at the end); bad arguments exit 2, those of
 * --threads, --idle-timeout-ms and --max-conns with a line that names the
 * option; the client fails (exit 1) when nothing listens. The idle timeout
 * closes a client that sends nothing, and one that does not read its echo,
 * and leaves one that talks; --max-conns keeps clients past the cap waiting
 * in the backlog, unserved, until connections end, and drops none. The
 * server's cases run twice: with --threads 1 and with --threads 2 (a group
 * of two schedulers, the connections dealt out to both, so that connections
 * end on another scheduler than the acceptor's).
 *
 * Times: what must happen is waited for with deadlines of 10 s; what must
 * not happen is watched for a second or more, with timeouts far from it.
 *
 * The programs' paths come from tests/CMakeLists.txt (COIL_ECHO_BIN,
 * COIL_ECHO_CLIENT_BIN); without the examples the test is skipped. Under
 * Valgrind only this process is checked: the children exec unwatched. */
#include "coil_test.h"
#include "example_test.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#if !defined(COIL_ECHO_BIN) || !defined(COIL_ECHO_CLIENT_BIN)
int main(void) {
    fprintf(stderr, "test_echo_example: the examples are not built; skipped\n");
    return 77;
}
#else

/* The server of the case running, from its start until it is stopped. A
 * failing check jumps out of the case (cmocka), past the stop: the cases'
 * teardown then kills it, so that no server outlives its test. */
static pid_t live_server = -1;

static int kill_live_server(void **state) {
    (void)state;
    if (live_server > 0) {
        kill(live_server, SIGKILL);
        while (waitpid(live_server, NULL, 0) < 0 && errno == EINTR)
            ;
    }
    live_server = -1;
    return 0;
}

/* Starts coil-echo on a free loopback port (--port 0: the kernel picks one,
 * the server prints it) with --threads `threads` and the options of extra
 * (NULL-terminated; NULL for none), and returns that port. */
static int start_server(struct coil_test_child *srv, bool verbose, const char *const *extra) {
    char *argv[16] = {COIL_ECHO_BIN, "--host",    "127.0.0.1",    "--port",
                      "0",           "--threads", (char *)threads};
    size_t n = 7;
    if (verbose) argv[n++] = "-v";
    for (; extra && *extra; extra++) {
        assert_true(n < sizeof argv / sizeof argv[0] - 1);
        argv[n++] = (char *)*extra;
    }
    argv[n] = NULL;
    coil_test_child_start(srv, coil_test_exec_child, argv);
    live_server = srv->pid;
    const char *marker = "listening on 127.0.0.1:";
    char says[64];
    snprintf(says, sizeof says, ", %s thread%s)\n", threads, strcmp(threads, "1") ? "s" : "");
    if (!coil_test_child_read(srv, says, 10000) || !strstr(srv->err, marker)) {
        kill(srv->pid, SIGKILL);
        coil_test_child_finish(srv, 5000);
        live_server = -1;
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
    live_server = -1; /* reaped */
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
    int port = start_server(&srv, false, NULL);

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
    int port = start_server(&srv, true, NULL);

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
     * which may be after the client exited: wait for the listening line,
     * the limits, 4 connected and 3 disconnected. */
    if (!wait_lines(&srv, 9, 10000)) {
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

    /* listening + limits + 4 connected + 3 disconnected + 1 closed at
     * shutdown + summary (+ a line per thread when there are several). The
     * default cap depends on the fd limit; the default idle timeout does not. */
    char *out = srv.err, needle[64];
    snprintf(needle, sizeof needle, "127.0.0.1:%d: connected\n", ntohs(me.sin_port));
    bool ok = strstr(out, needle) != NULL;
    ok = ok && strstr(out, "\ncoil-echo: at most ") &&
         strstr(out, " connections at once, idle timeout 60000 ms\n");
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
         coil_test_count(out, "\n") == 11 + (nthreads > 1 ? nthreads : 0);
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

/* ---- the idle timeout and the cap on connections ------------------------- */

/* A connection of the test's own (receives fail after 30 s rather than hang);
 * *local gets its port, which the server's -v lines name. */
static int connect_to(int port, int *local) {
    int fd = coil_test_connect_loopback(port, 30);
    struct sockaddr_in me;
    socklen_t len = sizeof me;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&me, &len), 0);
    *local = ntohs(me.sin_port);
    return fd;
}

/* Whether fd has bytes (or its end, or an error) to read within ms. */
static bool readable_within(int fd, int ms) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    return poll(&pfd, 1, ms) == 1;
}

/* Expects exactly msg to come on fd within 10 s. */
static void expect_bytes(int fd, const char *msg) {
    size_t len = strlen(msg), got = 0;
    char buf[64];
    assert_true(len <= sizeof buf);
    while (got < len && readable_within(fd, 10000)) {
        ssize_t n = recv(fd, buf + got, len - got, 0);
        if (n <= 0) break;
        got += (size_t)n;
    }
    assert_int_equal(got, len);
    assert_memory_equal(buf, msg, len);
}

/* Sends msg on fd and expects it back. */
static void expect_echo(int fd, const char *msg) {
    assert_int_equal(send(fd, msg, strlen(msg), MSG_NOSIGNAL), (ssize_t)strlen(msg));
    expect_bytes(fd, msg);
}

/* Expects the server to end the connection within 10 s: end of stream, or
 * (reset) if allow_reset, after what is still to read. */
static void expect_end(int fd, bool allow_reset) {
    char buf[16384];
    for (;;) {
        if (!readable_within(fd, 10000)) fail_msg("the server did not end the connection");
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno == ECONNRESET && allow_reset)) return;
        if (n < 0 && errno != EAGAIN) fail_msg("recv: %s", strerror(errno));
    }
}

/* Expects a -v line of the server that contains needle within 10 s. */
static void expect_line(struct coil_test_child *srv, const char *needle) {
    if (!coil_test_child_read(srv, needle, 10000)) {
        print_message("expected: %s\n", needle);
        coil_test_child_describe(srv);
        fail_msg("coil-echo -v did not log the line expected");
    }
}

/* Sends the server SIGTERM; it must exit 0 with its summary and `says`. */
static void stop_expecting(struct coil_test_child *srv, const char *says) {
    stop_server(srv, SIGTERM);
    if (!coil_test_child_exited(srv, 0) || !strstr(srv->err, says)) {
        print_message("expected: %s\n", says);
        coil_test_child_describe(srv);
        fail_msg("coil-echo did not exit 0 with the summary expected");
    }
}

/* An idle timeout of 1 s: a client that sends nothing is closed after it
 * (not before half of it: the timeout, not something else, closed it), and
 * -v says why; a client that sends every 100 ms for 3 s stays. */
static void test_idle_client_closed_talking_client_stays(void **state) {
    (void)state;
    struct coil_test_child srv;
    int port = start_server(&srv, true, (const char *const[]){"--idle-timeout-ms", "1000", NULL});
    expect_line(&srv, "coil-echo: at most ");
    assert_non_null(strstr(srv.err, " connections at once, idle timeout 1000 ms\n"));

    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int idle_port, talker_port;
    int idle = connect_to(port, &idle_port);
    int talker = connect_to(port, &talker_port);
    int64_t idle_closed_ms = -1;
    int pings = 0;
    while (coil_test_ms_since(&t0) < 3000) {
        expect_echo(talker, "ping");
        pings++;
        if (idle_closed_ms < 0 && readable_within(idle, 0))
            idle_closed_ms = coil_test_ms_since(&t0);
        usleep(100 * 1000);
    }
    expect_end(idle, false); /* it sent nothing: nothing unread, no reset */
    if (idle_closed_ms < 0) idle_closed_ms = coil_test_ms_since(&t0);
    close(idle);
    if (idle_closed_ms < 500)
        fail_msg("the idle client was closed after %lld ms", (long long)idle_closed_ms);

    char needle[96];
    snprintf(needle, sizeof needle, "127.0.0.1:%d: closed (idle timeout), 0 bytes echoed\n",
             idle_port);
    expect_line(&srv, needle);
    /* The talker is still served, and was never closed. */
    expect_echo(talker, "ping");
    pings++;
    snprintf(needle, sizeof needle, "127.0.0.1:%d: closed", talker_port);
    assert_null(strstr(srv.err, needle));
    close(talker);
    snprintf(needle, sizeof needle, "127.0.0.1:%d: disconnected, %d bytes echoed\n", talker_port,
             4 * pings);
    expect_line(&srv, needle);
    stop_expecting(&srv, "coil-echo: of those, 1 closed idle, 0 for not reading their echo\n");
    coil_test_child_free(&srv);
}

/* A client that sends and never reads, with small socket buffers: the
 * server's echo blocks, and once it has for the idle timeout (500 ms) the
 * connection is closed (with the client's bytes unread: a reset), and -v
 * says the peer was not reading. */
static void test_client_not_reading_closed(void **state) {
    (void)state;
    struct coil_test_child srv;
    int port = start_server(&srv, true, (const char *const[]){"--idle-timeout-ms", "500", NULL});

    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    assert_int_equal(coil_test_setsockopt_int(fd, SOL_SOCKET, SO_RCVBUF, 4096), 0);
    assert_int_equal(coil_test_setsockopt_int(fd, SOL_SOCKET, SO_SNDBUF, 4096), 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    struct sockaddr_in me;
    socklen_t len = sizeof me;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&me, &len), 0);

    /* Sends until nothing more goes (every buffer on the way full: the
     * server is stuck in its echo) or the server has reset the connection. */
    size_t sent = coil_test_fill_socket(fd);
    assert_true(sent > 16 * 1024);
    char needle[96];
    snprintf(needle, sizeof needle, "127.0.0.1:%d: closed (peer not reading), ",
             ntohs(me.sin_port));
    expect_line(&srv, needle);
    expect_end(fd, true);
    close(fd);
    stop_expecting(&srv, "coil-echo: of those, 0 closed idle, 1 for not reading their echo\n");
    coil_test_child_free(&srv);
}

/* Whether a -v line saying `connected` has come n times, reading the
 * server's output for ms first (to see that no more come). */
static bool connected_exactly(struct coil_test_child *srv, size_t n, int ms) {
    coil_test_child_read(srv, "\x01", ms); /* a needle never printed: reads for ms */
    return coil_test_count(srv->err, ": connected\n") == n;
}

/* --max-conns 3 (and no idle timeout): a 4th and a 5th client connect (the
 * kernel completes their handshakes into the listen backlog) but get no echo
 * while three are served; each is served, its early bytes echoed, once one
 * of the three leaves; none is dropped. With --threads 2 the connections
 * that leave ran on both schedulers. Then every slot is back: three new
 * clients are served at once, and a fourth waits again. */
static void test_max_conns_holds_clients_in_backlog(void **state) {
    (void)state;
    struct coil_test_child srv;
    int port = start_server(
        &srv, true, (const char *const[]){"--max-conns", "3", "--idle-timeout-ms", "0", NULL});
    expect_line(&srv, "coil-echo: at most 3 connections at once, no idle timeout\n");

    int fds[5], local;
    char msg[16];
    for (int i = 0; i < 3; i++) {
        fds[i] = connect_to(port, &local);
        snprintf(msg, sizeof msg, "c%d", i);
        expect_echo(fds[i], msg);
    }
    expect_line(&srv,
                "coil-echo: 3 connections open (--max-conns): accepting again when one ends\n");
    for (int i = 3; i < 5; i++) {
        fds[i] = connect_to(port, &local); /* the handshake completes: the backlog */
        snprintf(msg, sizeof msg, "c%d", i);
        assert_int_equal(send(fds[i], msg, 2, MSG_NOSIGNAL), 2);
    }
    if (readable_within(fds[3], 1000) || readable_within(fds[4], 0) ||
        !connected_exactly(&srv, 3, 200)) {
        coil_test_child_describe(&srv);
        fail_msg("a client past --max-conns 3 was served");
    }

    close(fds[0]); /* on scheduler 0 */
    expect_bytes(fds[3], "c3");
    if (!coil_test_child_read_count(&srv, ": connected\n", 4, 10000) ||
        readable_within(fds[4], 1000) || !connected_exactly(&srv, 4, 200)) {
        coil_test_child_describe(&srv);
        fail_msg("one connection left, yet two clients past the cap were served");
    }
    close(fds[1]); /* on scheduler 1 with --threads 2 */
    expect_bytes(fds[4], "c4");
    for (int i = 2; i < 5; i++)
        expect_echo(fds[i], "again");
    for (int i = 2; i < 5; i++)
        close(fds[i]);
    if (!coil_test_child_read_count(&srv, ": disconnected, ", 5, 10000)) {
        coil_test_child_describe(&srv);
        fail_msg("coil-echo -v did not log the five clients leaving");
    }

    /* Each connection gave its slot back, once. */
    for (int i = 0; i < 4; i++) {
        fds[i] = connect_to(port, &local);
        snprintf(msg, sizeof msg, "d%d", i);
        assert_int_equal(send(fds[i], msg, 2, MSG_NOSIGNAL), 2);
    }
    for (int i = 0; i < 3; i++) {
        snprintf(msg, sizeof msg, "d%d", i);
        expect_bytes(fds[i], msg);
    }
    if (readable_within(fds[3], 1000)) fail_msg("a 4th client was served at --max-conns 3");
    close(fds[2]);
    expect_bytes(fds[3], "d3");
    for (int i = 0; i < 4; i++)
        if (i != 2) close(fds[i]);
    if (!coil_test_child_read_count(&srv, ": disconnected, ", 9, 10000)) {
        coil_test_child_describe(&srv);
        fail_msg("coil-echo -v did not log the four clients leaving");
    }
    stop_expecting(&srv, "coil-echo: 9 connections served, 33 bytes echoed\n");
    assert_null(strstr(srv.err, "of those"));
    coil_test_child_free(&srv);
}

/* ---- failures ----------------------------------------------------------- */

/* coil-echo --port 0 OPTION VALUE, for each value (NULL-terminated), must
 * say "coil-echo: OPTION VALUE: not a number from RANGE", give its usage and
 * exit 2. */
static void expect_bad_values(const char *option, const char *range, const char *const *values) {
    for (; *values; values++) {
        char says[128];
        snprintf(says, sizeof says, "coil-echo: %s %s: not a number from %s\n", option, *values,
                 range);
        expect_usage_saying(
            (char *[]){COIL_ECHO_BIN, "--port", "0", (char *)option, (char *)*values, NULL}, says);
    }
}

static void test_bad_arguments_exit_2(void **state) {
    (void)state;
    expect_usage((char *[]){COIL_ECHO_BIN, NULL});
    expect_usage((char *[]){COIL_ECHO_BIN, "--port", "70000", NULL});
    expect_usage((char *[]){COIL_ECHO_BIN, "--port", "80x", NULL});
    expect_usage((char *[]){COIL_ECHO_BIN, "--port", "8000", "extra", NULL});
    expect_usage((char *[]){COIL_ECHO_BIN, "--bogus", NULL});
    static const char *const bad_threads[] = {"abc", "-1", "1025", "", "2x", "99999999999999999999",
                                              NULL};
    expect_bad_values("--threads", "0 to 1024", bad_threads);
    static const char *const bad_max_conns[] = {"0", "-1", "", "3x", "10000001", NULL};
    expect_bad_values("--max-conns", "1 to 10000000", bad_max_conns);
    static const char *const bad_ms[] = {"x", "-1", "", "5s", "1000000001", NULL};
    expect_bad_values("--idle-timeout-ms", "0 to 1000000000", bad_ms);
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
        cmocka_unit_test_teardown(test_many_connections_then_sigint, kill_live_server),
        cmocka_unit_test_teardown(test_verbose_and_idle_connection_at_sigterm, kill_live_server),
        cmocka_unit_test_teardown(test_idle_client_closed_talking_client_stays, kill_live_server),
        cmocka_unit_test_teardown(test_client_not_reading_closed, kill_live_server),
        cmocka_unit_test_teardown(test_max_conns_holds_clients_in_backlog, kill_live_server),
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
