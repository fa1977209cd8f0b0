/* coil-http's request parser (examples/http_parse.c) on its own, no
 * scheduler: a corpus of request-smuggling shapes, each with the exact
 * answer and reason it must get (CL.TE, TE.CL, TE.TE variants, malformed
 * Content-Length, chunk framing, trailer sections, Host, the request line,
 * obs-fold, bare CR and LF), Expect: 100-continue, and valid requests that
 * must still pass (pipelined, keep-alive rules, the absolute form's path,
 * leading empty lines, the limits at their edge). Every shape is fed whole
 * and one byte at a time, and both must give the same answers at the same
 * offsets. */
#include "coil_test.h"

#include "http_parse.h"

/* What feeding one input gave. */
struct outcome {
    unsigned requests, heads;     /* HTTP_PARSE_REQUEST and HTTP_PARSE_HEAD answers */
    size_t ends[8], head_ends[8]; /* the offsets where they came (the first 8) */
    enum http_parse_result last;  /* HTTP_PARSE_MORE if the input ran out first */
    size_t end;                   /* where the last answer left the input */
    const char *why;
    struct http_request req;     /* the last complete request (its path made an offset) */
    size_t path_off;             /* path - target, or SIZE_MAX for the static "/" */
    uint64_t body_bytes;         /* ps.body_bytes at the last request's end */
    enum http_parse_phase phase; /* at the end */
};

/* Feeds in[0..len) in pieces of step bytes (each copied to a buffer of its
 * own size, so that a read past a piece is caught by ASan or Valgrind). */
static void feed(const char *in, size_t len, size_t step, struct outcome *o) {
    struct http_parse ps;
    http_parse_init(&ps);
    memset(o, 0, sizeof *o);
    o->last = HTTP_PARSE_MORE;
    for (size_t lo = 0; lo < len; lo += step) {
        size_t n = len - lo < step ? len - lo : step;
        char *piece = malloc(n);
        assert_non_null(piece);
        memcpy(piece, in + lo, n);
        size_t off = 0;
        while (off < n) {
            size_t used;
            enum http_parse_result r = http_parse(&ps, piece + off, n - off, &used);
            assert_true(used <= n - off);
            off += used;
            if (r == HTTP_PARSE_REQUEST || r == HTTP_PARSE_HEAD) {
                assert_null(ps.why);
                if (r == HTTP_PARSE_HEAD) {
                    assert_true(ps.req.expect_continue);
                    assert_int_equal(http_parse_phase(&ps), HTTP_PHASE_BODY);
                    if (o->heads < 8) o->head_ends[o->heads] = lo + off;
                    o->heads++;
                    continue;
                }
                if (o->requests < 8) o->ends[o->requests] = lo + off;
                o->requests++;
                o->req = ps.req;
                uintptr_t path = (uintptr_t)ps.req.path, target = (uintptr_t)ps.req.target;
                o->path_off = path >= target && path < target + sizeof ps.req.target
                                  ? (size_t)(path - target)
                                  : SIZE_MAX;
                o->body_bytes = ps.body_bytes;
                continue;
            }
            if (r == HTTP_PARSE_MORE) {
                assert_int_equal(off, n);
                break;
            }
            /* an error, or CLOSED: it stays */
            assert_int_equal(http_parse_phase(&ps), HTTP_PHASE_DONE);
            assert_true((r == HTTP_PARSE_CLOSED) == (ps.why == NULL));
            size_t again;
            assert_int_equal(http_parse(&ps, piece, n, &again), r);
            assert_int_equal(again, 0);
            o->last = r;
            o->end = lo + off;
            o->why = ps.why;
            o->phase = http_parse_phase(&ps);
            free(piece);
            return;
        }
        free(piece);
    }
    o->end = len;
    o->phase = http_parse_phase(&ps);
    assert_null(ps.why);
    if (o->phase == HTTP_PHASE_DONE) {
        size_t again;
        o->last = http_parse(&ps, "x", 1, &again);
        assert_int_equal(o->last, HTTP_PARSE_CLOSED);
        o->end = len;
    }
}

static const char *result_name(enum http_parse_result r) {
    static const char *const names[] = {"MORE",      "REQUEST",         "HEAD",  "BAD_REQUEST",
                                        "TOO_LARGE", "NOT_IMPLEMENTED", "CLOSED"};
    return (unsigned)r < sizeof names / sizeof names[0] ? names[r] : "?";
}

/* A shape and what it must give: the final answer (MORE: the input was all
 * used and no error came; CLOSED: a last request ended the connection), its
 * reason (NULL unless an error) and how many requests came before it. */
struct shape {
    const char *name;
    const char *in;
    size_t len;
    enum http_parse_result last;
    const char *why;
    unsigned requests;
};

#define SHAPE(name, in, last, why, requests)                                                       \
    { name, in, sizeof in - 1, last, why, requests }
#define BAD(name, in, why)     SHAPE(name, in, HTTP_PARSE_BAD_REQUEST, why, 0)
#define OK(name, in, requests) SHAPE(name, in, HTTP_PARSE_MORE, NULL, requests)

/* Feeds a shape whole and a byte at a time; both must give what it says,
 * at the same offsets. Returns the outcome of the whole feed. */
static struct outcome check(const struct shape *s) {
    struct outcome whole, bytes;
    feed(s->in, s->len, s->len ? s->len : 1, &whole);
    feed(s->in, s->len, 1, &bytes);
    bool ok = whole.last == s->last && whole.requests == s->requests &&
              (whole.why == s->why || (whole.why && s->why && strcmp(whole.why, s->why) == 0));
    if (!ok) {
        fail_msg("%s: got %s (%s) after %u requests, want %s (%s) after %u", s->name,
                 result_name(whole.last), whole.why ? whole.why : "no why", whole.requests,
                 result_name(s->last), s->why ? s->why : "no why", s->requests);
    }
    bool same = bytes.last == whole.last && bytes.end == whole.end &&
                bytes.requests == whole.requests && bytes.heads == whole.heads &&
                memcmp(bytes.ends, whole.ends, sizeof whole.ends) == 0 &&
                memcmp(bytes.head_ends, whole.head_ends, sizeof whole.head_ends) == 0 &&
                bytes.why == whole.why && bytes.body_bytes == whole.body_bytes;
    if (!same) {
        fail_msg("%s: a byte at a time gave %s at %zu after %u requests, whole %s at %zu after %u",
                 s->name, result_name(bytes.last), bytes.end, bytes.requests,
                 result_name(whole.last), whole.end, whole.requests);
    }
    return whole;
}

