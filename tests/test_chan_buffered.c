/* Buffered channels: capacity, sends that do not wait until the buffer is
 * full, FIFO order (ring wrap-around included), a waiting sender's element
 * moving into a freed slot, close (drain, then -EPIPE) and send_error taking
 * a slot in order with the elements. */
#define COIL_TEST_CHAN_HELPERS
#include "coil_test.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ---- capacity ----------------------------------------------------------- */

struct cap {
    coil_chan *ch;
    size_t cap;
    struct op blocked;
    int spy_runs_while_filling;
    int dl_result;
};

static void capacity_main(void *arg) {
    struct cap *c = arg;
    struct spy spy = {0};
    coil_id sid = coil_spawn(spy_fn, &spy, NULL);
    EXPECT(sid > 0);
    /* cap sends complete without waiting: the runnable spy never runs */
    for (size_t i = 0; i < c->cap; i++) {
        int v = (int)i;
        EXPECT_EQ(coil_chan_send(c->ch, &v), 0);
        EXPECT_EQ(count(c->ch), (long)i + 1);
        EXPECT_EQ(balance(c->ch), 0);
    }
    c->spy_runs_while_filling = spy.runs;
    coil_chan_info info = info_of(c->ch);
    EXPECT_EQ(info.capacity, c->cap);
    EXPECT_EQ(info.count, c->cap);
    EXPECT_EQ(info.elem_size, sizeof(int));
    /* full: a send with a past deadline fails without waiting */
    int v = -1;
    c->dl_result = coil_chan_send_dl(c->ch, &v, 0);
    EXPECT_EQ(count(c->ch), (long)c->cap);
    EXPECT_EQ(spy.runs, c->spy_runs_while_filling);
    /* and a plain send waits */
    c->blocked = (struct op){.ch = c->ch, .kind = OP_SEND, .val = 1000};
    coil_id bid = spawn_op(&c->blocked);
    EXPECT(await_balance(c->ch, 1));
    for (int i = 0; i < 5; i++)
        coil_yield();
    EXPECT(!c->blocked.done);
    EXPECT_EQ(count(c->ch), (long)c->cap);
    /* drain, in order; the blocked element comes last */
    for (size_t i = 0; i < c->cap; i++) {
        EXPECT_EQ(coil_chan_recv(c->ch, &v), 0);
        EXPECT_EQ(v, (int)i);
    }
    EXPECT_EQ(coil_chan_recv(c->ch, &v), 0);
    EXPECT_EQ(v, 1000);
    EXPECT_EQ(count(c->ch), 0);
    EXPECT_EQ(coil_join(bid, COIL_FOREVER), 0);
    EXPECT(c->blocked.done);
    EXPECT_EQ(c->blocked.result, 0);
    spy.stop = true;
    EXPECT_EQ(coil_join(sid, COIL_FOREVER), 0);
}

static void check_capacity(size_t cap) {
    struct cap c = {.cap = cap};
    c.ch = open_chan(sizeof(int), cap);
    COIL_RUN_CHECKED(capacity_main, &c);
    assert_int_equal(c.spy_runs_while_filling, 0);
    assert_int_equal(c.dl_result, -ETIMEDOUT);
    assert_int_equal(coil_chan_free(c.ch), 0);
}

static void test_capacity(void **state) {
    check_capacity(1);
    check_capacity(2);
    check_capacity(7);
    check_capacity(coil_test_under_valgrind() ? 200 : 1000);
}

/* ---- order, ring wrap-around -------------------------------------------- */

struct ring {
    coil_chan *ch;
    int iterations;
    long received;
};

/* A reference model (a plain FIFO) against the channel, with varying fill
 * levels so that the ring's start wraps around at every position. */
