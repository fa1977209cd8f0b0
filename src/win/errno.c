/*
 * Winsock and Win32 error codes as errno values: the one table every Windows
 * source maps through, so that a call gives the error it gives on Linux
 * (a refused connect is -ECONNREFUSED whichever API reported it: connect's
 * WSAECONNREFUSED, or ConnectEx's completion status, which arrives as
 * ERROR_CONNECTION_REFUSED).
 */
#include "internal.h"

static const struct {
    DWORD code;
    int err;
} table[] = {
    /* Winsock */
    {WSAEINTR, EINTR},
    {WSAEBADF, EBADF},
    {WSAEACCES, EACCES},
    {WSAEFAULT, EFAULT},
    {WSAEINVAL, EINVAL},
    {WSAEMFILE, EMFILE},
    {WSAEWOULDBLOCK, EAGAIN},
    {WSAEINPROGRESS, EINPROGRESS},
    {WSAEALREADY, EALREADY},
    {WSAENOTSOCK, EBADF}, /* every coil fd is a socket: not one means closed */
    {WSAEDESTADDRREQ, EDESTADDRREQ},
    {WSAEMSGSIZE, EMSGSIZE},
    {WSAEPROTOTYPE, EPROTOTYPE},
    {WSAENOPROTOOPT, ENOPROTOOPT},
    {WSAEPROTONOSUPPORT, EPROTONOSUPPORT},
    {WSAESOCKTNOSUPPORT, EPROTONOSUPPORT},
    {WSAEOPNOTSUPP, EOPNOTSUPP},
    {WSAEPFNOSUPPORT, EAFNOSUPPORT},
    {WSAEAFNOSUPPORT, EAFNOSUPPORT},
    {WSAEADDRINUSE, EADDRINUSE},
    {WSAEADDRNOTAVAIL, EADDRNOTAVAIL},
    {WSAENETDOWN, ENETDOWN},
    {WSAENETUNREACH, ENETUNREACH},
    {WSAENETRESET, ENETRESET},
    {WSAECONNABORTED, ECONNABORTED},
    {WSAECONNRESET, ECONNRESET},
    {WSAENOBUFS, ENOBUFS},
    {WSAEISCONN, EISCONN},
    {WSAENOTCONN, ENOTCONN},
    {WSAESHUTDOWN, EPIPE}, /* sending after shutdown(SD_SEND): Linux says EPIPE
                            * (a receive after SD_RECEIVE: see below) */
    /* The peer ended a message-oriented connection gracefully. Not a reset
     * (ECONNRESET would say data may be lost): a send after it is Linux's
     * send after the peer's shutdown, EPIPE, like ERROR_GRACEFUL_DISCONNECT,
     * its NTSTATUS twin below; a receive sees end of file (see below). */
    {WSAEDISCON, EPIPE},
    {WSAETIMEDOUT, ETIMEDOUT},
    {WSAECONNREFUSED, ECONNREFUSED},
    {WSAEHOSTDOWN, EHOSTUNREACH},
    {WSAEHOSTUNREACH, EHOSTUNREACH},
    {WSA_OPERATION_ABORTED, ECANCELED},
    {WSA_NOT_ENOUGH_MEMORY, ENOMEM},
    {WSA_INVALID_HANDLE, EBADF},
    {WSA_INVALID_PARAMETER, EINVAL},
    {WSANOTINITIALISED, EPERM},
    /* Win32 codes that overlapped socket I/O reports (an NTSTATUS through
     * RtlNtStatusToDosError) */
    {ERROR_INVALID_HANDLE, EBADF},
    {ERROR_NOT_ENOUGH_MEMORY, ENOMEM},
    {ERROR_OUTOFMEMORY, ENOMEM},
    /* Out of nonpaged pool or of the process's quota for it, mostly: what
     * Linux says when socket buffers run out. */
    {ERROR_NO_SYSTEM_RESOURCES, ENOBUFS},
    {ERROR_NOT_ENOUGH_QUOTA, ENOBUFS},
    {ERROR_INVALID_PARAMETER, EINVAL},
    {ERROR_NOT_SUPPORTED, ENOTSUP},
    {ERROR_OPERATION_ABORTED, ECANCELED},
    /* STATUS_BUFFER_OVERFLOW: a datagram larger than the buffer. A receive
     * never gets here (iocp.c's finish returns the truncated length, as
     * Linux does); anything else that sees it was given too small a buffer. */
    {ERROR_MORE_DATA, EMSGSIZE},
    {ERROR_NETNAME_DELETED, ECONNRESET},
    {ERROR_CONNECTION_REFUSED, ECONNREFUSED},
    {ERROR_CONNECTION_ABORTED, ECONNABORTED},
    {ERROR_PORT_UNREACHABLE, ECONNREFUSED},
    {ERROR_NETWORK_UNREACHABLE, ENETUNREACH},
    {ERROR_HOST_UNREACHABLE, EHOSTUNREACH},
    {ERROR_PROTOCOL_UNREACHABLE, ENETUNREACH},
    {ERROR_SEM_TIMEOUT, ETIMEDOUT},
    {ERROR_BROKEN_PIPE, EPIPE},
    {ERROR_NO_DATA, EPIPE},
    {ERROR_GRACEFUL_DISCONNECT, EPIPE},
    {ERROR_ADDRESS_ALREADY_ASSOCIATED, EADDRINUSE},
    {ERROR_CONNECTION_ACTIVE, EISCONN},
    {ERROR_NOT_CONNECTED, ENOTCONN},
    {ERROR_TOO_MANY_OPEN_FILES, EMFILE},
    {ERROR_ACCESS_DENIED, EACCES},
};

int coil__win_errno(DWORD code) {
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (table[i].code == code) return -table[i].err;
    return -EIO; /* unknown: an error still, never a count */
}

/* A receive's error: end of file (0) where Linux's recv returns 0, that is
 * after shutdown(SHUT_RD) (WSAESHUTDOWN) and after the peer's graceful end of
 * a message-oriented connection (WSAEDISCON, ERROR_GRACEFUL_DISCONNECT);
 * anything else as the table says. */
int coil__win_recv_errno(DWORD code) {
    switch (code) {
    case WSAESHUTDOWN:
    case WSAEDISCON:
    case ERROR_GRACEFUL_DISCONNECT: return 0;
    default: return coil__win_errno(code);
    }
}
