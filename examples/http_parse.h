/*
 * The request parser of coil-http: HTTP/1.1 requests, one after another on
 * a keep-alive connection, fed in whatever pieces the network delivers.
 *
 * Strict by construction: it accepts the request syntax of RFC 9112 (and
 * the parts of RFC 9110 that decide a request's framing) and nothing else,
 * so that a proxy in front of the server and the server cannot disagree on
 * where a request ends (request smuggling). Whatever either RFC says a
 * server MUST reject is an error here, and where they leave a choice the
 * stricter one is taken (a bare LF as a line ending, a repeated
 * Content-Length, an empty Transfer-Encoding list member). Each error names
 * its reason in ps->why.
 *
 * It finds the end of each request (its body included, counted off and
 * dropped, so that pipelined requests stay in step), limits the size of a
 * request head and of a trailer section, and gives one answer per call. It
 * allocates nothing: the whole state is one struct that the caller owns
 * (coil-http keeps it on the connection tasklet's stack).
 *
 *   struct http_parse ps;
 *   http_parse_init(&ps);
 *   for each piece of input (data, len):
 *       while (len > 0) {
 *           size_t used;
 *           enum http_parse_result r = http_parse(&ps, data, len, &used);
 *           data += used, len -= used;
 *           if (r == HTTP_PARSE_REQUEST) answer ps.req, close if !ps.req.keep_alive
 *           else if (r == HTTP_PARSE_HEAD) answer 100 Continue (or the final status, and close)
 *           else if (r == HTTP_PARSE_MORE) break: every byte was used, read more
 *           else answer 400, 431 or 501 and close
 *       }
 *
 * The result does not depend on how the input was split: feeding a stream
 * in one piece or in any number of pieces gives the same answers at the
 * same offsets (tests/fuzz/fuzz_http_parse.c checks it).
 */
#ifndef COIL_EXAMPLES_HTTP_PARSE_H
#define COIL_EXAMPLES_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The largest request head (request line, field lines and the empty line
 * that ends them, plus any empty lines before the request line): a head
 * that has not ended within this many bytes is HTTP_PARSE_TOO_LARGE. The
 * trailer section of a chunked body (its field lines and the empty line
 * that ends it) has the same limit. */
#define HTTP_HEAD_MAX 8192

/* Room for the request target; a longer one is kept truncated (and
 * target_truncated set), which a server answers with 414. */
#define HTTP_TARGET_CAP 1024

/* The longest line of a chunked body's framing that is not data (a chunk
 * size with its extensions, CRLF included): a longer one is a bad request. */
#define HTTP_CHUNK_LINE_MAX 4096

enum http_method {
    HTTP_METHOD_GET,
    HTTP_METHOD_HEAD,
    HTTP_METHOD_POST,
    HTTP_METHOD_PUT,
    HTTP_METHOD_DELETE,
    HTTP_METHOD_CONNECT,
    HTTP_METHOD_OPTIONS,
    HTTP_METHOD_TRACE,
    HTTP_METHOD_PATCH,
    HTTP_METHOD_OTHER /* any other token: a server answers 501 */
};

enum http_parse_result {
    HTTP_PARSE_MORE,    /* every byte given was used; no request is complete yet */
    HTTP_PARSE_REQUEST, /* a request is complete (body included): see ps->req */
    /* The head of a request that expects 100-continue is complete
     * (req->expect_continue); its body follows: the caller answers
     * 100 Continue and parses on, or sends its final status and closes.
     * HTTP_PARSE_REQUEST comes for the same request after its body. */
    HTTP_PARSE_HEAD,
    HTTP_PARSE_BAD_REQUEST,     /* malformed: answer 400 and close */
    HTTP_PARSE_TOO_LARGE,       /* a head or trailer section over HTTP_HEAD_MAX: 431 and close */
    HTTP_PARSE_NOT_IMPLEMENTED, /* a transfer coding other than chunked: 501 and close */
    HTTP_PARSE_CLOSED,          /* input after a request whose keep_alive was false */
};

