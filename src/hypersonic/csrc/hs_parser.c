/*
 * hs_parser.c - the HTTP/1.1 request-head parser and the chunked body
 * decoder declared in hs_parser.h (RFC 9112, RFC 9110). This file owns the
 * byte-level grammar and the framing rules (Content-Length, Transfer-Encoding,
 * Host, Connection, Expect); it does no I/O and never allocates.
 *
 * Design (in the spirit of picohttpparser, written from scratch):
 *  - hs_parse_request is stateless: it re-parses from buf[0] each time more
 *    bytes arrive. It looks at no byte at or past buf[min(len, max_head)], so it
 *    never reads past buf[len - 1] and the head limit also bounds its work.
 *  - character classes come from one 256-entry table; the long runs (request
 *    target, field values) are scanned eight bytes at a time with portable
 *    SWAR arithmetic (no SIMD flags needed: the JIT builds with plain -O2);
 *    the stop byte is located exactly (trailing-zero count, little-endian)
 *    or by the table (elsewhere). Field names go four bytes per bound check.
 *  - the chunked decoder is a byte-level state machine whose state lives in
 *    hs_chunked_decoder, so a body can arrive split at any byte; payload runs
 *    are moved with one memmove each.
 */
#include "hs_parser.h"

#include <limits.h>
#include <string.h>

/* ---- limits of the chunked decoder (named, documented in RELIABILITY.md) -- */

/* Hex digits in a chunk-size: 16 hold any uint64_t, so more (even leading
 * zeros) is rejected as an overlong size before it could overflow. */
#define HS_CHUNK_MAX_SIZE_DIGITS 16
/* Bytes of one chunk-size line before its CRLF: size, BWS and chunk-ext. */
#define HS_CHUNK_MAX_LINE 4096
/* Bytes of the trailer section: every trailer field line with its CRLF, and
 * the final CRLF (so "0\r\n\r\n" has a 2-byte trailer section). */
#define HS_CHUNK_MAX_TRAILER HS_DEFAULT_MAX_HEAD

/* ---- character classes -------------------------------------------------- */

#define HS_C_TCHAR 1  /* tchar, RFC 9110 5.6.2 */
#define HS_C_VALUE 2  /* field-vchar / SP / HTAB / obs-text, RFC 9110 5.5 */
#define HS_C_TARGET 4 /* VCHAR allowed in a request-target, RFC 9112 3.2 */
#define HS_C_HOST 8   /* uri-host [":" port] bytes, RFC 3986 3.2.2 */

static const unsigned char hs_char_class[256] = {
     0,  0,  0,  0,  0,  0,  0,  0,  0,  2,  0,  0,  0,  0,  0,  0, /* 0x00 */
     0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0,  0, /* 0x10 */
     2, 15,  6,  7, 15, 15, 15, 15, 14, 14, 15, 15, 14, 15, 15,  6, /* 0x20 */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 14, 14,  6, 14,  6,  6, /* 0x30 */
     6, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, /* 0x40 */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 14,  6, 14,  7, 15, /* 0x50 */
     7, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15, /* 0x60 */
    15, 15, 15, 15, 15, 15, 15, 15, 15, 15, 15,  6,  7,  6, 15,  0, /* 0x70 */
     2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2, /* 0x80 */
     2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2, /* 0x90 */
     2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2, /* 0xA0 */
     2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2, /* 0xB0 */
     2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2, /* 0xC0 */
     2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2, /* 0xD0 */
     2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2, /* 0xE0 */
     2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2,  2, /* 0xF0 */
};

/* Value of a hex digit, HS_NOT_HEX otherwise (chunk-size, RFC 9112 7.1). */
#define HS_NOT_HEX 255
static const unsigned char hs_hex_value[256] = {
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, /* 0x00 */
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, /* 0x10 */
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, /* 0x20 */
      0,   1,   2,   3,   4,   5,   6,   7,   8,   9, 255, 255, 255, 255, 255, 255, /* 0x30 */
    255,  10,  11,  12,  13,  14,  15, 255, 255, 255, 255, 255, 255, 255, 255, 255, /* 0x40 */
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, /* 0x50 */
    255,  10,  11,  12,  13,  14,  15, 255, 255, 255, 255, 255, 255, 255, 255, 255, /* 0x60 */
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, /* 0x70 */
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, /* 0x80 */
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, /* 0x90 */
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, /* 0xA0 */
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, /* 0xB0 */
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, /* 0xC0 */
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, /* 0xD0 */
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, /* 0xE0 */
    255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, /* 0xF0 */
};

#define HS_IS(c, cls) (hs_char_class[(unsigned char)(c)] & (cls))

/* ---- SWAR helpers: eight bytes at a time, any endianness ----------------- */

#define HS_SWAR_ONES UINT64_C(0x0101010101010101)
#define HS_SWAR_HIGHS UINT64_C(0x8080808080808080)
#define HS_WORD_BYTES 8

static inline uint64_t hs_load_word(const unsigned char *p)
{
    uint64_t w;
    memcpy(&w, p, sizeof w);
    return w;
}

