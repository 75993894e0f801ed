/*
 * hs_servermod.c - the extension module of one compiled app: the Python glue
 * around the C server loop (hs_server.c).
 *
 * It is one translation unit: it includes the shared C (parser, connection,
 * network, event backends), the app's generated tables (hs_app.h, written by
 * hypersonic._codegen next to this file's copy in the build dir), the router,
 * the response writer and the loop.
 *
 * What it adds to the loop:
 *  - configure(): the handler table and the Python objects the dynamic path
 *    needs (Request class, BadRequest, JSON encoder, finalize(), error logger);
 *  - the dynamic route callback: builds a Request without running Python code
 *    (allocates the object and stores its slots directly, at offsets looked up
 *    once), calls the handler with vectorcall, and serialises str/bytes/
 *    dict/list results in C (Response and tuples through finalize());
 *  - the wakeup hook: PyErr_CheckSignals() after every wakeup, so Python
 *    signal handlers (SIGTERM -> _request_stop) run; the GIL is released
 *    around the blocking wait;
 *  - the access log (hs_accesslog.c): configure() takes the destination and
 *    the compiled format, serve() opens the file (O_APPEND, once per worker)
 *    and closes it, flushed, when the loop returns; access_log_stats();
 *  - gzip of dynamic responses (hs_compress.c) when configure() gets compression;
 *  - baked files of static mounts answered from C (hs_filefast.c): configure()
 *    takes static_files (hs_filefast_py.c builds the table), serve() hands it to the loop;
 *  - streaming routes (hs_stream.c): the handler runs in its own thread and
 *    writes through stream_send()/stream_abort(); the loop flushes;
 *  - serve(fd), request_stop(), stats(), backend().
 * One server per process (module state is global): a worker serves one app.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <structmember.h>

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include "hs_pymodule.h"

#include "hs_parser.c"
#include "hs_accept.c"
#include "hs_conn.c"
#include "hs_net.c"
#include "hs_event.c"

#include "hs_router.h"
#include "hs_app.h"
#include "hs_router.c"
#include "hs_date.c"
#include "hs_response.c"
#include "hs_file.c"
#include "hs_accesslog.c"
#include "hs_compress.c"
#include "hs_filefast.c"
#include "hs_filefast_py.c"

#define HS_BLOCKING_BEGIN Py_BEGIN_ALLOW_THREADS
#define HS_BLOCKING_END Py_END_ALLOW_THREADS
#include "hs_server.c"

/* Slots of hypersonic.request.Request that the C fills, in this order. */
static const char *const hs_request_slots[] = {
    "method", "path", "query_string", "body", "_head", "_param_names", "_param_values",
    "_headers", "_query", "_cookies", "_params", "_form",
};
enum {
    HS_SLOT_METHOD, HS_SLOT_PATH, HS_SLOT_QUERY, HS_SLOT_BODY, HS_SLOT_HEAD, HS_SLOT_NAMES, HS_SLOT_VALUES,
    HS_SLOT_FIRST_CACHE, HS_SLOT_COUNT = 12
};

static struct {
    int configured;
    int running;
    int stop_early;                 /* request_stop() before serve() */
    PyObject *handlers;             /* tuple of callables, by handler index */
    char *takes_request;            /* per handler: 1 = call with the Request */
    Py_ssize_t nhandlers;
    PyObject *param_names;          /* tuple of tuples of str, by handler index */
    PyTypeObject *request_type;
    Py_ssize_t slot_offset[HS_SLOT_COUNT];
    PyObject *bad_request;          /* exception class answered 400 */
    PyObject *json_encode;          /* (obj, 0) -> str or sequence of str chunks */
    PyObject *zero;                 /* the int 0 */
    PyObject *finalize;             /* result -> (status, header block bytes, body bytes) */
    PyObject *on_error;             /* (exc, status, method, path) -> None: logs */
    char *streaming;                /* per handler: 1 = streaming route (NULL: none) */
    PyObject *start_stream;         /* (index, req, fd, serial, minor, keep, head_only) -> notify */
    PyObject *method_names[HS_M_COUNT];
    PyObject *empty_str;
    PyObject *empty_bytes;
    PyObject *empty_tuple;
    PyObject *pending_exc;          /* BaseException to re-raise when serve() returns */
    unsigned long long notify_at;   /* on_request_count(): fire notify_cb once requests reach this */
    PyObject *notify_cb;            /* NULL when nothing is armed */
    int max_connections;
    hs_limits lim;
    int64_t keepalive_ms, recv_ms, drain_ms;
    PyObject *alog_path;            /* str: file to append to; "-": stdout; NULL: no access log */
    hs_alog_op *alog_ops;           /* compiled format; args point into alog_args */
    int alog_nops;
    PyObject *alog_args;            /* tuple of the op arguments (bytes), kept alive for alog_ops */
    hs_alog alog;
    hs_gzip_cfg gz;                 /* app.compress(); gz.gzip NULL: off */
    hs_server server;
} g;

