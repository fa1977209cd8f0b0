// coil-test: link-shared
// coil-test: tsan (two schedulers and the offload pool's workers at once)
/* The offload pool and coil_install serve every scheduler of a group. On
 * each of two schedulers at once, tasklets
 *  - read a regular file with coil_read, every byte checked (on epoll each
 *    read is a job of the offload pool; on io_uring it goes through the
 *    scheduler's own ring);
 *  - run coil_offload jobs, each result coming back to the tasklet that
 *    asked, on another thread than its scheduler's;
 *  - coil_dial a listener of scheduler 0 by the name "localhost" (its
 *    getaddrinfo runs on the pool) and echo a message of their own through
 *    it; under Valgrind by "127.0.0.1" (see test_net_dial.c,
 *    valgrind_and_the_resolver: a name leaves glibc's per-thread resolver
 *    state on a worker that never exits, reported as lost);
 *  - after coil_install, make plain blocking libc calls on loopback sockets
 *    (socket, bind, listen, accept, connect, send, recv, usleep, close): each
 *    parks its tasklet, so a peer tasklet of the same scheduler can make the
 *    call ready. Every socket has SO_RCVTIMEO 10 s: a call that blocked the
 *    thread instead would end with EAGAIN (a failure), not hang the test.
 * Each tasklet also checks that it is still on its scheduler after every
 * wait. Results are kept per scheduler and checked after the group ends.
 * This file links libcoil.so (the marker above), so its own calls are
 * diverted; an executable that binds recv and the like to a sanitizer's
 * interceptors (clang's ASan) skips the coil_install part, as test_install
 * does. */
#define _GNU_SOURCE /* dladdr */
#include "coil_test.h"

#include <arpa/inet.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <sys/socket.h>

#define NSCHED    2
#define FILE_SIZE (64 * 1024)

static int rounds(void) {
    return coil_test_under_valgrind() ? 4 : 40;
}

static char file_path[64];

static unsigned char file_byte(size_t i) {
    return (unsigned char)(coil_test_mix64(i / 8) >> (i % 8 * 8));
}

/* What one scheduler's tasklets found: written only by them, read after the
 * group has ended. */
struct side {
    int index;
    pthread_t thread;
    long file_bytes;
    int offloads_ok, dials_ok, installed_ok;
    int bad;          /* checks that failed */
    char first[160];  /* the first of them */
    bool installed;   /* run the coil_install part */
    const char *host; /* what coil_dial resolves */
    char port[16];    /* the echo listener's */
};

static struct side sides[NSCHED];

/* Returns ok; the first failed check of a side is kept. */
static bool check_at(struct side *s, bool ok, const char *what, int line) {
    if (!ok && s->bad++ == 0) snprintf(s->first, sizeof s->first, "line %d: %s", line, what);
    return ok;
}

#define CHECK(s, cond) check_at((s), (cond), #cond, __LINE__)

/* Still on its scheduler (tasklets never move) and its thread. */
static bool at_home(struct side *s) {
    return coil_sched_index() == s->index && pthread_equal(pthread_self(), s->thread);
}

/* ---- a regular file, through coil_read --------------------------------- */

static void read_file(void *arg) {
    struct side *s = arg;
    for (int r = 0; r < rounds() / 4 + 1; r++) {
        int fd = open(file_path, O_RDONLY | O_CLOEXEC);
        if (!CHECK(s, fd >= 0)) return;
        unsigned char buf[5000]; /* not a divisor of the size: reads end anywhere */
        size_t at = 0;
        ssize_t n;
        while ((n = coil_read(fd, buf, sizeof buf)) > 0) {
            for (ssize_t i = 0; i < n; i++)
                if (buf[i] != file_byte(at + (size_t)i)) {
                    CHECK(s, !"the file's bytes");
                    break;
                }
            at += (size_t)n;
            if (!CHECK(s, at_home(s))) break;
        }
        CHECK(s, n == 0);
        CHECK(s, at == FILE_SIZE);
        s->file_bytes += (long)at;
        coil_close(fd);
    }
}

/* ---- coil_offload ------------------------------------------------------ */

struct job {
    int value;
    pthread_t ran_on;
};

static int job_fn(void *arg) {
    struct job *j = arg;
    j->ran_on = pthread_self();
    usleep(200); /* long enough for the other scheduler's jobs to overlap */
    return j->value;
}

static void offload(void *arg) {
    struct side *s = arg;
    for (int r = 0; r < rounds(); r++) {
        struct job j = {.value = s->index * 100000 + r};
        int got = coil_offload(job_fn, &j);
        if (CHECK(s, got == j.value) && CHECK(s, !pthread_equal(j.ran_on, s->thread)) &&
            CHECK(s, at_home(s)))
            s->offloads_ok++;
    }
}

