/*
 * The I/O completion port backend (Windows).
 *
 * One completion port per scheduler; a socket is associated with it the
 * first time a call waits on it (a socket can be associated with one port
 * only, ever). Every operation is an overlapped Winsock call: WSARecv,
 * WSASend, WSARecvFrom, WSASendTo, and AcceptEx and ConnectEx, which Winsock
 * hands out through WSAIoctl(SIO_GET_EXTENSION_FUNCTION_POINTER).
 *
 * The OVERLAPPED lives in the operation record (struct coil__op, in op->
 * scratch), which lives in the frame of the tasklet that waits on it
 * (invariant 1); the kernel writes into it, and into the caller's buffer,
 * until the completion packet is reaped, so the tasklet stays parked until
 * then, cancelled or not: CancelIoEx only asks, and the cancelled operation
 * still delivers a packet (ERROR_OPERATION_ABORTED), which is what wakes it.
 * A packet finds its record through the OVERLAPPED pointer it carries
 * (CONTAINING_RECORD; invariant 2), never through the socket.
 *
 * Sockets get FILE_SKIP_COMPLETION_PORT_ON_SUCCESS: a call that succeeds at
 * once then queues no packet, and submit returns 1 with the result, as
 * epoll's first try does. Where the mode cannot be set, a call that succeeds
 * at once still queues a packet, and is treated as pending.
 *
 * Deadlines, kills and coil_close go through the scheduler: its timer (or
 * the kill, or the close) calls cancel, and the packet brings the error.
 */
#include "internal.h"

#include <mswsock.h>
#include <stdlib.h>
#include <string.h>
#include <winternl.h>

/* Readiness (coil_wait_fd) is the AFD driver's poll, the IOCTL under
 * WSAPoll and select, made overlapped: NtDeviceIoControlFile on the socket,
 * whose completion comes to the port like any other (ApcContext is the
 * OVERLAPPED, the IO_STATUS_BLOCK is its first two fields). Not in the SDK
 * headers; the layout and codes are those libuv and wepoll use, and Wine
 * implements (dlls/ws2_32/tests/afd.c there tests them). */
#ifndef STATUS_SUCCESS /* ntstatus.h's; winnt.h has STATUS_PENDING only */
#define STATUS_SUCCESS ((NTSTATUS)0)
#endif
#define IOCTL_AFD_POLL        0x00012024 /* FILE_DEVICE_NETWORK, function 9, METHOD_BUFFERED */
#define AFD_POLL_RECEIVE      0x0001
#define AFD_POLL_SEND         0x0004
#define AFD_POLL_DISCONNECT   0x0008 /* the peer shut its side: a read gives 0 */
#define AFD_POLL_ABORT        0x0010 /* reset */
#define AFD_POLL_LOCAL_CLOSE  0x0020 /* closed here */
#define AFD_POLL_ACCEPT       0x0080
#define AFD_POLL_CONNECT_FAIL 0x0100
struct afd_poll_info {
    LARGE_INTEGER timeout; /* INT64_MAX: none (ours are cancelled instead) */
    ULONG count;           /* 1; on completion: how many handles are ready */
    ULONG exclusive;
    struct {
        HANDLE handle;   /* the base provider's socket */
        ULONG events;    /* AFD_POLL_*: asked, then ready */
        NTSTATUS status; /* of the socket */
    } handles[1];
};

/* What the kernel owns while an op is in flight, inside op->scratch. */
struct iocp_op {
    OVERLAPPED ov;
    WSABUF buf;
    DWORD flags;      /* WSARecv/WSARecvFrom: in and out */
    INT fromlen;      /* WSARecvFrom: the sender's address length, written at completion */
    SOCKET accepted;  /* AcceptEx: the socket that becomes the connection */
    SOCKET base;      /* the base provider's socket, for cancel (see associate) */
    uint32_t pending; /* POSTED while a packet is owed: checked when one arrives */
    union {
        /* AcceptEx: the local and remote addresses, each with 16 bytes spare
         * (its documented minimum). */
        char addrs[2 * (sizeof(SOCKADDR_STORAGE) + 16)];
        struct afd_poll_info poll; /* COIL__OP_POLL: in and out */
    };
};
_Static_assert(sizeof(struct iocp_op) <= COIL__OP_SCRATCH, "the OVERLAPPED fits in the op");
#define POSTED      0x10c9u

