/*
 * hs_filefast_py.c - configure()'s "static_files" argument into the C table
 * of hs_filefast.c (contract of the table: hs_filefast.h).
 *
 * Must be included by hs_servermod.c after Python.h and hs_filefast.c. The
 * value is built by hypersonic._filefast.native_entries(): None, or a tuple of
 *   (path: bytes, handler: int, file: bytes, size: int, mtime_ns: int, ino: int, reps)
 * where reps is a tuple of one (identity) or two (identity, gzip)
 *   (ok: bytes, ok_head_len: int, ok_date_off: int, nm: bytes, nm_head_len: int, nm_date_off: int, etag: bytes).
 */

/* Fields of one entry and of one representation in the tuples above. */
#define HS_FF_PY_ENTRY_FIELDS 7
#define HS_FF_PY_REP_FIELDS 7

/* The table the next serve() uses (NULL: none). Replaced by each configure(). */
static hs_ff_table *hs_ff_py_table;

/* One baked response from (bytes, head_len, date_off) at items[0..3). 0, or -1 with TypeError/ValueError. */
static int hs_ff_py_baked(PyObject *const *items, hs_baked *out)
{
    if (!PyBytes_Check(items[0]) || !PyLong_Check(items[1]) || !PyLong_Check(items[2])) {
        PyErr_SetString(PyExc_TypeError, "static_files: a response must be (bytes, int, int)");
        return -1;
    }
    Py_ssize_t len = PyBytes_GET_SIZE(items[0]);
    long head_len = PyLong_AsLong(items[1]);
    long date_off = PyLong_AsLong(items[2]);
    if (PyErr_Occurred())
        return -1;
    if (len > (Py_ssize_t)UINT32_MAX || head_len < 0 || head_len + 2 > len || date_off < 0 ||
        date_off + HS_DATE_LEN > head_len) {
        PyErr_SetString(PyExc_ValueError, "static_files: response offsets out of range");
        return -1;
    }
    out->data = PyBytes_AS_STRING(items[0]);
    out->len = (uint32_t)len;
    out->head_len = (uint32_t)head_len;
    out->date_off = (uint32_t)date_off;
    return 0;
}

/* Fill entry i of t from one tuple. 0, or -1 with an exception set. */
static int hs_ff_py_entry(hs_ff_table *t, uint32_t i, PyObject *item, Py_ssize_t nhandlers)
{
    if (!PyTuple_Check(item) || PyTuple_GET_SIZE(item) != HS_FF_PY_ENTRY_FIELDS ||
        !PyBytes_Check(PyTuple_GET_ITEM(item, 0)) || !PyBytes_Check(PyTuple_GET_ITEM(item, 2)) ||
        !PyTuple_Check(PyTuple_GET_ITEM(item, 6))) {
        PyErr_SetString(PyExc_TypeError, "static_files: an entry must be (bytes, int, bytes, int, int, int, tuple)");
        return -1;
    }
    PyObject *path = PyTuple_GET_ITEM(item, 0), *file = PyTuple_GET_ITEM(item, 2), *reps = PyTuple_GET_ITEM(item, 6);
    long handler = PyLong_AsLong(PyTuple_GET_ITEM(item, 1));
    long long size = PyLong_AsLongLong(PyTuple_GET_ITEM(item, 3));
    long long mtime_ns = PyLong_AsLongLong(PyTuple_GET_ITEM(item, 4));
    unsigned long long ino = PyLong_AsUnsignedLongLong(PyTuple_GET_ITEM(item, 5));
    if (PyErr_Occurred())
        return -1;
    Py_ssize_t nreps = PyTuple_GET_SIZE(reps);
    if (handler < 0 || handler >= nhandlers || nreps < 1 || nreps > HS_FF_REPS ||
        strlen(PyBytes_AS_STRING(file)) != (size_t)PyBytes_GET_SIZE(file)) {
        PyErr_SetString(PyExc_ValueError, "static_files: bad handler index, representation count or file path");
        return -1;
    }
    hs_ff_rep parsed[HS_FF_REPS];
    for (Py_ssize_t k = 0; k < nreps; k++) {
        PyObject *rep = PyTuple_GET_ITEM(reps, k);
        if (!PyTuple_Check(rep) || PyTuple_GET_SIZE(rep) != HS_FF_PY_REP_FIELDS ||
            !PyBytes_Check(PyTuple_GET_ITEM(rep, HS_FF_PY_REP_FIELDS - 1))) {
            PyErr_SetString(PyExc_TypeError, "static_files: a representation must be 7 items ending in bytes");
            return -1;
        }
        PyObject *items[HS_FF_PY_REP_FIELDS];
        for (int f = 0; f < HS_FF_PY_REP_FIELDS; f++)
            items[f] = PyTuple_GET_ITEM(rep, f);
        if (hs_ff_py_baked(items, &parsed[k].ok) < 0 || hs_ff_py_baked(items + 3, &parsed[k].not_modified) < 0)
            return -1;
        parsed[k].etag = PyBytes_AS_STRING(items[6]);
        parsed[k].etag_len = (uint32_t)PyBytes_GET_SIZE(items[6]);
    }
    if (hs_ff_table_set(t, i, PyBytes_AS_STRING(path), (size_t)PyBytes_GET_SIZE(path), (int)handler,
                        PyBytes_AS_STRING(file), (int64_t)size, (int64_t)mtime_ns, (uint64_t)ino, parsed,
                        (int)nreps) < 0) {
        PyErr_Format(PyExc_ValueError, "static_files: duplicate path %R (or out of memory)", path);
        return -1;
    }
    return 0;
}

/*
 * configure(static_files=...): build the table from files (None: no table) for an app
 * with nhandlers handlers into *out. 0, or -1 with an exception set (*out untouched).
 */
static int hs_ff_py_build(PyObject *files, Py_ssize_t nhandlers, hs_ff_table **out)
{
    hs_ff_table *t = NULL;
    if (files != Py_None) {
        if (!PyTuple_Check(files) || PyTuple_GET_SIZE(files) > INT32_MAX) {
            PyErr_SetString(PyExc_TypeError, "static_files must be None or a tuple of entries");
            return -1;
        }
        uint32_t n = (uint32_t)PyTuple_GET_SIZE(files);
        t = hs_ff_table_new(n);
        if (!t) {
            PyErr_NoMemory();
            return -1;
        }
        for (uint32_t i = 0; i < n; i++) {
            if (hs_ff_py_entry(t, i, PyTuple_GET_ITEM(files, i), nhandlers) < 0) {
                hs_ff_table_free(t);
                return -1;
            }
        }
    }
    *out = t;
    return 0;
}

/* Make t (from hs_ff_py_build, may be NULL) the table of the next serve(); the previous one is freed. */
static void hs_ff_py_install(hs_ff_table *t)
{
    hs_ff_table_free(hs_ff_py_table);
    hs_ff_py_table = t;
}
