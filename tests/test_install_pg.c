// coil-test: link-shared
/* coil_install with libpq (PostgreSQL's client library, unmodified) against a
 * PostgreSQL server the test starts (tests/servers/pg.c: initdb and postgres
 * in a temporary directory on a free loopback port and a unix socket there,
 * stopped and removed at the end). Each tasklet has its own PGconn from
 * PQconnectdb and makes the library's blocking calls; after coil_install they
 * park only that tasklet:
 *  - 40 tasklets each connect (half over TCP, half over the unix socket;
 *    every one through the server's SCRAM-SHA-256 password exchange), all at
 *    once, and then each runs `SELECT <i>, ..., pg_sleep(0.5)`: the queries
 *    finish in about one sleep, not 40; each gets its own row back from its
 *    own backend; and the server's clock proves the overlap: every query
 *    had begun (statement_timestamp()) before the first one ended
 *    (clock_timestamp() after the sleep). The queries start once all are
 *    connected, because the connections are CPU work of this one thread as
 *    much as waits (see connect_limit_ms), which a loaded machine spreads
 *    over more than a sleep;
 *  - the same with libpq's asynchronous calls (PQconnectStart and
 *    PQconnectPoll, PQsendQuery, PQconsumeInput and PQisBusy), the tasklet
 *    waiting on PQsocket with coil_wait_fd;
 *  - errors come back through libpq's own reporting (PQstatus,
 *    PQresultStatus, PQerrorMessage, the SQLSTATE), exactly as libpq
 *    reports them without coil (the refused connections are also made
 *    outside coil_run and compared): connection refused over TCP and over a
 *    unix socket, the server killed (SIGKILL to the postmaster and its
 *    backends) in the middle of the queries of several tasklets, the
 *    server's statement_timeout set through libpq's `options`, and libpq's
 *    connect_timeout against a listener that never answers the startup
 *    packet and against one that never completes the TCP handshake; while
 *    tasklets wait in these, a ticker tasklet keeps counting;
 *  - a tasklet cancels the queries of four others with PQcancel, which
 *    sends the request on a connection of its own with plain blocking calls
 *    (connect, send, recv): "ERROR:  canceling statement due to user
 *    request\n", SQLSTATE 57014, and each connection stays usable;
 *  - with the stall watchdog on, none of this holds the scheduler: libpq
 *    makes no blocking call that coil_install does not divert (its sockets
 *    are non-blocking and it waits in poll);
 *  - outside coil_run libpq works as without coil.
 *
 * What libpq 15 (Debian 12's libpq5) reports, checked here:
 *  - TCP connection refused: CONNECTION_BAD, "connection to server at
 *    \"127.0.0.1\", port P failed: Connection refused\n\tIs the server
 *    running on that host and accepting TCP/IP connections?\n".
 *  - unix socket: "connection to server on socket \"<dir>/.s.PGSQL.P\"
 *    failed: No such file or directory\n\tIs the server running locally and
 *    accepting connections on that socket?\n", or "Connection refused" for a
 *    socket file nobody listens on.
 *  - server killed (every process of it) during a query: PGRES_FATAL_ERROR,
 *    "server closed the connection unexpectedly\n\tThis probably means the
 *    server terminated abnormally\n\tbefore or while processing the
 *    request.\n", and the connection CONNECTION_BAD; the next PQexec:
 *    PGRES_FATAL_ERROR "no connection to the server\n".
 *  - statement_timeout=1000 ending a pg_sleep(3): PGRES_FATAL_ERROR, SQLSTATE
 *    57014, "ERROR:  canceling statement due to statement timeout\n", after
 *    1 s; the connection stays usable.
 *  - connect_timeout=2 (libpq takes no less than 2 s): CONNECTION_BAD,
 *    "connection to server at \"127.0.0.1\", port P failed: timeout
 *    expired\n", after 2 s, whether the listener never answers the startup
 *    packet or never completes the handshake.
 *
 * Under Valgrind fewer tasklets run (20), the sleep is 2 s, and most
 * connections skip the password exchange (see scram()); the bounds on wall
 * time are loose there, and the overlap is proved on the server's clock
 * in every build. Valgrind watches this process only (postgres is exec'd
 * unwatched). Without postgres and initdb (Debian: postgresql-15) every case
 * but the refused connections skips; without libpq-dev this file is not
 * built (tests/CMakeLists.txt). */
#define _GNU_SOURCE
// coil-test: tsan (the stall watchdog's monitor thread watches the scheduler's)
#include "coil_test.h"

#include <libpq-fe.h>

#include "servers/pg.h"

static struct pg_server srv;
static bool srv_missing;

/* ---- sizes, delays, limits ------------------------------------------------- */

static int n_parallel(void) {
    return (int)coil_test_scaled(40, 20);
}

/* The server-side delay of the parallel queries (pg_sleep), in ms. */
static int64_t delay_ms(void) {
    return coil_test_under_valgrind() ? 2000 : coil_test_under_tsan() ? 1000 : 500;
}

/* The longest n parallel queries of one delay each may take, from the
 * moment all are connected to the last row in (serially: n delays):
 * natively three delays; under Valgrind half the serial time (its one core
 * runs libpq's work for every tasklet, at 20-50x). */
static int64_t parallel_limit_ms(int n, int64_t delay) {
    return coil_test_under_valgrind() ? n * delay / 2 : 3 * delay;
}

/* The longest the n connections may take, all at once: half of n delays in
 * every build. Each is CPU work of this one thread as well as a wait (SCRAM's
 * key derivation, 4096 rounds of HMAC-SHA-256, is libpq's on the client
 * side) while the server forks a backend for it, so on a loaded machine they
 * take far more than a delay; serially, with the queries, they would take
 * more than n delays. */
