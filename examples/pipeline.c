/*
 * coil-pipeline: tasklets and channels at work.
 *
 * A generator sends the numbers 2..N down a channel; a chain of prime-sieve
 * tasklets, one per prime found, each filters out its multiples and passes
 * the rest on (the classic concurrent prime sieve). Meanwhile a ticker
 * tasklet sleeps and reports progress, and main collects the primes.
 *
 *   coil-pipeline [N]     (default 2000)
 */
#include <coil.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A stage reads `in` (written by the tasklet `writer`) and writes `out`.
 * Who frees what: the writer of a channel closes it; its reader frees it, but
 * only after joining the writer, so that a channel is never freed while its
 * writer may still close it (after Ctrl-C, every stage is killed at once and
 * readers may finish first: a killed tasklet's join still waits). */
struct stage {
    coil_chan *in, *out;
    coil_id writer;
    long prime;
};

static void generate(void *arg) {
    struct stage *st = arg;
    long limit = st->prime;
    for (long i = 2; i <= limit; i++)
        if (coil_chan_send(st->out, &i) != 0) break;
    coil_chan_close(st->out);
    free(st);
}

static void filter(void *arg) {
    struct stage *st = arg;
    long v;
    while (coil_chan_recv(st->in, &v) == 0)
        if (v % st->prime != 0 && coil_chan_send(st->out, &v) != 0) break;
    coil_chan_close(st->out); /* the end of input travels down the chain */
    coil_join(st->writer, COIL_FOREVER);
    coil_chan_free(st->in);
    free(st);
}

static void ticker(void *arg) {
    long *found = arg;
    while (coil_sleep(20 * COIL_MSEC) == 0)
        printf("  ... %ld primes so far\n", *found);
}

struct main_args {
    long limit;
    int failed; /* out of memory */
};

static void run(void *arg) {
    struct main_args *a = arg;
    long limit = a->limit, found = 0, p;
    coil_chan *ch;
    struct stage *gen = malloc(sizeof *gen);
    if (!gen || coil_chan_open(&ch, sizeof(long), 0) != 0) {
        free(gen);
        a->failed = 1;
        return;
    }
    *gen = (struct stage){.out = ch, .prime = limit};
    coil_id writer = coil_spawn(generate, gen, &(coil_spawn_opts){.name = "generator"});
    if (writer < 0) {
        free(gen);
        coil_chan_free(ch);
        a->failed = 1;
        return;
    }
    coil_id tick = coil_spawn(ticker, &found, &(coil_spawn_opts){.name = "ticker"});
    int64_t t0 = coil_now();
    while (coil_chan_recv(ch, &p) == 0) {
        found++;
        if (found <= 10 || found % 100 == 0) printf("prime #%ld: %ld\n", found, p);
        /* Each prime gets its own sieve stage between ch and a new channel. */
        struct stage *st = malloc(sizeof *st);
        coil_chan *next = NULL;
        coil_id id = -ENOMEM;
        if (st && coil_chan_open(&next, sizeof(long), 0) == 0) {
            *st = (struct stage){.in = ch, .out = next, .writer = writer, .prime = p};
            char name[32];
            snprintf(name, sizeof name, "sieve-%ld", p);
            id = coil_spawn(filter, st, &(coil_spawn_opts){.name = name, .stack_size = 16 * 1024});
        }
        if (id < 0) {
            /* Out of memory (or stacks): the chain stops growing. Returning
             * here would leave the stages blocked on ch and the ticker
             * reading `found` on a finished stack: drain ch instead, so that
             * every stage ends, and clean up as usual. */
            free(st);
            if (next) coil_chan_free(next);
            fprintf(stderr, "coil-pipeline: out of memory after %ld primes\n", found);
            a->failed = 1;
            while (coil_chan_recv(ch, &p) == 0) {
            }
            break;
        }
        writer = id;
        ch = next;
    }
    coil_join(writer, COIL_FOREVER); /* see struct stage */
    coil_chan_free(ch);
    if (!coil_killed() && !a->failed)
        printf("%ld primes up to %ld, %ld tasklets in a pipeline, %.1f ms\n", found, limit,
               found + 3, (double)(coil_now() - t0) / 1e6);
    coil_kill(tick);
    coil_join(tick, COIL_FOREVER); /* it reads `found`, on this stack */
}

int main(int argc, char **argv) {
    struct main_args a = {.limit = argc > 1 ? atol(argv[1]) : 2000};
    int err = coil_run(run, &a);
    if (err == -EINTR) { /* Ctrl-C: every stage was cancelled and has finished */
        fprintf(stderr, "coil-pipeline: interrupted\n");
        return 130;
    }
    if (err) {
        fprintf(stderr, "coil_run: %s\n", strerror(-err));
        return 1;
    }
    return a.failed;
}
