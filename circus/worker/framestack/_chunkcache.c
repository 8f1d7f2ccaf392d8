/* A few freed frame-stack chunks kept for reuse, in front of CPython's arena
 * allocator (see circus/worker/framestack/__init__.py).
 *
 * meinheld runs each request in a new greenlet, and on CPython 3.11+ each new
 * greenlet maps a fresh frame-stack chunk and unmaps it when it ends: an
 * mmap, a page fault and an munmap per request. Kept here, the chunk of one
 * request serves the next.
 *
 * Every block still comes from the allocator that was in place before
 * install(), and every block this cache does not keep goes back to it: so it
 * can be installed at any time, blocks allocated before included. Called
 * with the GIL held, as every arena allocator is: the GIL is the only guard
 * of the slots below, so the module refuses to load on a free-threaded
 * build. */
#define PY_SSIZE_T_CLEAN
#include <Python.h>

#ifdef Py_GIL_DISABLED

PyMODINIT_FUNC
PyInit__chunkcache(void)
{
    PyErr_SetString(PyExc_ImportError,
                    "the chunk cache relies on the GIL: not on a free-threaded build");
    return NULL;
}

#else

#ifdef _PY_DATA_STACK_CHUNK_SIZE
/* 3.12+: Include/cpython/pystate.h */
#define CHUNK_SIZE _PY_DATA_STACK_CHUNK_SIZE
#else
/* 3.11 keeps it private (DATA_STACK_CHUNK_SIZE in Python/pystate.c) */
#define CHUNK_SIZE (16 * 1024)
#endif

#define MAX_KEPT 16

static PyObjectArenaAllocator underlying;
static int keep_at_most;
static void *kept[MAX_KEPT];
static int nkept;
static unsigned long long reused, allocated, refused;
static int installed;

static void *
chunkcache_alloc(void *ctx, size_t size)
{
    if (size == CHUNK_SIZE) {
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
    if (size == CHUNK_SIZE) {
        for (int i = 0; i < nkept; i++) {
            if (kept[i] == ptr) {
                /* freed twice. Kept twice, it would go to two greenlets;
                 * handed to the allocator, it would be unmapped while still
                 * kept. The one copy kept stays, the second free is dropped. */
                refused++;
                return;
            }
        }
        if (nkept < keep_at_most) {
            kept[nkept++] = ptr;
            return;
        }
    }
    underlying.free(underlying.ctx, ptr, size);
}

static PyObject *
chunkcache_install(PyObject *module, PyObject *args)
{
    int keep;
    PyObjectArenaAllocator mine = {NULL, chunkcache_alloc, chunkcache_free};

    if (!PyArg_ParseTuple(args, "i:install", &keep))
        return NULL;
    if (installed) {
        PyErr_SetString(PyExc_RuntimeError, "the chunk cache is already installed");
        return NULL;
    }
    if (keep < 1 || keep > MAX_KEPT) {
        PyErr_Format(PyExc_ValueError, "need 1 <= keep <= %d", MAX_KEPT);
        return NULL;
    }
    PyObject_GetArenaAllocator(&underlying);
    keep_at_most = keep;
    PyObject_SetArenaAllocator(&mine);
    installed = 1;
    Py_RETURN_NONE;
}

static PyObject *
chunkcache_stats(PyObject *module, PyObject *unused)
{
    return Py_BuildValue("{s:K,s:K,s:i,s:K}", "reused", reused, "allocated", allocated,
                         "kept", nkept, "refused", refused);
}

static PyMethodDef chunkcache_methods[] = {
    {"install", chunkcache_install, METH_VARARGS,
     "install(keep): keep up to `keep` freed frame-stack chunks (CHUNK_SIZE bytes) "
     "for reuse."},
    {"stats", chunkcache_stats, METH_NOARGS,
     "stats() -> {'reused': n, 'allocated': n, 'kept': n, 'refused': n} for "
     "blocks of CHUNK_SIZE bytes; refused counts the frees of a block already kept."},
    {NULL, NULL, 0, NULL}
};

static struct PyModuleDef chunkcache_module = {
    PyModuleDef_HEAD_INIT, "_chunkcache",
    "Freed frame-stack chunks kept for reuse (see circus/worker/framestack).",
    -1, chunkcache_methods
};

PyMODINIT_FUNC
PyInit__chunkcache(void)
{
    PyObject *module = PyModule_Create(&chunkcache_module);

    if (module != NULL && PyModule_AddIntConstant(module, "CHUNK_SIZE", CHUNK_SIZE) < 0)
        Py_CLEAR(module);
    return module;
}

#endif /* Py_GIL_DISABLED */