/* Where the parser stands between calls, for a server's timeouts. */
enum http_parse_phase {
    HTTP_PHASE_IDLE,    /* between requests: no byte of the next one seen */
    HTTP_PHASE_HEAD,    /* part of a request head seen */
    HTTP_PHASE_BODY,    /* the head is complete, its body is coming */
    HTTP_PHASE_TRAILER, /* a chunked body's last chunk is in, its trailer section is coming */
    HTTP_PHASE_DONE,    /* an error, or the connection's last request: nothing more */
};

/* The request being parsed. Its fields are set when its head is complete
 * (HTTP_PARSE_HEAD or HTTP_PARSE_REQUEST) and stay until the first byte of
 * the next request is parsed. */
struct http_request {
    enum http_method method;
    unsigned short http_major, http_minor; /* one digit each: "HTTP/d.d" */
    /* False: the connection ends after this request's answer. HTTP/1.1 (and
     * later 1.x) unless Connection lists "close"; HTTP/1.0 only if it lists
     * "keep-alive" and not "close"; never for an upgrade (Upgrade and
     * Connection: upgrade), CONNECT, or a major version other than 1. */
    bool keep_alive;
    /* An HTTP/1.1 request with "Expect: 100-continue" and a body to come. */
    bool expect_continue;
    bool chunked;            /* its body is chunked */
    uint64_t content_length; /* its Content-Length; 0 when chunked or none */
    bool target_truncated;   /* the target was longer than HTTP_TARGET_CAP - 1 bytes */
    /* The request target as sent, NUL-terminated (truncated, see above). */
    char target[HTTP_TARGET_CAP];
    size_t target_len;
    /* Its path: a pointer into target and a length, without the query or
     * fragment; for the absolute form (http://host/p) the path of the URL,
     * "/" (a static string) when it has none. Empty for "*" and CONNECT's
     * host:port. */
    const char *path;
    size_t path_len;
};

/* A connection's parser. The caller reads phase (through http_parse_phase),
 * body_bytes, why and req; the rest is the parser's own. */
struct http_parse {
    enum http_parse_phase phase;
    enum http_parse_result done; /* the answer of every call once phase is DONE */
    /* Bytes of the current request's body section seen so far, chunk
     * framing and trailer section included (for a minimum-rate timeout). */
    uint64_t body_bytes;
    /* A short static English reason for the last error answered
     * ("whitespace before colon"); NULL unless an error was answered. */
    const char *why;

    /* The parser's own state (see http_parse.c). */
    uint8_t state;      /* where in the request */
    uint8_t field;      /* which field's value is being parsed */
    uint8_t sub;        /* the state of that value's own parser */
    uint8_t form;       /* the form of the request target */
    uint8_t buf_len;    /* bytes in buf: those seen, up to its size */
    uint8_t index;      /* a position in a constant being matched */
    uint16_t flags;     /* what the head's fields said so far */
    uint32_t count;     /* bytes of the current head, trailer section or chunk line */
    uint32_t port;      /* the port of a Host value so far */
    uint64_t number;    /* Content-Length or chunk size so far */
    uint64_t remaining; /* bytes of the body or the current chunk still to come */
    char buf[64];       /* the method, a field name, a list element, an IP literal */
    struct http_request req;
};

/* Starts a connection's parser. */
void http_parse_init(struct http_parse *ps);

/* Parses len bytes of data, stopping at the end of the first request that
 * completes in them (or of the head of one that expects 100-continue);
 * *consumed says how many bytes were used (all of them, for
 * HTTP_PARSE_MORE). Once an error or HTTP_PARSE_CLOSED has been answered
 * every later call answers the same (an error again, with the same why;
 * CLOSED after a last request) and uses nothing. len 0 answers
 * HTTP_PARSE_MORE. */
enum http_parse_result http_parse(struct http_parse *ps, const char *data, size_t len,
                                  size_t *consumed);

static inline enum http_parse_phase http_parse_phase(const struct http_parse *ps) {
    return ps->phase;
}

#endif /* COIL_EXAMPLES_HTTP_PARSE_H */
