/* The exact error codes of the channel API: bad arguments (-EINVAL), calls
 * outside a tasklet (-EPERM), killed tasklets (-ECANCELED), closed channels
 * (-EPIPE), busy (-EBUSY) and freed (-EBADF) channels, channels of another
 * scheduler (-EXDEV) and deadlines (-ETIMEDOUT). */
#define COIL_TEST_CHAN_HELPERS
// coil-test: tsan (a channel used from another thread's scheduler (-EXDEV) and from a plain thread
// (-EPERM))
#include "coil_test.h"

#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

/* ---- coil_chan_open ----------------------------------------------------- */

static void expect_open_einval(coil_chan **out, size_t elem_size, size_t cap) {
    int r = coil_chan_open(out, elem_size, cap);
    if (r == 0 && out) coil_chan_free(*out); /* do not leak on top of failing */
    if (r != -EINVAL)
        fail_msg("coil_chan_open(%s, %zu, %zu) returned %d, want -EINVAL", out ? "&ch" : "NULL",
                 elem_size, cap, r);
}

static void test_open_invalid(void **state) {
    coil_chan *ch = NULL;
    expect_open_einval(NULL, 4, 0);
    expect_open_einval(NULL, 4, 8);
    expect_open_einval(&ch, 0, 0);
    expect_open_einval(&ch, 0, 16);
    /* elem_size * capacity (plus bookkeeping) does not fit in a size_t */
    expect_open_einval(&ch, 1, SIZE_MAX);
    expect_open_einval(&ch, 2, SIZE_MAX / 2 + 1);
    expect_open_einval(&ch, SIZE_MAX / 2 + 1, 2);
    expect_open_einval(&ch, SIZE_MAX / 4, 5);
    expect_open_einval(&ch, (size_t)1 << 40, (size_t)1 << 40);
    expect_open_einval(&ch, 1, SIZE_MAX / 5); /* 5 bytes a slot with its error word */
    assert_null(ch);
}

/* An element size so close to SIZE_MAX that elem_size + bookkeeping wraps
 * around: one buffered slot cannot exist, so this must be refused too. */
static void test_open_invalid_huge_elem(void **state) {
    coil_chan *ch = NULL;
    expect_open_einval(&ch, SIZE_MAX, 1);
    expect_open_einval(&ch, SIZE_MAX - 2, 1);
    expect_open_einval(&ch, SIZE_MAX - 3, 2);
}

static void test_open_valid_edges(void **state) {
    coil_chan *ch = NULL;
    assert_int_equal(coil_chan_open(&ch, 1, 0), 0);
    assert_non_null(ch);
    assert_int_equal(coil_chan_free(ch), 0);
    ch = NULL;
    assert_int_equal(coil_chan_open(&ch, 1, 1 << 20), 0);
    coil_chan_info info;
    assert_int_equal(coil_chan_getinfo(ch, &info), 0);
    assert_int_equal(info.capacity, 1 << 20);
    assert_int_equal(info.elem_size, 1);
    assert_int_equal(coil_chan_free(ch), 0);
}

/* ---- NULL arguments ----------------------------------------------------- */

struct nulls {
    coil_chan *ch;
};

static void null_args_main(void *arg) {
    struct nulls *n = arg;
    int v = 5;
    coil_chan_info info;
    EXPECT_EQ(coil_chan_send(NULL, &v), -EINVAL);
    EXPECT_EQ(coil_chan_send(n->ch, NULL), -EINVAL);
    EXPECT_EQ(coil_chan_send_dl(NULL, &v, COIL_FOREVER), -EINVAL);
    EXPECT_EQ(coil_chan_send_dl(n->ch, NULL, COIL_FOREVER), -EINVAL);
    EXPECT_EQ(coil_chan_send_dl(n->ch, NULL, 0), -EINVAL);
    EXPECT_EQ(coil_chan_recv(NULL, &v), -EINVAL);
    EXPECT_EQ(coil_chan_recv(n->ch, NULL), -EINVAL);
    EXPECT_EQ(coil_chan_recv_dl(NULL, &v, COIL_FOREVER), -EINVAL);
    EXPECT_EQ(coil_chan_recv_dl(n->ch, NULL, COIL_FOREVER), -EINVAL);
    EXPECT_EQ(coil_chan_send_error(NULL, EIO), -EINVAL);
    EXPECT_EQ(coil_chan_getinfo(NULL, &info), -EINVAL);
    EXPECT_EQ(coil_chan_getinfo(n->ch, NULL), -EINVAL);
    EXPECT_EQ(coil_chan_close(NULL), -EINVAL);
    EXPECT_EQ(coil_chan_free(NULL), -EINVAL);
    EXPECT_EQ(coil_chan_set_preference(NULL, 0), -EINVAL);
    /* none of this parked anything or touched the channel */
    coil_chan_info i = info_of(n->ch);
    EXPECT_EQ(i.balance, 0);
    EXPECT_EQ(i.count, 0);
    EXPECT_EQ(i.closed, 0);
    EXPECT_EQ(i.preference, -1);
    EXPECT_EQ(coil_chan_send(n->ch, &v), 0);
    EXPECT_EQ(coil_chan_recv(n->ch, &v), 0);
}

