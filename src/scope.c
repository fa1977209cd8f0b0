/*
 * Scopes (structured concurrency): tasklets spawned into a scope, one waiter
 * that returns only when every one has finished, and cancellation of them
 * all, by call, by the first failure, by the wait's deadline or its kill.
 *
 * Each member runs member_entry(m) around its function; its record (struct
 * member, malloc'd by the spawn, freed by the member as it ends) is linked
 * in the scope while it lives. The member tells the scope of its end after
 * its tasklet-local destructors, and nothing after that can switch away
 * before the tasklet is gone: so when the waiter runs again, the members it
 * waited for have finished.
 *
 * The waiter parks with an unwait hook that never lets it go: a kill or the
 * deadline only cancels the scope (kills the members) and the waiter stays
 * parked until the last member's end wakes it.
 */
#include "internal.h"

#include <stdlib.h>

struct coil_scope {
    uint64_t serial; /* the scheduler's (see coil__sched.serial) */
    int flags;
    struct coil__list members; /* struct member.link, while each lives */
    size_t nlive;
    struct coil__tasklet *waiter; /* in coil_scope_wait */
    bool parked;                  /* the waiter is parked, for the last member to wake */
    bool done;                    /* the wait has returned */
    int cancel_cause;             /* 0, or why the scope was cancelled (first wins) */
    int first_error;              /* the first member's failure */
    int result;                   /* the wait's, once done */
};

struct member {
    struct coil__link link; /* in sc->members */
    coil_scope *sc;
    int (*fn)(void *arg);
    void *arg;
    struct coil__tasklet *t;
};

static int scope_enter(coil_scope *sc, struct coil__tasklet **tp) {
    if (!sc) return -EINVAL;
    struct coil__tasklet *t = coil__self();
    if (!t) return -EPERM;
    if (t->sched->serial != sc->serial) return -EXDEV;
    *tp = t;
    return 0;
}

/* Kills every member, once. Callable from any context of the scheduler's
 * thread (a member, the waiter's unwait hook from a timer or a kill). */
static void scope_cancel(coil_scope *sc, int cause) {
    if (sc->cancel_cause) return;
    sc->cancel_cause = cause;
    coil__list_each(l, &sc->members) coil__kill(coil__container_of(l, struct member, link)->t);
}

static void member_entry(void *arg) {
    struct member *m = arg;
    int rc = m->fn(m->arg);
    coil__locals_run(m->t);
    coil_scope *sc = m->sc;
    coil__list_remove(&sc->members, &m->link);
    sc->nlive--;
    free(m);
    if (rc < 0) {
        if (!sc->first_error) sc->first_error = rc;
        if (sc->flags & COIL_SCOPE_FAIL_FAST) scope_cancel(sc, rc);
    }
    if (!sc->nlive && sc->parked) {
        sc->parked = false;
        coil__wake(sc->waiter, 0);
    }
}

int coil_scope_open(coil_scope **out, int flags) {
    if (!out || (flags & ~COIL_SCOPE_FAIL_FAST)) return -EINVAL;
    struct coil__tasklet *t = coil__self();
    if (!t) return -EPERM;
    coil_scope *sc = calloc(1, sizeof *sc);
    if (!sc) return -ENOMEM;
    sc->serial = t->sched->serial;
    sc->flags = flags;
    *out = sc;
    return 0;
}

coil_id coil_scope_spawn(coil_scope *sc, int (*fn)(void *arg), void *arg,
                         const coil_spawn_opts *opts) {
    struct coil__tasklet *t;
    if (!fn) return -EINVAL;
    int err = scope_enter(sc, &t);
    if (err) return err;
    if (sc->done) return -EPIPE;
    if (sc->cancel_cause) return -ECANCELED;
    struct member *m = malloc(sizeof *m);
    if (!m) return -ENOMEM;
    *m = (struct member){.sc = sc, .fn = fn, .arg = arg};
    /* Runnable, not run: the caller goes on until it next blocks, so m->t is
     * set before member_entry reads it. */
    coil_id id = coil__spawn_here(t->sched, member_entry, m, opts);
    if (id < 0) {
        free(m);
        return id;
    }
    m->t = coil__tasklet_get(t->sched, id);
    coil__list_push_back(&sc->members, &m->link);
    sc->nlive++;
    return id;
}

static bool scope_unwait(struct coil__tasklet *t, int err) {
    scope_cancel(t->wait_obj, err);
    return false; /* the last member's end wakes it */
}

bool coil__wait_reaches(const struct coil__tasklet *u, const struct coil__tasklet *t, bool joins,
                        size_t *budget) {
    while (u && *budget > 0) {
        --*budget;
        if (u == t) return true;
        if (u->state == COIL__WAITING && u->wait_kind == COIL__WAIT_SCOPE) {
            const coil_scope *sc = u->wait_obj;
            coil__list_each(l, &sc->members) {
                if (coil__wait_reaches(coil__container_of(l, struct member, link)->t, t, joins,
                                       budget))
                    return true;
            }
            return false;
        }
        u = joins ? coil__join_target(u) : NULL;
    }
    return false;
}

/* Whether the tasklets sc waits for include t: its members, the members of
 * the scopes they wait on, and, on a scheduler outside a group, the
 * tasklets they join, and so on. (In a group a join's target may be another
 * thread's, which the wait cannot read; the deadlock detector follows those
 * while every scheduler is stalled.) */
static bool scope_waits_for(const coil_scope *sc, const struct coil__tasklet *t) {
    size_t budget = 4 * t->sched->nlive;
    bool joins = !t->sched->group;
    coil__list_each(l, &sc->members) {
        if (coil__wait_reaches(coil__container_of(l, struct member, link)->t, t, joins, &budget))
            return true;
    }
    return false;
}

int coil_scope_wait(coil_scope *sc, int64_t deadline) {
    struct coil__tasklet *t;
    int err = scope_enter(sc, &t);
    if (err) return err;
    if (sc->waiter) return -EBUSY;
    if (sc->done) return sc->result;
    if (scope_waits_for(sc, t)) return -EDEADLK;
    sc->waiter = t;
    while (sc->nlive) {
        if (t->killed)
            scope_cancel(sc, -ECANCELED);
        else if (coil__deadline_passed(deadline))
            scope_cancel(sc, -ETIMEDOUT);
        sc->parked = true;
        coil__park(t, COIL__WAIT_SCOPE, sc, sc->nlive, scope_unwait,
                   sc->cancel_cause ? COIL_FOREVER : deadline);
    }
    sc->waiter = NULL;
    sc->done = true;
    sc->result = sc->cancel_cause ? sc->cancel_cause : sc->first_error;
    return sc->result;
}

int coil_scope_cancel(coil_scope *sc) {
    struct coil__tasklet *t;
    int err = scope_enter(sc, &t);
    if (err) return err;
    if (!sc->done) scope_cancel(sc, -ECANCELED);
    return 0;
}

int coil_scope_free(coil_scope *sc) {
    if (!sc) return -EINVAL;
    struct coil__sched *s = coil__sched_cur;
    if (s && s->serial != sc->serial) return -EXDEV;
    if (sc->nlive || sc->waiter) return -EBUSY;
    free(sc);
    return 0;
}

void coil__scope_describe_wait(const struct coil__tasklet *t, FILE *out) {
    const coil_scope *sc = t->wait_obj;
    fprintf(out, " of %zu member%s", sc->nlive, sc->nlive == 1 ? "" : "s");
    if (sc->cancel_cause) fprintf(out, " (cancelled: %d)", sc->cancel_cause);
}