static int64_t connect_limit_ms(int n, int64_t delay) {
    return n * delay / 2;
}

/* The server's statement_timeout the timeout case sets, and libpq's
 * connect_timeout (whole seconds, and libpq takes none under 2). */
enum { STATEMENT_TIMEOUT_MS = 1000, CONNECT_TIMEOUT_S = 2 };

/* A timeout of ms ends at ms, not before and not much after. */
static bool on_time(int64_t took_ms, int64_t ms) {
    return took_ms >= ms - 5 && took_ms < ms + coil_test_slack() / COIL_MSEC;
}

/* libpq's connect_timeout of s seconds, which libpq counts in whole seconds
 * of time(): its end is time(NULL) + s when the attempt starts, and each
 * wait lasts (end - time(NULL)) * 1000 ms (fe-connect.c, connectDBComplete;
 * fe-misc.c, pqSocketPoll; hence its "insist on at least two seconds"). A
 * second that turns between the start and a wait shortens the whole by up
 * to one second: it ends after s - 1 to s seconds, not much after. (Under
 * Valgrind, where the steps before the wait are slow, one connect timeout of
 * four took less than 2 s.) */
static bool on_time_whole_seconds(int64_t took_ms, int s) {
    return took_ms >= (s - 1) * 1000 - 5 && took_ms < s * 1000 + coil_test_slack() / COIL_MSEC;
}

/* Ticks a coil_test_ticker must have counted over ms of waiting: a tenth of
 * its 1 ms sleeps natively (a loaded machine), a few under Valgrind. */
static long min_ticks(int64_t ms) {
    return coil_test_under_valgrind() ? 5 : ms / 10;
}

/* Starts the server unless it runs (at the first case, and after a case
 * that killed it); skips the case without postgres. */
static void need_server(void) {
    if (srv_missing) skip();
    if (srv.pid > 0) return;
    int rc = pg_server_start(&srv);
    if (rc == PG_SERVER_MISSING) {
        srv_missing = true;
        fprintf(stderr, "test_install_pg: %s; the cases are skipped\n", srv.why);
        skip();
    }
    if (rc != 0) fail_msg("the PostgreSQL server did not start: %s", srv.why);
    print_message("postgres %s: cluster made in %.2f s, started in %.2f s, port %d\n", srv.version,
                  srv.install_s, srv.start_s, srv.port);
}

/* ---- libpq ----------------------------------------------------------------- */

/* What a call reported, and how long it took. */
struct outcome {
    int status; /* PQstatus for a connection, PQresultStatus for a query */
    char msg[512];
    char sqlstate[8];
    int64_t took_ms;
};

static void note_conn(struct outcome *o, PGconn *c, int64_t t0) {
    o->status = c ? (int)PQstatus(c) : -1;
    snprintf(o->msg, sizeof o->msg, "%s", c ? PQerrorMessage(c) : "out of memory");
    o->took_ms = (coil_now() - t0) / COIL_MSEC;
}

static void note_result(struct outcome *o, PGconn *c, PGresult *r, int64_t t0) {
    o->status = (int)PQresultStatus(r);
    snprintf(o->msg, sizeof o->msg, "%s", r ? PQresultErrorMessage(r) : PQerrorMessage(c));
    const char *st = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    snprintf(o->sqlstate, sizeof o->sqlstate, "%s", st ? st : "");
    o->took_ms = (coil_now() - t0) / COIL_MSEC;
}

static bool outcome_is(const struct outcome *o, int status, const char *msg) {
    if (o->status == status && strcmp(o->msg, msg) == 0) return true;
    fprintf(stderr, "got %d \"%s\", want %d \"%s\"\n", o->status, o->msg, status, msg);
    return false;
}

/* Whether the connections of the tasklets go through SCRAM-SHA-256 (as
 * PG_SERVER_USER with its password) or connect as the superuser, whom the
 * server trusts without one. Natively all use the password. Under Valgrind
 * its key derivation (4096 rounds of HMAC-SHA-256, libpq's CPU work on this
 * one thread) takes about a second a connection: that would hold the
 * scheduler past the watchdog's threshold and the timeouts' bounds, so there
 * only the first two connections of the parallel case (TCP and the unix
 * socket) and those made outside coil_run use it. */
static bool scram(bool wanted_under_valgrind) {
    return !coil_test_under_valgrind() || wanted_under_valgrind;
}

/* The conninfo of connection i to the test's server: over TCP when i is
 * even, over the unix socket (host is its directory) when odd; with the
 * password or as the trusted superuser (see scram); extra is appended. */
static void server_conninfo(char *out, size_t cap, int i, bool password, const char *extra) {
    snprintf(out, cap, "host=%s port=%d %s dbname=" PG_SERVER_DB " %s",
             i % 2 ? srv.dir : "127.0.0.1", srv.port,
             password ? "user=" PG_SERVER_USER " password=" PG_SERVER_PASSWORD : "user=postgres",
             extra ? extra : "");
}

/* PQconnectdb: the PGconn (connected, or NULL with what libpq said in *o). */
static PGconn *db_connect(const char *conninfo, struct outcome *o) {
    memset(o, 0, sizeof *o);
    int64_t t0 = coil_now();
    PGconn *c = PQconnectdb(conninfo);
    if (!c || PQstatus(c) != CONNECTION_OK) {
        note_conn(o, c, t0);
        PQfinish(c);
        return NULL;
    }
    o->status = CONNECTION_OK;
    o->took_ms = (coil_now() - t0) / COIL_MSEC;
    return c;
}

