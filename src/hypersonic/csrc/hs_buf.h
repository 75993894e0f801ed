/*
 * hs_buf.h - a growable byte buffer (read buffers and write queues).
 *
 * All functions are static inline so each translation unit that includes
 * this header gets its own copy; nothing is exported. Growth doubles the
 * capacity; a failed allocation leaves the buffer unchanged and returns -1.
 */
#ifndef HS_BUF_H
#define HS_BUF_H

#include <stdlib.h>
#include <string.h>

#include "hs_common.h"

typedef struct hs_buf {
    char *data;   /* NULL until the first reserve */
    size_t len;   /* bytes in use: data[0..len) */
    size_t cap;   /* bytes allocated */
} hs_buf;

/* Make room for at least `extra` more bytes after len. 0 on success, -1 on ENOMEM. */
static inline int hs_buf_reserve(hs_buf *b, size_t extra)
{
    if (HS_LIKELY(b->cap - b->len >= extra))
        return 0;
    size_t need = b->len + extra;
    if (need < b->len)
        return -1; /* overflow */
    size_t cap = b->cap ? b->cap : 256;
    while (cap < need) {
        if (cap > SIZE_MAX / 2)
            return -1;
        cap *= 2;
    }
    char *p = (char *)realloc(b->data, cap);
    if (!p)
        return -1;
    b->data = p;
    b->cap = cap;
    return 0;
}

/* Append n bytes. 0 on success, -1 on ENOMEM (buffer unchanged). */
static inline int hs_buf_append(hs_buf *b, const void *src, size_t n)
{
    if (hs_buf_reserve(b, n) < 0)
        return -1;
    if (n)
        memcpy(b->data + b->len, src, n);
    b->len += n;
    return 0;
}

/* Drop the first n bytes (n <= len), moving the rest to the front. */
static inline void hs_buf_consume(hs_buf *b, size_t n)
{
    if (n >= b->len) {
        b->len = 0;
        return;
    }
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}

/* Free the storage; the buffer is empty and reusable afterwards. */
static inline void hs_buf_free(hs_buf *b)
{
    free(b->data);
    b->data = NULL;
    b->len = b->cap = 0;
}

#endif /* HS_BUF_H */
