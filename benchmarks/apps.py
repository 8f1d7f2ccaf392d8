"""The WSGI applications every server in the benchmark runs.

hello:  a fixed 13-byte body; measures the server, not the application.
work:   a little CPU work (a chain of SHA-256 hashes) then a 10 KB body;
        closer to an application that renders something.

Both are plain WSGI callables, importable as ``apps:hello`` / ``apps.hello``
with this directory on the Python path.
"""
import hashlib

HELLO = b"Hello, world!"
WORK_ROUNDS = 2000
WORK_BODY_SIZE = 10 * 1024


def hello(environ, start_response):
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(HELLO)))])
    return [HELLO]


def _work_body():
    digest = b"circus"
    for _ in range(WORK_ROUNDS):
        digest = hashlib.sha256(digest).digest()
    line = digest.hex().encode("ascii") + b"\n"  # 65 bytes
    body = line * (WORK_BODY_SIZE // len(line) + 1)
    return body[:WORK_BODY_SIZE]


def work(environ, start_response):
    body = _work_body()
    start_response("200 OK", [("Content-Type", "text/plain"),
                              ("Content-Length", str(len(body)))])
    return [body]


# the same body, computed once, for the nginx ceiling of the "work" app
def work_body_for_static():
    return _work_body()
