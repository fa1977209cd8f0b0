/* The HTTP example end to end: the built coil-http server, run as a child
 * process on loopback, answered to by plain blocking sockets of this process
 * (and, for the many-clients case, by coil tasklets). Every response is
 * compared byte for byte: GET /, HEAD, 404, 405, 414, 505; keep-alive over
 * several requests; pipelined requests answered in order (a few, and more
 * than the server's output buffer holds); HTTP/1.0 and "Connection: close"
 * close after their response; a malformed request gets 400 and a head over
 * 8 KiB gets 431, each followed by the end of the stream; request bodies
 * (Content-Length, chunked, sent in pieces) are read and dropped so that a
 * pipelined request after them is answered; a request head sent too slowly
 * (slowloris) is cut off after --header-timeout-ms, a silent connection
 * after --idle-timeout-ms, a body, chunks or trailer section trickled a byte
 * at a time after --request-timeout-ms (or, for trailers, the header
 * timeout) while a long body at a fair rate goes through; framing RFC 9112
 * forbids (request-smuggling shapes, Host missing, repeated or invalid) gets
 * 400 and the end of the stream, a coding it does not know 501;
 * "Expect: 100-continue" gets 100 or its final status at once; the summary
 * counts responses delivered, not made; 200 concurrent keep-alive clients each get 20
 * correct answers; random and mangled input never breaks the server; SIGTERM
 * with connections open exits 0, and -v logs each connection (and, with two
 * threads, what each thread served); bad arguments exit 2, those of
 * --threads with a line that names it. Every case that runs the server runs
 * twice: with --threads 1, and with --threads 2 (a group of two schedulers,
 * the connections dealt out to both).
 *
 * The server's path comes from tests/CMakeLists.txt (COIL_HTTP_BIN); without
 * it (examples not built) the test is skipped. The server
 * inherits COIL_BACKEND, so it runs on the backend this test runs on. Under
 * Valgrind only this process is checked: the server execs unwatched. */
#include "coil_test.h"
#include "example_test.h"

#ifndef COIL_HTTP_BIN
int main(void) {
    fprintf(stderr, "test_http_example: coil-http is not built; skipped\n");
    return 77;
}
#else

/* ---- the exact responses ------------------------------------------------- */

#define HDR(status, extra, len)                                                                    \
    "HTTP/1.1 " status "\r\n" extra "Content-Type: text/plain\r\n"                                 \
    "Content-Length: " #len "\r\n"

#define R200_HEAD  HDR("200 OK", "", 13) "\r\n"
#define R200       R200_HEAD "Hello, World!"
#define R200_CLOSE HDR("200 OK", "", 13) "Connection: close\r\n\r\nHello, World!"
#define R200_KA10  HDR("200 OK", "", 13) "Connection: keep-alive\r\n\r\nHello, World!"
#define R404_HEAD  HDR("404 Not Found", "", 9) "\r\n"
#define R404       R404_HEAD "Not Found"
#define R405       HDR("405 Method Not Allowed", "Allow: GET, HEAD\r\n", 18) "\r\nMethod Not Allowed"
#define R414       HDR("414 URI Too Long", "", 12) "\r\nURI Too Long"
#define R400       HDR("400 Bad Request", "", 11) "Connection: close\r\n\r\nBad Request"
#define R431                                                                                       \
    HDR("431 Request Header Fields Too Large", "", 31)                                             \
    "Connection: close\r\n\r\nRequest Header Fields Too Large"
#define R501       HDR("501 Not Implemented", "", 15) "\r\nNot Implemented"
#define R501_CLOSE HDR("501 Not Implemented", "", 15) "Connection: close\r\n\r\nNot Implemented"
#define R405_CLOSE                                                                                 \
    HDR("405 Method Not Allowed", "Allow: GET, HEAD\r\n", 18)                                      \
    "Connection: close\r\n\r\nMethod Not Allowed"
#define R404_CLOSE HDR("404 Not Found", "", 9) "Connection: close\r\n\r\nNot Found"
#define R100       "HTTP/1.1 100 Continue\r\n\r\n"
#define R505                                                                                       \
    HDR("505 HTTP Version Not Supported", "", 26)                                                  \
    "Connection: close\r\n\r\nHTTP Version Not Supported"

#define GET_ROOT "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n"

/* ---- the server ------------------------------------------------------------ */

/* The server a test started and has not stopped yet (its pid and pipe: the
 * struct itself is in the test's frame): a failing test leaves through
 * cmocka's longjmp, and the teardown kills what it left running. */
static pid_t running_pid;
static int running_fd = -1;

static int kill_leftover_server(void **state) {
    (void)state;
    if (running_pid > 0) {
        kill(running_pid, SIGKILL);
        while (waitpid(running_pid, NULL, 0) < 0 && errno == EINTR) {
        }
        if (running_fd >= 0) close(running_fd);
    }
    running_pid = 0;
    running_fd = -1;
    return 0;
}

/* Starts coil-http on a free loopback port with --threads `threads` and the
 * extra arguments (up to 16, NULL-terminated) and returns the port. */
static int start_server_args(struct coil_test_child *srv, const char *const *extra) {
    char *argv[24] = {COIL_HTTP_BIN, "--host",    "127.0.0.1",    "--port",
                      "0",           "--threads", (char *)threads};
    int argc = 7;
    for (; extra && *extra && argc < 23; extra++)
        argv[argc++] = (char *)*extra;
    argv[argc] = NULL;
    coil_test_child_start(srv, coil_test_exec_child, argv);
    const char *marker = "listening on 127.0.0.1:";
    char says[64];
    snprintf(says, sizeof says, ", %s thread%s)\n", threads, strcmp(threads, "1") ? "s" : "");
    if (!coil_test_child_read(srv, says, 10000) || !strstr(srv->err, marker)) {
        kill(srv->pid, SIGKILL);
        coil_test_child_finish(srv, 5000);
        coil_test_child_describe(srv);
        coil_test_child_free(srv);
        fail_msg("coil-http did not report listening with %s thread(s)", threads);
    }
    running_pid = srv->pid;
    running_fd = srv->err_fd;
    int port = atoi(strstr(srv->err, marker) + strlen(marker));
    assert_true(port > 0 && port < 65536);
    return port;
}

