/*
 * coil: blocking-style network programs on completion-based I/O.
 *
 * One scheduler per OS thread runs lightweight tasklets; tasklets talk through
 * Stackless-style channels. Everything here is called from inside a tasklet
 * (that is, under coil_run) unless its contract says otherwise.
 *
 * Conventions
 *  - Functions that can fail return 0 (or a non-negative value) on success and a
 *    negative errno on failure, like liburing. errno itself is never touched.
 *  - Time is in nanoseconds on the CLOCK_MONOTONIC clock that coil_now() reads.
 *    A deadline is an absolute coil_now() value; a negative one (COIL_FOREVER)
 *    means none.
 *    A deadline that has already passed makes a call try once without blocking
 *    and return -ETIMEDOUT if it would have to wait.
 *  - Cancellation is an error code, not an unwind: once a tasklet is killed,
 *    its current blocking call and every later one return -ECANCELED, so it
 *    leaves through its own cleanup code. Cleanup can finish: a channel
 *    transfer that needs no waiting still completes (and coil_close, which
 *    never blocks, works), and coil_join still waits (bounded by its
 *    deadline), so "spawn, join, free" is safe when the joiner is killed too.
 *    Socket, file, sleep and offload calls fail at once, even when they
 *    would not have had to wait.
 *    (How: docs/architecture.md, section "Cancellation".)
 *  - Calling a blocking function outside a tasklet returns -EPERM.
 */
#ifndef COIL_H
#define COIL_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>
#ifdef _WIN32
/* Windows: an "fd" in this API is a SOCKET value cast to int (coil_socket and
 * coil_accept return one; pass (int)s for a SOCKET made elsewhere with
 * WSA_FLAG_OVERLAPPED). Winsock handles are small numbers that fit an int.
 * See the Sockets section for what differs there. */
#include <winsock2.h>
#include <ws2tcpip.h>
#else
#include <signal.h>
#include <sys/socket.h>
#endif

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32)
#define COIL_API /* Windows: coil is built as a static library only */
#elif defined(__GNUC__)
#define COIL_API __attribute__((visibility("default")))
#else
#define COIL_API
#endif

#define COIL_VERSION_MAJOR 0
#define COIL_VERSION_MINOR 1
#define COIL_VERSION_PATCH 0

/* "No deadline". */
#define COIL_FOREVER ((int64_t)-1)

/* Handy durations, in nanoseconds. */
#define COIL_USEC ((int64_t)1000)
#define COIL_MSEC ((int64_t)1000000)
#define COIL_SEC  ((int64_t)1000000000)

/* ------------------------------------------------------------------------ */
/* Tasklets                                                                 */
/* ------------------------------------------------------------------------ */

/* A tasklet id. Ids are positive, unique within one scheduler (one thread's
 * coil_run) or one group of schedulers (coil_run_group), and never reused, so
 * a stale id is always detected: the calls below answer -ESRCH for it instead
 * of touching another tasklet. */
typedef int64_t coil_id;

typedef void (*coil_fn)(void *arg);

/* Default and limits of a tasklet's stack. Stacks are mmap'd with a 64 KiB
 * guard below them and committed lazily: an idle tasklet costs about one page
 * of memory whatever its stack size. Overflowing into the guard ends the
 * process with a message naming the tasklet; a single frame larger than the
 * guard can step over it unless the code is built with
 * -fstack-clash-protection (pkg-config --cflags coil gives it). */
#define COIL_STACK_DEFAULT ((size_t)256 * 1024)
#define COIL_STACK_MIN     ((size_t)16 * 1024)
#define COIL_STACK_MAX     ((size_t)1024 * 1024 * 1024)

typedef struct coil_spawn_opts {
    /* Copied (up to 31 bytes); NULL or "" leaves the tasklet unnamed. */
    const char *name;
    /* 0 for COIL_STACK_DEFAULT; otherwise rounded up to whole pages and
     * checked against COIL_STACK_MIN..COIL_STACK_MAX. */
    size_t stack_size;
    /* The tasklet's user pointer from its start (see coil_set_user). */
    void *user;
} coil_spawn_opts;

/* Runs a scheduler on the calling thread: spawns main(arg) as the first
 * tasklet (id 1, named "main") and returns when every tasklet has finished,
 * including those parked on timers, channels and I/O.
 * Returns 0; -EINVAL if main is NULL; -EBUSY if this thread already runs a
 * scheduler; -ENOMEM (or the backend's error) if the scheduler cannot be set
 * up; -EDEADLK if every remaining tasklet waited on something that could
 * never happen: coil_run then writes a dump (see coil_dump) to stderr, kills
 * those tasklets so that their calls return -ECANCELED and they finish
 * through their own cleanup, and returns once they have; -EINTR if SIGINT or
 * SIGTERM arrived: every outstanding operation is cancelled and every
 * tasklet killed the same way, and coil_run returns once all have finished
 * (also when the signal came just as the last tasklet ended: it is never
 * lost).
 * (coil_run catches SIGINT and SIGTERM only while their disposition is the
 * default, or also when ignored, see coil_set_shutdown_signals, and gives
 * them back on return. A second one ends the process as it would without
 * coil, and so does coil itself when the tasklets have not all finished
 * within the grace of coil_set_shutdown_grace, each after writing to stderr
 * what each scheduler was doing (a backtrace for one stuck in a call nothing
 * diverted: the grace holds for it too, from the signal handler, one second
 * later; not on Windows, where a second Ctrl-C ends it without a dump). SIGPIPE is never
 * raised by coil's calls, which send with MSG_NOSIGNAL. On Windows they are
 * caught with the C runtime's signal(), which also delivers a console Ctrl-C
 * as SIGINT. How: docs/architecture.md, section "Shutdown".)
 * The I/O backend is chosen here: io_uring, or epoll when io_uring cannot be
 * set up (io_uring_setup fails with ENOSYS, EPERM or EACCES: an old kernel,
 * a seccomp profile, kernel.io_uring_disabled; any other failure is
 * returned). The environment variable COIL_BACKEND=io_uring or =epoll forces
 * one: -EINVAL for another value, and the setup's error (-EPERM, ...) if the
 * forced one cannot be set up; both are also said on stderr. On Windows the
 * backend is I/O completion ports ("iocp"), the only one there.
 * On io_uring (Linux 6.12 and later) a loaded scheduler waits for several
 * completions at once, holding none (nor an offload result or a wake-up from
 * another thread) back longer than COIL_BATCH_WAIT_US microseconds (default
 * 200; 0 turns batching off; anything but digits up to 1000000 is ignored).
 * Timers are never delayed by it, a lone request/response is held at most
 * once (as load stops), and a few clients that each wait for their answer do
 * not wait for one another. (How: docs/architecture.md, section "io_uring".) */
COIL_API int coil_run(coil_fn main, void *arg);

/* Runs a group of nthreads schedulers, one per thread (0: one per CPU the
 * process may run on; the calling thread is one of them, scheduler 0), and
 * returns when every tasklet on every one has finished. main(arg) is the
 * first tasklet, on scheduler 0; the others start empty, and get tasklets
 * from coil_spawn_on. Tasklets never move: each runs on the scheduler that
 * spawned it for its whole life. Channels, coil_join and coil_kill work
 * between tasklets of different schedulers of the group, and tasklet ids are
 * unique in the group. The results are those of coil_run, for the group:
 * -EINTR when a SIGINT/SIGTERM came (every tasklet of every scheduler is
 * killed and the call returns once all have finished); -EDEADLK when every
 * scheduler was left with tasklets that wait on one another and nothing else
 * (no timer, I/O or offloaded call of any scheduler pending), with a dump of
 * each scheduler on stderr. Also -EINVAL for a NULL main or more than
 * COIL_GROUP_MAX threads; -EBUSY if this thread already runs a scheduler;
 * -EAGAIN if a thread cannot be started. (How: docs/architecture.md, section
 * "Groups of schedulers".) */
#define COIL_GROUP_MAX 1024
COIL_API int coil_run_group(unsigned nthreads, coil_fn main, void *arg);

/* The number of schedulers of the calling thread's group (1 under coil_run),
 * and which one this thread runs (0 to count-1). -EPERM outside a scheduler. */
COIL_API int coil_sched_count(void);
COIL_API int coil_sched_index(void);

