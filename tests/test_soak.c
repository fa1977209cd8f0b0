/* The chaos soak: for a bounded time, thousands of tasklets do random things
 * at once against a server in the same process, while a killer kills them at
 * random moments, and the invariants are checked as they go:
 *
 * - echo: dial the server, send random sizes of a pattern in chunks, read
 *   each chunk back and compare every byte; deadlines from 1 ms to 5 s;
 * - close while waiting: one tasklet waits in a recv, another closes the fd
 *   under it (the waiter must get -EBADF);
 * - channel traffic: producers and consumers on one buffered channel, with
 *   deadlines: what was sent equals what was received plus what is left;
 * - offload: a checksum computed on the offload pool, checked;
 * - churn: a burst of short tasklets spawned and joined;
 * - sleep: a random sleep.
 *
 * Every call must end with its result or with a documented error (a
 * deadline's -ETIMEDOUT, a kill's -ECANCELED, a close's -EBADF; a server
 * handler also sees its client go: -ECONNRESET, -EPIPE); anything else is a
 * failure, printed with the kind and the error. When the time is up the
 * workers finish, the server closes, and the process's open fds are counted:
 * they must be back to what they were before the traffic started. RSS is
 * sampled every 100 ms and must stay under a bound. Leaks of memory and
 * stacks are what the ASan and Valgrind stages of the suite check.
 *
 * Runs 30 s on each backend in make check (natively and under ASan), 10 s
 * under ThreadSanitizer (the offload pool is threads), 5 s with fewer
 * tasklets under Valgrind; `test_soak SECONDS` runs longer. It prints the
 * count of operations of each kind and the operations per second. */
// coil-test: tsan (the offload pool's worker threads)
#include "coil_test.h"

#include <netinet/in.h>
#include <sys/socket.h>

enum kind { ECHO, CLOSE_WAIT, CHAN_SEND, CHAN_RECV, OFFLOAD, CHURN, SLEEP, NKINDS };
static const char *const kind_name[NKINDS] = {
    "echo", "close-while-waiting", "channel send", "channel recv", "offload", "churn", "sleep"};

#define SLOTS     4096
#define CHUNK_MAX 16384

struct soak {
    int64_t end;          /* coil_now() when traffic stops */
    int target;           /* workers alive at once */
    char port[16];        /* the server's */
    int listener;         /* the server's listening socket */
    coil_chan *ch;        /* the channel traffic's */
    coil_id slots[SLOTS]; /* live workers' ids, for the killer */
    int live;             /* workers alive */
    int handlers;         /* server handlers alive */
    bool stop;            /* traffic has stopped */
    /* counts */
    long ops[NKINDS], cancelled[NKINDS], timedout[NKINDS], kills, bytes;
    int failures;
    uint64_t sent_sum, recv_sum;
    long sent_n, recv_n;
    long rss_max_kb, rss_base_kb;
    int fds_base;
    char backend[16];
};

static struct soak S;

static void soak_fail(enum kind k, const char *what, long long got) {
    S.failures++;
    if (S.failures <= 20)
        fprintf(stderr, "soak: %s: %s returned %lld (%s)\n", kind_name[k], what, got,
                got < 0 ? strerror((int)-got) : "unexpected");
}

/* An error a kill or a deadline explains: counted, not a failure. */
static bool expected(enum kind k, long long rc) {
    if (rc == -ECANCELED) {
        S.cancelled[k]++;
        return true;
    }
    if (rc == -ETIMEDOUT) {
        S.timedout[k]++;
        return true;
    }
    return false;
}

static uint64_t next_rand(uint64_t *x) {
    *x ^= *x << 13;
    *x ^= *x >> 7;
    *x ^= *x << 17;
    return *x;
}

static uint64_t seed_here(void) {
    return ((uint64_t)coil_now() * 0x9E3779B97F4A7C15ull ^ (uint64_t)coil_self() << 32) | 1;
}

