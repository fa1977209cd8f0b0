/*
 * Channels with Stackless semantics: rendezvous or buffered transfer of
 * fixed-size elements, balance, preference, send_error, close, and choose.
 *
 * A tasklet that must wait links a waiter record into the channel's queue of
 * senders or receivers and parks. The record lives in the waiting tasklet's
 * frame (or, for coil_choose, inside the caller's coil_clause), so waiting
 * allocates nothing. Whoever completes a waiter's operation copies the
 * element, unlinks the record (and, for a choose, every sibling record of
 * that tasklet), and wakes the tasklet with the result. Invariant: a waiter
 * is linked exactly while its tasklet is parked on it.
 *
 * Across the schedulers of a group. A channel belongs to the scheduler that
 * first uses it, and while only that scheduler's tasklets use it, it is
 * "local": no lock, no atomic read-modify-write, exactly as on one scheduler.
 * The first use from another scheduler of the group asks the owner (a message
 * it runs between two tasklets, so no operation of its own is half done) to
 * make the channel "shared", for good. A shared channel's state is guarded by
 * its spinlock, held only for a transfer's few stores, never across a switch.
 * A parked tasklet's waiters may then be found by completers on several
 * threads at once (a choose over channels of several schedulers, or a
 * completer racing the waiter's own timeout or kill), so the one that takes a
 * waiter first wins its tasklet's wait_claim (compare-and-swap 0 -> 1): the
 * winner completes and wakes it (coil__wake_any: a message when it belongs to
 * another scheduler); a loser just drops the waiter from its queue. A woken
 * choose takes its other waiters off their channels itself. A choose locks
 * all its channels (in address order, so two chooses cannot deadlock) while
 * it looks for a ready clause and links its waiters, so it is atomic as on
 * one scheduler. Making a channel shared also makes shared every channel of
 * a choose parked on it (all local to the owner), so that a local completer
 * never meets a waiter that another thread could take.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define CHAN_LIVE 0x6c6f632d6e616863ull /* "chan-col" */
#define CHAN_DEAD 0x646165642d6e6168ull

struct waiter {
    struct coil__link link; /* in its channel's senders or receivers */
    struct coil__tasklet *t;
    coil_chan *ch;
    void *elem;  /* send: the element to copy from; receive: where to copy to */
    int err;     /* send_error: the positive errno to deliver instead */
    int op;      /* COIL_CHOOSE_SEND or COIL_CHOOSE_RECV */
    int index;   /* clause index in a choose; -1 for a single operation */
    bool linked; /* in its queue (shared channel: read under its lock) */
};
_Static_assert(sizeof(struct waiter) <= sizeof(((coil_clause *)0)->coil__private),
               "a waiter fits in coil_clause's private words");

struct waitq {
    struct coil__list l; /* struct waiter.link */
    int len;
};

struct coil_chan {
    uint64_t magic; /* atomic: another thread may free it */
    uint64_t owner; /* serial of the scheduler that uses it; 0 until first use (atomic) */
    int shared;     /* used from several schedulers of a group; written by the owner only */
    int lock;       /* a spinlock, while shared */
    size_t elem_size, cap;
    size_t count, first; /* ring buffer of cap slots */
    char *slots;         /* cap * elem_size bytes */
    int *slot_err;       /* per slot: 0, or the errno of a send_error */
    struct waitq senders, receivers;
    int preference;
    bool closed;
};

/* ---- waiter queues ------------------------------------------------------ */

static void waitq_push(struct waitq *q, struct waiter *w) {
    coil__list_push_back(&q->l, &w->link);
    q->len++;
    w->linked = true;
}

static void waitq_remove(struct waitq *q, struct waiter *w) {
    coil__list_remove(&q->l, &w->link);
    q->len--;
    w->linked = false;
}

/* The longest-waiting, or NULL. */
static struct waiter *waitq_first(const struct waitq *q) {
    return coil__list_entry(q->l.first, struct waiter, link);
}

/* ---- shared channels ---------------------------------------------------- */

static inline bool is_shared(const coil_chan *ch) {
    return __atomic_load_n(&ch->shared, __ATOMIC_ACQUIRE);
}

static void chan_lock(coil_chan *ch) {
    coil__spin_lock(&ch->lock);
}

