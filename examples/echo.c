/*
 * coil-echo: the classic echo server, one tasklet per connection.
 *
 * Each connection is served by plain blocking code: receive what came,
 * send it back, until the peer hangs up. coil runs thousands of these loops
 * concurrently on each thread; every blocking call parks only its tasklet.
 *
 *   coil-echo [--host H] --port P [--threads N] [-v] [--idle-timeout-ms N]
 *             [--max-conns N]
 *
 *   --host H             address to listen on (default 127.0.0.1; "::" or 0.0.0.0 for all)
 *   --port P             port to listen on (0: any free port, printed at start)
 *   --threads N          threads, each running a scheduler (default 0: one per CPU);
 *                        the connections are dealt out to them in turn
 *   -v                   one line per connection, per disconnection (and why) and
 *                        per error
 *   --idle-timeout-ms N  a connection that sends nothing for N ms, or does not
 *                        read what it is sent for N ms, is closed (default 60000;
 *                        0: never). A minute lets a person typing into telnet
 *                        pause; an idle flood gives its fds back within it.
 *   --max-conns N        connections served at once, 1-10000000 (default: the fd
 *                        limit, raised to its hard limit, less the server's own
 *                        fds: 64, and 2 per thread; 10000 on Windows, which has
 *                        no such limit). At the cap the server stops accepting
 *                        until a connection ends: new clients wait in the
 *                        listen backlog and none is dropped (with the default,
 *                        no accept fails for want of an fd either).
 *
 * Ctrl-C (or SIGTERM) stops it: coil_run cancels every tasklet's pending call
 * with -ECANCELED, each closes its socket on the way out, and coil_run
 * returns -EINTR. The program then prints a summary and exits 0.
 */
#include <coil.h>

#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#ifndef _WIN32 /* Windows: coil.h brings Winsock */
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/resource.h>
#endif

/* The most --max-conns takes: ten times the most fds Linux lets a process
 * have by default (fs.nr_open, 1048576); the cap costs 5 bytes a slot. */
#define MAX_CONNS_MAX 10000000

/* What the connections of one scheduler add up to. Each scheduler (thread)
 * has its own, so no tasklet writes where another thread does: no locks, no
 * atomics. Padded to two cache lines, so that the counters of two threads
 * never share one wherever malloc puts the array (it promises 16-byte
 * alignment, not 64). Added up once the group has ended. */
struct stats {
    long long conns;       /* connections served */
    long long bytes;       /* bytes echoed over them */
    long long idle;        /* of those, closed by the idle timeout */
    long long not_reading; /* ... and for not reading their echo within it */
    char pad[128 - 4 * sizeof(long long)];
};

/* What every tasklet shares: the options, then what the acceptor (the main
 * tasklet, on scheduler 0) sets up before it spawns any connection. */
