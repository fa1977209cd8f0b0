/*
 * The fault-injection sweep (a build with -DCOIL_FAULT_INJECTION=ON: the
 * ASan and coverage builds of make check; src/fault.h says what a kind is).
 *
 *   coil-fault-sweep [--full] [SCENARIO...]
 *
 * For each scenario, each kind of call and each error that call can really
 * give, it runs the scenario in a child process with COIL_FAULT=KIND:N:ERROR
 * for N = 1, 2, 3, ... until a run in which the Nth call never came (the
 * scenario ran through untouched). Without --full, N goes one by one to 24,
 * then in steps of a quarter (the bounded subset make check runs). A run
 * passes when the child exits 0: no crash, no sanitizer report, no leak
 * (LeakSanitizer at its exit), no hang (killed after 30 s), every coil call
 * returned a result its contract in coil.h allows (the injected error where
 * the contract is "-errno"), every byte that arrived was the byte sent, and
 * a witness tasklet kept ticking while the others failed. The sweep prints
 * each failure with the child's stderr, and at the end the number of runs
 * and of distinct (call site, error) pairs injected; exit 1 if a run failed.
 *
 * The child is this program, run with --scenario NAME; the backend is the
 * one COIL_BACKEND names, as in every test.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <coil.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>

#include "plugin/calls.h"

/* ---- the child's checks --------------------------------------------------- */

static int injected; /* the error COIL_FAULT injects (0: none, -1: short) */

#define FAIL(...)                                                                                  \
    do {                                                                                           \
        fprintf(stderr, "contract broken at %s:%d: ", __FILE__, __LINE__);                         \
        fprintf(stderr, __VA_ARGS__);                                                              \
        fputc('\n', stderr);                                                                       \
        _exit(3);                                                                                  \
    } while (0)

/* rc is a success (>= 0) or -e for an e of the list (ends with 0); INJ in
 * the list stands for the injected error: a contract that says "-errno". */
#define INJ (-1)
static bool allowed(long rc, ...) {
    if (rc >= 0) return true;
    va_list ap;
    va_start(ap, rc);
    bool ok = false;
    for (int e; !ok && (e = va_arg(ap, int)) != 0;)
        ok = e == INJ ? injected > 0 && rc == -injected : rc == -e;
    va_end(ap);
    return ok;
}

#define EXPECT(call, rc, ...)                                                                      \
    do {                                                                                           \
        if (!allowed((long)(rc), __VA_ARGS__, 0))                                                  \
            FAIL("%s returned %ld (%s)", call, (long)(rc), strerror((int)-(rc)));                  \
    } while (0)

/* ---- the witness: a tasklet that must keep ticking -------------------------- */

enum { TICKS = 5 };
static int ticks;
static coil_id ticker_id;

static void ticker(void *arg) {
    (void)arg;
    for (int i = 0; i < TICKS; i++) {
        int rc = coil_sleep(COIL_MSEC);
        EXPECT("coil_sleep", rc, ECANCELED);
        if (rc == 0) ticks++;
    }
}

static void start_witness(void) {
    ticker_id = coil_spawn(ticker, NULL, NULL);
    EXPECT("coil_spawn", ticker_id, ENOMEM);
}

static void check_witness(void) {
    if (ticker_id <= 0) return;
    int rc = coil_join(ticker_id, COIL_FOREVER);
    EXPECT("coil_join", rc, 0);
    if (ticks != TICKS) FAIL("the witness ticked %d times of %d", ticks, TICKS);
}

/* ---- scenario "tasklets": spawn, join, channels, choose, scope ---------------- */

enum { WORKERS = 8 };
static coil_chan *unbuf, *buf;

static void worker(void *arg) {
    int v = (int)(intptr_t)arg;
    int rc = coil_chan_send(unbuf, &v);
    EXPECT("coil_chan_send", rc, EPIPE);
    rc = coil_chan_send(buf, &v);
    EXPECT("coil_chan_send", rc, EPIPE);
}

static int scoped(void *arg) {
    (void)arg;
    return coil_sleep(COIL_MSEC);
}