/* Permissions of a newly created access log file (before the umask). */
#define HS_ALOG_FILE_MODE 0644

static const char *const hs_method_text[HS_M_COUNT] = {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"};

/* ---- the Request ------------------------------------------------------- */

static inline void hs_set_slot(PyObject *obj, int slot, PyObject *value)
{
    PyObject **where = (PyObject **)((char *)obj + g.slot_offset[slot]);
    PyObject *old = *where;
    *where = value; /* steals the reference */
    Py_XDECREF(old);
}

static PyObject *hs_latin1(const char *p, size_t n)
{
    if (!n) {
        Py_INCREF(g.empty_str);
        return g.empty_str;
    }
    return PyUnicode_DecodeLatin1(p, (Py_ssize_t)n, NULL);
}

static PyObject *hs_build_request(hs_conn *c, int method, const hs_route *route, const hs_span *params, int np)
{
    const hs_request *r = &c->req;
    PyTypeObject *tp = g.request_type;
    PyObject *req = tp->tp_alloc(tp, 0);
    if (!req)
        return NULL;
    PyObject *path = hs_latin1(r->path, r->path_len);
    PyObject *query = hs_latin1(r->query, r->query_len);
    const char *head_start = r->method;
    const char *head_end = c->rbuf.data + c->head_len;
    PyObject *head = PyBytes_FromStringAndSize(head_start, (Py_ssize_t)(head_end - head_start));
    PyObject *body;
    if (c->body_len) {
        body = PyBytes_FromStringAndSize(c->body, (Py_ssize_t)c->body_len);
    } else {
        Py_INCREF(g.empty_bytes);
        body = g.empty_bytes;
    }
    PyObject *values;
    if (np) {
        values = PyTuple_New(np);
        for (int i = 0; values && i < np; i++) {
            PyObject *v = hs_latin1(params[i].p, params[i].len);
            if (!v) {
                Py_CLEAR(values);
                break;
            }
            PyTuple_SET_ITEM(values, i, v);
        }
    } else {
        Py_INCREF(g.empty_tuple);
        values = g.empty_tuple;
    }
    PyObject *names = PyTuple_GET_ITEM(g.param_names, route->handler);
    Py_INCREF(names);
    Py_INCREF(g.method_names[method]);
    hs_set_slot(req, HS_SLOT_METHOD, g.method_names[method]);
    hs_set_slot(req, HS_SLOT_PATH, path);
    hs_set_slot(req, HS_SLOT_QUERY, query);
    hs_set_slot(req, HS_SLOT_BODY, body);
    hs_set_slot(req, HS_SLOT_HEAD, head);
    hs_set_slot(req, HS_SLOT_NAMES, names);
    hs_set_slot(req, HS_SLOT_VALUES, values);
    for (int i = HS_SLOT_FIRST_CACHE; i < HS_SLOT_COUNT; i++) {
        Py_INCREF(Py_None);
        hs_set_slot(req, i, Py_None);
    }
    if (!path || !query || !head || !body || !values) {
        Py_DECREF(req);
        return NULL;
    }
    return req;
}

/* ---- results to HTTP ---------------------------------------------------- */

/* The handler raised (or its result could not be serialised): log, answer 500 (400 for BadRequest). */
static int hs_handler_failed(hs_server *s, hs_conn *c, int method, int head_only, int keep)
{
    PyObject *type, *value, *tb;
    PyErr_Fetch(&type, &value, &tb);
    PyErr_NormalizeException(&type, &value, &tb);
    if (value && tb)
        (void)PyException_SetTraceback(value, tb);
    int status = 500;
    if (type && PyErr_GivenExceptionMatches(type, g.bad_request)) {
        status = 400;
    } else if (type && !PyErr_GivenExceptionMatches(type, PyExc_Exception)) {
        /* KeyboardInterrupt, SystemExit: stop serving, re-raise from serve() */
        if (!g.pending_exc && value) {
            Py_INCREF(value);
            g.pending_exc = value;
        }
        s->stop_requested = 1;
        keep = 0;
    }
    const hs_request *r = &c->req;
    PyObject *path = PyUnicode_DecodeLatin1(r->target, (Py_ssize_t)r->target_len, NULL);
    PyObject *res = NULL;
    if (path)
        res = PyObject_CallFunction(g.on_error, "OiOO", value ? value : Py_None, status, g.method_names[method],
                                    path);
    if (!res)
        PyErr_WriteUnraisable(g.on_error);
    Py_XDECREF(res);
    Py_XDECREF(path);
    Py_XDECREF(type);
    Py_XDECREF(value);
    Py_XDECREF(tb);
    if (!keep)
        c->flags |= HS_CF_CLOSE_AFTER;
    const hs_status_line *sl = &hs_app_status[status - HS_STATUS_MIN];
    return hs_resp_simple(c, s->date, status, NULL, 0, sl->text + 13, sl->len - 15, keep, c->req.minor_version,
                          head_only);
}

/*
 * Queue a file-body result of finalize(): (status, header block, fd, offset,
 * length). The connection takes fd (closed here when no body is sent). 0, -1
 * when nothing could be queued (out of memory), -2 with a Python exception
 * when the tuple is malformed (nothing queued; fd closed if it was an int).
 */
static int hs_write_file_result(hs_server *s, hs_conn *c, PyObject *tuple, int head_only, int keep)
{
    long status = PyLong_AsLong(PyTuple_GET_ITEM(tuple, 0));
    int fd = (int)PyLong_AsLong(PyTuple_GET_ITEM(tuple, 2));
    unsigned long long off = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(tuple, 3));
    unsigned long long len = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(tuple, 4));
    PyObject *block = PyTuple_GET_ITEM(tuple, 1);
    if (PyErr_Occurred() || !PyBytes_Check(block) || status < 200 || status > HS_STATUS_MAX) {
        if (fd >= 0)
            (void)close(fd);
        if (!PyErr_Occurred())
            PyErr_SetString(PyExc_TypeError, "finalize() file result must be (int, bytes, fd, offset, length)");
        return -2;
    }
    int no_content = status == 204 || status == 304;
    if (hs_resp_begin(c, (int)status, s->date) < 0 ||
        hs_conn_queue(c, PyBytes_AS_STRING(block), (size_t)PyBytes_GET_SIZE(block)) < 0 ||
        (!no_content && hs_resp_content_length(c, (size_t)len) < 0) ||
        hs_resp_connection(c, keep, c->req.minor_version) < 0 || hs_conn_queue(c, "\r\n", 2) < 0) {
        if (fd >= 0)
            (void)close(fd);
        return -1;
    }
    if (fd >= 0)
        hs_file_attach(c, fd, (uint64_t)off, (head_only || no_content) ? 0 : (uint64_t)len);
    return 0;
}