static void ring_main(void *arg) {
    struct ring *r = arg;
    enum { CAP = 5 };
    int model[CAP], head = 0, len = 0, next = 0;
    unsigned seed = 12345;
    for (int it = 0; it < r->iterations; it++) {
        seed = seed * 1103515245u + 12345u;
        int want_send = (seed >> 16) % 3 != 0; /* fills up, then drains */
        if ((want_send && len < CAP) || len == 0) {
            EXPECT_EQ(coil_chan_send_dl(r->ch, &next, 0), 0);
            model[(head + len) % CAP] = next++;
            len++;
        } else {
            int v = -1;
            EXPECT_EQ(coil_chan_recv_dl(r->ch, &v, 0), 0);
            EXPECT_EQ(v, model[head]);
            head = (head + 1) % CAP;
            len--;
            r->received++;
        }
        EXPECT_EQ(count(r->ch), len);
    }
    int v;
    if (len == CAP) EXPECT_EQ(coil_chan_send_dl(r->ch, &v, 0), -ETIMEDOUT);
    while (len > 0) {
        EXPECT_EQ(coil_chan_recv(r->ch, &v), 0);
        EXPECT_EQ(v, model[head]);
        head = (head + 1) % CAP;
        len--;
    }
    EXPECT_EQ(coil_chan_recv_dl(r->ch, &v, 0), -ETIMEDOUT);
}

static void test_order_and_wraparound(void **state) {
    struct ring r = {.iterations = coil_test_under_valgrind() ? 2000 : 20000};
    r.ch = open_chan(sizeof(int), 5);
    COIL_RUN_CHECKED(ring_main, &r);
    assert_true(r.received > r.iterations / 5);
    assert_int_equal(coil_chan_free(r.ch), 0);
}

/* Large elements in a buffer. */
struct bigbuf {
    coil_chan *ch;
    size_t size;
    unsigned char *in, *out;
};

static void bigbuf_main(void *arg) {
    struct bigbuf *b = arg;
    for (int k = 0; k < 4; k++) {
        memset(b->in, 'a' + k, b->size);
        b->in[(size_t)k % b->size] = 0;
        EXPECT_EQ(coil_chan_send(b->ch, b->in), 0);
    }
    memset(b->in, 0xFF, b->size); /* the buffer holds copies */
    for (int k = 0; k < 4; k++) {
        memset(b->out, 0, b->size + 16);
        EXPECT_EQ(coil_chan_recv(b->ch, b->out), 0);
        bool ok = true;
        for (size_t i = 0; i < b->size; i++)
            if (b->out[i] != (i == (size_t)k % b->size ? 0 : 'a' + k)) ok = false;
        for (size_t i = b->size; i < b->size + 16; i++)
            if (b->out[i] != 0) ok = false;
        EXPECT(ok);
    }
}

static void test_large_elements(void **state) {
    static const size_t sizes[] = {3, 13, 4096, 65537};
    for (size_t s = 0; s < sizeof sizes / sizeof sizes[0]; s++) {
        struct bigbuf b = {.size = sizes[s]};
        b.ch = open_chan(b.size, 4);
        b.in = malloc(b.size);
        b.out = malloc(b.size + 16);
        assert_non_null(b.in);
        assert_non_null(b.out);
        COIL_RUN_CHECKED(bigbuf_main, &b);
        assert_int_equal(coil_chan_free(b.ch), 0);
        free(b.in);
        free(b.out);
    }
}

/* ---- waiting senders and receivers -------------------------------------- */

struct moves {
    coil_chan *ch;
    struct op s[3];
    long counts[8];
    int balances[8];
    bool done_after_first[3];
    int vals[8];
};

static void moves_main(void *arg) {
    struct moves *m = arg;
    int v;
    coil_id ids[3];
    for (v = 1; v <= 2; v++)
        EXPECT_EQ(coil_chan_send(m->ch, &v), 0);
    for (int i = 0; i < 3; i++) {
        m->s[i] = (struct op){.ch = m->ch, .kind = OP_SEND, .val = 3 + i};
        ids[i] = spawn_op(&m->s[i]);
        EXPECT(await_balance(m->ch, i + 1)); /* they park in order */
    }
    m->counts[0] = count(m->ch);
    m->balances[0] = balance(m->ch);
    /* one receive frees a slot: the first waiting sender's element moves in
     * at once, and that sender is released */
    EXPECT_EQ(coil_chan_recv(m->ch, &m->vals[0]), 0);
    m->counts[1] = count(m->ch);
    m->balances[1] = balance(m->ch);
    for (int i = 0; i < 5; i++)
        coil_yield();
    for (int i = 0; i < 3; i++)
        m->done_after_first[i] = m->s[i].done;
    for (int k = 1; k < 5; k++) {
        EXPECT_EQ(coil_chan_recv(m->ch, &m->vals[k]), 0);
        m->counts[k + 1] = count(m->ch);
        m->balances[k + 1] = balance(m->ch);
    }
    EXPECT_EQ(coil_chan_recv_dl(m->ch, &v, 0), -ETIMEDOUT);
    for (int i = 0; i < 3; i++)
        EXPECT_EQ(coil_join(ids[i], COIL_FOREVER), 0);
}

