/* coil_choose: picks a ready clause, or waits for the first to become ready;
 * exactly one operation happens and the other clauses leave no trace; closed
 * channels, send_error, deadlines, kill, fairness, invalid input, and send
 * and receive clauses on the same channel. */
#define COIL_TEST_CHAN_HELPERS
#include "coil_test.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

/* ---- helpers ------------------------------------------------------------ */

static coil_clause recv_clause(coil_chan *ch, int *into) {
    return (coil_clause){.ch = ch, .op = COIL_CHOOSE_RECV, .elem = into};
}

static coil_clause send_clause(coil_chan *ch, int *from) {
    return (coil_clause){.ch = ch, .op = COIL_CHOOSE_SEND, .elem = from};
}

/* A tasklet that runs one coil_choose over its clauses. */
struct chooser {
    coil_clause cl[8];
    size_t n;
    int vals[8];
    int64_t deadline;
    int result;
    bool done;
};

static void chooser_fn(void *arg) {
    struct chooser *c = arg;
    c->result = coil_choose(c->cl, c->n, c->deadline);
    c->done = true;
}

/* ---- picks the ready clause --------------------------------------------- */

struct ready {
    coil_chan *ch[3];
    coil_chan *buf;
    int rounds;
    int wrong;
    int spy_runs;
};

static void ready_main(void *arg) {
    struct ready *r = arg;
    struct spy spy = {0};
    for (int i = 0; i < r->rounds; i++) {
        /* a sender waits on one of the channels only */
        int ready_idx = i % 3;
        struct op s = {.ch = r->ch[ready_idx], .kind = OP_SEND, .val = 100 + i};
        coil_id sid = spawn_op(&s);
        EXPECT(await_balance(r->ch[ready_idx], 1));
        int v[3] = {-1, -1, -1};
        coil_clause cl[3] = {recv_clause(r->ch[0], &v[0]), recv_clause(r->ch[1], &v[1]),
                             recv_clause(r->ch[2], &v[2])};
        int idx = coil_choose(cl, 3, COIL_FOREVER);
        if (idx != ready_idx || cl[idx].result != 0 || v[ready_idx] != 100 + i) r->wrong++;
        for (int k = 0; k < 3; k++) {
            if (k != ready_idx && v[k] != -1) r->wrong++; /* no trace */
            if (balance(r->ch[k]) != 0) r->wrong++;
        }
        EXPECT_EQ(coil_join(sid, COIL_FOREVER), 0);
        EXPECT_EQ(s.result, 0);

        /* a receiver waits on one channel: the send clause to it is taken */
        struct op rc = {.ch = r->ch[ready_idx], .kind = OP_RECV, .val = -1};
        coil_id rid = spawn_op(&rc);
        EXPECT(await_balance(r->ch[ready_idx], -1));
        int out[3] = {10, 11, 12};
        coil_clause sc[3] = {send_clause(r->ch[0], &out[0]), send_clause(r->ch[1], &out[1]),
                             send_clause(r->ch[2], &out[2])};
        idx = coil_choose(sc, 3, COIL_FOREVER);
        if (idx != ready_idx || sc[idx].result != 0) r->wrong++;
        EXPECT_EQ(coil_join(rid, COIL_FOREVER), 0);
        if (rc.val != 10 + ready_idx) r->wrong++;
        for (int k = 0; k < 3; k++)
            if (balance(r->ch[k]) != 0) r->wrong++;
    }
    /* ready clauses do not park: a runnable spy never gets to run */
    coil_id spy_id = coil_spawn(spy_fn, &spy, NULL);
    for (int i = 0; i < 20; i++) {
        int one = 1, v = -1, w = -1;
        EXPECT_EQ(coil_chan_send(r->buf, &one), 0);
        coil_clause cl[2] = {recv_clause(r->ch[0], &v), recv_clause(r->buf, &w)};
        if (coil_choose(cl, 2, COIL_FOREVER) != 1 || w != 1 || v != -1) r->wrong++;
    }
    r->spy_runs = spy.runs;
    spy.stop = true;
    EXPECT_EQ(coil_join(spy_id, COIL_FOREVER), 0);
}

static void test_picks_the_ready_clause(void **state) {
    struct ready r = {.rounds = 30};
    for (int i = 0; i < 3; i++)
        r.ch[i] = open_chan(sizeof(int), 0);
    r.buf = open_chan(sizeof(int), 1);
    COIL_RUN_CHECKED(ready_main, &r);
    assert_int_equal(r.wrong, 0);
    assert_int_equal(r.spy_runs, 0);
    for (int i = 0; i < 3; i++)
        assert_int_equal(coil_chan_free(r.ch[i]), 0);
    assert_int_equal(coil_chan_free(r.buf), 0);
}

/* ---- waits for the first clause to become ready ------------------------- */

struct waits {
    coil_chan *ch[3];
    struct chooser c[3];
    int bal_parked[3][3];
    int bal_after[3][3];
    int stray[6];
    int v;
};

