/*
 * hs_filefast.c - baked files of static mounts answered in C (contract: hs_filefast.h).
 *
 * Must be included after hs_parser.c (hs_token_eq), hs_accept.c and
 * hs_router.h (hs_route_hash, hs_baked). No Python here: hs_filefast_py.c
 * builds the table from what hypersonic._filefast passes to configure().
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hs_accept.h"
#include "hs_date.h"
#include "hs_filefast.h"

/* st_mtime with nanoseconds, as Python's st_mtime_ns. */
#if defined(__APPLE__)
#define HS_FF_MTIME_NS(st) ((int64_t)(st).st_mtimespec.tv_sec * 1000000000 + (st).st_mtimespec.tv_nsec)
#else
#define HS_FF_MTIME_NS(st) ((int64_t)(st).st_mtim.tv_sec * 1000000000 + (st).st_mtim.tv_nsec)
#endif

/* Request fields the fast path reads or refuses, by length. */
#define HS_FF_LEN_RANGE (sizeof("range") - 1)
#define HS_FF_LEN_IF_RANGE (sizeof("if-range") - 1)
#define HS_FF_LEN_IF_NONE_MATCH (sizeof("if-none-match") - 1)
#define HS_FF_LEN_ACCEPT_ENCODING (sizeof("accept-encoding") - 1)
#define HS_FF_LEN_IF_MODIFIED_SINCE (sizeof("if-modified-since") - 1)
#define HS_FF_LEN_IF_UNMODIFIED_SINCE (sizeof("if-unmodified-since") - 1)

HS_API hs_ff_table *hs_ff_table_new(uint32_t count)
{
    hs_ff_table *t = (hs_ff_table *)calloc(1, sizeof *t);
    if (!t)
        return NULL;
    uint32_t size = 8;
    while (size < 2u * count + 1u && size < (1u << 30))
        size *= 2;
    t->entries = (hs_ff_entry *)calloc(count ? count : 1, sizeof *t->entries);
    t->slots = (int32_t *)malloc(size * sizeof *t->slots);
    if (!t->entries || !t->slots) {
        free(t->entries);
        free(t->slots);
        free(t);
        return NULL;
    }
    for (uint32_t i = 0; i < size; i++)
        t->slots[i] = -1;
    t->count = count;
    t->mask = size - 1;
    return t;
}

/* Copy one baked response into *at (advanced), pointing dst at the copy. */
static void hs_ff_copy_baked(hs_baked *dst, const hs_baked *src, char **at)
{
    memcpy(*at, src->data, src->len);
    *dst = *src;
    dst->data = *at;
    *at += src->len;
}

HS_API int hs_ff_table_set(hs_ff_table *t, uint32_t i, const char *path, size_t path_len, int handler,
                           const char *file, int64_t size, int64_t mtime_ns, uint64_t ino, const hs_ff_rep *reps,
                           int nreps)
{
    if (i >= t->count || nreps < 1 || nreps > HS_FF_REPS || path_len > UINT32_MAX)
        return -1;
    uint32_t slot = hs_route_hash(path, path_len) & t->mask;
    while (t->slots[slot] >= 0) {
        const hs_ff_entry *other = &t->entries[t->slots[slot]];
        if (other->path_len == path_len && memcmp(other->path, path, path_len) == 0)
            return -1;
        slot = (slot + 1) & t->mask;
    }
    size_t total = 0, file_len = strlen(file);
    for (int k = 0; k < nreps; k++)
        total += reps[k].ok.len + reps[k].not_modified.len + reps[k].etag_len;
    hs_ff_entry *e = &t->entries[i];
    e->path = (char *)malloc(path_len + 1);
    e->file = (char *)malloc(file_len + 1);
    e->storage = (char *)malloc(total ? total : 1);
    if (!e->path || !e->file || !e->storage) {
        free(e->path);
        free(e->file);
        free(e->storage);
        memset(e, 0, sizeof *e);
        return -1;
    }
    memcpy(e->path, path, path_len);
    e->path[path_len] = '\0';
    e->path_len = (uint32_t)path_len;
    memcpy(e->file, file, file_len + 1);
    char *at = e->storage;
    for (int k = 0; k < nreps; k++) {
        hs_ff_copy_baked(&e->rep[k].ok, &reps[k].ok, &at);
        hs_ff_copy_baked(&e->rep[k].not_modified, &reps[k].not_modified, &at);
        memcpy(at, reps[k].etag, reps[k].etag_len);
        e->rep[k].etag = at;
        e->rep[k].etag_len = reps[k].etag_len;
        at += reps[k].etag_len;
    }
    e->handler = handler;
    e->nreps = nreps;
    e->size = size;
    e->mtime_ns = mtime_ns;
    e->ino = ino;
    e->checked_s = -1;
    e->date_s = (time_t)-1;
    e->disabled = 0;
    t->slots[slot] = (int32_t)i;
    return 0;
}

HS_API void hs_ff_table_free(hs_ff_table *t)
{
    if (!t)
        return;
    for (uint32_t i = 0; i < t->count; i++) {
        free(t->entries[i].path);
        free(t->entries[i].file);
        free(t->entries[i].storage);
    }
    free(t->entries);
    free(t->slots);
    free(t);
}

