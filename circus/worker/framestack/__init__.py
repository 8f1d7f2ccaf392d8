"""meinheld's frame-stack chunks, kept for reuse: the chunk cache.

meinheld runs every request in a new greenlet. On CPython 3.11 and later a
new greenlet starts with an empty frame stack: its first Python call gets a
chunk (16 KiB) from CPython's arena allocator, which maps it with mmap(),
and greenlet gives it back with munmap() when the request ends: an mmap, a
page fault and an munmap per request. The C extension ``_chunkcache`` sits
in front of the arena allocator and keeps a few freed chunks, so the chunk
of one request serves the next (see _chunkcache.c).

The extension is optional: pip builds it where a C compiler is (meinheld
needs one anyway). A meinheld worker runs in one of two modes, and logs
which one once, at start:

- ``chunk cache``: the extension is built and installed;
- ``none``: each greenlet maps its own chunk, slower, not broken. That is
  the mode without the extension, with CIRCUS_WORKER_CHUNK_CACHE=0 in the
  worker's environment, and on a free-threaded build (the cache's few
  slots rely on the GIL).
"""
import importlib
import importlib.util
import logging
import os
import sys
import sysconfig

__all__ = ["CACHE", "NONE", "EXTENSION", "built", "choose", "free_threaded", "prepare"]

CACHE = "chunk cache"
NONE = "none"
EXTENSION = __name__ + "._chunkcache"
# chunks kept: one per greenlet alive at once, plus a deep stack's
KEEP_CHUNKS = 4

logger = logging.getLogger("circus.worker")
_mode = None  # once prepared


def free_threaded():
    """True on a free-threaded build, or wherever the GIL is off."""
    if sysconfig.get_config_var("Py_GIL_DISABLED"):
        return True
    return not getattr(sys, "_is_gil_enabled", lambda: True)()


def built():
    """True when the extension was built; finds it without importing it."""
    return importlib.util.find_spec(EXTENSION) is not None


def choose():
    """(mode, why not the cache). Decided before the extension is imported:
    importing an extension on a free-threaded build turns the GIL back on."""
    if os.environ.get("CIRCUS_WORKER_CHUNK_CACHE") == "0":
        return NONE, "CIRCUS_WORKER_CHUNK_CACHE=0"
    if free_threaded():
        return NONE, "free-threaded build: the chunk cache relies on the GIL"
    if not built():
        return NONE, "%s is not built (no C compiler, or the build failed)" % EXTENSION
    return CACHE, None


def prepare():
    """Before meinheld serves: install the chunk cache when this worker can
    use it, and log the mode, once. Returns the mode."""
    global _mode
    if _mode is not None:
        return _mode
    mode, why = choose()
    if mode == CACHE:
        try:
            cache = importlib.import_module(EXTENSION)
        except ImportError as exc:
            mode, why = NONE, "%s: %s" % (EXTENSION, exc)
        else:
            cache.install(KEEP_CHUNKS)
            logger.info("frame stack: chunk cache (up to %d chunks of %d bytes kept "
                        "for reuse)", KEEP_CHUNKS, cache.CHUNK_SIZE)
    if mode == NONE:
        logger.info("frame stack: none (%s)", why)
    _mode = mode
    return mode
