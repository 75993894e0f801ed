/*
 * hs_conn.c - one client connection: read buffer, incremental request
 * assembly (head, Content-Length body, chunked body decoded in place),
 * pipelining, and the write queue. Shared by hypersonic.socket and the server
 * loop; see hs_conn.h for the contract and the theory of operation.
 *
 * Layout of rbuf while a request is assembled:
 *   [0, head_len)                 the head, as received (parsed again, cheaply,
 *                                 when the buffer moved since it was parsed)
 *   [head_len, body_raw_end)      chunked: the body decoded so far
 *   [body_raw_end, len)           chunked: raw bytes not yet decoded
 * For a Content-Length body the body simply follows the head.
 *
 * Steady state is allocation-free: buffers keep their capacity across
 * requests and connections (hs_conn_reset), and are shrunk only after an
 * unusually large request (HS_CONN_KEEP_CAPACITY).
 */
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include "hs_conn.h"

/* Private states of hs_conn.state */
#define HS_CONN_HEAD 0    /* waiting for / parsing the head */
#define HS_CONN_BODY 1    /* head done, waiting for Content-Length bytes */
#define HS_CONN_CHUNKED 2 /* head done, decoding a chunked body */
#define HS_CONN_READY 3   /* a complete request is described by req/body */

/* Most bytes one hs_conn_recv call reads when every recv fills the space offered. */
#define HS_CONN_RECV_BUDGET (16 * HS_READ_CHUNK)
/* A buffer larger than this is freed once empty, so one huge request does not pin memory. */
#define HS_CONN_KEEP_CAPACITY (4 * HS_READ_CHUNK)

#ifdef MSG_NOSIGNAL
#define HS_SEND_FLAGS MSG_NOSIGNAL
#else
#define HS_SEND_FLAGS 0 /* Apple: SO_NOSIGPIPE is set at accept */
#endif

HS_API void hs_conn_reset(hs_conn *c, int fd)
{
    hs_buf rbuf = c->rbuf;
    hs_buf wbuf = c->wbuf;
    memset(c, 0, offsetof(hs_conn, req)); /* everything before the (large) parsed head */
    c->req.num_headers = 0;
    c->body = NULL;
    c->body_len = 0;
    c->consumed = 0;
    c->error_status = 0;
    c->continue_pending = 0;
    c->last_active_ms = 0;
    c->head_started_ms = 0;
    c->flags = 0;
    c->file_fd = -1; /* the owner released any file body before reusing the slot */
    c->file_off = 0;
    c->file_left = 0;
    c->fd = fd;
    c->rbuf = rbuf;
    c->rbuf.len = 0;
    c->wbuf = wbuf;
    c->wbuf.len = 0;
    c->wpos = 0;
    c->state = HS_CONN_HEAD;
    hs_chunked_init(&c->chunked);
}

HS_API void hs_conn_free(hs_conn *c)
{
    hs_buf_free(&c->rbuf);
    hs_buf_free(&c->wbuf);
    c->wpos = 0;
}

HS_API ssize_t hs_conn_recv(hs_conn *c)
{
    size_t total = 0;
    for (;;) {
        /* Offer what is free: at least HS_READ_FIRST, and a whole chunk more once a read filled it. */
        if (hs_buf_reserve(&c->rbuf, total ? HS_READ_CHUNK : HS_READ_FIRST) < 0) {
            errno = ENOMEM;
            return total ? (ssize_t)total : HS_RECV_ERROR;
        }
        size_t space = c->rbuf.cap - c->rbuf.len;
        ssize_t n = recv(c->fd, c->rbuf.data + c->rbuf.len, space, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (total)
                return (ssize_t)total; /* report the error on the next call */
            return (errno == EAGAIN || errno == EWOULDBLOCK) ? HS_RECV_AGAIN : HS_RECV_ERROR;
        }
        if (n == 0)
            return total ? (ssize_t)total : HS_RECV_CLOSED; /* EOF is seen again next call */
        c->rbuf.len += (size_t)n;
        total += (size_t)n;
        /* A short read means the socket is drained: no second recv for the EAGAIN. */
        if ((size_t)n < space || total >= HS_CONN_RECV_BUDGET)
            return (ssize_t)total;
    }
}

