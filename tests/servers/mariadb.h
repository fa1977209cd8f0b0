/* A MariaDB server of a test's (or a benchmark's) own: mariadbd from the
 * Debian package mariadb-server-core, started in a temporary directory on a
 * free loopback port and a unix socket there, and stopped after. Shared by
 * tests/test_install_mariadb.c and bench/db_mariadb.c; it uses MariaDB
 * Connector/C (libmariadb) to see that the server answers.
 *
 *   struct mariadb_server s;
 *   mariadb_server_init(&s);
 *   if (mariadb_server_start(&s) == MARIADB_SERVER_MISSING) ... skip ...
 *   ... connect to 127.0.0.1:s.port or s.socket as MARIADB_SERVER_USER ...
 *   mariadb_server_stop(&s);     (SIGTERM, reaped; may start again after)
 *   mariadb_server_cleanup(&s);  (stops it if need be, removes the directory)
 *
 * The data directory is made once (mariadb-install-db, about a second) at the
 * first start, and every later start of the same struct reuses it, after a
 * stop or a kill alike. The server runs with small buffers, no binary log and
 * no name resolution, so it starts in about half a second. Call these from a
 * plain thread (or the main thread outside coil_run): they block it. */
#ifndef COIL_TEST_SERVERS_MARIADB_H
#define COIL_TEST_SERVERS_MARIADB_H

#include <stdbool.h>
#include <sys/types.h>

/* The account made at the first start, with a password (so that a client
 * goes through the server's authentication exchange), from 127.0.0.1 and
 * localhost (the unix socket). */
#define MARIADB_SERVER_USER     "coil"
#define MARIADB_SERVER_PASSWORD "coil-test-pw"

/* mariadb_server_start's result when mariadbd or mariadb-install-db is not
 * installed: the caller skips. */
#define MARIADB_SERVER_MISSING 1

struct mariadb_server {
    char dir[64];     /* the temporary directory */
    char datadir[96]; /* dir/data */
    char socket[96];  /* dir/mariadb.sock */
    char log[96];     /* dir/server.log: the server's error log */
    int port;         /* 127.0.0.1:port while it runs */
    pid_t pid;        /* the running mariadbd, or 0 */
    bool installed;   /* datadir holds a data directory */
    double install_s; /* how long mariadb-install-db took */
    double start_s;   /* how long the last start took, until it answered */
    char version[64]; /* the server's, as it says at a connection */
    char why[1024];   /* what went wrong, when a call fails */
};

void mariadb_server_init(struct mariadb_server *s);

/* Starts the server (making the data directory first, once) and waits
 * (at most 60 s) until it answers a query over TCP. Returns 0,
 * MARIADB_SERVER_MISSING, or -1 with s->why (and the end of its log). */
int mariadb_server_start(struct mariadb_server *s);

/* SIGTERM, then reaps it (at most 30 s; then SIGKILL). Returns 0 when it
 * exited with status 0, -1 otherwise (s->why says how). */
int mariadb_server_stop(struct mariadb_server *s);

/* SIGKILL, then reaps it: a server that dies. Inside a tasklet after
 * coil_install, the wait parks only that tasklet. */
void mariadb_server_kill(struct mariadb_server *s);

/* Stops the server if it runs and removes the temporary directory. */
void mariadb_server_cleanup(struct mariadb_server *s);

#endif
