/*
 * Child processes on Windows: not yet (coil.h says so). Processes and their
 * pipes there would be CreateProcess with overlapped named pipes, which the
 * IOCP backend does not drive yet (it serves sockets only).
 */
#include "internal.h"

int coil_proc_spawn(coil_proc *p, const coil_proc_opts *opts) {
    (void)opts;
    if (p)
        *p = (coil_proc){.pid = -1,
                         .stdin_fd = -1,
                         .stdout_fd = -1,
                         .stderr_fd = -1,
                         .status = -1,
                         .coil__pidfd = -1};
    return -ENOTSUP;
}

int coil_proc_wait(coil_proc *p, int64_t deadline) {
    (void)p;
    (void)deadline;
    return -ENOTSUP;
}

int coil_proc_kill(coil_proc *p, int sig) {
    (void)p;
    (void)sig;
    return -ENOTSUP;
}

int coil_proc_release(coil_proc *p) {
    (void)p;
    return -ENOTSUP;
}
