/* Unbuffered channels: rendezvous semantics, element copies, FIFO order of
 * waiters, balance, preference (who runs first after a transfer), send_error
 * and close as seen by the waiting side. */
#define COIL_TEST_CHAN_HELPERS
#include "coil_test.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ---- rendezvous --------------------------------------------------------- */

struct rdv {
    struct evlog log;
    coil_chan *ch;
};

/* A send waits until a receiver takes the element. */
static void send_waits_main(void *arg) {
    struct rdv *r = arg;
    struct op s = {.ch = r->ch, .kind = OP_SEND, .val = 42, .log = &r->log, .tag = "S"};
    coil_id id = spawn_op(&s);
    EXPECT(await_balance(r->ch, 1));
    for (int i = 0; i < 5; i++)
        coil_yield(); /* still parked however often others run */
    EXPECT(!s.done);
    EXPECT_EQ(balance(r->ch), 1);
    logev(&r->log, "M:recv");
    int v = -1;
    EXPECT_EQ(coil_chan_recv(r->ch, &v), 0);
    EXPECT_EQ(v, 42);
    logev(&r->log, "M:got=%d", v);
    EXPECT_EQ(balance(r->ch), 0);
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    EXPECT(s.done);
    EXPECT_EQ(s.result, 0);
}

static void test_send_waits_for_receiver(void **state) {
    struct rdv r = {0};
    r.ch = open_chan(sizeof(int), 0);
    COIL_RUN_CHECKED(send_waits_main, &r);
    assert_string_equal(r.log.buf, "S:start M:recv M:got=42 S:done=0,42");
    assert_int_equal(coil_chan_free(r.ch), 0);
}

/* A receive waits until a sender brings an element. */
static void recv_waits_main(void *arg) {
    struct rdv *r = arg;
    struct op rc = {.ch = r->ch, .kind = OP_RECV, .val = -1, .log = &r->log, .tag = "R"};
    coil_id id = spawn_op(&rc);
    EXPECT(await_balance(r->ch, -1));
    for (int i = 0; i < 5; i++)
        coil_yield();
    EXPECT(!rc.done);
    EXPECT_EQ(rc.val, -1); /* nothing written while waiting */
    EXPECT_EQ(balance(r->ch), -1);
    logev(&r->log, "M:send");
    int v = 77;
    EXPECT_EQ(coil_chan_send(r->ch, &v), 0);
    logev(&r->log, "M:sent");
    EXPECT_EQ(balance(r->ch), 0);
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    EXPECT_EQ(rc.result, 0);
    EXPECT_EQ(rc.val, 77);
}

static void test_recv_waits_for_sender(void **state) {
    struct rdv r = {0};
    r.ch = open_chan(sizeof(int), 0);
    COIL_RUN_CHECKED(recv_waits_main, &r);
    /* default preference -1: the receiver runs first after the transfer */
    assert_string_equal(r.log.buf, "R:start M:send R:done=0,77 M:sent");
    assert_int_equal(coil_chan_free(r.ch), 0);
}

/* Many rendezvous in a row between two tasklets, both directions. */
struct pingpong {
    coil_chan *ping, *pong;
    int n;
    long sum;
    int errors;
};

static void ponger(void *arg) {
    struct pingpong *p = arg;
    for (int i = 0; i < p->n; i++) {
        int v;
        if (coil_chan_recv(p->ping, &v) != 0) p->errors++;
        v = v * 2 + 1;
        if (coil_chan_send(p->pong, &v) != 0) p->errors++;
    }
}

static void pingpong_main(void *arg) {
    struct pingpong *p = arg;
    coil_id id = coil_spawn(ponger, p, NULL);
    EXPECT(id > 0);
    for (int i = 0; i < p->n; i++) {
        int v = i, w = -1;
        EXPECT_EQ(coil_chan_send(p->ping, &v), 0);
        EXPECT_EQ(coil_chan_recv(p->pong, &w), 0);
        EXPECT_EQ(w, 2 * i + 1);
        p->sum += w;
    }
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    EXPECT_EQ(balance(p->ping), 0);
    EXPECT_EQ(balance(p->pong), 0);
}

static void test_pingpong(void **state) {
    struct pingpong p = {.n = coil_test_under_valgrind() ? 500 : 5000};
    p.ping = open_chan(sizeof(int), 0);
    p.pong = open_chan(sizeof(int), 0);
    COIL_RUN_CHECKED(pingpong_main, &p);
    assert_int_equal(p.errors, 0);
    assert_int_equal(p.sum, (long)p.n * p.n); /* sum of 2i+1 for i < n */
    assert_int_equal(coil_chan_free(p.ping), 0);
    assert_int_equal(coil_chan_free(p.pong), 0);
}

