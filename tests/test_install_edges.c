/* coil_install(): the edges of the diverted calls, and the entry points of
 * programs built with _FORTIFY_SOURCE. Covered:
 *  - invalid arguments (a NULL or malformed timespec, a negative timeval, a
 *    negative nfds, a CPU-time or unknown clock, a vector count out of
 *    range, a recvmmsg of no messages, a NULL buffer, a wait with no child,
 *    an offset or flags the call refuses): each call made inside a tasklet
 *    answers exactly as the same call made outside coil_run (libc's answer):
 *    the same result and the same errno;
 *  - getaddrinfo of literal hosts and of "localhost", with and without
 *    hints, AI_ADDRCONFIG, AI_PASSIVE: the same entries as libc's;
 *  - recvmmsg: MSG_WAITFORONE returns what has come without waiting for
 *    more; its timeout ends the wait for further messages with the count so
 *    far; SO_RCVTIMEO with none is EAGAIN; MSG_DONTWAIT is libc's; sendmmsg
 *    sends each message whole;
 *  - readv/writev on a pipe: a read parks until the writer comes, a vector
 *    with an empty part is written whole;
 *  - select over more fds than coil keeps on its stack (70 pipes), with an
 *    exceptfds set, parks until one is readable and reports only it; a
 *    select that times out reports 0 and leaves no time in its timeval;
 *  - __read_chk, __recv_chk, __recvfrom_chk, __pread_chk, __poll_chk and
 *    __ppoll_chk (what a fortified program's read, recv, ... call) park like
 *    the plain calls, and end the process as glibc's do (SIGABRT) when the
 *    length is larger than the buffer: each of those in a child of its own.
 * The calls are made through tests/plugin/calls.c, a shared object whose GOT
 * coil_install rewrites in every build (the sanitizers' too).
 */
#define _GNU_SOURCE
// coil-test: tsan (getaddrinfo of a name runs on the offload pool's threads)
#include "coil_test.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <poll.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <time.h>

#include "plugin/calls.h" /* after the system headers: it renames their calls */

#define MS(n) ((int64_t)(n)*COIL_MSEC)

/* ---- invalid arguments, as libc answers them --------------------------------- */

struct answer {
    long r;
    int err;
};

enum { EDGES = 29 };

static const char *const edge_names[EDGES] = {
    "nanosleep(NULL)",
    "nanosleep(tv_sec -1)",
    "clock_nanosleep(tv_nsec 2e9)",
    "clock_nanosleep(NULL)",
    "clock_nanosleep(CLOCK_THREAD_CPUTIME_ID)",
    "clock_nanosleep(an unknown clock)",
    "select(nfds -1)",
    "select(tv_sec -1)",
    "pselect(tv_nsec 2e9)",
    "ppoll(tv_nsec 2e9)",
    "recvmmsg(tv_nsec 2e9)",
    "recvmmsg(vlen 0)",
    "readv(iovcnt -1)",
    "writev(iovcnt -1)",
    "readv(iovcnt IOV_MAX + 1)",
    "write(NULL, 1)",
    "send(NULL, 1)",
    "sendto(NULL, 1)",
    "wait4(-1, WNOHANG), no child",
    "wait4(-1), no child",
    "waitid(P_ALL, WEXITED | WNOHANG), no child",
    "waitid(P_ALL, WEXITED), no child",
    "ppoll(tv_sec -1)",
    "pselect(tv_nsec -1)",
    "recvmmsg(tv_sec -1)",
    "pwritev(iovcnt -1)",
    "preadv2(RWF_NOWAIT) of a pipe",
    "pwritev2(offset -2)",
    "dup3(O_NONBLOCK)",
};

struct edges {
    int pipe[2], dgram[2], stream[2], file;
    struct answer libc[EDGES], coil[EDGES];
};

