/*
 * coil-echo: the classic echo server, one tasklet per connection.
 *
 * Each connection is served by plain blocking code: receive what came,
 * send it back, until the peer hangs up. coil runs thousands of these loops
 * concurrently on each thread; every blocking call parks only its tasklet.
 *
 *   coil-echo [--host H] --port P [--threads N] [-v]
 *
 *   --host H      address to listen on (default 127.0.0.1; "::" or 0.0.0.0 for all)
 *   --port P      port to listen on (0: any free port, printed at start)
 *   --threads N   threads, each running a scheduler (default 0: one per CPU);
 *                 the connections are dealt out to them in turn
 *   -v            one line per connection, per disconnection and per error
 *
 * Ctrl-C (or SIGTERM) stops it: coil_run cancels every tasklet's pending call
 * with -ECANCELED, each closes its socket on the way out, and coil_run
 * returns -EINTR. The program then prints a summary and exits 0.
 */
#include <coil.h>

#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32 /* Windows: coil.h brings Winsock */
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#endif

/* What the connections of one scheduler add up to. Each scheduler (thread)
 * has its own, so no tasklet writes where another thread does: no locks, no
 * atomics. Padded to two cache lines, so that the counters of two threads
 * never share one wherever malloc puts the array (it promises 16-byte
 * alignment, not 64). Added up once the group has ended. */
struct stats {
    long long conns; /* connections served */
    long long bytes; /* bytes echoed over them */
    char pad[128 - 2 * sizeof(long long)];
};

/* What every tasklet shares: the options, then what the acceptor (the main
 * tasklet, on scheduler 0) sets up before it spawns any connection. */
struct server {
    const char *host, *port;
    bool verbose;
    unsigned threads;    /* --threads: 0 for one per CPU */
    bool listening;      /* coil_listen_on succeeded */
    bool failed;         /* the listening socket broke */
    int nstats;          /* coil_sched_count() */
    struct stats *stats; /* one per scheduler, indexed by coil_sched_index() */
};

/* One accepted connection, handed from the acceptor to its tasklet. */
struct conn {
    struct server *srv;
    int fd;
    char peer[64]; /* "127.0.0.1:54321" or "[::1]:54321" */
};

/* Writes "host:port" ("[host]:port" for IPv6) of a socket address. Numeric
 * only, so it never asks a resolver (which would block the whole thread). */