#define MAX_ENTRIES 128

/* What the backend keeps of a socket (the scheduler's struct coil__fd keeps
 * what the fd API needs). Forgotten in iocp_fd_closing. */
struct iocp_fd {
    bool associated; /* with this scheduler's port */
    /* FILE_SKIP_COMPLETION_PORT_ON_SUCCESS is set, so that an operation that
     * succeeds at once queues no completion packet. */
    bool skip_on_success;
    /* The base provider's socket (SIO_BASE_HANDLE), for CancelIoEx under a
     * layered provider; the socket itself without one. */
    uintptr_t base_socket;
};

struct iocp_backend {
    HANDLE port;
    struct iocp_fd *fds; /* by socket handle value */
    size_t nfds;
    size_t inflight; /* packets owed to ops */
    /* dequeue's batch (4 KiB: kept off the tasklet stack that
     * truncated_at_once drains from). dequeue is never re-entered: reap only
     * marks ops complete. */
    OVERLAPPED_ENTRY entries[MAX_ENTRIES];
};

static struct iocp_op *iop_of(struct coil__op *op) {
    return (struct iocp_op *)(void *)op->scratch;
}

/* fd's entry, growing the table as needed; NULL when out of memory. */
static struct iocp_fd *iocp_fd(struct iocp_backend *b, int fd) {
    if (COIL_LIKELY((size_t)fd < b->nfds)) return &b->fds[fd];
    struct iocp_fd *v = coil__fd_table_grow(b->fds, &b->nfds, sizeof *v, fd);
    if (!v) return NULL;
    b->fds = v;
    return &v[fd];
}

static SOCKET sock_of(const struct coil__op *op) {
    return (SOCKET)(uintptr_t)(unsigned)op->fd;
}

/* ---- Winsock's extension functions --------------------------------------- */

static LPFN_ACCEPTEX accept_ex;
static LPFN_CONNECTEX connect_ex;
static LPFN_GETACCEPTEXSOCKADDRS get_accept_ex_sockaddrs;

/* Asks the socket's provider for an extension function, once per process (the
 * providers of TCP over IPv4 and IPv6 hand out the same functions). */
static void *extension(SOCKET sk, void **cache, GUID guid) {
    void *fn = __atomic_load_n(cache, __ATOMIC_ACQUIRE);
    if (fn) return fn;
    DWORD bytes;
    if (WSAIoctl(sk, SIO_GET_EXTENSION_FUNCTION_POINTER, &guid, sizeof guid, &fn, sizeof fn, &bytes,
                 NULL, NULL) != 0)
        return NULL;
    __atomic_store_n(cache, fn, __ATOMIC_RELEASE);
    return fn;
}

/* ---- setup --------------------------------------------------------------- */

static int iocp_init(struct coil__sched *s) {
    WSADATA wsa;
    if (WSAStartup(MAKEWORD(2, 2), &wsa) != 0) return -ENOSYS;
    struct iocp_backend *b = calloc(1, sizeof *b);
    if (!b) {
        WSACleanup();
        return -ENOMEM;
    }
    b->port = CreateIoCompletionPort(INVALID_HANDLE_VALUE, NULL, 0, 1);
    if (!b->port) {
        int err = coil__win_errno(GetLastError());
        free(b);
        WSACleanup();
        return err;
    }
    /* Every running scheduler's port is in signal.c's table, or Ctrl-C
     * would not wake it (invariant 8): with the table full, coil_run fails
     * (-EAGAIN) rather than run deaf to it. */
    int err = coil__win_port_register(b->port);
    if (err) {
        CloseHandle(b->port);
        free(b);
        WSACleanup();
        return err;
    }
    s->backend_data = b;
    return 0;
}

static void iocp_fini(struct coil__sched *s) {
    struct iocp_backend *b = s->backend_data;
    COIL_ASSERT(b->inflight == 0, "no operation is in flight when the scheduler ends");
    coil__win_port_unregister(b->port);
    CloseHandle(b->port);
    free(b->fds);
    free(b);
    s->backend_data = NULL;
    WSACleanup();
}

static void iocp_wake(struct coil__sched *s) {
    struct iocp_backend *b = s->backend_data;
    PostQueuedCompletionStatus(b->port, 0, 0, NULL);
}