/* Valgrind reports a NULL passed to the kernel (which answers EFAULT) as
 * an error of the program's: those calls are not made under it. qemu-user
 * (Debian 12's 7.2) does not check recvmmsg's timeout: libc's own call
 * waits for a datagram there instead of failing with EINVAL. */
static bool edge_skipped(int i) {
    if (coil_test_under_qemu() && (i == 10 || i == 24)) return true;
    return coil_test_under_valgrind() && (i == 0 || i == 3 || (i >= 15 && i <= 17));
}

/* What each call must answer: its result and errno (clock_nanosleep
 * returns its error and leaves errno alone). */
static const struct answer edge_want[EDGES] = {
    {-1, EFAULT}, {-1, EINVAL}, {EINVAL, 0},  {EFAULT, 0},  {EINVAL, 0},  {EINVAL, 0},
    {-1, EINVAL}, {-1, EINVAL}, {-1, EINVAL}, {-1, EINVAL}, {-1, EINVAL}, {0, 0},
    {-1, EINVAL}, {-1, EINVAL}, {-1, EINVAL}, {-1, EFAULT}, {-1, EFAULT}, {-1, EFAULT},
    {-1, ECHILD}, {-1, ECHILD}, {-1, ECHILD}, {-1, ECHILD}, {-1, EINVAL}, {-1, EINVAL},
    {-1, EINVAL}, {-1, EINVAL}, {-1, ESPIPE}, {-1, EINVAL}, {-1, EINVAL},
};

/* Makes edge call i; errno is cleared before, so that a call which leaves
 * errno alone shows as 0 in both columns. */
static struct answer edge(struct edges *x, int i) {
    if (edge_skipped(i)) return edge_want[i];
    static const struct timespec bad = {0, 2000000000}, neg = {-1, 0}, neg_ns = {0, -1},
                                 tiny = {0, 1000};
    struct timespec ten_ms = {0, 10000000};
    struct timeval tv_neg = {-1, 0}, tv_ten = {0, 10000};
    static struct iovec iov[IOV_MAX + 1];
    char byte = 0;
    iov[0] = (struct iovec){&byte, 1};
    struct mmsghdr vec[1] = {{.msg_hdr = {.msg_iov = iov, .msg_iovlen = 1}}};
    long r = 0;
    errno = 0;
    switch (i) {
    case 0: r = coil_tc_nanosleep(NULL, NULL); break;
    case 1: r = coil_tc_nanosleep(&neg, NULL); break;
    case 2: r = coil_tc_clock_nanosleep(CLOCK_MONOTONIC, 0, &bad, NULL); break;
    case 3: r = coil_tc_clock_nanosleep(CLOCK_MONOTONIC, 0, NULL, NULL); break;
    case 4: r = coil_tc_clock_nanosleep(CLOCK_THREAD_CPUTIME_ID, 0, &tiny, NULL); break;
    case 5: r = coil_tc_clock_nanosleep(0x7fff, 0, &tiny, NULL); break;
    case 6: r = coil_tc_select(-1, NULL, NULL, NULL, &tv_ten); break;
    case 7: r = coil_tc_select(0, NULL, NULL, NULL, &tv_neg); break;
    case 8: r = coil_tc_pselect(0, NULL, NULL, NULL, &bad); break;
    case 9: r = coil_tc_ppoll(NULL, 0, &bad); break;
    case 10: r = coil_tc_recvmmsg(x->dgram[0], vec, 1, 0, (struct timespec *)&bad); break;
    case 11: r = coil_tc_recvmmsg(x->dgram[0], vec, 0, 0, &ten_ms); break;
    case 12: r = coil_tc_readv(x->pipe[0], iov, -1); break;
    case 13: r = coil_tc_writev(x->pipe[1], iov, -1); break;
    case 14: r = coil_tc_readv(x->pipe[0], iov, IOV_MAX + 1); break;
    case 15: r = coil_tc_write(x->pipe[1], NULL, 1); break;
    case 16: r = coil_tc_send(x->stream[0], NULL, 1, 0); break;
    case 17: r = coil_tc_sendto(x->dgram[0], NULL, 1, 0, NULL, 0); break;
    case 18: r = coil_tc_wait4(-1, NULL, WNOHANG); break;
    case 19: r = coil_tc_wait4(-1, NULL, 0); break;
    case 20: r = coil_tc_waitid_all(WEXITED | WNOHANG); break;
    case 21: r = coil_tc_waitid_all(WEXITED); break;
    case 22: r = coil_tc_ppoll(NULL, 0, &neg); break;
    case 23: r = coil_tc_pselect(0, NULL, NULL, NULL, &neg_ns); break;
    case 24: r = coil_tc_recvmmsg(x->dgram[0], vec, 1, 0, (struct timespec *)&neg); break;
    case 25: r = coil_tc_pwritev(x->file, iov, -1, 0); break;
    case 26: r = coil_tc_preadv2(x->pipe[0], iov, 1, 0, RWF_NOWAIT); break;
    case 27: r = coil_tc_pwritev2(x->file, iov, 1, -2, 0); break;
    case 28: r = coil_tc_dup3(x->pipe[0], x->file, O_NONBLOCK); break;
    }
    return (struct answer){r, errno};
}