static void tasklets_main(void *arg) {
    (void)arg;
    start_witness();
    int rc = coil_chan_open(&unbuf, sizeof(int), 0);
    EXPECT("coil_chan_open", rc, ENOMEM);
    if (rc < 0) goto out;
    rc = coil_chan_open(&buf, sizeof(int), 4);
    EXPECT("coil_chan_open", rc, ENOMEM);
    if (rc < 0) {
        coil_chan_free(unbuf);
        goto out;
    }
    coil_id ids[WORKERS];
    int spawned = 0;
    for (int i = 0; i < WORKERS; i++) {
        ids[i] = coil_spawn(worker, (void *)(intptr_t)i, NULL);
        EXPECT("coil_spawn", ids[i], ENOMEM);
        if (ids[i] > 0) spawned++;
    }
    /* Every spawned worker's two values, through a choose over both. */
    long sum = 0, want = 0;
    for (int i = 0; i < WORKERS; i++)
        if (ids[i] > 0) want += 2 * i;
    for (int got = 0; got < 2 * spawned;) {
        int a, b;
        coil_clause cl[2] = {{.ch = unbuf, .op = COIL_CHOOSE_RECV, .elem = &a},
                             {.ch = buf, .op = COIL_CHOOSE_RECV, .elem = &b}};
        int k = coil_choose(cl, 2, COIL_FOREVER);
        EXPECT("coil_choose", k, 0);
        if (k < 0 || cl[k].result != 0) FAIL("coil_choose: clause result %d", cl[k].result);
        sum += k == 0 ? a : b;
        got++;
    }
    if (sum != want) FAIL("the channels delivered %ld, not %ld", sum, want);
    for (int i = 0; i < WORKERS; i++)
        if (ids[i] > 0) EXPECT("coil_join", coil_join(ids[i], COIL_FOREVER), 0);
    coil_chan_free(unbuf);
    coil_chan_free(buf);
    coil_scope *sc;
    rc = coil_scope_open(&sc, 0);
    EXPECT("coil_scope_open", rc, ENOMEM);
    if (rc == 0) {
        for (int i = 0; i < 3; i++)
            EXPECT("coil_scope_spawn", coil_scope_spawn(sc, scoped, NULL, NULL), ENOMEM);
        EXPECT("coil_scope_wait", coil_scope_wait(sc, COIL_FOREVER), 0);
        EXPECT("coil_scope_free", coil_scope_free(sc), 0);
    }
out:
    check_witness();
}

/* ---- scenario "echo": clients and a server on loopback TCP -------------------- */

enum { CLIENTS = 4, MSG = 70000 };
static struct sockaddr_in server_addr;
static int listener = -1;

static void handler(void *arg) {
    int fd = (int)(intptr_t)arg;
    char b[8192];
    for (;;) {
        ssize_t n = coil_recv(fd, b, sizeof b, 0);
        EXPECT("coil_recv", n, INJ, ECONNRESET);
        if (n <= 0) break;
        ssize_t w = coil_sendall(fd, b, (size_t)n, 0, COIL_FOREVER);
        EXPECT("coil_sendall", w, INJ, ECONNRESET, EPIPE);
        if (w < 0) break;
    }
    EXPECT("coil_close", coil_close(fd), 0);
}

static void acceptor(void *arg) {
    (void)arg;
    for (;;) {
        int fd = coil_accept(listener, NULL, NULL);
        EXPECT("coil_accept", fd, INJ, EBADF);
        if (fd == -EBADF) return; /* the listener was closed: the end */
        if (fd < 0) continue;
        coil_id id = coil_spawn(handler, (void *)(intptr_t)fd, NULL);
        EXPECT("coil_spawn", id, ENOMEM);
        if (id < 0) coil_close(fd);
    }
}

/* A client's message: byte i of client c. */
static unsigned char pattern(int c, size_t i) {
    return (unsigned char)(i * 7 + (size_t)c * 13 + i / 251);
}

static int echoed; /* clients whose whole message came back */

static void client(void *arg) {
    int c = (int)(intptr_t)arg;
    static unsigned char out[CLIENTS][MSG], in[CLIENTS][MSG];
    for (size_t i = 0; i < MSG; i++)
        out[c][i] = pattern(c, i);
    int fd = coil_socket(AF_INET, SOCK_STREAM, 0);
    EXPECT("coil_socket", fd, INJ);
    if (fd < 0) return;
    int rc = coil_connect(fd, (struct sockaddr *)&server_addr, sizeof server_addr);
    EXPECT("coil_connect", rc, INJ);
    /* A server that failed this connection closes it: the client sees a
     * reset or an early end, never wrong bytes. */
    ssize_t w = rc ? -1 : coil_sendall(fd, out[c], MSG, 0, COIL_FOREVER);
    if (!rc) EXPECT("coil_sendall", w, INJ, ECONNRESET, EPIPE);
    size_t got = 0;
    while (w == MSG && got < MSG) {
        ssize_t n = coil_recv_dl(fd, in[c] + got, MSG - got, 0, coil_now() + 10 * COIL_SEC);
        EXPECT("coil_recv", n, INJ, ECONNRESET);
        if (n <= 0) break;
        got += (size_t)n;
    }
    if (memcmp(in[c], out[c], got) != 0) FAIL("client %d: the echo differs from what it sent", c);
    if (got == MSG) echoed++;
    EXPECT("coil_close", coil_close(fd), 0);
}