static int start_server(struct coil_test_child *srv) {
    return start_server_args(srv, NULL);
}

/* Sends sig to the server and waits for it (at most 10 s); returns how long
 * it took to exit, in ms. */
static int64_t stop_server(struct coil_test_child *srv, int sig) {
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    assert_int_equal(kill(srv->pid, sig), 0);
    coil_test_child_finish(srv, 10000);
    running_pid = 0; /* reaped, its pipe closed; its output stays for the caller */
    running_fd = -1;
    return coil_test_ms_since(&t0);
}

/* SIGTERM; the server must exit 0 promptly. Frees srv. */
static void stop_server_ok(struct coil_test_child *srv) {
    int64_t ms = stop_server(srv, SIGTERM);
    if (!coil_test_child_exited(srv, 0) || ms > 5000) {
        print_message("server took %lld ms to exit\n", (long long)ms);
        coil_test_child_describe(srv);
        fail_msg("coil-http did not exit 0 promptly on SIGTERM");
    }
    coil_test_child_free(srv);
}

/* ---- a client: plain blocking sockets ------------------------------------- */

static int connect_to(int port) {
    return coil_test_connect_loopback(port, 10);
}

static void send_bytes(int fd, const void *data, size_t len) {
    const char *p = data;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) fail_msg("send: %s", strerror(errno));
        p += n;
        len -= (size_t)n;
    }
}

static void send_str(int fd, const char *s) {
    send_bytes(fd, s, strlen(s));
}

/* Prints bytes with CR and LF visible, for a failure's context. */
static void print_escaped(const char *label, const char *p, size_t len) {
    print_message("%s (%zu bytes): \"", label, len);
    for (size_t i = 0; i < len && i < 2000; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch == '\r')
            print_message("\\r");
        else if (ch == '\n')
            print_message("\\n");
        else if (ch < 32 || ch > 126)
            print_message("\\x%02x", ch);
        else
            print_message("%c", ch);
    }
    print_message("\"\n");
}

/* Receives exactly strlen(want) bytes and compares them with want. */
static void expect_response(int fd, const char *want) {
    size_t len = strlen(want), got = 0;
    char *buf = malloc(len + 1);
    assert_non_null(buf);
    while (got < len) {
        ssize_t n = recv(fd, buf + got, len - got, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            print_escaped("expected", want, len);
            print_escaped("received", buf, got);
            fail_msg("the response ended early (%s)", n == 0 ? "end of stream" : strerror(errno));
        }
        got += (size_t)n;
    }
    if (memcmp(buf, want, len) != 0) {
        print_escaped("expected", want, len);
        print_escaped("received", buf, len);
        fail_msg("wrong response");
    }
    free(buf);
}

/* The server must close the connection (end of stream, nothing more before
 * it) within timeout_ms. Returns how long it took, in ms. */
static int64_t expect_closed(int fd, int timeout_ms) {
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int r;
    while ((r = poll(&pfd, 1, timeout_ms)) < 0 && errno == EINTR) {
    }
    if (r != 1) fail_msg("the server did not close the connection within %d ms", timeout_ms);
    char buf[256];
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
        print_escaped("received", buf, (size_t)n);
        fail_msg("bytes after the last response");
    }
    if (n < 0) fail_msg("not a clean close: %s", strerror(errno));
    return coil_test_ms_since(&t0);
}

/* Nothing arrives for ms and the connection stays open. */
static void expect_quiet(int fd, int ms) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int r = poll(&pfd, 1, ms);
    if (r != 0) {
        char buf[256];
        ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n > 0) print_escaped("received", buf, (size_t)n);
        fail_msg("expected silence, got %s", n == 0 ? "end of stream" : "bytes");
    }
}

/* ---- GET, HEAD, 404, 405, 414, 505 ------------------------------------------ */

static void test_get_root(void **state) {
    (void)state;
    struct coil_test_child srv;
    int port = start_server(&srv);
    int fd = connect_to(port);
    send_str(fd, GET_ROOT);
    expect_response(fd, R200);
    expect_quiet(fd, 100); /* exactly one response, and the connection stays */
    /* The query is not part of the path; the absolute form names the path too. */
    send_str(fd, "GET /?name=value HTTP/1.1\r\nHost: localhost\r\n\r\n");
    expect_response(fd, R200);
    send_str(fd, "GET http://localhost/ HTTP/1.1\r\nHost: localhost\r\n\r\n");
    expect_response(fd, R200);
    close(fd);
    stop_server_ok(&srv);
}

static void test_keep_alive_five_requests(void **state) {
    (void)state;
    struct coil_test_child srv;
    int port = start_server(&srv);
    int fd = connect_to(port);
    for (int i = 0; i < 5; i++) {
        send_str(fd, GET_ROOT);
        expect_response(fd, R200);
    }
    expect_quiet(fd, 100);
    close(fd);
    int64_t ms = stop_server(&srv, SIGTERM);
    (void)ms;
    if (!coil_test_child_exited(&srv, 0) ||
        !strstr(srv.err, "coil-http: 1 connections served, 5 responses delivered\n")) {
        coil_test_child_describe(&srv);
        fail_msg("the summary does not count one connection and five requests");
    }
    coil_test_child_free(&srv);
}

static void test_head_404_405(void **state) {
    (void)state;
    struct coil_test_child srv;
    int port = start_server(&srv);
    int fd = connect_to(port);
    send_str(fd, "HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n");
    expect_response(fd, R200_HEAD);
    send_str(fd, "GET /missing HTTP/1.1\r\nHost: localhost\r\n\r\n");
    expect_response(fd, R404);
    send_str(fd, "HEAD /missing HTTP/1.1\r\nHost: localhost\r\n\r\n");
    expect_response(fd, R404_HEAD);
    send_str(fd, "GET /index.html HTTP/1.1\r\nHost: localhost\r\n\r\n");
    expect_response(fd, R404);
    send_str(fd, "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\n\r\n");
    expect_response(fd, R405);
    send_str(fd, "DELETE /x HTTP/1.1\r\nHost: localhost\r\n\r\n");
    expect_response(fd, R405);
    send_str(fd, "OPTIONS * HTTP/1.1\r\nHost: localhost\r\n\r\n");
    expect_response(fd, R405);
    /* Still the same connection. */
    send_str(fd, GET_ROOT);
    expect_response(fd, R200);
    expect_quiet(fd, 100);
    close(fd);
    stop_server_ok(&srv);
}