/* ======================================================================== */
/* 1. N queries of one server-side sleep each, in parallel                  */
/* ======================================================================== */

struct parallel;

struct sleeper {
    struct parallel *p;
    int idx;
    int64_t delay_ms;
    bool async;    /* libpq's asynchronous calls, waiting in coil_wait_fd */
    bool password; /* see scram() */
    bool ok;
    long got;            /* the row's first column: idx */
    long backend;        /* pg_backend_pid(): each its own */
    double began, ended; /* the server's clock: statement_timestamp(), clock_timestamp() after */
    int64_t done_at;     /* coil_now() when the row was in */
    struct outcome o;
};

/* PQconnectStart and PQconnectPoll, waiting on PQsocket for what it asks. */
static PGconn *async_connect(const char *conninfo, struct outcome *o) {
    memset(o, 0, sizeof *o);
    int64_t t0 = coil_now();
    PGconn *c = PQconnectStart(conninfo);
    PostgresPollingStatusType p = PGRES_POLLING_WRITING;
    while (c && PQstatus(c) != CONNECTION_BAD && p != PGRES_POLLING_OK &&
           p != PGRES_POLLING_FAILED) {
        int ev = p == PGRES_POLLING_READING ? COIL_READABLE : COIL_WRITABLE;
        int rc = coil_wait_fd(PQsocket(c), ev, coil_test_in(30 * COIL_SEC));
        if (rc < 0) {
            o->status = rc;
            snprintf(o->msg, sizeof o->msg, "coil_wait_fd: %s", strerror(-rc));
            PQfinish(c);
            return NULL;
        }
        p = PQconnectPoll(c);
    }
    if (!c || PQstatus(c) != CONNECTION_OK) {
        note_conn(o, c, t0);
        PQfinish(c);
        return NULL;
    }
    return c;
}

/* PQsendQuery, then PQconsumeInput until PQisBusy says the result is in,
 * waiting on PQsocket in between; the last result (NULL ends the list). */
static PGresult *async_exec(PGconn *c, const char *sql) {
    if (!PQsendQuery(c, sql)) return NULL;
    PGresult *last = NULL;
    for (;;) {
        while (PQisBusy(c)) {
            if (coil_wait_fd(PQsocket(c), COIL_READABLE, coil_test_in(30 * COIL_SEC)) < 0 ||
                !PQconsumeInput(c)) {
                PQclear(last);
                return NULL;
            }
        }
        PGresult *r = PQgetResult(c);
        if (!r) return last;
        PQclear(last);
        last = r;
    }
}

/* The sleepers connect at once, then wait until all have (or failed to), and
 * only then query: the overlap of the queries is then proved apart from the
 * connections' CPU work (see connect_limit_ms). One thread: plain fields. */
struct parallel {
    int n;
    int64_t delay_ms;
    struct sleeper *s;
    int arrived;
    bool go;
    int64_t t0, go_at, elapsed_ms, queries_ms;
};

static void arrive(struct parallel *p) {
    if (++p->arrived == p->n) {
        p->go = true;
        p->go_at = coil_now();
    }
}

static void wait_for_go(struct parallel *p) {
    while (!p->go)
        coil_sleep(COIL_MSEC);
}

static void sleeper_fn(void *arg) {
    struct sleeper *s = arg;
    char conninfo[256];
    server_conninfo(conninfo, sizeof conninfo, s->idx, s->password, NULL);
    PGconn *c = s->async ? async_connect(conninfo, &s->o) : db_connect(conninfo, &s->o);
    arrive(s->p);
    if (!c) {
        fprintf(stderr, "sleeper %d: connect: %d %s\n", s->idx, s->o.status, s->o.msg);
        return;
    }
    wait_for_go(s->p);
    char sql[224];
    snprintf(sql, sizeof sql,
             "SELECT %d, pg_backend_pid(), extract(epoch FROM statement_timestamp()), "
             "pg_sleep(%.3f), extract(epoch FROM clock_timestamp())",
             s->idx, (double)s->delay_ms / 1000);
    int64_t t0 = coil_now();
    PGresult *r = s->async ? async_exec(c, sql) : PQexec(c, sql);
    s->done_at = coil_now();
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQnfields(r) == 5) {
        s->got = strtol(PQgetvalue(r, 0, 0), NULL, 10);
        s->backend = strtol(PQgetvalue(r, 0, 1), NULL, 10);
        s->began = strtod(PQgetvalue(r, 0, 2), NULL);
        s->ended = strtod(PQgetvalue(r, 0, 4), NULL);
        s->ok = s->got == s->idx && PQgetisnull(r, 0, 3) == 0; /* pg_sleep: void, not NULL */
    } else {
        note_result(&s->o, c, r, t0);
        fprintf(stderr, "sleeper %d: query: %d %s\n", s->idx, s->o.status, s->o.msg);
    }
    PQclear(r);
    PQfinish(c);
}

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
    p->queries_ms = p->go ? (last - p->go_at) / COIL_MSEC : -1;
}

static void parallel_main(void *arg) {
    struct parallel *p = arg;
    coil_id *ids = calloc((size_t)p->n, sizeof *ids);
    if (!EXPECT(ids != NULL)) return;
    parallel_spawn(p, ids);
    parallel_join(p, ids);
    free(ids);
}

/* n sleepers; under Valgrind the first scram_under_valgrind of them connect
 * with the password, the others as the trusted superuser (see scram). */
