/*
 * Per-fd state of a scheduler: the operations in flight on each fd (so that
 * coil_close can cancel them all and wake their tasklets at once) and the
 * default timeout. Indexed by fd number, grown on demand. Completions never
 * look anything up here: they find their operation by pointer (invariant 2).
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

struct coil__fd *coil__fd_get(struct coil__sched *s, int fd) {
    if (fd < 0) return NULL;
    if ((size_t)fd >= s->fds.len) {
        size_t len = s->fds.len ? s->fds.len : 64;
        while (len <= (size_t)fd)
            len *= 2;
        struct coil__fd *v = realloc(s->fds.v, len * sizeof *v);
        if (!v) return NULL;
        for (size_t i = s->fds.len; i < len; i++)
            v[i] = (struct coil__fd){.timeout = -1};
        s->fds.v = v;
        s->fds.len = len;
    }
    return &s->fds.v[fd];
}

void coil__fd_forget(struct coil__sched *s, int fd) {
    if (fd < 0 || (size_t)fd >= s->fds.len) return;
    COIL_ASSERT(!s->fds.v[fd].ops, "a closed fd has no operations in flight");
    s->fds.v[fd] = (struct coil__fd){.timeout = -1};
}

void coil__fd_table_free(struct coil__sched *s) {
    free(s->fds.v);
    s->fds.v = NULL;
    s->fds.len = 0;
}
