/*
 * hs_socketmod.c - the CPython extension behind hypersonic.socket: the seed's
 * Hypersonic::Socket calls (platform, event_backend, create_listen_socket,
 * create_event_loop, event_add/event_del, ev_poll, http_accept, http_recv,
 * http_send, http_send_404, close_fd) plus the additions a correct custom
 * loop needs (http_recv_status, http_send_error, event_mod).
 *
 * One translation unit: it includes the parser, the event backend, listen /
 * accept and the connection buffers, so the server loop and this module run
 * the very same code. All calls use METH_FASTCALL; errors are return values
 * (-1 / None) as in the seed, and only wrong argument types (TypeError) or
 * impossible values (ValueError) raise.
 *
 * Per-fd state lives in hs_socket_conns (an fd-indexed table of hs_conn): the
 * read buffer that makes split and pipelined requests work, the state of a
 * rejected or closed connection (http_recv_status), and what the last request
 * asked for (keep-alive, HEAD) so http_send answers it correctly. close_fd()
 * and http_accept() drop stale state, so a reused fd number starts clean.
 *
 * Thread model: every call runs with the GIL held except the blocking waits
 * (ev_poll with a timeout, http_send waiting for a full socket to drain,
 * create_listen_socket resolving a host name), which touch no module state.
 * With the poll backend a waiting loop reads its own pollfd array, so a loop
 * must not be changed from another thread while one thread waits on it.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <time.h>
#include <unistd.h>

#include "hs_pymodule.h"

#include "hs_parser.c"
#include "hs_event.c"
#include "hs_net.c"
#include "hs_conn.c"

/* ---- named constants ----------------------------------------------------- */

/* Most events one ev_poll call returns (more stay pending: level-triggered). */
#define HS_SOCK_MAX_EVENTS 1024
/* How long http_send waits for a full socket to accept more bytes before giving up (-1). */
#define HS_SEND_STALL_TIMEOUT_MS 30000
/* Longest content_type accepted by http_send (a header value, not a document). */
#define HS_MAX_CONTENT_TYPE 1024
/* Room for a response head: status line, Date, Content-Type, Content-Length, Connection. */
#define HS_RESPONSE_HEAD_ROOM (HS_MAX_CONTENT_TYPE + 256)
/* Length of an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT", RFC 9110 5.6.7). */
#define HS_IMF_DATE_LEN 29
/* Lowest and highest status http_send_error accepts. */
#define HS_ERROR_STATUS_MIN 400
#define HS_ERROR_STATUS_MAX 599

/* http_recv_status values besides an HTTP status code. */
#define HS_SOCK_RECV_PENDING 0
#define HS_SOCK_RECV_CLOSED (-1)

/* Bits of hs_conn.flags owned by this module. */
#define HS_SOCK_KEEP_ALIVE 1u /* the last request returned keeps the connection */
#define HS_SOCK_HEAD 2u       /* the last request returned was HEAD: no body in the answer */
#define HS_SOCK_CLOSED 4u     /* peer closed or an I/O error: the connection is dead */

/* ---- module state (one instance per process; the JIT loads it once) ------ */

static hs_conns hs_socket_conns;
static hs_limits hs_socket_limits;

/*
 * One read per readable event, even for a loop that calls http_recv until it
 * returns None. Every ev_poll call starts a new "round"; hs_fd_rounds[fd]
 * records the round in which ev_poll last reported fd readable and the round
 * in which http_recv last drained fd (a read shorter than the space offered,
 * or EAGAIN). When both are the current round, the socket was emptied after
 * this round's report, so the drain loop's final http_recv returns None
 * without a recv() that could only say EAGAIN. Bytes that arrived meanwhile
 * are not lost: registrations are level-triggered, so the next ev_poll
 * reports fd again. At most one read is skipped per round (the mark is
 * cleared), so a loop that waits by other means than ev_poll sees at worst
 * one early None.
 */
typedef struct hs_fd_round {
    uint64_t reported;
    uint64_t drained;
} hs_fd_round;

/* First size of hs_fd_rounds (descriptors 0..1023). */
#define HS_FD_ROUNDS_MIN 1024

static uint64_t hs_round = 1;
static hs_fd_round *hs_fd_rounds;
static size_t hs_fd_rounds_size;

/* Record that ev_poll reported fd readable in the current round (best effort). */
static void hs_mark_reported(int fd)
{
    if (fd < 0)
        return;
    if ((size_t)fd >= hs_fd_rounds_size) {
        size_t size = hs_fd_rounds_size ? hs_fd_rounds_size : HS_FD_ROUNDS_MIN;
        while (size <= (size_t)fd)
            size *= 2;
        hs_fd_round *grown = (hs_fd_round *)realloc(hs_fd_rounds, size * sizeof *grown);
        if (!grown)
            return; /* no mark: reads are simply never skipped for this fd */
        memset(grown + hs_fd_rounds_size, 0, (size - hs_fd_rounds_size) * sizeof *grown);
        hs_fd_rounds = grown;
        hs_fd_rounds_size = size;
    }
    hs_fd_rounds[fd].reported = hs_round;
}

