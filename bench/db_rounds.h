/* The measurement shared by coil-bench-db-pg and coil-bench-db-mariadb: N
 * queries at once, one connection each, against one alone.
 *
 * db_rounds() runs a warm-up batch of n short queries (0.01 s, not timed:
 * whatever a server or a library does once at its first connections is not
 * charged to the first round), then per round one query of delay_s alone and
 * n at once. Each query runs in a tasklet of its own under one coil_run, or,
 * with -g S, spread over the S schedulers of a coil_run_group (tasklet i on
 * scheduler i % S); with -T on a plain thread of its own instead, where
 * coil_install diverts nothing: the floor that blocking clients on as many
 * threads as queries reach on this machine.
 *
 * What is timed: by default the whole of a client's work (connect with the
 * server's password exchange, query, row checked, close), from the first
 * spawn to the last row in; with -p (pooled) only the queries, on
 * connections every client opened before the clock starts (a wait group:
 * all opened, then all go), as a program with a connection pool runs them.
 *
 * It prints a line per round (one query, wall, wall / one), then the medians
 * with the lowest and highest ratio, and what the queries would take one
 * after another. Returns 0, or 1 once a query failed (the first failure
 * printed after "prog: "). */
#ifndef COIL_BENCH_DB_ROUNDS_H
#define COIL_BENCH_DB_ROUNDS_H

#include <stdbool.h>
#include <stdint.h>

struct batch;

struct db_query {
    int idx;             /* 0..n-1: the query puts it in its row, and checks it */
    double delay_s;      /* the server-side delay the query asks for */
    void *conn;          /* the client's connection, set by open */
    struct batch *batch; /* db_rounds' own */
    bool ok;
    int64_t done_at; /* coil_now() at its end, set by db_rounds */
    char err[256];
};

/* One database client library, as the benchmark drives it. open and query
 * return false with q->err set; close frees q->conn (NULL or not). */
struct db_client {
    bool (*open)(struct db_query *q);
    bool (*query)(struct db_query *q);
    void (*close)(struct db_query *q);
};

/* The options the database benchmarks share: -n N (default 40), -d SECONDS
 * (0.5), -r ROUNDS (3), -g SCHEDULERS (1: one coil_run), -p (pooled), -T
 * (threads), and -t where trust_flag (db_pg: the trusted superuser, no
 * password). */
struct db_opts {
    int n, rounds, sched;
    double delay_s;
    bool pooled, threads, trust;
};

/* Parses argv into o; returns 0, or 2 after printing the usage. */
int db_parse(const char *prog, int argc, char **argv, bool trust_flag, struct db_opts *o);

/* Prints the line that says how the queries run (after the program's own
 * line on the library and server). */
void db_describe(const struct db_opts *o);

int db_rounds(const char *prog, const struct db_client *c, const struct db_opts *o);

#endif
