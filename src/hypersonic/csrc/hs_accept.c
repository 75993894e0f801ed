/*
 * hs_accept.c - Accept-Encoding negotiation for gzip (contract: hs_accept.h).
 *
 * Must be included after hs_parser.c (hs_request, hs_token_eq). Mirrors
 * hypersonic._encoding step by step: members split on ',', the coding before
 * the first ';', parameters split on ';', every piece trimmed of SP/HTAB.
 */
#include "hs_accept.h"

/* Length of "accept-encoding", and the index of the 'E' of "Encoding" (an 'L' in Accept-Language). */
#define HS_ACCEPT_FIELD_LEN (sizeof("accept-encoding") - 1)
#define HS_ACCEPT_FIELD_TELL 7
/* The bit that differs between an ASCII letter's cases. */
#define HS_ACCEPT_ASCII_CASE 0x20
/* Longest qvalue text: "0.000". */
#define HS_ACCEPT_QVALUE_MAX_LEN 5
/* Thousandths per decimal digit after the point. */
static const int hs_accept_place[3] = {100, 10, 1};

static inline int hs_accept_is_ows(char ch)
{
    return ch == ' ' || ch == '\t';
}

/* Narrow [*start, *end) past leading and trailing SP/HTAB. */
static void hs_accept_trim(const char **start, const char **end)
{
    while (*start < *end && hs_accept_is_ows(**start))
        (*start)++;
    while (*end > *start && hs_accept_is_ows((*end)[-1]))
        (*end)--;
}

/* First occurrence of ch in [p, end), or end. */
static const char *hs_accept_find(const char *p, const char *end, char ch)
{
    while (p < end && *p != ch)
        p++;
    return p;
}

/* The q of qvalue text v[0..n) (already trimmed), or HS_ACCEPT_Q_NONE. */
static int hs_accept_parse_q(const char *v, size_t n)
{
    if (n == 0 || n > HS_ACCEPT_QVALUE_MAX_LEN || (v[0] != '0' && v[0] != '1'))
        return HS_ACCEPT_Q_NONE;
    int q = (v[0] - '0') * HS_ACCEPT_Q_ONE;
    if (n > 1) {
        if (v[1] != '.')
            return HS_ACCEPT_Q_NONE;
        for (size_t i = 2; i < n; i++) {
            if (v[i] < '0' || v[i] > '9')
                return HS_ACCEPT_Q_NONE;
            q += (v[i] - '0') * hs_accept_place[i - 2];
        }
    }
    return q > HS_ACCEPT_Q_ONE ? HS_ACCEPT_Q_NONE : q;
}

HS_API int hs_accept_qvalue(const char *params, size_t len)
{
    int q = HS_ACCEPT_Q_ONE;
    const char *p = params, *end = params + len;
    for (;;) {
        const char *param_end = hs_accept_find(p, end, ';');
        const char *eq = hs_accept_find(p, param_end, '=');
        const char *name = p, *name_end = eq;
        hs_accept_trim(&name, &name_end);
        if (name_end - name == 1 && (*name == 'q' || *name == 'Q')) {
            if (eq == param_end)
                return HS_ACCEPT_Q_NONE; /* "q" without a value */
            const char *value = eq + 1, *value_end = param_end;
            hs_accept_trim(&value, &value_end);
            q = hs_accept_parse_q(value, (size_t)(value_end - value));
            if (q == HS_ACCEPT_Q_NONE)
                return HS_ACCEPT_Q_NONE;
        }
        if (param_end == end)
            return q;
        p = param_end + 1;
    }
}

HS_API void hs_accept_begin(hs_accept_scan *scan)
{
    scan->gzip_q = HS_ACCEPT_Q_NONE;
    scan->star_q = HS_ACCEPT_Q_NONE;
}

HS_API void hs_accept_feed(hs_accept_scan *scan, const char *value, size_t len)
{
    const char *p = value, *end = value + len;
    for (;;) {
        /* one pass over the member: its end (',') and the end of its coding (the first ';') */
        const char *member_end = p, *name_end = NULL;
        while (member_end < end && *member_end != ',') {
            if (*member_end == ';' && name_end == NULL)
                name_end = member_end;
            member_end++;
        }
        const char *params = name_end ? name_end + 1 : member_end;
        const char *name = p;
        if (name_end == NULL)
            name_end = member_end;
        hs_accept_trim(&name, &name_end);
        size_t name_len = (size_t)(name_end - name);
        int is_gzip = (name_len == sizeof("gzip") - 1 && hs_token_eq(name, name_len, "gzip")) ||
                      (name_len == sizeof("x-gzip") - 1 && hs_token_eq(name, name_len, "x-gzip"));
        int is_star = name_len == 1 && *name == '*';
        if (is_gzip || is_star) {
            int q = params == member_end ? HS_ACCEPT_Q_ONE : hs_accept_qvalue(params, (size_t)(member_end - params));
            if (q != HS_ACCEPT_Q_NONE && is_gzip && q > scan->gzip_q)
                scan->gzip_q = q;
            else if (q != HS_ACCEPT_Q_NONE && is_star)
                scan->star_q = q;
        }
        if (member_end == end)
            return;
        p = member_end + 1;
    }
}

HS_API int hs_accept_result(const hs_accept_scan *scan)
{
    if (scan->gzip_q != HS_ACCEPT_Q_NONE)
        return scan->gzip_q > 0;
    return scan->star_q > 0;
}

HS_API int hs_accept_gzip(const hs_request *r)
{
    hs_accept_scan scan;
    int seen = 0;
    hs_accept_begin(&scan);
    for (size_t i = 0; i < r->num_headers; i++) {
        const hs_header *h = &r->headers[i];
        /* length, then the byte that tells it from Accept-Language, then the whole name */
        if (h->name_len == HS_ACCEPT_FIELD_LEN && (h->name[HS_ACCEPT_FIELD_TELL] | HS_ACCEPT_ASCII_CASE) == 'e' &&
            hs_token_eq(h->name, h->name_len, "accept-encoding")) {
            hs_accept_feed(&scan, h->value, h->value_len);
            seen = 1;
        }
    }
    return seen && hs_accept_result(&scan);
}
