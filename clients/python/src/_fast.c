/*
 * shmreg._fast - the lookups of shmreg.Region as a CPython extension type.
 *
 * No protocol code lives here: every read is a call of libshmreg.so's
 * copying functions (examples/c/libshmreg.h; include/shmreg.h compiled),
 * the same library and the same handle the ctypes side of the package opened.
 * The extension is not linked against the library. Region hands it, once,
 * the handle and the addresses of shmreg_reader_get_copy and
 * shmreg_reader_scan_copy in the libshmreg.so that ctypes loaded (bundled,
 * SHMREG_LIB or the checkout's), and it calls them as C functions of the
 * header's own prototypes. So there is one libshmreg.so in the process, and
 * a handle is never passed to a copy of the code that did not create it.
 * What the extension saves is the ctypes foreign call (libffi and argument
 * conversion) and the Python wrapper around it.
 *
 * The GIL is held through each call: a lookup is one short read section
 * inside the library (well under a microsecond; a superseded file reopened
 * or an evicted section retried inside the same call), a scan chunk copies
 * about 64 KiB. Holding it is what makes a Reader safe to share between
 * threads without a lock of its own (its copy buffer, its handle), and what
 * makes Region.close() safe: close() detaches the handle here, holding the
 * GIL, before it gives the handle to shmreg_reader_close(), so no call of
 * this file can be running on it or start on it afterwards.
 *
 * Values come back as new bytes objects (copies); keys are bytes, str
 * (UTF-8), bytearray or memoryview. Errors are made by the Python side
 * (region._fast_error) so that they are the same classes with the same
 * messages as on the ctypes path.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#include <errno.h>
#include <stdint.h>
#include <string.h>

#include "libshmreg.h"

#if !defined(__GNUC__) && !defined(__clang__)
#error "shmreg._fast needs GCC or clang (__typeof__)"
#endif

/* The function types exactly as libshmreg.h declares them. Taking the type
 * of a declaration makes no reference to the symbol: nothing is linked. */
typedef __typeof__(shmreg_reader_get_copy) get_copy_fn;
typedef __typeof__(shmreg_reader_scan_copy) scan_copy_fn;

#define GET_BUF 4096

/* Made by region._fast_error(region, rc, what): rc None means closed. */
static PyObject *error_factory;

typedef struct {
    PyObject_HEAD
    shmreg_reader *h;       /* NULL: not bound yet, or detached by close() */
    get_copy_fn *get_copy;
    scan_copy_fn *scan_copy;
    char *buf;              /* the lookup buffer, grown to the largest value met */
    size_t cap;
} Reader;

/* Sets the exception for rc (or for a closed Region if rc is 0), made by
 * the Python side. Always returns NULL. */
static PyObject *raise_error(Reader *self, int rc, PyObject *what)
{
    PyObject *exc;

    if (error_factory == NULL) {
        PyErr_Format(PyExc_SystemError, "shmreg._fast: no error factory set (libshmreg code %d)", rc);
        return NULL;
    }
    if (rc == 0)
        exc = PyObject_CallFunction(error_factory, "OOO", (PyObject *)self, Py_None, what ? what : Py_None);
    else
        exc = PyObject_CallFunction(error_factory, "OiO", (PyObject *)self, rc, what ? what : Py_None);
    if (exc == NULL)
        return NULL;
    PyErr_SetObject((PyObject *)Py_TYPE(exc), exc);
    Py_DECREF(exc);
    return NULL;
}

/* The bytes of a key or prefix: *tmp is a new reference to hold (or NULL)
 * while *p is used. -1 with TypeError for any other type. */
static int key_bytes(PyObject *key, const char *what, const char **p, Py_ssize_t *n, PyObject **tmp)
{
    *tmp = NULL;
    if (PyBytes_Check(key)) {
        *p = PyBytes_AS_STRING(key);
        *n = PyBytes_GET_SIZE(key);
        return 0;
    }
    if (PyUnicode_Check(key)) {
        *p = PyUnicode_AsUTF8AndSize(key, n);
        return *p == NULL ? -1 : 0;
    }
    if (PyByteArray_Check(key) || PyMemoryView_Check(key)) {
        if ((*tmp = PyBytes_FromObject(key)) == NULL)
            return -1;
        *p = PyBytes_AS_STRING(*tmp);
        *n = PyBytes_GET_SIZE(*tmp);
        return 0;
    }
    PyErr_Format(PyExc_TypeError, "%s must be str or bytes, not %.200s", what, Py_TYPE(key)->tp_name);
    return -1;
}

/* The value of key as a new bytes object (if !value: Py_True, for `in`);
 * NULL with no exception set if absent; NULL with an exception on error. */
