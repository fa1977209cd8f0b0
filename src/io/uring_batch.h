/*
 * The io_uring backend's batching of blocking waits: how many completions a
 * wait asks the kernel for, adapted to the load (the policy is described in
 * src/io/uring_batch.c). Private to src/io/uring*.c.
 */
#ifndef COIL_URING_BATCH_H
#define COIL_URING_BATCH_H

#include "../internal.h"

struct coil__ur_batch {
    unsigned ask;     /* completions the next blocking wait asks for */
    unsigned wait_us; /* the longest a batched wait holds back a completion; 0: no batching */
    /* Tasklets that had an operation completed: in this epoch so far, and in
     * the last whole one (an epoch lasts at least ACTIVE_EPOCH_NS and ends at
     * a blocking wait). Accepts are not counted. */
    uint32_t epoch;
    unsigned active, active_last;
    int64_t epoch_start;
};

/* Asks for one; wait_us from COIL_BATCH_WAIT_US, else the default. */
void coil__ur_batch_init(struct coil__ur_batch *b);

/* An operation of t completed: t is active in this epoch (counted once). */
static inline void coil__ur_batch_count(struct coil__ur_batch *b, struct coil__tasklet *t) {
    if (t->io_epoch != b->epoch) {
        t->io_epoch = b->epoch;
        b->active++;
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