/* coil_spawn on scheduler `sched` of the caller's group (0 to
 * coil_sched_count()-1), or on the next in turn with COIL_SCHED_NEXT. The
 * caller waits for the other scheduler to create the tasklet (one round of
 * its loop). Returns the new tasklet's id; -EINVAL for a scheduler out of
 * range, and coil_spawn's errors. */
#define COIL_SCHED_NEXT (-1)
COIL_API coil_id coil_spawn_on(int sched, coil_fn fn, void *arg, const coil_spawn_opts *opts);

/* Creates a tasklet that will run fn(arg); it is runnable at once and starts
 * when the caller next blocks or yields. opts may be NULL.
 * Returns the new tasklet's id (> 0); -EINVAL for a NULL fn or a stack size
 * out of range; -EPERM outside a tasklet; -ENOMEM when no stack can be mapped
 * (with very many tasklets, see vm.max_map_count in the README). */
COIL_API coil_id coil_spawn(coil_fn fn, void *arg, const coil_spawn_opts *opts);

/* Stackless schedule(): moves the caller to the back of the run queue and runs
 * the others that are ready. Returns 0; -ECANCELED if the caller was killed
 * (it then does not yield); -EPERM outside a tasklet. */
COIL_API int coil_yield(void);

/* Parks the caller for ns nanoseconds (coil_sleep) or until the deadline
 * (coil_sleep_until). A zero or negative duration and a past deadline return
 * at once. Returns 0; -ECANCELED if killed; -EINVAL for a negative deadline
 * (COIL_FOREVER included: that is what a channel is for); -EPERM outside a
 * tasklet. */
COIL_API int coil_sleep(int64_t ns);
COIL_API int coil_sleep_until(int64_t deadline);

/* Waits until tasklet id has finished. Returns 0 when it has (at once if it
 * already had); -ESRCH for an id that never named a tasklet of this
 * scheduler; -EDEADLK for the caller's own id, and when coil_run finds that
 * nothing can ever end the wait (tasklets joining one another); -ETIMEDOUT
 * when the deadline passes first; -EPERM outside a tasklet. Any number of
 * tasklets may join the same one.
 * A kill does not cut a join short, and a killed tasklet may join: it is the
 * wait of cleanup, so that a tasklet can free what the tasklets it spawned
 * use only once they have finished (at shutdown they are killed too, so the
 * wait is short). Bound it with a deadline where the target might not end. */
COIL_API int coil_join(coil_id id, int64_t deadline);

/* Stackless kill(): the tasklet's current blocking call and every later one
 * return -ECANCELED, so it unwinds through its own code. A call whose wait had already ended when
 * the kill came (a receive that got its element, a sleep whose time was up) still returns its
 * result, so nothing is lost; the kill shows from the next call on. What needs no waiting still
 * completes after the kill (a channel send with room or to a waiting receiver, a receive with an
 * element ready, a choose with a ready clause), and coil_join still waits: see there. A tasklet
 * that has not started yet still starts (so that it can release what arg owns). Killing oneself
 * marks oneself. A kill reaches only the tasklet named, not those it spawned. Returns 0; -ESRCH if
 * id names no live tasklet (finished, or never existed); -EPERM outside a tasklet. */
COIL_API int coil_kill(coil_id id);

/* 1 if the calling tasklet has been killed (by coil_kill, or by coil_run at
 * shutdown or deadlock), else 0 (also outside a tasklet). A library running
 * under coil_install reports a killed call as its own failure: this tells a
 * cancellation from a real error. libcurl 7.88 (Debian 12), for one, waits
 * in poll (its sockets are non-blocking); when that poll fails with
 * ECANCELED, curl_easy_perform returns CURLE_BAD_FUNCTION_ARGUMENT, with
 * nothing in CURLOPT_ERRORBUFFER, whether it was connecting, waiting for the
 * response or reading the body (tests/test_install_libs.c). */
COIL_API int coil_killed(void);

/* The calling tasklet's id, or 0 outside a tasklet. */
COIL_API coil_id coil_self(void);

/* The name given at spawn ("" if none); the string lives as long as the
 * tasklet. NULL if id names no live tasklet of the calling thread. */
COIL_API const char *coil_name(coil_id id);

/* Monotonic time in nanoseconds (CLOCK_MONOTONIC). Callable anywhere. */
COIL_API int64_t coil_now(void);

/* Which of SIGINT and SIGTERM coil_run takes for a clean shutdown (see
 * coil_run): COIL_SIGNALS_IF_DEFAULT (the default) those left at their
 * default action; COIL_SIGNALS_TAKE those ignored too (a program started in
 * the background by a shell script inherits SIGINT ignored, so its Ctrl-C
 * would otherwise do nothing); COIL_SIGNALS_LEAVE neither. A handler the
 * program installed itself is never replaced. Process-wide; read when a
 * coil_run starts while no other runs. Callable anywhere. Returns 0; -EINVAL
 * for another mode. */
enum { COIL_SIGNALS_IF_DEFAULT = 0, COIL_SIGNALS_TAKE = 1, COIL_SIGNALS_LEAVE = 2 };
COIL_API int coil_set_shutdown_signals(int mode);

/* How long, after a shutdown signal, the tasklets get to finish their cleanup
 * (10 s by default; negative: no limit). When it is up and some are still
 * running (a join or an offloaded call that does not end), coil_run writes a
 * dump to stderr and ends the process as the signal's default action would.
 * Process-wide; read by each scheduler when the signal arrives. Callable
 * anywhere. Returns 0. */
COIL_API int coil_set_shutdown_grace(int64_t ns);

/* Writes every tasklet of the calling thread's scheduler to out: id, name,
 * state, what it waits on (channel and direction, sleep, join, choose, a
 * call to another scheduler) and for how long; after the first line, the
 * backend may add lines of its own state (io_uring: how many completions a
 * blocking wait asks for). Under each tasklet that is not running and has
 * run, the frames of its stack from where it stopped out to its function,
 * one "      at NAME+0xOFFSET (OBJECT)" line each (Linux with glibc; NAME
 * from the dynamic symbol table: a program's own functions are named when
 * it is linked with -rdynamic, static ones show as "at 0xADDRESS"; at most
 * 32, then "      at ... (N more)", or "(at least N more)" beyond 64).
 * Called from a tasklet of a group, it goes on with
 * every other scheduler of the group, each writing its own part on its own
 * thread while the caller waits (so out must be usable from any thread: a
 * FILE is). Returns the number of tasklets listed; -EINVAL for a NULL out;
 * -EPERM when this thread runs no scheduler. */
COIL_API int coil_dump(FILE *out);

/* Asks for a dump to stderr whenever signal signo arrives (SIGQUIT is the
 * usual choice); each scheduler (every one of a group) writes its own at its
 * next round, each part whole. The
 * handler only sets a flag and wakes the schedulers. Callable anywhere.
 * Returns 0; -EINVAL for a signal that cannot be caught or is used by coil
 * (SIGKILL, SIGSTOP, SIGSEGV, SIGBUS, or out of range). */
COIL_API int coil_dump_on_signal(int signo);

/* The stall watchdog: reports every tasklet that holds its scheduler for ns
 * nanoseconds or more without a switch (a computation that never yields, or
 * a blocking call that nothing diverted: a library's raw read, a lock held
 * by another thread). coil writes to stderr which tasklet, for how long and
 * a backtrace of where it is, and lets it run on; once per stall, and a
 * line when it gives the scheduler back. Every scheduler of the process is
 * watched, those of groups included. Off by default (a report costs the
 * stalled thread a signal, and a program that computes on purpose would be
 * reported); COIL_WATCHDOG_MS=<ms> in the environment turns it on at the
 * first coil_run (coil_run returns -EINVAL, said on stderr, for a value
 * that is not digits). 0 turns it off. Callable anywhere, any time;
 * process-wide.
 * How: one monitor thread, started only while the watchdog is on, samples
 * each scheduler's switch count every quarter of ns (1 ms to 1 s: the
 * report comes up to that late); on a stall it sends SIGURG to the
 * scheduler's thread, whose handler writes the report. So the watched code
 * sees a signal: a read or write on a pipe or socket goes on by itself
 * (SA_RESTART), but a raw poll, select, nanosleep, epoll_wait or a read with
 * a timeout returns EINTR once (signal(7)), as for any signal. A SIGURG
 * handler of the program's own is kept and called for every SIGURG that is
 * not coil's; if the program replaces coil's, stalls are reported without a
 * backtrace. The backtrace names functions the dynamic symbol table knows
 * (link the program with -rdynamic for its own; static functions show as
 * addresses). (docs/architecture.md, section "The stall watchdog".)
 * Returns 0; -EINVAL for a negative ns; -EAGAIN (or pthread_create's error)
 * if the monitor thread cannot start; -ENOTSUP on Windows (for any ns but
 * 0), where COIL_WATCHDOG_MS is not read. */
