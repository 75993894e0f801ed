/*
 * hs_stream.c - streaming responses in the compiled app module: the C half of
 * hypersonic.stream (which frames the bytes: head, chunks, terminator).
 *
 * Included by hs_servermod.c after hs_server.c and the module state `g`.
 *
 * Theory of operation. A route configured as streaming does not return a
 * response: hs_stream_start() marks its connection HS_CF_STREAMING, gives the
 * stream a serial number and calls the Python starter, which runs the handler
 * in its own thread. That thread calls stream_send()/stream_abort() below
 * while holding the GIL; the loop only touches connections while holding it
 * too, so the write queue needs no other lock. The writer thread never does
 * socket I/O or changes a registration: it appends to the write queue, puts
 * the connection on the wake queue and writes one byte to the wake pipe; the
 * loop (hs_stream_on_wake) flushes, waits for writability when the socket is
 * full, and decides what comes next:
 *  - output drained below HS_STREAM_LOW_WATER after the writer went over
 *    HS_STREAM_HIGH_WATER: notify(HS_STREAM_EV_DRAINED) (the writer blocks
 *    meanwhile: backpressure);
 *  - the stream ended and everything is written: the flag is cleared and the
 *    loop treats the connection as after any response (keep-alive: next
 *    pipelined request; or close);
 *  - aborted (what the socket takes at once is still sent), the client left (EOF, error), a stalled writer, or the server
 *    stopped: the connection closes and notify(HS_STREAM_EV_CLOSED).
 * A (fd, serial) pair names a stream; a writer holding the pair of a stream
 * whose connection closed (the fd maybe reused since) gets -1, never the new
 * connection.
 */
#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

/* The writer waits once this much output is queued (= hypersonic.stream.STREAM_HIGH_WATER). */
#define HS_STREAM_HIGH_WATER (256 * 1024)
/* ... until the loop has drained the queue to this (= hypersonic.stream.STREAM_LOW_WATER). */
#define HS_STREAM_LOW_WATER (64 * 1024)
/* Events passed to a stream's notify callable. */
#define HS_STREAM_EV_DRAINED 1
#define HS_STREAM_EV_CLOSED 2
/* Stream states. */
#define HS_STREAM_OPEN 1
#define HS_STREAM_ENDED 2   /* everything queued; the connection moves on once it is written */
#define HS_STREAM_ABORTED 3 /* the connection closes at once */
/* stream_send(end=...) values. */
#define HS_STREAM_SEND_MORE 0
#define HS_STREAM_SEND_END 1
#define HS_STREAM_SEND_END_CLOSE 2
/* First size of the fd-indexed stream table and of the wake queue. */
#define HS_STREAM_MIN_TABLE 64
/* Scratch space for emptying the wake pipe. */
#define HS_STREAM_WAKE_DRAIN 256

typedef struct hs_stream_rec {
    uint64_t serial;  /* 0: no stream on this fd */
    PyObject *notify; /* notify(event): owned, NULL until the starter returned */
    int state;
    int want_drain;   /* the writer waits for HS_STREAM_EV_DRAINED */
    int scheduled;    /* on the wake queue */
} hs_stream_rec;

static struct {
    hs_stream_rec *by_fd;
    size_t size;
    int *queue; /* fds whose connection has work for the loop */
    size_t qlen, qcap;
    int wake_r, wake_w;
    uint64_t last_serial;
} hs_streams = {NULL, 0, NULL, 0, 0, -1, -1, 0};

/* The record for fd, growing the table when create. NULL when absent (or ENOMEM). */
static hs_stream_rec *hs_stream_rec_of(int fd, int create)
{
    if (fd < 0)
        return NULL;
    if ((size_t)fd >= hs_streams.size) {
        if (!create)
            return NULL;
        size_t size = hs_streams.size ? hs_streams.size : HS_STREAM_MIN_TABLE;
        while (size <= (size_t)fd)
            size *= 2;
        hs_stream_rec *grown = (hs_stream_rec *)realloc(hs_streams.by_fd, size * sizeof *grown);
        if (!grown)
            return NULL;
        memset(grown + hs_streams.size, 0, (size - hs_streams.size) * sizeof *grown);
        hs_streams.by_fd = grown;
        hs_streams.size = size;
    }
    return &hs_streams.by_fd[fd];
}

