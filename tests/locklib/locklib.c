/* A shared object that test_install_locks builds and loads, in the style of
 * a client library with one connection shared by its callers: a global
 * pthread mutex serializes the callers and is held across the blocking send
 * and recv of each request, as a library with a connection guarded by a
 * lock does (hiredis's thread-safe wrappers, a pooled SQL client).
 *
 * It also passes each pthread lock and semaphore call through (lk_*): a
 * library's calls are diverted by coil_install in every build, where the
 * test program's own calls are not in a ThreadSanitizer build (its runtime
 * defines pthread_mutex_lock and the others in the executable itself, and
 * such calls do not go through a GOT). The same for the thread-specific data
 * calls (lk_key_create, lk_getspecific, ...). */
#define _GNU_SOURCE /* the clock forms */
#include "locklib.h"

#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define API __attribute__((visibility("default")))

static pthread_mutex_t conn_lock = PTHREAD_MUTEX_INITIALIZER;
static int conn_fd = -1;

/* The connection the callers share. */
API void locklib_attach(int fd) {
    pthread_mutex_lock(&conn_lock);
    conn_fd = fd;
    pthread_mutex_unlock(&conn_lock);
}

/* Sends the len bytes of req and reads a reply of the same length into
 * reply, with the connection's lock held throughout. Returns 0, or -1 when
 * the send or the recv failed (or the peer closed). */
API int locklib_call(const char *req, char *reply, size_t len) {
    int rc = 0;
    pthread_mutex_lock(&conn_lock);
    if (send(conn_fd, req, len, 0) != (ssize_t)len) rc = -1;
    for (size_t got = 0; rc == 0 && got < len;) {
        ssize_t r = recv(conn_fd, reply + got, len - got, 0);
        if (r <= 0)
            rc = -1;
        else
            got += (size_t)r;
    }
    pthread_mutex_unlock(&conn_lock);
    return rc;
}

API int lk_mutex_lock(pthread_mutex_t *m) {
    return pthread_mutex_lock(m);
}
API int lk_mutex_trylock(pthread_mutex_t *m) {
    return pthread_mutex_trylock(m);
}
API int lk_mutex_timedlock(pthread_mutex_t *m, const struct timespec *abs) {
    return pthread_mutex_timedlock(m, abs);
}
API int lk_mutex_unlock(pthread_mutex_t *m) {
    return pthread_mutex_unlock(m);
}
API int lk_cond_wait(pthread_cond_t *c, pthread_mutex_t *m) {
    return pthread_cond_wait(c, m);
}
API int lk_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m, const struct timespec *abs) {
    return pthread_cond_timedwait(c, m, abs);
}
API int lk_cond_signal(pthread_cond_t *c) {
    return pthread_cond_signal(c);
}
API int lk_cond_broadcast(pthread_cond_t *c) {
    return pthread_cond_broadcast(c);
}
API int lk_rwlock_rdlock(pthread_rwlock_t *rw) {
    return pthread_rwlock_rdlock(rw);
}
API int lk_rwlock_wrlock(pthread_rwlock_t *rw) {
    return pthread_rwlock_wrlock(rw);
}
API int lk_rwlock_tryrdlock(pthread_rwlock_t *rw) {
    return pthread_rwlock_tryrdlock(rw);
}
API int lk_rwlock_trywrlock(pthread_rwlock_t *rw) {
    return pthread_rwlock_trywrlock(rw);
}
API int lk_rwlock_timedrdlock(pthread_rwlock_t *rw, const struct timespec *abs) {
    return pthread_rwlock_timedrdlock(rw, abs);
}
API int lk_rwlock_timedwrlock(pthread_rwlock_t *rw, const struct timespec *abs) {
    return pthread_rwlock_timedwrlock(rw, abs);
}
API int lk_rwlock_unlock(pthread_rwlock_t *rw) {
    return pthread_rwlock_unlock(rw);
}
API int lk_sem_wait(sem_t *s) {
    return sem_wait(s);
}
API int lk_sem_trywait(sem_t *s) {
    return sem_trywait(s);
}
API int lk_sem_timedwait(sem_t *s, const struct timespec *abs) {
    return sem_timedwait(s, abs);
}
API int lk_sem_post(sem_t *s) {
    return sem_post(s);
}
API int lk_mutex_clocklock(pthread_mutex_t *m, clockid_t clk, const struct timespec *abs) {
    return pthread_mutex_clocklock(m, clk, abs);
}
API int lk_cond_clockwait(pthread_cond_t *c, pthread_mutex_t *m, clockid_t clk,
                          const struct timespec *abs) {
    return pthread_cond_clockwait(c, m, clk, abs);
}
API int lk_rwlock_clockrdlock(pthread_rwlock_t *rw, clockid_t clk, const struct timespec *abs) {
    return pthread_rwlock_clockrdlock(rw, clk, abs);
}
API int lk_rwlock_clockwrlock(pthread_rwlock_t *rw, clockid_t clk, const struct timespec *abs) {
    return pthread_rwlock_clockwrlock(rw, clk, abs);
}
API int lk_sem_clockwait(sem_t *s, clockid_t clk, const struct timespec *abs) {
    return sem_clockwait(s, clk, abs);
}

API int lk_key_create(pthread_key_t *key, void (*destructor)(void *)) {
    return pthread_key_create(key, destructor);
}

API int lk_key_delete(pthread_key_t key) {
    return pthread_key_delete(key);
}

API void *lk_getspecific(pthread_key_t key) {
    return pthread_getspecific(key);
}

API int lk_setspecific(pthread_key_t key, const void *value) {
    return pthread_setspecific(key, value);
}
