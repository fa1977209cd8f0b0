/*
 * Fault injection (a test-only build: cmake -DCOIL_FAULT_INJECTION=ON; never
 * in a release build, where this header is not even included).
 *
 * Every call coil makes of the functions below goes through a twin that may
 * fail it instead: the environment variable COIL_FAULT=KIND:N:ERROR makes
 * the Nth call (counted from 1, across the process's threads) of KIND fail
 * with ERROR, an errno name (ENOMEM) or number, the way the real call fails
 * (-1 and errno, NULL, MAP_FAILED, the error returned, or -ERROR for
 * liburing's calls). Each injection appends a line to the file
 * COIL_FAULT_LOG names (if set): "fault KIND N ERROR FILE:LINE", the call
 * site. Without COIL_FAULT nothing fails; the twins only count.
 *
 * The kinds (coil__fault_kind below): the allocator (malloc, calloc and
 * realloc: one kind), the system calls coil makes for stacks, fds, threads,
 * rings and child processes (pipe2, open, vfork), and "completion": the result of a data operation
 * (receive, send, read, write, accept, connect) as a backend hands it to the waiting tasklet,
 * turned into -ERROR, or, for ERROR "short", a transfer of half the bytes (at least one);
 * and "cqe" (io_uring only): an SQE coil prepares (an operation, a multishot accept, a
 * wake-up poll, a MSG_RING) is replaced by a NOP whose completion the backend reads as
 * -ERROR, as if the kernel had refused the request (src/io/uring.c, set_data).
 * tests/fault/sweep.c sweeps them.
 *
 * The twins are macros over the real names, so this header must come after
 * every system header that declares them: it includes those itself first,
 * and internal.h includes it last.
 */
#ifndef COIL_FAULT_H
#define COIL_FAULT_H

#include <fcntl.h>
#include <liburing.h>
#include <pthread.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

enum coil__fault_kind {
    COIL__FAULT_MALLOC,
    COIL__FAULT_MMAP,
    COIL__FAULT_MPROTECT,
    COIL__FAULT_MADVISE,
    COIL__FAULT_SOCKET,
    COIL__FAULT_ACCEPT,
    COIL__FAULT_EVENTFD,
    COIL__FAULT_EPOLL_CREATE,
    COIL__FAULT_EPOLL_CTL,
    COIL__FAULT_THREAD,
    COIL__FAULT_URING_INIT,
    COIL__FAULT_URING_SUBMIT,
    COIL__FAULT_URING_SQE,
    COIL__FAULT_COMPLETION,
    COIL__FAULT_PIPE,
    COIL__FAULT_OPEN,
    COIL__FAULT_VFORK,
    COIL__FAULT_CQE,
    COIL__FAULT_KINDS
};

/* 0, or the error that this (the next) call of kind must fail with; a
 * failure is logged with its site. COIL__FAULT_SHORT: a short transfer. */
#define COIL__FAULT_SHORT (-1)
int coil__fault(enum coil__fault_kind kind, const char *file, int line);

void *coil__fault_malloc(const char *file, int line, size_t n);
void *coil__fault_calloc(const char *file, int line, size_t n, size_t size);
void *coil__fault_realloc(const char *file, int line, void *p, size_t n);
void *coil__fault_mmap(const char *file, int line, void *addr, size_t len, int prot, int flags,
                       int fd, off_t off);
int coil__fault_mprotect(const char *file, int line, void *addr, size_t len, int prot);
int coil__fault_madvise(const char *file, int line, void *addr, size_t len, int advice);
int coil__fault_socket(const char *file, int line, int domain, int type, int protocol);
int coil__fault_accept4(const char *file, int line, int fd, struct sockaddr *addr,
                        socklen_t *addrlen, int flags);
int coil__fault_eventfd(const char *file, int line, unsigned int initval, int flags);
int coil__fault_epoll_create1(const char *file, int line, int flags);
int coil__fault_epoll_ctl(const char *file, int line, int epfd, int op, int fd,
                          struct epoll_event *ev);
int coil__fault_pthread_create(const char *file, int line, pthread_t *th,
                               const pthread_attr_t *attr, void *(*fn)(void *), void *arg);
