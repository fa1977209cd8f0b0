/*
 * coil-bench-http-parse: the CPU one request costs coil-http's request
 * parser (examples/http_parse.c) against what it cost before, on http_parser
 * (Debian's libhttp-parser-dev) behind the layer coil-http had over it,
 * which is kept here as it was: callbacks that copy the target, a pause at
 * the end of the head and at the end of the request, the path found with
 * http_parser_parse_url for the absolute form.
 *
 * Each request shape is parsed N times, one request per http_parse call as
 * coil-http gets them from a keep-alive client, by one parser state that
 * lives across them (as on a connection). The two parsers take turns,
 * ROUNDS rounds each, and each prints the median of its rounds, in
 * nanoseconds per request:
 *
 *   coil-bench-http-parse [N]         (default 2000000)
 *
 *   wrk          ours_ns X   http_parser_ns Y   ratio X/Y
 *   wrk+3        ...
 *   browser      ...
 *
 * wrk is the request `wrk -t1 http://127.0.0.1:8080/` sends (bench/compare
 * http); wrk+3 adds three common fields; browser is a browser's GET with a
 * dozen fields.
 */

/* http_parser.h has an enum http_method of its own: renamed here, so that
 * both parsers' headers fit in this one file. */
#define http_method http_parser_method
#include <http_parser.h>
#undef http_method

#include "http_parse.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ---- the layer coil-http had over http_parser (examples/http_parse.c before) ---- */

struct old_parse {
    http_parser parser;
    int phase; /* 0 idle, 1 head, 2 body, 3 done */
    size_t head_bytes;
    int event;
    struct {
        int method;
        unsigned short http_major, http_minor;
        bool keep_alive, target_truncated;
        char target[HTTP_TARGET_CAP];
        size_t target_len;
        const char *path;
        size_t path_len;
    } req;
};

enum { EV_NONE, EV_HEADERS, EV_MESSAGE };
enum { OLD_MORE, OLD_REQUEST, OLD_ERROR };

static int old_begin(http_parser *p) {
    struct old_parse *ps = p->data;
    ps->req.target_len = 0;
    ps->req.target[0] = '\0';
    ps->req.target_truncated = false;
    ps->req.path = ps->req.target;
    ps->req.path_len = 0;
    return 0;
}

static int old_url(http_parser *p, const char *at, size_t len) {
    struct old_parse *ps = p->data;
    size_t cap = sizeof ps->req.target - 1;
    size_t stored = ps->req.target_len < cap ? ps->req.target_len : cap;
    size_t keep = len < cap - stored ? len : cap - stored;
    memcpy(ps->req.target + stored, at, keep);
    ps->req.target[stored + keep] = '\0';
    if (keep < len) ps->req.target_truncated = true;
    ps->req.target_len += len;
    return 0;
}

static void old_find_path(struct old_parse *ps, bool is_connect) {
    static const char root[] = "/";
    size_t cap = sizeof ps->req.target - 1;
    size_t stored = ps->req.target_len < cap ? ps->req.target_len : cap;
    ps->req.path = ps->req.target;
    ps->req.path_len = 0;
    if (stored > 0 && ps->req.target[0] == '/') {
        while (ps->req.path_len < stored && ps->req.target[ps->req.path_len] != '?' &&
               ps->req.target[ps->req.path_len] != '#')
            ps->req.path_len++;
        return;
    }
    if (is_connect || (stored == 1 && ps->req.target[0] == '*')) return;
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(ps->req.target, stored, 0, &u) != 0) return;
    if (u.field_set & (1 << UF_PATH)) {
        ps->req.path = ps->req.target + u.field_data[UF_PATH].off;
        ps->req.path_len = u.field_data[UF_PATH].len;
    } else {
        ps->req.path = root;
        ps->req.path_len = 1;
    }
}

static int old_headers_complete(http_parser *p) {
    struct old_parse *ps = p->data;
    ps->req.method = (int)p->method;
    ps->req.http_major = p->http_major;
    ps->req.http_minor = p->http_minor;
    ps->req.keep_alive = http_should_keep_alive(p) && !p->upgrade;
    old_find_path(ps, p->method == HTTP_CONNECT);
    ps->event = EV_HEADERS;
    http_parser_pause(p, 1);
    return 0;
}

