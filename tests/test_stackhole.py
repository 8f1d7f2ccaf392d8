"""The exact-fit hole for CPython's per-greenlet frame-stack chunk
(circus/sockets/stackhole.py). Each check runs in a fresh interpreter: the
hole changes the address space of the process that makes it."""
import json
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux") or sys.version_info < (3, 11),
                                reason="frame-stack chunks from mmap: CPython 3.11+ on Linux")

PRELUDE = """
import ctypes, json, mmap
from circus.sockets.stackhole import StackHole
libc = ctypes.CDLL(None)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]

def chunk_lands_at():
    # what CPython's arena allocator does for a frame-stack chunk
    p = libc.mmap(None, 16384, mmap.PROT_READ | mmap.PROT_WRITE,
                  mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    libc.munmap(p, 16384)
    return p

def mapping_at(address):
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            if start <= address < end:
                return [start, end, fields[1]]
    return None
"""


def run(script):
    out = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(script)],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_a_chunk_sized_mapping_lands_in_the_hole():
    result = run("""
        hole = StackHole.create()
        print(json.dumps({"hole": hole.address, "size": hole.size,
                          "lands": [chunk_lands_at() for _ in range(3)],
                          "below": mapping_at(hole.address - 1),
                          "above": mapping_at(hole.address + hole.size),
                          "inside": mapping_at(hole.address)}))
    """)
    hole = result["hole"]
    assert result["size"] == 16384
    assert result["lands"] == [hole] * 3
    # a gap of exactly one chunk, between guards the chunk cannot merge with
    assert result["inside"] is None
    assert result["below"][1] == hole and result["below"][2] == "---p"
    assert result["above"][0] == hole + 16384 and result["above"][2] == "---p"


def test_a_new_greenlets_frame_stack_is_the_mapping_in_the_hole():
    pytest.importorskip("greenlet")
    result = run("""
        import greenlet
        hole = StackHole.create()

        def request():
            return mapping_at(hole.address)

        during = greenlet.greenlet(request).switch()
        print(json.dumps({"hole": hole.address, "during": during,
                          "after": mapping_at(hole.address)}))
    """)
    hole = result["hole"]
    assert result["during"] == [hole, hole + 16384, "rw-p"]
    assert result["after"] is None


def test_keep_fills_a_gap_that_opened_above_the_hole():
    result = run("""
        hole = StackHole.create()
        # open a gap above the hole: the upper guard goes away, and the hole
        # becomes two chunks wide, so a chunk would take its upper half
        libc.munmap(hole.address + hole.size, hole.size)
        drifted = chunk_lands_at()
        kept = hole.keep()
        print(json.dumps({"hole": hole.address, "drifted": drifted, "kept": kept,
                          "lands": chunk_lands_at(), "again": hole.keep()}))
    """)
    hole = result["hole"]
    assert result["drifted"] == hole + 16384
    assert result["kept"] is True
    assert result["lands"] == hole
    assert result["again"] is True


def test_keep_leaves_a_hole_in_use_alone():
    result = run("""
        hole = StackHole.create()
        p = libc.mmap(None, 16384, mmap.PROT_READ | mmap.PROT_WRITE,
                      mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
        before = open("/proc/self/maps").read().count("\\n")
        kept = hole.keep()
        after = open("/proc/self/maps").read().count("\\n")
        print(json.dumps({"hole": hole.address, "p": p, "kept": kept,
                          "added": after - before}))
    """)
    assert result["p"] == result["hole"]
    assert result["kept"] is False
    # nothing below the hole was filled
    assert result["added"] == 0


def test_the_chunk_cache_gives_a_finished_greenlets_chunk_to_the_next():
    pytest.importorskip("greenlet")
    result = run("""
        import greenlet
        from circus.sockets import _chunkcache
        from circus.sockets.stackhole import CHUNK
        _chunkcache.install(CHUNK, 4)

        def request():
            return sum(range(10))

        for _ in range(100):
            greenlet.greenlet(request).switch()
        try:
            _chunkcache.install(CHUNK, 4)
            again = "installed twice"
        except RuntimeError as exc:
            again = str(exc)
        print(json.dumps({"stats": _chunkcache.stats(), "again": again}))
    """)
    assert result["stats"] == {"reused": 99, "allocated": 1, "kept": 1}
    assert result["again"] == "the chunk cache is already installed"
