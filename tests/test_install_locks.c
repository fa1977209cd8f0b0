// coil-test: link-shared
/* coil_install and pthread locks held across I/O: a client library built by
 * the test (tests/locklib/) holds a global pthread mutex across a blocking
 * send and recv on a socket it shares between its callers, and its pthread
 * lock and semaphore calls made inside tasklets park the tasklet, not the
 * thread:
 *  - 50 tasklets call it at once and all complete, while another tasklet
 *    keeps running (the server answers each request only once that tasklet
 *    has run since the request came: a blocked thread would stall it);
 *  - each call's contract: mutex lock, trylock, timedlock (EBUSY, ETIMEDOUT,
 *    EINVAL); cond wait, timedwait (a CLOCK_MONOTONIC cond too), signal,
 *    broadcast, and a signal from a plain thread; rwlock readers together, a
 *    writer alone, the try and timed forms; sem_wait, sem_trywait,
 *    sem_timedwait with their errno; the clock forms (pthread_mutex_clocklock,
 *    pthread_cond_clockwait, pthread_rwlock_clock*lock, sem_clockwait);
 *  - a tasklet that unlocks and locks again in a loop lets the waiter in;
 *  - a plain thread holds the mutex, then releases it: the tasklet gets it;
 *  - killed waiters: a timed wait and sem_wait fail with ECANCELED, a lock
 *    waits on and gets the mutex;
 *  - the same mutex across the two schedulers of a group, and across two
 *    coil_runs on two threads;
 *  - thread-specific data is each tasklet's own (pthread_getspecific and
 *    pthread_setspecific): a tasklet starts with every key NULL, its values
 *    are not another tasklet's nor its thread's, and at its end (killed or
 *    not, before its joiner hears of it) the keys' destructors get them in
 *    pthread's rounds, on its own stack; a deleted key's value is neither
 *    seen under the key made again in its slot nor given to a destructor;
 *    EINVAL and NULL for keys that do not exist, as libc answers; a
 *    destructor that sets a key the tasklet never set gets that value to its
 *    destructor in the next round;
 *  - a malloc of its own (jemalloc, preloaded in a child) keeps its
 *    pthread_setspecific calls the thread's (its key only hooks the thread's
 *    exit), while a library's are diverted;
 *  - four callers while the server never answers, then SIGTERM (in a child):
 *    coil_dump names the mutex the three waiters wait on, and the process
 *    ends (before coil_install diverted these calls, the second caller
 *    blocked the thread in the futex and SIGTERM no longer stopped it).
 * The lock calls go through the library (lk_*): see tests/locklib/locklib.c
 * for why. */
#define _GNU_SOURCE
// coil-test: tsan (the server and plain threads; a group of two schedulers)
#include "coil_test.h"

#include "locklib/locklib.h"

#include <dlfcn.h>
#include <libgen.h>
#include <limits.h>
#include <link.h>
#include <pthread.h>
#include <sys/socket.h>

static struct timespec abs_on(clockid_t clk, int64_t ms) {
    struct timespec ts;
    clock_gettime(clk, &ts);
    int64_t ns = ts.tv_nsec + ms * 1000000;
    ts.tv_sec += ns / 1000000000;
    ts.tv_nsec = ns % 1000000000;
    return ts;
}

static struct timespec abs_in(int64_t ms) {
    return abs_on(CLOCK_REALTIME, ms);
}

/* An absolute time with an invalid tv_nsec: EINVAL, but only for a call that
 * would have to wait. */
static const struct timespec bad_abs = {1, 1000000000};

static void wait_for(const int *flag) {
    while (!__atomic_load_n(flag, __ATOMIC_ACQUIRE))
        coil_sleep(COIL_MSEC);
}

/* ---- the server the library talks to --------------------------------------- */

#define REQ_LEN 8

/* A plain thread with one end of a socketpair: reads each request and sends
 * it back once the ticker tasklet has moved since the request came (if it
 * does not move within 10 s, stuck is set and it answers anyway); silent:
 * it never answers. */
struct server {
    int fd;
    bool silent;
    pthread_t thread;
    int requests; /* atomic */
    int stuck;    /* atomic */
};

static long ticks; /* the ticker's count (atomic) */

static void *server_run(void *arg) {
    struct server *sv = arg;
    char buf[REQ_LEN];
    for (;;) {
        size_t got = 0;
        while (got < REQ_LEN) {
            ssize_t r = read(sv->fd, buf + got, REQ_LEN - got);
            if (r <= 0) return NULL;
            got += (size_t)r;
        }
        __atomic_add_fetch(&sv->requests, 1, __ATOMIC_RELEASE);
        if (sv->silent) continue;
        long t0 = __atomic_load_n(&ticks, __ATOMIC_ACQUIRE);
        int waited = 0;
        while (__atomic_load_n(&ticks, __ATOMIC_ACQUIRE) == t0 && waited < 100000) {
            usleep(100);
            waited++;
        }
        if (waited >= 100000) __atomic_store_n(&sv->stuck, 1, __ATOMIC_RELAXED);
        if (write(sv->fd, buf, REQ_LEN) != REQ_LEN) return NULL;
    }
}

/* Starts sv and attaches the library to the other end. */
static void server_start(struct server *sv, bool silent, int *client_fd) {
    int fds[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, fds), 0);
    memset(sv, 0, sizeof *sv);
    sv->fd = fds[1];
    sv->silent = silent;
    assert_int_equal(pthread_create(&sv->thread, NULL, server_run, sv), 0);
    *client_fd = fds[0];
    locklib_attach(fds[0]);
}

/* Closes the client's end (the server sees EOF) and joins the server. */
static void server_stop(struct server *sv, int client_fd) {
    close(client_fd);
    pthread_join(sv->thread, NULL);
    close(sv->fd);
}

/* ---- 50 callers at once ------------------------------------------------------ */

#define CALLERS 50

static int callers_left; /* atomic */
static int calls_ok;

static void ticker(void *arg) {
    (void)arg;
    while (__atomic_load_n(&callers_left, __ATOMIC_ACQUIRE) > 0) {
        coil_sleep(200 * COIL_USEC);
        __atomic_add_fetch(&ticks, 1, __ATOMIC_RELEASE);
    }
}

static void caller(void *arg) {
    int i = (int)(intptr_t)arg;
    char req[REQ_LEN + 1], reply[REQ_LEN];
    snprintf(req, sizeof req, "req%04d", i);
    if (EXPECT_EQ(locklib_call(req, reply, REQ_LEN), 0) &&
        EXPECT_EQ(memcmp(req, reply, REQ_LEN), 0))
        calls_ok++;
    __atomic_sub_fetch(&callers_left, 1, __ATOMIC_RELEASE);
}

static void fifty_main(void *arg) {
    (void)arg;
    coil_id ids[CALLERS];
    __atomic_store_n(&callers_left, CALLERS, __ATOMIC_RELEASE);
    coil_id tick = coil_spawn(ticker, NULL, NULL);
    for (int i = 0; i < CALLERS; i++)
        ids[i] = coil_spawn(caller, (void *)(intptr_t)i, NULL);
    for (int i = 0; i < CALLERS; i++)
        EXPECT_EQ(coil_join(ids[i], COIL_FOREVER), 0);
    EXPECT_EQ(coil_join(tick, COIL_FOREVER), 0);
}