/* Nonzero when some byte of w is < n (valid for n <= 128). */
#define HS_SWAR_HAS_LESS(w, n) (((w) - HS_SWAR_ONES * (n)) & ~(w) & HS_SWAR_HIGHS)
/* Nonzero when some byte of w is > n (valid for n <= 127). */
#define HS_SWAR_HAS_MORE(w, n) ((((w) + HS_SWAR_ONES * (127 - (n))) | (w)) & HS_SWAR_HIGHS)
/* Nonzero when some byte of w equals b. */
#define HS_SWAR_HAS_BYTE(w, b) HS_SWAR_HAS_LESS((w) ^ (HS_SWAR_ONES * (b)), 1)

/*
 * Position of the first flagged byte of a nonzero SWAR mask. The masks above
 * are exact for their lowest flagged byte (a borrow or carry only runs
 * upwards from a byte that is itself flagged), so on a little-endian machine
 * the count of trailing zero bits locates it; elsewhere the caller rescans
 * the word with the table.
 */
#if defined(__GNUC__) && defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__ && \
    !defined(HS_PARSER_PORTABLE_SCAN) /* tests build the portable path too */
#define HS_SWAR_EXACT 1
#define HS_SWAR_FIRST(mask) ((size_t)__builtin_ctzll(mask) / 8)
#else
#define HS_SWAR_EXACT 0
#endif

/* Bytes of w that end a request-target run: not 0x21..0x7E. */
#define HS_TARGET_STOPS(w) (HS_SWAR_HAS_LESS(w, 0x21) | HS_SWAR_HAS_MORE(w, 0x7E))
/* Bytes of w that end a field-value run: any CTL (HTAB included: rare, it is
 * re-checked with the table) and DEL. */
#define HS_VALUE_STOPS(w) (HS_SWAR_HAS_LESS(w, 0x20) | HS_SWAR_HAS_BYTE(w, 0x7F))

/*
 * Advance over a run of request-target bytes (in_value 0: 0x21..0x7E) or of
 * field-value bytes (in_value 1: HTAB, SP, VCHAR, obs-text), eight at a time
 * while the SWAR test finds no stop byte, and return the first byte outside
 * the class (for values: CR, LF, another CTL, NUL or DEL), or end. Called
 * with a constant in_value, so each call site compiles to its own loop.
 */
static inline const unsigned char *hs_scan_run(const unsigned char *p, const unsigned char *end,
                                               int in_value)
{
    const unsigned char cls = in_value ? HS_C_VALUE : HS_C_TARGET;
    for (;;) {
        uint64_t mask = 0;
        while ((size_t)(end - p) >= HS_WORD_BYTES) {
            uint64_t w = hs_load_word(p);
            mask = in_value ? HS_VALUE_STOPS(w) : HS_TARGET_STOPS(w);
            if (mask)
                break;
            p += HS_WORD_BYTES;
        }
#if HS_SWAR_EXACT
        if (mask) {
            p += HS_SWAR_FIRST(mask);
            if (!HS_IS(*p, cls))
                return p;
            p++; /* a stop byte that belongs to the class (HTAB in a value) */
            continue;
        }
#endif
        /* fewer than eight bytes left, or a word to rescan with the table */
        const unsigned char *stop = ((size_t)(end - p) >= HS_WORD_BYTES) ? p + HS_WORD_BYTES : end;
        while (p < stop && HS_IS(*p, cls))
            p++;
        if (p < stop || p == end)
            return p;
    }
}

static inline const unsigned char *hs_scan_target(const unsigned char *p, const unsigned char *end)
{
    return hs_scan_run(p, end, 0);
}

static inline const unsigned char *hs_scan_value(const unsigned char *p, const unsigned char *end)
{
    return hs_scan_run(p, end, 1);
}

/* Advance over tchar bytes (field names), four per step with one bound check. */
static inline const unsigned char *hs_scan_token(const unsigned char *p,
                                                 const unsigned char *end)
{
    while ((size_t)(end - p) >= 4) {
        if (!HS_IS(p[0], HS_C_TCHAR))
            return p;
        if (!HS_IS(p[1], HS_C_TCHAR))
            return p + 1;
        if (!HS_IS(p[2], HS_C_TCHAR))
            return p + 2;
        if (!HS_IS(p[3], HS_C_TCHAR))
            return p + 3;
        p += 4;
    }
    while (p < end && HS_IS(*p, HS_C_TCHAR))
        p++;
    return p;
}

static inline unsigned char hs_lower(unsigned char c)
{
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c | 0x20) : c;
}

HS_API int hs_token_eq(const char *a, size_t n, const char *lit)
{
    size_t i;
    for (i = 0; i < n; i++) {
        if (lit[i] == '\0' || hs_lower((unsigned char)a[i]) != (unsigned char)lit[i])
            return 0;
    }
    return lit[n] == '\0';
}

