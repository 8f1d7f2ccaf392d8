"""Reports, from inside a request, where the request greenlet's frame stack
came from (see circus/sockets/stackhole.py): "reused=N" when the chunk cache
is installed (N chunks reused so far), else "in-hole" when the chunk is a
16 KB read-write anonymous mapping with an inaccessible anonymous guard right
below and right above it, else "elsewhere"."""
import sys


def anonymous_mappings():
    with open("/proc/self/maps") as f:
        for line in f:
            fields = line.split()
            start, end = (int(x, 16) for x in fields[0].split("-"))
            anonymous = len(fields) == 5 and fields[4] == "0"
            yield start, end, fields[1], anonymous


def chunk_in_hole(size=16 * 1024):
    maps = list(anonymous_mappings())
    for below, chunk, above in zip(maps, maps[1:], maps[2:]):
        if (chunk[1] - chunk[0] == size and chunk[2] == "rw-p" and chunk[3]
                and below[1] == chunk[0] and below[2] == "---p" and below[3]
                and above[0] == chunk[1] and above[2] == "---p" and above[3]):
            return True
    return False


def where():
    cache = sys.modules.get("circus.sockets._chunkcache")
    stats = cache.stats() if cache is not None else None
    if stats and stats["reused"] + stats["allocated"]:
        return "reused=%d" % stats["reused"]
    return "in-hole" if chunk_in_hole() else "elsewhere"


def application(environ, start_response):
    body = where().encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
