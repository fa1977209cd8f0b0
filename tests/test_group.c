/* Groups of schedulers (coil_run_group): tasklets on several threads, and
 * channels, join, kill, spawn, deadlock and shutdown across them. */
#include "coil_test.h"

/* Also built for Windows and run under Wine (tests/win/CMakeLists.txt): the
 * cases that need a child process are POSIX only.
 *
 * coil-test: tsan: every case runs schedulers on several threads that share
 * channels, tasklets and the group's state. */
// coil-test: tsan (see above)

static long scaled(long n) {
    if (coil_test_under_valgrind()) return n / 100 > 100 ? n / 100 : 100;
    if (coil_test_under_qemu() || coil_test_under_tsan() || getenv("COIL_UNDER_WINE"))
        return n / 10;
    return n;
}

static uint64_t mix(uint64_t x) {
    x ^= x >> 33;
    x *= 0xff51afd7ed558ccdull;
    x ^= x >> 33;
    return x;
}

/* ---- basics -------------------------------------------------------------- */

struct where {
    int index, count;
    coil_id id;
};

static void report_where(void *arg) {
    struct where *w = arg;
    w->index = coil_sched_index();
    w->count = coil_sched_count();
    w->id = coil_self();
}

static void basics_main(void *arg) {
    (void)arg;
    EXPECT_EQ(coil_sched_count(), 3);
    EXPECT_EQ(coil_sched_index(), 0);
    EXPECT_EQ(coil_self(), 1);
    struct where w[6] = {{0}};
    coil_id ids[6];
    for (int i = 0; i < 6; i++) {
        ids[i] = coil_spawn_on(i % 3, report_where, &w[i], NULL);
        EXPECT(ids[i] > 0);
    }
    for (int i = 0; i < 6; i++)
        EXPECT_EQ(coil_join(ids[i], COIL_FOREVER), 0);
    for (int i = 0; i < 6; i++) {
        EXPECT_EQ(w[i].index, i % 3);
        EXPECT_EQ(w[i].count, 3);
        EXPECT_EQ(w[i].id, ids[i]);
        for (int j = 0; j < i; j++)
            EXPECT(ids[i] != ids[j]);
    }
    /* The next in turn goes round every scheduler. */
    int seen[3] = {0};
    for (int i = 0; i < 6; i++) {
        struct where x = {0};
        coil_id id = coil_spawn_on(COIL_SCHED_NEXT, report_where, &x, NULL);
        EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
        seen[x.index]++;
    }
    EXPECT_EQ(seen[0], 2);
    EXPECT_EQ(seen[1], 2);
    EXPECT_EQ(seen[2], 2);
    /* Errors. */
    EXPECT_EQ(coil_spawn_on(3, report_where, &w[0], NULL), -EINVAL);
    EXPECT_EQ(coil_spawn_on(-2, report_where, &w[0], NULL), -EINVAL);
    EXPECT_EQ(coil_spawn_on(1, NULL, NULL, NULL), -EINVAL);
    coil_spawn_opts big = {.stack_size = 1};
    EXPECT_EQ(coil_spawn_on(1, report_where, &w[0], &big), -EINVAL);
    /* A finished tasklet of another scheduler: join says 0, kill -ESRCH; an
     * id never handed out: -ESRCH for both. */
    EXPECT_EQ(coil_join(ids[1], COIL_FOREVER), 0);
    EXPECT_EQ(coil_kill(ids[1]), -ESRCH);
    EXPECT_EQ(coil_join(ids[1] + 3000, COIL_FOREVER), -ESRCH);
    EXPECT_EQ(coil_kill(ids[1] + 3000), -ESRCH);
    EXPECT_EQ(coil_run_group(2, report_where, NULL), -EBUSY);
}

static void test_basics(void **state) {
    (void)state;
    coil_test_reset_failures();
    assert_int_equal(coil_run_group(3, basics_main, NULL), 0);
    coil_test_assert_no_failure();
}

static void noop(void *arg) {
    (void)arg;
}

static void single_main(void *arg) {
    (void)arg;
    EXPECT_EQ(coil_sched_count(), 1);
    EXPECT_EQ(coil_sched_index(), 0);
    coil_id a = coil_spawn_on(0, noop, NULL, NULL);
    coil_id b = coil_spawn_on(COIL_SCHED_NEXT, noop, NULL, NULL);
    EXPECT(a > 0 && b == a + 1);
    EXPECT_EQ(coil_spawn_on(1, noop, NULL, NULL), -EINVAL);
}

static void test_single_scheduler(void **state) {
    (void)state;
    COIL_RUN_CHECKED(single_main, NULL);
    assert_int_equal(coil_sched_count(), -EPERM);
    assert_int_equal(coil_sched_index(), -EPERM);
    assert_int_equal(coil_spawn_on(0, noop, NULL, NULL), -EPERM);
    assert_int_equal(coil_run_group(2, NULL, NULL), -EINVAL);
    assert_int_equal(coil_run_group(COIL_GROUP_MAX + 1, noop, NULL), -EINVAL);
}