/* Associates the op's socket with the port the first time it is waited on.
 *
 * Layered service providers (LSPs: old firewalls, VPN and proxy clients)
 * may sit between Winsock and the base provider (AFD). An IFS one hands out
 * the base provider's handles, and its I/O is the kernel's; a non-IFS one
 * (no XP1_IFS_HANDLES in the socket's protocol info) hands out handles of
 * its own, does the I/O on the base socket with OVERLAPPEDs of its own and
 * completes ours itself with WPUCompleteOverlappedRequest, which queues a
 * packet even when the call succeeded at once. So:
 *  - FILE_SKIP_COMPLETION_PORT_ON_SUCCESS only for IFS handles: on a non-IFS
 *    socket an inline success is treated as pending, and its packet reaped;
 *    skipping would leave that packet to name a frame long gone;
 *  - the socket associated is the one the application has (the LSP's):
 *    WPUCompleteOverlappedRequest posts to its port. The base socket is not
 *    associated (as libuv does not): the LSP's own packets, naming its
 *    OVERLAPPEDs, would come to this port;
 *  - cancel asks the socket, then, if that finds nothing, the base socket
 *    (WSAIoctl SIO_BASE_HANDLE), as libuv does: an LSP that passes our
 *    OVERLAPPED down has the request there.
 * Wine has no LSPs: every socket is IFS and is its own base (tested). */
static int associate(struct iocp_backend *b, struct iocp_fd *f, SOCKET sk) {
    if (f->associated) return 0;
    if (!CreateIoCompletionPort((HANDLE)sk, b->port, 0, 0)) {
        DWORD e = GetLastError();
        /* Not a handle at all, or one already bound to another port (another
         * scheduler's socket): neither can be waited on here. */
        return e == ERROR_INVALID_PARAMETER ? -EINVAL : coil__win_errno(e);
    }
    f->associated = true;
    WSAPROTOCOL_INFOW info;
    int len = sizeof info;
    bool ifs = getsockopt(sk, SOL_SOCKET, SO_PROTOCOL_INFOW, (char *)&info, &len) == 0 &&
               (info.dwServiceFlags1 & XP1_IFS_HANDLES);
    f->skip_on_success =
        ifs && SetFileCompletionNotificationModes((HANDLE)sk, FILE_SKIP_COMPLETION_PORT_ON_SUCCESS |
                                                                  FILE_SKIP_SET_EVENT_ON_HANDLE);
    SOCKET base = INVALID_SOCKET;
    DWORD bytes;
    if (WSAIoctl(sk, SIO_BASE_HANDLE, NULL, 0, &base, sizeof base, &bytes, NULL, NULL) != 0)
        base = sk;
    f->base_socket = (uintptr_t)base;
    return 0;
}

/* ---- results ------------------------------------------------------------- */

/* The op has finished with Win32 error code err (0: success) after bytes
 * bytes: its result, with the steps AcceptEx and ConnectEx need after them. */
