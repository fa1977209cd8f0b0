// coil-test: link-shared
/* coil_install with MariaDB Connector/C (libmariadb, unmodified) against a
 * MariaDB server the test starts (tests/servers/mariadb.c: mariadbd in a
 * temporary directory on a free loopback port and a unix socket, stopped and
 * removed at the end). Each tasklet has its own MYSQL* from mysql_init and
 * mysql_real_connect and makes the library's blocking calls; after
 * coil_install they park only that tasklet:
 *  - 40 tasklets each run `SELECT <i>, ..., SLEEP(0.5)` on their own
 *    connection (half over TCP, half over the unix socket): all finish in
 *    about one sleep, not 40; each gets its own row back; and the server's
 *    clock proves the overlap: every query had begun (NOW(6), the statement's
 *    start) before the first one ended (SYSDATE(6) after the sleep);
 *  - errors come back through the connector's own reporting (mysql_errno,
 *    mysql_error), exactly as it reports them without coil (the same calls
 *    made outside coil_run are compared): connection refused over TCP and
 *    over a unix socket, the server killed (SIGKILL) in the middle of the
 *    queries of several tasklets, MYSQL_OPT_READ_TIMEOUT shorter than a
 *    SLEEP, and MYSQL_OPT_CONNECT_TIMEOUT against a listener that never
 *    sends the server's greeting and against one that never completes the
 *    TCP handshake; while tasklets wait in these, a ticker tasklet keeps
 *    counting;
 *  - with the stall watchdog on, none of this holds the scheduler: the
 *    connector makes no blocking call that coil_install does not divert
 *    (its sockets are non-blocking, MSG_DONTWAIT, and it waits in poll);
 *  - outside coil_run the connector works as without coil.
 *
 * What Connector/C 3.3 (Debian 12's libmariadb3) reports, checked here:
 *  - TCP connection refused: CR_CONNECTION_ERROR (2002, not 2003) with the
 *    text of CR_CONN_HOST_ERROR ("Can't connect to server on '127.0.0.1'
 *    (115)"): errmsg.h says 2003 is "never sent to a client, message only".
 *    The number in parentheses is EINPROGRESS, not ECONNREFUSED: the
 *    connector connects without blocking and reads the failure from
 *    SO_ERROR, but reports errno, which still holds connect's EINPROGRESS.
 *    So does the connector without coil (checked below on the main thread).
 *  - unix socket: 2002, "Can't connect to local server through socket
 *    '<path>' (2)" (ENOENT), or (111) for a socket file nobody listens on.
 *  - server killed during a query: CR_SERVER_LOST (2013) "Lost connection
 *    to server during query"; the next query on that MYSQL* and mysql_ping:
 *    CR_SERVER_GONE_ERROR (2006) "Server has gone away".
 *  - MYSQL_OPT_READ_TIMEOUT (1 s) ending a SLEEP(3): 2013 "Lost connection to
 *    server during query", after 1 s (one poll, no retries); then 2006.
 *  - MYSQL_OPT_CONNECT_TIMEOUT (1 s), no greeting: 2013 "Lost connection to
 *    server at 'handshake: reading initial communication packet', system
 *    error: 110"; no SYN-ACK (a full accept queue): 2002 "Can't connect to
 *    server on '127.0.0.1' (110)". Both after 1 s.
 *
 * Under Valgrind fewer tasklets run (20) and the sleep is 2 s; the bounds on
 * wall time are loose there, and the overlap is proved on the server's clock
 * in every build. Valgrind watches this process only (mariadbd is exec'd
 * unwatched). Without mariadbd (Debian: mariadb-server-core) every case but
 * the refused connections skips; without libmariadb-dev this file is not
 * built (tests/CMakeLists.txt). */
#define _GNU_SOURCE
// coil-test: tsan (the stall watchdog's monitor thread watches the scheduler's)
#include "coil_test.h"

#include <errmsg.h>
#include <mysql.h>

#include "servers/mariadb.h"

static struct mariadb_server srv;
static bool srv_missing;

/* ---- sizes, delays, limits ------------------------------------------------- */

static int n_parallel(void) {
    return (int)coil_test_scaled(40, 20);
}

/* The server-side delay of the parallel queries (SLEEP), in ms. */
static int64_t delay_ms(void) {
    return coil_test_under_valgrind() ? 2000 : coil_test_under_tsan() ? 1000 : 500;
}

