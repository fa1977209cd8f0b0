// coil-test: link-shared
/* coil_install with real, unmodified libraries against real servers started
 * by the test: libcurl's easy API over HTTP and HTTPS, OpenSSL (the HTTPS
 * server: blocking BIOs in tasklets), and hiredis's blocking API against a
 * redis-server child process. After coil_install, each library's blocking
 * calls made inside a tasklet park only that tasklet, so many of them run at
 * once in one thread:
 *  - 50 HTTP downloads from a server that answers each request after 200 ms
 *    take about one delay, not fifty; every body arrives intact, and every
 *    request but the first came while another was waiting in the server;
 *  - the same for 20 HTTPS downloads (a self-signed certificate made here,
 *    verified by curl through CURLOPT_CAINFO);
 *  - a transfer whose tasklet is killed while connecting, while waiting for
 *    the response and in the middle of the body ends with libcurl's exact
 *    error (CURLE_BAD_FUNCTION_ARGUMENT) and coil_killed() says 1;
 *  - 20 hiredis BLPOPs, each on its own connection, are blocked in the server
 *    at once and all end when another tasklet pushes after 300 ms;
 *    SET/GET/INCR round trips from several tasklets interleave and stay
 *    correct; hiredis's SO_RCVTIMEO (redisSetTimeout) is honoured per tasklet;
 *  - everything at once in one coil_run;
 *  - OpenSSL's error queue, kept in pthread thread-specific data, is each
 *    tasklet's own: an error one tasklet raised and has not yet read is not
 *    seen, nor cleared, by another that runs meanwhile; and 20 tasklets
 *    loading the CA file 100 times each while a plain thread does the same
 *    all succeed (before each tasklet had its own, about one load in 2,000
 *    failed with "PEM lib": another tasklet's error sat on top of the queue
 *    when the PEM reader looked there for its end-of-file mark);
 *  - outside coil_run (the main thread, a plain pthread) the same libraries
 *    work as without coil.
 *
 * The HTTP and HTTPS servers run in tasklets of their own scheduler on a
 * second thread (coil_run there), so a client that failed to park would only
 * be slow (serial), never deadlock the server: the timing checks then fail.
 * redis-server (from PATH) is started on a loopback port and a unix socket in
 * a temporary directory; without it the Redis cases are skipped.
 *
 * Each HTTPS download costs CPU on the clients' thread that does not park
 * (libcurl builds an SSL_CTX per handle, then the handshake): about 4 ms
 * natively, 20 ms under ASan (its malloc), 300 ms under Valgrind. So that
 * this stays well below the delay, ASan builds use a 500 ms delay, and under
 * Valgrind fewer downloads run (10 HTTP, 5 HTTPS) with a 3 s delay; the
 * parallel run must then still take less than half of what a serial one
 * would. Valgrind checks this process only (redis-server is exec'd
 * unwatched). */
#define _GNU_SOURCE /* pipe2 */
// coil-test: tsan (libcurl's resolver threads, the servers' threads and schedulers)
#include "coil_test.h"

#include <dirent.h>
#include <pthread.h>

#include <curl/curl.h>
#include <hiredis/hiredis.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

/* ---- sizes and delays ------------------------------------------------------ */

static int n_http(void) {
    return (int)coil_test_scaled(50, 10);
}

static int n_https(void) {
    return (int)coil_test_scaled(20, 5);
}

static int n_blpop(void) {
    return (int)coil_test_scaled(20, 10);
}

/* The server's delay before each answer, in ms: longer where the
 * instrumentation (ASan, TSan) makes each TLS handshake slow, so that the
 * delay, not the handshakes, still sets the time of a parallel run. */
static int64_t delay_ms(void) {
    return coil_test_under_valgrind() ? 3000 : COIL_TEST_ASAN || coil_test_under_tsan() ? 500 : 200;
}

/* The longest a parallel run of n requests, each delayed by delay, may take:
 * five delays (a serial run takes n delays: 50 x 200 ms = 10 s). Under
 * Valgrind, less than the serial time itself: there every TLS handshake takes
 * ~1 s of CPU on the one core Valgrind serialises all threads onto (client and
 * server alike), so half the serial time was missed on a loaded CI machine
 * (8.4 s and 11.4 s against 7.5 s for 5 x 3 s). A serial client still cannot
 * pass (it takes n delays plus its handshakes), and the callers prove the
 * overlap directly as well (the server's count of concurrent requests). */
static int64_t parallel_limit_ms(int n, int64_t delay) {
    return coil_test_under_valgrind() ? n * delay : 5 * delay;
}

/* Page i: its length and its bytes (coil_test_pattern stream body_seed(i)).
 * Up to 60 KB, so that a body takes several reads (and TLS records). */
static size_t body_len(int i) {
    return 1000 + (size_t)(i * 7919) % 60000;
}

static uint64_t body_seed(int i) {
    return 0xc011000 + (uint64_t)i;
}

