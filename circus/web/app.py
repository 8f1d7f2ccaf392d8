"""The console as a WSGI application.

    from circus.web.app import make_app
    application = make_app(endpoints=["tcp://127.0.0.1:5555"], auth_file="users.htpasswd")

or, configured by CIRCUSHTTPD_* environment variables (see
circus.web.settings), ``circus.web.app:application``: that is what a
watcher serving the console with circus-worker names::

    [watcher:webconsole]
    cmd = circus-worker --fd $(circus.sockets.webconsole) --threads 32 circus.web.app:application
    use_sockets = True
    singleton = True

Every request passes the same gate (Console.gate): the Host check of an
unauthenticated console, who is asking (session cookie, or HTTP basic
auth on /api/), and for anything that changes state, a POST with the
session's CSRF token and a same-origin Origin / Sec-Fetch-Site; then the
role the route needs.
"""
import base64
import logging
import re
import secrets
import threading

from circus.web import api, pages, sse
from circus.web.hub import Hub
from circus.web.sessions import FailureLimiter, SessionManager
from circus.web.settings import Settings, is_loopback
from circus.web.users import ADMIN, VIEWER, Users, role_allows
from circus.web.wsgi import HTTPError, Request, plain_error, redirect, static_file

logger = logging.getLogger("circus.web")

MEINHELD_REFUSAL = (
    "circushttpd does not run on meinheld: one open live-update stream (Server-Sent "
    "Events) stalls a whole meinheld worker, and meinheld.server.sleep() is broken with "
    "greenlet 3. Serve it with waitress (circushttpd, or circus-worker --backend waitress "
    "--threads 32).")

# (method, pattern, handler, role needed; None: no login needed)
ROUTES = [
    ("GET", r"/", pages.home, VIEWER),
    ("GET", r"/static/(?P<name>[A-Za-z0-9_.-]+)", None, None),
    ("GET", r"/login", pages.login_form, None),
    ("POST", r"/login", pages.login, None),
    ("POST", r"/logout", pages.logout, VIEWER),
    ("GET", r"/connect", pages.connect_page, VIEWER),
    ("POST", r"/connect", pages.connect, ADMIN),
    ("POST", r"/e/(?P<eid>\w+)/disconnect", pages.disconnect, ADMIN),
    ("GET", r"/e/(?P<eid>\w+)/", pages.overview, VIEWER),
    ("GET", r"/e/(?P<eid>\w+)/watcher", pages.watcher_page, VIEWER),
    ("GET", r"/e/(?P<eid>\w+)/confirm", pages.confirm_page, VIEWER),
    ("GET", r"/e/(?P<eid>\w+)/sockets", pages.sockets_page, VIEWER),
    ("GET", r"/e/(?P<eid>\w+)/events", pages.events_page, VIEWER),
    ("GET", r"/e/(?P<eid>\w+)/add", pages.add_form, VIEWER),
    ("POST", r"/e/(?P<eid>\w+)/action", pages.action, VIEWER),
    ("GET", r"/e/(?P<eid>\w+)/stream", sse.stream, VIEWER),
    ("GET", r"/api/whoami", api.whoami, VIEWER),
    ("GET", r"/api/endpoints", api.endpoints, VIEWER),
    ("POST", r"/api/endpoints", api.add_endpoint, ADMIN),
    ("GET", r"/api/e/(?P<eid>\w+)/watchers", api.watchers, VIEWER),
    ("GET", r"/api/e/(?P<eid>\w+)/watcher", api.watcher, VIEWER),
    ("GET", r"/api/e/(?P<eid>\w+)/sockets", api.sockets, VIEWER),
    ("GET", r"/api/e/(?P<eid>\w+)/events", api.events, VIEWER),
    ("GET", r"/api/e/(?P<eid>\w+)/output", api.output, VIEWER),
    ("POST", r"/api/e/(?P<eid>\w+)/action", api.action, VIEWER),
]
_COMPILED = [(m, re.compile(p + "$"), h, r) for m, p, h, r in ROUTES]


class Identity:
    __slots__ = ("user", "role", "addr", "session", "csrf", "via_basic", "logs")

    def __init__(self, user, role, addr, session=None, csrf=None, via_basic=False,
                 logs=False):
        self.user = user
        self.role = role
        self.addr = addr
        self.session = session
        self.csrf = csrf
        self.via_basic = via_basic
        self.logs = logs  # sees what the processes write (--logs-role)

    def can(self, role):
        return role_allows(self.role, role)

    def audit(self):
        return {"user": self.user, "role": self.role, "addr": self.addr}