static void waits_main(void *arg) {
    struct waits *w = arg;
    /* receive clauses */
    struct chooser *c = &w->c[0];
    c->n = 3;
    c->deadline = COIL_FOREVER;
    for (int k = 0; k < 3; k++) {
        c->vals[k] = -1;
        c->cl[k] = recv_clause(w->ch[k], &c->vals[k]);
    }
    coil_id id = coil_spawn(chooser_fn, c, NULL);
    EXPECT(await_balance(w->ch[2], -1));
    for (int k = 0; k < 3; k++)
        w->bal_parked[0][k] = balance(w->ch[k]);
    EXPECT(!c->done);
    w->v = 77;
    EXPECT_EQ(coil_chan_send(w->ch[1], &w->v), 0);
    for (int k = 0; k < 3; k++)
        w->bal_after[0][k] = balance(w->ch[k]);
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    /* no receiver was left behind on the other channels */
    w->stray[0] = coil_chan_send_dl(w->ch[0], &w->v, 0);
    w->stray[1] = coil_chan_send_dl(w->ch[2], &w->v, 0);

    /* send clauses */
    c = &w->c[1];
    c->n = 3;
    c->deadline = coil_now() + 60 * COIL_SEC;
    for (int k = 0; k < 3; k++) {
        c->vals[k] = 200 + k;
        c->cl[k] = send_clause(w->ch[k], &c->vals[k]);
    }
    id = coil_spawn(chooser_fn, c, NULL);
    EXPECT(await_balance(w->ch[2], 1));
    for (int k = 0; k < 3; k++)
        w->bal_parked[1][k] = balance(w->ch[k]);
    w->v = -1;
    EXPECT_EQ(coil_chan_recv(w->ch[2], &w->v), 0);
    EXPECT_EQ(w->v, 202);
    for (int k = 0; k < 3; k++)
        w->bal_after[1][k] = balance(w->ch[k]);
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    w->stray[2] = coil_chan_recv_dl(w->ch[0], &w->v, 0);
    w->stray[3] = coil_chan_recv_dl(w->ch[1], &w->v, 0);

    /* mixed: receive on one, send on another, completed by the send side */
    c = &w->c[2];
    c->n = 2;
    c->deadline = COIL_FOREVER;
    c->vals[0] = -1;
    c->vals[1] = 300;
    c->cl[0] = recv_clause(w->ch[0], &c->vals[0]);
    c->cl[1] = send_clause(w->ch[1], &c->vals[1]);
    id = coil_spawn(chooser_fn, c, NULL);
    EXPECT(await_balance(w->ch[1], 1));
    for (int k = 0; k < 3; k++)
        w->bal_parked[2][k] = balance(w->ch[k]);
    w->v = 301;
    EXPECT_EQ(coil_chan_send(w->ch[0], &w->v), 0);
    for (int k = 0; k < 3; k++)
        w->bal_after[2][k] = balance(w->ch[k]);
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    w->stray[4] = coil_chan_recv_dl(w->ch[1], &w->v, 0);
    w->stray[5] = coil_chan_send_dl(w->ch[0], &w->v, 0);
}

static void test_waits_for_first_ready(void **state) {
    struct waits w;
    memset(&w, 0, sizeof w);
    for (int i = 0; i < 3; i++)
        w.ch[i] = open_chan(sizeof(int), 0);
    COIL_RUN_CHECKED(waits_main, &w);
    static const int parked[3][3] = {{-1, -1, -1}, {1, 1, 1}, {-1, 1, 0}};
    for (int i = 0; i < 3; i++)
        for (int k = 0; k < 3; k++) {
            if (w.bal_parked[i][k] != parked[i][k])
                fail_msg("case %d: balance of ch%d while parked is %d, want %d", i, k,
                         w.bal_parked[i][k], parked[i][k]);
            if (w.bal_after[i][k] != 0)
                fail_msg("case %d: balance of ch%d after is %d, want 0", i, k, w.bal_after[i][k]);
        }
    assert_int_equal(w.c[0].result, 1);
    assert_int_equal(w.c[0].cl[1].result, 0);
    assert_int_equal(w.c[0].vals[1], 77);
    assert_int_equal(w.c[0].vals[0], -1);
    assert_int_equal(w.c[0].vals[2], -1);
    assert_int_equal(w.c[1].result, 2);
    assert_int_equal(w.c[1].cl[2].result, 0);
    assert_int_equal(w.c[2].result, 0);
    assert_int_equal(w.c[2].cl[0].result, 0);
    assert_int_equal(w.c[2].vals[0], 301);
    for (int i = 0; i < 6; i++)
        assert_int_equal(w.stray[i], -ETIMEDOUT);
    for (int i = 0; i < 3; i++)
        assert_int_equal(coil_chan_free(w.ch[i]), 0);
}

/* Waiting on buffered channels: a receive clause on an empty one and a send
 * clause on a full one; a receive from the full one lets the send happen. */
struct bufwait {
    coil_chan *empty, *full;
    struct chooser c;
    int got[3];
    long full_count_after;
    int empty_bal_after;
};

static void bufwait_main(void *arg) {
    struct bufwait *b = arg;
    int v = 1;
    EXPECT_EQ(coil_chan_send(b->full, &v), 0);
    v = 2;
    EXPECT_EQ(coil_chan_send(b->full, &v), 0);
    b->c.n = 2;
    b->c.deadline = COIL_FOREVER;
    b->c.vals[0] = -1;
    b->c.vals[1] = 3;
    b->c.cl[0] = recv_clause(b->empty, &b->c.vals[0]);
    b->c.cl[1] = send_clause(b->full, &b->c.vals[1]);
    coil_id id = coil_spawn(chooser_fn, &b->c, NULL);
    EXPECT(await_balance(b->full, 1));
    EXPECT_EQ(balance(b->empty), -1);
    EXPECT_EQ(coil_chan_recv(b->full, &b->got[0]), 0);
    b->full_count_after = count(b->full); /* the choose's element moved in */
    b->empty_bal_after = balance(b->empty);
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    EXPECT_EQ(coil_chan_recv(b->full, &b->got[1]), 0);
    EXPECT_EQ(coil_chan_recv(b->full, &b->got[2]), 0);
}

static void test_waits_on_buffered(void **state) {
    struct bufwait b;
    memset(&b, 0, sizeof b);
    b.empty = open_chan(sizeof(int), 2);
    b.full = open_chan(sizeof(int), 2);
    COIL_RUN_CHECKED(bufwait_main, &b);
    assert_int_equal(b.c.result, 1);
    assert_int_equal(b.c.cl[1].result, 0);
    assert_int_equal(b.c.vals[0], -1);
    assert_int_equal(b.full_count_after, 2);
    assert_int_equal(b.empty_bal_after, 0);
    assert_int_equal(b.got[0], 1);
    assert_int_equal(b.got[1], 2);
    assert_int_equal(b.got[2], 3);
    assert_int_equal(coil_chan_free(b.empty), 0);
    assert_int_equal(coil_chan_free(b.full), 0);
}

/* ---- exactly one operation ---------------------------------------------- */

struct one {
    coil_chan *a, *b;
    int rounds;
    int picked[2];
    int wrong;
};

