/*
 * The request parser of coil-http; see http_parse.h.
 *
 * One pass over the bytes, each looked at once, by a state machine whose
 * state lives in struct http_parse between calls: that is what makes the
 * answers independent of how the input is cut, since no decision ever looks
 * back at bytes of an earlier call or ahead past the current one. Each state
 * runs a tight loop over the bytes it can take (a field value, a name, a
 * target, chunk data) and leaves it at the first byte that it cannot,
 * testing one table entry per byte (or, in the value of a field nothing
 * here reads, eight bytes at a time). A field that decides the framing or
 * the connection (Content-Length, Transfer-Encoding, Host, Connection,
 * Expect, Upgrade) gets its value parsed as it goes by, by a small machine
 * of its own (field_byte), so nothing is ever buffered but a list element or
 * a name of a few bytes; every other field's value is only checked for
 * bytes a field value cannot hold.
 *
 * An error is found at the first byte that makes the input invalid (for
 * what only the whole head decides, such as a missing Host, at the head's
 * last byte); *consumed then counts the bytes before that one.
 *
 * Where the RFCs leave a choice, the strict one: RFC 9112 §2.2 lets a
 * recipient take a bare LF as a line ending, RFC 9110 §5.6.1 has it skip
 * empty list elements and §8.6 lets it take a Content-Length repeated with
 * the same value. Each is refused here, since each is a place where a proxy
 * in front of the server could read the framing one way and the server the
 * other (a bare LF ends a line for one and not the other; an empty
 * Transfer-Encoding member and a repeated Content-Length are the material
 * of known smuggling tricks).
 */
#include "http_parse.h"

#include <arpa/inet.h>
#include <string.h>

/* ---- byte classes ---------------------------------------------------------- */

enum {
    C_TCHAR = 1 << 0,  /* token (RFC 9110 §5.6.2) */
    C_VCHAR = 1 << 1,  /* visible: 0x21-0x7E, a request target's bytes */
    C_FIELD = 1 << 2,  /* in a field value: HTAB, SP, VCHAR, obs-text */
    C_HOST = 1 << 3,   /* in a reg-name: unreserved and sub-delims (RFC 3986) */
    C_HEX = 1 << 4,    /* HEXDIG */
    C_DIGIT = 1 << 5,  /* DIGIT */
    C_SCHEME = 1 << 6, /* after a scheme's first letter: ALPHA DIGIT + - . */
    C_QDTEXT = 1 << 7, /* in a quoted-string, unescaped */
};

#define IN(c, lo, hi) ((c) >= (lo) && (c) <= (hi))
#define ALPHA(c)      (IN(c, 'a', 'z') || IN(c, 'A', 'Z'))
#define DIGIT(c)      IN(c, '0', '9')
#define TCHAR(c)                                                                                   \
    (ALPHA(c) || DIGIT(c) || (c) == '!' || (c) == '#' || (c) == '$' || (c) == '%' || (c) == '&' || \
     (c) == '\'' || (c) == '*' || (c) == '+' || (c) == '-' || (c) == '.' || (c) == '^' ||          \
     (c) == '_' || (c) == '`' || (c) == '|' || (c) == '~')
#define HOSTCH(c)                                                                                  \
    (ALPHA(c) || DIGIT(c) || (c) == '-' || (c) == '.' || (c) == '_' || (c) == '~' || (c) == '!' || \
     (c) == '$' || (c) == '&' || (c) == '\'' || (c) == '(' || (c) == ')' || (c) == '*' ||          \
     (c) == '+' || (c) == ',' || (c) == ';' || (c) == '=')
#define VCHAR(c)   IN(c, 0x21, 0x7e)
#define FIELDCH(c) ((c) == '\t' || (c) == ' ' || VCHAR(c) || (c) >= 0x80)
#define HEX(c)     (DIGIT(c) || IN(c, 'a', 'f') || IN(c, 'A', 'F'))
#define QDTEXT(c)                                                                                  \
    ((c) == '\t' || (c) == ' ' || (c) == 0x21 || IN(c, 0x23, 0x5b) || IN(c, 0x5d, 0x7e) ||         \
     (c) >= 0x80)
#define CLASS(c)                                                                                   \
    ((TCHAR(c) ? C_TCHAR : 0) | (VCHAR(c) ? C_VCHAR : 0) | (FIELDCH(c) ? C_FIELD : 0) |            \
     (HOSTCH(c) ? C_HOST : 0) | (HEX(c) ? C_HEX : 0) | (DIGIT(c) ? C_DIGIT : 0) |                  \
     (ALPHA(c) || DIGIT(c) || (c) == '+' || (c) == '-' || (c) == '.' ? C_SCHEME : 0) |             \
     (QDTEXT(c) ? C_QDTEXT : 0))
#define R4(c)  CLASS(c), CLASS((c) + 1), CLASS((c) + 2), CLASS((c) + 3)
#define R16(c) R4(c), R4((c) + 4), R4((c) + 8), R4((c) + 12)
#define R64(c) R16(c), R16((c) + 16), R16((c) + 32), R16((c) + 48)

static const uint8_t classes[256] = {R64(0), R64(64), R64(128), R64(192)};

static inline bool is(uint8_t c, unsigned cls) {
    return classes[c] & cls;
}

static inline bool ows(uint8_t c) {
    return c == ' ' || c == '\t';
}

