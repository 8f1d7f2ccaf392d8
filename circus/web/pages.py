"""The HTML pages. They render from the endpoint's model and work without
JavaScript: every action is a plain form POST answered with a redirect
and a one-time message; console.js then adds live updates, charts and
in-page actions."""
import logging
import os
import time
import urllib.parse

import jinja2

from circus import __version__
from circus.web.actions import ACTIONS, SIGNALS, ActionError, run_action
from circus.web.settings import SettingsError, check_endpoint_syntax
from circus.web.tail import KEEP_LINES, first_view
from circus.web.users import ADMIN, OPERATOR
from circus.web.wsgi import HTTPError, Response, redirect

logger = logging.getLogger("circus.web")

TEMPLATES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "templates")
FLASH_COOKIE = "circus_flash"


def environment():
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES),
                             autoescape=True, undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True)
    env.filters["age"] = format_age
    env.filters["bytes"] = format_bytes
    env.filters["when"] = lambda t: time.strftime("%H:%M:%S", time.localtime(t)) if t else ""
    env.filters["q"] = lambda s: urllib.parse.quote(str(s), safe="")
    return env


def format_age(started):
    if not started:
        return "-"
    seconds = max(0, int(time.time() - started))
    if seconds < 60:
        return "%ds" % seconds
    if seconds < 3600:
        return "%dm%02ds" % divmod(seconds, 60)
    if seconds < 86400:
        return "%dh%02dm" % (seconds // 3600, seconds % 3600 // 60)
    return "%dd%02dh" % (seconds // 86400, seconds % 86400 // 3600)


def format_bytes(value):
    if not isinstance(value, (int, float)):
        return "-"
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024:
            return "%.0f %s" % (value, unit) if unit == "B" else "%.1f %s" % (value, unit)
        value /= 1024.0
    return "%.1f TiB" % value


def render(console, request, identity, template, status=200, connection=None, **context):
    flash = console.sessions.read_flash(request.cookies.get(FLASH_COOKIE)) \
        if request.method == "GET" else None
    base = console.base(request)
    context.update(
        base=base, identity=identity, csrf=console.csrf_for(identity),
        version=__version__, static="%s/static/" % base, static_v=console.static_version,
        connections=console.hub.all(), connection=connection, flash=flash,
        read_only=console.settings.read_only, can_operate=bool(identity and identity.can(OPERATOR)),
        can_admin=bool(identity and identity.can(ADMIN)), signals=SIGNALS,
        ep=("%s/e/%s" % (base, connection.id)) if connection is not None else None)
    body = console.templates.get_template(template).render(**context)
    response = Response(body, status)
    if flash is not None:
        response.delete_cookie(FLASH_COOKIE, base + "/", request.secure)
    return response


def back_with(console, request, location, kind, text):
    response = redirect(location)
    response.set_cookie(FLASH_COOKIE, console.sessions.flash(kind, text),
                        console.base(request) + "/", request.secure, max_age=120)
    return response


def connection_or_404(console, eid):
    connection = console.hub.get(eid)
    if connection is None:
        raise HTTPError(404, "no such circusd in this console")
    return connection


def safe_next(console, request, target):
    """Only a path of this console: never an open redirect."""
    base = console.base(request)
    if target and target.startswith(base + "/") and not target.startswith("//") \
            and "\\" not in target:
        return target
    return base + "/"


# --- login ------------------------------------------------------------------

def login_form(console, request, identity, error=None, status=200):
    if console.anonymous:
        return redirect(console.url(request, "/"))
    cookie, token = console.sessions.login_nonce()
    response = render(console, request, None, "login.html", status, error=error,
                      login_token=token, next=request.arg("next") or getattr(request, "form_next", None))
    response.set_cookie(console.sessions.LOGIN_COOKIE, cookie, console.base(request) + "/",
                        request.secure, max_age=3600)
    return response


def login(console, request, identity):
    if console.anonymous:
        return redirect(console.url(request, "/"))
    site, origin = request.header("Sec-Fetch-Site"), request.header("Origin")
    if (site is not None and site != "same-origin") or \
            (origin is not None and origin != request.origin):
        raise HTTPError(403, "forbidden: cross-site login")
    form = request.form
    request.form_next = form.get("next")
    if not console.sessions.check_login_token(
            request.cookies.get(console.sessions.LOGIN_COOKIE), form.get("login_token")):
        return login_form(console, request, None, "The form expired; please try again.", 400)
    user = console.check_password(request, str(form.get("user", "")),
                                  str(form.get("password", "")))
    if user is None:
        return login_form(console, request, None, "Wrong user name or password.", 401)
    value, session = console.sessions.new(user.name)
    logger.info("login: %s (%s) from %s", user.name, user.role, request.client)
    response = redirect(safe_next(console, request, form.get("next")))
    base = console.base(request) + "/"
    response.set_cookie(console.sessions.COOKIE, value, base, request.secure,
                        max_age=int(console.sessions.lifetime_s))
    response.delete_cookie(console.sessions.LOGIN_COOKIE, base, request.secure)
    return response


def logout(console, request, identity):
    if identity.session is not None:
        console.sessions.revoke(identity.session)
        logger.info("logout: %s from %s", identity.user, request.client)
    response = redirect(console.url(request, "/login" if not console.anonymous else "/"))
    response.delete_cookie(console.sessions.COOKIE, console.base(request) + "/", request.secure)
    return response


# --- endpoints ----------------------------------------------------------------

def home(console, request, identity):
    connections = console.hub.all()
    if connections:
        return redirect(console.url(request, "/e/%s/" % connections[0].id))
    return redirect(console.url(request, "/connect"))


def connect_page(console, request, identity, error=None, status=200):
    default = console.settings.endpoints[0] if console.settings.endpoints \
        else "tcp://127.0.0.1:5555"
    return render(console, request, identity, "connect.html", status, error=error,
                  default_endpoint=default, allowed=console.settings.allowed_endpoints)


def add_connection(console, form):
    """The Connection for an admin's form; SettingsError when refused."""
    endpoint = str(form.get("endpoint") or "").strip()
    extra = {k: (str(form.get(k) or "").strip() or None) for k in ("pubsub", "stats_endpoint")}
    for value in [endpoint] + [v for v in extra.values() if v]:
        check_endpoint_syntax(value)
        if not console.settings.endpoint_allowed(value):
            raise SettingsError("%s is not in this console's allowed endpoints (%s)"
                                % (value, ", ".join(console.settings.allowed_endpoints)))
    return console.hub.add(endpoint, extra["pubsub"], extra["stats_endpoint"])


def connect(console, request, identity):
    try:
        connection = add_connection(console, request.form)
    except SettingsError as exc:
        return connect_page(console, request, identity, str(exc), 400)
    logger.info("audit: %s (%s) from %s: connect %s", identity.user, identity.role,
                identity.addr, connection.endpoint)
    return redirect(console.url(request, "/e/%s/" % connection.id))


def disconnect(console, request, identity, eid):
    connection = console.hub.remove(eid)
    if connection is not None:
        logger.info("audit: %s (%s) from %s: disconnect %s", identity.user, identity.role,
                    identity.addr, connection.endpoint)
    return back_with(console, request, console.url(request, "/connect"), "ok",
                     "disconnected from %s" % (connection.endpoint if connection else eid))


# --- an endpoint's pages ----------------------------------------------------

def overview(console, request, identity, eid):
    connection = connection_or_404(console, eid)
    with connection.model.lock:
        snapshot = connection.model.snapshot("overview")
    return render(console, request, identity, "overview.html", connection=connection,
                  view="overview", snap=snapshot)


def watcher_page(console, request, identity, eid):
    connection = connection_or_404(console, eid)
    name = request.arg("name")
    with connection.model.lock:
        snapshot = connection.model.snapshot("watcher", name)
        options = dict(connection.model.watchers[name].options) \
            if name in connection.model.watchers else None
    if snapshot["watcher"] is None:
        raise HTTPError(404, "no watcher of that name")
    output = first_view(connection, name) if identity.logs else None
    return render(console, request, identity, "watcher.html", connection=connection,
                  view="watcher", name=name, snap=snapshot, options=options, output=output,
                  keep_lines=KEEP_LINES)


def confirm_page(console, request, identity, eid):
    connection = connection_or_404(console, eid)
    action = ACTIONS.get(request.arg("action"))
    if action is None:
        raise HTTPError(404)
    fields = {k: request.arg(k) for k in ("name", "pid", "signum") if request.arg(k)}
    return render(console, request, identity, "confirm.html", connection=connection,
                  action=action, fields=fields)


def sockets_page(console, request, identity, eid):
    connection = connection_or_404(console, eid)
    with connection.model.lock:
        snapshot = connection.model.snapshot("sockets")
    return render(console, request, identity, "sockets.html", connection=connection,
                  view="sockets", snap=snapshot)


def events_page(console, request, identity, eid):
    connection = connection_or_404(console, eid)
    with connection.model.lock:
        snapshot = connection.model.snapshot("events")
    return render(console, request, identity, "events.html", connection=connection,
                  view="events", snap=snapshot)


def add_form(console, request, identity, eid, error=None, values=None, status=200):
    connection = connection_or_404(console, eid)
    return render(console, request, identity, "add.html", status, connection=connection,
                  error=error, values=values or {})


def action(console, request, identity, eid):
    """Every form that changes a watcher posts here (with `action`)."""
    connection = connection_or_404(console, eid)
    form = request.form
    act = ACTIONS.get(str(form.get("action")))
    if act is None:
        raise HTTPError(400, "unknown action")
    if not identity.can(act.role):
        console.refuse(request, identity, "%s needs the %s role" % (act.name, act.role))
    name = str(form.get("name") or "")
    try:
        outcome = run_action(connection, act, name, form, identity.audit())
    except ActionError as exc:
        if act.name == "add":
            return add_form(console, request, identity, eid, str(exc), form, 400)
        outcome = None
        message, ok, status = str(exc), False, 400
    if outcome is not None:
        message, ok, status = outcome.message, outcome.ok, outcome.status
    if request.wants_json():
        from circus.web.wsgi import json_response
        return json_response({"ok": ok, "message": message}, status)
    ep = console.url(request, "/e/%s" % connection.id)
    if act.name == "add" and ok:
        location = "%s/watcher?name=%s" % (ep, urllib.parse.quote(form.get("name", ""), safe=""))
    elif act.name == "add":
        return add_form(console, request, identity, eid, message, form, status)
    elif act.target and act.name != "rm" and form.get("back") == "watcher":
        location = "%s/watcher?name=%s" % (ep, urllib.parse.quote(name, safe=""))
    else:
        location = ep + "/"
    return back_with(console, request, location, "ok" if ok else "error", message)


def error_page(console, request, exc):
    if request is None:
        from circus.web.wsgi import plain_error
        return plain_error(exc.status, exc.message)
    if request.path.startswith(console.settings.url_prefix + "/api/") or request.wants_json():
        from circus.web.wsgi import json_response
        return json_response({"error": exc.message}, exc.status, exc.headers)
    try:
        response = render(console, request, None, "error.html", exc.status, error=exc)
    except Exception:
        logger.exception("the error page failed")
        from circus.web.wsgi import plain_error
        response = plain_error(exc.status, exc.message)
    response.headers += exc.headers
    return response