/* ---- element copies ----------------------------------------------------- */

#define GUARD 64

static unsigned char pattern(size_t i, size_t size) {
    return (unsigned char)((i * 131u + size * 7u + (i >> 8)) & 0xff);
}

struct copy {
    size_t size;
    coil_chan *ch;
    unsigned char *src, *dst; /* dst has GUARD extra bytes after size */
    bool receiver_first;
    int send_result, recv_result;
};

static void copy_sender(void *arg) {
    struct copy *c = arg;
    c->send_result = coil_chan_send(c->ch, c->src);
}

static void copy_receiver(void *arg) {
    struct copy *c = arg;
    c->recv_result = coil_chan_recv(c->ch, c->dst);
}

static void copy_main(void *arg) {
    struct copy *c = arg;
    coil_id a, b;
    if (c->receiver_first) {
        a = coil_spawn(copy_receiver, c, NULL);
        EXPECT(await_balance(c->ch, -1));
        b = coil_spawn(copy_sender, c, NULL);
    } else {
        a = coil_spawn(copy_sender, c, NULL);
        EXPECT(await_balance(c->ch, 1));
        b = coil_spawn(copy_receiver, c, NULL);
    }
    EXPECT(a > 0 && b > 0);
    EXPECT_EQ(coil_join(a, COIL_FOREVER), 0);
    EXPECT_EQ(coil_join(b, COIL_FOREVER), 0);
}

static void check_copy(size_t size, bool receiver_first) {
    struct copy c = {.size = size, .receiver_first = receiver_first};
    c.ch = open_chan(size, 0);
    c.src = malloc(size);
    c.dst = malloc(size + GUARD);
    assert_non_null(c.src);
    assert_non_null(c.dst);
    for (size_t i = 0; i < size; i++)
        c.src[i] = pattern(i, size);
    memset(c.dst, 0xA5, size + GUARD);
    COIL_RUN_CHECKED(copy_main, &c);
    assert_int_equal(c.send_result, 0);
    assert_int_equal(c.recv_result, 0);
    for (size_t i = 0; i < size; i++) {
        if (c.dst[i] != pattern(i, size))
            fail_msg("size %zu: byte %zu is %#x, want %#x", size, i, c.dst[i], pattern(i, size));
        if (c.src[i] != pattern(i, size)) fail_msg("size %zu: the source changed", size);
    }
    for (size_t i = size; i < size + GUARD; i++)
        if (c.dst[i] != 0xA5) fail_msg("size %zu: byte %zu past the element was written", size, i);
    assert_int_equal(coil_chan_free(c.ch), 0);
    free(c.src);
    free(c.dst);
}

static void test_element_sizes(void **state) {
    static const size_t sizes[] = {1,   2,   3,    4,    5,    7,    8,     9,      15,
                                   16,  17,  31,   32,   33,   63,   64,    65,     100,
                                   255, 256, 1000, 4095, 4096, 4097, 65536, 100003, 1 << 20};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        check_copy(sizes[i], true);
        check_copy(sizes[i], false);
    }
}

/* A large struct travels intact, both when it is sent to a waiting receiver
 * and when a receiver takes it from a waiting sender. */
struct big {
    char name[61];
    double values[700];
    int64_t id;
    struct {
        uint8_t tag;
        uint32_t bits[33];
    } nested[17];
};

struct bigctx {
    coil_chan *ch;
    struct big out[2];
    int results[4];
};

static void fill_big(struct big *b, int seed) {
    memset(b, 0, sizeof *b);
    snprintf(b->name, sizeof b->name, "big struct number %d", seed);
    for (int i = 0; i < 700; i++)
        b->values[i] = seed * 1000.0 + i / 7.0;
    b->id = (int64_t)seed << 40 | 0x1234;
    for (int i = 0; i < 17; i++) {
        b->nested[i].tag = (uint8_t)(seed + i);
        for (int j = 0; j < 33; j++)
            b->nested[i].bits[j] = (uint32_t)(seed * 7919 + i * 33 + j);
    }
}