static int hs_write_result(hs_server *s, hs_conn *c, PyObject *result, int head_only, int keep)
{
    const char *block, *body;
    size_t block_len;
    Py_ssize_t body_len;
    long status = 200;
    PyObject *tmp = NULL;
    int gz_kind = HS_GZ_TEXT;
    if (PyUnicode_CheckExact(result)) {
        body = PyUnicode_AsUTF8AndSize(result, &body_len);
        if (!body)
            return -2;
        block = hs_app_text_block;
        block_len = sizeof(hs_app_text_block) - 1;
    } else if (PyBytes_CheckExact(result)) {
        body = PyBytes_AS_STRING(result);
        body_len = PyBytes_GET_SIZE(result);
        block = hs_app_text_block;
        block_len = sizeof(hs_app_text_block) - 1;
    } else if (PyDict_CheckExact(result) || PyList_CheckExact(result)) {
        PyObject *args[2] = {result, g.zero};
        PyObject *chunks = PyObject_Vectorcall(g.json_encode, args, 2, NULL);
        if (!chunks)
            return -2;
        if (PyUnicode_Check(chunks)) {
            tmp = chunks;
        } else {
            tmp = PyUnicode_Join(g.empty_str, chunks);
            Py_DECREF(chunks);
            if (!tmp)
                return -2;
        }
        body = PyUnicode_AsUTF8AndSize(tmp, &body_len);
        if (!body) {
            Py_DECREF(tmp);
            return -2;
        }
        block = hs_app_json_block;
        block_len = sizeof(hs_app_json_block) - 1;
        gz_kind = HS_GZ_JSON;
    } else {
        gz_kind = -1;
        tmp = PyObject_Vectorcall(g.finalize, &result, 1, NULL);
        if (tmp && g.gz.gzip) { /* app.compress(): Python decides from the finalized fields */
            PyObject *adjusted = hs_gzip_adjust(&g.gz, tmp, &c->req);
            Py_DECREF(tmp);
            tmp = adjusted;
        }
        if (!tmp)
            return -2;
        if (PyTuple_Check(tmp) && PyTuple_GET_SIZE(tmp) == 5) { /* a file body (FileResponse) */
            int rc = hs_write_file_result(s, c, tmp, head_only, keep);
            Py_DECREF(tmp);
            return rc;
        }
        if (!PyTuple_Check(tmp) || PyTuple_GET_SIZE(tmp) != 3 || !PyLong_Check(PyTuple_GET_ITEM(tmp, 0)) ||
            !PyBytes_Check(PyTuple_GET_ITEM(tmp, 1)) || !PyBytes_Check(PyTuple_GET_ITEM(tmp, 2))) {
            Py_DECREF(tmp);
            PyErr_SetString(PyExc_TypeError, "finalize() must return (int, bytes, bytes)");
            return -2;
        }
        status = PyLong_AsLong(PyTuple_GET_ITEM(tmp, 0));
        if (status < 200 || status > HS_STATUS_MAX) {
            Py_DECREF(tmp);
            PyErr_Format(PyExc_ValueError, "status %ld out of range", status);
            return -2;
        }
        block = PyBytes_AS_STRING(PyTuple_GET_ITEM(tmp, 1));
        block_len = (size_t)PyBytes_GET_SIZE(PyTuple_GET_ITEM(tmp, 1));
        body = PyBytes_AS_STRING(PyTuple_GET_ITEM(tmp, 2));
        body_len = PyBytes_GET_SIZE(PyTuple_GET_ITEM(tmp, 2));
    }
    PyObject *gz_body = NULL; /* owns body when it was compressed here */
    if (g.gz.gzip && gz_kind >= 0 &&
        hs_gzip_fast(&g.gz, gz_kind, &c->req, &block, &block_len, &body, &body_len, &gz_body) < 0) {
        Py_XDECREF(tmp);
        return -2;
    }
    int no_content = status == 204 || status == 304;
    int rc = 0;
    if (hs_resp_begin(c, (int)status, s->date) < 0 || hs_conn_queue(c, block, block_len) < 0 ||
        (!no_content && hs_resp_content_length(c, (size_t)body_len) < 0) ||
        hs_resp_connection(c, keep, c->req.minor_version) < 0 || hs_conn_queue(c, "\r\n", 2) < 0 ||
        (!head_only && !no_content && body_len && hs_conn_queue(c, body, (size_t)body_len) < 0))
        rc = -1;
    Py_XDECREF(gz_body);
    Py_XDECREF(tmp);
    return rc;
}