static long rss_kb(void) {
    FILE *f = fopen("/proc/self/statm", "r");
    long pages = 0, resident = 0;
    if (!f) return -1;
    if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = -1;
    fclose(f);
    return resident * (sysconf(_SC_PAGESIZE) / 1024);
}

static unsigned char pattern(uint64_t seed, size_t i) {
    return (unsigned char)(seed >> (i % 7 * 8) ^ i * 31);
}

/* ---- the server -------------------------------------------------------- */

static void handler(void *arg) {
    int fd = (int)(intptr_t)arg;
    char buf[CHUNK_MAX];
    for (;;) {
        ssize_t n = coil_recv(fd, buf, sizeof buf, 0);
        if (n == 0) break;
        if (n < 0) {
            if (n != -ECONNRESET && n != -ECANCELED) soak_fail(ECHO, "server recv", n);
            break;
        }
        ssize_t w = coil_sendall(fd, buf, (size_t)n, MSG_NOSIGNAL, COIL_FOREVER);
        if (w != n) {
            if (w != -ECONNRESET && w != -EPIPE && w != -ECANCELED)
                soak_fail(ECHO, "server send", w);
            break;
        }
    }
    coil_close(fd);
    S.handlers--;
}

static void acceptor(void *arg) {
    (void)arg;
    for (;;) {
        int fd = coil_accept(S.listener, NULL, NULL);
        if (fd == -EBADF) return; /* closed at the end */
        if (fd < 0) {
            if (fd != -ECANCELED) soak_fail(ECHO, "accept", fd);
            return;
        }
        S.handlers++;
        if (coil_spawn(handler, (void *)(intptr_t)fd, &(coil_spawn_opts){.stack_size = 64 * 1024}) <
            0) {
            soak_fail(ECHO, "spawn of a handler", -1);
            coil_close(fd);
            S.handlers--;
        }
    }
}

/* ---- the workers ------------------------------------------------------- */

static void do_echo(uint64_t *r) {
    int64_t deadline =
        coil_now() + (next_rand(r) % 8 == 0 ? (int64_t)(next_rand(r) % 2000) * 1000 : 5 * COIL_SEC);
    int fd = coil_dial("127.0.0.1", S.port, SOCK_STREAM, deadline);
    if (fd < 0) {
        if (!expected(ECHO, fd)) soak_fail(ECHO, "dial", fd);
        return;
    }
    uint64_t seed = next_rand(r);
    size_t size = next_rand(r) % 4 == 0 ? next_rand(r) % 65536 + 1 : next_rand(r) % 512 + 1;
    unsigned char out[CHUNK_MAX], in[CHUNK_MAX];
    for (size_t off = 0; off < size;) {
        size_t len = size - off;
        if (len > CHUNK_MAX) len = CHUNK_MAX;
        len = next_rand(r) % len + 1;
        for (size_t i = 0; i < len; i++)
            out[i] = pattern(seed, off + i);
        ssize_t w = coil_sendall(fd, out, len, MSG_NOSIGNAL, deadline);
        if (w != (ssize_t)len) {
            if (!expected(ECHO, w)) soak_fail(ECHO, "send", w);
            goto done;
        }
        for (size_t got = 0; got < len;) {
            ssize_t n = coil_recv_dl(fd, in + got, len - got, 0, deadline);
            if (n <= 0) {
                if (!expected(ECHO, n))
                    soak_fail(ECHO, n == 0 ? "recv (end of stream)" : "recv", n);
                goto done;
            }
            for (ssize_t i = 0; i < n; i++)
                if (in[got + (size_t)i] != pattern(seed, off + got + (size_t)i)) {
                    soak_fail(ECHO, "a byte that arrived is not the byte sent",
                              (long long)(off + got));
                    goto done;
                }
            got += (size_t)n;
            S.bytes += n;
        }
        off += len;
    }
    /* The server closes first (its side keeps TIME_WAIT, not the client's
     * ephemeral port): end of stream after the shutdown. */
    coil_shutdown(fd, SHUT_WR);
    ssize_t n = coil_recv_dl(fd, in, 1, 0, deadline);
    if (n != 0 && !expected(ECHO, n)) soak_fail(ECHO, "recv of the end of stream", n);
    S.ops[ECHO]++;
done:
    coil_close(fd);
}