static void test_waiting_sender_moves_into_buffer(void **state) {
    struct moves m = {0};
    m.ch = open_chan(sizeof(int), 2);
    COIL_RUN_CHECKED(moves_main, &m);
    for (int k = 0; k < 5; k++)
        assert_int_equal(m.vals[k], k + 1);
    static const long want_counts[] = {2, 2, 2, 2, 1, 0};
    static const int want_bal[] = {3, 2, 1, 0, 0, 0};
    for (int k = 0; k < 6; k++) {
        if (m.counts[k] != want_counts[k])
            fail_msg("count #%d is %ld, want %ld", k, m.counts[k], want_counts[k]);
        if (m.balances[k] != want_bal[k])
            fail_msg("balance #%d is %d, want %d", k, m.balances[k], want_bal[k]);
    }
    assert_true(m.done_after_first[0]);
    assert_false(m.done_after_first[1]);
    assert_false(m.done_after_first[2]);
    for (int i = 0; i < 3; i++)
        assert_int_equal(m.s[i].result, 0);
    assert_int_equal(coil_chan_free(m.ch), 0);
}

/* Receivers waiting on an empty buffer get elements directly, in FIFO order;
 * nothing goes through the buffer. */
struct direct {
    coil_chan *ch;
    struct op r[3];
    long counts[3];
    int balances[4];
};

static void direct_main(void *arg) {
    struct direct *d = arg;
    coil_id ids[3];
    for (int i = 0; i < 3; i++) {
        d->r[i] = (struct op){.ch = d->ch, .kind = OP_RECV, .val = -1};
        ids[i] = spawn_op(&d->r[i]);
        EXPECT(await_balance(d->ch, -(i + 1)));
    }
    d->balances[0] = balance(d->ch);
    for (int k = 0; k < 3; k++) {
        int v = 50 + k;
        EXPECT_EQ(coil_chan_send(d->ch, &v), 0);
        d->counts[k] = count(d->ch);
        d->balances[k + 1] = balance(d->ch);
    }
    for (int i = 0; i < 3; i++)
        EXPECT_EQ(coil_join(ids[i], COIL_FOREVER), 0);
    /* with the receivers gone the buffer is used again */
    int v = 60;
    EXPECT_EQ(coil_chan_send(d->ch, &v), 0);
    EXPECT_EQ(count(d->ch), 1);
    EXPECT_EQ(coil_chan_recv(d->ch, &v), 0);
    EXPECT_EQ(v, 60);
}

static void test_waiting_receivers_get_elements_directly(void **state) {
    struct direct d = {0};
    d.ch = open_chan(sizeof(int), 4);
    COIL_RUN_CHECKED(direct_main, &d);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(d.r[i].result, 0);
        assert_int_equal(d.r[i].val, 50 + i);
        assert_int_equal(d.counts[i], 0);
    }
    for (int k = 0; k < 4; k++)
        assert_int_equal(d.balances[k], -(3 - k));
    assert_int_equal(coil_chan_free(d.ch), 0);
}

/* A producer and a consumer at different speeds through a small buffer. */
struct prodcons {
    coil_chan *ch;
    int n;
    int next_expected;
    int errors;
    int max_count;
};

static void producer(void *arg) {
    struct prodcons *p = arg;
    for (int i = 0; i < p->n; i++) {
        if (coil_chan_send(p->ch, &i) != 0) p->errors++;
        if (i % 7 == 0) coil_yield();
    }
    if (coil_chan_close(p->ch) != 0) p->errors++;
}

static void prodcons_main(void *arg) {
    struct prodcons *p = arg;
    coil_id id = coil_spawn(producer, p, NULL);
    int v, r;
    while ((r = coil_chan_recv(p->ch, &v)) == 0) {
        if (v != p->next_expected) p->errors++;
        p->next_expected++;
        long c = count(p->ch);
        if (c > p->max_count) p->max_count = (int)c;
        if (v % 3 == 0) coil_yield();
    }
    EXPECT_EQ(r, -EPIPE);
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
}

