/*
 * hs_parser.h - the incremental HTTP/1.1 request-head parser and the chunked
 * body decoder (RFC 9112). Used by hypersonic.socket's http_recv and by the
 * server loop: one copy of each.
 *
 * Stateless and allocation-free: hs_parse_request is called again from the
 * start of the buffer whenever more bytes arrive (heads are small), and every
 * pointer it fills in points into the caller's buffer. It never reads past
 * buf[len - 1] (tested with a guard page), never writes to buf.
 *
 * Strictness (each rule cites RFC 9112 / 9110 in hs_parser.c):
 *  - lines end in CRLF; a bare LF or bare CR is 400 (no lenient parsing: it is
 *    what request smuggling feeds on);
 *  - empty lines before the request line are skipped (RFC 9112 2.2);
 *  - method is a token of at most HS_MAX_METHOD bytes, else 400;
 *  - request-target: origin-form ("/..."), asterisk-form ("*", OPTIONS
 *    only), or absolute-form ("http://host/path", "https://..."; path/query
 *    taken from it; an empty path reads as "/"); anything else (authority-form
 *    included) is 400; bytes other than VCHAR are 400; longer than
 *    lim->max_uri is 414 (also while still partial);
 *  - version "HTTP/1.0" or "HTTP/1.1"; any other well-formed "HTTP/d.d" is 505
 *    (HTTP/1.2 included: a deliberate choice against RFC 9110 2.5's SHOULD,
 *    see hs_parser.c); anything else ("http/1.1", "HTTP/1.10") 400;
 *  - header names are tokens followed directly by ':' (whitespace before the
 *    colon is 400); values may contain HTAB, SP, VCHAR, obs-text, never CTLs
 *    or NUL; obs-fold (a line starting with SP/HTAB) is 400; leading and
 *    trailing OWS is trimmed from values;
 *  - head longer than lim->max_head, or more than lim->max_headers fields:
 *    431 (also while still partial);
 *  - Content-Length: 1*DIGIT only; present twice (even equal) or a list: 400;
 *    larger than lim->max_body: 413;
 *  - Transfer-Encoding: exactly one field whose value is "chunked"
 *    (case-insensitive) is accepted; any other coding list ending in chunked
 *    ("gzip, chunked") is 501; not ending in chunked, repeated fields, or in an
 *    HTTP/1.0 request: 400; together with Content-Length: 400;
 *  - HTTP/1.1 without exactly one Host field: 400 (RFC 9112 3.2);
 *  - Connection tokens are matched case-insensitively across all Connection
 *    fields: keep_alive = HTTP/1.1 ? !close : (keep-alive && !close);
 *  - Expect: 100-continue (case-insensitive) sets expect_continue.
 */
#ifndef HS_PARSER_H
#define HS_PARSER_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "hs_common.h"

/* Return values shared by the parser and the chunked decoder. */
#define HS_PARSE_ERROR (-1)   /* malformed: see *status */
#define HS_PARSE_PARTIAL (-2) /* valid so far, need more bytes */

typedef struct hs_header {
    const char *name;  /* as sent (case preserved) */
    size_t name_len;
    const char *value; /* OWS trimmed */
    size_t value_len;
} hs_header;

/* Limits applied by the parser; each maps to a documented server option. */
typedef struct hs_limits {
    size_t max_uri;     /* request-target bytes; over -> 414 */
    size_t max_head;    /* request head bytes incl. final CRLFCRLF; over -> 431 */
    size_t max_headers; /* header fields, <= HS_MAX_HEADERS; over -> 431 */
    uint64_t max_body;  /* body bytes (Content-Length or decoded chunked); over -> 413 */
} hs_limits;