/* The listener on a free loopback port (server_addr): fd, made already. */
static void bind_loopback(int fd) {
    listener = fd;
    server_addr = (struct sockaddr_in){.sin_family = AF_INET};
    server_addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof server_addr;
    if (bind(fd, (struct sockaddr *)&server_addr, sizeof server_addr) != 0 ||
        listen(fd, 128) != 0 || getsockname(fd, (struct sockaddr *)&server_addr, &len) != 0)
        FAIL("a loopback listener: %s", strerror(errno));
}

static bool listen_loopback(void) {
    int fd = coil_socket(AF_INET, SOCK_STREAM, 0);
    EXPECT("coil_socket", fd, INJ);
    if (fd >= 0) bind_loopback(fd);
    return fd >= 0;
}

static int close_coil(int fd) {
    int rc = coil_close(fd);
    EXPECT("coil_close", rc, 0);
    return rc;
}

/* The server side and n clients: spawns the acceptor, then the clients
 * (client_fn(i)), joins them, closes the listener with close_fn (the
 * acceptor's wait ends with EBADF) and joins the acceptor. Returns how many
 * clients it spawned. */
static int serve(coil_fn acceptor_fn, coil_fn client_fn, int n, int (*close_fn)(int)) {
    coil_id acc = coil_spawn(acceptor_fn, NULL, NULL);
    EXPECT("coil_spawn", acc, ENOMEM);
    coil_id ids[64];
    int spawned = 0;
    for (int i = 0; i < n && i < 64; i++) {
        ids[i] = acc > 0 ? coil_spawn(client_fn, (void *)(intptr_t)i, NULL) : -1;
        if (acc > 0) EXPECT("coil_spawn", ids[i], ENOMEM);
        if (ids[i] > 0) spawned++;
    }
    for (int i = 0; i < n && i < 64; i++)
        if (ids[i] > 0) EXPECT("coil_join", coil_join(ids[i], COIL_FOREVER), 0);
    close_fn(listener);
    if (acc > 0) EXPECT("coil_join", coil_join(acc, COIL_FOREVER), 0);
    return spawned;
}

static void echo_main(void *arg) {
    (void)arg;
    start_witness();
    if (listen_loopback()) {
        serve(acceptor, client, CLIENTS, close_coil);
        /* Untouched, every client's message comes back whole. */
        if (!injected && echoed != CLIENTS) FAIL("%d of %d echoes came back", echoed, CLIENTS);
    }
    check_witness();
}

/* ---- scenario "accept": a burst of connections ------------------------------ */

enum { BURST = 40 };
/* A connect that fails may still have reached the server (its SYN went out
 * before the failure: on epoll, a failed epoll_ctl for the wait that
 * follows EINPROGRESS), so what is accepted is bounded by the attempts. */
static int accepted, attempted;

static void burst_acceptor(void *arg) {
    (void)arg;
    for (;;) {
        int fd = coil_accept(listener, NULL, NULL);
        EXPECT("coil_accept", fd, INJ, EBADF);
        if (fd == -EBADF) return;
        if (fd < 0) continue;
        accepted++;
        EXPECT("coil_close", coil_close(fd), 0);
    }
}

static void burst_client(void *arg) {
    (void)arg;
    int fd = coil_socket(AF_INET, SOCK_STREAM, 0);
    EXPECT("coil_socket", fd, INJ);
    if (fd < 0) return;
    attempted++;
    int rc = coil_connect(fd, (struct sockaddr *)&server_addr, sizeof server_addr);
    EXPECT("coil_connect", rc, INJ);
    if (rc == 0) {
        char c;
        /* Until the server has accepted and closed it. */
        ssize_t n = coil_recv_dl(fd, &c, 1, 0, coil_now() + 10 * COIL_SEC);
        EXPECT("coil_recv", n, INJ, ECONNRESET);
    }
    EXPECT("coil_close", coil_close(fd), 0);
}

static void accept_main(void *arg) {
    (void)arg;
    start_witness();
    if (listen_loopback()) {
        serve(burst_acceptor, burst_client, BURST, close_coil);
        if (accepted > attempted) FAIL("accepted %d of %d attempts", accepted, attempted);
        if (!injected && accepted != BURST) FAIL("accepted %d of %d", accepted, BURST);
    }
    check_witness();
}

/* ---- scenario "group": two schedulers, channels between them --------------- */

