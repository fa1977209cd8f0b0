/* coil-bench-db-pg: the parallel-query speed-up of an unmodified libpq (the
 * PostgreSQL client library) under coil_install, against a PostgreSQL server
 * it starts itself (tests/servers/pg.c: initdb and postgres in a temporary
 * directory on a free loopback port, stopped and removed at the end).
 *
 *   coil-bench-db-pg [-n N] [-d SECONDS] [-r ROUNDS] [-g SCHEDULERS] [-t]
 *
 * Each round times one query of a SECONDS server-side delay (default 0.5:
 * `SELECT <i>, pg_sleep(0.5)`) alone, then N of them (default 40) at once,
 * one tasklet each, on the one thread (-g S: over the S schedulers of a
 * coil_run_group, one thread each). A query is the whole of what a client
 * does: PQconnectdb over TCP (the server forks a backend for each
 * connection) as PG_SERVER_USER with its password, PQexec, the row checked,
 * PQfinish. The password goes through SCRAM-SHA-256, whose key derivation
 * (4096 rounds of HMAC-SHA-256) is CPU work of the client's one thread for
 * every connection, which no overlap of waits can hide on one thread (-g 2
 * spreads it over two cores); -t connects as the
 * superuser instead, whom the server trusts without a password, to show the
 * figure without it; "wall" runs from the first spawn to the last row in
 * (after a warm-up batch of N short queries, not timed). It prints, per round
 * and as the median of the rounds (default 3), one query's time, the wall
 * time and wall / one: 1 is perfect overlap, N is what libpq's blocking calls
 * would give without coil_install. docs/benchmarks.md quotes it ("Database
 * clients under coil_install"); the goal there is wall / one <= 1.3 at
 * N = 40. Every row is checked (its number back); a failed query ends the
 * program with 1. Without postgres and initdb (Debian: postgresql-15) it
 * exits 77. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <coil.h>
#include <libpq-fe.h>

#include "db_rounds.h"
#include "pg.h"

static struct pg_server srv;
static bool trust; /* -t */

static bool pg_open(struct db_query *q) {
    char conninfo[192];
    if (trust)
        snprintf(conninfo, sizeof conninfo,
                 "host=127.0.0.1 port=%d user=postgres dbname=" PG_SERVER_DB, srv.port);
    else
        snprintf(conninfo, sizeof conninfo,
                 "host=127.0.0.1 port=%d user=" PG_SERVER_USER " password=" PG_SERVER_PASSWORD
                 " dbname=" PG_SERVER_DB,
                 srv.port);
    PGconn *c = PQconnectdb(conninfo);
    q->conn = c;
    if (c && PQstatus(c) == CONNECTION_OK) return true;
    snprintf(q->err, sizeof q->err, "%s", c ? PQerrorMessage(c) : "out of memory");
    return false;
}

static bool pg_query(struct db_query *q) {
    PGconn *c = q->conn;
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT %d, pg_sleep(%.3f)", q->idx, q->delay_s);
    PGresult *r = PQexec(c, sql);
    bool ok = r && PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQnfields(r) == 2 &&
              atoi(PQgetvalue(r, 0, 0)) == q->idx;
    if (!ok)
        snprintf(q->err, sizeof q->err, "%s", *PQerrorMessage(c) ? PQerrorMessage(c) : "wrong row");
    PQclear(r);
    return ok;
}

static void pg_close(struct db_query *q) {
    PQfinish(q->conn);
}

static const struct db_client pg_client = {pg_open, pg_query, pg_close};

int main(int argc, char **argv) {
    struct db_opts o;
    if (db_parse("coil-bench-db-pg", argc, argv, true, &o) != 0) return 2;
    trust = o.trust;
    int err = coil_install(); /* from here on, libpq's blocking calls park tasklets */
    if (err != 0) {
        fprintf(stderr, "coil-bench-db-pg: coil_install: %s\n", strerror(-err));
        return 1;
    }
    pg_server_init(&srv);
    int rc = pg_server_start(&srv);
    if (rc != 0) {
        fprintf(stderr, "coil-bench-db-pg: %s\n", srv.why);
        pg_server_cleanup(&srv);
        return rc == PG_SERVER_MISSING ? 77 : 1;
    }
    printf("libpq %d, server %s (started in %.2f s), coil on %s\n", PQlibVersion(), srv.version,
           srv.start_s, coil_backend_name());
    printf("queries of pg_sleep(%.3f), one connection each (%s)\n", o.delay_s,
           trust ? "user postgres, trusted" : "user " PG_SERVER_USER ", SCRAM-SHA-256");
    db_describe(&o);
    int status = db_rounds("coil-bench-db-pg", &pg_client, &o);
    pg_server_cleanup(&srv);
    coil_uninstall();
    return status;
}
