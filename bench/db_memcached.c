/*
 * coil-bench-db-memcached: the parallel-request speed-up of libmemcached
 * (unmodified) in tasklets under coil_install, against a memcached it starts.
 *
 * memcached answers at once, so the requests go through a proxy on a thread
 * of its own that holds each response for a known delay (default 500 ms,
 * tests/servers/delay_proxy.c): a server whose every answer takes that long.
 * Each round times one request alone (a tasklet creates its own memcached_st,
 * connects through the proxy, gets a key, checks the value, frees it), then N
 * of them at once (default 40), one tasklet each, and prints one request's
 * time, the wall time of the N and wall / one. Serially the N would take N
 * times one; the goal is wall / one <= 1.3 at N = 40 (issue 18). The values
 * are set beforehand directly in memcached, and each is checked: a wrong one
 * ends the program with 1. Nothing is asserted about the times.
 *
 *   coil-bench-db-memcached [-n N] [-d DELAY_MS] [-r ROUNDS]
 *
 * Prints one line per round, then the median of the rounds. Exits 77 when
 * there is no memcached to run (Debian: memcached). COIL_BACKEND picks the
 * backend as for any coil program.
 */
#include <coil.h>

#include <libmemcached/memcached.h>

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "delay_proxy.h"
#include "memcached.h"

struct request {
    int idx;
    uint16_t port;
    bool ok;
    int64_t took_ns;
};

static int n_req = 40;
static int64_t delay_ms = 500;
static int rounds = 3;
static struct coil_delay_proxy *proxy;
static struct coil_memcached mc;

static void key_of(int idx, char *key, size_t cap) {
    snprintf(key, cap, "coil:bench:%d", idx);
}

static void value_of(int idx, char *val, size_t cap) {
    snprintf(val, cap, "value of request %d", idx);
}

static memcached_st *client(uint16_t port) {
    memcached_st *m = memcached_create(NULL);
    if (!m) return NULL;
    if (memcached_server_add(m, "127.0.0.1", port) != MEMCACHED_SUCCESS) {
        memcached_free(m);
        return NULL;
    }
    /* Every answer comes after the delay: wait for it, whatever it is. */
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_POLL_TIMEOUT, (uint64_t)(delay_ms * 4 + 30000));
    return m;
}

/* One request: its own memcached_st, connect, get, check, free. */
static void request_fn(void *arg) {
    struct request *r = arg;
    int64_t t0 = coil_now();
    char key[64], want[64];
    key_of(r->idx, key, sizeof key);
    value_of(r->idx, want, sizeof want);
    memcached_st *m = client(r->port);
    if (!m) return;
    size_t len = 0;
    uint32_t flags = 0;
    memcached_return_t rc;
    char *got = memcached_get(m, key, strlen(key), &len, &flags, &rc);
    r->ok = rc == MEMCACHED_SUCCESS && got && len == strlen(want) && memcmp(got, want, len) == 0;
    if (!r->ok)
        fprintf(stderr, "request %d: %s (%s)\n", r->idx, memcached_strerror(m, rc),
                memcached_last_error_message(m));
    free(got);
    memcached_free(m);
    r->took_ns = coil_now() - t0;
}

struct batch {
    int n;
    struct request *r;
    int64_t wall_ns;
};

static void batch_main(void *arg) {
    struct batch *b = arg;
    coil_id *ids = calloc((size_t)b->n, sizeof *ids);
    if (!ids) return;
    int64_t t0 = coil_now();
    for (int i = 0; i < b->n; i++)
        ids[i] = coil_spawn(request_fn, &b->r[i], NULL);
    for (int i = 0; i < b->n; i++)
        if (ids[i] > 0) coil_join(ids[i], COIL_FOREVER);
    b->wall_ns = coil_now() - t0;
    free(ids);
}

/* n requests at once (n = 1: one alone); false when one failed. */
static bool run_batch(int n, int64_t *wall_ns, int *peak) {
    struct batch b = {.n = n};
    b.r = calloc((size_t)n, sizeof *b.r);
    if (!b.r) return false;
    for (int i = 0; i < n; i++)
        b.r[i] = (struct request){.idx = i, .port = coil_delay_proxy_port(proxy)};
    coil_delay_proxy_reset(proxy);
    int rc = coil_run(batch_main, &b);
    bool ok = rc == 0;
    if (rc != 0) fprintf(stderr, "coil_run: %s\n", strerror(-rc));
    for (int i = 0; i < n; i++)
        ok = ok && b.r[i].ok;
    free(b.r);
    struct coil_delay_proxy_stats st;
    coil_delay_proxy_get_stats(proxy, &st);
    *wall_ns = b.wall_ns;
    *peak = st.peak;
    return ok;
}