static coil_chan *across;

static void far_sender(void *arg) {
    (void)arg;
    for (int i = 1; i <= 50; i++)
        EXPECT("coil_chan_send", coil_chan_send(across, &i), 0);
}

static void group_main(void *arg) {
    (void)arg;
    start_witness();
    int rc = coil_chan_open(&across, sizeof(int), 2);
    EXPECT("coil_chan_open", rc, ENOMEM);
    if (rc == 0) {
        coil_id id = coil_spawn_on(1, far_sender, NULL, NULL);
        EXPECT("coil_spawn_on", id, ENOMEM);
        long sum = 0;
        for (int i = 0; id > 0 && i < 50; i++) {
            int v;
            EXPECT("coil_chan_recv", coil_chan_recv(across, &v), 0);
            sum += v;
        }
        if (id > 0 && sum != 50 * 51 / 2) FAIL("the channel across delivered %ld", sum);
        if (id > 0) EXPECT("coil_join", coil_join(id, COIL_FOREVER), 0);
        coil_chan_free(across);
    }
    check_witness();
}

/* ---- scenario "offload": the offload pool, a name resolved, a file ------------ */

static int add_one(void *arg) {
    return *(int *)arg + 1;
}

static void offloader(void *arg) {
    (void)arg;
    int v = 41;
    int rc = coil_offload(add_one, &v);
    /* -EAGAIN: no worker thread could be started. */
    EXPECT("coil_offload", rc, EAGAIN);
    if (rc >= 0 && rc != 42) FAIL("coil_offload returned %d, not 42", rc);
}

static void offload_main(void *arg) {
    (void)arg;
    start_witness();
    coil_id ids[4];
    for (int i = 0; i < 4; i++) {
        ids[i] = coil_spawn(offloader, NULL, NULL);
        EXPECT("coil_spawn", ids[i], ENOMEM);
    }
    /* A name (not a number): resolved on the offload pool, then connected;
     * nobody listens on the port a closed socket had: -ECONNREFUSED. */
    if (listen_loopback()) {
        char port[16];
        snprintf(port, sizeof port, "%u", ntohs(server_addr.sin_port));
        int fd = coil_dial("localhost", port, SOCK_STREAM, coil_now() + 10 * COIL_SEC);
        EXPECT("coil_dial", fd, INJ, EAGAIN, ENOMEM);
        if (fd >= 0) {
            /* The listener's backlog took it: a file through the socket. */
            EXPECT("coil_close", coil_close(fd), 0);
        }
        EXPECT("coil_close", coil_close(listener), 0);
    }
    /* A regular file: io_uring reads it in the kernel, epoll on the pool. */
    char path[] = "/tmp/coil-fault-file-XXXXXX";
    int f = mkstemp(path);
    if (f < 0) FAIL("mkstemp: %s", strerror(errno));
    unlink(path);
    static char block[65536], back[65536];
    for (size_t i = 0; i < sizeof block; i++)
        block[i] = (char)(i * 31 + 7);
    ssize_t w = coil_write(f, block, sizeof block);
    EXPECT("coil_write", w, INJ, EAGAIN);
    if (w > 0 && lseek(f, 0, SEEK_SET) == 0) {
        size_t got = 0;
        while (got < (size_t)w) {
            ssize_t n = coil_read(f, back + got, (size_t)w - got);
            EXPECT("coil_read", n, INJ, EAGAIN);
            if (n <= 0) break;
            got += (size_t)n;
        }
        if (memcmp(back, block, got) != 0) FAIL("the file read back differs");
    }
    close(f);
    for (int i = 0; i < 4; i++)
        if (ids[i] > 0) EXPECT("coil_join", coil_join(ids[i], COIL_FOREVER), 0);
    check_witness();
}

/* ---- scenario "shutdown": SIGTERM while tasklets wait on everything ------------ */

static coil_chan *never;
static int unwound; /* waiting tasklets that ended (each checked its result) */

static void waits_on_chan(void *arg) {
    (void)arg;
    int v;
    int rc = coil_chan_recv(never, &v);
    EXPECT("coil_chan_recv", rc, ECANCELED);
    unwound++;
}

static void waits_on_socket(void *arg) {
    int fd = (int)(intptr_t)arg;
    char c;
    ssize_t n = coil_recv(fd, &c, 1, 0);
    EXPECT("coil_recv", n, INJ, ECANCELED);
    unwound++;
}

static void waits_on_sleep(void *arg) {
    (void)arg;
    int rc = coil_sleep(60 * COIL_SEC);
    EXPECT("coil_sleep", rc, ECANCELED);
    unwound++;
}