/* The live stream (fd, serial) and its connection, or NULL when it is gone. */
static hs_stream_rec *hs_stream_find(int fd, uint64_t serial, hs_conn **conn)
{
    if (!g.running || serial == 0)
        return NULL;
    hs_stream_rec *rec = hs_stream_rec_of(fd, 0);
    if (!rec || rec->serial != serial)
        return NULL;
    hs_conn *c = hs_conns_get(&g.server.conns, fd, 0);
    if (!c || (c->flags & (HS_CF_ACTIVE | HS_CF_STREAMING)) != (HS_CF_ACTIVE | HS_CF_STREAMING))
        return NULL;
    *conn = c;
    return rec;
}

/* Forget the stream on fd; returns its notify callable (a reference the caller owns, or NULL). */
static PyObject *hs_stream_forget(hs_stream_rec *rec)
{
    PyObject *notify = rec->notify;
    rec->serial = 0;
    rec->notify = NULL;
    rec->state = 0;
    rec->want_drain = 0;
    rec->scheduled = 0;
    return notify;
}

/* Call notify(event) on the loop thread; a failing callable is reported, never raised. */
static void hs_stream_notify(PyObject *notify, int event)
{
    if (!notify)
        return;
    PyObject *arg = PyLong_FromLong(event);
    PyObject *res = arg ? PyObject_CallOneArg(notify, arg) : NULL;
    if (!res)
        PyErr_WriteUnraisable(notify);
    Py_XDECREF(res);
    Py_XDECREF(arg);
}

/* Put fd on the wake queue and wake the loop. 0, or -1 on ENOMEM. */
static int hs_stream_schedule(hs_stream_rec *rec, int fd)
{
    if (rec->scheduled)
        return 0;
    if (hs_streams.qlen == hs_streams.qcap) {
        size_t cap = hs_streams.qcap ? hs_streams.qcap * 2 : HS_STREAM_MIN_TABLE;
        int *grown = (int *)realloc(hs_streams.queue, cap * sizeof *grown);
        if (!grown)
            return -1;
        hs_streams.queue = grown;
        hs_streams.qcap = cap;
    }
    hs_streams.queue[hs_streams.qlen++] = fd;
    rec->scheduled = 1;
    static const char byte = 1;
    ssize_t n;
    do {
        n = write(hs_streams.wake_w, &byte, 1);
    } while (n < 0 && errno == EINTR);
    /* EAGAIN: the pipe is full, so the loop is woken already; nothing else can fail on our pipe */
    return 0;
}

/* ---- loop side (hs_server hooks) --------------------------------------------- */

/* hs_server.on_wake: empty the pipe, then flush every queued connection. */
static void hs_stream_on_wake(hs_server *s)
{
    char scratch[HS_STREAM_WAKE_DRAIN];
    ssize_t n;
    do {
        n = read(hs_streams.wake_r, scratch, sizeof scratch);
    } while (n > 0 || (n < 0 && errno == EINTR));
    /* Python run from here may queue more: the loop re-reads qlen and takes those too. */
    for (size_t i = 0; i < hs_streams.qlen; i++) {
        int fd = hs_streams.queue[i];
        hs_stream_rec *rec = hs_stream_rec_of(fd, 0);
        if (!rec || !rec->scheduled)
            continue; /* closed since */
        rec->scheduled = 0;
        hs_conn *c = hs_conns_get(&s->conns, fd, 0);
        if (!c || (c->flags & (HS_CF_ACTIVE | HS_CF_STREAMING)) != (HS_CF_ACTIVE | HS_CF_STREAMING))
            continue;
        if (rec->state == HS_STREAM_ABORTED) {
            (void)hs_conn_flush(c); /* what the socket takes now of what was written; then cut */
            hs_server_close(s, c);
        }
        else
            hs_server_flush_more(s, c);
    }
    hs_streams.qlen = 0;
}