/* Forget fd's rounds (closed, or a new connection on a reused number). */
static void hs_forget_rounds(int fd)
{
    if (fd >= 0 && (size_t)fd < hs_fd_rounds_size)
        hs_fd_rounds[fd].reported = hs_fd_rounds[fd].drained = 0;
}
static PyObject *hs_platform_str;  /* NULL on an unsupported OS */
static PyObject *hs_backend_str;
static PyObject *hs_default_content_type;

#if defined(__linux__)
#define HS_PLATFORM "linux"
#elif defined(__APPLE__)
#define HS_PLATFORM "darwin"
#elif defined(__FreeBSD__)
#define HS_PLATFORM "freebsd"
#elif defined(__OpenBSD__)
#define HS_PLATFORM "openbsd"
#elif defined(__NetBSD__)
#define HS_PLATFORM "netbsd"
#endif

/* ---- argument handling ---------------------------------------------------- */

/*
 * Bind positional and keyword arguments to the slots named in `names`
 * (nreq required, nmax in all). out[i] is a borrowed reference or NULL when
 * an optional argument was not given. -1 with TypeError on a bad call.
 */
static int hs_bind_args(const char *fname, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames,
                        const char *const *names, int nreq, int nmax, PyObject **out)
{
    if (HS_UNLIKELY(nargs > nmax)) {
        PyErr_Format(PyExc_TypeError, "%s() takes at most %d argument%s (%zd given)", fname, nmax,
                     nmax == 1 ? "" : "s", nargs);
        return -1;
    }
    for (int i = 0; i < nmax; i++)
        out[i] = i < nargs ? args[i] : NULL;
    if (kwnames) {
        Py_ssize_t nkw = PyTuple_GET_SIZE(kwnames);
        for (Py_ssize_t k = 0; k < nkw; k++) {
            PyObject *key = PyTuple_GET_ITEM(kwnames, k);
            int slot = -1;
            for (int i = 0; i < nmax; i++) {
                if (PyUnicode_CompareWithASCIIString(key, names[i]) == 0) {
                    slot = i;
                    break;
                }
            }
            if (slot < 0) {
                PyErr_Format(PyExc_TypeError, "%s() got an unexpected keyword argument '%U'", fname, key);
                return -1;
            }
            if (out[slot]) {
                PyErr_Format(PyExc_TypeError, "%s() got multiple values for argument '%s'", fname,
                             names[slot]);
                return -1;
            }
            out[slot] = args[nargs + k];
        }
    }
    for (int i = 0; i < nreq; i++) {
        if (!out[i]) {
            PyErr_Format(PyExc_TypeError, "%s() missing required argument '%s' (pos %d)", fname, names[i],
                         i + 1);
            return -1;
        }
    }
    return 0;
}

/* Exactly n positional arguments, no keywords (the hot calls). */
static inline int hs_exact_args(const char *fname, Py_ssize_t nargs, Py_ssize_t n)
{
    if (HS_LIKELY(nargs == n))
        return 0;
    PyErr_Format(PyExc_TypeError, "%s() takes exactly %zd argument%s (%zd given)", fname, n, n == 1 ? "" : "s",
                 nargs);
    return -1;
}

/*
 * An int argument as a C long; values beyond a long are clamped to
 * LONG_MIN/LONG_MAX (callers then treat them as out of range). -1 with
 * TypeError when o is not an int (bool is an int, as everywhere in Python).
 */
static inline int hs_arg_long(const char *fname, const char *argname, PyObject *o, long *out)
{
    if (HS_UNLIKELY(!PyLong_Check(o))) {
        PyErr_Format(PyExc_TypeError, "%s() argument '%s' must be int, not %.100s", fname, argname,
                     Py_TYPE(o)->tp_name);
        return -1;
    }
    int overflow = 0;
    long v = PyLong_AsLongAndOverflow(o, &overflow);
    if (overflow)
        v = overflow > 0 ? LONG_MAX : LONG_MIN;
    else if (HS_UNLIKELY(v == -1 && PyErr_Occurred()))
        return -1;
    *out = v;
    return 0;
}

/* A file descriptor argument: an int; anything outside 0..INT_MAX becomes -1 (invalid). */
static inline int hs_arg_fd(const char *fname, const char *argname, PyObject *o, int *fd)
{
    long v;
    if (hs_arg_long(fname, argname, o, &v) < 0)
        return -1;
    *fd = (v < 0 || v > INT_MAX) ? -1 : (int)v;
    return 0;
}

/* Event flags for event_add/event_mod: a combination of EV_READ and EV_WRITE. */
static int hs_arg_flags(const char *fname, PyObject *o, int *flags)
{
    long v;
    if (hs_arg_long(fname, "flags", o, &v) < 0)
        return -1;
    if (v < 0 || (v & ~(long)(HS_EV_READ | HS_EV_WRITE))) {
        PyErr_Format(PyExc_ValueError, "%s() argument 'flags' must combine EV_READ and EV_WRITE, got %ld", fname,
                     v);
        return -1;
    }
    *flags = (int)v;
    return 0;
}

/* ---- platform and backend ------------------------------------------------- */

