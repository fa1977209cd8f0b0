/*
 * Deadlines: a binary min-heap of the timers embedded in parked tasklets,
 * disarmed lazily (internal.h says how and why). Arming is O(1) when the
 * timer's slot is still there with an earlier key (a server's "now + idle
 * timeout" pattern), else O(log n); disarming is O(1); a stale slot costs one
 * O(log n) drop or re-key when its key comes due (coil__timers_expire).
 */
#include "internal.h"

#include <stdlib.h>

int coil__timers_reserve(struct coil__timers *ts, size_t n) {
    if (n <= ts->cap) return 0;
    size_t cap = ts->cap ? ts->cap : 64;
    while (cap < n)
        cap *= 2;
    struct coil__timer_slot *heap = realloc(ts->heap, cap * sizeof *heap);
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

static void place(struct coil__timers *ts, size_t i, struct coil__timer_slot e) {
    ts->heap[i] = e;
    e.tm->index = i;
}

static void sift_up(struct coil__timers *ts, size_t i, struct coil__timer_slot e) {
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (ts->heap[parent].deadline <= e.deadline) break;
        place(ts, i, ts->heap[parent]);
        i = parent;
    }
    place(ts, i, e);
}

static void sift_down(struct coil__timers *ts, size_t i, struct coil__timer_slot e) {
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= ts->len) break;
        if (child + 1 < ts->len && ts->heap[child + 1].deadline < ts->heap[child].deadline) child++;
        if (e.deadline <= ts->heap[child].deadline) break;
        place(ts, i, ts->heap[child]);
        i = child;
    }
    place(ts, i, e);
}

static void remove_at(struct coil__timers *ts, size_t i) {
    ts->heap[i].tm->index = COIL__TIMER_IDLE;
    struct coil__timer_slot last = ts->heap[--ts->len];
    if (i == ts->len) return;
    /* The last slot takes the hole and moves whichever way it must. */
    if (i > 0 && last.deadline < ts->heap[(i - 1) / 2].deadline)
        sift_up(ts, i, last);
    else
        sift_down(ts, i, last);
}

void coil__timer_arm(struct coil__timers *ts, struct coil__timer *tm, int64_t deadline) {
    COIL_ASSERT(!tm->armed, "a timer is armed twice");
    tm->armed = true;
    tm->deadline = deadline;
    ts->armed++;
    size_t i = tm->index;
    if (i == COIL__TIMER_IDLE) {
        COIL_ASSERT(ts->len < ts->cap, "timer heap reserved one slot per tasklet");
        sift_up(ts, ts->len++, (struct coil__timer_slot){deadline, tm});
    } else if (deadline < ts->heap[i].deadline) {
        sift_up(ts, i, (struct coil__timer_slot){deadline, tm}); /* earlier: move it up now */
    }
    /* else the slot keeps its earlier key until it comes due */
}

void coil__timer_remove(struct coil__timers *ts, struct coil__timer *tm) {
    coil__timer_disarm(ts, tm);
    if (tm->index == COIL__TIMER_IDLE) return;
    COIL_ASSERT(tm->index < ts->len && ts->heap[tm->index].tm == tm,
                "timer heap index is consistent");
    remove_at(ts, tm->index);
}

struct coil__timer *coil__timers_expire(struct coil__timers *ts, int64_t now) {
    while (ts->len && ts->heap[0].deadline <= now) {
        struct coil__timer *tm = ts->heap[0].tm;
        if (!tm->armed)
            remove_at(ts, 0);
        else if (tm->deadline > ts->heap[0].deadline)
            sift_down(ts, 0, (struct coil__timer_slot){tm->deadline, tm}); /* re-keyed */
        else
            return tm;
    }
    return NULL;
}