HS_API void hs_limits_default(hs_limits *lim)
{
    lim->max_uri = HS_DEFAULT_MAX_URI;
    lim->max_head = HS_DEFAULT_MAX_HEAD;
    lim->max_headers = HS_MAX_HEADERS;
    lim->max_body = HS_DEFAULT_MAX_BODY;
}

/* ---- list elements (RFC 9110 5.6.1) ------------------------------------- */

static inline int hs_is_ows(unsigned char c)
{
    return c == ' ' || c == '\t';
}

/*
 * Take the next comma-separated element of v[*pos..n), OWS-trimmed.
 * Returns 0 when the list is exhausted.
 */
static int hs_next_element(const char *v, size_t n, size_t *pos, const char **el,
                           size_t *el_len)
{
    size_t i = *pos, start, stop;
    if (i > n)
        return 0;
    while (i < n && hs_is_ows((unsigned char)v[i]))
        i++;
    start = i;
    while (i < n && v[i] != ',')
        i++;
    stop = i;
    while (stop > start && hs_is_ows((unsigned char)v[stop - 1]))
        stop--;
    *el = v + start;
    *el_len = stop - start;
    *pos = i + 1; /* past the comma; > n once the last element is taken */
    return 1;
}

static int hs_is_token(const char *s, size_t n)
{
    size_t i;
    if (n == 0)
        return 0;
    for (i = 0; i < n; i++) {
        if (!HS_IS(s[i], HS_C_TCHAR))
            return 0;
    }
    return 1;
}

/* ---- semantics of the framing fields ------------------------------------ */

/* Transfer-Encoding verdicts */
#define HS_TE_NONE 0
#define HS_TE_CHUNKED 1     /* exactly "chunked" */
#define HS_TE_UNSUPPORTED 2 /* valid list ending in chunked, other codings: 501 */
#define HS_TE_INVALID 3     /* not ending in chunked, chunked twice, junk: 400 */

typedef struct hs_fields {
    unsigned host_count;
    int host_invalid;
    unsigned cl_count;
    int cl_too_large;
    uint64_t content_length;
    unsigned te_count;
    int te;
    int conn_close;
    int conn_keep_alive;
    int expect_continue;
} hs_fields;

/*
 * RFC 9112 6.1 / 6.3: a Transfer-Encoding list must end in chunked, chunked
 * must not be applied twice; codings other than chunked are not implemented
 * (501). Empty list elements and non-token elements are rejected rather than
 * ignored: any leniency here is what TE.TE request smuggling feeds on.
 */
static int hs_classify_te(const char *v, size_t n)
{
    size_t pos = 0, el_len;
    const char *el;
    int elements = 0, last_chunked = 0, other = 0;
    while (hs_next_element(v, n, &pos, &el, &el_len)) {
        if (!hs_is_token(el, el_len))
            return HS_TE_INVALID;
        if (last_chunked)
            return HS_TE_INVALID; /* chunked not final, or applied twice */
        elements++;
        if (hs_token_eq(el, el_len, "chunked"))
            last_chunked = 1;
        else
            other = 1;
    }
    if (!last_chunked)
        return HS_TE_INVALID;
    return (elements == 1 && !other) ? HS_TE_CHUNKED : HS_TE_UNSUPPORTED;
}

/* Connection options, RFC 9110 7.6.1; tokens compared case-insensitively. */
static void hs_scan_connection(hs_fields *f, const char *v, size_t n)
{
    size_t pos = 0, el_len;
    const char *el;
    while (hs_next_element(v, n, &pos, &el, &el_len)) {
        if (hs_token_eq(el, el_len, "close"))
            f->conn_close = 1;
        else if (hs_token_eq(el, el_len, "keep-alive"))
            f->conn_keep_alive = 1;
    }
}

/* Content-Length = 1*DIGIT (RFC 9110 8.6). Returns 0 or a status code. */
static int hs_parse_content_length(hs_fields *f, const char *v, size_t n, uint64_t max_body)
{
    uint64_t value = 0;
    size_t i;
    int too_large = 0;
    /* RFC 9112 6.3 point 5: a repeated field (even with equal values) or a
     * list is an unrecoverable framing error; we never pick one. */
    if (++f->cl_count > 1 || n == 0)
        return 400;
    for (i = 0; i < n; i++) {
        unsigned d = (unsigned char)v[i] - (unsigned)'0';
        if (d > 9)
            return 400;
        if (value > (UINT64_MAX - d) / 10)
            too_large = 1; /* keep validating the remaining digits */
        else
            value = value * 10 + d;
    }
    if (too_large || value > max_body)
        f->cl_too_large = 1;
    f->content_length = value;
    return 0;
}

/* Host = uri-host [":" port] (RFC 9110 7.2), empty allowed. 0 or a status. */
static int hs_check_host(hs_fields *f, const char *v, size_t n)
{
    size_t i;
    f->host_count++;
    for (i = 0; i < n; i++) {
        if (!HS_IS(v[i], HS_C_HOST)) {
            f->host_invalid = 1;
            break;
        }
    }
    return 0;
}

