/*
 * Tasklet stacks, on every platform: the layout (a guard below the stack;
 * the tasklet record apart, from the scheduler's chunks, coil__record_get)
 * and the pool that
 * makes spawn fast. Mapping and unmapping a stack, with its guard, is the
 * platform's (coil__stack_map: src/unix/stack.c, src/win/stack.c).
 */
#include "internal.h"

#include <string.h>

#if COIL_HAVE_VALGRIND_H
#include <valgrind/valgrind.h>
#else
#define VALGRIND_STACK_REGISTER(lo, hi) 0u
#define VALGRIND_STACK_DEREGISTER(id)   ((void)(id))
#endif
#if COIL_ASAN
#include <sanitizer/asan_interface.h>
#endif

/* A record for a stack whose fields the pool or the mapping gave it. */
static struct coil__tasklet *record_init(struct coil__tasklet *t, char *map, size_t map_len,
                                         size_t stack_size, unsigned vg_stack_id) {
    memset(t, 0, sizeof *t);
    t->map = map;
    t->map_len = map_len;
    t->stack_size = stack_size;
    t->vg_stack_id = vg_stack_id;
    return t;
}

struct coil__tasklet *coil__stack_get(struct coil__sched *s, size_t stack_size, int *err_out) {
    if (stack_size == COIL_STACK_DEFAULT && !coil__slist_empty(&s->pool.q)) {
        struct coil__tasklet *t =
            coil__container_of(coil__slist_pop_front(&s->pool.q), struct coil__tasklet, runq);
        s->pool.len--;
        return record_init(t, t->map, t->map_len, stack_size, t->vg_stack_id);
    }
    struct coil__tasklet *t = coil__record_get(s);
    if (!t) {
        *err_out = -ENOMEM;
        return NULL;
    }
    size_t map_len = stack_size + COIL__GUARD_SIZE;
    char *map = coil__stack_map(s, map_len, err_out);
    if (!map) {
        coil__record_put(s, t);
        return NULL;
    }
    return record_init(t, map, map_len, stack_size,
                       VALGRIND_STACK_REGISTER(map + COIL__GUARD_SIZE, map + map_len));
}

static void unmap(struct coil__sched *s, struct coil__tasklet *t) {
    VALGRIND_STACK_DEREGISTER(t->vg_stack_id);
    coil__stack_unmap(t->map, t->map_len);
    coil__record_put(s, t);
}

void coil__stack_put(struct coil__sched *s, struct coil__tasklet *t) {
#if COIL_ASAN
    /* Frames of the finished tasklet leave poisoned redzones in the shadow
     * memory; the next tasklet on this stack must not inherit them. */
    __asan_unpoison_memory_region(coil__stack_lo(t), t->stack_size);
#endif
#if COIL_TSAN
    /* Its fiber ends with it (the next spawn on this stack makes a new one).
     * Never the running fiber: a finished tasklet's stack is released by the
     * context that runs after it (coil__after_switch). */
    __tsan_destroy_fiber(t->tsan_fiber);
    t->tsan_fiber = NULL;
#endif
    if (t->stack_size == COIL_STACK_DEFAULT && s->pool.len < COIL__STACK_POOL_MAX) {
        coil__slist_push_front(&s->pool.q, &t->runq);
        s->pool.len++;
        return;
    }
    unmap(s, t);
}

void coil__stack_pool_drain(struct coil__sched *s) {
    struct coil__slink *l;
    while ((l = coil__slist_pop_front(&s->pool.q)) != NULL)
        unmap(s, coil__container_of(l, struct coil__tasklet, runq));
    s->pool.len = 0;
}
