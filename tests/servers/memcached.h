/* A memcached server for a test or a benchmark: started as a child process
 * on a free loopback port, waited for until it answers, stopped after.
 * Shared by tests/test_install_memcached.c and bench/db_memcached.c; plain
 * libc calls only (no coil, no cmocka), made outside any tasklet. */
#ifndef COIL_SERVERS_MEMCACHED_H
#define COIL_SERVERS_MEMCACHED_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

struct coil_memcached {
    pid_t pid; /* 0 when not running */
    uint16_t port;
};

/* The memcached to run: $COIL_MEMCACHED when set, else the first memcached
 * on PATH, else /usr/bin/memcached. Copies its path into buf; false when
 * there is none (the caller skips: the Debian package memcached is missing). */
bool coil_memcached_find(char *buf, size_t cap);

/* Starts memcached -l 127.0.0.1 -p PORT -U 0 (-u nobody when root) on a
 * free port (bound and released just before, so picked by the kernel; tried
 * again on another port if it exits before it answers), and waits until it
 * answers "version" on that port (at most 20 s). Returns 0, -ENOENT when
 * there is no memcached to run, or another -errno (said on stderr) when it
 * did not come up. */
int coil_memcached_start(struct coil_memcached *m);

/* SIGTERM, then waits for it (SIGKILL after 10 s). Returns its wait status,
 * or -ECHILD when it was not running. Also reaps a server the caller killed. */
int coil_memcached_stop(struct coil_memcached *m);

#endif
