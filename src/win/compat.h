/*
 * What the shared sources need on Windows that POSIX headers give them on
 * Linux: the msghdr/iovec pair that struct coil__op carries for datagram
 * calls (coil's own record of a call, never handed to the system), and
 * MSG_NOSIGNAL, which Windows does not need (no SIGPIPE). Included by
 * internal.h under _WIN32 only.
 */
#ifndef COIL_WIN_COMPAT_H
#define COIL_WIN_COMPAT_H

#include <winsock2.h>
#include <ws2tcpip.h>
#include <windows.h>

struct iovec {
    void *iov_base;
    size_t iov_len;
};

struct msghdr {
    void *msg_name;
    socklen_t msg_namelen;
    struct iovec *msg_iov;
    size_t msg_iovlen;
    void *msg_control;
    size_t msg_controllen;
    int msg_flags;
};

#ifndef MSG_NOSIGNAL
#define MSG_NOSIGNAL 0
#endif

/* The port every running scheduler waits on, for the signal handler. */
int coil__win_port_register(HANDLE port);
void coil__win_port_unregister(HANDLE port);
/* The page size (sysconf's, which mingw-w64 lacks). */
size_t coil__page_size(void);
/* A Winsock or Win32 error code as a negative errno (one table, src/win/errno.c). */
int coil__win_errno(DWORD err);
/* The same for a receive: 0 (end of file) where Linux's recv returns 0. */
int coil__win_recv_errno(DWORD err);

/* stdio's lock of a FILE (msvcrt's names for POSIX flockfile). */
#define flockfile   _lock_file
#define funlockfile _unlock_file

#endif /* COIL_WIN_COMPAT_H */