static PyObject *lookup(Reader *self, PyObject *key, int value)
{
    const char *k;
    Py_ssize_t klen;
    PyObject *tmp, *out = NULL;
    size_t vlen = 0;
    int rc;

    if (key_bytes(key, "key", &k, &klen, &tmp) < 0)
        return NULL;
    if (self->h == NULL) {
        Py_XDECREF(tmp);
        return raise_error(self, 0, NULL);
    }
    for (;;) {
        rc = self->get_copy(self->h, k, (size_t)klen, self->buf, self->cap, &vlen);
        if (rc == 0) {
            if (value) {
                out = PyBytes_FromStringAndSize(self->buf, (Py_ssize_t)vlen);
            } else {
                out = Py_True;
                Py_INCREF(out);
            }
            break;
        }
        if (rc == SHMREG_READER_ENOTFOUND)
            break;
        if (rc == -ERANGE) { /* grow to the value's size and read again */
            size_t cap = vlen > 2 * self->cap ? vlen : 2 * self->cap;
            char *nb = PyMem_Realloc(self->buf, cap);
            if (nb == NULL) {
                PyErr_NoMemory();
                break;
            }
            self->buf = nb;
            self->cap = cap;
            continue;
        }
        {
            PyObject *what = PyUnicode_FromFormat("get %R", key);
            if (what != NULL) {
                raise_error(self, rc, what);
                Py_DECREF(what);
            }
        }
        break;
    }
    Py_XDECREF(tmp);
    return out;
}

/* Region.get(key, default=None) */
static PyObject *Reader_get(Reader *self, PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *v;

    if (nargs < 1 || nargs > 2) {
        PyErr_Format(PyExc_TypeError, "get expected 1 or 2 arguments, got %zd", nargs);
        return NULL;
    }
    v = lookup(self, args[0], 1);
    if (v != NULL || PyErr_Occurred())
        return v;
    v = nargs > 1 ? args[1] : Py_None;
    Py_INCREF(v);
    return v;
}

/* region[key] */
static PyObject *Reader_subscript(Reader *self, PyObject *key)
{
    PyObject *v = lookup(self, key, 1);

    if (v == NULL && !PyErr_Occurred())
        PyErr_SetObject(PyExc_KeyError, key);
    return v;
}

/* key in region */
static int Reader_contains(Reader *self, PyObject *key)
{
    PyObject *v = lookup(self, key, 0);

    if (v == NULL)
        return PyErr_Occurred() ? -1 : 0;
    Py_DECREF(v);
    return 1;
}

/* _bind(handle, get_copy_address, scan_copy_address) */
static PyObject *Reader_bind(Reader *self, PyObject *args)
{
    unsigned long long h, g, s;

    if (!PyArg_ParseTuple(args, "KKK:_bind", &h, &g, &s))
        return NULL;
    if (h == 0 || g == 0 || s == 0) {
        PyErr_SetString(PyExc_ValueError, "_bind: a NULL handle or function");
        return NULL;
    }
    if (self->buf == NULL) {
        if ((self->buf = PyMem_Malloc(GET_BUF)) == NULL)
            return PyErr_NoMemory();
        self->cap = GET_BUF;
    }
    self->get_copy = (get_copy_fn *)(uintptr_t)g;
    self->scan_copy = (scan_copy_fn *)(uintptr_t)s;
    self->h = (shmreg_reader *)(uintptr_t)h;
    Py_RETURN_NONE;
}

/* _detach(): no call of this object uses the handle from now on. */
static PyObject *Reader_detach(Reader *self, PyObject *Py_UNUSED(ignored))
{
    self->h = NULL;
    Py_RETURN_NONE;
}

/* _scan(prefix, after, cap) -> (rc, entries, used): one call of
 * shmreg_reader_scan_copy into a buffer of cap bytes. rc 0 (the end) or 1
 * (more after entries[-1][0]) with entries a list of (key, value) bytes;
 * -ERANGE with used = the bytes the first entry needs; another negative rc
 * with entries None (the caller raises). RegionClosed if detached. */