static void test_null_arguments(void **state) {
    struct nulls n;
    n.ch = open_chan(sizeof(int), 1);
    COIL_RUN_CHECKED(null_args_main, &n);
    /* the calls that are allowed anywhere check their arguments there too */
    coil_chan_info info;
    assert_int_equal(coil_chan_getinfo(NULL, &info), -EINVAL);
    assert_int_equal(coil_chan_getinfo(n.ch, NULL), -EINVAL);
    assert_int_equal(coil_chan_close(NULL), -EINVAL);
    assert_int_equal(coil_chan_free(NULL), -EINVAL);
    assert_int_equal(coil_chan_set_preference(NULL, 1), -EINVAL);
    assert_int_equal(coil_chan_free(n.ch), 0);
}

/* ---- send_error and set_preference arguments ---------------------------- */

static void bad_values_main(void *arg) {
    coil_chan *ch = arg;
    static const int bad_errs[] = {0, -1, -EIO, INT_MIN};
    for (size_t i = 0; i < sizeof bad_errs / sizeof bad_errs[0]; i++)
        EXPECT_EQ(coil_chan_send_error(ch, bad_errs[i]), -EINVAL);
    EXPECT_EQ(info_of(ch).count, 0); /* nothing took a slot */
    EXPECT_EQ(balance(ch), 0);
    static const int bad_prefs[] = {-2, 2, 3, 100, -100, INT_MIN, INT_MAX};
    for (int p = -1; p <= 1; p++) {
        EXPECT_EQ(coil_chan_set_preference(ch, p), 0);
        for (size_t i = 0; i < sizeof bad_prefs / sizeof bad_prefs[0]; i++)
            EXPECT_EQ(coil_chan_set_preference(ch, bad_prefs[i]), -EINVAL);
        EXPECT_EQ(info_of(ch).preference, p); /* unchanged by the refused calls */
    }
    EXPECT_EQ(coil_chan_send_error(ch, EIO), 0); /* a positive errno is fine */
    int v = 0;
    EXPECT_EQ(coil_chan_recv(ch, &v), -EIO);
}

static void test_bad_values(void **state) {
    coil_chan *ch = open_chan(sizeof(int), 2);
    COIL_RUN_CHECKED(bad_values_main, ch);
    assert_int_equal(coil_chan_set_preference(ch, 2), -EINVAL);
    assert_int_equal(coil_chan_set_preference(ch, -2), -EINVAL);
    assert_int_equal(coil_chan_free(ch), 0);
}

/* ---- outside a tasklet: -EPERM ------------------------------------------ */

static void check_eperm_here(coil_chan *ch, int *fails) {
    int v = 1;
    coil_clause cl[1] = {{.ch = ch, .op = COIL_CHOOSE_RECV, .elem = &v}};
    if (coil_chan_send(ch, &v) != -EPERM) (*fails)++;
    if (coil_chan_send_dl(ch, &v, COIL_FOREVER) != -EPERM) (*fails)++;
    if (coil_chan_send_dl(ch, &v, 0) != -EPERM) (*fails)++;
    if (coil_chan_recv(ch, &v) != -EPERM) (*fails)++;
    if (coil_chan_recv_dl(ch, &v, coil_now() + COIL_SEC) != -EPERM) (*fails)++;
    if (coil_chan_send_error(ch, EIO) != -EPERM) (*fails)++;
    if (coil_choose(cl, 1, COIL_FOREVER) != -EPERM) (*fails)++;
}

static void *eperm_thread(void *arg) {
    static int fails;
    fails = 0;
    check_eperm_here(arg, &fails);
    return &fails;
}

static void use_after_eperm_main(void *arg) {
    coil_chan *ch = arg;
    int v = 11;
    EXPECT_EQ(coil_chan_send(ch, &v), 0);
    v = 0;
    EXPECT_EQ(coil_chan_recv(ch, &v), 0);
    EXPECT_EQ(v, 11);
}

