/* End-to-end test of examples/multi.c (coil-multi: libcurl's multi interface
 * waited for with coil_wait_fd, no coil_install), run as a child process
 * against an HTTP server that this test starts in another child:
 *  - four pages of different sizes (10 KB to 1 MB) download, each with its
 *    exact byte count and checksum (FNV-1a of the bytes), and the program
 *    exits 0;
 *  - the downloads overlap: the server holds every response until all four
 *    requests are in its hands (a barrier, not a clock), so a program that
 *    downloaded one page after another would never get its first page (the
 *    barrier gives up after 30 s and the case fails on what it says);
 *  - Ctrl-C while every download waits for its response: exit 130, each
 *    download said cancelled;
 *  - a page that does not exist (404) is a failure: exit 1, the others
 *    still downloaded;
 *  - bad arguments: usage, exit 2.
 * coil-multi's path comes from tests/CMakeLists.txt (COIL_MULTI_BIN); without
 * it (no libcurl) the test is skipped. The program inherits COIL_BACKEND.
 * Under Valgrind only this process and its server child are watched. */
#include "coil_test.h"
#include "example_test.h"

#ifndef COIL_MULTI_BIN
int main(void) {
    fprintf(stderr, "test_multi_example: coil-multi is not built; skipped\n");
    return 77;
}
#else

/* ---- the server: a child process running coil ----------------------------- */

/* Page k has 10,000 * k bytes, byte j being 'A' + (k + j) % 26 (not the
 * example's own offline pattern: these bytes come from here). */
static size_t page_len(int k) {
    return (size_t)k * 10000;
}

static uint32_t page_fnv(int k) {
    uint32_t h = 2166136261u;
    for (size_t j = 0; j < page_len(k); j++)
        h = (h ^ (unsigned char)('A' + (k + j) % 26)) * 16777619u;
    return h;
}

struct server_cfg {
    int listener;
    int barrier; /* responses wait until this many requests are in hand */
    int total;   /* connections to serve, then the server ends */
    coil_wg *in_hand;
};

struct conn {
    struct server_cfg *cfg;
    int fd;
};

