"""The frame-stack chunk cache (circus/worker/framestack). Each check runs in
a fresh interpreter: installing the cache changes the arena allocator of the
process that installs it, for good."""
import json
import mmap
import os
import subprocess
import sys
import textwrap

import pytest

from circus.worker import framestack
from support import ROOT
from support.framestack import NOT_BUILT, c_compiler, needs_chunk_cache

SOURCE = os.path.join(ROOT, "circus", "worker", "framestack", "_chunkcache.c")

# The arena allocator as C sees it, called through ctypes with the GIL held
# (PYFUNCTYPE), as CPython calls it.
ALLOCATOR = """
import ctypes, json, mmap, sys
from circus.worker.framestack import _chunkcache as cache
CHUNK = cache.CHUNK_SIZE
ALLOC = ctypes.PYFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)
FREE = ctypes.PYFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t)

class ArenaAllocator(ctypes.Structure):
    _fields_ = [("ctx", ctypes.c_void_p), ("alloc", ALLOC), ("free", FREE)]

def installed_allocator():
    allocator = ArenaAllocator()
    ctypes.pythonapi.PyObject_GetArenaAllocator(ctypes.byref(allocator))
    return allocator

def mapping_at(address):
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if start <= address < end:
                return fields[1]
    return None
"""


def run(script, env=None):
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT,
                         capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, **(env or {})))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.splitlines()[-1])


# -- the build -----------------------------------------------------------------------

@pytest.mark.skipif(framestack.free_threaded(),
                    reason="free-threaded build: the worker runs without the chunk cache")
def test_the_extension_is_built_wherever_a_c_compiler_is():
    # The extension is optional so that pip install works without a
    # compiler, and its tests skip then. Where the compiler is, it must
    # have been built: this is the check that it still builds.
    if c_compiler() is None:
        pytest.skip("no C compiler with Python's headers: the extension cannot be built here")
    assert framestack.built(), (
        "%s; yet %s is here: rerun pip install -e . and read the compiler's errors"
        % (NOT_BUILT, c_compiler()))


def test_the_extension_refuses_to_load_on_a_free_threaded_build(tmp_path):
    # Built as a free-threaded build would build it (3.11's headers ignore
    # the macro, the module does not), then imported here.
    if c_compiler() is None:
        pytest.skip("no C compiler with Python's headers to build the probe")
    build = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        import sys
        from setuptools import Extension, setup
        setup(name="probe", script_args=["-q", "build_ext", "--build-lib", sys.argv[1],
                                         "--build-temp", sys.argv[2]],
              ext_modules=[Extension("_chunkcache", [sys.argv[3]],
                                     define_macros=[("Py_GIL_DISABLED", "1")])])
        """), str(tmp_path / "lib"), str(tmp_path / "tmp"), SOURCE],
        capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stderr
    result = run("""
        import json, sys
        sys.path.insert(0, %r)
        try:
            import _chunkcache
            print(json.dumps("loaded"))
        except ImportError as exc:
            print(json.dumps(str(exc)))
    """ % str(tmp_path / "lib"))
    assert result == "the chunk cache relies on the GIL: not on a free-threaded build"


# -- choosing the mode ----------------------------------------------------------------

@pytest.mark.parametrize("simulate", ["build", "gil-off"])
def test_a_free_threaded_build_never_imports_the_extension(simulate):
    # Importing an extension on a free-threaded build turns the GIL back on:
    # the guard must decide before any import.
    result = run("""
        import json, logging, sys, sysconfig
        if %r == "build":
            real = sysconfig.get_config_var
            sysconfig.get_config_var = lambda name: 1 if name == "Py_GIL_DISABLED" else real(name)
        else:
            sys._is_gil_enabled = lambda: False
        lines = []
        handler = logging.Handler()
        handler.emit = lambda record: lines.append(record.getMessage())
        logging.getLogger("circus.worker").addHandler(handler)
        logging.getLogger("circus.worker").setLevel(logging.INFO)
        from circus.worker import framestack
        mode = framestack.prepare()
        print(json.dumps({"mode": mode, "lines": lines,
                          "imported": framestack.EXTENSION in sys.modules}))
    """ % simulate)
    assert result == {"mode": "none", "imported": False, "lines": [
        "frame stack: none (free-threaded build: the chunk cache relies on the GIL)"]}


@pytest.mark.parametrize("env, expected", [
    ({"CIRCUS_WORKER_CHUNK_CACHE": "0"}, ["none", "CIRCUS_WORKER_CHUNK_CACHE=0"]),
    ({"CIRCUS_WORKER_CHUNK_CACHE": "1"}, ["chunk cache", None]),
    ({}, ["chunk cache", None]),
])
def test_the_mode_is_chosen_and_logged_once(env, expected):
    if expected[0] == "chunk cache" and not framestack.built():
        pytest.skip(NOT_BUILT)
    result = run("""
        import json, logging, sys
        lines = []
        handler = logging.Handler()
        handler.emit = lambda record: lines.append(record.getMessage())
        logging.getLogger("circus.worker").addHandler(handler)
        logging.getLogger("circus.worker").setLevel(logging.INFO)
        from circus.worker import framestack
        modes = [framestack.prepare(), framestack.prepare()]
        print(json.dumps({"choice": framestack.choose(), "modes": modes, "lines": lines,
                          "imported": framestack.EXTENSION in sys.modules}))
    """, env=dict({"CIRCUS_WORKER_CHUNK_CACHE": ""}, **env))
    mode, why = expected
    assert result["choice"] == expected
    assert result["modes"] == [mode, mode]
    assert result["imported"] is (mode == "chunk cache")
    if mode == "none":
        assert result["lines"] == ["frame stack: none (%s)" % why]
    else:
        assert result["lines"] == ["frame stack: chunk cache (up to 4 chunks of 16384 bytes "
                                   "kept for reuse)"]


# -- the cache ------------------------------------------------------------------------

@needs_chunk_cache
@pytest.mark.needs("greenlet")
def test_the_chunk_cache_gives_a_finished_greenlets_chunk_to_the_next():
    result = run("""
        import greenlet, json
        from circus.worker.framestack import _chunkcache
        _chunkcache.install(4)

        def request():
            return sum(range(10))

        for _ in range(100):
            greenlet.greenlet(request).switch()
        try:
            _chunkcache.install(4)
            again = "installed twice"
        except RuntimeError as exc:
            again = str(exc)
        print(json.dumps({"stats": _chunkcache.stats(), "again": again}))
    """)
    assert result["stats"] == {"reused": 99, "allocated": 1, "kept": 1, "refused": 0}
    assert result["again"] == "the chunk cache is already installed"


@needs_chunk_cache
def test_a_chunk_freed_twice_goes_to_one_greenlet_only():
    result = run(ALLOCATOR + """
