"""Answers every request with the serving process's pid, so tests can tell
which of several workers sharing one socket answered."""
import os


def application(environ, start_response):
    body = ("pid=%d path=%s\n" % (os.getpid(), environ.get("PATH_INFO", ""))).encode()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


def broken(environ, start_response):
    raise RuntimeError("boom")
