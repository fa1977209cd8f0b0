/* coil-bench-db-pg: the parallel-query speed-up of an unmodified libpq (the
 * PostgreSQL client library) under coil_install, against a PostgreSQL server
 * it starts itself (tests/servers/pg.c: initdb and postgres in a temporary
 * directory on a free loopback port, stopped and removed at the end).
 *
 *   coil-bench-db-pg [-n N] [-d SECONDS] [-r ROUNDS] [-t]
 *
 * Each round times one query of a SECONDS server-side delay (default 0.5:
 * `SELECT <i>, pg_sleep(0.5)`) alone, then N of them (default 40) at once,
 * one tasklet each, on the one thread. A query is the whole of what a client
 * does: PQconnectdb over TCP (the server forks a backend for each
 * connection) as PG_SERVER_USER with its password, PQexec, the row checked,
 * PQfinish. The password goes through SCRAM-SHA-256, whose key derivation
 * (4096 rounds of HMAC-SHA-256) is CPU work of the client's one thread for
 * every connection, which no overlap of waits can hide; -t connects as the
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

#include "pg.h"

static struct pg_server srv;
static bool trust; /* -t */

struct query {
    int idx;
    double delay_s;
    bool ok;
    int64_t done_at;
    char err[256];
};

static void query_fn(void *arg) {
    struct query *q = arg;
    char conninfo[192], sql[96];
    if (trust)
        snprintf(conninfo, sizeof conninfo,
                 "host=127.0.0.1 port=%d user=postgres dbname=" PG_SERVER_DB, srv.port);
    else
        snprintf(conninfo, sizeof conninfo,
                 "host=127.0.0.1 port=%d user=" PG_SERVER_USER " password=" PG_SERVER_PASSWORD
                 " dbname=" PG_SERVER_DB,
                 srv.port);
    snprintf(sql, sizeof sql, "SELECT %d, pg_sleep(%.3f)", q->idx, q->delay_s);
    PGconn *c = PQconnectdb(conninfo);
    PGresult *r = NULL;
    if (c && PQstatus(c) == CONNECTION_OK && (r = PQexec(c, sql)) != NULL &&
        PQresultStatus(r) == PGRES_TUPLES_OK && PQntuples(r) == 1 && PQnfields(r) == 2 &&
        atoi(PQgetvalue(r, 0, 0)) == q->idx) {
        q->ok = true;
    } else {
        snprintf(q->err, sizeof q->err, "%s",
                 !c                   ? "out of memory"
                 : *PQerrorMessage(c) ? PQerrorMessage(c)
                                      : "wrong row");
    }
    PQclear(r);
    PQfinish(c);
    q->done_at = coil_now();
}

struct batch {
    int n;
    double delay_s;
    struct query *q;
    double wall_s;
    int failed;
};

static void batch_main(void *arg) {
    struct batch *b = arg;
    coil_id *ids = calloc((size_t)b->n, sizeof *ids);
    if (!ids) {
        b->failed = b->n;
        return;
    }
    int64_t t0 = coil_now();
    for (int i = 0; i < b->n; i++) {
        b->q[i] = (struct query){.idx = i, .delay_s = b->delay_s};
        ids[i] = coil_spawn(query_fn, &b->q[i], NULL);
    }
    int64_t last = t0;
    for (int i = 0; i < b->n; i++) {
        if (ids[i] > 0) coil_join(ids[i], COIL_FOREVER);
        if (ids[i] <= 0 || !b->q[i].ok) {
            if (b->failed++ == 0)
                fprintf(stderr, "coil-bench-db-pg: query %d: %s\n", i,
                        ids[i] <= 0 ? "coil_spawn failed" : b->q[i].err);
        } else if (b->q[i].done_at > last) {
            last = b->q[i].done_at;
        }
    }
    b->wall_s = (double)(last - t0) / COIL_SEC;
    free(ids);
}

/* n queries at once: the wall time in seconds, or -1 if one failed. */
static double run(int n, double delay_s) {
    struct batch b = {.n = n, .delay_s = delay_s, .q = calloc((size_t)n, sizeof(struct query))};
    if (!b.q) return -1;
    int rc = coil_run(batch_main, &b);
    free(b.q);
    if (rc != 0) fprintf(stderr, "coil-bench-db-pg: coil_run: %s\n", strerror(-rc));
    return rc != 0 || b.failed ? -1 : b.wall_s;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int main(int argc, char **argv) {
    int n = 40, rounds = 3;
    double delay_s = 0.5;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-n") && i + 1 < argc)
            n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-d") && i + 1 < argc)
            delay_s = atof(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc)
            rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-t"))
            trust = true;
        else
            n = 0;
    }
    if (n < 1 || rounds < 1 || rounds > 100 || !(delay_s > 0)) {
        fprintf(stderr, "usage: coil-bench-db-pg [-n N] [-d SECONDS] [-r ROUNDS] [-t]\n");
        return 2;
    }
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
    printf("%d queries of pg_sleep(%.3f) at once, one tasklet and connection each (%s); %d "
           "round%s\n",
           n, delay_s, trust ? "user postgres, trusted" : "user " PG_SERVER_USER ", SCRAM-SHA-256",
           rounds, rounds == 1 ? "" : "s");
    printf("%-8s %12s %12s %10s\n", "round", "one query", "wall", "wall/one");
    int status = 0;
    double *one = calloc((size_t)rounds, sizeof *one), *wall = calloc((size_t)rounds, sizeof *wall),
           *ratio = calloc((size_t)rounds, sizeof *ratio);
    if (!one || !wall || !ratio) status = 1;
    /* A warm-up batch, not timed, as in db_mariadb.c: whatever is done once
     * at a server's or a library's first connections is not charged to the
     * first round alone. */
    if (!status && run(n, 0.01) < 0) status = 1;
    for (int r = 0; r < rounds && !status; r++) {
        one[r] = run(1, delay_s);
        wall[r] = run(n, delay_s);
        if (one[r] < 0 || wall[r] < 0) {
            status = 1;
            break;
        }
        ratio[r] = wall[r] / one[r];
        printf("%-8d %10.3f s %10.3f s %10.2f\n", r + 1, one[r], wall[r], ratio[r]);
        fflush(stdout);
    }
    if (!status) {
        double lo = ratio[0], hi = ratio[0];
        for (int r = 1; r < rounds; r++) {
            if (ratio[r] < lo) lo = ratio[r];
            if (ratio[r] > hi) hi = ratio[r];
        }
        double m1 = median(one, rounds), mw = median(wall, rounds), mr = median(ratio, rounds);
        printf("%-8s %10.3f s %10.3f s %10.2f (%.2f-%.2f)\n", "median", m1, mw, mr, lo, hi);
        printf("serially (without coil_install) %d queries would take about %.1f s: %d x one\n", n,
               n * m1, n);
    }
    free(one);
    free(wall);
    free(ratio);
    pg_server_cleanup(&srv);
    coil_uninstall();
    return status;
}