static PyObject *hs_py_platform(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    if (HS_UNLIKELY(!hs_platform_str)) {
        PyErr_SetString(PyExc_OSError, "hypersonic.socket: unsupported platform (supported: linux, darwin, "
                                       "freebsd, openbsd, netbsd)");
        return NULL;
    }
    Py_INCREF(hs_platform_str);
    return hs_platform_str;
}

static PyObject *hs_py_event_backend(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    Py_INCREF(hs_backend_str);
    return hs_backend_str;
}

/* ---- sockets and loops ------------------------------------------------------ */

static PyObject *hs_py_create_listen_socket(PyObject *self, PyObject *const *args, Py_ssize_t nargs,
                                            PyObject *kwnames)
{
    static const char *const names[] = {"port", "host"};
    PyObject *a[2];
    long port;
    (void)self;
    if (hs_bind_args("create_listen_socket", args, nargs, kwnames, names, 1, 2, a) < 0)
        return NULL;
    if (hs_arg_long("create_listen_socket", "port", a[0], &port) < 0)
        return NULL;
    const char *host = NULL;
    if (a[1] && a[1] != Py_None) {
        if (!PyUnicode_Check(a[1])) {
            PyErr_Format(PyExc_TypeError, "create_listen_socket() argument 'host' must be str or None, not %.100s",
                         Py_TYPE(a[1])->tp_name);
            return NULL;
        }
        Py_ssize_t host_len;
        host = PyUnicode_AsUTF8AndSize(a[1], &host_len);
        if (!host)
            return NULL;
        if ((size_t)host_len != strlen(host)) {
            PyErr_SetString(PyExc_ValueError, "create_listen_socket() argument 'host' contains a NUL character");
            return NULL;
        }
    }
    if (port < 0 || port > HS_PORT_MAX)
        return PyLong_FromLong(-1);
    int fd;
    if (host && *host) {
        Py_BEGIN_ALLOW_THREADS /* getaddrinfo may resolve a name */
        fd = hs_listen_tcp(host, (int)port, HS_LISTEN_BACKLOG);
        Py_END_ALLOW_THREADS
    } else {
        fd = hs_listen_tcp(NULL, (int)port, HS_LISTEN_BACKLOG);
    }
    if (fd >= 0)
        hs_ev_forget_fd(fd);
    return PyLong_FromLong(fd);
}

static PyObject *hs_py_create_event_loop(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int listen_fd;
    (void)self;
    if (hs_exact_args("create_event_loop", nargs, 1) < 0 ||
        hs_arg_fd("create_event_loop", "listen_fd", args[0], &listen_fd) < 0)
        return NULL;
    if (listen_fd < 0)
        return PyLong_FromLong(-1);
    int loop = hs_ev_create();
    if (loop < 0)
        return PyLong_FromLong(-1);
    if (hs_ev_add(loop, listen_fd, HS_EV_READ) < 0) {
        (void)hs_ev_close(loop);
        return PyLong_FromLong(-1);
    }
    return PyLong_FromLong(loop);
}

/* event_add(loop_fd, fd, flags=EV_READ) and event_mod(loop_fd, fd, flags) */
static PyObject *hs_event_change(const char *fname, int modify, PyObject *const *args, Py_ssize_t nargs,
                                 PyObject *kwnames)
{
    static const char *const names[] = {"loop_fd", "fd", "flags"};
    PyObject *a[3];
    int loop, fd, flags = HS_EV_READ;
    if (hs_bind_args(fname, args, nargs, kwnames, names, modify ? 3 : 2, 3, a) < 0)
        return NULL;
    if (hs_arg_fd(fname, "loop_fd", a[0], &loop) < 0 || hs_arg_fd(fname, "fd", a[1], &fd) < 0)
        return NULL;
    if (a[2] && hs_arg_flags(fname, a[2], &flags) < 0)
        return NULL;
    if (loop < 0 || fd < 0)
        return PyLong_FromLong(-1);
    int rc = modify ? hs_ev_mod(loop, fd, flags) : hs_ev_add(loop, fd, flags);
    return PyLong_FromLong(rc < 0 ? -1 : 0);
}

static PyObject *hs_py_event_add(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    (void)self;
    return hs_event_change("event_add", 0, args, nargs, kwnames);
}

static PyObject *hs_py_event_mod(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    (void)self;
    return hs_event_change("event_mod", 1, args, nargs, kwnames);
}

static PyObject *hs_py_event_del(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int loop, fd;
    (void)self;
    if (hs_exact_args("event_del", nargs, 2) < 0 || hs_arg_fd("event_del", "loop_fd", args[0], &loop) < 0 ||
        hs_arg_fd("event_del", "fd", args[1], &fd) < 0)
        return NULL;
    if (loop < 0 || fd < 0)
        return PyLong_FromLong(-1);
    return PyLong_FromLong(hs_ev_del(loop, fd) < 0 ? -1 : 0);
}