/* Python's str.isspace() for a latin-1 byte (what str.strip() removes). */
static inline int hs_ff_is_space(unsigned char ch)
{
    return ch == ' ' || (ch >= '\t' && ch <= '\r') || (ch >= 0x1c && ch <= 0x1f) || ch == 0x85 || ch == 0xa0;
}

/* Narrow [*p, *end) past leading and trailing whitespace. */
static void hs_ff_strip(const char **p, const char **end)
{
    while (*p < *end && hs_ff_is_space((unsigned char)**p))
        (*p)++;
    while (*end > *p && hs_ff_is_space((unsigned char)(*end)[-1]))
        (*end)--;
}

HS_API int hs_ff_etag_matches(const char *v, size_t n, const char *etag, size_t etag_len)
{
    const char *p = v, *end = v + n;
    hs_ff_strip(&p, &end);
    if (end - p == 1 && *p == '*')
        return 1;
    for (;;) {
        const char *member_end = p;
        while (member_end < end && *member_end != ',')
            member_end++;
        const char *m = p, *m_end = member_end;
        hs_ff_strip(&m, &m_end);
        if (m_end - m >= 2 && m[0] == 'W' && m[1] == '/')
            m += 2;
        if ((size_t)(m_end - m) == etag_len && memcmp(m, etag, etag_len) == 0)
            return 1;
        if (member_end == end)
            return 0;
        p = member_end + 1;
    }
}

/* 1 while the entry's file is what was baked; stats it at most once per second. 0 disables it. */
static int hs_ff_current(hs_ff_table *t, hs_ff_entry *e, int64_t now_s)
{
    if (HS_LIKELY(e->checked_s == now_s))
        return 1;
    struct stat st;
    if (stat(e->file, &st) < 0) {
        if (errno == EINTR)
            return 0; /* not answered from here this time; checked again on the next request */
    } else if (st.st_size == e->size && HS_FF_MTIME_NS(st) == e->mtime_ns && (uint64_t)st.st_ino == e->ino) {
        e->checked_s = now_s;
        return 1;
    }
    e->disabled = 1; /* changed or gone: the Python handler (which drops it from its bake) from now on */
    t->disabled++;
    return 0;
}

HS_API const hs_baked *hs_ff_pick(hs_ff_table *t, const hs_request *r, int handler, int64_t now_s,
                                  const char *date, time_t date_s)
{
    if (!t)
        return NULL;
    uint32_t slot = hs_route_hash(r->path, r->path_len) & t->mask;
    hs_ff_entry *e;
    for (;;) {
        int32_t i = t->slots[slot];
        if (i < 0)
            return NULL;
        e = &t->entries[i];
        if (e->path_len == r->path_len && memcmp(e->path, r->path, r->path_len) == 0)
            break;
        slot = (slot + 1) & t->mask;
    }
    if (e->handler != handler || e->disabled)
        return NULL;
    const hs_header *inm = NULL;
    int ims = 0, gzip = 0, ae_seen = 0;
    hs_accept_scan scan;
    hs_accept_begin(&scan);
    for (size_t k = 0; k < r->num_headers; k++) {
        const hs_header *h = &r->headers[k];
        switch (h->name_len) {
        case HS_FF_LEN_RANGE:
            if (hs_token_eq(h->name, h->name_len, "range"))
                return NULL;
            break;
        case HS_FF_LEN_IF_RANGE: /* also "if-match" */
            if (hs_token_eq(h->name, h->name_len, "if-range") || hs_token_eq(h->name, h->name_len, "if-match"))
                return NULL;
            break;
        case HS_FF_LEN_IF_NONE_MATCH:
            if (hs_token_eq(h->name, h->name_len, "if-none-match")) {
                if (inm)
                    return NULL; /* repeated: Python joins them; leave it to Python */
                inm = h;
            }
            break;
        case HS_FF_LEN_ACCEPT_ENCODING:
            if (hs_token_eq(h->name, h->name_len, "accept-encoding")) {
                hs_accept_feed(&scan, h->value, h->value_len);
                ae_seen = 1;
            }
            break;
        case HS_FF_LEN_IF_MODIFIED_SINCE:
            if (hs_token_eq(h->name, h->name_len, "if-modified-since"))
                ims = 1;
            break;
        case HS_FF_LEN_IF_UNMODIFIED_SINCE:
            if (hs_token_eq(h->name, h->name_len, "if-unmodified-since"))
                return NULL;
            break;
        default:
            break;
        }
    }
    if (ims && !inm)
        return NULL; /* If-Modified-Since alone: date parsing stays in Python */
    if (!hs_ff_current(t, e, now_s))
        return NULL;
    if (e->nreps > 1 && ae_seen)
        gzip = hs_accept_result(&scan);
    hs_ff_rep *rep = &e->rep[gzip ? HS_FF_GZIP : HS_FF_IDENTITY];
    if (e->date_s != date_s) {
        for (int k = 0; k < e->nreps; k++) {
            memcpy(e->rep[k].ok.data + e->rep[k].ok.date_off, date, HS_DATE_LEN);
            memcpy(e->rep[k].not_modified.data + e->rep[k].not_modified.date_off, date, HS_DATE_LEN);
        }
        e->date_s = date_s;
    }
    if (inm && rep->etag_len && hs_ff_etag_matches(inm->value, inm->value_len, rep->etag, rep->etag_len))
        return &rep->not_modified;
    return &rep->ok;
}