cache.install(16)
arena = installed_allocator()
p, q = arena.alloc(arena.ctx, CHUNK), arena.alloc(arena.ctx, CHUNK)
arena.free(arena.ctx, q, CHUNK)
arena.free(arena.ctx, p, CHUNK)
arena.free(arena.ctx, p, CHUNK)  # the double free
after_free = cache.stats()
first = arena.alloc(arena.ctx, CHUNK)
second = arena.alloc(arena.ctx, CHUNK)
third = arena.alloc(arena.ctx, CHUNK)
print(json.dumps({"p": p, "q": q, "after_free": after_free,
                  "handed": [first, second, third], "mapped": mapping_at(p)}))
""")
    p, q = result["p"], result["q"]
    assert p != q
    assert result["after_free"]["kept"] == 2 and result["after_free"]["refused"] == 1
    # kept once: p to one caller, then the chunk kept before it, then a new one
    first, second, third = result["handed"]
    assert (first, second) == (p, q)
    assert third not in (p, q)
    assert result["mapped"] == "rw-p"  # the refused free did not unmap it either


@needs_chunk_cache
def test_kept_chunks_stay_mapped_and_the_others_go_back_to_the_allocator():
    page = mmap.PAGESIZE
    result = run(ALLOCATOR + """
cache.install(1)
arena = installed_allocator()
p, q = arena.alloc(arena.ctx, CHUNK), arena.alloc(arena.ctx, CHUNK)
arena.free(arena.ctx, p, CHUNK)  # kept
arena.free(arena.ctx, q, CHUNK)  # the cache is full: unmapped
length = -(-CHUNK // mmap.PAGESIZE) * mmap.PAGESIZE  # what mmap maps for CHUNK bytes
print(json.dumps({"chunk": CHUNK, "length": length, "stats": cache.stats(),
                  "kept": [mapping_at(p), mapping_at(p + length - 1)],
                  "returned": [mapping_at(q), mapping_at(q + length - 1)]}))
""")
    assert result["length"] % page == 0 and result["length"] >= result["chunk"]
    assert result["stats"]["kept"] == 1
    assert result["kept"] == ["rw-p", "rw-p"]
    assert result["returned"] == [None, None]