static void sleep_ms(int ms) {
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

/* ======================================================================== */
/* The HTTP and HTTPS servers: tasklets of a scheduler on their own thread  */
/* ======================================================================== */

struct server {
    pthread_t thread;
    bool running;
    int http_l, https_l; /* listeners, made before the thread starts */
    uint16_t http_port, https_port;
    int stop[2];  /* main writes a byte to stop[1] to stop the server */
    SSL_CTX *ctx; /* the HTTPS server's: the test certificate and key */
    int run_rc;   /* the server thread's coil_run result */
    /* Shared with the test thread (atomics): */
    int64_t delay_ns;          /* before each answer */
    int inflight;              /* requests read, not yet answered */
    int peak;                  /* the most in flight at one time */
    int overlapped;            /* requests that came while another was waiting */
    int served;                /* responses sent in full */
    int finished;              /* connections closed, served or not */
    int errors;                /* connections that failed on the server's side */
    int64_t first_in, last_in; /* coil_now() when the first and last requests came */
};

static struct server srv;

/* The test's files: the certificate (for curl's CAINFO), redis's socket. */
static char tmpdir[64];
static char cert_path[128];
static X509 *cert;
static EVP_PKEY *key;

static void server_reset_counters(int64_t delay) {
    __atomic_store_n(&srv.delay_ns, delay * COIL_MSEC, __ATOMIC_SEQ_CST);
    __atomic_store_n(&srv.inflight, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&srv.peak, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&srv.overlapped, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&srv.served, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&srv.errors, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&srv.finished, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&srv.first_in, 0, __ATOMIC_SEQ_CST);
    __atomic_store_n(&srv.last_in, 0, __ATOMIC_SEQ_CST);
}

static int server_get(int *counter) {
    return __atomic_load_n(counter, __ATOMIC_SEQ_CST);
}

/* Waits (up to 10 s) until the server has closed n connections, so that its
 * counters are final. A client may have every byte of its response before
 * the server's tasklet that sent it runs again and counts it: the send is
 * done in the kernel, but the server thread has not yet reaped it (seen in
 * CI, 2 cores and two test processes: 15 of 50 still uncounted when the
 * clients were done, and counted in the next test). */
static void server_settle(int n) {
    for (int i = 0; i < 10000 && server_get(&srv.finished) < n; i++)
        sleep_ms(1);
}

static void server_error(const char *what, int idx) {
    fprintf(stderr, "server: connection %d: %s failed\n", idx, what);
    ERR_print_errors_fp(stderr);
    ERR_clear_error();
    __atomic_add_fetch(&srv.errors, 1, __ATOMIC_SEQ_CST);
}

struct conn {
    int fd;
    bool tls;
};

/* One connection: read the request head ("GET /<index> ..."), wait the
 * delay, answer with page <index>, close. HTTPS goes through OpenSSL's
 * blocking API on the blocking fd: SSL_accept, SSL_read and SSL_write park
 * this tasklet through coil_install, like any other library's calls. */
static void serve_conn(void *arg) {
    struct conn c = *(struct conn *)arg;
    free(arg);
    SSL *ssl = NULL;
    char *resp = NULL;
    char req[4096];
    size_t got = 0;
    int idx = -1;
    req[0] = '\0';
    coil_set_timeout(c.fd, 30 * COIL_SEC); /* no connection holds the server forever */
    if (c.tls) {
        ssl = SSL_new(srv.ctx);
        if (!ssl || SSL_set_fd(ssl, c.fd) != 1 || SSL_accept(ssl) != 1) {
            server_error("SSL_accept", idx);
            goto out;
        }
    }
    while (!strstr(req, "\r\n\r\n")) {
        if (got == sizeof req - 1) {
            server_error("request head (too long)", idx);
            goto out;
        }
        ssize_t n;
        if (c.tls) {
            int r = SSL_read(ssl, req + got, (int)(sizeof req - 1 - got));
            n = r > 0 ? r : -1;
        } else {
            n = coil_recv(c.fd, req + got, sizeof req - 1 - got, 0);
        }
        if (n <= 0) {
            server_error("reading the request", idx);
            goto out;
        }
        got += (size_t)n;
        req[got] = '\0';
    }
    if (sscanf(req, "GET /%d ", &idx) != 1 || idx < 0 || idx > 1000) {
        server_error("parsing the request", idx);
        goto out;
    }
    int64_t zero = 0, at = coil_now();
    __atomic_compare_exchange_n(&srv.first_in, &zero, at, false, __ATOMIC_SEQ_CST,
                                __ATOMIC_SEQ_CST);
    __atomic_store_n(&srv.last_in, at, __ATOMIC_SEQ_CST);
    int now = __atomic_add_fetch(&srv.inflight, 1, __ATOMIC_SEQ_CST);
    if (now > 1) __atomic_add_fetch(&srv.overlapped, 1, __ATOMIC_SEQ_CST);
    int peak = __atomic_load_n(&srv.peak, __ATOMIC_SEQ_CST);
    while (now > peak && !__atomic_compare_exchange_n(&srv.peak, &peak, now, false,
                                                      __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
    }
    coil_sleep(__atomic_load_n(&srv.delay_ns, __ATOMIC_SEQ_CST)); /* a slow server */
    __atomic_sub_fetch(&srv.inflight, 1, __ATOMIC_SEQ_CST);

    size_t blen = body_len(idx);
    resp = malloc(blen + 256);
    if (!resp) {
        server_error("malloc", idx);
        goto out;
    }
    int hlen = snprintf(resp, 256,
                        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                        "Content-Length: %zu\r\nConnection: close\r\n\r\n",
                        blen);
    coil_test_pattern_fill(resp + hlen, blen, body_seed(idx), 0);
    size_t total = (size_t)hlen + blen;
    if (c.tls) {
        size_t written = 0;
        if (SSL_write_ex(ssl, resp, total, &written) != 1 || written != total) {
            server_error("SSL_write", idx);
            goto out;
        }
        SSL_shutdown(ssl); /* close_notify; the client may be gone already */
        ERR_clear_error();
    } else if (coil_sendall(c.fd, resp, total, 0, COIL_FOREVER) != (ssize_t)total) {
        server_error("sending the response", idx);
        goto out;
    }
    __atomic_add_fetch(&srv.served, 1, __ATOMIC_SEQ_CST);
out:
    free(resp);
    SSL_free(ssl);
    coil_close(c.fd);
    __atomic_add_fetch(&srv.finished, 1, __ATOMIC_SEQ_CST);
}

static void acceptor(void *arg) {
    bool tls = arg != NULL;
    int l = tls ? srv.https_l : srv.http_l;
    for (;;) {
        int fd = coil_accept(l, NULL, NULL);
        if (fd == -EBADF || fd == -ECANCELED) break; /* closed by server_main: the end */
        if (fd < 0) {
            server_error("accept", -1);
            coil_sleep(10 * COIL_MSEC);
            continue;
        }
        struct conn *c = malloc(sizeof *c);
        if (!c) {
            coil_close(fd);
            continue;
        }
        *c = (struct conn){fd, tls};
        if (coil_spawn(serve_conn, c, NULL) < 0) {
            free(c);
            coil_close(fd);
        }
    }
}

static void server_main(void *arg) {
    (void)arg;
    coil_spawn(acceptor, NULL, &(coil_spawn_opts){.name = "http"});
    coil_spawn(acceptor, (void *)1, &(coil_spawn_opts){.name = "https"});
    char b;
    coil_read(srv.stop[0], &b, 1); /* until the test is over */
    coil_close(srv.http_l);        /* the acceptors end; connections finish */
    coil_close(srv.https_l);
}

static void *server_thread(void *arg) {
    (void)arg;
    srv.run_rc = coil_run(server_main, NULL);
    return NULL;
}

/* ---- the test certificate --------------------------------------------------- */

/* A self-signed P-256 certificate for 127.0.0.1 and localhost, its key, and
 * the certificate in PEM at cert_path. */
static void make_certificate(void) {
    key = EVP_EC_gen("P-256");
    assert_non_null(key);
    cert = X509_new();
    assert_non_null(cert);
    assert_int_equal(X509_set_version(cert, 2), 1);
    assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(cert), 1), 1);
    assert_non_null(X509_gmtime_adj(X509_getm_notBefore(cert), -3600));
    assert_non_null(X509_gmtime_adj(X509_getm_notAfter(cert), 7 * 86400));
    assert_int_equal(X509_set_pubkey(cert, key), 1);
    X509_NAME *name = X509_get_subject_name(cert);
    assert_int_equal(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
                                                (const unsigned char *)"coil test", -1, -1, 0),
                     1);
    assert_int_equal(X509_set_issuer_name(cert, name), 1);
    X509V3_CTX v3;
    X509V3_set_ctx_nodb(&v3);
    X509V3_set_ctx(&v3, cert, cert, NULL, NULL, 0);
    const struct {
        int nid;
        const char *value;
    } exts[] = {
        {NID_basic_constraints, "critical,CA:TRUE"},
        {NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost"},
    };
    for (size_t i = 0; i < sizeof exts / sizeof exts[0]; i++) {
        X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &v3, exts[i].nid, exts[i].value);
        assert_non_null(ext);
        assert_int_equal(X509_add_ext(cert, ext, -1), 1);
        X509_EXTENSION_free(ext);
    }
    assert_true(X509_sign(cert, key, EVP_sha256()) > 0);
    snprintf(cert_path, sizeof cert_path, "%s/cert.pem", tmpdir);
    FILE *f = fopen(cert_path, "w");
    assert_non_null(f);
    assert_int_equal(PEM_write_X509(f, cert), 1);
    assert_int_equal(fclose(f), 0);
}

