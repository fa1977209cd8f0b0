/*
 * coil-http: a keep-alive HTTP/1.1 server, one tasklet per connection.
 *
 * Each connection is plain blocking code: receive what came, parse the
 * requests in it, answer them, receive again. Pipelined requests that
 * arrived together are answered together: their responses are gathered and
 * sent with one coil_sendall once no complete request is left in the input.
 * A connection allocates nothing after it is accepted: its buffers and its
 * parser live on its tasklet's stack.
 *
 *   coil-http [--host H] --port P [--threads N] [-v] [--header-timeout-ms N]
 *             [--idle-timeout-ms N]
 *
 *   --host H               address to listen on (default 127.0.0.1; "::" or 0.0.0.0 for all)
 *   --port P               port to listen on (0: any free port, printed at start)
 *   --threads N            threads, each running a scheduler (default 0: one per
 *                          CPU); the connections are dealt out to them in turn
 *   -v                     one line per connection and per disconnection (and why)
 *   --header-timeout-ms N  a request head must arrive whole within N ms of its
 *                          first byte (default 5000; 0: no limit). Slowloris.
 *   --idle-timeout-ms N    a connection that sends nothing for N ms between
 *                          requests (or within a body), or does not read
 *                          what it is sent, is closed (default 10000; 0: never)
 *
 * What it answers:
 *   GET /          200, "Hello, World!" (text/plain); HEAD / the same without body
 *   GET or HEAD of any other path: 404
 *   other methods  405 (the request's body is read and dropped first)
 *   a target longer than 1023 bytes: 414; HTTP/x.y with x != 1: 505 and close
 *   malformed      400 and close; a head over 8 KiB: 431 and close
 * Connections stay open (HTTP/1.1) unless the request says "Connection:
 * close" or is HTTP/1.0 without "Connection: keep-alive".
 *
 * Ctrl-C (or SIGTERM) stops it: coil_run cancels every tasklet's pending call
 * with -ECANCELED, each closes its socket on the way out, and coil_run
 * returns -EINTR. The program then prints a summary and exits 0.
 */
#include <coil.h>

#include "http_parse.h"

#include <errno.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

/* What the connections of one scheduler add up to. Each scheduler (thread)
 * has its own, so no tasklet writes where another thread does: no locks, no
 * atomics. Padded to two cache lines, so that the counters of two threads
 * never share one wherever malloc puts the array (it promises 16-byte
 * alignment, not 64). Added up once the group has ended. */
struct stats {
    long long conns;    /* connections served */
    long long requests; /* requests answered on them */
    char pad[128 - 2 * sizeof(long long)];
};

/* What every tasklet shares: the options, then what the acceptor (the main
 * tasklet, on scheduler 0) sets up before it spawns any connection. */
struct server {
    const char *host, *port;
    bool verbose;
    unsigned threads;       /* --threads: 0 for one per CPU */
    int64_t header_timeout; /* ns; 0: none */
    int64_t idle_timeout;   /* ns; 0: none */
    bool listening;         /* coil_listen_on succeeded */
    bool failed;            /* the listening socket broke */
    int nstats;             /* coil_sched_count() */
    struct stats *stats;    /* one per scheduler, indexed by coil_sched_index() */
};

static struct server srv = {
    .host = "127.0.0.1", .header_timeout = 5 * COIL_SEC, .idle_timeout = 10 * COIL_SEC};

/* ---- responses ------------------------------------------------------------ */

/* Every response is one of a few fixed byte strings, made once at start:
 * per status, per Connection header, with and without body (HEAD). */
enum status { ST_200, ST_400, ST_404, ST_405, ST_414, ST_431, ST_501, ST_505, ST_COUNT };
enum conn_header {
    CH_NONE,       /* HTTP/1.1 keep-alive: the default, nothing to say */
    CH_KEEP_ALIVE, /* HTTP/1.0 that asked for keep-alive */
    CH_CLOSE,      /* the connection ends after this response */
    CH_COUNT
};