static int old_message_complete(http_parser *p) {
    ((struct old_parse *)p->data)->event = EV_MESSAGE;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings old_settings = {
    .on_message_begin = old_begin,
    .on_url = old_url,
    .on_headers_complete = old_headers_complete,
    .on_message_complete = old_message_complete,
};

static void old_init(struct old_parse *ps) {
    memset(ps, 0, sizeof *ps);
    http_parser_init(&ps->parser, HTTP_REQUEST);
    ps->parser.data = ps;
}

static int old_parse(struct old_parse *ps, const char *data, size_t len, size_t *consumed) {
    size_t used = 0;
    *consumed = 0;
    if (ps->phase == 3) return OLD_ERROR;
    while (used < len) {
        bool in_head = ps->phase != 2;
        size_t n = len - used;
        if (in_head) {
            size_t room = HTTP_HEAD_MAX - ps->head_bytes;
            if (n > room) n = room;
            ps->phase = 1;
        }
        ps->event = EV_NONE;
        size_t got = http_parser_execute(&ps->parser, &old_settings, data + used, n);
        if (got > n) got = n;
        used += got;
        if (in_head) ps->head_bytes += got;
        enum http_errno err = HTTP_PARSER_ERRNO(&ps->parser);
        if (err == HPE_PAUSED) {
            http_parser_pause(&ps->parser, 0);
            if (ps->event == EV_HEADERS) {
                ps->phase = 2;
                continue;
            }
            if (ps->event != EV_MESSAGE) return ps->phase = 3, OLD_ERROR;
            ps->head_bytes = 0;
            ps->phase = ps->req.keep_alive ? 0 : 3;
            *consumed = used;
            return OLD_REQUEST;
        }
        if (err != HPE_OK || got != n) return ps->phase = 3, OLD_ERROR;
        if (in_head && ps->head_bytes >= HTTP_HEAD_MAX) return ps->phase = 3, OLD_ERROR;
    }
    *consumed = used;
    return OLD_MORE;
}

/* ---- the measurement ---------------------------------------------------------------- */

static const struct {
    const char *name;
    const char *text;
} shapes[] = {
    {"wrk", "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n"},
    {"wrk+3", "GET / HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUser-Agent: wrk/4.2.0\r\n"
              "Accept: */*\r\nConnection: keep-alive\r\n\r\n"},
    {"browser",
     "GET /index.html?lang=en HTTP/1.1\r\nHost: www.example.com\r\n"
     "User-Agent: Mozilla/5.0 (X11; Linux x86_64; rv:109.0) Gecko/20100101 Firefox/115.0\r\n"
     "Accept: text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8\r\n"
     "Accept-Language: en-US,en;q=0.5\r\nAccept-Encoding: gzip, deflate, br\r\n"
     "Connection: keep-alive\r\nCookie: session=3f2a9c0d1e; theme=dark\r\n"
     "Upgrade-Insecure-Requests: 1\r\nSec-Fetch-Dest: document\r\nSec-Fetch-Mode: navigate\r\n"
     "Sec-Fetch-Site: none\r\nSec-Fetch-User: ?1\r\nCache-Control: max-age=0\r\n\r\n"},
};

#define ROUNDS 7

static double now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static volatile size_t sink; /* what was parsed, so that none of it is optimized away */

static double run_ours(const char *text, size_t len, long n) {
    static struct http_parse ps;
    http_parse_init(&ps);
    size_t sum = 0;
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        size_t used;
        if (http_parse(&ps, text, len, &used) != HTTP_PARSE_REQUEST || used != len) {
            fprintf(stderr, "coil-bench-http-parse: ours did not parse the request\n");
            exit(1);
        }
        sum += ps.req.path_len + ps.req.keep_alive + (size_t)ps.req.method;
    }
    double t = now_ns() - t0;
    sink = sum;
    return t / (double)n;
}

static double run_old(const char *text, size_t len, long n) {
    static struct old_parse ps;
    old_init(&ps);
    size_t sum = 0;
    double t0 = now_ns();
    for (long i = 0; i < n; i++) {
        size_t used;
        if (old_parse(&ps, text, len, &used) != OLD_REQUEST || used != len) {
            fprintf(stderr, "coil-bench-http-parse: http_parser did not parse the request\n");
            exit(1);
        }
        sum += ps.req.path_len + ps.req.keep_alive + (size_t)ps.req.method;
    }
    double t = now_ns() - t0;
    sink = sum;
    return t / (double)n;
}

static int by_value(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv) {
    long n = argc > 1 ? atol(argv[1]) : 2000000;
    if (n <= 0) {
        fprintf(stderr, "usage: coil-bench-http-parse [N]\n");
        return 2;
    }
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        const char *text = shapes[s].text;
        size_t len = strlen(text);
        double ours[ROUNDS], old[ROUNDS];
        run_ours(text, len, n / 10 + 1); /* warm up both */
        run_old(text, len, n / 10 + 1);
        for (int r = 0; r < ROUNDS; r++) {
            if (r % 2 == 0) {
                ours[r] = run_ours(text, len, n);
                old[r] = run_old(text, len, n);
            } else {
                old[r] = run_old(text, len, n);
                ours[r] = run_ours(text, len, n);
            }
        }
        qsort(ours, ROUNDS, sizeof ours[0], by_value);
        qsort(old, ROUNDS, sizeof old[0], by_value);
        double o = ours[ROUNDS / 2], h = old[ROUNDS / 2];
        printf("%-8s %4zu bytes  ours_ns %6.1f   http_parser_ns %6.1f   ratio %.2f\n",
               shapes[s].name, len, o, h, o / h);
    }
    return 0;
}