COIL_API int coil_watchdog(int64_t ns);

/* ------------------------------------------------------------------------ */
/* Tasklet-local storage                                                    */
/* ------------------------------------------------------------------------ */

/* Every tasklet has a user pointer (NULL unless set, or given at spawn in
 * coil_spawn_opts.user) that coil never reads: the program's own per-tasklet
 * context (a request, a log prefix). coil_set_user and coil_get_user take
 * the id of a live tasklet of the caller's scheduler (coil_self() for the
 * caller). They return 0; -ESRCH for an id that names no live tasklet;
 * -EXDEV for a tasklet of another scheduler of the group (its record is that
 * thread's); -EINVAL for a NULL out; -EPERM outside a tasklet. */
COIL_API int coil_set_user(coil_id id, void *user);
COIL_API int coil_get_user(coil_id id, void **out);

/* The calling tasklet's user pointer: a thread-local load and two more, no
 * check beyond "inside a tasklet". NULL outside a tasklet. */
COIL_API void *coil_user(void);

/* Keys of tasklet-local values, like pthread keys: one key, a value per
 * tasklet. Keys are process-wide (any scheduler, any thread); a value
 * belongs to one tasklet. A zeroed coil_key is no key. */
typedef uint32_t coil_key;

/* At most this many keys exist at once. */
#define COIL_KEYS_MAX 128
/* Rounds of destructors at a tasklet's end (see coil_key_create). */
#define COIL_DESTRUCTOR_ROUNDS 4

/* Creates a key; destructor (may be NULL) runs for each tasklet that ends
 * with a non-NULL value for the key. Callable anywhere, from any thread.
 * Returns 0 and sets *key; -EINVAL for a NULL key; -EAGAIN when
 * COIL_KEYS_MAX keys exist already.
 * Destructors run when the tasklet's function has returned, however it ends:
 * normally, killed (coil_kill), or killed by coil_run at a shutdown
 * (SIGINT/SIGTERM) or a deadlock. They run on the ending tasklet's own stack
 * and thread, as a part of it: coil_self() is still its id, coil_killed()
 * says whether it was killed, and every call works as it would in the
 * tasklet (a killed one's waits return -ECANCELED); the tasklet's joiners
 * and its scope (coil_scope_wait) hear of its end only after the last
 * destructor. They run in the order of the keys' slots (a new key takes the
 * lowest free slot, so keys created one after another, none deleted
 * between, run in the order they were created); each value is set to NULL
 * before its destructor is called with it, once. A destructor may set
 * values (of any key): they get another round, up to COIL_DESTRUCTOR_ROUNDS
 * in all; what is still set after that is forgotten without a call. A
 * destructor that waits (a tasklet that was not killed may) holds the
 * tasklet, and its joiners, until it returns. */
COIL_API int coil_key_create(coil_key *key, void (*destructor)(void *value));

/* Deletes a key. No destructor runs for the values tasklets still hold for
 * it (as pthread_key_delete): their owner frees them. The key's values are
 * unreachable from then on, also through a later key that reuses the slot.
 * Callable anywhere. Returns 0; -EINVAL for a key that does not exist (never
 * created, or deleted). */
COIL_API int coil_key_delete(coil_key key);

/* Sets the calling tasklet's value for key (NULL clears it). The first value
 * a tasklet sets allocates its table (a few bytes per key slot up to the
 * highest set). Returns 0; -EINVAL for a key that does not exist; -ENOMEM;
 * -EPERM outside a tasklet. */
COIL_API int coil_local_set(coil_key key, void *value);

/* The calling tasklet's value for key: NULL when it set none, for a key that
 * does not exist, and outside a tasklet. */
COIL_API void *coil_local_get(coil_key key);

/* ------------------------------------------------------------------------ */
/* Scopes: structured concurrency                                           */
/* ------------------------------------------------------------------------ */

/* A scope is a set of tasklets ("members") that one tasklet waits for as a
 * whole: spawn them into the scope, then coil_scope_wait, which returns only
 * once every member has finished, whatever happens meanwhile (its deadline,
 * its caller killed, a member failing). "These 50 downloads, at most 5 s,
 * stop the rest on the first error" is
 *
 *     coil_scope *sc;
 *     coil_scope_open(&sc, COIL_SCOPE_FAIL_FAST);
 *     for (int i = 0; i < 50; i++) coil_scope_spawn(sc, download, &jobs[i], NULL);
 *     int rc = coil_scope_wait(sc, coil_now() + 5 * COIL_SEC);
 *     coil_scope_free(sc);
 *
 * A member's function returns its result: 0 (or positive) for success, a
 * negative errno for a failure. (A return value rather than a "set result"
 * call: the result cannot be forgotten or set twice, and a member that
 * unwinds from a kill reports -ECANCELED by the same return as its other
 * errors, as coil_offload's functions do.) Cancelling a scope kills every
 * member (coil_kill: its waits return -ECANCELED and it unwinds through its
 * own cleanup, tasklet-local destructors included).
 * A scope belongs to the scheduler of the tasklet that opened it, and its
 * members run there: coil_spawn_on has no scope form, and every call from a
 * tasklet of another scheduler returns -EXDEV (a member may itself spawn on
 * another scheduler and join what it spawned). (How: docs/architecture.md,
 * section "Scopes".) */
typedef struct coil_scope coil_scope;

/* The first member that fails cancels the others, and the wait returns its
 * result. */
#define COIL_SCOPE_FAIL_FAST 1

/* Opens a scope (flags: 0 or COIL_SCOPE_FAIL_FAST). Returns 0 and sets *out;
 * -EINVAL for a NULL out or an unknown flag; -ENOMEM; -EPERM outside a
 * tasklet. */
COIL_API int coil_scope_open(coil_scope **out, int flags);

/* Spawns fn(arg) as a member of sc, as coil_spawn does (opts likewise). Any
 * tasklet of the scheduler may spawn into a scope, members too, also while
 * its wait runs. Returns the member's id; -EINVAL for a NULL sc or fn or a
 * stack size out of range; -ECANCELED once sc is cancelled (by
 * coil_scope_cancel, a failure under COIL_SCOPE_FAIL_FAST, or its wait's
 * deadline or kill): fn is not run; -EPIPE once sc's wait has returned;
 * -EXDEV from another scheduler; -ENOMEM; -EPERM outside a tasklet. */
COIL_API coil_id coil_scope_spawn(coil_scope *sc, int (*fn)(void *arg), void *arg,
                                  const coil_spawn_opts *opts);

/* Waits until every member of sc has finished. If the deadline passes first,
 * or the caller is killed (before or during the wait), the scope is
 * cancelled, and the wait goes on until the members have unwound: no member
 * outlives it. So a member that cannot finish (an offloaded call that never
 * returns) holds the wait, as it would hold coil_run; bound it inside the
 * member. Returns, once no member is left:
 *  - the reason the scope was cancelled, if it was: -ETIMEDOUT (the
 *    deadline), -ECANCELED (the caller killed, or coil_scope_cancel), or the
 *    failing member's result (COIL_SCOPE_FAIL_FAST);
 *  - otherwise the result of the first member that failed, or 0.
 * With no member left at the call it returns at once, deadline passed or
 * caller killed. Afterwards the scope takes no more members, and a later
 * wait returns the same result at once. Errors: -EINVAL for a NULL sc;
 * -EBUSY while another tasklet waits on sc; -EDEADLK when the caller would
 * wait for itself: it is a member of sc, or a member waits for it (in a
 * scope's wait whose members include it, or, outside a group, in a
 * coil_join of it), and so on. (A cycle closed later, by a member's join of
 * the waiter, is a deadlock that coil_run breaks: that join returns
 * -EDEADLK.) -EXDEV from another scheduler; -EPERM outside a tasklet. */
COIL_API int coil_scope_wait(coil_scope *sc, int64_t deadline);