static void edges_main(void *arg) {
    struct edges *x = arg;
    for (int i = 0; i < EDGES; i++)
        x->coil[i] = edge(x, i);
}

static void test_invalid_arguments_as_libc(void **state) {
    (void)state;
    struct edges x;
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, x.dgram), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, x.stream), 0);
    assert_int_equal(pipe(x.pipe), 0);
    char path[] = "./coil-edges-XXXXXX";
    x.file = mkstemp(path);
    assert_true(x.file >= 0);
    unlink(path);
    for (int i = 0; i < EDGES; i++)
        x.libc[i] = edge(&x, i);
    COIL_RUN_CHECKED(edges_main, &x);
    for (int i = 0; i < EDGES; i++) {
        if (x.libc[i].r != x.coil[i].r || x.libc[i].err != x.coil[i].err)
            fail_msg("%s: libc %ld errno %d, in a tasklet %ld errno %d", edge_names[i], x.libc[i].r,
                     x.libc[i].err, x.coil[i].r, x.coil[i].err);
    }
    /* The exact answers, which the comparison alone would not pin down. */
    for (int i = 0; i < EDGES; i++) {
        struct answer want = edge_want[i];
        /* qemu-user 7.2 fails preadv2 with any flag set (EOPNOTSUPP), with
         * or without coil (test_install_pread.c). */
        if (i == 26 && coil_test_under_qemu()) want.err = EOPNOTSUPP;
        if (x.coil[i].r != want.r || x.coil[i].err != want.err)
            fail_msg("%s: %ld errno %d, want %ld errno %d", edge_names[i], x.coil[i].r,
                     x.coil[i].err, want.r, want.err);
    }
    close(x.file);
    close(x.stream[0]);
    close(x.stream[1]);
    close(x.pipe[0]);
    close(x.pipe[1]);
    close(x.dgram[0]);
    close(x.dgram[1]);
}

/* ---- getaddrinfo of literals, as libc answers ----------------------------------- */

/* Queries of literal hosts that coil answers on the tasklet's thread and
 * queries it sends to the offload pool (no hints, any socket type,
 * AI_ADDRCONFIG, no host, a host that is not a literal): inside a tasklet
 * the same answer as outside coil_run, entry by entry. */
enum { QUERIES = 7 };

struct gai {
    char libc[QUERIES][512], coil[QUERIES][512];
};