/* The longest n parallel queries of one delay each may take in all,
 * connections included (serially: n delays). Natively three delays; under
 * Valgrind half the serial time (its one core runs the connector's work for
 * every tasklet, at 20-50x). */
static int64_t parallel_limit_ms(int n, int64_t delay) {
    return coil_test_under_valgrind() ? n * delay / 2 : 3 * delay;
}

/* The read and connect timeouts the error cases set (the connector's
 * options are whole seconds). */
enum { TIMEOUT_S = 1 };

/* A timeout ends at TIMEOUT_S, not before and not much after. */
static bool on_time(int64_t took_ms) {
    return took_ms >= TIMEOUT_S * 1000 - 5 &&
           took_ms < TIMEOUT_S * 1000 + coil_test_slack() / COIL_MSEC;
}

/* Ticks a coil_test_ticker must have counted over ms of waiting: a tenth of
 * its 1 ms sleeps natively (a loaded machine), a few under Valgrind. */
static long min_ticks(int64_t ms) {
    return coil_test_under_valgrind() ? 5 : ms / 10;
}

/* Starts the server unless it runs (at the first case, and after a case
 * that killed it); skips the case without mariadbd. */
static void need_server(void) {
    if (srv_missing) skip();
    if (srv.pid > 0) return;
    int rc = mariadb_server_start(&srv);
    if (rc == MARIADB_SERVER_MISSING) {
        srv_missing = true;
        fprintf(stderr, "test_install_mariadb: %s; the cases are skipped\n", srv.why);
        skip();
    }
    if (rc != 0) fail_msg("the MariaDB server did not start: %s", srv.why);
    print_message("mariadbd: data directory made in %.2f s, started in %.2f s, port %d\n",
                  srv.install_s, srv.start_s, srv.port);
}

/* ---- the connector ----------------------------------------------------------- */

/* What a call reported: mysql_errno and mysql_error, and how long it took. */
struct outcome {
    unsigned err;
    char msg[256];
    int64_t took_ms;
};

static void note(struct outcome *o, MYSQL *m, int64_t t0) {
    o->err = mysql_errno(m);
    snprintf(o->msg, sizeof o->msg, "%s", mysql_error(m));
    o->took_ms = (coil_now() - t0) / COIL_MSEC;
}

static bool outcome_is(const struct outcome *o, unsigned err, const char *msg) {
    if (o->err == err && strcmp(o->msg, msg) == 0) return true;
    fprintf(stderr, "got %u \"%s\", want %u \"%s\"\n", o->err, o->msg, err, msg);
    return false;
}

struct target {
    const char *host; /* "127.0.0.1" (TCP) or "localhost" (the unix socket) */
    unsigned port;
    const char *socket;
    unsigned connect_timeout, read_timeout; /* seconds; 0: the connector's default */
};

/* Connection i to the test's server: over TCP when i is even, over the
 * unix socket when odd; every third with connect and read timeouts (60 s,
 * never reached) set through the connector's options. */
static struct target server_target(int i) {
    struct target t = {.host = "127.0.0.1", .port = (unsigned)srv.port};
    if (i % 2) t = (struct target){.host = "localhost", .socket = srv.socket};
    if (i % 3 == 2) t.connect_timeout = t.read_timeout = 60;
    return t;
}

/* mysql_init and mysql_real_connect: the MYSQL* (connected, or NULL with
 * what the connector said in *o). */
static MYSQL *db_connect(const struct target *t, struct outcome *o) {
    memset(o, 0, sizeof *o);
    MYSQL *m = mysql_init(NULL);
    if (!m) {
        o->err = CR_OUT_OF_MEMORY;
        snprintf(o->msg, sizeof o->msg, "mysql_init failed");
        return NULL;
    }
    if (t->connect_timeout) mysql_options(m, MYSQL_OPT_CONNECT_TIMEOUT, &t->connect_timeout);
    if (t->read_timeout) mysql_options(m, MYSQL_OPT_READ_TIMEOUT, &t->read_timeout);
    int64_t t0 = coil_now();
    if (!mysql_real_connect(m, t->host, MARIADB_SERVER_USER, MARIADB_SERVER_PASSWORD, NULL, t->port,
                            t->socket, 0)) {
        note(o, m, t0);
        mysql_close(m);
        return NULL;
    }
    o->took_ms = (coil_now() - t0) / COIL_MSEC;
    return m;
}

/* Seconds since the epoch from the server's UNIX_TIMESTAMP(...(6)) text. */
static double seconds(const char *s) {
    return s ? strtod(s, NULL) : 0;
}