static void chan_unlock(coil_chan *ch) {
    coil__spin_unlock(&ch->lock);
}

static bool take_claim(struct coil__tasklet *t) {
    return coil__take_claim(t);
}

/* The first waiter of q that this transfer may complete, taken out of q;
 * NULL if none. On a shared channel a waiter whose tasklet another thread
 * has taken (through another channel, or its own timeout or kill) is dropped
 * on the way. */
static struct waiter *waitq_take(struct waitq *q, bool shared) {
    struct waiter *w;
    while ((w = waitq_first(q)) != NULL) {
        waitq_remove(q, w);
        if (!shared || take_claim(w->t)) return w;
    }
    return NULL;
}

/* Drops the waiters of q whose tasklets are taken (shared channel, locked). */
static void waitq_purge(struct waitq *q) {
    struct coil__link *l = q->l.first;
    while (l) {
        struct coil__link *next = l->next;
        struct waiter *w = coil__container_of(l, struct waiter, link);
        if (__atomic_load_n(&w->t->wait_claim, __ATOMIC_ACQUIRE)) waitq_remove(q, w);
        l = next;
    }
}

static struct waitq *queue_of(coil_chan *ch, int op) {
    return op == COIL_CHOOSE_SEND ? &ch->senders : &ch->receivers;
}

static coil_clause *clause_of(struct waiter *w) {
    return (coil_clause *)(void *)((char *)w - offsetof(coil_clause, coil__private));
}

static struct waiter *clause_waiter(coil_clause *cl) {
    return (struct waiter *)(void *)cl->coil__private;
}

/* Takes w off its channel if it is still linked (its own tasklet, after the
 * wait). */
static void waiter_drop(struct waiter *w) {
    coil_chan *ch = w->ch;
    if (!is_shared(ch)) {
        if (w->linked) waitq_remove(queue_of(ch, w->op), w);
        return;
    }
    chan_lock(ch);
    if (w->linked) waitq_remove(queue_of(ch, w->op), w);
    chan_unlock(ch);
}

/* What w's tasklet must be woken with after its operation was completed
 * with result; on local channels, a choose's other waiters are taken off
 * their channels here (on shared ones, by the woken tasklet). */
static int claim(struct waiter *w, int result, bool shared) {
    if (w->index < 0) return result;
    coil_clause *cl = clause_of(w) - w->index;
    if (!shared)
        for (size_t i = 0; i < w->t->wait_n; i++) {
            if ((int)i == w->index) continue;
            struct waiter *o = clause_waiter(&cl[i]);
            waitq_remove(queue_of(o->ch, o->op), o);
        }
    cl[w->index].result = result;
    return w->index;
}

static bool unwait_single(struct coil__tasklet *t, int err) {
    (void)err;
    struct waiter *w = t->wait_obj;
    if (is_shared(w->ch) && !take_claim(t)) return false; /* its completer wakes it */
    waiter_drop(w);
    return true;
}

static bool unwait_choose(struct coil__tasklet *t, int err) {
    (void)err;
    coil_clause *cl = t->wait_obj;
    bool shared = false;
    for (size_t i = 0; i < t->wait_n && !shared; i++)
        shared = is_shared(cl[i].ch);
    if (shared && !take_claim(t)) return false;
    for (size_t i = 0; i < t->wait_n; i++)
        waiter_drop(clause_waiter(&cl[i]));
    return true;
}

/* self has completed other's operation; the preference (pref, read with the
 * channel's state) says who runs first when both are of one scheduler. */
static void deliver(int pref, struct coil__tasklet *self, struct waiter *other, int result,
                    bool shared) {
    struct coil__tasklet *ot = other->t;
    int wake = claim(other, result, shared);
    if (ot->sched != self->sched) { /* both go on at once, each on its thread */
        coil__wake_any(ot, wake);
        return;
    }
    bool other_first = other->op == COIL_CHOOSE_RECV ? pref < 0 : pref > 0;
    if (other_first)
        coil__handoff(self, ot, wake);
    else
        coil__wake(ot, wake);
}

/* ---- the transfers ------------------------------------------------------ */

/* memcpy of a size only known at run time is a call into libc; most channels
 * carry a pointer or an integer. */
