/* coil-bench-db-mariadb: the parallel-query speed-up of an unmodified MariaDB
 * Connector/C (libmariadb) under coil_install, against a MariaDB server it
 * starts itself (tests/servers/mariadb.c: mariadbd in a temporary directory
 * on a free loopback port, stopped and removed at the end).
 *
 *   coil-bench-db-mariadb [-n N] [-d SECONDS] [-r ROUNDS] [-g SCHEDULERS]
 *
 * Each round times one query of a SECONDS server-side delay (default 0.5:
 * `SELECT <i>, SLEEP(0.5)`) alone, then N of them (default 40) at once, one
 * tasklet each, on the one thread (-g S: over the S schedulers of a
 * coil_run_group). A query is the whole of what a client
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

#include "db_rounds.h"
#include "mariadb.h"

static struct mariadb_server srv;

static bool my_open(struct db_query *q) {
    MYSQL *m = mysql_init(NULL);
    q->conn = m;
    if (!m) {
        snprintf(q->err, sizeof q->err, "mysql_init failed");
        return false;
    }
    if (mysql_real_connect(m, "127.0.0.1", MARIADB_SERVER_USER, MARIADB_SERVER_PASSWORD, NULL,
                           (unsigned)srv.port, NULL, 0))
        return true;
    snprintf(q->err, sizeof q->err, "%u %s", mysql_errno(m), mysql_error(m));
    return false;
}

static bool my_query(struct db_query *q) {
    MYSQL *m = q->conn;
    char sql[96];
    snprintf(sql, sizeof sql, "SELECT %d, SLEEP(%.3f)", q->idx, q->delay_s);
    MYSQL_RES *r = NULL;
    MYSQL_ROW row = NULL;
    bool ok = mysql_query(m, sql) == 0 && (r = mysql_store_result(m)) != NULL &&
              (row = mysql_fetch_row(r)) != NULL && row[0] && atoi(row[0]) == q->idx && row[1] &&
              strcmp(row[1], "0") == 0;
    if (!ok)
        snprintf(q->err, sizeof q->err, "%u %s", mysql_errno(m),
                 mysql_errno(m) ? mysql_error(m) : "wrong row");
    if (r) mysql_free_result(r);
    return ok;
}

static void my_close(struct db_query *q) {
    if (q->conn) mysql_close(q->conn);
}

static const struct db_client my_client = {my_open, my_query, my_close};

int main(int argc, char **argv) {
    struct db_opts o;
    if (db_parse("coil-bench-db-mariadb", argc, argv, false, &o) != 0) return 2;
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
    printf("queries of SLEEP(%.3f), one connection each\n", o.delay_s);
    db_describe(&o);
    int status = db_rounds("coil-bench-db-mariadb", &my_client, &o);
    mariadb_server_cleanup(&srv);
    coil_uninstall();
    mysql_library_end();
    return status;
}