static void test_outside_tasklet(void **state) {
    coil_chan *ch = open_chan(sizeof(int), 1);
    int fails = 0;
    check_eperm_here(ch, &fails);
    assert_int_equal(fails, 0);
    /* a thread that runs no scheduler at all */
    pthread_t th;
    void *res;
    assert_int_equal(pthread_create(&th, NULL, eperm_thread, ch), 0);
    assert_int_equal(pthread_join(th, &res), 0);
    assert_int_equal(*(int *)res, 0);
    /* nothing happened to the channel (nor was it bound to anything) */
    coil_chan_info info;
    assert_int_equal(coil_chan_getinfo(ch, &info), 0);
    assert_int_equal(info.count, 0);
    assert_int_equal(info.balance, 0);
    COIL_RUN_CHECKED(use_after_eperm_main, ch);
    assert_int_equal(coil_chan_free(ch), 0);
}

/* ---- killed tasklets: -ECANCELED ---------------------------------------- */

struct killctx {
    coil_chan *ch;   /* unbuffered: the victim parks on it */
    coil_chan *buf;  /* buffered, holding one element, with room for more */
    coil_chan *peer; /* unbuffered, a receiver waits on it */
    int first;       /* the interrupted call */
    int later[8];    /* calls made after the kill */
    int choose_result;
    int killed;
    int v;
    int kind;
    int64_t deadline;
};

static void victim(void *arg) {
    struct killctx *k = arg;
    k->v = 1234;
    switch (k->kind) {
    case OP_SEND: k->first = coil_chan_send_dl(k->ch, &k->v, k->deadline); break;
    case OP_RECV: k->first = coil_chan_recv_dl(k->ch, &k->v, k->deadline); break;
    case OP_SEND_ERROR: k->first = coil_chan_send_error(k->ch, EIO); break;
    }
    /* Later calls: what needs no waiting still completes (cleanup can hand
     * back or report), what would wait fails with -ECANCELED. */
    int v = 9;
    k->later[0] = coil_chan_send(k->buf, &v);        /* room in the buffer */
    k->later[1] = coil_chan_recv(k->buf, &v);        /* an element is there */
    k->later[2] = coil_chan_send(k->peer, &v);       /* a receiver waits */
    k->later[3] = coil_chan_send_error(k->buf, EIO); /* room */
    k->later[4] = coil_chan_send_dl(k->buf, &v, 0);
    k->later[5] = coil_chan_recv_dl(k->buf, &v, COIL_FOREVER);
    coil_clause cl[2] = {{.ch = k->buf, .op = COIL_CHOOSE_RECV, .elem = &v},
                         {.ch = k->peer, .op = COIL_CHOOSE_SEND, .elem = &v}};
    k->later[6] = coil_choose(cl, 2, COIL_FOREVER); /* the buffer's error is ready */
    k->choose_result = cl[0].result;
    k->later[7] = coil_chan_recv(k->ch, &v); /* would wait */
    k->killed = coil_killed();
}

static void kill_main(void *arg) {
    struct killctx *k = arg;
    int one = 1;
    EXPECT_EQ(coil_chan_send(k->buf, &one), 0);
    struct op peer = {.ch = k->peer, .kind = OP_RECV, .val = -1};
    coil_id pid = spawn_op(&peer);
    EXPECT(await_balance(k->peer, -1));
    coil_id vid = coil_spawn(victim, k, NULL);
    int want = k->kind == OP_RECV ? -1 : 1;
    EXPECT(await_balance(k->ch, want));
    EXPECT_EQ(coil_kill(vid), 0);
    EXPECT_EQ(balance(k->ch), 0); /* unlinked at once */
    EXPECT_EQ(coil_join(vid, COIL_FOREVER), 0);
    /* The victim's interrupted operation did not happen, nor did the last
     * one (it would have waited). */
    int v = -1;
    EXPECT_EQ(coil_chan_recv_dl(k->ch, &v, 0), -ETIMEDOUT);
    EXPECT_EQ(coil_chan_send_dl(k->ch, &v, 0), -ETIMEDOUT);
    /* Those that needed no waiting did. The buffer went [1] -> [1 9] -> [9]
     * (received 1) -> [9 EIO] -> [9 EIO 1] -> [EIO 1] (received 9) -> [1]
     * (the choose took the error), and the waiting receiver got the 1. */
    coil_chan_info bi = info_of(k->buf);
    EXPECT_EQ(bi.count, 1);
    EXPECT_EQ(coil_join(pid, COIL_FOREVER), 0);
    EXPECT(peer.done);
    EXPECT_EQ(peer.val, 1);
    EXPECT_EQ(coil_chan_recv(k->buf, &v), 0);
    EXPECT_EQ(v, 1);
}