#include "hs_stream.c"

static int hs_dynamic(hs_server *s, hs_conn *c, int method, const hs_route *route, const hs_span *params, int np,
                      int head_only, int keep)
{
    if (HS_UNLIKELY(g.streaming != NULL) && g.streaming[route->handler])
        return hs_stream_start(s, c, method, route, params, np, head_only, keep);
    PyObject *handler = PyTuple_GET_ITEM(g.handlers, route->handler);
    PyObject *result;
    if (g.takes_request[route->handler]) {
        PyObject *req = hs_build_request(c, method, route, params, np);
        if (!req)
            return hs_handler_failed(s, c, method, head_only, keep);
        result = PyObject_Vectorcall(handler, &req, 1, NULL);
        Py_DECREF(req);
    } else {
        result = PyObject_Vectorcall(handler, NULL, 0, NULL);
    }
    if (!result)
        return hs_handler_failed(s, c, method, head_only, keep);
    size_t mark = c->wbuf.len;
    int rc = hs_write_result(s, c, result, head_only, keep);
    Py_DECREF(result);
    if (rc == -2) { /* the result could not be serialised: nothing was queued */
        c->wbuf.len = mark;
        return hs_handler_failed(s, c, method, head_only, keep);
    }
    return rc;
}

/* on_request_count(): call the armed callback once, when the request counter reaches its mark. */
static void hs_fire_request_count(const hs_server *s)
{
    if (HS_LIKELY(g.notify_cb == NULL) || s->stat_requests < g.notify_at)
        return;
    PyObject *callback = g.notify_cb;
    g.notify_cb = NULL; /* once: re-arm by calling on_request_count() again */
    PyObject *served = PyLong_FromUnsignedLongLong(s->stat_requests);
    PyObject *result = served ? PyObject_CallOneArg(callback, served) : NULL;
    Py_XDECREF(served);
    if (result == NULL)
        PyErr_WriteUnraisable(callback); /* a failing observer must not stop the loop */
    Py_XDECREF(result);
    Py_DECREF(callback);
}

