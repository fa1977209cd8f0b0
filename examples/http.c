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
 *             [--request-timeout-ms N] [--body-min-rate B] [--idle-timeout-ms N]
 *
 *   --host H               address to listen on (default 127.0.0.1; "::" or 0.0.0.0 for all)
 *   --port P               port to listen on (0: any free port, printed at start)
 *   --threads N            threads, each running a scheduler (default 0: one per
 *                          CPU); the connections are dealt out to them in turn
 *   -v                     one line per connection and per disconnection (and why)
 *   --header-timeout-ms N  a request head must arrive whole within N ms of its
 *                          first byte, and a trailer section within N ms of
 *                          the last chunk (default 5000; 0: no limit). Slowloris.
 *   --request-timeout-ms N a whole request (head, body, trailers) must arrive
 *                          within N ms of its first byte, plus one second for
 *                          every B bytes of body (--body-min-rate), so that a
 *                          long body sent at a fair rate goes through and a
 *                          body trickled a byte at a time does not hold the
 *                          connection (default 10000; 0: no limit)
 *   --body-min-rate B      bytes per second, see above (default 1024; 0: the
 *                          request timeout alone)
 *   --idle-timeout-ms N    a connection that sends nothing for N ms between
 *                          requests (or within a body), or does not read
 *                          what it is sent, is closed (default 10000; 0: never)
 *
 * What it answers:
 *   GET /          200, "Hello, World!" (text/plain); HEAD / the same without body
 *   GET or HEAD of any other path: 404
 *   POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH: 405 (the request's body
 *                  is read and dropped first); any other method: 501
 *   a target longer than 1023 bytes: 414; HTTP/x.y with x != 1: 505 and close
 *   malformed      400 and close (framing that RFC 9112 forbids, a missing,
 *                  repeated or invalid Host: see http_parse.h); a head over
 *                  8 KiB: 431 and close; a transfer coding other than
 *                  chunked: 501 and close
 *   Expect: 100-continue: "100 Continue" when the request would be answered
 *                  200, at once; otherwise the final status at once, and close
 * Connections stay open (HTTP/1.1) unless the request says "Connection:
 * close" or is HTTP/1.0 without "Connection: keep-alive".
 *
 * Ctrl-C (or SIGTERM) stops it: coil_run cancels every tasklet's pending call
 * with -ECANCELED, each closes its socket on the way out, and coil_run
 * returns -EINTR. The program then prints a summary and exits 0: the
 * connections served and the responses delivered (written whole to the
 * socket; one whose sending failed or timed out is not counted).
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
    long long requests; /* responses delivered on them */
    char pad[128 - 2 * sizeof(long long)];
};

/* What every tasklet shares: the options, then what the acceptor (the main
 * tasklet, on scheduler 0) sets up before it spawns any connection. */
struct server {
    const char *host, *port;
    bool verbose;
    unsigned threads;        /* --threads: 0 for one per CPU */
    int64_t header_timeout;  /* ns; 0: none */
    int64_t request_timeout; /* ns; 0: none */
    int64_t body_min_rate;   /* bytes per second; 0: none */
    int64_t idle_timeout;    /* ns; 0: none */
    bool listening;          /* coil_listen_on succeeded */
    bool failed;             /* the listening socket broke */
    int nstats;              /* coil_sched_count() */
    struct stats *stats;     /* one per scheduler, indexed by coil_sched_index() */
};

static struct server srv = {.host = "127.0.0.1",
                            .header_timeout = 5 * COIL_SEC,
                            .request_timeout = 10 * COIL_SEC,
                            .body_min_rate = 1024,
                            .idle_timeout = 10 * COIL_SEC};

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

/* The interim answer to "Expect: 100-continue" (RFC 9110 §15.2.1). */
static const char continue_100[] = "HTTP/1.1 100 Continue\r\n\r\n";

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
    char peer[64];      /* "127.0.0.1:54321" or "[::1]:54321" */
    long long requests; /* responses delivered: in a send that succeeded */
    long long queued;   /* responses in out, not sent yet */
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
 * read them within the idle timeout is given up on (-ETIMEDOUT). The
 * responses count as delivered only if the whole send succeeded. */
static ssize_t flush(struct conn *c) {
    if (c->out_len == 0) return 0;
    ssize_t n = coil_sendall(c->fd, c->out, c->out_len, 0, deadline_after(srv.idle_timeout));
    c->out_len = 0;
    if (n >= 0) c->requests += c->queued;
    c->queued = 0;
    return n < 0 ? n : 0;
}

/* Adds len bytes to the output, sending what was gathered first if they
 * would not fit. Returns 0 or -errno. */
static ssize_t gather(struct conn *c, const char *text, size_t len) {
    if (c->out_len + len > sizeof c->out) {
        ssize_t err = flush(c);
        if (err < 0) return err;
    }
    memcpy(c->out + c->out_len, text, len);
    c->out_len += len;
    return 0;
}

