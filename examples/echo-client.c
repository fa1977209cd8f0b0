/*
 * coil-echo-client: load and check an echo server.
 *
 * CONNS tasklets each dial the server and send it MESSAGES messages of SIZE
 * bytes, one at a time: send a message, read its echo back completely,
 * check every byte, send the next. The bytes of each message are a
 * pseudo-random stream seeded by (connection, message), so an echo that
 * comes back on the wrong connection, late, or out of order shows up as a
 * mismatch, not only a flipped byte.
 *
 *   coil-echo-client [--host H] --port P [-c CONNS] [-n MESSAGES] [-s SIZE]
 *
 * Prints a summary and exits 0 only if every message came back intact, 1 if
 * a connection failed or an echo differed. Ctrl-C (or SIGTERM) stops it:
 * every connection's pending call returns -ECANCELED and it closes its
 * socket; the summary says how far the run got, and the exit status is 130
 * (what a shell reports for a command ended by Ctrl-C), or 1 if something
 * had already failed.
 */
#include <coil.h>

#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

/* A message travels in pieces of at most CHUNK bytes, and each piece's echo
 * is read back before the next piece is sent. So at most CHUNK bytes are in
 * flight per connection, far below what the socket buffers on the way hold,
 * and the client and the server can never both wait on a full buffer (which
 * would happen if a huge message were sent whole before reading anything). */
#define CHUNK (16 * 1024)

/* Each call on a socket gives up after this long: a stuck server fails the
 * run instead of hanging it. */
#define IO_TIMEOUT (10 * COIL_SEC)

/* The run's settings and results, shared by every tasklet of the one
 * scheduler thread (so no locks). */
struct run {
    const char *host, *port;
    long conns, messages, size;
    struct client *clients; /* one per connection */
    int64_t t0;             /* when the first connection started */
    long failed;            /* connections that failed (not cancelled) */
    long cancelled;         /* connections cut short by Ctrl-C */
    long long msgs_ok;      /* messages echoed back, intact or not */
    long long mismatch;     /* messages whose echo differed */
};

struct client {
    struct run *run;
    long index;
};

/* The splitmix64 finalizer: a cheap, well-mixed 64-bit hash. */
static uint64_t mix(uint64_t x) {
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9u;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebu;
    return x ^ (x >> 31);
}

/* Bytes off .. off+len of the message whose seed is seed. */
static void pattern(char *buf, size_t len, uint64_t seed, size_t off) {
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)(mix(seed + off + i) >> 56);
}

/* Sends one message piece by piece, reads each piece's echo back and checks
 * it. Returns 1 if the echo matched, 0 if not, or -errno. */
static int exchange(int fd, uint64_t seed, size_t size) {
    char out[CHUNK], in[CHUNK];
    int same = 1;
    for (size_t off = 0; off < size; off += CHUNK) {
        size_t len = size - off < CHUNK ? size - off : CHUNK;
        pattern(out, len, seed, off);
        ssize_t n = coil_sendall(fd, out, len, 0, COIL_FOREVER);
        if (n < 0) return (int)n;
        for (size_t got = 0; got < len; got += (size_t)n) {
            n = coil_recv(fd, in + got, len - got, 0);
            if (n == 0) return -ECONNRESET; /* the server hung up mid-message */
            if (n < 0) return (int)n;
        }
        if (memcmp(in, out, len) != 0) same = 0;
    }
    return same;
}

/* The tasklet of one connection. */
static void client(void *arg) {
    struct client *c = arg;
    struct run *run = c->run;
    int fd = coil_dial(run->host, run->port, SOCK_STREAM, coil_now() + IO_TIMEOUT);
    if (fd == -ECANCELED) { /* Ctrl-C needs no explanation */
        run->cancelled++;
        return;
    }
    if (fd < 0) { /* -ENOENT: the host name does not resolve */
        fprintf(stderr, "connection %ld: dial %s port %s: %s\n", c->index, run->host, run->port,
                fd == -ENOENT ? "unknown host" : strerror(-fd));
        run->failed++;
        return;
    }
    /* Every piece goes out at once (no Nagle delay), and every later call on
     * fd times out after IO_TIMEOUT. */
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    coil_set_timeout(fd, IO_TIMEOUT);

    for (long m = 0; m < run->messages; m++) {
        int r = exchange(fd, mix(((uint64_t)c->index << 32) | (uint64_t)m), (size_t)run->size);
        if (r == -ECANCELED) { /* Ctrl-C */
            run->cancelled++;
            break;
        }
        if (r < 0) {
            fprintf(stderr, "connection %ld, message %ld: %s\n", c->index, m, strerror(-r));
            run->failed++;
            break;
        }
        run->msgs_ok++;
        if (r == 0) {
            run->mismatch++;
            fprintf(stderr, "connection %ld, message %ld: echo differs\n", c->index, m);
        }
    }
    coil_close(fd);
}