/* Cancels sc: kills every member (a kill does not reach the tasklets they
 * spawned outside the scope), and later spawns into it return -ECANCELED.
 * Never waits. Returns 0 (also when already cancelled or finished); -EINVAL
 * for a NULL sc; -EXDEV from another scheduler; -EPERM outside a tasklet. */
COIL_API int coil_scope_cancel(coil_scope *sc);

/* Frees sc (with or without a wait). Callable from a tasklet of sc's
 * scheduler, or outside every scheduler (after coil_run has returned).
 * Returns 0; -EBUSY (and frees nothing) while members live or a tasklet
 * waits on it; -EINVAL for a NULL sc; -EXDEV from another scheduler. */
COIL_API int coil_scope_free(coil_scope *sc);

/* ------------------------------------------------------------------------ */
/* Channels                                                                 */
/* ------------------------------------------------------------------------ */

/* A channel carries fixed-size elements between tasklets of one scheduler,
 * or of any schedulers of one group (coil_run_group), with the same
 * semantics either way. Unbuffered (capacity 0) channels are Stackless
 * rendezvous points: a send waits for a receiver and the reverse. Buffered
 * channels hold up to capacity elements before a send waits. A channel that
 * only one scheduler's tasklets use costs no lock; the first use from
 * another scheduler of the group makes it shared for good (that use waits a
 * round of the owner's loop), and it is locked from then on. Preference
 * orders the two tasklets of a transfer when both are of one scheduler;
 * across schedulers both go on at once. */
typedef struct coil_chan coil_chan;

/* Creates a channel. Callable anywhere; the channel belongs to the scheduler
 * of the first tasklet that uses it (and to that scheduler's group). Returns 0 and sets *out;
 * -EINVAL for a NULL out, a zero elem_size, or a size that overflows; -ENOMEM. */
COIL_API int coil_chan_open(coil_chan **out, size_t elem_size, size_t capacity);

/* Sends one element (elem_size bytes copied from elem). Waits until a receiver
 * takes it (unbuffered) or there is room (buffered).
 * Returns 0; -EPIPE if the channel is closed (or closes while waiting);
 * -ETIMEDOUT (the _dl form); -ECANCELED if killed and the send would have to
 * wait (a killed tasklet's send that needs no waiting completes); -EINVAL for
 * a NULL channel or elem; -EBADF for a freed channel (detected while its
 * memory is still in coil's quarantine of recently freed channels; otherwise
 * using a freed channel is undefined, as with any freed memory); -EXDEV for a
 * channel of a scheduler outside the caller's group (another coil_run, say);
 * -EPERM outside a tasklet. */
COIL_API int coil_chan_send(coil_chan *ch, const void *elem);
COIL_API int coil_chan_send_dl(coil_chan *ch, const void *elem, int64_t deadline);

/* Receives one element into elem. Returns 0; -err when the sender used
 * coil_chan_send_error(ch, err) (elem untouched); -EPIPE once the channel is
 * closed and drained; otherwise the errors of coil_chan_send. */
COIL_API int coil_chan_recv(coil_chan *ch, void *elem);
COIL_API int coil_chan_recv_dl(coil_chan *ch, void *elem, int64_t deadline);

/* Stackless send_exception(): like coil_chan_send, but the receiver's call
 * returns -err instead of an element. err must be a positive errno value
 * (-EINVAL otherwise). In a buffered channel the error takes a slot in order
 * with the elements. */
COIL_API int coil_chan_send_error(coil_chan *ch, int err);

/* Who runs first after a transfer between a sender and a waiting receiver or
 * the reverse (Stackless channel.preference): -1 the receiver (the default),
 * 1 the sender, 0 whichever tasklet made the transfer (the other is queued).
 * Callable anywhere. Returns 0; -EINVAL for another value or a NULL channel;
 * -EBADF for a freed one; -EXDEV for a channel outside the group (see
 * coil_chan_close). */
COIL_API int coil_chan_set_preference(coil_chan *ch, int preference);

typedef struct coil_chan_info {
    size_t elem_size;
    size_t capacity;
    size_t count;   /* elements buffered now */
    int balance;    /* > 0: senders waiting, < 0: receivers waiting */
    int preference; /* -1, 0 or 1 */
    int closed;     /* 1 after coil_chan_close */
} coil_chan_info;

/* Fills *info. Callable anywhere. Returns 0; -EINVAL for NULL arguments; -EBADF
 * for a freed channel (as for coil_chan_send); -EXDEV as for coil_chan_close. */
COIL_API int coil_chan_getinfo(const coil_chan *ch, coil_chan_info *info);

/* Closes the channel: every waiting sender and receiver wakes at once with
 * -EPIPE, later sends fail with -EPIPE, and receives drain what is buffered,
 * then fail with -EPIPE. Callable anywhere: inside a tasklet of the channel's
 * scheduler or group, or outside every scheduler when no tasklet waits on it
 * (after coil_run has returned, say). Returns 0; -EPIPE if already closed;
 * -EINVAL / -EBADF as above; -EXDEV from a tasklet outside the channel's
 * group, or from outside every scheduler while tasklets wait on it. Outside
 * a group's schedulers a channel is not thread-safe: one thread uses it at a
 * time. */
COIL_API int coil_chan_close(coil_chan *ch);

/* Frees the channel (elements still buffered are dropped). Callable anywhere,
 * as coil_chan_close. Returns 0; -EBUSY (and frees nothing) while tasklets
 * wait on it: close it first; -EINVAL / -EBADF / -EXDEV as above. */
COIL_API int coil_chan_free(coil_chan *ch);

/* One operation of coil_choose. Fill in ch, op and elem; coil uses the rest. */
enum { COIL_CHOOSE_SEND = 1, COIL_CHOOSE_RECV = 2 };
typedef struct coil_clause {
    coil_chan *ch;
    int op;     /* COIL_CHOOSE_SEND or COIL_CHOOSE_RECV */
    void *elem; /* element to send, or where to receive */
    int result; /* set by coil_choose for the chosen clause: 0, -EPIPE, -err */
    void *coil__private[8];
} coil_clause;

/* Waits until one of the n operations can be done, does exactly that one, and
 * returns its index; the clause's result says how it went (0, -EPIPE for a
 * closed channel, -err for an error sent with coil_chan_send_error). When
 * several are ready at once one is picked at random, so none starves.
 * Returns the index; -ETIMEDOUT when the deadline passes first; -ECANCELED if
 * killed and no clause is ready; -EINVAL for a NULL array, n == 0, n > 1024,
 * or a clause with a NULL channel or elem or an unknown op; -EBADF / -EXDEV as
 * for coil_chan_send; -EPERM outside a tasklet. */
COIL_API int coil_choose(coil_clause *clauses, size_t n, int64_t deadline);

/* ------------------------------------------------------------------------ */
/* Mutexes, condition variables, semaphores, wait groups                    */
/* ------------------------------------------------------------------------ */

/* Blocking here parks the calling tasklet, never the thread. Each object,
 * like a channel, belongs to the scheduler of the first tasklet that uses
 * it and works between tasklets of every scheduler of its group
 * (coil_run_group): local (no lock, no atomic read-modify-write) until the
 * first use from another scheduler, which waits a round of the owner's loop
 * and makes it shared (locked) for good. From a scheduler outside the
 * group: -EXDEV. Waiters are served first come, first served: a mutex
 * unlocked, a semaphore unit released, goes straight to the longest
 * waiting tasklet (hand-off), so a tasklet that locks again at once queues
 * behind it.
 * Common errors: -EINVAL for a NULL object; -EBADF for a freed one
 * (detected while its memory is in coil's quarantine of recently freed
 * objects, as for channels); -EPERM outside a tasklet. A wait returns
 * -ETIMEDOUT when its deadline passes first and -ECANCELED when the tasklet
 * is killed (before or while waiting); what needs no waiting still
 * completes in a killed tasklet (taking a free mutex, releasing), so that
 * cleanup can finish. A waiting tasklet shows in coil_dump ("mutex lock",
 * "cond wait", "sem acquire", "waitgroup wait"), and tasklets that wait on
 * one another through these make coil_run return -EDEADLK like channels. */
typedef struct coil_mutex coil_mutex;
typedef struct coil_cond coil_cond;
typedef struct coil_sem coil_sem;
typedef struct coil_wg coil_wg;