/* ======================================================================== */
/* 1. N queries of one server-side sleep each, in parallel                  */
/* ======================================================================== */

struct sleeper {
    int idx;
    int64_t delay_ms;
    bool ok;
    long got;              /* the row's first column: idx */
    unsigned long conn_id; /* CONNECTION_ID(): each its own */
    double began, ended;   /* the server's clock: NOW(6), SYSDATE(6) after the sleep */
    int64_t done_at;       /* coil_now() when the row was in */
    struct outcome o;
};

static void sleeper_fn(void *arg) {
    struct sleeper *s = arg;
    struct target t = server_target(s->idx);
    MYSQL *m = db_connect(&t, &s->o);
    if (!m) {
        fprintf(stderr, "sleeper %d: connect: %u %s\n", s->idx, s->o.err, s->o.msg);
        return;
    }
    char sql[160];
    snprintf(sql, sizeof sql,
             "SELECT %d, CONNECTION_ID(), UNIX_TIMESTAMP(NOW(6)), SLEEP(%.3f), "
             "UNIX_TIMESTAMP(SYSDATE(6))",
             s->idx, (double)s->delay_ms / 1000);
    int64_t t0 = coil_now();
    if (mysql_query(m, sql) != 0) {
        note(&s->o, m, t0);
        fprintf(stderr, "sleeper %d: query: %u %s\n", s->idx, s->o.err, s->o.msg);
        mysql_close(m);
        return;
    }
    MYSQL_RES *r = mysql_store_result(m);
    MYSQL_ROW row = r ? mysql_fetch_row(r) : NULL;
    s->done_at = coil_now();
    if (row && mysql_num_fields(r) == 5 && row[0] && row[1] && row[3]) {
        s->got = strtol(row[0], NULL, 10);
        s->conn_id = strtoul(row[1], NULL, 10);
        s->began = seconds(row[2]);
        s->ended = seconds(row[4]);
        s->ok = s->got == s->idx && strcmp(row[3], "0") == 0; /* SLEEP: 0, not interrupted */
    } else {
        note(&s->o, m, t0);
        fprintf(stderr, "sleeper %d: no row: %u %s\n", s->idx, s->o.err, s->o.msg);
    }
    if (r) mysql_free_result(r);
    mysql_close(m);
}

struct parallel {
    int n;
    int64_t delay_ms;
    struct sleeper *s;
    int64_t t0, elapsed_ms;
};

static void parallel_spawn(struct parallel *p, coil_id *ids) {
    p->t0 = coil_now();
    for (int i = 0; i < p->n; i++)
        EXPECT((ids[i] = coil_spawn(sleeper_fn, &p->s[i], NULL)) > 0);
}

static void parallel_join(struct parallel *p, coil_id *ids) {
    for (int i = 0; i < p->n; i++)
        if (ids[i] > 0) EXPECT_EQ(coil_join(ids[i], COIL_FOREVER), 0);
    int64_t last = p->t0;
    for (int i = 0; i < p->n; i++)
        if (p->s[i].done_at > last) last = p->s[i].done_at;
    p->elapsed_ms = (last - p->t0) / COIL_MSEC;
}

static void parallel_main(void *arg) {
    struct parallel *p = arg;
    coil_id *ids = calloc((size_t)p->n, sizeof *ids);
    if (!EXPECT(ids != NULL)) return;
    parallel_spawn(p, ids);
    parallel_join(p, ids);
    free(ids);
}

static void parallel_init(struct parallel *p, int n, int64_t delay) {
    memset(p, 0, sizeof *p);
    p->n = n;
    p->delay_ms = delay;
    p->s = calloc((size_t)n, sizeof *p->s);
    assert_non_null(p->s);
    for (int i = 0; i < n; i++)
        p->s[i] = (struct sleeper){.idx = i, .delay_ms = delay};
}

/* Every row right, on n connections of their own, all n sleeping in the
 * server at one moment, and about one delay in all. */
