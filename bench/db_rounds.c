/* See db_rounds.h. */
#include "db_rounds.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <coil.h>

struct task {
    struct db_query q;
    void (*query)(struct db_query *q);
};

struct batch {
    const char *prog;
    void (*query)(struct db_query *q);
    int n;
    double delay_s;
    struct task *t;
    double wall_s;
    int failed;
};

static void task_fn(void *arg) {
    struct task *t = arg;
    t->query(&t->q);
    t->q.done_at = coil_now();
}

static void batch_main(void *arg) {
    struct batch *b = arg;
    coil_id *ids = calloc((size_t)b->n, sizeof *ids);
    if (!ids) {
        b->failed = b->n;
        return;
    }
    int64_t t0 = coil_now();
    for (int i = 0; i < b->n; i++) {
        b->t[i] = (struct task){.q = {.idx = i, .delay_s = b->delay_s}, .query = b->query};
        ids[i] = coil_spawn(task_fn, &b->t[i], NULL);
    }
    int64_t last = t0;
    for (int i = 0; i < b->n; i++) {
        if (ids[i] > 0) coil_join(ids[i], COIL_FOREVER);
        if (ids[i] <= 0 || !b->t[i].q.ok) {
            if (b->failed++ == 0)
                fprintf(stderr, "%s: query %d: %s\n", b->prog, i,
                        ids[i] <= 0 ? "coil_spawn failed" : b->t[i].q.err);
        } else if (b->t[i].q.done_at > last) {
            last = b->t[i].q.done_at;
        }
    }
    b->wall_s = (double)(last - t0) / COIL_SEC;
    free(ids);
}

/* n queries at once: the wall time in seconds, or -1 if one failed. */
static double run(struct batch *b, int n, double delay_s) {
    b->n = n;
    b->delay_s = delay_s;
    b->wall_s = 0;
    b->failed = 0;
    b->t = calloc((size_t)n, sizeof *b->t);
    if (!b->t) return -1;
    int rc = coil_run(batch_main, b);
    free(b->t);
    if (rc != 0) fprintf(stderr, "%s: coil_run: %s\n", b->prog, strerror(-rc));
    return rc != 0 || b->failed ? -1 : b->wall_s;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int db_rounds(const char *prog, void (*query)(struct db_query *q), int n, double delay_s,
              int rounds) {
    struct batch b = {.prog = prog, .query = query};
    printf("%-8s %12s %12s %10s\n", "round", "one query", "wall", "wall/one");
    int status = 0;
    double *one = calloc((size_t)rounds, sizeof *one), *wall = calloc((size_t)rounds, sizeof *wall),
           *ratio = calloc((size_t)rounds, sizeof *ratio);
    if (!one || !wall || !ratio) status = 1;
    if (!status && run(&b, n, 0.01) < 0) status = 1;
    for (int r = 0; r < rounds && !status; r++) {
        one[r] = run(&b, 1, delay_s);
        wall[r] = run(&b, n, delay_s);
        if (one[r] < 0 || wall[r] < 0) {
            status = 1;
            break;
        }
        ratio[r] = wall[r] / one[r];
        printf("%-8d %10.3f s %10.3f s %10.2f\n", r + 1, one[r], wall[r], ratio[r]);
        fflush(stdout);
    }
    if (!status) {
        double lo = ratio[0], hi = ratio[0];
        for (int r = 1; r < rounds; r++) {
            if (ratio[r] < lo) lo = ratio[r];
            if (ratio[r] > hi) hi = ratio[r];
        }
        double m1 = median(one, rounds), mw = median(wall, rounds), mr = median(ratio, rounds);
        printf("%-8s %10.3f s %10.3f s %10.2f (%.2f-%.2f)\n", "median", m1, mw, mr, lo, hi);
        printf("serially (without coil_install) %d queries would take about %.1f s: %d x one\n", n,
               n * m1, n);
    }
    free(one);
    free(wall);
    free(ratio);
    return status;
}