static int sv[2] = {-1, -1};

static void shutdown_main(void *arg) {
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0)
        FAIL("socketpair: %s", strerror(errno));
    int rc = coil_chan_open(&never, sizeof(int), 0);
    EXPECT("coil_chan_open", rc, ENOMEM);
    int spawned = 0;
    if (rc == 0 && coil_spawn(waits_on_chan, NULL, NULL) > 0) spawned++;
    if (coil_spawn(waits_on_socket, (void *)(intptr_t)sv[0], NULL) > 0) spawned++;
    if (coil_spawn(waits_on_sleep, NULL, NULL) > 0) spawned++;
    rc = coil_sleep(COIL_MSEC); /* every one parked */
    EXPECT("coil_sleep", rc, ECANCELED);
    kill(getpid(), SIGTERM);
    /* main is killed too: this wait ends with -ECANCELED, not in 60 s. */
    rc = coil_sleep(60 * COIL_SEC);
    if (rc != -ECANCELED) FAIL("main's sleep after SIGTERM returned %d", rc);
    /* The counts are checked after coil_run, once every tasklet ended. */
    *(int *)arg = spawned;
}

static void shutdown_run(void) {
    int spawned = -1;
    int rc = coil_run(shutdown_main, &spawned);
    EXPECT("coil_run", rc, INJ, ENOMEM, EINTR);
    if (rc == -EINTR && unwound != spawned)
        FAIL("%d of %d waiting tasklets ended", unwound, spawned);
    if (rc == -EINTR && spawned < 0) FAIL("main did not run to its end");
    if (never) coil_chan_free(never);
    if (sv[0] >= 0) {
        close(sv[0]);
        close(sv[1]);
    }
}

/* ---- scenario "proc": child processes --------------------------------------- */

static void proc_main(void *arg) {
    (void)arg;
    start_witness();
    /* cat: what goes in comes out; stderr to /dev/null. */
    const char *const cat[] = {"cat", NULL};
    coil_proc p = {0};
    coil_proc_opts o = {.argv = cat, .stdio = {COIL_PROC_PIPE, COIL_PROC_PIPE, COIL_PROC_NULL}};
    int rc = coil_proc_spawn(&p, &o);
    /* the -errno of a pipe, open or vfork that failed */
    EXPECT("coil_proc_spawn", rc, INJ);
    if (rc == 0) {
        static const char msg[] = "through cat and back";
        ssize_t w = coil_write(p.stdin_fd, msg, sizeof msg - 1);
        EXPECT("coil_write", w, INJ, EPIPE);
        EXPECT("coil_close", coil_close(p.stdin_fd), 0);
        p.stdin_fd = -1;
        char back[64];
        size_t got = 0;
        for (ssize_t n; got < sizeof back; got += (size_t)n) {
            n = coil_read(p.stdout_fd, back + got, sizeof back - got);
            EXPECT("coil_read", n, INJ);
            if (n <= 0) break;
        }
        if (w == (ssize_t)sizeof msg - 1 && got == sizeof msg - 1 && memcmp(back, msg, got) != 0)
            FAIL("cat gave back other bytes");
        int st = coil_proc_wait(&p, coil_now() + 10 * COIL_SEC);
        EXPECT("coil_proc_wait", st, INJ);
        EXPECT("coil_proc_release", coil_proc_release(&p), 0);
    }
    /* A program that is not there: -ENOENT from the child's exec. */
    const char *const none[] = {"/nonexistent/coil-fault-sweep", NULL};
    coil_proc q = {0};
    rc = coil_proc_spawn(&q, &(coil_proc_opts){.argv = none});
    EXPECT("coil_proc_spawn", rc, INJ, ENOENT);
    if (rc != -ENOENT && rc != -injected) FAIL("a missing program: %d, not -ENOENT", rc);
    check_witness();
}

/* ---- scenario "install": libc's calls diverted (coil_install) ---------------- */

/* The calls come from tests/plugin/calls.c, a shared object whose GOT
 * coil_install rewrites (this program's own would be bound to the
 * sanitizer's interceptors). libc's contract: -1 and errno. */
static void expect_libc(const char *call, long rc, ...) {
    if (rc >= 0) return;
    int e = errno;
    va_list ap;
    va_start(ap, rc);
    bool ok = injected > 0 && e == injected;
    for (int x; !ok && (x = va_arg(ap, int)) != 0;)
        ok = e == x;
    va_end(ap);
    if (!ok) FAIL("%s returned %ld, errno %d (%s)", call, rc, e, strerror(e));
}

static pthread_mutex_t inst_lock = PTHREAD_MUTEX_INITIALIZER;
static int inst_locked; /* times a client held inst_lock across a sleep */