static int hs_after_wakeup(hs_server *s)
{
    hs_fire_request_count(s);
    if (PyErr_CheckSignals() < 0) {
        /* A signal handler raised (default SIGINT: KeyboardInterrupt): drain, then re-raise. */
        PyObject *type, *value, *tb;
        PyErr_Fetch(&type, &value, &tb);
        PyErr_NormalizeException(&type, &value, &tb);
        if (value && tb)
            (void)PyException_SetTraceback(value, tb);
        if (!g.pending_exc && value) {
            g.pending_exc = value;
            value = NULL;
        }
        Py_XDECREF(type);
        Py_XDECREF(value);
        Py_XDECREF(tb);
        return 1;
    }
    return 0;
}

/* ---- module functions ---------------------------------------------------- */

static int hs_slot_offsets(PyTypeObject *tp)
{
    for (int i = 0; i < HS_SLOT_COUNT; i++) {
        PyObject *descr = PyDict_GetItemString(tp->tp_dict, hs_request_slots[i]);
        if (!descr || !PyObject_TypeCheck(descr, &PyMemberDescr_Type)) {
            PyErr_Format(PyExc_TypeError, "request_type must define slot %s", hs_request_slots[i]);
            return -1;
        }
        PyMemberDef *m = ((PyMemberDescrObject *)descr)->d_member;
        if (m->type != T_OBJECT_EX) {
            PyErr_Format(PyExc_TypeError, "slot %s of request_type is not an object slot", hs_request_slots[i]);
            return -1;
        }
        g.slot_offset[i] = m->offset;
    }
    return 0;
}

/* access_log_ops: a tuple of (op name, bytes argument) pairs (hypersonic._accesslog.compile_format). */
static int hs_configure_alog_ops(PyObject *ops)
{
    if (!ops || !PyTuple_Check(ops) || PyTuple_GET_SIZE(ops) == 0) {
        PyErr_SetString(PyExc_TypeError, "access_log_ops must be a non-empty tuple of (name, bytes) pairs");
        return -1;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(ops);
    if (n > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "access_log_ops: too many ops");
        return -1;
    }
    hs_alog_op *compiled = (hs_alog_op *)PyMem_Calloc((size_t)n, sizeof *compiled);
    PyObject *args = PyTuple_New(n);
    if (!compiled || !args) {
        PyMem_Free(compiled);
        Py_XDECREF(args);
        PyErr_NoMemory();
        return -1;
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        PyObject *item = PyTuple_GET_ITEM(ops, i);
        if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != 2 || !PyUnicode_Check(PyTuple_GET_ITEM(item, 0)) ||
            !PyBytes_Check(PyTuple_GET_ITEM(item, 1))) {
            PyErr_Format(PyExc_TypeError, "access_log_ops[%zd] must be a (str, bytes) pair", i);
            goto fail;
        }
        const char *name = PyUnicode_AsUTF8(PyTuple_GET_ITEM(item, 0));
        if (!name)
            goto fail;
        int kind = hs_alog_op_by_name(name);
        if (kind < 0) {
            PyErr_Format(PyExc_ValueError, "access_log_ops[%zd]: unknown op %R", i, PyTuple_GET_ITEM(item, 0));
            goto fail;
        }
        PyObject *arg = PyTuple_GET_ITEM(item, 1);
        Py_INCREF(arg);
        PyTuple_SET_ITEM(args, i, arg);
        compiled[i].kind = kind;
        compiled[i].arg = PyBytes_AS_STRING(arg);
        compiled[i].arg_len = (size_t)PyBytes_GET_SIZE(arg);
    }
    PyMem_Free(g.alog_ops);
    g.alog_ops = compiled;
    g.alog_nops = (int)n;
    Py_XSETREF(g.alog_args, args);
    return 0;
fail:
    PyMem_Free(compiled);
    Py_DECREF(args);
    return -1;
}

/* Open the access log for this worker (serve()). 0, or -1 with an OSError set. */
static int hs_open_alog(void)
{
    const char *path = PyUnicode_AsUTF8(g.alog_path);
    if (!path)
        return -1;
    int fd;
    if (strcmp(path, "-") == 0) {
        fd = fcntl(STDOUT_FILENO, F_DUPFD_CLOEXEC, 0);
    } else {
        do {
            fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, HS_ALOG_FILE_MODE);
        } while (fd < 0 && errno == EINTR);
    }
    if (fd < 0) {
        PyErr_SetFromErrnoWithFilenameObject(PyExc_OSError, g.alog_path);
        return -1;
    }
    if (hs_alog_open(&g.alog, fd, g.alog_ops, g.alog_nops) < 0) {
        (void)close(fd);
        PyErr_NoMemory();
        return -1;
    }
    return 0;
}

