/*
 * The offload pool: a few worker threads, shared by every scheduler of the
 * process, for calls that cannot be asynchronous (getaddrinfo, a library's
 * blocking call). The job lives in the waiting tasklet's frame; a worker runs
 * it, hands it back to the job's scheduler through that scheduler's list of
 * finished jobs, and wakes the scheduler through its backend (backend->wake).
 * Workers start on demand, up to OFFLOAD_THREADS, and stay.
 */
#include "internal.h"

#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <unistd.h>

#define OFFLOAD_THREADS 4

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t work = PTHREAD_COND_INITIALIZER;
static struct coil__job *queue_head, *queue_tail;
static int nqueued, nthreads, nidle;

static void *worker(void *unused) {
    (void)unused;
    pthread_mutex_lock(&lock);
    for (;;) {
        while (!queue_head) {
            nidle++;
            pthread_cond_wait(&work, &lock);
            nidle--;
        }
        struct coil__job *j = queue_head;
        queue_head = j->next;
        if (!queue_head) queue_tail = NULL;
        nqueued--;
        pthread_mutex_unlock(&lock);

        j->result = j->fn(j->arg);

        pthread_mutex_lock(&lock);
        struct coil__sched *s = j->s;
        j->next = s->offload_done;
        __atomic_store_n(&s->offload_done, j, __ATOMIC_RELEASE); /* read unlocked each round */
        /* Wake the scheduler before unlocking: until it takes j under this
         * lock its job stays pending, so it cannot have ended and torn down
         * its backend (closed, or let be reused, what wake writes to). */
        s->backend->wake(s);
    }
    return NULL;
}

/* Called with the lock held, after a job was queued: another worker starts
 * while queued jobs outnumber the idle workers that will take them (an idle
 * worker that was signalled still counts as idle until it wakes). */
static int ensure_worker(void) {
    if (nqueued <= nidle || nthreads >= OFFLOAD_THREADS) return nthreads > 0 ? 0 : -EAGAIN;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_attr_setstacksize(&attr, 256 * 1024);
    pthread_t th;
#ifdef _WIN32 /* no signal masks: the C runtime's signals are raised by their own thread */
    int err = pthread_create(&th, &attr, worker, NULL);
#else
    /* Workers take no signals: they belong to the program's threads. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    int err = pthread_create(&th, &attr, worker, NULL);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
#endif
    pthread_attr_destroy(&attr);
    if (err) return nthreads > 0 ? 0 : -EAGAIN;
    nthreads++;
    return 0;
}

/* A forked child has none of the workers (only the forking thread survives
 * fork) and no scheduler of the parent's with jobs pending: start afresh. */
static void after_fork_in_child(void) {
    pthread_mutex_init(&lock, NULL);
    pthread_cond_init(&work, NULL);
    queue_head = queue_tail = NULL;
    nqueued = nthreads = nidle = 0;
}

static pthread_once_t atfork_once = PTHREAD_ONCE_INIT;
static void register_atfork(void) {
#ifndef _WIN32 /* no fork there */
    pthread_atfork(NULL, NULL, after_fork_in_child);
#else
    (void)after_fork_in_child;
#endif
}

static bool offload_unwait(struct coil__tasklet *t, int err) {
    (void)t;
    (void)err;
    return false; /* fn cannot be stopped; its completion wakes the tasklet */
}

int coil__offload_start(struct coil__sched *s, struct coil__job *j) {
    j->s = s;
    j->next = NULL;
    int saved_errno = errno;
    pthread_once(&atfork_once, register_atfork);
    pthread_mutex_lock(&lock);
    if (queue_tail)
        queue_tail->next = j;
    else
        queue_head = j;
    queue_tail = j;
    nqueued++;
    int err = ensure_worker();
    if (err) { /* no worker at all: take the job back */
        queue_head = queue_tail = NULL;
        nqueued = 0;
    } else {
        pthread_cond_signal(&work);
    }
    pthread_mutex_unlock(&lock);
    errno = saved_errno;
    if (!err) s->offload_pending++;
    return err;
}

int coil_offload(int (*fn)(void *arg), void *arg) {
    if (!fn) return -EINVAL;
    struct coil__tasklet *t;
    int err = coil__enter(&t);
    if (err) return err;
    struct coil__job j = {.fn = fn, .arg = arg, .t = t};
    err = coil__offload_start(t->sched, &j);
    if (err) return err;
    return coil__park(t, COIL__WAIT_OFFLOAD, &j, 0, offload_unwait, COIL_FOREVER);
}

void coil__offload_reap(struct coil__sched *s) {
    pthread_mutex_lock(&lock);
    struct coil__job *j = s->offload_done;
    s->offload_done = NULL;
    pthread_mutex_unlock(&lock);
    while (j) {
        struct coil__job *next = j->next; /* j is gone once its tasklet runs */
        s->offload_pending--;
        if (j->done)
            j->done(j);
        else
            coil__wake(j->t, j->result);
        j = next;
    }
}

void coil__offload_fini(struct coil__sched *s) {
    COIL_ASSERT(s->offload_pending == 0 && !s->offload_done,
                "no offload job is pending when the scheduler ends");
}
