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
    void *elem; /* send: the element to copy from; receive: where to copy to */
    int err;    /* send_error: the positive errno to deliver instead */
    int op;     /* COIL_CHOOSE_SEND or COIL_CHOOSE_RECV */
    int index;  /* clause index in a choose; -1 for a single operation */
};
_Static_assert(sizeof(struct waiter) <= sizeof(((coil_clause *)0)->coil__private),
               "a waiter fits in coil_clause's private words");

struct waitq {
    struct coil__list l; /* struct waiter.link */
    int len;
};

struct coil_chan {
    uint64_t magic;
    uint64_t owner; /* serial of the scheduler that uses it; 0 until first use */
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
}

static void waitq_remove(struct waitq *q, struct waiter *w) {
    coil__list_remove(&q->l, &w->link);
    q->len--;
}

/* The longest-waiting, or NULL. */
static struct waiter *waitq_first(const struct waitq *q) {
    return coil__list_entry(q->l.first, struct waiter, link);
}

static struct waitq *queue_of(coil_chan *ch, int op) {
    return op == COIL_CHOOSE_SEND ? &ch->senders : &ch->receivers;
}

static struct waiter *clause_waiter(coil_clause *cl) {
    return (struct waiter *)(void *)cl->coil__private;
}

/* Takes w (already out of its own queue) and, for a choose, all its sibling
 * waiters off their channels; returns what w's tasklet must be woken with. */
static int claim(struct waiter *w, int result) {
    if (w->index < 0) return result;
    coil_clause *cl = w->t->wait_obj;
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
    waitq_remove(queue_of(w->ch, w->op), w);
    return true;
}

static bool unwait_choose(struct coil__tasklet *t, int err) {
    (void)err;
    coil_clause *cl = t->wait_obj;
    for (size_t i = 0; i < t->wait_n; i++) {
        struct waiter *w = clause_waiter(&cl[i]);
        waitq_remove(queue_of(w->ch, w->op), w);
    }
    return true;
}

/* self has completed other's operation; the preference says who runs first. */
static void deliver(coil_chan *ch, struct coil__tasklet *self, struct waiter *other, int result) {
    struct coil__tasklet *ot = other->t;
    int wake = claim(other, result);
    bool other_first = other->op == COIL_CHOOSE_RECV ? ch->preference < 0 : ch->preference > 0;
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
 * return 1). */
static bool ready(const coil_chan *ch, int op) {
    if (op == COIL_CHOOSE_SEND) return ch->closed || ch->receivers.len || ch->count < ch->cap;
    return ch->count || ch->senders.len || ch->closed;
}