class StreamSlots:
    """At most `limit` live streams at once: each holds a server thread."""

    def __init__(self, limit):
        self.limit = limit
        self.count = 0
        self._lock = threading.Lock()

    def acquire(self):
        with self._lock:
            if self.count >= self.limit:
                return False
            self.count += 1
            return True

    def release(self):
        with self._lock:
            self.count -= 1


class Console:
    def __init__(self, settings, connect=True):
        self.settings = settings
        self.users = Users.load(settings.auth_file, settings.users)
        self.sessions = SessionManager(settings.signing_secret(), settings.session_hours * 3600)
        self.limiter = FailureLimiter()
        self.hub = Hub(settings)
        self.streams = StreamSlots(settings.max_streams)
        self.closing = threading.Event()  # ends the live streams
        self.static_version = secrets.token_hex(4)
        self.templates = pages.environment()
        if connect:
            for index, endpoint in enumerate(settings.endpoints):
                first = index == 0
                self.hub.add(endpoint, settings.pubsub if first else None,
                             settings.stats_endpoint if first else None)

    def close(self):
        self.closing.set()
        self.hub.close()

    @property
    def anonymous(self):
        return not self.users

    def __call__(self, environ, start_response):
        request = None
        try:
            request = Request(environ, self.settings)
            response = self.handle(request)
        except HTTPError as exc:
            response = pages.error_page(self, request, exc)
        except Exception:
            reference = secrets.token_hex(4)
            logger.exception("error %s on %s %s", reference, environ.get("REQUEST_METHOD"),
                             environ.get("PATH_INFO"))
            response = plain_error(500, "Internal error (reference %s); the console's log "
                                        "has the details." % reference)
        return response(environ, start_response)

    def base(self, request):
        """The URL path of the console's root, without the trailing slash."""
        return request.script_name + self.settings.url_prefix

    def url(self, request, path):
        return self.base(request) + path

    def handle(self, request):
        if _on_meinheld(request.environ):
            return plain_error(503, MEINHELD_REFUSAL)
        if self.anonymous:
            self.check_host(request)
        path = request.path
        prefix = self.settings.url_prefix
        if prefix:
            if path in ("", "/") and not request.script_name:
                return redirect(prefix + "/")
            if path == prefix:
                return redirect(self.url(request, "/"))
            if not path.startswith(prefix + "/"):
                raise HTTPError(404)
            path = path[len(prefix):]
        allowed = []
        for method, pattern, handler, role in _COMPILED:
            match = pattern.match(path)
            if match is None:
                continue
            if request.method not in (method, "HEAD" if method == "GET" else method):
                allowed.append(method)
                continue
            if handler is None:
                return static_file(match.group("name"))
            return self.dispatch(request, handler, role, match.groupdict())
        if allowed:
            raise HTTPError(405, headers=[("Allow", ", ".join(sorted(set(allowed))))])
        raise HTTPError(404)

    def dispatch(self, request, handler, role, params):
        is_api = request.path.startswith(self.settings.url_prefix + "/api/")
        identity = self.identify(request, is_api)
        if role is not None and identity is None:
            if is_api:
                raise HTTPError(401, "authentication required",
                                [("WWW-Authenticate", 'Basic realm="circushttpd"')])
            return redirect(self.url(request, "/login"))
        if request.method == "POST" and handler is not pages.login:
            self.check_post(request, identity, is_api)
        if role is not None and not identity.can(role):
            self.refuse(request, identity, "needs the %s role" % role)
        return handler(self, request, identity, **params)

    # --- the gate -----------------------------------------------------------
    def check_host(self, request):
        """Without authentication, only this machine's own names: a DNS
        rebinding page (evil.example resolving to 127.0.0.1) is refused."""
        host = request.host.rsplit(":", 1)[0] if not request.host.endswith("]") \
            else request.host
        if is_loopback(host) or host in self.settings.allowed_hosts:
            return
        raise HTTPError(403, "unexpected Host header %r: an unauthenticated console answers "
                             "only to localhost (see --allowed-host)" % request.host[:100])

    def identify(self, request, is_api):
        session = self.sessions.load(request.cookies.get(self.sessions.COOKIE))
        if session is not None:
            user = self.users.get(session.user)
            if user is not None:
                return self._identity(request, user.name, user.role, session)
        if is_api and request.header("Authorization") and self.users:
            return self.basic_auth(request)
        if self.anonymous and (request.from_loopback() or self.settings.insecure):
            return self._identity(request, "anonymous", ADMIN, None)
        if self.anonymous:
            raise HTTPError(403, "this console has no users configured and answers only "
                                 "to this machine (see --auth-file, or --insecure)")
        return None

    def _identity(self, request, name, role, session):
        # by the user's own role: a read-only console still shows an
        # operator the logs an operator may read
        logs = self.settings.logs_role != "none" and role_allows(role, self.settings.logs_role)
        if self.settings.read_only:
            role = VIEWER
        return Identity(name, role, request.client, session,
                        session.csrf if session is not None else None, logs=logs)

    def basic_auth(self, request):
        scheme, _, value = request.header("Authorization").partition(" ")
        if scheme.lower() != "basic":
            raise HTTPError(401, "use HTTP basic authentication",
                            [("WWW-Authenticate", 'Basic realm="circushttpd"')])
        try:
            name, _, password = base64.b64decode(value).decode("utf-8").partition(":")
        except ValueError:
            raise HTTPError(400, "malformed Authorization header") from None
        user = self.check_password(request, name, password)
        if user is None:
            raise HTTPError(401, "wrong user name or password",
                            [("WWW-Authenticate", 'Basic realm="circushttpd"')])
        identity = self._identity(request, user.name, user.role, None)
        identity.via_basic = True
        return identity

    def check_password(self, request, name, password):
        """The User, or None; failures count against the client address and
        the user name, and past the limit every attempt gets 429."""
        keys = ("addr:" + request.client, "user:" + name[:100])
        wait = self.limiter.retry_after(keys)
        if wait > 0:
            logger.warning("login refused for %r from %s: too many failures", name[:100],
                           request.client)
            raise HTTPError(429, "too many failed logins: try again in %d s" % (wait + 1),
                            [("Retry-After", str(int(wait) + 1))])
        user = self.users.authenticate(name, password)
        if user is None:
            self.limiter.failed(keys)
            logger.warning("failed login for %r from %s", name[:100], request.client)
        else:
            self.limiter.succeeded(keys[1:])
        return user

    def check_post(self, request, identity, is_api):
        """CSRF: a same-origin request carrying the session's token."""
        site = request.header("Sec-Fetch-Site")
        origin = request.header("Origin")
        if site is not None and site != "same-origin":
            self.refuse(request, identity, "cross-site request (Sec-Fetch-Site: %s)" % site[:40])
        if origin is not None and origin != request.origin:
            self.refuse(request, identity, "cross-origin request (Origin: %s)" % origin[:100])
        if identity is not None and identity.via_basic:
            # scripts: a JSON body, which no cross-site form can send
            if request.content_type != "application/json":
                self.refuse(request, identity, "the API takes application/json")
            return
        token = request.header("X-CSRF-Token") or request.form.get("csrf_token")
        expected = identity.csrf if identity is not None else None
        if identity is not None and identity.session is None:
            # anonymous on loopback: one token per console start
            expected = self.sessions.csrf_token("anonymous")
        if not expected or not token or not secrets.compare_digest(str(token), expected):
            self.refuse(request, identity, "missing or wrong CSRF token")

    def csrf_for(self, identity):
        if identity is None:
            return None
        return identity.csrf or self.sessions.csrf_token("anonymous")

    def refuse(self, request, identity, why):
        logger.warning("refused: %s %s by %s (%s) from %s: %s", request.method, request.path,
                       identity.user if identity else "nobody",
                       identity.role if identity else "-", request.client, why)
        raise HTTPError(403, "forbidden: %s" % why)


def _on_meinheld(environ):
    return "meinheld" in str(environ.get("SERVER_SOFTWARE", "")).lower() or \
        type(environ.get("wsgi.input")).__module__.startswith("meinheld")


def make_app(**values):
    """A Console from settings given as keyword arguments (the names of
    circus.web.settings.FIELDS)."""
    return Console(Settings.from_mapping(values))


class _FromEnvironment:
    """circus.web.app:application: built from CIRCUSHTTPD_* on first use,
    so that importing this module starts nothing."""

    def __init__(self):
        self._console = None
        self._lock = threading.Lock()

    def __call__(self, environ, start_response):
        if self._console is None:
            with self._lock:
                if self._console is None:
                    self._console = Console(Settings.from_environ())
        return self._console(environ, start_response)


application = _FromEnvironment()