static void big_sender(void *arg) {
    struct bigctx *c = arg;
    struct big b;
    fill_big(&b, 1);
    c->results[0] = coil_chan_send(c->ch, &b); /* parks until main receives */
    fill_big(&b, 2);
    c->results[1] = coil_chan_send(c->ch, &b); /* main waits already */
}

static void big_main(void *arg) {
    struct bigctx *c = arg;
    coil_id id = coil_spawn(big_sender, c, NULL);
    EXPECT(await_balance(c->ch, 1));
    c->results[2] = coil_chan_recv(c->ch, &c->out[0]);
    c->results[3] = coil_chan_recv(c->ch, &c->out[1]);
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
}

static void test_large_struct(void **state) {
    struct bigctx *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->ch = open_chan(sizeof(struct big), 0);
    memset(c->out, 0xEE, sizeof c->out);
    COIL_RUN_CHECKED(big_main, c);
    for (int i = 0; i < 4; i++)
        assert_int_equal(c->results[i], 0);
    struct big want;
    fill_big(&want, 1);
    assert_memory_equal(&c->out[0], &want, sizeof want);
    fill_big(&want, 2);
    assert_memory_equal(&c->out[1], &want, sizeof want);
    assert_int_equal(coil_chan_free(c->ch), 0);
    free(c);
}

/* ---- FIFO order of waiters ---------------------------------------------- */

#define NWAIT 6

struct fifo {
    coil_chan *ch;
    struct op ops[NWAIT];
    struct evlog log;
    int balances[NWAIT + 1];
};

/* Tasklet i yields NWAIT - i times first, so they park in the reverse of
 * their spawn order: FIFO is by the time of parking, not by id. */
static void fifo_receivers_main(void *arg) {
    struct fifo *f = arg;
    for (int i = 0; i < NWAIT; i++) {
        f->ops[i] = (struct op){.ch = f->ch, .kind = OP_RECV, .val = -1, .yields_first = NWAIT - i};
        spawn_op(&f->ops[i]);
    }
    EXPECT(await_balance(f->ch, -NWAIT));
    f->balances[0] = balance(f->ch);
    for (int k = 0; k < NWAIT; k++) {
        int v = 100 + k;
        EXPECT_EQ(coil_chan_send(f->ch, &v), 0);
        f->balances[k + 1] = balance(f->ch);
    }
    for (int i = 0; i < 10; i++)
        coil_yield();
}

static void test_fifo_receivers(void **state) {
    struct fifo f = {0};
    f.ch = open_chan(sizeof(int), 0);
    COIL_RUN_CHECKED(fifo_receivers_main, &f);
    for (int i = 0; i < NWAIT; i++) {
        assert_true(f.ops[i].done);
        assert_int_equal(f.ops[i].result, 0);
        /* the last spawned parked first and gets the first element */
        assert_int_equal(f.ops[i].val, 100 + (NWAIT - 1 - i));
    }
    for (int k = 0; k <= NWAIT; k++)
        assert_int_equal(f.balances[k], -(NWAIT - k));
    assert_int_equal(coil_chan_free(f.ch), 0);
}

static void fifo_senders_main(void *arg) {
    struct fifo *f = arg;
    for (int i = 0; i < NWAIT; i++) {
        f->ops[i] =
            (struct op){.ch = f->ch, .kind = OP_SEND, .val = 200 + i, .yields_first = NWAIT - i};
        spawn_op(&f->ops[i]);
    }
    EXPECT(await_balance(f->ch, NWAIT));
    f->balances[0] = balance(f->ch);
    for (int k = 0; k < NWAIT; k++) {
        int v = -1;
        EXPECT_EQ(coil_chan_recv(f->ch, &v), 0);
        logev(&f->log, "%d", v);
        f->balances[k + 1] = balance(f->ch);
    }
    for (int i = 0; i < 10; i++)
        coil_yield();
}

static void test_fifo_senders(void **state) {
    struct fifo f = {0};
    f.ch = open_chan(sizeof(int), 0);
    COIL_RUN_CHECKED(fifo_senders_main, &f);
    assert_string_equal(f.log.buf, "205 204 203 202 201 200");
    for (int i = 0; i < NWAIT; i++) {
        assert_true(f.ops[i].done);
        assert_int_equal(f.ops[i].result, 0);
    }
    for (int k = 0; k <= NWAIT; k++)
        assert_int_equal(f.balances[k], NWAIT - k);
    assert_int_equal(coil_chan_free(f.ch), 0);
}

/* ---- balance and getinfo ------------------------------------------------ */

struct bal {
    coil_chan *ch;
    int seen[16];
    int n;
};

