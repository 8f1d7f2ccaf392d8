/* A few freed frame-stack chunks kept for reuse, in front of CPython's arena
 * allocator (see circus/sockets/stackhole.py).
 *
 * meinheld runs each request in a new greenlet, and on CPython 3.11+ each new
 * greenlet maps a fresh frame-stack chunk and unmaps it when it ends: an
 * mmap, a page fault and an munmap per request. Kept here, the chunk of one
 * request serves the next.
 *
 * Every block still comes from the allocator that was in place before
 * install(), and every block this cache does not keep goes back to it: so it
 * can be installed at any time, blocks allocated before included. Called
 * with the GIL held, as every arena allocator is. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define MAX_KEPT 16

static PyObjectArenaAllocator underlying;
static size_t chunk_size;
static int keep_at_most;
static void *kept[MAX_KEPT];
static int nkept;
static unsigned long long reused, allocated;
static int installed;

static void *
chunkcache_alloc(void *ctx, size_t size)
{
    if (size == chunk_size) {
        if (nkept > 0) {
            reused++;
            return kept[--nkept];
        }
        allocated++;
    }
    return underlying.alloc(underlying.ctx, size);
}

static void
chunkcache_free(void *ctx, void *ptr, size_t size)
{
    if (size == chunk_size && nkept < keep_at_most) {
        kept[nkept++] = ptr;
        return;
    }
    underlying.free(underlying.ctx, ptr, size);
}

static PyObject *
chunkcache_install(PyObject *module, PyObject *args)
{
    Py_ssize_t size;
    int keep;
    PyObjectArenaAllocator mine = {NULL, chunkcache_alloc, chunkcache_free};

    if (!PyArg_ParseTuple(args, "ni:install", &size, &keep))
        return NULL;
    if (installed) {
        PyErr_SetString(PyExc_RuntimeError, "the chunk cache is already installed");
        return NULL;
    }
    if (size <= 0 || keep < 1 || keep > MAX_KEPT) {
        PyErr_Format(PyExc_ValueError, "need a size > 0 and 1 <= keep <= %d", MAX_KEPT);
        return NULL;
    }
    PyObject_GetArenaAllocator(&underlying);
    chunk_size = (size_t)size;
    keep_at_most = keep;
    PyObject_SetArenaAllocator(&mine);
    installed = 1;
    Py_RETURN_NONE;
}

static PyObject *
chunkcache_stats(PyObject *module, PyObject *unused)
{
    return Py_BuildValue("{s:K,s:K,s:i}", "reused", reused, "allocated", allocated,
                         "kept", nkept);
}

static PyMethodDef chunkcache_methods[] = {
    {"install", chunkcache_install, METH_VARARGS,
     "install(size, keep): keep up to `keep` freed arena blocks of exactly `size` bytes "
     "for reuse."},
    {"stats", chunkcache_stats, METH_NOARGS,
     "stats() -> {'reused': n, 'allocated': n, 'kept': n} for blocks of that size."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef chunkcache_module = {
    PyModuleDef_HEAD_INIT, "_chunkcache",
    "Freed frame-stack chunks kept for reuse (see circus/sockets/stackhole.py).",
    -1, chunkcache_methods
};

PyMODINIT_FUNC
PyInit__chunkcache(void)
{
    return PyModule_Create(&chunkcache_module);
}
