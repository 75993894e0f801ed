/*
 * hs_conn.h - one client connection: its read buffer, the state of the
 * request being received (head, Content-Length body, chunked body), and its
 * write queue. Shared by hypersonic.socket (http_recv/http_send) and the server
 * loop, so both get the same buffering, pipelining and limits.
 *
 * Theory of operation. Bytes from recv() are appended to `rbuf`; the request
 * being assembled always starts at rbuf.data[0]. hs_conn_parse() looks at the
 * buffer without doing I/O: it parses the head (re-parsing from the start when
 * more bytes arrive; heads are small), then waits until Content-Length body
 * bytes are present, or decodes a chunked body in place right after the head.
 * When a request is complete it returns HS_REQ_READY and `req`, `body`,
 * `body_len` describe it (pointers into rbuf, valid until the next call that
 * reads or consumes). hs_conn_consume() then drops that request's bytes and
 * keeps whatever followed it (pipelined requests), so the next
 * hs_conn_parse() can return the next request without a syscall.
 *
 * Responses are appended to `wbuf` (so several pipelined responses leave in one
 * write) and hs_conn_flush() writes as much as the socket takes.
 */
#ifndef HS_CONN_H
#define HS_CONN_H

#include <sys/types.h>

#include "hs_buf.h"
#include "hs_parser.h"

/* Results of hs_conn_parse */
#define HS_REQ_READY 1    /* complete request available */
#define HS_REQ_PARTIAL 0  /* need more bytes */
#define HS_REQ_ERROR (-1) /* reject: c->error_status = 400/413/414/431/501/505 */

/* Results of hs_conn_recv */
#define HS_RECV_CLOSED 0  /* peer closed its side (orderly EOF) */
#define HS_RECV_ERROR (-1)  /* errno says why (not EAGAIN) */
#define HS_RECV_AGAIN (-2)  /* nothing to read now (EAGAIN/EWOULDBLOCK) */

/* Results of hs_conn_flush */
#define HS_FLUSH_DONE 1   /* write queue empty */
#define HS_FLUSH_AGAIN 0  /* socket full: wait for HS_EV_WRITE */
#define HS_FLUSH_ERROR (-1)

typedef struct hs_conn {
    int fd;
    hs_buf rbuf;           /* received bytes; the current request starts at data[0] */
    hs_buf wbuf;           /* queued response bytes */
    size_t wpos;           /* bytes of wbuf already written */
    int state;             /* private: HEAD, BODY, CHUNKED, READY */
    size_t head_len;       /* length of the parsed head, once parsed */
    size_t body_raw_end;   /* private: end of the (decoded) body region in rbuf */
    hs_chunked_decoder chunked;
    hs_request req;        /* valid after HS_REQ_READY */
    const char *body;      /* valid after HS_REQ_READY (NULL when body_len == 0) */
    size_t body_len;
    size_t consumed;       /* private: bytes of rbuf the ready request occupies */
    int error_status;      /* after HS_REQ_ERROR */
    int continue_pending;  /* 1 when the head asked for 100-continue and no body byte
                              has arrived yet: the owner sends "HTTP/1.1 100 Continue"
                              and clears it */
    int64_t last_active_ms;/* owner's bookkeeping (timeouts) */
    int64_t head_started_ms;
    unsigned flags;        /* owner's bookkeeping */
    int file_fd;           /* a file body to send once wbuf drained (hs_file.c), or -1 */
    uint64_t file_off;     /* its next byte */
    uint64_t file_left;    /* its bytes not yet sent */
} hs_conn;

/* Reset c for a new connection on fd, keeping allocated buffers for reuse. */
HS_API void hs_conn_reset(hs_conn *c, int fd);
/* Free the buffers (the fd is not closed). */
HS_API void hs_conn_free(hs_conn *c);

/*
 * One recv() into rbuf (grown as needed, up to what lim allows for a request
 * plus one read chunk). Returns bytes read (> 0), HS_RECV_CLOSED,
 * HS_RECV_AGAIN, or HS_RECV_ERROR (errno). EINTR is retried.
 */
HS_API ssize_t hs_conn_recv(hs_conn *c);

/* Look for a complete request in rbuf (no I/O). HS_REQ_READY / _PARTIAL / _ERROR. */
HS_API int hs_conn_parse(hs_conn *c, const hs_limits *lim);

/* Drop the request last returned READY, keeping any bytes that followed it. */
HS_API void hs_conn_consume(hs_conn *c);

/* Queue bytes for writing. 0, or -1 on ENOMEM. */
HS_API int hs_conn_queue(hs_conn *c, const void *data, size_t n);

/* Write queued bytes until done or the socket is full. HS_FLUSH_*. */
HS_API int hs_conn_flush(hs_conn *c);

/* Bytes queued and not yet written (the write queue, then a file body). */
static inline size_t hs_conn_pending(const hs_conn *c) { return c->wbuf.len - c->wpos + (size_t)c->file_left; }

/*
 * A table of connections indexed by fd, grown on demand (fds are small
 * integers). hs_conns_get(t, fd, 1) creates the entry; with create == 0 it
 * returns NULL when absent. hs_conns_drop frees the entry's buffers.
 */
typedef struct hs_conns {
    hs_conn **by_fd;
    size_t size;
} hs_conns;

HS_API hs_conn *hs_conns_get(hs_conns *t, int fd, int create);
HS_API void hs_conns_drop(hs_conns *t, int fd);

#endif /* HS_CONN_H */