/* Create an object (unlocked; a semaphore with `value` units, 0 to
 * COIL_SEM_MAX; a wait group at 0). Callable anywhere. Return 0 and set
 * *out; -EINVAL for a NULL out (or a value out of range); -ENOMEM. */
#define COIL_SEM_MAX 0x7fffffff
COIL_API int coil_mutex_open(coil_mutex **out);
COIL_API int coil_cond_open(coil_cond **out);
COIL_API int coil_sem_open(coil_sem **out, int64_t value);
COIL_API int coil_wg_open(coil_wg **out);

/* Free an object. Callable anywhere (as coil_chan_free). Return 0; -EBUSY,
 * freeing nothing, while tasklets wait on it or a tasklet holds the mutex;
 * -EINVAL / -EBADF / -EXDEV as above. */
COIL_API int coil_mutex_free(coil_mutex *m);
COIL_API int coil_cond_free(coil_cond *c);
COIL_API int coil_sem_free(coil_sem *s);
COIL_API int coil_wg_free(coil_wg *wg);

/* Locks m, waiting (until the deadline, with the _dl form) while another
 * tasklet holds it. Returns 0 with m held; -EOWNERDEAD with m held too when
 * its last holder ended without unlocking it (as a robust pthread mutex):
 * what m protects may be half updated, and the caller must check or repair
 * it before it unlocks (nothing else is required: m works as before);
 * -EDEADLK when the caller already holds m; -ETIMEDOUT, -ECANCELED (m not
 * held: a killed tasklet never holds a mutex it did not take). A tasklet
 * ending with mutexes held gives each to its first waiter, with
 * -EOWNERDEAD. */
COIL_API int coil_mutex_lock(coil_mutex *m);
COIL_API int coil_mutex_lock_dl(coil_mutex *m, int64_t deadline);
/* Locks m only if it is free now: 0 or -EOWNERDEAD (as coil_mutex_lock);
 * -EBUSY when another tasklet holds it (or waiters queue for it); -EDEADLK
 * when the caller holds it. Never waits, so it works in a killed tasklet. */
COIL_API int coil_mutex_trylock(coil_mutex *m);
/* Unlocks m, handing it to the longest waiting tasklet if any. Returns 0;
 * -EPERM when the caller does not hold m. */
COIL_API int coil_mutex_unlock(coil_mutex *m);

/* Unlocks m (which the caller must hold), waits for a signal on c (until
 * the deadline), and locks m again before it returns. Returns 0 (signalled;
 * like pthread's, a wait may also end without a signal for the predicate
 * to change: test it in a loop); -ETIMEDOUT (m held again); -EOWNERDEAD
 * (m held again, its last holder ended holding it: see coil_mutex_lock);
 * -ECANCELED when the tasklet is killed, before or during the wait: then,
 * and only then, m is NOT held on return (a killed tasklet does not wait to
 * take it back); a signal that had reached the caller is passed to the next
 * waiter. -EPERM when the caller does not hold m (also outside a tasklet);
 * -EINVAL / -EBADF for c or m. */
COIL_API int coil_cond_wait(coil_cond *c, coil_mutex *m, int64_t deadline);
/* Wake the longest waiting tasklet of c (signal) or every one (broadcast);
 * nothing when none waits. The caller need not hold the mutex. Return 0. */
COIL_API int coil_cond_signal(coil_cond *c);
COIL_API int coil_cond_broadcast(coil_cond *c);

/* Takes one unit of s, waiting (until the deadline) while it has none.
 * Returns 0; -ETIMEDOUT; -ECANCELED (no unit taken). */
COIL_API int coil_sem_acquire(coil_sem *s, int64_t deadline);
/* Takes a unit only if one is free now and nobody queues: 0, or -EAGAIN. */
COIL_API int coil_sem_tryacquire(coil_sem *s);
/* Gives back one unit (to the longest waiting tasklet if any). Returns 0;
 * -EOVERFLOW (nothing changed) when s already holds COIL_SEM_MAX units. */
COIL_API int coil_sem_release(coil_sem *s);
/* The units free now (0 while tasklets wait). Returns it, or the common
 * errors. */
COIL_API int64_t coil_sem_value(coil_sem *s);

/* Go's sync.WaitGroup. coil_wg_add adds delta (positive or negative) to the
 * counter; when it reaches 0 every waiter wakes. Returns 0; -EINVAL
 * (nothing changed) when the counter would go below 0 or above INT64_MAX.
 * coil_wg_done is coil_wg_add(wg, -1). */
COIL_API int coil_wg_add(coil_wg *wg, int64_t delta);
COIL_API int coil_wg_done(coil_wg *wg);
/* Waits until the counter is 0 (at once if it is). Returns 0; -ETIMEDOUT;
 * -ECANCELED. */
COIL_API int coil_wg_wait(coil_wg *wg, int64_t deadline);

/* ------------------------------------------------------------------------ */
/* Sockets and files                                                        */
/* ------------------------------------------------------------------------ */

/* The blocking calls below park only the calling tasklet; underneath each is
 * one asynchronous operation (io_uring; see coil_backend_name). They take and
 * return what the system call of the same name does, except that errors are
 * returned as -errno, and:
 *  - -ETIMEDOUT when the deadline (the _dl forms) or the fd's default timeout
 *    (coil_set_timeout) passes first; the earlier of the two applies;
 *  - -ECANCELED when the tasklet is killed (it was killed before the call, or
 *    while the operation was in flight: the operation is cancelled in the
 *    kernel and its completion reaped before the call returns; if it had
 *    already completed, its result is returned instead, so no data is lost);
 *  - -EBADF when another tasklet closes the fd with coil_close while the call
 *    waits (and for an fd that is not open);
 *  - -EPERM outside a tasklet; -EINVAL for a NULL buffer with a non-zero
 *    length.
 * Sends never raise SIGPIPE (MSG_NOSIGNAL): a closed peer is -EPIPE, a reset
 * one -ECONNRESET; end of stream is 0. fds made outside coil work too,
 * O_NONBLOCK or not (coil waits for readiness when the kernel says EAGAIN),
 * and coil never leaves an fd's flags changed.
 *
 * Both backends give the same results and errors, but for one thing: on
 * epoll, reads and writes of regular files are not interrupted by a kill, a
 * timeout or a close: they complete (quickly: a file is never "not ready")
 * and return their result. An fd that a call has waited on must be closed
 * with coil_close, not close(2): coil_close tells the backend that the number
 * no longer names that file. (How each backend works: docs/architecture.md,
 * section "Backends".)
 *
 * Windows (the IOCP backend, "iocp"): an fd is a SOCKET cast to int, and
 * sockets are the only fds: coil_read and coil_write work on sockets (as
 * recv and send) and answer -ENOTSUP for any other handle (files, pipes);
 * coil_install answers -ENOTSUP. Errors are the same errno values as on
 * Linux: a refused connect is
 * -ECONNREFUSED, a closed or invalid socket -EBADF. A socket is bound to the
 * completion port of the first scheduler that waits on it: use it from that
 * thread's tasklets only. Sockets made outside coil must have been created
 * with WSA_FLAG_OVERLAPPED (socket() does that). MSG_NOSIGNAL does not exist
 * there (Windows raises no SIGPIPE); other flags go to Winsock as they are.
 * The process must have called WSAStartup, which coil_run does. */

/* socket(2) with SOCK_CLOEXEC added. Callable anywhere. Returns the fd or
 * -errno (-EAFNOSUPPORT, -EINVAL, -EMFILE, ...). */
COIL_API int coil_socket(int domain, int type, int protocol);

/* bind(2), listen(2), shutdown(2): they never block. Callable anywhere.
 * Return 0 or -errno. */
COIL_API int coil_bind(int fd, const struct sockaddr *addr, socklen_t addrlen);
COIL_API int coil_listen(int fd, int backlog);
COIL_API int coil_shutdown(int fd, int how);

/* accept(2): waits for a connection; the new fd is SOCK_CLOEXEC. addr and
 * addrlen may be NULL. Returns the new fd or -errno. When the fd table is
 * full (-EMFILE, -ENFILE) the call first waits 100 ms (or until the
 * deadline, if sooner), so that a server that simply tries again does not
 * spin the CPU while the pending connection stays queued. */
COIL_API int coil_accept(int fd, struct sockaddr *addr, socklen_t *addrlen);
COIL_API int coil_accept_dl(int fd, struct sockaddr *addr, socklen_t *addrlen, int64_t deadline);