static PyObject *hs_py_configure(PyObject *self, PyObject *args, PyObject *kwargs)
{
    (void)self;
    static char *kwlist[] = {"handlers", "takes_request", "param_names", "request_type", "bad_request",
                             "json_encode", "finalize", "on_error", "max_connections", "max_body",
                             "keepalive_ms", "recv_ms", "drain_ms", "access_log", "access_log_ops", "streaming",
                             "start_stream", "compression", "static_files", NULL};
    PyObject *handlers, *takes, *names, *rtype, *bad, *enc, *fin, *onerr;
    PyObject *alog_path = Py_None, *alog_ops = NULL, *streaming = Py_None, *start_stream = Py_None;
    PyObject *compression = Py_None, *static_files = Py_None;
    int max_connections;
    unsigned long long max_body;
    long long keepalive_ms, recv_ms, drain_ms;
    if (!PyArg_ParseTupleAndKeywords(args, kwargs, "O!O!O!O!OOOOiKLLL|OOOOOO", kwlist, &PyTuple_Type, &handlers,
                                     &PyTuple_Type, &takes, &PyTuple_Type, &names, &PyType_Type, &rtype, &bad,
                                     &enc, &fin, &onerr, &max_connections, &max_body, &keepalive_ms, &recv_ms,
                                     &drain_ms, &alog_path, &alog_ops, &streaming, &start_stream, &compression,
                                     &static_files))
        return NULL;
    if (alog_path != Py_None && !PyUnicode_Check(alog_path)) {
        PyErr_SetString(PyExc_TypeError, "access_log must be a str path, \"-\" (stdout) or None");
        return NULL;
    }
    if (alog_path != Py_None && hs_configure_alog_ops(alog_ops) < 0)
        return NULL;
    if (g.running) {
        PyErr_SetString(PyExc_RuntimeError, "configure() while serving");
        return NULL;
    }
    Py_ssize_t n = PyTuple_GET_SIZE(handlers);
    if (PyTuple_GET_SIZE(takes) != n || PyTuple_GET_SIZE(names) != n) {
        PyErr_SetString(PyExc_ValueError, "handlers, takes_request and param_names must have the same length");
        return NULL;
    }
    if (max_connections < 1 || keepalive_ms < 1 || recv_ms < 1 || drain_ms < 0) {
        PyErr_SetString(PyExc_ValueError, "limits must be positive");
        return NULL;
    }
    if (streaming != Py_None && (!PyTuple_Check(streaming) || PyTuple_GET_SIZE(streaming) != n)) {
        PyErr_SetString(PyExc_TypeError, "streaming must be None or a tuple of bools, one per handler");
        return NULL;
    }
    if (streaming != Py_None && !PyCallable_Check(start_stream)) {
        PyErr_SetString(PyExc_TypeError, "start_stream must be callable when streaming is given");
        return NULL;
    }
    if (hs_slot_offsets((PyTypeObject *)rtype) < 0 || hs_gzip_configure(&g.gz, compression) < 0)
        return NULL;
    char *stream_flags = NULL;
    for (Py_ssize_t i = 0; streaming != Py_None && i < n; i++) {
        int t = PyObject_IsTrue(PyTuple_GET_ITEM(streaming, i));
        if (t < 0) {
            PyMem_Free(stream_flags);
            return NULL;
        }
        if (t && !stream_flags && !(stream_flags = (char *)PyMem_Calloc((size_t)n, 1)))
            return PyErr_NoMemory();
        if (t)
            stream_flags[i] = 1;
    }
    char *flags = (char *)PyMem_Malloc(n ? (size_t)n : 1);
    if (!flags) {
        PyMem_Free(stream_flags);
        return PyErr_NoMemory();
    }
    for (Py_ssize_t i = 0; i < n; i++) {
        int t = PyObject_IsTrue(PyTuple_GET_ITEM(takes, i));
        if (t < 0) {
            PyMem_Free(flags);
            PyMem_Free(stream_flags);
            return NULL;
        }
        flags[i] = (char)t;
    }
    hs_ff_table *files = NULL;
    if (hs_ff_py_build(static_files, n, &files) < 0) {
        PyMem_Free(flags);
        PyMem_Free(stream_flags);
        return NULL;
    }
    hs_ff_py_install(files);
    PyMem_Free(g.streaming);
    g.streaming = stream_flags; /* NULL when no route streams: one pointer test per dynamic call */
    if (stream_flags) {
        Py_INCREF(start_stream);
        Py_XSETREF(g.start_stream, start_stream);
    }
    PyMem_Free(g.takes_request);
    g.takes_request = flags;
    g.nhandlers = n;
#define HS_KEEP(field, obj) \
    do {                    \
        Py_INCREF(obj);     \
        Py_XSETREF(field, obj); \
    } while (0)
    HS_KEEP(g.handlers, handlers);
    HS_KEEP(g.param_names, names);
    HS_KEEP(g.bad_request, bad);
    HS_KEEP(g.json_encode, enc);
    HS_KEEP(g.finalize, fin);
    HS_KEEP(g.on_error, onerr);
    Py_INCREF(rtype);
    Py_XSETREF(g.request_type, (PyTypeObject *)rtype);
#undef HS_KEEP
    g.max_connections = max_connections;
    hs_limits_default(&g.lim);
    g.lim.max_body = (uint64_t)max_body;
    g.keepalive_ms = keepalive_ms;
    g.recv_ms = recv_ms;
    g.drain_ms = drain_ms;
    if (alog_path == Py_None) {
        Py_CLEAR(g.alog_path);
    } else {
        Py_INCREF(alog_path);
        Py_XSETREF(g.alog_path, alog_path);
    }
    g.configured = 1;
    Py_RETURN_NONE;
}