/* The main tasklet: starts every connection and returns. coil_run returns
 * once they have all finished. */
static void start(void *arg) {
    struct run *run = arg;
    run->t0 = coil_now();
    for (long i = 0; i < run->conns; i++) {
        char name[32];
        snprintf(name, sizeof name, "client %ld", i);
        coil_id id = coil_spawn(client, &run->clients[i], &(coil_spawn_opts){.name = name});
        if (id < 0) {
            fprintf(stderr, "connection %ld: spawn: %s\n", i, strerror((int)-id));
            run->failed++;
        }
    }
}

static void usage(FILE *out) {
    fprintf(out, "usage: coil-echo-client [--host H] --port P [-c CONNS] [-n MESSAGES] [-s SIZE]\n"
                 "  --host H       server address (default 127.0.0.1)\n"
                 "  --port P       server port\n"
                 "  -c CONNS       concurrent connections (default 10)\n"
                 "  -n MESSAGES    messages per connection (default 100)\n"
                 "  -s SIZE        bytes per message (default 512)\n");
}

/* A whole decimal number in 1..max, or -1. */
static long number(const char *s, long max) {
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    return errno || end == s || *end != '\0' || v < 1 || v > max ? -1 : v;
}

int main(int argc, char **argv) {
    struct run run = {.host = "127.0.0.1", .conns = 10, .messages = 100, .size = 512};
    static const struct option longopts[] = {{"host", required_argument, NULL, 'H'},
                                             {"port", required_argument, NULL, 'p'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "H:p:c:n:s:h", longopts, NULL)) != -1) {
        switch (opt) {
        case 'H': run.host = optarg; break;
        case 'p': run.port = optarg; break;
        case 'c': run.conns = number(optarg, 1000000); break;
        case 'n': run.messages = number(optarg, 1000000000); break;
        case 's': run.size = number(optarg, 1L << 30); break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc || !run.port || number(run.port, 65535) < 0 || run.conns < 0 ||
        run.messages < 0 || run.size < 0) {
        usage(stderr);
        return 2;
    }

    /* Each connection is an fd: raise the soft limit to the hard one. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    /* Allocated here, outside coil_run, so they outlive every tasklet. */
    run.clients = calloc((size_t)run.conns, sizeof *run.clients);
    if (!run.clients) {
        fprintf(stderr, "coil-echo-client: out of memory\n");
        return 1;
    }
    for (long i = 0; i < run.conns; i++)
        run.clients[i] = (struct client){.run = &run, .index = i};

    int err = coil_run(start, &run); /* returns when every connection has finished */
    double secs = (double)(coil_now() - run.t0) / 1e9;
    free(run.clients);
    if (err != 0 && err != -EINTR) { /* -EINTR: Ctrl-C; the summary says how far it got */
        fprintf(stderr, "coil-echo-client: coil_run: %s\n", strerror(-err));
        return 1;
    }
    long long want = (long long)run.conns * run.messages;
    printf("coil-echo-client: %ld connections (%ld failed), %lld of %lld messages of %ld bytes "
           "(%lld bytes each way), %.3f s, %.0f messages/s, %lld mismatches\n",
           run.conns, run.failed, run.msgs_ok, want, run.size, run.msgs_ok * run.size, secs,
           secs > 0 ? (double)run.msgs_ok / secs : 0, run.mismatch);
    if (err == -EINTR) {
        fprintf(stderr, "coil-echo-client: interrupted, %ld connections cancelled\n",
                run.cancelled);
        return run.failed == 0 && run.mismatch == 0 ? 130 : 1;
    }
    return run.msgs_ok == want && run.failed == 0 && run.mismatch == 0 ? 0 : 1;
}
