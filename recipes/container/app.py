"""The application of the container recipe: any WSGI callable would do.

GET /slow?seconds=N answers after N seconds (at most 10): send the
container SIGTERM meanwhile and the request still completes, since the
worker drains what it has accepted before it exits.
"""
import os
import time
from urllib.parse import parse_qs


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/slow":
        query = parse_qs(environ.get("QUERY_STRING", ""))
        time.sleep(min(float(query.get("seconds", ["1"])[0]), 10.0))
    body = ("Hello from worker %d\n" % os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
