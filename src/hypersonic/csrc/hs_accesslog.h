/*
 * hs_accesslog.h - the access log of one worker: a compiled format (an op
 * list), the remote address of every connection captured at accept, and a
 * line buffer flushed with write(2).
 *
 * Theory of operation. The Python layer (hypersonic._accesslog) compiles the
 * format string once into (op name, argument) pairs; hs_servermod.c turns them
 * into hs_alog_op entries. The loop then, per response:
 *  - hs_alog_line() appends one line to `buf` by walking the ops; the response
 *    itself is read back from the connection's write queue (status from its
 *    status line, bytes sent from its length, body bytes after CRLFCRLF), so
 *    no response writer needs to report anything;
 *  - when the buffer passes HS_ALOG_FLUSH_AT it is written out at once; the
 *    loop also calls hs_alog_flush() on its once-a-second tick and when it
 *    stops, so a line is on disk within about a second.
 * Each write(2) carries whole lines; with an O_APPEND file descriptor several
 * worker processes can share one file without interleaving inside a line
 * (except after a short write, e.g. a full disk). No Python, no allocation per
 * line (the per-fd peer table grows only when a higher fd is accepted).
 */
#ifndef HS_ACCESSLOG_H
#define HS_ACCESSLOG_H

#include <stdint.h>
#include <time.h>

#include "hs_common.h"
#include "hs_parser.h"

/* Capacity of the line buffer. */
#define HS_ALOG_BUF_CAP (64 * 1024)
/* Write the buffer out once it holds this much. */
#define HS_ALOG_FLUSH_AT (32 * 1024)
/* Longest line; longer ones are cut (the newline is kept). Must be < BUF_CAP - FLUSH_AT. */
#define HS_ALOG_LINE_MAX (16 * 1024)
/* Room for a textual IPv6 address (INET6_ADDRSTRLEN is 46) and its NUL. */
#define HS_ALOG_ADDR_MAX 48
/* "29/Nov/2026:20:08:00 +0000" and "2026-11-29T20:08:00+00:00" with room to spare. */
#define HS_ALOG_TIME_MAX 40

/* Op kinds; hs_alog_op_names[] gives each its name (the contract with hypersonic._accesslog). */
enum {
    HS_ALOG_LITERAL,        /* arg, as is */
    HS_ALOG_REMOTE_ADDR,    /* client IP; "unix" for a Unix socket; "-" when unknown */
    HS_ALOG_METHOD,         /* request method */
    HS_ALOG_TARGET,         /* request-target exactly as sent (path and query) */
    HS_ALOG_PATH,           /* path part of the target */
    HS_ALOG_QUERY,          /* query after '?', "-" when absent */
    HS_ALOG_REQUEST,        /* "METHOD target HTTP/1.x" */
    HS_ALOG_PROTOCOL,       /* "HTTP/1.0" or "HTTP/1.1" */
    HS_ALOG_STATUS,         /* response status code */
    HS_ALOG_BYTES_SENT,     /* bytes of the whole response (status line, fields, body) */
    HS_ALOG_BODY_BYTES,     /* bytes of the response body */
    HS_ALOG_DURATION_US,    /* microseconds from the read that brought the request's first byte to the response queued */
    HS_ALOG_DURATION_S,     /* the same in seconds with millisecond precision ("0.002") */
    HS_ALOG_HEADER,         /* the request header named arg (lower case), "-" when absent */
    HS_ALOG_TIME_LOCAL,     /* "29/Nov/2026:20:08:00 +0000" */
    HS_ALOG_TIME_ISO8601,   /* "2026-11-29T20:08:00+00:00" */
    HS_ALOG_MSEC,           /* Unix time with milliseconds ("1796328480.123") */
    HS_ALOG_PID,            /* the worker's process id */
    HS_ALOG_SENT_HEADER,    /* the response header named arg (lower case), "-" when absent */
    HS_ALOG_REQUEST_ID,     /* the response header named arg (the id app.request_id() echoed, or a
                               handler set), else the request header of that name, else "-" */
    HS_ALOG_OP_COUNT
};

typedef struct hs_alog_op {
    int kind;
    const char *arg; /* LITERAL: the text; HEADER: the lower-case field name */
    size_t arg_len;
} hs_alog_op;

/* What is known of one connection, indexed by its fd. */
typedef struct hs_alog_peer {
    int64_t start_us;             /* monotonic time of the read that began the current request */
    unsigned char addr_len;
    char addr[HS_ALOG_ADDR_MAX];
} hs_alog_peer;

typedef struct hs_alog {
    int fd;                       /* -1: closed */
    const hs_alog_op *ops;        /* owned by the caller, live while open */
    int nops;
    int need_clock;               /* a duration op is present: read the clock per line */
    int need_body;                /* a body-bytes op is present: find the end of the head */
    char *buf;                    /* HS_ALOG_BUF_CAP bytes */
    size_t len;
    hs_alog_peer *peers;
    size_t npeers;
    int64_t wake_us;              /* monotonic time of the loop's current wakeup */
    uint64_t file_body;           /* set by the caller before hs_alog_line: bytes of a file body sent
                                     after the queued response (hs_file.c), counted as body bytes */
    time_t time_second;           /* second of time_local/time_iso */
    char time_local[HS_ALOG_TIME_MAX];
    size_t time_local_len;
    char time_iso[HS_ALOG_TIME_MAX];
    size_t time_iso_len;
    char pid[24];
    size_t pid_len;
    uint64_t lines;               /* lines written into the buffer */
    uint64_t dropped;             /* lines lost: buffer full behind a non-blocking fd, or a write error */
    uint64_t write_errors;        /* write(2) failures other than EINTR/EAGAIN */
} hs_alog;

/* The name of each op kind, by kind. */
HS_API const char *hs_alog_op_name(int kind);
/* The kind named `name`, or -1. */
HS_API int hs_alog_op_by_name(const char *name);

/* Start logging to fd (taken over: closed by hs_alog_close) with these ops. 0, or -1 (ENOMEM). */
HS_API int hs_alog_open(hs_alog *a, int fd, const hs_alog_op *ops, int nops);
/* Flush, close the fd, free the buffers; the counters stay readable. */
HS_API void hs_alog_close(hs_alog *a);
/* Write the buffered lines. 0, or -1 when a write failed (those lines are dropped). */
HS_API int hs_alog_flush(hs_alog *a);
/* Monotonic microseconds. */
HS_API int64_t hs_alog_now_us(void);
/* A connection was accepted on fd: remember its remote address (getpeername). */
HS_API void hs_alog_accepted(hs_alog *a, int fd);
/* The request now starting on fd began with the read of the current wakeup. */
static inline void hs_alog_mark_start(hs_alog *a, int fd)
{
    if ((size_t)fd < a->npeers)
        a->peers[fd].start_us = a->wake_us;
}
/*
 * Append the line of one response. r: the request (fields may be NULL when
 * the request line was not understood); resp/resp_len: the response bytes as
 * queued; now: the wall-clock second.
 */
HS_API void hs_alog_line(hs_alog *a, int fd, const hs_request *r, const char *resp, size_t resp_len, time_t now);

#endif /* HS_ACCESSLOG_H */