static void inst_handler(void *arg) {
    int fd = (int)(intptr_t)arg;
    char b[8192];
    for (;;) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = coil_tc_poll(&p, 1, 10000);
        expect_libc("poll", r, 0);
        if (r <= 0) break;
        ssize_t n = coil_tc_read(fd, b, sizeof b);
        expect_libc("read", n, ECONNRESET, 0);
        if (n <= 0) break;
        ssize_t off = 0;
        while (off < n) {
            ssize_t w = coil_tc_write(fd, b + off, (size_t)(n - off));
            expect_libc("write", w, ECONNRESET, EPIPE, 0);
            if (w < 0) break;
            off += w;
        }
        if (off < n) break;
    }
    expect_libc("close", coil_tc_close(fd), 0);
}

static void inst_acceptor(void *arg) {
    (void)arg;
    for (;;) {
        int fd = coil_tc_accept4(listener, NULL, NULL, SOCK_CLOEXEC);
        expect_libc("accept4", fd, EBADF, 0);
        if (fd < 0 && errno == EBADF) return; /* the listener was closed */
        if (fd < 0) continue;
        coil_id id = coil_spawn(inst_handler, (void *)(intptr_t)fd, NULL);
        EXPECT("coil_spawn", id, ENOMEM);
        if (id < 0) coil_tc_close(fd);
    }
}

static void inst_client(void *arg) {
    int c = (int)(intptr_t)arg;
    static unsigned char out[CLIENTS][MSG / 4], in[CLIENTS][MSG / 4];
    const size_t len = MSG / 4;
    for (size_t i = 0; i < len; i++)
        out[c][i] = pattern(c, i);
    int fd = coil_tc_socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    expect_libc("socket", fd, 0);
    if (fd < 0) return;
    int rc = coil_tc_connect(fd, (struct sockaddr *)&server_addr, sizeof server_addr);
    expect_libc("connect", rc, 0);
    size_t sent = 0, got = 0;
    while (rc == 0 && sent < len) {
        ssize_t w = coil_tc_send(fd, out[c] + sent, len - sent, MSG_NOSIGNAL);
        expect_libc("send", w, ECONNRESET, EPIPE, 0);
        if (w < 0) break;
        sent += (size_t)w;
    }
    while (sent == len && got < len) {
        ssize_t n = coil_tc_recv(fd, in[c] + got, len - got, 0);
        expect_libc("recv", n, ECONNRESET, 0);
        if (n <= 0) break;
        got += (size_t)n;
    }
    if (memcmp(in[c], out[c], got) != 0) FAIL("client %d: the echo differs from what it sent", c);
    if (got == len) echoed++;
    /* A lock held across a sleep: the other clients park on it. */
    int e = coil_tc_mutex_lock(&inst_lock);
    if (e != 0) FAIL("pthread_mutex_lock returned %d", e);
    expect_libc("usleep", coil_tc_usleep(1000), 0);
    inst_locked++;
    e = coil_tc_mutex_unlock(&inst_lock);
    if (e != 0) FAIL("pthread_mutex_unlock returned %d", e);
    expect_libc("close", coil_tc_close(fd), 0);
}

static int close_libc(int fd) {
    int rc = coil_tc_close(fd);
    expect_libc("close", rc, 0);
    return rc;
}

static void install_main(void *arg) {
    (void)arg;
    start_witness();
    /* A name resolved through the diverted getaddrinfo (the offload pool). */
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    int g = coil_tc_getaddrinfo("localhost", "80", &hints, &ai);
    if (g != 0 && g != EAI_SYSTEM && g != EAI_MEMORY && g != EAI_AGAIN)
        FAIL("getaddrinfo returned %d (%s)", g, gai_strerror(g));
    if (ai) freeaddrinfo(ai);
    int fd = coil_tc_socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    expect_libc("socket", fd, 0);
    if (fd >= 0) {
        bind_loopback(fd);
        /* A diverted close wakes the acceptor with EBADF. */
        int spawned = serve(inst_acceptor, inst_client, CLIENTS, close_libc);
        if (!injected && echoed != CLIENTS) FAIL("%d of %d echoes came back", echoed, CLIENTS);
        if (inst_locked > spawned) FAIL("the lock was taken %d times by %d", inst_locked, spawned);
    }
    check_witness();
}