/* The values, set directly in memcached (not through the proxy). */
static bool set_values(void) {
    memcached_st *m = client(mc.port);
    if (!m) return false;
    bool ok = true;
    for (int i = 0; i < n_req && ok; i++) {
        char key[64], val[64];
        key_of(i, key, sizeof key);
        value_of(i, val, sizeof val);
        memcached_return_t rc = memcached_set(m, key, strlen(key), val, strlen(val), 0, 0);
        if (rc != MEMCACHED_SUCCESS) {
            fprintf(stderr, "set %s: %s\n", key, memcached_strerror(m, rc));
            ok = false;
        }
    }
    memcached_free(m);
    return ok;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int usage(const char *argv0) {
    fprintf(stderr, "usage: %s [-n N] [-d DELAY_MS] [-r ROUNDS]\n", argv0);
    return 2;
}

int main(int argc, char **argv) {
    int opt;
    while ((opt = getopt(argc, argv, "n:d:r:")) != -1) {
        switch (opt) {
        case 'n': n_req = atoi(optarg); break;
        case 'd': delay_ms = atoll(optarg); break;
        case 'r': rounds = atoi(optarg); break;
        default: return usage(argv[0]);
        }
    }
    if (optind != argc || n_req < 1 || n_req > 10000 || delay_ms < 0 || rounds < 1 || rounds > 100)
        return usage(argv[0]);
    int rc = coil_memcached_start(&mc);
    if (rc == -ENOENT) {
        fprintf(stderr, "coil-bench-db-memcached: no memcached to run (Debian package "
                        "memcached): skipped\n");
        return 77;
    }
    if (rc != 0) return 1;
    int status = 1;
    double *one = calloc((size_t)rounds, sizeof *one);
    double *wall = calloc((size_t)rounds, sizeof *wall);
    double *ratio = calloc((size_t)rounds, sizeof *ratio);
    proxy = coil_delay_proxy_start(mc.port, delay_ms * COIL_MSEC);
    if (!proxy || !one || !wall || !ratio || !set_values()) goto out;
    /* libmemcached's calls park the calling tasklet from here on. */
    if (coil_install() != 0) {
        fprintf(stderr, "coil_install failed\n");
        goto out;
    }
    const char *backend = getenv("COIL_BACKEND");
    printf("libmemcached %s, memcached on 127.0.0.1:%u behind a proxy holding each response "
           "%lld ms; N = %d; backend %s\n",
           LIBMEMCACHED_VERSION_STRING, (unsigned)mc.port, (long long)delay_ms, n_req,
           backend && *backend ? backend : "default");
    int64_t ns;
    int peak;
    if (!run_batch(1, &ns, &peak)) goto out; /* warm-up: the offload pool, lazy binding */
    for (int i = 0; i < rounds; i++) {
        int64_t one_ns, wall_ns;
        if (!run_batch(1, &one_ns, &peak) || !run_batch(n_req, &wall_ns, &peak)) goto out;
        one[i] = (double)one_ns / 1e6;
        wall[i] = (double)wall_ns / 1e6;
        ratio[i] = wall[i] / one[i];
        printf("round %d: one request %.1f ms; %d at once: wall %.1f ms, wall / one %.2f "
               "(at most %d in flight at once)\n",
               i + 1, one[i], n_req, wall[i], ratio[i], peak);
        fflush(stdout);
    }
    printf("median of %d: one request %.1f ms, wall %.1f ms, wall / one %.2f "
           "(N = %d; goal <= 1.3 at N = 40)\n",
           rounds, median(one, rounds), median(wall, rounds), median(ratio, rounds), n_req);
    status = 0;
out:
    if (proxy) coil_delay_proxy_stop(proxy);
    coil_memcached_stop(&mc);
    free(one);
    free(wall);
    free(ratio);
    if (status != 0) fprintf(stderr, "coil-bench-db-memcached: failed\n");
    return status;
}