static void check_all(const struct shape *shapes, size_t n) {
    for (size_t i = 0; i < n; i++)
        check(&shapes[i]);
}

#define H11 "HTTP/1.1\r\nHost: a\r\n"

/* Long runs of bytes: more than a chunk line's limit, and more than a
 * trailer section's with what comes around them. */
#define X16          "xxxxxxxxxxxxxxxx"
#define X256         X16 X16 X16 X16 X16 X16 X16 X16 X16 X16 X16 X16 X16 X16 X16 X16
#define X4096        X256 X256 X256 X256 X256 X256 X256 X256 X256 X256 X256 X256 X256 X256 X256 X256
#define CHUNK_LINE_X X4096
#define TRAILER_X    X4096 X4096
#define POST         "POST / " H11

/* ---- request smuggling: Content-Length and Transfer-Encoding together ------ */

static void test_cl_te(void **state) {
    (void)state;
    static const struct shape shapes[] = {
        BAD("CL.TE", POST "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG",
            "Transfer-Encoding with Content-Length"),
        BAD("TE.CL",
            POST
            "Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n",
            "Transfer-Encoding with Content-Length"),
        BAD("CL.TE, TE not chunked",
            POST "Content-Length: 4\r\nTransfer-Encoding: gzip\r\n\r\nabcd",
            "Transfer-Encoding with Content-Length"),
        BAD("CL.TE, TE with whitespace before the colon",
            POST "Content-Length: 4\r\nTransfer-Encoding : chunked\r\n\r\n",
            "whitespace before colon"),
        BAD("TE.CL, CL with whitespace before the colon",
            POST "Transfer-Encoding: chunked\r\nContent-Length : 3\r\n\r\n",
            "whitespace before colon"),
    };
    check_all(shapes, sizeof shapes / sizeof shapes[0]);
}

/* ---- TE.TE: a Transfer-Encoding one side may not see as chunked ------------- */

static void test_te_te(void **state) {
    (void)state;
    static const struct shape shapes[] = {
        OK("Chunked", POST "Transfer-Encoding: Chunked\r\n\r\n0\r\n\r\n", 1),
        OK("CHUNKED", POST "Transfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n", 1),
        OK("whitespace around the value", POST "Transfer-Encoding: \t chunked \t\r\n\r\n0\r\n\r\n",
           1),
        BAD("whitespace before colon", POST "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",
            "whitespace before colon"),
        BAD("tab before colon", POST "Transfer-Encoding\t: chunked\r\n\r\n0\r\n\r\n",
            "whitespace before colon"),
        BAD("space inside the name", POST "Transfer Encoding: chunked\r\n\r\n0\r\n\r\n",
            "whitespace in field name"),
        BAD("tab inside the name", POST "Transfer-\tEncoding: chunked\r\n\r\n0\r\n\r\n",
            "whitespace in field name"),
        BAD("xchunked", POST "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
            "final transfer coding is not chunked"),
        BAD("chunkedx", POST "Transfer-Encoding: chunkedx\r\n\r\n0\r\n\r\n",
            "final transfer coding is not chunked"),
        BAD("identity", POST "Transfer-Encoding: identity\r\n\r\n",
            "final transfer coding is not chunked"),
        BAD("chunked, identity", POST "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
            "final transfer coding is not chunked"),
        BAD("duplicate TE lines, chunked not last",
            POST "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",
            "final transfer coding is not chunked"),
        SHAPE("duplicate TE lines, chunked last",
              POST "Transfer-Encoding: identity\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
              HTTP_PARSE_NOT_IMPLEMENTED, "transfer coding other than chunked", 0),
        SHAPE("gzip, chunked", POST "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
              HTTP_PARSE_NOT_IMPLEMENTED, "transfer coding other than chunked", 0),
        SHAPE("a coding with parameters, then chunked",
              POST "Transfer-Encoding: x;a=1;b = \"q\\\"d\" , chunked\r\n\r\n",
              HTTP_PARSE_NOT_IMPLEMENTED, "transfer coding other than chunked", 0),
        BAD("chunked twice in one line", POST "Transfer-Encoding: chunked, chunked\r\n\r\n",
            "chunked applied twice"),
        BAD("chunked twice in two lines",
            POST "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
            "chunked applied twice"),
        BAD("chunked with a parameter", POST "Transfer-Encoding: chunked;q=1\r\n\r\n",
            "parameters on chunked"),
        BAD("empty list member before", POST "Transfer-Encoding: ,chunked\r\n\r\n",
            "empty Transfer-Encoding list member"),
        BAD("empty list member after", POST "Transfer-Encoding: chunked,\r\n\r\n",
            "empty Transfer-Encoding list member"),
        BAD("empty list member between", POST "Transfer-Encoding: gzip, ,chunked\r\n\r\n",
            "empty Transfer-Encoding list member"),
        BAD("empty value", POST "Transfer-Encoding:\r\n\r\n", "empty Transfer-Encoding"),
        BAD("quoted coding", POST "Transfer-Encoding: \"chunked\"\r\n\r\n",
            "malformed Transfer-Encoding"),
        BAD("two codings without a comma", POST "Transfer-Encoding: gzip chunked\r\n\r\n",
            "malformed Transfer-Encoding"),
        BAD("a parameter without a value", POST "Transfer-Encoding: gzip;a, chunked\r\n\r\n",
            "malformed Transfer-Encoding"),
        BAD("obs-fold continuing TE", POST "Transfer-Encoding: identity\r\n chunked\r\n\r\n",
            "obs-fold"),
        BAD("obs-fold with tab after an empty TE", POST "Transfer-Encoding:\r\n\tchunked\r\n\r\n",
            "empty Transfer-Encoding"),
        BAD("obs-fold before TE", POST "X: y\r\n Transfer-Encoding: chunked\r\n\r\n", "obs-fold"),
        BAD("NUL in the value", POST "Transfer-Encoding: chunked\0\r\n\r\n",
            "control character in field value"),
        BAD("NUL before the value", POST "Transfer-Encoding: \0chunked\r\n\r\n",
            "control character in field value"),
        BAD("vertical tab in the value", POST "Transfer-Encoding: chunked\v\r\n\r\n",
            "control character in field value"),
        BAD("bare CR in the value", POST "Transfer-Encoding: chun\rked\r\n\r\n", "bare CR"),
        BAD("bare CR after the value", POST "Transfer-Encoding: chunked\rX: y\r\n\r\n", "bare CR"),
        BAD("bare LF after the value", POST "Transfer-Encoding: chunked\nX: y\r\n\r\n", "bare LF"),
        BAD("bare LF in the value", POST "Transfer-Encoding: chun\nked\r\n\r\n", "bare LF"),
        BAD("TE in HTTP/1.0", "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
            "Transfer-Encoding in HTTP/1.0"),
    };
    check_all(shapes, sizeof shapes / sizeof shapes[0]);
}