static void parallel_init(struct parallel *p, int n, int64_t delay, bool async,
                          int scram_under_valgrind) {
    memset(p, 0, sizeof *p);
    p->n = n;
    p->delay_ms = delay;
    p->s = calloc((size_t)n, sizeof *p->s);
    assert_non_null(p->s);
    for (int i = 0; i < n; i++)
        p->s[i] = (struct sleeper){.p = p,
                                   .idx = i,
                                   .delay_ms = delay,
                                   .async = async,
                                   .password = scram(i < scram_under_valgrind)};
}

/* Every row right, from n backends of their own, all n sleeping in the
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
            if (p->s[j].ok && p->s[j].backend == s->backend) distinct = false;
    }
    print_message("%d queries of pg_sleep(%.3f)%s: %lld ms in all, %lld ms of it connecting; on "
                  "the server they began within %.1f ms, the last %.1f ms before the first "
                  "ended\n",
                  p->n, (double)p->delay_ms / 1000, p->n && p->s[0].async ? " (async API)" : "",
                  (long long)p->elapsed_ms, (long long)(p->elapsed_ms - p->queries_ms),
                  (last_began - first_began) * 1000, (first_ended - last_began) * 1000);
    struct sleeper *s = p->s;
    p->s = NULL;
    int n = p->n;
    int64_t delay = p->delay_ms, queries = p->queries_ms, connecting = p->elapsed_ms - queries;
    for (int i = 0; i < n; i++) /* each really slept in the server */
        if (s[i].ok) assert_true((s[i].ended - s[i].began) * 1000 >= (double)delay - 1);
    free(s);
    assert_int_equal(ok, n);
    assert_true(distinct);
    /* The overlap, on the server's clock: the last query began before the
     * first one ended, so all n were in pg_sleep at once (serially, each
     * would begin after the one before it ended). */
    assert_true(last_began < first_ended);
    assert_true(queries >= delay - 5);
    assert_true(queries < parallel_limit_ms(n, delay));
    assert_true(connecting < connect_limit_ms(n, delay));
}

static void test_parallel_sleeps(void **state) {
    (void)state;
    need_server();
    struct parallel p;
    parallel_init(&p, n_parallel(), delay_ms(), false, 2);
    COIL_RUN_CHECKED(parallel_main, &p);
    parallel_check_and_free(&p);
}

static void test_parallel_sleeps_async_api(void **state) {
    (void)state;
    need_server();
    struct parallel p;
    parallel_init(&p, n_parallel() / 2, delay_ms(), true, 0);
    COIL_RUN_CHECKED(parallel_main, &p);
    parallel_check_and_free(&p);
}

/* ======================================================================== */
/* 2. Connection refused                                                    */
/* ======================================================================== */

/* One refused connection per conninfo, from a tasklet and from the main
 * thread outside coil_run (plain[i]), which is libpq without coil: both
 * must say the same. */
enum { REFUSED_CASES = 4 };

struct refused {
    char conninfo[REFUSED_CASES][256];
    struct outcome in_tasklet[REFUSED_CASES], plain[REFUSED_CASES];
};

static void refused_one(struct refused *r, int i, struct outcome *o) {
    PGconn *c = db_connect(r->conninfo[i], o);
    if (c) snprintf(o->msg, sizeof o->msg, "connected"); /* the checks say so */
    PQfinish(c);
}

static void refused_fn(void *arg) {
    struct refused *r = arg;
    for (int i = 0; i < REFUSED_CASES; i++)
        refused_one(r, i, &r->in_tasklet[i]);
}

static void test_connection_refused(void **state) {
    (void)state;
    /* A port nothing listens on (bound, then closed), a unix socket that
     * does not exist, and one whose socket file nobody listens on. */
    struct coil_test_addr a;
    int fd = coil_test_raw_bound(AF_INET, SOCK_STREAM, -1, &a);
    assert_true(fd >= 0);
    unsigned port = coil_test_port(&a);
    close(fd);
    char dir[] = "/tmp/coil-pg-refused-XXXXXX";
    assert_non_null(mkdtemp(dir));
    char missing[96], stale[96];
    snprintf(missing, sizeof missing, "%s/.s.PGSQL.%u", dir, port);
    snprintf(stale, sizeof stale, "%s/.s.PGSQL.%u", dir, port + 1);
    int u = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(u >= 0);
    struct sockaddr_un sun = {.sun_family = AF_UNIX};
    snprintf(sun.sun_path, sizeof sun.sun_path, "%s", stale);
    assert_int_equal(bind(u, (struct sockaddr *)&sun, sizeof sun), 0);
    close(u); /* the file stays; connecting to it is refused */

    struct refused *r = calloc(1, sizeof *r);
    assert_non_null(r);
    snprintf(r->conninfo[0], sizeof r->conninfo[0], "host=127.0.0.1 port=%u user=x dbname=x", port);
    snprintf(r->conninfo[1], sizeof r->conninfo[1],
             "host=127.0.0.1 port=%u user=x dbname=x connect_timeout=%d", port, CONNECT_TIMEOUT_S);
    snprintf(r->conninfo[2], sizeof r->conninfo[2], "host=%s port=%u user=x dbname=x", dir, port);
    snprintf(r->conninfo[3], sizeof r->conninfo[3], "host=%s port=%u user=x dbname=x", dir,
             port + 1);
    COIL_RUN_CHECKED(refused_fn, r);
    for (int i = 0; i < REFUSED_CASES; i++)
        refused_one(r, i, &r->plain[i]);
    unlink(stale);
    rmdir(dir);

    char want[REFUSED_CASES][320];
    for (int i = 0; i < 2; i++)
        snprintf(want[i], sizeof want[i],
                 "connection to server at \"127.0.0.1\", port %u failed: Connection refused\n"
                 "\tIs the server running on that host and accepting TCP/IP connections?\n",
                 port);
    snprintf(want[2], sizeof want[2],
             "connection to server on socket \"%s\" failed: No such file or directory\n"
             "\tIs the server running locally and accepting connections on that socket?\n",
             missing);
    snprintf(want[3], sizeof want[3],
             "connection to server on socket \"%s\" failed: Connection refused\n"
             "\tIs the server running locally and accepting connections on that socket?\n",
             stale);
    struct refused copy = *r;
    free(r);
    for (int i = 0; i < REFUSED_CASES; i++) {
        print_message("refused %d: %d \"%s\" in %lld ms\n", i, copy.in_tasklet[i].status,
                      copy.in_tasklet[i].msg, (long long)copy.in_tasklet[i].took_ms);
        assert_true(outcome_is(&copy.in_tasklet[i], CONNECTION_BAD, want[i]));
        assert_true(outcome_is(&copy.plain[i], CONNECTION_BAD, want[i]));
        assert_true(copy.in_tasklet[i].took_ms < coil_test_slack() / COIL_MSEC); /* at once */
    }
}