static void format_addr(const struct sockaddr *sa, socklen_t len, char *out, size_t cap) {
    char host[NI_MAXHOST], port[NI_MAXSERV];
    if (getnameinfo(sa, len, host, sizeof host, port, sizeof port,
                    NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
        snprintf(out, cap, "?");
        return;
    }
    snprintf(out, cap, sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
}

/* The tasklet of one connection. */
static void serve(void *arg) {
    struct conn *c = arg;
    struct server *srv = c->srv;
    char buf[16 * 1024]; /* on this tasklet's stack (256 KiB, committed lazily) */
    long long echoed = 0;
    ssize_t n;

    /* Echo until end of stream (0) or an error (< 0). At Ctrl-C, the pending
     * call returns -ECANCELED and the loop ends the same way. */
    while ((n = coil_recv(c->fd, buf, sizeof buf, 0)) > 0) {
        ssize_t sent = coil_sendall(c->fd, buf, (size_t)n, 0, COIL_FOREVER);
        if (sent < 0) {
            n = sent;
            break;
        }
        echoed += sent;
    }

    if (srv->verbose) {
        if (n == 0)
            printf("%s: disconnected, %lld bytes echoed\n", c->peer, echoed);
        else if (n == -ECANCELED)
            printf("%s: closed at shutdown, %lld bytes echoed\n", c->peer, echoed);
        else
            fprintf(stderr, "%s: %s, %lld bytes echoed\n", c->peer, strerror((int)-n), echoed);
    }
    struct stats *st = &srv->stats[coil_sched_index()]; /* this tasklet's scheduler's own */
    st->conns++;
    st->bytes += echoed;
    coil_close(c->fd);
    free(c);
}

/* accept(2) errors that say the listening socket itself is unusable; any
 * other error concerns one connection or a passing shortage (out of fds:
 * coil_accept has already paused 100 ms) and the server keeps going. */
static bool accept_fatal(int err) {
    return err == EBADF || err == EINVAL || err == ENOTSOCK || err == EOPNOTSUPP;
}

/* The main tasklet, on scheduler 0: listens, then accepts connections and
 * deals them out to the schedulers in turn, each connection's tasklet on
 * the next scheduler (one listener handing out connections, rather than a
 * listener per scheduler with SO_REUSEPORT: see docs/architecture.md,
 * "Listening on every core"). */
static void acceptor(void *arg) {
    struct server *srv = arg;
    int n = coil_sched_count();
    srv->stats = calloc((size_t)n, sizeof *srv->stats);
    if (!srv->stats) {
        fprintf(stderr, "coil-echo: out of memory\n");
        return;
    }
    srv->nstats = n;
    int lfd = coil_listen_on(srv->host, srv->port, SOMAXCONN);
    if (lfd < 0) {
        fprintf(stderr, "coil-echo: listen on %s port %s: %s\n", srv->host, srv->port,
                lfd == -ENOENT ? "unknown host" : strerror(-lfd));
        return;
    }
    srv->listening = true;
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    char where[64] = "?";
    if (getsockname(lfd, (struct sockaddr *)&sa, &len) == 0)
        format_addr((struct sockaddr *)&sa, len, where, sizeof where);
    printf("coil-echo: listening on %s (%s, %d thread%s)\n", where, coil_backend_name(), n,
           n == 1 ? "" : "s");

    for (;;) {
        len = sizeof sa;
        int fd = coil_accept(lfd, (struct sockaddr *)&sa, &len);
        if (fd == -ECANCELED) break; /* Ctrl-C: coil_run_group is shutting everything down */
        if (fd < 0) {
            if (srv->verbose || accept_fatal(-fd))
                fprintf(stderr, "coil-echo: accept: %s\n", strerror(-fd));
            if (accept_fatal(-fd)) {
                srv->failed = true; /* stop accepting; open connections run to their end */
                break;
            }
            continue;
        }

        /* Echo each piece at once instead of letting Nagle's algorithm hold
         * it back while an earlier piece is unacknowledged. (setsockopt never
         * blocks, so the plain call is fine inside a tasklet.) */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, (const char *)&one, sizeof one);

        struct conn *c = malloc(sizeof *c);
        if (!c) {
            fprintf(stderr, "coil-echo: out of memory\n");
            coil_close(fd);
            continue;
        }
        c->srv = srv;
        c->fd = fd;
        format_addr((struct sockaddr *)&sa, len, c->peer, sizeof c->peer);

        /* The fd is a number, valid on every thread: the tasklet may run on
         * any scheduler (it stays there). On another scheduler it may run,
         * and free c, before coil_spawn_on returns: c is not touched after
         * a successful spawn, so the log line comes first. coil keeps the
         * first 31 bytes of the name; coil_dump shows them. */
        char name[80];
        snprintf(name, sizeof name, "conn %s", c->peer);
        if (srv->verbose) printf("%s: connected\n", c->peer);
        coil_id id = coil_spawn_on(COIL_SCHED_NEXT, serve, c, &(coil_spawn_opts){.name = name});
        if (id < 0) {
            fprintf(stderr, "coil-echo: %s: spawn: %s\n", c->peer, strerror((int)-id));
            coil_close(fd);
            free(c);
        }
    }
    coil_close(lfd);
}

static void usage(FILE *out) {
    fprintf(out,
            "usage: coil-echo [--host H] --port P [--threads N] [-v]\n"
            "  --host H      address to listen on (default 127.0.0.1)\n"
            "  --port P      TCP port, 0-65535 (0: any free port)\n"
            "  --threads N   threads, 0-%d (default 0: one per CPU)\n"
            "  -v            print connections, disconnections and errors\n",
            COIL_GROUP_MAX);
}

int main(int argc, char **argv) {
    struct server srv = {.host = "127.0.0.1"};
    static const struct option longopts[] = {
        {"host", required_argument, NULL, 'H'},    {"port", required_argument, NULL, 'p'},
        {"threads", required_argument, NULL, 't'}, {"verbose", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    int opt;
    char *end;
    long threads;
    while ((opt = getopt_long(argc, argv, "H:p:vh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'H': srv.host = optarg; break;
        case 'p': srv.port = optarg; break;
        case 't':
            errno = 0;
            threads = strtol(optarg, &end, 10);
            if (*optarg < '0' || *optarg > '9' || *end != '\0' || errno ||
                threads > COIL_GROUP_MAX) {
                fprintf(stderr, "coil-echo: --threads %s: not a number from 0 to %d\n", optarg,
                        COIL_GROUP_MAX);
                usage(stderr);
                return 2;
            }
            srv.threads = (unsigned)threads;
            break;
        case 'v': srv.verbose = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    long port = srv.port ? strtol(srv.port, &end, 10) : -1;
    if (optind != argc || !srv.port || *srv.port == '\0' || *end != '\0' || port < 0 ||
        port > 65535) {
        usage(stderr);
        return 2;
    }

#ifdef _WIN32
    setvbuf(stdout, NULL, _IONBF, 0); /* the C runtime has no line buffering */
#else
    /* Many connections need many fds: raise the soft limit to the hard one. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* a log: each line as it happens, even into a pipe */
#endif

    /* A server started in the background by a script inherits SIGINT
     * ignored; it should still stop on kill -INT, as in a terminal. */
    coil_set_shutdown_signals(COIL_SIGNALS_TAKE);
    int err = coil_run_group(srv.threads, acceptor, &srv);
    if (err != 0 && err != -EINTR) { /* -EINTR: Ctrl-C or SIGTERM, the normal way out */
        fprintf(stderr, "coil-echo: coil_run_group: %s\n", strerror(-err));
        free(srv.stats);
        return 1;
    }
    long long conns = 0, bytes = 0;
    for (int i = 0; i < srv.nstats; i++) {
        conns += srv.stats[i].conns;
        bytes += srv.stats[i].bytes;
    }
    if (!srv.listening) {
        free(srv.stats);
        return 1; /* already reported */
    }
    printf("coil-echo: %lld connections served, %lld bytes echoed\n", conns, bytes);
    for (int i = 0; i < srv.nstats && srv.verbose && srv.nstats > 1; i++)
        printf("coil-echo: thread %d: %lld connections, %lld bytes echoed\n", i, srv.stats[i].conns,
               srv.stats[i].bytes);
    free(srv.stats);
    return srv.failed ? 1 : 0;
}
