/* A PostgreSQL server of a test's (or a benchmark's) own: initdb and
 * postgres from the Debian package postgresql-15 (found on PATH or in
 * /usr/lib/postgresql/<version>/bin, the highest version), the cluster made
 * in a temporary directory, the server on a free loopback port and a unix
 * socket in that directory, and stopped after. Shared by
 * tests/test_install_pg.c and bench/db_pg.c; it uses libpq to see that the
 * server answers.
 *
 *   struct pg_server s;
 *   pg_server_init(&s);
 *   if (pg_server_start(&s) == PG_SERVER_MISSING) ... skip ...
 *   ... connect to 127.0.0.1:s.port, or host=s.dir (the unix socket), as
 *       PG_SERVER_USER with PG_SERVER_PASSWORD, dbname PG_SERVER_DB ...
 *   pg_server_stop(&s);     (fast shutdown, reaped; may start again after)
 *   pg_server_cleanup(&s);  (stops it if need be, removes the directory)
 *
 * PostgreSQL refuses to run as root: when this process's euid is 0, initdb
 * and postgres run as the user nobody (the directory is given to it). This
 * process becomes a subreaper (prctl PR_SET_CHILD_SUBREAPER) at the first
 * start, so that the server's backends, orphaned when their postmaster dies,
 * come to it, and the stop and the kill reap every one: none is left behind
 * (any child of this process named postgres counts as the server's: one
 * server per process at a time). The cluster is made once (about a second,
 * without fsync) at the first start, and every later start of the same
 * struct reuses it, after a stop or a kill alike. Call these from a plain
 * thread (or the main thread outside coil_run): they block it. */
#ifndef COIL_TEST_SERVERS_PG_H
#define COIL_TEST_SERVERS_PG_H

#include <stdbool.h>
#include <sys/types.h>

/* The role made at the first start, with a password (so that a client goes
 * through the server's SCRAM-SHA-256 exchange) over TCP and the unix socket
 * alike; the cluster's own superuser "postgres" is trusted without one. */
#define PG_SERVER_USER     "coil"
#define PG_SERVER_PASSWORD "coil-test-pw"
#define PG_SERVER_DB       "postgres"

/* pg_server_start's result when postgres or initdb is not installed: the
 * caller skips. */
#define PG_SERVER_MISSING 1

struct pg_server {
    char dir[64];     /* the temporary directory; the unix socket's too */
    char datadir[96]; /* dir/data */
    char socket[96];  /* dir/.s.PGSQL.<port> while it runs */
    char log[96];     /* dir/server.log: the server's log */
    int port;         /* 127.0.0.1:port while it runs */
    pid_t pid;        /* the running postmaster, or 0 */
    bool installed;   /* datadir holds a cluster */
    double install_s; /* how long initdb took */
    double start_s;   /* how long the last start took, until it answered */
    char version[64]; /* the server's, as it says at a connection */
    char why[1024];   /* what went wrong, when a call fails */
};

void pg_server_init(struct pg_server *s);

/* Starts the server (making the cluster first, once) and waits (at most
 * 60 s) until it answers a query over TCP. Returns 0, PG_SERVER_MISSING,
 * or -1 with s->why (and the end of its log). */
int pg_server_start(struct pg_server *s);

/* Fast shutdown (SIGINT: the server ends its sessions, rolls back their
 * transactions and exits), then reaps the postmaster (at most 30 s; then as
 * pg_server_kill) and any process of it left. Returns 0 when the postmaster
 * exited with status 0 and left none, -1 otherwise (s->why says how). */
int pg_server_stop(struct pg_server *s);

/* SIGKILL to the postmaster and every process of it (its backends, the
 * ones running queries included, and its auxiliary processes: a server that
 * crashes), then reaps them all. Inside a tasklet after coil_install, the
 * waits park only that tasklet. */
void pg_server_kill(struct pg_server *s);

/* Stops the server if it runs and removes the temporary directory. */
void pg_server_cleanup(struct pg_server *s);

#endif