static void exactly_one_main(void *arg) {
    struct one *o = arg;
    for (int i = 0; i < o->rounds; i++) {
        /* senders wait on both channels; the choose takes one element */
        struct op sa = {.ch = o->a, .kind = OP_SEND, .val = 1000 + i};
        struct op sb = {.ch = o->b, .kind = OP_SEND, .val = 2000 + i};
        coil_id ia = spawn_op(&sa), ib = spawn_op(&sb);
        EXPECT(await_balance(o->a, 1));
        EXPECT(await_balance(o->b, 1));
        int va = -1, vb = -1;
        coil_clause cl[2] = {recv_clause(o->a, &va), recv_clause(o->b, &vb)};
        int idx = coil_choose(cl, 2, COIL_FOREVER);
        if (idx != 0 && idx != 1) {
            o->wrong++;
            break;
        }
        o->picked[idx]++;
        for (int k = 0; k < 5; k++)
            coil_yield();
        coil_chan *other = idx == 0 ? o->b : o->a;
        struct op *taken = idx == 0 ? &sa : &sb, *left = idx == 0 ? &sb : &sa;
        if ((idx == 0 ? va : vb) != taken->val) o->wrong++;
        if ((idx == 0 ? vb : va) != -1) o->wrong++;
        if (!taken->done || left->done) o->wrong++;
        if (balance(other) != 1) o->wrong++; /* the other sender still waits */
        int v = -1;
        EXPECT_EQ(coil_chan_recv(other, &v), 0);
        if (v != left->val) o->wrong++;
        EXPECT_EQ(coil_join(ia, COIL_FOREVER), 0);
        EXPECT_EQ(coil_join(ib, COIL_FOREVER), 0);
    }
}

static void test_exactly_one_operation(void **state) {
    struct one o = {.rounds = 200};
    o.a = open_chan(sizeof(int), 0);
    o.b = open_chan(sizeof(int), 0);
    COIL_RUN_CHECKED(exactly_one_main, &o);
    assert_int_equal(o.wrong, 0);
    assert_int_equal(o.picked[0] + o.picked[1], o.rounds);
    assert_true(o.picked[0] > 0); /* both ready: both get picked sometimes */
    assert_true(o.picked[1] > 0);
    assert_int_equal(coil_chan_free(o.a), 0);
    assert_int_equal(coil_chan_free(o.b), 0);
}

/* Several clauses on the same channel, and very many clauses: one wake-up
 * unlinks every sibling, from every queue. */
struct many {
    coil_chan *ch[8];
    coil_clause *cl;
    int *vals;
    size_t n;
    int result;
    bool done;
    int bal_parked[8];
    int bal_after[8];
    int stray[8];
};

static void many_chooser(void *arg) {
    struct many *m = arg;
    m->result = coil_choose(m->cl, m->n, COIL_FOREVER);
    m->done = true;
}

static void many_main(void *arg) {
    struct many *m = arg;
    coil_id id = coil_spawn(many_chooser, m, NULL);
    EXPECT(await_balance(m->ch[7], -(int)(m->n / 8)));
    for (int k = 0; k < 8; k++)
        m->bal_parked[k] = balance(m->ch[k]);
    int v = 555;
    EXPECT_EQ(coil_chan_send(m->ch[5], &v), 0);
    for (int k = 0; k < 8; k++)
        m->bal_after[k] = balance(m->ch[k]);
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    for (int k = 0; k < 8; k++)
        m->stray[k] = coil_chan_send_dl(m->ch[k], &v, 0);
}

static void test_many_clauses_same_channels(void **state) {
    struct many m;
    memset(&m, 0, sizeof m);
    m.n = 1024; /* the most coil_choose takes */
    m.cl = calloc(m.n, sizeof *m.cl);
    m.vals = calloc(m.n, sizeof *m.vals);
    assert_non_null(m.cl);
    assert_non_null(m.vals);
    for (int k = 0; k < 8; k++)
        m.ch[k] = open_chan(sizeof(int), 0);
    for (size_t i = 0; i < m.n; i++) {
        m.vals[i] = -1;
        m.cl[i] = recv_clause(m.ch[i % 8], &m.vals[i]);
    }
    COIL_RUN_CHECKED(many_main, &m);
    assert_true(m.done);
    assert_true(m.result >= 0 && m.result < (int)m.n);
    assert_int_equal(m.result % 8, 5);
    assert_int_equal(m.cl[m.result].result, 0);
    for (size_t i = 0; i < m.n; i++)
        assert_int_equal(m.vals[i], (int)i == m.result ? 555 : -1);
    for (int k = 0; k < 8; k++) {
        assert_int_equal(m.bal_parked[k], -(int)(m.n / 8));
        assert_int_equal(m.bal_after[k], 0);
        assert_int_equal(m.stray[k], -ETIMEDOUT);
        assert_int_equal(coil_chan_free(m.ch[k]), 0);
    }
    free(m.cl);
    free(m.vals);
}

/* ---- closed channels ---------------------------------------------------- */

struct closed {
    coil_chan *a, *b, *c, *buf;
    int idx[6];
    int res[6];
    int vals[6];
    struct chooser parked;
    int bal_after[2];
    int closed_a;
};

static void closed_main(void *arg) {
    struct closed *c = arg;
    EXPECT_EQ(coil_chan_close(c->b), 0);
    /* a receive clause on a closed channel is ready, with -EPIPE */
    c->vals[0] = -1;
    int va = -1;
    coil_clause cl[2] = {recv_clause(c->a, &va), recv_clause(c->b, &c->vals[0])};
    c->idx[0] = coil_choose(cl, 2, COIL_FOREVER);
    c->res[0] = cl[1].result;
    EXPECT_EQ(va, -1);
    /* so is a send clause */
    int out = 5;
    coil_clause sc[2] = {recv_clause(c->a, &va), send_clause(c->b, &out)};
    c->idx[1] = coil_choose(sc, 2, 0);
    c->res[1] = sc[1].result;
    /* a closed buffered channel drains first */
    int one = 1;
    EXPECT_EQ(coil_chan_send(c->buf, &one), 0);
    EXPECT_EQ(coil_chan_close(c->buf), 0);
    for (int i = 2; i < 4; i++) {
        c->vals[i] = -1;
        coil_clause bc[2] = {recv_clause(c->a, &va), recv_clause(c->buf, &c->vals[i])};
        c->idx[i] = coil_choose(bc, 2, COIL_FOREVER);
        c->res[i] = bc[1].result;
    }
    /* closed while parked */
    c->parked.n = 2;
    c->parked.deadline = COIL_FOREVER;
    c->parked.vals[0] = -1;
    c->parked.vals[1] = 9;
    c->parked.cl[0] = recv_clause(c->a, &c->parked.vals[0]);
    c->parked.cl[1] = send_clause(c->c, &c->parked.vals[1]);
    coil_id id = coil_spawn(chooser_fn, &c->parked, NULL);
    EXPECT(await_balance(c->c, 1));
    EXPECT_EQ(coil_chan_close(c->c), 0);
    c->bal_after[0] = balance(c->a);
    c->bal_after[1] = balance(c->c);
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    c->closed_a = info_of(c->a).closed;
}