static void test_fifty_callers_of_a_locked_connection(void **state) {
    (void)state;
    assert_int_equal(coil_install(), 0);
    struct server sv;
    int fd;
    server_start(&sv, false, &fd);
    calls_ok = 0;
    COIL_RUN_CHECKED(fifty_main, NULL);
    server_stop(&sv, fd);
    assert_int_equal(calls_ok, CALLERS);
    assert_int_equal(sv.requests, CALLERS);
    assert_int_equal(sv.stuck, 0); /* the ticker ran while the callers waited */
    coil_uninstall();
}

/* ---- mutex -------------------------------------------------------------------- */

static pthread_mutex_t mx = PTHREAD_MUTEX_INITIALIZER;
static int mx_held, mx_released, mx_go;

/* Holds mx for arg ms, or (arg 0) until mx_go is set. */
static void mx_holder(void *arg) {
    int64_t hold = (int64_t)(intptr_t)arg;
    EXPECT_EQ(lk_mutex_lock(&mx), 0);
    __atomic_store_n(&mx_held, 1, __ATOMIC_RELEASE);
    if (hold)
        coil_sleep(hold * COIL_MSEC);
    else
        wait_for(&mx_go);
    __atomic_store_n(&mx_released, 1, __ATOMIC_RELEASE);
    EXPECT_EQ(lk_mutex_unlock(&mx), 0);
}

static void mutex_main(void *arg) {
    (void)arg;
    mx_held = mx_released = mx_go = 0;
    coil_id h = coil_spawn(mx_holder, (void *)(intptr_t)0, NULL);
    wait_for(&mx_held);
    EXPECT_EQ(lk_mutex_trylock(&mx), EBUSY);
    EXPECT_EQ(lk_mutex_timedlock(&mx, &bad_abs), EINVAL);
    int64_t t0 = coil_now();
    struct timespec ts = abs_in(10);
    EXPECT_EQ(lk_mutex_timedlock(&mx, &ts), ETIMEDOUT);
    EXPECT(coil_now() - t0 >= 9 * COIL_MSEC);
    EXPECT_EQ(__atomic_load_n(&mx_released, __ATOMIC_ACQUIRE), 0);
    __atomic_store_n(&mx_go, 1, __ATOMIC_RELEASE);
    EXPECT_EQ(lk_mutex_lock(&mx), 0);
    EXPECT_EQ(__atomic_load_n(&mx_released, __ATOMIC_ACQUIRE), 1);
    EXPECT_EQ(lk_mutex_unlock(&mx), 0);
    EXPECT_EQ(coil_join(h, COIL_FOREVER), 0);

    /* A timed lock that gets the mutex before its deadline. */
    mx_held = mx_released = 0;
    h = coil_spawn(mx_holder, (void *)(intptr_t)10, NULL);
    wait_for(&mx_held);
    ts = abs_in(10000);
    EXPECT_EQ(lk_mutex_timedlock(&mx, &ts), 0);
    EXPECT_EQ(__atomic_load_n(&mx_released, __ATOMIC_ACQUIRE), 1);
    EXPECT_EQ(lk_mutex_unlock(&mx), 0);
    EXPECT_EQ(coil_join(h, COIL_FOREVER), 0);

    /* The far future (no overflow: it waits for the release) and the past. */
    mx_held = mx_released = 0;
    h = coil_spawn(mx_holder, (void *)(intptr_t)10, NULL);
    wait_for(&mx_held);
    struct timespec past = {0, 0}, far = {LONG_MAX, 0};
    EXPECT_EQ(lk_mutex_timedlock(&mx, &past), ETIMEDOUT);
    EXPECT_EQ(lk_mutex_timedlock(&mx, &far), 0);
    EXPECT_EQ(__atomic_load_n(&mx_released, __ATOMIC_ACQUIRE), 1);
    EXPECT_EQ(lk_mutex_unlock(&mx), 0);
    EXPECT_EQ(coil_join(h, COIL_FOREVER), 0);

    /* A free mutex: taken at once, the time not looked at. */
    EXPECT_EQ(lk_mutex_timedlock(&mx, &bad_abs), 0);
    EXPECT_EQ(lk_mutex_trylock(&mx), EBUSY);
    EXPECT_EQ(lk_mutex_unlock(&mx), 0);
    EXPECT_EQ(lk_mutex_trylock(&mx), 0);
    EXPECT_EQ(lk_mutex_unlock(&mx), 0);

    /* An error-checking mutex keeps its errors: unlocking it free is EPERM.
     * (Not under ThreadSanitizer, which reports that unlock as the misuse it
     * is, and ends the test.) */
    if (coil_test_under_tsan()) return;
    pthread_mutexattr_t at;
    pthread_mutex_t em;
    pthread_mutexattr_init(&at);
    pthread_mutexattr_settype(&at, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_init(&em, &at);
    pthread_mutexattr_destroy(&at);
    EXPECT_EQ(lk_mutex_unlock(&em), EPERM);
    EXPECT_EQ(lk_mutex_lock(&em), 0);
    EXPECT_EQ(lk_mutex_unlock(&em), 0);
    pthread_mutex_destroy(&em);
}

static void test_mutex_contract(void **state) {
    (void)state;
    assert_int_equal(coil_install(), 0);
    COIL_RUN_CHECKED(mutex_main, NULL);
    coil_uninstall();
}

/* ---- a tasklet that unlocks and locks again in a loop --------------------------- */

#define LOOP_ROUNDS 10

static int loop_rounds, loop_rounds_at_waiter;

static void loop_locker(void *arg) {
    (void)arg;
    for (int i = 0; i < LOOP_ROUNDS; i++) {
        EXPECT_EQ(lk_mutex_lock(&mx), 0);
        coil_sleep(100 * COIL_USEC); /* parks, holding mx */
        loop_rounds++;
        EXPECT_EQ(lk_mutex_unlock(&mx), 0);
    }
}

static void loop_main(void *arg) {
    (void)arg;
    loop_rounds = 0;
    coil_id l = coil_spawn(loop_locker, NULL, NULL);
    coil_yield(); /* it takes mx and parks in usleep */
    EXPECT_EQ(lk_mutex_lock(&mx), 0);
    loop_rounds_at_waiter = loop_rounds;
    EXPECT_EQ(lk_mutex_unlock(&mx), 0);
    EXPECT_EQ(coil_join(l, COIL_FOREVER), 0);
}

/* Its unlock lets the waiter it woke run first: the waiter gets the mutex
 * long before the loop ends (nothing is handed over, so without that the
 * locker would take it again at once, every round). */
static void test_unlock_in_a_loop_lets_the_waiter_in(void **state) {
    (void)state;
    assert_int_equal(coil_install(), 0);
    COIL_RUN_CHECKED(loop_main, NULL);
    assert_true(loop_rounds_at_waiter < LOOP_ROUNDS);
    coil_uninstall();
}

/* ---- a plain thread holds the mutex ------------------------------------------ */

static int plain_held, plain_released;
static long plain_ticks; /* the ticker's count, as the thread saw it at release */

static void *plain_holder(void *arg) {
    (void)arg;
    pthread_mutex_lock(&mx);
    __atomic_store_n(&plain_held, 1, __ATOMIC_RELEASE);
    /* Released only once the ticker has run a few times: the tasklet waiting
     * for the mutex must not block the scheduler's thread meanwhile. */
    for (int i = 0; i < 100000 && __atomic_load_n(&ticks, __ATOMIC_ACQUIRE) < 5; i++)
        usleep(100);
    plain_ticks = __atomic_load_n(&ticks, __ATOMIC_ACQUIRE);
    __atomic_store_n(&plain_released, 1, __ATOMIC_RELEASE);
    pthread_mutex_unlock(&mx);
    return NULL;
}

static void plain_main(void *arg) {
    (void)arg;
    __atomic_store_n(&callers_left, 1, __ATOMIC_RELEASE);
    coil_id tick = coil_spawn(ticker, NULL, NULL);
    wait_for(&plain_held);
    EXPECT_EQ(lk_mutex_lock(&mx), 0);
    EXPECT_EQ(__atomic_load_n(&plain_released, __ATOMIC_ACQUIRE), 1);
    EXPECT_EQ(lk_mutex_unlock(&mx), 0);
    __atomic_store_n(&callers_left, 0, __ATOMIC_RELEASE);
    EXPECT_EQ(coil_join(tick, COIL_FOREVER), 0);
}

static void test_plain_thread_holds_the_mutex(void **state) {
    (void)state;
    assert_int_equal(coil_install(), 0);
    ticks = 0;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, plain_holder, NULL), 0);
    COIL_RUN_CHECKED(plain_main, NULL);
    pthread_join(th, NULL);
    assert_true(plain_ticks >= 5);
    coil_uninstall();
}