static PyObject *hs_py_ev_poll(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int loop;
    long timeout;
    (void)self;
    if (hs_exact_args("ev_poll", nargs, 2) < 0 || hs_arg_fd("ev_poll", "loop_fd", args[0], &loop) < 0 ||
        hs_arg_long("ev_poll", "timeout_ms", args[1], &timeout) < 0)
        return NULL;
    hs_round++; /* every call is a new round, even a failing one */
    if (loop < 0)
        return PyList_New(0);
    int timeout_ms = timeout < 0 ? -1 : (timeout > INT_MAX ? INT_MAX : (int)timeout);
    /* On the stack, not static: another thread may run its own loop while this one waits. */
    hs_event events[HS_SOCK_MAX_EVENTS];
    /* Ready events are collected without releasing the GIL; only a real wait releases it. */
    int n = hs_ev_wait(loop, events, HS_SOCK_MAX_EVENTS, 0);
    if (n == 0 && timeout_ms != 0) {
        Py_BEGIN_ALLOW_THREADS
        n = hs_ev_wait(loop, events, HS_SOCK_MAX_EVENTS, timeout_ms);
        Py_END_ALLOW_THREADS
        if (n == 0 && PyErr_CheckSignals() < 0) /* a signal cut the wait short: run its handler */
            return NULL;
    }
    if (n < 0)
        n = 0; /* a bad loop descriptor: no events (errors are return values) */
    for (int i = 0; i < n; i++)
        if (events[i].flags & (HS_EV_READ | HS_EV_ERROR))
            hs_mark_reported(events[i].fd);
    PyObject *list = PyList_New(n);
    if (!list)
        return NULL;
    for (int i = 0; i < n; i++) {
        PyObject *pair = PyTuple_New(2);
        PyObject *fd_obj = PyLong_FromLong(events[i].fd);
        PyObject *flags_obj = PyLong_FromLong(events[i].flags);
        if (!pair || !fd_obj || !flags_obj) {
            Py_XDECREF(pair);
            Py_XDECREF(fd_obj);
            Py_XDECREF(flags_obj);
            Py_DECREF(list);
            return NULL;
        }
        PyTuple_SET_ITEM(pair, 0, fd_obj);
        PyTuple_SET_ITEM(pair, 1, flags_obj);
        PyList_SET_ITEM(list, i, pair);
    }
    return list;
}

static PyObject *hs_py_http_accept(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int listen_fd;
    (void)self;
    if (hs_exact_args("http_accept", nargs, 1) < 0 || hs_arg_fd("http_accept", "listen_fd", args[0], &listen_fd) < 0)
        return NULL;
    int fd = hs_accept(listen_fd);
    if (fd >= 0) {
        /* The number may have been closed behind our back (os.close): start clean. */
        hs_conns_drop(&hs_socket_conns, fd);
        hs_ev_forget_fd(fd);
        hs_forget_rounds(fd);
    }
    return PyLong_FromLong(fd < 0 ? -1 : fd);
}

/* ---- receiving requests ------------------------------------------------------ */

static const char hs_continue_response[] = "HTTP/1.1 100 Continue\r\n\r\n";

/* The request's path as returned by http_recv: the request-target as sent; an
 * absolute-form target ("http://host/p?q") is reduced to its origin-form ("/p?q"). */
static PyObject *hs_request_path(const hs_request *req)
{
    const char *target_end = req->target + req->target_len;
    if (req->target_len && (req->target[0] == '/' || req->target[0] == '*'))
        return PyUnicode_DecodeLatin1(req->target, (Py_ssize_t)req->target_len, NULL);
    const char *path_end = req->path + req->path_len;
    if (req->query ? path_end + 1 == req->query : path_end == target_end)
        return PyUnicode_DecodeLatin1(req->path, (Py_ssize_t)(target_end - req->path), NULL);
    /* absolute-form with an empty path and a query: "/" + "?" + query */
    PyObject *path = PyUnicode_DecodeLatin1(req->path, (Py_ssize_t)req->path_len, NULL);
    if (!path || !req->query)
        return path;
    PyObject *query = PyUnicode_DecodeLatin1(req->query - 1, (Py_ssize_t)req->query_len + 1, NULL);
    if (!query) {
        Py_DECREF(path);
        return NULL;
    }
    PyObject *joined = PyUnicode_Concat(path, query);
    Py_DECREF(path);
    Py_DECREF(query);
    return joined;
}

/* [method, path, body, keep_alive, fd] for the ready request of c. */
static PyObject *hs_request_list(const hs_conn *c)
{
    const hs_request *req = &c->req;
    PyObject *list = PyList_New(5);
    if (!list)
        return NULL;
    PyObject *method = PyUnicode_DecodeLatin1(req->method, (Py_ssize_t)req->method_len, NULL);
    PyObject *path = method ? hs_request_path(req) : NULL;
    PyObject *body = path ? PyBytes_FromStringAndSize(c->body ? c->body : "", (Py_ssize_t)c->body_len) : NULL;
    PyObject *keep_alive = body ? PyLong_FromLong(req->keep_alive ? 1 : 0) : NULL;
    PyObject *fd = keep_alive ? PyLong_FromLong(c->fd) : NULL;
    if (!fd) {
        Py_XDECREF(method);
        Py_XDECREF(path);
        Py_XDECREF(body);
        Py_XDECREF(keep_alive);
        Py_DECREF(list);
        return NULL;
    }
    PyList_SET_ITEM(list, 0, method);
    PyList_SET_ITEM(list, 1, path);
    PyList_SET_ITEM(list, 2, body);
    PyList_SET_ITEM(list, 3, keep_alive);
    PyList_SET_ITEM(list, 4, fd);
    return list;
}