static void server_start(void) {
    struct coil_test_addr a;
    srv.http_l = coil_test_raw_bound(AF_INET, SOCK_STREAM, 256, &a);
    assert_true(srv.http_l >= 0);
    srv.http_port = coil_test_port(&a);
    srv.https_l = coil_test_raw_bound(AF_INET, SOCK_STREAM, 256, &a);
    assert_true(srv.https_l >= 0);
    srv.https_port = coil_test_port(&a);
    assert_int_equal(pipe2(srv.stop, O_CLOEXEC), 0);
    srv.ctx = SSL_CTX_new(TLS_server_method());
    assert_non_null(srv.ctx);
    assert_int_equal(SSL_CTX_use_certificate(srv.ctx, cert), 1);
    assert_int_equal(SSL_CTX_use_PrivateKey(srv.ctx, key), 1);
    server_reset_counters(delay_ms());
    srv.run_rc = -1;
    assert_int_equal(pthread_create(&srv.thread, NULL, server_thread, NULL), 0);
    srv.running = true;
}

static void server_stop(void) {
    if (!srv.running) return;
    srv.running = false;
    assert_int_equal(write(srv.stop[1], "x", 1), 1);
    assert_int_equal(pthread_join(srv.thread, NULL), 0);
    close(srv.stop[0]);
    close(srv.stop[1]);
    SSL_CTX_free(srv.ctx);
    srv.ctx = NULL;
    assert_int_equal(srv.run_rc, 0);
}

/* ======================================================================== */
/* The client side: libcurl's easy API                                      */
/* ======================================================================== */

struct download {
    char url[96];
    int idx;
    bool tls;
    char *body;
    size_t len, cap;
    CURLcode rc;
    long status;
    char error[CURL_ERROR_SIZE];
};

static size_t on_body(char *data, size_t size, size_t n, void *arg) {
    struct download *d = arg;
    size_t add = size * n;
    if (d->len + add > d->cap) {
        size_t cap = (d->len + add) * 2;
        char *grown = realloc(d->body, cap);
        if (!grown) return 0; /* curl fails the transfer */
        d->body = grown;
        d->cap = cap;
    }
    memcpy(d->body + d->len, data, add);
    d->len += add;
    return add;
}

static void download_init(struct download *d, int idx, bool tls) {
    memset(d, 0, sizeof *d);
    d->idx = idx;
    d->tls = tls;
    snprintf(d->url, sizeof d->url, "%s://127.0.0.1:%d/%d", tls ? "https" : "http",
             tls ? srv.https_port : srv.http_port, idx);
}

static void download_free(struct download *d) {
    free(d->body);
    d->body = NULL;
}

/* One download with curl_easy_perform, which blocks until it is done: a
 * coil_fn, and callable outside any tasklet as well. */
static void download_fn(void *arg) {
    struct download *d = arg;
    CURL *h = curl_easy_init();
    if (!h) {
        d->rc = CURLE_FAILED_INIT;
        return;
    }
    curl_easy_setopt(h, CURLOPT_URL, d->url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, d);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, d->error);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L); /* no SIGALRM, no signal handlers */
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    if (d->tls) { /* verify the server against the test's own certificate */
        curl_easy_setopt(h, CURLOPT_CAINFO, cert_path);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
        curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    }
    d->rc = curl_easy_perform(h);
    curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &d->status);
    curl_easy_cleanup(h);
}

/* True when d got page d->idx intact; says what went wrong otherwise. */
static bool download_ok(const struct download *d) {
    if (d->rc != CURLE_OK) {
        fprintf(stderr, "%s: curl: %s (%s)\n", d->url, curl_easy_strerror(d->rc), d->error);
        return false;
    }
    if (d->status != 200) {
        fprintf(stderr, "%s: HTTP status %ld\n", d->url, d->status);
        return false;
    }
    if (d->len != body_len(d->idx)) {
        fprintf(stderr, "%s: %zu bytes, want %zu\n", d->url, d->len, body_len(d->idx));
        return false;
    }
    size_t bad = coil_test_pattern_check(d->body, d->len, body_seed(d->idx), 0);
    if (bad != d->len) {
        fprintf(stderr, "%s: byte %zu differs\n", d->url, bad);
        return false;
    }
    return true;
}

/* A set of downloads run in parallel, one tasklet each. */
struct batch {
    int n;
    struct download *d;
    int64_t t0, elapsed_ms;
};

static void batch_init(struct batch *b, int n_plain, int n_tls) {
    b->n = n_plain + n_tls;
    b->d = calloc((size_t)b->n, sizeof *b->d);
    assert_non_null(b->d);
    for (int i = 0; i < b->n; i++)
        download_init(&b->d[i], i, i >= n_plain);
    b->elapsed_ms = -1;
}

static void batch_check_and_free(struct batch *b) {
    int bad = 0;
    for (int i = 0; i < b->n; i++) {
        bad += !download_ok(&b->d[i]);
        download_free(&b->d[i]);
    }
    free(b->d);
    b->d = NULL;
    assert_int_equal(bad, 0);
}

/* Spawns the batch's downloads; joins them in batch_join. */
static void batch_spawn(struct batch *b, coil_id *ids) {
    for (int i = 0; i < b->n; i++) {
        ids[i] = coil_spawn(download_fn, &b->d[i], NULL);
        EXPECT(ids[i] > 0);
    }
}

static void batch_join(struct batch *b, coil_id *ids) {
    for (int i = 0; i < b->n; i++)
        if (ids[i] > 0) EXPECT_EQ(coil_join(ids[i], COIL_FOREVER), 0);
}

static void batch_main(void *arg) {
    struct batch *b = arg;
    coil_id *ids = calloc((size_t)b->n, sizeof *ids);
    if (!EXPECT(ids != NULL)) return;
    b->t0 = coil_now();
    batch_spawn(b, ids);
    batch_join(b, ids);
    b->elapsed_ms = (coil_now() - b->t0) / COIL_MSEC;
    free(ids);
}

/* Runs n_plain HTTP and n_tls HTTPS downloads in parallel and checks that
 * they took about one server delay, not one each, that their requests
 * waited in the server together, and that every body arrived intact. */
static void parallel_downloads(int n_plain, int n_tls) {
    int64_t delay = delay_ms();
    server_reset_counters(delay);
    struct batch b;
    batch_init(&b, n_plain, n_tls);
    COIL_RUN_CHECKED(batch_main, &b);
    int n = b.n;
    print_message(
        "%d downloads (%d https), %lld ms each on the server: %lld ms; requests came "
        "at %lld..%lld ms, at most %d at once\n",
        n, n_tls, (long long)delay, (long long)b.elapsed_ms,
        (long long)((__atomic_load_n(&srv.first_in, __ATOMIC_SEQ_CST) - b.t0) / COIL_MSEC),
        (long long)((__atomic_load_n(&srv.last_in, __ATOMIC_SEQ_CST) - b.t0) / COIL_MSEC),
        server_get(&srv.peak));
    batch_check_and_free(&b);
    server_settle(n);
    assert_int_equal(server_get(&srv.errors), 0);
    assert_int_equal(server_get(&srv.served), n);
    /* The clients did not take turns: every request but the first came while
     * another was waiting in the server (serially, none would). Usually all
     * n wait there at once; but the HTTPS downloads come one after another
     * (each first takes CPU without parking, see the top), so on a loaded
     * machine the last ones may come after the first delay is over. */
    assert_int_equal(server_get(&srv.overlapped), n - 1);
    assert_true(b.elapsed_ms >= delay - 5);
    assert_true(b.elapsed_ms < parallel_limit_ms(n, delay));
}