static const struct {
    const char *line;  /* status line, without CRLF */
    const char *extra; /* further header lines, each with CRLF */
    const char *body;
} statuses[ST_COUNT] = {
    [ST_200] = {"HTTP/1.1 200 OK", "", "Hello, World!"},
    [ST_400] = {"HTTP/1.1 400 Bad Request", "", "Bad Request"},
    [ST_404] = {"HTTP/1.1 404 Not Found", "", "Not Found"},
    [ST_405] = {"HTTP/1.1 405 Method Not Allowed", "Allow: GET, HEAD\r\n", "Method Not Allowed"},
    [ST_414] = {"HTTP/1.1 414 URI Too Long", "", "URI Too Long"},
    [ST_431] = {"HTTP/1.1 431 Request Header Fields Too Large", "",
                "Request Header Fields Too Large"},
    [ST_501] = {"HTTP/1.1 501 Not Implemented", "", "Not Implemented"},
    [ST_505] = {"HTTP/1.1 505 HTTP Version Not Supported", "", "HTTP Version Not Supported"},
};

#define RESPONSE_MAX 256 /* the longest response below, with room to spare */

static struct response {
    char text[RESPONSE_MAX];
    size_t len;      /* with body */
    size_t head_len; /* without (HEAD) */
} responses[ST_COUNT][CH_COUNT];

static void make_responses(void) {
    static const char *const conn_lines[CH_COUNT] = {[CH_NONE] = "",
                                                     [CH_KEEP_ALIVE] = "Connection: keep-alive\r\n",
                                                     [CH_CLOSE] = "Connection: close\r\n"};
    for (int s = 0; s < ST_COUNT; s++) {
        for (int c = 0; c < CH_COUNT; c++) {
            struct response *r = &responses[s][c];
            int head = snprintf(r->text, sizeof r->text,
                                "%s\r\n%sContent-Type: text/plain\r\nContent-Length: %zu\r\n%s\r\n",
                                statuses[s].line, statuses[s].extra, strlen(statuses[s].body),
                                conn_lines[c]);
            int all = head + snprintf(r->text + head, sizeof r->text - (size_t)head, "%s",
                                      statuses[s].body);
            if (head < 0 || (size_t)all >= sizeof r->text) abort(); /* RESPONSE_MAX too small */
            r->head_len = (size_t)head;
            r->len = (size_t)all;
        }
    }
}

/* ---- one connection --------------------------------------------------------- */

/* The input and output of one connection, on its tasklet's stack. */
#define IN_SIZE  (16 * 1024)
#define OUT_SIZE (16 * 1024)

struct conn {
    int fd;
    char peer[64]; /* "127.0.0.1:54321" or "[::1]:54321" */
    long long requests;
    size_t out_len;
    char out[OUT_SIZE]; /* responses gathered for one coil_sendall */
    char in[IN_SIZE];
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

static int64_t deadline_after(int64_t timeout) {
    return timeout > 0 ? coil_now() + timeout : COIL_FOREVER;
}

/* Sends the gathered responses. Returns 0 or -errno. A client that does not
 * read them within the idle timeout is given up on (-ETIMEDOUT). */
static ssize_t flush(struct conn *c) {
    if (c->out_len == 0) return 0;
    ssize_t n = coil_sendall(c->fd, c->out, c->out_len, 0, deadline_after(srv.idle_timeout));
    c->out_len = 0;
    return n < 0 ? n : 0;
}

/* Adds a response to the output, sending what was gathered first if it would
 * not fit. Returns 0 or -errno. */
static ssize_t respond(struct conn *c, enum status st, enum conn_header ch, bool head_only) {
    const struct response *r = &responses[st][ch];
    size_t len = head_only ? r->head_len : r->len;
    if (c->out_len + len > sizeof c->out) {
        ssize_t err = flush(c);
        if (err < 0) return err;
    }
    memcpy(c->out + c->out_len, r->text, len);
    c->out_len += len;
    c->requests++;
    return 0;
}

/* The answer to a complete request; *close is set when the connection ends
 * after it. */
static enum status route(const struct http_request *req, bool *close) {
    if (req->http_major != 1) {
        *close = true;
        return ST_505;
    }
    if (req->target_truncated) return ST_414;
    if (req->method != HTTP_METHOD_GET && req->method != HTTP_METHOD_HEAD) return ST_405;
    if (req->path_len == 1 && req->path[0] == '/') return ST_200;
    return ST_404;
}

/* Why a connection ended, for -v. */
enum end {
    END_PEER,      /* the client closed (or reset) it */
    END_CLOSE,     /* its last request said so (Connection: close, HTTP/1.0) */
    END_BAD,       /* 400 */
    END_TOO_LARGE, /* 431 */
    END_IDLE,      /* idle timeout */
    END_HEADER,    /* header timeout */
    END_SHUTDOWN,  /* Ctrl-C */
    END_ERROR,     /* a socket error: see err */
};

/* After the server decides to close: stop sending (the client sees the end
 * of stream after the last response), then read and drop what the client
 * still sends, for a moment, before closing. Closing a socket with unread
 * input makes the kernel send a reset, which can destroy the response before
 * the client reads it (a client that sent a 9 KiB head and gets 431 after
 * 8 KiB, say). */
static void lingering_close(struct conn *c) {
    coil_shutdown(c->fd, SHUT_WR);
    int64_t deadline = coil_now() + COIL_SEC;
    size_t dropped = 0;
    ssize_t n;
    while (dropped < 1024 * 1024 && (n = coil_recv_dl(c->fd, c->in, sizeof c->in, 0, deadline)) > 0)
        dropped += (size_t)n;
}

/* Reads, parses and answers requests until the connection ends; returns why
 * (and the error in *err for END_ERROR). */
static enum end serve_requests(struct conn *c, int *err) {
    struct http_parse ps;
    http_parse_init(&ps);
    int64_t head_deadline = -1; /* while a head is coming: when it must be whole */