/* The deadline leaves the main tasklet time to see this waiter counted before
 * it times out, under Valgrind on a loaded machine too (5 ms did not). */
static void timed_recv(void *arg) {
    coil_chan *ch = arg;
    int v;
    EXPECT_EQ(coil_chan_recv_dl(ch, &v, coil_now() + 200 * COIL_MSEC), -ETIMEDOUT);
}

static void balance_main(void *arg) {
    struct bal *b = arg;
    struct op s[3], r[2];
    coil_id ids[5];
    b->seen[b->n++] = balance(b->ch); /* 0: fresh */
    for (int i = 0; i < 3; i++) {
        s[i] = (struct op){.ch = b->ch, .kind = OP_SEND, .val = i};
        ids[i] = spawn_op(&s[i]);
        EXPECT(await_balance(b->ch, i + 1));
        b->seen[b->n++] = balance(b->ch); /* 1, 2, 3 */
    }
    int v;
    EXPECT_EQ(coil_chan_recv(b->ch, &v), 0);
    EXPECT_EQ(v, 0);
    b->seen[b->n++] = balance(b->ch); /* 2 */
    EXPECT_EQ(coil_chan_recv(b->ch, &v), 0);
    EXPECT_EQ(coil_chan_recv(b->ch, &v), 0);
    b->seen[b->n++] = balance(b->ch); /* 0 */
    for (int i = 0; i < 2; i++) {
        r[i] = (struct op){.ch = b->ch, .kind = OP_RECV};
        ids[3 + i] = spawn_op(&r[i]);
        EXPECT(await_balance(b->ch, -(i + 1)));
        b->seen[b->n++] = balance(b->ch); /* -1, -2 */
    }
    v = 9;
    EXPECT_EQ(coil_chan_send(b->ch, &v), 0);
    b->seen[b->n++] = balance(b->ch); /* -1 */
    EXPECT_EQ(coil_chan_send(b->ch, &v), 0);
    b->seen[b->n++] = balance(b->ch); /* 0 */
    for (int i = 0; i < 5; i++) {
        EXPECT_EQ(coil_join(ids[i], COIL_FOREVER), 0);
        EXPECT_EQ(i < 3 ? s[i].result : r[i - 3].result, 0);
    }
    EXPECT_EQ(r[0].val, 9);
    /* a waiter that times out no longer counts */
    coil_id id = coil_spawn(timed_recv, b->ch, NULL);
    EXPECT(await_balance(b->ch, -1));
    b->seen[b->n++] = balance(b->ch); /* -1 */
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    b->seen[b->n++] = balance(b->ch); /* 0 */
    /* nor does a killed one */
    struct op k = {.ch = b->ch, .kind = OP_SEND, .val = 5};
    id = spawn_op(&k);
    EXPECT(await_balance(b->ch, 1));
    EXPECT_EQ(coil_kill(id), 0);
    b->seen[b->n++] = balance(b->ch); /* 0 at once */
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    EXPECT_EQ(k.result, -ECANCELED);
}

static void test_balance(void **state) {
    struct bal b = {0};
    b.ch = open_chan(sizeof(int), 0);
    COIL_RUN_CHECKED(balance_main, &b);
    static const int want[] = {0, 1, 2, 3, 2, 0, -1, -2, -1, 0, -1, 0, 0};
    assert_int_equal(b.n, (int)(sizeof want / sizeof want[0]));
    for (int i = 0; i < b.n; i++) {
        if (b.seen[i] != want[i]) fail_msg("balance #%d is %d, want %d", i, b.seen[i], want[i]);
    }
    assert_int_equal(coil_chan_free(b.ch), 0);
}

static void test_getinfo_fields(void **state) {
    coil_chan *ch = open_chan(24, 0);
    coil_chan_info info;
    memset(&info, 0x5a, sizeof info);
    /* callable outside coil_run */
    assert_int_equal(coil_chan_getinfo(ch, &info), 0);
    assert_int_equal(info.elem_size, 24);
    assert_int_equal(info.capacity, 0);
    assert_int_equal(info.count, 0);
    assert_int_equal(info.balance, 0);
    assert_int_equal(info.preference, -1);
    assert_int_equal(info.closed, 0);
    for (int p = -1; p <= 1; p++) {
        assert_int_equal(coil_chan_set_preference(ch, p), 0);
        assert_int_equal(coil_chan_getinfo(ch, &info), 0);
        assert_int_equal(info.preference, p);
    }
    assert_int_equal(coil_chan_close(ch), 0);
    assert_int_equal(coil_chan_getinfo(ch, &info), 0);
    assert_int_equal(info.closed, 1);
    assert_int_equal(info.elem_size, 24);
    assert_int_equal(coil_chan_free(ch), 0);
}