int coil__fault_io_uring_queue_init_params(const char *file, int line, unsigned entries,
                                           struct io_uring *ring, struct io_uring_params *p);
int coil__fault_io_uring_queue_init(const char *file, int line, unsigned entries,
                                    struct io_uring *ring, unsigned flags);
int coil__fault_io_uring_submit(const char *file, int line, struct io_uring *ring);
int coil__fault_io_uring_submit_and_wait_timeout(const char *file, int line, struct io_uring *ring,
                                                 struct io_uring_cqe **cqe, unsigned wait_nr,
                                                 struct __kernel_timespec *ts, sigset_t *sigmask);
struct io_uring_sqe *coil__fault_io_uring_get_sqe(const char *file, int line,
                                                  struct io_uring *ring);
int coil__fault_pipe2(const char *file, int line, int fds[2], int flags);
int coil__fault_open(const char *file, int line, const char *path, int flags, ...);
/* Nonzero (errno set) when this call of kind must fail: for vfork, which
 * cannot be called from a function that returns to the child. */
int coil__fault_errno(enum coil__fault_kind kind, const char *file, int line);
int coil__fault_io_uring_submit_and_get_events(const char *file, int line, struct io_uring *ring);
int coil__fault_io_uring_enter2(const char *file, int line, unsigned fd, unsigned to_submit,
                                unsigned min_complete, unsigned flags, sigset_t *sig, size_t sz);

#define malloc(...)         coil__fault_malloc(__FILE__, __LINE__, __VA_ARGS__)
#define calloc(...)         coil__fault_calloc(__FILE__, __LINE__, __VA_ARGS__)
#define realloc(...)        coil__fault_realloc(__FILE__, __LINE__, __VA_ARGS__)
#define mmap(...)           coil__fault_mmap(__FILE__, __LINE__, __VA_ARGS__)
#define mprotect(...)       coil__fault_mprotect(__FILE__, __LINE__, __VA_ARGS__)
#define madvise(...)        coil__fault_madvise(__FILE__, __LINE__, __VA_ARGS__)
#define socket(...)         coil__fault_socket(__FILE__, __LINE__, __VA_ARGS__)
#define accept4(...)        coil__fault_accept4(__FILE__, __LINE__, __VA_ARGS__)
#define eventfd(...)        coil__fault_eventfd(__FILE__, __LINE__, __VA_ARGS__)
#define epoll_create1(...)  coil__fault_epoll_create1(__FILE__, __LINE__, __VA_ARGS__)
#define epoll_ctl(...)      coil__fault_epoll_ctl(__FILE__, __LINE__, __VA_ARGS__)
#define pthread_create(...) coil__fault_pthread_create(__FILE__, __LINE__, __VA_ARGS__)
#define io_uring_queue_init_params(...)                                                            \
    coil__fault_io_uring_queue_init_params(__FILE__, __LINE__, __VA_ARGS__)
#define io_uring_queue_init(...) coil__fault_io_uring_queue_init(__FILE__, __LINE__, __VA_ARGS__)
#define io_uring_submit(...)     coil__fault_io_uring_submit(__FILE__, __LINE__, __VA_ARGS__)
#define io_uring_submit_and_wait_timeout(...)                                                      \
    coil__fault_io_uring_submit_and_wait_timeout(__FILE__, __LINE__, __VA_ARGS__)
#define io_uring_get_sqe(...) coil__fault_io_uring_get_sqe(__FILE__, __LINE__, __VA_ARGS__)
#define pipe2(...)            coil__fault_pipe2(__FILE__, __LINE__, __VA_ARGS__)
#define open(...)             coil__fault_open(__FILE__, __LINE__, __VA_ARGS__)
#define vfork()               (coil__fault_errno(COIL__FAULT_VFORK, __FILE__, __LINE__) ? -1 : vfork())
#define io_uring_submit_and_get_events(...)                                                        \
    coil__fault_io_uring_submit_and_get_events(__FILE__, __LINE__, __VA_ARGS__)
#define io_uring_enter2(...) coil__fault_io_uring_enter2(__FILE__, __LINE__, __VA_ARGS__)

#endif