static void gai_describe(int i, char *out, size_t cap) {
    struct addrinfo tcp = {.ai_socktype = SOCK_STREAM}, any = {0},
                    cfg = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_ADDRCONFIG},
                    passive = {.ai_socktype = SOCK_DGRAM, .ai_flags = AI_PASSIVE},
                    numeric = {.ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST};
    static const char *const hosts[QUERIES] = {"127.0.0.1", "127.0.0.1", "::1",      "127.0.0.1",
                                               NULL,        "localhost", "not-an-ip"};
    const struct addrinfo *hints[QUERIES] = {&tcp, NULL, &any, &cfg, &passive, &tcp, &numeric};
    struct addrinfo *res = NULL;
    int rc = coil_tc_getaddrinfo(hosts[i], "8080", hints[i], &res);
    size_t n = (size_t)snprintf(out, cap, "rc %d:", rc);
    for (struct addrinfo *a = rc == 0 ? res : NULL; a && n < cap; a = a->ai_next) {
        char host[64] = "?";
        int port = 0;
        if (a->ai_family == AF_INET) {
            struct sockaddr_in *in = (struct sockaddr_in *)a->ai_addr;
            inet_ntop(AF_INET, &in->sin_addr, host, sizeof host);
            port = ntohs(in->sin_port);
        } else if (a->ai_family == AF_INET6) {
            struct sockaddr_in6 *in = (struct sockaddr_in6 *)a->ai_addr;
            inet_ntop(AF_INET6, &in->sin6_addr, host, sizeof host);
            port = ntohs(in->sin6_port);
        }
        n += (size_t)snprintf(out + n, cap - n, " [%d %d %d %s %d]", a->ai_family, a->ai_socktype,
                              a->ai_protocol, host, port);
    }
    if (rc == 0) freeaddrinfo(res);
}

static void gai_main(void *arg) {
    struct gai *g = arg;
    for (int i = 0; i < QUERIES; i++)
        gai_describe(i, g->coil[i], sizeof g->coil[i]);
}

static void test_getaddrinfo_literals_as_libc(void **state) {
    (void)state;
    struct gai g;
    for (int i = 0; i < QUERIES; i++)
        gai_describe(i, g.libc[i], sizeof g.libc[i]);
    COIL_RUN_CHECKED(gai_main, &g);
    for (int i = 0; i < QUERIES; i++)
        if (strcmp(g.libc[i], g.coil[i]) != 0)
            fail_msg("query %d: libc \"%s\", in a tasklet \"%s\"", i, g.libc[i], g.coil[i]);
    assert_string_equal(g.coil[0], "rc 0: [2 1 6 127.0.0.1 8080]");
    assert_int_equal(strncmp(g.coil[6], "rc -2:", 6), 0); /* EAI_NONAME */
}

/* ---- recvmmsg and sendmmsg ------------------------------------------------------ */

struct mm {
    int sv[2];
    bool second_sent;
};

static void send_second_later(void *arg) {
    struct mm *m = arg;
    coil_sleep(MS(100));
    m->second_sent = true;
    EXPECT_EQ(coil_tc_send(m->sv[1], "2", 1, 0), 1);
}