/* ---- 1. libcurl over HTTP ---------------------------------------------------- */

static void test_curl_http_parallel(void **state) {
    (void)state;
    parallel_downloads(n_http(), 0);
}

/* ---- 2. libcurl over HTTPS, OpenSSL on both sides ------------------------------ */

static void test_curl_https_parallel(void **state) {
    (void)state;
    parallel_downloads(0, n_https());
}

/* ---- 3. a killed transfer: what libcurl reports --------------------------------- */

/* A tasklet in curl_easy_perform is killed while libcurl waits: for its
 * connection (a listener whose accept queue is full drops the SYN), for the
 * response (the server read the request and says nothing), or in the middle
 * of the body (the server sent the head and 1000 of 100000 bytes). libcurl's
 * sockets are non-blocking, so it waits only in poll (curl_multi_poll, in
 * the loop of curl_easy_perform), and that poll fails with ECANCELED. libcurl
 * 7.88 (Debian 12) then gives up the transfer as a failure of its multi
 * loop, which curl_easy_perform returns as CURLE_BAD_FUNCTION_ARGUMENT in
 * every phase, with nothing in the error buffer; coil_killed() is what tells
 * the tasklet that it was a cancellation (coil.h says so at coil_killed).
 * The server is a tasklet of the same coil_run. */
enum kill_phase { KILL_CONNECTING, KILL_WAITING, KILL_MID_BODY };

struct kill_run {
    enum kill_phase phase;
    int listener; /* raw, listening */
    char url[64];
    int requests; /* request heads the server read */
    size_t body;  /* body bytes the client's write callback got */
    CURLcode rc;
    int killed; /* coil_killed() in the client after curl_easy_perform */
    long os_errno;
    curl_off_t connect_us; /* CURLINFO_CONNECT_TIME_T: 0 if it never connected */
    char error[CURL_ERROR_SIZE];
};

static size_t kill_on_body(char *data, size_t size, size_t n, void *arg) {
    (void)data;
    ((struct kill_run *)arg)->body += size * n;
    return size * n;
}

static void kill_client(void *arg) {
    struct kill_run *k = arg;
    CURL *h = curl_easy_init();
    if (!EXPECT(h != NULL)) return;
    curl_easy_setopt(h, CURLOPT_URL, k->url);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, kill_on_body);
    curl_easy_setopt(h, CURLOPT_WRITEDATA, k);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, k->error);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_TIMEOUT, 60L);
    k->rc = curl_easy_perform(h);
    k->killed = coil_killed();
    curl_easy_getinfo(h, CURLINFO_OS_ERRNO, &k->os_errno);
    curl_easy_getinfo(h, CURLINFO_CONNECT_TIME_T, &k->connect_us);
    curl_easy_cleanup(h);
}

/* Reads one request head, sends what the phase wants, then waits for the
 * client to go away. */
static void kill_server(void *arg) {
    struct kill_run *k = arg;
    int64_t deadline = coil_now() + 30 * COIL_SEC;
    int fd = coil_accept(k->listener, NULL, NULL);
    if (!EXPECT(fd >= 0)) return;
    char req[4096];
    size_t got = 0;
    req[0] = '\0';
    while (!strstr(req, "\r\n\r\n") && got < sizeof req - 1) {
        ssize_t n = coil_recv_dl(fd, req + got, sizeof req - 1 - got, 0, deadline);
        if (n <= 0) break;
        got += (size_t)n;
        req[got] = '\0';
    }
    if (EXPECT(strstr(req, "\r\n\r\n") != NULL)) k->requests++;
    if (k->phase == KILL_MID_BODY) {
        static const char head[] = "HTTP/1.1 200 OK\r\nContent-Length: 100000\r\n\r\n";
        char part[1000];
        memset(part, 'x', sizeof part);
        EXPECT_EQ(coil_sendall(fd, head, strlen(head), 0, deadline), strlen(head));
        EXPECT_EQ(coil_sendall(fd, part, sizeof part, 0, deadline), sizeof part);
    }
    char b;
    ssize_t n = coil_recv_dl(fd, &b, 1, 0, deadline); /* until the killed client closes */
    EXPECT(n == 0 || n == -ECONNRESET);
    coil_close(fd);
}

static void kill_main(void *arg) {
    struct kill_run *k = arg;
    coil_id server = k->phase == KILL_CONNECTING ? 0 : coil_spawn(kill_server, k, NULL);
    coil_id client = coil_spawn(kill_client, k, NULL);
    if (!EXPECT(client > 0)) return;
    /* This tasklet runs only while the client is parked: in libcurl's poll
     * once the phase is reached. */
    int64_t until = coil_now() + 20 * COIL_SEC;
    if (k->phase == KILL_CONNECTING) coil_sleep(200 * COIL_MSEC); /* its SYN goes unanswered */
    while (coil_now() < until && ((k->phase == KILL_WAITING && k->requests == 0) ||
                                  (k->phase == KILL_MID_BODY && k->body == 0)))
        coil_sleep(COIL_MSEC);
    EXPECT_EQ(coil_kill(client), 0);
    EXPECT_EQ(coil_join(client, COIL_FOREVER), 0);
    if (server > 0) EXPECT_EQ(coil_join(server, coil_now() + 30 * COIL_SEC), 0);
}

static void killed_transfer(enum kill_phase phase, CURLcode want) {
    static const char *const names[] = {"connecting", "waiting for the response", "mid-body"};
    struct kill_run k = {.phase = phase};
    struct coil_test_addr a;
    /* Connecting: backlog 0 takes one connection (the filler's), then the
     * full accept queue drops every SYN, so curl's connect stays pending. */
    k.listener = coil_test_raw_bound(AF_INET, SOCK_STREAM, phase == KILL_CONNECTING ? 0 : 4, &a);
    assert_true(k.listener >= 0);
    int filler = -1;
    if (phase == KILL_CONNECTING) {
        filler = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        assert_true(filler >= 0);
        assert_int_equal(connect(filler, COIL_TEST_SA(&a), a.len), 0);
    }
    snprintf(k.url, sizeof k.url, "http://127.0.0.1:%d/", coil_test_port(&a));
    COIL_RUN_CHECKED(kill_main, &k);
    if (filler >= 0) close(filler);
    close(k.listener);
    print_message("killed %s: %s (%d), \"%s\", os errno %ld, coil_killed %d, %zu body bytes\n",
                  names[phase], curl_easy_strerror(k.rc), (int)k.rc, k.error, k.os_errno, k.killed,
                  k.body);
    assert_int_equal(k.killed, 1);
    assert_int_equal(k.connect_us > 0, phase != KILL_CONNECTING);
    assert_int_equal(k.requests, phase == KILL_CONNECTING ? 0 : 1);
    assert_int_equal(k.body, phase == KILL_MID_BODY ? 1000 : 0);
    assert_int_equal(k.rc, want);
    assert_string_equal(k.error, ""); /* libcurl says nothing more */
}