struct waiter {
    int fd;
    bool started;
    ssize_t rc;
};

static void close_waiter(void *arg) {
    struct waiter *w = arg;
    char c;
    w->started = true; /* and parks in the recv before anything else runs */
    w->rc = coil_recv(w->fd, &c, 1, 0);
}

static void do_close_wait(uint64_t *r) {
    int sv[2];
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) {
        soak_fail(CLOSE_WAIT, "socketpair", -errno);
        return;
    }
    struct waiter w = {.fd = sv[0], .started = false, .rc = 1};
    coil_id id = coil_spawn(close_waiter, &w, &(coil_spawn_opts){.stack_size = 32 * 1024});
    if (id < 0) {
        soak_fail(CLOSE_WAIT, "spawn", id);
        close(sv[0]);
        close(sv[1]);
        return;
    }
    /* The close must come while the waiter waits: before it starts, the
     * number could be reused by another worker's socket by then. */
    while (!w.started)
        if (coil_yield() != 0) { /* killed: cannot yield, so the waiter goes too */
            coil_kill(id);
            coil_join(id, COIL_FOREVER);
            coil_close(sv[0]);
            coil_close(sv[1]);
            S.cancelled[CLOSE_WAIT]++;
            return;
        }
    coil_sleep((int64_t)(next_rand(r) % 2000) * 1000); /* killed: closes at once */
    int rc = coil_close(sv[0]);
    if (rc != 0) soak_fail(CLOSE_WAIT, "close", rc);
    rc = coil_join(id, COIL_FOREVER); /* not cut short by a kill */
    if (rc != 0) soak_fail(CLOSE_WAIT, "join", rc);
    /* The waiter may be killed too (by the killer, or at shutdown). */
    if (w.rc == -EBADF || w.rc == -ECANCELED)
        S.ops[CLOSE_WAIT]++;
    else
        soak_fail(CLOSE_WAIT, "recv on the closed fd", w.rc);
    coil_close(sv[1]);
}

static void do_chan(uint64_t *r, bool send) {
    int64_t deadline = coil_now() + (int64_t)(next_rand(r) % 3000) * 1000;
    for (int i = 0, n = (int)(next_rand(r) % 50) + 1; i < n; i++) {
        uint64_t v = next_rand(r) >> 8;
        int rc =
            send ? coil_chan_send_dl(S.ch, &v, deadline) : coil_chan_recv_dl(S.ch, &v, deadline);
        if (rc != 0) {
            if (!expected(send ? CHAN_SEND : CHAN_RECV, rc))
                soak_fail(send ? CHAN_SEND : CHAN_RECV, "", rc);
            return;
        }
        if (send) {
            S.sent_sum += v;
            S.sent_n++;
            S.ops[CHAN_SEND]++;
        } else {
            S.recv_sum += v;
            S.recv_n++;
            S.ops[CHAN_RECV]++;
        }
    }
}

struct sum_job {
    unsigned char data[256];
    unsigned sum;
};

static int sum_on_worker(void *arg) {
    struct sum_job *j = arg;
    unsigned s = 0;
    for (size_t i = 0; i < sizeof j->data; i++)
        s = s * 31 + j->data[i];
    j->sum = s;
    return (int)(s & 0x7fff);
}

static void do_offload(uint64_t *r) {
    struct sum_job j = {.sum = 0};
    unsigned want = 0;
    for (size_t i = 0; i < sizeof j.data; i++) {
        j.data[i] = (unsigned char)next_rand(r);
        want = want * 31 + j.data[i];
    }
    int rc = coil_offload(sum_on_worker, &j);
    if (rc == -ECANCELED) {
        S.cancelled[OFFLOAD]++;
        return;
    }
    if (rc != (int)(want & 0x7fff) || j.sum != want)
        soak_fail(OFFLOAD, "offload's checksum", rc);
    else
        S.ops[OFFLOAD]++;
}