/* ---- condition variables ------------------------------------------------------ */

static pthread_mutex_t cm = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int cond_ready, cond_woken;

static void cond_waiter(void *arg) {
    (void)arg;
    EXPECT_EQ(lk_mutex_lock(&cm), 0);
    while (!cond_ready)
        EXPECT_EQ(lk_cond_wait(&cv, &cm), 0);
    EXPECT_EQ(lk_mutex_trylock(&cm), EBUSY); /* it holds cm again */
    cond_woken++;
    EXPECT_EQ(lk_mutex_unlock(&cm), 0);
}

static void *plain_signaller(void *arg) {
    (void)arg;
    usleep(20000);
    pthread_mutex_lock(&cm);
    cond_ready = 1;
    pthread_cond_signal(&cv);
    pthread_mutex_unlock(&cm);
    return NULL;
}

static void cond_main(void *arg) {
    (void)arg;
    /* broadcast wakes every waiter */
    cond_ready = cond_woken = 0;
    coil_id w[3];
    for (int i = 0; i < 3; i++)
        w[i] = coil_spawn(cond_waiter, NULL, NULL);
    coil_sleep(5 * COIL_MSEC);
    EXPECT_EQ(cond_woken, 0);
    EXPECT_EQ(lk_mutex_lock(&cm), 0);
    cond_ready = 1;
    EXPECT_EQ(lk_cond_broadcast(&cv), 0);
    EXPECT_EQ(lk_mutex_unlock(&cm), 0);
    for (int i = 0; i < 3; i++)
        EXPECT_EQ(coil_join(w[i], COIL_FOREVER), 0);
    EXPECT_EQ(cond_woken, 3);

    /* signal wakes a waiter */
    cond_ready = cond_woken = 0;
    w[0] = coil_spawn(cond_waiter, NULL, NULL);
    coil_sleep(5 * COIL_MSEC);
    EXPECT_EQ(lk_mutex_lock(&cm), 0);
    cond_ready = 1;
    EXPECT_EQ(lk_cond_signal(&cv), 0);
    EXPECT_EQ(lk_mutex_unlock(&cm), 0);
    EXPECT_EQ(coil_join(w[0], COIL_FOREVER), 0);
    EXPECT_EQ(cond_woken, 1);

    /* a signal from a plain thread (not seen by a wrapper) */
    cond_ready = cond_woken = 0;
    pthread_t th;
    EXPECT_EQ(pthread_create(&th, NULL, plain_signaller, NULL), 0);
    cond_waiter(NULL);
    EXPECT_EQ(cond_woken, 1);
    pthread_join(th, NULL); /* it has ended: it unlocked cm before we took it */

    /* timedwait: ETIMEDOUT with the mutex held again; EINVAL */
    EXPECT_EQ(lk_mutex_lock(&cm), 0);
    int64_t t0 = coil_now();
    struct timespec ts = abs_in(10);
    EXPECT_EQ(lk_cond_timedwait(&cv, &cm, &ts), ETIMEDOUT);
    EXPECT(coil_now() - t0 >= 9 * COIL_MSEC);
    EXPECT_EQ(lk_mutex_trylock(&cm), EBUSY);
    EXPECT_EQ(lk_cond_timedwait(&cv, &cm, &bad_abs), EINVAL);
    EXPECT_EQ(lk_mutex_trylock(&cm), EBUSY);
    EXPECT_EQ(lk_mutex_unlock(&cm), 0);

    /* a cond on CLOCK_MONOTONIC: its time is read on that clock */
    pthread_condattr_t ca;
    pthread_cond_t mcv;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&mcv, &ca);
    pthread_condattr_destroy(&ca);
    EXPECT_EQ(lk_mutex_lock(&cm), 0);
    t0 = coil_now();
    ts = abs_on(CLOCK_MONOTONIC, 20);
    EXPECT_EQ(lk_cond_timedwait(&mcv, &cm, &ts), ETIMEDOUT);
    EXPECT(coil_now() - t0 >= 19 * COIL_MSEC);
    EXPECT_EQ(lk_mutex_unlock(&cm), 0);
    pthread_cond_destroy(&mcv);

    /* waiting with a mutex one does not hold (error-checking): EPERM (not
     * under ThreadSanitizer: see mutex_main) */
    if (coil_test_under_tsan()) return;
    pthread_mutexattr_t at;
    pthread_mutex_t em;
    pthread_mutexattr_init(&at);
    pthread_mutexattr_settype(&at, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_init(&em, &at);
    pthread_mutexattr_destroy(&at);
    EXPECT_EQ(lk_cond_wait(&cv, &em), EPERM);
    pthread_mutex_destroy(&em);
}

static void test_cond_contract(void **state) {
    (void)state;
    assert_int_equal(coil_install(), 0);
    COIL_RUN_CHECKED(cond_main, NULL);
    coil_uninstall();
}

/* ---- rwlocks ------------------------------------------------------------------ */

static pthread_rwlock_t rw = PTHREAD_RWLOCK_INITIALIZER;
static int readers_in, readers_done, reader3_in, readers_go;

static void reader(void *arg) {
    (void)arg;
    EXPECT_EQ(lk_rwlock_rdlock(&rw), 0);
    readers_in++;
    wait_for(&readers_go);
    readers_done++;
    EXPECT_EQ(lk_rwlock_unlock(&rw), 0);
}

static void reader3(void *arg) {
    (void)arg;
    EXPECT_EQ(lk_rwlock_rdlock(&rw), 0);
    reader3_in = 1;
    EXPECT_EQ(lk_rwlock_unlock(&rw), 0);
}