/* ---- Content-Length ----------------------------------------------------------- */

static void test_content_length(void **state) {
    (void)state;
    static const struct shape shapes[] = {
        BAD("+5", POST "Content-Length: +5\r\n\r\nhello", "invalid Content-Length"),
        BAD("-1", POST "Content-Length: -1\r\n\r\n", "invalid Content-Length"),
        BAD("5 5", POST "Content-Length: 5 5\r\n\r\nhello", "invalid Content-Length"),
        BAD("5,5", POST "Content-Length: 5,5\r\n\r\nhello", "invalid Content-Length"),
        BAD("5, 5", POST "Content-Length: 5, 5\r\n\r\nhello", "invalid Content-Length"),
        BAD("two lines, same value", POST "Content-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
            "repeated Content-Length"),
        BAD("two lines, other values", POST "Content-Length: 5\r\ncontent-length: 6\r\n\r\n",
            "repeated Content-Length"),
        BAD("overflow", POST "Content-Length: 99999999999999999999\r\n\r\n",
            "Content-Length overflows"),
        BAD("2^64", POST "Content-Length: 18446744073709551616\r\n\r\n",
            "Content-Length overflows"),
        OK("2^64 - 1: a body that never ends", POST "Content-Length: 18446744073709551615\r\n\r\n",
           0),
        BAD("hex", POST "Content-Length: 0x5\r\n\r\nhello", "invalid Content-Length"),
        BAD("hex digits", POST "Content-Length: a\r\n\r\n", "invalid Content-Length"),
        BAD("empty", POST "Content-Length:\r\n\r\n", "invalid Content-Length"),
        BAD("only whitespace", POST "Content-Length:  \r\n\r\n", "invalid Content-Length"),
        BAD("a quoted number", POST "Content-Length: \"5\"\r\n\r\n", "invalid Content-Length"),
        BAD("obs-fold continuing it", POST "Content-Length: 5\r\n 5\r\n\r\nhello", "obs-fold"),
        OK("whitespace around", POST "Content-Length: \t 5 \t\r\n\r\nhello", 1),
        OK("leading zeros", POST "Content-Length: 005\r\n\r\nhello", 1),
        OK("zero", POST "Content-Length: 0\r\n\r\n", 1),
        OK("a body, then the next request", POST "Content-Length: 5\r\n\r\nhelloGET / " H11 "\r\n",
           2),
    };
    check_all(shapes, sizeof shapes / sizeof shapes[0]);
}

/* ---- chunk framing and the trailer section ----------------------------------- */

#define CHUNKED POST "Transfer-Encoding: chunked\r\n\r\n"