/* One thread per CPU by default; the group ends when its last tasklet does,
 * whichever scheduler that is on. */
static void nap(void *arg) {
    (void)arg;
    coil_sleep(20 * COIL_MSEC);
}

static void count_main(void *arg) {
    *(int *)arg = coil_sched_count();
    /* The last tasklet is on another scheduler, and outlives main. */
    if (coil_sched_count() > 1) coil_spawn_on(1, nap, NULL, NULL);
}

static void test_default_threads(void **state) {
    (void)state;
    int n = 0;
    assert_int_equal(coil_run_group(0, count_main, &n), 0);
#ifndef _WIN32
    long cpus = sysconf(_SC_NPROCESSORS_ONLN);
    assert_true(n >= 1 && n <= cpus);
#else
    assert_true(n >= 1);
#endif
}

/* ---- ping-pong ----------------------------------------------------------- */

struct pingpong {
    coil_chan *to, *back;
    long n;
    uint64_t sent, got;
};

static void pong(void *arg) {
    struct pingpong *p = arg;
    for (long i = 0; i < p->n; i++) {
        uint64_t v;
        if (!EXPECT_EQ(coil_chan_recv(p->to, &v), 0)) return;
        p->got += v;
        if (!EXPECT_EQ(coil_chan_send(p->back, &v), 0)) return;
    }
}

static void ping_main(void *arg) {
    struct pingpong *p = arg;
    coil_id id = coil_spawn_on(1, pong, p, NULL);
    for (long i = 0; i < p->n; i++) {
        uint64_t v = mix((uint64_t)i), r;
        p->sent += v;
        if (!EXPECT_EQ(coil_chan_send(p->to, &v), 0)) break;
        if (!EXPECT_EQ(coil_chan_recv(p->back, &r), 0)) break;
        if (!EXPECT_EQ(r, v)) break;
    }
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
}

static void run_pingpong(size_t cap, long n) {
    struct pingpong p = {.n = n};
    assert_int_equal(coil_chan_open(&p.to, sizeof(uint64_t), cap), 0);
    assert_int_equal(coil_chan_open(&p.back, sizeof(uint64_t), cap), 0);
    coil_test_reset_failures();
    assert_int_equal(coil_run_group(2, ping_main, &p), 0);
    coil_test_assert_no_failure();
    assert_true(p.sent == p.got);
    assert_int_equal(coil_chan_free(p.to), 0);
    assert_int_equal(coil_chan_free(p.back), 0);
}

static void test_pingpong_unbuffered(void **state) {
    (void)state;
    run_pingpong(0, scaled(1000000));
}

static void test_pingpong_buffered(void **state) {
    (void)state;
    run_pingpong(16, scaled(1000000));
}

/* A stream: a producer on each of two schedulers, consumers on the third,
 * through one buffered channel; every element arrives once. */
struct stream {
    coil_chan *ch;
    long n;
    uint64_t sum_in[2], sum_out[4];
    long count_out[4];
};

static void producer(void *arg) {
    struct stream *st = arg;
    int k = coil_sched_index() - 1;
    for (long i = 0; i < st->n; i++) {
        uint64_t v = mix((uint64_t)(i * 2 + k));
        st->sum_in[k] += v;
        if (!EXPECT_EQ(coil_chan_send(st->ch, &v), 0)) return;
    }
}

struct consumer_arg {
    struct stream *st;
    int k;
};

static void consumer(void *arg) {
    struct consumer_arg *c = arg;
    uint64_t v;
    int rc;
    while ((rc = coil_chan_recv(c->st->ch, &v)) == 0) {
        c->st->sum_out[c->k] += v;
        c->st->count_out[c->k]++;
    }
    EXPECT_EQ(rc, -EPIPE);
}

static void stream_main(void *arg) {
    struct stream *st = arg;
    coil_id p[2], c[4];
    struct consumer_arg ca[4];
    for (int k = 0; k < 4; k++) {
        ca[k] = (struct consumer_arg){st, k};
        c[k] = coil_spawn(consumer, &ca[k], NULL);
    }
    p[0] = coil_spawn_on(1, producer, st, NULL);
    p[1] = coil_spawn_on(2, producer, st, NULL);
    EXPECT_EQ(coil_join(p[0], COIL_FOREVER), 0);
    EXPECT_EQ(coil_join(p[1], COIL_FOREVER), 0);
    EXPECT_EQ(coil_chan_close(st->ch), 0);
    for (int k = 0; k < 4; k++)
        EXPECT_EQ(coil_join(c[k], COIL_FOREVER), 0);
}

