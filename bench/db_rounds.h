/* The measurement shared by coil-bench-db-pg and coil-bench-db-mariadb: N
 * queries at once, one tasklet (and connection) each, against one alone.
 *
 * db_rounds() runs a warm-up batch of n short queries (0.01 s, not timed:
 * whatever a server or a library does once at its first connections is not
 * charged to the first round), then per round one query of delay_s alone and
 * n at once, each in a tasklet of its own under one coil_run; "wall" runs
 * from the first spawn to the last query's end. It prints a line per round
 * (one query, wall, wall / one), then the medians with the lowest and
 * highest ratio, and what the queries would take one after another.
 * query() does the whole of one client's work for q (connect, query, check
 * the row, close) and sets q->ok, or q->err. Returns 0, or 1 once a query
 * failed (the first failure printed after "prog: "). */
#ifndef COIL_BENCH_DB_ROUNDS_H
#define COIL_BENCH_DB_ROUNDS_H

#include <stdbool.h>
#include <stdint.h>

struct db_query {
    int idx;        /* 0..n-1: the query puts it in its row, and checks it */
    double delay_s; /* the server-side delay the query asks for */
    bool ok;
    int64_t done_at; /* coil_now() at its end, set by db_rounds */
    char err[256];
};

int db_rounds(const char *prog, void (*query)(struct db_query *q), int n, double delay_s,
              int rounds);

#endif