/* Adds a response to the output. Returns 0 or -errno. */
static ssize_t respond(struct conn *c, enum status st, enum conn_header ch, bool head_only) {
    const struct response *r = &responses[st][ch];
    ssize_t err = gather(c, r->text, head_only ? r->head_len : r->len);
    if (err == 0) c->queued++;
    return err;
}

/* The answer to a complete request; *close is set when the connection ends
 * after it. */
static enum status route(const struct http_request *req, bool *close) {
    if (req->http_major != 1) {
        *close = true;
        return ST_505;
    }
    if (req->target_truncated) return ST_414;
    if (req->method == HTTP_METHOD_OTHER) return ST_501;
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
    END_NOT_IMPL,  /* 501: a transfer coding it does not know */
    END_EXPECT,    /* Expect: 100-continue answered at once with a final status */
    END_IDLE,      /* idle timeout */
    END_HEADER,    /* header timeout (a head or a trailer section) */
    END_REQUEST,   /* request timeout */
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

/* The deadlines of the request being received, beside the parser. Each is
 * set the first time a recv finds the request unfinished (the clock is read
 * then, not for every request: one that arrives whole in one read never
 * looks at it). */
struct timing {
    int64_t head;    /* a head or trailer section must be whole by then; -1: unset */
    int64_t request; /* the request's first byte came about then; -1: unset */
};

/* The deadline of the next recv and what its expiry means (*why). */
static int64_t recv_deadline(const struct http_parse *ps, const struct timing *t, enum end *why) {
    enum http_parse_phase phase = http_parse_phase(ps);
    int64_t deadline = deadline_after(srv.idle_timeout);
    *why = END_IDLE;
    if (phase == HTTP_PHASE_IDLE) return deadline;
    if ((phase == HTTP_PHASE_HEAD || phase == HTTP_PHASE_TRAILER) && t->head >= 0 &&
        t->head <= deadline) {
        deadline = t->head;
        *why = END_HEADER;
    }
    if (t->request >= 0 && srv.request_timeout > 0) {
        /* One more second for every body_min_rate bytes of body that came
         * (Apache's mod_reqtimeout MinRate): a long body at a fair rate goes
         * through, one trickled a byte at a time is cut off. */
        int64_t credit = 0;
        if (srv.body_min_rate > 0) {
            uint64_t b = ps->body_bytes;
            uint64_t secs = b / (uint64_t)srv.body_min_rate;
            credit = secs > (uint64_t)(INT64_MAX / 4 / COIL_SEC) ? INT64_MAX / 4
                                                                 : (int64_t)secs * COIL_SEC;
        }
        int64_t by = t->request + srv.request_timeout + credit;
        if (by < deadline) {
            deadline = by;
            *why = END_REQUEST;
        }
    }
    return deadline;
}

/* After parsing what came: start the clocks of a request left unfinished. */
static void start_clocks(const struct http_parse *ps, struct timing *t, bool trailer_started) {
    enum http_parse_phase phase = http_parse_phase(ps);
    if (phase == HTTP_PHASE_IDLE || phase == HTTP_PHASE_DONE) return;
    int64_t now = -1;
    if (t->request < 0 && srv.request_timeout > 0) t->request = now = coil_now();
    if (srv.header_timeout > 0 && ((phase == HTTP_PHASE_HEAD && t->head < 0) ||
                                   (phase == HTTP_PHASE_TRAILER && trailer_started))) {
        if (now < 0) now = coil_now();
        t->head = now + srv.header_timeout;
    }
}

/* The response to a request that expects 100-continue, decided by its head
 * alone: 100 Continue if it would be answered 200, else its final status at
 * once (RFC 9110 §10.1.1), and the connection ends (its body is not read). */
static ssize_t answer_expect(struct conn *c, const struct http_request *req, bool *closing) {
    bool close = false;
    enum status st = route(req, &close);
    if (st == ST_200) return gather(c, continue_100, sizeof continue_100 - 1);
    *closing = true;
    return respond(c, st, CH_CLOSE, req->method == HTTP_METHOD_HEAD);
}

/* The status and end that answer a parse error. */
static enum status error_status(enum http_parse_result r, enum end *end) {
    switch (r) {
    case HTTP_PARSE_TOO_LARGE: *end = END_TOO_LARGE; return ST_431;
    case HTTP_PARSE_NOT_IMPLEMENTED: *end = END_NOT_IMPL; return ST_501;
    default: *end = END_BAD; return ST_400; /* or, never here, input after a last request */
    }
}

/* Reads, parses and answers requests until the connection ends; returns why
 * (and the error in *err for END_ERROR, the parser's reason in *why for
 * END_BAD). */
static enum end serve_requests(struct conn *c, int *err, const char **why) {
    struct http_parse ps;
    http_parse_init(&ps);
    struct timing t = {-1, -1};