/* Dispatch one field to the rule that concerns it. Returns 0 or a status. */
static inline int hs_field(hs_fields *f, const char *name, size_t name_len,
                           const char *value, size_t value_len, uint64_t max_body)
{
    switch (name_len) {
    case 4:
        if (hs_token_eq(name, 4, "host"))
            return hs_check_host(f, value, value_len);
        break;
    case 6:
        if (hs_token_eq(name, 6, "expect") && hs_token_eq(value, value_len, "100-continue"))
            f->expect_continue = 1;
        break;
    case 10:
        if (hs_token_eq(name, 10, "connection"))
            hs_scan_connection(f, value, value_len);
        break;
    case 14:
        if (hs_token_eq(name, 14, "content-length"))
            return hs_parse_content_length(f, value, value_len, max_body);
        break;
    case 17:
        if (hs_token_eq(name, 17, "transfer-encoding")) {
            f->te_count++;
            f->te = hs_classify_te(value, value_len);
        }
        break;
    default:
        break;
    }
    return 0;
}

/* ---- the request-target (RFC 9112 3.2) ---------------------------------- */

/* The query is what follows the '?' at t[path_end] (none when path_end == n). */
static void hs_set_query(hs_request *req, const char *t, size_t path_end, size_t n)
{
    if (path_end < n) {
        req->query = t + path_end + 1;
        req->query_len = n - path_end - 1;
    } else {
        req->query = NULL;
        req->query_len = 0;
    }
}

/* Split the target into path and query; 0 or a status code. */
static int hs_split_target(hs_request *req)
{
    const char *t = req->target;
    size_t n = req->target_len, i, path_start, path_end;

    if (t[0] == '/') {
        /* origin-form = absolute-path [ "?" query ] (RFC 9112 3.2.1) */
        path_start = 0;
    } else if (n == 1 && t[0] == '*') {
        /* asterisk-form, only for a server-wide OPTIONS (RFC 9112 3.2.4) */
        if (!(req->method_len == 7 && memcmp(req->method, "OPTIONS", 7) == 0))
            return 400;
        req->path = t;
        req->path_len = 1;
        req->query = NULL;
        req->query_len = 0;
        return 0;
    } else {
        /* absolute-form (RFC 9112 3.2.2): "http://" or "https://" authority
         * path-abempty [ "?" query ]. The scheme is case-insensitive
         * (RFC 3986 3.1). Anything else, authority-form (RFC 9112 3.2.3, for
         * CONNECT, which we do not proxy) included, is 400. */
        size_t scheme_len;
        if (n >= 7 && hs_token_eq(t, 7, "http://"))
            scheme_len = 7;
        else if (n >= 8 && hs_token_eq(t, 8, "https://"))
            scheme_len = 8;
        else
            return 400;
        i = scheme_len;
        while (i < n && t[i] != '/' && t[i] != '?') {
            /* userinfo is deprecated and treated as an error (RFC 9110 4.2.4) */
            if (t[i] == '@' || !HS_IS(t[i], HS_C_HOST))
                return 400;
            i++;
        }
        if (i == scheme_len)
            return 400; /* http(s) URIs need a non-empty host (RFC 9110 4.2.1) */
        if (i == n || t[i] == '?') {
            /* empty path-abempty means "/" (RFC 9110 4.2.3); point at the
             * second '/' of "://" so the path stays inside the buffer */
            req->path = t + scheme_len - 1;
            req->path_len = 1;
            hs_set_query(req, t, i, n);
            return 0;
        }
        path_start = i;
    }
    {
        const char *q = memchr(t + path_start, '?', n - path_start);
        path_end = q ? (size_t)(q - t) : n;
    }
    req->path = t + path_start;
    req->path_len = path_end - path_start;
    hs_set_query(req, t, path_end, n);
    return 0;
}

/* ---- the request head --------------------------------------------------- */

/*
 * The input ended (at len, or at the head limit) while everything seen was
 * valid: the head is partial, unless max_head bytes are already here, in which
 * case its complete form is necessarily longer than max_head (431).
 */
static int hs_ran_out(size_t len, size_t max_head, int *status)
{
    if (len >= max_head) {
        *status = 431;
        return HS_PARSE_ERROR;
    }
    return HS_PARSE_PARTIAL;
}

#define HS_FAIL(code)                                                                  \
    do {                                                                               \
        *status = (code);                                                              \
        return HS_PARSE_ERROR;                                                         \
    } while (0)
#define HS_RAN_OUT() return hs_ran_out(len, max_head, status)