static inline void copy_elem(void *dst, const void *src, size_t size) {
    switch (size) {
    case 4: memcpy(dst, src, 4); break;
    case 8: memcpy(dst, src, 8); break;
    case 16: memcpy(dst, src, 16); break;
    default: memcpy(dst, src, size); break;
    }
}

static void ring_put(coil_chan *ch, const void *elem, int err) {
    size_t i = (ch->first + ch->count) % ch->cap;
    ch->slot_err[i] = err;
    if (!err) copy_elem(ch->slots + i * ch->elem_size, elem, ch->elem_size);
    ch->count++;
}

static int ring_take(coil_chan *ch, void *elem) {
    size_t i = ch->first;
    int err = ch->slot_err[i];
    if (!err) copy_elem(elem, ch->slots + i * ch->elem_size, ch->elem_size);
    ch->first = (i + 1) % ch->cap;
    ch->count--;
    return err ? -err : 0;
}

/* Whether op on ch can be done now without waiting (send_now/recv_now would
 * return 1; on a shared channel, once its queues are purged). */
static bool ready(const coil_chan *ch, int op) {
    if (op == COIL_CHOOSE_SEND) return ch->closed || ch->receivers.len || ch->count < ch->cap;
    return ch->count || ch->senders.len || ch->closed;
}

/* The waiter a transfer completed, to be delivered once the channel is
 * unlocked (shared), with the preference read along with the state. */
struct xfer {
    struct waiter *other;
    int result;
    int pref;
};

static void xfer_set(struct xfer *x, const coil_chan *ch, struct waiter *w, int result) {
    x->other = w;
    x->result = result;
    x->pref = ch->preference;
}

/* Sends now if that needs no waiting. Returns 1 with *res set when done. */
static int send_now(coil_chan *ch, const void *elem, int err, int *res, struct xfer *x,
                    bool shared) {
    x->other = NULL;
    if (ch->closed) {
        *res = -EPIPE;
        return 1;
    }
    struct waiter *r = waitq_take(&ch->receivers, shared);
    if (r) { /* a receiver waits, so the buffer is empty: hand over directly */
        if (!err) copy_elem(r->elem, elem, ch->elem_size);
        *res = 0;
        xfer_set(x, ch, r, err ? -err : 0);
        return 1;
    }
    if (ch->count < ch->cap) {
        ring_put(ch, elem, err);
        *res = 0;
        return 1;
    }
    return 0;
}

/* Receives now if that needs no waiting. Returns 1 with *res set when done. */
static int recv_now(coil_chan *ch, void *elem, int *res, struct xfer *x, bool shared) {
    x->other = NULL;
    if (ch->count) {
        *res = ring_take(ch, elem);
        struct waiter *s = waitq_take(&ch->senders, shared);
        if (s) { /* the slot just freed goes to the first waiting sender */
            ring_put(ch, s->elem, s->err);
            xfer_set(x, ch, s, 0);
        }
        return 1;
    }
    struct waiter *s = waitq_take(&ch->senders, shared);
    if (s) {
        if (!s->err) copy_elem(elem, s->elem, ch->elem_size);
        *res = s->err ? -s->err : 0;
        xfer_set(x, ch, s, 0);
        return 1;
    }
    if (ch->closed) {
        *res = -EPIPE;
        return 1;
    }
    return 0;
}

/* ---- checks and modes ----------------------------------------------------- */

static int check(const coil_chan *ch) {
    if (!ch) return -EINVAL;
    return __atomic_load_n(&ch->magic, __ATOMIC_RELAXED) == CHAN_LIVE ? 0 : -EBADF;
}

enum { LOCAL = 0, SHARED = 1 };

/* Makes ch shared; on its owner's thread only. A choose parked on it may
 * also wait on other channels (all local to this owner): they become shared
 * too, so that no local completer meets a waiter another thread can take. */
static void make_shared(coil_chan *ch) {
    if (ch->shared) return;
    /* Published under the lock: another thread that sees it shared takes
     * the lock, so it waits until the walk below is done. (Another channel
     * locked in the walk is still local: no other thread can hold it.) */
    chan_lock(ch);
    __atomic_store_n(&ch->shared, 1, __ATOMIC_RELEASE);
    struct waitq *qs[2] = {&ch->senders, &ch->receivers};
    for (int q = 0; q < 2; q++)
        coil__list_each(l, &qs[q]->l) {
            struct waiter *w = coil__container_of(l, struct waiter, link);
            if (w->index < 0) continue;
            coil_clause *cl = clause_of(w) - w->index;
            for (size_t i = 0; i < w->t->wait_n; i++)
                make_shared(cl[i].ch);
        }
    chan_unlock(ch);
}