struct server {
    const char *host, *port;
    bool verbose;
    unsigned threads;     /* --threads: 0 for one per CPU */
    int64_t idle_timeout; /* --idle-timeout-ms, in ns; 0: none */
    long max_conns;       /* --max-conns; 0 until the acceptor sets the default */
    long nofile;          /* the fd limit, once raised (0 on Windows: none) */
    coil_chan *slots;     /* the cap on connections: see take_slot */
    bool listening;       /* coil_listen_on succeeded */
    bool failed;          /* the listening socket broke */
    int nstats;           /* coil_sched_count() */
    struct stats *stats;  /* one per scheduler, indexed by coil_sched_index() */
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

/* ---- the cap on connections ------------------------------------------------- */

/* srv->slots is a buffered channel of max_conns one-byte elements used as a
 * counting semaphore: one element in it for each connection being served.
 * The acceptor sends one before each accept, and so waits, parked, while
 * the channel is full; the connection's tasklet receives one as it ends, on
 * whichever scheduler it ran (a channel works across the schedulers of a
 * group), and that receive is what wakes the acceptor: no count to poll, no
 * wake-up to lose. The receive never waits, since the element sent for
 * this connection is there, and it completes even in a tasklet killed at
 * shutdown. take_slot returns 0, or -ECANCELED at shutdown. */
static int take_slot(struct server *srv) {
    char token = 0;
    int err = coil_chan_send_dl(srv->slots, &token, 0); /* a deadline passed: no wait */
    if (err != -ETIMEDOUT) return err;
    if (srv->verbose)
        printf("coil-echo: %ld connections open (--max-conns): accepting again when one ends\n",
               srv->max_conns);
    return coil_chan_send(srv->slots, &token);
}

static void give_slot(struct server *srv) {
    char token;
    coil_chan_recv(srv->slots, &token);
}

/* The default --max-conns: what the fd limit leaves once the server's own
 * fds are counted out. 64 for stdin, stdout, stderr, the listener, coil's
 * signal eventfd and the connections io_uring's multishot accept takes
 * before the acceptor asks (it stops at 16), with room to spare; and 2 per
 * thread, each scheduler's ring (or epoll instance) and wake-up eventfd.
 * Under it, a client past the cap waits in the listen backlog rather than
 * being accepted, and accept never fails for want of an fd (coil_accept
 * would then pause 100 ms, and a server with no fd left cannot even log). */
static long default_max_conns(const struct server *srv, int nsched) {
#ifdef _WIN32
    (void)srv, (void)nsched;
    return 10000; /* no fd limit to derive it from */
#else
    long n = srv->nofile - 64 - 2L * nsched;
    return n < 1 ? 1 : n > MAX_CONNS_MAX ? MAX_CONNS_MAX : n;
#endif
}

/* ---- one connection --------------------------------------------------------- */

/* Why a connection ended, for -v. */
enum end {
    END_PEER,        /* the client closed (or reset) it */
    END_IDLE,        /* it sent nothing for the idle timeout */
    END_NOT_READING, /* it did not take its echo within the idle timeout */
    END_SHUTDOWN,    /* Ctrl-C */
    END_ERROR,       /* a socket error: see err */
};

static int64_t deadline_after(int64_t timeout) {
    return timeout > 0 ? coil_now() + timeout : COIL_FOREVER;
}

/* Echoes until the connection ends; returns why (and the error in *err for
 * END_ERROR). The idle timeout bounds each wait: for the client's next bytes,
 * and for it to take their echo (at most 16 KiB, which a client that reads
 * takes at once). At Ctrl-C the pending call returns -ECANCELED. */
static enum end echo(struct conn *c, long long *echoed, int *err) {
    int64_t idle = c->srv->idle_timeout;
    char buf[16 * 1024]; /* on this tasklet's stack (256 KiB, committed lazily) */
    for (;;) {
        ssize_t n = coil_recv_dl(c->fd, buf, sizeof buf, 0, deadline_after(idle));
        if (n == -ETIMEDOUT) return END_IDLE;
        if (n > 0) {
            n = coil_sendall(c->fd, buf, (size_t)n, 0, deadline_after(idle));
            if (n == -ETIMEDOUT) return END_NOT_READING;
        }
        if (n > 0) {
            *echoed += n;
            continue;
        }
        if (n == 0 || n == -ECONNRESET || n == -EPIPE) return END_PEER;
        if (n == -ECANCELED) return END_SHUTDOWN;
        *err = (int)-n;
        return END_ERROR;
    }
}

/* The tasklet of one connection. */
static void serve(void *arg) {
    struct conn *c = arg;
    struct server *srv = c->srv;
    long long echoed = 0;
    int err = 0;
    enum end end = echo(c, &echoed, &err);

    if (srv->verbose) {
        static const char *const why[] = {
            [END_PEER] = "disconnected",
            [END_IDLE] = "closed (idle timeout)",
            [END_NOT_READING] = "closed (peer not reading)",
            [END_SHUTDOWN] = "closed at shutdown",
            [END_ERROR] = "error",
        };
        if (end == END_ERROR)
            fprintf(stderr, "%s: %s, %lld bytes echoed\n", c->peer, strerror(err), echoed);
        else
            printf("%s: %s, %lld bytes echoed\n", c->peer, why[end], echoed);
    }
    struct stats *st = &srv->stats[coil_sched_index()]; /* this tasklet's scheduler's own */
    st->conns++;
    st->bytes += echoed;
    st->idle += end == END_IDLE;
    st->not_reading += end == END_NOT_READING;
    coil_close(c->fd); /* first, so that the fd is free when the acceptor takes the slot */
    give_slot(srv);
    free(c);
}

/* ---- the server ------------------------------------------------------------- */

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
 * "Listening on every core"). Each accept waits for a slot first. */
