/*
 * The fd API's primitives on Windows (declared in internal.h, used by
 * src/net.c), on Winsock. An fd is a SOCKET cast to int; every fd coil
 * serves is a socket.
 */
#include "internal.h"

#include <limits.h>
#include <mswsock.h>

static SOCKET sock(int fd) {
    return (SOCKET)(uintptr_t)(unsigned)fd;
}

static int wsa_error(void) {
    return coil__win_errno((DWORD)WSAGetLastError());
}

/* mingw-w64's mswsock.h has SIO_UDP_CONNRESET but not SIO_UDP_NETRESET (the
 * values are Microsoft's, from the SDK's mstcpip.h). */
#ifndef SIO_UDP_CONNRESET
#define SIO_UDP_CONNRESET _WSAIOW(IOC_VENDOR, 12)
#endif
#ifndef SIO_UDP_NETRESET
#define SIO_UDP_NETRESET _WSAIOW(IOC_VENDOR, 15)
#endif

/* coil_socket and friends are callable outside coil_run: Winsock must be
 * started by then. Started once and never cleaned up (the process's end
 * does that); each coil_run's backend holds a reference of its own. */
static INIT_ONCE wsa_once = INIT_ONCE_STATIC_INIT;
static BOOL CALLBACK wsa_start(PINIT_ONCE once, PVOID param, PVOID *ctx) {
    (void)once;
    (void)param;
    (void)ctx;
    WSADATA wsa;
    return WSAStartup(MAKEWORD(2, 2), &wsa) == 0;
}
static int startup(void) {
    return InitOnceExecuteOnce(&wsa_once, wsa_start, NULL, NULL) ? 0 : -ENOSYS;
}

int coil__sys_fd_open(int fd) {
    int type, len = sizeof type;
    if (fd < 0) return -EBADF;
    if (getsockopt(sock(fd), SOL_SOCKET, SO_TYPE, (char *)&type, &len) == 0) return 0;
    return -EBADF;
}

/* ---- fd life ------------------------------------------------------------ */

int coil__sys_socket(int domain, int type, int protocol) {
    int err = startup();
    if (err) return err;
    SOCKET sk = WSASocketW(domain, type, protocol, NULL, 0,
                           WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
    if (sk == INVALID_SOCKET) return wsa_error();
    if (sk > INT_MAX) { /* never seen: handles are small; but an fd is an int */
        closesocket(sk);
        return -EMFILE;
    }
    if (type == SOCK_DGRAM) {
        /* Windows reports an ICMP port unreachable (net unreachable: TTL
         * expired) that answered an earlier sendto to the next receive on
         * the socket, connected or not: WSAECONNRESET (WSAENETRESET). Linux
         * reports them on connected datagram sockets only; an unconnected
         * server socket would otherwise fail a recvfrom because some client
         * went away. Both off; failures ignored (SIO_UDP_NETRESET is not on
         * every Windows; under Wine the
         * host is Linux, whose unconnected sockets never report them anyway). */
        BOOL off = FALSE;
        DWORD bytes;
        WSAIoctl(sk, SIO_UDP_CONNRESET, &off, sizeof off, NULL, 0, &bytes, NULL, NULL);
        WSAIoctl(sk, SIO_UDP_NETRESET, &off, sizeof off, NULL, 0, &bytes, NULL, NULL);
    }
    return (int)sk;
}

int coil__sys_bind(int fd, const struct sockaddr *addr, socklen_t addrlen) {
    return bind(sock(fd), addr, (int)addrlen) == 0 ? 0 : wsa_error();
}

int coil__sys_listen(int fd, int backlog) {
    return listen(sock(fd), backlog) == 0 ? 0 : wsa_error();
}

int coil__sys_shutdown(int fd, int how) {
    return shutdown(sock(fd), how) == 0 ? 0 : wsa_error();
}

int coil__sys_close(int fd) {
    return closesocket(sock(fd)) == 0 ? 0 : wsa_error();
}

/* Not SO_REUSEADDR: on Windows it lets another socket steal a bound port.
 * SO_EXCLUSIVEADDRUSE is the default for servers. Windows has nothing like
 * Linux's SO_REUSEPORT (its SO_REUSEADDR lets the last socket bound take the
 * port's connections, it does not spread them): COIL_LISTEN_REUSEPORT is
 * -ENOTSUP. */
int coil__sys_listener_options(int fd, int family, bool wildcard, int flags) {
    DWORD zero = 0;
    if (flags & COIL_LISTEN_REUSEPORT) return -ENOTSUP;
    if (family == AF_INET6 && wildcard)
        setsockopt(sock(fd), IPPROTO_IPV6, IPV6_V6ONLY, (const char *)&zero, sizeof zero);
    return 0;
}

/* Windows: the number is a SOCKET handle value. Handles are multiples of 4
 * below 2^24 in practice; the cap keeps a bogus number from growing the
 * table to gigabytes, as RLIMIT_NOFILE does on Linux. */
bool coil__sys_fd_beyond_limit(int fd) {
    return fd >= (1 << 24);
}

enum coil__fd_kind coil__fd_learn_kind(struct coil__fd *f, int fd) {
    int type;
    int len = sizeof type;
    if (getsockopt(sock(fd), SOL_SOCKET, SO_TYPE, (char *)&type, &len) == 0) {
        f->kind = type == SOCK_STREAM ? COIL__FD_STREAM : COIL__FD_SOCKET;
        f->tcp = type == SOCK_STREAM; /* Winsock's streams are TCP */
    }
    return (enum coil__fd_kind)f->kind;
}

/* ---- transfers ---------------------------------------------------------- */

/* A zero-byte WSARecv on TCP would wait for data: report whether the socket
 * is open. */
ssize_t coil__sys_zero_length(int opcode, int fd, int flags) {
    (void)opcode;
    (void)flags;
    return coil__sys_fd_open(fd);
}

int coil__sys_rw_check(int fd) {
    if (coil__sys_fd_open(fd) == 0) return 0;
    if (fd < 0) return -EBADF;
    return GetFileType((HANDLE)(uintptr_t)(unsigned)fd) != FILE_TYPE_UNKNOWN ? -ENOTSUP : -EBADF;
}

/* ---- names -------------------------------------------------------------- */

static int resolve_error(int e) {
    switch (e) {
    case 0: return 0;
    case EAI_NONAME:
#if defined(EAI_NODATA) && EAI_NODATA != EAI_NONAME
    case EAI_NODATA:
#endif
        return -ENOENT;
    case EAI_AGAIN: return -EAGAIN;
    case EAI_MEMORY: return -ENOMEM;
    default: return -EINVAL;
    }
}

int coil__sys_getaddrinfo(const char *host, const char *service, const struct addrinfo *hints,
                          struct addrinfo **res) {
    int err = startup();
    if (err) return err;
    return resolve_error(getaddrinfo(host, service, hints, res));
}

/* ---- what Windows does not have ----------------------------------------- */

int coil_install(void) {
    return -ENOTSUP; /* hooking Winsock's imports is another project (see coil.h) */
}

int coil_uninstall(void) {
    return 0;
}