/* ---- preference --------------------------------------------------------- */

struct pref {
    coil_chan *ch;
    int preference;
    struct evlog log;
};

static void pref_receiver(void *arg) {
    struct pref *p = arg;
    int v = -1;
    logev(&p->log, "R:wait");
    int r = coil_chan_recv(p->ch, &v);
    logev(&p->log, "R:got=%d,%d", r, v);
    coil_yield();
    logev(&p->log, "R:end");
}

/* The sender makes the transfer: the receiver waits already. */
static void pref_send_initiated_main(void *arg) {
    struct pref *p = arg;
    EXPECT_EQ(coil_chan_set_preference(p->ch, p->preference), 0);
    coil_id id = coil_spawn(pref_receiver, p, NULL);
    EXPECT(await_balance(p->ch, -1));
    int v = 7;
    logev(&p->log, "S:send");
    int r = coil_chan_send(p->ch, &v);
    logev(&p->log, "S:sent=%d", r);
    coil_yield();
    logev(&p->log, "S:yielded");
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
}

static const char *pref_send_initiated(int preference, struct pref *p) {
    memset(p, 0, sizeof *p);
    p->preference = preference;
    p->ch = open_chan(sizeof(int), 0);
    COIL_RUN_CHECKED(pref_send_initiated_main, p);
    assert_int_equal(coil_chan_free(p->ch), 0);
    return p->log.buf;
}

static void test_preference_receiver_first_send_initiated(void **state) {
    struct pref p;
    /* -1: the receiver runs at once, the sender goes to the back of the queue */
    assert_string_equal(pref_send_initiated(-1, &p),
                        "R:wait S:send R:got=0,7 S:sent=0 R:end S:yielded");
}

static void test_preference_neither_send_initiated(void **state) {
    struct pref p;
    /* 0: the sender made the transfer and continues; the receiver is queued
     * and runs when the sender yields */
    assert_string_equal(pref_send_initiated(0, &p),
                        "R:wait S:send S:sent=0 R:got=0,7 S:yielded R:end");
}

static void test_preference_sender_first_send_initiated(void **state) {
    struct pref p;
    assert_string_equal(pref_send_initiated(1, &p),
                        "R:wait S:send S:sent=0 R:got=0,7 S:yielded R:end");
}

static void pref_sender(void *arg) {
    struct pref *p = arg;
    int v = 8;
    logev(&p->log, "S:wait");
    int r = coil_chan_send(p->ch, &v);
    logev(&p->log, "S:sent=%d", r);
    coil_yield();
    logev(&p->log, "S:end");
}

/* The receiver makes the transfer: the sender waits already. */
static void pref_recv_initiated_main(void *arg) {
    struct pref *p = arg;
    EXPECT_EQ(coil_chan_set_preference(p->ch, p->preference), 0);
    coil_id id = coil_spawn(pref_sender, p, NULL);
    EXPECT(await_balance(p->ch, 1));
    int v = -1;
    logev(&p->log, "R:recv");
    int r = coil_chan_recv(p->ch, &v);
    logev(&p->log, "R:got=%d,%d", r, v);
    coil_yield();
    logev(&p->log, "R:yielded");
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
}

static const char *pref_recv_initiated(int preference, struct pref *p) {
    memset(p, 0, sizeof *p);
    p->preference = preference;
    p->ch = open_chan(sizeof(int), 0);
    COIL_RUN_CHECKED(pref_recv_initiated_main, p);
    assert_int_equal(coil_chan_free(p->ch), 0);
    return p->log.buf;
}

static void test_preference_receiver_first_recv_initiated(void **state) {
    struct pref p;
    /* -1: the receiver is the one that made the transfer: it continues */
    assert_string_equal(pref_recv_initiated(-1, &p),
                        "S:wait R:recv R:got=0,8 S:sent=0 R:yielded S:end");
}

static void test_preference_neither_recv_initiated(void **state) {
    struct pref p;
    assert_string_equal(pref_recv_initiated(0, &p),
                        "S:wait R:recv R:got=0,8 S:sent=0 R:yielded S:end");
}