/* ======================================================================== */
/* 3. The server killed in the middle of the queries                        */
/* ======================================================================== */

enum { KILL_TASKLETS = 8 };

static const char server_closed[] = "server closed the connection unexpectedly\n"
                                    "\tThis probably means the server terminated abnormally\n"
                                    "\tbefore or while processing the request.\n";

struct victim {
    int idx, gen;
    bool connected;
    struct outcome query, next;
    int conn_status; /* PQstatus after the failed query */
    int backend;     /* PQbackendPID: the server's process for this connection */
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
    char conninfo[256];
    server_conninfo(conninfo, sizeof conninfo, v->idx, scram(false), NULL);
    struct outcome o;
    PGconn *c = db_connect(conninfo, &o);
    if (!EXPECT(c != NULL)) {
        fprintf(stderr, "victim %d: connect: %d %s\n", v->idx, o.status, o.msg);
        return;
    }
    v->connected = true;
    v->backend = PQbackendPID(c);
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT pg_sleep(60), 'killed-%d-%d'", v->gen, v->idx);
    int64_t t0 = coil_now();
    PGresult *r = PQexec(c, sql);
    note_result(&v->query, c, r, t0);
    PQclear(r);
    v->failed_at = coil_now();
    v->conn_status = (int)PQstatus(c);
    t0 = coil_now();
    r = PQexec(c, "SELECT 1");
    note_result(&v->next, c, r, t0);
    PQclear(r);
    PQfinish(c);
}

/* The number of the run's queries the server is executing now, or -1. */
static int count_sleeping(PGconn *c, int gen) {
    char sql[192];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM pg_stat_activity "
             "WHERE state = 'active' AND query LIKE 'SELECT pg_sleep(60), ''killed-%d-%%'",
             gen);
    PGresult *r = PQexec(c, sql);
    int n =
        PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 ? atoi(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    return n;
}

/* Waits until the server runs every victim's query, then kills it
 * (SIGKILL to the postmaster and its backends; the waits for them to exit
 * park this tasklet: waitpid, nanosleep). */
static void killer_fn(void *arg) {
    struct kill_run *k = arg;
    char conninfo[256];
    server_conninfo(conninfo, sizeof conninfo, 0, scram(false), NULL);
    struct outcome o;
    PGconn *c = db_connect(conninfo, &o);
    if (!EXPECT(c != NULL)) return;
    int64_t until = coil_now() + 20 * COIL_SEC;
    while ((k->seen_sleeping = count_sleeping(c, k->gen)) < KILL_TASKLETS && coil_now() < until)
        coil_sleep(10 * COIL_MSEC);
    PQfinish(c);
    long ticks0 = k->ticker.ticks;
    coil_sleep(200 * COIL_MSEC); /* all of them waiting in libpq */
    k->ticks_while_waiting = k->ticker.ticks - ticks0;
    k->killed_at = coil_now();
    pg_server_kill(&srv);
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
    pid_t postmaster = srv.pid;
    struct kill_run k = {.gen = ++gen};
    for (int i = 0; i < KILL_TASKLETS; i++)
        k.v[i] = (struct victim){.idx = i, .gen = k.gen};
    COIL_RUN_CHECKED(kill_main, &k);
    assert_int_equal(srv.pid, 0); /* killed and reaped; the next case starts it again */
    /* Not one process of the server is left, zombies included: the
     * postmaster and the backends were killed and reaped. */
    assert_int_equal(kill(postmaster, 0), -1);
    assert_int_equal(errno, ESRCH);
    for (int i = 0; i < KILL_TASKLETS; i++) {
        assert_true(k.v[i].backend > 0);
        assert_int_equal(kill(k.v[i].backend, 0), -1);
        assert_int_equal(errno, ESRCH);
    }
    print_message("server killed with %d queries running (ticker: %ld ticks in 200 ms of "
                  "waiting): %d \"%s\", then %d \"%s\"\n",
                  k.seen_sleeping, k.ticks_while_waiting, k.v[0].query.status, k.v[0].query.msg,
                  k.v[0].next.status, k.v[0].next.msg);
    assert_int_equal(k.seen_sleeping, KILL_TASKLETS);
    assert_true(k.ticks_while_waiting >= min_ticks(200));
    for (int i = 0; i < KILL_TASKLETS; i++) {
        struct victim *v = &k.v[i];
        assert_true(v->connected);
        assert_true(outcome_is(&v->query, PGRES_FATAL_ERROR, server_closed));
        assert_int_equal(v->conn_status, CONNECTION_BAD);
        assert_true(v->failed_at >= k.killed_at); /* not before the kill */
        assert_true(v->failed_at - k.killed_at < coil_test_slack());
        assert_true(outcome_is(&v->next, PGRES_FATAL_ERROR, "no connection to the server\n"));
    }
}

