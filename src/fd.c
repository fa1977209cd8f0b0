/*
 * Per-fd state of a scheduler: the operations in flight on each fd (so that
 * coil_close can cancel them all and wake their tasklets at once) and the
 * default timeout. Indexed by fd number, grown on demand. Completions never
 * look anything up here: they find their operation by pointer (invariant 2).
 */
#include "internal.h"

#include <stdlib.h>
#include <string.h>
#ifndef _WIN32
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <netinet/in.h>
#endif

#ifdef _WIN32
/* Windows: the number is a SOCKET handle value. Handles are multiples of 4
 * below 2^24 in practice; the cap keeps a bogus number from growing the
 * table to gigabytes, as RLIMIT_NOFILE does on Linux. */
#define FD_LIMIT (1 << 24)
#endif

struct coil__fd *coil__fd_grow(struct coil__sched *s, int fd, int *err) {
    *err = -EBADF;
    if (fd < 0) return NULL;
        /* An fd at or above the limit cannot be open: do not grow the table for
         * a bogus number (1 << 30 would cost gigabytes). The limit is read
         * again here because the program may have raised it. */
#ifdef _WIN32
    if (fd >= FD_LIMIT) return NULL;
#else
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
        (rlim_t)fd >= rl.rlim_cur)
        return NULL;
#endif
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
}

#ifdef _WIN32
enum coil__fd_kind coil__fd_learn_kind(struct coil__fd *f, int fd) {
    int type;
    int len = sizeof type;
    if (getsockopt((SOCKET)(uintptr_t)fd, SOL_SOCKET, SO_TYPE, (char *)&type, &len) == 0) {
        f->kind = type == SOCK_STREAM ? COIL__FD_STREAM : COIL__FD_SOCKET;
        f->tcp = type == SOCK_STREAM; /* Winsock's streams are TCP */
    }
    return (enum coil__fd_kind)f->kind;
}
#else
enum coil__fd_kind coil__fd_learn_kind(struct coil__fd *f, int fd) {
    int saved = errno;
    int type;
    socklen_t len = sizeof type;
    struct stat st;
    if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0) {
        f->kind = type == SOCK_STREAM ? COIL__FD_STREAM : COIL__FD_SOCKET;
        int proto = 0;
        len = sizeof proto;
        f->tcp = type == SOCK_STREAM &&
                 getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) == 0 && proto == IPPROTO_TCP;
    } else if (errno == ENOTSOCK && fstat(fd, &st) == 0)
        f->kind = S_ISREG(st.st_mode) || S_ISBLK(st.st_mode) ? COIL__FD_FILE : COIL__FD_OTHER;
    errno = saved;
    return (enum coil__fd_kind)f->kind;
}
#endif
