"""Streams its body in chunks: the query string says how many MiB (default
24, more than waitress buffers before it makes the application wait for the
client to read)."""

CHUNK = b"x" * (1 << 20)


def application(environ, start_response):
    mib = int(environ.get("QUERY_STRING") or 24)
    start_response("200 OK", [("Content-Type", "application/octet-stream"),
                              ("Content-Length", str(mib * len(CHUNK)))])
    return (CHUNK for _ in range(mib))