static void churn_child(void *arg) {
    (void)arg;
    coil_yield();
}

static void do_churn(uint64_t *r) {
    coil_id ids[20];
    int n = (int)(next_rand(r) % 20) + 1, made = 0;
    for (; made < n; made++) {
        ids[made] = coil_spawn(churn_child, NULL, &(coil_spawn_opts){.stack_size = 16 * 1024});
        if (ids[made] < 0) {
            soak_fail(CHURN, "spawn", ids[made]);
            break;
        }
    }
    for (int i = 0; i < made; i++) {
        int rc = coil_join(ids[i], COIL_FOREVER);
        if (rc != 0) soak_fail(CHURN, "join", rc);
    }
    S.ops[CHURN] += made;
}

static void do_sleep(uint64_t *r) {
    int rc = coil_sleep((int64_t)(next_rand(r) % 5000) * 1000);
    if (rc == 0)
        S.ops[SLEEP]++;
    else if (!expected(SLEEP, rc))
        soak_fail(SLEEP, "sleep", rc);
}

static void worker(void *arg) {
    int slot = (int)(intptr_t)arg;
    uint64_t r = seed_here();
    switch (next_rand(&r) % 10) {
    case 0:
    case 1:
    case 2: do_echo(&r); break;
    case 3: do_close_wait(&r); break;
    case 4: do_chan(&r, true); break;
    case 5: do_chan(&r, false); break;
    case 6: do_offload(&r); break;
    case 7: do_churn(&r); break;
    default: do_sleep(&r); break;
    }
    S.slots[slot] = 0;
    S.live--;
}

static void killer(void *arg) {
    (void)arg;
    uint64_t r = seed_here();
    while (!S.stop) {
        if (coil_sleep(200 * COIL_USEC) != 0) return;
        for (int i = 0; i < 4; i++) {
            coil_id id = S.slots[next_rand(&r) % SLOTS];
            if (id > 0 && coil_kill(id) == 0) S.kills++;
        }
    }
}

static void sampler(void *arg) {
    (void)arg;
    while (!S.stop) {
        long kb = rss_kb();
        if (kb > S.rss_max_kb) S.rss_max_kb = kb;
        if (coil_sleep(100 * COIL_MSEC) != 0) return;
    }
}

/* Waits (a bounded time) until *count reaches 0. */
static bool drained(const int *count, int64_t limit) {
    int64_t until = coil_now() + limit;
    while (*count > 0 && coil_now() < until)
        coil_sleep(COIL_MSEC);
    return *count == 0;
}