static void check_kill(int kind, int64_t deadline_from_now) {
    struct killctx k = {.kind = kind};
    k.ch = open_chan(sizeof(int), 0);
    k.buf = open_chan(sizeof(int), 4);
    k.peer = open_chan(sizeof(int), 0);
    k.deadline = deadline_from_now < 0 ? COIL_FOREVER : coil_now() + deadline_from_now;
    COIL_RUN_CHECKED(kill_main, &k);
    assert_int_equal(k.first, -ECANCELED);
    if (kind == OP_RECV) assert_int_equal(k.v, 1234); /* elem untouched */
    static const int want[8] = {0, 0, 0, 0, 0, 0, 0, -ECANCELED};
    for (int i = 0; i < 8; i++)
        if (k.later[i] != want[i])
            fail_msg("call #%d after the kill returned %d, want %d", i, k.later[i], want[i]);
    assert_int_equal(k.choose_result, -EIO);
    assert_int_equal(k.killed, 1);
    assert_int_equal(coil_chan_free(k.ch), 0);
    assert_int_equal(coil_chan_free(k.buf), 0);
    assert_int_equal(coil_chan_free(k.peer), 0);
}

static void test_kill_blocked_in_send(void **state) {
    check_kill(OP_SEND, -1);
}

static void test_kill_blocked_in_recv(void **state) {
    check_kill(OP_RECV, -1);
}

static void test_kill_blocked_in_send_error(void **state) {
    check_kill(OP_SEND_ERROR, -1);
}

/* A kill beats a pending deadline: -ECANCELED, not -ETIMEDOUT. */
static void test_kill_blocked_with_deadline(void **state) {
    check_kill(OP_SEND, 10 * COIL_SEC);
    check_kill(OP_RECV, 10 * COIL_SEC);
}

/* Killed before the first call: a call that needs no waiting still
 * completes, one that would wait fails with -ECANCELED. */
struct early {
    coil_chan *ch;
    int results[5];
    int got;
    bool ran;
};

static void early_victim(void *arg) {
    struct early *e = arg;
    int v = 3;
    e->ran = true;
    e->results[0] = coil_chan_send(e->ch, &v); /* room: [8] -> [8 3] */
}

static void self_killer(void *arg) {
    struct early *e = arg;
    int v = 4;
    EXPECT_EQ(coil_kill(coil_self()), 0);
    e->results[1] = coil_chan_send(e->ch, &v);      /* room: [8 3 4] */
    e->results[2] = coil_chan_recv(e->ch, &e->got); /* 8: [3 4] */
    coil_chan *empty = open_chan(sizeof(int), 0);
    e->results[3] = coil_chan_recv(empty, &v);       /* would wait */
    e->results[4] = coil_chan_send_dl(empty, &v, 0); /* would wait; killed wins */
    EXPECT_EQ(coil_chan_free(empty), 0);
}

static void early_main(void *arg) {
    struct early *e = arg;
    int v = 8;
    EXPECT_EQ(coil_chan_send(e->ch, &v), 0);
    coil_id id = coil_spawn(early_victim, e, NULL);
    EXPECT_EQ(coil_kill(id), 0); /* before it ever ran */
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    coil_id id2 = coil_spawn(self_killer, e, NULL);
    EXPECT_EQ(coil_join(id2, COIL_FOREVER), 0);
    EXPECT_EQ(info_of(e->ch).count, 2);
    v = 0;
    EXPECT_EQ(coil_chan_recv(e->ch, &v), 0);
    EXPECT_EQ(v, 3);
    EXPECT_EQ(coil_chan_recv(e->ch, &v), 0);
    EXPECT_EQ(v, 4);
}

static void test_killed_before_first_call(void **state) {
    struct early e = {0};
    e.ch = open_chan(sizeof(int), 4);
    COIL_RUN_CHECKED(early_main, &e);
    assert_true(e.ran); /* a killed tasklet still starts */
    assert_int_equal(e.results[0], 0);
    assert_int_equal(e.results[1], 0);
    assert_int_equal(e.results[2], 0);
    assert_int_equal(e.got, 8);
    assert_int_equal(e.results[3], -ECANCELED);
    assert_int_equal(e.results[4], -ECANCELED);
    assert_int_equal(coil_chan_free(e.ch), 0);
}

/* ---- closed channels: -EPIPE -------------------------------------------- */

