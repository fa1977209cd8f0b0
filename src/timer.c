/*
 * Deadlines: a binary min-heap of the timers embedded in parked tasklets.
 * Arming, disarming and expiring are O(log n); the scheduler reads the
 * earliest deadline in O(1) to know how long it may block.
 */
#include "internal.h"

#include <stdlib.h>

int coil__timers_reserve(struct coil__timers *ts, size_t n) {
    if (n <= ts->cap) return 0;
    size_t cap = ts->cap ? ts->cap : 64;
    while (cap < n)
        cap *= 2;
    struct coil__timer **heap = realloc(ts->heap, cap * sizeof *heap);
    if (!heap) return -ENOMEM;
    ts->heap = heap;
    ts->cap = cap;
    return 0;
}

void coil__timers_free(struct coil__timers *ts) {
    free(ts->heap);
    ts->heap = NULL;
    ts->len = ts->cap = 0;
}

static void place(struct coil__timers *ts, size_t i, struct coil__timer *tm) {
    ts->heap[i] = tm;
    tm->index = i;
}

static void sift_up(struct coil__timers *ts, size_t i, struct coil__timer *tm) {
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (ts->heap[parent]->deadline <= tm->deadline) break;
        place(ts, i, ts->heap[parent]);
        i = parent;
    }
    place(ts, i, tm);
}

static void sift_down(struct coil__timers *ts, size_t i, struct coil__timer *tm) {
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= ts->len) break;
        if (child + 1 < ts->len && ts->heap[child + 1]->deadline < ts->heap[child]->deadline)
            child++;
        if (tm->deadline <= ts->heap[child]->deadline) break;
        place(ts, i, ts->heap[child]);
        i = child;
    }
    place(ts, i, tm);
}

void coil__timer_arm(struct coil__timers *ts, struct coil__timer *tm, int64_t deadline) {
    COIL_ASSERT(tm->index == COIL__TIMER_IDLE, "a timer is armed twice");
    COIL_ASSERT(ts->len < ts->cap, "timer heap reserved one slot per tasklet");
    tm->deadline = deadline;
    sift_up(ts, ts->len++, tm);
}

void coil__timer_disarm(struct coil__timers *ts, struct coil__timer *tm) {
    size_t i = tm->index;
    if (i == COIL__TIMER_IDLE) return;
    COIL_ASSERT(i < ts->len && ts->heap[i] == tm, "timer heap index is consistent");
    tm->index = COIL__TIMER_IDLE;
    struct coil__timer *last = ts->heap[--ts->len];
    if (last == tm) return;
    /* The last element takes the hole and moves whichever way it must. */
    if (i > 0 && last->deadline < ts->heap[(i - 1) / 2]->deadline)
        sift_up(ts, i, last);
    else
        sift_down(ts, i, last);
}
