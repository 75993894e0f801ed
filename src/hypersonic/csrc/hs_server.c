/*
 * hs_server.c - the server event loop (see hs_server.h for the contract).
 *
 * Must be included after the generated hs_app.h (route table, baked responses,
 * status lines, security header blocks) and after hs_parser.c, hs_conn.c,
 * hs_net.c, hs_event.c, hs_router.c, hs_date.c, hs_response.c, hs_accept.c,
 * hs_file.c and hs_filefast.c (baked files of static mounts, HS_ROUTE_MOUNT).
 * A response may end in a file body (c->file_fd, hs_file.c): it is
 * sent after the write queue, and no further pipelined request is answered
 * until it is.
 *
 * Theory of operation. One wait returns up to HS_SERVER_EVENT_BATCH ready
 * descriptors; each gets exactly one treatment:
 *  - listening socket: accept up to HS_SERVER_ACCEPT_BATCH connections, each
 *    registered for reads; at max_connections the listening socket leaves the
 *    loop (new clients wait in the kernel backlog) until a connection closes;
 *  - readable connection: one hs_conn_recv (one recv unless it filled the
 *    buffer), then every complete request in the buffer is answered in order,
 *    each response appended to the write queue; then ONE flush, so pipelined
 *    responses leave in a single send;
 *  - the flush could not finish: the connection is re-registered for writes
 *    only (backpressure: no more reading, so no more queued output) and back
 *    to reads once the queue is empty. This is the only epoll_ctl after accept.
 * Static routes are answered by copying baked bytes (no Python, no allocation:
 * the write queue keeps its capacity); a static route with a gzip variant
 * (HS_ROUTE_STATIC_GZIP) first reads Accept-Encoding (hs_accept.c), the only
 * header scan on a static route. A static mount's route (HS_ROUTE_MOUNT) first
 * asks hs_ff_pick (hs_filefast.c) for a baked file's response; whatever it
 * leaves, and every dynamic route, goes to s->dynamic.
 * Once a second (when the wall-clock second changes) the Date value is
 * re-formatted, patched into every baked response, and every connection is
 * checked for timeouts: idle keep-alive (keepalive_ms), a request not complete
 * within recv_ms (408, then close), a stalled write, a finished linger.
 * A connection closed after an error first shuts down its write side and
 * discards input for up to HS_SERVER_LINGER_MS, so the client reads the error
 * response instead of a reset.
 * Streaming (HS_CF_STREAMING, set by the embedder's dynamic callback): the
 * response is written by another thread through the embedder, which queues on
 * the write queue and makes s->wake_fd readable; on_wake flushes. While a
 * connection streams, no request behind it is answered (its input waits, at
 * most HS_SERVER_STREAM_INPUT_MAX), EOF means the client left, no idle or
 * recv timeout applies (a stalled write still closes it), and the close hook
 * tells the writer. on_stream_flushed clears the flag once the stream ended
 * and its bytes are written; the connection then goes on as after any answer.
 * Access log (s->alog, off by default): the write queue's length is noted
 * before each answer; afterwards the bytes queued since are the response, and
 * hs_alog_line reads status and sizes from them. A request that failed to parse
 * is parsed again (same bytes, same failure point) into a scratch hs_request,
 * so its line carries whatever the request line and fields gave before the
 * error. With the log off, the cost on the request path is one test of a
 * pointer that is always NULL.
 */
#include <errno.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "hs_accept.h"
#include "hs_event.h"
#include "hs_net.h"
#include "hs_server.h"

/* The embedder may release a global lock around the blocking wait. */
#ifndef HS_BLOCKING_BEGIN
#define HS_BLOCKING_BEGIN {
#define HS_BLOCKING_END }
#endif

/* Keep the access log's code out of the request path's instruction stream. */
#if defined(__GNUC__) || defined(__clang__)
#define HS_SERVER_COLD __attribute__((noinline, cold))
#else
#define HS_SERVER_COLD
#endif

/* Scratch space for input discarded while lingering. */
#define HS_SERVER_DISCARD_CHUNK 4096
/* Milliseconds per second. */
#define HS_MS_PER_S 1000
/* When a drain starts, at most this many accept batches empty the listen backlog. */
#define HS_SERVER_DRAIN_ACCEPT_ROUNDS 16