static void closed_main(void *arg) {
    coil_chan *ch = arg;
    int v = 4;
    EXPECT_EQ(coil_chan_close(ch), 0);
    EXPECT_EQ(coil_chan_close(ch), -EPIPE);
    EXPECT_EQ(coil_chan_send(ch, &v), -EPIPE);
    EXPECT_EQ(coil_chan_send_dl(ch, &v, COIL_FOREVER), -EPIPE);
    EXPECT_EQ(coil_chan_send_dl(ch, &v, 0), -EPIPE);
    EXPECT_EQ(coil_chan_send_error(ch, EIO), -EPIPE);
    EXPECT_EQ(coil_chan_recv(ch, &v), -EPIPE);
    EXPECT_EQ(coil_chan_recv_dl(ch, &v, coil_now() + COIL_SEC), -EPIPE);
    EXPECT_EQ(v, 4);
    EXPECT_EQ(coil_chan_close(ch), -EPIPE);
    EXPECT_EQ(info_of(ch).closed, 1);
}

static void test_closed(void **state) {
    coil_chan *ch = open_chan(sizeof(int), 0);
    COIL_RUN_CHECKED(closed_main, ch);
    assert_int_equal(coil_chan_close(ch), -EPIPE); /* outside coil_run too */
    assert_int_equal(coil_chan_free(ch), 0);
    /* close is callable outside coil_run */
    ch = open_chan(sizeof(int), 3);
    assert_int_equal(coil_chan_close(ch), 0);
    assert_int_equal(coil_chan_close(ch), -EPIPE);
    coil_chan_info info;
    assert_int_equal(coil_chan_getinfo(ch, &info), 0);
    assert_int_equal(info.closed, 1);
    assert_int_equal(coil_chan_free(ch), 0);
}

/* ---- coil_chan_free with waiters: -EBUSY -------------------------------- */

struct busy {
    coil_chan *ch;
    struct op ops[3];
    int results[8];
};

static void busy_main(void *arg) {
    struct busy *b = arg;
    coil_id ids[3];
    /* a waiting receiver */
    b->ops[0] = (struct op){.ch = b->ch, .kind = OP_RECV};
    ids[0] = spawn_op(&b->ops[0]);
    EXPECT(await_balance(b->ch, -1));
    b->results[0] = coil_chan_free(b->ch);
    int v = 17;
    EXPECT_EQ(coil_chan_send(b->ch, &v), 0); /* the channel still works */
    EXPECT_EQ(coil_join(ids[0], COIL_FOREVER), 0);
    /* a waiting sender */
    b->ops[1] = (struct op){.ch = b->ch, .kind = OP_SEND, .val = 18};
    ids[1] = spawn_op(&b->ops[1]);
    EXPECT(await_balance(b->ch, 1));
    b->results[1] = coil_chan_free(b->ch);
    EXPECT_EQ(coil_chan_recv(b->ch, &v), 0);
    EXPECT_EQ(v, 18);
    EXPECT_EQ(coil_join(ids[1], COIL_FOREVER), 0);
    /* a tasklet waiting in coil_choose */
    b->ops[2] = (struct op){.ch = b->ch, .kind = OP_CHOOSE_RECV};
    ids[2] = spawn_op(&b->ops[2]);
    EXPECT(await_balance(b->ch, -1));
    b->results[2] = coil_chan_free(b->ch);
    /* close first, then free: the waiter is woken (and unlinked) by close */
    EXPECT_EQ(coil_chan_close(b->ch), 0);
    b->results[3] = coil_chan_free(b->ch);
    EXPECT_EQ(coil_join(ids[2], COIL_FOREVER), 0);
}

static void test_free_busy(void **state) {
    struct busy b = {0};
    b.ch = open_chan(sizeof(int), 0);
    COIL_RUN_CHECKED(busy_main, &b);
    assert_int_equal(b.results[0], -EBUSY);
    assert_int_equal(b.results[1], -EBUSY);
    assert_int_equal(b.results[2], -EBUSY);
    assert_int_equal(b.results[3], 0);
    assert_int_equal(b.ops[0].result, 0);
    assert_int_equal(b.ops[0].val, 17);
    assert_int_equal(b.ops[1].result, 0);
    assert_int_equal(b.ops[2].result, 0);             /* the choose returned index 0 ... */
    assert_int_equal(b.ops[2].clause_result, -EPIPE); /* ... woken by close */
}