static void test_chunks(void **state) {
    (void)state;
    static const struct shape shapes[] = {
        OK("chunks", CHUNKED "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n", 1),
        OK("leading zeros, hex", CHUNKED "00A\r\n0123456789\r\n000\r\n\r\n", 1),
        BAD("a space after the size", CHUNKED "5 \r\nhello\r\n0\r\n\r\n",
            "whitespace at the end of a chunk line"),
        BAD("a tab after the size", CHUNKED "5\t\r\nhello\r\n0\r\n\r\n",
            "whitespace at the end of a chunk line"),
        BAD("a space after the last chunk's size", CHUNKED "0 \r\n\r\n",
            "whitespace at the end of a chunk line"),
        BAD("a space before the size", CHUNKED " 5\r\nhello\r\n0\r\n\r\n", "invalid chunk size"),
        BAD("no CRLF after the data", CHUNKED "5\r\nhelloX\r\n0\r\n\r\n",
            "chunk data not followed by CRLF"),
        BAD("CR but no LF after the data", CHUNKED "5\r\nhello\rX0\r\n\r\n",
            "chunk data not followed by CRLF"),
        BAD("LF alone after the data", CHUNKED "5\r\nhello\n0\r\n\r\n",
            "chunk data not followed by CRLF"),
        BAD("the data one byte longer than its size", CHUNKED "4\r\nhello\r\n0\r\n\r\n",
            "chunk data not followed by CRLF"),
        BAD("0x5", CHUNKED "0x5\r\nhello\r\n0\r\n\r\n", "invalid chunk size"),
        BAD("a sign", CHUNKED "+5\r\nhello\r\n0\r\n\r\n", "invalid chunk size"),
        BAD("no size", CHUNKED "\r\nhello\r\n0\r\n\r\n", "invalid chunk size"),
        BAD("overflow", CHUNKED "10000000000000000\r\n", "chunk size overflows"),
        OK("2^64 - 1: a chunk that never ends", CHUNKED "ffffffffffffffff\r\n", 0),
        BAD("bare LF after the size", CHUNKED "5\nhello\r\n0\r\n\r\n", "bare LF"),
        BAD("bare CR after the size", CHUNKED "5\rhello\r\n0\r\n\r\n", "bare CR"),
        OK("extension without value", CHUNKED "5;foo\r\nhello\r\n0;bar\r\n\r\n", 1),
        OK("extension with value", CHUNKED "5;foo=bar\r\nhello\r\n0\r\n\r\n", 1),
        OK("extensions with whitespace", CHUNKED "5 ; a = b ;c\t;d=e\r\nhello\r\n0\r\n\r\n", 1),
        OK("quoted-string extension", CHUNKED "5;a=\"b c;d=\\\"e\\\\\"\r\nhello\r\n0\r\n\r\n", 1),
        BAD("';' alone", CHUNKED "5;\r\nhello\r\n0\r\n\r\n", "invalid chunk extension"),
        BAD("'=' without value", CHUNKED "5;a=\r\nhello\r\n0\r\n\r\n", "invalid chunk extension"),
        BAD("no name", CHUNKED "5;=b\r\nhello\r\n0\r\n\r\n", "invalid chunk extension"),
        BAD("whitespace after the value", CHUNKED "5;a=b \r\nhello\r\n0\r\n\r\n",
            "whitespace at the end of a chunk line"),
        BAD("whitespace after the name", CHUNKED "5;a \r\nhello\r\n0\r\n\r\n",
            "whitespace at the end of a chunk line"),
        BAD("unterminated quoted-string", CHUNKED "5;a=\"b\r\nhello\r\n0\r\n\r\n",
            "invalid chunk extension"),
        BAD("a value after a quoted-string", CHUNKED "5;a=\"b\"c\r\nhello\r\n0\r\n\r\n",
            "invalid chunk extension"),
        BAD("a NUL in an extension", CHUNKED "5;a\0\r\nhello\r\n0\r\n\r\n",
            "invalid chunk extension"),
        BAD("chunk line too long", CHUNKED "5;a=\"" CHUNK_LINE_X "\"\r\nhello\r\n0\r\n\r\n",
            "chunk line too long"),
        OK("trailer fields", CHUNKED "5\r\nhello\r\n0\r\nX-Sum: 1\r\nY:\r\n\r\n", 1),
        OK("a trailer field that would be framing", CHUNKED "0\r\nContent-Length: 5\r\n\r\n", 1),
        BAD("space inside a trailer field name", CHUNKED "0\r\nX Sum: 1\r\n\r\n",
            "whitespace in field name"),
        BAD("whitespace before a trailer colon", CHUNKED "0\r\nX-Sum : 1\r\n\r\n",
            "whitespace before colon"),
        BAD("obs-fold in the trailer", CHUNKED "0\r\nX-Sum: 1\r\n 2\r\n\r\n", "obs-fold"),
        BAD("whitespace before the first trailer field", CHUNKED "0\r\n X: 1\r\n\r\n",
            "whitespace before the first field"),
        BAD("a control character in a trailer value", CHUNKED "0\r\nX: \x01\r\n\r\n",
            "control character in field value"),
        BAD("bare LF ending the trailer section", CHUNKED "0\r\n\n", "bare LF"),
        BAD("bare CR ending the trailer section", CHUNKED "0\r\n\rX", "bare CR"),
        SHAPE("trailer section too large", CHUNKED "0\r\nX: " TRAILER_X "\r\n\r\n",
              HTTP_PARSE_TOO_LARGE, "trailer section too large", 0),
        OK("chunks, then the next request", CHUNKED "3\r\nabc\r\n0\r\n\r\nGET / " H11 "\r\n", 2),
    };
    check_all(shapes, sizeof shapes / sizeof shapes[0]);
}

/* ---- Host (RFC 9112 §3.2) ------------------------------------------------------ */