/* The parsed head. Pointers point into the buffer given to hs_parse_request. */
typedef struct hs_request {
    const char *method;
    size_t method_len;
    const char *target; /* the request-target exactly as sent */
    size_t target_len;
    const char *path;   /* path part of the target; "*" for asterisk-form */
    size_t path_len;
    const char *query;  /* after '?', without it; NULL/0 when there is no '?' */
    size_t query_len;
    int minor_version;  /* 0 or 1 */
    size_t num_headers;
    hs_header headers[HS_MAX_HEADERS];
    /* Semantics derived from the fields (RFC 9112 6, 9.3) */
    int keep_alive;         /* 1 when the connection persists after this request */
    int chunked;            /* 1 when Transfer-Encoding: chunked */
    int64_t content_length; /* -1 when absent (and not chunked: no body) */
    int expect_continue;    /* 1 when Expect: 100-continue */
} hs_request;

/* Fill lim with the compile-time defaults from hs_common.h. */
HS_API void hs_limits_default(hs_limits *lim);

/*
 * Parse the request head at buf[0..len) (lim NULL: the defaults).
 * Returns the head's length in bytes (> 0, through the empty line, including
 * any skipped leading CRLFs) when the head is complete and valid, and fills req;
 * HS_PARSE_PARTIAL when it is incomplete but valid so far and within limits;
 * HS_PARSE_ERROR when invalid, with *status set to 400, 413, 414, 431, 501 or 505.
 */
HS_API int hs_parse_request(const char *buf, size_t len, const hs_limits *lim,
                            hs_request *req, int *status);

/* State of the chunked decoder; zero it (or hs_chunked_init) before a body. */
typedef struct hs_chunked_decoder {
    uint64_t chunk_left;  /* data bytes left in the current chunk */
    uint64_t total;       /* decoded bytes so far (caller compares to max_body) */
    size_t line_bytes;    /* bytes seen of the current size line (limit: HS_CHUNK_MAX_LINE);
                             private during trailers */
    size_t trailer_bytes; /* bytes of trailer section so far (limit: HS_CHUNK_MAX_TRAILER,
                             = HS_DEFAULT_MAX_HEAD; the decoder is not given lim) */
    int state;            /* private */
    int digits;           /* private: hex digits seen in the size (reused in trailers) */
} hs_chunked_decoder;

HS_API void hs_chunked_init(hs_chunked_decoder *d);

/*
 * Decode chunked transfer coding in place (resumable).
 * buf[0..*len) holds raw bytes that follow what earlier calls consumed. On
 * return buf[0..*len) holds the payload bytes decoded by this call.
 * Returns >= 0 when the body ended (last-chunk, trailers and final CRLF all
 * seen): the number of raw bytes after the body, which now lie at
 * buf[*len .. *len + ret) (a pipelined request); HS_PARSE_PARTIAL when all of
 * the input was used and the body continues; HS_PARSE_ERROR on a malformed
 * chunk (bad or overlong hex size, size overflow, missing CRLF, bare LF,
 * chunk-extension or trailers over the limits, d->total over max_body, which
 * the caller answers 413 when d->total > max_body and 400 otherwise).
 * Limits (hs_parser.c): at most HS_CHUNK_MAX_SIZE_DIGITS (16) hex digits per
 * size, HS_CHUNK_MAX_LINE (4096) bytes per size line before its CRLF,
 * HS_CHUNK_MAX_TRAILER bytes of trailer section. Trailer fields are checked
 * for syntax and discarded; a Transfer-Encoding trailer, a second
 * Content-Length trailer or one whose value is not 1*DIGIT is an error
 * (RFC 9110 6.5.1). A chunk size that would take
 * d->total over max_body fails as soon as its digits arrive. Errors are
 * sticky; after the end every further byte is returned as "after the body".
 */
HS_API ssize_t hs_decode_chunked(hs_chunked_decoder *d, char *buf, size_t *len,
                                 uint64_t max_body);

/* ASCII case-insensitive equality of a[0..n) with the NUL-terminated lowercase lit. */
HS_API int hs_token_eq(const char *a, size_t n, const char *lit);

#endif /* HS_PARSER_H */
