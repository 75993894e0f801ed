/*
 * hs_router.c - route lookup over the generated tables (see hs_router.h).
 *
 * Must be included after the generated hs_app.h, which defines
 * hs_app_nodes, hs_app_children, hs_app_exact and HS_APP_EXACT_MASK.
 */
#include <string.h>

#include "hs_router.h"

HS_API int hs_method_index(const char *m, size_t len)
{
    switch (len) {
    case 3:
        if (memcmp(m, "GET", 3) == 0)
            return HS_M_GET;
        if (memcmp(m, "PUT", 3) == 0)
            return HS_M_PUT;
        break;
    case 4:
        if (memcmp(m, "HEAD", 4) == 0)
            return HS_M_HEAD;
        if (memcmp(m, "POST", 4) == 0)
            return HS_M_POST;
        break;
    case 5:
        if (memcmp(m, "PATCH", 5) == 0)
            return HS_M_PATCH;
        break;
    case 6:
        if (memcmp(m, "DELETE", 6) == 0)
            return HS_M_DELETE;
        break;
    case 7:
        if (memcmp(m, "OPTIONS", 7) == 0)
            return HS_M_OPTIONS;
        break;
    default:
        break;
    }
    return -1;
}

/* Static child of node matching seg[0..n), or -1 (binary search by (len, bytes)). */
HS_API int hs_route_child(const hs_node *node, const char *seg, size_t n)
{
    int lo = node->child_first, hi = node->child_first + node->child_count - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        const hs_child *ch = &hs_app_children[mid];
        int cmp;
        if (ch->seg_len != n)
            cmp = ch->seg_len < n ? -1 : 1;
        else
            cmp = memcmp(ch->seg, seg, n);
        if (cmp == 0)
            return ch->node;
        if (cmp < 0)
            lo = mid + 1;
        else
            hi = mid - 1;
    }
    return -1;
}

/* Match path[pos..len) below node; depth-first: static child, then parameter, then wildcard. */
HS_API int hs_route_walk(int node_index, const char *path, size_t pos, size_t len, hs_span *params,
                         int nparams, int *out_nparams)
{
    const hs_node *node = &hs_app_nodes[node_index];
    if (pos == len) {
        if (node->has_routes) {
            *out_nparams = nparams;
            return node_index;
        }
    } else if (path[pos] == '/') {
        size_t start = pos + 1, end = start;
        while (end < len && path[end] != '/')
            end++;
        if (node->child_count) {
            int child = hs_route_child(node, path + start, end - start);
            if (child >= 0) {
                int found = hs_route_walk(child, path, end, len, params, nparams, out_nparams);
                if (found >= 0)
                    return found;
            }
        }
        if (node->param_child >= 0 && end > start && nparams < HS_MAX_PARAMS) {
            params[nparams].p = path + start;
            params[nparams].len = end - start;
            int found = hs_route_walk(node->param_child, path, end, len, params, nparams + 1, out_nparams);
            if (found >= 0)
                return found;
        }
    }
    if (node->wild_child >= 0) { /* a prefix mount takes whatever rest nothing else matched */
        *out_nparams = nparams;
        return node->wild_child;
    }
    return -1;
}

HS_API int hs_route_lookup(const char *path, size_t len, hs_span *params, int *nparams)
{
    *nparams = 0;
    uint32_t slot = hs_route_hash(path, len) & HS_APP_EXACT_MASK;
    for (;;) {
        const hs_exact *e = &hs_app_exact[slot];
        if (!e->path)
            break;
        if (e->path_len == len && memcmp(e->path, path, len) == 0)
            return e->node;
        slot = (slot + 1) & HS_APP_EXACT_MASK;
    }
#if HS_APP_HAS_PARAMS
    if (len == 0 || path[0] != '/')
        return -1;
    return hs_route_walk(0, path, 0, len, params, 0, nparams);
#else
    (void)params;
    return -1;
#endif
}
