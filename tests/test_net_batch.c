/* Batched waits (io_uring, see ur_wait in src/io/uring.c): under load a
 * blocking wait asks the kernel for several completions at once, holding
 * none back longer than COIL_BATCH_WAIT_US once one has come; when they come
 * one at a time the ask falls back to one. What the backend asks for is read
 * from coil_dump's backend line ("io_uring: a wait asks for N completions").
 *  - 64 TCP pairs ping-pong checksummed 512-byte messages in one scheduler:
 *    every byte arrives intact, and the ask grows above one meanwhile;
 *  - then, while the 64 servers wait in a receive each (so that the ask is
 *    not capped by what is in flight), one token goes back and forth 200
 *    times over another pair with a 20 ms batch wait: the ask falls back,
 *    so the 200 trips take far less than the 4 s they would if each were
 *    held back the full 20 ms;
 *  - four clients on threads of their own, each waiting for its echo, beside
 *    60 idle connections, see an ask of one throughout (a third of the four
 *    active tasklets, at least one; without that cap the ask reached four);
 *  - a sleep while 64 receives wait in the kernel ends at its deadline, also
 *    one (1 ms) shorter than the batch wait (200 ms);
 *  - COIL_BATCH_WAIT_US=0 turns batching off; a value that is not a number
 *    of microseconds up to 1 s is ignored (the default, 200 us, holds).
 * On epoll there is no such line and only the data and timing checks run;
 * under Valgrind, in a ThreadSanitizer build, or before Linux 6.12, the
 * line says why waits are not batched. */
// coil-test: tsan (plain client threads against a scheduler)
#include "coil_test.h"

#include <linux/io_uring.h>
#include <pthread.h>
#include <sys/syscall.h>

/* Whether this kernel has IORING_FEAT_MIN_TIMEOUT (Linux 6.12), asked of
 * the kernel itself: where it does, the backend must batch (a test that
 * took "not batched" at its word could never fail). */
static bool kernel_has_min_timeout(void) {
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    long fd = syscall(__NR_io_uring_setup, 1, &p);
    if (fd < 0) return false;
    close((int)fd);
    return p.features & (1U << 15);
}

#define PAIRS  64
#define MSG    512
#define TRIPS  200
#define HOLDUS 20000 /* the batch wait of the lone-token part: 20 ms */

static int rounds(void) {
    return (int)coil_test_scaled(300, 20);
}

/* The backend's line of a dump, or "" on a backend that has none. */
static void backend_line(char *line, size_t cap) {
    char *text = NULL;
    size_t len = 0;
    line[0] = '\0';
    FILE *f = open_memstream(&text, &len);
    if (!EXPECT(f != NULL)) return;
    EXPECT(coil_dump(f) >= 1);
    fclose(f);
    if (!coil_test_find_line(text, "io_uring:", line, cap)) line[0] = '\0';
    free(text);
}

/* The current ask, 0 when waits are not batched (or not io_uring). */
static unsigned current_ask(void) {
    char line[256];
    backend_line(line, sizeof line);
    const char *p = strstr(line, "asks for ");
    unsigned n = 0;
    if (p && sscanf(p, "asks for %u", &n) == 1) return n;
    return 0;
}

static bool batching_expected(void) {
    return strcmp(coil_backend_name(), "io_uring") == 0 && !coil_test_under_valgrind() &&
           !coil_test_under_tsan();
}

/* ---- the load ------------------------------------------------------------ */

struct pair {
    int c, s; /* client and server ends */
    int idx;
    bool ok;
};

struct load {
    struct pair p[PAIRS];
    unsigned ask_max;   /* the largest ask seen during the load */
    int64_t sleep_ms;   /* how long the 30 ms sleep took */
    int64_t short_ms;   /* how long the 1 ms sleep took */
    unsigned ask_sleep; /* the ask just before it */
    int64_t trips_ms;   /* how long the lone token's trips took */
    unsigned ask_before, ask_after;
    bool trips_ok;
    bool servers_stay; /* the servers wait for one more message after the load */
};

static struct load *L;