HS_API int hs_parse_request(const char *buf, size_t len, const hs_limits *lim,
                            hs_request *req, int *status)
{
    hs_limits defaults;
    hs_fields fields;
    const unsigned char *start = (const unsigned char *)buf;
    const unsigned char *p, *end, *mark;
    size_t max_head, max_headers, num_headers = 0;
    int rc;

    if (lim == NULL) {
        hs_limits_default(&defaults);
        lim = &defaults;
    }
    /* Bytes past max_head are never looked at: the head must end before.
     * (max_head is capped so that the returned length fits in an int.) */
    max_head = lim->max_head < (size_t)INT_MAX ? lim->max_head : (size_t)INT_MAX;
    p = start;
    end = start + (len < max_head ? len : max_head);
    max_headers = lim->max_headers < HS_MAX_HEADERS ? lim->max_headers : HS_MAX_HEADERS;

    /* RFC 9112 2.2: a server SHOULD ignore at least one empty line (CRLF)
     * received prior to the request-line. All lines end in CRLF; a bare CR
     * or LF is rejected (RFC 9112 2.2 allows, never requires, leniency). */
    for (;;) {
        if (HS_UNLIKELY(p == end))
            HS_RAN_OUT();
        if (HS_LIKELY(*p != '\r')) {
            if (*p == '\n')
                HS_FAIL(400);
            break;
        }
        if (p + 1 == end)
            HS_RAN_OUT();
        if (p[1] != '\n')
            HS_FAIL(400);
        p += 2;
    }

    /* request-line = method SP request-target SP HTTP-version (RFC 9112 3);
     * method = token (RFC 9110 9.1), at most HS_MAX_METHOD bytes. */
    mark = p;
    while (p < end && HS_IS(*p, HS_C_TCHAR)) {
        p++;
        if (HS_UNLIKELY((size_t)(p - mark) > HS_MAX_METHOD))
            HS_FAIL(400);
    }
    if (HS_UNLIKELY(p == end))
        HS_RAN_OUT();
    if (HS_UNLIKELY(*p != ' ' || p == mark))
        HS_FAIL(400); /* exactly one SP separates the parts (RFC 9112 3) */
    req->method = (const char *)mark;
    req->method_len = (size_t)(p - mark);
    p++;

    /* request-target: visible ASCII only (RFC 9112 3.2; whitespace is not
     * allowed inside it, RFC 9112 3.2 last paragraph), at most max_uri bytes
     * (RFC 9112 3: 414 for a target longer than the server will parse). */
    mark = p;
    p = hs_scan_target(p, end);
    if (HS_UNLIKELY((size_t)(p - mark) > lim->max_uri))
        HS_FAIL(414);
    if (HS_UNLIKELY(p == end))
        HS_RAN_OUT();
    if (HS_UNLIKELY(*p != ' ' || p == mark))
        HS_FAIL(400);
    req->target = (const char *)mark;
    req->target_len = (size_t)(p - mark);
    p++;

    /* HTTP-version = "HTTP/" DIGIT "." DIGIT, case-sensitive (RFC 9112 2.3),
     * then CRLF. Checked byte by byte so a partial line fails early. */
    {
        static const char version_shape[] = "HTTP/d.d\r\n";
        size_t avail = (size_t)(end - p), i, want = sizeof version_shape - 1;
        for (i = 0; i < want && i < avail; i++) {
            unsigned char c = p[i];
            if (version_shape[i] == 'd' ? (c < '0' || c > '9') : c != (unsigned char)version_shape[i])
                HS_FAIL(400);
        }
        if (HS_UNLIKELY(avail < want))
            HS_RAN_OUT();
        /* Only HTTP/1.0 and HTTP/1.1 are served; any other well-formed
         * version is 505 (RFC 9110 15.6.6: the server "does not support, or
         * refuses to support" it). That includes HTTP/1.2..1.9: RFC 9110 2.5
         * says a recipient SHOULD process an unknown 1.x minor as 1.1; we
         * deliberately refuse instead (no real client sends one, and a
         * version we have not seen is one we do not guess about). This is
         * the contract in hs_parser.h that the socket layer and the
         * smuggling suite are written against. */
        if (HS_UNLIKELY(p[5] != '1' || (p[7] != '0' && p[7] != '1')))
            HS_FAIL(505);
        req->minor_version = p[7] - '0';
        p += want;
    }

    memset(&fields, 0, sizeof fields);

    /* field-line = field-name ":" OWS field-value OWS, CRLF (RFC 9112 5) */
    for (;;) {
        const unsigned char *name, *name_end, *value, *value_end;
        if (HS_UNLIKELY(p == end))
            HS_RAN_OUT();
        if (*p == '\r') {
            if (p + 1 == end)
                HS_RAN_OUT();
            if (p[1] != '\n')
                HS_FAIL(400);
            p += 2;
            break; /* the empty line ending the head */
        }
        /* obs-fold (RFC 9112 5.2: reject with 400), or whitespace between
         * the start-line and the first field (RFC 9112 2.2: reject). */
        if (HS_UNLIKELY(*p == ' ' || *p == '\t'))
            HS_FAIL(400);
        if (HS_UNLIKELY(num_headers == max_headers))
            HS_FAIL(431);
        name = p;
        p = hs_scan_token(p, end);
        if (HS_UNLIKELY(p == end))
            HS_RAN_OUT();
        /* field-name = token (RFC 9110 5.1); no whitespace is allowed between
         * it and the colon: 400 (RFC 9112 5.1). A bare LF/CR lands here too. */
        if (HS_UNLIKELY(*p != ':' || p == name))
            HS_FAIL(400);
        name_end = p;
        p++;
        while (p < end && hs_is_ows(*p))
            p++;
        value = p;
        p = hs_scan_value(p, end);
        if (HS_UNLIKELY(p == end))
            HS_RAN_OUT();
        /* field-value bytes end at CR LF; NUL, other CTLs, DEL and a bare LF
         * or CR are invalid (RFC 9110 5.5, RFC 9112 2.2). */
        if (HS_UNLIKELY(*p != '\r'))
            HS_FAIL(400);
        if (HS_UNLIKELY(p + 1 == end))
            HS_RAN_OUT();
        if (HS_UNLIKELY(p[1] != '\n'))
            HS_FAIL(400);
        value_end = p;
        while (value_end > value && hs_is_ows(value_end[-1]))
            value_end--;
        p += 2;
        {
            hs_header *h = &req->headers[num_headers++];
            h->name = (const char *)name;
            h->name_len = (size_t)(name_end - name);
            h->value = (const char *)value;
            h->value_len = (size_t)(value_end - value);
            rc = hs_field(&fields, h->name, h->name_len, h->value, h->value_len, lim->max_body);
            if (HS_UNLIKELY(rc != 0))
                HS_FAIL(rc);
        }
    }
    req->num_headers = num_headers;

    /* Framing (RFC 9112 6.1, 6.3), in order of precedence: */
    if (fields.te_count) {
        if (fields.te_count > 1)
            HS_FAIL(400); /* repeated field: refuse to combine */
        if (fields.cl_count)
            HS_FAIL(400); /* RFC 9112 6.1: both present, MAY reject; we do */
        if (req->minor_version == 0)
            HS_FAIL(400); /* RFC 9112 6.1: TE in HTTP/1.0 is faulty framing */
        if (fields.te == HS_TE_INVALID)
            HS_FAIL(400); /* RFC 9112 6.3 point 4: chunked not final */
    }
    /* RFC 9112 3.2: 400 for an HTTP/1.1 request without Host, for any request
     * with more than one Host, or with an invalid Host value. */
    if (fields.host_count > 1 || fields.host_invalid ||
        (fields.host_count == 0 && req->minor_version == 1))
        HS_FAIL(400);
    if (fields.te == HS_TE_UNSUPPORTED)
        HS_FAIL(501); /* RFC 9112 6.1: unknown transfer coding */
    if (fields.cl_too_large)
        HS_FAIL(413); /* RFC 9110 15.5.14 */

    rc = hs_split_target(req);
    if (HS_UNLIKELY(rc != 0))
        HS_FAIL(rc);

    req->chunked = fields.te == HS_TE_CHUNKED;
    req->content_length = fields.cl_count ? (int64_t)fields.content_length : -1;
    req->expect_continue = fields.expect_continue;
    /* RFC 9112 9.3: HTTP/1.1 persists unless "close"; HTTP/1.0 only with
     * "keep-alive" (RFC 9112 C.2.2) and no "close". */
    req->keep_alive = fields.conn_close ? 0 : (req->minor_version == 1 || fields.conn_keep_alive);
    return (int)(p - start);
}