static int finish(struct coil__op *op, DWORD err, DWORD bytes) {
    struct iocp_op *iop = iop_of(op);
    switch (op->opcode) {
    case COIL__OP_ACCEPT: {
        SOCKET acc = iop->accepted;
        iop->accepted = INVALID_SOCKET;
        if (err) {
            if (acc != INVALID_SOCKET) closesocket(acc);
            return coil__win_errno(err);
        }
        /* Until then the new socket knows nothing of its listener:
         * getpeername, shutdown and the like fail on it. */
        SOCKET listener = sock_of(op);
        setsockopt(acc, SOL_SOCKET, SO_UPDATE_ACCEPT_CONTEXT, (const char *)&listener,
                   sizeof listener);
        if (op->u.accept.addr && op->u.accept.addrlen) {
            struct sockaddr *local, *remote;
            INT llen = 0, rlen = 0;
            DWORD each = sizeof(SOCKADDR_STORAGE) + 16;
            get_accept_ex_sockaddrs(iop->addrs, 0, each, each, &local, &llen, &remote, &rlen);
            socklen_t n =
                (socklen_t)rlen < op->u.accept.addrcap ? (socklen_t)rlen : op->u.accept.addrcap;
            memcpy(op->u.accept.addr, remote, (size_t)n);
            *op->u.accept.addrlen = (socklen_t)rlen;
        }
        return (int)(uintptr_t)acc;
    }
    case COIL__OP_POLL: {
        if (err) return coil__win_errno(err);
        ULONG ev = iop->poll.count ? iop->poll.handles[0].events : 0;
        if (ev & AFD_POLL_LOCAL_CLOSE) return -EBADF; /* closesocket behind coil's back */
        int r = 0;
        if (ev & (AFD_POLL_RECEIVE | AFD_POLL_ACCEPT | AFD_POLL_DISCONNECT)) r |= POLLIN;
        if (ev & AFD_POLL_SEND) r |= POLLOUT;
        /* As Linux reports a reset and a refused connect: ready both ways,
         * hung up, in error. */
        if (ev & (AFD_POLL_ABORT | AFD_POLL_CONNECT_FAIL))
            r |= POLLIN | POLLOUT | POLLHUP | POLLERR;
        return r & (op->u.poll.events | POLLHUP | POLLERR);
    }
    case COIL__OP_CONNECT:
        if (err) return coil__win_errno(err);
        setsockopt(sock_of(op), SOL_SOCKET, SO_UPDATE_CONNECT_CONTEXT, NULL, 0);
        return 0;
    case COIL__OP_RECV:
    case COIL__OP_READ:
    case COIL__OP_RECVMSG:
        /* A datagram larger than the buffer (ERROR_MORE_DATA is its packet's
         * STATUS_BUFFER_OVERFLOW, WSAEMSGSIZE the inline failure): Linux's
         * recv, read and recvfrom return the truncated length (without
         * MSG_TRUNC) and drop the rest of the datagram, and so do we. */
        if (err && err != ERROR_MORE_DATA && err != WSAEMSGSIZE) return coil__win_recv_errno(err);
        if (op->opcode == COIL__OP_RECVMSG && op->u.msg.msg->msg_name)
            op->u.msg.msg->msg_namelen = (socklen_t)iop->fromlen;
        return (int)bytes;
    default: return err ? coil__win_errno(err) : (int)bytes;
    }
}

/* ---- starting an operation ----------------------------------------------- */

static int start_accept(struct coil__op *op, DWORD *bytes) {
    struct iocp_op *iop = iop_of(op);
    SOCKET listener = sock_of(op);
    if (!extension(listener, (void **)&accept_ex, (GUID)WSAID_ACCEPTEX) ||
        !extension(listener, (void **)&get_accept_ex_sockaddrs, (GUID)WSAID_GETACCEPTEXSOCKADDRS))
        return SOCKET_ERROR;
    /* The connection's socket is made beforehand, of the listener's family. */
    SOCKADDR_STORAGE ss;
    int len = sizeof ss;
    if (getsockname(listener, (struct sockaddr *)&ss, &len) != 0) return SOCKET_ERROR;
    iop->accepted = WSASocketW(ss.ss_family, SOCK_STREAM, IPPROTO_TCP, NULL, 0,
                               WSA_FLAG_OVERLAPPED | WSA_FLAG_NO_HANDLE_INHERIT);
    if (iop->accepted == INVALID_SOCKET) return SOCKET_ERROR;
    DWORD each = sizeof(SOCKADDR_STORAGE) + 16;
    if (accept_ex(listener, iop->accepted, iop->addrs, 0, each, each, bytes, &iop->ov)) return 0;
    return SOCKET_ERROR;
}

static int start_connect(struct coil__op *op) {
    SOCKET sk = sock_of(op);
    if (!extension(sk, (void **)&connect_ex, (GUID)WSAID_CONNECTEX)) return SOCKET_ERROR;
    /* ConnectEx wants a bound socket (connect binds implicitly; it does not). */
    SOCKADDR_STORAGE ss;
    int len = sizeof ss;
    if (getsockname(sk, (struct sockaddr *)&ss, &len) != 0) {
        if (WSAGetLastError() != WSAEINVAL) return SOCKET_ERROR;
        memset(&ss, 0, sizeof ss);
        ss.ss_family = op->u.connect.addr->sa_family;
        len = ss.ss_family == AF_INET6 ? (int)sizeof(struct sockaddr_in6)
                                       : (int)sizeof(struct sockaddr_in);
        if (bind(sk, (struct sockaddr *)&ss, len) != 0) return SOCKET_ERROR;
    }
    if (connect_ex(sk, op->u.connect.addr, (int)op->u.connect.addrlen, NULL, 0, NULL,
                   &iop_of(op)->ov))
        return 0;
    return SOCKET_ERROR;
}