static void recvmmsg_main(void *arg) {
    struct mm *m = arg;
    char bufs[4][8];
    struct iovec iov[4];
    struct mmsghdr vec[4];
    for (int i = 0; i < 4; i++) {
        iov[i] = (struct iovec){bufs[i], sizeof bufs[i]};
        vec[i] = (struct mmsghdr){.msg_hdr = {.msg_iov = &iov[i], .msg_iovlen = 1}};
    }
    /* sendmmsg: two messages, each whole */
    struct iovec out[2] = {{"one", 3}, {"three", 5}};
    struct mmsghdr sent[2] = {{.msg_hdr = {.msg_iov = &out[0], .msg_iovlen = 1}},
                              {.msg_hdr = {.msg_iov = &out[1], .msg_iovlen = 1}}};
    EXPECT_EQ(coil_tc_sendmmsg(m->sv[1], sent, 2, 0), 2);
    EXPECT_EQ(sent[0].msg_len, 3);
    EXPECT_EQ(sent[1].msg_len, 5);
    EXPECT_EQ(coil_tc_recvmmsg(m->sv[0], vec, 4, MSG_WAITFORONE, NULL), 2);
    EXPECT(vec[0].msg_len == 3 && memcmp(bufs[0], "one", 3) == 0);
    EXPECT(vec[1].msg_len == 5 && memcmp(bufs[1], "three", 5) == 0);

    /* MSG_WAITFORONE: parks until one has come, then takes what is there */
    coil_id later = coil_spawn(send_second_later, m, NULL);
    EXPECT_EQ(coil_tc_send(m->sv[1], "1", 1, 0), 1);
    EXPECT_EQ(coil_tc_recvmmsg(m->sv[0], vec, 4, MSG_WAITFORONE, NULL), 1);
    EXPECT(!m->second_sent);
    /* without it, the timeout ends the wait for the rest: the count so far */
    struct timespec ts = {0, 300000000};
    EXPECT_EQ(coil_tc_recvmmsg(m->sv[0], vec, 4, 0, &ts), 1); /* the second, then 300 ms */
    EXPECT(m->second_sent);
    EXPECT_EQ(bufs[0][0], '2');
    EXPECT_EQ(coil_join(later, COIL_FOREVER), 0);

    /* MSG_DONTWAIT, nothing there: libc's EAGAIN at once */
    errno = 0;
    EXPECT_EQ(coil_tc_recvmmsg(m->sv[0], vec, 4, MSG_DONTWAIT, NULL), -1);
    EXPECT_EQ(errno, EAGAIN);
    /* SO_RCVTIMEO and nothing: EAGAIN after it */
    struct timeval tv = {0, 30000};
    EXPECT_EQ(coil_tc_setsockopt(m->sv[0], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv), 0);
    int64_t t0 = coil_now();
    errno = 0;
    EXPECT_EQ(coil_tc_recvmmsg(m->sv[0], vec, 4, 0, NULL), -1);
    EXPECT_EQ(errno, EAGAIN);
    EXPECT(coil_now() - t0 >= MS(30));
}

static void test_recvmmsg_sendmmsg(void **state) {
    (void)state;
    struct mm m = {0};
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, m.sv), 0);
    COIL_RUN_CHECKED(recvmmsg_main, &m);
    close(m.sv[0]);
    close(m.sv[1]);
}

/* ---- readv/writev on a pipe, select over many fds ------------------------------ */

struct writer {
    int fd;
    bool wrote;
};

static void write_later(void *arg) {
    struct writer *w = arg;
    coil_sleep(MS(20));
    w->wrote = true;
    EXPECT_EQ(coil_tc_write(w->fd, "xyz", 3), 3);
}

static void vector_main(void *arg) {
    int *p = arg;
    struct writer w = {p[1], false};
    coil_id id = coil_spawn(write_later, &w, NULL);
    char a[2], b[4];
    struct iovec r[2] = {{a, 2}, {b, 4}};
    EXPECT_EQ(coil_tc_readv(p[0], r, 2), 3); /* parks until the writer */
    EXPECT(w.wrote);
    EXPECT(memcmp(a, "xy", 2) == 0 && b[0] == 'z');
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    struct iovec v[3] = {{"ab", 2}, {NULL, 0}, {"cde", 3}};
    EXPECT_EQ(coil_tc_writev(p[1], v, 3), 5);
    char all[8] = {0};
    EXPECT_EQ(coil_tc_read(p[0], all, sizeof all), 5);
    EXPECT(memcmp(all, "abcde", 5) == 0);
}

static void test_readv_writev_pipe(void **state) {
    (void)state;
    int p[2];
    assert_int_equal(pipe(p), 0);
    COIL_RUN_CHECKED(vector_main, p);
    close(p[0]);
    close(p[1]);
}

enum { PIPES = 70 };

struct many {
    int p[PIPES][2];
};