static void test_stream_many_to_many(void **state) {
    (void)state;
    struct stream st = {.n = scaled(200000)};
    assert_int_equal(coil_chan_open(&st.ch, sizeof(uint64_t), 64), 0);
    coil_test_reset_failures();
    assert_int_equal(coil_run_group(3, stream_main, &st), 0);
    coil_test_assert_no_failure();
    long count = 0;
    uint64_t in = st.sum_in[0] + st.sum_in[1], out = 0;
    for (int k = 0; k < 4; k++) {
        count += st.count_out[k];
        out += st.sum_out[k];
    }
    assert_int_equal(count, 2 * st.n);
    assert_true(in == out);
    coil_chan_free(st.ch);
}

/* ---- choose over channels of three schedulers ----------------------------- */

struct tri {
    coil_chan *ch[3]; /* ch[i] is made by (first used on) scheduler i */
    coil_chan *ready;
    long n;
    long got[3];
    uint64_t sum_in, sum_out;
};

static void tri_sender(void *arg) {
    struct tri *t = arg;
    int k = coil_sched_index();
    /* bind ch[k] to this scheduler first */
    coil_chan_info info;
    EXPECT_EQ(coil_chan_getinfo(t->ch[k], &info), 0);
    int one = 1;
    EXPECT_EQ(coil_chan_send(t->ready, &one), 0);
    for (long i = 0; i < t->n; i++) {
        uint64_t v = mix((uint64_t)(i * 3 + k));
        __atomic_add_fetch(&t->sum_in, v, __ATOMIC_RELAXED);
        if (!EXPECT_EQ(coil_chan_send(t->ch[k], &v), 0)) return;
    }
    EXPECT_EQ(coil_chan_close(t->ch[k]), 0);
}

static void tri_main(void *arg) {
    struct tri *t = arg;
    coil_id ids[2];
    int one;
    /* ch[0] is this scheduler's own (bound here) */
    coil_chan_info info;
    EXPECT_EQ(coil_chan_getinfo(t->ch[0], &info), 0);
    coil_id s0 = coil_spawn(tri_sender, t, NULL);
    ids[0] = coil_spawn_on(1, tri_sender, t, NULL);
    ids[1] = coil_spawn_on(2, tri_sender, t, NULL);
    for (int i = 0; i < 3; i++)
        EXPECT_EQ(coil_chan_recv(t->ready, &one), 0);
    bool open[3] = {true, true, true};
    uint64_t v[3];
    while (open[0] || open[1] || open[2]) {
        coil_clause cl[3];
        int idx[3], m = 0;
        for (int k = 0; k < 3; k++)
            if (open[k]) {
                cl[m] = (coil_clause){.ch = t->ch[k], .op = COIL_CHOOSE_RECV, .elem = &v[k]};
                idx[m++] = k;
            }
        int r = coil_choose(cl, (size_t)m, COIL_FOREVER);
        if (!EXPECT(r >= 0 && r < m)) return;
        int k = idx[r];
        if (cl[r].result == -EPIPE) {
            open[k] = false;
            continue;
        }
        if (!EXPECT_EQ(cl[r].result, 0)) return;
        t->got[k]++;
        t->sum_out += v[k];
    }
    EXPECT_EQ(coil_join(s0, COIL_FOREVER), 0);
    EXPECT_EQ(coil_join(ids[0], COIL_FOREVER), 0);
    EXPECT_EQ(coil_join(ids[1], COIL_FOREVER), 0);
}

static void test_choose_three_schedulers(void **state) {
    (void)state;
    struct tri t = {.n = scaled(100000)};
    for (int k = 0; k < 3; k++)
        assert_int_equal(coil_chan_open(&t.ch[k], sizeof(uint64_t), k == 1 ? 8 : 0), 0);
    assert_int_equal(coil_chan_open(&t.ready, sizeof(int), 3), 0);
    coil_test_reset_failures();
    assert_int_equal(coil_run_group(3, tri_main, &t), 0);
    coil_test_assert_no_failure();
    for (int k = 0; k < 3; k++) {
        assert_int_equal(t.got[k], t.n);
        coil_chan_free(t.ch[k]);
    }
    assert_true(t.sum_in == t.sum_out);
    coil_chan_free(t.ready);
}

/* ---- a choose of more clauses than coil keeps on its stack ------------------ */

/* 20 clauses: ten receives on one channel another scheduler sends on (the
 * same channel ten times over), ten on channels of this scheduler nobody
 * sends on. Each value comes through one clause of the shared channel; then,
 * with nothing sent, the choose ends at its deadline. */
enum { MANY_CLAUSES = 20 };

struct manycl {
    coil_chan *shared, *local[MANY_CLAUSES / 2];
};

static void manycl_sender(void *arg) {
    struct manycl *m = arg;
    for (int v = 1; v <= 3; v++) {
        coil_sleep(2 * COIL_MSEC); /* so that the chooser waits first */
        EXPECT_EQ(coil_chan_send(m->shared, &v), 0);
    }
}

