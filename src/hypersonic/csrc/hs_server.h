/*
 * hs_server.h - the server event loop: accept, read, parse, route, answer
 * static routes from baked bytes, hand dynamic routes to a callback, write with
 * backpressure, time out idle and slow connections, drain on stop.
 *
 * The loop itself never touches Python: hs_servermod.c supplies the dynamic
 * route callback and the hooks run around the blocking wait (releasing the GIL)
 * and after each wakeup (running Python signal handlers). One hs_server per
 * process, driven from one thread. When s->alog is set, every response
 * (static, dynamic, error) appends one access log line (hs_accesslog.h).
 */
#ifndef HS_SERVER_H
#define HS_SERVER_H

#include <signal.h>
#include <stdint.h>

#include "hs_accesslog.h"
#include "hs_conn.h"
#include "hs_date.h"
#include "hs_filefast.h"
#include "hs_parser.h"
#include "hs_router.h"

/* Most readiness events taken from one wait. */
#define HS_SERVER_EVENT_BATCH 512
/* Most connections accepted per wakeup of the listening socket (fairness). */
#define HS_SERVER_ACCEPT_BATCH 256
/* Longest wait: the loop wakes at least once a second (Date, timeouts, signals). */
#define HS_SERVER_TICK_MS 1000
/* Stop answering pipelined requests while this much output is queued (resume when flushed). */
#define HS_SERVER_OUTPUT_HIGH_WATER (1024 * 1024)
/* How long a connection closed after an error keeps draining input, so the client reads the error. */
#define HS_SERVER_LINGER_MS 2000
/*
 * During a drain, how long a connection that has not sent its first request yet
 * is kept: its client connected before the stop and its request is usually on
 * the way (closing it now would fail a client that did nothing wrong). Reused
 * idle keep-alive connections close at once (RFC 9112 9.3.1: clients expect it).
 */
#define HS_SERVER_DRAIN_FRESH_GRACE_MS 1000

/* hs_conn.flags bits owned by the server loop */
#define HS_CF_ACTIVE 1u       /* slot in use */
#define HS_CF_CLOSE_AFTER 2u  /* close once the write queue is flushed */
#define HS_CF_LINGER 4u       /* write side shut down, discarding input until EOF or deadline */
#define HS_CF_WANT_WRITE 8u   /* registered for HS_EV_WRITE (not READ): output is pending */
#define HS_CF_IN_REQUEST 16u  /* rbuf holds part of a request (recv_timeout runs) */
#define HS_CF_MORE 32u        /* complete requests left unanswered in rbuf (output high water) */
#define HS_CF_PEER_EOF 64u    /* peer closed its side */
#define HS_CF_ERROR_CLOSE 128u /* closing after an error response: linger */
#define HS_CF_ANSWERED 256u  /* at least one request was answered on this connection */
#define HS_CF_STREAMING 512u /* a streaming response owns the connection (hooks below); no timeouts but a stall */

/* While a response streams, input behind it (pipelined requests) waits; more than this closes the connection. */
#define HS_SERVER_STREAM_INPUT_MAX (64 * 1024)

typedef struct hs_server hs_server;

/*
 * Dynamic route callback: queue the whole response for the request in c->req
 * (the route's handler index, matched params). keep_alive says whether the
 * response keeps the connection open (the callback may set HS_CF_CLOSE_AFTER).
 * Returns 0, or -1 when a response could not be queued (out of memory: the
 * connection is closed).
 */
typedef int (*hs_dynamic_fn)(hs_server *s, hs_conn *c, int method, const hs_route *route, const hs_span *params,
                             int nparams, int head_only, int keep_alive);
/* Called after every wakeup; nonzero asks the loop to stop (drain). */
typedef int (*hs_wakeup_fn)(hs_server *s);
/* Streaming hooks (all NULL when the embedder streams nothing): see the fields of hs_server. */
typedef void (*hs_server_fn)(hs_server *s);
typedef int (*hs_stream_conn_fn)(hs_server *s, hs_conn *c);

struct hs_server {
    int loop;
    int listen_fd;
    int listening;          /* listen_fd registered in the loop */
    int is_epoll;           /* close() removes an fd from the loop by itself */
    hs_conns conns;
    hs_limits lim;
    int max_connections;
    int nconns;
    int64_t keepalive_ms;
    int64_t recv_ms;
    int64_t drain_ms;
    volatile sig_atomic_t stop_requested;
    int draining;
    int64_t drain_deadline_ms;
    int64_t now_ms;         /* monotonic, refreshed per wakeup */
    time_t date_second;     /* wall-clock second of `date` */
    char date[HS_DATE_LEN + 1];
    hs_baked *baked;        /* the app's baked responses, Date patched each second */
    int nbaked;
    hs_ff_table *files;     /* baked files of static mounts (HS_ROUTE_MOUNT), NULL: none */
    hs_dynamic_fn dynamic;
    hs_wakeup_fn after_wakeup;
    void *user;
    hs_alog *alog;          /* access log, NULL when off (the embedder opens and closes it) */
    /* Streaming (HS_CF_STREAMING connections are fed by the embedder): */
    int wake_fd;            /* registered for reads; readable: call on_wake (-1: none) */
    hs_server_fn on_wake;   /* flush the connections the embedder queued output on */
    hs_stream_conn_fn on_stream_flushed; /* after a flush of a streaming connection; 1: the stream
                                            ended (flag cleared), go on with the connection */
    hs_stream_conn_fn on_stream_close;   /* a streaming connection is being closed (return ignored) */
    /* counters */
    uint64_t stat_requests;
    uint64_t stat_static;
    uint64_t stat_python_calls;
    uint64_t stat_accepted;
    uint64_t stat_errors;   /* 4xx/5xx answered for protocol errors and timeouts */
    uint64_t stat_wakeups;
    uint64_t stat_writes;
    uint64_t stat_write_waits; /* times a connection waited for writability (backpressure) */
};

/* Prepare s; listen_fd must already be listening and non-blocking. 0, or -1 (errno). */
HS_API int hs_server_init(hs_server *s, int listen_fd);
/* Run until a stop is requested and the drain finished. 0, or -1 (errno) on a loop failure. */
HS_API int hs_server_run(hs_server *s);
/* Release everything (connections closed, loop closed). */
HS_API void hs_server_destroy(hs_server *s);
/* Async-signal-safe: ask the loop to stop accepting and drain. */
static inline void hs_server_request_stop(hs_server *s) { s->stop_requested = 1; }
/* Monotonic milliseconds. */
HS_API int64_t hs_now_ms(void);

#endif /* HS_SERVER_H */
