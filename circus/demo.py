"""The WSGI application the default configuration serves."""
import os


def application(environ, start_response):
    body = b"Hello from circus worker %d\n" % os.getpid()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]