static void manycl_main(void *arg) {
    struct manycl *m = arg;
    coil_id s = coil_spawn_on(1, manycl_sender, m, NULL);
    int v[MANY_CLAUSES];
    coil_clause cl[MANY_CLAUSES];
    for (int round = 1; round <= 4; round++) {
        for (int i = 0; i < MANY_CLAUSES; i++) {
            v[i] = 0;
            cl[i] = (coil_clause){.ch = i < MANY_CLAUSES / 2 ? m->shared
                                                             : m->local[i - MANY_CLAUSES / 2],
                                  .op = COIL_CHOOSE_RECV,
                                  .elem = &v[i]};
        }
        int r =
            coil_choose(cl, MANY_CLAUSES, round < 4 ? COIL_FOREVER : coil_now() + 20 * COIL_MSEC);
        if (round == 4) {
            EXPECT_EQ(r, -ETIMEDOUT);
            break;
        }
        if (!EXPECT(r >= 0 && r < MANY_CLAUSES / 2)) break;
        EXPECT_EQ(cl[r].result, 0);
        EXPECT_EQ(v[r], round);
    }
    EXPECT_EQ(coil_join(s, COIL_FOREVER), 0);
}

static void test_choose_many_clauses(void **state) {
    (void)state;
    struct manycl m;
    assert_int_equal(coil_chan_open(&m.shared, sizeof(int), 0), 0);
    for (int i = 0; i < MANY_CLAUSES / 2; i++)
        assert_int_equal(coil_chan_open(&m.local[i], sizeof(int), 0), 0);
    coil_test_reset_failures();
    assert_int_equal(coil_run_group(2, manycl_main, &m), 0);
    coil_test_assert_no_failure();
    coil_chan_free(m.shared);
    for (int i = 0; i < MANY_CLAUSES / 2; i++)
        coil_chan_free(m.local[i]);
}

/* Choose races: a chooser on scheduler 0 waits on two channels; two senders
 * on schedulers 1 and 2 race to complete it. Each message is taken once. */
struct race {
    coil_chan *a, *b;
    long n;
    long sent[2], got;
};

static void race_sender(void *arg) {
    struct race *r = arg;
    int k = coil_sched_index() - 1;
    coil_chan *ch = k ? r->b : r->a;
    for (long i = 0; i < r->n; i++) {
        long v = i;
        int rc = coil_chan_send(ch, &v);
        if (rc == -EPIPE) return;
        if (!EXPECT_EQ(rc, 0)) return;
        r->sent[k]++;
    }
}

static void race_main(void *arg) {
    struct race *r = arg;
    coil_id s1 = coil_spawn_on(1, race_sender, r, NULL);
    coil_id s2 = coil_spawn_on(2, race_sender, r, NULL);
    long va, vb;
    for (long i = 0; i < 2 * r->n; i++) {
        coil_clause cl[2] = {{.ch = r->a, .op = COIL_CHOOSE_RECV, .elem = &va},
                             {.ch = r->b, .op = COIL_CHOOSE_RECV, .elem = &vb}};
        int k = coil_choose(cl, 2, COIL_FOREVER);
        if (!EXPECT(k == 0 || k == 1)) break;
        if (!EXPECT_EQ(cl[k].result, 0)) break;
        r->got++;
    }
    EXPECT_EQ(coil_join(s1, COIL_FOREVER), 0);
    EXPECT_EQ(coil_join(s2, COIL_FOREVER), 0);
}

static void test_choose_race(void **state) {
    (void)state;
    struct race r = {.n = scaled(50000)};
    assert_int_equal(coil_chan_open(&r.a, sizeof(long), 0), 0);
    assert_int_equal(coil_chan_open(&r.b, sizeof(long), 0), 0);
    coil_test_reset_failures();
    assert_int_equal(coil_run_group(3, race_main, &r), 0);
    coil_test_assert_no_failure();
    assert_int_equal(r.sent[0], r.n);
    assert_int_equal(r.sent[1], r.n);
    assert_int_equal(r.got, 2 * r.n);
    coil_chan_free(r.a);
    coil_chan_free(r.b);
}

/* ---- close, send_error, kill, join, timeouts across schedulers --------- */

struct blocked {
    coil_chan *ch;
    int rc;
    int killed;
    coil_chan *started;
};

static void blocked_recv(void *arg) {
    struct blocked *b = arg;
    int one = 1;
    coil_chan_send(b->started, &one);
    long v;
    b->rc = coil_chan_recv(b->ch, &v);
    b->killed = coil_killed();
}

static void blocked_send(void *arg) {
    struct blocked *b = arg;
    int one = 1;
    coil_chan_send(b->started, &one);
    long v = 7;
    b->rc = coil_chan_send(b->ch, &v);
}

