/* libFuzzer target for the request parser of the HTTP example
 * (examples/http_parse.c). Whatever the bytes:
 *
 * - http_parse neither crashes nor reads or writes out of bounds (ASan,
 *   UBSan), and its answers keep their contract: consumed never more than
 *   given, MORE only when all was used, HEAD only for a request that expects
 *   100-continue and then in the body phase, why set exactly when an error
 *   is answered, an end that stays, the target NUL-terminated and the path
 *   inside it, a known method;
 * - its answers do not depend on how the input is cut: the bytes fed in one
 *   piece, in two pieces at a position derived from the data, and (for short
 *   inputs) one byte at a time give the same answers at the same offsets;
 * - it agrees with http_parser (Debian's libhttp-parser-dev, the parser
 *   coil-http had before): on an input it takes without error (up to where
 *   a last request closed the connection), where http_parser also finds no
 *   error, both see the same requests ending at the same offsets, with the
 *   same version and target, the same method where both know it, and the
 *   same keep_alive where http_parser's reading of Connection is not one of
 *   its known quirks (see connection_plain). Where http_parser stops at an
 *   error, the requests both completed before it are compared the same way.
 *
 * Built by tests/CMakeLists.txt with clang only (-fsanitize=fuzzer); ctest
 * runs it as fuzz_http_parse for a bounded time, seeded from
 * tests/fuzz/corpus/http. By hand:
 *   build-asan/tests/fuzz_http_parse -dict=tests/fuzz/http.dict -max_total_time=60 \
 *       SCRATCH tests/fuzz/corpus/http
 * (new inputs go to the first directory named: give it a scratch one first
 * to leave the seeds as they are). */

/* http_parser.h has an enum http_method of its own: renamed here, so that
 * both parsers' headers fit in this one file. */
#define http_method http_parser_method
#include <http_parser.h>
#undef http_method

#include "http_parse.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
const char *__asan_default_options(void);

/* Feeding a byte at a time frees many small pieces: ASan's default
 * quarantine of freed memory (256 MiB) would grow the process to about
 * 1 GB; 16 MiB still catches a use after free of the piece just parsed. */
const char *__asan_default_options(void) {
    return "quarantine_size_mb=16";
}

static void die(const char *what) {
    fprintf(stderr, "fuzz_http_parse: %s\n", what);
    __builtin_trap();
}

/* ---- one parser, fed in pieces ---------------------------------------------- */

/* A request as either parser saw it, for the comparison. */
struct seen {
    size_t end; /* offset just after it */
    int method; /* ours: enum http_method; http_parser's: its own */
    unsigned short major, minor;
    bool keep_alive;
    bool connection_quirk; /* http_parser's keep_alive is not comparable (theirs only) */
    size_t target_len;
    char target[HTTP_TARGET_CAP]; /* the first HTTP_TARGET_CAP - 1 bytes, NUL-terminated */
};

#define SEEN_MAX 256

/* What one way of feeding the input gave. */
struct outcome {
    unsigned requests, heads;
    uint64_t hash;               /* over every answer's fields and the offset where it came */
    enum http_parse_result last; /* HTTP_PARSE_MORE if the input ran out first */
    size_t end;                  /* where the last answer left the input */
    struct seen seen[SEEN_MAX];  /* the first requests */
};

static uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    h *= 0xbf58476d1ce4e5b9ULL;
    return h ^ (h >> 31);
}

/* The contract of a request whose head is complete, and its fields into
 * the hash. */