/* A full buffered channel with a waiting sender is busy as well. */
static void busy_buffered_main(void *arg) {
    struct busy *b = arg;
    int v = 1;
    EXPECT_EQ(coil_chan_send(b->ch, &v), 0);
    b->ops[0] = (struct op){.ch = b->ch, .kind = OP_SEND, .val = 2};
    coil_id id = spawn_op(&b->ops[0]);
    EXPECT(await_balance(b->ch, 1));
    b->results[0] = coil_chan_free(b->ch);
    EXPECT_EQ(coil_chan_recv(b->ch, &v), 0);
    EXPECT_EQ(coil_join(id, COIL_FOREVER), 0);
    b->results[1] = coil_chan_free(b->ch); /* one element buffered, no waiter */
}

static void test_free_busy_buffered(void **state) {
    struct busy b = {0};
    b.ch = open_chan(sizeof(int), 1);
    COIL_RUN_CHECKED(busy_buffered_main, &b);
    assert_int_equal(b.results[0], -EBUSY);
    assert_int_equal(b.results[1], 0);
    assert_int_equal(b.ops[0].result, 0);
}

/* ---- use after free: -EBADF --------------------------------------------- */

struct freed {
    int results[12];
    int pref_result;
};

static void freed_main(void *arg) {
    struct freed *f = arg;
    coil_chan *ch, *buf;
    EXPECT_EQ(coil_chan_open(&ch, sizeof(int), 0), 0);
    EXPECT_EQ(coil_chan_open(&buf, sizeof(int), 4), 0);
    int v = 1;
    EXPECT_EQ(coil_chan_send(buf, &v), 0);
    EXPECT_EQ(coil_chan_free(ch), 0);
    EXPECT_EQ(coil_chan_free(buf), 0);
    coil_chan_info info;
    coil_clause cl[1] = {{.ch = buf, .op = COIL_CHOOSE_RECV, .elem = &v}};
    int *r = f->results;
    *r++ = coil_chan_send(ch, &v);
    *r++ = coil_chan_send_dl(ch, &v, 0);
    *r++ = coil_chan_recv(ch, &v);
    *r++ = coil_chan_recv_dl(buf, &v, COIL_FOREVER);
    *r++ = coil_chan_send_error(buf, EIO);
    *r++ = coil_chan_close(ch);
    *r++ = coil_chan_getinfo(ch, &info);
    *r++ = coil_chan_free(ch);
    *r++ = coil_chan_free(buf);
    *r++ = coil_choose(cl, 1, 0);
    *r++ = coil_chan_recv(buf, &v);
    *r++ = coil_chan_close(buf);
    f->pref_result = coil_chan_set_preference(ch, 0);
}

static void test_use_after_free(void **state) {
    struct freed f;
    memset(&f, 0, sizeof f);
    COIL_RUN_CHECKED(freed_main, &f);
    for (int i = 0; i < 12; i++)
        if (f.results[i] != -EBADF)
            fail_msg("call #%d on a freed channel returned %d, want -EBADF", i, f.results[i]);
    /* coil.h says -EINVAL "for a NULL/freed channel" here, unlike every other
     * call (-EBADF): accept either, but it must fail */
    if (f.pref_result != -EBADF && f.pref_result != -EINVAL)
        fail_msg("set_preference on a freed channel returned %d", f.pref_result);
}

/* ---- another scheduler's channel: -EXDEV -------------------------------- */

struct xdev {
    coil_chan *ch;    /* bound elsewhere, holds one element */
    coil_chan *local; /* this scheduler's, holds one element */
    int results[16];
    int n;
};

static void xdev_ops(struct xdev *x, bool anywhere_calls) {
    int v = 5;
    coil_chan_info info;
    coil_clause cl[2] = {{.ch = x->local, .op = COIL_CHOOSE_RECV, .elem = &v},
                         {.ch = x->ch, .op = COIL_CHOOSE_RECV, .elem = &v}};
    coil_clause cl2[1] = {{.ch = x->ch, .op = COIL_CHOOSE_SEND, .elem = &v}};
    x->results[x->n++] = coil_chan_send(x->ch, &v);
    x->results[x->n++] = coil_chan_send_dl(x->ch, &v, 0);
    x->results[x->n++] = coil_chan_send_dl(x->ch, &v, COIL_FOREVER);
    x->results[x->n++] = coil_chan_recv(x->ch, &v);
    x->results[x->n++] = coil_chan_recv_dl(x->ch, &v, 0);
    x->results[x->n++] = coil_chan_recv_dl(x->ch, &v, coil_now() + COIL_SEC);
    x->results[x->n++] = coil_chan_send_error(x->ch, EIO);
    x->results[x->n++] = coil_choose(cl, 2, COIL_FOREVER);
    x->results[x->n++] = coil_choose(cl2, 1, 0);
    if (anywhere_calls) {
        x->results[x->n++] = coil_chan_getinfo(x->ch, &info);
        x->results[x->n++] = coil_chan_close(x->ch);
        x->results[x->n++] = coil_chan_set_preference(x->ch, 1);
        x->results[x->n++] = coil_chan_free(x->ch);
    }
    /* the choose did not take the local element either */
    EXPECT_EQ(info_of(x->local).count, 1);
}