static void server(void *arg) {
    struct pair *p = arg;
    char buf[MSG];
    int n = rounds() + (L->servers_stay ? 1 : 0);
    for (int r = 0; r < n; r++) {
        ssize_t got = coil_test_recv_all(p->s, buf, MSG, coil_test_in(60 * COIL_SEC), NULL);
        if (got == 0 && r == rounds()) return; /* the client closed: the end */
        if (!EXPECT_EQ(got, MSG)) return;
        if (!EXPECT_EQ(coil_sendall(p->s, buf, MSG, 0, coil_test_in(60 * COIL_SEC)), MSG)) return;
    }
}

static void client(void *arg) {
    struct pair *p = arg;
    char out[MSG], in[MSG];
    for (int r = 0; r < rounds(); r++) {
        coil_test_pattern_fill(out, MSG, (uint64_t)p->idx, (uint64_t)r * MSG);
        if (!EXPECT_EQ(coil_sendall(p->c, out, MSG, 0, coil_test_in(60 * COIL_SEC)), MSG)) return;
        if (!EXPECT_EQ(coil_test_recv_all(p->c, in, MSG, coil_test_in(60 * COIL_SEC), NULL), MSG))
            return;
        if (!EXPECT_EQ(coil_test_pattern_check(in, MSG, (uint64_t)p->idx, (uint64_t)r * MSG), MSG))
            return;
        if (p->idx == 0) { /* mid-load: what does a wait ask for now? */
            unsigned a = current_ask();
            if (a > L->ask_max) L->ask_max = a;
        }
    }
    p->ok = true;
}

/* Makes the PAIRS connections; on a failure closes those made and returns
 * false. */
static bool make_pairs(struct load *l) {
    for (int i = 0; i < PAIRS; i++) {
        l->p[i].idx = i;
        if (!EXPECT_EQ(coil_test_raw_tcp_pair(AF_INET, &l->p[i].c, &l->p[i].s), 0)) {
            while (i-- > 0) {
                close(l->p[i].c);
                close(l->p[i].s);
            }
            return false;
        }
    }
    return true;
}

/* Closes the client ends (each server sees the end of its stream), joins
 * the servers, closes their ends. */
static void end_pairs(struct load *l, const coil_id *servers) {
    for (int i = 0; i < PAIRS; i++)
        coil_close(l->p[i].c);
    for (int i = 0; i < PAIRS; i++) {
        EXPECT_EQ(coil_join(servers[i], COIL_FOREVER), 0);
        coil_close(l->p[i].s);
    }
}

static void run_load(struct load *l, coil_id *servers) {
    coil_id clients[PAIRS];
    for (int i = 0; i < PAIRS; i++) {
        servers[i] = coil_spawn(server, &l->p[i], NULL);
        clients[i] = coil_spawn(client, &l->p[i], NULL);
        EXPECT(servers[i] > 0 && clients[i] > 0);
    }
    for (int i = 0; i < PAIRS; i++)
        EXPECT_EQ(coil_join(clients[i], COIL_FOREVER), 0);
}

/* Runs the load, after which the servers wait in one more receive each:
 * receives in flight, and an ask still high. */
static bool load_then_wait(struct load *l, coil_id *servers) {
    L = l;
    l->servers_stay = true;
    if (!make_pairs(l)) return false;
    run_load(l, servers);
    return true;
}

/* ---- 1. under load, the ask grows; every byte arrives --------------------------- */

static void load_main(void *arg) {
    struct load *l = arg;
    L = l;
    if (!make_pairs(l)) return;
    coil_id servers[PAIRS];
    run_load(l, servers);
    end_pairs(l, servers);
}

static void test_ask_grows_under_load(void **state) {
    (void)state;
    struct load l;
    memset(&l, 0, sizeof l);
    COIL_RUN_CHECKED(load_main, &l);
    for (int i = 0; i < PAIRS; i++)
        assert_true(l.p[i].ok);
    print_message("%s: the largest ask during the load: %u\n", coil_backend_name(), l.ask_max);
    if (batching_expected() && l.ask_max == 0 && !kernel_has_min_timeout()) {
        /* Not batched here: a kernel before 6.12. Say so; nothing to check. */
        print_message("waits are not batched on this kernel\n");
        return;
    }
    if (batching_expected()) assert_true(l.ask_max >= 2);
}

