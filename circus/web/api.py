"""The JSON API: the pages' data and actions, for scripts.

Authentication: the browser's session cookie (then POSTs carry the
X-CSRF-Token header), or HTTP basic auth with the same users and roles
(then POSTs must be application/json, which no cross-site form can send).
Same roles, same actions (circus.web.actions), same audit trail as the
pages.

    curl -u alice:secret http://127.0.0.1:8080/api/endpoints
    curl -u alice:secret -H 'Content-Type: application/json' \\
         -d '{"action": "incr", "name": "web"}' http://127.0.0.1:8080/api/e/ID/action
    curl -u alice:secret 'http://127.0.0.1:8080/api/e/ID/output?name=web'
"""
import base64
import binascii
import json

from circus.web.actions import ACTIONS, ActionError, run_action
from circus.web.settings import SettingsError
from circus.web.tail import TailError, ask, lines_of
from circus.web.wsgi import HTTPError, json_response


def _connection(console, eid):
    connection = console.hub.get(eid)
    if connection is None:
        raise HTTPError(404, "no such circusd in this console")
    return connection


def whoami(console, request, identity):
    return json_response({"user": identity.user, "role": identity.role,
                          "read_only": console.settings.read_only,
                          "csrf_token": console.csrf_for(identity)})


def _describe(connection):
    model = connection.model
    with model.lock:
        return {"id": connection.id, "endpoint": connection.endpoint, "pubsub": model.pubsub,
                "stats_endpoint": model.stats_endpoint, "state": model.state,
                "error": model.error, "watchers": len(model.watchers)}


def endpoints(console, request, identity):
    return json_response({"endpoints": [_describe(c) for c in console.hub.all()]})


def add_endpoint(console, request, identity):
    from circus.web.pages import add_connection
    try:
        connection = add_connection(console, request.form)
    except SettingsError as exc:
        raise HTTPError(400, str(exc)) from None
    return json_response(_describe(connection), 201)


def watchers(console, request, identity, eid):
    connection = _connection(console, eid)
    with connection.model.lock:
        snapshot = connection.model.snapshot("overview")
    return json_response({"endpoint": snapshot["endpoint"], "watchers": snapshot["watchers"],
                          "stats": snapshot["stats"]})


def watcher(console, request, identity, eid):
    connection = _connection(console, eid)
    name = request.arg("name")
    with connection.model.lock:
        snapshot = connection.model.snapshot("watcher", name)
        found = connection.model.watchers.get(name)
        options = dict(found.options) if found else None
    if snapshot["watcher"] is None:
        raise HTTPError(404, "no watcher of that name")
    return json_response({"watcher": snapshot["watcher"], "processes": snapshot["processes"],
                          "stats": snapshot["stats"], "options": options})


def sockets(console, request, identity, eid):
    connection = _connection(console, eid)
    with connection.model.lock:
        return json_response({"sockets": connection.model.sockets_view()})


def events(console, request, identity, eid):
    connection = _connection(console, eid)
    with connection.model.lock:
        return json_response({"events": list(connection.model.timeline)})


def output(console, request, identity, eid):
    """The watcher's last lines (``lines`` per stream, 20 by default), or
    with the ``cursor`` of an earlier answer what was written since; the
    page's lines: {"pid", "stream", "text"}, or a gap {"skipped": bytes}.
    Optional ``pid`` and ``stream`` (stdout or stderr)."""
    connection = _connection(console, eid)
    if not identity.logs:
        console.refuse(request, identity, "this console does not show logs to the %s role"
                       % identity.role)
    name = request.arg("name")
    if not name:
        raise HTTPError(400, "name (the watcher) is required")
    props = {}
    for key in ("lines", "pid"):
        value = request.arg(key)
        if value is not None:
            if not value.isdigit():
                raise HTTPError(400, "%s must be a whole number" % key)
            props[key] = int(value)
    if request.arg("stream"):
        props["streams"] = [request.arg("stream")]
    if request.arg("cursor"):
        props["cursor"] = _decode_cursor(request.arg("cursor"))
    try:
        reply = ask(connection, name, **props)
    except TailError as exc:
        raise HTTPError(exc.status, exc.message) from None
    return json_response({"watcher": name, "lines": lines_of(reply.get("output")),
                          "cursor": _encode_cursor(reply.get("cursor") or {})})


def _encode_cursor(cursor):
    """circusd's cursor as one URL-safe token: scripts give it back as is."""
    text = json.dumps(cursor, separators=(",", ":"), sort_keys=True)
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode_cursor(token):
    try:
        text = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        cursor = json.loads(text)
    except (ValueError, binascii.Error):
        cursor = None
    if not isinstance(cursor, dict):
        raise HTTPError(400, "cursor must be the cursor of an earlier answer")
    return cursor


def action(console, request, identity, eid):
    connection = _connection(console, eid)
    form = request.form
    act = ACTIONS.get(str(form.get("action")))
    if act is None:
        raise HTTPError(400, "unknown action; one of %s" % ", ".join(sorted(ACTIONS)))
    if not identity.can(act.role):
        console.refuse(request, identity, "%s needs the %s role" % (act.name, act.role))
    try:
        outcome = run_action(connection, act, str(form.get("name") or ""), form,
                             identity.audit())
    except ActionError as exc:
        raise HTTPError(400, str(exc)) from None
    reply = {k: v for k, v in outcome.reply.items() if k not in ("id",)}
    return json_response({"ok": outcome.ok, "message": outcome.message, "reply": reply},
                         outcome.status)