/* ======================================================================== */
/* 4. Timeouts set through libpq's options                                  */
/* ======================================================================== */

enum { TIMEOUT_TASKLETS = 4 };

/* The server's statement_timeout, set through libpq's `options` (the
 * startup packet's), on a query that sleeps 3 s. */
struct stmt_to {
    int idx;
    bool connected;
    struct outcome query, next;
};

static void stmt_to_fn(void *arg) {
    struct stmt_to *s = arg;
    char conninfo[256], extra[64];
    snprintf(extra, sizeof extra, "options='-c statement_timeout=%d'", STATEMENT_TIMEOUT_MS);
    server_conninfo(conninfo, sizeof conninfo, s->idx, scram(false), extra);
    struct outcome o;
    PGconn *c = db_connect(conninfo, &o);
    if (!EXPECT(c != NULL)) {
        fprintf(stderr, "statement timeout %d: connect: %d %s\n", s->idx, o.status, o.msg);
        return;
    }
    s->connected = true;
    int64_t t0 = coil_now();
    PGresult *r = PQexec(c, "SELECT pg_sleep(3)");
    note_result(&s->query, c, r, t0);
    PQclear(r);
    t0 = coil_now();
    r = PQexec(c, "SELECT 'still here'");
    note_result(&s->next, c, r, t0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        snprintf(s->next.msg, sizeof s->next.msg, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(c);
}

/* connect_timeout against a listener that accepts into its queue and never
 * answers the startup packet (no_answer), or whose queue is full so that
 * the SYN goes unanswered (no_syn_ack). */
struct connect_to {
    char conninfo[128];
    struct outcome o;
    bool connected;
};

static void connect_to_fn(void *arg) {
    struct connect_to *c = arg;
    PGconn *conn = db_connect(c->conninfo, &c->o);
    if (conn) c->connected = true;
    PQfinish(conn);
}

struct timeouts {
    struct stmt_to s[TIMEOUT_TASKLETS];
    struct connect_to no_answer[TIMEOUT_TASKLETS], no_syn_ack[TIMEOUT_TASKLETS];
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
        EXPECT((ids[3 * i] = coil_spawn(stmt_to_fn, &t->s[i], NULL)) > 0);
        EXPECT((ids[3 * i + 1] = coil_spawn(connect_to_fn, &t->no_answer[i], NULL)) > 0);
        EXPECT((ids[3 * i + 2] = coil_spawn(connect_to_fn, &t->no_syn_ack[i], NULL)) > 0);
    }
    for (int i = 0; i < N; i++)
        if (ids[i] > 0) EXPECT_EQ(coil_join(ids[i], COIL_FOREVER), 0);
    t->elapsed_ms = (coil_now() - t0) / COIL_MSEC;
    t->ticker.stop = true;
    if (ticker > 0) EXPECT_EQ(coil_join(ticker, COIL_FOREVER), 0);
}

static void timeout_conninfo(char *out, size_t cap, const struct coil_test_addr *a) {
    snprintf(out, cap, "host=127.0.0.1 port=%u user=x dbname=x connect_timeout=%d",
             coil_test_port(a), CONNECT_TIMEOUT_S);
}

static char *timed_out_msg(char *out, size_t cap, const struct coil_test_addr *a) {
    snprintf(out, cap, "connection to server at \"127.0.0.1\", port %u failed: timeout expired\n",
             coil_test_port(a));
    return out;
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
        t->s[i].idx = i;
        timeout_conninfo(t->no_answer[i].conninfo, sizeof t->no_answer[i].conninfo, &quiet);
        timeout_conninfo(t->no_syn_ack[i].conninfo, sizeof t->no_syn_ack[i].conninfo, &full);
    }
    COIL_RUN_CHECKED(timeouts_main, t);
    for (int i = 0; i < nfillers; i++)
        close(fillers[i]);
    close(full_l);
    close(quiet_l);

    print_message("%d statement timeouts, %d connect timeouts: %lld ms in all (ticker: %ld "
                  "ticks)\n  statement: %d %s \"%s\" after %lld ms, then \"%s\"\n"
                  "  no answer: %d \"%s\" after %lld ms\n"
                  "  no SYN-ACK: %d \"%s\" after %lld ms\n",
                  TIMEOUT_TASKLETS, 2 * TIMEOUT_TASKLETS, (long long)t->elapsed_ms, t->ticker.ticks,
                  t->s[0].query.status, t->s[0].query.sqlstate, t->s[0].query.msg,
                  (long long)t->s[0].query.took_ms, t->s[0].next.msg, t->no_answer[0].o.status,
                  t->no_answer[0].o.msg, (long long)t->no_answer[0].o.took_ms,
                  t->no_syn_ack[0].o.status, t->no_syn_ack[0].o.msg,
                  (long long)t->no_syn_ack[0].o.took_ms);
    char no_answer[160], no_syn_ack[160];
    timed_out_msg(no_answer, sizeof no_answer, &quiet);
    timed_out_msg(no_syn_ack, sizeof no_syn_ack, &full);
    struct timeouts copy = *t;
    free(t);
    for (int i = 0; i < TIMEOUT_TASKLETS; i++) {
        assert_true(copy.s[i].connected);
        assert_true(outcome_is(&copy.s[i].query, PGRES_FATAL_ERROR,
                               "ERROR:  canceling statement due to statement timeout\n"));
        assert_string_equal(copy.s[i].query.sqlstate, "57014"); /* query_canceled */
        assert_true(on_time(copy.s[i].query.took_ms, STATEMENT_TIMEOUT_MS));
        assert_int_equal(copy.s[i].next.status, PGRES_TUPLES_OK); /* the connection lives on */
        assert_string_equal(copy.s[i].next.msg, "still here");
        assert_false(copy.no_answer[i].connected);
        assert_true(outcome_is(&copy.no_answer[i].o, CONNECTION_BAD, no_answer));
        assert_true(on_time_whole_seconds(copy.no_answer[i].o.took_ms, CONNECT_TIMEOUT_S));
        assert_false(copy.no_syn_ack[i].connected);
        assert_true(outcome_is(&copy.no_syn_ack[i].o, CONNECTION_BAD, no_syn_ack));
        assert_true(on_time_whole_seconds(copy.no_syn_ack[i].o.took_ms, CONNECT_TIMEOUT_S));
    }
    /* All twelve waited at once (serially: twelve timeouts), and the
     * scheduler went on meanwhile. */
    assert_true(copy.elapsed_ms < CONNECT_TIMEOUT_S * 1000 + coil_test_slack() / COIL_MSEC);
    assert_true(copy.ticker.ticks >= min_ticks(CONNECT_TIMEOUT_S * 1000));
}