static void select_main(void *arg) {
    struct many *m = arg;
    int nfds = 0;
    fd_set rd, ex;
    FD_ZERO(&rd);
    FD_ZERO(&ex);
    for (int i = 0; i < PIPES; i++) {
        FD_SET(m->p[i][0], &rd);
        FD_SET(m->p[i][0], &ex);
        if (m->p[i][0] >= nfds) nfds = m->p[i][0] + 1;
    }
    /* nothing comes: 0 after the timeout, no time left in tv */
    fd_set rd0 = rd, ex0 = ex;
    struct timeval tv = {0, 20000};
    EXPECT_EQ(coil_tc_select(nfds, &rd, NULL, &ex, &tv), 0);
    EXPECT(tv.tv_sec == 0 && tv.tv_usec == 0);
    /* the last pipe gets a byte later: only it is reported */
    rd = rd0;
    ex = ex0;
    struct writer w = {m->p[PIPES - 1][1], false};
    coil_id id = coil_spawn(write_later, &w, NULL);
    EXPECT_EQ(coil_tc_select(nfds, &rd, NULL, &ex, NULL), 1);
    EXPECT(w.wrote);
    for (int i = 0; i < PIPES; i++) {
        EXPECT_EQ(FD_ISSET(m->p[i][0], &rd) != 0, i == PIPES - 1);
        EXPECT(!FD_ISSET(m->p[i][0], &ex));
    }
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
}

static void test_select_many_fds(void **state) {
    (void)state;
    struct many m;
    for (int i = 0; i < PIPES; i++)
        assert_int_equal(pipe(m.p[i]), 0);
    COIL_RUN_CHECKED(select_main, &m);
    for (int i = 0; i < PIPES; i++) {
        close(m.p[i][0]);
        close(m.p[i][1]);
    }
}

/* ---- the _FORTIFY_SOURCE entry points --------------------------------------------- */

struct chk {
    int pipe[2], stream[2], dgram[2], file;
};

static void chk_main(void *arg) {
    struct chk *c = arg;
    char buf[8];
    struct writer w = {c->pipe[1], false};
    coil_id id = coil_spawn(write_later, &w, NULL);
    EXPECT_EQ(coil_tc_read_chk(c->pipe[0], buf, 3, sizeof buf), 3);
    EXPECT(w.wrote && memcmp(buf, "xyz", 3) == 0);
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);

    w = (struct writer){c->stream[1], false};
    id = coil_spawn(write_later, &w, NULL);
    EXPECT_EQ(coil_tc_recv_chk(c->stream[0], buf, 3, sizeof buf, MSG_WAITALL), 3);
    EXPECT(w.wrote && memcmp(buf, "xyz", 3) == 0);
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);

    w = (struct writer){c->dgram[1], false};
    id = coil_spawn(write_later, &w, NULL);
    struct sockaddr_storage from;
    socklen_t len = sizeof from;
    EXPECT_EQ(coil_tc_recvfrom_chk(c->dgram[0], buf, sizeof buf, sizeof buf, 0,
                                   (struct sockaddr *)&from, &len),
              3);
    EXPECT(w.wrote && memcmp(buf, "xyz", 3) == 0);
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);

    EXPECT_EQ(coil_tc_pread_chk(c->file, buf, 4, 2, sizeof buf), 4);
    EXPECT(memcmp(buf, "cdef", 4) == 0);

    struct pollfd p = {.fd = c->pipe[0], .events = POLLIN};
    w = (struct writer){c->pipe[1], false};
    id = coil_spawn(write_later, &w, NULL);
    EXPECT_EQ(coil_tc_poll_chk(&p, 1, -1, sizeof p), 1);
    EXPECT(w.wrote && (p.revents & POLLIN));
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    EXPECT_EQ(coil_tc_read(c->pipe[0], buf, sizeof buf), 3);

    p.revents = 0;
    w = (struct writer){c->pipe[1], false};
    id = coil_spawn(write_later, &w, NULL);
    EXPECT_EQ(coil_tc_ppoll_chk(&p, 1, NULL, sizeof p), 1);
    EXPECT(w.wrote && (p.revents & POLLIN));
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
}

