"""Sleeps before answering, to keep a request in flight while a test stops
the worker. The delay is the query string in seconds (default 1).

If SLOW_APP_STARTED names a file, the app appends a line to it when a
request starts, so a test can wait for "request is being processed" instead
of guessing with a sleep."""
import os
import time


def application(environ, start_response):
    started = os.environ.get("SLOW_APP_STARTED")
    if started:
        with open(started, "a") as f:
            f.write("%d\n" % os.getpid())
    delay = float(environ.get("QUERY_STRING") or 1)
    time.sleep(delay)
    body = ("pid=%d slept=%s\n" % (os.getpid(), delay)).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