static void test_closed_channel_clause(void **state) {
    struct closed c;
    memset(&c, 0, sizeof c);
    c.a = open_chan(sizeof(int), 0);
    c.b = open_chan(sizeof(int), 0);
    c.c = open_chan(sizeof(int), 0);
    c.buf = open_chan(sizeof(int), 2);
    COIL_RUN_CHECKED(closed_main, &c);
    assert_int_equal(c.idx[0], 1);
    assert_int_equal(c.res[0], -EPIPE);
    assert_int_equal(c.vals[0], -1);
    assert_int_equal(c.idx[1], 1);
    assert_int_equal(c.res[1], -EPIPE);
    assert_int_equal(c.idx[2], 1);
    assert_int_equal(c.res[2], 0);
    assert_int_equal(c.vals[2], 1);
    assert_int_equal(c.idx[3], 1);
    assert_int_equal(c.res[3], -EPIPE);
    assert_int_equal(c.vals[3], -1);
    assert_int_equal(c.parked.result, 1);
    assert_int_equal(c.parked.cl[1].result, -EPIPE);
    assert_int_equal(c.parked.vals[0], -1);
    assert_int_equal(c.bal_after[0], 0);
    assert_int_equal(c.bal_after[1], 0);
    assert_int_equal(c.closed_a, 0);
    assert_int_equal(coil_chan_free(c.a), 0);
    assert_int_equal(coil_chan_free(c.b), 0);
    assert_int_equal(coil_chan_free(c.c), 0);
    assert_int_equal(coil_chan_free(c.buf), 0);
}

/* ---- send_error through a receive clause -------------------------------- */

struct senderr {
    coil_chan *a, *b, *buf;
    int idx[3];
    int res[3];
    int vals[3];
    struct op s;
    struct chooser parked;
};

static void senderr_main(void *arg) {
    struct senderr *e = arg;
    /* from a waiting sender */
    e->s = (struct op){.ch = e->b, .kind = OP_SEND_ERROR, .val = ECONNRESET};
    coil_id sid = spawn_op(&e->s);
    EXPECT(await_balance(e->b, 1));
    int va = -1;
    e->vals[0] = 1234;
    coil_clause cl[2] = {recv_clause(e->a, &va), recv_clause(e->b, &e->vals[0])};
    e->idx[0] = coil_choose(cl, 2, COIL_FOREVER);
    e->res[0] = cl[1].result;
    EXPECT_EQ(coil_join(sid, COIL_FOREVER), 0);
    /* from a buffer */
    EXPECT_EQ(coil_chan_send_error(e->buf, EMSGSIZE), 0);
    e->vals[1] = 4321;
    coil_clause bc[2] = {recv_clause(e->a, &va), recv_clause(e->buf, &e->vals[1])};
    e->idx[1] = coil_choose(bc, 2, COIL_FOREVER);
    e->res[1] = bc[1].result;
    /* to a parked choose */
    e->parked.n = 2;
    e->parked.deadline = COIL_FOREVER;
    e->parked.vals[0] = 11;
    e->parked.vals[1] = 22;
    e->parked.cl[0] = recv_clause(e->a, &e->parked.vals[0]);
    e->parked.cl[1] = recv_clause(e->b, &e->parked.vals[1]);
    coil_id id = coil_spawn(chooser_fn, &e->parked, NULL);
    EXPECT(await_balance(e->a, -1));
    EXPECT_EQ(coil_chan_send_error(e->a, EPROTO), 0);
    EXPECT_EQ(balance(e->b), 0);
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
}

static void test_send_error_through_choose(void **state) {
    struct senderr e;
    memset(&e, 0, sizeof e);
    e.a = open_chan(sizeof(int), 0);
    e.b = open_chan(sizeof(int), 0);
    e.buf = open_chan(sizeof(int), 1);
    COIL_RUN_CHECKED(senderr_main, &e);
    assert_int_equal(e.s.result, 0);
    assert_int_equal(e.idx[0], 1);
    assert_int_equal(e.res[0], -ECONNRESET);
    assert_int_equal(e.vals[0], 1234);
    assert_int_equal(e.idx[1], 1);
    assert_int_equal(e.res[1], -EMSGSIZE);
    assert_int_equal(e.vals[1], 4321);
    assert_int_equal(e.parked.result, 0);
    assert_int_equal(e.parked.cl[0].result, -EPROTO);
    assert_int_equal(e.parked.vals[0], 11);
    assert_int_equal(e.parked.vals[1], 22);
    assert_int_equal(coil_chan_free(e.a), 0);
    assert_int_equal(coil_chan_free(e.b), 0);
    assert_int_equal(coil_chan_free(e.buf), 0);
}

/* ---- deadlines ---------------------------------------------------------- */

struct dl {
    coil_chan *a, *b, *buf;
    int timed;
    int64_t waited;
    int bal_after[2];
    int free_after;
    int past[5];
    int spy_runs;
    int ready_past, ready_res, ready_val;
};

