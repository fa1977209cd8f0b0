/*
 * The request parser of coil-http: HTTP/1.1 requests, one after another on
 * a keep-alive connection, fed in whatever pieces the network delivers.
 *
 * A thin layer over http_parser (Debian's libhttp-parser-dev, the parser of
 * Node.js before llhttp) that adds what a server needs around it: the end of
 * each request (its body included, read and dropped, so that pipelined
 * requests stay in step), a limit on the size of a request head, and one
 * answer per call. It allocates nothing: the whole state is one struct that
 * the caller owns (coil-http keeps it on the connection tasklet's stack).
 *
 *   struct http_parse ps;
 *   http_parse_init(&ps);
 *   for each piece of input (data, len):
 *       while (len > 0) {
 *           size_t used;
 *           enum http_parse_result r = http_parse(&ps, data, len, &used);
 *           data += used, len -= used;
 *           if (r == HTTP_PARSE_REQUEST) answer ps.req, close if !ps.req.keep_alive
 *           else if (r == HTTP_PARSE_MORE) break: every byte was used, read more
 *           else answer 400 or 431 and close
 *       }
 *
 * The result does not depend on how the input was split: feeding a stream
 * in one piece or in any number of pieces gives the same requests at the
 * same offsets and the same error (tests/fuzz/fuzz_http_parse.c checks it).
 */
#ifndef COIL_EXAMPLES_HTTP_PARSE_H
#define COIL_EXAMPLES_HTTP_PARSE_H

#include <http_parser.h>
#include <stdbool.h>
#include <stddef.h>

/* The largest request head (request line, headers and the empty line that
 * ends them, plus any empty lines before the request line): a head that has
 * not ended within this many bytes is HTTP_PARSE_TOO_LARGE. */
#define HTTP_HEAD_MAX 8192

/* Room for the request target; a longer one is kept truncated (and
 * target_truncated set), which a server answers with 414. */
#define HTTP_TARGET_CAP 1024

enum http_parse_result {
    HTTP_PARSE_MORE,        /* every byte given was used; no request is complete yet */
    HTTP_PARSE_REQUEST,     /* a request is complete (body included): see ps->req */
    HTTP_PARSE_BAD_REQUEST, /* malformed: answer 400 and close */
    HTTP_PARSE_TOO_LARGE,   /* the head exceeds HTTP_HEAD_MAX: answer 431 and close */
    HTTP_PARSE_CLOSED,      /* input after a request whose keep_alive was false */
};

/* Where the parser stands between calls, for a server's timeouts. */
enum http_parse_phase {
    HTTP_PHASE_IDLE, /* between requests: no byte of the next one seen */
    HTTP_PHASE_HEAD, /* part of a request head seen */
    HTTP_PHASE_BODY, /* the head is complete, its body is coming */
    HTTP_PHASE_DONE, /* an error, or the connection's last request: nothing more */
};

/* A complete request; valid until the next call of http_parse. */
struct http_request {
    enum http_method method; /* HTTP_GET, HTTP_HEAD, ... (http_parser.h) */
    unsigned short http_major, http_minor;
    bool keep_alive;       /* false: the connection ends after this request's answer */
    bool target_truncated; /* the target was longer than HTTP_TARGET_CAP - 1 bytes */
    /* The request target as sent, NUL-terminated (truncated, see above). */
    char target[HTTP_TARGET_CAP];
    size_t target_len;
    /* Its path: a pointer into target and a length, without the query or
     * fragment; for the absolute form (http://host/p) the path of the URL,
     * "/" when it has none. Empty for "*" and CONNECT's host:port. */
    const char *path;
    size_t path_len;
};

struct http_parse {
    http_parser parser;
    enum http_parse_phase phase;
    enum http_parse_result done; /* the answer of every call once phase is DONE */
    size_t head_bytes;           /* bytes of the current head so far */
    int event;                   /* set by the callbacks, see http_parse.c */
    struct http_request req;
};

/* Starts a connection's parser. */
void http_parse_init(struct http_parse *ps);

/* Parses len bytes of data, stopping at the end of the first request that
 * completes in them; *consumed says how many bytes were used (all of them,
 * for HTTP_PARSE_MORE). Once an error or HTTP_PARSE_CLOSED has been answered
 * every later call answers the same (an error again, CLOSED after a last
 * request) and uses nothing. len 0 answers HTTP_PARSE_MORE. */
enum http_parse_result http_parse(struct http_parse *ps, const char *data, size_t len,
                                  size_t *consumed);

static inline enum http_parse_phase http_parse_phase(const struct http_parse *ps) {
    return ps->phase;
}

#endif /* COIL_EXAMPLES_HTTP_PARSE_H */