#undef HS_FAIL
#undef HS_RAN_OUT

/* ---- the chunked decoder (RFC 9112 7.1) --------------------------------- */

enum {
    HS_CH_SIZE = 0,      /* chunk-size hex digits */
    HS_CH_SIZE_WS,       /* BWS after the size, before ";" */
    HS_CH_EXT,           /* chunk-ext bytes up to CR */
    HS_CH_SIZE_LF,       /* LF ending the size line */
    HS_CH_DATA,          /* chunk-data */
    HS_CH_DATA_CR,       /* CR after chunk-data */
    HS_CH_DATA_LF,       /* LF after chunk-data */
    HS_CH_TRAILER_START, /* start of a trailer field line or the final CRLF */
    HS_CH_TRAILER_NAME,  /* trailer field-name */
    HS_CH_TRAILER_VALUE, /* trailer field-value up to CR */
    HS_CH_TRAILER_LF,    /* LF ending a trailer field line */
    HS_CH_FINAL_LF,      /* LF of the final CRLF */
    HS_CH_DONE,          /* body complete */
    HS_CH_ERROR          /* sticky error */
};

/*
 * Framing fields in trailers (RFC 9110 6.5.1: a sender must not put them
 * there; RFC 9110 6.5.2: a recipient may discard trailers, as we do):
 *  - Transfer-Encoding, any value: error. It can only serve to confuse an
 *    intermediary that merges trailers into the header section.
 *  - Content-Length: error unless it is one field whose value is a valid
 *    Content-Length (OWS 1*DIGIT OWS); such a field is discarded like the
 *    other trailers. (h11 accepts every trailer section accepted here.)
 * The name and value arrive byte by byte, possibly across calls, so they are
 * matched incrementally. During the trailer section d->digits holds the flag
 * bits below and d->line_bytes the length of the current field name.
 */