static void rwlock_main(void *arg) {
    (void)arg;
    readers_in = readers_done = reader3_in = readers_go = 0;
    coil_id r1 = coil_spawn(reader, NULL, NULL), r2 = coil_spawn(reader, NULL, NULL);
    coil_sleep(5 * COIL_MSEC);
    EXPECT_EQ(readers_in, 2); /* both read at once */
    EXPECT_EQ(lk_rwlock_tryrdlock(&rw), 0);
    EXPECT_EQ(lk_rwlock_unlock(&rw), 0);
    EXPECT_EQ(lk_rwlock_trywrlock(&rw), EBUSY);
    EXPECT_EQ(lk_rwlock_timedwrlock(&rw, &bad_abs), EINVAL);
    struct timespec ts = abs_in(5);
    EXPECT_EQ(lk_rwlock_timedwrlock(&rw, &ts), ETIMEDOUT);
    readers_go = 1;
    EXPECT_EQ(lk_rwlock_wrlock(&rw), 0);
    EXPECT_EQ(readers_done, 2); /* the writer waited for both */
    coil_id r3 = coil_spawn(reader3, NULL, NULL);
    coil_sleep(5 * COIL_MSEC);
    EXPECT_EQ(reader3_in, 0); /* parked behind the writer */
    EXPECT_EQ(lk_rwlock_tryrdlock(&rw), EBUSY);
    ts = abs_in(5);
    EXPECT_EQ(lk_rwlock_timedrdlock(&rw, &ts), ETIMEDOUT);
    EXPECT_EQ(lk_rwlock_timedrdlock(&rw, &bad_abs), EINVAL);
    EXPECT_EQ(lk_rwlock_unlock(&rw), 0);
    EXPECT_EQ(coil_join(r3, COIL_FOREVER), 0);
    EXPECT_EQ(reader3_in, 1);
    EXPECT_EQ(coil_join(r1, COIL_FOREVER), 0);
    EXPECT_EQ(coil_join(r2, COIL_FOREVER), 0);
    ts = abs_in(10000);
    EXPECT_EQ(lk_rwlock_timedwrlock(&rw, &ts), 0);
    EXPECT_EQ(lk_rwlock_unlock(&rw), 0);
    EXPECT_EQ(lk_rwlock_timedrdlock(&rw, &bad_abs), 0); /* free: the time not looked at */
    EXPECT_EQ(lk_rwlock_unlock(&rw), 0);
}

static void test_rwlock_contract(void **state) {
    (void)state;
    assert_int_equal(coil_install(), 0);
    COIL_RUN_CHECKED(rwlock_main, NULL);
    coil_uninstall();
}

/* ---- semaphores --------------------------------------------------------------- */

static sem_t sm;
static int posted;

static void poster(void *arg) {
    (void)arg;
    coil_sleep(10 * COIL_MSEC);
    posted = 1;
    EXPECT_EQ(lk_sem_post(&sm), 0);
}

static void sem_main(void *arg) {
    (void)arg;
    posted = 0;
    errno = 0;
    EXPECT_EQ(lk_sem_trywait(&sm), -1);
    EXPECT_EQ(errno, EAGAIN);
    struct timespec ts = abs_in(5);
    EXPECT_EQ(lk_sem_timedwait(&sm, &ts), -1);
    EXPECT_EQ(errno, ETIMEDOUT);
    errno = 0;
    EXPECT_EQ(lk_sem_timedwait(&sm, &bad_abs), -1);
    EXPECT_EQ(errno, EINVAL);
    coil_id p = coil_spawn(poster, NULL, NULL);
    EXPECT_EQ(lk_sem_wait(&sm), 0);
    EXPECT_EQ(posted, 1);
    EXPECT_EQ(coil_join(p, COIL_FOREVER), 0);
    posted = 0;
    p = coil_spawn(poster, NULL, NULL);
    ts = abs_in(10000);
    EXPECT_EQ(lk_sem_timedwait(&sm, &ts), 0);
    EXPECT_EQ(posted, 1);
    EXPECT_EQ(coil_join(p, COIL_FOREVER), 0);
    EXPECT_EQ(lk_sem_post(&sm), 0);
    EXPECT_EQ(lk_sem_timedwait(&sm, &bad_abs), 0); /* a unit free: the time not looked at */
}

static void test_sem_contract(void **state) {
    (void)state;
    assert_int_equal(coil_install(), 0);
    assert_int_equal(sem_init(&sm, 0, 0), 0);
    COIL_RUN_CHECKED(sem_main, NULL);
    sem_destroy(&sm);
    coil_uninstall();
}

/* ---- the clock forms ------------------------------------------------------------- */

static void clock_main(void *arg) {
    (void)arg;
    mx_held = mx_released = mx_go = 0;
    coil_id h = coil_spawn(mx_holder, (void *)(intptr_t)0, NULL);
    wait_for(&mx_held);
    int64_t t0 = coil_now();
    struct timespec ts = abs_on(CLOCK_MONOTONIC, 10);
    EXPECT_EQ(lk_mutex_clocklock(&mx, CLOCK_MONOTONIC, &ts), ETIMEDOUT);
    EXPECT(coil_now() - t0 >= 9 * COIL_MSEC);
    ts = abs_in(5);
    EXPECT_EQ(lk_mutex_clocklock(&mx, CLOCK_REALTIME, &ts), ETIMEDOUT);
    EXPECT_EQ(lk_mutex_clocklock(&mx, CLOCK_MONOTONIC, &bad_abs), EINVAL);
    ts = abs_on(CLOCK_MONOTONIC, 10);
    /* a clock pthread does not take: libc's own answer */
    EXPECT_EQ(lk_mutex_clocklock(&mx, CLOCK_PROCESS_CPUTIME_ID, &ts), EINVAL);
    __atomic_store_n(&mx_go, 1, __ATOMIC_RELEASE);
    ts = abs_on(CLOCK_MONOTONIC, 10000);
    EXPECT_EQ(lk_mutex_clocklock(&mx, CLOCK_MONOTONIC, &ts), 0);
    EXPECT_EQ(__atomic_load_n(&mx_released, __ATOMIC_ACQUIRE), 1);

    t0 = coil_now();
    ts = abs_on(CLOCK_MONOTONIC, 10);
    EXPECT_EQ(lk_cond_clockwait(&cv, &mx, CLOCK_MONOTONIC, &ts), ETIMEDOUT);
    EXPECT(coil_now() - t0 >= 9 * COIL_MSEC);
    EXPECT_EQ(lk_mutex_trylock(&mx), EBUSY); /* held again */
    EXPECT_EQ(lk_cond_clockwait(&cv, &mx, CLOCK_MONOTONIC, &bad_abs), EINVAL);
    EXPECT_EQ(lk_mutex_unlock(&mx), 0);
    EXPECT_EQ(coil_join(h, COIL_FOREVER), 0);

    EXPECT_EQ(lk_rwlock_wrlock(&rw), 0);
    ts = abs_on(CLOCK_MONOTONIC, 5);
    EXPECT_EQ(lk_rwlock_clockrdlock(&rw, CLOCK_MONOTONIC, &ts), ETIMEDOUT);
    ts = abs_on(CLOCK_MONOTONIC, 5);
    EXPECT_EQ(lk_rwlock_clockwrlock(&rw, CLOCK_MONOTONIC, &ts), ETIMEDOUT);
    EXPECT_EQ(lk_rwlock_clockwrlock(&rw, CLOCK_MONOTONIC, &bad_abs), EINVAL);
    EXPECT_EQ(lk_rwlock_unlock(&rw), 0);
    EXPECT_EQ(lk_rwlock_clockrdlock(&rw, CLOCK_MONOTONIC, &bad_abs), 0); /* free */
    EXPECT_EQ(lk_rwlock_unlock(&rw), 0);

    ts = abs_on(CLOCK_MONOTONIC, 5);
    errno = 0;
    EXPECT_EQ(lk_sem_clockwait(&sm, CLOCK_MONOTONIC, &ts), -1);
    EXPECT_EQ(errno, ETIMEDOUT);
    errno = 0;
    EXPECT_EQ(lk_sem_clockwait(&sm, CLOCK_MONOTONIC, &bad_abs), -1);
    EXPECT_EQ(errno, EINVAL);
    posted = 0;
    coil_id p = coil_spawn(poster, NULL, NULL);
    ts = abs_on(CLOCK_MONOTONIC, 10000);
    EXPECT_EQ(lk_sem_clockwait(&sm, CLOCK_MONOTONIC, &ts), 0);
    EXPECT_EQ(posted, 1);
    EXPECT_EQ(coil_join(p, COIL_FOREVER), 0);
}

