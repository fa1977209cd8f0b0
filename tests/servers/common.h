/* What the servers the tests start (tests/servers/) have in common: time,
 * waiting for a child and saying how it ended, a free loopback port, the
 * telling lines of a server's log for an error message, and removing a
 * temporary directory. Call from a plain thread or outside coil_run: they
 * block. */
#ifndef COIL_TEST_SERVERS_COMMON_H
#define COIL_TEST_SERVERS_COMMON_H

#include <stddef.h>
#include <sys/types.h>

/* CLOCK_MONOTONIC in seconds. */
double server_now_s(void);

/* Sleeps ms milliseconds, through signals. */
void server_sleep_ms(int ms);

/* Waits up to timeout_ms for the child pid to end: its wait status, or -1
 * when it did not (then it still runs). */
int server_wait_for(pid_t pid, int timeout_ms);

/* "exited with N", "killed by signal N" for a wait status. */
void server_describe_status(char *out, size_t cap, int st);

/* A free port of 127.0.0.1, picked by the kernel (bound, then released: the
 * server binds it a moment later, and a start that loses the race is
 * retried by the caller); -errno when none could be had. */
int server_free_port(void);

/* Appends to why (a string in a buffer of cap bytes) what the file at path
 * says went wrong: its lines that contain marker, or marker2 (may be NULL),
 * or its last 600 bytes when none does. */
void server_add_log(char *why, size_t cap, const char *path, const char *marker,
                    const char *marker2);

/* In a forked child about to exec a server: stdin from /dev/null, stdout
 * and stderr appended to log (made with mode), no other fd open (the
 * parent's sockets, coil's ring or epoll fd), every signal at its default
 * and none blocked. Ends the child with 126 when log cannot be opened. */
void server_child_setup(const char *log, mode_t mode);

/* Removes dir and everything below it (without following links). */
void server_remove_tree(const char *dir);

#endif