static void promote_run(struct coil__sched *s, struct coil__msg *m) {
    struct coil__xcall *x = coil__container_of(m, struct coil__xcall, msg);
    coil_chan *ch = x->arg;
    if (!check(ch) && __atomic_load_n(&ch->owner, __ATOMIC_RELAXED) == s->serial) make_shared(ch);
    coil__wake_any(x->caller, 0);
}

/* How the calling tasklet t may use ch: LOCAL (ch is its scheduler's alone:
 * no lock), SHARED (take the lock), or -EXDEV (a scheduler outside t's
 * group owns it). The first use binds ch to t's scheduler; the first use
 * from another scheduler of the group waits for the owner to make it shared. */
static int chan_mode(coil_chan *ch, struct coil__tasklet *t) {
    const struct coil__sched *s = t->sched;
    uint64_t owner = __atomic_load_n(&ch->owner, __ATOMIC_RELAXED);
    if (COIL_LIKELY(owner == s->serial))
        return __atomic_load_n(&ch->shared, __ATOMIC_RELAXED) ? SHARED : LOCAL;
    if (!owner && __atomic_compare_exchange_n(&ch->owner, &owner, s->serial, false,
                                              __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        return LOCAL;
    struct coil__sched *os = coil__sched_by_serial(s, owner);
    if (!os) return -EXDEV;
    if (is_shared(ch)) return SHARED;
    struct coil__xcall x = {.arg = ch};
    coil__xcall(t, os, promote_run, &x);
    return SHARED;
}

/* ---- public API --------------------------------------------------------- */

int coil_chan_open(coil_chan **out, size_t elem_size, size_t capacity) {
    if (!out || !elem_size) return -EINVAL;
    size_t slot, bytes;
    if (__builtin_add_overflow(elem_size, sizeof(int), &slot) ||
        __builtin_mul_overflow(slot, capacity, &bytes) ||
        __builtin_add_overflow(bytes, sizeof(coil_chan), &bytes))
        return -EINVAL;
    int saved_errno = errno;
    coil_chan *ch = calloc(1, bytes);
    if (!ch) {
        errno = saved_errno;
        return -ENOMEM;
    }
    ch->magic = CHAN_LIVE;
    ch->elem_size = elem_size;
    ch->cap = capacity;
    ch->slot_err = (int *)(void *)(ch + 1);
    ch->slots = (char *)(ch->slot_err + capacity);
    ch->preference = -1;
    *out = ch;
    return 0;
}

/* A killed tasklet may still make a transfer that needs no waiting (so that
 * its cleanup can hand back a token or report to whoever waits for it); only
 * a wait is refused, with -ECANCELED. */
static int would_wait(const struct coil__tasklet *t, int64_t deadline) {
    if (COIL_UNLIKELY(t->killed)) return -ECANCELED;
    return coil__deadline_passed(deadline) ? -ETIMEDOUT : 0;
}

/* The transfer of a single send or receive; the channel locked if shared. */
static int transfer(coil_chan *ch, struct coil__tasklet *t, int op, void *elem, int err,
                    int64_t deadline, bool shared) {
    struct xfer x;
    int res;
    if (shared) {
        chan_lock(ch);
        if ((res = check(ch)) != 0) {
            chan_unlock(ch);
            return res;
        }
    }
    int done = op == COIL_CHOOSE_SEND ? send_now(ch, elem, err, &res, &x, shared)
                                      : recv_now(ch, elem, &res, &x, shared);
    if (done) {
        if (shared) chan_unlock(ch);
        if (x.other) deliver(x.pref, t, x.other, x.result, shared);
        return res;
    }
    if ((res = would_wait(t, deadline)) != 0) {
        if (shared) chan_unlock(ch);
        return res;
    }
    struct waiter w = {.t = t, .ch = ch, .elem = elem, .err = err, .op = op, .index = -1};
    __atomic_store_n(&t->wait_claim, 0, __ATOMIC_RELAXED);
    waitq_push(queue_of(ch, op), &w);
    if (shared) chan_unlock(ch);
    return coil__park(t, op == COIL_CHOOSE_SEND ? COIL__WAIT_CHAN_SEND : COIL__WAIT_CHAN_RECV, &w,
                      0, unwait_single, deadline);
}

static int chan_op(coil_chan *ch, int op, void *elem, int err, int64_t deadline) {
    int res = check(ch);
    if (res) return res;
    struct coil__tasklet *t = coil__self();
    if (COIL_UNLIKELY(!t)) return -EPERM;
    int mode = chan_mode(ch, t);
    if (COIL_UNLIKELY(mode < 0)) return mode;
    return transfer(ch, t, op, elem, err, deadline, mode == SHARED);
}

int coil_chan_send_dl(coil_chan *ch, const void *elem, int64_t deadline) {
    if (!elem) return -EINVAL;
    return chan_op(ch, COIL_CHOOSE_SEND, (void *)elem, 0, deadline);
}

int coil_chan_send(coil_chan *ch, const void *elem) {
    return coil_chan_send_dl(ch, elem, COIL_FOREVER);
}

int coil_chan_send_error(coil_chan *ch, int err) {
    if (err <= 0) return -EINVAL;
    return chan_op(ch, COIL_CHOOSE_SEND, NULL, err, COIL_FOREVER);
}

int coil_chan_recv_dl(coil_chan *ch, void *elem, int64_t deadline) {
    int res = check(ch);
    if (res) return res;
    if (!elem) return -EINVAL;
    return chan_op(ch, COIL_CHOOSE_RECV, elem, 0, deadline);
}

int coil_chan_recv(coil_chan *ch, void *elem) {
    return coil_chan_recv_dl(ch, elem, COIL_FOREVER);
}

/* The start of the calls that are callable anywhere (preference, getinfo,
 * close, free): *locked tells whether ch was locked (shared), to be unlocked
 * by the caller. From a tasklet of another group, -EXDEV; from outside every
 * scheduler, -EXDEV while tasklets wait on ch: their scheduler runs on
 * another thread right now (a local channel is not thread-safe: this catches
 * the likely mistake, not every race). */
static int enter_anywhere(coil_chan *ch, bool *locked) {
    int err = check(ch);
    if (err) return err;
    *locked = false;
    struct coil__tasklet *t = coil__self();
    bool shared = false;
    if (t) {
        int mode = chan_mode(ch, t);
        if (mode < 0) return mode;
        shared = mode == SHARED;
    } else {
        shared = is_shared(ch);
    }
    if (shared) {
        chan_lock(ch);
        *locked = true;
        if ((err = check(ch)) != 0) goto fail;
        waitq_purge(&ch->senders);
        waitq_purge(&ch->receivers);
    } else if (t) {
        return 0;
    }
    if (!t && (ch->senders.len || ch->receivers.len)) {
        err = -EXDEV;
        goto fail;
    }
    return 0;
fail:
    if (*locked) chan_unlock(ch);
    *locked = false;
    return err;
}

int coil_chan_set_preference(coil_chan *ch, int preference) {
    bool locked;
    int err = enter_anywhere(ch, &locked);
    if (err) return err;
    if (preference < -1 || preference > 1)
        err = -EINVAL;
    else
        ch->preference = preference;
    if (locked) chan_unlock(ch);
    return err;
}

int coil_chan_getinfo(const coil_chan *cch, coil_chan_info *info) {
    coil_chan *ch = (coil_chan *)cch; /* a shared one is locked to be read */
    bool locked;
    int err = enter_anywhere(ch, &locked);
    if (err) return err;
    if (!info) {
        err = -EINVAL;
    } else {
        info->elem_size = ch->elem_size;
        info->capacity = ch->cap;
        info->count = ch->count;
        info->balance = ch->senders.len - ch->receivers.len;
        info->preference = ch->preference;
        info->closed = ch->closed;
    }
    if (locked) chan_unlock(ch);
    return err;
}

static void wake_all(struct waitq *q, int result, bool shared) {
    struct waiter *w;
    while ((w = waitq_take(q, shared)) != NULL)
        coil__wake_any(w->t, claim(w, result, shared));
}

int coil_chan_close(coil_chan *ch) {
    bool locked;
    int err = enter_anywhere(ch, &locked);
    if (err) return err;
    if (ch->closed) {
        err = -EPIPE;
    } else {
        ch->closed = true;
        wake_all(&ch->receivers, -EPIPE, locked);
        wake_all(&ch->senders, -EPIPE, locked);
    }
    if (locked) chan_unlock(ch);
    return err;
}

/* Recently freed channels (and sync objects, src/sync.c) keep their memory,
 * marked dead, so that a use after free is answered with -EBADF rather than
 * corrupting the heap. */
#define QUARANTINE 64
static __thread void *quarantine[QUARANTINE];
static __thread unsigned quarantine_next;

void coil__chan_quarantine_flush(void) {
    for (unsigned i = 0; i < QUARANTINE; i++) {
        free(quarantine[i]);
        quarantine[i] = NULL;
    }
    quarantine_next = 0;
}

void coil__quarantine_put(void *p) {
    if (!coil__sched_cur) { /* nothing flushes the quarantine outside coil_run */
        free(p);
        return;
    }
    /* (In a group, every scheduler flushes its own quarantine only once all
     * of them have finished their loops: no tasklet can still use it.) */
    unsigned i = quarantine_next++ % QUARANTINE;
    free(quarantine[i]);
    quarantine[i] = p;
}

int coil_chan_free(coil_chan *ch) {
    bool locked;
    int err = enter_anywhere(ch, &locked);
    if (err) return err;
    if (ch->senders.len || ch->receivers.len) {
        if (locked) chan_unlock(ch);
        return -EBUSY;
    }
    __atomic_store_n(&ch->magic, CHAN_DEAD, __ATOMIC_RELAXED);
    if (locked) chan_unlock(ch);
    coil__quarantine_put(ch);
    return 0;
}

static uint64_t choose_random(void) {
    static __thread uint64_t state;
    if (!state) state = (uint64_t)coil_now() | 1;
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    return state;
}

/* Among the ready clauses, one picked uniformly (reservoir sampling), so
 * that none starves whatever its position; n when none is ready. */
static size_t pick_ready(const coil_clause *cl, size_t n) {
    size_t pick = n, nready = 0;
    for (size_t i = 0; i < n; i++)
        if (ready(cl[i].ch, cl[i].op) && choose_random() % ++nready == 0) pick = i;
    return pick;
}

static int do_clause(coil_clause *c, struct xfer *x, bool shared) {
    return c->op == COIL_CHOOSE_SEND ? send_now(c->ch, c->elem, 0, &c->result, x, shared)
                                     : recv_now(c->ch, c->elem, &c->result, x, shared);
}

static void register_clauses(struct coil__tasklet *t, coil_clause *cl, size_t n) {
    __atomic_store_n(&t->wait_claim, 0, __ATOMIC_RELAXED);
    for (size_t i = 0; i < n; i++) {
        struct waiter *w = clause_waiter(&cl[i]);
        *w = (struct waiter){
            .t = t, .ch = cl[i].ch, .elem = cl[i].elem, .op = cl[i].op, .index = (int)i};
        waitq_push(queue_of(cl[i].ch, cl[i].op), w);
    }
}

static int cmp_chan(const void *a, const void *b) {
    uintptr_t x = (uintptr_t) * (coil_chan *const *)a, y = (uintptr_t) * (coil_chan *const *)b;
    return x < y ? -1 : x > y;
}

/* A choose with a shared channel among its clauses: every channel is made
 * shared (the local ones are the caller's own) and locked, in address
 * order, while a ready clause is looked for and the waiters are linked. */
static int choose_shared(struct coil__tasklet *t, coil_clause *cl, size_t n, int64_t deadline) {
    coil_chan *small[16], **chans = n <= 16 ? small : malloc(n * sizeof *chans);
    if (!chans) return -ENOMEM;
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        make_shared(cl[i].ch);
        chans[m++] = cl[i].ch;
    }
    qsort(chans, m, sizeof *chans, cmp_chan);
    size_t u = 0;
    for (size_t i = 0; i < m; i++)
        if (!u || chans[u - 1] != chans[i]) chans[u++] = chans[i];
    int res = 0;
    for (size_t i = 0; i < u; i++) {
        chan_lock(chans[i]);
        if (check(chans[i])) res = -EBADF;
        waitq_purge(&chans[i]->senders);
        waitq_purge(&chans[i]->receivers);
    }
    struct xfer x = {0};
    size_t pick = n;
    if (!res)
        /* A partner taken by another thread since the purge makes a ready
         * clause fail; it is dropped, so this ends. */
        while ((pick = pick_ready(cl, n)) < n && !do_clause(&cl[pick], &x, true)) {
        }
    if (!res && pick == n) res = would_wait(t, deadline);
    if (!res && pick == n) register_clauses(t, cl, n);
    for (size_t i = 0; i < u; i++)
        chan_unlock(chans[i]);
    if (chans != small) free(chans);
    if (res) return res;
    if (pick < n) {
        if (x.other) deliver(x.pref, t, x.other, x.result, true);
        return (int)pick;
    }
    res = coil__park(t, COIL__WAIT_CHOOSE, cl, n, unwait_choose, deadline);
    for (size_t i = 0; i < n; i++)
        waiter_drop(clause_waiter(&cl[i]));
    return res;
}

int coil_choose(coil_clause *cl, size_t n, int64_t deadline) {
    struct coil__tasklet *t;
    if (!cl || n == 0 || n > 1024) return -EINVAL;
    int err;
    for (size_t i = 0; i < n; i++) {
        if ((err = check(cl[i].ch)) != 0) return err;
        if (!cl[i].elem || (cl[i].op != COIL_CHOOSE_SEND && cl[i].op != COIL_CHOOSE_RECV))
            return -EINVAL;
    }
    if (!(t = coil__self())) return -EPERM;
    for (size_t i = 0; i < n; i++) { /* all or none get bound */
        uint64_t owner = __atomic_load_n(&cl[i].ch->owner, __ATOMIC_RELAXED);
        if (owner && owner != t->sched->serial && !coil__sched_by_serial(t->sched, owner))
            return -EXDEV;
    }
    bool shared = false;
    for (size_t i = 0; i < n; i++) {
        int mode = chan_mode(cl[i].ch, t);
        if (mode < 0) return mode;
        shared |= mode == SHARED;
    }
    if (COIL_UNLIKELY(shared)) return choose_shared(t, cl, n, deadline);
    struct xfer x;
    size_t pick = pick_ready(cl, n);
    if (pick < n) {
        int done = do_clause(&cl[pick], &x, false);
        COIL_ASSERT(done, "a ready clause completes without waiting");
        if (x.other) deliver(x.pref, t, x.other, x.result, false);
        return (int)pick;
    }
    if ((err = would_wait(t, deadline)) != 0) return err;
    register_clauses(t, cl, n);
    err = coil__park(t, COIL__WAIT_CHOOSE, cl, n, unwait_choose, deadline);
    /* Its channels were made shared while it waited, and a completer on
     * another thread took it: its other waiters are still linked. */
    if (COIL_UNLIKELY(__atomic_load_n(&t->wait_claim, __ATOMIC_RELAXED)))
        for (size_t i = 0; i < n; i++)
            waiter_drop(clause_waiter(&cl[i]));
    return err;
}

void coil__chan_describe_wait(const struct coil__tasklet *t, FILE *out) {
    if (t->wait_kind == COIL__WAIT_CHOOSE) {
        const coil_clause *cl = t->wait_obj;
        fprintf(out, " among %zu:", t->wait_n);
        for (size_t i = 0; i < t->wait_n; i++)
            fprintf(out, " %s %p", cl[i].op == COIL_CHOOSE_SEND ? "send" : "recv",
                    (void *)cl[i].ch);
        return;
    }
    const struct waiter *w = t->wait_obj;
    coil_chan *ch = w->ch;
    bool shared = is_shared(ch);
    if (shared) chan_lock(ch);
    fprintf(out, " %p (elem %zu bytes, %zu/%zu buffered, balance %d%s)", (void *)ch, ch->elem_size,
            ch->count, ch->cap, ch->senders.len - ch->receivers.len, shared ? ", shared" : "");
    if (shared) chan_unlock(ch);
}