static void test_producer_consumer(void **state) {
    struct prodcons p = {.n = coil_test_under_valgrind() ? 2000 : 20000};
    p.ch = open_chan(sizeof(int), 3);
    COIL_RUN_CHECKED(prodcons_main, &p);
    assert_int_equal(p.errors, 0);
    assert_int_equal(p.next_expected, p.n);
    assert_true(p.max_count <= 3);
    assert_true(p.max_count >= 1);
    assert_int_equal(coil_chan_free(p.ch), 0);
}

/* ---- close -------------------------------------------------------------- */

struct closectx {
    coil_chan *ch;
    struct op ops[3];
    int results[8];
    int vals[8];
    coil_chan_info after_close;
};

static void close_drains_main(void *arg) {
    struct closectx *c = arg;
    for (int v = 1; v <= 3; v++)
        EXPECT_EQ(coil_chan_send(c->ch, &v), 0);
    EXPECT_EQ(coil_chan_close(c->ch), 0);
    c->after_close = info_of(c->ch);
    int v = 9;
    EXPECT_EQ(coil_chan_send(c->ch, &v), -EPIPE);
    EXPECT_EQ(coil_chan_send_error(c->ch, EIO), -EPIPE);
    EXPECT_EQ(coil_chan_send_dl(c->ch, &v, 0), -EPIPE);
    EXPECT_EQ(count(c->ch), 3); /* refused sends add nothing */
    for (int k = 0; k < 6; k++) {
        c->vals[k] = -1;
        c->results[k] = coil_chan_recv(c->ch, &c->vals[k]);
    }
    /* a past deadline reports the closed channel, not a timeout */
    EXPECT_EQ(coil_chan_recv_dl(c->ch, &v, 0), -EPIPE);
    EXPECT_EQ(coil_chan_close(c->ch), -EPIPE);
}

static void test_close_drains_then_epipe(void **state) {
    struct closectx c = {0};
    c.ch = open_chan(sizeof(int), 4);
    COIL_RUN_CHECKED(close_drains_main, &c);
    assert_int_equal(c.after_close.closed, 1);
    assert_int_equal(c.after_close.count, 3);
    for (int k = 0; k < 3; k++) {
        assert_int_equal(c.results[k], 0);
        assert_int_equal(c.vals[k], k + 1);
    }
    for (int k = 3; k < 6; k++) {
        assert_int_equal(c.results[k], -EPIPE);
        assert_int_equal(c.vals[k], -1);
    }
    assert_int_equal(coil_chan_free(c.ch), 0);
}

/* Closing a full channel wakes its waiting senders with -EPIPE; their
 * elements are not added, and what was buffered still drains. */
static void close_full_main(void *arg) {
    struct closectx *c = arg;
    coil_id ids[2];
    int v = 1;
    EXPECT_EQ(coil_chan_send(c->ch, &v), 0);
    c->ops[0] = (struct op){.ch = c->ch, .kind = OP_SEND, .val = 2};
    c->ops[1] = (struct op){.ch = c->ch, .kind = OP_SEND_ERROR, .val = EIO};
    ids[0] = spawn_op(&c->ops[0]);
    ids[1] = spawn_op(&c->ops[1]);
    EXPECT(await_balance(c->ch, 2));
    EXPECT_EQ(coil_chan_close(c->ch), 0);
    EXPECT_EQ(balance(c->ch), 0);
    EXPECT_EQ(count(c->ch), 1);
    for (int i = 0; i < 2; i++)
        EXPECT_EQ(coil_join(ids[i], COIL_FOREVER), 0);
    for (int k = 0; k < 3; k++) {
        c->vals[k] = -1;
        c->results[k] = coil_chan_recv(c->ch, &c->vals[k]);
    }
}

static void test_close_wakes_waiting_senders(void **state) {
    struct closectx c = {0};
    c.ch = open_chan(sizeof(int), 1);
    COIL_RUN_CHECKED(close_full_main, &c);
    assert_int_equal(c.ops[0].result, -EPIPE);
    assert_int_equal(c.ops[1].result, -EPIPE);
    assert_int_equal(c.results[0], 0);
    assert_int_equal(c.vals[0], 1);
    assert_int_equal(c.results[1], -EPIPE);
    assert_int_equal(c.results[2], -EPIPE);
    assert_int_equal(coil_chan_free(c.ch), 0);
}