static const char hs_continue_line[] = "HTTP/1.1 100 Continue\r\n\r\n";

HS_API int64_t hs_now_ms(void)
{
    struct timespec ts;
    if (clock_gettime(CLOCK_MONOTONIC, &ts) < 0)
        return 0; /* cannot fail with a valid clock id */
    return (int64_t)ts.tv_sec * HS_MS_PER_S + ts.tv_nsec / 1000000;
}

/* Re-format the Date value when the second changed; patch baked responses. 1 when it changed. */
static int hs_server_tick_date(hs_server *s)
{
    time_t t = time(NULL);
    if (t == s->date_second)
        return 0;
    s->date_second = t;
    hs_date_format(t, s->date);
    for (int i = 0; i < s->nbaked; i++)
        memcpy(s->baked[i].data + s->baked[i].date_off, s->date, HS_DATE_LEN);
    return 1;
}

static void hs_server_listen_on(hs_server *s)
{
    if (s->listening || s->listen_fd < 0 || s->draining)
        return;
    if (hs_ev_add(s->loop, s->listen_fd, HS_EV_READ) == 0)
        s->listening = 1;
}

static void hs_server_listen_off(hs_server *s)
{
    if (!s->listening)
        return;
    (void)hs_ev_del(s->loop, s->listen_fd); /* failure leaves it registered: accept then sees EAGAIN */
    s->listening = 0;
}

static void hs_server_close(hs_server *s, hs_conn *c)
{
    if (!(c->flags & HS_CF_ACTIVE))
        return;
    if (HS_UNLIKELY(c->flags & HS_CF_STREAMING) && s->on_stream_close)
        (void)s->on_stream_close(s, c); /* tells the stream's writer it is gone */
    if (!s->is_epoll)
        (void)hs_ev_del(s->loop, c->fd); /* epoll forgets a closed fd by itself */
    hs_file_release(c);
    if (close(c->fd) < 0 && errno != EINTR) {
        /* EBADF/EIO: the descriptor is released either way; nothing to retry */
    }
    c->flags = 0;
    c->fd = -1;
    c->rbuf.len = 0;
    c->wbuf.len = 0;
    c->wpos = 0;
    /* Keep ordinary buffers for the next connection on this slot; drop unusually large ones. */
    if (c->rbuf.cap > HS_CONN_KEEP_CAPACITY)
        hs_buf_free(&c->rbuf);
    if (c->wbuf.cap > HS_CONN_KEEP_CAPACITY)
        hs_buf_free(&c->wbuf);
    s->nconns--;
    if (s->nconns < s->max_connections)
        hs_server_listen_on(s);
}

static void hs_server_accept(hs_server *s)
{
    for (int i = 0; i < HS_SERVER_ACCEPT_BATCH; i++) {
        if (s->nconns >= s->max_connections) {
            hs_server_listen_off(s); /* resumed by hs_server_close */
            return;
        }
        int fd = hs_accept(s->listen_fd);
        if (fd < 0) {
            if (errno == EMFILE || errno == ENFILE || errno == ENOBUFS || errno == ENOMEM)
                hs_server_listen_off(s); /* out of descriptors: resumed by a close or the next tick */
            return;
        }
        hs_conn *c = hs_conns_get(&s->conns, fd, 1);
        if (!c) {
            (void)close(fd);
            continue;
        }
        hs_conn_reset(c, fd);
        if (hs_ev_add(s->loop, fd, HS_EV_READ) < 0) {
            (void)close(fd);
            continue;
        }
        if (HS_UNLIKELY(s->alog != NULL))
            hs_alog_accepted(s->alog, fd);
        c->flags = HS_CF_ACTIVE;
        c->last_active_ms = s->now_ms;
        s->nconns++;
        s->stat_accepted++;
    }
}

/*
 * Log the response queued at c->wbuf[mark..len). parsed: c->req holds the
 * request; otherwise the request in rbuf failed to parse (or is incomplete)
 * and is parsed again into scratch space for whatever fields it had.
 */
