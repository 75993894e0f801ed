/*
 * fuzz_parser.c - libFuzzer harness for hs_parser.c (built by `make fuzz`
 * with clang -fsanitize=fuzzer,address,undefined).
 *
 * Each input is:
 *  1. parsed as a request head (exact-size heap copy, so any over-read is an
 *     ASan report) with the default limits and with tight ones; invariants:
 *     the result is a length within the input, PARTIAL, or ERROR with one of
 *     the documented statuses; a complete head's every pointer lies inside it;
 *     the prefix one byte shorter than a complete head is PARTIAL; a prefix
 *     (half, all but one byte) is PARTIAL or already the whole input's verdict;
 *     a complete head's Accept-Encoding fields are negotiated (hs_accept.c)
 *     while the exact-size copy is alive;
 *  2. decoded as a chunked body (what follows the head when the head is
 *     complete and chunked, else the whole input), once in one call and once
 *     fed in pseudo-random pieces (sizes drawn from a PRNG seeded by the
 *     input); both must agree on the verdict, the payload, the total and the
 *     bytes after the body.
 * Any disagreement aborts, which libFuzzer reports as a crash.
 */
#include "hs_parser.c"
#include "hs_accept.c"

#include <stdio.h>
#include <stdlib.h>

#define FUZZ_MAX_BODY HS_DEFAULT_MAX_BODY
#define FUZZ_TIGHT_URI 32
#define FUZZ_TIGHT_HEAD 256
#define FUZZ_TIGHT_HEADERS 4
#define FUZZ_TIGHT_BODY 100
#define FUZZ_MAX_PIECE 64

