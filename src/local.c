/*
 * Tasklet-local storage: process-wide keys, a table of values per tasklet,
 * the destructors run at a tasklet's end; and the tasklet's user pointer.
 *
 * A key is (generation << 8) | slot. Each of the COIL_KEYS_MAX slots has a
 * state word, (generation << 1) | in-use, read without a lock by get and
 * set; delete bumps the generation, so a deleted key, and every value a
 * tasklet stored under it, is told from a later key in the same slot. A
 * tasklet's table keeps, per slot, the whole key its value was set under.
 *
 * Under coil_install the same record also holds the tasklet's pthread
 * thread-specific data (src/unix/tsd.c diverts pthread_getspecific and
 * pthread_setspecific to coil__tsd_get and coil__tsd_set): per pthread key,
 * the value and the key's sequence number in glibc's table when it was set,
 * so that a value stored under a key since deleted (and perhaps created
 * again in the same slot) is told from the new key's, as glibc tells them.
 * Both tables get the destructor rounds at the tasklet's end.
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define SLOT_BITS 8
#define GEN_MAX   (((uint32_t)1 << (32 - SLOT_BITS)) - 1)
_Static_assert(COIL_KEYS_MAX <= (1 << SLOT_BITS), "a key's slot fits its low bits");

struct key_slot {
    uint32_t state;             /* (gen << 1) | in use; atomic */
    void (*destructor)(void *); /* under keys_lock */
};

static struct key_slot keys[COIL_KEYS_MAX];
static pthread_mutex_t keys_lock = PTHREAD_MUTEX_INITIALIZER;

struct local_value {
    coil_key key; /* the key value was set under (0: none) */
    void *value;
};

struct tsd_value {
    uintptr_t seq; /* the pthread key's sequence number when value was set */
    void *value;
};

struct coil__locals {
    size_t cap; /* coil's keys: slots 0 .. cap-1 of v */
    struct local_value *v;
    size_t tsd_cap; /* pthread's keys: 0 .. tsd_cap-1 of tsd */
    struct tsd_value *tsd;
};

/* t's record, made empty the first time. The allocation may come back into
 * coil__tsd_set on this tasklet (a malloc that sets a pthread key of its
 * own on first use, when nothing keeps its calls from being diverted), so t's
 * pointer is read again after it. */
static struct coil__locals *locals_of(struct coil__tasklet *t) {
    if (t->locals) return t->locals;
    struct coil__locals *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    if (t->locals) /* made meanwhile, by such a call */
        free(l);
    else
        t->locals = l;
    return t->locals;
}

/* The array v of *cap elements of size elem grown to hold index i (> *cap
 * - 1), the new elements zeroed and *cap updated; NULL when out of memory
 * (v and *cap unchanged). */
static void *table_grow(void *v, size_t *cap, size_t elem, size_t i) {
    char *grown = realloc(v, (i + 1) * elem);
    if (!grown) return NULL;
    memset(grown + *cap * elem, 0, (i + 1 - *cap) * elem);
    *cap = i + 1;
    return grown;
}

static uint32_t key_slot(coil_key key) {
    return key & ((1u << SLOT_BITS) - 1);
}

static bool key_live(coil_key key) {
    uint32_t slot = key_slot(key), gen = key >> SLOT_BITS;
    if (slot >= COIL_KEYS_MAX || gen == 0) return false;
    return __atomic_load_n(&keys[slot].state, __ATOMIC_ACQUIRE) == ((gen << 1) | 1);
}

int coil_key_create(coil_key *key, void (*destructor)(void *value)) {
    if (!key) return -EINVAL;
    int err = -EAGAIN;
    pthread_mutex_lock(&keys_lock);
    for (uint32_t i = 0; i < COIL_KEYS_MAX; i++) {
        uint32_t state = __atomic_load_n(&keys[i].state, __ATOMIC_RELAXED);
        if (state & 1) continue;
        uint32_t gen = state >> 1;
        if (gen == 0) gen = 1; /* never used: generation 0 would make key 0 */
        keys[i].destructor = destructor;
        __atomic_store_n(&keys[i].state, (gen << 1) | 1, __ATOMIC_RELEASE);
        *key = (gen << SLOT_BITS) | i;
        err = 0;
        break;
    }
    pthread_mutex_unlock(&keys_lock);
    return err;
}

int coil_key_delete(coil_key key) {
    int err = -EINVAL;
    pthread_mutex_lock(&keys_lock);
    if (key_live(key)) {
        uint32_t gen = key >> SLOT_BITS;
        gen = gen == GEN_MAX ? 1 : gen + 1;
        keys[key_slot(key)].destructor = NULL;
        __atomic_store_n(&keys[key_slot(key)].state, gen << 1, __ATOMIC_RELEASE);
        err = 0;
    }
    pthread_mutex_unlock(&keys_lock);
    return err;
}

int coil_local_set(coil_key key, void *value) {
    struct coil__tasklet *t = coil__self();
    if (!t) return -EPERM;
    if (!key_live(key)) return -EINVAL;
    uint32_t slot = key_slot(key);
    struct coil__locals *l = t->locals;
    if (!l || slot >= l->cap) {
        if (!value) return 0; /* nothing to clear */
        if (!(l = locals_of(t))) return -ENOMEM;
        void *v = table_grow(l->v, &l->cap, sizeof l->v[0], slot);
        if (!v) return -ENOMEM;
        l->v = v;
    }
    l->v[slot].key = key;
    l->v[slot].value = value;
    return 0;
}