static void serve_conn(void *arg) {
    struct conn *c = arg;
    char req[4096];
    size_t got = 0;
    while (got < sizeof req - 1) {
        ssize_t n =
            coil_recv_dl(c->fd, req + got, sizeof req - 1 - got, 0, coil_test_in(30 * COIL_SEC));
        if (n <= 0) goto out;
        got += (size_t)n;
        req[got] = '\0';
        if (strstr(req, "\r\n\r\n")) break;
    }
    int k = 0;
    if (sscanf(req, "GET /page%d ", &k) != 1) k = 0;
    fprintf(stderr, "request /page%d\n", k);
    coil_wg_done(c->cfg->in_hand);
    if (coil_wg_wait(c->cfg->in_hand, coil_test_in(30 * COIL_SEC)) != 0)
        fprintf(stderr, "barrier: gave up waiting\n");
    char head[160];
    if (k < 1 || k > 1000) {
        int h =
            snprintf(head, sizeof head,
                     "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        coil_sendall(c->fd, head, (size_t)h, 0, coil_test_in(30 * COIL_SEC));
        goto out;
    }
    size_t len = page_len(k);
    char *body = malloc(len);
    for (size_t j = 0; j < len; j++)
        body[j] = (char)('A' + (k + j) % 26);
    int h = snprintf(head, sizeof head,
                     "HTTP/1.1 200 OK\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n", len);
    coil_sendall(c->fd, head, (size_t)h, 0, coil_test_in(30 * COIL_SEC));
    coil_sendall(c->fd, body, len, 0, coil_test_in(30 * COIL_SEC));
    free(body);
out:
    coil_close(c->fd);
    free(c);
}

static void server_main(void *arg) {
    struct server_cfg *cfg = arg;
    coil_wg_open(&cfg->in_hand);
    coil_wg_add(cfg->in_hand, cfg->barrier);
    coil_id ids[16];
    int n = 0;
    for (; n < cfg->total && n < 16; n++) {
        int fd = coil_accept(cfg->listener, NULL, NULL);
        if (fd < 0) break;
        struct conn *c = malloc(sizeof *c);
        *c = (struct conn){cfg, fd};
        ids[n] = coil_spawn(serve_conn, c, NULL);
    }
    for (int i = 0; i < n; i++)
        coil_join(ids[i], COIL_FOREVER);
    coil_wg_free(cfg->in_hand);
    fprintf(stderr, "server: served %d\n", n);
}

static void server_child(void *arg) {
    _exit(coil_run(server_main, arg) == 0 ? 0 : 1);
}

/* Starts the server child; returns its port. */
static int start_server(struct coil_test_child *srv, int barrier, int total) {
    struct coil_test_addr a;
    struct server_cfg cfg = {.barrier = barrier, .total = total};
    cfg.listener = coil_test_raw_bound(AF_INET, SOCK_STREAM, 64, &a);
    assert_true(cfg.listener >= 0);
    coil_test_child_start(srv, server_child, &cfg);
    close(cfg.listener); /* the child has it */
    return coil_test_port(&a);
}

/* ---- running coil-multi ----------------------------------------------------- */

/* Runs coil-multi on the pages (k = 0: a page that does not exist) of the
 * server at port; its output is left in *c. */
static void run_multi(struct coil_test_child *c, int port, const int *pages, int n) {
    static char urls[8][64];
    char *argv[10] = {COIL_MULTI_BIN};
    for (int i = 0; i < n; i++) {
        if (pages[i])
            snprintf(urls[i], sizeof urls[i], "http://127.0.0.1:%d/page%d", port, pages[i]);
        else
            snprintf(urls[i], sizeof urls[i], "http://127.0.0.1:%d/nothing", port);
        argv[i + 1] = urls[i];
    }
    argv[n + 1] = NULL;
    coil_test_child_start(c, coil_test_exec_child, argv);
}

/* The line for page k says its exact bytes and checksum. */
static bool says_page(const char *out, int port, int k) {
    char want[160];
    snprintf(want, sizeof want, "http://127.0.0.1:%d/page%d in ", port, k);
    const char *line = strstr(out, want);
    if (!line || strncmp(line - 11, "Downloaded ", 11) != 0) return false;
    snprintf(want, sizeof want, " seconds (%zu bytes, fnv %08x)\n", page_len(k), page_fnv(k));
    const char *end = strchr(line, '\n');
    const char *hit = strstr(line, want);
    return hit && hit + strlen(want) - 1 == end;
}

static void fail_with(struct coil_test_child *multi, struct coil_test_child *srv,
                      const char *what) {
    print_message("coil-multi:\n");
    coil_test_child_describe(multi);
    print_message("server:\n");
    coil_test_child_describe(srv);
    fail_msg("%s", what);
}

static void test_downloads_overlap_with_exact_bytes(void **state) {
    (void)state;
    const int pages[] = {1, 7, 30, 100}; /* 10 KB .. 1 MB */
    struct coil_test_child srv, multi;
    int port = start_server(&srv, 4, 4);
    run_multi(&multi, port, pages, 4);
    coil_test_child_finish(&multi, 60000);
    coil_test_child_finish(&srv, 10000);
    if (!coil_test_child_exited(&multi, 0)) fail_with(&multi, &srv, "coil-multi did not exit 0");
    for (int i = 0; i < 4; i++)
        if (!says_page(multi.err, port, pages[i]))
            fail_with(&multi, &srv, "a page's bytes or checksum are wrong");
    if (!coil_test_child_exited(&srv, 0) || strstr(srv.err, "barrier") ||
        !strstr(srv.err, "server: served 4\n"))
        fail_with(&multi, &srv, "the four requests were not in the server's hands at once");
    coil_test_child_free(&multi);
    coil_test_child_free(&srv);
}

static void test_not_found_fails_others_download(void **state) {
    (void)state;
    const int pages[] = {2, 0, 3};
    struct coil_test_child srv, multi;
    int port = start_server(&srv, 3, 3);
    run_multi(&multi, port, pages, 3);
    coil_test_child_finish(&multi, 60000);
    coil_test_child_finish(&srv, 10000);
    char failed[128];
    snprintf(failed, sizeof failed, "Failed http://127.0.0.1:%d/nothing: ", port);
    if (!coil_test_child_exited(&multi, 1) || !strstr(multi.err, failed) ||
        !strstr(multi.err, "(HTTP 404)") || !says_page(multi.err, port, 2) ||
        !says_page(multi.err, port, 3))
        fail_with(&multi, &srv, "a 404 is not one failure among good downloads");
    coil_test_child_free(&multi);
    coil_test_child_free(&srv);
}

static void test_ctrl_c_while_downloading(void **state) {
    (void)state;
    const int pages[] = {1, 2, 3};
    struct coil_test_child srv, multi;
    int port = start_server(&srv, 4, 3); /* a barrier never reached: responses wait */
    run_multi(&multi, port, pages, 3);
    if (!coil_test_child_read_count(&srv, "request /page", 3, 30000)) {
        kill(multi.pid, SIGKILL);
        kill(srv.pid, SIGKILL);
        coil_test_child_finish(&multi, 10000);
        coil_test_child_finish(&srv, 10000);
        fail_with(&multi, &srv, "the three requests did not reach the server");
    }
    kill(multi.pid, SIGINT);
    coil_test_child_finish(&multi, 20000);
    kill(srv.pid, SIGKILL);
    coil_test_child_finish(&srv, 10000);
    if (!coil_test_child_exited(&multi, 130) || !strstr(multi.err, "Cancelled 3 download(s)\n") ||
        strstr(multi.err, "Downloaded "))
        fail_with(&multi, &srv, "Ctrl-C did not cancel the three downloads and exit 130");
    coil_test_child_free(&multi);
    coil_test_child_free(&srv);
}

static void test_usage(void **state) {
    (void)state;
    expect_usage((char *[]){COIL_MULTI_BIN, "-x", NULL});
}

int main(void) {
    coil_test_apply_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_downloads_overlap_with_exact_bytes),
        cmocka_unit_test(test_not_found_fails_others_download),
        cmocka_unit_test(test_ctrl_c_while_downloading),
        cmocka_unit_test(test_usage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif
