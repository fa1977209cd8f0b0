/*
 * Per-fd state of a scheduler: the operations in flight on each fd (so that
 * coil_close can cancel them all and wake their tasklets at once) and the
 * default timeout. Indexed by fd number, grown on demand. Completions never
 * look anything up here: they find their operation by pointer (invariant 2).
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

struct coil__fd *coil__fd_grow(struct coil__sched *s, int fd, int *err) {
    *err = -EBADF;
    if (fd < 0) return NULL;
    /* An fd at or above the limit cannot be open: do not grow the table for
     * a bogus number (1 << 30 would cost gigabytes). */
    if (coil__sys_fd_beyond_limit(fd)) return NULL;
    size_t len = s->fds.len ? s->fds.len : 64;
    while (len <= (size_t)fd)
        len *= 2;
    struct coil__fd *v = realloc(s->fds.v, len * sizeof *v);
    if (!v) {
        *err = -ENOMEM;
        return NULL;
    }
    for (size_t i = s->fds.len; i < len; i++)
        v[i] = (struct coil__fd){.timeout = -1};
    s->fds.v = v;
    s->fds.len = len;
    return &s->fds.v[fd];
}

void *coil__fd_table_grow(void *v, size_t *len, size_t elem, int fd) {
    size_t n = *len ? *len : 64;
    while (n <= (size_t)fd)
        n *= 2;
    char *p = realloc(v, n * elem);
    if (!p) return NULL;
    memset(p + *len * elem, 0, (n - *len) * elem);
    *len = n;
    return p;
}

void coil__fd_table_free(struct coil__sched *s) {
    free(s->fds.v);
    s->fds.v = NULL;
    s->fds.len = 0;
}

void coil__fd_reset(struct coil__fd *f) {
    f->timeout = -1;
    f->gen++;
    f->kind = COIL__FD_UNKNOWN;
    f->tcp = false;
    f->opt_epoch = 0;
}