#define HS_TR_IS_CL 0x01       /* the name so far matches "content-length" */
#define HS_TR_IS_TE 0x02       /* the name so far matches "transfer-encoding" */
#define HS_TR_CL_SEEN 0x04     /* a Content-Length trailer was seen (whole section) */
#define HS_TR_IN_CL 0x08       /* in the value of a Content-Length trailer */
#define HS_TR_CL_DIGITS 0x10   /* ... its digits have started */
#define HS_TR_CL_AFTER 0x20    /* ... OWS after the digits */
#define HS_TR_LINE_BITS (HS_TR_IS_CL | HS_TR_IS_TE | HS_TR_IN_CL | HS_TR_CL_DIGITS | HS_TR_CL_AFTER)

static const char hs_trailer_cl[] = "content-length";
static const char hs_trailer_te[] = "transfer-encoding";

/* Start of a trailer field name (its first byte follows). */
static void hs_trailer_name_start(hs_chunked_decoder *d)
{
    d->digits = (d->digits & ~HS_TR_LINE_BITS) | HS_TR_IS_CL | HS_TR_IS_TE;
    d->line_bytes = 0;
}

/* One more byte of the name: drop the framing names it no longer matches. A
 * name still flagged has matched line_bytes bytes, so name[line_bytes] is in
 * bounds (at worst its terminating NUL). */
static void hs_trailer_name_byte(hs_chunked_decoder *d, unsigned char c)
{
    size_t i = d->line_bytes;
    if ((d->digits & HS_TR_IS_CL) && (unsigned char)hs_trailer_cl[i] != hs_lower(c))
        d->digits &= ~HS_TR_IS_CL;
    if ((d->digits & HS_TR_IS_TE) && (unsigned char)hs_trailer_te[i] != hs_lower(c))
        d->digits &= ~HS_TR_IS_TE;
    d->line_bytes = i + 1;
}

/* The colon after the name: returns 0, or -1 when the field is refused. */
static int hs_trailer_name_end(hs_chunked_decoder *d)
{
    size_t n = d->line_bytes;
    int is_cl = (d->digits & HS_TR_IS_CL) && hs_trailer_cl[n] == '\0';
    int is_te = (d->digits & HS_TR_IS_TE) && hs_trailer_te[n] == '\0';
    d->digits &= ~(HS_TR_IS_CL | HS_TR_IS_TE);
    if (is_te)
        return -1;
    if (is_cl) {
        if (d->digits & HS_TR_CL_SEEN)
            return -1; /* a second Content-Length trailer */
        d->digits |= HS_TR_CL_SEEN | HS_TR_IN_CL;
    }
    return 0;
}

/* One value byte c (already known to be a field-value byte, not CR) of a
 * Content-Length trailer: OWS 1*DIGIT OWS. Returns 0, or -1 when invalid. */
static int hs_trailer_cl_byte(hs_chunked_decoder *d, unsigned char c)
{
    if (c >= '0' && c <= '9') {
        if (d->digits & HS_TR_CL_AFTER)
            return -1; /* "5 5" */
        d->digits |= HS_TR_CL_DIGITS;
        return 0;
    }
    if (c == ' ' || c == '\t') {
        if (d->digits & HS_TR_CL_DIGITS)
            d->digits |= HS_TR_CL_AFTER;
        return 0;
    }
    return -1; /* "+5", "0x5", "5, 5" */
}

HS_API void hs_chunked_init(hs_chunked_decoder *d)
{
    memset(d, 0, sizeof *d);
    d->state = HS_CH_SIZE;
}