static void test_preference_sender_first_recv_initiated(void **state) {
    struct pref p;
    /* 1: the sender runs at once, the receiver goes to the back of the queue */
    assert_string_equal(pref_recv_initiated(1, &p),
                        "S:wait R:recv S:sent=0 R:got=0,8 S:end R:yielded");
}

/* A third, runnable tasklet: with preference -1 the receiver runs before it
 * (it is not merely queued behind it), and the sender goes behind it. */
static void bystander(void *arg) {
    struct pref *p = arg;
    logev(&p->log, "B:ran");
}

static void pref_bystander_main(void *arg) {
    struct pref *p = arg;
    EXPECT_EQ(coil_chan_set_preference(p->ch, p->preference), 0);
    coil_id r = coil_spawn(pref_receiver, p, NULL);
    EXPECT(await_balance(p->ch, -1));
    coil_id b = coil_spawn(bystander, p, NULL); /* runnable, ahead of everyone */
    int v = 7;
    logev(&p->log, "S:send");
    int res = coil_chan_send(p->ch, &v);
    logev(&p->log, "S:sent=%d", res);
    EXPECT_EQ(coil_join(r, COIL_FOREVER), 0);
    EXPECT_EQ(coil_join(b, COIL_FOREVER), 0);
}

static void test_preference_with_bystander(void **state) {
    struct pref p = {.preference = -1};
    p.ch = open_chan(sizeof(int), 0);
    COIL_RUN_CHECKED(pref_bystander_main, &p);
    /* receiver first; it yields, the bystander (queued before the sender) runs */
    assert_string_equal(p.log.buf, "R:wait S:send R:got=0,7 B:ran S:sent=0 R:end");
    assert_int_equal(coil_chan_free(p.ch), 0);

    memset(&p, 0, sizeof p);
    p.ch = open_chan(sizeof(int), 0);
    COIL_RUN_CHECKED(pref_bystander_main, &p); /* preference 0 */
    /* sender continues; the receiver is queued behind the bystander */
    assert_string_equal(p.log.buf, "R:wait S:send S:sent=0 B:ran R:got=0,7 R:end");
    assert_int_equal(coil_chan_free(p.ch), 0);
}

/* The preference holds for every transfer, however many happen in a row
 * (and so however long the scheduler's round has lasted). */
struct prefloop {
    coil_chan *ch;
    int n;
    int preference;
    struct evlog log;
};

static void prefloop_consumer(void *arg) {
    struct prefloop *p = arg;
    for (int i = 0; i < p->n; i++) {
        int v = -1;
        EXPECT_EQ(coil_chan_recv(p->ch, &v), 0);
        logev(&p->log, "R%d", v);
    }
}

static void prefloop_producer(void *arg) {
    struct prefloop *p = arg;
    for (int i = 0; i < p->n; i++) {
        EXPECT_EQ(coil_chan_send(p->ch, &i), 0);
        logev(&p->log, "S%d", i);
    }
}

static void prefloop_main(void *arg) {
    struct prefloop *p = arg;
    EXPECT_EQ(coil_chan_set_preference(p->ch, p->preference), 0);
    if (p->preference < 0) {
        /* the consumer parks first each time: every transfer is made by the
         * producer (main) into a waiting receiver, which must run first */
        coil_id id = coil_spawn(prefloop_consumer, p, NULL);
        EXPECT(await_balance(p->ch, -1));
        prefloop_producer(p);
        EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    } else {
        /* the producer parks first each time: every transfer is made by the
         * consumer (main) from a waiting sender, which must run first */
        coil_id id = coil_spawn(prefloop_producer, p, NULL);
        EXPECT(await_balance(p->ch, 1));
        prefloop_consumer(p);
        EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    }
}

static void check_prefloop(int preference) {
    struct prefloop *p = calloc(1, sizeof *p);
    assert_non_null(p);
    p->n = 300;
    p->preference = preference;
    p->ch = open_chan(sizeof(int), 0);
    COIL_RUN_CHECKED(prefloop_main, p);
    struct evlog *want = calloc(1, sizeof *want);
    assert_non_null(want);
    for (int i = 0; i < p->n; i++) {
        /* the preferred (waiting) side logs first for every element */
        if (preference < 0) {
            logev(want, "R%d", i);
            logev(want, "S%d", i);
        } else {
            logev(want, "S%d", i);
            logev(want, "R%d", i);
        }
    }
    char diag[256] = "";
    if (strcmp(p->log.buf, want->buf) != 0) {
        size_t i = 0;
        while (p->log.buf[i] == want->buf[i])
            i++;
        size_t from = i > 20 ? i - 20 : 0;
        snprintf(diag, sizeof diag,
                 "preference %d: the log departs from the expected order at byte %zu:\n"
                 "  got  ...%.60s\n  want ...%.60s",
                 preference, i, p->log.buf + from, want->buf + from);
    }
    int freed = coil_chan_free(p->ch);
    free(want);
    free(p);
    if (diag[0]) fail_msg("%s", diag);
    assert_int_equal(freed, 0);
}