/* The connection for fd, created on first use when fd is an open descriptor. */
static hs_conn *hs_socket_conn(int fd)
{
    hs_conn *c = hs_conns_get(&hs_socket_conns, fd, 0);
    if (HS_LIKELY(c != NULL))
        return c;
    if (fd < 0 || fcntl(fd, F_GETFD) < 0) /* do not grow the table for a closed or absurd fd */
        return NULL;
    return hs_conns_get(&hs_socket_conns, fd, 1);
}

static PyObject *hs_py_http_recv(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    (void)self;
    if (hs_exact_args("http_recv", nargs, 1) < 0 || hs_arg_fd("http_recv", "fd", args[0], &fd) < 0)
        return NULL;
    hs_conn *c = hs_socket_conn(fd);
    if (HS_UNLIKELY(!c))
        Py_RETURN_NONE;
    /* Parse what is buffered first: a pipelined request needs no syscall. At
     * most one hs_conn_recv (itself one recv unless it filled the buffer). */
    for (int attempt = 0;; attempt++) {
        int r = hs_conn_parse(c, &hs_socket_limits);
        if (r == HS_REQ_READY) {
            PyObject *list = hs_request_list(c);
            if (!list)
                return NULL;
            c->flags &= ~(HS_SOCK_KEEP_ALIVE | HS_SOCK_HEAD);
            if (c->req.keep_alive)
                c->flags |= HS_SOCK_KEEP_ALIVE;
            if (c->req.method_len == 4 && memcmp(c->req.method, "HEAD", 4) == 0)
                c->flags |= HS_SOCK_HEAD;
            hs_conn_consume(c);
            return list;
        }
        if (c->continue_pending) {
            /* RFC 9110 10.1.1: the client waits for this before sending the body.
             * Best effort: if it does not fit now, the client sends anyway after its timeout. */
            ssize_t sent;
            do {
                sent = send(fd, hs_continue_response, sizeof hs_continue_response - 1, HS_SEND_FLAGS | MSG_DONTWAIT);
            } while (sent < 0 && errno == EINTR);
            c->continue_pending = 0;
        }
        if (r == HS_REQ_ERROR || (c->flags & HS_SOCK_CLOSED) || attempt > 0)
            Py_RETURN_NONE;
        hs_fd_round *round = (size_t)fd < hs_fd_rounds_size ? &hs_fd_rounds[fd] : NULL;
        if (round && round->reported == hs_round && round->drained == hs_round) {
            round->drained = 0; /* drained since this round's report: nothing new to read */
            Py_RETURN_NONE;
        }
        ssize_t n = hs_conn_recv(c);
        if (round && (n == HS_RECV_AGAIN || (n > 0 && n < HS_CONN_RECV_BUDGET)))
            round->drained = hs_round;
        if (n == HS_RECV_AGAIN)
            Py_RETURN_NONE;
        if (n == HS_RECV_CLOSED || n == HS_RECV_ERROR) {
            c->flags |= HS_SOCK_CLOSED;
            Py_RETURN_NONE;
        }
    }
}

static PyObject *hs_py_http_recv_status(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    (void)self;
    if (hs_exact_args("http_recv_status", nargs, 1) < 0 || hs_arg_fd("http_recv_status", "fd", args[0], &fd) < 0)
        return NULL;
    if (fd < 0)
        return PyLong_FromLong(HS_SOCK_RECV_CLOSED);
    hs_conn *c = hs_conns_get(&hs_socket_conns, fd, 0);
    if (!c)
        return PyLong_FromLong(HS_SOCK_RECV_PENDING);
    if (c->error_status)
        return PyLong_FromLong(c->error_status);
    if (c->flags & HS_SOCK_CLOSED)
        return PyLong_FromLong(HS_SOCK_RECV_CLOSED);
    return PyLong_FromLong(HS_SOCK_RECV_PENDING);
}

/* ---- sending responses ------------------------------------------------------- */

/* Two decimal digits of v (0..99) at p; returns p + 2. */
static char *hs_two_digits(char *p, int v)
{
    unsigned u = (unsigned)v % 100u;
    p[0] = (char)('0' + u / 10);
    p[1] = (char)('0' + u % 10);
    return p + 2;
}

/* The current time as an IMF-fixdate (RFC 9110 5.6.7), formatted once per second. */
static const char *hs_http_date(void)
{
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    static char cached[HS_IMF_DATE_LEN + 1] = "Thu, 01 Jan 1970 00:00:00 GMT";
    static time_t cached_at = -1;
    time_t now = time(NULL);
    if (now == cached_at || now == (time_t)-1)
        return cached;
    struct tm tm;
    if (!gmtime_r(&now, &tm))
        return cached;
    /* "Www, DD Mon YYYY HH:MM:SS GMT", written field by field (fixed width) */
    char *p = cached;
    unsigned year = (unsigned)(tm.tm_year + 1900) % 10000u;
    memcpy(p, days[(unsigned)tm.tm_wday % 7u], 3);
    p += 3;
    *p++ = ',';
    *p++ = ' ';
    p = hs_two_digits(p, tm.tm_mday);
    *p++ = ' ';
    memcpy(p, months[(unsigned)tm.tm_mon % 12u], 3);
    p += 3;
    *p++ = ' ';
    p = hs_two_digits(p, (int)(year / 100));
    p = hs_two_digits(p, (int)(year % 100));
    *p++ = ' ';
    p = hs_two_digits(p, tm.tm_hour);
    *p++ = ':';
    p = hs_two_digits(p, tm.tm_min);
    *p++ = ':';
    p = hs_two_digits(p, tm.tm_sec);
    memcpy(p, " GMT", 5); /* with its NUL: 29 characters in all */
    cached_at = now;
    return cached;
}