/* ---- 2. one completion at a time: the ask falls back --------------------------- */

static void token_b(void *arg) {
    struct pair *p = arg;
    char t;
    for (int i = 0; i < TRIPS; i++) {
        if (!EXPECT_EQ(coil_recv(p->s, &t, 1, 0), 1)) return;
        t++;
        if (!EXPECT_EQ(coil_send(p->s, &t, 1, 0), 1)) return;
    }
}

static void lone_main(void *arg) {
    struct load *l = arg;
    coil_id servers[PAIRS];
    if (!load_then_wait(l, servers)) return;
    int c, s;
    if (!EXPECT_EQ(coil_test_raw_tcp_pair(AF_INET, &c, &s), 0)) return;
    struct pair tp = {.c = c, .s = s};
    l->ask_before = current_ask();
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    coil_id b = coil_spawn(token_b, &tp, NULL);
    char t = 0;
    bool ok = true;
    for (int i = 0; i < TRIPS && ok; i++) {
        ok = EXPECT_EQ(coil_send(c, &t, 1, 0), 1) && EXPECT_EQ(coil_recv(c, &t, 1, 0), 1) &&
             EXPECT_EQ((unsigned char)t, (unsigned char)(i + 1));
    }
    l->trips_ms = coil_test_ms_since(&t0);
    l->trips_ok = ok;
    l->ask_after = current_ask();
    EXPECT_EQ(coil_join(b, COIL_FOREVER), 0);
    coil_close(c);
    coil_close(s);
    end_pairs(l, servers);
}

static void test_lone_completions_are_not_held(void **state) {
    (void)state;
    struct load l;
    memset(&l, 0, sizeof l);
    char hold[32];
    snprintf(hold, sizeof hold, "%d", HOLDUS);
    setenv("COIL_BATCH_WAIT_US", hold, 1);
    COIL_RUN_CHECKED(lone_main, &l);
    unsetenv("COIL_BATCH_WAIT_US");
    print_message("%s: ask %u before %d trips of a lone token, %u after; they took %lld ms\n",
                  coil_backend_name(), l.ask_before, TRIPS, l.ask_after, (long long)l.trips_ms);
    assert_true(l.trips_ok);
    /* Held back every time, the trips would take TRIPS x 20 ms = 4 s. */
    assert_true(l.trips_ms < (int64_t)TRIPS * HOLDUS / 1000 / 2);
    /* A trip brings the other side's receive and this side's send (or the
     * reverse) together: the ask settles at two at most. */
    if (batching_expected() && kernel_has_min_timeout()) {
        assert_true(l.ask_after >= 1); /* batched: the line names an ask */
        assert_true(l.ask_after <= 2);
    }
}

/* ---- 2b. a few clients that wait for their answers: no lock-step ---------------- */

#define FEW 4

/* A client on a thread of its own, outside coil: plain blocking calls, one
 * message at a time, each waiting for its echo; at the end it shuts its
 * sending side down, which ends its server. */
static void *few_client(void *arg) {
    struct pair *p = arg;
    char out[MSG], in[MSG];
    bool ok = true;
    for (int r = 0; r < rounds() && ok; r++) {
        coil_test_pattern_fill(out, MSG, (uint64_t)p->idx, (uint64_t)r * MSG);
        ok = send(p->c, out, MSG, MSG_NOSIGNAL) == MSG;
        size_t got = 0;
        while (ok && got < MSG) {
            ssize_t n = recv(p->c, in + got, MSG - got, 0);
            ok = n > 0;
            if (ok) got += (size_t)n;
        }
        ok = ok && coil_test_pattern_check(in, MSG, (uint64_t)p->idx, (uint64_t)r * MSG) == MSG;
    }
    p->ok = ok;
    shutdown(p->c, SHUT_WR);
    return NULL;
}