/* hs_server.on_stream_flushed: wake a waiting writer; finish an ended stream. 1 when it finished. */
static int hs_stream_on_flushed(hs_server *s, hs_conn *c)
{
    hs_stream_rec *rec = hs_stream_rec_of(c->fd, 0);
    if (!rec || rec->serial == 0)
        return 0;
    if (rec->want_drain && hs_conn_pending(c) <= HS_STREAM_LOW_WATER) {
        rec->want_drain = 0;
        hs_stream_notify(rec->notify, HS_STREAM_EV_DRAINED);
    }
    if (rec->state != HS_STREAM_ENDED || hs_conn_pending(c) || !(c->flags & HS_CF_ACTIVE))
        return 0;
    PyObject *notify = hs_stream_forget(rec);
    Py_XDECREF(notify);
    c->flags &= ~HS_CF_STREAMING;
    c->last_active_ms = s->now_ms;
    if (c->rbuf.len)
        c->flags |= HS_CF_MORE; /* pipelined requests waited for the stream */
    return 1;
}

/* hs_server.on_stream_close: the connection of a stream is closing; tell its writer. */
static int hs_stream_on_close(hs_server *s, hs_conn *c)
{
    (void)s;
    hs_stream_rec *rec = hs_stream_rec_of(c->fd, 0);
    if (!rec || rec->serial == 0)
        return 0;
    PyObject *notify = hs_stream_forget(rec); /* first: a writer run by notify() finds it gone */
    hs_stream_notify(notify, HS_STREAM_EV_CLOSED);
    Py_XDECREF(notify);
    return 0;
}

/* ---- serve() ------------------------------------------------------------------ */

/* Create the wake pipe and install the hooks (after hs_server_init). 0, or -1 with an OSError set. */
static int hs_stream_open(hs_server *s)
{
    int fds[2];
    if (pipe(fds) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        int fl = fcntl(fds[i], F_GETFL);
        if (fl < 0 || fcntl(fds[i], F_SETFL, fl | O_NONBLOCK) < 0 || fcntl(fds[i], F_SETFD, FD_CLOEXEC) < 0) {
            PyErr_SetFromErrno(PyExc_OSError);
            (void)close(fds[0]);
            (void)close(fds[1]);
            return -1;
        }
    }
    if (hs_ev_add(s->loop, fds[0], HS_EV_READ) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        (void)close(fds[0]);
        (void)close(fds[1]);
        return -1;
    }
    hs_streams.wake_r = fds[0];
    hs_streams.wake_w = fds[1];
    hs_streams.qlen = 0;
    s->wake_fd = fds[0];
    s->on_wake = hs_stream_on_wake;
    s->on_stream_flushed = hs_stream_on_flushed;
    s->on_stream_close = hs_stream_on_close;
    return 0;
}

/* After hs_server_destroy (every stream was told): close the pipe, free the tables. */
static void hs_stream_close_all(void)
{
    for (size_t fd = 0; fd < hs_streams.size; fd++) {
        PyObject *notify = hs_stream_forget(&hs_streams.by_fd[fd]);
        hs_stream_notify(notify, HS_STREAM_EV_CLOSED);
        Py_XDECREF(notify);
    }
    free(hs_streams.by_fd);
    hs_streams.by_fd = NULL;
    hs_streams.size = 0;
    free(hs_streams.queue);
    hs_streams.queue = NULL;
    hs_streams.qlen = hs_streams.qcap = 0;
    if (hs_streams.wake_r >= 0)
        (void)close(hs_streams.wake_r); /* EINTR/EIO: released either way */
    if (hs_streams.wake_w >= 0)
        (void)close(hs_streams.wake_w);
    hs_streams.wake_r = hs_streams.wake_w = -1;
}

/*
 * The dynamic callback for a streaming route: start the stream for the request
 * in c->req. 0 (the writer thread queues the response), or what
 * hs_handler_failed returns when it could not start (answered 500).
 */