static ULONG dequeue(struct coil__sched *s, DWORD timeout_ms);

/* A datagram larger than the buffer was there already: WSARecvFrom fails at
 * once with WSAEMSGSIZE. Its status, STATUS_BUFFER_OVERFLOW, is a warning,
 * not an error, and Windows queues a packet for a warning, even with
 * FILE_SKIP_COMPLETION_PORT_ON_SUCCESS (which skips only success); Wine 8.0
 * queues none. Both are handled without guessing: a packet of an op that
 * finished inline is queued before the call returns, so the port is drained
 * now (other ops' packets complete them as usual) and ours, if there, is
 * recognised by its mark and dropped. The port is drained until ours came or
 * a batch comes back short (the port was empty then): a full batch of other
 * packets, wake-ups say, proves nothing about ours. */
#define SYNC_CHECK 0x5c5cu
static void drop_packet_if_queued(struct coil__sched *s, struct coil__op *op) {
    struct iocp_backend *b = s->backend_data;
    struct iocp_op *iop = iop_of(op);
    iop->pending = SYNC_CHECK;
    b->inflight++;
    while (iop->pending == SYNC_CHECK && dequeue(s, 0) == MAX_ENTRIES) {
    }
    if (iop->pending == SYNC_CHECK) { /* no packet came: none will */
        iop->pending = 0;
        b->inflight--;
    }
}

static int truncated_at_once(struct coil__sched *s, struct coil__op *op) {
    drop_packet_if_queued(s, op);
    return finish(op, ERROR_MORE_DATA, iop_of(op)->buf.len);
}

/* Starts an AFD poll (see IOCTL_AFD_POLL) of op's socket. Returns 0 when
 * pending, 1 when it finished at once (op->res set), or -errno. A poll that
 * finds the socket ready at once returns STATUS_SUCCESS; whether a packet is
 * queued for it then is not documented for this IOCTL (Windows skips it
 * under FILE_SKIP_COMPLETION_PORT_ON_SUCCESS, as for any IRP; an LSP's
 * handle does not have the mode), so it is looked for as
 * truncated_at_once does. */
static int start_poll(struct coil__sched *s, struct coil__op *op) {
    struct iocp_op *iop = iop_of(op);
    ULONG ev = AFD_POLL_ABORT | AFD_POLL_LOCAL_CLOSE | AFD_POLL_CONNECT_FAIL;
    if (op->u.poll.events & POLLIN) ev |= AFD_POLL_RECEIVE | AFD_POLL_ACCEPT | AFD_POLL_DISCONNECT;
    if (op->u.poll.events & POLLOUT) ev |= AFD_POLL_SEND;
    iop->poll.timeout.QuadPart = INT64_MAX;
    iop->poll.count = 1;
    iop->poll.exclusive = FALSE;
    iop->poll.handles[0].handle = (HANDLE)iop->base;
    iop->poll.handles[0].events = ev;
    iop->poll.handles[0].status = 0;
    iop->ov.Internal = (ULONG_PTR)STATUS_PENDING;
    NTSTATUS st = NtDeviceIoControlFile((HANDLE)sock_of(op), NULL, NULL, &iop->ov,
                                        (PIO_STATUS_BLOCK)&iop->ov, IOCTL_AFD_POLL, &iop->poll,
                                        sizeof iop->poll, &iop->poll, sizeof iop->poll);
    if (st == STATUS_PENDING) {
        struct iocp_backend *b = s->backend_data;
        iop->pending = POSTED;
        b->inflight++;
        return 0;
    }
    if (st == STATUS_SUCCESS) drop_packet_if_queued(s, op);
    int res = finish(op, st == STATUS_SUCCESS ? 0 : RtlNtStatusToDosError(st), 0);
    if (res < 0) return res;
    op->res = res;
    return 1;
}

/* ConnectEx is for connection-oriented sockets only (Microsoft's
 * documentation; Wine happens to accept a datagram socket). A datagram
 * socket's connect only sets its default peer and never blocks: the plain
 * call, its result mapped, and op finishes at once (1). 0: a stream, for
 * ConnectEx. */