/* The head is parsed and the body (if any) is complete: describe the request. */
static int hs_conn_ready(hs_conn *c, size_t body_start, size_t body_len, size_t consumed)
{
    c->body = body_len ? c->rbuf.data + body_start : NULL;
    c->body_len = body_len;
    c->consumed = consumed;
    c->state = HS_CONN_READY;
    c->continue_pending = 0;
    return HS_REQ_READY;
}

static int hs_conn_reject(hs_conn *c, int status)
{
    c->error_status = status;
    c->continue_pending = 0;
    return HS_REQ_ERROR;
}

/* Re-point req into rbuf after the buffer may have moved (re-parse the head only). */
static int hs_conn_reparse_head(hs_conn *c, const hs_limits *lim)
{
    int status = 0;
    int n = hs_parse_request(c->rbuf.data, c->head_len, lim, &c->req, &status);
    if (n != (int)c->head_len) /* cannot happen: the same bytes parsed before */
        return hs_conn_reject(c, status ? status : 400);
    return 0;
}

/* Decode raw chunked bytes at [body_raw_end, len). */
static int hs_conn_chunked_step(hs_conn *c, const hs_limits *lim)
{
    char *raw = c->rbuf.data + c->body_raw_end;
    size_t n = c->rbuf.len - c->body_raw_end;
    ssize_t after = hs_decode_chunked(&c->chunked, raw, &n, lim->max_body);
    if (after == HS_PARSE_ERROR)
        return hs_conn_reject(c, c->chunked.total > lim->max_body ? 413 : 400);
    /* raw[0..n) now holds decoded payload; it is already in place (raw == end of decoded). */
    c->body_raw_end += n;
    if (after == HS_PARSE_PARTIAL) {
        c->rbuf.len = c->body_raw_end; /* every raw byte was used */
        return HS_REQ_PARTIAL;
    }
    /* Body ended: the pipelined remainder sits at raw[n .. n + after); move it next to the body. */
    if (after > 0 && raw + n != c->rbuf.data + c->body_raw_end)
        memmove(c->rbuf.data + c->body_raw_end, raw + n, (size_t)after);
    c->rbuf.len = c->body_raw_end + (size_t)after;
    return HS_REQ_READY;
}

HS_API int hs_conn_parse(hs_conn *c, const hs_limits *lim)
{
    int head_fresh = 0;
    switch (c->state) {
    case HS_CONN_READY:
        return HS_REQ_READY;
    case HS_CONN_HEAD: {
        if (c->error_status)
            return HS_REQ_ERROR;
        if (c->rbuf.len == 0)
            return HS_REQ_PARTIAL;
        int status = 0;
        int n = hs_parse_request(c->rbuf.data, c->rbuf.len, lim, &c->req, &status);
        if (n == HS_PARSE_PARTIAL)
            return HS_REQ_PARTIAL;
        if (n < 0)
            return hs_conn_reject(c, status ? status : 400);
        head_fresh = 1;
        c->head_len = (size_t)n;
        if (c->req.chunked) {
            hs_chunked_init(&c->chunked);
            c->body_raw_end = c->head_len;
            c->state = HS_CONN_CHUNKED;
        } else if (c->req.content_length > 0) {
            c->state = HS_CONN_BODY;
        } else {
            return hs_conn_ready(c, c->head_len, 0, c->head_len);
        }
        /* RFC 9110 10.1.1: answer 100-continue only while no body byte has arrived. */
        c->continue_pending = c->req.expect_continue && c->req.minor_version == 1 && c->rbuf.len == c->head_len;
    }
        /* fall through */
    case HS_CONN_BODY:
    case HS_CONN_CHUNKED:
        break;
    default:
        return hs_conn_reject(c, 400);
    }

    if (c->rbuf.len > c->head_len)
        c->continue_pending = 0;
    if (c->state == HS_CONN_BODY) {
        size_t need = c->head_len + (size_t)c->req.content_length;
        if (c->rbuf.len < need)
            return HS_REQ_PARTIAL;
        if (!head_fresh && hs_conn_reparse_head(c, lim) < 0)
            return HS_REQ_ERROR;
        return hs_conn_ready(c, c->head_len, (size_t)c->req.content_length, need);
    }
    int r = hs_conn_chunked_step(c, lim);
    if (r != HS_REQ_READY)
        return r;
    if (!head_fresh && hs_conn_reparse_head(c, lim) < 0)
        return HS_REQ_ERROR;
    return hs_conn_ready(c, c->head_len, c->body_raw_end - c->head_len, c->body_raw_end);
}

