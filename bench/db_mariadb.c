/* coil-bench-db-mariadb: the parallel-query speed-up of an unmodified MariaDB
 * Connector/C (libmariadb) under coil_install, against a MariaDB server it
 * starts itself (tests/servers/mariadb.c: mariadbd in a temporary directory
 * on a free loopback port, stopped and removed at the end).
 *
 *   coil-bench-db-mariadb [-n N] [-d SECONDS] [-r ROUNDS]
 *
 * Each round times one query of a SECONDS server-side delay (default 0.5:
 * `SELECT <i>, SLEEP(0.5)`) alone, then N of them (default 40) at once, one
 * tasklet each, on the one thread. A query is the whole of what a client
 * does: mysql_init, mysql_real_connect over TCP (with the server's password
 * exchange), mysql_query, mysql_store_result, mysql_close; "wall" runs from
 * the first spawn to the last row in (after a warm-up batch of N short
 * queries, not timed). It prints, per round and as the median
 * of the rounds (default 3), one query's time, the wall time and wall / one:
 * 1 is perfect overlap, N is what the connector's blocking calls would give
 * without coil_install. docs/benchmarks.md quotes it ("Database clients
 * under coil_install"); the goal there is wall / one <= 1.3 at N = 40.
 * Every row is checked (its number back); a failed query ends the program
 * with 1. Without mariadbd (Debian: mariadb-server-core) it exits 77. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <coil.h>
#include <mysql.h>

#include "mariadb.h"

static struct mariadb_server srv;

struct query {
    int idx;
    double delay_s;
    bool ok;
    int64_t done_at;
    char err[256];
};

static void query_fn(void *arg) {
    struct query *q = arg;
    MYSQL *m = mysql_init(NULL);
    if (!m) {
        snprintf(q->err, sizeof q->err, "mysql_init failed");
        return;
    }
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT %d, SLEEP(%.3f)", q->idx, q->delay_s);
    MYSQL_RES *r = NULL;
    MYSQL_ROW row = NULL;
    if (mysql_real_connect(m, "127.0.0.1", MARIADB_SERVER_USER, MARIADB_SERVER_PASSWORD, NULL,
                           (unsigned)srv.port, NULL, 0) &&
        mysql_query(m, sql) == 0 && (r = mysql_store_result(m)) != NULL &&
        (row = mysql_fetch_row(r)) != NULL && row[0] && atoi(row[0]) == q->idx && row[1] &&
        strcmp(row[1], "0") == 0) {
        q->ok = true;
    } else {
        snprintf(q->err, sizeof q->err, "%u %s", mysql_errno(m),
                 mysql_errno(m) ? mysql_error(m) : "wrong row");
    }
    if (r) mysql_free_result(r);
    mysql_close(m);
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
                fprintf(stderr, "coil-bench-db-mariadb: query %d: %s\n", i,
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
    if (rc != 0) fprintf(stderr, "coil-bench-db-mariadb: coil_run: %s\n", strerror(-rc));
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
        else
            n = 0;
    }
    if (n < 1 || rounds < 1 || rounds > 100 || !(delay_s > 0)) {
        fprintf(stderr, "usage: coil-bench-db-mariadb [-n N] [-d SECONDS] [-r ROUNDS]\n");
        return 2;
    }
    if (mysql_library_init(0, NULL, NULL) != 0) {
        fprintf(stderr, "coil-bench-db-mariadb: mysql_library_init failed\n");
        return 1;
    }
    int err = coil_install(); /* from here on, the connector's blocking calls park tasklets */
    if (err != 0) {
        fprintf(stderr, "coil-bench-db-mariadb: coil_install: %s\n", strerror(-err));
        return 1;
    }
    mariadb_server_init(&srv);
    int rc = mariadb_server_start(&srv);
    if (rc != 0) {
        fprintf(stderr, "coil-bench-db-mariadb: %s\n", srv.why);
        mariadb_server_cleanup(&srv);
        return rc == MARIADB_SERVER_MISSING ? 77 : 1;
    }
    printf("MariaDB Connector/C %s, server %s (started in %.2f s), coil on %s\n",
           MARIADB_PACKAGE_VERSION, srv.version, srv.start_s, coil_backend_name());
    printf("%d queries of SLEEP(%.3f) at once, one tasklet and connection each; %d round%s\n", n,
           delay_s, rounds, rounds == 1 ? "" : "s");
    printf("%-8s %12s %12s %10s\n", "round", "one query", "wall", "wall/one");
    int status = 0;
    double *one = calloc((size_t)rounds, sizeof *one), *wall = calloc((size_t)rounds, sizeof *wall),
           *ratio = calloc((size_t)rounds, sizeof *ratio);
    if (!one || !wall || !ratio) status = 1;
    /* A warm-up batch: the server makes a thread per connection the first
     * time (kept in its thread cache after), the connector loads its
     * plugins. Up to 10% more on the first round without it. */
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
    mariadb_server_cleanup(&srv);
    coil_uninstall();
    mysql_library_end();
    return status;
}