void *coil_local_get(coil_key key) {
    struct coil__tasklet *t = coil__self();
    if (!t || !t->locals) return NULL;
    uint32_t slot = key_slot(key);
    struct coil__locals *l = t->locals;
    if (slot >= l->cap || l->v[slot].key != key || !key_live(key)) return NULL;
    return l->v[slot].value;
}

/* key's destructor, or NULL when key no longer exists. */
static void (*destructor_of(coil_key key))(void *) {
    void (*d)(void *) = NULL;
    pthread_mutex_lock(&keys_lock);
    if (key_live(key)) d = keys[key_slot(key)].destructor;
    pthread_mutex_unlock(&keys_lock);
    return d;
}

#ifndef _WIN32
void *coil__tsd_get(struct coil__tasklet *t, unsigned key, uintptr_t seq) {
    const struct coil__locals *l = t->locals;
    if (!l || key >= l->tsd_cap || l->tsd[key].seq != seq) return NULL;
    return l->tsd[key].value;
}

/* Grows t's pthread table to hold key. A new array is made before the old
 * one is looked at, and copied only then, for the same reason as in
 * locals_of: a call made inside calloc may have grown the table already. */
static int tsd_hold(struct coil__tasklet *t, unsigned key) {
    struct coil__locals *l = locals_of(t);
    if (!l) return ENOMEM;
    struct tsd_value *v = calloc((size_t)key + 1, sizeof *v);
    if (!v) return ENOMEM;
    if (key < l->tsd_cap) { /* grown meanwhile */
        free(v);
        return 0;
    }
    if (l->tsd_cap) memcpy(v, l->tsd, l->tsd_cap * sizeof *v);
    free(l->tsd);
    l->tsd = v;
    l->tsd_cap = (size_t)key + 1;
    return 0;
}

int coil__tsd_set(struct coil__tasklet *t, unsigned key, uintptr_t seq, void *value) {
    struct coil__locals *l = t->locals;
    if (!l || key >= l->tsd_cap) {
        if (!value) return 0; /* nothing to clear */
        int err = tsd_hold(t, key);
        if (err) return err;
        l = t->locals;
    }
    l->tsd[key].seq = seq;
    l->tsd[key].value = value;
    return 0;
}
#endif

/* One round over coil's keys: each value is cleared before its destructor
 * gets it. A destructor may grow the table (coil_local_set), so it is read
 * again after each call. True when a destructor was called. */
static bool coil_keys_round(struct coil__tasklet *t) {
    bool called = false;
    for (size_t i = 0; i < t->locals->cap; i++) {
        struct coil__locals *l = t->locals;
        void *value = l->v[i].value;
        coil_key key = l->v[i].key;
        if (!value) continue;
        l->v[i].value = NULL;
        void (*d)(void *) = destructor_of(key);
        if (d) {
            d(value);
            called = true;
        }
    }
    return called;
}

/* The same over pthread's keys (coil_install): glibc's destructor of each
 * key still alive, as a thread's exit would call it. */
static bool pthread_keys_round(struct coil__tasklet *t) {
    bool called = false;
#ifndef _WIN32
    for (size_t i = 0; i < t->locals->tsd_cap; i++) {
        struct coil__locals *l = t->locals;
        void *value = l->tsd[i].value;
        uintptr_t seq = l->tsd[i].seq;
        if (!value) continue;
        l->tsd[i].value = NULL;
        void (*d)(void *) = coil__tsd_destructor((unsigned)i, seq);
        if (d) {
            d(value);
            called = true;
        }
    }
#else
    (void)t;
#endif
    return called;
}

/* pthread's rounds: values set by destructors get another round. */
void coil__locals_end(struct coil__tasklet *t) {
    for (int round = 0; round < COIL_DESTRUCTOR_ROUNDS; round++) {
        bool called = coil_keys_round(t);
        called |= pthread_keys_round(t);
        if (!called) break;
    }
    free(t->locals->v);
    free(t->locals->tsd);
    free(t->locals);
    t->locals = NULL;
}

/* ---- the user pointer --------------------------------------------------- */

/* The live tasklet id of the caller's scheduler. */
static int user_tasklet(coil_id id, struct coil__tasklet **out) {
    struct coil__tasklet *self = coil__self();
    if (!self) return -EPERM;
    struct coil__sched *s = self->sched;
    if (s->group) {
        struct coil__sched *owner = coil__sched_of(s, id);
        if (!owner) return -ESRCH;
        if (owner != s) return -EXDEV;
    }
    *out = coil__tasklet_get(s, id);
    return *out ? 0 : -ESRCH;
}

int coil_set_user(coil_id id, void *user) {
    struct coil__tasklet *t;
    int err = user_tasklet(id, &t);
    if (err) return err;
    t->user = user;
    return 0;
}

int coil_get_user(coil_id id, void **out) {
    if (!out) return -EINVAL;
    struct coil__tasklet *t;
    int err = user_tasklet(id, &t);
    if (err) return err;
    *out = t->user;
    return 0;
}

void *coil_user(void) {
    struct coil__tasklet *t = coil__self();
    return t ? t->user : NULL;
}