HS_API ssize_t hs_decode_chunked(hs_chunked_decoder *d, char *buf, size_t *len,
                                 uint64_t max_body)
{
    unsigned char *b = (unsigned char *)buf;
    size_t in = 0, out = 0, n = *len, rest;

    if (HS_UNLIKELY(d->state == HS_CH_ERROR))
        goto fail;

    while (in < n) {
        unsigned char c;
        switch (d->state) {
        case HS_CH_DATA: {
            size_t take = n - in;
            if ((uint64_t)take > d->chunk_left)
                take = (size_t)d->chunk_left;
            if (out != in)
                memmove(b + out, b + in, take);
            in += take;
            out += take;
            d->chunk_left -= take;
            d->total += take;
            if (d->chunk_left == 0)
                d->state = HS_CH_DATA_CR;
            continue;
        }
        case HS_CH_SIZE: {
            unsigned v;
            c = b[in];
            v = hs_hex_value[c];
            if (HS_LIKELY(v != HS_NOT_HEX)) {
                /* chunk-size = 1*HEXDIG; more digits than fit is an error
                 * (RFC 9112 7.1: guard against integer overflow) */
                if (d->digits == HS_CHUNK_MAX_SIZE_DIGITS)
                    goto fail;
                d->digits++;
                d->chunk_left = (d->chunk_left << 4) | v;
                if (d->total > max_body || d->chunk_left > max_body - d->total) {
                    /* over max_body: report it through total (caller: 413) */
                    d->total = d->chunk_left > UINT64_MAX - d->total ? UINT64_MAX
                                                                     : d->total + d->chunk_left;
                    goto fail;
                }
                break;
            }
            if (d->digits == 0)
                goto fail; /* no digit: "-1", " 1", ";x", "\r\n" */
            if (c == '\r') {
                d->state = HS_CH_SIZE_LF;
                in++;
                continue; /* CRLF is not counted in the line's length */
            }
            if (c == ';')
                d->state = HS_CH_EXT;
            else if (c == ' ' || c == '\t')
                d->state = HS_CH_SIZE_WS; /* BWS before ";" (RFC 9112 7.1.1) */
            else
                goto fail; /* "0x10", "1g", bare LF */
            break;
        }
        case HS_CH_SIZE_WS:
            c = b[in];
            if (c == '\r')
                goto fail; /* "5 \r\n": BWS only before a chunk-ext */
            if (c == ';')
                d->state = HS_CH_EXT;
            else if (c != ' ' && c != '\t')
                goto fail; /* only a chunk-ext may follow the size */
            break;
        case HS_CH_EXT:
            /* chunk-ext: its bytes are visible ASCII, SP, HTAB or obs-text
             * up to CR; a bare LF or CTL in it is an error (RFC 9112 7.1.1);
             * extensions are ignored (RFC 9112 7.1.1: MUST ignore unknown). */
            c = b[in];
            if (c == '\r') {
                d->state = HS_CH_SIZE_LF;
                in++;
                continue;
            }
            if (!HS_IS(c, HS_C_VALUE))
                goto fail;
            break;
        case HS_CH_SIZE_LF:
            if (b[in] != '\n')
                goto fail;
            d->state = d->chunk_left ? HS_CH_DATA : HS_CH_TRAILER_START;
            d->line_bytes = 0;
            d->digits = 0;
            in++;
            continue;
        case HS_CH_DATA_CR:
            if (b[in] != '\r')
                goto fail; /* chunk-data is followed by CRLF (RFC 9112 7.1) */
            d->state = HS_CH_DATA_LF;
            in++;
            continue;
        case HS_CH_DATA_LF:
            if (b[in] != '\n')
                goto fail;
            d->state = HS_CH_SIZE;
            in++;
            continue;
        case HS_CH_TRAILER_START:
            /* trailer-section = *( field-line CRLF ), then CRLF (RFC 9112 7.1.2) */
            c = b[in];
            if (c == '\r') {
                d->state = HS_CH_FINAL_LF;
            } else if (HS_IS(c, HS_C_TCHAR)) {
                d->state = HS_CH_TRAILER_NAME;
                hs_trailer_name_start(d);
                hs_trailer_name_byte(d, c);
            } else {
                goto fail; /* bare LF, obs-fold, empty field name */
            }
            goto trailer_byte;
        case HS_CH_TRAILER_NAME:
            c = b[in];
            if (c == ':') {
                if (hs_trailer_name_end(d) < 0)
                    goto fail;
                d->state = HS_CH_TRAILER_VALUE;
            } else if (HS_IS(c, HS_C_TCHAR)) {
                hs_trailer_name_byte(d, c);
            } else {
                goto fail; /* whitespace before the colon, junk */
            }
            goto trailer_byte;
        case HS_CH_TRAILER_VALUE:
            c = b[in];
            if (c == '\r') {
                if ((d->digits & HS_TR_IN_CL) && !(d->digits & HS_TR_CL_DIGITS))
                    goto fail; /* empty Content-Length trailer */
                d->digits &= ~(HS_TR_IN_CL | HS_TR_CL_DIGITS | HS_TR_CL_AFTER);
                d->state = HS_CH_TRAILER_LF;
            } else if (!HS_IS(c, HS_C_VALUE)) {
                goto fail;
            } else if ((d->digits & HS_TR_IN_CL) && hs_trailer_cl_byte(d, c) < 0) {
                goto fail;
            }
            goto trailer_byte;
        case HS_CH_TRAILER_LF:
            if (b[in] != '\n')
                goto fail;
            d->state = HS_CH_TRAILER_START;
            goto trailer_byte;
        case HS_CH_FINAL_LF:
            if (b[in] != '\n' || ++d->trailer_bytes > HS_CHUNK_MAX_TRAILER)
                goto fail;
            in++;
            d->state = HS_CH_DONE;
            goto done;
        case HS_CH_DONE:
            goto done;
        default:
            goto fail;
        }
        /* a byte of the chunk-size line was consumed */
        in++;
        if (HS_UNLIKELY(++d->line_bytes > HS_CHUNK_MAX_LINE))
            goto fail;
        continue;
    trailer_byte:
        in++;
        if (HS_UNLIKELY(++d->trailer_bytes > HS_CHUNK_MAX_TRAILER))
            goto fail;
    }
    if (d->state == HS_CH_DONE)
        goto done;
    *len = out;
    return HS_PARSE_PARTIAL;

done:
    rest = n - in;
    if (rest && out != in)
        memmove(b + out, b + in, rest);
    *len = out;
    return (ssize_t)rest;

fail:
    d->state = HS_CH_ERROR;
    *len = out;
    return HS_PARSE_ERROR;
}