/* connect(2): waits until the connection is established or refused.
 * Returns 0 or -errno (-ECONNREFUSED, -ENETUNREACH, -ETIMEDOUT, ...). */
COIL_API int coil_connect(int fd, const struct sockaddr *addr, socklen_t addrlen);
COIL_API int coil_connect_dl(int fd, const struct sockaddr *addr, socklen_t addrlen,
                             int64_t deadline);

/* recv(2)/send(2): return the byte count (0 at end of stream, or for a
 * zero-length buffer) or -errno. A send may be short; coil_sendall is not. */
COIL_API ssize_t coil_recv(int fd, void *buf, size_t len, int flags);
COIL_API ssize_t coil_recv_dl(int fd, void *buf, size_t len, int flags, int64_t deadline);
COIL_API ssize_t coil_send(int fd, const void *buf, size_t len, int flags);
COIL_API ssize_t coil_send_dl(int fd, const void *buf, size_t len, int flags, int64_t deadline);

/* Sends all len bytes, looping over short sends. Returns len, or -errno at
 * the first error (some bytes may have been sent by then). */
COIL_API ssize_t coil_sendall(int fd, const void *buf, size_t len, int flags, int64_t deadline);

/* recvfrom(2)/sendto(2), for datagrams. addr/addrlen as in libc. */
COIL_API ssize_t coil_recvfrom(int fd, void *buf, size_t len, int flags, struct sockaddr *addr,
                               socklen_t *addrlen, int64_t deadline);
COIL_API ssize_t coil_sendto(int fd, const void *buf, size_t len, int flags,
                             const struct sockaddr *addr, socklen_t addrlen, int64_t deadline);

/* read(2)/write(2) on any fd: sockets, pipes, and regular files (at the file
 * position; with io_uring the file I/O does not block the scheduler).
 * Return the byte count or -errno. */
COIL_API ssize_t coil_read(int fd, void *buf, size_t len);
COIL_API ssize_t coil_read_dl(int fd, void *buf, size_t len, int64_t deadline);
COIL_API ssize_t coil_write(int fd, const void *buf, size_t len);
COIL_API ssize_t coil_write_dl(int fd, const void *buf, size_t len, int64_t deadline);

/* Closes fd. Every tasklet waiting on it wakes at once: its operation is
 * cancelled and its call returns -EBADF. No completion of the old fd ever
 * reaches a later fd with the same number. Never blocks for long (libdill's
 * rule: closing does not park the closer). Callable anywhere. Returns 0 or
 * -errno of close(2) (-EBADF for an fd that is not open). */
COIL_API int coil_close(int fd);

/* Waits until fd is ready for what events asks: COIL_READABLE (a read, a
 * recv or an accept would not wait), COIL_WRITABLE (a write or a send would
 * not wait, a connect started elsewhere has finished), or both. For code
 * that does its own I/O on a non-blocking fd and only needs the wait: an
 * event loop's library (libcurl's multi interface: examples/multi.c), an
 * eventfd, a pipe to a child.
 * Returns the events that are ready, a positive mask: those asked of
 * COIL_READABLE and COIL_WRITABLE, and COIL_HANGUP (the peer closed, a
 * pipe's writers all closed) and COIL_ERROR (a pending socket error, a
 * pipe's readers all closed) whether asked or not, as poll(2) reports
 * them; an fd with COIL_HANGUP or COIL_ERROR is always ready, and the next
 * read or write on it says what happened. At once when the fd is ready
 * already (a regular file always is). Returns -ETIMEDOUT when the deadline
 * (or coil_set_timeout's default) passes first; a deadline already passed
 * (0, say) looks once without waiting; -ECANCELED when the tasklet is
 * killed, before the call too (a readiness found just as the kill came is
 * returned instead); -EBADF for an fd that is not open, and when another
 * tasklet closes it with coil_close while the call waits; -EINVAL when
 * events is 0 or has another bit; -EPERM outside a tasklet.
 * It only waits: it reads nothing, and readiness may be gone by the time
 * the caller acts on it (another tasklet read first): a non-blocking read
 * then answers EAGAIN, and the caller waits again. Unlike the other calls,
 * it also works on a number that was closed with close(2) and reused since
 * (libcurl closes its resolver's socketpair so), provided no call was
 * waiting on it when it was closed.
 * Windows (iocp): sockets only, as for coil_read (-ENOTSUP for a file or
 * pipe handle, -EBADF for any other), of this scheduler's tasklets, as for
 * every call there; underneath is the AFD driver's poll (what WSAPoll
 * uses), overlapped. */
#define COIL_READABLE 0x1
#define COIL_WRITABLE 0x2
#define COIL_HANGUP   0x4
#define COIL_ERROR    0x8
COIL_API int coil_wait_fd(int fd, int events, int64_t deadline);

/* Python's settimeout: the default timeout of every later blocking call on
 * fd of this thread's scheduler, in ns; negative for none (the default).
 * Returns 0; -EBADF for an fd that is not open; -EPERM outside coil_run. */
COIL_API int coil_set_timeout(int fd, int64_t ns);

/* Resolves host and service (getaddrinfo: a numeric address and port at
 * once, except on Windows; a name on the offload pool, so the scheduler does
 * not block while a resolver answers) and connects a socket of the given type
 * (SOCK_STREAM or SOCK_DGRAM) to each address in turn until one succeeds.
 * Returns the connected fd; the error of the last attempt; -ENOENT when the
 * name does not resolve, -EAGAIN when the resolver failed temporarily,
 * -EINVAL for a NULL host/service or a bad type; -ETIMEDOUT, -ECANCELED,
 * -EPERM as above. */
COIL_API int coil_dial(const char *host, const char *service, int type, int64_t deadline);

/* A listening TCP socket on host:service with SO_REUSEADDR (host NULL: every
 * address, IPv6 and IPv4). Resolves like coil_dial. Returns the fd or -errno
 * (-EADDRINUSE, ...; the resolver's errors as coil_dial's; -ECANCELED in a
 * killed tasklet, -EPERM outside one). */
COIL_API int coil_listen_on(const char *host, const char *service, int backlog);

/* coil_listen_on with flags (0: the same call). COIL_LISTEN_REUSEPORT
 * (Linux's SO_REUSEPORT): several sockets may listen on one address, each
 * made with this flag by the same user, and the kernel spreads the
 * connections among them, so that each scheduler of a group can accept its
 * own (a listener closed with connections queued resets them). Note that a
 * second server started on the same address by mistake then shares it
 * rather than failing with -EADDRINUSE. Returns coil_listen_on's results;
 * -EINVAL for an unknown flag; -EADDRINUSE when a socket made without the
 * flag (or by another user) holds the address; -ENOTSUP on Windows, which
 * has no such option (its SO_REUSEADDR lets a later socket take the port
 * over, it spreads nothing): there, one listener hands its connections to
 * the schedulers (coil_spawn_on), as coil-echo does. */
#define COIL_LISTEN_REUSEPORT 1
COIL_API int coil_listen_on_flags(const char *host, const char *service, int backlog, int flags);

/* Runs fn(arg) on one of a few worker threads and parks the caller until it
 * returns; for calls that cannot be made asynchronous (getaddrinfo, a
 * library's blocking call). fn must not call coil. A kill cannot interrupt
 * fn: the call still waits for it (arg may be in the caller's frame), and
 * the kill shows from the next call on. Returns fn's result; -EINVAL for a
 * NULL fn; -EPERM outside a tasklet; -ECANCELED if killed before the call;
 * -EAGAIN if no worker thread could be started. */
COIL_API int coil_offload(int (*fn)(void *arg), void *arg);

/* ------------------------------------------------------------------------ */
/* Child processes                                                          */
/* ------------------------------------------------------------------------ */