static void cross_main(void *arg) {
    (void)arg;
    coil_chan *started;
    int one;
    EXPECT_EQ(coil_chan_open(&started, sizeof(int), 4), 0);
    /* close while a receiver and a sender on scheduler 1 wait */
    struct blocked r = {.started = started}, s = {.started = started};
    EXPECT_EQ(coil_chan_open(&r.ch, sizeof(long), 0), 0);
    s.ch = r.ch;
    coil_id ir = coil_spawn_on(1, blocked_recv, &r, NULL);
    EXPECT_EQ(coil_chan_recv(started, &one), 0);
    EXPECT_EQ(coil_sleep(5 * COIL_MSEC), 0);
    EXPECT_EQ(coil_chan_close(r.ch), 0);
    EXPECT_EQ(coil_join(ir, COIL_FOREVER), 0);
    EXPECT_EQ(r.rc, -EPIPE);
    EXPECT_EQ(coil_chan_free(r.ch), 0);

    EXPECT_EQ(coil_chan_open(&s.ch, sizeof(long), 0), 0);
    coil_id is = coil_spawn_on(1, blocked_send, &s, NULL);
    EXPECT_EQ(coil_chan_recv(started, &one), 0);
    EXPECT_EQ(coil_sleep(5 * COIL_MSEC), 0);
    EXPECT_EQ(coil_chan_close(s.ch), 0);
    EXPECT_EQ(coil_join(is, COIL_FOREVER), 0);
    EXPECT_EQ(s.rc, -EPIPE);
    EXPECT_EQ(coil_chan_free(s.ch), 0);

    /* send_error to a receiver on another scheduler */
    struct blocked e = {.started = started};
    EXPECT_EQ(coil_chan_open(&e.ch, sizeof(long), 0), 0);
    coil_id ie = coil_spawn_on(1, blocked_recv, &e, NULL);
    EXPECT_EQ(coil_chan_recv(started, &one), 0);
    EXPECT_EQ(coil_chan_send_error(e.ch, ECONNRESET), 0);
    EXPECT_EQ(coil_join(ie, COIL_FOREVER), 0);
    EXPECT_EQ(e.rc, -ECONNRESET);

    /* kill a receiver blocked on scheduler 1: -ECANCELED, and the channel
     * has no waiter left */
    struct blocked k = {.started = started, .ch = e.ch};
    coil_id ik = coil_spawn_on(1, blocked_recv, &k, NULL);
    EXPECT_EQ(coil_chan_recv(started, &one), 0);
    EXPECT_EQ(coil_sleep(5 * COIL_MSEC), 0);
    EXPECT_EQ(coil_kill(ik), 0);
    EXPECT_EQ(coil_join(ik, COIL_FOREVER), 0);
    EXPECT_EQ(k.rc, -ECANCELED);
    EXPECT_EQ(k.killed, 1);
    coil_chan_info info;
    EXPECT_EQ(coil_chan_getinfo(e.ch, &info), 0);
    EXPECT_EQ(info.balance, 0);

    /* a join across schedulers with a deadline that passes */
    struct blocked j = {.started = started, .ch = e.ch};
    coil_id ij = coil_spawn_on(1, blocked_recv, &j, NULL);
    EXPECT_EQ(coil_chan_recv(started, &one), 0);
    EXPECT_EQ(coil_join(ij, coil_now() + 10 * COIL_MSEC), -ETIMEDOUT);
    long v = 42;
    EXPECT_EQ(coil_chan_send(e.ch, &v), 0);
    EXPECT_EQ(coil_join(ij, COIL_FOREVER), 0);
    EXPECT_EQ(j.rc, 0);

    /* a receive with a deadline on a shared channel */
    EXPECT_EQ(coil_chan_recv_dl(e.ch, &v, coil_now() + 5 * COIL_MSEC), -ETIMEDOUT);
    EXPECT_EQ(coil_chan_free(e.ch), 0);

    /* a freed channel is -EBADF on the other scheduler too */
    EXPECT_EQ(coil_chan_recv(e.ch, &v), -EBADF);
    EXPECT_EQ(coil_chan_free(started), 0);
}

static void test_close_error_kill_join_across(void **state) {
    (void)state;
    coil_test_reset_failures();
    assert_int_equal(coil_run_group(2, cross_main, NULL), 0);
    coil_test_assert_no_failure();
}

/* Timeouts racing completions: receivers with short deadlines on scheduler 1,
 * a sender on scheduler 0 that sends as fast as it can. Every element sent
 * is received exactly once; a timed-out receive took nothing. */
struct tmo {
    coil_chan *ch;
    long n;
    long received, sent, timeouts;
    int done;
};

static void tmo_receiver(void *arg) {
    struct tmo *t = arg;
    long v;
    for (;;) {
        int rc = coil_chan_recv_dl(t->ch, &v, coil_now() + 20 * COIL_USEC);
        if (rc == 0) {
            __atomic_add_fetch(&t->received, 1, __ATOMIC_RELAXED);
        } else if (rc == -ETIMEDOUT) {
            __atomic_add_fetch(&t->timeouts, 1, __ATOMIC_RELAXED);
        } else {
            EXPECT_EQ(rc, -EPIPE);
            return;
        }
    }
}