static int hs_stream_start(hs_server *s, hs_conn *c, int method, const hs_route *route, const hs_span *params,
                           int np, int head_only, int keep)
{
    PyObject *req = hs_build_request(c, method, route, params, np);
    if (!req)
        return hs_handler_failed(s, c, method, head_only, keep);
    hs_stream_rec *rec = hs_stream_rec_of(c->fd, 1);
    if (!rec) {
        Py_DECREF(req);
        PyErr_NoMemory();
        return hs_handler_failed(s, c, method, head_only, keep);
    }
    Py_XDECREF(hs_stream_forget(rec)); /* a stale record cannot exist (close forgets it); be safe */
    rec->serial = ++hs_streams.last_serial;
    rec->state = HS_STREAM_OPEN;
    c->flags |= HS_CF_STREAMING;
    PyObject *notify = PyObject_CallFunction(g.start_stream, "nOiKiii", (Py_ssize_t)route->handler, req, c->fd,
                                             (unsigned long long)rec->serial, c->req.minor_version, keep,
                                             head_only);
    Py_DECREF(req);
    if (!notify) {
        Py_XDECREF(hs_stream_forget(rec));
        c->flags &= ~HS_CF_STREAMING;
        return hs_handler_failed(s, c, method, head_only, keep);
    }
    if (rec->serial == 0) { /* cannot happen: only the loop (this thread) closes connections */
        Py_DECREF(notify);
        return 0;
    }
    rec->notify = notify;
    if (rec->state != HS_STREAM_OPEN && !rec->scheduled && hs_stream_schedule(rec, c->fd) < 0)
        return -1;
    return 0;
}

/* ---- writer side (module functions, called from handler threads) ------------ */

static PyObject *hs_py_stream_send(PyObject *self, PyObject *args)
{
    (void)self;
    int fd, end;
    unsigned long long serial;
    Py_buffer data;
    if (!PyArg_ParseTuple(args, "iKy*i:stream_send", &fd, &serial, &data, &end))
        return NULL;
    if (end < HS_STREAM_SEND_MORE || end > HS_STREAM_SEND_END_CLOSE) {
        PyBuffer_Release(&data);
        PyErr_Format(PyExc_ValueError, "stream_send: end must be 0, 1 or 2, got %d", end);
        return NULL;
    }
    hs_conn *c = NULL;
    hs_stream_rec *rec = hs_stream_find(fd, serial, &c);
    if (!rec || rec->state != HS_STREAM_OPEN) {
        PyBuffer_Release(&data);
        return PyLong_FromLong(-1);
    }
    if (hs_conn_pending(c) == 0)
        c->last_active_ms = hs_now_ms(); /* the stall clock starts with this output */
    if (c->wpos >= HS_STREAM_LOW_WATER) { /* the queue is never empty while a fast writer streams: compact */
        hs_buf_consume(&c->wbuf, c->wpos);
        c->wpos = 0;
    }
    int rc = data.len ? hs_conn_queue(c, data.buf, (size_t)data.len) : 0;
    PyBuffer_Release(&data);
    if (rc < 0)
        return PyErr_NoMemory();
    if (end != HS_STREAM_SEND_MORE) {
        rec->state = HS_STREAM_ENDED;
        if (end == HS_STREAM_SEND_END_CLOSE)
            c->flags |= HS_CF_CLOSE_AFTER;
    }
    size_t pending = hs_conn_pending(c);
    if (pending >= HS_STREAM_HIGH_WATER)
        rec->want_drain = 1;
    if ((pending || end != HS_STREAM_SEND_MORE) && hs_stream_schedule(rec, fd) < 0)
        return PyErr_NoMemory();
    return PyLong_FromSize_t(pending);
}

static PyObject *hs_py_stream_abort(PyObject *self, PyObject *args)
{
    (void)self;
    int fd;
    unsigned long long serial;
    if (!PyArg_ParseTuple(args, "iK:stream_abort", &fd, &serial))
        return NULL;
    hs_conn *c = NULL;
    hs_stream_rec *rec = hs_stream_find(fd, serial, &c);
    if (rec && rec->state != HS_STREAM_ABORTED) {
        rec->state = HS_STREAM_ABORTED;
        rec->scheduled = 0; /* re-queue: the abort must be seen even if a flush was queued */
        if (hs_stream_schedule(rec, fd) < 0)
            return PyErr_NoMemory();
    }
    Py_RETURN_NONE;
}