    for (;;) {
        /* Waiting for the rest of a head: until the header deadline; for a
         * request or within a body: the idle timeout. */
        int64_t deadline = http_parse_phase(&ps) == HTTP_PHASE_HEAD && head_deadline >= 0
                               ? head_deadline
                               : deadline_after(srv.idle_timeout);
        ssize_t n = coil_recv_dl(c->fd, c->in, sizeof c->in, 0, deadline);
        if (n == 0 || n == -ECONNRESET) return END_PEER;
        if (n == -ECANCELED) return END_SHUTDOWN;
        if (n == -ETIMEDOUT)
            return http_parse_phase(&ps) == HTTP_PHASE_HEAD ? END_HEADER : END_IDLE;
        if (n < 0) {
            *err = (int)-n;
            return END_ERROR;
        }

        /* Every complete request in what came; the parser keeps the state
         * of one that is not complete yet, so all n bytes get used. */
        const char *p = c->in;
        size_t left = (size_t)n;
        enum end end = END_PEER;
        bool closing = false;
        while (left > 0 && !closing) {
            size_t used;
            enum http_parse_result r = http_parse(&ps, p, left, &used);
            p += used;
            left -= used;
            ssize_t sent = 0;
            if (r == HTTP_PARSE_REQUEST) {
                head_deadline = -1;
                bool close = !ps.req.keep_alive;
                enum status st = route(&ps.req, &close);
                enum conn_header ch = close                    ? CH_CLOSE
                                      : ps.req.http_minor == 0 ? CH_KEEP_ALIVE
                                                               : CH_NONE;
                sent = respond(c, st, ch, ps.req.method == HTTP_METHOD_HEAD);
                if (close) {
                    closing = true;
                    end = END_CLOSE;
                }
            } else if (r == HTTP_PARSE_MORE) {
                break;
            } else if (r == HTTP_PARSE_HEAD) {
                continue; /* 100-continue: the body is parsed as it comes */
            } else {
                /* A bad request, a head too large (or, never here, input
                 * after a last request): answer and close. */
                sent = respond(c,
                               r == HTTP_PARSE_TOO_LARGE         ? ST_431
                               : r == HTTP_PARSE_NOT_IMPLEMENTED ? ST_501
                                                                 : ST_400,
                               CH_CLOSE, false);
                closing = true;
                end = r == HTTP_PARSE_TOO_LARGE ? END_TOO_LARGE : END_BAD;
            }
            if (sent < 0) {
                n = sent;
                break;
            }
        }
        if (n >= 0) n = flush(c);
        if (n == -ECANCELED) return END_SHUTDOWN;
        if (n == -ETIMEDOUT) return END_IDLE;
        if (n == -EPIPE || n == -ECONNRESET) return END_PEER;
        if (n < 0) {
            *err = (int)-n;
            return END_ERROR;
        }
        if (closing) {
            lingering_close(c);
            return end;
        }
        /* A head that began in what just came must be whole by
         * header_timeout after it began (counted from now, just after its
         * bytes were parsed: the clock is read only for such a head, not
         * for every request). */
        if (http_parse_phase(&ps) == HTTP_PHASE_HEAD && head_deadline < 0 && srv.header_timeout > 0)
            head_deadline = deadline_after(srv.header_timeout);
    }
}

/* The tasklet of one connection; arg is the fd. */
static void serve(void *arg) {
    struct conn c;
    c.fd = (int)(intptr_t)arg;
    c.requests = 0;
    c.out_len = 0;
    if (srv.verbose) { /* the peer's name is only for the log */
        struct sockaddr_storage sa;
        socklen_t len = sizeof sa;
        if (getpeername(c.fd, (struct sockaddr *)&sa, &len) == 0)
            format_addr((struct sockaddr *)&sa, len, c.peer, sizeof c.peer);
        else
            snprintf(c.peer, sizeof c.peer, "?");
        printf("%s: connected\n", c.peer);
    }

    int err = 0;
    enum end end = serve_requests(&c, &err);

    if (srv.verbose) {
        static const char *const why[] = {
            [END_PEER] = "disconnected",
            [END_CLOSE] = "closed (last request)",
            [END_BAD] = "closed (400 bad request)",
            [END_TOO_LARGE] = "closed (431 head too large)",
            [END_IDLE] = "closed (idle timeout)",
            [END_HEADER] = "closed (header timeout)",
            [END_SHUTDOWN] = "closed at shutdown",
            [END_ERROR] = "error",
        };
        if (end == END_ERROR)
            fprintf(stderr, "%s: %s, %lld requests\n", c.peer, strerror(err), c.requests);
        else
            printf("%s: %s, %lld requests\n", c.peer, why[end], c.requests);
    }
    struct stats *st = &srv.stats[coil_sched_index()]; /* this tasklet's scheduler's own */
    st->conns++;
    st->requests += c.requests;
    coil_close(c.fd);
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
 * "Listening on every core"). */
static void acceptor(void *arg) {
    (void)arg;
    int n = coil_sched_count();
    srv.stats = calloc((size_t)n, sizeof *srv.stats);
    if (!srv.stats) {
        fprintf(stderr, "coil-http: out of memory\n");
        return;
    }
    srv.nstats = n;
    int lfd = coil_listen_on(srv.host, srv.port, SOMAXCONN);
    if (lfd < 0) {
        fprintf(stderr, "coil-http: listen on %s port %s: %s\n", srv.host, srv.port,
                lfd == -ENOENT ? "unknown host" : strerror(-lfd));
        return;
    }
    srv.listening = true;
    struct sockaddr_storage sa;
    socklen_t len = sizeof sa;
    char where[64] = "?";
    if (getsockname(lfd, (struct sockaddr *)&sa, &len) == 0)
        format_addr((struct sockaddr *)&sa, len, where, sizeof where);
    printf("coil-http: listening on %s (%s, %d thread%s)\n", where, coil_backend_name(), n,
           n == 1 ? "" : "s");

    for (;;) {
        int fd = coil_accept(lfd, NULL, NULL);
        if (fd == -ECANCELED) break; /* Ctrl-C: coil_run_group is shutting everything down */
        if (fd < 0) {
            if (srv.verbose || accept_fatal(-fd))
                fprintf(stderr, "coil-http: accept: %s\n", strerror(-fd));
            if (accept_fatal(-fd)) {
                srv.failed = true; /* stop accepting; open connections run to their end */
                break;
            }
            continue;
        }
        /* Responses go out as soon as they are sent, not held back by
         * Nagle's algorithm while an earlier one is unacknowledged. */
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

        /* The fd is all the tasklet needs: nothing to allocate (a number,
         * valid on every thread: the tasklet may run on any scheduler, and
         * stays there). A tasklet that has not started when the group shuts
         * down still starts (its calls fail with -ECANCELED), so the fd is
         * always closed. */
        coil_id id = coil_spawn_on(COIL_SCHED_NEXT, serve, (void *)(intptr_t)fd,
                                   &(coil_spawn_opts){.name = "conn"});
        if (id < 0) {
            fprintf(stderr, "coil-http: spawn: %s\n", strerror((int)-id));
            coil_close(fd);
            continue;
        }
    }
    coil_close(lfd);
}

static void usage(FILE *out) {
    fprintf(out,
            "usage: coil-http [--host H] --port P [--threads N] [-v] [--header-timeout-ms N] "
            "[--idle-timeout-ms N]\n"
            "  --host H               address to listen on (default 127.0.0.1)\n"
            "  --port P               TCP port, 0-65535 (0: any free port)\n"
            "  --threads N            threads, 0-%d (default 0: one per CPU)\n"
            "  -v                     print connections and disconnections\n"
            "  --header-timeout-ms N  time to send a request head (default 5000; 0: none)\n"
            "  --idle-timeout-ms N    time a connection may stay silent (default 10000; 0: none)\n",
            COIL_GROUP_MAX);
}

/* A non-negative number of milliseconds, as ns; -1 if s is not one. */
static int64_t parse_ms(const char *s) {
    char *end;
    errno = 0;
    long long ms = strtoll(s, &end, 10);
    if (*s == '\0' || *end != '\0' || errno != 0 || ms < 0 || ms > 1000LL * 1000 * 1000) return -1;
    return ms * COIL_MSEC;
}

int main(int argc, char **argv) {
    enum { OPT_HEADER_TIMEOUT = 256, OPT_IDLE_TIMEOUT, OPT_THREADS };
    static const struct option longopts[] = {
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"verbose", no_argument, NULL, 'v'},
        {"header-timeout-ms", required_argument, NULL, OPT_HEADER_TIMEOUT},
        {"idle-timeout-ms", required_argument, NULL, OPT_IDLE_TIMEOUT},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int opt;
    char *end;
    long threads;
    while ((opt = getopt_long(argc, argv, "H:p:vh", longopts, NULL)) != -1) {
        switch (opt) {
        case 'H': srv.host = optarg; break;
        case 'p': srv.port = optarg; break;
        case 'v': srv.verbose = true; break;
        case OPT_HEADER_TIMEOUT:
            if ((srv.header_timeout = parse_ms(optarg)) < 0) {
                usage(stderr);
                return 2;
            }
            break;
        case OPT_IDLE_TIMEOUT:
            if ((srv.idle_timeout = parse_ms(optarg)) < 0) {
                usage(stderr);
                return 2;
            }
            break;
        case OPT_THREADS:
            errno = 0;
            threads = strtol(optarg, &end, 10);
            if (*optarg < '0' || *optarg > '9' || *end != '\0' || errno ||
                threads > COIL_GROUP_MAX) {
                fprintf(stderr, "coil-http: --threads %s: not a number from 0 to %d\n", optarg,
                        COIL_GROUP_MAX);
                usage(stderr);
                return 2;
            }
            srv.threads = (unsigned)threads;
            break;
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

    /* Many connections need many fds: raise the soft limit to the hard one. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    setvbuf(stdout, NULL, _IOLBF, 0); /* a log: each line as it happens, even into a pipe */
    make_responses();

    /* A server started in the background by a script inherits SIGINT
     * ignored; it should still stop on kill -INT, as in a terminal. */
    coil_set_shutdown_signals(COIL_SIGNALS_TAKE);
    int err = coil_run_group(srv.threads, acceptor, NULL);
    if (err != 0 && err != -EINTR) { /* -EINTR: Ctrl-C or SIGTERM, the normal way out */
        fprintf(stderr, "coil-http: coil_run_group: %s\n", strerror(-err));
        free(srv.stats);
        return 1;
    }
    long long conns = 0, requests = 0;
    for (int i = 0; i < srv.nstats; i++) {
        conns += srv.stats[i].conns;
        requests += srv.stats[i].requests;
    }
    if (!srv.listening) {
        free(srv.stats);
        return 1; /* already reported */
    }
    printf("coil-http: %lld connections served, %lld requests answered\n", conns, requests);
    for (int i = 0; i < srv.nstats && srv.verbose && srv.nstats > 1; i++)
        printf("coil-http: thread %d: %lld connections, %lld requests\n", i, srv.stats[i].conns,
               srv.stats[i].requests);
    free(srv.stats);
    return srv.failed ? 1 : 0;
}
