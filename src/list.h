/*
 * Intrusive lists: the links live inside the linked records, so linking
 * allocates nothing, and a record on a tasklet's stack (a waiter, an I/O
 * operation) can be linked for exactly as long as its frame lives.
 *
 * Both kinds are NULL-terminated and their heads hold pointers to records
 * only, never a record to its head: a zeroed head is an empty list, and a
 * head may be copied or moved (the per-fd table is realloc'd) while records
 * are linked.
 *
 *   struct coil__list   doubly linked: push at either end, unlink any
 *                       record in O(1), walk both ways.
 *   struct coil__slist  singly linked, one pointer per record: push at
 *                       either end, pop the first, unlink by a walk (short
 *                       lists, or unlinking rare).
 *
 * Everything is inline: the run queue and the channels' waiter queues are
 * on the hot path of every switch.
 */
#ifndef COIL_LIST_H
#define COIL_LIST_H

#include <stdbool.h>
#include <stddef.h>

#define coil__container_of(p, type, member) ((type *)((char *)(p)-offsetof(type, member)))

/* The record that holds link (NULL for a NULL link), link being its member. */
#define coil__list_entry(link, type, member)                                                       \
    __extension__({                                                                                \
        __typeof__(link) coil__l_ = (link);                                                        \
        coil__l_ ? coil__container_of(coil__l_, type, member) : (type *)NULL;                      \
    })

/* ---- doubly linked ------------------------------------------------------ */

struct coil__link {
    struct coil__link *prev, *next;
};

struct coil__list {
    struct coil__link *first, *last;
};

static inline bool coil__list_empty(const struct coil__list *l) {
    return !l->first;
}

static inline void coil__list_push_back(struct coil__list *l, struct coil__link *n) {
    n->next = NULL;
    n->prev = l->last;
    if (l->last)
        l->last->next = n;
    else
        l->first = n;
    l->last = n;
}

static inline void coil__list_push_front(struct coil__list *l, struct coil__link *n) {
    n->prev = NULL;
    n->next = l->first;
    if (l->first)
        l->first->prev = n;
    else
        l->last = n;
    l->first = n;
}

/* n must be linked in l. */
static inline void coil__list_remove(struct coil__list *l, struct coil__link *n) {
    if (n->prev)
        n->prev->next = n->next;
    else
        l->first = n->next;
    if (n->next)
        n->next->prev = n->prev;
    else
        l->last = n->prev;
}

static inline struct coil__link *coil__list_pop_front(struct coil__list *l) {
    struct coil__link *n = l->first;
    if (n) coil__list_remove(l, n);
    return n;
}

/* it walks l first to last; the body must not unlink it (take next first). */
#define coil__list_each(it, l) for (struct coil__link *it = (l)->first; it; it = it->next)

/* ---- singly linked ------------------------------------------------------ */

struct coil__slink {
    struct coil__slink *next;
};

struct coil__slist {
    struct coil__slink *first, *last;
};

static inline bool coil__slist_empty(const struct coil__slist *l) {
    return !l->first;
}

static inline void coil__slist_push_back(struct coil__slist *l, struct coil__slink *n) {
    n->next = NULL;
    if (l->last)
        l->last->next = n;
    else
        l->first = n;
    l->last = n;
}

static inline void coil__slist_push_front(struct coil__slist *l, struct coil__slink *n) {
    n->next = l->first;
    if (!l->first) l->last = n;
    l->first = n;
}

static inline struct coil__slink *coil__slist_pop_front(struct coil__slist *l) {
    struct coil__slink *n = l->first;
    if (n) {
        l->first = n->next;
        if (!l->first) l->last = NULL;
    }
    return n;
}

/* Unlinks n if it is in l (a walk from the first). True if it was. */
static inline bool coil__slist_remove(struct coil__slist *l, struct coil__slink *n) {
    struct coil__slink *prev = NULL;
    for (struct coil__slink *it = l->first; it; prev = it, it = it->next) {
        if (it != n) continue;
        if (prev)
            prev->next = n->next;
        else
            l->first = n->next;
        if (l->last == n) l->last = prev;
        return true;
    }
    return false;
}

#define coil__slist_each(it, l) for (struct coil__slink *it = (l)->first; it; it = it->next)

#endif /* COIL_LIST_H */
