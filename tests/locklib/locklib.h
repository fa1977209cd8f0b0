/* tests/locklib/locklib.c's calls (see there). */
#ifndef COIL_TEST_LOCKLIB_H
#define COIL_TEST_LOCKLIB_H

#include <pthread.h>
#include <semaphore.h>
#include <stddef.h>
#include <time.h>

void locklib_attach(int fd);
int locklib_call(const char *req, char *reply, size_t len);

int lk_mutex_lock(pthread_mutex_t *m);
int lk_mutex_trylock(pthread_mutex_t *m);
int lk_mutex_timedlock(pthread_mutex_t *m, const struct timespec *abs);
int lk_mutex_unlock(pthread_mutex_t *m);
int lk_cond_wait(pthread_cond_t *c, pthread_mutex_t *m);
int lk_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m, const struct timespec *abs);
int lk_cond_signal(pthread_cond_t *c);
int lk_cond_broadcast(pthread_cond_t *c);
int lk_rwlock_rdlock(pthread_rwlock_t *rw);
int lk_rwlock_wrlock(pthread_rwlock_t *rw);
int lk_rwlock_tryrdlock(pthread_rwlock_t *rw);
int lk_rwlock_trywrlock(pthread_rwlock_t *rw);
int lk_rwlock_timedrdlock(pthread_rwlock_t *rw, const struct timespec *abs);
int lk_rwlock_timedwrlock(pthread_rwlock_t *rw, const struct timespec *abs);
int lk_rwlock_unlock(pthread_rwlock_t *rw);
int lk_sem_wait(sem_t *s);
int lk_sem_trywait(sem_t *s);
int lk_sem_timedwait(sem_t *s, const struct timespec *abs);
int lk_sem_post(sem_t *s);
/* The clock forms (glibc 2.30). */
int lk_mutex_clocklock(pthread_mutex_t *m, clockid_t clk, const struct timespec *abs);
int lk_cond_clockwait(pthread_cond_t *c, pthread_mutex_t *m, clockid_t clk,
                      const struct timespec *abs);
int lk_rwlock_clockrdlock(pthread_rwlock_t *rw, clockid_t clk, const struct timespec *abs);
int lk_rwlock_clockwrlock(pthread_rwlock_t *rw, clockid_t clk, const struct timespec *abs);
int lk_sem_clockwait(sem_t *s, clockid_t clk, const struct timespec *abs);
/* Thread-specific data, through the library as well. */
int lk_key_create(pthread_key_t *key, void (*destructor)(void *));
int lk_key_delete(pthread_key_t key);
void *lk_getspecific(pthread_key_t key);
int lk_setspecific(pthread_key_t key, const void *value);

#endif