static void record(struct outcome *o, const struct http_parse *ps, size_t end, bool head) {
    const struct http_request *req = &ps->req;
    size_t cap = sizeof req->target - 1;
    size_t stored = req->target_len < cap ? req->target_len : cap;
    if (req->target[stored] != '\0') die("target not NUL-terminated at its length");
    if (req->target_truncated != (req->target_len > cap)) die("target_truncated is wrong");
    bool root = req->path_len == 1 && req->path[0] == '/';
    uintptr_t path = (uintptr_t)req->path, target = (uintptr_t)req->target;
    bool inside = path >= target && path + req->path_len <= target + stored;
    if (!inside && !root) die("the path is outside the target");
    if ((unsigned)req->method > HTTP_METHOD_OTHER) die("unknown method");
    if (req->chunked && req->content_length != 0) die("chunked with a Content-Length");
    if (ps->why != NULL) die("why set without an error");
    if (head) {
        if (!req->expect_continue) die("HEAD without expect_continue");
        if (http_parse_phase(ps) != HTTP_PHASE_BODY) die("HEAD, then not in the body");
        if (!req->chunked && req->content_length == 0) die("HEAD without a body to come");
        o->heads++;
    } else {
        if (http_parse_phase(ps) != (req->keep_alive ? HTTP_PHASE_IDLE : HTTP_PHASE_DONE))
            die("the phase after a request does not follow keep_alive");
        if (o->requests < SEEN_MAX) {
            struct seen *s = &o->seen[o->requests];
            s->end = end;
            s->method = (int)req->method;
            s->major = req->http_major;
            s->minor = req->http_minor;
            s->keep_alive = req->keep_alive;
            s->target_len = req->target_len;
            memcpy(s->target, req->target, stored + 1);
        }
        o->requests++;
    }
    uint64_t h = o->hash;
    h = mix(h, head);
    h = mix(h, (uint64_t)req->method);
    h = mix(h, (uint64_t)req->http_major << 16 | req->http_minor);
    h = mix(h, (uint64_t)req->keep_alive << 3 | (uint64_t)req->expect_continue << 2 |
                   (uint64_t)req->chunked << 1 | req->target_truncated);
    h = mix(h, req->content_length);
    h = mix(h, req->target_len);
    for (size_t i = 0; i < stored; i++)
        h = mix(h, (unsigned char)req->target[i]);
    h = mix(h, inside ? (uint64_t)(path - target) : UINT64_MAX);
    h = mix(h, req->path_len);
    h = mix(h, head ? 0 : ps->body_bytes);
    o->hash = mix(h, end);
}

/* Feeds data[0..size) cut at the given offsets (ascending, each <= size),
 * each piece copied to a buffer of exactly its size, so that a read past a
 * piece is an ASan error. */
static void feed(const uint8_t *data, size_t size, const size_t *cuts, size_t ncuts,
                 struct outcome *o) {
    struct http_parse ps;
    http_parse_init(&ps);
    o->requests = o->heads = 0;
    o->hash = 0;
    o->last = HTTP_PARSE_MORE;
    o->end = 0;
    size_t lo = 0;
    for (size_t c = 0; c <= ncuts; c++) {
        size_t hi = c < ncuts ? cuts[c] : size;
        if (hi <= lo) continue;
        size_t len = hi - lo;
        char *piece = malloc(len);
        if (!piece) die("out of memory");
        memcpy(piece, data + lo, len);
        size_t off = 0;
        while (off < len) {
            size_t used = (size_t)-1;
            enum http_parse_result r = http_parse(&ps, piece + off, len - off, &used);
            if (used > len - off) die("consumed more than given");
            off += used;
            if (r == HTTP_PARSE_REQUEST || r == HTTP_PARSE_HEAD) {
                record(o, &ps, lo + off, r == HTTP_PARSE_HEAD);
                continue;
            }
            if (r == HTTP_PARSE_MORE) {
                if (off != len) die("MORE without using every byte");
                if (http_parse_phase(&ps) == HTTP_PHASE_DONE) die("MORE when done");
                if (ps.why != NULL) die("why set without an error");
                break;
            }
            if (http_parse_phase(&ps) != HTTP_PHASE_DONE) die("an end that is not DONE");
            if ((r == HTTP_PARSE_CLOSED) != (ps.why == NULL)) die("why set iff an error: not so");
            const char *why = ps.why;
            size_t again;
            if (http_parse(&ps, piece, len, &again) != r || again != 0 || ps.why != why)
                die("an end that does not stay");
            o->last = r;
            o->end = lo + off;
            o->hash = mix(o->hash, why ? strlen(why) : 0);
            free(piece);
            return;
        }
        free(piece);
        lo = hi;
    }
    /* The input ended right after the connection's last request: that is
     * HTTP_PARSE_CLOSED whatever came after, as when more input follows. */
    o->end = size;
    if (http_parse_phase(&ps) == HTTP_PHASE_DONE) {
        size_t again;
        o->last = http_parse(&ps, "x", 1, &again);
        if (o->last != HTTP_PARSE_CLOSED || again != 0) die("DONE after MORE but not CLOSED");
    }
}

static void same(const struct outcome *a, const struct outcome *b, const char *how) {
    if (a->requests == b->requests && a->heads == b->heads && a->hash == b->hash &&
        a->last == b->last && a->end == b->end)
        return;
    fprintf(stderr,
            "fuzz_http_parse: fed %s: %u requests, answer %d at %zu; in one piece: %u "
            "requests, answer %d at %zu\n",
            how, b->requests, (int)b->last, b->end, a->requests, (int)a->last, a->end);
    die("the result depends on how the input is cut");
}

/* ---- http_parser on the same bytes -------------------------------------------- */