static PyObject *Reader_scan(Reader *self, PyObject *args)
{
    PyObject *prefix, *after, *ptmp = NULL, *atmp = NULL, *list = NULL, *out = NULL;
    const char *p, *a = NULL;
    Py_ssize_t plen, alen = 0, cap;
    unsigned char *buf = NULL;
    size_t used = 0, count = 0, at = 0;
    int rc;

    if (!PyArg_ParseTuple(args, "OOn:_scan", &prefix, &after, &cap))
        return NULL;
    if (cap < 64) {
        PyErr_Format(PyExc_ValueError, "chunk_size %zd is too small", cap);
        return NULL;
    }
    if (key_bytes(prefix, "prefix", &p, &plen, &ptmp) < 0)
        return NULL;
    if (after != Py_None && key_bytes(after, "after", &a, &alen, &atmp) < 0)
        goto done;
    if (self->h == NULL) {
        raise_error(self, 0, NULL);
        goto done;
    }
    /* A buffer of this call's own: building the tuples below may run a
     * collection and a finalizer, even one that scans this Region again. */
    if ((buf = PyMem_Malloc((size_t)cap)) == NULL) {
        PyErr_NoMemory();
        goto done;
    }
    rc = self->scan_copy(self->h, p, (size_t)plen, a, (size_t)alen, buf, (size_t)cap, &used, &count);
    if (rc < 0) {
        out = Py_BuildValue("(iOn)", rc, Py_None, (Py_ssize_t)(rc == -ERANGE ? used : 0));
        goto done;
    }
    if (used > (size_t)cap || (list = PyList_New((Py_ssize_t)count)) == NULL) {
        if (!PyErr_Occurred())
            raise_error(self, SHMREG_READER_ECORRUPT, NULL);
        goto done;
    }
    for (size_t i = 0; i < count; i++) {
        uint32_t lens[2];
        PyObject *k, *v, *kv;

        if (used - at < 8)
            goto corrupt;
        memcpy(lens, buf + at, 8);
        at += 8;
        if (used - at < (size_t)lens[0] || used - at - lens[0] < (size_t)lens[1])
            goto corrupt;
        k = PyBytes_FromStringAndSize((const char *)buf + at, lens[0]);
        v = k ? PyBytes_FromStringAndSize((const char *)buf + at + lens[0], lens[1]) : NULL;
        kv = v ? PyTuple_Pack(2, k, v) : NULL;
        Py_XDECREF(k);
        Py_XDECREF(v);
        if (kv == NULL)
            goto done;
        PyList_SET_ITEM(list, (Py_ssize_t)i, kv);
        at += (size_t)lens[0] + lens[1];
    }
    out = Py_BuildValue("(iOn)", rc, list, (Py_ssize_t)used);
    goto done;
corrupt:
    raise_error(self, SHMREG_READER_ECORRUPT, NULL);
done:
    PyMem_Free(buf);
    Py_XDECREF(list);
    Py_XDECREF(ptmp);
    Py_XDECREF(atmp);
    return out;
}

static void Reader_dealloc(Reader *self)
{
    /* The handle is Region's to close (close() or __del__): only our buffer. */
    PyMem_Free(self->buf);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static PyMethodDef Reader_methods[] = {
    {"get", (PyCFunction)(void (*)(void))Reader_get, METH_FASTCALL,
     "get(key, default=None): the value of key (str or bytes) as bytes, or default if absent."},
    {"_bind", (PyCFunction)Reader_bind, METH_VARARGS, "_bind(handle, get_copy, scan_copy): addresses as ints."},
    {"_detach", (PyCFunction)Reader_detach, METH_NOARGS, "_detach(): forget the handle (close() calls it first)."},
    {"_scan", (PyCFunction)Reader_scan, METH_VARARGS, "_scan(prefix, after, cap) -> (rc, entries, used)."},
    {NULL, NULL, 0, NULL},
};

static PyMappingMethods Reader_as_mapping = {
    .mp_subscript = (binaryfunc)Reader_subscript,
};

static PySequenceMethods Reader_as_sequence = {
    .sq_contains = (objobjproc)Reader_contains,
};

static PyTypeObject ReaderType = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "shmreg._fast.Reader",
    .tp_doc = "The lookups of shmreg.Region, calling libshmreg.so without ctypes (a base class of Region).",
    .tp_basicsize = sizeof(Reader),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_new = PyType_GenericNew,
    .tp_dealloc = (destructor)Reader_dealloc,
    .tp_methods = Reader_methods,
    .tp_as_mapping = &Reader_as_mapping,
    .tp_as_sequence = &Reader_as_sequence,
};

static PyObject *set_error_factory(PyObject *Py_UNUSED(module), PyObject *fn)
{
    if (!PyCallable_Check(fn)) {
        PyErr_SetString(PyExc_TypeError, "_set_error_factory: not callable");
        return NULL;
    }
    Py_INCREF(fn);
    Py_XSETREF(error_factory, fn);
    Py_RETURN_NONE;
}

static PyMethodDef module_methods[] = {
    {"_set_error_factory", set_error_factory, METH_O, "_set_error_factory(fn(region, rc, what) -> exception)"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {
    PyModuleDef_HEAD_INIT,
    .m_name = "shmreg._fast",
    .m_doc = "shmreg.Region's lookups in C, through the libshmreg.so that the package loaded.",
    .m_size = -1,
    .m_methods = module_methods,
};

PyMODINIT_FUNC PyInit__fast(void)
{
    PyObject *m;

    if (PyType_Ready(&ReaderType) < 0)
        return NULL;
    if ((m = PyModule_Create(&module)) == NULL)
        return NULL;
    Py_INCREF(&ReaderType);
    if (PyModule_AddObject(m, "Reader", (PyObject *)&ReaderType) < 0) {
        Py_DECREF(&ReaderType);
        Py_DECREF(m);
        return NULL;
    }
    return m;
}
