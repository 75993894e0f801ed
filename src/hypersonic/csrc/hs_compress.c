/*
 * hs_compress.c - gzip for dynamic responses (app.compress(); the rules live in
 * hypersonic._compress, which hands this file everything precomputed).
 *
 * Must be included by hs_servermod.c after Python.h, hs_parser.c and
 * hs_accept.c. configure(compression=...) passes a tuple (see
 * Compression.native_config):
 *   (gzip, min_size, text_identity, text_gzip, json_identity, json_gzip, adjust)
 * gzip: bytes -> gzip member (zlib.compress at the configured level, wbits 31:
 * Python's zlib, so the JIT build needs no zlib headers or -lz, and both servers
 * produce the same bytes); *_identity / *_gzip: the field blocks of the fixed
 * text/plain and JSON results with Vary (and Content-Encoding) merged in, or
 * None when that content type is not compressible; adjust: (finalized tuple,
 * accepts: bool) -> finalized tuple, for Response and tuple results.
 * Compression off (compression=None) costs one NULL test per dynamic response.
 */
#include "hs_accept.h"

/* Index of blocks[] by result kind. */
#define HS_GZ_TEXT 0
#define HS_GZ_JSON 1
/* Result kinds with precomputed blocks, and blocks per kind (identity, gzip). */
#define HS_GZ_KINDS 2
#define HS_GZ_VARIANTS 2
#define HS_GZ_IDENTITY 0
#define HS_GZ_GZIP 1
/* The configure() tuple: gzip, min_size, the HS_GZ_KINDS x HS_GZ_VARIANTS blocks from item 2 on, adjust. */
#define HS_GZ_CONFIG_ITEMS 7
#define HS_GZ_FIRST_BLOCK_ITEM 2
#define HS_GZ_ADJUST_ITEM 6

typedef struct hs_gzip_cfg {
    PyObject *gzip;           /* NULL: compression off */
    Py_ssize_t min_size;      /* smaller bodies are sent as they are */
    PyObject *blocks[HS_GZ_KINDS][HS_GZ_VARIANTS]; /* [HS_GZ_TEXT / HS_GZ_JSON][identity, gzip]: bytes or NULL */
    PyObject *adjust;
} hs_gzip_cfg;

/* Drop every reference: compression off. */
HS_API void hs_gzip_clear(hs_gzip_cfg *cfg)
{
    Py_CLEAR(cfg->gzip);
    Py_CLEAR(cfg->adjust);
    for (int kind = 0; kind < HS_GZ_KINDS; kind++) {
        for (int variant = 0; variant < HS_GZ_VARIANTS; variant++)
            Py_CLEAR(cfg->blocks[kind][variant]);
    }
    cfg->min_size = 0;
}

/* A block item of the tuple: bytes (new reference in *out) or None (NULL). 0, or -1 with TypeError. */
HS_API int hs_gzip_block_item(PyObject *item, PyObject **out)
{
    if (item == Py_None) {
        *out = NULL;
        return 0;
    }
    if (!PyBytes_Check(item)) {
        PyErr_SetString(PyExc_TypeError, "compression: field blocks must be bytes or None");
        return -1;
    }
    Py_INCREF(item);
    *out = item;
    return 0;
}

/*
 * Install the compression settings from configure()'s `compression` argument
 * (None: off). 0, or -1 with a Python exception set (cfg unchanged).
 */
