"""An exact-fit hole in the address space for CPython's frame-stack chunks.

meinheld runs every request in a new greenlet. On CPython 3.11 and later a
new greenlet starts with an empty frame stack: its first Python call gets a
16 KB chunk from mmap(), and greenlet gives it back with munmap() when the
request ends. Linux places a new mapping at the top of the highest gap in
the address space that fits it, so every request maps and unmaps 16 KB at
the same address.

What that pair costs the kernel depends on the gap. When the chunk fills
it exactly, mmap and munmap each change one entry of the process's VMA
tree in place. When the gap is larger, each mmap splits the gap's entry in
two and each munmap merges them back; the maple tree then copies and
rebalances nodes and frees the old ones through RCU, both times. Measured
on a hello-world app: about 2 us more per request, 4% of the worker's CPU.
Which case a process gets is luck of its layout (gunicorn's meinheld
worker had an exact 16 KB gap at the top; ours had not).

So the meinheld backend makes the hole before it serves: it maps three
chunks' worth of inaccessible address space, unmaps the middle one, and
fills every higher gap that a chunk would take first. The fillers and the
guards around the hole are PROT_NONE and MAP_NORESERVE: address space, no
memory. Their protection differs from the chunk's, so the kernel never
merges the chunk with them.

A gap can open above the hole later (a Python arena freed up there): keep()
fills it again. meinheld's watchdog calls it once a second; when nothing
changed it costs one mmap and one munmap.

Linux and CPython 3.11+ only; wherever it cannot be done nothing changes.

Better still, when circus's C extension circus/sockets/_chunkcache is built
(it is optional), the worker keeps the freed chunk instead and the next
request's greenlet reuses it: no mmap, page fault or munmap per request at
all. prepare() picks that, and makes the hole only without it (or with
CIRCUS_WORKER_CHUNK_CACHE=0 in the worker's environment).
"""
import ctypes
import mmap
import os
import sys

__all__ = ["StackHole", "prepare"]

CHUNK = 16 * 1024  # CPython's _PY_DATA_STACK_CHUNK_SIZE since 3.11
PROT_NONE = 0
MAP_NORESERVE = 0x4000
# fillers per call: a freed 1 MiB arena above the hole takes 64
FILL_LIMIT = 128
# chunks kept for reuse: one per greenlet alive at once, plus a deep stack's
KEEP_CHUNKS = 4


def prepare(idle_callback):
    """Before meinheld serves: keep the chunks for reuse, or else make the
    hole. Returns what meinheld's watchdog should call once a second; that
    also runs idle_callback."""
    if sys.version_info < (3, 11):
        return idle_callback
    try:
        from circus.sockets import _chunkcache
    except ImportError:
        _chunkcache = None
    if os.environ.get("CIRCUS_WORKER_CHUNK_CACHE") == "0":
        _chunkcache = None
    if not getattr(sys, "_is_gil_enabled", lambda: True)():
        _chunkcache = None  # it relies on the GIL to guard its few slots
    if _chunkcache is not None:
        _chunkcache.install(CHUNK, KEEP_CHUNKS)
        return idle_callback
    hole = StackHole.create()
    if hole is None:
        return idle_callback

    def watchdog():
        hole.keep()
        idle_callback()
    return watchdog


class StackHole:
    def __init__(self, libc, size, address):
        self._libc = libc
        self.size = size
        self.address = address

    @classmethod
    def create(cls):
        """Make the hole and return it, or None where it cannot be made."""
        if not sys.platform.startswith("linux") or sys.version_info < (3, 11):
            return None
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.mmap.restype = ctypes.c_void_p
            libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                                  ctypes.c_int, ctypes.c_int, ctypes.c_long]
            libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        except (OSError, AttributeError):
            return None
        size = -(-CHUNK // mmap.PAGESIZE) * mmap.PAGESIZE
        hole = cls(libc, size, None)
        region = hole._reserve(3 * size)
        if region is None:
            return None
        hole.address = region + size
        libc.munmap(hole.address, size)
        if hole.keep():
            return hole
        # not the top-down layout this is for: give the address space back
        libc.munmap(region, 3 * size)
        return None

    def keep(self):
        """Fill the gaps a chunk would take before the hole. True when the
        next chunk-sized mapping lands in the hole."""
        for _ in range(FILL_LIMIT):
            probe = self._reserve(self.size)
            if probe is None:
                return False
            if probe == self.address:
                self._libc.munmap(probe, self.size)
                return True
            if probe < self.address:
                # the hole is in use (a chunk right now), nothing above to fill
                self._libc.munmap(probe, self.size)
                return False
            # a higher gap: a chunk would land there first, leave it filled
        return False

    def _reserve(self, size):
        address = self._libc.mmap(None, size, PROT_NONE,
                                  mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        if address is None or address == ctypes.c_void_p(-1).value:
            return None
        return address
