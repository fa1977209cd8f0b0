/*
 * coil-echo: the classic echo server, one tasklet per connection.
 *
 * Each connection is served by plain blocking code: receive what came,
 * send it back, until the peer hangs up. coil runs thousands of these loops
 * concurrently on one thread; every blocking call parks only its tasklet.
 *
 *   coil-echo [--host H] --port P [-v]
 *
 *   --host H   address to listen on (default 127.0.0.1; "::" or 0.0.0.0 for all)
 *   --port P   port to listen on (0: any free port, printed at start)
 *   -v         one line per connection, per disconnection and per error
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

/* What every tasklet shares. One scheduler is one thread: no locks needed. */
struct server {
    const char *host, *port;
    bool verbose;
    bool listening;  /* coil_listen_on succeeded */
    bool failed;     /* the listening socket broke */
    long long conns; /* connections accepted */
    long long bytes; /* bytes echoed, over every connection */
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
    srv->bytes += echoed;
    coil_close(c->fd);
    free(c);
}

/* accept(2) errors that say the listening socket itself is unusable; any
 * other error concerns one connection or a passing shortage (out of fds:
 * coil_accept has already paused 100 ms) and the server keeps going. */
static bool accept_fatal(int err) {
    return err == EBADF || err == EINVAL || err == ENOTSOCK || err == EOPNOTSUPP;
}

/* The main tasklet: listens, then accepts connections and spawns their tasklets. */
static void acceptor(void *arg) {
    struct server *srv = arg;
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
    printf("coil-echo: listening on %s (%s)\n", where, coil_backend_name());

    for (;;) {
        len = sizeof sa;
        int fd = coil_accept(lfd, (struct sockaddr *)&sa, &len);
        if (fd == -ECANCELED) break; /* Ctrl-C: coil_run is shutting everything down */
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

        char name[80]; /* coil keeps the first 31 bytes; coil_dump shows them */
        snprintf(name, sizeof name, "conn %s", c->peer);
        coil_id id = coil_spawn(serve, c, &(coil_spawn_opts){.name = name});
        if (id < 0) {
            fprintf(stderr, "coil-echo: %s: spawn: %s\n", c->peer, strerror((int)-id));
            coil_close(fd);
            free(c);
            continue;
        }
        srv->conns++;
        if (srv->verbose) printf("%s: connected\n", c->peer);
    }
    coil_close(lfd);
}

static void usage(FILE *out) {
    fprintf(out, "usage: coil-echo [--host H] --port P [-v]\n"
                 "  --host H   address to listen on (default 127.0.0.1)\n"
                 "  --port P   TCP port, 0-65535 (0: any free port)\n"
                 "  -v         print connections, disconnections and errors\n");
}

int main(int argc, char **argv) {
    struct server srv = {.host = "127.0.0.1"};
    static const struct option longopts[] = {{"host", required_argument, NULL, 'H'},
                                             {"port", required_argument, NULL, 'p'},
                                             {"verbose", no_argument, NULL, 'v'},
                                             {"help", no_argument, NULL, 'h'},
                                             {NULL, 0, NULL, 0}};
    int opt;
    while ((opt = getopt_long(argc, argv, "H:p:vh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'H': srv.host = optarg; break;
        case 'p': srv.port = optarg; break;
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
    int err = coil_run(acceptor, &srv);
    if (err != 0 && err != -EINTR) { /* -EINTR: Ctrl-C or SIGTERM, the normal way out */
        fprintf(stderr, "coil-echo: coil_run: %s\n", strerror(-err));
        return 1;
    }
    if (!srv.listening) return 1; /* already reported */
    printf("coil-echo: %lld connections served, %lld bytes echoed\n", srv.conns, srv.bytes);
    return srv.failed ? 1 : 0;
}