static void chk_open(struct chk *c) {
    assert_int_equal(pipe(c->pipe), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, c->stream), 0);
    assert_int_equal(socketpair(AF_UNIX, SOCK_DGRAM, 0, c->dgram), 0);
    char path[] = "./coil-chk-XXXXXX";
    c->file = mkstemp(path);
    assert_true(c->file >= 0);
    unlink(path);
    assert_int_equal(coil_tc_write(c->file, "abcdefgh", 8), 8);
}

static void chk_close(struct chk *c) {
    close(c->pipe[0]);
    close(c->pipe[1]);
    close(c->stream[0]);
    close(c->stream[1]);
    close(c->dgram[0]);
    close(c->dgram[1]);
    close(c->file);
}

static void test_chk_entry_points_park(void **state) {
    (void)state;
    struct chk c;
    chk_open(&c);
    COIL_RUN_CHECKED(chk_main, &c);
    chk_close(&c);
}

/* Each overflowing call, in a tasklet of a child of its own: glibc's
 * __chk_fail ends it with SIGABRT, as without coil. */
struct overflow {
    struct chk c;
    int which;
};

static void overflow_main(void *arg) {
    struct overflow *o = arg;
    char buf[4];
    struct pollfd p[1] = {{.fd = o->c.pipe[0], .events = POLLIN}};
    struct timespec ts = {0, 1000};
    switch (o->which) {
    case 0: coil_tc_read_chk(o->c.pipe[0], buf, 8, sizeof buf); break;
    case 1: coil_tc_recv_chk(o->c.stream[0], buf, 8, sizeof buf, 0); break;
    case 2: coil_tc_recvfrom_chk(o->c.dgram[0], buf, 8, sizeof buf, 0, NULL, NULL); break;
    case 3: coil_tc_pread_chk(o->c.file, buf, 8, 0, sizeof buf); break;
    case 4: coil_tc_poll_chk(p, 2, 0, sizeof p); break;
    case 5: coil_tc_ppoll_chk(p, 2, &ts, sizeof p); break;
    }
}

static void overflow_child(void *arg) {
    signal(SIGABRT, SIG_DFL);
    setenv("LIBC_FATAL_STDERR_", "1", 1); /* glibc's message to stderr, not a tty */
    coil_run(overflow_main, arg);
    _exit(0); /* not reached when the check works */
}

static void test_chk_overflow_aborts(void **state) {
    (void)state;
    static const char *const names[] = {"__read_chk",  "__recv_chk", "__recvfrom_chk",
                                        "__pread_chk", "__poll_chk", "__ppoll_chk"};
    for (int i = 0; i < 6; i++) {
        struct overflow o = {.which = i};
        chk_open(&o.c);
        struct coil_test_child child;
        coil_test_fork_run(&child, overflow_child, &o, 20000);
        if (!coil_test_child_signaled(&child, SIGABRT) ||
            !strstr(child.err ? child.err : "", "buffer overflow detected")) {
            coil_test_child_describe(&child);
            fail_msg("%s with a length larger than its buffer: not glibc's abort", names[i]);
        }
        coil_test_child_free(&child);
        chk_close(&o.c);
    }
}

static int group_setup(void **state) {
    (void)state;
    return coil_install() == 0 ? 0 : -1;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_invalid_arguments_as_libc),
        cmocka_unit_test(test_getaddrinfo_literals_as_libc),
        cmocka_unit_test(test_recvmmsg_sendmmsg),
        cmocka_unit_test(test_readv_writev_pipe),
        cmocka_unit_test(test_select_many_fds),
        cmocka_unit_test(test_chk_entry_points_park),
        cmocka_unit_test(test_chk_overflow_aborts),
    };
    coil_test_apply_filter();
    return cmocka_run_group_tests(tests, group_setup, NULL);
}