/*
 * Write iov[0..iovcnt) completely. When the socket is full, wait for it to
 * drain (GIL released) at most HS_SEND_STALL_TIMEOUT_MS per stall. Returns the
 * byte count, -1 on an error or a stall that timed out (the peer got a prefix
 * at most: the caller must close), or -2 with a Python exception set when a
 * signal handler raised while waiting.
 */
static Py_ssize_t hs_send_all(int fd, struct iovec *iov, int iovcnt)
{
    size_t total = 0, sent = 0;
    for (int i = 0; i < iovcnt; i++)
        total += iov[i].iov_len;
    while (sent < total) {
        struct msghdr msg;
        memset(&msg, 0, sizeof msg);
        msg.msg_iov = iov;
        msg.msg_iovlen = iovcnt;
        ssize_t n = sendmsg(fd, &msg, HS_SEND_FLAGS | MSG_DONTWAIT); /* writev, without SIGPIPE */
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN && errno != EWOULDBLOCK)
                return -1;
            struct pollfd pfd = {fd, POLLOUT, 0};
            int ready;
            Py_BEGIN_ALLOW_THREADS
            ready = poll(&pfd, 1, HS_SEND_STALL_TIMEOUT_MS);
            Py_END_ALLOW_THREADS
            if (ready < 0 && errno != EINTR)
                return -1;
            if (PyErr_CheckSignals() < 0)
                return -2;
            if (ready == 0)
                return -1; /* no progress for HS_SEND_STALL_TIMEOUT_MS */
            continue;      /* writable, or an error the next sendmsg reports */
        }
        sent += (size_t)n;
        size_t skip = (size_t)n;
        while (iovcnt > 0 && skip >= iov[0].iov_len) {
            skip -= iov[0].iov_len;
            iov++;
            iovcnt--;
        }
        if (iovcnt > 0) {
            iov[0].iov_base = (char *)iov[0].iov_base + skip;
            iov[0].iov_len -= skip;
        }
    }
    return (Py_ssize_t)total;
}

static PyObject *hs_send_result(Py_ssize_t n)
{
    if (n == -2)
        return NULL;
    return PyLong_FromSsize_t(n < 0 ? -1 : n);
}

/* What the last request on fd asked for: HS_SOCK_KEEP_ALIVE / HS_SOCK_HEAD bits. */
static unsigned hs_last_request_flags(int fd)
{
    hs_conn *c = hs_conns_get(&hs_socket_conns, fd, 0);
    return c ? c->flags : 0;
}

/*
 * Format a response head: status line, Date, Content-Type, Content-Length,
 * Connection. Returns its length (it always fits in HS_RESPONSE_HEAD_ROOM).
 */
static size_t hs_format_head(char *out, const char *status_line, const char *content_type, size_t ct_len,
                             size_t body_len, int keep_alive)
{
    int n = snprintf(out, HS_RESPONSE_HEAD_ROOM,
                     "HTTP/1.1 %s\r\nDate: %s\r\nContent-Type: %.*s\r\nContent-Length: %zu\r\nConnection: %s\r\n\r\n",
                     status_line, hs_http_date(), (int)ct_len, content_type, body_len,
                     keep_alive ? "keep-alive" : "close");
    return n < 0 ? 0 : (size_t)n;
}