#define FUZZ_ASSERT(cond)                                                               \
    do {                                                                                \
        if (!(cond)) {                                                                  \
            fprintf(stderr, "fuzz invariant failed at %s:%d: %s\n", __FILE__, __LINE__, #cond); \
            abort();                                                                    \
        }                                                                               \
    } while (0)

static int valid_status(int s)
{
    return s == 400 || s == 413 || s == 414 || s == 431 || s == 501 || s == 505;
}

/* Parse a heap copy of exactly len bytes; returns rc, fills req/status. */
static int parse_copy(const uint8_t *data, size_t len, const hs_limits *lim, hs_request *req,
                      int *status)
{
    char *copy = malloc(len ? len : 1);
    FUZZ_ASSERT(copy != NULL);
    if (len)
        memcpy(copy, data, len);
    *status = 0;
    int rc = hs_parse_request(copy, len, lim, req, status);
    if (rc > 0) {
        /* re-base pointers onto data (copy is freed); check they were inside */
        const char *lo = copy, *hi = copy + len;
        FUZZ_ASSERT(req->method >= lo && req->method + req->method_len <= hi);
        FUZZ_ASSERT(req->target >= lo && req->target + req->target_len <= hi);
        FUZZ_ASSERT(req->path >= lo && req->path + req->path_len <= hi);
        FUZZ_ASSERT(req->query == NULL || (req->query >= lo && req->query + req->query_len <= hi));
        FUZZ_ASSERT(req->num_headers <= lim->max_headers && req->num_headers <= HS_MAX_HEADERS);
        for (size_t i = 0; i < req->num_headers; i++) {
            const hs_header *h = &req->headers[i];
            FUZZ_ASSERT(h->name >= lo && h->name + h->name_len <= hi && h->name_len > 0);
            FUZZ_ASSERT(h->value >= lo && h->value + h->value_len <= hi);
        }
        FUZZ_ASSERT(req->target_len <= lim->max_uri);
        FUZZ_ASSERT(req->minor_version == 0 || req->minor_version == 1);
        FUZZ_ASSERT(!(req->chunked && req->content_length >= 0));
        FUZZ_ASSERT(req->content_length < 0 || (uint64_t)req->content_length <= lim->max_body);
        /* Accept-Encoding negotiation reads the parsed fields in place (ASan: no over-read) */
        int gzip_ok = hs_accept_gzip(req);
        FUZZ_ASSERT(gzip_ok == 0 || gzip_ok == 1);
    }
    free(copy);
    return rc;
}

static void check_head(const uint8_t *data, size_t size, const hs_limits *lim, int *head_len,
                       int *chunked)
{
    hs_request req;
    int status;
    int rc = parse_copy(data, size, lim, &req, &status);
    *head_len = 0;
    *chunked = 0;
    if (rc > 0) {
        FUZZ_ASSERT((size_t)rc <= size && (size_t)rc <= lim->max_head);
        *head_len = rc;
        *chunked = req.chunked;
        /* one byte short of a complete head is PARTIAL */
        int prc = parse_copy(data, (size_t)rc - 1, lim, &req, &status);
        FUZZ_ASSERT(prc == HS_PARSE_PARTIAL);
        /* the same head followed by anything parses the same */
        prc = parse_copy(data, (size_t)rc, lim, &req, &status);
        FUZZ_ASSERT(prc == rc);
    } else if (rc == HS_PARSE_ERROR) {
        FUZZ_ASSERT(valid_status(status));
    } else {
        FUZZ_ASSERT(rc == HS_PARSE_PARTIAL);
    }
    /* The verdict depends only on the bytes seen: a prefix is PARTIAL, or
     * already the same verdict as the whole input. */
    size_t cuts[2] = {size / 2, size ? size - 1 : 0};
    for (int i = 0; i < 2 && size > 0; i++) {
        int pstatus;
        int prc = parse_copy(data, cuts[i], lim, &req, &pstatus);
        if (prc == HS_PARSE_ERROR)
            FUZZ_ASSERT(rc == HS_PARSE_ERROR && pstatus == status);
        else if (prc > 0)
            FUZZ_ASSERT(prc == rc);
        else
            FUZZ_ASSERT(prc == HS_PARSE_PARTIAL && (rc < 0 || (size_t)rc > cuts[i]));
    }
}

typedef struct fuzz_decoded {
    ssize_t rc;
    uint8_t *out;
    size_t out_len;
    uint8_t *rest;
    size_t rest_len;
    uint64_t total;
} fuzz_decoded;

static uint64_t rng_next(uint64_t *s)
{
    /* xorshift64* */
    *s ^= *s >> 12;
    *s ^= *s << 25;
    *s ^= *s >> 27;
    return *s * UINT64_C(2685821657736338717);
}

/* Decode data[0..size) in pieces (a single piece when rng is NULL). */
static void decode(const uint8_t *data, size_t size, uint64_t max_body, uint64_t *rng,
                   fuzz_decoded *d)
{
    hs_chunked_decoder dec;
    hs_chunked_init(&dec);
    d->out = malloc(size + 1);
    d->rest = malloc(size + 1);
    FUZZ_ASSERT(d->out && d->rest);
    d->out_len = d->rest_len = 0;
    d->rc = HS_PARSE_PARTIAL;
    size_t from = 0;
    do {
        size_t piece = size - from;
        if (rng && piece > 0)
            piece = 1 + (size_t)(rng_next(rng) % (piece < FUZZ_MAX_PIECE ? piece : FUZZ_MAX_PIECE));
        char *copy = malloc(piece ? piece : 1);
        FUZZ_ASSERT(copy != NULL);
        if (piece)
            memcpy(copy, data + from, piece);
        size_t n = piece;
        d->rc = hs_decode_chunked(&dec, copy, &n, max_body);
        FUZZ_ASSERT(n <= piece);
        memcpy(d->out + d->out_len, copy, n);
        d->out_len += n;
        from += piece;
        if (d->rc >= 0) {
            FUZZ_ASSERT(n + (size_t)d->rc <= piece);
            memcpy(d->rest, copy + n, (size_t)d->rc);
            d->rest_len = (size_t)d->rc;
            memcpy(d->rest + d->rest_len, data + from, size - from);
            d->rest_len += size - from;
            free(copy);
            break;
        }
        free(copy);
        FUZZ_ASSERT(d->rc == HS_PARSE_PARTIAL || d->rc == HS_PARSE_ERROR);
    } while (d->rc == HS_PARSE_PARTIAL && from < size);
    d->total = dec.total;
    if (d->rc != HS_PARSE_ERROR || d->total <= max_body)
        FUZZ_ASSERT(d->total == d->out_len);
    FUZZ_ASSERT(d->rc == HS_PARSE_ERROR || d->total <= max_body);
}

static void check_chunked(const uint8_t *data, size_t size, uint64_t max_body)
{
    fuzz_decoded one, parts;
    uint64_t seed = UINT64_C(1469598103934665603);
    for (size_t i = 0; i < size; i++)
        seed = (seed ^ data[i]) * UINT64_C(1099511628211);
    if (seed == 0)
        seed = 1;
    decode(data, size, max_body, NULL, &one);
    decode(data, size, max_body, &seed, &parts);
    FUZZ_ASSERT(one.rc == parts.rc || (one.rc >= 0 && parts.rc >= 0));
    FUZZ_ASSERT(one.out_len == parts.out_len && memcmp(one.out, parts.out, one.out_len) == 0);
    FUZZ_ASSERT((one.total > max_body) == (parts.total > max_body));
    if (one.rc >= 0) {
        FUZZ_ASSERT(one.rest_len == parts.rest_len &&
                    memcmp(one.rest, parts.rest, one.rest_len) == 0);
    }
    free(one.out);
    free(one.rest);
    free(parts.out);
    free(parts.rest);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    hs_limits lim;
    int head_len, chunked, tight_len, tight_chunked;
    hs_limits_default(&lim);
    check_head(data, size, &lim, &head_len, &chunked);

    hs_limits tight = {FUZZ_TIGHT_URI, FUZZ_TIGHT_HEAD, FUZZ_TIGHT_HEADERS, FUZZ_TIGHT_BODY};
    check_head(data, size, &tight, &tight_len, &tight_chunked);
    /* tighter limits never accept what the defaults reject */
    if (tight_len > 0)
        FUZZ_ASSERT(head_len == tight_len);

    if (head_len > 0 && chunked) {
        check_chunked(data + head_len, size - (size_t)head_len, FUZZ_MAX_BODY);
        check_chunked(data + head_len, size - (size_t)head_len, FUZZ_TIGHT_BODY);
    } else {
        check_chunked(data, size, FUZZ_MAX_BODY);
    }
    return 0;
}