/* Sends now if that needs no waiting. Returns 1 with *res set when done. */
static int send_now(coil_chan *ch, struct coil__tasklet *self, const void *elem, int err,
                    int *res) {
    if (ch->closed) {
        *res = -EPIPE;
        return 1;
    }
    struct waiter *r = waitq_first(&ch->receivers);
    if (r) { /* a receiver waits, so the buffer is empty: hand over directly */
        waitq_remove(&ch->receivers, r);
        if (!err) copy_elem(r->elem, elem, ch->elem_size);
        *res = 0;
        deliver(ch, self, r, err ? -err : 0);
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
static int recv_now(coil_chan *ch, struct coil__tasklet *self, void *elem, int *res) {
    struct waiter *s = waitq_first(&ch->senders);
    if (ch->count) {
        *res = ring_take(ch, elem);
        if (s) { /* the slot just freed goes to the first waiting sender */
            waitq_remove(&ch->senders, s);
            ring_put(ch, s->elem, s->err);
            deliver(ch, self, s, 0);
        }
        return 1;
    }
    if (s) {
        waitq_remove(&ch->senders, s);
        if (!s->err) copy_elem(elem, s->elem, ch->elem_size);
        *res = s->err ? -s->err : 0;
        deliver(ch, self, s, 0);
        return 1;
    }
    if (ch->closed) {
        *res = -EPIPE;
        return 1;
    }
    return 0;
}

/* ---- checks ------------------------------------------------------------- */

static int check(const coil_chan *ch) {
    if (!ch) return -EINVAL;
    return ch->magic == CHAN_LIVE ? 0 : -EBADF;
}

/* A channel belongs to the first scheduler that uses it. */
static int chan_bind(coil_chan *ch, const struct coil__sched *s) {
    if (COIL_LIKELY(ch->owner == s->serial)) return 0;
    if (ch->owner) return -EXDEV;
    ch->owner = s->serial;
    return 0;
}

/* For calls allowed outside tasklets: another scheduler's channel is refused. */
static int check_anywhere(const coil_chan *ch) {
    int err = check(ch);
    if (err) return err;
    struct coil__sched *s = coil__sched_cur;
    if (s && ch->owner && ch->owner != s->serial) return -EXDEV;
    /* Outside any scheduler: waiters mean their scheduler runs on another
     * thread right now. (Channels are not thread-safe; this catches the
     * likely mistake, not every race.) */
    if (!s && (ch->senders.len || ch->receivers.len)) return -EXDEV;
    return 0;
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

/* The caller for a transfer: -EPERM outside a tasklet. A killed tasklet may
 * still make a transfer that needs no waiting (so that its cleanup can hand
 * back a token or report to whoever waits for it); only a wait is refused,
 * with -ECANCELED (would_wait). */
static int chan_enter(coil_chan *ch, struct coil__tasklet **tp) {
    struct coil__tasklet *t = coil__self();
    if (COIL_UNLIKELY(!t)) return -EPERM;
    *tp = t;
    return chan_bind(ch, t->sched);
}

static int would_wait(const struct coil__tasklet *t, int64_t deadline) {
    if (COIL_UNLIKELY(t->killed)) return -ECANCELED;
    return coil__deadline_passed(deadline) ? -ETIMEDOUT : 0;
}

static int chan_send(coil_chan *ch, const void *elem, int err, int64_t deadline) {
    struct coil__tasklet *t;
    int res = check(ch);
    if (res) return res;
    if ((res = chan_enter(ch, &t)) != 0) return res;
    if (send_now(ch, t, elem, err, &res)) return res;
    if ((res = would_wait(t, deadline)) != 0) return res;
    struct waiter w = {
        .t = t, .ch = ch, .elem = (void *)elem, .err = err, .op = COIL_CHOOSE_SEND, .index = -1};
    waitq_push(&ch->senders, &w);
    return coil__park(t, COIL__WAIT_CHAN_SEND, &w, 0, unwait_single, deadline);
}

int coil_chan_send_dl(coil_chan *ch, const void *elem, int64_t deadline) {
    if (!elem) return -EINVAL;
    return chan_send(ch, elem, 0, deadline);
}

int coil_chan_send(coil_chan *ch, const void *elem) {
    return coil_chan_send_dl(ch, elem, COIL_FOREVER);
}

int coil_chan_send_error(coil_chan *ch, int err) {
    if (err <= 0) return -EINVAL;
    return chan_send(ch, NULL, err, COIL_FOREVER);
}

int coil_chan_recv_dl(coil_chan *ch, void *elem, int64_t deadline) {
    struct coil__tasklet *t;
    int res = check(ch);
    if (res) return res;
    if (!elem) return -EINVAL;
    if ((res = chan_enter(ch, &t)) != 0) return res;
    if (recv_now(ch, t, elem, &res)) return res;
    if ((res = would_wait(t, deadline)) != 0) return res;
    struct waiter w = {.t = t, .ch = ch, .elem = elem, .op = COIL_CHOOSE_RECV, .index = -1};
    waitq_push(&ch->receivers, &w);
    return coil__park(t, COIL__WAIT_CHAN_RECV, &w, 0, unwait_single, deadline);
}

int coil_chan_recv(coil_chan *ch, void *elem) {
    return coil_chan_recv_dl(ch, elem, COIL_FOREVER);
}

int coil_chan_set_preference(coil_chan *ch, int preference) {
    int err = check_anywhere(ch);
    if (err) return err;
    if (preference < -1 || preference > 1) return -EINVAL;
    ch->preference = preference;
    return 0;
}

int coil_chan_getinfo(const coil_chan *ch, coil_chan_info *info) {
    int err = check_anywhere(ch);
    if (err) return err;
    if (!info) return -EINVAL;
    info->elem_size = ch->elem_size;
    info->capacity = ch->cap;
    info->count = ch->count;
    info->balance = ch->senders.len - ch->receivers.len;
    info->preference = ch->preference;
    info->closed = ch->closed;
    return 0;
}

static void wake_all(struct waitq *q, int result) {
    struct waiter *w;
    while ((w = waitq_first(q)) != NULL) {
        waitq_remove(q, w);
        struct coil__tasklet *t = w->t;
        coil__wake(t, claim(w, result));
    }
}

int coil_chan_close(coil_chan *ch) {
    int err = check_anywhere(ch);
    if (err) return err;
    if (ch->closed) return -EPIPE;
    ch->closed = true;
    wake_all(&ch->receivers, -EPIPE);
    wake_all(&ch->senders, -EPIPE);
    return 0;
}

/* Recently freed channels keep their memory, marked dead, so that a use after
 * coil_chan_free is answered with -EBADF rather than corrupting the heap. */
#define QUARANTINE 64
static __thread coil_chan *quarantine[QUARANTINE];
static __thread unsigned quarantine_next;

void coil__chan_quarantine_flush(void) {
    for (unsigned i = 0; i < QUARANTINE; i++) {
        free(quarantine[i]);
        quarantine[i] = NULL;
    }
    quarantine_next = 0;
}

int coil_chan_free(coil_chan *ch) {
    int err = check_anywhere(ch);
    if (err) return err;
    if (ch->senders.len || ch->receivers.len) return -EBUSY;
    ch->magic = CHAN_DEAD;
    if (!coil__sched_cur) { /* nothing flushes the quarantine outside coil_run */
        free(ch);
        return 0;
    }
    unsigned i = quarantine_next++ % QUARANTINE;
    free(quarantine[i]);
    quarantine[i] = ch;
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
    for (size_t i = 0; i < n; i++) /* all or none get bound */
        if (cl[i].ch->owner && cl[i].ch->owner != t->sched->serial) return -EXDEV;
    for (size_t i = 0; i < n; i++)
        chan_bind(cl[i].ch, t->sched);
    /* Uniform among the ready clauses (reservoir sampling), so that none
     * starves whatever its position among clauses that are not ready. */
    size_t pick = n, nready = 0;
    for (size_t i = 0; i < n; i++)
        if (ready(cl[i].ch, cl[i].op) && choose_random() % ++nready == 0) pick = i;
    if (pick < n) {
        int done = cl[pick].op == COIL_CHOOSE_SEND
                       ? send_now(cl[pick].ch, t, cl[pick].elem, 0, &cl[pick].result)
                       : recv_now(cl[pick].ch, t, cl[pick].elem, &cl[pick].result);
        COIL_ASSERT(done, "a ready clause completes without waiting");
        return (int)pick;
    }
    if ((err = would_wait(t, deadline)) != 0) return err;
    for (size_t i = 0; i < n; i++) {
        struct waiter *w = clause_waiter(&cl[i]);
        *w = (struct waiter){
            .t = t, .ch = cl[i].ch, .elem = cl[i].elem, .op = cl[i].op, .index = (int)i};
        waitq_push(queue_of(cl[i].ch, cl[i].op), w);
    }
    return coil__park(t, COIL__WAIT_CHOOSE, cl, n, unwait_choose, deadline);
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
    const coil_chan *ch = w->ch;
    fprintf(out, " %p (elem %zu bytes, %zu/%zu buffered, balance %d)", (void *)ch, ch->elem_size,
            ch->count, ch->cap, ch->senders.len - ch->receivers.len);
}
