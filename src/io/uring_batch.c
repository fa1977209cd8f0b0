/*
 * The io_uring backend's adaptive batching of blocking waits: the policy
 * (how many completions to ask for); src/io/uring.c makes the waits.
 */
#include "uring_batch.h"

#include <stdlib.h>
#include <string.h>

#define BATCH_MAX       64            /* the most completions one wait asks for */
#define BATCH_KEEP      8             /* a minimum wait that ended with 8 or more keeps its ask */
#define BATCH_SHARE     3             /* an ask is a third of the active tasklets at most */
#define ACTIVE_EPOCH_NS (1000 * 1000) /* the shortest epoch of counting active tasklets */
#define BATCH_WAIT_US   200           /* the default longest wait for a batch; COIL_BATCH_WAIT_US */

/*
 * Blocking waits are batched. A loaded server that wakes for every
 * completion pays one io_uring_enter, and often a sleep and a wake-up, per
 * message; asking the kernel for several completions, but never to hold one
 * back longer than wait_us once one has come (the minimum wait of
 * IORING_FEAT_MIN_TIMEOUT, 6.12), pays them once per batch. How many to ask
 * for adapts, as network cards moderate their interrupts:
 *  - more came than were asked for: one more, or twice as many once the ask
 *    is BATCH_KEEP or more (big batches are where the savings are: a run of
 *    one-more steps spent most of its time on small asks);
 *  - the minimum wait ran out with fewer than BATCH_KEEP: what came (light
 *    load; a lone ping-pong client never brings more than one, so nothing
 *    of it is held back but the first wait after load stops);
 *  - never more than a third of the tasklets that had an operation complete
 *    in the last epoch (ACTIVE_EPOCH_NS or more: epochs end at blocking
 *    waits, on the round's clock reading), and at least one. A few clients
 *    that each wait for their answer bring back every answer before they
 *    send again: an ask for all of them holds the first until the last
 *    comes, and clients and server go in lock-step (4 echo connections: a
 *    third less rate and 46% more CPU per message before this cap; 12% more
 *    CPU with a cap of one half).
 * A completion held back delays only its own tasklet (by at most
 * wait_us): data a send completed is already on its way. Kernels
 * without the feature, Valgrind, and COIL_BATCH_WAIT_US=0 wait for one
 * completion as before.
 */
/* A third of the last epoch's active tasklets, at least one. */
unsigned coil__ur_batch_cap(const struct coil__ur_batch *b) {
    unsigned cap = b->active_last / BATCH_SHARE;
    return cap ? cap : 1;
}

void coil__ur_batch_adapt(struct coil__ur_batch *b, unsigned want, unsigned got) {
    if (got > want) {
        /* More came than were asked for: ask for more, twice as many at a
         * time once batches are big enough to be worth holding. The step is
         * from what was asked (a plain wait asks for one, a wait can ask for
         * less than the ask when less is in flight), never down. */
        unsigned next = want < BATCH_KEEP ? want + 1 : want * 2;
        if (next > BATCH_MAX) next = BATCH_MAX;
        if (next > b->ask) b->ask = next;
    } else if (got < want && got < BATCH_KEEP) {
        /* The minimum wait ran out with few: the load is light. A wait
         * that ran out with many keeps its ask: it was a full batch. */
        b->ask = got ? got : 1;
    }
    if (b->ask > coil__ur_batch_cap(b)) b->ask = coil__ur_batch_cap(b);
}

/* Starts a new epoch of counting active tasklets when the last has lasted
 * ACTIVE_EPOCH_NS (now is the round's reading: no clock read of its own). Called at
 * blocking waits only: an epoch can last longer (a busy stretch, an idle
 * wait), which errs toward a higher cap. */
void coil__ur_batch_roll(struct coil__ur_batch *b, int64_t now) {
    if (now - b->epoch_start < ACTIVE_EPOCH_NS) return;
    b->active_last = b->active;
    b->active = 0;
    if (++b->epoch == 0) { /* after 2^32 epochs: slots of epoch 1 must not look current */
        b->epoch = 1;
        if (b->set) memset(b->set, 0, b->set_cap * sizeof *b->set);
    }
    b->epoch_start = now;
    if (b->ask > coil__ur_batch_cap(b)) b->ask = coil__ur_batch_cap(b);
}

void coil__ur_batch_init(struct coil__ur_batch *b) {
    b->ask = 1;
    b->epoch = 1; /* a slot of epoch 0 is empty */
    b->wait_us = BATCH_WAIT_US;
    const char *bw = getenv("COIL_BATCH_WAIT_US");
    if (bw && *bw >= '0' && *bw <= '9') { /* digits only: no sign, no space */
        char *end;
        unsigned long v = strtoul(bw, &end, 10);
        if (*end == '\0' && v <= 1000000) b->wait_us = (unsigned)v;
    }
}

void coil__ur_batch_fini(struct coil__ur_batch *b) {
    free(b->set);
    b->set = NULL;
    b->set_cap = 0;
}

bool coil__ur_batch_grow(struct coil__ur_batch *b) {
    size_t cap = b->set_cap ? b->set_cap * 2 : 64;
    struct coil__ur_active *set = calloc(cap, sizeof *set);
    if (!set) return false;
    for (size_t j = 0; j < b->set_cap; j++) {
        struct coil__ur_active a = b->set[j];
        if (a.epoch != b->epoch) continue;
        uint64_t h = (uint64_t)((uintptr_t)a.t >> 6) * 0x9e3779b97f4a7c15u;
        size_t i = (size_t)(h >> 32) & (cap - 1);
        while (set[i].epoch == b->epoch)
            i = (i + 1) & (cap - 1);
        set[i] = a;
    }
    free(b->set);
    b->set = set;
    b->set_cap = cap;
    return true;
}

void coil__ur_batch_describe(const struct coil__ur_batch *b, bool min_timeout, FILE *out) {
    if (!min_timeout)
        fprintf(out, "  io_uring: waits not batched (no IORING_FEAT_MIN_TIMEOUT: Linux < 6.12)\n");
    else if (!b->wait_us)
        fprintf(out, "  io_uring: waits not batched (COIL_BATCH_WAIT_US=0)\n");
    else
        fprintf(out,
                "  io_uring: a wait asks for %u completion%s (at most %u now: %d, or a third of "
                "the %u tasklet%s active in the last epoch), none held back over %u us\n",
                b->ask, b->ask == 1 ? "" : "s", coil__ur_batch_cap(b), BATCH_MAX, b->active_last,
                b->active_last == 1 ? "" : "s", b->wait_us);
}