static void test_curl_killed_connecting(void **state) {
    (void)state;
    killed_transfer(KILL_CONNECTING, CURLE_BAD_FUNCTION_ARGUMENT);
}

static void test_curl_killed_waiting(void **state) {
    (void)state;
    killed_transfer(KILL_WAITING, CURLE_BAD_FUNCTION_ARGUMENT);
}

static void test_curl_killed_mid_body(void **state) {
    (void)state;
    killed_transfer(KILL_MID_BODY, CURLE_BAD_FUNCTION_ARGUMENT);
}

/* ======================================================================== */
/* hiredis against a redis-server child process                             */
/* ======================================================================== */

static struct coil_test_child redis;
static bool redis_up;
static int redis_port;
static char redis_sock[128];
static int key_gen;      /* keys differ from one test to the next */
static bool redis_quiet; /* connection errors are not said (while it starts) */

static void exec_redis(void *arg) {
    char **argv = arg;
    dup2(STDERR_FILENO, STDOUT_FILENO);
    execvp(argv[0], argv);
    fprintf(stderr, "exec %s: %s\n", argv[0], strerror(errno));
    _exit(127);
}

/* Connection i's way to the server: even over TCP, odd over the unix socket;
 * every third with hiredis's connect timeout and SO_RCVTIMEO/SO_SNDTIMEO (10 s,
 * never reached) as well. */
static redisContext *redis_connect(int i) {
    struct timeval tv = {10, 0};
    bool timeouts = i % 3 == 2;
    redisContext *c;
    if (i % 2 == 0)
        c = timeouts ? redisConnectWithTimeout("127.0.0.1", redis_port, tv)
                     : redisConnect("127.0.0.1", redis_port);
    else
        c = timeouts ? redisConnectUnixWithTimeout(redis_sock, tv) : redisConnectUnix(redis_sock);
    if (c && !c->err && timeouts && redisSetTimeout(c, tv) != REDIS_OK)
        fprintf(stderr, "redisSetTimeout: %s\n", c->errstr);
    if (c && c->err) {
        if (!redis_quiet) fprintf(stderr, "redis connect %d: %s\n", i, c->errstr);
        redisFree(c);
        c = NULL;
    }
    return c;
}

/* The reply to a command, or NULL (said on stderr) when it failed. */
static redisReply *redis_cmd(redisContext *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    redisReply *r = redisvCommand(c, fmt, ap);
    va_end(ap);
    if (!r) fprintf(stderr, "redis %s: %s\n", fmt, c->err ? c->errstr : "no reply");
    return r;
}

/* True when the reply is the status or string want. */
static bool reply_is(redisReply *r, const char *want) {
    return r && (r->type == REDIS_REPLY_STATUS || r->type == REDIS_REPLY_STRING) &&
           strcmp(r->str, want) == 0;
}

/* A PING on a new connection i: true when PONG came back. */
static bool redis_ping(int i) {
    redisContext *c = redis_connect(i);
    if (!c) return false;
    redisReply *r = redisCommand(c, "PING");
    bool ok = reply_is(r, "PONG");
    if (r) freeReplyObject(r);
    redisFree(c);
    return ok;
}

/* Starts redis-server on a free loopback port (bound and released just
 * before, so picked by the kernel) and a unix socket, without persistence,
 * and waits until it answers PING on both. Leaves redis_up false (and the
 * Redis cases skipped) if there is no redis-server to run. */
static void redis_start(void) {
    struct coil_test_addr a;
    int fd = coil_test_raw_bound(AF_INET, SOCK_STREAM, -1, &a);
    assert_true(fd >= 0);
    redis_port = coil_test_port(&a);
    close(fd);
    snprintf(redis_sock, sizeof redis_sock, "%s/redis.sock", tmpdir);
    char port[16];
    snprintf(port, sizeof port, "%d", redis_port);
    char *argv[] = {"redis-server", "--port",       port,       "--bind",
                    "127.0.0.1",    "--unixsocket", redis_sock, "--dir",
                    tmpdir,         "--save",       "",         "--appendonly",
                    "no",           "--daemonize",  "no",       "--loglevel",
                    "warning",      "--maxclients", "1000",     NULL};
    coil_test_child_start(&redis, exec_redis, argv);
    bool reaped = false;
    redis_quiet = true; /* refused connections are expected while it starts */
    for (int waited = 0; waited < 20000 && !redis_up; waited += 50) {
        if (redis_ping(0) && redis_ping(1)) {
            redis_up = true;
        } else if (waitpid(redis.pid, &redis.status, WNOHANG) == redis.pid) {
            reaped = true;
            break;
        } else {
            sleep_ms(50);
        }
    }
    redis_quiet = false;
    if (redis_up) return;
    if (reaped) {
        coil_test_child_read(&redis, NULL, 1000);
        if (redis.err_fd >= 0) close(redis.err_fd);
    } else {
        kill(redis.pid, SIGKILL);
        coil_test_child_finish(&redis, 5000);
    }
    if (!coil_test_child_exited(&redis, 127)) {
        coil_test_child_describe(&redis);
        fail_msg("redis-server did not answer PING");
    }
    fprintf(stderr, "test_install_libs: no redis-server to run; the Redis cases are skipped\n");
    coil_test_child_free(&redis);
}

static void redis_stop(void) {
    if (!redis_up) return;
    redis_up = false;
    kill(redis.pid, SIGTERM);
    coil_test_child_finish(&redis, 10000);
    if (!coil_test_child_exited(&redis, 0)) coil_test_child_describe(&redis);
    coil_test_child_free(&redis);
}

/* The number of clients blocked in BLPOP now (INFO clients), or -1. */
static int redis_blocked_clients(redisContext *c) {
    redisReply *r = redis_cmd(c, "INFO clients");
    int n = -1;
    const char *p = r && r->type == REDIS_REPLY_STRING ? strstr(r->str, "blocked_clients:") : NULL;
    if (p) n = atoi(p + strlen("blocked_clients:"));
    if (r) freeReplyObject(r);
    return n;
}

/* ---- 3a. BLPOP on n connections, pushed after 300 ms ---------------------------- */

struct blpop {
    int gen, idx;
    bool ok;
    int64_t done_at;
};

static void blpop_fn(void *arg) {
    struct blpop *b = arg;
    redisContext *c = redis_connect(b->idx);
    if (!EXPECT(c != NULL)) return;
    redisReply *r = redis_cmd(c, "BLPOP coil:%d:list:%d 5", b->gen, b->idx);
    b->done_at = coil_now();
    char want[64];
    snprintf(want, sizeof want, "value-%d", b->idx);
    b->ok = EXPECT(r && r->type == REDIS_REPLY_ARRAY && r->elements == 2) &&
            EXPECT(reply_is(r->element[1], want));
    if (r) freeReplyObject(r);
    redisFree(c);
}

struct pusher {
    int gen, n;
    int64_t after_ns;
    int blocked_seen; /* blocked_clients when the push began */
    int ms_waited_for_blocked;
};

/* After after_ns, waits until all n BLPOPs are blocked in the server (INFO
 * says so at once natively), then pushes one value onto each list. */