static void deadline_main(void *arg) {
    struct dl *d = arg;
    int va = -1, vb = 7;
    coil_clause cl[2] = {recv_clause(d->a, &va), send_clause(d->b, &vb)};
    int64_t t0 = coil_now();
    d->timed = coil_choose(cl, 2, t0 + 20 * COIL_MSEC);
    d->waited = coil_now() - t0;
    d->bal_after[0] = balance(d->a);
    d->bal_after[1] = balance(d->b);
    /* a past deadline never parks: a runnable spy does not run */
    struct spy spy = {0};
    coil_id sid = coil_spawn(spy_fn, &spy, NULL);
    const int64_t past[] = {0, 1, coil_now() - COIL_SEC, coil_now() - 1, coil_now()};
    for (int i = 0; i < 5; i++)
        d->past[i] = coil_choose(cl, 2, past[i]);
    /* nor does it stop a ready clause from being taken */
    int one = 1, got = -1;
    EXPECT_EQ(coil_chan_send(d->buf, &one), 0);
    coil_clause rc[2] = {recv_clause(d->a, &va), recv_clause(d->buf, &got)};
    d->ready_past = coil_choose(rc, 2, 0);
    d->ready_res = rc[1].result;
    d->ready_val = got;
    d->spy_runs = spy.runs;
    spy.stop = true;
    EXPECT_EQ(coil_join(sid, COIL_FOREVER), 0);
    EXPECT_EQ(balance(d->a), 0);
    EXPECT_EQ(balance(d->b), 0);
    d->free_after = coil_chan_free(d->a); /* no waiter left: not busy */
}

static void test_deadline(void **state) {
    struct dl d;
    memset(&d, 0, sizeof d);
    d.a = open_chan(sizeof(int), 0);
    d.b = open_chan(sizeof(int), 0);
    d.buf = open_chan(sizeof(int), 1);
    COIL_RUN_CHECKED(deadline_main, &d);
    assert_int_equal(d.timed, -ETIMEDOUT);
    assert_true(d.waited >= 20 * COIL_MSEC);
    assert_int_equal(d.bal_after[0], 0);
    assert_int_equal(d.bal_after[1], 0);
    for (int i = 0; i < 5; i++)
        assert_int_equal(d.past[i], -ETIMEDOUT);
    assert_int_equal(d.spy_runs, 0);
    assert_int_equal(d.ready_past, 1);
    assert_int_equal(d.ready_res, 0);
    assert_int_equal(d.ready_val, 1);
    assert_int_equal(d.free_after, 0);
    assert_int_equal(coil_chan_free(d.b), 0);
    assert_int_equal(coil_chan_free(d.buf), 0);
}

/* ---- kill --------------------------------------------------------------- */

struct killctx {
    coil_chan *ch[3];
    coil_chan *buf;
    struct chooser c;
    int bal_parked[3];
    int bal_after[3];
    int stray[3];
    int later, later_val, later_waiting;
    int frees[3];
};

static void kill_victim(void *arg) {
    struct killctx *k = arg;
    chooser_fn(&k->c);
    /* killed: a later choose with a ready clause still completes (cleanup
     * can drain), one that would wait fails */
    int v = -1;
    coil_clause cl[1] = {recv_clause(k->buf, &v)};
    k->later = coil_choose(cl, 1, COIL_FOREVER);
    k->later_val = v;
    k->later_waiting = coil_choose(cl, 1, COIL_FOREVER);
}

static void kill_main(void *arg) {
    struct killctx *k = arg;
    int one = 1;
    EXPECT_EQ(coil_chan_send(k->buf, &one), 0);
    k->c.n = 3;
    k->c.deadline = coil_now() + 60 * COIL_SEC;
    k->c.vals[0] = -1;
    k->c.vals[1] = 42;
    k->c.vals[2] = -1;
    k->c.cl[0] = recv_clause(k->ch[0], &k->c.vals[0]);
    k->c.cl[1] = send_clause(k->ch[1], &k->c.vals[1]);
    k->c.cl[2] = recv_clause(k->ch[2], &k->c.vals[2]);
    coil_id id = coil_spawn(kill_victim, k, NULL);
    EXPECT(await_balance(k->ch[2], -1));
    for (int i = 0; i < 3; i++)
        k->bal_parked[i] = balance(k->ch[i]);
    EXPECT_EQ(coil_kill(id), 0);
    for (int i = 0; i < 3; i++)
        k->bal_after[i] = balance(k->ch[i]);
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    int v = 3;
    k->stray[0] = coil_chan_send_dl(k->ch[0], &v, 0);
    k->stray[1] = coil_chan_recv_dl(k->ch[1], &v, 0);
    k->stray[2] = coil_chan_send_dl(k->ch[2], &v, 0);
    EXPECT_EQ(count(k->buf), 0);
    for (int i = 0; i < 3; i++)
        k->frees[i] = coil_chan_free(k->ch[i]);
}

static void test_kill_while_choosing(void **state) {
    struct killctx k;
    memset(&k, 0, sizeof k);
    for (int i = 0; i < 3; i++)
        k.ch[i] = open_chan(sizeof(int), 0);
    k.buf = open_chan(sizeof(int), 1);
    COIL_RUN_CHECKED(kill_main, &k);
    assert_int_equal(k.c.result, -ECANCELED);
    assert_int_equal(k.later, 0);
    assert_int_equal(k.later_val, 1);
    assert_int_equal(k.later_waiting, -ECANCELED);
    assert_int_equal(k.c.vals[0], -1);
    assert_int_equal(k.c.vals[2], -1);
    static const int parked[3] = {-1, 1, -1};
    for (int i = 0; i < 3; i++) {
        assert_int_equal(k.bal_parked[i], parked[i]);
        assert_int_equal(k.bal_after[i], 0);
        assert_int_equal(k.stray[i], -ETIMEDOUT);
        assert_int_equal(k.frees[i], 0); /* all waiters unlinked: not busy */
    }
    assert_int_equal(coil_chan_free(k.buf), 0);
}

/* ---- fairness ----------------------------------------------------------- */

struct fair {
    coil_chan *a, *b, *c;
    int n;
    int send_picks[2];
    int recv_picks[2];
    int three_picks[3];
    int mixed_picks[2];
};