static void test_preference_receiver_first_many_transfers(void **state) {
    check_prefloop(-1);
}

static void test_preference_sender_first_many_transfers(void **state) {
    check_prefloop(1);
}

/* ---- send_error and close on an unbuffered channel ---------------------- */

struct errctx {
    coil_chan *ch;
    struct op ops[4];
    int send_err_result;
    int v;
};

static void send_error_main(void *arg) {
    struct errctx *e = arg;
    /* to a waiting receiver: its elem stays untouched */
    e->ops[0] = (struct op){.ch = e->ch, .kind = OP_RECV, .val = 1234};
    spawn_op(&e->ops[0]);
    EXPECT(await_balance(e->ch, -1));
    EXPECT_EQ(coil_chan_send_error(e->ch, ECONNRESET), 0);
    /* from a waiting sender: send_error waits for a receiver like a send */
    e->ops[1] = (struct op){.ch = e->ch, .kind = OP_SEND_ERROR, .val = ENOSPC};
    spawn_op(&e->ops[1]);
    EXPECT(await_balance(e->ch, 1));
    for (int i = 0; i < 3; i++)
        coil_yield();
    EXPECT(!e->ops[1].done);
    e->v = 4321;
    EXPECT_EQ(coil_chan_recv(e->ch, &e->v), -ENOSPC);
    EXPECT_EQ(e->v, 4321);
    EXPECT_EQ(balance(e->ch), 0);
    /* the channel keeps working afterwards */
    e->ops[2] = (struct op){.ch = e->ch, .kind = OP_SEND, .val = 55};
    spawn_op(&e->ops[2]);
    EXPECT_EQ(coil_chan_recv(e->ch, &e->v), 0);
    EXPECT_EQ(e->v, 55);
    for (int i = 0; i < 5; i++)
        coil_yield();
}

static void test_send_error(void **state) {
    struct errctx e = {0};
    e.ch = open_chan(sizeof(int), 0);
    COIL_RUN_CHECKED(send_error_main, &e);
    assert_true(e.ops[0].done);
    assert_int_equal(e.ops[0].result, -ECONNRESET);
    assert_int_equal(e.ops[0].val, 1234);
    assert_true(e.ops[1].done);
    assert_int_equal(e.ops[1].result, 0);
    assert_int_equal(e.ops[2].result, 0);
    assert_int_equal(coil_chan_free(e.ch), 0);
}

static void close_wakes_main(void *arg) {
    struct errctx *e = arg;
    /* receivers */
    for (int i = 0; i < 3; i++) {
        e->ops[i] = (struct op){.ch = e->ch, .kind = OP_RECV, .val = 99};
        spawn_op(&e->ops[i]);
    }
    EXPECT(await_balance(e->ch, -3));
    EXPECT_EQ(coil_chan_close(e->ch), 0);
    EXPECT_EQ(balance(e->ch), 0);
    for (int i = 0; i < 5; i++)
        coil_yield();
    int v = 3;
    EXPECT_EQ(coil_chan_recv(e->ch, &v), -EPIPE);
    EXPECT_EQ(v, 3);
    EXPECT_EQ(coil_chan_send(e->ch, &v), -EPIPE);
}

static void close_wakes_senders_main(void *arg) {
    struct errctx *e = arg;
    for (int i = 0; i < 3; i++) {
        e->ops[i] = (struct op){.ch = e->ch, .kind = i == 1 ? OP_SEND_ERROR : OP_SEND, .val = 5};
        spawn_op(&e->ops[i]);
    }
    EXPECT(await_balance(e->ch, 3));
    EXPECT_EQ(coil_chan_close(e->ch), 0);
    EXPECT_EQ(balance(e->ch), 0);
    for (int i = 0; i < 5; i++)
        coil_yield();
    int v = 3;
    EXPECT_EQ(coil_chan_recv(e->ch, &v), -EPIPE); /* nothing of theirs arrives */
    EXPECT_EQ(v, 3);
}