static void pusher_fn(void *arg) {
    struct pusher *p = arg;
    redisContext *c = redis_connect(0);
    if (!EXPECT(c != NULL)) return;
    coil_sleep(p->after_ns);
    int64_t t0 = coil_now();
    while ((p->blocked_seen = redis_blocked_clients(c)) != p->n && coil_now() - t0 < 5 * COIL_SEC)
        coil_sleep(10 * COIL_MSEC);
    p->ms_waited_for_blocked = (int)((coil_now() - t0) / COIL_MSEC);
    for (int i = 0; i < p->n; i++) {
        redisReply *r = redis_cmd(c, "RPUSH coil:%d:list:%d value-%d", p->gen, i, i);
        EXPECT(r && r->type == REDIS_REPLY_INTEGER && r->integer == 1);
        if (r) freeReplyObject(r);
    }
    redisFree(c);
}

struct blpop_run {
    int n;
    struct blpop *b;
    struct pusher p;
    int64_t t0;
    int64_t elapsed_ms; /* from the start to the last BLPOP's answer */
};

static void blpop_spawn(struct blpop_run *run, coil_id *ids) {
    run->t0 = coil_now();
    for (int i = 0; i < run->n; i++) {
        ids[i] = coil_spawn(blpop_fn, &run->b[i], NULL);
        EXPECT(ids[i] > 0);
    }
    ids[run->n] = coil_spawn(pusher_fn, &run->p, NULL);
    EXPECT(ids[run->n] > 0);
}

static void blpop_join(struct blpop_run *run, coil_id *ids) {
    for (int i = 0; i <= run->n; i++)
        if (ids[i] > 0) EXPECT_EQ(coil_join(ids[i], COIL_FOREVER), 0);
    int64_t last = run->t0;
    for (int i = 0; i < run->n; i++)
        if (run->b[i].done_at > last) last = run->b[i].done_at;
    run->elapsed_ms = (last - run->t0) / COIL_MSEC;
}

static void blpop_run_init(struct blpop_run *run, int n, int64_t after_ms) {
    memset(run, 0, sizeof *run);
    int gen = ++key_gen;
    run->n = n;
    run->b = calloc((size_t)n, sizeof *run->b);
    assert_non_null(run->b);
    for (int i = 0; i < n; i++)
        run->b[i] = (struct blpop){.gen = gen, .idx = i};
    run->p = (struct pusher){.gen = gen, .n = n, .after_ns = after_ms * COIL_MSEC};
}

static void blpop_run_check_and_free(struct blpop_run *run, int64_t after_ms) {
    int ok = 0;
    for (int i = 0; i < run->n; i++)
        ok += run->b[i].ok;
    free(run->b);
    assert_int_equal(ok, run->n);
    /* All n were blocked in the server at once (serially, at most one). */
    assert_int_equal(run->p.blocked_seen, run->n);
    assert_true(run->elapsed_ms >= after_ms - 5);
    assert_true(run->elapsed_ms < parallel_limit_ms(run->n, after_ms));
}

static void blpop_main(void *arg) {
    struct blpop_run *run = arg;
    coil_id *ids = calloc((size_t)run->n + 1, sizeof *ids);
    if (!EXPECT(ids != NULL)) return;
    blpop_spawn(run, ids);
    blpop_join(run, ids);
    free(ids);
}

static void test_redis_blpop_parallel(void **state) {
    (void)state;
    if (!redis_up) skip();
    const int64_t after = 300;
    struct blpop_run run;
    blpop_run_init(&run, n_blpop(), after);
    COIL_RUN_CHECKED(blpop_main, &run);
    print_message("%d BLPOPs, pushed after %lld ms: %lld ms (waited %d ms more for all blocked)\n",
                  run.n, (long long)after, (long long)run.elapsed_ms, run.p.ms_waited_for_blocked);
    blpop_run_check_and_free(&run, after);
}

/* ---- 3b. SET/GET/INCR round trips from several tasklets at once ---------------- */

enum { SETGET_TASKLETS = 8, SETGET_ROUNDS = 100 };

struct setget {
    int gen, idx;
    int *active, *max_active;
    int ok_rounds;
};

static void setget_fn(void *arg) {
    struct setget *s = arg;
    redisContext *c = redis_connect(s->idx);
    if (!EXPECT(c != NULL)) return;
    if (++*s->active > *s->max_active) *s->max_active = *s->active;
    for (int j = 0; j < SETGET_ROUNDS; j++) {
        char val[64];
        snprintf(val, sizeof val, "v-%d-%d-%d", s->gen, s->idx, j);
        redisReply *r = redis_cmd(c, "SET coil:%d:k:%d:%d %s", s->gen, s->idx, j, val);
        bool ok = EXPECT(reply_is(r, "OK"));
        if (r) freeReplyObject(r);
        r = redis_cmd(c, "GET coil:%d:k:%d:%d", s->gen, s->idx, j);
        ok = EXPECT(reply_is(r, val)) && ok;
        if (r) freeReplyObject(r);
        r = redis_cmd(c, "INCR coil:%d:counter", s->gen);
        ok = EXPECT(r && r->type == REDIS_REPLY_INTEGER) && ok;
        if (r) freeReplyObject(r);
        if (!ok) break;
        s->ok_rounds++;
    }
    --*s->active;
    redisFree(c);
}

struct setget_run {
    struct setget s[SETGET_TASKLETS];
    int active, max_active;
    long long counter;
};

static void setget_main(void *arg) {
    struct setget_run *run = arg;
    coil_id ids[SETGET_TASKLETS];
    for (int i = 0; i < SETGET_TASKLETS; i++)
        EXPECT((ids[i] = coil_spawn(setget_fn, &run->s[i], NULL)) > 0);
    for (int i = 0; i < SETGET_TASKLETS; i++)
        if (ids[i] > 0) EXPECT_EQ(coil_join(ids[i], COIL_FOREVER), 0);
    redisContext *c = redis_connect(1);
    if (!EXPECT(c != NULL)) return;
    redisReply *r = redis_cmd(c, "GET coil:%d:counter", run->s[0].gen);
    if (EXPECT(r && r->type == REDIS_REPLY_STRING)) run->counter = atoll(r->str);
    if (r) freeReplyObject(r);
    redisFree(c);
}

static void test_redis_set_get_concurrent(void **state) {
    (void)state;
    if (!redis_up) skip();
    struct setget_run run;
    memset(&run, 0, sizeof run);
    int gen = ++key_gen;
    for (int i = 0; i < SETGET_TASKLETS; i++)
        run.s[i] = (struct setget){
            .gen = gen, .idx = i, .active = &run.active, .max_active = &run.max_active};
    COIL_RUN_CHECKED(setget_main, &run);
    for (int i = 0; i < SETGET_TASKLETS; i++)
        assert_int_equal(run.s[i].ok_rounds, SETGET_ROUNDS);
    assert_int_equal(run.counter, SETGET_TASKLETS * SETGET_ROUNDS);
    /* Each round trip parked its tasklet, so all were under way at once
     * (a tasklet that blocked its thread would finish before the next began). */
    assert_int_equal(run.max_active, SETGET_TASKLETS);
}

/* ---- 3c. hiredis's SO_RCVTIMEO (redisSetTimeout) per tasklet ------------------ */

enum { TIMEOUT_TASKLETS = 10 };
static const int64_t rcvtimeo_ms = 300;

struct timeout_case {
    int gen, idx;
    int err;
    int64_t took_ms;
};