static void acceptor(void *arg) {
    struct server *srv = arg;
    int n = coil_sched_count();
    srv->stats = calloc((size_t)n, sizeof *srv->stats);
    if (!srv->stats) {
        fprintf(stderr, "coil-echo: out of memory\n");
        return;
    }
    srv->nstats = n;
    if (srv->max_conns == 0) srv->max_conns = default_max_conns(srv, n);
    int err = coil_chan_open(&srv->slots, 1, (size_t)srv->max_conns); /* main frees it */
    if (err) {
        fprintf(stderr, "coil-echo: %s\n", strerror(-err));
        return;
    }
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
    if (srv->verbose && srv->idle_timeout > 0)
        printf("coil-echo: at most %ld connections at once, idle timeout %lld ms\n", srv->max_conns,
               (long long)(srv->idle_timeout / COIL_MSEC));
    else if (srv->verbose)
        printf("coil-echo: at most %ld connections at once, no idle timeout\n", srv->max_conns);

    for (;;) {
        if ((err = take_slot(srv)) != 0) {
            if (err != -ECANCELED) { /* never: the channel is ours and open */
                fprintf(stderr, "coil-echo: %s\n", strerror(-err));
                srv->failed = true;
            }
            break;
        }
        len = sizeof sa;
        int fd = coil_accept(lfd, (struct sockaddr *)&sa, &len);
        if (fd < 0) give_slot(srv);
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
            give_slot(srv);
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
            give_slot(srv);
            free(c);
        }
    }
    coil_close(lfd);
}

static void usage(FILE *out) {
    fprintf(out,
            "usage: coil-echo [--host H] --port P [--threads N] [-v] [--idle-timeout-ms N] "
            "[--max-conns N]\n"
            "  --host H             address to listen on (default 127.0.0.1)\n"
            "  --port P             TCP port, 0-65535 (0: any free port)\n"
            "  --threads N          threads, 0-%d (default 0: one per CPU)\n"
            "  -v                   print connections, disconnections (and why) and errors\n"
            "  --idle-timeout-ms N  close a connection that sends nothing, or does not read,\n"
            "                       for N ms (default 60000: a pause a person at telnet\n"
            "                       may take; 0: never)\n"
            "  --max-conns N        connections served at once, 1-%d (default: the fd\n"
            "                       limit less the server's own fds); more wait unaccepted\n",
            COIL_GROUP_MAX, MAX_CONNS_MAX);
}

/* s as a number from lo to hi, digits only (no sign, no space); -1 if it is
 * not one. */
static long long parse_number(const char *s, long long lo, long long hi) {
    if (*s < '0' || *s > '9') return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (*end != '\0' || errno != 0 || v < lo || v > hi) return -1;
    return v;
}

/* Says which option's value is wrong, then the usage; the exit status. */
static int bad_value(const char *option, const char *value, long long lo, long long hi) {
    fprintf(stderr, "coil-echo: %s %s: not a number from %lld to %lld\n", option, value, lo, hi);
    usage(stderr);
    return 2;
}