/* An echo server tasklet that also notes the largest ask it sees. */
static void few_server(void *arg) {
    struct pair *p = arg;
    char buf[MSG];
    for (;;) {
        ssize_t got = coil_test_recv_all(p->s, buf, MSG, coil_test_in(60 * COIL_SEC), NULL);
        if (got == 0) return;
        if (!EXPECT_EQ(got, MSG)) return;
        if (!EXPECT_EQ(coil_sendall(p->s, buf, MSG, 0, coil_test_in(60 * COIL_SEC)), MSG)) return;
        unsigned a = current_ask();
        if (a > L->ask_max) L->ask_max = a;
    }
}

/* A connection that stays idle: its server waits in a receive until the
 * end. */
static void idle_server(void *arg) {
    struct pair *p = arg;
    char c;
    EXPECT_EQ(coil_recv(p->s, &c, 1, 0), 0);
}

static void few_main(void *arg) {
    struct load *l = arg;
    L = l;
    coil_id servers[FEW], idlers[PAIRS];
    pthread_t th[FEW];
    int started = 0;
    if (!make_pairs(l)) return;
    /* 60 idle connections: receives in flight that never complete. */
    for (int i = FEW; i < PAIRS; i++)
        EXPECT((idlers[i] = coil_spawn(idle_server, &l->p[i], NULL)) > 0);
    struct timespec t0;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < FEW; i++) {
        servers[i] = coil_spawn(few_server, &l->p[i], NULL);
        if (!EXPECT(servers[i] > 0)) break;
        if (!EXPECT_EQ(pthread_create(&th[i], NULL, few_client, &l->p[i]), 0)) {
            shutdown(l->p[i].c, SHUT_WR); /* ends the server just spawned */
            started++;
            th[i] = 0;
            break;
        }
        started++;
    }
    /* Joining the servers lets this scheduler run (a pthread_join here
     * would block it); each ends when its client has shut its side
     * down. */
    for (int i = 0; i < started; i++)
        EXPECT_EQ(coil_join(servers[i], COIL_FOREVER), 0);
    l->trips_ms = coil_test_ms_since(&t0);
    for (int i = 0; i < started; i++) {
        /* A server that stopped early leaves its client in a receive:
         * this ends it. */
        shutdown(l->p[i].s, SHUT_RDWR);
        if (th[i]) pthread_join(th[i], NULL);
    }
    for (int i = FEW; i < PAIRS; i++) {
        shutdown(l->p[i].c, SHUT_WR);
        if (idlers[i] > 0) EXPECT_EQ(coil_join(idlers[i], COIL_FOREVER), 0);
    }
    for (int i = 0; i < PAIRS; i++) {
        close(l->p[i].c);
        coil_close(l->p[i].s);
    }
}

/* Four clients outside coil each send a message and wait for its echo, beside
 * 60 idle connections. An ask for all of their completions would hold the
 * first until the last came, and the clients would go in lock-step with the
 * server (a third of their rate lost, in the echo benchmark with 4
 * connections). The ask stays at most a third of the tasklets active: here,
 * one (four without the cap); the idle receives in flight do not count. */
static void test_few_clients_not_in_lock_step(void **state) {
    (void)state;
    struct load l;
    memset(&l, 0, sizeof l);
    COIL_RUN_CHECKED(few_main, &l);
    for (int i = 0; i < FEW; i++)
        assert_true(l.p[i].ok);
    print_message("%s: %d clients on threads, %d rounds each: %lld ms; the largest ask meanwhile: "
                  "%u\n",
                  coil_backend_name(), FEW, rounds(), (long long)l.trips_ms, l.ask_max);
    if (batching_expected() && kernel_has_min_timeout()) assert_int_equal(l.ask_max, 1);
}

/* ---- 3. a sleep while receives wait in the kernel ------------------------------- */