/* Start a program, talk to it through pipes from tasklets, wait for it with
 * a deadline, kill it:
 *
 *     coil_proc p;
 *     const char *argv[] = {"sort", NULL};
 *     coil_proc_opts o = {.argv = argv, .stdio = {COIL_PROC_PIPE, COIL_PROC_PIPE}};
 *     int rc = coil_proc_spawn(&p, &o);       (-ENOENT: no such program)
 *     coil_write(p.stdin_fd, "b\na\n", 4);    (coil_read/coil_write/coil_close)
 *     coil_close(p.stdin_fd); p.stdin_fd = -1;   (end of file for the child)
 *     ... coil_read(p.stdout_fd, ...) until 0 ...
 *     int st = coil_proc_wait(&p, coil_now() + 5 * COIL_SEC);
 *     if (st == -ETIMEDOUT) coil_proc_kill(&p, SIGTERM);
 *     coil_proc_release(&p);                  (kills and reaps it if still running)
 *
 * Linux only for now: on Windows every call returns -ENOTSUP.
 * How (docs/architecture.md, section "Child processes"): the child is
 * started with vfork, so that a large parent pays no copy of its page
 * tables and its thread waits only until the exec (a fraction of a
 * millisecond); an exec that fails is reported back to the parent (through
 * shared memory, or a close-on-exec pipe where vfork runs as a fork, as
 * under Valgrind) as spawn's own -errno, never as a child that exits 127. The wait is
 * a wait on a pidfd (Linux 5.3 and later); where pidfd_open fails (an older
 * kernel, a seccomp profile) coil polls the child with waitpid(WNOHANG) at
 * growing intervals (1 ms doubling to 50 ms), never waitpid(-1) and no
 * SIGCHLD handler: coil reaps only the children it started.
 * A coil_proc, like the fds of its pipes, is used by the tasklets of the
 * scheduler that spawned it. */

/* What a child's standard stream is (coil_proc_opts.stdio[0..2]: stdin,
 * stdout, stderr). */
enum {
    COIL_PROC_INHERIT = 0, /* this process's own fd 0, 1 or 2 (the default) */
    COIL_PROC_PIPE = 1,    /* a new pipe: this end in coil_proc.stdin_fd, ... */
    COIL_PROC_NULL = 2,    /* /dev/null */
    COIL_PROC_FD = 3,      /* the caller's fd coil_proc_opts.stdio_fd[i] (kept open) */
    COIL_PROC_STDOUT = 4,  /* stderr only: wherever stdout goes (2>&1) */
};

typedef struct coil_proc_opts {
    /* The program's arguments, argv[0] first, ending with NULL. */
    const char *const *argv;
    /* The program to run; NULL: argv[0]. A name without '/' is looked up in
     * this process's PATH, as execvp does. */
    const char *file;
    /* Its environment ("NAME=value" strings, ending with NULL); NULL: this
     * process's. */
    const char *const *envp;
    /* Its working directory; NULL: this process's. */
    const char *dir;
    /* COIL_PROC_* for stdin, stdout, stderr. */
    int stdio[3];
    /* With COIL_PROC_FD: the fd the child gets as its fd 0, 1 or 2. */
    int stdio_fd[3];
} coil_proc_opts;

typedef struct coil_proc {
    pid_t pid;
    /* This process's ends of the COIL_PROC_PIPE streams (stdin_fd is for
     * writing, the two others for reading), -1 for the others: O_NONBLOCK
     * and close-on-exec, for coil_read, coil_write and coil_close. They
     * belong to the coil_proc: coil_proc_release closes those still >= 0;
     * to close one sooner (stdin, so that the child sees end of file),
     * coil_close it and set the field to -1. */
    int stdin_fd, stdout_fd, stderr_fd;
    /* The child's wait status once coil_proc_wait has returned it, else -1. */
    int status;
    int coil__pidfd; /* private */
    int coil__flags; /* private */
} coil_proc;

/* Starts opts->argv as a child process and fills *p. Never parks: the
 * calling thread waits only for the child's exec. Callable anywhere. The
 * child gets the fds of opts->stdio as its 0, 1 and 2 and every other fd
 * of this process that is not close-on-exec (coil's own are), the signal
 * dispositions of this process (a caught signal reset to its default, as
 * exec does), and no signal blocked. Returns 0; -EINVAL for a NULL p or
 * opts, a NULL argv or argv[0], an unknown stdio value, or COIL_PROC_STDOUT
 * for stdin or stdout; -EBADF for a COIL_PROC_FD fd that is not open; the
 * -errno with which the exec (or the chdir to opts->dir) failed in the
 * child: -ENOENT (no such program, or dir), -EACCES (not executable),
 * -ENOEXEC, -E2BIG, ...; the -errno of a pipe, open or vfork that failed
 * (-EMFILE, -EAGAIN, -ENOMEM). On failure no child is left running, no fd
 * is left open, and *p is released (coil_proc_release returns 0 on it).
 * -ENOTSUP on Windows. */
COIL_API int coil_proc_spawn(coil_proc *p, const coil_proc_opts *opts);

/* Waits until the child has ended and reaps it. Returns its wait status
 * (>= 0, also kept in p->status: WIFEXITED/WEXITSTATUS, WIFSIGNALED/
 * WTERMSIG of <sys/wait.h>), at once if an earlier call returned it;
 * -ETIMEDOUT when the deadline passes first (the child runs on; wait
 * again, or coil_proc_kill it); -ECANCELED when the tasklet is killed
 * (before the call or during the wait: the child runs on, and
 * coil_proc_release ends it); -ECHILD when the child was reaped behind
 * coil's back (a waitpid(-1) elsewhere, or SIGCHLD ignored); -EINVAL for a
 * NULL p or one with no child; -EPERM outside a tasklet; -ENOTSUP on
 * Windows. */
COIL_API int coil_proc_wait(coil_proc *p, int64_t deadline);

/* Sends signal sig to the child (a pidfd signal where the kernel has it, so
 * that a reused pid is never hit). Never parks; callable anywhere. Returns
 * 0; -ESRCH once the child has been reaped (by coil_proc_wait); -EINVAL for
 * a NULL p, one with no child, or a bad signal; -ENOTSUP on Windows. A
 * child that has ended but is not yet reaped takes the signal without
 * effect (0). */
COIL_API int coil_proc_kill(coil_proc *p, int sig);

/* Closes the pipes still open (coil_close) and, if the child has not been
 * reaped, kills it with SIGKILL and reaps it, so that no child outlives its
 * coil_proc and none is left a zombie. The reaping wait is the wait of
 * cleanup, like coil_join's: a kill does not cut it short (a SIGKILLed
 * child ends in moments); in a tasklet it parks the tasklet, elsewhere it
 * blocks the thread. Callable anywhere; *p may then be reused. Returns 0
 * (also for a p already released, or never spawned: zero it, or let spawn
 * fail on it); -EINVAL for a NULL p; -ENOTSUP on Windows. */
COIL_API int coil_proc_release(coil_proc *p);

/* ------------------------------------------------------------------------ */
/* Signals                                                                  */
/* ------------------------------------------------------------------------ */

/* Waits until a signal of set arrives (sigemptyset, sigaddset), so that a
 * server reloads on SIGHUP in plain blocking code:
 *
 *     sigset_t hup;
 *     sigemptyset(&hup);
 *     sigaddset(&hup, SIGHUP);
 *     while (coil_signal_wait(&hup, COIL_FOREVER) == SIGHUP) reload();
 *
 * Returns the signal's number; -ETIMEDOUT when the deadline passes first;
 * -ECANCELED when the tasklet is killed (before or while waiting: a signal
 * that came meanwhile is left for the next wait); -EINVAL for a NULL or
 * empty set, or one that holds SIGKILL, SIGSTOP, SIGSEGV, SIGBUS, SIGFPE,
 * SIGILL (faults) or SIGPIPE (coil blocks it on its threads: sends return
 * -EPIPE); -EBUSY when a signal of the set has a handler the program
 * installed (or coil_dump_on_signal's): coil does not take it over; -EPERM
 * outside a tasklet; -ENOTSUP on Windows (Linux only for now).
 * How signals reach it: from the first wait that names a signal until the
 * last coil_run (or group) of the process returns, coil catches that signal
 * with a handler of its own (replacing its default action, or its being
 * ignored), and then gives back what the program had. Meanwhile a signal
 * that arrives goes to one waiting tasklet that asks for it, on any
 * scheduler of any group; if none waits it is kept, and the next wait that
 * asks for it returns it at once (several of one number count as one, as
 * in the kernel's pending set); when several of the set are kept, the
 * lowest-numbered comes first. Before the first wait the signal does what
 * it always did (SIGHUP ends the process): a wait with a past deadline,
 * coil_signal_wait(&set, 0), catches it early without waiting.
 * SIGINT and SIGTERM keep their meaning (coil_run's shutdown, or whatever
 * the program gave them) unless a tasklet waits for them when they arrive:
 * then that tasklet receives the signal instead, and there is no shutdown.
 * One that arrives while none waits is a shutdown as before, never kept.
 * The signals are caught by a handler, so they must not be blocked in every
 * thread (a signal blocked everywhere stays pending in the kernel, and no
 * wait sees it): do not block them as for sigwait or signalfd. A signal
 * sent to one thread (pthread_kill, raise) is seen only while that thread
 * does not block it. Blocking system calls of other threads that the
 * handler interrupts are restarted (SA_RESTART) where the kernel restarts
 * them; poll, select and sleeps return EINTR, as with any handler. (How:
 * docs/architecture.md, section "Signals".) */