int main(int argc, char **argv) {
    enum { OPT_THREADS = 256, OPT_IDLE_TIMEOUT, OPT_MAX_CONNS };
    enum { IDLE_MS_MAX = 1000 * 1000 * 1000 }; /* 11 days */
    struct server srv = {.host = "127.0.0.1", .idle_timeout = 60 * COIL_SEC};
    static const struct option longopts[] = {
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"verbose", no_argument, NULL, 'v'},
        {"idle-timeout-ms", required_argument, NULL, OPT_IDLE_TIMEOUT},
        {"max-conns", required_argument, NULL, OPT_MAX_CONNS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int opt;
    long long v;
    while ((opt = getopt_long(argc, argv, "H:p:vh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'H': srv.host = optarg; break;
        case 'p': srv.port = optarg; break;
        case OPT_THREADS:
            if ((v = parse_number(optarg, 0, COIL_GROUP_MAX)) < 0)
                return bad_value("--threads", optarg, 0, COIL_GROUP_MAX);
            srv.threads = (unsigned)v;
            break;
        case OPT_IDLE_TIMEOUT:
            if ((v = parse_number(optarg, 0, IDLE_MS_MAX)) < 0)
                return bad_value("--idle-timeout-ms", optarg, 0, IDLE_MS_MAX);
            srv.idle_timeout = v * COIL_MSEC;
            break;
        case OPT_MAX_CONNS:
            if ((v = parse_number(optarg, 1, MAX_CONNS_MAX)) < 0)
                return bad_value("--max-conns", optarg, 1, MAX_CONNS_MAX);
            srv.max_conns = (long)v;
            break;
        case 'v': srv.verbose = true; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    char *end;
    long port = srv.port ? strtol(srv.port, &end, 10) : -1;
    if (optind != argc || !srv.port || *srv.port == '\0' || *end != '\0' || port < 0 ||
        port > 65535) {
        usage(stderr);
        return 2;
    }

#ifdef _WIN32
    setvbuf(stdout, NULL, _IONBF, 0); /* the C runtime has no line buffering */
#else
    /* Many connections need many fds: raise the soft limit to the hard one.
     * What it is then sets the default --max-conns. */
    struct rlimit rl;
    srv.nofile = 1024; /* the usual soft limit, should getrlimit ever fail */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
        srv.nofile = rl.rlim_cur > (rlim_t)LONG_MAX ? LONG_MAX : (long)rl.rlim_cur;
    setvbuf(stdout, NULL, _IOLBF, 0); /* a log: each line as it happens, even into a pipe */
#endif

    /* A server started in the background by a script inherits SIGINT
     * ignored; it should still stop on kill -INT, as in a terminal. */
    coil_set_shutdown_signals(COIL_SIGNALS_TAKE);
    int err = coil_run_group(srv.threads, acceptor, &srv);
    if (srv.slots) coil_chan_free(srv.slots); /* every tasklet has ended: none waits on it */
    if (err != 0 && err != -EINTR) {          /* -EINTR: Ctrl-C or SIGTERM, the normal way out */
        fprintf(stderr, "coil-echo: coil_run_group: %s\n", strerror(-err));
        free(srv.stats);
        return 1;
    }
    struct stats all = {0};
    for (int i = 0; i < srv.nstats; i++) {
        all.conns += srv.stats[i].conns;
        all.bytes += srv.stats[i].bytes;
        all.idle += srv.stats[i].idle;
        all.not_reading += srv.stats[i].not_reading;
    }
    if (!srv.listening) {
        free(srv.stats);
        return 1; /* already reported */
    }
    printf("coil-echo: %lld connections served, %lld bytes echoed\n", all.conns, all.bytes);
    if (all.idle > 0 || all.not_reading > 0)
        printf("coil-echo: of those, %lld closed idle, %lld for not reading their echo\n", all.idle,
               all.not_reading);
    for (int i = 0; i < srv.nstats && srv.verbose && srv.nstats > 1; i++)
        printf("coil-echo: thread %d: %lld connections, %lld bytes echoed\n", i, srv.stats[i].conns,
               srv.stats[i].bytes);
    free(srv.stats);
    return srv.failed ? 1 : 0;
}