static void tmo_main(void *arg) {
    struct tmo *t = arg;
    coil_id r[4];
    for (int i = 0; i < 4; i++)
        r[i] = coil_spawn_on(1, tmo_receiver, t, NULL);
    for (long i = 0; i < t->n; i++) {
        long v = i;
        int rc = coil_chan_send_dl(t->ch, &v, coil_now() + 30 * COIL_USEC);
        if (rc == 0)
            t->sent++;
        else if (!EXPECT_EQ(rc, -ETIMEDOUT))
            break;
    }
    EXPECT_EQ(coil_chan_close(t->ch), 0);
    for (int i = 0; i < 4; i++)
        EXPECT_EQ(coil_join(r[i], COIL_FOREVER), 0);
}

static void test_timeouts_race_completions(void **state) {
    (void)state;
    struct tmo t = {.n = scaled(100000)};
    assert_int_equal(coil_chan_open(&t.ch, sizeof(long), 0), 0);
    coil_test_reset_failures();
    assert_int_equal(coil_run_group(2, tmo_main, &t), 0);
    coil_test_assert_no_failure();
    assert_int_equal(t.received, t.sent);
    coil_chan_free(t.ch);
}

/* A channel that its owner's tasklets already wait on becomes shared. */
struct promo {
    coil_chan *ch;
    int rc[3];
};

static void promo_recv(void *arg) {
    struct promo *p = arg;
    long v;
    int k = (int)coil_self() % 3;
    p->rc[k] = coil_chan_recv(p->ch, &v);
}

static void promo_choose(void *arg) {
    struct promo *p = arg;
    long v;
    coil_chan *other;
    EXPECT_EQ(coil_chan_open(&other, sizeof(long), 0), 0);
    coil_clause cl[2] = {{.ch = other, .op = COIL_CHOOSE_RECV, .elem = &v},
                         {.ch = p->ch, .op = COIL_CHOOSE_RECV, .elem = &v}};
    int r = coil_choose(cl, 2, COIL_FOREVER);
    EXPECT_EQ(r, 1);
    EXPECT_EQ(cl[1].result, 0);
    EXPECT_EQ(v, 5);
    EXPECT_EQ(coil_chan_free(other), 0);
}

static void promo_sender(void *arg) {
    struct promo *p = arg;
    long v = 5;
    EXPECT_EQ(coil_chan_send(p->ch, &v), 0);
    EXPECT_EQ(coil_chan_send(p->ch, &v), 0);
}

static void promo_main(void *arg) {
    struct promo *p = arg;
    coil_id c = coil_spawn(promo_choose, p, NULL);
    coil_id r = coil_spawn(promo_recv, p, NULL);
    EXPECT_EQ(coil_yield(), 0); /* both wait on p->ch, a local channel */
    coil_id s = coil_spawn_on(1, promo_sender, p, NULL);
    EXPECT_EQ(coil_join(s, COIL_FOREVER), 0);
    EXPECT_EQ(coil_join(c, COIL_FOREVER), 0);
    EXPECT_EQ(coil_join(r, COIL_FOREVER), 0);
}

static void test_promotion_with_waiters(void **state) {
    (void)state;
    struct promo p = {0};
    assert_int_equal(coil_chan_open(&p.ch, sizeof(long), 0), 0);
    coil_test_reset_failures();
    assert_int_equal(coil_run_group(2, promo_main, &p), 0);
    coil_test_assert_no_failure();
    coil_chan_free(p.ch);
}

/* Another group's (or coil_run's) channel stays -EXDEV. */
static coil_chan *foreign;

static void bind_it(void *arg) {
    (void)arg;
    long v = 1;
    EXPECT_EQ(coil_chan_send(foreign, &v), 0);
}

static void use_foreign(void *arg) {
    (void)arg;
    long v;
    EXPECT_EQ(coil_chan_recv(foreign, &v), -EXDEV);
    coil_clause cl = {.ch = foreign, .op = COIL_CHOOSE_RECV, .elem = &v};
    EXPECT_EQ(coil_choose(&cl, 1, COIL_FOREVER), -EXDEV);
}

static void test_other_group_exdev(void **state) {
    (void)state;
    assert_int_equal(coil_chan_open(&foreign, sizeof(long), 1), 0);
    COIL_RUN_CHECKED(bind_it, NULL);
    coil_test_reset_failures();
    assert_int_equal(coil_run_group(2, use_foreign, NULL), 0);
    coil_test_assert_no_failure();
    coil_chan_free(foreign);
}

/* ---- deadlock and shutdown (own processes) ------------------------------ */
#ifndef _WIN32