HS_API void hs_conn_consume(hs_conn *c)
{
    if (c->state != HS_CONN_READY)
        return;
    hs_buf_consume(&c->rbuf, c->consumed);
    if (c->rbuf.len == 0 && c->rbuf.cap > HS_CONN_KEEP_CAPACITY)
        hs_buf_free(&c->rbuf);
    c->state = HS_CONN_HEAD;
    c->head_len = 0;
    c->body_raw_end = 0;
    c->body = NULL;
    c->body_len = 0;
    c->consumed = 0;
}

HS_API int hs_conn_queue(hs_conn *c, const void *data, size_t n)
{
    if (hs_buf_append(&c->wbuf, data, n) < 0) {
        errno = ENOMEM;
        return -1;
    }
    return 0;
}

HS_API int hs_conn_flush(hs_conn *c)
{
    /* A file body follows the queued head: MSG_MORE lets the kernel put the head and the
     * first file bytes in one segment (as TCP_CORK would), instead of a lone small one. */
    int flags = HS_SEND_FLAGS;
#ifdef MSG_MORE
    if (c->file_fd >= 0)
        flags |= MSG_MORE;
#endif
    while (c->wpos < c->wbuf.len) {
        ssize_t n = send(c->fd, c->wbuf.data + c->wpos, c->wbuf.len - c->wpos, flags);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                return HS_FLUSH_AGAIN;
            return HS_FLUSH_ERROR;
        }
        c->wpos += (size_t)n;
    }
    c->wbuf.len = 0;
    c->wpos = 0;
    if (c->wbuf.cap > HS_CONN_KEEP_CAPACITY)
        hs_buf_free(&c->wbuf);
    return HS_FLUSH_DONE;
}

/* Initial number of slots in a connection table. */
#define HS_CONNS_MIN_SIZE 256

HS_API hs_conn *hs_conns_get(hs_conns *t, int fd, int create)
{
    if (fd < 0)
        return NULL;
    if ((size_t)fd < t->size && t->by_fd[fd])
        return t->by_fd[fd];
    if (!create)
        return NULL;
    if ((size_t)fd >= t->size) {
        size_t size = t->size ? t->size : HS_CONNS_MIN_SIZE;
        while (size <= (size_t)fd)
            size *= 2;
        hs_conn **grown = (hs_conn **)realloc(t->by_fd, size * sizeof *grown);
        if (!grown)
            return NULL;
        memset(grown + t->size, 0, (size - t->size) * sizeof *grown);
        t->by_fd = grown;
        t->size = size;
    }
    hs_conn *c = (hs_conn *)calloc(1, sizeof *c);
    if (!c)
        return NULL;
    hs_conn_reset(c, fd);
    t->by_fd[fd] = c;
    return c;
}

HS_API void hs_conns_drop(hs_conns *t, int fd)
{
    if (fd < 0 || (size_t)fd >= t->size || !t->by_fd[fd])
        return;
    hs_conn_free(t->by_fd[fd]);
    free(t->by_fd[fd]);
    t->by_fd[fd] = NULL;
}