static int connect_at_once(struct coil__op *op) {
    int type, tlen = sizeof type;
    if (getsockopt(sock_of(op), SOL_SOCKET, SO_TYPE, (char *)&type, &tlen) != 0)
        return coil__win_errno((DWORD)WSAGetLastError());
    if (type == SOCK_STREAM) return 0;
    op->res = connect(sock_of(op), op->u.connect.addr, (int)op->u.connect.addrlen) == 0
                  ? 0
                  : coil__win_errno((DWORD)WSAGetLastError());
    return 1;
}

static int iocp_submit(struct coil__sched *s, struct coil__op *op) {
    struct iocp_backend *b = s->backend_data;
    if (op->opcode == COIL__OP_CONNECT) {
        int r = connect_at_once(op);
        if (r) return r;
    }
    struct iocp_fd *f = iocp_fd(b, op->fd);
    if (!f) return -ENOMEM;
    SOCKET sk = sock_of(op);
    int err = associate(b, f, sk);
    if (err) return err;
    struct iocp_op *iop = iop_of(op);
    memset(iop, 0, offsetof(struct iocp_op, addrs));
    iop->accepted = INVALID_SOCKET;
    iop->base = (SOCKET)f->base_socket;
    DWORD bytes = 0;
    int r;
    switch (op->opcode) {
    case COIL__OP_RECV:
    case COIL__OP_READ:
        iop->buf.buf = op->u.io.buf;
        iop->buf.len = (ULONG)op->u.io.len;
        iop->flags = (DWORD)op->flags;
        r = WSARecv(sk, &iop->buf, 1, &bytes, &iop->flags, &iop->ov, NULL);
        break;
    case COIL__OP_SEND:
    case COIL__OP_WRITE:
        iop->buf.buf = op->u.io.buf;
        iop->buf.len = (ULONG)op->u.io.len;
        r = WSASend(sk, &iop->buf, 1, &bytes, (DWORD)op->flags, &iop->ov, NULL);
        break;
    case COIL__OP_RECVMSG: {
        struct msghdr *m = op->u.msg.msg;
        iop->buf.buf = m->msg_iovlen ? m->msg_iov[0].iov_base : NULL;
        iop->buf.len = m->msg_iovlen ? (ULONG)m->msg_iov[0].iov_len : 0;
        iop->flags = (DWORD)op->flags;
        iop->fromlen = (INT)op->u.msg.namecap;
        r = WSARecvFrom(sk, &iop->buf, 1, &bytes, &iop->flags, m->msg_name,
                        m->msg_name ? &iop->fromlen : NULL, &iop->ov, NULL);
        break;
    }
    case COIL__OP_SENDMSG: {
        struct msghdr *m = op->u.msg.msg;
        iop->buf.buf = m->msg_iovlen ? m->msg_iov[0].iov_base : NULL;
        iop->buf.len = m->msg_iovlen ? (ULONG)m->msg_iov[0].iov_len : 0;
        r = WSASendTo(sk, &iop->buf, 1, &bytes, (DWORD)op->flags, m->msg_name, (int)m->msg_namelen,
                      &iop->ov, NULL);
        break;
    }
    case COIL__OP_ACCEPT: r = start_accept(op, &bytes); break;
    case COIL__OP_CONNECT: r = start_connect(op); break;
    case COIL__OP_POLL: return start_poll(s, op);
    default: return -ENOTSUP;
    }
    if (r == 0) {
        if (f->skip_on_success) { /* no packet will come: done */
            op->res = finish(op, 0, bytes);
            return 1;
        }
    } else {
        DWORD e = (DWORD)WSAGetLastError();
        /* Every receive, not only WSARecvFrom: a connected datagram socket's
         * WSARecv (coil_recv, coil_read) fails the same way, and its packet,
         * if Windows queues one, must not outlive this frame. */
        if (e == WSAEMSGSIZE && (op->opcode == COIL__OP_RECV || op->opcode == COIL__OP_READ ||
                                 op->opcode == COIL__OP_RECVMSG)) {
            op->res = truncated_at_once(s, op);
            return 1;
        }
        /* Failed at once: finish maps it as it maps a packet's status (a
         * receive after shutdown(SD_RECEIVE) is end of file) and closes
         * AcceptEx's socket. */
        if (e != WSA_IO_PENDING) {
            int res = finish(op, e, 0);
            if (res < 0) return res;
            op->res = res; /* end of file: done, not pending */
            return 1;
        }
    }
    iop->pending = POSTED;
    b->inflight++;
    return 0;
}