static void test_close_wakes_waiters(void **state) {
    struct errctx e = {0};
    e.ch = open_chan(sizeof(int), 0);
    COIL_RUN_CHECKED(close_wakes_main, &e);
    for (int i = 0; i < 3; i++) {
        assert_true(e.ops[i].done);
        assert_int_equal(e.ops[i].result, -EPIPE);
        assert_int_equal(e.ops[i].val, 99); /* elem untouched */
    }
    assert_int_equal(coil_chan_free(e.ch), 0);

    memset(&e, 0, sizeof e);
    e.ch = open_chan(sizeof(int), 0);
    COIL_RUN_CHECKED(close_wakes_senders_main, &e);
    for (int i = 0; i < 3; i++) {
        assert_true(e.ops[i].done);
        assert_int_equal(e.ops[i].result, -EPIPE);
    }
    assert_int_equal(coil_chan_free(e.ch), 0);
}

/* ---- deadlines on a rendezvous ------------------------------------------ */

static void deadline_met_main(void *arg) {
    struct errctx *e = arg;
    e->ops[0] = (struct op){.ch = e->ch, .kind = OP_SEND, .val = 31, .yields_first = 3};
    spawn_op(&e->ops[0]);
    int v = 0;
    /* the sender arrives long before the deadline */
    EXPECT_EQ(coil_chan_recv_dl(e->ch, &v, coil_now() + 10 * COIL_SEC), 0);
    EXPECT_EQ(v, 31);
    e->ops[1] = (struct op){.ch = e->ch, .kind = OP_RECV, .yields_first = 3};
    spawn_op(&e->ops[1]);
    v = 32;
    EXPECT_EQ(coil_chan_send_dl(e->ch, &v, coil_now() + 10 * COIL_SEC), 0);
    for (int i = 0; i < 5; i++)
        coil_yield();
    EXPECT_EQ(e->ops[1].val, 32);
    /* a past deadline still takes what is ready */
    e->ops[2] = (struct op){.ch = e->ch, .kind = OP_SEND, .val = 33};
    spawn_op(&e->ops[2]);
    EXPECT(await_balance(e->ch, 1));
    EXPECT_EQ(coil_chan_recv_dl(e->ch, &v, 0), 0);
    EXPECT_EQ(v, 33);
    e->ops[3] = (struct op){.ch = e->ch, .kind = OP_RECV};
    spawn_op(&e->ops[3]);
    EXPECT(await_balance(e->ch, -1));
    v = 34;
    EXPECT_EQ(coil_chan_send_dl(e->ch, &v, coil_now() - COIL_SEC), 0);
    for (int i = 0; i < 5; i++)
        coil_yield();
    EXPECT_EQ(e->ops[3].val, 34);
}

static void test_deadline_met(void **state) {
    struct errctx e = {0};
    e.ch = open_chan(sizeof(int), 0);
    COIL_RUN_CHECKED(deadline_met_main, &e);
    for (int i = 0; i < 4; i++) {
        assert_true(e.ops[i].done);
        assert_int_equal(e.ops[i].result, 0);
    }
    assert_int_equal(coil_chan_free(e.ch), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_send_waits_for_receiver),
        cmocka_unit_test(test_recv_waits_for_sender),
        cmocka_unit_test(test_pingpong),
        cmocka_unit_test(test_element_sizes),
        cmocka_unit_test(test_large_struct),
        cmocka_unit_test(test_fifo_receivers),
        cmocka_unit_test(test_fifo_senders),
        cmocka_unit_test(test_balance),
        cmocka_unit_test(test_getinfo_fields),
        cmocka_unit_test(test_preference_receiver_first_send_initiated),
        cmocka_unit_test(test_preference_neither_send_initiated),
        cmocka_unit_test(test_preference_sender_first_send_initiated),
        cmocka_unit_test(test_preference_receiver_first_recv_initiated),
        cmocka_unit_test(test_preference_neither_recv_initiated),
        cmocka_unit_test(test_preference_sender_first_recv_initiated),
        cmocka_unit_test(test_preference_with_bystander),
        cmocka_unit_test(test_preference_receiver_first_many_transfers),
        cmocka_unit_test(test_preference_sender_first_many_transfers),
        cmocka_unit_test(test_send_error),
        cmocka_unit_test(test_close_wakes_waiters),
        cmocka_unit_test(test_deadline_met),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
