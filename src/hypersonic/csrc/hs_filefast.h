/*
 * hs_filefast.h - baked files of static mounts answered in C (no Python call).
 *
 * app.static() mounts a directory as a wildcard route whose handler is the
 * Python StaticMount (hypersonic._static). Its small files are baked at
 * compile(); hypersonic._filefast turns each baked file of a mount without
 * hooks into one entry of a table keyed by the exact request path ("/static/app.css",
 * and "/static/dir/" for a baked index), which the embedder builds with
 * hs_ff_table_new/hs_ff_table_set. The mount's route then has kind
 * HS_ROUTE_MOUNT, and the loop asks hs_ff_pick for the response before calling Python.
 *
 * hs_ff_pick answers only the common requests, exactly as StaticMount would:
 *  - the path is an entry of the table that belongs to this mount (the route
 *    the router chose; so every route of the app still wins over the mount);
 *  - none of Range, If-Range, If-Match, If-Unmodified-Since is present, nor
 *    If-Modified-Since without If-None-Match, and If-None-Match is not repeated;
 *  - the gzip representation when the entry has one and Accept-Encoding
 *    accepts gzip (hs_accept.c), else the identity one;
 *  - If-None-Match: "*" or a member equal to the representation's ETag after
 *    an optional "W/" (weak comparison, RFC 9110 13.1.2) gives the 304,
 *    otherwise the 200 (with ETags off, If-None-Match never matches);
 *  - staleness: at most once a (monotonic) second per entry, one stat() of
 *    the file; size, mtime (ns) and inode must be what was baked, otherwise
 *    the entry is disabled for good (Python, which re-checks too, then serves it).
 * Anything else returns NULL: the caller calls the mount's Python handler,
 * which answers exactly as before.
 */
#ifndef HS_FILEFAST_H
#define HS_FILEFAST_H

#include <stdint.h>
#include <time.h>

#include "hs_common.h"
#include "hs_parser.h"
#include "hs_router.h"

/* Identity and gzip. */
#define HS_FF_REPS 2
#define HS_FF_IDENTITY 0
#define HS_FF_GZIP 1

/* One representation of a file: its 200 and 304 responses (Date patched lazily) and its ETag. */
typedef struct hs_ff_rep {
    hs_baked ok;          /* 200 (HEAD sends its head only) */
    hs_baked not_modified; /* 304 */
    const char *etag;     /* the ETag value with its quotes; etag_len 0: ETags are off */
    uint32_t etag_len;
} hs_ff_rep;

/* One baked file reachable under one request path. */
typedef struct hs_ff_entry {
    char *path;           /* request path, e.g. "/static/app.css" (owned) */
    uint32_t path_len;
    int handler;          /* the mount's handler index: the entry answers only for that route */
    int nreps;            /* 1 (identity) or 2 (identity, gzip) */
    hs_ff_rep rep[HS_FF_REPS];
    char *file;           /* file system path, NUL-terminated (owned) */
    int64_t size;         /* st_size, st_mtime in ns and st_ino when baked */
    int64_t mtime_ns;
    uint64_t ino;
    int64_t checked_s;    /* monotonic second of the last stat (-1: never) */
    time_t date_s;        /* wall-clock second of the Date in the responses */
    int disabled;         /* the file changed: always the Python handler */
    char *storage;        /* the responses' and ETags' bytes (owned) */
} hs_ff_entry;

typedef struct hs_ff_table {
    hs_ff_entry *entries;
    uint32_t count;
    int32_t *slots;       /* open addressing by hs_route_hash(path); -1: empty */
    uint32_t mask;
    uint64_t disabled;    /* entries disabled so far (stats) */
} hs_ff_table;

/* A new table for count entries (all to be filled by hs_ff_table_set), or NULL when out of memory. */
HS_API hs_ff_table *hs_ff_table_new(uint32_t count);

/*
 * Fill entry i (< count) and index it. The response bytes are copied;
 * reps[k].ok/not_modified.data and etag point at the caller's bytes. 0, or -1
 * when out of memory or the path is already in the table (the entry then stays empty).
 */
HS_API int hs_ff_table_set(hs_ff_table *t, uint32_t i, const char *path, size_t path_len, int handler,
                           const char *file, int64_t size, int64_t mtime_ns, uint64_t ino, const hs_ff_rep *reps,
                           int nreps);

/* Release the table and everything it owns (NULL is fine). */
HS_API void hs_ff_table_free(hs_ff_table *t);

/*
 * The baked response for request r routed to the mount with this handler
 * index, or NULL when the Python handler must answer (see the top of this
 * file). now_s: monotonic second; date/date_s: the loop's current Date value
 * and its wall-clock second, copied into the chosen entry's responses when
 * they carry an older one.
 */
HS_API const hs_baked *hs_ff_pick(hs_ff_table *t, const hs_request *r, int handler, int64_t now_s,
                                  const char *date, time_t date_s);

/*
 * If-None-Match value v[0..n) against an entity-tag (with its quotes), as
 * hypersonic._static.etag_matches on the latin-1 text: the value stripped of
 * whitespace is "*", or one comma-separated member, stripped and without a
 * leading "W/", equals etag. 1 on a match, else 0.
 */
HS_API int hs_ff_etag_matches(const char *v, size_t n, const char *etag, size_t etag_len);

#endif /* HS_FILEFAST_H */