static PyObject *hs_py_http_send(PyObject *self, PyObject *const *args, Py_ssize_t nargs, PyObject *kwnames)
{
    static const char *const names[] = {"fd", "body", "content_type"};
    PyObject *a[3];
    int fd;
    (void)self;
    if (hs_bind_args("http_send", args, nargs, kwnames, names, 2, 3, a) < 0 ||
        hs_arg_fd("http_send", "fd", a[0], &fd) < 0)
        return NULL;
    PyObject *ct_obj = a[2] ? a[2] : hs_default_content_type;
    if (!PyUnicode_Check(ct_obj)) {
        PyErr_Format(PyExc_TypeError, "http_send() argument 'content_type' must be str, not %.100s",
                     Py_TYPE(ct_obj)->tp_name);
        return NULL;
    }
    Py_ssize_t ct_len;
    const char *ct = PyUnicode_AsUTF8AndSize(ct_obj, &ct_len);
    if (!ct)
        return NULL;
    if (ct_len > HS_MAX_CONTENT_TYPE) {
        PyErr_Format(PyExc_ValueError, "http_send() argument 'content_type' is longer than %d bytes",
                     HS_MAX_CONTENT_TYPE);
        return NULL;
    }
    for (Py_ssize_t i = 0; i < ct_len; i++) {
        unsigned char ch = (unsigned char)ct[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f) { /* header injection / invalid field value */
            PyErr_SetString(PyExc_ValueError, "http_send() argument 'content_type' contains a control character");
            return NULL;
        }
    }
    const char *body;
    Py_ssize_t body_len;
    Py_buffer view;
    int have_view = 0;
    if (PyUnicode_Check(a[1])) {
        body = PyUnicode_AsUTF8AndSize(a[1], &body_len);
        if (!body)
            return NULL;
    } else if (PyObject_CheckBuffer(a[1])) {
        if (PyObject_GetBuffer(a[1], &view, PyBUF_SIMPLE) < 0)
            return NULL;
        have_view = 1;
        body = (const char *)view.buf;
        body_len = view.len;
    } else {
        PyErr_Format(PyExc_TypeError, "http_send() argument 'body' must be str or bytes, not %.100s",
                     Py_TYPE(a[1])->tp_name);
        return NULL;
    }
    PyObject *result;
    if (fd < 0) {
        result = PyLong_FromLong(-1);
    } else {
        unsigned last = hs_last_request_flags(fd);
        char head[HS_RESPONSE_HEAD_ROOM];
        size_t head_len = hs_format_head(head, "200 OK", ct, (size_t)ct_len, (size_t)body_len,
                                         (last & HS_SOCK_KEEP_ALIVE) != 0);
        struct iovec iov[2];
        iov[0].iov_base = head;
        iov[0].iov_len = head_len;
        iov[1].iov_base = (void *)body;
        iov[1].iov_len = (last & HS_SOCK_HEAD) ? 0 : (size_t)body_len; /* RFC 9110 9.3.2: no body for HEAD */
        result = hs_send_result(hs_send_all(fd, iov, 2));
    }
    if (have_view)
        PyBuffer_Release(&view);
    return result;
}

static const char hs_not_found_body[] = "Not Found";

static PyObject *hs_py_http_send_404(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    (void)self;
    if (hs_exact_args("http_send_404", nargs, 1) < 0 || hs_arg_fd("http_send_404", "fd", args[0], &fd) < 0)
        return NULL;
    if (fd < 0)
        return PyLong_FromLong(-1);
    unsigned last = hs_last_request_flags(fd);
    char head[HS_RESPONSE_HEAD_ROOM];
    size_t head_len = hs_format_head(head, "404 Not Found", "text/plain", sizeof "text/plain" - 1,
                                     sizeof hs_not_found_body - 1, (last & HS_SOCK_KEEP_ALIVE) != 0);
    struct iovec iov[2];
    iov[0].iov_base = head;
    iov[0].iov_len = head_len;
    iov[1].iov_base = (void *)hs_not_found_body;
    iov[1].iov_len = (last & HS_SOCK_HEAD) ? 0 : sizeof hs_not_found_body - 1;
    return hs_send_result(hs_send_all(fd, iov, 2));
}

/* Reason phrase of the error statuses this layer produces or a loop commonly sends. */
static const char *hs_error_reason(int status)
{
    switch (status) {
    case 400: return "Bad Request";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 414: return "URI Too Long";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return status < 500 ? "Client Error" : "Server Error";
    }
}

static PyObject *hs_py_http_send_error(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    long status;
    (void)self;
    if (hs_exact_args("http_send_error", nargs, 2) < 0 || hs_arg_fd("http_send_error", "fd", args[0], &fd) < 0 ||
        hs_arg_long("http_send_error", "status", args[1], &status) < 0)
        return NULL;
    if (status < HS_ERROR_STATUS_MIN || status > HS_ERROR_STATUS_MAX) {
        PyErr_Format(PyExc_ValueError, "http_send_error() argument 'status' must be 400..599, got %ld", status);
        return NULL;
    }
    if (fd < 0)
        return PyLong_FromLong(-1);
    const char *reason = hs_error_reason((int)status);
    char status_line[64];
    (void)snprintf(status_line, sizeof status_line, "%ld %s", status, reason);
    size_t reason_len = strlen(reason);
    char head[HS_RESPONSE_HEAD_ROOM];
    /* An error ends the connection: the rest of the stream cannot be trusted. */
    size_t head_len = hs_format_head(head, status_line, "text/plain", sizeof "text/plain" - 1, reason_len, 0);
    struct iovec iov[2];
    iov[0].iov_base = head;
    iov[0].iov_len = head_len;
    iov[1].iov_base = (void *)reason;
    iov[1].iov_len = (hs_last_request_flags(fd) & HS_SOCK_HEAD) ? 0 : reason_len;
    return hs_send_result(hs_send_all(fd, iov, 2));
}

static PyObject *hs_py_close_fd(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    int fd;
    (void)self;
    if (hs_exact_args("close_fd", nargs, 1) < 0 || hs_arg_fd("close_fd", "fd", args[0], &fd) < 0)
        return NULL;
    if (fd < 0)
        return PyLong_FromLong(-1);
    hs_conns_drop(&hs_socket_conns, fd);
    hs_ev_forget_fd(fd);
    hs_forget_rounds(fd);
    int rc;
    if (hs_ev_is_loop(fd))
        rc = hs_ev_close(fd);
    else
        rc = (close(fd) < 0 && errno != EINTR) ? -1 : 0; /* after EINTR the fd is gone (POSIX 2024, Linux, BSD) */
    return PyLong_FromLong(rc);
}