static void parallel_check_and_free(struct parallel *p) {
    int ok = 0;
    double first_began = 0, last_began = 0, first_ended = 0;
    bool distinct = true;
    for (int i = 0; i < p->n; i++) {
        struct sleeper *s = &p->s[i];
        if (!s->ok) continue;
        ok++;
        if (ok == 1 || s->began < first_began) first_began = s->began;
        if (ok == 1 || s->began > last_began) last_began = s->began;
        if (ok == 1 || s->ended < first_ended) first_ended = s->ended;
        for (int j = 0; j < i; j++)
            if (p->s[j].ok && p->s[j].conn_id == s->conn_id) distinct = false;
    }
    print_message("%d queries of SLEEP(%.3f): %lld ms in all; on the server they began within "
                  "%.1f ms, the last %.1f ms before the first ended\n",
                  p->n, (double)p->delay_ms / 1000, (long long)p->elapsed_ms,
                  (last_began - first_began) * 1000, (first_ended - last_began) * 1000);
    struct sleeper *s = p->s;
    p->s = NULL;
    int n = p->n;
    int64_t delay = p->delay_ms, elapsed = p->elapsed_ms;
    for (int i = 0; i < n; i++) /* each really slept in the server */
        if (s[i].ok) assert_true((s[i].ended - s[i].began) * 1000 >= (double)delay - 1);
    free(s);
    assert_int_equal(ok, n);
    assert_true(distinct);
    /* The overlap, on the server's clock: the last query began before the
     * first one ended, so all n were in SLEEP at once (serially, each would
     * begin after the one before it ended). */
    assert_true(last_began < first_ended);
    assert_true(elapsed >= delay - 5);
    assert_true(elapsed < parallel_limit_ms(n, delay));
}

static void test_parallel_sleeps(void **state) {
    (void)state;
    need_server();
    struct parallel p;
    parallel_init(&p, n_parallel(), delay_ms());
    COIL_RUN_CHECKED(parallel_main, &p);
    parallel_check_and_free(&p);
}

/* ======================================================================== */
/* 2. Connection refused                                                    */
/* ======================================================================== */

/* One refused connection per target, from a tasklet (reports[i]) and from
 * the main thread outside coil_run (plain[i]), which is the connector
 * without coil: both must say the same. */
enum { REFUSED_CASES = 4 };

struct refused {
    struct target t[REFUSED_CASES];
    struct outcome in_tasklet[REFUSED_CASES], plain[REFUSED_CASES];
};

static void refused_one(struct refused *r, int i, struct outcome *o) {
    MYSQL *m = db_connect(&r->t[i], o);
    if (m) mysql_close(m); /* connected: the checks say so */
    if (m) snprintf(o->msg, sizeof o->msg, "connected");
}

static void refused_fn(void *arg) {
    struct refused *r = arg;
    for (int i = 0; i < REFUSED_CASES; i++)
        refused_one(r, i, &r->in_tasklet[i]);
}

