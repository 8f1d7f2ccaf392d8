"""Reports, from inside a request, where the request greenlet's frame stack
came from (see circus/worker/framestack): "reused=N" when the chunk cache is
installed (N chunks reused so far), "none" when it is not."""
import sys


def application(environ, start_response):
    cache = sys.modules.get("circus.worker.framestack._chunkcache")
    stats = cache.stats() if cache is not None else None
    if stats and stats["reused"] + stats["allocated"]:
        body = ("reused=%d" % stats["reused"]).encode()
    else:
        body = b"none"
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