#ifdef _WIN32
/* mingw-w64 defines sigset_t only under _POSIX; _sigset_t is the same type. */
COIL_API int coil_signal_wait(const _sigset_t *set, int64_t deadline);
#else
COIL_API int coil_signal_wait(const sigset_t *set, int64_t deadline);
#endif

/* ------------------------------------------------------------------------ */
/* Unmodified blocking code inside tasklets                                 */
/* ------------------------------------------------------------------------ */

/* Diverts the blocking libc calls of every loaded library and of the program
 * (read, write, readv, writev, recv, send, recvfrom, sendto, recvmsg,
 * sendmsg, recvmmsg, sendmmsg, sendfile, splice, pread, pwrite, preadv,
 * pwritev, preadv2, pwritev2 (and their ...64 names), accept, accept4,
 * connect, close, dup2, dup3, socket, socketpair, wait, waitpid, wait4,
 * waitid, poll, ppoll, select, pselect, epoll_wait, epoll_pwait, sleep,
 * usleep, nanosleep, clock_nanosleep, getaddrinfo, getnameinfo,
 * gethostbyname, gethostbyname_r; and dlopen, dlmopen: see below; and, only
 * to see an fd's O_NONBLOCK, timeouts or number change: fcntl, ioctl,
 * setsockopt, fclose, closedir, pclose, close_range, closefrom) into coil
 * when they are made inside a tasklet: they park the tasklet, not the thread,
 * so libcurl, libpq, MariaDB Connector/C, hiredis or OpenSSL run concurrently
 * in tasklets without a change.
 *
 * Outside a tasklet (before coil_run, on other threads, in a forked child)
 * every call goes to libc as it is. Inside one, libc's contract is kept: -1
 * and errno; an fd the program made O_NONBLOCK still answers EAGAIN (and
 * poll/select on it park the tasklet); poll/select with a zero timeout never
 * park; a blocking write or send is complete, as the kernel makes it;
 * SO_RCVTIMEO and SO_SNDTIMEO are honoured; a killed tasklet's calls fail
 * with ECANCELED, its sleeps too (not EINTR, which retry loops would retry
 * forever; sleep() returns 0), and the library reports that as one of its own
 * errors, not always a telling one (libcurl's is CURLE_BAD_FUNCTION_ARGUMENT;
 * coil_killed tells them apart); the resolver runs on the offload pool with
 * glibc's own answers. Writes inside a tasklet never raise SIGPIPE (EPIPE
 * instead).
 *
 * Not diverted: the calls of libc, of the dynamic loader and of the object
 * that contains coil (so when coil is linked statically, the program's own
 * calls are not diverted: link with libcoil.so for that), and the program's
 * own calls to a function that a sanitizer runtime linked into it defines
 * (clang's ASan: read, recv, poll, ...; libraries' calls still are).
 *
 * A close, dup2 or dup3 that replaces an fd tasklets wait on wakes them with
 * EBADF. sendfile and splice to a blocking socket or pipe park until it is
 * writable, then run on the offload pool (the kernel would block until all is
 * sent), where a kill cannot interrupt them. pread and its family answer from
 * the page cache at once and park only while the disk answers; a killed
 * tasklet's disk read may still complete with its data. A wait for a specific
 * child parks on its pidfd; for any child (or for stops,
 * WUNTRACED/WCONTINUED) it asks again every 1 to 32 ms, so an exit may be
 * seen up to 32 ms late. Libraries loaded later with dlopen (or dlmopen into
 * the base namespace) are diverted when that call returns, if the loader's
 * answer cannot depend on who called it: a path with a slash and no $ORIGIN,
 * or a bare name when no loaded object has a DT_RPATH and neither the caller
 * nor coil has a DT_RUNPATH; otherwise the call goes to the loader untouched
 * (it must see its real caller) and what it loads is diverted by calling
 * coil_install again, as is an object being loaded by another thread while
 * coil_install runs. Objects of other namespaces (dlmopen) have a C library
 * of their own and are not diverted by dlmopen.
 *
 * Locks: pthread_mutex_lock, _timedlock, _clocklock; pthread_rwlock_rdlock,
 * _wrlock and their timed and clock forms; pthread_cond_wait, _timedwait,
 * _clockwait; sem_wait, sem_timedwait, sem_clockwait park the tasklet while
 * the object is taken (the try forms are libc's), with pthread's return
 * values (semaphores: -1 and errno); the unlocks, sem_post and
 * pthread_cond_signal/_broadcast wake the tasklets parked on that object, on
 * any scheduler of the group. A release no wrapper sees (a plain thread's, or
 * one in another coil_run's thread) is noticed within 1 to 32 ms; a cond wait
 * whose signal comes from a plain thread ends within 32 ms as a spurious
 * wake-up. A kill ends a timed wait, which returns ECANCELED (a cond wait
 * holding the mutex again), and sem_wait (-1, errno ECANCELED); lock, rdlock,
 * wrlock and pthread_cond_wait's relock go on waiting and return 0 (their
 * callers go on as holders), and a kill ends a pthread_cond_wait as a
 * spurious wake-up (0, the mutex held). Ownership stays per thread, as
 * pthread keeps it, and the tasklets of one thread share it: a recursive
 * mutex held by one is taken at once by another of the same thread; a tasklet
 * that locks again an error-checking mutex or an rwlock it write-holds waits
 * for ever (pthread: EDEADLK or a deadlock); tasklets waiting on each other's
 * locks hang, unseen by the deadlock detector.
 *
 * Thread-specific data: inside a tasklet, pthread_getspecific and
 * pthread_setspecific (a library's per-thread state: OpenSSL's error queue)
 * are the tasklet's own, as if each tasklet were a thread: it starts with
 * every key NULL (whatever its thread has set), and at its end each value it
 * set whose key still exists and has a destructor goes to that destructor,
 * in pthread's rounds, on the tasklet (in the same rounds as its coil_local
 * values, before its joiners hear of its end); a tasklet's table costs 16
 * bytes per key up to the highest it set. Outside tasklets they are libc's.
 * Not diverted: the calls of a sanitizer runtime and of a malloc that
 * replaces libc's (jemalloc, tcmalloc), whose keys hook the thread's exit
 * for the thread's own state. After coil_uninstall, the values a tasklet set
 * are dropped at its end, not destroyed. This needs glibc's table of keys;
 * with a C library that has none it is left out and the data stays the
 * thread's. __thread variables are the thread's.
 *
 * Every libc call that can block, diverted or not and why:
 * docs/install-calls.md. A program that cannot call it is installed at load
 * time with COIL_INSTALL=1 in its environment. Callable anywhere, idempotent.
 * Returns 0; -errno if /proc/self/maps cannot be read (nothing is patched
 * then), or if a GOT page could not be made writable (what was patched stays
 * patched). On Windows it is not supported and returns -ENOTSUP;
 * coil_uninstall returns 0. (How: docs/architecture.md, section
 * "Interposition".) */
COIL_API int coil_install(void);

/* Puts back every patched entry that still holds coil's wrapper, in the
 * objects still loaded (an object dlclose'd since is left alone). Without
 * /proc/self/maps nothing is put back, but the wrappers pass every call
 * straight to libc from then on. Callable anywhere. Returns 0. */
COIL_API int coil_uninstall(void);

/* The name of the I/O backend of this thread's scheduler ("io_uring" or
 * "epoll"; "iocp" on Windows, the only one there), or of the one coil_run
 * would choose (probed once per process); NULL if coil_run would fail to set
 * one up (see coil_run). Callable anywhere. */
COIL_API const char *coil_backend_name(void);

#ifdef __cplusplus
}
#endif
#endif /* COIL_H */