/* ======================================================================== */
/* 4b. A query cancelled from another tasklet (PQcancel)                    */
/* ======================================================================== */

/* PQcancel opens a connection of its own to the server and sends the
 * cancel request on it with plain blocking calls (connect, send, recv on a
 * blocking socket), which coil_install parks as it does libpq's poll. */
enum { CANCEL_TASKLETS = 4 };

struct cancelled {
    int idx, gen;
    PGcancel *cancel; /* PQgetCancel, for the canceller */
    struct outcome query, next;
    int64_t ended_at;
};

struct cancel_run {
    int gen;
    struct cancelled c[CANCEL_TASKLETS];
    int seen_sleeping;
    int cancel_ok;    /* PQcancel calls that returned 1 */
    char errbuf[256]; /* the first failing one's message */
    int64_t cancelled_at;
};

static void cancelled_fn(void *arg) {
    struct cancelled *c = arg;
    char conninfo[256];
    server_conninfo(conninfo, sizeof conninfo, c->idx, scram(false), NULL);
    struct outcome o;
    PGconn *conn = db_connect(conninfo, &o);
    if (!EXPECT(conn != NULL)) {
        fprintf(stderr, "cancelled %d: connect: %d %s\n", c->idx, o.status, o.msg);
        return;
    }
    c->cancel = PQgetCancel(conn);
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT pg_sleep(60), 'cancelled-%d-%d'", c->gen, c->idx);
    int64_t t0 = coil_now();
    PGresult *r = PQexec(conn, sql);
    note_result(&c->query, conn, r, t0);
    PQclear(r);
    c->ended_at = coil_now();
    t0 = coil_now();
    r = PQexec(conn, "SELECT 'still here'");
    note_result(&c->next, conn, r, t0);
    if (PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1)
        snprintf(c->next.msg, sizeof c->next.msg, "%s", PQgetvalue(r, 0, 0));
    PQclear(r);
    PQfinish(conn);
}

static int count_cancellable(PGconn *c, int gen) {
    char sql[192];
    snprintf(sql, sizeof sql,
             "SELECT count(*) FROM pg_stat_activity "
             "WHERE state = 'active' AND query LIKE 'SELECT pg_sleep(60), ''cancelled-%d-%%'",
             gen);
    PGresult *r = PQexec(c, sql);
    int n =
        PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 ? atoi(PQgetvalue(r, 0, 0)) : -1;
    PQclear(r);
    return n;
}

static void canceller_fn(void *arg) {
    struct cancel_run *k = arg;
    char conninfo[256];
    server_conninfo(conninfo, sizeof conninfo, 0, scram(false), NULL);
    struct outcome o;
    PGconn *c = db_connect(conninfo, &o);
    if (!EXPECT(c != NULL)) return;
    int64_t until = coil_now() + 20 * COIL_SEC;
    while ((k->seen_sleeping = count_cancellable(c, k->gen)) < CANCEL_TASKLETS &&
           coil_now() < until)
        coil_sleep(10 * COIL_MSEC);
    PQfinish(c);
    k->cancelled_at = coil_now();
    for (int i = 0; i < CANCEL_TASKLETS; i++) {
        char err[256] = "";
        if (k->c[i].cancel && PQcancel(k->c[i].cancel, err, sizeof err))
            k->cancel_ok++;
        else if (!k->errbuf[0])
            snprintf(k->errbuf, sizeof k->errbuf, "%s", k->c[i].cancel ? err : "no PGcancel");
    }
}

static void cancel_main(void *arg) {
    struct cancel_run *k = arg;
    coil_id ids[CANCEL_TASKLETS], canceller;
    for (int i = 0; i < CANCEL_TASKLETS; i++)
        EXPECT((ids[i] = coil_spawn(cancelled_fn, &k->c[i], NULL)) > 0);
    EXPECT((canceller = coil_spawn(canceller_fn, k, NULL)) > 0);
    for (int i = 0; i < CANCEL_TASKLETS; i++)
        if (ids[i] > 0) EXPECT_EQ(coil_join(ids[i], COIL_FOREVER), 0);
    if (canceller > 0) EXPECT_EQ(coil_join(canceller, COIL_FOREVER), 0);
}