static void install_run(void) {
    int rc = coil_install();
    /* -errno when a GOT page cannot be made writable (mprotect) or the maps
     * cannot be read (malloc for the reading). */
    EXPECT("coil_install", rc, INJ, ENOMEM);
    /* Not installed, the calls would block the thread: the scenario's
     * accept would wait for clients that never run. */
    if (rc == 0) {
        rc = coil_run(install_main, NULL);
        EXPECT("coil_run", rc, INJ, ENOMEM);
    }
    EXPECT("coil_uninstall", coil_uninstall(), 0);
}

/* ---- the child ------------------------------------------------------------- */

static const struct scenario {
    const char *name;
    coil_fn main;
    bool group;
} scenarios[] = {
    /* clang-format off */
    {"tasklets", tasklets_main, false},
    {"echo", echo_main, false},
    {"accept", accept_main, false},
    {"group", group_main, true},
    {"offload", offload_main, false},
    {"shutdown", NULL, false}, /* shutdown_run */
    {"install", NULL, false},  /* install_run */
    {"proc", proc_main, false},
    /* clang-format on */
};
enum { NSCENARIOS = sizeof scenarios / sizeof scenarios[0] };

static int run_child(const struct scenario *sc) {
    const char *spec = getenv("COIL_FAULT");
    const char *err = spec ? strrchr(spec, ':') : NULL;
    if (err && !strcmp(err + 1, "short")) {
        injected = -1;
    } else if (err) {
        /* The errno of the name (glibc 2.32's strerrorname_np names them). */
        for (int e = 1; e < 256 && !injected; e++) {
            const char *name = strerrorname_np(e);
            if (name && !strcmp(err + 1, name)) injected = e;
        }
        if (!injected) FAIL("COIL_FAULT=%s: not an errno name", spec);
    }
    if (!sc->main) {
        if (!strcmp(sc->name, "install"))
            install_run();
        else
            shutdown_run();
        return 0;
    }
    int rc = sc->group ? coil_run_group(2, sc->main, NULL) : coil_run(sc->main, NULL);
    /* coil_run: -ENOMEM or the backend's error when the scheduler cannot
     * be set up; coil_run_group also -EAGAIN when a thread cannot start. */
    EXPECT(sc->group ? "coil_run_group" : "coil_run", rc, INJ, ENOMEM, sc->group ? EAGAIN : ENOMEM);
    return 0;
}

/* ---- the sweep --------------------------------------------------------------- */

static const struct kind {
    const char *name;
    const char *errors[5];
} kinds[] = {
    {"malloc", {"ENOMEM"}},
    {"mmap", {"ENOMEM", "EAGAIN"}},
    {"mprotect", {"ENOMEM"}},
    {"madvise", {"ENOMEM", "EAGAIN"}},
    {"socket", {"EMFILE", "ENFILE", "ENOBUFS", "EACCES"}},
    {"accept", {"EMFILE", "ENFILE", "ECONNABORTED", "ENOBUFS"}},
    {"eventfd", {"EMFILE", "ENFILE"}},
    {"epoll_create", {"EMFILE", "ENOMEM"}},
    {"epoll_ctl", {"ENOMEM", "ENOSPC"}},
    {"pthread_create", {"EAGAIN"}},
    {"io_uring_setup", {"ENOMEM", "EMFILE", "EPERM", "ENOSYS"}},
    /* io_uring_enter(2)'s transient errors; the others (EBADF, EFAULT,
     * EINVAL, ...) are a caller's mistake, and EBADR means the kernel lost
     * completions. */
    {"io_uring_enter", {"EBUSY", "EAGAIN", "EINTR"}},
    {"io_uring_get_sqe", {"EBUSY"}},
    {"completion", {"ECONNRESET", "EIO", "ENOBUFS", "short"}},
    /* io_uring only: a request refused by the kernel (a feature it lacks,
     * EINVAL or EOPNOTSUPP; an O_NONBLOCK fd, EAGAIN; no fd left, EMFILE)
     * before it moved anything. */
    {"cqe", {"EINVAL", "EAGAIN", "EOPNOTSUPP", "EMFILE"}},
    {"pipe2", {"EMFILE", "ENFILE"}},
    {"open", {"EMFILE", "ENFILE"}},
    {"vfork", {"EAGAIN", "ENOMEM"}},
};

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* A (site, error) pair seen in a log. */
static char **pairs;
static size_t npairs, cap_pairs;

static void add_pair(const char *line) {
    /* "fault KIND N ERROR FILE:LINE" -> "KIND ERROR FILE:LINE" */
    char kind[32], err[32], site[128];
    long n;
    if (sscanf(line, "fault %31s %ld %31s %127s", kind, &n, err, site) != 4) return;
    char key[200];
    snprintf(key, sizeof key, "%s %s %s", kind, err, site);
    for (size_t i = 0; i < npairs; i++)
        if (!strcmp(pairs[i], key)) return;
    if (npairs == cap_pairs) {
        cap_pairs = cap_pairs ? 2 * cap_pairs : 256;
        pairs = realloc(pairs, cap_pairs * sizeof *pairs);
        if (!pairs) abort();
    }
    pairs[npairs++] = strdup(key);
}