static void test_clock_forms(void **state) {
    (void)state;
    assert_int_equal(coil_install(), 0);
    assert_int_equal(sem_init(&sm, 0, 0), 0);
    COIL_RUN_CHECKED(clock_main, NULL);
    sem_destroy(&sm);
    coil_uninstall();
}

/* ---- outside tasklets, and clocks pthread does not take ------------------------ */

/* Each call of a contended object with a deadline 5 ms away (or already
 * invalid), made once outside coil_run and once in a tasklet: the same
 * answer, pthread's. Outside coil_run every call is libc's; in a tasklet, a
 * clock other than CLOCK_REALTIME and CLOCK_MONOTONIC goes to libc too. */
enum { FOREIGN = 11 };

static void foreign_calls(int *rc, int *err) {
    struct timespec ts = abs_in(5), mono = abs_on(CLOCK_MONOTONIC, 5);
    int i = 0;
    errno = 0;
    rc[i++] = lk_mutex_timedlock(&mx, &ts);
    rc[i++] = lk_mutex_clocklock(&mx, CLOCK_BOOTTIME, &mono);
    rc[i++] = lk_rwlock_timedrdlock(&rw, &ts);
    rc[i++] = lk_rwlock_timedwrlock(&rw, &ts);
    rc[i++] = lk_rwlock_clockrdlock(&rw, CLOCK_BOOTTIME, &mono);
    rc[i++] = lk_rwlock_clockwrlock(&rw, CLOCK_BOOTTIME, &mono);
    EXPECT_EQ(lk_mutex_lock(&cm), 0);
    rc[i++] = lk_cond_clockwait(&cv, &cm, CLOCK_BOOTTIME, &mono);
    ts = abs_in(5);
    rc[i++] = lk_cond_timedwait(&cv, &cm, &ts);
    EXPECT_EQ(lk_mutex_unlock(&cm), 0);
    ts = abs_in(5);
    rc[i] = lk_sem_timedwait(&sm, &ts);
    err[i++] = errno;
    errno = 0;
    rc[i] = lk_sem_clockwait(&sm, CLOCK_BOOTTIME, &mono);
    err[i++] = errno;
    EXPECT_EQ(lk_sem_post(&sm), 0);
    errno = 0;
    rc[i] = lk_sem_wait(&sm); /* a token: no wait */
    err[i++] = errno;
    EXPECT_EQ(i, FOREIGN);
}

struct foreign {
    int rc[FOREIGN], err[FOREIGN];
};

static void *foreign_holder(void *arg) {
    (void)arg;
    EXPECT_EQ(pthread_mutex_lock(&mx), 0);
    EXPECT_EQ(pthread_rwlock_wrlock(&rw), 0);
    __atomic_store_n(&mx_held, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&mx_go, __ATOMIC_ACQUIRE))
        usleep(1000);
    EXPECT_EQ(pthread_rwlock_unlock(&rw), 0);
    EXPECT_EQ(pthread_mutex_unlock(&mx), 0);
    return NULL;
}

static void foreign_main(void *arg) {
    struct foreign *f = arg;
    foreign_calls(f->rc, f->err);
}

static void test_outside_tasklets_and_foreign_clocks(void **state) {
    (void)state;
    assert_int_equal(coil_install(), 0);
    assert_int_equal(sem_init(&sm, 0, 0), 0);
    mx_held = mx_go = 0;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, foreign_holder, NULL), 0);
    while (!__atomic_load_n(&mx_held, __ATOMIC_ACQUIRE))
        usleep(1000);
    struct foreign libc = {{0}, {0}}, coil = {{0}, {0}};
    foreign_calls(libc.rc, libc.err);
    COIL_RUN_CHECKED(foreign_main, &coil);
    __atomic_store_n(&mx_go, 1, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    static const int want[FOREIGN] = {ETIMEDOUT, EINVAL,    ETIMEDOUT, ETIMEDOUT, EINVAL, EINVAL,
                                      EINVAL,    ETIMEDOUT, -1,        -1,        0};
    static const int want_err[FOREIGN] = {[8] = ETIMEDOUT, [9] = EINVAL};
    for (int i = 0; i < FOREIGN; i++) {
        if (libc.rc[i] != want[i] || libc.err[i] != want_err[i])
            fail_msg("call %d outside coil_run: %d errno %d, pthread's answer is %d errno %d", i,
                     libc.rc[i], libc.err[i], want[i], want_err[i]);
        if (coil.rc[i] != want[i] || coil.err[i] != want_err[i])
            fail_msg("call %d in a tasklet: %d errno %d, pthread's answer is %d errno %d", i,
                     coil.rc[i], coil.err[i], want[i], want_err[i]);
    }
    sem_destroy(&sm);
    coil_uninstall();
}

/* ---- killed waiters ------------------------------------------------------------ */

static int kill_timed_rc, kill_lock_rc, kill_lock_killed, kill_sem_rc, kill_sem_errno;
static int kill_cond_rc, kill_cond_holds, kill_uncond_rc, kill_uncond_holds;

static void victim_timedlock(void *arg) {
    (void)arg;
    struct timespec ts = abs_in(10000);
    kill_timed_rc = lk_mutex_timedlock(&mx, &ts);
}

static void victim_lock(void *arg) {
    (void)arg;
    kill_lock_rc = lk_mutex_lock(&mx);
    kill_lock_killed = coil_killed();
    if (kill_lock_rc == 0) lk_mutex_unlock(&mx);
}

static void victim_sem(void *arg) {
    (void)arg;
    kill_sem_rc = lk_sem_wait(&sm);
    kill_sem_errno = errno;
}

static void victim_cond(void *arg) {
    (void)arg;
    lk_mutex_lock(&cm);
    struct timespec ts = abs_in(10000);
    kill_cond_rc = lk_cond_timedwait(&cv, &cm, &ts);
    kill_cond_holds = lk_mutex_trylock(&cm) == EBUSY;
    lk_mutex_unlock(&cm);
}

static void victim_cond_untimed(void *arg) {
    (void)arg;
    lk_mutex_lock(&cm);
    kill_uncond_rc = lk_cond_wait(&cv, &cm);
    kill_uncond_holds = lk_mutex_trylock(&cm) == EBUSY;
    lk_mutex_unlock(&cm);
}