/* A BLPOP that the server would hold forever, on a connection with a 300 ms
 * SO_RCVTIMEO: hiredis's read fails with EAGAIN after 300 ms. */
static void timeout_fn(void *arg) {
    struct timeout_case *t = arg;
    redisContext *c = redis_connect(t->idx);
    if (!EXPECT(c != NULL)) return;
    struct timeval tv = {0, (suseconds_t)rcvtimeo_ms * 1000};
    EXPECT_EQ(redisSetTimeout(c, tv), REDIS_OK);
    int64_t t0 = coil_now();
    redisReply *r = redisCommand(c, "BLPOP coil:%d:never:%d 0", t->gen, t->idx);
    t->took_ms = (coil_now() - t0) / COIL_MSEC;
    EXPECT(r == NULL);
    if (r) freeReplyObject(r);
    t->err = c->err;
    EXPECT_EQ(c->err, REDIS_ERR_IO);
    EXPECT(strstr(c->errstr, strerror(EAGAIN)) != NULL);
    redisFree(c);
}

static void timeouts_main(void *arg) {
    struct timeout_case *t = arg;
    coil_id ids[TIMEOUT_TASKLETS];
    for (int i = 0; i < TIMEOUT_TASKLETS; i++)
        EXPECT((ids[i] = coil_spawn(timeout_fn, &t[i], NULL)) > 0);
    for (int i = 0; i < TIMEOUT_TASKLETS; i++)
        if (ids[i] > 0) EXPECT_EQ(coil_join(ids[i], COIL_FOREVER), 0);
}

static void test_redis_socket_timeout(void **state) {
    (void)state;
    if (!redis_up) skip();
    struct timeout_case t[TIMEOUT_TASKLETS];
    memset(t, 0, sizeof t);
    int gen = ++key_gen;
    for (int i = 0; i < TIMEOUT_TASKLETS; i++)
        t[i] = (struct timeout_case){.gen = gen, .idx = i};
    int64_t t0 = coil_now();
    COIL_RUN_CHECKED(timeouts_main, t);
    int64_t total = (coil_now() - t0) / COIL_MSEC;
    print_message("%d BLPOPs with SO_RCVTIMEO %lld ms: %lld ms in all\n", TIMEOUT_TASKLETS,
                  (long long)rcvtimeo_ms, (long long)total);
    for (int i = 0; i < TIMEOUT_TASKLETS; i++) {
        assert_int_equal(t[i].err, REDIS_ERR_IO);
        assert_true(t[i].took_ms >= rcvtimeo_ms - 5);                            /* not early */
        assert_true(t[i].took_ms < rcvtimeo_ms + coil_test_slack() / COIL_MSEC); /* not late */
    }
    /* The timeouts ran concurrently (serially: 10 x 300 ms). */
    assert_true(total < parallel_limit_ms(TIMEOUT_TASKLETS, rcvtimeo_ms));
}

/* ======================================================================== */
/* Everything at once                                                       */
/* ======================================================================== */

struct everything {
    struct batch web;
    struct blpop_run kv;
    int64_t elapsed_ms;
};

static void everything_main(void *arg) {
    struct everything *e = arg;
    coil_id *web = calloc((size_t)e->web.n, sizeof *web);
    coil_id *kv = calloc((size_t)e->kv.n + 1, sizeof *kv);
    if (EXPECT(web && kv)) {
        int64_t t0 = coil_now();
        batch_spawn(&e->web, web);
        if (redis_up) blpop_spawn(&e->kv, kv);
        batch_join(&e->web, web);
        if (redis_up) blpop_join(&e->kv, kv);
        e->elapsed_ms = (coil_now() - t0) / COIL_MSEC;
    }
    free(web);
    free(kv);
}

static void test_everything_at_once(void **state) {
    (void)state;
    int64_t delay = delay_ms();
    int n_plain = n_http() / 2, n_tls = n_https() / 2;
    server_reset_counters(delay);
    struct everything e;
    memset(&e, 0, sizeof e);
    batch_init(&e.web, n_plain, n_tls);
    blpop_run_init(&e.kv, n_blpop() / 2, delay);
    COIL_RUN_CHECKED(everything_main, &e);
    print_message("%d downloads (%d https) and %d BLPOPs%s: %lld ms\n", e.web.n, n_tls, e.kv.n,
                  redis_up ? "" : " (skipped: no redis-server)", (long long)e.elapsed_ms);
    int n = e.web.n;
    batch_check_and_free(&e.web);
    server_settle(n);
    assert_int_equal(server_get(&srv.errors), 0);
    assert_int_equal(server_get(&srv.served), n);
    assert_int_equal(server_get(&srv.overlapped), n - 1); /* as in parallel_downloads */
    if (redis_up) {
        blpop_run_check_and_free(&e.kv, delay);
    } else {
        free(e.kv.b);
    }
    assert_true(e.elapsed_ms < parallel_limit_ms(n + e.kv.n, delay));
}

/* ======================================================================== */
/* 4. Pass-through: outside coil_run the libraries work as without coil     */
/* ======================================================================== */

/* A download (HTTP or HTTPS) and a few Redis commands made with no scheduler
 * on the calling thread: coil_install's wrappers go straight to libc. */
struct plain {
    int idx;
    bool http_ok, https_ok, redis_ok;
    int64_t http_ms;
    char why[256];
};

static void plain_calls(struct plain *p) {
    struct download d;
    download_init(&d, p->idx, false);
    int64_t t0 = coil_now();
    download_fn(&d);
    p->http_ms = (coil_now() - t0) / COIL_MSEC;
    p->http_ok = download_ok(&d);
    download_free(&d);
    download_init(&d, p->idx + 1, true);
    download_fn(&d);
    p->https_ok = download_ok(&d);
    download_free(&d);

    p->redis_ok = !redis_up;
    if (!redis_up) return;
    for (int i = 0; i < 2; i++) { /* over TCP, then the unix socket */
        redisContext *c = redis_connect(p->idx + i);
        if (!c) return;
        redisReply *r = redis_cmd(c, "SET coil:plain:%d:%d hello-%d", p->idx, i, i);
        bool ok = reply_is(r, "OK");
        if (r) freeReplyObject(r);
        char want[32];
        snprintf(want, sizeof want, "hello-%d", i);
        r = redis_cmd(c, "GET coil:plain:%d:%d", p->idx, i);
        ok = ok && reply_is(r, want);
        if (r) freeReplyObject(r);
        /* A BLPOP that times out in the server after 1 s: a plain blocking wait. */
        int64_t b0 = coil_now();
        r = redis_cmd(c, "BLPOP coil:plain:never:%d 1", p->idx);
        int64_t waited = (coil_now() - b0) / COIL_MSEC;
        ok = ok && r && r->type == REDIS_REPLY_NIL && waited >= 900;
        if (r) freeReplyObject(r);
        redisFree(c);
        if (!ok) return;
    }
    p->redis_ok = true;
}

/* ---- OpenSSL's per-thread state: each tasklet's own ----------------------------- */

static unsigned long queue_a_error, queue_a_first; /* what A raised: last and first */
static int queue_b_ran;

/* Raises an error by a call that fails: no such file. */
static unsigned long raise_no_such_file(void) {
    BIO *b = BIO_new_file("/nonexistent/coil-test", "r");
    EXPECT(b == NULL);
    return ERR_peek_last_error();
}