static void test_long_target_414_and_version_505(void **state) {
    (void)state;
    struct coil_test_child srv;
    int port = start_server(&srv);
    int fd = connect_to(port);
    char req[4096];
    int n = snprintf(req, sizeof req, "GET /");
    memset(req + n, 'a', 2000);
    snprintf(req + n + 2000, sizeof req - (size_t)n - 2000, " HTTP/1.1\r\nHost: localhost\r\n\r\n");
    send_str(fd, req);
    expect_response(fd, R414);
    send_str(fd, GET_ROOT); /* the 414 keeps the connection */
    expect_response(fd, R200);
    send_str(fd, "GET / HTTP/2.0\r\n\r\n");
    expect_response(fd, R505);
    expect_closed(fd, 5000);
    close(fd);
    stop_server_ok(&srv);
}

/* ---- pipelining ---------------------------------------------------------------- */

static void test_pipelining(void **state) {
    (void)state;
    struct coil_test_child srv;
    int port = start_server(&srv);
    int fd = connect_to(port);
    /* Three requests in one write: three responses, in order. */
    send_str(
        fd, GET_ROOT
        "HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\nGET /nope HTTP/1.1\r\nHost: localhost\r\n\r\n");
    expect_response(fd, R200);
    expect_response(fd, R200_HEAD);
    expect_response(fd, R404);
    expect_quiet(fd, 100);

    /* 1000 requests in one write: their responses (106 KB) overflow the
     * server's 16 KiB output buffer several times. */
    enum { N = 1000 };
    static const char one[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
    char *reqs = malloc(N * (sizeof one - 1) + 1);
    assert_non_null(reqs);
    for (int i = 0; i < N; i++)
        memcpy(reqs + i * (sizeof one - 1), one, sizeof one - 1);
    reqs[N * (sizeof one - 1)] = '\0';
    send_str(fd, reqs);
    free(reqs);
    for (int i = 0; i < N; i++)
        expect_response(fd, R200);
    expect_quiet(fd, 100);

    /* A request split in pieces at every byte, the next one starting in the
     * same write as the end of the first. */
    static const char two[] = GET_ROOT GET_ROOT;
    for (size_t i = 0; i < sizeof two - 1; i += 7) {
        send_bytes(fd, two + i, sizeof two - 1 - i < 7 ? sizeof two - 1 - i : 7);
        struct timespec ts = {0, 2 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    expect_response(fd, R200);
    expect_response(fd, R200);
    close(fd);
    stop_server_ok(&srv);
}

/* ---- bodies ------------------------------------------------------------------ */

static void test_bodies_keep_pipelining_in_step(void **state) {
    (void)state;
    struct coil_test_child srv;
    int port = start_server(&srv);
    int fd = connect_to(port);

    /* A body and a pipelined GET in one write; the body looks like a request. */
    send_str(fd, "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 18\r\n\r\n"
                 "GET /body HTTP/1.1" GET_ROOT);
    expect_response(fd, R405);
    expect_response(fd, R200);
    expect_quiet(fd, 100);

    /* A chunked body, then a GET. */
    send_str(fd, "PUT / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n" GET_ROOT);
    expect_response(fd, R405);
    expect_response(fd, R200);

    /* A body of 1 MiB sent in pieces (larger than the server's buffer), then a
     * GET: the server reads the body as it comes. */
    enum { BODY = 1 << 20 };
    char head[128];
    snprintf(head, sizeof head, "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: %d\r\n\r\n",
             BODY);
    send_str(fd, head);
    char *body = malloc(BODY);
    assert_non_null(body);
    memset(body, 'x', BODY);
    memcpy(body + 1000, GET_ROOT, sizeof GET_ROOT - 1); /* a request inside: not one */
    send_bytes(fd, body, BODY);
    free(body);
    send_str(fd, "GET /after HTTP/1.1\r\nHost: localhost\r\n\r\n");
    expect_response(fd, R405);
    expect_response(fd, R404);
    expect_quiet(fd, 100);
    close(fd);
    stop_server_ok(&srv);
}

/* ---- closing ------------------------------------------------------------------ */

static void test_http10_closes(void **state) {
    (void)state;
    struct coil_test_child srv;
    int port = start_server(&srv);

    int fd = connect_to(port);
    send_str(fd, "GET / HTTP/1.0\r\n\r\n");
    expect_response(fd, R200_CLOSE);
    expect_closed(fd, 5000);
    close(fd);

    /* HTTP/1.0 that asks for keep-alive gets it. */
    fd = connect_to(port);
    send_str(fd, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
    expect_response(fd, R200_KA10);
    send_str(fd, "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    expect_response(fd, R200_KA10);
    send_str(fd, "GET / HTTP/1.0\r\n\r\n");
    expect_response(fd, R200_CLOSE);
    expect_closed(fd, 5000);
    close(fd);
    stop_server_ok(&srv);
}

static void test_connection_close_closes(void **state) {
    (void)state;
    struct coil_test_child srv;
    int port = start_server(&srv);

    int fd = connect_to(port);
    send_str(fd, "GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    expect_response(fd, R200_CLOSE);
    expect_closed(fd, 5000);
    close(fd);

    /* A request pipelined after the last one is not answered. */
    fd = connect_to(port);
    send_str(fd,
             GET_ROOT "HEAD / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n" GET_ROOT);
    expect_response(fd, R200);
    expect_response(fd, HDR("200 OK", "", 13) "Connection: close\r\n\r\n");
    expect_closed(fd, 5000);
    close(fd);
    stop_server_ok(&srv);
}

static void test_malformed_request_400(void **state) {
    (void)state;
    struct coil_test_child srv;
    int port = start_server(&srv);
    static const char *const bad[] = {
        "GARBAGE\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length: abc\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "GET / FTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: localhost\r\nBad Header\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n\r\n",
        "\x16\x03\x01\x02", /* the start of a TLS hello */
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int fd = connect_to(port);
        send_str(fd, bad[i]);
        expect_response(fd, R400);
        expect_closed(fd, 5000);
        close(fd);
    }
    /* Good requests before the bad one are answered, then the 400. */
    int fd = connect_to(port);
    send_str(fd, GET_ROOT GET_ROOT "GET /\x01 HTTP/1.1\r\nHost: localhost\r\n\r\n" GET_ROOT);
    expect_response(fd, R200);
    expect_response(fd, R200);
    expect_response(fd, R400);
    expect_closed(fd, 5000);
    close(fd);
    stop_server_ok(&srv);
}

/* A head of about size bytes: GET / with one header X-Big of filler. */
static char *head_of_size(size_t size) {
    char *h = malloc(size + 1);
    assert_non_null(h);
    int n = snprintf(h, size + 1, "GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: ");
    memset(h + n, 'b', size - (size_t)n - 4);
    memcpy(h + size - 4, "\r\n\r\n", 5);
    return h;
}

static void test_header_too_large_431(void **state) {
    (void)state;
    struct coil_test_child srv;
    int port = start_server(&srv);

    /* 9 KiB of head: 431, then the end of the stream. */
    int fd = connect_to(port);
    char *h = head_of_size(9 * 1024);
    send_str(fd, h);
    free(h);
    expect_response(fd, R431);
    expect_closed(fd, 5000);
    close(fd);

    /* 64 KiB of head, sent while the server answers: still a clean 431. */
    fd = connect_to(port);
    h = head_of_size(64 * 1024);
    send_str(fd, h);
    free(h);
    expect_response(fd, R431);
    expect_closed(fd, 5000);
    close(fd);

    /* Exactly 8 KiB is allowed, and so is a head that arrives in pieces. */
    fd = connect_to(port);
    h = head_of_size(8 * 1024);
    send_bytes(fd, h, 3000);
    struct timespec ts = {0, 20 * 1000 * 1000};
    nanosleep(&ts, NULL);
    send_str(fd, h + 3000);
    free(h);
    expect_response(fd, R200);
    /* One byte more is not. */
    h = head_of_size(8 * 1024 + 1);
    send_str(fd, h);
    free(h);
    expect_response(fd, R431);
    expect_closed(fd, 5000);
    close(fd);
    stop_server_ok(&srv);
}

/* ---- timeouts ------------------------------------------------------------------ */

static void test_slowloris_disconnected(void **state) {
    (void)state;
    struct coil_test_child srv;
    int port = start_server_args(&srv, (const char *const[]){"--header-timeout-ms", "300",
                                                             "--idle-timeout-ms", "5000", NULL});
    /* The start of a head, then nothing. */
    int fd = connect_to(port);
    send_str(fd, "GET / HTTP/1.1\r\nHost: loc");
    int64_t ms = expect_closed(fd, 5000);
    close(fd);
    if (ms < 250 || ms > 3000) fail_msg("cut off after %lld ms, not about 300", (long long)ms);

    /* A head that keeps coming, a byte every 20 ms: cut off all the same,
     * about 300 ms after its first byte. */
    fd = connect_to(port);
    static const char head[] =
        "GET / HTTP/1.1\r\nHost: localhost\r\nUser-Agent: "
        "slowloris-slowloris-slowloris-slowloris-slowloris-slowloris-"
        "slowloris-slowloris-slowloris-slowloris-slowloris-slowloris\r\n\r\n";
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bool closed = false;
    for (size_t i = 0; i < sizeof head - 1 && !closed; i++) {
        if (send(fd, head + i, 1, MSG_NOSIGNAL) != 1) {
            closed = true; /* reset by the server's kernel: cut off before */
            break;
        }
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, 20) == 1) {
            char buf[64];
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            if (n > 0) {
                print_escaped("received", buf, (size_t)n);
                fail_msg("a response to a head that never ended");
            }
            closed = true;
        }
    }
    ms = coil_test_ms_since(&t0);
    close(fd);
    if (!closed || ms < 250 || ms > 3000)
        fail_msg("trickling head: %s after %lld ms", closed ? "cut off" : "not cut off",
                 (long long)ms);

    /* A head that arrives whole within the limit is answered, and so is a
     * slow body: the header timeout is for heads only. */
    fd = connect_to(port);
    send_str(fd, "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 4\r\n\r\n");
    for (int i = 0; i < 4; i++) {
        struct timespec ts = {0, 150 * 1000 * 1000};
        nanosleep(&ts, NULL);
        send_str(fd, "x");
    }
    expect_response(fd, R405);
    send_str(fd, GET_ROOT);
    expect_response(fd, R200);
    close(fd);
    stop_server_ok(&srv);
}

static void test_idle_connection_closed(void **state) {
    (void)state;
    struct coil_test_child srv;
    int port = start_server_args(&srv, (const char *const[]){"--idle-timeout-ms", "400",
                                                             "--header-timeout-ms", "5000", NULL});
    /* Requests 100 ms apart keep the connection: the idle time restarts
     * after each. */
    int fd = connect_to(port);
    for (int i = 0; i < 6; i++) {
        send_str(fd, GET_ROOT);
        expect_response(fd, R200);
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    /* Then silence: closed about 400 ms after the last response. */
    send_str(fd, GET_ROOT);
    expect_response(fd, R200);
    int64_t ms = expect_closed(fd, 5000);
    close(fd);
    if (ms < 330 || ms > 3000) fail_msg("idle connection closed after %lld ms", (long long)ms);

    /* A connection that never sends a request is closed the same way. */
    fd = connect_to(port);
    ms = expect_closed(fd, 5000);
    close(fd);
    if (ms < 330 || ms > 3000) fail_msg("silent connection closed after %lld ms", (long long)ms);
    stop_server_ok(&srv);
}

/* Sends s one byte at a time, every ms milliseconds, until the server ends
 * the connection or s ends; returns how long after the first byte the
 * server closed it (-1: it did not, and every byte went). */
static int64_t trickle(int fd, const char *s, int ms) {
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (size_t i = 0; s[i]; i++) {
        if (send(fd, s + i, 1, MSG_NOSIGNAL) != 1) return coil_test_ms_since(&t0);
        struct pollfd pfd = {.fd = fd, .events = POLLIN};
        if (poll(&pfd, 1, ms) == 1) {
            char buf[256];
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            if (n > 0) {
                print_escaped("received", buf, (size_t)n);
                fail_msg("a response to a request that never ended");
            }
            return coil_test_ms_since(&t0);
        }
    }
    return -1;
}

/* The server's -v log must say `what` (at least `count` times) within 10 s. */
static void expect_logged(struct coil_test_child *srv, const char *what, int count) {
    if (!coil_test_child_read_count(srv, what, count, 10000)) {
        coil_test_child_describe(srv);
        fail_msg("coil-http -v did not log \"%s\" %d time(s)", what, count);
    }
}

/* A body trickled a byte at a time renews the idle timeout with every byte,
 * so only a deadline for the whole request cuts it off: a Content-Length
 * body, a chunked one, and (on the header timeout: a trailer section counts
 * as a head) a trailer section. */
static void test_slow_body_cut_off(void **state) {
    (void)state;
    struct coil_test_child srv;
    int port = start_server_args(&srv, (const char *const[]){"-v", "--request-timeout-ms", "600",
                                                             "--body-min-rate", "1000",
                                                             "--idle-timeout-ms", "5000",
                                                             "--header-timeout-ms", "400", NULL});
    static const char *const heads[] = {
        "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n",
    };
    static const char *const bodies[] = {
        "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "1\r\nx\r\n1\r\nx\r\n1\r\nx\r\n1\r\nx\r\n1\r\nx\r\n1\r\nx\r\n1\r\nx\r\n1\r\nx\r\n"
        "1\r\nx\r\n1\r\nx\r\n1\r\nx\r\n1\r\nx\r\n1\r\nx\r\n1\r\nx\r\n1\r\nx\r\n0\r\n\r\n",
    };
    for (int i = 0; i < 2; i++) {
        int fd = connect_to(port);
        send_str(fd, heads[i]);
        int64_t ms = trickle(fd, bodies[i], 50);
        close(fd);
        if (ms < 0 || ms > 3000)
            fail_msg("slow body %d: %s after %lld ms", i, ms < 0 ? "not cut off" : "cut off",
                     (long long)ms);
    }
    expect_logged(&srv, ": closed (request timeout), 0 requests", 2);

    /* The trailer section after the last chunk: a head of its own. */
    int fd = connect_to(port);
    send_str(fd, "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n");
    int64_t ms = trickle(fd, "X-Trailer: slow-slow-slow-slow-slow-slow-slow-slow-slow\r\n\r\n", 30);
    close(fd);
    if (ms < 0 || ms > 3000)
        fail_msg("slow trailer: %s after %lld ms", ms < 0 ? "not cut off" : "cut off",
                 (long long)ms);
    expect_logged(&srv, ": closed (header timeout), 0 requests", 1);

    /* A body longer than the request timeout allows at a rate above
     * --body-min-rate goes through: 3000 bytes at about 3000 bytes/s earn
     * a second more per 1000 bytes. */
    fd = connect_to(port);
    send_str(fd, "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 3000\r\n\r\n");
    char piece[300];
    memset(piece, 'y', sizeof piece);
    for (int i = 0; i < 10; i++) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
        send_bytes(fd, piece, sizeof piece);
    }
    expect_response(fd, R405);
    send_str(fd, GET_ROOT);
    expect_response(fd, R200);
    close(fd);
    stop_server_ok(&srv);
}

/* Framing that RFC 9112 forbids, each on its own connection: 400 (or, for a
 * coding it does not know, 501) and the end of the stream, never an answer
 * to a request smuggled inside. The parser's own corpus
 * (tests/test_http_parse.c) holds many more shapes; these are the ones a
 * proxy in front would frame differently. */
static void test_smuggling_shapes_rejected(void **state) {
    (void)state;
    struct coil_test_child srv;
    int port = start_server_args(&srv, (const char *const[]){"-v", NULL});
#define SMUGGLED "GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n"
    static const struct {
        const char *request, *response;
    } shapes[] = {
        /* Whitespace before the colon (§5.1). */
        {"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding : "
         "chunked\r\n\r\n0\r\n\r\n" SMUGGLED,
         R400},
        {"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length : 5\r\n\r\nhello" SMUGGLED, R400},
        /* A space inside a field name. */
        {"POST / HTTP/1.1\r\nHost: localhost\r\nContent Length: 5\r\n\r\nhello" SMUGGLED, R400},
        /* CL.TE and TE.CL. */
        {"POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 6\r\n"
         "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nG" SMUGGLED,
         R400},
        {"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
         "Content-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n" SMUGGLED,
         R400},
        /* TE.TE: chunked not last, obs-fold. */
        {"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
         "Transfer-Encoding: identity\r\n\r\n0\r\n\r\n" SMUGGLED,
         R400},
        {"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding:\r\n "
         "chunked\r\n\r\n0\r\n\r\n" SMUGGLED,
         R400},
        /* Chunk framing (§7.1): a bare space after the size, no CRLF after
         * the data. */
        {"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
         "5 \r\nhello\r\n0\r\n\r\n" SMUGGLED,
         R400},
        {"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
         "5\r\nhelloXX0\r\n\r\n" SMUGGLED,
         R400},
        /* Bare LF and bare CR. */
        {"GET / HTTP/1.1\nHost: localhost\n\n" SMUGGLED, R400},
        {"GET / HTTP/1.1\r\nHost: localhost\r\nX: a\rb\r\n\r\n" SMUGGLED, R400},
        /* Host (§3.2): none in HTTP/1.1, two, an invalid one. */
        {"GET / HTTP/1.1\r\n\r\n" SMUGGLED, R400},
        {"GET / HTTP/1.1\r\nHost: localhost\r\nHost: localhost\r\n\r\n" SMUGGLED, R400},
        {"GET / HTTP/1.1\r\nHost: local host\r\n\r\n" SMUGGLED, R400},
        /* A transfer coding it does not know: 501, and close (§6.1). */
        {"POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
         "0\r\n\r\n" SMUGGLED,
         R501_CLOSE},
    };
#undef SMUGGLED
    size_t count = sizeof shapes / sizeof shapes[0];
    for (size_t i = 0; i < count; i++) {
        int fd = connect_to(port);
        send_str(fd, shapes[i].request);
        expect_response(fd, shapes[i].response);
        expect_closed(fd, 5000);
        close(fd);
    }
    expect_logged(&srv, ": closed (400 bad request: ", (int)count - 1);
    expect_logged(&srv, ": closed (501 transfer coding not implemented), 1 requests", 1);

    /* Still valid: HTTP/1.0 needs no Host, an IPv6 literal with a port, an
     * empty Host; a method it does not know is 501 and keeps the
     * connection. */
    int fd = connect_to(port);
    send_str(fd, "GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n");
    expect_response(fd, R200);
    send_str(fd, "GET / HTTP/1.1\r\nHost:\r\n\r\n");
    expect_response(fd, R200);
    send_str(fd, "BREW /pot HTTP/1.1\r\nHost: localhost\r\n\r\n");
    expect_response(fd, R501);
    send_str(fd, "GET / HTTP/1.0\r\n\r\n");
    expect_response(fd, R200_CLOSE);
    expect_closed(fd, 5000);
    close(fd);
    stop_server_ok(&srv);
}

/* Expect: 100-continue (RFC 9110 §10.1.1): a request that would be answered
 * 200 gets "100 Continue" before its body is sent; one whose final status
 * its head decides gets that status at once, without waiting for a body
 * that would be dropped, and the connection ends. */
static void test_expect_100_continue(void **state) {
    (void)state;
    struct coil_test_child srv;
    int port = start_server(&srv);
    int fd = connect_to(port);
    send_str(fd, "GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n"
                 "Expect: 100-continue\r\n\r\n");
    expect_response(fd, R100);
    expect_quiet(fd, 100);
    send_str(fd, "hello");
    expect_response(fd, R200);
    /* No body: nothing to continue. In HTTP/1.0: ignored (§10.1.1). */
    send_str(fd, "GET / HTTP/1.1\r\nHost: localhost\r\nExpect: 100-continue\r\n\r\n");
    expect_response(fd, R200);
    send_str(fd, "GET / HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n"
                 "Expect: 100-continue\r\n\r\nhi");
    expect_response(fd, R200_KA10);
    /* A chunked body, the 100 pipelined after an earlier response. */
    send_str(fd, GET_ROOT "HEAD / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n"
                          "Expect: 100-Continue\r\n\r\n");
    expect_response(fd, R200);
    expect_response(fd, R100);
    send_str(fd, "3\r\nabc\r\n0\r\n\r\n");
    expect_response(fd, R200_HEAD);
    expect_quiet(fd, 100);
    close(fd);

    /* 405 and 404 at once, no body sent, and the end of the stream. */
    fd = connect_to(port);
    send_str(fd, "POST /upload HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1000000\r\n"
                 "Expect: 100-continue\r\n\r\n");
    expect_response(fd, R405_CLOSE);
    expect_closed(fd, 5000);
    close(fd);
    fd = connect_to(port);
    send_str(fd, "GET /missing HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n"
                 "Expect: 100-continue\r\n\r\n");
    expect_response(fd, R404_CLOSE);
    expect_closed(fd, 5000);
    close(fd);
    stop_server_ok(&srv);
}

/* The summary counts responses written to the socket, not responses made:
 * a client that sends 100 pipelined requests and resets the connection
 * before the server has read them gets none of their responses, and none is
 * counted. The server is stopped (SIGSTOP) meanwhile, so that the reset is
 * there before it reads: the kernel completes the handshake and takes the
 * bytes and the reset on its own, and the server, continued, reads the
 * requests (a reset leaves what was received readable), answers them, and
 * its send fails. */
static void test_summary_counts_delivered(void **state) {
    (void)state;
    struct coil_test_child srv;
    int port = start_server_args(&srv, (const char *const[]){"-v", NULL});
    enum { N = 100 };
    static const char one[] = GET_ROOT;
    char *reqs = malloc(N * (sizeof one - 1) + 1);
    assert_non_null(reqs);
    for (int i = 0; i < N; i++)
        memcpy(reqs + i * (sizeof one - 1), one, sizeof one - 1);
    reqs[N * (sizeof one - 1)] = '\0';
    assert_int_equal(kill(srv.pid, SIGSTOP), 0);
    int fd = connect_to(port);
    send_str(fd, reqs);
    free(reqs);
    struct linger lg = {.l_onoff = 1, .l_linger = 0}; /* close sends a reset */
    assert_int_equal(setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg), 0);
    close(fd);
    assert_int_equal(kill(srv.pid, SIGCONT), 0);
    expect_logged(&srv, ": disconnected, 0 requests", 1);

    fd = connect_to(port);
    send_str(fd, GET_ROOT);
    expect_response(fd, R200);
    close(fd);
    int64_t ms = stop_server(&srv, SIGTERM);
    if (!coil_test_child_exited(&srv, 0) || ms > 5000 ||
        !strstr(srv.err, "coil-http: 2 connections served, 1 responses delivered\n")) {
        coil_test_child_describe(&srv);
        fail_msg("the summary does not count the one response delivered");
    }
    coil_test_child_free(&srv);
}

/* ---- many clients at once (coil tasklets) --------------------------------------- */

enum { CLIENTS = 200, REQUESTS = 20 };

struct load {
    int port;
    long answered; /* requests answered correctly, over every client */
    long clients_done;
};

static const struct {
    const char *request, *response;
    int count; /* requests in it */
} load_kinds[] = {
    {GET_ROOT, R200, 1},
    {"HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n", R200_HEAD, 1},
    {"GET /missing HTTP/1.1\r\nHost: localhost\r\n\r\n", R404, 1},
    {GET_ROOT GET_ROOT, R200 R200, 2}, /* pipelined */
};

static void load_client(void *arg) {
    struct load *ld = arg;
    int64_t deadline = coil_now() + 60 * COIL_SEC;
    int fd = coil_socket(AF_INET, SOCK_STREAM, 0);
    if (!EXPECT(fd >= 0)) return;
    struct coil_test_addr a;
    coil_test_loopback(&a, AF_INET, (uint16_t)ld->port);
    if (!EXPECT_EQ(coil_connect_dl(fd, COIL_TEST_SA(&a), a.len, deadline), 0)) {
        coil_close(fd);
        return;
    }
    char buf[512];
    int sent = 0;
    for (long k = coil_self(); sent < REQUESTS; k++) {
        size_t kind = (size_t)k % (sizeof load_kinds / sizeof load_kinds[0]);
        if (sent + load_kinds[kind].count > REQUESTS) kind = 0;
        const char *req = load_kinds[kind].request, *want = load_kinds[kind].response;
        size_t wlen = strlen(want);
        if (!EXPECT_EQ(coil_sendall(fd, req, strlen(req), 0, deadline), (ssize_t)strlen(req)))
            break;
        if (!EXPECT_EQ(coil_test_recv_all(fd, buf, wlen, deadline, NULL), (ssize_t)wlen)) break;
        if (!EXPECT(memcmp(buf, want, wlen) == 0)) break;
        sent += load_kinds[kind].count;
        ld->answered += load_kinds[kind].count;
    }
    coil_close(fd);
    ld->clients_done++;
}

static void load_main(void *arg) {
    /* All the clients connect first, then all run at once. */
    for (int i = 0; i < CLIENTS; i++)
        EXPECT(coil_spawn(load_client, arg, NULL) > 0);
}

static void test_many_concurrent_clients(void **state) {
    (void)state;
    assert_true(coil_test_raise_nofile(CLIENTS + 64));
    struct coil_test_child srv;
    struct load ld = {.port = start_server(&srv)};
    COIL_RUN_CHECKED(load_main, &ld);
    assert_int_equal(ld.clients_done, CLIENTS);
    assert_int_equal(ld.answered, CLIENTS * REQUESTS);

    int64_t ms = stop_server(&srv, SIGTERM);
    char want[128];
    snprintf(want, sizeof want, "coil-http: %d connections served, %d responses delivered\n",
             CLIENTS, CLIENTS * REQUESTS);
    if (!coil_test_child_exited(&srv, 0) || ms > 5000 || !strstr(srv.err, want)) {
        coil_test_child_describe(&srv);
        fail_msg("coil-http did not exit 0 with \"%s\"", want);
    }
    coil_test_child_free(&srv);
}

/* ---- any input --------------------------------------------------------------------- */

/* Random bytes, and a valid pipelined stream with a few bytes changed, each
 * on its own connection closed for writing after it: the server answers
 * with whole responses or nothing, closes, and goes on serving. */
static void test_random_input_never_breaks_it(void **state) {
    (void)state;
    struct coil_test_child srv;
    int port = start_server(&srv);
    static const char valid[] =
        GET_ROOT "POST /x HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nhello"
                 "PUT / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
                 "3\r\nabc\r\n0\r\n\r\nHEAD / HTTP/1.0\r\n\r\n";
    size_t rounds = coil_test_scaled(300, 100);
    uint64_t rng = 12345;
    char data[3000], buf[65536];
    for (size_t r = 0; r < rounds; r++) {
        size_t len;
        if (r % 2 == 0) {
            len = 1 + (size_t)(coil_test_mix64(rng++) % sizeof data);
            coil_test_pattern_fill(data, len, r, 0);
            if (r % 4 == 0) memcpy(data, "GET ", 4); /* past the method, now and then */
        } else {
            len = sizeof valid - 1;
            memcpy(data, valid, len);
            for (int k = 0; k < 3; k++) {
                uint64_t x = coil_test_mix64(rng++);
                data[x % len] = (char)(x >> 32);
            }
        }
        int fd = connect_to(port);
        send_bytes(fd, data, len);
        shutdown(fd, SHUT_WR);
        size_t got = 0;
        ssize_t n;
        /* SO_RCVTIMEO makes recv fail with EINTR after any handled signal,
         * SA_RESTART or not (signal(7)): retry, as expect_response does. */
        while ((n = recv(fd, buf + got, sizeof buf - got, 0)) > 0 || (n < 0 && errno == EINTR))
            if (n > 0) got += (size_t)n;
        if (n < 0) fail_msg("round %zu: %s", r, strerror(errno));
        close(fd);
        if (got > 0 && (got < 9 || memcmp(buf, "HTTP/1.1 ", 9) != 0)) {
            print_escaped("sent", data, len);
            print_escaped("received", buf, got);
            fail_msg("round %zu: not a response", r);
        }
    }
    int fd = connect_to(port);
    send_str(fd, GET_ROOT);
    expect_response(fd, R200);
    close(fd);
    stop_server_ok(&srv);
}

/* ---- SIGTERM, -v ------------------------------------------------------------------ */

static void test_sigterm_with_open_connections(void **state) {
    (void)state;
    struct coil_test_child srv;
    int port = start_server_args(&srv, (const char *const[]){"-v", NULL});
    int idle = connect_to(port); /* after a request */
    send_str(idle, GET_ROOT);
    expect_response(idle, R200);
    int half = connect_to(port); /* in the middle of a head */
    send_str(half, "GET / HTTP/1.1\r\nHost: localhost\r\nHo");
    int body = connect_to(port); /* in the middle of a body */
    send_str(body, "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 100\r\n\r\nabc");
    int fresh = connect_to(port); /* nothing sent */
    int gone = connect_to(port);  /* one request, then the client leaves */
    send_str(gone, GET_ROOT);
    expect_response(gone, R200);
    close(gone);
    /* With two threads the five tasklets log on two schedulers: a later
     * connection's line may come before an earlier one's. */
    if (!coil_test_child_read(&srv, ": disconnected, 1 requests", 10000) ||
        !coil_test_child_read_count(&srv, ": connected\n", 5, 10000) ||
        coil_test_count(srv.err, ": connected\n") != 5) {
        coil_test_child_describe(&srv);
        fail_msg("coil-http -v did not log 5 connections and 1 disconnection");
    }

    int64_t ms = stop_server(&srv, SIGTERM);
    if (!coil_test_child_exited(&srv, 0) || ms > 5000) {
        print_message("server took %lld ms to exit\n", (long long)ms);
        coil_test_child_describe(&srv);
        fail_msg("coil-http did not exit 0 promptly on SIGTERM");
    }
    int fds[] = {idle, half, body, fresh};
    for (size_t i = 0; i < 4; i++) {
        expect_closed(fds[i], 5000);
        close(fds[i]);
    }
    if (coil_test_count(srv.err, ": closed at shutdown, ") != 4 ||
        !strstr(srv.err, "coil-http: 5 connections served, 2 responses delivered\n")) {
        coil_test_child_describe(&srv);
        fail_msg("coil-http did not log 4 connections closed at shutdown and the summary");
    }
    /* Dealt out in turn: idle, body and gone (two requests) on thread 0,
     * half and fresh on 1. */
    if (!strcmp(threads, "2") &&
        (!strstr(srv.err, "coil-http: thread 0: 3 connections, 2 requests\n") ||
         !strstr(srv.err, "coil-http: thread 1: 2 connections, 0 requests\n"))) {
        coil_test_child_describe(&srv);
        fail_msg("coil-http did not deal the connections out to its two threads in turn");
    }
    coil_test_child_free(&srv);
}

static void test_sigint_exits_0(void **state) {
    (void)state;
    struct coil_test_child srv;
    int port = start_server(&srv);
    int fd = connect_to(port);
    send_str(fd, GET_ROOT);
    expect_response(fd, R200);
    int64_t ms = stop_server(&srv, SIGINT);
    if (!coil_test_child_exited(&srv, 0) || ms > 5000) {
        coil_test_child_describe(&srv);
        fail_msg("coil-http did not exit 0 promptly on SIGINT");
    }
    expect_closed(fd, 5000);
    close(fd);
    coil_test_child_free(&srv);
}

/* ---- arguments ------------------------------------------------------------------ */

static void test_bad_arguments_exit_2(void **state) {
    (void)state;
    expect_usage((char *[]){COIL_HTTP_BIN, NULL});
    expect_usage((char *[]){COIL_HTTP_BIN, "--port", "70000", NULL});
    expect_usage((char *[]){COIL_HTTP_BIN, "--port", "80x", NULL});
    expect_usage((char *[]){COIL_HTTP_BIN, "--port", "8000", "extra", NULL});
    expect_usage((char *[]){COIL_HTTP_BIN, "--port", "8000", "--idle-timeout-ms", "x", NULL});
    expect_usage((char *[]){COIL_HTTP_BIN, "--port", "8000", "--header-timeout-ms", "-1", NULL});
    expect_usage((char *[]){COIL_HTTP_BIN, "--port", "8000", "--request-timeout-ms", "1s", NULL});
    expect_usage((char *[]){COIL_HTTP_BIN, "--port", "8000", "--body-min-rate", "-5", NULL});
    expect_usage((char *[]){COIL_HTTP_BIN, "--bogus", NULL});
    static const char *const bad_threads[] = {"abc", "-1", "1025",
                                              "",    "2x", "99999999999999999999"};
    for (size_t i = 0; i < sizeof bad_threads / sizeof bad_threads[0]; i++) {
        char says[64];
        snprintf(says, sizeof says, "coil-http: --threads %s: not a number from 0 to 1024\n",
                 bad_threads[i]);
        expect_usage_saying(
            (char *[]){COIL_HTTP_BIN, "--port", "0", "--threads", (char *)bad_threads[i], NULL},
            says);
    }
}

int main(void) {
    if (getenv("COIL_UNDER_QEMU")) {
        /* qemu-user runs this process, not the programs it would exec. */
        fprintf(stderr, "test_http_example: skipped under qemu\n");
        return 77;
    }
    signal(SIGPIPE, SIG_IGN);
    coil_test_apply_filter();
    const struct CMUnitTest servers[] = {
        cmocka_unit_test_teardown(test_get_root, kill_leftover_server),
        cmocka_unit_test_teardown(test_keep_alive_five_requests, kill_leftover_server),
        cmocka_unit_test_teardown(test_head_404_405, kill_leftover_server),
        cmocka_unit_test_teardown(test_long_target_414_and_version_505, kill_leftover_server),
        cmocka_unit_test_teardown(test_pipelining, kill_leftover_server),
        cmocka_unit_test_teardown(test_bodies_keep_pipelining_in_step, kill_leftover_server),
        cmocka_unit_test_teardown(test_http10_closes, kill_leftover_server),
        cmocka_unit_test_teardown(test_connection_close_closes, kill_leftover_server),
        cmocka_unit_test_teardown(test_malformed_request_400, kill_leftover_server),
        cmocka_unit_test_teardown(test_header_too_large_431, kill_leftover_server),
        cmocka_unit_test_teardown(test_slowloris_disconnected, kill_leftover_server),
        cmocka_unit_test_teardown(test_idle_connection_closed, kill_leftover_server),
        cmocka_unit_test_teardown(test_slow_body_cut_off, kill_leftover_server),
        cmocka_unit_test_teardown(test_smuggling_shapes_rejected, kill_leftover_server),
        cmocka_unit_test_teardown(test_expect_100_continue, kill_leftover_server),
        cmocka_unit_test_teardown(test_summary_counts_delivered, kill_leftover_server),
        cmocka_unit_test_teardown(test_many_concurrent_clients, kill_leftover_server),
        cmocka_unit_test_teardown(test_random_input_never_breaks_it, kill_leftover_server),
        cmocka_unit_test_teardown(test_sigterm_with_open_connections, kill_leftover_server),
        cmocka_unit_test_teardown(test_sigint_exits_0, kill_leftover_server),
    };
    const struct CMUnitTest others[] = {
        cmocka_unit_test_teardown(test_bad_arguments_exit_2, kill_leftover_server),
    };
    int failed = cmocka_run_group_tests_name("--threads 1", servers, with_one_thread, NULL);
    failed += cmocka_run_group_tests_name("--threads 2", servers, with_two_threads, NULL);
    return failed + cmocka_run_group_tests(others, NULL, NULL);
}
#endif