static void soak_main(void *arg) {
    (void)arg;
    S.listener = coil_listen_on("127.0.0.1", "0", 4096);
    assert_true(S.listener >= 0);
    struct sockaddr_in a;
    socklen_t alen = sizeof a;
    assert_int_equal(getsockname(S.listener, (struct sockaddr *)&a, &alen), 0);
    snprintf(S.port, sizeof S.port, "%u", ntohs(a.sin_port));
    assert_int_equal(coil_chan_open(&S.ch, sizeof(uint64_t), 64), 0);
    snprintf(S.backend, sizeof S.backend, "%s", coil_backend_name());
    coil_id acc = coil_spawn(acceptor, NULL, NULL);
    assert_true(acc > 0);

    /* One worker of each kind first, so that what coil opens once (the
     * offload pool's threads and eventfd) is open before the count. */
    uint64_t r = seed_here();
    do_echo(&r);
    do_offload(&r);
    do_close_wait(&r);
    S.fds_base = coil_test_open_fds();
    S.rss_base_kb = rss_kb();
    coil_id kill_id = coil_spawn(killer, NULL, NULL);
    coil_id sample_id = coil_spawn(sampler, NULL, NULL);
    assert_true(kill_id > 0 && sample_id > 0);

    int next_slot = 0;
    while (coil_now() < S.end) {
        while (S.live < S.target) {
            while (S.slots[next_slot])
                next_slot = (next_slot + 1) % SLOTS;
            coil_id id = coil_spawn(worker, (void *)(intptr_t)next_slot,
                                    &(coil_spawn_opts){.stack_size = 96 * 1024});
            if (id < 0) {
                soak_fail(SLEEP, "spawn of a worker", id);
                break;
            }
            S.slots[next_slot] = id;
            S.live++;
        }
        coil_sleep(COIL_MSEC);
    }
    S.stop = true;
    coil_join(kill_id, COIL_FOREVER);
    coil_join(sample_id, COIL_FOREVER);
    if (!drained(&S.live, 30 * COIL_SEC))
        soak_fail(SLEEP, "workers still alive 30 s after the end", S.live);
    coil_close(S.listener); /* the acceptor wakes with -EBADF */
    coil_join(acc, COIL_FOREVER);
    if (!drained(&S.handlers, 30 * COIL_SEC))
        soak_fail(ECHO, "server handlers still alive 30 s after the end", S.handlers);
    uint64_t v;
    while (coil_chan_recv_dl(S.ch, &v, 0) == 0) {
        S.recv_sum += v;
        S.recv_n++;
    }
    if (S.sent_n != S.recv_n || S.sent_sum != S.recv_sum)
        soak_fail(CHAN_RECV, "elements received (sent - received)", S.sent_n - S.recv_n);
    coil_chan_free(S.ch);
    int fds = coil_test_open_fds() + 1; /* the listener, counted before, is closed now */
    if (fds != S.fds_base)
        soak_fail(ECHO, "open fds after the traffic (minus before)", fds - S.fds_base);
}

static int soak_seconds = 0;

static void test_soak(void **state) {
    (void)state;
    int seconds = 30, target = 2000;
    long rss_limit_kb = 512 * 1024;
    if (coil_test_under_valgrind()) {
        seconds = 5;
        target = 200;
    } else if (coil_test_under_tsan() || coil_test_under_qemu()) {
        seconds = 10;
        target = 500;
    }
    if (soak_seconds > 0) seconds = soak_seconds;
    S.target = target;
    /* Each echo holds two fds (both ends are in this process). */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && (rlim_t)S.target * 2 + 100 > rl.rlim_cur)
        S.target = (int)((rl.rlim_cur - 100) / 2);
    S.end = coil_now() + (int64_t)seconds * COIL_SEC;
    int64_t t0 = coil_now();
    assert_int_equal(coil_run(soak_main, NULL), 0);
    double took = (double)(coil_now() - t0) / COIL_SEC;
    long total = 0;
    printf("soak: %d s, %d workers at once on %s, %ld kills\n", seconds, S.target, S.backend,
           S.kills);
    for (int k = 0; k < NKINDS; k++) {
        printf("soak: %-20s %8ld done  %6ld cancelled  %6ld timed out\n", kind_name[k], S.ops[k],
               S.cancelled[k], S.timedout[k]);
        total += S.ops[k] + S.cancelled[k] + S.timedout[k];
    }
    printf("soak: %ld operations in %.1f s: %.0f a second; %ld bytes echoed; RSS %ld -> max %ld "
           "KiB; open fds back to %d\n",
           total, took, (double)total / took, S.bytes, S.rss_base_kb, S.rss_max_kb, S.fds_base);
    assert_int_equal(S.failures, 0);
    assert_true(S.rss_max_kb - S.rss_base_kb < rss_limit_kb);
    for (int k = 0; k < NKINDS; k++)
        assert_true(S.ops[k] > 0);
}

int main(int argc, char **argv) {
    if (argc > 1) soak_seconds = atoi(argv[1]);
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_soak)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