static void close_empty_main(void *arg) {
    struct closectx *c = arg;
    coil_id ids[3];
    for (int i = 0; i < 3; i++) {
        c->ops[i] = (struct op){.ch = c->ch, .kind = OP_RECV, .val = 77};
        ids[i] = spawn_op(&c->ops[i]);
    }
    EXPECT(await_balance(c->ch, -3));
    EXPECT_EQ(coil_chan_close(c->ch), 0);
    EXPECT_EQ(balance(c->ch), 0);
    for (int i = 0; i < 3; i++)
        EXPECT_EQ(coil_join(ids[i], COIL_FOREVER), 0);
}

static void test_close_wakes_waiting_receivers(void **state) {
    struct closectx c = {0};
    c.ch = open_chan(sizeof(int), 3);
    COIL_RUN_CHECKED(close_empty_main, &c);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(c.ops[i].result, -EPIPE);
        assert_int_equal(c.ops[i].val, 77);
    }
    assert_int_equal(coil_chan_free(c.ch), 0);
}

/* ---- send_error --------------------------------------------------------- */

struct errs {
    coil_chan *ch;
    int results[8];
    int vals[8];
    long count_before;
    struct op blocked;
    int blocked_results[3];
    int blocked_vals[3];
};

static void errors_in_order_main(void *arg) {
    struct errs *e = arg;
    int v = 10;
    EXPECT_EQ(coil_chan_send(e->ch, &v), 0);
    EXPECT_EQ(coil_chan_send_error(e->ch, E2BIG), 0);
    v = 30;
    EXPECT_EQ(coil_chan_send(e->ch, &v), 0);
    EXPECT_EQ(coil_chan_send_error(e->ch, ENOENT), 0);
    v = 50;
    EXPECT_EQ(coil_chan_send(e->ch, &v), 0);
    e->count_before = count(e->ch);                    /* errors take slots */
    EXPECT_EQ(coil_chan_send_error(e->ch, EAGAIN), 0); /* 6th: full now */
    EXPECT_EQ(coil_chan_send_dl(e->ch, &v, 0), -ETIMEDOUT);
    EXPECT_EQ(coil_chan_close(e->ch), 0); /* errors drain too after close */
    for (int k = 0; k < 7; k++) {
        e->vals[k] = -1;
        e->results[k] = coil_chan_recv(e->ch, &e->vals[k]);
    }
}

static void test_send_error_in_order(void **state) {
    struct errs e = {0};
    e.ch = open_chan(sizeof(int), 6);
    COIL_RUN_CHECKED(errors_in_order_main, &e);
    assert_int_equal(e.count_before, 5);
    static const int want_res[] = {0, -E2BIG, 0, -ENOENT, 0, -EAGAIN, -EPIPE};
    static const int want_val[] = {10, -1, 30, -1, 50, -1, -1}; /* elem untouched on error */
    for (int k = 0; k < 7; k++) {
        if (e.results[k] != want_res[k])
            fail_msg("recv #%d returned %d, want %d", k, e.results[k], want_res[k]);
        if (e.vals[k] != want_val[k])
            fail_msg("recv #%d left %d, want %d", k, e.vals[k], want_val[k]);
    }
    assert_int_equal(coil_chan_free(e.ch), 0);
}

/* A send_error that waits for room moves into the buffer like an element. */
static void error_waits_main(void *arg) {
    struct errs *e = arg;
    int v = 1;
    EXPECT_EQ(coil_chan_send(e->ch, &v), 0);
    e->blocked = (struct op){.ch = e->ch, .kind = OP_SEND_ERROR, .val = ETIME};
    coil_id id = spawn_op(&e->blocked);
    EXPECT(await_balance(e->ch, 1));
    EXPECT(!e->blocked.done);
    e->blocked_vals[0] = -1;
    e->blocked_results[0] = coil_chan_recv(e->ch, &e->blocked_vals[0]);
    EXPECT_EQ(count(e->ch), 1); /* the error moved into the freed slot */
    EXPECT_EQ(balance(e->ch), 0);
    e->blocked_vals[1] = -1;
    e->blocked_results[1] = coil_chan_recv(e->ch, &e->blocked_vals[1]);
    EXPECT_EQ(count(e->ch), 0);
    e->blocked_results[2] = coil_chan_recv_dl(e->ch, &v, 0);
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
}