static HS_SERVER_COLD void hs_server_log(hs_server *s, hs_conn *c, size_t mark, int parsed)
{
    const hs_request *r = &c->req;
    hs_request scratch;
    if (!parsed) {
        scratch.method = scratch.target = scratch.path = scratch.query = NULL;
        scratch.method_len = scratch.target_len = scratch.path_len = scratch.query_len = 0;
        scratch.num_headers = 0;
        scratch.minor_version = -1;
        /* A head already parsed (error in its body) sits at rbuf[0..head_len) unchanged. */
        size_t len = c->head_len ? c->head_len : c->rbuf.len;
        int status = 0;
        if (len && c->rbuf.data)
            (void)hs_parse_request(c->rbuf.data, len, &s->lim, &scratch, &status);
        if (!scratch.target) /* the request line did not parse: its method is not trustworthy either */
            scratch.method = NULL;
        r = &scratch;
    }
    s->alog->file_body = c->file_left; /* a file body attached by this response (hs_file.c) */
    if (!c->wbuf.data || mark > c->wbuf.len) /* nothing was queued (out of memory) */
        hs_alog_line(s->alog, c->fd, r, "", 0, s->date_second);
    else
        hs_alog_line(s->alog, c->fd, r, c->wbuf.data + mark, c->wbuf.len - mark, s->date_second);
}


/* Answer a protocol error (400/408/413/414/431/501/505) and close after it. */
static void hs_server_error(hs_server *s, hs_conn *c, int status)
{
    if (status < HS_STATUS_MIN || status > HS_STATUS_MAX)
        status = 400;
    const hs_status_line *sl = &hs_app_status[status - HS_STATUS_MIN];
    /* body: the reason phrase ("HTTP/1.1 NNN " is 13 bytes, CRLF 2) */
    const char *body = sl->text + 13;
    size_t body_len = sl->len - 15;
    (void)hs_resp_simple(c, s->date, status, NULL, 0, body, body_len, 0, 1, 0);
    c->flags |= HS_CF_CLOSE_AFTER | HS_CF_ERROR_CLOSE;
    s->stat_errors++;
}

static int hs_server_queue_baked(hs_conn *c, const hs_baked *b, int keep_alive, int minor_version, int head_only)
{
    if (HS_LIKELY(keep_alive && minor_version == 1 && !head_only))
        return hs_conn_queue(c, b->data, b->len);
    if (hs_conn_queue(c, b->data, b->head_len) < 0 || hs_resp_connection(c, keep_alive, minor_version) < 0 ||
        hs_conn_queue(c, "\r\n", 2) < 0)
        return -1;
    if (head_only)
        return 0;
    return hs_conn_queue(c, b->data + b->head_len + 2, b->len - b->head_len - 2);
}

static const char hs_body_not_found[] = "Not Found";
static const char hs_body_not_allowed[] = "Method Not Allowed";