struct reference {
    const uint8_t *data;
    unsigned requests;
    size_t error_at; /* SIZE_MAX: no error */
    struct seen cur;
    struct seen seen[SEEN_MAX];
};

static int ref_begin(http_parser *p) {
    struct reference *ref = p->data;
    ref->cur.target_len = 0;
    ref->cur.target[0] = '\0';
    return 0;
}

static int ref_url(http_parser *p, const char *at, size_t len) {
    struct seen *s = &((struct reference *)p->data)->cur;
    size_t cap = sizeof s->target - 1;
    size_t stored = s->target_len < cap ? s->target_len : cap;
    size_t keep = len < cap - stored ? len : cap - stored;
    memcpy(s->target + stored, at, keep);
    s->target[stored + keep] = '\0';
    s->target_len += len;
    return 0;
}

static int ref_headers_complete(http_parser *p) {
    struct seen *s = &((struct reference *)p->data)->cur;
    s->method = (int)p->method;
    s->major = p->http_major;
    s->minor = p->http_minor;
    s->keep_alive = http_should_keep_alive(p) && !p->upgrade;
    /* HTTP/1.0 with both: http_parser keeps the connection, RFC 9112 §9.3
     * (and ours) closes it. */
    s->connection_quirk = (p->flags & F_CONNECTION_KEEP_ALIVE) && (p->flags & F_CONNECTION_CLOSE);
    return 0;
}