static void iocp_cancel(struct coil__sched *s, struct coil__op *op) {
    (void)s;
    /* ERROR_NOT_FOUND: it has completed and its packet is on the way;
     * ERROR_INVALID_HANDLE: the socket is closed, which cancelled it. Either
     * way the packet comes. */
    struct iocp_op *iop = iop_of(op);
    SOCKET sk = sock_of(op);
    if (!CancelIoEx((HANDLE)sk, &iop->ov) && iop->base != sk)
        CancelIoEx((HANDLE)iop->base, &iop->ov); /* see associate */
}

/* ---- reaping ------------------------------------------------------------- */

static void reap(struct coil__sched *s, const OVERLAPPED_ENTRY *e, ULONG n) {
    struct iocp_backend *b = s->backend_data;
    for (ULONG i = 0; i < n; i++) {
        if (!e[i].lpOverlapped) continue; /* a wake-up: offload jobs, a signal */
        struct iocp_op *iop = CONTAINING_RECORD(e[i].lpOverlapped, struct iocp_op, ov);
        struct coil__op *op = coil__container_of(iop, struct coil__op, scratch);
        if (iop->pending == SYNC_CHECK) { /* see truncated_at_once */
            iop->pending = 0;
            b->inflight--;
            continue;
        }
        COIL_ASSERT(iop->pending == POSTED && !op->done,
                    "a completion packet names an operation in flight");
        iop->pending = 0;
        b->inflight--;
        NTSTATUS st = (NTSTATUS)e[i].lpOverlapped->Internal;
        DWORD err = st ? RtlNtStatusToDosError(st) : 0;
        coil__op_complete(op, finish(op, err, e[i].dwNumberOfBytesTransferred));
    }
}

/* Reaps one batch; returns its size (MAX_ENTRIES: there may be more). */
static ULONG dequeue(struct coil__sched *s, DWORD timeout_ms) {
    struct iocp_backend *b = s->backend_data;
    ULONG n = 0;
    if (!GetQueuedCompletionStatusEx(b->port, b->entries, MAX_ENTRIES, &n, timeout_ms, FALSE))
        return 0;
    reap(s, b->entries, n);
    return n;
}

static void iocp_poll(struct coil__sched *s) {
    struct iocp_backend *b = s->backend_data;
    if (b->inflight) dequeue(s, 0);
}

static int iocp_wait(struct coil__sched *s, int64_t deadline) {
    DWORD ms = INFINITE;
    if (s->runq.len) {
        ms = 0;
    } else if (deadline >= 0) {
        /* whole milliseconds, rounded up: never wake early and spin */
        int64_t rel = deadline - coil_now();
        rel = rel <= 0 ? 0 : (rel + COIL_MSEC - 1) / COIL_MSEC;
        ms = rel >= INFINITE ? INFINITE - 1 : (DWORD)rel;
    }
    dequeue(s, ms);
    return 0;
}

static bool iocp_busy(const struct coil__sched *s) {
    const struct iocp_backend *b = s->backend_data;
    return b->inflight > 0;
}

static int iocp_probe(void) {
    return 0; /* I/O completion ports are in every Windows coil runs on */
}

static void iocp_flush(struct coil__sched *s) {
    (void)s; /* nothing is queued: every call goes to the kernel at once */
}

static void iocp_fd_closing(struct coil__sched *s, struct coil__fd *f) {
    struct iocp_backend *b = s->backend_data;
    size_t fd = (size_t)(f - s->fds.v);
    /* The port association goes with the socket; what we knew of it goes. */
    if (fd < b->nfds) b->fds[fd] = (struct iocp_fd){0};
}

const struct coil__backend_ops coil__backend_iocp = {
    .name = "iocp",
    .probe = iocp_probe,
    .init = iocp_init,
    .fini = iocp_fini,
    .submit = iocp_submit,
    .cancel = iocp_cancel,
    .poll = iocp_poll,
    .wait = iocp_wait,
    .busy = iocp_busy,
    .wake = iocp_wake,
    .flush = iocp_flush,
    .fd_closing = iocp_fd_closing,
};