/* ---- coil_dial by name, to scheduler 0's echo listener ----------------- */

static void echo_conn(void *arg) {
    int fd = (int)(intptr_t)arg;
    char buf[64];
    ssize_t n;
    while ((n = coil_recv(fd, buf, sizeof buf, 0)) > 0)
        if (coil_sendall(fd, buf, (size_t)n, 0, COIL_FOREVER) < 0) break;
    coil_close(fd);
}

static void echo_listener(void *arg) {
    int lfd = (int)(intptr_t)arg;
    int fd;
    while ((fd = coil_accept(lfd, NULL, NULL)) >= 0)
        coil_spawn(echo_conn, (void *)(intptr_t)fd, NULL);
    coil_close(lfd); /* killed: -ECANCELED */
}

static void dial(void *arg) {
    struct side *s = arg;
    for (int r = 0; r < rounds(); r++) {
        int fd = coil_dial(s->host, s->port, SOCK_STREAM, coil_now() + 10 * COIL_SEC);
        if (!CHECK(s, fd >= 0) || !CHECK(s, at_home(s))) return;
        char msg[32], got[32] = {0};
        int len = snprintf(msg, sizeof msg, "side %d round %d", s->index, r);
        CHECK(s, coil_sendall(fd, msg, (size_t)len, 0, COIL_FOREVER) == len);
        CHECK(s,
              coil_recv_dl(fd, got, (size_t)len, MSG_WAITALL, coil_now() + 10 * COIL_SEC) == len);
        if (CHECK(s, memcmp(got, msg, (size_t)len) == 0)) s->dials_ok++;
        coil_close(fd);
    }
}

/* ---- plain libc calls, diverted by coil_install ------------------------- */

static void set_rcvtimeo(int fd) {
    struct timeval tv = {.tv_sec = 10};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

struct plain_peer {
    struct side *s;
    uint16_t port;
    int round;
};

/* Connects after a diverted usleep (the accept is parked by then), sends
 * its message and reads it back. */
static void plain_client(void *arg) {
    struct plain_peer *p = arg;
    struct side *s = p->s;
    usleep(2000);
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (!CHECK(s, fd >= 0)) return;
    set_rcvtimeo(fd);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons(p->port)};
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    char msg[32], got[32] = {0};
    int len = snprintf(msg, sizeof msg, "plain %d/%d", s->index, p->round);
    if (CHECK(s, connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0) &&
        CHECK(s, send(fd, msg, (size_t)len, MSG_NOSIGNAL) == len)) {
        ssize_t n = recv(fd, got, (size_t)len, MSG_WAITALL);
        if (!CHECK(s, n == len)) fprintf(stderr, "plain recv: %zd (%s)\n", n, strerror(errno));
        CHECK(s, memcmp(got, msg, (size_t)len) == 0);
    }
    CHECK(s, at_home(s));
    close(fd);
}

/* Accepts the peer's connection and echoes its message, with plain calls;
 * each of them waits for the peer, a tasklet of this same scheduler. */
static void plain_server(void *arg) {
    struct side *s = arg;
    for (int r = 0; r < rounds(); r++) {
        int lfd = socket(AF_INET, SOCK_STREAM, 0);
        if (!CHECK(s, lfd >= 0)) return;
        set_rcvtimeo(lfd); /* Linux applies it to accept too */
        struct sockaddr_in sa = {.sin_family = AF_INET};
        sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof sa;
        struct plain_peer p = {.s = s, .round = r};
        if (!CHECK(s, bind(lfd, (struct sockaddr *)&sa, sizeof sa) == 0) ||
            !CHECK(s, listen(lfd, 4) == 0) ||
            !CHECK(s, getsockname(lfd, (struct sockaddr *)&sa, &len) == 0)) {
            close(lfd);
            return;
        }
        p.port = ntohs(sa.sin_port);
        coil_id peer = coil_spawn(plain_client, &p, NULL);
        int fd = accept(lfd, NULL, NULL);
        if (CHECK(s, fd >= 0)) {
            set_rcvtimeo(fd);
            char buf[32];
            ssize_t n = recv(fd, buf, sizeof buf, 0);
            if (CHECK(s, n > 0) && CHECK(s, send(fd, buf, (size_t)n, MSG_NOSIGNAL) == n))
                s->installed_ok++;
            close(fd);
        } else {
            fprintf(stderr, "plain accept: %s\n", strerror(errno));
        }
        CHECK(s, at_home(s));
        coil_join(peer, COIL_FOREVER); /* p is in this frame */
        close(lfd);
    }
}