static void fair_main(void *arg) {
    struct fair *f = arg;
    /* two send clauses into roomy buffers: always both ready */
    for (int i = 0; i < f->n; i++) {
        coil_clause cl[2] = {send_clause(f->a, &i), send_clause(f->b, &i)};
        int idx = coil_choose(cl, 2, COIL_FOREVER);
        if (idx >= 0) f->send_picks[idx]++;
    }
    EXPECT_EQ(count(f->a), f->send_picks[0]);
    EXPECT_EQ(count(f->b), f->send_picks[1]);
    /* two receive clauses on buffers that stay non-empty */
    for (int i = 0; i < f->n; i++) {
        int va = -1, vb = -1;
        coil_clause cl[2] = {recv_clause(f->a, &va), recv_clause(f->b, &vb)};
        int idx = coil_choose(cl, 2, COIL_FOREVER);
        if (idx < 0) continue;
        f->recv_picks[idx]++;
        EXPECT_EQ(coil_chan_send(idx == 0 ? f->a : f->b, idx == 0 ? &va : &vb), 0);
    }
    /* three clauses, the middle one never ready: the ready two share */
    int vc = -1;
    for (int i = 0; i < f->n; i++) {
        int va = -1, vb = -1;
        coil_clause cl[3] = {recv_clause(f->a, &va), recv_clause(f->c, &vc),
                             recv_clause(f->b, &vb)};
        int idx = coil_choose(cl, 3, COIL_FOREVER);
        if (idx < 0) continue;
        f->three_picks[idx]++;
        if (idx != 1) EXPECT_EQ(coil_chan_send(idx == 0 ? f->a : f->b, idx == 0 ? &va : &vb), 0);
    }
    /* a send clause and a receive clause, both ready */
    for (int i = 0; i < f->n; i++) {
        int in = -1, out = i;
        coil_clause cl[2] = {recv_clause(f->a, &in), send_clause(f->c, &out)};
        int idx = coil_choose(cl, 2, COIL_FOREVER);
        if (idx < 0) continue;
        f->mixed_picks[idx]++;
        if (idx == 0)
            EXPECT_EQ(coil_chan_send(f->a, &in), 0);
        else
            EXPECT_EQ(coil_chan_recv(f->c, &out), 0);
    }
}

static void test_fairness(void **state) {
    struct fair f;
    memset(&f, 0, sizeof f);
    f.n = 1000;
    f.a = open_chan(sizeof(int), (size_t)f.n);
    f.b = open_chan(sizeof(int), (size_t)f.n);
    f.c = open_chan(sizeof(int), 1);
    COIL_RUN_CHECKED(fair_main, &f);
    int min = f.n / 10;
    assert_int_equal(f.send_picks[0] + f.send_picks[1], f.n);
    assert_true(f.send_picks[0] > min && f.send_picks[1] > min);
    assert_int_equal(f.recv_picks[0] + f.recv_picks[1], f.n);
    assert_true(f.recv_picks[0] > min && f.recv_picks[1] > min);
    assert_int_equal(f.three_picks[0] + f.three_picks[2], f.n);
    assert_int_equal(f.three_picks[1], 0);
    assert_true(f.three_picks[0] > min && f.three_picks[2] > min);
    assert_int_equal(f.mixed_picks[0] + f.mixed_picks[1], f.n);
    assert_true(f.mixed_picks[0] > min && f.mixed_picks[1] > min);
    assert_int_equal(coil_chan_free(f.a), 0);
    assert_int_equal(coil_chan_free(f.b), 0);
    assert_int_equal(coil_chan_free(f.c), 0);
}

/* The random pick is among the ready clauses: clauses that are not ready do
 * not shift the odds. Here 30 idle clauses come first, then two always-ready
 * ones; each of those must still get a fair share. */
struct fair_idle {
    coil_chan *idle, *a, *b;
    int n;
    int picks[2];
    int other;
};

static void fair_idle_main(void *arg) {
    struct fair_idle *f = arg;
    enum { IDLE = 30 };
    int sink = -1, va = -1, vb = -1;
    coil_clause cl[IDLE + 2];
    for (int i = 0; i < IDLE; i++)
        cl[i] = recv_clause(f->idle, &sink);
    cl[IDLE] = recv_clause(f->a, &va);
    cl[IDLE + 1] = recv_clause(f->b, &vb);
    int one = 1;
    EXPECT_EQ(coil_chan_send(f->a, &one), 0);
    EXPECT_EQ(coil_chan_send(f->b, &one), 0);
    for (int i = 0; i < f->n; i++) {
        int idx = coil_choose(cl, IDLE + 2, COIL_FOREVER);
        if (idx == IDLE) {
            f->picks[0]++;
            EXPECT_EQ(coil_chan_send(f->a, &va), 0);
        } else if (idx == IDLE + 1) {
            f->picks[1]++;
            EXPECT_EQ(coil_chan_send(f->b, &vb), 0);
        } else {
            f->other++;
            break;
        }
    }
    EXPECT_EQ(balance(f->idle), 0);
}

static void test_fairness_with_idle_clauses(void **state) {
    struct fair_idle f;
    memset(&f, 0, sizeof f);
    f.n = 1000;
    f.idle = open_chan(sizeof(int), 0);
    f.a = open_chan(sizeof(int), 1);
    f.b = open_chan(sizeof(int), 1);
    COIL_RUN_CHECKED(fair_idle_main, &f);
    int picks0 = f.picks[0], picks1 = f.picks[1], other = f.other;
    assert_int_equal(coil_chan_free(f.idle), 0);
    assert_int_equal(coil_chan_free(f.a), 0);
    assert_int_equal(coil_chan_free(f.b), 0);
    assert_int_equal(other, 0);
    assert_int_equal(picks0 + picks1, f.n);
    if (picks0 <= f.n / 10 || picks1 <= f.n / 10)
        fail_msg("two ready clauses after 30 idle ones were picked %d and %d times of %d", picks0,
                 picks1, f.n);
}

/* ---- invalid input ------------------------------------------------------ */

struct invalid {
    coil_chan *ready, *other;
    int results[16];
    int n;
    long count_after;
    int big_ok;
    int big_too_many;
    int freed;
};