static void test_cancel_from_another_tasklet(void **state) {
    (void)state;
    need_server();
    static int gen;
    struct cancel_run k = {.gen = ++gen};
    for (int i = 0; i < CANCEL_TASKLETS; i++)
        k.c[i] = (struct cancelled){.idx = i, .gen = k.gen};
    COIL_RUN_CHECKED(cancel_main, &k);
    for (int i = 0; i < CANCEL_TASKLETS; i++)
        PQfreeCancel(k.c[i].cancel);
    print_message("%d queries cancelled (%d PQcancel calls answered 1%s%s): %d %s \"%s\" after "
                  "%lld ms, then \"%s\"\n",
                  k.seen_sleeping, k.cancel_ok, k.errbuf[0] ? ", the first failure: " : "",
                  k.errbuf, k.c[0].query.status, k.c[0].query.sqlstate, k.c[0].query.msg,
                  (long long)k.c[0].query.took_ms, k.c[0].next.msg);
    assert_int_equal(k.seen_sleeping, CANCEL_TASKLETS);
    assert_int_equal(k.cancel_ok, CANCEL_TASKLETS);
    for (int i = 0; i < CANCEL_TASKLETS; i++) {
        struct cancelled *c = &k.c[i];
        assert_true(outcome_is(&c->query, PGRES_FATAL_ERROR,
                               "ERROR:  canceling statement due to user request\n"));
        assert_string_equal(c->query.sqlstate, "57014"); /* query_canceled */
        assert_true(c->ended_at >= k.cancelled_at);      /* ended by the cancel, soon after */
        assert_true(c->ended_at - k.cancelled_at < coil_test_slack());
        assert_int_equal(c->next.status, PGRES_TUPLES_OK); /* the connection lives on */
        assert_string_equal(c->next.msg, "still here");
    }
}

/* ======================================================================== */
/* 5. The stall watchdog sees no blocked scheduler                          */
/* ======================================================================== */

/* The parallel queries and both kinds of timeout again, with the stall
 * watchdog on at a threshold below every wait in them: a call of libpq that
 * nothing diverted would hold the scheduler for a whole pg_sleep or timeout,
 * and be reported. (The threshold stays well above what a loaded machine's
 * preemption can look like: 300 ms natively.) */
struct watched {
    struct parallel p;
    struct stmt_to s;
    struct connect_to c;
};

static void watched_main(void *arg) {
    struct watched *w = arg;
    coil_id *ids = calloc((size_t)w->p.n, sizeof *ids);
    if (!EXPECT(ids != NULL)) return;
    parallel_spawn(&w->p, ids);
    coil_id s = coil_spawn(stmt_to_fn, &w->s, NULL), c = coil_spawn(connect_to_fn, &w->c, NULL);
    EXPECT(s > 0 && c > 0);
    parallel_join(&w->p, ids);
    if (s > 0) EXPECT_EQ(coil_join(s, COIL_FOREVER), 0);
    if (c > 0) EXPECT_EQ(coil_join(c, COIL_FOREVER), 0);
    free(ids);
}

static void test_watchdog_silent(void **state) {
    (void)state;
    need_server();
    int quiet_l;
    struct coil_test_addr quiet;
    assert_true((quiet_l = coil_test_raw_bound(AF_INET, SOCK_STREAM, 64, &quiet)) >= 0);
    struct watched w = {.s = {.idx = 1}};
    timeout_conninfo(w.c.conninfo, sizeof w.c.conninfo, &quiet);
    int64_t delay = delay_ms();
    parallel_init(&w.p, n_parallel() / 2, delay, false, 0);
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
    assert_true(outcome_is(&w.s.query, PGRES_FATAL_ERROR,
                           "ERROR:  canceling statement due to statement timeout\n"));
    char want[160];
    assert_true(outcome_is(&w.c.o, CONNECTION_BAD, timed_out_msg(want, sizeof want, &quiet)));
}

/* ======================================================================== */
/* 6. Outside coil_run: libpq as without coil                               */
/* ======================================================================== */

static void test_passthrough_main_thread(void **state) {
    (void)state;
    need_server();
    for (int i = 0; i < 2; i++) { /* TCP, then the unix socket */
        char conninfo[256];
        server_conninfo(conninfo, sizeof conninfo, i, true, NULL);
        struct outcome o;
        PGconn *c = db_connect(conninfo, &o);
        if (!c) fail_msg("connect: %d %s", o.status, o.msg);
        int64_t t0 = coil_now();
        PGresult *r = PQexec(c, "SELECT pg_sleep(0.2), 'plain'");
        assert_int_equal(PQresultStatus(r), PGRES_TUPLES_OK);
        assert_int_equal(PQntuples(r), 1);
        assert_string_equal(PQgetvalue(r, 0, 1), "plain");
        PQclear(r);
        assert_true(coil_now() - t0 >= 195 * COIL_MSEC); /* the thread really waited */
        PQfinish(c);
    }
}

/* ======================================================================== */

static int group_setup(void **state) {
    (void)state;
    /* From here on libpq's blocking calls (and this program's: it links
     * libcoil.so) park the calling tasklet. */
    assert_int_equal(coil_install(), 0);
    pg_server_init(&srv);
    return 0;
}

static int group_teardown(void **state) {
    (void)state;
    pg_server_cleanup(&srv);
    assert_int_equal(coil_uninstall(), 0);
    return 0;
}

int main(void) {
    coil_test_apply_filter();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parallel_sleeps),
        cmocka_unit_test(test_parallel_sleeps_async_api),
        cmocka_unit_test(test_connection_refused),
        cmocka_unit_test(test_timeouts),
        cmocka_unit_test(test_cancel_from_another_tasklet),
        cmocka_unit_test(test_watchdog_silent),
        cmocka_unit_test(test_passthrough_main_thread),
        cmocka_unit_test(test_server_killed_mid_query),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
