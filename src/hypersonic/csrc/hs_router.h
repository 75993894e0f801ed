/*
 * hs_router.h - the shape of an app's route table and the C lookup over it.
 *
 * hypersonic._codegen writes an app's table as constants in a generated
 * header (hs_app.h); this file fixes the types it fills in and declares the
 * lookup that hs_router.c runs per request.
 *
 * Theory of operation. A route pattern ("/users/:id/posts") is a sequence of
 * segments (split on '/', "/" itself being one empty segment). Every distinct
 * pattern (parameter names ignored) is a node of a segment trie; a node holds
 * the route index for each method. Lookup first tries a hash table of the
 * patterns that have no parameter (one hash of the path, one memcmp), then
 * walks the trie segment by segment: static children first (binary search
 * over the sorted children), then the parameter child, backtracking when the
 * rest of the path does not match, so static segments always win over
 * parameters. A parameter matches exactly one non-empty segment.
 * A node may also have a wildcard child (a prefix mount, e.g. the static files
 * of app.static("/static", ...)): it matches whatever rest of the path the
 * static and parameter children could not ("", "/", "/a/b/c"), so every route
 * registered by the app wins over the mount, and the deepest mount wins.
 */
#ifndef HS_ROUTER_H
#define HS_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include "hs_common.h"

/* Methods a route can be registered for; others are 501 Not Implemented. */
enum {
    HS_M_GET = 0,
    HS_M_HEAD,
    HS_M_POST,
    HS_M_PUT,
    HS_M_DELETE,
    HS_M_PATCH,
    HS_M_OPTIONS,
    HS_M_COUNT
};

/* Most ":name" parameters in one route (the code generator enforces it). */
#define HS_MAX_PARAMS 16

/* A baked (static) response: its bytes, patched in place once a second. */
typedef struct hs_baked {
    char *data;         /* "HTTP/1.1 ...\r\n" fields "\r\n" body */
    uint32_t len;       /* total bytes */
    uint32_t head_len;  /* bytes of the status line and field lines (each ending CRLF),
                           i.e. up to but excluding the empty line's CRLF */
    uint32_t date_off;  /* offset of the 29-byte Date value */
} hs_baked;

#define HS_ROUTE_STATIC 0
#define HS_ROUTE_DYNAMIC 1
/* Static with a gzip variant (app.compress()): baked[baked] is the identity
 * response, baked[baked + 1] the gzip one; the request's Accept-Encoding picks. */
#define HS_ROUTE_STATIC_GZIP 2
/* Dynamic (handler = a static mount's) whose baked files may be answered from
 * C first (hs_filefast.h); whatever hs_ff_pick leaves goes to the handler. */
#define HS_ROUTE_MOUNT 3

typedef struct hs_route {
    int kind;           /* HS_ROUTE_STATIC, HS_ROUTE_DYNAMIC, HS_ROUTE_STATIC_GZIP or HS_ROUTE_MOUNT */
    int baked;          /* static: index into the baked table */
    int handler;        /* dynamic and mount: index into the Python handler table */
} hs_route;

typedef struct hs_child {
    const char *seg;    /* segment text */
    uint32_t seg_len;
    int node;
} hs_child;

typedef struct hs_node {
    int child_first;    /* static children: hs_app_children[child_first .. + child_count), */
    int child_count;    /*   sorted by (seg_len, bytes) */
    int param_child;    /* node for a ":name" segment, or -1 */
    int has_routes;     /* 1 when a pattern ends here */
    int16_t route[HS_M_COUNT]; /* route index per method, or -1 */
    const char *allow;  /* "Allow: ...\r\n" field line: registered methods, HEAD with GET, OPTIONS */
    uint32_t allow_len;
    int wild_child;     /* node of a prefix mount below this node (matches any rest), or -1 */
} hs_node;

/* One slot of the open-addressing table of parameter-free patterns. */
typedef struct hs_exact {
    const char *path;   /* NULL: empty slot */
    uint32_t path_len;
    int node;
} hs_exact;

/* One status line, "HTTP/1.1 NNN Reason\r\n", for the generated table hs_app_status[]. */
typedef struct hs_status_line {
    const char *text;
    uint32_t len;
} hs_status_line;

/* A matched parameter value: a span of the request path. */
typedef struct hs_span {
    const char *p;
    size_t len;
} hs_span;

/* The hash of the exact-path table: 32-bit FNV-1a (mirrored in _codegen.py). */
static inline uint32_t hs_route_hash(const char *s, size_t n)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < n; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

/* The method index of method[0..len), or -1 when it is not one a route can have. */
HS_API int hs_method_index(const char *method, size_t len);

/*
 * Find the node for path[0..len) (origin-form path, starting with '/').
 * Returns the node index, or -1 when no pattern matches; on a match
 * params[0..*nparams) hold the parameter values in pattern order.
 */
HS_API int hs_route_lookup(const char *path, size_t len, hs_span *params, int *nparams);

#endif /* HS_ROUTER_H */