HS_API int hs_gzip_configure(hs_gzip_cfg *cfg, PyObject *spec)
{
    if (spec == NULL || spec == Py_None) {
        hs_gzip_clear(cfg);
        return 0;
    }
    if (!PyTuple_Check(spec) || PyTuple_GET_SIZE(spec) != HS_GZ_CONFIG_ITEMS) {
        PyErr_SetString(PyExc_TypeError, "compression must be None or a 7-tuple (Compression.native_config())");
        return -1;
    }
    PyObject *gzip = PyTuple_GET_ITEM(spec, 0);
    PyObject *adjust = PyTuple_GET_ITEM(spec, HS_GZ_ADJUST_ITEM);
    if (!PyCallable_Check(gzip) || !PyCallable_Check(adjust)) {
        PyErr_SetString(PyExc_TypeError, "compression: gzip and adjust must be callable");
        return -1;
    }
    Py_ssize_t min_size = PyLong_AsSsize_t(PyTuple_GET_ITEM(spec, 1));
    if (min_size == -1 && PyErr_Occurred())
        return -1;
    if (min_size < 0) {
        PyErr_SetString(PyExc_ValueError, "compression: min_size must be >= 0");
        return -1;
    }
    PyObject *blocks[HS_GZ_KINDS][HS_GZ_VARIANTS];
    for (int i = 0; i < HS_GZ_KINDS * HS_GZ_VARIANTS; i++) {
        PyObject *item = PyTuple_GET_ITEM(spec, HS_GZ_FIRST_BLOCK_ITEM + i);
        if (hs_gzip_block_item(item, &blocks[i / HS_GZ_VARIANTS][i % HS_GZ_VARIANTS]) < 0) {
            for (int j = 0; j < i; j++)
                Py_XDECREF(blocks[j / HS_GZ_VARIANTS][j % HS_GZ_VARIANTS]);
            return -1;
        }
    }
    hs_gzip_clear(cfg);
    Py_INCREF(gzip);
    Py_INCREF(adjust);
    cfg->gzip = gzip;
    cfg->adjust = adjust;
    cfg->min_size = min_size;
    memcpy(cfg->blocks, blocks, sizeof blocks);
    return 0;
}

/*
 * The str/bytes/dict/list fast path: for a result of kind HS_GZ_TEXT or
 * HS_GZ_JSON whose body is body[0..*body_len), pick the field block (identity
 * with Vary, or gzip) and, when gzip is chosen, replace the body with the
 * compressed bytes, returned as a new reference in *owner (the caller releases
 * it after queueing; NULL when the body is unchanged). Leaves *block untouched
 * when the type is not compressible. 0, or -1 with a Python exception set.
 */
HS_API int hs_gzip_fast(const hs_gzip_cfg *cfg, int kind, const hs_request *r, const char **block,
                        size_t *block_len, const char **body, Py_ssize_t *body_len, PyObject **owner)
{
    *owner = NULL;
    PyObject *identity = cfg->blocks[kind][HS_GZ_IDENTITY];
    if (identity == NULL)
        return 0;
    PyObject *chosen = identity;
    if (*body_len >= cfg->min_size && hs_accept_gzip(r)) {
        PyObject *plain = PyBytes_FromStringAndSize(*body, *body_len);
        if (!plain)
            return -1;
        PyObject *compressed = PyObject_CallOneArg(cfg->gzip, plain);
        Py_DECREF(plain);
        if (!compressed)
            return -1;
        if (!PyBytes_Check(compressed)) {
            Py_DECREF(compressed);
            PyErr_SetString(PyExc_TypeError, "compression: gzip() must return bytes");
            return -1;
        }
        if (PyBytes_GET_SIZE(compressed) < *body_len) {
            chosen = cfg->blocks[kind][HS_GZ_GZIP];
            *body = PyBytes_AS_STRING(compressed);
            *body_len = PyBytes_GET_SIZE(compressed);
            *owner = compressed;
        } else {
            Py_DECREF(compressed); /* gzip would not shrink it: identity */
        }
    }
    *block = PyBytes_AS_STRING(chosen);
    *block_len = (size_t)PyBytes_GET_SIZE(chosen);
    return 0;
}

/*
 * The Response/tuple path: adjust(finalized, accepts) for a finalize() result
 * (a new reference), or NULL with a Python exception set. The request's
 * Accept-Encoding is read here, in C.
 */
HS_API PyObject *hs_gzip_adjust(const hs_gzip_cfg *cfg, PyObject *finalized, const hs_request *r)
{
    PyObject *args[2] = {finalized, hs_accept_gzip(r) ? Py_True : Py_False};
    return PyObject_Vectorcall(cfg->adjust, args, 2, NULL);
}
