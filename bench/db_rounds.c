/* See db_rounds.h. */
#include "db_rounds.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <coil.h>

struct batch {
    const char *prog;
    const struct db_client *client;
    const struct db_opts *o;
    int n;
    double delay_s;
    struct db_query *q;
    /* pooled: every client's connection is open (opened), then the clock
     * starts and the queries go (go); wait groups for tasklets, barriers of
     * n + 1 for threads */
    coil_wg *opened, *go;
    pthread_barrier_t opened_b, go_b;
    int64_t t0;
    int spawned; /* clients started */
};

/* One client: its whole work, or (pooled) open, wait for the start, query. */
static void client_run(struct batch *b, struct db_query *q) {
    const struct db_client *c = b->client;
    bool open = c->open(q);
    if (b->o->pooled) {
        if (b->o->threads) {
            pthread_barrier_wait(&b->opened_b);
            pthread_barrier_wait(&b->go_b);
        } else {
            coil_wg_done(b->opened);
            coil_wg_wait(b->go, COIL_FOREVER);
        }
    }
    q->ok = open && c->query(q);
    q->done_at = coil_now();
    c->close(q);
}

static void client_tasklet(void *arg) {
    struct db_query *q = arg;
    client_run(q->batch, q);
}

static void *client_thread(void *arg) {
    client_tasklet(arg);
    return NULL;
}

/* The tasklets' batch: spawn, (pooled: wait for every connection, start the
 * clock, let them go), join. */
static void batch_main(void *arg) {
    struct batch *b = arg;
    coil_id *ids = calloc((size_t)b->n, sizeof *ids);
    if (!ids || coil_wg_open(&b->opened) != 0 || coil_wg_open(&b->go) != 0) {
        free(ids);
        return;
    }
    coil_wg_add(b->opened, b->n);
    coil_wg_add(b->go, 1);
    b->t0 = coil_now();
    int sched = b->o->sched;
    for (int i = 0; i < b->n; i++) {
        ids[i] = sched > 1 ? coil_spawn_on(i % sched, client_tasklet, &b->q[i], NULL)
                           : coil_spawn(client_tasklet, &b->q[i], NULL);
        if (ids[i] <= 0) {
            snprintf(b->q[i].err, sizeof b->q[i].err, "coil_spawn failed");
            coil_wg_done(b->opened);
        }
    }
    if (b->o->pooled) {
        coil_wg_wait(b->opened, COIL_FOREVER);
        b->t0 = coil_now();
        coil_wg_done(b->go);
    }
    for (int i = 0; i < b->n; i++)
        if (ids[i] > 0) coil_join(ids[i], COIL_FOREVER);
    b->spawned = b->n;
    coil_wg_free(b->opened);
    coil_wg_free(b->go);
    free(ids);
}

/* The threads' batch, the same on plain threads. */
static void batch_threads(struct batch *b) {
    pthread_t *th = calloc((size_t)b->n, sizeof *th);
    if (!th) return;
    pthread_barrier_init(&b->opened_b, NULL, (unsigned)b->n + 1);
    pthread_barrier_init(&b->go_b, NULL, (unsigned)b->n + 1);
    b->t0 = coil_now();
    int i = 0;
    while (i < b->n && pthread_create(&th[i], NULL, client_thread, &b->q[i]) == 0)
        i++;
    if (i < b->n) {
        /* The barriers count n + 1: without every thread they never open. */
        fprintf(stderr, "%s: pthread_create failed after %d threads\n", b->prog, i);
        exit(1);
    }
    if (b->o->pooled) {
        pthread_barrier_wait(&b->opened_b);
        b->t0 = coil_now();
        pthread_barrier_wait(&b->go_b);
    }
    for (i = 0; i < b->n; i++)
        pthread_join(th[i], NULL);
    b->spawned = b->n;
    pthread_barrier_destroy(&b->opened_b);
    pthread_barrier_destroy(&b->go_b);
    free(th);
}

/* n queries at once: the wall time in seconds, or -1 if one failed (the
 * first failure printed). */
static double run(struct batch *b, int n, double delay_s) {
    b->n = n;
    b->delay_s = delay_s;
    b->spawned = 0;
    b->q = calloc((size_t)n, sizeof *b->q);
    if (!b->q) return -1;
    for (int i = 0; i < n; i++)
        b->q[i] = (struct db_query){.idx = i, .delay_s = delay_s, .batch = b};
    int rc = 0;
    if (b->o->threads)
        batch_threads(b);
    else if (b->o->sched > 1)
        rc = coil_run_group((unsigned)b->o->sched, batch_main, b);
    else
        rc = coil_run(batch_main, b);
    double wall = -1;
    if (rc != 0) {
        fprintf(stderr, "%s: coil_run: %s\n", b->prog, strerror(-rc));
    } else if (b->spawned != n) {
        fprintf(stderr, "%s: out of memory\n", b->prog);
    } else {
        int64_t last = b->t0;
        int i = 0;
        for (; i < n && b->q[i].ok; i++)
            if (b->q[i].done_at > last) last = b->q[i].done_at;
        if (i < n)
            fprintf(stderr, "%s: query %d: %s\n", b->prog, i, b->q[i].err);
        else
            wall = (double)(last - b->t0) / COIL_SEC;
    }
    free(b->q);
    return wall;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

int db_parse(const char *prog, int argc, char **argv, bool trust_flag, struct db_opts *o) {
    *o = (struct db_opts){.n = 40, .rounds = 3, .sched = 1, .delay_s = 0.5};
    bool bad = false;
    for (int i = 1; i < argc && !bad; i++) {
        if (!strcmp(argv[i], "-n") && i + 1 < argc)
            o->n = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-d") && i + 1 < argc)
            o->delay_s = atof(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc)
            o->rounds = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-g") && i + 1 < argc)
            o->sched = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-p"))
            o->pooled = true;
        else if (!strcmp(argv[i], "-T"))
            o->threads = true;
        else if (trust_flag && !strcmp(argv[i], "-t"))
            o->trust = true;
        else
            bad = true;
    }
    if (bad || o->n < 1 || o->n > 10000 || o->rounds < 1 || o->rounds > 100 || o->sched < 1 ||
        o->sched > 256 || !(o->delay_s > 0) || (o->threads && o->sched > 1)) {
        fprintf(stderr, "usage: %s [-n N] [-d SECONDS] [-r ROUNDS] [-p] [-g SCHEDULERS | -T]%s\n",
                prog, trust_flag ? " [-t]" : "");
        return 2;
    }
    return 0;
}

void db_describe(const struct db_opts *o) {
    char on[64];
    if (o->threads)
        snprintf(on, sizeof on, "a plain thread each (no tasklets)");
    else
        snprintf(on, sizeof on, "a tasklet each, on %d scheduler%s", o->sched,
                 o->sched == 1 ? "" : "s");
    printf("%d at once, %s; timed: %s; %d round%s\n", o->n, on,
           o->pooled ? "the queries, on connections opened before" : "connect, query, close",
           o->rounds, o->rounds == 1 ? "" : "s");
}

int db_rounds(const char *prog, const struct db_client *c, const struct db_opts *o) {
    struct batch b = {.prog = prog, .client = c, .o = o};
    int n = o->n, rounds = o->rounds;
    double delay_s = o->delay_s;
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
        printf("serially %d queries would take about %.1f s: %d x one\n", n, n * m1, n);
    }
    free(one);
    free(wall);
    free(ratio);
    return status;
}
