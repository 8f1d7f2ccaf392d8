"""The access log: one line per request, the same for every backend.

    127.0.0.1 "GET /path?q=1 HTTP/1.1" 200 1234 0.8ms

(client, request line, status, Content-Length or bytes sent, time in the
server). Off by default (--access-log): a line per request costs.
"""
import logging
import time

logger = logging.getLogger("circus.worker.access")


def log_request(environ, status, size, millis):
    """Write the line of the request `environ` describes."""
    query = environ.get("QUERY_STRING")
    logger.info('%s "%s %s%s %s" %s %s %sms', environ.get("REMOTE_ADDR", "-"),
                environ.get("REQUEST_METHOD"), environ.get("PATH_INFO", ""),
                "?" + query if query else "", environ.get("SERVER_PROTOCOL"),
                status, size, "-" if millis is None else "%.1f" % millis)


def middleware(app):
    """The application, logging each request when the application returns
    (for the servers that have no access-log hook of their own)."""
    clock = time.perf_counter

    def logged(environ, start_response):
        started = clock()
        seen = []

        def recording_start_response(status, headers, exc_info=None):
            seen.append(status)
            seen.append(headers)
            return start_response(status, headers, exc_info)

        try:
            return app(environ, recording_start_response)
        finally:
            status = seen[-2].split(" ", 1)[0] if seen else "-"
            size = "-"
            for name, value in seen[-1] if seen else ():
                if name.lower() == "content-length":
                    size = value
            log_request(environ, status, size, (clock() - started) * 1000)
    return logged


class MeinheldAccessLog:
    """meinheld's hook: it calls access(environ) after each response, with
    the status, bytes sent and milliseconds in the environ."""

    def access(self, environ):
        if environ.get("REQUEST_METHOD") is None:
            return  # a connection closed without a request: nothing was served
        log_request(environ, environ.get("STATUS_CODE", "-"), environ.get("SEND_BYTES", "-"),
                    environ.get("REQUEST_TIME"))
