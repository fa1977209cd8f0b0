/*
 * The io_uring backend's batching of blocking waits: how many completions a
 * wait asks the kernel for, adapted to the load (the policy is described in
 * src/io/uring_batch.c). Private to src/io/uring*.c.
 */
#ifndef COIL_URING_BATCH_H
#define COIL_URING_BATCH_H

#include "../internal.h"

/* A tasklet counted in an epoch. */
struct coil__ur_active {
    const struct coil__tasklet *t;
    uint32_t epoch;
};

struct coil__ur_batch {
    unsigned ask;     /* completions the next blocking wait asks for */
    unsigned wait_us; /* the longest a batched wait holds back a completion; 0: no batching */
    /* Tasklets that had an operation completed: in this epoch so far, and in
     * the last whole one (an epoch lasts at least ACTIVE_EPOCH_NS and ends at
     * a blocking wait). Accepts are not counted. */
    uint32_t epoch;
    unsigned active, active_last;
    int64_t epoch_start;
    /* The tasklets counted in this epoch: an open-addressing set (linear
     * probing) in which a slot of another epoch is empty, so that a new
     * epoch empties it without a pass. At most half full; set_cap is a
     * power of two, 0 until the first count. The backend's own, not a field
     * of every tasklet's record. */
    struct coil__ur_active *set;
    size_t set_cap;
};

/* Asks for one; wait_us from COIL_BATCH_WAIT_US, else the default. */
void coil__ur_batch_init(struct coil__ur_batch *b);
void coil__ur_batch_fini(struct coil__ur_batch *b);

/* Doubles the set (at least 64 slots), keeping this epoch's tasklets.
 * Returns false when out of memory (the set is unchanged). */
bool coil__ur_batch_grow(struct coil__ur_batch *b);

/* An operation of t completed: t is active in this epoch (counted once). */
static inline void coil__ur_batch_count(struct coil__ur_batch *b, const struct coil__tasklet *t) {
    if (COIL_UNLIKELY((size_t)b->active * 2 >= b->set_cap) && !coil__ur_batch_grow(b) &&
        b->active >= b->set_cap) {
        b->active++; /* no memory for the set: count it, perhaps twice */
        return;
    }
    size_t mask = b->set_cap - 1;
    uint64_t h = (uint64_t)((uintptr_t)t >> 6) * 0x9e3779b97f4a7c15u; /* records: 64-aligned */
    for (size_t i = (size_t)(h >> 32) & mask;; i = (i + 1) & mask) {
        struct coil__ur_active *a = &b->set[i];
        if (a->epoch != b->epoch) {
            *a = (struct coil__ur_active){t, b->epoch};
            b->active++;
            return;
        }
        if (a->t == t) return;
    }
}

/* The most an ask may be now. */
unsigned coil__ur_batch_cap(const struct coil__ur_batch *b);
/* Before a blocking wait at time now (the round's clock reading). */
void coil__ur_batch_roll(struct coil__ur_batch *b, int64_t now);
/* After a batched wait that asked for want completions and got got. */
void coil__ur_batch_adapt(struct coil__ur_batch *b, unsigned want, unsigned got);
/* The state of the policy for coil_dump (min_timeout: the kernel can batch). */
void coil__ur_batch_describe(const struct coil__ur_batch *b, bool min_timeout, FILE *out);

#endif /* COIL_URING_BATCH_H */