static void test_host(void **state) {
    (void)state;
    static const struct shape shapes[] = {
        BAD("missing in HTTP/1.1", "GET / HTTP/1.1\r\n\r\n", "no Host"),
        SHAPE("missing in HTTP/1.0", "GET / HTTP/1.0\r\n\r\n", HTTP_PARSE_CLOSED, NULL, 1),
        BAD("twice", "GET / HTTP/1.1\r\nHost: a\r\nHost: a\r\n\r\n", "more than one Host"),
        BAD("twice in HTTP/1.0", "GET / HTTP/1.0\r\nHost: a\r\nhost: b\r\n\r\n",
            "more than one Host"),
        BAD("a b", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", "invalid Host"),
        BAD("ex ample", "GET / HTTP/1.1\r\nHost: ex ample\r\n\r\n", "invalid Host"),
        BAD("two hosts, comma", "GET / HTTP/1.1\r\nHost: a, b\r\n\r\n", "invalid Host"),
        BAD("userinfo", "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", "invalid Host"),
        BAD("a path", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n", "invalid Host"),
        BAD("bad port", "GET / HTTP/1.1\r\nHost: a:8x\r\n\r\n", "invalid Host"),
        BAD("port out of range", "GET / HTTP/1.1\r\nHost: a:65536\r\n\r\n", "invalid Host"),
        BAD("two ports", "GET / HTTP/1.1\r\nHost: a:80:80\r\n\r\n", "invalid Host"),
        BAD("unclosed IP literal", "GET / HTTP/1.1\r\nHost: [::1\r\n\r\n", "invalid Host"),
        BAD("not IPv6", "GET / HTTP/1.1\r\nHost: [::g]\r\n\r\n", "invalid Host"),
        BAD("IPv6 with a zone", "GET / HTTP/1.1\r\nHost: [fe80::1%25eth0]\r\n\r\n", "invalid Host"),
        BAD("text after the literal", "GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n", "invalid Host"),
        BAD("a bad percent-encoding", "GET / HTTP/1.1\r\nHost: a%2g\r\n\r\n", "invalid Host"),
        BAD("a cut percent-encoding", "GET / HTTP/1.1\r\nHost: a%2\r\n\r\n", "invalid Host"),
        BAD("obs-text", "GET / HTTP/1.1\r\nHost: \xc3\xa9\r\n\r\n", "invalid Host"),
        OK("[::1]:80", "GET / HTTP/1.1\r\nHost: [::1]:80\r\n\r\n", 1),
        OK("[::ffff:1.2.3.4]", "GET / HTTP/1.1\r\nHost: [::ffff:1.2.3.4]\r\n\r\n", 1),
        OK("IPvFuture", "GET / HTTP/1.1\r\nHost: [v1.x:y]\r\n\r\n", 1),
        OK("IPv4 and port", "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n", 1),
        OK("reg-name with sub-delims and percent",
           "GET / HTTP/1.1\r\nHost: a-b.c_d~!$&'()*+,;=%2e\r\n\r\n", 1),
        OK("empty", "GET / HTTP/1.1\r\nHost:\r\n\r\n", 1),
        OK("empty port", "GET / HTTP/1.1\r\nHost: a:\r\n\r\n", 1),
        OK("whitespace around", "GET / HTTP/1.1\r\nHost: \ta:80 \t\r\n\r\n", 1),
        OK("the name in any case", "GET / HTTP/1.1\r\nhOsT: a\r\n\r\n", 1),
        OK("with the absolute form", "GET http://b/ HTTP/1.1\r\nHost: a\r\n\r\n", 1),
    };
    check_all(shapes, sizeof shapes / sizeof shapes[0]);
}

/* ---- the request line and field lines -------------------------------------------- */

static void test_request_line(void **state) {
    (void)state;
    static const struct shape shapes[] = {
        BAD("two spaces before the target", "GET  / " H11 "\r\n", "invalid request line"),
        BAD("two spaces after the target", "GET /  " H11 "\r\n", "invalid HTTP version"),
        BAD("space before CRLF", "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", "invalid HTTP version"),
        BAD("tab as a separator", "GET\t/ " H11 "\r\n", "invalid method"),
        BAD("no version", "GET /\r\nHost: a\r\n\r\n", "invalid byte in request target"),
        BAD("lowercase version", "GET / http/1.1\r\nHost: a\r\n\r\n", "invalid HTTP version"),
        BAD("two-digit version", "GET / HTTP/1.10\r\nHost: a\r\n\r\n", "invalid HTTP version"),
        BAD("a DEL in the target", "GET /\x7f " H11 "\r\n", "invalid byte in request target"),
        BAD("obs-text in the target", "GET /\xc3\xa9 " H11 "\r\n",
            "invalid byte in request target"),
        BAD("a target without a form", "GET ?a " H11 "\r\n", "invalid request target"),
        BAD("asterisk with GET", "GET * " H11 "\r\n", "asterisk-form without OPTIONS"),
        BAD("asterisk and more", "OPTIONS *x " H11 "\r\n", "invalid request target"),
        BAD("authority-form with GET", "GET a:80 " H11 "\r\n", "authority-form without CONNECT"),
        BAD("a scheme without //", "GET http:x " H11 "\r\n", "invalid request target"),
        BAD("a scheme alone", "GET http " H11 "\r\n", "invalid request target"),
        BAD("CONNECT with a path", "CONNECT / " H11 "\r\n", "CONNECT without authority-form"),
        BAD("CONNECT without port", "CONNECT a " H11 "\r\n", "CONNECT without authority-form"),
        BAD("CONNECT with an empty port", "CONNECT a: " H11 "\r\n",
            "CONNECT without authority-form"),
        BAD("CONNECT with a URL", "CONNECT http://a/ " H11 "\r\n",
            "CONNECT without authority-form"),
        BAD("a method with a bad byte", "G@T / " H11 "\r\n", "invalid method"),
        BAD("bare LF ending the request line", "GET / HTTP/1.1\nHost: a\r\n\r\n", "bare LF"),
        BAD("bare CR ending the request line", "GET / HTTP/1.1\rHost: a\r\n\r\n", "bare CR"),
        BAD("a bare LF before the request line", "\nGET / " H11 "\r\n", "bare LF"),
        BAD("a bare CR before the request line", "\rGET / " H11 "\r\n", "bare CR"),
        BAD("whitespace before the request line", " GET / " H11 "\r\n", "invalid method"),
        BAD("whitespace before the first field", "GET / HTTP/1.1\r\n Host: a\r\n\r\n",
            "whitespace before the first field"),
        BAD("a field line without a colon", "GET / " H11 "Bad Header\r\n\r\n",
            "whitespace in field name"),
        BAD("a name without a colon", "GET / " H11 "Bad\r\n\r\n", "field line without colon"),
        BAD("an empty name", "GET / " H11 ": x\r\n\r\n", "empty field name"),
        BAD("a bad byte in a name", "GET / " H11 "X(y): z\r\n\r\n", "invalid byte in field name"),
        BAD("a bad first byte of a name", "GET / " H11 "@: z\r\n\r\n",
            "invalid byte in field name"),
        BAD("bare LF ending the head", "GET / " H11 "\n", "bare LF"),
        BAD("bare CR ending the head", "GET / " H11 "\rX", "bare CR"),
        OK("a field with obs-text and tabs", "GET / " H11 "X: a\t\xff b\r\n\r\n", 1),
        OK("every token byte in a name", "GET / " H11 "!#$%&'*+-.^_`|~09AZaz: v\r\n\r\n", 1),
        OK("leading empty lines", "\r\n\r\nGET / " H11 "\r\n", 1),
        OK("OPTIONS *", "OPTIONS * " H11 "\r\n", 1),
        OK("a method of our own", "BREW /pot " H11 "\r\n", 1),
        SHAPE("CONNECT host:port", "CONNECT a:443 " H11 "\r\n", HTTP_PARSE_CLOSED, NULL, 1),
        SHAPE("CONNECT [v6]:port", "CONNECT [::1]:443 " H11 "\r\n", HTTP_PARSE_CLOSED, NULL, 1),
        SHAPE("HTTP/2.0 is parsed (and closes)", "GET / HTTP/2.0\r\n\r\n", HTTP_PARSE_CLOSED, NULL,
              1),
        SHAPE("HTTP/0.9 in HTTP/1 form", "GET / HTTP/0.9\r\n\r\n", HTTP_PARSE_CLOSED, NULL, 1),
    };
    check_all(shapes, sizeof shapes / sizeof shapes[0]);
}

/* ---- valid requests: what each says ------------------------------------------------ */

static struct outcome check_ok(const char *name, const char *in, unsigned requests) {
    struct shape s = {name, in, strlen(in), HTTP_PARSE_MORE, NULL, requests};
    return check(&s);
}

static struct outcome check_closed(const char *name, const char *in, unsigned requests) {
    struct shape s = {name, in, strlen(in), HTTP_PARSE_CLOSED, NULL, requests};
    return check(&s);
}

static void test_keep_alive(void **state) {
    (void)state;
    struct outcome o = check_ok("1.1", "GET / " H11 "\r\n", 1);
    assert_true(o.req.keep_alive);
    assert_int_equal(o.req.http_major, 1);
    assert_int_equal(o.req.http_minor, 1);
    o = check_closed("1.1 close", "GET / " H11 "Connection: close\r\n\r\nGET / " H11 "\r\n", 1);
    assert_false(o.req.keep_alive);
    o = check_closed("1.1 close in a list", "GET / " H11 "Connection: foo, ,\tCLOSE \r\n\r\n", 1);
    assert_false(o.req.keep_alive);
    o = check_ok("1.1 closed, not close", "GET / " H11 "Connection: closed\r\n\r\n", 1);
    assert_true(o.req.keep_alive);
    o = check_closed("1.0", "GET / HTTP/1.0\r\n\r\n", 1);
    assert_false(o.req.keep_alive);
    o = check_ok("1.0 keep-alive", "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", 1);
    assert_true(o.req.keep_alive);
    assert_int_equal(o.req.http_minor, 0);
    o = check_closed("1.0 keep-alive and close",
                     "GET / HTTP/1.0\r\nConnection: keep-alive\r\nConnection: close\r\n\r\n", 1);
    assert_false(o.req.keep_alive);
    o = check_closed("upgrade", "GET / " H11 "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
                     1);
    assert_false(o.req.keep_alive);
    o = check_ok("Upgrade without Connection: upgrade", "GET / " H11 "Upgrade: websocket\r\n\r\n",
                 1);
    assert_true(o.req.keep_alive);
    o = check_ok("an empty Upgrade", "GET / " H11 "Upgrade:  \r\nConnection: upgrade\r\n\r\n", 1);
    assert_true(o.req.keep_alive);
    o = check_closed("CONNECT", "CONNECT a:1 " H11 "Content-Length: 5\r\n\r\n", 1);
    assert_false(o.req.keep_alive);
    assert_int_equal(o.req.method, HTTP_METHOD_CONNECT);
    assert_int_equal(o.req.content_length, 0); /* no content: the tunnel would follow */

    static const struct shape bad[] = {
        BAD("a malformed Connection", "GET / " H11 "Connection: close x\r\n\r\n",
            "malformed Connection"),
        BAD("a quoted Connection", "GET / " H11 "Connection: \"close\"\r\n\r\n",
            "malformed Connection"),
    };
    check_all(bad, sizeof bad / sizeof bad[0]);
}

static void test_pipelined(void **state) {
    (void)state;
    static const char in[] = "GET /a " H11 "\r\n"
                             "POST /b " H11 "Content-Length: 3\r\n\r\nxyz"
                             "PUT /c " H11 "Transfer-Encoding: chunked\r\n\r\n1\r\nq\r\n0\r\n\r\n"
                             "HEAD /d HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                             "GET /never " H11 "\r\n";
    struct outcome o = check_closed("pipelined", in, 4);
    size_t a = sizeof "GET /a " H11 "\r\n" - 1;
    size_t b = a + sizeof "POST /b " H11 "Content-Length: 3\r\n\r\nxyz" - 1;
    size_t c = b + sizeof "PUT /c " H11 "Transfer-Encoding: chunked\r\n\r\n1\r\nq\r\n0\r\n\r\n" - 1;
    size_t d = c + sizeof "HEAD /d HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" - 1;
    assert_int_equal(o.ends[0], a);
    assert_int_equal(o.ends[1], b);
    assert_int_equal(o.ends[2], c);
    assert_int_equal(o.ends[3], d);
    assert_int_equal(o.req.method, HTTP_METHOD_HEAD);
    assert_string_equal(o.req.target, "/d");
}

static void test_request_fields(void **state) {
    (void)state;
    struct outcome o = check_ok("origin form", "GET /p/q?x=1#f " H11 "\r\n", 1);
    assert_int_equal(o.req.method, HTTP_METHOD_GET);
    assert_string_equal(o.req.target, "/p/q?x=1#f");
    assert_int_equal(o.req.target_len, 10);
    assert_int_equal(o.path_off, 0);
    assert_int_equal(o.req.path_len, 4);

    o = check_ok("absolute form", "GET http://h:80/p/q?x " H11 "\r\n", 1);
    assert_string_equal(o.req.target, "http://h:80/p/q?x");
    assert_int_equal(o.path_off, 11);
    assert_int_equal(o.req.path_len, 4);
    o = check_ok("absolute form, no path", "GET https://h " H11 "\r\n", 1);
    assert_int_equal(o.path_off, SIZE_MAX);
    assert_int_equal(o.req.path_len, 1);
    o = check_ok("absolute form, a query and no path", "GET svn+ssh://h?/x " H11 "\r\n", 1);
    assert_int_equal(o.path_off, SIZE_MAX);
    o = check_ok("OPTIONS *", "OPTIONS * " H11 "\r\n", 1);
    assert_int_equal(o.req.method, HTTP_METHOD_OPTIONS);
    assert_int_equal(o.req.path_len, 0);

    static const struct {
        const char *line;
        enum http_method method;
    } methods[] = {
        {"GET / ", HTTP_METHOD_GET},        {"HEAD / ", HTTP_METHOD_HEAD},
        {"POST / ", HTTP_METHOD_POST},      {"PUT / ", HTTP_METHOD_PUT},
        {"DELETE / ", HTTP_METHOD_DELETE},  {"OPTIONS / ", HTTP_METHOD_OPTIONS},
        {"TRACE / ", HTTP_METHOD_TRACE},    {"PATCH / ", HTTP_METHOD_PATCH},
        {"get / ", HTTP_METHOD_OTHER},      {"GETS / ", HTTP_METHOD_OTHER},
        {"GE / ", HTTP_METHOD_OTHER},       {"OPTIONSX / ", HTTP_METHOD_OTHER},
        {"PROPFIND / ", HTTP_METHOD_OTHER},
    };
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        char in[128];
        snprintf(in, sizeof in, "%s" H11 "\r\n", methods[i].line);
        o = check_ok(methods[i].line, in, 1);
        assert_int_equal(o.req.method, methods[i].method);
    }

    o = check_ok("chunked", CHUNKED "0\r\n\r\n", 1);
    assert_true(o.req.chunked);
    assert_int_equal(o.req.content_length, 0);
    o = check_ok("Content-Length", POST "Content-Length: 3\r\n\r\nabc", 1);
    assert_false(o.req.chunked);
    assert_int_equal(o.req.content_length, 3);
    assert_int_equal(o.body_bytes, 3);
    o = check_ok("body_bytes counts chunk framing and trailers",
                 CHUNKED "3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\n", 1);
    assert_int_equal(o.body_bytes, sizeof "3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\n" - 1);
}

/* ---- Expect: 100-continue ------------------------------------------------------------ */

static void test_expect(void **state) {
    (void)state;
    static const char head[] = POST "Expect: 100-continue\r\nContent-Length: 5\r\n\r\n";
    struct outcome o = check_ok("100-continue with a body",
                                POST "Expect: 100-continue\r\n"
                                     "Content-Length: 5\r\n\r\nhello",
                                1);
    assert_int_equal(o.heads, 1);
    assert_int_equal(o.head_ends[0], sizeof head - 1);
    assert_int_equal(o.ends[0], sizeof head - 1 + 5);
    assert_true(o.req.expect_continue);

    o = check_ok("100-Continue, chunked",
                 POST "Expect: 100-Continue \r\n"
                      "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                 1);
    assert_int_equal(o.heads, 1);

    o = check_ok("100-continue, the body not yet here", head, 0);
    assert_int_equal(o.heads, 1);
    assert_int_equal(o.phase, HTTP_PHASE_BODY);

    o = check_ok("100-continue without a body", "GET / " H11 "Expect: 100-continue\r\n\r\n", 1);
    assert_int_equal(o.heads, 0);
    assert_false(o.req.expect_continue);
    o = check_ok("100-continue with Content-Length 0",
                 POST "Expect: 100-continue\r\nContent-Length: 0\r\n\r\n", 1);
    assert_int_equal(o.heads, 0);

    o = check_closed("100-continue in HTTP/1.0 is ignored",
                     "POST / HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\nhello",
                     1);
    assert_int_equal(o.heads, 0);
    assert_false(o.req.expect_continue);

    o = check_ok("another expectation is ignored",
                 POST "Expect: 100-continue-x\r\nContent-Length: 1\r\n\r\nx", 1);
    assert_int_equal(o.heads, 0);
    o = check_ok("100-continue with a parameter is another",
                 POST "Expect: 100-continue; a\r\nContent-Length: 1\r\n\r\nx", 1);
    assert_int_equal(o.heads, 0);

    o = check_ok("each request that expects it",
                 POST "Expect: 100-continue\r\nContent-Length: 1\r\n\r\nx"
                      "GET / " H11 "\r\n" POST "Expect: 100-continue\r\nContent-Length: 1\r\n\r\ny",
                 3);
    assert_int_equal(o.heads, 2);
}

/* ---- the limits, at their edge ------------------------------------------------------ */

/* A head of exactly len bytes: "GET / HTTP/1.1\r\nHost: a\r\nX: xxx...\r\n\r\n". */
static char *head_of(size_t len) {
    static const char start[] = "GET / " H11 "X: ";
    char *h = malloc(len + 1);
    assert_non_null(h);
    memcpy(h, start, sizeof start - 1);
    memset(h + sizeof start - 1, 'x', len - (sizeof start - 1) - 4);
    memcpy(h + len - 4, "\r\n\r\n", 5);
    return h;
}

static void test_limits(void **state) {
    (void)state;
    char *h = head_of(HTTP_HEAD_MAX);
    check_ok("a head of HTTP_HEAD_MAX bytes", h, 1);
    free(h);
    h = head_of(HTTP_HEAD_MAX + 1);
    struct shape s = {"a head one byte over",   h, HTTP_HEAD_MAX + 1, HTTP_PARSE_TOO_LARGE,
                      "request head too large", 0};
    struct outcome o = check(&s);
    assert_int_equal(o.end, HTTP_HEAD_MAX);
    /* and with only HTTP_HEAD_MAX of its bytes given: already too large */
    s.len = HTTP_HEAD_MAX;
    check(&s);
    free(h);

    /* empty lines before the request line count */
    h = head_of(HTTP_HEAD_MAX);
    char *lead = malloc(HTTP_HEAD_MAX + 3);
    assert_non_null(lead);
    memcpy(lead, "\r\n", 2);
    memcpy(lead + 2, h, HTTP_HEAD_MAX + 1);
    s = (struct shape){"an empty line, then a head of HTTP_HEAD_MAX",
                       lead,
                       HTTP_HEAD_MAX + 2,
                       HTTP_PARSE_TOO_LARGE,
                       "request head too large",
                       0};
    check(&s);
    free(lead);

    /* an error before the limit wins over the size */
    h[100] = '\0';
    s = (struct shape){"a NUL early in a head too large",  h, HTTP_HEAD_MAX, HTTP_PARSE_BAD_REQUEST,
                       "control character in field value", 0};
    check(&s);
    free(h);

    /* a target longer than HTTP_TARGET_CAP - 1 bytes is kept truncated */
    char line[3000];
    int n = snprintf(line, sizeof line, "GET /");
    memset(line + n, 'p', 2000);
    snprintf(line + n + 2000, sizeof line - (size_t)n - 2000, "?q " H11 "\r\n");
    o = check_ok("a long target", line, 1);
    assert_true(o.req.target_truncated);
    assert_int_equal(o.req.target_len, 2003);
    assert_int_equal(strlen(o.req.target), HTTP_TARGET_CAP - 1);
    assert_int_equal(o.req.path_len, HTTP_TARGET_CAP - 1);
    snprintf(line + n + HTTP_TARGET_CAP - 2, sizeof line - (size_t)n - HTTP_TARGET_CAP + 2,
             " " H11 "\r\n");
    o = check_ok("a target of HTTP_TARGET_CAP - 1 bytes", line, 1);
    assert_false(o.req.target_truncated);
    assert_int_equal(o.req.target_len, HTTP_TARGET_CAP - 1);
    assert_int_equal(strlen(o.req.target), HTTP_TARGET_CAP - 1);

    /* a chunk size line of exactly HTTP_CHUNK_LINE_MAX bytes, and one more */
    static const char prefix[] = CHUNKED "1;a=";
    size_t max = sizeof prefix - 1 + HTTP_CHUNK_LINE_MAX;
    char *ck = malloc(max + 64);
    assert_non_null(ck);
    memcpy(ck, prefix, sizeof prefix - 1);
    size_t value = HTTP_CHUNK_LINE_MAX - 4 /* "1;a=" */ - 2 /* CRLF */;
    memset(ck + sizeof prefix - 1, 'v', value);
    strcpy(ck + sizeof prefix - 1 + value, "\r\nx\r\n0\r\n\r\n");
    check_ok("a chunk line of HTTP_CHUNK_LINE_MAX bytes", ck, 1);
    memset(ck + sizeof prefix - 1, 'v', value + 1);
    strcpy(ck + sizeof prefix - 1 + value + 1, "\r\nx\r\n0\r\n\r\n");
    s = (struct shape){"a chunk line one byte over", ck, strlen(ck), HTTP_PARSE_BAD_REQUEST,
                       "chunk line too long",        0};
    check(&s);
    free(ck);
}

/* The end of each answer stays: errors keep their reason, CLOSED has none. */
static void test_done_stays(void **state) {
    (void)state;
    struct http_parse ps;
    http_parse_init(&ps);
    assert_int_equal(http_parse_phase(&ps), HTTP_PHASE_IDLE);
    assert_null(ps.why);
    size_t used;
    assert_int_equal(http_parse(&ps, "", 0, &used), HTTP_PARSE_MORE);
    assert_int_equal(used, 0);
    assert_int_equal(http_parse_phase(&ps), HTTP_PHASE_IDLE);
    assert_int_equal(http_parse(&ps, "GET / HTTP/1.1\r\nHost : a", 24, &used),
                     HTTP_PARSE_BAD_REQUEST);
    assert_int_equal(used, 21);
    assert_string_equal(ps.why, "whitespace before colon");
    assert_int_equal(http_parse(&ps, "GET", 3, &used), HTTP_PARSE_BAD_REQUEST);
    assert_int_equal(used, 0);
    assert_string_equal(ps.why, "whitespace before colon");

    http_parse_init(&ps);
    assert_int_equal(http_parse(&ps, "\r\n", 2, &used), HTTP_PARSE_MORE);
    assert_int_equal(http_parse_phase(&ps), HTTP_PHASE_HEAD);
    static const char chunked[] = CHUNKED "2\r\nab\r\n0\r\n";
    assert_int_equal(http_parse(&ps, chunked, sizeof chunked - 1, &used), HTTP_PARSE_MORE);
    assert_int_equal(http_parse_phase(&ps), HTTP_PHASE_TRAILER);
    assert_int_equal(ps.body_bytes, sizeof "2\r\nab\r\n0\r\n" - 1);
    assert_int_equal(http_parse(&ps, "\r\n", 2, &used), HTTP_PARSE_REQUEST);
    assert_int_equal(http_parse_phase(&ps), HTTP_PHASE_IDLE);
    static const char last[] = "GET / HTTP/1.0\r\n\r\nGET";
    assert_int_equal(http_parse(&ps, last, sizeof last - 1, &used), HTTP_PARSE_REQUEST);
    assert_int_equal(used, sizeof last - 4);
    assert_int_equal(http_parse_phase(&ps), HTTP_PHASE_DONE);
    assert_int_equal(http_parse(&ps, "GET", 3, &used), HTTP_PARSE_CLOSED);
    assert_int_equal(used, 0);
    assert_null(ps.why);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_cl_te),          cmocka_unit_test(test_te_te),
        cmocka_unit_test(test_content_length), cmocka_unit_test(test_chunks),
        cmocka_unit_test(test_host),           cmocka_unit_test(test_request_line),
        cmocka_unit_test(test_keep_alive),     cmocka_unit_test(test_pipelined),
        cmocka_unit_test(test_request_fields), cmocka_unit_test(test_expect),
        cmocka_unit_test(test_limits),         cmocka_unit_test(test_done_stays),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