/* Answer the complete request in c->req. 0, or -1 when nothing could be queued. */
static int hs_server_answer(hs_server *s, hs_conn *c)
{
    const hs_request *r = &c->req;
    int keep = r->keep_alive && !s->draining;
    int method = hs_method_index(r->method, r->method_len);
    int rc;
    s->stat_requests++;
    c->flags |= HS_CF_ANSWERED;
    if (method < 0) { /* RFC 9110 15.6.2: a method the server does not implement */
        hs_server_error(s, c, 501);
        return 0;
    }
    if (r->path_len == 1 && r->path[0] == '*') { /* asterisk-form: OPTIONS only (RFC 9112 3.2.4) */
        if (method != HS_M_OPTIONS) {
            hs_server_error(s, c, 400);
            return 0;
        }
        rc = hs_resp_simple(c, s->date, 204, hs_app_allow_all, sizeof(hs_app_allow_all) - 1, NULL, 0, keep,
                            r->minor_version, 0);
        goto done;
    }
    hs_span params[HS_MAX_PARAMS];
    params[0].p = NULL; /* only params[0..nparams) are read; this keeps -Wmaybe-uninitialized quiet */
    params[0].len = 0;
    int nparams = 0;
    int node_index = hs_route_lookup(r->path, r->path_len, params, &nparams);
    if (node_index < 0) {
        rc = hs_resp_simple(c, s->date, 404, NULL, 0, hs_body_not_found, sizeof(hs_body_not_found) - 1, keep,
                            r->minor_version, method == HS_M_HEAD);
        goto done;
    }
    const hs_node *node = &hs_app_nodes[node_index];
    int head_only = method == HS_M_HEAD;
    int route_index = node->route[method];
    if (route_index < 0 && head_only) /* RFC 9110 9.3.2: HEAD is GET without content */
        route_index = node->route[HS_M_GET];
    if (route_index < 0) {
        if (method == HS_M_OPTIONS)
            rc = hs_resp_simple(c, s->date, 204, node->allow, node->allow_len, NULL, 0, keep, r->minor_version, 0);
        else
            rc = hs_resp_simple(c, s->date, 405, node->allow, node->allow_len, hs_body_not_allowed,
                                sizeof(hs_body_not_allowed) - 1, keep, r->minor_version, head_only);
        goto done;
    }
    const hs_route *route = &hs_app_routes[route_index];
    if (HS_LIKELY(route->kind == HS_ROUTE_STATIC)) {
        s->stat_static++;
        rc = hs_server_queue_baked(c, &s->baked[route->baked], keep, r->minor_version, head_only);
    } else if (route->kind == HS_ROUTE_STATIC_GZIP) { /* identity at baked, gzip at baked + 1 */
        s->stat_static++;
        rc = hs_server_queue_baked(c, &s->baked[route->baked + hs_accept_gzip(r)], keep, r->minor_version,
                                   head_only);
    } else {
        const hs_baked *file = NULL;
        if (route->kind == HS_ROUTE_MOUNT) /* a baked file of a static mount: from C when it can */
            file = hs_ff_pick(s->files, r, route->handler, s->now_ms / HS_MS_PER_S, s->date, s->date_second);
        if (file) {
            s->stat_static++;
            rc = hs_server_queue_baked(c, file, keep, r->minor_version, head_only);
            goto done;
        }
        s->stat_python_calls++;
        rc = s->dynamic(s, c, method, route, params, nparams, head_only, keep);
    }
done:
    if (!keep)
        c->flags |= HS_CF_CLOSE_AFTER;
    return rc;
}

/* Answer every complete request in rbuf (until close or the output high water). */
static void hs_server_process(hs_server *s, hs_conn *c, int received)
{
    int answered = 0;
    hs_alog *const alog = s->alog; /* fixed while the loop runs */
    c->flags &= ~HS_CF_MORE;
    while (!(c->flags & (HS_CF_CLOSE_AFTER | HS_CF_LINGER | HS_CF_STREAMING))) {
        if (hs_conn_pending(c) >= HS_SERVER_OUTPUT_HIGH_WATER || c->file_fd >= 0) {
            if (c->rbuf.len)
                c->flags |= HS_CF_MORE;
            break;
        }
        int r = hs_conn_parse(c, &s->lim);
        if (r == HS_REQ_PARTIAL) {
            if (c->continue_pending) { /* RFC 9110 10.1.1 */
                if (hs_conn_queue(c, hs_continue_line, sizeof(hs_continue_line) - 1) < 0)
                    c->flags |= HS_CF_CLOSE_AFTER;
                c->continue_pending = 0;
            }
            break;
        }
        size_t mark = c->wbuf.len;
        if (r == HS_REQ_ERROR) {
            hs_server_error(s, c, c->error_status);
            if (HS_UNLIKELY(alog != NULL))
                hs_server_log(s, c, mark, 0);
            break;
        }
        if (hs_server_answer(s, c) < 0) /* out of memory: give up on this connection */
            c->flags |= HS_CF_CLOSE_AFTER | HS_CF_ERROR_CLOSE;
        if (HS_UNLIKELY(alog != NULL))
            hs_server_log(s, c, mark, 1); /* before consume: c->req points into rbuf */
        hs_conn_consume(c);
        if (HS_UNLIKELY(alog != NULL) && c->rbuf.len) /* the next pipelined request came with this read */
            hs_alog_mark_start(alog, c->fd);
        answered = 1;
    }
    /* recv_timeout: the head must complete within recv_ms of its first byte; a body in progress
     * must keep making progress (each received chunk restarts its clock). */
    if (c->rbuf.len == 0) {
        c->flags &= ~HS_CF_IN_REQUEST;
    } else if (!(c->flags & HS_CF_IN_REQUEST) || answered || (received && c->state != HS_CONN_HEAD)) {
        c->flags |= HS_CF_IN_REQUEST;
        c->head_started_ms = s->now_ms;
    }
}