/* ---- the group ----------------------------------------------------------- */

/* Runs on each scheduler: every kind of work at once, then waits for it. */
static void side_main(void *arg) {
    struct side *s = arg;
    s->thread = pthread_self();
    CHECK(s, coil_sched_index() == s->index);
    coil_id ids[5];
    int n = 0;
    ids[n++] = coil_spawn(read_file, s, NULL);
    ids[n++] = coil_spawn(read_file, s, NULL);
    ids[n++] = coil_spawn(offload, s, NULL);
    ids[n++] = coil_spawn(dial, s, NULL);
    if (s->installed) ids[n++] = coil_spawn(plain_server, s, NULL);
    for (int i = 0; i < n; i++)
        CHECK(s, ids[i] > 0 && coil_join(ids[i], COIL_FOREVER) == 0);
}

static void group_main(void *arg) {
    (void)arg;
    int lfd = coil_listen_on("127.0.0.1", "0", 64);
    if (!EXPECT(lfd >= 0)) return;
    struct coil_test_addr a;
    EXPECT_EQ(coil_test_sockname(lfd, &a), 0);
    coil_id listener = coil_spawn(echo_listener, (void *)(intptr_t)lfd, NULL);
    coil_id ids[NSCHED];
    for (int i = 0; i < NSCHED; i++) {
        snprintf(sides[i].port, sizeof sides[i].port, "%u", coil_test_port(&a));
        ids[i] = coil_spawn_on(i, side_main, &sides[i], NULL);
        EXPECT(ids[i] > 0);
    }
    for (int i = 0; i < NSCHED; i++)
        EXPECT_EQ(coil_join(ids[i], COIL_FOREVER), 0);
    coil_kill(listener);
    coil_join(listener, COIL_FOREVER);
}

/* Whether this executable binds name to itself (a sanitizer's interceptor):
 * its calls of it then have no GOT entry for coil_install to rewrite. */
int main(void);
static bool bound_in_executable(const char *name) {
    void *f = dlsym(RTLD_DEFAULT, name);
    Dl_info fi, mi;
    if (!f || !dladdr(f, &fi) || !dladdr((void *)main, &mi)) return false;
    return fi.dli_fbase == mi.dli_fbase;
}

static void test_offload_and_install_on_two_schedulers(void **state) {
    (void)state;
    bool installed = true;
    static const char *const calls[] = {"socket", "bind", "listen", "accept", "connect",
                                        "send",   "recv", "close",  "usleep", NULL};
    for (const char *const *c = calls; *c; c++)
        if (bound_in_executable(*c)) {
            print_message("coil_install part skipped: this executable binds %s to itself "
                          "(a sanitizer's interceptor)\n",
                          *c);
            installed = false;
            break;
        }
    assert_int_equal(coil_install(), 0);
    for (int i = 0; i < NSCHED; i++)
        sides[i] = (struct side){.index = i,
                                 .installed = installed,
                                 .host = coil_test_under_valgrind() ? "127.0.0.1" : "localhost"};
    coil_test_reset_failures();
    int rc = coil_run_group(NSCHED, group_main, NULL);
    coil_test_assert_no_failure();
    assert_int_equal(rc, 0);
    assert_int_equal(coil_uninstall(), 0);
    for (int i = 0; i < NSCHED; i++) {
        struct side *s = &sides[i];
        if (s->bad)
            fail_msg("scheduler %d: %d check(s) failed; the first at %s", i, s->bad, s->first);
        assert_int_equal(s->file_bytes, 2L * (rounds() / 4 + 1) * FILE_SIZE);
        assert_int_equal(s->offloads_ok, rounds());
        assert_int_equal(s->dials_ok, rounds());
        assert_int_equal(s->installed_ok, installed ? rounds() : 0);
    }
}

int main(void) {
    signal(SIGPIPE, SIG_IGN);
    snprintf(file_path, sizeof file_path, "/tmp/coil-test-group-io-XXXXXX");
    int fd = mkstemp(file_path);
    if (fd < 0) {
        perror("mkstemp");
        return 1;
    }
    unsigned char *data = malloc(FILE_SIZE);
    for (size_t i = 0; data && i < FILE_SIZE; i++)
        data[i] = file_byte(i);
    bool written = data && write(fd, data, FILE_SIZE) == FILE_SIZE;
    free(data);
    close(fd);
    if (!written) {
        unlink(file_path);
        fprintf(stderr, "test_group_io: cannot write %s\n", file_path);
        return 1;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_offload_and_install_on_two_schedulers),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    unlink(file_path);
    return failed;
}
