/*
 * The request parser of coil-http; see http_parse.h.
 *
 * http_parser runs over the input and calls back; two of its callbacks pause
 * it, which makes http_parser_execute return at that byte: the end of a
 * request head (so that the head's size is known exactly, whatever the
 * pieces) and the end of a request (so that the caller answers it before
 * the next one is parsed). The body in between goes through the parser,
 * which counts it off (Content-Length, or chunks) and hands it to no one.
 */
#include "http_parse.h"

#include <string.h>

/* What the callbacks saw during one http_parser_execute. */
enum { EV_NONE, EV_HEADERS, EV_MESSAGE };

static struct http_parse *state_of(http_parser *p) {
    return p->data;
}

static int on_message_begin(http_parser *p) {
    struct http_request *req = &state_of(p)->req;
    req->target_len = 0;
    req->target[0] = '\0';
    req->target_truncated = false;
    req->path = req->target;
    req->path_len = 0;
    return 0;
}

/* The target may come in several pieces (one per piece of input). */
static int on_url(http_parser *p, const char *at, size_t len) {
    struct http_request *req = &state_of(p)->req;
    size_t cap = sizeof req->target - 1;
    size_t stored = req->target_len < cap ? req->target_len : cap;
    size_t keep = len < cap - stored ? len : cap - stored;
    memcpy(req->target + stored, at, keep);
    req->target[stored + keep] = '\0';
    if (keep < len) req->target_truncated = true;
    req->target_len += len;
    return 0;
}

/* The path of the target: up to '?' or '#' in the origin form ("/p?q"),
 * the URL's path in the absolute form ("http://h/p"). */
static void find_path(struct http_request *req, bool is_connect) {
    static const char root[] = "/";
    size_t cap = sizeof req->target - 1;
    size_t stored = req->target_len < cap ? req->target_len : cap;
    req->path = req->target;
    req->path_len = 0;
    if (stored > 0 && req->target[0] == '/') {
        while (req->path_len < stored && req->target[req->path_len] != '?' &&
               req->target[req->path_len] != '#')
            req->path_len++;
        return;
    }
    if (is_connect || (stored == 1 && req->target[0] == '*')) return;
    struct http_parser_url u;
    http_parser_url_init(&u);
    if (http_parser_parse_url(req->target, stored, 0, &u) != 0) return;
    if (u.field_set & (1 << UF_PATH)) {
        req->path = req->target + u.field_data[UF_PATH].off;
        req->path_len = u.field_data[UF_PATH].len;
    } else {
        req->path = root;
        req->path_len = 1;
    }
}

static int on_headers_complete(http_parser *p) {
    struct http_parse *ps = state_of(p);
    struct http_request *req = &ps->req;
    req->method = (enum http_method)p->method;
    req->http_major = p->http_major;
    req->http_minor = p->http_minor;
    /* An upgrade (Upgrade: + Connection: upgrade, or CONNECT) is not taken:
     * the request is answered and the connection ends, since what follows
     * it would be another protocol. */
    req->keep_alive = http_should_keep_alive(p) && !p->upgrade;
    find_path(req, req->method == HTTP_CONNECT);
    ps->event = EV_HEADERS;
    http_parser_pause(p, 1);
    return 0;
}

static int on_message_complete(http_parser *p) {
    state_of(p)->event = EV_MESSAGE;
    http_parser_pause(p, 1);
    return 0;
}

static const http_parser_settings settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_headers_complete = on_headers_complete,
    .on_message_complete = on_message_complete,
};

void http_parse_init(struct http_parse *ps) {
    memset(ps, 0, sizeof *ps);
    http_parser_init(&ps->parser, HTTP_REQUEST);
    ps->parser.data = ps;
    ps->phase = HTTP_PHASE_IDLE;
    ps->done = HTTP_PARSE_MORE;
    ps->event = EV_NONE;
    ps->req.path = ps->req.target;
}

static enum http_parse_result finish(struct http_parse *ps, enum http_parse_result r, size_t used,
                                     size_t *consumed) {
    ps->phase = HTTP_PHASE_DONE;
    ps->done = r;
    *consumed = used;
    return r;
}

enum http_parse_result http_parse(struct http_parse *ps, const char *data, size_t len,
                                  size_t *consumed) {
    size_t used = 0;
    *consumed = 0;
    if (ps->phase == HTTP_PHASE_DONE) return ps->done;
    while (used < len) {
        /* In a head, give the parser no more than what is left of
         * HTTP_HEAD_MAX, so that a head too large is found at the same byte
         * however the input is split (and before any error further on). */
        bool in_head = ps->phase != HTTP_PHASE_BODY;
        size_t n = len - used;
        if (in_head) {
            size_t room = HTTP_HEAD_MAX - ps->head_bytes;
            if (n > room) n = room;
            ps->phase = HTTP_PHASE_HEAD;
        }
        ps->event = EV_NONE;
        size_t got = http_parser_execute(&ps->parser, &settings, data + used, n);
        if (got > n) got = n; /* never, but the arithmetic below relies on it */
        used += got;
        if (in_head) ps->head_bytes += got;

        enum http_errno err = HTTP_PARSER_ERRNO(&ps->parser);
        if (err == HPE_PAUSED) {
            http_parser_pause(&ps->parser, 0);
            if (ps->event == EV_HEADERS) {
                ps->phase = HTTP_PHASE_BODY;
                continue;
            }
            if (ps->event != EV_MESSAGE) return finish(ps, HTTP_PARSE_BAD_REQUEST, used, consumed);
            ps->head_bytes = 0;
            ps->phase = HTTP_PHASE_IDLE;
            if (!ps->req.keep_alive) {
                ps->phase = HTTP_PHASE_DONE;
                ps->done = HTTP_PARSE_CLOSED;
            }
            *consumed = used;
            return HTTP_PARSE_REQUEST;
        }
        /* http_parser's own limit (80 KiB by default) can only be reached by
         * the trailer of a chunked body. */
        if (err == HPE_HEADER_OVERFLOW) return finish(ps, HTTP_PARSE_TOO_LARGE, used, consumed);
        if (err != HPE_OK || got != n) return finish(ps, HTTP_PARSE_BAD_REQUEST, used, consumed);
        if (in_head && ps->head_bytes >= HTTP_HEAD_MAX)
            return finish(ps, HTTP_PARSE_TOO_LARGE, used, consumed);
    }
    *consumed = used;
    return HTTP_PARSE_MORE;
}
