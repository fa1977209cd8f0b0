/* libFuzzer target for the request parser of the HTTP example
 * (examples/http_parse.c): whatever the bytes, http_parse neither crashes
 * nor reads or writes out of bounds (ASan, UBSan), its answers keep their
 * contract (consumed never more than given, MORE only when all was used,
 * the target NUL-terminated and the path inside it), and they do not depend
 * on how the input is cut: the bytes fed in one piece, in two pieces at a
 * position derived from the data, and (for short inputs) one byte at a time
 * give the same requests at the same offsets and the same final answer.
 *
 * Built by tests/CMakeLists.txt with clang only (-fsanitize=fuzzer); ctest
 * runs it as fuzz_http_parse for a bounded time, seeded from
 * tests/fuzz/corpus/http. By hand:
 *   build-asan/tests/fuzz_http_parse -max_total_time=60 tests/fuzz/corpus/http
 * (new inputs go to the first directory named: give it a scratch one first
 * to leave the seeds as they are). */
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

/* What one way of feeding the input gave. */
struct outcome {
    unsigned requests;
    uint64_t hash;               /* over every request's fields and the offset where it ended */
    enum http_parse_result last; /* HTTP_PARSE_MORE if the input ran out first */
    size_t end;                  /* where the last answer left the input */
};

static uint64_t mix(uint64_t h, uint64_t v) {
    h ^= v + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2);
    h *= 0xbf58476d1ce4e5b9ULL;
    return h ^ (h >> 31);
}

static void die(const char *what) {
    fprintf(stderr, "fuzz_http_parse: %s\n", what);
    __builtin_trap();
}

/* The contract of a complete request, and its fields into the hash. */
static void record(struct outcome *o, const struct http_request *req, size_t end) {
    size_t cap = sizeof req->target - 1;
    size_t stored = req->target_len < cap ? req->target_len : cap;
    if (req->target[stored] != '\0') die("target not NUL-terminated at its length");
    if (req->target_truncated != (req->target_len > cap)) die("target_truncated is wrong");
    bool root = req->path_len == 1 && req->path[0] == '/';
    bool inside = req->path >= req->target && req->path + req->path_len <= req->target + stored;
    if (!inside && !root) die("the path is outside the target");
    if ((unsigned)req->method > HTTP_SOURCE) die("unknown method");
    o->requests++;
    uint64_t h = o->hash;
    h = mix(h, (uint64_t)req->method);
    h = mix(h, (uint64_t)req->http_major << 16 | req->http_minor);
    h = mix(h, (uint64_t)req->keep_alive << 1 | req->target_truncated);
    h = mix(h, req->target_len);
    for (size_t i = 0; i < stored; i++)
        h = mix(h, (unsigned char)req->target[i]);
    h = mix(h, inside ? (uint64_t)(req->path - req->target) : UINT64_MAX);
    h = mix(h, req->path_len);
    o->hash = mix(h, end);
}

/* Feeds data[0..size) cut at the given offsets (ascending, each <= size),
 * each piece copied to a buffer of exactly its size, so that a read past a
 * piece is an ASan error. */
static void feed(const uint8_t *data, size_t size, const size_t *cuts, size_t ncuts,
                 struct outcome *o) {
    struct http_parse ps;
    http_parse_init(&ps);
    memset(o, 0, sizeof *o);
    o->last = HTTP_PARSE_MORE;
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
            if (r == HTTP_PARSE_REQUEST) {
                record(o, &ps.req, lo + off);
                continue;
            }
            if (r == HTTP_PARSE_MORE) {
                if (off != len) die("MORE without using every byte");
                if (http_parse_phase(&ps) == HTTP_PHASE_DONE) die("MORE when done");
                break;
            }
            if (http_parse_phase(&ps) != HTTP_PHASE_DONE) die("an end that is not DONE");
            size_t again;
            if (http_parse(&ps, piece, len, &again) != r || again != 0)
                die("an end that does not stay");
            o->last = r;
            o->end = lo + off;
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
    if (a->requests == b->requests && a->hash == b->hash && a->last == b->last && a->end == b->end)
        return;
    fprintf(stderr,
            "fuzz_http_parse: fed %s: %u requests, answer %d at %zu; in one piece: %u "
            "requests, answer %d at %zu\n",
            how, b->requests, (int)b->last, b->end, a->requests, (int)a->last, a->end);
    die("the result depends on how the input is cut");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    struct outcome whole, split;
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
    return 0;
}