static void bind_main(void *arg) {
    coil_chan *ch = arg;
    int v = 42;
    EXPECT_EQ(coil_chan_send(ch, &v), 0); /* binds ch to this scheduler */
}

static void xdev_later_run_main(void *arg) {
    struct xdev *x = arg;
    int v = 1;
    EXPECT_EQ(coil_chan_send(x->local, &v), 0);
    xdev_ops(x, false);
}

static void check_xdev_results(struct xdev *x, int n) {
    assert_int_equal(x->n, n);
    for (int i = 0; i < x->n; i++)
        if (x->results[i] != -EXDEV)
            fail_msg("call #%d on a foreign channel returned %d, want -EXDEV", i, x->results[i]);
    coil_chan_info info;
    assert_int_equal(coil_chan_getinfo(x->ch, &info), 0);
    assert_int_equal(info.count, 1);
    assert_int_equal(info.balance, 0);
    assert_int_equal(info.closed, 0);
    assert_int_equal(info.preference, -1);
}

/* A channel bound by one coil_run is foreign to a later coil_run on the same
 * thread. */
static void test_xdev_later_run_same_thread(void **state) {
    struct xdev x = {0};
    x.ch = open_chan(sizeof(int), 2);
    x.local = open_chan(sizeof(int), 2);
    COIL_RUN_CHECKED(bind_main, x.ch);
    COIL_RUN_CHECKED(xdev_later_run_main, &x);
    check_xdev_results(&x, 9);
    assert_int_equal(coil_chan_free(x.ch), 0); /* outside coil_run: fine */
    assert_int_equal(coil_chan_free(x.local), 0);
}

static void *bind_thread(void *arg) {
    static int rc;
    rc = coil_run(bind_main, arg);
    return &rc;
}

/* Bound by a scheduler on another pthread (finished), then used here. */
static void test_xdev_other_thread_sequential(void **state) {
    struct xdev x = {0};
    x.ch = open_chan(sizeof(int), 2);
    x.local = open_chan(sizeof(int), 2);
    pthread_t th;
    void *res;
    assert_int_equal(pthread_create(&th, NULL, bind_thread, x.ch), 0);
    assert_int_equal(pthread_join(th, &res), 0);
    assert_int_equal(*(int *)res, 0);
    COIL_RUN_CHECKED(xdev_later_run_main, &x);
    check_xdev_results(&x, 9);
    assert_int_equal(coil_chan_free(x.ch), 0);
    assert_int_equal(coil_chan_free(x.local), 0);
}

/* Two schedulers running at the same time on two threads: the channel of the
 * first one, which is still using it, is refused to the second, including
 * the calls that are otherwise allowed anywhere. */
struct concurrent {
    struct xdev x;
    atomic_int bound, done;
    int owner_recv, owner_v, owner_rc;
    bool timed_out;
};

static void owner_main(void *arg) {
    struct concurrent *c = arg;
    int v = 42;
    EXPECT_EQ(coil_chan_send(c->x.ch, &v), 0);
    atomic_store(&c->bound, 1);
    int64_t give_up = coil_now() + 30 * COIL_SEC;
    while (!atomic_load(&c->done)) {
        if (coil_now() > give_up) {
            c->timed_out = true;
            break;
        }
        coil_sleep(COIL_MSEC);
    }
    /* still intact and still ours */
    c->owner_recv = coil_chan_recv(c->x.ch, &c->owner_v);
}

static void *owner_thread(void *arg) {
    struct concurrent *c = arg;
    c->owner_rc = coil_run(owner_main, c);
    return NULL;
}

static void intruder_main(void *arg) {
    struct concurrent *c = arg;
    int v = 1;
    EXPECT_EQ(coil_chan_send(c->x.local, &v), 0);
    xdev_ops(&c->x, true);
}