/* Runs fn in a child that must exit with 0 within 20 s; c keeps its stderr. */
static void child_ok(struct coil_test_child *c, void (*fn)(void *)) {
    coil_test_fork_run(c, fn, NULL, 20000);
    if (!coil_test_child_exited(c, 0)) {
        coil_test_child_describe(c);
        fail_msg("the child failed");
    }
}

static void stuck(void *arg) {
    coil_chan *ch = arg;
    long v;
    int rc = coil_chan_recv(ch, &v);
    if (rc != -ECANCELED) _exit(10);
}

static void deadlock_main(void *arg) {
    (void)arg;
    coil_chan *ch;
    if (coil_chan_open(&ch, sizeof(long), 0)) _exit(11);
    coil_id a = coil_spawn_on(1, stuck, ch, NULL);
    coil_id b = coil_spawn_on(2, stuck, ch, NULL);
    long v;
    int rc = coil_chan_recv(ch, &v);
    if (rc != -ECANCELED) _exit(12);
    if (coil_join(a, COIL_FOREVER) != 0 || coil_join(b, COIL_FOREVER) != 0) _exit(13);
    coil_chan_free(ch);
}

static void deadlock_child(void *arg) {
    (void)arg;
    int rc = coil_run_group(3, deadlock_main, NULL);
    _exit(rc == -EDEADLK ? 0 : 20);
}

static void test_deadlock_across(void **state) {
    (void)state;
    struct coil_test_child c;
    child_ok(&c, deadlock_child);
    assert_non_null(strstr(c.err, "every tasklet of the 3 schedulers is waiting"));
    assert_non_null(strstr(c.err, "scheduler 0 of 3"));
    assert_non_null(strstr(c.err, "scheduler 1 of 3"));
    assert_non_null(strstr(c.err, "scheduler 2 of 3"));
    assert_non_null(strstr(c.err, "chan recv"));
    coil_test_child_free(&c);
}

/* Two tasklets on two schedulers joining each other: both joins -EDEADLK. */
static coil_id cyc[2];
static int cyc_rc[2];

static void cyc_joiner(void *arg) {
    int k = (int)(intptr_t)arg;
    while (!__atomic_load_n(&cyc[!k], __ATOMIC_ACQUIRE))
        coil_sleep(COIL_MSEC);
    cyc_rc[k] = coil_join(__atomic_load_n(&cyc[!k], __ATOMIC_ACQUIRE), COIL_FOREVER);
}

static void cycle_main(void *arg) {
    (void)arg;
    __atomic_store_n(&cyc[1], coil_spawn_on(1, cyc_joiner, (void *)(intptr_t)1, NULL),
                     __ATOMIC_RELEASE);
    __atomic_store_n(&cyc[0], coil_spawn(cyc_joiner, (void *)(intptr_t)0, NULL), __ATOMIC_RELEASE);
}

static void cycle_child(void *arg) {
    (void)arg;
    int rc = coil_run_group(2, cycle_main, NULL);
    if (rc != -EDEADLK) _exit(20);
    if (cyc_rc[0] == -EDEADLK && cyc_rc[1] == -EDEADLK) _exit(0);
    fprintf(stderr, "join results %d %d\n", cyc_rc[0], cyc_rc[1]);
    _exit(21);
}

static void test_join_cycle_across(void **state) {
    (void)state;
    struct coil_test_child c;
    child_ok(&c, cycle_child);
    assert_non_null(strstr(c.err, "on join"));
    coil_test_child_free(&c);
}

/* SIGINT: every tasklet of every scheduler is killed, finishes its cleanup,
 * and the group returns -EINTR. */
static int cleaned;

static void sleeper(void *arg) {
    (void)arg;
    int rc = coil_sleep(60 * COIL_SEC);
    if (rc == -ECANCELED) __atomic_add_fetch(&cleaned, 1, __ATOMIC_RELAXED);
}

static void sigint_main(void *arg) {
    (void)arg;
    for (int i = 0; i < 8; i++)
        coil_spawn_on(COIL_SCHED_NEXT, sleeper, NULL, NULL);
    coil_sleep(20 * COIL_MSEC);
    raise(SIGINT);
    sleeper(NULL);
}

static void sigint_child(void *arg) {
    (void)arg;
    signal(SIGINT, SIG_DFL);
    int rc = coil_run_group(3, sigint_main, NULL);
    if (rc != -EINTR) _exit(20);
    _exit(cleaned == 9 ? 0 : 21);
}

static void test_sigint_group(void **state) {
    (void)state;
    struct coil_test_child c;
    child_ok(&c, sigint_child);
    coil_test_child_free(&c);
}

/* A scheduler whose set-up fails (here: no fd left for its ring or epoll
 * instance and its eventfd, under a low RLIMIT_NOFILE) makes the group
 * return that error, whichever of the schedulers it was, and the others,
 * set up already, end with it (they waited for it at their last barrier
 * for good once: found by the fault sweep, tests/fault/sweep.c). Every
 * limit from "no fd at all" up to "enough for both" is tried, so that one
 * of them fails the second scheduler alone. */