static void test_connection_refused(void **state) {
    (void)state;
    /* A port nothing listens on (bound, then closed), a unix socket path
     * that does not exist, and one whose socket file nobody listens on. */
    struct coil_test_addr a;
    int fd = coil_test_raw_bound(AF_INET, SOCK_STREAM, -1, &a);
    assert_true(fd >= 0);
    unsigned port = coil_test_port(&a);
    close(fd);
    char dir[] = "/tmp/coil-mariadb-refused-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char missing[64], stale[64];
    snprintf(missing, sizeof missing, "%s/missing.sock", dir);
    snprintf(stale, sizeof stale, "%s/stale.sock", dir);
    int u = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(u >= 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", stale);
    assert_int_equal(bind(u, (struct sockaddr *)&sun, sizeof sun), 0);
    close(u); /* the file stays; connecting to it is refused */

    struct refused r = {.t = {
                            {.host = "127.0.0.1", .port = port},
                            {.host = "127.0.0.1", .port = port, .connect_timeout = TIMEOUT_S},
                            {.host = "localhost", .socket = missing},
                            {.host = "localhost", .socket = stale},
                        }};
    COIL_RUN_CHECKED(refused_fn, &r);
    for (int i = 0; i < REFUSED_CASES; i++)
        refused_one(&r, i, &r.plain[i]);
    unlink(stale);
    rmdir(dir);

    char want[REFUSED_CASES][256];
    snprintf(want[0], sizeof want[0], "Can't connect to server on '127.0.0.1' (%d)", EINPROGRESS);
    snprintf(want[1], sizeof want[1], "Can't connect to server on '127.0.0.1' (%d)", EINPROGRESS);
    snprintf(want[2], sizeof want[2], "Can't connect to local server through socket '%s' (%d)",
             missing, ENOENT);
    snprintf(want[3], sizeof want[3], "Can't connect to local server through socket '%s' (%d)",
             stale, ECONNREFUSED);
    for (int i = 0; i < REFUSED_CASES; i++) {
        print_message("refused %d: %u \"%s\" in %lld ms\n", i, r.in_tasklet[i].err,
                      r.in_tasklet[i].msg, (long long)r.in_tasklet[i].took_ms);
        assert_true(outcome_is(&r.in_tasklet[i], CR_CONNECTION_ERROR, want[i]));
        assert_true(outcome_is(&r.plain[i], CR_CONNECTION_ERROR, want[i]));
        assert_true(r.in_tasklet[i].took_ms < coil_test_slack() / COIL_MSEC); /* at once */
    }
}

/* ======================================================================== */
/* 3. The server killed in the middle of the queries                        */
/* ======================================================================== */

enum { KILL_TASKLETS = 8 };

struct victim {
    int idx, gen;
    bool connected;
    struct outcome query, next, ping;
    int64_t failed_at;
};

struct kill_run {
    int gen;
    struct victim v[KILL_TASKLETS];
    int seen_sleeping; /* queries the server listed before it was killed */
    int64_t killed_at;
    struct coil_test_ticker ticker;
    long ticks_while_waiting; /* from the last query's start to the kill */
};

static void victim_fn(void *arg) {
    struct victim *v = arg;
    struct target t = server_target(v->idx);
    struct outcome o;
    MYSQL *m = db_connect(&t, &o);
    if (!EXPECT(m != NULL)) {
        fprintf(stderr, "victim %d: connect: %u %s\n", v->idx, o.err, o.msg);
        return;
    }
    v->connected = true;
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT SLEEP(60), 'killed-%d-%d'", v->gen, v->idx);
    int64_t t0 = coil_now();
    if (EXPECT(mysql_query(m, sql) != 0)) note(&v->query, m, t0);
    v->failed_at = coil_now();
    t0 = coil_now();
    if (EXPECT(mysql_query(m, "SELECT 1") != 0)) note(&v->next, m, t0);
    t0 = coil_now();
    if (EXPECT(mysql_ping(m) != 0)) note(&v->ping, m, t0);
    mysql_close(m);
}

/* The number of the run's queries the server is executing now, or -1. */
static int count_sleeping(MYSQL *m, int gen) {
    char sql[192];
    snprintf(sql, sizeof sql,
             "SELECT COUNT(*) FROM information_schema.PROCESSLIST "
             "WHERE INFO LIKE 'SELECT SLEEP(60), ''killed-%d-%%'",
             gen);
    if (mysql_query(m, sql) != 0) return -1;
    MYSQL_RES *r = mysql_store_result(m);
    MYSQL_ROW row = r ? mysql_fetch_row(r) : NULL;
    int n = row && row[0] ? atoi(row[0]) : -1;
    if (r) mysql_free_result(r);
    return n;
}

/* Waits until the server runs every victim's query, then kills it
 * (SIGKILL, and the wait for its exit parks this tasklet: waitpid). */
static void killer_fn(void *arg) {
    struct kill_run *k = arg;
    struct target t = server_target(0);
    struct outcome o;
    MYSQL *m = db_connect(&t, &o);
    if (!EXPECT(m != NULL)) return;
    int64_t until = coil_now() + 20 * COIL_SEC;
    while ((k->seen_sleeping = count_sleeping(m, k->gen)) < KILL_TASKLETS && coil_now() < until)
        coil_sleep(10 * COIL_MSEC);
    mysql_close(m);
    long ticks0 = k->ticker.ticks;
    coil_sleep(200 * COIL_MSEC); /* all of them waiting in the connector */
    k->ticks_while_waiting = k->ticker.ticks - ticks0;
    k->killed_at = coil_now();
    mariadb_server_kill(&srv);
}

static void kill_main(void *arg) {
    struct kill_run *k = arg;
    coil_id ids[KILL_TASKLETS], killer, ticker;
    EXPECT((ticker = coil_spawn(coil_test_ticker_fn, &k->ticker, NULL)) > 0);
    for (int i = 0; i < KILL_TASKLETS; i++)
        EXPECT((ids[i] = coil_spawn(victim_fn, &k->v[i], NULL)) > 0);
    EXPECT((killer = coil_spawn(killer_fn, k, NULL)) > 0);
    for (int i = 0; i < KILL_TASKLETS; i++)
        if (ids[i] > 0) EXPECT_EQ(coil_join(ids[i], COIL_FOREVER), 0);
    if (killer > 0) EXPECT_EQ(coil_join(killer, COIL_FOREVER), 0);
    k->ticker.stop = true;
    if (ticker > 0) EXPECT_EQ(coil_join(ticker, COIL_FOREVER), 0);
}

static void test_server_killed_mid_query(void **state) {
    (void)state;
    need_server();
    static int gen;
    struct kill_run k = {.gen = ++gen};
    for (int i = 0; i < KILL_TASKLETS; i++)
        k.v[i] = (struct victim){.idx = i, .gen = k.gen};
    COIL_RUN_CHECKED(kill_main, &k);
    assert_int_equal(srv.pid, 0); /* killed and reaped; the next case starts it again */
    print_message("server killed with %d queries running (ticker: %ld ticks in 200 ms of "
                  "waiting): %u \"%s\", then %u \"%s\"\n",
                  k.seen_sleeping, k.ticks_while_waiting, k.v[0].query.err, k.v[0].query.msg,
                  k.v[0].next.err, k.v[0].next.msg);
    assert_int_equal(k.seen_sleeping, KILL_TASKLETS);
    assert_true(k.ticks_while_waiting >= min_ticks(200));
    for (int i = 0; i < KILL_TASKLETS; i++) {
        struct victim *v = &k.v[i];
        assert_true(v->connected);
        assert_true(
            outcome_is(&v->query, CR_SERVER_LOST, "Lost connection to server during query"));
        assert_true(v->failed_at >= k.killed_at); /* not before the kill */
        assert_true(v->failed_at - k.killed_at < coil_test_slack());
        assert_true(outcome_is(&v->next, CR_SERVER_GONE_ERROR, "Server has gone away"));
        assert_true(outcome_is(&v->ping, CR_SERVER_GONE_ERROR, "Server has gone away"));
    }
}

/* ======================================================================== */
/* 4. Timeouts set through the connector's options                          */
/* ======================================================================== */

enum { TIMEOUT_TASKLETS = 4 };

/* MYSQL_OPT_READ_TIMEOUT of 1 s on a query that sleeps 3 s in the server. */
struct read_to {
    int idx;
    bool connected;
    struct outcome query, next;
};

static void read_to_fn(void *arg) {
    struct read_to *r = arg;
    struct target t = server_target(r->idx);
    t.read_timeout = TIMEOUT_S;
    t.connect_timeout = 0; /* it would stand for the read timeout while connecting */
    struct outcome o;
    MYSQL *m = db_connect(&t, &o);
    if (!EXPECT(m != NULL)) {
        fprintf(stderr, "read timeout %d: connect: %u %s\n", r->idx, o.err, o.msg);
        return;
    }
    r->connected = true;
    int64_t t0 = coil_now();
    if (EXPECT(mysql_query(m, "SELECT SLEEP(3)") != 0)) note(&r->query, m, t0);
    t0 = coil_now();
    if (EXPECT(mysql_query(m, "SELECT 1") != 0)) note(&r->next, m, t0);
    mysql_close(m);
}

/* MYSQL_OPT_CONNECT_TIMEOUT of 1 s against a listener that accepts into
 * its queue and never sends the server's greeting (no_greeting), or whose
 * queue is full so that the SYN goes unanswered (no_syn_ack). */
struct connect_to {
    struct target t;
    struct outcome o;
    bool connected;
};

static void connect_to_fn(void *arg) {
    struct connect_to *c = arg;
    MYSQL *m = db_connect(&c->t, &c->o);
    if (m) {
        c->connected = true;
        mysql_close(m);
    }
}

struct timeouts {
    struct read_to r[TIMEOUT_TASKLETS];
    struct connect_to no_greeting[TIMEOUT_TASKLETS], no_syn_ack[TIMEOUT_TASKLETS];
    struct coil_test_ticker ticker;
    int64_t elapsed_ms;
};

static void timeouts_main(void *arg) {
    struct timeouts *t = arg;
    enum { N = 3 * TIMEOUT_TASKLETS };
    coil_id ids[N], ticker;
    EXPECT((ticker = coil_spawn(coil_test_ticker_fn, &t->ticker, NULL)) > 0);
    int64_t t0 = coil_now();
    for (int i = 0; i < TIMEOUT_TASKLETS; i++) {
        EXPECT((ids[3 * i] = coil_spawn(read_to_fn, &t->r[i], NULL)) > 0);
        EXPECT((ids[3 * i + 1] = coil_spawn(connect_to_fn, &t->no_greeting[i], NULL)) > 0);
        EXPECT((ids[3 * i + 2] = coil_spawn(connect_to_fn, &t->no_syn_ack[i], NULL)) > 0);
    }
    for (int i = 0; i < N; i++)
        if (ids[i] > 0) EXPECT_EQ(coil_join(ids[i], COIL_FOREVER), 0);
    t->elapsed_ms = (coil_now() - t0) / COIL_MSEC;
    t->ticker.stop = true;
    if (ticker > 0) EXPECT_EQ(coil_join(ticker, COIL_FOREVER), 0);
}

static void test_timeouts(void **state) {
    (void)state;
    need_server();
    /* A listener never accepted from, and one whose accept queue is full. */
    struct coil_test_addr quiet, full;
    int quiet_l = coil_test_raw_bound(AF_INET, SOCK_STREAM, 64, &quiet);
    assert_true(quiet_l >= 0);
    int fillers[64], nfillers;
    int full_l = coil_test_full_backlog_listener(&full, fillers, 64, &nfillers);
    assert_true(full_l >= 0);

    struct timeouts *t = calloc(1, sizeof *t);
    assert_non_null(t);
    for (int i = 0; i < TIMEOUT_TASKLETS; i++) {
        t->r[i].idx = i;
        t->no_greeting[i].t = (struct target){
            .host = "127.0.0.1", .port = coil_test_port(&quiet), .connect_timeout = TIMEOUT_S};
        t->no_syn_ack[i].t = (struct target){
            .host = "127.0.0.1", .port = coil_test_port(&full), .connect_timeout = TIMEOUT_S};
    }
    COIL_RUN_CHECKED(timeouts_main, t);
    for (int i = 0; i < nfillers; i++)
        close(fillers[i]);
    close(full_l);
    close(quiet_l);

    print_message("%d read timeouts, %d connect timeouts: %lld ms in all (ticker: %ld ticks)\n"
                  "  read: %u \"%s\" after %lld ms, then %u \"%s\"\n"
                  "  no greeting: %u \"%s\" after %lld ms\n"
                  "  no SYN-ACK: %u \"%s\" after %lld ms\n",
                  TIMEOUT_TASKLETS, 2 * TIMEOUT_TASKLETS, (long long)t->elapsed_ms, t->ticker.ticks,
                  t->r[0].query.err, t->r[0].query.msg, (long long)t->r[0].query.took_ms,
                  t->r[0].next.err, t->r[0].next.msg, t->no_greeting[0].o.err,
                  t->no_greeting[0].o.msg, (long long)t->no_greeting[0].o.took_ms,
                  t->no_syn_ack[0].o.err, t->no_syn_ack[0].o.msg,
                  (long long)t->no_syn_ack[0].o.took_ms);
    char no_syn_ack[128];
    snprintf(no_syn_ack, sizeof no_syn_ack, "Can't connect to server on '127.0.0.1' (%d)",
             ETIMEDOUT);
    char no_greeting[160];
    snprintf(no_greeting, sizeof no_greeting,
             "Lost connection to server at 'handshake: reading initial communication packet', "
             "system error: %d",
             ETIMEDOUT);
    struct timeouts copy = *t;
    free(t);
    for (int i = 0; i < TIMEOUT_TASKLETS; i++) {
        assert_true(copy.r[i].connected);
        assert_true(
            outcome_is(&copy.r[i].query, CR_SERVER_LOST, "Lost connection to server during query"));
        assert_true(on_time(copy.r[i].query.took_ms));
        assert_true(outcome_is(&copy.r[i].next, CR_SERVER_GONE_ERROR, "Server has gone away"));
        assert_false(copy.no_greeting[i].connected);
        assert_true(outcome_is(&copy.no_greeting[i].o, CR_SERVER_LOST, no_greeting));
        assert_true(on_time(copy.no_greeting[i].o.took_ms));
        assert_false(copy.no_syn_ack[i].connected);
        assert_true(outcome_is(&copy.no_syn_ack[i].o, CR_CONNECTION_ERROR, no_syn_ack));
        assert_true(on_time(copy.no_syn_ack[i].o.took_ms));
    }
    /* All twelve waited at once (serially: twelve timeouts), and the
     * scheduler went on meanwhile. */
    assert_true(copy.elapsed_ms < TIMEOUT_S * 1000 + coil_test_slack() / COIL_MSEC);
    assert_true(copy.ticker.ticks >= min_ticks(TIMEOUT_S * 1000));
}

/* ======================================================================== */
/* 5. The stall watchdog sees no blocked scheduler                          */
/* ======================================================================== */

/* The parallel queries and both kinds of timeout again, with the stall
 * watchdog on at a threshold below every wait in them: a call of the
 * connector that nothing diverted would hold the scheduler for a whole
 * SLEEP or timeout, and be reported. (The threshold stays well above what
 * a loaded machine's preemption can look like: 300 ms natively.) */
struct watched {
    struct parallel p;
    struct read_to r;
    struct connect_to c;
};

static void watched_main(void *arg) {
    struct watched *w = arg;
    coil_id *ids = calloc((size_t)w->p.n, sizeof *ids);
    if (!EXPECT(ids != NULL)) return;
    parallel_spawn(&w->p, ids);
    coil_id r = coil_spawn(read_to_fn, &w->r, NULL), c = coil_spawn(connect_to_fn, &w->c, NULL);
    EXPECT(r > 0 && c > 0);
    parallel_join(&w->p, ids);
    if (r > 0) EXPECT_EQ(coil_join(r, COIL_FOREVER), 0);
    if (c > 0) EXPECT_EQ(coil_join(c, COIL_FOREVER), 0);
    free(ids);
}

static void test_watchdog_silent(void **state) {
    (void)state;
    need_server();
    int quiet_l;
    struct coil_test_addr quiet;
    assert_true((quiet_l = coil_test_raw_bound(AF_INET, SOCK_STREAM, 64, &quiet)) >= 0);
    struct watched w = {
        .r = {.idx = 1},
        .c = {.t = {.host = "127.0.0.1",
                    .port = coil_test_port(&quiet),
                    .connect_timeout = TIMEOUT_S}},
    };
    int64_t delay = delay_ms();
    parallel_init(&w.p, n_parallel() / 2, delay);
    struct coil_test_stderr cap;
    coil_test_stderr_begin(&cap);
    assert_int_equal(coil_watchdog(delay * 3 / 5 * COIL_MSEC), 0);
    coil_test_reset_failures();
    int rc = coil_run(watched_main, &w);
    coil_watchdog(0);
    char *err = coil_test_stderr_end(&cap);
    fputs(err, stderr);
    bool reported = strstr(err, "coil: watchdog:") != NULL;
    free(err);
    close(quiet_l);
    coil_test_assert_no_failure();
    assert_int_equal(rc, 0);
    assert_false(reported);
    parallel_check_and_free(&w.p);
    assert_true(outcome_is(&w.r.query, CR_SERVER_LOST, "Lost connection to server during query"));
    assert_int_equal(w.c.o.err, CR_SERVER_LOST);
}

/* ======================================================================== */
/* 6. Outside coil_run: the connector as without coil                       */
/* ======================================================================== */

static void test_passthrough_main_thread(void **state) {
    (void)state;
    need_server();
    for (int i = 0; i < 2; i++) { /* TCP, then the unix socket */
        struct target t = server_target(i);
        struct outcome o;
        MYSQL *m = db_connect(&t, &o);
        if (!m) fail_msg("connect: %u %s", o.err, o.msg);
        int64_t t0 = coil_now();
        assert_int_equal(mysql_query(m, "SELECT SLEEP(0.2), 'plain'"), 0);
        MYSQL_RES *r = mysql_store_result(m);
        assert_non_null(r);
        MYSQL_ROW row = mysql_fetch_row(r);
        assert_non_null(row);
        assert_string_equal(row[0], "0");
        assert_string_equal(row[1], "plain");
        mysql_free_result(r);
        assert_true(coil_now() - t0 >= 195 * COIL_MSEC); /* the thread really waited */
        mysql_close(m);
    }
}

/* ======================================================================== */

static int group_setup(void **state) {
    (void)state;
    assert_int_equal(mysql_library_init(0, NULL, NULL), 0);
    /* From here on the connector's blocking calls (and this program's: it
     * links libcoil.so) park the calling tasklet. */
    assert_int_equal(coil_install(), 0);
    mariadb_server_init(&srv);
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    mariadb_server_cleanup(&srv);
    assert_int_equal(coil_uninstall(), 0);
    mysql_library_end();
    return 0;
}

int main(void) {
    coil_test_apply_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parallel_sleeps),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_timeouts),
        cmocka_unit_test(test_watchdog_silent),
        cmocka_unit_test(test_passthrough_main_thread),
        cmocka_unit_test(test_server_killed_mid_query),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