static void test_xdev_concurrent(void **state) {
    struct concurrent *c = calloc(1, sizeof *c);
    assert_non_null(c);
    c->x.ch = open_chan(sizeof(int), 2);
    c->x.local = open_chan(sizeof(int), 2);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, owner_thread, c), 0);
    struct timespec ts = {0, 1000000};
    for (int i = 0; i < 30000 && !atomic_load(&c->bound); i++)
        nanosleep(&ts, NULL);
    if (!atomic_load(&c->bound)) {
        atomic_store(&c->done, 1);
        pthread_join(th, NULL);
        fail_msg("the owner thread never bound the channel");
    }
    coil_test_reset_failures();
    int rc = coil_run(intruder_main, c);
    struct coil_test_failure seen = *coil_test_failure(); /* this run's checks only */
    atomic_store(&c->done, 1);
    assert_int_equal(pthread_join(th, NULL), 0);
    assert_int_equal(rc, 0);
    *coil_test_failure() = seen;
    coil_test_assert_no_failure();
    assert_int_equal(c->owner_rc, 0);
    assert_false(c->timed_out);
    assert_int_equal(c->x.n, 13);
    for (int i = 0; i < c->x.n; i++)
        if (c->x.results[i] != -EXDEV)
            fail_msg("call #%d on a foreign channel returned %d, want -EXDEV", i, c->x.results[i]);
    assert_int_equal(c->owner_recv, 0);
    assert_int_equal(c->owner_v, 42);
    assert_int_equal(coil_chan_free(c->x.ch), 0);
    assert_int_equal(coil_chan_free(c->x.local), 0);
    free(c);
}

/* ---- deadlines: -ETIMEDOUT ---------------------------------------------- */

struct dl {
    coil_chan *ch;
    int results[4];
    int64_t waited[4];
    int balances[4];
    int past[12];
    int spy_runs;
};

static void deadline_main(void *arg) {
    struct dl *d = arg;
    int v = 3;
    for (int i = 0; i < 2; i++) {
        int64_t t0 = coil_now();
        int64_t dl = t0 + (i + 1) * 15 * COIL_MSEC;
        d->results[i] =
            i == 0 ? coil_chan_send_dl(d->ch, &v, dl) : coil_chan_recv_dl(d->ch, &v, dl);
        d->waited[i] = coil_now() - t0;
        d->balances[i] = balance(d->ch);
    }
    /* a deadline that has passed never parks: a runnable spy does not run */
    struct spy spy = {0};
    coil_id sid = coil_spawn(spy_fn, &spy, NULL);
    const int64_t past[] = {0, 1, coil_now() - COIL_SEC, coil_now() - 1, coil_now()};
    int *r = d->past;
    for (size_t i = 0; i < sizeof past / sizeof past[0]; i++) {
        *r++ = coil_chan_send_dl(d->ch, &v, past[i]);
        *r++ = coil_chan_recv_dl(d->ch, &v, past[i]);
    }
    d->spy_runs = spy.runs;
    EXPECT_EQ(balance(d->ch), 0);
    spy.stop = true;
    EXPECT_EQ(coil_join(sid, COIL_FOREVER), 0);
}

static void test_deadlines(void **state) {
    struct dl d = {0};
    d.ch = open_chan(sizeof(int), 0);
    COIL_RUN_CHECKED(deadline_main, &d);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(d.results[i], -ETIMEDOUT);
        assert_true(d.waited[i] >= (i + 1) * 15 * COIL_MSEC);
        assert_int_equal(d.balances[i], 0);
    }
    for (int i = 0; i < 10; i++)
        assert_int_equal(d.past[i], -ETIMEDOUT);
    assert_int_equal(d.spy_runs, 0);
    assert_int_equal(coil_chan_free(d.ch), 0);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_invalid),
        cmocka_unit_test(test_open_invalid_huge_elem),
        cmocka_unit_test(test_open_valid_edges),
        cmocka_unit_test(test_null_arguments),
        cmocka_unit_test(test_bad_values),
        cmocka_unit_test(test_outside_tasklet),
        cmocka_unit_test(test_kill_blocked_in_send),
        cmocka_unit_test(test_kill_blocked_in_recv),
        cmocka_unit_test(test_kill_blocked_in_send_error),
        cmocka_unit_test(test_kill_blocked_with_deadline),
        cmocka_unit_test(test_killed_before_first_call),
        cmocka_unit_test(test_closed),
        cmocka_unit_test(test_free_busy),
        cmocka_unit_test(test_free_busy_buffered),
        cmocka_unit_test(test_use_after_free),
        cmocka_unit_test(test_xdev_later_run_same_thread),
        cmocka_unit_test(test_xdev_other_thread_sequential),
        cmocka_unit_test(test_xdev_concurrent),
        cmocka_unit_test(test_deadlines),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