static void invalid_main(void *arg) {
    struct invalid *iv = arg;
    int one = 1, v = -1, w = -1;
    EXPECT_EQ(coil_chan_send(iv->ready, &one), 0);
    /* clause 0 is ready every time: nothing may happen before the refusal */
    coil_clause cl[2];
#define RESET() (cl[0] = recv_clause(iv->ready, &v), cl[1] = recv_clause(iv->other, &w))
    RESET();
    iv->results[iv->n++] = coil_choose(NULL, 1, COIL_FOREVER);
    iv->results[iv->n++] = coil_choose(NULL, 0, 0);
    iv->results[iv->n++] = coil_choose(cl, 0, COIL_FOREVER);
    RESET();
    cl[1].ch = NULL;
    iv->results[iv->n++] = coil_choose(cl, 2, COIL_FOREVER);
    RESET();
    cl[1].elem = NULL;
    iv->results[iv->n++] = coil_choose(cl, 2, COIL_FOREVER);
    RESET();
    cl[1] = send_clause(iv->other, NULL);
    iv->results[iv->n++] = coil_choose(cl, 2, COIL_FOREVER);
    static const int bad_ops[] = {0, 3, -1, 42, COIL_CHOOSE_SEND | COIL_CHOOSE_RECV | 4};
    for (size_t i = 0; i < sizeof bad_ops / sizeof bad_ops[0]; i++) {
        RESET();
        cl[1].op = bad_ops[i];
        iv->results[iv->n++] = coil_choose(cl, 2, COIL_FOREVER);
    }
    RESET();
    cl[0].op = 0; /* a bad op in the first clause too */
    iv->results[iv->n++] = coil_choose(cl, 2, 0);
#undef RESET
    iv->count_after = count(iv->ready);
    EXPECT_EQ(v, -1);
    EXPECT_EQ(balance(iv->other), 0);

    /* n: 1024 is fine, 1025 is not */
    coil_clause *big = calloc(1025, sizeof *big);
    EXPECT(big != NULL);
    if (!big) return;
    for (int i = 0; i < 1025; i++)
        big[i] = recv_clause(iv->other, &w);
    iv->big_too_many = coil_choose(big, 1025, 0);
    iv->big_ok = coil_choose(big, 1024, 0);
    free(big);

    /* a freed channel in a clause */
    coil_chan *gone;
    EXPECT_EQ(coil_chan_open(&gone, sizeof(int), 0), 0);
    EXPECT_EQ(coil_chan_free(gone), 0);
    coil_clause fc[2] = {recv_clause(iv->ready, &v), recv_clause(gone, &w)};
    iv->freed = coil_choose(fc, 2, COIL_FOREVER);
    EXPECT_EQ(count(iv->ready), 1);
}

static void test_invalid_input(void **state) {
    struct invalid iv;
    memset(&iv, 0, sizeof iv);
    iv.ready = open_chan(sizeof(int), 1);
    iv.other = open_chan(sizeof(int), 0);
    COIL_RUN_CHECKED(invalid_main, &iv);
    assert_int_equal(iv.n, 12);
    for (int i = 0; i < iv.n; i++)
        if (iv.results[i] != -EINVAL)
            fail_msg("invalid choose #%d returned %d, want -EINVAL", i, iv.results[i]);
    assert_int_equal(iv.count_after, 1);
    assert_int_equal(iv.big_too_many, -EINVAL);
    assert_int_equal(iv.big_ok, -ETIMEDOUT);
    assert_int_equal(iv.freed, -EBADF);
    assert_int_equal(coil_chan_free(iv.ready), 0);
    assert_int_equal(coil_chan_free(iv.other), 0);
}

/* ---- send and receive clauses on the same channel ----------------------- */

struct same {
    coil_chan *u;  /* unbuffered */
    coil_chan *b1; /* capacity 1 */
    coil_chan *b2; /* capacity 2 */
    int idx[4];
    int res[4];
    int got[4];
    struct op partner[2];
    int wrong;
    int picks[2];
    struct chooser parked;
    int parked_balance, parked_free;
    struct chooser peers[2];
};

static void same_main(void *arg) {
    struct same *s = arg;
    /* a plain receiver waits: the send clause is taken */
    s->partner[0] = (struct op){.ch = s->u, .kind = OP_RECV, .val = -1};
    coil_id pid = spawn_op(&s->partner[0]);
    EXPECT(await_balance(s->u, -1));
    int out = 61, in = -1;
    coil_clause cl[2] = {send_clause(s->u, &out), recv_clause(s->u, &in)};
    s->idx[0] = coil_choose(cl, 2, COIL_FOREVER);
    s->res[0] = cl[0].result;
    s->got[0] = in;
    EXPECT_EQ(coil_join(pid, COIL_FOREVER), 0);
    EXPECT_EQ(balance(s->u), 0);
    /* a plain sender waits: the receive clause is taken */
    s->partner[1] = (struct op){.ch = s->u, .kind = OP_SEND, .val = 62};
    pid = spawn_op(&s->partner[1]);
    EXPECT(await_balance(s->u, 1));
    in = -1;
    cl[0] = send_clause(s->u, &out);
    cl[1] = recv_clause(s->u, &in);
    s->idx[1] = coil_choose(cl, 2, COIL_FOREVER);
    s->res[1] = cl[1].result;
    s->got[1] = in;
    EXPECT_EQ(coil_join(pid, COIL_FOREVER), 0);
    EXPECT_EQ(balance(s->u), 0);

    /* capacity 1: empty, only the send is possible; full, only the receive */
    for (int i = 0; i < 40; i++) {
        int x = i, y = -1;
        coil_clause bc[2] = {recv_clause(s->b1, &y), send_clause(s->b1, &x)};
        int idx = coil_choose(bc, 2, COIL_FOREVER);
        int want = i % 2 == 0 ? 1 : 0; /* alternates: empty, full, empty ... */
        if (idx != want) s->wrong++;
        if (idx == 0 && y != i - 1) s->wrong++;
        if (count(s->b1) != (i % 2 == 0 ? 1 : 0)) s->wrong++;
    }
    /* capacity 2 holding one element: both are possible */
    int seed = 100;
    EXPECT_EQ(coil_chan_send(s->b2, &seed), 0);
    for (int i = 0; i < 200; i++) {
        int x = i, y = -1;
        coil_clause bc[2] = {recv_clause(s->b2, &y), send_clause(s->b2, &x)};
        int idx = coil_choose(bc, 2, COIL_FOREVER);
        if (idx < 0 || idx > 1) {
            s->wrong++;
            break;
        }
        s->picks[idx]++;
        /* back to one element */
        if (idx == 0) {
            EXPECT_EQ(coil_chan_send(s->b2, &y), 0);
        } else {
            int z;
            EXPECT_EQ(coil_chan_recv(s->b2, &z), 0);
        }
        if (count(s->b2) != 1) s->wrong++;
    }

    /* parked with both clauses on one unbuffered channel: balance 0, yet
     * busy; a plain sender completes the receive clause */
    s->parked.n = 2;
    s->parked.deadline = COIL_FOREVER;
    s->parked.vals[0] = 70;
    s->parked.vals[1] = -1;
    s->parked.cl[0] = send_clause(s->u, &s->parked.vals[0]);
    s->parked.cl[1] = recv_clause(s->u, &s->parked.vals[1]);
    coil_id id = coil_spawn(chooser_fn, &s->parked, NULL);
    for (int i = 0; i < 10; i++)
        coil_yield();
    EXPECT(!s->parked.done);
    s->parked_balance = balance(s->u);
    s->parked_free = coil_chan_free(s->u);
    int v = 71;
    EXPECT_EQ(coil_chan_send(s->u, &v), 0);
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    v = -1;
    EXPECT_EQ(coil_chan_recv_dl(s->u, &v, 0), -ETIMEDOUT); /* its send clause is gone */

    /* two tasklets, each choosing {send, receive} on the same channel: one
     * sends to the other */
    for (int k = 0; k < 2; k++) {
        struct chooser *p = &s->peers[k];
        p->n = 2;
        p->deadline = COIL_FOREVER;
        p->vals[0] = 80 + k;
        p->vals[1] = -1;
        p->cl[0] = send_clause(s->u, &p->vals[0]);
        p->cl[1] = recv_clause(s->u, &p->vals[1]);
    }
    coil_id p0 = coil_spawn(chooser_fn, &s->peers[0], NULL);
    for (int i = 0; i < 10; i++)
        coil_yield();
    chooser_fn(&s->peers[1]); /* main is the second one */
    EXPECT_EQ(coil_join(p0, COIL_FOREVER), 0);
    EXPECT_EQ(info_of(s->u).balance, 0);
    EXPECT_EQ(coil_chan_recv_dl(s->u, &v, 0), -ETIMEDOUT);
    EXPECT_EQ(coil_chan_send_dl(s->u, &v, 0), -ETIMEDOUT);
}

