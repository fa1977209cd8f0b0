/* Several threads, each running its own scheduler at the same time, each
 * with real work: a loopback echo server and its clients (dialled by name,
 * so the resolver runs on the shared offload pool for every thread at once),
 * sleeps between rounds, an unbuffered channel that carries each client's
 * result to its main tasklet and a buffered one that a counting tasklet
 * drains. Every byte that comes back is checked against what was sent, and
 * each thread's totals afterwards on the main thread.
 *
 * coil-test: tsan: THREADS schedulers on as many threads at once, sharing
 * the offload pool, the signal eventfd and the process-wide state of coil. */
// coil-test: tsan (see above)
#include "coil_test.h"

#define THREADS 4
#define CLIENTS 6
#define MSG     1500

struct thread_ctx;

struct client {
    struct thread_ctx *ctx;
    int idx;
    int port;
};

/* What a client sends its main tasklet when it is done. */
struct result {
    int idx;
    int rounds_ok;
    size_t bytes;
    int err; /* 0, or the first error it met */
};

struct thread_ctx {
    int tag;
    int rounds;
    pthread_barrier_t *start;
    coil_chan *results;  /* struct result, unbuffered */
    coil_chan *progress; /* size_t bytes per round, buffered */
    /* Filled by the thread itself, read after pthread_join. */
    int run_rc;
    int results_got;
    int rounds_ok;
    size_t bytes;
    size_t counted; /* by the counting tasklet, from `progress` */
    int echoed_conns;
    int first_err;
};

static uint64_t seed_of(const struct thread_ctx *c, int client, int round) {
    return ((uint64_t)c->tag << 32) ^ ((uint64_t)client << 16) ^ (uint64_t)round;
}

static void note_err(struct thread_ctx *c, int err) {
    if (!c->first_err) c->first_err = err;
}

static void echo_conn(void *arg) {
    int fd = (int)(intptr_t)arg;
    char buf[4096];
    for (;;) {
        ssize_t n = coil_recv_dl(fd, buf, sizeof buf, 0, coil_test_in(60 * COIL_SEC));
        if (n <= 0) break;
        if (coil_sendall(fd, buf, (size_t)n, MSG_NOSIGNAL, coil_test_in(60 * COIL_SEC)) != n) break;
    }
    coil_close(fd);
}

struct acceptor {
    struct thread_ctx *ctx;
    int listener;
};

static void acceptor_fn(void *arg) {
    struct acceptor *a = arg;
    for (int i = 0; i < CLIENTS; i++) {
        int fd = coil_accept_dl(a->listener, NULL, NULL, coil_test_in(60 * COIL_SEC));
        if (fd < 0) {
            note_err(a->ctx, fd);
            return;
        }
        if (coil_spawn(echo_conn, (void *)(intptr_t)fd, NULL) < 0) {
            coil_close(fd);
            note_err(a->ctx, -ENOMEM);
            return;
        }
        a->ctx->echoed_conns++;
    }
}

static void client_fn(void *arg) {
    struct client *cl = arg;
    struct thread_ctx *c = cl->ctx;
    struct result r = {.idx = cl->idx};
    char port[16];
    snprintf(port, sizeof port, "%d", cl->port);
    /* Half by name: getaddrinfo on the offload pool, which every thread's
     * scheduler uses at once. */
    int fd = coil_dial(cl->idx % 2 ? "localhost" : "127.0.0.1", port, SOCK_STREAM,
                       coil_test_in(60 * COIL_SEC));
    if (fd < 0) {
        r.err = fd;
    } else {
        char out[MSG], in[MSG];
        for (int round = 0; round < c->rounds && !r.err; round++) {
            uint64_t seed = seed_of(c, cl->idx, round);
            size_t len = 1 + (size_t)(coil_test_mix64(seed) % MSG);
            coil_test_pattern_fill(out, len, seed, 0);
            ssize_t n = coil_sendall(fd, out, len, MSG_NOSIGNAL, coil_test_in(60 * COIL_SEC));
            if (n != (ssize_t)len) {
                r.err = n < 0 ? (int)n : -EIO;
                break;
            }
            n = coil_test_recv_all(fd, in, len, coil_test_in(60 * COIL_SEC), NULL);
            if (n != (ssize_t)len) {
                r.err = n < 0 ? (int)n : -EPIPE;
                break;
            }
            if (coil_test_pattern_check(in, len, seed, 0) != len) {
                r.err = -EBADMSG;
                break;
            }
            r.rounds_ok++;
            r.bytes += len;
            size_t bytes = len;
            int e = coil_chan_send(c->progress, &bytes);
            if (e) r.err = e;
            if (round % 4 == 0) coil_sleep(COIL_MSEC);
        }
        coil_close(fd);
    }
    int e = coil_chan_send(c->results, &r);
    if (e) note_err(c, e);
}