static char self[4096];

/* One run: 0 passed, 1 passed untouched (the Nth call never came), -1 failed. */
static int run_one(const char *scenario, const char *kind, long n, const char *err) {
    char spec[96], logpath[64], errpath[64];
    snprintf(spec, sizeof spec, "%s:%ld:%s", kind, n, err);
    snprintf(logpath, sizeof logpath, "/tmp/coil-fault-%d.log", (int)getpid());
    snprintf(errpath, sizeof errpath, "/tmp/coil-fault-%d.err", (int)getpid());
    unlink(logpath);
    pid_t pid = fork();
    if (pid < 0) {
        perror("fork");
        exit(2);
    }
    if (pid == 0) {
        int fd = open(errpath, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
        }
        setenv("COIL_FAULT", spec, 1);
        setenv("COIL_FAULT_LOG", logpath, 1);
        execl(self, self, "--scenario", scenario, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    double give_up = now_s() + 30;
    bool hung = false;
    while (waitpid(pid, &status, WNOHANG) == 0) {
        if (now_s() > give_up) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            hung = true;
            break;
        }
        struct timespec ms = {0, 2000000};
        nanosleep(&ms, NULL);
    }
    bool fired = false;
    FILE *log = fopen(logpath, "r");
    if (log) {
        char line[256];
        while (fgets(line, sizeof line, log)) {
            fired = true;
            add_pair(line);
        }
        fclose(log);
    }
    unlink(logpath);
    bool ok = !hung && WIFEXITED(status) && WEXITSTATUS(status) == 0;
    if (!ok) {
        printf("FAILED: %s COIL_FAULT=%s: %s\n", scenario, spec,
               hung                  ? "hung (killed after 30 s)"
               : WIFSIGNALED(status) ? strsignal(WTERMSIG(status))
                                     : "exit status not 0");
        FILE *e = fopen(errpath, "r");
        if (e) {
            char line[512];
            for (int i = 0; i < 60 && fgets(line, sizeof line, e); i++)
                printf("    %s", line);
            fclose(e);
        }
    }
    unlink(errpath);
    if (!ok) return -1;
    return fired ? 0 : 1;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--scenario")) {
        for (int i = 0; i < NSCENARIOS; i++)
            if (!strcmp(argv[2], scenarios[i].name)) return run_child(&scenarios[i]);
        fprintf(stderr, "coil-fault-sweep: no scenario %s\n", argv[2]);
        return 2;
    }
    bool full = false;
    const char *only[NSCENARIOS + 1] = {0};
    int nonly = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--full"))
            full = true;
        else if (nonly < NSCENARIOS)
            only[nonly++] = argv[i];
    }
    ssize_t len = readlink("/proc/self/exe", self, sizeof self - 1);
    if (len <= 0) {
        perror("readlink /proc/self/exe");
        return 2;
    }
    self[len] = '\0';
    const char *be = getenv("COIL_BACKEND");
    long runs = 0, failed = 0;
    double t0 = now_s();
    for (int s = 0; s < NSCENARIOS; s++) {
        bool wanted = nonly == 0;
        for (int i = 0; i < nonly; i++)
            wanted |= !strcmp(only[i], scenarios[s].name);
        if (!wanted) continue;
        for (size_t k = 0; k < sizeof kinds / sizeof kinds[0]; k++) {
            for (int e = 0; e < 5 && kinds[k].errors[e]; e++) {
                long n = 1, last = 0;
                for (;;) {
                    int r = run_one(scenarios[s].name, kinds[k].name, n, kinds[k].errors[e]);
                    runs++;
                    if (r < 0) failed++;
                    if (r == 1) break;
                    last = n;
                    n = full || n < 24 ? n + 1 : n + n / 4;
                }
                (void)last;
            }
        }
        printf("%-9s done: %ld runs so far, %zu (site, error) pairs, %ld failed\n",
               scenarios[s].name, runs, npairs, failed);
        fflush(stdout);
    }
    printf("fault sweep on %s (%s): %ld runs in %.0f s, %zu distinct (call site, error) pairs "
           "injected, %ld failed\n",
           be ? be : "the default backend",
           full ? "every N" : "N to 24, then in steps of a quarter", runs, now_s() - t0, npairs,
           failed);
    return failed ? 1 : 0;
}