static void kill_main(void *arg) {
    (void)arg;
    mx_held = mx_released = mx_go = 0;
    coil_id h = coil_spawn(mx_holder, (void *)(intptr_t)0, NULL);
    wait_for(&mx_held);
    coil_id v[5] = {coil_spawn(victim_timedlock, NULL, NULL), coil_spawn(victim_lock, NULL, NULL),
                    coil_spawn(victim_sem, NULL, NULL), coil_spawn(victim_cond, NULL, NULL),
                    coil_spawn(victim_cond_untimed, NULL, NULL)};
    coil_sleep(10 * COIL_MSEC);
    for (int i = 0; i < 5; i++)
        EXPECT_EQ(coil_kill(v[i]), 0);
    coil_sleep(5 * COIL_MSEC);
    __atomic_store_n(&mx_go, 1, __ATOMIC_RELEASE);
    for (int i = 0; i < 5; i++)
        EXPECT_EQ(coil_join(v[i], COIL_FOREVER), 0);
    EXPECT_EQ(coil_join(h, COIL_FOREVER), 0);
}

static void test_killed_waiters(void **state) {
    (void)state;
    assert_int_equal(coil_install(), 0);
    assert_int_equal(sem_init(&sm, 0, 0), 0);
    COIL_RUN_CHECKED(kill_main, NULL);
    sem_destroy(&sm);
    assert_int_equal(kill_timed_rc, ECANCELED);
    assert_int_equal(kill_lock_rc, 0); /* it waited on and got the mutex */
    assert_int_equal(kill_lock_killed, 1);
    assert_int_equal(kill_sem_rc, -1);
    assert_int_equal(kill_sem_errno, ECANCELED);
    assert_int_equal(kill_cond_rc, ECANCELED);
    assert_int_equal(kill_cond_holds, 1);
    assert_int_equal(kill_uncond_rc, 0); /* a spurious wake-up */
    assert_int_equal(kill_uncond_holds, 1);
    coil_uninstall();
}

/* ---- across the schedulers of a group ------------------------------------------ */

#define GROUP_WORKERS 8
#define GROUP_ROUNDS  20

static pthread_mutex_t gm = PTHREAD_MUTEX_INITIALIZER;
static long group_count; /* guarded by gm */

static void group_worker(void *arg) {
    (void)arg;
    for (int i = 0; i < GROUP_ROUNDS; i++) {
        EXPECT_EQ(lk_mutex_lock(&gm), 0);
        long v = group_count;
        coil_sleep(100 * COIL_USEC); /* parks, holding gm */
        group_count = v + 1;
        EXPECT_EQ(lk_mutex_unlock(&gm), 0);
    }
}

static void group_main(void *arg) {
    (void)arg;
    coil_id ids[GROUP_WORKERS];
    for (int i = 0; i < GROUP_WORKERS; i++)
        ids[i] = coil_spawn_on(COIL_SCHED_NEXT, group_worker, NULL, NULL);
    for (int i = 0; i < GROUP_WORKERS; i++)
        EXPECT_EQ(coil_join(ids[i], COIL_FOREVER), 0);
}

static void test_group_shares_a_mutex(void **state) {
    (void)state;
    assert_int_equal(coil_install(), 0);
    group_count = 0;
    coil_test_reset_failures();
    int rc = coil_run_group(2, group_main, NULL);
    coil_test_assert_no_failure();
    assert_int_equal(rc, 0);
    assert_int_equal(group_count, GROUP_WORKERS * GROUP_ROUNDS);
    coil_uninstall();
}

/* ---- across two coil_runs, each on a thread of its own ------------------------- */

/* Two schedulers that are not of one group: a release on one cannot send
 * the other a message, and its waiters take the mutex on their retry
 * timers. */
static void *separate_run(void *arg) {
    (void)arg;
    intptr_t rc = coil_run(group_main, NULL);
    return (void *)rc;
}

static void test_separate_runs_share_a_mutex(void **state) {
    (void)state;
    assert_int_equal(coil_install(), 0);
    group_count = 0;
    coil_test_reset_failures();
    pthread_t th[2];
    void *rc[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(pthread_create(&th[i], NULL, separate_run, NULL), 0);
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], &rc[i]);
    coil_test_assert_no_failure();
    assert_int_equal((intptr_t)rc[0], 0);
    assert_int_equal((intptr_t)rc[1], 0);
    assert_int_equal(group_count, 2 * GROUP_WORKERS * GROUP_ROUNDS);
    coil_uninstall();
}

/* ---- thread-specific data ------------------------------------------------------ */

static pthread_key_t tk, tk_plain, tk_again, tk_old, tk_new, tk_grow;
static int tsd_a, tsd_a2, tsd_b, tsd_c, tsd_e, tsd_e2, tsd_f, tsd_h, tsd_main_value;
#define TSD_MAX_CALLS 16
static void *tsd_dtor_values[TSD_MAX_CALLS];
static int tsd_dtor_calls, tsd_again_calls, tsd_old_calls, tsd_grow_calls, tsd_g;
static void *tsd_grow_value;
static void *tsd_plain_in_dtor; /* what the tasklet's tk_plain was, seen by tk's destructor */

static void tsd_dtor(void *v) {
    /* On the ending tasklet, which still sees its other values. */
    if (v == &tsd_e) tsd_plain_in_dtor = lk_getspecific(tk_plain);
    if (tsd_dtor_calls < TSD_MAX_CALLS) tsd_dtor_values[tsd_dtor_calls] = v;
    tsd_dtor_calls++;
}

/* Sets its value again each time: pthread's rounds stop after
 * PTHREAD_DESTRUCTOR_ITERATIONS. */
static void tsd_again_dtor(void *v) {
    /* The first time, also a key made after the others (a higher number:
     * the table grows during the rounds). */
    if (tsd_again_calls++ == 0) EXPECT_EQ(lk_setspecific(tk_grow, &tsd_g), 0);
    EXPECT_EQ(lk_setspecific(tk_again, v), 0);
}

static void tsd_grow_dtor(void *v) {
    tsd_grow_calls++;
    tsd_grow_value = v;
}

static void tsd_old_dtor(void *v) {
    (void)v;
    tsd_old_calls++;
}

static bool tsd_dtor_got(const void *v) {
    for (int i = 0; i < tsd_dtor_calls && i < TSD_MAX_CALLS; i++)
        if (tsd_dtor_values[i] == v) return true;
    return false;
}

static void tsd_a_fn(void *arg) {
    (void)arg;
    EXPECT(lk_getspecific(tk) == NULL);
    EXPECT_EQ(lk_setspecific(tk, &tsd_a), 0);
    EXPECT_EQ(lk_setspecific(tk_plain, &tsd_a2), 0);
    coil_yield(); /* B runs, sets its own */
    EXPECT(lk_getspecific(tk) == &tsd_a);
    EXPECT(lk_getspecific(tk_plain) == &tsd_a2);
    coil_yield();
    EXPECT(lk_getspecific(tk) == &tsd_a);
}

static void tsd_b_fn(void *arg) {
    (void)arg;
    EXPECT(lk_getspecific(tk) == NULL); /* not A's */
    EXPECT(lk_getspecific(tk_plain) == NULL);
    EXPECT_EQ(lk_setspecific(tk, &tsd_b), 0);
    coil_yield();
    EXPECT(lk_getspecific(tk) == &tsd_b);
    EXPECT_EQ(lk_setspecific(tk, NULL), 0); /* cleared: no destructor call */
    EXPECT(lk_getspecific(tk) == NULL);
}

static void tsd_c_fn(void *arg) {
    (void)arg;
    EXPECT_EQ(lk_setspecific(tk, &tsd_c), 0);
    EXPECT_EQ(coil_sleep(3600 * COIL_SEC), -ECANCELED); /* killed */
}