static void trivial_main(void *arg) {
    (void)arg;
}

static void fd_limit_child(void *arg) {
    (void)arg;
    int open_now = coil_test_open_fds();
    int failed = 0, ran = 0;
    for (int extra = 0; extra <= 12; extra++) {
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) != 0) _exit(10);
        rlim_t before = rl.rlim_cur;
        rl.rlim_cur = (rlim_t)(open_now + extra);
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) _exit(11);
        int rc = coil_run_group(2, trivial_main, NULL);
        rl.rlim_cur = before;
        if (setrlimit(RLIMIT_NOFILE, &rl) != 0) _exit(12);
        if (rc == -EMFILE)
            failed++;
        else if (rc == 0)
            ran++;
        else
            _exit(13);
        if (coil_test_open_fds() != open_now) _exit(14); /* nothing leaked */
    }
    _exit(failed > 0 && ran > 0 ? 0 : 15);
}

static void test_group_setup_fails(void **state) {
    (void)state;
    /* Valgrind keeps fds of its own above the program's limit and answers
     * setrlimit for its own table: the limits tried do not bite there. */
    if (coil_test_under_valgrind()) skip();
    struct coil_test_child c;
    child_ok(&c, fd_limit_child);
    coil_test_child_free(&c);
}

/* coil_dump from one scheduler lists its own; the dump signal makes every
 * scheduler list its own. */
static void dump_main(void *arg) {
    (void)arg;
    coil_id id = coil_spawn_on(1, sleeper, NULL, NULL);
    coil_sleep(10 * COIL_MSEC);
    raise(SIGQUIT);
    coil_sleep(20 * COIL_MSEC);
    coil_kill(id);
    coil_join(id, COIL_FOREVER);
}

/* coil_dump from a tasklet of a group lists every scheduler's tasklets. */
static void dump_call_main(void *arg) {
    (void)arg;
    coil_id id = coil_spawn_on(1, sleeper, NULL, NULL);
    coil_sleep(5 * COIL_MSEC);
    FILE *f = tmpfile();
    if (!f) _exit(40);
    int n = coil_dump(f);
    fflush(f);
    rewind(f);
    char buf[4096];
    size_t len = fread(buf, 1, sizeof buf - 1, f);
    buf[len] = '\0';
    fclose(f);
    fputs(buf, stderr);
    if (n != 2 || !strstr(buf, "scheduler 0 of 2") || !strstr(buf, "scheduler 1 of 2") ||
        !strstr(buf, "\"main\"") || !strstr(buf, "on sleep"))
        _exit(41);
    coil_kill(id);
    coil_join(id, COIL_FOREVER);
}

static void dump_call_child(void *arg) {
    (void)arg;
    _exit(coil_run_group(2, dump_call_main, NULL) == 0 ? 0 : 20);
}

static void test_dump_every_scheduler(void **state) {
    (void)state;
    struct coil_test_child c;
    child_ok(&c, dump_call_child);
    coil_test_child_free(&c);
}

static void dump_child(void *arg) {
    (void)arg;
    if (coil_dump_on_signal(SIGQUIT)) _exit(30);
    _exit(coil_run_group(2, dump_main, NULL) == 0 ? 0 : 20);
}

static void test_dump_signal_every_scheduler(void **state) {
    (void)state;
    struct coil_test_child c;
    child_ok(&c, dump_child);
    assert_non_null(strstr(c.err, "scheduler 0 of 2"));
    assert_non_null(strstr(c.err, "scheduler 1 of 2"));
    coil_test_child_free(&c);
}

#endif /* !_WIN32 */

int main(int argc, char **argv) {
    if (argc > 1) cmocka_set_test_filter(argv[1]); /* one case, by name */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basics),
        cmocka_unit_test(test_single_scheduler),
        cmocka_unit_test(test_default_threads),
        cmocka_unit_test(test_pingpong_unbuffered),
        cmocka_unit_test(test_pingpong_buffered),
        cmocka_unit_test(test_stream_many_to_many),
        cmocka_unit_test(test_choose_three_schedulers),
        cmocka_unit_test(test_choose_race),
        cmocka_unit_test(test_choose_many_clauses),
        cmocka_unit_test(test_close_error_kill_join_across),
        cmocka_unit_test(test_timeouts_race_completions),
        cmocka_unit_test(test_promotion_with_waiters),
        cmocka_unit_test(test_other_group_exdev),
#ifndef _WIN32
        cmocka_unit_test(test_deadlock_across),
        cmocka_unit_test(test_join_cycle_across),
        cmocka_unit_test(test_sigint_group),
        cmocka_unit_test(test_group_setup_fails),
        cmocka_unit_test(test_dump_signal_every_scheduler),
        cmocka_unit_test(test_dump_every_scheduler),
#endif
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
