"""The small WSGI toolkit the console needs: a request, a response, the
security headers every response carries, errors as responses."""
import html
import json
import os
import urllib.parse
from http import HTTPStatus
from http.cookies import CookieError, SimpleCookie

from circus.web.settings import is_loopback

MAX_BODY = 64 * 1024

# no inline script, no framing, nothing loaded from elsewhere
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = [
    ("Content-Security-Policy", CSP),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    # no-referrer would make browsers send "Origin: null" on our own form posts
    ("Referrer-Policy", "same-origin"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
    ("Cross-Origin-Resource-Policy", "same-origin"),
    ("Permissions-Policy", "camera=(), microphone=(), geolocation=()"),
]


class HTTPError(Exception):
    def __init__(self, status, message=None, headers=()):
        super().__init__(message)
        self.status = int(status)
        self.message = message or HTTPStatus(self.status).phrase
        self.headers = list(headers)


def status_line(code):
    return "%d %s" % (code, HTTPStatus(code).phrase)


class Request:
    """One request; trusted proxies' X-Forwarded-* decide scheme, host and
    client address when settings.trust_forwarded lists the peer."""

    def __init__(self, environ, settings):
        self.environ = environ
        self.method = environ.get("REQUEST_METHOD", "GET").upper()
        self.script_name = environ.get("SCRIPT_NAME", "").rstrip("/")
        self.path = environ.get("PATH_INFO", "") or "/"
        self.query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""),
                                           keep_blank_values=True)
        self.peer = environ.get("REMOTE_ADDR", "")
        forwarded = self.peer in settings.trust_forwarded
        self.scheme = environ.get("wsgi.url_scheme", "http")
        self.host = environ.get("HTTP_HOST") or "%s:%s" % (environ.get("SERVER_NAME", ""),
                                                             environ.get("SERVER_PORT", ""))
        self.client = self.peer
        if forwarded:
            proto = _last(environ.get("HTTP_X_FORWARDED_PROTO"))
            if proto in ("http", "https"):
                self.scheme = proto
            host = _last(environ.get("HTTP_X_FORWARDED_HOST"))
            if host:
                self.host = host
            client = _last(environ.get("HTTP_X_FORWARDED_FOR"))
            if client:
                self.client = client
        self.secure = self.scheme == "https"
        self._form = None
        self._body = None
        self._cookies = None

    @property
    def origin(self):
        return "%s://%s" % (self.scheme, self.host)

    def header(self, name):
        return self.environ.get("HTTP_" + name.upper().replace("-", "_"))

    def arg(self, name, default=None):
        values = self.query.get(name)
        return values[0] if values else default

    @property
    def cookies(self):
        if self._cookies is None:
            jar = SimpleCookie()
            try:
                jar.load(self.environ.get("HTTP_COOKIE", ""))
            except CookieError:
                pass
            self._cookies = {k: m.value for k, m in jar.items()}
        return self._cookies

    def body(self):
        if self._body is None:
            try:
                length = int(self.environ.get("CONTENT_LENGTH") or 0)
            except ValueError:
                raise HTTPError(400, "bad Content-Length") from None
            if length > MAX_BODY:
                raise HTTPError(413)
            self._body = self.environ["wsgi.input"].read(length) if length > 0 else b""
        return self._body

    @property
    def content_type(self):
        return (self.environ.get("CONTENT_TYPE") or "").split(";")[0].strip().lower()

    @property
    def form(self):
        if self._form is None:
            if self.content_type == "application/json":
                try:
                    data = json.loads(self.body() or b"{}")
                except ValueError:
                    raise HTTPError(400, "the body is not valid JSON") from None
                if not isinstance(data, dict):
                    raise HTTPError(400, "the body must be a JSON object")
                self._form = data
            else:
                parsed = urllib.parse.parse_qs(self.body().decode("utf-8", "replace"),
                                               keep_blank_values=True)
                self._form = {k: v[0] for k, v in parsed.items()}
        return self._form

    def wants_json(self):
        accept = self.environ.get("HTTP_ACCEPT", "")
        return "application/json" in accept and "text/html" not in accept

    def from_loopback(self):
        return is_loopback(self.client)


def _last(value):
    """The hop our own proxy added: the last of a comma-separated header."""
    if not value:
        return None
    return value.split(",")[-1].strip() or None


class Response:
    def __init__(self, body=b"", status=200, content_type="text/html; charset=utf-8",
                 headers=()):
        if isinstance(body, str):
            body = body.encode("utf-8")
        self.body = body
        self.status = status
        self.headers = [("Content-Type", content_type)] + list(headers)

    def set_cookie(self, name, value, path, secure, max_age=None):
        parts = ["%s=%s" % (name, value), "Path=%s" % (path or "/"), "HttpOnly",
                 "SameSite=Strict"]
        if secure:
            parts.append("Secure")
        if max_age is not None:
            parts.append("Max-Age=%d" % max_age)
        self.headers.append(("Set-Cookie", "; ".join(parts)))

    def delete_cookie(self, name, path, secure):
        self.set_cookie(name, "", path, secure, max_age=0)

    def __call__(self, environ, start_response):
        headers = self.headers + SECURITY_HEADERS
        if not any(k.lower() == "cache-control" for k, _ in headers):
            headers.append(("Cache-Control", "no-store"))
        if isinstance(self.body, bytes):
            headers.append(("Content-Length", str(len(self.body))))
            start_response(status_line(self.status), headers)
            return [self.body] if environ.get("REQUEST_METHOD") != "HEAD" else []
        start_response(status_line(self.status), headers)
        return self.body


def json_response(data, status=200, headers=()):
    return Response(json.dumps(data, separators=(",", ":")), status,
                    "application/json", headers)


def redirect(location, status=303, headers=()):
    return Response(b"", status, "text/plain", [("Location", location)] + list(headers))


def plain_error(status, message):
    body = "<!doctype html><title>%d</title><p>%s</p>" % (status, html.escape(message))
    return Response(body, status)


STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".svg": "image/svg+xml", ".png": "image/png", ".txt": "text/plain; charset=utf-8"}
# the files under static/, read once: nothing outside that list is served
_STATIC = {}


def static_file(name):
    if not _STATIC:
        for entry in os.listdir(STATIC_DIR):
            ext = os.path.splitext(entry)[1]
            if ext in _TYPES:
                with open(os.path.join(STATIC_DIR, entry), "rb") as handle:
                    _STATIC[entry] = (handle.read(), _TYPES[ext])
    found = _STATIC.get(name)
    if found is None:
        raise HTTPError(404)
    body, content_type = found
    return Response(body, 200, content_type,
                    [("Cache-Control", "public, max-age=86400")])