static void tsd_e_fn(void *arg) {
    (void)arg;
    EXPECT_EQ(lk_setspecific(tk, &tsd_e), 0);
    EXPECT_EQ(lk_setspecific(tk_plain, &tsd_e2), 0);
    EXPECT_EQ(lk_setspecific(tk_again, &tsd_e), 0);
}

static int tsd_f_deleted; /* set by the main tasklet */

static void tsd_f_fn(void *arg) {
    (void)arg;
    EXPECT_EQ(lk_setspecific(tk_old, &tsd_f), 0);
    while (!tsd_f_deleted)
        coil_yield();
    /* tk_new may have tk_old's number: the value set under tk_old is not its. */
    EXPECT(lk_getspecific(tk_new) == NULL);
    EXPECT(lk_getspecific(tk_old) == NULL);
    EXPECT_EQ(lk_setspecific(tk_old, &tsd_f), tk_old == tk_new ? 0 : EINVAL);
    EXPECT_EQ(lk_setspecific(tk_old, NULL), tk_old == tk_new ? 0 : EINVAL);
}

static void tsd_h_fn(void *arg) {
    (void)arg;
    EXPECT_EQ(lk_setspecific(tk, &tsd_h), 0);
    coil_yield(); /* coil_uninstall meanwhile */
}

static void tsd_main(void *arg) {
    (void)arg;
    /* The main tasklet is a tasklet too: its thread's value is not its. */
    EXPECT(lk_getspecific(tk) == NULL);
    /* Keys that do not exist: libc's answers. */
    EXPECT_EQ(lk_setspecific(PTHREAD_KEYS_MAX, &tsd_a), EINVAL);
    EXPECT_EQ(lk_setspecific((pthread_key_t)-1, &tsd_a), EINVAL);
    EXPECT(lk_getspecific(PTHREAD_KEYS_MAX) == NULL);

    coil_id a = coil_spawn(tsd_a_fn, NULL, NULL), b = coil_spawn(tsd_b_fn, NULL, NULL);
    EXPECT_EQ(coil_join(a, COIL_FOREVER), 0);
    EXPECT(tsd_dtor_got(&tsd_a)); /* before the join returned */
    EXPECT_EQ(coil_join(b, COIL_FOREVER), 0);
    EXPECT_EQ(tsd_dtor_calls, 1); /* B cleared its value; tk_plain has no destructor */

    coil_id c = coil_spawn(tsd_c_fn, NULL, NULL);
    coil_yield();
    EXPECT_EQ(coil_kill(c), 0);
    EXPECT_EQ(coil_join(c, COIL_FOREVER), 0);
    EXPECT(tsd_dtor_got(&tsd_c));

    coil_id e = coil_spawn(tsd_e_fn, NULL, NULL);
    EXPECT_EQ(coil_join(e, COIL_FOREVER), 0);
    EXPECT(tsd_dtor_got(&tsd_e));
    EXPECT(tsd_plain_in_dtor == &tsd_e2);
    EXPECT_EQ(tsd_again_calls, PTHREAD_DESTRUCTOR_ITERATIONS);
    EXPECT_EQ(tsd_grow_calls, 1);
    EXPECT(tsd_grow_value == &tsd_g);

    coil_id f = coil_spawn(tsd_f_fn, NULL, NULL);
    coil_yield(); /* F sets its tk_old value */
    EXPECT_EQ(lk_key_delete(tk_old), 0);
    EXPECT_EQ(lk_key_create(&tk_new, tsd_dtor), 0);
    tsd_f_deleted = 1;
    EXPECT_EQ(coil_join(f, COIL_FOREVER), 0);
    EXPECT_EQ(tsd_old_calls, 0);   /* tk_old was deleted: its destructor is not called */
    EXPECT(!tsd_dtor_got(&tsd_f)); /* nor tk_new's, for a value set under tk_old */

    /* Uninstalled while a tasklet holds a value: dropped at its end, not
     * given to the destructor (which would look up the thread's). */
    coil_id h = coil_spawn(tsd_h_fn, NULL, NULL);
    coil_yield();
    EXPECT_EQ(coil_uninstall(), 0);
    EXPECT_EQ(coil_join(h, COIL_FOREVER), 0);
    EXPECT(!tsd_dtor_got(&tsd_h));
    EXPECT_EQ(coil_install(), 0);
}

static void test_thread_specific_data_is_the_tasklets(void **state) {
    (void)state;
    assert_int_equal(lk_key_create(&tk, tsd_dtor), 0);
    assert_int_equal(lk_key_create(&tk_plain, NULL), 0);
    assert_int_equal(lk_key_create(&tk_again, tsd_again_dtor), 0);
    assert_int_equal(lk_key_create(&tk_old, tsd_old_dtor), 0);
    assert_int_equal(lk_key_create(&tk_grow, tsd_grow_dtor), 0);
    assert_true(tk_grow > tk_again);
    assert_int_equal(lk_setspecific(tk, &tsd_main_value), 0); /* the thread's own */
    assert_int_equal(coil_install(), 0);
    COIL_RUN_CHECKED(tsd_main, NULL);
    /* The thread's value is untouched by its tasklets, and so are libc's
     * answers outside them. */
    assert_ptr_equal(lk_getspecific(tk), &tsd_main_value);
    assert_int_equal(lk_setspecific(PTHREAD_KEYS_MAX, &tsd_a), EINVAL);
    assert_int_equal(lk_setspecific(tk, NULL), 0);
    coil_uninstall();
    assert_int_equal(tsd_dtor_calls, 3); /* A, C, E */
    assert_int_equal(lk_key_delete(tk), 0);
    assert_int_equal(lk_key_delete(tk_plain), 0);
    assert_int_equal(lk_key_delete(tk_again), 0);
    assert_int_equal(lk_key_delete(tk_new), 0);
    assert_int_equal(lk_key_delete(tk_grow), 0);
}

/* ---- a malloc of its own keeps its thread-specific data ------------------------ */

/* What the GOT slot of symbol holds in the loaded object whose path contains
 * object (its JUMP_SLOT or GLOB_DAT relocation), as coil_install finds it. */
struct got_query {
    const char *object, *symbol;
    void *value;
    bool found;
};