static PyObject *hs_py_serve(PyObject *self, PyObject *arg)
{
    (void)self;
    long fd = PyLong_AsLong(arg);
    if (fd == -1 && PyErr_Occurred())
        return NULL;
    if (fd < 0 || fd > INT32_MAX) {
        PyErr_SetString(PyExc_ValueError, "listen_fd must be a non-negative file descriptor");
        return NULL;
    }
    if (!g.configured) {
        PyErr_SetString(PyExc_RuntimeError, "serve() before configure()");
        return NULL;
    }
    if (g.running) {
        PyErr_SetString(PyExc_RuntimeError, "this process is already serving");
        return NULL;
    }
    hs_server *s = &g.server;
    if (g.alog_path && hs_open_alog() < 0)
        return NULL;
    if (hs_server_init(s, (int)fd) < 0) {
        PyErr_SetFromErrno(PyExc_OSError);
        if (g.alog_path)
            hs_alog_close(&g.alog);
        return NULL;
    }
    if (hs_stream_open(s) < 0) {
        hs_server_destroy(s);
        if (g.alog_path)
            hs_alog_close(&g.alog);
        return NULL;
    }
    if (g.alog_path)
        s->alog = &g.alog;
    s->lim = g.lim;
    s->max_connections = g.max_connections;
    s->keepalive_ms = g.keepalive_ms;
    s->recv_ms = g.recv_ms;
    s->drain_ms = g.drain_ms;
    s->baked = hs_app_baked;
    s->nbaked = HS_APP_NUM_BAKED;
    s->files = hs_ff_py_table;
    s->dynamic = hs_dynamic;
    s->after_wakeup = hs_after_wakeup;
    if (g.stop_early)
        s->stop_requested = 1;
    g.stop_early = 0;
    g.running = 1;
    int rc = hs_server_run(s);
    int saved_errno = errno;
    hs_server_destroy(s); /* tells open streams they are closed */
    g.running = 0;        /* writers still running find their stream gone */
    hs_stream_close_all();
    if (s->alog) {
        hs_alog_close(&g.alog); /* flushed: every line of this worker is written */
        s->alog = NULL;
    }
    g.running = 0;
    if (g.pending_exc) {
        PyObject *exc = g.pending_exc;
        g.pending_exc = NULL;
        PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
        Py_DECREF(exc);
        return NULL;
    }
    if (rc < 0) {
        errno = saved_errno;
        return PyErr_SetFromErrno(PyExc_OSError);
    }
    Py_RETURN_NONE;
}

static PyObject *hs_py_request_stop(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    if (g.running)
        hs_server_request_stop(&g.server);
    else
        g.stop_early = 1;
    Py_RETURN_NONE;
}

static PyObject *hs_py_on_request_count(PyObject *self, PyObject *args)
{
    (void)self;
    unsigned long long count;
    PyObject *callback;
    if (!PyArg_ParseTuple(args, "KO:on_request_count", &count, &callback))
        return NULL;
    if (callback != Py_None && !PyCallable_Check(callback)) {
        PyErr_Format(PyExc_TypeError, "on_request_count() callback must be callable or None, not %.100s",
                     Py_TYPE(callback)->tp_name);
        return NULL;
    }
    Py_CLEAR(g.notify_cb);
    if (callback != Py_None) {
        Py_INCREF(callback);
        g.notify_cb = callback;
        g.notify_at = count;
    }
    Py_RETURN_NONE;
}

