"""The application behind nginx: says which worker answered and what nginx
forwarded, so the recipe's test can tell the two upstreams apart."""
import json
import os


def application(environ, start_response):
    body = json.dumps({
        "pid": os.getpid(),
        "upstream": os.environ.get("UPSTREAM", "?"),
        "path": environ.get("PATH_INFO", ""),
        "forwarded_for": environ.get("HTTP_X_FORWARDED_FOR"),
        "host": environ.get("HTTP_HOST"),
    }).encode()
    start_response("200 OK", [("Content-Type", "application/json"),
                              ("Content-Length", str(len(body)))])
    return [body]