static int got_visit(struct dl_phdr_info *info, size_t size, void *arg) {
    (void)size;
    struct got_query *q = arg;
    if (!info->dlpi_name || !strstr(info->dlpi_name, q->object)) return 0;
    const ElfW(Dyn) *dyn = NULL;
    for (int i = 0; i < info->dlpi_phnum; i++)
        if (info->dlpi_phdr[i].p_type == PT_DYNAMIC)
            dyn = (const void *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
    const ElfW(Sym) *symtab = NULL;
    const char *strtab = NULL;
    const ElfW(Rela) * rel[2] = {NULL, NULL};
    size_t relsz[2] = {0, 0};
    for (const ElfW(Dyn) *d = dyn; d && d->d_tag != DT_NULL; d++) {
        /* glibc has relocated these in place (an address below the base is
         * not yet). */
        uintptr_t p =
            d->d_un.d_ptr < info->dlpi_addr ? d->d_un.d_ptr + info->dlpi_addr : d->d_un.d_ptr;
        if (d->d_tag == DT_SYMTAB) symtab = (const void *)p;
        if (d->d_tag == DT_STRTAB) strtab = (const void *)p;
        if (d->d_tag == DT_JMPREL) rel[0] = (const void *)p;
        if (d->d_tag == DT_PLTRELSZ) relsz[0] = d->d_un.d_val;
        if (d->d_tag == DT_RELA) rel[1] = (const void *)p;
        if (d->d_tag == DT_RELASZ) relsz[1] = d->d_un.d_val;
    }
    for (int k = 0; k < 2 && symtab && strtab; k++)
        for (size_t i = 0; rel[k] && i < relsz[k] / sizeof *rel[k]; i++) {
            const ElfW(Sym) *sym = &symtab[ELF64_R_SYM(rel[k][i].r_info)];
            if (strcmp(strtab + sym->st_name, q->symbol) != 0) continue;
            q->value = *(void **)(info->dlpi_addr + rel[k][i].r_offset);
            q->found = true;
            return 1;
        }
    return 0;
}

static bool got_slot(const char *object, const char *symbol, void **value) {
    struct got_query q = {object, symbol, NULL, false};
    dl_iterate_phdr(got_visit, &q);
    *value = q.value;
    return q.found;
}

/* In a child with jemalloc preloaded (it is the process's malloc then):
 * coil_install leaves jemalloc's pthread_setspecific slot as it was, and
 * diverts the library's. Exits 0 when so. */
static int malloc_keeps_child(void) {
    void *je[2], *lk[2];
    lk_setspecific(PTHREAD_KEYS_MAX, NULL); /* resolve the library's lazy slot */
    if (!got_slot("libjemalloc", "pthread_setspecific", &je[0]) ||
        !got_slot("locklib", "pthread_setspecific", &lk[0])) {
        fprintf(stderr, "no pthread_setspecific slot in jemalloc or the library\n");
        return 2;
    }
    if (coil_install() != 0) return 3;
    got_slot("libjemalloc", "pthread_setspecific", &je[1]);
    got_slot("locklib", "pthread_setspecific", &lk[1]);
    fprintf(stderr, "jemalloc's slot %s, the library's %s\n", je[1] == je[0] ? "kept" : "diverted",
            lk[1] == lk[0] ? "kept" : "diverted");
    return je[1] == je[0] && lk[1] != lk[0] ? 0 : 1;
}

static char self_exe[PATH_MAX], jemalloc_path[PATH_MAX];

static void malloc_keeps_exec(void *arg) {
    (void)arg;
    setenv("LD_PRELOAD", jemalloc_path, 1);
    char *argv[] = {self_exe, "--malloc-keeps-child", NULL};
    coil_test_exec_child(argv);
}

/* jemalloc comes with redis-server (libjemalloc2), which the suite's
 * dependencies install; it sits beside libc. Under ASan and TSan their own
 * malloc, in the executable, comes before any preloaded one, so there is no
 * foreign malloc to keep: skipped there; under qemu-user (no arm64
 * jemalloc in the cross root) too. */
static void test_malloc_keeps_its_thread_data(void **state) {
    (void)state;
    if (COIL_TEST_ASAN || coil_test_under_tsan() || coil_test_under_qemu()) skip();
    Dl_info libc;
    assert_true(dladdr((void *)printf, &libc) != 0);
    char dir[PATH_MAX];
    snprintf(dir, sizeof dir, "%s", libc.dli_fname);
    snprintf(jemalloc_path, sizeof jemalloc_path, "%s/libjemalloc.so.2", dirname(dir));
    if (access(jemalloc_path, R_OK) != 0)
        fail_msg("%s: not found (libjemalloc2, which redis-server depends on)", jemalloc_path);
    ssize_t n = readlink("/proc/self/exe", self_exe, sizeof self_exe - 1);
    assert_true(n > 0);
    self_exe[n] = '\0';
    struct coil_test_child c;
    coil_test_fork_run(&c, malloc_keeps_exec, NULL, 20000);
    if (!coil_test_child_exited(&c, 0)) {
        coil_test_child_describe(&c);
        coil_test_child_free(&c);
        fail_msg("a preloaded malloc's thread-specific data");
    }
    coil_test_child_free(&c);
}

/* ---- four callers, a server that never answers, SIGTERM ------------------------- */

static struct server hang_sv;
static int hang_rc[4];

static void hang_caller(void *arg) {
    int i = (int)(intptr_t)arg;
    char reply[REQ_LEN];
    hang_rc[i] = locklib_call("request", reply, REQ_LEN);
}

static void hang_main(void *arg) {
    (void)arg;
    coil_id ids[4];
    for (int i = 0; i < 4; i++)
        ids[i] = coil_spawn(hang_caller, (void *)(intptr_t)i, NULL);
    while (__atomic_load_n(&hang_sv.requests, __ATOMIC_ACQUIRE) < 1)
        coil_sleep(COIL_MSEC);
    coil_sleep(20 * COIL_MSEC);
    coil_dump(stderr);
    fprintf(stderr, "ready\n");
    for (int i = 0; i < 4; i++)
        coil_join(ids[i], COIL_FOREVER);
}

static void hang_child(void *arg) {
    (void)arg;
    signal(SIGTERM, SIG_DFL);
    if (coil_install() != 0) _exit(2);
    int fd;
    server_start(&hang_sv, true, &fd);
    int rc = coil_run(hang_main, NULL);
    int ok = rc == -EINTR;
    for (int i = 0; i < 4; i++)
        ok &= hang_rc[i] == -1;
    fprintf(stderr, "coil_run=%d calls=%d,%d,%d,%d\n", rc, hang_rc[0], hang_rc[1], hang_rc[2],
            hang_rc[3]);
    _exit(ok ? 0 : 1);
}

static void test_sigterm_ends_callers_waiting_on_the_lock(void **state) {
    (void)state;
    struct coil_test_child c;
    bool ready = coil_test_child_signal_at(&c, hang_child, NULL, "ready", SIGTERM);
    /* the holder in recv, the other three on the library's mutex */
    bool dumped = coil_test_count(c.err, "on pthread mutex 0x") == 3 &&
                  coil_test_count(c.err, "on io recv") == 1;
    if (!ready || !coil_test_child_exited(&c, 0) || !dumped) {
        coil_test_child_describe(&c);
        coil_test_child_free(&c);
        fail_msg("SIGTERM with callers waiting on a library's mutex (ready %d, dump %d)", ready,
                 dumped);
    }
    coil_test_child_free(&c);
}

int main(int argc, char **argv) {
    if (argc > 1 && strcmp(argv[1], "--malloc-keeps-child") == 0) return malloc_keeps_child();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_fifty_callers_of_a_locked_connection),
        cmocka_unit_test(test_mutex_contract),
        cmocka_unit_test(test_unlock_in_a_loop_lets_the_waiter_in),
        cmocka_unit_test(test_plain_thread_holds_the_mutex),
        cmocka_unit_test(test_cond_contract),
        cmocka_unit_test(test_rwlock_contract),
        cmocka_unit_test(test_sem_contract),
        cmocka_unit_test(test_clock_forms),
        cmocka_unit_test(test_outside_tasklets_and_foreign_clocks),
        cmocka_unit_test(test_killed_waiters),
        cmocka_unit_test(test_group_shares_a_mutex),
        cmocka_unit_test(test_separate_runs_share_a_mutex),
        cmocka_unit_test(test_thread_specific_data_is_the_tasklets),
        cmocka_unit_test(test_malloc_keeps_its_thread_data),
        cmocka_unit_test(test_sigterm_ends_callers_waiting_on_the_lock),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