static PyObject *hs_py_stats(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    const hs_server *s = &g.server;
    return Py_BuildValue("{s:K,s:K,s:K,s:K,s:i,s:K,s:K,s:K,s:K}", "requests", (unsigned long long)s->stat_requests,
                         "static_responses", (unsigned long long)s->stat_static, "python_calls",
                         (unsigned long long)s->stat_python_calls, "connections",
                         (unsigned long long)s->stat_accepted, "open_connections", s->nconns, "errors",
                         (unsigned long long)s->stat_errors, "wakeups", (unsigned long long)s->stat_wakeups,
                         "writes", (unsigned long long)s->stat_writes, "write_waits",
                         (unsigned long long)s->stat_write_waits);
}

static PyObject *hs_py_access_log_stats(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return Py_BuildValue("{s:O,s:K,s:K,s:K}", "enabled", g.alog_path ? Py_True : Py_False, "lines",
                         (unsigned long long)g.alog.lines, "dropped", (unsigned long long)g.alog.dropped,
                         "write_errors", (unsigned long long)g.alog.write_errors);
}

static PyObject *hs_py_backend(PyObject *self, PyObject *unused)
{
    (void)self;
    (void)unused;
    return PyUnicode_FromString(hs_ev_backend());
}

static PyMethodDef hs_methods[] = {
    {"configure", (PyCFunction)(void (*)(void))hs_py_configure, METH_VARARGS | METH_KEYWORDS,
     "configure(handlers, takes_request, param_names, request_type, bad_request, json_encode, finalize, "
     "on_error, max_connections, max_body, keepalive_ms, recv_ms, drain_ms, access_log=None, access_log_ops=None, "
     "compression=None)"},
    {"serve", hs_py_serve, METH_O, "serve(listen_fd): run the loop until request_stop() and the drain end."},
    {"request_stop", hs_py_request_stop, METH_NOARGS, "Stop accepting, finish in-flight requests, return."},
    {"stats", hs_py_stats, METH_NOARGS, "Counters of the loop (requests, python_calls, connections, ...)."},
    {"on_request_count", hs_py_on_request_count, METH_VARARGS,
     "on_request_count(count, callback): call callback(requests) once, from the loop, after the wakeup in "
     "which the request counter reaches count (checked once per wakeup, not per request); None disarms."},
    {"access_log_stats", hs_py_access_log_stats, METH_NOARGS,
     "Access log counters of this process: enabled, lines, dropped, write_errors."},
    {"backend", hs_py_backend, METH_NOARGS, "The event backend compiled in."},
    {"stream_send", hs_py_stream_send, METH_VARARGS,
     "stream_send(fd, serial, data, end): queue framed bytes of a stream (end: 0 more, 1 last, 2 last and "
     "close); returns the bytes pending on its connection, or -1 when the stream is gone."},
    {"stream_abort", hs_py_stream_abort, METH_VARARGS,
     "stream_abort(fd, serial): close the stream's connection at once (the body stays incomplete)."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef hs_module = {
    PyModuleDef_HEAD_INIT, HS_MODULE_NAME_STR, "Hypersonic compiled app (generated routes + C server loop).", -1,
    hs_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC HS_PYINIT(void)
{
    PyObject *m = PyModule_Create(&hs_module);
    if (!m)
        return NULL;
    for (int i = 0; i < HS_M_COUNT; i++) {
        if (!g.method_names[i]) {
            g.method_names[i] = PyUnicode_InternFromString(hs_method_text[i]);
            if (!g.method_names[i])
                goto fail;
        }
    }
    if (!g.empty_str && !(g.empty_str = PyUnicode_FromStringAndSize(NULL, 0)))
        goto fail;
    if (!g.empty_bytes && !(g.empty_bytes = PyBytes_FromStringAndSize(NULL, 0)))
        goto fail;
    if (!g.empty_tuple && !(g.empty_tuple = PyTuple_New(0)))
        goto fail;
    if (!g.zero && !(g.zero = PyLong_FromLong(0)))
        goto fail;
    if (PyModule_AddIntConstant(m, "NUM_BAKED", HS_APP_NUM_BAKED) < 0 ||
        PyModule_AddIntConstant(m, "STREAM_HIGH_WATER", HS_STREAM_HIGH_WATER) < 0 ||
        PyModule_AddIntConstant(m, "STREAM_LOW_WATER", HS_STREAM_LOW_WATER) < 0)
        goto fail;
    return m;
fail:
    Py_DECREF(m);
    return NULL;
}