static void sleep_main(void *arg) {
    struct load *l = arg;
    coil_id servers[PAIRS];
    if (!load_then_wait(l, servers)) return;
    struct timespec t0;
    l->ask_sleep = current_ask(); /* still high from the load */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    EXPECT_EQ(coil_sleep(COIL_MSEC), 0);
    l->short_ms = coil_test_ms_since(&t0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    EXPECT_EQ(coil_sleep(30 * COIL_MSEC), 0);
    l->sleep_ms = coil_test_ms_since(&t0);
    end_pairs(l, servers);
}

static void test_sleep_with_receives_in_flight(void **state) {
    (void)state;
    struct load l;
    memset(&l, 0, sizeof l);
    setenv("COIL_BATCH_WAIT_US", "200000", 1);
    COIL_RUN_CHECKED(sleep_main, &l);
    unsetenv("COIL_BATCH_WAIT_US");
    print_message("with %d receives in flight and a 200 ms batch wait: with the ask at %u, a "
                  "1 ms sleep took %lld ms; then a 30 ms sleep took %lld ms\n",
                  PAIRS, l.ask_sleep, (long long)l.short_ms, (long long)l.sleep_ms);
    assert_true(l.sleep_ms >= 30);
    assert_true(l.sleep_ms < 30 + 1000 * coil_test_slack() / COIL_SEC);
    /* A minimum wait that ran past the timer would make it 200 ms. */
    assert_true(l.short_ms >= 1);
    assert_true(l.short_ms < 100);
}

/* ---- 4. COIL_BATCH_WAIT_US --------------------------------------------------------- */

static char line_seen[256];

static void line_main(void *arg) {
    (void)arg;
    backend_line(line_seen, sizeof line_seen);
}

static const char *line_with(const char *value) {
    if (value)
        setenv("COIL_BATCH_WAIT_US", value, 1);
    else
        unsetenv("COIL_BATCH_WAIT_US");
    COIL_RUN_CHECKED(line_main, NULL);
    unsetenv("COIL_BATCH_WAIT_US");
    print_message("COIL_BATCH_WAIT_US=%s: \"%s\"\n", value ? value : "(unset)", line_seen);
    return line_seen;
}

static void test_batch_wait_setting(void **state) {
    (void)state;
    if (strcmp(coil_backend_name(), "io_uring") != 0) {
        assert_string_equal(line_with("0"), ""); /* epoll: no such line */
        return;
    }
    if (coil_test_under_tsan()) { /* waits in ppoll there: see ur_wait */
        assert_non_null(strstr(line_with(NULL), "not batched (ThreadSanitizer build)"));
        return;
    }
    if (coil_test_under_valgrind()) {
        /* Said only where coil was built with valgrind/valgrind.h. */
        print_message("under Valgrind: \"%s\"\n", line_with(NULL));
        return;
    }
    const char *dflt = line_with(NULL);
    if (strstr(dflt, "Linux < 6.12")) {
        assert_false(kernel_has_min_timeout()); /* the backend must not miss it */
        print_message("waits are not batched on this kernel\n");
        return;
    }
    assert_non_null(strstr(dflt,
                           "a wait asks for 1 completion (at most 1 now: 64, or a third of the 0 "
                           "tasklets active in the last epoch), none held back over 200 us"));
    assert_non_null(strstr(line_with("0"), "not batched (COIL_BATCH_WAIT_US=0)"));
    assert_non_null(strstr(line_with("300"), "over 300 us"));
    assert_non_null(strstr(line_with("1000000"), "over 1000000 us"));
    assert_non_null(strstr(line_with("1000001"), "over 200 us")); /* over 1 s: ignored */
    assert_non_null(strstr(line_with("abc"), "over 200 us"));
    assert_non_null(strstr(line_with("12x"), "over 200 us"));
    assert_non_null(strstr(line_with("+300"), "over 200 us"));
    assert_non_null(strstr(line_with(" 300"), "over 200 us"));
    assert_non_null(strstr(line_with("-0"), "over 200 us"));
    assert_non_null(strstr(line_with(""), "over 200 us"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ask_grows_under_load),
        cmocka_unit_test(test_lone_completions_are_not_held),
        cmocka_unit_test(test_few_clients_not_in_lock_step),
        cmocka_unit_test(test_sleep_with_receives_in_flight),
        cmocka_unit_test(test_batch_wait_setting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
