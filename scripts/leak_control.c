/*
 * leak_control.c - the positive control of scripts/leak_check.py: a tiny JIT
 * module that leaks on purpose, so a leak check run proves its pipeline
 * (sanitizer build, preloaded runtime, stack unwinding through CPython, the
 * filter on `_hs_` frames) really finds a leak in a JIT module before anyone
 * trusts it to report "clean". Built by scripts/leak_app.py only when
 * HYPERSONIC_LEAK_CONTROL=1; never part of the package.
 *
 * leak_malloc(n): malloc(n) bytes and drop the pointer (a missing free).
 * leak_reference(): create a bytes object and drop the reference without
 *   Py_DECREF (a missing DECREF: with PYTHONMALLOC=malloc it is an
 *   unreachable malloc block allocated under this module's frame).
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdlib.h>
#include <string.h>

#include "hs_pymodule.h"

/* Fill byte, so the leaked block is not all zeros. */
#define LEAK_CONTROL_FILL 0x5a
/* Largest block leak_malloc will leak. */
#define LEAK_CONTROL_MAX (1 << 20)

static void *volatile leak_control_sink;

static PyObject *leak_malloc(PyObject *self, PyObject *arg) {
    (void)self;
    long n = PyLong_AsLong(arg);
    if (n == -1 && PyErr_Occurred()) return NULL;
    if (n < 1 || n > LEAK_CONTROL_MAX) {
        PyErr_SetString(PyExc_ValueError, "leak_malloc: n must be 1..1048576");
        return NULL;
    }
    void *block = malloc((size_t)n);
    if (block == NULL) return PyErr_NoMemory();
    memset(block, LEAK_CONTROL_FILL, (size_t)n);
    leak_control_sink = block;  /* keeps the compiler from eliding malloc */
    leak_control_sink = NULL;   /* ... and now nothing points at it */
    Py_RETURN_NONE;
}

static PyObject *leak_reference(PyObject *self, PyObject *unused) {
    (void)self;
    (void)unused;
    PyObject *leaked = PyBytes_FromString("leaked on purpose by leak_control.c");
    if (leaked == NULL) return NULL;
    /* no Py_DECREF(leaked): the reference is lost */
    Py_RETURN_NONE;
}

static PyMethodDef leak_control_methods[] = {
    {"leak_malloc", leak_malloc, METH_O, "malloc(n) and drop the pointer."},
    {"leak_reference", leak_reference, METH_NOARGS, "Create a bytes object and drop the reference."},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef leak_control_module = {
    PyModuleDef_HEAD_INIT, HS_MODULE_NAME_STR, "Deliberate leaks (leak check positive control).", -1,
    leak_control_methods, NULL, NULL, NULL, NULL,
};

PyMODINIT_FUNC HS_PYINIT(void) { return PyModule_Create(&leak_control_module); }