/* Write what is queued; switch the registration on backpressure transitions; close when due. */
static void hs_server_flush(hs_server *s, hs_conn *c)
{
    if (hs_conn_pending(c)) {
        size_t before = hs_conn_pending(c);
        s->stat_writes++;
        int r = hs_conn_flush(c);
        if (r == HS_FLUSH_DONE && c->file_fd >= 0)
            r = hs_file_flush(c);
        if (r == HS_FLUSH_ERROR) {
            hs_server_close(s, c);
            return;
        }
        if (r == HS_FLUSH_AGAIN) {
            if (hs_conn_pending(c) < before)
                c->last_active_ms = s->now_ms;
            if (!(c->flags & HS_CF_WANT_WRITE)) {
                if (hs_ev_mod(s->loop, c->fd, HS_EV_WRITE) < 0) {
                    hs_server_close(s, c);
                    return;
                }
                c->flags |= HS_CF_WANT_WRITE;
                s->stat_write_waits++;
            }
            return;
        }
        c->last_active_ms = s->now_ms;
    }
    if (c->flags & HS_CF_WANT_WRITE) {
        if (hs_ev_mod(s->loop, c->fd, HS_EV_READ) < 0) {
            hs_server_close(s, c);
            return;
        }
        c->flags &= ~HS_CF_WANT_WRITE;
    }
    if ((c->flags & HS_CF_CLOSE_AFTER) && !(c->flags & (HS_CF_LINGER | HS_CF_STREAMING))) {
        int unread = c->rbuf.len > 0 || (c->flags & HS_CF_ERROR_CLOSE);
        if (!unread || (c->flags & HS_CF_PEER_EOF) || shutdown(c->fd, SHUT_WR) < 0) {
            hs_server_close(s, c);
            return;
        }
        c->flags |= HS_CF_LINGER;
        c->rbuf.len = 0;
        c->head_started_ms = s->now_ms + HS_SERVER_LINGER_MS; /* the linger deadline */
    }
}

/* Flush; while the queue drained completely and requests wait behind the output high
 * water (HS_CF_MORE), answer them and flush again. */
static void hs_server_flush_more(hs_server *s, hs_conn *c)
{
    hs_server_flush(s, c);
    if (HS_UNLIKELY(c->flags & HS_CF_STREAMING) && (c->flags & HS_CF_ACTIVE) && s->on_stream_flushed(s, c))
        hs_server_flush(s, c); /* the stream ended: close, or go on with pipelined requests */
    while ((c->flags & (HS_CF_ACTIVE | HS_CF_WANT_WRITE | HS_CF_MORE)) == (HS_CF_ACTIVE | HS_CF_MORE)) {
        hs_server_process(s, c, 0);
        hs_server_flush(s, c);
    }
}

static void hs_server_on_readable(hs_server *s, hs_conn *c)
{
    if (c->flags & HS_CF_LINGER) {
        char discard[HS_SERVER_DISCARD_CHUNK];
        ssize_t n = recv(c->fd, discard, sizeof discard, MSG_DONTWAIT);
        if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR))
            hs_server_close(s, c);
        return;
    }
    if (HS_UNLIKELY(s->alog != NULL) && c->rbuf.len == 0)
        hs_alog_mark_start(s->alog, c->fd); /* a new request starts with this read */
    ssize_t n = hs_conn_recv(c);
    if (n == HS_RECV_AGAIN)
        return;
    if (n == HS_RECV_CLOSED) {
        c->flags |= HS_CF_PEER_EOF;
        if (!hs_conn_pending(c) || (c->flags & HS_CF_STREAMING)) { /* a streaming client left */
            hs_server_close(s, c);
            return;
        }
        c->flags |= HS_CF_CLOSE_AFTER; /* finish writing what was asked for, then close */
        hs_server_flush(s, c);
        return;
    }
    if (n < 0) {
        hs_server_close(s, c);
        return;
    }
    if (HS_UNLIKELY(c->flags & HS_CF_STREAMING)) { /* input behind a stream waits for its end */
        if (c->rbuf.len > HS_SERVER_STREAM_INPUT_MAX)
            hs_server_close(s, c);
        return;
    }
    c->last_active_ms = s->now_ms;
    hs_server_process(s, c, 1);
    hs_server_flush_more(s, c);
}