static void counter_fn(void *arg) {
    struct thread_ctx *c = arg;
    size_t bytes;
    while (coil_chan_recv(c->progress, &bytes) == 0)
        c->counted += bytes;
}

static void thread_main(void *arg) {
    struct thread_ctx *c = arg;
    if (coil_chan_open(&c->results, sizeof(struct result), 0) ||
        coil_chan_open(&c->progress, sizeof(size_t), 8)) {
        note_err(c, -ENOMEM);
        return;
    }
    struct acceptor a = {.ctx = c, .listener = coil_listen_on("127.0.0.1", "0", 64)};
    struct coil_test_addr addr;
    if (a.listener < 0 || coil_test_sockname(a.listener, &addr) != 0) {
        note_err(c, a.listener < 0 ? a.listener : -EIO);
        return;
    }
    coil_id acc = coil_spawn(acceptor_fn, &a, NULL);
    coil_id counter = coil_spawn(counter_fn, c, NULL);
    struct client clients[CLIENTS];
    coil_id ids[CLIENTS];
    for (int i = 0; i < CLIENTS; i++) {
        clients[i] = (struct client){.ctx = c, .idx = i, .port = coil_test_port(&addr)};
        ids[i] = coil_spawn(client_fn, &clients[i], NULL);
    }
    for (int i = 0; i < CLIENTS; i++) {
        struct result r;
        int e = coil_chan_recv_dl(c->results, &r, coil_test_in(120 * COIL_SEC));
        if (e) {
            note_err(c, e);
            break;
        }
        c->results_got++;
        c->rounds_ok += r.rounds_ok;
        c->bytes += r.bytes;
        if (r.err) note_err(c, r.err);
    }
    for (int i = 0; i < CLIENTS; i++)
        coil_join(ids[i], coil_test_in(60 * COIL_SEC));
    coil_chan_close(c->progress); /* the counter has everything: it ends */
    coil_join(counter, coil_test_in(60 * COIL_SEC));
    coil_join(acc, coil_test_in(60 * COIL_SEC));
    coil_close(a.listener);
    coil_chan_free(c->results);
    coil_chan_free(c->progress);
}

static void *thread_body(void *arg) {
    struct thread_ctx *c = arg;
    pthread_barrier_wait(c->start); /* the schedulers start together */
    c->run_rc = coil_run(thread_main, c);
    return NULL;
}

static void test_schedulers_on_threads_at_once(void **state) {
    (void)state;
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, THREADS), 0);
    struct thread_ctx ctx[THREADS];
    pthread_t th[THREADS];
    int rounds = (int)coil_test_scaled(64, 8);
    for (int i = 0; i < THREADS; i++) {
        ctx[i] = (struct thread_ctx){.tag = 100 + i, .rounds = rounds, .start = &start};
        assert_int_equal(pthread_create(&th[i], NULL, thread_body, &ctx[i]), 0);
    }
    for (int i = 0; i < THREADS; i++)
        assert_int_equal(pthread_join(th[i], NULL), 0);
    pthread_barrier_destroy(&start);
    for (int i = 0; i < THREADS; i++) {
        const struct thread_ctx *c = &ctx[i];
        if (c->first_err)
            fail_msg("thread %d: first error %d (%s)", i, c->first_err, strerror(-c->first_err));
        assert_int_equal(c->run_rc, 0);
        assert_int_equal(c->results_got, CLIENTS);
        assert_int_equal(c->echoed_conns, CLIENTS);
        assert_int_equal(c->rounds_ok, CLIENTS * rounds);
        assert_true(c->bytes >= (size_t)(CLIENTS * rounds));
        assert_int_equal(c->counted, c->bytes);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_schedulers_on_threads_at_once),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