static void test_send_error_waits_for_room(void **state) {
    struct errs e = {0};
    e.ch = open_chan(sizeof(int), 1);
    COIL_RUN_CHECKED(error_waits_main, &e);
    assert_int_equal(e.blocked.result, 0);
    assert_int_equal(e.blocked_results[0], 0);
    assert_int_equal(e.blocked_vals[0], 1);
    assert_int_equal(e.blocked_results[1], -ETIME);
    assert_int_equal(e.blocked_vals[1], -1);
    assert_int_equal(e.blocked_results[2], -ETIMEDOUT);
    assert_int_equal(coil_chan_free(e.ch), 0);
}

/* ---- deadlines and free ------------------------------------------------- */

struct dl {
    coil_chan *ch;
    int send_res, recv_res;
    int64_t send_waited, recv_waited;
    int bal_after[2];
};

static void deadline_main(void *arg) {
    struct dl *d = arg;
    int v = 1;
    EXPECT_EQ(coil_chan_send(d->ch, &v), 0);
    EXPECT_EQ(coil_chan_send(d->ch, &v), 0);
    int64_t t0 = coil_now();
    d->send_res = coil_chan_send_dl(d->ch, &v, t0 + 20 * COIL_MSEC);
    d->send_waited = coil_now() - t0;
    d->bal_after[0] = balance(d->ch);
    EXPECT_EQ(coil_chan_recv(d->ch, &v), 0);
    EXPECT_EQ(coil_chan_recv(d->ch, &v), 0);
    t0 = coil_now();
    d->recv_res = coil_chan_recv_dl(d->ch, &v, t0 + 20 * COIL_MSEC);
    d->recv_waited = coil_now() - t0;
    d->bal_after[1] = balance(d->ch);
    EXPECT_EQ(count(d->ch), 0);
}

static void test_deadlines(void **state) {
    struct dl d = {0};
    d.ch = open_chan(sizeof(int), 2);
    COIL_RUN_CHECKED(deadline_main, &d);
    assert_int_equal(d.send_res, -ETIMEDOUT);
    assert_int_equal(d.recv_res, -ETIMEDOUT);
    assert_true(d.send_waited >= 20 * COIL_MSEC);
    assert_true(d.recv_waited >= 20 * COIL_MSEC);
    assert_int_equal(d.bal_after[0], 0);
    assert_int_equal(d.bal_after[1], 0);
    assert_int_equal(coil_chan_free(d.ch), 0);
}

/* Freeing a channel that still buffers elements is fine (and leaks nothing,
 * which the Valgrind run checks), inside and outside coil_run. */
static void free_buffered_main(void *arg) {
    coil_chan *ch = arg;
    int v = 3;
    EXPECT_EQ(coil_chan_send(ch, &v), 0);
    EXPECT_EQ(coil_chan_send(ch, &v), 0);
    EXPECT_EQ(coil_chan_free(ch), 0);
}

static void test_free_with_buffered_elements(void **state) {
    coil_chan *ch = open_chan(sizeof(int), 8);
    COIL_RUN_CHECKED(free_buffered_main, ch);
    ch = open_chan(sizeof(long), 8);
    coil_chan_info info;
    assert_int_equal(coil_chan_getinfo(ch, &info), 0);
    assert_int_equal(info.capacity, 8);
    assert_int_equal(info.elem_size, sizeof(long));
    assert_int_equal(info.count, 0);
    assert_int_equal(coil_chan_free(ch), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_capacity),
        cmocka_unit_test(test_order_and_wraparound),
        cmocka_unit_test(test_large_elements),
        cmocka_unit_test(test_waiting_sender_moves_into_buffer),
        cmocka_unit_test(test_waiting_receivers_get_elements_directly),
        cmocka_unit_test(test_producer_consumer),
        cmocka_unit_test(test_close_drains_then_epipe),
        cmocka_unit_test(test_close_wakes_waiting_senders),
        cmocka_unit_test(test_close_wakes_waiting_receivers),
        cmocka_unit_test(test_send_error_in_order),
        cmocka_unit_test(test_send_error_waits_for_room),
        cmocka_unit_test(test_deadlines),
        cmocka_unit_test(test_free_with_buffered_elements),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