static void hs_server_on_writable(hs_server *s, hs_conn *c)
{
    hs_server_flush_more(s, c);
}

/* 1 when the client sent bytes the loop has not consumed yet (buffered or still in the kernel). */
static int hs_server_input_waiting(const hs_conn *c)
{
    int unread = 0;
    if (c->rbuf.len > 0)
        return 1;
    if (ioctl(c->fd, FIONREAD, &unread) < 0)
        return 0; /* cannot tell: treat as idle */
    return unread > 0;
}

/* Once a second (and when a drain starts): timeouts. */
static void hs_server_sweep(hs_server *s)
{
    int64_t now = s->now_ms;
    /* A stalled writer gets the longer of the two client timeouts. */
    int64_t stall_ms = s->keepalive_ms > s->recv_ms ? s->keepalive_ms : s->recv_ms;
    for (size_t fd = 0; fd < s->conns.size; fd++) {
        hs_conn *c = s->conns.by_fd[fd];
        if (!c || !(c->flags & HS_CF_ACTIVE))
            continue;
        if (HS_UNLIKELY(c->flags & HS_CF_STREAMING)) {
            /* Never idle-closed (the drain deadline ends it); a reader taking nothing for stall_ms is gone. */
            if (hs_conn_pending(c) && now - c->last_active_ms >= stall_ms)
                hs_server_close(s, c);
            continue;
        }
        if (c->flags & HS_CF_LINGER) {
            if (now >= c->head_started_ms)
                hs_server_close(s, c);
            continue;
        }
        if (hs_conn_pending(c)) {
            if (now - c->last_active_ms >= stall_ms)
                hs_server_close(s, c);
            continue;
        }
        if (c->flags & HS_CF_IN_REQUEST) {
            if (now - c->head_started_ms >= s->recv_ms) { /* slowloris: 408 and close */
                size_t mark = c->wbuf.len;
                hs_server_error(s, c, 408);
                if (HS_UNLIKELY(s->alog != NULL))
                    hs_server_log(s, c, mark, 0);
                hs_server_flush(s, c);
            }
            continue;
        }
        if (s->draining) {
            /* Idle connections close, but a request the client already sent (unread
             * in the kernel) is in-flight work: it is read and answered (with
             * Connection: close) by the loop; recv_ms and the drain deadline bound it.
             * A connection not answered yet gets a grace period for its first request. */
            int fresh = !(c->flags & HS_CF_ANSWERED) && now - c->last_active_ms < HS_SERVER_DRAIN_FRESH_GRACE_MS;
            if (!fresh && !hs_server_input_waiting(c))
                hs_server_close(s, c);
        } else if (now - c->last_active_ms >= s->keepalive_ms) {
            hs_server_close(s, c);
        }
    }
    if (s->nconns < s->max_connections)
        hs_server_listen_on(s); /* after an EMFILE pause */
}

static void hs_server_start_drain(hs_server *s)
{
    /* Clients the kernel already queued connected before the stop: take them
     * (their requests are answered like in-flight ones) instead of letting the
     * close below reset them. Bounded; accept stops at EAGAIN or max_connections. */
    for (int round = 0; round < HS_SERVER_DRAIN_ACCEPT_ROUNDS && s->listening; round++) {
        uint64_t before = s->stat_accepted;
        hs_server_accept(s);
        if (s->stat_accepted - before < HS_SERVER_ACCEPT_BATCH)
            break;
    }
    s->draining = 1;
    s->drain_deadline_ms = s->now_ms + s->drain_ms;
    hs_server_listen_off(s);
    if (s->listen_fd >= 0) {
        (void)close(s->listen_fd); /* with SO_REUSEPORT, the kernel now sends new clients to other workers */
        s->listen_fd = -1;
    }
    hs_server_sweep(s); /* closes idle keep-alive connections now */
}