static int ref_message_complete(http_parser *p) {
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings ref_settings = {
    .on_message_begin = ref_begin,
    .on_url = ref_url,
    .on_headers_complete = ref_headers_complete,
    .on_message_complete = ref_message_complete,
};

/* http_parser over data[0..len) in one piece, pausing at each request's end. */
static void reference_parse(struct reference *ref, const uint8_t *data, size_t len) {
    http_parser p;
    http_parser_init(&p, HTTP_REQUEST);
    p.data = ref;
    ref->data = data;
    ref->requests = 0;
    ref->error_at = SIZE_MAX;
    size_t off = 0;
    while (off < len) {
        size_t got = http_parser_execute(&p, &ref_settings, (const char *)data + off, len - off);
        off += got;
        enum http_errno err = HTTP_PARSER_ERRNO(&p);
        if (err == HPE_PAUSED) {
            if (ref->requests < SEEN_MAX) {
                ref->seen[ref->requests] = ref->cur;
                ref->seen[ref->requests].end = off;
            }
            ref->requests++;
            http_parser_pause(&p, 0);
            continue;
        }
        if (err != HPE_OK) {
            ref->error_at = off;
            return;
        }
        if (got == 0) return; /* never: without an error it takes every byte */
    }
}

static bool name_is(const uint8_t *s, size_t n, const char *name) {
    size_t len = strlen(name);
    if (n != len) return false;
    for (size_t i = 0; i < n; i++)
        if ((s[i] | 0x20) != name[i]) return false;
    return true;
}

/* Is s[0..n) a proper prefix of one of the options http_parser looks for? */
static bool option_prefix(const uint8_t *s, size_t n) {
    static const char *const options[] = {"close", "keep-alive", "upgrade"};
    for (size_t i = 0; i < 3; i++) {
        size_t len = strlen(options[i]);
        if (n == 0 || n >= len) continue;
        size_t k = 0;
        while (k < n && (s[k] | 0x20) == options[i][k])
            k++;
        if (k == n) return true;
    }
    return false;
}

/* Does http_parser read the Connection fields of the request head at
 * data[0..n) as RFC 9110 does? Not always: it honours Proxy-Connection as
 * Connection, takes a token followed by HTAB ("close\t") or a list that
 * starts with an empty element (", close") as another token, and the comma
 * right after a beginning of one of its options ("keep-al, close") as part
 * of a token. Only heads whose Connection values are tokens separated by
 * commas and spaces without these, and that have no Proxy-Connection, have
 * their keep_alive compared. */
static bool connection_plain(const uint8_t *data, size_t n) {
    size_t i = 0;
    while (i + 1 < n && data[i] == '\r' && data[i + 1] == '\n')
        i += 2;
    bool request_line = true;
    while (i < n) {
        size_t e = i;
        while (e < n && data[e] != '\r' && data[e] != '\n')
            e++;
        if (e == i) return true; /* the end of the head */
        if (!request_line) {
            const uint8_t *colon = memchr(data + i, ':', e - i);
            if (colon) {
                size_t name = (size_t)(colon - (data + i));
                if (name_is(data + i, name, "proxy-connection")) return false;
                if (name_is(data + i, name, "connection")) {
                    size_t v = (size_t)(colon - data) + 1;
                    while (v < e && (data[v] == ' ' || data[v] == '\t'))
                        v++;
                    bool want_token = true;
                    size_t token = v;
                    for (; v < e; v++) {
                        uint8_t c = data[v];
                        if (c == '\t') return false;
                        if (c == ',') {
                            if (want_token) return false;
                            if (option_prefix(data + token, v - token)) return false;
                            want_token = true;
                        } else if (c != ' ') {
                            if (want_token) token = v;
                            want_token = false;
                        }
                    }
                }
            }
        }
        request_line = false;
        i = e;
        while (i < n && (data[i] == '\r' || data[i] == '\n'))
            i++;
    }
    return true;
}

static int reference_method(int ours) {
    switch (ours) {
    case HTTP_METHOD_GET: return HTTP_GET;
    case HTTP_METHOD_HEAD: return HTTP_HEAD;
    case HTTP_METHOD_POST: return HTTP_POST;
    case HTTP_METHOD_PUT: return HTTP_PUT;
    case HTTP_METHOD_DELETE: return HTTP_DELETE;
    case HTTP_METHOD_CONNECT: return HTTP_CONNECT;
    case HTTP_METHOD_OPTIONS: return HTTP_OPTIONS;
    case HTTP_METHOD_TRACE: return HTTP_TRACE;
    case HTTP_METHOD_PATCH: return HTTP_PATCH;
    default: return -1;
    }
}

static void differ(const char *what, unsigned i, const struct seen *a, const struct seen *b) {
    int method = reference_method(a->method);
    fprintf(stderr,
            "fuzz_http_parse: request %u: %s differs: ours ends at %zu, %s HTTP/%u.%u "
            "keep_alive %d target %zu \"%.60s\"; http_parser ends at %zu, %s HTTP/%u.%u "
            "keep_alive %d target %zu \"%.60s\"\n",
            i, what, a->end,
            method >= 0 ? http_method_str((enum http_parser_method)method) : "(other)", a->major,
            a->minor, a->keep_alive, a->target_len, a->target, b->end,
            http_method_str((enum http_parser_method)b->method), b->major, b->minor, b->keep_alive,
            b->target_len, b->target);
    die("http_parser and ours disagree");
}

/* Our answers to the whole input (no error) against http_parser's. */
static void compare(const uint8_t *data, size_t size, const struct outcome *ours) {
    static struct reference ref;
    size_t len = size;
    if (ours->last == HTTP_PARSE_CLOSED) {
        if (ours->requests == 0 || ours->requests > SEEN_MAX) return;
        len = ours->seen[ours->requests - 1].end;
    }
    reference_parse(&ref, data, len);
    unsigned n = ours->requests, m = ref.requests;
    if (n > SEEN_MAX || m > SEEN_MAX) return; /* not kept */
    /* where http_parser found an error: what both completed before it */
    while (n > 0 && ours->seen[n - 1].end > ref.error_at)
        n--;
    if (n != m) {
        fprintf(stderr,
                "fuzz_http_parse: ours sees %u requests, http_parser %u (its error at %zu)\n", n, m,
                ref.error_at);
        die("http_parser and ours disagree on the number of requests");
    }
    size_t start = 0;
    for (unsigned i = 0; i < n; i++) {
        const struct seen *a = &ours->seen[i], *b = &ref.seen[i];
        if (a->end != b->end) differ("the end", i, a, b);
        if (a->major != b->major || a->minor != b->minor) differ("the version", i, a, b);
        if (a->target_len != b->target_len || strcmp(a->target, b->target) != 0)
            differ("the target", i, a, b);
        int method = reference_method(a->method);
        if (method >= 0 && method != b->method) differ("the method", i, a, b);
        if (a->major == 1 && !b->connection_quirk && a->keep_alive != b->keep_alive &&
            connection_plain(data + start, a->end - start))
            differ("keep_alive", i, a, b);
        start = a->end;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static struct outcome whole, split;
    feed(data, size, NULL, 0, &whole);
    if (size > 1) {
        size_t cut = (((size_t)data[0] << 8) | data[size - 1]) % (size + 1);
        feed(data, size, &cut, 1, &split);
        same(&whole, &split, "in two pieces");
    }
    if (size > 1 && size <= 2048) {
        static size_t cuts[2048];
        for (size_t i = 0; i < size; i++)
            cuts[i] = i + 1;
        feed(data, size, cuts, size - 1, &split);
        same(&whole, &split, "a byte at a time");
    }
    if (whole.last == HTTP_PARSE_MORE || whole.last == HTTP_PARSE_CLOSED)
        compare(data, size, &whole);
    return 0;
}