static void queue_a(void *arg) {
    (void)arg;
    ERR_clear_error();
    queue_a_error = raise_no_such_file();
    queue_a_first = ERR_peek_error();
    EXPECT(queue_a_error != 0);
    while (!queue_b_ran) /* B runs, and clears and fills its own queue */
        coil_yield();
    /* A's queue as A left it: B neither cleared it nor added to it. */
    EXPECT_EQ(ERR_peek_last_error(), queue_a_error);
    EXPECT_EQ(ERR_peek_error(), queue_a_first);
    ERR_clear_error();
}

static void queue_b(void *arg) {
    (void)arg;
    EXPECT_EQ(ERR_peek_error(), 0); /* not A's */
    /* A DER certificate cut short: an ASN.1 error. */
    const unsigned char junk[] = {0x30, 0x82, 0x01};
    const unsigned char *p = junk;
    EXPECT(d2i_X509(NULL, &p, sizeof junk) == NULL);
    unsigned long e = ERR_peek_last_error();
    EXPECT(e != 0 && e != queue_a_error);
    ERR_clear_error();
    queue_b_ran = 1;
}

static void queue_main(void *arg) {
    (void)arg;
    coil_id a = coil_spawn(queue_a, NULL, NULL);
    coil_yield(); /* A raises its error and waits for B */
    coil_id b = coil_spawn(queue_b, NULL, NULL);
    EXPECT_EQ(coil_join(b, COIL_FOREVER), 0);
    EXPECT_EQ(coil_join(a, COIL_FOREVER), 0);
}

static void test_openssl_error_queue_per_tasklet(void **state) {
    (void)state;
    queue_b_ran = 0;
    COIL_RUN_CHECKED(queue_main, NULL);
}

#define CA_LOADERS 20

static int ca_stop, ca_failed, ca_loads;

static bool load_ca_once(void) {
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    bool ok = ctx && SSL_CTX_load_verify_file(ctx, cert_path) == 1;
    if (!ok) {
        char text[256];
        ERR_error_string_n(ERR_peek_last_error(), text, sizeof text);
        fprintf(stderr, "loading %s failed: %s\n", cert_path, text);
    }
    ERR_clear_error();
    SSL_CTX_free(ctx);
    return ok;
}

static void *ca_thread(void *arg) {
    (void)arg;
    while (!__atomic_load_n(&ca_stop, __ATOMIC_ACQUIRE))
        load_ca_once();
    return NULL;
}

static void ca_loader(void *arg) {
    int n = (int)(intptr_t)arg;
    for (int i = 0; i < n; i++) {
        if (!load_ca_once()) ca_failed++;
        ca_loads++;
    }
}

static void ca_main(void *arg) {
    coil_id ids[CA_LOADERS];
    for (int i = 0; i < CA_LOADERS; i++)
        ids[i] = coil_spawn(ca_loader, arg, NULL);
    for (int i = 0; i < CA_LOADERS; i++)
        EXPECT_EQ(coil_join(ids[i], COIL_FOREVER), 0);
}

/* The plain thread takes OpenSSL's locks while the tasklets run, so that
 * tasklets park inside OpenSSL (on a lock the thread holds) and others run
 * in between: what the HTTPS downloads met now and then. */
static void test_openssl_ca_loads_beside_a_thread(void **state) {
    (void)state;
    int n = (int)coil_test_scaled(100, 5);
    ca_stop = ca_failed = ca_loads = 0;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, ca_thread, NULL), 0);
    COIL_RUN_CHECKED(ca_main, (void *)(intptr_t)n);
    __atomic_store_n(&ca_stop, 1, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    print_message("%d CA file loads in %d tasklets beside a thread: %d failed\n", ca_loads,
                  CA_LOADERS, ca_failed);
    assert_int_equal(ca_loads, CA_LOADERS * n);
    assert_int_equal(ca_failed, 0);
}

static void test_passthrough_main_thread(void **state) {
    (void)state;
    server_reset_counters(delay_ms());
    struct plain p = {.idx = 100};
    plain_calls(&p);
    assert_true(p.http_ok);
    assert_true(p.https_ok);
    assert_true(p.redis_ok);
    assert_true(p.http_ms >= delay_ms() - 5); /* the main thread really waited */
    server_settle(2);
    assert_int_equal(server_get(&srv.errors), 0);
    assert_int_equal(server_get(&srv.served), 2);
}

static void *plain_thread(void *arg) {
    plain_calls(arg);
    return NULL;
}

/* A plain pthread makes the same calls while the main thread runs tasklets
 * that download in parallel: its calls are not taken into the main
 * thread's scheduler, and neither side disturbs the other. */
static void test_passthrough_plain_thread(void **state) {
    (void)state;
    server_reset_counters(delay_ms());
    struct plain p = {.idx = 200};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, plain_thread, &p), 0);
    struct batch b;
    batch_init(&b, 4, 2);
    COIL_RUN_CHECKED(batch_main, &b);
    assert_int_equal(pthread_join(th, NULL), 0);
    batch_check_and_free(&b);
    assert_true(p.http_ok);
    assert_true(p.https_ok);
    assert_true(p.redis_ok);
    server_settle(6 + 2);
    assert_int_equal(server_get(&srv.errors), 0);
    assert_int_equal(server_get(&srv.served), 6 + 2);
}

/* ======================================================================== */

static int remove_tmpdir(void) {
    DIR *dir = opendir(tmpdir);
    if (!dir) return -1;
    struct dirent *e;
    char path[512];
    while ((e = readdir(dir)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(path, sizeof path, "%s/%s", tmpdir, e->d_name);
        unlink(path);
    }
    closedir(dir);
    return rmdir(tmpdir);
}

static int group_setup(void **state) {
    (void)state;
    assert_int_equal(curl_global_init(CURL_GLOBAL_DEFAULT), CURLE_OK);
    /* From here on the blocking calls of libcurl, OpenSSL, hiredis (and this
     * program: it links libcoil.so) park the calling tasklet. */
    assert_int_equal(coil_install(), 0);
    snprintf(tmpdir, sizeof tmpdir, "/tmp/coil-install-libs-XXXXXX");
    assert_non_null(mkdtemp(tmpdir));
    make_certificate();
    server_start();
    redis_start();
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    redis_stop();
    server_stop();
    X509_free(cert);
    EVP_PKEY_free(key);
    remove_tmpdir();
    assert_int_equal(coil_uninstall(), 0);
    curl_global_cleanup();
    return 0;
}

int main(void) {
    coil_test_apply_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_curl_http_parallel),
        cmocka_unit_test(test_curl_https_parallel),
        cmocka_unit_test(test_curl_killed_connecting),
        cmocka_unit_test(test_curl_killed_waiting),
        cmocka_unit_test(test_curl_killed_mid_body),
        cmocka_unit_test(test_redis_blpop_parallel),
        cmocka_unit_test(test_redis_set_get_concurrent),
        cmocka_unit_test(test_redis_socket_timeout),
        cmocka_unit_test(test_everything_at_once),
        cmocka_unit_test(test_openssl_error_queue_per_tasklet),
        cmocka_unit_test(test_openssl_ca_loads_beside_a_thread),
        cmocka_unit_test(test_passthrough_main_thread),
        cmocka_unit_test(test_passthrough_plain_thread),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