/* ---- module -------------------------------------------------------------------- */

#define HS_FASTCALL(fn) (PyCFunction)(void (*)(void))(fn), METH_FASTCALL
#define HS_FASTCALL_KW(fn) (PyCFunction)(void (*)(void))(fn), METH_FASTCALL | METH_KEYWORDS

static PyMethodDef hs_socket_methods[] = {
    {"platform", hs_py_platform, METH_NOARGS, "platform() -> 'linux' | 'darwin' | 'freebsd' | 'openbsd' | 'netbsd'"},
    {"event_backend", hs_py_event_backend, METH_NOARGS, "event_backend() -> 'epoll' | 'kqueue' | 'poll'"},
    {"create_listen_socket", HS_FASTCALL_KW(hs_py_create_listen_socket),
     "create_listen_socket(port, host=None) -> listening fd, or -1"},
    {"create_event_loop", HS_FASTCALL(hs_py_create_event_loop),
     "create_event_loop(listen_fd) -> loop fd with listen_fd registered for reads, or -1"},
    {"event_add", HS_FASTCALL_KW(hs_py_event_add), "event_add(loop_fd, fd, flags=EV_READ) -> 0, or -1"},
    {"event_mod", HS_FASTCALL_KW(hs_py_event_mod), "event_mod(loop_fd, fd, flags) -> 0, or -1"},
    {"event_del", HS_FASTCALL(hs_py_event_del), "event_del(loop_fd, fd) -> 0, or -1"},
    {"ev_poll", HS_FASTCALL(hs_py_ev_poll), "ev_poll(loop_fd, timeout_ms) -> [(fd, flags), ...]"},
    {"http_accept", HS_FASTCALL(hs_py_http_accept), "http_accept(listen_fd) -> client fd, or -1"},
    {"http_recv", HS_FASTCALL(hs_py_http_recv),
     "http_recv(fd) -> [method, path, body, keep_alive, fd] for one complete request, else None"},
    {"http_recv_status", HS_FASTCALL(hs_py_http_recv_status),
     "http_recv_status(fd) -> RECV_PENDING (0), RECV_CLOSED (-1) or the HTTP status of a rejected request"},
    {"http_send", HS_FASTCALL_KW(hs_py_http_send),
     "http_send(fd, body, content_type='text/plain') -> bytes written, or -1"},
    {"http_send_404", HS_FASTCALL(hs_py_http_send_404), "http_send_404(fd) -> bytes written, or -1"},
    {"http_send_error", HS_FASTCALL(hs_py_http_send_error),
     "http_send_error(fd, status) -> bytes written, or -1 (the response says Connection: close)"},
    {"close_fd", HS_FASTCALL(hs_py_close_fd), "close_fd(fd) -> 0, or -1"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef hs_socket_module = {
    PyModuleDef_HEAD_INIT,
    HS_MODULE_NAME_STR,
    "Native socket operations of hypersonic.socket (see hypersonic/socket.py for the documentation).",
    -1,
    hs_socket_methods,
    NULL,
    NULL,
    NULL,
    NULL,
};

PyMODINIT_FUNC HS_PYINIT(void)
{
    hs_limits_default(&hs_socket_limits);
#ifdef HS_PLATFORM
    hs_platform_str = PyUnicode_InternFromString(HS_PLATFORM);
    if (!hs_platform_str)
        return NULL;
#endif
    hs_backend_str = PyUnicode_InternFromString(hs_ev_backend());
    hs_default_content_type = PyUnicode_InternFromString("text/plain");
    if (!hs_backend_str || !hs_default_content_type)
        return NULL;
    PyObject *m = PyModule_Create(&hs_socket_module);
    if (!m)
        return NULL;
    if (PyModule_AddIntConstant(m, "EV_READ", HS_EV_READ) < 0 ||
        PyModule_AddIntConstant(m, "EV_WRITE", HS_EV_WRITE) < 0 ||
        PyModule_AddIntConstant(m, "EV_ERROR", HS_EV_ERROR) < 0 ||
        PyModule_AddIntConstant(m, "RECV_PENDING", HS_SOCK_RECV_PENDING) < 0 ||
        PyModule_AddIntConstant(m, "RECV_CLOSED", HS_SOCK_RECV_CLOSED) < 0 ||
        PyModule_AddIntConstant(m, "MAX_REQUEST_TARGET", HS_DEFAULT_MAX_URI) < 0 ||
        PyModule_AddIntConstant(m, "MAX_REQUEST_HEAD", HS_DEFAULT_MAX_HEAD) < 0 ||
        PyModule_AddIntConstant(m, "MAX_REQUEST_BODY", HS_DEFAULT_MAX_BODY) < 0 ||
        PyModule_AddIntConstant(m, "SEND_STALL_TIMEOUT_MS", HS_SEND_STALL_TIMEOUT_MS) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