static inline int hexval(uint8_t c) {
    return c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* Eight bytes at once: is any of them below n (n <= 128), is any equal to
 * b? (The tricks of Sean Eron Anderson's "Bit Twiddling Hacks": exact as a
 * yes or no, though not as to which byte.) */
#define ONES  0x0101010101010101ULL
#define HIGHS 0x8080808080808080ULL

static inline uint64_t any_below(uint64_t x, uint64_t n) {
    return (x - ONES * n) & ~x & HIGHS;
}

static inline uint64_t any_equal(uint64_t x, uint64_t b) {
    uint64_t y = x ^ (ONES * b);
    return (y - ONES) & ~y & HIGHS;
}

/* The bytes of a field value from p on: where the first that is not one
 * (CR at the value's end, or an invalid byte) is, or end. Eight at a time
 * while none is below 0x20 (HTAB, CR, a control) or DEL; then one by one. */
static const uint8_t *skip_field_value(const uint8_t *p, const uint8_t *end) {
    while (end - p >= 8) {
        uint64_t x;
        memcpy(&x, p, 8);
        if (any_below(x, 0x20) | any_equal(x, 0x7f)) break;
        p += 8;
    }
    while (p < end && is(*p, C_FIELD))
        p++;
    return p;
}

/* ---- states ------------------------------------------------------------------ */

/* Where in a request the parser is (ps->state). */
enum {
    S_START,       /* before a request line: an empty line or the method's first byte */
    S_START_LF,    /* the LF of an empty line before the request line */
    S_METHOD,      /* in the method */
    S_TARGET,      /* in the request target */
    S_VERSION,     /* in "HTTP/d.d", at ps->index */
    S_LINE_LF,     /* the LF of the request line or of a field line */
    S_FIELD_START, /* a field line's first byte, or the CR of the empty line */
    S_NAME,        /* in a field name */
    S_NAME_WS,     /* whitespace after (or in) a field name */
    S_VALUE_OWS,   /* whitespace before a field value */
    S_VALUE,       /* in a field value */
    S_END_LF,      /* the LF of the empty line that ends the head or trailer section */
    S_BODY,        /* Content-Length body, ps->remaining to come */
    S_CHUNK_SIZE,  /* a chunk size's first digit */
    S_CHUNK_SIZE_MORE,
    S_CHUNK_EXT,     /* in a chunk size line after the size: ps->sub is where */
    S_CHUNK_LF,      /* the LF of a chunk size line */
    S_CHUNK_DATA,    /* chunk data, ps->remaining to come */
    S_CHUNK_DATA_CR, /* the CRLF after chunk data */
    S_CHUNK_DATA_LF,
};

/* The form of the request target (ps->form), RFC 9112 §3.2. */
enum {
    FORM_NONE,      /* no byte yet */
    FORM_ORIGIN,    /* "/..." */
    FORM_ASTERISK,  /* "*" */
    FORM_SCHEME,    /* an absolute form's scheme so far */
    FORM_COLON,     /* "scheme:" */
    FORM_SLASH,     /* "scheme:/" */
    FORM_ABSOLUTE,  /* "scheme://..." */
    FORM_AUTHORITY, /* CONNECT's host:port, parsed as a Host value (ps->sub) */
};

/* The fields whose values the parser reads (ps->field). */
enum { F_OTHER, F_HOST, F_CONTENT_LENGTH, F_TRANSFER_ENCODING, F_CONNECTION, F_EXPECT, F_UPGRADE };

/* What the head's fields said so far (ps->flags). */
enum {
    FL_HOST = 1 << 0,
    FL_CONTENT_LENGTH = 1 << 1,
    FL_TE = 1 << 2,         /* Transfer-Encoding */
    FL_TE_CHUNKED = 1 << 3, /* its codings so far end in chunked */
    FL_TE_OTHER = 1 << 4,   /* it has a coding other than chunked */
    FL_CLOSE = 1 << 5,      /* Connection lists these */
    FL_KEEP_ALIVE = 1 << 6,
    FL_CONN_UPGRADE = 1 << 7,
    FL_UPGRADE = 1 << 8,    /* an Upgrade field that is not empty */
    FL_EXPECT = 1 << 9,     /* Expect: 100-continue */
    FL_FIELD_SEEN = 1 << 10 /* a field line of this section was seen */
};

/* The states of a Host value (or CONNECT's target), in ps->sub. */
enum { HO_START, HO_REG, HO_PCT1, HO_PCT2, HO_LITERAL, HO_AFTER_LITERAL, HO_PORT, HO_TRAIL };

/* Of a Content-Length value. */
enum { CL_START, CL_DIGITS, CL_TRAIL };

/* Of a list (Transfer-Encoding, Connection), RFC 9110 §5.6.1; the
 * parameters are Transfer-Encoding's (RFC 9112 §7). */
enum {
    L_FIRST,       /* nothing yet in this field */
    L_NEXT,        /* after a comma */
    L_TOKEN,       /* in an element */
    L_AFTER,       /* whitespace after an element or a parameter */
    L_PARAM,       /* after ';', before a parameter's name */
    L_PARAM_NAME,  /* in it */
    L_PARAM_EQ,    /* whitespace before its '=' */
    L_PARAM_VALUE, /* after '=' */
    L_PARAM_TOKEN, /* in a token value */
    L_QUOTED,      /* in a quoted-string value */
    L_QUOTED_PAIR, /* after a backslash in it */
};

/* Of Expect's value: matching "100-continue" (at ps->index), after it, or not it. */
enum { EX_MATCHING, EX_TRAIL, EX_NO };

/* Of a chunk size line after its digits (RFC 9112 §7.1.1), in ps->sub. */
enum {
    X_WS,           /* whitespace after the size or a value: only ';' may follow */
    X_NAME_START,   /* after ';' */
    X_NAME,         /* in an extension's name */
    X_NAME_WS,      /* whitespace after it: ';' or '=' */
    X_VALUE_START,  /* after '=' */
    X_TOKEN,        /* in a token value */
    X_QUOTED,       /* in a quoted-string value */
    X_QUOTED_PAIR,  /* after a backslash in it */
    X_AFTER_QUOTED, /* after a quoted-string value, before any whitespace */
};

/* ---- field values ------------------------------------------------------------ */

/* Appends n bytes at s to ps->buf (each ORed with lower: 0x20 lowercases a
 * letter and maps no other token byte to a letter or '-'), as many as fit;
 * ps->buf_len stops at the buffer's size, which no name compared is near. */
static void keep(struct http_parse *ps, const uint8_t *s, size_t n, uint8_t lower) {
    size_t at = ps->buf_len;
    if (n > sizeof ps->buf - at) n = sizeof ps->buf - at;
    for (size_t i = 0; i < n; i++)
        ps->buf[at + i] = (char)(s[i] | lower);
    ps->buf_len = (uint8_t)(at + n);
}

/* The IP-literal of a Host (or CONNECT target) between its brackets, in
 * ps->buf: an IPv6 address or an IPvFuture (RFC 3986 §3.2.2). */
static bool ip_literal_ok(struct http_parse *ps) {
    size_t n = ps->buf_len;
    const uint8_t *s = (const uint8_t *)ps->buf;
    if (n >= sizeof ps->buf) return false;
    if (n > 0 && (s[0] | 0x20) == 'v') {
        size_t i = 1;
        while (i < n && is(s[i], C_HEX))
            i++;
        if (i == 1 || i + 1 >= n || s[i] != '.') return false;
        for (i++; i < n; i++)
            if (!is(s[i], C_HOST) && s[i] != ':') return false;
        return true;
    }
    ps->buf[n] = '\0';
    struct in6_addr addr;
    return inet_pton(AF_INET6, ps->buf, &addr) == 1;
}

/* One byte of uri-host [ ":" port ] (RFC 9112 §3.2, RFC 3986 §3.2.2-3).
 * A Host value's trailing whitespace reaches it too. False: invalid. */
static bool host_byte(struct http_parse *ps, uint8_t c) {
    switch (ps->sub) {
    case HO_START:
        if (c == '[') {
            ps->buf_len = 0;
            ps->sub = HO_LITERAL;
            return true;
        }
        /* a reg-name or IPv4 address, maybe empty */
        /* fall through */
    case HO_REG:
        if (is(c, C_HOST))
            ps->sub = HO_REG;
        else if (c == '%')
            ps->sub = HO_PCT1;
        else if (c == ':')
            ps->sub = HO_PORT;
        else if (ows(c) && ps->sub == HO_REG)
            ps->sub = HO_TRAIL;
        else
            return false;
        return true;
    case HO_PCT1:
    case HO_PCT2:
        if (!is(c, C_HEX)) return false;
        ps->sub = ps->sub == HO_PCT1 ? HO_PCT2 : HO_REG;
        return true;
    case HO_LITERAL:
        if (c == ']') {
            if (!ip_literal_ok(ps)) return false;
            ps->sub = HO_AFTER_LITERAL;
            return true;
        }
        if (!is(c, C_HOST) && c != ':') return false;
        if (ps->buf_len >= sizeof ps->buf) return false;
        ps->buf[ps->buf_len++] = (char)c;
        return true;
    case HO_AFTER_LITERAL:
        if (c == ':')
            ps->sub = HO_PORT;
        else if (ows(c))
            ps->sub = HO_TRAIL;
        else
            return false;
        return true;
    case HO_PORT:
        if (is(c, C_DIGIT)) {
            ps->port = ps->port * 10 + (uint32_t)(c - '0');
            ps->index = 1;
            return ps->port <= 65535;
        }
        if (!ows(c)) return false;
        ps->sub = HO_TRAIL;
        return true;
    default: /* HO_TRAIL */ return ows(c);
    }
}

static void host_start(struct http_parse *ps) {
    ps->sub = HO_START;
    ps->port = 0;
    ps->index = 0; /* a port digit was seen */
}

/* Is what host_byte saw a whole value? */
static bool host_end_ok(const struct http_parse *ps) {
    return ps->sub != HO_PCT1 && ps->sub != HO_PCT2 && ps->sub != HO_LITERAL;
}

/* The end of a list element whose lowercased start is in ps->buf. */
static const char *element_end(struct http_parse *ps, bool has_params) {
    bool chunked = ps->buf_len == 7 && memcmp(ps->buf, "chunked", 7) == 0;
    if (ps->field == F_CONNECTION) {
        if (ps->buf_len == 5 && memcmp(ps->buf, "close", 5) == 0)
            ps->flags |= FL_CLOSE;
        else if (ps->buf_len == 10 && memcmp(ps->buf, "keep-alive", 10) == 0)
            ps->flags |= FL_KEEP_ALIVE;
        else if (ps->buf_len == 7 && memcmp(ps->buf, "upgrade", 7) == 0)
            ps->flags |= FL_CONN_UPGRADE;
        return NULL;
    }
    /* Transfer-Encoding: chunked must come once, last (RFC 9112 §6.1). */
    if (ps->flags & FL_TE_CHUNKED)
        return chunked ? "chunked applied twice" : "final transfer coding is not chunked";
    if (!chunked)
        ps->flags |= FL_TE_OTHER;
    else if (has_params)
        return "parameters on chunked";
    else
        ps->flags |= FL_TE_CHUNKED;
    return NULL;
}

/* One byte of a Transfer-Encoding or Connection value: a comma list of
 * tokens, the former's with parameters. ps->index says whether the current
 * element had any. Returns an error's why or NULL. */
static const char *list_byte(struct http_parse *ps, uint8_t c) {
    bool te = ps->field == F_TRANSFER_ENCODING;
    const char *bad = te ? "malformed Transfer-Encoding" : "malformed Connection";
    switch (ps->sub) {
    case L_FIRST:
    case L_NEXT:
        if (ows(c)) return NULL;
        if (c == ',') {
            /* An empty element: RFC 9110 §5.6.1 has recipients skip it, but
             * in Transfer-Encoding one is too near to a hidden coding. */
            if (te) return "empty Transfer-Encoding list member";
            return NULL;
        }
        if (!is(c, C_TCHAR)) return bad;
        ps->sub = L_TOKEN;
        ps->buf_len = 0;
        ps->index = 0;
        /* fall through */
    case L_TOKEN:
        if (is(c, C_TCHAR)) {
            keep(ps, &c, 1, 0x20);
            return NULL;
        }
        if (ows(c)) {
            ps->sub = L_AFTER;
            return NULL;
        }
        /* fall through */
    case L_AFTER:
        if (ows(c)) return NULL;
        if (c == ',') {
            ps->sub = L_NEXT;
            return element_end(ps, ps->index);
        }
        if (c == ';' && te) {
            ps->sub = L_PARAM;
            ps->index = 1;
            return NULL;
        }
        return bad;
    case L_PARAM:
        if (ows(c)) return NULL;
        if (!is(c, C_TCHAR)) return bad;
        ps->sub = L_PARAM_NAME;
        return NULL;
    case L_PARAM_NAME:
        if (is(c, C_TCHAR)) return NULL;
        ps->sub = L_PARAM_EQ;
        /* fall through */
    case L_PARAM_EQ:
        if (ows(c)) return NULL;
        if (c != '=') return bad;
        ps->sub = L_PARAM_VALUE;
        return NULL;
    case L_PARAM_VALUE:
        if (ows(c)) return NULL;
        if (c == '"')
            ps->sub = L_QUOTED;
        else if (is(c, C_TCHAR))
            ps->sub = L_PARAM_TOKEN;
        else
            return bad;
        return NULL;
    case L_PARAM_TOKEN:
        if (is(c, C_TCHAR)) return NULL;
        ps->sub = L_AFTER;
        return list_byte(ps, c);
    case L_QUOTED:
        if (c == '"')
            ps->sub = L_AFTER;
        else if (c == '\\')
            ps->sub = L_QUOTED_PAIR;
        else if (!is(c, C_QDTEXT))
            return bad;
        return NULL;
    default: /* L_QUOTED_PAIR: any field byte (HTAB, SP, VCHAR, obs-text) */
        ps->sub = L_QUOTED;
        return NULL;
    }
}

/* One byte of the value of a field the parser reads (never of another):
 * a byte field values may hold, the value's leading whitespace skipped.
 * Returns an error's why or NULL. */
static const char *field_byte(struct http_parse *ps, uint8_t c) {
    switch (ps->field) {
    case F_CONTENT_LENGTH:
        /* 1*DIGIT, nothing else: no sign, no list (RFC 9110 §8.6). */
        if (is(c, C_DIGIT) && ps->sub != CL_TRAIL) {
            uint64_t d = (uint64_t)(c - '0');
            if (ps->number > (UINT64_MAX - d) / 10) return "Content-Length overflows";
            ps->number = ps->number * 10 + d;
            ps->sub = CL_DIGITS;
            return NULL;
        }
        if (ows(c) && ps->sub != CL_START) {
            ps->sub = CL_TRAIL;
            return NULL;
        }
        return "invalid Content-Length";
    case F_HOST: return host_byte(ps, c) ? NULL : "invalid Host";
    case F_TRANSFER_ENCODING:
    case F_CONNECTION: return list_byte(ps, c);
    case F_EXPECT: {
        static const char want[] = "100-continue";
        if (ps->sub == EX_MATCHING && ps->index < sizeof want - 1 && (c | 0x20) == want[ps->index])
            ps->index++;
        else if (ows(c) && ps->index == sizeof want - 1 && ps->sub != EX_NO)
            ps->sub = EX_TRAIL;
        else
            ps->sub = EX_NO;
        return NULL;
    }
    default: /* F_UPGRADE: its first byte has said all */ return NULL;
    }
}

/* The end (CR) of the value of a field the parser reads. */
static const char *field_end(struct http_parse *ps) {
    switch (ps->field) {
    case F_CONTENT_LENGTH: return ps->sub == CL_START ? "invalid Content-Length" : NULL;
    case F_HOST: return host_end_ok(ps) ? NULL : "invalid Host";
    case F_TRANSFER_ENCODING:
        if (ps->sub == L_FIRST) return "empty Transfer-Encoding";
        if (ps->sub == L_NEXT) return "empty Transfer-Encoding list member";
        /* fall through */
    case F_CONNECTION:
        switch (ps->sub) {
        case L_FIRST:
        case L_NEXT: return NULL;
        case L_TOKEN:
        case L_AFTER:
        case L_PARAM_TOKEN: return element_end(ps, ps->index);
        default:
            return ps->field == F_CONNECTION ? "malformed Connection"
                                             : "malformed Transfer-Encoding";
        }
    case F_EXPECT:
        if (ps->sub != EX_NO && ps->index == sizeof "100-continue" - 1) ps->flags |= FL_EXPECT;
        return NULL;
    default: return NULL;
    }
}

/* The name of a field, lowercased in ps->buf, has ended with its colon.
 * Returns an error's why or NULL. */
static const char *name_end(struct http_parse *ps) {
    ps->field = F_OTHER;
    if (ps->phase == HTTP_PHASE_TRAILER) return NULL; /* trailer fields decide nothing here */
    const char *b = ps->buf;
    switch (ps->buf_len) {
    case 4:
        if (memcmp(b, "host", 4) != 0) return NULL;
        /* RFC 9112 §3.2: more than one Host is a bad request. */
        if (ps->flags & FL_HOST) return "more than one Host";
        ps->flags |= FL_HOST;
        ps->field = F_HOST;
        host_start(ps);
        return NULL;
    case 6:
        if (memcmp(b, "expect", 6) != 0) return NULL;
        ps->field = F_EXPECT;
        ps->sub = EX_MATCHING;
        ps->index = 0;
        return NULL;
    case 7:
        if (memcmp(b, "upgrade", 7) == 0) ps->field = F_UPGRADE;
        return NULL;
    case 10:
        if (memcmp(b, "connection", 10) != 0) return NULL;
        ps->field = F_CONNECTION;
        ps->sub = L_FIRST;
        return NULL;
    case 14:
        if (memcmp(b, "content-length", 14) != 0) return NULL;
        /* Even the same value twice: strict (RFC 9110 §8.6 allows merging it). */
        if (ps->flags & FL_CONTENT_LENGTH) return "repeated Content-Length";
        ps->flags |= FL_CONTENT_LENGTH;
        ps->field = F_CONTENT_LENGTH;
        ps->sub = CL_START;
        ps->number = 0;
        return NULL;
    case 17:
        if (memcmp(b, "transfer-encoding", 17) != 0) return NULL;
        ps->flags |= FL_TE;
        ps->field = F_TRANSFER_ENCODING;
        ps->sub = L_FIRST;
        return NULL;
    default: return NULL;
    }
}

/* ---- the request line -------------------------------------------------------- */

/* The method's name is case-sensitive (RFC 9110 §9.1). */
static enum http_method method_of(const char *m, size_t len) {
#define IS(name) (memcmp(m, name, sizeof name - 1) == 0)
    switch (len) {
    case 3:
        if (IS("GET")) return HTTP_METHOD_GET;
        if (IS("PUT")) return HTTP_METHOD_PUT;
        break;
    case 4:
        if (IS("HEAD")) return HTTP_METHOD_HEAD;
        if (IS("POST")) return HTTP_METHOD_POST;
        break;
    case 5:
        if (IS("TRACE")) return HTTP_METHOD_TRACE;
        if (IS("PATCH")) return HTTP_METHOD_PATCH;
        break;
    case 6:
        if (IS("DELETE")) return HTTP_METHOD_DELETE;
        break;
    case 7:
        if (IS("OPTIONS")) return HTTP_METHOD_OPTIONS;
        if (IS("CONNECT")) return HTTP_METHOD_CONNECT;
        break;
    }
    return HTTP_METHOD_OTHER;
#undef IS
}

/* The target's first byte decides its form (RFC 9112 §3.2): origin "/p",
 * absolute "scheme://...", asterisk "*" (OPTIONS only), authority
 * "host:port" (CONNECT only, and CONNECT has only that). */
static const char *target_first(struct http_parse *ps, uint8_t c) {
    enum http_method m = ps->req.method;
    if (m == HTTP_METHOD_CONNECT) {
        if (c == '/' || c == '*') return "CONNECT without authority-form";
        ps->form = FORM_AUTHORITY;
        host_start(ps);
        return NULL;
    }
    if (c == '/')
        ps->form = FORM_ORIGIN;
    else if (c == '*') {
        if (m != HTTP_METHOD_OPTIONS) return "asterisk-form without OPTIONS";
        ps->form = FORM_ASTERISK;
    } else if (ALPHA(c))
        ps->form = FORM_SCHEME;
    else
        return "invalid request target";
    return NULL;
}

/* A target byte after the first, in a form that checks each. */
static const char *target_byte(struct http_parse *ps, uint8_t c) {
    switch (ps->form) {
    case FORM_ASTERISK: return "invalid request target";
    case FORM_SCHEME:
        if (c == ':')
            ps->form = FORM_COLON;
        else if (!is(c, C_SCHEME)) {
            /* "host:port" or a bare word: authority-form is CONNECT's */
            return "invalid request target";
        }
        return NULL;
    case FORM_COLON:
    case FORM_SLASH:
        if (c != '/') {
            return ps->form == FORM_COLON && is(c, C_DIGIT) ? "authority-form without CONNECT"
                                                            : "invalid request target";
        }
        ps->form = ps->form == FORM_COLON ? FORM_SLASH : FORM_ABSOLUTE;
        return NULL;
    case FORM_AUTHORITY: return host_byte(ps, c) ? NULL : "CONNECT without authority-form";
    default: return NULL;
    }
}

static const char *target_end(struct http_parse *ps) {
    switch (ps->form) {
    case FORM_NONE: return "invalid request line";
    case FORM_SCHEME:
    case FORM_COLON:
    case FORM_SLASH: return "invalid request target";
    case FORM_AUTHORITY:
        /* host ":" port, the port not empty (RFC 9110 §9.3.6) */
        if (!host_end_ok(ps) || ps->sub != HO_PORT || !ps->index)
            return "CONNECT without authority-form";
        return NULL;
    default: return NULL;
    }
}

/* The path of the target: up to '?' or '#' in the origin form ("/p?q"),
 * the URL's path in the absolute form ("http://h/p", "/" when it has
 * none), empty otherwise. Of what was kept of a truncated target. */
static void find_path(struct http_request *req, int form) {
    static const char root[] = "/";
    size_t stored = req->target_len < HTTP_TARGET_CAP - 1 ? req->target_len : HTTP_TARGET_CAP - 1;
    const char *t = req->target, *e = t + stored;
    req->path = t;
    req->path_len = 0;
    if (form == FORM_ABSOLUTE) {
        /* after "scheme://", unless truncation cut into it */
        const char *s = memchr(t, ':', stored);
        s = s && e - s > 3 ? s + 3 : e;
        while (s < e && *s != '/' && *s != '?' && *s != '#')
            s++;
        if (s == e || *s != '/') {
            req->path = root;
            req->path_len = 1;
            return;
        }
        t = s;
    } else if (form != FORM_ORIGIN) {
        return;
    }
    const char *q = t;
    while (q < e && *q != '?' && *q != '#')
        q++;
    req->path = t;
    req->path_len = (size_t)(q - t);
}

/* ---- a request ---------------------------------------------------------------- */

static void start_request(struct http_parse *ps) {
    struct http_request *req = &ps->req;
    ps->phase = HTTP_PHASE_HEAD;
    ps->state = S_START;
    ps->flags = 0;
    ps->count = 0;
    ps->body_bytes = 0;
    req->method = HTTP_METHOD_OTHER;
    req->http_major = req->http_minor = 0;
    req->keep_alive = false;
    req->expect_continue = false;
    req->chunked = false;
    req->content_length = 0;
    req->target_truncated = false;
    req->target[0] = '\0';
    req->target_len = 0;
    req->path = req->target;
    req->path_len = 0;
}

static enum http_parse_result fail(struct http_parse *ps, enum http_parse_result r,
                                   const char *why) {
    ps->phase = HTTP_PHASE_DONE;
    ps->done = r;
    ps->why = why;
    return r;
}

static enum http_parse_result request_done(struct http_parse *ps) {
    ps->phase = HTTP_PHASE_IDLE;
    if (!ps->req.keep_alive) {
        ps->phase = HTTP_PHASE_DONE;
        ps->done = HTTP_PARSE_CLOSED;
    }
    return HTTP_PARSE_REQUEST;
}

/* The head is complete (its last LF parsed): what it says as a whole. */
static enum http_parse_result head_done(struct http_parse *ps) {
    struct http_request *req = &ps->req;
    unsigned f = ps->flags;
    bool v11 = req->http_major == 1 && req->http_minor >= 1;
    bool before_11 = req->http_major == 0 || (req->http_major == 1 && req->http_minor == 0);
    if (v11 && !(f & FL_HOST)) return fail(ps, HTTP_PARSE_BAD_REQUEST, "no Host");
    if (f & FL_TE) {
        /* RFC 9112 §6.1 and §6.3 */
        if (f & FL_CONTENT_LENGTH)
            return fail(ps, HTTP_PARSE_BAD_REQUEST, "Transfer-Encoding with Content-Length");
        if (before_11) return fail(ps, HTTP_PARSE_BAD_REQUEST, "Transfer-Encoding in HTTP/1.0");
        if (!(f & FL_TE_CHUNKED))
            return fail(ps, HTTP_PARSE_BAD_REQUEST, "final transfer coding is not chunked");
        if (f & FL_TE_OTHER)
            return fail(ps, HTTP_PARSE_NOT_IMPLEMENTED, "transfer coding other than chunked");
    }
    bool connect = req->method == HTTP_METHOD_CONNECT;
    bool upgrade = (f & FL_UPGRADE) && (f & FL_CONN_UPGRADE);
    /* An upgrade is not taken and CONNECT is not served: what follows their
     * head would be another protocol, so the connection ends after them.
     * The same for a version whose framing is not HTTP/1's. */
    if (req->http_major != 1 || upgrade || connect)
        req->keep_alive = false;
    else if (v11)
        req->keep_alive = !(f & FL_CLOSE);
    else
        req->keep_alive = (f & FL_KEEP_ALIVE) && !(f & FL_CLOSE);
    /* CONNECT has no content (RFC 9110 §9.3.6): the tunnel follows its head. */
    if (!connect) {
        req->chunked = f & FL_TE;
        req->content_length = f & FL_CONTENT_LENGTH ? ps->number : 0;
    }
    if (!req->chunked && req->content_length == 0) return request_done(ps);
    /* RFC 9110 §10.1.1: an HTTP/1.0 client's Expect is ignored */
    req->expect_continue = v11 && (f & FL_EXPECT);
    ps->phase = HTTP_PHASE_BODY;
    ps->count = 0;
    if (req->chunked)
        ps->state = S_CHUNK_SIZE;
    else {
        ps->state = S_BODY;
        ps->remaining = req->content_length;
    }
    return req->expect_continue ? HTTP_PARSE_HEAD : HTTP_PARSE_MORE;
}

/* ---- the head and the trailer section ---------------------------------------- */

#define FAIL(why)                                                                                  \
    do {                                                                                           \
        r = fail(ps, HTTP_PARSE_BAD_REQUEST, (why));                                               \
        goto out;                                                                                  \
    } while (0)

/* Lines of a head (or a trailer section) in [p, end); stops at its end, at
 * an error or at end. *pp is moved past the bytes used. */
static enum http_parse_result lines(struct http_parse *ps, const uint8_t **pp, const uint8_t *end) {
    const uint8_t *p = *pp;
    enum http_parse_result r = HTTP_PARSE_MORE;
    struct http_request *req = &ps->req;
    const char *why;
    uint8_t c;

    while (p < end) {
        switch (ps->state) {
        case S_START:
            c = *p;
            if (c == '\r') {
                ps->state = S_START_LF;
                p++;
                break;
            }
            if (c == '\n') FAIL("bare LF");
            if (!is(c, C_TCHAR)) FAIL("invalid method");
            ps->state = S_METHOD;
            ps->buf_len = 0;
            break;
        case S_START_LF:
            if (*p != '\n') FAIL("bare CR");
            ps->state = S_START;
            p++;
            break;

        case S_METHOD: {
            const uint8_t *s = p;
            while (p < end && is(*p, C_TCHAR))
                p++;
            keep(ps, s, (size_t)(p - s), 0);
            if (p == end) break;
            if (*p != ' ') FAIL("invalid method");
            req->method = method_of(ps->buf, ps->buf_len);
            ps->form = FORM_NONE;
            ps->state = S_TARGET;
            p++;
            break;
        }

        case S_TARGET: {
            if (ps->form == FORM_NONE && p < end && is(*p, C_VCHAR)) {
                if ((why = target_first(ps, *p)) != NULL) FAIL(why);
                if (ps->form == FORM_AUTHORITY && !host_byte(ps, *p))
                    FAIL("CONNECT without authority-form");
                req->target[0] = (char)*p;
                req->target_len = 1;
                p++;
            }
            const uint8_t *s = p;
            if (ps->form == FORM_ORIGIN || ps->form == FORM_ABSOLUTE) {
                while (p < end && is(*p, C_VCHAR))
                    p++;
            } else {
                while (p < end && is(*p, C_VCHAR)) {
                    if ((why = target_byte(ps, *p)) != NULL) FAIL(why);
                    p++;
                }
            }
            size_t n = (size_t)(p - s), at = req->target_len;
            if (at < HTTP_TARGET_CAP - 1) {
                size_t keep = n < HTTP_TARGET_CAP - 1 - at ? n : HTTP_TARGET_CAP - 1 - at;
                memcpy(req->target + at, s, keep);
            }
            req->target_len += n;
            if (p == end) break;
            if (*p != ' ')
                FAIL(ps->form == FORM_NONE ? "invalid request line"
                                           : "invalid byte in request target");
            if ((why = target_end(ps)) != NULL) FAIL(why);
            size_t stored =
                req->target_len < HTTP_TARGET_CAP - 1 ? req->target_len : HTTP_TARGET_CAP - 1;
            req->target[stored] = '\0';
            req->target_truncated = req->target_len > HTTP_TARGET_CAP - 1;
            find_path(req, ps->form);
            ps->state = S_VERSION;
            ps->index = 0;
            p++;
            break;
        }

        case S_VERSION:
            /* "HTTP/" DIGIT "." DIGIT, then CRLF: at once when it is all here */
            if (ps->index == 0 && end - p >= 9 && memcmp(p, "HTTP/", 5) == 0 && is(p[5], C_DIGIT) &&
                p[6] == '.' && is(p[7], C_DIGIT) && p[8] == '\r') {
                req->http_major = (unsigned short)(p[5] - '0');
                req->http_minor = (unsigned short)(p[7] - '0');
                ps->state = S_LINE_LF;
                p += 9;
                break;
            }
            while (p < end) {
                c = *p;
                unsigned i = ps->index;
                if (i < 5) {
                    if (c != (uint8_t) "HTTP/"[i]) FAIL("invalid HTTP version");
                } else if (i == 5 || i == 7) {
                    if (!is(c, C_DIGIT)) FAIL("invalid HTTP version");
                    if (i == 5)
                        req->http_major = (unsigned short)(c - '0');
                    else
                        req->http_minor = (unsigned short)(c - '0');
                } else if (i == 6) {
                    if (c != '.') FAIL("invalid HTTP version");
                } else {
                    if (c == '\n') FAIL("bare LF");
                    if (c != '\r') FAIL("invalid HTTP version");
                    ps->state = S_LINE_LF;
                    p++;
                    break;
                }
                ps->index++;
                p++;
            }
            break;

        case S_LINE_LF:
            if (*p != '\n') FAIL("bare CR");
            ps->state = S_FIELD_START;
            p++;
            break;

        case S_FIELD_START:
            c = *p;
            if (is(c, C_TCHAR)) {
                ps->state = S_NAME;
                ps->buf_len = 0;
                break;
            }
            if (c == '\r') {
                ps->state = S_END_LF;
                p++;
                break;
            }
            if (c == '\n') FAIL("bare LF");
            if (ows(c)) {
                /* RFC 9112 §5.2 (obs-fold) and §2.2 */
                FAIL(ps->flags & FL_FIELD_SEEN ? "obs-fold" : "whitespace before the first field");
            }
            FAIL(c == ':' ? "empty field name" : "invalid byte in field name");

        case S_NAME: {
            const uint8_t *s = p;
            while (p < end && is(*p, C_TCHAR))
                p++;
            keep(ps, s, (size_t)(p - s), 0x20);
            if (p == end) break;
            c = *p;
            if (c == ':') {
                ps->flags |= FL_FIELD_SEEN;
                if ((why = name_end(ps)) != NULL) FAIL(why);
                ps->state = S_VALUE_OWS;
                p++;
                break;
            }
            if (ows(c)) {
                ps->state = S_NAME_WS;
                p++;
                break;
            }
            if (c == '\r' || c == '\n') FAIL("field line without colon");
            FAIL("invalid byte in field name");
        }

        case S_NAME_WS:
            /* RFC 9112 §5.1: whitespace before the colon is a bad request */
            while (p < end && ows(*p))
                p++;
            if (p == end) break;
            FAIL(*p == ':' ? "whitespace before colon" : "whitespace in field name");

        case S_VALUE_OWS:
            while (p < end && ows(*p))
                p++;
            if (p == end) break;
            if (is(*p, C_FIELD) && ps->field == F_UPGRADE) ps->flags |= FL_UPGRADE;
            ps->state = S_VALUE;
            /* fall through */
        case S_VALUE:
            if (ps->field == F_OTHER) {
                p = skip_field_value(p, end);
            } else {
                while (p < end && is(c = *p, C_FIELD)) {
                    /* runs of the common bytes of a Host or a list, at once */
                    if (ps->field == F_HOST && ps->sub <= HO_REG && is(c, C_HOST)) {
                        do
                            p++;
                        while (p < end && is(*p, C_HOST));
                        ps->sub = HO_REG;
                        continue;
                    }
                    if (ps->sub == L_TOKEN && is(c, C_TCHAR) &&
                        (ps->field == F_CONNECTION || ps->field == F_TRANSFER_ENCODING)) {
                        const uint8_t *s = p;
                        do
                            p++;
                        while (p < end && is(*p, C_TCHAR));
                        keep(ps, s, (size_t)(p - s), 0x20);
                        continue;
                    }
                    if ((why = field_byte(ps, c)) != NULL) FAIL(why);
                    p++;
                }
            }
            if (p == end) break;
            c = *p;
            if (c == '\n') FAIL("bare LF");
            if (c != '\r') FAIL("control character in field value");
            if (ps->field != F_OTHER && (why = field_end(ps)) != NULL) FAIL(why);
            ps->state = S_LINE_LF;
            p++;
            break;

        case S_END_LF:
            if (*p != '\n') FAIL("bare CR");
            p++;
            if (ps->phase == HTTP_PHASE_TRAILER)
                r = request_done(ps);
            else
                r = head_done(ps);
            /* A body may follow at once: the caller's loop goes on. */
            goto out;

        default: /* never */ FAIL("internal error");
        }
    }
out:
    *pp = p;
    return r;
}

/* ---- the body -------------------------------------------------------------------- */

/* One byte (not CR or LF) of a chunk size line after its size: extensions,
 * *( BWS ";" BWS name [ BWS "=" BWS ( token / quoted-string ) ] ). Returns
 * an error's why or NULL. */
static const char *chunk_ext_byte(struct http_parse *ps, uint8_t c) {
    switch (ps->sub) {
    case X_WS:
        if (ows(c)) return NULL;
        if (c == ';')
            ps->sub = X_NAME_START;
        else
            return "invalid chunk extension";
        return NULL;
    case X_NAME_START:
        if (ows(c)) return NULL;
        if (!is(c, C_TCHAR)) return "invalid chunk extension";
        ps->sub = X_NAME;
        return NULL;
    case X_NAME:
        if (is(c, C_TCHAR)) return NULL;
        if (c == '=')
            ps->sub = X_VALUE_START;
        else if (c == ';')
            ps->sub = X_NAME_START;
        else if (ows(c))
            ps->sub = X_NAME_WS;
        else
            return "invalid chunk extension";
        return NULL;
    case X_NAME_WS:
        if (ows(c)) return NULL;
        if (c == '=')
            ps->sub = X_VALUE_START;
        else if (c == ';')
            ps->sub = X_NAME_START;
        else
            return "invalid chunk extension";
        return NULL;
    case X_VALUE_START:
        if (ows(c)) return NULL;
        if (c == '"')
            ps->sub = X_QUOTED;
        else if (is(c, C_TCHAR))
            ps->sub = X_TOKEN;
        else
            return "invalid chunk extension";
        return NULL;
    case X_TOKEN:
        if (is(c, C_TCHAR)) return NULL;
        if (c == ';')
            ps->sub = X_NAME_START;
        else if (ows(c))
            ps->sub = X_WS;
        else
            return "invalid chunk extension";
        return NULL;
    case X_QUOTED:
        if (c == '"')
            ps->sub = X_AFTER_QUOTED;
        else if (c == '\\')
            ps->sub = X_QUOTED_PAIR;
        else if (!is(c, C_QDTEXT))
            return "invalid chunk extension";
        return NULL;
    case X_QUOTED_PAIR:
        if (!is(c, C_FIELD)) return "invalid chunk extension";
        ps->sub = X_QUOTED;
        return NULL;
    default: /* X_AFTER_QUOTED */
        if (c == ';')
            ps->sub = X_NAME_START;
        else if (ows(c))
            ps->sub = X_WS;
        else
            return "invalid chunk extension";
        return NULL;
    }
}

/* Body bytes in [p, end): a Content-Length body or chunks up to the last
 * chunk's line (the trailer section is lines'). */
static enum http_parse_result body(struct http_parse *ps, const uint8_t **pp, const uint8_t *end) {
    const uint8_t *p = *pp;
    enum http_parse_result r = HTTP_PARSE_MORE;
    const char *why;
    uint8_t c;

    while (p < end) {
        switch (ps->state) {
        case S_BODY:
        case S_CHUNK_DATA: {
            size_t n = (size_t)(end - p);
            if (n > ps->remaining) n = (size_t)ps->remaining;
            p += n;
            ps->remaining -= n;
            if (ps->remaining > 0) break;
            if (ps->state == S_BODY) {
                r = request_done(ps);
                goto out;
            }
            ps->state = S_CHUNK_DATA_CR;
            break;
        }
        case S_CHUNK_DATA_CR:
        case S_CHUNK_DATA_LF:
            if (*p != (ps->state == S_CHUNK_DATA_CR ? '\r' : '\n'))
                FAIL("chunk data not followed by CRLF");
            ps->state = ps->state == S_CHUNK_DATA_CR ? S_CHUNK_DATA_LF : S_CHUNK_SIZE;
            ps->count = 0;
            p++;
            break;

        default: {
            /* A chunk size line: each byte counts against its limit. */
            const uint8_t *lim = end;
            if ((size_t)(end - p) > HTTP_CHUNK_LINE_MAX - ps->count)
                lim = p + (HTTP_CHUNK_LINE_MAX - ps->count);
            const uint8_t *s = p;
            while (p < lim) {
                c = *p;
                if (ps->state == S_CHUNK_SIZE || ps->state == S_CHUNK_SIZE_MORE) {
                    if (is(c, C_HEX)) {
                        if (ps->state == S_CHUNK_SIZE)
                            ps->number = 0;
                        else if (ps->number >> 60)
                            FAIL("chunk size overflows");
                        ps->number = ps->number << 4 | (uint64_t)hexval(c);
                        ps->state = S_CHUNK_SIZE_MORE;
                        p++;
                        continue;
                    }
                    if (ps->state == S_CHUNK_SIZE) FAIL("invalid chunk size");
                    if (c == ';' || ows(c)) {
                        ps->state = S_CHUNK_EXT;
                        ps->sub = c == ';' ? X_NAME_START : X_WS;
                        p++;
                        continue;
                    }
                    if (c == '\n') FAIL("bare LF");
                    if (c != '\r') FAIL("invalid chunk size");
                    ps->state = S_CHUNK_LF;
                    p++;
                    continue;
                }
                if (ps->state == S_CHUNK_EXT) {
                    if (c == '\r') {
                        /* "5 \r\n": whitespace is only allowed before ';' or '=' */
                        if (ps->sub == X_WS || ps->sub == X_NAME_WS)
                            FAIL("whitespace at the end of a chunk line");
                        if (ps->sub != X_NAME && ps->sub != X_TOKEN && ps->sub != X_AFTER_QUOTED)
                            FAIL("invalid chunk extension");
                        ps->state = S_CHUNK_LF;
                    } else if (c == '\n') {
                        FAIL("bare LF");
                    } else if ((why = chunk_ext_byte(ps, c)) != NULL) {
                        FAIL(why);
                    }
                    p++;
                    continue;
                }
                /* S_CHUNK_LF */
                if (c != '\n') FAIL("bare CR");
                p++;
                ps->count += (uint32_t)(p - s);
                s = p;
                if (ps->number == 0) {
                    /* the last chunk: a trailer section follows */
                    ps->phase = HTTP_PHASE_TRAILER;
                    ps->state = S_FIELD_START;
                    ps->flags &= (uint16_t)~FL_FIELD_SEEN;
                    ps->count = 0;
                    goto out;
                }
                ps->state = S_CHUNK_DATA;
                ps->remaining = ps->number;
                break;
            }
            ps->count += (uint32_t)(p - s);
            if (ps->count >= HTTP_CHUNK_LINE_MAX && ps->state != S_CHUNK_DATA)
                FAIL("chunk line too long");
            break;
        }
        }
    }
out:
    ps->body_bytes += (uint64_t)(p - *pp);
    *pp = p;
    return r;
}

/* ---- the entry points ------------------------------------------------------------ */

void http_parse_init(struct http_parse *ps) {
    memset(ps, 0, sizeof *ps);
    ps->phase = HTTP_PHASE_IDLE;
    ps->done = HTTP_PARSE_MORE;
    ps->why = NULL;
    ps->req.path = ps->req.target;
}

enum http_parse_result http_parse(struct http_parse *ps, const char *data, size_t len,
                                  size_t *consumed) {
    const uint8_t *p = (const uint8_t *)data, *end = p + len;
    enum http_parse_result r = HTTP_PARSE_MORE;
    *consumed = 0;
    if (ps->phase == HTTP_PHASE_DONE) return ps->done;
    while (p < end && r == HTTP_PARSE_MORE) {
        if (ps->phase == HTTP_PHASE_BODY) {
            r = body(ps, &p, end);
            continue;
        }
        /* A head or a trailer section: never more than HTTP_HEAD_MAX bytes,
         * so that one too large is found at the same byte however the input
         * is cut (and before any error further on). */
        if (ps->phase == HTTP_PHASE_IDLE) start_request(ps);
        bool trailer = ps->phase == HTTP_PHASE_TRAILER;
        const uint8_t *s = p, *lim = end;
        if ((size_t)(end - p) > HTTP_HEAD_MAX - ps->count) lim = p + (HTTP_HEAD_MAX - ps->count);
        r = lines(ps, &p, lim);
        /* ps->count is that of the next section when this one ended */
        if (r == HTTP_PARSE_MORE && ps->phase == (trailer ? HTTP_PHASE_TRAILER : HTTP_PHASE_HEAD))
            ps->count += (uint32_t)(p - s);
        if (trailer) ps->body_bytes += (uint64_t)(p - s);
        if (r == HTTP_PARSE_MORE && ps->count == HTTP_HEAD_MAX &&
            ps->phase == (trailer ? HTTP_PHASE_TRAILER : HTTP_PHASE_HEAD))
            r = fail(ps, HTTP_PARSE_TOO_LARGE,
                     trailer ? "trailer section too large" : "request head too large");
    }
    *consumed = (size_t)(p - (const uint8_t *)data);
    return r;
}