    for (;;) {
        enum end on_timeout;
        int64_t deadline = recv_deadline(&ps, &t, &on_timeout);
        ssize_t n = coil_recv_dl(c->fd, c->in, sizeof c->in, 0, deadline);
        if (n == 0 || n == -ECONNRESET) return END_PEER;
        if (n == -ECANCELED) return END_SHUTDOWN;
        if (n == -ETIMEDOUT) return on_timeout;
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
        bool in_trailer = http_parse_phase(&ps) == HTTP_PHASE_TRAILER;
        while (left > 0 && !closing) {
            size_t used;
            enum http_parse_result r = http_parse(&ps, p, left, &used);
            p += used;
            left -= used;
            ssize_t sent = 0;
            if (r == HTTP_PARSE_REQUEST) {
                t.head = t.request = -1;
                in_trailer = false;
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
            } else if (r == HTTP_PARSE_HEAD) {
                t.head = -1; /* the head is whole; its body is on the request's clock */
                sent = answer_expect(c, &ps.req, &closing);
                if (closing) end = END_EXPECT;
            } else if (r == HTTP_PARSE_MORE) {
                break;
            } else {
                /* A bad request, a head too large, a coding it cannot read:
                 * answer and close. */
                sent = respond(c, error_status(r, &end), CH_CLOSE, false);
                *why = ps.why;
                closing = true;
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
        /* A head (or trailer section) that began in what just came must be
         * whole by header_timeout after it began, the whole request by
         * request_timeout (counted from now, just after its bytes were
         * parsed). */
        if (http_parse_phase(&ps) == HTTP_PHASE_BODY) t.head = -1;
        start_clocks(&ps, &t, !in_trailer && http_parse_phase(&ps) == HTTP_PHASE_TRAILER);
    }
}

/* The tasklet of one connection; arg is the fd. */
static void serve(void *arg) {
    struct conn c;
    c.fd = (int)(intptr_t)arg;
    c.requests = 0;
    c.queued = 0;
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
    const char *bad = NULL;
    enum end end = serve_requests(&c, &err, &bad);

    if (srv.verbose) {
        static const char *const why[] = {
            [END_PEER] = "disconnected",
            [END_CLOSE] = "closed (last request)",
            [END_BAD] = "closed (400 bad request)",
            [END_TOO_LARGE] = "closed (431 head too large)",
            [END_NOT_IMPL] = "closed (501 transfer coding not implemented)",
            [END_EXPECT] = "closed (final status before the body)",
            [END_IDLE] = "closed (idle timeout)",
            [END_HEADER] = "closed (header timeout)",
            [END_REQUEST] = "closed (request timeout)",
            [END_SHUTDOWN] = "closed at shutdown",
            [END_ERROR] = "error",
        };
        if (end == END_ERROR)
            fprintf(stderr, "%s: %s, %lld requests\n", c.peer, strerror(err), c.requests);
        else if (end == END_BAD && bad)
            printf("%s: closed (400 bad request: %s), %lld requests\n", c.peer, bad, c.requests);
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
            "usage: coil-http [--host H] --port P [--threads N] [-v] [--header-timeout-ms N]\n"
            "                 [--request-timeout-ms N] [--body-min-rate B] [--idle-timeout-ms N]\n"
            "  --host H               address to listen on (default 127.0.0.1)\n"
            "  --port P               TCP port, 0-65535 (0: any free port)\n"
            "  --threads N            threads, 0-%d (default 0: one per CPU)\n"
            "  -v                     print connections and disconnections\n"
            "  --header-timeout-ms N  time to send a request head (default 5000; 0: none)\n"
            "  --request-timeout-ms N time to send a whole request, plus 1 s per B bytes of\n"
            "                         body (default 10000; 0: none)\n"
            "  --body-min-rate B      bytes per second (default 1024; 0: no extension)\n"
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
    enum {
        OPT_HEADER_TIMEOUT = 256,
        OPT_REQUEST_TIMEOUT,
        OPT_BODY_MIN_RATE,
        OPT_IDLE_TIMEOUT,
        OPT_THREADS
    };
    static const struct option longopts[] = {
        {"host", required_argument, NULL, 'H'},
        {"port", required_argument, NULL, 'p'},
        {"threads", required_argument, NULL, OPT_THREADS},
        {"verbose", no_argument, NULL, 'v'},
        {"header-timeout-ms", required_argument, NULL, OPT_HEADER_TIMEOUT},
        {"request-timeout-ms", required_argument, NULL, OPT_REQUEST_TIMEOUT},
        {"body-min-rate", required_argument, NULL, OPT_BODY_MIN_RATE},
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
        case OPT_REQUEST_TIMEOUT:
            if ((srv.request_timeout = parse_ms(optarg)) < 0) {
                usage(stderr);
                return 2;
            }
            break;
        case OPT_BODY_MIN_RATE:
            /* The same range as a number of milliseconds. */
            if ((srv.body_min_rate = parse_ms(optarg)) < 0) {
                usage(stderr);
                return 2;
            }
            srv.body_min_rate /= COIL_MSEC;
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
    printf("coil-http: %lld connections served, %lld responses delivered\n", conns, requests);
    for (int i = 0; i < srv.nstats && srv.verbose && srv.nstats > 1; i++)
        printf("coil-http: thread %d: %lld connections, %lld requests\n", i, srv.stats[i].conns,
               srv.stats[i].requests);
    free(srv.stats);
    return srv.failed ? 1 : 0;
}