HS_API int hs_server_init(hs_server *s, int listen_fd)
{
    memset(s, 0, sizeof *s);
    s->listen_fd = listen_fd;
    hs_limits_default(&s->lim);
    s->max_connections = 10000;
    s->keepalive_ms = 30 * HS_MS_PER_S;
    s->recv_ms = 30 * HS_MS_PER_S;
    s->drain_ms = 5 * HS_MS_PER_S;
    s->is_epoll = strcmp(hs_ev_backend(), "epoll") == 0;
    s->loop = hs_ev_create();
    if (s->loop < 0)
        return -1;
    s->date_second = (time_t)-1;
    s->now_ms = hs_now_ms();
    s->wake_fd = -1;
    (void)hs_server_tick_date(s);
    return 0;
}

HS_API int hs_server_run(hs_server *s)
{
    hs_event events[HS_SERVER_EVENT_BATCH];
    s->now_ms = hs_now_ms();
    s->date_second = (time_t)-1; /* patch the baked responses now that s->baked is set */
    (void)hs_server_tick_date(s);
    hs_server_listen_on(s);
    if (!s->listening && !s->stop_requested)
        return -1;
    for (;;) {
        if (s->stop_requested && !s->draining)
            hs_server_start_drain(s);
        if (s->draining && (s->nconns == 0 || s->now_ms >= s->drain_deadline_ms)) {
            if (s->alog)
                (void)hs_alog_flush(s->alog);
            break;
        }
        int n;
        HS_BLOCKING_BEGIN
        n = hs_ev_wait(s->loop, events, HS_SERVER_EVENT_BATCH, HS_SERVER_TICK_MS);
        HS_BLOCKING_END
        if (n < 0)
            return -1;
        s->now_ms = hs_now_ms();
        s->stat_wakeups++;
        if (HS_UNLIKELY(s->alog != NULL))
            s->alog->wake_us = hs_alog_now_us();
        if (hs_server_tick_date(s)) {
            hs_server_sweep(s);
            if (s->alog) /* at least once a second (the wait never exceeds HS_SERVER_TICK_MS) */
                (void)hs_alog_flush(s->alog);
        }
        for (int i = 0; i < n; i++) {
            int fd = events[i].fd;
            if (fd == s->listen_fd) {
                if (s->listening)
                    hs_server_accept(s);
                continue;
            }
            if (fd == s->wake_fd) {
                s->on_wake(s);
                continue;
            }
            hs_conn *c = hs_conns_get(&s->conns, fd, 0);
            if (!c || !(c->flags & HS_CF_ACTIVE))
                continue;
            if (c->flags & HS_CF_WANT_WRITE)
                hs_server_on_writable(s, c);
            else if (events[i].flags & (HS_EV_READ | HS_EV_ERROR))
                hs_server_on_readable(s, c);
        }
        if (s->after_wakeup && s->after_wakeup(s))
            s->stop_requested = 1;
    }
    return 0;
}

HS_API void hs_server_destroy(hs_server *s)
{
    s->draining = 1; /* closing connections must not re-register the listening socket */
    for (size_t fd = 0; fd < s->conns.size; fd++) {
        hs_conn *c = s->conns.by_fd[fd];
        if (!c)
            continue;
        if (c->flags & HS_CF_ACTIVE)
            hs_server_close(s, c);
        hs_conns_drop(&s->conns, (int)fd);
    }
    free(s->conns.by_fd);
    s->conns.by_fd = NULL;
    s->conns.size = 0;
    if (s->listen_fd >= 0) {
        hs_server_listen_off(s);
        (void)close(s->listen_fd);
        s->listen_fd = -1;
    }
    if (s->loop >= 0) {
        (void)hs_ev_close(s->loop);
        s->loop = -1;
    }
}