static void test_same_channel_send_and_recv(void **state) {
    struct same s;
    memset(&s, 0, sizeof s);
    s.u = open_chan(sizeof(int), 0);
    s.b1 = open_chan(sizeof(int), 1);
    s.b2 = open_chan(sizeof(int), 2);
    COIL_RUN_CHECKED(same_main, &s);
    assert_int_equal(s.idx[0], 0);
    assert_int_equal(s.res[0], 0);
    assert_int_equal(s.got[0], -1);
    assert_int_equal(s.partner[0].val, 61);
    assert_int_equal(s.idx[1], 1);
    assert_int_equal(s.res[1], 0);
    assert_int_equal(s.got[1], 62);
    assert_int_equal(s.partner[1].result, 0);
    assert_int_equal(s.wrong, 0);
    assert_true(s.picks[0] > 0);
    assert_true(s.picks[1] > 0);
    assert_int_equal(s.parked_balance, 0); /* one sender, one receiver */
    assert_int_equal(s.parked_free, -EBUSY);
    assert_int_equal(s.parked.result, 1);
    assert_int_equal(s.parked.cl[1].result, 0);
    assert_int_equal(s.parked.vals[1], 71);
    /* the peers: exactly one received the other's value */
    struct chooser *p0 = &s.peers[0], *p1 = &s.peers[1];
    assert_true(p0->result == 0 || p0->result == 1);
    assert_int_equal(p0->result + p1->result, 1);
    struct chooser *rx = p0->result == 1 ? p0 : p1, *tx = p0->result == 1 ? p1 : p0;
    assert_int_equal(rx->cl[1].result, 0);
    assert_int_equal(tx->cl[0].result, 0);
    assert_int_equal(rx->vals[1], tx->vals[0]);
    assert_int_equal(tx->vals[1], -1);
    assert_int_equal(coil_chan_free(s.u), 0);
    assert_int_equal(coil_chan_free(s.b1), 0);
    assert_int_equal(coil_chan_free(s.b2), 0);
}

/* ---- preference applies to a parked choose ------------------------------ */

struct prefc {
    coil_chan *a, *b;
    int preference;
    struct chooser c;
    int done_right_after_send;
};

static void prefc_main(void *arg) {
    struct prefc *p = arg;
    EXPECT_EQ(coil_chan_set_preference(p->a, p->preference), 0);
    p->c.n = 2;
    p->c.deadline = COIL_FOREVER;
    p->c.vals[0] = -1;
    p->c.vals[1] = -1;
    p->c.cl[0] = recv_clause(p->b, &p->c.vals[0]);
    p->c.cl[1] = recv_clause(p->a, &p->c.vals[1]);
    coil_id id = coil_spawn(chooser_fn, &p->c, NULL);
    EXPECT(await_balance(p->a, -1));
    int v = 5;
    EXPECT_EQ(coil_chan_send(p->a, &v), 0);
    p->done_right_after_send = p->c.done;
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
}

static void test_preference_with_choose(void **state) {
    for (int pref = -1; pref <= 1; pref++) {
        struct prefc p;
        memset(&p, 0, sizeof p);
        p.preference = pref;
        p.a = open_chan(sizeof(int), 0);
        p.b = open_chan(sizeof(int), 0);
        COIL_RUN_CHECKED(prefc_main, &p);
        assert_int_equal(p.c.result, 1);
        assert_int_equal(p.c.vals[1], 5);
        /* -1: the receiving choose ran before the sender continued */
        assert_int_equal(p.done_right_after_send, pref < 0);
        assert_int_equal(coil_chan_free(p.a), 0);
        assert_int_equal(coil_chan_free(p.b), 0);
    }
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_picks_the_ready_clause),
        cmocka_unit_test(test_waits_for_first_ready),
        cmocka_unit_test(test_waits_on_buffered),
        cmocka_unit_test(test_exactly_one_operation),
        cmocka_unit_test(test_many_clauses_same_channels),
        cmocka_unit_test(test_closed_channel_clause),
        cmocka_unit_test(test_send_error_through_choose),
        cmocka_unit_test(test_deadline),
        cmocka_unit_test(test_kill_while_choosing),
        cmocka_unit_test(test_fairness),
        cmocka_unit_test(test_fairness_with_idle_clauses),
        cmocka_unit_test(test_invalid_input),
        cmocka_unit_test(test_same_channel_send_and_recv),
        cmocka_unit_test(test_preference_with_choose),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
